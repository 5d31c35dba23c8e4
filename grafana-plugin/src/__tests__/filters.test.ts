import { buildFlowFilters, parseFilterJson, validateQuery } from '../filters';
import { WebbQuery } from '../types';

const q = (fields: Partial<WebbQuery>): WebbQuery => ({ refId: 'A', queryType: 'flows', ...fields });

describe('Hubble FlowFilters from a flows query', () => {
  it('an empty query asks for every flow', () => {
    expect(buildFlowFilters(q({}))).toEqual([]);
  });

  it('fields that are not about an end of the flow make one filter', () => {
    expect(
      buildFlowFilters(
        q({
          verdict: ['DROPPED'],
          protocol: ['TCP', 'http'],
          httpStatus: '500, 4+',
          traceId: 'ABCDEF0123456789abcdef0123456789',
        })
      )
    ).toEqual([
      {
        verdict: ['DROPPED'],
        protocol: ['tcp', 'http'],
        http_status_code: ['500', '4+'],
        trace_id: ['abcdef0123456789abcdef0123456789'],
      },
    ]);
  });

  it('namespace, pod and workload match either end, like hubble observe --namespace/--pod', () => {
    expect(buildFlowFilters(q({ namespace: 'shop', workload: 'api', verdict: ['FORWARDED'] }))).toEqual([
      { verdict: ['FORWARDED'], source_pod: ['shop/'], source_workload: [{ name: 'api' }] },
      { verdict: ['FORWARDED'], destination_pod: ['shop/'], destination_workload: [{ name: 'api' }] },
    ]);
    expect(buildFlowFilters(q({ namespace: 'shop', pod: 'api-7' }))).toEqual([
      { source_pod: ['shop/api-7'] },
      { destination_pod: ['shop/api-7'] },
    ]);
    // A bare pod prefix keeps Hubble's meaning (namespace "default").
    expect(buildFlowFilters(q({ pod: 'api-7' }))).toEqual([{ source_pod: ['api-7'] }, { destination_pod: ['api-7'] }]);
  });

  it("several values of a field (a multi-value variable) are or'ed; .* or * means any", () => {
    expect(buildFlowFilters(q({ namespace: 'shop, store', workload: 'api,web' }))).toEqual([
      { source_pod: ['shop/', 'store/'], source_workload: [{ name: 'api' }, { name: 'web' }] },
      { destination_pod: ['shop/', 'store/'], destination_workload: [{ name: 'api' }, { name: 'web' }] },
    ]);
    expect(buildFlowFilters(q({ namespace: 'shop,store', pod: 'api-' }))).toEqual([
      { source_pod: ['shop/api-', 'store/api-'] },
      { destination_pod: ['shop/api-', 'store/api-'] },
    ]);
    expect(buildFlowFilters(q({ namespace: '.*', workload: '*', verdict: ['DROPPED'] }))).toEqual([
      { verdict: ['DROPPED'] },
    ]);
    expect(validateQuery(q({ namespace: '.*', workload: 'api,Web!' }))).toEqual([
      {
        field: 'workload',
        message: "Workload \"Web!\" is not a Kubernetes name (lower-case letters, digits, '-' and '.')",
      },
    ]);
  });

  it('free FlowFilter JSON is ANDed with every filter the fields make', () => {
    const free = '[{"destination_port": ["53"]}, {"source_label": ["k8s:app=web"]}]';
    expect(buildFlowFilters(q({ filterJson: free }))).toEqual(JSON.parse(free));
    expect(buildFlowFilters(q({ namespace: 'shop', filterJson: free }))).toEqual([
      { destination_port: ['53'], source_pod: ['shop/'] },
      { source_label: ['k8s:app=web'], source_pod: ['shop/'] },
      { destination_port: ['53'], destination_pod: ['shop/'] },
      { source_label: ['k8s:app=web'], destination_pod: ['shop/'] },
    ]);
  });

  it('FlowFilter JSON that is not a filter object is refused with where it is wrong', () => {
    expect(() => parseFilterJson('{"verdict": [')).toThrow(/not valid JSON/);
    expect(() => parseFilterJson('[{}, 3]')).toThrow('item 2 is not a FlowFilter object');
    expect(() => parseFilterJson('"DROPPED"')).toThrow(/expected a FlowFilter object/);
  });
});

describe('query validation names the field and what is expected', () => {
  it('a good query has no problems', () => {
    expect(validateQuery(q({ namespace: 'shop', verdict: ['DROPPED'], httpStatus: '404,5+', limit: 50 }))).toEqual([]);
    expect(validateQuery(q({ namespace: '$namespace', traceId: '${trace}' }))).toEqual([]);
  });

  it('each bad field gets its own message', () => {
    const problems = validateQuery(
      q({
        namespace: 'Shop!',
        verdict: ['DENIED'],
        protocol: ['quic'],
        httpStatus: '200, 6xx',
        traceId: 'xyz',
        limit: 0,
        filterJson: '{nope}',
      })
    );
    expect(problems.map((p) => p.field)).toEqual([
      'namespace',
      'verdict',
      'protocol',
      'httpStatus',
      'traceId',
      'limit',
      'filterJson',
    ]);
    expect(problems.find((p) => p.field === 'httpStatus')?.message).toBe(
      'HTTP status "6xx" is not a code or class (expected e.g. 404, 4+ or 40+)'
    );
    expect(problems.find((p) => p.field === 'limit')?.message).toBe(
      'Limit must be a whole number from 1 to 10000, not 0'
    );
  });

  it('a filter field set both in a field and in the JSON is refused', () => {
    const problems = validateQuery(q({ verdict: ['DROPPED'], filterJson: '{"verdict": ["FORWARDED"]}' }));
    expect(problems).toEqual([
      {
        field: 'filterJson',
        message: 'FlowFilter JSON: "verdict" is also set by the fields above; set it in one place',
      },
    ]);
  });

  it('SQL must be given; the service map only looks at the namespace', () => {
    expect(validateQuery({ refId: 'A', queryType: 'sql', sql: '  ' })[0].field).toBe('sql');
    expect(validateQuery({ refId: 'A', queryType: 'serviceMap', httpStatus: 'bad' })).toEqual([]);
  });
});

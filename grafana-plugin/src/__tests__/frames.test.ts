import { FieldType, createDataFrame } from '@grafana/data';

import { arrowFieldType, fieldValues, flowsFrame, serviceMapFrames, sqlFrame } from '../frames';
import { expectNodeGraphRules } from '../testing/nodeGraph';
import { Flow, MapEdge, MapNode, ServiceMapAnswer } from '../types';

const node = (id: string, rps: number, err: number, drops = 0): MapNode => {
  const [namespace, workload] = id.split('/');
  return { id, namespace, workload, requests_per_second: rps, error_ratio: err, drops };
};
const edge = (source: string, target: string, fields: Partial<MapEdge> = {}): MapEdge => ({
  id: `${source}->${target}`,
  source,
  target,
  requests_per_second: 1,
  error_ratio: 0,
  p50_ms: 5,
  p95_ms: 9,
  p99_ms: 12,
  drops: 0,
  ...fields,
});

describe('service map → Node Graph frames', () => {
  const map: ServiceMapAnswer = {
    nodes: [node('shop/web', 0, 0), node('shop/api', 2.5, 0.2, 1), node('store/pg', 1, 0)],
    edges: [
      edge('shop/web', 'shop/api', { requests_per_second: 2.5, error_ratio: 0.2, p95_ms: 40 }),
      edge('shop/api', 'store/pg', { drops: 1 }),
      // The relay never does this, but the frames must hold whatever it sends.
      edge('10.0.0.9', 'shop/api', { requests_per_second: 0, p50_ms: null, p95_ms: null, p99_ms: null }),
    ],
  };
  const frames = serviceMapFrames(map, 'A');
  const [nodes, edges] = frames;

  it('keeps the Node Graph rules, adding the nodes that edges name', () => {
    expectNodeGraphRules(frames);
    expect(fieldValues(nodes, 'id')).toEqual(['shop/web', 'shop/api', 'store/pg', '10.0.0.9']);
    expect(frames.map((f) => f.refId)).toEqual(['A', 'A']);
  });

  it('nodes carry request rate and error ratio, and arcs split served requests by outcome', () => {
    expect(fieldValues(nodes, 'mainstat')).toEqual([0, 2.5, 1, 0]);
    expect(fieldValues(nodes, 'secondarystat')).toEqual([0, 0.2, 0, 0]);
    expect(fieldValues(nodes, 'arc__errors')).toEqual([0, 0.2, 0, 0]);
    expect(fieldValues(nodes, 'arc__success')).toEqual([0, 0.8, 1, 0]);
    expect(fieldValues(nodes, 'arc__idle')).toEqual([1, 0, 0, 1]);
    expect(nodes.fields.find((f) => f.name === 'mainstat')?.config.unit).toBe('reqps');
    expect(fieldValues(nodes, 'title')).toEqual(['web', 'api', 'pg', '10.0.0.9']);
    expect(fieldValues(nodes, 'subtitle')).toEqual(['shop', 'shop', 'store', '']);
  });

  it('edges carry rate, p95 latency and drops', () => {
    expect(fieldValues(edges, 'mainstat')).toEqual([2.5, 1, 0]);
    expect(fieldValues(edges, 'secondarystat')).toEqual([40, 9, null]);
    expect(edges.fields.find((f) => f.name === 'secondarystat')?.config.unit).toBe('ms');
    expect(fieldValues(edges, 'detail__drops')).toEqual([0, 1, 0]);
    expect(fieldValues(edges, 'color')).toEqual(['orange', 'red', 'green']);
  });

  it('the rule check itself catches an edge to a missing node and arcs that do not sum to 1', () => {
    const graph = (ends: string[], arcs: number[]) => {
      const nodes = createDataFrame({
        name: 'nodes',
        fields: [
          { name: 'id', type: FieldType.string, values: ['a'] },
          {
            name: 'arc__ok',
            type: FieldType.number,
            values: [arcs[0]],
            config: { color: { mode: 'fixed', fixedColor: 'green' } },
          },
          {
            name: 'arc__bad',
            type: FieldType.number,
            values: [arcs[1]],
            config: { color: { mode: 'fixed', fixedColor: 'red' } },
          },
        ],
      });
      const edges = createDataFrame({
        name: 'edges',
        fields: [
          { name: 'id', type: FieldType.string, values: ['e'] },
          { name: 'source', type: FieldType.string, values: [ends[0]] },
          { name: 'target', type: FieldType.string, values: [ends[1]] },
        ],
      });
      nodes.meta = edges.meta = { preferredVisualisationType: 'nodeGraph' };
      return [nodes, edges];
    };
    expect(() => expectNodeGraphRules(graph(['a', 'a'], [0.25, 0.75]))).not.toThrow();
    expect(() => expectNodeGraphRules(graph(['a', 'b'], [0.25, 0.75]))).toThrow();
    expect(() => expectNodeGraphRules(graph(['a', 'a'], [0.25, 0.5]))).toThrow();
  });

  it('error ratios outside 0..1 are clamped so arcs still sum to 1', () => {
    const odd = serviceMapFrames({ nodes: [node('a/x', 1, 1.7), node('a/y', 3, NaN)], edges: [] });
    expectNodeGraphRules(odd);
    expect(fieldValues(odd[0], 'arc__errors')).toEqual([1, 0]);
  });
});

const dropped: Flow = {
  time: '2026-12-07T04:28:23.881714537Z',
  verdict: 'DROPPED',
  drop_reason_desc: 'POLICY_DENIED',
  Type: 'L3_L4',
  IP: { source: '198.18.0.168', destination: '198.18.0.65' },
  l4: { TCP: { source_port: 40999, destination_port: 5432 } },
  source: { namespace: 'tools', pod_name: 'loadgen-1', workloads: [{ name: 'loadgen', kind: 'Deployment' }] },
  destination: { namespace: 'store', pod_name: 'pg-0', workloads: [{ name: 'pg', kind: 'StatefulSet' }] },
  ingress_denied_by: [{ kind: 'NetworkPolicy', name: 'pg-only-from-api', namespace: 'store' }],
  traffic_direction: 'INGRESS',
  node_name: 'node-7',
};
const response: Flow = {
  time: '2026-12-07T04:28:24.5Z',
  verdict: 'FORWARDED',
  Type: 'L7',
  IP: { source: '198.18.0.17', destination: '198.18.0.50' },
  l4: { TCP: { source_port: 8080, destination_port: 41606 } },
  l7: {
    type: 'RESPONSE',
    latency_ns: '8000000',
    http: {
      code: 503,
      headers: [{ key: 'traceparent', value: '00-4bf92f3577b34da6a3ce929d00000646-00f067aa0ba902b7-01' }],
    },
  },
  source: { namespace: 'shop', pod_name: 'api-1' },
};
const kernelDrop: Flow = {
  time: '2026-12-07T04:28:25Z',
  verdict: 'DROPPED',
  drop_reason_desc: 'UNKNOWN_REASON',
  IP: { source: '198.18.0.1', destination: '198.18.0.2' },
  l4: { UDP: { source_port: 1000, destination_port: 53 } },
  extensions: {
    '@type': 'type.googleapis.com/webb.v1.FlowExtras',
    kernel_drop: { name: 'NETFILTER_DROP', symbol: 'nf_hook_slow' },
    default_deny: { policies: ['shop/default-deny'] },
  },
};

describe('flows → table frame', () => {
  const f = flowsFrame({ flows: [dropped, response, kernelDrop], truncated: true }, 'B', {
    uid: 'tempo-main',
    name: 'Tempo',
  });

  it('has one row a flow with Hubble-style columns', () => {
    expect(f.length).toBe(3);
    expect(f.fields.find((x) => x.name === 'Time')?.type).toBe(FieldType.time);
    expect(fieldValues(f, 'Time')).toEqual([
      Date.parse(dropped.time!),
      Date.parse(response.time!),
      Date.parse(kernelDrop.time!),
    ]);
    expect(fieldValues(f, 'Source')).toEqual(['tools/loadgen-1', 'shop/api-1', '198.18.0.1']);
    expect(fieldValues(f, 'Destination workload')).toEqual(['store/pg', '', '']);
    expect(fieldValues(f, 'Protocol')).toEqual(['TCP', 'HTTP', 'UDP']);
    expect(fieldValues(f, 'Port')).toEqual([5432, 41606, 53]);
    expect(fieldValues(f, 'HTTP status')).toEqual([null, 503, null]);
    expect(fieldValues(f, 'Latency')).toEqual([null, 8, null]);
  });

  it("a drop's row shows its reason and the denying policy", () => {
    expect(fieldValues(f, 'Drop reason')).toEqual([
      'POLICY_DENIED',
      '',
      'UNKNOWN_REASON; kernel: NETFILTER_DROP at nf_hook_slow',
    ]);
    expect(fieldValues(f, 'Denied by')).toEqual([
      'store/pg-only-from-api (NetworkPolicy)',
      '',
      'default deny: shop/default-deny',
    ]);
  });

  it('the trace id column links to the configured Tempo data source', () => {
    expect(fieldValues(f, 'Trace ID')).toEqual(['', '4bf92f3577b34da6a3ce929d00000646', '']);
    const links = f.fields.find((x) => x.name === 'Trace ID')?.config.links;
    expect(links).toEqual([
      {
        title: 'Open trace in Tempo',
        url: '',
        internal: {
          datasourceUid: 'tempo-main',
          datasourceName: 'Tempo',
          query: { refId: 'trace', queryType: 'traceql', query: '${__value.raw}' },
        },
      },
    ]);
    const none = flowsFrame({ flows: [response], truncated: false });
    expect(none.fields.find((x) => x.name === 'Trace ID')?.config.links).toBeUndefined();
  });

  it('says when the limit cut the answer or the relay lost flows', () => {
    expect(f.meta?.notices?.[0].text).toMatch(/More flows matched than the 3 shown/);
    const lossy = flowsFrame({
      flows: [],
      truncated: false,
      loss: { total: 7, stages: [{ stage: 'store_queue', node: 'relay', lost: 7 }] },
    });
    expect(lossy.meta?.notices).toEqual([
      {
        severity: 'warning',
        text: 'The relay has lost 7 flows so far (store_queue on relay: 7); results may be incomplete.',
      },
    ]);
  });
});

describe('SQL answer → frame with field types from the Arrow types', () => {
  it('maps Arrow types to Grafana field types', () => {
    const cases: Array<[string, FieldType]> = [
      ['Int64', FieldType.number],
      ['UInt32', FieldType.number],
      ['Float64', FieldType.number],
      ['Decimal128(5, 2)', FieldType.number],
      ['Timestamp(ns, "UTC")', FieldType.time],
      ['Timestamp(Nanosecond, None)', FieldType.time],
      ['Date32', FieldType.time],
      ['Utf8', FieldType.string],
      ['Dictionary(Int32, Utf8)', FieldType.string],
      ['Dictionary(Int32, UInt16)', FieldType.number],
      ['Boolean', FieldType.boolean],
      ['List(Utf8)', FieldType.other],
      ['Null', FieldType.other],
    ];
    for (const [arrow, want] of cases) {
      expect([arrow, arrowFieldType(arrow)]).toEqual([arrow, want]);
    }
  });

  it('converts values and keeps nulls', () => {
    const f = sqlFrame(
      {
        columns: [
          { name: 'time', type: 'Timestamp(ns, "UTC")' },
          { name: 'verdict', type: 'Dictionary(Int32, Utf8)' },
          { name: 'n', type: 'UInt64' },
          { name: 'labels', type: 'List(Utf8)' },
        ],
        rows: [
          ['2026-12-07T04:34:57.881714537Z', 'FORWARDED', '18446744073709551615', ['k8s:app=web']],
          [null, null, null, null],
        ],
        truncated: true,
      },
      'C',
      'SELECT …'
    );
    expect(f.fields.map((x) => [x.name, x.type])).toEqual([
      ['time', FieldType.time],
      ['verdict', FieldType.string],
      ['n', FieldType.number],
      ['labels', FieldType.other],
    ]);
    expect(fieldValues(f, 'time')).toEqual([Date.parse('2026-12-07T04:34:57.881Z'), null]);
    expect(fieldValues(f, 'n')).toEqual([18446744073709551615, null]);
    expect(fieldValues(f, 'labels')).toEqual([['k8s:app=web'], null]);
    expect(f.meta?.executedQueryString).toBe('SELECT …');
    expect(f.meta?.notices?.[0].text).toMatch(/cut at 2 rows/);
  });

  it('a value that does not fit its column type is an error naming column and row', () => {
    expect(() =>
      sqlFrame({ columns: [{ name: 'n', type: 'Int64' }], rows: [[1], ['many']], truncated: false })
    ).toThrow('SQL result: column "n" row 2: "many" is not a number');
  });
});

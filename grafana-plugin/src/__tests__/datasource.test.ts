/**
 * The datasource's query(), metricFindQuery() and health check against the real relay binary
 * (synthetic flows in a scratch store, HTTP API on loopback), reached through plugin.json's
 * proxy route as Grafana's server would apply it.
 */
import {
  DataFrame,
  DataQueryRequest,
  DataSourceInstanceSettings,
  FieldType,
  TypedVariableModel,
  dateTime,
} from '@grafana/data';
import { TemplateSrv, setBackendSrv, setTemplateSrv } from '@grafana/runtime';

import { DataSource } from '../datasource';
import { fieldValues } from '../frames';
import { expectNodeGraphRules } from '../testing/nodeGraph';
import { Relay, proxyBackendSrv, startRelay } from '../testing/liveRelay';
import { WebbOptions, WebbQuery } from '../types';

jest.setTimeout(60_000);

const FLOWS = 3000;
const TOKEN = 'plugin-test-token';
/** Grafana's data source proxy URL for this instance. */
const INSTANCE_URL = '/api/datasources/proxy/uid/webb';

let relay: Relay;
let now: number;

beforeAll(async () => {
  relay = await startRelay({ flows: FLOWS, token: TOKEN });
  now = Date.now();
});

afterAll(async () => {
  await relay?.stop();
});

/** A datasource as Grafana would construct it, its proxy wired to the live relay. */
function datasource(opts: { token?: string; tempo?: string } = {}): DataSource {
  const jsonData: WebbOptions = {
    relayUrl: relay.url,
    tempoDatasourceUid: opts.tempo,
    tempoDatasourceName: opts.tempo ? 'Tempo' : undefined,
  };
  setBackendSrv(proxyBackendSrv(INSTANCE_URL, jsonData as Record<string, unknown>, { apiToken: opts.token ?? TOKEN }));
  return new DataSource({
    uid: 'webb',
    name: 'Webb',
    type: 'webb-flows-datasource',
    url: INSTANCE_URL,
    access: 'proxy',
    readOnly: false,
    jsonData,
    meta: {} as DataSourceInstanceSettings['meta'],
  } as DataSourceInstanceSettings<WebbOptions>);
}

/** The last two hours: the synthetic flows span the hour before the relay started. */
function request(targets: Array<Partial<WebbQuery>>, hours = 2): DataQueryRequest<WebbQuery> {
  const from = dateTime(now - hours * 3600_000);
  const to = dateTime(now + 60_000);
  return {
    targets: targets.map((t, i) => ({ refId: String.fromCharCode(65 + i), ...t })) as WebbQuery[],
    range: { from, to, raw: { from, to } },
    scopedVars: {},
    requestId: 'test',
    interval: '1m',
    intervalMs: 60_000,
    timezone: 'utc',
    app: 'dashboard',
    startTime: now,
  } as DataQueryRequest<WebbQuery>;
}

async function one(ds: DataSource, target: Partial<WebbQuery>): Promise<DataFrame> {
  const { data } = await ds.query(request([target]));
  expect(data).toHaveLength(1);
  return data[0] as DataFrame;
}

async function sqlCount(ds: DataSource, where: string): Promise<number> {
  const f = await one(ds, { queryType: 'sql', sql: `SELECT count(*) AS n FROM flows WHERE ${where}` });
  return fieldValues(f, 'n')[0] as number;
}

describe('health check (GET /api/v1/status)', () => {
  it('reports the relay version and how many flows it stores', async () => {
    const r = await datasource().testDatasource();
    expect(r.status).toBe('success');
    expect(r.message).toMatch(
      new RegExp(
        `^Connected to webb-relay \\S+: ${FLOWS} stored flows, from \\S+ to \\S+; 0 agent\\(s\\) connected\\.$`
      )
    );
  });

  it('a wrong token is an error that says which setting to fix', async () => {
    const r = await datasource({ token: 'wrong' }).testDatasource();
    expect(r.status).toBe('error');
    expect(r.message).toContain('relay GET /api/v1/status: 401 missing or wrong bearer token');
    expect(r.message).toContain('set "API token" to its --api-token');
  });
});

describe('flows query (GET /api/v1/flows)', () => {
  it('gives the newest flows of the range, oldest first, at most the limit', async () => {
    const f = await one(datasource(), { queryType: 'flows', limit: 200 });
    expect(f.refId).toBe('A');
    expect(f.length).toBe(200);
    const times = fieldValues(f, 'Time') as number[];
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    expect(times[0]).toBeGreaterThanOrEqual(now - 2 * 3600_000);
    expect(times[times.length - 1]).toBeLessThanOrEqual(now);
    expect(f.meta?.notices?.[0].text).toMatch(/More flows matched than the 200 shown/);
  });

  it('verdict DROPPED gives exactly the dropped flows, each with its reason and denying policy', async () => {
    const ds = datasource();
    const f = await one(ds, { queryType: 'flows', verdict: ['DROPPED'], limit: 10000 });
    expect(f.length).toBe(await sqlCount(ds, "verdict = 'DROPPED'"));
    expect(f.length).toBeGreaterThan(0);
    expect(new Set(fieldValues(f, 'Verdict'))).toEqual(new Set(['DROPPED']));
    for (const reason of fieldValues(f, 'Drop reason')) {
      expect(reason).not.toBe('');
    }
    for (const policy of fieldValues(f, 'Denied by')) {
      expect(policy).toMatch(/\S+\/\S+ \(\w+\)/);
    }
  });

  it('namespace matches either end, as hubble observe --namespace does', async () => {
    const ds = datasource();
    const f = await one(ds, { queryType: 'flows', namespace: 'ns-3', limit: 10000 });
    const src = fieldValues(f, 'Source') as string[];
    const dst = fieldValues(f, 'Destination') as string[];
    src.forEach((s, i) => expect(s.startsWith('ns-3/') || dst[i].startsWith('ns-3/')).toBe(true));
    expect(f.length).toBe(await sqlCount(ds, "(source_namespace = 'ns-3' OR destination_namespace = 'ns-3')"));
  });

  it('HTTP status, protocol and free FlowFilter JSON narrow the flows together', async () => {
    const ds = datasource();
    const f = await one(ds, {
      queryType: 'flows',
      protocol: ['http'],
      httpStatus: '200',
      filterJson: '{"source_label": ["k8s:app=app16"]}',
      limit: 10000,
    });
    expect(f.length).toBeGreaterThan(0);
    expect(new Set(fieldValues(f, 'HTTP status'))).toEqual(new Set([200]));
    expect(new Set(fieldValues(f, 'Protocol'))).toEqual(new Set(['HTTP']));
    expect(new Set(fieldValues(f, 'Source workload'))).toEqual(new Set(['ns-16/app16']));
  });

  it('a trace id finds the flows of that trace, and the column links to Tempo', async () => {
    const ds = datasource({ tempo: 'tempo-main' });
    const all = await one(ds, { queryType: 'flows', protocol: ['http'], limit: 50 });
    const trace = (fieldValues(all, 'Trace ID') as string[]).find((t) => t !== '');
    expect(trace).toMatch(/^[0-9a-f]{32}$/);
    const f = await one(ds, { queryType: 'flows', traceId: trace });
    expect(f.length).toBeGreaterThan(0);
    expect(new Set(fieldValues(f, 'Trace ID'))).toEqual(new Set([trace]));
    const link = f.fields.find((x) => x.name === 'Trace ID')?.config.links?.[0];
    expect(link?.internal?.datasourceUid).toBe('tempo-main');
    expect(link?.internal?.query).toMatchObject({ query: '${__value.raw}' });
  });

  it('a query the editor marks invalid is refused before asking the relay', async () => {
    await expect(datasource().query(request([{ queryType: 'flows', httpStatus: '2xx' }]))).rejects.toThrow(
      'Query A: HTTP status "2xx" is not a code or class (expected e.g. 404, 4+ or 40+)'
    );
  });

  it('dashboard variables are interpolated into the filters', async () => {
    await withVariables({ namespace: ['ns-5'], verdict: ['DROPPED'] }, async () => {
      const ds = datasource();
      const f = await one(ds, { queryType: 'flows', namespace: '$namespace', verdict: ['$verdict'], limit: 10000 });
      expect(f.length).toBe(
        await sqlCount(ds, "verdict = 'DROPPED' AND (source_namespace = 'ns-5' OR destination_namespace = 'ns-5')")
      );
      expect(new Set(fieldValues(f, 'Verdict'))).toEqual(new Set(['DROPPED']));
    });
  });

  it('a multi-value variable matches any of its values; its All value (.*) matches everything', async () => {
    await withVariables({ namespace: ['ns-3', 'ns-5'], workload: ['.*'] }, async () => {
      const ds = datasource();
      const f = await one(ds, { queryType: 'flows', namespace: '$namespace', workload: '$workload', limit: 10000 });
      const either = "(source_namespace IN ('ns-3', 'ns-5') OR destination_namespace IN ('ns-3', 'ns-5'))";
      expect(f.length).toBe(await sqlCount(ds, `${either} AND $__timeFilter(time)`));
      expect(f.length).toBeGreaterThan(
        await sqlCount(ds, "(source_namespace = 'ns-3' OR destination_namespace = 'ns-3')")
      );
    });
  });
});

/**
 * Runs `body` with dashboard variables set, through a stand-in for Grafana's TemplateSrv that
 * formats multi-value variables as Grafana does: `{a,b}` by default, `a,b` with format `csv`.
 */
async function withVariables(vars: Record<string, string[]>, body: () => Promise<void>) {
  setTemplateSrv({
    replace: (text?: string, _scoped?: unknown, format?: string) =>
      (text ?? '').replace(/\$(\w+)/g, (whole, name: string) => {
        const v = vars[name];
        if (!v) {
          return whole;
        }
        return v.length === 1 ? v[0] : format === 'csv' ? v.join(',') : `{${v.join(',')}}`;
      }),
    getVariables: () => [] as TypedVariableModel[],
    containsTemplate: (t?: string) => !!t?.includes('$'),
    updateTimeRange: () => {},
  } as unknown as TemplateSrv);
  try {
    await body();
  } finally {
    setTemplateSrv(undefined as unknown as TemplateSrv);
  }
}

describe('service map query (GET /api/v1/service-map)', () => {
  it('gives nodes and edges frames that keep the Node Graph rules', async () => {
    const ds = datasource();
    const { data } = await ds.query(request([{ queryType: 'serviceMap' }]));
    const frames = data as DataFrame[];
    expect(frames.map((f) => f.name)).toEqual(['nodes', 'edges']);
    expectNodeGraphRules(frames);
    expect(frames[0].length).toBeGreaterThan(1);
    expect(frames[1].length).toBeGreaterThan(0);
    // Every dropped flow of the range is on exactly one edge.
    const drops = (fieldValues(frames[1], 'detail__drops') as number[]).reduce((a, b) => a + b, 0);
    expect(drops).toBe(await sqlCount(ds, "verdict = 'DROPPED' AND $__timeFilter(time)"));
    expect(drops).toBeGreaterThan(0);
    // Error arcs show exactly when some request was answered with a 5xx.
    const errors = Math.max(...(fieldValues(frames[0], 'arc__errors') as number[]));
    expect(errors > 0).toBe((await sqlCount(ds, 'http_code >= 500 AND $__timeFilter(time)')) > 0);
  });

  it('a namespace keeps only edges with an end in it', async () => {
    const { data } = await datasource().query(request([{ queryType: 'serviceMap', namespace: 'ns-3' }]));
    const [nodes, edges] = data as DataFrame[];
    expectNodeGraphRules([nodes, edges]);
    const ns = new Map((fieldValues(nodes, 'id') as string[]).map((id, i) => [id, fieldValues(nodes, 'subtitle')[i]]));
    const src = fieldValues(edges, 'source') as string[];
    const dst = fieldValues(edges, 'target') as string[];
    expect(src.length).toBeGreaterThan(0);
    src.forEach((s, i) => expect(ns.get(s) === 'ns-3' || ns.get(dst[i]) === 'ns-3').toBe(true));
  });
});

describe('service map of several namespaces', () => {
  it('is the union of the maps of each', async () => {
    const ds = datasource();
    const both = (await ds.query(request([{ queryType: 'serviceMap', namespace: 'ns-3,ns-5' }]))).data as DataFrame[];
    expectNodeGraphRules(both);
    const edgeIds = (frames: DataFrame[]) => fieldValues(frames[1], 'id') as string[];
    const ns3 = edgeIds(
      (await ds.query(request([{ queryType: 'serviceMap', namespace: 'ns-3' }]))).data as DataFrame[]
    );
    const ns5 = edgeIds(
      (await ds.query(request([{ queryType: 'serviceMap', namespace: 'ns-5' }]))).data as DataFrame[]
    );
    expect(new Set(edgeIds(both))).toEqual(new Set([...ns3, ...ns5]));
    expect(edgeIds(both).length).toBe(new Set([...ns3, ...ns5]).size);
  });
});

describe('SQL query (POST /api/v1/sql)', () => {
  it('gives a frame with field types from the result columns', async () => {
    const f = await one(datasource(), {
      queryType: 'sql',
      sql: 'SELECT time, verdict, http_code, ip_encrypted FROM flows WHERE $__timeFilter(time) ORDER BY time DESC LIMIT 5',
    });
    expect(f.fields.map((x) => [x.name, x.type])).toEqual([
      ['time', FieldType.time],
      ['verdict', FieldType.string],
      ['http_code', FieldType.number],
      ['ip_encrypted', FieldType.boolean],
    ]);
    expect(f.length).toBe(5);
    expect(f.meta?.executedQueryString).toMatch(/time >= TIMESTAMP '\d{4}-\d\d-\d\dT/);
  });

  it('$__timeFilter covers the dashboard range: every synthetic flow is in the last two hours', async () => {
    const ds = datasource();
    const counted = await sqlCount(ds, '$__timeFilter(time)');
    expect(counted).toBe(FLOWS);
  });

  it("a write is refused with the relay's reason", async () => {
    await expect(datasource().query(request([{ queryType: 'sql', sql: 'DROP TABLE flows' }]))).rejects.toThrow(
      'relay POST /api/v1/sql: 400 DROP TABLE is not allowed: only read-only queries (SELECT) over table `flows` can be run'
    );
  });
});

describe('template variables (metricFindQuery)', () => {
  it('namespaces are those of the service map, each once, sorted', async () => {
    const ds = datasource();
    const range = {
      from: dateTime(now - 2 * 3600_000),
      to: dateTime(now + 60_000),
      raw: { from: 'now-2h', to: 'now' },
    };
    const values = await ds.metricFindQuery('namespaces', { range });
    const texts = values.map((v) => v.text);
    expect(texts.length).toBeGreaterThan(1);
    expect([...new Set(texts)].sort()).toEqual(texts);
    const { data } = await ds.query(request([{ queryType: 'serviceMap' }]));
    expect(texts).toEqual(
      [...new Set(fieldValues(data[0] as DataFrame, 'subtitle') as string[])].filter((n) => n !== '').sort()
    );
  });

  it('workloads(ns) are the workloads of that namespace', async () => {
    const ds = datasource();
    const range = {
      from: dateTime(now - 2 * 3600_000),
      to: dateTime(now + 60_000),
      raw: { from: 'now-2h', to: 'now' },
    };
    const texts = (await ds.metricFindQuery('workloads(ns-3)', { range })).map((v) => v.text);
    expect(texts.length).toBeGreaterThan(0);
    const { data } = await ds.query(request([{ queryType: 'serviceMap', namespace: 'ns-3' }]));
    const nodes = data[0] as DataFrame;
    const ids = fieldValues(nodes, 'id') as string[];
    expect(texts).toEqual(
      [...new Set(ids.filter((id) => id.startsWith('ns-3/')).map((id) => id.slice('ns-3/'.length)))].sort()
    );
  });

  it('an unknown variable query says what is accepted', async () => {
    await expect(datasource().metricFindQuery('pods')).rejects.toThrow(
      'variable query "pods": expected namespaces, workloads or workloads(<namespace>)'
    );
  });
});

describe('a relay started without --api-token', () => {
  let open: Relay;
  beforeAll(async () => {
    open = await startRelay({ flows: 100 });
  });
  afterAll(async () => {
    await open?.stop();
  });

  it('answers a data source with no token configured', async () => {
    const jsonData: WebbOptions = { relayUrl: open.url };
    setBackendSrv(proxyBackendSrv(INSTANCE_URL, jsonData as Record<string, unknown>, {}));
    const ds = new DataSource({
      uid: 'webb-open',
      name: 'Webb (no token)',
      type: 'webb-flows-datasource',
      url: INSTANCE_URL,
      access: 'proxy',
      readOnly: false,
      jsonData,
      meta: {} as DataSourceInstanceSettings['meta'],
    } as DataSourceInstanceSettings<WebbOptions>);
    const health = await ds.testDatasource();
    expect(health).toMatchObject({ status: 'success' });
    expect(health.message).toContain(': 100 stored flows');
    const { data } = await ds.query(request([{ queryType: 'flows', limit: 10000 }]));
    expect((data[0] as DataFrame).length).toBe(100);
  });
});

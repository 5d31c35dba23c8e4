import {
  CoreApp,
  DataFrame,
  DataQueryRequest,
  DataQueryResponse,
  DataSourceApi,
  DataSourceInstanceSettings,
  LegacyMetricFindQueryOptions,
  MetricFindValue,
  ScopedVars,
  TestDataSourceResponse,
} from '@grafana/data';
import { FetchResponse, getBackendSrv, getTemplateSrv, isFetchError } from '@grafana/runtime';
import { lastValueFrom } from 'rxjs';

import { buildFlowFilters, nameList, validateQuery } from './filters';
import { TraceTarget, flowsFrame, serviceMapFrames, sqlFrame } from './frames';
import {
  DEFAULT_FLOWS_LIMIT,
  DEFAULT_QUERY,
  FlowsAnswer,
  MapEdge,
  MapNode,
  ServiceMapAnswer,
  SqlAnswer,
  StatusAnswer,
  WebbOptions,
  WebbQuery,
  WebbVariableQuery,
} from './types';

/** The proxy route of plugin.json: Grafana's server adds the relay URL and the bearer token. */
export const ROUTE = 'relay';

/** `$__timeFrom`, `$__timeTo` and `$__timeFilter(column)` in SQL, as RFC 3339 timestamps. */
export function expandSqlMacros(sql: string, from: number, to: number): string {
  const f = new Date(from).toISOString();
  const t = new Date(to).toISOString();
  return sql
    .replace(/\$__timeFilter\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)/g, `($1 >= TIMESTAMP '${f}' AND $1 < TIMESTAMP '${t}')`)
    .replace(/\$__timeFrom(\(\))?/g, `TIMESTAMP '${f}'`)
    .replace(/\$__timeTo(\(\))?/g, `TIMESTAMP '${t}'`);
}

/** `namespaces` / `workloads` / `workloads(ns)` → what a variable asks for. */
export function parseVariableQuery(q: string | WebbVariableQuery): WebbVariableQuery {
  if (typeof q !== 'string') {
    return q;
  }
  const text = q.trim();
  const m = /^(namespaces|workloads)\s*(?:\(\s*([^)]*?)\s*\))?$/.exec(text);
  if (!m) {
    throw new Error(`variable query "${text}": expected namespaces, workloads or workloads(<namespace>)`);
  }
  return m[1] === 'namespaces' ? { kind: 'namespaces' } : { kind: 'workloads', namespace: m[2] || undefined };
}

export class DataSource extends DataSourceApi<WebbQuery, WebbOptions> {
  readonly base: string;
  readonly tempo?: TraceTarget;

  constructor(instanceSettings: DataSourceInstanceSettings<WebbOptions>) {
    super(instanceSettings);
    this.base = `${instanceSettings.url ?? ''}/${ROUTE}`;
    const uid = instanceSettings.jsonData?.tempoDatasourceUid;
    this.tempo = uid ? { uid, name: instanceSettings.jsonData?.tempoDatasourceName } : undefined;
  }

  getDefaultQuery(_: CoreApp): Partial<WebbQuery> {
    return DEFAULT_QUERY;
  }

  /** Dashboard variables in every text field of a query. */
  applyTemplateVariables(query: WebbQuery, scopedVars: ScopedVars): WebbQuery {
    const srv = getTemplateSrv();
    const r = (s?: string) => (s === undefined || !srv ? s : srv.replace(s, scopedVars));
    // Multi-value variables as `a,b`; the name fields and lists split on commas.
    const csv = (s?: string) => (s === undefined || !srv ? s : srv.replace(s, scopedVars, 'csv'));
    const list = (xs?: string[]) => {
      const items = xs?.flatMap((x) => (csv(x) ?? '').split(',').map((v) => v.trim())).filter((v) => v !== '');
      // A variable's All value (`.*`, `*`) means any: no filter on that field.
      return items?.some((v) => v === '.*' || v === '*') ? [] : items;
    };
    return {
      ...query,
      namespace: csv(query.namespace),
      pod: csv(query.pod),
      workload: csv(query.workload),
      verdict: list(query.verdict),
      protocol: list(query.protocol),
      httpStatus: csv(query.httpStatus),
      traceId: r(query.traceId),
      filterJson: r(query.filterJson),
      sql: r(query.sql),
    };
  }

  async query(request: DataQueryRequest<WebbQuery>): Promise<DataQueryResponse> {
    const from = request.range.from.valueOf();
    const to = request.range.to.valueOf();
    const targets = request.targets.filter((t) => !t.hide);
    const results = await Promise.all(
      targets.map((t) => this.runOne(this.applyTemplateVariables(t, request.scopedVars), from, to))
    );
    return { data: results.flat() };
  }

  private async runOne(q: WebbQuery, from: number, to: number): Promise<DataFrame[]> {
    const problems = validateQuery(q);
    if (problems.length) {
      throw new Error(`Query ${q.refId}: ${problems.map((p) => p.message).join('; ')}`);
    }
    switch (q.queryType ?? 'flows') {
      case 'flows': {
        const filters = buildFlowFilters(q);
        const params: Record<string, string> = {
          since: String(from),
          until: String(to),
          limit: String(q.limit ?? DEFAULT_FLOWS_LIMIT),
          extras: 'true',
        };
        if (filters.length) {
          params.filter = JSON.stringify(filters);
        }
        const answer = await this.get<FlowsAnswer>('/api/v1/flows', params);
        return [flowsFrame(answer, q.refId, this.tempo)];
      }
      case 'serviceMap': {
        const answer = await this.serviceMap(from, to, nameList(q.namespace));
        return serviceMapFrames(answer, q.refId);
      }
      case 'sql': {
        const sql = expandSqlMacros(q.sql ?? '', from, to);
        const answer = await this.request<SqlAnswer>('POST', '/api/v1/sql', undefined, { query: sql });
        return [sqlFrame(answer, q.refId, sql)];
      }
      default:
        throw new Error(`Query ${q.refId}: unknown query type "${q.queryType}" (expected flows, serviceMap or sql)`);
    }
  }

  /**
   * The service map of the range: of every namespace when `namespaces` is empty, else the union
   * of the maps of each (the relay's map takes one namespace).
   */
  private async serviceMap(from: number, to: number, namespaces: string[]): Promise<ServiceMapAnswer> {
    const range = { since: String(from), until: String(to) };
    if (namespaces.length <= 1) {
      return this.get<ServiceMapAnswer>(
        '/api/v1/service-map',
        namespaces.length ? { ...range, namespace: namespaces[0] } : range
      );
    }
    const maps = await Promise.all(
      namespaces.map((namespace) => this.get<ServiceMapAnswer>('/api/v1/service-map', { ...range, namespace }))
    );
    const nodes = new Map<string, MapNode>();
    const edges = new Map<string, MapEdge>();
    for (const m of maps) {
      m.nodes.forEach((n) => nodes.set(n.id, n));
      m.edges.forEach((e) => edges.set(e.id, e));
    }
    return { nodes: [...nodes.values()], edges: [...edges.values()], loss: maps[0].loss };
  }

  /** Namespaces and workloads seen in the time range (from the service map). */
  async metricFindQuery(
    query: string | WebbVariableQuery,
    options?: LegacyMetricFindQueryOptions
  ): Promise<MetricFindValue[]> {
    const srv = getTemplateSrv();
    const raw = typeof query === 'string' && srv ? srv.replace(query, options?.scopedVars) : query;
    const v = parseVariableQuery(raw);
    if (v.namespace && srv) {
      v.namespace = srv.replace(v.namespace, options?.scopedVars, 'csv');
    }
    // Without a range (Grafana passes one when the variable refreshes on time range change):
    // the last hour, as the relay's own default.
    const to = options?.range?.to.valueOf() ?? Date.now();
    const from = options?.range?.from.valueOf() ?? to - 3600_000;
    const namespaces = v.kind === 'workloads' ? nameList(v.namespace) : [];
    const map = await this.serviceMap(from, to, namespaces);
    const seen = new Set<string>();
    for (const n of map.nodes) {
      if (!n.namespace || !n.workload) {
        continue; // an address outside every endpoint
      }
      if (v.kind === 'namespaces') {
        seen.add(n.namespace);
      } else if (namespaces.length === 0 || namespaces.includes(n.namespace)) {
        seen.add(n.workload);
      }
    }
    return [...seen].sort().map((text) => ({ text, value: text }));
  }

  /** The health check: `/api/v1/status` through the proxy, with what it says about the store. */
  async testDatasource(): Promise<TestDataSourceResponse> {
    let status: StatusAnswer;
    try {
      status = await this.get<StatusAnswer>('/api/v1/status');
    } catch (e) {
      return { status: 'error', message: (e as Error).message };
    }
    const version = status.version ?? 'webb-relay';
    if (!status.store) {
      return {
        status: 'error',
        message: `${version} answers, but its flow history is off (--store-dir none): flows, service map and SQL need it.`,
      };
    }
    const s = status.store;
    const agents = status.connected_nodes ?? 0;
    const span = s.oldest && s.newest ? `, from ${s.oldest} to ${s.newest}` : '';
    return {
      status: 'success',
      message: `Connected to ${version}: ${s.written_rows ?? 0} stored flows${span}; ${agents} agent(s) connected.`,
    };
  }

  private get<T>(path: string, params?: Record<string, string>): Promise<T> {
    return this.request<T>('GET', path, params);
  }

  private async request<T>(
    method: 'GET' | 'POST',
    path: string,
    params?: Record<string, string>,
    body?: unknown
  ): Promise<T> {
    const qs = params && Object.keys(params).length ? `?${new URLSearchParams(params).toString()}` : '';
    const url = `${this.base}${path}${qs}`;
    let response: FetchResponse<T>;
    try {
      response = await lastValueFrom(
        getBackendSrv().fetch<T>({
          url,
          method,
          data: body,
          headers: body === undefined ? undefined : { 'Content-Type': 'application/json' },
          showErrorAlert: false,
        })
      );
    } catch (e) {
      throw new Error(relayError(e, method, path));
    }
    return response.data;
  }
}

/** A failed request as one sentence: what was asked, the status, and the relay's own words. */
export function relayError(e: unknown, method: string, path: string): string {
  if (isFetchError(e)) {
    const said = (e.data as { error?: string; message?: string } | undefined) ?? {};
    const text = said.error ?? said.message ?? e.statusText ?? '';
    const hint =
      e.status === 401
        ? ' (the relay wants the token it was started with: set "API token" to its --api-token)'
        : e.status === 502 || e.status === 504 || !e.status
          ? ' (is the relay URL right and the relay running?)'
          : '';
    return `relay ${method} ${path}: ${e.status ?? 'no answer'} ${text}${hint}`.trim();
  }
  return `relay ${method} ${path}: ${(e as Error)?.message ?? String(e)}`;
}

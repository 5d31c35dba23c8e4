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

import { buildFlowFilters, validateQuery } from './filters';
import { TraceTarget, flowsFrame, serviceMapFrames, sqlFrame } from './frames';
import {
  DEFAULT_FLOWS_LIMIT,
  DEFAULT_QUERY,
  FlowsAnswer,
  ServiceMapAnswer,
  SqlAnswer,
  StatusAnswer,
  WebbOptions,
  WebbQuery,
  WebbVariableQuery,
} from './types';

/** The proxy route of plugin.json: Grafana's server adds the relay URL and the bearer token. */
export const ROUTE = 'relay';

/** A time as the relay takes it: Unix milliseconds. */
function ms(t: { valueOf(): number }): string {
  return String(Math.round(t.valueOf()));
}

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
    const list = (xs?: string[]) => xs?.flatMap((x) => (r(x) ?? '').split(',').filter((v) => v !== ''));
    return {
      ...query,
      namespace: r(query.namespace),
      pod: r(query.pod),
      workload: r(query.workload),
      verdict: list(query.verdict),
      protocol: list(query.protocol),
      httpStatus: r(query.httpStatus),
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
        const params: Record<string, string> = { since: String(from), until: String(to) };
        if (q.namespace?.trim()) {
          params.namespace = q.namespace.trim();
        }
        const answer = await this.get<ServiceMapAnswer>('/api/v1/service-map', params);
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

  /** Namespaces and workloads seen in the time range (from the service map). */
  async metricFindQuery(
    query: string | WebbVariableQuery,
    options?: LegacyMetricFindQueryOptions
  ): Promise<MetricFindValue[]> {
    const srv = getTemplateSrv();
    const raw = typeof query === 'string' && srv ? srv.replace(query, options?.scopedVars) : query;
    const v = parseVariableQuery(raw);
    if (v.namespace && srv) {
      v.namespace = srv.replace(v.namespace, options?.scopedVars);
    }
    const params: Record<string, string> = {};
    if (options?.range) {
      params.since = ms(options.range.from);
      params.until = ms(options.range.to);
    }
    if (v.kind === 'workloads' && v.namespace) {
      params.namespace = v.namespace;
    }
    const map = await this.get<ServiceMapAnswer>('/api/v1/service-map', params);
    const seen = new Set<string>();
    for (const n of map.nodes) {
      if (!n.namespace || !n.workload) {
        continue; // an address outside every endpoint
      }
      if (v.kind === 'namespaces') {
        seen.add(n.namespace);
      } else if (!v.namespace || n.namespace === v.namespace) {
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

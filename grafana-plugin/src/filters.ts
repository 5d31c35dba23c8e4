import { MAX_FLOWS_LIMIT, PROTOCOLS, VERDICTS, WebbQuery } from './types';

/** A Hubble FlowFilter in protojson (field names as Hubble's JSON prints them). */
export type FlowFilter = Record<string, unknown>;

/** One problem with a query: the editor shows it under `field`, `query()` refuses with it. */
export interface QueryProblem {
  field:
    | 'namespace'
    | 'pod'
    | 'workload'
    | 'verdict'
    | 'protocol'
    | 'httpStatus'
    | 'traceId'
    | 'filterJson'
    | 'limit'
    | 'sql';
  message: string;
}

const STATUS = /^[1-5](\d\d|\d?\+)$/;
const TRACE_ID = /^[0-9a-f]{32}$/;
/** Kubernetes names: a DNS label (namespaces) or subdomain (pods, workloads); prefixes allowed. */
const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** Values meaning "any": the All value of a dashboard variable (`.*`, `*`). */
const ANY = new Set(['.*', '*']);

/**
 * A name field's values: comma-separated (a multi-value variable interpolates as `a,b`), each
 * one or'ed; `[]` (no filter) when empty or when a value means any (`.*`, `*`).
 */
export function nameList(text: string | undefined): string[] {
  const items = (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return items.some((s) => ANY.has(s)) ? [] : items;
}

/** `200, 5+` → ["200", "5+"]. */
export function statusList(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Parses the free FlowFilter JSON: one object or an array of them; `[]` when empty. */
export function parseFilterJson(text: string | undefined): FlowFilter[] {
  const t = (text ?? '').trim();
  if (t === '') {
    return [];
  }
  let value: unknown;
  try {
    value = JSON.parse(t);
  } catch (e) {
    throw new Error(`not valid JSON (${(e as Error).message})`);
  }
  const list = Array.isArray(value) ? value : [value];
  list.forEach((f, i) => {
    if (typeof f !== 'object' || f === null || Array.isArray(f)) {
      throw new Error(
        Array.isArray(value)
          ? `item ${i + 1} is not a FlowFilter object`
          : 'expected a FlowFilter object like {"source_label": ["k8s:app=web"]} or an array of them'
      );
    }
  });
  return list as FlowFilter[];
}

/** Everything wrong with a query, each naming its field; empty when it can run. */
export function validateQuery(q: WebbQuery): QueryProblem[] {
  const problems: QueryProblem[] = [];
  const type = q.queryType ?? 'flows';
  const name = (field: 'namespace' | 'pod' | 'workload', label: string, value?: string) => {
    for (const v of nameList(value)) {
      if (!v.includes('$') && !NAME.test(v)) {
        problems.push({
          field,
          message: `${label} "${v}" is not a Kubernetes name (lower-case letters, digits, '-' and '.')`,
        });
      }
    }
  };
  if (type === 'sql') {
    if (!q.sql?.trim()) {
      problems.push({
        field: 'sql',
        message: 'SQL: write a SELECT over table flows, e.g. SELECT verdict, count(*) FROM flows GROUP BY verdict',
      });
    }
    return problems;
  }
  name('namespace', 'Namespace', q.namespace);
  if (type === 'serviceMap') {
    return problems;
  }
  name('pod', 'Pod', q.pod);
  name('workload', 'Workload', q.workload);
  for (const v of q.verdict ?? []) {
    if (!(VERDICTS as readonly string[]).includes(v) && !v.includes('$')) {
      problems.push({ field: 'verdict', message: `Verdict "${v}" is not one of ${VERDICTS.join(', ')}` });
    }
  }
  for (const p of q.protocol ?? []) {
    if (!(PROTOCOLS as readonly string[]).includes(p.toLowerCase()) && !p.includes('$')) {
      problems.push({ field: 'protocol', message: `Protocol "${p}" is not one of ${PROTOCOLS.join(', ')}` });
    }
  }
  for (const s of statusList(q.httpStatus)) {
    if (!STATUS.test(s) && !s.includes('$')) {
      problems.push({
        field: 'httpStatus',
        message: `HTTP status "${s}" is not a code or class (expected e.g. 404, 4+ or 40+)`,
      });
    }
  }
  const trace = q.traceId?.trim();
  if (trace && !trace.includes('$') && !TRACE_ID.test(trace.toLowerCase())) {
    problems.push({ field: 'traceId', message: `Trace ID "${trace}" is not 32 hex digits (W3C trace id)` });
  }
  if (
    q.limit !== undefined &&
    q.limit !== null &&
    !(Number.isInteger(q.limit) && q.limit >= 1 && q.limit <= MAX_FLOWS_LIMIT)
  ) {
    problems.push({
      field: 'limit',
      message: `Limit must be a whole number from 1 to ${MAX_FLOWS_LIMIT}, not ${q.limit}`,
    });
  }
  if (!(q.filterJson ?? '').includes('$')) {
    try {
      const free = parseFilterJson(q.filterJson);
      const own = ownFields(q);
      for (const f of free) {
        const clash = Object.keys(f).find((k) => own.has(k));
        if (clash) {
          problems.push({
            field: 'filterJson',
            message: `FlowFilter JSON: "${clash}" is also set by the fields above; set it in one place`,
          });
          break;
        }
      }
    } catch (e) {
      problems.push({ field: 'filterJson', message: `FlowFilter JSON: ${(e as Error).message}` });
    }
  }
  return problems;
}

/** The FlowFilter keys the query's own fields produce. */
function ownFields(q: WebbQuery): Set<string> {
  const keys = new Set<string>();
  if (nameList(q.namespace).length || nameList(q.pod).length) {
    keys.add('source_pod').add('destination_pod');
  }
  if (nameList(q.workload).length) {
    keys.add('source_workload').add('destination_workload');
  }
  if (q.verdict?.length) {
    keys.add('verdict');
  }
  if (q.protocol?.length) {
    keys.add('protocol');
  }
  if (statusList(q.httpStatus).length) {
    keys.add('http_status_code');
  }
  if (q.traceId?.trim()) {
    keys.add('trace_id');
  }
  return keys;
}

/**
 * The relay's `filter` parameter for a flows query (already interpolated): Hubble's whitelist,
 * where a flow must match one FlowFilter and every field of it. Namespace, pod and workload
 * match either end of the flow, as `hubble observe --namespace/--pod` do, so they become one
 * filter for the source side and one for the destination side; the other fields and the free
 * JSON apply to both. `[]` means every flow.
 */
export function buildFlowFilters(q: WebbQuery): FlowFilter[] {
  const common: FlowFilter = {};
  if (q.verdict?.length) {
    common.verdict = [...q.verdict];
  }
  if (q.protocol?.length) {
    common.protocol = q.protocol.map((p) => p.toLowerCase());
  }
  const statuses = statusList(q.httpStatus);
  if (statuses.length) {
    common.http_status_code = statuses;
  }
  if (q.traceId?.trim()) {
    common.trace_id = [q.traceId.trim().toLowerCase()];
  }
  const namespaces = nameList(q.namespace);
  const pods = nameList(q.pod);
  const workloads = nameList(q.workload);
  // Hubble's pod filter: `namespace/pod-prefix`, `namespace/` for a whole namespace, or a bare
  // pod prefix meaning namespace `default`. Several values of one field are or'ed.
  const podFilters = namespaces.length
    ? namespaces.flatMap((n) => (pods.length ? pods.map((p) => `${n}/${p}`) : [`${n}/`]))
    : pods;
  const sides: FlowFilter[] = [];
  if (podFilters.length || workloads.length) {
    for (const side of ['source', 'destination']) {
      const f: FlowFilter = { ...common };
      if (podFilters.length) {
        f[`${side}_pod`] = podFilters;
      }
      if (workloads.length) {
        f[`${side}_workload`] = workloads.map((name) => ({ name }));
      }
      sides.push(f);
    }
  } else if (Object.keys(common).length) {
    sides.push(common);
  }
  const free = parseFilterJson(q.filterJson);
  if (free.length === 0) {
    return sides;
  }
  if (sides.length === 0) {
    return free;
  }
  // Both: every combination, so each free filter is ANDed with the fields above.
  return sides.flatMap((s) => free.map((f) => ({ ...f, ...s })));
}

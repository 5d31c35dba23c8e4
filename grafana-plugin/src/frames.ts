import {
  DataFrame,
  DataLink,
  Field,
  FieldColorModeId,
  FieldConfig,
  FieldType,
  QueryResultMetaNotice,
  createDataFrame,
} from '@grafana/data';

import { Endpoint, Flow, FlowsAnswer, MapEdge, MapNode, RelayLoss, ServiceMapAnswer, SqlAnswer } from './types';

/** Where trace ids link to: a Tempo data source. */
export interface TraceTarget {
  uid: string;
  name?: string;
}

interface FieldSpec {
  name: string;
  type: FieldType;
  values: unknown[];
  config?: FieldConfig;
}

function frame(refId: string | undefined, name: string | undefined, fields: FieldSpec[]): DataFrame {
  return createDataFrame({ refId, name, fields: fields.map((f) => ({ ...f, config: f.config ?? {} })) });
}

/** Notices for what the relay says it left out or lost. */
function lossNotices(loss: RelayLoss | undefined): QueryResultMetaNotice[] {
  if (!loss || !loss.total) {
    return [];
  }
  const where = loss.stages.map((s) => `${s.stage}${s.node ? ` on ${s.node}` : ''}: ${s.lost}`).join(', ');
  return [
    {
      severity: 'warning',
      text: `The relay has lost ${loss.total} flows so far (${where}); results may be incomplete.`,
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Flows
// ---------------------------------------------------------------------------------------------

/** `namespace/pod`, else the IP address. */
function endpointName(e: Endpoint | undefined, ip: string | undefined): string {
  if (e?.pod_name) {
    return e.namespace ? `${e.namespace}/${e.pod_name}` : e.pod_name;
  }
  return ip ?? '';
}

function workloadName(e: Endpoint | undefined): string {
  const w = e?.workloads?.[0]?.name;
  return w ? (e?.namespace ? `${e.namespace}/${w}` : w) : '';
}

/** The L7 protocol when there is one (HTTP, DNS), else the L4 one (TCP, UDP, ICMPv4…). */
function protocolOf(f: Flow): string {
  if (f.l7?.http) {
    return 'HTTP';
  }
  if (f.l7?.dns) {
    return 'DNS';
  }
  const l4 = f.l4 ?? {};
  return Object.keys(l4)[0] ?? '';
}

function destinationPort(f: Flow): number | null {
  const l4 = f.l4 ?? {};
  const p = l4.TCP ?? l4.UDP ?? l4.SCTP;
  return p?.destination_port ?? null;
}

function policyName(p: { name?: string; namespace?: string; kind?: string }): string {
  const name = p.namespace ? `${p.namespace}/${p.name ?? ''}` : (p.name ?? '');
  return p.kind ? `${name} (${p.kind})` : name;
}

/** Why a dropped flow was dropped: Hubble's reason, plus the kernel's when the extras say it. */
export function dropReason(f: Flow): string {
  if (f.verdict !== 'DROPPED') {
    return '';
  }
  const parts: string[] = [];
  if (f.drop_reason_desc) {
    parts.push(f.drop_reason_desc);
  }
  const kernel = f.extensions?.kernel_drop ?? f.extensions?.kernelDrop;
  if (kernel?.name || kernel?.symbol) {
    parts.push(`kernel: ${[kernel.name, kernel.symbol].filter(Boolean).join(' at ')}`);
  }
  return parts.join('; ') || 'unknown';
}

/** The policies that denied a flow: Hubble's `*_denied_by`, else Webb's default-deny attribution. */
export function deniedBy(f: Flow): string {
  const named = [...(f.ingress_denied_by ?? []), ...(f.egress_denied_by ?? [])].map(policyName);
  if (named.length) {
    return named.join(', ');
  }
  const dd = f.extensions?.default_deny ?? f.extensions?.defaultDeny;
  if (dd?.policies?.length) {
    return `default deny: ${dd.policies.join(', ')}`;
  }
  if (dd?.text) {
    return dd.text;
  }
  return '';
}

/** The trace id of a flow: its `trace_context`, else a W3C `traceparent` header it carries. */
function traceIdOf(f: Flow): string {
  const id = f.trace_context?.parent?.trace_id;
  if (id) {
    return id;
  }
  const header = f.l7?.http?.headers?.find((h) => h.key?.toLowerCase() === 'traceparent')?.value ?? '';
  // version-traceid-parentid-flags
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(header.trim().toLowerCase());
  return m ? m[1] : '';
}

function latencyMs(f: Flow): number | null {
  const ns = f.l7?.latency_ns;
  if (ns === undefined || ns === null || ns === '' || Number(ns) === 0) {
    return null;
  }
  return Number(ns) / 1e6;
}

/** A data link from a trace id to the trace in Tempo (what Loki's derived fields generate). */
export function traceLink(target: TraceTarget): DataLink {
  return {
    title: 'Open trace in Tempo',
    url: '',
    internal: {
      datasourceUid: target.uid,
      datasourceName: target.name ?? 'Tempo',
      query: { refId: 'trace', queryType: 'traceql', query: '${__value.raw}' },
    },
  };
}

/** The table of flows, oldest first, one row a flow. */
export function flowsFrame(answer: FlowsAnswer, refId?: string, tempo?: TraceTarget): DataFrame {
  const flows = answer.flows ?? [];
  const col = <T>(get: (f: Flow) => T) => flows.map(get);
  const f = frame(refId, 'flows', [
    { name: 'Time', type: FieldType.time, values: col((x) => (x.time ? Date.parse(x.time) : null)) },
    { name: 'Verdict', type: FieldType.string, values: col((x) => x.verdict ?? '') },
    { name: 'Source', type: FieldType.string, values: col((x) => endpointName(x.source, x.IP?.source)) },
    { name: 'Source workload', type: FieldType.string, values: col((x) => workloadName(x.source)) },
    { name: 'Destination', type: FieldType.string, values: col((x) => endpointName(x.destination, x.IP?.destination)) },
    { name: 'Destination workload', type: FieldType.string, values: col((x) => workloadName(x.destination)) },
    { name: 'Protocol', type: FieldType.string, values: col(protocolOf) },
    { name: 'Port', type: FieldType.number, values: col(destinationPort) },
    { name: 'Summary', type: FieldType.string, values: col((x) => x.Summary ?? '') },
    { name: 'HTTP status', type: FieldType.number, values: col((x) => x.l7?.http?.code || null) },
    { name: 'Latency', type: FieldType.number, values: col(latencyMs), config: { unit: 'ms' } },
    {
      name: 'Trace ID',
      type: FieldType.string,
      values: col(traceIdOf),
      config: tempo?.uid ? { links: [traceLink(tempo)] } : {},
    },
    { name: 'Drop reason', type: FieldType.string, values: col(dropReason) },
    { name: 'Denied by', type: FieldType.string, values: col(deniedBy) },
    { name: 'Direction', type: FieldType.string, values: col((x) => x.traffic_direction ?? '') },
    { name: 'Node', type: FieldType.string, values: col((x) => x.node_name ?? '') },
  ]);
  const notices = lossNotices(answer.loss);
  if (answer.truncated) {
    notices.unshift({
      severity: 'info',
      text: `More flows matched than the ${flows.length} shown (the newest of the range): narrow the filters or the time range, or raise the limit.`,
    });
  }
  f.meta = { preferredVisualisationType: 'table', notices };
  return f;
}

// ---------------------------------------------------------------------------------------------
// Service map → Node Graph
// ---------------------------------------------------------------------------------------------

const fixed = (color: string) => ({ mode: FieldColorModeId.Fixed, fixedColor: color });

/** A 0..1 ratio, whatever the input (NaN and out-of-range values are clamped). */
function ratio(x: number | null | undefined): number {
  const n = Number(x);
  return Number.isFinite(n) ? Math.min(1, Math.max(0, n)) : 0;
}

/**
 * `nodes` and `edges` frames for Grafana's Node Graph panel. Every edge's source and target is
 * a node (a node the relay left out is added with no traffic), and each node's `arc__` fields
 * sum to 1: the share of requests it served answered without and with a 5xx, or all `idle` when
 * it served no HTTP requests.
 */
export function serviceMapFrames(answer: ServiceMapAnswer, refId?: string): DataFrame[] {
  const byId = new Map<string, MapNode>();
  for (const n of answer.nodes ?? []) {
    if (!byId.has(n.id)) {
      byId.set(n.id, n);
    }
  }
  const edges: MapEdge[] = answer.edges ?? [];
  for (const e of edges) {
    for (const id of [e.source, e.target]) {
      if (!byId.has(id)) {
        const slash = id.indexOf('/');
        byId.set(id, {
          id,
          namespace: slash > 0 ? id.slice(0, slash) : '',
          workload: slash > 0 ? id.slice(slash + 1) : id,
          requests_per_second: 0,
          error_ratio: 0,
          drops: 0,
        });
      }
    }
  }
  const nodes = [...byId.values()];
  const served = (n: MapNode) => Number(n.requests_per_second) > 0;
  const nodesFrame = frame(refId, 'nodes', [
    { name: 'id', type: FieldType.string, values: nodes.map((n) => n.id) },
    { name: 'title', type: FieldType.string, values: nodes.map((n) => n.workload || n.id) },
    { name: 'subtitle', type: FieldType.string, values: nodes.map((n) => n.namespace) },
    {
      name: 'mainstat',
      type: FieldType.number,
      values: nodes.map((n) => Number(n.requests_per_second) || 0),
      config: { displayName: 'Requests', unit: 'reqps' },
    },
    {
      name: 'secondarystat',
      type: FieldType.number,
      values: nodes.map((n) => ratio(n.error_ratio)),
      config: { displayName: 'Errors (5xx)', unit: 'percentunit' },
    },
    {
      name: 'arc__success',
      type: FieldType.number,
      values: nodes.map((n) => (served(n) ? 1 - ratio(n.error_ratio) : 0)),
      config: { displayName: 'Success', color: fixed('green') },
    },
    {
      name: 'arc__errors',
      type: FieldType.number,
      values: nodes.map((n) => (served(n) ? ratio(n.error_ratio) : 0)),
      config: { displayName: 'Errors (5xx)', color: fixed('red') },
    },
    {
      name: 'arc__idle',
      type: FieldType.number,
      values: nodes.map((n) => (served(n) ? 0 : 1)),
      config: { displayName: 'No HTTP requests served', color: fixed('gray') },
    },
    {
      name: 'detail__drops',
      type: FieldType.number,
      values: nodes.map((n) => Number(n.drops) || 0),
      config: { displayName: 'Dropped flows' },
    },
  ]);
  nodesFrame.meta = { preferredVisualisationType: 'nodeGraph', notices: lossNotices(answer.loss) };

  const edgesFrame = frame(refId, 'edges', [
    { name: 'id', type: FieldType.string, values: edges.map((e) => e.id || `${e.source}->${e.target}`) },
    { name: 'source', type: FieldType.string, values: edges.map((e) => e.source) },
    { name: 'target', type: FieldType.string, values: edges.map((e) => e.target) },
    {
      name: 'mainstat',
      type: FieldType.number,
      values: edges.map((e) => Number(e.requests_per_second) || 0),
      config: { displayName: 'Requests', unit: 'reqps' },
    },
    {
      name: 'secondarystat',
      type: FieldType.number,
      values: edges.map((e) => e.p95_ms ?? null),
      config: { displayName: 'p95 latency', unit: 'ms' },
    },
    {
      name: 'detail__error_ratio',
      type: FieldType.number,
      values: edges.map((e) => ratio(e.error_ratio)),
      config: { displayName: 'Errors (5xx)', unit: 'percentunit' },
    },
    {
      name: 'detail__p50_ms',
      type: FieldType.number,
      values: edges.map((e) => e.p50_ms ?? null),
      config: { displayName: 'p50 latency', unit: 'ms' },
    },
    {
      name: 'detail__p99_ms',
      type: FieldType.number,
      values: edges.map((e) => e.p99_ms ?? null),
      config: { displayName: 'p99 latency', unit: 'ms' },
    },
    {
      name: 'detail__drops',
      type: FieldType.number,
      values: edges.map((e) => Number(e.drops) || 0),
      config: { displayName: 'Dropped flows' },
    },
    {
      name: 'color',
      type: FieldType.string,
      values: edges.map((e) => (Number(e.drops) > 0 ? 'red' : ratio(e.error_ratio) > 0 ? 'orange' : 'green')),
      config: { color: { mode: FieldColorModeId.Fixed } },
    },
  ]);
  edgesFrame.meta = { preferredVisualisationType: 'nodeGraph' };
  return [nodesFrame, edgesFrame];
}

// ---------------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------------

/** The Grafana field type for an Arrow type name as the relay prints it (`Int64`, `Timestamp(ns, "UTC")`…). */
export function arrowFieldType(arrow: string): FieldType {
  const t = arrow.trim();
  const dict = /^Dictionary\(\s*\w+\s*,\s*(.+)\)$/.exec(t);
  if (dict) {
    return arrowFieldType(dict[1]);
  }
  if (/^(U?Int(8|16|32|64)|Float(16|32|64)|Decimal(32|64|128|256)?\(.*\))$/.test(t)) {
    return FieldType.number;
  }
  if (/^(Timestamp\(.*\)|Date(32|64))$/.test(t)) {
    return FieldType.time;
  }
  if (/^(Utf8|LargeUtf8|Utf8View)$/.test(t)) {
    return FieldType.string;
  }
  if (t === 'Boolean') {
    return FieldType.boolean;
  }
  if (/^(Time(32|64)\(.*\)|Duration\(.*\)|Interval\(.*\))$/.test(t)) {
    return FieldType.string;
  }
  return FieldType.other;
}

function convert(value: unknown, type: FieldType, column: string, row: number): unknown {
  if (value === null || value === undefined) {
    return null;
  }
  switch (type) {
    case FieldType.number: {
      const n = typeof value === 'number' ? value : Number(value);
      if (Number.isNaN(n)) {
        throw new Error(`SQL result: column "${column}" row ${row + 1}: ${JSON.stringify(value)} is not a number`);
      }
      return n;
    }
    case FieldType.time: {
      const ms = typeof value === 'number' ? value : Date.parse(String(value));
      if (Number.isNaN(ms)) {
        throw new Error(`SQL result: column "${column}" row ${row + 1}: ${JSON.stringify(value)} is not a time`);
      }
      return ms;
    }
    case FieldType.string:
      return typeof value === 'string' ? value : JSON.stringify(value);
    default:
      return value;
  }
}

/** The SQL answer as a frame: one field a column, typed from the Arrow types. */
export function sqlFrame(answer: SqlAnswer, refId?: string, query?: string): DataFrame {
  const fields: FieldSpec[] = answer.columns.map((c, i) => {
    const type = arrowFieldType(c.type);
    return {
      name: c.name,
      type,
      values: answer.rows.map((r, row) => convert(r[i], type, c.name, row)),
    };
  });
  const f = frame(refId, 'sql', fields);
  const notices = lossNotices(answer.loss);
  if (answer.truncated) {
    notices.unshift({
      severity: 'warning',
      text: `The result was cut at ${answer.rows.length} rows by the relay: add a LIMIT or aggregate.`,
    });
  }
  f.meta = { preferredVisualisationType: 'table', executedQueryString: query, notices };
  return f;
}

/** The values of a frame's field, by name (for callers that read frames back). */
export function fieldValues(f: DataFrame, name: string): unknown[] {
  const field: Field | undefined = f.fields.find((x) => x.name === name);
  if (!field) {
    throw new Error(`frame ${f.name ?? ''} has no field ${name}`);
  }
  return Array.from(field.values);
}

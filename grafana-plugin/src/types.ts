import { DataSourceJsonData } from '@grafana/data';
import { DataQuery } from '@grafana/schema';

/** The query types; dashboards refer to these exact strings. */
export type QueryType = 'flows' | 'serviceMap' | 'sql';

export const QUERY_TYPES: Array<{ value: QueryType; label: string; description: string }> = [
  { value: 'flows', label: 'Flows', description: 'Stored flows over the time range, as a table' },
  { value: 'serviceMap', label: 'Service map', description: 'Workloads and their traffic, for the Node Graph panel' },
  { value: 'sql', label: 'SQL', description: 'A read-only SQL query over table `flows`' },
];

/** Hubble's verdicts, as the relay prints them. */
export const VERDICTS = ['FORWARDED', 'DROPPED', 'ERROR', 'AUDIT', 'REDIRECTED', 'TRACED', 'TRANSLATED'] as const;

/** Protocols a Hubble FlowFilter's `protocol` accepts. */
export const PROTOCOLS = ['tcp', 'udp', 'icmp', 'icmpv4', 'icmpv6', 'sctp', 'http', 'dns', 'kafka'] as const;

/** The flows one query asks for when it names no limit, and the most the relay gives. */
export const DEFAULT_FLOWS_LIMIT = 1000;
export const MAX_FLOWS_LIMIT = 10000;

export interface WebbQuery extends DataQuery {
  queryType?: QueryType;
  // Flows (Hubble-style filters; either side of the flow, as `hubble observe --namespace/--pod`).
  namespace?: string;
  pod?: string;
  workload?: string;
  verdict?: string[];
  protocol?: string[];
  /** Comma-separated status codes or classes: `200`, `4+`, `50+`. */
  httpStatus?: string;
  traceId?: string;
  /** A FlowFilter object or array in Hubble's protojson, ANDed with the fields above. */
  filterJson?: string;
  limit?: number;
  // SQL.
  sql?: string;
}

export const DEFAULT_QUERY: Partial<WebbQuery> = {
  queryType: 'flows',
};

/** What a template variable asks for: `namespaces` or `workloads` (optionally of one namespace). */
export interface WebbVariableQuery {
  kind: 'namespaces' | 'workloads';
  namespace?: string;
}

/** Settings stored in the data source's jsonData (visible to viewers: no secrets here). */
export interface WebbOptions extends DataSourceJsonData {
  /** The relay's HTTP port, e.g. http://webb-relay:9965; Grafana's proxy (route `relay`) calls it. */
  relayUrl?: string;
  /** The Tempo data source that trace ids link to. */
  tempoDatasourceUid?: string;
  tempoDatasourceName?: string;
}

/** Settings stored encrypted; only Grafana's server-side proxy reads them. */
export interface WebbSecureOptions {
  /** The relay's `--api-token`, sent as `Authorization: Bearer` by the proxy route. */
  apiToken?: string;
}

// ---- The relay's JSON (relay/src/api.rs) ----

export interface RelayLoss {
  total: number;
  stages: Array<{ stage: string; node: string; lost: number }>;
}

export interface Endpoint {
  namespace?: string;
  pod_name?: string;
  workloads?: Array<{ name?: string; kind?: string }>;
  labels?: string[];
}

export interface PolicyRef {
  name?: string;
  namespace?: string;
  kind?: string;
}

/** A Hubble flow in protojson (only the fields the plugin reads). */
export interface Flow {
  time?: string;
  uuid?: string;
  verdict?: string;
  drop_reason_desc?: string;
  Type?: string;
  node_name?: string;
  traffic_direction?: string;
  Summary?: string;
  IP?: { source?: string; destination?: string };
  l4?: {
    TCP?: { source_port?: number; destination_port?: number };
    UDP?: { source_port?: number; destination_port?: number };
    SCTP?: { source_port?: number; destination_port?: number };
    ICMPv4?: { type?: number; code?: number };
    ICMPv6?: { type?: number; code?: number };
  };
  source?: Endpoint;
  destination?: Endpoint;
  l7?: {
    type?: string;
    latency_ns?: string | number;
    http?: { code?: number; method?: string; url?: string; headers?: Array<{ key?: string; value?: string }> };
    dns?: { query?: string; rcode?: number };
  };
  trace_context?: { parent?: { trace_id?: string } };
  ingress_denied_by?: PolicyRef[];
  egress_denied_by?: PolicyRef[];
  policy_log?: string[];
  /** Webb's `webb.v1.FlowExtras` (asked for with `extras=true`). */
  extensions?: {
    '@type'?: string;
    kernel_drop?: { name?: string; symbol?: string };
    kernelDrop?: { name?: string; symbol?: string };
    default_deny?: { policies?: string[]; text?: string };
    defaultDeny?: { policies?: string[]; text?: string };
  };
}

export interface FlowsAnswer {
  flows: Flow[];
  truncated: boolean;
  loss?: RelayLoss;
}

export interface MapNode {
  id: string;
  namespace: string;
  workload: string;
  requests_per_second: number;
  error_ratio: number;
  drops: number;
}

export interface MapEdge {
  id: string;
  source: string;
  target: string;
  requests_per_second: number;
  error_ratio: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  drops: number;
  requests?: number;
  connections?: number;
}

export interface ServiceMapAnswer {
  nodes: MapNode[];
  edges: MapEdge[];
  loss?: RelayLoss;
}

export interface SqlAnswer {
  columns: Array<{ name: string; type: string }>;
  rows: unknown[][];
  truncated: boolean;
  loss?: RelayLoss;
}

export interface StatusAnswer {
  version?: string;
  connected_nodes?: number;
  unavailable_nodes?: number;
  store?: null | { written_rows?: number; oldest?: string | null; newest?: string | null; dir?: string };
  loss?: RelayLoss;
}

//! The service map over a time range (`GET /api/v1/service-map`): workloads as nodes, and an
//! edge per client → server pair with HTTP request rate, error ratio, latency percentiles and
//! drops, computed by DataFusion over table `flows`.
//!
//! An HTTP exchange is counted from its response flow (which runs server → client, as in
//! Hubble). An exchange seen at both ends (the client's and the server's interface) appears
//! twice, once per traffic direction; each edge takes the side that saw more, rather than
//! adding both. Drops are counted once (a packet is dropped at one place).

use std::collections::BTreeMap;

use datafusion::prelude::{SessionConfig, col};
use serde::Serialize;
use webb_proto::Timestamp;

use crate::schema::TIME;
use crate::sql::{SqlError, to_json_rows};
use crate::store::FlowStore;
use crate::table::{TABLE, ts_lit};

/// Rows per batch of the map's query (DataFusion's default is 8192).
const MAP_BATCH_ROWS: usize = 64 * 1024;

/// A workload (or a bare address outside every endpoint).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapNode {
    /// `namespace/workload`, or the IP address for peers outside every endpoint.
    pub id: String,
    pub namespace: String,
    pub workload: String,
    /// HTTP requests per second this node served.
    pub requests_per_second: f64,
    /// Share of the requests it served answered with 5xx (0 when it served none).
    pub error_ratio: f64,
    /// Flows dropped to or from it.
    pub drops: u64,
}

/// Traffic from `source` (client) to `target` (server).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapEdge {
    /// `source->target`.
    pub id: String,
    pub source: String,
    pub target: String,
    pub requests_per_second: f64,
    pub error_ratio: f64,
    /// HTTP latency percentiles in milliseconds (`None` without HTTP exchanges).
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub drops: u64,
    /// HTTP exchanges in the range.
    pub requests: u64,
    /// New connections (L3/L4 flows with trace reason NEW) in the range.
    pub connections: u64,
}

/// `{"nodes", "edges"}`, nodes sorted by id, edges by (source, target).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceMap {
    pub nodes: Vec<MapNode>,
    pub edges: Vec<MapEdge>,
}

/// What the map covers. `since` and `until` are required: rates need a duration.
#[derive(Debug, Clone, PartialEq)]
pub struct MapQuery {
    pub since: Timestamp,
    pub until: Timestamp,
    /// Only edges with an end in this namespace.
    pub namespace: Option<String>,
}

/// The id and names of one end of a flow: `namespace/workload`, else `namespace/pod`, else the
/// IP address.
fn end(side: &str, ip: &str) -> String {
    format!(
        "CASE WHEN {side}_workload IS NOT NULL AND {side}_workload <> '' \
              THEN concat({side}_namespace, '/', {side}_workload) \
         WHEN {side}_pod IS NOT NULL AND {side}_pod <> '' \
              THEN concat({side}_namespace, '/', {side}_pod) \
         ELSE {ip} END"
    )
}

fn name(side: &str, ip: &str) -> String {
    format!(
        "CASE WHEN {side}_workload IS NOT NULL AND {side}_workload <> '' THEN {side}_workload \
         WHEN {side}_pod IS NOT NULL AND {side}_pod <> '' THEN {side}_pod ELSE {ip} END"
    )
}

fn map_sql() -> String {
    let (src, dst) = (
        end("source", "ip_source"),
        end("destination", "ip_destination"),
    );
    let (src_name, dst_name) = (
        name("source", "ip_source"),
        name("destination", "ip_destination"),
    );
    let is_response = "(l7_type = 'RESPONSE' AND http_code IS NOT NULL)";
    format!(
        "WITH e AS (
           SELECT
             CASE WHEN {is_response} THEN {dst} ELSE {src} END AS client,
             CASE WHEN {is_response} THEN coalesce(destination_namespace, '') ELSE coalesce(source_namespace, '') END AS client_ns,
             CASE WHEN {is_response} THEN {dst_name} ELSE {src_name} END AS client_name,
             CASE WHEN {is_response} THEN {src} ELSE {dst} END AS server,
             CASE WHEN {is_response} THEN coalesce(source_namespace, '') ELSE coalesce(destination_namespace, '') END AS server_ns,
             CASE WHEN {is_response} THEN {src_name} ELSE {dst_name} END AS server_name,
             CAST(traffic_direction AS VARCHAR) AS direction,
             CASE WHEN {is_response} THEN 1 ELSE 0 END AS exchange,
             CASE WHEN {is_response} AND http_code >= 500 THEN 1 ELSE 0 END AS error,
             CASE WHEN {is_response} THEN CAST(l7_latency_ns AS DOUBLE) / 1e6 END AS latency_ms,
             CASE WHEN verdict = 'DROPPED' THEN 1 ELSE 0 END AS dropped,
             CASE WHEN flow_type = 'L3_L4' AND trace_reason = 'NEW' AND verdict <> 'DROPPED' THEN 1 ELSE 0 END AS connection
           FROM window
           WHERE {is_response} OR verdict = 'DROPPED' OR (flow_type = 'L3_L4' AND trace_reason = 'NEW')
         )
         SELECT client, client_ns, client_name, server, server_ns, server_name, direction,
                sum(exchange), sum(error),
                approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),
                approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms),
                approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms),
                sum(dropped), sum(connection)
         FROM e
         WHERE client IS NOT NULL AND server IS NOT NULL
         GROUP BY client, client_ns, client_name, server, server_ns, server_name, direction"
    )
}

/// One (edge, traffic direction) group of the query.
#[derive(Debug, Default, Clone)]
struct Side {
    exchanges: u64,
    errors: u64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

#[derive(Debug, Default)]
struct EdgeAcc {
    best: Side,
    drops: u64,
    connections: u64,
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_i64().map(|i| i.max(0) as u64))
        .unwrap_or(0)
}

fn s(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

impl FlowStore {
    /// The service map over `[since, until)`.
    pub async fn service_map(&self, q: &MapQuery) -> Result<ServiceMap, SqlError> {
        let exec = |e: datafusion::error::DataFusionError| SqlError::Execution(e.to_string());
        // Latency percentiles keep a t-digest per group, updated once per batch for every group
        // the batch holds: with thousands of edges a batch of 8192 rows gives each digest a row
        // or two per update, and the per-update cost dominated the map. Batches 8x larger.
        let ctx = self
            .session_with(SessionConfig::new().with_batch_size(MAP_BATCH_ROWS))
            .map_err(exec)?;
        let window = ctx
            .table(TABLE)
            .await
            .map_err(exec)?
            .filter(col(TIME).gt_eq(ts_lit(&q.since)))
            .map_err(exec)?
            .filter(col(TIME).lt(ts_lit(&q.until)))
            .map_err(exec)?;
        ctx.register_table("window", window.into_view())
            .map_err(exec)?;
        let batches = ctx
            .sql(&map_sql())
            .await
            .map_err(exec)?
            .collect()
            .await
            .map_err(exec)?;
        let rows = to_json_rows(&batches)?;

        let mut names: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut edges: BTreeMap<(String, String), EdgeAcc> = BTreeMap::new();
        for r in &rows {
            let (client, server) = (s(&r[0]), s(&r[3]));
            let keep = q
                .namespace
                .as_ref()
                .is_none_or(|ns| s(&r[1]) == *ns || s(&r[4]) == *ns);
            if !keep {
                continue;
            }
            names.insert(client.clone(), (s(&r[1]), s(&r[2])));
            names.insert(server.clone(), (s(&r[4]), s(&r[5])));
            let side = Side {
                exchanges: u(&r[7]),
                errors: u(&r[8]),
                p50: r[9].as_f64(),
                p95: r[10].as_f64(),
                p99: r[11].as_f64(),
            };
            let acc = edges.entry((client, server)).or_default();
            if side.exchanges > acc.best.exchanges {
                acc.best = side;
            }
            acc.drops += u(&r[12]);
            acc.connections += u(&r[13]);
        }

        let secs = ((q.until.unix_nanos() - q.since.unix_nanos()) as f64 / 1e9).max(1e-9);
        let ratio = |errors: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                errors as f64 / total as f64
            }
        };
        let mut served: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
        let mut map = ServiceMap::default();
        for ((source, target), acc) in &edges {
            let t = served.entry(target).or_default();
            t.0 += acc.best.exchanges;
            t.1 += acc.best.errors;
            t.2 += acc.drops;
            if source != target {
                served.entry(source).or_default().2 += acc.drops;
            }
            map.edges.push(MapEdge {
                id: format!("{source}->{target}"),
                source: source.clone(),
                target: target.clone(),
                requests_per_second: acc.best.exchanges as f64 / secs,
                error_ratio: ratio(acc.best.errors, acc.best.exchanges),
                p50_ms: acc.best.p50,
                p95_ms: acc.best.p95,
                p99_ms: acc.best.p99,
                drops: acc.drops,
                requests: acc.best.exchanges,
                connections: acc.connections,
            });
        }
        for (id, (namespace, workload)) in names {
            let (requests, errors, drops) = served.get(id.as_str()).copied().unwrap_or_default();
            map.nodes.push(MapNode {
                id,
                namespace,
                workload,
                requests_per_second: requests as f64 / secs,
                error_ratio: ratio(errors, requests),
                drops,
            });
        }
        Ok(map)
    }
}

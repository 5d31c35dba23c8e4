//! The service map over a time range (`GET /api/v1/service-map`): workloads as nodes, and an
//! edge per client → server pair with HTTP request rate, error ratio, latency percentiles and
//! drops.
//!
//! An HTTP exchange is counted from its response flow (which runs server → client, as in
//! Hubble). An exchange seen at both ends (the client's and the server's interface) appears
//! twice, once per traffic direction; each edge takes the side that saw more, rather than
//! adding both. Drops are counted once (a packet is dropped at one place).
//!
//! The counting is [`PartialMap`]'s: a file wholly inside the range is read from its sidecar
//! (the partial computed when the file was written), and only what no sidecar covers is
//! scanned: files the range cuts, files without a sidecar, and the unflushed batches. A day
//! is then 24 small sidecars instead of a day of rows, with the same answer as a full scan.

use std::collections::BTreeMap;

use datafusion::prelude::{SessionConfig, col};
use futures::StreamExt;
use serde::Serialize;
use webb_proto::Timestamp;

use crate::partial_map::{EdgeStats, MAP_COLUMNS, PartialMap, sidecar_path};
use crate::schema::TIME;
use crate::segment::Segment;
use crate::sql::SqlError;
use crate::store::FlowStore;
use crate::table::ts_lit;

/// Rows per batch of the scan of what sidecars do not cover.
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

fn clamp_ns(t: &Timestamp) -> i64 {
    i64::try_from(t.unix_nanos()).unwrap_or(if t.seconds < 0 { i64::MIN } else { i64::MAX })
}

/// One (edge, traffic direction) group, the side an edge takes.
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

impl FlowStore {
    /// The service map over `[since, until)`.
    pub async fn service_map(&self, q: &MapQuery) -> Result<ServiceMap, SqlError> {
        let exec = |e: datafusion::error::DataFusionError| SqlError::Execution(e.to_string());
        let (lo, hi) = (clamp_ns(&q.since), clamp_ns(&q.until));
        let _lease = self.shared.lease();
        let (files, pending) = self.shared.snapshot();
        let files: Vec<_> = files
            .into_iter()
            .filter(|f| f.max_time >= lo && f.min_time < hi)
            .collect();

        // Sidecars of the files wholly inside the range, read off the async threads.
        let (inside, mut scan): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|f| f.map_bytes.is_some() && f.min_time >= lo && f.max_time < hi);
        let (mut partial, unread) = tokio::task::spawn_blocking(move || merge_sidecars(inside))
            .await
            .map_err(|e| SqlError::Execution(e.to_string()))?;
        scan.extend(unread);

        let column = |e: crate::partial_map::MapColumnError| SqlError::Execution(e.to_string());
        for p in &pending {
            partial
                .add_batch(&p.batch, Some((lo, hi)))
                .map_err(column)?;
        }
        if !scan.is_empty() {
            let ctx = self
                .session_with(SessionConfig::new().with_batch_size(MAP_BATCH_ROWS))
                .map_err(exec)?;
            let mut stream = ctx
                .read_table(std::sync::Arc::new(self.table_of(scan)))
                .map_err(exec)?
                .filter(col(TIME).gt_eq(ts_lit(&q.since)))
                .map_err(exec)?
                .filter(col(TIME).lt(ts_lit(&q.until)))
                .map_err(exec)?
                .select_columns(MAP_COLUMNS)
                .map_err(exec)?
                .execute_stream()
                .await
                .map_err(exec)?;
            while let Some(b) = stream.next().await {
                partial
                    .add_batch(&b.map_err(exec)?, Some((lo, hi)))
                    .map_err(column)?;
            }
        }
        Ok(map_of(&partial, q))
    }
}

/// The merge of the sidecars of `files`, on every core (a day is hundreds of sidecars of
/// thousands of edges each), and the files whose sidecar could not be read.
fn merge_sidecars(files: Vec<Segment>) -> (PartialMap, Vec<Segment>) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = files.len().div_ceil(threads).max(1);
    let merge = |files: &[Segment]| {
        let mut partial = PartialMap::default();
        let unread: Vec<Segment> = files
            .iter()
            .filter(|f| !partial.merge_sidecar(&sidecar_path(&f.path), f.rows))
            .cloned()
            .collect();
        (partial, unread)
    };
    let parts: Vec<(PartialMap, Vec<Segment>)> = std::thread::scope(|s| {
        let workers: Vec<_> = files
            .chunks(share)
            .map(|chunk| s.spawn(move || merge(chunk)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut all = PartialMap::default();
    let mut unread = Vec::new();
    for (partial, u) in parts {
        all.merge(&partial);
        unread.extend(u);
    }
    (all, unread)
}

/// The map of a partial: per (client, server) the busier traffic direction's exchanges.
fn map_of(partial: &PartialMap, q: &MapQuery) -> ServiceMap {
    let mut names: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut edges: BTreeMap<(String, String), EdgeAcc> = BTreeMap::new();
    // Sorted by (client, server, direction): ties between directions go the same way always.
    for (k, st) in partial.sorted() {
        let keep = q
            .namespace
            .as_ref()
            .is_none_or(|ns| k.client.namespace == *ns || k.server.namespace == *ns);
        if !keep {
            continue;
        }
        for e in [&k.client, &k.server] {
            names
                .entry(e.id.clone())
                .or_insert_with(|| (e.namespace.clone(), e.name.clone()));
        }
        let EdgeStats {
            exchanges,
            errors,
            latency,
            drops,
            connections,
        } = st;
        let ms = |p: f64| latency.quantile(p).map(|ns| ns / 1e6);
        let side = Side {
            exchanges: *exchanges,
            errors: *errors,
            p50: ms(0.5),
            p95: ms(0.95),
            p99: ms(0.99),
        };
        let acc = edges
            .entry((k.client.id.clone(), k.server.id.clone()))
            .or_default();
        if side.exchanges > acc.best.exchanges {
            acc.best = side;
        }
        acc.drops += drops;
        acc.connections += connections;
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
    map
}

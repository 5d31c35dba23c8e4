//! The relay server: the pipeline's output goes into the relay's own ring, which Hubble's
//! Observer API (flow-observer) serves on `--listen`; GetNodes, node counts and the stream
//! preamble come from the peer pool; drops of the relay's stages become `LostEvent`s.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use flow_observer::{
    Health, History, HistoryRequest, NodeCounts, NodeStatus, NodesSource, Observed,
    ObserverMetrics, ObserverService, Ring, Services, VersionHeader,
};
use futures::stream::BoxStream;
use tokio::task::JoinHandle;
use tonic::Status;
use webb_proto::Timestamp;
use webb_proto::flow::{LostEvent, LostEventSource};
use webb_proto::observer::get_flows_response::ResponseTypes;
use webb_proto::observer::observer_client::ObserverClient;
use webb_proto::observer::{GetFlowsResponse, Node, ServerStatusRequest};
use webb_proto::relay::{NodeState, NodeStatusEvent};

use flow_store::FlowStore;
use webb_proto::flow::Flow;
use webb_proto::webb_v1::{FlowExtras, StageLoss};

use crate::l7::{DnsStats, HttpStats};
use crate::metrics::Metrics;
use crate::otlp::{OtlpStats, STAGE_OTLP_EXPORT, STAGE_OTLP_QUEUE, SpanExporter};
use crate::peers::NodeInfo;
use crate::pipeline::{Pipeline, PipelineConfig, PipelineStats};

/// Loss stages of the relay itself (labels of `webb_lost_events_total{stage,node}`).
pub mod stage {
    /// A peer's flows dropped because the queue towards the merge was full (per node).
    pub const RELAY_QUEUE: &str = "relay_queue";
    /// HTTP heads skipped by the L7 stage (over the size bound, or never completed): the
    /// L3/L4 flows went on, their L7 flows are missing.
    pub const RELAY_L7_HTTP: &str = "relay_l7_http";
    /// DNS messages the L7 stage could not read (malformed, or cut by the capture or a lost
    /// segment): the L3/L4 flows went on, their L7 DNS flows are missing.
    pub const RELAY_L7_DNS: &str = "relay_l7_dns";
    /// The relay's ring (queue depth only: a slow reader's loss is `hubble_ring_reader`).
    pub const RELAY_RING: &str = "relay_ring";

    /// An agent's kernel ring buffer had no room (the agent's `datapath_ring`; Hubble's
    /// `PERF_EVENT_RING_BUFFER`).
    pub const AGENT_DATAPATH_RING: &str = "datapath_ring";
    /// The relay's reader of an agent's flow ring fell behind (the agent's
    /// `hubble_ring_reader`; Hubble's `HUBBLE_RING_BUFFER`).
    pub const AGENT_RING_READER: &str = flow_observer::observer::stage::HUBBLE_RING_READER;
    /// An agent's events queue overflowed (Hubble's `OBSERVER_EVENTS_QUEUE`).
    pub const AGENT_EVENTS_QUEUE: &str = "observer_events_queue";
    /// A lost event whose source the relay does not know.
    pub const UNKNOWN: &str = "unknown";

    /// The stage an agent's `LostEvent` names, as the agent labels it in its own
    /// `webb_lost_events_total{stage}` (a `LostEvent` carries only Hubble's source).
    pub fn of_agent_lost_event(source: i32) -> &'static str {
        use webb_proto::flow::LostEventSource as S;
        match S::try_from(source) {
            Ok(S::PerfEventRingBuffer) => AGENT_DATAPATH_RING,
            Ok(S::HubbleRingBuffer) => AGENT_RING_READER,
            Ok(S::ObserverEventsQueue) => AGENT_EVENTS_QUEUE,
            Ok(S::UnknownLostEventSource) | Err(_) => UNKNOWN,
        }
    }
}

/// Rows one `--last N` GetFlows may examine in the store before it answers with what it found.
const HISTORY_SCAN_LIMIT: usize = 10_000_000;

/// Hubble's relay lists at most this many unavailable nodes in ServerStatus.
const MAX_UNAVAILABLE_NAMES: usize = 10;
/// Followers are woken at least this often while flows arrive (and after every 256 pushes).
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);
const FLUSH_EVERY: usize = 256;
/// Time allowed to ask each connected peer for its ServerStatus in GetNodes.
const PEER_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of a relay server.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub pipeline: PipelineConfig,
    /// Entries of the relay's ring (2^n−1).
    pub ring_capacity: usize,
    /// This relay's name (lost events of its own stages, responses without a node).
    pub node_name: String,
    /// Each stage/node's drops are reported as a lost event at most this often.
    pub loss_interval: Duration,
    /// Where every served flow also goes.
    pub outputs: Outputs,
    /// TLS of the Observer port (`--tls-*`); plaintext when None.
    pub tls: Option<Arc<webb_security::ServerTls>>,
    /// Payload trust, the per-client stream bound, and the refusal counters.
    pub access: webb_security::Access,
}

/// What the relay feeds besides its ring: metrics, the flow store, span export. Each is
/// called synchronously for every flow and never blocks (bounded queues, counted drops).
#[derive(Clone, Default)]
pub struct Outputs {
    pub metrics: Option<Arc<Metrics>>,
    pub store: Option<Arc<FlowStore>>,
    /// Network spans over OTLP.
    pub spans: Option<SpanExporter>,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("metrics", &self.metrics.is_some())
            .field("store", &self.store.is_some())
            .field("spans", &self.spans.is_some())
            .finish()
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            pipeline: PipelineConfig::default(),
            ring_capacity: flow_observer::MAX_CAPACITY,
            node_name: "webb-relay".into(),
            loss_interval: Duration::from_secs(1),
            outputs: Outputs::default(),
            tls: None,
            access: webb_security::Access::default(),
        }
    }
}

/// Events lost per (stage, node): what the relay reported, for its metrics.
#[derive(Debug, Default)]
pub struct LossCounters {
    node_name: String,
    totals: Mutex<BTreeMap<(String, String), u64>>,
    metrics: Option<Arc<Metrics>>,
}

impl LossCounters {
    fn add(&self, stage: &str, node: &str, count: u64) {
        if count == 0 {
            return;
        }
        if let Some(m) = &self.metrics {
            m.record_stage_loss(stage, node, count);
        }
        let mut t = lock(&self.totals);
        *t.entry((stage.to_string(), node.to_string())).or_default() += count;
    }

    /// Every (stage, node, total) so far.
    pub fn totals(&self) -> Vec<(String, String, u64)> {
        lock(&self.totals)
            .iter()
            .map(|((s, n), c)| (s.clone(), n.clone(), *c))
            .collect()
    }
}

/// The ring readers' losses (a follower too slow for the relay's ring) count as the relay's.
impl ObserverMetrics for LossCounters {
    fn lost(&self, stage: &str, count: u64) {
        self.add(stage, &self.node_name, count);
    }

    fn ring_depth(&self, len: usize) {
        if let Some(m) = &self.metrics {
            m.set_queue_depth(stage::RELAY_RING, len as i64);
        }
    }
}

/// History for GetFlows: the flow store, behind the ring.
#[derive(Debug)]
struct StoreHistory {
    store: Arc<FlowStore>,
    /// Rows one `--last N` request may examine in the store.
    scan_limit: usize,
}

fn timestamp(ns: i128) -> Timestamp {
    Timestamp::from_unix_nanos(u64::try_from(ns).unwrap_or(0))
}

fn store_error(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("reading flow history: {e}"))
}

#[tonic::async_trait]
impl History for StoreHistory {
    async fn flows(
        &self,
        request: HistoryRequest,
        filters: flow_filter::FlowFilters,
    ) -> Result<BoxStream<'static, Result<Flow, Status>>, Status> {
        use futures::{StreamExt, TryStreamExt};
        let q = flow_store::FlowQuery {
            since: request.since.map(timestamp),
            until: request.until.map(timestamp),
            limit: request
                .limit
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            newest_first: request.newest_first,
            prefilter: filters.prefilter(),
        };
        if request.newest_first {
            let mut found = self
                .store
                .query_flows_matching(&q, self.scan_limit, |f| filters.matches(f))
                .await
                .map_err(store_error)?;
            if found.scan_limit_hit {
                tracing::warn!(
                    scanned = found.scanned,
                    "history scan stopped at its row bound; older matches are not returned"
                );
            }
            found.flows.reverse();
            return Ok(futures::stream::iter(found.flows.into_iter().map(Ok)).boxed());
        }
        let limit = q.limit.unwrap_or(usize::MAX);
        let all = flow_store::FlowQuery { limit: None, ..q };
        let stream = self.store.stream_flows(&all).await.map_err(store_error)?;
        Ok(stream
            .map_err(store_error)
            .try_filter(move |f| futures::future::ready(filters.matches(f)))
            .take(limit)
            .boxed())
    }
}

/// The single writer of the ring: the pipeline's sink and the loss reporter take turns.
#[derive(Debug)]
struct Writer {
    observed: Arc<Observed>,
    outputs: Outputs,
    losses: Arc<LossCounters>,
    /// Events lost per node and stage that no flow of that node has carried yet (see
    /// [`Writer::note_gap`]).
    gaps: BTreeMap<String, BTreeMap<&'static str, u64>>,
    unflushed: usize,
    last_flush: Instant,
}

impl Writer {
    /// Records that `count` events of `node` were lost at `stage` before the flows that come
    /// next. The next flow of that node carries them in `webb.v1.FlowExtras.loss` (only
    /// clients that ask for extras see it; the store keeps it): the gap right before it.
    /// The relay's own stages (node = the relay) go with the next flow of any node.
    fn note_gap(&mut self, node: &str, stage: &'static str, count: u64) {
        if count > 0 {
            *self
                .gaps
                .entry(node.to_string())
                .or_default()
                .entry(stage)
                .or_default() += count;
        }
    }

    /// The gaps `flow` closes: its node's and the relay's own.
    fn take_gaps(&mut self, node: &str) -> Vec<StageLoss> {
        if self.gaps.is_empty() {
            return Vec::new();
        }
        let relay = self.losses.node_name.clone();
        let mut out = Vec::new();
        for n in [node, relay.as_str()] {
            if let Some(stages) = self.gaps.remove(n) {
                out.extend(stages.into_iter().map(|(stage, lost)| StageLoss {
                    stage: stage.to_string(),
                    node: n.to_string(),
                    lost,
                }));
            }
            if node == relay {
                break;
            }
        }
        out
    }

    fn push(&mut self, resp: GetFlowsResponse) {
        match resp.response_types {
            Some(ResponseTypes::Flow(mut flow)) => {
                let gaps = self.take_gaps(&flow.node_name);
                if !gaps.is_empty() {
                    add_loss(&mut flow, gaps);
                }
                let out = &self.outputs;
                if let Some(m) = &out.metrics {
                    m.observe(&flow);
                }
                if let Some(spans) = &out.spans {
                    spans.observe(&flow);
                }
                // Webb's extras travel beside the flow in the ring, so that a plain Hubble
                // client never receives them; the store keeps them in their own columns.
                let extras = webb_proto::extras::unpack(&flow).and_then(Result::ok);
                match &out.store {
                    Some(store) => {
                        let bare = {
                            let mut f = flow.clone();
                            webb_proto::extras::strip(&mut f);
                            f
                        };
                        self.observed.push_flow(bare, extras.as_ref());
                        store.try_append(flow);
                    }
                    None => {
                        webb_proto::extras::strip(&mut flow);
                        self.observed.push_flow(flow, extras.as_ref());
                    }
                }
            }
            Some(ResponseTypes::NodeStatus(ev)) => self.observed.push_node_status(ev),
            Some(ResponseTypes::LostEvents(ev)) => {
                if let Some(m) = &self.outputs.metrics {
                    m.record_lost_event(&ev);
                }
                // An agent's loss, under its stage and node in webb_lost_events_total and
                // on the next flow of that node.
                let node = if resp.node_name.is_empty() {
                    self.losses.node_name.clone()
                } else {
                    resp.node_name.clone()
                };
                let stage = stage::of_agent_lost_event(ev.source);
                self.losses.add(stage, &node, ev.num_events_lost);
                self.note_gap(&node, stage, ev.num_events_lost);
                self.observed.push_lost_from(&node, ev);
            }
            // Agent and debug events are not part of the flow stream.
            _ => return,
        }
        self.unflushed += 1;
        if self.unflushed >= FLUSH_EVERY || self.last_flush.elapsed() >= FLUSH_INTERVAL {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.unflushed > 0 {
            self.observed.flush();
            self.unflushed = 0;
        }
        self.last_flush = Instant::now();
    }
}

/// Appends `loss` to the flow's `webb.v1.FlowExtras` (creating them when it has none).
fn add_loss(flow: &mut Flow, loss: Vec<StageLoss>) {
    let mut extras = match webb_proto::extras::unpack(flow) {
        Some(Ok(e)) => e,
        // Extras that do not decode are not ours to keep (the ring drops them too).
        Some(Err(_)) | None => FlowExtras::default(),
    };
    extras.loss.extend(loss);
    webb_proto::extras::attach(flow, Some(&extras));
}

type SharedPipeline = Arc<Mutex<Option<Pipeline>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn pool_nodes(pipeline: &SharedPipeline) -> Vec<NodeInfo> {
    lock(pipeline)
        .as_ref()
        .map(Pipeline::nodes)
        .unwrap_or_default()
}

/// GetNodes, node counts and the stream preamble from the peer pool.
#[derive(Debug)]
struct PoolNodes {
    pipeline: SharedPipeline,
    tls: Option<webb_security::ClientTls>,
}

fn connected(n: &NodeInfo) -> bool {
    n.state == NodeState::NodeConnected
}

#[tonic::async_trait]
impl NodesSource for PoolNodes {
    async fn nodes(&self) -> Result<Vec<Node>, Status> {
        let infos = pool_nodes(&self.pipeline);
        let tls = self.tls.as_ref();
        let asks = infos.into_iter().map(|info| async move {
            let mut node = Node {
                name: info.name.clone(),
                address: info.address.clone(),
                state: info.state as i32,
                ..Default::default()
            };
            // Like Hubble's relay, the numbers come from each connected peer's own status.
            if connected(&info)
                && let Ok(Ok(NodeStatus { status: s, .. })) =
                    tokio::time::timeout(PEER_STATUS_TIMEOUT, peer_status(tls, &info.address)).await
            {
                node.version = s.version;
                node.uptime_ns = s.uptime_ns;
                node.num_flows = s.num_flows;
                node.max_flows = s.max_flows;
                node.seen_flows = s.seen_flows;
            }
            node
        });
        Ok(futures::future::join_all(asks).await)
    }

    fn counts(&self) -> NodeCounts {
        let mut c = NodeCounts::default();
        for n in pool_nodes(&self.pipeline) {
            if connected(&n) {
                c.connected += 1;
            } else {
                c.unavailable += 1;
                if c.unavailable_names.len() < MAX_UNAVAILABLE_NAMES {
                    c.unavailable_names.push(n.name);
                }
            }
        }
        c
    }

    /// Like Hubble's relay, every connected peer is asked for its own status (in parallel,
    /// each within `PEER_STATUS_TIMEOUT`); one that does not answer is left out of the sums.
    async fn node_statuses(&self) -> Vec<NodeStatus> {
        let tls = self.tls.as_ref();
        let asks = pool_nodes(&self.pipeline)
            .into_iter()
            .filter(connected)
            .map(|info| async move {
                tokio::time::timeout(PEER_STATUS_TIMEOUT, peer_status(tls, &info.address))
                    .await
                    .ok()
                    .and_then(Result::ok)
            });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    fn stream_preamble(&self) -> Vec<NodeStatusEvent> {
        let (up, down): (Vec<NodeInfo>, Vec<NodeInfo>) =
            pool_nodes(&self.pipeline).into_iter().partition(connected);
        let mut out = Vec::new();
        for (state, nodes) in [
            (NodeState::NodeConnected, up),
            (NodeState::NodeUnavailable, down),
        ] {
            if !nodes.is_empty() {
                out.push(NodeStatusEvent {
                    state_change: state as i32,
                    node_names: nodes.into_iter().map(|n| n.name).collect(),
                    message: String::new(),
                });
            }
        }
        out
    }
}

/// A peer's status and, from a Webb agent, its extras (policy state), passed on in ours.
async fn peer_status(
    tls: Option<&webb_security::ClientTls>,
    address: &str,
) -> anyhow::Result<NodeStatus> {
    let channel = crate::peers::agent_channel(tls, address, PEER_STATUS_TIMEOUT).await?;
    let mut client = ObserverClient::new(channel);
    let reply = client.server_status(ServerStatusRequest {}).await?;
    let extras = match webb_proto::status::read(reply.metadata()) {
        Some(Ok(extras)) => extras,
        Some(Err(e)) => {
            tracing::debug!(peer = %address, error = %e, "the peer's status extras do not decode");
            Default::default()
        }
        None => Default::default(),
    };
    Ok(NodeStatus {
        status: reply.into_inner(),
        extras,
    })
}

/// A running relay: pipeline, ring, Observer/health services and the loss reporter.
pub struct RelayServer {
    pipeline: SharedPipeline,
    services: Services,
    losses: Arc<LossCounters>,
    outputs: Outputs,
    monitor: JoinHandle<()>,
    tls: Option<Arc<webb_security::ServerTls>>,
}

impl std::fmt::Debug for RelayServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayServer").finish_non_exhaustive()
    }
}

impl RelayServer {
    /// Starts following the peers (within a tokio runtime); serve with [`RelayServer::serve`].
    pub async fn start(config: RelayConfig) -> anyhow::Result<Self> {
        let ring = Ring::new(config.ring_capacity).context("the relay's ring")?;
        let losses = Arc::new(LossCounters {
            node_name: config.node_name.clone(),
            metrics: config.outputs.metrics.clone(),
            ..Default::default()
        });
        let observed = Arc::new(Observed::new(
            &config.node_name,
            Arc::new(ring),
            losses.clone(),
        ));
        let writer = Arc::new(Mutex::new(Writer {
            observed: observed.clone(),
            outputs: config.outputs.clone(),
            losses: losses.clone(),
            gaps: BTreeMap::new(),
            unflushed: 0,
            last_flush: Instant::now(),
        }));
        let sink_writer = writer.clone();
        let peer_tls = config.pipeline.pool.tls.clone();
        let tls = config.tls.clone();
        let pipeline = Pipeline::start(config.pipeline, move |resp| lock(&sink_writer).push(resp));
        let pipeline: SharedPipeline = Arc::new(Mutex::new(Some(pipeline)));
        let health = Health::new(false).await;
        let mut observer = ObserverService::new(observed)
            .with_access(config.access.clone())
            .with_version(format!("webb-relay {}", env!("CARGO_PKG_VERSION")))
            .with_version_header(VersionHeader::Relay)
            .with_nodes(Arc::new(PoolNodes {
                pipeline: pipeline.clone(),
                tls: peer_tls,
            }));
        if let Some(store) = &config.outputs.store {
            observer = observer.with_history(Arc::new(StoreHistory {
                store: store.clone(),
                scan_limit: HISTORY_SCAN_LIMIT,
            }));
        }
        let monitor = tokio::spawn(monitor(
            pipeline.clone(),
            writer,
            health.clone(),
            losses.clone(),
            config.outputs.clone(),
            config.node_name,
            config.loss_interval,
        ));
        Ok(RelayServer {
            pipeline,
            services: Services {
                observer,
                peer: None,
                health,
            },
            losses,
            outputs: config.outputs,
            monitor,
            tls,
        })
    }

    /// Serves Observer and health on `listener` (TLS when configured) until `shutdown`
    /// completes.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        self.services
            .serve_listener(listener, self.tls.as_deref(), shutdown)
            .await
    }

    /// Every peer and its state.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        pool_nodes(&self.pipeline)
    }

    /// The relay's own ring and node counts (what `ServerStatus` adds the nodes' counts to).
    pub fn status(&self) -> webb_proto::observer::ServerStatusResponse {
        self.services.observer.status()
    }

    /// The Observer's `ServerStatus` answer: the relay's ring plus every connected node's
    /// counts, summed as Hubble's relay sums them.
    pub async fn cluster_status(&self) -> webb_proto::observer::ServerStatusResponse {
        self.services.observer.cluster_status().await
    }

    /// Counters of the stages after the peer pool.
    pub fn pipeline_stats(&self) -> PipelineStats {
        lock(&self.pipeline)
            .as_ref()
            .map(Pipeline::stats)
            .unwrap_or_default()
    }

    /// Metrics, store and other consumers fed with every flow.
    pub fn outputs(&self) -> &Outputs {
        &self.outputs
    }

    /// What the HTTP port serves from (`/metrics`, `/api/v1/*`).
    pub fn api_state(&self, token: Option<String>) -> crate::api::ApiState {
        let pipeline = self.pipeline.clone();
        let observer = self.services.observer.clone();
        crate::api::ApiState {
            refused: self.services.observer.access().counters.clone(),
            metrics: self.outputs.metrics.clone(),
            store: self.outputs.store.clone(),
            losses: self.losses.clone(),
            status: Arc::new(move || status_json(&observer, &pipeline)),
            token,
        }
    }

    /// Events lost per stage and node, as reported.
    pub fn losses(&self) -> &Arc<LossCounters> {
        &self.losses
    }

    /// Stops the peers, drains the pipeline into the ring and stops reporting.
    pub async fn shutdown(self) -> PipelineStats {
        self.monitor.abort();
        let pipeline = lock(&self.pipeline).take();
        match pipeline {
            Some(p) => p.shutdown().await,
            None => PipelineStats::default(),
        }
    }
}

/// The relay part of `/api/v1/status`.
fn status_json(observer: &ObserverService, pipeline: &SharedPipeline) -> serde_json::Value {
    let s = observer.status();
    let nodes: Vec<serde_json::Value> = pool_nodes(pipeline)
        .into_iter()
        .map(|n| {
            serde_json::json!({
                "name": n.name,
                "address": n.address,
                "state": n.state.as_str_name(),
                "received": n.received,
                "dropped": n.dropped,
                "last_error": n.last_error,
            })
        })
        .collect();
    let p = lock(pipeline)
        .as_ref()
        .map(Pipeline::stats)
        .unwrap_or_default();
    serde_json::json!({
        "version": s.version,
        "uptime_seconds": s.uptime_ns as f64 / 1e9,
        "ring": {
            "flows": s.num_flows,
            "capacity": s.max_flows,
            "seen": s.seen_flows,
            "flows_per_second": s.flows_rate,
        },
        "connected_nodes": s.num_connected_nodes.unwrap_or_default(),
        "unavailable_nodes": s.num_unavailable_nodes.unwrap_or_default(),
        "nodes": nodes,
        "pipeline": {
            "emitted": p.emitted,
            "http": format!("{:?}", p.http),
        },
    })
}

/// Turns the pipeline's cumulative drop counters into what is new since the last report.
#[derive(Debug, Default)]
struct LossTracker {
    queue: BTreeMap<String, u64>,
    http: u64,
    dns: u64,
    store: BTreeMap<String, u64>,
    spans_dropped: u64,
    spans_rejected: u64,
}

/// Events lost at one stage of one node since the last report.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Loss {
    stage: &'static str,
    node: String,
    count: u64,
}

impl LossTracker {
    fn new_losses(
        &mut self,
        nodes: &[NodeInfo],
        http: &HttpStats,
        dns: &DnsStats,
        store: &[webb_proto::webb_v1::StageLoss],
        spans: &OtlpStats,
        relay_node: &str,
    ) -> Vec<Loss> {
        let mut out = Vec::new();
        for n in nodes {
            let before = self.queue.entry(n.name.clone()).or_default();
            if n.dropped > *before {
                out.push(Loss {
                    stage: stage::RELAY_QUEUE,
                    node: n.name.clone(),
                    count: n.dropped - *before,
                });
            }
            *before = n.dropped;
        }
        let skipped = http.too_large + http.incomplete;
        if skipped > self.http {
            out.push(Loss {
                stage: stage::RELAY_L7_HTTP,
                node: relay_node.to_string(),
                count: skipped - self.http,
            });
            self.http = skipped;
        }
        if dns.lost() > self.dns {
            out.push(Loss {
                stage: stage::RELAY_L7_DNS,
                node: relay_node.to_string(),
                count: dns.lost() - self.dns,
            });
            self.dns = dns.lost();
        }
        for l in store {
            let before = self.store.entry(l.stage.clone()).or_default();
            if l.lost > *before {
                out.push(Loss {
                    stage: if l.stage == flow_store::STAGE_QUEUE {
                        flow_store::STAGE_QUEUE
                    } else {
                        flow_store::STAGE_WRITE
                    },
                    node: relay_node.to_string(),
                    count: l.lost - *before,
                });
            }
            *before = l.lost;
        }
        for (stage, now, before) in [
            (
                STAGE_OTLP_QUEUE,
                spans.spans_dropped,
                &mut self.spans_dropped,
            ),
            (
                STAGE_OTLP_EXPORT,
                spans.spans_rejected,
                &mut self.spans_rejected,
            ),
        ] {
            if now > *before {
                out.push(Loss {
                    stage,
                    node: relay_node.to_string(),
                    count: now - *before,
                });
                *before = now;
            }
        }
        out
    }
}

impl Loss {
    fn event(&self, now: Timestamp) -> LostEvent {
        let source = if self.stage == stage::RELAY_QUEUE {
            LostEventSource::ObserverEventsQueue
        } else {
            LostEventSource::UnknownLostEventSource
        };
        LostEvent {
            source: source as i32,
            num_events_lost: self.count,
            cpu: None,
            first: Some(now),
            last: Some(now),
        }
    }
}

/// Flushes the ring when flows stop, keeps health in step with the peers, and turns new drops
/// into lost events (at most one per stage/node per `interval`).
async fn monitor(
    pipeline: SharedPipeline,
    writer: Arc<Mutex<Writer>>,
    health: Health,
    losses: Arc<LossCounters>,
    outputs: Outputs,
    relay_node: String,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serving = false;
    let mut tracker = LossTracker::default();
    let mut last_loss = Instant::now();
    loop {
        tick.tick().await;
        {
            let mut w = lock(&writer);
            if w.last_flush.elapsed() >= FLUSH_INTERVAL {
                w.flush();
            }
        }
        let nodes = pool_nodes(&pipeline);
        let up = nodes.iter().any(connected);
        if up != serving {
            serving = up;
            health.set_serving(up).await;
        }
        if last_loss.elapsed() < interval {
            continue;
        }
        last_loss = Instant::now();
        let stats = lock(&pipeline)
            .as_ref()
            .map(Pipeline::stats)
            .unwrap_or_default();
        let store_loss = outputs.store.as_ref().map(|s| s.loss()).unwrap_or_default();
        let span_stats = outputs
            .spans
            .as_ref()
            .map(SpanExporter::stats)
            .unwrap_or_default();
        if let Some(m) = &outputs.metrics {
            m.sweep(Instant::now());
        }
        let losses_now = tracker.new_losses(
            &nodes,
            &stats.http,
            &stats.dns,
            &store_loss,
            &span_stats,
            &relay_node,
        );
        if losses_now.is_empty() {
            continue;
        }
        let now = Timestamp::now();
        let mut w = lock(&writer);
        for loss in losses_now {
            losses.add(loss.stage, &loss.node, loss.count);
            // Stages before the ring leave a gap in the flows that follow; the store and span
            // export lose after it, so no flow there misses a predecessor.
            if matches!(
                loss.stage,
                stage::RELAY_QUEUE | stage::RELAY_L7_HTTP | stage::RELAY_L7_DNS
            ) {
                w.note_gap(&loss.node, loss.stage, loss.count);
            }
            w.observed.push_lost_from(&loss.node, loss.event(now));
            w.unflushed += 1;
        }
        w.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, dropped: u64) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            address: format!("{name}:4244"),
            state: NodeState::NodeConnected,
            received: 1000,
            dropped,
            last_error: None,
        }
    }

    fn loss(stage: &'static str, node: &str, count: u64) -> Loss {
        Loss {
            stage,
            node: node.into(),
            count,
        }
    }

    #[test]
    fn only_new_drops_are_reported_per_node_and_stage() {
        let mut t = LossTracker::default();
        let mut http = HttpStats::default();
        assert!(
            t.new_losses(
                &[node("vn1", 0), node("vn2", 0)],
                &http,
                &DnsStats::default(),
                &[],
                &OtlpStats::default(),
                "relay"
            )
            .is_empty()
        );
        http.too_large = 2;
        http.incomplete = 1;
        assert_eq!(
            t.new_losses(
                &[node("vn1", 5), node("vn2", 0)],
                &http,
                &DnsStats::default(),
                &[],
                &OtlpStats::default(),
                "relay"
            ),
            [
                loss(stage::RELAY_QUEUE, "vn1", 5),
                loss(stage::RELAY_L7_HTTP, "relay", 3)
            ]
        );
        assert_eq!(
            t.new_losses(
                &[node("vn1", 5), node("vn2", 4)],
                &http,
                &DnsStats::default(),
                &[],
                &OtlpStats::default(),
                "relay"
            ),
            [loss(stage::RELAY_QUEUE, "vn2", 4)],
            "vn1 and the HTTP stage lost nothing more"
        );
    }

    #[test]
    fn spans_dropped_by_the_export_queue_or_refused_by_the_receiver_are_relay_losses() {
        let mut t = LossTracker::default();
        let http = HttpStats::default();
        let mut spans = OtlpStats {
            spans_dropped: 4,
            ..Default::default()
        };
        assert_eq!(
            t.new_losses(&[], &http, &DnsStats::default(), &[], &spans, "relay"),
            [loss(STAGE_OTLP_QUEUE, "relay", 4)]
        );
        spans.spans_dropped = 6;
        spans.spans_rejected = 1;
        assert_eq!(
            t.new_losses(&[], &http, &DnsStats::default(), &[], &spans, "relay"),
            [
                loss(STAGE_OTLP_QUEUE, "relay", 2),
                loss(STAGE_OTLP_EXPORT, "relay", 1)
            ]
        );
        assert!(
            t.new_losses(&[], &http, &DnsStats::default(), &[], &spans, "relay")
                .is_empty()
        );
    }

    #[test]
    fn dns_messages_the_l7_stage_could_not_read_are_relay_losses() {
        let mut t = LossTracker::default();
        let mut dns = DnsStats {
            malformed: 2,
            truncated: 1,
            unmatched_responses: 5, // still flows: no loss
            ..Default::default()
        };
        let (http, spans) = (HttpStats::default(), OtlpStats::default());
        assert_eq!(
            t.new_losses(&[], &http, &dns, &[], &spans, "relay"),
            [loss(stage::RELAY_L7_DNS, "relay", 3)]
        );
        dns.truncated = 2;
        assert_eq!(
            t.new_losses(&[], &http, &dns, &[], &spans, "relay"),
            [loss(stage::RELAY_L7_DNS, "relay", 1)]
        );
    }

    #[test]
    fn queue_drops_are_lost_events_of_the_observer_queue() {
        let now = Timestamp::now();
        let ev = loss(stage::RELAY_QUEUE, "vn1", 7).event(now);
        assert_eq!(ev.source, LostEventSource::ObserverEventsQueue as i32);
        assert_eq!(
            (ev.num_events_lost, ev.first, ev.last),
            (7, Some(now), Some(now))
        );
    }

    #[test]
    fn loss_counters_add_up_per_stage_and_node() {
        let c = LossCounters {
            node_name: "relay".into(),
            ..Default::default()
        };
        c.add(stage::RELAY_QUEUE, "vn1", 2);
        c.add(stage::RELAY_QUEUE, "vn1", 3);
        c.add(stage::RELAY_QUEUE, "vn2", 0);
        c.lost(flow_observer::observer::stage::HUBBLE_RING_READER, 4);
        assert_eq!(
            c.totals(),
            [
                ("hubble_ring_reader".into(), "relay".into(), 4),
                (stage::RELAY_QUEUE.into(), "vn1".into(), 5),
            ]
        );
    }
}

//! `observer.Observer` served from a flow ring: GetFlows with Hubble's request semantics,
//! ServerStatus, GetNamespaces, and GetNodes where a [`NodesSource`] knows the nodes
//! (notes/hubble-api.md §1, §2.1, §2.2).

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use webb_proto::Timestamp;
use webb_proto::flow::{Flow, LostEvent, LostEventSource};
use webb_proto::observer::observer_server::{Observer, ObserverServer};
use webb_proto::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse,
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse,
    GetNodesRequest, GetNodesResponse, Namespace, Node, ServerStatusRequest, ServerStatusResponse,
    get_flows_response::ResponseTypes,
};
use webb_proto::relay::NodeStatusEvent;
use webb_proto::webb_v1::{FlowExtras, StatusExtras};
use webb_security::{Access, Refusal};

use crate::query::FlowQuery;
use crate::ring::{LossReporter, Ring, RingReader, Step};
use crate::stored::{EndpointCache, RingEvent, StoredFlow};

/// Default version reported in `ServerStatus.version` and the version header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// How long a namespace stays listed after its last flow (Hubble: one hour).
pub const NAMESPACE_TTL: Duration = Duration::from_secs(3600);
/// Responses buffered per GetFlows stream before the reader waits for the client.
const STREAM_BUFFER: usize = 256;
/// Largest request decoded: a GetFlows request is filters and a few numbers; the filter
/// limits (flow-filter) keep any legitimate one far below this.
pub const MAX_REQUEST_BYTES: usize = 256 << 10;

/// Loss stages this crate reports through [`ObserverMetrics::lost`].
pub mod stage {
    /// A GetFlows reader fell behind the flow ring and entries were overwritten.
    pub const HUBBLE_RING_READER: &str = "hubble_ring_reader";
    /// A stored flow could not be decoded again (skipped).
    pub const DECODE: &str = "decode";
}

/// Where the observer reports what it drops and how full the ring is; each server exports
/// these with its own metrics.
pub trait ObserverMetrics: Send + Sync + std::fmt::Debug {
    /// `count` events lost at `stage` (see [`stage`]).
    fn lost(&self, stage: &str, count: u64);
    /// Entries in the ring after a batch.
    fn ring_depth(&self, _len: usize) {}
}

/// Metrics that go nowhere (tests, tools).
impl ObserverMetrics for () {
    fn lost(&self, _stage: &str, _count: u64) {}
}

/// The response header carrying the server's version, which the Hubble CLI reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionHeader {
    /// `hubble-server-version` (a node).
    #[default]
    Server,
    /// `hubble-relay-version` (a relay).
    Relay,
}

impl VersionHeader {
    pub const fn name(self) -> &'static str {
        match self {
            VersionHeader::Server => "hubble-server-version",
            VersionHeader::Relay => "hubble-relay-version",
        }
    }
}

/// Node counts a relay adds to `ServerStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCounts {
    pub connected: u32,
    pub unavailable: u32,
    /// Names of unavailable nodes (Hubble lists at most 10).
    pub unavailable_names: Vec<String>,
}

/// What only a relay knows: the nodes behind it. Without one, GetNodes is `Unimplemented`
/// (as on Hubble's node server) and ServerStatus carries no node counts.
#[tonic::async_trait]
pub trait NodesSource: Send + Sync + std::fmt::Debug + 'static {
    /// The `GetNodes` answer.
    async fn nodes(&self) -> Result<Vec<Node>, Status>;
    /// Node counts for `ServerStatus`.
    fn counts(&self) -> NodeCounts;
    /// `node_status` responses sent at the start of every GetFlows stream (Hubble's relay
    /// sends NODE_CONNECTED and, if any, NODE_UNAVAILABLE first).
    fn stream_preamble(&self) -> Vec<NodeStatusEvent> {
        Vec::new()
    }
    /// The `ServerStatus` of every connected node, added to the relay's own in its
    /// `ServerStatus` answer (see [`add_node_statuses`]), with the node's Webb extras (its
    /// policy state), passed on in the relay's. Nodes that do not answer in time are left out;
    /// by default there are none.
    async fn node_statuses(&self) -> Vec<NodeStatus> {
        Vec::new()
    }
}

/// One node's `ServerStatus` answer as a relay gathers it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStatus {
    pub status: ServerStatusResponse,
    /// Its `webb-status-bin` header (empty from a Hubble node).
    pub extras: StatusExtras,
}

/// Webb's state beside a `ServerStatus` answer (`webb.v1.StatusExtras` in the
/// `webb-status-bin` header): an agent's policy in force and its last rejected load.
pub trait StatusExtrasSource: Send + Sync + std::fmt::Debug + 'static {
    fn status_extras(&self) -> StatusExtras;
}

/// Adds the nodes' counts to a relay's own status as Hubble's relay sums them: `num_flows`,
/// `max_flows`, `seen_flows` and `flows_rate` summed, the longest `uptime_ns`.
pub fn add_node_statuses(own: &mut ServerStatusResponse, nodes: &[ServerStatusResponse]) {
    for n in nodes {
        own.num_flows = own.num_flows.saturating_add(n.num_flows);
        own.max_flows = own.max_flows.saturating_add(n.max_flows);
        own.seen_flows = own.seen_flows.saturating_add(n.seen_flows);
        own.flows_rate += n.flows_rate;
        own.uptime_ns = own.uptime_ns.max(n.uptime_ns);
    }
}

/// Which stored flows a GetFlows request needs from history (everything older than the ring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRequest {
    /// Unix ns, inclusive (`None`: from the oldest stored flow).
    pub since: Option<i128>,
    /// Unix ns, exclusive: the oldest flow still in the ring, or the request's `until`.
    pub until: Option<i128>,
    /// Matching flows wanted at most (`None`: all).
    pub limit: Option<u64>,
    /// The newest `limit` (Hubble's `--last N`) rather than the oldest (`--first N`, `--since`).
    pub newest_first: bool,
}

/// Flows older than the ring (the relay's flow store). A request that wants more than the
/// ring holds (`since` before its oldest flow, `--last N` beyond it, `--first N`) reads here
/// first and continues seamlessly with the ring, then live.
#[tonic::async_trait]
pub trait History: Send + Sync + std::fmt::Debug + 'static {
    /// Flows `filters` accept, oldest first (also when `newest_first` chose which), their
    /// Webb extras attached in `extensions` as stored.
    async fn flows(
        &self,
        request: HistoryRequest,
        filters: flow_filter::FlowFilters,
    ) -> Result<futures::stream::BoxStream<'static, Result<Flow, Status>>, Status>;
}

/// The ring and counters, shared by the single writer and every API call.
#[derive(Debug)]
pub struct Observed {
    node_name: String,
    ring: Arc<Ring<RingEvent>>,
    seen_flows: AtomicU64,
    started: Instant,
    namespaces: Mutex<HashMap<String, Instant>>,
    /// Endpoints shared by the stored flows (only the writer takes it).
    endpoints: Mutex<EndpointCache>,
    metrics: Arc<dyn ObserverMetrics>,
}

impl Observed {
    /// `node_name` names this server in responses whose flow has none, and its lost events.
    pub fn new(
        node_name: &str,
        ring: Arc<Ring<RingEvent>>,
        metrics: Arc<dyn ObserverMetrics>,
    ) -> Self {
        Observed {
            node_name: node_name.to_string(),
            ring,
            seen_flows: AtomicU64::new(0),
            started: Instant::now(),
            namespaces: Mutex::new(HashMap::new()),
            endpoints: Mutex::new(EndpointCache::default()),
            metrics,
        }
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub fn ring(&self) -> &Arc<Ring<RingEvent>> {
        &self.ring
    }

    pub fn metrics(&self) -> &Arc<dyn ObserverMetrics> {
        &self.metrics
    }

    /// Flows pushed since start (`ServerStatus.seen_flows`).
    pub fn seen_flows(&self) -> u64 {
        self.seen_flows.load(Ordering::Relaxed)
    }

    /// Time since this state was created (`ServerStatus.uptime_ns`).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Adds a flow (its `extensions` should be empty: Webb's extras go in `extras`) without
    /// waking readers; call [`Observed::flush`] after a batch. Only one task may push.
    pub fn push_flow(&self, flow: Flow, extras: Option<&FlowExtras>) {
        self.note_namespaces(&flow);
        self.seen_flows.fetch_add(1, Ordering::Relaxed);
        let stored = {
            let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
            StoredFlow::new(flow, extras, &mut endpoints)
        };
        self.ring.push_quiet(RingEvent::Flow(stored));
    }

    /// Adds a flow its producer stored itself (see [`StoredFlow::from_encoded`]) without waking
    /// readers. The producer reports the namespaces its flows carry through
    /// [`Observed::note_namespace`] (once per batch is enough: they are kept for an hour).
    /// Only one task may push.
    pub fn push_stored(&self, stored: StoredFlow) {
        self.seen_flows.fetch_add(1, Ordering::Relaxed);
        self.ring.push_quiet(RingEvent::Flow(stored));
    }

    /// Notes that a flow carried an endpoint of `namespace` (`GetNamespaces`).
    pub fn note_namespace(&self, namespace: &str) {
        if namespace.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut ns = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        match ns.get_mut(namespace) {
            Some(t) => *t = now,
            None => {
                ns.insert(namespace.to_string(), now);
            }
        }
    }

    /// Adds events lost upstream of this server, reported as from this node.
    pub fn push_lost(&self, event: LostEvent) {
        self.push_lost_from(&self.node_name.clone(), event);
    }

    /// Adds events lost upstream, reported as from `node_name` (a relay forwarding a peer's).
    pub fn push_lost_from(&self, node_name: &str, event: LostEvent) {
        self.ring.push_quiet(RingEvent::Lost {
            node_name: node_name.to_string(),
            event: Box::new(event),
        });
    }

    /// Adds a node status change (relay), stamped now.
    pub fn push_node_status(&self, event: NodeStatusEvent) {
        self.ring.push_quiet(RingEvent::NodeStatus {
            time: Timestamp::now(),
            event: Box::new(event),
        });
    }

    /// Wakes followers after a batch of pushes.
    pub fn flush(&self) {
        self.ring.notify_readers();
        self.metrics.ring_depth(self.ring.len());
    }

    fn note_namespaces(&self, flow: &Flow) {
        let now = Instant::now();
        let mut ns = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        for ep in [&flow.source, &flow.destination].into_iter().flatten() {
            if ep.namespace.is_empty() {
                continue;
            }
            match ns.get_mut(&ep.namespace) {
                Some(t) => *t = now,
                None => {
                    ns.insert(ep.namespace.clone(), now);
                }
            }
        }
    }

    /// Namespaces seen in flows within the last hour, sorted (cluster is empty: standalone).
    pub fn namespaces(&self) -> Vec<Namespace> {
        let now = Instant::now();
        let mut ns = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        ns.retain(|_, t| now.duration_since(*t) < NAMESPACE_TTL);
        let sorted: BTreeSet<&String> = ns.keys().collect();
        sorted
            .into_iter()
            .map(|n| Namespace {
                cluster: String::new(),
                namespace: n.clone(),
            })
            .collect()
    }

    /// Flows per second over the last minute (or over the ring's span when it holds less), as
    /// Hubble computes `flows_rate`.
    pub fn flows_rate(&self, now: Timestamp) -> f64 {
        let now_ns = now.unix_nanos();
        let mut since_ns = now_ns - 60_000_000_000;
        let head = self.ring.head();
        let oldest = self.ring.oldest();
        let mut count = 0u64;
        let mut last_seen = None;
        let mut complete = true;
        for seq in (oldest..head).rev() {
            let Ok(ev) = self.ring.get(seq) else {
                complete = false;
                break;
            };
            let RingEvent::Flow(r) = ev.as_ref() else {
                continue;
            };
            let t = r.time_ns();
            if t < since_ns {
                complete = false;
                break;
            }
            last_seen = Some(t);
            count += 1;
        }
        // The ring ran out before a minute: rate over what it holds.
        if complete
            && oldest > 0
            && let Some(t) = last_seen
        {
            since_ns = t;
        }
        let secs = (now_ns - since_ns) as f64 / 1e9;
        if secs <= 0.0 {
            return 0.0;
        }
        count as f64 / secs
    }
}

/// `observer.Observer` over an [`Observed`]. By default a node server (version header
/// `hubble-server-version`, crate version, GetNodes `Unimplemented`).
#[derive(Debug, Clone)]
pub struct ObserverService {
    state: Arc<Observed>,
    version: Arc<str>,
    version_header: VersionHeader,
    nodes: Option<Arc<dyn NodesSource>>,
    history: Option<Arc<dyn History>>,
    status_extras: Option<Arc<dyn StatusExtrasSource>>,
    /// Payload trust and the per-client stream bound (webb-security).
    access: Access,
}

impl ObserverService {
    pub fn new(state: Arc<Observed>) -> Self {
        ObserverService {
            state,
            version: VERSION.into(),
            version_header: VersionHeader::Server,
            nodes: None,
            history: None,
            status_extras: None,
            access: Access::default(),
        }
    }

    /// Version for `ServerStatus.version` and the version header (semver, no `v`).
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into().into();
        self
    }

    pub fn with_version_header(mut self, header: VersionHeader) -> Self {
        self.version_header = header;
        self
    }

    /// Serves GetNodes (and node counts in ServerStatus) from `nodes`.
    pub fn with_nodes(mut self, nodes: Arc<dyn NodesSource>) -> Self {
        self.nodes = Some(nodes);
        self
    }

    /// Reads flows older than the ring from `history`.
    pub fn with_history(mut self, history: Arc<dyn History>) -> Self {
        self.history = Some(history);
        self
    }

    /// Adds `source`'s extras to every `ServerStatus` answer (in the `webb-status-bin` header).
    pub fn with_status_extras(mut self, source: Arc<dyn StatusExtrasSource>) -> Self {
        self.status_extras = Some(source);
        self
    }

    /// Who gets the payload option and how many streams a client may hold (default: anyone,
    /// [`webb_security::StreamGate::DEFAULT_MAX_PER_CLIENT`]).
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    pub fn access(&self) -> &Access {
        &self.access
    }

    pub fn state(&self) -> &Arc<Observed> {
        &self.state
    }

    pub fn into_server(self) -> ObserverServer<Self> {
        ObserverServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    fn versioned<T>(&self, mut resp: Response<T>) -> Response<T> {
        if let Ok(v) = MetadataValue::try_from(&*self.version) {
            resp.metadata_mut().insert(self.version_header.name(), v);
        }
        resp
    }

    /// The `ServerStatus` answer: this server's own ring, plus, on a relay, every connected
    /// node's counts ([`add_node_statuses`]).
    pub async fn cluster_status(&self) -> ServerStatusResponse {
        self.cluster_status_with_extras().await.0
    }

    /// [`Self::cluster_status`] and Webb's extras beside it: this server's own (an agent's
    /// policy state) and, on a relay, every node's that answered.
    pub async fn cluster_status_with_extras(&self) -> (ServerStatusResponse, StatusExtras) {
        let mut out = self.status();
        let mut extras = self
            .status_extras
            .as_ref()
            .map(|s| s.status_extras())
            .unwrap_or_default();
        if let Some(nodes) = &self.nodes {
            let statuses = nodes.node_statuses().await;
            let counts: Vec<ServerStatusResponse> =
                statuses.iter().map(|n| n.status.clone()).collect();
            add_node_statuses(&mut out, &counts);
            for n in statuses {
                extras.policy.extend(n.extras.policy);
            }
        }
        (out, extras)
    }

    /// This server's own counts (its ring) and, on a relay, the node counts.
    pub fn status(&self) -> ServerStatusResponse {
        let s = &self.state;
        let mut out = ServerStatusResponse {
            num_flows: s.ring.len() as u64,
            max_flows: s.ring.capacity() as u64,
            seen_flows: s.seen_flows(),
            uptime_ns: s.uptime().as_nanos() as u64,
            version: self.version.to_string(),
            flows_rate: s.flows_rate(Timestamp::now()),
            ..Default::default()
        };
        if let Some(nodes) = &self.nodes {
            let c = nodes.counts();
            out.num_connected_nodes = Some(c.connected.into());
            out.num_unavailable_nodes = Some(c.unavailable.into());
            out.unavailable_nodes = c.unavailable_names;
        }
        out
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn lost_response(node: &str, lost: LostEvent) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: node.to_string(),
        time: Some(lost.last.unwrap_or_else(Timestamp::now)),
        response_types: Some(ResponseTypes::LostEvents(lost)),
    }
}

fn node_status_response(node: &str, time: Timestamp, event: NodeStatusEvent) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: node.to_string(),
        time: Some(time),
        response_types: Some(ResponseTypes::NodeStatus(event)),
    }
}

fn ring_loss(count: u64) -> LostEvent {
    let now = Timestamp::now();
    LostEvent {
        source: LostEventSource::HubbleRingBuffer as i32,
        num_events_lost: count,
        cpu: None,
        first: Some(now),
        last: Some(now),
    }
}

/// Time of the oldest flow in the ring (`None` when it holds none).
fn oldest_flow_ns(ring: &Ring<RingEvent>) -> Option<i128> {
    (ring.oldest()..ring.head()).find_map(|seq| match ring.get(seq).ok()?.as_ref() {
        RingEvent::Flow(f) => Some(f.time_ns()),
        _ => None,
    })
}

/// Streams one GetFlows request from history (when it needs any), then the ring, into `tx`
/// until done or the client leaves.
/// Lost events and node status are never filtered nor counted against `number`.
async fn serve_flows(
    state: Arc<Observed>,
    history: Option<Arc<dyn History>>,
    query: FlowQuery,
    preamble: Vec<NodeStatusEvent>,
    tx: mpsc::Sender<Result<GetFlowsResponse, Status>>,
) {
    let node = state.node_name.clone();
    for event in preamble {
        let r = node_status_response(&node, Timestamp::now(), event);
        if tx.send(Ok(r)).await.is_err() {
            return;
        }
    }
    let ring = state.ring.clone();
    // With history, flows older than the ring's oldest slot are history's to send: the relay
    // stores every flow it rings, so a late flow (older than its ring neighbours) would
    // otherwise come twice, once from each. Taken once, before the ring can move.
    let history_cut = history.as_ref().and_then(|_| oldest_flow_ns(&ring));
    let (start, in_ring) = query.start_and_count(&ring, history_cut);
    // A non-following request reads what the ring held when it arrived.
    let end = ring.head();
    let mut sent = 0u64;
    let mut history_read = false;
    if let Some(history) = &history
        && let Some(request) = query.history_request(history_cut, in_ring)
    {
        history_read = true;
        match history.flows(request, query.filters.clone()).await {
            Ok(mut flows) => {
                use futures::StreamExt;
                while let Some(flow) = flows.next().await {
                    let r = match flow {
                        Ok(mut flow) => {
                            let extras = webb_proto::extras::unpack(&flow).and_then(Result::ok);
                            webb_proto::extras::strip(&mut flow);
                            sent += 1;
                            Ok(query.response(&node, &flow, extras.as_ref()))
                        }
                        Err(e) => Err(e),
                    };
                    let failed = r.is_err();
                    if tx.send(r).await.is_err() || failed {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
    let mut reader = RingReader::new(ring, start);
    let mut losses = LossReporter::new(LossReporter::HUBBLE_INTERVAL);
    loop {
        if !query.follow && query.number != 0 && sent >= query.number {
            break;
        }
        let step = if query.follow {
            // While a loss waits for its once-per-second report, wake up to send it.
            let wait = if losses.pending() > 0 {
                LossReporter::HUBBLE_INTERVAL
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                _ = tx.closed() => return,
                r = tokio::time::timeout(wait, reader.next()) => r.ok(),
            }
        } else {
            if reader.position() >= end {
                break;
            }
            match reader.try_next() {
                Some(step) => Some(step),
                None => break,
            }
        };
        let response = match step {
            None => None,
            Some(Step::Lost { count }) => {
                state.metrics.lost(stage::HUBBLE_RING_READER, count);
                losses.record(count);
                None
            }
            Some(Step::Entry(seq, ev)) => match ev.as_ref() {
                RingEvent::Lost { node_name, event } => Some(lost_response(node_name, **event)),
                RingEvent::NodeStatus { time, event } => {
                    Some(node_status_response(&node, *time, (**event).clone()))
                }
                RingEvent::Flow(stored) => {
                    let t = stored.time_ns();
                    if query.since.is_some_and(|s| t < s) {
                        continue;
                    }
                    if query.until.is_some_and(|u| t > u) {
                        break;
                    }
                    // History sent these already; flows that arrive after the request are
                    // live, whatever their time.
                    if history_read && seq < end && history_cut.is_some_and(|cut| t < cut) {
                        continue;
                    }
                    match (stored.flow(), stored.extras()) {
                        (Ok(flow), Ok(extras)) => query.matches(&flow).then(|| {
                            sent += 1;
                            query.response(&node, &flow, extras.as_ref())
                        }),
                        _ => {
                            state.metrics.lost(stage::DECODE, 1);
                            None
                        }
                    }
                }
            },
        };
        if let Some(r) = response
            && tx.send(Ok(r)).await.is_err()
        {
            return;
        }
        if let Some(count) = losses.take_due(Instant::now())
            && tx
                .send(Ok(lost_response(&node, ring_loss(count))))
                .await
                .is_err()
        {
            return;
        }
    }
    // A non-following reader still hears about what it missed.
    if losses.pending() > 0 {
        let count = losses.pending();
        let _ = tx.send(Ok(lost_response(&node, ring_loss(count)))).await;
    }
}

#[tonic::async_trait]
impl Observer for ObserverService {
    type GetFlowsStream = BoxStream<GetFlowsResponse>;
    type GetAgentEventsStream = BoxStream<GetAgentEventsResponse>;
    type GetDebugEventsStream = BoxStream<GetDebugEventsResponse>;

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        let query = FlowQuery::from_request(request.get_ref()).inspect_err(|status| {
            // Only the filter limits answer ResourceExhausted here.
            if status.code() == tonic::Code::ResourceExhausted {
                self.access.counters.refused(Refusal::FilterComplexity);
            }
        })?;
        // Held by the response stream: the client's slot frees when the stream ends.
        let permit = self.access.admit(&request, query.include_payload)?;
        let preamble = self
            .nodes
            .as_ref()
            .map(|n| n.stream_preamble())
            .unwrap_or_default();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(serve_flows(
            self.state.clone(),
            self.history.clone(),
            query,
            preamble,
            tx,
        ));
        let stream = ReceiverStream::new(rx).map(move |r| {
            let _held = &permit;
            r
        });
        Ok(self.versioned(Response::new(Box::pin(stream) as Self::GetFlowsStream)))
    }

    async fn get_agent_events(
        &self,
        _request: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented(
            "agent events are not recorded by Webb",
        ))
    }

    async fn get_debug_events(
        &self,
        _request: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented(
            "debug events are not recorded by Webb",
        ))
    }

    async fn get_nodes(
        &self,
        _request: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        match &self.nodes {
            Some(source) => {
                let nodes = source.nodes().await?;
                Ok(self.versioned(Response::new(GetNodesResponse { nodes })))
            }
            // As Hubble's node server: only a relay knows the nodes.
            None => Err(Status::unimplemented("GetNodes is served by the relay")),
        }
    }

    async fn get_namespaces(
        &self,
        _request: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        Ok(self.versioned(Response::new(GetNamespacesResponse {
            namespaces: self.state.namespaces(),
        })))
    }

    async fn server_status(
        &self,
        _request: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let (status, extras) = self.cluster_status_with_extras().await;
        let mut resp = self.versioned(Response::new(status));
        webb_proto::status::insert(resp.metadata_mut(), &extras);
        Ok(resp)
    }
}

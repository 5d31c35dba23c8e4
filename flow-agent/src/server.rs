//! The node's Hubble API: `observer.Observer` (GetFlows with Hubble's request semantics,
//! ServerStatus, GetNamespaces, ...), `peer.Peer/Notify` and the standard gRPC health service,
//! all served from the flow ring (notes/hubble-api.md §1, §2.1, §2.2).

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use flow_filter::FlowFilters;
use webb_proto::Timestamp;
use webb_proto::flow::{Flow, LostEvent, LostEventSource};
use webb_proto::observer::observer_server::{Observer, ObserverServer};
use webb_proto::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse,
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse,
    GetNodesRequest, GetNodesResponse, Namespace, ServerStatusRequest, ServerStatusResponse,
    get_flows_response::ResponseTypes,
};
use webb_proto::peer::peer_server::{Peer, PeerServer};
use webb_proto::peer::{ChangeNotification, ChangeNotificationType, NotifyRequest};
use webb_proto::webb_v1::FlowExtras;

use crate::decode::FlowRecord;
use crate::metrics::Metrics;
use crate::ring::{LossReporter, Ring, RingReader, Step};

/// Version reported in `ServerStatus.version` and the `hubble-server-version` header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Response header the Hubble CLI reads.
pub const VERSION_HEADER: &str = "hubble-server-version";
/// How long a namespace stays listed after its last flow (Hubble: one hour).
pub const NAMESPACE_TTL: Duration = Duration::from_secs(3600);
/// Responses buffered per GetFlows stream before the reader waits for the client.
const STREAM_BUFFER: usize = 256;

/// What the ring holds: flows and the datapath's own losses (which Hubble keeps in the ring
/// too, so every reader sees them in order).
#[derive(Debug, Clone, PartialEq)]
pub enum RingEvent {
    Flow(StoredFlow),
    Lost(LostEvent),
}

/// A flow as the ring keeps it: protobuf-encoded, because a decoded `Flow` with its strings
/// takes ~2.5 KB and its encoding ~0.5 KB (a 65535-flow ring must fit an agent in 64 MB).
/// The time stays outside so time-range walks need no decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlow {
    time_ns: i128,
    flow: Box<[u8]>,
    extras: Option<Box<[u8]>>,
}

impl StoredFlow {
    pub fn new(record: &FlowRecord) -> Self {
        StoredFlow {
            time_ns: flow_time(&record.flow),
            flow: record.flow.encode_to_vec().into_boxed_slice(),
            extras: record
                .extras
                .as_ref()
                .map(|e| e.encode_to_vec().into_boxed_slice()),
        }
    }

    /// Flow time in Unix nanoseconds (0 when the flow has none).
    pub fn time_ns(&self) -> i128 {
        self.time_ns
    }

    /// Bytes held for this flow.
    pub fn stored_len(&self) -> usize {
        self.flow.len() + self.extras.as_ref().map_or(0, |e| e.len())
    }

    /// The flow and its extras, decoded.
    pub fn record(&self) -> Result<FlowRecord, prost::DecodeError> {
        Ok(FlowRecord {
            flow: Flow::decode(&self.flow[..])?,
            extras: match &self.extras {
                Some(e) => Some(FlowExtras::decode(&e[..])?),
                None => None,
            },
        })
    }
}

/// A peer announced by `peer.Peer/Notify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub name: String,
    /// Bare address (Hubble's relay adds the port).
    pub address: String,
}

/// State shared by the pipeline (writer) and every API call (readers).
#[derive(Debug)]
pub struct Observed {
    node_name: String,
    ring: Arc<Ring<RingEvent>>,
    seen_flows: AtomicU64,
    started: Instant,
    namespaces: Mutex<HashMap<String, Instant>>,
    metrics: Arc<Metrics>,
}

impl Observed {
    pub fn new(node_name: &str, ring: Arc<Ring<RingEvent>>, metrics: Arc<Metrics>) -> Self {
        Observed {
            node_name: node_name.to_string(),
            ring,
            seen_flows: AtomicU64::new(0),
            started: Instant::now(),
            namespaces: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub fn ring(&self) -> &Arc<Ring<RingEvent>> {
        &self.ring
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn seen_flows(&self) -> u64 {
        self.seen_flows.load(Ordering::Relaxed)
    }

    /// Adds a decoded flow without waking readers (call [`Observed::flush`] after a batch).
    pub fn push_flow(&self, record: FlowRecord) {
        let now = Instant::now();
        {
            let mut ns = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
            for ep in [&record.flow.source, &record.flow.destination]
                .into_iter()
                .flatten()
            {
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
        self.seen_flows.fetch_add(1, Ordering::Relaxed);
        self.ring
            .push_quiet(RingEvent::Flow(StoredFlow::new(&record)));
    }

    /// Records `count` events the datapath lost (e.g. ring-buffer reserve failures), so
    /// clients learn about them as Hubble's `LostEvent{PERF_EVENT_RING_BUFFER}`.
    pub fn push_datapath_loss(&self, count: u64) {
        if count == 0 {
            return;
        }
        let now = Timestamp::now();
        self.ring.push_quiet(RingEvent::Lost(LostEvent {
            source: LostEventSource::PerfEventRingBuffer as i32,
            num_events_lost: count,
            cpu: None,
            first: Some(now),
            last: Some(now),
        }));
    }

    /// Wakes followers after a batch of pushes.
    pub fn flush(&self) {
        self.ring.notify_readers();
        self.metrics.set_ring_depth(self.ring.len() as i64);
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

fn flow_time(flow: &Flow) -> i128 {
    flow.time.map(|t| t.unix_nanos()).unwrap_or(0)
}

fn with_version<T>(mut resp: Response<T>) -> Response<T> {
    if let Ok(v) = VERSION.parse() {
        resp.metadata_mut().insert(VERSION_HEADER, v);
    }
    resp
}

/// `observer.Observer` of one node.
#[derive(Debug, Clone)]
pub struct ObserverService {
    state: Arc<Observed>,
}

impl ObserverService {
    pub fn new(state: Arc<Observed>) -> Self {
        ObserverService { state }
    }

    pub fn into_server(self) -> ObserverServer<Self> {
        ObserverServer::new(self)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A validated GetFlows request.
struct FlowQuery {
    number: u64,
    first: bool,
    follow: bool,
    since: Option<i128>,
    until: Option<i128>,
    filters: FlowFilters,
    mask: Option<crate::fieldmask::FlowMask>,
    include_extras: bool,
    include_payload: bool,
}

impl FlowQuery {
    fn from_request(req: &GetFlowsRequest) -> Result<Self, Status> {
        if req.first && req.follow {
            return Err(Status::invalid_argument(
                "first cannot be specified with follow",
            ));
        }
        let options = webb_proto::options::from_request(req).map_err(|e| {
            Status::invalid_argument(format!("invalid webb.v1.FlowsRequestOptions: {e}"))
        })?;
        let filters = FlowFilters::compile(&req.whitelist, &req.blacklist)?;
        let mask = match &req.field_mask {
            Some(m) if !m.paths.is_empty() => Some(
                crate::fieldmask::FlowMask::new(&m.paths)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            ),
            _ => None,
        };
        let ts = |t: &Option<Timestamp>| -> Result<Option<i128>, Status> {
            match t {
                None => Ok(None),
                Some(t) => t
                    .to_datetime()
                    .map(|_| Some(t.unix_nanos()))
                    .map_err(|e| Status::invalid_argument(format!("invalid time: {e}"))),
            }
        };
        Ok(FlowQuery {
            number: req.number,
            first: req.first,
            follow: req.follow,
            since: ts(&req.since)?,
            until: ts(&req.until)?,
            filters,
            mask,
            include_extras: options.include_extras,
            include_payload: options.include_payload,
        })
    }

    /// Where reading starts (Hubble's `newRingReader`).
    fn start(&self, ring: &Ring<RingEvent>) -> u64 {
        let head = ring.head();
        let oldest = ring.oldest();
        if self.first && self.since.is_none() {
            return oldest;
        }
        if self.follow && self.number == 0 && self.since.is_none() {
            return head;
        }
        // Walk back from the newest entry until enough matching flows (or one older than
        // `since`) are behind us.
        let mut count = 0u64;
        let mut start = oldest;
        for seq in (oldest..head).rev() {
            let ev = match ring.get(seq) {
                Ok(ev) => ev,
                Err(_) => {
                    start = seq + 1;
                    break;
                }
            };
            let RingEvent::Flow(r) = ev.as_ref() else {
                continue;
            };
            if !self.filters.is_empty()
                && !r.record().is_ok_and(|rec| self.filters.matches(&rec.flow))
            {
                continue;
            }
            if let Some(since) = self.since {
                if r.time_ns() < since {
                    start = seq + 1;
                    break;
                }
                continue;
            }
            count += 1;
            if self.number != 0 && count == self.number {
                start = seq;
                break;
            }
        }
        start
    }

    fn response(&self, node: &str, record: &FlowRecord) -> GetFlowsResponse {
        let flow = record.flow_for(self.include_extras, self.include_payload);
        let flow = match &self.mask {
            Some(mask) => mask.apply(&flow),
            None => flow,
        };
        GetFlowsResponse {
            node_name: if record.flow.node_name.is_empty() {
                node.to_string()
            } else {
                record.flow.node_name.clone()
            },
            time: record.flow.time,
            response_types: Some(ResponseTypes::Flow(flow)),
        }
    }
}

fn lost_response(node: &str, lost: LostEvent) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: node.to_string(),
        time: Some(lost.last.unwrap_or_else(Timestamp::now)),
        response_types: Some(ResponseTypes::LostEvents(lost)),
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

/// Streams one GetFlows request from the ring into `tx` until done or the client leaves.
async fn serve_flows(
    state: Arc<Observed>,
    query: FlowQuery,
    tx: mpsc::Sender<Result<GetFlowsResponse, Status>>,
) {
    let ring = state.ring.clone();
    let start = query.start(&ring);
    // A non-following request reads what the ring held when it arrived.
    let end = ring.head();
    let mut reader = RingReader::new(ring, start);
    let mut losses = LossReporter::new(LossReporter::HUBBLE_INTERVAL);
    let mut sent = 0u64;
    let node = state.node_name.clone();
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
        match step {
            None => {}
            Some(Step::Lost { count }) => {
                state.metrics.lost("hubble_ring_reader", count);
                losses.record(count);
            }
            Some(Step::Entry(_, ev)) => match ev.as_ref() {
                RingEvent::Lost(lost) => {
                    if tx.send(Ok(lost_response(&node, *lost))).await.is_err() {
                        return;
                    }
                }
                RingEvent::Flow(stored) => {
                    let t = stored.time_ns();
                    if query.since.is_some_and(|s| t < s) {
                        continue;
                    }
                    if query.until.is_some_and(|u| t > u) {
                        break;
                    }
                    let Ok(r) = stored.record() else {
                        state.metrics.lost(crate::metrics::stage::DECODE, 1);
                        continue;
                    };
                    if !query.filters.matches(&r.flow) {
                        continue;
                    }
                    if tx.send(Ok(query.response(&node, &r))).await.is_err() {
                        return;
                    }
                    sent += 1;
                }
            },
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
        let query = FlowQuery::from_request(request.get_ref())?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(serve_flows(self.state.clone(), query, tx));
        Ok(with_version(Response::new(
            Box::pin(ReceiverStream::new(rx)) as Self::GetFlowsStream,
        )))
    }

    async fn get_agent_events(
        &self,
        _request: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented(
            "agent events are not recorded by webb-agent",
        ))
    }

    async fn get_debug_events(
        &self,
        _request: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented(
            "debug events are not recorded by webb-agent",
        ))
    }

    async fn get_nodes(
        &self,
        _request: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        // As Hubble's node server: only a relay knows the nodes.
        Err(Status::unimplemented("GetNodes is served by the relay"))
    }

    async fn get_namespaces(
        &self,
        _request: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        Ok(with_version(Response::new(GetNamespacesResponse {
            namespaces: self.state.namespaces(),
        })))
    }

    async fn server_status(
        &self,
        _request: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let s = &self.state;
        Ok(with_version(Response::new(ServerStatusResponse {
            num_flows: s.ring.len() as u64,
            max_flows: s.ring.capacity() as u64,
            seen_flows: s.seen_flows(),
            uptime_ns: s.started.elapsed().as_nanos() as u64,
            version: VERSION.to_string(),
            flows_rate: s.flows_rate(Timestamp::now()),
            ..Default::default()
        })))
    }
}

/// `peer.Peer`: announces this node and any static peers, then stays open.
#[derive(Debug, Clone)]
pub struct PeerService {
    peers: Arc<Vec<PeerInfo>>,
}

impl PeerService {
    pub fn new(peers: Vec<PeerInfo>) -> Self {
        PeerService {
            peers: Arc::new(peers),
        }
    }

    pub fn into_server(self) -> PeerServer<Self> {
        PeerServer::new(self)
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    type NotifyStream = BoxStream<ChangeNotification>;

    async fn notify(
        &self,
        _request: Request<NotifyRequest>,
    ) -> Result<Response<Self::NotifyStream>, Status> {
        let (tx, rx) = mpsc::channel(self.peers.len().max(1));
        let peers = self.peers.clone();
        tokio::spawn(async move {
            for p in peers.iter() {
                let n = ChangeNotification {
                    name: p.name.clone(),
                    address: p.address.clone(),
                    r#type: ChangeNotificationType::PeerAdded as i32,
                    tls: None,
                };
                if tx.send(Ok(n)).await.is_err() {
                    return;
                }
            }
            // The peer list is static: keep the stream open until the client leaves.
            tx.closed().await;
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as Self::NotifyStream
        ))
    }
}

/// The services of one agent, ready to mount on any number of listeners.
#[derive(Debug, Clone)]
pub struct Services {
    pub observer: ObserverService,
    pub peer: PeerService,
}

impl Services {
    /// A tonic router with Observer, Peer and health (SERVING for "" and
    /// `hubble.server.Observer`).
    pub async fn router(&self) -> tonic::transport::server::Router {
        let (reporter, health) = webb_proto::health::server::health_reporter();
        reporter
            .set_service_status("", webb_proto::health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status(
                webb_proto::health::OBSERVER_HEALTH_SERVICE,
                webb_proto::health::ServingStatus::Serving,
            )
            .await;
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(self.observer.clone().into_server())
            .add_service(self.peer.clone().into_server())
    }

    /// Serves every service on a bound TCP listener until `shutdown` completes.
    pub async fn serve_tcp(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        self.router()
            .await
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }

    /// Serves every service on a unix socket at `path` (its directory is created and a stale
    /// socket file replaced) until `shutdown` completes; the socket file is removed afterwards.
    pub async fn serve_unix(
        &self,
        path: &std::path::Path,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        use anyhow::Context as _;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot replace {}", path.display()));
            }
        }
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("cannot listen on unix socket {}", path.display()))?;
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let result = self
            .router()
            .await
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        let _ = std::fs::remove_file(path);
        result.with_context(|| format!("gRPC server on {} failed", path.display()))
    }
}

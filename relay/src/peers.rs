//! The peer pool: follows every agent's full flow stream (`GetFlows(follow)` with the
//! payload option) and reports node states as Hubble's relay does (`NodeStatusEvent`:
//! CONNECTED, UNAVAILABLE, GONE, ERROR; errors with the same message coalesced for 10 s).
//!
//! Peers come from a static list (`--peers host:port,…`) and/or from agents' `peer.Peer/Notify`
//! streams. Each peer has its own task that reconnects with exponential backoff. Flows go into
//! one bounded queue towards the merge; nothing here ever waits for it: a full queue drops the
//! flow and counts it for that node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;
use webb_proto::observer::get_flows_response::ResponseTypes;
use webb_proto::observer::observer_client::ObserverClient;
use webb_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use webb_proto::peer::peer_client::PeerClient;
use webb_proto::peer::{ChangeNotificationType, NotifyRequest};
use webb_proto::relay::{NodeState, NodeStatusEvent};
use webb_proto::webb_v1::FlowsRequestOptions;

/// How long a new connection waits for the agent's `peer.Peer/Notify` to name it.
pub const NAME_WAIT: Duration = Duration::from_millis(500);
/// Hubble's `ErrorAggregationWindow`.
pub const ERROR_AGGREGATION_WINDOW: Duration = Duration::from_secs(10);
/// Port of an agent's Observer when a peer address has none.
pub const AGENT_PORT: u16 = 4244;

/// Settings of the pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Agents to follow, `host:port` (a bare host gets [`AGENT_PORT`]).
    pub peers: Vec<String>,
    /// Agents whose `peer.Peer/Notify` lists the agents to follow.
    pub notify: Vec<String>,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub error_window: Duration,
    /// TLS toward agents (`--peer-tls-*`); plaintext when None.
    pub tls: Option<webb_security::ClientTls>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            peers: Vec::new(),
            notify: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(200),
            // Hubble's relay retries unavailable peers every 30 s.
            backoff_max: Duration::from_secs(30),
            error_window: ERROR_AGGREGATION_WINDOW,
            tls: None,
        }
    }
}

/// `host:port`, adding [`AGENT_PORT`] when there is no port (IPv6 gets brackets).
pub fn peer_address(addr: &str) -> String {
    let addr = addr.trim();
    if addr.parse::<SocketAddr>().is_ok() {
        return addr.to_string();
    }
    if let Ok(ip) = addr.trim_matches(['[', ']']).parse::<IpAddr>() {
        return SocketAddr::new(ip, AGENT_PORT).to_string();
    }
    match addr.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => addr.to_string(),
        _ => format!("{addr}:{AGENT_PORT}"),
    }
}

/// Exponential backoff between reconnection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The wait before the next attempt; doubles up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// After a successful connection, start again from the minimum.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Coalesces node errors with the same message: the first is reported at once, the nodes
/// failing the same way within the window are reported together when it closes.
#[derive(Debug)]
pub struct ErrorCoalescer {
    window: Duration,
    open: HashMap<String, (Instant, BTreeSet<String>)>,
    coalesced: u64,
}

impl ErrorCoalescer {
    pub fn new(window: Duration) -> Self {
        ErrorCoalescer {
            window,
            open: HashMap::new(),
            coalesced: 0,
        }
    }

    /// Errors held back so far because an equal one was reported within the window.
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }

    /// An error of `node`; returns the event to send now, if any.
    pub fn report(&mut self, node: &str, message: &str, now: Instant) -> Option<NodeStatusEvent> {
        match self.open.get_mut(message) {
            Some((started, held)) if now.duration_since(*started) < self.window => {
                self.coalesced += 1;
                held.insert(node.to_string());
                None
            }
            _ => {
                self.open
                    .insert(message.to_string(), (now, BTreeSet::new()));
                Some(error_event(vec![node.to_string()], message))
            }
        }
    }

    /// Closes windows older than the window length; returns one event per message for the
    /// nodes held back in it.
    pub fn flush(&mut self, now: Instant) -> Vec<NodeStatusEvent> {
        let window = self.window;
        let mut out = Vec::new();
        self.open.retain(|message, (started, held)| {
            if now.duration_since(*started) < window {
                return true;
            }
            if !held.is_empty() {
                out.push(error_event(
                    std::mem::take(held).into_iter().collect(),
                    message,
                ));
            }
            false
        });
        out.sort_by(|a, b| a.message.cmp(&b.message));
        out
    }
}

fn error_event(node_names: Vec<String>, message: &str) -> NodeStatusEvent {
    NodeStatusEvent {
        state_change: NodeState::NodeError as i32,
        node_names,
        message: message.to_string(),
    }
}

/// What the pool knows about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name from the agent's flows (or the Notify entry), else the address.
    pub name: String,
    pub address: String,
    pub state: NodeState,
    /// Flows and lost-event records received from this node.
    pub received: u64,
    /// Received but dropped because the merge queue was full.
    pub dropped: u64,
    pub last_error: Option<String>,
}

/// Where the pool sends what it receives.
#[derive(Debug, Clone)]
pub struct PoolOutputs {
    /// Flow and lost-event responses, towards the merge.
    pub flows: mpsc::Sender<GetFlowsResponse>,
    /// Node state changes.
    pub status: mpsc::Sender<NodeStatusEvent>,
}

struct Shared {
    config: PoolConfig,
    out: PoolOutputs,
    nodes: Mutex<BTreeMap<String, NodeInfo>>,
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
    errors: Mutex<ErrorCoalescer>,
    /// Status events dropped because their queue was full.
    status_dropped: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn send_status(&self, ev: NodeStatusEvent) {
        tracing::info!(
            state = ?NodeState::try_from(ev.state_change).unwrap_or(NodeState::UnknownNodeState),
            nodes = ?ev.node_names,
            message = %ev.message,
            "peer state"
        );
        if self.out.status.try_send(ev).is_err() {
            self.status_dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Records a state; sends a status event when it changed (errors go through the
    /// coalescer instead).
    fn set_state(&self, address: &str, state: NodeState, message: Option<String>) {
        let name = {
            let Ok(mut nodes) = self.nodes.lock() else {
                return;
            };
            let Some(node) = nodes.get_mut(address) else {
                return;
            };
            let changed = node.state != state;
            node.state = state;
            if message.is_some() {
                node.last_error.clone_from(&message);
            }
            if !changed && state != NodeState::NodeError {
                return;
            }
            node.name.clone()
        };
        if state == NodeState::NodeError {
            let msg = message.unwrap_or_default();
            let ev = self
                .errors
                .lock()
                .ok()
                .and_then(|mut e| e.report(&name, &msg, Instant::now()));
            if let Some(ev) = ev {
                self.send_status(ev);
            }
            return;
        }
        self.send_status(NodeStatusEvent {
            state_change: state as i32,
            node_names: vec![name],
            message: message.unwrap_or_default(),
        });
    }

    /// Whether the node is still known by its address only (no name from a flow or Notify).
    fn unnamed(&self, address: &str) -> bool {
        self.nodes
            .lock()
            .is_ok_and(|n| n.get(address).is_some_and(|i| i.name == i.address))
    }

    fn set_name(&self, address: &str, name: &str) {
        if let Ok(mut nodes) = self.nodes.lock()
            && let Some(node) = nodes.get_mut(address)
        {
            node.name = name.to_string();
        }
    }

    fn count(&self, address: &str, name: &str, dropped: bool) {
        if let Ok(mut nodes) = self.nodes.lock()
            && let Some(node) = nodes.get_mut(address)
        {
            node.received += 1;
            node.dropped += u64::from(dropped);
            if !name.is_empty() && node.name != name {
                node.name = name.to_string();
            }
        }
    }
}

/// The running pool. Dropping it stops every peer task.
pub struct PeerPool {
    shared: Arc<Shared>,
    background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for PeerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerPool")
            .field("nodes", &self.nodes())
            .finish_non_exhaustive()
    }
}

impl PeerPool {
    /// Starts following the configured peers (call within a tokio runtime).
    pub fn start(config: PoolConfig, out: PoolOutputs) -> Self {
        let shared = Arc::new(Shared {
            errors: Mutex::new(ErrorCoalescer::new(config.error_window)),
            config,
            out,
            nodes: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(HashMap::new()),
            status_dropped: Default::default(),
        });
        for peer in shared.config.peers.clone() {
            add_peer(&shared, &peer_address(&peer), None);
        }
        let mut background = Vec::new();
        for notify in shared.config.notify.clone() {
            let s = shared.clone();
            background.push(tokio::spawn(follow_notify(s, peer_address(&notify))));
        }
        // Closes error-coalescing windows.
        let s = shared.clone();
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let events = s
                    .errors
                    .lock()
                    .map(|mut e| e.flush(Instant::now()))
                    .unwrap_or_default();
                events.into_iter().for_each(|ev| s.send_status(ev));
            }
        }));
        PeerPool { shared, background }
    }

    /// Every peer known, by address.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.shared
            .nodes
            .lock()
            .map(|n| n.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Status events dropped because their queue was full.
    pub fn status_dropped(&self) -> u64 {
        self.shared
            .status_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Errors held back by coalescing.
    pub fn errors_coalesced(&self) -> u64 {
        self.shared.errors.lock().map_or(0, |e| e.coalesced())
    }
}

impl Drop for PeerPool {
    fn drop(&mut self) {
        self.background.iter().for_each(JoinHandle::abort);
        if let Ok(tasks) = self.shared.tasks.lock() {
            tasks.values().for_each(JoinHandle::abort);
        }
    }
}

fn add_peer(shared: &Arc<Shared>, address: &str, name: Option<&str>) {
    let Ok(mut tasks) = shared.tasks.lock() else {
        return;
    };
    if tasks.contains_key(address) {
        return;
    }
    if let Ok(mut nodes) = shared.nodes.lock() {
        nodes.insert(
            address.to_string(),
            NodeInfo {
                name: name
                    .filter(|n| !n.is_empty())
                    .unwrap_or(address)
                    .to_string(),
                address: address.to_string(),
                state: NodeState::UnknownNodeState,
                received: 0,
                dropped: 0,
                last_error: None,
            },
        );
    }
    let task = tokio::spawn(follow_peer(shared.clone(), address.to_string()));
    tasks.insert(address.to_string(), task);
}

fn remove_peer(shared: &Arc<Shared>, address: &str) {
    if let Some(task) = shared.tasks.lock().ok().and_then(|mut t| t.remove(address)) {
        task.abort();
    }
    shared.set_state(address, NodeState::NodeGone, None);
    if let Ok(mut nodes) = shared.nodes.lock() {
        nodes.remove(address);
    }
}

#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error("connecting to {address}: {message}")]
    Connect { address: String, message: String },
    #[error("GetFlows on {address}: {status}")]
    Stream {
        address: String,
        status: Box<tonic::Status>,
    },
}

/// A gRPC channel to an agent at `address` (`host:port`), connected now: over TLS with the
/// relay's `--peer-tls-*` settings when `tls` is given, else plaintext.
pub async fn agent_channel(
    tls: Option<&webb_security::ClientTls>,
    address: &str,
    timeout: Duration,
) -> anyhow::Result<tonic::transport::Channel> {
    match tls {
        Some(tls) => tls.connect(address, timeout).await,
        None => Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!(webb_security::client::error_chain(&e))),
    }
}

/// The request the relay sends every agent: everything, live, with payload and extras.
pub fn follow_request() -> GetFlowsRequest {
    let mut req = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    webb_proto::options::set(
        &mut req,
        &FlowsRequestOptions {
            include_payload: true,
            include_extras: true,
        },
    );
    req
}

async fn follow_peer(shared: Arc<Shared>, address: String) {
    let mut backoff = Backoff::new(shared.config.backoff_min, shared.config.backoff_max);
    loop {
        match stream_once(&shared, &address, &mut backoff).await {
            Ok(()) => shared.set_state(
                &address,
                NodeState::NodeUnavailable,
                Some("stream ended".into()),
            ),
            Err(e @ PeerError::Connect { .. }) => {
                shared.set_state(&address, NodeState::NodeUnavailable, Some(e.to_string()))
            }
            Err(e @ PeerError::Stream { .. }) => {
                shared.set_state(&address, NodeState::NodeError, Some(e.to_string()));
                shared.set_state(&address, NodeState::NodeUnavailable, Some(e.to_string()));
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn stream_once(
    shared: &Shared,
    address: &str,
    backoff: &mut Backoff,
) -> Result<(), PeerError> {
    let channel = agent_channel(
        shared.config.tls.as_ref(),
        address,
        shared.config.connect_timeout,
    )
    .await
    .map_err(|e| PeerError::Connect {
        address: address.to_string(),
        message: format!("{e:#}"),
    })?;
    // A peer from --peers is known by its address until its first flow; its own Notify
    // usually names it at once, so NODE_CONNECTED and GetNodes carry the node's name.
    if shared.unnamed(address)
        && let Some(name) = announced_name(channel.clone(), address, NAME_WAIT).await
    {
        shared.set_name(address, &name);
    }
    let stream_err = |status| PeerError::Stream {
        address: address.to_string(),
        status: Box::new(status),
    };
    let mut client = ObserverClient::new(channel).max_decoding_message_size(16 << 20);
    let mut stream = client
        .get_flows(follow_request())
        .await
        .map_err(stream_err)?
        .into_inner();
    shared.set_state(address, NodeState::NodeConnected, None);
    backoff.reset();
    while let Some(resp) = stream.message().await.map_err(stream_err)? {
        match resp.response_types {
            Some(ResponseTypes::Flow(_)) | Some(ResponseTypes::LostEvents(_)) => {
                let name = resp.node_name.clone();
                let dropped = shared.out.flows.try_send(resp).is_err();
                shared.count(address, &name, dropped);
            }
            // Agents do not send node status; a relay below us would, and its nodes are not ours.
            Some(ResponseTypes::NodeStatus(_)) | None => {}
        }
    }
    Ok(())
}

/// The name an agent gives itself in its `peer.Peer/Notify` (agents announce themselves, by
/// bare IP or `host:port`): the one entry on `address`'s host (and port, when it names one).
/// `None` when the agent does not answer within `wait`, or several entries could be it.
async fn announced_name(
    channel: tonic::transport::Channel,
    address: &str,
    wait: Duration,
) -> Option<String> {
    let (host, port) = split_host_port(address)?;
    let lookup = async {
        let mut stream = PeerClient::new(channel)
            .notify(NotifyRequest {})
            .await
            .ok()?
            .into_inner();
        let mut found: Option<String> = None;
        // Notify sends every known peer first, then waits: read until quiet or `wait`.
        while let Ok(Ok(Some(n))) =
            tokio::time::timeout(Duration::from_millis(100), stream.message()).await
        {
            let a = n.address.trim();
            let (h, p) = match a.parse::<IpAddr>() {
                Ok(ip) => (ip, None),
                Err(_) => match split_host_port(a) {
                    Some((h, p)) => (h, Some(p)),
                    None => continue,
                },
            };
            if h != host || p.is_some_and(|p| p != port) || n.name.is_empty() {
                continue;
            }
            if found.is_some() {
                return None;
            }
            found = Some(n.name);
        }
        found
    };
    tokio::time::timeout(wait, lookup).await.ok().flatten()
}

fn split_host_port(address: &str) -> Option<(IpAddr, u16)> {
    address
        .parse::<SocketAddr>()
        .ok()
        .map(|a| (a.ip(), a.port()))
}

async fn follow_notify(shared: Arc<Shared>, address: String) {
    let mut backoff = Backoff::new(shared.config.backoff_min, shared.config.backoff_max);
    loop {
        if let Err(e) = notify_once(&shared, &address, &mut backoff).await {
            tracing::warn!(%address, error = %e, "peer notifications");
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn notify_once(
    shared: &Arc<Shared>,
    address: &str,
    backoff: &mut Backoff,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let channel = agent_channel(
        shared.config.tls.as_ref(),
        address,
        shared.config.connect_timeout,
    )
    .await?;
    let mut stream = PeerClient::new(channel)
        .notify(NotifyRequest {})
        .await?
        .into_inner();
    backoff.reset();
    while let Some(n) = stream.message().await? {
        let peer = peer_address(&n.address);
        match ChangeNotificationType::try_from(n.r#type) {
            Ok(ChangeNotificationType::PeerAdded) => add_peer(shared, &peer, Some(&n.name)),
            Ok(ChangeNotificationType::PeerUpdated) => {
                let known = shared.nodes.lock().is_ok_and(|n| n.contains_key(&peer));
                if !known {
                    // The address changed: drop whatever this node was known as before.
                    let old: Vec<String> = shared
                        .nodes
                        .lock()
                        .map(|nodes| {
                            nodes
                                .values()
                                .filter(|i| i.name == n.name)
                                .map(|i| i.address.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    old.iter().for_each(|a| remove_peer(shared, a));
                    add_peer(shared, &peer, Some(&n.name));
                }
            }
            Ok(ChangeNotificationType::PeerDeleted) => remove_peer(shared, &peer),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "peers_tests.rs"]
mod tests;

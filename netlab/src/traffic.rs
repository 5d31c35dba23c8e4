//! Live traffic between the pods, bounded by time and count, with counters on both ends so a
//! demo or test can reconcile the flows it expects.
//!
//! Every pod gets one thread inside its namespace running a current-thread tokio runtime (a
//! socket belongs to the namespace of the thread that creates it). On it run the pod's servers
//! (HTTP on its port, DNS-like UDP on 53) and, for pods that call others, the client loop.
//! Each client *action* resolves the callee's service name over UDP 53 (when a DNS pod exists),
//! then makes HTTP requests to it in one of three ways — keep-alive (2–4 requests on one
//! connection), a new connection per request (`Connection: close`), or pipelined (3 requests in
//! one write) — over IPv4 or IPv6; every fifth action also pings the callee, and every tenth
//! sends a UDP datagram to a port nobody listens on at the client's node (a probe of a service
//! that is not there), which the node's kernel drops (`NO_SOCKET`): a drop Webb did not cause.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};

use crate::http::{self, Req};
use crate::netns::{self, NsThread};
use crate::topology::{Pod, Topology};
use crate::{Error, dns, icmp};

/// Who calls whom, and how often relative to the others. `frontend → db` is the path a policy
/// denies in the demo; until then it succeeds like the rest.
pub const CALLS: &[(&str, &str, u32)] = &[
    ("frontend", "catalog", 4),
    ("frontend", "cart", 3),
    ("frontend", "db", 1),
    ("cart", "db", 2),
    ("catalog", "db", 2),
];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(3);
const DNS_TIMEOUT: Duration = Duration::from_secs(1);
const ICMP_TIMEOUT: Duration = Duration::from_secs(1);
/// UDP port probed at the client's node, where nothing listens (the discard service's port).
pub const CLOSED_UDP_PORT: u16 = 9;
/// Actions in flight per client pod (a denied path must not stall the schedule).
const IN_FLIGHT: usize = 8;

/// How much traffic to make. The clients stop at whichever of `duration` and `max_requests`
/// comes first; then everything still in flight finishes within the timeouts (≤ 4 s).
#[derive(Debug, Clone)]
pub struct Plan {
    pub duration: Duration,
    /// HTTP requests over all clients.
    pub max_requests: u64,
    /// Target rate of client actions (each 1–4 HTTP requests) over all clients.
    pub actions_per_second: f64,
    /// Share of HTTP requests that carry a W3C `traceparent` (0..=1).
    pub trace_ratio: f64,
    /// Share of actions over IPv6 (0..=1).
    pub ipv6_ratio: f64,
    /// Seed for every random choice (paths, modes, ids), for repeatable runs.
    pub seed: u64,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            duration: Duration::from_secs(10),
            max_requests: 500,
            actions_per_second: 20.0,
            trace_ratio: 0.5,
            ipv6_ratio: 0.25,
            seed: 0x7765_6262,
        }
    }
}

/// Requests between one pair of pods (by key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairCounts {
    /// Requests attempted (= responses + failed).
    pub requests: u64,
    /// Responses read.
    pub responses: u64,
    /// Requests without a response: connection refused or timed out, reset, no answer in time.
    pub failed: u64,
}

/// One request that carried a `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedRequest {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The parent span id sent (16 hex digits).
    pub span_id: String,
    pub from: String,
    pub to: String,
    pub path: String,
    pub ipv6: bool,
    /// None when no response came.
    pub status: Option<u16>,
}

/// What the clients sent and got back.
#[derive(Debug, Clone, Default)]
pub struct ClientCounts {
    /// Responses by HTTP status.
    pub http_by_status: BTreeMap<u16, u64>,
    /// Requests (attempted) per (from, to) pod key.
    pub by_pair: BTreeMap<(String, String), PairCounts>,
    /// TCP connections established / that failed to establish.
    pub connections: u64,
    pub connect_failures: u64,
    /// Writes that carried more than one request.
    pub pipelined_batches: u64,
    pub requests_over_ipv6: u64,
    pub traced: Vec<TracedRequest>,
    pub dns_queries: u64,
    pub dns_answers: u64,
    pub dns_nxdomain: u64,
    pub dns_timeouts: u64,
    pub icmp_echo_requests: u64,
    pub icmp_echo_replies: u64,
    /// UDP datagrams sent to [`CLOSED_UDP_PORT`] at the client's node.
    pub closed_port_probes: u64,
}

impl ClientCounts {
    /// Responses received in total.
    pub fn responses(&self) -> u64 {
        self.http_by_status.values().sum()
    }

    /// Requests attempted in total.
    pub fn requests(&self) -> u64 {
        self.by_pair.values().map(|p| p.requests).sum()
    }
}

/// What the servers saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerCounts {
    pub http_by_status: BTreeMap<u16, u64>,
    /// Requests answered per server pod key.
    pub http_by_pod: BTreeMap<String, u64>,
    /// Trace ids of requests that carried a `traceparent`.
    pub trace_ids: BTreeSet<String>,
    pub dns_queries: u64,
}

/// Counters of both ends.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub client: ClientCounts,
    pub servers: ServerCounts,
    /// From start to the end of the last client.
    pub elapsed: Duration,
}

/// Running traffic. [`Traffic::wait`] returns the counters once the plan's bounds are reached;
/// dropping it stops everything and joins the threads.
pub struct Traffic {
    threads: Vec<NsThread<()>>,
    clients_done: std::sync::mpsc::Receiver<()>,
    clients: usize,
    stop_clients: watch::Sender<bool>,
    stop_servers: watch::Sender<bool>,
    client: Arc<Mutex<ClientCounts>>,
    servers: Arc<Mutex<ServerCounts>>,
    started: Instant,
}

/// Another name for a live snapshot, for callers that poll progress.
pub type TrafficStats = Report;

struct Shared {
    client: Arc<Mutex<ClientCounts>>,
    budget: AtomicU64,
    deadline: Instant,
    plan: Plan,
    stop: watch::Receiver<bool>,
    /// Turns true once every pod's servers listen.
    go: watch::Receiver<bool>,
    dns_server: Option<IpAddr>,
}

impl Traffic {
    /// Starts the servers in every pod, waits until they listen, then starts the clients.
    pub fn start(topo: &Topology, plan: Plan) -> Result<Self, Error> {
        let (stop_clients, stop_c_rx) = watch::channel(false);
        let (stop_servers, stop_s_rx) = watch::channel(false);
        let (go, go_rx) = watch::channel(false);
        let client = Arc::new(Mutex::new(ClientCounts::default()));
        let servers = Arc::new(Mutex::new(ServerCounts::default()));
        let names: Arc<HashMap<String, Ipv4Addr>> = Arc::new(
            topo.pods()
                .iter()
                .map(|p| (p.service_name(), p.ipv4))
                .collect(),
        );
        let dns_server = topo.pods().iter().find(|p| p.dns).map(|p| p.ipv4.into());
        let shared = Arc::new(Shared {
            client: client.clone(),
            budget: AtomicU64::new(plan.max_requests),
            deadline: Instant::now() + plan.duration,
            plan: plan.clone(),
            stop: stop_c_rx,
            go: go_rx,
            dns_server,
        });
        let client_keys: BTreeSet<&str> = CALLS
            .iter()
            .filter(|(f, t, _)| {
                topo.pod(f).is_some() && topo.pod(t).is_some_and(|p| p.http_port.is_some())
            })
            .map(|(f, _, _)| *f)
            .collect();
        let per_client_rate = plan.actions_per_second.max(0.01) / client_keys.len().max(1) as f64;

        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), Error>>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let mut threads = Vec::new();
        let mut traffic_threads = 0;
        for (i, pod) in topo.pods().iter().enumerate() {
            let calls: Vec<(Pod, u32)> = CALLS
                .iter()
                .filter(|(f, _, _)| *f == pod.key)
                .filter_map(|(_, t, w)| {
                    topo.pod(t)
                        .filter(|p| p.http_port.is_some())
                        .map(|p| (p.clone(), *w))
                })
                .collect();
            let is_client = client_keys.contains(pod.key.as_str());
            let node_addr = topo
                .node(&pod.node)
                .map(|n| IpAddr::from(n.gateway_v4))
                .ok_or_else(|| Error::Spec(format!("pod {} has no node {}", pod.key, pod.node)))?;
            let ctx = PodCtx {
                pod: pod.clone(),
                node_addr,
                calls,
                interval: Duration::from_secs_f64(1.0 / per_client_rate),
                seed: plan.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                shared: shared.clone(),
                names: names.clone(),
                server_counts: servers.clone(),
                stop_servers: stop_s_rx.clone(),
                ready: ready_tx.clone(),
                done: done_tx.clone(),
                is_client,
            };
            if !is_client && pod.http_port.is_none() && !pod.dns {
                continue;
            }
            traffic_threads += 1;
            threads.push(netns::spawn_in(&pod.netns, move || ctx.run())?);
        }
        drop((ready_tx, done_tx));
        let traffic = Traffic {
            threads,
            clients_done: done_rx,
            clients: client_keys.len(),
            stop_clients,
            stop_servers,
            client,
            servers,
            started: Instant::now(),
        };
        for _ in 0..traffic_threads {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(Error::Spec("a pod's traffic thread ended early".into()));
                }
            }
        }
        let _ = go.send(true);
        Ok(traffic)
    }

    /// Live counters (for progress output).
    pub fn snapshot(&self) -> Report {
        Report {
            client: lock(&self.client).clone(),
            servers: lock(&self.servers).clone(),
            elapsed: self.started.elapsed(),
        }
    }

    /// Asks the clients to stop early (in-flight requests still finish).
    pub fn stop(&self) {
        let _ = self.stop_clients.send(true);
    }

    /// Waits for the clients to reach the plan's bounds, stops the servers and returns the
    /// counters of both ends.
    pub fn wait(mut self) -> Report {
        self.finish()
    }

    fn finish(&mut self) -> Report {
        for _ in 0..self.clients {
            if self.clients_done.recv().is_err() {
                break;
            }
        }
        let elapsed = self.started.elapsed();
        let _ = self.stop_servers.send(true);
        for t in self.threads.drain(..) {
            t.join();
        }
        Report {
            client: lock(&self.client).clone(),
            servers: lock(&self.servers).clone(),
            elapsed,
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop();
            self.finish();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct PodCtx {
    pod: Pod,
    /// The node's address as its pods see it (their gateway).
    node_addr: IpAddr,
    calls: Vec<(Pod, u32)>,
    interval: Duration,
    seed: u64,
    shared: Arc<Shared>,
    names: Arc<HashMap<String, Ipv4Addr>>,
    server_counts: Arc<Mutex<ServerCounts>>,
    stop_servers: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<Result<(), Error>>,
    done: std::sync::mpsc::Sender<()>,
    is_client: bool,
}

impl PodCtx {
    /// Runs on the pod's namespace thread.
    fn run(self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(source) => {
                let _ = self.ready.send(Err(Error::Io {
                    what: format!("tokio runtime for pod {}", self.pod.key),
                    source,
                }));
                self.client_finished();
                return;
            }
        };
        rt.block_on(self.serve_and_call());
    }

    async fn serve_and_call(self) {
        let key: Arc<str> = self.pod.key.as_str().into();
        let mut servers = Vec::new();
        let bound = async {
            if let Some(port) = self.pod.http_port {
                let l = TcpListener::bind(SocketAddr::from(([0u16; 8], port)))
                    .await
                    .map_err(|source| Error::Io {
                        what: format!("pod {}: listen on TCP {port}", self.pod.key),
                        source,
                    })?;
                servers.push(tokio::spawn(http::serve(
                    l,
                    key.clone(),
                    self.server_counts.clone(),
                    self.stop_servers.clone(),
                )));
            }
            if self.pod.dns {
                let s = UdpSocket::bind(SocketAddr::from(([0u16; 8], 53)))
                    .await
                    .map_err(|source| Error::Io {
                        what: format!("pod {}: listen on UDP 53", self.pod.key),
                        source,
                    })?;
                servers.push(tokio::spawn(dns::serve(
                    s,
                    self.names.clone(),
                    self.server_counts.clone(),
                    self.stop_servers.clone(),
                )));
            }
            Ok::<(), Error>(())
        }
        .await;
        let failed = bound.is_err();
        let _ = self.ready.send(bound);
        if failed {
            self.client_finished();
            return;
        }
        if self.is_client {
            self.client_loop().await;
            self.client_finished();
        }
        let mut stop = self.stop_servers.clone();
        let _ = stop.wait_for(|s| *s).await;
        for s in servers {
            let _ = s.await;
        }
    }

    /// Every client pod reports exactly once, whether it ran or failed to start, so
    /// [`Traffic::wait`] never waits for a client that will not come.
    fn client_finished(&self) {
        if self.is_client {
            let _ = self.done.send(());
        }
    }

    async fn client_loop(&self) {
        let sh = &self.shared;
        let (mut go, mut stop) = (sh.go.clone(), sh.stop.clone());
        tokio::select! {
            started = go.wait_for(|g| *g) => if started.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let total: u32 = self.calls.iter().map(|(_, w)| w).sum();
        let limit = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tasks = tokio::task::JoinSet::new();
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if Instant::now() >= sh.deadline || total == 0 {
                break;
            }
            // Choose the action, then reserve its requests from the shared budget.
            let mut pick = rng.u32(0..total);
            let callee = self
                .calls
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map(|(p, _)| p.clone())
                .expect("weights cover the range");
            let mode = match rng.u8(0..10) {
                0..5 => Mode::KeepAlive(rng.usize(2..=4)),
                5..8 => Mode::NewConnection,
                _ => Mode::Pipelined(3),
            };
            let granted = reserve(&sh.budget, mode.requests() as u64);
            if granted == 0 {
                break;
            }
            let mode = mode.limited(granted as usize);
            let ipv6 = rng.f64() < sh.plan.ipv6_ratio;
            let paths: Vec<(&'static str, Option<(String, String)>)> = (0..mode.requests())
                .map(|_| {
                    let path = match rng.u8(0..10) {
                        0..7 => http::ROUTE_OK,
                        7 => http::ROUTE_SLOW,
                        8 => http::ROUTE_MISSING,
                        _ => http::ROUTE_ERROR,
                    };
                    let trace = (rng.f64() < sh.plan.trace_ratio).then(|| {
                        let t = rng.u128(1..=u128::MAX);
                        let s = rng.u64(1..=u64::MAX);
                        (format!("{t:032x}"), format!("{s:016x}"))
                    });
                    (path, trace)
                })
                .collect();
            let ping = n.is_multiple_of(5);
            let probe_closed_port = n.is_multiple_of(10).then_some(self.node_addr);
            n += 1;
            let permit = limit.clone().acquire_owned().await.expect("never closed");
            let action = Action {
                from: self.pod.key.clone(),
                to: callee,
                mode,
                ipv6,
                paths,
                ping,
                probe_closed_port,
                dns_id: rng.u16(..),
                shared: sh.clone(),
            };
            tasks.spawn(async move {
                action.run().await;
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Takes up to `want` from `budget`; returns what was granted.
fn reserve(budget: &AtomicU64, want: u64) -> u64 {
    let mut granted = 0;
    let _ = budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
        granted = left.min(want);
        Some(left - granted)
    });
    granted
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// n requests one after another on one connection.
    KeepAlive(usize),
    NewConnection,
    /// n requests in one write.
    Pipelined(usize),
}

impl Mode {
    fn requests(self) -> usize {
        match self {
            Mode::KeepAlive(n) | Mode::Pipelined(n) => n,
            Mode::NewConnection => 1,
        }
    }

    fn limited(self, n: usize) -> Mode {
        match self {
            Mode::KeepAlive(k) => Mode::KeepAlive(k.min(n)),
            Mode::Pipelined(k) if k.min(n) > 1 => Mode::Pipelined(k.min(n)),
            Mode::Pipelined(_) => Mode::NewConnection,
            Mode::NewConnection => Mode::NewConnection,
        }
    }
}

struct Action {
    from: String,
    to: Pod,
    mode: Mode,
    ipv6: bool,
    paths: Vec<(&'static str, Option<(String, String)>)>,
    ping: bool,
    /// Send one datagram to [`CLOSED_UDP_PORT`] at this address.
    probe_closed_port: Option<IpAddr>,
    dns_id: u16,
    shared: Arc<Shared>,
}

impl Action {
    async fn run(self) {
        let counts = &self.shared.client;
        if let Some(server) = self.shared.dns_server {
            self.resolve(server).await;
        }
        let dst: IpAddr = if self.ipv6 {
            self.to.ipv6.into()
        } else {
            self.to.ipv4.into()
        };
        if let Some(node) = self.probe_closed_port {
            self.probe(node).await;
        }
        if self.ping {
            lock(counts).icmp_echo_requests += 1;
            if let Ok(true) = icmp::echo(dst, self.dns_id, ICMP_TIMEOUT).await {
                lock(counts).icmp_echo_replies += 1;
            }
        }
        let addr = SocketAddr::new(dst, self.to.http_port.expect("callees serve HTTP"));
        let host = format!("{}.{}:{}", self.to.key, self.to.namespace, addr.port());
        let tp: Vec<Option<String>> = self
            .paths
            .iter()
            .map(|(_, t)| t.as_ref().map(|(t, s)| format!("00-{t}-{s}-01")))
            .collect();
        let reqs: Vec<Req<'_>> = self
            .paths
            .iter()
            .zip(&tp)
            .map(|((path, _), tp)| Req {
                host: &host,
                path,
                traceparent: tp.as_deref(),
                close: false,
            })
            .collect();
        let statuses: Vec<Option<u16>> = match self.mode {
            Mode::NewConnection => {
                let mut out = Vec::new();
                for r in reqs {
                    let r = Req { close: true, ..r };
                    out.extend(self.on_new_connection(addr, &[r]).await);
                }
                out
            }
            Mode::KeepAlive(_) => {
                let Some(mut stream) = self.connect(addr).await else {
                    self.record_unsent(reqs.len());
                    return;
                };
                let mut out = Vec::new();
                for (i, r) in reqs.iter().enumerate() {
                    let (got, err) = timed_exchange(&mut stream, std::slice::from_ref(r)).await;
                    out.extend(got.into_iter().map(Some));
                    if err.is_some() {
                        // The connection is gone; the rest of this action is not sent.
                        out.resize(i + 1, None);
                        self.record(&out);
                        let unsent = reqs.len() - out.len();
                        self.record_unsent(unsent);
                        return;
                    }
                }
                out
            }
            Mode::Pipelined(_) => {
                lock(counts).pipelined_batches += 1;
                self.on_new_connection(addr, &reqs).await
            }
        };
        self.record(&statuses);
    }

    /// One datagram, no answer expected (the ICMP port-unreachable coming back is not read).
    async fn probe(&self, node: IpAddr) {
        let Ok(sock) = UdpSocket::bind(SocketAddr::from(([0u8; 4], 0))).await else {
            return;
        };
        if sock
            .send_to(b"webb-probe", SocketAddr::new(node, CLOSED_UDP_PORT))
            .await
            .is_ok()
        {
            lock(&self.shared.client).closed_port_probes += 1;
        }
    }

    async fn resolve(&self, server: IpAddr) {
        let counts = &self.shared.client;
        let sock = match UdpSocket::bind(SocketAddr::from(([0u8; 4], 0))).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("dns socket: {e}");
                return;
            }
        };
        let q = dns::query(self.dns_id, &self.to.service_name());
        if sock.send_to(&q, SocketAddr::new(server, 53)).await.is_err() {
            return;
        }
        lock(counts).dns_queries += 1;
        let mut buf = [0u8; 512];
        let got = tokio::time::timeout(DNS_TIMEOUT, async {
            loop {
                let n = sock.recv(&mut buf).await?;
                if let Some((id, rcode)) = dns::response_code(&buf[..n])
                    && id == self.dns_id
                {
                    return Ok::<u8, std::io::Error>(rcode);
                }
            }
        })
        .await;
        let mut c = lock(counts);
        match got {
            Ok(Ok(rcode)) => {
                c.dns_answers += 1;
                if rcode == dns::RCODE_NXDOMAIN {
                    c.dns_nxdomain += 1;
                }
            }
            _ => c.dns_timeouts += 1,
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Option<TcpStream> {
        let r = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
        let mut c = lock(&self.shared.client);
        match r {
            Ok(Ok(s)) => {
                c.connections += 1;
                Some(s)
            }
            failed => {
                tracing::debug!(%addr, ?failed, "connect failed");
                c.connect_failures += 1;
                None
            }
        }
    }

    async fn on_new_connection(&self, addr: SocketAddr, reqs: &[Req<'_>]) -> Vec<Option<u16>> {
        let Some(mut stream) = self.connect(addr).await else {
            self.record_unsent(reqs.len());
            return Vec::new();
        };
        let (got, err) = timed_exchange(&mut stream, reqs).await;
        if let Some(e) = err {
            tracing::debug!(%addr, requests = reqs.len(), responses = got.len(), "exchange: {e}");
        }
        let mut out: Vec<Option<u16>> = got.into_iter().map(Some).collect();
        out.resize(reqs.len(), None);
        out
    }

    /// Counts requests that were written, with their responses (None = no response).
    fn record(&self, statuses: &[Option<u16>]) {
        let mut c = lock(&self.shared.client);
        let pair = c
            .by_pair
            .entry((self.from.clone(), self.to.key.clone()))
            .or_default();
        for s in statuses {
            pair.requests += 1;
            match s {
                Some(_) => pair.responses += 1,
                None => pair.failed += 1,
            }
        }
        for s in statuses.iter().flatten() {
            *c.http_by_status.entry(*s).or_default() += 1;
        }
        if self.ipv6 {
            c.requests_over_ipv6 += statuses.len() as u64;
        }
        for ((path, trace), status) in self.paths.iter().zip(statuses) {
            if let Some((t, s)) = trace {
                c.traced.push(TracedRequest {
                    trace_id: t.clone(),
                    span_id: s.clone(),
                    from: self.from.clone(),
                    to: self.to.key.clone(),
                    path: path.to_string(),
                    ipv6: self.ipv6,
                    status: *status,
                });
            }
        }
    }

    /// Counts requests that never reached a connection.
    fn record_unsent(&self, n: usize) {
        let mut c = lock(&self.shared.client);
        let pair = c
            .by_pair
            .entry((self.from.clone(), self.to.key.clone()))
            .or_default();
        pair.requests += n as u64;
        pair.failed += n as u64;
    }
}

async fn timed_exchange(
    stream: &mut TcpStream,
    reqs: &[Req<'_>],
) -> (Vec<u16>, Option<std::io::Error>) {
    match tokio::time::timeout(EXCHANGE_TIMEOUT, http::exchange(stream, reqs)).await {
        Ok(r) => r,
        Err(_) => (Vec::new(), Some(std::io::ErrorKind::TimedOut.into())),
    }
}

impl std::fmt::Display for Report {
    /// A few lines for a demo's end summary.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.client;
        let statuses: Vec<String> = c
            .http_by_status
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        writeln!(
            f,
            "traffic over {:.1}s: {} HTTP requests ({} answered: {}; {} failed), {} with traceparent, {} over IPv6",
            self.elapsed.as_secs_f64(),
            c.requests(),
            c.responses(),
            statuses.join(", "),
            c.requests() - c.responses(),
            c.traced.len(),
            c.requests_over_ipv6,
        )?;
        writeln!(
            f,
            "  connections: {} opened, {} failed; {} pipelined writes",
            c.connections, c.connect_failures, c.pipelined_batches
        )?;
        for ((from, to), p) in &c.by_pair {
            writeln!(
                f,
                "  {from} -> {to}: {} requests, {} answered, {} failed",
                p.requests, p.responses, p.failed
            )?;
        }
        writeln!(
            f,
            "  DNS (UDP 53): {} queries, {} answers, {} timeouts; ICMP echo: {} sent, {} replies; \
             {} UDP probes of a closed port",
            c.dns_queries,
            c.dns_answers,
            c.dns_timeouts,
            c.icmp_echo_requests,
            c.icmp_echo_replies,
            c.closed_port_probes
        )?;
        write!(
            f,
            "  servers saw: {} HTTP requests, {} trace ids, {} DNS queries",
            self.servers.http_by_status.values().sum::<u64>(),
            self.servers.trace_ids.len(),
            self.servers.dns_queries
        )
    }
}

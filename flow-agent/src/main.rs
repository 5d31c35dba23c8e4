//! `webb-agent`: the per-node agent. Loads the eBPF datapath, attaches it to the local
//! endpoints' host-side interfaces (and any named on the command line), decodes its events into
//! Hubble flows and serves them with Hubble's node API.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use tokio::sync::watch;

use flow_agent::datapath::{
    self, Aggregation as DpAggregation, Datapath, DatapathConfig, KernelDropNames,
};
use flow_agent::decode::{Decoder, FlowIds, Interfaces, WallClock};
use flow_agent::dns::FqdnControl;
use flow_agent::endpoints::{Endpoints, EndpointsFile};
use flow_agent::metrics::{DatapathTotals, Metrics};
use flow_agent::pipeline::{self, DnsTap, NodeView, PendingLoss};
use flow_agent::policy::status::PolicyStatus;
use flow_agent::policy::{self, PolicyEngine, PolicyFiles, PolicyView};
use flow_agent::reinject::Reinjector;
use flow_observer::ring::{self, Ring};
use flow_observer::{Observed, ObserverService, PeerInfo, PeerService, Services};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PolicyMode {
    /// Packets the policy denies are dropped.
    Enforce,
    /// Packets the policy denies pass, and their verdict is AUDIT.
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Aggregation {
    /// Events for connection lifecycle steps, drops and L7 heads only.
    Connection,
    /// An event for every packet (debugging; costly).
    None,
}

/// Webb's per-node agent: eBPF datapath + Hubble-compatible Observer API.
#[derive(Debug, Parser)]
#[command(name = "webb-agent", version)]
struct Args {
    /// This node's name (flows carry it; endpoints with this `node` are local).
    /// Defaults to the hostname.
    #[arg(long, env = "WEBB_NODE_NAME")]
    node_name: Option<String>,

    /// Endpoints file (YAML); reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    endpoints: Option<PathBuf>,

    /// Network policies (YAML file or directory of *.yaml/*.yml: CiliumNetworkPolicy,
    /// CiliumClusterwideNetworkPolicy, NetworkPolicy); reloaded when they change. A bad
    /// version is rejected and the policy in force stays.
    #[arg(long, value_name = "PATH")]
    policy: Option<PathBuf>,

    /// What a policy denial does.
    #[arg(long, value_enum, default_value_t = PolicyMode::Enforce)]
    policy_mode: PolicyMode,

    /// Interface to observe, in addition to every local endpoint's interface from the
    /// endpoints file (repeatable).
    #[arg(long = "interface", value_name = "NAME")]
    interfaces: Vec<String>,

    /// Network namespace (e.g. /run/netns/node-1) holding the interfaces, when the agent itself
    /// runs elsewhere.
    #[arg(long, value_name = "PATH")]
    netns: Option<PathBuf>,

    /// Payload bytes captured from packets that start an L7 message (and from the segments
    /// that continue an unfinished HTTP head).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u16).range(1..=1500))]
    capture_bytes: u16,

    /// When the datapath emits events.
    #[arg(long, value_enum, default_value_t = Aggregation::Connection)]
    aggregation: Aggregation,

    /// Size in bytes of the BPF ring buffer carrying events from the kernel (a power of two,
    /// at least 4096). Records that do not fit are lost and counted (stage datapath_ring).
    #[arg(long, default_value_t = 4 << 20, value_parser = parse_ring_bytes)]
    datapath_ring_bytes: u32,

    /// Flows kept in memory (2^n-1, at most 65535), as Hubble's event buffer capacity.
    #[arg(long, default_value_t = ring::DEFAULT_CAPACITY, value_parser = parse_capacity)]
    ring_capacity: usize,

    /// Observer gRPC address (`:4244` means every interface).
    #[arg(long, default_value = "0.0.0.0:4244", value_parser = parse_addr)]
    listen: SocketAddr,

    /// Observer gRPC unix socket; default /var/run/webb/<node>.sock; "" disables it.
    #[arg(long, value_name = "PATH")]
    unix_socket: Option<PathBuf>,

    /// Prometheus metrics address; "" disables it.
    #[arg(long, default_value = ":9962")]
    metrics_listen: String,

    /// Address announced for this node by peer.Peer/Notify (default: the listen address if
    /// specific, else this node's first address in the endpoints file).
    #[arg(long)]
    advertise_address: Option<IpAddr>,

    /// Other nodes announced by peer.Peer/Notify, as NAME=ADDRESS (repeatable).
    #[arg(long = "peer", value_name = "NAME=ADDRESS", value_parser = parse_peer)]
    peers: Vec<PeerInfo>,

    /// TLS of the Observer API on --listen (the unix socket stays local plaintext).
    #[command(flatten)]
    tls: webb_security::ServerTlsArgs,

    /// Seconds a name (on flows) and a toFQDNs address (in the policy) stay valid after the
    /// DNS answer's TTL runs out.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    fqdn_grace: u64,

    /// Hold the DNS answers of endpoints a toFQDNs rule selects until their addresses are in
    /// the policy (the first packet to a new address then never races the agent); `false`
    /// delivers them at once.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    fqdn_hold: bool,

    /// CIDR identities in use at once: the prefixes policies name plus the addresses learned
    /// for toFQDNs (each gives its identity back when its TTL and grace run out). Past it new
    /// learned addresses are refused, counted in webb_fqdn_refused_total and logged.
    #[arg(long, default_value_t = policy::compile::MAX_CIDR_IDENTITIES, value_name = "N")]
    cidr_identities: usize,
}

fn parse_capacity(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    ring::validate_capacity(n).map_err(|e| e.to_string())
}

fn parse_ring_bytes(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two of at least 4096"));
    }
    Ok(n)
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|e| format!("{s:?} is not HOST:PORT or :PORT ({e})"))
}

fn parse_peer(s: &str) -> Result<PeerInfo, String> {
    let (name, address) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=ADDRESS"))?;
    let ip: IpAddr = address
        .parse()
        .map_err(|e| format!("{s:?}: bad address: {e}"))?;
    if name.is_empty() {
        return Err(format!("{s:?}: empty node name"));
    }
    Ok(PeerInfo {
        name: name.to_string(),
        address: ip.to_string(),
    })
}

fn hostname() -> anyhow::Result<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read the hostname; pass --node-name")?;
    let h = h.trim();
    if h.is_empty() {
        bail!("the hostname is empty; pass --node-name");
    }
    Ok(h.to_string())
}

/// Interfaces to observe: the command line's plus the local endpoints'.
fn wanted_interfaces(args: &Args, eps: &Endpoints) -> BTreeSet<String> {
    args.interfaces
        .iter()
        .cloned()
        .chain(eps.local_interfaces())
        .collect()
}

fn interfaces_of(dp: &Datapath) -> Interfaces {
    let mut out = Interfaces::default();
    for a in dp.interfaces() {
        out.insert(a.ifindex, a.ifname);
    }
    out
}

fn main() -> std::process::ExitCode {
    // One malloc arena: the flow ring's entries are allocated and freed by whichever runtime
    // thread runs the pipeline, and per-thread arenas each ended up holding a ring's worth of
    // freed entries (VmHWM +5–10 MB under load). The agent allocates little besides.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("webb-agent: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webb-agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let node = match &args.node_name {
        Some(n) if !n.trim().is_empty() => n.trim().to_string(),
        _ => hostname()?,
    };

    let mut endpoints_file = args
        .endpoints
        .as_ref()
        .map(|p| EndpointsFile::new(p, &node));
    let endpoints = match endpoints_file.as_mut().and_then(EndpointsFile::poll) {
        Some(loaded) => Arc::new(loaded?),
        None => Arc::new(Endpoints::empty(&node)),
    };

    let refused = webb_security::Counters::new();
    let tls = args.tls.load(&refused)?;
    let access = args.tls.access(tls.as_deref(), &refused);
    let mut metrics = Metrics::new(&node);
    refused.register(metrics.registry_mut());
    let dns_counts = Arc::new(pipeline::DnsCounts::default());
    dns_counts.register(metrics.registry_mut());
    let metrics = Arc::new(metrics);
    metrics.set_ring_capacity(args.ring_capacity as i64);
    let ring = Arc::new(Ring::new(args.ring_capacity)?);
    let state = Arc::new(Observed::new(&node, ring, metrics.clone()));

    // Kernel drop names need tracefs, which `ip netns exec` hides; mount it when missing.
    if let Err(e) = datapath::ensure_tracefs() {
        tracing::warn!(error = %e, "tracefs unavailable: kernel drop reasons print as numbers");
    }
    let names = match KernelDropNames::load() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "kernel drop reasons and locations will print as numbers");
            KernelDropNames::default()
        }
    };

    let config = DatapathConfig {
        cap_len: args.capture_bytes,
        aggregation: match args.aggregation {
            Aggregation::Connection => DpAggregation::Flows,
            Aggregation::None => DpAggregation::None,
        },
        policy_audit: args.policy_mode == PolicyMode::Audit,
        ring_bytes: args.datapath_ring_bytes,
        ..Default::default()
    };
    let mut dp = match Datapath::load(config.clone()) {
        Ok(dp) => dp,
        // Kernel drops are a bonus: a kernel that refuses that program still gets flows.
        Err(e) if config.kernel_drops => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            tracing::warn!(error = %first, "kernel drop reasons unavailable; continuing without them");
            Datapath::load(DatapathConfig {
                kernel_drops: false,
                ..config
            })
            .context(
                "cannot load the eBPF datapath (the agent must run as root on Linux with BTF)",
            )?
        }
        Err(e) => {
            return Err(e).context(
                "cannot load the eBPF datapath (the agent must run as root on Linux with BTF)",
            );
        }
    };
    // The decoder's view of the node; policy names reach it before the datapath uses them.
    let (view_tx, view_rx) = watch::channel(NodeView {
        endpoints: endpoints.clone(),
        interfaces: interfaces_of(&dp),
        policy: Arc::new(PolicyView::default()),
    });
    let mut engine = PolicyEngine::with_cidr_identities(args.cidr_identities);
    // What `webb status` shows: the revision in force and the last rejected load.
    let policy_status = Arc::new(PolicyStatus::new(&node, args.policy.as_deref()));
    let mut policy_files = args.policy.as_ref().map(PolicyFiles::new);
    let initial = match policy_files.as_mut().and_then(PolicyFiles::poll) {
        Some(Ok(p)) => {
            metrics.policy_reload(true);
            p
        }
        Some(Err(e)) => bail!("{e}"),
        None => Vec::new(),
    };
    apply_policy(
        &mut engine,
        &mut dp,
        &endpoints,
        Arc::new(initial),
        &view_tx,
        &metrics,
    )
    .context("cannot put the policy into force")?;
    policy_status.in_force(dp.policy_revision(), engine.policies().len());
    let mut wanted = wanted_interfaces(&args, &endpoints);
    for ifname in &wanted {
        attach(&mut dp, ifname, &args);
    }
    let records = dp.events()?;

    let clock = Arc::new(WallClock::new());
    let start_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let decoder = Decoder::new(
        &node,
        endpoints.clone(),
        clock.clone(),
        FlowIds::new(&node, start_secs),
        Arc::new(names),
    );
    view_tx.send_modify(|v| v.interfaces = interfaces_of(&dp));
    let pending_loss = Arc::new(PendingLoss::default());
    // DNS answers: names on flows in the pipeline; toFQDNs learning here, in the control loop.
    let grace = Duration::from_secs(args.fqdn_grace);
    let reinjector = if args.fqdn_hold {
        match Reinjector::open(args.netns.as_deref()) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot put DNS answers back: toFQDNs answers are not held");
                None
            }
        }
    } else {
        None
    };
    let (dns_tx, mut dns_rx) = tokio::sync::mpsc::channel(1024);
    let mut dns_tap = DnsTap::new(grace);
    dns_tap.counts = dns_counts;
    dns_tap.learn = Some(dns_tx);
    dns_tap.reinjector = reinjector.clone();
    let mut fqdn = FqdnControl {
        grace,
        reinjector,
        counts: dns_tap.counts.clone(),
    };
    fqdn.sync_hold(&engine, &mut dp);
    let pipeline = tokio::spawn(pipeline::run_with_dns(
        records,
        decoder,
        state.clone(),
        metrics.clone(),
        view_rx,
        pending_loss.clone(),
        dns_tap,
    ));

    // Servers.
    let mut peers = vec![PeerInfo {
        name: node.clone(),
        address: advertise_address(&args, &endpoints, &node),
    }];
    peers.extend(args.peers.iter().filter(|p| p.name != node).cloned());
    let services = Services::node(
        ObserverService::new(state.clone())
            .with_status_extras(policy_status.clone())
            .with_access(access),
        PeerService::new(peers),
    )
    .await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %args.listen, node = %node, "Observer API listening");
    let tcp = {
        let services = services.clone();
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            services
                .serve_listener(listener, tls.as_deref(), stop)
                .await
        })
    };
    let unix_path = match &args.unix_socket {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(p.clone()),
        // `cluster/node` names must not become directories.
        None => Some(PathBuf::from(format!(
            "/var/run/webb/{}.sock",
            node.replace('/', "-")
        ))),
    };
    let unix = unix_path.map(|path| {
        tracing::info!(path = %path.display(), "Observer API on unix socket");
        let services = services.clone();
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { services.serve_unix(&path, stop).await })
    });
    if !args.metrics_listen.is_empty() {
        let addr = parse_addr(&args.metrics_listen).map_err(anyhow::Error::msg)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        tracing::info!(address = %addr, "metrics listening");
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = flow_agent::metrics::serve_on(listener, metrics).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
    }

    // Control loop: interfaces coming and going, endpoints file changes, counters, clock.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0u64;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    let mut current = endpoints;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            Some(ev) = dns_rx.recv() => {
                let publish = |view: &Arc<PolicyView>| view_tx.send_modify(|v| v.policy = view.clone());
                if let Some(r) = fqdn.on_dns(&mut engine, &mut dp, &current, ev, publish) {
                    metrics.set_policy(r.revision, r.entries, r.policies);
                }
                metrics.set_fqdn(engine.fqdn_stats());
                continue;
            }
            _ = tick.tick() => {}
        }
        let publish = |view: &Arc<PolicyView>| view_tx.send_modify(|v| v.policy = view.clone());
        match engine.expire_learned(&mut dp, &current, std::time::Instant::now(), publish) {
            Ok(Some(r)) => metrics.set_policy(r.revision, r.entries, r.policies),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot withdraw expired toFQDNs addresses"),
        }
        metrics.set_fqdn(engine.fqdn_stats());
        ticks += 1;
        let mut changed = false;
        if let Some(loaded) = endpoints_file.as_mut().and_then(EndpointsFile::poll) {
            match loaded {
                Ok(eps) => {
                    metrics.endpoints_reload(true);
                    let eps = Arc::new(eps);
                    tracing::info!(endpoints = eps.endpoints().len(), "endpoints file reloaded");
                    view_tx.send_modify(|v| v.endpoints = eps.clone());
                    let policies = engine.policies().clone();
                    if let Err(e) =
                        apply_policy(&mut engine, &mut dp, &eps, policies, &view_tx, &metrics)
                    {
                        tracing::error!(error = %e, "cannot update the ipcache and policy for the new endpoints");
                    }
                    let now_wanted = wanted_interfaces(&args, &eps);
                    for gone in wanted.difference(&now_wanted) {
                        if let Err(e) = dp.detach(gone, args.netns.as_deref()) {
                            tracing::warn!(interface = %gone, error = %e, "detach failed");
                        }
                    }
                    for new in now_wanted.difference(&wanted) {
                        attach(&mut dp, new, &args);
                    }
                    wanted = now_wanted;
                    current = eps;
                    changed = true;
                }
                Err(e) => {
                    metrics.endpoints_reload(false);
                    tracing::error!("{e}; keeping the previous endpoints");
                }
            }
        }
        if let Some(loaded) = policy_files.as_mut().and_then(PolicyFiles::poll) {
            match loaded {
                Ok(p) => {
                    let n = p.len();
                    match apply_policy(
                        &mut engine,
                        &mut dp,
                        &current,
                        Arc::new(p),
                        &view_tx,
                        &metrics,
                    ) {
                        Ok(()) => {
                            metrics.policy_reload(true);
                            policy_status.loaded();
                            tracing::info!(
                                policies = n,
                                revision = dp.policy_revision(),
                                "policy reloaded"
                            );
                        }
                        Err(e) => {
                            metrics.policy_reload(false);
                            policy_status.rejected(None, &format!("{e:#}"));
                            tracing::error!("{e:#}; keeping the policy in force");
                        }
                    }
                }
                Err(e) => {
                    metrics.policy_reload(false);
                    policy_status.rejected(Some(&e), &e.to_string());
                    tracing::error!("{e}; keeping the policy in force");
                }
            }
        }
        policy_status.in_force(dp.policy_revision(), engine.policies().len());
        let report = dp.rescan();
        for a in &report.attached {
            tracing::info!(interface = %a.ifname, ifindex = a.ifindex, tcx = a.tcx, "attached");
        }
        for a in &report.detached {
            tracing::info!(interface = %a.ifname, "interface gone; detached");
        }
        for (ifname, _, err) in &report.failed {
            tracing::warn!(interface = %ifname, error = %err, "attach failed");
        }
        changed |= !report.attached.is_empty() || !report.detached.is_empty();
        if changed {
            view_tx.send_modify(|v| {
                v.endpoints = current.clone();
                v.interfaces = interfaces_of(&dp);
            });
        }
        fqdn.sync_hold(&engine, &mut dp);
        match dp.counters() {
            Ok(c) => pending_loss.add(metrics.datapath_totals(DatapathTotals {
                packets: c.packets,
                bytes: c.bytes,
                events: c.events,
                reserve_failures: c.ring_fail,
            })),
            Err(e) => tracing::debug!(error = %e, "cannot read datapath counters"),
        }
        match dp.ring_fill() {
            Ok(Some(f)) => metrics.set_datapath_ring(f.size, f.used, f.peak),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read the ring fill"),
        }
        if ticks.is_multiple_of(10) {
            clock.refresh();
        }
        if pipeline.is_finished() {
            bail!("the datapath event reader stopped");
        }
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = tcp.await;
    if let Some(u) = unix {
        let _ = u.await;
    }
    // Dropping the datapath detaches every program.
    drop(dp);
    Ok(())
}

/// Fills the ipcache (endpoints and the policies' CIDRs) and installs `policies` compiled over
/// `eps`; the decoder hears of the new names first.
fn apply_policy(
    engine: &mut PolicyEngine,
    dp: &mut Datapath,
    eps: &Endpoints,
    policies: Arc<Vec<policy::Policy>>,
    view_tx: &watch::Sender<NodeView>,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let report = engine.apply(dp, eps, policies, |view| {
        view_tx.send_modify(|v| v.policy = view.clone());
    })?;
    metrics.set_policy(report.revision, report.entries, report.policies);
    tracing::debug!(
        revision = report.revision,
        entries = report.entries,
        compile_ms = report.compile.as_secs_f64() * 1e3,
        install_ms = report.install.as_secs_f64() * 1e3,
        "policy in force"
    );
    Ok(())
}

fn attach(dp: &mut Datapath, ifname: &str, args: &Args) {
    // A missing interface is followed: the periodic rescan attaches it when it appears.
    match dp.attach(ifname, args.netns.as_deref()) {
        Ok(a) => {
            tracing::info!(interface = %a.ifname, ifindex = a.ifindex, tcx = a.tcx, "attached")
        }
        Err(e) => tracing::warn!(interface = %ifname, error = %e, "not attached yet; will retry"),
    }
}

fn advertise_address(args: &Args, eps: &Endpoints, node: &str) -> String {
    if let Some(a) = args.advertise_address {
        return a.to_string();
    }
    if !args.listen.ip().is_unspecified() {
        return args.listen.ip().to_string();
    }
    eps.nodes()
        .iter()
        .find(|n| n.name == node)
        .and_then(|n| n.ips.first())
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

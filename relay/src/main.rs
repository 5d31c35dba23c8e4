//! `webb-relay`: follows every agent's flows, merges them, adds L7 HTTP flows, keeps them in
//! its own ring and serves Hubble's Observer API on `--listen` (what `hubble observe --server`
//! talks to).

use anyhow::Context;
use clap::Parser;
use relay::l7::HttpConfig;
use relay::metrics::{EndpointsWatch, Metrics, MetricsConfig};
use relay::peers::PoolConfig;
use relay::pipeline::PipelineConfig;
use relay::privacy::{DEFAULT_REDACTED_HEADERS, Redaction};
use relay::server::{Outputs, RelayConfig, RelayServer};
use webb_security::http::{ApiGuard, ApiLimits, ApiListener, ClientAddr};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the 16th option of its v2 and v3 headers; the Rust
/// bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[derive(Debug, Parser)]
#[command(name = "webb-relay", version, about)]
struct Args {
    /// Address of the Observer API (Hubble's relay port).
    #[arg(long, default_value = "0.0.0.0:4245")]
    listen: String,
    /// Name of this relay (its own lost events, status).
    #[arg(long, default_value = "webb-relay")]
    node_name: String,
    /// Flows kept in the relay's ring (2^n−1, at most 65535). The relay holds the whole
    /// cluster's recent flows, so it defaults to the largest ring rather than a node's 4095.
    #[arg(long, default_value_t = flow_observer::MAX_CAPACITY, value_parser = ring_capacity)]
    ring_capacity: usize,
    /// Agents to follow, `host:port` (port 4244 when left out).
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Agents whose `peer.Peer/Notify` lists the agents to follow.
    #[arg(long, value_delimiter = ',')]
    notify: Vec<String>,
    /// Headers whose values are replaced by HUBBLE_REDACTED.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_REDACTED_HEADERS.map(String::from))]
    redact_header: Vec<String>,
    /// Keep only these headers in L7 flows (default: all).
    #[arg(long, value_delimiter = ',')]
    allow_header: Option<Vec<String>>,
    /// Remove query strings from URLs in L7 flows.
    #[arg(long)]
    redact_query: bool,
    /// Bytes of one HTTP head under reassembly, per connection and direction.
    #[arg(long, default_value_t = 16 << 10)]
    max_head_bytes: usize,
    /// HTTP connections tracked at once.
    #[arg(long, default_value_t = 65536)]
    max_connections: usize,
    /// Address of the HTTP port: `/metrics` (Hubble's metrics port), `/healthz` and the JSON
    /// API (`/api/v1/…`) for Grafana and scripts.
    #[arg(long, default_value = "0.0.0.0:9965")]
    http_listen: String,
    /// Bearer token the JSON API requires (`/metrics` never does).
    #[arg(long, env = "WEBB_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Metrics, in Hubble's `--metrics` syntax (`""` turns them off).
    #[arg(long, default_value = DEFAULT_METRICS)]
    metrics: String,
    /// Series per metric; updates that would add more are counted, not applied.
    #[arg(long, default_value_t = MetricsConfig::DEFAULT_MAX_SERIES)]
    metrics_max_series: usize,
    /// The agents' endpoints file (standalone mode), followed for changes: the series of an
    /// endpoint removed from it go after `--metrics-endpoint-grace`.
    #[arg(long, value_name = "FILE")]
    endpoints: Option<std::path::PathBuf>,
    /// How long the series of a removed endpoint stay (its last scrapes still see them).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    metrics_endpoint_grace: std::time::Duration,
    /// Flow history directory (Hive-partitioned Parquet); `none` keeps no history.
    #[arg(long, default_value = "./webb-data")]
    store_dir: String,
    /// Delete stored flows older than this.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    retention: std::time::Duration,
    /// Delete the oldest stored flows while the store is bigger than this many bytes.
    #[arg(long)]
    retention_bytes: Option<u64>,
    /// Memory of not-yet-written flows that starts a store flush before its interval; the
    /// store holds at most twice this (beyond it, flows are dropped and counted).
    #[arg(long, default_value_t = flow_store::StoreConfig::new("").pending_bytes_limit)]
    store_pending_bytes: usize,
    /// Write this many synthetic flows (many pods, HTTP, DNS, drops) over the last hour into
    /// the store at start, for demos and tests of the API without agents.
    #[arg(long, default_value_t = 0)]
    synthetic_flows: usize,
    #[command(flatten)]
    otlp: relay::otlp::OtlpArgs,
    /// TLS of the Observer port and the HTTP port.
    #[command(flatten)]
    tls: webb_security::ServerTlsArgs,
    #[command(flatten)]
    peer_tls: webb_security::PeerTlsArgs,
    /// Largest JSON API request body, bytes.
    #[arg(long, default_value_t = ApiLimits::default().max_body_bytes)]
    api_max_body_bytes: u64,
    /// JSON API requests per second of one client address (sustained; with --api-burst).
    #[arg(long, default_value_t = ApiLimits::default().rate_per_sec)]
    api_rate: f64,
    /// JSON API requests one client address may send at once above its rate.
    #[arg(long, default_value_t = ApiLimits::default().burst)]
    api_burst: f64,
}

/// Hubble's usual set, with HTTP exemplars and workload context.
const DEFAULT_METRICS: &str = "flow drop tcp port-distribution icmp policy dns:query;ignoreAAAA \
    httpV2:exemplars=true;labelsContext=source_namespace,source_workload,destination_namespace,destination_workload,traffic_direction";

fn ring_capacity(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    flow_observer::ring::validate_capacity(n).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Freed memory goes back to the OS at once rather than after mimalloc's 10 ms: the store's
    // flush cycle frees tens of MB at a time, and at 50k flows/s the delay kept them resident
    // (relay_rss: peak 257-293 MB with the delay, ~200 MB without, no flow lost either way).
    // `MIMALLOC_PURGE_DELAY` in the environment still decides.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options by its number; no pointers involved.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.peers.is_empty() && args.notify.is_empty() && args.synthetic_flows == 0 {
        anyhow::bail!("nothing to follow: give --peers host:port,… and/or --notify host:port");
    }
    let refused = webb_security::Counters::new();
    let tls = args.tls.load(&refused)?;
    let access = args.tls.access(tls.as_deref(), &refused);
    let peer_tls = args.peer_tls.client()?;
    let outputs = outputs(&args, &refused)?;
    let config = RelayConfig {
        pipeline: PipelineConfig {
            pool: PoolConfig {
                peers: args.peers,
                notify: args.notify,
                tls: peer_tls,
                ..Default::default()
            },
            http: HttpConfig {
                max_head_bytes: args.max_head_bytes,
                max_connections: args.max_connections,
                redaction: Redaction {
                    redact_headers: args.redact_header,
                    allow_headers: args.allow_header,
                    redact_query: args.redact_query,
                },
                ..Default::default()
            },
            ..Default::default()
        },
        ring_capacity: args.ring_capacity,
        node_name: args.node_name,
        outputs: outputs.clone(),
        tls: tls.clone(),
        access,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let http_listener = tokio::net::TcpListener::bind(&args.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--http-listen)", args.http_listen))?;
    if args.api_token.is_none()
        && http_listener
            .local_addr()
            .is_ok_and(|a| !a.ip().is_loopback())
    {
        tracing::warn!(
            http_listen = %args.http_listen,
            "the JSON API (flows, SQL) is reachable beyond this host without a token: \
             set --api-token or bind a loopback address"
        );
    }
    let server = RelayServer::start(config).await?;
    let guard = ApiGuard::new(
        ApiLimits {
            max_body_bytes: args.api_max_body_bytes,
            rate_per_sec: args.api_rate,
            burst: args.api_burst,
        },
        refused.clone(),
    );
    let router = webb_security::http::apply(
        relay::api::router(server.api_state(args.api_token.clone())),
        guard,
    );
    let http_listener = ApiListener::new(http_listener, tls.as_deref())
        .context("cannot start TLS on --http-listen")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(async move {
        axum::serve(
            http_listener,
            router.into_make_service_with_connect_info::<ClientAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = http_stop.wait_for(|s| *s).await;
        })
        .await
    });
    tracing::info!(listen = %args.listen, http_listen = %args.http_listen, "relay serving");
    server.serve(listener, stop_signal()).await?;
    let _ = stop_tx.send(true);
    let _ = http.await;
    let losses = server.losses().totals();
    let stats = server.shutdown().await;
    if let Some(spans) = outputs.spans {
        spans.shutdown().await;
    }
    if let Some(store) = outputs.store.and_then(std::sync::Arc::into_inner) {
        // Whatever the writer still holds reaches Parquet before the process ends.
        tokio::task::spawn_blocking(move || store.close()).await?;
    }
    tracing::info!(?stats, ?losses, "relay stopped");
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM (systemd, kill, CI), so both end with the store flushed.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn outputs(args: &Args, refused: &webb_security::Counters) -> anyhow::Result<Outputs> {
    let metrics = if args.metrics.trim().is_empty() {
        None
    } else {
        let mut config = MetricsConfig::from_flag(&args.metrics).context("--metrics")?;
        config.max_series_per_metric = args.metrics_max_series;
        config.endpoint_grace = args.metrics_endpoint_grace;
        let mut metrics = Metrics::new(&config).context("--metrics")?;
        refused.register(metrics.registry_mut());
        let metrics = std::sync::Arc::new(metrics);
        if let Some(path) = &args.endpoints {
            let watch = EndpointsWatch::open(path).context("--endpoints")?;
            tokio::spawn(follow_endpoints(watch, metrics.clone()));
        }
        Some(metrics)
    };
    let store = if args.store_dir == "none" {
        None
    } else {
        let config = flow_store::StoreConfig {
            retention_age: Some(args.retention),
            retention_bytes: args.retention_bytes,
            pending_bytes_limit: args.store_pending_bytes,
            ..flow_store::StoreConfig::new(&args.store_dir)
        };
        let store = flow_store::FlowStore::open(config).with_context(|| {
            format!(
                "cannot open the flow store in {} (--store-dir)",
                args.store_dir
            )
        })?;
        if args.synthetic_flows > 0 {
            write_synthetic(&store, args.synthetic_flows)?;
        }
        Some(std::sync::Arc::new(store))
    };
    let spans = match args.otlp.config() {
        Some(config) => Some(relay::otlp::SpanExporter::start(config).context("--otlp-endpoint")?),
        None => None,
    };
    Ok(Outputs {
        metrics,
        store,
        spans,
    })
}

/// Re-reads the endpoints file every second; removed endpoints' series go after the grace.
async fn follow_endpoints(mut watch: EndpointsWatch, metrics: std::sync::Arc<Metrics>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        match watch.poll(&metrics, std::time::Instant::now()) {
            Ok((0, 0)) => {}
            Ok((gone, came)) => tracing::info!(gone, came, "endpoints file changed"),
            Err(e) => tracing::warn!("{e}; keeping the endpoints read before"),
        }
    }
}

/// `n` synthetic flows spread over the hour before now, flushed before the relay serves.
fn write_synthetic(store: &flow_store::FlowStore, n: usize) -> anyhow::Result<()> {
    let now = webb_proto::Timestamp::now();
    let rate = (n as u64).div_ceil(3600).max(1);
    let span_ns = n as u64 * 1_000_000_000 / rate;
    let start =
        webb_proto::Timestamp::from_unix_nanos((now.unix_nanos() as u64).saturating_sub(span_ns));
    let generator = flow_store::generator::FlowGenerator::new(200, start, rate);
    for i in 0..n {
        store.append_blocking(generator.flow(i));
    }
    store.flush().context("writing synthetic flows")?;
    tracing::info!(flows = n, "synthetic flows written to the store");
    Ok(())
}

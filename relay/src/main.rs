//! `webb-relay`: follows every agent's flows, merges them, adds L7 HTTP flows, keeps them in
//! its own ring and serves Hubble's Observer API on `--listen` (what `hubble observe --server`
//! talks to).

use anyhow::Context;
use clap::Parser;
use relay::l7::HttpConfig;
use relay::peers::PoolConfig;
use relay::pipeline::PipelineConfig;
use relay::privacy::{DEFAULT_REDACTED_HEADERS, Redaction};
use relay::server::{RelayConfig, RelayServer};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
}

fn ring_capacity(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    flow_observer::ring::validate_capacity(n).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.peers.is_empty() && args.notify.is_empty() {
        anyhow::bail!("nothing to follow: give --peers host:port,… and/or --notify host:port");
    }
    let config = RelayConfig {
        pipeline: PipelineConfig {
            pool: PoolConfig {
                peers: args.peers,
                notify: args.notify,
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
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let server = RelayServer::start(config).await?;
    tracing::info!(listen = %args.listen, "relay serving");
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let losses = server.losses().totals();
    let stats = server.shutdown().await;
    tracing::info!(?stats, ?losses, "relay stopped");
    Ok(())
}

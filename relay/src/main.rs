//! `webb-relay`: follows every agent's flows, merges them and adds L7 HTTP flows.
//!
//! The Observer server (`:4245`) and the relay ring join once the shared ring/server crate is
//! extracted from the agent; until then `--print-json` writes the processed stream as
//! `hubble observe -o json` lines, which is also how the pipeline is checked by hand.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use clap::Parser;
use relay::l7::HttpConfig;
use relay::peers::PoolConfig;
use relay::pipeline::{Pipeline, PipelineConfig};
use relay::privacy::{DEFAULT_REDACTED_HEADERS, Redaction};
use tokio::sync::mpsc;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "webb-relay", version, about)]
struct Args {
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
    /// Write every processed response to stdout as a protojson line (debugging).
    #[arg(long)]
    print_json: bool,
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
    let config = PipelineConfig {
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
    };

    // The pipeline never waits for stdout: a full queue drops and counts.
    let (tx, mut rx) = mpsc::channel(8192);
    let dropped = Arc::new(AtomicU64::new(0));
    let sink_dropped = dropped.clone();
    let print = args.print_json;
    let pipeline = Pipeline::start(config, move |resp| {
        if print && tx.try_send(resp).is_err() {
            sink_dropped.fetch_add(1, Ordering::Relaxed);
        }
    });
    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        while let Some(resp) = rx.blocking_recv() {
            let line = webb_proto::json::response_to_line(&resp).context("encoding a response")?;
            writeln!(out, "{line}").context("writing to stdout")?;
            if rx.is_empty() {
                out.flush().context("writing to stdout")?;
            }
        }
        Ok(())
    });

    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    let stats = pipeline.shutdown().await;
    writer.await.context("stdout writer")??;
    tracing::info!(
        ?stats,
        stdout_dropped = dropped.load(Ordering::Relaxed),
        "relay stopped"
    );
    Ok(())
}

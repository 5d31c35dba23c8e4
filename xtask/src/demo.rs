//! `cargo xtask demo`: the live demo network under the whole stack, in one command.
//!
//! Prerequisites and build → leftovers of a crashed run removed → netlab's two nodes and the
//! shop's pods → the stack of `webb_scenarios::demo` (an agent per node with the shop's
//! policies, the relay with its store and metrics) → bounded live traffic → `webb tui` on a
//! terminal, `webb observe -f` otherwise → the traffic report, a summary of the flows and the end
//! checks → every process and namespace it made gone.

use std::fs;
use std::io::IsTerminal;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use webb_scenarios::demo::{Binaries, Options, Ports, Stack, kill_leftover_processes};

use crate::cmd::{self, fmt_duration};
use crate::prereq::{self, Needs};

/// Namespace prefix of the demo (`webb-node1`, `webb-frontend`, ...).
const PREFIX: &str = "webb";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the traffic runs (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Print `webb observe -f` instead of opening `webb tui` (also when stdout is not a terminal).
    #[arg(long)]
    no_tui: bool,
    /// Export the relay's network spans to this OTLP/gRPC endpoint (e.g. a Tempo or an
    /// OpenTelemetry Collector at http://127.0.0.1:4317).
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
}

pub fn run(args: &DemoArgs) -> Result<bool> {
    let started = Instant::now();
    prereq::ensure(Needs {
        root: true,
        kernel_fs: true,
        cargo_tools: false,
    })?;

    let build = Instant::now();
    // One cargo invocation for the three packages: one feature resolution, so nothing is built
    // twice with different features.
    cmd::run(cmd::cargo().args([
        "build",
        "-p",
        "flow-agent",
        "-p",
        "relay",
        "-p",
        "tui",
        "--bins",
    ]))?;
    println!("built in {}", fmt_duration(build.elapsed()));
    let built = Instant::now();

    let bin_dir = cmd::target_dir()?.join("debug");
    let bins = Binaries::in_dir(&bin_dir);

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second Ctrl-C exits at once; the next run removes what is left.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .context("installing the Ctrl-C handler")?;
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the Ctrl-C handler")?;
    }

    let work = std::env::temp_dir().join("webb-demo");
    let pidfile = work.join("pids");
    kill_leftover_processes(&pidfile, &bin_dir);
    let removed =
        netlab::cleanup_leftovers(PREFIX).context("removing an earlier demo's namespaces")?;
    if !removed.is_empty() {
        println!(
            "removed namespaces left by an earlier demo: {}",
            removed.join(", ")
        );
    }
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    let topo = netlab::Topology::build(PREFIX).context("building the demo network")?;
    println!(
        "demo network: {} nodes, {} pods in {}",
        topo.nodes().len(),
        topo.pods().len(),
        fmt_duration(topo.build_time())
    );
    let outcome = run_stack(args, &topo, &bins, &work, Times { started, built }, &stop);
    // Processes are gone by now (run_stack's stack dropped); then the namespaces.
    let teardown = topo.teardown();
    let left: Vec<String> = netlab::netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .collect();
    if left.is_empty() {
        println!("cleaned up: no {PREFIX}-* namespace left, every process stopped");
    } else {
        eprintln!("xtask demo: namespaces left behind: {}", left.join(", "));
    }
    teardown.context("deleting the demo network")?;
    let ok = outcome?;
    Ok(ok && left.is_empty())
}

/// When the command started and when its build finished.
struct Times {
    started: Instant,
    built: Instant,
}

fn run_stack(
    args: &DemoArgs,
    topo: &netlab::Topology,
    bins: &Binaries,
    work: &std::path::Path,
    times: Times,
    stop: &AtomicBool,
) -> Result<bool> {
    let ports = Ports::hubble(topo.nodes().len());
    let options = Options {
        otlp_endpoint: args.otlp_endpoint.clone(),
    };
    let mut stack = Stack::start(topo, bins, &ports, &options, work, stop)?;
    let server = stack.relay.clone();
    println!(
        "relay: Observer API on {server}; metrics at http://{http}/metrics, JSON API at \
         http://{http}/api/v1/status; flow history in {}",
        stack.store.display(),
        http = stack.relay_http,
    );

    let plan = netlab::Plan {
        duration: args.duration,
        max_requests: 100_000,
        ..Default::default()
    };
    let traffic = netlab::Traffic::start(topo, plan).context("starting the traffic")?;
    let traffic_started = Instant::now();
    println!(
        "traffic running for {} (HTTP with traceparent, DNS, ICMP, frontend -> db denied by \
         policy) — flows from {server}",
        fmt_duration(args.duration)
    );

    let tui = !args.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let first_flow = if tui {
        // The viewer owns the screen: a quiet follower measures when the first flow arrives.
        let probe = stack.follow("probe", false)?;
        println!("$ webb tui --server {server}   (q quits)");
        let status = Command::new(&bins.webb)
            .args(["tui", "--server", &server])
            .status()
            .context("running webb tui")?;
        if !status.success() {
            eprintln!("xtask demo: webb tui exited with {status}");
        }
        stack.stop("probe");
        probe.recv_timeout(Duration::from_millis(10)).ok()
    } else {
        let first = stack.follow("observe", true)?;
        let deadline = traffic_started + args.duration;
        let mut first_at = None;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            if first_at.is_none() {
                first_at = first.recv_timeout(Duration::from_millis(200)).ok();
            } else {
                thread::sleep(Duration::from_millis(200));
            }
        }
        stack.stop("observe");
        first_at.or_else(|| first.recv_timeout(Duration::from_millis(10)).ok())
    };
    if stop.load(Ordering::Relaxed) {
        println!("\ninterrupted: stopping the traffic and cleaning up");
    }
    traffic.stop();
    let report = traffic.wait();
    println!("\n== traffic ==\n{report}");
    match first_flow {
        Some(at) => println!(
            "time to first flow: {} from the command; {} after the build (what a warm build \
             costs); {} after the traffic started",
            fmt_duration(at.duration_since(times.started)),
            fmt_duration(at.duration_since(times.built)),
            fmt_duration(at.saturating_duration_since(traffic_started))
        ),
        None => println!("time to first flow: no flow arrived"),
    }

    let summary = stack.summarize(&report)?;
    stack.stop_all();
    println!("logs of this run: {}/*.log", work.display());
    Ok(summary.passed())
}

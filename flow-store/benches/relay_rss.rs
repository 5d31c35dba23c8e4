//! Memory of a real `webb-relay` while it ingests a steady 50k flows/s into its flow store
//! (issue goal: RSS <= 256 MB). Agents are flow-observer's Observer servers on loopback (the
//! serving code of `webb-agent`), fed generator flows (2000 pods, HTTP, DNS, drops) re-timed
//! to now at a fixed rate; the relay follows them with `--peers` and its default settings
//! (65535-flow ring, metrics, store). Its VmRSS is sampled every second from /proc and VmHWM
//! read at the end; after SIGTERM (the relay flushes) the flows in its store are counted.
//!
//! Baseline measured in the same run: the same relay and load with `--store-dir none`, so the
//! store's share of the memory is the difference.
//!
//! The relay binary: `$WEBB_RELAY_BIN`, else `webb-relay` next to this bench's profile
//! directory (`cargo xtask bench -p flow-store` builds it; or
//! `cargo build --release -p relay --bin webb-relay`). `FLOW_STORE_BENCH_RSS_SECS` sets the
//! load time with the store (default 60; the baseline runs half as long).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flow_observer::{DEFAULT_CAPACITY, Health, Observed, ObserverService, Ring, Services};
use flow_store::generator::FlowGenerator;
use flow_store::{FlowStore, StoreConfig};
use webb_proto::{Timestamp, extras};

// The in-process agents allocate as the relay does.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RATE: u64 = 50_000;
const AGENTS: usize = 4;
const GOAL_MB: f64 = 256.0;
/// Flows are pushed in batches this often.
const TICK: Duration = Duration::from_millis(10);

fn relay_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WEBB_RELAY_BIN") {
        return Some(PathBuf::from(p));
    }
    // target/<profile>/deps/relay_rss-… → target/<profile>/webb-relay
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("webb-relay");
    p.exists().then_some(p)
}

/// `VmRSS` or `VmHWM` of `pid` in MB.
fn status_mb(pid: u32, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Agents serving on loopback in a runtime of their own.
struct Agents {
    runtime: tokio::runtime::Runtime,
    observed: Vec<Arc<Observed>>,
    addrs: Vec<String>,
}

impl Agents {
    fn start() -> Agents {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("agents' runtime");
        let mut observed = Vec::new();
        let mut addrs = Vec::new();
        for a in 0..AGENTS {
            let ring = Arc::new(Ring::new(DEFAULT_CAPACITY).expect("ring capacity"));
            let state = Arc::new(Observed::new(
                &format!("bench-node-{a}"),
                ring,
                Arc::new(()),
            ));
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("agent listens on loopback");
            addrs.push(listener.local_addr().expect("bound").to_string());
            let serving = state.clone();
            runtime.spawn(async move {
                let services = Services {
                    observer: ObserverService::new(serving),
                    peer: None,
                    health: Health::new(true).await,
                };
                let _ = services.serve_tcp(listener, std::future::pending()).await;
            });
            observed.push(state);
        }
        Agents {
            runtime,
            observed,
            addrs,
        }
    }

    /// Pushes generator flows re-timed to now at `RATE` for `duration`; returns how many.
    fn push_for(&self, duration: Duration) -> u64 {
        let g = FlowGenerator::new(2000, Timestamp::now(), RATE);
        let started = Instant::now();
        let mut i = 0usize;
        while started.elapsed() < duration {
            let due = (started.elapsed().as_secs_f64() * RATE as f64) as usize;
            while i < due {
                let mut f = g.flow(i);
                let agent = &self.observed[i % AGENTS];
                f.node_name = agent.node_name().to_owned();
                // Webb's extras travel beside the flow in an agent's ring.
                let extra = extras::unpack(&f).and_then(Result::ok);
                extras::strip(&mut f);
                agent.push_flow(f, extra.as_ref());
                i += 1;
            }
            for a in &self.observed {
                a.flush();
            }
            std::thread::sleep(TICK);
        }
        i as u64
    }
}

struct Relay {
    child: Child,
    log: PathBuf,
}

impl Relay {
    fn start(bin: &Path, peers: &[String], store_dir: &str, log: PathBuf) -> Relay {
        let err = std::fs::File::create(&log).expect("relay log file");
        let child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--peers", &peers.join(",")])
            .args(["--store-dir", store_dir])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let relay = Relay { child, log };
        relay.wait_for_log("relay serving", Duration::from_secs(30));
        relay
    }

    fn log_has(&self, text: &str) -> bool {
        std::fs::File::open(&self.log)
            .map(|f| {
                BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .any(|l| l.contains(text))
            })
            .unwrap_or(false)
    }

    fn wait_for_log(&self, text: &str, limit: Duration) {
        let started = Instant::now();
        while !self.log_has(text) {
            assert!(
                started.elapsed() < limit,
                "webb-relay did not log {text:?} within {limit:?}; its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (the relay flushes its store), then waits for the process to end.
    fn stop(mut self) {
        // SAFETY: kill(2) with the pid of our own child process and a valid signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("webb-relay did not stop within 60 s of SIGTERM");
    }
}

/// `line` without its ANSI colour sequences (`ESC [ … m`), which the relay's log carries.
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

struct Measured {
    idle_mb: f64,
    steady_mb: f64,
    peak_mb: f64,
    pushed: u64,
    secs: f64,
    /// The relay's own count of lost flows by stage, as it logged them when it stopped.
    losses: String,
}

/// One relay under the load for `duration`; `store_dir` is a directory or `none`.
fn run(bin: &Path, store_dir: &str, duration: Duration, log: PathBuf) -> Measured {
    let agents = Agents::start();
    let relay = Relay::start(bin, &agents.addrs, store_dir, log);
    let pid = relay.child.id();
    // Followed when every agent's flows can reach it: give the connections a moment.
    std::thread::sleep(Duration::from_secs(2));
    let idle_mb = status_mb(pid, "VmRSS:").unwrap_or(f64::NAN);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                samples.extend(status_mb(pid, "VmRSS:"));
            }
            samples
        })
    };
    let started = Instant::now();
    let pushed = agents.push_for(duration);
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    let peak_mb = status_mb(pid, "VmHWM:").unwrap_or(f64::NAN);
    let log = relay.log.clone();
    relay.stop();
    // The relay's last words count what it lost, by stage (agents' rings, merge, store queue).
    let losses = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("relay stopped"))
        .map(without_colours)
        .and_then(|l| l.find("losses=").map(|i| l[i..].to_owned()))
        .unwrap_or_else(|| "no \"relay stopped\" line in its log".to_owned());
    agents.runtime.shutdown_background();
    // Steady state: the second half, after the ring and the store's batches have filled.
    let mut second_half = samples[samples.len() / 2..].to_vec();
    second_half.sort_by(f64::total_cmp);
    let steady_mb = second_half
        .get(second_half.len() / 2)
        .copied()
        .unwrap_or(f64::NAN);
    Measured {
        idle_mb,
        steady_mb,
        peak_mb,
        pushed,
        secs,
        losses,
    }
}

fn main() {
    let Some(bin) = relay_binary() else {
        eprintln!(
            "relay_rss: no webb-relay binary next to this bench and WEBB_RELAY_BIN is unset; \
             `cargo xtask bench -p flow-store` builds it (or `cargo build --release -p relay --bin webb-relay`)"
        );
        std::process::exit(1);
    };
    let secs: u64 = std::env::var("FLOW_STORE_BENCH_RSS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let tmp = tempfile::tempdir().expect("temp dir");
    let store_dir = tmp.path().join("store");
    let store_dir_arg = store_dir.to_string_lossy().into_owned();

    println!(
        "\nrelay RSS at {RATE} flows/s ({}, {AGENTS} agents on loopback, {} cores, load average {})",
        bin.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let with = run(
        &bin,
        &store_dir_arg,
        Duration::from_secs(secs),
        tmp.path().join("relay-store.log"),
    );
    let stored: u64 = FlowStore::open(StoreConfig {
        retention_age: None,
        ..StoreConfig::new(&store_dir)
    })
    .expect("the relay's store opens")
    .segments()
    .iter()
    .map(|s| s.rows)
    .sum();
    let without = run(
        &bin,
        "none",
        Duration::from_secs(secs.div_ceil(2)),
        tmp.path().join("relay-none.log"),
    );

    let ratio = with.peak_mb / GOAL_MB;
    println!(
        "relay with store, {:.0} s: peak (VmHWM) {:.0} MB, steady (median VmRSS, second half) {:.0} MB, idle {:.0} MB; goal {GOAL_MB} MB -> peak is {ratio:.2}x of goal, {}",
        with.secs,
        with.peak_mb,
        with.steady_mb,
        with.idle_mb,
        if ratio <= 1.0 { "met" } else { "MISSED" }
    );
    println!(
        "  load: {} flows pushed = {:.0} flows/s; {} in the relay's store after SIGTERM ({:.1}% of pushed; the rest lost between agent ring, relay and store queue)",
        with.pushed,
        with.pushed as f64 / with.secs,
        stored,
        stored as f64 * 100.0 / with.pushed.max(1) as f64
    );
    println!("  the relay's losses by stage: {}", with.losses);
    println!(
        "  baseline, same load with --store-dir none, {:.0} s: peak {:.0} MB, steady {:.0} MB, idle {:.0} MB; the store adds {:.0} MB at peak ({:.2}x the relay without it)",
        without.secs,
        without.peak_mb,
        without.steady_mb,
        without.idle_mb,
        with.peak_mb - without.peak_mb,
        with.peak_mb / without.peak_mb
    );
    println!("  the baseline relay's losses by stage: {}", without.losses);
}

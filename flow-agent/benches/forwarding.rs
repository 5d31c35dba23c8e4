//! Forwarding packets/s through a router with the agent attached vs without, measured in the
//! same run. Needs root.
//!
//! Path: netlab's node1 routes frontend → catalog (pod veth → node → pod veth). A bounded UDP
//! blaster in the frontend pod sends 64-byte datagrams, each from a new source port (and, every
//! 64 k datagrams, to the next of 8 destination ports, so no tuple returns while the conntrack
//! could still hold it) — every packet a new flow, so each crosses both watched interfaces as a
//! conntrack miss that writes a record (the costliest case; the records per forwarded packet
//! are printed to show it). The catalog pod counts what arrives.
//!
//! Cases: `baseline` (no agent) and `agent` (the real `webb-agent` on node1, attached with TCX
//! to `lxcfrontend` and `lxccatalog`, 65535-flow ring). Criterion times the sender per packet
//! (veth forwarding runs in the sender's softirq); then fixed-length rounds alternate
//! (baseline, agent, baseline, …, baseline; a fresh agent per agent round) and measure delivered
//! packets/s, whose medians give the ratio. The agent's lost events at that rate and
//! its peak RSS (VmHWM) under the load are printed too.
//! Goals (issue #3): ≥ 97% of the path's own pps, zero lost events, RSS ≤ 64 MB.

#[path = "../tests/datapath_support/mod.rs"]
mod datapath_support;

use std::collections::BTreeMap;
use std::net::{SocketAddrV4, UdpSocket};
use std::time::Duration;

use criterion::{Criterion, Throughput};
use datapath_support::agent::Agent;
use datapath_support::blast::{self, Receiver};

const PAYLOAD: usize = 64 - 8 - 20 - 14; // a 64-byte Ethernet frame
const ROUND: Duration = Duration::from_secs(1);
const ROUNDS: usize = 5;
const ROUND_MAX_PACKETS: u64 = 2_000_000;
const GOAL_RATIO: f64 = 0.97;
const GOAL_RSS_MB: f64 = 64.0;

/// Agent counters summed over the agent rounds.
const COUNTED: [&str; 4] = [
    "webb_datapath_packets_total",
    "webb_datapath_events_total",
    "webb_lost_events_total{stage=\"datapath_ring\"}",
    "webb_flows_total",
];

/// Destination ports the blaster cycles through, one receiving socket each.
const DST_PORTS: [u16; 8] = [9, 10, 11, 12, 13, 14, 15, 16];

/// `kernel.bpf_stats_enabled` set to 1, and back to what it was when dropped (a panic too).
struct BpfStats(String);

impl BpfStats {
    const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

    fn enable() -> BpfStats {
        let was = std::fs::read_to_string(Self::SYSCTL).unwrap_or_else(|_| "0".into());
        std::fs::write(Self::SYSCTL, "1").expect("enable BPF run-time stats");
        BpfStats(was.trim().to_string())
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::SYSCTL, &self.0);
    }
}

struct Path {
    sender_ns: String,
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    receivers: Vec<Receiver>,
}

impl Path {
    fn blast(&self, count: u64, limit: Duration) -> blast::Blast {
        let (src, dst) = (self.src, self.dst);
        netlab::netns::spawn_in(&self.sender_ns, move || {
            blast::udp_new_flows_to(src, dst, &DST_PORTS, PAYLOAD, count, limit)
        })
        .expect("sender namespace")
        .join()
        .expect("blast")
    }

    /// Delivered packets/s over one round (arrivals counted until the path is quiet).
    fn round(&self) -> f64 {
        let before = self.received();
        let b = self.blast(ROUND_MAX_PACKETS, ROUND);
        let after = self.settled();
        (after - before) as f64 / b.elapsed.as_secs_f64()
    }

    fn received(&self) -> u64 {
        self.receivers.iter().map(Receiver::received).sum()
    }

    /// The count once nothing more arrived for 50 ms (at most 2 s).
    fn settled(&self) -> u64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut last = self.received();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.received();
            if now == last || std::time::Instant::now() >= deadline {
                return now;
            }
            last = now;
        }
    }
}

/// Run time and runs of the agent's TC programs so far (`bpftool prog show`; the kernel counts
/// them only while `kernel.bpf_stats_enabled` is 1).
fn tc_prog_stats() -> (u64, u64) {
    let Ok(out) = std::process::Command::new("bpftool")
        .args(["prog", "show"])
        .output()
    else {
        return (0, 0);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut ns, mut runs) = (0, 0);
    for line in text.lines().filter(|l| l.contains("name webb_tc_")) {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            let total = match w {
                "run_time_ns" => &mut ns,
                "run_cnt" => &mut runs,
                _ => continue,
            };
            *total += words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    (ns, runs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("forwarding bench: needs root (namespaces, eBPF); skipped");
        return;
    }
    netlab::cleanup_stale("wbgf");
    let topo = netlab::Topology::build(&netlab::unique_prefix("wbgf")).expect("netlab topology");
    let node = topo.nodes()[0].netns.clone();
    let (frontend, catalog) = (
        topo.pod("frontend").unwrap().clone(),
        topo.pod("catalog").unwrap().clone(),
    );
    let dst = catalog.ipv4;
    let receivers = netlab::netns::spawn_in(&catalog.netns, move || {
        DST_PORTS
            .iter()
            .map(|&p| {
                let sock = UdpSocket::bind(SocketAddrV4::new(dst, p)).expect("bind receiver");
                Receiver::start(sock)
            })
            .collect::<Vec<_>>()
    })
    .unwrap()
    .join();
    let path = Path {
        sender_ns: frontend.netns.clone(),
        src: frontend.ipv4,
        dst,
        receivers,
    };
    // Neighbours resolved and caches warm before anything is measured.
    path.blast(10_000, Duration::from_secs(2));

    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .configure_from_args();
    let mut g = c.benchmark_group("forward_udp_new_flow_per_packet");
    g.throughput(Throughput::Elements(1));
    let bench = |g: &mut criterion::BenchmarkGroup<'_, _>, name: &str| {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let r = path.blast(iters, Duration::from_secs(10));
                // Refused sends did no forwarding work; time the ones that went.
                r.elapsed.mul_f64(iters as f64 / r.sent.max(1) as f64)
            })
        });
    };
    bench(&mut g, "baseline");
    // Rounds alternate (baseline, agent, baseline, ..., baseline) so that the machine's drift
    // (other work, thermal, the host) lands on both sides alike; a fresh agent per round.
    let mut baseline = vec![path.round()];
    let mut attached = Vec::with_capacity(ROUNDS);
    let (mut hwm_kb, mut rss_kb, mut parts) = (0, 0, Vec::new());
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    let mut cpu_ns = 0u64;
    // WEBB_BPF_STATS=1: the kernel times the TC programs during the agent rounds (it costs two
    // clock reads per run, so the ratio is not measured that way).
    let bpf_stats = std::env::var_os("WEBB_BPF_STATS").is_some();
    let stats_guard = bpf_stats.then(BpfStats::enable);
    let (mut prog_ns, mut prog_runs) = (0u64, 0u64);
    for i in 0..ROUNDS {
        let agent = Agent::start(&topo, &node, &["--ring-capacity", "65535"]);
        // Attached once it listens; the rescan loop would also catch late interfaces within 1 s.
        std::thread::sleep(Duration::from_millis(1500));
        if i == 0 {
            bench(&mut g, "agent");
            // The counters the agent exports are sampled: let them catch up first.
            std::thread::sleep(Duration::from_millis(1500));
        }
        let before = agent.metrics();
        let cpu_before = agent.cpu_ns();
        let progs_before = tc_prog_stats();
        attached.push(path.round());
        cpu_ns += agent.cpu_ns() - cpu_before;
        let progs_after = tc_prog_stats();
        prog_ns += progs_after.0 - progs_before.0;
        prog_runs += progs_after.1 - progs_before.1;
        std::thread::sleep(Duration::from_millis(1500)); // one counter tick of the agent
        let after = agent.metrics();
        for k in COUNTED {
            *totals.entry(k).or_default() +=
                after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
        }
        let hwm = agent.status_kb("VmHWM").unwrap_or(0);
        if hwm >= hwm_kb {
            hwm_kb = hwm;
            rss_kb = agent.status_kb("VmRSS").unwrap_or(0);
            // Where the resident memory is: heap (the flow ring, decoder), mapped files (the
            // binary), shared (the BPF ring buffer's mapping).
            parts = ["RssAnon", "RssFile", "RssShmem"]
                .iter()
                .map(|k| {
                    format!(
                        "{k} {:.1} MB",
                        agent.status_kb(k).unwrap_or(0) as f64 / 1024.0
                    )
                })
                .collect();
        }
        drop(agent);
        baseline.push(path.round());
    }
    g.finish();
    drop(stats_guard);

    let delta = |k: &str| totals.get(k).copied().unwrap_or(0.0);
    let (b, a) = (median(baseline.clone()), median(attached.clone()));
    let ratio = a / b;
    let rss_mb = hwm_kb as f64 / 1024.0;
    println!("\nforwarding frontend → node1 → catalog, 64-byte UDP, every packet a new flow:");
    // Other work on the machine moves these figures: say how busy it was.
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "  load average {}",
            l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
    }
    println!(
        "  baseline (no agent)   {:9.0} pps  {:7.0} ns/pkt   rounds {:?}",
        b,
        1e9 / b,
        baseline.iter().map(|v| v.round()).collect::<Vec<_>>()
    );
    println!(
        "  agent attached        {:9.0} pps  {:7.0} ns/pkt   rounds {:?}",
        a,
        1e9 / a,
        attached.iter().map(|v| v.round()).collect::<Vec<_>>()
    );
    let pairs: Vec<String> = attached
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{:.2}", 2.0 * a / (baseline[i] + baseline[i + 1])))
        .collect();
    println!(
        "  each agent round against the mean of the baseline rounds around it: {}",
        pairs.join(" ")
    );
    println!(
        "  ratio of medians {:.3} (goal ≥ {GOAL_RATIO}: {}); agent adds {:.0} ns per forwarded packet (two hooks, two records)",
        ratio,
        if ratio >= GOAL_RATIO { "met" } else { "MISSED" },
        1e9 / a - 1e9 / b
    );
    // Each forwarded packet crosses two watched hooks: 2 records per packet when every one is
    // a conntrack miss (a lower figure means tuples were still cached and the load was lighter).
    let seen = delta("webb_datapath_packets_total");
    if bpf_stats {
        println!(
            "  TC programs during the agent rounds (kernel.bpf_stats_enabled): {prog_runs} runs, {:.0} ns per run",
            prog_ns as f64 / prog_runs.max(1) as f64
        );
    }
    // The agent's own CPU during the rounds (its threads' run time): what it costs per record
    // regardless of how busy the machine is.
    println!(
        "  agent CPU during the agent rounds: {:.0} ms, {:.0} ns per record",
        cpu_ns as f64 / 1e6,
        cpu_ns as f64 / delta("webb_datapath_events_total").max(1.0)
    );
    println!(
        "  agent during the rounds: {} hook passes, {} records ({:.2} per forwarded packet, 2.00 = every packet a new flow at both hooks), {} lost (datapath_ring), {} flows decoded (goal: 0 lost: {})",
        seen,
        delta("webb_datapath_events_total"),
        2.0 * delta("webb_datapath_events_total") / seen.max(1.0),
        delta("webb_lost_events_total{stage=\"datapath_ring\"}"),
        delta("webb_flows_total"),
        if delta("webb_lost_events_total{stage=\"datapath_ring\"}") == 0.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  agent memory with a 65535-flow ring under this load: VmHWM {rss_mb:.1} MB, VmRSS {:.1} MB ({}) (goal ≤ {GOAL_RSS_MB} MB: {})",
        rss_kb as f64 / 1024.0,
        parts.join(", "),
        if rss_mb <= GOAL_RSS_MB {
            "met"
        } else {
            "MISSED"
        }
    );
    drop(path);
    drop(topo);
    c.final_summary();
}

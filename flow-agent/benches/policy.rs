//! Cost of the policy lookup per packet with 1, 100 and 10,000 rules (BPF_PROG_TEST_RUN,
//! kernel-measured, the policy probe program: parse, ipcache, both policy lookups), against an
//! empty classifier and the probe with no policy installed, in the same run; and the time to
//! compile (and install) 10,000 rules. Needs root.
//!
//! Every kind is answered by exact hash lookups (port ranges widened to a few strides, see
//! `src/policy/layout.rs`; CIDR peers through the ipcache's lookups by prefix length): each kind
//! is measured with its one matching rule and with 9,999 more of its kind beside it, and printed
//! as a ratio to exact-port rules of the same count, measured in the same run.
//!
//! Goals: 10,000 rules cost no more than +20 ns over 1 rule; compiling 10,000 rules ≤ 1 s.

#[path = "../tests/datapath_support/mod.rs"]
mod datapath_support;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use datapath_support::{SYN, tcp};
use flow_agent::datapath::{Datapath, DatapathConfig, TcProgram};
use flow_agent::endpoints::Endpoints;
use flow_agent::policy::{self, CidrIdentities, PolicyEngine};

const GOAL_DELTA_NS: f64 = 20.0;
const GOAL_COMPILE: Duration = Duration::from_secs(1);
const CLIENTS: usize = 100;

/// A server on this node and 100 client identities elsewhere.
fn endpoints() -> Endpoints {
    let mut y = String::from(
        "endpoints:\n  - {name: server, namespace: shop, labels: {app: server}, ips: [198.18.0.1], node: n1}\n",
    );
    for i in 0..CLIENTS {
        let _ = writeln!(
            y,
            "  - {{name: c{i}, namespace: shop, labels: {{app: c{i}}}, ips: [198.18.{}.{}], node: n2}}",
            1 + i / 200,
            1 + i % 200
        );
    }
    Endpoints::parse(&y, "bench-endpoints", "n1").expect("endpoints")
}

/// `n` rules: rule i allows client i % 100 to the server on TCP port 1000 + i.
fn rules(n: usize) -> String {
    let mut y = String::new();
    for i in 0..n {
        let _ = write!(
            y,
            "---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: r{i}, namespace: shop}}\nspec:\n  endpointSelector: {{matchLabels: {{app: server}}}}\n  ingress:\n    - fromEndpoints: [{{matchLabels: {{app: c{}}}}}]\n      toPorts: [{{ports: [{{port: \"{}\", protocol: TCP}}]}}]\n",
            i % CLIENTS,
            1000 + i
        );
    }
    y
}

/// A CiliumNetworkPolicy selecting the server, with one ingress entry.
fn cnp(y: &mut String, name: &str, ingress: &str) {
    let _ = write!(
        y,
        "---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  endpointSelector: {{matchLabels: {{app: server}}}}\n  ingress:\n    - {ingress}\n"
    );
}

/// Rule i of the range filler: client i % 100 to a 5-port range of its own (blocks in the trie).
fn range_rule(i: usize) -> String {
    let lo = 1000 + 7 * (i / CLIENTS);
    format!(
        "{{fromEndpoints: [{{matchLabels: {{app: c{}}}}}], toPorts: [{{ports: [{{port: \"{lo}\", endPort: {}, protocol: TCP}}]}}]}}",
        i % CLIENTS,
        lo + 4
    )
}

/// Rule kinds beside exact ports (before the hash layout, LPM tries answered them).
#[derive(Debug, Clone, Copy)]
enum TrieKind {
    /// `port` + `endPort`: client 0 to 1000..=1004; the probe asks for 1002.
    PortRange,
    /// No `toPorts` (every port of client 0): the probe asks for a port no range covers.
    AnyPort,
    /// No peer (`toPorts` only, the wildcard identity): a range 40000..=40009 from anyone; the
    /// probe (client 0 to 40005) finds nothing of client 0's at 40005, then the wildcard's range.
    AnyPeer,
    /// `fromCIDR` /30s in 198.19.0.0/16 (a CIDR identity each, in the ipcache), each
    /// with a port; the probe comes from 198.19.0.1 to port 1000.
    Cidr,
}

impl TrieKind {
    const ALL: [TrieKind; 4] = [
        TrieKind::PortRange,
        TrieKind::AnyPort,
        TrieKind::AnyPeer,
        TrieKind::Cidr,
    ];

    fn name(self) -> &'static str {
        match self {
            TrieKind::PortRange => "port_range",
            TrieKind::AnyPort => "any_port",
            TrieKind::AnyPeer => "any_peer",
            TrieKind::Cidr => "cidr",
        }
    }

    /// `n` rules: the one the probe hits, and n - 1 more of the same kind.
    fn rules(self, n: usize) -> String {
        let mut y = String::new();
        match self {
            TrieKind::PortRange => {
                for i in 0..n {
                    cnp(&mut y, &format!("r{i}"), &range_rule(i));
                }
            }
            TrieKind::AnyPort | TrieKind::AnyPeer => {
                let hit = match self {
                    TrieKind::AnyPort => "fromEndpoints: [{matchLabels: {app: c0}}]",
                    _ => "toPorts: [{ports: [{port: \"40000\", endPort: 40009, protocol: TCP}]}]",
                };
                cnp(&mut y, "hit", &format!("{{{hit}}}"));
                for i in 1..n {
                    cnp(&mut y, &format!("r{i}"), &range_rule(i));
                }
            }
            TrieKind::Cidr => {
                for i in 0..n {
                    let a = 4 * i;
                    cnp(
                        &mut y,
                        &format!("r{i}"),
                        &format!(
                            "{{fromCIDR: [198.19.{}.{}/30], toPorts: [{{ports: [{{port: \"{}\", protocol: TCP}}]}}]}}",
                            a / 256,
                            a % 256,
                            1000 + i % 1000
                        ),
                    );
                }
            }
        }
        y
    }

    fn probe(self) -> Vec<u8> {
        match self {
            TrieKind::PortRange => tcp("198.18.1.1", 40000, "198.18.0.1", 1002, SYN, 1, b""),
            TrieKind::AnyPort => tcp("198.18.1.1", 40000, "198.18.0.1", 30000, SYN, 1, b""),
            TrieKind::AnyPeer => tcp("198.18.1.1", 40000, "198.18.0.1", 40005, SYN, 1, b""),
            TrieKind::Cidr => tcp("198.19.0.1", 40000, "198.18.0.1", 1000, SYN, 1, b""),
        }
    }
}

fn ns_per_pkt(dp: &Datapath, prog: TcProgram, pkt: &[u8]) -> f64 {
    (0..5)
        .map(|_| {
            dp.test_run(prog, pkt, 1_000_000)
                .expect("test_run")
                .1
                .as_nanos() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let eps = endpoints();
    let cfg = DatapathConfig {
        kernel_drops: false,
        ..DatapathConfig::default()
    };
    // client 0 -> server:1000, allowed by rule 0 at every size.
    let pkt = tcp("198.18.1.1", 40000, "198.18.0.1", 1000, SYN, 1, b"");
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300))
        .configure_from_args();

    let mut results = Vec::new();
    let mut baseline = None;
    for n in [0usize, 1, 100, 10_000] {
        let mut dp = Datapath::load(cfg.clone()).expect("load datapath (needs root and BPF)");
        let parsed = policy::parse(&rules(n), "bench.yaml").expect("rules parse");
        let mut engine = PolicyEngine::new();
        let report = engine
            .apply(&mut dp, &eps, Arc::new(parsed), |_| {})
            .expect("install");
        let (rc, _) = dp.test_run(TcProgram::PolicyProbe, &pkt, 1).unwrap();
        assert_eq!(rc, -1, "rule 0 allows the probe packet");
        if baseline.is_none() {
            baseline = Some(ns_per_pkt(&dp, TcProgram::Empty, &pkt));
        }
        let mut g = c.benchmark_group("policy_lookup_per_packet");
        g.bench_function(format!("{n}_rules"), |b| {
            b.iter_custom(|iters| {
                let repeat = iters.clamp(1, u64::from(u32::MAX)) as u32;
                let (_, mean) = dp.test_run(TcProgram::PolicyProbe, &pkt, repeat).unwrap();
                mean * repeat
            })
        });
        g.finish();
        results.push((
            n,
            ns_per_pkt(&dp, TcProgram::PolicyProbe, &pkt),
            report.entries,
        ));
    }

    // The other rule kinds, with 1 and 10,000 rules, against exact ports of the same count.
    let mut kinds = Vec::new();
    for kind in TrieKind::ALL {
        for n in [1usize, 10_000] {
            let mut dp = Datapath::load(cfg.clone()).expect("load datapath");
            let parsed = policy::parse(&kind.rules(n), "bench.yaml").expect("rules parse");
            let report = PolicyEngine::new()
                .apply(&mut dp, &eps, Arc::new(parsed), |_| {})
                .expect("install");
            let probe = kind.probe();
            let (rc, _) = dp.test_run(TcProgram::PolicyProbe, &probe, 1).unwrap();
            assert_eq!(rc, -1, "{kind:?} with {n} rules allows the probe packet");
            let mut g = c.benchmark_group("policy_lookup_per_packet");
            g.bench_function(format!("{}_{n}_rules", kind.name()), |b| {
                b.iter_custom(|iters| {
                    let repeat = iters.clamp(1, u64::from(u32::MAX)) as u32;
                    let (_, mean) = dp.test_run(TcProgram::PolicyProbe, &probe, repeat).unwrap();
                    mean * repeat
                })
            });
            g.finish();
            kinds.push((
                kind,
                n,
                ns_per_pkt(&dp, TcProgram::PolicyProbe, &probe),
                report.entries,
            ));
        }
    }

    // Compile time of 10,000 rules, on its own (the install above includes it).
    let parsed = policy::parse(&rules(10_000), "bench.yaml").unwrap();
    let t = Instant::now();
    let compiled = policy::compile(&parsed, &eps, &CidrIdentities::default(), 1).unwrap();
    let compile = t.elapsed();
    let mut dp = Datapath::load(cfg).unwrap();
    let t = Instant::now();
    dp.install_policy(&compiled).unwrap();
    let install = t.elapsed();

    let empty = baseline.unwrap_or(0.0);
    let one = results
        .iter()
        .find(|r| r.0 == 1)
        .map(|r| r.1)
        .unwrap_or(0.0);
    println!("\npolicy lookup per packet (BPF_PROG_TEST_RUN, best of 5 x 1M runs):");
    println!("  empty classifier (harness)       {empty:8.1} ns");
    for (n, ns, entries) in &results {
        println!(
            "  probe, {n:>6} rules ({entries:>6} entries) {ns:8.1} ns  = {:5.2}x 1 rule, {:+6.1} ns vs 1 rule",
            ns / one,
            ns - one
        );
    }
    let big = results
        .iter()
        .find(|r| r.0 == 10_000)
        .map(|r| r.1)
        .unwrap_or(0.0);
    let delta = big - one;
    println!(
        "  10,000 vs 1 rule: {delta:+.1} ns (goal <= +{GOAL_DELTA_NS} ns): {}",
        if delta <= GOAL_DELTA_NS {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("other rule kinds, against exact ports of the same count:");
    for (kind, n, ns, entries) in &kinds {
        let exact = results
            .iter()
            .find(|r| r.0 == *n)
            .map(|r| r.1)
            .unwrap_or(f64::NAN);
        let one_of_kind = kinds
            .iter()
            .find(|k| k.0.name() == kind.name() && k.1 == 1)
            .map(|k| k.2)
            .unwrap_or(f64::NAN);
        println!(
            "  {:<10} {n:>6} rules ({entries:>6} entries) {ns:8.1} ns  = {:5.2}x exact port, {:+6.1} ns vs 1 rule of its kind",
            kind.name(),
            ns / exact,
            ns - one_of_kind
        );
    }
    let worst = kinds
        .iter()
        .filter(|k| k.1 == 10_000)
        .map(|k| {
            let one = kinds
                .iter()
                .find(|o| o.0.name() == k.0.name() && o.1 == 1)
                .map(|o| o.2)
                .unwrap_or(f64::NAN);
            (k.0.name(), k.2 - one)
        })
        .fold(
            ("", f64::NEG_INFINITY),
            |a, b| if b.1 > a.1 { b } else { a },
        );
    println!(
        "  worst 10,000 vs 1 rule of a kind: {} {:+.1} ns (goal <= +{GOAL_DELTA_NS} ns): {}",
        worst.0,
        worst.1,
        if worst.1 <= GOAL_DELTA_NS {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "compile 10,000 rules: {:.1} ms ({} entries; goal <= {} ms): {}; install into the map: {:.1} ms",
        compile.as_secs_f64() * 1e3,
        compiled.entries.len(),
        GOAL_COMPILE.as_millis(),
        if compile <= GOAL_COMPILE {
            "met"
        } else {
            "NOT met"
        },
        install.as_secs_f64() * 1e3
    );
}

//! Cost of the policy lookup per packet with 1, 100 and 10,000 rules (BPF_PROG_TEST_RUN,
//! kernel-measured, the policy probe program: parse, ipcache, both policy lookups), against an
//! empty classifier and the probe with no policy installed, in the same run; and the time to
//! compile (and install) 10,000 rules. Needs root.
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

//! Filter evaluation on realistic flows: L3/L4 and L7 (HTTP, DNS) mixed, 5 Kubernetes-style
//! labels per endpoint; 64 flows that stay in cache, and a 4096-flow ring that does not. Prints
//! ns/flow per case, the ratio to the issue's goal, the speed-up over Hubble's Go code (measured
//! on this kind of machine) and the cost above an empty filter measured in the same run.
//!
//! `cargo bench -p flow-filter --bench filter`

use std::cell::RefCell;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flow_filter::FlowFilters;
use webb_proto::flow::{
    CiliumEventType, Dns, Endpoint, Flow, FlowFilter, FlowType, Http, HttpHeader, Ip, IpVersion,
    Layer4, Layer7, Service, Tcp, TcpFlags, TrafficDirection, Udp, Verdict, Workload,
    layer4::Protocol, layer7::Record,
};
use webb_proto::pbjson_types::BoolValue;

const RING_FLOWS: usize = 4096;
const HOT_FLOWS: usize = 64;

/// Deterministic xorshift, so every run filters the same flows.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const APPS: &[(&str, &str, &str)] = &[
    ("shop", "web", "Deployment"),
    ("shop", "api", "Deployment"),
    ("shop", "db", "StatefulSet"),
    ("payments", "ledger", "Deployment"),
    ("payments", "cache", "StatefulSet"),
    ("kube-system", "coredns", "Deployment"),
    ("default", "curl", "Pod"),
];

fn endpoint(rng: &mut Rng, i: usize) -> Endpoint {
    let (ns, app, kind) = *rng.pick(APPS);
    let mut labels = vec![
        format!("k8s:app={app}"),
        "k8s:io.cilium.k8s.policy.cluster=default".to_string(),
        format!("k8s:io.cilium.k8s.policy.serviceaccount={app}"),
        format!("k8s:io.kubernetes.pod.namespace={ns}"),
        format!("k8s:app.kubernetes.io/name={app}"),
    ];
    labels.sort(); // Hubble sends endpoint labels sorted
    Endpoint {
        id: 100 + i as u32 % 500,
        identity: 10_000 + (app.len() as u32) * 7,
        namespace: ns.into(),
        labels,
        pod_name: format!("{app}-{:05x}-{:05x}", rng.next() % 0xfffff, i),
        workloads: vec![Workload {
            name: app.into(),
            kind: kind.into(),
        }],
        cluster_name: "default".into(),
    }
}

fn flow(rng: &mut Rng, i: usize) -> Flow {
    let source = endpoint(rng, i);
    let destination = endpoint(rng, i + 1);
    let sport = 32768 + (rng.next() % 28000) as u32;
    let dport = *rng.pick(&[80u32, 443, 5432, 6379, 8080, 9090]);
    let kind = rng.next() % 10;
    let (l4, l7, r#type, event) = match kind {
        // 40% HTTP (L7), 20% DNS (L7), 40% TCP/UDP (L3/L4)
        0..=3 => (
            Protocol::Tcp(Tcp {
                source_port: sport,
                destination_port: 8080,
                flags: None,
            }),
            Some(Record::Http(Http {
                code: *rng.pick(&[200, 200, 200, 201, 404, 503]),
                method: rng.pick(&["GET", "GET", "POST", "PUT"]).to_string(),
                url: format!(
                    "http://{}.svc:8080/api/v1/items/{}",
                    destination.pod_name, i
                ),
                protocol: "HTTP/1.1".into(),
                headers: vec![HttpHeader {
                    key: "user-agent".into(),
                    value: "webb-bench/1".into(),
                }],
            })),
            FlowType::L7,
            129,
        ),
        4..=5 => (
            Protocol::Udp(Udp {
                source_port: sport,
                destination_port: 53,
            }),
            Some(Record::Dns(Dns {
                query: format!("{}.shop.svc.cluster.local.", rng.pick(APPS).1),
                qtypes: vec!["A".into()],
                ..Default::default()
            })),
            FlowType::L7,
            129,
        ),
        _ => (
            Protocol::Tcp(Tcp {
                source_port: sport,
                destination_port: dport,
                flags: Some(TcpFlags {
                    syn: true,
                    ack: rng.chance(50),
                    ..Default::default()
                }),
            }),
            None,
            FlowType::L3L4,
            4,
        ),
    };
    let dropped = rng.chance(10);
    Flow {
        uuid: format!("5a0b{i:028x}"),
        verdict: if dropped {
            Verdict::Dropped
        } else {
            Verdict::Forwarded
        } as i32,
        ip: Some(Ip {
            source: format!("198.18.{}.{}", i % 200, 1 + i % 250),
            destination: format!("198.19.{}.{}", (i / 7) % 200, 1 + (i / 3) % 250),
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 { protocol: Some(l4) }),
        l7: l7.map(|record| Layer7 {
            r#type: 1,
            latency_ns: 0,
            record: Some(record),
        }),
        source_service: Some(Service {
            name: source.workloads[0].name.clone(),
            namespace: source.namespace.clone(),
        }),
        source: Some(source),
        destination: Some(destination),
        r#type: r#type as i32,
        node_name: format!("node-{}", i % 3),
        event_type: Some(CiliumEventType {
            r#type: if dropped { 1 } else { event },
            sub_type: 0,
        }),
        traffic_direction: TrafficDirection::Egress as i32,
        is_reply: Some(BoolValue {
            value: rng.chance(40),
        }),
        ..Default::default()
    }
}

fn filter(json: &str) -> FlowFilter {
    serde_json::from_str(json).expect("bench filter JSON")
}

struct Case {
    name: &'static str,
    whitelist: Vec<&'static str>,
    blacklist: Vec<&'static str>,
    /// (issue goal ns/flow, Hubble Go ns/flow) where the issue states them.
    reference: Option<(f64, f64)>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "empty (baseline)",
            whitelist: vec![],
            blacklist: vec![],
            reference: None,
        },
        Case {
            name: "3-field: pod prefix + verdict + port",
            whitelist: vec![
                r#"{"source_pod":["shop/web-"],"verdict":["FORWARDED"],"destination_port":["8080"]}"#,
            ],
            blacklist: vec![],
            reference: Some((15.0, 27.0)),
        },
        Case {
            name: "label selector: -l app=web (src or dst)",
            whitelist: vec![
                r#"{"source_label":["app=web"]}"#,
                r#"{"destination_label":["app=web"]}"#,
            ],
            blacklist: vec![],
            reference: Some((50.0, 718.0)),
        },
        Case {
            name: "label selector: k8s:app in (web,api), ns=shop, !canary",
            whitelist: vec![
                r#"{"source_label":["k8s:app in (web, api),k8s:io.kubernetes.pod.namespace=shop,!k8s:canary"]}"#,
            ],
            blacklist: vec![],
            reference: Some((50.0, 718.0)),
        },
        Case {
            name: "CLI mix: --from-pod shop/ --http-status 5+ --not -t drop",
            whitelist: vec![r#"{"source_pod":["shop/"],"http_status_code":["5+"]}"#],
            blacklist: vec![r#"{"event_type":[{"type":1}]}"#],
            reference: None,
        },
        Case {
            name: "regex: http_path ^/api/v1/items/1",
            whitelist: vec![r#"{"http_path":["^/api/v1/items/1"]}"#],
            blacklist: vec![],
            reference: None,
        },
    ]
}

struct Measured {
    name: &'static str,
    ns_per_flow: Option<f64>,
    /// Percentage of flows the filters let through.
    selected: f64,
    reference: Option<(f64, f64)>,
}

/// `None` when criterion skipped the case (a name filter on the command line).
fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied()
}

/// CPU time of this thread. The machine's two cores are shared with builds, so wall time would
/// mostly measure the scheduler; thread CPU time leaves out the time we are not running.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is available on Linux");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs every case over `flows` under criterion and returns ns/flow (median of its samples).
fn run_set(c: &mut Criterion, set: &str, flows: &[Flow]) -> Vec<Measured> {
    let mut results = Vec::new();
    let mut group = c.benchmark_group(format!("flow-filter/{set}"));
    group.throughput(Throughput::Elements(flows.len() as u64));
    for case in cases() {
        let w: Vec<_> = case.whitelist.iter().map(|j| filter(j)).collect();
        let b: Vec<_> = case.blacklist.iter().map(|j| filter(j)).collect();
        let filters = FlowFilters::compile(&w, &b).expect("bench filters compile");
        let selected = flows.iter().filter(|f| filters.matches(f)).count();
        // ns/flow of every sample criterion takes, for the summary printed at the end.
        let samples = RefCell::new(Vec::new());
        group.bench_function(case.name, |bencher| {
            bencher.iter_custom(|iters| {
                let start = thread_cpu_time();
                for _ in 0..iters {
                    let mut n = 0usize;
                    for f in flows {
                        n += usize::from(filters.matches(black_box(f)));
                    }
                    black_box(n);
                }
                let elapsed = thread_cpu_time() - start;
                samples
                    .borrow_mut()
                    .push(elapsed.as_nanos() as f64 / (iters as f64 * flows.len() as f64));
                elapsed
            })
        });
        results.push(Measured {
            name: case.name,
            ns_per_flow: median(samples.into_inner()),
            selected: 100.0 * selected as f64 / flows.len() as f64,
            reference: case.reference,
        });
    }
    group.finish();
    results
}

fn print_set(title: &str, results: &[Measured]) {
    let baseline = results[0].ns_per_flow.unwrap_or(0.0);
    println!("\n{title}");
    println!(
        "  {:<56} {:>8} {:>9} {:>8} {:>12} {:>9}",
        "case", "ns/flow", "-baseline", "selected", "goal (ratio)", "vs Hubble"
    );
    for m in results {
        let Some(ns_per_flow) = m.ns_per_flow else {
            println!("  {:<56} (not run)", m.name);
            continue;
        };
        let (goal, hubble) = match m.reference {
            Some((goal, go)) => (
                format!("{goal:.0} ({:.2})", ns_per_flow / goal),
                format!("{:.1}x", go / ns_per_flow),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "  {:<56} {:>8.2} {:>9.2} {:>8} {:>12} {:>9}",
            m.name,
            ns_per_flow,
            ns_per_flow - baseline,
            format!("{:.1}%", m.selected),
            goal,
            hubble
        );
    }
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let ring: Vec<Flow> = (0..RING_FLOWS).map(|i| flow(&mut rng, i)).collect();
    // Hubble's Go figures come from one flow evaluated over and over, i.e. from cache; the
    // hot set is comparable to them, the ring set is what a buffer of recent flows costs.
    let hot = ring[..HOT_FLOWS].to_vec();
    let hot_results = run_set(c, "hot", &hot);
    let ring_results = run_set(c, "ring", &ring);
    print_set(
        &format!(
            "flow-filter, {HOT_FLOWS} flows in cache (thread CPU time, median of criterion samples):"
        ),
        &hot_results,
    );
    print_set(
        &format!(
            "flow-filter, {RING_FLOWS} flows, a ring's worth (thread CPU time, median of criterion samples):"
        ),
        &ring_results,
    );
    println!(
        "(goal ratio < 1 meets the issue's goal; 'vs Hubble' = Hubble's Go ns/flow / ours; \
         -baseline = minus the empty filter)"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);

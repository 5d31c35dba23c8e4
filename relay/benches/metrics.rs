//! Metric updates per second per core for full flows with 6 context labels (goal ≥ 2 M/s),
//! against a baseline measured in the same run: prometheus-client's own `Family` keyed by
//! owned `Vec<(String, String)>` label sets (what a straightforward port would do). Also
//! prints heap allocations per observed flow (the hot path should make none).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use relay::metrics::{Metrics, MetricsConfig};
use webb_proto::flow::*;
use webb_proto::sample;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static A: Counting = Counting;

const GOAL: f64 = 2_000_000.0;
const CTX: &str = "labelsContext=source_namespace,source_workload,source_pod,destination_namespace,destination_workload,traffic_direction";

/// 64 distinct forwarded TCP SYN trace flows between 8 client pods and 8 servers.
fn flows() -> Vec<Flow> {
    (0..64)
        .map(|i| Flow {
            verdict: Verdict::Forwarded as i32,
            ip: Some(Ip {
                source: format!("198.18.0.{}", 10 + i % 8),
                destination: format!("198.18.1.{}", 10 + i / 8),
                ip_version: IpVersion::IPv4 as i32,
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(layer4::Protocol::Tcp(Tcp {
                    source_port: 40000 + i as u32,
                    destination_port: 8080,
                    flags: Some(TcpFlags {
                        syn: true,
                        ..Default::default()
                    }),
                })),
            }),
            source: Some(sample::pod(
                "web",
                &format!("frontend-7d4f9-{:05}", i % 8),
                "frontend",
            )),
            destination: Some(sample::pod(
                "store",
                "api-5c6b7-q8w7e",
                &format!("api{}", i / 8),
            )),
            event_type: Some(CiliumEventType {
                r#type: 4,
                sub_type: 3,
            }),
            traffic_direction: TrafficDirection::Egress as i32,
            is_reply: Some(false.into()),
            ..Default::default()
        })
        .collect()
}

/// flow, tcp and port-distribution each count a forwarded SYN: 3 metric updates per flow.
const UPDATES_PER_FLOW: f64 = 3.0;

fn webb_metrics() -> Metrics {
    let spec =
        format!("flow:{CTX} drop:{CTX} tcp:{CTX} port-distribution:{CTX} icmp:{CTX} policy:{CTX}");
    Metrics::new(&MetricsConfig::from_flag(&spec).unwrap()).unwrap()
}

type Baseline = Family<Vec<(String, String)>, Counter>;

/// The same three updates through prometheus-client's `Family`, allocating label sets per flow.
fn baseline(fams: &[Baseline; 3], f: &Flow) {
    let s = f.source.as_ref().unwrap();
    let d = f.destination.as_ref().unwrap();
    let ctx = [
        ("source_namespace", s.namespace.clone()),
        ("source_workload", s.workloads[0].name.clone()),
        ("source_pod", s.pod_name.clone()),
        ("destination_namespace", d.namespace.clone()),
        ("destination_workload", d.workloads[0].name.clone()),
        ("traffic_direction", "egress".to_string()),
    ];
    let own: [&[(&str, &str)]; 3] = [
        &[
            ("protocol", "TCP"),
            ("type", "Trace"),
            ("subtype", "to-stack"),
            ("verdict", "FORWARDED"),
        ],
        &[("flag", "SYN"), ("family", "IPv4")],
        &[("protocol", "TCP"), ("port", "8080")],
    ];
    for (fam, own) in fams.iter().zip(own) {
        let mut labels: Vec<(String, String)> = own
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.extend(ctx.iter().map(|(k, v)| (k.to_string(), v.clone())));
        fam.get_or_create(&labels).inc();
    }
}

fn measure(mut f: impl FnMut(), n: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed()
}

fn bench(c: &mut Criterion) {
    let flows = flows();
    let m = webb_metrics();
    let fams: [Baseline; 3] = Default::default();
    for f in &flows {
        m.observe(f);
        baseline(&fams, f);
    }
    let mut g = c.benchmark_group("metrics");
    g.throughput(Throughput::Elements(flows.len() as u64));
    g.bench_function("webb_observe_64_flows", |b| {
        b.iter(|| {
            for f in &flows {
                m.observe(black_box(f));
            }
        })
    });
    g.bench_function("baseline_family_64_flows", |b| {
        b.iter(|| {
            for f in &flows {
                baseline(&fams, black_box(f));
            }
        })
    });
    g.finish();

    // Summary in the same run, single thread (= one core).
    let rounds = 20_000u64;
    let a0 = ALLOCS.load(Ordering::Relaxed);
    let webb = measure(
        || flows.iter().for_each(|f| m.observe(black_box(f))),
        rounds,
    );
    let allocs =
        (ALLOCS.load(Ordering::Relaxed) - a0) as f64 / (rounds as f64 * flows.len() as f64);
    let base = measure(
        || flows.iter().for_each(|f| baseline(&fams, black_box(f))),
        rounds,
    );
    let n = rounds as f64 * flows.len() as f64;
    let per = |d: Duration| d.as_secs_f64() * 1e9 / n;
    let ups = |d: Duration| n * UPDATES_PER_FLOW / d.as_secs_f64();
    println!(
        "metrics: webb {:.0} ns/flow = {:.2} M updates/s/core ({:.2}x goal {:.0} M/s), {allocs:.3} allocations/flow",
        per(webb),
        ups(webb) / 1e6,
        ups(webb) / GOAL,
        GOAL / 1e6
    );
    println!(
        "metrics: baseline prometheus-client Family {:.0} ns/flow = {:.2} M updates/s/core; webb is {:.1}x faster",
        per(base),
        ups(base) / 1e6,
        base.as_secs_f64() / webb.as_secs_f64()
    );
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    bench(&mut c);
    c.final_summary();
}

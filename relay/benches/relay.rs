//! Relay stage throughput: the time-ordered merge (goal ≥ 1 M flows/s/core), printed with its
//! ratio to the goal and to a baseline measured in the same run (a plain sort of the same
//! flows). The L7 stage's HTTP throughput is `webb-l7`'s `http` bench.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use relay::merge::{SortBuffer, Timed};
use webb_proto::Timestamp;
use webb_proto::flow::{Endpoint, Flow};
use webb_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};

// The same allocator as the webb-relay binary.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MERGE_GOAL: f64 = 1_000_000.0;
const PEERS: u64 = 8;

fn endpoint(pod: &str) -> Endpoint {
    Endpoint {
        identity: 12345,
        namespace: "shop".into(),
        pod_name: pod.into(),
        labels: vec![
            format!("k8s:app={pod}"),
            "k8s:io.kubernetes.pod.namespace=shop".into(),
        ],
        ..Default::default()
    }
}

/// Flows from `PEERS` nodes, each in order, interleaved with the jitter streams really have.
fn merge_input(n: usize) -> Vec<GetFlowsResponse> {
    (0..n as u64)
        .map(|i| {
            let peer = i % PEERS;
            let t = 1_800_000_000_000_000_000 + i * 1_000 + (peer * 7_919) % 50_000;
            let time = Some(Timestamp::from_unix_nanos(t));
            let node = format!("vn{peer}");
            GetFlowsResponse {
                node_name: node.clone(),
                time,
                response_types: Some(ResponseTypes::Flow(Flow {
                    time,
                    node_name: node,
                    source: Some(endpoint("a")),
                    ..Default::default()
                })),
            }
        })
        .collect()
}

fn merge_all(input: Vec<GetFlowsResponse>) -> usize {
    let mut buffer = SortBuffer::new(100);
    let mut out = 0usize;
    for r in input {
        if let Some(o) = buffer.push(r) {
            black_box(&o);
            out += 1;
        }
    }
    let mut rest = Vec::new();
    buffer.drain(&mut rest);
    out + rest.len()
}

fn sort_all(mut input: Vec<GetFlowsResponse>) -> usize {
    input.sort_by_key(|r| r.time_ns());
    black_box(&input);
    input.len()
}

fn criterion_benches(c: &mut Criterion) {
    let merge = merge_input(10_000);
    let mut g = c.benchmark_group("merge");
    g.throughput(Throughput::Elements(merge.len() as u64));
    g.bench_function("sort_buffer_100", |b| {
        b.iter_batched(|| merge.clone(), merge_all, BatchSize::LargeInput)
    });
    g.bench_function("baseline_vec_sort", |b| {
        b.iter_batched(|| merge.clone(), sort_all, BatchSize::LargeInput)
    });
    g.finish();
}

const ROUNDS: usize = 7;

/// Items per second of `f` over `items`, the median of a few rounds (setup, and dropping
/// what `f` leaves of its input, not timed).
fn rate<I>(items: usize, mut setup: impl FnMut() -> I, mut f: impl FnMut(&mut I) -> usize) -> f64 {
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let mut input = setup();
            let start = Instant::now();
            black_box(f(&mut input));
            start.elapsed()
        })
        .collect();
    times.sort();
    items as f64 / times[ROUNDS / 2].as_secs_f64()
}

fn summary() {
    let merge = merge_input(200_000);
    let merged = rate(
        merge.len(),
        || merge.clone(),
        |m| merge_all(std::mem::take(m)),
    );
    let sorted = rate(
        merge.len(),
        || merge.clone(),
        |m| sort_all(std::mem::take(m)),
    );

    println!("\nrelay stage throughput (one core, median of {ROUNDS} rounds):");
    println!(
        "  merge (sort buffer 100, {PEERS} peers): {:>6.0} ns/flow  {:>5.2} M flows/s  = {:.2}x goal (1 M)  {:.2}x of plain Vec sort ({:.2} M/s)",
        1e9 / merged,
        merged / 1e6,
        merged / MERGE_GOAL,
        merged / sorted,
        sorted / 1e6
    );
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
    summary();
}

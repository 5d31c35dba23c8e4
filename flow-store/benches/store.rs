//! flow-store costs against the goals of the flow-store issue:
//! - ingest into Parquet (Arrow build + zstd Parquet, what the writer thread does per flow):
//!   goal >= 1 M flows/s/core;
//! - bytes per flow on disk: goal <= 20;
//! - "last hour of one pod" (goal p90 <= 100 ms) and "24 h service map" (goal <= 1 s), over
//!   as many flows as fit in a bounded build time (the goal names 100 M; the number used is
//!   printed).
//!
//! Baseline measured in the same run: protobuf encoding of the same flows (what storing the
//! wire format would cost), ns/flow and bytes/flow.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use flow_store::generator::FlowGenerator;
use flow_store::{FlowBatchBuilder, FlowStore, StoreConfig};
use prost::Message;
use webb_proto::Timestamp;
use webb_proto::flow::Flow;

const BATCH: usize = 8192;
const START: i64 = 1_795_820_400; // 2026-11-27T23:00:00Z

fn corpus(n: usize, rate: u64) -> Vec<Flow> {
    FlowGenerator::new(
        2000,
        Timestamp {
            seconds: START,
            nanos: 0,
        },
        rate,
    )
    .batch(0, n)
}

fn props() -> parquet::file::properties::WriterProperties {
    StoreConfig::new("unused").writer_properties()
}

/// Arrow build + zstd Parquet of `flows` into memory; returns the file.
fn ingest_file(flows: &[Flow]) -> Vec<u8> {
    let mut b = FlowBatchBuilder::new();
    let mut batches = Vec::new();
    for chunk in flows.chunks(BATCH) {
        for f in chunk {
            b.append(f);
        }
        batches.push(b.finish());
    }
    flow_store::write_parquet(&batches, Vec::new(), props()).expect("in-memory write")
}

fn ingest(flows: &[Flow]) -> usize {
    ingest_file(flows).len()
}

/// Compressed bytes per flow of the costliest columns of a file.
fn column_costs(file: Vec<u8>, n: usize) -> String {
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&bytes::Bytes::from(file))
        .expect("own file");
    let mut cost: std::collections::BTreeMap<String, i64> = Default::default();
    for rg in meta.row_groups() {
        for c in rg.columns() {
            let top = c.column_path().parts()[0].clone();
            *cost.entry(top).or_default() += c.compressed_size();
        }
    }
    let mut v: Vec<_> = cost.into_iter().collect();
    v.sort_by_key(|(_, b)| -b);
    v.iter()
        .take(10)
        .map(|(name, b)| format!("{name} {:.1}", *b as f64 / n as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bench(c: &mut Criterion) {
    let flows = corpus(BATCH, 2000);
    let mut g = c.benchmark_group("flow-store");
    g.throughput(Throughput::Elements(flows.len() as u64));
    g.bench_function("arrow build (per batch of 8192)", |bn| {
        let mut b = FlowBatchBuilder::new();
        bn.iter(|| {
            for f in &flows {
                b.append(f);
            }
            black_box(b.finish())
        })
    });
    g.bench_function("arrow + zstd parquet (per batch of 8192)", |bn| {
        bn.iter(|| black_box(ingest(&flows)))
    });
    g.bench_function("baseline: protobuf encode (per batch of 8192)", |bn| {
        let mut buf = Vec::new();
        bn.iter(|| {
            buf.clear();
            for f in &flows {
                f.encode_length_delimited(&mut buf).expect("Vec grows");
            }
            black_box(buf.len())
        })
    });
    g.finish();
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn summary() {
    println!("\nflow-store summary (one core for ingest; this run's profile, see below)");
    // Ingest and size.
    let n = 200_000;
    let flows = corpus(n, 2000);
    let t = Instant::now();
    let file = ingest_file(&flows);
    let bytes = file.len();
    let ingest_s = t.elapsed().as_secs_f64();
    let per_s = n as f64 / ingest_s;
    let t = Instant::now();
    let mut buf = Vec::new();
    for f in &flows {
        f.encode_length_delimited(&mut buf).expect("Vec grows");
    }
    let pb_s = t.elapsed().as_secs_f64();
    println!(
        "ingest (Arrow + zstd Parquet, 1 thread): {:.0} flows/s = {:.0} ns/flow; goal 1000000 flows/s -> {:.2}x of goal",
        per_s,
        1e9 / per_s,
        per_s / 1e6
    );
    println!(
        "  baseline protobuf encode: {:.0} ns/flow; Parquet ingest costs {:.1}x protobuf encoding",
        pb_s * 1e9 / n as f64,
        ingest_s / pb_s
    );
    println!(
        "bytes per flow (one file, {n} flows, 2000 pods, 60% L3/L4, 35% HTTP, 5% DNS): {:.1}; goal 20 -> {:.2}x of goal; protobuf {:.1} bytes/flow ({:.1}x larger)",
        bytes as f64 / n as f64,
        bytes as f64 / n as f64 / 20.0,
        buf.len() as f64 / n as f64,
        buf.len() as f64 / bytes as f64
    );

    println!("  costliest columns, bytes/flow: {}", column_costs(file, n));

    // Queries over a day of flows, built through the real store (24 hourly partitions).
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = FlowStore::open(StoreConfig {
        flush_interval: Duration::from_secs(3600),
        retention_age: None,
        queue_capacity: 1 << 16,
        ..StoreConfig::new(tmp.path())
    })
    .expect("store opens");
    let budget = Duration::from_secs(
        std::env::var("FLOW_STORE_BENCH_BUILD_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let target: usize = 4_000_000;
    let g = FlowGenerator::new(
        2000,
        Timestamp {
            seconds: START,
            nanos: 0,
        },
        (target as u64).div_ceil(86_400),
    );
    let t = Instant::now();
    let mut total = 0;
    while total < target && t.elapsed() < budget {
        for f in g.batch(total, 10_000) {
            store.append_blocking(f);
        }
        total += 10_000;
    }
    store.flush().expect("flush");
    let build = t.elapsed();
    let stats = store.stats();
    let end = g.time(total);
    println!(
        "query data set: {total} flows over {:.1} h in {} files, {:.1} bytes/flow on disk, built in {:.1}s through the store \
         (the goal's 100 M flows scaled down {:.0}x to fit the build budget)",
        (end.seconds - START) as f64 / 3600.0,
        stats.files,
        stats.bytes as f64 / total as f64,
        build.as_secs_f64(),
        100e6 / total as f64
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (ns, pod) = g.pod_name(8); // a server pod: it has traffic every hour
    let _ = ns;
    let last_hour = format!(
        "SELECT time, source_pod, destination_pod, verdict, summary FROM flows \
         WHERE time >= to_timestamp_seconds({}) AND (source_pod = '{pod}' OR destination_pod = '{pod}') \
         ORDER BY time DESC LIMIT 1000",
        end.seconds - 3600
    );
    let service_map = format!(
        "SELECT source_namespace, source_workload, destination_namespace, destination_workload, \
         count(*) AS flows, sum(CASE WHEN http_code >= 500 THEN 1 ELSE 0 END) AS errors, \
         approx_percentile_cont(l7_latency_ns, 0.5) AS p50, approx_percentile_cont(l7_latency_ns, 0.95) AS p95, \
         approx_percentile_cont(l7_latency_ns, 0.99) AS p99, sum(CASE WHEN verdict = 'DROPPED' THEN 1 ELSE 0 END) AS drops \
         FROM flows WHERE time >= to_timestamp_seconds({}) GROUP BY 1, 2, 3, 4",
        end.seconds - 86_400
    );
    let run = |name: &str, q: &str, reps: usize, goal_ms: f64| {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..reps {
            let t = Instant::now();
            let r = rt.block_on(store.sql(q)).expect("bench query runs");
            times.push(t.elapsed());
            rows = r.rows.len();
        }
        let p50 = percentile(&mut times, 0.5);
        let p90 = percentile(&mut times, 0.9);
        println!(
            "{name}: p50 {:.1} ms, p90 {:.1} ms ({rows} rows, {reps} runs); goal {goal_ms} ms -> p90 is {:.2}x of goal",
            p50.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3 / goal_ms
        );
    };
    run("last hour of one pod", &last_hour, 20, 100.0);
    run("24h service map", &service_map, 5, 1000.0);
    println!(
        "build: {} (`cargo bench` is release; `--profile dev` builds deps at opt-level 1)",
        if cfg!(debug_assertions) {
            "debug assertions on"
        } else {
            "debug assertions off"
        }
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}

//! Relay stage throughput: the time-ordered merge (goal ≥ 1 M flows/s/core) and the L7 stage,
//! HTTP parse + pair (goal ≥ 2 M messages/s/core for ~300-byte heads). Each is printed with
//! its ratio to the goal and to a baseline measured in the same run (a plain sort of the same
//! flows; bare httparse over the same heads).
//!
//! The L7 stage is measured as the pipeline runs it: one long-lived stage, fed owned packet
//! flows whose `webb.v1.FlowExtras` carries the captured payload, on keep-alive connections
//! whose sequence numbers keep advancing from batch to batch; every flow it emits (the packet
//! flow without payload, then the L7 flows) is handed on and dropped, as the sink does. Flows
//! come in batches of `CHUNK` exchanges made just before they are timed, so that they are as
//! warm in cache as flows the merge has just released; a backlog of 100,000 two-kilobyte flows
//! made up front would measure the memory bus instead of the stage.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use relay::l7::{HttpConfig, HttpStage, L7Stage};
use relay::merge::{SortBuffer, Timed};
use webb_proto::Timestamp;
use webb_proto::flow::{
    Endpoint, Flow, Ip, IpVersion, Layer4, NetworkInterface, Tcp, TrafficDirection, Verdict, layer4,
};
use webb_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use webb_proto::webb_v1::{CapturedPayload, FlowExtras};

// The same allocator as the webb-relay binary.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MERGE_GOAL: f64 = 1_000_000.0;
const HTTP_GOAL: f64 = 2_000_000.0;
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

fn tcp_packet(client_port: u32, from_server: bool, t: u64) -> Flow {
    let (c, s) = ("198.18.1.10".to_string(), "198.18.2.20".to_string());
    let (src, dst, sp, dp) = if from_server {
        (s, c, 8080, client_port)
    } else {
        (c, s, client_port, 8080)
    };
    Flow {
        time: Some(Timestamp::from_unix_nanos(t)),
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: src,
            destination: dst,
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: sp,
                destination_port: dp,
                flags: None,
            })),
        }),
        source: Some(endpoint(if from_server { "api" } else { "web" })),
        destination: Some(endpoint(if from_server { "web" } else { "api" })),
        node_name: "vn1".into(),
        interface: Some(NetworkInterface {
            index: 4,
            name: "lxc1".into(),
        }),
        traffic_direction: TrafficDirection::Ingress as i32,
        ..Default::default()
    }
}

const REQUEST: &[u8] = b"GET /api/v1/items/12345?expand=true HTTP/1.1\r\nHost: api.shop.svc.cluster.local:8080\r\nUser-Agent: Go-http-client/1.1\r\nAccept: application/json\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nAccept-Encoding: gzip\r\nX-Request-Id: 7f9c2b1e-4a7d-4c55-9d1b-2f6e8c3a1b90\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 18\r\nDate: Sat, 28 Nov 2026 00:00:00 GMT\r\nServer: shop-api/1.4\r\nCache-Control: no-store\r\nX-Request-Id: 7f9c2b1e-4a7d-4c55-9d1b-2f6e8c3a1b90\r\nVary: Accept-Encoding\r\n\r\n{\"id\":12345,\"n\":1}";

const CONNECTIONS: usize = 64;

/// Request/response exchanges on keep-alive connections, continuing where the last batch
/// ended (time and sequence numbers advance), so a long-lived stage sees one endless stream.
struct Traffic {
    /// Next sequence number of (client, server) on each connection.
    seq: Vec<(u32, u32)>,
    exchanges: u64,
}

impl Traffic {
    fn new() -> Self {
        Traffic {
            seq: vec![(1, 1); CONNECTIONS],
            exchanges: 0,
        }
    }

    /// The next `exchanges` request/response pairs: (packet, payload) in time order.
    fn next(&mut self, exchanges: usize) -> Vec<(Flow, CapturedPayload)> {
        let mut v = Vec::with_capacity(exchanges * 2);
        for _ in 0..exchanges {
            let i = self.exchanges;
            self.exchanges += 1;
            let conn = i as usize % CONNECTIONS;
            let port = 40_000 + conn as u32;
            let t = 1_800_000_000_000_000_000 + i * 10_000;
            for (from_server, bytes) in [(false, REQUEST), (true, RESPONSE)] {
                let s = if from_server {
                    &mut self.seq[conn].1
                } else {
                    &mut self.seq[conn].0
                };
                let payload = CapturedPayload {
                    data: bytes.to_vec(),
                    seq: *s,
                    ..Default::default()
                };
                *s = s.wrapping_add(bytes.len() as u32);
                v.push((
                    tcp_packet(port, from_server, t + u64::from(from_server) * 5_000),
                    payload,
                ));
            }
        }
        v
    }

    /// The same, as the merge hands them to the L7 stage: payload packed in the flow's extras.
    fn next_flows(&mut self, exchanges: usize) -> Vec<Flow> {
        self.next(exchanges)
            .into_iter()
            .map(|(mut flow, payload)| {
                let extras = FlowExtras {
                    payload: Some(payload),
                    ..Default::default()
                };
                webb_proto::extras::attach(&mut flow, Some(&extras));
                flow
            })
            .collect()
    }
}

/// The L7 stage over `input`; returns the L7 flows it made (one per message).
fn l7_all(stage: &mut L7Stage, input: Vec<Flow>, out: &mut Vec<Flow>) -> usize {
    let mut n = 0;
    for flow in input {
        stage.process(flow, out);
        // The first is the packet flow itself.
        n += out.len() - 1;
        out.clear();
    }
    n
}

/// The HTTP stage alone (payload already unpacked, packet flows borrowed).
fn http_all(
    stage: &mut HttpStage,
    input: &[(Flow, CapturedPayload)],
    out: &mut Vec<Flow>,
) -> usize {
    let mut n = 0;
    for (flow, payload) in input {
        stage.observe(flow, payload, out);
        n += out.len();
        out.clear();
    }
    n
}

fn httparse_all(input: &[(Flow, CapturedPayload)]) -> usize {
    let mut n = 0;
    for (_, p) in input {
        let mut h = [httparse::EMPTY_HEADER; 32];
        if p.data.starts_with(b"HTTP/") {
            let mut r = httparse::Response::new(&mut h);
            n += usize::from(r.parse(&p.data).is_ok_and(|s| s.is_complete()));
        } else {
            let mut r = httparse::Request::new(&mut h);
            n += usize::from(r.parse(&p.data).is_ok_and(|s| s.is_complete()));
        }
    }
    n
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

    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Elements(2 * CHUNK as u64));
    let (mut stage, mut traffic, mut out) = (l7_stage(), Traffic::new(), Vec::new());
    g.bench_function("parse_and_pair", |b| {
        b.iter_batched(
            || traffic.next_flows(CHUNK),
            |input| l7_all(&mut stage, input, &mut out),
            BatchSize::PerIteration,
        )
    });
    let heads = Traffic::new().next(CHUNK);
    g.bench_function("baseline_httparse_only", |b| {
        b.iter(|| httparse_all(&heads))
    });
    g.finish();
}

fn l7_stage() -> L7Stage {
    L7Stage::new(HttpConfig::default())
}

const ROUNDS: usize = 7;

/// Exchanges per batch handed to the L7 stage (about a megabyte of flows).
const CHUNK: usize = 256;

/// Like [`rate`], with each round made of `chunks` batches of `items` set up one at a time
/// (setup not timed): the batch is warm in cache when `f` sees it.
fn chunked_rate<I>(
    chunks: usize,
    items: usize,
    mut setup: impl FnMut() -> I,
    mut f: impl FnMut(&mut I) -> usize,
) -> f64 {
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            (0..chunks)
                .map(|_| {
                    let mut input = setup();
                    let start = Instant::now();
                    black_box(f(&mut input));
                    start.elapsed()
                })
                .sum()
        })
        .collect();
    times.sort();
    (chunks * items) as f64 / times[ROUNDS / 2].as_secs_f64()
}

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

    // 100,000 exchanges a round.
    const CHUNKS: usize = 100_000 / CHUNK;
    let messages = 2 * CHUNK;
    let (mut stage, mut traffic, mut out) = (l7_stage(), Traffic::new(), Vec::new());
    let parsed = chunked_rate(
        CHUNKS,
        messages,
        || traffic.next_flows(CHUNK),
        |input| {
            let flows = l7_all(&mut stage, std::mem::take(input), &mut out);
            assert_eq!(flows, messages, "every message should become a flow");
            flows
        },
    );
    let lost = stage.http().stats().lost();
    assert_eq!(lost, 0, "nothing lost: {:?}", stage.http().stats());
    let (mut http_stage, mut traffic) = (HttpStage::new(HttpConfig::default()), Traffic::new());
    let http_only = chunked_rate(
        CHUNKS,
        messages,
        || traffic.next(CHUNK),
        |input| http_all(&mut http_stage, input, &mut out),
    );
    let heads = Traffic::new().next(CHUNK);
    let bare = chunked_rate(CHUNKS, messages, || (), |()| httparse_all(&heads));

    println!("\nrelay stage throughput (one core, median of {ROUNDS} rounds):");
    println!(
        "  merge (sort buffer 100, {PEERS} peers): {:>6.0} ns/flow  {:>5.2} M flows/s  = {:.2}x goal (1 M)  {:.2}x of plain Vec sort ({:.2} M/s)",
        1e9 / merged,
        merged / 1e6,
        merged / MERGE_GOAL,
        merged / sorted,
        sorted / 1e6
    );
    println!(
        "  HTTP parse+pair, L7 stage ({}-byte request, {}-byte response): {:>6.0} ns/message  {:>5.2} M messages/s  = {:.2}x goal (2 M)  {:.2}x of bare httparse ({:.2} M/s)",
        REQUEST.len(),
        RESPONSE.len(),
        1e9 / parsed,
        parsed / 1e6,
        parsed / HTTP_GOAL,
        parsed / bare,
        bare / 1e6
    );
    println!(
        "    of which the HTTP stage alone (payload already unpacked): {:>6.0} ns/message  {:>5.2} M messages/s  {:.2}x of bare httparse",
        1e9 / http_only,
        http_only / 1e6,
        http_only / bare
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

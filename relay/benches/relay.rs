//! Relay stage throughput: the time-ordered merge (goal ≥ 1 M flows/s/core) and the HTTP
//! stage, parse + pair (goal ≥ 2 M messages/s/core for ~300-byte heads). Each is printed with
//! its ratio to the goal and to a baseline measured in the same run (a plain sort of the same
//! flows; bare httparse over the same heads).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use relay::l7::{HttpConfig, HttpStage};
use relay::merge::{SortBuffer, Timed};
use webb_proto::Timestamp;
use webb_proto::flow::{
    Endpoint, Flow, Ip, IpVersion, Layer4, NetworkInterface, Tcp, TrafficDirection, Verdict, layer4,
};
use webb_proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use webb_proto::webb_v1::CapturedPayload;

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

/// Request/response exchanges on 64 keep-alive connections: (packet, payload) in time order.
fn http_input(exchanges: usize) -> Vec<(Flow, CapturedPayload)> {
    let mut seq = vec![(1u32, 1u32); 64];
    let mut v = Vec::with_capacity(exchanges * 2);
    for i in 0..exchanges {
        let conn = i % 64;
        let port = 40_000 + conn as u32;
        let t = 1_800_000_000_000_000_000 + i as u64 * 10_000;
        for (from_server, bytes) in [(false, REQUEST), (true, RESPONSE)] {
            let s = if from_server {
                &mut seq[conn].1
            } else {
                &mut seq[conn].0
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

    let http = http_input(5_000);
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Elements(http.len() as u64));
    // A fresh stage per batch: replaying the same packets into one stage would only measure
    // its retransmit check.
    g.bench_function("parse_and_pair", |b| {
        b.iter_batched(
            || HttpStage::new(HttpConfig::default()),
            |mut stage| http_all(&mut stage, &http, &mut Vec::new()),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("baseline_httparse_only", |b| b.iter(|| httparse_all(&http)));
    g.finish();
}

/// Items per second of `f` over `items`, best of a few rounds (setup not timed).
fn rate<I>(items: usize, mut setup: impl FnMut() -> I, mut f: impl FnMut(I) -> usize) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let input = setup();
        let start = Instant::now();
        black_box(f(input));
        best = best.min(start.elapsed());
    }
    items as f64 / best.as_secs_f64()
}

fn summary() {
    let merge = merge_input(200_000);
    let merged = rate(merge.len(), || merge.clone(), merge_all);
    let sorted = rate(merge.len(), || merge.clone(), sort_all);

    let http = http_input(100_000);
    let parsed = rate(
        http.len(),
        || HttpStage::new(HttpConfig::default()),
        |mut stage| {
            let mut out = Vec::new();
            let flows = http_all(&mut stage, &http, &mut out);
            assert_eq!(flows, http.len(), "every message should become a flow");
            flows
        },
    );
    let bare = rate(http.len(), || (), |()| httparse_all(&http));

    println!("\nrelay stage throughput (one core, best of 5):");
    println!(
        "  merge (sort buffer 100, {PEERS} peers): {:>6.0} ns/flow  {:>5.2} M flows/s  = {:.2}x goal (1 M)  {:.2}x of plain Vec sort ({:.2} M/s)",
        1e9 / merged,
        merged / 1e6,
        merged / MERGE_GOAL,
        merged / sorted,
        sorted / 1e6
    );
    println!(
        "  HTTP parse+pair ({}-byte request, {}-byte response): {:>6.0} ns/message  {:>5.2} M messages/s  = {:.2}x goal (2 M)  {:.2}x of bare httparse ({:.2} M/s)",
        REQUEST.len(),
        RESPONSE.len(),
        1e9 / parsed,
        parsed / 1e6,
        parsed / HTTP_GOAL,
        parsed / bare,
        bare / 1e6
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

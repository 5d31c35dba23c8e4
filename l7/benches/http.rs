//! HTTP throughput of the L7 stage, against bare httparse over the same heads measured in the
//! same run:
//! - parse + pair (goal ≥ 2 M messages per second per core for ~300-byte heads): captured
//!   bytes → requests paired with their responses, with method, URL (redacted), status,
//!   headers (sorted out by the redaction rules), latency and trace id; no flows made;
//! - the HTTP stage: the same, made into Hubble L7 flows;
//! - the L7 stage: the same from packet flows carrying the payload in `webb.v1.FlowExtras`, the
//!   packet flows passed on without it.
//!
//! The stage is measured as the relay's pipeline runs it: one long-lived stage, fed owned
//! packet flows whose `webb.v1.FlowExtras` carries the captured payload, on keep-alive
//! connections whose sequence numbers keep advancing from batch to batch; every flow it emits
//! (the packet flow without payload, then the L7 flows) is handed on and dropped, as the
//! relay's sink does. Flows come in batches of `CHUNK` exchanges made just before they are
//! timed, so that they are as warm in cache as flows the merge has just released.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use webb_l7::http::{MessageSink, Request, Response};
use webb_l7::privacy::{HeaderRule, Redaction};
use webb_l7::{HttpConfig, HttpStage, L7Stage};
use webb_proto::Timestamp;
use webb_proto::flow::{
    Endpoint, Flow, Ip, IpVersion, Layer4, NetworkInterface, Tcp, TrafficDirection, Verdict, layer4,
};
use webb_proto::webb_v1::{CapturedPayload, FlowExtras};

// The same allocator as the webb-relay binary.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HTTP_GOAL: f64 = 2_000_000.0;

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

#[inline(never)]
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

#[inline(never)]
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

/// Takes the parsed and paired messages as a consumer that makes no flows would: every field
/// read, every header sorted out by the redaction rules.
#[derive(Default)]
struct Paired {
    messages: usize,
    traced: usize,
    published_headers: usize,
}

impl Paired {
    fn headers(&mut self, headers: &[httparse::Header<'_>], redaction: &Redaction) {
        for h in headers {
            if redaction.header_rule(h.name) != HeaderRule::Omit {
                self.published_headers += 1;
                black_box(h.value);
            }
        }
    }
}

impl MessageSink for Paired {
    fn request(&mut self, packet: &Flow, r: &Request<'_>) {
        black_box((packet, r.time_ns, r.method, r.url, r.protocol));
        self.traced += usize::from(black_box(r.trace_id).is_some());
        self.headers(r.headers, r.redaction);
        self.messages += 1;
    }

    fn response(&mut self, packet: &Flow, r: &Response<'_>) {
        black_box((packet, r.time_ns, r.code, r.latency_ns, r.protocol));
        black_box((r.method, r.url, r.request_direction));
        self.traced += usize::from(black_box(r.trace_id).is_some());
        self.headers(r.headers, r.redaction);
        self.messages += 1;
    }
}

/// Parse + pair alone: no flows made.
#[inline(never)]
fn pair_all(stage: &mut HttpStage, input: &[(Flow, CapturedPayload)], sink: &mut Paired) -> usize {
    let before = sink.messages;
    for (flow, payload) in input {
        stage.pair(flow, payload, sink);
    }
    sink.messages - before
}

#[inline(never)]
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
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Elements(2 * CHUNK as u64));
    let (mut stage, mut traffic, mut out) = (l7_stage(), Traffic::new(), Vec::new());
    g.bench_function("l7_stage", |b| {
        b.iter_batched(
            || traffic.next_flows(CHUNK),
            |input| l7_all(&mut stage, input, &mut out),
            BatchSize::PerIteration,
        )
    });
    let (mut stage, mut traffic, mut sink) = (
        HttpStage::new(HttpConfig::default()),
        Traffic::new(),
        Paired::default(),
    );
    g.bench_function("parse_and_pair", |b| {
        b.iter_batched(
            || traffic.next(CHUNK),
            |input| pair_all(&mut stage, &input, &mut sink),
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

/// Items per second of `f`, the median of `ROUNDS` rounds, each made of `chunks` batches of
/// `items` set up one at a time (setup, and dropping what `f` leaves of its input, not
/// timed): the batch is warm in cache when `f` sees it.
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

fn summary() {
    // 100,000 exchanges a round; fewer to profile (e.g. under callgrind).
    let exchanges: usize = std::env::var("WEBB_BENCH_HTTP_EXCHANGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let chunks = exchanges.div_ceil(CHUNK);
    let messages = 2 * CHUNK;
    let (mut stage, mut traffic, mut out) = (l7_stage(), Traffic::new(), Vec::new());
    let parsed = chunked_rate(
        chunks,
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
        chunks,
        messages,
        || traffic.next(CHUNK),
        |input| http_all(&mut http_stage, input, &mut out),
    );
    let (mut pair_stage, mut traffic, mut sink) = (
        HttpStage::new(HttpConfig::default()),
        Traffic::new(),
        Paired::default(),
    );
    let paired = chunked_rate(
        chunks,
        messages,
        || traffic.next(CHUNK),
        |input| {
            let n = pair_all(&mut pair_stage, input, &mut sink);
            assert_eq!(n, messages, "every message should be parsed and paired");
            n
        },
    );
    assert_eq!(pair_stage.stats().lost(), 0, "{:?}", pair_stage.stats());
    assert_eq!(sink.traced, sink.messages, "every message has its trace id");
    let heads = Traffic::new().next(CHUNK);
    let bare = chunked_rate(chunks, messages, || (), |()| httparse_all(&heads));

    println!(
        "\nHTTP throughput, one core, median of {ROUNDS} rounds ({}-byte requests, {}-byte responses with traceparent, 64 keep-alive connections):",
        REQUEST.len(),
        RESPONSE.len()
    );
    println!(
        "  HTTP parse + pair (no flows made): {:>5.0} ns/message  {:>5.2} M messages/s  {:.2}x of bare httparse ({:.2} M/s); goal 2 M messages/s/core -> {:.2}x of goal, {}",
        1e9 / paired,
        paired / 1e6,
        paired / bare,
        bare / 1e6,
        paired / HTTP_GOAL,
        if paired >= HTTP_GOAL { "met" } else { "missed" }
    );
    println!(
        "  HTTP stage (parse + pair + Hubble L7 flows): {:>5.0} ns/message  {:>5.2} M messages/s  {:.2}x of bare httparse",
        1e9 / http_only,
        http_only / 1e6,
        http_only / bare
    );
    println!(
        "  L7 stage (payload unpacked from FlowExtras, L7 flows made, packet flows passed on without payload): {:>5.0} ns/message  {:>5.2} M messages/s  {:.2}x of bare httparse",
        1e9 / parsed,
        parsed / 1e6,
        parsed / bare
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

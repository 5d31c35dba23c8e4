//! The CPU cost of span export per 1,000 HTTP exchanges: the relay's tracker turns each paired
//! request/response (L7 flows with a `traceparent`) into a span, and the batch is encoded as the
//! OTLP `ExportTraceServiceRequest` protobuf that goes on the wire. Baseline in the same run:
//! protobuf-encoding the same 2,000 L7 flows, the cost the relay already pays to serve them to
//! one `webb observe` client. The printed ratio says what tracing adds on top of that.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use prost::Message;
use relay::otlp::encode::export_request;
use relay::otlp::{ExchangeConfig, SpanRecord, Tracker};
use webb_proto::Timestamp;
use webb_proto::flow::*;
use webb_proto::sample;

const EXCHANGES: usize = 1_000;
const T0: u64 = 1_800_000_000_000_000_000;

/// `EXCHANGES` request/response pairs as the L7 stage emits them at the server's interface:
/// 50 connections, keep-alive, every request with its own trace.
fn exchanges() -> Vec<Flow> {
    let mut flows = Vec::with_capacity(2 * EXCHANGES);
    for i in 0..EXCHANGES {
        let t = T0 + i as u64 * 1_000_000;
        let port = 40_000 + (i % 50) as u32;
        let traceparent = format!("00-{:032x}-{:016x}-01", i as u128 + 1, i as u64 + 1);
        let l7 = |kind: L7FlowType, http: Http, latency_ns: u64, at: u64, reply: bool| {
            let (src, dst, sport, dport) = if reply {
                ("198.18.2.20", "198.18.1.10", 8080, port)
            } else {
                ("198.18.1.10", "198.18.2.20", port, 8080)
            };
            let (client, server) = (
                sample::pod("web", "frontend-7d4f9-x2x9k", "frontend"),
                sample::pod("shop", "api-5c6b7-q8w7e", "api"),
            );
            Flow {
                time: Some(Timestamp::from_unix_nanos(at)),
                verdict: Verdict::Forwarded as i32,
                r#type: FlowType::L7 as i32,
                node_name: "node-2".into(),
                ip: Some(Ip {
                    source: src.into(),
                    destination: dst.into(),
                    ip_version: IpVersion::IPv4 as i32,
                    ..Default::default()
                }),
                l4: Some(Layer4 {
                    protocol: Some(layer4::Protocol::Tcp(Tcp {
                        source_port: sport,
                        destination_port: dport,
                        flags: None,
                    })),
                }),
                source: Some(if reply {
                    server.clone()
                } else {
                    client.clone()
                }),
                destination: Some(if reply { client } else { server }),
                traffic_direction: TrafficDirection::Ingress as i32,
                is_reply: Some(webb_proto::pbjson_types::BoolValue { value: reply }),
                l7: Some(Layer7 {
                    r#type: kind as i32,
                    latency_ns,
                    record: Some(layer7::Record::Http(http)),
                }),
                trace_context: Some(TraceContext {
                    parent: Some(TraceParent {
                        trace_id: traceparent[3..35].to_string(),
                    }),
                }),
                ..Default::default()
            }
        };
        let request = Http {
            method: "GET".into(),
            url: format!("http://api.shop:8080/api/items/{i}"),
            protocol: "HTTP/1.1".into(),
            headers: vec![
                HttpHeader {
                    key: "host".into(),
                    value: "api.shop:8080".into(),
                },
                HttpHeader {
                    key: "traceparent".into(),
                    value: traceparent.clone(),
                },
            ],
            ..Default::default()
        };
        let response = Http {
            code: 200,
            method: "GET".into(),
            url: format!("http://api.shop:8080/api/items/{i}"),
            protocol: "HTTP/1.1".into(),
            ..Default::default()
        };
        flows.push(l7(L7FlowType::Request, request, 0, t, false));
        flows.push(l7(
            L7FlowType::Response,
            response,
            400_000,
            t + 400_000,
            true,
        ));
    }
    flows
}

/// The tracker over every flow, then the batch encoded as OTLP protobuf; returns the bytes.
fn export(flows: &[Flow]) -> (usize, usize) {
    let mut tracker = Tracker::new(ExchangeConfig::default());
    let mut spans: Vec<SpanRecord> = Vec::with_capacity(EXCHANGES);
    for f in flows {
        tracker.observe(f, &mut spans);
    }
    let n = spans.len();
    (n, export_request(spans).encode_to_vec().len())
}

/// The baseline: the same flows encoded as protobuf once each.
fn encode_flows(flows: &[Flow]) -> usize {
    flows.iter().map(|f| f.encode_to_vec().len()).sum()
}

fn median_time(f: impl Fn()) -> Duration {
    let mut runs: Vec<Duration> = (0..31)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    runs.sort();
    runs[runs.len() / 2]
}

fn bench(c: &mut Criterion) {
    let flows = exchanges();
    let (spans, bytes) = export(&flows);
    assert_eq!(spans, EXCHANGES, "every exchange makes one span");

    let mut g = c.benchmark_group("otlp");
    g.throughput(Throughput::Elements(EXCHANGES as u64));
    g.bench_function("spans_for_1000_exchanges", |b| {
        b.iter(|| black_box(export(black_box(&flows))))
    });
    g.bench_function("baseline_encode_2000_flows", |b| {
        b.iter(|| black_box(encode_flows(black_box(&flows))))
    });
    g.finish();

    let export_time = median_time(|| {
        black_box(export(black_box(&flows)));
    });
    let base_time = median_time(|| {
        black_box(encode_flows(black_box(&flows)));
    });
    println!(
        "span export: {:.0} µs of one core per 1,000 exchanges ({bytes} bytes of OTLP); \
         baseline (protobuf of the 2,000 flows): {:.0} µs; ratio {:.2}× (medians of 31 runs)",
        export_time.as_secs_f64() * 1e6,
        base_time.as_secs_f64() * 1e6,
        export_time.as_secs_f64() / base_time.as_secs_f64()
    );
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    bench(&mut c);
    c.final_summary();
}

//! What `webb tui` costs at 10k flows/s: decoding a flow from the wire, taking it into the
//! viewer's buffer, and drawing a frame of the flows view over a full 10k buffer. The
//! baseline, measured in the same run, is a plain clone of the same flow.
//!
//! `cargo bench -p tui --bench viewer` prints ns per item, ratios to the baseline, and the
//! CPU share of one core at 10,000 flows/s and 10 frames/s.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use prost::Message;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tui::viewer::run::{SourceEvent, ingest};
use tui::viewer::state::{App, DEFAULT_CAPACITY};
use tui::viewer::view::draw;
use webb_proto::observer::GetFlowsResponse;

const INPUT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/hubble-goldens/input.jsonl"
);

fn golden() -> Vec<GetFlowsResponse> {
    std::fs::read_to_string(INPUT)
        .unwrap()
        .lines()
        .map(|l| tui::json::response_from_line(l).unwrap())
        .filter(|r| {
            matches!(
                r.response_types,
                Some(webb_proto::observer::get_flows_response::ResponseTypes::Flow(_))
            )
        })
        .collect()
}

fn full_app() -> App {
    let mut app = App::new(DEFAULT_CAPACITY, "bench");
    let flows = golden();
    for i in 0..DEFAULT_CAPACITY {
        ingest(
            &mut app,
            SourceEvent::Response(Box::new(flows[i % flows.len()].clone())),
        );
    }
    app
}

fn benches(c: &mut Criterion) {
    let flows = golden();
    let wire: Vec<Vec<u8>> = flows.iter().map(|r| r.encode_to_vec()).collect();
    c.bench_function("baseline_clone_response", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(flows[i % flows.len()].clone())
        })
    });
    c.bench_function("decode_response", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(GetFlowsResponse::decode(wire[i % wire.len()].as_slice()).unwrap())
        })
    });
    c.bench_function("ingest_into_full_buffer", |b| {
        let mut app = full_app();
        let mut i = 0;
        b.iter(|| {
            i += 1;
            ingest(
                &mut app,
                SourceEvent::Response(Box::new(flows[i % flows.len()].clone())),
            )
        })
    });
    c.bench_function("draw_flows_frame_10k_buffer", |b| {
        let app = full_app();
        let mut terminal = Terminal::new(TestBackend::new(200, 50)).unwrap();
        b.iter(|| terminal.draw(|f| draw(f, &app)).unwrap().area)
    });
}

/// Mean ns per call of `f` over `n` calls.
fn ns_per(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

fn summary() {
    let flows = golden();
    let wire: Vec<Vec<u8>> = flows.iter().map(|r| r.encode_to_vec()).collect();
    let len = flows.len() as u32;
    let baseline = ns_per(200_000, |i| {
        black_box(flows[(i % len) as usize].clone());
    });
    let decode = ns_per(200_000, |i| {
        black_box(GetFlowsResponse::decode(wire[(i % len) as usize].as_slice()).unwrap());
    });
    let mut app = full_app();
    let ingest_ns = ns_per(200_000, |i| {
        ingest(
            &mut app,
            SourceEvent::Response(Box::new(flows[(i % len) as usize].clone())),
        )
    });
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).unwrap();
    let frame = ns_per(50, |_| {
        terminal.draw(|f| draw(f, &app)).unwrap();
    });
    println!("\nviewer cost (same run):");
    println!("  baseline clone      {baseline:>12.0} ns/flow   1.00x");
    println!(
        "  decode (protobuf)   {decode:>12.0} ns/flow   {:.2}x",
        decode / baseline
    );
    println!(
        "  ingest (buffer)     {ingest_ns:>12.0} ns/flow   {:.2}x",
        ingest_ns / baseline
    );
    println!("  draw flows frame    {frame:>12.0} ns/frame  (10k buffered, 200x50)");
    let per_second = 10_000.0 * (decode + ingest_ns) + 10.0 * frame;
    println!(
        "  at 10,000 flows/s and 10 frames/s: {:.1}% of one core",
        per_second / 1e9 * 100.0
    );
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
    summary();
}

//! Datapath records decoded to `flow.Flow` per second per core (goal ≥ 1 M/s/core), against
//! the cost of only parsing the record, measured in the same run.
//!
//! `cargo bench -p flow-agent --bench decode` prints criterion's figures and a summary:
//! ns per event and events/s for parse (baseline), decode, decode + ring push, and the agent's
//! own path: parse + store (encoded straight from the record) + ring push.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use flow_agent::datapath::event::{HEADER_LEN, RawEvent, VERSION};
use flow_agent::datapath::kdrop::KernelDropNames;
use flow_agent::decode::{Decoder, FlowIds, WallClock};
use flow_agent::endpoints::Endpoints;
use flow_agent::metrics::Metrics;
use flow_observer::{EndpointCache, Observed, Ring, StoredFlow};

const EPS: &str = r#"
endpoints:
  - {name: web-1, namespace: shop, labels: {app: web, tier: front}, workload: {name: web, kind: Deployment}, ips: [198.19.1.10], interface: lxcweb, node: vn1}
  - {name: api-1, namespace: store, labels: {app: api}, workload: {name: api, kind: Deployment}, ips: [198.19.2.20], interface: lxcapi, node: vn2}
"#;

/// A TCP SYN record as the datapath writes it: header + 54 captured bytes.
fn syn_record() -> Vec<u8> {
    let cap: u16 = 54;
    let mut b = vec![0u8; HEADER_LEN + usize::from(cap)];
    b[0] = 1; // trace
    b[1] = VERSION;
    b[2..4].copy_from_slice(&(HEADER_LEN as u16).to_ne_bytes());
    b[4..8].copy_from_slice(&7u32.to_ne_bytes()); // ifindex
    b[8..16].copy_from_slice(&5_000_000_000u64.to_ne_bytes());
    b[20] = 0; // ingress
    b[21] = 1; // ct new
    b[27] = 4; // IPv4
    let v4 = |a, b2, c, d| {
        std::net::Ipv4Addr::new(a, b2, c, d)
            .to_ipv6_mapped()
            .octets()
    };
    b[40..56].copy_from_slice(&v4(198, 19, 1, 10));
    b[56..72].copy_from_slice(&v4(198, 19, 2, 20));
    b[72..74].copy_from_slice(&40312u16.to_ne_bytes());
    b[74..76].copy_from_slice(&8080u16.to_ne_bytes());
    b[76] = 6;
    b[77] = 0x02;
    b[80..86].copy_from_slice(&[0x6a, 0x8b, 0x1c, 0x2d, 0x3e, 0x4f]);
    b[86..92].copy_from_slice(&[0xee; 6]);
    b[92..96].copy_from_slice(&74u32.to_ne_bytes());
    b[96..98].copy_from_slice(&cap.to_ne_bytes());
    b[98..100].copy_from_slice(&14u16.to_ne_bytes());
    b[100..102].copy_from_slice(&34u16.to_ne_bytes());
    b[120..122].copy_from_slice(&0x0800u16.to_ne_bytes());
    b
}

fn decoder() -> Decoder {
    let eps = Arc::new(Endpoints::parse(EPS, "bench.yaml", "vn1").expect("bench endpoints parse"));
    let mut d = Decoder::new(
        "vn1",
        eps,
        Arc::new(WallClock::new()),
        FlowIds::new("vn1", 1_790_000_000),
        Arc::new(KernelDropNames::default()),
    );
    d.interfaces_mut().insert(7, "lxcweb");
    d
}

/// ns per iteration of `f`, over `n` iterations.
fn time_per(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let rec = syn_record();
    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("record");
        g.throughput(Throughput::Elements(1));
        g.bench_function("parse (baseline)", |b| {
            b.iter(|| black_box(RawEvent::parse(black_box(&rec)).is_ok()))
        });
        let mut d = decoder();
        g.bench_function("decode to Flow", |b| {
            b.iter(|| black_box(d.decode_bytes(black_box(&rec)).is_ok()))
        });
        let state = Observed::new(
            "vn1",
            Arc::new(Ring::new(65535).expect("valid capacity")),
            Arc::new(Metrics::new("vn1")),
        );
        let mut d = decoder();
        g.bench_function("decode + ring push", |b| {
            b.iter(|| {
                if let Ok(r) = d.decode_bytes(black_box(&rec)) {
                    state.push_flow(r.flow, r.extras.as_ref());
                }
            })
        });
        let mut d = decoder();
        g.bench_function("store + ring push (the agent's path)", |b| {
            b.iter(|| {
                if let Ok(ev) = RawEvent::parse(black_box(&rec))
                    && let Some(s) = d.store(&ev, None)
                {
                    state.push_stored(s);
                }
            })
        });
        g.finish();
    }
    c.final_summary();

    // Summary with ratios, measured back to back in this run.
    let n = 300_000;
    let parse = time_per(n, || {
        black_box(RawEvent::parse(black_box(&rec)).is_ok());
    });
    let mut d = decoder();
    let decode = time_per(n, || {
        black_box(d.decode_bytes(black_box(&rec)).is_ok());
    });
    let state = Observed::new(
        "vn1",
        Arc::new(Ring::new(65535).expect("valid capacity")),
        Arc::new(Metrics::new("vn1")),
    );
    let mut d = decoder();
    let push = time_per(n, || {
        if let Ok(r) = d.decode_bytes(black_box(&rec)) {
            state.push_flow(r.flow, r.extras.as_ref());
        }
    });
    let mut d = decoder();
    let store = time_per(n, || {
        if let Ok(ev) = RawEvent::parse(black_box(&rec))
            && let Some(s) = d.store(&ev, None)
        {
            state.push_stored(s);
        }
    });
    println!("\ndecoder summary ({n} events each, one core):");
    for (name, ns) in [
        ("parse (baseline)", parse),
        ("decode to Flow", decode),
        ("decode + ring push", push),
        ("store + ring push", store),
    ] {
        println!(
            "  {name:<20} {ns:>8.1} ns/event  {:>6.2} M events/s/core  {:>5.1}x baseline",
            1e3 / ns,
            ns / parse
        );
    }
    println!("  goal: decode >= 1.00 M events/s/core");

    // Memory of a full 65535-flow ring (the agent's RSS goal is 64 MB with it).
    let before = rss_kib();
    let state = Observed::new(
        "vn1",
        Arc::new(Ring::new(65535).expect("valid capacity")),
        Arc::new(Metrics::new("vn1")),
    );
    let mut d = decoder();
    let mut stored = 0usize;
    let mut endpoints = EndpointCache::default();
    for _ in 0..65535 {
        if let Ok(r) = d.decode_bytes(&rec) {
            stored +=
                StoredFlow::new(r.flow.clone(), r.extras.as_ref(), &mut endpoints).stored_len();
            state.push_flow(r.flow, r.extras.as_ref());
        }
    }
    let grown = rss_kib().saturating_sub(before);
    println!(
        "  ring of 65535 flows: {:.1} MiB RSS growth, {} B encoded per flow (endpoints shared)",
        grown as f64 / 1024.0,
        stored / 65535
    );
}

/// Resident set size of this process in KiB (0 when /proc is unavailable).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

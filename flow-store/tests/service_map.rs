//! The service map: workloads as nodes, client → server edges with HTTP rate, errors,
//! latency percentiles and drops, over a time range.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use flow_store::{FlowStore, MapQuery, StoreConfig};
use webb_proto::Timestamp;
use webb_proto::flow::{Endpoint, Flow, TrafficDirection, Workload};
use webb_proto::sample;

fn endpoint(namespace: &str, workload: &str) -> Endpoint {
    Endpoint {
        namespace: namespace.into(),
        pod_name: format!("{workload}-7d9f-abcde"),
        workloads: vec![Workload {
            name: workload.into(),
            kind: "Deployment".into(),
        }],
        ..Default::default()
    }
}

fn at(base: &Timestamp, ms: u64) -> Option<Timestamp> {
    Some(Timestamp::from_unix_nanos(
        base.unix_nanos() as u64 + ms * 1_000_000,
    ))
}

/// A response flow of an exchange frontend → api (responses run server → client).
fn response(base: &Timestamp, i: usize, code: u32, latency_ms: u64, dir: TrafficDirection) -> Flow {
    let mut f = sample::http_response(i);
    f.time = at(base, i as u64);
    f.source = Some(endpoint("shop", "api"));
    f.destination = Some(endpoint("shop", "frontend"));
    f.traffic_direction = dir as i32;
    f.l7.as_mut().unwrap().latency_ns = latency_ms * 1_000_000;
    if let Some(webb_proto::flow::layer7::Record::Http(h)) = f.l7.as_mut().unwrap().record.as_mut()
    {
        h.code = code;
    }
    f
}

#[test]
fn edges_carry_rate_errors_latency_and_drops_and_count_each_exchange_once() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = FlowStore::open(StoreConfig {
        flush_interval: Duration::from_secs(3600),
        ..StoreConfig::new(dir.path())
    })
    .unwrap();
    let base = Timestamp::now();
    // 100 exchanges seen at the server (INGRESS): 10 of them 500s, latencies 1..=100 ms.
    for i in 0..100 {
        let code = if i % 10 == 0 { 500 } else { 200 };
        store.append_blocking(response(
            &base,
            i,
            code,
            i as u64 + 1,
            TrafficDirection::Ingress,
        ));
    }
    // The same exchanges seen again at the client (EGRESS), fewer of them: not added.
    for i in 0..40 {
        store.append_blocking(response(&base, 200 + i, 200, 5, TrafficDirection::Egress));
    }
    // Three policy drops from frontend to db.
    for i in 0..3 {
        let mut d = sample::policy_drop(i);
        d.time = at(&base, 300 + i as u64);
        d.source = Some(endpoint("shop", "frontend"));
        d.destination = Some(endpoint("data", "db"));
        store.append_blocking(d);
    }
    // A flow outside the range does not count.
    let mut late = response(&base, 999, 500, 1, TrafficDirection::Ingress);
    late.time = at(&base, 20_000);
    store.append_blocking(late);
    store.flush().unwrap();

    let q = MapQuery {
        since: base,
        until: Timestamp::from_unix_nanos(base.unix_nanos() as u64 + 10_000_000_000),
        namespace: None,
    };
    let map = rt.block_on(store.service_map(&q)).unwrap();
    let ids: Vec<&str> = map.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["data/db", "shop/api", "shop/frontend"]);
    for e in &map.edges {
        assert!(ids.contains(&e.source.as_str()) && ids.contains(&e.target.as_str()));
    }

    let http = map.edges.iter().find(|e| e.target == "shop/api").unwrap();
    assert_eq!(http.source, "shop/frontend");
    assert_eq!(http.id, "shop/frontend->shop/api");
    assert_eq!(
        http.requests, 100,
        "the server's view, not both views added"
    );
    assert!(
        (http.requests_per_second - 10.0).abs() < 1e-9,
        "100 in 10 s"
    );
    assert!((http.error_ratio - 0.1).abs() < 1e-9);
    let p50 = http.p50_ms.unwrap();
    let p95 = http.p95_ms.unwrap();
    let p99 = http.p99_ms.unwrap();
    assert!((45.0..=56.0).contains(&p50), "p50 {p50}");
    assert!((90.0..=100.0).contains(&p95), "p95 {p95}");
    assert!(p95 <= p99 && p99 <= 100.0, "p99 {p99}");
    assert_eq!(http.drops, 0);

    let drop = map.edges.iter().find(|e| e.target == "data/db").unwrap();
    assert_eq!(
        (drop.source.as_str(), drop.drops, drop.requests),
        ("shop/frontend", 3, 0)
    );
    assert_eq!(drop.p50_ms, None);

    let api = map.nodes.iter().find(|n| n.id == "shop/api").unwrap();
    assert_eq!(
        (api.namespace.as_str(), api.workload.as_str()),
        ("shop", "api")
    );
    assert!((api.requests_per_second - 10.0).abs() < 1e-9);
    let db = map.nodes.iter().find(|n| n.id == "data/db").unwrap();
    assert_eq!(db.drops, 3);

    // Only edges touching namespace `data`.
    let only = rt
        .block_on(store.service_map(&MapQuery {
            namespace: Some("data".into()),
            ..q
        }))
        .unwrap();
    assert_eq!(only.edges.len(), 1);
    assert_eq!(only.nodes.len(), 2);
    store.close();
}

/// What the map must say about one client → server edge, counted straight from the flows.
#[derive(Debug, Default)]
struct Expected {
    requests: u64,
    errors: u64,
    drops: u64,
    connections: u64,
    latencies_ns: Vec<u64>,
}

fn end_id(e: &Option<Endpoint>) -> String {
    let e = e.as_ref().unwrap();
    format!("{}/{}", e.namespace, e.workloads[0].name)
}

/// The map's rules applied to flows in `[lo, hi)`: responses run server → client, the busier
/// traffic direction of an edge counts its exchanges, drops and connections add up.
fn expected(flows: &[Flow], lo: i128, hi: i128) -> BTreeMap<(String, String), Expected> {
    use webb_proto::flow::{FlowType, L7FlowType, TraceReason, Verdict, layer7::Record};
    let mut by_dir: BTreeMap<(String, String, &str), Expected> = BTreeMap::new();
    for f in flows {
        let t = f.time.unwrap().unix_nanos();
        if t < lo || t >= hi {
            continue;
        }
        let code = f.l7.as_ref().and_then(|l| match &l.record {
            Some(Record::Http(h)) if l.r#type == L7FlowType::Response as i32 => Some(h.code),
            _ => None,
        });
        let (client, server) = match code {
            Some(_) => (end_id(&f.destination), end_id(&f.source)),
            None => (end_id(&f.source), end_id(&f.destination)),
        };
        let dir = TrafficDirection::try_from(f.traffic_direction)
            .unwrap()
            .as_str_name();
        let e = by_dir.entry((client, server, dir)).or_default();
        if let Some(code) = code {
            e.requests += 1;
            e.errors += u64::from(code >= 500);
            e.latencies_ns.push(f.l7.as_ref().unwrap().latency_ns);
        }
        let dropped = f.verdict == Verdict::Dropped as i32;
        e.drops += u64::from(dropped);
        e.connections += u64::from(
            f.r#type == FlowType::L3L4 as i32
                && f.trace_reason == TraceReason::New as i32
                && !dropped,
        );
    }
    let mut out: BTreeMap<(String, String), Expected> = BTreeMap::new();
    for ((client, server, _), e) in by_dir {
        let edge = out.entry((client, server)).or_default();
        edge.drops += e.drops;
        edge.connections += e.connections;
        if e.requests > edge.requests {
            (edge.requests, edge.errors, edge.latencies_ns) =
                (e.requests, e.errors, e.latencies_ns);
        }
    }
    out
}

fn nearest_rank_ms(latencies: &mut [u64], q: f64) -> f64 {
    latencies.sort();
    let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
    latencies[rank - 1] as f64 / 1e6
}

/// The service-map sidecars under `dir`.
fn sidecar_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    common::files_ending(dir, ".map")
}

#[test]
fn a_map_merged_from_sidecars_equals_a_full_scan_and_the_flows_own_counts() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = || StoreConfig {
        flush_interval: Duration::from_secs(3600),
        retention_age: None,
        ..StoreConfig::new(dir.path())
    };
    let store = FlowStore::open(config()).unwrap();
    let now = Timestamp::now().seconds;
    let start = Timestamp {
        seconds: (now / 3600 - 6) * 3600,
        nanos: 0,
    };
    // Three whole hours flushed into one file each, then flows of a fourth hour not flushed.
    let g = flow_store::generator::FlowGenerator::new(40, start, 4);
    let flows = g.batch(0, 3 * 3600 * 4 + 600);
    for f in &flows[..3 * 3600 * 4] {
        store.append_blocking(f.clone());
    }
    store.flush().unwrap();
    assert_eq!(sidecar_files(dir.path()).len(), 3, "one sidecar per file");
    for f in &flows[3 * 3600 * 4..] {
        store.append_blocking(f.clone());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.stats().pending_rows < 600 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.stats().pending_rows, 600);

    let at = |secs: i64| Timestamp {
        seconds: start.seconds + secs,
        nanos: 0,
    };
    let ranges = [
        // Every file wholly inside (sidecars only) plus the unflushed rows.
        (at(0), at(4 * 3600)),
        // Cuts through the first file and the unflushed rows: those are scanned.
        (at(1800), at(3 * 3600 + 60)),
    ];
    let maps = |store: &FlowStore| -> Vec<flow_store::ServiceMap> {
        ranges
            .iter()
            .map(|(since, until)| {
                rt.block_on(store.service_map(&MapQuery {
                    since: *since,
                    until: *until,
                    namespace: None,
                }))
                .unwrap()
            })
            .collect()
    };
    let from_sidecars = maps(&store);
    store.close();

    // The same data without sidecars (as a store of an older version has it): all scanned.
    for m in sidecar_files(dir.path()) {
        std::fs::remove_file(m).unwrap();
    }
    let store = FlowStore::open(config()).unwrap();
    assert!(store.segments().iter().all(|s| s.map_bytes.is_none()));
    let scanned = maps(&store);
    assert_eq!(from_sidecars, scanned);

    for ((since, until), map) in ranges.iter().zip(&from_sidecars) {
        let mut want = expected(&flows, since.unix_nanos(), until.unix_nanos());
        want.retain(|_, e| e.requests + e.drops + e.connections > 0);
        assert_eq!(map.edges.len(), want.len());
        assert!(want.values().any(|e| e.requests >= 20), "busy edges exist");
        for e in &map.edges {
            let w = want.get_mut(&(e.source.clone(), e.target.clone())).unwrap();
            assert_eq!(
                (e.requests, e.drops, e.connections),
                (w.requests, w.drops, w.connections),
                "{}",
                e.id
            );
            assert!((e.error_ratio * w.requests as f64 - w.errors as f64).abs() < 1e-6);
            if w.requests == 0 {
                assert_eq!(e.p50_ms, None);
                continue;
            }
            for (q, got) in [(0.5, e.p50_ms), (0.95, e.p95_ms), (0.99, e.p99_ms)] {
                let exact = nearest_rank_ms(&mut w.latencies_ns, q);
                let got = got.unwrap();
                assert!(
                    (got - exact).abs() <= exact * 0.01,
                    "{} p{q}: {got} ms, exact {exact} ms",
                    e.id
                );
            }
        }
    }
    store.close();
}

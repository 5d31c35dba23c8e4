//! The service map: workloads as nodes, client → server edges with HTTP rate, errors,
//! latency percentiles and drops, over a time range.

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

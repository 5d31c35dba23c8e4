//! Live traffic on real namespaces (run as root): what the clients count is what the servers saw.

use std::collections::BTreeSet;
use std::time::Duration;

use netlab::{Plan, Topology, Traffic, cleanup_stale, unique_prefix};

const BASE: &str = "wbnt";

fn build() -> Topology {
    cleanup_stale(BASE);
    Topology::build(&unique_prefix(BASE)).expect("topology builds")
}

#[test]
fn client_counters_match_what_the_servers_saw() {
    let topo = build();
    let plan = Plan {
        duration: Duration::from_secs(20),
        max_requests: 150,
        actions_per_second: 60.0,
        ..Plan::default()
    };
    let report = Traffic::start(&topo, plan.clone())
        .expect("traffic starts")
        .wait();
    let c = &report.client;
    let s = &report.servers;
    eprintln!("{report}");

    // The count bound was reached before the time bound, and nothing failed.
    assert_eq!(c.requests(), plan.max_requests);
    assert_eq!(c.responses(), c.requests());
    assert_eq!(c.connect_failures, 0);
    // Both ends agree, status by status.
    assert_eq!(c.http_by_status, s.http_by_status);
    for status in [200, 404, 500] {
        assert!(
            c.http_by_status.get(&status).copied().unwrap_or(0) > 0,
            "no {status}"
        );
    }
    // Every trace id sent reached a server.
    let sent: BTreeSet<String> = c.traced.iter().map(|t| t.trace_id.clone()).collect();
    assert!(!sent.is_empty());
    assert_eq!(sent, s.trace_ids);
    assert!(
        c.traced
            .iter()
            .all(|t| t.trace_id.len() == 32 && t.span_id.len() == 16)
    );
    assert!(
        (c.traced.len() as u64) < c.requests(),
        "only part of the requests are traced"
    );
    // Every connection mode and both families ran.
    assert!(c.pipelined_batches > 0);
    assert!(c.requests_over_ipv6 > 0 && c.requests_over_ipv6 < c.requests());
    assert!(c.connections > 0);
    // Every call path of the shop carried requests, the later-denied one included.
    let pairs: BTreeSet<(String, String)> = c.by_pair.keys().cloned().collect();
    for (from, to, _) in netlab::CALLS {
        assert!(
            pairs.contains(&(from.to_string(), to.to_string())),
            "{from}->{to}"
        );
    }
    // DNS-like UDP and ICMP: every query answered and counted by the server; every echo replied.
    assert!(c.dns_queries > 0);
    assert_eq!(c.dns_answers, c.dns_queries);
    assert_eq!(s.dns_queries, c.dns_queries);
    assert_eq!(c.dns_nxdomain, 0);
    assert!(c.icmp_echo_requests > 0);
    assert_eq!(c.icmp_echo_replies, c.icmp_echo_requests);
}

#[test]
fn traffic_stops_by_itself_at_its_duration() {
    let topo = build();
    let plan = Plan {
        duration: Duration::from_millis(1500),
        max_requests: u64::MAX,
        actions_per_second: 10.0,
        ..Plan::default()
    };
    let report = Traffic::start(&topo, plan).expect("traffic starts").wait();
    assert!(report.client.requests() > 0);
    // In-flight work ends within the per-request timeouts.
    assert!(
        report.elapsed < Duration::from_millis(1500) + Duration::from_secs(5),
        "{:?}",
        report.elapsed
    );
    assert_eq!(report.client.http_by_status, report.servers.http_by_status);
}

#[test]
fn an_unreachable_pod_is_counted_as_failed_and_the_rest_still_reconciles() {
    // db's link is down (as if a policy dropped everything to it): its callers time out, count
    // the failures and carry on; every other path is answered and matches the servers' counts.
    let topo = build();
    let db = topo.pod("db").unwrap();
    let down = std::process::Command::new("ip")
        .args(["-n", &db.netns, "link", "set", "eth0", "down"])
        .status()
        .unwrap();
    assert!(down.success());
    let plan = Plan {
        duration: Duration::from_secs(2),
        max_requests: 80,
        actions_per_second: 40.0,
        ..Plan::default()
    };
    let report = Traffic::start(&topo, plan).expect("traffic starts").wait();
    let c = &report.client;
    let mut to_db = 0;
    for ((from, to), p) in &c.by_pair {
        assert_eq!(p.requests, p.responses + p.failed, "{from}->{to}");
        if to == "db" {
            to_db += p.requests;
            assert_eq!(p.responses, 0, "{from}->db");
        } else {
            assert_eq!(p.failed, 0, "{from}->{to}");
        }
    }
    assert!(to_db > 0 && c.connect_failures > 0);
    assert_eq!(report.servers.http_by_pod.get("db"), None);
    assert_eq!(c.http_by_status, report.servers.http_by_status);
    assert!(c.icmp_echo_replies < c.icmp_echo_requests);
    assert!(
        report.elapsed < Duration::from_secs(2 + 5),
        "{:?}",
        report.elapsed
    );
}

#[test]
fn a_server_that_cannot_listen_fails_the_start_naming_its_pod_and_nothing_hangs() {
    let topo = build();
    let catalog = topo.pod("catalog").unwrap();
    let holder = netlab::netns::spawn_in(&catalog.netns, || {
        std::net::TcpListener::bind("[::]:8080").expect("bind in catalog")
    })
    .unwrap()
    .join();
    let err = Traffic::start(&topo, Plan::default())
        .err()
        .expect("start fails while catalog's port is taken");
    assert!(err.to_string().contains("catalog"), "{err}");
    drop(holder);
}

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
    eprintln!("{report:#?}");

    // The count bound was reached before the time bound, and nothing failed.
    assert_eq!(c.requests(), plan.max_requests);
    assert_eq!(c.responses(), c.requests());
    assert_eq!(c.connect_failures, 0);
    // Both ends agree, status by status.
    assert_eq!(c.http_by_status, s.http_by_status);
    for status in [200, 404, 500] {
        assert!(c.http_by_status.get(&status).copied().unwrap_or(0) > 0, "no {status}");
    }
    // Every trace id sent reached a server.
    let sent: BTreeSet<String> = c.traced.iter().map(|t| t.trace_id.clone()).collect();
    assert!(!sent.is_empty());
    assert_eq!(sent, s.trace_ids);
    assert!(c.traced.iter().all(|t| t.trace_id.len() == 32 && t.span_id.len() == 16));
    assert!((c.traced.len() as u64) < c.requests(), "only part of the requests are traced");
    // Every connection mode and both families ran.
    assert!(c.pipelined_batches > 0);
    assert!(c.requests_over_ipv6 > 0 && c.requests_over_ipv6 < c.requests());
    assert!(c.connections > 0);
    // Every call path of the shop carried requests, the later-denied one included.
    let pairs: BTreeSet<(String, String)> = c.by_pair.keys().cloned().collect();
    for (from, to, _) in netlab::CALLS {
        assert!(pairs.contains(&(from.to_string(), to.to_string())), "{from}->{to}");
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
    assert!(report.elapsed < Duration::from_millis(1500) + Duration::from_secs(5), "{:?}", report.elapsed);
    assert_eq!(report.client.http_by_status, report.servers.http_by_status);
}

#[test]
fn a_refused_path_is_counted_as_failed_and_nothing_hangs() {
    // Without db's server, every call to db is refused: the clients count the failures and
    // keep going on the other paths.
    cleanup_stale(BASE);
    let mut pods = netlab::shop();
    pods.iter_mut().find(|p| p.key == "db").unwrap().http_port = None;
    let topo = Topology::build_with(&unique_prefix(BASE), pods).expect("topology builds");
    let plan = Plan {
        duration: Duration::from_secs(2),
        max_requests: 60,
        actions_per_second: 40.0,
        ..Plan::default()
    };
    let report = Traffic::start(&topo, plan).expect("traffic starts").wait();
    let c = &report.client;
    assert!(c.by_pair.keys().all(|(_, to)| to != "db"), "db serves nothing, so nobody calls it");
    assert_eq!(c.http_by_status, report.servers.http_by_status);
}

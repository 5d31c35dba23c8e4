//! Cardinality control: a bound on series per metric, and removal of the series of endpoints
//! that disappeared once their grace period is over. Plus `promtool check metrics`.

mod metrics_common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use metrics_common::*;
use relay::metrics::{EndpointRef, Metrics, MetricsConfig};
use webb_proto::flow::*;

fn drop_from(pod: &str, ip: &str) -> Flow {
    let mut f = drop_flow();
    if let Some(s) = f.source.as_mut() {
        s.pod_name = pod.into();
    }
    if let Some(i) = f.ip.as_mut() {
        i.source = ip.into();
    }
    f
}

#[test]
fn a_metric_at_its_series_bound_refuses_new_series_and_counts_them() {
    let mut cfg = MetricsConfig::from_flag("drop:sourceContext=pod").unwrap();
    cfg.max_series_per_metric = 2;
    let m = Metrics::new(&cfg).unwrap();
    for pod in ["a", "b", "c", "d", "a"] {
        m.observe(&drop_from(pod, "198.18.0.10"));
    }
    let body = m.render(None).1;
    let drops: Vec<_> = samples(&body)
        .into_iter()
        .filter(|l| l.starts_with("hubble_drop_total{"))
        .collect();
    assert_eq!(
        drops,
        [
            r#"hubble_drop_total{reason="POLICY_DENIED",protocol="TCP",source="web/a"} 2"#,
            r#"hubble_drop_total{reason="POLICY_DENIED",protocol="TCP",source="web/b"} 1"#,
        ]
    );
    assert!(
        samples(&body)
            .contains(&r#"webb_metrics_series_dropped_total{metric="hubble_drop_total"} 2"#)
    );
    assert_eq!(m.series_count(), 2);
}

fn gone(pod: &str, ip: &str) -> EndpointRef {
    EndpointRef {
        namespace: "web".into(),
        pod: pod.into(),
        ips: vec![ip.parse::<IpAddr>().unwrap()],
    }
}

#[test]
fn series_of_a_forgotten_endpoint_disappear_only_after_the_grace_period() {
    let mut cfg = MetricsConfig::from_flag(
        "drop:sourceContext=pod flow:labelsContext=source_namespace,source_pod tcp:labelsContext=source_ip port-distribution:labelsContext=source_namespace",
    )
    .unwrap();
    cfg.endpoint_grace = Duration::from_secs(60);
    let m = Metrics::new(&cfg).unwrap();
    let mut keep = tcp_flow(Verdict::Forwarded, syn());
    if let Some(s) = keep.source.as_mut() {
        s.pod_name = "b".into();
    }
    let mut old = tcp_flow(Verdict::Forwarded, syn());
    if let Some(s) = old.source.as_mut() {
        s.pod_name = "a".into();
    }
    for f in [
        drop_from("a", "198.18.0.11"),
        drop_from("b", "198.18.0.12"),
        old,
        keep,
    ] {
        m.observe(&f);
    }
    let before = m.series_count();
    let t0 = Instant::now();
    m.forget_endpoints(&[gone("a", "198.18.0.10")], t0);
    assert_eq!(m.sweep(t0 + Duration::from_secs(59)), 0);
    let removed = m.sweep(t0 + Duration::from_secs(60));
    // drop{source="web/a"}, flow{source_pod="a"} (the drop flow and the trace flow), and
    // tcp{source_ip="198.18.0.10"}; the per-namespace port series names no endpoint and stays.
    assert_eq!(removed, 4, "{}", m.render(None).1);
    assert_eq!(m.series_count(), before - 4);
    let body = m.render(None).1;
    assert!(!body.contains(r#"source="web/a""#) && !body.contains(r#"source_pod="a""#));
    assert!(body.contains(r#"source="web/b""#) && body.contains(r#"hubble_port_distribution_total{protocol="TCP",port="8080",source_namespace="web"}"#));
    // Nothing left to do afterwards.
    assert_eq!(m.sweep(t0 + Duration::from_secs(120)), 0);
}

#[test]
fn an_endpoint_that_returns_within_the_grace_period_keeps_its_series() {
    let m = Metrics::new(&MetricsConfig::from_flag("drop:sourceContext=pod").unwrap()).unwrap();
    m.observe(&drop_from("a", "198.18.0.11"));
    let t0 = Instant::now();
    m.forget_endpoints(&[gone("a", "198.18.0.11")], t0);
    m.endpoint_returned("web", "a");
    assert_eq!(m.sweep(t0 + Duration::from_secs(3600)), 0);
    assert_eq!(m.series_count(), 1);
}

/// `promtool check metrics` (Debian `prometheus` package) accepts the text exposition.
#[test]
fn promtool_accepts_the_prometheus_text_exposition() {
    let Ok(out) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        panic!("promtool missing: apt-get install prometheus (an xtask prerequisite)");
    };
    assert!(out.status.success());
    let m = Metrics::new(
        &MetricsConfig::from_flag(
            "flow drop tcp port-distribution icmp policy httpV2:exemplars=true;labelsContext=source_namespace,source_workload,destination_namespace,destination_workload,traffic_direction",
        )
        .unwrap(),
    )
    .unwrap();
    for f in [
        tcp_flow(Verdict::Forwarded, syn()),
        drop_flow(),
        icmp_flow(true, 128, 0),
        policy_verdict(Verdict::Dropped, 2),
        http_flow(L7FlowType::Request, 0, 0, Some(TRACE_A)),
        http_flow(L7FlowType::Response, 200, 3_000_000, Some(TRACE_A)),
    ] {
        m.observe(&f);
    }
    m.record_stage_loss("merge", "node-a", 1);
    let body = m.render(None).1;
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool exits non-zero for lint findings too; parse errors are what must not happen.
    assert!(
        !report.contains("error while linting") && !report.contains("parse"),
        "{report}\n{body}"
    );
    println!("promtool: {report}");
}

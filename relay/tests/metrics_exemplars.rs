//! Exemplars: `traceID` on HTTP counters and the duration histogram (Hubble), and on drop and
//! policy counters of a connection whose latest HTTP exchange carried a trace id (Webb).

mod metrics_common;

use std::time::{Duration, Instant};

use metrics_common::*;
use relay::metrics::{Metrics, MetricsConfig, OPENMETRICS_CONTENT_TYPE};
use webb_proto::flow::*;

const OM: Option<&str> =
    Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5");
const EXAMPLE: &str =
    "flow drop policy httpV2:exemplars=true;labelsContext=source_namespace,destination_namespace";

fn metrics(spec: &str) -> Metrics {
    Metrics::new(&MetricsConfig::from_flag(spec).unwrap()).unwrap()
}

fn line<'a>(body: &'a str, prefix: &str) -> &'a str {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix} in\n{body}"))
}

#[test]
fn http_counter_and_histogram_carry_the_trace_id_in_openmetrics() {
    let m = metrics(EXAMPLE);
    m.observe(&http_flow(
        L7FlowType::Response,
        200,
        7_000_000,
        Some(TRACE_A),
    ));
    let (ct, body) = m.render(OM);
    assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
    assert!(body.ends_with("# EOF\n"));
    assert_eq!(
        line(&body, "hubble_http_requests_total{"),
        format!(
            r#"hubble_http_requests_total{{source_namespace="web",destination_namespace="store",method="GET",protocol="HTTP/1.1",status="200",reporter="client"}} 1 # {{traceID="{TRACE_A}"}} 1.0"#
        )
    );
    assert_eq!(
        line(
            &body,
            r#"hubble_http_request_duration_seconds_bucket{le="0.01",source_namespace="web",destination_namespace="store",method="GET",reporter="client"}"#
        ),
        format!(
            r#"hubble_http_request_duration_seconds_bucket{{le="0.01",source_namespace="web",destination_namespace="store",method="GET",reporter="client"}} 1 # {{traceID="{TRACE_A}"}} 0.007"#
        )
    );
}

#[test]
fn prometheus_text_never_shows_exemplars() {
    let m = metrics(EXAMPLE);
    m.observe(&http_flow(
        L7FlowType::Response,
        200,
        7_000_000,
        Some(TRACE_A),
    ));
    for accept in [
        None,
        Some("text/plain;version=0.0.4"),
        Some("application/openmetrics-text;q=0"),
    ] {
        let (ct, body) = m.render(accept);
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{accept:?}");
        assert!(!body.contains("traceID"), "{accept:?}\n{body}");
        assert!(body.contains("hubble_http_requests_total{"));
    }
}

#[test]
fn without_exemplars_option_or_trace_id_no_exemplar_is_written() {
    let m = metrics("httpV2");
    m.observe(&http_flow(L7FlowType::Response, 200, 1_000, Some(TRACE_A)));
    assert!(!m.render(OM).1.contains("traceID"));
    let m = metrics(EXAMPLE);
    m.observe(&http_flow(L7FlowType::Response, 200, 1_000, None));
    // Malformed ids (upper case, all zero) are not trace ids.
    m.observe(&http_flow(
        L7FlowType::Response,
        200,
        1_000,
        Some("4BF92F3577B34DA6A3CE929D0E0E4736"),
    ));
    m.observe(&http_flow(
        L7FlowType::Response,
        200,
        1_000,
        Some("00000000000000000000000000000000"),
    ));
    assert!(!m.render(OM).1.contains("traceID"));
}

#[test]
fn a_later_exemplar_replaces_the_earlier_one_and_untraced_updates_keep_it() {
    let m = metrics(EXAMPLE);
    m.observe(&http_flow(L7FlowType::Response, 200, 1_000, Some(TRACE_A)));
    m.observe(&http_flow(L7FlowType::Response, 200, 1_000, Some(TRACE_B)));
    m.observe(&http_flow(L7FlowType::Response, 200, 1_000, None));
    let body = m.render(OM).1;
    let l = line(&body, "hubble_http_requests_total{");
    assert!(
        l.contains(&format!(r#"}} 3 # {{traceID="{TRACE_B}"}} 1.0"#)),
        "{l}"
    );
}

#[test]
fn drop_and_policy_of_a_traced_connection_carry_its_trace_id_in_either_direction() {
    let m = metrics(EXAMPLE);
    let t0 = Instant::now();
    m.observe_at(&http_flow(L7FlowType::Request, 0, 0, Some(TRACE_A)), t0);
    assert_eq!(m.traced_connections(), 1);
    // The denial is seen server → client: the same connection, reversed.
    m.observe_at(&reversed(drop_flow()), t0 + Duration::from_secs(1));
    m.observe_at(
        &policy_verdict(Verdict::Dropped, 0),
        t0 + Duration::from_secs(1),
    );
    let body = m.render(OM).1;
    assert!(
        line(&body, "hubble_drop_total{").ends_with(&format!(r#"# {{traceID="{TRACE_A}"}} 1.0"#)),
        "{body}"
    );
    let policy = body
        .lines()
        .find(|l| {
            l.starts_with("hubble_policy_verdicts_total{") && l.contains("action=\"dropped\"")
        })
        .unwrap();
    assert!(
        policy.ends_with(&format!(r#"# {{traceID="{TRACE_A}"}} 1.0"#)),
        "{policy}"
    );
}

#[test]
fn connection_trace_ids_expire_after_the_ttl_and_the_expiry_is_counted() {
    let mut cfg = MetricsConfig::from_flag(EXAMPLE).unwrap();
    cfg.trace_ttl = Duration::from_secs(30);
    let m = Metrics::new(&cfg).unwrap();
    let t0 = Instant::now();
    m.observe_at(&http_flow(L7FlowType::Request, 0, 0, Some(TRACE_A)), t0);
    m.observe_at(&drop_flow(), t0 + Duration::from_secs(31));
    let body = m.render(OM).1;
    assert!(
        !line(&body, "hubble_drop_total{").contains("traceID"),
        "{body}"
    );
    assert!(
        body.contains(r#"webb_trace_map_evictions_total{reason="expired"} 1"#),
        "{body}"
    );
}

#[test]
fn the_connection_map_is_bounded_and_counts_capacity_evictions() {
    let mut cfg = MetricsConfig::from_flag(EXAMPLE).unwrap();
    cfg.trace_map_capacity = 2;
    let m = Metrics::new(&cfg).unwrap();
    for port in 0..5u32 {
        let mut f = http_flow(L7FlowType::Request, 0, 0, Some(TRACE_A));
        if let Some(Some(layer4::Protocol::Tcp(t))) = f.l4.as_mut().map(|l| l.protocol.as_mut()) {
            t.source_port = 50000 + port;
        }
        m.observe(&f);
    }
    assert_eq!(m.traced_connections(), 2);
    assert!(
        m.render(OM)
            .1
            .contains(r#"webb_trace_map_evictions_total{reason="capacity"} 3"#)
    );
}

#[test]
fn drop_exemplars_can_be_switched_off_per_metric() {
    let m = metrics("drop:exemplars=false httpV2:exemplars=true");
    m.observe(&http_flow(L7FlowType::Request, 0, 0, Some(TRACE_A)));
    m.observe(&drop_flow());
    assert!(!line(&m.render(OM).1, "hubble_drop_total{").contains("traceID"));
}

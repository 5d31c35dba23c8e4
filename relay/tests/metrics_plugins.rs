//! Each Hubble metric plugin: which flows it counts and the exact labels it writes
//! (a table of flows → expected exposition lines).

mod metrics_common;

use metrics_common::*;
use relay::metrics::{Metrics, MetricsConfig};
use webb_proto::flow::*;

fn run(metrics: &str, flows: &[Flow]) -> String {
    let m = Metrics::new(&MetricsConfig::from_flag(metrics).unwrap()).unwrap();
    for f in flows {
        m.observe(f);
    }
    m.render(None).1
}

/// Sample lines of one metric only.
fn lines_of<'a>(body: &'a str, metric: &str) -> Vec<&'a str> {
    samples(body)
        .into_iter()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .collect()
}

#[test]
fn flow_plugin_labels_protocol_type_subtype_and_verdict() {
    let mut capture = tcp_flow(Verdict::Forwarded, syn());
    capture.event_type = Some(CiliumEventType {
        r#type: 3,
        sub_type: 0,
    });
    let mut other = icmp_flow(false, 8, 0);
    other.event_type = Some(CiliumEventType {
        r#type: 9,
        sub_type: 0,
    });
    let body = run(
        "flow",
        &[
            tcp_flow(Verdict::Forwarded, syn()),
            drop_flow(),
            policy_verdict(Verdict::Forwarded, 2),
            http_flow(L7FlowType::Request, 0, 0, None),
            capture,
            other,
        ],
    );
    let m = "hubble_flows_processed_total";
    assert_eq!(
        lines_of(&body, m),
        [
            r#"hubble_flows_processed_total{protocol="HTTP",type="L7",subtype="HTTP",verdict="FORWARDED"} 1"#,
            r#"hubble_flows_processed_total{protocol="ICMPv4",type="Unknown",subtype="9",verdict="FORWARDED"} 1"#,
            r#"hubble_flows_processed_total{protocol="TCP",type="Capture",subtype="",verdict="FORWARDED"} 1"#,
            r#"hubble_flows_processed_total{protocol="TCP",type="Drop",subtype="",verdict="DROPPED"} 1"#,
            r#"hubble_flows_processed_total{protocol="TCP",type="PolicyVerdict",subtype="",verdict="FORWARDED"} 1"#,
            r#"hubble_flows_processed_total{protocol="TCP",type="Trace",subtype="to-stack",verdict="FORWARDED"} 1"#,
        ]
    );
}

#[test]
fn drop_plugin_counts_only_dropped_flows_by_reason_and_protocol() {
    let body = run(
        "drop",
        &[
            drop_flow(),
            drop_flow(),
            tcp_flow(Verdict::Forwarded, syn()),
        ],
    );
    assert_eq!(
        lines_of(&body, "hubble_drop_total"),
        [r#"hubble_drop_total{reason="POLICY_DENIED",protocol="TCP"} 2"#]
    );
}

#[test]
fn tcp_plugin_counts_each_flag_of_forwarded_flows_with_family() {
    let fin_rst = TcpFlags {
        fin: true,
        rst: true,
        ..Default::default()
    };
    let syn_ack = TcpFlags {
        syn: true,
        ack: true,
        ..Default::default()
    };
    let mut v6 = tcp_flow(Verdict::Redirected, syn());
    if let Some(ip) = v6.ip.as_mut() {
        ip.ip_version = IpVersion::IPv6 as i32;
    }
    let body = run(
        "tcp",
        &[
            tcp_flow(Verdict::Forwarded, syn()),
            tcp_flow(Verdict::Forwarded, syn_ack),
            tcp_flow(Verdict::Forwarded, fin_rst),
            tcp_flow(Verdict::Dropped, syn()),
            tcp_flow(
                Verdict::Forwarded,
                TcpFlags {
                    ack: true,
                    ..Default::default()
                },
            ),
            v6,
        ],
    );
    assert_eq!(
        lines_of(&body, "hubble_tcp_flags_total"),
        [
            r#"hubble_tcp_flags_total{flag="FIN",family="IPv4"} 1"#,
            r#"hubble_tcp_flags_total{flag="RST",family="IPv4"} 1"#,
            r#"hubble_tcp_flags_total{flag="SYN",family="IPv4"} 1"#,
            r#"hubble_tcp_flags_total{flag="SYN",family="IPv6"} 1"#,
            r#"hubble_tcp_flags_total{flag="SYN-ACK",family="IPv4"} 1"#,
        ]
    );
}

#[test]
fn port_distribution_counts_forwarded_flows_known_not_to_be_replies() {
    let mut unknown_reply = tcp_flow(Verdict::Forwarded, syn());
    unknown_reply.is_reply = None;
    let mut reply = tcp_flow(Verdict::Forwarded, syn());
    reply.is_reply = Some(true.into());
    let body = run(
        "port-distribution",
        &[
            tcp_flow(Verdict::Forwarded, syn()),
            tcp_flow(Verdict::Dropped, syn()),
            unknown_reply,
            reply,
            icmp_flow(true, 128, 0),
        ],
    );
    assert_eq!(
        lines_of(&body, "hubble_port_distribution_total"),
        [
            r#"hubble_port_distribution_total{protocol="ICMPv6",port="0"} 1"#,
            r#"hubble_port_distribution_total{protocol="TCP",port="8080"} 1"#,
        ]
    );
}

#[test]
fn icmp_plugin_names_type_and_code_like_gopacket_and_labels_icmpv6_as_ipv6() {
    let body = run(
        "icmp",
        &[
            icmp_flow(false, 8, 0),
            icmp_flow(false, 3, 3),
            icmp_flow(false, 3, 99),
            icmp_flow(false, 42, 1),
            icmp_flow(true, 128, 0),
            icmp_flow(true, 1, 4),
        ],
    );
    assert_eq!(
        lines_of(&body, "hubble_icmp_total"),
        [
            r#"hubble_icmp_total{family="IPv4",type="42(1)"} 1"#,
            r#"hubble_icmp_total{family="IPv4",type="DestinationUnreachable(Code: 99)"} 1"#,
            r#"hubble_icmp_total{family="IPv4",type="DestinationUnreachable(Port)"} 1"#,
            r#"hubble_icmp_total{family="IPv4",type="EchoRequest"} 1"#,
            r#"hubble_icmp_total{family="IPv6",type="DestinationUnreachable(PortUnreachable)"} 1"#,
            r#"hubble_icmp_total{family="IPv6",type="EchoRequest"} 1"#,
        ]
    );
}

#[test]
fn policy_plugin_counts_verdict_events_and_l7_events_but_not_from_host() {
    let mut from_host = policy_verdict(Verdict::Forwarded, 2);
    if let Some(s) = from_host.source.as_mut() {
        s.identity = 1;
    }
    let body = run(
        "policy",
        &[
            policy_verdict(Verdict::Forwarded, 2),
            policy_verdict(Verdict::Dropped, 0),
            policy_verdict(Verdict::Audit, 6),
            from_host,
            http_flow(L7FlowType::Request, 0, 0, None),
            tcp_flow(Verdict::Forwarded, syn()),
        ],
    );
    assert_eq!(
        lines_of(&body, "hubble_policy_verdicts_total"),
        [
            r#"hubble_policy_verdicts_total{direction="egress",match="l7/http",action="forwarded"} 1"#,
            r#"hubble_policy_verdicts_total{direction="ingress",match="l3-l4",action="forwarded"} 1"#,
            r#"hubble_policy_verdicts_total{direction="ingress",match="none",action="dropped"} 1"#,
            r#"hubble_policy_verdicts_total{direction="ingress",match="proto-only",action="audit"} 1"#,
        ]
    );
}

#[test]
fn http_plugin_counts_requests_and_responses_separately_with_reporter() {
    let mut server_side = http_flow(L7FlowType::Request, 0, 0, None);
    server_side.traffic_direction = TrafficDirection::Ingress as i32;
    let body = run(
        "http:sourceContext=workload-name;destinationContext=workload-name",
        &[
            http_flow(L7FlowType::Request, 0, 0, None),
            server_side,
            http_flow(L7FlowType::Response, 503, 20_000_000, None),
        ],
    );
    assert_eq!(
        lines_of(&body, "hubble_http_requests_total"),
        [
            r#"hubble_http_requests_total{source="frontend",destination="api",method="GET",protocol="HTTP/1.1",reporter="client"} 1"#,
            r#"hubble_http_requests_total{source="frontend",destination="api",method="GET",protocol="HTTP/1.1",reporter="server"} 1"#,
        ]
    );
    // v1 keeps the response flow's own direction: server → client.
    assert_eq!(
        lines_of(&body, "hubble_http_responses_total"),
        [
            r#"hubble_http_responses_total{source="api",destination="frontend",method="GET",protocol="HTTP/1.1",status="503",reporter="client"} 1"#
        ]
    );
    assert!(samples(&body).contains(
        &r#"hubble_http_request_duration_seconds_bucket{source="api",destination="frontend",method="GET",reporter="client",le="0.025"} 1"#
    ));
    assert!(samples(&body).contains(
        &r#"hubble_http_request_duration_seconds_bucket{source="api",destination="frontend",method="GET",reporter="client",le="0.01"} 0"#
    ));
}

#[test]
fn http_v2_counts_responses_only_with_source_and_destination_swapped() {
    let body = run(
        "httpV2:sourceContext=workload-name;destinationContext=workload-name;labelsContext=source_namespace,destination_namespace",
        &[
            http_flow(L7FlowType::Request, 0, 0, None),
            http_flow(L7FlowType::Response, 200, 4_000_000, None),
        ],
    );
    assert_eq!(
        lines_of(&body, "hubble_http_requests_total"),
        [
            r#"hubble_http_requests_total{source_namespace="web",destination_namespace="store",source="frontend",destination="api",method="GET",protocol="HTTP/1.1",status="200",reporter="client"} 1"#
        ]
    );
    assert!(lines_of(&body, "hubble_http_responses_total").is_empty());
    assert!(samples(&body).contains(
        &r#"hubble_http_request_duration_seconds_sum{source_namespace="web",destination_namespace="store",source="frontend",destination="api",method="GET",reporter="client"} 0.004"#
    ));
}

#[test]
fn labels_context_uses_hubbles_fixed_order_whatever_the_order_given() {
    let body = run(
        "drop:labelsContext=traffic_direction,destination_workload,source_ip,source_app,destination_pod",
        &[drop_flow()],
    );
    assert_eq!(
        lines_of(&body, "hubble_drop_total"),
        [
            r#"hubble_drop_total{reason="POLICY_DENIED",protocol="TCP",source_ip="198.18.0.10",source_app="frontend",destination_pod="api-5c6b7-q8w7e",destination_workload="api",traffic_direction="egress"} 1"#
        ]
    );
}

#[test]
fn source_context_takes_the_first_non_empty_identifier_and_directional_overrides() {
    let mut ingress = drop_flow();
    ingress.traffic_direction = TrafficDirection::Ingress as i32;
    let body = run(
        "drop:sourceContext=dns|pod-short;sourceIngressContext=ip;destinationContext=reserved-identity|pod",
        &[drop_flow(), ingress],
    );
    assert_eq!(
        lines_of(&body, "hubble_drop_total"),
        [
            r#"hubble_drop_total{reason="POLICY_DENIED",protocol="TCP",source="198.18.0.10",destination="store/api-5c6b7-q8w7e"} 1"#,
            r#"hubble_drop_total{reason="POLICY_DENIED",protocol="TCP",source="web/frontend",destination="store/api-5c6b7-q8w7e"} 1"#,
        ]
    );
}

#[test]
fn lost_events_are_counted_by_hubble_source_and_by_webb_stage_and_node() {
    let m = Metrics::new(&MetricsConfig::from_flag("flow").unwrap()).unwrap();
    m.record_lost_event(&LostEvent {
        source: LostEventSource::HubbleRingBuffer as i32,
        num_events_lost: 7,
        ..Default::default()
    });
    m.record_stage_loss("merge", "node-a", 3);
    m.record_stage_loss("merge", "node-a", 2);
    m.set_queue_depth("l7", 12);
    let body = m.render(None).1;
    let s = samples(&body);
    assert!(
        s.contains(&r#"hubble_lost_events_total{source="HUBBLE_RING_BUFFER"} 7"#),
        "{body}"
    );
    assert!(s.contains(&r#"webb_lost_events_total{stage="merge",node="node-a"} 5"#));
    assert!(s.contains(&r#"webb_queue_depth{stage="l7"} 12"#));
    assert!(
        s.iter()
            .any(|l| l.starts_with(r#"webb_build_info{component="relay",version=""#))
    );
}

/// An L7 DNS flow as the relay's DNS stage makes it.
fn dns_flow(
    ty: L7FlowType,
    verdict: Verdict,
    query: &str,
    qtypes: &[&str],
    rcode: u32,
    ips: &[&str],
    rrtypes: &[&str],
) -> Flow {
    let mut f = tcp_flow(verdict, syn());
    f.l4 = None;
    f.r#type = FlowType::L7 as i32;
    f.event_type = Some(CiliumEventType {
        r#type: 129,
        sub_type: 0,
    });
    f.is_reply = Some((ty == L7FlowType::Response).into());
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    f.l7 = Some(Layer7 {
        r#type: ty as i32,
        latency_ns: 0,
        record: Some(layer7::Record::Dns(Dns {
            query: query.into(),
            ips: strings(ips),
            rcode,
            qtypes: strings(qtypes),
            rrtypes: strings(rrtypes),
            observation_source: "datapath".into(),
            ..Default::default()
        })),
    });
    f
}

#[test]
fn dns_plugin_counts_queries_responses_and_answer_types_with_hubbles_labels_and_options() {
    use L7FlowType::{Request, Response};
    let fwd = Verdict::Forwarded;
    let flows = [
        dns_flow(Request, fwd, "a.example.", &["A"], 0, &[], &[]),
        dns_flow(
            Response,
            fwd,
            "a.example.",
            &["A"],
            0,
            &["198.18.0.1", "198.18.0.2"],
            &["CNAME", "A", "A"],
        ),
        dns_flow(Response, fwd, "nope.example.", &["A"], 3, &[], &[]),
        // A query the datapath dropped: Hubble's "Policy denied".
        dns_flow(Request, Verdict::Dropped, "x.example.", &["A"], 0, &[], &[]),
        // AAAA only: counted unless ignoreAAAA.
        dns_flow(Request, fwd, "a.example.", &["AAAA"], 0, &[], &[]),
    ];
    let body = run("dns", &flows);
    assert_eq!(
        lines_of(&body, "hubble_dns_queries_total"),
        [
            r#"hubble_dns_queries_total{rcode="",qtypes="A",ips_returned="0"} 1"#,
            r#"hubble_dns_queries_total{rcode="",qtypes="AAAA",ips_returned="0"} 1"#,
            r#"hubble_dns_queries_total{rcode="Policy denied",qtypes="A",ips_returned="0"} 1"#,
        ]
    );
    assert_eq!(
        lines_of(&body, "hubble_dns_responses_total"),
        [
            r#"hubble_dns_responses_total{rcode="No Error",qtypes="A",ips_returned="2"} 1"#,
            r#"hubble_dns_responses_total{rcode="Non-Existent Domain",qtypes="A",ips_returned="0"} 1"#,
        ]
    );
    assert_eq!(
        lines_of(&body, "hubble_dns_response_types_total"),
        [
            r#"hubble_dns_response_types_total{type="A",qtypes="A"} 2"#,
            r#"hubble_dns_response_types_total{type="CNAME",qtypes="A"} 1"#,
        ]
    );

    let body = run(
        "dns:query;ignoreAAAA;labelsContext=source_namespace",
        &flows,
    );
    let queries = lines_of(&body, "hubble_dns_queries_total");
    assert_eq!(
        queries.len(),
        2,
        "the AAAA-only query is ignored: {queries:?}"
    );
    assert!(
        queries.contains(
            &r#"hubble_dns_queries_total{source_namespace="web",rcode="",qtypes="A",ips_returned="0",query="a.example."} 1"#
        ),
        "{queries:?}"
    );
    assert!(
        lines_of(&body, "hubble_dns_response_types_total").contains(
            &r#"hubble_dns_response_types_total{source_namespace="web",type="CNAME",qtypes="A",query="a.example."} 1"#
        ),
        "{body}"
    );
}

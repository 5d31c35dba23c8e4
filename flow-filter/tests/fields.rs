//! Each FlowFilter field, as a table: a filter (Hubble's raw-filter JSON), a flow, and whether
//! the flow is selected. Every field has at least one selecting and one rejecting row.

mod common;

use common::{allow, dns, drop, http, icmp, tcp};
use webb_proto::flow::Flow;

struct Row {
    rule: &'static str,
    filter: &'static str,
    flow: fn() -> Flow,
    selected: bool,
}

const fn row(rule: &'static str, filter: &'static str, flow: fn() -> Flow, selected: bool) -> Row {
    Row {
        rule,
        filter,
        flow,
        selected,
    }
}

fn no_endpoints() -> Flow {
    Flow {
        source: None,
        destination: None,
        ..tcp()
    }
}

fn unknown_direction_forwarded() -> Flow {
    Flow {
        is_reply: None,
        ..tcp()
    }
}

fn http_bad_url() -> Flow {
    let mut f = http();
    if let Some(webb_proto::flow::layer7::Record::Http(h)) =
        f.l7.as_mut().and_then(|l| l.record.as_mut())
    {
        h.url = "not a request uri".into();
    }
    f
}

const ROWS: &[Row] = &[
    // --- source_ip / destination_ip / source_ip_xlated: exact or CIDR
    row(
        "source_ip exact",
        r#"{"source_ip":["198.18.0.10"]}"#,
        tcp,
        true,
    ),
    row(
        "source_ip other",
        r#"{"source_ip":["198.18.0.11"]}"#,
        tcp,
        false,
    ),
    row(
        "source_ip CIDR",
        r#"{"source_ip":["198.18.0.0/24"]}"#,
        tcp,
        true,
    ),
    row(
        "source_ip CIDR with host bits",
        r#"{"source_ip":["198.18.0.99/24"]}"#,
        tcp,
        true,
    ),
    row(
        "source_ip CIDR outside",
        r#"{"source_ip":["198.19.0.0/16"]}"#,
        tcp,
        false,
    ),
    row(
        "source_ip IPv6 non-canonical",
        r#"{"source_ip":["2001:0002:0::10"]}"#,
        dns,
        true,
    ),
    row(
        "source_ip IPv6 CIDR",
        r#"{"source_ip":["2001:2::/48"]}"#,
        dns,
        true,
    ),
    row(
        "source_ip v4 CIDR vs v6 flow",
        r#"{"source_ip":["198.18.0.0/15"]}"#,
        dns,
        false,
    ),
    row(
        "destination_ip exact",
        r#"{"destination_ip":["198.18.0.20"]}"#,
        tcp,
        true,
    ),
    row(
        "destination_ip is not source",
        r#"{"destination_ip":["198.18.0.10"]}"#,
        tcp,
        false,
    ),
    row(
        "source_ip_xlated",
        r#"{"source_ip_xlated":["198.18.1.0/24"]}"#,
        tcp,
        true,
    ),
    row(
        "source_ip_xlated unset",
        r#"{"source_ip_xlated":["198.18.1.1"]}"#,
        dns,
        false,
    ),
    // --- source_pod / destination_pod: [namespace/][name-prefix], bare name = default ns
    row(
        "source_pod ns/prefix",
        r#"{"source_pod":["shop/web-"]}"#,
        tcp,
        true,
    ),
    row("source_pod ns/", r#"{"source_pod":["shop/"]}"#, tcp, true),
    row(
        "source_pod wrong ns",
        r#"{"source_pod":["other/web-"]}"#,
        tcp,
        false,
    ),
    row(
        "source_pod prefix mismatch",
        r#"{"source_pod":["shop/api"]}"#,
        tcp,
        false,
    ),
    row(
        "source_pod bare name = default ns",
        r#"{"source_pod":["curl"]}"#,
        drop,
        true,
    ),
    row(
        "source_pod bare name not in shop",
        r#"{"source_pod":["web"]}"#,
        tcp,
        false,
    ),
    row(
        "source_pod /name = empty ns",
        r#"{"source_pod":["/web"]}"#,
        tcp,
        false,
    ),
    row(
        "destination_pod",
        r#"{"destination_pod":["shop/db-0"]}"#,
        tcp,
        true,
    ),
    row(
        "destination_pod world has no pod",
        r#"{"destination_pod":["shop/"]}"#,
        icmp,
        false,
    ),
    // --- source_service / destination_service: same syntax as pods
    row(
        "source_service",
        r#"{"source_service":["shop/web"]}"#,
        tcp,
        true,
    ),
    row(
        "source_service other",
        r#"{"source_service":["shop/api"]}"#,
        tcp,
        false,
    ),
    row(
        "destination_service",
        r#"{"destination_service":["shop/"]}"#,
        http,
        true,
    ),
    row(
        "destination_service absent",
        r#"{"destination_service":["shop/"]}"#,
        icmp,
        false,
    ),
    // --- source_label / destination_label / node_labels: Kubernetes selectors
    row(
        "source_label k8s:",
        r#"{"source_label":["k8s:app=web"]}"#,
        tcp,
        true,
    ),
    row(
        "source_label no source prefix",
        r#"{"source_label":["app=web"]}"#,
        tcp,
        true,
    ),
    row(
        "source_label other value",
        r#"{"source_label":["app=db"]}"#,
        tcp,
        false,
    ),
    row(
        "source_label in",
        r#"{"source_label":["app in (db, web)"]}"#,
        tcp,
        true,
    ),
    row(
        "source_label notin",
        r#"{"source_label":["app notin (db, web)"]}"#,
        tcp,
        false,
    ),
    row(
        "source_label !=",
        r#"{"source_label":["app!=db"]}"#,
        tcp,
        true,
    ),
    row(
        "source_label exists",
        r#"{"source_label":["k8s:io.kubernetes.pod.namespace"]}"#,
        tcp,
        true,
    ),
    row(
        "source_label !exists",
        r#"{"source_label":["!app"]}"#,
        tcp,
        false,
    ),
    row(
        "source_label comma is AND",
        r#"{"source_label":["app=web,k8s:io.kubernetes.pod.namespace=shop"]}"#,
        tcp,
        true,
    ),
    row(
        "source_label comma AND fails",
        r#"{"source_label":["app=web,k8s:io.kubernetes.pod.namespace=kube-system"]}"#,
        tcp,
        false,
    ),
    row(
        "source_label wrong source",
        r#"{"source_label":["container:app=web"]}"#,
        tcp,
        false,
    ),
    row(
        "source_label key with /",
        r#"{"source_label":["k8s:app.kubernetes.io/name=web"]}"#,
        tcp,
        true,
    ),
    row(
        "destination_label reserved",
        r#"{"destination_label":["reserved:world"]}"#,
        icmp,
        true,
    ),
    row(
        "destination_label",
        r#"{"destination_label":["app=web"]}"#,
        tcp,
        false,
    ),
    row(
        "source_label !x without endpoint",
        r#"{"source_label":["!app"]}"#,
        no_endpoints,
        true,
    ),
    row(
        "node_labels",
        r#"{"node_labels":["topology.kubernetes.io/zone=z1"]}"#,
        tcp,
        true,
    ),
    row(
        "node_labels other zone",
        r#"{"node_labels":["topology.kubernetes.io/zone in (z2, z3)"]}"#,
        tcp,
        false,
    ),
    // --- verdict
    row("verdict", r#"{"verdict":["FORWARDED"]}"#, tcp, true),
    row("verdict other", r#"{"verdict":["DROPPED"]}"#, tcp, false),
    // --- event_type: type, and sub_type only when match_sub_type
    row(
        "event_type type",
        r#"{"event_type":[{"type":4}]}"#,
        tcp,
        true,
    ),
    row(
        "event_type type other",
        r#"{"event_type":[{"type":1}]}"#,
        tcp,
        false,
    ),
    row(
        "event_type sub_type ignored",
        r#"{"event_type":[{"type":1,"sub_type":5}]}"#,
        drop,
        true,
    ),
    row(
        "event_type sub_type matched",
        r#"{"event_type":[{"type":1,"match_sub_type":true,"sub_type":133}]}"#,
        drop,
        true,
    ),
    row(
        "event_type sub_type differs",
        r#"{"event_type":[{"type":1,"match_sub_type":true,"sub_type":5}]}"#,
        drop,
        false,
    ),
    row(
        "event_type type 0 = any type",
        r#"{"event_type":[{"match_sub_type":true,"sub_type":133}]}"#,
        drop,
        true,
    ),
    // --- protocol
    row("protocol tcp", r#"{"protocol":["tcp"]}"#, tcp, true),
    row(
        "protocol case-insensitive",
        r#"{"protocol":["TCP"]}"#,
        tcp,
        true,
    ),
    row("protocol udp vs tcp", r#"{"protocol":["udp"]}"#, tcp, false),
    row(
        "protocol icmp covers v4",
        r#"{"protocol":["icmp"]}"#,
        icmp,
        true,
    ),
    row(
        "protocol icmpv6 vs v4",
        r#"{"protocol":["icmpv6"]}"#,
        icmp,
        false,
    ),
    row("protocol http", r#"{"protocol":["http"]}"#, http, true),
    row("protocol dns", r#"{"protocol":["dns"]}"#, dns, true),
    row(
        "protocol dns vs http",
        r#"{"protocol":["dns"]}"#,
        http,
        false,
    ),
    row(
        "protocol tcp on an L7 flow",
        r#"{"protocol":["tcp"]}"#,
        http,
        true,
    ),
    row("protocol sctp", r#"{"protocol":["sctp"]}"#, tcp, false),
    // --- source_port / destination_port
    row(
        "destination_port",
        r#"{"destination_port":["5432"]}"#,
        tcp,
        true,
    ),
    row(
        "destination_port other",
        r#"{"destination_port":["80"]}"#,
        tcp,
        false,
    ),
    row("source_port", r#"{"source_port":["41000"]}"#, tcp, true),
    row(
        "source_port other",
        r#"{"source_port":["5432"]}"#,
        tcp,
        false,
    ),
    row(
        "destination_port udp",
        r#"{"destination_port":["53"]}"#,
        dns,
        true,
    ),
    row(
        "destination_port leading zero",
        r#"{"destination_port":["053"]}"#,
        dns,
        true,
    ),
    row(
        "destination_port icmp has none",
        r#"{"destination_port":["0"]}"#,
        icmp,
        false,
    ),
    // --- http_status_code
    row(
        "http_status_code exact",
        r#"{"http_status_code":["404"]}"#,
        http,
        true,
    ),
    row(
        "http_status_code 4+",
        r#"{"http_status_code":["4+"]}"#,
        http,
        true,
    ),
    row(
        "http_status_code 40+",
        r#"{"http_status_code":["40+"]}"#,
        http,
        true,
    ),
    row(
        "http_status_code 5+",
        r#"{"http_status_code":["5+"]}"#,
        http,
        false,
    ),
    row(
        "http_status_code non-HTTP flow",
        r#"{"http_status_code":["4+"]}"#,
        tcp,
        false,
    ),
    // --- http_method
    row("http_method", r#"{"http_method":["GET"]}"#, http, true),
    row(
        "http_method case-insensitive",
        r#"{"http_method":["get"]}"#,
        http,
        true,
    ),
    row(
        "http_method other",
        r#"{"http_method":["POST"]}"#,
        http,
        false,
    ),
    // --- http_path (regex on the decoded path) and http_url (regex on the URL)
    row("http_path", r#"{"http_path":["^/cart/"]}"#, http, true),
    row(
        "http_path excludes query",
        r#"{"http_path":["id=1"]}"#,
        http,
        false,
    ),
    row(
        "http_path excludes host",
        r#"{"http_path":["^/api"]}"#,
        http,
        false,
    ),
    row(
        "http_path unparseable URL",
        r#"{"http_path":[".*"]}"#,
        http_bad_url,
        false,
    ),
    row(
        "http_url",
        r#"{"http_url":["api\\.shop\\.svc:8080/cart"]}"#,
        http,
        true,
    ),
    row("http_url query", r#"{"http_url":["id=1$"]}"#, http, true),
    row(
        "http_url other",
        r#"{"http_url":["/checkout"]}"#,
        http,
        false,
    ),
    // --- http_header: key and/or value, exact
    row(
        "http_header key+value",
        r#"{"http_header":[{"key":"user-agent","value":"curl/8.5"}]}"#,
        http,
        true,
    ),
    row(
        "http_header key only",
        r#"{"http_header":[{"key":"traceparent"}]}"#,
        http,
        true,
    ),
    row(
        "http_header value differs",
        r#"{"http_header":[{"key":"user-agent","value":"wget"}]}"#,
        http,
        false,
    ),
    row(
        "http_header on L3/L4",
        r#"{"http_header":[{"key":"user-agent"}]}"#,
        tcp,
        false,
    ),
    // --- trace_id (exact), uuid (exact)
    row(
        "trace_id",
        r#"{"trace_id":["4bf92f3577b34da6a3ce929d0e0e4736"]}"#,
        http,
        true,
    ),
    row(
        "trace_id other",
        r#"{"trace_id":["00000000000000000000000000000001"]}"#,
        http,
        false,
    ),
    row(
        "uuid",
        r#"{"uuid":["0b4c4f6e-5d1b-4b3e-9a55-3f1d2c0e7a01"]}"#,
        tcp,
        true,
    ),
    row("uuid other", r#"{"uuid":["0b4c4f6e"]}"#, tcp, false),
    // --- node_name: glob, [cluster/]node, no cluster = default
    row("node_name exact", r#"{"node_name":["node-a"]}"#, tcp, true),
    row("node_name glob", r#"{"node_name":["node-*"]}"#, tcp, true),
    row(
        "node_name default cluster",
        r#"{"node_name":["default/node-a"]}"#,
        tcp,
        true,
    ),
    row(
        "node_name other cluster",
        r#"{"node_name":["prod/node-a"]}"#,
        tcp,
        false,
    ),
    row(
        "node_name cluster/",
        r#"{"node_name":["prod/"]}"#,
        drop,
        true,
    ),
    row(
        "node_name other",
        r#"{"node_name":["node-c*"]}"#,
        tcp,
        false,
    ),
    // --- source_identity / destination_identity
    row(
        "source_identity",
        r#"{"source_identity":[1234]}"#,
        tcp,
        true,
    ),
    row(
        "source_identity other",
        r#"{"source_identity":[5678]}"#,
        tcp,
        false,
    ),
    row(
        "destination_identity",
        r#"{"destination_identity":[5678]}"#,
        tcp,
        true,
    ),
    row(
        "destination_identity other",
        r#"{"destination_identity":[1234]}"#,
        tcp,
        false,
    ),
    row(
        "destination_identity world",
        r#"{"destination_identity":[2]}"#,
        icmp,
        true,
    ),
    // --- source_workload / destination_workload: name and/or kind
    row(
        "source_workload name",
        r#"{"source_workload":[{"name":"web"}]}"#,
        tcp,
        true,
    ),
    row(
        "source_workload kind",
        r#"{"source_workload":[{"kind":"Deployment"}]}"#,
        tcp,
        true,
    ),
    row(
        "source_workload name+kind",
        r#"{"source_workload":[{"name":"web","kind":"StatefulSet"}]}"#,
        tcp,
        false,
    ),
    row(
        "destination_workload",
        r#"{"destination_workload":[{"name":"db","kind":"StatefulSet"}]}"#,
        tcp,
        true,
    ),
    row(
        "destination_workload kind differs",
        r#"{"destination_workload":[{"kind":"Deployment"}]}"#,
        tcp,
        false,
    ),
    // --- traffic_direction
    row(
        "traffic_direction",
        r#"{"traffic_direction":["EGRESS"]}"#,
        tcp,
        true,
    ),
    row(
        "traffic_direction other",
        r#"{"traffic_direction":["INGRESS"]}"#,
        tcp,
        false,
    ),
    // --- drop_reason_desc: only dropped flows
    row(
        "drop_reason_desc",
        r#"{"drop_reason_desc":["POLICY_DENIED"]}"#,
        drop,
        true,
    ),
    row(
        "drop_reason_desc other",
        r#"{"drop_reason_desc":["POLICY_DENY"]}"#,
        drop,
        false,
    ),
    row(
        "drop_reason_desc on forwarded",
        r#"{"drop_reason_desc":["DROP_REASON_UNKNOWN"]}"#,
        tcp,
        false,
    ),
    // --- tcp_flags: any listed set whose flags are all present
    row(
        "tcp_flags SYN",
        r#"{"tcp_flags":[{"SYN":true}]}"#,
        tcp,
        true,
    ),
    row(
        "tcp_flags SYN+ACK",
        r#"{"tcp_flags":[{"SYN":true,"ACK":true}]}"#,
        tcp,
        false,
    ),
    row(
        "tcp_flags FIN or SYN",
        r#"{"tcp_flags":[{"FIN":true},{"SYN":true}]}"#,
        tcp,
        true,
    ),
    row(
        "tcp_flags on UDP",
        r#"{"tcp_flags":[{"SYN":true}]}"#,
        dns,
        false,
    ),
    // --- ip_version
    row("ip_version v4", r#"{"ip_version":["IPv4"]}"#, tcp, true),
    row("ip_version v6", r#"{"ip_version":["IPv6"]}"#, tcp, false),
    row(
        "ip_version v6 flow",
        r#"{"ip_version":["IPv6"]}"#,
        dns,
        true,
    ),
    // --- reply: unknown counts as false for drops only
    row("reply false", r#"{"reply":[false]}"#, tcp, true),
    row("reply true", r#"{"reply":[true]}"#, tcp, false),
    row("reply true on reply", r#"{"reply":[true]}"#, http, true),
    row(
        "reply false on unknown drop",
        r#"{"reply":[false]}"#,
        drop,
        true,
    ),
    row(
        "reply false on unknown forward",
        r#"{"reply":[false]}"#,
        unknown_direction_forwarded,
        false,
    ),
    // --- source_fqdn / destination_fqdn: glob on names; dns_query: regex
    row(
        "destination_fqdn",
        r#"{"destination_fqdn":["db.shop.svc.cluster.local"]}"#,
        tcp,
        true,
    ),
    row(
        "destination_fqdn glob",
        r#"{"destination_fqdn":["*.svc.cluster.local"]}"#,
        tcp,
        true,
    ),
    row(
        "destination_fqdn case/dot-insensitive pattern",
        r#"{"destination_fqdn":["DB.shop.svc.cluster.local."]}"#,
        tcp,
        true,
    ),
    row(
        "destination_fqdn other",
        r#"{"destination_fqdn":["*.example.com"]}"#,
        tcp,
        false,
    ),
    row(
        "source_fqdn",
        r#"{"source_fqdn":["web.shop.*"]}"#,
        dns,
        true,
    ),
    row("source_fqdn none", r#"{"source_fqdn":["*"]}"#, tcp, false),
    row(
        "dns_query",
        r#"{"dns_query":["example\\.com\\.$"]}"#,
        dns,
        true,
    ),
    row(
        "dns_query other",
        r#"{"dns_query":["^cilium"]}"#,
        dns,
        false,
    ),
    row("dns_query non-DNS", r#"{"dns_query":[".*"]}"#, http, false),
    // --- interface: index and/or name
    row(
        "interface name",
        r#"{"interface":[{"name":"lxc-web"}]}"#,
        tcp,
        true,
    ),
    row(
        "interface index",
        r#"{"interface":[{"index":7}]}"#,
        tcp,
        true,
    ),
    row(
        "interface index differs",
        r#"{"interface":[{"index":8,"name":"lxc-web"}]}"#,
        tcp,
        false,
    ),
    // --- cluster names
    row(
        "source_cluster_name",
        r#"{"source_cluster_name":["default"]}"#,
        tcp,
        true,
    ),
    row(
        "source_cluster_name other",
        r#"{"source_cluster_name":["east"]}"#,
        tcp,
        false,
    ),
    row(
        "destination_cluster_name",
        r#"{"destination_cluster_name":["east"]}"#,
        tcp,
        true,
    ),
    row(
        "destination_cluster_name other",
        r#"{"destination_cluster_name":["default"]}"#,
        tcp,
        false,
    ),
    // --- encrypted, ip_trace_id
    row("encrypted true", r#"{"encrypted":[true]}"#, dns, true),
    row("encrypted false", r#"{"encrypted":[false]}"#, dns, false),
    row(
        "encrypted false on plain",
        r#"{"encrypted":[false]}"#,
        tcp,
        true,
    ),
    row("ip_trace_id", r#"{"ip_trace_id":["99"]}"#, tcp, true),
    row("ip_trace_id other", r#"{"ip_trace_id":["98"]}"#, tcp, false),
];

#[test]
fn each_field_selects_and_rejects_as_hubble_does() {
    let mut failures = Vec::new();
    for r in ROWS {
        let got = allow(r.filter).matches(&(r.flow)());
        if got != r.selected {
            failures.push(format!(
                "{}: filter {} selected={got}, want {}",
                r.rule, r.filter, r.selected
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Guards the table itself: every FlowFilter field Webb evaluates appears in a selecting row
/// and in a rejecting row (fields are read from the filter JSON).
#[test]
fn every_field_has_a_selecting_and_a_rejecting_row() {
    use std::collections::BTreeMap;
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for r in ROWS {
        let v: serde_json::Value = serde_json::from_str(r.filter).unwrap();
        for key in v.as_object().unwrap().keys() {
            let e = seen.entry(key.clone()).or_default();
            if r.selected { e.0 = true } else { e.1 = true }
        }
    }
    let fields = [
        "source_cluster_name",
        "source_ip",
        "source_pod",
        "destination_ip",
        "destination_pod",
        "verdict",
        "event_type",
        "source_fqdn",
        "destination_fqdn",
        "http_status_code",
        "source_label",
        "destination_label",
        "protocol",
        "source_port",
        "destination_port",
        "reply",
        "source_service",
        "destination_service",
        "dns_query",
        "source_identity",
        "destination_identity",
        "http_method",
        "http_path",
        "tcp_flags",
        "node_name",
        "ip_version",
        "source_workload",
        "destination_workload",
        "trace_id",
        "uuid",
        "traffic_direction",
        "http_url",
        "http_header",
        "drop_reason_desc",
        "source_ip_xlated",
        "interface",
        "node_labels",
        "destination_cluster_name",
        "ip_trace_id",
        "encrypted",
    ];
    for f in fields {
        let (sel, rej) = seen.get(f).copied().unwrap_or_default();
        assert!(sel, "{f} has no selecting row");
        assert!(rej, "{f} has no rejecting row");
    }
}

//! Filter flags become allow/deny FlowFilters exactly as `hubble observe` builds them.

use serde_json::{Value, json};
use tui::flags::parse_filter_line;

/// The allow and deny lists for a filter line, each filter as its protojson document.
fn lists(line: &str) -> (Vec<Value>, Vec<Value>) {
    let lists = parse_filter_line(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    let to_json = |v: &Vec<webb_proto::flow::FlowFilter>| {
        v.iter()
            .map(|f| serde_json::to_value(f).expect("filter serialises"))
            .collect::<Vec<_>>()
    };
    (to_json(&lists.allow), to_json(&lists.deny))
}

fn allow(line: &str) -> Vec<Value> {
    let (allow, deny) = lists(line);
    assert!(deny.is_empty(), "{line}: unexpected denylist {deny:?}");
    allow
}

fn error(line: &str) -> String {
    match parse_filter_line(line) {
        Ok(l) => panic!("{line}: expected an error, got {l:?}"),
        Err(e) => e,
    }
}

#[test]
fn directional_flags_make_one_filter() {
    let cases: &[(&str, Value)] = &[
        (
            "--from-pod tools/loadgen-1",
            json!({"source_pod": ["tools/loadgen-1"]}),
        ),
        ("--to-pod store/", json!({"destination_pod": ["store/"]})),
        (
            "--from-ip 198.19.1.0/24",
            json!({"source_ip": ["198.19.1.0/24"]}),
        ),
        (
            "--to-ip 198.19.2.20",
            json!({"destination_ip": ["198.19.2.20"]}),
        ),
        (
            "--snat-ip 198.19.9.9",
            json!({"source_ip_xlated": ["198.19.9.9"]}),
        ),
        ("--from-label app=web", json!({"source_label": ["app=web"]})),
        (
            "--to-label reserved:world",
            json!({"destination_label": ["reserved:world"]}),
        ),
        (
            "--from-service store/api",
            json!({"source_service": ["store/api"]}),
        ),
        (
            "--to-service store/api",
            json!({"destination_service": ["store/api"]}),
        ),
        ("--from-port 40312", json!({"source_port": ["40312"]})),
        ("--to-port 8080", json!({"destination_port": ["8080"]})),
        (
            "--from-fqdn *.example.com",
            json!({"source_fqdn": ["*.example.com"]}),
        ),
        (
            "--to-fqdn api.example.com",
            json!({"destination_fqdn": ["api.example.com"]}),
        ),
        (
            "--from-workload Deployment/api",
            json!({"source_workload": [{"kind": "Deployment", "name": "api"}]}),
        ),
        (
            "--to-workload api",
            json!({"destination_workload": [{"name": "api"}]}),
        ),
        ("--from-identity 30211", json!({"source_identity": [30211]})),
        ("--to-identity world", json!({"destination_identity": [2]})),
        (
            "--from-cluster east",
            json!({"source_cluster_name": ["east"]}),
        ),
        (
            "--to-cluster west",
            json!({"destination_cluster_name": ["west"]}),
        ),
        ("--verdict DROPPED", json!({"verdict": ["DROPPED"]})),
        ("--verdict forwarded", json!({"verdict": ["FORWARDED"]})),
        (
            "--drop-reason-desc POLICY_DENIED",
            json!({"drop_reason_desc": ["POLICY_DENIED"]}),
        ),
        ("--type l7", json!({"event_type": [{"type": 129}]})),
        ("--type drop", json!({"event_type": [{"type": 1}]})),
        (
            "--type policy-verdict",
            json!({"event_type": [{"type": 5}]}),
        ),
        (
            "-t trace:to-stack",
            json!({"event_type": [{"type": 4, "match_sub_type": true, "sub_type": 3}]}),
        ),
        (
            "-t trace:to-endpoint",
            json!({"event_type": [{"type": 4, "match_sub_type": true}]}),
        ),
        (
            "-t 4:11",
            json!({"event_type": [{"type": 4, "match_sub_type": true, "sub_type": 11}]}),
        ),
        ("--protocol tcp", json!({"protocol": ["tcp"]})),
        ("--http-status 5+", json!({"http_status_code": ["5+"]})),
        ("--http-method get", json!({"http_method": ["get"]})),
        ("--http-path ^/items", json!({"http_path": ["^/items"]})),
        (
            "--http-url http://.*/items",
            json!({"http_url": ["http://.*/items"]}),
        ),
        (
            "--http-header traceparent:00-abc",
            json!({"http_header": [{"key": "traceparent", "value": "00-abc"}]}),
        ),
        (
            "--trace-id 4bf92f3577b34da6a3ce929d0e0e4736",
            json!({"trace_id": ["4bf92f3577b34da6a3ce929d0e0e4736"]}),
        ),
        ("--ip-trace-id 42", json!({"ip_trace_id": ["42"]})),
        (
            "--traffic-direction Egress",
            json!({"traffic_direction": ["EGRESS"]}),
        ),
        ("--node-name vn2", json!({"node_name": ["vn2"]})),
        ("--node-label zone=a", json!({"node_labels": ["zone=a"]})),
        (
            "--uuid 6f1c2a8e-0000-4000-8000-000000000001",
            json!({"uuid": ["6f1c2a8e-0000-4000-8000-000000000001"]}),
        ),
        (
            "--tcp-flags syn,ACK",
            json!({"tcp_flags": [{"SYN": true, "ACK": true}]}),
        ),
        ("-4", json!({"ip_version": ["IPv4"]})),
        ("--ipv6", json!({"ip_version": ["IPv6"]})),
        ("--ip-version none", json!({"ip_version": ["IP_NOT_USED"]})),
        (
            "--interface lxccli",
            json!({"interface": [{"name": "lxccli"}]}),
        ),
        ("--encrypted", json!({"encrypted": [true]})),
        ("--unencrypted", json!({"encrypted": [false]})),
        (
            "--cel-expression true",
            json!({"experimental": {"cel_expression": ["true"]}}),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(allow(line), vec![want.clone()], "{line}");
    }
}

#[test]
fn either_end_flags_make_a_source_and_a_destination_filter() {
    let cases: &[(&str, Value, Value)] = &[
        (
            "--pod tools/loadgen-1",
            json!({"source_pod": ["tools/loadgen-1"]}),
            json!({"destination_pod": ["tools/loadgen-1"]}),
        ),
        (
            "--ip 198.19.2.20",
            json!({"source_ip": ["198.19.2.20"]}),
            json!({"destination_ip": ["198.19.2.20"]}),
        ),
        (
            "-l app=api",
            json!({"source_label": ["app=api"]}),
            json!({"destination_label": ["app=api"]}),
        ),
        (
            "--port 8080",
            json!({"source_port": ["8080"]}),
            json!({"destination_port": ["8080"]}),
        ),
        (
            "--workload api",
            json!({"source_workload": [{"name": "api"}]}),
            json!({"destination_workload": [{"name": "api"}]}),
        ),
        (
            "--service store/api",
            json!({"source_service": ["store/api"]}),
            json!({"destination_service": ["store/api"]}),
        ),
        (
            "--identity host",
            json!({"source_identity": [1]}),
            json!({"destination_identity": [1]}),
        ),
        (
            "--fqdn example.com",
            json!({"source_fqdn": ["example.com"]}),
            json!({"destination_fqdn": ["example.com"]}),
        ),
        (
            "--cluster east",
            json!({"source_cluster_name": ["east"]}),
            json!({"destination_cluster_name": ["east"]}),
        ),
        (
            "-n store",
            json!({"source_pod": ["store/"]}),
            json!({"destination_pod": ["store/"]}),
        ),
    ];
    for (line, left, right) in cases {
        assert_eq!(allow(line), vec![left.clone(), right.clone()], "{line}");
    }
}

#[test]
fn other_flags_are_copied_into_both_filters_of_an_either_end_flag() {
    assert_eq!(
        allow("--label app=api --to-port 8080"),
        vec![
            json!({"source_label": ["app=api"], "destination_port": ["8080"]}),
            json!({"destination_label": ["app=api"], "destination_port": ["8080"]}),
        ]
    );
    assert_eq!(
        allow("--namespace store --protocol tcp"),
        vec![
            json!({"source_pod": ["store/"], "protocol": ["tcp"]}),
            json!({"destination_pod": ["store/"], "protocol": ["tcp"]}),
        ]
    );
}

#[test]
fn repeating_a_flag_ors_its_values_and_different_flags_and() {
    assert_eq!(
        allow("--http-method put --http-method get --to-namespace foo"),
        vec![json!({"destination_pod": ["foo/"], "http_method": ["put", "get"]})]
    );
    assert_eq!(
        allow("-n a -n b"),
        vec![
            json!({"source_pod": ["a/", "b/"]}),
            json!({"destination_pod": ["a/", "b/"]}),
        ]
    );
}

#[test]
fn namespaces_prefix_pod_and_service_selectors_without_one() {
    assert_eq!(
        allow("--pod web -n store"),
        vec![
            json!({"source_pod": ["store/web"]}),
            json!({"destination_pod": ["store/web"]}),
        ]
    );
    assert_eq!(
        allow("--from-namespace a --to-namespace b"),
        vec![json!({"source_pod": ["a/"], "destination_pod": ["b/"]})]
    );
    assert_eq!(
        allow("--to-service api --to-namespace store"),
        vec![json!({"destination_service": ["store/api"]})]
    );
    assert_eq!(
        allow("-A"),
        vec![
            json!({"source_pod": ["/"]}),
            json!({"destination_pod": ["/"]})
        ]
    );
}

#[test]
fn not_negates_only_the_next_flag_into_the_denylist() {
    let (allow, deny) = lists("--from-pod default/foo --http-status 5+ --not --verdict DROPPED");
    assert_eq!(
        allow,
        vec![json!({"source_pod": ["default/foo"], "http_status_code": ["5+"]})]
    );
    assert_eq!(deny, vec![json!({"verdict": ["DROPPED"]})]);

    let (allow, deny) =
        lists("--not --http-method put --not --http-method get --not --to-namespace foo");
    assert!(allow.is_empty());
    assert_eq!(
        deny,
        vec![json!({"destination_pod": ["foo/"], "http_method": ["put", "get"]})]
    );

    let (allow, deny) = lists("--not --ip 198.19.2.20 --protocol udp");
    assert_eq!(allow, vec![json!({"protocol": ["udp"]})]);
    assert_eq!(
        deny,
        vec![
            json!({"source_ip": ["198.19.2.20"]}),
            json!({"destination_ip": ["198.19.2.20"]}),
        ]
    );
}

#[test]
fn misplaced_not_is_an_error() {
    assert_eq!(
        error("--not --not --verdict DROPPED"),
        "consecutive --not statements"
    );
    assert_eq!(
        error("--verdict DROPPED --not"),
        "trailing --not found in the arguments"
    );
}

#[test]
fn conflicting_flags_are_errors_naming_both() {
    let cases = [
        ("--ip 198.19.0.1 --from-pod a/b", "--from-pod"),
        ("--port 80 --to-port 8080", "--to-port"),
        ("--label a=b --from-label c=d", "--from-label"),
        ("--from-pod a/b -n a", "--namespace"),
        ("--identity 1 --to-identity 2", "--to-identity"),
        ("--workload a --from-workload b", "--from-workload"),
        ("--encrypted --unencrypted", "--unencrypted"),
    ];
    for (line, named) in cases {
        let e = error(line);
        assert!(
            e.contains("cannot be combined") && e.contains(named),
            "{line}: {e}"
        );
    }
    // The same flags in different lists do not conflict.
    let (allow, deny) = lists("--port 80 --not --to-port 8080");
    assert_eq!(allow.len(), 2);
    assert_eq!(deny, vec![json!({"destination_port": ["8080"]})]);
}

#[test]
fn a_pod_in_another_namespace_conflicts_with_the_namespace_flag() {
    let e = error("--pod other/web -n store");
    assert!(e.contains("namespace conflict"), "{e}");
    let e = error("--to-service b/api --to-pod a/web");
    assert!(e.contains("conflict"), "{e}");
}

#[test]
fn bad_values_are_errors_naming_flag_and_value() {
    let cases = [
        ("--verdict NOPE", "--verdict", "\"NOPE\""),
        ("--drop-reason-desc NOPE", "--drop-reason-desc", "\"NOPE\""),
        (
            "--traffic-direction sideways",
            "--traffic-direction",
            "\"sideways\"",
        ),
        ("--tcp-flags SYN,XMAS", "--tcp-flags", "XMAS"),
        ("--identity nobody", "--identity", "\"nobody\""),
        ("--type nonsense", "--type", "nonsense"),
        ("--type trace:nowhere", "--type", "nowhere"),
        ("--http-header novalue", "--http-header", "name:value"),
        ("--ip-trace-id 0", "--ip-trace-id", "greater than 0"),
    ];
    for (line, flag, detail) in cases {
        let e = error(line);
        assert!(e.contains(flag) && e.contains(detail), "{line}: {e}");
    }
    assert!(error("--bogus 1").contains("--bogus"));
    assert!(error("--verdict").contains("--verdict"));
}

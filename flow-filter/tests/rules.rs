//! How filters combine (AND within a filter, OR within a field, OR across the whitelist, any
//! blacklist match excludes) and every way a filter can be refused.

mod common;

use common::{dns, drop, filter, http, icmp, tcp};
use flow_filter::{ErrorKind, FilterList, FlowFilters};
use webb_proto::flow::Flow;

fn compile(white: &[&str], black: &[&str]) -> FlowFilters {
    let w: Vec<_> = white.iter().map(|j| filter(j)).collect();
    let b: Vec<_> = black.iter().map(|j| filter(j)).collect();
    FlowFilters::compile(&w, &b).unwrap_or_else(|e| panic!("{white:?} / {black:?}: {e}"))
}

/// The flows every rule is checked against, with their names for failure messages.
fn flows() -> [(&'static str, Flow); 5] {
    [
        ("tcp", tcp()),
        ("http", http()),
        ("dns", dns()),
        ("drop", drop()),
        ("icmp", icmp()),
    ]
}

struct Rule {
    rule: &'static str,
    whitelist: &'static [&'static str],
    blacklist: &'static [&'static str],
    /// Names of the flows (of `flows()`) that pass.
    passes: &'static [&'static str],
}

const RULES: &[Rule] = &[
    Rule {
        rule: "no filters pass everything",
        whitelist: &[],
        blacklist: &[],
        passes: &["tcp", "http", "dns", "drop", "icmp"],
    },
    Rule {
        rule: "an empty FlowFilter in the whitelist passes everything",
        whitelist: &["{}"],
        blacklist: &[],
        passes: &["tcp", "http", "dns", "drop", "icmp"],
    },
    Rule {
        rule: "an empty FlowFilter in the blacklist excludes everything",
        whitelist: &[],
        blacklist: &["{}"],
        passes: &[],
    },
    Rule {
        rule: "fields of one filter are ANDed",
        whitelist: &[r#"{"protocol":["tcp"],"verdict":["DROPPED"]}"#],
        blacklist: &[],
        passes: &["drop"],
    },
    Rule {
        rule: "values of one field are ORed",
        whitelist: &[r#"{"protocol":["dns","icmp"]}"#],
        blacklist: &[],
        passes: &["dns", "icmp"],
    },
    Rule {
        rule: "whitelist filters are ORed",
        whitelist: &[r#"{"protocol":["dns"]}"#, r#"{"verdict":["DROPPED"]}"#],
        blacklist: &[],
        passes: &["dns", "drop"],
    },
    Rule {
        rule: "any blacklist match excludes",
        whitelist: &[],
        blacklist: &[r#"{"protocol":["dns"]}"#, r#"{"verdict":["DROPPED"]}"#],
        passes: &["tcp", "http", "icmp"],
    },
    Rule {
        rule: "a blacklist filter excludes only when all its fields match",
        whitelist: &[],
        blacklist: &[r#"{"protocol":["tcp"],"verdict":["DROPPED"]}"#],
        passes: &["tcp", "http", "dns", "icmp"],
    },
    Rule {
        rule: "blacklist wins over whitelist",
        whitelist: &[r#"{"source_pod":["shop/"]}"#],
        blacklist: &[r#"{"protocol":["http"]}"#],
        passes: &["tcp", "dns", "icmp"],
    },
    Rule {
        rule: "hubble CLI shape: --from-pod shop/web --http-status 4+ --not --verdict DROPPED",
        whitelist: &[r#"{"source_pod":["shop/web"],"http_status_code":["4+"]}"#],
        blacklist: &[r#"{"verdict":["DROPPED"]}"#],
        passes: &["http"],
    },
];

#[test]
fn filters_combine_as_hubble_apply_does() {
    let mut failures = Vec::new();
    for r in RULES {
        let f = compile(r.whitelist, r.blacklist);
        let passed: Vec<&str> = flows()
            .iter()
            .filter(|(_, flow)| f.matches(flow))
            .map(|(name, _)| *name)
            .collect();
        if passed != r.passes {
            failures.push(format!(
                "{}: passed {passed:?}, want {:?}",
                r.rule, r.passes
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn is_empty_only_without_any_filter() {
    assert!(FlowFilters::compile(&[], &[]).unwrap().is_empty());
    assert!(FlowFilters::default().is_empty());
    assert!(!compile(&["{}"], &[]).is_empty());
    assert!(!compile(&[], &["{}"]).is_empty());
}

struct Refusal {
    filter: &'static str,
    field: &'static str,
    value: &'static str,
    kind: ErrorKind,
}

const fn bad(filter: &'static str, field: &'static str, value: &'static str) -> Refusal {
    Refusal {
        filter,
        field,
        value,
        kind: ErrorKind::Invalid,
    }
}

const REFUSALS: &[Refusal] = &[
    bad(
        r#"{"source_ip":["198.18.0.300"]}"#,
        "source_ip",
        "198.18.0.300",
    ),
    bad(
        r#"{"destination_ip":["198.18.0.0/33"]}"#,
        "destination_ip",
        "198.18.0.0/33",
    ),
    bad(
        r#"{"source_ip_xlated":["not-an-ip"]}"#,
        "source_ip_xlated",
        "not-an-ip",
    ),
    bad(r#"{"source_pod":[""]}"#, "source_pod", ""),
    bad(
        r#"{"destination_pod":["a/b/c"]}"#,
        "destination_pod",
        "a/b/c",
    ),
    bad(r#"{"source_service":["/"]}"#, "source_service", "/"),
    bad(
        r#"{"source_label":["app in (web"]}"#,
        "source_label",
        "app in (web",
    ),
    bad(
        r#"{"destination_label":["app=web,"]}"#,
        "destination_label",
        "app=web,",
    ),
    bad(
        r#"{"node_labels":["zone>high"]}"#,
        "node_labels",
        "zone>high",
    ),
    bad(r#"{"protocol":["quic"]}"#, "protocol", "quic"),
    bad(r#"{"source_port":["http"]}"#, "source_port", "http"),
    bad(
        r#"{"destination_port":["65536"]}"#,
        "destination_port",
        "65536",
    ),
    bad(r#"{"destination_port":["+80"]}"#, "destination_port", "+80"),
    bad(r#"{"http_status_code":["600"]}"#, "http_status_code", "600"),
    bad(r#"{"http_status_code":["4xx"]}"#, "http_status_code", "4xx"),
    bad(
        r#"{"http_status_code":["404+"]}"#,
        "http_status_code",
        "404+",
    ),
    bad(r#"{"http_path":["("]}"#, "http_path", "("),
    bad(r#"{"http_url":["[a-"]}"#, "http_url", "[a-"),
    bad(r#"{"dns_query":["*.example"]}"#, "dns_query", "*.example"),
    bad(r#"{"source_fqdn":["bad name"]}"#, "source_fqdn", "bad name"),
    bad(r#"{"destination_fqdn":[""]}"#, "destination_fqdn", ""),
    bad(r#"{"node_name":["a/b/c"]}"#, "node_name", "a/b/c"),
    bad(r#"{"node_name":["node_$"]}"#, "node_name", "node_$"),
    bad(r#"{"source_cluster_name":[""]}"#, "source_cluster_name", ""),
    bad(
        r#"{"destination_cluster_name":["east",""]}"#,
        "destination_cluster_name",
        "",
    ),
    // HTTP fields next to an event type that cannot be L7, as Hubble refuses them.
    bad(
        r#"{"event_type":[{"type":4}],"http_method":["GET"]}"#,
        "http_method",
        "GET",
    ),
    Refusal {
        filter: r#"{"experimental":{"cel_expression":["_flow.verdict == Verdict.DROPPED"]}}"#,
        field: "experimental.cel_expression",
        value: "_flow.verdict == Verdict.DROPPED",
        kind: ErrorKind::Unsupported,
    },
];

#[test]
fn each_uncompilable_value_is_refused_naming_field_and_value() {
    for r in REFUSALS {
        let e = FlowFilters::compile(&[filter(r.filter)], &[])
            .expect_err(&format!("{} should be refused", r.filter));
        assert_eq!(
            (e.list, e.index, e.field, e.value.as_str(), e.kind),
            (FilterList::Whitelist, 0, r.field, r.value, r.kind),
            "{}",
            r.filter
        );
        let msg = e.to_string();
        assert!(msg.contains(r.field) && !e.reason.is_empty(), "{msg}");
        assert!(!msg.contains('\n'), "one-line message: {msg}");
    }
}

#[test]
fn the_error_names_the_list_and_position_of_the_filter() {
    let e = FlowFilters::compile(
        &[filter("{}")],
        &[filter("{}"), filter(r#"{"http_path":["("]}"#)],
    )
    .unwrap_err();
    assert_eq!(
        (e.list, e.index, e.field),
        (FilterList::Blacklist, 1, "http_path")
    );
    assert!(
        e.to_string()
            .starts_with("invalid flow filter: blacklist[1].http_path \"(\": "),
        "{e}"
    );
}

#[test]
fn a_refused_filter_becomes_invalid_argument_naming_the_field() {
    let e = FlowFilters::compile(&[filter(r#"{"http_url":["("]}"#)], &[]).unwrap_err();
    let status = tonic::Status::from(e);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("http_url"),
        "{}",
        status.message()
    );
}

#[test]
fn http_fields_are_allowed_with_an_l7_event_type() {
    let f = compile(
        &[r#"{"event_type":[{"type":4},{"type":129}],"http_method":["get"]}"#],
        &[],
    );
    assert!(f.matches(&http()));
    assert!(!f.matches(&tcp()));
}

#[test]
fn compiled_filters_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>(_: &T) {}
    let f = compile(
        &[r#"{"http_path":["^/cart"],"source_label":["app=web"]}"#],
        &[],
    );
    shareable(&f);
    let g = f.clone();
    let handle = std::thread::spawn(move || g.matches(&http()));
    assert_eq!(handle.join().unwrap(), f.matches(&http()));
}

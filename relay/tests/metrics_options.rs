//! `--metrics` option syntax: what is accepted and how refusals name the metric and option.

use relay::metrics::{ContextId, ContextLabel, PluginKind, parse_metrics};

fn err(spec: &str) -> String {
    parse_metrics(spec).unwrap_err().to_string()
}

#[test]
fn the_documented_example_parses_into_plugins_with_their_options() {
    let p = parse_metrics(
        "flow drop tcp port-distribution icmp policy httpV2:exemplars=true;labelsContext=source_namespace,source_workload,destination_namespace,destination_workload,traffic_direction",
    )
    .unwrap();
    let kinds: Vec<_> = p.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            PluginKind::Flow,
            PluginKind::Drop,
            PluginKind::Tcp,
            PluginKind::PortDistribution,
            PluginKind::Icmp,
            PluginKind::Policy,
            PluginKind::HttpV2
        ]
    );
    assert_eq!(p[6].exemplars, Some(true));
    assert_eq!(
        p[6].context.label_names(),
        [
            "source_namespace",
            "source_workload",
            "destination_namespace",
            "destination_workload",
            "traffic_direction"
        ]
    );
    assert_eq!(p[6].context.labels[4], ContextLabel::TrafficDirection);
}

#[test]
fn context_options_accept_alternatives_and_directional_variants_case_insensitively() {
    let p = parse_metrics(
        "drop:sourceContext=namespace|pod;destinationEgressContext=ip;SourceIngressContext=app",
    )
    .unwrap();
    let c = &p[0].context;
    assert_eq!(c.source, [ContextId::Namespace, ContextId::Pod]);
    assert_eq!(c.destination_egress, [ContextId::Ip]);
    assert_eq!(c.source_ingress, [ContextId::App]);
    assert_eq!(c.label_names(), ["source", "destination"]);
}

#[test]
fn an_unknown_metric_is_refused_with_the_supported_list() {
    let e = err("flow kafka:labelsContext=source_ip");
    assert!(
        e.contains("unknown metric 'kafka'") && e.contains("httpV2") && e.contains("dns"),
        "{e}"
    );
}

#[test]
fn an_unknown_option_names_the_metric_and_the_option() {
    assert_eq!(
        err("tcp:labelContext=source_ip"),
        "metric 'tcp': unknown option 'labelContext'"
    );
    // exemplars exist only where Webb can attach them.
    assert_eq!(
        err("icmp:exemplars=true"),
        "metric 'icmp': unknown option 'exemplars'"
    );
}

#[test]
fn bad_values_name_metric_option_and_value() {
    let e = err("httpV2:labelsContext=source_namespace,source_wrkload");
    assert!(
        e.starts_with("metric 'httpV2': option 'labelsContext' has invalid value 'source_namespace,source_wrkload': unknown label 'source_wrkload'"),
        "{e}"
    );
    let e = err("flow:sourceContext=namespace|podd");
    assert!(
        e.contains("option 'sourceContext'") && e.contains("unknown context 'podd'"),
        "{e}"
    );
    let e = err("http:exemplars=yes");
    assert!(
        e.contains("metric 'http'") && e.contains("expected 'true' or 'false'"),
        "{e}"
    );
    assert_eq!(
        err("drop:sourceContext="),
        "metric 'drop': option 'sourceContext' needs a value ('sourceContext=...')"
    );
}

#[test]
fn http_and_http_v2_conflict_and_duplicates_are_refused() {
    assert_eq!(
        err("http httpV2"),
        "metrics 'http' and 'httpV2' conflict: enable only one of them"
    );
    assert_eq!(err("drop flow drop"), "metric 'drop' is enabled twice");
    assert_eq!(
        err("drop:sourceContext=ip;sourceContext=pod"),
        "metric 'drop': option 'sourceContext' is given twice"
    );
}

#[test]
fn an_empty_flag_enables_nothing() {
    assert!(parse_metrics("  ").unwrap().is_empty());
}

#[test]
fn dns_takes_hubbles_bare_word_options_and_refuses_a_value_for_them() {
    let p = parse_metrics("dns:query;ignoreAAAA;labelsContext=source_namespace").unwrap();
    assert_eq!(p[0].kind, PluginKind::Dns);
    assert!(p[0].dns.query && p[0].dns.ignore_aaaa);
    assert!(!parse_metrics("dns").unwrap()[0].dns.query);
    assert_eq!(
        err("dns:query=yes"),
        "metric 'dns': option 'query' has invalid value 'yes': takes no value (write the bare word)"
    );
    assert_eq!(err("http:query"), "metric 'http': unknown option 'query'");
    assert_eq!(
        err("dns:ignoreAAAA;ignoreaaaa"),
        "metric 'dns': option 'ignoreaaaa' is given twice"
    );
}

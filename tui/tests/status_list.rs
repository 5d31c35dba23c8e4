//! `webb status` and `webb list` print ServerStatus, nodes and namespaces in Hubble's shapes.

use tui::printer::{Format, write_namespaces, write_nodes, write_server_status};
use webb_proto::observer::{
    GetNamespacesResponse, GetNodesResponse, Namespace, Node, ServerStatusResponse, Tls,
};
use webb_proto::pbjson_types::UInt32Value;
use webb_proto::relay::NodeState;

fn relay_status() -> ServerStatusResponse {
    ServerStatusResponse {
        num_flows: 8190,
        max_flows: 16380,
        seen_flows: 123_456,
        uptime_ns: 100_000_000_000,
        num_connected_nodes: Some(UInt32Value { value: 2 }),
        num_unavailable_nodes: Some(UInt32Value { value: 1 }),
        unavailable_nodes: vec!["vn3".into()],
        version: "webb-relay 0.1.0".into(),
        flows_rate: 28.8234,
    }
}

fn status(format: Format, res: &ServerStatusResponse) -> String {
    let mut out = Vec::new();
    write_server_status(&mut out, format, res).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn compact_status_reads_like_hubble_status() {
    assert_eq!(
        status(Format::Compact, &relay_status()),
        "Current/Max Flows: 8,190/16,380 (50.00%)\n\
         Flows/s: 28.82\n\
         Connected Nodes: 2/3\n\
         Unavailable Nodes: 1\n  - vn3\n"
    );
}

#[test]
fn an_agent_status_without_node_counts_derives_the_rate_from_uptime() {
    let agent = ServerStatusResponse {
        num_flows: 10,
        max_flows: 4095,
        seen_flows: 500,
        uptime_ns: 100_000_000_000,
        ..Default::default()
    };
    assert_eq!(
        status(Format::Compact, &agent),
        "Current/Max Flows: 10/4,095 (0.24%)\nFlows/s: 5.00\n"
    );
}

#[test]
fn dict_and_table_status_list_every_field() {
    assert_eq!(
        status(Format::Dict, &relay_status()),
        "          NUM FLOWS: 8,190\n\
         \x20         MAX FLOWS: 16,380\n\
         \x20        SEEN FLOWS: 123,456\n\
         \x20  FLOWS PER SECOND: 28.82\n\
         \x20            UPTIME: 1m40s\n\
         NUM CONNECTED NODES: 2\n\
         \x20NUM UNAVAIL. NODES: 1\n\
         \x20           VERSION: webb-relay 0.1.0\n"
    );
    let table = status(Format::Table, &relay_status());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("NUM FLOWS   MAX FLOWS   SEEN FLOWS   FLOWS PER SECOND   UPTIME"));
    assert!(lines[1].starts_with("8,190       16,380      123,456      28.82              1m40s"));
}

#[test]
fn json_status_is_protojson() {
    let v: serde_json::Value =
        serde_json::from_str(&status(Format::Json, &relay_status())).unwrap();
    assert_eq!(v["num_flows"], "8190");
    assert_eq!(v["num_connected_nodes"], 2);
    assert_eq!(v["unavailable_nodes"][0], "vn3");
}

fn nodes() -> GetNodesResponse {
    GetNodesResponse {
        nodes: vec![
            Node {
                name: "vn2".into(),
                version: "0.1.0".into(),
                address: "198.18.0.2:4244".into(),
                state: NodeState::NodeUnavailable as i32,
                tls: Some(Tls {
                    enabled: false,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Node {
                name: "vn1".into(),
                address: "198.18.0.1:4244".into(),
                state: NodeState::NodeConnected as i32,
                uptime_ns: 3_600_400_000_000,
                num_flows: 2047,
                max_flows: 4095,
                seen_flows: 36_004,
                ..Default::default()
            },
        ],
    }
}

#[test]
fn nodes_are_listed_sorted_with_age_rate_and_fill() {
    let mut out = Vec::new();
    write_nodes(&mut out, "table", &nodes()).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "NAME   STATUS        AGE      FLOWS/S   CURRENT/MAX-FLOWS\n\
         vn1    Connected     1h0m0s   10.00     2047/4095 ( 49.99%)\n\
         vn2    Unavailable   N/A      N/A       N/A\n"
    );
    let mut out = Vec::new();
    write_nodes(&mut out, "wide", &nodes()).unwrap();
    let wide = String::from_utf8(out).unwrap();
    assert!(
        wide.lines()
            .next()
            .unwrap()
            .ends_with("VERSION   ADDRESS           TLS"),
        "{wide}"
    );
    assert!(
        wide.contains("0.1.0     198.18.0.2:4244   Disabled"),
        "{wide}"
    );
    assert!(wide.contains("N/A       198.18.0.1:4244   N/A"), "{wide}");
}

#[test]
fn namespaces_are_listed_with_cluster_in_wide() {
    let res = GetNamespacesResponse {
        namespaces: vec![
            Namespace {
                cluster: "default".into(),
                namespace: "store".into(),
            },
            Namespace {
                cluster: "default".into(),
                namespace: "tools".into(),
            },
        ],
    };
    let mut out = Vec::new();
    write_namespaces(&mut out, "table", &res).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "NAMESPACE\nstore\ntools\n");
    let mut out = Vec::new();
    write_namespaces(&mut out, "wide", &res).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "NAMESPACE   CLUSTER\nstore       default\ntools       default\n"
    );
}

fn policy_extras(error: bool) -> webb_proto::webb_v1::StatusExtras {
    use webb_proto::webb_v1::{NodePolicyStatus, PolicyLoadError, StatusExtras};
    StatusExtras {
        policy: vec![
            NodePolicyStatus {
                node: "vn2".into(),
                source: "/etc/webb/policy".into(),
                revision: 7,
                policies: 3,
                error: error.then(|| PolicyLoadError {
                    file: "/etc/webb/policy/shop.yaml".into(),
                    document: 2,
                    line: 14,
                    field: "spec.ingress[0].toPorts[0].ports[0].endPort".into(),
                    message: "/etc/webb/policy/shop.yaml:14: document 2 (CiliumNetworkPolicy shop/web): spec.ingress[0].toPorts[0].ports[0].endPort: 70000 is not a port".into(),
                    time: None,
                }),
                rejected: u64::from(error),
                applied: None,
            },
            // An agent without --policy says nothing about policy.
            NodePolicyStatus {
                node: "vn1".into(),
                ..Default::default()
            },
        ],
    }
}

fn policy_status(format: Format, error: bool) -> String {
    let mut out = Vec::new();
    tui::printer::write_policy_status(&mut out, format, &policy_extras(error)).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn status_shows_the_policy_revision_in_force_and_a_rejected_load_with_file_line_and_field() {
    assert_eq!(
        policy_status(Format::Compact, false),
        "Policy (vn2): revision 7 in force, 3 policies from /etc/webb/policy\n"
    );
    assert_eq!(
        policy_status(Format::Compact, true),
        "Policy (vn2): revision 7 in force, 3 policies from /etc/webb/policy\n  \
         REJECTED: the last load failed (1 since start); the revision above stays in force:\n    \
         /etc/webb/policy/shop.yaml:14: document 2 (CiliumNetworkPolicy shop/web): \
         spec.ingress[0].toPorts[0].ports[0].endPort: 70000 is not a port\n    \
         at file /etc/webb/policy/shop.yaml, document 2, line 14, field \
         spec.ingress[0].toPorts[0].ports[0].endPort\n"
    );
    let table = policy_status(Format::Table, true);
    assert!(
        table.starts_with("NODE   POLICY REVISION   POLICIES   SOURCE"),
        "{table}"
    );
    assert!(table.contains("vn2    7 "), "{table}");
    assert!(table.contains("70000 is not a port"), "{table}");
    // JSON stays Hubble's single ServerStatusResponse.
    assert_eq!(policy_status(Format::Json, true), "");
}

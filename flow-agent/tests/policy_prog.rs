//! Policy verdicts are the kernel's: the real datapath programs, with policies compiled into
//! their maps, decide crafted packets through BPF_PROG_TEST_RUN. A denied packet returns
//! TC_ACT_SHOT, an allowed one passes, for each rule kind. Needs root (BPF).
//!
//! Hooks as on an endpoint's host-side veth: TC egress carries packets *to* the pod (its
//! ingress policy), TC ingress packets *from* the pod (its egress policy).

mod datapath_support;

use std::sync::Arc;

use datapath_support::*;
use flow_agent::datapath::event::{EventKind, MatchType, RawEvent, Verdict};
use flow_agent::datapath::{Datapath, DatapathConfig, TcProgram};
use flow_agent::endpoints::Endpoints;
use flow_agent::policy::{self, PolicyEngine, RuleAction};

const PASS: i32 = -1;
const SHOT: i32 = 2;
const POLICY_DENIED: u16 = 133;
const POLICY_DENY: u16 = 181;

const ENDPOINTS: &str = r#"
endpoints:
  - {name: client-1, namespace: tools, labels: {app: client}, ips: [198.18.0.5, "2001:2::5"], interface: lxc1, node: n1}
  - {name: server-1, namespace: shop, labels: {app: server}, ips: [198.18.1.9, "2001:2:0:1::9"], interface: lxc2, node: n1}
  - {name: other-1, namespace: shop, labels: {app: other, tier: web}, ips: [198.18.1.7], interface: lxc3, node: n1}
  - {name: far-1, namespace: shop, labels: {app: far}, ips: [198.18.3.3], interface: lxc9, node: n2}
nodes:
  - {name: n1, ips: [198.18.0.1]}
  - {name: n2, ips: [198.18.3.1]}
"#;

const CLIENT: &str = "198.18.0.5";
const SERVER: &str = "198.18.1.9";
const OTHER: &str = "198.18.1.7";
const WORLD: &str = "198.19.50.1";
const FAR: &str = "198.18.3.3";
/// This node (reserved:host) and the other node (reserved:remote-node).
const HOST: &str = "198.18.0.1";
const REMOTE_NODE: &str = "198.18.3.1";

struct Fixture {
    dp: Datapath,
    engine: PolicyEngine,
    eps: Endpoints,
}

impl Fixture {
    fn new(policies: &str, audit: bool) -> Fixture {
        let cfg = DatapathConfig {
            kernel_drops: false,
            policy_audit: audit,
            ..DatapathConfig::default()
        };
        let dp = Datapath::load(cfg).expect("load datapath (needs root and BPF)");
        let eps = Endpoints::parse(ENDPOINTS, "endpoints.yaml", "n1").unwrap();
        let mut f = Fixture {
            dp,
            engine: PolicyEngine::new(),
            eps,
        };
        f.apply(policies);
        f
    }

    fn apply(&mut self, policies: &str) {
        let p = policy::parse(policies, "policy.yaml").unwrap_or_else(|e| panic!("{e}"));
        self.engine
            .apply(&mut self.dp, &self.eps, Arc::new(p), |_| {})
            .unwrap();
    }

    /// Runs one packet; returns the program's verdict and the records it wrote.
    fn run(&mut self, hook: TcProgram, pkt: &[u8]) -> (i32, Vec<Vec<u8>>) {
        let (rc, _) = self.dp.test_run(hook, pkt, 1).unwrap();
        (rc, self.dp.drain_events().unwrap())
    }

    /// The policy names behind a record's rule id.
    fn names(&self, rule_id: u32) -> (RuleAction, Vec<String>) {
        let view = self.engine.view();
        let (g, r) = view.lookup(rule_id).expect("rule id names a rule set");
        (
            r.action,
            r.policies.iter().map(|&i| g.names[i].clone()).collect(),
        )
    }
}

fn syn(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    tcp(src, sport, dst, dport, SYN, 1, b"")
}

/// The policy verdict record (first) of a new connection.
fn verdict_record(recs: &[Vec<u8>]) -> RawEvent<'_> {
    let ev = RawEvent::parse(&recs[0]).unwrap();
    assert_eq!(
        ev.kind,
        EventKind::PolicyVerdict,
        "a new connection's first record"
    );
    ev
}

const ALLOW_CLIENT_TO_SERVER_8080: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-from-client, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromEndpoints:
        - matchLabels: {app: client, k8s:io.kubernetes.pod.namespace: tools}
      toPorts:
        - ports: [{port: "8080", protocol: TCP}]
"#;

#[test]
fn allow_by_labels_and_port_passes_and_anything_else_is_default_denied() {
    let mut f = Fixture::new(ALLOW_CLIENT_TO_SERVER_8080, false);
    let (rc, recs) = f.run(TcProgram::Egress, &syn(CLIENT, 40000, SERVER, 8080));
    assert_eq!(rc, PASS);
    assert_eq!(recs.len(), 2, "policy verdict + trace");
    let pv = verdict_record(&recs);
    assert_eq!(pv.verdict, Verdict::Forward);
    assert_eq!(pv.match_type, MatchType::L3L4);
    assert_eq!(
        f.names(pv.rule_id),
        (
            RuleAction::Allow,
            vec!["shop/server-from-client".to_string()]
        )
    );
    assert_eq!(RawEvent::parse(&recs[1]).unwrap().kind, EventKind::Trace);

    // Wrong port, wrong peer: default deny, attributed to the selecting policy.
    for (src, dport) in [(CLIENT, 8081), (OTHER, 8080), (WORLD, 8080)] {
        let (rc, recs) = f.run(TcProgram::Egress, &syn(src, 40001, SERVER, dport));
        assert_eq!(rc, SHOT, "{src} -> :{dport}");
        let pv = verdict_record(&recs);
        assert_eq!(pv.verdict, Verdict::Drop);
        assert_eq!(pv.drop_reason, POLICY_DENIED);
        assert_eq!(pv.match_type, MatchType::None);
        assert_eq!(
            f.names(pv.rule_id),
            (
                RuleAction::DefaultDeny,
                vec!["shop/server-from-client".to_string()]
            )
        );
        let drop = RawEvent::parse(&recs[1]).unwrap();
        assert_eq!(
            (drop.kind, drop.drop_reason),
            (EventKind::Drop, POLICY_DENIED)
        );
    }
    // The policy selects only the server's ingress: its egress and other pods are open.
    let (rc, _) = f.run(TcProgram::Ingress, &syn(SERVER, 40002, WORLD, 443));
    assert_eq!(rc, PASS);
    let (rc, recs) = f.run(TcProgram::Egress, &syn(CLIENT, 40003, OTHER, 8081));
    assert_eq!(rc, PASS);
    assert_eq!(recs.len(), 1, "no policy verdict where no policy selects");
}

#[test]
fn replies_of_allowed_connections_pass_in_the_denied_direction() {
    let mut f = Fixture::new(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: lockdown, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: tools}}]
  egress:
    - {}
"#,
        false,
    );
    assert_eq!(
        f.run(TcProgram::Egress, &syn(CLIENT, 41000, SERVER, 80)).0,
        PASS
    );
    // The server's egress is default deny, but this is the reply of an allowed connection.
    let (rc, _) = f.run(
        TcProgram::Ingress,
        &tcp(SERVER, 80, CLIENT, 41000, SYN | ACK, 9, b""),
    );
    assert_eq!(rc, PASS);
    assert_eq!(
        f.run(
            TcProgram::Ingress,
            &tcp(SERVER, 80, CLIENT, 41000, ACK | FIN, 10, b"")
        )
        .0,
        PASS
    );
    // A connection the server opens itself is denied by its egress default deny.
    let (rc, recs) = f.run(TcProgram::Ingress, &syn(SERVER, 41001, CLIENT, 80));
    assert_eq!(rc, SHOT);
    let pv = verdict_record(&recs);
    assert_eq!(pv.drop_reason, POLICY_DENIED);
    assert_eq!(f.names(pv.rule_id).0, RuleAction::DefaultDeny);
}

#[test]
fn port_ranges_cover_exactly_port_to_end_port() {
    let mut f = Fixture::new(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: range, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - toPorts: [{ports: [{port: "9000", endPort: 9010, protocol: TCP}]}]
"#,
        false,
    );
    for (port, want) in [
        (8999, SHOT),
        (9000, PASS),
        (9001, PASS),
        (9007, PASS),
        (9008, PASS),
        (9010, PASS),
        (9011, SHOT),
    ] {
        let (rc, recs) = f.run(
            TcProgram::Egress,
            &syn(WORLD, 42000 + port - 8990, SERVER, port),
        );
        assert_eq!(rc, want, "port {port}");
        if want == PASS {
            // No L3 peer: an L4-only rule.
            assert_eq!(verdict_record(&recs).match_type, MatchType::L4Only);
        }
    }
    // UDP is not TCP.
    assert_eq!(
        f.run(TcProgram::Egress, &udp(WORLD, 5000, SERVER, 9000, b"x"))
            .0,
        SHOT
    );
}

#[test]
fn cidr_set_allows_the_prefix_but_not_its_exception() {
    let mut f = Fixture::new(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: out, namespace: tools}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
    - toCIDRSet:
        - {cidr: 198.19.200.0/24, except: [198.19.200.128/25]}
"#,
        false,
    );
    let (rc, recs) = f.run(TcProgram::Ingress, &syn(CLIENT, 43000, "198.19.200.5", 443));
    assert_eq!(rc, PASS);
    let pv = verdict_record(&recs);
    assert_eq!(pv.match_type, MatchType::L3Only);
    assert!(
        pv.dst_identity >= policy::CIDR_IDENTITY_BASE,
        "a CIDR identity"
    );
    for dst in ["198.19.200.200", "198.19.201.1", SERVER] {
        assert_eq!(
            f.run(TcProgram::Ingress, &syn(CLIENT, 43001, dst, 443)).0,
            SHOT,
            "{dst}"
        );
    }
}

#[test]
fn entity_world_allows_outside_addresses_but_not_endpoints() {
    let mut f = Fixture::new(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-world, namespace: tools}
spec:
  endpointSelector: {}
  egress:
    - toEntities: [world]
"#,
        false,
    );
    assert_eq!(
        f.run(TcProgram::Ingress, &syn(CLIENT, 44000, WORLD, 443)).0,
        PASS
    );
    let v6 = tcp("2001:2::5", 44001, "2001:2:ff::1", 443, SYN, 1, b"");
    assert_eq!(f.run(TcProgram::Ingress, &v6).0, PASS, "IPv6 world");
    assert_eq!(
        f.run(TcProgram::Ingress, &syn(CLIENT, 44002, SERVER, 443))
            .0,
        SHOT
    );
    assert_eq!(
        f.run(TcProgram::Ingress, &syn(CLIENT, 44003, "198.18.0.1", 443))
            .0,
        SHOT,
        "host"
    );
}

#[test]
fn explicit_deny_beats_any_allow_whatever_its_specificity() {
    let mut f = Fixture::new(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: allow-all, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromEntities: [all]
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: tools}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: no-tools-on-80s}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: tools}}]
      toPorts: [{ports: [{port: "80", endPort: 89, protocol: ANY}]}]
"#,
        false,
    );
    let (rc, recs) = f.run(TcProgram::Egress, &syn(CLIENT, 45000, SERVER, 80));
    assert_eq!(rc, SHOT, "the deny wins over the more specific L3-L4 allow");
    let pv = verdict_record(&recs);
    assert_eq!(pv.drop_reason, POLICY_DENY);
    assert_eq!(
        f.names(pv.rule_id),
        (RuleAction::Deny, vec!["no-tools-on-80s".to_string()])
    );
    assert_eq!(
        f.run(TcProgram::Egress, &udp(CLIENT, 45001, SERVER, 85, b"x"))
            .0,
        SHOT
    );
    assert_eq!(
        f.run(TcProgram::Egress, &syn(CLIENT, 45002, SERVER, 90)).0,
        PASS
    );
    assert_eq!(
        f.run(TcProgram::Egress, &syn(OTHER, 45003, SERVER, 80)).0,
        PASS
    );
}

#[test]
fn default_deny_holds_in_each_direction_on_its_own() {
    let mut f = Fixture::new(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny-ingress, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress: [{}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny-egress, namespace: tools}
spec:
  endpointSelector: {}
  egress: [{}]
"#,
        false,
    );
    let (rc, recs) = f.run(TcProgram::Egress, &syn(OTHER, 46000, SERVER, 80));
    assert_eq!(rc, SHOT);
    assert_eq!(
        f.names(verdict_record(&recs).rule_id).1,
        ["shop/deny-ingress"]
    );
    let (rc, recs) = f.run(TcProgram::Ingress, &syn(CLIENT, 46001, WORLD, 53));
    assert_eq!(rc, SHOT, "DNS is not special");
    assert_eq!(
        f.names(verdict_record(&recs).rule_id).1,
        ["tools/deny-egress"]
    );
    let icmp = packet(
        CLIENT,
        WORLD,
        L4::Icmp {
            ty: 8,
            code: 0,
            id: 7,
        },
        b"",
        false,
    );
    assert_eq!(f.run(TcProgram::Ingress, &icmp).0, SHOT);
    // The other directions stay open.
    assert_eq!(
        f.run(TcProgram::Ingress, &syn(SERVER, 46002, WORLD, 80)).0,
        PASS
    );
    assert_eq!(
        f.run(TcProgram::Egress, &syn(WORLD, 46003, CLIENT, 80)).0,
        PASS
    );
}

#[test]
fn network_policy_scopes_pod_selectors_to_its_namespace() {
    let mut f = Fixture::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: other}}}]
      ports: [{port: 80}]
    - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: tools}}}]
      ports: [{port: 443, protocol: TCP}]
    - from: [{ipBlock: {cidr: 198.19.0.0/16, except: [198.19.50.0/24]}}]
"#,
        false,
    );
    assert_eq!(
        f.run(TcProgram::Egress, &syn(OTHER, 47000, SERVER, 80)).0,
        PASS
    );
    assert_eq!(
        f.run(TcProgram::Egress, &syn(CLIENT, 47001, SERVER, 80)).0,
        SHOT,
        "other namespace"
    );
    assert_eq!(
        f.run(TcProgram::Egress, &syn(CLIENT, 47002, SERVER, 443)).0,
        PASS
    );
    assert_eq!(
        f.run(TcProgram::Egress, &syn("198.19.7.7", 47003, SERVER, 22))
            .0,
        PASS
    );
    assert_eq!(
        f.run(TcProgram::Egress, &syn(WORLD, 47004, SERVER, 22)).0,
        SHOT,
        "except"
    );
    // policyTypes defaults to Ingress only: egress is open.
    assert_eq!(
        f.run(TcProgram::Ingress, &syn(SERVER, 47005, WORLD, 22)).0,
        PASS
    );
}

#[test]
fn audit_mode_passes_what_enforce_would_drop_and_marks_it() {
    let mut f = Fixture::new(ALLOW_CLIENT_TO_SERVER_8080, true);
    let (rc, recs) = f.run(TcProgram::Egress, &syn(OTHER, 48000, SERVER, 8080));
    assert_eq!(rc, PASS);
    let pv = verdict_record(&recs);
    assert_eq!(pv.verdict, Verdict::Audit);
    assert_eq!(pv.drop_reason, POLICY_DENIED);
    assert_eq!(RawEvent::parse(&recs[1]).unwrap().kind, EventKind::Trace);
    let (rc, recs) = f.run(TcProgram::Egress, &syn(CLIENT, 48001, SERVER, 8080));
    assert_eq!(rc, PASS);
    assert_eq!(verdict_record(&recs).verdict, Verdict::Forward);
}

#[test]
fn a_reload_decides_established_connections_again_under_the_new_policy() {
    let mut f = Fixture::new(ALLOW_CLIENT_TO_SERVER_8080, false);
    assert_eq!(
        f.run(TcProgram::Egress, &syn(CLIENT, 49000, SERVER, 8080))
            .0,
        PASS
    );
    let est = tcp(CLIENT, 49000, SERVER, 8080, ACK, 2, b"");
    let (rc, recs) = f.run(TcProgram::Egress, &est);
    assert_eq!((rc, recs.len()), (PASS, 0), "established: no records");
    let rev = f.dp.policy_revision();

    f.apply(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: closed, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress: [{}]
"#,
    );
    assert!(f.dp.policy_revision() > rev);
    let (rc, recs) = f.run(TcProgram::Egress, &est);
    assert_eq!(rc, SHOT, "the new policy applies to the open connection");
    let pv = verdict_record(&recs);
    assert_eq!(f.names(pv.rule_id).1, ["shop/closed"]);

    // And back: the denied connection is allowed again.
    f.apply(ALLOW_CLIENT_TO_SERVER_8080);
    let (rc, recs) = f.run(TcProgram::Egress, &est);
    assert_eq!(rc, PASS);
    assert_eq!(f.names(verdict_record(&recs).rule_id).0, RuleAction::Allow);
}

#[test]
fn without_any_policy_everything_passes_with_no_verdict_records() {
    let mut f = Fixture::new("", false);
    let (rc, recs) = f.run(TcProgram::Egress, &syn(CLIENT, 50000, SERVER, 8080));
    assert_eq!((rc, recs.len()), (PASS, 1));
    assert_eq!(RawEvent::parse(&recs[0]).unwrap().kind, EventKind::Trace);
}

/// An SCTP packet: the common header's ports sit where UDP's do (the verification tag and
/// checksum follow), so a UDP packet with the protocol number changed is one.
fn sctp(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    let mut p = udp(src, sport, dst, dport, &[0; 4]);
    const IPV4_PROTOCOL: usize = 14 + 9;
    p[IPV4_PROTOCOL] = 132;
    p
}

/// Runs each (hook, packet, expected verdict) and reports every mismatch at once.
fn expect_all(f: &mut Fixture, cases: &[(&str, TcProgram, Vec<u8>, i32)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(what, hook, pkt, want)| {
            let (rc, _) = f.run(*hook, pkt);
            (rc != *want).then(|| format!("{what}: got {rc}, want {want}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn match_expressions_in_notin_exists_and_does_not_exist_select_peers() {
    // other-1 is the only pod with a `tier` label. Expressions that name the namespace key
    // lift the policy's own-namespace scope, as matchLabels do.
    let mut f = Fixture::new(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: exprs, namespace: shop}
spec:
  endpointSelector:
    matchExpressions: [{key: app, operator: In, values: [server]}]
  ingress:
    - fromEndpoints:
        - matchExpressions:
            - {key: k8s:io.kubernetes.pod.namespace, operator: In, values: [tools, shop]}
            - {key: app, operator: In, values: [client, far]}
      toPorts: [{ports: [{port: "81", protocol: TCP}]}]
    - fromEndpoints:
        - matchExpressions: [{key: app, operator: NotIn, values: [client, far]}]
      toPorts: [{ports: [{port: "82", protocol: TCP}]}]
    - fromEndpoints:
        - matchExpressions: [{key: tier, operator: Exists}]
      toPorts: [{ports: [{port: "83", protocol: TCP}]}]
    - fromEndpoints:
        - matchExpressions:
            - {key: tier, operator: DoesNotExist}
            - {key: k8s:io.kubernetes.pod.namespace, operator: Exists}
      toPorts: [{ports: [{port: "84", protocol: TCP}]}]
"#,
        false,
    );
    let to_server = |src: &str, port: u16| syn(src, 40100 + port, SERVER, port);
    let e = TcProgram::Egress;
    expect_all(
        &mut f,
        &[
            ("In: client", e, to_server(CLIENT, 81), PASS),
            ("In: far (another node)", e, to_server(FAR, 81), PASS),
            ("In: other is not listed", e, to_server(OTHER, 81), SHOT),
            ("NotIn: other", e, to_server(OTHER, 82), PASS),
            ("NotIn: far is listed", e, to_server(FAR, 82), SHOT),
            (
                "NotIn: client is of another namespace",
                e,
                to_server(CLIENT, 82),
                SHOT,
            ),
            ("Exists: other has a tier", e, to_server(OTHER, 83), PASS),
            ("Exists: client has none", e, to_server(CLIENT, 83), SHOT),
            ("DoesNotExist: client", e, to_server(CLIENT, 84), PASS),
            ("DoesNotExist: far", e, to_server(FAR, 84), PASS),
            (
                "DoesNotExist: other has a tier",
                e,
                to_server(OTHER, 84),
                SHOT,
            ),
            ("world is no endpoint", e, to_server(WORLD, 84), SHOT),
        ],
    );
    let (_, recs) = f.run(e, &syn(CLIENT, 40199, SERVER, 81));
    let pv = verdict_record(&recs);
    assert_eq!(pv.match_type, MatchType::L3L4);
    assert_eq!(
        f.names(pv.rule_id),
        (RuleAction::Allow, vec!["shop/exprs".to_string()])
    );
}

#[test]
fn from_cidr_to_cidr_and_cidr_sets_with_except_in_both_families() {
    let mut f = Fixture::new(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-cidrs, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromCIDR: [198.19.7.0/24]
    - fromCIDRSet: [{cidr: 198.19.0.0/16, except: [198.19.50.0/24, 198.19.7.128/25]}]
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-cidrs, namespace: tools}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
    - toCIDR: [198.19.100.1/32, "2001:2:fe::/48"]
    - toCIDRSet: [{cidr: "2001:2:ff::/48", except: ["2001:2:ff:1::/64"]}]
"#,
        false,
    );
    let (i, e) = (TcProgram::Ingress, TcProgram::Egress);
    let v6 = |dst: &str| tcp("2001:2::5", 40200, dst, 443, SYN, 1, b"");
    expect_all(
        &mut f,
        &[
            ("fromCIDR", e, syn("198.19.7.7", 40201, SERVER, 22), PASS),
            (
                "fromCIDR covers its /25 though the CIDR set excepts it",
                e,
                syn("198.19.7.200", 40202, SERVER, 22),
                PASS,
            ),
            (
                "outside fromCIDR",
                e,
                syn("198.19.8.1", 40203, SERVER, 22),
                SHOT,
            ),
            (
                "fromCIDRSet",
                e,
                syn("198.19.8.1", 40204, SERVER, 443),
                PASS,
            ),
            (
                "fromCIDRSet except",
                e,
                syn(WORLD, 40205, SERVER, 443),
                SHOT,
            ),
            (
                "toCIDR /32",
                i,
                syn(CLIENT, 40206, "198.19.100.1", 80),
                PASS,
            ),
            (
                "beside the /32",
                i,
                syn(CLIENT, 40207, "198.19.100.2", 80),
                SHOT,
            ),
            ("toCIDR IPv6", i, v6("2001:2:fe::9"), PASS),
            ("toCIDRSet IPv6", i, v6("2001:2:ff::1"), PASS),
            ("toCIDRSet IPv6 except", i, v6("2001:2:ff:1::1"), SHOT),
            (
                "no CIDR names an endpoint",
                i,
                syn(CLIENT, 40208, SERVER, 80),
                SHOT,
            ),
        ],
    );
    let (_, recs) = f.run(e, &syn("198.19.8.1", 40209, SERVER, 443));
    let pv = verdict_record(&recs);
    assert_eq!(pv.match_type, MatchType::L3L4);
    assert!(pv.src_identity >= policy::CIDR_IDENTITY_BASE);
    assert_eq!(
        f.names(pv.rule_id),
        (RuleAction::Allow, vec!["shop/server-cidrs".to_string()])
    );
}

#[test]
fn entities_host_remote_node_cluster_world_and_all() {
    // One port per entity, so each is tried on its own.
    let mut f = Fixture::new(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: entities, namespace: tools}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
    - {toEntities: [host], toPorts: [{ports: [{port: "1", protocol: TCP}]}]}
    - {toEntities: [remote-node], toPorts: [{ports: [{port: "2", protocol: TCP}]}]}
    - {toEntities: [cluster], toPorts: [{ports: [{port: "3", protocol: TCP}]}]}
    - {toEntities: [world], toPorts: [{ports: [{port: "4", protocol: TCP}]}]}
    - {toEntities: [all], toPorts: [{ports: [{port: "5", protocol: TCP}]}]}
"#,
        false,
    );
    let out = |dst: &str, port: u16| syn(CLIENT, 40300 + port, dst, port);
    let i = TcProgram::Ingress;
    expect_all(
        &mut f,
        &[
            ("host", i, out(HOST, 1), PASS),
            ("host is not the remote node", i, out(REMOTE_NODE, 1), SHOT),
            ("host is not a pod", i, out(SERVER, 1), SHOT),
            ("remote-node", i, out(REMOTE_NODE, 2), PASS),
            ("remote-node is not this host", i, out(HOST, 2), SHOT),
            ("cluster: a pod", i, out(SERVER, 3), PASS),
            ("cluster: a pod on another node", i, out(FAR, 3), PASS),
            ("cluster: host", i, out(HOST, 3), PASS),
            ("cluster: remote node", i, out(REMOTE_NODE, 3), PASS),
            ("cluster is not world", i, out(WORLD, 3), SHOT),
            ("world", i, out(WORLD, 4), PASS),
            ("world is not a pod", i, out(SERVER, 4), SHOT),
            ("world is not the host", i, out(HOST, 4), SHOT),
            ("all: world", i, out(WORLD, 5), PASS),
            ("all: a pod", i, out(SERVER, 5), PASS),
            ("all: host", i, out(HOST, 5), PASS),
            ("nothing on another port", i, out(WORLD, 6), SHOT),
        ],
    );
    let (_, recs) = f.run(i, &syn(CLIENT, 40399, WORLD, 5));
    let pv = verdict_record(&recs);
    // `all` is the wildcard identity: an L4-only match.
    assert_eq!(pv.match_type, MatchType::L4Only);
    assert_eq!(f.names(pv.rule_id).1, ["tools/entities"]);
}

#[test]
fn egress_deny_beats_the_egress_allow_and_names_the_denying_policy() {
    let mut f = Fixture::new(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-out, namespace: tools}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
    - toEntities: [all]
  egressDeny:
    - toCIDR: [198.19.66.0/24]
    - toEndpoints: [{matchLabels: {app: server, k8s:io.kubernetes.pod.namespace: shop}}]
      toPorts: [{ports: [{port: "22", protocol: TCP}]}]
"#,
        false,
    );
    let i = TcProgram::Ingress;
    expect_all(
        &mut f,
        &[
            ("allowed: world", i, syn(CLIENT, 40400, WORLD, 22), PASS),
            (
                "allowed: server:80",
                i,
                syn(CLIENT, 40401, SERVER, 80),
                PASS,
            ),
            (
                "denied CIDR, any port",
                i,
                syn(CLIENT, 40402, "198.19.66.1", 80),
                SHOT,
            ),
            (
                "denied CIDR, UDP",
                i,
                udp(CLIENT, 40403, "198.19.66.1", 53, b"x"),
                SHOT,
            ),
            ("denied server:22", i, syn(CLIENT, 40404, SERVER, 22), SHOT),
        ],
    );
    for (pkt, match_type) in [
        (syn(CLIENT, 40405, "198.19.66.9", 80), MatchType::L3Only),
        (syn(CLIENT, 40406, SERVER, 22), MatchType::L3L4),
    ] {
        let (rc, recs) = f.run(i, &pkt);
        assert_eq!(rc, SHOT);
        let pv = verdict_record(&recs);
        assert_eq!(pv.drop_reason, POLICY_DENY, "an explicit deny");
        assert_eq!(pv.match_type, match_type);
        assert_eq!(
            f.names(pv.rule_id),
            (RuleAction::Deny, vec!["tools/client-out".to_string()])
        );
    }
    // The deny is the client's egress only: the server itself may still reach the CIDR.
    assert_eq!(f.run(i, &syn(SERVER, 40407, "198.19.66.1", 80)).0, PASS);
}

#[test]
fn sctp_ports_are_their_own_protocol_and_any_covers_them() {
    let mut f = Fixture::new(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: sctp, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - toPorts:
        - ports:
            - {port: "9999", protocol: SCTP}
            - {port: "5000", endPort: 5010, protocol: SCTP}
            - {port: "7000", protocol: ANY}
"#,
        false,
    );
    let e = TcProgram::Egress;
    expect_all(
        &mut f,
        &[
            ("SCTP port", e, sctp(WORLD, 40500, SERVER, 9999), PASS),
            (
                "SCTP, another port",
                e,
                sctp(WORLD, 40501, SERVER, 9998),
                SHOT,
            ),
            (
                "TCP on the SCTP port",
                e,
                syn(WORLD, 40502, SERVER, 9999),
                SHOT,
            ),
            (
                "UDP on the SCTP port",
                e,
                udp(WORLD, 40503, SERVER, 9999, b"x"),
                SHOT,
            ),
            (
                "SCTP range start",
                e,
                sctp(WORLD, 40504, SERVER, 5000),
                PASS,
            ),
            ("SCTP range end", e, sctp(WORLD, 40505, SERVER, 5010), PASS),
            (
                "SCTP past the range",
                e,
                sctp(WORLD, 40506, SERVER, 5011),
                SHOT,
            ),
            ("ANY: SCTP", e, sctp(WORLD, 40507, SERVER, 7000), PASS),
            ("ANY: TCP", e, syn(WORLD, 40508, SERVER, 7000), PASS),
            ("ANY: UDP", e, udp(WORLD, 40509, SERVER, 7000, b"x"), PASS),
        ],
    );
    let (_, recs) = f.run(e, &sctp(WORLD, 40510, SERVER, 9999));
    let pv = verdict_record(&recs);
    assert_eq!(pv.match_type, MatchType::L4Only);
    assert_eq!(f.names(pv.rule_id).1, ["shop/sctp"]);
}

#[test]
fn network_policy_egress_ip_block_except_namespace_selector_and_policy_types() {
    let mut f = Fixture::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-out, namespace: tools}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 198.19.0.0/16, except: [198.19.50.0/24]}}]
      ports: [{port: 443}]
    - to:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}
          podSelector: {matchLabels: {app: server}}
      ports: [{port: 8080, protocol: TCP}]
    - to: [{namespaceSelector: {}}]
      ports: [{port: 53, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-locked, namespace: shop}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress, Egress]
  ingress: [{}]
"#,
        false,
    );
    let (i, e) = (TcProgram::Ingress, TcProgram::Egress);
    expect_all(
        &mut f,
        &[
            (
                "ipBlock, port 443 (TCP by default)",
                i,
                syn(CLIENT, 40600, "198.19.9.9", 443),
                PASS,
            ),
            ("ipBlock except", i, syn(CLIENT, 40601, WORLD, 443), SHOT),
            (
                "ipBlock, another port",
                i,
                syn(CLIENT, 40602, "198.19.9.9", 80),
                SHOT,
            ),
            (
                "ipBlock, UDP",
                i,
                udp(CLIENT, 40603, "198.19.9.9", 443, b"x"),
                SHOT,
            ),
            (
                "namespaceSelector AND podSelector",
                i,
                syn(CLIENT, 40604, SERVER, 8080),
                PASS,
            ),
            (
                "the namespace, but not the pod",
                i,
                syn(CLIENT, 40605, OTHER, 8080),
                SHOT,
            ),
            (
                "namespaceSelector {}: every pod",
                i,
                udp(CLIENT, 40606, OTHER, 53, b"x"),
                PASS,
            ),
            (
                "namespaceSelector {} selects no outside address",
                i,
                udp(CLIENT, 40607, "198.19.9.9", 53, b"x"),
                SHOT,
            ),
            (
                "policyTypes [Egress]: the client's ingress is open",
                e,
                syn(WORLD, 40608, CLIENT, 22),
                PASS,
            ),
            (
                "policyTypes [Ingress, Egress] without egress rules: egress denied",
                i,
                syn(SERVER, 40609, WORLD, 80),
                SHOT,
            ),
            (
                "... and its `ingress: [{}]` allows every peer",
                e,
                syn(WORLD, 40610, SERVER, 80),
                PASS,
            ),
        ],
    );
    let (_, recs) = f.run(i, &syn(SERVER, 40611, WORLD, 80));
    let pv = verdict_record(&recs);
    assert_eq!(pv.drop_reason, POLICY_DENIED);
    assert_eq!(
        f.names(pv.rule_id),
        (
            RuleAction::DefaultDeny,
            vec!["shop/server-locked".to_string()]
        )
    );
}

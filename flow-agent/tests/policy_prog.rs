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
  - {name: other-1, namespace: shop, labels: {app: other}, ips: [198.18.1.7], interface: lxc3, node: n1}
  - {name: far-1, namespace: shop, labels: {app: far}, ips: [198.18.3.3], interface: lxc9, node: n2}
nodes:
  - {name: n1, ips: [198.18.0.1]}
  - {name: n2, ips: [198.18.3.1]}
"#;

const CLIENT: &str = "198.18.0.5";
const SERVER: &str = "198.18.1.9";
const OTHER: &str = "198.18.1.7";
const WORLD: &str = "198.19.50.1";

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

//! `toFQDNs` in the kernel, through BPF_PROG_TEST_RUN on the real datapath programs: an address
//! is dropped until a DNS answer for a selected name teaches it, then passes, named by the
//! policy; a DNS answer to an endpoint a `toFQDNs` rule selects is held (dropped and recorded
//! whole for the agent to put back), any other answer passes. Needs root (BPF).
//!
//! Hooks as on an endpoint's host-side veth: TC ingress carries packets *from* the pod (its
//! egress policy), TC egress packets *to* the pod.

mod datapath_support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datapath_support::*;
use flow_agent::datapath::event::{EventKind, L7Kind, RawEvent, Verdict, flags};
use flow_agent::datapath::{Datapath, DatapathConfig, TcProgram};
use flow_agent::endpoints::Endpoints;
use flow_agent::policy::{self, DnsAnswer, PolicyEngine, RuleAction};

const PASS: i32 = -1;
const SHOT: i32 = 2;

const ENDPOINTS: &str = r#"
endpoints:
  - {name: client-1, namespace: tools, labels: {app: client}, ips: [198.18.0.5], interface: lxc1, node: n1}
  - {name: dns-1, namespace: kube-system, labels: {k8s-app: kube-dns}, ips: [198.18.0.53], interface: lxc2, node: n1}
  - {name: other-1, namespace: tools, labels: {app: other}, ips: [198.18.0.7], interface: lxc3, node: n1}
nodes:
  - {name: n1, ips: [198.18.0.1]}
"#;

const CLIENT: &str = "198.18.0.5";
const OTHER: &str = "198.18.0.7";
const KUBE_DNS: &str = "198.18.0.53";
const API_IP: &str = "198.19.60.10";

const POLICY: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-fqdn, namespace: tools}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}]
      toPorts: [{ports: [{port: "53", protocol: ANY}]}]
    - toFQDNs: [{matchPattern: "*.example.com"}]
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
"#;

struct Fixture {
    dp: Datapath,
    engine: PolicyEngine,
    eps: Endpoints,
}

impl Fixture {
    fn new() -> Fixture {
        let cfg = DatapathConfig {
            kernel_drops: false,
            ..DatapathConfig::default()
        };
        let dp = Datapath::load(cfg).expect("load datapath (needs root and BPF)");
        let eps = Endpoints::parse(ENDPOINTS, "endpoints.yaml", "n1").unwrap();
        let mut f = Fixture {
            dp,
            engine: PolicyEngine::new(),
            eps,
        };
        let p = policy::parse(POLICY, "policy.yaml").unwrap();
        f.engine
            .apply(&mut f.dp, &f.eps, Arc::new(p), |_| {})
            .unwrap();
        f
    }

    fn run(&mut self, hook: TcProgram, pkt: &[u8]) -> (i32, Vec<Vec<u8>>) {
        let (rc, _) = self.dp.test_run(hook, pkt, 1).unwrap();
        (rc, self.dp.drain_events().unwrap())
    }

    fn learn(&mut self, name: &str, ip: &str, ttl: u32) -> bool {
        let names = [format!("{name}.")];
        let ips: [IpAddr; 1] = [ip.parse().unwrap()];
        let answer = DnsAnswer {
            names: &names,
            ips: &ips,
            ttl,
        };
        self.engine
            .learn(
                &mut self.dp,
                &self.eps,
                answer,
                Instant::now(),
                Duration::ZERO,
                |_| {},
            )
            .unwrap()
            .is_some()
    }

    fn identity(&self, ip: &str) -> u32 {
        self.eps
            .endpoint(&ip.parse().unwrap())
            .map(|e| e.identity)
            .unwrap()
    }
}

#[test]
fn an_address_passes_only_after_an_answer_for_a_selected_name_and_until_it_expires() {
    let mut f = Fixture::new();
    let syn = |sport| tcp(CLIENT, sport, API_IP, 443, SYN, 1, b"");
    let (rc, _) = f.run(TcProgram::Ingress, &syn(40000));
    assert_eq!(rc, SHOT, "unknown address: default deny");

    assert!(!f.learn("api.example.org", API_IP, 60), "name not selected");
    let (rc, _) = f.run(TcProgram::Ingress, &syn(40001));
    assert_eq!(
        rc, SHOT,
        "an answer for a name no selector selects opens nothing"
    );

    assert!(f.learn("api.example.com", API_IP, 60), "selected name");
    assert!(
        !f.learn("api.example.com", API_IP, 60),
        "a repeated answer re-installs nothing"
    );
    let (rc, recs) = f.run(TcProgram::Ingress, &syn(40002));
    assert_eq!(rc, PASS, "learned address on the allowed port");
    let pv = RawEvent::parse(&recs[0]).unwrap();
    assert_eq!(pv.kind, EventKind::PolicyVerdict);
    let view = f.engine.view();
    let (g, r) = view.lookup(pv.rule_id).unwrap();
    assert_eq!(r.action, RuleAction::Allow);
    assert_eq!(g.names[r.policies[0]], "tools/client-fqdn");
    let (rc, _) = f.run(
        TcProgram::Ingress,
        &tcp(CLIENT, 40003, API_IP, 80, SYN, 1, b""),
    );
    assert_eq!(rc, SHOT, "the rule's port only");
    let (rc, _) = f.run(
        TcProgram::Ingress,
        &tcp(OTHER, 40004, API_IP, 443, SYN, 1, b""),
    );
    assert_eq!(rc, PASS, "other-1 has no egress policy at all");

    // Expiry (TTL 60 s, no grace) withdraws the address from new connections.
    let later = Instant::now() + Duration::from_secs(61);
    assert!(
        f.engine
            .expire_learned(&mut f.dp, &f.eps, later, |_| {})
            .unwrap()
            .is_some()
    );
    let (rc, _) = f.run(TcProgram::Ingress, &syn(40005));
    assert_eq!(rc, SHOT, "expired");
}

#[test]
fn dns_answers_to_a_selected_endpoint_are_held_whole_and_others_pass() {
    let mut f = Fixture::new();
    assert_eq!(
        f.engine
            .fqdn_endpoints()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [f.identity(CLIENT)],
        "only the client has a toFQDNs rule"
    );
    // The query, from the client (allowed to kube-dns on 53).
    let (rc, _) = f.run(
        TcProgram::Ingress,
        &udp(CLIENT, 40000, KUBE_DNS, 53, b"query bytes"),
    );
    assert_eq!(rc, PASS);
    let answer = udp(KUBE_DNS, 53, CLIENT, 40000, b"answer bytes");

    // Nobody told the datapath to hold: the answer passes.
    let (rc, _) = f.run(TcProgram::Egress, &answer);
    assert_eq!(rc, PASS);

    let ids: Vec<u32> = f.engine.fqdn_endpoints().iter().copied().collect();
    f.dp.set_fqdn_hold(&ids).unwrap();
    let (rc, recs) = f.run(TcProgram::Egress, &answer);
    assert_eq!(rc, SHOT, "held for the agent");
    let held: Vec<RawEvent<'_>> = recs
        .iter()
        .map(|r| RawEvent::parse(r).unwrap())
        .filter(|e| e.has_flag(flags::DNS_HELD))
        .collect();
    assert_eq!(held.len(), 1, "one held record");
    assert_eq!(held[0].l7_kind, L7Kind::Dns);
    assert_eq!(held[0].verdict, Verdict::Forward);
    assert_eq!(held[0].payload, &answer[..], "the whole frame, to put back");

    // An answer to an endpoint without toFQDNs passes.
    f.run(
        TcProgram::Ingress,
        &udp(OTHER, 40001, KUBE_DNS, 53, b"query bytes"),
    );
    let (rc, recs) = f.run(
        TcProgram::Egress,
        &udp(KUBE_DNS, 53, OTHER, 40001, b"answer bytes"),
    );
    assert_eq!(rc, PASS);
    assert!(
        recs.iter()
            .all(|r| !RawEvent::parse(r).unwrap().has_flag(flags::DNS_HELD))
    );

    f.dp.set_fqdn_hold(&[]).unwrap();
    let (rc, _) = f.run(TcProgram::Egress, &answer);
    assert_eq!(rc, PASS, "holding off again");
}

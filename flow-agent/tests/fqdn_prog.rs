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
        Self::with_engine(PolicyEngine::new())
    }

    fn with_engine(engine: PolicyEngine) -> Fixture {
        let cfg = DatapathConfig {
            kernel_drops: false,
            ..DatapathConfig::default()
        };
        let dp = Datapath::load(cfg).expect("load datapath (needs root and BPF)");
        let eps = Endpoints::parse(ENDPOINTS, "endpoints.yaml", "n1").unwrap();
        let mut f = Fixture { dp, engine, eps };
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
        self.learn_at(name, ip, ttl, Instant::now())
    }

    /// Learns an answer as if it arrived at `now` (no grace).
    fn learn_at(&mut self, name: &str, ip: &str, ttl: u32, now: Instant) -> bool {
        let names = [format!("{name}.")];
        let ips: [IpAddr; 1] = [ip.parse().unwrap()];
        let answer = DnsAnswer {
            names: &names,
            ips: &ips,
            ttl,
        };
        self.engine
            .learn(&mut self.dp, &self.eps, answer, now, Duration::ZERO, |_| {})
            .unwrap()
            .is_some()
    }

    /// Forgets what expired by `now`; true if the policy was put in force again.
    fn expire_at(&mut self, now: Instant) -> bool {
        self.engine
            .expire_learned(&mut self.dp, &self.eps, now, |_| {})
            .unwrap()
            .is_some()
    }

    /// The identity the agent gave a learned address, if any.
    fn learned_identity(&self, ip: &str) -> Option<u32> {
        let ip: IpAddr = ip.parse().unwrap();
        self.engine.cidr_identities().get(&ip.into())
    }

    /// The verdict and the destination identity the datapath gives a new connection from the
    /// client to `ip`:443.
    fn connect(&mut self, ip: &str, sport: u16) -> (i32, u32) {
        let (rc, recs) = self.run(
            TcProgram::Ingress,
            &tcp(CLIENT, sport, ip, 443, SYN, 1, b""),
        );
        let dst = recs
            .iter()
            .map(|r| RawEvent::parse(r).unwrap())
            .find(|e| e.dport == 443)
            .map_or(0, |e| e.dst_identity);
        (rc, dst)
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

/// A long-running agent resolves far more distinct addresses than it has identities for: each
/// learned address gives its identity back when its TTL (plus grace) has run out, expired
/// addresses are dropped again, a live address keeps its identity throughout, and an address
/// that finds every identity held by a live one is refused (counted once) and waits, never
/// taking a live address's identity, until one is given back.
#[test]
fn learned_addresses_give_their_identities_back_so_resolving_never_runs_out() {
    const CAP: usize = 3;
    let mut f = Fixture::with_engine(PolicyEngine::with_cidr_identities(CAP));
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut sport = 41000u16;
    let mut next_port = || {
        sport += 1;
        sport
    };

    // One address re-answered all along (TTL 60 s, answered every 10 s) ...
    const LIVE: &str = "198.19.61.1";
    assert!(f.learn_at("live.example.com", LIVE, 60, at(0)));
    let live_id = f
        .learned_identity(LIVE)
        .expect("an identity for the live address");

    // ... while 20 names, one every 10 s with a 5 s TTL, go through the other two identities.
    let rounds = 20u64;
    let mut previous: Option<String> = None;
    for r in 0..rounds {
        let now = at(10 * (r + 1));
        f.expire_at(now);
        f.learn_at("live.example.com", LIVE, 60, now);
        let ip = format!("198.19.62.{}", r + 1);
        assert!(
            f.learn_at(&format!("n{r}.example.com"), &ip, 5, now),
            "round {r}: a new address is learned"
        );
        let id = f
            .learned_identity(&ip)
            .expect("an identity for the new address");
        let (rc, dst) = f.connect(&ip, next_port());
        assert_eq!(rc, PASS, "round {r}: {ip} passes");
        assert_eq!(
            dst, id,
            "round {r}: the datapath knows {ip} by its identity"
        );
        if let Some(old) = &previous {
            assert_eq!(f.learned_identity(old), None, "round {r}: {old} expired");
            let (rc, dst) = f.connect(old, next_port());
            assert_eq!(rc, SHOT, "round {r}: expired {old} is dropped again");
            assert_eq!(dst, flow_agent::identity::IDENTITY_WORLD);
        }
        assert_eq!(f.learned_identity(LIVE), Some(live_id), "round {r}");
        let (rc, dst) = f.connect(LIVE, next_port());
        assert_eq!((rc, dst), (PASS, live_id), "round {r}: the live address");
        previous = Some(ip);
    }
    let s = f.engine.fqdn_stats();
    assert_eq!(s.identities.cap, CAP);
    assert_eq!(
        s.identities.live, 2,
        "the live address and the last round's"
    );
    assert_eq!(
        s.identities.released,
        rounds - 1,
        "each round's address but the last"
    );
    assert_eq!(s.identities.refused, 0);

    // All three identities held by live addresses: a fourth is refused (and counted), and
    // nobody's identity changes hands.
    let now = at(10 * rounds + 6);
    assert!(f.expire_at(now), "the last round's address expired");
    assert!(f.learn_at("a.example.com", "198.19.63.1", 30, now));
    let held: Vec<Option<u32>> = [LIVE, "198.19.63.1"]
        .iter()
        .map(|ip| f.learned_identity(ip))
        .collect();
    f.learn_at("b.example.com", "198.19.63.2", 30, now);
    assert_eq!(f.engine.fqdn_stats().identities.refused, 0, "not yet full");
    f.learn_at("c.example.com", "198.19.63.3", 60, now);
    let s = f.engine.fqdn_stats();
    assert_eq!(
        s.identities.refused, 1,
        "the fourth live address is refused"
    );
    assert_eq!((s.identities.live, s.identities.waiting), (CAP, 1));
    assert_eq!(f.learned_identity("198.19.63.3"), None);
    let (rc, dst) = f.connect("198.19.63.3", next_port());
    assert_eq!((rc, dst), (SHOT, flow_agent::identity::IDENTITY_WORLD));
    assert_eq!(
        [LIVE, "198.19.63.1"]
            .map(|ip| f.learned_identity(ip))
            .to_vec(),
        held
    );
    f.learn_at("c.example.com", "198.19.63.3", 60, now);
    assert_eq!(
        f.engine.fqdn_stats().identities.refused,
        1,
        "an answer repeated while the address waits is not refused again"
    );

    // a and b expire (TTL 30 s) while c (60 s) is still live: c gets an identity at once.
    let now = at(10 * rounds + 40);
    assert!(f.expire_at(now));
    let s = f.engine.fqdn_stats();
    assert_eq!((s.identities.waiting, s.identities.refused), (0, 1));
    assert!(f.learned_identity("198.19.63.3").is_some());
    assert_eq!(f.connect("198.19.63.3", next_port()).0, PASS);
}

/// An identity given back and handed to another address never lets the old address's
/// connections through: the datapath looks a connection's ends up again after a policy change.
#[test]
fn a_connection_to_an_expired_address_is_not_let_through_by_its_identitys_next_owner() {
    let mut f = Fixture::with_engine(PolicyEngine::with_cidr_identities(1));
    let t0 = Instant::now();
    const A: &str = "198.19.64.1";
    const B: &str = "198.19.64.2";
    assert!(f.learn_at("a.example.com", A, 5, t0));
    let id = f.learned_identity(A).unwrap();
    let (rc, _) = f.run(TcProgram::Ingress, &tcp(CLIENT, 42000, A, 443, SYN, 1, b""));
    assert_eq!(rc, PASS);
    let ack = tcp(CLIENT, 42000, A, 443, ACK, 2, b"");
    assert_eq!(f.run(TcProgram::Ingress, &ack).0, PASS, "established");

    let later = t0 + Duration::from_secs(10);
    assert!(f.expire_at(later));
    assert!(f.learn_at("b.example.com", B, 60, later));
    assert_eq!(
        f.learned_identity(B),
        Some(id),
        "the only identity, handed on"
    );
    assert_eq!(
        f.connect(B, 42001).0,
        PASS,
        "the new owner passes under the identity"
    );
    let (rc, recs) = f.run(TcProgram::Ingress, &ack);
    assert_eq!(rc, SHOT, "the old connection to {A} is dropped");
    let dst = recs
        .iter()
        .map(|r| RawEvent::parse(r).unwrap())
        .find(|e| e.dport == 443)
        .map(|e| e.dst_identity);
    assert_eq!(dst, Some(flow_agent::identity::IDENTITY_WORLD));
}

/// DNS over TCP: a segment that carries one whole length-prefixed answer is held like a UDP
/// answer; a segment of an answer that spans segments is not (one record cannot be learned
/// from), and neither is a client's query.
#[test]
fn a_dns_answer_over_tcp_is_held_when_one_segment_carries_it_whole() {
    let mut f = Fixture::new();
    let ids: Vec<u32> = f.engine.fqdn_endpoints().iter().copied().collect();
    f.dp.set_fqdn_hold(&ids).unwrap();
    let (rc, _) = f.run(
        TcProgram::Ingress,
        &tcp(CLIENT, 40100, KUBE_DNS, 53, SYN, 1, b""),
    );
    assert_eq!(rc, PASS, "the client may reach kube-dns on 53/TCP");
    let message = b"\x00\x07\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00answer";
    let mut whole = (message.len() as u16).to_be_bytes().to_vec();
    whole.extend_from_slice(message);
    let query = tcp(CLIENT, 40100, KUBE_DNS, 53, ACK | PSH, 2, &whole);
    assert_eq!(f.run(TcProgram::Ingress, &query).0, PASS, "queries pass");

    let answer = tcp(KUBE_DNS, 53, CLIENT, 40100, ACK | PSH, 1, &whole);
    let (rc, recs) = f.run(TcProgram::Egress, &answer);
    assert_eq!(rc, SHOT, "held for the agent");
    let held: Vec<RawEvent<'_>> = recs
        .iter()
        .map(|r| RawEvent::parse(r).unwrap())
        .filter(|e| e.has_flag(flags::DNS_HELD))
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].payload, &answer[..], "the whole frame, to put back");

    // The first segment of a longer answer: its prefix promises more than it carries.
    let mut first = ((message.len() + 100) as u16).to_be_bytes().to_vec();
    first.extend_from_slice(message);
    let (rc, recs) = f.run(
        TcProgram::Egress,
        &tcp(KUBE_DNS, 53, CLIENT, 40100, ACK | PSH, 100, &first),
    );
    assert_eq!(rc, PASS, "a split answer is not held");
    let rec = recs
        .iter()
        .map(|r| RawEvent::parse(r).unwrap())
        .find(|e| e.l7_kind == L7Kind::Dns)
        .expect("the segment is still recorded as DNS");
    assert!(!rec.has_flag(flags::DNS_HELD));
    // Two messages in one segment are not one whole message either.
    let mut two = whole.clone();
    two.extend_from_slice(&whole);
    let (rc, _) = f.run(
        TcProgram::Egress,
        &tcp(KUBE_DNS, 53, CLIENT, 40100, ACK | PSH, 200, &two),
    );
    assert_eq!(rc, PASS);
}

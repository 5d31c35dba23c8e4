//! `toFQDNs` and names on flows on real namespaces: the real `webb-agent` on node 1 with a
//! policy that lets the client pod reach only kube-dns on port 53 and `api.example.com` on port
//! 8080 — the seed's scenario. A DNS server written here (on `webb_l7::dns`) answers in the
//! kube-dns pod; addresses outside the cluster live on node 2 (an AnyIP route), where a TCP
//! server accepts on every one of them and a second, unlisted resolver answers too.
//!
//! ```text
//!  node1 (agent)                                   node2
//!   lxcclient ── client (tools, app=client)  n2n    198.18.128.0/17 local (world):
//!   lxcdns    ── dns (kube-system, k8s-app=kube-dns) :8080 TCP, :53 UDP "other resolver"
//! ```
//!
//! Needs root; every namespace, server and the agent are removed even when a test fails.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod datapath_support;

use datapath_support::agent::{Agent, everything};
use netlab::{PodSpec, Topology, Workload};
use tonic::transport::Channel;
use webb_l7::dns::{AnswerData, DnsMessage};
use webb_proto::flow::{DropReason, Flow, Verdict, layer4::Protocol};
use webb_proto::observer::observer_client::ObserverClient;

/// The allowed name and its address; the other names resolve but are not allowed.
const API: &str = "api.example.com";
const API_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 128, 10);
const OTHER: &str = "other.example.com";
const OTHER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 128, 20);
/// The resolver no policy allows (world, on node 2).
const OTHER_RESOLVER: Ipv4Addr = Ipv4Addr::new(198, 18, 128, 53);
/// Addresses node 2 answers on (AnyIP) and node 1 routes there.
const WORLD_NET: &str = "198.18.128.0/17";

const POLICY: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-fqdn, namespace: tools}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
    - toEndpoints:
        - matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}
      toPorts:
        - ports: [{port: "53", protocol: ANY}]
          rules: {dns: [{matchPattern: "*"}]}
    - toFQDNs: [{matchName: api.example.com}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
"#;

fn spec(key: &str, namespace: &str, labels: &[(&str, &str)]) -> PodSpec {
    PodSpec {
        key: key.into(),
        name: format!("{key}-0"),
        namespace: namespace.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        workload: Workload {
            name: key.into(),
            kind: "Deployment".into(),
        },
        node: 0,
        http_port: None,
        dns: false,
    }
}

/// The answer to `q` from `zone`: its A record with `ttl`, or NXDOMAIN.
fn answer(q: &DnsMessage, zone: &BTreeMap<String, Ipv4Addr>, ttl: u32) -> Option<DnsMessage> {
    let question = q.questions.first()?;
    let found = zone.get(question.name.trim_end_matches('.'));
    Some(DnsMessage {
        id: q.id,
        is_response: true,
        truncated: false,
        rcode: if found.is_some() { 0 } else { 3 },
        questions: q.questions.clone(),
        answers: found
            .map(|ip| webb_l7::dns::Answer {
                name: question.name.clone(),
                ttl,
                data: AnswerData::A(*ip),
            })
            .into_iter()
            .collect(),
    })
}

/// Names under this suffix are answered over TCP in two segments (the length prefix, then the
/// message), as an answer too long for one segment would arrive.
const SPLIT_SUFFIX: &str = ".split.example";

/// Answers one DNS-over-TCP connection: length-prefixed queries until the client closes.
fn serve_dns_tcp(
    mut conn: TcpStream,
    zone: &BTreeMap<String, Ipv4Addr>,
    ttl: u32,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_nodelay(true)?;
    loop {
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).is_err() {
            return Ok(());
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut msg)?;
        let Ok(q) = webb_l7::dns::parse_udp(&msg) else {
            return Ok(());
        };
        let Some(reply) = answer(&q, zone, ttl) else {
            return Ok(());
        };
        let bytes = reply.to_udp().unwrap();
        let prefix = (bytes.len() as u16).to_be_bytes();
        let split = q
            .questions
            .first()
            .is_some_and(|q| q.name.trim_end_matches('.').ends_with(SPLIT_SUFFIX));
        if split {
            conn.write_all(&prefix)?;
            std::thread::sleep(Duration::from_millis(5));
            conn.write_all(&bytes)?;
        } else {
            let mut whole = prefix.to_vec();
            whole.extend_from_slice(&bytes);
            conn.write_all(&whole)?;
        }
    }
}

/// A DNS server answering A questions from `zone` with `ttl`, NXDOMAIN otherwise, over UDP and
/// TCP, until `stop`.
fn serve_dns(
    netns: &str,
    at: SocketAddr,
    zone: BTreeMap<String, Ipv4Addr>,
    ttl: u32,
    stop: Arc<AtomicBool>,
) -> netlab::netns::NsThread<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let t = netlab::netns::spawn_in(netns, move || {
        let sock = UdpSocket::bind(at).expect("bind the DNS server");
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let tcp = TcpListener::bind(at).expect("bind the DNS server's TCP port");
        tcp.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((conn, _)) = tcp.accept() {
                let _ = serve_dns_tcp(conn, &zone, ttl);
            }
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(q) = webb_l7::dns::parse_udp(&buf[..n]) else {
                continue;
            };
            if let Some(reply) = answer(&q, &zone, ttl) {
                let _ = sock.send_to(&reply.to_udp().unwrap(), from);
            }
        }
    })
    .unwrap();
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    t
}

/// Asks `server` for the A record of `name`: the addresses, or `None` on timeout.
fn resolve(server: SocketAddr, name: &str, id: u16) -> Option<Vec<Ipv4Addr>> {
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let q = DnsMessage::query(id, &format!("{name}."), 1);
    sock.send_to(&q.to_udp().unwrap(), server).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let r = webb_l7::dns::parse_udp(&buf[..n]).ok()?;
    Some(
        r.answers
            .iter()
            .filter_map(|a| match a.data {
                AnswerData::A(ip) => Some(ip),
                _ => None,
            })
            .collect(),
    )
}

/// Asks `server` over TCP for the A record of `name`: the addresses, or `None` when no answer
/// came.
fn resolve_tcp(server: SocketAddr, name: &str, id: u16) -> Option<Vec<Ipv4Addr>> {
    let mut conn = TcpStream::connect_timeout(&server, Duration::from_millis(800)).ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let q = DnsMessage::query(id, &format!("{name}."), 1)
        .to_udp()
        .unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    conn.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut msg).ok()?;
    let r = webb_l7::dns::parse_udp(&msg).ok()?;
    Some(
        r.answers
            .iter()
            .filter_map(|a| match a.data {
                AnswerData::A(ip) => Some(ip),
                _ => None,
            })
            .collect(),
    )
}

fn connects(addr: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&addr, timeout).is_ok()
}

/// The topology, the servers and the agent of one test; all removed on drop.
struct Lab {
    topo: Topology,
    dir: PathBuf,
    agent: Option<Agent>,
    stop: Arc<AtomicBool>,
    servers: Vec<netlab::netns::NsThread<()>>,
}

impl Lab {
    fn build(tag: &str) -> Lab {
        netlab::cleanup_stale(tag);
        let topo = Topology::build_with(
            &netlab::unique_prefix(tag),
            vec![
                spec("client", "tools", &[("app", "client")]),
                spec("dns", "kube-system", &[("k8s-app", "kube-dns")]),
            ],
        )
        .expect("build the topology (needs root)");
        let dir = std::env::temp_dir().join(format!("webb-{}", topo.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        let (n1, n2) = (&topo.nodes()[0], &topo.nodes()[1]);
        ip(
            &n2.netns,
            &["route", "add", "local", WORLD_NET, "dev", "lo"],
        );
        ip(
            &n1.netns,
            &["route", "add", WORLD_NET, "via", &n2.ipv4.to_string()],
        );
        let mut lab = Lab {
            topo,
            dir,
            agent: None,
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        };
        lab.serve_world();
        lab
    }

    fn pod_ip(&self, key: &str) -> Ipv4Addr {
        self.topo.pod(key).unwrap().ipv4
    }

    fn pod_ns(&self, key: &str) -> String {
        self.topo.pod(key).unwrap().netns.clone()
    }

    /// Node 2: TCP 8080 on every world address, and the unlisted resolver.
    fn serve_world(&mut self) {
        let node2 = self.topo.nodes()[1].netns.clone();
        let stop = self.stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        self.servers.push(
            netlab::netns::spawn_in(&node2, move || {
                let l = TcpListener::bind("0.0.0.0:8080").unwrap();
                l.set_nonblocking(true).unwrap();
                ready_tx.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if l.accept().is_err() {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            })
            .unwrap(),
        );
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let zone = BTreeMap::from([(API.to_string(), API_IP)]);
        self.servers.push(serve_dns(
            &node2,
            SocketAddr::new(OTHER_RESOLVER.into(), 53),
            zone,
            30,
            self.stop.clone(),
        ));
    }

    fn serve_kube_dns(&mut self, zone: BTreeMap<String, Ipv4Addr>, ttl: u32) {
        let at = SocketAddr::new(self.pod_ip("dns").into(), 53);
        let ns = self.pod_ns("dns");
        self.servers
            .push(serve_dns(&ns, at, zone, ttl, self.stop.clone()));
    }

    async fn start_agent(&mut self, policy: &str, extra: &[&str]) -> ObserverClient<Channel> {
        let pol = self.dir.join("policy.yaml");
        std::fs::write(&pol, policy).unwrap();
        let mut args = vec![
            "--policy",
            pol.to_str().unwrap(),
            "--ring-capacity",
            "65535",
        ];
        args.extend_from_slice(extra);
        let node = self.topo.nodes()[0].netns.clone();
        let agent = Agent::start(&self.topo, &node, &args);
        let client = agent.client().await;
        self.agent = Some(agent);
        client
    }

    /// Runs `f` in the client pod's namespace.
    fn in_client<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        netlab::netns::spawn_in(&self.pod_ns("client"), f)
            .unwrap()
            .join()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.servers.drain(..) {
            s.join();
        }
        drop(self.agent.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ip(netns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["-n", netns])
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip -n {netns} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn all_flows(client: &mut ObserverClient<Channel>) -> Vec<Flow> {
    everything(client).await.0
}

fn dport(f: &Flow) -> Option<u32> {
    match f.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(t) => Some(t.destination_port),
        Protocol::Udp(u) => Some(u.destination_port),
        _ => None,
    }
}

fn to(flows: &[Flow], dst: Ipv4Addr, port: u32) -> impl Iterator<Item = &Flow> {
    let dst = dst.to_string();
    flows.iter().filter(move |f| {
        f.ip.as_ref().is_some_and(|ip| ip.destination == dst) && dport(f) == Some(port)
    })
}

fn names(p: &[webb_proto::flow::Policy]) -> Vec<String> {
    p.iter().map(|p| p.name.clone()).collect()
}

/// Waits until the agent's flows satisfy `done` (the pipeline runs behind the packets).
async fn flows_until(
    client: &mut ObserverClient<Channel>,
    done: impl Fn(&[Flow]) -> bool,
) -> Vec<Flow> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let flows = all_flows(client).await;
        if done(&flows) || Instant::now() > deadline {
            return flows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_policy_reaches_the_resolved_name_only_and_dns_only_through_its_resolver() {
    let mut lab = Lab::build("wbfq");
    let zone = BTreeMap::from([(API.to_string(), API_IP), (OTHER.to_string(), OTHER_IP)]);
    lab.serve_kube_dns(zone, 30);
    let mut client = lab.start_agent(POLICY, &[]).await;
    let resolver = SocketAddr::new(lab.pod_ip("dns").into(), 53);
    let api = SocketAddr::new(API_IP.into(), 8080);

    // Before any lookup the name's address is just the world: default deny.
    let before = lab.in_client(move || connects(api, Duration::from_millis(500)));
    assert!(!before, "{API} is reachable before it was resolved");

    // Resolve through kube-dns and connect at once: the first packet must pass.
    let (answer, connected) = lab.in_client(move || {
        let a = resolve(resolver, API, 1);
        (a, connects(api, Duration::from_secs(2)))
    });
    assert_eq!(answer, Some(vec![API_IP]), "kube-dns answers {API}");
    assert!(
        connected,
        "connecting to {API_IP} right after resolving {API}"
    );

    // A resolved name the policy does not select opens nothing.
    let other = SocketAddr::new(OTHER_IP.into(), 8080);
    let (answer, connected) = lab.in_client(move || {
        let a = resolve(resolver, OTHER, 2);
        (a, connects(other, Duration::from_millis(500)))
    });
    assert_eq!(answer, Some(vec![OTHER_IP]));
    assert!(!connected, "{OTHER} is not in the policy");

    // DNS to a resolver the policy does not name is dropped.
    let elsewhere = SocketAddr::new(OTHER_RESOLVER.into(), 53);
    let answer = lab.in_client(move || resolve(elsewhere, API, 3));
    assert_eq!(answer, None, "DNS to {OTHER_RESOLVER} must be dropped");

    let client_ip = lab.pod_ip("client").to_string();
    let flows = flows_until(&mut client, |f| {
        to(f, OTHER_RESOLVER, 53).any(|f| f.verdict == Verdict::Dropped as i32)
            && to(f, OTHER_IP, 8080).any(|f| f.verdict == Verdict::Dropped as i32)
    })
    .await;
    let allowed: Vec<&Flow> = to(&flows, API_IP, 8080)
        .filter(|f| f.verdict == Verdict::Forwarded as i32 && !f.egress_allowed_by.is_empty())
        .collect();
    assert!(
        allowed
            .iter()
            .any(|f| names(&f.egress_allowed_by) == ["client-fqdn"]
                && f.destination_names == [API]
                && f.ip.as_ref().unwrap().source == client_ip),
        "the connection to {API_IP} is allowed by client-fqdn and named {API}: {allowed:#?}"
    );
    let default_deny = |f: &&Flow| {
        f.verdict == Verdict::Dropped as i32
            && f.drop_reason_desc == DropReason::PolicyDenied as i32
            && f.policy_log.iter().any(|l| l.contains("client-fqdn"))
    };
    assert!(
        to(&flows, API_IP, 8080).any(|f| default_deny(&f)),
        "the connection before the lookup is dropped by default deny naming client-fqdn"
    );
    let denied_other: Vec<&Flow> = to(&flows, OTHER_IP, 8080).collect();
    assert!(
        denied_other.iter().any(default_deny),
        "{OTHER_IP} is dropped naming client-fqdn: {denied_other:#?}"
    );
    assert!(
        denied_other.iter().any(|f| f.destination_names == [OTHER]),
        "a name the client resolved still names the flow, allowed or not"
    );
    assert!(
        to(&flows, OTHER_RESOLVER, 53).any(|f| default_deny(&f)),
        "DNS to {OTHER_RESOLVER} is dropped naming client-fqdn"
    );
    assert!(
        to(&flows, lab.pod_ip("dns"), 53).any(|f| f.verdict == Verdict::Forwarded as i32
            && names(&f.egress_allowed_by) == ["client-fqdn"]),
        "DNS to kube-dns is allowed by client-fqdn"
    );
}

/// One mode of the race measurement: how the first connections after a lookup fared.
#[derive(Debug)]
struct Race {
    mode: &'static str,
    resolutions: usize,
    /// Lookups whose first connection did not open at once (its first SYN was dropped).
    first_packet_dropped: usize,
    resolve_us: Vec<u128>,
    connect_us: Vec<u128>,
}

fn median(v: &mut [u128]) -> u128 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// `n` distinct names, each resolved through kube-dns and connected to at once; a first SYN
/// the policy dropped shows as a connection that did not open within 200 ms (a retransmitted
/// SYN comes only after a second).
fn race(lab: &Lab, mode: &'static str, n: usize, base: u8, tcp: bool) -> Race {
    let resolver = SocketAddr::new(lab.pod_ip("dns").into(), 53);
    lab.in_client(move || {
        let mut r = Race {
            mode,
            resolutions: 0,
            first_packet_dropped: 0,
            resolve_us: Vec::with_capacity(n),
            connect_us: Vec::with_capacity(n),
        };
        let deadline = Instant::now() + Duration::from_secs(240);
        for i in 0..n {
            if Instant::now() > deadline {
                break;
            }
            let name = format!("n{i}.{base}.bench.example");
            let t0 = Instant::now();
            let lookup = if tcp { resolve_tcp } else { resolve };
            let Some(ips) = lookup(resolver, &name, i as u16) else {
                continue;
            };
            let t1 = Instant::now();
            let Some(ip) = ips.first() else { continue };
            let ok = connects(
                SocketAddr::new((*ip).into(), 8080),
                Duration::from_millis(200),
            );
            let t2 = Instant::now();
            r.resolutions += 1;
            r.resolve_us.push((t1 - t0).as_micros());
            if ok {
                r.connect_us.push((t2 - t1).as_micros());
            } else {
                r.first_packet_dropped += 1;
            }
        }
        r
    })
}

/// The zone of the race: `n` names under each base, each with its own address.
fn race_zone(n: usize, bases: &[u8]) -> BTreeMap<String, Ipv4Addr> {
    let mut zone = BTreeMap::new();
    for &b in bases {
        for i in 0..n {
            zone.insert(
                format!("n{i}.{b}.bench.example"),
                Ipv4Addr::new(198, 18, 128 + b * 16 + (i / 250) as u8, 1 + (i % 250) as u8),
            );
        }
    }
    zone
}

fn race_policy() -> String {
    POLICY.replace(
        "toFQDNs: [{matchName: api.example.com}]",
        "toFQDNs: [{matchPattern: \"*.*.bench.example\"}]",
    )
}

/// Over 1,000 resolutions each followed at once by a connection: the fraction of first packets
/// dropped and the added latency, with answers held (the default), without holding, and
/// without toFQDNs (the world allowed: the baseline). Prints its report; run with
/// `cargo test -p flow-agent --test fqdn_netns -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: ~1 min of real traffic; run by hand and report"]
async fn first_packets_after_a_lookup_are_not_dropped_measured() {
    let n: usize = std::env::var("WEBB_FQDN_RACE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let world = POLICY.replace(
        "toFQDNs: [{matchName: api.example.com}]",
        "toEntities: [world]",
    );
    let modes: [(&'static str, String, &[&str], u8, bool); 4] = [
        ("baseline (toEntities: world)", world, &[], 0, false),
        ("toFQDNs, answers held", race_policy(), &[], 1, false),
        (
            "toFQDNs, not held",
            race_policy(),
            &["--fqdn-hold", "false"],
            2,
            false,
        ),
        ("toFQDNs over TCP, held", race_policy(), &[], 3, true),
    ];
    let mut report = Vec::new();
    for (mode, policy, extra, base, tcp) in modes {
        let mut lab = Lab::build("wbfr");
        lab.serve_kube_dns(race_zone(n, &[base]), 300);
        let _client = lab.start_agent(&policy, extra).await;
        // Let the agent attach and install the policy before the first lookup.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut r = race(&lab, mode, n, base, tcp);
        println!(
            "{:<30} resolutions {:>5}  first packets dropped {:>5} ({:.3})  median resolve {:>6} us  median connect {:>6} us",
            r.mode,
            r.resolutions,
            r.first_packet_dropped,
            r.first_packet_dropped as f64 / r.resolutions.max(1) as f64,
            median(&mut r.resolve_us),
            median(&mut r.connect_us),
        );
        report.push(r);
    }
    for held in [&report[1], &report[3]] {
        assert!(held.resolutions > 0, "no resolution completed: {held:?}");
        assert_eq!(
            held.first_packet_dropped, 0,
            "with held answers no first packet may be dropped: {held:?}"
        );
    }
}

/// DNS over TCP: an answer in one segment is held like a UDP one, so connecting right after
/// each of many lookups over TCP finds its first packet allowed; an answer split over segments
/// is delivered at once (not held, not learned: one record holds only part of it) and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_tcp_are_held_until_learned_and_split_ones_are_counted() {
    const N: usize = 40;
    let mut lab = Lab::build("wbft");
    let mut zone = race_zone(N, &[4]);
    let split_ip = Ipv4Addr::new(198, 18, 250, 1);
    zone.insert(format!("api{SPLIT_SUFFIX}"), split_ip);
    lab.serve_kube_dns(zone, 300);
    let policy = race_policy().replace(
        "toFQDNs: [{matchPattern: \"*.*.bench.example\"}]",
        "toFQDNs: [{matchPattern: \"*.*.bench.example\"}, {matchPattern: \"*.split.example\"}]",
    );
    assert_ne!(policy, race_policy());
    let _client = lab.start_agent(&policy, &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let r = race(&lab, "over TCP", N, 4, true);
    assert_eq!(r.resolutions, N, "every lookup over TCP answered: {r:?}");
    assert_eq!(
        r.first_packet_dropped, 0,
        "no first packet after a lookup over TCP is dropped: {r:?}"
    );
    let agent = lab.agent.as_ref().unwrap();
    let m = agent.metrics();
    assert!(
        m.get("webb_dns_held_total").copied().unwrap_or(0.0) >= N as f64,
        "each answer was held and put back: {m:?}"
    );
    assert_eq!(m.get("webb_dns_held_lost_total"), Some(&0.0));

    let resolver = SocketAddr::new(lab.pod_ip("dns").into(), 53);
    let split = SocketAddr::new(split_ip.into(), 8080);
    let (answer, connected) = lab.in_client(move || {
        let a = resolve_tcp(resolver, &format!("api{SPLIT_SUFFIX}"), 9);
        (a, connects(split, Duration::from_millis(500)))
    });
    assert_eq!(
        answer,
        Some(vec![split_ip]),
        "the split answer is delivered"
    );
    assert!(
        !connected,
        "a split answer is neither held nor learned (see flow-agent/src/reinject.rs)"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let counted = loop {
        let n = agent
            .metrics()
            .get("webb_dns_tcp_split_total")
            .copied()
            .unwrap_or(0.0);
        if n >= 1.0 || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(counted >= 1.0, "the split answer is counted");
}

/// The agent's metrics, waiting up to five seconds for `done` to hold.
async fn metrics_until(
    lab: &Lab,
    done: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let agent = lab.agent.as_ref().expect("the agent runs");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = agent.metrics();
        if done(&m) || Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A long-running agent with only two CIDR identities (`--cidr-identities 2`), answers with a
/// 1 s TTL and no grace: each round's two addresses give their identities back when they
/// expire, so lookups keep working long past the cap, and the expired addresses are dropped
/// again; while both identities are held by live addresses a third address is refused,
/// counted and dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_identity_cap_is_reused_as_answers_expire_and_refusals_are_counted() {
    const ROUNDS: usize = 3;
    let mut lab = Lab::build("wbfc");
    let zone = race_zone(2 * ROUNDS + 1, &[5]);
    let ip_of = {
        let zone = zone.clone();
        move |i: usize| zone[&format!("n{i}.5.bench.example")]
    };
    lab.serve_kube_dns(zone, 1);
    let args = ["--cidr-identities", "2", "--fqdn-grace", "0"];
    let _client = lab.start_agent(&race_policy(), &args).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resolver = SocketAddr::new(lab.pod_ip("dns").into(), 53);
    // Resolves name `i` and connects to its address at once: whether the first SYN passed.
    let lookup_and_connect = move |i: usize| {
        let ips = resolve(resolver, &format!("n{i}.5.bench.example"), i as u16);
        let ip = ips.and_then(|v| v.first().copied()).expect("an answer");
        connects(SocketAddr::new(ip.into(), 8080), Duration::from_millis(200))
    };
    let refused = "webb_fqdn_refused_total{reason=\"identities\"}";

    for round in 0..ROUNDS {
        let (a, b) = (2 * round, 2 * round + 1);
        let ok = lab.in_client(move || [lookup_and_connect(a), lookup_and_connect(b)]);
        assert_eq!(
            ok,
            [true, true],
            "round {round}: both addresses reachable at once"
        );
        if round == 0 {
            let third = 2 * ROUNDS;
            let ok = lab.in_client(move || lookup_and_connect(third));
            assert!(!ok, "both identities are held by live addresses");
            let m = metrics_until(&lab, |m| m.get(refused) == Some(&1.0)).await;
            assert_eq!(m.get(refused), Some(&1.0), "the refusal is counted: {m:?}");
            assert_eq!(m.get("webb_fqdn_identities_waiting"), Some(&1.0));
        }
        // (Round 0's waiting address expires about when the others do: it may or may not take
        // an identity in between.)
        let released = (2 * (round + 1)) as f64;
        let expired = |m: &BTreeMap<String, f64>| {
            m.get("webb_fqdn_identities") == Some(&0.0)
                && m.get("webb_fqdn_identities_waiting") == Some(&0.0)
                && m.get("webb_fqdn_identities_released_total")
                    .is_some_and(|r| *r == released || *r == released + 1.0)
        };
        let m = metrics_until(&lab, expired).await;
        assert!(
            expired(&m),
            "round {round}: both answers expired and gave their identities back: {m:?}"
        );
        let (ip_a, ip_b) = (ip_of(a), ip_of(b));
        let reachable = lab.in_client(move || {
            [ip_a, ip_b]
                .map(|ip| connects(SocketAddr::new(ip.into(), 8080), Duration::from_millis(200)))
        });
        assert_eq!(
            reachable,
            [false, false],
            "round {round}: expired addresses are dropped"
        );
    }
    let m = lab.agent.as_ref().unwrap().metrics();
    let released = m["webb_fqdn_identities_released_total"];
    assert!(
        released == (2 * ROUNDS) as f64 || released == (2 * ROUNDS + 1) as f64,
        "every round's two addresses (and maybe the waiting one) gave identities back: {m:?}"
    );
    assert_eq!(m.get("webb_cidr_identities{state=\"max\"}"), Some(&2.0));
    assert_eq!(m.get(refused), Some(&1.0), "no other refusal");
}

//! Policy verdicts on real network namespaces with real connections: the real `webb-agent`
//! runs in a "node" namespace with `--policy`, pods connect to each other and to an outside
//! host, and the flows read back over the agent's Observer API name the allowing or denying
//! policy for each case. Needs root; namespaces are removed even when a test fails.
//!
//! ```text
//!   client-1 (tools) 198.18.1.2 ─ lxcpa ┐
//!   server-1 (shop)  198.18.2.2 ─ lxcpb ┼ node ─ extnet ─ outside 198.18.9.2, 198.18.9.200
//!   other-1  (shop)  198.18.3.2 ─ lxcpc ┘                 (in no endpoint: world)
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flow_agent::datapath::NetnsGuard;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use webb_proto::flow::{DropReason, Flow, Verdict, layer4::Protocol};
use webb_proto::observer::GetFlowsRequest;
use webb_proto::observer::get_flows_response::ResponseTypes;
use webb_proto::observer::observer_client::ObserverClient;
use webb_proto::webb_v1::FlowsRequestOptions;

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Namespaces, servers, files and the agent of one test; all removed on drop.
struct Lab {
    prefix: String,
    dir: PathBuf,
    agent: Option<Child>,
    stop: Arc<AtomicBool>,
    servers: Vec<std::thread::JoinHandle<()>>,
}

const PODS: [(&str, &str, u8); 3] = [("a", "lxcpa", 1), ("b", "lxcpb", 2), ("c", "lxcpc", 3)];

impl Lab {
    fn ns(&self, which: &str) -> String {
        format!("{}{which}", self.prefix)
    }

    fn build(tag: &str) -> Lab {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test needs root (network namespaces and eBPF)"
        );
        let prefix = format!("wbp{}{tag}", std::process::id() % 100_000);
        let lab = Lab {
            dir: std::env::temp_dir().join(format!("webb-policy-{prefix}")),
            prefix,
            agent: None,
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        };
        std::fs::create_dir_all(&lab.dir).unwrap();
        for w in ["n", "a", "b", "c", "x"] {
            let ns = lab.ns(w);
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
            sh(&["ip", "netns", "add", &ns]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        let node = lab.ns("n");
        let mut links: Vec<(String, &str, u8)> =
            PODS.iter().map(|(w, i, n)| (lab.ns(w), *i, *n)).collect();
        links.push((lab.ns("x"), "extnet", 9));
        for (pod, host_if, net) in &links {
            sh(&[
                "ip", "link", "add", host_if, "netns", &node, "type", "veth", "peer", "name",
                "eth0", "netns", pod,
            ]);
            let gw = format!("198.18.{net}.1");
            sh(&[
                "ip",
                "-n",
                &node,
                "addr",
                "add",
                &format!("{gw}/24"),
                "dev",
                host_if,
            ]);
            sh(&["ip", "-n", &node, "link", "set", host_if, "up"]);
            sh(&[
                "ip",
                "-n",
                pod,
                "addr",
                "add",
                &format!("198.18.{net}.2/24"),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", pod, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", pod, "route", "add", "default", "via", &gw]);
        }
        sh(&[
            "ip",
            "-n",
            &lab.ns("x"),
            "addr",
            "add",
            "198.18.9.200/24",
            "dev",
            "eth0",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        lab
    }

    /// Echo servers: every address/port answers what it reads.
    fn serve(&mut self, which: &str, addrs: &[&str]) {
        for a in addrs {
            let addr: SocketAddr = a.parse().unwrap();
            let path = netns_path(&self.ns(which));
            let stop = self.stop.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            self.servers.push(std::thread::spawn(move || {
                let _g = NetnsGuard::enter(Some(&path)).unwrap();
                let l = TcpListener::bind(addr).unwrap();
                l.set_nonblocking(true).unwrap();
                tx.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                            let mut buf = [0u8; 2];
                            if s.read_exact(&mut buf).is_ok() {
                                let _ = s.write_all(&buf);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
    }

    /// Connects from pod `which`, sends two bytes and reads the echo: true if all of it worked
    /// (the replies came back), false if the connection did not open.
    fn exchange(&self, which: &str, dst: &str) -> bool {
        let dst: SocketAddr = dst.parse().unwrap();
        let path = netns_path(&self.ns(which));
        std::thread::spawn(move || {
            let _g = NetnsGuard::enter(Some(&path)).unwrap();
            let Ok(mut c) = TcpStream::connect_timeout(&dst, Duration::from_millis(700)) else {
                return false;
            };
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 2];
            c.write_all(b"hi").is_ok() && c.read_exact(&mut buf).is_ok() && &buf == b"hi"
        })
        .join()
        .unwrap()
    }

    /// The agent's Prometheus text, read inside the node namespace.
    fn metrics(&self) -> String {
        let path = netns_path(&self.ns("n"));
        std::thread::spawn(move || {
            let _g = NetnsGuard::enter(Some(&path)).unwrap();
            let mut s = TcpStream::connect_timeout(
                &"127.0.0.1:9962".parse().unwrap(),
                Duration::from_secs(2),
            )
            .expect("agent metrics");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .join()
        .unwrap()
    }

    /// Connects from pod `which` using source port `sport`: whether the connection opened
    /// within `wait` (a dropped SYN times out). Two bytes are exchanged when it opens.
    fn connect_from(&self, which: &str, sport: u16, dst: &str, wait: Duration) -> bool {
        let dst: SocketAddr = dst.parse().unwrap();
        let path = netns_path(&self.ns(which));
        std::thread::spawn(move || {
            let _g = NetnsGuard::enter(Some(&path)).unwrap();
            // The socket is created here, so it lives in the pod's namespace.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.set_reuseaddr(true).unwrap();
                sock.bind(SocketAddr::from(([0, 0, 0, 0], sport))).unwrap();
                let Ok(Ok(mut c)) = tokio::time::timeout(wait, sock.connect(dst)).await else {
                    return false;
                };
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 2];
                // The echo may fail if the policy flips under this connection; only the
                // opening is the outcome.
                let _ = c.write_all(b"hi").await;
                let _ = tokio::time::timeout(Duration::from_secs(1), c.read_exact(&mut buf)).await;
                true
            })
        })
        .join()
        .unwrap()
    }

    async fn start_agent(&mut self, policy: &Path, mode: &str) -> ObserverClient<Channel> {
        let eps = self.dir.join("endpoints.yaml");
        std::fs::write(&eps, ENDPOINTS).unwrap();
        let sock = self.dir.join("agent.sock");
        let agent = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("n"),
                env!("CARGO_BIN_EXE_webb-agent"),
            ])
            .args(["--node-name", "pn1", "--endpoints"])
            .arg(&eps)
            .arg("--policy")
            .arg(policy)
            .args(["--policy-mode", mode])
            .args(["--listen", "127.0.0.1:4244", "--unix-socket"])
            .arg(&sock)
            // The node namespace's own loopback: no clash between tests.
            .args(["--metrics-listen", "127.0.0.1:9962"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start webb-agent");
        self.agent = Some(agent);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "agent did not start");
            if let Some(Ok(Some(status))) = self.agent.as_mut().map(Child::try_wait) {
                panic!("agent exited: {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ObserverClient::new(unix_channel(sock).await)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.servers.drain(..) {
            let _ = s.join();
        }
        if let Some(mut agent) = self.agent.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = agent.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = agent.kill();
            let _ = agent.wait();
        }
        for w in ["n", "a", "b", "c", "x"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(w)])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const ENDPOINTS: &str = r#"
endpoints:
  - {name: client-1, namespace: tools, labels: {app: client}, ips: [198.18.1.2], interface: lxcpa, node: pn1}
  - {name: server-1, namespace: shop, labels: {app: server}, ips: [198.18.2.2], interface: lxcpb, node: pn1}
  - {name: other-1, namespace: shop, labels: {app: other}, ips: [198.18.3.2], interface: lxcpc, node: pn1}
nodes:
  - {name: pn1, ips: [198.18.1.1, 198.18.2.1, 198.18.3.1, 198.18.9.1]}
"#;

const POLICY: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-ingress, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: client, k8s:io.kubernetes.pod.namespace: tools}}]
      toPorts:
        - ports:
            - {port: "8080", protocol: TCP}
            - {port: "9000", endPort: 9010, protocol: TCP}
  egress:
    - toEntities: [host]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: deny-9005}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingressDeny:
    - fromEntities: [all]
      toPorts: [{ports: [{port: "9005", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-egress, namespace: tools}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
    - toEndpoints: [{matchLabels: {app: server, k8s:io.kubernetes.pod.namespace: shop}}]
    - toCIDRSet: [{cidr: 198.18.9.0/24, except: [198.18.9.128/25]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: other-egress, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: other}}
  egress:
    - toEntities: [world]
"#;

async fn unix_channel(path: PathBuf) -> Channel {
    tonic::transport::Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await
        .unwrap()
}

async fn all_flows(client: &mut ObserverClient<Channel>, extras: bool) -> Vec<Flow> {
    let mut req = GetFlowsRequest {
        first: true,
        ..Default::default()
    };
    if extras {
        webb_proto::options::set(
            &mut req,
            &FlowsRequestOptions {
                include_extras: true,
                include_payload: false,
            },
        );
    }
    let mut s = client.get_flows(req).await.unwrap().into_inner();
    let mut out = vec![];
    while let Some(r) = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .unwrap()
    {
        if let Some(ResponseTypes::Flow(f)) = r.unwrap().response_types {
            out.push(f);
        }
    }
    out
}

const POLICY_VERDICT: i32 = 5;

/// Policy verdict flows of connections to `dst` (ip:port) from `src` (ip).
fn verdicts<'a>(flows: &'a [Flow], src: &str, dst: &str) -> Vec<&'a Flow> {
    let (dip, dport) = dst.rsplit_once(':').unwrap();
    flows
        .iter()
        .filter(|f| {
            f.event_type
                .as_ref()
                .is_some_and(|e| e.r#type == POLICY_VERDICT)
        })
        .filter(|f| {
            f.ip.as_ref()
                .is_some_and(|ip| ip.source == src && ip.destination == dip)
                && matches!(f.l4.as_ref().and_then(|l| l.protocol.as_ref()),
                    Some(Protocol::Tcp(t)) if t.destination_port.to_string() == dport)
        })
        .collect()
}

fn names(p: &[webb_proto::flow::Policy]) -> Vec<String> {
    p.iter().map(|p| p.name.clone()).collect()
}

#[derive(Debug, Clone, Copy)]
enum By {
    IngressAllowed,
    EgressAllowed,
    IngressDenied,
    DefaultDeny(&'static str),
}

struct Case {
    what: &'static str,
    from: &'static str,
    src: &'static str,
    dst: &'static str,
    connects: bool,
    verdict: Verdict,
    by: By,
    policy: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "allow by labels and port",
        from: "a",
        src: "198.18.1.2",
        dst: "198.18.2.2:8080",
        connects: true,
        verdict: Verdict::Forwarded,
        by: By::IngressAllowed,
        policy: "server-ingress",
    },
    Case {
        what: "... and the client's egress allows it",
        from: "a",
        src: "198.18.1.2",
        dst: "198.18.2.2:8080",
        connects: true,
        verdict: Verdict::Forwarded,
        by: By::EgressAllowed,
        policy: "client-egress",
    },
    Case {
        what: "allow by port range",
        from: "a",
        src: "198.18.1.2",
        dst: "198.18.2.2:9003",
        connects: true,
        verdict: Verdict::Forwarded,
        by: By::IngressAllowed,
        policy: "server-ingress",
    },
    Case {
        what: "explicit deny over allow",
        from: "a",
        src: "198.18.1.2",
        dst: "198.18.2.2:9005",
        connects: false,
        verdict: Verdict::Dropped,
        by: By::IngressDenied,
        policy: "deny-9005",
    },
    Case {
        what: "allow by CIDR",
        from: "a",
        src: "198.18.1.2",
        dst: "198.18.9.2:80",
        connects: true,
        verdict: Verdict::Forwarded,
        by: By::EgressAllowed,
        policy: "client-egress",
    },
    Case {
        what: "CIDR except: default deny egress",
        from: "a",
        src: "198.18.1.2",
        dst: "198.18.9.200:80",
        connects: false,
        verdict: Verdict::Dropped,
        by: By::DefaultDeny("default deny: egress of tools/client-1"),
        policy: "tools/client-egress",
    },
    Case {
        what: "allow by entity world",
        from: "c",
        src: "198.18.3.2",
        dst: "198.18.9.2:80",
        connects: true,
        verdict: Verdict::Forwarded,
        by: By::EgressAllowed,
        policy: "other-egress",
    },
    Case {
        what: "world entity is not an endpoint: default deny egress",
        from: "c",
        src: "198.18.3.2",
        dst: "198.18.2.2:8080",
        connects: false,
        verdict: Verdict::Dropped,
        by: By::DefaultDeny("default deny: egress of shop/other-1"),
        policy: "shop/other-egress",
    },
    Case {
        what: "default deny ingress",
        from: "x",
        src: "198.18.9.2",
        dst: "198.18.2.2:8080",
        connects: false,
        verdict: Verdict::Dropped,
        by: By::DefaultDeny("default deny: ingress of shop/server-1"),
        policy: "shop/server-ingress",
    },
];

fn check(case: &Case, flows: &[Flow]) -> Result<(), String> {
    let vs = verdicts(flows, case.src, case.dst);
    let hit = vs.iter().any(|f| {
        f.verdict == case.verdict as i32
            && match case.by {
                By::IngressAllowed => names(&f.ingress_allowed_by) == [case.policy],
                By::EgressAllowed => names(&f.egress_allowed_by) == [case.policy],
                By::IngressDenied => {
                    names(&f.ingress_denied_by) == [case.policy]
                        && f.drop_reason_desc == DropReason::PolicyDeny as i32
                }
                By::DefaultDeny(text) => {
                    f.drop_reason_desc == DropReason::PolicyDenied as i32
                        && f.policy_log
                            .iter()
                            .any(|l| l.starts_with(text) && l.contains(case.policy))
                        && f.ingress_denied_by.is_empty()
                        && f.egress_denied_by.is_empty()
                }
            }
    });
    if hit {
        Ok(())
    } else {
        Err(format!(
            "{}: {} -> {}: no {:?} verdict by {:?} {} among {:#?}",
            case.what,
            case.src,
            case.dst,
            case.verdict,
            case.by,
            case.policy,
            vs.iter()
                .map(|f| (
                    f.verdict,
                    names(&f.ingress_allowed_by),
                    names(&f.egress_allowed_by),
                    names(&f.ingress_denied_by),
                    &f.policy_log
                ))
                .collect::<Vec<_>>()
        ))
    }
}

async fn lab_with_traffic(tag: &str, mode: &str) -> (Lab, ObserverClient<Channel>) {
    let mut lab = Lab::build(tag);
    lab.serve(
        "b",
        &["198.18.2.2:8080", "198.18.2.2:9003", "198.18.2.2:9005"],
    );
    lab.serve("x", &["198.18.9.2:80", "198.18.9.200:80"]);
    let policy = lab.dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let client = lab.start_agent(&policy, mode).await;
    (lab, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_kind_decides_real_connections_and_flows_name_the_policy() {
    let (lab, mut client) = lab_with_traffic("e", "enforce").await;
    for c in CASES {
        assert_eq!(
            lab.exchange(c.from, c.dst),
            c.connects,
            "{}: {} -> {}",
            c.what,
            c.src,
            c.dst
        );
    }
    // Flows reach the ring within a few drain intervals: poll a bounded number of times.
    let mut failures = vec![];
    for _ in 0..50 {
        let flows = all_flows(&mut client, false).await;
        failures = CASES
            .iter()
            .filter_map(|c| check(c, &flows).err())
            .collect();
        if failures.is_empty() {
            // Plain Hubble clients get no Webb extension, even on default-deny drops.
            assert!(flows.iter().all(|f| f.extensions.is_none()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A client that asks gets the attribution as Webb's extension.
    let flows = all_flows(&mut client, true).await;
    let dd = verdicts(&flows, "198.18.9.2", "198.18.2.2:8080")
        .into_iter()
        .find_map(|f| webb_proto::extras::unpack(f).and_then(Result::ok))
        .and_then(|x| x.default_deny)
        .expect("default-deny attribution in FlowExtras");
    // Every policy that selects the server for ingress (the deny-only one too).
    assert_eq!(dd.policies, ["shop/server-ingress", "deny-9005"]);
    assert!(dd.text.contains("no rule allows"), "{}", dd.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_lets_denied_connections_through_and_marks_them_audit() {
    let (lab, mut client) = lab_with_traffic("u", "audit").await;
    assert!(
        lab.exchange("a", "198.18.2.2:9005"),
        "explicitly denied, but audit"
    );
    assert!(
        lab.exchange("x", "198.18.2.2:8080"),
        "default denied, but audit"
    );
    let mut ok = false;
    for _ in 0..50 {
        let flows = all_flows(&mut client, false).await;
        let deny = verdicts(&flows, "198.18.1.2", "198.18.2.2:9005")
            .into_iter()
            .any(|f| {
                f.verdict == Verdict::Audit as i32 && names(&f.ingress_denied_by) == ["deny-9005"]
            });
        let default = verdicts(&flows, "198.18.9.2", "198.18.2.2:8080")
            .into_iter()
            .any(|f| f.verdict == Verdict::Audit as i32 && !f.policy_log.is_empty());
        let none_dropped = flows.iter().all(|f| {
            f.verdict != Verdict::Dropped as i32
                || f.event_type
                    .as_ref()
                    .is_some_and(|e| e.r#type != POLICY_VERDICT)
        });
        if deny && default {
            assert!(none_dropped, "audit mode drops nothing");
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "AUDIT verdicts with their policies");
}

/// Replaces the policy file in one step (write aside, rename), so the agent never reads a
/// half-written file.
fn replace_file(path: &Path, text: &str) {
    let aside = path.with_extension("next");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

const ALLOW_9003: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: allow-9003, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: tools}}]
      toPorts: [{ports: [{port: "9003", protocol: TCP}]}]
"#;

/// The same allow, and an explicit deny of the port that beats it.
fn deny_9003() -> String {
    format!(
        r#"{ALLOW_9003}---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {{name: deny-9003}}
spec:
  endpointSelector: {{matchLabels: {{app: server}}}}
  ingressDeny:
    - fromEntities: [all]
      toPorts: [{{ports: [{{port: "9003", protocol: TCP}}]}}]
"#
    )
}

/// Policy verdict flows by the client's source port.
fn verdicts_by_port<'a>(flows: &'a [Flow], src: &str, dst: &str) -> Vec<(u16, &'a Flow)> {
    verdicts(flows, src, dst)
        .into_iter()
        .filter_map(|f| match f.l4.as_ref()?.protocol.as_ref()? {
            Protocol::Tcp(t) => Some((t.source_port as u16, f)),
            _ => None,
        })
        .collect()
}

/// The kernel's verdict is one of the two policies': forwarded by the allow, or dropped by the
/// explicit deny — never a default deny, never a verdict no policy names.
fn verdict_of_either(f: &Flow) -> Option<bool> {
    let allowed = f.verdict == Verdict::Forwarded as i32
        && names(&f.ingress_allowed_by) == ["allow-9003"]
        && f.ingress_denied_by.is_empty();
    let denied = f.verdict == Verdict::Dropped as i32
        && names(&f.ingress_denied_by) == ["deny-9003"]
        && f.drop_reason_desc == DropReason::PolicyDeny as i32;
    match (allowed, denied) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_from_allow_to_deny_under_continuous_traffic_flips_the_verdict_atomically() {
    let mut lab = Lab::build("r");
    lab.serve("b", &["198.18.2.2:9003"]);
    let policy = lab.dir.join("policy.yaml");
    replace_file(&policy, ALLOW_9003);
    let mut client = lab.start_agent(&policy, "enforce").await;

    // Bounded: four phases of 1.5 s (allow, deny, allow, deny: three swaps of the file, which
    // the agent polls every second), at most 400 connections. Each connection has its own
    // source port, so its verdict flow is found again.
    const PHASE: Duration = Duration::from_millis(1500);
    let start = Instant::now();
    let mut swaps = 0u32;
    let mut attempts: Vec<(u16, bool)> = Vec::new();
    while start.elapsed() < 4 * PHASE && attempts.len() < 400 {
        let phase = (start.elapsed().as_millis() / PHASE.as_millis()) as u32;
        if phase > swaps {
            swaps = phase;
            let text = if swaps % 2 == 1 {
                deny_9003()
            } else {
                ALLOW_9003.to_string()
            };
            replace_file(&policy, &text);
        }
        let sport = 31000 + attempts.len() as u16;
        let opened = lab.connect_from("a", sport, "198.18.2.2:9003", Duration::from_millis(250));
        attempts.push((sport, opened));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(swaps, 3, "the loop spans three reloads");
    // Outcomes in connection order change at most once per reload (no flapping while a
    // policy is half applied), and the behaviour did change back and forth.
    let outcomes: Vec<bool> = attempts.iter().map(|a| a.1).collect();
    let flips = outcomes.windows(2).filter(|w| w[0] != w[1]).count() as u32;
    assert!(
        (2..=swaps).contains(&flips),
        "{flips} changes of outcome across {swaps} reloads: {outcomes:?}"
    );
    assert!(outcomes[0], "the allow was in force first");

    // Every connection's first verdict is the kernel's decision the client saw, by one of the
    // two policies; and no verdict flow at all is of neither.
    let mut missing = attempts.len();
    for _ in 0..50 {
        let flows = all_flows(&mut client, false).await;
        let vs = verdicts_by_port(&flows, "198.18.1.2", "198.18.2.2:9003");
        for (port, f) in &vs {
            assert!(
                verdict_of_either(f).is_some(),
                "source port {port}: a verdict of neither policy: {f:?}"
            );
        }
        missing = 0;
        for &(sport, opened) in &attempts {
            let of_port: Vec<bool> = vs
                .iter()
                .filter(|(p, _)| *p == sport)
                .filter_map(|(_, f)| verdict_of_either(f))
                .collect();
            match of_port.first() {
                None => missing += 1,
                // An open connection's SYN was allowed; a flip right after may still drop its
                // later packets (decided again under the new policy).
                Some(&first) if opened => assert!(
                    first,
                    "source port {sport} opened, but its first verdict was a drop"
                ),
                Some(_) => assert!(
                    of_port.contains(&false),
                    "source port {sport} did not open, yet no flow says it was dropped"
                ),
            }
        }
        if missing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(missing, 0, "every connection has its verdict flow");
}

async fn policy_status(
    client: &mut ObserverClient<Channel>,
) -> webb_proto::webb_v1::NodePolicyStatus {
    let reply = client
        .server_status(webb_proto::observer::ServerStatusRequest {})
        .await
        .unwrap();
    let extras = webb_proto::status::read(reply.metadata())
        .expect("a Webb agent sends its status extras")
        .expect("they decode");
    assert_eq!(extras.policy.len(), 1, "{extras:?}");
    extras.policy.into_iter().next().unwrap()
}

/// A metric's value: the first sample of `name` whose labels contain `labels`.
fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && l.contains(labels)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_reload_keeps_the_old_policy_in_force_counts_it_and_status_names_file_line_and_field()
 {
    let mut lab = Lab::build("b");
    lab.serve("b", &["198.18.2.2:9003"]);
    let policy = lab.dir.join("policy.yaml");
    replace_file(&policy, &deny_9003());
    let mut client = lab.start_agent(&policy, "enforce").await;
    let before = policy_status(&mut client).await;
    assert!(before.revision > 0 && before.error.is_none(), "{before:?}");
    assert_eq!(before.policies, 2);

    // A typo in the second document's ingress (`toPort`) makes the whole load invalid.
    let bad = format!(
        "{ALLOW_9003}---\napiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {{name: open}}\nspec:\n  endpointSelector: {{}}\n  ingress:\n    - fromEntities: [all]\n      toPort: [{{ports: [{{port: \"9003\"}}]}}]\n"
    );
    replace_file(&policy, &bad);
    let mut status = before.clone();
    for _ in 0..50 {
        status = policy_status(&mut client).await;
        if status.error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = status
        .error
        .clone()
        .expect("the rejected load shows in status");
    assert_eq!(err.file, policy.display().to_string());
    assert_eq!(err.document, 2);
    assert_eq!(err.line, 18, "the line of `toPort`: {err:?}");
    assert!(err.message.contains("toPort"), "{err:?}");
    assert_eq!(
        (status.revision, status.policies, status.rejected),
        (before.revision, 2, 1),
        "the revision in force stays"
    );
    let text = lab.metrics();
    assert_eq!(
        metric(&text, "webb_policy_reloads_total", "result=\"error\""),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "webb_policy_config_valid", ""),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "webb_policy_revision", ""),
        Some(f64::from(before.revision))
    );

    // Traffic still meets the old policy: the explicit deny, under the old revision.
    for i in 0..3 {
        assert!(!lab.connect_from(
            "a",
            32000 + i,
            "198.18.2.2:9003",
            Duration::from_millis(250)
        ));
    }
    let mut ok = false;
    for _ in 0..50 {
        let flows = all_flows(&mut client, false).await;
        let vs = verdicts_by_port(&flows, "198.18.1.2", "198.18.2.2:9003");
        let after: Vec<&Flow> = vs
            .iter()
            .filter(|(p, _)| (32000..32003).contains(p))
            .map(|(_, f)| *f)
            .collect();
        if after.len() == 3 {
            for f in after {
                assert_eq!(verdict_of_either(f), Some(false), "{f:?}");
                assert_eq!(
                    f.ingress_denied_by[0].revision,
                    u64::from(before.revision),
                    "decided by the revision in force before the bad load"
                );
            }
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ok,
        "verdict flows of the connections after the rejected load"
    );

    // A good file again: in force, the error gone, the verdict flipped.
    replace_file(&policy, ALLOW_9003);
    for _ in 0..50 {
        status = policy_status(&mut client).await;
        if status.error.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(status.error.is_none(), "{status:?}");
    assert!(status.revision > before.revision);
    assert_eq!((status.policies, status.rejected), (1, 1));
    assert!(lab.connect_from("a", 32010, "198.18.2.2:9003", Duration::from_secs(2)));
    let text = lab.metrics();
    assert_eq!(metric(&text, "webb_policy_config_valid", ""), Some(1.0));
}

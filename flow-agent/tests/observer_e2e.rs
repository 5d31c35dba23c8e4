//! End to end on real network namespaces: the real `webb-agent` binary runs inside a "node"
//! namespace (`ip netns exec`, as tests simulate nodes) attached to two pods' host-side veths;
//! real TCP, UDP, ICMP and IPv6 traffic flows between the pods; the flows read back over the
//! agent's unix socket carry Hubble's endpoints, identities, directions and observation points.
//!
//! Needs root (namespaces, eBPF); without it the test says so and does nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flow_agent::datapath::NetnsGuard;
use flow_agent::endpoints::Endpoints;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use webb_proto::flow::{
    Flow, TraceObservationPoint, TraceReason, TrafficDirection, layer4::Protocol,
};
use webb_proto::health::pb::health_check_response::ServingStatus;
use webb_proto::health::pb::{HealthCheckRequest, health_client::HealthClient};
use webb_proto::observer::get_flows_response::ResponseTypes;
use webb_proto::observer::observer_client::ObserverClient;
use webb_proto::observer::{GetFlowsRequest, ServerStatusRequest};

/// Namespaces and files of one test run; removed on drop, also when the test fails.
struct Topology {
    node: String,
    pod_a: String,
    pod_b: String,
    dir: PathBuf,
    agent: Option<Child>,
}

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

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            // SIGTERM first so the agent detaches and removes its socket, then make sure.
            // SAFETY: plain kill(2) on our own child's pid.
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
        for ns in [&self.node, &self.pod_a, &self.pod_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Topology {
    fn netns_path(name: &str) -> PathBuf {
        Path::new("/run/netns").join(name)
    }

    /// node ⟷ veth ⟷ pod A (198.18.1.2, 2001:2:0:1::2) and pod B (198.18.2.2, 2001:2:0:2::2).
    fn build() -> Topology {
        let tag = std::process::id() % 100_000;
        let t = Topology {
            node: format!("wbe{tag}n"),
            pod_a: format!("wbe{tag}a"),
            pod_b: format!("wbe{tag}b"),
            dir: std::env::temp_dir().join(format!("webb-e2e-{tag}")),
            agent: None,
        };
        std::fs::create_dir_all(&t.dir).unwrap();
        for ns in [&t.node, &t.pod_a, &t.pod_b] {
            // Leftovers of an earlier run with the same pid.
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        for (pod, host_if, net) in [(&t.pod_a, "lxcwa", 1), (&t.pod_b, "lxcwb", 2)] {
            sh(&[
                "ip", "link", "add", host_if, "netns", &t.node, "type", "veth", "peer", "name",
                "eth0", "netns", pod,
            ]);
            let (gw4, gw6) = (format!("198.18.{net}.1"), format!("2001:2:0:{net}::1"));
            sh(&[
                "ip",
                "-n",
                &t.node,
                "addr",
                "add",
                &format!("{gw4}/24"),
                "dev",
                host_if,
            ]);
            sh(&[
                "ip",
                "-n",
                &t.node,
                "addr",
                "add",
                &format!("{gw6}/64"),
                "dev",
                host_if,
                "nodad",
            ]);
            sh(&["ip", "-n", &t.node, "link", "set", host_if, "up"]);
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
            sh(&[
                "ip",
                "-n",
                pod,
                "addr",
                "add",
                &format!("2001:2:0:{net}::2/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
            sh(&["ip", "-n", pod, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", pod, "route", "add", "default", "via", &gw4]);
            sh(&[
                "ip", "-n", pod, "-6", "route", "add", "default", "via", &gw6,
            ]);
        }
        sh(&[
            "ip",
            "netns",
            "exec",
            &t.node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &t.node,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
        ]);
        t
    }
}

const ENDPOINTS: &str = r#"
endpoints:
  - name: client-1
    namespace: tools
    labels: {app: client}
    workload: {name: client, kind: Deployment}
    ips: [198.18.1.2, "2001:2:0:1::2"]
    interface: lxcwa
    node: vn1
  - name: server-1
    namespace: shop
    labels: {app: server}
    ips: [198.18.2.2, "2001:2:0:2::2"]
    interface: lxcwb
    node: vn1
nodes:
  - {name: vn1, ips: [198.18.1.1, 198.18.2.1]}
"#;

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = Topology::netns_path(ns);
    std::thread::spawn(move || {
        let _guard = NetnsGuard::enter(Some(&path)).expect("enter netns");
        f()
    })
    .join()
    .expect("netns thread")
}

fn icmp_echo(dst: [u8; 4]) {
    // SAFETY: plain socket calls with valid buffers; the fd is closed at the end.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
        assert!(fd >= 0, "raw ICMP socket");
        let mut pkt = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'w', b'e', b'b', b'b'];
        let sum: u32 = pkt
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        let folded = !(((sum & 0xffff) + (sum >> 16)) as u16);
        pkt[2..4].copy_from_slice(&folded.to_be_bytes());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst),
            },
            sin_zero: [0; 8],
        };
        let n = libc::sendto(
            fd,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        assert_eq!(n, pkt.len() as isize);
        libc::close(fd);
    }
}

/// One TCP exchange: B listens on `server`, A connects, sends, reads the echo, closes.
fn tcp_exchange(t: &Topology, server: SocketAddr) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let b = Topology::netns_path(&t.pod_b);
    let srv = std::thread::spawn(move || {
        let _g = NetnsGuard::enter(Some(&b)).unwrap();
        let l = TcpListener::bind(server).unwrap();
        ready_tx.send(()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    in_netns(&t.pod_a, move || {
        let mut c = TcpStream::connect_timeout(&server, Duration::from_secs(5)).unwrap();
        c.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).unwrap();
    });
    srv.join().unwrap();
}

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

async fn all_flows(client: &mut ObserverClient<Channel>) -> Vec<Flow> {
    let mut s = client
        .get_flows(GetFlowsRequest {
            first: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
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

fn pods(f: &Flow) -> (&str, &str) {
    (
        f.source.as_ref().map(|e| e.pod_name.as_str()).unwrap_or(""),
        f.destination
            .as_ref()
            .map(|e| e.pod_name.as_str())
            .unwrap_or(""),
    )
}

fn describe(flows: &[Flow]) -> String {
    flows
        .iter()
        .map(|f| {
            format!(
                "{:?} {} obs={} dir={} reply={:?} if={:?}\n",
                pods(f),
                f.summary,
                f.trace_observation_point,
                f.traffic_direction,
                f.is_reply.map(|b| b.value),
                f.interface.as_ref().map(|i| i.name.as_str())
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_traffic_becomes_hubble_flows_with_endpoints_directions_and_points() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (network namespaces and eBPF): run it through `cargo xtask test`"
    );
    let mut t = Topology::build();
    let eps_path = t.dir.join("endpoints.yaml");
    std::fs::write(&eps_path, ENDPOINTS).unwrap();
    let sock = t.dir.join("vn1.sock");
    let agent = Command::new("ip")
        .args(["netns", "exec", &t.node, env!("CARGO_BIN_EXE_webb-agent")])
        .args(["--node-name", "vn1", "--endpoints"])
        .arg(&eps_path)
        .args(["--listen", "127.0.0.1:4244", "--unix-socket"])
        .arg(&sock)
        .args(["--metrics-listen", "127.0.0.1:9962"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start webb-agent");
    t.agent = Some(agent);

    // The agent attaches before it listens: once the socket answers, it observes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "agent did not start");
        if let Some(Ok(Some(status))) = t.agent.as_mut().map(Child::try_wait) {
            panic!("agent exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let channel = unix_channel(sock.clone()).await;
    let mut health = HealthClient::new(channel.clone());
    let h = health
        .check(HealthCheckRequest {
            service: "hubble.server.Observer".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.status, ServingStatus::Serving as i32);

    // Traffic: TCP over IPv4 and IPv6, UDP to a closed port, ICMP echo.
    let t_ref = &t;
    tcp_exchange(t_ref, "198.18.2.2:8080".parse().unwrap());
    tcp_exchange(t_ref, "[2001:2:0:2::2]:8081".parse().unwrap());
    in_netns(&t.pod_a, || {
        let s = UdpSocket::bind("198.18.1.2:0").unwrap();
        s.send_to(b"ping", "198.18.2.2:5555").unwrap();
        // Nothing listens on the node either: the node's kernel drops this one itself.
        s.send_to(b"drop", "198.18.1.1:5557").unwrap();
        icmp_echo([198, 18, 2, 2]);
    });

    let mut client = ObserverClient::new(channel.clone());
    let ids = Endpoints::parse(ENDPOINTS, "e2e", "vn1").unwrap();
    let client_id = ids.identity_of(&"198.18.1.2".parse().unwrap());
    let server_id = ids.identity_of(&"198.18.2.2".parse().unwrap());

    // Flows reach the ring within a few drain intervals; poll a bounded number of times.
    let mut flows = vec![];
    for _ in 0..50 {
        flows = all_flows(&mut client).await;
        let have = |s: &str| flows.iter().any(|f| f.summary == s);
        let kdrop = flows.iter().any(|f| f.summary.contains("kernel drop:"));
        if have("ICMPv4 EchoReply") && have("ICMPv4 DestinationUnreachable(Port)") && kdrop {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dump = describe(&flows);
    let find = |pred: &dyn Fn(&Flow) -> bool| -> &Flow {
        flows
            .iter()
            .find(|f| pred(f))
            .unwrap_or_else(|| panic!("no such flow among:\n{dump}"))
    };
    let is_v4 = |f: &Flow| f.ip.as_ref().is_some_and(|ip| ip.ip_version == 1);
    let is_v6 = |f: &Flow| f.ip.as_ref().is_some_and(|ip| ip.ip_version == 2);
    let point = |f: &Flow, p: TraceObservationPoint| f.trace_observation_point == p as i32;

    // The SYN leaves the client pod (to-stack on its veth, egress) ...
    let syn_out = find(&|f| {
        is_v4(f) && f.summary == "TCP Flags: SYN" && point(f, TraceObservationPoint::ToStack)
    });
    assert_eq!(pods(syn_out), ("client-1", "server-1"));
    assert_eq!(syn_out.traffic_direction, TrafficDirection::Egress as i32);
    assert_eq!(syn_out.trace_reason, TraceReason::New as i32);
    assert_eq!(syn_out.is_reply.map(|b| b.value), Some(false));
    assert_eq!(syn_out.interface.as_ref().unwrap().name, "lxcwa");
    assert_eq!(syn_out.node_name, "vn1");
    let src = syn_out.source.as_ref().unwrap();
    assert_eq!((src.identity, src.namespace.as_str()), (client_id, "tools"));
    assert!(src.id > 0, "local endpoint ID");
    assert_eq!(src.workloads[0].name, "client");
    assert_eq!(syn_out.destination.as_ref().unwrap().identity, server_id);
    assert!(syn_out.ethernet.is_some());
    let Some(Protocol::Tcp(tcp)) = syn_out.l4.as_ref().and_then(|l| l.protocol.clone()) else {
        panic!("TCP layer expected")
    };
    assert_eq!(tcp.destination_port, 8080);

    // ... and is delivered to the server pod (to-endpoint on its veth, ingress for it).
    let syn_in = find(&|f| {
        is_v4(f) && f.summary == "TCP Flags: SYN" && point(f, TraceObservationPoint::ToEndpoint)
    });
    assert_eq!(syn_in.traffic_direction, TrafficDirection::Ingress as i32);
    assert_eq!(syn_in.interface.as_ref().unwrap().name, "lxcwb");

    // The SYN-ACK is a reply; delivered to the client it keeps the connection's direction.
    let synack = find(&|f| {
        is_v4(f)
            && f.summary == "TCP Flags: SYN, ACK"
            && point(f, TraceObservationPoint::ToEndpoint)
    });
    assert_eq!(pods(synack), ("server-1", "client-1"));
    assert_eq!(synack.is_reply.map(|b| b.value), Some(true));
    assert_eq!(synack.trace_reason, TraceReason::Reply as i32);
    assert_eq!(synack.traffic_direction, TrafficDirection::Egress as i32);

    // IPv6 resolves the same endpoints.
    let syn6 = find(&|f| is_v6(f) && f.summary == "TCP Flags: SYN");
    assert_eq!(pods(syn6), ("client-1", "server-1"));

    // UDP to a closed port: the datagram and the ICMP error coming back.
    let udp = find(&|f| f.summary == "UDP");
    assert_eq!(pods(udp), ("client-1", "server-1"));
    let unreach = find(&|f| f.summary == "ICMPv4 DestinationUnreachable(Port)");
    assert_eq!(pods(unreach), ("server-1", "client-1"));

    // ICMP echo and its reply.
    let echo = find(&|f| f.summary == "ICMPv4 EchoRequest");
    assert_eq!(pods(echo), ("client-1", "server-1"));
    let reply = find(&|f| f.summary == "ICMPv4 EchoReply");
    assert_eq!(pods(reply), ("server-1", "client-1"));

    // A drop Webb did not cause: the kernel's reason and location, as a DROPPED flow. (The
    // namespaces' own IPv6 multicast, e.g. MLD reports, can be dropped by the kernel too.)
    let kdrop = find(&|f| f.summary.starts_with("UDP (kernel drop:"));
    assert_eq!(kdrop.verdict, webb_proto::flow::Verdict::Dropped as i32);
    assert!(
        kdrop.summary.starts_with("UDP (kernel drop: NO_SOCKET at "),
        "{}",
        kdrop.summary
    );
    assert_eq!(
        kdrop.destination.as_ref().unwrap().labels,
        ["reserved:host"],
        "the node's own address"
    );

    let status = client
        .server_status(ServerStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.seen_flows >= flows.len() as u64);
    assert_eq!(status.max_flows, 4095);

    // Operational metrics inside the node namespace.
    let node = t.node.clone();
    let metrics = in_netns(&node, || {
        let mut s = TcpStream::connect("127.0.0.1:9962").unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    });
    assert!(metrics.contains("webb_lost_events_total{"), "{metrics}");
    assert!(
        metrics.contains("webb_datapath_events_total{node=\"vn1\"}"),
        "{metrics}"
    );

    // A changed endpoints file takes effect without a restart.
    std::fs::write(&eps_path, ENDPOINTS.replace("app: server", "app: backend")).unwrap();
    let mut relabelled = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        in_netns(&t.pod_a, || {
            let s = UdpSocket::bind("198.18.1.2:0").unwrap();
            s.send_to(b"again", "198.18.2.2:5556").unwrap();
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let latest = all_flows(&mut client).await;
        relabelled = latest.iter().any(|f| {
            f.destination
                .as_ref()
                .is_some_and(|d| d.labels.iter().any(|l| l == "k8s:app=backend"))
        });
        if relabelled {
            break;
        }
    }
    assert!(relabelled, "flows after the reload carry the new labels");
    drop(t);
}

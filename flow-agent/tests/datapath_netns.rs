//! The datapath on real network namespaces with real traffic (root required; fails otherwise).
//! Topology per test: netns `cli` ↔ veth ↔ netns `srv`; the observers attach to the srv-side
//! veth from the root namespace through setns. Namespaces are deleted on drop, even on failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use flow_agent::datapath::event::{CtState, Direction, EventKind, Family, RawEvent};
use flow_agent::datapath::{Datapath, DatapathConfig, KernelDropNames, NetnsGuard};

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip(8) (iproute2 installed?)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; removed on drop.
struct Topology {
    cli: String,
    srv: String,
}

impl Topology {
    fn new(tag: &str, net: &str) -> Topology {
        let id = std::process::id();
        let t = Topology {
            cli: format!("wbt{id}{tag}c"),
            srv: format!("wbt{id}{tag}s"),
        };
        ip(&["netns", "add", &t.cli]);
        ip(&["netns", "add", &t.srv]);
        ip(&[
            "-n", &t.cli, "link", "add", "eth0", "type", "veth", "peer", "name", "veth0", "netns",
            &t.srv,
        ]);
        ip(&[
            "-n",
            &t.cli,
            "addr",
            "add",
            &format!("{net}.1/24"),
            "dev",
            "eth0",
        ]);
        ip(&[
            "-n",
            &t.srv,
            "addr",
            "add",
            &format!("{net}.2/24"),
            "dev",
            "veth0",
        ]);
        for (ns, dev) in [(&t.cli, "eth0"), (&t.srv, "veth0")] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        t
    }

    fn path(name: &str) -> PathBuf {
        PathBuf::from(format!("/run/netns/{name}"))
    }

    /// Runs `f` on a fresh thread inside namespace `name` (sockets keep their namespace).
    fn within<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let p = Self::path(name);
        std::thread::spawn(move || {
            let _g = NetnsGuard::enter(Some(&p)).expect("enter netns");
            f()
        })
        .join()
        .expect("netns thread")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.cli, &self.srv] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// `rounds` datagrams from a client socket in one namespace to a server socket in another,
/// each echoed back before the next is sent.
fn udp_echoes(client: (&str, &'static str), server: (&str, &'static str), rounds: usize) {
    let (srv_addr, cli_addr) = (server.1, client.1);
    let srv = Topology::within(server.0, move || UdpSocket::bind(srv_addr).unwrap());
    let cli = Topology::within(client.0, move || UdpSocket::bind(cli_addr).unwrap());
    srv.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    cli.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..rounds {
        cli.send_to(b"ping", srv_addr).unwrap();
        let (n, from) = srv.recv_from(&mut buf).unwrap();
        srv.send_to(&buf[..n], from).unwrap();
        cli.recv_from(&mut buf).unwrap();
    }
}

/// The UDP records of `recs` to or from `port`.
fn udp_records(recs: &[Vec<u8>], port: u16) -> Vec<RawEvent<'_>> {
    recs.iter()
        .map(|r| RawEvent::parse(r).unwrap())
        .filter(|e| e.l4_proto == 17 && (e.sport == port || e.dport == port))
        .collect()
}

fn load() -> Datapath {
    let mut dp =
        Datapath::load(DatapathConfig::default()).expect("load datapath (needs root and BPF)");
    dp.set_ipcache(&[("198.18.0.0/15".parse().unwrap(), 4242)])
        .unwrap();
    dp
}

#[test]
fn bulk_tcp_transfer_yields_one_event_per_lifecycle_step_not_per_packet() {
    const BYTES: usize = 10 << 20;
    let topo = Topology::new("t", "198.18.20");
    let mut dp = load();
    let att = dp
        .attach("veth0", Some(&Topology::path(&topo.srv)))
        .unwrap();
    assert!(att.tcx, "kernel 6.6+ attaches with TCX");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut rx = dp.events().unwrap();

    let listener = Topology::within(&topo.srv, || TcpListener::bind("198.18.20.2:8080").unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    let client = Topology::within(&topo.cli, || {
        TcpStream::connect_timeout(
            &"198.18.20.2:8080".parse::<SocketAddr>().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap()
    });
    let sport = client.local_addr().unwrap().port();
    let mut client = client;
    let chunk = vec![0u8; 64 << 10];
    let mut sent = 0;
    while sent < BYTES {
        client.write_all(&chunk).unwrap();
        sent += chunk.len();
    }
    drop(client);
    assert_eq!(server.join().unwrap(), BYTES);
    std::thread::sleep(Duration::from_millis(100)); // final FIN/ACK through the veth

    let mut evs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    rt.block_on(async {
        while let Ok(Some(batch)) = tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            evs.extend(batch.iter().map(<[u8]>::to_vec));
        }
    });
    let conn: Vec<RawEvent<'_>> = evs
        .iter()
        .map(|r| RawEvent::parse(r).unwrap())
        .filter(|e| e.kind == EventKind::Trace && (e.sport == sport || e.dport == sport))
        .collect();
    let states: Vec<CtState> = conn.iter().map(|e| e.ct_state).collect();
    let c = dp.counters().unwrap();
    // veth keeps GSO super-packets: ~160+ skbs of up to 64 KB each way, plus the ACKs.
    assert!(
        c.bytes >= BYTES as u64,
        "the whole transfer crossed the hook, saw {} bytes",
        c.bytes
    );
    assert!(c.packets > 100, "saw only {} packets", c.packets);
    assert_eq!(
        states,
        [
            CtState::New,
            CtState::Reply,
            CtState::Closing,
            CtState::Closing
        ],
        "SYN, SYN-ACK, FIN each way — {} packets observed",
        c.packets
    );
    assert!(conn[0].dst_identity == 4242 && conn[0].src_identity == 4242);
    assert!(!conn[0].is_reply && conn[1].is_reply);
    assert_eq!(
        (conn[0].netns_ino, conn[0].ifindex),
        (att.netns_ino, att.ifindex)
    );
    assert_eq!(
        conn[1].netns_ino, att.netns_ino,
        "egress records name the namespace too"
    );
    assert_eq!(c.ring_fail, 0);
    drop(topo);
}

#[test]
fn udp_to_a_closed_port_is_a_kernel_drop_with_its_reason() {
    let topo = Topology::new("u", "198.18.21");
    let mut dp = load();
    dp.attach("veth0", Some(&Topology::path(&topo.srv)))
        .unwrap();
    let names = KernelDropNames::load().expect("drop reason names from tracefs");

    let sock = Topology::within(&topo.cli, || UdpSocket::bind("198.18.21.1:0").unwrap());
    let sport = sock.local_addr().unwrap().port();
    sock.send_to(b"anyone?", "198.18.21.2:9").unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let recs = dp.drain_events().unwrap();
    let evs: Vec<RawEvent<'_>> = recs.iter().map(|r| RawEvent::parse(r).unwrap()).collect();
    let kdrop = evs
        .iter()
        .find(|e| e.kind == EventKind::KernelDrop && e.sport == sport && e.dport == 9)
        .unwrap_or_else(|| panic!("no kernel drop for the datagram among {evs:#?}"));
    assert_eq!(names.reason_name(kdrop.kdrop_reason), Some("NO_SOCKET"));
    let loc = names
        .location(kdrop.kdrop_location)
        .expect("location resolves to a symbol");
    assert!(loc.contains('+'), "symbol+offset, got {loc}");
    assert_eq!(kdrop.dst_ip(), Some("198.18.21.2".parse().unwrap()));
    assert_eq!(kdrop.dst_identity, 4242);
    assert_eq!(kdrop.netns_ino, dp.interfaces()[0].netns_ino);
    // The ICMP port-unreachable answer is observed too (errors always emit).
    assert!(
        evs.iter()
            .any(|e| e.kind == EventKind::Trace && e.icmp_type == 3 && e.icmp_code == 3)
    );
    drop(topo);
}

#[test]
fn ipv6_udp_between_namespaces_is_observed_both_ways() {
    let topo = Topology::new("6", "198.18.23");
    ip(&[
        "-n",
        &topo.cli,
        "addr",
        "add",
        "2001:2:0:23::1/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    ip(&[
        "-n",
        &topo.srv,
        "addr",
        "add",
        "2001:2:0:23::2/64",
        "dev",
        "veth0",
        "nodad",
    ]);
    let mut dp = load();
    dp.set_ipcache(&[
        ("2001:2:0:23::1/128".parse().unwrap(), 3001),
        ("2001:2:0:23::2/128".parse().unwrap(), 3002),
    ])
    .unwrap();
    dp.attach("veth0", Some(&Topology::path(&topo.srv)))
        .unwrap();

    udp_echoes(
        (&topo.cli, "[2001:2:0:23::1]:0"),
        (&topo.srv, "[2001:2:0:23::2]:7000"),
        3,
    );
    let recs = dp.drain_events().unwrap();
    let evs = udp_records(&recs, 7000);
    assert_eq!(
        evs.len(),
        2,
        "first datagram each way, not all six: {evs:#?}"
    );
    assert_eq!(evs[0].family, Family::V6);
    assert_eq!((evs[0].src_identity, evs[0].dst_identity), (3001, 3002));
    assert_eq!(evs[0].direction, Direction::Ingress);
    assert!(!evs[0].is_reply && evs[1].is_reply);
    assert_eq!(evs[1].direction, Direction::Egress);
    assert_eq!(evs[1].src_ip(), Some("2001:2:0:23::2".parse().unwrap()));
    drop(topo);
}

/// `cli` ↔ `node` ↔ `srv`: the node routes between two veths, as between two pods of one node.
/// The srv-side veth has a fixed index, so no index of the node's two veths can equal it.
struct Routed {
    cli: String,
    node: String,
    srv: String,
}

impl Routed {
    fn new(tag: &str) -> Routed {
        let id = std::process::id();
        let t = Routed {
            cli: format!("wbt{id}{tag}c"),
            node: format!("wbt{id}{tag}n"),
            srv: format!("wbt{id}{tag}s"),
        };
        for ns in [&t.cli, &t.node, &t.srv] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n", &t.cli, "link", "add", "eth0", "type", "veth", "peer", "name", "vcli", "netns",
            &t.node,
        ]);
        ip(&[
            "-n", &t.srv, "link", "add", "eth0", "index", "4001", "type", "veth", "peer", "name",
            "vsrv", "netns", &t.node,
        ]);
        for (ns, dev, addr) in [
            (&t.cli, "eth0", "198.18.24.1/24"),
            (&t.node, "vcli", "198.18.24.254/24"),
            (&t.srv, "eth0", "198.18.25.1/24"),
            (&t.node, "vsrv", "198.18.25.254/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&[
            "-n",
            &t.cli,
            "route",
            "add",
            "default",
            "via",
            "198.18.24.254",
        ]);
        ip(&[
            "-n",
            &t.srv,
            "route",
            "add",
            "default",
            "via",
            "198.18.25.254",
        ]);
        let fwd = Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.node,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])
            .status()
            .expect("run sysctl");
        assert!(fwd.success(), "enable forwarding in {}", t.node);
        t
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        for ns in [&self.cli, &self.node, &self.srv] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn a_routed_connection_is_one_conntrack_entry_for_two_hooks_and_each_hook_reports_it() {
    // The datagram crosses three watched interfaces: the node's veth to the client (ingress),
    // its veth to the server (egress), then the server's own interface (ingress). The first two
    // share one conntrack entry (one slot each); the third keys an entry of its own.
    let topo = Routed::new("r");
    let mut dp = load();
    dp.set_ipcache(&[
        ("198.18.24.1/32".parse().unwrap(), 5001),
        ("198.18.25.1/32".parse().unwrap(), 5002),
    ])
    .unwrap();
    let node = Topology::path(&topo.node);
    let hooks = [
        dp.attach("vcli", Some(&node)).unwrap().ifindex,
        dp.attach("vsrv", Some(&node)).unwrap().ifindex,
        dp.attach("eth0", Some(&Topology::path(&topo.srv)))
            .unwrap()
            .ifindex,
    ];
    assert_eq!(hooks[2], 4001);

    let before = dp.counters().unwrap();
    udp_echoes(
        (&topo.cli, "198.18.24.1:0"),
        (&topo.srv, "198.18.25.1:7100"),
        3,
    );
    let after = dp.counters().unwrap();
    let recs = dp.drain_events().unwrap();
    let evs = udp_records(&recs, 7100);
    let seen: Vec<(u32, Direction, CtState, bool)> = evs
        .iter()
        .map(|e| (e.ifindex, e.direction, e.ct_state, e.is_reply))
        .collect();
    assert_eq!(
        seen,
        [
            (hooks[0], Direction::Ingress, CtState::New, false),
            (hooks[1], Direction::Egress, CtState::New, false),
            (hooks[2], Direction::Ingress, CtState::New, false),
            (hooks[2], Direction::Egress, CtState::Reply, true),
            (hooks[1], Direction::Ingress, CtState::Reply, true),
            (hooks[0], Direction::Egress, CtState::Reply, true),
        ],
        "the first datagram each way at each hook; the other two exchanges add nothing"
    );
    assert!(
        evs.iter()
            .all(|e| (e.src_identity, e.dst_identity) == (5001, 5002)
                || (e.src_identity, e.dst_identity) == (5002, 5001)),
        "{evs:#?}"
    );
    assert_eq!(
        after.ct_new - before.ct_new,
        2,
        "one entry shared by the node's two hooks, one for the server's interface"
    );
    drop(topo);
}

#[test]
fn interfaces_are_followed_when_they_disappear_and_reappear() {
    let topo = Topology::new("r", "198.18.22");
    let mut dp = load();
    let ns = Topology::path(&topo.srv);
    dp.attach("veth0", Some(&ns)).unwrap();
    ip(&["-n", &topo.cli, "link", "del", "eth0"]);
    let r = dp.rescan();
    assert_eq!(r.detached.len(), 1);
    assert!(dp.interfaces().is_empty());
    ip(&[
        "-n", &topo.cli, "link", "add", "eth0", "type", "veth", "peer", "name", "veth0", "netns",
        &topo.srv,
    ]);
    let r = dp.rescan();
    assert_eq!(r.attached.len(), 1, "{r:?}");
    assert_eq!(dp.interfaces().len(), 1);
    drop(topo);
}

#[test]
fn attaching_to_a_missing_interface_is_a_clear_error() {
    let mut dp = load();
    let err = dp.attach("wbt-nope0", None).unwrap_err().to_string();
    assert!(
        err.contains("wbt-nope0") && err.contains("not found"),
        "{err}"
    );
}

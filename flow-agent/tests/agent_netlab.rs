//! The real `webb-agent` on netlab's namespaces (node1 with the frontend and catalog pods):
//! ICMPv6 as Hubble shows it, and an overload the event ring cannot carry — lost events are
//! counted by stage, reported in the stream, and every record is either a flow or a loss.
//!
//! Needs root (namespaces, eBPF); run through `cargo xtask test`.

mod datapath_support;

use std::net::{Ipv6Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use datapath_support::agent::{Agent, everything};
use datapath_support::blast;
use webb_proto::flow::{Flow, LostEventSource, Verdict, layer4::Protocol};
use webb_proto::observer::ServerStatusRequest;

fn root_or_fail() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (network namespaces and eBPF): run it through `cargo xtask test`"
    );
}

fn topology(base: &str) -> netlab::Topology {
    netlab::cleanup_stale(base);
    netlab::Topology::build(&netlab::unique_prefix(base)).expect("netlab topology")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_overload_is_counted_by_stage_reported_as_lost_events_and_reconciles() {
    root_or_fail();
    let topo = topology("wbgo");
    let node = topo.nodes()[0].netns.clone();
    // One page of ring (about 20 records) and a reader that drains it every few ms: a burst of
    // new flows cannot fit. The flow ring holds everything the burst can produce.
    let agent = Agent::start(
        &topo,
        &node,
        &["--datapath-ring-bytes", "4096", "--ring-capacity", "65535"],
    );
    let (frontend, catalog) = (
        topo.pod("frontend").unwrap().clone(),
        topo.pod("catalog").unwrap().clone(),
    );
    let dst = SocketAddrV4::new(catalog.ipv4, 9);
    let receiver = netlab::netns::spawn_in(&catalog.netns, move || {
        blast::Receiver::start(UdpSocket::bind(dst).unwrap())
    })
    .unwrap()
    .join();
    // Each datagram is a new flow, seen on lxcfrontend and again on lxccatalog: two records.
    const BURST: u64 = 20_000;
    let sent = netlab::netns::spawn_in(&frontend.netns, move || {
        blast::udp_new_flows(frontend.ipv4, dst, 32, BURST, Duration::from_secs(10))
    })
    .unwrap()
    .join()
    .expect("blast");
    assert!(sent.sent > BURST / 2, "{sent:?}");
    let received = receiver.settled(Duration::from_millis(200), Duration::from_secs(5));

    // Reconcile once the agent has taken stock (its counters are read every second, its ring
    // is written continuously): every record the kernel tried to write is a flow or a loss.
    let mut client = agent.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut m, mut flows, mut lost_stream, mut seen_flows);
    loop {
        m = agent.metrics();
        let status = client
            .server_status(ServerStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        seen_flows = status.seen_flows;
        (flows, lost_stream) = everything(&mut client).await;
        let attempted = m["webb_datapath_events_total"] + m["webb_datapath_reserve_failures_total"];
        let lost = m["webb_lost_events_total{stage=\"datapath_ring\"}"];
        let ring_lost = lost_stream
            .get(&(LostEventSource::PerfEventRingBuffer as i32))
            .copied()
            .unwrap_or(0);
        if attempted == (seen_flows + ring_lost) as f64
            && lost == ring_lost as f64
            && flows.len() as u64 == seen_flows
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reconciliation: kernel wrote {} + failed {}; flows {} (stream {}); lost metric \
             {lost}, lost in stream {lost_stream:?}",
            m["webb_datapath_events_total"],
            m["webb_datapath_reserve_failures_total"],
            seen_flows,
            flows.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let failures = m["webb_datapath_reserve_failures_total"] as u64;
    let events = m["webb_datapath_events_total"] as u64;
    println!(
        "sent {} datagrams ({} refused) in {:?}, {received} received; kernel wrote {events} \
         records, {failures} did not fit; {} flows + {failures} lost",
        sent.sent,
        sent.refused,
        sent.elapsed,
        flows.len()
    );
    assert!(
        failures > 0,
        "a 4 KiB ring must overflow under {BURST} new flows"
    );
    assert!(events > 0, "some records fit");
    assert_eq!(m["webb_lost_events_total{stage=\"decode\"}"], 0.0);
    assert_eq!(
        m["webb_lost_events_total{stage=\"hubble_ring_reader\"}"],
        0.0
    );
    assert!(
        events + failures >= 2 * received,
        "every delivered datagram crossed both watched interfaces as a new flow"
    );
    // The ring's high-water mark reached its size: writes failed because it was full.
    assert_eq!(m["webb_datapath_ring_size_bytes"], 4096.0);
    let udp_flows = flows
        .iter()
        .filter(|f| {
            matches!(f.l4.as_ref().and_then(|l| l.protocol.as_ref()),
                Some(Protocol::Udp(u)) if u.destination_port == 9)
        })
        .count() as u64;
    assert!(
        udp_flows > 0 && udp_flows < 2 * sent.sent,
        "some of the burst's flows and not all: {udp_flows}"
    );
    drop(agent);
    drop(receiver);
    drop(topo);
}

/// Sends `count` ICMPv6 echo requests from one datagram "ping" socket (one identifier) on the
/// calling thread and counts the replies, each awaited up to a second.
fn ping6(dst: Ipv6Addr, count: u16) -> u16 {
    // SAFETY: plain socket calls with valid buffers; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_ICMPV6) };
    assert!(
        fd >= 0,
        "ICMPv6 ping socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is fresh and owned only here.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let sock = UdpSocket::from(sock);
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut replies = 0;
    for seq in 1..=count {
        let mut msg = vec![128u8, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&seq.to_be_bytes());
        msg.extend_from_slice(b"webb-icmpv6");
        sock.send_to(&msg, (dst, 0)).unwrap();
        let mut buf = [0u8; 128];
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n >= 8 && buf[0] == 129 && buf[6..8] == seq.to_be_bytes() {
                replies += 1;
                break;
            }
        }
    }
    replies
}

fn icmpv6(f: &Flow) -> Option<(u32, u32)> {
    match f.l4.as_ref()?.protocol.as_ref()? {
        Protocol::IcmPv6(i) => Some((i.r#type, i.code)),
        _ => None,
    }
}

fn pods(f: &Flow) -> (&str, &str) {
    fn name(e: &Option<webb_proto::flow::Endpoint>) -> &str {
        e.as_ref().map(|e| e.pod_name.as_str()).unwrap_or("")
    }
    (name(&f.source), name(&f.destination))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icmpv6_echo_and_neighbour_discovery_become_flows_as_hubble_shows_them() {
    root_or_fail();
    let topo = topology("wbg6");
    let node = topo.nodes()[0].netns.clone();
    let agent = Agent::start(&topo, &node, &[]);
    let (frontend, catalog) = (
        topo.pod("frontend").unwrap().clone(),
        topo.pod("catalog").unwrap().clone(),
    );
    // Forget every IPv6 neighbour, so the pings below start with neighbour discovery.
    for ns in [&node, &frontend.netns, &catalog.netns] {
        let out = Command::new("ip")
            .args(["-n", ns, "-6", "neigh", "flush", "all"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let dst = catalog.ipv6;
    let replies = netlab::netns::spawn_in(&frontend.netns, move || ping6(dst, 3))
        .unwrap()
        .join();
    assert_eq!(replies, 3, "catalog answers every echo");

    let mut client = agent.client().await;
    let is_echo = |f: &Flow, t: u32| icmpv6(f) == Some((t, 0)) && !pods(f).0.is_empty();
    let mut flows = vec![];
    for _ in 0..50 {
        (flows, _) = everything(&mut client).await;
        let requests = flows.iter().filter(|f| is_echo(f, 128)).count();
        let replies = flows.iter().filter(|f| is_echo(f, 129)).count();
        let nd = flows
            .iter()
            .any(|f| icmpv6(f).is_some_and(|(t, _)| t == 135 || t == 136));
        if requests >= 2 && replies >= 2 && nd {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dump: String = flows
        .iter()
        .filter(|f| icmpv6(f).is_some())
        .map(|f| format!("{:?} {} reply={:?}\n", pods(f), f.summary, f.is_reply))
        .collect();

    // Echo request: one flow per watched interface (leaving frontend, entering catalog), not
    // one per ping: the three requests share the socket's identifier, one connection.
    let requests: Vec<&Flow> = flows.iter().filter(|f| is_echo(f, 128)).collect();
    assert_eq!(
        requests.len(),
        2,
        "one echo-request flow per interface:\n{dump}"
    );
    for f in &requests {
        assert_eq!(f.summary, "ICMPv6 EchoRequest");
        assert_eq!(pods(f), (frontend.name.as_str(), catalog.name.as_str()));
        assert_eq!(f.is_reply.map(|b| b.value), Some(false));
        assert_eq!(f.verdict, Verdict::Forwarded as i32);
        let ip = f.ip.as_ref().unwrap();
        assert_eq!(ip.ip_version, 2, "IPv6");
        assert_eq!(
            (ip.source.as_str(), ip.destination.as_str()),
            (
                frontend.ipv6.to_string().as_str(),
                catalog.ipv6.to_string().as_str()
            )
        );
    }
    let replies: Vec<&Flow> = flows.iter().filter(|f| is_echo(f, 129)).collect();
    assert_eq!(
        replies.len(),
        2,
        "one echo-reply flow per interface:\n{dump}"
    );
    for f in &replies {
        assert_eq!(f.summary, "ICMPv6 EchoReply");
        assert_eq!(pods(f), (catalog.name.as_str(), frontend.name.as_str()));
        assert_eq!(f.is_reply.map(|b| b.value), Some(true));
    }

    // Neighbour discovery is classified as Hubble does (ICMPv6 type and code, gopacket's name),
    // never mistaken for the echo connection.
    let nd: Vec<&Flow> = flows
        .iter()
        .filter(|f| icmpv6(f).is_some_and(|(t, _)| t == 135 || t == 136))
        .collect();
    assert!(
        !nd.is_empty(),
        "neighbour discovery after the flush:\n{dump}"
    );
    for f in &nd {
        let (t, code) = icmpv6(f).unwrap();
        assert_eq!(code, 0);
        let name = if t == 135 {
            "ICMPv6 NeighborSolicitation"
        } else {
            "ICMPv6 NeighborAdvertisement"
        };
        assert_eq!(f.summary, name);
        assert_eq!(f.verdict, Verdict::Forwarded as i32);
        assert!(f.is_reply.is_none() || f.is_reply.map(|b| b.value) == Some(false));
    }
    drop(agent);
    drop(topo);
}

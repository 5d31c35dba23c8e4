//! The decoder turns datapath events into flows the way Hubble fills them: crafted events in,
//! Hubble's fields (Summary wording, directions, observation points, endpoints) out.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use flow_agent::datapath::event::{
    CtState, Direction, EventKind, Family, L7Kind, MatchType, RawEvent, Verdict, flags,
};
use flow_agent::datapath::kdrop::KernelDropNames;
use flow_agent::decode::{Decoder, FlowIds, WallClock, icmpv4_name, icmpv6_name};
use flow_agent::endpoints::Endpoints;
use webb_proto::flow::{
    self, DropReason, FlowType, IpVersion, TraceObservationPoint, TraceReason, TrafficDirection,
    layer4::Protocol,
};

const EPS: &str = r#"
endpoints:
  - name: web-5d8f
    namespace: shop
    labels: {app: web}
    workload: {name: web, kind: Deployment}
    ips: [198.19.1.10, "2001:2:0:1::10"]
    interface: lxcweb
    node: vn1
  - name: api-84b2
    namespace: store
    labels: {app: api}
    workload: {name: api, kind: Deployment}
    ips: [198.19.2.20, "2001:2:0:2::20"]
    interface: lxcapi
    node: vn2
nodes:
  - {name: vn1, ips: [198.18.0.1]}
  - {name: vn2, ips: [198.18.0.2]}
"#;

const WEB: &str = "198.19.1.10";
const API: &str = "198.19.2.20";
const LXCWEB: u32 = 7;
const ETH0: u32 = 2;
const OFFSET: i64 = 1_700_000_000_000_000_000;

fn decoder() -> Decoder {
    let eps = Arc::new(Endpoints::parse(EPS, "eps.yaml", "vn1").unwrap());
    let names = KernelDropNames::from_parts(
        HashMap::from([(2, "NO_SOCKET".to_string())]),
        BTreeMap::from([(0xffff_0000, "tcp_v4_rcv".to_string())]),
    );
    let mut d = Decoder::new(
        "vn1",
        eps,
        Arc::new(WallClock::with_offset(OFFSET)),
        FlowIds::new("vn1", 1_790_000_000),
        Arc::new(names),
    );
    d.interfaces_mut().insert(LXCWEB, "lxcweb");
    d.interfaces_mut().insert(ETH0, "eth0");
    d
}

fn mapped(ip: &str) -> [u8; 16] {
    match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A TCP SYN from the web pod to the api pod, seen on TC ingress of the web pod's host-side veth.
fn syn() -> RawEvent<'static> {
    RawEvent {
        kind: EventKind::Trace,
        ktime_ns: 5_000_000_123,
        ifindex: LXCWEB,
        netns_ino: 0,
        direction: Direction::Ingress,
        ct_state: CtState::New,
        is_reply: false,
        flags: 0,
        verdict: Verdict::Forward,
        drop_reason: 0,
        match_type: MatchType::None,
        rule_id: 0,
        src_identity: 0,
        dst_identity: 0,
        family: Family::V4,
        saddr: mapped(WEB),
        daddr: mapped(API),
        sport: 40312,
        dport: 8080,
        l4_proto: 6,
        tcp_flags: 0x02,
        icmp_type: 0,
        icmp_code: 0,
        eth_src: [0x6a, 0x8b, 0x1c, 0x2d, 0x3e, 0x4f],
        eth_dst: [0xee; 6],
        ethertype: 0x0800,
        orig_len: 74,
        l3_off: 14,
        l4_off: 34,
        payload_off: 0,
        tcp_seq: 1000,
        l7_kind: L7Kind::None,
        l7_segment: 0,
        kdrop_reason: 0,
        kdrop_location: 0,
        payload: &[],
    }
}

/// The same connection's SYN-ACK, delivered to the web pod (TC egress of its veth).
fn syn_ack() -> RawEvent<'static> {
    RawEvent {
        direction: Direction::Egress,
        ct_state: CtState::Reply,
        is_reply: true,
        flags: flags::IS_REPLY,
        saddr: mapped(API),
        daddr: mapped(WEB),
        sport: 8080,
        dport: 40312,
        tcp_flags: 0x12,
        ..syn()
    }
}

#[test]
fn a_syn_leaving_a_pod_is_an_egress_to_stack_trace_with_both_endpoints() {
    let f = decoder().decode(&syn()).flow;
    assert_eq!(f.verdict, flow::Verdict::Forwarded as i32);
    assert_eq!(f.r#type, FlowType::L3L4 as i32);
    assert_eq!(f.node_name, "vn1");
    assert_eq!(f.summary, "TCP Flags: SYN");
    let et = f.event_type.unwrap();
    assert_eq!((et.r#type, et.sub_type), (4, 3));
    assert_eq!(
        f.trace_observation_point,
        TraceObservationPoint::ToStack as i32
    );
    assert_eq!(f.traffic_direction, TrafficDirection::Egress as i32);
    assert_eq!(f.trace_reason, TraceReason::New as i32);
    assert_eq!(f.is_reply.map(|b| b.value), Some(false));
    let iface = f.interface.unwrap();
    assert_eq!((iface.index, iface.name.as_str()), (LXCWEB, "lxcweb"));
    let eth = f.ethernet.unwrap();
    assert_eq!(eth.source, "6a:8b:1c:2d:3e:4f");
    assert_eq!(eth.destination, "ee:ee:ee:ee:ee:ee");
    let ip = f.ip.unwrap();
    assert_eq!((ip.source.as_str(), ip.destination.as_str()), (WEB, API));
    assert_eq!(ip.ip_version, IpVersion::IPv4 as i32);
    let Some(Protocol::Tcp(tcp)) = f.l4.unwrap().protocol else {
        panic!("TCP expected")
    };
    assert_eq!((tcp.source_port, tcp.destination_port), (40312, 8080));
    assert!(tcp.flags.unwrap().syn);

    let src = f.source.unwrap();
    assert_eq!(src.id, 1, "local endpoint has an endpoint ID");
    assert!(src.identity >= 256);
    assert_eq!(src.namespace, "shop");
    assert_eq!(src.pod_name, "web-5d8f");
    assert_eq!(
        src.labels,
        vec![
            "k8s:app=web",
            "k8s:io.cilium.k8s.policy.cluster=default",
            "k8s:io.kubernetes.pod.namespace=shop"
        ]
    );
    assert_eq!(src.workloads[0].name, "web");
    assert_eq!(src.workloads[0].kind, "Deployment");
    let dst = f.destination.unwrap();
    assert_eq!(
        dst.id, 0,
        "remote endpoints carry no endpoint ID (as in Hubble)"
    );
    assert_eq!(dst.pod_name, "api-84b2");
    assert_eq!(dst.namespace, "store");
    assert_ne!(dst.identity, src.identity);
}

#[test]
fn a_reply_delivered_to_the_pod_is_to_endpoint_and_keeps_the_connection_direction() {
    let f = decoder().decode(&syn_ack()).flow;
    assert_eq!(f.summary, "TCP Flags: SYN, ACK");
    let et = f.event_type.unwrap();
    assert_eq!((et.r#type, et.sub_type), (4, 0));
    assert_eq!(
        f.trace_observation_point,
        TraceObservationPoint::ToEndpoint as i32
    );
    assert_eq!(f.traffic_direction, TrafficDirection::Egress as i32);
    assert_eq!(f.trace_reason, TraceReason::Reply as i32);
    assert_eq!(f.is_reply.map(|b| b.value), Some(true));
    assert_eq!(f.source.unwrap().pod_name, "api-84b2");
}

#[test]
fn a_new_connection_into_the_pod_is_ingress() {
    let ev = RawEvent {
        direction: Direction::Egress,
        saddr: mapped(API),
        daddr: mapped(WEB),
        ..syn()
    };
    let f = decoder().decode(&ev).flow;
    assert_eq!(f.traffic_direction, TrafficDirection::Ingress as i32);
    assert_eq!(f.trace_reason, TraceReason::New as i32);
}

#[test]
fn on_a_plain_interface_packets_are_from_and_to_network() {
    let mut d = decoder();
    let inbound = d.decode(&RawEvent {
        ifindex: ETH0,
        ..syn()
    });
    assert_eq!(
        inbound.flow.trace_observation_point,
        TraceObservationPoint::FromNetwork as i32
    );
    assert_eq!(inbound.flow.event_type.unwrap().sub_type, 10);
    let outbound = d.decode(&RawEvent {
        ifindex: ETH0,
        direction: Direction::Egress,
        ..syn()
    });
    assert_eq!(
        outbound.flow.trace_observation_point,
        TraceObservationPoint::ToNetwork as i32
    );
    assert_eq!(
        outbound.flow.traffic_direction,
        TrafficDirection::Egress as i32
    );
}

#[test]
fn tcp_flags_are_summarised_in_hubbles_fixed_order() {
    let f = decoder()
        .decode(&RawEvent {
            tcp_flags: 0xff,
            ..syn()
        })
        .flow;
    assert_eq!(
        f.summary,
        "TCP Flags: SYN, ACK, RST, FIN, PSH, URG, ECE, CWR"
    );
    let f = decoder()
        .decode(&RawEvent {
            tcp_flags: 0x11,
            ..syn()
        })
        .flow;
    assert_eq!(f.summary, "TCP Flags: ACK, FIN");
}

#[test]
fn udp_is_summarised_as_udp_with_ports() {
    let f = decoder()
        .decode(&RawEvent {
            l4_proto: 17,
            tcp_flags: 0,
            sport: 5353,
            dport: 53,
            ..syn()
        })
        .flow;
    assert_eq!(f.summary, "UDP");
    let Some(Protocol::Udp(udp)) = f.l4.unwrap().protocol else {
        panic!("UDP expected")
    };
    assert_eq!((udp.source_port, udp.destination_port), (5353, 53));
}

#[test]
fn icmpv4_carries_type_and_code_and_gopacket_names() {
    let f = decoder()
        .decode(&RawEvent {
            l4_proto: 1,
            tcp_flags: 0,
            icmp_type: 8,
            sport: 77,
            dport: 0,
            ..syn()
        })
        .flow;
    assert_eq!(f.summary, "ICMPv4 EchoRequest");
    let Some(Protocol::IcmPv4(icmp)) = f.l4.unwrap().protocol else {
        panic!("ICMPv4 expected")
    };
    assert_eq!((icmp.r#type, icmp.code), (8, 0));
    assert_eq!(icmpv4_name(3, 3), "DestinationUnreachable(Port)");
    assert_eq!(icmpv4_name(0, 0), "EchoReply");
    assert_eq!(icmpv4_name(8, 5), "EchoRequest(Code: 5)");
    assert_eq!(icmpv4_name(3, 99), "DestinationUnreachable(Code: 99)");
    assert_eq!(icmpv4_name(42, 1), "42(1)");
}

#[test]
fn icmpv6_over_ipv6_resolves_v6_endpoints() {
    let f = decoder()
        .decode(&RawEvent {
            family: Family::V6,
            saddr: mapped("2001:2:0:1::10"),
            daddr: mapped("2001:2:0:2::20"),
            l4_proto: 58,
            tcp_flags: 0,
            icmp_type: 128,
            ethertype: 0x86dd,
            ..syn()
        })
        .flow;
    assert_eq!(f.summary, "ICMPv6 EchoRequest");
    let ip = f.ip.unwrap();
    assert_eq!(ip.ip_version, IpVersion::IPv6 as i32);
    assert_eq!(ip.source, "2001:2:0:1::10");
    assert_eq!(f.source.unwrap().pod_name, "web-5d8f");
    assert_eq!(f.destination.unwrap().pod_name, "api-84b2");
    assert_eq!(icmpv6_name(135, 0), "NeighborSolicitation");
    assert_eq!(icmpv6_name(1, 4), "DestinationUnreachable(PortUnreachable)");
}

#[test]
fn addresses_outside_every_endpoint_are_world_and_node_addresses_host_or_remote_node() {
    let mut d = decoder();
    let f = d
        .decode(&RawEvent {
            daddr: mapped("198.18.200.1"),
            ..syn()
        })
        .flow;
    let dst = f.destination.unwrap();
    assert_eq!(
        (dst.identity, dst.labels.clone()),
        (2, vec!["reserved:world".to_string()])
    );
    let f = d
        .decode(&RawEvent {
            daddr: mapped("198.18.0.1"),
            ..syn()
        })
        .flow;
    assert_eq!(f.destination.unwrap().labels, vec!["reserved:host"]);
    let f = d
        .decode(&RawEvent {
            daddr: mapped("198.18.0.2"),
            ..syn()
        })
        .flow;
    let dst = f.destination.unwrap();
    assert_eq!(
        (dst.identity, dst.labels[0].as_str()),
        (6, "reserved:remote-node")
    );
}

#[test]
fn a_datapath_drop_is_dropped_with_its_cilium_reason_and_no_trace_fields() {
    let f = decoder()
        .decode(&RawEvent {
            kind: EventKind::Drop,
            verdict: Verdict::Drop,
            drop_reason: 133,
            ..syn()
        })
        .flow;
    assert_eq!(f.verdict, flow::Verdict::Dropped as i32);
    assert_eq!(f.drop_reason, 133);
    assert_eq!(f.drop_reason_desc, DropReason::PolicyDenied as i32);
    let et = f.event_type.unwrap();
    assert_eq!((et.r#type, et.sub_type), (1, 133));
    assert_eq!(f.trace_observation_point, 0);
    assert_eq!(f.is_reply, None);
    assert_eq!(f.summary, "TCP Flags: SYN");
    assert_eq!(f.traffic_direction, TrafficDirection::Egress as i32);
}

#[test]
fn a_kernel_drop_names_its_reason_and_location_in_summary_and_extras_only() {
    let ev = RawEvent {
        kind: EventKind::KernelDrop,
        direction: Direction::Unknown,
        ct_state: CtState::None,
        verdict: Verdict::Drop,
        flags: flags::NO_L2,
        ifindex: 0,
        saddr: mapped(API),
        daddr: mapped(WEB),
        eth_src: [0; 6],
        eth_dst: [0; 6],
        kdrop_reason: 2,
        kdrop_location: 0xffff_0010,
        ..syn()
    };
    let rec = decoder().decode(&ev);
    let f = &rec.flow;
    assert_eq!(f.verdict, flow::Verdict::Dropped as i32);
    assert_eq!(
        f.summary,
        "TCP Flags: SYN (kernel drop: NO_SOCKET at tcp_v4_rcv+0x10)"
    );
    assert_eq!(
        f.drop_reason_desc, 0,
        "only Cilium's codes go in drop_reason_desc"
    );
    assert_eq!(f.traffic_direction, TrafficDirection::Ingress as i32);
    assert!(f.ethernet.is_none());
    assert!(f.extensions.is_none(), "the stored flow carries no Any");

    let plain = rec.flow_for(false, false);
    assert!(
        plain.extensions.is_none(),
        "Hubble clients never get an Any"
    );
    let extras = webb_proto::extras::unpack(&rec.flow_for(true, false))
        .unwrap()
        .unwrap();
    let kd = extras.kernel_drop.unwrap();
    assert_eq!((kd.name.as_str(), kd.id), ("NO_SOCKET", 2));
    assert_eq!((kd.symbol.as_str(), kd.offset), ("tcp_v4_rcv", 0x10));
}

#[test]
fn captured_payload_goes_only_to_clients_asking_for_payload() {
    let mut frame = vec![0u8; 54];
    frame.extend_from_slice(b"GET /items/1 HTTP/1.1\r\nHost: api\r\n\r\n");
    let ev = RawEvent {
        flags: flags::L7_HEAD,
        l7_kind: L7Kind::HttpRequest,
        tcp_flags: 0x18,
        ct_state: CtState::Established,
        payload_off: 54,
        payload: &frame,
        ..syn()
    };
    let rec = decoder().decode(&ev);
    assert_eq!(rec.flow.trace_reason, TraceReason::Established as i32);
    assert!(rec.flow_for(false, false).extensions.is_none());
    assert!(
        rec.flow_for(true, false).extensions.is_none(),
        "extras without payload: nothing else to say here"
    );
    let extras = webb_proto::extras::unpack(&rec.flow_for(false, true))
        .unwrap()
        .unwrap();
    let p = extras.payload.unwrap();
    assert!(p.data.starts_with(b"GET /items/1 HTTP/1.1"));
    assert_eq!(p.seq, 1000);
}

#[test]
fn event_time_is_kernel_boot_time_plus_the_measured_offset() {
    let f = decoder().decode(&syn()).flow;
    let t = f.time.unwrap();
    assert_eq!(t.unix_nanos(), i128::from(OFFSET) + 5_000_000_123);

    let clock = WallClock::new();
    let wall = clock.wall(WallClock::boot_now_ns()).unix_nanos();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    assert!((wall - now).abs() < 50_000_000, "{wall} vs {now}");
}

#[test]
fn uuids_are_valid_unique_per_node_and_share_a_prefix() {
    let mut d = decoder();
    let a = d.decode(&syn()).flow.uuid;
    let b = d.decode(&syn()).flow.uuid;
    assert_ne!(a, b);
    let ua = uuid::Uuid::parse_str(&a).unwrap();
    assert_eq!(ua.get_version_num(), 8);
    assert_eq!(ua.get_variant(), uuid::Variant::RFC4122);
    assert_eq!(a[..24], b[..24], "only the sequence digits differ");
    let other = FlowIds::new("vn2", 1_790_000_000).uuid(1);
    assert_ne!(other, a);
    assert_ne!(
        FlowIds::new("vn1", 1_790_000_001).uuid(1),
        a,
        "a restart never repeats ids"
    );
}

#[test]
fn any_record_bytes_decode_or_fail_cleanly_never_panic() {
    let mut d = decoder();
    let mut stored = decoder();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut ok = 0;
    for _ in 0..30_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 128 + (x % 300) as usize;
        let mut b: Vec<u8> = (0..len)
            .map(|j| (x.rotate_left(j as u32) >> 3) as u8)
            .collect();
        // Mostly-valid headers reach the decoder; the rest exercise the parser.
        b[0] = 1 + (x % 4) as u8;
        b[1] = 1;
        b[2..4].copy_from_slice(&128u16.to_ne_bytes());
        b[20] = [0, 1, 255][(x % 3) as usize];
        b[21] = (x % 5) as u8;
        b[23] = (x % 2) as u8;
        b[26] = (x % 7) as u8;
        b[27] = [0, 4, 6][(x >> 8) as usize % 3];
        b[123] = (x % 4) as u8;
        let cap = (x >> 16) as u16 % (len as u16 - 127);
        b[96..98].copy_from_slice(&cap.to_ne_bytes());
        if let Ok(ev) = RawEvent::parse(&b) {
            let want = d.decode(&ev);
            // The ring's direct encoding agrees on whatever the parser lets through.
            match stored.store(&ev, None) {
                Some(s) => {
                    assert_eq!(s.flow().unwrap(), want.flow);
                    assert_eq!(s.extras().unwrap(), want.extras);
                }
                None => drop(stored.decode(&ev)),
            }
            ok += 1;
        }
    }
    assert!(
        ok > 1000,
        "the generator reaches the decoder ({ok} decoded)"
    );
}

#[test]
fn unknown_addresses_in_ipv6_are_printed_canonically() {
    let f = decoder()
        .decode(&RawEvent {
            family: Family::V6,
            saddr: Ipv6Addr::new(0x2001, 2, 0, 9, 0, 0, 0, 1).octets(),
            daddr: mapped("2001:2:0:1::10"),
            ..syn()
        })
        .flow;
    assert_eq!(f.ip.unwrap().source, "2001:2:0:9::1");
}

/// Policy names of a compiled revision, as the agent hands them to the decoder.
fn decoder_with_policy(yaml: &str) -> (Decoder, Arc<flow_agent::policy::PolicyView>) {
    use flow_agent::policy::{self, CidrIdentities, PolicyView};
    let mut d = decoder();
    let eps = Endpoints::parse(EPS, "eps.yaml", "vn1").unwrap();
    let pols = policy::parse(yaml, "p.yaml").unwrap();
    let c = policy::compile(&pols, &eps, &CidrIdentities::default(), 1).unwrap();
    let view = Arc::new(PolicyView::default().with(c.generation.clone()));
    d.set_policy(view.clone());
    (d, view)
}

fn rule_id(view: &flow_agent::policy::PolicyView, action: flow_agent::policy::RuleAction) -> u32 {
    let g = view.newest().unwrap();
    let idx = g.rule_sets.iter().position(|r| r.action == action).unwrap();
    g.rule_id(idx)
}

const WEB_EGRESS: &str = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web-out, namespace: shop}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  egress:\n    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: store}}]\n      toPorts: [{ports: [{port: '8080', protocol: TCP}]}]\n";

#[test]
fn an_allowed_connection_names_its_policy_in_egress_allowed_by() {
    use flow_agent::policy::RuleAction;
    let (mut d, view) = decoder_with_policy(WEB_EGRESS);
    let ev = RawEvent {
        kind: EventKind::PolicyVerdict,
        match_type: MatchType::L3L4,
        rule_id: rule_id(&view, RuleAction::Allow),
        ..syn()
    };
    let f = d.decode(&ev).flow;
    assert_eq!(f.verdict, flow::Verdict::Forwarded as i32);
    assert_eq!(f.event_type.as_ref().unwrap().r#type, 5);
    assert_eq!(f.policy_match_type, 2);
    assert_eq!(f.egress_allowed_by.len(), 1);
    let p = &f.egress_allowed_by[0];
    assert_eq!(
        (
            p.name.as_str(),
            p.namespace.as_str(),
            p.kind.as_str(),
            p.revision
        ),
        ("web-out", "shop", "CiliumNetworkPolicy", 1)
    );
    assert!(
        p.labels
            .contains(&"k8s:io.cilium.k8s.policy.name=web-out".to_string())
    );
    assert!(f.ingress_allowed_by.is_empty() && f.policy_log.is_empty());
    // Later flows of the connection carry the cached rule: named too.
    let trace = d
        .decode(&RawEvent {
            rule_id: ev.rule_id,
            ..syn_ack()
        })
        .flow;
    assert_eq!(trace.egress_allowed_by, f.egress_allowed_by);
}

#[test]
fn a_default_deny_drop_is_attributed_in_policy_log_and_in_the_extras_only() {
    use flow_agent::policy::RuleAction;
    let (mut d, view) = decoder_with_policy(WEB_EGRESS);
    let ev = RawEvent {
        kind: EventKind::Drop,
        verdict: Verdict::Drop,
        drop_reason: 133,
        dport: 9999,
        rule_id: rule_id(&view, RuleAction::DefaultDeny),
        ..syn()
    };
    let r = d.decode(&ev);
    assert_eq!(r.flow.drop_reason_desc, DropReason::PolicyDenied as i32);
    assert!(
        r.flow.egress_denied_by.is_empty(),
        "Hubble leaves default deny blank"
    );
    assert_eq!(r.flow.policy_log.len(), 1);
    let line = &r.flow.policy_log[0];
    assert!(
        line.starts_with("default deny: egress of ")
            && line.contains(" is selected by shop/web-out; no rule allows ")
            && line.ends_with(" on TCP/9999"),
        "{line}"
    );
    let dd = r
        .extras
        .as_ref()
        .and_then(|x| x.default_deny.clone())
        .unwrap();
    assert_eq!(dd.policies, ["shop/web-out"]);
    assert_eq!(dd.direction, TrafficDirection::Egress as i32);
    assert!(
        r.flow_for(false, false).extensions.is_none(),
        "plain clients: no Any"
    );
}

#[test]
fn an_audited_verdict_is_audit_and_a_deny_names_the_denying_policy() {
    use flow_agent::policy::RuleAction;
    let (mut d, view) = decoder_with_policy(
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: no-8080}\nspec:\n  endpointSelector: {}\n  egressDeny: [{toPorts: [{ports: [{port: '8080'}]}]}]\n",
    );
    let ev = RawEvent {
        kind: EventKind::PolicyVerdict,
        verdict: Verdict::Audit,
        drop_reason: 181,
        rule_id: rule_id(&view, RuleAction::Deny),
        ..syn()
    };
    let f = d.decode(&ev).flow;
    assert_eq!(f.verdict, flow::Verdict::Audit as i32);
    assert_eq!(f.drop_reason_desc, 0, "audited packets are not dropped");
    assert_eq!(f.egress_denied_by[0].name, "no-8080");
    assert_eq!(f.egress_denied_by[0].kind, "CiliumClusterwideNetworkPolicy");
    assert!(f.egress_denied_by[0].namespace.is_empty());
}

/// What `Decoder::store` put in the ring, decoded, must be exactly the flow and extras
/// `Decoder::decode` gives (what GetFlows serves depends on it): checked over every kind,
/// family, protocol, direction and flag combination below, with and without DNS names, on two
/// decoders fed the same events (so sequence numbers and UUIDs match).
#[test]
fn stored_flows_are_exactly_the_decoded_flows() {
    use flow_agent::policy::RuleAction;
    let (mut full, view) = decoder_with_policy(WEB_EGRESS);
    let (mut fast, _) = decoder_with_policy(WEB_EGRESS);
    let http = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut frame = vec![0u8; 54];
    frame.extend_from_slice(http);
    let frame: &'static [u8] = Box::leak(frame.into_boxed_slice());
    let addrs = [
        (WEB, API),
        (API, WEB),
        ("198.18.0.1", WEB),
        ("198.18.0.2", "203.0.113.9"),
        ("2001:2:0:1::10", "2001:2:0:2::20"),
        ("2001:db8::1", "2001:2:0:1::10"),
    ];
    let rule_ids = [
        0,
        rule_id(&view, RuleAction::Allow),
        rule_id(&view, RuleAction::DefaultDeny),
        0x0500_0001, // names no revision the view knows
    ];
    let names = (
        vec!["api.store.svc".to_string(), "".to_string()],
        vec!["web.shop".to_string()],
    );
    let (mut stored, mut taken_by_decode) = (0, 0);
    let mut i = 0u32;
    for kind in [
        EventKind::Trace,
        EventKind::Drop,
        EventKind::PolicyVerdict,
        EventKind::KernelDrop,
    ] {
        for (src, dst) in addrs {
            let v6 = src.contains(':');
            for (proto, tcp_flags, icmp) in [
                (6u8, 0x02u8, 0u8),
                (6, 0xff, 0),
                (6, 0, 0),
                (17, 0, 0),
                (132, 0, 0),
                (if v6 { 58 } else { 1 }, 0, 8),
                (if v6 { 1 } else { 58 }, 0, 3),
                (47, 0, 0),
            ] {
                i += 1;
                let family = match i % 7 {
                    0 => Family::None,
                    _ if v6 => Family::V6,
                    _ => Family::V4,
                };
                let ev = RawEvent {
                    kind,
                    ktime_ns: 5_000_000_000 + u64::from(i) * 7_919,
                    ifindex: [LXCWEB, ETH0, 0, 99][(i % 4) as usize],
                    direction: [Direction::Ingress, Direction::Egress, Direction::Unknown]
                        [(i % 3) as usize],
                    ct_state: [
                        CtState::None,
                        CtState::New,
                        CtState::Established,
                        CtState::Reply,
                        CtState::Closing,
                    ][(i % 5) as usize],
                    is_reply: i.is_multiple_of(2),
                    flags: [0, flags::NO_L2, flags::TRUNCATED | flags::L7_HEAD][(i % 3) as usize],
                    verdict: [Verdict::Forward, Verdict::Drop, Verdict::Audit][(i % 3) as usize],
                    drop_reason: [0, 133, 181][(i % 3) as usize],
                    match_type: [MatchType::None, MatchType::L3L4, MatchType::All]
                        [(i % 3) as usize],
                    rule_id: rule_ids[(i as usize / 3) % rule_ids.len()],
                    src_identity: [0, 2, 16_777_217][(i % 3) as usize],
                    family,
                    saddr: mapped(src),
                    daddr: mapped(dst),
                    l4_proto: proto,
                    tcp_flags,
                    icmp_type: icmp,
                    icmp_code: (i % 2) as u8,
                    eth_src: if i.is_multiple_of(5) {
                        [0; 6]
                    } else {
                        [0x6a, 0x8b, 0x1c, 0x2d, 0x3e, 0x4f]
                    },
                    eth_dst: if i.is_multiple_of(5) {
                        [0; 6]
                    } else {
                        [0xee; 6]
                    },
                    payload_off: if i % 4 == 1 { 54 } else { 0 },
                    payload: frame,
                    kdrop_reason: 2,
                    kdrop_location: 0xffff_0010,
                    ..syn()
                };
                for with_names in [false, true] {
                    let names = with_names.then_some(&names);
                    let mut want = full.decode(&ev);
                    if let Some((d, s)) = names {
                        want.flow.destination_names = d.clone();
                        want.flow.source_names = s.clone();
                    }
                    let got = match fast.store(&ev, names) {
                        Some(s) => {
                            stored += 1;
                            s
                        }
                        None => {
                            taken_by_decode += 1;
                            let mut r = fast.decode(&ev);
                            if let Some((d, s)) = names {
                                r.flow.destination_names = d.clone();
                                r.flow.source_names = s.clone();
                            }
                            fast.store_record(r)
                        }
                    };
                    assert_eq!(got.flow().unwrap(), want.flow, "event {i}: {ev:?}");
                    assert_eq!(got.extras().unwrap(), want.extras, "event {i}: {ev:?}");
                }
            }
        }
    }
    assert!(
        stored > 150 && taken_by_decode > 50,
        "{stored} stored, {taken_by_decode} decoded"
    );
    let mut ns: Vec<String> = fast
        .take_namespaces()
        .iter()
        .map(|n| n.to_string())
        .collect();
    ns.sort();
    ns.dedup();
    assert_eq!(ns, ["shop", "store"]);
}

#[test]
fn uuid_text_is_the_uuid_of_the_sequence_number_past_every_digit_boundary() {
    let ids = FlowIds::new("vn1", 1_790_000_000);
    let first = uuid::Uuid::parse_str(&ids.uuid(0)).unwrap();
    for seq in [1, 0xff, 0xffff_ffff_ffff, 1 << 48, (1 << 60) - 1, u64::MAX] {
        let u = uuid::Uuid::parse_str(&ids.uuid(seq)).unwrap();
        assert_eq!(u.get_version_num(), 8);
        assert_eq!(
            u.as_u128() & 0xffff_ffff_ffff,
            u128::from(seq & 0xffff_ffff_ffff)
        );
        assert_eq!(
            u.as_u128() >> 80,
            first.as_u128() >> 80,
            "node and start time"
        );
        // The sequence number's bits 48..60 sit beside the version digit.
        assert_eq!((u.as_u128() >> 64) & 0xfff, u128::from((seq >> 48) & 0xfff));
    }
}

//! Raw datapath events → Hubble `flow.Flow`, filled the way Hubble fills trace, drop and
//! policy-verdict flows (notes/hubble-api.md §2.4), plus Webb's `FlowExtras` kept aside for the
//! clients that ask for them.
//!
//! The decoder never fails on a parsed [`RawEvent`]: whatever the datapath could not parse is
//! simply left out of the flow.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use webb_proto::Timestamp;
use webb_proto::flow::{
    self, CiliumEventType, Ethernet, Flow, FlowType, IcmPv4, IcmPv6, Ip, IpVersion, Layer4,
    NetworkInterface, Sctp, Tcp, TcpFlags, TraceObservationPoint, TraceReason, TrafficDirection,
    Udp, Verdict, Workload, layer4,
};
use webb_proto::webb_v1::{CapturedPayload, DefaultDenyAttribution, FlowExtras, KernelDropReason};

use crate::datapath::event::{self, CtState, Direction, EventKind, RawEvent};
use crate::datapath::kdrop::KernelDropNames;
use crate::endpoints::{Endpoints, Peer};
use crate::identity::{LABEL_HOST, LABEL_REMOTE_NODE, LABEL_WORLD};
use crate::policy::{Dir, PolicyView, RuleAction};

/// Cilium monitor event types (`Flow.event_type.type`).
pub mod event_type {
    pub const DROP: i32 = 1;
    pub const TRACE: i32 = 4;
    pub const POLICY_VERDICT: i32 = 5;
}

/// Datapath trace sub-types (observation points), Cilium's numbering.
pub mod trace_point {
    pub const TO_ENDPOINT: i32 = 0;
    pub const TO_STACK: i32 = 3;
    pub const FROM_NETWORK: i32 = 10;
    pub const TO_NETWORK: i32 = 11;
}

/// Converts the datapath's CLOCK_BOOTTIME to wall-clock time. The offset between
/// CLOCK_REALTIME and CLOCK_BOOTTIME moves when the wall clock is stepped or slewed, so the
/// agent refreshes it periodically ([`WallClock::refresh`]).
#[derive(Debug)]
pub struct WallClock {
    offset_ns: AtomicI64,
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks exist on every Linux we run on.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

impl WallClock {
    /// A clock with the offset measured now.
    pub fn new() -> Self {
        let c = WallClock {
            offset_ns: AtomicI64::new(0),
        };
        c.refresh();
        c
    }

    /// A clock with a fixed offset (tests and benchmarks).
    pub fn with_offset(offset_ns: i64) -> Self {
        WallClock {
            offset_ns: AtomicI64::new(offset_ns),
        }
    }

    /// Measures REALTIME − BOOTTIME again: of a few samples, the one whose two BOOTTIME reads
    /// are closest together brackets the REALTIME read best.
    pub fn refresh(&self) {
        let mut best = (i64::MAX, 0i64);
        for _ in 0..5 {
            let b1 = clock_ns(libc::CLOCK_BOOTTIME);
            let r = clock_ns(libc::CLOCK_REALTIME);
            let b2 = clock_ns(libc::CLOCK_BOOTTIME);
            let window = b2 - b1;
            if window < best.0 {
                best = (window, r - (b1 + window / 2));
            }
        }
        self.offset_ns.store(best.1, Ordering::Relaxed);
    }

    pub fn offset_ns(&self) -> i64 {
        self.offset_ns.load(Ordering::Relaxed)
    }

    /// Wall-clock time of a CLOCK_BOOTTIME instant.
    pub fn wall(&self, boot_ns: u64) -> Timestamp {
        let ns = i128::from(boot_ns) + i128::from(self.offset_ns());
        let ns = ns.clamp(0, i128::from(u64::MAX)) as u64;
        Timestamp::from_unix_nanos(ns)
    }

    /// The current CLOCK_BOOTTIME (what the datapath stamps events with).
    pub fn boot_now_ns() -> u64 {
        clock_ns(libc::CLOCK_BOOTTIME).max(0) as u64
    }
}

/// Flow UUIDs: valid RFC 9562 version-8 UUIDs built from the node and a sequence number, so
/// they cost nothing to make, never repeat across nodes or restarts, and consecutive ones share
/// all but their last digits (they compress well in the store).
///
/// Layout: 32 bits of a hash of the node name, 30 bits of the agent's start time (seconds), and
/// a 60-bit sequence number; version and variant bits as RFC 9562 requires.
#[derive(Debug, Clone)]
pub struct FlowIds {
    node_hash: u32,
    epoch: u32,
}

impl FlowIds {
    /// `start_secs` is the agent's start time in Unix seconds.
    pub fn new(node_name: &str, start_secs: u64) -> Self {
        // FNV-1a: stable across versions and platforms (std's hasher is not).
        let mut h: u32 = 0x811c_9dc5;
        for b in node_name.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        FlowIds {
            node_hash: h,
            epoch: (start_secs & 0x3fff_ffff) as u32,
        }
    }

    pub fn uuid(&self, seq: u64) -> String {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.node_hash.to_be_bytes());
        b[4..6].copy_from_slice(&((self.epoch & 0xffff) as u16).to_be_bytes());
        // Version 8 + 12 high bits of the sequence.
        let hi = ((seq >> 48) & 0x0fff) as u16;
        b[6..8].copy_from_slice(&(0x8000 | hi).to_be_bytes());
        // Variant 0b10 + 14 more bits of the start time.
        let ep = ((self.epoch >> 16) & 0x3fff) as u16;
        b[8..10].copy_from_slice(&(0x8000 | ep).to_be_bytes());
        b[10..16].copy_from_slice(&seq.to_be_bytes()[2..8]);
        uuid::Uuid::from_bytes(b).hyphenated().to_string()
    }
}

/// A decoded flow and the Webb extras that go only to clients asking for them.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    /// The flow as any Hubble client receives it (no `extensions`).
    pub flow: Flow,
    /// Payload and kernel drop reason, if any.
    pub extras: Option<FlowExtras>,
}

impl FlowRecord {
    /// The flow as a client with `options` should receive it.
    pub fn flow_for(&self, include_extras: bool, include_payload: bool) -> Flow {
        flow_observer::flow_for(
            &self.flow,
            self.extras.as_ref(),
            include_extras,
            include_payload,
        )
    }
}

/// Interface facts the decoder needs: names of the interfaces the datapath is attached to.
#[derive(Debug, Clone, Default)]
pub struct Interfaces {
    names: HashMap<u32, String>,
}

impl Interfaces {
    pub fn insert(&mut self, index: u32, name: impl Into<String>) {
        self.names.insert(index, name.into());
    }
    pub fn remove(&mut self, index: u32) {
        self.names.remove(&index);
    }
    pub fn name(&self, index: u32) -> Option<&str> {
        self.names.get(&index).map(String::as_str)
    }
}

/// Turns raw events into flows. One per reader thread; cheap to keep, holds the current
/// endpoints snapshot and interface names.
pub struct Decoder {
    node_name: String,
    endpoints: Arc<Endpoints>,
    interfaces: Interfaces,
    clock: Arc<WallClock>,
    ids: FlowIds,
    seq: u64,
    names: Arc<KernelDropNames>,
    cached: HashMap<IpAddr, flow::Endpoint>,
    policy: Arc<PolicyView>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("node_name", &self.node_name)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    pub fn new(
        node_name: &str,
        endpoints: Arc<Endpoints>,
        clock: Arc<WallClock>,
        ids: FlowIds,
        names: Arc<KernelDropNames>,
    ) -> Self {
        let mut d = Decoder {
            node_name: node_name.to_string(),
            endpoints: Arc::new(Endpoints::empty(node_name)),
            interfaces: Interfaces::default(),
            clock,
            ids,
            seq: 0,
            names,
            cached: HashMap::new(),
            policy: Arc::new(PolicyView::default()),
        };
        d.set_endpoints(endpoints);
        d
    }

    /// Switches to a new endpoints snapshot (after a reload).
    pub fn set_endpoints(&mut self, endpoints: Arc<Endpoints>) {
        self.cached = endpoints
            .endpoints()
            .iter()
            .flat_map(|ep| {
                let proto = flow::Endpoint {
                    id: ep.endpoint_id,
                    identity: ep.identity,
                    namespace: ep.namespace.clone(),
                    labels: ep.labels.clone(),
                    pod_name: ep.name.clone(),
                    workloads: ep
                        .workload
                        .iter()
                        .map(|w| Workload {
                            name: w.name.clone(),
                            kind: w.kind.clone(),
                        })
                        .collect(),
                    ..Default::default()
                };
                ep.ips.iter().map(move |ip| (*ip, proto.clone()))
            })
            .collect();
        self.endpoints = endpoints;
    }

    /// Switches to the names of newer policy revisions (before the datapath uses them).
    pub fn set_policy(&mut self, policy: Arc<PolicyView>) {
        self.policy = policy;
    }

    pub fn endpoints(&self) -> &Arc<Endpoints> {
        &self.endpoints
    }

    pub fn interfaces_mut(&mut self) -> &mut Interfaces {
        &mut self.interfaces
    }

    /// Flows decoded so far.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Parses and decodes one ring record.
    pub fn decode_bytes(&mut self, bytes: &[u8]) -> Result<FlowRecord, event::EventError> {
        Ok(self.decode(&RawEvent::parse(bytes)?))
    }

    fn endpoint_of(&self, ip: Option<IpAddr>, event_identity: u32) -> Option<flow::Endpoint> {
        let ip = ip?;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if let Some(ep) = self.cached.get(&ip) {
            return Some(ep.clone());
        }
        let (identity, label) = match self.endpoints.peer(&ip) {
            Peer::Endpoint(ep) => {
                // Not cached only if the snapshot changed under us; build it directly.
                return Some(flow::Endpoint {
                    id: ep.endpoint_id,
                    identity: ep.identity,
                    namespace: ep.namespace.clone(),
                    labels: ep.labels.clone(),
                    pod_name: ep.name.clone(),
                    ..Default::default()
                });
            }
            Peer::Host => (crate::identity::IDENTITY_HOST, LABEL_HOST),
            Peer::RemoteNode(_) => (crate::identity::IDENTITY_REMOTE_NODE, LABEL_REMOTE_NODE),
            Peer::World => {
                // The datapath may know an identity the file does not (e.g. a CIDR identity).
                if event_identity != 0
                    && event_identity != crate::identity::IDENTITY_WORLD
                    && let Some(labels) = self.endpoints.labels_of_identity(event_identity)
                {
                    return Some(flow::Endpoint {
                        identity: event_identity,
                        labels: labels.to_vec(),
                        ..Default::default()
                    });
                }
                // A CIDR identity some policy names (Cilium's `cidr:` labels).
                if let Some(labels) = self.policy.cidr_labels(event_identity) {
                    return Some(flow::Endpoint {
                        identity: event_identity,
                        labels: labels.to_vec(),
                        ..Default::default()
                    });
                }
                (crate::identity::IDENTITY_WORLD, LABEL_WORLD)
            }
        };
        Some(flow::Endpoint {
            identity,
            labels: vec![label.to_string()],
            ..Default::default()
        })
    }

    /// Decodes one parsed event. Never fails; never panics.
    pub fn decode(&mut self, ev: &RawEvent<'_>) -> FlowRecord {
        self.seq += 1;
        let time = self.clock.wall(ev.ktime_ns);
        let src_ip = ev.src_ip();
        let dst_ip = ev.dst_ip();
        let source = self.endpoint_of(src_ip, ev.src_identity);
        let destination = self.endpoint_of(dst_ip, ev.dst_identity);

        let if_name = self.interfaces.name(ev.ifindex);
        let on_endpoint_veth = if_name
            .and_then(|n| self.endpoints.endpoint_on_interface(n))
            .is_some();
        let local = |ip: Option<IpAddr>| {
            ip.and_then(|ip| self.endpoints.endpoint(&ip))
                .is_some_and(|ep| ep.node.as_deref() == Some(self.node_name.as_str()))
        };

        // Observation point and the connection's direction as the endpoint sees it. On an
        // endpoint's host-side veth, TC ingress carries traffic *from* the pod (Cilium's model).
        let (point, base_dir) = match (ev.direction, on_endpoint_veth) {
            (Direction::Ingress, true) => (trace_point::TO_STACK, TrafficDirection::Egress),
            (Direction::Egress, true) => (trace_point::TO_ENDPOINT, TrafficDirection::Ingress),
            (Direction::Ingress, false) => (trace_point::FROM_NETWORK, TrafficDirection::Ingress),
            (Direction::Egress, false) => (trace_point::TO_NETWORK, TrafficDirection::Egress),
            (Direction::Unknown, _) => (
                -1,
                if local(src_ip) {
                    TrafficDirection::Egress
                } else if local(dst_ip) {
                    TrafficDirection::Ingress
                } else {
                    TrafficDirection::Unknown
                },
            ),
        };
        let ct_known = ev.ct_state != CtState::None;
        // A reply travels against the connection; the connection's direction is what counts.
        let traffic_direction = match (ct_known && ev.is_reply, base_dir) {
            (true, TrafficDirection::Egress) => TrafficDirection::Ingress,
            (true, TrafficDirection::Ingress) => TrafficDirection::Egress,
            (_, d) => d,
        };
        let trace_reason = match ev.ct_state {
            CtState::None => TraceReason::Unknown,
            CtState::New => TraceReason::New,
            CtState::Reply => TraceReason::Reply,
            CtState::Established | CtState::Closing if ev.is_reply => TraceReason::Reply,
            CtState::Established | CtState::Closing => TraceReason::Established,
        };

        let mut f = Flow {
            time: Some(time),
            uuid: self.ids.uuid(self.seq),
            r#type: FlowType::L3L4 as i32,
            node_name: self.node_name.clone(),
            source,
            destination,
            traffic_direction: traffic_direction as i32,
            ..Default::default()
        };

        if !ev.has_flag(event::flags::NO_L2) && (ev.eth_src != [0; 6] || ev.eth_dst != [0; 6]) {
            f.ethernet = Some(Ethernet {
                source: mac(&ev.eth_src),
                destination: mac(&ev.eth_dst),
            });
        }
        if let (Some(s), Some(d)) = (src_ip, dst_ip) {
            f.ip = Some(Ip {
                source: s.to_string(),
                destination: d.to_string(),
                ip_version: match s {
                    IpAddr::V4(_) => IpVersion::IPv4 as i32,
                    IpAddr::V6(_) => IpVersion::IPv6 as i32,
                },
                ..Default::default()
            });
        }
        let (l4, mut summary) = layer4(ev);
        f.l4 = l4;
        if ev.ifindex != 0 {
            f.interface = Some(NetworkInterface {
                index: ev.ifindex,
                name: if_name.unwrap_or_default().to_string(),
            });
        }

        let mut extras = FlowExtras::default();
        match ev.kind {
            EventKind::Trace => {
                f.verdict = Verdict::Forwarded as i32;
                let point = point.max(0);
                f.event_type = Some(CiliumEventType {
                    r#type: event_type::TRACE,
                    sub_type: point,
                });
                f.trace_observation_point = if point == trace_point::TO_ENDPOINT {
                    TraceObservationPoint::ToEndpoint as i32
                } else {
                    point
                };
                f.trace_reason = trace_reason as i32;
                if ct_known {
                    f.is_reply = Some(ev.is_reply.into());
                    f.reply = ev.is_reply;
                }
            }
            EventKind::Drop => {
                f.verdict = Verdict::Dropped as i32;
                f.drop_reason = u32::from(ev.drop_reason);
                f.drop_reason_desc = i32::from(ev.drop_reason);
                f.event_type = Some(CiliumEventType {
                    r#type: event_type::DROP,
                    sub_type: i32::from(ev.drop_reason),
                });
            }
            EventKind::PolicyVerdict => {
                f.verdict = match ev.verdict {
                    event::Verdict::Forward => Verdict::Forwarded as i32,
                    event::Verdict::Drop => Verdict::Dropped as i32,
                    event::Verdict::Audit => Verdict::Audit as i32,
                };
                if ev.verdict == event::Verdict::Drop {
                    f.drop_reason = u32::from(ev.drop_reason);
                    f.drop_reason_desc = i32::from(ev.drop_reason);
                } else if ev.verdict == event::Verdict::Forward {
                    // Forwarded verdicts are emitted for a connection's first packet (Hubble).
                    f.is_reply = Some(false.into());
                }
                f.policy_match_type = match_type(ev.match_type);
                f.event_type = Some(CiliumEventType {
                    r#type: event_type::POLICY_VERDICT,
                    sub_type: 0,
                });
            }
            EventKind::KernelDrop => {
                f.verdict = Verdict::Dropped as i32;
                f.event_type = Some(CiliumEventType {
                    r#type: event_type::DROP,
                    sub_type: 0,
                });
                let name = self.names.reason_name(ev.kdrop_reason);
                let loc = self.names.location(ev.kdrop_location);
                let shown = name
                    .map(|n| n.strip_prefix("SKB_DROP_REASON_").unwrap_or(n).to_string())
                    .unwrap_or_else(|| format!("reason {}", ev.kdrop_reason));
                let at = loc
                    .clone()
                    .unwrap_or_else(|| format!("{:#x}", ev.kdrop_location));
                let _ = write!(summary, " (kernel drop: {shown} at {at})");
                // `symbol+0xoffset` → symbol and offset for the extension.
                let (symbol, offset) = loc
                    .as_deref()
                    .and_then(|l| l.rsplit_once("+0x"))
                    .and_then(|(s, o)| Some((s.to_string(), u64::from_str_radix(o, 16).ok()?)))
                    .unwrap_or((String::new(), ev.kdrop_location));
                extras.kernel_drop = Some(KernelDropReason {
                    name: name.unwrap_or_default().to_string(),
                    id: ev.kdrop_reason,
                    symbol,
                    offset,
                });
            }
        }
        f.summary = summary;
        if ev.rule_id != 0 && ev.kind != EventKind::KernelDrop {
            self.attribute(ev, &mut f, &mut extras);
        }

        let l7 = ev.l7_bytes();
        if !l7.is_empty() {
            extras.payload = Some(CapturedPayload {
                data: l7.to_vec(),
                original_length: ev.orig_len,
                offset: 0,
                seq: if ev.l4_proto == IPPROTO_TCP {
                    ev.tcp_seq
                } else {
                    0
                },
                truncated: ev.has_flag(event::flags::TRUNCATED),
                continuation: ev.has_flag(event::flags::L7_CONT),
            });
        }
        FlowRecord {
            flow: f,
            extras: (extras != FlowExtras::default()).then_some(extras),
        }
    }
}

impl Decoder {
    /// Names the policies behind the record's rule id: Hubble's `*_allowed_by` /
    /// `*_denied_by`, and for default deny (which Hubble leaves blank) Webb's attribution in
    /// the extras and as a `policy_log` line.
    fn attribute(&self, ev: &RawEvent<'_>, f: &mut Flow, extras: &mut FlowExtras) {
        let Some((generation, rules)) = self.policy.lookup(ev.rule_id) else {
            return;
        };
        let pols = || {
            rules
                .policies
                .iter()
                .filter_map(|&i| generation.policies.get(i).cloned())
                .collect::<Vec<_>>()
        };
        match (rules.action, rules.dir) {
            (RuleAction::Allow, Dir::Ingress) => f.ingress_allowed_by = pols(),
            (RuleAction::Allow, Dir::Egress) => f.egress_allowed_by = pols(),
            (RuleAction::Deny, Dir::Ingress) => f.ingress_denied_by = pols(),
            (RuleAction::Deny, Dir::Egress) => f.egress_denied_by = pols(),
            (RuleAction::DefaultDeny, dir) => {
                let names: Vec<String> = rules
                    .policies
                    .iter()
                    .filter_map(|&i| generation.names.get(i).cloned())
                    .collect();
                let (me, peer) = match dir {
                    Dir::Ingress => (&f.destination, &f.source),
                    Dir::Egress => (&f.source, &f.destination),
                };
                let who = |e: &Option<flow::Endpoint>, ip: Option<IpAddr>| -> String {
                    match e {
                        Some(e) if !e.pod_name.is_empty() => {
                            format!("{}/{} (identity {})", e.namespace, e.pod_name, e.identity)
                        }
                        Some(e) => format!(
                            "{} (identity {}, {})",
                            ip.map(|i| i.to_string()).unwrap_or_default(),
                            e.identity,
                            e.labels.join(",")
                        ),
                        None => "unknown".to_string(),
                    }
                };
                let (me_ip, peer_ip) = match dir {
                    Dir::Ingress => (ev.dst_ip(), ev.src_ip()),
                    Dir::Egress => (ev.src_ip(), ev.dst_ip()),
                };
                let l4 = match ev.l4_proto {
                    IPPROTO_TCP => format!("TCP/{}", ev.dport),
                    IPPROTO_UDP => format!("UDP/{}", ev.dport),
                    IPPROTO_SCTP => format!("SCTP/{}", ev.dport),
                    IPPROTO_ICMP => "ICMPv4".to_string(),
                    IPPROTO_ICMPV6 => "ICMPv6".to_string(),
                    p => format!("protocol {p}"),
                };
                // Replies travel against the connection: name its first packet's port.
                let l4 = if ev.is_reply
                    && matches!(ev.l4_proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP)
                {
                    format!("{}/{}", &l4[..l4.find('/').unwrap_or(0)], ev.sport)
                } else {
                    l4
                };
                let text = format!(
                    "default deny: {} of {} is selected by {}; no rule allows {} on {}",
                    dir.as_str(),
                    who(me, me_ip),
                    names.join(", "),
                    who(peer, peer_ip),
                    l4
                );
                f.policy_log.push(text.clone());
                extras.default_deny = Some(DefaultDenyAttribution {
                    direction: match dir {
                        Dir::Ingress => TrafficDirection::Ingress as i32,
                        Dir::Egress => TrafficDirection::Egress as i32,
                    },
                    policies: names,
                    text,
                });
            }
        }
    }
}

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_SCTP: u8 = 132;

fn match_type(m: event::MatchType) -> u32 {
    use event::MatchType::*;
    match m {
        None => 0,
        L3Only => 1,
        L3L4 => 2,
        L4Only => 3,
        All => 4,
        L3Proto => 5,
        ProtoOnly => 6,
    }
}

fn mac(b: &[u8; 6]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(17);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(HEX[usize::from(x >> 4)] as char);
        s.push(HEX[usize::from(x & 15)] as char);
    }
    s
}

/// The L4 layer and the summary Hubble's L3/L4 parser gives it.
fn layer4(ev: &RawEvent<'_>) -> (Option<Layer4>, String) {
    let proto = |p| Some(Layer4 { protocol: Some(p) });
    match (ev.family, ev.l4_proto) {
        (event::Family::None, _) => {
            let s = if ev.has_flag(event::flags::NO_L2) {
                "Unknown"
            } else {
                "Ethernet"
            };
            (None, s.to_string())
        }
        (_, IPPROTO_TCP) => {
            let flags = tcp_flags(ev);
            let summary = tcp_summary(&flags);
            (
                proto(layer4::Protocol::Tcp(Tcp {
                    source_port: u32::from(ev.sport),
                    destination_port: u32::from(ev.dport),
                    flags: Some(flags),
                })),
                summary,
            )
        }
        (_, IPPROTO_UDP) => (
            proto(layer4::Protocol::Udp(Udp {
                source_port: u32::from(ev.sport),
                destination_port: u32::from(ev.dport),
            })),
            "UDP".to_string(),
        ),
        (_, IPPROTO_SCTP) => (
            proto(layer4::Protocol::Sctp(Sctp {
                source_port: u32::from(ev.sport),
                destination_port: u32::from(ev.dport),
            })),
            "SCTP".to_string(),
        ),
        (event::Family::V4, IPPROTO_ICMP) => (
            proto(layer4::Protocol::IcmPv4(IcmPv4 {
                r#type: u32::from(ev.icmp_type),
                code: u32::from(ev.icmp_code),
            })),
            format!("ICMPv4 {}", icmpv4_name(ev.icmp_type, ev.icmp_code)),
        ),
        (event::Family::V6, IPPROTO_ICMPV6) => (
            proto(layer4::Protocol::IcmPv6(IcmPv6 {
                r#type: u32::from(ev.icmp_type),
                code: u32::from(ev.icmp_code),
            })),
            format!("ICMPv6 {}", icmpv6_name(ev.icmp_type, ev.icmp_code)),
        ),
        (event::Family::V4, _) => (None, "IPv4".to_string()),
        (event::Family::V6, _) => (None, "IPv6".to_string()),
    }
}

fn tcp_flags(ev: &RawEvent<'_>) -> TcpFlags {
    let b = ev.tcp_flags;
    // NS lives outside the flags byte: low bit of the data-offset byte, if it was captured.
    let ns = (ev.l4_off != 0)
        .then(|| ev.payload.get(usize::from(ev.l4_off) + 12))
        .flatten()
        .is_some_and(|x| x & 1 != 0);
    TcpFlags {
        fin: b & 0x01 != 0,
        syn: b & 0x02 != 0,
        rst: b & 0x04 != 0,
        psh: b & 0x08 != 0,
        ack: b & 0x10 != 0,
        urg: b & 0x20 != 0,
        ece: b & 0x40 != 0,
        cwr: b & 0x80 != 0,
        ns,
    }
}

/// `TCP Flags: SYN, ACK` — Hubble's fixed order.
pub fn tcp_summary(f: &TcpFlags) -> String {
    let mut s = String::with_capacity(32);
    s.push_str("TCP Flags: ");
    let mut first = true;
    for (set, name) in [
        (f.syn, "SYN"),
        (f.ack, "ACK"),
        (f.rst, "RST"),
        (f.fin, "FIN"),
        (f.psh, "PSH"),
        (f.urg, "URG"),
        (f.ece, "ECE"),
        (f.cwr, "CWR"),
        (f.ns, "NS"),
    ] {
        if set {
            if !first {
                s.push_str(", ");
            }
            s.push_str(name);
            first = false;
        }
    }
    s
}

/// gopacket's `ICMPv4TypeCode.String()`, which Hubble prints.
pub fn icmpv4_name(t: u8, c: u8) -> String {
    webb_proto::icmp::icmpv4_type_code(t.into(), c.into()).into_owned()
}

/// gopacket's `ICMPv6TypeCode.String()`.
pub fn icmpv6_name(t: u8, c: u8) -> String {
    webb_proto::icmp::icmpv6_type_code(t.into(), c.into()).into_owned()
}

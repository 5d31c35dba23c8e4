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

use flow_observer::{EndpointCache, SharedEndpoint, StoredFlow};
use prost::Message as _;

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
    /// The text of the first 24 characters for sequence numbers below 2^48.
    prefix: [u8; 24],
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl FlowIds {
    /// `start_secs` is the agent's start time in Unix seconds.
    pub fn new(node_name: &str, start_secs: u64) -> Self {
        // FNV-1a: stable across versions and platforms (std's hasher is not).
        let mut h: u32 = 0x811c_9dc5;
        for b in node_name.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        let mut ids = FlowIds {
            node_hash: h,
            epoch: (start_secs & 0x3fff_ffff) as u32,
            prefix: [0; 24],
        };
        let mut text = [0u8; 36];
        ids.uuid_text(0, &mut text);
        ids.prefix.copy_from_slice(&text[..24]);
        ids
    }

    pub fn uuid(&self, seq: u64) -> String {
        let mut out = [0u8; 36];
        self.uuid_into(seq, &mut out);
        // Hex digits and hyphens only.
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The UUID of `seq` in its hyphenated lower-case text form, written without allocating.
    pub fn uuid_into(&self, seq: u64, out: &mut [u8; 36]) {
        if seq >> 48 == 0 {
            // Only the last 12 digits change until the sequence passes 2^48.
            out[..24].copy_from_slice(&self.prefix);
            let mut v = seq;
            for o in out[24..].iter_mut().rev() {
                *o = HEX[(v & 15) as usize];
                v >>= 4;
            }
            return;
        }
        self.uuid_text(seq, out);
    }

    fn uuid_text(&self, seq: u64, out: &mut [u8; 36]) {
        let b = self.uuid_bytes(seq);
        let mut o = 0;
        for (i, x) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out[o] = b'-';
                o += 1;
            }
            out[o] = HEX[usize::from(x >> 4)];
            out[o + 1] = HEX[usize::from(x & 15)];
            o += 2;
        }
    }

    fn uuid_bytes(&self, seq: u64) -> [u8; 16] {
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
        b
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
    /// The snapshot's endpoints as the ring stores them, by address (an index in `peers`).
    shared: FastMap<IpAddr, usize>,
    /// Other endpoints (world, host, CIDR identities) as the ring stores them.
    endpoint_cache: EndpointCache,
    /// What the decoder needs of each interface, looked up once per interface and snapshot,
    /// by interface index (small numbers; larger ones go to `ifaces_far`).
    ifaces: Vec<Option<Iface>>,
    ifaces_far: FastMap<u32, Iface>,
    /// The last address looked up as a source and as a destination, and where its
    /// `SharedPeer` is: records come in runs of the same connection or endpoint pair.
    last_peer: [Option<(IpAddr, usize)>; 2],
    /// The entries of `shared`, by index.
    peers: Vec<SharedPeer>,
    /// Namespaces the flows stored since the last [`Decoder::take_namespaces`] carried.
    namespaces: Vec<Arc<str>>,
    /// Incremented by [`Decoder::take_namespaces`]: a namespace is noted once per epoch.
    epoch: u64,
    /// Reused for every stored flow's encoding (the ring gets a right-sized copy).
    scratch: Vec<u8>,
    summary: String,
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A local endpoint's shared encoding and namespace.
struct SharedPeer {
    encoded: Arc<SharedEndpoint>,
    namespace: Arc<str>,
    /// Epoch in which the namespace was last noted.
    noted: u64,
}

/// An interface as flows on it show it.
struct Iface {
    name: String,
    /// The host-side interface of a local endpoint (Cilium's model: directions flip).
    endpoint_veth: bool,
}

/// Observation point and direction of a record, as both [`Decoder::decode`] and
/// [`Decoder::store`] fill them.
struct Shape {
    point: i32,
    traffic_direction: TrafficDirection,
    trace_reason: TraceReason,
    ct_known: bool,
}

/// The verdict and event fields of a flow (everything of a kind that is neither a string nor
/// an endpoint).
#[derive(Default)]
struct EventFields {
    verdict: i32,
    drop_reason: u32,
    drop_reason_desc: i32,
    event_type: CiliumEventType,
    trace_observation_point: i32,
    trace_reason: i32,
    is_reply: Option<bool>,
    reply: bool,
    policy_match_type: u32,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("node_name", &self.node_name)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// How the datapath's addresses are looked up: IPv4-mapped IPv6 as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn endpoint_proto(ep: &crate::endpoints::Endpoint) -> flow::Endpoint {
    flow::Endpoint {
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
            shared: FastMap::default(),
            endpoint_cache: EndpointCache::default(),
            ifaces: Vec::new(),
            ifaces_far: FastMap::default(),
            last_peer: [None, None],
            peers: Vec::new(),
            namespaces: Vec::new(),
            epoch: 0,
            scratch: Vec::with_capacity(512),
            summary: String::with_capacity(64),
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
                let proto = endpoint_proto(ep);
                ep.ips.iter().map(move |ip| (*ip, proto.clone()))
            })
            .collect();
        self.peers.clear();
        self.shared.clear();
        for (ip, ep) in &self.cached {
            self.shared.insert(*ip, self.peers.len());
            self.peers.push(SharedPeer {
                encoded: self.endpoint_cache.share(ep),
                namespace: Arc::from(ep.namespace.as_str()),
                noted: u64::MAX,
            });
        }
        self.last_peer = [None, None];
        self.ifaces.clear();
        self.ifaces_far.clear();
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
        self.ifaces.clear();
        self.ifaces_far.clear();
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
        let ip = canonical(ip?);
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

    /// The endpoint of `ip` as the ring stores it, noting its namespace.
    fn shared_endpoint(
        &mut self,
        side: usize,
        ip: Option<IpAddr>,
        event_identity: u32,
    ) -> Option<Arc<SharedEndpoint>> {
        let ip = canonical(ip?);
        let at = match self.last_peer[side] {
            Some((last, at)) if last == ip => Some(at),
            _ => self.shared.get(&ip).copied(),
        };
        if let Some(at) = at {
            self.last_peer[side] = Some((ip, at));
            let p = &mut self.peers[at];
            if p.noted != self.epoch {
                p.noted = self.epoch;
                self.namespaces.push(p.namespace.clone());
            }
            return Some(p.encoded.clone());
        }
        let ep = self.endpoint_of(Some(ip), event_identity)?;
        if !ep.namespace.is_empty() {
            self.namespaces.push(Arc::from(ep.namespace.as_str()));
        }
        Some(self.endpoint_cache.share(&ep))
    }

    /// The interface's facts, looked up once per interface and snapshot.
    fn iface(&mut self, ifindex: u32) -> &Iface {
        /// Interface indexes below this are kept in a table (64 K entries at most).
        const NEAR: u32 = 1 << 16;
        let (interfaces, endpoints) = (&self.interfaces, &self.endpoints);
        let make = || {
            let name = interfaces.name(ifindex);
            Iface {
                name: name.unwrap_or_default().to_string(),
                endpoint_veth: name
                    .and_then(|n| endpoints.endpoint_on_interface(n))
                    .is_some(),
            }
        };
        if ifindex >= NEAR {
            return self.ifaces_far.entry(ifindex).or_insert_with(make);
        }
        let i = ifindex as usize;
        if self.ifaces.len() <= i {
            self.ifaces.resize_with(i + 1, || None);
        }
        self.ifaces[i].get_or_insert_with(make)
    }

    /// Namespaces the flows stored since the last call carried (for `GetNamespaces`).
    pub fn take_namespaces(&mut self) -> Vec<Arc<str>> {
        self.epoch += 1;
        std::mem::take(&mut self.namespaces)
    }

    fn shape(&self, ev: &RawEvent<'_>, on_endpoint_veth: bool) -> Shape {
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
                if local(ev.src_ip()) {
                    TrafficDirection::Egress
                } else if local(ev.dst_ip()) {
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
        Shape {
            point,
            traffic_direction,
            trace_reason,
            ct_known,
        }
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
        let shape = self.shape(ev, on_endpoint_veth);

        let mut f = Flow {
            time: Some(time),
            uuid: self.ids.uuid(self.seq),
            r#type: FlowType::L3L4 as i32,
            node_name: self.node_name.clone(),
            source,
            destination,
            traffic_direction: shape.traffic_direction as i32,
            ..Default::default()
        };

        if has_ethernet(ev) {
            f.ethernet = Some(Ethernet {
                source: mac(&ev.eth_src),
                destination: mac(&ev.eth_dst),
            });
        }
        if let (Some(s), Some(d)) = (src_ip, dst_ip) {
            f.ip = Some(Ip {
                source: s.to_string(),
                destination: d.to_string(),
                ip_version: ip_version(s),
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

        let e = event_fields(ev, &shape);
        f.verdict = e.verdict;
        f.drop_reason = e.drop_reason;
        f.drop_reason_desc = e.drop_reason_desc;
        f.event_type = Some(e.event_type);
        f.trace_observation_point = e.trace_observation_point;
        f.trace_reason = e.trace_reason;
        f.is_reply = e.is_reply.map(Into::into);
        f.reply = e.reply;
        f.policy_match_type = e.policy_match_type;

        let mut extras = FlowExtras::default();
        if ev.kind == EventKind::KernelDrop {
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
        f.summary = summary;
        if ev.rule_id != 0 && ev.kind != EventKind::KernelDrop {
            self.attribute(ev, &mut f, &mut extras);
        }
        extras.payload = payload_of(ev);
        FlowRecord {
            flow: f,
            extras: (extras != FlowExtras::default()).then_some(extras),
        }
    }

    /// Whether [`Decoder::store`] cannot take the event: kernel drops and default-deny
    /// attributions carry texts only the full decoder writes (both rare: drops).
    fn needs_full_decode(&self, ev: &RawEvent<'_>) -> bool {
        ev.kind == EventKind::KernelDrop
            || (ev.rule_id != 0
                && self
                    .policy
                    .lookup(ev.rule_id)
                    .is_some_and(|(_, r)| r.action == RuleAction::DefaultDeny))
    }

    /// Decodes one parsed event straight into the form the ring stores — the same flow
    /// [`Decoder::decode`] gives (with the DNS `names` — destination's, source's — set), but
    /// encoded as it is worked out, into a reused buffer, with the endpoints shared: no `Flow`
    /// and none of its strings are built. `None` for the events only `decode` takes
    /// ([`Decoder::store_record`] stores those).
    pub fn store(
        &mut self,
        ev: &RawEvent<'_>,
        names: Option<&(Vec<String>, Vec<String>)>,
    ) -> Option<StoredFlow> {
        if self.needs_full_decode(ev) {
            return None;
        }
        self.seq += 1;
        let time = self.clock.wall(ev.ktime_ns);
        let time_ns = time.unix_nanos().clamp(0, i128::from(i64::MAX)) as i64;
        let (src_ip, dst_ip) = (ev.src_ip(), ev.dst_ip());
        let source = self.shared_endpoint(0, src_ip, ev.src_identity);
        let destination = self.shared_endpoint(1, dst_ip, ev.dst_identity);
        let on_endpoint_veth = self.iface(ev.ifindex).endpoint_veth;
        let shape = self.shape(ev, on_endpoint_veth);
        let e = event_fields(ev, &shape);
        let l4 = l4_of(ev);
        let mut summary = std::mem::take(&mut self.summary);
        summary.clear();
        summary_into(ev, l4.as_ref(), &mut summary);
        let mut uuid = [0u8; 36];
        self.ids.uuid_into(self.seq, &mut uuid);

        use crate::pbwrite::{boolean, bytes, int32, int64, message, prost_message, uint};
        let mut b = std::mem::take(&mut self.scratch);
        b.clear();
        message(&mut b, 1, |b| {
            int64(b, 1, time.seconds);
            int32(b, 2, time.nanos);
        });
        int32(&mut b, 2, e.verdict);
        uint(&mut b, 3, u64::from(e.drop_reason));
        if has_ethernet(ev) {
            message(&mut b, 4, |b| {
                bytes(b, 1, &mac_bytes(&ev.eth_src));
                bytes(b, 2, &mac_bytes(&ev.eth_dst));
            });
        }
        if let (Some(s), Some(d)) = (src_ip, dst_ip) {
            message(&mut b, 5, |b| {
                ip_text(b, 1, s);
                ip_text(b, 2, d);
                int32(b, 3, ip_version(s));
            });
        }
        if let Some(l4) = &l4 {
            message(&mut b, 6, |b| layer4_into(b, l4));
        }
        int32(&mut b, 10, FlowType::L3L4 as i32);
        bytes(&mut b, 11, self.node_name.as_bytes());
        if let Some((destination_names, source_names)) = names {
            // Repeated strings are written even when empty, as prost does.
            for n in source_names {
                message(&mut b, 13, |b| b.extend_from_slice(n.as_bytes()));
            }
            for n in destination_names {
                message(&mut b, 14, |b| b.extend_from_slice(n.as_bytes()));
            }
        }
        boolean(&mut b, 16, e.reply);
        message(&mut b, 19, |b| {
            int32(b, 1, e.event_type.r#type);
            int32(b, 2, e.event_type.sub_type);
        });
        int32(&mut b, 22, shape.traffic_direction as i32);
        uint(&mut b, 23, u64::from(e.policy_match_type));
        int32(&mut b, 24, e.trace_observation_point);
        int32(&mut b, 25, e.drop_reason_desc);
        if let Some(r) = e.is_reply {
            message(&mut b, 26, |b| boolean(b, 1, r));
        }
        if ev.ifindex != 0 {
            let name = self.iface(ev.ifindex).name.as_bytes();
            message(&mut b, 28, |b| {
                uint(b, 1, u64::from(ev.ifindex));
                bytes(b, 2, name);
            });
        }
        bytes(&mut b, 34, &uuid);
        int32(&mut b, 36, e.trace_reason);
        bytes(&mut b, 100_000, summary.as_bytes());
        if ev.rule_id != 0
            && let Some((generation, rules)) = self.policy.lookup(ev.rule_id)
        {
            let field = match (rules.action, rules.dir) {
                (RuleAction::Allow, Dir::Egress) => 21_001,
                (RuleAction::Allow, Dir::Ingress) => 21_002,
                (RuleAction::Deny, Dir::Egress) => 21_004,
                (RuleAction::Deny, Dir::Ingress) => 21_005,
                // Taken by `decode` (see `needs_full_decode`).
                (RuleAction::DefaultDeny, _) => 0,
            };
            if field != 0 {
                for p in rules
                    .policies
                    .iter()
                    .filter_map(|&i| generation.policies.get(i))
                {
                    prost_message(&mut b, field, p);
                }
            }
        }
        let extras_at = payload_of(ev).map(|payload| {
            let at = b.len();
            FlowExtras {
                payload: Some(payload),
                ..Default::default()
            }
            .encode_raw(&mut b);
            at
        });
        let stored =
            StoredFlow::from_encoded(time_ns, b[..].into(), extras_at, source, destination);
        self.scratch = b;
        self.summary = summary;
        Some(stored)
    }

    /// Stores a flow [`Decoder::decode`] gave, sharing its endpoints with the flows
    /// [`Decoder::store`] wrote and noting their namespaces.
    pub fn store_record(&mut self, r: FlowRecord) -> StoredFlow {
        for ep in [&r.flow.source, &r.flow.destination].into_iter().flatten() {
            if !ep.namespace.is_empty() {
                self.namespaces.push(Arc::from(ep.namespace.as_str()));
            }
        }
        StoredFlow::new(r.flow, r.extras.as_ref(), &mut self.endpoint_cache)
    }
}

/// `Layer4`'s encoding, as prost writes it (written here: prost's generic encoder was a tenth
/// of the agent's time per record).
fn layer4_into(b: &mut Vec<u8>, l4: &Layer4) {
    use crate::pbwrite::{boolean, message, uint};
    let ports = |b: &mut Vec<u8>, s: u32, d: u32| {
        uint(b, 1, u64::from(s));
        uint(b, 2, u64::from(d));
    };
    match &l4.protocol {
        Some(layer4::Protocol::Tcp(t)) => message(b, 1, |b| {
            ports(b, t.source_port, t.destination_port);
            if let Some(f) = &t.flags {
                message(b, 3, |b| {
                    for (i, set) in [f.fin, f.syn, f.rst, f.psh, f.ack, f.urg, f.ece, f.cwr, f.ns]
                        .into_iter()
                        .enumerate()
                    {
                        boolean(b, i as u32 + 1, set);
                    }
                });
            }
        }),
        Some(layer4::Protocol::Udp(u)) => {
            message(b, 2, |b| ports(b, u.source_port, u.destination_port))
        }
        Some(layer4::Protocol::IcmPv4(i)) => message(b, 3, |b| ports(b, i.r#type, i.code)),
        Some(layer4::Protocol::IcmPv6(i)) => message(b, 4, |b| ports(b, i.r#type, i.code)),
        Some(layer4::Protocol::Sctp(s)) => {
            message(b, 5, |b| ports(b, s.source_port, s.destination_port))
        }
        // The decoder makes none of the others.
        Some(p) => p.encode(b),
        None => {}
    }
}

fn has_ethernet(ev: &RawEvent<'_>) -> bool {
    !ev.has_flag(event::flags::NO_L2) && (ev.eth_src != [0; 6] || ev.eth_dst != [0; 6])
}

fn ip_version(ip: IpAddr) -> i32 {
    match ip {
        IpAddr::V4(_) => IpVersion::IPv4 as i32,
        IpAddr::V6(_) => IpVersion::IPv6 as i32,
    }
}

/// An address as `IpAddr`'s `Display` writes it, as a string field, without allocating.
fn ip_text(b: &mut Vec<u8>, field: u32, ip: IpAddr) {
    let mut text = [0u8; 64];
    let len = match ip {
        IpAddr::V4(v4) => {
            // Dotted decimal by hand: `Display` goes through the formatter (much slower).
            let mut n = 0;
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    text[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    text[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                text[n] = b'0' + o % 10;
                n += 1;
            }
            n
        }
        IpAddr::V6(v6) => {
            let mut w = std::io::Cursor::new(&mut text[..]);
            // 45 bytes at most (`ffff:…:255.255.255.255`): it fits.
            let _ = std::io::Write::write_fmt(&mut w, format_args!("{v6}"));
            w.position() as usize
        }
    };
    crate::pbwrite::bytes(b, field, &text[..len]);
}

/// The verdict and event fields of a record, as Hubble fills them for each kind.
fn event_fields(ev: &RawEvent<'_>, shape: &Shape) -> EventFields {
    let mut e = EventFields::default();
    match ev.kind {
        EventKind::Trace => {
            e.verdict = Verdict::Forwarded as i32;
            let point = shape.point.max(0);
            e.event_type = CiliumEventType {
                r#type: event_type::TRACE,
                sub_type: point,
            };
            e.trace_observation_point = if point == trace_point::TO_ENDPOINT {
                TraceObservationPoint::ToEndpoint as i32
            } else {
                point
            };
            e.trace_reason = shape.trace_reason as i32;
            if shape.ct_known {
                e.is_reply = Some(ev.is_reply);
                e.reply = ev.is_reply;
            }
        }
        EventKind::Drop => {
            e.verdict = Verdict::Dropped as i32;
            e.drop_reason = u32::from(ev.drop_reason);
            e.drop_reason_desc = i32::from(ev.drop_reason);
            e.event_type = CiliumEventType {
                r#type: event_type::DROP,
                sub_type: i32::from(ev.drop_reason),
            };
        }
        EventKind::PolicyVerdict => {
            e.verdict = match ev.verdict {
                event::Verdict::Forward => Verdict::Forwarded as i32,
                event::Verdict::Drop => Verdict::Dropped as i32,
                event::Verdict::Audit => Verdict::Audit as i32,
            };
            if ev.verdict == event::Verdict::Drop {
                e.drop_reason = u32::from(ev.drop_reason);
                e.drop_reason_desc = i32::from(ev.drop_reason);
            } else if ev.verdict == event::Verdict::Forward {
                // Forwarded verdicts are emitted for a connection's first packet (Hubble).
                e.is_reply = Some(false);
            }
            e.policy_match_type = match_type(ev.match_type);
            e.event_type = CiliumEventType {
                r#type: event_type::POLICY_VERDICT,
                sub_type: 0,
            };
        }
        EventKind::KernelDrop => {
            e.verdict = Verdict::Dropped as i32;
            e.event_type = CiliumEventType {
                r#type: event_type::DROP,
                sub_type: 0,
            };
        }
    }
    e
}

/// The captured L7 bytes as Webb's extension carries them.
fn payload_of(ev: &RawEvent<'_>) -> Option<CapturedPayload> {
    let l7 = ev.l7_bytes();
    (!l7.is_empty()).then(|| CapturedPayload {
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
    })
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
    String::from_utf8_lossy(&mac_bytes(b)).into_owned()
}

/// `aa:bb:cc:dd:ee:ff`, lower case.
fn mac_bytes(b: &[u8; 6]) -> [u8; 17] {
    let mut s = [b':'; 17];
    for (i, x) in b.iter().enumerate() {
        s[3 * i] = HEX[usize::from(x >> 4)];
        s[3 * i + 1] = HEX[usize::from(x & 15)];
    }
    s
}

/// The L4 layer and the summary Hubble's L3/L4 parser gives it.
fn layer4(ev: &RawEvent<'_>) -> (Option<Layer4>, String) {
    let l4 = l4_of(ev);
    let mut summary = String::new();
    summary_into(ev, l4.as_ref(), &mut summary);
    (l4, summary)
}

/// The L4 layer of a record.
fn l4_of(ev: &RawEvent<'_>) -> Option<Layer4> {
    let protocol = match (ev.family, ev.l4_proto) {
        (event::Family::None, _) => return None,
        (_, IPPROTO_TCP) => layer4::Protocol::Tcp(Tcp {
            source_port: u32::from(ev.sport),
            destination_port: u32::from(ev.dport),
            flags: Some(tcp_flags(ev)),
        }),
        (_, IPPROTO_UDP) => layer4::Protocol::Udp(Udp {
            source_port: u32::from(ev.sport),
            destination_port: u32::from(ev.dport),
        }),
        (_, IPPROTO_SCTP) => layer4::Protocol::Sctp(Sctp {
            source_port: u32::from(ev.sport),
            destination_port: u32::from(ev.dport),
        }),
        (event::Family::V4, IPPROTO_ICMP) => layer4::Protocol::IcmPv4(IcmPv4 {
            r#type: u32::from(ev.icmp_type),
            code: u32::from(ev.icmp_code),
        }),
        (event::Family::V6, IPPROTO_ICMPV6) => layer4::Protocol::IcmPv6(IcmPv6 {
            r#type: u32::from(ev.icmp_type),
            code: u32::from(ev.icmp_code),
        }),
        _ => return None,
    };
    Some(Layer4 {
        protocol: Some(protocol),
    })
}

/// The summary Hubble's L3/L4 parser gives a record with L4 layer `l4`, appended to `out`.
fn summary_into(ev: &RawEvent<'_>, l4: Option<&Layer4>, out: &mut String) {
    match (ev.family, l4.and_then(|l| l.protocol.as_ref())) {
        (event::Family::None, _) if ev.has_flag(event::flags::NO_L2) => out.push_str("Unknown"),
        (event::Family::None, _) => out.push_str("Ethernet"),
        (_, Some(layer4::Protocol::Tcp(t))) => webb_proto::summary::tcp_flags_into(
            t.flags.as_ref().unwrap_or(&TcpFlags::default()),
            out,
        ),
        (_, Some(layer4::Protocol::Udp(_))) => out.push_str("UDP"),
        (_, Some(layer4::Protocol::Sctp(_))) => out.push_str("SCTP"),
        (_, Some(layer4::Protocol::IcmPv4(_))) => {
            out.push_str("ICMPv4 ");
            out.push_str(&webb_proto::icmp::icmpv4_type_code(
                ev.icmp_type.into(),
                ev.icmp_code.into(),
            ));
        }
        (_, Some(layer4::Protocol::IcmPv6(_))) => {
            out.push_str("ICMPv6 ");
            out.push_str(&webb_proto::icmp::icmpv6_type_code(
                ev.icmp_type.into(),
                ev.icmp_code.into(),
            ));
        }
        (event::Family::V4, _) => out.push_str("IPv4"),
        (event::Family::V6, _) => out.push_str("IPv6"),
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
    webb_proto::summary::tcp_flags(f)
}

/// gopacket's `ICMPv4TypeCode.String()`, which Hubble prints.
pub fn icmpv4_name(t: u8, c: u8) -> String {
    webb_proto::icmp::icmpv4_type_code(t.into(), c.into()).into_owned()
}

/// gopacket's `ICMPv6TypeCode.String()`.
pub fn icmpv6_name(t: u8, c: u8) -> String {
    webb_proto::icmp::icmpv6_type_code(t.into(), c.into()).into_owned()
}

//! DNS from captured payload → Hubble L7 DNS flows (REQUEST and RESPONSE), filled the way
//! Hubble fills them from Cilium's DNS proxy (`l7.dns`: query, ips, ttl, cnames,
//! observation_source, rcode, qtypes, rrtypes; `Summary` as Hubble's `dnsSummary` words it),
//! but observed in the datapath, with no proxy.
//!
//! - The agent captures every UDP or TCP packet with payload to or from port 53. A UDP payload
//!   is one message; a TCP payload is a run of length-prefixed messages, and a message cut at
//!   a segment boundary waits (bounded) for the next segment of its stream.
//! - A query and its response pair by observation point (node, interface), transport, client
//!   and server address and port, and message id; the response's latency is the time between
//!   the two packets. A response whose query was not seen still makes a flow (latency 0,
//!   counted); a query never answered is counted when it times out or is evicted.
//! - A message that does not parse, or that the capture cut, makes no flow and is counted
//!   (`malformed`, `truncated`): never guessed at.
//! - A query the datapath dropped makes a REQUEST flow with the packet's verdict (what
//!   Hubble's `dns` metric counts as "Policy denied") and waits for no response.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;

use lru::LruCache;
use webb_proto::flow::{Dns, Flow, L7FlowType, Layer4, Layer7, Tcp, Udp, Verdict, layer4, layer7};
use webb_proto::webb_v1::CapturedPayload;

use crate::dns::{self, AnswerData, DnsError, DnsMessage};
use crate::http::{FlowIds, l7_base, timestamp};

/// `l7.dns.observation_source` of Webb's flows: read from packets in the datapath. Hubble's
/// summary says "Proxy" only for its proxy's source and "Query" for any other.
pub const OBSERVATION_SOURCE: &str = "datapath";

/// Well-known DNS port; the agent captures payload to and from it.
pub const DNS_PORT: u32 = 53;

/// Limits of the DNS stage.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Queries waiting for their response (least recently seen evicted first, counted).
    pub max_pending: usize,
    /// A query unanswered for this long is given up (nanoseconds of flow time).
    pub query_timeout_ns: u64,
    /// TCP streams with a message cut at a segment boundary, held at once.
    pub max_tcp_streams: usize,
    /// Bytes held for one such stream (a DNS message is at most 65,535 bytes).
    pub max_tcp_bytes: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            max_pending: 65536,
            query_timeout_ns: 30_000_000_000,
            max_tcp_streams: 4096,
            max_tcp_bytes: 65537,
        }
    }
}

/// What the DNS stage saw and what it gave up on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Queries read (one REQUEST flow each).
    pub queries: u64,
    /// Responses read (one RESPONSE flow each).
    pub responses: u64,
    /// Responses paired with their query (the rest have latency 0).
    pub paired: u64,
    /// Responses whose query was not seen.
    pub unmatched_responses: u64,
    /// Queries given up: timed out, evicted, or answered by nothing seen.
    pub unanswered_queries: u64,
    /// Pending queries evicted because the table was full (also in `unanswered_queries`).
    pub evicted_full: u64,
    /// Messages that are not DNS as RFC 1035 writes it: no flow.
    pub malformed: u64,
    /// Messages the capture or the stream cut before their end: no flow.
    pub truncated: u64,
    /// Messages without a question (nothing to name the flow by): no flow.
    pub no_question: u64,
    /// TCP segments seen again (retransmits), skipped.
    pub retransmits: u64,
}

impl DnsStats {
    /// Messages that made no flow because they could not be read.
    pub fn lost(&self) -> u64 {
        self.malformed + self.truncated
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PendingKey {
    node: u64,
    ifindex: u32,
    tcp: bool,
    client: SocketAddr,
    server: SocketAddr,
    id: u16,
}

#[derive(Debug)]
struct Pending {
    time_ns: i128,
    direction: i32,
}

/// One direction of a TCP connection at one observation point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StreamKey {
    node: u64,
    ifindex: u32,
    src: SocketAddr,
    dst: SocketAddr,
}

#[derive(Debug, Default)]
struct Stream {
    /// Stream position just past the last byte seen.
    next: u32,
    /// The start of a message whose end is in a later segment.
    held: Vec<u8>,
    last_ns: i128,
}

/// The packet facts the stage needs.
struct Packet {
    node: u64,
    ifindex: u32,
    tcp: bool,
    src: SocketAddr,
    dst: SocketAddr,
    time_ns: i128,
}

/// The DNS stage: owns the pending-query table and the TCP streams; feed it flows in time
/// order.
pub struct DnsStage {
    config: DnsConfig,
    pending: LruCache<PendingKey, Pending>,
    streams: LruCache<StreamKey, Stream>,
    stats: DnsStats,
    ids: FlowIds,
    node_hasher: lru::DefaultHasher,
}

impl std::fmt::Debug for DnsStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsStage")
            .field("pending", &self.pending.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// True when the flow is UDP or TCP to or from port 53: its payload belongs to this stage.
pub fn is_dns(flow: &Flow) -> bool {
    match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(layer4::Protocol::Udp(u)) => {
            u.source_port == DNS_PORT || u.destination_port == DNS_PORT
        }
        Some(layer4::Protocol::Tcp(t)) => {
            t.source_port == DNS_PORT || t.destination_port == DNS_PORT
        }
        _ => false,
    }
}

impl DnsStage {
    pub fn new(config: DnsConfig) -> Self {
        let cap = |n: usize| NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN);
        DnsStage {
            pending: LruCache::new(cap(config.max_pending)),
            streams: LruCache::new(cap(config.max_tcp_streams)),
            config,
            stats: DnsStats::default(),
            ids: FlowIds::new(),
            node_hasher: lru::DefaultHasher::default(),
        }
    }

    pub fn stats(&self) -> &DnsStats {
        &self.stats
    }

    /// Queries waiting for a response.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Reads the DNS messages of one packet flow's captured payload and appends their L7 flows
    /// to `out`. Never panics, whatever the bytes.
    pub fn observe(&mut self, packet: &Flow, payload: &CapturedPayload, out: &mut Vec<Flow>) {
        if payload.data.is_empty() {
            return;
        }
        let Some(p) = self.packet_of(packet) else {
            return;
        };
        self.expire(p.time_ns);
        if !p.tcp {
            // A UDP datagram is one message; a capture that stopped early or does not start at
            // the payload's first byte cannot be read whole.
            if payload.truncated || payload.offset != 0 {
                self.stats.truncated += 1;
                return;
            }
            let parsed = dns::parse_udp(&payload.data);
            self.message(&p, packet, parsed, out);
            return;
        }
        self.tcp_segment(&p, packet, payload, out);
    }

    fn tcp_segment(
        &mut self,
        p: &Packet,
        packet: &Flow,
        payload: &CapturedPayload,
        out: &mut Vec<Flow>,
    ) {
        let key = StreamKey {
            node: p.node,
            ifindex: p.ifindex,
            src: p.src,
            dst: p.dst,
        };
        let pos = payload.seq.wrapping_add(payload.offset);
        let end = pos.wrapping_add(payload.data.len() as u32);
        let mut data = Vec::new();
        if let Some(stream) = self.streams.get_mut(&key) {
            let ahead = pos.wrapping_sub(stream.next) as i32;
            if ahead < 0 {
                self.stats.retransmits += 1;
                return;
            }
            if ahead > 0 && !stream.held.is_empty() {
                // A segment is missing: the held start of a message can never complete.
                self.stats.truncated += 1;
                stream.held.clear();
            }
            data = std::mem::take(&mut stream.held);
        }
        data.extend_from_slice(&payload.data);

        let mut rest = data.as_slice();
        let mut held = Vec::new();
        while !rest.is_empty() {
            match dns::split_tcp(rest) {
                Ok((message, next)) => {
                    let parsed = dns::parse_message(message);
                    self.message(p, packet, parsed, out);
                    rest = next;
                }
                Err(e) if e.is_truncation() => {
                    if payload.truncated || rest.len() > self.config.max_tcp_bytes {
                        // The capture cut this segment: what follows in the stream is unknown.
                        self.stats.truncated += 1;
                    } else {
                        held = rest.to_vec();
                    }
                    break;
                }
                Err(_) => {
                    self.stats.malformed += 1;
                    break;
                }
            }
        }
        let stream = Stream {
            next: end,
            held,
            last_ns: p.time_ns,
        };
        self.streams.push(key, stream);
    }

    fn message(
        &mut self,
        p: &Packet,
        packet: &Flow,
        parsed: Result<DnsMessage, DnsError>,
        out: &mut Vec<Flow>,
    ) {
        let m = match parsed {
            Ok(m) => m,
            Err(e) if e.is_truncation() => {
                self.stats.truncated += 1;
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let Some(first) = m.questions.first() else {
            self.stats.no_question += 1;
            return;
        };
        let query = first.name.clone();
        let qtypes: Vec<String> = m
            .questions
            .iter()
            .map(|q| dns::type_name(q.qtype).to_string())
            .collect();
        let qtypes_text = qtypes.join(",");
        if m.is_response {
            self.response(p, packet, &m, query, qtypes, &qtypes_text, out);
        } else {
            self.query(p, packet, &m, query, qtypes, &qtypes_text, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn query(
        &mut self,
        p: &Packet,
        packet: &Flow,
        m: &DnsMessage,
        query: String,
        qtypes: Vec<String>,
        qtypes_text: &str,
        out: &mut Vec<Flow>,
    ) {
        self.stats.queries += 1;
        let mut flow = base(packet);
        flow.time = Some(timestamp(p.time_ns));
        flow.uuid = self.ids.next();
        flow.is_reply = Some(false.into());
        flow.summary = format!("DNS Query {query} {qtypes_text}");
        flow.l7 = Some(Layer7 {
            r#type: L7FlowType::Request as i32,
            latency_ns: 0,
            record: Some(layer7::Record::Dns(Dns {
                query,
                observation_source: OBSERVATION_SOURCE.into(),
                qtypes,
                ..Default::default()
            })),
        });
        let forwarded = flow.verdict == Verdict::Forwarded as i32;
        let direction = flow.traffic_direction;
        out.push(flow);
        if !forwarded {
            return; // dropped on its way: no response will come
        }
        let key = PendingKey {
            node: p.node,
            ifindex: p.ifindex,
            tcp: p.tcp,
            client: p.src,
            server: p.dst,
            id: m.id,
        };
        let pending = Pending {
            time_ns: p.time_ns,
            direction,
        };
        if let Some((old_key, _)) = self.pending.push(key, pending)
            && old_key != key
        {
            self.stats.evicted_full += 1;
            self.stats.unanswered_queries += 1;
        }
        // The same key again is a client's retry with the same id: it replaces the first.
    }

    #[allow(clippy::too_many_arguments)]
    fn response(
        &mut self,
        p: &Packet,
        packet: &Flow,
        m: &DnsMessage,
        query: String,
        qtypes: Vec<String>,
        qtypes_text: &str,
        out: &mut Vec<Flow>,
    ) {
        self.stats.responses += 1;
        let key = PendingKey {
            node: p.node,
            ifindex: p.ifindex,
            tcp: p.tcp,
            client: p.dst,
            server: p.src,
            id: m.id,
        };
        let request = self.pending.pop(&key);
        match request {
            Some(_) => self.stats.paired += 1,
            None => self.stats.unmatched_responses += 1,
        }

        // Cilium's ExtractMsgDetails: every A/AAAA address and CNAME target, the lowest TTL of
        // those records (u32::MAX when there are none), every answer's type.
        let mut ips = Vec::new();
        let mut cnames = Vec::new();
        let mut rrtypes = Vec::with_capacity(m.answers.len());
        let mut ttl = u32::MAX;
        for a in &m.answers {
            rrtypes.push(dns::type_name(a.data.rrtype()).to_string());
            match &a.data {
                AnswerData::A(ip) => ips.push(IpAddr::from(*ip).to_string()),
                AnswerData::Aaaa(ip) => ips.push(IpAddr::from(*ip).to_string()),
                AnswerData::Cname(target) => cnames.push(target.clone()),
                AnswerData::Other(_) => continue,
            }
            ttl = ttl.min(a.ttl);
        }
        let summary = answer_summary(m, &ips, &cnames, ttl, &query, qtypes_text);

        let mut flow = base(packet);
        flow.time = Some(timestamp(p.time_ns));
        flow.uuid = self.ids.next();
        flow.is_reply = Some(true.into());
        if let Some(r) = &request {
            flow.traffic_direction = r.direction;
        }
        flow.summary = summary;
        flow.l7 = Some(Layer7 {
            r#type: L7FlowType::Response as i32,
            latency_ns: request
                .map(|r| u64::try_from(p.time_ns - r.time_ns).unwrap_or(0))
                .unwrap_or(0),
            record: Some(layer7::Record::Dns(Dns {
                query,
                ips,
                ttl,
                cnames,
                observation_source: OBSERVATION_SOURCE.into(),
                rcode: u32::from(m.rcode),
                qtypes,
                rrtypes,
            })),
        });
        out.push(flow);
    }

    /// Gives up queries older than the timeout and TCP streams idle as long (flow time).
    pub fn expire(&mut self, now_ns: i128) {
        let horizon = now_ns - i128::from(self.config.query_timeout_ns);
        while let Some((_, q)) = self.pending.peek_lru() {
            if q.time_ns >= horizon {
                break;
            }
            self.pending.pop_lru();
            self.stats.unanswered_queries += 1;
        }
        while let Some((_, s)) = self.streams.peek_lru() {
            if s.last_ns >= horizon {
                break;
            }
            if let Some((_, s)) = self.streams.pop_lru()
                && !s.held.is_empty()
            {
                self.stats.truncated += 1;
            }
        }
    }

    fn packet_of(&self, flow: &Flow) -> Option<Packet> {
        let ip = flow.ip.as_ref()?;
        let src_ip: IpAddr = ip.source.parse().ok()?;
        let dst_ip: IpAddr = ip.destination.parse().ok()?;
        let (tcp, sp, dp) = match flow.l4.as_ref()?.protocol.as_ref()? {
            layer4::Protocol::Udp(u) => (false, u.source_port, u.destination_port),
            layer4::Protocol::Tcp(t) => (true, t.source_port, t.destination_port),
            _ => return None,
        };
        Some(Packet {
            node: self.node_hasher.hash_one(&flow.node_name),
            ifindex: flow.interface.as_ref().map_or(0, |i| i.index),
            tcp,
            src: SocketAddr::new(src_ip, u16::try_from(sp).ok()?),
            dst: SocketAddr::new(dst_ip, u16::try_from(dp).ok()?),
            time_ns: flow.time?.unix_nanos(),
        })
    }
}

/// The L7 flow's fields from the packet: HTTP's base, with the packet's verdict (a dropped
/// query is reported as such) and its L4 ports whatever the transport.
fn base(packet: &Flow) -> Flow {
    let mut flow = l7_base(packet);
    flow.verdict = packet.verdict;
    flow.drop_reason_desc = packet.drop_reason_desc;
    flow.l4 = match packet.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(layer4::Protocol::Tcp(t)) => Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: t.source_port,
                destination_port: t.destination_port,
                flags: None,
            })),
        }),
        Some(layer4::Protocol::Udp(u)) => Some(Layer4 {
            protocol: Some(layer4::Protocol::Udp(Udp {
                source_port: u.source_port,
                destination_port: u.destination_port,
            })),
        }),
        _ => None,
    };
    flow
}

/// Hubble's `dnsSummary` for a response: `DNS Answer "198.18.0.10" TTL: 30 (Query
/// web.example. A)`, with `CNAMEs: "..."` after the addresses, or `RCode: <name>` in their
/// place when the rcode is not NOERROR.
fn answer_summary(
    m: &DnsMessage,
    ips: &[String],
    cnames: &[String],
    ttl: u32,
    query: &str,
    qtypes: &str,
) -> String {
    let answer = if m.rcode != 0 {
        format!("RCode: {}", m.rcode_name())
    } else {
        let mut parts = Vec::new();
        if !ips.is_empty() {
            parts.push(go_quote(&ips.join(",")));
        }
        if !cnames.is_empty() {
            parts.push(format!("CNAMEs: {}", go_quote(&cnames.join(","))));
        }
        parts.join(" ")
    };
    format!("DNS Answer {answer} TTL: {ttl} (Query {query} {qtypes})")
}

/// Go's `%q` for the ASCII text names and addresses are made of.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            c => out.push_str(&format!("\\x{:02x}", c as u32 & 0xff)),
        }
    }
    out.push('"');
    out
}

/// Fuzzing entry point: splits `data` into packets (a control byte, a length byte and that
/// many bytes) between one client and one server over UDP and TCP, queries and responses, and
/// runs them through a stage with small bounds. Never panics; every message read makes exactly
/// one flow and every other is counted.
pub fn fuzz_dns_flows(data: &[u8]) {
    let mut stage = DnsStage::new(DnsConfig {
        max_pending: 4,
        query_timeout_ns: 1_000_000,
        max_tcp_streams: 2,
        max_tcp_bytes: 300,
    });
    let mut out = Vec::new();
    let mut rest = data;
    let mut t = 1_000_000_000u64;
    let mut seqs = [1000u32, 9000u32];
    while let [ctl, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let from_server = ctl & 1 != 0;
        let tcp = ctl & 2 != 0;
        t += u64::from(ctl >> 4) * 100_000;
        let flow = test_packet(from_server, tcp, t, ctl & 4 != 0);
        let half = usize::from(from_server);
        let payload = CapturedPayload {
            data: bytes.to_vec(),
            original_length: n as u32,
            offset: 0,
            seq: if tcp { seqs[half] } else { 0 },
            truncated: ctl & 8 != 0,
            continuation: false,
        };
        seqs[half] = seqs[half].wrapping_add(n as u32);
        let before = out.len();
        let s0 = stage.stats().clone();
        stage.observe(&flow, &payload, &mut out);
        let s1 = stage.stats();
        let made = (out.len() - before) as u64;
        let read = (s1.queries - s0.queries) + (s1.responses - s0.responses);
        assert_eq!(made, read, "one flow per message read");
    }
}

/// A packet flow between 198.18.0.1 (client) and 198.18.0.53 (server) for tests and fuzzing.
pub(crate) fn test_packet(from_server: bool, tcp: bool, time_ns: u64, dropped: bool) -> Flow {
    use webb_proto::Timestamp;
    use webb_proto::flow::{FlowType, Ip, TrafficDirection};
    let (client, server) = ("198.18.0.1".to_string(), "198.18.0.53".to_string());
    let (src, dst, sp, dp) = if from_server {
        (server, client, 53, 40000)
    } else {
        (client, server, 40000, 53)
    };
    let l4 = if tcp {
        layer4::Protocol::Tcp(Tcp {
            source_port: sp,
            destination_port: dp,
            flags: None,
        })
    } else {
        layer4::Protocol::Udp(Udp {
            source_port: sp,
            destination_port: dp,
        })
    };
    Flow {
        time: Some(Timestamp::from_unix_nanos(time_ns)),
        verdict: if dropped {
            Verdict::Dropped as i32
        } else {
            Verdict::Forwarded as i32
        },
        r#type: FlowType::L3L4 as i32,
        ip: Some(webb_proto::flow::Ip {
            source: src,
            destination: dst,
            ..Ip::default()
        }),
        l4: Some(Layer4 { protocol: Some(l4) }),
        node_name: "node-1".into(),
        traffic_direction: TrafficDirection::Egress as i32,
        is_reply: Some(from_server.into()),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "dns_flows_tests.rs"]
mod tests;

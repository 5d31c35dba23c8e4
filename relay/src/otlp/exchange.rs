//! Flows → span records. Pairs each traced L7 HTTP request with its response per observation
//! point, remembers every traced connection's latest exchange, and turns a drop, a policy
//! denial or a TCP reset on a traced connection into a span event.
//!
//! - An observation point is node + 5-tuple + the connection's traffic direction (EGRESS at
//!   the client's interface, INGRESS at the server's), so one exchange seen at both ends of a
//!   node gives a CLIENT and a SERVER span, as Hubble gives two L7 pairs.
//! - A response pairs with the waiting request whose time is the response's time minus its
//!   `latency_ns` (what the L7 stage computed), else the oldest with the same method and URL.
//!   Requests older than the one paired were given up by the L7 stage: they become spans
//!   without a response.
//! - The connection table is an LRU bounded in entries and forgotten after `idle_timeout_ns`
//!   of flow time without traffic; nothing is dropped silently: open exchanges of an evicted
//!   or idle connection are emitted as unanswered spans and counted.
//! - Input must be in time order (the relay's merged stream); times are flow times, never the
//!   wall clock, so the result depends on the flows alone.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use webb_proto::flow::{
    DropReason, Endpoint, Flow, FlowType, Http, L7FlowType, TrafficDirection, Verdict, layer4,
    layer7,
};

use super::ids::IdGen;
use crate::traceparent::parse_traceparent;

/// W3C trace-flags bit "sampled".
const SAMPLED: u32 = 0x01;
/// OTLP `Span.flags`: bit 8 says whether bit 9 is known; bit 9 says the parent is remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Methods the HTTP semantic conventions name; anything else is `_OTHER`.
const KNOWN_METHODS: [&str; 9] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

/// Limits of the exchange tracker.
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    /// Requests without a usable `traceparent` start a new trace (otherwise they make no span).
    pub root_spans: bool,
    /// Observation points (node + connection + direction) remembered at once.
    pub max_connections: usize,
    /// Requests waiting for responses on one connection; over it the oldest is emitted
    /// unanswered.
    pub max_pending: usize,
    /// A connection with no flow for this long (flow time) is forgotten, and its open
    /// exchanges are emitted unanswered. Also how long a drop can still find the connection's
    /// latest exchange.
    pub idle_timeout_ns: u64,
    /// Span events on one span; more are counted in `dropped_events_count`.
    pub max_events: usize,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            root_spans: false,
            max_connections: 65536,
            max_pending: 64,
            // The L7 stage's own idle timeout: it gives up on a request no sooner.
            idle_timeout_ns: 120_000_000_000,
            max_events: 32,
        }
    }
}

/// What the tracker did. Loss of exchanges shows up as `unanswered` (emitted without a
/// response), never silently.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Span records made (exchanges, unanswered requests and incident spans).
    pub spans: u64,
    /// Requests paired with their response.
    pub exchanges: u64,
    /// Requests without trace context while root spans are off: no span, by design.
    pub untraced: u64,
    /// Requests whose `traceparent` has the sampled flag off: no span, the caller chose not
    /// to record the trace.
    pub unsampled: u64,
    /// Traced requests emitted without a response (reset, idle, evicted, superseded, or more
    /// than `max_pending` waiting).
    pub unanswered: u64,
    /// Responses with no traced request waiting for them (mostly answers to untraced
    /// requests; not a loss by itself).
    pub responses_without_request: u64,
    /// Drops, denials and resets attached as an event to an open exchange.
    pub events: u64,
    /// Drops, denials and resets that became their own span (no exchange open).
    pub incident_spans: u64,
    /// Events over `max_events` on one span.
    pub events_dropped: u64,
    /// Connections pushed out of the full table.
    pub evicted: u64,
    /// Connections forgotten after `idle_timeout_ns`.
    pub expired: u64,
    /// Open exchanges discarded at shutdown.
    pub abandoned: u64,
}

/// OTLP span kinds the tracker produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Observed where the direction is unknown.
    Unspecified,
    /// A drop, denial or reset with no exchange open.
    Internal,
    Server,
    Client,
}

/// The workload a span belongs to: its OTLP resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Workload {
    /// `service.name`: the workload's name, else the pod's, else the `app` label, the
    /// reserved identity (`reserved:world`) or the IP address.
    pub service: String,
    pub namespace: String,
    pub pod: String,
    pub node: String,
    /// Workload name and kind (`Deployment`, …) when the endpoint has one.
    pub workload: String,
    pub workload_kind: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
}

/// One attribute; keys are the semantic conventions' constant names.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub key: &'static str,
    pub value: Value,
}

fn s(key: &'static str, value: impl Into<String>) -> Attr {
    Attr {
        key,
        value: Value::Str(value.into()),
    }
}

fn i(key: &'static str, value: impl Into<i64>) -> Attr {
    Attr {
        key,
        value: Value::Int(value.into()),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub time_ns: u64,
    pub name: &'static str,
    pub attributes: Vec<Attr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanStatus {
    Unset,
    Error(String),
}

/// A finished span, ready to encode. Kept apart from the OTLP message so that the flow path
/// allocates little and the export task does the encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub resource: Arc<Workload>,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// OTLP `Span.flags`: W3C trace flags plus the remote-parent bits.
    pub flags: u32,
    pub kind: Kind,
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Vec<Attr>,
    pub events: Vec<EventRecord>,
    pub dropped_events: u32,
    pub status: SpanStatus,
}

/// One observation point of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConnKey {
    node: u64,
    direction: i32,
    /// The lower of the two endpoints, so both directions of the connection share the key.
    a: SocketAddr,
    b: SocketAddr,
}

/// A request waiting for its response.
#[derive(Debug)]
struct Open {
    span: SpanRecord,
    method: String,
    url: String,
}

/// The trace context of a connection's latest exchange.
#[derive(Debug, Clone)]
struct Latest {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u32,
    resource: Arc<Workload>,
}

#[derive(Debug)]
struct Conn {
    open: VecDeque<Open>,
    latest: Latest,
    last_ns: i128,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incident {
    Drop,
    PolicyDenied,
    Reset,
}

impl Incident {
    fn event_name(self) -> &'static str {
        match self {
            Incident::Drop => "webb.drop",
            Incident::PolicyDenied => "webb.policy_denied",
            Incident::Reset => "webb.tcp_reset",
        }
    }
}

/// Turns the relay's flow stream into span records; feed it every flow in time order.
pub struct Tracker {
    config: ExchangeConfig,
    conns: LruCache<ConnKey, Conn>,
    ids: IdGen,
    stats: ExchangeStats,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("connections", &self.conns.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    pub fn new(config: ExchangeConfig) -> Self {
        let cap = NonZeroUsize::new(config.max_connections.max(1)).unwrap_or(NonZeroUsize::MIN);
        Tracker {
            config,
            conns: LruCache::new(cap),
            ids: IdGen::new(),
            stats: ExchangeStats::default(),
        }
    }

    pub fn stats(&self) -> &ExchangeStats {
        &self.stats
    }

    /// Observation points currently remembered.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Looks at one flow; appends the spans it completes to `out`. Cheap for the flows that
    /// matter to no span (most L3/L4 flows): a few field reads.
    pub fn observe(&mut self, flow: &Flow, out: &mut Vec<SpanRecord>) {
        let Some(time) = flow.time else { return };
        let now = time.unix_nanos();
        self.expire(now, out);
        if flow.r#type == FlowType::L7 as i32 {
            let Some(l7) = flow.l7.as_ref() else { return };
            let Some(layer7::Record::Http(http)) = l7.record.as_ref() else {
                return;
            };
            if l7.r#type == L7FlowType::Request as i32 {
                self.request(flow, http, now, out);
            } else if l7.r#type == L7FlowType::Response as i32 {
                self.response(flow, http, l7.latency_ns, now, out);
            }
            return;
        }
        let Some(layer4::Protocol::Tcp(tcp)) = flow.l4.as_ref().and_then(|l| l.protocol.as_ref())
        else {
            return;
        };
        let flags = tcp.flags.unwrap_or_default();
        let incident = if flow.verdict == Verdict::Dropped as i32 {
            if policy_denied(flow) {
                Incident::PolicyDenied
            } else {
                Incident::Drop
            }
        } else if flags.rst {
            Incident::Reset
        } else if flags.syn && !flags.ack {
            // A client SYN starts a new connection on the tuple: the old one's context ends.
            if self.conns.is_empty() {
                return;
            }
            if let Some(key) = conn_key(flow, flow.traffic_direction)
                && let Some(conn) = self.conns.pop(&key)
            {
                self.close(conn, now, None, out);
            }
            return;
        } else {
            return;
        };
        if !self.conns.is_empty() {
            self.incident(flow, incident, now, out);
        }
    }

    /// Forgets connections idle since before `now_ns − idle_timeout` (flow time); their open
    /// exchanges go out unanswered.
    pub fn expire(&mut self, now_ns: i128, out: &mut Vec<SpanRecord>) {
        let horizon = now_ns - i128::from(self.config.idle_timeout_ns);
        while let Some((_, conn)) = self.conns.peek_lru() {
            if conn.last_ns >= horizon {
                break;
            }
            if let Some((_, conn)) = self.conns.pop_lru() {
                self.stats.expired += 1;
                let end = conn.last_ns;
                self.close(conn, end, None, out);
            }
        }
    }

    /// Drops all state (shutdown); returns how many open exchanges were discarded.
    pub fn abandon(&mut self) -> u64 {
        let n: u64 = self.conns.iter().map(|(_, c)| c.open.len() as u64).sum();
        self.conns.clear();
        self.stats.abandoned += n;
        n
    }

    fn request(&mut self, flow: &Flow, http: &Http, now: i128, out: &mut Vec<SpanRecord>) {
        let Some(key) = conn_key(flow, flow.traffic_direction) else {
            return;
        };
        let (trace_id, parent, flags) = match trace_of(flow, http) {
            Trace::Parent {
                trace_id,
                parent,
                sampled: true,
            } => (trace_id, parent, SAMPLED | HAS_IS_REMOTE | IS_REMOTE),
            Trace::Parent { sampled: false, .. } => {
                self.stats.unsampled += 1;
                return;
            }
            Trace::None if self.config.root_spans => {
                (self.ids.trace_id(), None, SAMPLED | HAS_IS_REMOTE)
            }
            Trace::None => {
                self.stats.untraced += 1;
                return;
            }
        };
        let span = request_span(flow, http, now, trace_id, parent, flags, &mut self.ids);
        let latest = Latest {
            trace_id,
            span_id: span.span_id,
            flags,
            resource: span.resource.clone(),
        };
        let open = Open {
            span,
            method: http.method.clone(),
            url: http.url.clone(),
        };
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.latest = latest;
            conn.last_ns = conn.last_ns.max(now);
            if conn.open.len() >= self.config.max_pending.max(1)
                && let Some(old) = conn.open.pop_front()
            {
                let end = conn.last_ns;
                push_unanswered(&mut self.stats, old, end, None, out);
            }
            conn.open.push_back(open);
            return;
        }
        let conn = Conn {
            open: VecDeque::from([open]),
            latest,
            last_ns: now,
        };
        if let Some((old_key, old)) = self.conns.push(key.clone(), conn)
            && old_key != key
        {
            self.stats.evicted += 1;
            let end = old.last_ns;
            self.close(old, end, None, out);
        }
    }

    fn response(
        &mut self,
        flow: &Flow,
        http: &Http,
        latency_ns: u64,
        now: i128,
        out: &mut Vec<SpanRecord>,
    ) {
        let conn = conn_key(flow, flow.traffic_direction).and_then(|k| self.conns.get_mut(&k));
        let Some(conn) = conn else {
            self.stats.responses_without_request += 1;
            return;
        };
        conn.last_ns = conn.last_ns.max(now);
        let request_ns = now - i128::from(latency_ns);
        let same = |o: &Open| o.method == http.method && o.url == http.url;
        let at = conn
            .open
            .iter()
            .position(|o| i128::from(o.span.start_ns) == request_ns && same(o))
            .or_else(|| conn.open.iter().position(same));
        let Some(at) = at else {
            self.stats.responses_without_request += 1;
            return;
        };
        // The L7 stage pairs first-in first-out: requests before this one will never be answered.
        for old in conn.open.drain(..at).collect::<Vec<_>>() {
            push_unanswered(&mut self.stats, old, now, None, out);
        }
        let Some(open) = conn.open.pop_front() else {
            return;
        };
        let mut span = open.span;
        span.end_ns = clamp_ns(now).max(span.start_ns);
        let code = http.code;
        span.attributes
            .push(i("http.response.status_code", i64::from(code)));
        let error = match span.kind {
            Kind::Client => code >= 400,
            _ => code >= 500,
        };
        if error {
            span.attributes.push(s("error.type", code.to_string()));
            span.status = SpanStatus::Error(format!("HTTP {code}"));
        }
        self.stats.exchanges += 1;
        self.stats.spans += 1;
        out.push(span);
    }

    fn incident(&mut self, flow: &Flow, incident: Incident, now: i128, out: &mut Vec<SpanRecord>) {
        // The connection's own observation point first, then the other one on this node.
        let own = flow.traffic_direction;
        let dirs = [
            own,
            TrafficDirection::Ingress as i32,
            TrafficDirection::Egress as i32,
            TrafficDirection::Unknown as i32,
        ];
        let mut found = None;
        for (n, dir) in dirs.into_iter().enumerate() {
            if n > 0 && dir == own {
                continue;
            }
            if let Some(key) = conn_key(flow, dir)
                && self.conns.contains(&key)
            {
                found = Some(key);
                break;
            }
        }
        let Some(key) = found else { return };
        let max_events = self.config.max_events;
        let event = incident_event(flow, incident);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.last_ns = conn.last_ns.max(now);
        if !conn.open.is_empty() {
            if incident == Incident::Reset {
                // A reset ends every exchange still open on the connection.
                let conn = self.conns.pop(&key);
                if let Some(conn) = conn {
                    let latest = conn.latest.clone();
                    self.close(conn, now, Some(&event), out);
                    // Keep the context: a later drop on the tuple still belongs to this trace.
                    self.conns.push(
                        key,
                        Conn {
                            open: VecDeque::new(),
                            latest,
                            last_ns: now,
                        },
                    );
                }
                return;
            }
            if let Some(open) = conn.open.back_mut() {
                add_event(&mut self.stats, &mut open.span, event, max_events);
                self.stats.events += 1;
            }
            return;
        }
        let latest = conn.latest.clone();
        let span = incident_span(flow, incident, event, &latest, now, &mut self.ids);
        self.stats.incident_spans += 1;
        self.stats.spans += 1;
        out.push(span);
    }

    /// Emits a closing connection's open exchanges unanswered (with `event`, e.g. a reset).
    fn close(
        &mut self,
        conn: Conn,
        end: i128,
        event: Option<&EventRecord>,
        out: &mut Vec<SpanRecord>,
    ) {
        for mut open in conn.open {
            if let Some(ev) = event {
                add_event(
                    &mut self.stats,
                    &mut open.span,
                    ev.clone(),
                    self.config.max_events,
                );
                self.stats.events += 1;
            }
            push_unanswered(&mut self.stats, open, end, event, out);
        }
    }
}

fn add_event(stats: &mut ExchangeStats, span: &mut SpanRecord, event: EventRecord, max: usize) {
    if span.events.len() >= max {
        span.dropped_events += 1;
        stats.events_dropped += 1;
    } else {
        span.events.push(event);
    }
}

/// A request that will get no response: ends at `end`, status error.
fn push_unanswered(
    stats: &mut ExchangeStats,
    open: Open,
    end: i128,
    reason: Option<&EventRecord>,
    out: &mut Vec<SpanRecord>,
) {
    let mut span = open.span;
    span.end_ns = clamp_ns(end).max(span.start_ns);
    let (ty, msg) = match reason.map(|e| e.name) {
        Some("webb.tcp_reset") => ("tcp_reset", "connection reset before the response"),
        _ => ("no_response", "no response observed"),
    };
    span.attributes.push(s("error.type", ty));
    span.status = SpanStatus::Error(msg.into());
    stats.unanswered += 1;
    stats.spans += 1;
    out.push(span);
}

enum Trace {
    Parent {
        trace_id: [u8; 16],
        parent: Option<[u8; 8]>,
        sampled: bool,
    },
    None,
}

/// The request's trace context: its `traceparent` header when the flow still carries it,
/// else the trace id the L7 stage put in `trace_context` (headers filtered: no parent id).
fn trace_of(flow: &Flow, http: &Http) -> Trace {
    if let Some(tp) = http
        .headers
        .iter()
        .find(|h| h.key == "traceparent")
        .and_then(|h| parse_traceparent(h.value.as_bytes()))
        && let (Some(trace_id), Some(parent)) = (hex16(&tp.trace_id), hex8(&tp.parent_id))
    {
        return Trace::Parent {
            trace_id,
            parent: Some(parent),
            sampled: tp.sampled,
        };
    }
    let id = flow
        .trace_context
        .as_ref()
        .and_then(|t| t.parent.as_ref())
        .and_then(|p| hex16(&p.trace_id))
        .filter(|id| *id != [0; 16]);
    match id {
        Some(trace_id) => Trace::Parent {
            trace_id,
            parent: None,
            sampled: true,
        },
        None => Trace::None,
    }
}

#[allow(clippy::too_many_arguments)]
fn request_span(
    flow: &Flow,
    http: &Http,
    now: i128,
    trace_id: [u8; 16],
    parent: Option<[u8; 8]>,
    flags: u32,
    ids: &mut IdGen,
) -> SpanRecord {
    let kind = match flow.traffic_direction {
        d if d == TrafficDirection::Ingress as i32 => Kind::Server,
        d if d == TrafficDirection::Egress as i32 => Kind::Client,
        _ => Kind::Unspecified,
    };
    let ip = flow.ip.as_ref();
    let (src_ip, dst_ip) = ip.map_or(("", ""), |ip| (ip.source.as_str(), ip.destination.as_str()));
    let (sport, dport) = ports(flow).unwrap_or((0, 0));
    // The client sent it (CLIENT span); the server served it (SERVER and unknown).
    let resource = if kind == Kind::Client {
        workload_of(flow.source.as_ref(), src_ip, &flow.node_name)
    } else {
        workload_of(flow.destination.as_ref(), dst_ip, &flow.node_name)
    };
    let url = UrlParts::parse(&http.url);
    let known = KNOWN_METHODS.contains(&http.method.as_str());
    let method = if known {
        http.method.as_str()
    } else {
        "_OTHER"
    };
    let mut attributes = Vec::with_capacity(16);
    attributes.push(s("http.request.method", method));
    if !known {
        attributes.push(s("http.request.method_original", http.method.as_str()));
    }
    attributes.push(s("url.path", url.path));
    if let Some(q) = url.query {
        attributes.push(s("url.query", q));
    }
    attributes.push(s("url.scheme", url.scheme));
    if kind == Kind::Client {
        attributes.push(s("url.full", url.full_without_credentials(&http.url)));
    }
    attributes.push(s(
        "server.address",
        if url.host.is_empty() {
            dst_ip
        } else {
            url.host
        },
    ));
    attributes.push(i("server.port", url.port.unwrap_or(dport)));
    attributes.push(s("client.address", src_ip));
    if kind == Kind::Client {
        attributes.push(s("network.peer.address", dst_ip));
        attributes.push(i("network.peer.port", dport));
    } else {
        attributes.push(i("client.port", sport));
        attributes.push(s("network.peer.address", src_ip));
        attributes.push(i("network.peer.port", sport));
    }
    attributes.push(s("network.protocol.name", "http"));
    attributes.push(s(
        "network.protocol.version",
        http.protocol
            .strip_prefix("HTTP/")
            .unwrap_or(&http.protocol),
    ));
    attributes.push(s("network.transport", "tcp"));
    if let Some(ua) = http.headers.iter().find(|h| h.key == "user-agent") {
        attributes.push(s("user_agent.original", ua.value.as_str()));
    }
    let name = if known {
        format!("{method} {}", url.path)
    } else {
        format!("HTTP {}", url.path)
    };
    let start = clamp_ns(now);
    SpanRecord {
        resource: Arc::new(resource),
        trace_id,
        span_id: ids.span_id(),
        parent_span_id: parent,
        flags,
        kind,
        name,
        start_ns: start,
        end_ns: start,
        attributes,
        events: Vec::new(),
        dropped_events: 0,
        status: SpanStatus::Unset,
    }
}

fn incident_event(flow: &Flow, incident: Incident) -> EventRecord {
    let mut attributes = Vec::with_capacity(8);
    if let Some(ip) = flow.ip.as_ref() {
        let (sport, dport) = ports(flow).unwrap_or((0, 0));
        attributes.push(s("source.address", ip.source.as_str()));
        attributes.push(i("source.port", sport));
        attributes.push(s("destination.address", ip.destination.as_str()));
        attributes.push(i("destination.port", dport));
    }
    let verdict = Verdict::try_from(flow.verdict).map_or("VERDICT_UNKNOWN", |v| v.as_str_name());
    attributes.push(s("webb.verdict", verdict));
    if incident != Incident::Reset {
        let reason = DropReason::try_from(flow.drop_reason_desc)
            .map_or("DROP_REASON_UNKNOWN", |r| r.as_str_name());
        attributes.push(s("webb.drop.reason", reason));
    }
    if incident == Incident::PolicyDenied {
        let names: Vec<String> = flow
            .egress_denied_by
            .iter()
            .chain(&flow.ingress_denied_by)
            .map(|p| {
                if p.namespace.is_empty() {
                    p.name.clone()
                } else {
                    format!("{}/{}", p.namespace, p.name)
                }
            })
            .collect();
        if !names.is_empty() {
            attributes.push(s("webb.policy.denied_by", names.join(",")));
        }
    }
    let direction = TrafficDirection::try_from(flow.traffic_direction)
        .map_or("TRAFFIC_DIRECTION_UNKNOWN", |d| d.as_str_name());
    attributes.push(s("webb.traffic_direction", direction));
    if !flow.uuid.is_empty() {
        // Links the event to the flow in Hubble's API and the flow store.
        attributes.push(s("webb.flow.uuid", flow.uuid.as_str()));
    }
    if !flow.summary.is_empty() {
        attributes.push(s("webb.flow.summary", flow.summary.as_str()));
    }
    EventRecord {
        time_ns: flow.time.map_or(0, |t| clamp_ns(t.unix_nanos())),
        name: incident.event_name(),
        attributes,
    }
}

/// A drop, denial or reset with no exchange open: its own span, a child of the connection's
/// latest exchange.
fn incident_span(
    flow: &Flow,
    incident: Incident,
    event: EventRecord,
    latest: &Latest,
    now: i128,
    ids: &mut IdGen,
) -> SpanRecord {
    let name = match incident {
        Incident::Drop => {
            let reason = DropReason::try_from(flow.drop_reason_desc)
                .map_or("DROP_REASON_UNKNOWN", |r| r.as_str_name());
            format!("drop {reason}")
        }
        Incident::PolicyDenied => "policy denied".to_string(),
        Incident::Reset => "TCP reset".to_string(),
    };
    let message = match incident {
        Incident::Reset => "connection reset".to_string(),
        _ => name.clone(),
    };
    let mut attributes = Vec::with_capacity(4);
    attributes.push(s("network.transport", "tcp"));
    if let Some(ip) = flow.ip.as_ref() {
        attributes.push(s("network.peer.address", ip.destination.as_str()));
    }
    let at = clamp_ns(now);
    SpanRecord {
        resource: latest.resource.clone(),
        trace_id: latest.trace_id,
        span_id: ids.span_id(),
        parent_span_id: Some(latest.span_id),
        flags: (latest.flags & 0xff) | HAS_IS_REMOTE,
        kind: Kind::Internal,
        name,
        start_ns: at,
        end_ns: at,
        attributes,
        events: vec![event],
        dropped_events: 0,
        status: SpanStatus::Error(message),
    }
}

fn policy_denied(flow: &Flow) -> bool {
    flow.drop_reason_desc == DropReason::PolicyDenied as i32
        || flow.drop_reason_desc == DropReason::PolicyDeny as i32
        || !flow.egress_denied_by.is_empty()
        || !flow.ingress_denied_by.is_empty()
}

fn ports(flow: &Flow) -> Option<(u16, u16)> {
    match flow.l4.as_ref()?.protocol.as_ref()? {
        layer4::Protocol::Tcp(t) => Some((
            u16::try_from(t.source_port).ok()?,
            u16::try_from(t.destination_port).ok()?,
        )),
        _ => None,
    }
}

fn conn_key(flow: &Flow, direction: i32) -> Option<ConnKey> {
    let ip = flow.ip.as_ref()?;
    let (sport, dport) = ports(flow)?;
    let src = SocketAddr::new(ip.source.parse::<IpAddr>().ok()?, sport);
    let dst = SocketAddr::new(ip.destination.parse::<IpAddr>().ok()?, dport);
    let (a, b) = if src <= dst { (src, dst) } else { (dst, src) };
    let mut h = std::hash::DefaultHasher::new();
    flow.node_name.hash(&mut h);
    Some(ConnKey {
        node: h.finish(),
        direction,
        a,
        b,
    })
}

fn workload_of(ep: Option<&Endpoint>, ip: &str, node: &str) -> Workload {
    // Hubble's node names may be `cluster/node`; Kubernetes knows the node by the last part.
    let node = node.rsplit('/').next().unwrap_or(node).to_string();
    let Some(ep) = ep else {
        return Workload {
            service: ip.to_string(),
            node,
            ..Default::default()
        };
    };
    let (workload, kind) = ep
        .workloads
        .first()
        .map_or(("", ""), |w| (w.name.as_str(), w.kind.as_str()));
    let label = |prefix: &str| {
        ep.labels
            .iter()
            .find_map(|l| l.strip_prefix(prefix).map(|_| l.as_str()))
    };
    let service = if !workload.is_empty() {
        workload.to_string()
    } else if !ep.pod_name.is_empty() {
        ep.pod_name.clone()
    } else if let Some(app) = ep.labels.iter().find_map(|l| l.strip_prefix("k8s:app=")) {
        app.to_string()
    } else if let Some(reserved) = label("reserved:") {
        reserved.to_string()
    } else {
        ip.to_string()
    };
    Workload {
        service,
        namespace: ep.namespace.clone(),
        pod: ep.pod_name.clone(),
        node,
        workload: workload.to_string(),
        workload_kind: kind.to_string(),
    }
}

/// The parts of an L7 flow's URL (`http://authority/path?query`) the conventions name.
struct UrlParts<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<u16>,
    path: &'a str,
    query: Option<&'a str>,
    /// Byte range of the userinfo (`user:pass@`), if any.
    userinfo: Option<(usize, usize)>,
}

impl<'a> UrlParts<'a> {
    fn parse(url: &'a str) -> Self {
        let (scheme, rest, rest_at) = match url.find("://") {
            Some(n) => (&url[..n], &url[n + 3..], n + 3),
            None => ("http", url, 0),
        };
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let mut authority = &rest[..auth_end];
        let mut userinfo = None;
        if let Some(at) = authority.rfind('@') {
            userinfo = Some((rest_at, rest_at + at + 1));
            authority = &authority[at + 1..];
        }
        let (host, port) = split_host_port(authority);
        let tail = &rest[auth_end..];
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (tail, None),
        };
        UrlParts {
            scheme: if scheme.is_empty() { "http" } else { scheme },
            host,
            port,
            path: if path.is_empty() { "/" } else { path },
            query,
            userinfo,
        }
    }

    /// `url.full` must not carry credentials: they become `REDACTED:REDACTED`.
    fn full_without_credentials(&self, url: &str) -> String {
        match self.userinfo {
            Some((from, to)) => format!("{}REDACTED:REDACTED@{}", &url[..from], &url[to..]),
            None => url.to_string(),
        }
    }
}

fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (authority, None),
    }
}

fn hex16(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    hex_into(s, &mut out).then_some(out)
}

fn hex8(s: &str) -> Option<[u8; 8]> {
    let mut out = [0u8; 8];
    hex_into(s, &mut out).then_some(out)
}

fn hex_into(s: &str, out: &mut [u8]) -> bool {
    let b = s.as_bytes();
    if b.len() != out.len() * 2 {
        return false;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        match (nib(pair[0]), nib(pair[1])) {
            (Some(h), Some(l)) => *o = h << 4 | l,
            _ => return false,
        }
    }
    true
}

fn clamp_ns(ns: i128) -> u64 {
    u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;

//! HTTP/1.x from captured payload → Hubble L7 flows (REQUEST and RESPONSE), the way Hubble's
//! L7 parser fills them (notes/hubble-api.md §2.4, §2.6).
//!
//! Input is the stream of L3/L4 flows whose `FlowExtras.payload` holds the bytes the agent
//! captured, starting at the L4 payload (`CapturedPayload.offset` is relative to it). The agent
//! captures the packet that starts an HTTP head and, while the head is incomplete, a few
//! continuation segments; bodies are not captured past the head's packet.
//!
//! - A connection is keyed by node, interface and the 5-tuple; both directions share it.
//!   Requests wait in a FIFO (pipelining, keep-alive) until the next final response in the
//!   other direction pairs with the oldest; `1xx` (other than `101`) never pairs.
//! - A head split over segments is reassembled by TCP sequence number, bounded per direction;
//!   over the bound it is counted and skipped, never guessed.
//! - Bytes that do not parse as an HTTP/1.x head are counted as not-HTTP and produce nothing.
//! - Several messages in one packet (pipelining) are found by skipping each body by its
//!   framing (`Content-Length`, chunked; none after `HEAD`, `204`, `304`, `1xx`).
//! - `Connection: close` (or HTTP/1.0 without keep-alive) ends the connection after the
//!   response; `101` and a successful `CONNECT` end HTTP on it.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;

use httparse::Status;
use lru::LruCache;
use webb_proto::Timestamp;
use webb_proto::flow::{
    CiliumEventType, Flow, FlowType, Http, HttpHeader, L7FlowType, Layer4, Layer7, Tcp,
    TraceContext, TraceParent, TrafficDirection, Verdict, layer4, layer7,
};
use webb_proto::summary;
use webb_proto::webb_v1::CapturedPayload;

pub use httparse::Header;

use crate::privacy::{HeaderRule, Redaction};
use crate::traceparent::{TraceId, trace_id};

/// `Flow.event_type.type` of L7 records (Cilium's AccessLog message type).
pub const EVENT_TYPE_L7: i32 = 129;

/// Headers one message may have; more is counted as too large.
const MAX_HEADERS: usize = 128;
/// Longest method token accepted before the bytes are called not-HTTP.
const MAX_METHOD_LEN: usize = 24;

/// Limits and privacy settings of the HTTP stage.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Bytes of one head under reassembly, per connection and direction.
    pub max_head_bytes: usize,
    /// Connections tracked at once (least recently used evicted first).
    pub max_connections: usize,
    /// A connection with no packet for this long is forgotten (nanoseconds of flow time).
    pub idle_timeout_ns: u64,
    /// Requests waiting for responses on one connection.
    pub max_pending: usize,
    pub redaction: Redaction,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_head_bytes: 16 << 10,
            max_connections: 65536,
            idle_timeout_ns: 120_000_000_000,
            max_pending: 64,
            redaction: Redaction::default(),
        }
    }
}

/// What the HTTP stage saw and what it had to give up on. Every field that is not a plain
/// count of messages is a loss or a skip, counted where it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Request heads parsed (one L7 REQUEST flow each).
    pub requests: u64,
    /// Final responses paired with a request (one L7 RESPONSE flow each).
    pub responses: u64,
    /// `1xx` interim responses seen (no flow, the request keeps waiting).
    pub informational: u64,
    /// Payloads on TCP that are not HTTP/1.x.
    pub not_http: u64,
    /// Heads over `max_head_bytes` or with more than 128 headers: skipped.
    pub too_large: u64,
    /// Heads abandoned before completion (a segment missing).
    pub incomplete: u64,
    /// Retransmitted heads ignored.
    pub retransmits: u64,
    /// Continuation segments with no head under reassembly.
    pub orphan_segments: u64,
    /// Responses with no request waiting (connection seen from the middle, or lost request).
    pub unmatched_responses: u64,
    /// Requests that never got a response (connection closed, evicted, or queue full).
    pub unanswered_requests: u64,
    /// Connections forgotten after `idle_timeout_ns`.
    pub evicted_idle: u64,
    /// Connections evicted because the table was full.
    pub evicted_full: u64,
    /// Payload on connections that left HTTP (`101`, `CONNECT`).
    pub tunneled: u64,
}

impl HttpStats {
    /// Messages or connection state lost (not counting not-HTTP bytes, which are no loss).
    pub fn lost(&self) -> u64 {
        self.too_large
            + self.incomplete
            + self.unmatched_responses
            + self.unanswered_requests
            + self.evicted_full
    }
}

/// One connection as seen at one observation point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnKey {
    node: u64,
    ifindex: u32,
    /// The lower of the two endpoints, so both directions share the key.
    a: SocketAddr,
    b: SocketAddr,
}

impl Hash for ConnKey {
    /// The same fields as a derived hash, in fewer and wider writes: the derived one hashed
    /// each part of both socket addresses separately, several times the cost of the lookup.
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.node);
        h.write_u32(self.ifindex);
        for addr in [self.a, self.b] {
            match addr.ip() {
                IpAddr::V4(ip) => {
                    h.write_u64(u64::from(ip.to_bits()) << 16 | u64::from(addr.port()))
                }
                IpAddr::V6(ip) => {
                    h.write_u128(ip.to_bits());
                    h.write_u16(addr.port());
                }
            }
        }
    }
}

#[derive(Debug)]
struct Assembly {
    /// Stream position of `buf[0]`.
    start: u32,
    buf: Vec<u8>,
    /// Segments that arrived ahead of a gap: (offset from `start`, bytes).
    ahead: Vec<(usize, Vec<u8>)>,
    /// The flow of the first segment: time and endpoints of the message.
    first: Flow,
}

impl Assembly {
    fn bytes(&self) -> usize {
        self.buf.len() + self.ahead.iter().map(|(_, b)| b.len()).sum::<usize>()
    }
}

#[derive(Debug, Default)]
struct Half {
    /// Boxed: rare, and it holds a whole `Flow`, which would otherwise be moved on every take.
    assembly: Option<Box<Assembly>>,
    /// Stream position just past the last head consumed (retransmits start before it).
    next: Option<u32>,
}

/// A request waiting for its response: what the response's flow repeats of it. Only the URL
/// is on the heap, in a buffer the stage reuses.
#[derive(Debug)]
struct Pending {
    client: SocketAddr,
    method: Method,
    url: String,
    trace_id: Option<TraceId>,
    time_ns: i128,
    direction: i32,
    close: bool,
}

/// A request method, inline: [`parse`] calls a head whose method is longer than
/// `MAX_METHOD_LEN` not-HTTP, so every method fits.
#[derive(Debug, Clone, Copy)]
struct Method {
    len: u8,
    bytes: [u8; MAX_METHOD_LEN],
}

impl Method {
    fn new(method: &str) -> Self {
        let n = method.len().min(MAX_METHOD_LEN);
        let mut bytes = [0u8; MAX_METHOD_LEN];
        bytes[..n].copy_from_slice(&method.as_bytes()[..n]);
        Method {
            len: n as u8,
            bytes,
        }
    }

    fn as_str(&self) -> &str {
        // A method is a token (ASCII), so any prefix of it is UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// URL buffers kept for reuse (each at most `MAX_SPARE_URL` bytes of capacity), so that a
/// request waiting for its response allocates nothing in the steady state.
const MAX_SPARE_URLS: usize = 64;
const MAX_SPARE_URL: usize = 2048;

/// A request as parsed, borrowed from the captured bytes: what a REQUEST flow is made of.
#[derive(Debug)]
pub struct Request<'a> {
    /// Time of the packet that started the head.
    pub time_ns: i128,
    pub method: &'a str,
    /// `http://host/path`, with the password and (if configured) query redacted.
    pub url: &'a str,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub protocol: &'static str,
    /// As sent: names in any case, raw values. What of them may be published is
    /// `redaction`'s call ([`Redaction::header_rule`]).
    pub headers: &'a [Header<'a>],
    pub redaction: &'a Redaction,
    /// From a valid `traceparent` header.
    pub trace_id: Option<TraceId>,
}

/// A final response paired with the oldest request waiting on its connection: what a RESPONSE
/// flow is made of.
#[derive(Debug)]
pub struct Response<'a> {
    pub time_ns: i128,
    pub code: u16,
    pub protocol: &'static str,
    /// As sent, like [`Request::headers`].
    pub headers: &'a [Header<'a>],
    pub redaction: &'a Redaction,
    /// Response time − request time.
    pub latency_ns: u64,
    /// The request's method, URL and trace id.
    pub method: &'a str,
    pub url: &'a str,
    pub trace_id: Option<TraceId>,
    /// Traffic direction of the request's packet (the response's flow repeats it, as Hubble's
    /// do).
    pub request_direction: i32,
}

/// Where parsed and paired messages go, in stream order. `packet` is the flow of the packet
/// that carried the start of the message's head.
pub trait MessageSink {
    fn request(&mut self, packet: &Flow, request: &Request<'_>);
    fn response(&mut self, packet: &Flow, response: &Response<'_>);
}

#[derive(Debug, Default)]
struct Conn {
    /// Index 0: bytes sent by `a`; 1: by `b`.
    halves: [Half; 2],
    pending: VecDeque<Pending>,
    last_ns: i128,
    tunneled: bool,
}

/// A packet's place in a connection.
struct Packet {
    key: ConnKey,
    half: usize,
    src: SocketAddr,
    dst: SocketAddr,
    time_ns: i128,
}

/// The HTTP stage: parses and pairs messages (its connection table) and makes Hubble L7 flows
/// of them. Feed it flows in time order.
#[derive(Debug)]
pub struct HttpStage {
    table: Table,
    ids: FlowIds,
}

impl HttpStage {
    pub fn new(config: HttpConfig) -> Self {
        HttpStage {
            table: Table::new(config),
            ids: FlowIds::new(),
        }
    }

    pub fn stats(&self) -> &HttpStats {
        &self.table.stats
    }

    /// Connections currently tracked.
    pub fn connections(&self) -> usize {
        self.table.conns.len()
    }

    /// Looks at one packet flow and its captured payload; appends the L7 flows it completes
    /// to `out`. Never panics, whatever the bytes.
    pub fn observe(&mut self, packet: &Flow, payload: &CapturedPayload, out: &mut Vec<Flow>) {
        let mut flows = Flows {
            out,
            ids: &mut self.ids,
        };
        self.table.observe(packet, payload, &mut flows);
    }

    /// Like [`HttpStage::observe`], but hands the parsed and paired messages to `sink` instead
    /// of making flows of them.
    pub fn pair(&mut self, packet: &Flow, payload: &CapturedPayload, sink: &mut impl MessageSink) {
        self.table.observe(packet, payload, sink);
    }

    /// Sees a packet without payload: a client's SYN starts a new connection on the 5-tuple,
    /// so state left from an earlier one (never closed in view) is dropped.
    pub fn tcp_control(&mut self, packet: &Flow) {
        self.table.tcp_control(packet);
    }

    /// Forgets connections idle since before `now_ns − idle_timeout` (flow time). Call it
    /// periodically when no flows arrive.
    pub fn expire(&mut self, now_ns: i128) {
        self.table.expire(now_ns);
    }
}

/// Connections and what is pending on them: parsing and pairing, without making flows.
struct Table {
    config: HttpConfig,
    conns: LruCache<ConnKey, Conn>,
    stats: HttpStats,
    /// Hashes node names into connection keys.
    node_hasher: lru::DefaultHasher,
    /// URL buffers to reuse (see `MAX_SPARE_URLS`).
    urls: Vec<String>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("connections", &self.conns.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Table {
    fn new(config: HttpConfig) -> Self {
        let cap = NonZeroUsize::new(config.max_connections.max(1)).unwrap_or(NonZeroUsize::MIN);
        Table {
            config: HttpConfig {
                redaction: config.redaction.clone().normalized(),
                ..config
            },
            conns: LruCache::new(cap),
            stats: HttpStats::default(),
            node_hasher: lru::DefaultHasher::default(),
            urls: Vec::new(),
        }
    }

    fn observe(&mut self, packet: &Flow, payload: &CapturedPayload, sink: &mut impl MessageSink) {
        if payload.data.is_empty() {
            return;
        }
        let Some(p) = packet_of(packet, &self.node_hasher) else {
            return;
        };
        self.expire(p.time_ns);
        if !self.conns.contains(&p.key) {
            if payload.continuation {
                self.stats.orphan_segments += 1;
                return;
            }
            if let Some((_, old)) = self.conns.push(p.key, Conn::default()) {
                self.stats.evicted_full += 1;
                self.stats.unanswered_requests += old.pending.len() as u64;
            }
        }
        let Self {
            config,
            conns,
            stats,
            node_hasher: _,
            urls,
        } = self;
        let Some(conn) = conns.get_mut(&p.key) else {
            return;
        };
        conn.last_ns = conn.last_ns.max(p.time_ns);
        if conn.tunneled {
            stats.tunneled += 1;
            return;
        }
        let mut cx = Cx {
            config,
            stats,
            urls,
            sink,
        };
        let pos = payload.seq.wrapping_add(payload.offset);
        let close = if payload.continuation {
            cx.continuation(conn, &p, pos, &payload.data)
        } else {
            cx.head_start(conn, &p, packet, pos, &payload.data)
        };
        if close && let Some(conn) = self.conns.pop(&p.key) {
            self.stats.unanswered_requests += conn.pending.len() as u64;
        }
    }

    fn tcp_control(&mut self, packet: &Flow) {
        let syn = match packet.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
            Some(layer4::Protocol::Tcp(t)) => t.flags.as_ref().is_some_and(|f| f.syn && !f.ack),
            _ => false,
        };
        if !syn {
            return;
        }
        if let Some(p) = packet_of(packet, &self.node_hasher)
            && let Some(old) = self.conns.pop(&p.key)
        {
            self.stats.unanswered_requests += old.pending.len() as u64;
        }
    }

    fn expire(&mut self, now_ns: i128) {
        let horizon = now_ns - i128::from(self.config.idle_timeout_ns);
        while let Some((_, conn)) = self.conns.peek_lru() {
            if conn.last_ns >= horizon {
                break;
            }
            if let Some((_, conn)) = self.conns.pop_lru() {
                self.stats.evicted_idle += 1;
                self.stats.unanswered_requests += conn.pending.len() as u64;
            }
        }
    }
}

/// Borrowed parts of the stage while one packet is processed.
struct Cx<'a, S> {
    config: &'a HttpConfig,
    stats: &'a mut HttpStats,
    urls: &'a mut Vec<String>,
    sink: &'a mut S,
}

/// How a message's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (or a tunnel): nothing after it is HTTP in this packet.
    Rest,
}

enum Parsed<'h, 'b> {
    Request {
        method: &'b str,
        target: &'b str,
        version: u8,
        headers: &'h [Header<'b>],
        len: usize,
    },
    Response {
        version: u8,
        code: u16,
        headers: &'h [Header<'b>],
        len: usize,
    },
}

enum Outcome<'h, 'b> {
    Complete(Parsed<'h, 'b>),
    Partial,
    NotHttp,
    TooManyHeaders,
}

/// Header slots for one parse; left uninitialised (httparse writes what it returns), which
/// saves clearing 4 KiB per message.
type Slots<'b> = [MaybeUninit<Header<'b>>; MAX_HEADERS];

fn slots<'b>() -> Slots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

fn parse<'h, 'b>(buf: &'b [u8], storage: &'h mut Slots<'b>) -> Outcome<'h, 'b> {
    const PREFIX: &[u8] = b"HTTP/";
    let n = buf.len().min(PREFIX.len());
    if buf[..n] == PREFIX[..n] {
        let mut resp = httparse::Response::new(&mut []);
        return match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, storage)
        {
            Ok(Status::Complete(len)) => Outcome::Complete(Parsed::Response {
                version: resp.version.unwrap_or(1),
                code: resp.code.unwrap_or(0),
                headers: resp.headers,
                len,
            }),
            Ok(Status::Partial) => Outcome::Partial,
            Err(httparse::Error::TooManyHeaders) => Outcome::TooManyHeaders,
            Err(_) => Outcome::NotHttp,
        };
    }
    // A method is a short token followed by a space; anything else is not HTTP, even if
    // httparse would still wait for more bytes.
    match buf.iter().take(MAX_METHOD_LEN + 1).position(|&c| c == b' ') {
        Some(0) => return Outcome::NotHttp,
        None if buf.len() > MAX_METHOD_LEN => return Outcome::NotHttp,
        _ => {}
    }
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, storage) {
        Ok(Status::Complete(len)) => Outcome::Complete(Parsed::Request {
            method: req.method.unwrap_or(""),
            target: req.path.unwrap_or(""),
            version: req.version.unwrap_or(1),
            headers: req.headers,
            len,
        }),
        Ok(Status::Partial) => Outcome::Partial,
        Err(httparse::Error::TooManyHeaders) => Outcome::TooManyHeaders,
        Err(_) => Outcome::NotHttp,
    }
}

impl<S: MessageSink> Cx<'_, S> {
    /// A packet that starts a head. Returns whether the connection ends.
    fn head_start(
        &mut self,
        conn: &mut Conn,
        p: &Packet,
        packet: &Flow,
        pos: u32,
        data: &[u8],
    ) -> bool {
        let half = &mut conn.halves[p.half];
        if half.assembly.take().is_some() {
            self.stats.incomplete += 1;
        }
        if let Some(next) = half.next
            && (pos.wrapping_sub(next) as i32) < 0
        {
            self.stats.retransmits += 1;
            return false;
        }
        let mut storage = slots();
        match parse(data, &mut storage) {
            Outcome::Complete(parsed) => {
                self.messages(conn, p, packet, p.time_ns, pos, data, parsed)
            }
            Outcome::Partial => {
                if data.len() > self.config.max_head_bytes {
                    self.stats.too_large += 1;
                } else {
                    conn.halves[p.half].assembly = Some(Box::new(Assembly {
                        start: pos,
                        buf: data.to_vec(),
                        ahead: Vec::new(),
                        first: l7_base(packet),
                    }));
                }
                false
            }
            Outcome::NotHttp => {
                self.stats.not_http += 1;
                false
            }
            Outcome::TooManyHeaders => {
                self.stats.too_large += 1;
                false
            }
        }
    }

    /// A continuation segment of a head under reassembly. Returns whether the connection ends.
    fn continuation(&mut self, conn: &mut Conn, p: &Packet, pos: u32, data: &[u8]) -> bool {
        let max = self.config.max_head_bytes;
        let Some(asm) = conn.halves[p.half].assembly.as_mut() else {
            self.stats.orphan_segments += 1;
            return false;
        };
        let rel = pos.wrapping_sub(asm.start);
        if (rel as i32) < 0 {
            // Starts before the head: a retransmit of what we have.
            self.stats.retransmits += 1;
            return false;
        }
        let offset = rel as usize;
        if offset > asm.buf.len() {
            // Ahead of a gap: keep it until the gap fills, within the same bound.
            if offset >= max || asm.bytes() + data.len() > max {
                conn.halves[p.half].assembly = None;
                self.stats.too_large += 1;
            } else {
                asm.ahead.push((offset, data.to_vec()));
            }
            return false;
        }
        append_at(&mut asm.buf, offset, data);
        // Segments that waited for this one.
        asm.ahead.sort_by_key(|(o, _)| *o);
        while let Some((o, _)) = asm.ahead.first() {
            if *o > asm.buf.len() {
                break;
            }
            let (o, seg) = asm.ahead.remove(0);
            append_at(&mut asm.buf, o, &seg);
        }
        if asm.buf.len() > max {
            conn.halves[p.half].assembly = None;
            self.stats.too_large += 1;
            return false;
        }
        // Taken out while parsing; put back only if the head is still incomplete.
        let Some(asm) = conn.halves[p.half].assembly.take() else {
            return false;
        };
        let mut storage = slots();
        match parse(&asm.buf, &mut storage) {
            Outcome::Complete(parsed) => {
                // The message belongs to the first segment's packet: its time and endpoints.
                let time = asm.first.time.map_or(p.time_ns, |t| t.unix_nanos());
                self.messages(conn, p, &asm.first, time, asm.start, &asm.buf, parsed)
            }
            Outcome::Partial => {
                conn.halves[p.half].assembly = Some(asm);
                false
            }
            Outcome::NotHttp => {
                self.stats.not_http += 1;
                false
            }
            Outcome::TooManyHeaders => {
                self.stats.too_large += 1;
                false
            }
        }
    }

    /// Emits the first parsed message of `data` and any further complete ones after it.
    #[allow(clippy::too_many_arguments)]
    fn messages(
        &mut self,
        conn: &mut Conn,
        p: &Packet,
        packet: &Flow,
        time_ns: i128,
        pos: u32,
        data: &[u8],
        first: Parsed<'_, '_>,
    ) -> bool {
        let mut consumed = self.message(conn, p, packet, time_ns, first, data, 0);
        loop {
            let Some(at) = consumed else { return false };
            if at == usize::MAX {
                return true;
            }
            conn.halves[p.half].next = Some(pos.wrapping_add(at as u32));
            let rest = &data[at.min(data.len())..];
            if rest.is_empty() || conn.tunneled {
                return false;
            }
            let mut storage = slots();
            match parse(rest, &mut storage) {
                Outcome::Complete(parsed) => {
                    consumed = self
                        .message(conn, p, packet, time_ns, parsed, data, at)
                        .map(|n| if n == usize::MAX { n } else { at + n });
                }
                // The next head continues in a later packet, which the agent flags as a
                // continuation of this one: start reassembly with what is here.
                Outcome::Partial => {
                    if rest.len() <= self.config.max_head_bytes {
                        conn.halves[p.half].assembly = Some(Box::new(Assembly {
                            start: pos.wrapping_add(at as u32),
                            buf: rest.to_vec(),
                            ahead: Vec::new(),
                            first: l7_base(packet),
                        }));
                    }
                    return false;
                }
                Outcome::NotHttp => {
                    self.stats.not_http += 1;
                    return false;
                }
                Outcome::TooManyHeaders => {
                    self.stats.too_large += 1;
                    return false;
                }
            }
        }
    }

    /// Emits one message found at `data[at..]`. Returns how many bytes of `data[at..]` it
    /// spans including its body (`None`: the body runs past the capture; `usize::MAX`: the
    /// connection ends).
    #[allow(clippy::too_many_arguments)]
    fn message(
        &mut self,
        conn: &mut Conn,
        p: &Packet,
        packet: &Flow,
        time_ns: i128,
        parsed: Parsed<'_, '_>,
        data: &[u8],
        at: usize,
    ) -> Option<usize> {
        let (head_len, body) = match parsed {
            Parsed::Request {
                method,
                target,
                version,
                headers,
                len,
            } => {
                let fields = Fields::of(headers);
                self.request(
                    conn, p, packet, time_ns, method, target, version, headers, &fields,
                );
                (len, request_body(&fields))
            }
            Parsed::Response {
                version,
                code,
                headers,
                len,
            } => {
                let fields = Fields::of(headers);
                match self.response(conn, p, packet, time_ns, version, code, headers, &fields) {
                    Some(Reply::Close) => return Some(usize::MAX),
                    Some(Reply::Body(body)) => (len, body),
                    None => (len, response_body(code, "", &fields)),
                }
            }
        };
        let rest = data.get(at + head_len..).unwrap_or(&[]);
        skip_body(rest, body).map(|n| head_len + n)
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        conn: &mut Conn,
        p: &Packet,
        packet: &Flow,
        time_ns: i128,
        method: &str,
        target: &str,
        version: u8,
        headers: &[Header<'_>],
        fields: &Fields<'_>,
    ) {
        self.stats.requests += 1;
        let redaction = &self.config.redaction;
        let host = fields
            .host
            .and_then(|h| std::str::from_utf8(h).ok())
            .map(str::trim)
            .filter(|h| !h.is_empty());
        let mut url = self.urls.pop().unwrap_or_default();
        request_url(&mut url, target, host, p.dst);
        redaction.redact_url(&mut url);
        let trace_id = fields.traceparent.and_then(trace_id);
        let protocol = protocol(version);
        self.sink.request(
            packet,
            &Request {
                time_ns,
                method,
                url: &url,
                protocol,
                headers,
                redaction,
                trace_id,
            },
        );

        if conn.pending.len() >= self.config.max_pending.max(1) {
            if let Some(old) = conn.pending.pop_front() {
                recycle(self.urls, old.url);
            }
            self.stats.unanswered_requests += 1;
        }
        conn.pending.push_back(Pending {
            client: p.src,
            method: Method::new(method),
            url,
            trace_id,
            time_ns,
            direction: packet.traffic_direction,
            close: wants_close(version, fields),
        });
    }

    /// Pairs a response with the oldest waiting request and emits it. `None` when nothing
    /// was waiting (counted).
    #[allow(clippy::too_many_arguments)]
    fn response(
        &mut self,
        conn: &mut Conn,
        p: &Packet,
        packet: &Flow,
        time_ns: i128,
        version: u8,
        code: u16,
        headers: &[Header<'_>],
        fields: &Fields<'_>,
    ) -> Option<Reply> {
        if (100..200).contains(&code) && code != 101 {
            self.stats.informational += 1;
            return Some(Reply::Body(Body::None));
        }
        if conn.pending.front().is_none_or(|r| r.client != p.dst) {
            self.stats.unmatched_responses += 1;
            return None;
        }
        let req = conn.pending.pop_front()?;
        self.stats.responses += 1;
        let latency_ns = u64::try_from(time_ns - req.time_ns).unwrap_or(0);
        let method = req.method.as_str();

        let success = (200..300).contains(&code);
        let reply = if code == 101 || (success && method.eq_ignore_ascii_case("CONNECT")) {
            conn.tunneled = true;
            Reply::Body(Body::Rest)
        } else if req.close || wants_close(version, fields) {
            Reply::Close
        } else {
            Reply::Body(response_body(code, method, fields))
        };
        self.sink.response(
            packet,
            &Response {
                time_ns,
                code,
                protocol: protocol(version),
                headers,
                redaction: &self.config.redaction,
                latency_ns,
                method,
                url: &req.url,
                trace_id: req.trace_id,
                request_direction: req.direction,
            },
        );
        recycle(self.urls, req.url);
        Some(reply)
    }
}

/// Keeps `url`'s buffer for the next request, within `MAX_SPARE_URLS`.
fn recycle(urls: &mut Vec<String>, mut url: String) {
    if urls.len() < MAX_SPARE_URLS && url.capacity() <= MAX_SPARE_URL {
        url.clear();
        urls.push(url);
    }
}

/// Makes Hubble L7 flows of the messages ([`HttpStage::observe`]).
struct Flows<'a> {
    out: &'a mut Vec<Flow>,
    ids: &'a mut FlowIds,
}

impl Flows<'_> {
    /// A new L7 flow of `packet`'s connection with what requests and responses both set, built
    /// in place: a Flow is large, and moving it into the vector would copy it.
    fn push(
        &mut self,
        packet: &Flow,
        time_ns: i128,
        is_reply: bool,
        trace_id: Option<TraceId>,
    ) -> &mut Flow {
        let at = self.out.len();
        self.out.push(l7_base(packet));
        let flow = &mut self.out[at];
        flow.time = Some(timestamp(time_ns));
        flow.uuid = self.ids.next();
        flow.is_reply = Some(is_reply.into());
        flow.trace_context = trace_context(trace_id);
        flow
    }
}

impl MessageSink for Flows<'_> {
    fn request(&mut self, packet: &Flow, r: &Request<'_>) {
        let flow = self.push(packet, r.time_ns, false, r.trace_id);
        let mut summary =
            String::with_capacity(r.protocol.len() + r.method.len() + r.url.len() + 2);
        summary::http_request_into(r.protocol, r.method, r.url, &mut summary);
        flow.summary = summary;
        flow.l7 = Some(Layer7 {
            r#type: L7FlowType::Request as i32,
            latency_ns: 0,
            record: Some(layer7::Record::Http(Http {
                code: 0,
                method: r.method.to_owned(),
                url: r.url.to_owned(),
                protocol: r.protocol.to_owned(),
                headers: out_headers(r.headers, r.redaction),
            })),
        });
    }

    fn response(&mut self, packet: &Flow, r: &Response<'_>) {
        let mut summary =
            String::with_capacity(r.protocol.len() + r.method.len() + r.url.len() + 24);
        summary::http_response_into(
            r.protocol,
            u32::from(r.code),
            r.latency_ns,
            r.method,
            r.url,
            &mut summary,
        );
        let flow = self.push(packet, r.time_ns, true, r.trace_id);
        flow.traffic_direction = r.request_direction;
        flow.summary = summary;
        flow.l7 = Some(Layer7 {
            r#type: L7FlowType::Response as i32,
            latency_ns: r.latency_ns,
            record: Some(layer7::Record::Http(Http {
                code: u32::from(r.code),
                method: r.method.to_owned(),
                url: r.url.to_owned(),
                protocol: r.protocol.to_owned(),
                headers: out_headers(r.headers, r.redaction),
            })),
        });
    }
}

enum Reply {
    Body(Body),
    Close,
}

/// Writes `seg` (which starts at `offset` ≤ `buf.len()`) onto the end of `buf`, skipping what
/// `buf` already has (overlapping retransmits).
fn append_at(buf: &mut Vec<u8>, offset: usize, seg: &[u8]) {
    let have = buf.len().saturating_sub(offset);
    if let Some(new) = seg.get(have..) {
        buf.extend_from_slice(new);
    }
}

/// What the stage reads of a head's headers, found in one pass over them (names compared
/// by length first: most headers are none of these).
#[derive(Debug, Default)]
struct Fields<'b> {
    /// The first of each.
    host: Option<&'b [u8]>,
    traceparent: Option<&'b [u8]>,
    content_length: Option<&'b [u8]>,
    /// `Connection` tokens.
    close: bool,
    keep_alive: bool,
    /// `Transfer-Encoding: chunked` (chunked must be the last coding; its presence is enough
    /// to frame).
    chunked: bool,
}

impl<'b> Fields<'b> {
    fn of(headers: &[Header<'b>]) -> Self {
        let mut f = Fields::default();
        for h in headers {
            let name = h.name.as_bytes();
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            match name.len() {
                4 if is("host") => {
                    f.host.get_or_insert(h.value);
                }
                10 if is("connection") => {
                    f.close |= has_token(h.value, b"close");
                    f.keep_alive |= has_token(h.value, b"keep-alive");
                }
                11 if is("traceparent") => {
                    f.traceparent.get_or_insert(h.value);
                }
                14 if is("content-length") => {
                    f.content_length.get_or_insert(h.value);
                }
                17 if is("transfer-encoding") => f.chunked |= has_token(h.value, b"chunked"),
                _ => {}
            }
        }
        f
    }
}

/// Whether a comma-separated header value lists `token` (any case).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&c| c == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

fn wants_close(version: u8, fields: &Fields<'_>) -> bool {
    if version == 0 {
        !fields.keep_alive
    } else {
        fields.close
    }
}

fn content_length(fields: &Fields<'_>) -> Option<u64> {
    std::str::from_utf8(fields.content_length?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn request_body(fields: &Fields<'_>) -> Body {
    if fields.chunked {
        Body::Chunked
    } else {
        content_length(fields).map_or(Body::None, Body::Length)
    }
}

fn response_body(code: u16, method: &str, fields: &Fields<'_>) -> Body {
    if (100..200).contains(&code) || code == 204 || code == 304 || method == "HEAD" {
        Body::None
    } else if fields.chunked {
        Body::Chunked
    } else {
        content_length(fields).map_or(Body::Rest, Body::Length)
    }
}

/// Bytes of `rest` the body spans, or `None` when it runs past the captured bytes.
fn skip_body(rest: &[u8], body: Body) -> Option<usize> {
    match body {
        Body::None => Some(0),
        Body::Length(n) => usize::try_from(n).ok().filter(|&n| n <= rest.len()),
        Body::Rest => None,
        Body::Chunked => {
            let mut i = 0usize;
            loop {
                let (used, size) = match httparse::parse_chunk_size(rest.get(i..)?) {
                    Ok(Status::Complete(c)) => c,
                    _ => return None,
                };
                i = i.checked_add(used)?;
                if size == 0 {
                    // Trailer fields, then an empty line.
                    loop {
                        let line_end = rest.get(i..)?.windows(2).position(|w| w == b"\r\n")?;
                        i += line_end + 2;
                        if line_end == 0 {
                            return Some(i);
                        }
                    }
                }
                i = i.checked_add(usize::try_from(size).ok()?)?.checked_add(2)?;
                if i > rest.len() {
                    return None;
                }
            }
        }
    }
}

fn protocol(version: u8) -> &'static str {
    if version == 0 { "HTTP/1.0" } else { "HTTP/1.1" }
}

/// `http://host/path` from the request target and the `Host` header, else the destination,
/// written over `url`.
fn request_url(url: &mut String, target: &str, host: Option<&str>, dst: SocketAddr) {
    use std::fmt::Write;
    url.clear();
    let starts = |p: &str| {
        target
            .as_bytes()
            .get(..p.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(p.as_bytes()))
    };
    if starts("http://") || starts("https://") {
        url.push_str(target);
        return;
    }
    url.push_str("http://");
    let origin_form = target.starts_with('/');
    if !origin_form && target != "*" {
        // authority-form (CONNECT host:port)
        url.push_str(target);
        return;
    }
    match host {
        Some(host) => url.push_str(host),
        None => {
            let _ = write!(url, "{dst}");
        }
    }
    if origin_form {
        url.push_str(target);
    }
}

/// Headers as Hubble lists them: lower-case keys (as Envoy reports them), sorted by key,
/// values redacted or left out per the settings.
fn out_headers(headers: &[Header<'_>], redaction: &Redaction) -> Vec<HttpHeader> {
    // Sized up front: collecting a filter would grow the vector (and copy it) on the way.
    let mut out = Vec::with_capacity(headers.len());
    out.extend(headers.iter().filter_map(|h| {
        let value = match redaction.header_rule(h.name) {
            HeaderRule::Omit => return None,
            HeaderRule::Redact => crate::privacy::REDACTED.to_owned(),
            // Header values are almost always ASCII: check once, copy once.
            HeaderRule::Keep => match std::str::from_utf8(h.value) {
                Ok(v) => v.to_owned(),
                Err(_) => String::from_utf8_lossy(h.value).into_owned(),
            },
        };
        Some(HttpHeader {
            key: h.name.to_ascii_lowercase(),
            value,
        })
    }));
    out.sort_by(|x, y| x.key.cmp(&y.key));
    out
}

fn trace_context(trace_id: Option<TraceId>) -> Option<TraceContext> {
    trace_id.map(|id| TraceContext {
        parent: Some(TraceParent {
            trace_id: id.as_str().to_owned(),
        }),
    })
}

pub(crate) fn timestamp(ns: i128) -> Timestamp {
    Timestamp::from_unix_nanos(u64::try_from(ns.max(0)).unwrap_or(u64::MAX))
}

/// The fields an L7 flow takes from the packet that carried the message.
pub(crate) fn l7_base(packet: &Flow) -> Flow {
    let l4 = match packet.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(layer4::Protocol::Tcp(t)) => Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: t.source_port,
                destination_port: t.destination_port,
                flags: None,
            })),
        }),
        _ => None,
    };
    Flow {
        time: packet.time,
        verdict: Verdict::Forwarded as i32,
        ip: packet.ip.clone(),
        l4,
        source: packet.source.clone(),
        destination: packet.destination.clone(),
        r#type: FlowType::L7 as i32,
        node_name: packet.node_name.clone(),
        node_labels: packet.node_labels.clone(),
        source_names: packet.source_names.clone(),
        destination_names: packet.destination_names.clone(),
        source_service: packet.source_service.clone(),
        destination_service: packet.destination_service.clone(),
        event_type: Some(CiliumEventType {
            r#type: EVENT_TYPE_L7,
            sub_type: 0,
        }),
        traffic_direction: packet.traffic_direction,
        ..Default::default()
    }
}

fn packet_of(flow: &Flow, node_hasher: &impl BuildHasher) -> Option<Packet> {
    if flow.verdict != Verdict::Forwarded as i32 {
        return None;
    }
    let ip = flow.ip.as_ref()?;
    let src_ip: IpAddr = ip.source.parse().ok()?;
    let dst_ip: IpAddr = ip.destination.parse().ok()?;
    let Some(layer4::Protocol::Tcp(tcp)) = flow.l4.as_ref()?.protocol.as_ref() else {
        return None;
    };
    let (sp, dp) = (
        u16::try_from(tcp.source_port).ok()?,
        u16::try_from(tcp.destination_port).ok()?,
    );
    // DNS over TCP belongs to the DNS parser.
    if sp == 53 || dp == 53 {
        return None;
    }
    let src = SocketAddr::new(src_ip, sp);
    let dst = SocketAddr::new(dst_ip, dp);
    let (a, b, half) = if src <= dst {
        (src, dst, 0)
    } else {
        (dst, src, 1)
    };
    Some(Packet {
        key: ConnKey {
            node: node_hasher.hash_one(&flow.node_name),
            ifindex: flow.interface.as_ref().map_or(0, |i| i.index),
            a,
            b,
        },
        half,
        src,
        dst,
        time_ns: flow.time?.unix_nanos(),
    })
}

/// UUIDs of relay-made flows: version 8, a random per-process prefix and a sequence number.
#[derive(Debug)]
pub(crate) struct FlowIds {
    prefix: u64,
    seq: u64,
}

impl FlowIds {
    pub(crate) fn new() -> Self {
        use std::hash::BuildHasher;
        // RandomState is seeded per process; enough to keep two relays' ids apart.
        let prefix = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        FlowIds { prefix, seq: 0 }
    }

    pub(crate) fn next(&mut self) -> String {
        self.seq += 1;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.prefix.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        let mut buf = uuid::Uuid::encode_buffer();
        uuid::Builder::from_custom_bytes(b)
            .into_uuid()
            .hyphenated()
            .encode_lower(&mut buf)
            .to_owned()
    }
}

/// Fuzzing entry point: splits `data` into packets (each a control byte, a length byte and
/// that many bytes) on one connection, both directions, heads and continuations, and runs
/// them through a stage with small bounds. Never panics.
pub fn fuzz_http(data: &[u8]) {
    let mut stage = HttpStage::new(HttpConfig {
        max_head_bytes: 512,
        max_connections: 4,
        max_pending: 4,
        ..Default::default()
    });
    let mut out = Vec::new();
    let mut i = 0usize;
    let mut seq = [1000u32, 5000u32];
    let mut t = 1_000_000_000u64;
    while i + 2 <= data.len() {
        let (ctl, len) = (data[i], usize::from(data[i + 1]));
        i += 2;
        let end = (i + len).min(data.len());
        let bytes = &data[i..end];
        i = end;
        let dir = usize::from(ctl & 1);
        let continuation = ctl & 2 != 0;
        // Bits 2..4 move the sequence number back or ahead (retransmits, gaps).
        let jitter = i32::from((ctl >> 2) & 7) - 3;
        let pos = seq[dir].wrapping_add_signed(jitter * 8);
        let flow = test_packet(dir == 1, t, ctl & 0x80 != 0);
        let payload = CapturedPayload {
            data: bytes.to_vec(),
            seq: pos,
            continuation,
            ..Default::default()
        };
        stage.observe(&flow, &payload, &mut out);
        seq[dir] = pos.wrapping_add(bytes.len() as u32);
        t += u64::from(ctl & 0x70) * 1_000_000;
        out.clear();
    }
}

/// A TCP packet flow between 198.18.0.1:40000 (client) and 198.18.0.2:80 (server).
fn test_packet(from_server: bool, time_ns: u64, other_if: bool) -> Flow {
    use webb_proto::flow::{Ip, IpVersion, NetworkInterface};
    let (c, s) = ("198.18.0.1".to_string(), "198.18.0.2".to_string());
    let (src, dst, sp, dp) = if from_server {
        (s, c, 80, 40000)
    } else {
        (c, s, 40000, 80)
    };
    Flow {
        time: Some(Timestamp::from_unix_nanos(time_ns)),
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: src,
            destination: dst,
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: sp,
                destination_port: dp,
                flags: None,
            })),
        }),
        node_name: "vn1".into(),
        interface: Some(NetworkInterface {
            index: if other_if { 8 } else { 7 },
            name: String::new(),
        }),
        traffic_direction: TrafficDirection::Ingress as i32,
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;

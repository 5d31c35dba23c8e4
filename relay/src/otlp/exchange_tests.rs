//! The tracker, fed with what the real L7 stage makes of captured-payload packet flows.

use super::*;
use crate::l7::{HttpConfig, L7Stage};
use crate::privacy::Redaction;
use webb_proto::Timestamp;
use webb_proto::flow::{Ip, IpVersion, Layer4, NetworkInterface, Policy, Tcp, TcpFlags};
use webb_proto::webb_v1::{CapturedPayload, FlowExtras};

const CLIENT: (&str, u32) = ("198.18.1.10", 40312);
const SERVER: (&str, u32) = ("198.18.2.20", 8080);
const T0: u64 = 1_800_000_000_000_000_000;
const MS: u64 = 1_000_000;
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[derive(Clone, Copy, PartialEq)]
enum Side {
    /// The server's interface: the connection is INGRESS there.
    Server,
    /// The client's interface: EGRESS.
    Client,
}

/// One TCP connection seen at one interface, through the real L7 stage and the tracker.
struct Conn {
    side: Side,
    l7: L7Stage,
    tracker: Tracker,
    seq: [u32; 2],
    spans: Vec<SpanRecord>,
}

impl Conn {
    fn new(side: Side) -> Self {
        Self::with(side, ExchangeConfig::default(), HttpConfig::default())
    }

    fn with(side: Side, config: ExchangeConfig, http: HttpConfig) -> Self {
        Conn {
            side,
            l7: L7Stage::new(http),
            tracker: Tracker::new(config),
            seq: [1_000, 500_000],
            spans: Vec::new(),
        }
    }

    fn flow(&self, from_server: bool, t: u64, flags: TcpFlags, verdict: Verdict) -> Flow {
        let (src, dst) = if from_server {
            (SERVER, CLIENT)
        } else {
            (CLIENT, SERVER)
        };
        let ep = |a: (&str, u32)| {
            if a == SERVER {
                webb_proto::sample::pod("shop", "api-5c6b7-q8w7e", "api")
            } else {
                webb_proto::sample::pod("web", "frontend-7d4f9-x2x9k", "frontend")
            }
        };
        let (index, name, direction) = match self.side {
            Side::Server => (7, "lxc-api", TrafficDirection::Ingress),
            Side::Client => (5, "lxc-frontend", TrafficDirection::Egress),
        };
        Flow {
            time: Some(Timestamp::from_unix_nanos(t)),
            uuid: format!("agent-{t}"),
            verdict: verdict as i32,
            ip: Some(Ip {
                source: src.0.into(),
                destination: dst.0.into(),
                ip_version: IpVersion::IPv4 as i32,
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(layer4::Protocol::Tcp(Tcp {
                    source_port: src.1,
                    destination_port: dst.1,
                    flags: Some(flags),
                })),
            }),
            source: Some(ep(src)),
            destination: Some(ep(dst)),
            r#type: FlowType::L3L4 as i32,
            node_name: "kind/vn1".into(),
            interface: Some(NetworkInterface {
                index,
                name: name.into(),
            }),
            traffic_direction: direction as i32,
            ..Default::default()
        }
    }

    /// A packet carrying `bytes`, through the L7 stage into the tracker.
    fn send(&mut self, from_server: bool, t: u64, bytes: &[u8]) -> Vec<Flow> {
        let d = usize::from(from_server);
        let flags = TcpFlags {
            psh: true,
            ack: true,
            ..Default::default()
        };
        let mut f = self.flow(from_server, t, flags, Verdict::Forwarded);
        webb_proto::extras::attach(
            &mut f,
            Some(&FlowExtras {
                payload: Some(CapturedPayload {
                    data: bytes.to_vec(),
                    seq: self.seq[d],
                    original_length: bytes.len() as u32 + 66,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        );
        self.seq[d] = self.seq[d].wrapping_add(bytes.len() as u32);
        self.feed(f)
    }

    /// A packet without payload (control, drops).
    fn control(&mut self, from_server: bool, t: u64, flags: TcpFlags, verdict: Verdict) -> Flow {
        let f = self.flow(from_server, t, flags, verdict);
        self.feed(f.clone());
        f
    }

    fn feed(&mut self, f: Flow) -> Vec<Flow> {
        let mut out = Vec::new();
        self.l7.process(f, &mut out);
        for f in &out {
            self.tracker.observe(f, &mut self.spans);
        }
        out
    }

    fn take(&mut self) -> Vec<SpanRecord> {
        std::mem::take(&mut self.spans)
    }
}

fn traced_get(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: api.shop:8080\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\nuser-agent: curl/8\r\n\r\n"
    )
}

fn resp(code: u16) -> Vec<u8> {
    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

fn attr<'a>(span: &'a SpanRecord, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| &a.value)
}

fn str_attr<'a>(span: &'a SpanRecord, key: &str) -> Option<&'a str> {
    match attr(span, key) {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    }
}

fn int_attr(span: &SpanRecord, key: &str) -> Option<i64> {
    match attr(span, key) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn rst() -> TcpFlags {
    TcpFlags {
        rst: true,
        ..Default::default()
    }
}

#[test]
fn an_exchange_at_the_server_becomes_a_server_span_in_the_callers_trace() {
    let mut c = Conn::new(Side::Server);
    let req = c.send(false, T0, traced_get("/items/1?color=red").as_bytes());
    assert!(c.take().is_empty(), "no span before the response");
    let res = c.send(true, T0 + 51 * MS, &resp(200));
    let spans = c.take();
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(hex(&s.trace_id), TRACE);
    assert_eq!(s.parent_span_id.map(|p| hex(&p)).as_deref(), Some(PARENT));
    assert_ne!(s.span_id, [0; 8]);
    assert_eq!(s.kind, Kind::Server);
    assert_eq!(s.name, "GET /items/1");
    // Start and end are the request's and the response's flow times.
    assert_eq!(
        u128::from(s.start_ns),
        req[1].time.unwrap().unix_nanos() as u128
    );
    assert_eq!(
        u128::from(s.end_ns),
        res[1].time.unwrap().unix_nanos() as u128
    );
    assert_eq!(s.end_ns - s.start_ns, 51 * MS);
    assert_eq!(s.flags, SAMPLED | HAS_IS_REMOTE | IS_REMOTE);
    assert_eq!(s.status, SpanStatus::Unset);
    assert_eq!(str_attr(s, "http.request.method"), Some("GET"));
    assert_eq!(str_attr(s, "url.path"), Some("/items/1"));
    assert_eq!(str_attr(s, "url.query"), Some("color=red"));
    assert_eq!(str_attr(s, "url.scheme"), Some("http"));
    assert_eq!(
        str_attr(s, "url.full"),
        None,
        "url.full is for client spans"
    );
    assert_eq!(int_attr(s, "http.response.status_code"), Some(200));
    assert_eq!(str_attr(s, "server.address"), Some("api.shop"));
    assert_eq!(int_attr(s, "server.port"), Some(8080));
    assert_eq!(str_attr(s, "client.address"), Some(CLIENT.0));
    assert_eq!(int_attr(s, "client.port"), Some(i64::from(CLIENT.1)));
    assert_eq!(str_attr(s, "network.peer.address"), Some(CLIENT.0));
    assert_eq!(str_attr(s, "network.protocol.version"), Some("1.1"));
    assert_eq!(str_attr(s, "user_agent.original"), Some("curl/8"));
    // The workload that served it, on the node without Hubble's cluster prefix.
    let w = &*s.resource;
    assert_eq!(
        (
            w.service.as_str(),
            w.namespace.as_str(),
            w.pod.as_str(),
            w.node.as_str()
        ),
        ("api", "shop", "api-5c6b7-q8w7e", "vn1")
    );
    assert_eq!(c.tracker.stats().exchanges, 1);
}

#[test]
fn an_exchange_at_the_client_becomes_a_client_span_of_the_sending_workload() {
    let mut c = Conn::new(Side::Client);
    c.send(false, T0, traced_get("/items/1").as_bytes());
    c.send(true, T0 + 3 * MS, &resp(404));
    let s = &c.take()[0];
    assert_eq!(s.kind, Kind::Client);
    assert_eq!(s.resource.service, "frontend");
    assert_eq!(s.resource.namespace, "web");
    assert_eq!(
        str_attr(s, "url.full"),
        Some("http://api.shop:8080/items/1")
    );
    assert_eq!(str_attr(s, "network.peer.address"), Some(SERVER.0));
    assert_eq!(int_attr(s, "network.peer.port"), Some(i64::from(SERVER.1)));
    // 4xx is an error for the client, not for the server.
    assert_eq!(s.status, SpanStatus::Error("HTTP 404".into()));
    assert_eq!(str_attr(s, "error.type"), Some("404"));
}

#[test]
fn a_server_error_marks_the_server_span_and_a_client_error_does_not() {
    let mut c = Conn::new(Side::Server);
    c.send(false, T0, traced_get("/a").as_bytes());
    c.send(true, T0 + MS, &resp(503));
    c.send(false, T0 + 2 * MS, traced_get("/b").as_bytes());
    c.send(true, T0 + 3 * MS, &resp(404));
    let spans = c.take();
    assert_eq!(spans[0].status, SpanStatus::Error("HTTP 503".into()));
    assert_eq!(spans[1].status, SpanStatus::Unset);
}

#[test]
fn requests_without_traceparent_make_no_span_unless_root_spans_are_on() {
    let plain = "GET /x HTTP/1.1\r\nHost: api\r\n\r\n";
    let mut c = Conn::new(Side::Server);
    c.send(false, T0, plain.as_bytes());
    c.send(true, T0 + MS, &resp(200));
    assert!(c.take().is_empty());
    assert_eq!(c.tracker.stats().untraced, 1);

    let config = ExchangeConfig {
        root_spans: true,
        ..Default::default()
    };
    let mut c = Conn::with(Side::Server, config, HttpConfig::default());
    c.send(false, T0, plain.as_bytes());
    c.send(true, T0 + MS, &resp(200));
    c.send(false, T0 + 2 * MS, plain.as_bytes());
    c.send(true, T0 + 3 * MS, &resp(200));
    let spans = c.take();
    assert_eq!(spans.len(), 2);
    for s in &spans {
        assert_eq!(s.parent_span_id, None, "a root span");
        assert_ne!(s.trace_id, [0; 16]);
        assert_eq!(s.flags, SAMPLED | HAS_IS_REMOTE);
    }
    assert_ne!(
        spans[0].trace_id, spans[1].trace_id,
        "each request a new trace"
    );
}

#[test]
fn an_unsampled_traceparent_makes_no_span() {
    let mut c = Conn::new(Side::Server);
    let req = format!("GET / HTTP/1.1\r\ntraceparent: 00-{TRACE}-{PARENT}-00\r\n\r\n");
    c.send(false, T0, req.as_bytes());
    c.send(true, T0 + MS, &resp(200));
    assert!(c.take().is_empty());
    assert_eq!(c.tracker.stats().unsampled, 1);
}

#[test]
fn with_traceparent_filtered_out_the_span_keeps_the_trace_id_but_has_no_parent() {
    let http = HttpConfig {
        redaction: Redaction {
            allow_headers: Some(vec!["host".into()]),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut c = Conn::with(Side::Server, ExchangeConfig::default(), http);
    c.send(false, T0, traced_get("/x").as_bytes());
    c.send(true, T0 + MS, &resp(200));
    let s = &c.take()[0];
    assert_eq!(hex(&s.trace_id), TRACE);
    assert_eq!(s.parent_span_id, None);
}

#[test]
fn pipelined_requests_pair_in_order_with_their_own_times() {
    let mut c = Conn::new(Side::Server);
    let two = format!("{}{}", traced_get("/one"), traced_get("/two"));
    c.send(false, T0, two.as_bytes());
    c.send(true, T0 + 5 * MS, &resp(200));
    c.send(true, T0 + 9 * MS, &resp(201));
    let spans = c.take();
    let got: Vec<(&str, u64, Option<i64>)> = spans
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.end_ns - s.start_ns,
                int_attr(s, "http.response.status_code"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("GET /one", 5 * MS, Some(200)),
            ("GET /two", 9 * MS, Some(201))
        ]
    );
    assert_ne!(spans[0].span_id, spans[1].span_id);
}

#[test]
fn a_drop_during_an_exchange_is_an_event_on_its_span() {
    let mut c = Conn::new(Side::Server);
    c.send(false, T0, traced_get("/slow").as_bytes());
    let mut drop = c.flow(false, T0 + 2 * MS, TcpFlags::default(), Verdict::Dropped);
    drop.drop_reason_desc = DropReason::CtMapInsertionFailed as i32;
    drop.summary = "TCP Flags: ACK".into();
    c.feed(drop);
    c.send(true, T0 + 10 * MS, &resp(200));
    let spans = c.take();
    assert_eq!(spans.len(), 1);
    let ev = &spans[0].events;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].name, "webb.drop");
    assert_eq!(ev[0].time_ns, T0 + 2 * MS);
    let reason = ev[0]
        .attributes
        .iter()
        .find(|a| a.key == "webb.drop.reason");
    assert_eq!(
        reason.map(|a| &a.value),
        Some(&Value::Str("CT_MAP_INSERTION_FAILED".into()))
    );
    assert_eq!(c.tracker.stats().events, 1);
}

#[test]
fn a_policy_denial_after_the_exchange_is_its_own_span_under_the_latest_exchange() {
    let mut c = Conn::new(Side::Server);
    c.send(false, T0, traced_get("/a").as_bytes());
    c.send(true, T0 + MS, &resp(200));
    let mut deny = c.flow(false, T0 + 40 * MS, TcpFlags::default(), Verdict::Dropped);
    deny.drop_reason_desc = DropReason::PolicyDenied as i32;
    deny.ingress_denied_by = vec![Policy {
        name: "deny-web".into(),
        namespace: "shop".into(),
        ..Default::default()
    }];
    c.feed(deny);
    let spans = c.take();
    assert_eq!(spans.len(), 2);
    let (exchange, denial) = (&spans[0], &spans[1]);
    assert_eq!(denial.kind, Kind::Internal);
    assert_eq!(denial.name, "policy denied");
    assert_eq!(denial.trace_id, exchange.trace_id);
    assert_eq!(denial.parent_span_id, Some(exchange.span_id));
    assert_eq!(
        (denial.start_ns, denial.end_ns),
        (T0 + 40 * MS, T0 + 40 * MS)
    );
    assert_eq!(denial.resource, exchange.resource);
    assert_eq!(denial.events[0].name, "webb.policy_denied");
    let by = denial.events[0]
        .attributes
        .iter()
        .find(|a| a.key == "webb.policy.denied_by");
    assert_eq!(
        by.map(|a| &a.value),
        Some(&Value::Str("shop/deny-web".into()))
    );
    assert!(matches!(denial.status, SpanStatus::Error(_)));
}

#[test]
fn a_reset_ends_the_open_exchange_with_an_error_and_an_event() {
    let mut c = Conn::new(Side::Server);
    c.send(false, T0, traced_get("/hang").as_bytes());
    c.control(true, T0 + 7 * MS, rst(), Verdict::Forwarded);
    let spans = c.take();
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(s.end_ns, T0 + 7 * MS);
    assert_eq!(s.events[0].name, "webb.tcp_reset");
    assert_eq!(str_attr(s, "error.type"), Some("tcp_reset"));
    assert!(matches!(s.status, SpanStatus::Error(_)));
    // The connection stays traced: a later reset is its own span in the same trace.
    c.control(false, T0 + 8 * MS, rst(), Verdict::Forwarded);
    let later = c.take();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].name, "TCP reset");
    assert_eq!(later[0].parent_span_id, Some(s.span_id));
}

#[test]
fn drops_on_untraced_connections_make_nothing() {
    let mut c = Conn::new(Side::Server);
    c.send(false, T0, b"GET / HTTP/1.1\r\n\r\n");
    c.control(false, T0 + MS, TcpFlags::default(), Verdict::Dropped);
    c.control(true, T0 + 2 * MS, rst(), Verdict::Forwarded);
    assert!(c.take().is_empty());
    assert_eq!(c.tracker.connections(), 0);
}

#[test]
fn an_idle_connection_is_forgotten_and_its_open_exchange_goes_out_unanswered() {
    let config = ExchangeConfig {
        idle_timeout_ns: 1_000 * MS,
        ..Default::default()
    };
    let mut c = Conn::with(Side::Server, config, HttpConfig::default());
    c.send(false, T0, traced_get("/never").as_bytes());
    // Any later flow moves flow time on; past the timeout the connection is let go.
    c.control(
        false,
        T0 + 2_000 * MS,
        TcpFlags::default(),
        Verdict::Forwarded,
    );
    let spans = c.take();
    assert_eq!(spans.len(), 1);
    assert_eq!(str_attr(&spans[0], "error.type"), Some("no_response"));
    assert_eq!(spans[0].end_ns, T0, "ends at the connection's last flow");
    assert_eq!(c.tracker.stats().expired, 1);
    assert_eq!(c.tracker.stats().unanswered, 1);
    // And a drop now finds no trace to join.
    c.control(
        false,
        T0 + 2_001 * MS,
        TcpFlags::default(),
        Verdict::Dropped,
    );
    assert!(c.take().is_empty());
}

#[test]
fn a_new_syn_on_the_tuple_ends_the_old_connections_context() {
    let mut c = Conn::new(Side::Server);
    c.send(false, T0, traced_get("/a").as_bytes());
    c.send(true, T0 + MS, &resp(200));
    let syn = TcpFlags {
        syn: true,
        ..Default::default()
    };
    c.control(false, T0 + 5 * MS, syn, Verdict::Forwarded);
    c.control(false, T0 + 6 * MS, TcpFlags::default(), Verdict::Dropped);
    assert_eq!(
        c.take().len(),
        1,
        "only the exchange; the drop is on a new connection"
    );
}

#[test]
fn the_connection_table_is_bounded_and_evicted_exchanges_are_not_lost_silently() {
    let config = ExchangeConfig {
        max_connections: 2,
        ..Default::default()
    };
    let mut t = Tracker::new(config);
    let mut out = Vec::new();
    let c = Conn::new(Side::Server);
    for n in 0..3u32 {
        let mut l7 = L7Stage::new(HttpConfig::default());
        let mut f = c.flow(
            false,
            T0 + u64::from(n),
            TcpFlags::default(),
            Verdict::Forwarded,
        );
        if let Some(Some(layer4::Protocol::Tcp(tcp))) = f.l4.as_mut().map(|l| l.protocol.as_mut()) {
            tcp.source_port = 41000 + n;
        }
        webb_proto::extras::attach(
            &mut f,
            Some(&FlowExtras {
                payload: Some(CapturedPayload {
                    data: traced_get("/x").into_bytes(),
                    seq: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        );
        let mut flows = Vec::new();
        l7.process(f, &mut flows);
        for f in &flows {
            t.observe(f, &mut out);
        }
    }
    assert_eq!(t.connections(), 2);
    assert_eq!(t.stats().evicted, 1);
    assert_eq!(out.len(), 1, "the evicted connection's request, unanswered");
    assert_eq!(t.abandon(), 2);
}

#[test]
fn urls_split_into_the_conventions_parts() {
    let u = UrlParts::parse("http://u:HUBBLE_REDACTED@h.example:81/p/q?x=1");
    assert_eq!(
        (u.host, u.port, u.path, u.query),
        ("h.example", Some(81), "/p/q", Some("x=1"))
    );
    assert_eq!(
        u.full_without_credentials("http://u:HUBBLE_REDACTED@h.example:81/p/q?x=1"),
        "http://REDACTED:REDACTED@h.example:81/p/q?x=1"
    );
    let u = UrlParts::parse("http://[2001:2::1]:8080");
    assert_eq!((u.host, u.port, u.path), ("2001:2::1", Some(8080), "/"));
    let u = UrlParts::parse("http://198.18.2.20:8080/");
    assert_eq!((u.host, u.port), ("198.18.2.20", Some(8080)));
}

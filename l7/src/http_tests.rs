use super::*;
use proptest::prelude::*;
use webb_proto::flow::{Endpoint, Ip, IpVersion, NetworkInterface, TcpFlags};

const CLIENT: (&str, u32) = ("198.19.1.11", 40312);
const SERVER: (&str, u32) = ("198.19.2.20", 8080);
const T0: u64 = 1_800_000_000_000_000_000;
const MS: u64 = 1_000_000;
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn endpoint(pod: &str) -> Endpoint {
    Endpoint {
        identity: 1000,
        namespace: "default".into(),
        pod_name: pod.into(),
        labels: vec![format!("k8s:app={pod}")],
        ..Default::default()
    }
}

/// A forwarded TCP packet flow as the agent sends it.
fn packet(from_server: bool, t: u64) -> Flow {
    let (src, dst) = if from_server {
        (SERVER, CLIENT)
    } else {
        (CLIENT, SERVER)
    };
    Flow {
        time: Some(Timestamp::from_unix_nanos(t)),
        uuid: "agent-flow".into(),
        verdict: Verdict::Forwarded as i32,
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
                flags: Some(TcpFlags {
                    psh: true,
                    ack: true,
                    ..Default::default()
                }),
            })),
        }),
        source: Some(endpoint(if from_server { "api" } else { "loadgen" })),
        destination: Some(endpoint(if from_server { "loadgen" } else { "api" })),
        r#type: FlowType::L3L4 as i32,
        node_name: "vn2".into(),
        interface: Some(NetworkInterface {
            index: 7,
            name: "veth-api".into(),
        }),
        traffic_direction: TrafficDirection::Ingress as i32,
        ..Default::default()
    }
}

/// Drives a stage with whole packets and continuation segments of one connection.
struct Conv {
    stage: HttpStage,
    seq: [u32; 2],
    out: Vec<Flow>,
}

impl Conv {
    fn new() -> Self {
        Self::with(HttpConfig::default())
    }
    fn with(config: HttpConfig) -> Self {
        Conv {
            stage: HttpStage::new(config),
            seq: [1_000, 900_000],
            out: Vec::new(),
        }
    }
    /// A packet starting a head (`from_server`: response direction), at `t`.
    fn send(&mut self, from_server: bool, t: u64, bytes: &[u8]) -> Vec<Flow> {
        self.segment(from_server, t, bytes, false)
    }
    fn segment(&mut self, from_server: bool, t: u64, bytes: &[u8], cont: bool) -> Vec<Flow> {
        let d = usize::from(from_server);
        let payload = CapturedPayload {
            data: bytes.to_vec(),
            seq: self.seq[d],
            continuation: cont,
            original_length: bytes.len() as u32 + 66,
            ..Default::default()
        };
        self.seq[d] = self.seq[d].wrapping_add(bytes.len() as u32);
        self.stage
            .observe(&packet(from_server, t), &payload, &mut self.out);
        std::mem::take(&mut self.out)
    }
    fn stats(&self) -> &HttpStats {
        self.stage.stats()
    }
}

fn http(f: &Flow) -> &Http {
    match f.l7.as_ref().and_then(|l| l.record.as_ref()) {
        Some(layer7::Record::Http(h)) => h,
        other => panic!("not an HTTP flow: {other:?}"),
    }
}

fn trace_id(f: &Flow) -> Option<&str> {
    f.trace_context
        .as_ref()?
        .parent
        .as_ref()
        .map(|p| p.trace_id.as_str())
}

fn resp(code: u16, extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n{extra}\r\n").into_bytes()
}

#[test]
fn a_request_and_its_response_become_hubble_l7_flows() {
    let mut c = Conv::new();
    let req =
        format!("GET /items/1 HTTP/1.1\r\ntraceparent: 00-{TRACE}-00f067aa0ba902b7-01\r\n\r\n");
    let out = c.send(false, T0, req.as_bytes());
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.r#type, FlowType::L7 as i32);
    assert_eq!(r.event_type.as_ref().unwrap().r#type, 129);
    assert_eq!(r.verdict, Verdict::Forwarded as i32);
    assert_eq!(r.is_reply.as_ref().map(|b| b.value), Some(false));
    assert_eq!(r.traffic_direction, TrafficDirection::Ingress as i32);
    assert_eq!(r.l7.as_ref().unwrap().r#type, L7FlowType::Request as i32);
    let h = http(r);
    assert_eq!(
        (
            h.method.as_str(),
            h.url.as_str(),
            h.protocol.as_str(),
            h.code
        ),
        ("GET", "http://198.19.2.20:8080/items/1", "HTTP/1.1", 0)
    );
    assert_eq!(h.headers.len(), 1);
    assert_eq!(trace_id(r), Some(TRACE));
    assert_eq!(r.summary, "HTTP/1.1 GET http://198.19.2.20:8080/items/1");
    assert_eq!(r.source.as_ref().unwrap().pod_name, "loadgen");
    assert!(r.interface.is_none() && r.extensions.is_none());
    assert!(!r.uuid.is_empty() && r.uuid != "agent-flow");

    let out = c.send(true, T0 + 51 * MS + 400_000, &resp(500, ""));
    assert_eq!(out.len(), 1);
    let s = &out[0];
    assert_eq!(s.l7.as_ref().unwrap().r#type, L7FlowType::Response as i32);
    assert_eq!(s.l7.as_ref().unwrap().latency_ns, 51 * MS + 400_000);
    assert_eq!(s.is_reply.as_ref().map(|b| b.value), Some(true));
    assert_eq!(s.traffic_direction, TrafficDirection::Ingress as i32);
    let h = http(s);
    assert_eq!((h.code, h.method.as_str()), (500, "GET"));
    assert_eq!(h.url, "http://198.19.2.20:8080/items/1");
    assert_eq!(trace_id(s), Some(TRACE));
    assert_eq!(
        s.summary,
        "HTTP/1.1 500 51ms (GET http://198.19.2.20:8080/items/1)"
    );
    // Response flows run server → client.
    assert_eq!(s.ip.as_ref().unwrap().source, SERVER.0);
    assert_eq!(s.source.as_ref().unwrap().pod_name, "api");
    assert_ne!(s.uuid, r.uuid);
    assert_eq!((c.stats().requests, c.stats().responses), (1, 1));
}

#[test]
fn the_url_uses_the_host_header_and_absolute_targets_as_given() {
    let cases = [
        (
            "GET /a?b=1 HTTP/1.1\r\nHost: shop.example:8080\r\n\r\n",
            "http://shop.example:8080/a?b=1",
        ),
        (
            "GET /a HTTP/1.1\r\nHost:\r\n\r\n",
            "http://198.19.2.20:8080/a",
        ),
        (
            "GET http://other/x HTTP/1.1\r\nHost: shop\r\n\r\n",
            "http://other/x",
        ),
        ("OPTIONS * HTTP/1.1\r\nHost: shop\r\n\r\n", "http://shop"),
        (
            "GET http://u:pw@h/x HTTP/1.1\r\n\r\n",
            "http://u:HUBBLE_REDACTED@h/x",
        ),
    ];
    for (req, url) in cases {
        let out = Conv::new().send(false, T0, req.as_bytes());
        assert_eq!(http(&out[0]).url, url, "{req:?}");
    }
}

#[test]
fn pipelined_requests_pair_with_responses_in_order() {
    let mut c = Conv::new();
    let reqs = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbodyGET /3 HTTP/1.1\r\nHost: h\r\n\r\n";
    let out = c.send(false, T0, reqs.as_bytes());
    let urls: Vec<_> = out.iter().map(|f| http(f).url.as_str()).collect();
    assert_eq!(urls, ["http://h/1", "http://h/2", "http://h/3"]);

    let two = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".as_slice(),
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ]
    .concat();
    let out = c.send(true, T0 + 2 * MS, &two);
    let got: Vec<_> = out
        .iter()
        .map(|f| (http(f).code, http(f).url.as_str()))
        .collect();
    assert_eq!(got, [(200, "http://h/1"), (201, "http://h/2")]);
    let out = c.send(true, T0 + 5 * MS, &resp(404, ""));
    assert_eq!(
        (http(&out[0]).code, http(&out[0]).url.as_str()),
        (404, "http://h/3")
    );
    assert_eq!(out[0].l7.as_ref().unwrap().latency_ns, 5 * MS);
    assert_eq!(c.stats().unmatched_responses, 0);
}

#[test]
fn keep_alive_requests_pair_one_after_another() {
    let mut c = Conv::new();
    for i in 0..5u64 {
        let t = T0 + i * 10 * MS;
        let out = c.send(false, t, format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(out.len(), 1);
        let out = c.send(true, t + (i + 1) * MS, &resp(200, ""));
        assert_eq!(http(&out[0]).url, format!("http://198.19.2.20:8080/{i}"));
        assert_eq!(out[0].l7.as_ref().unwrap().latency_ns, (i + 1) * MS);
    }
    assert_eq!(c.stage.connections(), 1);
}

#[test]
fn a_response_to_head_has_no_body_even_with_a_content_length() {
    let mut c = Conv::new();
    c.send(
        false,
        T0,
        b"HEAD /big HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
    );
    let both = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".as_slice(),
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]
    .concat();
    let out = c.send(true, T0 + MS, &both);
    let got: Vec<_> = out
        .iter()
        .map(|f| (http(f).method.as_str(), http(f).code))
        .collect();
    assert_eq!(got, [("HEAD", 200), ("GET", 204)]);
}

#[test]
fn interim_responses_do_not_pair_and_expect_continue_waits_for_the_final_one() {
    let mut c = Conv::new();
    let req = b"PUT /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n";
    c.send(false, T0, req);
    assert!(
        c.send(true, T0 + MS, b"HTTP/1.1 100 Continue\r\n\r\n")
            .is_empty()
    );
    assert!(
        c.send(
            true,
            T0 + 2 * MS,
            b"HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
        )
        .is_empty()
    );
    let out = c.send(true, T0 + 9 * MS, &resp(201, ""));
    assert_eq!(
        (http(&out[0]).method.as_str(), http(&out[0]).code),
        ("PUT", 201)
    );
    assert_eq!(out[0].l7.as_ref().unwrap().latency_ns, 9 * MS);
    assert_eq!(c.stats().informational, 2);
}

#[test]
fn connection_close_ends_the_connection_after_its_response() {
    for (req, response) in [
        ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", resp(200, "")),
        ("GET / HTTP/1.1\r\n\r\n", resp(200, "Connection: close\r\n")),
        (
            "GET / HTTP/1.0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\n".to_vec(),
        ),
    ] {
        let mut c = Conv::new();
        c.send(false, T0, req.as_bytes());
        assert_eq!(c.send(true, T0 + MS, &response).len(), 1, "{req:?}");
        assert_eq!(c.stage.connections(), 0, "{req:?}");
    }
    // HTTP/1.0 with keep-alive stays.
    let mut c = Conv::new();
    c.send(
        false,
        T0,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    c.send(
        true,
        T0 + MS,
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(c.stage.connections(), 1);
}

#[test]
fn a_head_split_over_segments_is_reassembled() {
    // 3 KiB of headers before the traceparent, written in small pieces.
    let mut req = String::from("GET /slow HTTP/1.1\r\nHost: api\r\n");
    for i in 0..30 {
        req.push_str(&format!("x-filler-{i:02}: {}\r\n", "f".repeat(90)));
    }
    req.push_str(&format!(
        "traceparent: 00-{TRACE}-00f067aa0ba902b7-01\r\n\r\n"
    ));
    assert!(req.len() > 3072);
    let mut c = Conv::new();
    let chunks: Vec<&[u8]> = req.as_bytes().chunks(400).collect();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        out.extend(c.segment(false, T0 + i as u64 * MS, chunk, i > 0));
    }
    assert_eq!(out.len(), 1);
    assert_eq!(trace_id(&out[0]), Some(TRACE));
    assert_eq!(http(&out[0]).headers.len(), 32);
    // The message happened when its first segment did.
    assert_eq!(out[0].time.unwrap().unix_nanos(), i128::from(T0));
    let out = c.send(true, T0 + 50 * MS, &resp(200, ""));
    assert_eq!(out[0].l7.as_ref().unwrap().latency_ns, 50 * MS);
}

#[test]
fn segments_out_of_order_and_overlapping_are_put_back_in_order() {
    let req = b"GET /ooo HTTP/1.1\r\nHost: h\r\nX-A: aaaaaaaaaa\r\nX-B: bbbbbbbbbb\r\n\r\n";
    let (a, b, c3) = (&req[..20], &req[20..40], &req[40..]);
    let mut c = Conv::new();
    let base = c.seq[0];
    c.segment(false, T0, a, false);
    // Third segment first, then the second overlapping the first by 5 bytes.
    c.seq[0] = base + 40;
    assert!(c.segment(false, T0 + 1, c3, true).is_empty());
    c.seq[0] = base + 15;
    let out = c.segment(false, T0 + 2, &req[15..40], true);
    assert_eq!(out.len(), 1, "{:?}", c.stats());
    assert_eq!(http(&out[0]).headers.len(), 3);
    let _ = b;
}

#[test]
fn a_head_over_the_bound_is_counted_and_skipped() {
    let mut c = Conv::with(HttpConfig {
        max_head_bytes: 1024,
        ..Default::default()
    });
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(2000));
    let mut out = Vec::new();
    for (i, chunk) in big.as_bytes().chunks(500).enumerate() {
        out.extend(c.segment(false, T0, chunk, i > 0));
    }
    assert!(out.is_empty());
    assert_eq!(c.stats().too_large, 1);
    assert_eq!(c.stats().requests, 0);
    // The connection goes on: the next head parses.
    assert_eq!(c.send(false, T0 + MS, b"GET /ok HTTP/1.1\r\n\r\n").len(), 1);
}

#[test]
fn too_many_headers_is_counted_as_too_large() {
    let mut req = String::from("GET / HTTP/1.1\r\n");
    for i in 0..200 {
        req.push_str(&format!("h{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let mut c = Conv::new();
    assert!(c.send(false, T0, req.as_bytes()).is_empty());
    assert_eq!(c.stats().too_large, 1);
}

#[test]
fn bytes_that_are_not_http_are_counted_never_parsed() {
    let cases: [&[u8]; 7] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // TLS ClientHello
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"\x00\x00\x00\x00\xff\xff",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b" GET / HTTP/1.1\r\n\r\n",
        b"AVERYLONGTOKENWITHOUTANYSPACEATALLXXXXXXXX",
    ];
    for bytes in cases {
        let mut c = Conv::new();
        assert!(c.send(false, T0, bytes).is_empty(), "{bytes:?}");
        assert!(c.send(true, T0, bytes).is_empty(), "{bytes:?}");
        assert_eq!(c.stats().not_http, 2, "{bytes:?}");
    }
}

#[test]
fn a_retransmitted_head_is_ignored() {
    let mut c = Conv::new();
    let req = b"GET /once HTTP/1.1\r\n\r\n";
    let seq = c.seq[0];
    assert_eq!(c.send(false, T0, req).len(), 1);
    c.seq[0] = seq;
    assert!(c.send(false, T0 + 200 * MS, req).is_empty());
    assert_eq!(c.stats().retransmits, 1);
    let out = c.send(true, T0 + 300 * MS, &resp(200, ""));
    assert_eq!(out[0].l7.as_ref().unwrap().latency_ns, 300 * MS);
}

#[test]
fn a_response_without_a_request_is_counted_not_invented() {
    let mut c = Conv::new();
    assert!(c.send(true, T0, &resp(200, "")).is_empty());
    assert_eq!(c.stats().unmatched_responses, 1);
}

#[test]
fn credentials_are_redacted_and_headers_sorted_by_lower_case_key() {
    let mut c = Conv::new();
    let req = b"GET / HTTP/1.1\r\nUser-Agent: t\r\nAuthorization: Bearer x\r\nCookie: s=1\r\naccept: */*\r\nProxy-Authorization: Basic y\r\n\r\n";
    let out = c.send(false, T0, req);
    let got: Vec<_> = http(&out[0])
        .headers
        .iter()
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("accept", "*/*"),
            ("authorization", "HUBBLE_REDACTED"),
            ("cookie", "HUBBLE_REDACTED"),
            ("proxy-authorization", "HUBBLE_REDACTED"),
            ("user-agent", "t"),
        ]
    );
    let out = c.send(true, T0 + MS, &resp(200, "Set-Cookie: s=2\r\n"));
    assert!(
        http(&out[0])
            .headers
            .iter()
            .any(|h| h.key == "set-cookie" && h.value == "HUBBLE_REDACTED")
    );
}

#[test]
fn query_redaction_and_header_allow_list_apply_to_flows_and_summaries() {
    let mut c = Conv::with(HttpConfig {
        redaction: Redaction {
            redact_query: true,
            allow_headers: Some(vec!["traceparent".into()]),
            ..Default::default()
        },
        ..Default::default()
    });
    let req = format!(
        "GET /s?token=abc HTTP/1.1\r\nHost: h\r\ntraceparent: 00-{TRACE}-00f067aa0ba902b7-01\r\n\r\n"
    );
    let out = c.send(false, T0, req.as_bytes());
    assert_eq!(http(&out[0]).url, "http://h/s");
    assert_eq!(out[0].summary, "HTTP/1.1 GET http://h/s");
    assert_eq!(http(&out[0]).headers.len(), 1);
    let out = c.send(true, T0 + MS, &resp(200, ""));
    assert!(!out[0].summary.contains("token"));
    assert!(http(&out[0]).headers.is_empty());
}

#[test]
fn the_connection_table_is_bounded_and_counts_evictions() {
    let mut stage = HttpStage::new(HttpConfig {
        max_connections: 2,
        ..Default::default()
    });
    let mut out = Vec::new();
    for port in [1000u32, 1001, 1002] {
        let mut f = packet(false, T0);
        if let Some(layer4::Protocol::Tcp(t)) = f.l4.as_mut().and_then(|l| l.protocol.as_mut()) {
            t.source_port = port;
        }
        let payload = CapturedPayload {
            data: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            ..Default::default()
        };
        stage.observe(&f, &payload, &mut out);
    }
    assert_eq!(stage.connections(), 2);
    assert_eq!(stage.stats().evicted_full, 1);
    assert_eq!(stage.stats().unanswered_requests, 1);
}

#[test]
fn idle_connections_are_forgotten() {
    let mut c = Conv::with(HttpConfig {
        idle_timeout_ns: 1_000 * MS,
        ..Default::default()
    });
    c.send(false, T0, b"GET / HTTP/1.1\r\n\r\n");
    c.stage.expire(i128::from(T0 + 999 * MS));
    assert_eq!(c.stage.connections(), 1);
    c.stage.expire(i128::from(T0 + 1_001 * MS));
    assert_eq!(c.stage.connections(), 0);
    assert_eq!(c.stats().evicted_idle, 1);
    assert_eq!(c.stats().unanswered_requests, 1);
}

#[test]
fn a_new_syn_on_the_same_tuple_starts_over() {
    let mut c = Conv::new();
    c.send(false, T0, b"GET / HTTP/1.1\r\n\r\n");
    let mut syn = packet(false, T0 + MS);
    if let Some(layer4::Protocol::Tcp(t)) = syn.l4.as_mut().and_then(|l| l.protocol.as_mut()) {
        t.flags = Some(TcpFlags {
            syn: true,
            ..Default::default()
        });
    }
    c.stage.tcp_control(&syn);
    assert_eq!(c.stage.connections(), 0);
    assert_eq!(c.stats().unanswered_requests, 1);
}

#[test]
fn after_an_upgrade_the_connection_is_no_longer_http() {
    let mut c = Conv::new();
    c.send(
        false,
        T0,
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    let out = c.send(
        true,
        T0 + MS,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    );
    assert_eq!(http(&out[0]).code, 101);
    assert!(
        c.send(false, T0 + 2 * MS, b"GET /not-http HTTP/1.1\r\n\r\n")
            .is_empty()
    );
    assert_eq!(c.stats().tunneled, 1);
}

#[test]
fn the_same_message_at_two_interfaces_is_two_connections() {
    let mut stage = HttpStage::new(HttpConfig::default());
    let mut out = Vec::new();
    let payload = CapturedPayload {
        data: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        ..Default::default()
    };
    let mut client_side = packet(false, T0);
    client_side.interface = Some(NetworkInterface {
        index: 3,
        name: "veth-loadgen".into(),
    });
    client_side.traffic_direction = TrafficDirection::Egress as i32;
    stage.observe(&client_side, &payload, &mut out);
    stage.observe(&packet(false, T0 + 1), &payload, &mut out);
    assert_eq!(stage.connections(), 2);
    let dirs: Vec<_> = out.iter().map(|f| f.traffic_direction).collect();
    assert_eq!(
        dirs,
        [
            TrafficDirection::Egress as i32,
            TrafficDirection::Ingress as i32
        ]
    );
}

fn whole(req: &[u8], rsp: &[u8]) -> Vec<(i32, String, u32, u64, String)> {
    let mut c = Conv::new();
    let mut out = c.send(false, T0, req);
    out.extend(c.send(true, T0 + 7 * MS, rsp));
    summarize(&out)
}

fn summarize(out: &[Flow]) -> Vec<(i32, String, u32, u64, String)> {
    out.iter()
        .map(|f| {
            let h = http(f);
            (
                f.l7.as_ref().unwrap().r#type,
                h.url.clone(),
                h.code,
                f.l7.as_ref().unwrap().latency_ns,
                format!("{:?}", h.headers),
            )
        })
        .collect()
}

proptest! {
    #[test]
    fn never_panics_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        fuzz_http(&data);
    }

    #[test]
    fn never_panics_on_http_like_bytes(
        parts in proptest::collection::vec(
            prop_oneof![
                Just(b"GET / HTTP/1.1\r\n".to_vec()),
                Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
                Just(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
                Just(b"Content-Length: 3\r\n".to_vec()),
                Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
                Just(b"Connection: close\r\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8),
            ],
            0..40,
        ),
        cuts in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        // Interleave control/length bytes so the fuzz entry sees realistic packets.
        let mut data = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            data.push(*cuts.get(i).unwrap_or(&0));
            data.push(p.len() as u8);
            data.extend_from_slice(p);
        }
        fuzz_http(&data);
    }

    #[test]
    fn splitting_a_head_anywhere_gives_the_same_flows(
        cut_req in proptest::collection::vec(1usize..120, 0..4),
        cut_rsp in proptest::collection::vec(1usize..60, 0..3),
    ) {
        let req = format!("POST /p?x=1 HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\ntraceparent: 00-{TRACE}-00f067aa0ba902b7-01\r\nAccept: */*\r\n\r\n");
        let rsp = b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n";
        let want = whole(req.as_bytes(), rsp);
        let mut c = Conv::new();
        let mut out = Vec::new();
        for (from_server, bytes, cuts) in [(false, req.as_bytes(), &cut_req), (true, rsp.as_slice(), &cut_rsp)] {
            let t = if from_server { T0 + 7 * MS } else { T0 };
            let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len() - 1)).collect();
            points.sort_unstable();
            points.dedup();
            let mut start = 0;
            for (i, end) in points.iter().copied().chain([bytes.len()]).enumerate() {
                out.extend(c.segment(from_server, t + i as u64, &bytes[start..end], start > 0));
                start = end;
            }
        }
        prop_assert_eq!(summarize(&out), want);
    }
}

use super::*;
use crate::dns::Answer;
use webb_proto::flow::{FlowType, TrafficDirection};

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

fn query(id: u16, name: &str, qtype: u16) -> DnsMessage {
    DnsMessage::query(id, name, qtype)
}

fn answered(q: &DnsMessage, rcode: u16, answers: Vec<(&str, u32, AnswerData)>) -> DnsMessage {
    DnsMessage {
        is_response: true,
        rcode,
        answers: answers
            .into_iter()
            .map(|(name, ttl, data)| Answer {
                name: name.into(),
                ttl,
                data,
            })
            .collect(),
        ..q.clone()
    }
}

fn udp(bytes: Vec<u8>) -> CapturedPayload {
    CapturedPayload {
        original_length: bytes.len() as u32,
        data: bytes,
        ..Default::default()
    }
}

fn tcp(bytes: &[u8], seq: u32) -> CapturedPayload {
    CapturedPayload {
        data: bytes.to_vec(),
        original_length: bytes.len() as u32,
        seq,
        ..Default::default()
    }
}

fn dns_of(f: &Flow) -> &Dns {
    match f.l7.as_ref().and_then(|l| l.record.as_ref()) {
        Some(layer7::Record::Dns(d)) => d,
        other => panic!("not a DNS flow: {other:?}"),
    }
}

#[test]
fn a_query_and_its_answer_make_a_request_and_a_response_flow_as_hubble_fills_them() {
    let mut stage = DnsStage::new(DnsConfig::default());
    let mut out = Vec::new();
    let q = query(0x42, "web.shop.example.", 1);
    let r = answered(
        &q,
        0,
        vec![
            (
                "web.shop.example.",
                60,
                AnswerData::Cname("lb.shop.example.".into()),
            ),
            (
                "lb.shop.example.",
                30,
                AnswerData::A([198, 18, 0, 10].into()),
            ),
            (
                "lb.shop.example.",
                30,
                AnswerData::A([198, 18, 0, 11].into()),
            ),
        ],
    );
    stage.observe(
        &test_packet(false, false, T0, false),
        &udp(q.to_udp().unwrap()),
        &mut out,
    );
    stage.observe(
        &test_packet(true, false, T0 + 3 * MS, false),
        &udp(r.to_udp().unwrap()),
        &mut out,
    );
    assert_eq!(out.len(), 2);

    let req = &out[0];
    assert_eq!(req.r#type, FlowType::L7 as i32);
    assert_eq!(req.event_type.as_ref().unwrap().r#type, 129);
    assert_eq!(req.is_reply, Some(false.into()));
    assert_eq!(req.summary, "DNS Query web.shop.example. A");
    let l7 = req.l7.as_ref().unwrap();
    assert_eq!(l7.r#type, L7FlowType::Request as i32);
    assert_eq!(
        dns_of(req),
        &Dns {
            query: "web.shop.example.".into(),
            observation_source: "datapath".into(),
            qtypes: vec!["A".into()],
            ..Default::default()
        }
    );
    assert!(matches!(
        req.l4.as_ref().unwrap().protocol,
        Some(layer4::Protocol::Udp(Udp {
            source_port: 40000,
            destination_port: 53
        }))
    ));

    let resp = &out[1];
    assert_eq!(resp.is_reply, Some(true.into()));
    let l7 = resp.l7.as_ref().unwrap();
    assert_eq!(l7.r#type, L7FlowType::Response as i32);
    assert_eq!(l7.latency_ns, 3 * MS);
    assert_eq!(
        dns_of(resp),
        &Dns {
            query: "web.shop.example.".into(),
            ips: vec!["198.18.0.10".into(), "198.18.0.11".into()],
            ttl: 30,
            cnames: vec!["lb.shop.example.".into()],
            observation_source: "datapath".into(),
            rcode: 0,
            qtypes: vec!["A".into()],
            rrtypes: vec!["CNAME".into(), "A".into(), "A".into()],
        }
    );
    assert_eq!(
        resp.summary,
        "DNS Answer \"198.18.0.10,198.18.0.11\" CNAMEs: \"lb.shop.example.\" TTL: 30 \
         (Query web.shop.example. A)"
    );
    assert_eq!(stage.stats().paired, 1);
    assert_eq!(stage.pending(), 0);
}

#[test]
fn nxdomain_names_its_rcode_and_cilium_ttl() {
    let mut stage = DnsStage::new(DnsConfig::default());
    let mut out = Vec::new();
    let q = query(7, "nope.example.", 28);
    stage.observe(
        &test_packet(false, false, T0, false),
        &udp(q.to_udp().unwrap()),
        &mut out,
    );
    stage.observe(
        &test_packet(true, false, T0 + MS, false),
        &udp(answered(&q, 3, vec![]).to_udp().unwrap()),
        &mut out,
    );
    let d = dns_of(&out[1]);
    assert_eq!(d.rcode, 3);
    assert_eq!(d.ttl, u32::MAX);
    assert_eq!(
        out[1].summary,
        "DNS Answer RCode: Non-Existent Domain TTL: 4294967295 (Query nope.example. AAAA)"
    );
}

#[test]
fn answers_pair_by_id_whatever_their_order() {
    let mut stage = DnsStage::new(DnsConfig::default());
    let mut out = Vec::new();
    let a = query(1, "a.example.", 1);
    let b = query(2, "a.example.", 28);
    for (i, q) in [&a, &b].into_iter().enumerate() {
        stage.observe(
            &test_packet(false, false, T0 + i as u64 * MS, false),
            &udp(q.to_udp().unwrap()),
            &mut out,
        );
    }
    // b answered first, 5 ms after it was asked; a 9 ms after.
    stage.observe(
        &test_packet(true, false, T0 + 6 * MS, false),
        &udp(answered(&b, 0, vec![]).to_udp().unwrap()),
        &mut out,
    );
    stage.observe(
        &test_packet(true, false, T0 + 9 * MS, false),
        &udp(answered(&a, 0, vec![]).to_udp().unwrap()),
        &mut out,
    );
    let latencies: Vec<u64> = out[2..]
        .iter()
        .map(|f| f.l7.as_ref().unwrap().latency_ns)
        .collect();
    assert_eq!(latencies, [5 * MS, 9 * MS]);
    assert_eq!(stage.stats().paired, 2);
}

#[test]
fn a_response_without_its_query_still_makes_a_flow_and_is_counted() {
    let mut stage = DnsStage::new(DnsConfig::default());
    let mut out = Vec::new();
    let r = answered(
        &query(9, "x.example.", 1),
        0,
        vec![("x.example.", 5, AnswerData::A([198, 18, 0, 9].into()))],
    );
    stage.observe(
        &test_packet(true, false, T0, false),
        &udp(r.to_udp().unwrap()),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].l7.as_ref().unwrap().latency_ns, 0);
    assert_eq!(stage.stats().unmatched_responses, 1);
}

#[test]
fn malformed_and_cut_messages_make_no_flow_and_are_counted() {
    let mut stage = DnsStage::new(DnsConfig::default());
    let mut out = Vec::new();
    let bytes = query(3, "cut.example.", 1).to_udp().unwrap();
    let p = test_packet(false, false, T0, false);
    stage.observe(&p, &udp(bytes[..bytes.len() - 2].to_vec()), &mut out);
    let mut capture_cut = udp(bytes.clone());
    capture_cut.truncated = true;
    stage.observe(&p, &capture_cut, &mut out);
    let mut looped = bytes[..12].to_vec();
    looped.extend([0xc0, 12, 0, 1, 0, 1]);
    stage.observe(&p, &udp(looped), &mut out);
    assert!(out.is_empty());
    assert_eq!(stage.stats().truncated, 2);
    assert_eq!(stage.stats().malformed, 1);
    assert_eq!(stage.stats().lost(), 3);
}

#[test]
fn a_dropped_query_is_reported_with_its_verdict_and_awaits_nothing() {
    let mut stage = DnsStage::new(DnsConfig::default());
    let mut out = Vec::new();
    stage.observe(
        &test_packet(false, false, T0, true),
        &udp(query(5, "blocked.example.", 1).to_udp().unwrap()),
        &mut out,
    );
    assert_eq!(out[0].verdict, Verdict::Dropped as i32);
    assert_eq!(stage.pending(), 0);
}

#[test]
fn tcp_messages_split_over_segments_are_joined_and_several_in_one_are_all_read() {
    let mut stage = DnsStage::new(DnsConfig::default());
    let mut out = Vec::new();
    let a = query(11, "t.example.", 1);
    let b = query(12, "t.example.", 28);
    let mut stream = a.to_tcp().unwrap();
    stream.extend(b.to_tcp().unwrap());
    // The length prefix alone, then the rest: as a client writing them separately sends it.
    let p = |ms| test_packet(false, true, T0 + ms * MS, false);
    stage.observe(&p(0), &tcp(&stream[..2], 100), &mut out);
    assert!(out.is_empty());
    stage.observe(&p(1), &tcp(&stream[2..], 102), &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(dns_of(&out[1]).qtypes, ["AAAA"]);
    // A retransmit of the second segment is not read twice.
    stage.observe(&p(2), &tcp(&stream[2..], 102), &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(stage.stats().retransmits, 1);
    // Both answered in one segment.
    let mut answers = answered(&a, 0, vec![]).to_tcp().unwrap();
    answers.extend(answered(&b, 0, vec![]).to_tcp().unwrap());
    stage.observe(
        &test_packet(true, true, T0 + 4 * MS, false),
        &tcp(&answers, 7000),
        &mut out,
    );
    assert_eq!(out.len(), 4);
    assert_eq!(stage.stats().paired, 2);
    assert!(matches!(
        out[3].l4.as_ref().unwrap().protocol,
        Some(layer4::Protocol::Tcp(_))
    ));
}

#[test]
fn a_tcp_gap_drops_the_held_start_of_a_message_and_counts_it() {
    let mut stage = DnsStage::new(DnsConfig::default());
    let mut out = Vec::new();
    let framed = query(13, "gap.example.", 1).to_tcp().unwrap();
    let p = test_packet(false, true, T0, false);
    stage.observe(&p, &tcp(&framed[..5], 100), &mut out);
    // The next segment starts 3 bytes later than the held bytes end.
    stage.observe(&p, &tcp(&framed[8..], 108), &mut out);
    assert!(out.is_empty());
    assert!(stage.stats().truncated >= 1);
}

#[test]
fn unanswered_queries_time_out_and_the_table_is_bounded() {
    let mut stage = DnsStage::new(DnsConfig {
        max_pending: 2,
        ..DnsConfig::default()
    });
    let mut out = Vec::new();
    for id in 0..3u16 {
        stage.observe(
            &test_packet(false, false, T0, false),
            &udp(query(id, "q.example.", 1).to_udp().unwrap()),
            &mut out,
        );
    }
    assert_eq!(stage.pending(), 2);
    assert_eq!(stage.stats().evicted_full, 1);
    stage.expire((T0 + 31_000 * MS) as i128);
    assert_eq!(stage.pending(), 0);
    assert_eq!(stage.stats().unanswered_queries, 3);
}

#[test]
fn the_response_keeps_the_direction_of_its_query() {
    let mut stage = DnsStage::new(DnsConfig::default());
    let mut out = Vec::new();
    let q = query(21, "d.example.", 1);
    stage.observe(
        &test_packet(false, false, T0, false),
        &udp(q.to_udp().unwrap()),
        &mut out,
    );
    let mut reply = test_packet(true, false, T0 + MS, false);
    reply.traffic_direction = TrafficDirection::Ingress as i32;
    stage.observe(
        &reply,
        &udp(answered(&q, 0, vec![]).to_udp().unwrap()),
        &mut out,
    );
    assert_eq!(out[1].traffic_direction, TrafficDirection::Egress as i32);
}

#[test]
fn go_quoting_escapes_quotes_and_backslashes() {
    assert_eq!(go_quote(r#"a"b\c"#), r#""a\"b\\c""#);
}

#[test]
fn fuzz_entry_runs_on_examples() {
    fuzz_dns_flows(&[]);
    let q = query(1, "f.example.", 1).to_udp().unwrap();
    let mut data = vec![0u8, q.len() as u8];
    data.extend(&q);
    data.extend([1u8, 3, 1, 2, 3]);
    fuzz_dns_flows(&data);
}

proptest::proptest! {
    #[test]
    fn any_packets_make_one_flow_per_message_read(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..800)) {
        fuzz_dns_flows(&data);
    }
}

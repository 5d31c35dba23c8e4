use super::*;
use proptest::prelude::*;

fn query(id: u16, name: &str, qtype: u16) -> DnsMessage {
    DnsMessage::query(id, name, qtype)
}

fn answer(name: &str, ttl: u32, data: AnswerData) -> Answer {
    Answer {
        name: name.into(),
        ttl,
        data,
    }
}

fn response(id: u16, name: &str, answers: Vec<Answer>) -> DnsMessage {
    DnsMessage {
        is_response: true,
        answers,
        ..query(id, name, 1)
    }
}

/// A query for "Example.COM" A, id 0x1234, RD, written by hand (RFC 1035 §4.1).
const QUERY_BYTES: &[u8] = &[
    0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header: RD, 1 question
    7, b'E', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'C', b'O', b'M', 0, // qname
    0, 1, 0, 1, // qtype A, qclass IN
];

#[test]
fn a_query_reads_id_question_lower_case_with_trailing_dot() {
    let m = parse_udp(QUERY_BYTES).unwrap();
    assert_eq!(m, query(0x1234, "example.com.", 1));
    assert_eq!(m.rcode_name(), "No Error");
}

#[test]
fn a_response_reads_addresses_cnames_and_ttls_through_compression_pointers() {
    let mut bytes = vec![
        0xab, 0xcd, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0, // response, RD RA, 1 q, 3 answers
        3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1,
    ];
    // www.example. CNAME web.example. (the target compresses "example." to offset 16)
    bytes.extend([
        0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'w', b'e', b'b', 0xc0, 16,
    ]);
    // web.example. (offset 41) A 198.18.0.10 TTL 30
    bytes.extend([0xc0, 41, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 198, 18, 0, 10]);
    // web.example. AAAA 2001:2::10 TTL 20
    bytes.extend([0xc0, 41, 0, 28, 0, 1, 0, 0, 0, 20, 0, 16]);
    bytes.extend([0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
    let m = parse_udp(&bytes).unwrap();
    assert!(m.is_response);
    assert_eq!(m.id, 0xabcd);
    assert_eq!(
        m.answers,
        vec![
            answer("www.example.", 60, AnswerData::Cname("web.example.".into())),
            answer("web.example.", 30, AnswerData::A([198, 18, 0, 10].into())),
            answer(
                "web.example.",
                20,
                AnswerData::Aaaa("2001:2::10".parse().unwrap())
            ),
        ]
    );
    let r = m.resolution().unwrap();
    assert_eq!(r.query, "www.example.");
    assert_eq!(r.cnames, ["web.example."]);
    assert_eq!(
        r.ips,
        [
            "198.18.0.10".parse::<std::net::IpAddr>().unwrap(),
            "2001:2::10".parse().unwrap()
        ]
    );
    assert_eq!(r.ttl, 20, "the lowest TTL of the chain");
}

#[test]
fn nxdomain_keeps_its_rcode_and_resolves_to_nothing_with_cilium_ttl() {
    let m = DnsMessage {
        rcode: 3,
        ..response(7, "nope.example.", vec![])
    };
    let parsed = parse_udp(&m.to_udp().unwrap()).unwrap();
    assert_eq!(parsed.rcode, 3);
    assert_eq!(parsed.rcode_name(), "Non-Existent Domain");
    let r = parsed.resolution().unwrap();
    assert!(r.ips.is_empty());
    assert_eq!(r.ttl, u32::MAX);
}

#[test]
fn extended_rcode_comes_from_the_opt_record() {
    let m = DnsMessage {
        rcode: 16, // BADVERS: 0 in the header, 1 in OPT's extended bits
        ..response(9, "x.example.", vec![])
    };
    let bytes = m.to_udp().unwrap();
    assert_eq!(bytes[3] & 0xf, 0);
    assert_eq!(parse_udp(&bytes).unwrap().rcode, 16);
    assert_eq!(rcode_name(16), "Bad OPT Version");
}

#[test]
fn every_cut_of_a_message_is_a_truncation_naming_its_section() {
    let m = response(
        1,
        "a.example.",
        vec![answer(
            "a.example.",
            5,
            AnswerData::A([198, 18, 0, 1].into()),
        )],
    );
    let bytes = m.to_udp().unwrap();
    for cut in 0..bytes.len() {
        let err = parse_udp(&bytes[..cut]).unwrap_err();
        assert!(err.is_truncation(), "cut at {cut}: {err}");
        let expected = if cut < 12 {
            Section::Header
        } else if cut < 12 + 15 {
            Section::Question(0)
        } else {
            Section::Answer(0)
        };
        assert_eq!(
            err,
            DnsError::Truncated {
                section: expected,
                offset: match expected {
                    Section::Header => 0,
                    Section::Question(_) => 12,
                    _ => 27,
                }
            },
            "cut at {cut}"
        );
    }
}

#[test]
fn errors_say_what_and_where() {
    let cut = parse_udp(&QUERY_BYTES[..20]).unwrap_err();
    assert_eq!(
        cut.to_string(),
        "DNS message truncated: it ends in the question 1 (byte 12)"
    );
    let mut extra = QUERY_BYTES.to_vec();
    extra.extend([0, 0]);
    assert_eq!(
        parse_udp(&extra).unwrap_err().to_string(),
        "DNS message of 31 bytes has 2 bytes after its last record"
    );
    // A compression pointer to itself is a loop, not a name.
    let mut looped = QUERY_BYTES[..12].to_vec();
    looped.extend([0xc0, 12, 0, 1, 0, 1]);
    let err = parse_udp(&looped).unwrap_err();
    assert!(
        matches!(
            err,
            DnsError::Malformed {
                section: Section::Question(0),
                offset: 12,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_a_record_of_the_wrong_length_is_malformed_not_misread() {
    let m = response(
        2,
        "b.example.",
        vec![answer(
            "b.example.",
            5,
            AnswerData::A([198, 18, 0, 2].into()),
        )],
    );
    let mut bytes = m.to_udp().unwrap();
    let rdlength = bytes.len() - 6;
    bytes[rdlength + 1] = 3; // RDLENGTH 3 for an A record
    bytes.pop();
    let err = parse_udp(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            DnsError::Malformed {
                section: Section::Answer(0),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_record_without_data_is_malformed() {
    let m = response(
        2,
        "b.example.",
        vec![answer(
            "b.example.",
            5,
            AnswerData::A([198, 18, 0, 2].into()),
        )],
    );
    let mut bytes = m.to_udp().unwrap();
    let len = bytes.len();
    bytes.truncate(len - 4);
    bytes[len - 5] = 0; // RDLENGTH 0
    let err = parse_udp(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed DNS message: answer record 1 at byte 27: A record without data"
    );
}

#[test]
fn tcp_reads_the_length_prefix_and_never_guesses_a_cut_message() {
    let q = query(0x55, "tcp.example.", 28);
    let framed = q.to_tcp().unwrap();
    assert_eq!(parse_tcp(&framed).unwrap(), q);
    assert_eq!(
        parse_tcp(&framed[..1]).unwrap_err(),
        DnsError::TcpPrefixTruncated { available: 1 }
    );
    let declared = framed.len() - 2;
    assert_eq!(
        parse_tcp(&framed[..framed.len() - 1]).unwrap_err(),
        DnsError::TcpMessageTruncated {
            declared,
            available: declared - 1
        }
    );
    assert_eq!(parse_tcp(&[0, 0]).unwrap_err(), DnsError::TcpEmptyMessage);
}

#[test]
fn tcp_segments_may_carry_several_messages() {
    let a = query(1, "one.example.", 1);
    let b = query(2, "one.example.", 28);
    let mut both = a.to_tcp().unwrap();
    both.extend(b.to_tcp().unwrap());
    let all = parse_tcp_all(&both);
    assert_eq!(all, vec![Ok(a.clone()), Ok(b)]);
    // The second one cut: the first is kept, the cut is reported.
    let all = parse_tcp_all(&both[..both.len() - 3]);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], Ok(a));
    assert!(all[1].as_ref().unwrap_err().is_truncation());
}

#[test]
fn answers_outside_the_chain_are_rejected_whole() {
    let m = response(
        3,
        "good.example.",
        vec![
            answer("good.example.", 5, AnswerData::A([198, 18, 0, 3].into())),
            answer("evil.example.", 5, AnswerData::A([198, 18, 0, 66].into())),
        ],
    );
    assert_eq!(
        m.resolution().unwrap_err().to_string(),
        "DNS answer record 2 is for evil.example., expected good.example. (query good.example.)"
    );
}

#[test]
fn other_record_types_are_named_by_number_and_skipped_by_the_chain() {
    // good.example. TXT "hi"
    let mut bytes = response(4, "good.example.", vec![]).to_udp().unwrap();
    bytes[7] = 1; // ANCOUNT 1
    bytes.extend([0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 9, 0, 3, 2, b'h', b'i']);
    let m = parse_udp(&bytes).unwrap();
    assert_eq!(
        m.answers,
        [answer("good.example.", 9, AnswerData::Other(16))]
    );
    assert_eq!(type_name(16), "TXT");
    let r = m.resolution().unwrap();
    assert_eq!(r.ttl, u32::MAX);
}

#[test]
fn fuzz_entry_accepts_the_examples() {
    fuzz_dns(QUERY_BYTES);
    fuzz_dns(&[]);
    fuzz_dns(&[0, 12, 1, 2]);
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9-]{0,12}"
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..4).prop_map(|l| format!("{}.", l.join(".")))
}

fn answer_data() -> impl Strategy<Value = AnswerData> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| AnswerData::A(b.into())),
        any::<[u8; 16]>().prop_map(|b| AnswerData::Aaaa(b.into())),
        name().prop_map(AnswerData::Cname),
    ]
}

fn message() -> impl Strategy<Value = DnsMessage> {
    (
        any::<u16>(),
        any::<bool>(),
        0u16..24,
        prop::collection::vec((name(), 1u16..300), 0..3),
        prop::collection::vec((name(), any::<u32>(), answer_data()), 0..6),
    )
        .prop_map(|(id, is_response, rcode, qs, ans)| DnsMessage {
            id,
            is_response,
            truncated: false,
            rcode,
            questions: qs
                .into_iter()
                .map(|(name, qtype)| Question { name, qtype })
                .collect(),
            answers: ans
                .into_iter()
                .map(|(name, ttl, data)| Answer { name, ttl, data })
                .collect(),
        })
}

proptest! {
    #[test]
    fn encoded_messages_parse_back_over_udp_and_tcp(m in message()) {
        prop_assert_eq!(parse_udp(&m.to_udp().unwrap()).unwrap(), m.clone());
        prop_assert_eq!(parse_tcp(&m.to_tcp().unwrap()).unwrap(), m);
    }

    #[test]
    fn any_bytes_parse_or_fail_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzz_dns(&bytes);
    }

    #[test]
    fn every_strict_prefix_of_a_message_is_an_error(m in message(), cut in any::<prop::sample::Index>()) {
        let bytes = m.to_udp().unwrap();
        let cut = cut.index(bytes.len());
        prop_assert!(parse_udp(&bytes[..cut]).is_err());
    }
}

#[test]
fn odd_bytes_in_labels_are_escaped_as_miekg_writes_them_and_encode_back() {
    // Labels "a.b" (a dot inside a label) and "X\x0fy", as a query.
    let mut bytes = QUERY_BYTES[..12].to_vec();
    bytes.extend([3, b'a', b'.', b'b', 3, b'X', 0x0f, b'y', 0, 0, 1, 0, 1]);
    let m = parse_udp(&bytes).unwrap();
    assert_eq!(m.questions[0].name, r"a\.b.x\015y.");
    assert_eq!(parse_udp(&m.to_udp().unwrap()).unwrap(), m);
}

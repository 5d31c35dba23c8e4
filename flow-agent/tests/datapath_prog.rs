//! Datapath programs driven with crafted packets through BPF_PROG_TEST_RUN (no namespaces).
//! Requires root (loading BPF programs); without it every test fails with the load error.

mod datapath_support;

use datapath_support::*;
use flow_agent::datapath::event::{CtState, EventKind, Family, L7Kind, RawEvent, flags};
use flow_agent::datapath::{
    Aggregation, Datapath, DatapathConfig, IDENTITY_WORLD, TcProgram, Transport,
};

/// TC_ACT_UNSPEC: the observer never changes the packet's fate when forwarding.
const PASS: i32 = -1;

fn load(aggregation: Aggregation) -> Datapath {
    let cfg = DatapathConfig {
        aggregation,
        kernel_drops: false,
        ..DatapathConfig::default()
    };
    let mut dp = Datapath::load(cfg).expect("load datapath (needs root and BPF)");
    dp.set_ipcache(&[
        ("198.18.0.0/24".parse().unwrap(), 1001),
        ("198.18.1.0/24".parse().unwrap(), 2002),
        ("198.18.1.7/32".parse().unwrap(), 2003),
        ("2001:2::/64".parse().unwrap(), 3003),
    ])
    .unwrap();
    dp
}

fn run(dp: &Datapath, prog: TcProgram, pkt: &[u8]) {
    let (rc, _) = dp.test_run(prog, pkt, 1).unwrap();
    assert_eq!(rc, PASS, "observer must pass the packet");
}

fn events(dp: &mut Datapath) -> Vec<Vec<u8>> {
    dp.drain_events().unwrap()
}

const C: &str = "198.18.0.5";
const S: &str = "198.18.1.9";

#[test]
fn new_tcp_connection_emits_one_trace_event_with_identities() {
    let mut dp = load(Aggregation::Flows);
    run(&dp, TcProgram::Egress, &tcp(C, 40000, S, 80, SYN, 1, b""));
    let recs = events(&mut dp);
    assert_eq!(recs.len(), 1);
    let ev = RawEvent::parse(&recs[0]).unwrap();
    assert_eq!(ev.kind, EventKind::Trace);
    assert_eq!(ev.ct_state, CtState::New);
    assert!(!ev.is_reply);
    assert_eq!(ev.family, Family::V4);
    assert_eq!(ev.src_ip(), Some(C.parse().unwrap()));
    assert_eq!(ev.dst_ip(), Some(S.parse().unwrap()));
    assert_eq!(
        (ev.sport, ev.dport, ev.l4_proto, ev.tcp_flags),
        (40000, 80, 6, SYN)
    );
    assert_eq!((ev.src_identity, ev.dst_identity), (1001, 2002));
    assert_eq!(ev.eth_src, [2, 0, 0, 0, 0, 0x0a]);
    assert_eq!((ev.l3_off, ev.l4_off, ev.payload_off), (14, 34, 54));
    assert_eq!(
        ev.payload.len(),
        54,
        "non-L7 records carry the headers only"
    );
    assert_eq!(dp.counters().unwrap().ct_new, 1);
}

#[test]
fn longest_ipcache_prefix_wins_and_unknown_addresses_are_world() {
    let mut dp = load(Aggregation::Flows);
    run(
        &dp,
        TcProgram::Ingress,
        &tcp("203.0.113.1", 1, "198.18.1.7", 443, SYN, 1, b""),
    );
    let recs = events(&mut dp);
    let ev = RawEvent::parse(&recs[0]).unwrap();
    assert_eq!((ev.src_identity, ev.dst_identity), (IDENTITY_WORLD, 2003));
}

#[test]
fn established_and_bulk_packets_emit_nothing_but_the_first_reply_does() {
    let mut dp = load(Aggregation::Flows);
    run(&dp, TcProgram::Egress, &tcp(C, 40001, S, 80, SYN, 1, b""));
    run(
        &dp,
        TcProgram::Ingress,
        &tcp(S, 80, C, 40001, SYN | ACK, 9, b""),
    );
    let recs = events(&mut dp);
    assert_eq!(recs.len(), 2);
    let reply = RawEvent::parse(&recs[1]).unwrap();
    assert!(reply.is_reply);
    assert_eq!(reply.ct_state, CtState::Reply);
    assert_eq!((reply.src_identity, reply.dst_identity), (2002, 1001));

    run(&dp, TcProgram::Egress, &tcp(C, 40001, S, 80, ACK, 2, b""));
    for i in 0..100u32 {
        run(
            &dp,
            TcProgram::Egress,
            &tcp(C, 40001, S, 80, ACK | PSH, 2 + i * 1000, &[0x42; 1000]),
        );
        run(&dp, TcProgram::Ingress, &tcp(S, 80, C, 40001, ACK, 10, b""));
    }
    assert!(
        events(&mut dp).is_empty(),
        "established packets must not emit"
    );
    let c = dp.counters().unwrap();
    assert_eq!(c.packets, 203);
    assert_eq!(c.events, 2);
}

#[test]
fn fin_and_rst_emit_closing_events_once_per_direction() {
    let mut dp = load(Aggregation::Flows);
    run(&dp, TcProgram::Egress, &tcp(C, 40002, S, 80, SYN, 1, b""));
    run(
        &dp,
        TcProgram::Egress,
        &tcp(C, 40002, S, 80, FIN | ACK, 2, b""),
    );
    run(
        &dp,
        TcProgram::Egress,
        &tcp(C, 40002, S, 80, FIN | ACK, 2, b""),
    ); // retransmission
    run(&dp, TcProgram::Ingress, &tcp(S, 80, C, 40002, RST, 9, b""));
    let recs: Vec<_> = events(&mut dp);
    let evs: Vec<_> = recs.iter().map(|r| RawEvent::parse(r).unwrap()).collect();
    assert_eq!(evs.len(), 3);
    assert_eq!(evs[1].ct_state, CtState::Closing);
    assert_eq!(evs[1].tcp_flags & FIN, FIN);
    assert_eq!(evs[2].ct_state, CtState::Closing);
    assert!(evs[2].is_reply);
}

#[test]
fn a_syn_on_a_closed_tuple_is_a_new_connection() {
    let mut dp = load(Aggregation::Flows);
    run(&dp, TcProgram::Egress, &tcp(C, 40008, S, 80, SYN, 1, b""));
    run(&dp, TcProgram::Egress, &tcp(C, 40008, S, 80, SYN, 1, b"")); // retransmitted SYN
    run(
        &dp,
        TcProgram::Egress,
        &tcp(C, 40008, S, 80, RST | ACK, 2, b""),
    );
    run(&dp, TcProgram::Egress, &tcp(C, 40008, S, 80, SYN, 500, b""));
    let recs = events(&mut dp);
    let states: Vec<_> = recs
        .iter()
        .map(|r| RawEvent::parse(r).unwrap().ct_state)
        .collect();
    assert_eq!(states, [CtState::New, CtState::Closing, CtState::New]);
}

#[test]
fn http_request_head_emits_with_payload() {
    let mut dp = load(Aggregation::Flows);
    let req = b"GET /index.html HTTP/1.1\r\nHost: web\r\n\r\n";
    run(&dp, TcProgram::Egress, &tcp(C, 40003, S, 80, SYN, 1, b""));
    run(
        &dp,
        TcProgram::Egress,
        &tcp(C, 40003, S, 80, ACK | PSH, 2, req),
    );
    run(
        &dp,
        TcProgram::Egress,
        &tcp(
            C,
            40003,
            S,
            80,
            ACK | PSH,
            2 + req.len() as u32,
            b"body bytes that follow",
        ),
    );
    let recs = events(&mut dp);
    assert_eq!(recs.len(), 2, "complete head: no continuation segments");
    let ev = RawEvent::parse(&recs[1]).unwrap();
    assert!(ev.has_flag(flags::L7_HEAD));
    assert_eq!(ev.l7_kind, L7Kind::HttpRequest);
    assert_eq!(ev.ct_state, CtState::Established);
    assert_eq!(ev.l7_bytes(), req);
    assert_eq!(ev.tcp_seq, 2);

    run(
        &dp,
        TcProgram::Ingress,
        &tcp(
            S,
            80,
            C,
            40003,
            ACK | PSH,
            9,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
    );
    let recs = events(&mut dp);
    let resp = RawEvent::parse(recs.last().unwrap()).unwrap();
    assert_eq!(resp.l7_kind, L7Kind::HttpResponse);
    assert!(resp.is_reply);
}

#[test]
fn an_l7_segment_of_the_capture_size_is_captured_whole() {
    let mut dp = load(Aggregation::Flows);
    run(&dp, TcProgram::Egress, &tcp(C, 40006, S, 80, SYN, 1, b""));
    // Exactly the default capture size of payload, the head still open (as a client writing a
    // large head in capture-sized pieces sends it): the capture counts payload bytes, so the
    // relay gets every byte to reassemble.
    let cap = usize::from(DatapathConfig::default().cap_len);
    let mut head = b"GET /large HTTP/1.1\r\nX-Pad: ".to_vec();
    head.resize(cap, b'p');
    run(
        &dp,
        TcProgram::Egress,
        &tcp(C, 40006, S, 80, ACK | PSH, 2, &head),
    );
    let recs = events(&mut dp);
    let ev = RawEvent::parse(recs.last().unwrap()).unwrap();
    assert!(ev.has_flag(flags::L7_HEAD));
    assert_eq!(ev.l7_bytes(), &head[..]);
    assert!(!ev.has_flag(flags::TRUNCATED));
}

#[test]
fn http_head_spanning_segments_emits_continuations_until_complete() {
    let mut dp = load(Aggregation::Flows);
    run(&dp, TcProgram::Egress, &tcp(C, 40004, S, 80, SYN, 1, b""));
    let parts: [&[u8]; 3] = [
        b"POST /api HTTP/1.1\r\nHost: w",
        b"eb\r\nX-Long: aaaaaaaa",
        b"aaaa\r\n\r\n{\"k\":1}",
    ];
    let mut seq = 2;
    for p in parts {
        run(
            &dp,
            TcProgram::Egress,
            &tcp(C, 40004, S, 80, ACK | PSH, seq, p),
        );
        seq += p.len() as u32;
    }
    run(
        &dp,
        TcProgram::Egress,
        &tcp(C, 40004, S, 80, ACK | PSH, seq, b"more body"),
    );
    let recs = events(&mut dp);
    let evs: Vec<_> = recs
        .iter()
        .skip(1)
        .map(|r| RawEvent::parse(r).unwrap())
        .collect();
    assert_eq!(
        evs.len(),
        3,
        "head + 2 continuations, nothing after the head completed"
    );
    assert!(evs[0].has_flag(flags::L7_HEAD));
    for (i, ev) in evs.iter().enumerate().skip(1) {
        assert!(ev.has_flag(flags::L7_CONT));
        assert_eq!(ev.l7_segment as usize, i);
        assert_eq!(ev.l7_bytes(), parts[i]);
    }
}

#[test]
fn continuation_segments_are_bounded() {
    let mut dp = load(Aggregation::Flows);
    run(&dp, TcProgram::Egress, &tcp(C, 40005, S, 80, SYN, 1, b""));
    run(
        &dp,
        TcProgram::Egress,
        &tcp(C, 40005, S, 80, ACK, 2, b"GET / HTTP/1.1\r\nX: "),
    );
    for i in 0..20 {
        run(
            &dp,
            TcProgram::Egress,
            &tcp(C, 40005, S, 80, ACK, 100 + i, b"never-ending header"),
        );
    }
    let n = events(&mut dp).len();
    assert_eq!(n, 1 + 1 + 8, "SYN + head + default 8 continuation segments");
}

#[test]
fn dns_on_port_53_emits_every_message() {
    let mut dp = load(Aggregation::Flows);
    for _ in 0..3 {
        run(
            &dp,
            TcProgram::Egress,
            &udp(
                C,
                5353,
                S,
                53,
                b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
            ),
        );
    }
    let recs = events(&mut dp);
    assert_eq!(recs.len(), 3);
    let ev = RawEvent::parse(&recs[2]).unwrap();
    assert_eq!(ev.l7_kind, L7Kind::Dns);
    assert_eq!(ev.l7_bytes().len(), 12);
}

#[test]
fn ipv6_with_extension_headers_parses_l4() {
    let mut dp = load(Aggregation::Flows);
    let pkt = packet(
        "2001:2::1",
        "2001:2::2",
        L4::Udp {
            sport: 7000,
            dport: 8000,
        },
        b"hi",
        true,
    );
    run(&dp, TcProgram::Ingress, &pkt);
    let recs = events(&mut dp);
    assert_eq!(recs.len(), 1);
    let ev = RawEvent::parse(&recs[0]).unwrap();
    assert_eq!(ev.family, Family::V6);
    assert_eq!(ev.l4_proto, 17);
    assert_eq!((ev.sport, ev.dport), (7000, 8000));
    assert_eq!(ev.l4_off, 14 + 40 + 16);
    assert_eq!((ev.src_identity, ev.dst_identity), (3003, 3003));
}

#[test]
fn icmp_echo_reply_is_the_reply_of_its_request() {
    let mut dp = load(Aggregation::Flows);
    run(
        &dp,
        TcProgram::Egress,
        &packet(
            C,
            S,
            L4::Icmp {
                ty: 8,
                code: 0,
                id: 77,
            },
            b"ping",
            false,
        ),
    );
    run(
        &dp,
        TcProgram::Ingress,
        &packet(
            S,
            C,
            L4::Icmp {
                ty: 0,
                code: 0,
                id: 77,
            },
            b"ping",
            false,
        ),
    );
    run(
        &dp,
        TcProgram::Egress,
        &packet(
            C,
            S,
            L4::Icmp {
                ty: 8,
                code: 0,
                id: 77,
            },
            b"ping",
            false,
        ),
    );
    let recs = events(&mut dp);
    assert_eq!(recs.len(), 2);
    let reply = RawEvent::parse(&recs[1]).unwrap();
    assert!(reply.is_reply);
    assert_eq!((reply.icmp_type, reply.sport), (0, 77));
}

#[test]
fn garbage_and_short_packets_are_counted_and_passed() {
    let mut dp = load(Aggregation::Flows);
    // IPv6 hop-by-hop header claiming 1.6 KB in a 100-byte packet.
    let mut long_ext = packet(
        "2001:2::1",
        "2001:2::2",
        L4::Udp { sport: 1, dport: 2 },
        b"x",
        true,
    );
    long_ext[14 + 40 + 1] = 200;
    run(&dp, TcProgram::Ingress, &long_ext);
    let mut bad_ihl = tcp(C, 1, S, 2, SYN, 1, b"");
    bad_ihl[14] = 0x41; // IHL 1
    run(&dp, TcProgram::Ingress, &bad_ihl);
    let mut cut_tcp = tcp(C, 1, S, 2, SYN, 1, b"");
    cut_tcp.truncate(14 + 20 + 8);
    run(&dp, TcProgram::Ingress, &cut_tcp);
    assert!(events(&mut dp).is_empty());
    assert_eq!(dp.counters().unwrap().parse_err, 3);
}

#[test]
fn aggregation_none_emits_every_packet() {
    let mut dp = load(Aggregation::None);
    for i in 0..10 {
        run(&dp, TcProgram::Egress, &tcp(C, 40006, S, 80, ACK, i, b"x"));
    }
    assert_eq!(events(&mut dp).len(), 10);
}

#[test]
fn conntrack_is_per_interface_direction_agnostic() {
    // The same packet at ingress then egress of one interface is one connection.
    let mut dp = load(Aggregation::Flows);
    let syn = tcp(C, 40007, S, 80, SYN, 1, b"");
    run(&dp, TcProgram::Ingress, &syn);
    run(&dp, TcProgram::Egress, &syn);
    assert_eq!(events(&mut dp).len(), 1);
}

#[test]
fn a_full_ring_counts_every_lost_record() {
    let cfg = DatapathConfig {
        aggregation: Aggregation::None,
        ring_bytes: 4096,
        kernel_drops: false,
        ..DatapathConfig::default()
    };
    let mut dp = Datapath::load(cfg).expect("load datapath (needs root and BPF)");
    for i in 0..100 {
        run(&dp, TcProgram::Egress, &tcp(C, 40009, S, 80, ACK, i, b""));
    }
    let c = dp.counters().unwrap();
    assert!(c.ring_fail > 0, "a 4 KiB ring cannot hold 100 records");
    assert_eq!(
        c.events + c.ring_fail,
        100,
        "every record is either written or counted lost"
    );
    assert_eq!(events(&mut dp).len() as u64, c.events);
}

#[test]
fn the_perf_buffer_fallback_carries_the_same_records() {
    let cfg = DatapathConfig {
        transport: Transport::Perf,
        kernel_drops: false,
        ..DatapathConfig::default()
    };
    let mut dp = Datapath::load(cfg).expect("load datapath (needs root and BPF)");
    assert_eq!(dp.transport(), Transport::Perf);
    run(&dp, TcProgram::Egress, &tcp(C, 40010, S, 80, SYN, 1, b""));
    run(&dp, TcProgram::Egress, &tcp(C, 40010, S, 80, ACK, 2, b""));
    let recs = events(&mut dp);
    assert_eq!(recs.len(), 1);
    let ev = RawEvent::parse(&recs[0]).unwrap();
    assert_eq!(
        (ev.ct_state, ev.sport, ev.tcp_flags),
        (CtState::New, 40010, SYN)
    );
}

#[test]
fn auto_transport_picks_the_ring_buffer_on_this_kernel() {
    let dp = load(Aggregation::Flows);
    assert_eq!(dp.transport(), Transport::RingBuf);
}

#[test]
fn ring_fill_is_sampled_and_its_high_water_mark_is_reset_by_each_reading() {
    let cfg = DatapathConfig {
        aggregation: Aggregation::None,
        ring_bytes: 1 << 16,
        kernel_drops: false,
        ..DatapathConfig::default()
    };
    let mut dp = Datapath::load(cfg).expect("load datapath (needs root and BPF)");
    let empty = dp.ring_fill().unwrap().expect("ring-buffer transport");
    assert_eq!((empty.size, empty.used, empty.peak), (1 << 16, 0, 0));
    for i in 0..10 {
        run(&dp, TcProgram::Egress, &tcp(C, 40011, S, 80, ACK, i, b""));
    }
    // A 54-byte frame: 128-byte header + 54 captured bytes + the kernel's 8-byte record
    // header, rounded up to 8 bytes.
    const RECORD: u64 = (128 + 54 + 8 + 7) & !7;
    let full = dp.ring_fill().unwrap().unwrap();
    assert_eq!((full.used, full.peak), (10 * RECORD, 10 * RECORD));
    let again = dp.ring_fill().unwrap().unwrap();
    assert_eq!(
        (again.used, again.peak),
        (10 * RECORD, 0),
        "the peak covers the interval since the previous reading"
    );
    assert_eq!(events(&mut dp).len(), 10);
    assert_eq!(dp.ring_fill().unwrap().unwrap().used, 0, "drained");
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Webb datapath event contract, layout version 1.
 *
 * Every ring-buffer record is one `struct webb_event` header (128 bytes,
 * host byte order, naturally aligned, no implicit padding) followed by
 * `cap_len` captured packet bytes. The Rust mirror and the safe parser live in
 * src/datapath/event.rs; keep both in step and never reorder fields: append in
 * the reserved tail and bump WEBB_EVENT_VERSION instead.
 *
 * Multi-byte numbers are host order (ports included); addresses and MACs are
 * network order byte arrays. IPv4 addresses are IPv4-mapped IPv6
 * (::ffff:a.b.c.d). Times are bpf_ktime_get_boot_ns(): CLOCK_BOOTTIME.
 */
#ifndef WEBB_EVENTS_H
#define WEBB_EVENTS_H

#define WEBB_EVENT_VERSION 1
#define WEBB_EVENT_HDR_LEN 128
/* Capture limit: user-configurable snap length is clamped to this. */
#define WEBB_CAP_MAX 1536

enum webb_event_kind {
	WEBB_EV_TRACE = 1,          /* packet observed and forwarded */
	WEBB_EV_DROP = 2,           /* packet dropped by Webb's datapath */
	WEBB_EV_POLICY_VERDICT = 3, /* policy decision on a new (or re-evaluated) connection */
	WEBB_EV_KERNEL_DROP = 4,    /* skb:kfree_skb in a watched netns */
};

enum webb_direction {
	WEBB_DIR_INGRESS = 0,
	WEBB_DIR_EGRESS = 1,
	WEBB_DIR_UNKNOWN = 255, /* kernel drops: no TC hook involved */
};

enum webb_ct_state {
	WEBB_CT_NONE = 0, /* no conntrack (non-IP, kernel drop, parse failure) */
	WEBB_CT_NEW = 1,
	WEBB_CT_ESTABLISHED = 2,
	WEBB_CT_REPLY = 3,
	WEBB_CT_CLOSING = 4,
};

enum webb_verdict {
	WEBB_VERDICT_FORWARD = 0,
	WEBB_VERDICT_DROP = 1,
	WEBB_VERDICT_AUDIT = 2, /* policy would drop; audit mode lets the packet pass */
};

/* Cilium drop reasons the policy stage sets (flow.DropReason). */
#define WEBB_DROP_POLICY_DENIED 133 /* default deny: no rule allows the flow */
#define WEBB_DROP_POLICY_DENY 181   /* an explicit deny rule matched */

/* Policy match types, Cilium's numbering (monitor/api PolicyMatchType). */
enum webb_match_type {
	WEBB_MATCH_NONE = 0,
	WEBB_MATCH_L3_ONLY = 1,
	WEBB_MATCH_L3_L4 = 2,
	WEBB_MATCH_L4_ONLY = 3,
	WEBB_MATCH_ALL = 4,
	WEBB_MATCH_L3_PROTO = 5,
	WEBB_MATCH_PROTO_ONLY = 6,
};

enum webb_l7_kind {
	WEBB_L7_NONE = 0,
	WEBB_L7_HTTP_REQUEST = 1,
	WEBB_L7_HTTP_RESPONSE = 2,
	WEBB_L7_DNS = 3,
};

/* event flags */
#define WEBB_F_IS_REPLY (1 << 0)  /* packet goes against the connection's first direction */
#define WEBB_F_L7_HEAD (1 << 1)   /* payload begins an L7 message (see l7_kind) */
#define WEBB_F_L7_CONT (1 << 2)   /* continuation segment of an incomplete L7 head */
#define WEBB_F_TRUNCATED (1 << 3) /* cap_len < orig_len */
#define WEBB_F_NO_L2 (1 << 4)     /* capture starts at L3 (kernel drops); eth_* are zero */
#define WEBB_F_PARSE_ERR (1 << 5) /* headers were short/garbled; L3/L4 fields partial */
#define WEBB_F_DNS_HELD (1 << 6)  /* DNS answer the datapath dropped for the agent to learn from
				     and put back (toFQDNs); the capture is the whole frame */

/* skb->mark of a held DNS answer the agent puts back (AF_PACKET): the datapath lets it pass. */
#define WEBB_REINJECT_MARK 0x77ebd25u

struct webb_event {
	__u8 kind;            /*   0 enum webb_event_kind */
	__u8 version;         /*   1 WEBB_EVENT_VERSION */
	__u16 hdr_len;        /*   2 WEBB_EVENT_HDR_LEN: capture starts here */
	__u32 ifindex;        /*   4 interface of the hook (kernel drop: skb->dev) */
	__u64 ktime_ns;       /*   8 CLOCK_BOOTTIME nanoseconds */
	__u32 netns_ino;      /*  16 netns inode of the hook's device (0 = unknown) */
	__u8 direction;       /*  20 enum webb_direction at the TC hook */
	__u8 ct_state;        /*  21 enum webb_ct_state */
	__u8 flags;           /*  22 WEBB_F_* */
	__u8 verdict;         /*  23 enum webb_verdict */
	__u16 drop_reason;    /*  24 Cilium drop reason code (0 = none) */
	__u8 match_type;      /*  26 enum webb_match_type */
	__u8 family;          /*  27 4, 6 or 0 (not IP) */
	__u32 rule_id;        /*  28 policy rule id (0 = none) */
	__u32 src_identity;   /*  32 security identity of the source */
	__u32 dst_identity;   /*  36 security identity of the destination */
	__u8 saddr[16];       /*  40 */
	__u8 daddr[16];       /*  56 */
	__u16 sport;          /*  72 host order; ICMP echo: identifier */
	__u16 dport;          /*  74 host order */
	__u8 l4_proto;        /*  76 IPPROTO_* after the extension header walk */
	__u8 tcp_flags;       /*  77 FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128 */
	__u8 icmp_type;       /*  78 */
	__u8 icmp_code;       /*  79 */
	__u8 eth_src[6];      /*  80 */
	__u8 eth_dst[6];      /*  86 */
	__u32 orig_len;       /*  92 skb->len */
	__u16 cap_len;        /*  96 captured bytes following the header */
	__u16 l3_off;         /*  98 offset of the L3 header inside the capture */
	__u16 l4_off;         /* 100 offset of the L4 header inside the capture (0 = none) */
	__u16 payload_off;    /* 102 offset of the L4 payload inside the capture (0 = none) */
	__u32 tcp_seq;        /* 104 TCP sequence number (host order) */
	__u32 kdrop_reason;   /* 108 enum skb_drop_reason (kernel drops) */
	__u64 kdrop_location; /* 112 kernel text address that freed the skb */
	__u16 ethertype;      /* 120 host order (0 for kernel drops without L2) */
	__u8 l7_segment;      /* 122 continuation index (0 = head, 1.. = following segments) */
	__u8 l7_kind;         /* 123 enum webb_l7_kind */
	__u32 _reserved;      /* 124 zero */
};

_Static_assert(sizeof(struct webb_event) == WEBB_EVENT_HDR_LEN, "event header is 128 bytes");

/*
 * Per-CPU datapath counters (map COUNTERS, one entry, summed over CPUs by userspace).
 * Not part of the ring record; mirrored by `Counters` in src/datapath/mod.rs.
 */
struct webb_counters {
	__u64 packets;      /* packets seen by the TC programs */
	__u64 bytes;        /* their skb->len */
	__u64 events;       /* records written to the ring (TC and kernel drops) */
	__u64 ring_fail;    /* records lost: ring full (bpf_ringbuf_output failed) */
	__u64 parse_err;    /* packets with short/garbled headers (passed unchanged) */
	__u64 ct_new;       /* conntrack entries created */
	__u64 l7_events;    /* L7 head/continuation records */
	__u64 kdrop_events; /* kernel-drop records */
};

#endif

// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
/*
 * Webb datapath: TC observers for ingress/egress plus a skb:kfree_skb tracepoint.
 *
 * Per packet: parse L2-L4, look the connection up in an LRU conntrack keyed by the
 * normalized 5-tuple (each watched interface it crosses keeps its own slot of the entry),
 * and emit a ring record only when something worth a flow happens (new connection, first
 * reply, new SYN/FIN/RST in a direction, drops, L7 heads and their continuations).
 * `cfg_aggregate = 0` emits every packet.
 * Identities come from the LPM ipcache on the first packet and are cached in the
 * conntrack entry, so established packets cost one hash lookup.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "events.h"

#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT 2
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_HLEN 14
/* IPv6 next-header values (uapi defines, absent from vmlinux.h). */
#define IPPROTO_HOPOPTS 0
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_ICMPV6 58
#define IPPROTO_DSTOPTS 60

#define ID_WORLD 2
#define SCRATCH_DATA 2048 /* power of two >= WEBB_CAP_MAX, for verifier masks */
#define MAX_IPV6_EXT 8
#define MAX_L3_OFF 512

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define SEEN_BIT 0x80

/* Knobs (.rodata), set by the loader before load. */
const volatile __u32 cfg_cap_len = 512;         /* snap length of L7 records */
const volatile __u32 cfg_aggregate = 1;         /* 0 = emit every packet */
const volatile __u64 cfg_wakeup_bytes = 262144; /* wake the reader past this much pending data */
const volatile __u32 cfg_l7_max_segments = 8;   /* continuation segments per L7 head */
const volatile __u32 cfg_l7_max_bytes = 16384;  /* payload bytes per L7 head */
const volatile __u32 cfg_kdrop_all_netns = 0;   /* 1 = report kernel drops of every netns */
const volatile __u32 cfg_policy_audit = 0;      /* 1 = policy drops become AUDIT verdicts and pass */

#ifdef WEBB_PERF
/* Fallback transport for kernels without BPF ring buffers (< 5.8): one perf buffer per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} EVENTS SEC(".maps");
#else
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} EVENTS SEC(".maps");
#endif

/* Largest ring fill (bytes pending, this record included) a write has seen on each CPU since
 * the agent last took it: the ring's high-water mark, which a periodic sample of the fill would
 * miss between samples. Its own map: the agent resets it, and COUNTERS must never be rewritten. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} RING_PEAK SEC(".maps");

struct ct_key {
	__u32 lo[4]; /* the numerically smaller (address, port) end */
	__u32 hi[4];
	__u16 port_lo;
	__u16 port_hi;
	__u32 if_proto; /* L4 protocol; ifindex << 8 | protocol for a hook past CT_HOOKS: 40 bytes */
};

/* One watched interface's view of a connection: each hook reports its own lifecycle steps and
 * decides its own policy direction. */
struct ct_hook {
	__u32 ifindex; /* 0: slot free */
	__u32 rule_id;
	__u32 policy_rev; /* POLICY_STATE revision the verdict was computed under */
	__u16 drop_reason;
	__u8 verdict;
	__u8 match_type;
	__u8 seen[2]; /* per direction (0 original, 1 reply): SEEN_BIT | SYN/FIN/RST seen */
	__u8 l7_pending[2]; /* webb_l7_kind whose head is still incomplete */
	__u8 l7_segs[2];
	__u16 l7_bytes[2];
};

/* A connection crosses two watched interfaces on a node when both ends are local pods (the
 * source's host-side veth, then the destination's): one entry with a slot per hook, so the
 * second hook finds what the first created (a lookup instead of a miss, two ipcache lookups and
 * an LRU insert). A third interface keys its own entry with its ifindex. */
#define CT_HOOKS 2

struct ct_entry {
	__u32 id_lo; /* identity of the lo end */
	__u32 id_hi;
	__u8 init_lo; /* the connection's first packet came from the lo end */
	__u8 pad[3];
	struct ct_hook hook[CT_HOOKS];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
} CT SEC(".maps");

struct ipcache_key {
	__u32 prefixlen; /* over the IPv4-mapped 128-bit address */
	__u32 addr[4];
};

struct ipcache_value {
	__u32 identity;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
} IPCACHE SEC(".maps");

/* The ipcache's entries again, keyed by prefix length and masked address, for lookups by
 * length (webb_ipcache_lookup). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
} IPCACHE_HASH SEC(".maps");

/* [0]: the prefix lengths in IPCACHE_HASH, longest first, one per byte from the lowest, each
 * plus 1 (a 0 byte ends the list); IPCACHE_LENS_TRIE when there are more than IPCACHE_LENS_MAX.
 * One u64, so a packet reads the old list or the new one, never a mix. */
#define IPCACHE_LENS_MAX 8
#define IPCACHE_LENS_TRIE (~0ULL)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} IPCACHE_LENS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct webb_counters);
} COUNTERS SEC(".maps");

/*
 * Policy, compiled by the agent (src/policy/compile.rs, laid out for this map by
 * src/policy/layout.rs). One hash holds two slots; the agent fills the inactive slot, then flips
 * POLICY_STATE (a single u32 write), so a packet sees either the old or the new policy, never a
 * mix. Only exact hash lookups, a bounded number of them, so a verdict costs the same with 1 or
 * 10,000 rules (an LPM trie's walk grows with its size):
 *  - per (direction, endpoint, remote) a summary (level 0) says which L4 levels hold entries and
 *    carries the entry for every L4, if any; remote 0 is the wildcard identity, and its summary
 *    also carries the endpoint's default-deny marker;
 *  - below it, entries for a protocol (level 1) or a block of ports: the low 12, 8 or 4 bits of
 *    the port free (levels 2-4) or none (level 5). The agent expands each aligned port block of
 *    a range to the next of these strides, so the first hit from the most specific level down is
 *    what a longest-prefix match over the ranges would answer.
 */
#define POLICY_DIR_INGRESS 0
#define POLICY_DIR_EGRESS 1
#define POLICY_ALLOW 1
#define POLICY_DENY 2
#define POLICY_L4_NONE 0
#define POLICY_L4_PROTO 1
#define POLICY_L4_PORT 2
#define POLICY_LVL_SUMMARY 0
#define POLICY_LVL_PROTO 1
#define POLICY_LVL_PORT4 2  /* port >> 12 */
#define POLICY_LVL_PORT8 3  /* port >> 8 */
#define POLICY_LVL_PORT12 4 /* port >> 4 */
#define POLICY_LVL_PORT16 5 /* the port */

struct policy_key {
	__u8 slot;
	__u8 dir;
	__u8 level;
	__u8 zero;
	__u32 endpoint;
	__u32 remote;
	__u8 proto;
	__u8 port_hi; /* the port, big endian, its free low bits zero */
	__u8 port_lo;
	__u8 zero2;
};

/* Merged groups (POLICY_F_MERGED in a remote's summary): the agent copied the wildcard's
 * entries into the remote's group with the precedence below already applied, and the marker
 * into its summary, so such a remote's group alone decides. */
#define POLICY_F_WILD 1   /* the answer is the wildcard's entry (policy_match_type) */
#define POLICY_F_MERGED 2 /* summaries */

struct policy_value {
	__u32 rule_id; /* the agent maps it back to the policies (name, namespace, kind, ...) */
	__u8 action;   /* POLICY_ALLOW / POLICY_DENY; 0 in a summary with no every-L4 entry */
	__u8 l4;       /* POLICY_L4_*: how specific the entry is below the remote identity */
	__u8 levels;   /* summaries: bit n set = entries at level n exist under it */
	__u8 flags;    /* POLICY_F_* */
	__u32 marker;  /* wildcard and merged summaries: the default-deny marker's rule id (0: not
			* selected) */
	__u16 port_min; /* summaries: the ports the group's port entries span (any protocol), so */
	__u16 port_max; /* a port outside them skips those levels' lookups */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
} POLICY SEC(".maps");

/* Endpoint identities whose egress policy has toFQDNs peers, filled by the agent. A DNS answer
 * to one of them is held: recorded whole (waking the reader at once), dropped, and put back by
 * the agent with WEBB_REINJECT_MARK once the addresses it gives are in the policy, so the first
 * packet to a new address never races the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} FQDN_HOLD SEC(".maps");

/* [0] = policy revision; 0 = no policy ever installed; the active slot is revision & 1. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} POLICY_STATE SEC(".maps");

struct scratch {
	struct webb_event ev;
	__u8 data[SCRATCH_DATA];
};

/* Slot 0: TC programs; slot 1: kfree_skb (it may nest inside process context). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct scratch);
} SCRATCH SEC(".maps");

/* netns inode -> 1: namespaces whose kernel drops are reported. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} WATCH_NETNS SEC(".maps");

/* netns cookie -> netns inode, filled by the loader for every namespace it attaches in, so
 * TC records name their namespace (ifindex alone is ambiguous across namespaces). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u32);
} NETNS_INO SEC(".maps");

/* ifindex -> netns inode of the attached interface (0 when two attached namespaces share
 * the index): the fallback when the cookie cannot be trusted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} IFINDEX_NS SEC(".maps");

struct pkt {
	__u32 saddr[4];
	__u32 daddr[4];
	__u32 seq;
	__u32 payload_len;
	__u16 sport;
	__u16 dport;
	__u16 l3_off;
	__u16 l4_off;
	__u16 payload_off;
	__u16 ethertype;
	__u8 family;
	__u8 proto;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 icmp_echo;
};

struct ip6_ext {
	__u8 nexthdr;
	__u8 hdrlen;
	__u16 frag_off; /* fragment header only */
};

static __always_inline void set_v4(__u32 *dst, __u32 a)
{
	dst[0] = 0;
	dst[1] = 0;
	dst[2] = bpf_htonl(0xffff);
	dst[3] = a;
}

/* Parses L2-L4 with direct packet access. Returns -1 on short/garbled headers. */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 off = ETH_HLEN;
	__u8 nh;

	if ((void *)(eth + 1) > end)
		return -1;
	p->ethertype = bpf_ntohs(eth->h_proto);
	p->l3_off = ETH_HLEN;
	if (p->ethertype == ETH_P_IP) {
		struct iphdr *ip = data + off;
		if ((void *)(ip + 1) > end)
			return -1;
		if (ip->ihl < 5 || ip->version != 4)
			return -1;
		p->family = 4;
		set_v4(p->saddr, ip->saddr);
		set_v4(p->daddr, ip->daddr);
		nh = ip->protocol;
		off += ip->ihl * 4;
		if (bpf_ntohs(ip->frag_off) & 0x1fff) { /* later fragment: no L4 header */
			p->proto = nh;
			return 0;
		}
	} else if (p->ethertype == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > end)
			return -1;
		p->family = 6;
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
		nh = ip6->nexthdr;
		off += sizeof(*ip6);
#pragma unroll
		for (int i = 0; i < MAX_IPV6_EXT; i++) {
			struct ip6_ext *x;
			if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING && nh != IPPROTO_DSTOPTS &&
			    nh != IPPROTO_FRAGMENT && nh != IPPROTO_AH)
				break;
			if (off > MAX_L3_OFF)
				return -1;
			x = data + off;
			if ((void *)(x + 1) > end)
				return -1;
			if (nh == IPPROTO_FRAGMENT) {
				nh = x->nexthdr;
				off += 8;
				if (bpf_ntohs(x->frag_off) & 0xfff8) {
					p->proto = nh;
					return 0;
				}
			} else if (nh == IPPROTO_AH) {
				nh = x->nexthdr;
				off += ((__u32)x->hdrlen + 2) * 4;
			} else {
				nh = x->nexthdr;
				off += ((__u32)x->hdrlen + 1) * 8;
			}
		}
	} else {
		return 0; /* not IP: family 0 */
	}
	p->proto = nh;
	if (off > MAX_L3_OFF)
		return -1;
	p->l4_off = off;
	if (nh == IPPROTO_TCP) {
		struct tcphdr *th = data + off;
		if ((void *)(th + 1) > end)
			return -1;
		p->sport = bpf_ntohs(th->source);
		p->dport = bpf_ntohs(th->dest);
		p->tcp_flags = ((__u8 *)th)[13];
		p->seq = bpf_ntohl(th->seq);
		if (th->doff < 5)
			return -1;
		off += th->doff * 4;
	} else if (nh == IPPROTO_UDP) {
		struct udphdr *uh = data + off;
		if ((void *)(uh + 1) > end)
			return -1;
		p->sport = bpf_ntohs(uh->source);
		p->dport = bpf_ntohs(uh->dest);
		off += sizeof(*uh);
	} else if (nh == IPPROTO_SCTP) {
		struct udphdr *sh = data + off; /* ports lead the SCTP common header too */
		if ((void *)(sh + 1) > end)
			return -1;
		p->sport = bpf_ntohs(sh->source);
		p->dport = bpf_ntohs(sh->dest);
		off += 12;
	} else if (nh == IPPROTO_ICMP || nh == IPPROTO_ICMPV6) {
		struct icmphdr *ih = data + off;
		if ((void *)(ih + 1) > end)
			return -1;
		p->icmp_type = ih->type;
		p->icmp_code = ih->code;
		if ((nh == IPPROTO_ICMP && (ih->type == 8 || ih->type == 0)) ||
		    (nh == IPPROTO_ICMPV6 && (ih->type == 128 || ih->type == 129))) {
			p->icmp_echo = 1;
			p->sport = bpf_ntohs(ih->un.echo.id);
		}
		off += 8;
	} else {
		return 0; /* other L4: no payload offset */
	}
	p->payload_off = off;
	if (skb->len > off)
		p->payload_len = skb->len - off;
	return 0;
}

struct addr16 {
	__u32 w[4];
};

/* The identity of an address: the longest prefix holding it, else world. While the ipcache
 * holds few distinct prefix lengths, one exact lookup per length, longest first (an endpoint's
 * host entry is the first), costs the same however many prefixes there are; the LPM trie's walk
 * grows with them. A global function: verified once, not at each of its callers (the address
 * as scalars: a pointer argument left the TC program past the verifier's complexity limit). */
__attribute__((noinline)) __u32 webb_ipcache_lookup(__u32 a0, __u32 a1, __u32 a2, __u32 a3)
{
	struct addr16 aa = { .w = { a0, a1, a2, a3 } }, *a = &aa;
	struct ipcache_key k;
	struct ipcache_value *v;
	__u32 zero = 0;
	__u64 *lp, lens;

	lp = bpf_map_lookup_elem(&IPCACHE_LENS, &zero);
	lens = lp ? *lp : 0;
	if (lens == IPCACHE_LENS_TRIE) {
		k.prefixlen = 128;
		__builtin_memcpy(k.addr, a->w, 16);
		v = bpf_map_lookup_elem(&IPCACHE, &k);
		return v ? v->identity : ID_WORLD;
	}
#pragma unroll
	for (int i = 0; i < IPCACHE_LENS_MAX; i++) {
		int len = (lens >> (8 * i)) & 0xff;
		if (!len)
			break;
		len--;
		k.prefixlen = len;
#pragma unroll
		for (int w = 0; w < 4; w++) {
			int b = len - 32 * w;
			__u32 m = b <= 0 ? 0 : b >= 32 ? 0xffffffff : bpf_htonl(0xffffffffu << (32 - b));
			k.addr[w] = a->w[w] & m;
		}
		v = bpf_map_lookup_elem(&IPCACHE_HASH, &k);
		if (v)
			return v->identity;
	}
	return ID_WORLD;
}

static __always_inline __u32 ipcache_lookup(const __u32 *addr)
{
	return webb_ipcache_lookup(addr[0], addr[1], addr[2], addr[3]);
}

/* Looks both ends of a connection up in the ipcache again. A global function: the verifier
 * checks it once on its own instead of in every state of the conntrack path. */
__attribute__((noinline)) int webb_ct_identities(struct ct_key *k, struct ct_entry *e)
{
	if (!k || !e)
		return 0;
	e->id_lo = ipcache_lookup(k->lo);
	e->id_hi = ipcache_lookup(k->hi);
	return 0;
}

/* Whether a DNS-over-TCP segment's payload (at `off`, `len` bytes) is exactly one whole message:
 * its 2-byte length prefix says the rest of the segment. Only such an answer is held: one that
 * spans segments cannot be learned from one record, and holding only some of its segments
 * would gain nothing (the agent counts those it sees unheld). A global function, verified on
 * its own. */
__attribute__((noinline)) int webb_dns_tcp_whole(struct __sk_buff *skb, __u32 off, __u32 len)
{
	__u8 b[2];

	if (!skb || len < 2 + 12 || bpf_skb_load_bytes(skb, off, b, 2) < 0)
		return 0;
	return ((__u32)b[0] << 8 | b[1]) + 2 == len;
}

/* Whether (a, pa) orders before (b, pb). Any total order works; this one is cheap. */
static __always_inline int end_lt(const __u32 *a, __u16 pa, const __u32 *b, __u16 pb)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	if (x[0] != y[0])
		return x[0] < y[0];
	if (x[1] != y[1])
		return x[1] < y[1];
	return pa < pb;
}

/* Reads four payload bytes at `off` (direct access, else through the helper). */
static __always_inline int load_u32(struct __sk_buff *skb, __u32 off, __u32 *out)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (off > 1024)
		return -1;
	if (data + off + 4 <= end) {
		*out = *(__u32 *)(data + off);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, out, 4);
}

#define W4(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)

/* L7 kind that the TCP payload begins (HTTP/1.x request or status line), else 0. */
static __always_inline __u8 http_head(struct __sk_buff *skb, struct pkt *p)
{
	__u32 w, w2;

	if (p->payload_len < 8 || load_u32(skb, p->payload_off, &w) < 0)
		return WEBB_L7_NONE;
	switch (w) {
	case W4('G', 'E', 'T', ' '):
	case W4('P', 'U', 'T', ' '):
	case W4('P', 'O', 'S', 'T'):
	case W4('H', 'E', 'A', 'D'):
	case W4('D', 'E', 'L', 'E'):
	case W4('P', 'A', 'T', 'C'):
	case W4('O', 'P', 'T', 'I'):
	case W4('C', 'O', 'N', 'N'):
	case W4('T', 'R', 'A', 'C'):
		return WEBB_L7_HTTP_REQUEST;
	case W4('H', 'T', 'T', 'P'):
		if (load_u32(skb, p->payload_off + 4, &w2) < 0)
			return WEBB_L7_NONE;
		return (w2 & 0xffffff) == W4('/', '1', '.', 0) ? WEBB_L7_HTTP_RESPONSE : WEBB_L7_NONE;
	}
	return WEBB_L7_NONE;
}

struct scan_ctx {
	__u32 start;
	__u32 end;
	__u32 found;
};

static long scan_cb(__u64 i, void *vctx)
{
	struct scan_ctx *sc = vctx;
	__u32 zero = 0, idx = sc->start + (__u32)i;
	struct scratch *s;

	if (idx + 4 > sc->end)
		return 1;
	s = bpf_map_lookup_elem(&SCRATCH, &zero);
	if (!s)
		return 1;
	if (s->data[idx & (SCRATCH_DATA - 1)] == '\r' && s->data[(idx + 1) & (SCRATCH_DATA - 1)] == '\n' &&
	    s->data[(idx + 2) & (SCRATCH_DATA - 1)] == '\r' && s->data[(idx + 3) & (SCRATCH_DATA - 1)] == '\n') {
		sc->found = 1;
		return 1;
	}
	return 0;
}

struct emit_args {
	__u32 src_id;
	__u32 dst_id;
	__u32 rule_id;
	__u32 cap;
	__u16 drop_reason;
	__u8 kind;
	__u8 dir;
	__u8 ct_state;
	__u8 flags;
	__u8 verdict;
	__u8 match_type;
	__u8 l7_kind;
	__u8 l7_segment;
	__u8 scan; /* look for the end of an HTTP head in the captured payload */
};

/* Writes header + n captured bytes from the scratch slot; counts a full buffer as lost. */
static __always_inline void ring_output(void *ctx, struct webb_counters *c, struct scratch *s, __u32 n)
{
	long err;
	/* Keep the bound on the register the helper sees (clang 14 re-derives it otherwise). */
	asm volatile("%0 &= 0x7ff" : "+r"(n));
#ifdef WEBB_PERF
	err = bpf_perf_event_output(ctx, &EVENTS, BPF_F_CURRENT_CPU, s, WEBB_EVENT_HDR_LEN + n);
#else
	/* Wake the reader only past a fill threshold: every wakeup is an IPI; a timer drains the rest. */
	__u32 zero = 0;
	__u64 *peak = bpf_map_lookup_elem(&RING_PEAK, &zero);
	/* The kernel's 8-byte record header is rounded up with the record to 8 bytes. */
	__u64 fill = bpf_ringbuf_query(&EVENTS, BPF_RB_AVAIL_DATA) + ((WEBB_EVENT_HDR_LEN + n + 8 + 7) & ~7);
	__u64 wflags = fill >= cfg_wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	if (peak && fill > *peak)
		*peak = fill;
	err = bpf_ringbuf_output(&EVENTS, s, WEBB_EVENT_HDR_LEN + n, wflags);
#endif
	if (err)
		c->ring_fail++;
	else
		c->events++;
}

/* A held DNS answer's record: the reader is woken at once, and the caller needs to know whether
 * the record made it (else the packet must pass: nobody would put it back). */
static __always_inline int held_output(struct webb_counters *c, struct scratch *s, __u32 n)
{
#ifdef WEBB_PERF
	return 0; /* perf buffers: not held */
#else
	asm volatile("%0 &= 0x7ff" : "+r"(n));
	if (bpf_ringbuf_output(&EVENTS, s, WEBB_EVENT_HDR_LEN + n, BPF_RB_FORCE_WAKEUP)) {
		c->ring_fail++;
		return 0;
	}
	c->events++;
	return 1;
#endif
}

/* Builds and sends one record; returns 1 if `scan` found the end of the HTTP head (for a held
 * DNS answer: 1 if the record was written). A global function: verified once, not again in
 * every state of each of its six callers. */
__attribute__((noinline)) int webb_emit(struct __sk_buff *skb, struct pkt *p, struct emit_args *a)
{
	__u32 zero = 0, n = 0, cap, len;
	struct scratch *s = bpf_map_lookup_elem(&SCRATCH, &zero);
	struct webb_counters *c = bpf_map_lookup_elem(&COUNTERS, &zero);
	struct webb_event *ev;
	void *data, *end;
	int found = 0;

	if (!skb || !p || !a || !s || !c)
		return 0;
	cap = a->cap;
	len = skb->len;
	ev = &s->ev;
	if (cap > len)
		cap = len;
	if (cap > WEBB_CAP_MAX)
		cap = WEBB_CAP_MAX;
	if (cap > 0) {
		n = ((cap - 1) & (SCRATCH_DATA - 1)) + 1;
		if (bpf_skb_load_bytes(skb, 0, s->data, n) < 0)
			n = 0;
	}
	ev->kind = a->kind;
	ev->version = WEBB_EVENT_VERSION;
	ev->hdr_len = WEBB_EVENT_HDR_LEN;
	ev->ifindex = skb->ifindex;
	ev->ktime_ns = bpf_ktime_get_boot_ns();
	{
		/* The helper prefers skb->sk's namespace; at ingress a socket still attached
		 * belongs to the veth peer's namespace (ip_rcv orphans it only later). */
		__u32 *ino = NULL, ifindex = skb->ifindex;
		if (a->dir == WEBB_DIR_EGRESS || !skb->sk) {
			__u64 cookie = bpf_get_netns_cookie(skb);
			ino = bpf_map_lookup_elem(&NETNS_INO, &cookie);
		}
		if (!ino)
			ino = bpf_map_lookup_elem(&IFINDEX_NS, &ifindex);
		ev->netns_ino = ino ? *ino : 0;
	}
	ev->direction = a->dir;
	ev->ct_state = a->ct_state;
	ev->flags = a->flags | (n < len ? WEBB_F_TRUNCATED : 0);
	ev->verdict = a->verdict;
	ev->drop_reason = a->drop_reason;
	ev->match_type = a->match_type;
	ev->family = p->family;
	ev->rule_id = a->rule_id;
	ev->src_identity = a->src_id;
	ev->dst_identity = a->dst_id;
	__builtin_memcpy(ev->saddr, p->saddr, 16);
	__builtin_memcpy(ev->daddr, p->daddr, 16);
	ev->sport = p->sport;
	ev->dport = p->dport;
	ev->l4_proto = p->proto;
	ev->tcp_flags = p->tcp_flags;
	ev->icmp_type = p->icmp_type;
	ev->icmp_code = p->icmp_code;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	if (data + ETH_HLEN <= end) {
		__builtin_memcpy(ev->eth_dst, data, 6);
		__builtin_memcpy(ev->eth_src, data + 6, 6);
	} else {
		__builtin_memset(ev->eth_dst, 0, 6);
		__builtin_memset(ev->eth_src, 0, 6);
	}
	ev->orig_len = len;
	ev->cap_len = n;
	ev->l3_off = p->l3_off;
	ev->l4_off = p->l4_off;
	ev->payload_off = p->payload_off;
	ev->tcp_seq = p->seq;
	ev->kdrop_reason = 0;
	ev->kdrop_location = 0;
	ev->ethertype = p->ethertype;
	ev->l7_segment = a->l7_segment;
	ev->l7_kind = a->l7_kind;
	ev->_reserved = 0;

	if (a->scan && n > p->payload_off) {
		__u32 t = n - 4;
		/* Common case first: the head ends the captured segment. */
		if (n >= 4 && s->data[t & (SCRATCH_DATA - 1)] == '\r' &&
		    s->data[(t + 1) & (SCRATCH_DATA - 1)] == '\n' &&
		    s->data[(t + 2) & (SCRATCH_DATA - 1)] == '\r' &&
		    s->data[(t + 3) & (SCRATCH_DATA - 1)] == '\n') {
			found = 1;
		} else {
			struct scan_ctx sc = { .start = p->payload_off, .end = n };
			bpf_loop(n - p->payload_off, scan_cb, &sc, 0);
			found = sc.found;
		}
	}
	if (a->flags & WEBB_F_DNS_HELD)
		return n == len ? held_output(c, s, n) : 0;
	ring_output(skb, c, s, n);
	return found;
}

static __always_inline __u32 policy_revision(void)
{
	__u32 zero = 0, *rev = bpf_map_lookup_elem(&POLICY_STATE, &zero);
	return rev ? *rev : 0;
}

static __always_inline __u8 match_of(const struct policy_value *v, int exact_remote)
{
	if (v->l4 == POLICY_L4_PORT)
		return exact_remote ? WEBB_MATCH_L3_L4 : WEBB_MATCH_L4_ONLY;
	if (v->l4 == POLICY_L4_PROTO)
		return exact_remote ? WEBB_MATCH_L3_PROTO : WEBB_MATCH_PROTO_ONLY;
	return exact_remote ? WEBB_MATCH_L3_ONLY : WEBB_MATCH_ALL;
}

/* One level's lookup: `shift` free low bits of the port. */
static __always_inline struct policy_value *policy_level(struct policy_key *k, __u8 level, __u16 port,
							  __u32 shift)
{
	port = (port >> shift) << shift;
	k->level = level;
	k->port_hi = port >> 8;
	k->port_lo = port & 0xff;
	return bpf_map_lookup_elem(&POLICY, k);
}

/* The most specific entry of the group (endpoint, k->remote) for (proto, port), copied to
 * `out`; 1 if there is one, 0 if not, -1 if the group has no summary (no entries). The summary
 * is copied to `sum_out`. */
static __always_inline int policy_group(struct policy_key *k, __u8 proto, __u16 port,
					struct policy_value *out, struct policy_value *sum_out)
{
	struct policy_value *sum, *v = NULL;
	__u8 levels;

	k->level = POLICY_LVL_SUMMARY;
	k->proto = 0;
	k->port_hi = 0;
	k->port_lo = 0;
	sum = bpf_map_lookup_elem(&POLICY, k);
	if (!sum)
		return -1;
	*sum_out = *sum;
	levels = sum->levels;
	if (port < sum->port_min || port > sum->port_max)
		levels &= (1 << POLICY_LVL_PROTO);
	k->proto = proto;
	if (levels & (1 << POLICY_LVL_PORT16))
		v = policy_level(k, POLICY_LVL_PORT16, port, 0);
	if (!v && (levels & (1 << POLICY_LVL_PORT12)))
		v = policy_level(k, POLICY_LVL_PORT12, port, 4);
	if (!v && (levels & (1 << POLICY_LVL_PORT8)))
		v = policy_level(k, POLICY_LVL_PORT8, port, 8);
	if (!v && (levels & (1 << POLICY_LVL_PORT4)))
		v = policy_level(k, POLICY_LVL_PORT4, port, 12);
	if (!v && (levels & (1 << POLICY_LVL_PROTO)))
		v = policy_level(k, POLICY_LVL_PROTO, 0, 0);
	if (!v && sum->action)
		v = sum;
	if (!v)
		return 0;
	*out = *v;
	return 1;
}

/*
 * The policy verdict of a connection, from its first packet: `hook_dir` is the TC hook that
 * packet crossed on the endpoint's host-side interface (ingress = leaving the pod: the source's
 * egress policy; egress = entering the pod: the destination's ingress policy). The remote
 * identity's group, and the wildcard's unless the agent merged it into the remote's; a deny from
 * either wins, then the more specific allow (longer L4 part; the identity-specific one on a
 * tie); a direction that some policy selects but nothing allows is default deny.
 */
struct policy_query {
	__u32 src_id;
	__u32 dst_id;
	__u32 rev;
	__u16 dport;
	__u8 hook_dir;
	__u8 proto;
};

/* A global function: the verifier checks it once, on its own, instead of once per path of the
 * caller (the TC program would otherwise exceed the verifier's complexity limit). */
__attribute__((noinline)) int webb_policy_verdict(struct policy_query *q, struct ct_hook *e)
{
	struct policy_key k;
	struct policy_value exact = {}, wild = {}, rsum = {}, wsum = {};
	int has_exact = 0, has_wild, found;
	__u32 marker;
	__u8 hook_dir, proto;
	__u16 dport;
	__u32 src_id, dst_id, rev, remote;

	if (!q || !e)
		return 0;
	hook_dir = q->hook_dir;
	proto = q->proto;
	dport = q->dport;
	src_id = q->src_id;
	dst_id = q->dst_id;
	rev = q->rev;
	e->verdict = WEBB_VERDICT_FORWARD;
	e->match_type = WEBB_MATCH_NONE;
	e->rule_id = 0;
	e->drop_reason = 0;
	e->policy_rev = rev;
	if (!rev)
		return 0;
	k.slot = rev & 1;
	k.zero = 0;
	k.zero2 = 0;
	if (hook_dir == WEBB_DIR_INGRESS) {
		k.dir = POLICY_DIR_EGRESS;
		k.endpoint = src_id;
		remote = dst_id;
	} else {
		k.dir = POLICY_DIR_INGRESS;
		k.endpoint = dst_id;
		remote = src_id;
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP)
		dport = 0;
	if (remote) {
		k.remote = remote;
		found = policy_group(&k, proto, dport, &exact, &rsum);
		if (found >= 0 && (rsum.flags & POLICY_F_MERGED)) {
			/* The remote's group decides alone (the wildcard's entries are in it). */
			if (found > 0 && exact.action == POLICY_DENY) {
				e->rule_id = exact.rule_id;
				e->match_type = match_of(&exact, !(exact.flags & POLICY_F_WILD));
				e->drop_reason = WEBB_DROP_POLICY_DENY;
			} else if (found > 0 && exact.action == POLICY_ALLOW) {
				e->rule_id = exact.rule_id;
				e->match_type = match_of(&exact, !(exact.flags & POLICY_F_WILD));
				return 0;
			} else if (rsum.marker) {
				e->rule_id = rsum.marker;
				e->drop_reason = WEBB_DROP_POLICY_DENIED;
			} else {
				return 0;
			}
			e->verdict = cfg_policy_audit ? WEBB_VERDICT_AUDIT : WEBB_VERDICT_DROP;
			return 0;
		}
		has_exact = found > 0;
	}
	k.remote = 0;
	has_wild = policy_group(&k, proto, dport, &wild, &wsum);
	/* No wildcard summary: no policy selects the endpoint in this direction or names it. */
	if (has_wild < 0)
		return 0;
	marker = wsum.marker;
	/* Copies, not pointers: clang would otherwise OR the two pointers into one null test. */
	if (has_exact && exact.action == POLICY_DENY) {
		e->rule_id = exact.rule_id;
		e->match_type = match_of(&exact, 1);
		e->drop_reason = WEBB_DROP_POLICY_DENY;
	} else if (has_wild && wild.action == POLICY_DENY) {
		e->rule_id = wild.rule_id;
		e->match_type = match_of(&wild, 0);
		e->drop_reason = WEBB_DROP_POLICY_DENY;
	} else {
		int allow_exact = has_exact && exact.action == POLICY_ALLOW;
		int allow_wild = has_wild && wild.action == POLICY_ALLOW;
		if (allow_exact && (!allow_wild || exact.l4 >= wild.l4)) {
			e->rule_id = exact.rule_id;
			e->match_type = match_of(&exact, 1);
			return 0;
		}
		if (allow_wild) {
			e->rule_id = wild.rule_id;
			e->match_type = match_of(&wild, 0);
			return 0;
		}
		if (!marker)
			return 0; /* nothing selects this endpoint in this direction: allow all */
		e->rule_id = marker;
		e->drop_reason = WEBB_DROP_POLICY_DENIED;
	}
	e->verdict = cfg_policy_audit ? WEBB_VERDICT_AUDIT : WEBB_VERDICT_DROP;
	return 0;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	__u32 zero = 0;
	struct webb_counters *c = bpf_map_lookup_elem(&COUNTERS, &zero);
	struct emit_args a = { .kind = WEBB_EV_TRACE, .dir = dir };
	struct ct_entry ne, *e;
	struct ct_key k;
	struct pkt p;
	int src_lo, is_new = 0, first, want = 0, found, verdict_event = 0, hold = 0;
	__u8 d, l7 = WEBB_L7_NONE, l7_cont = 0;
	__u32 rev;

	if (!c)
		return TC_ACT_UNSPEC;
	c->packets++;
	c->bytes += skb->len;

	__builtin_memset(&p, 0, sizeof(p));
	if (parse(skb, &p) < 0) {
		c->parse_err++;
		if (!cfg_aggregate) {
			a.flags = WEBB_F_PARSE_ERR;
			a.cap = 128;
			webb_emit(skb, &p, &a);
		}
		return TC_ACT_UNSPEC;
	}
	a.cap = p.payload_off ? p.payload_off : 128;
	if (a.cap > cfg_cap_len)
		a.cap = cfg_cap_len;
	if (p.family == 0) {
		if (!cfg_aggregate)
			webb_emit(skb, &p, &a);
		return TC_ACT_UNSPEC;
	}
	/* ICMP errors and other non-echo messages are rare and always worth a record. */
	if ((p.proto == IPPROTO_ICMP || p.proto == IPPROTO_ICMPV6) && !p.icmp_echo) {
		a.src_id = ipcache_lookup(p.saddr);
		a.dst_id = ipcache_lookup(p.daddr);
		webb_emit(skb, &p, &a);
		return TC_ACT_UNSPEC;
	}

	/* Every key field is assigned below (no padding), so no memset. Echo requests and
	 * replies carry the identifier in the same field: key both ends on it. */
	__u16 dport = p.icmp_echo ? p.sport : p.dport;
	src_lo = end_lt(p.saddr, p.sport, p.daddr, dport);
	if (src_lo) {
		__builtin_memcpy(k.lo, p.saddr, 16);
		__builtin_memcpy(k.hi, p.daddr, 16);
		k.port_lo = p.sport;
		k.port_hi = dport;
	} else {
		__builtin_memcpy(k.lo, p.daddr, 16);
		__builtin_memcpy(k.hi, p.saddr, 16);
		k.port_lo = dport;
		k.port_hi = p.sport;
	}
	k.if_proto = p.proto;

	__u8 fl = p.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST);
	__u32 ifindex = skb->ifindex;
	struct ct_hook *h;
	rev = policy_revision();
	e = bpf_map_lookup_elem(&CT, &k);
	if (e) {
		/* Slot 0 if it is this hook's, else slot 1 (this hook's, or free). Computed without a
		 * branch, so the verifier follows one state for both slots, not two. */
		__u64 x = e->hook[0].ifindex ^ ifindex;
		__u64 slot = (x | -x) >> 63;
		barrier_var(slot);
		if (slot && e->hook[1].ifindex != ifindex && e->hook[1].ifindex) {
			/* Both slots belong to other interfaces: this one keys its own entry. */
			k.if_proto = ifindex << 8 | p.proto;
			e = bpf_map_lookup_elem(&CT, &k);
			slot = 0;
		}
		if (e) {
			barrier_var(e); /* else clang offsets e before its null test */
			h = &e->hook[slot & 1];
		}
	}
	/* A bare SYN on a closed tuple (port reuse) starts a new connection. */
	if (e && (p.tcp_flags & (TCP_SYN | 0x10)) == TCP_SYN &&
	    ((e->hook[0].seen[0] | e->hook[0].seen[1] | e->hook[1].seen[0] | e->hook[1].seen[1]) &
	     (TCP_FIN | TCP_RST)))
		e = NULL;
	if (!e) {
		__builtin_memset(&ne, 0, sizeof(ne));
		ne.init_lo = src_lo;
		ne.id_lo = ipcache_lookup(k.lo);
		ne.id_hi = ipcache_lookup(k.hi);
		ne.hook[0].ifindex = ifindex;
		e = &ne;
		h = &ne.hook[0];
		is_new = 1;
		c->ct_new++;
		d = 0;
	} else {
		d = (__u8)src_lo != e->init_lo;
		/* A free slot: the connection's first packet at this hook (another made the entry). */
		if (h->ifindex != ifindex)
			h->ifindex = ifindex;
	}
	d &= 1;
	/* This hook has seen nothing of the connection yet: read from the slot rather than kept in
	 * a flag set on two paths, which would double the verifier's states from here on. */
	first = !(h->seen[0] | h->seen[1]);
	{
		__u8 bits = SEEN_BIT | fl;
		/* First packet of a direction, or a new SYN/FIN/RST in it: a lifecycle step. */
		if (bits & ~h->seen[d]) {
			h->seen[d] |= bits;
			want = 1;
		}
	}
	if (first && !d)
		a.ct_state = WEBB_CT_NEW;
	else if (fl & (TCP_FIN | TCP_RST))
		a.ct_state = WEBB_CT_CLOSING;
	else
		a.ct_state = d ? WEBB_CT_REPLY : WEBB_CT_ESTABLISHED;
	/* This hook's verdict: on its first packet, or again after a policy reload, as the
	 * connection's first packet (original direction, and the hook it would cross) is decided now. */
	if (first || h->policy_rev != rev) {
		__u32 old_rule = h->rule_id;
		__u8 old_verdict = h->verdict;
		/* After a reload the ipcache may have changed with it (a toFQDNs address's identity
		 * given back, maybe to another address): look both ends up again. */
		if (!first)
			webb_ct_identities(&k, e);
		__u8 hook = d ? (dir == WEBB_DIR_INGRESS ? WEBB_DIR_EGRESS : WEBB_DIR_INGRESS) : dir;
		struct policy_query q = {
			.src_id = e->init_lo ? e->id_lo : e->id_hi,
			.dst_id = e->init_lo ? e->id_hi : e->id_lo,
			.rev = rev,
			.dport = d ? p.sport : p.dport,
			.hook_dir = hook,
			.proto = p.proto,
		};
		webb_policy_verdict(&q, h);
		if (first) {
			verdict_event = h->rule_id != 0;
		} else if (h->verdict != old_verdict || h->rule_id != old_rule) {
			verdict_event = h->rule_id != 0;
			want = 1;
		}
	}
	if (first || !cfg_aggregate)
		want = 1;
	if (d)
		a.flags |= WEBB_F_IS_REPLY;
	a.src_id = src_lo ? e->id_lo : e->id_hi;
	a.dst_id = src_lo ? e->id_hi : e->id_lo;
	a.verdict = h->verdict;
	a.match_type = h->match_type;
	a.rule_id = h->rule_id;
	a.drop_reason = h->drop_reason;
	if (verdict_event) {
		/* Cilium's PolicyVerdict notification, ahead of the trace or drop record. */
		struct emit_args pv = a;
		pv.kind = WEBB_EV_POLICY_VERDICT;
		webb_emit(skb, &p, &pv);
	}

	/* L7: DNS on port 53, HTTP/1.x heads and their continuation segments. */
	if (p.payload_len > 0 && (p.proto == IPPROTO_TCP || p.proto == IPPROTO_UDP)) {
		if (p.sport == 53 || p.dport == 53) {
			l7 = WEBB_L7_DNS;
		} else if (p.proto == IPPROTO_TCP) {
			if (h->l7_pending[d]) {
				__u32 seg = (__u32)h->l7_segs[d] + 1;
				__u32 bytes = (__u32)h->l7_bytes[d] + p.payload_len;
				if (seg > cfg_l7_max_segments || bytes > cfg_l7_max_bytes) {
					h->l7_pending[d] = 0;
				} else {
					l7 = h->l7_pending[d];
					l7_cont = 1;
					h->l7_segs[d] = seg;
					h->l7_bytes[d] = bytes;
					a.l7_segment = seg;
				}
			} else {
				l7 = http_head(skb, &p);
				if (l7) {
					h->l7_segs[d] = 0;
					h->l7_bytes[d] = p.payload_len > 0xffff ? 0xffff : p.payload_len;
				}
			}
		}
	}
	if (l7 == WEBB_L7_DNS && skb->mark == WEBB_REINJECT_MARK)
		l7 = WEBB_L7_NONE; /* a held answer put back: its record went out when it was held */
	else if (l7 == WEBB_L7_DNS && dir == WEBB_DIR_EGRESS && p.sport == 53 &&
		 h->verdict != WEBB_VERDICT_DROP && skb->len <= WEBB_CAP_MAX &&
		 bpf_map_lookup_elem(&FQDN_HOLD, &a.dst_id) &&
		 (p.proto == IPPROTO_UDP ||
		  (p.proto == IPPROTO_TCP && webb_dns_tcp_whole(skb, p.payload_off, p.payload_len))))
		hold = 1;
	if (l7) {
		want = 1;
		a.l7_kind = l7;
		a.flags |= l7_cont ? WEBB_F_L7_CONT : WEBB_F_L7_HEAD;
		a.scan = l7 != WEBB_L7_DNS;
		/* cfg_cap_len counts payload bytes: a segment of that size is captured whole,
		 * headers included (emit() bounds it by the packet and WEBB_CAP_MAX). */
		a.cap = p.payload_off + cfg_cap_len;
		c->l7_events++;
	}
	if (hold) {
		a.flags |= WEBB_F_DNS_HELD;
		a.cap = skb->len; /* the whole frame, to put back */
	}

	if (h->verdict == WEBB_VERDICT_DROP) {
		a.kind = WEBB_EV_DROP;
		a.scan = 0;
		webb_emit(skb, &p, &a);
		if (is_new)
			bpf_map_update_elem(&CT, &k, &ne, BPF_ANY);
		return TC_ACT_SHOT;
	}
	if (want) {
		found = webb_emit(skb, &p, &a);
		if (hold && found) {
			if (is_new)
				bpf_map_update_elem(&CT, &k, &ne, BPF_ANY);
			return TC_ACT_SHOT; /* the agent puts it back */
		}
		/* A held answer the ring had no room for is delivered unheld (its record is lost
		 * and counted). */
		if (a.scan) {
			if (found)
				h->l7_pending[d] = 0;
			else if (!l7_cont)
				h->l7_pending[d] = l7;
		}
	}
	if (is_new)
		bpf_map_update_elem(&CT, &k, &ne, BPF_ANY);
	return TC_ACT_UNSPEC;
}

SEC("classifier/ingress")
int webb_tc_ingress(struct __sk_buff *skb)
{
	return handle(skb, WEBB_DIR_INGRESS);
}

SEC("classifier/egress")
int webb_tc_egress(struct __sk_buff *skb)
{
	return handle(skb, WEBB_DIR_EGRESS);
}

/* Benchmark probe: the policy decision of a new connection alone (parse, two ipcache lookups,
 * the policy lookups), without conntrack or records, so its cost can be measured against the
 * number of rules. Same verdict function and maps as the observers. */
SEC("classifier/policy_probe")
int webb_tc_policy_probe(struct __sk_buff *skb)
{
	struct ct_hook e = {};
	struct pkt p;

	__builtin_memset(&p, 0, sizeof(p));
	if (parse(skb, &p) < 0 || p.family == 0)
		return TC_ACT_UNSPEC;
	struct policy_query q = {
		.src_id = ipcache_lookup(p.saddr),
		.dst_id = ipcache_lookup(p.daddr),
		.rev = policy_revision(),
		.dport = p.dport,
		.hook_dir = WEBB_DIR_EGRESS,
		.proto = p.proto,
	};
	webb_policy_verdict(&q, &e);
	return e.verdict == WEBB_VERDICT_DROP ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

/* Baseline for the benchmark: the cost of the test-run harness itself. */
SEC("classifier/empty")
int webb_tc_empty(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

SEC("tracepoint/skb/kfree_skb")
int webb_kfree_skb(struct trace_event_raw_kfree_skb *ctx)
{
	__u32 one = 1, zero = 0, ino, reason = BPF_CORE_READ(ctx, reason);
	struct sk_buff *skb = BPF_CORE_READ(ctx, skbaddr);
	struct webb_counters *c;
	struct scratch *s;
	struct webb_event *ev;
	struct net_device *dev;
	unsigned char *head;
	__u16 nh;
	__u32 tail, n = 0, l4 = 0;

	/* Drops by TC programs (ours included) are reported by the TC program itself. */
	if (reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TC_INGRESS) ||
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TC_EGRESS))
		return 0;
	dev = BPF_CORE_READ(skb, dev);
	if (dev)
		ino = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	else
		ino = BPF_CORE_READ(skb, sk, __sk_common.skc_net.net, ns.inum);
	if (!cfg_kdrop_all_netns && !bpf_map_lookup_elem(&WATCH_NETNS, &ino))
		return 0;
	c = bpf_map_lookup_elem(&COUNTERS, &zero);
	s = bpf_map_lookup_elem(&SCRATCH, &one);
	if (!c || !s)
		return 0;
	ev = &s->ev;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->kind = WEBB_EV_KERNEL_DROP;
	ev->version = WEBB_EVENT_VERSION;
	ev->hdr_len = WEBB_EVENT_HDR_LEN;
	ev->ifindex = dev ? BPF_CORE_READ(dev, ifindex) : 0;
	ev->ktime_ns = bpf_ktime_get_boot_ns();
	ev->netns_ino = ino;
	ev->direction = WEBB_DIR_UNKNOWN;
	ev->flags = WEBB_F_NO_L2;
	ev->kdrop_reason = reason;
	ev->kdrop_location = (__u64)BPF_CORE_READ(ctx, location);
	ev->orig_len = BPF_CORE_READ(skb, len);
	ev->ethertype = BPF_CORE_READ(ctx, protocol); /* already host order here */

	head = BPF_CORE_READ(skb, head);
	nh = BPF_CORE_READ(skb, network_header);
	tail = BPF_CORE_READ(skb, tail);
	if (nh != (__u16)~0U && tail > nh) {
		n = tail - nh;
		if (n > 128)
			n = 128;
		/* Keep the bound on the register the helper sees (clang 14 re-derives it otherwise). */
		asm volatile("%0 &= 0xff" : "+r"(n));
		if (bpf_probe_read_kernel(s->data, n, head + nh) < 0)
			n = 0;
	}
	/* Minimal L3/L4 decode of the captured network header (no IPv6 extension walk). */
	if (n >= 20 && (s->data[0] >> 4) == 4) {
		ev->family = 4;
		set_v4((__u32 *)ev->saddr, *(__u32 *)&s->data[12]);
		set_v4((__u32 *)ev->daddr, *(__u32 *)&s->data[16]);
		ev->l4_proto = s->data[9];
		l4 = (s->data[0] & 0xf) * 4;
	} else if (n >= 40 && (s->data[0] >> 4) == 6) {
		ev->family = 6;
		__builtin_memcpy(ev->saddr, &s->data[8], 16);
		__builtin_memcpy(ev->daddr, &s->data[24], 16);
		ev->l4_proto = s->data[6];
		l4 = 40;
	}
	if (l4) {
		ev->l4_off = l4;
		if (ev->l4_proto == IPPROTO_TCP && n >= l4 + 20) {
			ev->sport = (s->data[l4 & 63] << 8) | s->data[(l4 + 1) & 127];
			ev->dport = (s->data[(l4 + 2) & 127] << 8) | s->data[(l4 + 3) & 127];
			ev->tcp_flags = s->data[(l4 + 13) & 127];
		} else if (ev->l4_proto == IPPROTO_UDP && n >= l4 + 8) {
			ev->sport = (s->data[l4 & 63] << 8) | s->data[(l4 + 1) & 127];
			ev->dport = (s->data[(l4 + 2) & 127] << 8) | s->data[(l4 + 3) & 127];
		} else if ((ev->l4_proto == IPPROTO_ICMP || ev->l4_proto == IPPROTO_ICMPV6) && n >= l4 + 8) {
			ev->icmp_type = s->data[l4 & 63];
			ev->icmp_code = s->data[(l4 + 1) & 127];
		}
	}
	ev->src_identity = ev->family ? ipcache_lookup((__u32 *)ev->saddr) : 0;
	ev->dst_identity = ev->family ? ipcache_lookup((__u32 *)ev->daddr) : 0;
	ev->cap_len = n;
	if (n < ev->orig_len)
		ev->flags |= WEBB_F_TRUNCATED;
	c->kdrop_events++;
	ring_output(ctx, c, s, n);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

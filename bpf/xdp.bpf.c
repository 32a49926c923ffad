// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The XDP filter (loader: xdp.c, API: xdp.h). Guarded traffic is TCP to
 * relayd's address (the [listen] address; a wildcard is any address of its
 * family, :: of both) and to a guarded port: the [ports] range and relayd's
 * own listeners (the listeners fixed in rodata before load; the range, like
 * syn_rate, in .bss, which relayd rewrites on a reload). For it, in this order: a
 * source in the deny trie is dropped; when the allow list is not empty, a
 * source not in the allow trie is dropped; a SYN to a port of the range that
 * the ports map does not hold open is dropped; a SYN to a port of the range
 * over the source's token bucket (syn_rate per second, burst syn_rate; IPv6
 * sources by their /64) is dropped. What passes is counted, and for an
 * allocated port of the range its packets and TCP payload bytes too (the
 * lengths clamped to the frame). Everything else (not Ethernet/IP/TCP,
 * another address, another port) passes uncounted.
 *
 * Up to two VLAN tags are looked through, and up to EXT_MAX IPv6 extension
 * headers (hop-by-hop, routing, destination options, fragment). TCP to
 * relayd's address whose TCP header cannot be read (a later fragment, a cut
 * header, a longer chain of extension headers) has no port to judge by: a
 * source in the deny trie is dropped, the rest passes uncounted; except a
 * first fragment whose TCP header is cut, which is dropped (NAVE_XDP_MALFORMED)
 * unless its destination port can be read and is not guarded.
 *
 * Matching follows cidr_table_check (common/cidr.c): an IPv4 source, or an
 * IPv6 one of the form ::ffff:a.b.c.d, matches IPv4 blocks only (the store
 * keeps a v4-mapped block as the IPv4 block it is); other IPv6 sources match
 * IPv6 blocks.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* set by the loader before load, and on a reload ([ports] range, [xdp] syn_rate): mmaped .bss */
volatile __u16 port_min = 0; /* 0: no range */
volatile __u16 port_max = 0;
volatile __u32 syn_rate = 0; /* SYNs per second per source, 0 = off */
/* set by the loader before load */
const volatile __u16 count_base = 0; /* port_counts[port - count_base]: the range at load */
const volatile __u16 svc_ports[NAVE_SVC_MAX] = {0};
/* relayd's address: per family, DST_NONE, DST_ANY or DST_ADDR (dst4, dst6) */
const volatile __u8 dst4_mode = NAVE_DST_ANY;
const volatile __u8 dst6_mode = NAVE_DST_ANY;
const volatile __be32 dst4 = 0;
const volatile __be32 dst6[4] = {0, 0, 0, 0};

/*
 * Entries in each trie, written by the loader (mmaped .bss): a trie counted 0
 * is not looked up, and allow4 + allow6 > 0 turns the allow list on.
 */
volatile __u32 deny4 = 0, deny6 = 0, allow4 = 0, allow6 = 0;

/* key __u16 port (host order); shared with sk_lookup (the loader reuses its fd) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct nave_port);
	__uint(max_entries, NAVE_PORTS_MAX); /* any range a reload may set */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ports SEC(".maps");

#define LPM_MAP(name, keytype)                                                                     \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                                               \
		__type(key, keytype);                                                              \
		__type(value, __u8);                                                               \
		__uint(max_entries, NAVE_LPM_MAX);                                                 \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                              \
	} name SEC(".maps")

LPM_MAP(deny_v4, struct nave_lpm4);
LPM_MAP(deny_v6, struct nave_lpm6);
LPM_MAP(allow_v4, struct nave_lpm4);
LPM_MAP(allow_v6, struct nave_lpm6);

/*
 * The SYN token buckets, keyed by the 16-byte source: an IPv4 one as
 * ::ffff:a.b.c.d, any other IPv6 one by its /64 (the low 64 bits zero), so a
 * host's /64 is one bucket however many addresses it takes from it.
 */
struct src16 {
	__u8 a[16];
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct src16);
	__type(value, struct nave_bucket);
	__uint(max_entries, NAVE_SRC_MAX);
} buckets SEC(".maps");

/* enum nave_xdp_ctr */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, NAVE_XDP_NCTR);
} counters SEC(".maps");

/*
 * index port - count_base; the loader sets the size of the range at load (a
 * port a reload added past it is not counted: the lookup fails)
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct nave_count);
	__uint(max_entries, 1);
} port_counts SEC(".maps");

struct vlan {
	__be16 tci;
	__be16 proto;
};

/* an IPv6 extension header's first two bytes; a fragment header is 8 bytes */
struct ext {
	__u8 nexthdr;
	__u8 len; /* in 8 bytes, not counting the first 8 (not for a fragment header) */
	__be16 frag_off;
};

#define VLAN_MAX 2 /* tags looked through (QinQ) */
#define EXT_MAX	 4 /* IPv6 extension headers walked before TCP */

enum parsed {
	P_NONE,	     /* not guarded-looking: pass untouched */
	P_TCP,	     /* a TCP header: everything in struct pkt */
	P_NOPORT,    /* TCP to relayd's address (or may be), its header unread */
	P_CUT_FIRST, /* a first fragment to relayd's address whose TCP header is cut */
};

struct pkt {
	struct src16 src; /* 16-byte form */
	__u16 dport;	  /* host order */
	__u8 port_known;  /* dport was read (P_TCP always; else when its bytes are there) */
	__u8 syn;	  /* SYN without ACK */
	__u8 v4;	  /* an IPv4 packet, or an IPv6 one from ::ffff:a.b.c.d */
	__u32 payload;	  /* TCP payload bytes, as far as the frame holds them */
};

static __always_inline void count(__u32 ctr)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &ctr);

	if (v)
		*v += 1;
}

static __always_inline int is_v4_mapped(const __u8 *a)
{
	return !a[0] && !a[1] && !a[2] && !a[3] && !a[4] && !a[5] && !a[6] && !a[7] && !a[8] &&
	       !a[9] && a[10] == 0xff && a[11] == 0xff;
}

static __always_inline int is_ext(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_FRAGMENT;
}

static __always_inline int ours4(__be32 daddr)
{
	if (dst4_mode == NAVE_DST_ANY)
		return 1;
	return dst4_mode == NAVE_DST_ADDR && daddr == dst4;
}

static __always_inline int ours6(const struct in6_addr *d)
{
	if (dst6_mode == NAVE_DST_ANY)
		return 1;
	return dst6_mode == NAVE_DST_ADDR && d->in6_u.u6_addr32[0] == dst6[0] &&
	       d->in6_u.u6_addr32[1] == dst6[1] && d->in6_u.u6_addr32[2] == dst6[2] &&
	       d->in6_u.u6_addr32[3] == dst6[3];
}

/*
 * The TCP header at th, with l4len bytes after the IP headers (the IP
 * header's length, already clamped to the frame). A cut header still gives
 * the port when its bytes are there.
 */
static __always_inline int tcp_at(struct pkt *p, struct tcphdr *th, void *end, __u32 l4len,
				  int first_frag)
{
	__u32 hl;

	if ((void *)(th + 1) > end || l4len < sizeof(*th)) {
		if ((void *)th + 4 <= end && l4len >= 4) {
			p->dport = bpf_ntohs(th->dest);
			p->port_known = 1;
		}
		return first_frag ? P_CUT_FIRST : P_NOPORT;
	}
	p->dport = bpf_ntohs(th->dest);
	p->port_known = 1;
	p->syn = th->syn && !th->ack;
	hl = (__u32)th->doff * 4;
	p->payload = l4len > hl ? l4len - hl : 0;
	return P_TCP;
}

static __always_inline int parse4(struct pkt *p, struct iphdr *iph, void *end)
{
	__u32 ihl, len, avail;
	__u16 frag;

	if ((void *)(iph + 1) > end || !ours4(iph->daddr) || iph->protocol != IPPROTO_TCP)
		return P_NONE;
	__builtin_memset(p->src.a, 0, 10);
	p->src.a[10] = 0xff;
	p->src.a[11] = 0xff;
	__builtin_memcpy(&p->src.a[12], &iph->saddr, 4);
	p->v4 = 1;
	frag = bpf_ntohs(iph->frag_off);
	if (frag & 0x1fff) /* a later fragment: no TCP header */
		return P_NOPORT;
	ihl = (__u32)iph->ihl * 4;
	if (ihl < sizeof(*iph))
		return P_NONE; /* the kernel drops it */
	/* the IP length, but no more than the frame holds (0: a BIG TCP packet) */
	avail = (__u32)(end - (void *)iph);
	len = bpf_ntohs(iph->tot_len);
	if (!len || len > avail)
		len = avail;
	return tcp_at(p, (struct tcphdr *)((__u8 *)iph + ihl), end, len > ihl ? len - ihl : 0,
		      frag & 0x2000);
}

static __always_inline int parse6(struct pkt *p, struct ipv6hdr *ip6, void *end)
{
	__u32 len, avail, off = 0;
	int first_frag = 0;
	struct tcphdr *th;
	__u8 nh;

	if ((void *)(ip6 + 1) > end || !ours6(&ip6->daddr))
		return P_NONE;
	nh = ip6->nexthdr;
	if (nh != IPPROTO_TCP && !is_ext(nh))
		return P_NONE;
	__builtin_memcpy(p->src.a, &ip6->saddr, 16);
	p->v4 = is_v4_mapped(p->src.a);
	/* the bytes after the fixed header: the IPv6 length, no more than the frame */
	avail = (__u32)(end - (void *)(ip6 + 1));
	len = bpf_ntohs(ip6->payload_len);
	if (!len || len > avail)
		len = avail;

#pragma unroll
	for (int i = 0; i < EXT_MAX; i++) {
		struct ext *e;

		if (!is_ext(nh))
			break;
		e = (struct ext *)((__u8 *)(ip6 + 1) + off);
		if ((void *)(e + 1) > end || off + 8 > len)
			return first_frag ? P_CUT_FIRST : P_NOPORT; /* the chain is cut */
		if (nh == IPPROTO_FRAGMENT) {
			if (e->frag_off & bpf_htons(0xfff8)) { /* a later fragment: no port */
				nh = e->nexthdr;
				return nh == IPPROTO_TCP || is_ext(nh) ? P_NOPORT : P_NONE;
			}
			first_frag = e->frag_off & bpf_htons(1); /* more fragments */
			off += 8;
		} else {
			off += ((__u32)e->len + 1) * 8;
		}
		nh = e->nexthdr;
	}
	if (nh != IPPROTO_TCP)
		return is_ext(nh) ? P_NOPORT : P_NONE; /* more headers than we walk */
	th = (struct tcphdr *)((__u8 *)(ip6 + 1) + off);
	return tcp_at(p, th, end, len > off ? len - off : 0, first_frag);
}

static __always_inline int parse(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u16 proto;
	void *l3;

	if ((void *)(eth + 1) > end)
		return P_NONE;
	proto = eth->h_proto;
	l3 = eth + 1;
#pragma unroll
	for (int i = 0; i < VLAN_MAX; i++) {
		struct vlan *vh = l3;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > end)
			return P_NONE;
		proto = vh->proto;
		l3 = vh + 1;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return parse4(p, l3, end);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse6(p, l3, end);
	return P_NONE;
}

static __always_inline int guarded(__u16 port, int *in_range)
{
	*in_range = 0;
#pragma unroll
	for (int i = 0; i < NAVE_SVC_MAX; i++)
		if (svc_ports[i] && svc_ports[i] == port)
			return 1;
	__u16 lo = port_min, hi = port_max;

	if (lo && port >= lo && port <= hi) {
		*in_range = 1;
		return 1;
	}
	return 0;
}

/* the source in the v4 and v6 tries given (either may be skipped when empty) */
static __always_inline int in_lists(const struct pkt *p, void *t4, __u32 n4, void *t6, __u32 n6)
{
	if (n4 && p->v4) {
		struct nave_lpm4 k4 = {.prefixlen = 32};

		__builtin_memcpy(k4.addr, &p->src.a[12], 4);
		if (bpf_map_lookup_elem(t4, &k4))
			return 1;
	}
	if (n6 && !p->v4) {
		struct nave_lpm6 k6 = {.prefixlen = 128};

		__builtin_memcpy(k6.addr, p->src.a, 16);
		if (bpf_map_lookup_elem(t6, &k6))
			return 1;
	}
	return 0;
}

/* 1: a token was taken (or the limit is off) */
static __always_inline int syn_take(const struct pkt *p)
{
	__u64 now, cap, add, elapsed;
	struct nave_bucket *b;
	struct src16 key = p->src;
	__u64 rate = syn_rate; /* read once: a reload may change it */

	if (!rate)
		return 1;
	if (!p->v4) /* an IPv6 source by its /64 */
		__builtin_memset(&key.a[8], 0, 8);
	cap = rate * 1000;
	now = bpf_ktime_get_ns();
	b = bpf_map_lookup_elem(&buckets, &key);
	if (!b) {
		struct nave_bucket nb = {.stamp_ns = now, .tokens = cap - 1000};

		bpf_map_update_elem(&buckets, &key, &nb, BPF_ANY);
		return 1;
	}
	/*
	 * Refill: syn_rate tokens (x1000) per second, up to the burst. The stamp
	 * moves only when something was added, so frequent SYNs still refill.
	 * Updates from several CPUs may race; the limit is approximate then.
	 */
	elapsed = now > b->stamp_ns ? now - b->stamp_ns : 0;
	if (elapsed >= 1000000000ull) {
		b->tokens = cap;
		b->stamp_ns = now;
	} else {
		add = elapsed * rate / 1000000; /* < 1e9 * 2^32: no overflow */
		if (add) {
			b->tokens = b->tokens + add > cap ? cap : b->tokens + add;
			b->stamp_ns = now;
		}
	}
	if (b->tokens < 1000)
		return 0;
	b->tokens -= 1000;
	return 1;
}

SEC("xdp")
int xdp_fw(struct xdp_md *ctx)
{
	struct pkt p = {};
	int in_range = 0, r = parse(ctx, &p);

	if (r == P_NONE)
		return XDP_PASS;
	if (r != P_TCP) {
		/* no TCP header to judge: by the source only, if the port may be ours */
		if (p.port_known && !guarded(p.dport, &in_range))
			return XDP_PASS;
		if (in_lists(&p, &deny_v4, deny4, &deny_v6, deny6)) {
			count(NAVE_XDP_DENY);
			return XDP_DROP;
		}
		if (r == P_CUT_FIRST) {
			count(NAVE_XDP_MALFORMED);
			return XDP_DROP;
		}
		return XDP_PASS;
	}
	if (!guarded(p.dport, &in_range))
		return XDP_PASS;

	if (in_lists(&p, &deny_v4, deny4, &deny_v6, deny6)) {
		count(NAVE_XDP_DENY);
		return XDP_DROP;
	}
	if ((allow4 || allow6) && !in_lists(&p, &allow_v4, allow4, &allow_v6, allow6)) {
		count(NAVE_XDP_NOT_ALLOWED);
		return XDP_DROP;
	}

	struct nave_port *np = NULL;

	if (in_range) {
		__u16 port = p.dport;

		np = bpf_map_lookup_elem(&ports, &port);
		if (p.syn && (!np || !(np->flags & NAVE_PORT_OPEN))) {
			count(NAVE_XDP_UNALLOCATED);
			return XDP_DROP;
		}
		/* the range only: relayd's own ports take devices' bursts of data links */
		if (p.syn && !syn_take(&p)) {
			count(NAVE_XDP_SYN_RATE);
			return XDP_DROP;
		}
	}

	count(NAVE_XDP_PASS);
	if (np) {
		__u32 idx = (__u32)p.dport - count_base;
		struct nave_count *c = bpf_map_lookup_elem(&port_counts, &idx);

		if (c) {
			c->packets += 1;
			c->bytes += p.payload;
		}
	}
	return XDP_PASS;
}

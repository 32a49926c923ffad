// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The XDP filter (loader: xdp.c, API: xdp.h). For TCP to a guarded port (the
 * [ports] range and relayd's own listeners, fixed in rodata before load), in
 * this order: a source in the deny trie is dropped; when the allow list is not
 * empty, a source not in the allow trie is dropped; a SYN to a port of the
 * range that the ports map does not hold open is dropped; a SYN over the
 * source's token bucket (syn_rate per second, burst syn_rate) is dropped.
 * What passes is counted, and for an allocated port of the range its packets
 * and TCP payload bytes too. Everything else (not Ethernet/IP/TCP, a later
 * fragment, another port) passes uncounted.
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

/* set by the loader before load */
const volatile __u16 port_min = 0; /* 0: no range */
const volatile __u16 port_max = 0;
const volatile __u16 svc_ports[NAVE_SVC_MAX] = {0};
const volatile __u32 syn_rate = 0; /* SYNs per second per source, 0 = off */

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
	__uint(max_entries, NAVE_PORTS_MAX); /* the loader sets the range's size */
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

/* the SYN token buckets, keyed by the 16-byte source (IPv4 as ::ffff:a.b.c.d) */
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

/* index port - port_min; the loader sets the range's size */
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

struct pkt {
	struct src16 src; /* 16-byte form */
	__u16 dport;	  /* host order */
	__u8 syn;	  /* SYN without ACK */
	__u8 v4;	  /* an IPv4 packet, or an IPv6 one from ::ffff:a.b.c.d */
	__u32 payload;	  /* TCP payload bytes */
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

/* 0: not TCP (or not parsable): pass untouched; 1: p is filled */
static __always_inline int parse(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct tcphdr *th;
	__u32 l3len, l4off;
	__u16 proto;
	void *l3;

	if ((void *)(eth + 1) > end)
		return 0;
	proto = eth->h_proto;
	l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan *vh = l3;

		if ((void *)(vh + 1) > end)
			return 0;
		proto = vh->proto;
		l3 = vh + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = l3;
		__u32 ihl;

		if ((void *)(iph + 1) > end)
			return 0;
		if (iph->protocol != IPPROTO_TCP)
			return 0;
		if (iph->frag_off & bpf_htons(0x1fff)) /* a later fragment: no TCP header */
			return 0;
		ihl = (__u32)iph->ihl * 4;
		if (ihl < sizeof(*iph))
			return 0;
		th = (struct tcphdr *)((__u8 *)iph + ihl);
		if ((void *)(th + 1) > end)
			return 0;
		__builtin_memset(p->src.a, 0, 10);
		p->src.a[10] = 0xff;
		p->src.a[11] = 0xff;
		__builtin_memcpy(&p->src.a[12], &iph->saddr, 4);
		p->v4 = 1;
		l3len = bpf_ntohs(iph->tot_len);
		l4off = ihl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return 0;
		if (ip6->nexthdr != IPPROTO_TCP)
			return 0;
		th = (struct tcphdr *)(ip6 + 1);
		if ((void *)(th + 1) > end)
			return 0;
		__builtin_memcpy(p->src.a, &ip6->saddr, 16);
		p->v4 = is_v4_mapped(p->src.a);
		l3len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		l4off = sizeof(*ip6);
	} else {
		return 0;
	}

	p->dport = bpf_ntohs(th->dest);
	p->syn = th->syn && !th->ack;
	l4off += (__u32)th->doff * 4;
	p->payload = l3len > l4off ? l3len - l4off : 0;
	return 1;
}

static __always_inline int guarded(__u16 port, int *in_range)
{
	*in_range = 0;
#pragma unroll
	for (int i = 0; i < NAVE_SVC_MAX; i++)
		if (svc_ports[i] && svc_ports[i] == port)
			return 1;
	if (port_min && port >= port_min && port <= port_max) {
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

	if (!syn_rate)
		return 1;
	cap = (__u64)syn_rate * 1000;
	now = bpf_ktime_get_ns();
	b = bpf_map_lookup_elem(&buckets, &p->src);
	if (!b) {
		struct nave_bucket nb = {.stamp_ns = now, .tokens = cap - 1000};

		bpf_map_update_elem(&buckets, &p->src, &nb, BPF_ANY);
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
		add = elapsed * syn_rate / 1000000; /* < 1e9 * 2^32: no overflow */
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
	int in_range;

	if (!parse(ctx, &p) || !guarded(p.dport, &in_range))
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
	}
	if (p.syn && !syn_take(&p)) {
		count(NAVE_XDP_SYN_RATE);
		return XDP_DROP;
	}

	count(NAVE_XDP_PASS);
	if (np) {
		__u32 idx = (__u32)p.dport - port_min;
		struct nave_count *c = bpf_map_lookup_elem(&port_counts, &idx);

		if (c) {
			c->packets += 1;
			c->bytes += p.payload;
		}
	}
	return XDP_PASS;
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Port steering (BPF_PROG_TYPE_SK_LOOKUP, attached to relayd's network
 * namespace): a SYN to a port of [ports] range on relayd's address goes to
 * relayd's one range listener group when the port is allocated; when it is
 * not, nothing listens there and the kernel answers with a RST. Everything
 * else is untouched.
 * The group's own picker (reuseport.bpf.c) then chooses the worker.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"

#define SK_DROP 0
#define SK_PASS 1
#ifndef AF_INET
#define AF_INET	 2
#define AF_INET6 10
#endif

/* the range: set by the loader, before load and on a reload (mmaped .bss; 0-0 is none) */
volatile __u16 port_min = 0, port_max = 0;
/* set by the loader before load */
const volatile __u32 family = AF_INET; /* of relayd's address */
const volatile __u32 any_addr = 1;     /* 0.0.0.0 or :: */
const volatile __u32 dual_stack = 0;   /* :: that takes IPv4 too */
const volatile __u32 addr4 = 0;	       /* network order */
const volatile __u32 addr6[4] = {0, 0, 0, 0};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct nave_port);
	__uint(max_entries, NAVE_PORTS_MAX);  /* any range a reload may set */
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory for the ports allocated only */
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, NAVE_WORKERS_MAX);
} listeners SEC(".maps");

/* [0] unallocated (left to the kernel: RST), [1] steered, [2] no listener to steer to */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 3);
} counts SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &i);

	if (v)
		*v += 1;
}

static __always_inline int ours(const struct bpf_sk_lookup *ctx)
{
	if (ctx->family == AF_INET) {
		if (family == AF_INET)
			return any_addr || ctx->local_ip4 == addr4;
		return dual_stack;
	}
	if (ctx->family == AF_INET6 && family == AF_INET6) {
		if (any_addr)
			return 1;
		return ctx->local_ip6[0] == addr6[0] && ctx->local_ip6[1] == addr6[1] &&
		       ctx->local_ip6[2] == addr6[2] && ctx->local_ip6[3] == addr6[3];
	}
	return 0;
}

SEC("sk_lookup")
int nave_steer(struct bpf_sk_lookup *ctx)
{
	struct nave_port *p;
	struct bpf_sock *sk;
	__u16 port;
	__u32 zero = 0;
	long err;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	/* a reload moves the range low end first when it grows, so a port of both stays in */
	if (ctx->local_port < port_min || ctx->local_port > port_max)
		return SK_PASS;
	if (!ours(ctx))
		return SK_PASS;
	port = (__u16)ctx->local_port;
	p = bpf_map_lookup_elem(&ports, &port);
	if (!p || !(p->flags & NAVE_PORT_OPEN)) {
		/*
		 * Not ours: the ordinary lookup goes on and, as nothing listens on a
		 * port of the reserved range, the kernel answers the SYN with a RST.
		 * SK_DROP would do the same here but would also veto every other
		 * program and socket of this namespace on that port.
		 */
		count(0);
		return SK_PASS;
	}
	/* any listener of the group: the group's picker chooses the worker */
	sk = bpf_map_lookup_elem(&listeners, &zero);
	if (!sk) {
		count(2);
		return SK_DROP;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(2);
		return SK_DROP;
	}
	count(1);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the BPF programs and their loaders share: map keys and values. Included
 * by the *.bpf.c programs (with linux/types.h) and by the C loaders.
 */
#ifndef NAVE_BPF_MAPS_H
#define NAVE_BPF_MAPS_H

#include <linux/types.h>

#define NAVE_PORTS_MAX	 65536 /* the ports map: every port of the range can be allocated */
#define NAVE_WORKERS_MAX 256   /* the listener SOCKMAP: one per worker (ENGINE_MAX_WORKERS) */
#define NAVE_LPM_MAX	 4096  /* per trie (CIDR_LIST_MAX) */
#define NAVE_SRC_MAX	 65536 /* sources the SYN rate limit tracks at once (LRU) */
#define NAVE_SVC_MAX	 8 /* relayd's own listening ports the XDP filter guards besides the range */

/* ports map: key __u16 port (host order) */
struct nave_port {
	__u32 tunnel; /* relayd's index of the tunnel (diagnostics) */
	__u32 flags;  /* NAVE_PORT_* */
};
#define NAVE_PORT_OPEN 1u

struct nave_lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};
struct nave_lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* per-port counters (XDP, packets arriving for an allocated port of the range) */
struct nave_count {
	__u64 packets;
	__u64 bytes; /* TCP payload bytes */
};

/* the XDP verdict counters, a PERCPU_ARRAY indexed by this */
enum nave_xdp_ctr {
	NAVE_XDP_PASS,	      /* guarded traffic let through */
	NAVE_XDP_DENY,	      /* source in the deny list */
	NAVE_XDP_NOT_ALLOWED, /* allow list not empty and the source not in it */
	NAVE_XDP_UNALLOCATED, /* SYN to a port of the range nobody holds */
	NAVE_XDP_SYN_RATE,    /* SYN to a port of the range over the source's syn_rate */
	NAVE_XDP_MALFORMED,   /* a first fragment whose TCP header is cut */
	NAVE_XDP_NCTR
};

/* which destinations of a family the XDP filter judges (relayd's address) */
#define NAVE_DST_NONE 0 /* none: relayd does not listen on this family */
#define NAVE_DST_ANY  1 /* any: a wildcard address */
#define NAVE_DST_ADDR 2 /* relayd's address only */

/* the per-source SYN token bucket (LRU hash keyed by the 16-byte source, IPv6 by its /64) */
struct nave_bucket {
	__u64 stamp_ns; /* last refill */
	__u64 tokens;	/* scaled by 1000 */
};

#endif

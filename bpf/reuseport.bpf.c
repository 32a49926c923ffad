// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Worker choice (BPF_PROG_TYPE_SK_REUSEPORT, attached to relayd's range
 * listener group): the listener of the worker pinned to the CPU that took the
 * SYN, so a connection stays on one core from the NIC to the worker; when that
 * CPU has no worker, the flow hash picks one.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"

#define SK_DROP 0
#define SK_PASS 1

const volatile __u32 workers = 1; /* set by the loader before load */

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, NAVE_WORKERS_MAX);
} listeners SEC(".maps"); /* shared with sk_lookup.bpf.c */

/* [0] by CPU, [1] by hash, [2] left to the kernel */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 3);
} picks SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&picks, &i);

	if (v)
		*v += 1;
}

SEC("sk_reuseport")
int nave_pick(struct sk_reuseport_md *md)
{
	__u32 key = bpf_get_smp_processor_id();

	if (key < workers && !bpf_sk_select_reuseport(md, &listeners, &key, 0)) {
		count(0);
		return SK_PASS;
	}
	if (workers) {
		key = md->hash % workers;
		if (!bpf_sk_select_reuseport(md, &listeners, &key, 0)) {
			count(1);
			return SK_PASS;
		}
	}
	count(2);
	return SK_PASS; /* nothing selected: the kernel's own hash */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

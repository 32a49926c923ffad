// SPDX-License-Identifier: Apache-2.0
/* Port steering's loader (steer.h). */
#include "steer.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "maps.h"
#include "reuseport.skel.h"
#include "sk_lookup.skel.h"

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif

struct steer {
	struct nave_sk_lookup *lk;
	struct nave_reuseport *rp;
	struct bpf_link *netns_link;
	unsigned workers;
};

static int libbpf_to_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	if (level == LIBBPF_DEBUG)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	if (n)
		log_debug("%s", line); /* libbpf says "libbpf: " itself */
	return 0;
}

void nave_bpf_log_init(void)
{
	libbpf_set_print(libbpf_to_log);
}

uint64_t nave_bpf_percpu_sum(int map_fd, uint32_t key)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *v, sum = 0;

	if (ncpu <= 0 || map_fd < 0)
		return 0;
	v = calloc((size_t)ncpu, sizeof(*v));
	if (!v)
		return 0;
	if (bpf_map_lookup_elem(map_fd, &key, v) == 0)
		for (int i = 0; i < ncpu; i++)
			sum += v[i];
	free(v);
	return sum;
}

static void why_errno(char *why, size_t whylen, const char *what, int err)
{
	if (err == EPERM || err == EACCES)
		snprintf(why, whylen, "%s: %s (BPF needs root, or CAP_BPF with CAP_NET_ADMIN)",
			 what, strerror(err));
	else
		snprintf(why, whylen, "%s: %s", what, strerror(err));
}

/*
 * The rodata of an sk_lookup program of ours already attached to netns, read
 * through its map: 1 when found (in *out), 0 when prog is not ours.
 */
static int peer_rodata(int prog_fd, struct nave_sk_lookup__rodata *out)
{
	struct bpf_prog_info pi;
	__u32 ids[16], len = sizeof(pi);
	int found = 0;

	memset(&pi, 0, sizeof(pi));
	pi.nr_map_ids = 16;
	pi.map_ids = (__u64)(uintptr_t)ids;
	if (bpf_obj_get_info_by_fd(prog_fd, &pi, &len) < 0 || strcmp(pi.name, "nave_steer"))
		return 0;
	for (__u32 i = 0; i < pi.nr_map_ids && i < 16 && !found; i++) {
		struct bpf_map_info mi;
		__u32 ml = sizeof(mi), key = 0;
		int fd = bpf_map_get_fd_by_id(ids[i]);

		if (fd < 0)
			continue;
		memset(&mi, 0, sizeof(mi));
		if (bpf_obj_get_info_by_fd(fd, &mi, &ml) == 0 && strstr(mi.name, ".rodata") &&
		    mi.value_size == sizeof(*out) && bpf_map_lookup_elem(fd, &key, out) == 0)
			found = 1;
		close(fd);
	}
	return found;
}

static void cfg_rodata(const struct steer_cfg *c, struct nave_sk_lookup__rodata *r)
{
	memset(r, 0, sizeof(*r));
	r->port_min = c->port_min;
	r->port_max = c->port_max;
	if (c->addr->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)c->addr;

		r->family = AF_INET;
		r->addr4 = a->sin_addr.s_addr;
		r->any_addr = a->sin_addr.s_addr == htonl(INADDR_ANY);
	} else {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)c->addr;

		r->family = AF_INET6;
		memcpy(r->addr6, &a->sin6_addr, 16);
		r->any_addr = IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr);
		/* relayd's [::] listeners take IPv4 too (bindv6only is off for them) */
		r->dual_stack = r->any_addr;
	}
}

int steer_check_others(const struct steer_cfg *c, char *why, size_t whylen)
{
	struct nave_sk_lookup__rodata me;
	__u32 ids[64], cnt = 64;
	int ns;

	cfg_rodata(c, &me);
	ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (ns < 0)
		return 0;
	if (bpf_prog_query(ns, BPF_SK_LOOKUP, 0, NULL, ids, &cnt) < 0)
		cnt = 0; /* nothing attached, or no right to look */
	close(ns);
	for (__u32 i = 0; i < cnt && i < 64; i++) {
		struct nave_sk_lookup__rodata o;
		int fd = bpf_prog_get_fd_by_id(ids[i]);
		bool clash;

		if (fd < 0)
			continue;
		clash = peer_rodata(fd, &o) && o.port_min <= me.port_max &&
			me.port_min <= o.port_max &&
			(o.any_addr || me.any_addr ||
			 (o.family == me.family && o.addr4 == me.addr4 &&
			  !memcmp(o.addr6, me.addr6, sizeof(o.addr6))));
		close(fd);
		if (clash) {
			snprintf(
			    why, whylen,
			    "another nave-relayd already steers ports %u-%u on an address that "
			    "overlaps ours (BPF program id %u)",
			    o.port_min, o.port_max, ids[i]);
			return -EADDRINUSE;
		}
	}
	return 0;
}

int steer_open(struct steer **out, const struct steer_cfg *c, char *why, size_t whylen)
{
	struct steer *s = calloc(1, sizeof(*s));
	int r;

	*out = NULL;
	if (!s) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	if (!c->workers || c->workers > NAVE_WORKERS_MAX || c->port_min > c->port_max) {
		snprintf(why, whylen, "steering: bad parameters");
		free(s);
		return -EINVAL;
	}
	s->workers = c->workers;
	s->lk = nave_sk_lookup__open();
	s->rp = nave_reuseport__open();
	if (!s->lk || !s->rp) {
		r = -errno;
		why_errno(why, whylen, "steering: opening the BPF objects", errno);
		goto fail;
	}
	cfg_rodata(c, s->lk->rodata);
	bpf_map__set_max_entries(s->lk->maps.ports, (uint32_t)(c->port_max - c->port_min) + 1);
	r = nave_sk_lookup__load(s->lk);
	if (r < 0) {
		why_errno(why, whylen, "steering: loading sk_lookup", -r);
		goto fail;
	}
	s->rp->rodata->workers = c->workers;
	r = bpf_map__reuse_fd(s->rp->maps.listeners, bpf_map__fd(s->lk->maps.listeners));
	if (!r)
		r = nave_reuseport__load(s->rp);
	if (r < 0) {
		why_errno(why, whylen, "steering: loading the reuseport picker", -r);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	steer_free(s);
	return r < 0 ? r : -EINVAL;
}

int steer_attach(struct steer *s, const int *fds, unsigned n, char *why, size_t whylen)
{
	int lfd = bpf_map__fd(s->lk->maps.listeners);
	int pfd = bpf_program__fd(s->rp->progs.nave_pick);
	int ns, r;

	if (n != s->workers) {
		snprintf(why, whylen, "steering: %u listeners for %u workers", n, s->workers);
		return -EINVAL;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t v = (uint64_t)fds[i];

		if (bpf_map_update_elem(lfd, &i, &v, BPF_ANY) < 0) {
			r = -errno;
			why_errno(why, whylen, "steering: listener into the SOCKMAP", errno);
			return r;
		}
	}
	/* one program per group: it replaces the classic hash picker */
	if (setsockopt(fds[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &pfd, sizeof(pfd)) < 0) {
		r = -errno;
		why_errno(why, whylen, "steering: SO_ATTACH_REUSEPORT_EBPF", errno);
		return r;
	}
	ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (ns < 0) {
		r = -errno;
		why_errno(why, whylen, "steering: /proc/self/ns/net", errno);
		return r;
	}
	s->netns_link = bpf_program__attach_netns(s->lk->progs.nave_steer, ns);
	r = -errno;
	close(ns);
	if (!s->netns_link) {
		why_errno(why, whylen, "steering: attaching sk_lookup to the network namespace",
			  -r);
		return r;
	}
	return 0;
}

int steer_ports_fd(const struct steer *s)
{
	return bpf_map__fd(s->lk->maps.ports);
}

void steer_stats(struct steer *s, struct steer_stats *st)
{
	int c = bpf_map__fd(s->lk->maps.counts), p = bpf_map__fd(s->rp->maps.picks);

	st->refused = nave_bpf_percpu_sum(c, 0);
	st->steered = nave_bpf_percpu_sum(c, 1);
	st->no_listener = nave_bpf_percpu_sum(c, 2);
	st->by_cpu = nave_bpf_percpu_sum(p, 0);
	st->by_hash = nave_bpf_percpu_sum(p, 1);
	st->by_kernel = nave_bpf_percpu_sum(p, 2);
}

void steer_free(struct steer *s)
{
	if (!s)
		return;
	bpf_link__destroy(s->netns_link);
	nave_reuseport__destroy(s->rp);
	nave_sk_lookup__destroy(s->lk);
	free(s);
}

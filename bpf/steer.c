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

static void why_errno(char *why, size_t whylen, const char *what, int err)
{
	if (err == EPERM || err == EACCES)
		snprintf(why, whylen, "%s: %s (BPF needs root, or CAP_BPF with CAP_NET_ADMIN)",
			 what, strerror(err));
	else
		snprintf(why, whylen, "%s: %s", what, strerror(err));
}

static bool v6only_default(void)
{
	char c = '0';
	int fd = open("/proc/sys/net/ipv6/bindv6only", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (read(fd, &c, 1) != 1)
			c = '0';
		close(fd);
	}
	return c == '1';
}

static void cfg_rodata(const struct steer_cfg *c, struct nave_sk_lookup__rodata *r)
{
	memset(r, 0, sizeof(*r));
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
		/* relayd's [::] listeners take IPv4 too unless the namespace's default says no */
		r->dual_stack = r->any_addr && !v6only_default();
	}
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
	s->lk->bss->port_min = c->port_min;
	s->lk->bss->port_max = c->port_max;
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

void steer_set_range(struct steer *s, uint16_t port_min, uint16_t port_max)
{
	volatile __u16 *lo = &s->lk->bss->port_min, *hi = &s->lk->bss->port_max;

	/*
	 * Two stores the program may see one at a time: the end that widens goes
	 * first, so every port in both ranges is steered throughout (a reload
	 * never strands an allocated port, relayd refuses that).
	 */
	if (port_min < *lo) {
		*lo = port_min;
		*hi = port_max;
	} else {
		*hi = port_max;
		*lo = port_min;
	}
}

int steer_ports_fd(const struct steer *s)
{
	return bpf_map__fd(s->lk->maps.ports);
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

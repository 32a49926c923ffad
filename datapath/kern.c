// SPDX-License-Identifier: Apache-2.0
/* relayd's kernel assists: steering and XDP (kern.h). */
#include "kern.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "maps.h"
#include "sock.h"
#include "steer.h"
#include "util.h"
#include "xdp.h"

_Static_assert(NAVE_WORKERS_MAX >= ENGINE_MAX_WORKERS, "the listener SOCKMAP holds every worker");

struct kern {
	uint16_t port_min, port_max;
	unsigned workers;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct steer *steer; /* NULL: listeners */
	int ports_fd;	     /* the ports map, -1 without BPF */
	unsigned nports;     /* entries in it */
	uint8_t *held;	     /* the mirror: one byte per port (a reload may move the range) */
	struct xdp_fw *xdp;  /* NULL: [xdp] interface is empty */
	unsigned syn_rate;
	char why[256]; /* why auto fell back to listeners */
};

int kern_open(struct kern **out, const struct cfg_server *cfg, unsigned workers,
	      const struct sockaddr *addr, socklen_t addrlen, char *why, size_t whylen)
{
	struct kern *k = calloc(1, sizeof(*k));
	struct steer_cfg sc = {
	    .port_min = cfg->port_min,
	    .port_max = cfg->port_max,
	    .addr = addr,
	    .addrlen = addrlen,
	    .workers = workers,
	};
	int r;

	*out = NULL;
	if (!k || !(k->held = calloc(NAVE_PORTS_MAX, 1))) {
		free(k);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	k->port_min = cfg->port_min;
	k->port_max = cfg->port_max;
	k->workers = workers;
	memcpy(&k->addr, addr, addrlen);
	k->addrlen = addrlen;
	k->ports_fd = -1;
	nave_bpf_log_init();
	if (cfg->steering != CFG_STEER_LISTENERS) {
		r = steer_open(&k->steer, &sc, k->why, sizeof(k->why));
		if (r < 0 && cfg->steering == CFG_STEER_BPF) {
			snprintf(why, whylen, "[datapath] steering = bpf: %s", k->why);
			kern_free(k);
			return r;
		}
		if (r < 0)
			log_warn("steering: BPF is not available (%s): one listener per port and "
				 "worker instead (steering = auto)",
				 k->why);
		else
			k->ports_fd = steer_ports_fd(k->steer);
	}
	if (!cfg->xdp_interface[0] && cfg->syn_rate)
		log_warn("[xdp] syn_rate = %u does nothing while [xdp] interface is empty",
			 cfg->syn_rate);
	if (cfg->xdp_interface[0]) {
		struct xdp_fw_cfg xc = {
		    .ifname = cfg->xdp_interface,
		    .mode = XDP_FW_AUTO,
		    .port_min = cfg->port_min,
		    .port_max = cfg->port_max,
		    .syn_rate = cfg->syn_rate,
		    .ports_fd = k->ports_fd, /* sk_lookup's map: one source of truth */
		    .addr = addr,	     /* only TCP to relayd's address is judged */
		    .addrlen = addrlen,
		};

		/* relayd's tunnel listener is guarded too (the lists; not the SYN rate) */
		xc.svc_ports[0] = cfg->tunnel_port ? cfg->tunnel_port : cfg->https_port;
		r = xdp_fw_open(&k->xdp, &xc, why, whylen);
		if (r < 0) {
			char w[512];

			snprintf(w, sizeof(w), "%s", why);
			snprintf(why, whylen, "[xdp] interface = %s: %s", cfg->xdp_interface, w);
			kern_free(k);
			return r;
		}
		k->ports_fd = xdp_fw_ports_fd(k->xdp);
		k->syn_rate = cfg->syn_rate;
		if (cfg->syn_rate)
			log_info("xdp: filter attached to %s (%s mode), SYN rate %u/s per source",
				 cfg->xdp_interface, xdp_fw_mode(k->xdp), cfg->syn_rate);
		else
			log_info("xdp: filter attached to %s (%s mode), no SYN rate limit",
				 cfg->xdp_interface, xdp_fw_mode(k->xdp));
	}
	*out = k;
	return 0;
}

void kern_free(struct kern *k)
{
	if (!k)
		return;
	xdp_fw_free(k->xdp);
	steer_free(k->steer);
	free(k->held);
	free(k);
}

bool kern_steering(const struct kern *k)
{
	return k && k->steer;
}

const char *kern_steering_name(const struct kern *k)
{
	return kern_steering(k) ? "bpf" : "listeners";
}

void kern_steering_off(struct kern *k)
{
	steer_free(k->steer);
	k->steer = NULL;
	/* XDP keeps the ports map it shared (its own reference) */
	k->ports_fd = k->xdp ? xdp_fw_ports_fd(k->xdp) : -1;
}

int kern_range_listen(struct kern *k, int *fds, char *why, size_t whylen)
{
	struct sockaddr_storage ss = k->addr;
	int r;

	/* port 0: the kernel picks one (outside the reserved range) for the whole group */
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	r = sock_listen_group((struct sockaddr *)&ss, k->addrlen, k->workers, 4096, false, fds, why,
			      whylen);
	if (r < 0)
		return r;
	r = steer_attach(k->steer, fds, k->workers, why, whylen);
	if (r < 0) {
		for (unsigned i = 0; i < k->workers; i++)
			close(fds[i]);
		return r;
	}
	return 0;
}

int kern_port_set(struct kern *k, uint16_t port, uint32_t tunnel)
{
	struct nave_port v = {.tunnel = tunnel, .flags = NAVE_PORT_OPEN};
	uint8_t *h;

	if (!k || port < k->port_min || port > k->port_max || k->ports_fd < 0)
		return 0;
	h = &k->held[port];
	if (bpf_map_update_elem(k->ports_fd, &port, &v, BPF_ANY) < 0)
		return -errno;
	if (!*h)
		k->nports++;
	*h = 1;
	return 0;
}

void kern_port_del(struct kern *k, uint16_t port)
{
	uint8_t *h;

	if (!k || port < k->port_min || port > k->port_max || k->ports_fd < 0)
		return;
	h = &k->held[port];
	if (bpf_map_delete_elem(k->ports_fd, &port) < 0 && errno != ENOENT)
		log_every(NLOG_WARN, "port %u: removing it from the ports map: %s", port,
			  strerror(errno));
	if (*h)
		k->nports--;
	*h = 0;
	if (k->xdp)
		xdp_fw_port_reset(k->xdp, port);
}

void kern_set_range(struct kern *k, uint16_t port_min, uint16_t port_max)
{
	if (!k)
		return;
	k->port_min = port_min;
	k->port_max = port_max;
	if (k->steer)
		steer_set_range(k->steer, port_min, port_max);
	if (k->xdp)
		xdp_fw_set_range(k->xdp, port_min, port_max);
}

void kern_set_syn_rate(struct kern *k, unsigned syn_rate)
{
	if (!k)
		return;
	if (k->xdp) {
		xdp_fw_set_syn_rate(k->xdp, syn_rate);
		if (syn_rate)
			log_info("xdp: SYN rate now %u/s per source", syn_rate);
		else
			log_info("xdp: no SYN rate limit now");
	} else if (syn_rate) {
		log_warn("[xdp] syn_rate = %u does nothing while [xdp] interface is empty",
			 syn_rate);
	}
	k->syn_rate = syn_rate;
}

void kern_firewall(struct kern *k, struct cidr_table *t)
{
	int r;

	if (k && k->xdp && (r = xdp_fw_set_lists(k->xdp, t)) < 0)
		log_warn("xdp: the firewall lists did not all reach the filter: %s (relayd still "
			 "refuses those sources at accept)",
			 strerror(-r));
	cidr_table_put(t); /* the tries hold copies */
}

int kern_watch_fd(const struct kern *k)
{
	return k && k->xdp ? xdp_fw_watch_fd(k->xdp) : -1;
}

void kern_watch(struct kern *k)
{
	if (k && k->xdp)
		xdp_fw_watch(k->xdp);
}

/* counters of at most this many ports per stats message: it stays well under MSG_MAX */
#define PORT_COUNTERS_MAX 512

static json_t *port_counters(struct kern *k)
{
	json_t *o = json_object();
	size_t n = (size_t)k->port_max - k->port_min + 1, sent = 0;

	for (size_t i = 0; o && i < n && sent < PORT_COUNTERS_MAX; i++) {
		uint64_t pk, by;
		char key[8];

		if (!k->held[k->port_min + i] ||
		    !xdp_fw_port_count(k->xdp, (uint16_t)(k->port_min + i), &pk, &by))
			continue;
		snprintf(key, sizeof(key), "%u", (unsigned)(k->port_min + i));
		json_object_set_new(o, key, json_pack("[I, I]", (json_int_t)pk, (json_int_t)by));
		sent++;
	}
	return o;
}

void kern_stats(struct kern *k, json_t *o, unsigned listeners)
{
	struct xdp_fw_stats xs;

	memset(&xs, 0, sizeof(xs));
	if (k && k->xdp)
		xdp_fw_stats(k->xdp, &xs);
	json_object_set_new(o, "steering", json_string(kern_steering_name(k)));
	json_object_set_new(o, "listeners", json_integer(listeners));
	/* what the kernel's maps hold: the ports map, the XDP tries */
	if (k && k->ports_fd >= 0)
		json_object_set_new(o, "maps",
				    json_pack("{s:I, s:I, s:I}", "ports", (json_int_t)k->nports,
					      "deny", (json_int_t)xs.ndeny, "allow",
					      (json_int_t)xs.nallow));
	else
		json_object_set_new(o, "maps", json_null());
	if (!k || !k->xdp) {
		json_object_set_new(o, "xdp", json_null());
		return;
	}
	json_object_set_new(o, "xdp",
			    json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "interface",
				      xdp_fw_ifname(k->xdp), "mode", xdp_fw_mode(k->xdp),
				      "syn_rate", (json_int_t)k->syn_rate, "pass",
				      (json_int_t)xs.ctr[NAVE_XDP_PASS], "deny",
				      (json_int_t)xs.ctr[NAVE_XDP_DENY], "not_allowed",
				      (json_int_t)xs.ctr[NAVE_XDP_NOT_ALLOWED], "unallocated",
				      (json_int_t)xs.ctr[NAVE_XDP_UNALLOCATED], "syn_rate_drops",
				      (json_int_t)xs.ctr[NAVE_XDP_SYN_RATE], "malformed",
				      (json_int_t)xs.ctr[NAVE_XDP_MALFORMED]));
	json_object_set_new(o, "port_counters", port_counters(k));
}

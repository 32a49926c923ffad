/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The XDP filter's loader (xdp.bpf.c): relayd's [xdp] section.
 *
 * On [xdp] interface it drops, for TCP to relayd's address (addr; a wildcard
 * is any address of its family, :: of both) and relayd's ports (the range and
 * the service ports given): sources in the deny list; when the allow list is
 * not empty, sources not in it; SYNs to ports of the range that the ports map
 * does not hold; SYNs to ports of the range over a source's syn_rate per second
 * (0 = off; an IPv6 source counts by its /64). TCP to relayd's address without
 * a readable TCP header (a later fragment, a cut header, more IPv6 extension
 * headers than it walks) is dropped when its source is denied; a first
 * fragment with a cut TCP header whatever its source, unless its port can be
 * read and is not guarded. It counts packets and payload bytes per allocated
 * port. Everything else passes.
 */
#ifndef NAVE_BPF_XDP_H
#define NAVE_BPF_XDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cidr.h"

struct xdp_fw;

enum xdp_fw_mode { XDP_FW_AUTO, XDP_FW_NATIVE, XDP_FW_GENERIC };

struct xdp_fw_cfg {
	const char *ifname;	     /* [xdp] interface */
	enum xdp_fw_mode mode;	     /* auto: native, else generic (skb) */
	uint16_t port_min, port_max; /* [ports] range */
	uint16_t svc_ports[8];	     /* relayd's own listening ports (0 = unused) */
	uint32_t syn_rate;	     /* SYNs per second per source, 0 = off */
	int ports_fd;		     /* the ports map to share (sk_lookup's), -1 = its own */
	/*
	 * relayd's [listen] address (the port is not looked at): only TCP to it is
	 * judged. 0.0.0.0 is any IPv4 address; :: any address of both families;
	 * ::ffff:a.b.c.d is IPv4 to a.b.c.d. NULL: any address of both families.
	 */
	const struct sockaddr *addr;
	socklen_t addrlen;
};

struct xdp_fw_stats {
	uint64_t ctr[6];	/* enum nave_xdp_ctr, summed over CPUs */
	unsigned ndeny, nallow; /* the entries the tries hold (a block once, both families) */
};

/* Loads (the verifier runs here) and attaches; 0 or -errno with a one-line why. */
int xdp_fw_open(struct xdp_fw **out, const struct xdp_fw_cfg *c, char *why, size_t whylen);
void xdp_fw_free(struct xdp_fw *x); /* detaches */
/* "native", "generic", or "detached" while the interface is gone */
const char *xdp_fw_mode(const struct xdp_fw *x);
const char *xdp_fw_ifname(const struct xdp_fw *x);
/*
 * A reload: the [ports] range the filter guards (its per-port counters keep
 * covering the range it was loaded with) and [xdp] syn_rate, both at once.
 */
void xdp_fw_set_range(struct xdp_fw *x, uint16_t port_min, uint16_t port_max);
void xdp_fw_set_syn_rate(struct xdp_fw *x, uint32_t syn_rate);
/* the ports map (shared or its own): relayd writes it on allocation and release */
int xdp_fw_ports_fd(const struct xdp_fw *x);
/* the loaded program (tests run it on packets of their own: BPF_PROG_TEST_RUN) */
int xdp_fw_prog_fd(const struct xdp_fw *x);
/* replace both lists (the tries hold exactly these afterwards); 0 or -errno */
int xdp_fw_set_lists(struct xdp_fw *x, const struct cidr_table *t);
void xdp_fw_stats(struct xdp_fw *x, struct xdp_fw_stats *s);
/* packets and payload bytes counted for port so far; false when none */
bool xdp_fw_port_count(struct xdp_fw *x, uint16_t port, uint64_t *packets, uint64_t *bytes);
void xdp_fw_port_reset(struct xdp_fw *x, uint16_t port); /* on release */
/*
 * Interface watching (libnl, route/link): a descriptor to poll for POLLIN, and
 * the call that reads it; the interface going away and coming back re-attaches
 * and logs both.
 */
int xdp_fw_watch_fd(const struct xdp_fw *x);
void xdp_fw_watch(struct xdp_fw *x);

#endif

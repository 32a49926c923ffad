/* SPDX-License-Identifier: Apache-2.0 */
/*
 * relayd's kernel assists (bpf/): port steering (sk_lookup + the reuseport
 * CPU picker, [datapath] steering) and the XDP filter ([xdp]). Owned by
 * relayd.c, driven by the control thread: it mirrors every port allocation
 * and release into the ports map, pushes the firewall lists, and reports.
 */
#ifndef NAVE_KERN_H
#define NAVE_KERN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/cfg.h"
#include "cidr.h"

struct kern;

/*
 * Loads what the config asks for. steering = auto falls back to listeners
 * (one log line says why); bpf refuses (-errno with why); so does an [xdp]
 * interface that cannot be attached. addr is relayd's [listen] address.
 */
int kern_open(struct kern **out, const struct cfg_server *cfg, unsigned workers,
	      const struct sockaddr *addr, socklen_t addrlen, char *why, size_t whylen);
void kern_free(struct kern *k);
bool kern_steering(const struct kern *k); /* true: bpf, false: listeners */
const char *kern_steering_name(const struct kern *k);
/*
 * steering = bpf: opens the range listener group (one socket per worker, on
 * relayd's address and a port the kernel picks) and attaches the programs to
 * it; fds receives the sockets, which the caller hands to the workers.
 */
int kern_range_listen(struct kern *k, int *fds, char *why, size_t whylen);
/* steering = auto, kern_range_listen failed: listeners from now on */
void kern_steering_off(struct kern *k);
/* the port map: every allocation and release (0 or -errno) */
int kern_port_set(struct kern *k, uint16_t port, uint32_t tunnel);
void kern_port_del(struct kern *k, uint16_t port);
/*
 * A reload (control thread): the [ports] range for steering and XDP (relayd
 * checked that no allocated port is left outside), and [xdp] syn_rate.
 */
void kern_set_range(struct kern *k, uint16_t port_min, uint16_t port_max);
void kern_set_syn_rate(struct kern *k, unsigned syn_rate);
/* the lists into XDP's tries (when attached); drops one reference of t */
void kern_firewall(struct kern *k, struct cidr_table *t);
/* the interface watch (XDP): fd to poll, -1 without XDP */
int kern_watch_fd(const struct kern *k);
void kern_watch(struct kern *k);
/* adds steering, listeners, maps, xdp and port_counters to a stats object */
void kern_stats(struct kern *k, json_t *o, unsigned listeners);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Port steering's loader (sk_lookup.bpf.c + reuseport.bpf.c): relayd's
 * [datapath] steering = bpf. steer_open loads both programs (the verifier runs
 * there, so `auto` learns whether this process may use BPF); steer_attach puts
 * the range listener group in the SOCKMAP, makes the CPU picker the group's
 * reuseport program and attaches sk_lookup to this network namespace. Both
 * attachments are fd-based: they go away with the process.
 */
#ifndef NAVE_BPF_STEER_H
#define NAVE_BPF_STEER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct steer;

struct steer_cfg {
	uint16_t port_min, port_max; /* [ports] range */
	const struct sockaddr *addr; /* relayd's [listen] address (the port is ignored) */
	socklen_t addrlen;
	unsigned workers;
};

/* 0, or -errno with a one-line why (-EPERM: this process may not load BPF) */
int steer_open(struct steer **out, const struct steer_cfg *c, char *why, size_t whylen);
int steer_attach(struct steer *s, const int *fds, unsigned n, char *why, size_t whylen);
int steer_ports_fd(const struct steer *s); /* the ports map (key __u16, struct nave_port) */
/* a reload's [ports] range (the program reads it from its .bss, which stays mapped) */
void steer_set_range(struct steer *s, uint16_t port_min, uint16_t port_max);
void steer_free(struct steer *s);
/* libbpf's own messages go to nave's log at debug level (the verifier log among them) */
void nave_bpf_log_init(void);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `nave support connect`: the support person's end of a support session. Listens on a
 * local port; each connection there gets a TLS link of its own to the server (HELLO
 * mode "support", link_proto.h "Support streams"), the inner handshake with the
 * device (support.h) and then carries the connection's bytes as sealed records.
 */
#ifndef NAVE_SUPCONNECT_H
#define NAVE_SUPCONNECT_H

#include "config/cfg.h"
#include "support.h"

#include <stdint.h>

#define SUPC_CONNS 8 /* local connections at a time */

struct supc_opts {
	char server[CFG_STR_MAX]; /* HOST[:PORT] */
	char ca[CFG_PATH_MAX];
	char fingerprint[CFG_STR_MAX];
	char session[SUP_ID_LEN + 1];
	char service[SUP_SVC_NAME_MAX + 1];
	uint8_t psk[SUP_PSK_LEN];
	char addr[64]; /* the local address: an IPv4 or IPv6 literal */
	uint16_t port; /* 0: one the kernel picks (printed) */
};

/*
 * Runs until SIGINT/SIGTERM (0), or 1 when the server refused the first connection or
 * the pre-shared key is wrong, or the setup failed (the reason on stderr).
 */
int supconnect_run(struct supc_opts *o);

#endif

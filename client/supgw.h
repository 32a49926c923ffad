/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device's support gateway (client/README.md "Support streams"): a loopback
 * listener (127.0.0.1, a port of the kernel's choice) owned by a thread of its own.
 * The engine's streams with LINK_BIND_SUPPORT connect to it (op_rule_find gives its
 * address as their target): one listener per service index, so the gateway knows the
 * index relayd allowed (the BIND's) and refuses a SUP1 that names another. The engine
 * writes a PROXY v2 header first (SUPGW_BIND_LEN bytes, TCP over IPv6): its source the
 * supporter's address, its destination the BIND's dst_addr, the session id relayd joined
 * the stream to; a SUP1 naming another session is refused (a supporter of one approved
 * session must not reach a pending one of the same device). For each connection, a
 * thread runs support.h's handshake in the device's role: the session id and service index of SUP1
 * are looked up among the sessions the gateway holds (copies the main thread posts: id, PSK,
 * services, expiry); an unknown, expired or ended session or a service it does not have closes the
 * connection (one log line, rate-limited). Then the service's target is connected (5 s) and the
 * bytes pumped (supstream.h). At most SUPGW_PER_SESSION connections per session, SUPGW_CONNS in
 * all. Dropping a session (its owner ended it, the server closed it, it expired) shuts every
 * connection of it down at once and wipes its key.
 */
#ifndef NAVE_SUPGW_H
#define NAVE_SUPGW_H

#include "support.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SUPGW_CONNS	  16
#define SUPGW_PER_SESSION 8
#define SUPGW_SESSIONS	  8
#define SUPGW_HS_MS	  10000 /* the handshake's deadline */
#define SUPGW_CONNECT_MS  5000	/* connecting to a service */
#define SUPGW_BIND_LEN	  52	/* the PROXY v2 header ahead of a stream (proxy.h, IPv6) */

struct supgw;

/* Listens and starts the thread; NULL with a one-line reason in err. */
struct supgw *supgw_start(char *err, size_t errlen);
/*
 * Where a stream for service index (the BIND's port, as relayd checked it) goes: that
 * index's listener (127.0.0.1:port); a stream's SUP1 must name the same index. 0, or
 * -1 for an index past SUP_SERVICES_MAX.
 */
int supgw_addr(const struct supgw *gw, unsigned index, struct sockaddr_storage *ss, socklen_t *len);
/* Holds (or updates) a session: its key and services are copied. 0, or -1 when full. */
int supgw_session_set(struct supgw *gw, const char *id, const uint8_t psk[SUP_PSK_LEN],
		      const struct sup_services *svc, int64_t expires_at);
/* Forgets a session (its key wiped) and shuts every connection of it down now. */
void supgw_session_drop(struct supgw *gw, const char *id, const char *why);
/* Live connections of a session (id NULL: all). */
unsigned supgw_conns(struct supgw *gw, const char *id);
/* Closes everything, waits for the threads (up to 5 s), frees gw. NULL is fine. */
void supgw_stop(struct supgw *gw);

#endif

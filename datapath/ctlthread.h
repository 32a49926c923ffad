/* SPDX-License-Identifier: Apache-2.0 */
/*
 * relayd's control thread: the link to nave-controld (relay.sock), the tunnel
 * registry, the port table and listeners, and the slow half of every control
 * link (HELLO, rule requests). Workers hand it events through engine_ops; it
 * answers through the workers' mailboxes. Nothing here is on the data path.
 */
#ifndef NAVE_CTLTHREAD_H
#define NAVE_CTLTHREAD_H

#include "config/cfg.h"
#include "engine.h"

struct ctlthread;
struct kern;

/* Allocates the thread's state; fills ops for engine_start. 0 or -errno. */
int ctlthread_init(struct ctlthread **out, const struct cfg_server *cfg, const char *fingerprint,
		   const char *ktls_mode, struct kern *kern, struct engine_ops *ops);
/*
 * The verifier of certificate logins ([tls] client_ca and its CRL; NULL with
 * client_auth = off), made by relayd at start: the thread owns it from now on,
 * reads its files again when they change and shuts down every session whose
 * certificate was revoked or expired. Before ctlthread_start.
 */
struct pki_verifier;
void ctlthread_set_pki(struct ctlthread *ct, struct pki_verifier *v);
/* Starts the thread once the engine runs. 0 or -errno. */
int ctlthread_start(struct ctlthread *ct, struct engine *e);
/*
 * A reload (SIGHUP, navectl reload), from the main thread: the thread takes
 * next's [ports] range and max_per_tunnel, [tunnel] max_pool_size, max_links
 * and heartbeat (for each tunnel's next session), [http] certificates (the
 * directory is read again now, moved or not), [tls] certificate, private_key
 * and pq (the tunnel port's certificate, for links from then on: also read
 * again when its files changed, every few seconds), client_ca, client_crl and
 * client_auth (certificate logins from then on) and [xdp] syn_rate, and
 * answers within 10 s. 0; -1 with why when the range would leave an
 * allocated port outside it or the new certificate does not load (what was
 * refused stays as it runs, and next says so; the rest applies); -ETIMEDOUT
 * (it applies later) or -ENOMEM with why.
 */
int ctlthread_reconfigure(struct ctlthread *ct, struct cfg_server *next, char *why, size_t whylen);
/* Stops the thread (after the engine drained). */
void ctlthread_stop(struct ctlthread *ct);

#endif

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
/* Starts the thread once the engine runs. 0 or -errno. */
int ctlthread_start(struct ctlthread *ct, struct engine *e);
/* Stops the thread (after the engine drained). */
/* A reload (SIGHUP): the HTTP certificate directory is read again now. */
void ctlthread_reload(struct ctlthread *ct);
void ctlthread_stop(struct ctlthread *ct);

#endif

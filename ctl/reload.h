/* SPDX-License-Identifier: Apache-2.0 */
/*
 * controld's reload (SIGHUP, systemctl reload, POST /api/v1/reload): the
 * config file is read again (cfg_server_reread). What applies at once: the
 * log level and format, [ports] range (allocations from now on; a change
 * that would leave an allocated port outside the range is refused, naming
 * the port, and the rest of the reload applies) and max_per_tunnel,
 * [http] allowed_domains (claims from now on). The other live keys are
 * relayd's and are taken into run too; every restart-only key that changed
 * is named and waits for the next start (the store's path, the sockets and
 * the API are set up at start). A file that does not load changes nothing.
 */
#ifndef NAVE_CTL_RELOAD_H
#define NAVE_CTL_RELOAD_H

#include "config/cfg.h"

struct store;

/*
 * run: the configuration controld runs with, changed in place (the relay
 * link and the API read the same struct); its source is the file read again.
 * 0, or -1 when the file did not load (r->error).
 */
int ctl_reload(struct cfg_server *run, struct store *st, struct cfg_reload *r);

struct acme;
/* The ACME client a reload hands the new [acme] settings to (ctl/acme.h); NULL: none. */
void ctl_reload_set_acme(struct acme *a);

#endif

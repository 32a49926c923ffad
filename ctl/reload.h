/* SPDX-License-Identifier: Apache-2.0 */
/*
 * controld's reload (SIGHUP, systemctl reload, POST /api/v1/reload): the
 * config file is read again; the log level and format apply at once, every
 * other change is named and waits for the next restart (the store's path,
 * the sockets and the API are set up at start). A file that does not load
 * changes nothing.
 */
#ifndef NAVE_CTL_RELOAD_H
#define NAVE_CTL_RELOAD_H

#include "config/cfg.h"

#include <stdbool.h>

struct ctl_reload {
	bool ok;
	unsigned waiting;	 /* changed keys that wait for a restart */
	char changed[512];	 /* "[section] key, ..." */
	char error[CFG_ERR_MAX]; /* !ok: why the file did not load */
};

/* run: the configuration controld started with (its source is the file read again). */
void ctl_reload(const struct cfg_server *run, struct ctl_reload *r);

struct acme;
/* The ACME client a reload hands the new [acme] settings to (ctl/acme.h); NULL: none. */
void ctl_reload_set_acme(struct acme *a);

#endif

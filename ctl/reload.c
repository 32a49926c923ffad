// SPDX-License-Identifier: Apache-2.0
/* controld's reload (reload.h). */
#include "ctl/reload.h"

#include "ctl/acme.h"
#include "ctl/store.h"
#include "tls/tls.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

static struct acme *acme;

void ctl_reload_set_acme(struct acme *a)
{
	acme = a;
}

/* The range and the per-tunnel limit go to the store; a range that strands a port is refused. */
static void apply(void *arg, const struct cfg_server *run, struct cfg_server *next,
		  struct cfg_reload *r)
{
	struct store *st = arg;
	struct store_port p;
	int ret;

	if (cfg_server_range_keeps_socks(run, next, r->refused, sizeof(r->refused))) {
		/* next's range is run's again */
	} else if (next->port_min != run->port_min || next->port_max != run->port_max) {
		ret = store_port_outside(st, next->port_min, next->port_max, &p);
		if (ret != 0) {
			if (ret > 0)
				snprintf(r->refused, sizeof(r->refused),
					 "[ports] range %u-%u: port %u (tunnel %s) is allocated "
					 "outside it; the range stays %u-%u",
					 next->port_min, next->port_max, p.port, p.tunnel_id,
					 run->port_min, run->port_max);
			else
				snprintf(
				    r->refused, sizeof(r->refused),
				    "[ports] range %u-%u: the store cannot say which ports are "
				    "allocated; the range stays %u-%u",
				    next->port_min, next->port_max, run->port_min, run->port_max);
			next->port_min = run->port_min;
			next->port_max = run->port_max;
		}
	}
	store_set_limits(st, next->port_min, next->port_max, next->max_per_tunnel);
	/* the tunnel port's certificate (relayd swaps it; controld shows its fingerprint) */
	if (strcmp(next->certificate, run->certificate) ||
	    strcmp(next->private_key, run->private_key)) {
		char err[256];
		SSL_CTX *ctx = tls_server_ctx(next->certificate, next->private_key, next->pq, err,
					      sizeof(err));
		size_t n = strlen(r->refused);

		if (!ctx) {
			snprintf(r->refused + n, sizeof(r->refused) - n,
				 "%s[tls] certificate: %s: the tunnel port keeps its certificate",
				 n ? "; " : "", err);
			memcpy(next->certificate, run->certificate, sizeof(next->certificate));
			memcpy(next->private_key, run->private_key, sizeof(next->private_key));
		}
		SSL_CTX_free(ctx);
	}
	if (acme)
		acme_reconfigure(acme, next); /* [acme]: the ACME client takes it from here */
}

int ctl_reload(struct cfg_server *run, struct store *st, struct cfg_reload *r)
{
	return cfg_server_reread(run, "nave-controld", apply, st, r);
}

// SPDX-License-Identifier: Apache-2.0
/* controld's reload (reload.h). */
#include "ctl/reload.h"

#include "ctl/acme.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

static struct acme *acme;

void ctl_reload_set_acme(struct acme *a)
{
	acme = a;
}

void ctl_reload(const struct cfg_server *run, struct ctl_reload *r)
{
	struct cfg_server *n = malloc(sizeof(*n)), *cmp = malloc(sizeof(*cmp));
	const char *path = cfg_server_path(run);

	memset(r, 0, sizeof(*r));
	if (!n || !cmp) {
		snprintf(r->error, sizeof(r->error), "out of memory");
	} else if (cfg_server_load(n, path, r->error, sizeof(r->error)) == 0) {
		log_init("nave-controld", n->log_level, n->log_json);
		*cmp = *run;
		cmp->log_level = n->log_level;
		cmp->log_json = n->log_json;
		cfg_server_copy_acme(cmp, n);
		if (acme)
			acme_reconfigure(acme, n);
		r->waiting = cfg_server_diff(cmp, n, r->changed, sizeof(r->changed));
		r->ok = true;
	}
	free(n);
	free(cmp);
	if (!r->ok) {
		log_error("reload: %s: the running configuration stays", r->error);
		return;
	}
	log_info("reload: %s read: log level and format, [acme] applied",
		 path ? path : "(embedded default)");
	if (r->waiting)
		log_warn("reload: %u change(s) wait for a restart: %s", r->waiting, r->changed);
}

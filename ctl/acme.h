/* SPDX-License-Identifier: Apache-2.0 */
/*
 * controld's ACME client (RFC 8555): certificates for [acme] domains from the
 * CA at [acme] directory, proved by HTTP-01 challenges that relayd's HTTP
 * listener answers (controld publishes each over the relay link,
 * datapath/acme_chal.h), stored as state_dir/acme/certs/DOMAIN.pem (the key
 * and the chain in one file, replaced by one rename) where relayd's HTTPS
 * edge reads them without a restart, renewed renew_before their expiry (at
 * most a third of their lifetime before it), and revoked on request.
 *
 * The exchanges run on a thread of their own (blocking HTTPS with timeouts);
 * the main loop owns the relay link: it sends what the thread posts (acme_pump)
 * and reads its state for the admin API under the module's lock. Nothing here
 * touches the store. The account key is state_dir/acme/account.key.
 */
#ifndef NAVE_ACME_H
#define NAVE_ACME_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "config/cfg.h"

struct acme;
struct relaylink;

/* Starts the thread when [acme] directory is set. 0, or -errno. */
int acme_open(struct acme **out, const struct cfg_server *cfg);
/* Stops the thread (an exchange in progress is cut) and frees everything. */
void acme_close(struct acme *a);
/* The descriptor the main loop polls for the thread's posts: fills p, returns 1 (0: none). */
int acme_pollfd(struct acme *a, struct pollfd *p);
/* Sends what the thread posted (challenges, "certificates changed") to relayd, and every
 * pending challenge again to a relayd that connected since. */
void acme_pump(struct acme *a, struct relaylink *rl);
/* A reload: the [acme] settings of cfg apply (the thread starts, stops or takes them). */
void acme_reconfigure(struct acme *a, const struct cfg_server *cfg);
/* {enabled, directory, account, error, domains:[...]}: GET /api/v1/acme. */
json_t *acme_status(struct acme *a);
/*
 * Asks for a new certificate now for domain (NULL: every domain), whatever
 * its expiry; revoke: the CA revokes the current one first (and a domain
 * still in [acme] domains gets a new one). 0, or -1 with a one-line reason.
 */
int acme_renew(struct acme *a, const char *domain, char *err, size_t errlen);
int acme_revoke(struct acme *a, const char *domain, char *err, size_t errlen);
/*
 * When a certificate valid from nb to na is due for renewal: renew_before
 * ahead of na, but never more than a third of its lifetime ahead (a CA's
 * short-lived certificates would otherwise be renewed at once, forever).
 */
long long acme_due(long long nb, long long na, long long renew_before_s);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * controld's admin API (ctl/API.md): HTTP/1.1 + JSON over libmicrohttpd on
 * runtime_dir/control.sock, run from controld's poll loop (MHD in external
 * select mode, no threads), so handlers use the store without locks.
 */
#ifndef NAVE_API_H
#define NAVE_API_H

#include <poll.h>
#include <stddef.h>
#include <stdio.h>

struct api;
struct store;
struct relaylink;
struct cfg_server;

/*
 * Serves the API on lfd, a listening non-blocking AF_UNIX socket whose
 * ownership passes to the API (also on failure), and, when [admin] listen
 * is set, on that TCP address over TLS with the server certificate, where
 * every route but POST /api/v1/login needs a session or an API key. st, rl and cfg must outlive
 * it. 0 or -errno with a reason in err.
 */
int api_start(struct api **out, int lfd, struct store *st, struct relaylink *rl,
	      struct cfg_server *cfg, char *err, size_t errlen);
/* Stops serving and closes every connection and the listener; NULL is fine. */
void api_stop(struct api *a);

/*
 * Adds the API's fds to pfd (at most max entries) and lowers *timeout_ms
 * (-1 = infinite) to what the HTTP server needs. Returns how many were added.
 */
int api_pollfds(struct api *a, struct pollfd *pfd, int max, int *timeout_ms);
/* Runs the HTTP server after poll(); call it on every loop turn. */
void api_process(struct api *a, const struct pollfd *pfd, int n);

/* Prints every route as "METHOD /api/v1/PATTERN", one a line (nave-controld --list-routes). */
void api_list_routes(FILE *f);

struct acme;
/* The ACME client /api/v1/acme reports on and asks (ctl/acme.h). */
void api_set_acme(struct api *a, struct acme *acme);

#endif

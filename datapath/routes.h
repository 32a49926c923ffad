/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP edge's routes on relayd: which tunnel a domain goes to, and what
 * the edge does for that tunnel's rule (redirect, Host rewrite, basic auth).
 *
 * The control thread builds a new table on every change (a domain granted or
 * released, a rule added or gone with its session) and posts it to every
 * worker (MB_ROUTES). A table is immutable and reference-counted: one
 * reference per worker and one for the control thread; a worker drops the
 * old one when it takes the new one.
 */
#ifndef NAVE_ROUTES_H
#define NAVE_ROUTES_H

#include "domain.h"
#include "link_proto.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct tunnel;

#define ROUTE_REDIRECT_HTTPS 0x1
#define ROUTE_PASSTHROUGH    0x2

struct http_route {
	char domain[DOMAIN_MAX + 1]; /* a name or "*.NAME" */
	struct tunnel *tun;	     /* the holder (never freed) */
	uint16_t route;		     /* the rule's route (BIND port); 0: no rule of the
					tunnel's session serves the domain now */
	uint16_t flags;		     /* ROUTE_* */
	char host_header[LINK_HOST_HEADER_MAX + 1]; /* "" : Host unchanged */
	char auth[LINK_AUTH_MAX + 1];		    /* "USER:HASH", "" : no basic auth */
	void *tls; /* a certificate table's entry: the domain's SSL_CTX */
};

struct http_routes {
	_Atomic unsigned refs;
	unsigned n, cap, mask;
	void (*drop)(void *tls); /* frees an entry's tls with the table (certificates) */
	uint32_t *slot;		 /* open addressing by domain: index + 1, 0 empty */
	struct http_route r[];
};

/* A table for n routes (filled by the caller with http_routes_add), refs references. */
struct http_routes *http_routes_new(unsigned n, unsigned refs);
/* Adds a copy of rt (at most the n given to http_routes_new); false when full or a duplicate. */
bool http_routes_add(struct http_routes *t, const struct http_route *rt);
/* The route for host (normalised): the exact name, else the most specific wildcard. */
const struct http_route *http_routes_find(const struct http_routes *t, const char *host);
void http_routes_put(struct http_routes *t); /* NULL-safe; frees with the last reference */

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * relayd's resolver for mesh streams (an OPEN naming an external host):
 * RESOLVE_THREADS threads calling getaddrinfo, a bounded queue in front of it and a cache of
 * answers behind it, so a worker never blocks on DNS and a client cannot
 * queue unbounded work.
 *
 *   queue  at most RESOLVE_QUEUE_MAX requests; full: the OPEN is answered
 *          LINK_OPEN_BUSY at once
 *   cache  [socks] dns_cache names (default RESOLVE_CACHE_DEFAULT), each with
 *          up to RESOLVE_ADDRS addresses; an answer is kept RESOLVE_TTL_OK_MS,
 *          a failure RESOLVE_TTL_FAIL_MS; the oldest entry makes room
 *
 * A worker asks with resolver_lookup: a cached answer comes back at once,
 * otherwise the thread posts MB_RESOLVED (data: struct resolve_answer) to the
 * asking worker's mailbox, carrying the worker's own tag (a connection's index,
 * generation and OPEN sequence) so it can tell a stale answer.
 */
#ifndef NAVE_RESOLVE_H
#define NAVE_RESOLVE_H

#include "link_proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESOLVE_QUEUE_MAX     256
#define RESOLVE_THREADS	      2
#define RESOLVE_PER_TUNNEL    8 /* lookups in flight for one tunnel's OPENs (meshopen.c) */
#define RESOLVE_CACHE_DEFAULT 512
#define RESOLVE_CACHE_MAX     65536
#define RESOLVE_ADDRS	      8
#define RESOLVE_TTL_OK_MS     60000
#define RESOLVE_TTL_FAIL_MS   10000

struct engine;
struct resolver;
struct tunnel;

struct resolve_answer {
	uint32_t idx, gen, seq; /* the asker's tag, as given */
	struct tunnel *tun;	/* the asker's too (tunnels are never freed) */
	int err;		/* 0, or a getaddrinfo EAI_* code (the name did not resolve) */
	unsigned n;		/* addresses (0 when err) */
	uint8_t addr[RESOLVE_ADDRS][16]; /* IPv6 or IPv4-mapped, in getaddrinfo's order */
	char name[LINK_OPEN_NAME_MAX + 1];
};

/* Starts the threads; NULL with a reason in err. cache: entries (0: the default). */
struct resolver *resolver_start(struct engine *e, unsigned cache, char *err, size_t errlen);
/* Stops the threads and frees everything (NULL-safe); queued requests are dropped. */
void resolver_stop(struct resolver *r);

enum { RSV_QUEUED = 0, RSV_CACHED = 1 };
/*
 * name (lowercase, 1..LINK_OPEN_NAME_MAX) for worker: RSV_CACHED with *out
 * filled (tag included), RSV_QUEUED (MB_RESOLVED follows), or -EBUSY when
 * the queue is full (or the resolver is stopping).
 */
int resolver_lookup(struct resolver *r, const char *name, int worker, struct tunnel *tun,
		    uint32_t idx, uint32_t gen, uint32_t seq, struct resolve_answer *out);
/* getaddrinfo calls made, answers from the cache, requests refused for a full queue */
void resolver_counts(struct resolver *r, uint64_t *lookups, uint64_t *hits, uint64_t *full);

#endif

// SPDX-License-Identifier: Apache-2.0
/*
 * The mesh resolver (resolve.h): RESOLVE_THREADS threads, a bounded request ring and a
 * small cache under one mutex. The cache is scanned linearly: a few hundred
 * names, looked at once per OPEN that names an external host.
 */
#include "resolve.h"

#include "engine.h"
#include "log.h"
#include "sock.h"
#include "util.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct resolve_req {
	char name[LINK_OPEN_NAME_MAX + 1];
	int worker;
	struct tunnel *tun;
	uint32_t idx, gen, seq;
};

struct cache_ent {
	char name[LINK_OPEN_NAME_MAX + 1]; /* "" : a free entry */
	uint64_t expires, added;	   /* ms (now_ms) */
	int err;
	unsigned n;
	uint8_t addr[RESOLVE_ADDRS][16];
};

struct resolver {
	struct engine *e;
	pthread_t thread[RESOLVE_THREADS];
	unsigned nthreads;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
	struct resolve_req q[RESOLVE_QUEUE_MAX];
	unsigned head, count;
	struct cache_ent *cache;
	unsigned ncache;
	uint64_t lookups, hits, full;
};

/* [lock] the live entry for name, or NULL */
static struct cache_ent *cache_find(struct resolver *r, const char *name, uint64_t now)
{
	for (unsigned i = 0; i < r->ncache; i++) {
		struct cache_ent *c = &r->cache[i];

		if (c->name[0] && c->expires > now && !strcmp(c->name, name))
			return c;
	}
	return NULL;
}

/* [lock] keeps an answer: over the same name, else a free or expired entry, else the oldest */
static void cache_put(struct resolver *r, const struct resolve_answer *a, uint64_t now)
{
	struct cache_ent *c = NULL, *spare = NULL, *oldest = NULL;

	for (unsigned i = 0; i < r->ncache && !c; i++) {
		struct cache_ent *e = &r->cache[i];

		if (e->name[0] && !strcmp(e->name, a->name))
			c = e;
		else if (!e->name[0] || e->expires <= now)
			spare = spare ? spare : e;
		else if (!oldest || e->added < oldest->added)
			oldest = e;
	}
	if (!c)
		c = spare ? spare : oldest;
	if (!c)
		return;
	memcpy(c->name, a->name, sizeof(c->name));
	c->added = now;
	c->expires = now + (a->err ? RESOLVE_TTL_FAIL_MS : RESOLVE_TTL_OK_MS);
	c->err = a->err;
	c->n = a->n;
	memcpy(c->addr, a->addr, sizeof(c->addr));
}

static void answer_from(struct resolve_answer *a, const struct cache_ent *c)
{
	a->err = c->err;
	a->n = c->n;
	memcpy(a->addr, c->addr, sizeof(a->addr));
}

/* getaddrinfo without AI_ADDRCONFIG: a loopback-only host still resolves "localhost" */
static void resolve_one(const char *name, struct resolve_answer *a)
{
	struct addrinfo hints, *res = NULL, *ai;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	a->n = 0;
	a->err = getaddrinfo(name, NULL, &hints, &res);
	if (a->err)
		return;
	for (ai = res; ai && a->n < RESOLVE_ADDRS; ai = ai->ai_next) {
		struct sockaddr_storage ss;
		uint8_t a16[16];
		bool dup = false;

		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(ss))
			continue;
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		sock_addr16(&ss, a16);
		for (unsigned i = 0; i < a->n && !dup; i++)
			dup = !memcmp(a->addr[i], a16, 16);
		if (!dup)
			memcpy(a->addr[a->n++], a16, 16);
	}
	freeaddrinfo(res);
	if (!a->n)
		a->err = EAI_NONAME;
}

static void *resolver_main(void *arg)
{
	struct resolver *r = arg;
	struct resolve_answer a;
	struct resolve_req req;
	struct cache_ent *c;
	struct mb_msg m;

	pthread_setname_np(pthread_self(), "resolver");
	pthread_mutex_lock(&r->lock);
	for (;;) {
		while (!r->stopping && !r->count)
			pthread_cond_wait(&r->cond, &r->lock);
		if (r->stopping)
			break;
		req = r->q[r->head];
		r->head = (r->head + 1) % RESOLVE_QUEUE_MAX;
		r->count--;
		memset(&a, 0, sizeof(a));
		memcpy(a.name, req.name, sizeof(a.name));
		a.idx = req.idx;
		a.gen = req.gen;
		a.seq = req.seq;
		a.tun = req.tun;
		/* another request for the name may have filled the cache meanwhile */
		c = cache_find(r, req.name, now_ms());
		if (c) {
			answer_from(&a, c);
			r->hits++;
		} else {
			r->lookups++;
			pthread_mutex_unlock(&r->lock);
			resolve_one(req.name, &a);
			pthread_mutex_lock(&r->lock);
			cache_put(r, &a, now_ms());
		}
		pthread_mutex_unlock(&r->lock);
		memset(&m, 0, sizeof(m));
		m.type = MB_RESOLVED;
		m.data = (uint8_t *)&a; /* engine_post copies it */
		m.len = sizeof(a);
		if (engine_post(r->e, req.worker, &m) < 0) {
			/* the worker never sees it: its tunnel's lookup is over here */
			if (req.tun)
				atomic_fetch_sub(&req.tun->dns_inflight, 1);
			log_every(NLOG_WARN, "resolver: cannot post an answer to worker %d",
				  req.worker);
		}
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

struct resolver *resolver_start(struct engine *e, unsigned cache, char *err, size_t errlen)
{
	struct resolver *r = calloc(1, sizeof(*r));
	int rc;

	if (!cache)
		cache = RESOLVE_CACHE_DEFAULT;
	if (cache > RESOLVE_CACHE_MAX)
		cache = RESOLVE_CACHE_MAX;
	if (r)
		r->cache = calloc(cache, sizeof(*r->cache));
	if (!r || !r->cache) {
		if (r)
			free(r);
		snprintf(err, errlen, "out of memory for the resolver");
		return NULL;
	}
	r->e = e;
	r->ncache = cache;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	for (unsigned i = 0; i < RESOLVE_THREADS; i++) {
		rc = pthread_create(&r->thread[i], NULL, resolver_main, r);
		if (rc) {
			snprintf(err, errlen, "resolver thread: %s", strerror(rc));
			resolver_stop(r);
			return NULL;
		}
		r->nthreads++;
	}
	return r;
}

void resolver_stop(struct resolver *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	for (unsigned i = 0; i < r->nthreads; i++)
		pthread_join(r->thread[i], NULL);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r->cache);
	free(r);
}

int resolver_lookup(struct resolver *r, const char *name, int worker, struct tunnel *tun,
		    uint32_t idx, uint32_t gen, uint32_t seq, struct resolve_answer *out)
{
	struct resolve_req *q;
	struct cache_ent *c;
	int ret = RSV_QUEUED;

	if (strlen(name) > LINK_OPEN_NAME_MAX)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	c = cache_find(r, name, now_ms());
	if (c) {
		memset(out, 0, sizeof(*out));
		answer_from(out, c);
		out->idx = idx;
		out->gen = gen;
		out->seq = seq;
		out->tun = tun;
		snprintf(out->name, sizeof(out->name), "%s", name);
		r->hits++;
		ret = RSV_CACHED;
	} else if (r->stopping || r->count == RESOLVE_QUEUE_MAX) {
		r->full++;
		ret = -EBUSY;
	} else {
		q = &r->q[(r->head + r->count) % RESOLVE_QUEUE_MAX];
		snprintf(q->name, sizeof(q->name), "%s", name);
		q->worker = worker;
		q->tun = tun;
		if (tun) /* the worker takes it back with the answer (mesh_resolved) */
			atomic_fetch_add(&tun->dns_inflight, 1);
		q->idx = idx;
		q->gen = gen;
		q->seq = seq;
		r->count++;
		pthread_cond_signal(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

void resolver_counts(struct resolver *r, uint64_t *lookups, uint64_t *hits, uint64_t *full)
{
	pthread_mutex_lock(&r->lock);
	*lookups = r->lookups;
	*hits = r->hits;
	*full = r->full;
	pthread_mutex_unlock(&r->lock);
}

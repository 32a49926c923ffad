// SPDX-License-Identifier: Apache-2.0
#include "routes.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

struct http_routes *http_routes_new(unsigned n, unsigned refs)
{
	unsigned slots = 8;
	struct http_routes *t;

	while (slots < 2 * n)
		slots <<= 1;
	t = calloc(1, sizeof(*t) + (size_t)n * sizeof(t->r[0]));
	if (!t)
		return NULL;
	t->slot = calloc(slots, sizeof(*t->slot));
	if (!t->slot) {
		free(t);
		return NULL;
	}
	t->mask = slots - 1;
	t->cap = n;
	atomic_init(&t->refs, refs);
	return t;
}

static uint32_t *slot_of(const struct http_routes *t, const char *domain)
{
	for (uint32_t i = hash(domain) & t->mask;; i = (i + 1) & t->mask) {
		uint32_t s = t->slot[i];

		if (!s || !strcmp(t->r[s - 1].domain, domain))
			return &t->slot[i];
	}
}

bool http_routes_add(struct http_routes *t, const struct http_route *rt)
{
	uint32_t *s;

	if (t->n >= t->cap)
		return false;
	s = slot_of(t, rt->domain);
	if (*s)
		return false;
	t->r[t->n] = *rt;
	*s = ++t->n;
	return true;
}

const struct http_route *http_routes_find(const struct http_routes *t, const char *host)
{
	char wild[DOMAIN_MAX + 1];
	size_t pos = 0;
	uint32_t s;

	if (!t || !t->n)
		return NULL;
	s = *slot_of(t, host);
	if (s)
		return &t->r[s - 1];
	while (domain_next_wildcard(host, &pos, wild)) {
		s = *slot_of(t, wild);
		if (s)
			return &t->r[s - 1];
	}
	return NULL;
}

void http_routes_put(struct http_routes *t)
{
	if (t && atomic_fetch_sub(&t->refs, 1) == 1) {
		for (unsigned i = 0; t->drop && i < t->n; i++)
			t->drop(t->r[i].tls);
		free(t->slot);
		free(t);
	}
}

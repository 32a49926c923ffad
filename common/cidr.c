// SPDX-License-Identifier: Apache-2.0
/* Source address blocks: parse, print, match (cidr.h). */
#include "cidr.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static bool host_bits_clear(const uint8_t *a, unsigned len, unsigned prefix)
{
	for (unsigned bit = prefix; bit < len * 8; bit++)
		if (a[bit / 8] & (0x80 >> (bit % 8)))
			return false;
	return true;
}

static void clear_host_bits(uint8_t *a, unsigned len, unsigned prefix)
{
	for (unsigned bit = prefix; bit < len * 8; bit++)
		a[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
}

int cidr_parse(const char *s, struct cidr *out, char *why, size_t whylen)
{
	char buf[CIDR_STR_MAX + 8], *slash;
	size_t n = s ? strlen(s) : 0;
	unsigned long prefix;
	unsigned maxp;

	memset(out, 0, sizeof(*out));
	if (!n || n >= CIDR_STR_MAX) {
		snprintf(why, whylen, "an address block is 1 to %d characters", CIDR_STR_MAX - 1);
		return -1;
	}
	if (strspn(s, "0123456789abcdefABCDEF.:/") != n) {
		snprintf(why, whylen, "an address block is ADDRESS[/PREFIX], e.g. 192.0.2.0/24");
		return -1;
	}
	memcpy(buf, s, n + 1);
	slash = strchr(buf, '/');
	if (slash)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		maxp = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		maxp = 128;
	} else {
		snprintf(why, whylen, "'%s' is not an IPv4 or IPv6 address", buf);
		return -1;
	}
	prefix = maxp;
	if (slash) {
		char *end;

		if (!*slash || strspn(slash, "0123456789") != strlen(slash) || strlen(slash) > 3) {
			snprintf(why, whylen, "the prefix length is a number from 0 to %u", maxp);
			return -1;
		}
		prefix = strtoul(slash, &end, 10);
		if (prefix > maxp) {
			snprintf(why, whylen, "the prefix length is a number from 0 to %u", maxp);
			return -1;
		}
	}
	out->prefix = (uint8_t)prefix;
	if (!host_bits_clear(out->addr, maxp / 8, (unsigned)prefix)) {
		struct cidr c = *out;
		char want[CIDR_STR_MAX];

		clear_host_bits(c.addr, maxp / 8, (unsigned)prefix);
		cidr_format(&c, want, sizeof(want));
		snprintf(why, whylen, "%s has host bits set; did you mean %s?", s, want);
		return -1;
	}
	return 0;
}

void cidr_format(const struct cidr *c, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (!inet_ntop(c->family == AF_INET ? AF_INET : AF_INET6, c->addr, a, sizeof(a)))
		snprintf(a, sizeof(a), "?");
	snprintf(out, len, "%s/%u", a, c->prefix);
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;

	if (memcmp(a, b, full))
		return false;
	if (!rest)
		return true;
	return !((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rest)));
}

bool cidr_match(const struct cidr *c, const uint8_t addr16[16])
{
	static const uint8_t v4pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (c->family == AF_INET)
		return !memcmp(addr16, v4pre, sizeof(v4pre)) &&
		       prefix_eq(c->addr, addr16 + 12, c->prefix);
	return prefix_eq(c->addr, addr16, c->prefix);
}

struct cidr_table *cidr_table_new(const struct cidr *deny, unsigned ndeny, const struct cidr *allow,
				  unsigned nallow, unsigned refs)
{
	struct cidr_table *t;

	if (ndeny > CIDR_LIST_MAX || nallow > CIDR_LIST_MAX)
		return NULL;
	t = calloc(1, sizeof(*t) + ((size_t)ndeny + nallow) * sizeof(struct cidr));
	if (!t)
		return NULL;
	atomic_init(&t->refs, refs);
	t->ndeny = ndeny;
	t->nallow = nallow;
	t->deny = (struct cidr *)(t + 1);
	t->allow = t->deny + ndeny;
	if (ndeny)
		memcpy(t->deny, deny, ndeny * sizeof(*deny));
	if (nallow)
		memcpy(t->allow, allow, nallow * sizeof(*allow));
	return t;
}

void cidr_table_put(struct cidr_table *t)
{
	if (t && atomic_fetch_sub(&t->refs, 1) == 1)
		free(t);
}

enum cidr_verdict cidr_table_check(const struct cidr_table *t, const uint8_t addr16[16])
{
	unsigned i;

	if (!t)
		return CIDR_PASS;
	for (i = 0; i < t->ndeny; i++)
		if (cidr_match(&t->deny[i], addr16))
			return CIDR_DENIED;
	if (!t->nallow)
		return CIDR_PASS;
	for (i = 0; i < t->nallow; i++)
		if (cidr_match(&t->allow[i], addr16))
			return CIDR_PASS;
	return CIDR_NOT_ALLOWED;
}

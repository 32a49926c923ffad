// SPDX-License-Identifier: Apache-2.0
/* Source address blocks: parse, print, match (cidr.h). */
#include "cidr.h"

#include <arpa/inet.h>
#include <stdarg.h>
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

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int refuse(struct cidr *out, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(struct cidr *out, char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	memset(out, 0, sizeof(*out));
	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

int cidr_parse(const char *s, struct cidr *out, char *why, size_t whylen)
{
	char buf[CIDR_TEXT_MAX + 1], *slash;
	size_t n = s ? strlen(s) : 0;
	unsigned long prefix;
	unsigned maxp;

	memset(out, 0, sizeof(*out));
	if (!n || n > CIDR_TEXT_MAX)
		return refuse(out, why, whylen, "an address block is 1 to %d characters",
			      CIDR_TEXT_MAX);
	if (strspn(s, "0123456789abcdefABCDEF.:/") != n)
		return refuse(out, why, whylen,
			      "an address block is ADDRESS[/PREFIX], e.g. 192.0.2.0/24");
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
	} else if (!*buf) {
		return refuse(out, why, whylen, "the address is missing before the '/'");
	} else {
		return refuse(out, why, whylen, "'%s' is not an IPv4 or IPv6 address", buf);
	}
	prefix = maxp;
	if (slash) {
		if (!*slash || strspn(slash, "0123456789") != strlen(slash) || strlen(slash) > 3)
			return refuse(out, why, whylen,
				      "the prefix length is a number from 0 to %u", maxp);
		prefix = strtoul(slash, NULL, 10);
		if (prefix > maxp)
			return refuse(out, why, whylen,
				      "the prefix length is a number from 0 to %u", maxp);
	}
	out->prefix = (uint8_t)prefix;
	/* ::ffff:a.b.c.d/96+n is a.b.c.d/n: the one form XDP's IPv4 trie can match */
	if (out->family == AF_INET6 && prefix >= 96 && !memcmp(out->addr, v4mapped, 12)) {
		memmove(out->addr, out->addr + 12, 4);
		memset(out->addr + 4, 0, 12);
		out->family = AF_INET;
		out->prefix = (uint8_t)(prefix - 96);
		maxp = 32;
	}
	if (!host_bits_clear(out->addr, maxp / 8, out->prefix)) {
		struct cidr c = *out;
		char want[CIDR_STR_MAX];

		clear_host_bits(c.addr, maxp / 8, c.prefix);
		cidr_format(&c, want, sizeof(want));
		return refuse(out, why, whylen, "%s has host bits set; did you mean %s?", s, want);
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
	bool v4 = !memcmp(addr16, v4mapped, sizeof(v4mapped));

	if (c->family == AF_INET)
		return v4 && prefix_eq(c->addr, addr16 + 12, c->prefix);
	/* an IPv4 peer is never in an IPv6 block (XDP looks it up in the IPv4 trie) */
	return !v4 && prefix_eq(c->addr, addr16, c->prefix);
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

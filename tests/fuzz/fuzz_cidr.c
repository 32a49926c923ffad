// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for common/cidr.c, the reader of the firewall's address
 * blocks (navectl firewall, the admin API, relayd's firewall push). The input
 * is a block's text, then optionally a newline and up to 16 bytes of a peer
 * address in sock_addr16's form. Checks: a refusal leaves the block zeroed
 * and a one-line printable reason; an accepted block is in range with its
 * host bits clear, never a v4-mapped IPv6 block; its canonical text fits
 * CIDR_STR_MAX and parses back to the same block; it holds its own address;
 * cidr_match agrees with a bit-by-bit reference on the peer; a table with the
 * block denies what it matches, and with it as the only allowed block lets
 * through exactly that.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_cidr.c common/cidr.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cidr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_cidr: %s\n", what);
	abort();
}

static int bit(const uint8_t *a, unsigned i)
{
	return (a[i / 8] >> (7 - i % 8)) & 1;
}

/* The 16-byte form of the block's address, as a peer in it would have. */
static void addr16_of(const struct cidr *c, uint8_t out[16])
{
	if (c->family == AF_INET) {
		memcpy(out, v4mapped, 12);
		memcpy(out + 12, c->addr, 4);
	} else {
		memcpy(out, c->addr, 16);
	}
}

/* cidr_match the slow way: family first, then prefix bits one by one. */
static bool ref_match(const struct cidr *c, const uint8_t a[16])
{
	bool v4 = !memcmp(a, v4mapped, 12);
	const uint8_t *p = c->family == AF_INET ? a + 12 : a;

	if (v4 != (c->family == AF_INET))
		return false;
	for (unsigned i = 0; i < c->prefix; i++)
		if (bit(p, i) != bit(c->addr, i))
			return false;
	return true;
}

static void check_block(const struct cidr *c)
{
	unsigned maxp = c->family == AF_INET ? 32 : 128;
	struct cidr again;
	char text[CIDR_STR_MAX + 8], why[160];

	if (c->family != AF_INET && c->family != AF_INET6)
		fail("accepted block of no family");
	if (c->prefix > maxp)
		fail("prefix out of range");
	for (unsigned i = c->prefix; i < 128; i++)
		if (bit(c->addr, i))
			fail("host bits (or bytes past the IPv4 address) set");
	if (c->family == AF_INET6 && c->prefix >= 96 && !memcmp(c->addr, v4mapped, 12))
		fail("a v4-mapped IPv6 block, not turned into IPv4");
	memset(text, 'x', sizeof(text));
	cidr_format(c, text, sizeof(text));
	if (strlen(text) >= CIDR_STR_MAX)
		fail("canonical text longer than CIDR_STR_MAX");
	if (cidr_parse(text, &again, why, sizeof(why)))
		fail("canonical text refused");
	if (memcmp(c, &again, sizeof(*c)))
		fail("canonical text parses to another block");
}

static void check_refusal(const struct cidr *c, const char *why, size_t whylen)
{
	static const struct cidr zero;
	size_t n = strnlen(why, whylen);

	if (memcmp(c, &zero, sizeof(zero)))
		fail("refused block not zeroed");
	if (n == 0 || n == whylen)
		fail("refusal without a terminated reason");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
			fail("reason holds a byte that is not printable ASCII");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t tlen = nl ? (size_t)(nl - data) : size;
	uint8_t own[16], other[16] = {0};
	struct cidr_table *t;
	struct cidr c;
	char *s, why[160];

	s = malloc(tlen + 1);
	if (!s)
		return 0;
	memcpy(s, data, tlen);
	s[tlen] = 0;
	memset(why, 0, sizeof(why));
	if (cidr_parse(s, &c, why, sizeof(why))) {
		check_refusal(&c, why, sizeof(why));
		free(s);
		return 0;
	}
	free(s);
	check_block(&c);
	addr16_of(&c, own);
	if (!cidr_match(&c, own))
		fail("a block does not hold its own address");
	if (nl) {
		size_t n = size - tlen - 1;

		memcpy(other, nl + 1, n < 16 ? n : 16);
	}
	if (cidr_match(&c, other) != ref_match(&c, other))
		fail("cidr_match disagrees with the reference");

	t = cidr_table_new(&c, 1, NULL, 0, 1);
	if (!t)
		return 0;
	if (cidr_table_check(t, other) != (ref_match(&c, other) ? CIDR_DENIED : CIDR_PASS))
		fail("deny table verdict");
	cidr_table_put(t);
	t = cidr_table_new(NULL, 0, &c, 1, 1);
	if (!t)
		return 0;
	if (cidr_table_check(t, other) != (ref_match(&c, other) ? CIDR_PASS : CIDR_NOT_ALLOWED))
		fail("allow table verdict");
	if (cidr_table_check(t, own) != CIDR_PASS)
		fail("allow table refuses the block's own address");
	cidr_table_put(t);
	return 0;
}

// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for ctl/restrict.c, the reader of token restrictions
 * (navectl tokens create --allow-from/--allow-id/--kinds/--domains/--ports,
 * the admin API's body members). The first byte picks what the rest is: 0-3
 * a list of the field (allow_from, allow_ids, kinds, domains), 4 a port range,
 * 5 a glob pattern and a name split at the first newline. Checks: a refusal
 * leaves out as it was and gives a one-line printable ASCII reason; an
 * accepted list is within its size and item count, printable, and reads back
 * to itself; an accepted range reads back to the same bounds inside the
 * server's; restrict_glob agrees with a dynamic-programming reference.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_restrict.c ctl/restrict.c common/cidr.c common/domain.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/restrict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_restrict: %s\n", what);
	abort();
}

static void check_reason(const char *why, size_t whylen)
{
	size_t n = strnlen(why, whylen);

	if (n == 0 || n == whylen)
		fail("refusal without a terminated reason");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
			fail("reason holds a byte that is not printable ASCII");
}

static const size_t lens[] = {RESTRICT_FROM_LEN, RESTRICT_IDS_LEN, RESTRICT_KINDS_LEN,
			      RESTRICT_DOMAINS_LEN};
static const unsigned maxes[] = {RESTRICT_CIDRS_MAX, RESTRICT_IDS_MAX, 4 /* tcp, udp, http, mesh */,
				 RESTRICT_DOMAINS_MAX};

static void do_list(enum restrict_list f, const char *s, size_t n)
{
	static char out[RESTRICT_DOMAINS_LEN], again[RESTRICT_DOMAINS_LEN];
	char why[256];
	unsigned items = 1;
	size_t len;

	memset(out, 'x', sizeof(out));
	out[lens[f] - 1] = 0;
	if (!restrict_norm(f, s, n, out, lens[f], why, sizeof(why))) {
		check_reason(why, sizeof(why));
		for (size_t i = 0; i + 1 < lens[f]; i++)
			if (out[i] != 'x')
				fail("a refusal changed out");
		return;
	}
	len = strnlen(out, lens[f]);
	if (len == 0 || len == lens[f])
		fail("accepted list empty or unterminated");
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)out[i] <= 0x20 || (unsigned char)out[i] > 0x7e)
			fail("accepted list holds a byte that is not printable ASCII");
		items += out[i] == ',';
	}
	if (items > maxes[f])
		fail("more items than the field allows");
	if (!restrict_norm(f, out, len, again, lens[f], why, sizeof(why)))
		fail("the canonical list is refused");
	if (strcmp(out, again))
		fail("the canonical list does not read back to itself");
}

static void do_ports(const char *s, size_t n, unsigned lo, unsigned hi)
{
	char out[RESTRICT_PORTS_LEN], again[RESTRICT_PORTS_LEN], why[256];
	unsigned a, b;

	if (!restrict_ports(s, n, lo, hi, out, why, sizeof(why))) {
		check_reason(why, sizeof(why));
		return;
	}
	if (!restrict_port_range(out, &a, &b) || a < lo || b > hi || a > b || a < 1)
		fail("accepted range out of bounds");
	if (!restrict_ports(out, strlen(out), lo, hi, again, why, sizeof(why)) ||
	    strcmp(out, again))
		fail("the canonical range does not read back to itself");
}

/* glob matching the slow, obvious way: m[i][j] = pattern[i..] matches name[j..] */
static bool ref_glob(const char *p, size_t pn, const char *s, size_t sn)
{
	static bool m[66][66];

	if (pn > 65 || sn > 65)
		return false;
	for (size_t i = pn + 1; i-- > 0;)
		for (size_t j = sn + 1; j-- > 0;) {
			if (i == pn)
				m[i][j] = j == sn;
			else if (p[i] == '*')
				m[i][j] = m[i + 1][j] || (j < sn && m[i][j + 1]);
			else
				m[i][j] = j < sn && p[i] == s[j] && m[i + 1][j + 1];
		}
	return m[0][0];
}

static void do_glob(const char *s, size_t n)
{
	const char *nl = memchr(s, '\n', n);
	char p[66], name[66];
	size_t pn, sn;

	if (!nl)
		return;
	pn = (size_t)(nl - s);
	sn = n - pn - 1;
	if (pn > 65 || sn > 65 || memchr(s, 0, n))
		return;
	memcpy(p, s, pn);
	p[pn] = 0;
	memcpy(name, nl + 1, sn);
	name[sn] = 0;
	if (restrict_glob(p, name) != ref_glob(p, pn, name, sn))
		fail("restrict_glob disagrees with the reference");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data + 1;
	size_t n = size ? size - 1 : 0;
	char *copy;

	if (!size)
		return 0;
	copy = malloc(n + 1);
	if (!copy)
		return 0;
	memcpy(copy, s, n);
	copy[n] = 0;
	switch (data[0] % 6) {
	case 0:
	case 1:
	case 2:
	case 3:
		do_list((enum restrict_list)(data[0] % 6), copy, n);
		break;
	case 4:
		do_ports(copy, n, 22000, 22999);
		do_ports(copy, n, 1, 65535);
		break;
	default:
		do_glob(copy, n);
		break;
	}
	free(copy);
	return 0;
}

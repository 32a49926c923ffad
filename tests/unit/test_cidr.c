// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/cidr.c: address blocks parsed (IPv4, IPv6, bare
 * addresses, v4-mapped blocks turned into IPv4 ones), every refusal with its
 * one-line reason, the canonical text and its round trip, matching peers in
 * the form sock_addr16 gives them, and the shared table's verdicts (deny
 * first, then the allow list when it holds anything).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "cidr.h"
#include "sock.h"

/* Parses s (which must parse) and returns its canonical text in out. */
static const char *canon(const char *s, char *out)
{
	struct cidr c;
	char why[160] = "";

	if (cidr_parse(s, &c, why, sizeof(why)) != 0)
		fail_msg("'%s' refused: %s", s, why);
	cidr_format(&c, out, CIDR_STR_MAX);
	return out;
}

/* A peer address as sock_addr16 gives it from a socket address. */
static void peer(const char *ip, uint8_t a[16])
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	sock_addr16(&ss, a);
}

static void test_parse(void **state)
{
	struct cidr c;
	char why[160], out[CIDR_STR_MAX];

	assert_int_equal(cidr_parse("10.0.0.0/8", &c, why, sizeof(why)), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 8);
	assert_int_equal(c.addr[0], 10);
	for (int i = 1; i < 16; i++)
		assert_int_equal(c.addr[i], 0);

	assert_int_equal(cidr_parse("2001:db8::/32", &c, why, sizeof(why)), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 32);
	assert_int_equal(c.addr[0], 0x20);
	assert_int_equal(c.addr[1], 0x01);
	assert_int_equal(c.addr[2], 0x0d);
	assert_int_equal(c.addr[3], 0xb8);

	/* bare addresses are one host */
	assert_int_equal(cidr_parse("192.0.2.7", &c, why, sizeof(why)), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 32);
	assert_int_equal(cidr_parse("2001:db8::1", &c, why, sizeof(why)), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 128);

	/* the whole space, and the edges of the prefix range */
	assert_string_equal(canon("0.0.0.0/0", out), "0.0.0.0/0");
	assert_string_equal(canon("::/0", out), "::/0");
	assert_string_equal(canon("255.255.255.255/32", out), "255.255.255.255/32");
	assert_string_equal(canon("::1/128", out), "::1/128");

	/* upper case, zeros written out, a zero-padded prefix: all one text */
	assert_string_equal(canon("2001:DB8:0:0::/64", out), "2001:db8::/64");
	assert_string_equal(canon("0:0:0:0:0:0:0:1", out), "::1/128");
	assert_string_equal(canon("10.0.0.0/08", out), "10.0.0.0/8");

	/* a v4-mapped block is the IPv4 block it stands for */
	assert_string_equal(canon("::ffff:10.0.0.0/104", out), "10.0.0.0/8");
	assert_string_equal(canon("::ffff:192.0.2.7", out), "192.0.2.7/32");
	assert_string_equal(canon("::ffff:0:0/96", out), "0.0.0.0/0");
	/* but not a block wider than the mapped range */
	assert_int_equal(cidr_parse("::ffff:0:0/95", &c, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "did you mean ::fffe:0:0/95?"));

	/* the longest text there is: a 45-character IPv6 address and /128 */
	assert_int_equal(strlen("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128"),
			 CIDR_TEXT_MAX);
	assert_string_equal(canon("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128", out),
			    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
	assert_int_equal(strlen(out) + 1, CIDR_STR_MAX);

	/* why may be left out */
	assert_int_equal(cidr_parse("nope", &c, NULL, 0), -1);
}

static void expect_refused(const char *s, const char *reason)
{
	struct cidr c;
	char why[160] = "";

	memset(&c, 0xa5, sizeof(c));
	if (cidr_parse(s, &c, why, sizeof(why)) != -1)
		fail_msg("'%s' was accepted", s);
	if (!strstr(why, reason))
		fail_msg("'%s': reason '%s' does not hold '%s'", s, why, reason);
	assert_null(strchr(why, '\n'));
	/* nothing half-parsed is left behind */
	assert_int_equal(c.family, 0);
	assert_int_equal(c.prefix, 0);
	for (int i = 0; i < 16; i++)
		assert_int_equal(c.addr[i], 0);
}

static void test_refused(void **state)
{
	char long_text[CIDR_TEXT_MAX + 2];

	/* empty, or too long */
	expect_refused("", "1 to 49 characters");
	expect_refused(NULL, "1 to 49 characters");
	memset(long_text, '1', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = 0;
	expect_refused(long_text, "1 to 49 characters");
	expect_refused("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/0128", "1 to 49 characters");

	/* characters no address block holds */
	expect_refused("10.0.0.0/8 ", "ADDRESS[/PREFIX]");
	expect_refused(" 10.0.0.0/8", "ADDRESS[/PREFIX]");
	expect_refused("fe80::1%eth0", "ADDRESS[/PREFIX]");
	expect_refused("10.0.0.0/-1", "ADDRESS[/PREFIX]");
	expect_refused("10.0.0.0/+8", "ADDRESS[/PREFIX]");
	expect_refused("example.com", "ADDRESS[/PREFIX]");
	expect_refused("10.0.0.0\n/8", "ADDRESS[/PREFIX]");

	/* not an address */
	expect_refused("10.0.0", "'10.0.0' is not an IPv4 or IPv6 address");
	expect_refused("256.0.0.0/8", "'256.0.0.0' is not an IPv4 or IPv6 address");
	expect_refused("010.0.0.0/8", "is not an IPv4 or IPv6 address");
	expect_refused("1::2::3", "'1::2::3' is not an IPv4 or IPv6 address");
	expect_refused("abc", "'abc' is not an IPv4 or IPv6 address");
	expect_refused("/8", "the address is missing");

	/* prefix lengths */
	expect_refused("10.0.0.0/33", "the prefix length is a number from 0 to 32");
	expect_refused("::/129", "the prefix length is a number from 0 to 128");
	expect_refused("10.0.0.0/", "from 0 to 32");
	expect_refused("10.0.0.0/0008", "from 0 to 32");
	expect_refused("10.0.0.0/8/8", "from 0 to 32");
	expect_refused("10.0.0.0/a", "from 0 to 32");
	expect_refused("::/1:", "from 0 to 128");

	/* host bits, with the block that was probably meant */
	expect_refused("10.1.2.3/8", "10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?");
	expect_refused("192.0.2.1/31", "did you mean 192.0.2.0/31?");
	expect_refused("2001:db8::1/64", "did you mean 2001:db8::/64?");
	expect_refused("::1/0", "did you mean ::/0?");
	expect_refused("::ffff:10.0.0.1/104", "did you mean 10.0.0.0/8?");
}

static void test_format_round_trip(void **state)
{
	static const char *const in[] = {
	    "0.0.0.0/0",
	    "10.0.0.0/8",
	    "192.0.2.0/24",
	    "192.0.2.128/25",
	    "203.0.113.9/32",
	    "::/0",
	    "::1/128",
	    "2001:db8::/32",
	    "2001:db8:0:1::/64",
	    "fe80::/10",
	    "2001:db8::8:800:200c:417a/128",
	    "64:ff9b::/96",
	    "::fffe:0:0/95",
	    "ff00::/8",
	};
	char out[CIDR_STR_MAX], again[CIDR_STR_MAX], small[8];
	struct cidr a, b;

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		/* the canonical text reads back as itself and the same block */
		assert_string_equal(canon(in[i], out), in[i]);
		assert_int_equal(cidr_parse(out, &a, NULL, 0), 0);
		cidr_format(&a, again, sizeof(again));
		assert_string_equal(again, out);
		assert_int_equal(cidr_parse(in[i], &b, NULL, 0), 0);
		assert_memory_equal(&a, &b, sizeof(a));
	}
	/* a short buffer is cut and terminated, never overrun */
	assert_int_equal(cidr_parse("192.0.2.0/24", &a, NULL, 0), 0);
	memset(small, 'x', sizeof(small));
	cidr_format(&a, small, sizeof(small));
	assert_string_equal(small, "192.0.2");
}

static bool matches(const char *block, const char *ip)
{
	struct cidr c;
	uint8_t a[16];

	assert_int_equal(cidr_parse(block, &c, NULL, 0), 0);
	peer(ip, a);
	return cidr_match(&c, a);
}

static void test_match(void **state)
{
	assert_true(matches("10.0.0.0/8", "10.0.0.0"));
	assert_true(matches("10.0.0.0/8", "10.255.255.255"));
	assert_false(matches("10.0.0.0/8", "11.0.0.0"));
	assert_false(matches("10.0.0.0/8", "9.255.255.255"));
	assert_true(matches("192.0.2.128/25", "192.0.2.200"));
	assert_false(matches("192.0.2.128/25", "192.0.2.127"));
	assert_true(matches("192.0.2.7", "192.0.2.7"));
	assert_false(matches("192.0.2.7", "192.0.2.6"));
	assert_true(matches("0.0.0.0/0", "203.0.113.1"));

	assert_true(matches("2001:db8::/32", "2001:db8:ffff::1"));
	assert_false(matches("2001:db8::/32", "2001:db9::1"));
	assert_true(matches("fe80::/10", "febf::1"));
	assert_false(matches("fe80::/10", "fec0::1"));
	assert_true(matches("2001:db8::1", "2001:db8::1"));
	assert_false(matches("2001:db8::1", "2001:db8::2"));

	/* an IPv4 peer (IPv4 socket, or v4-mapped on a dual-stack one) is in IPv4 blocks */
	assert_true(matches("10.0.0.0/8", "::ffff:10.1.2.3"));
	assert_false(matches("10.0.0.0/8", "::ffff:11.1.2.3"));
	assert_true(matches("::ffff:10.0.0.0/104", "10.9.9.9"));
	/* and never in IPv6 ones, as in XDP's tries */
	assert_true(matches("::/0", "2001:db8::1"));
	assert_false(matches("::/0", "10.1.2.3"));
	assert_false(matches("::/0", "::ffff:10.1.2.3"));
	assert_false(matches("::/80", "10.1.2.3"));
	/* an IPv6 peer is never in an IPv4 block, whatever its last 32 bits */
	assert_false(matches("0.0.0.0/0", "2001:db8::1"));
	assert_false(matches("10.0.0.0/8", "::10.1.2.3"));
	assert_false(matches("10.0.0.0/8", "64:ff9b::10.1.2.3"));
}

static struct cidr blk(const char *s)
{
	struct cidr c;

	assert_int_equal(cidr_parse(s, &c, NULL, 0), 0);
	return c;
}

static enum cidr_verdict check(const struct cidr_table *t, const char *ip)
{
	uint8_t a[16];

	peer(ip, a);
	return cidr_table_check(t, a);
}

static void test_table(void **state)
{
	struct cidr deny[2] = {blk("10.0.0.0/8"), blk("2001:db8:bad::/48")};
	struct cidr allow[3] = {blk("10.1.0.0/16"), blk("192.0.2.0/24"), blk("2001:db8::/32")};
	struct cidr_table *t;

	/* no table, and an empty one: everything passes */
	assert_int_equal(check(NULL, "10.1.2.3"), CIDR_PASS);
	t = cidr_table_new(NULL, 0, NULL, 0, 1);
	assert_non_null(t);
	assert_int_equal(check(t, "10.1.2.3"), CIDR_PASS);
	assert_int_equal(check(t, "2001:db8::1"), CIDR_PASS);
	cidr_table_put(t);

	/* deny only: what it holds is denied, the rest passes */
	t = cidr_table_new(deny, 2, NULL, 0, 1);
	assert_non_null(t);
	assert_int_equal(t->ndeny, 2);
	assert_int_equal(t->nallow, 0);
	assert_int_equal(check(t, "10.1.2.3"), CIDR_DENIED);
	assert_int_equal(check(t, "::ffff:10.1.2.3"), CIDR_DENIED);
	assert_int_equal(check(t, "2001:db8:bad::7"), CIDR_DENIED);
	assert_int_equal(check(t, "11.1.2.3"), CIDR_PASS);
	assert_int_equal(check(t, "2001:db8::1"), CIDR_PASS);
	cidr_table_put(t);

	/* allow only: what it does not hold is not allowed */
	t = cidr_table_new(NULL, 0, allow, 3, 1);
	assert_non_null(t);
	assert_int_equal(check(t, "192.0.2.9"), CIDR_PASS);
	assert_int_equal(check(t, "10.1.2.3"), CIDR_PASS);
	assert_int_equal(check(t, "10.2.0.1"), CIDR_NOT_ALLOWED);
	assert_int_equal(check(t, "2001:db8:1::1"), CIDR_PASS);
	assert_int_equal(check(t, "2001:db9::1"), CIDR_NOT_ALLOWED);
	cidr_table_put(t);

	/* both: deny wins over allow, then the allow list decides */
	t = cidr_table_new(deny, 2, allow, 3, 2);
	assert_non_null(t);
	assert_memory_equal(t->deny, deny, sizeof(deny));
	assert_memory_equal(t->allow, allow, sizeof(allow));
	assert_int_equal(check(t, "10.1.2.3"), CIDR_DENIED); /* in both lists */
	assert_int_equal(check(t, "2001:db8:bad::1"), CIDR_DENIED);
	assert_int_equal(check(t, "192.0.2.1"), CIDR_PASS);
	assert_int_equal(check(t, "2001:db8:1::1"), CIDR_PASS);
	assert_int_equal(check(t, "198.51.100.1"), CIDR_NOT_ALLOWED);
	cidr_table_put(t); /* two references: still there */
	assert_int_equal(check(t, "192.0.2.1"), CIDR_PASS);
	cidr_table_put(t);
	cidr_table_put(NULL);

	/* at most CIDR_LIST_MAX per list */
	assert_null(cidr_table_new(deny, CIDR_LIST_MAX + 1, NULL, 0, 1));
	assert_null(cidr_table_new(NULL, 0, allow, CIDR_LIST_MAX + 1, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_format_round_trip),
	    cmocka_unit_test(test_match),
	    cmocka_unit_test(test_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

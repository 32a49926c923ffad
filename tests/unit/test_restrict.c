// SPDX-License-Identifier: Apache-2.0
/*
 * Token restrictions (ctl/restrict.c): each field's items checked and made
 * canonical, lists bounded, port ranges inside [ports] range, and the
 * matching of sources, tunnel id globs, kinds and ranges.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ctl/restrict.h"

static bool norm(enum restrict_list f, const char *in, char *out, size_t outlen, char *why)
{
	return restrict_norm(f, in, strlen(in), out, outlen, why, 200);
}

static void test_from(void **state)
{
	char out[RESTRICT_FROM_LEN], why[200], list[64];
	uint8_t v4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 9, 9, 7};
	uint8_t lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
	uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

	(void)state;
	assert_true(
	    norm(RESTRICT_FROM, "10.9.9.0/24,2001:DB8::/32,10.9.9.0/24", out, sizeof(out), why));
	assert_string_equal(out, "10.9.9.0/24,2001:db8::/32");
	assert_true(restrict_from_ok(out, v4));
	assert_true(restrict_from_ok(out, v6));
	assert_false(restrict_from_ok(out, lo));
	assert_true(restrict_from_ok("", lo));
	assert_true(restrict_from_ok("127.0.0.0/8", lo));
	/* an IPv6 block never holds an IPv4 source */
	assert_false(restrict_from_ok("::/0", lo));

	assert_false(norm(RESTRICT_FROM, "10.1.2.3/8", out, sizeof(out), why));
	assert_string_equal(why, "item 1: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?");
	assert_false(norm(RESTRICT_FROM, "10.0.0.0/8,", out, sizeof(out), why));
	assert_string_equal(why, "item 2 is empty");
	assert_false(norm(RESTRICT_FROM, "", out, sizeof(out), why));
	assert_false(restrict_add(RESTRICT_FROM, "10.0.0.0/8\0x", 12, out, sizeof(out), why, 200));
	assert_string_equal(why, "\"10.0.0.0/8\\x00x\" is not an address block");
	/* at most RESTRICT_CIDRS_MAX blocks */
	out[0] = 0;
	for (int i = 0; i < RESTRICT_CIDRS_MAX; i++) {
		snprintf(list, sizeof(list), "10.%d.0.0/16", i);
		assert_true(
		    restrict_add(RESTRICT_FROM, list, strlen(list), out, sizeof(out), why, 200));
	}
	assert_false(restrict_add(RESTRICT_FROM, "11.0.0.0/8", 10, out, sizeof(out), why, 200));
	assert_string_equal(why, "at most 16 items");
	/* a duplicate is no new item */
	assert_true(restrict_add(RESTRICT_FROM, "10.0.0.0/16", 11, out, sizeof(out), why, 200));
}

static void test_ids(void **state)
{
	char out[RESTRICT_IDS_LEN], why[200], long_id[80];

	(void)state;
	assert_true(norm(RESTRICT_IDS, "office-*,lab,*.x*y", out, sizeof(out), why));
	assert_string_equal(out, "office-*,lab,*.x*y");
	assert_true(restrict_id_ok(out, "office-7"));
	assert_true(restrict_id_ok(out, "office-"));
	assert_true(restrict_id_ok(out, "lab"));
	assert_true(restrict_id_ok(out, "a.b.xzzy"));
	assert_false(restrict_id_ok(out, "Lab"));
	assert_false(restrict_id_ok(out, "lab2"));
	assert_false(restrict_id_ok(out, "my-office-1"));
	assert_false(restrict_id_ok(out, NULL));
	assert_true(restrict_id_ok("", NULL));
	assert_false(norm(RESTRICT_IDS, "a b", out, sizeof(out), why));
	assert_string_equal(why, "item 1: \"a b\": a tunnel id pattern holds letters, digits, '.', "
				 "'_', '-' and '*'");
	assert_false(norm(RESTRICT_IDS, "ok,\xc3\xa9", out, sizeof(out), why));
	assert_string_equal(why, "item 2: \"\\xc3\\xa9\": a tunnel id pattern holds letters, "
				 "digits, '.', '_', '-' and '*'");
	memset(long_id, 'a', 64);
	long_id[64] = 0;
	assert_false(norm(RESTRICT_IDS, long_id, out, sizeof(out), why));
	assert_string_equal(why, "item 1: a tunnel id pattern is 1-63 characters");
}

static void test_glob(void **state)
{
	(void)state;
	assert_true(restrict_glob("*", ""));
	assert_true(restrict_glob("*", "abc"));
	assert_true(restrict_glob("a*c", "abbbc"));
	assert_true(restrict_glob("a*b*c", "aXbYbZc"));
	assert_true(restrict_glob("**", "x"));
	assert_false(restrict_glob("a*c", "abcd"));
	assert_false(restrict_glob("abc", "ab"));
	assert_false(restrict_glob("", "a"));
	assert_true(restrict_glob("", ""));
	/* the backtracking stays linear-ish: a long miss ends */
	assert_false(
	    restrict_glob("*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

static void test_kinds_domains(void **state)
{
	char out[RESTRICT_DOMAINS_LEN], why[200];

	(void)state;
	assert_true(norm(RESTRICT_KINDS, "http,tcp,http", out, RESTRICT_KINDS_LEN, why));
	assert_string_equal(out, "tcp,http");
	assert_true(restrict_kind_ok(out, "tcp"));
	assert_true(norm(RESTRICT_KINDS, "http", out, RESTRICT_KINDS_LEN, why));
	assert_false(restrict_kind_ok(out, "tcp"));
	assert_true(restrict_kind_ok(out, "http"));
	assert_true(restrict_kind_ok("", "tcp"));
	assert_false(norm(RESTRICT_KINDS, "sctp", out, RESTRICT_KINDS_LEN, why));
	assert_string_equal(why, "item 1: \"sctp\" is not a rule kind (tcp, udp, http, mesh)");
	/* udp: a kind of its own, written after tcp */
	assert_true(norm(RESTRICT_KINDS, "http,udp", out, RESTRICT_KINDS_LEN, why));
	assert_string_equal(out, "udp,http");
	assert_true(restrict_kind_ok(out, "udp"));
	assert_false(restrict_kind_ok(out, "tcp"));
	assert_true(restrict_kind_ok("", "udp"));
	assert_true(norm(RESTRICT_KINDS, "mesh,http,udp,tcp", out, RESTRICT_KINDS_LEN, why));
	assert_string_equal(out, "tcp,udp,http,mesh");
	/* the mesh role: any order in, tcp, http, mesh out */
	assert_true(norm(RESTRICT_KINDS, "mesh,http,tcp", out, RESTRICT_KINDS_LEN, why));
	assert_string_equal(out, "tcp,http,mesh");
	assert_true(norm(RESTRICT_KINDS, "mesh,tcp", out, RESTRICT_KINDS_LEN, why));
	assert_string_equal(out, "tcp,mesh");
	assert_true(restrict_kind_ok(out, "mesh"));
	assert_false(restrict_kind_ok(out, "http"));
	assert_true(norm(RESTRICT_KINDS, "mesh", out, RESTRICT_KINDS_LEN, why));
	assert_string_equal(out, "mesh");
	assert_false(restrict_kind_ok(out, "tcp"));
	assert_false(norm(RESTRICT_KINDS, "TCP", out, RESTRICT_KINDS_LEN, why));

	assert_true(norm(RESTRICT_DOMAINS, "*.Example.COM,app.test", out, sizeof(out), why));
	assert_string_equal(out, "*.example.com,app.test");
	assert_false(norm(RESTRICT_DOMAINS, "a..b", out, sizeof(out), why));
	assert_string_equal(why, "item 1: \"a..b\" is not a domain or a wildcard *.NAME (1-253 "
				 "characters of letters, digits, '-' and '.')");
	assert_false(norm(RESTRICT_DOMAINS, "a.*.com", out, sizeof(out), why));
}

static void test_ports(void **state)
{
	char out[RESTRICT_PORTS_LEN], why[200];
	unsigned lo, hi;

	(void)state;
	assert_true(restrict_ports("22010-22019", 11, 22000, 22999, out, why, sizeof(why)));
	assert_string_equal(out, "22010-22019");
	assert_true(restrict_port_range(out, &lo, &hi));
	assert_int_equal(lo, 22010);
	assert_int_equal(hi, 22019);
	assert_true(restrict_ports("22005", 5, 22000, 22999, out, why, sizeof(why)));
	assert_string_equal(out, "22005-22005");
	assert_false(restrict_port_range("", &lo, &hi));
	assert_false(restrict_ports("22019-22010", 11, 22000, 22999, out, why, sizeof(why)));
	assert_string_equal(why, "22019-22010: the range starts above its end");
	assert_false(restrict_ports("21000-22010", 11, 22000, 22999, out, why, sizeof(why)));
	assert_string_equal(why,
			    "21000-22010 is not inside the server's [ports] range 22000-22999");
	assert_false(restrict_ports("0-5", 3, 0, 65535, out, why, sizeof(why)));
	assert_string_equal(why, "\"0-5\" is not a port range A-B (ports 1-65535)");
	assert_false(restrict_ports("1-65536", 7, 1, 65535, out, why, sizeof(why)));
	assert_false(restrict_ports("a-b", 3, 1, 65535, out, why, sizeof(why)));
	assert_false(restrict_ports("-", 1, 1, 65535, out, why, sizeof(why)));
	assert_false(restrict_ports("", 0, 1, 65535, out, why, sizeof(why)));
	assert_false(restrict_ports("1-2-3", 5, 1, 65535, out, why, sizeof(why)));
}

static void test_brief(void **state)
{
	char out[32];

	(void)state;
	restrict_brief("10.0.0.0/8", out, 20);
	assert_string_equal(out, "10.0.0.0/8");
	restrict_brief("10.0.0.0/8,192.168.0.0/16,172.16.0.0/12", out, 20);
	assert_string_equal(out, "10.0.0.0/8,...");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_from),  cmocka_unit_test(test_ids),
	    cmocka_unit_test(test_glob),  cmocka_unit_test(test_kinds_domains),
	    cmocka_unit_test(test_ports), cmocka_unit_test(test_brief),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

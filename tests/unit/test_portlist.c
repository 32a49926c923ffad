// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/portlist.c: the kernel's port-list form parsed,
 * merged and written back, malformed lists refused, and reserving a range in
 * a file that stands in for net.ipv4.ip_local_reserved_ports (merged with
 * what is there, idempotent, errors with a reason).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "portlist.h"

static int parse_fmt(const char *in, char *out, size_t len)
{
	struct port_span v[16];
	int n = portlist_parse(in, v, 16);

	if (n < 0)
		return n;
	return portlist_format(v, n, out, len);
}

static void test_parse_format(void **state)
{
	char out[128];

	assert_int_equal(parse_fmt("", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(parse_fmt("\n", out, sizeof(out)), 0);
	assert_true(parse_fmt("1,2-4,10\n", out, sizeof(out)) > 0);
	assert_string_equal(out, "1-4,10"); /* 1 and 2-4 touch: merged */
	parse_fmt("22000-22999,80,81,100-200,150-300", out, sizeof(out));
	assert_string_equal(out, "80-81,100-300,22000-22999");
	parse_fmt("65535,0", out, sizeof(out));
	assert_string_equal(out, "0,65535");
	/* too small an output: an error, never a cut list */
	assert_int_equal(parse_fmt("22000-22999,23001", out, 8), -ENOSPC);
}

static void test_parse_bad(void **state)
{
	static const char *const bad[] = {"a",	"1,", "1,\n",  ",1",   "1 ,2", "1, 2", "4-2",
					  "1-", "-1", "65536", "1\n2", "1--2", "1,,2"};
	struct port_span v[4];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(portlist_parse(bad[i], v, 4), -EINVAL);
	assert_int_equal(portlist_parse("1,3,5,7,9", v, 4), -ENOSPC);
}

static void test_add_covers(void **state)
{
	struct port_span v[4];
	int n = portlist_parse("100-200,300", v, 4);

	assert_true(portlist_covers(v, n, 150, 200));
	assert_false(portlist_covers(v, n, 150, 250));
	n = portlist_add(v, n, 4, 201, 299);
	assert_int_equal(n, 1); /* 100-200, 201-299 and 300 become one span */
	assert_true(portlist_covers(v, n, 100, 300));
	n = portlist_add(v, n, 4, 10, 10);
	n = portlist_add(v, n, 4, 20, 20);
	n = portlist_add(v, n, 4, 30, 30);
	assert_int_equal(n, 4);
	assert_int_equal(portlist_add(v, n, 4, 40, 40), -ENOSPC);
	assert_int_equal(portlist_add(v, n, 4, 150, 160), 4); /* covered: no room needed */
}

static void test_reserve_file(void **state)
{
	char path[] = "/tmp/nave-test-portlist-XXXXXX", err[160], got[128];
	int fd = mkstemp(path);
	FILE *f;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "1000-1010,23000\n", 16), 16);
	close(fd);
	assert_int_equal(portlist_reserve(path, 22000, 22999, err, sizeof(err)), 0);
	f = fopen(path, "r");
	assert_non_null(fgets(got, sizeof(got), f));
	fclose(f);
	assert_string_equal(got, "1000-1010,22000-23000\n");
	/* again: already there, the file untouched */
	assert_int_equal(portlist_reserve(path, 22000, 22999, err, sizeof(err)), 1);
	/* a list the kernel would never write: refused with a reason, not rewritten */
	f = fopen(path, "w");
	fputs("oops\n", f);
	fclose(f);
	assert_int_equal(portlist_reserve(path, 22000, 22999, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cannot read its list"));
	unlink(path);
	assert_int_equal(portlist_reserve(path, 22000, 22999, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, path));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_format),
	    cmocka_unit_test(test_parse_bad),
	    cmocka_unit_test(test_add_covers),
	    cmocka_unit_test(test_reserve_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

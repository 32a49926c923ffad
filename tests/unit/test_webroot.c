// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the webroot server's pieces (client/webroot.c): request
 * paths decoded once and refused where they could leave the webroot, Range
 * values, content types, HTTP dates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "client/webroot.h"

static void path_ok(const char *target, const char *want)
{
	char out[256];

	if (!webroot_path(target, strlen(target), out, sizeof(out)))
		fail_msg("%s: refused", target);
	assert_string_equal(out, want);
}

static void path_bad(const char *target)
{
	char out[256];

	if (webroot_path(target, strlen(target), out, sizeof(out)))
		fail_msg("%s: taken as \"%s\"", target, out);
}

static void test_path(void **state)
{
	char out[8];

	path_ok("/", "");
	path_ok("/index.html", "index.html");
	path_ok("/a/b/", "a/b/");
	path_ok("/a%20b.txt?q=1", "a b.txt");
	path_ok("/x#frag", "x");
	path_ok("/%41%62", "Ab");
	path_ok("/%252e%252e/x", "%2e%2e/x"); /* decoded once only */
	path_ok("/.well-known/x", ".well-known/x");
	path_ok("/a..b", "a..b");
	path_bad("");
	path_bad("index.html");
	path_bad("http://h/x");
	path_bad("/..");
	path_bad("/../etc/passwd");
	path_bad("/a/../../b");
	path_bad("/%2e%2e/x");
	path_bad("/%2E%2e");
	path_bad("/a/%2e/b");
	path_bad("/.");
	path_bad("/a//b");
	path_bad("//a");
	path_bad("/a%2f..%2fb"); /* an encoded '/' still makes segments */
	path_bad("/a\\b");
	path_bad("/a%5cb");
	path_bad("/a%00b");
	path_bad("/a%0ab");
	path_bad("/%");
	path_bad("/%4");
	path_bad("/%zz");
	assert_false(webroot_path("/abcdefghij", 11, out, sizeof(out)));
	/* n bounds the target: no NUL needed */
	assert_true(webroot_path("/ab/../c", 3, out, sizeof(out)));
	assert_string_equal(out, "ab");
}

static void test_range(void **state)
{
	uint64_t a, b;

	assert_int_equal(webroot_range("bytes=0-0", 9, 10, &a, &b), 1);
	assert_true(a == 0 && b == 0);
	assert_int_equal(webroot_range("bytes=2-", 8, 10, &a, &b), 1);
	assert_true(a == 2 && b == 9);
	assert_int_equal(webroot_range("bytes=-3", 8, 10, &a, &b), 1);
	assert_true(a == 7 && b == 9);
	assert_int_equal(webroot_range("bytes=-30", 9, 10, &a, &b), 1);
	assert_true(a == 0 && b == 9);
	assert_int_equal(webroot_range("bytes=5-500", 11, 10, &a, &b), 1);
	assert_true(a == 5 && b == 9);
	assert_int_equal(webroot_range("BYTES=1-2 ", 10, 10, &a, &b), 1);
	assert_int_equal(webroot_range("bytes=10-", 9, 10, &a, &b), -1);
	assert_int_equal(webroot_range("bytes=-0", 8, 10, &a, &b), -1);
	assert_int_equal(webroot_range("bytes=0-", 8, 0, &a, &b), -1);
	assert_int_equal(webroot_range("bytes=-1", 8, 0, &a, &b), -1);
	/* the whole file: several ranges, another unit, nonsense */
	assert_int_equal(webroot_range("bytes=0-1,3-4", 13, 10, &a, &b), 0);
	assert_int_equal(webroot_range("items=0-1", 9, 10, &a, &b), 0);
	assert_int_equal(webroot_range("bytes=5-2", 9, 10, &a, &b), 0);
	assert_int_equal(webroot_range("bytes=-", 7, 10, &a, &b), 0);
	assert_int_equal(webroot_range("bytes=a-b", 9, 10, &a, &b), 0);
	assert_int_equal(webroot_range("bytes=1-2x", 10, 10, &a, &b), 0);
	assert_int_equal(webroot_range("bytes=+1-2", 10, 10, &a, &b), 0);
	assert_int_equal(webroot_range("bytes=99999999999999999999999-", 30, 10, &a, &b), 0);
}

static void test_types(void **state)
{
	assert_string_equal(webroot_content_type("index.html"), "text/html; charset=utf-8");
	assert_string_equal(webroot_content_type("a/b.CSS"), "text/css; charset=utf-8");
	assert_string_equal(webroot_content_type("app.js"), "text/javascript; charset=utf-8");
	assert_string_equal(webroot_content_type("x.json"), "application/json");
	assert_string_equal(webroot_content_type("x.png"), "image/png");
	assert_string_equal(webroot_content_type("x.jpg"), "image/jpeg");
	assert_string_equal(webroot_content_type("x.gif"), "image/gif");
	assert_string_equal(webroot_content_type("x.svg"), "image/svg+xml");
	assert_string_equal(webroot_content_type("favicon.ico"), "image/x-icon");
	assert_string_equal(webroot_content_type("r.txt"), "text/plain; charset=utf-8");
	assert_string_equal(webroot_content_type("m.wasm"), "application/wasm");
	assert_string_equal(webroot_content_type("f.woff2"), "font/woff2");
	assert_string_equal(webroot_content_type("d.pdf"), "application/pdf");
	assert_string_equal(webroot_content_type("bin"), "application/octet-stream");
	assert_string_equal(webroot_content_type("a.html/x"), "application/octet-stream");
	assert_string_equal(webroot_content_type("x."), "application/octet-stream");
}

static void test_dates(void **state)
{
	char d[40];

	webroot_http_date(784111777, d, sizeof(d));
	assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
	assert_int_equal(webroot_parse_date(d, strlen(d)), 784111777);
	assert_int_equal(webroot_parse_date("Sunday, 06-Nov-94 08:49:37 GMT", 30), -1);
	assert_int_equal(webroot_parse_date("Sun Nov  6 08:49:37 1994", 24), -1);
	assert_int_equal(webroot_parse_date("Sun, 06 Nov 1994 08:49:37 UTC", 29), -1);
	assert_int_equal(webroot_parse_date("Sun, 06 Xyz 1994 08:49:37 GMT", 29), -1);
	assert_int_equal(webroot_parse_date("", 0), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_path),
	    cmocka_unit_test(test_range),
	    cmocka_unit_test(test_types),
	    cmocka_unit_test(test_dates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

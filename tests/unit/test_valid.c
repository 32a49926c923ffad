// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/valid.c: each alphabet and length limit, text that
 * must be UTF-8 without control characters, the HELLO member checks with
 * their one-line reasons, and valid_fit for the client's own host name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "link_proto.h"
#include "valid.h"

static void test_kinds(void **state)
{
	assert_true(valid_str("host-1.example_x", VALID_ID, 64));
	assert_false(valid_str("a b", VALID_ID, 64));
	assert_false(valid_str("a\nb", VALID_ID, 64));
	assert_false(valid_str("", VALID_ID, 64));
	assert_false(valid_str(NULL, VALID_ID, 64));
	assert_false(valid_str("abcd", VALID_ID, 3));
	assert_true(valid_str("ssh_2-a", VALID_NAME, 63));
	assert_false(valid_str("a.b", VALID_NAME, 63));
	assert_true(valid_str("0.1.0+git", VALID_VERSION, 32));
	assert_true(valid_str("nvt_0123abcd_ff", VALID_TOKEN, 64));
	assert_false(valid_str("nvt-x", VALID_TOKEN, 64));
	assert_true(valid_str("caf\xc3\xa9 \xe2\x82\xac 100", VALID_TEXT, 255));
	assert_false(valid_str("esc \x1b[31m", VALID_TEXT, 255));
	assert_false(valid_str("del \x7f", VALID_TEXT, 255));
	assert_false(valid_str("c1 \xc2\x9b", VALID_TEXT, 255));
	assert_false(valid_str("bad \xff", VALID_TEXT, 255));
	assert_false(valid_str("cut \xc3", VALID_TEXT, 255));
	assert_false(valid_str("overlong \xc0\xaf", VALID_TEXT, 255));
	assert_false(valid_str("surrogate \xed\xa0\x80", VALID_TEXT, 255));
	assert_false(valid_str("bidi \xe2\x80\xae", VALID_TEXT, 255));
	assert_false(valid_str("bom \xef\xbb\xbf", VALID_TEXT, 255));
}

static void test_hello(void **state)
{
	char err[160], big[5001];
	json_t *h = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "hello", "hostname",
			      "box-1", "os", "linux", "arch", "x86_64", "client_version", "0.1.0",
			      "token", "nvt_00000000_abc");

	assert_true(valid_hello(h, err, sizeof(err)));
	json_object_set_new(h, "hostname", json_string("evil\n2026-01-01 forged"));
	assert_false(valid_hello(h, err, sizeof(err)));
	assert_string_equal(err,
			    "hostname must be 1-64 characters: letters, digits, '.', '_' and '-'");
	json_object_set_new(h, "hostname", json_string("ok"));
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	json_object_set_new(h, "os", json_string(big));
	assert_false(valid_hello(h, err, sizeof(err)));
	assert_non_null(strstr(err, "os must be 1-32"));
	json_object_set_new(h, "os", json_integer(5));
	assert_false(valid_hello(h, err, sizeof(err)));
	json_object_set_new(h, "os", json_null());
	assert_true(valid_hello(h, err, sizeof(err)));
	json_object_set_new(h, "arch", json_string("\x1b[2J"));
	assert_false(valid_hello(h, err, sizeof(err)));
	json_decref(h);
}

static void test_fit(void **state)
{
	char s[80] = "my host\xc3\xa9";

	valid_fit(s, VALID_ID, LINK_HOSTNAME_MAX);
	assert_string_equal(s, "my-host--");
	memset(s, 'x', 79);
	s[79] = 0;
	valid_fit(s, VALID_ID, LINK_HOSTNAME_MAX);
	assert_int_equal(strlen(s), LINK_HOSTNAME_MAX);
	s[0] = 0;
	valid_fit(s, VALID_ID, LINK_HOSTNAME_MAX);
	assert_string_equal(s, "-");
}

/* Text limited in characters, not bytes: a support session's reason. */
static void test_text_chars(void **state)
{
	char s[1024];

	assert_true(valid_text_chars("", 0, 200)); /* empty is fine */
	assert_true(valid_text_chars("printer is on fire", 18, 200));
	for (int i = 0; i < 200; i++) /* 200 two-byte characters: 400 bytes */
		memcpy(s + 2 * i, "\xc3\xbc", 2);
	assert_true(valid_text_chars(s, 400, 200));
	memcpy(s + 400, "x", 2);
	assert_false(valid_text_chars(s, 401, 200));
	assert_false(valid_text_chars("a\nb", 3, 200));
	assert_false(valid_text_chars("a\0b", 3, 200)); /* a NUL inside */
	assert_false(valid_text_chars("c1 \xc2\x9b", 5, 200));
	assert_false(valid_text_chars("cut \xc3", 5, 200));
	assert_false(valid_text_chars(NULL, 0, 200));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kinds),
	    cmocka_unit_test(test_hello),
	    cmocka_unit_test(test_fit),
	    cmocka_unit_test(test_text_chars),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

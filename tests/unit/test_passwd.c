// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/passwd.c: hash and verify round trip, a wrong
 * password, every tampered part of the text form refused, the cost bounds
 * (ln, r, p, memory), and strict base64.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "link_proto.h"
#include "passwd.h"

/* the cheapest cost the parser takes: the tests stay fast */
#define LN 10
#define R  1
#define P  1

static void test_round_trip(void **state)
{
	char h[PASSWD_STR_MAX], h2[PASSWD_STR_MAX];
	struct passwd_params pp;

	assert_int_equal(passwd_hash_cost("s3cret", 6, LN, R, P, h, sizeof(h)), 0);
	assert_true(strncmp(h, "$scrypt$ln=10,r=1,p=1$", 22) == 0);
	assert_true(passwd_parse(h, strlen(h), &pp));
	assert_int_equal(pp.ln, 10);
	assert_true(passwd_verify("s3cret", 6, h));
	assert_false(passwd_verify("s3creT", 6, h));
	assert_false(passwd_verify("s3cre", 5, h));
	assert_false(passwd_verify("", 0, h));
	/* a fresh salt each time */
	assert_int_equal(passwd_hash_cost("s3cret", 6, LN, R, P, h2, sizeof(h2)), 0);
	assert_string_not_equal(h, h2);
	assert_true(passwd_verify("s3cret", 6, h2));
	/* printable, no spaces, and "USER:HASH" fits the protocol */
	for (const char *c = h; *c; c++)
		assert_true(*c > 0x20 && *c < 0x7f && *c != ':');
	assert_true(LINK_AUTH_USER_MAX + 1 + strlen(h) <= LINK_AUTH_MAX);
}

static void test_default_cost(void **state)
{
	char h[PASSWD_STR_MAX];

	assert_int_equal(passwd_hash("pw", 2, h, sizeof(h)), 0);
	assert_true(strncmp(h, "$scrypt$ln=14,r=8,p=1$", 22) == 0);
	assert_true(passwd_verify("pw", 2, h));
	assert_true(LINK_AUTH_USER_MAX + 1 + strlen(h) <= LINK_AUTH_MAX);
	assert_int_equal(passwd_hash("pw", 2, h, 20), -1);
}

static void test_tampered(void **state)
{
	char h[PASSWD_STR_MAX], t[PASSWD_STR_MAX + 8];
	size_t n;

	assert_int_equal(passwd_hash_cost("pw", 2, LN, R, P, h, sizeof(h)), 0);
	n = strlen(h);
	/* every byte changed: either it does not parse, or it no longer matches */
	for (size_t i = 0; i < n; i++) {
		memcpy(t, h, n + 1);
		t[i] = t[i] == 'A' ? 'B' : 'A';
		assert_false(passwd_verify("pw", 2, t));
	}
	/* cut anywhere */
	for (size_t i = 0; i < n; i++) {
		memcpy(t, h, i);
		t[i] = 0;
		assert_false(passwd_parse(t, i, NULL));
		assert_false(passwd_verify("pw", 2, t));
	}
	/* one more character, a trailing newline, a space */
	snprintf(t, sizeof(t), "%sA", h);
	assert_false(passwd_verify("pw", 2, t));
	snprintf(t, sizeof(t), "%s\n", h);
	assert_false(passwd_verify("pw", 2, t));
	snprintf(t, sizeof(t), " %s", h);
	assert_false(passwd_verify("pw", 2, t));
	assert_false(passwd_verify("pw", 2, ""));
	assert_false(passwd_verify("pw", 2, NULL));
	assert_false(passwd_verify("pw", 2, "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"));
}

static void swap_cost(char *out, size_t len, const char *h, const char *cost)
{
	const char *rest = strchr(h + 8, '$'); /* after "$scrypt$ln=..,r=..,p=.." */

	snprintf(out, len, "$scrypt$%s%s", cost, rest);
}

static void test_bounds(void **state)
{
	char h[PASSWD_STR_MAX], t[PASSWD_STR_MAX + 32];
	static const char *const bad[] = {
	    "ln=9,r=1,p=1",   "ln=21,r=1,p=1",	"ln=10,r=0,p=1",
	    "ln=10,r=17,p=1", "ln=10,r=1,p=0",	"ln=10,r=1,p=5",
	    "ln=20,r=1,p=1", /* 128 MiB */
	    "ln=19,r=8,p=1",  "ln=010,r=1,p=1", "ln=+10,r=1,p=1",
	    "ln=10,r=1",      "ln=10,p=1,r=1",	"ln=10, r=1,p=1",
	    "ln=10,r=1,p=1,", "LN=10,r=1,p=1",	"ln=99999999999999999999,r=1,p=1",
	};
	struct passwd_params pp;

	assert_int_equal(passwd_hash_cost("pw", 2, LN, R, P, h, sizeof(h)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		swap_cost(t, sizeof(t), h, bad[i]);
		assert_false(passwd_parse(t, strlen(t), NULL));
	}
	/* the largest that is allowed: 128 * 16 * 2^15 = 64 MiB */
	swap_cost(t, sizeof(t), h, "ln=15,r=16,p=4");
	assert_true(passwd_parse(t, strlen(t), &pp));
	swap_cost(t, sizeof(t), h, "ln=16,r=16,p=1");
	assert_false(passwd_parse(t, strlen(t), NULL));
	swap_cost(t, sizeof(t), h, "ln=19,r=1,p=1");
	assert_true(passwd_parse(t, strlen(t), NULL));
	/* a cost the hasher would refuse too */
	assert_int_equal(passwd_hash_cost("pw", 2, 21, 1, 1, h, sizeof(h)), -1);
	assert_int_equal(passwd_hash_cost("pw", 2, 10, 17, 1, h, sizeof(h)), -1);
}

static void test_b64(void **state)
{
	uint8_t in[3] = {0xfb, 0xff, 0x00}, out[3];
	char s[8];

	assert_int_equal(passwd_b64_encode(in, 1, s, sizeof(s)), 2);
	assert_string_equal(s, "+w");
	assert_int_equal(passwd_b64_encode(in, 2, s, sizeof(s)), 3);
	assert_string_equal(s, "+/8");
	assert_int_equal(passwd_b64_encode(in, 3, s, sizeof(s)), 4);
	assert_string_equal(s, "+/8A");
	assert_true(passwd_b64_decode("+w", 2, out, 1));
	assert_int_equal(out[0], 0xfb);
	assert_false(passwd_b64_decode("+x", 2, out, 1)); /* trailing bits set */
	assert_false(passwd_b64_decode("+w==", 4, out, 1));
	assert_false(passwd_b64_decode("+/8", 3, out, 1));
	assert_false(passwd_b64_decode("-_8", 3, out, 2)); /* the URL alphabet is not ours */
	assert_true(passwd_b64_decode("+/8", 3, out, 2));
	assert_int_equal(passwd_b64_encode(in, 3, s, 4), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip), cmocka_unit_test(test_default_cost),
	    cmocka_unit_test(test_tampered),   cmocka_unit_test(test_bounds),
	    cmocka_unit_test(test_b64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

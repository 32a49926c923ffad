// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of ctl/totp.c: HOTP against RFC 4226 appendix D, TOTP against
 * RFC 6238 appendix B (SHA-1, SHA-256, SHA-512, 8 digits), the user check
 * (window of one step either side, replay refused, malformed codes), base32
 * against RFC 4648's vectors and the otpauth:// URI.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ctl/totp.h"

static const uint8_t k20[] = "12345678901234567890";
static const uint8_t k32[] = "12345678901234567890123456789012";
static const uint8_t k64[] = "1234567890123456789012345678901234567890123456789012345678901234";

static void test_hotp_rfc4226(void **state)
{
	static const int64_t want[] = {755224, 287082, 359152, 969429, 338314,
				       254676, 287922, 162583, 399871, 520489};

	(void)state;
	for (uint64_t i = 0; i < 10; i++)
		assert_int_equal(hotp(k20, 20, i, TOTP_SHA1, 6), want[i]);
	assert_int_equal(hotp(k20, 20, 0, TOTP_SHA1, 0), -1);
	assert_int_equal(hotp(k20, 20, 0, TOTP_SHA1, 10), -1);
	assert_int_equal(hotp(k20, 20, 0, (enum totp_alg)7, 6), -1);
}

static void test_totp_rfc6238(void **state)
{
	static const struct {
		uint64_t t;
		int64_t sha1, sha256, sha512;
	} v[] = {
	    {59, 94287082, 46119246, 90693936},
	    {1111111109, 7081804, 68084774, 25091201},
	    {1111111111, 14050471, 67062674, 99943326},
	    {1234567890, 89005924, 91819424, 93441116},
	    {2000000000, 69279037, 90698825, 38618901},
	    {20000000000ULL, 65353130, 77737706, 47863826},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		assert_int_equal(totp(k20, 20, v[i].t, 0, 30, TOTP_SHA1, 8), v[i].sha1);
		assert_int_equal(totp(k32, 32, v[i].t, 0, 30, TOTP_SHA256, 8), v[i].sha256);
		assert_int_equal(totp(k64, 64, v[i].t, 0, 30, TOTP_SHA512, 8), v[i].sha512);
	}
	assert_int_equal(totp(k20, 20, 59, 0, 0, TOTP_SHA1, 8), -1);
	assert_int_equal(totp(k20, 20, 59, 60, 30, TOTP_SHA1, 8), -1);
}

static void code_at(uint64_t t, char out[8])
{
	snprintf(out, 8, "%06lld", (long long)totp(k20, 20, t, 0, 30, TOTP_SHA1, 6));
}

static void test_check(void **state)
{
	const uint64_t now = 1111111111; /* step 37037037 */
	char c[8];
	int64_t step = 0;

	(void)state;
	code_at(now, c);
	assert_int_equal(totp_check(k20, 20, c, now, 0, &step), 0);
	assert_int_equal(step, (int64_t)(now / 30));
	/* the same step again: a replay */
	assert_int_equal(totp_check(k20, 20, c, now, step, &step), -EALREADY);
	/* one step either side is accepted, two are not */
	code_at(now - 30, c);
	assert_int_equal(totp_check(k20, 20, c, now, 0, &step), 0);
	assert_int_equal(step, (int64_t)(now / 30) - 1);
	code_at(now + 30, c);
	assert_int_equal(totp_check(k20, 20, c, now, 0, &step), 0);
	code_at(now - 60, c);
	assert_int_equal(totp_check(k20, 20, c, now, 0, &step), -EACCES);
	code_at(now + 60, c);
	assert_int_equal(totp_check(k20, 20, c, now, 0, &step), -EACCES);
	/* an older step than one already used: a replay too */
	code_at(now - 30, c);
	assert_int_equal(totp_check(k20, 20, c, now, (int64_t)(now / 30), &step), -EALREADY);
	/* not a code */
	assert_int_equal(totp_check(k20, 20, "12345", now, 0, &step), -EINVAL);
	assert_int_equal(totp_check(k20, 20, "1234567", now, 0, &step), -EINVAL);
	assert_int_equal(totp_check(k20, 20, "12a456", now, 0, &step), -EINVAL);
	assert_int_equal(totp_check(k20, 20, NULL, now, 0, &step), -EINVAL);
}

static void test_base32(void **state)
{
	/* RFC 4648 section 10, without the padding */
	static const char *const v[][2] = {
	    {"", ""},
	    {"f", "MY"},
	    {"fo", "MZXQ"},
	    {"foo", "MZXW6"},
	    {"foob", "MZXW6YQ"},
	    {"fooba", "MZXW6YTB"},
	    {"foobar", "MZXW6YTBOI"},
	};
	char out[64];
	uint8_t back[64];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t n = strlen(v[i][0]);

		totp_b32_encode((const uint8_t *)v[i][0], n, out, sizeof(out));
		assert_string_equal(out, v[i][1]);
		assert_int_equal(totp_b32_decode(v[i][1], back, sizeof(back)), (int)n);
		assert_memory_equal(back, v[i][0], n);
	}
	assert_int_equal(totp_b32_decode("MZXW6YQ=", back, sizeof(back)), -1);
	assert_int_equal(totp_b32_decode("mzxw6", back, sizeof(back)), -1);
	assert_int_equal(totp_b32_decode("MZXW6YTBOI", back, 3), -1);
	assert_int_equal(totp_b32_decode("MZ", back, sizeof(back)), -1); /* trailing bits */
	assert_int_equal(totp_b32_encode(k20, 20, out, 32), 0);
	assert_int_equal(totp_b32_encode(k20, 20, out, TOTP_B32_LEN), 32);
	assert_string_equal(out, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
}

static void test_uri(void **state)
{
	char out[256];

	(void)state;
	assert_int_equal(totp_uri("nave", "alice", "GEZDGNBV", out, sizeof(out)), 0);
	assert_string_equal(out, "otpauth://totp/nave:alice?secret=GEZDGNBV&issuer=nave"
				 "&algorithm=SHA1&digits=6&period=30");
	assert_int_equal(totp_uri("nave", "a&b", "GEZDGNBV", out, sizeof(out)), -1);
	assert_int_equal(totp_uri("na ve", "alice", "GEZDGNBV", out, sizeof(out)), -1);
	assert_int_equal(totp_uri("nave", "alice", "GEZDGNBV", out, 20), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hotp_rfc4226), cmocka_unit_test(test_totp_rfc6238),
	    cmocka_unit_test(test_check),	 cmocka_unit_test(test_base32),
	    cmocka_unit_test(test_uri),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

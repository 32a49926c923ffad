// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for ctl/totp.c: the base32 decoder (a user's stored TOTP
 * secret) and the login's code check (the untrusted "totp" member of POST
 * /api/v1/login). The input is a base32 text, a newline, and a code. Checks:
 * an accepted text decodes to at most the buffer and encodes back to itself;
 * totp_check accepts only exactly 6 digits, and accepts the code of the
 * current step, refusing it again as a replay.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_totp.c ctl/totp.c -lcrypto
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/totp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_totp: %s\n", what);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[256], code[64], back[512], want[16];
	uint8_t key[128];
	const uint8_t *nl = memchr(data, '\n', size);
	size_t tlen = nl ? (size_t)(nl - data) : size, clen = nl ? size - tlen - 1 : 0;
	int64_t step = 0;
	int n, ret;
	bool digits = true;

	if (tlen >= sizeof(text) || clen >= sizeof(code))
		return 0;
	memcpy(text, data, tlen);
	text[tlen] = 0;
	memcpy(code, nl ? nl + 1 : data, clen);
	code[clen] = 0;

	n = totp_b32_decode(text, key, sizeof(key));
	if (n > (int)sizeof(key))
		fail("decoded past the buffer");
	if (n >= 0 && strlen(text) == tlen) {
		totp_b32_encode(key, (size_t)n, back, sizeof(back));
		if (strcmp(back, text))
			fail("an accepted text does not encode back to itself");
	}
	if (n <= 0) {
		memcpy(key, "12345678901234567890", 20);
		n = 20;
	}
	/* the API hands the check a C string: what a NUL cuts off is not seen */
	for (size_t i = 0; i < strlen(code); i++)
		digits &= code[i] >= '0' && code[i] <= '9';
	ret = totp_check(key, (size_t)n, code, 1111111111, 0, &step);
	if ((strlen(code) != TOTP_DIGITS || !digits) && ret != -EINVAL)
		fail("a code that is not 6 digits was not refused as malformed");
	if (ret == 0 && (step < 1111111111 / 30 - 1 || step > 1111111111 / 30 + 1))
		fail("a step outside the window was accepted");
	snprintf(want, sizeof(want), "%06lld",
		 (long long)totp(key, (size_t)n, 1111111111, 0, TOTP_STEP, TOTP_SHA1, 6));
	if (totp_check(key, (size_t)n, want, 1111111111, 0, &step) != 0 || step != 1111111111 / 30)
		fail("the current code was refused");
	if (totp_check(key, (size_t)n, want, 1111111111, step, &step) != -EALREADY)
		fail("a replay was accepted");
	return 0;
}

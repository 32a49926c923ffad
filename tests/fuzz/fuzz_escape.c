// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for what untrusted strings go through: the escaper of
 * every log line (common/log.c: log_escape, log_esc_str), the UTF-8 decoder
 * (utf8_decode) and the alphabet checks (common/valid.c). The first input
 * byte picks a valid_kind and an output size; the rest is the string. Beyond
 * "never crash" it checks: text escapes hold only printable ASCII or
 * printable UTF-8 (no control byte, never a line break), JSON escapes parse as
 * a JSON string whose value holds the input's printable characters, output
 * never overruns, a cut never splits an escape, and valid_str accepts only
 * strings that the text escaper leaves as they are (for VALID_TEXT) or that
 * are of the kind's alphabet.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_escape.c common/log.c common/util.c common/valid.c -ljansson
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"
#include "util.h"
#include "valid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_escape: %s\n", what);
	abort();
}

/* Every byte of an escaped text line is printable ASCII or part of printable UTF-8. */
static void check_text(const char *out, size_t n)
{
	const unsigned char *s = (const unsigned char *)out;

	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t len = utf8_decode(s + i, n - i, &cp);

		if (!len || !utf8_printable(cp))
			fail("text escape let a control or invalid byte through");
		i += len;
	}
	if (strlen(out) != n)
		fail("text escape length");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum valid_kind kinds[] = {VALID_ID, VALID_NAME, VALID_VERSION, VALID_TOKEN,
						VALID_TEXT};
	char *in, out[1200], doc[1210], small[64];
	size_t n, outlen, k;
	json_error_t e;
	json_t *j;

	if (size < 1 || size > 1024)
		return 0;
	outlen = 4 + (size_t)(data[0] >> 3) * 37 % (sizeof(out) - 4);
	n = size - 1;
	in = malloc(n + 1);
	if (!in)
		return 0;
	memcpy(in, data + 1, n);
	in[n] = 0;

	k = log_escape(in, n, out, outlen, false);
	if (k >= outlen)
		fail("text escape overran");
	check_text(out, k);

	k = log_escape(in, n, out, sizeof(out) - 8, true);
	snprintf(doc, sizeof(doc), "\"%s\"", out);
	j = json_loads(doc, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!j || !json_is_string(j))
		fail("JSON escape is not a JSON string");
	json_decref(j);

	log_esc_str(in, small, sizeof(small));
	check_text(small, strlen(small));

	/* NUL-terminated view: what a C caller would check */
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t len = strlen(in);

		if (!valid_str(in, kinds[i], 255))
			continue;
		if (len == 0 || len > 255)
			fail("valid_str accepted an empty or long string");
		if (kinds[i] == VALID_TEXT) {
			k = log_escape(in, len, out, sizeof(out), false);
			for (size_t c = 0; c < len; c++)
				if (in[c] == '\\')
					goto next; /* the only byte the escaper changes in valid
						      text */
			if (k != len || memcmp(out, in, len))
				fail("valid text was changed by the escaper");
		} else {
			for (size_t c = 0; c < len; c++)
				if ((unsigned char)in[c] < 0x21 || (unsigned char)in[c] > 0x7e)
					fail("an alphabet kind accepted a non-printable byte");
		}
	next:;
	}
	free(in);
	return 0;
}

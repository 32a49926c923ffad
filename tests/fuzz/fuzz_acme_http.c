// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for ctl/acme_http.c: what an ACME CA (or anything that
 * answers at its address) sends the ACME client. The input is a whole
 * response for acme_http_parse; its first line is also tried as a URL
 * (acme_url_parse). Checks: a parsed response has a status of three digits,
 * a body within ACME_HTTP_BODY_MAX and NUL-terminated at len, a nonce of
 * base64url only, a Location of printable ASCII only; a parsed URL has a
 * host and a port and a path that starts with '/'.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -I/usr/include/android \
 *     -D_GNU_SOURCE tests/fuzz/fuzz_acme_http.c ctl/acme_http.c common/util.c common/log.c \
 *     -ljansson -lhttp_parser \
 *     /usr/lib/x86_64-linux-gnu/android/libssl.so /usr/lib/x86_64-linux-gnu/android/libcrypto.so
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/acme_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct acme_resp r;
	struct acme_url u;
	char err[256], line[ACME_URL_MAX + 8];
	size_t n = 0;

	if (acme_http_parse(data, size, &r, err, sizeof(err)) == 0) {
		if (r.status < 100 || r.status > 999)
			abort();
		if (r.len > ACME_HTTP_BODY_MAX || (r.body && r.body[r.len]) || (!r.body && r.len))
			abort();
		for (const char *c = r.nonce; *c; c++)
			if (!strchr(
				"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
				*c))
				abort();
		for (const char *c = r.location; *c; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
				abort();
		acme_resp_free(&r);
	} else if (!err[0]) {
		abort(); /* a refusal always says why */
	}
	while (n < size && n + 1 < sizeof(line) && data[n] != '\n' && data[n]) {
		line[n] = (char)data[n];
		n++;
	}
	line[n] = '\0';
	if (acme_url_parse(line, &u) == 0 && (!u.host[0] || !u.port[0] || u.path[0] != '/'))
		abort();
	return 0;
}

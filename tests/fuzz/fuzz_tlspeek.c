// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for common/tlspeek.c, the ClientHello peek of the HTTPS
 * listener: whatever the first bytes of a public connection are. Checks: a
 * verdict on a prefix is never taken back by more bytes (MORE only ever turns
 * into something else); an SNI read is a lowercase DNS name within bounds;
 * the ALPN list read is well formed.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_tlspeek.c common/tlspeek.c
 */
#include <stdlib.h>
#include <string.h>

#include "tlspeek.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct tlspeek *p)
{
	size_t n = strlen(p->sni), i = 0;

	if (n > TLSPEEK_SNI_MAX || (n && (p->sni[0] == '.' || p->sni[n - 1] == '.')))
		abort();
	for (size_t k = 0; k < n; k++) {
		char c = p->sni[k];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
			abort();
	}
	if (p->alpn_len > TLSPEEK_ALPN_MAX)
		abort();
	while (i < p->alpn_len) {
		if (!p->alpn[i] || i + 1 + p->alpn[i] > p->alpn_len)
			abort();
		i += 1 + p->alpn[i];
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tlspeek p;
	char why[160];
	enum tlspeek_result whole = tlspeek_client_hello(data, size, &p, why, sizeof(why));

	if (whole == TLSPEEK_OK)
		check(&p);
	/* a prefix that already had a verdict keeps it */
	if (size > 1) {
		enum tlspeek_result half =
		    tlspeek_client_hello(data, size / 2, &p, why, sizeof(why));

		if (half != TLSPEEK_MORE && half != whole)
			abort();
	}
	return 0;
}

// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for tls/ktls.c's record classifier, which reads the
 * plaintext of a non-data record a peer sent on a kTLS link (an alert, a
 * post-handshake message, anything). The first input byte is the record's
 * content type, the second the size of the reason buffer, the rest the
 * payload, copied into a buffer of exactly its size so that a read past it
 * trips ASan. Checks: the result is a known kind; the reason is terminated,
 * fits its buffer and holds printable ASCII only (it goes to a log line);
 * close_notify is exactly the 2-byte alert {level, 0}; application data (23)
 * is always DATA and nothing else is.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon \
 *     -I/usr/include/android -D_GNU_SOURCE tests/fuzz/fuzz_ktls.c tls/ktls.c \
 *     common/util.c common/log.c -ljansson ANDROID_LIBDIR/libcrypto.so ...
 */
#include <stdlib.h>
#include <string.h>

#include "tls/ktls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char reason[256];
	uint8_t *payload;
	size_t rlen, len, n;
	enum ktls_record k;

	if (size < 2)
		return 0;
	rlen = data[1] % sizeof(reason);
	len = size - 2;
	payload = malloc(len ? len : 1);
	if (!payload)
		return 0;
	memcpy(payload, data + 2, len);
	memset(reason, 'X', sizeof(reason));
	k = ktls_classify(data[0], len ? payload : NULL, len, rlen ? reason : NULL, rlen);
	if (k < KTLS_REC_DATA || k > KTLS_REC_OTHER)
		abort();
	if ((data[0] == 23) != (k == KTLS_REC_DATA))
		abort();
	if (k == KTLS_REC_CLOSE_NOTIFY && !(data[0] == 21 && len == 2 && payload[1] == 0))
		abort();
	if (rlen) {
		n = strnlen(reason, rlen);
		if (n >= rlen)
			abort(); /* not terminated inside its buffer */
		for (size_t i = 0; i < n; i++)
			if (reason[i] < 0x20 || reason[i] > 0x7e)
				abort();
		for (size_t i = rlen; i < sizeof(reason); i++)
			if (reason[i] != 'X')
				abort(); /* wrote past rlen */
	}
	free(payload);
	return 0;
}

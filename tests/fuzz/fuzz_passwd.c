// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzzes passwd_parse, the parser relayd runs on a client's basic_auth hash:
 * any input either parses within the cost bounds or is refused, and what
 * parses re-encodes to the same text.
 */
#include "passwd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct passwd_params pp;
	char salt[32], hash[48], again[PASSWD_STR_MAX + 32];

	if (!passwd_parse((const char *)data, size, &pp))
		return 0;
	if (pp.ln < PASSWD_LN_MIN || pp.ln > PASSWD_LN_MAX || pp.r < 1 || pp.r > PASSWD_R_MAX ||
	    pp.p < 1 || pp.p > PASSWD_P_MAX || 128ull * pp.r * (1ull << pp.ln) > PASSWD_MEM_MAX)
		abort();
	passwd_b64_encode(pp.salt, sizeof(pp.salt), salt, sizeof(salt));
	passwd_b64_encode(pp.hash, sizeof(pp.hash), hash, sizeof(hash));
	snprintf(again, sizeof(again), "$scrypt$ln=%u,r=%u,p=%u$%s$%s", pp.ln, pp.r, pp.p, salt,
		 hash);
	if (strlen(again) != size || memcmp(again, data, size))
		abort();
	return 0;
}

// SPDX-License-Identifier: Apache-2.0
/* PROXY protocol v1/v2 headers (see proxy.h). */
#include "proxy.h"

#include "sock.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

size_t proxy_header(int version, const uint8_t src[16], uint16_t sport_be, const uint8_t dst[16],
		    uint16_t dport_be, uint8_t *out, size_t cap)
{
	bool v4 = sock_addr16_is_v4(src) && sock_addr16_is_v4(dst);
	char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
	int n;

	if (version == 2) {
		size_t len = v4 ? 28 : 52;

		if (cap < len)
			return 0;
		memcpy(out, v2_sig, sizeof(v2_sig));
		out[12] = 0x21;		    /* version 2, PROXY */
		out[13] = v4 ? 0x11 : 0x21; /* TCP over IPv4 / IPv6 */
		out[14] = 0;
		out[15] = (uint8_t)(len - 16);
		if (v4) {
			memcpy(out + 16, src + 12, 4);
			memcpy(out + 20, dst + 12, 4);
			memcpy(out + 24, &sport_be, 2);
			memcpy(out + 26, &dport_be, 2);
		} else {
			memcpy(out + 16, src, 16);
			memcpy(out + 32, dst, 16);
			memcpy(out + 48, &sport_be, 2);
			memcpy(out + 50, &dport_be, 2);
		}
		return len;
	}
	if (version != 1)
		return 0;
	if (v4) {
		inet_ntop(AF_INET, src + 12, s, sizeof(s));
		inet_ntop(AF_INET, dst + 12, d, sizeof(d));
	} else { /* TCP6 carries both as IPv6 (an IPv4 one v4-mapped) */
		inet_ntop(AF_INET6, src, s, sizeof(s));
		inet_ntop(AF_INET6, dst, d, sizeof(d));
	}
	n = snprintf((char *)out, cap, "PROXY %s %s %s %u %u\r\n", v4 ? "TCP4" : "TCP6", s, d,
		     ntohs(sport_be), ntohs(dport_be));
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

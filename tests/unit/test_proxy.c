// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/proxy.c (PROXY protocol v1 and v2 headers, checked
 * byte for byte against the layout of the HAProxy specification) and of the
 * 16-byte address helpers in common/sock.c that feed them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "proxy.h"
#include "sock.h"

static void v4(const char *s, uint8_t a[16])
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	s4->sin_family = AF_INET;
	s4->sin_port = htons(4242);
	assert_int_equal(inet_pton(AF_INET, s, &s4->sin_addr), 1);
	assert_int_equal(sock_addr16(&ss, a), htons(4242));
}

static void v6(const char *s, uint8_t a[16])
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(80);
	assert_int_equal(inet_pton(AF_INET6, s, &s6->sin6_addr), 1);
	assert_int_equal(sock_addr16(&ss, a), htons(80));
}

static void test_addr16(void **state)
{
	static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1};
	struct sockaddr_storage ss;
	uint8_t a[16];
	char s[64];

	v4("192.0.2.1", a);
	assert_memory_equal(a, mapped, 16);
	assert_true(sock_addr16_is_v4(a));
	sock_addr16_ntop(a, s, sizeof(s));
	assert_string_equal(s, "192.0.2.1");
	v6("2001:db8::1", a);
	assert_false(sock_addr16_is_v4(a));
	sock_addr16_ntop(a, s, sizeof(s));
	assert_string_equal(s, "2001:db8::1");
	/* an unknown family: zeros and port 0 */
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	memset(a, 0xaa, sizeof(a));
	assert_int_equal(sock_addr16(&ss, a), 0);
	for (int i = 0; i < 16; i++)
		assert_int_equal(a[i], 0);
	/* too small an output: never overrun */
	v4("192.0.2.1", a);
	sock_addr16_ntop(a, s, 4);
	assert_true(strlen(s) < 4);
}

static void test_v1(void **state)
{
	uint8_t src[16], dst[16], out[PROXY_HEADER_MAX];
	size_t n;

	v4("192.0.2.1", src);
	v4("198.51.100.7", dst);
	n = proxy_header(1, src, htons(51000), dst, htons(22001), out, sizeof(out));
	assert_int_equal(n, strlen("PROXY TCP4 192.0.2.1 198.51.100.7 51000 22001\r\n"));
	assert_memory_equal(out, "PROXY TCP4 192.0.2.1 198.51.100.7 51000 22001\r\n", n);
	v6("2001:db8::1", src);
	v6("2001:db8::2", dst);
	n = proxy_header(1, src, htons(1), dst, htons(65535), out, sizeof(out));
	assert_memory_equal(out, "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", n);
	/* one side IPv6: TCP6 with the v4-mapped form */
	v4("192.0.2.1", src);
	n = proxy_header(1, src, htons(1), dst, htons(2), out, sizeof(out));
	assert_memory_equal(out, "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n", n);
	/* the longest line fits PROXY_HEADER_MAX */
	v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", src);
	v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd", dst);
	n = proxy_header(1, src, htons(65535), dst, htons(65535), out, sizeof(out));
	assert_true(n > 0 && n <= PROXY_HEADER_MAX);
	/* too small: 0, never a cut line */
	assert_int_equal(proxy_header(1, src, 1, dst, 2, out, 20), 0);
	assert_int_equal(proxy_header(3, src, 1, dst, 2, out, sizeof(out)), 0);
}

static void test_v2(void **state)
{
	static const uint8_t want4[28] = {
	    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* sig */
	    0x21, 0x11, 0x00, 0x0c,			 /* v2 PROXY, TCP4, 12 */
	    192,  0,	2,    1,    198,  51,	100,  7, /* src, dst */
	    0xc7, 0x38, 0x55, 0xf1,			 /* 51000, 22001 */
	};
	uint8_t src[16], dst[16], out[PROXY_HEADER_MAX];
	size_t n;

	v4("192.0.2.1", src);
	v4("198.51.100.7", dst);
	n = proxy_header(2, src, htons(51000), dst, htons(22001), out, sizeof(out));
	assert_int_equal(n, 28);
	assert_memory_equal(out, want4, 28);
	v6("2001:db8::1", src);
	v6("2001:db8::2", dst);
	n = proxy_header(2, src, htons(51000), dst, htons(22001), out, sizeof(out));
	assert_int_equal(n, 52);
	assert_int_equal(out[13], 0x21); /* TCP over IPv6 */
	assert_int_equal(out[15], 36);
	assert_memory_equal(out + 16, src, 16);
	assert_memory_equal(out + 32, dst, 16);
	assert_int_equal(out[48] << 8 | out[49], 51000);
	assert_int_equal(out[50] << 8 | out[51], 22001);
	assert_int_equal(proxy_header(2, src, 1, dst, 2, out, 51), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addr16),
	    cmocka_unit_test(test_v1),
	    cmocka_unit_test(test_v2),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

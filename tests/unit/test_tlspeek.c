// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/tlspeek.c, the ClientHello peek: real hellos made by
 * BoringSSL (SNI, ALPN, TLS 1.3) read whole, in every prefix (more, never a
 * verdict too early) and split over several records; plain HTTP is not TLS;
 * each malformed field, a duplicate extension, a bad host name, an oversized
 * hello and a record of another type are refused with a reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "tlspeek.h"

/* The first flight of a BoringSSL client: one record holding the ClientHello. */
static size_t make_hello(const char *sni, const char *const *alpn, uint8_t *out, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	SSL *ssl;
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	uint8_t protos[256];
	size_t pl = 0;
	int n;

	assert_non_null(ctx);
	ssl = SSL_new(ctx);
	assert_non_null(ssl);
	SSL_set_bio(ssl, rb, wb);
	SSL_set_connect_state(ssl);
	if (sni)
		assert_int_equal(SSL_set_tlsext_host_name(ssl, sni), 1);
	for (; alpn && *alpn; alpn++) {
		protos[pl++] = (uint8_t)strlen(*alpn);
		memcpy(protos + pl, *alpn, strlen(*alpn));
		pl += strlen(*alpn);
	}
	if (pl)
		assert_int_equal(SSL_set_alpn_protos(ssl, protos, pl), 0);
	assert_true(SSL_do_handshake(ssl) <= 0); /* wants the server's answer */
	n = BIO_read(wb, out, (int)cap);
	assert_true(n > 0);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return (size_t)n;
}

static enum tlspeek_result peek(const uint8_t *b, size_t n, struct tlspeek *p, char *why)
{
	return tlspeek_client_hello(b, n, p, why, 160);
}

static void test_real_hello(void **state)
{
	static const char *const alpn[] = {"nave/1", "http/1.1", NULL};
	uint8_t b[4096];
	size_t n = make_hello("Edge.Example.COM", alpn, b, sizeof(b));
	struct tlspeek p;
	char why[160];

	(void)state;
	assert_int_equal(peek(b, n, &p, why), TLSPEEK_OK);
	assert_string_equal(p.sni, "edge.example.com");
	assert_true(tlspeek_offers(&p, "nave/1"));
	assert_true(tlspeek_offers(&p, "http/1.1"));
	assert_false(tlspeek_offers(&p, "h2"));
	assert_false(tlspeek_offers(&p, "nave/"));
	assert_true(p.tls13);
	/* every prefix asks for more, and never says anything else */
	for (size_t i = 0; i < n; i++)
		assert_int_equal(peek(b, i, &p, why), TLSPEEK_MORE);
	/* what follows the hello (more records) changes nothing */
	memcpy(b + n, "\x14\x03\x03\x00\x01\x01", 6);
	assert_int_equal(peek(b, n + 6, &p, why), TLSPEEK_OK);
}

static void test_no_sni_no_alpn(void **state)
{
	uint8_t b[4096];
	size_t n = make_hello(NULL, NULL, b, sizeof(b));
	struct tlspeek p;
	char why[160];

	(void)state;
	assert_int_equal(peek(b, n, &p, why), TLSPEEK_OK);
	assert_string_equal(p.sni, "");
	assert_int_equal(p.alpn_len, 0);
	assert_false(tlspeek_offers(&p, "http/1.1"));
}

/* the same hello cut into records of at most step bytes of handshake each */
static size_t split(const uint8_t *in, size_t n, size_t step, uint8_t *out)
{
	size_t o = 0;

	for (size_t i = 5; i < n; i += step) {
		size_t k = n - i < step ? n - i : step;

		out[o++] = 22;
		out[o++] = 3;
		out[o++] = 1;
		out[o++] = (uint8_t)(k >> 8);
		out[o++] = (uint8_t)k;
		memcpy(out + o, in + i, k);
		o += k;
	}
	return o;
}

static void test_hello_over_records(void **state)
{
	static const char *const alpn[] = {"h2", "http/1.1", NULL};
	uint8_t b[4096], s[8192];
	size_t n = make_hello("a.b", alpn, b, sizeof(b));
	struct tlspeek p;
	char why[160];

	(void)state;
	for (size_t step = 1; step < 64; step += 7) {
		size_t m = split(b, n, step, s);

		assert_int_equal(peek(s, m, &p, why), TLSPEEK_OK);
		assert_string_equal(p.sni, "a.b");
		assert_true(tlspeek_offers(&p, "h2"));
		assert_int_equal(peek(s, m - 1, &p, why), TLSPEEK_MORE);
	}
}

static void test_not_tls(void **state)
{
	struct tlspeek p;
	char why[160];

	(void)state;
	assert_int_equal(peek((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &p, why), TLSPEEK_NOT_TLS);
	assert_int_equal(peek((const uint8_t *)"G", 1, &p, why), TLSPEEK_NOT_TLS);
	assert_int_equal(peek((const uint8_t *)"\x16\x02", 2, &p, why), TLSPEEK_NOT_TLS);
	assert_int_equal(peek((const uint8_t *)"\x16", 1, &p, why), TLSPEEK_MORE);
	assert_int_equal(peek((const uint8_t *)"", 0, &p, why), TLSPEEK_MORE);
	/* an alert record, not a handshake */
	assert_int_equal(peek((const uint8_t *)"\x15\x03\x03\x00\x02\x02\x28", 7, &p, why),
			 TLSPEEK_NOT_TLS);
}

/* offset of the extension of type t in a one-record hello b, or 0 */
static size_t find_ext(const uint8_t *b, size_t n, unsigned t)
{
	size_t i = 5 + 4 + 2 + 32;

	i += 1 + b[i];				 /* session id */
	i += 2 + ((size_t)b[i] << 8 | b[i + 1]); /* cipher suites */
	i += 1 + b[i];				 /* compression */
	i += 2;					 /* extensions length */
	while (i + 4 <= n) {
		unsigned type = (unsigned)b[i] << 8 | b[i + 1];
		size_t len = (size_t)b[i + 2] << 8 | b[i + 3];

		if (type == t)
			return i;
		i += 4 + len;
	}
	return 0;
}

static void expect_bad(const uint8_t *b, size_t n, const char *reason)
{
	struct tlspeek p;
	char why[160];

	assert_int_equal(peek(b, n, &p, why), TLSPEEK_BAD);
	if (!strstr(why, reason))
		fail_msg("why: '%s', expected '%s'", why, reason);
}

static void test_malformed(void **state)
{
	static const char *const alpn[] = {"http/1.1", NULL};
	uint8_t b[4096], c[4096];
	size_t n = make_hello("host.example", alpn, b, sizeof(b)), at;

	(void)state;
	/* a bad host name: a space in it */
	memcpy(c, b, n);
	at = find_ext(c, n, 0);
	assert_true(at > 0);
	c[at + 4 + 2 + 1 + 2 + 4] = ' '; /* "host example" */
	expect_bad(c, n, "not a DNS name");
	/* a trailing dot */
	memcpy(c, b, n);
	c[at + 4 + 2 + 1 + 2 + 11] = '.';
	expect_bad(c, n, "not a DNS name");
	/* an empty ALPN protocol */
	memcpy(c, b, n);
	at = find_ext(c, n, 16);
	assert_true(at > 0);
	c[at + 4 + 2] = 0;
	expect_bad(c, n, "ALPN");
	/* a duplicate extension: ALPN retyped as server_name */
	memcpy(c, b, n);
	c[at] = 0;
	c[at + 1] = 0;
	expect_bad(c, n, "twice");
	/* a handshake that is not a ClientHello */
	memcpy(c, b, n);
	c[5] = 2;
	expect_bad(c, n, "not a ClientHello");
	/* a record longer than TLS allows */
	memcpy(c, b, n);
	c[3] = 0x48;
	c[4] = 0x01;
	expect_bad(c, n, "handshake record");
	/* a hello length that overruns its record chain */
	memcpy(c, b, n);
	c[6] = 0x01; /* 64 KiB more */
	expect_bad(c, n, "longer than");
	/* a cipher suite list of odd length */
	memcpy(c, b, n);
	at = 5 + 4 + 2 + 32;
	at += 1 + c[at];
	c[at + 1] |= 1;
	expect_bad(c, n, "");
}

static void test_truncated_body(void **state)
{
	static const char *const alpn[] = {"http/1.1", NULL};
	uint8_t b[4096], c[4096];
	size_t n = make_hello("x.y", alpn, b, sizeof(b));
	size_t body = n - 5;
	struct tlspeek p;
	char why[160];

	(void)state;
	/* a hello that claims fewer bytes than its fields need: refused, never read past */
	for (size_t cut = 4; cut < body; cut += 13) {
		memcpy(c, b, n);
		c[3] = (uint8_t)(cut >> 8);
		c[4] = (uint8_t)cut;
		c[6] = 0;
		c[7] = (uint8_t)((cut - 4) >> 8);
		c[8] = (uint8_t)(cut - 4);
		assert_int_not_equal(peek(c, 5 + cut, &p, why), TLSPEEK_MORE);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_real_hello),	       cmocka_unit_test(test_no_sni_no_alpn),
	    cmocka_unit_test(test_hello_over_records), cmocka_unit_test(test_not_tls),
	    cmocka_unit_test(test_malformed),	       cmocka_unit_test(test_truncated_body),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/socks5.c, the client's SOCKS5 proxy messages: the
 * RFC 1928 greeting and CONNECT request (IPv4, name, IPv6) and the RFC 1929
 * authentication as real clients send them, whole, byte by byte (more, never
 * a verdict too early) and followed by the next message; each refusal with
 * its answer code; the method choice; the answers byte for byte; the OPENED
 * status mapping; the destination name check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "socks5.h"

typedef enum socks5_result (*parse_fn)(const uint8_t *, size_t, size_t *, void *,
				       struct socks5_err *);

static enum socks5_result greeting(const uint8_t *b, size_t n, size_t *used, void *out,
				   struct socks5_err *err)
{
	return socks5_parse_greeting(b, n, used, out, err);
}

static enum socks5_result auth(const uint8_t *b, size_t n, size_t *used, void *out,
			       struct socks5_err *err)
{
	return socks5_parse_auth(b, n, used, out, err);
}

static enum socks5_result request(const uint8_t *b, size_t n, size_t *used, void *out,
				  struct socks5_err *err)
{
	return socks5_parse_request(b, n, used, out, err);
}

/*
 * A complete message of n bytes: every prefix asks for more, the whole is
 * DONE with *used = n, and a following message's bytes change nothing.
 */
static void expect_done(parse_fn f, const uint8_t *b, size_t n, void *out)
{
	uint8_t more[1024];
	struct socks5_err err = {0, NULL};
	size_t used;

	assert_true(n + 3 <= sizeof(more));
	for (size_t i = 0; i < n; i++) {
		used = 12345;
		assert_int_equal(f(b, i, &used, out, &err), SOCKS5_NEED);
		assert_int_equal(used, 12345);
	}
	memcpy(more, b, n);
	memcpy(more + n, "\x05\x01\x00", 3);
	used = 0;
	assert_int_equal(f(more, n + 3, &used, out, &err), SOCKS5_DONE);
	assert_int_equal(used, n);
	used = 0;
	assert_int_equal(f(b, n, &used, out, &err), SOCKS5_DONE);
	assert_int_equal(used, n);
}

/*
 * A refused message: the whole gives ERROR with the code and a reason; each
 * prefix gives NEED or the same ERROR, and once ERROR, ERROR for all longer.
 */
static void expect_error(parse_fn f, const uint8_t *b, size_t n, int code)
{
	uint8_t out[1024];
	struct socks5_err err = {99, NULL};
	size_t used = 0;
	bool seen = false;

	for (size_t i = 0; i <= n; i++) {
		enum socks5_result r = f(b, i, &used, out, &err);

		if (seen || i == n)
			assert_int_equal(r, SOCKS5_ERROR);
		if (r == SOCKS5_ERROR) {
			seen = true;
			assert_int_equal(err.code, code);
			assert_non_null(err.why);
			assert_null(strchr(err.why, '\n'));
			assert_true(strlen(err.why) > 0);
		} else {
			assert_int_equal(r, SOCKS5_NEED);
		}
	}
}

#define B(s) (const uint8_t *)(s), sizeof(s) - 1

static void test_greeting(void **state)
{
	struct socks5_greeting g;

	(void)state;
	/* RFC 1928: VER 5, NMETHODS 1, NO AUTHENTICATION REQUIRED */
	expect_done(greeting, B("\x05\x01\x00"), &g);
	assert_int_equal(g.nmethods, 1);
	assert_true(g.none);
	assert_false(g.userpass);
	assert_int_equal(socks5_choose_method(&g, false), SOCKS5_METHOD_NONE);
	assert_int_equal(socks5_choose_method(&g, true), SOCKS5_METHOD_REFUSED);
	/* curl with a user: NONE and USERNAME/PASSWORD */
	expect_done(greeting, B("\x05\x02\x00\x02"), &g);
	assert_true(g.none && g.userpass);
	assert_int_equal(socks5_choose_method(&g, false), SOCKS5_METHOD_NONE);
	assert_int_equal(socks5_choose_method(&g, true), SOCKS5_METHOD_USERPASS);
	/* only USERNAME/PASSWORD: a listener without auth takes NONE only */
	expect_done(greeting, B("\x05\x01\x02"), &g);
	assert_int_equal(socks5_choose_method(&g, false), SOCKS5_METHOD_REFUSED);
	assert_int_equal(socks5_choose_method(&g, true), SOCKS5_METHOD_USERPASS);
	/* GSSAPI and private methods only: nothing acceptable, but well formed */
	expect_done(greeting, B("\x05\x03\x01\x80\xfe"), &g);
	assert_false(g.none || g.userpass);
	assert_int_equal(socks5_choose_method(&g, false), SOCKS5_METHOD_REFUSED);
	/* all 255 methods */
	{
		uint8_t b[2 + 255];

		b[0] = 5;
		b[1] = 255;
		for (unsigned i = 0; i < 255; i++)
			b[2 + i] = (uint8_t)(254 - i); /* 254 down to 0 */
		expect_done(greeting, b, sizeof(b), &g);
		assert_int_equal(g.nmethods, 255);
		assert_true(g.none && g.userpass);
	}
}

static void test_greeting_errors(void **state)
{
	(void)state;
	/* SOCKS4 CONNECT: not ours, no answer */
	expect_error(greeting, B("\x04\x01\x00\x50\x7f\x00\x00\x01\x00"), -1);
	/* an HTTP request sent to the proxy port */
	expect_error(greeting, B("GET / HTTP/1.1\r\n"), -1);
	/* a TLS ClientHello */
	expect_error(greeting, B("\x16\x03\x01\x00\x05"), -1);
	/* no method offered: the method choice 0xff */
	expect_error(greeting, B("\x05\x00"), SOCKS5_METHOD_REFUSED);
}

static void test_auth(void **state)
{
	struct socks5_auth a;
	uint8_t b[SOCKS5_AUTH_MAX];

	(void)state;
	/* RFC 1929: VER 1, ULEN, UNAME, PLEN, PASSWD */
	expect_done(auth,
		    B("\x01\x05"
		      "alice\x0bs3cret pass"),
		    &a);
	assert_string_equal(a.user, "alice");
	assert_int_equal(a.user_len, 5);
	assert_string_equal(a.pass, "s3cret pass");
	assert_int_equal(a.pass_len, 11);
	/* one byte each */
	expect_done(auth, B("\x01\x01u\x01p"), &a);
	assert_string_equal(a.user, "u");
	assert_string_equal(a.pass, "p");
	/* 255 and 255: every printable character */
	b[0] = 1;
	b[1] = 255;
	for (unsigned i = 0; i < 255; i++)
		b[2 + i] = (uint8_t)(0x21 + i % (0x7f - 0x21));
	b[257] = 255;
	for (unsigned i = 0; i < 255; i++)
		b[258 + i] = (uint8_t)(0x20 + i % (0x7f - 0x20));
	expect_done(auth, b, sizeof(b), &a);
	assert_int_equal(a.user_len, 255);
	assert_int_equal(a.pass_len, 255);
	assert_int_equal(strlen(a.user), 255);
	assert_int_equal(strlen(a.pass), 255);
	assert_memory_equal(a.pass, b + 258, 255);
}

static void test_auth_errors(void **state)
{
	(void)state;
	/* the SOCKS version where the subnegotiation's is expected */
	expect_error(auth, B("\x05\x01\x00"), SOCKS5_AUTH_FAILED);
	/* empty user, empty password */
	expect_error(auth, B("\x01\x00\x01p"), SOCKS5_AUTH_FAILED);
	expect_error(auth, B("\x01\x01u\x00"), SOCKS5_AUTH_FAILED);
	/* a space, DEL, a control byte, a NUL, UTF-8 in the user name */
	expect_error(auth,
		     B("\x01\x03"
		       "a b\x01p"),
		     SOCKS5_AUTH_FAILED);
	expect_error(auth,
		     B("\x01\x03"
		       "ab\x7f\x01p"),
		     SOCKS5_AUTH_FAILED);
	expect_error(auth,
		     B("\x01\x03"
		       "a\nb\x01p"),
		     SOCKS5_AUTH_FAILED);
	expect_error(auth,
		     B("\x01\x03"
		       "a\x00"
		       "b\x01p"),
		     SOCKS5_AUTH_FAILED);
	expect_error(auth, B("\x01\x02\xc3\xa9\x01p"), SOCKS5_AUTH_FAILED);
	/* a line break, a NUL, a high byte in the password */
	expect_error(auth, B("\x01\x01u\x03p\rq"), SOCKS5_AUTH_FAILED);
	expect_error(auth, B("\x01\x01u\x03p\x00q"), SOCKS5_AUTH_FAILED);
	expect_error(auth, B("\x01\x01u\x03p\xffq"), SOCKS5_AUTH_FAILED);
	/* the bad byte is seen before the rest arrives */
	{
		struct socks5_auth a;
		struct socks5_err err;
		size_t used;

		assert_int_equal(socks5_parse_auth(B("\x01\x09us\x01"), &used, &a, &err),
				 SOCKS5_ERROR);
		assert_int_equal(socks5_parse_auth(B("\x01\x01u\x09p\x01"), &used, &a, &err),
				 SOCKS5_ERROR);
	}
}

static void test_request(void **state)
{
	struct socks5_request r;
	static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};

	(void)state;
	/* RFC 1928: CONNECT 127.0.0.1:80 */
	expect_done(request, B("\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"), &r);
	assert_int_equal(r.cmd, SOCKS5_CMD_CONNECT);
	assert_int_equal(r.atyp, SOCKS5_ATYP_IPV4);
	assert_string_equal(r.host, "127.0.0.1");
	assert_int_equal(r.host_len, 9);
	assert_int_equal(r.port, 80);
	assert_memory_equal(r.addr, "\x7f\x00\x00\x01", 4);
	/* CONNECT example.com:443 by name (curl --socks5-hostname) */
	expect_done(request,
		    B("\x05\x01\x00\x03\x0b"
		      "example.com\x01\xbb"),
		    &r);
	assert_int_equal(r.atyp, SOCKS5_ATYP_DOMAIN);
	assert_string_equal(r.host, "example.com");
	assert_int_equal(r.port, 443);
	/* the name's case is kept: the edge lowercases */
	expect_done(request,
		    B("\x05\x01\x00\x03\x0b"
		      "Example.COM\xff\xff"),
		    &r);
	assert_string_equal(r.host, "Example.COM");
	assert_int_equal(r.port, 65535);
	/* a tunnel id (not a DNS name: '_') and port 22123 */
	expect_done(request, B("\x05\x01\x00\x03\x07redis_b\x56\x6b"), &r);
	assert_string_equal(r.host, "redis_b");
	assert_int_equal(r.port, 22123);
	/* an IP literal sent as a name */
	expect_done(request, B("\x05\x01\x00\x03\x03::1\x00\x16"), &r);
	assert_string_equal(r.host, "::1");
	/* CONNECT [2001:db8::1]:6379 */
	{
		uint8_t b[4 + 16 + 2] = {5, 1, 0, 4};

		memcpy(b + 4, v6, 16);
		b[20] = 0x18;
		b[21] = 0xeb;
		expect_done(request, b, sizeof(b), &r);
		assert_int_equal(r.atyp, SOCKS5_ATYP_IPV6);
		assert_string_equal(r.host, "2001:db8::1");
		assert_int_equal(r.port, 6379);
		assert_memory_equal(r.addr, v6, 16);
	}
	/* the longest name: 253 characters of labels */
	{
		uint8_t b[SOCKS5_REQUEST_MAX] = {5, 1, 0, 3, 253};

		memset(b + 5, 'a', 253);
		for (unsigned i = 63; i < 253; i += 64)
			b[5 + i] = '.';
		b[5 + 253] = 0;
		b[5 + 254] = 1;
		expect_done(request, b, 5 + 253 + 2, &r);
		assert_int_equal(r.host_len, 253);
		assert_int_equal(strlen(r.host), 253);
		assert_int_equal(r.port, 1);
	}
}

static void test_request_errors(void **state)
{
	uint8_t b[SOCKS5_REQUEST_MAX];
	struct socks5_request r;
	struct socks5_err err;
	size_t used = 0;

	(void)state;
	/* not SOCKS5 */
	expect_error(request, B("\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50"), -1);
	/* an unknown address type: its length is unknown, refused at once */
	expect_error(request, B("\x05\x01\x00\x02"), SOCKS5_REP_ATYP_UNSUPPORTED);
	expect_error(request, B("\x05\x01\x00\x00"), SOCKS5_REP_ATYP_UNSUPPORTED);
	/* an empty name */
	expect_error(request, B("\x05\x01\x00\x03\x00\x00\x50"), SOCKS5_REP_ATYP_UNSUPPORTED);
	/* BIND, an unknown command: the whole request taken, then 0x07 */
	assert_int_equal(
	    socks5_parse_request(B("\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50"), &used, &r, &err),
	    SOCKS5_ERROR);
	assert_int_equal(err.code, SOCKS5_REP_CMD_UNSUPPORTED);
	assert_int_equal(used, 10);
	assert_non_null(strstr(err.why, "BIND"));
	/* UDP ASSOCIATE: taken, port 0 too (the client's address not known yet) */
	assert_int_equal(
	    socks5_parse_request(B("\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00"), &used, &r, &err),
	    SOCKS5_DONE);
	assert_int_equal(r.cmd, SOCKS5_CMD_UDP_ASSOCIATE);
	assert_int_equal(r.port, 0);
	assert_string_equal(r.host, "0.0.0.0");
	/* a UDP datagram's header: RSV, FRAG, ATYP, DST.ADDR, DST.PORT, data */
	assert_int_equal(
	    socks5_parse_udp(B("\x00\x00\x00\x01\x7f\x00\x00\x01\x00\x35hello"), &used, &r, &err),
	    SOCKS5_DONE);
	assert_int_equal(used, 10);
	assert_int_equal(r.port, 53);
	assert_string_equal(r.host, "127.0.0.1");
	assert_int_equal(socks5_parse_udp(B("\x00\x00\x00\x03\x04"
					    "dns1\x00\x35"),
					  &used, &r, &err),
			 SOCKS5_DONE);
	assert_string_equal(r.host, "dns1");
	/* a fragment, RSV not 0, short, port 0, an unknown ATYP, a bad name: dropped */
	assert_int_equal(
	    socks5_parse_udp(B("\x00\x00\x01\x01\x7f\x00\x00\x01\x00\x35x"), &used, &r, &err),
	    SOCKS5_ERROR);
	assert_non_null(strstr(err.why, "FRAG"));
	assert_int_equal(err.code, -1);
	assert_int_equal(
	    socks5_parse_udp(B("\x00\x01\x00\x01\x7f\x00\x00\x01\x00\x35x"), &used, &r, &err),
	    SOCKS5_ERROR);
	assert_int_equal(socks5_parse_udp(B("\x00\x00\x00\x01\x7f\x00"), &used, &r, &err),
			 SOCKS5_ERROR);
	assert_int_equal(
	    socks5_parse_udp(B("\x00\x00\x00\x01\x7f\x00\x00\x01\x00\x00x"), &used, &r, &err),
	    SOCKS5_ERROR);
	assert_int_equal(socks5_parse_udp(B("\x00\x00\x00\x07\x7f\x00\x00\x01"), &used, &r, &err),
			 SOCKS5_ERROR);
	assert_int_equal(socks5_parse_udp(B("\x00\x00\x00\x03\x03"
					    "a b\x00\x35"),
					  &used, &r, &err),
			 SOCKS5_ERROR);
	expect_error(request, B("\x05\x09\x00\x03\x01x\x00\x50"), SOCKS5_REP_CMD_UNSUPPORTED);
	expect_error(request, B("\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50"),
		     SOCKS5_REP_CMD_UNSUPPORTED);
	/* the reserved byte */
	expect_error(request, B("\x05\x01\x01\x01\x7f\x00\x00\x01\x00\x50"), SOCKS5_REP_FAILURE);
	/* port 0 */
	expect_error(request, B("\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x00"), SOCKS5_REP_FAILURE);
	expect_error(request, B("\x05\x01\x00\x03\x01x\x00\x00"), SOCKS5_REP_FAILURE);
	/* names that are no DNS name, address or tunnel id */
	expect_error(request, B("\x05\x01\x00\x03\x05[::1]\x00\x50"), SOCKS5_REP_ATYP_UNSUPPORTED);
	expect_error(request, B("\x05\x01\x00\x03\x05\x61\x00\x62\x63\x64\x00\x50"),
		     SOCKS5_REP_ATYP_UNSUPPORTED);
	expect_error(request,
		     B("\x05\x01\x00\x03\x05"
		       "a/b/c\x00\x50"),
		     SOCKS5_REP_ATYP_UNSUPPORTED);
	expect_error(request,
		     B("\x05\x01\x00\x03\x05"
		       "a b.c\x00\x50"),
		     SOCKS5_REP_ATYP_UNSUPPORTED);
	expect_error(request, B("\x05\x01\x00\x03\x05h\xc3\xa9.x\x00\x50"),
		     SOCKS5_REP_ATYP_UNSUPPORTED);
	expect_error(request,
		     B("\x05\x01\x00\x03\x0c"
		       "fe80::1%eth0\x00\x50"),
		     SOCKS5_REP_ATYP_UNSUPPORTED);
	/* 254 and 255 characters: too long for a DNS name and for an id */
	for (unsigned n = 254; n <= 255; n++) {
		memcpy(b, "\x05\x01\x00\x03", 4);
		b[4] = (uint8_t)n;
		memset(b + 5, 'a', n);
		for (unsigned i = 63; i < n; i += 64)
			b[5 + i] = '.';
		b[5 + n] = 0;
		b[6 + n] = 80;
		expect_error(request, b, 7 + n, SOCKS5_REP_ATYP_UNSUPPORTED);
	}
}

/* a client that sends everything at once: each message where the last ended */
static void test_pipelined(void **state)
{
	static const uint8_t all[] = "\x05\x02\x00\x02"
				     "\x01\x03"
				     "bob\x03pw!"
				     "\x05\x01\x00\x03\x05redis\x18\xeb";
	struct socks5_greeting g;
	struct socks5_auth a;
	struct socks5_request r;
	struct socks5_err err;
	size_t used, off = 0, n = sizeof(all) - 1;

	(void)state;
	assert_int_equal(socks5_parse_greeting(all, n, &used, &g, &err), SOCKS5_DONE);
	off += used;
	assert_int_equal(socks5_parse_auth(all + off, n - off, &used, &a, &err), SOCKS5_DONE);
	assert_string_equal(a.user, "bob");
	assert_string_equal(a.pass, "pw!");
	off += used;
	assert_int_equal(socks5_parse_request(all + off, n - off, &used, &r, &err), SOCKS5_DONE);
	off += used;
	assert_int_equal(off, n);
	assert_string_equal(r.host, "redis");
	assert_int_equal(r.port, 6379);
}

static void test_answers(void **state)
{
	uint8_t b[16];

	(void)state;
	memset(b, 0xaa, sizeof(b));
	assert_int_equal(socks5_method_reply(b, SOCKS5_METHOD_NONE), 2);
	assert_memory_equal(b, "\x05\x00\xaa", 3);
	assert_int_equal(socks5_method_reply(b, SOCKS5_METHOD_REFUSED), 2);
	assert_memory_equal(b, "\x05\xff", 2);
	assert_int_equal(socks5_auth_reply(b, SOCKS5_AUTH_OK), 2);
	assert_memory_equal(b, "\x01\x00\xaa", 3);
	assert_int_equal(socks5_auth_reply(b, SOCKS5_AUTH_FAILED), 2);
	assert_memory_equal(b, "\x01\x01", 2);
	assert_int_equal(socks5_reply(b, SOCKS5_REP_OK), 10);
	assert_memory_equal(b, "\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00\xaa", 11);
	assert_int_equal(socks5_reply(b, SOCKS5_REP_NOT_ALLOWED), 10);
	assert_memory_equal(b, "\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00", 10);
}

static void test_rep_from_open(void **state)
{
	/* link_proto.h's OPENED statuses 0..9, and beyond */
	static const uint8_t want[] = {0x00, 0x02, 0x04, 0x04, 0x02, 0x04,
				       0x05, 0x04, 0x01, 0x08, 0x01, 0x01};

	(void)state;
	for (unsigned s = 0; s < sizeof(want); s++)
		assert_int_equal(socks5_rep_from_open(s), want[s]);
	assert_int_equal(socks5_rep_from_open(255), SOCKS5_REP_FAILURE);
	assert_int_equal(socks5_rep_from_open(~0u), SOCKS5_REP_FAILURE);
}

static bool host(const char *s)
{
	return socks5_host_check(s, strlen(s));
}

static void test_host_check(void **state)
{
	char id[80];

	(void)state;
	/* DNS names, any case */
	assert_true(host("localhost"));
	assert_true(host("db.example.com"));
	assert_true(host("DB.Example.COM"));
	assert_true(host("xn--bcher-kva.example"));
	/* IP literals */
	assert_true(host("127.0.0.1"));
	assert_true(host("::1"));
	assert_true(host("2001:db8::1"));
	assert_true(host("::ffff:10.0.0.1"));
	/* tunnel and group ids */
	assert_true(host("redis_b"));
	assert_true(host("-office"));
	assert_true(host("a..b"));
	memset(id, '_', 63);
	id[63] = '\0';
	assert_true(host(id));
	id[63] = '_';
	id[64] = '\0';
	assert_false(host(id)); /* 64: too long for an id, and no DNS name */
	/* the rest */
	assert_false(host(""));
	assert_false(host("[::1]"));
	assert_false(host("fe80::1%eth0"));
	assert_false(host("a b"));
	assert_false(host("a/b"));
	assert_false(host("a:b"));
	assert_false(host("host:80"));
	assert_false(host("caf\xc3\xa9"));
	assert_false(host("a\tb"));
	assert_false(host("*.example.com"));
	assert_false(socks5_host_check("ab\0"
				       "cd",
				       5));
	assert_false(socks5_host_check("abc", 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_greeting),	  cmocka_unit_test(test_greeting_errors),
	    cmocka_unit_test(test_auth),	  cmocka_unit_test(test_auth_errors),
	    cmocka_unit_test(test_request),	  cmocka_unit_test(test_request_errors),
	    cmocka_unit_test(test_pipelined),	  cmocka_unit_test(test_answers),
	    cmocka_unit_test(test_rep_from_open), cmocka_unit_test(test_host_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

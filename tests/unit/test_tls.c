// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for tls/: the self-signed pair made on first run, fingerprint
 * formatting and parsing, and real TLS 1.3 handshakes between the server and
 * client contexts over an in-memory BIO pair (pinning, CA file + host names,
 * ALPN enforcement, the post-quantum group), then 1 MiB of data each way.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls/tls.h"
#include "util.h"

#define DOMAIN "relay.test"

struct pki {
	char dir[64];
	char cert[128];
	char key[128];
	char fpr[TLS_FPR_LEN];
};

static struct pki g_pki;

static void rm_rf(const char *dir)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", dir);
}

static int setup_pki(void **state)
{
	char err[256];

	snprintf(g_pki.dir, sizeof(g_pki.dir), "/tmp/nave-tls-XXXXXX");
	if (!mkdtemp(g_pki.dir))
		return -1;
	/* a subdirectory that does not exist yet: tls_ensure_selfsigned makes it */
	snprintf(g_pki.cert, sizeof(g_pki.cert), "%s/pki/server.crt", g_pki.dir);
	snprintf(g_pki.key, sizeof(g_pki.key), "%s/pki/server.key", g_pki.dir);
	if (tls_ensure_selfsigned(g_pki.cert, g_pki.key, DOMAIN, err, sizeof(err)) != 0) {
		fprintf(stderr, "selfsigned: %s\n", err);
		return -1;
	}
	if (tls_cert_fingerprint_file(g_pki.cert, g_pki.fpr) != 0)
		return -1;
	return 0;
}

static int teardown_pki(void **state)
{
	rm_rf(g_pki.dir);
	return 0;
}

/* ---- self-signed generation ---- */

static void test_selfsigned_files(void **state)
{
	char dir[160], err[256], fpr2[TLS_FPR_LEN];
	struct stat st;

	assert_int_equal(stat(g_pki.cert, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_true(st.st_size > 0);
	assert_int_equal(stat(g_pki.key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(dir, sizeof(dir), "%s/pki", g_pki.dir);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	/* second call keeps the existing pair */
	assert_int_equal(tls_ensure_selfsigned(g_pki.cert, g_pki.key, DOMAIN, err, sizeof(err)), 0);
	assert_int_equal(tls_cert_fingerprint_file(g_pki.cert, fpr2), 0);
	assert_string_equal(g_pki.fpr, fpr2);
}

static void test_selfsigned_half_pair(void **state)
{
	char dir[128], cert[160], key[160], err[256];
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/half", g_pki.dir);
	snprintf(cert, sizeof(cert), "%s/server.crt", dir);
	snprintf(key, sizeof(key), "%s/server.key", dir);
	assert_int_equal(mkdir_p(dir, 0700), 0);
	f = fopen(cert, "w");
	assert_non_null(f);
	fputs("not a cert\n", f);
	fclose(f);
	err[0] = 0;
	assert_int_equal(tls_ensure_selfsigned(cert, key, DOMAIN, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, key));
	assert_int_equal(access(key, F_OK), -1);
}

static void test_fingerprint_format(void **state)
{
	const char *p = g_pki.fpr;

	assert_int_equal(strlen(p), 95);
	for (size_t i = 0; i < 95; i++) {
		if (i % 3 == 2)
			assert_int_equal(p[i], ':');
		else
			assert_true((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'F'));
	}
	assert_int_equal(tls_cert_fingerprint_file("/nonexistent/x.crt", (char[TLS_FPR_LEN]){0}),
			 -ENOENT);
}

/* ---- fingerprint parsing ---- */

static void test_fingerprint_parse(void **state)
{
	unsigned char a[32], b[32], c[32];
	char plain[65], lower[96];
	size_t n = 0;

	for (const char *p = g_pki.fpr; *p; p++)
		if (*p != ':')
			plain[n++] = *p;
	plain[n] = 0;
	assert_int_equal(n, 64);
	for (size_t i = 0; i <= strlen(g_pki.fpr); i++)
		lower[i] = (char)((g_pki.fpr[i] >= 'A' && g_pki.fpr[i] <= 'F') ? g_pki.fpr[i] + 32
									       : g_pki.fpr[i]);

	assert_int_equal(tls_fingerprint_parse(g_pki.fpr, a), 0);
	assert_int_equal(tls_fingerprint_parse(plain, b), 0);
	assert_int_equal(tls_fingerprint_parse(lower, c), 0);
	assert_memory_equal(a, b, 32);
	assert_memory_equal(a, c, 32);

	/* wrong lengths */
	plain[62] = 0;
	assert_int_equal(tls_fingerprint_parse(plain, b), -EINVAL);
	assert_int_equal(tls_fingerprint_parse("", b), -EINVAL);
	assert_int_equal(tls_fingerprint_parse(NULL, b), -EINVAL);
	{
		char longer[100];

		snprintf(longer, sizeof(longer), "%s:00", g_pki.fpr);
		assert_int_equal(tls_fingerprint_parse(longer, b), -EINVAL);
	}
	/* bad characters */
	lower[4] = 'g';
	assert_int_equal(tls_fingerprint_parse(lower, b), -EINVAL);
	lower[4] = ' ';
	assert_int_equal(tls_fingerprint_parse(lower, b), -EINVAL);
}

/* ---- handshakes over a BIO pair ---- */

struct conn {
	SSL *c, *s;
	int c_err, s_err; /* SSL_get_error of the failing side, 0 if none */
};

static void conn_open(struct conn *k, SSL_CTX *sctx, SSL_CTX *cctx, const char *host)
{
	BIO *bc = NULL, *bs = NULL;

	memset(k, 0, sizeof(*k));
	k->s = SSL_new(sctx);
	k->c = SSL_new(cctx);
	assert_non_null(k->s);
	assert_non_null(k->c);
	assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(k->c, bc, bc);
	SSL_set_bio(k->s, bs, bs);
	SSL_set_connect_state(k->c);
	SSL_set_accept_state(k->s);
	if (host)
		assert_int_equal(tls_client_set_host(k->c, host), 0);
}

static void conn_close(struct conn *k)
{
	SSL_free(k->c);
	SSL_free(k->s);
	ERR_clear_error();
}

/* Steps both ends until both finish or one fails; 0 when both completed. */
static int conn_handshake(struct conn *k)
{
	bool c_done = false, s_done = false;

	for (int i = 0; i < 100 && !(c_done && s_done); i++) {
		if (!c_done) {
			int r = SSL_do_handshake(k->c);

			if (r == 1) {
				c_done = true;
			} else {
				int e = SSL_get_error(k->c, r);

				if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
					k->c_err = e;
					return -1;
				}
			}
		}
		if (!s_done) {
			int r = SSL_do_handshake(k->s);

			if (r == 1) {
				s_done = true;
			} else {
				int e = SSL_get_error(k->s, r);

				if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
					k->s_err = e;
					return -1;
				}
			}
		}
	}
	return c_done && s_done ? 0 : -1;
}

static SSL_CTX *server_ctx(bool pq)
{
	char err[256];
	SSL_CTX *ctx = tls_server_ctx(g_pki.cert, g_pki.key, pq, err, sizeof(err));

	if (!ctx)
		fprintf(stderr, "server ctx: %s\n", err);
	assert_non_null(ctx);
	return ctx;
}

static SSL_CTX *client_ctx(const char *ca, const char *fpr, bool pq)
{
	char err[256];
	SSL_CTX *ctx = tls_client_ctx(ca, fpr, pq, err, sizeof(err));

	if (!ctx)
		fprintf(stderr, "client ctx: %s\n", err);
	assert_non_null(ctx);
	return ctx;
}

/* Runs one handshake; returns 0 on success. */
static int try_handshake(SSL_CTX *sctx, SSL_CTX *cctx, const char *host)
{
	struct conn k;
	int r;

	conn_open(&k, sctx, cctx, host);
	r = conn_handshake(&k);
	conn_close(&k);
	return r;
}

static void test_pinned_ok(void **state)
{
	SSL_CTX *sctx = server_ctx(false), *cctx = client_ctx(NULL, g_pki.fpr, false);
	char peer[TLS_FPR_LEN];
	const uint8_t *alpn;
	unsigned alpn_len;
	struct conn k;

	/* the pin replaces name checks: any host (or none) is fine */
	conn_open(&k, sctx, cctx, "example.com");
	assert_int_equal(conn_handshake(&k), 0);
	assert_int_equal(SSL_version(k.c), TLS1_3_VERSION);
	assert_int_equal(SSL_version(k.s), TLS1_3_VERSION);
	SSL_get0_alpn_selected(k.c, &alpn, &alpn_len);
	assert_int_equal(alpn_len, 6);
	assert_memory_equal(alpn, "nave/1", 6);
	SSL_get0_alpn_selected(k.s, &alpn, &alpn_len);
	assert_int_equal(alpn_len, 6);
	assert_memory_equal(alpn, "nave/1", 6);
	assert_int_equal(tls_peer_fingerprint(k.c, peer), 0);
	assert_string_equal(peer, g_pki.fpr);
	assert_int_equal(SSL_get_curve_id(k.c), SSL_CURVE_X25519);
	/* verification did not fail: no reason */
	assert_null(tls_verify_error(k.c, peer, sizeof(peer)));
	conn_close(&k);

	assert_int_equal(try_handshake(sctx, cctx, NULL), 0);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void test_pinned_wrong(void **state)
{
	SSL_CTX *sctx = server_ctx(false), *cctx;
	char wrong[TLS_FPR_LEN];
	struct conn k;

	str_copy(wrong, sizeof(wrong), g_pki.fpr);
	wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
	cctx = client_ctx(NULL, wrong, false);
	conn_open(&k, sctx, cctx, NULL);
	assert_int_not_equal(conn_handshake(&k), 0);
	assert_int_equal(k.c_err, SSL_ERROR_SSL);
	{
		/* the reason names both fingerprints, in the colon form */
		char buf[256], want[300];
		const char *msg = tls_verify_error(k.c, buf, sizeof(buf));

		snprintf(want, sizeof(want),
			 "TLS: server certificate fingerprint mismatch: expected %s, got %s", wrong,
			 g_pki.fpr);
		assert_non_null(msg);
		assert_ptr_equal(msg, buf);
		assert_string_equal(msg, want);
		assert_true(strlen(msg) < 252);
		assert_int_equal(
		    strncmp(msg, TLS_VERIFY_ERROR_PREFIX, strlen(TLS_VERIFY_ERROR_PREFIX)), 0);
		/* a short buffer is truncated, still NUL-terminated */
		assert_non_null(tls_verify_error(k.c, buf, 10));
		assert_string_equal(buf, "TLS: serv");
	}
	conn_close(&k);
	SSL_CTX_free(cctx);

	/* a pin given without colons and in lower case is shown in the colon form */
	{
		char plain[65], buf[256];
		size_t n = 0;

		for (const char *p = wrong; *p; p++)
			if (*p != ':')
				plain[n++] = (char)(*p >= 'A' && *p <= 'F' ? *p + 32 : *p);
		plain[n] = 0;
		cctx = client_ctx(NULL, plain, false);
		conn_open(&k, sctx, cctx, NULL);
		assert_int_not_equal(conn_handshake(&k), 0);
		assert_non_null(tls_verify_error(k.c, buf, sizeof(buf)));
		assert_non_null(strstr(buf, wrong));
		conn_close(&k);
		SSL_CTX_free(cctx);
	}
	SSL_CTX_free(sctx);

	/* a malformed pin is refused at context creation */
	{
		char err[256] = "";

		assert_null(tls_client_ctx(NULL, "AB:CD", false, err, sizeof(err)));
		assert_true(err[0] != 0);
	}
}

static void test_ca_file(void **state)
{
	SSL_CTX *sctx = server_ctx(false), *cctx = client_ctx(g_pki.cert, NULL, false);

	assert_int_equal(try_handshake(sctx, cctx, "127.0.0.1"), 0);
	assert_int_equal(try_handshake(sctx, cctx, "localhost"), 0);
	assert_int_equal(try_handshake(sctx, cctx, DOMAIN), 0);
	assert_int_equal(try_handshake(sctx, cctx, "::1"), 0);
	assert_int_equal(try_handshake(sctx, cctx, "[::1]"), 0);
	assert_int_not_equal(try_handshake(sctx, cctx, "example.com"), 0);
	{
		struct conn k;

		char buf[256], want[256];

		/* failing for the right reason: the name, not the chain */
		conn_open(&k, sctx, cctx, "example.com");
		assert_int_not_equal(conn_handshake(&k), 0);
		assert_int_equal(SSL_get_verify_result(k.c), X509_V_ERR_HOSTNAME_MISMATCH);
		snprintf(want, sizeof(want), "TLS: server certificate not trusted (%s)",
			 X509_verify_cert_error_string(X509_V_ERR_HOSTNAME_MISMATCH));
		assert_non_null(tls_verify_error(k.c, buf, sizeof(buf)));
		assert_string_equal(buf, want);
		conn_close(&k);

		conn_open(&k, sctx, cctx, "localhost");
		assert_int_equal(conn_handshake(&k), 0);
		assert_null(tls_verify_error(k.c, buf, sizeof(buf)));
		conn_close(&k);
	}
	assert_int_not_equal(try_handshake(sctx, cctx, "10.0.0.1"), 0);
	SSL_CTX_free(cctx);

	/* system CAs do not know the self-signed cert */
	cctx = client_ctx(NULL, NULL, false);
	assert_int_not_equal(try_handshake(sctx, cctx, "localhost"), 0);
	{
		struct conn k;
		char buf[256];

		conn_open(&k, sctx, cctx, "localhost");
		assert_int_not_equal(conn_handshake(&k), 0);
		assert_non_null(tls_verify_error(k.c, buf, sizeof(buf)));
		assert_int_equal(strncmp(buf, "TLS: server certificate not trusted (", 37), 0);
		assert_null(strstr(buf, "application verification"));
		print_message("system CAs: %s\n", buf);
		conn_close(&k);
	}
	SSL_CTX_free(cctx);

	/* a CA file that does not exist */
	{
		char err[256] = "";

		assert_null(tls_client_ctx("/nonexistent/ca.pem", NULL, false, err, sizeof(err)));
		assert_non_null(strstr(err, "/nonexistent/ca.pem"));
	}
	SSL_CTX_free(sctx);
}

static void test_set_host_invalid(void **state)
{
	SSL_CTX *cctx = client_ctx(g_pki.cert, NULL, false);
	SSL *ssl = SSL_new(cctx);

	assert_int_equal(tls_client_set_host(ssl, ""), -EINVAL);
	assert_int_equal(tls_client_set_host(ssl, NULL), -EINVAL);
	assert_int_equal(tls_client_set_host(ssl, "[1.2.3.4]"), -EINVAL);
	assert_int_equal(tls_client_set_host(ssl, "[::1"), -EINVAL);
	SSL_free(ssl);
	SSL_CTX_free(cctx);
}

/* A client built by hand, bypassing tls_client_ctx, with optional ALPN. */
static SSL_CTX *raw_client(const uint8_t *alpn, size_t len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());

	assert_non_null(ctx);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (alpn)
		assert_int_equal(SSL_CTX_set_alpn_protos(ctx, alpn, len), 0);
	return ctx;
}

static void test_alpn_required(void **state)
{
	static const uint8_t h2[] = {2, 'h', '2'};
	static const uint8_t both[] = {2, 'h', '2', 6, 'n', 'a', 'v', 'e', '/', '1'};
	SSL_CTX *sctx = server_ctx(false), *cctx;
	struct conn k;

	cctx = raw_client(NULL, 0);
	conn_open(&k, sctx, cctx, NULL);
	assert_int_not_equal(conn_handshake(&k), 0);
	conn_close(&k);
	SSL_CTX_free(cctx);

	cctx = raw_client(h2, sizeof(h2));
	assert_int_not_equal(try_handshake(sctx, cctx, NULL), 0);
	SSL_CTX_free(cctx);

	/* a handshake refused before any certificate is no verification failure */
	{
		static const uint8_t h2_alpn[] = {2, 'h', '2'};
		SSL_CTX *pinned = client_ctx(NULL, g_pki.fpr, false);
		char buf[256];

		assert_int_equal(SSL_CTX_set_alpn_protos(pinned, h2_alpn, sizeof(h2_alpn)), 0);
		conn_open(&k, sctx, pinned, NULL);
		assert_int_not_equal(conn_handshake(&k), 0);
		assert_null(tls_verify_error(k.c, buf, sizeof(buf)));
		conn_close(&k);
		SSL_CTX_free(pinned);
	}

	cctx = raw_client(both, sizeof(both));
	conn_open(&k, sctx, cctx, NULL);
	assert_int_equal(conn_handshake(&k), 0);
	{
		const uint8_t *p;
		unsigned n;

		SSL_get0_alpn_selected(k.c, &p, &n);
		assert_int_equal(n, 6);
		assert_memory_equal(p, "nave/1", 6);
	}
	conn_close(&k);
	SSL_CTX_free(cctx);

	/* TLS 1.2 is refused */
	cctx = raw_client(both, sizeof(both));
	assert_int_equal(SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION), 1);
	assert_int_not_equal(try_handshake(sctx, cctx, NULL), 0);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void test_pq(void **state)
{
	SSL_CTX *sctx = server_ctx(true), *cctx = client_ctx(NULL, g_pki.fpr, true);
	SSL_CTX *classic = client_ctx(NULL, g_pki.fpr, false);
	struct conn k;

	conn_open(&k, sctx, cctx, NULL);
	assert_int_equal(conn_handshake(&k), 0);
	assert_int_equal(SSL_version(k.c), TLS1_3_VERSION);
	assert_int_equal(SSL_get_curve_id(k.c), SSL_CURVE_CECPQ2);
	assert_int_equal(SSL_get_curve_id(k.s), SSL_CURVE_CECPQ2);
	assert_string_equal(SSL_get_curve_name(SSL_get_curve_id(k.c)), "CECPQ2");
	print_message("pq: group %s, cipher %s\n", SSL_get_curve_name(SSL_get_curve_id(k.c)),
		      SSL_CIPHER_get_name(SSL_get_current_cipher(k.c)));
	conn_close(&k);

	/* a pq server still talks to a classic client, over X25519 */
	conn_open(&k, sctx, classic, NULL);
	assert_int_equal(conn_handshake(&k), 0);
	assert_int_equal(SSL_get_curve_id(k.c), SSL_CURVE_X25519);
	print_message("classic: group %s, cipher %s\n", SSL_get_curve_name(SSL_get_curve_id(k.c)),
		      SSL_CIPHER_get_name(SSL_get_current_cipher(k.c)));
	conn_close(&k);
	SSL_CTX_free(classic);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

/* Moves n bytes from one end to the other through the BIO pair. */
static void pump(SSL *from, SSL *to, const uint8_t *src, uint8_t *dst, size_t n)
{
	size_t wr = 0, rd = 0;
	int idle = 0;

	while (rd < n) {
		bool progress = false;

		if (wr < n) {
			size_t chunk = n - wr > 16384 ? 16384 : n - wr;
			int r = SSL_write(from, src + wr, (int)chunk);

			if (r > 0) {
				wr += (size_t)r;
				progress = true;
			} else {
				assert_int_equal(SSL_get_error(from, r), SSL_ERROR_WANT_WRITE);
			}
		}
		for (;;) {
			int r = SSL_read(to, dst + rd, (int)(n - rd > 65536 ? 65536 : n - rd));

			if (r <= 0) {
				assert_int_equal(SSL_get_error(to, r), SSL_ERROR_WANT_READ);
				break;
			}
			rd += (size_t)r;
			progress = true;
		}
		idle = progress ? 0 : idle + 1;
		assert_true(idle < 3);
	}
	assert_int_equal(wr, n);
}

static void test_data_1mib(void **state)
{
	const size_t n = 1 << 20;
	SSL_CTX *sctx = server_ctx(true), *cctx = client_ctx(g_pki.cert, NULL, true);
	uint8_t *src = malloc(n), *dst = malloc(n);
	struct conn k;

	assert_non_null(src);
	assert_non_null(dst);
	random_bytes(src, n);
	conn_open(&k, sctx, cctx, "localhost");
	assert_int_equal(conn_handshake(&k), 0);

	memset(dst, 0, n);
	pump(k.c, k.s, src, dst, n);
	assert_memory_equal(src, dst, n);

	/* and the other way */
	memset(dst, 0, n);
	pump(k.s, k.c, src, dst, n);
	assert_memory_equal(src, dst, n);

	conn_close(&k);
	free(src);
	free(dst);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void test_server_ctx_errors(void **state)
{
	char err[256] = "";

	assert_null(tls_server_ctx("/nonexistent/s.crt", g_pki.key, false, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/s.crt"));
	err[0] = 0;
	assert_null(tls_server_ctx(g_pki.cert, "/nonexistent/s.key", false, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/s.key"));
}

static void test_last_error(void **state)
{
	char buf[128];

	ERR_clear_error();
	assert_string_equal(tls_last_error(buf, sizeof(buf)), "unknown TLS error");
	assert_null(SSL_CTX_new(NULL));
	tls_last_error(buf, sizeof(buf));
	assert_true(strlen(buf) > 0);
	assert_int_equal(ERR_peek_error(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_selfsigned_files),
	    cmocka_unit_test(test_selfsigned_half_pair),
	    cmocka_unit_test(test_fingerprint_format),
	    cmocka_unit_test(test_fingerprint_parse),
	    cmocka_unit_test(test_pinned_ok),
	    cmocka_unit_test(test_pinned_wrong),
	    cmocka_unit_test(test_ca_file),
	    cmocka_unit_test(test_set_host_invalid),
	    cmocka_unit_test(test_alpn_required),
	    cmocka_unit_test(test_pq),
	    cmocka_unit_test(test_data_1mib),
	    cmocka_unit_test(test_server_ctx_errors),
	    cmocka_unit_test(test_last_error),
	};

	return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}

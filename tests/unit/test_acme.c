// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the ACME pieces that need no CA: base64url (RFC 4648
 * vectors), a JWS whose ES256 signature verifies over what it says it signs
 * and whose protected header carries kid or jwk, the JWK thumbprint (the
 * RFC 7638 member order, 43 characters), a CSR naming its domain, when a
 * certificate is due (renew_before, at most a third of its lifetime), relayd's
 * challenge table (every string checked where it enters, the host matched,
 * entries expire), and the [acme] config values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/mem.h>
#include <openssl/ecdsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/cfg.h"
#include "ctl/acme.h"
#include "ctl/acme_http.h"
#include "ctl/jws.h"
#include "datapath/acme_chal.h"

static void test_b64url(void **state)
{
	static const struct {
		const char *in, *out;
	} v[] = {
	    {"", ""},		{"f", "Zg"},	      {"fo", "Zm8"},	      {"foo", "Zm9v"},
	    {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
	char out[32];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		assert_int_equal(b64url_encode((const uint8_t *)v[i].in, strlen(v[i].in), out),
				 strlen(v[i].out));
		assert_string_equal(out, v[i].out);
	}
}

/* base64url text back to bytes (test side: BoringSSL's decoder on the standard alphabet) */
static size_t unb64(const char *s, uint8_t *out, size_t cap)
{
	char std[2048];
	size_t n = strlen(s), len = 0;

	assert_true(n + 4 < sizeof(std));
	for (size_t i = 0; i < n; i++)
		std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	while (n % 4)
		std[n++] = '=';
	std[n] = '\0';
	assert_int_equal(EVP_DecodeBase64(out, &len, cap, (const uint8_t *)std, n), 1);
	return len;
}

static void test_jws(void **state)
{
	EVP_PKEY *k = jws_key_new();
	char *jwk = jws_jwk(k), thumb[JWS_THUMB_LEN + 1], *body, buf[2048];
	uint8_t raw[2048], d[SHA256_DIGEST_LENGTH];
	json_t *j, *prot;
	size_t n;
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r, *s;

	assert_non_null(k);
	assert_non_null(jwk);
	assert_true(!strncmp(jwk, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"", 31));
	assert_int_equal(jws_thumbprint(k, thumb), 0);
	assert_int_equal(strlen(thumb), JWS_THUMB_LEN);
	/* the thumbprint is SHA-256 of exactly that JWK text */
	SHA256((const uint8_t *)jwk, strlen(jwk), d);
	b64url_encode(d, sizeof(d), buf);
	assert_string_equal(buf, thumb);

	/* with a kid; the payload and the signature verify */
	body = jws_sign(k, "https://ca/acct/1", "nonce_1", "https://ca/new-order", "{\"a\":1}");
	assert_non_null(body);
	j = json_loads(body, 0, NULL);
	assert_non_null(j);
	n = unb64(json_string_value(json_object_get(j, "protected")), raw, sizeof(raw));
	prot = json_loadb((const char *)raw, n, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(prot, "alg")), "ES256");
	assert_string_equal(json_string_value(json_object_get(prot, "kid")), "https://ca/acct/1");
	assert_string_equal(json_string_value(json_object_get(prot, "nonce")), "nonce_1");
	assert_string_equal(json_string_value(json_object_get(prot, "url")),
			    "https://ca/new-order");
	assert_null(json_object_get(prot, "jwk"));
	n = unb64(json_string_value(json_object_get(j, "payload")), raw, sizeof(raw));
	assert_memory_equal(raw, "{\"a\":1}", n);
	snprintf(buf, sizeof(buf), "%s.%s", json_string_value(json_object_get(j, "protected")),
		 json_string_value(json_object_get(j, "payload")));
	SHA256((const uint8_t *)buf, strlen(buf), d);
	assert_int_equal(
	    unb64(json_string_value(json_object_get(j, "signature")), raw, sizeof(raw)), 64);
	r = BN_bin2bn(raw, 32, NULL);
	s = BN_bin2bn(raw + 32, 32, NULL);
	assert_int_equal(ECDSA_SIG_set0(sig, r, s), 1);
	assert_int_equal(ECDSA_do_verify(d, sizeof(d), sig, EVP_PKEY_get0_EC_KEY(k)), 1);
	raw[0] ^= 1; /* another digest fails */
	d[0] ^= 1;
	assert_int_equal(ECDSA_do_verify(d, sizeof(d), sig, EVP_PKEY_get0_EC_KEY(k)), 0);
	ECDSA_SIG_free(sig);
	json_decref(prot);
	json_decref(j);
	free(body);

	/* without a kid the key itself; POST-as-GET has an empty payload */
	body = jws_sign(k, NULL, "n", "https://ca/new-acct", NULL);
	j = json_loads(body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "payload")), "");
	n = unb64(json_string_value(json_object_get(j, "protected")), raw, sizeof(raw));
	prot = json_loadb((const char *)raw, n, 0, NULL);
	assert_null(json_object_get(prot, "kid"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(prot, "jwk"), "crv")),
			    "P-256");
	json_decref(prot);
	json_decref(j);
	free(body);
	/* what cannot be put into JSON as it is, is refused */
	assert_null(jws_sign(k, NULL, "n\"", "https://ca/x", NULL));
	assert_null(jws_sign(k, "k\n", "n", "https://ca/x", NULL));
	free(jwk);
	EVP_PKEY_free(k);
}

static void test_csr(void **state)
{
	EVP_PKEY *k = jws_key_new();
	uint8_t *der = NULL;
	const uint8_t *p;
	size_t n = jws_csr(k, "a.example.com", &der);
	X509_REQ *req;
	STACK_OF(X509_EXTENSION) * exts;
	GENERAL_NAMES *names = NULL;

	assert_true(n > 0);
	p = der;
	req = d2i_X509_REQ(NULL, &p, (long)n);
	assert_non_null(req);
	assert_int_equal(X509_REQ_verify(req, k), 1);
	exts = X509_REQ_get_extensions(req);
	for (size_t i = 0; exts && i < sk_X509_EXTENSION_num(exts); i++) {
		X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);

		if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
			names = X509V3_EXT_d2i(e);
	}
	assert_non_null(names);
	assert_int_equal(sk_GENERAL_NAME_num(names), 1);
	assert_int_equal(sk_GENERAL_NAME_value(names, 0)->type, GEN_DNS);
	assert_memory_equal(ASN1_STRING_get0_data(sk_GENERAL_NAME_value(names, 0)->d.dNSName),
			    "a.example.com", 13);
	GENERAL_NAMES_free(names);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	OPENSSL_free(der);
	EVP_PKEY_free(k);
}

static void test_csr_long_name(void **state)
{
	/* 70 characters: more than a CN holds, so the name is in the subjectAltName only */
	const char *name = "a123456789012345678901234567890.b12345678901234567890123456789.example";
	EVP_PKEY *k = jws_key_new();
	uint8_t *der = NULL;
	const uint8_t *p;
	size_t n = jws_csr(k, name, &der);
	X509_REQ *req;

	assert_true(strlen(name) > 64);
	assert_true(n > 0);
	p = der;
	req = d2i_X509_REQ(NULL, &p, (long)n);
	assert_non_null(req);
	assert_int_equal(X509_NAME_entry_count(X509_REQ_get_subject_name(req)), 0);
	X509_REQ_free(req);
	OPENSSL_free(der);
	EVP_PKEY_free(k);
}

/* a loopback server that sends reply, then drips one byte of drip every 200 ms */
struct srv {
	int lfd, port;
	const char *reply, *drip;
	pthread_t th;
};

static void *srv_main(void *arg)
{
	struct srv *v = arg;
	char buf[4096];
	int fd = accept(v->lfd, NULL, NULL);

	if (fd < 0)
		return NULL;
	if (recv(fd, buf, sizeof(buf), 0) > 0) {
		if (send(fd, v->reply, strlen(v->reply), MSG_NOSIGNAL) < 0)
			goto out;
		for (const char *c = v->drip; c && *c; c++) {
			usleep(200 * 1000);
			if (send(fd, c, 1, MSG_NOSIGNAL) < 0)
				break;
		}
	}
	usleep(300 * 1000);
out:
	close(fd);
	return NULL;
}

static void srv_start(struct srv *v, const char *reply, const char *drip)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);

	v->reply = reply;
	v->drip = drip;
	v->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(v->lfd >= 0);
	assert_int_equal(bind(v->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(v->lfd, 1), 0);
	assert_int_equal(getsockname(v->lfd, (struct sockaddr *)&sa, &sl), 0);
	v->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&v->th, NULL, srv_main, v), 0);
}

static void srv_stop(struct srv *v)
{
	pthread_join(v->th, NULL);
	close(v->lfd);
}

static void test_http_client(void **state)
{
	struct acme_http h;
	struct acme_resp r;
	struct srv v;
	char url[64], err[256];
	uint64_t t0;

	acme_http_init(&h);
	h.timeout_ms = 1000;
	h.total_ms = 1500;

	/* HEAD: a Content-Length without a body after it (RFC 9110), the nonce taken */
	srv_start(&v, "HTTP/1.1 200 OK\r\nContent-Length: 57\r\nReplay-Nonce: abc_DEF-1\r\n\r\n",
		  NULL);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/nonce", v.port);
	t0 = (uint64_t)time(NULL);
	assert_int_equal(
	    acme_http_request(&h, "HEAD", url, NULL, NULL, NULL, NULL, &r, err, sizeof(err)), 0);
	assert_true((uint64_t)time(NULL) - t0 < 1);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.nonce, "abc_DEF-1");
	acme_resp_free(&r);
	srv_stop(&v);

	/* a server that drips: the whole answer has a deadline, not only each read */
	srv_start(&v, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
		  "0123456789012345678901234567890123456789");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/slow", v.port);
	assert_int_equal(
	    acme_http_request(&h, "GET", url, NULL, NULL, NULL, NULL, &r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no whole answer within"));
	srv_stop(&v);

	/* what an ACME server names must be https */
	assert_true(acme_url_https("https://ca.example/acme/order/1"));
	assert_false(acme_url_https("http://169.254.169.254/latest"));
	assert_false(acme_url_https("file:///etc/passwd"));
	assert_false(acme_url_https(NULL));
	acme_http_free(&h);
}

static void test_due(void **state)
{
	const long long day = 86400;

	/* 90 days, 30 before: day 60 */
	assert_int_equal(acme_due(0, 90 * day, 30 * day), 60 * day);
	/* 6 days: a third of it, not 30 days (which would be before it began) */
	assert_int_equal(acme_due(0, 6 * day, 30 * day), 4 * day);
	/* 5 years, 30 days */
	assert_int_equal(acme_due(0, 1826 * day, 30 * day), 1796 * day);
	/* a broken validity is due at its end */
	assert_int_equal(acme_due(10, 5, 30 * day), 5 - 30 * day);
}

static void test_chal(void **state)
{
	const char *why = NULL, *tok = "abcdefghijklmnop_-0123456789";
	char ka[256], out[ACME_KEYAUTH_MAX + 1], longtok[200];

	snprintf(ka, sizeof(ka), "%s.%s", tok, "0123456789012345678901234567890123456789abc");
	assert_int_equal(acme_chal_set("A.Example.com", tok, ka, 1000, &why), 0);
	assert_int_equal(acme_chal_count(1000), 1);
	/* the host the CA asks for, the token exactly, until it expires */
	assert_int_equal(acme_chal_find("a.example.com", tok, strlen(tok), out, 2000), strlen(ka));
	assert_string_equal(out, ka);
	assert_int_equal(acme_chal_find("b.example.com", tok, strlen(tok), out, 2000), 0);
	assert_int_equal(acme_chal_find("a.example.com", tok, strlen(tok) - 1, out, 2000), 0);
	assert_int_equal(
	    acme_chal_find("a.example.com", tok, strlen(tok), out, 1000 + ACME_CHAL_TTL_MS), 0);
	/* refused where they enter */
	assert_int_equal(acme_chal_set("bad domain", tok, ka, 1000, &why), -1);
	assert_int_equal(acme_chal_set("*.example.com", tok, ka, 1000, &why), -1);
	assert_int_equal(acme_chal_set("a.example.com", "short", "short.x", 1000, &why), -1);
	assert_int_equal(acme_chal_set("a.example.com", "abcdefghijklmnop/x", ka, 1000, &why), -1);
	memset(longtok, 'a', sizeof(longtok) - 1);
	longtok[sizeof(longtok) - 1] = '\0';
	assert_int_equal(acme_chal_set("a.example.com", longtok, ka, 1000, &why), -1);
	assert_int_equal(acme_chal_set("a.example.com", tok, "other.key", 1000, &why), -1);
	ka[strlen(ka) - 1] = '!';
	assert_int_equal(acme_chal_set("a.example.com", tok, ka, 1000, &why), -1);
	assert_non_null(why);
	assert_int_equal(acme_chal_set("a.example.com", tok, NULL, 1000, &why), -1);
	/* withdrawn */
	acme_chal_del(tok);
	assert_int_equal(acme_chal_count(1000), 0);
	/* the table is bounded */
	for (int i = 0; i < ACME_CHAL_MAX + 1; i++) {
		char t[40], k[128];

		snprintf(t, sizeof(t), "token%011d_____", i);
		snprintf(k, sizeof(k), "%s.%s", t, "0123456789012345678901234567890123456789abc");
		assert_int_equal(acme_chal_set("a.example.com", t, k, 1000, &why),
				 i < ACME_CHAL_MAX ? 0 : -1);
	}
	assert_int_equal(acme_chal_count(1000), ACME_CHAL_MAX);
	assert_int_equal(acme_chal_count(1000 + ACME_CHAL_TTL_MS), 0);
}

static void test_cfg_values(void **state)
{
	assert_true(cfg_valid_url("https://acme-v02.api.letsencrypt.org/directory"));
	assert_true(cfg_valid_url("https://127.0.0.1:14000/dir"));
	assert_false(cfg_valid_url("http://127.0.0.1:14000/dir"));
	assert_false(cfg_valid_url("https://"));
	assert_false(cfg_valid_url("https:///dir"));
	assert_false(cfg_valid_url("https://a b/"));
	assert_false(cfg_valid_url("https://a/\"x"));
	assert_true(cfg_valid_email("ops+nave@example.com"));
	assert_false(cfg_valid_email("ops@"));
	assert_false(cfg_valid_email("@example.com"));
	assert_false(cfg_valid_email("a@b@example.com"));
	assert_false(cfg_valid_email("o ps@example.com"));
	assert_false(cfg_valid_email("ops@exa mple.com"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_b64url),	cmocka_unit_test(test_jws),
	    cmocka_unit_test(test_csr),		cmocka_unit_test(test_csr_long_name),
	    cmocka_unit_test(test_http_client), cmocka_unit_test(test_due),
	    cmocka_unit_test(test_chal),	cmocka_unit_test(test_cfg_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

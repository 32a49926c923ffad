// SPDX-License-Identifier: Apache-2.0
/*
 * TLS contexts and PKI helpers over BoringSSL. Every nave link is TLS 1.3
 * with ALPN "nave/1" and no session tickets (the keys may move to kTLS right
 * after the handshake, and a ticket would be the first record on the wire).
 * The client verifies the server by a pinned SHA-256 leaf fingerprint, a CA
 * file or the system CAs; a fresh server gets a self-signed P-256 pair on
 * first run so that pinning works out of the box. BoringSSL only: the include
 * of is_boringssl.h below fails the build if OpenSSL's headers are picked up.
 */
#include "tls.h"

#include <openssl/is_boringssl.h>

#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/crypto.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/pool.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define TLS_ALPN      "nave/1"
#define TLS_ALPN_LEN  6
#define TLS_CERT_DAYS 3650

static const char tls_curves_pq[] = "CECPQ2:X25519";
static const char tls_curves_classic[] = "X25519:P-256";

/* ALPN wire form: one length-prefixed protocol name. */
static const uint8_t tls_alpn_wire[] = {TLS_ALPN_LEN, 'n', 'a', 'v', 'e', '/', '1'};

const char *tls_last_error(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (len == 0)
		return buf;
	if (e == 0)
		str_copy(buf, len, "unknown TLS error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

/* err may be NULL or zero-length; reason gets the last BoringSSL error appended. */
static void set_err_ssl(char *err, size_t errlen, const char *what, const char *arg)
{
	char ebuf[256];

	tls_last_error(ebuf, sizeof(ebuf));
	if (err && errlen)
		snprintf(err, errlen, "%s%s%s: %s", what, arg ? " " : "", arg ? arg : "", ebuf);
}

static void set_err_errno(char *err, size_t errlen, const char *what, const char *arg, int errnum)
{
	if (err && errlen)
		snprintf(err, errlen, "%s%s%s: %s", what, arg ? " " : "", arg ? arg : "",
			 strerror(errnum));
}

/* ---- fingerprints ---- */

static void fpr_format(const uint8_t md[SHA256_DIGEST_LENGTH], char out[TLS_FPR_LEN])
{
	static const char digits[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
		if (i)
			out[o++] = ':';
		out[o++] = digits[md[i] >> 4];
		out[o++] = digits[md[i] & 15];
	}
	out[o] = 0;
}

int tls_fingerprint_parse(const char *s, unsigned char out[32])
{
	unsigned char tmp[32];
	size_t n = 0;

	if (!s)
		return -EINVAL;
	for (; *s; s++) {
		int v;

		if (*s == ':')
			continue;
		v = hex_val(*s);
		if (v < 0 || n >= 64)
			return -EINVAL;
		if (n % 2 == 0)
			tmp[n / 2] = (unsigned char)(v << 4);
		else
			tmp[n / 2] |= (unsigned char)v;
		n++;
	}
	if (n != 64)
		return -EINVAL;
	memcpy(out, tmp, sizeof(tmp));
	return 0;
}

int tls_cert_fingerprint_file(const char *cert_path, char out[TLS_FPR_LEN])
{
	uint8_t md[SHA256_DIGEST_LENGTH];
	uint8_t *der = NULL;
	X509 *x = NULL;
	FILE *f;
	int len, ret;

	f = fopen(cert_path, "re");
	if (!f)
		return -errno;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!x) {
		ERR_clear_error();
		return -EINVAL;
	}
	len = i2d_X509(x, &der);
	if (len <= 0) {
		ERR_clear_error();
		ret = -EINVAL;
		goto out;
	}
	SHA256(der, (size_t)len, md);
	fpr_format(md, out);
	ret = 0;
out:
	OPENSSL_free(der);
	X509_free(x);
	return ret;
}

/* SHA-256 of the peer's leaf certificate as sent on the wire. */
static int peer_leaf_sha256(const SSL *ssl, uint8_t md[SHA256_DIGEST_LENGTH])
{
	const STACK_OF(CRYPTO_BUFFER) *chain = SSL_get0_peer_certificates(ssl);
	const CRYPTO_BUFFER *leaf;

	if (!chain || sk_CRYPTO_BUFFER_num(chain) == 0)
		return -ENOENT;
	leaf = sk_CRYPTO_BUFFER_value(chain, 0);
	SHA256(CRYPTO_BUFFER_data(leaf), CRYPTO_BUFFER_len(leaf), md);
	return 0;
}

int tls_peer_fingerprint(const SSL *ssl, char out[TLS_FPR_LEN])
{
	uint8_t md[SHA256_DIGEST_LENGTH];
	int ret = peer_leaf_sha256(ssl, md);

	if (ret < 0)
		return ret;
	fpr_format(md, out);
	return 0;
}

/*
 * ---- fingerprint pinning and verification failures ----
 * The pin lives in the client SSL_CTX's ex_data; why a connection's
 * verification failed is recorded in the SSL's ex_data (allocated only on
 * failure), for tls_verify_error() after the handshake has given up.
 */

struct verify_fail {
	bool pinned;			   /* fingerprint mismatch, else X.509 path validation */
	bool no_cert;			   /* pinned, and the peer sent no certificate */
	long x509_err;			   /* X509_V_ERR_* when !pinned */
	uint8_t got[SHA256_DIGEST_LENGTH]; /* the peer leaf's SHA-256 when pinned */
};

static pthread_once_t pin_once = PTHREAD_ONCE_INIT;
static int pin_idx = -1, fail_idx = -1, certs_idx = -1;

/* the certificates a client presented, kept by accept_client_cert (tls_take_client_certs) */
struct kept_certs {
	size_t len;
	uint8_t der[];
};

static void certs_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index, long argl,
		       void *argp)
{
	free(ptr);
}

static void pin_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index, long argl, void *argp)
{
	if (ptr) {
		OPENSSL_cleanse(ptr, SHA256_DIGEST_LENGTH);
		OPENSSL_free(ptr);
	}
}

static void fail_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index, long argl, void *argp)
{
	OPENSSL_free(ptr);
}

static void pin_idx_init(void)
{
	pin_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, pin_free);
	fail_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, fail_free);
	certs_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, certs_free);
}

static const uint8_t *ctx_pin(const SSL_CTX *ctx)
{
	pthread_once(&pin_once, pin_idx_init);
	if (pin_idx < 0)
		return NULL;
	return SSL_CTX_get_ex_data(ctx, pin_idx);
}

/* The failure record of ssl, made on first use; NULL when out of memory. */
static struct verify_fail *fail_record(SSL *ssl)
{
	struct verify_fail *f;

	pthread_once(&pin_once, pin_idx_init);
	if (fail_idx < 0)
		return NULL;
	f = SSL_get_ex_data(ssl, fail_idx);
	if (f)
		return f;
	f = OPENSSL_malloc(sizeof(*f));
	if (!f)
		return NULL;
	memset(f, 0, sizeof(*f));
	if (!SSL_set_ex_data(ssl, fail_idx, f)) {
		OPENSSL_free(f);
		return NULL;
	}
	return f;
}

/*
 * Replaces X.509 path validation entirely: the leaf must hash to the pin and
 * nothing else (issuer, names, dates) is looked at.
 */
static enum ssl_verify_result_t pin_verify(SSL *ssl, uint8_t *out_alert)
{
	const uint8_t *pin = ctx_pin(SSL_get_SSL_CTX(ssl));
	uint8_t md[SHA256_DIGEST_LENGTH];
	struct verify_fail *f;

	if (!pin) {
		*out_alert = SSL_AD_INTERNAL_ERROR;
		return ssl_verify_invalid;
	}
	if (peer_leaf_sha256(ssl, md) < 0) {
		f = fail_record(ssl);
		if (f) {
			f->pinned = true;
			f->no_cert = true;
		}
		*out_alert = SSL_AD_BAD_CERTIFICATE;
		return ssl_verify_invalid;
	}
	if (CRYPTO_memcmp(md, pin, sizeof(md)) != 0) {
		f = fail_record(ssl);
		if (f) {
			f->pinned = true;
			memcpy(f->got, md, sizeof(md));
		}
		*out_alert = SSL_AD_BAD_CERTIFICATE;
		return ssl_verify_invalid;
	}
	return ssl_verify_ok;
}

/* X.509 path validation (CA file, system CAs): remembers the first error. */
static int x509_verify_cb(int ok, X509_STORE_CTX *store)
{
	SSL *ssl;
	struct verify_fail *f;

	if (ok)
		return ok;
	ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	if (ssl) {
		f = fail_record(ssl);
		if (f && !f->x509_err) {
			f->pinned = false;
			f->x509_err = X509_STORE_CTX_get_error(store);
		}
	}
	return ok;
}

const char *tls_verify_error(const SSL *ssl, char *buf, size_t len)
{
	const struct verify_fail *f;
	const uint8_t *pin;
	char want[TLS_FPR_LEN], got[TLS_FPR_LEN];

	if (!ssl || !buf || !len)
		return NULL;
	pthread_once(&pin_once, pin_idx_init);
	if (fail_idx < 0)
		return NULL;
	f = SSL_get_ex_data(ssl, fail_idx);
	if (!f)
		return NULL;
	if (!f->pinned) {
		snprintf(buf, len, TLS_VERIFY_ERROR_PREFIX "not trusted (%s)",
			 X509_verify_cert_error_string(f->x509_err ? f->x509_err
								   : X509_V_ERR_UNSPECIFIED));
		return buf;
	}
	if (f->no_cert) {
		snprintf(buf, len, TLS_VERIFY_ERROR_PREFIX "missing: the server sent none");
		return buf;
	}
	pin = ctx_pin(SSL_get_SSL_CTX(ssl));
	if (pin)
		fpr_format(pin, want);
	else
		str_copy(want, sizeof(want), "?");
	fpr_format(f->got, got);
	snprintf(buf, len, TLS_VERIFY_ERROR_PREFIX "fingerprint mismatch: expected %s, got %s",
		 want, got);
	return buf;
}

/* ---- contexts ---- */

static SSL_CTX *ctx_common(bool pq, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());

	if (!ctx) {
		set_err_ssl(err, errlen, "SSL_CTX_new", NULL);
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
		set_err_ssl(err, errlen, "cannot restrict to TLS 1.3", NULL);
		goto fail;
	}
	if (!SSL_CTX_set1_curves_list(ctx, pq ? tls_curves_pq : tls_curves_classic)) {
		set_err_ssl(err, errlen, "cannot set key exchange groups",
			    pq ? tls_curves_pq : tls_curves_classic);
		goto fail;
	}
	/* No tickets: with kTLS a post-handshake ticket would be stranded. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (!SSL_CTX_set_num_tickets(ctx, 0)) {
		set_err_ssl(err, errlen, "cannot disable session tickets", NULL);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static int alpn_select(SSL *ssl, const uint8_t **out, uint8_t *outlen, const uint8_t *in,
		       unsigned inlen, void *arg)
{
	CBS list, name;

	CBS_init(&list, in, inlen);
	while (CBS_len(&list) > 0) {
		if (!CBS_get_u8_length_prefixed(&list, &name))
			return SSL_TLSEXT_ERR_ALERT_FATAL;
		if (CBS_len(&name) == TLS_ALPN_LEN &&
		    memcmp(CBS_data(&name), TLS_ALPN, TLS_ALPN_LEN) == 0) {
			*out = CBS_data(&name);
			*outlen = TLS_ALPN_LEN;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/*
 * BoringSSL skips the ALPN callback when the ClientHello has no ALPN
 * extension at all; such a client is refused here instead.
 */
static enum ssl_select_cert_result_t require_alpn(const SSL_CLIENT_HELLO *ch)
{
	const uint8_t *data;
	size_t len;

	if (!SSL_early_callback_ctx_extension_get(
		ch, TLSEXT_TYPE_application_layer_protocol_negotiation, &data, &len))
		return ssl_select_cert_error;
	return ssl_select_cert_success;
}

SSL_CTX *tls_server_ctx(const char *cert_path, const char *key_path, bool pq, char *err,
			size_t errlen)
{
	SSL_CTX *ctx = ctx_common(pq, err, errlen);

	if (!ctx)
		return NULL;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		set_err_ssl(err, errlen, "cannot load certificate", cert_path);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		set_err_ssl(err, errlen, "cannot load private key", key_path);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		set_err_ssl(err, errlen, "private key does not match certificate", key_path);
		goto fail;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_select_certificate_cb(ctx, require_alpn);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * A client certificate is accepted by the handshake whatever it says (the
 * handshake still proves the client holds its key: CertificateVerify); the
 * chain is checked after it, against the CA and CRL of that moment
 * (tls/pki.h), so a refusal gets a line of its own rather than an alert.
 */
static enum ssl_verify_result_t accept_client_cert(SSL *ssl, uint8_t *out_alert)
{
	const STACK_OF(CRYPTO_BUFFER) *sk = SSL_get0_peer_certificates(ssl);
	size_t n = sk ? sk_CRYPTO_BUFFER_num(sk) : 0, total = 0;
	struct kept_certs *k;
	uint8_t *p;

	(void)out_alert;
	pthread_once(&pin_once, pin_idx_init);
	if (!n || certs_idx < 0)
		return ssl_verify_ok;
	/* one more than a chain may hold: the check refuses it as too many */
	if (n > TLS_CLIENT_CERTS_MAX)
		n = TLS_CLIENT_CERTS_MAX;
	for (size_t i = 0; i < n; i++)
		total += CRYPTO_BUFFER_len(sk_CRYPTO_BUFFER_value(sk, i));
	k = malloc(sizeof(*k) + total);
	if (!k)
		return ssl_verify_ok; /* no certificate kept: the login is refused as such */
	k->len = total;
	p = k->der;
	for (size_t i = 0; i < n; i++) {
		const CRYPTO_BUFFER *b = sk_CRYPTO_BUFFER_value(sk, i);

		memcpy(p, CRYPTO_BUFFER_data(b), CRYPTO_BUFFER_len(b));
		p += CRYPTO_BUFFER_len(b);
	}
	free(SSL_get_ex_data(ssl, certs_idx));
	SSL_set_ex_data(ssl, certs_idx, k);
	return ssl_verify_ok;
}

uint8_t *tls_take_client_certs(SSL *ssl, size_t *len)
{
	struct kept_certs *k;
	uint8_t *out;

	*len = 0;
	pthread_once(&pin_once, pin_idx_init);
	if (certs_idx < 0 || !(k = SSL_get_ex_data(ssl, certs_idx)))
		return NULL;
	SSL_set_ex_data(ssl, certs_idx, NULL);
	out = malloc(k->len ? k->len : 1);
	if (out) {
		memcpy(out, k->der, k->len);
		*len = k->len;
	}
	free(k);
	return out;
}

int tls_server_ask_client_cert(SSL_CTX *ctx)
{
	/* Ed25519 is not in BoringSSL's default list: nave's PKI makes such keys */
	static const uint16_t prefs[] = {
	    SSL_SIGN_ED25519,
	    SSL_SIGN_ECDSA_SECP256R1_SHA256,
	    SSL_SIGN_ECDSA_SECP384R1_SHA384,
	    SSL_SIGN_RSA_PSS_RSAE_SHA256,
	    SSL_SIGN_RSA_PSS_RSAE_SHA384,
	    SSL_SIGN_RSA_PSS_RSAE_SHA512,
	};

	SSL_CTX_set_custom_verify(ctx, SSL_VERIFY_PEER, accept_client_cert);
	/*
	 * What a client may make relayd hold: its Certificate message at most
	 * TLS_CLIENT_CERTS_BYTES (a nave node certificate is about 600 bytes), kept
	 * once by accept_client_cert; BoringSSL keeps only its hash after the check
	 */
	SSL_CTX_set_max_cert_list(ctx, TLS_CLIENT_CERTS_BYTES);
	SSL_CTX_set_retain_only_sha256_of_client_certs(ctx, 1);
	return SSL_CTX_set_verify_algorithm_prefs(ctx, prefs, sizeof(prefs) / sizeof(prefs[0])) == 1
		   ? 0
		   : -EINVAL;
}

int tls_client_use_cert(SSL_CTX *ctx, const char *cert_path, const char *key_path, char *err,
			size_t errlen)
{
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		set_err_ssl(err, errlen, "cannot load certificate", cert_path);
		return -EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		set_err_ssl(err, errlen, "cannot load private key", key_path);
		return -EINVAL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		set_err_ssl(err, errlen, "private key does not match certificate", key_path);
		return -EINVAL;
	}
	return 0;
}

/* The edge speaks HTTP/1.1 on what it terminates: picked when offered, else no ALPN. */
static int alpn_select_http(SSL *ssl, const uint8_t **out, uint8_t *outlen, const uint8_t *in,
			    unsigned inlen, void *arg)
{
	CBS list, name;

	CBS_init(&list, in, inlen);
	while (CBS_len(&list) > 0) {
		if (!CBS_get_u8_length_prefixed(&list, &name))
			return SSL_TLSEXT_ERR_ALERT_FATAL;
		if (CBS_len(&name) == 8 && memcmp(CBS_data(&name), "http/1.1", 8) == 0) {
			*out = CBS_data(&name);
			*outlen = 8;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

SSL_CTX *tls_edge_ctx(const char *cert_path, const char *key_path, char *err, size_t errlen)
{
	SSL_CTX *ctx = ctx_common(false, err, errlen);

	if (!ctx)
		return NULL;
	if (cert_path && SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		set_err_ssl(err, errlen, "cannot load certificate", cert_path);
		goto fail;
	}
	if (key_path && SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		set_err_ssl(err, errlen, "cannot load private key", key_path);
		goto fail;
	}
	if (cert_path && key_path && SSL_CTX_check_private_key(ctx) != 1) {
		set_err_ssl(err, errlen, "private key does not match certificate", key_path);
		goto fail;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select_http, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_client_ctx(const char *ca_file, const char *fingerprint, bool pq, char *err,
			size_t errlen)
{
	SSL_CTX *ctx = ctx_common(pq, err, errlen);
	uint8_t *pin = NULL;

	if (!ctx)
		return NULL;
	/* BoringSSL's SSL_CTX_set_alpn_protos returns 0 on success. */
	if (SSL_CTX_set_alpn_protos(ctx, tls_alpn_wire, sizeof(tls_alpn_wire)) != 0) {
		set_err_ssl(err, errlen, "cannot set ALPN", TLS_ALPN);
		goto fail;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

	if (fingerprint && *fingerprint) {
		pin = OPENSSL_malloc(SHA256_DIGEST_LENGTH);
		if (!pin) {
			set_err_errno(err, errlen, "fingerprint", NULL, ENOMEM);
			goto fail;
		}
		if (tls_fingerprint_parse(fingerprint, pin) < 0) {
			if (err && errlen)
				snprintf(err, errlen, "bad fingerprint: %s",
					 "want 64 hex digits (SHA-256), colons optional");
			goto fail;
		}
		pthread_once(&pin_once, pin_idx_init);
		if (pin_idx < 0 || !SSL_CTX_set_ex_data(ctx, pin_idx, pin)) {
			set_err_ssl(err, errlen, "cannot store fingerprint", NULL);
			goto fail;
		}
		pin = NULL; /* owned by ctx now, freed by pin_free */
		SSL_CTX_set_custom_verify(ctx, SSL_VERIFY_PEER, pin_verify);
	} else if (ca_file && *ca_file) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			set_err_ssl(err, errlen, "cannot load CA file", ca_file);
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, x509_verify_cb);
	} else {
		if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			set_err_ssl(err, errlen, "cannot load system CAs", NULL);
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, x509_verify_cb);
	}
	return ctx;
fail:
	if (pin) {
		OPENSSL_cleanse(pin, SHA256_DIGEST_LENGTH);
		OPENSSL_free(pin);
	}
	SSL_CTX_free(ctx);
	return NULL;
}

int tls_client_set_host(SSL *ssl, const char *host)
{
	X509_VERIFY_PARAM *param;
	char ipbuf[INET6_ADDRSTRLEN];
	const char *ip = NULL;
	unsigned char addr[sizeof(struct in6_addr)];
	size_t len;

	if (!ssl || !host || !*host)
		return -EINVAL;
	len = strlen(host);
	/* "[::1]" as written in URLs and host:port strings */
	if (host[0] == '[') {
		if (len < 3 || host[len - 1] != ']' || len - 2 >= sizeof(ipbuf))
			return -EINVAL;
		memcpy(ipbuf, host + 1, len - 2);
		ipbuf[len - 2] = 0;
		if (inet_pton(AF_INET6, ipbuf, addr) != 1)
			return -EINVAL;
		ip = ipbuf;
	} else if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1) {
		ip = host;
	}

	/* SNI carries host names only (RFC 6066 section 3). */
	if (!ip && !SSL_set_tlsext_host_name(ssl, host)) {
		ERR_clear_error();
		return -EINVAL;
	}
	/* A pinned fingerprint replaces X.509 validation: no name to check. */
	if (ctx_pin(SSL_get_SSL_CTX(ssl)))
		return 0;
	param = SSL_get0_param(ssl);
	if (!param)
		return -EINVAL;
	if (ip) {
		if (!X509_VERIFY_PARAM_set1_ip_asc(param, ip)) {
			ERR_clear_error();
			return -EINVAL;
		}
	} else {
		X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (!X509_VERIFY_PARAM_set1_host(param, host, len)) {
			ERR_clear_error();
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- self-signed server pair ---- */

static int add_dns(GENERAL_NAMES *gens, const char *name)
{
	GENERAL_NAME *gen = GENERAL_NAME_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();

	if (!gen || !s || !ASN1_STRING_set(s, name, -1))
		goto fail;
	GENERAL_NAME_set0_value(gen, GEN_DNS, s);
	s = NULL;
	if (!sk_GENERAL_NAME_push(gens, gen))
		goto fail;
	return 0;
fail:
	ASN1_IA5STRING_free(s);
	GENERAL_NAME_free(gen);
	return -ENOMEM;
}

/* name is a literal IPv4 or IPv6 address; -EINVAL if it is neither. */
static int add_ip(GENERAL_NAMES *gens, const char *name)
{
	unsigned char addr[sizeof(struct in6_addr)];
	GENERAL_NAME *gen = NULL;
	ASN1_OCTET_STRING *s = NULL;
	int alen;

	if (inet_pton(AF_INET, name, addr) == 1)
		alen = 4;
	else if (inet_pton(AF_INET6, name, addr) == 1)
		alen = 16;
	else
		return -EINVAL;
	gen = GENERAL_NAME_new();
	s = ASN1_OCTET_STRING_new();
	if (!gen || !s || !ASN1_OCTET_STRING_set(s, addr, alen))
		goto fail;
	GENERAL_NAME_set0_value(gen, GEN_IPADD, s);
	s = NULL;
	if (!sk_GENERAL_NAME_push(gens, gen))
		goto fail;
	return 0;
fail:
	ASN1_OCTET_STRING_free(s);
	GENERAL_NAME_free(gen);
	return -ENOMEM;
}

static int add_san(X509 *x, const char *domain)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	int ret = -ENOMEM;

	if (!gens)
		return -ENOMEM;
	/* a domain given as an address literal becomes an IP entry */
	if (strcmp(domain, "localhost") != 0 && strcmp(domain, "127.0.0.1") != 0 &&
	    strcmp(domain, "::1") != 0) {
		ret = add_ip(gens, domain);
		if (ret == -EINVAL)
			ret = add_dns(gens, domain);
		if (ret < 0)
			goto out;
	}
	ret = add_dns(gens, "localhost");
	if (!ret)
		ret = add_ip(gens, "127.0.0.1");
	if (!ret)
		ret = add_ip(gens, "::1");
	if (ret < 0)
		goto out;
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
		ret = -ENOMEM;
out:
	GENERAL_NAMES_free(gens);
	return ret;
}

static int add_basic_constraints(X509 *x)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
	int ret;

	if (!bc)
		return -ENOMEM;
	bc->ca = 0;
	ret = 0;
	if (X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT) != 1)
		ret = -ENOMEM;
	BASIC_CONSTRAINTS_free(bc);
	return ret;
}

static int set_random_serial(X509 *x)
{
	uint8_t raw[16];
	BIGNUM *bn = NULL;
	ASN1_INTEGER *serial = NULL;
	int ret = -ENOMEM;

	RAND_bytes(raw, sizeof(raw));
	raw[0] &= 0x7f; /* positive */
	raw[0] |= 0x40; /* and a full 16 bytes long */
	bn = BN_bin2bn(raw, sizeof(raw), NULL);
	if (!bn)
		goto out;
	serial = BN_to_ASN1_INTEGER(bn, NULL);
	if (!serial || !X509_set_serialNumber(x, serial))
		goto out;
	ret = 0;
out:
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	return ret;
}

/* A new P-256 key and a self-signed v3 certificate for domain. */
static int make_selfsigned(const char *domain, EVP_PKEY **out_key, X509 **out_cert, char *err,
			   size_t errlen)
{
	EC_KEY *ec = NULL;
	EVP_PKEY *pkey = NULL;
	X509 *x = NULL;
	X509_NAME *name;
	int ret = -ENOMEM;

	ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	if (!ec || !EC_KEY_generate_key(ec)) {
		set_err_ssl(err, errlen, "cannot generate P-256 key", NULL);
		goto out;
	}
	pkey = EVP_PKEY_new();
	if (!pkey || !EVP_PKEY_assign_EC_KEY(pkey, ec)) {
		set_err_ssl(err, errlen, "EVP_PKEY", NULL);
		goto out;
	}
	ec = NULL; /* owned by pkey */

	/* notBefore an hour back: a client whose clock lags still accepts it */
	x = X509_new();
	if (!x || !X509_set_version(x, X509_VERSION_3) || set_random_serial(x) < 0 ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), TLS_CERT_DAYS, 0, NULL) ||
	    !X509_set_pubkey(x, pkey)) {
		set_err_ssl(err, errlen, "cannot build certificate", NULL);
		goto out;
	}
	name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const uint8_t *)domain, -1, -1,
					0) ||
	    !X509_set_issuer_name(x, name)) {
		set_err_ssl(err, errlen, "cannot set certificate name", domain);
		ret = -EINVAL;
		goto out;
	}
	if (add_san(x, domain) < 0 || add_basic_constraints(x) < 0) {
		set_err_ssl(err, errlen, "cannot add certificate extensions", NULL);
		goto out;
	}
	if (!X509_sign(x, pkey, EVP_sha256())) {
		set_err_ssl(err, errlen, "cannot sign certificate", NULL);
		goto out;
	}
	*out_key = pkey;
	*out_cert = x;
	pkey = NULL;
	x = NULL;
	ret = 0;
out:
	X509_free(x);
	EVP_PKEY_free(pkey);
	EC_KEY_free(ec);
	return ret;
}

/* Creates the directory holding path (mode 0700) if it is missing. */
static int make_parent(const char *path)
{
	char dir[1024];
	char *slash;

	if (!str_copy(dir, sizeof(dir), path))
		return -ENAMETOOLONG;
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0; /* current directory or "/" */
	*slash = 0;
	return mkdir_p(dir, 0700);
}

/* Writes key or cert as PEM to a fresh tmp file of the given mode; the caller renames it. */
static int write_pem(const char *tmp, mode_t mode, EVP_PKEY *key, X509 *cert)
{
	FILE *f;
	int fd, ok, ret;

	unlink(tmp); /* a stale leftover of an interrupted run */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		ret = -errno;
		close(fd);
		goto fail;
	}
	if (key)
		ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	else
		ok = PEM_write_X509(f, cert);
	if (!ok) {
		ERR_clear_error();
		fclose(f);
		ret = -EIO;
		goto fail;
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		ret = -errno;
		fclose(f);
		goto fail;
	}
	if (fclose(f) != 0) {
		ret = -errno;
		goto fail;
	}
	return 0;
fail:
	unlink(tmp);
	return ret;
}

static int path_exists(const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

int tls_ensure_selfsigned(const char *cert_path, const char *key_path, const char *domain,
			  char *err, size_t errlen)
{
	char cert_tmp[1024], key_tmp[1024];
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int have_cert, have_key, ret;

	if (!cert_path || !key_path || !domain || !*domain) {
		if (err && errlen)
			snprintf(err, errlen, "certificate, key and domain are required");
		return -EINVAL;
	}
	have_cert = path_exists(cert_path);
	if (have_cert < 0) {
		set_err_errno(err, errlen, "cannot stat", cert_path, -have_cert);
		return have_cert;
	}
	have_key = path_exists(key_path);
	if (have_key < 0) {
		set_err_errno(err, errlen, "cannot stat", key_path, -have_key);
		return have_key;
	}
	if (have_cert && have_key)
		return 0;
	if (have_cert || have_key) {
		/* never overwrite half of a pair: the admin has to sort it out */
		if (err && errlen)
			snprintf(err, errlen, "%s exists but %s is missing",
				 have_cert ? cert_path : key_path,
				 have_cert ? key_path : cert_path);
		return -ENOENT;
	}

	if (snprintf(cert_tmp, sizeof(cert_tmp), "%s.tmp", cert_path) >= (int)sizeof(cert_tmp) ||
	    snprintf(key_tmp, sizeof(key_tmp), "%s.tmp", key_path) >= (int)sizeof(key_tmp)) {
		set_err_errno(err, errlen, "path too long", NULL, ENAMETOOLONG);
		return -ENAMETOOLONG;
	}
	ret = make_parent(cert_path);
	if (ret < 0) {
		set_err_errno(err, errlen, "cannot create directory for", cert_path, -ret);
		return ret;
	}
	ret = make_parent(key_path);
	if (ret < 0) {
		set_err_errno(err, errlen, "cannot create directory for", key_path, -ret);
		return ret;
	}

	ret = make_selfsigned(domain, &key, &cert, err, errlen);
	if (ret < 0)
		goto out;
	ret = write_pem(key_tmp, 0600, key, NULL);
	if (ret < 0) {
		set_err_errno(err, errlen, "cannot write", key_tmp, -ret);
		goto out;
	}
	ret = write_pem(cert_tmp, 0644, NULL, cert);
	if (ret < 0) {
		set_err_errno(err, errlen, "cannot write", cert_tmp, -ret);
		unlink(key_tmp);
		goto out;
	}
	/* key first: a crash in between leaves a key without a cert, reported next run */
	if (rename(key_tmp, key_path) < 0) {
		ret = -errno;
		set_err_errno(err, errlen, "cannot rename to", key_path, -ret);
		unlink(key_tmp);
		unlink(cert_tmp);
		goto out;
	}
	if (rename(cert_tmp, cert_path) < 0) {
		ret = -errno;
		set_err_errno(err, errlen, "cannot rename to", cert_path, -ret);
		unlink(cert_tmp);
		unlink(key_path);
		goto out;
	}
	ret = 0;
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}

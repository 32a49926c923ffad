// SPDX-License-Identifier: Apache-2.0
/* JWS, JWK thumbprints, keys and CSRs for the ACME client (jws.h). */
#include "ctl/jws.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* snprintf whose truncation is fine (messages, copies of checked lengths) */
__attribute__((format(printf, 3, 4))) static void sfmt(char *out, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, n, fmt, ap);
	va_end(ap);
}

size_t b64url_encode(const uint8_t *in, size_t n, char *out)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0, i = 0;

	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = tab[v >> 6 & 63];
		out[o++] = tab[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = tab[v >> 6 & 63];
	}
	out[o] = '\0';
	return o;
}

/* base64url of a NUL-terminated string: malloc'd */
static char *b64url_str(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(4 * (n / 3 + 1) + 1);

	if (out)
		b64url_encode((const uint8_t *)s, n, out);
	return out;
}

EVP_PKEY *jws_key_new(void)
{
	EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	EVP_PKEY *k = EVP_PKEY_new();

	if (!ec || !k || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(k, ec)) {
		EC_KEY_free(ec);
		EVP_PKEY_free(k);
		return NULL;
	}
	return k;
}

static bool is_p256(EVP_PKEY *k)
{
	const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(k);

	return ec && EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) == NID_X9_62_prime256v1;
}

EVP_PKEY *jws_key_load_or_make(const char *path, char *err, size_t errlen)
{
	char tmp[1024];
	EVP_PKEY *k = NULL;
	FILE *f = fopen(path, "re");
	bool ok;
	int fd;

	if (f) {
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		if (!k || !is_p256(k)) {
			EVP_PKEY_free(k);
			sfmt(err, errlen, "%s: not a P-256 private key in PEM", path);
			return NULL;
		}
		return k;
	}
	if (errno != ENOENT) {
		sfmt(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	k = jws_key_new();
	if (!k) {
		sfmt(err, errlen, "out of memory making a key");
		return NULL;
	}
	sfmt(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		sfmt(err, errlen, "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		EVP_PKEY_free(k);
		return NULL;
	}
	ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) && !fflush(f) &&
	     !fsync(fileno(f));
	ok = !fclose(f) && ok && !rename(tmp, path);
	if (!ok) {
		sfmt(err, errlen, "%s: cannot write the key: %s", path, strerror(errno));
		unlink(tmp);
		EVP_PKEY_free(k);
		return NULL;
	}
	return k;
}

/* The x and y of a P-256 key, 32 bytes each. */
static int ec_xy(EVP_PKEY *key, uint8_t xy[64])
{
	const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
	uint8_t pt[65];

	if (!ec ||
	    EC_POINT_point2oct(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec),
			       POINT_CONVERSION_UNCOMPRESSED, pt, sizeof(pt), NULL) != sizeof(pt))
		return -1;
	memcpy(xy, pt + 1, 64);
	return 0;
}

char *jws_jwk(EVP_PKEY *key)
{
	uint8_t xy[64];
	char x[48], y[48], *out = malloc(160);

	if (!out || ec_xy(key, xy) < 0) {
		free(out);
		return NULL;
	}
	b64url_encode(xy, 32, x);
	b64url_encode(xy + 32, 32, y);
	sfmt(out, 160, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
	return out;
}

int jws_thumbprint(EVP_PKEY *key, char *out)
{
	uint8_t d[SHA256_DIGEST_LENGTH];
	char *jwk = jws_jwk(key);

	if (!jwk)
		return -1;
	SHA256((const uint8_t *)jwk, strlen(jwk), d);
	free(jwk);
	b64url_encode(d, sizeof(d), out);
	return 0;
}

/* ES256 over "protected.payload": r || s, 32 bytes each, base64url into out (87 bytes) */
static int es256(EVP_PKEY *key, const char *in, char *out)
{
	uint8_t d[SHA256_DIGEST_LENGTH], rs[64];
	ECDSA_SIG *sig;
	const BIGNUM *r, *s;
	int ok;

	SHA256((const uint8_t *)in, strlen(in), d);
	sig = ECDSA_do_sign(d, sizeof(d), EVP_PKEY_get0_EC_KEY(key));
	if (!sig)
		return -1;
	ECDSA_SIG_get0(sig, &r, &s);
	ok = BN_bn2bin_padded(rs, 32, r) && BN_bn2bin_padded(rs + 32, 32, s);
	ECDSA_SIG_free(sig);
	if (!ok)
		return -1;
	b64url_encode(rs, sizeof(rs), out);
	return 0;
}

/* a JSON string literal of s (ACME URLs, nonces and kids: printable ASCII) */
static bool json_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f || *s == '"' ||
		    *s == '\\')
			return false;
	return true;
}

char *jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
	       const char *payload)
{
	char *jwk = NULL, *prot = NULL, *p64 = NULL, *pay64 = NULL, *input = NULL, *out = NULL;
	char sig[96];
	size_t n;

	if (!json_safe(nonce) || !json_safe(url) || (kid && !json_safe(kid)))
		return NULL;
	if (!kid && !(jwk = jws_jwk(key)))
		return NULL;
	n = strlen(nonce) + strlen(url) + (kid ? strlen(kid) : strlen(jwk)) + 64;
	prot = malloc(n);
	if (!prot)
		goto out;
	if (kid)
		sfmt(prot, n, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"nonce\":\"%s\",\"url\":\"%s\"}",
		     kid, nonce, url);
	else
		sfmt(prot, n, "{\"alg\":\"ES256\",\"jwk\":%s,\"nonce\":\"%s\",\"url\":\"%s\"}", jwk,
		     nonce, url);
	p64 = b64url_str(prot);
	pay64 = b64url_str(payload ? payload : "");
	if (!p64 || !pay64)
		goto out;
	n = strlen(p64) + strlen(pay64) + 2;
	input = malloc(n);
	if (!input)
		goto out;
	sfmt(input, n, "%s.%s", p64, pay64);
	if (es256(key, input, sig) < 0)
		goto out;
	n = strlen(p64) + strlen(pay64) + strlen(sig) + 64;
	out = malloc(n);
	if (out)
		sfmt(out, n, "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", p64,
		     pay64, sig);
out:
	free(jwk);
	free(prot);
	free(p64);
	free(pay64);
	free(input);
	return out;
}

size_t jws_csr(EVP_PKEY *key, const char *domain, uint8_t **der)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *san = NULL;
	char dns[300];
	int n = 0;

	*der = NULL;
	sfmt(dns, sizeof(dns), "DNS:%s", domain);
	/* a CN holds at most 64 characters: a longer name is in the subjectAltName only */
	if (!req || !name || !exts || !X509_REQ_set_version(req, 0) ||
	    (strlen(domain) <= 64 &&
	     !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)domain, -1, -1,
					 0)) ||
	    !X509_REQ_set_subject_name(req, name) || !X509_REQ_set_pubkey(req, key))
		goto out;
	san = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, dns);
	if (!san || !sk_X509_EXTENSION_push(exts, san))
		goto out;
	san = NULL; /* the stack has it */
	if (!X509_REQ_add_extensions(req, exts) || !X509_REQ_sign(req, key, EVP_sha256()))
		goto out;
	n = i2d_X509_REQ(req, der);
	if (n <= 0) {
		*der = NULL;
		n = 0;
	}
out:
	X509_EXTENSION_free(san);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_NAME_free(name);
	X509_REQ_free(req);
	return (size_t)n;
}

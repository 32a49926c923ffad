/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What an ACME client signs and sends (RFC 7515 JWS with ES256, RFC 7638 JWK
 * thumbprints, RFC 8555 section 6.2), and the keys and CSRs it makes, with
 * BoringSSL. Keys are ECDSA P-256.
 */
#ifndef NAVE_JWS_H
#define NAVE_JWS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define JWS_THUMB_LEN 43 /* base64url of a SHA-256 */

/*
 * base64url without padding of n bytes into out (4 * ceil(n / 3) + 1 bytes
 * are always enough): the length written, NUL-terminated.
 */
size_t b64url_encode(const uint8_t *in, size_t n, char *out);
/* A new P-256 key; NULL when out of memory. */
EVP_PKEY *jws_key_new(void);
/*
 * Reads the P-256 key at path, or makes one and writes it there (0600, a new
 * file renamed into place) when there is none. NULL with the reason in err.
 */
EVP_PKEY *jws_key_load_or_make(const char *path, char *err, size_t errlen);
/* The public JWK of key, {"crv","kty","x","y"} in that order (RFC 7638): malloc'd. */
char *jws_jwk(EVP_PKEY *key);
/* The JWK thumbprint of key: base64url(SHA-256(jwk)) into out (JWS_THUMB_LEN + 1). 0 or -1. */
int jws_thumbprint(EVP_PKEY *key, char *out);
/*
 * The flattened JWS body of an ACME request: protected {alg ES256, nonce, url, and
 * kid when given, else the jwk}, payload (NULL: POST-as-GET, an empty payload).
 * malloc'd JSON text, or NULL.
 */
char *jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
	       const char *payload);
/* A DER CSR for one DNS name (CN and subjectAltName) signed by key: *der malloc'd; its length or 0.
 */
size_t jws_csr(EVP_PKEY *key, const char *domain, uint8_t **der);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Password hashes for HTTP basic auth: the client stores and sends only the
 * hash, relayd checks a request's password against it at the edge. The text
 * form describes itself:
 *
 *   $scrypt$ln=LN,r=R,p=P$SALT$HASH
 *
 * scrypt (RFC 7914) with N = 2^LN, SALT 16 random bytes and HASH 32 bytes,
 * both base64 (standard alphabet, no padding, canonical trailing bits); the
 * numbers are decimal without leading zeros. Printable ASCII without spaces,
 * ':' or ',' in SALT/HASH, so "USER:HASH" splits at the first ':'. Only
 * BoringSSL (libcrypto) underneath: relayd links it too.
 */
#ifndef NAVE_PASSWD_H
#define NAVE_PASSWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PASSWD_LN_DEFAULT 14 /* N = 16384, r = 8: 16 MiB, ~50 ms */
#define PASSWD_R_DEFAULT  8
#define PASSWD_P_DEFAULT  1
#define PASSWD_LN_MIN	  10
#define PASSWD_LN_MAX	  20
#define PASSWD_R_MAX	  16
#define PASSWD_P_MAX	  4
#define PASSWD_MEM_MAX	  (64u << 20) /* 128 * r * N at most */
#define PASSWD_SALT_LEN	  16
#define PASSWD_HASH_LEN	  32
#define PASSWD_PASS_MAX	  128 /* bytes of a password `nave` accepts */
#define PASSWD_STR_MAX	  128 /* the text form fits in this (NUL included) */

struct passwd_params {
	unsigned ln, r, p;
	uint8_t salt[PASSWD_SALT_LEN];
	uint8_t hash[PASSWD_HASH_LEN];
};

/*
 * Hashes pass (passlen bytes) with the default cost and a fresh salt into out
 * (outlen >= PASSWD_STR_MAX). 0, or -1 (out of memory, outlen too small).
 */
int passwd_hash(const char *pass, size_t passlen, char *out, size_t outlen);
/* The same with the given cost (within the bounds); for tests. */
int passwd_hash_cost(const char *pass, size_t passlen, unsigned ln, unsigned r, unsigned p,
		     char *out, size_t outlen);
/*
 * Parses the text form (n bytes at s, no NUL needed) strictly: the exact
 * layout, ln PASSWD_LN_MIN..MAX, r 1..PASSWD_R_MAX, p 1..PASSWD_P_MAX, at
 * most PASSWD_MEM_MAX of memory, canonical base64 of the right lengths.
 * true with *out filled (out may be NULL).
 */
bool passwd_parse(const char *s, size_t n, struct passwd_params *out);
/*
 * True when pass matches stored (NUL-terminated text form). A stored string
 * that does not parse never matches. The comparison is constant-time.
 */
bool passwd_verify(const char *pass, size_t passlen, const char *stored);

/* Base64 without padding (standard alphabet): encode n bytes into out (NUL-terminated). */
size_t passwd_b64_encode(const uint8_t *in, size_t n, char *out, size_t outlen);
/* Strict decode of exactly n chars into exactly want bytes: true on success. */
bool passwd_b64_decode(const char *in, size_t n, uint8_t *out, size_t want);

#endif

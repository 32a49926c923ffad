// SPDX-License-Identifier: Apache-2.0
/*
 * scrypt password hashes in a self-describing text form (passwd.h). The
 * parser takes untrusted text (relayd reads it from a client's http_add), so
 * it checks every byte and every bound before scrypt runs: a stored string
 * cannot make the edge spend more than PASSWD_MEM_MAX or 2^20 rounds.
 */
#include "passwd.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t passwd_b64_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
	size_t o = 0, i;

	if (outlen < (n * 4 + 2) / 3 + 1) {
		if (outlen)
			out[0] = 0;
		return 0;
	}
	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = b64[v >> 18];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = b64[(v >> 6) & 63];
		out[o++] = b64[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = b64[v >> 18];
		out[o++] = b64[(v >> 12) & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = b64[v >> 18];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = b64[(v >> 6) & 63];
	}
	out[o] = 0;
	return o;
}

static int b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

bool passwd_b64_decode(const char *in, size_t n, uint8_t *out, size_t want)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;

	if (n != (want * 4 + 2) / 3)
		return false;
	for (size_t i = 0; i < n; i++) {
		int v = b64_val(in[i]);

		if (v < 0)
			return false;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* the bits left over must be zero: one text per byte string */
	return o == want && acc == 0;
}

/* Decimal 1..max without sign or leading zeros at *s (ending at end); advances *s. */
static bool parse_num(const char **s, const char *end, unsigned max, unsigned *out)
{
	const char *p = *s;
	unsigned v = 0;

	if (p >= end || *p < '1' || *p > '9')
		return false;
	while (p < end && *p >= '0' && *p <= '9') {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > max)
			return false;
		p++;
	}
	*s = p;
	*out = v;
	return true;
}

static bool expect(const char **s, const char *end, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(end - *s) < n || memcmp(*s, lit, n))
		return false;
	*s += n;
	return true;
}

static bool cost_ok(unsigned ln, unsigned r, unsigned p)
{
	return ln >= PASSWD_LN_MIN && ln <= PASSWD_LN_MAX && r >= 1 && r <= PASSWD_R_MAX &&
	       p >= 1 && p <= PASSWD_P_MAX &&
	       (uint64_t)128 * r * ((uint64_t)1 << ln) <= PASSWD_MEM_MAX;
}

bool passwd_parse(const char *s, size_t n, struct passwd_params *out)
{
	const char *end = s + n, *d;
	struct passwd_params pp;
	size_t salt_chars = (PASSWD_SALT_LEN * 4 + 2) / 3;
	size_t hash_chars = (PASSWD_HASH_LEN * 4 + 2) / 3;

	if (!s || n >= PASSWD_STR_MAX)
		return false;
	memset(&pp, 0, sizeof(pp));
	if (!expect(&s, end, "$scrypt$ln=") || !parse_num(&s, end, 99, &pp.ln) ||
	    !expect(&s, end, ",r=") || !parse_num(&s, end, 99, &pp.r) || !expect(&s, end, ",p=") ||
	    !parse_num(&s, end, 99, &pp.p) || !expect(&s, end, "$"))
		return false;
	if (!cost_ok(pp.ln, pp.r, pp.p))
		return false;
	d = memchr(s, '$', (size_t)(end - s));
	if (!d || (size_t)(d - s) != salt_chars ||
	    !passwd_b64_decode(s, salt_chars, pp.salt, PASSWD_SALT_LEN))
		return false;
	s = d + 1;
	if ((size_t)(end - s) != hash_chars ||
	    !passwd_b64_decode(s, hash_chars, pp.hash, PASSWD_HASH_LEN))
		return false;
	if (out)
		*out = pp;
	return true;
}

static int derive(const char *pass, size_t passlen, const struct passwd_params *pp, uint8_t *key)
{
	/* 1 MiB over the table for scrypt's own blocks (128 * r * (p + 2) bytes) */
	return EVP_PBE_scrypt(pass, passlen, pp->salt, sizeof(pp->salt), (uint64_t)1 << pp->ln,
			      pp->r, pp->p, PASSWD_MEM_MAX + (1u << 20), key, PASSWD_HASH_LEN)
		   ? 0
		   : -1;
}

int passwd_hash_cost(const char *pass, size_t passlen, unsigned ln, unsigned r, unsigned p,
		     char *out, size_t outlen)
{
	struct passwd_params pp = {.ln = ln, .r = r, .p = p};
	char salt[32], hash[48];
	int n;

	if (!cost_ok(ln, r, p) || outlen < PASSWD_STR_MAX)
		return -1;
	if (!RAND_bytes(pp.salt, sizeof(pp.salt)) || derive(pass, passlen, &pp, pp.hash) < 0)
		return -1;
	passwd_b64_encode(pp.salt, sizeof(pp.salt), salt, sizeof(salt));
	passwd_b64_encode(pp.hash, sizeof(pp.hash), hash, sizeof(hash));
	n = snprintf(out, outlen, "$scrypt$ln=%u,r=%u,p=%u$%s$%s", ln, r, p, salt, hash);
	OPENSSL_cleanse(&pp, sizeof(pp));
	return n > 0 && (size_t)n < outlen ? 0 : -1;
}

int passwd_hash(const char *pass, size_t passlen, char *out, size_t outlen)
{
	return passwd_hash_cost(pass, passlen, PASSWD_LN_DEFAULT, PASSWD_R_DEFAULT,
				PASSWD_P_DEFAULT, out, outlen);
}

bool passwd_verify(const char *pass, size_t passlen, const char *stored)
{
	struct passwd_params pp;
	uint8_t key[PASSWD_HASH_LEN];
	bool ok;

	if (!stored || !passwd_parse(stored, strnlen(stored, PASSWD_STR_MAX), &pp))
		return false;
	if (derive(pass, passlen, &pp, key) < 0)
		return false;
	ok = CRYPTO_memcmp(key, pp.hash, sizeof(key)) == 0;
	OPENSSL_cleanse(key, sizeof(key));
	return ok;
}

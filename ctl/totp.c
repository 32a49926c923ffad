// SPDX-License-Identifier: Apache-2.0
/*
 * HOTP (RFC 4226) and TOTP (RFC 6238) with BoringSSL's HMAC, base32 and the
 * otpauth:// URI of a secret (totp.h).
 */
#include "totp.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

static const uint32_t dec_pow[] = {1,	   10,	    100,      1000,	 10000,
				   100000, 1000000, 10000000, 100000000, 1000000000};

int64_t hotp(const uint8_t *key, size_t keylen, uint64_t counter, enum totp_alg alg,
	     unsigned digits)
{
	const EVP_MD *md = alg == TOTP_SHA1	? EVP_sha1()
			   : alg == TOTP_SHA256 ? EVP_sha256()
			   : alg == TOTP_SHA512 ? EVP_sha512()
						: NULL;
	uint8_t msg[8], mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0, off;
	uint32_t bin;

	if (!md || digits < 1 || digits > 9 || !key)
		return -1;
	for (int i = 7; i >= 0; i--) {
		msg[i] = (uint8_t)counter;
		counter >>= 8;
	}
	if (!HMAC(md, key, keylen, msg, sizeof(msg), mac, &maclen) || maclen < 20)
		return -1;
	/* dynamic truncation (RFC 4226 5.3) */
	off = mac[maclen - 1] & 0x0f;
	bin = (uint32_t)(mac[off] & 0x7f) << 24 | (uint32_t)mac[off + 1] << 16 |
	      (uint32_t)mac[off + 2] << 8 | mac[off + 3];
	OPENSSL_cleanse(mac, sizeof(mac));
	return bin % dec_pow[digits];
}

int64_t totp(const uint8_t *key, size_t keylen, uint64_t t, uint64_t t0, unsigned step,
	     enum totp_alg alg, unsigned digits)
{
	if (!step || t < t0)
		return -1;
	return hotp(key, keylen, (t - t0) / step, alg, digits);
}

int totp_check(const uint8_t *key, size_t keylen, const char *code, uint64_t now, int64_t last_step,
	       int64_t *step)
{
	char want[24];
	int64_t cur = (int64_t)(now / TOTP_STEP), found = -1;

	if (!code || strlen(code) != TOTP_DIGITS)
		return -EINVAL;
	for (size_t i = 0; i < TOTP_DIGITS; i++)
		if (code[i] < '0' || code[i] > '9')
			return -EINVAL;
	/* every step of the window is computed and compared: no early exit */
	for (int64_t s = cur - TOTP_WINDOW; s <= cur + TOTP_WINDOW; s++) {
		int64_t v = s < 0 ? -1 : hotp(key, keylen, (uint64_t)s, TOTP_SHA1, TOTP_DIGITS);

		if (v < 0)
			continue;
		snprintf(want, sizeof(want), "%0*lld", TOTP_DIGITS, (long long)v);
		if (!CRYPTO_memcmp(want, code, TOTP_DIGITS) && found < 0)
			found = s;
	}
	OPENSSL_cleanse(want, sizeof(want));
	if (found < 0)
		return -EACCES;
	if (found <= last_step)
		return -EALREADY;
	*step = found;
	return 0;
}

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

size_t totp_b32_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
	size_t o = 0;
	uint32_t acc = 0;
	unsigned bits = 0;

	if (outlen < (n * 8 + 4) / 5 + 1) {
		if (outlen)
			out[0] = 0;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		acc = acc << 8 | in[i];
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			out[o++] = b32[(acc >> bits) & 31];
		}
		acc &= (1u << bits) - 1;
	}
	if (bits)
		out[o++] = b32[(acc << (5 - bits)) & 31];
	out[o] = 0;
	return o;
}

int totp_b32_decode(const char *in, uint8_t *out, size_t max)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;

	for (; *in; in++) {
		const char *p = memchr(b32, *in, 32);

		if (!p || !*in)
			return -1;
		acc = acc << 5 | (uint32_t)(p - b32);
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			if (o == max)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return bits >= 5 || acc ? -1 : (int)o;
}

static bool uri_safe(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return false;
	return true;
}

int totp_uri(const char *issuer, const char *account, const char *secret, char *out, size_t outlen)
{
	int n;

	if (!uri_safe(issuer) || !uri_safe(account) || !uri_safe(secret))
		return -1;
	n = snprintf(out, outlen,
		     "otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1&digits=%d&period=%d",
		     issuer, account, secret, issuer, TOTP_DIGITS, TOTP_STEP);
	return n > 0 && (size_t)n < outlen ? 0 : -1;
}

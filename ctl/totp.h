/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One-time passwords for the admin users' second factor: HOTP (RFC 4226) and
 * TOTP (RFC 6238) over HMAC-SHA1/256/512 (BoringSSL), with the algorithm and
 * the number of digits as parameters (the published test vectors use 8
 * digits and all three); the users' codes are TOTP_DIGITS digits of SHA-1
 * every TOTP_STEP seconds, as authenticator apps expect. Base32 (RFC 4648,
 * no padding) for the secret shown to the user, and its otpauth:// URI.
 */
#ifndef NAVE_TOTP_H
#define NAVE_TOTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum totp_alg { TOTP_SHA1, TOTP_SHA256, TOTP_SHA512 };

#define TOTP_SECRET_LEN 20 /* bytes of a user's secret */
#define TOTP_B32_LEN	33 /* base32 of TOTP_SECRET_LEN bytes (32 chars) + NUL */
#define TOTP_STEP	30
#define TOTP_DIGITS	6
#define TOTP_WINDOW	1 /* steps accepted either side of now */

/*
 * HOTP(key, counter) truncated to digits (1..9) decimal digits: the code as
 * a number (print it with leading zeros), or -1 (a bad parameter).
 */
int64_t hotp(const uint8_t *key, size_t keylen, uint64_t counter, enum totp_alg alg,
	     unsigned digits);
/* TOTP at Unix time t: HOTP of (t - t0) / step. -1 on a bad parameter. */
int64_t totp(const uint8_t *key, size_t keylen, uint64_t t, uint64_t t0, unsigned step,
	     enum totp_alg alg, unsigned digits);

/*
 * Checks a user's code (exactly TOTP_DIGITS decimal digits) at time now
 * against the steps now-TOTP_WINDOW..now+TOTP_WINDOW (SHA-1, TOTP_STEP,
 * t0 0), comparing in constant time. A step at or below last_step (the last
 * one accepted for this secret, 0: none) is a replay. 0 with *step the one
 * that matched; -EINVAL (not a code), -EACCES (no match), -EALREADY (replay).
 */
int totp_check(const uint8_t *key, size_t keylen, const char *code, uint64_t now, int64_t last_step,
	       int64_t *step);

/* Base32 of n bytes, upper case, no padding, into out (NUL-terminated); its length or 0. */
size_t totp_b32_encode(const uint8_t *in, size_t n, char *out, size_t outlen);
/* Strict base32 (upper case, no padding, zero trailing bits) into at most max bytes: the count, or
 * -1. */
int totp_b32_decode(const char *in, uint8_t *out, size_t max);

/*
 * "otpauth://totp/ISSUER:ACCOUNT?secret=B32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30"
 * for an account and an issuer of [A-Za-z0-9._-] (others are refused: -1).
 */
int totp_uri(const char *issuer, const char *account, const char *b32, char *out, size_t outlen);

#endif

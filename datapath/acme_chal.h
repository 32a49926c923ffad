/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ACME HTTP-01 answers relayd gives (RFC 8555 section 8.3): controld's
 * ACME client (ctl/acme.c) publishes a token and its key authorization for a
 * domain over the relay link (CTL_ACME_CHALLENGE), and the HTTP edge answers
 * "GET /.well-known/acme-challenge/TOKEN" with Host DOMAIN itself, on plain
 * HTTP only, before any routing. A request for a token nobody published goes
 * on to the tunnel that serves the host, as any request does.
 *
 * One table per process, behind a mutex: answers are rare (a CA's few
 * validation requests), entries expire after ACME_CHAL_TTL_MS.
 */
#ifndef NAVE_ACME_CHAL_H
#define NAVE_ACME_CHAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACME_CHAL_MAX	 64
#define ACME_TOKEN_MIN	 16 /* RFC 8555: at least 128 bits of base64url */
#define ACME_TOKEN_MAX	 128
#define ACME_KEYAUTH_MAX (ACME_TOKEN_MAX + 1 + 43) /* TOKEN "." base64url(SHA-256) */
#define ACME_CHAL_TTL_MS (10 * 60 * 1000)
#define ACME_CHAL_PREFIX "/.well-known/acme-challenge/"

/*
 * Publishes keyauth for token on domain (replacing an entry of the same
 * token). Every string is checked here, where it enters: domain a DNS name,
 * token 16..128 of base64url, keyauth TOKEN "." and 43 of base64url. 0, or
 * -1 with the reason in *why.
 */
int acme_chal_set(const char *domain, const char *token, const char *keyauth, uint64_t now,
		  const char **why);
/* Withdraws token (no error when it is not there). */
void acme_chal_del(const char *token);
/*
 * The key authorization for token (tlen bytes, not NUL-terminated) on host,
 * copied into out (ACME_KEYAUTH_MAX + 1 bytes): its length, or 0 when none
 * is published (or it expired).
 */
size_t acme_chal_find(const char *host, const char *token, size_t tlen, char *out, uint64_t now);
/* How many are published (stats, tests). */
unsigned acme_chal_count(uint64_t now);

#endif

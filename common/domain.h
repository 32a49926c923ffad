/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Domain names for the HTTP/HTTPS edge: what a client claims (`nave tunnel
 * http add --domain`), what an administrator allows (`[http]
 * allowed_domains`), and what a public request names (Host, SNI).
 *
 * A name is 1-253 characters of [a-z0-9.-] (uppercase accepted and
 * lowercased), labels 1-63 that neither start nor end with '-', no trailing
 * dot. A pattern may
 * also be a wildcard: "*." followed by a name; "*.example.com" matches every
 * name that ends in ".example.com", at any depth, and not "example.com"
 * itself. Where several patterns match, the most specific wins: an exact
 * name, then the wildcard with the longest suffix (domain_next_suffix walks
 * the candidates in that order).
 */
#ifndef NAVE_DOMAIN_H
#define NAVE_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>

#define DOMAIN_MAX 253

/*
 * Validates the n bytes at s as a name (or, with wildcard, also as "*.NAME")
 * and writes it lowercased and NUL-terminated to out (DOMAIN_MAX + 1 bytes).
 */
bool domain_norm(const char *s, size_t n, char *out, bool wildcard);
/* true when pattern (normalised) matches host (normalised) */
bool domain_match(const char *pattern, const char *host);
/* true when the pattern is a wildcard ("*.") */
static inline bool domain_is_wildcard(const char *pattern)
{
	return pattern[0] == '*' && pattern[1] == '.';
}
/*
 * The wildcard patterns that may match host, most specific first: call with
 * *pos = 0, then again while it returns true; each call writes the next
 * "*.SUFFIX" to out (DOMAIN_MAX + 1 bytes). "a.b.c" gives "*.b.c", "*.c".
 */
bool domain_next_wildcard(const char *host, size_t *pos, char *out);

#endif

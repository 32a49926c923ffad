// SPDX-License-Identifier: Apache-2.0
#include "domain.h"

#include <string.h>

bool domain_norm(const char *s, size_t n, char *out, bool wildcard)
{
	size_t label = 0, o = 0;

	if (wildcard && n >= 2 && s[0] == '*' && s[1] == '.') {
		out[o++] = '*';
		out[o++] = '.';
		s += 2;
		n -= 2;
	}
	if (n == 0 || o + n > DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false; /* empty label, or one that ends in '-' */
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			   (c >= 'A' && c <= 'Z')) {
			if (++label > 63 || (label == 1 && c == '-'))
				return false; /* too long, or starts with '-' */
			if (c >= 'A' && c <= 'Z')
				c = (unsigned char)(c - 'A' + 'a');
		} else {
			return false;
		}
		out[o++] = (char)c;
	}
	if (label == 0 || s[n - 1] == '-')
		return false; /* trailing dot or '-' */
	out[o] = '\0';
	return true;
}

bool domain_match(const char *pattern, const char *host)
{
	size_t pl, hl;

	if (!domain_is_wildcard(pattern))
		return !strcmp(pattern, host);
	pattern++; /* ".SUFFIX" */
	pl = strlen(pattern);
	hl = strlen(host);
	return hl > pl && !strcmp(host + hl - pl, pattern);
}

bool domain_next_wildcard(const char *host, size_t *pos, char *out)
{
	const char *dot = strchr(host + *pos, '.');
	size_t len;

	if (!dot)
		return false;
	len = strlen(dot);
	if (len + 1 > DOMAIN_MAX)
		return false;
	out[0] = '*';
	memcpy(out + 1, dot, len + 1);
	*pos = (size_t)(dot - host) + 1;
	return true;
}

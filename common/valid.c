// SPDX-License-Identifier: Apache-2.0
/* Length limits and alphabets of untrusted strings (valid.h). */
#include "valid.h"

#include <stdio.h>
#include <string.h>

#include "link_proto.h"
#include "util.h"

static bool alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool char_ok(unsigned char c, enum valid_kind kind)
{
	switch (kind) {
	case VALID_ID:
		return alnum(c) || c == '.' || c == '_' || c == '-';
	case VALID_NAME:
		return alnum(c) || c == '_' || c == '-';
	case VALID_VERSION:
		return alnum(c) || c == '.' || c == '_' || c == '-' || c == '+';
	case VALID_TOKEN:
		return alnum(c) || c == '_';
	case VALID_TEXT:
		break;
	}
	return false;
}

/* UTF-8 of printable characters only (utf8_printable). */
static bool text_ok(const unsigned char *s, size_t n)
{
	for (size_t i = 0, len; i < n; i += len) {
		uint32_t cp;

		len = utf8_decode(s + i, n - i, &cp);
		if (!len || !utf8_printable(cp))
			return false;
	}
	return true;
}

bool valid_str(const char *s, enum valid_kind kind, size_t max)
{
	size_t n;

	if (!s)
		return false;
	n = strlen(s);
	if (n == 0 || n > max)
		return false;
	if (kind == VALID_TEXT)
		return text_ok((const unsigned char *)s, n);
	for (size_t i = 0; i < n; i++)
		if (!char_ok((unsigned char)s[i], kind))
			return false;
	return true;
}

bool valid_text_chars(const char *s, size_t n, size_t max_chars)
{
	size_t chars = 0;

	if (!s || memchr(s, 0, n))
		return false;
	for (size_t i = 0, len; i < n; i += len, chars++) {
		uint32_t cp;

		len = utf8_decode((const unsigned char *)s + i, n - i, &cp);
		if (!len || !utf8_printable(cp) || chars >= max_chars)
			return false;
	}
	return true;
}

const char *valid_alphabet(enum valid_kind kind)
{
	switch (kind) {
	case VALID_ID:
		return "letters, digits, '.', '_' and '-'";
	case VALID_NAME:
		return "letters, digits, '_' and '-'";
	case VALID_VERSION:
		return "letters, digits, '.', '_', '+' and '-'";
	case VALID_TOKEN:
		return "letters, digits and '_'";
	case VALID_TEXT:
		break;
	}
	return "UTF-8 text without control characters";
}

bool valid_members(const json_t *obj, const struct valid_field *f, size_t n, char *err,
		   size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		const json_t *v = json_object_get(obj, f[i].key);

		if (!v || json_is_null(v)) {
			if (!f[i].required)
				continue;
			snprintf(err, errlen, "%s is missing", f[i].key);
			return false;
		}
		if (!json_is_string(v) || !valid_str(json_string_value(v), f[i].kind, f[i].max) ||
		    strlen(json_string_value(v)) != json_string_length(v)) {
			snprintf(err, errlen, "%s must be 1-%zu characters: %s", f[i].key, f[i].max,
				 valid_alphabet(f[i].kind));
			return false;
		}
	}
	return true;
}

bool valid_tunnel_id_shaped(const char *s)
{
	size_t n;

	if (!s || (s[0] != 't' && s[0] != 'T') || s[1] != '-')
		return false;
	n = strlen(s + 2);
	return n && strspn(s + 2, "0123456789abcdefABCDEF") == n;
}

bool valid_hello(const json_t *obj, char *err, size_t errlen)
{
	static const struct valid_field fields[] = {
	    {"hostname", VALID_ID, LINK_HOSTNAME_MAX, false},
	    {"os", VALID_ID, LINK_OS_MAX, false},
	    {"arch", VALID_ID, LINK_OS_MAX, false},
	    {"client_version", VALID_VERSION, LINK_VERSION_MAX, false},
	    {"id", VALID_ID, LINK_GROUP_MAX, false},
	    {"token", VALID_TOKEN, LINK_TOKEN_MAX, false},
	    {"registration", VALID_TOKEN, LINK_TOKEN_MAX, false},
	};

	const char *id = json_string_value(json_object_get(obj, "id"));

	if (!valid_members(obj, fields, ARRAY_SIZE(fields), err, errlen))
		return false;
	/* the id becomes the group id: never one a mesh rule could take for a tunnel id */
	if (valid_tunnel_id_shaped(id)) {
		snprintf(err, errlen, "\"id\" must not look like a tunnel id (t- and hex digits)");
		return false;
	}
	return true;
}

void valid_fit(char *s, enum valid_kind kind, size_t max)
{
	size_t n = strlen(s);

	if (n > max)
		s[n = max] = 0;
	for (size_t i = 0; i < n; i++)
		if (kind != VALID_TEXT && !char_ok((unsigned char)s[i], kind))
			s[i] = '-';
	if (!n) {
		s[0] = '-';
		s[1] = 0;
	}
}

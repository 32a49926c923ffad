/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Untrusted strings, checked where they enter: the link protocol (a client's
 * HELLO and requests, at relayd), relay.sock (again at controld) and the
 * admin API. Each string has a length limit and an alphabet; anything else
 * is refused with a one-line reason naming the field, never cut or cleaned
 * silently. The limits of the link protocol are in link_proto.h.
 */
#ifndef NAVE_VALID_H
#define NAVE_VALID_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum valid_kind {
	VALID_ID,      /* [A-Za-z0-9._-]: ids, group names, host names, os, arch */
	VALID_NAME,    /* [A-Za-z0-9_-]: rule names */
	VALID_VERSION, /* [A-Za-z0-9._+-]: version strings */
	VALID_TOKEN,   /* [A-Za-z0-9_]: tokens */
	VALID_TEXT,    /* printable UTF-8 (utf8_printable): free text */
};

/* True when s is 1..max bytes of the kind. */
bool valid_str(const char *s, enum valid_kind kind, size_t max);
/*
 * True when the n bytes at s are 0..max_chars characters of printable UTF-8
 * (utf8_printable: no control characters, no NUL): free text limited in
 * characters rather than bytes (a support session's reason).
 */
bool valid_text_chars(const char *s, size_t n, size_t max_chars);
/* The alphabet of a kind, for messages ("letters, digits, '.', '_' and '-'"). */
const char *valid_alphabet(enum valid_kind kind);

/* One string member of a JSON object. */
struct valid_field {
	const char *key;
	enum valid_kind kind;
	size_t max;
	bool required;
};

/*
 * Checks the listed members of obj: an absent (or null) member is fine
 * unless required; a present one must be a string of its kind and length.
 * false with "KEY must be 1-MAX characters of ALPHABET" (or similar) in err.
 */
bool valid_members(const json_t *obj, const struct valid_field *f, size_t n, char *err,
		   size_t errlen);

/*
 * s has the shape of a server-assigned tunnel id ("t-" and hex digits, any
 * case). A client may not name itself so (HELLO id, token id): its id becomes
 * the tunnel's group id, which mesh rules must never take for a tunnel id.
 */
bool valid_tunnel_id_shaped(const char *s);

/* The string members of a HELLO (link_proto.h) and of relay.sock's auth; an "id"
 * shaped like a tunnel id is refused. */
bool valid_hello(const json_t *obj, char *err, size_t errlen);

/*
 * Makes a local string fit a kind before it is sent (the client's own host
 * name): characters outside the alphabet become '-', the rest is cut at max.
 * An empty result becomes "-". Not for VALID_TEXT.
 */
void valid_fit(char *s, enum valid_kind kind, size_t max);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client's own static file server for HTTP rules with a webroot. One
 * thread serves HTTP/1.1 on an AF_UNIX socket (mode 0600, beside the local
 * control socket); the datapath connects to it like to any local service,
 * and the request's Host picks the webroot among the rules (the edge has
 * already routed by Host). GET and HEAD only; files opened beneath the
 * webroot with openat2(RESOLVE_BENEATH); see webroot.c.
 */
#ifndef NAVE_WEBROOT_H
#define NAVE_WEBROOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define WEBROOT_MAX_CONNS	256
#define WEBROOT_HEAD_MAX	16384
#define WEBROOT_HEAD_TIMEOUT_MS 10000
#define WEBROOT_IDLE_TIMEOUT_MS 60000

struct webroot;

/*
 * Listens on path (an old socket there is replaced) and starts the thread.
 * NULL with a one-line reason in err.
 */
struct webroot *webroot_start(const char *path, char *err, size_t errlen);
/* The socket's address (for engine_rule.to). */
void webroot_addr(const struct webroot *w, struct sockaddr_storage *ss, socklen_t *len);
/*
 * Serves dir (an absolute directory, opened now) for Host names that pattern
 * (a normalised name or "*.NAME") matches. 0 or -1 with the reason in err.
 */
int webroot_add(struct webroot *w, const char *pattern, const char *dir, char *err, size_t errlen);
/* Stops serving pattern. */
void webroot_remove(struct webroot *w, const char *pattern);
/* Stops the thread, closes every connection, removes the socket. NULL-safe. */
void webroot_stop(struct webroot *w);

/* ---- the pieces, exported for tests/unit/test_webroot.c ---- */

/*
 * Percent-decodes the path of a request target (n bytes, up to '?' or '#')
 * once into out (a relative path without the leading '/', NUL-terminated).
 * Refuses (false) NUL, backslashes, bad escapes, a '.' or '..' segment, and
 * an empty segment inside the path. "/" gives "". A trailing '/' is kept.
 */
bool webroot_path(const char *target, size_t n, char *out, size_t outlen);
/*
 * A Range header value against a file of size bytes: 1 with [*first, *last]
 * for one satisfiable range, 0 to serve the whole file (no usable Range:
 * several ranges, another unit, a malformed value), -1 unsatisfiable (416).
 */
int webroot_range(const char *v, size_t n, uint64_t size, uint64_t *first, uint64_t *last);
/* The Content-Type of a file name by its extension. */
const char *webroot_content_type(const char *name);
/* An HTTP date (IMF-fixdate) into out (30 bytes); webroot_parse_date: -1 if not one. */
void webroot_http_date(time_t t, char *out, size_t len);
time_t webroot_parse_date(const char *s, size_t n);

#endif

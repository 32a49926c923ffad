/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The web dashboard's static files (ctl/ui/), embedded in nave-controld at
 * build time (ctl/ui-embed.sh writes ui_files[]) and served on the admin
 * listener without authentication: the page itself holds no data, every
 * datum comes from /api/v1, which requires a login.
 */
#ifndef NAVE_CTL_UI_H
#define NAVE_CTL_UI_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

struct ui_file {
	const char *path; /* "/index.html" */
	const unsigned char *data;
	size_t len;
	const char *type; /* Content-Type */
	const char *etag; /* quoted */
};

extern const struct ui_file ui_files[];
extern const size_t ui_nfiles;

/* The file served for a (decoded) URL path: "/" is /index.html; NULL when none. */
const struct ui_file *ui_find(const char *url);

/* Is url the dashboard's to answer? Everything but /api and what is under /api/. */
bool ui_owns(const char *url);

/*
 * Answers a request for a path ui_owns: GET or HEAD of a file (200, or 304 for
 * an If-None-Match of its ETag), 405 for another method, 404 for any other
 * path; every answer with the security headers (CSP, nosniff, no framing, no
 * referrer). MHD_NO when no response could be queued.
 */
enum MHD_Result ui_serve(struct MHD_Connection *conn, const char *method, const char *url);

#endif

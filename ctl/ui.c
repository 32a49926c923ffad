// SPDX-License-Identifier: Apache-2.0
/*
 * The web dashboard's files on the admin listener (ui.h). The files are the
 * embedded ui_files[], matched exactly by path: nothing is read from disk, so
 * no path can reach outside them. Every answer carries a Content-Security-
 * Policy that allows only this origin's own scripts and styles (the pages hold
 * no inline script or style), forbids framing, and sends no referrer.
 */
#include "ui.h"

#include <string.h>

#include "log.h"

#define CSP                                                                                        \
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "                \
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "             \
	"frame-ancestors 'none'"

const struct ui_file *ui_find(const char *url)
{
	if (!strcmp(url, "/"))
		url = "/index.html";
	for (size_t i = 0; i < ui_nfiles; i++)
		if (!strcmp(ui_files[i].path, url))
			return &ui_files[i];
	return NULL;
}

bool ui_owns(const char *url)
{
	return strcmp(url, "/api") != 0 && strncmp(url, "/api/", 5) != 0;
}

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *type,
			      const void *body, size_t len, const char *etag, const char *cache)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO;
	if ((type &&
	     MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES) ||
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cache) != MHD_YES ||
	    MHD_add_response_header(resp, "Content-Security-Policy", CSP) != MHD_YES ||
	    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") != MHD_YES ||
	    MHD_add_response_header(resp, "X-Frame-Options", "DENY") != MHD_YES ||
	    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer") != MHD_YES ||
	    MHD_add_response_header(resp, "Cross-Origin-Opener-Policy", "same-origin") != MHD_YES ||
	    MHD_add_response_header(resp, "Cross-Origin-Resource-Policy", "same-origin") !=
		MHD_YES ||
	    (etag && MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag) != MHD_YES) ||
	    (status == MHD_HTTP_METHOD_NOT_ALLOWED &&
	     MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") != MHD_YES)) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

enum MHD_Result ui_serve(struct MHD_Connection *conn, const char *method, const char *url)
{
	static const char not_found[] = "not found\n", not_allowed[] = "method not allowed\n";
	const struct ui_file *f;
	const char *inm;

	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		log_debug("ui: %s refused (GET and HEAD only)", method);
		return answer(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
			      not_allowed, sizeof(not_allowed) - 1, NULL, "no-store");
	}
	f = ui_find(url);
	if (!f)
		return answer(conn, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", not_found,
			      sizeof(not_found) - 1, NULL, "no-store");
	/* no-cache: the browser asks each time and gets a 304 while the file is the same */
	inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	if (inm && !strcmp(inm, f->etag))
		return answer(conn, MHD_HTTP_NOT_MODIFIED, NULL, "", 0, f->etag, "no-cache");
	return answer(conn, MHD_HTTP_OK, f->type, f->data, f->len, f->etag, "no-cache");
}

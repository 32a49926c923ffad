// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the dashboard's file server (ctl/ui.c) and its embedded files
 * (ctl/ui-embed.sh): the files are ctl/ui/ byte for byte; served by a real
 * libmicrohttpd on loopback, each has its Content-Type, ETag, caching and the
 * security headers; HEAD, 304, 405 and 404 (paths that are not exactly a file,
 * traversal included); /api/ is never the dashboard's. Run from the top of the
 * tree (make unit does), where ctl/ui/ is.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctl/ui.h"

static struct MHD_Daemon *mhd;
static uint16_t port;

/* The listener's other half, as controld's: /api/ goes to the API (here a 418). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	static const char api[] = "api\n";
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (ui_owns(url))
		return ui_serve(conn, method, url);
	r = MHD_create_response_from_buffer(sizeof(api) - 1, (void *)api, MHD_RESPMEM_PERSISTENT);
	ret = MHD_queue_response(conn, 418, r);
	MHD_destroy_response(r);
	return ret;
}

/* As controld's listeners decode paths (api.c): a control byte becomes 0x7f, nothing is cut. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	size_t n = MHD_http_unescape(s);

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20)
			s[i] = 0x7f;
	s[n] = 0;
	return n;
}

static int setup(void **state)
{
	const union MHD_DaemonInfo *info;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
			       on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
			       MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_END);
	if (!mhd)
		return -1;
	info = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_BIND_PORT);
	port = info ? info->port : 0;
	return port ? 0 : -1;
}

static int teardown(void **state)
{
	MHD_stop_daemon(mhd);
	return 0;
}

struct resp {
	int status;
	char head[8192];
	char *body;
	size_t len;
};

/* One request (raw, extra header lines in hdrs) on a new connection; the whole answer. */
static void request(struct resp *r, const char *method, const char *target, const char *hdrs)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char req[1024];
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap), *end;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ssize_t k;

	assert_non_null(buf);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n",
		 method, target, hdrs ? hdrs : "");
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while ((k = read(fd, buf + n, cap - n - 1)) > 0) {
		n += (size_t)k;
		if (n + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
	}
	close(fd);
	buf[n] = 0;
	end = strstr(buf, "\r\n\r\n");
	assert_non_null(end);
	assert_true((size_t)(end - buf) < sizeof(r->head));
	memcpy(r->head, buf, (size_t)(end - buf));
	r->head[end - buf] = 0;
	assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &r->status), 1);
	r->len = n - (size_t)(end + 4 - buf);
	r->body = malloc(r->len + 1);
	assert_non_null(r->body);
	memcpy(r->body, end + 4, r->len + 1);
	free(buf);
}

/* A header's value (case-insensitive name), or NULL. */
static const char *header(const struct resp *r, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);

	for (const char *p = strstr(r->head, "\r\n"); p; p = strstr(p, "\r\n")) {
		p += 2;
		if (!strncasecmp(p, name, nl) && p[nl] == ':') {
			const char *v = p + nl + 1, *e = strstr(v, "\r\n");
			size_t len = e ? (size_t)(e - v) : strlen(v);

			while (*v == ' ')
				v++, len--;
			snprintf(out, outlen, "%.*s", (int)len, v);
			return out;
		}
	}
	return NULL;
}

static void security_headers(const struct resp *r)
{
	char v[512];

	assert_non_null(header(r, "Content-Security-Policy", v, sizeof(v)));
	assert_non_null(strstr(v, "default-src 'self'"));
	assert_non_null(strstr(v, "frame-ancestors 'none'"));
	assert_null(strstr(v, "unsafe"));
	assert_string_equal(header(r, "X-Content-Type-Options", v, sizeof(v)), "nosniff");
	assert_string_equal(header(r, "X-Frame-Options", v, sizeof(v)), "DENY");
	assert_string_equal(header(r, "Referrer-Policy", v, sizeof(v)), "no-referrer");
}

static void resp_free(struct resp *r)
{
	free(r->body);
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b;
	long n;

	if (!f)
		fail_msg("%s: cannot open (run from the top of the tree)", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = malloc((size_t)n + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	b[n] = 0;
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* Every file of ctl/ui/ the dashboard is made of is embedded, byte for byte. */
static void test_embedded(void **state)
{
	DIR *d = opendir("ctl/ui");
	struct dirent *e;
	size_t seen = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		const char *dot = strrchr(e->d_name, '.');
		char path[512], url[300];
		const struct ui_file *f;
		size_t len;
		char *data;

		if (!dot || (strcmp(dot, ".html") && strcmp(dot, ".css") && strcmp(dot, ".js") &&
			     strcmp(dot, ".svg")))
			continue;
		snprintf(path, sizeof(path), "ctl/ui/%s", e->d_name);
		snprintf(url, sizeof(url), "/%s", e->d_name);
		f = ui_find(url);
		if (!f)
			fail_msg("%s is not embedded", path);
		data = read_file(path, &len);
		assert_int_equal(f->len, len);
		assert_memory_equal(f->data, data, len);
		free(data);
		seen++;
	}
	closedir(d);
	assert_int_equal(seen, ui_nfiles);
	assert_true(ui_nfiles >= 4);
	assert_ptr_equal(ui_find("/"), ui_find("/index.html"));
}

/* What the CSP relies on: no inline script, style or handler; no HTML built from strings. */
static void test_no_inline_code(void **state)
{
	static const char *const js_bad[] = {"innerHTML",      "outerHTML", "insertAdjacentHTML",
					     "document.write", "eval(",	    "new Function"};
	const struct ui_file *html = ui_find("/index.html"), *js = ui_find("/app.js");
	char *h, *j;

	assert_non_null(html);
	assert_non_null(js);
	h = strndup((const char *)html->data, html->len);
	j = strndup((const char *)js->data, js->len);
	assert_null(strstr(h, "<script>"));
	assert_null(strstr(h, "style="));
	assert_null(strstr(h, "<style"));
	assert_null(strstr(h, " onclick="));
	assert_null(strstr(h, " onsubmit="));
	assert_null(strstr(h, " onload="));
	assert_null(strstr(h, "http://"));
	assert_null(strstr(h, "https://"));
	for (size_t i = 0; i < sizeof(js_bad) / sizeof(js_bad[0]); i++)
		if (strstr(j, js_bad[i]))
			fail_msg("app.js uses %s", js_bad[i]);
	free(h);
	free(j);
}

static void get_file(const char *target, const char *file, const char *type)
{
	const struct ui_file *f = ui_find(file);
	struct resp r;
	char v[256], len[32];

	assert_non_null(f);
	request(&r, "GET", target, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(header(&r, "Content-Type", v, sizeof(v)), type);
	assert_string_equal(header(&r, "Cache-Control", v, sizeof(v)), "no-cache");
	assert_string_equal(header(&r, "ETag", v, sizeof(v)), f->etag);
	snprintf(len, sizeof(len), "%zu", f->len);
	assert_string_equal(header(&r, "Content-Length", v, sizeof(v)), len);
	security_headers(&r);
	assert_int_equal(r.len, f->len);
	assert_memory_equal(r.body, f->data, f->len);
	resp_free(&r);
}

static void test_get(void **state)
{
	get_file("/", "/index.html", "text/html; charset=utf-8");
	get_file("/index.html", "/index.html", "text/html; charset=utf-8");
	get_file("/app.js", "/app.js", "text/javascript; charset=utf-8");
	get_file("/style.css", "/style.css", "text/css; charset=utf-8");
	get_file("/favicon.svg", "/favicon.svg", "image/svg+xml");
	/* a query is not part of the path */
	get_file("/app.js?v=1", "/app.js", "text/javascript; charset=utf-8");
}

static void test_head_and_304(void **state)
{
	const struct ui_file *f = ui_find("/app.js");
	struct resp r;
	char v[256], hdr[128], len[32];

	request(&r, "HEAD", "/app.js", NULL);
	assert_int_equal(r.status, 200);
	snprintf(len, sizeof(len), "%zu", f->len);
	assert_string_equal(header(&r, "Content-Length", v, sizeof(v)), len);
	assert_int_equal(r.len, 0);
	security_headers(&r);
	resp_free(&r);

	snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", f->etag);
	request(&r, "GET", "/app.js", hdr);
	assert_int_equal(r.status, 304);
	assert_int_equal(r.len, 0);
	assert_string_equal(header(&r, "ETag", v, sizeof(v)), f->etag);
	resp_free(&r);

	/* another ETag: the file */
	request(&r, "GET", "/app.js", "If-None-Match: \"0000000000000000\"\r\n");
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, f->len);
	resp_free(&r);
}

static void test_methods(void **state)
{
	static const char *const methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
	struct resp r;
	char v[64];

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		request(&r, methods[i], "/index.html", "Content-Length: 0\r\n");
		if (r.status != 405)
			fail_msg("%s /index.html: %d", methods[i], r.status);
		assert_string_equal(header(&r, "Allow", v, sizeof(v)), "GET, HEAD");
		security_headers(&r);
		resp_free(&r);
	}
}

static void test_not_found(void **state)
{
	static const char *const paths[] = {
	    "/nope",	    "/index.htm",	"/index.html/",	  "/INDEX.HTML", "//index.html",
	    "/../ctl/ui.c", "/%2e%2e/Makefile", "/ui/index.html", "/ui.c",	 "/app.js%00",
	    "/.",	    "/favicon.ico",	"/api-docs",
	};
	struct resp r;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		request(&r, "GET", paths[i], NULL);
		if (r.status != 404)
			fail_msg("GET %s: %d, not 404", paths[i], r.status);
		assert_string_equal(r.body, "not found\n");
		security_headers(&r);
		resp_free(&r);
	}
}

static void test_api_is_not_ours(void **state)
{
	static const char *const api[] = {"/api", "/api/", "/api/v1/status", "/api/v1/login"};
	struct resp r;

	assert_false(ui_owns("/api"));
	assert_false(ui_owns("/api/v1/tunnels"));
	assert_true(ui_owns("/"));
	assert_true(ui_owns("/apix"));
	assert_true(ui_owns("/app.js"));
	for (size_t i = 0; i < sizeof(api) / sizeof(api[0]); i++) {
		request(&r, "GET", api[i], NULL);
		if (r.status != 418)
			fail_msg("GET %s: %d from the dashboard", api[i], r.status);
		resp_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_embedded),
	    cmocka_unit_test(test_no_inline_code),
	    cmocka_unit_test(test_get),
	    cmocka_unit_test(test_head_and_304),
	    cmocka_unit_test(test_methods),
	    cmocka_unit_test(test_not_found),
	    cmocka_unit_test(test_api_is_not_ours),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * The client's static file server (webroot.h). One thread, one epoll loop,
 * non-blocking sockets, at most WEBROOT_MAX_CONNS connections (beyond: 503
 * and close). A thread per connection would make the bound and the
 * timeouts each thread's business; one loop scans its connections once a
 * second for both, and the work per request (an openat2, an fstat, a
 * sendfile in steps as the socket drains) never blocks for long.
 *
 * A connection reads until it holds a whole request head (at most
 * WEBROOT_HEAD_MAX bytes, within WEBROOT_HEAD_TIMEOUT_MS of its first byte),
 * has libhttp-parser check it, answers, and keeps the connection for the
 * next request (WEBROOT_IDLE_TIMEOUT_MS without one closes it). A request
 * with a body is answered and the connection closed (GET and HEAD have none).
 *
 * Paths: the target is percent-decoded once; NUL, '\', '.' and '..'
 * segments and empty segments are refused (400), and the file is opened
 * with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) relative to the
 * webroot's directory fd, so neither '..' nor a symlink leaves it. Without
 * openat2 (ENOSYS) the file is opened with openat and its real path must
 * lie under the webroot's. Only regular files are served; a directory gives
 * its index.html (a target without its trailing '/' is redirected first),
 * never a listing.
 */
#include "webroot.h"

#include "domain.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define WEBROOT_RULES  64
#define OUT_HEAD_MAX   1024
#define SENDFILE_STEP  (1u << 20)
#define WRITE_STALL_MS WEBROOT_IDLE_TIMEOUT_MS

struct site {
	char pattern[DOMAIN_MAX + 1];
	char dir[PATH_MAX]; /* the real path, for the fallback check */
	int dfd;	    /* O_PATH | O_DIRECTORY */
};

struct wconn {
	int fd;
	char *in; /* WEBROOT_HEAD_MAX + 1 */
	size_t in_len;
	uint64_t head_start; /* first byte of the current head, 0 none */
	uint64_t last;	     /* last progress */
	/* the response being written */
	bool writing;
	bool close_after;
	char out[OUT_HEAD_MAX];
	size_t out_len, out_off;
	int file;
	off_t file_off;
	uint64_t file_left;
};

struct webroot {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd, efd, stopfd;
	pthread_t thread;
	pthread_mutex_t lock; /* sites */
	struct site sites[WEBROOT_RULES];
	unsigned nsites;
	struct wconn *conns[WEBROOT_MAX_CONNS];
	unsigned nconns;
	bool no_openat2;
};

/* ---------- the pieces (webroot.h) ---------- */

bool webroot_path(const char *target, size_t n, char *out, size_t outlen)
{
	size_t o = 0, seg = 0;

	if (n == 0 || target[0] != '/' || outlen == 0)
		return false;
	for (size_t i = 1; i < n && target[i] != '?' && target[i] != '#'; i++) {
		char c = target[i];

		if (c == '%') {
			int h, l;

			if (i + 2 >= n || (h = hex_val(target[i + 1])) < 0 ||
			    (l = hex_val(target[i + 2])) < 0)
				return false;
			c = (char)(h << 4 | l);
			i += 2;
		}
		if (c == 0 || c == '\\' || (unsigned char)c < 0x20 || c == 0x7f)
			return false;
		if (o + 1 >= outlen)
			return false;
		if (c == '/') {
			/* the segment that ends here: not empty, not "." or ".." */
			if (o == seg || (o - seg == 1 && out[seg] == '.') ||
			    (o - seg == 2 && out[seg] == '.' && out[seg + 1] == '.'))
				return false;
			out[o++] = '/';
			seg = o;
			continue;
		}
		out[o++] = c;
	}
	/* the last segment (empty: a trailing '/', or the root) */
	if ((o - seg == 1 && out[seg] == '.') ||
	    (o - seg == 2 && out[seg] == '.' && out[seg + 1] == '.'))
		return false;
	out[o] = 0;
	return true;
}

/* Decimal digits at s[*i..n) into *v (no overflow past 2^62); false if none. */
static bool range_num(const char *s, size_t n, size_t *i, uint64_t *v)
{
	size_t start = *i;

	*v = 0;
	while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
		if (*v > (UINT64_C(1) << 62) / 10)
			return false;
		*v = *v * 10 + (uint64_t)(s[*i] - '0');
		(*i)++;
	}
	return *i > start;
}

int webroot_range(const char *v, size_t n, uint64_t size, uint64_t *first, uint64_t *last)
{
	uint64_t a = 0, b = 0;
	bool has_a, has_b;
	size_t i = 6;

	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (n < 7 || strncasecmp(v, "bytes=", 6) || memchr(v, ',', n))
		return 0; /* another unit, or several ranges: the whole file */
	has_a = range_num(v, n, &i, &a);
	if (i >= n || v[i] != '-')
		return 0;
	i++;
	has_b = range_num(v, n, &i, &b);
	if (i != n || (!has_a && !has_b))
		return 0;
	if (!has_a) { /* the last b bytes */
		if (b == 0 || size == 0)
			return -1;
		*first = b >= size ? 0 : size - b;
		*last = size - 1;
		return 1;
	}
	if (has_b && b < a)
		return 0; /* invalid: ignored */
	if (a >= size)
		return -1;
	*first = a;
	*last = has_b && b < size ? b : size - 1;
	return 1;
}

const char *webroot_content_type(const char *name)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
	    {"html", "text/html; charset=utf-8"},
	    {"htm", "text/html; charset=utf-8"},
	    {"css", "text/css; charset=utf-8"},
	    {"js", "text/javascript; charset=utf-8"},
	    {"mjs", "text/javascript; charset=utf-8"},
	    {"json", "application/json"},
	    {"png", "image/png"},
	    {"jpg", "image/jpeg"},
	    {"jpeg", "image/jpeg"},
	    {"gif", "image/gif"},
	    {"svg", "image/svg+xml"},
	    {"ico", "image/x-icon"},
	    {"txt", "text/plain; charset=utf-8"},
	    {"wasm", "application/wasm"},
	    {"woff2", "font/woff2"},
	    {"pdf", "application/pdf"},
	};
	const char *slash = strrchr(name, '/'), *dot = strrchr(slash ? slash : name, '.');

	if (dot && dot[1])
		for (size_t i = 0; i < ARRAY_SIZE(types); i++)
			if (!strcasecmp(dot + 1, types[i].ext))
				return types[i].type;
	return "application/octet-stream";
}

void webroot_http_date(time_t t, char *out, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

time_t webroot_parse_date(const char *s, size_t n)
{
	static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	char buf[40];
	struct tm tm;
	int d, y, h, mi, se, m = -1;
	char wd[4], ms[4], tail[4];

	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	/* IMF-fixdate only: "Sun, 06 Nov 1994 08:49:37 GMT" */
	if (n != 29 ||
	    sscanf(buf, "%3s, %2d %3s %4d %2d:%2d:%2d %3s", wd, &d, ms, &y, &h, &mi, &se, tail) !=
		8 ||
	    buf[3] != ',' || strcmp(tail, "GMT"))
		return -1;
	for (int i = 0; i < 12; i++)
		if (!strcmp(ms, mon[i]))
			m = i;
	if (m < 0 || d < 1 || d > 31 || y < 1970 || h > 23 || mi > 59 || se > 60)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_mday = d;
	tm.tm_mon = m;
	tm.tm_year = y - 1900;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	return timegm(&tm);
}

/* ---------- sites ---------- */

int webroot_add(struct webroot *w, const char *pattern, const char *dir, char *err, size_t errlen)
{
	char real[PATH_MAX];
	struct stat st;
	int fd;

	if (!realpath(dir, real)) {
		snprintf(err, errlen, "webroot %s: %s", dir, strerror(errno));
		return -1;
	}
	fd = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "webroot %s: %s", dir,
			 fd < 0 ? strerror(errno) : "not a directory");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	pthread_mutex_lock(&w->lock);
	for (unsigned i = 0; i < w->nsites; i++) {
		if (strcmp(w->sites[i].pattern, pattern))
			continue;
		close(w->sites[i].dfd); /* the same domain again: the new directory */
		w->sites[i].dfd = fd;
		str_copy(w->sites[i].dir, sizeof(w->sites[i].dir), real);
		pthread_mutex_unlock(&w->lock);
		return 0;
	}
	if (w->nsites >= WEBROOT_RULES) {
		pthread_mutex_unlock(&w->lock);
		close(fd);
		snprintf(err, errlen, "too many webroot rules");
		return -1;
	}
	str_copy(w->sites[w->nsites].pattern, sizeof(w->sites[0].pattern), pattern);
	str_copy(w->sites[w->nsites].dir, sizeof(w->sites[0].dir), real);
	w->sites[w->nsites++].dfd = fd;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

void webroot_remove(struct webroot *w, const char *pattern)
{
	pthread_mutex_lock(&w->lock);
	for (unsigned i = 0; i < w->nsites; i++) {
		if (strcmp(w->sites[i].pattern, pattern))
			continue;
		close(w->sites[i].dfd);
		w->sites[i] = w->sites[--w->nsites];
		break;
	}
	pthread_mutex_unlock(&w->lock);
}

/* The site for a normalised host: exact, then the most specific wildcard. Under lock. */
static struct site *site_find(struct webroot *w, const char *host)
{
	char pat[DOMAIN_MAX + 1];
	size_t pos = 0;

	for (unsigned i = 0; i < w->nsites; i++)
		if (!strcmp(w->sites[i].pattern, host))
			return &w->sites[i];
	while (domain_next_wildcard(host, &pos, pat))
		for (unsigned i = 0; i < w->nsites; i++)
			if (!strcmp(w->sites[i].pattern, pat))
				return &w->sites[i];
	return NULL;
}

/* Opens rel beneath the site's directory: an fd, or -errno. Under lock. */
static int open_beneath(struct webroot *w, const struct site *s, const char *rel)
{
	struct open_how how = {
	    .flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	char link[64], real[PATH_MAX];
	size_t dl = strlen(s->dir);
	ssize_t n;
	int fd;

	if (!*rel)
		rel = ".";
	if (!w->no_openat2) {
		fd = (int)syscall(SYS_openat2, s->dfd, rel, &how, sizeof(how));
		if (fd >= 0)
			return fd;
		if (errno != ENOSYS)
			return -errno;
		w->no_openat2 = true;
		log_warn("webroot: no openat2 in this kernel: checking real paths instead");
	}
	fd = openat(s->dfd, rel, (int)how.flags);
	if (fd < 0)
		return -errno;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, real, sizeof(real) - 1);
	if (n < 0 || (size_t)n < dl || memcmp(real, s->dir, dl) ||
	    (real[dl] != '/' && (size_t)n != dl && strcmp(s->dir, "/"))) {
		close(fd);
		return -EXDEV;
	}
	return fd;
}

/* ---------- connections ---------- */

static void conn_free(struct webroot *w, unsigned i)
{
	struct wconn *c = w->conns[i];

	epoll_ctl(w->efd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->file >= 0)
		close(c->file);
	free(c->in);
	free(c);
	w->conns[i] = w->conns[--w->nconns];
}

static void conn_watch(struct webroot *w, struct wconn *c, uint32_t ev)
{
	struct epoll_event e = {.events = ev, .data.ptr = c};

	epoll_ctl(w->efd, EPOLL_CTL_MOD, c->fd, &e);
}

/* What libhttp-parser gives for one request head. */
struct req {
	const char *url, *host, *range, *ims, *other;
	size_t url_len, host_len, range_len, ims_len, other_len;
	int hosts;
	const char *field;
	size_t field_len;
	const char **cur;
	size_t *cur_len;
	bool done;
};

static int on_url(http_parser *p, const char *at, size_t n)
{
	struct req *r = p->data;

	if (!r->url)
		r->url = at;
	r->url_len = (size_t)(at + n - r->url);
	return 0;
}

static int on_field(http_parser *p, const char *at, size_t n)
{
	struct req *r = p->data;

	if (r->cur || !r->field) {
		r->field = at;
		r->cur = NULL;
	}
	r->field_len = (size_t)(at + n - r->field);
	return 0;
}

static int on_value(http_parser *p, const char *at, size_t n)
{
	struct req *r = p->data;

	if (!r->cur) {
		r->cur = &r->other;
		r->cur_len = &r->other_len;
		if (r->field_len == 4 && !strncasecmp(r->field, "host", 4)) {
			r->hosts++;
			r->cur = &r->host;
			r->cur_len = &r->host_len;
		} else if (r->field_len == 5 && !strncasecmp(r->field, "range", 5)) {
			r->cur = &r->range;
			r->cur_len = &r->range_len;
		} else if (r->field_len == 17 && !strncasecmp(r->field, "if-modified-since", 17)) {
			r->cur = &r->ims;
			r->cur_len = &r->ims_len;
		}
		*r->cur = at;
	}
	*r->cur_len = (size_t)(at + n - *r->cur);
	return 0;
}

static int on_headers_done(http_parser *p)
{
	struct req *r = p->data;

	r->done = true;
	http_parser_pause(p, 1); /* the body, if any, is not read */
	return 0;
}

/*
 * Starts a response: status line and headers into c->out. length < 0: no
 * Content-Length (304). body false: no file follows.
 */
static void respond(struct wconn *c, int status, const char *reason, const char *extra,
		    const char *type, int64_t length, bool body)
{
	char date[40], cl[48] = "";

	webroot_http_date(time(NULL), date, sizeof(date));
	if (length >= 0)
		snprintf(cl, sizeof(cl), "Content-Length: %lld\r\n", (long long)length);
	c->out_len = (size_t)snprintf(
	    c->out, sizeof(c->out),
	    "HTTP/1.1 %d %s\r\nServer: nave\r\nDate: %s\r\n%s%s%s%s%s%s\r\n", status, reason, date,
	    type ? "Content-Type: " : "", type ? type : "", type ? "\r\n" : "", extra ? extra : "",
	    cl, c->close_after ? "Connection: close\r\n" : "");
	if (c->out_len >= sizeof(c->out))
		c->out_len = sizeof(c->out) - 1;
	c->out_off = 0;
	c->writing = true;
	if (!body) {
		if (c->file >= 0)
			close(c->file);
		c->file = -1;
		c->file_left = 0;
	}
}

/* A short error page. */
static void respond_error(struct wconn *c, int status, const char *reason, const char *extra)
{
	size_t n;
	char body[96];

	if (status == 400)
		c->close_after = true; /* what follows a bad request cannot be trusted to frame */
	n = (size_t)snprintf(body, sizeof(body), "%d %s\n", status, reason);
	respond(c, status, reason, extra, "text/plain; charset=utf-8", (int64_t)n, false);
	if (c->out_len + n < sizeof(c->out)) {
		memcpy(c->out + c->out_len, body, n);
		c->out_len += n;
	}
}

/* Normalises the Host value (port cut off) into out; false if it is not a name. */
static bool host_name(const char *h, size_t n, char *out)
{
	const char *colon = memrchr(h, ':', n);

	if (colon) {
		for (const char *p = colon + 1; p < h + n; p++)
			if (*p < '0' || *p > '9')
				return false;
		n = (size_t)(colon - h);
	}
	return domain_norm(h, n, out, false);
}

/*
 * Answers one request head (the first head bytes of c->in, already known to
 * be complete). HEAD requests get the headers only.
 */
static void serve(struct webroot *w, struct wconn *c, const struct req *r, const http_parser *p)
{
	char host[DOMAIN_MAX + 1], rel[4096 + 16], lm[40], extra[256];
	bool head = p->method == HTTP_HEAD;
	uint64_t first = 0, last = 0;
	struct stat st;
	struct site *s;
	int fd, rg = 0;

	if (p->method != HTTP_GET && p->method != HTTP_HEAD) {
		respond_error(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n");
		return;
	}
	if (r->hosts != 1 || !host_name(r->host, r->host_len, host)) {
		respond_error(c, 400, "Bad Request", NULL);
		return;
	}
	if (!webroot_path(r->url, r->url_len, rel, sizeof(rel) - 16)) {
		respond_error(c, 400, "Bad Request", NULL);
		return;
	}
	pthread_mutex_lock(&w->lock);
	s = site_find(w, host);
	fd = s ? open_beneath(w, s, rel) : -ENOENT;
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		size_t n = strlen(rel);

		close(fd);
		fd = -EISDIR;
		if (n == 0 || rel[n - 1] == '/') {
			memcpy(rel + n, "index.html", sizeof("index.html"));
			fd = open_beneath(w, s, rel);
		}
	}
	pthread_mutex_unlock(&w->lock);
	if (fd == -EISDIR) {
		/* "/dir" -> "/dir/": relative links in its index.html then resolve */
		size_t q = strcspn(r->url, "?#");

		if (q > r->url_len)
			q = r->url_len;
		if (q > 200) {
			respond_error(c, 404, "Not Found", NULL);
			return;
		}
		snprintf(extra, sizeof(extra), "Location: %.*s/\r\n", (int)q, r->url);
		respond_error(c, 301, "Moved Permanently", extra);
		return;
	}
	if (fd < 0) {
		respond_error(c, 404, "Not Found", NULL);
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		respond_error(c, 404, "Not Found", NULL);
		return;
	}
	fcntl(fd, F_SETFL, 0); /* O_NONBLOCK was for FIFOs only */
	webroot_http_date(st.st_mtime, lm, sizeof(lm));
	if (r->ims && r->ims_len) {
		time_t ims = webroot_parse_date(r->ims, r->ims_len);

		if (ims >= 0 && st.st_mtime <= ims) {
			close(fd);
			snprintf(extra, sizeof(extra), "Last-Modified: %s\r\n", lm);
			respond(c, 304, "Not Modified", extra, NULL, -1, false);
			return;
		}
	}
	if (!head && r->range)
		rg = webroot_range(r->range, r->range_len, (uint64_t)st.st_size, &first, &last);
	if (rg < 0) {
		close(fd);
		snprintf(extra, sizeof(extra), "Content-Range: bytes */%llu\r\n",
			 (unsigned long long)st.st_size);
		respond_error(c, 416, "Range Not Satisfiable", extra);
		return;
	}
	if (c->file >= 0)
		close(c->file);
	c->file = fd;
	if (rg > 0) {
		snprintf(extra, sizeof(extra),
			 "Last-Modified: %s\r\nAccept-Ranges: bytes\r\nContent-Range: bytes "
			 "%llu-%llu/%llu\r\n",
			 lm, (unsigned long long)first, (unsigned long long)last,
			 (unsigned long long)st.st_size);
		c->file_off = (off_t)first;
		c->file_left = last - first + 1;
		respond(c, 206, "Partial Content", extra, webroot_content_type(rel),
			(int64_t)c->file_left, true);
	} else {
		snprintf(extra, sizeof(extra), "Last-Modified: %s\r\nAccept-Ranges: bytes\r\n", lm);
		c->file_off = 0;
		c->file_left = (uint64_t)st.st_size;
		respond(c, 200, "OK", extra, webroot_content_type(rel), (int64_t)c->file_left,
			!head);
	}
	if (head) {
		close(c->file);
		c->file = -1;
		c->file_left = 0;
	}
}

/* Parses the head of n bytes at c->in and answers it. */
static void handle_head(struct webroot *w, struct wconn *c, size_t n)
{
	static const http_parser_settings settings = {
	    .on_url = on_url,
	    .on_header_field = on_field,
	    .on_header_value = on_value,
	    .on_headers_complete = on_headers_done,
	};
	struct req r;
	http_parser p;

	memset(&r, 0, sizeof(r));
	http_parser_init(&p, HTTP_REQUEST);
	p.data = &r;
	http_parser_execute(&p, &settings, c->in, n);
	if (!r.done || !r.url || p.http_major != 1) {
		c->close_after = true;
		respond_error(c, 400, "Bad Request", NULL);
		return;
	}
	c->close_after = !http_should_keep_alive(&p) || (p.flags & F_CHUNKED) ||
			 ((p.flags & F_CONTENTLENGTH) && p.content_length > 0);
	serve(w, c, &r, &p);
}

/* The length of a complete head at the start of c->in (through CRLFCRLF), 0 if none yet. */
static size_t head_len(const struct wconn *c)
{
	const char *e = memmem(c->in, c->in_len, "\r\n\r\n", 4);

	return e ? (size_t)(e - c->in) + 4 : 0;
}

/* Writes what it can; true when the response is done. -1: the connection failed. */
static int conn_write(struct wconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | (c->file_left ? MSG_MORE : 0));

		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		c->out_off += (size_t)n;
		c->last = now_ms();
	}
	while (c->file_left) {
		ssize_t n = sendfile(c->fd, c->file, &c->file_off,
				     c->file_left < SENDFILE_STEP ? c->file_left : SENDFILE_STEP);

		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		if (n == 0) /* the file shrank under us: the length is promised, so close */
			return -1;
		c->file_left -= (uint64_t)n;
		c->last = now_ms();
	}
	if (c->file >= 0)
		close(c->file);
	c->file = -1;
	c->writing = false;
	return 1;
}

/*
 * Moves c on: answers complete heads, writes. false when it is to be closed.
 */
static bool conn_step(struct webroot *w, struct wconn *c, bool readable)
{
	for (;;) {
		if (c->writing) {
			int r = conn_write(c);

			if (r < 0)
				return false;
			if (r == 0) {
				conn_watch(w, c, EPOLLOUT);
				return true;
			}
			if (c->close_after)
				return false;
			conn_watch(w, c, EPOLLIN);
			continue;
		}
		size_t n = head_len(c);

		if (n) {
			handle_head(w, c, n);
			memmove(c->in, c->in + n, c->in_len - n);
			c->in_len -= n;
			c->head_start = c->in_len ? now_ms() : 0;
			continue;
		}
		if (c->in_len >= WEBROOT_HEAD_MAX) {
			c->close_after = true;
			respond_error(c, 431, "Request Header Fields Too Large", NULL);
			continue;
		}
		if (!readable)
			return true;
		ssize_t r = recv(c->fd, c->in + c->in_len, WEBROOT_HEAD_MAX - c->in_len, 0);

		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return false;
		if (r < 0)
			return true;
		if (!c->in_len)
			c->head_start = now_ms();
		c->in_len += (size_t)r;
		c->last = now_ms();
		readable = false; /* once per wakeup; level-triggered epoll calls again */
	}
}

static void conn_accept(struct webroot *w)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
				   "Connection: close\r\nRetry-After: 1\r\n\r\n";
	struct epoll_event e;
	struct wconn *c;
	int fd;

	while ((fd = accept4(w->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
		if (w->nconns >= WEBROOT_MAX_CONNS) {
			if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
				log_debug("webroot: 503 not sent: %s", strerror(errno));
			close(fd);
			log_every(NLOG_WARN, "webroot: %d connections open: refusing more (503)",
				  WEBROOT_MAX_CONNS);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c)
			c->in = malloc(WEBROOT_HEAD_MAX + 1);
		if (!c || !c->in) {
			if (c)
				free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->file = -1;
		c->last = now_ms();
		e.events = EPOLLIN;
		e.data.ptr = c;
		if (epoll_ctl(w->efd, EPOLL_CTL_ADD, fd, &e) < 0) {
			free(c->in);
			free(c);
			close(fd);
			continue;
		}
		w->conns[w->nconns++] = c;
	}
}

static unsigned conn_index(const struct webroot *w, const struct wconn *c)
{
	for (unsigned i = 0; i < w->nconns; i++)
		if (w->conns[i] == c)
			return i;
	return UINT_MAX;
}

/* Closes connections past their header, idle or write deadline. */
static void conn_timeouts(struct webroot *w)
{
	uint64_t now = now_ms();

	for (unsigned i = 0; i < w->nconns;) {
		struct wconn *c = w->conns[i];
		bool late = c->writing	    ? now - c->last > WRITE_STALL_MS
			    : c->head_start ? now - c->head_start > WEBROOT_HEAD_TIMEOUT_MS
					    : now - c->last > WEBROOT_IDLE_TIMEOUT_MS;

		if (late)
			conn_free(w, i);
		else
			i++;
	}
}

static void *webroot_main(void *arg)
{
	struct webroot *w = arg;
	struct epoll_event ev[64];
	uint64_t next_scan = now_ms() + 1000;

	for (;;) {
		int n = epoll_wait(w->efd, ev, ARRAY_SIZE(ev), 1000);

		for (int i = 0; i < n; i++) {
			void *ptr = ev[i].data.ptr;

			if (ptr == &w->stopfd)
				return NULL;
			if (ptr == &w->lfd) {
				conn_accept(w);
				continue;
			}
			struct wconn *c = ptr;
			unsigned k = conn_index(w, c);

			if (k == UINT_MAX)
				continue;
			if (!conn_step(w, c, ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				conn_free(w, k);
		}
		if (now_ms() >= next_scan) {
			conn_timeouts(w);
			next_scan = now_ms() + 1000;
		}
	}
}

struct webroot *webroot_start(const char *path, char *err, size_t errlen)
{
	struct webroot *w = calloc(1, sizeof(*w));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct epoll_event e;

	if (!w) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->lfd = w->efd = w->stopfd = -1;
	pthread_mutex_init(&w->lock, NULL);
	if (!str_copy(sa.sun_path, sizeof(sa.sun_path), path) ||
	    !str_copy(w->path, sizeof(w->path), path)) {
		snprintf(err, errlen, "webroot socket path too long: %s", path);
		goto fail;
	}
	w->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (w->lfd < 0)
		goto fail_errno;
	unlink(path);
	/* created 0600: nobody else may talk to it between bind and chmod */
	mode_t old = umask(0177);
	int r = bind(w->lfd, (struct sockaddr *)&sa, sizeof(sa));

	umask(old);
	if (r < 0 || listen(w->lfd, 128) < 0)
		goto fail_errno;
	chmod(path, 0600);
	w->efd = epoll_create1(EPOLL_CLOEXEC);
	w->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0 || w->stopfd < 0)
		goto fail_errno;
	e.events = EPOLLIN;
	e.data.ptr = &w->lfd;
	if (epoll_ctl(w->efd, EPOLL_CTL_ADD, w->lfd, &e) < 0)
		goto fail_errno;
	e.data.ptr = &w->stopfd;
	if (epoll_ctl(w->efd, EPOLL_CTL_ADD, w->stopfd, &e) < 0)
		goto fail_errno;
	if (pthread_create(&w->thread, NULL, webroot_main, w)) {
		snprintf(err, errlen, "webroot: cannot start its thread");
		goto fail;
	}
	return w;
fail_errno:
	snprintf(err, errlen, "webroot socket %s: %s", path, strerror(errno));
fail:
	if (w->lfd >= 0) {
		close(w->lfd);
		unlink(path);
	}
	if (w->efd >= 0)
		close(w->efd);
	if (w->stopfd >= 0)
		close(w->stopfd);
	pthread_mutex_destroy(&w->lock);
	free(w);
	return NULL;
}

void webroot_addr(const struct webroot *w, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_un *sa = (struct sockaddr_un *)ss;

	memset(ss, 0, sizeof(*ss));
	sa->sun_family = AF_UNIX;
	str_copy(sa->sun_path, sizeof(sa->sun_path), w->path);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(w->path) + 1);
}

void webroot_stop(struct webroot *w)
{
	uint64_t one = 1;

	if (!w)
		return;
	if (write(w->stopfd, &one, sizeof(one)) != sizeof(one))
		log_warn("webroot: cannot wake its thread");
	pthread_join(w->thread, NULL);
	while (w->nconns)
		conn_free(w, 0);
	for (unsigned i = 0; i < w->nsites; i++)
		close(w->sites[i].dfd);
	close(w->lfd);
	close(w->efd);
	close(w->stopfd);
	unlink(w->path);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

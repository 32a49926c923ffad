// SPDX-License-Identifier: Apache-2.0
/*
 * navectl: the admin CLI, a thin client of nave-controld's HTTP/1.1 + JSON API
 * (ctl/API.md) on the Unix socket runtime_dir/control.sock. One table of
 * {command, handler, help} rows drives dispatch and usage, and every
 * subcommand is one function: it checks its arguments, sends one request
 * through libcurl (the HTTP client below), and prints the answer as aligned
 * columns, or with --json the response body exactly as controld sent it.
 * Exit status: 0 done, 1 refused or failed (the reason on stderr, one line),
 * 2 bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cidr.h"
#include "config/cfg.h"
#include "ctl/cli.h"
#include "log.h"
#include "mesh.h"
#include "util.h"
#include "valid.h"

#define HTTP_MAX_BODY  (16u << 20) /* a response body larger than this is refused */
#define HTTP_MAX_HEAD  (64u << 10)
#define HTTP_TIMEOUT_S 30
#define SYSTEM_CONFIG  "/etc/nave/nave.ini"
#define SYSTEM_SOCKET  "/run/nave" SOCKET_NAME
#define SOCKET_ENV     "NAVE_CONTROL_SOCKET"
#define MAX_TRIED      3

static const struct cmd cmds[];

/* ---- growing strings --------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

/* Room for n more bytes and the NUL; sets oom instead of failing loudly. */
static void sb_reserve(struct sbuf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->oom || b->len + n + 1 <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + n + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void sb_add(struct sbuf *b, const void *s, size_t n)
{
	sb_reserve(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3))) sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	sb_reserve(b, (size_t)n);
	if (b->oom)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Percent-encodes s for a path segment or a query value (RFC 3986 unreserved pass). */
static void sb_escape(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			sb_add(b, s, 1);
		} else {
			char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};

			sb_add(b, e, sizeof(e));
		}
	}
}

/* Appends "?k=v" or "&k=v" with v percent-encoded. */
static void sb_query(struct sbuf *b, const char *k, const char *v)
{
	sb_str(b, strchr(b->p ? b->p : "", '?') ? "&" : "?");
	sb_str(b, k);
	sb_str(b, "=");
	sb_escape(b, v);
}

static void sb_free(struct sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- HTTP/1.1 client (libcurl) ------------------------------------------- */

/*
 * Where a request goes: base is the URL the API paths follow, unix_path the
 * socket it is dialed through (and named by in messages). Only controld's
 * local socket exists today; a remote admin API would be a base of
 * https://host:port with no socket, a CA file for its certificate, and https
 * added to HTTP_PROTOCOLS.
 */
struct http_target {
	const char *base;
	const char *unix_path;	   /* NULL: base is https://HOST:PORT, the admin listener */
	const char *ca;		   /* remote: the CA file (NULL: the system's) */
	const char *key;	   /* remote: the API key sent as Authorization: Bearer */
	const char *crt, *crt_key; /* remote: a client certificate and its key (PEM files) */
};

#define LOCAL_BASE     "http://nave" /* only the Host header: the socket is what is dialed */
#define HTTP_PROTOCOLS "http"
#define SERVER_ENV     "NAVE_SERVER"
#define APIKEY_ENV     "NAVE_API_KEY"
#define APIKEY_MAX     128

struct http_req {
	const char *method;
	const char *target; /* path and query */
	const char *body;   /* JSON text, or NULL */
};

struct http_resp {
	int status;
	char reason[64];
	struct sbuf body; /* NUL-terminated ("" when there is none); caller frees */
	size_t head_len;
	bool too_big;	/* a limit below refused the answer */
	int conn_errno; /* set when the socket could not be connected */
};

/* Takes body bytes up to HTTP_MAX_BODY; 0 (fewer than given) aborts the transfer. */
static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct http_resp *r = arg;

	n *= size;
	if (r->body.len + n > HTTP_MAX_BODY) {
		r->too_big = true;
		return 0;
	}
	sb_add(&r->body, p, n);
	return r->body.oom ? 0 : n;
}

/*
 * Bounds the head as the whole answer was bounded before (libcurl refuses
 * a single header line over 100 KiB on its own), and keeps the reason phrase of
 * the last status line (after any 1xx) for "controld answered 503 ...".
 */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct http_resp *r = arg;
	const char *sp, *end;
	size_t len;

	n *= size;
	r->head_len += n;
	if (r->head_len > HTTP_MAX_BODY + HTTP_MAX_HEAD) {
		r->too_big = true;
		return 0;
	}
	if (n < 5 || memcmp(p, "HTTP/", 5))
		return n;
	r->reason[0] = 0;
	sp = memchr(p, ' ', n);
	if (!sp || p + n - sp < 5 || sp[4] != ' ')
		return n;
	for (end = sp + 5; end < p + n && *end != '\r' && *end != '\n'; end++)
		;
	len = (size_t)(end - (sp + 5));
	if (len >= sizeof(r->reason))
		len = sizeof(r->reason) - 1;
	memcpy(r->reason, sp + 5, len);
	r->reason[len] = 0; /* escaped where it is printed */
	return n;
}

/* Every option but the request's own: the limits, and nothing from the environment. */
static bool http_setup(CURL *h, struct http_resp *r, char *errbuf)
{
	return !curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) &&
	       !curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) &&
	       !curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, HTTP_PROTOCOLS) &&
	       !curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) &&
	       !curl_easy_setopt(h, CURLOPT_NOPROXY, "*") &&
	       !curl_easy_setopt(h, CURLOPT_NETRC, (long)CURL_NETRC_IGNORED) &&
	       !curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) &&
	       !curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L) &&
	       /* ids are sent as they were escaped: no "/../" removed */
	       !curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L) &&
	       !curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)HTTP_TIMEOUT_S) &&
	       !curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)HTTP_TIMEOUT_S) &&
	       !curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)HTTP_MAX_BODY) &&
	       !curl_easy_setopt(h, CURLOPT_USERAGENT, "navectl/" NAVE_VERSION) &&
	       !curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) &&
	       !curl_easy_setopt(h, CURLOPT_WRITEDATA, r) &&
	       !curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) &&
	       !curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
}

/*
 * curl_easy_perform, again while the socket hangs up as soon as it is
 * connected with no error of its own: a full backlog (connect() said EAGAIN,
 * which libcurl takes for "in progress") or controld at its connection limit
 * (accepted and closed). Nothing was sent then, so trying again is safe, and
 * a busy controld gets HTTP_TIMEOUT_S as a blocking connect gave it before.
 */
static CURLcode http_perform(CURL *h, struct http_resp *r)
{
	uint64_t deadline = now_ms() + HTTP_TIMEOUT_S * 1000u;
	unsigned wait_ms = 10;

	for (;;) {
		CURLcode rc = curl_easy_perform(h);
		long os = 0;

		curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os);
		if (rc != CURLE_COULDNT_CONNECT || os)
			return rc;
		if (now_ms() + wait_ms >= deadline) {
			r->conn_errno = EAGAIN; /* what the blocking connect said */
			return rc;
		}
		usleep(wait_ms * 1000);
		wait_ms = wait_ms < 250 ? wait_ms * 2 : wait_ms;
	}
}

/* A GET carries no body; the others a JSON one, maybe empty (Content-Length: 0). */
static bool http_setup_req(CURL *h, const struct http_req *q, const char *url,
			   struct curl_slist *hdrs)
{
	if (curl_easy_setopt(h, CURLOPT_URL, url) || curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs))
		return false;
	if (!strcmp(q->method, "GET"))
		return !curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	return !curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body ? q->body : "") &&
	       !curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(q->body ? strlen(q->body) : 0)) &&
	       !curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
}

/* The one-line reason for a failed transfer; r->conn_errno set when nothing was connected. */
static int http_error(CURL *h, CURLcode rc, const char *sock, struct http_resp *r,
		      const char *errbuf, char *err, size_t errlen)
{
	long os = 0;

	curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os);
	if (r->conn_errno)
		rc = CURLE_COULDNT_CONNECT;
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
		if (!r->conn_errno)
			r->conn_errno = os > 0 ? (int)os : ECONNREFUSED;
		snprintf(err, errlen, "cannot connect to controld at %s: %s", sock,
			 strerror(r->conn_errno));
		return -r->conn_errno;
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(err, errlen, "controld at %s did not answer within %d s", sock,
			 HTTP_TIMEOUT_S);
		return -ETIMEDOUT;
	case CURLE_WRITE_ERROR: /* a callback refused: too big, or out of memory */
	case CURLE_FILESIZE_EXCEEDED:
		if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
			snprintf(err, errlen, "response from controld exceeds %u MiB",
				 HTTP_MAX_BODY >> 20);
			return -EFBIG;
		}
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	case CURLE_OUT_OF_MEMORY:
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
		snprintf(err, errlen, "controld at %s closed the connection without an answer%s%s",
			 sock, os > 0 ? ": " : "", os > 0 ? strerror((int)os) : "");
		return -EPROTO;
	case CURLE_RECV_ERROR:
		if (os > 0) {
			snprintf(err, errlen, "reading from controld at %s: %s", sock,
				 strerror((int)os));
			return -EIO;
		}
		/* no socket error: libcurl refused what it read (a bad chunk) */
		snprintf(err, errlen, "malformed HTTP response from controld at %s", sock);
		return -EBADMSG;
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL: /* HTTP/0.9: no status line */
	case CURLE_PARTIAL_FILE:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_HTTP2:
		snprintf(err, errlen, "malformed HTTP response from controld at %s", sock);
		return -EBADMSG;
	default:
		snprintf(err, errlen, "request to controld at %s failed: %s", sock,
			 *errbuf ? errbuf : curl_easy_strerror(rc));
		return -EIO;
	}
}

/*
 * One request q to t on a connection of its own. Fills *r (caller frees
 * r->body); on error returns -errno with a one-line reason in err, and
 * r->conn_errno set when nothing could be connected.
 */
static int http_request(const struct http_target *t, const struct http_req *q, struct http_resp *r,
			char *err, size_t errlen)
{
	/* "Expect:" off: no wait for a 100 Continue before a large body */
	static const char *const headers[] = {"Accept: application/json",
					      "Content-Type: application/json", "Connection: close",
					      "Expect:"};
	char errbuf[CURL_ERROR_SIZE] = "", bearer[APIKEY_MAX + 32];
	const char *where = t->unix_path ? t->unix_path : t->base;
	size_t plen = t->unix_path ? strlen(t->unix_path) : 1;
	struct curl_slist *hdrs = NULL, *l = NULL;
	struct sbuf url = {0};
	CURL *h = NULL;
	CURLcode rc;
	long status = 0;
	int ret = 0;

	memset(r, 0, sizeof(*r));
	/* libcurl takes "" as no socket (TCP to the URL's host) and fails long paths vaguely */
	if (t->unix_path && (!plen || plen >= sizeof(((struct sockaddr_un *)0)->sun_path))) {
		r->conn_errno = plen ? ENAMETOOLONG : ENOENT;
		snprintf(err, errlen, "cannot connect to controld at %s: %s", t->unix_path,
			 strerror(r->conn_errno));
		return -r->conn_errno;
	}
	sb_str(&url, t->base);
	sb_str(&url, q->target);
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		l = curl_slist_append(hdrs, headers[i]);
		if (!l)
			break;
		hdrs = l;
	}
	if (l && t->key) {
		snprintf(bearer, sizeof(bearer), "Authorization: Bearer %s", t->key);
		l = curl_slist_append(hdrs, bearer);
		if (l)
			hdrs = l;
	}
	h = curl_easy_init();
	if (!h || !l || url.oom || !http_setup(h, r, errbuf) ||
	    (t->unix_path ? curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, t->unix_path) != CURLE_OK
			  : /* the admin listener: HTTPS only, its certificate verified */
		 curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK ||
		     curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
		     curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
		     (t->ca && curl_easy_setopt(h, CURLOPT_CAINFO, t->ca) != CURLE_OK) ||
		     (t->crt && (curl_easy_setopt(h, CURLOPT_SSLCERT, t->crt) != CURLE_OK ||
				 curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM") != CURLE_OK ||
				 curl_easy_setopt(h, CURLOPT_SSLKEY, t->crt_key) != CURLE_OK ||
				 curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM") != CURLE_OK))) ||
	    !http_setup_req(h, q, url.p, hdrs)) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	rc = http_perform(h, r);
	if (rc != CURLE_OK) {
		ret = http_error(h, rc, where, r, errbuf, err, errlen);
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	r->status = (int)status;
	sb_reserve(&r->body, 0); /* "" rather than NULL for an empty body */
	if (r->body.oom) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
	}
out:
	if (ret)
		sb_free(&r->body);
	curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	sb_free(&url);
	return ret;
}

/* ---- API calls ------------------------------------------------------------ */

/* runtime_dir of the server config path (NULL: the embedded default) + "/control.sock". */
static int config_socket(const char *path, char *out, size_t len, char *err, size_t errlen)
{
	struct cfg_server cfg;
	int n;

	if (cfg_server_load(&cfg, path, err, errlen) < 0)
		return EXIT_USAGE;
	n = snprintf(out, len, "%s%s", cfg.runtime_dir, SOCKET_NAME);
	if (n < 0 || (size_t)n >= len) {
		snprintf(err, errlen, "runtime_dir too long: %s", cfg.runtime_dir);
		return EXIT_USAGE;
	}
	return 0;
}

/* A place the search looked at, and why it did not answer. */
struct tried {
	char path[CFG_PATH_MAX + sizeof(SOCKET_NAME)];
	char why[CFG_ERR_MAX];
};

/*
 * Without --socket, --config or $NAVE_CONTROL_SOCKET: the first socket that
 * answers of runtime_dir of /etc/nave/nave.ini (when that file exists),
 * /run/nave/control.sock and runtime_dir of the embedded default
 * (./var/run/control.sock). q goes to the first that can be connected (c->sock
 * names it); a failure after connecting ends the search. Returns an exit
 * code: on EXIT_OK *r holds the answer, else its message was printed, one
 * naming every place tried when none could be connected.
 */
static int search_request(struct ctx *c, const struct http_req *q, struct http_resp *r)
{
	struct tried t[MAX_TRIED] = {0};
	char paths[MAX_TRIED][sizeof(t[0].path)], err[CFG_ERR_MAX], msg[4096];
	char reqerr[CFG_PATH_MAX + 256];
	unsigned np = 0, nt = 0;
	struct sbuf line = {0};
	struct stat st;
	bool same = true;

	if (stat(SYSTEM_CONFIG, &st) == 0) {
		if (config_socket(SYSTEM_CONFIG, paths[np], sizeof(paths[np]), err, sizeof(err))) {
			str_copy(t[nt].path, sizeof(t[nt].path), SYSTEM_CONFIG);
			str_copy(t[nt++].why, sizeof(t[0].why), err);
		} else {
			np++;
		}
	}
	str_copy(paths[np++], sizeof(paths[0]), SYSTEM_SOCKET);
	if (!config_socket(NULL, paths[np], sizeof(paths[np]), err, sizeof(err)))
		np++;
	for (unsigned i = 0; i < np; i++) {
		struct http_target to = {LOCAL_BASE, paths[i], NULL, NULL, NULL, NULL};
		bool dup = false;

		for (unsigned k = 0; k < i; k++)
			dup |= !strcmp(paths[k], paths[i]);
		if (dup)
			continue;
		str_copy(t[nt].path, sizeof(t[nt].path), paths[i]);
		if (stat(paths[i], &st) < 0) {
			str_copy(t[nt++].why, sizeof(t[0].why),
				 errno == ENOENT || errno == ENOTDIR ? "no such socket"
								     : strerror(errno));
			continue;
		}
		if (!S_ISSOCK(st.st_mode)) {
			str_copy(t[nt++].why, sizeof(t[0].why), "not a socket");
			continue;
		}
		if (http_request(&to, q, r, reqerr, sizeof(reqerr)) == 0) {
			str_copy(c->sock, sizeof(c->sock), paths[i]);
			return EXIT_OK;
		}
		if (!r->conn_errno) {
			fail("%s", reqerr);
			return EXIT_FAIL;
		}
		/* "connection refused", like "no such socket" */
		str_copy(t[nt].why, sizeof(t[0].why), strerror(r->conn_errno));
		if (t[nt].why[0] >= 'A' && t[nt].why[0] <= 'Z' && t[nt].why[1] >= 'a')
			t[nt].why[0] = (char)(t[nt].why[0] - 'A' + 'a');
		nt++;
	}
	for (unsigned i = 1; i < nt; i++)
		same &= !strcmp(t[i].why, t[0].why);
	sb_str(&line, "cannot reach nave-controld: tried ");
	for (unsigned i = 0; i < nt; i++) {
		sb_printf(&line, "%s%s", i ? ", " : "", t[i].path);
		if (!same)
			sb_printf(&line, " (%s)", t[i].why);
	}
	if (same && nt)
		sb_printf(&line, " (%s)", t[0].why);
	sb_str(&line, "; use --socket PATH or --config FILE");
	snprintf(msg, sizeof(msg), "%s", line.oom ? "cannot reach nave-controld" : line.p);
	sb_free(&line);
	fail("%s", msg);
	return EXIT_FAIL;
}

/*
 * Sends q to controld: at --socket PATH, else runtime_dir of --config FILE,
 * else $NAVE_CONTROL_SOCKET, else the first of search_request(). Returns an
 * exit code, the reason printed; on EXIT_OK *r holds the answer (caller
 * frees r->body) and c->sock names the socket.
 */
/*
 * The API key for --server: the first line of --api-key-file FILE, else
 * $NAVE_API_KEY. Printable ASCII without spaces, at most APIKEY_MAX bytes.
 * EXIT_OK with key filled, or an exit code after a message.
 */
static int api_key(struct ctx *c, char key[APIKEY_MAX + 2])
{
	const char *env = getenv(APIKEY_ENV);
	size_t n;

	key[0] = 0;
	if (c->key_file) {
		FILE *f = fopen(c->key_file, "re");

		if (!f) {
			fail("--api-key-file %s: %s", c->key_file, strerror(errno));
			return EXIT_FAIL;
		}
		if (!fgets(key, APIKEY_MAX + 2, f))
			key[0] = 0;
		fclose(f);
	} else if (env) {
		str_copy(key, APIKEY_MAX + 2, env);
	} else {
		fail("--server needs an API key: --api-key-file FILE or $%s", APIKEY_ENV);
		return EXIT_USAGE;
	}
	n = strlen(key);
	while (n && (key[n - 1] == '\n' || key[n - 1] == '\r'))
		key[--n] = 0;
	if (!n || n > APIKEY_MAX) {
		fail("the API key must be 1-%d characters", APIKEY_MAX);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < n; i++)
		if (key[i] <= ' ' || key[i] > '~') {
			fail("the API key holds a character that is not printable ASCII");
			return EXIT_USAGE;
		}
	return EXIT_OK;
}

/*
 * --cert DIR: DIR/tls.crt and DIR/tls.key (a nodes/NAME directory of
 * `navectl pki`), each a readable file. EXIT_OK with crt and key filled, or
 * an exit code after a message.
 */
static int cert_files(struct ctx *c, char *crt, char *key, size_t len)
{
	const char *files[] = {"tls.crt", "tls.key"};
	char *out[] = {crt, key};
	struct stat st;

	for (int i = 0; i < 2; i++) {
		int fd;

		if ((size_t)snprintf(out[i], len, "%s/%s", c->cert, files[i]) >= len) {
			fail("--cert %s: path too long", c->cert);
			return EXIT_USAGE;
		}
		fd = open(out[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			fail("--cert %s: %s: %s (a directory holding tls.crt and tls.key, as "
			     "navectl pki makes nodes/NAME)",
			     c->cert, out[i], fd < 0 ? strerror(errno) : "not a regular file");
			if (fd >= 0)
				close(fd);
			return EXIT_FAIL;
		}
		close(fd);
	}
	return EXIT_OK;
}

/*
 * q to the admin listener of --server (or $NAVE_SERVER) with the admin
 * certificate of --cert DIR, else the API key.
 */
static int remote_request(struct ctx *c, const char *server, const struct http_req *q,
			  struct http_resp *r)
{
	char key[APIKEY_MAX + 2], err[CFG_ERR_MAX + CFG_PATH_MAX], base[512];
	char crt[CFG_PATH_MAX + 16], crt_key[CFG_PATH_MAX + 16];
	struct http_target to = {base, NULL, c->ca, key, NULL, NULL};
	size_t n = strlen(server);
	int ret;

	if (strncmp(server, "https://", 8) != 0 || n <= 8 || n >= sizeof(base) ||
	    strpbrk(server + 8, "/?#@ \t\r\n")) {
		fail("--server must be https://HOST:PORT, not %s", server);
		return EXIT_USAGE;
	}
	str_copy(base, sizeof(base), server);
	if (c->cert && c->key_file) {
		fail("--cert and --api-key-file: give one of them");
		return EXIT_USAGE;
	}
	if (c->cert) {
		/* the certificate is the credential: no API key is sent */
		key[0] = 0;
		to.key = NULL;
		to.crt = crt;
		to.crt_key = crt_key;
		ret = cert_files(c, crt, crt_key, sizeof(crt));
	} else {
		ret = api_key(c, key);
	}
	if (ret)
		return ret;
	str_copy(c->sock, sizeof(c->sock), server);
	ret = http_request(&to, q, r, err, sizeof(err));
	explicit_bzero(key, sizeof(key));
	if (ret < 0) {
		fail("%s", err);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static int ctl_request(struct ctx *c, const struct http_req *q, struct http_resp *r)
{
	struct http_target to = {LOCAL_BASE, c->sock, NULL, NULL, NULL, NULL};
	const char *env = getenv(SOCKET_ENV), *server = getenv(SERVER_ENV);
	char err[CFG_ERR_MAX + CFG_PATH_MAX];

	if (c->server || (!c->socket && !c->config && server && *server))
		return remote_request(c, c->server ? c->server : server, q, r);
	if (c->cert) {
		fail("--cert is for --server (controld's socket needs no credentials)");
		return EXIT_USAGE;
	}
	if (c->socket) {
		if (!str_copy(c->sock, sizeof(c->sock), c->socket)) {
			fail("socket path too long: %s", c->socket);
			return EXIT_USAGE;
		}
	} else if (c->config) {
		if (config_socket(c->config, c->sock, sizeof(c->sock), err, sizeof(err))) {
			fail("%s", err);
			return EXIT_USAGE;
		}
	} else if (env && *env) {
		if (!str_copy(c->sock, sizeof(c->sock), env)) {
			fail("%s too long: %s", SOCKET_ENV, env);
			return EXIT_USAGE;
		}
	} else {
		return search_request(c, q, r);
	}
	if (http_request(&to, q, r, err, sizeof(err)) < 0) {
		fail("%s", err);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/*
 * Sends one request to controld: method, path (with query) and an optional
 * JSON body, which this call takes over. A non-2xx answer prints the API's
 * "error" as one line and returns EXIT_FAIL. With --json the body is printed
 * exactly and *out stays NULL; otherwise *out is the parsed reply (caller
 * decrefs). Returns an exit code.
 */
static int api_call(struct ctx *c, const char *method, struct sbuf *path, json_t *body,
		    json_t **out)
{
	struct http_resp r = {0};
	struct http_req q = {method, path->p, NULL};
	json_error_t jerr;
	json_t *j = NULL;
	char *text = NULL;
	int ret = EXIT_FAIL;

	*out = NULL;
	if (path->oom || !path->p) {
		fail("out of memory");
		goto out;
	}
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		if (!text) {
			fail("out of memory");
			goto out;
		}
	}
	q.body = text;
	ret = ctl_request(c, &q, &r);
	if (ret)
		goto out;
	ret = EXIT_FAIL;
	j = json_loadb(r.body.p, r.body.len, 0, &jerr);
	if (r.status < 200 || r.status > 299) {
		const char *e = json_string_value(json_object_get(j, "error"));

		if (e && *e)
			fail("%s", e);
		else
			fail("controld answered %d %s", r.status, r.reason);
		goto out;
	}
	if (!j) {
		fail("invalid JSON from controld: %s", jerr.text);
		goto out;
	}
	if (c->json) {
		fwrite(r.body.p, 1, r.body.len, stdout);
		if (r.body.len && r.body.p[r.body.len - 1] != '\n')
			putchar('\n');
	} else {
		*out = j;
		j = NULL;
	}
	ret = EXIT_OK;
out:
	json_decref(body);
	json_decref(j);
	free(text);
	sb_free(&r.body);
	sb_free(path);
	return ret;
}

/* ---- output ----------------------------------------------------------------- */

/* A JSON value as text: strings as they are, true/false as yes/no, null/"" as "-". */
static const char *fmt_val(json_t *v, char *buf, size_t len)
{
	size_t n;

	if (!v)
		return "-";
	switch (json_typeof(v)) {
	case JSON_STRING:
		return *json_string_value(v) ? json_string_value(v) : "-";
	case JSON_INTEGER:
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	case JSON_REAL:
		snprintf(buf, len, "%g", json_real_value(v));
		return buf;
	case JSON_TRUE:
		return "yes";
	case JSON_FALSE:
		return "no";
	case JSON_OBJECT:
	case JSON_ARRAY:
		n = json_dumpb(v, buf, len - 1, JSON_COMPACT);
		if (n == 0 || n >= len)
			return "...";
		buf[n] = 0;
		return buf;
	default:
		return "-";
	}
}

/* fmt_val() escaped for the terminal into buf (at least 1 KiB is plenty for ids). */
static const char *fmt_esc(json_t *v, char *buf, size_t len)
{
	char tmp[256];

	return log_esc_str(fmt_val(v, tmp, sizeof(tmp)), buf, len);
}

/* Unix seconds as "2026-11-22 01:30:00Z"; unset (null, absent, 0) as the given word. */
static const char *fmt_time(json_t *v, const char *unset, char *buf, size_t len)
{
	struct tm tm;
	time_t t;

	if (json_is_string(v))
		return fmt_val(v, buf, len);
	if (!json_is_number(v) || json_number_value(v) <= 0)
		return unset;
	t = (time_t)json_number_value(v);
	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm))
		return "?";
	return buf;
}

/* Seconds as "3d 4h 5m 6s" (leading zero units left out). */
static const char *fmt_duration(json_t *v, char *buf, size_t len)
{
	unsigned long long s, d, h, m;

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return fmt_val(v, buf, len);
	s = (unsigned long long)json_integer_value(v);
	d = s / 86400;
	h = s / 3600 % 24;
	m = s / 60 % 60;
	s %= 60;
	if (d)
		snprintf(buf, len, "%llud %lluh %llum %llus", d, h, m, s);
	else if (h)
		snprintf(buf, len, "%lluh %llum %llus", h, m, s);
	else if (m)
		snprintf(buf, len, "%llum %llus", m, s);
	else
		snprintf(buf, len, "%llus", s);
	return buf;
}

/* Bytes as "1234 B" or "12.1 MiB". */
static const char *fmt_bytes(json_t *v, char *buf, size_t len)
{
	static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
	double x;
	unsigned u = 0;

	if (!json_is_integer(v))
		return fmt_val(v, buf, len);
	if (json_integer_value(v) < 1024) {
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT " B", json_integer_value(v));
		return buf;
	}
	x = (double)json_integer_value(v) / 1024;
	while (x >= 1024 && u + 1 < ARRAY_SIZE(unit)) {
		x /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", x, unit[u]);
	return buf;
}

enum col_kind {
	COL_VAL,
	COL_TIME,
	COL_EXPIRY,
	COL_LIMIT,
	COL_COUNT,
	COL_DURATION,
	COL_BYTES,
	COL_LIST,     /* an array of strings as "a,b"; null as "-" */
	COL_RESTRICT, /* a token's restrictions in one cell ("from=10.0.0.0/8;kinds=tcp") */
};

/* One column of a list, or one line of a record: header, JSON key, how to show it. */
struct col {
	const char *title;
	const char *key;
	enum col_kind kind;
};

/* An array of strings as "a,b" into buf at off; the new end (cut at len). */
static size_t fmt_list_at(json_t *v, char *buf, size_t off, size_t len)
{
	json_t *it;
	size_t i;

	json_array_foreach(v, i, it)
	{
		const char *t = json_is_string(it) ? json_string_value(it) : "?";
		int n = snprintf(buf + off, len - off, "%s%s", i ? "," : "", t);

		if (n < 0 || (size_t)n >= len - off)
			return len - 1;
		off += (size_t)n;
	}
	return off;
}

/* A token's or a registration's restrictions (the API's members) in one cell. */
static const char *fmt_restrict(json_t *obj, char *buf, size_t len)
{
	static const char *const keys[] = {"allow_from", "allow_ids", "kinds", "domains", "ports"};
	static const char *const shown[] = {"from", "ids", "kinds", "domains", "ports"};
	size_t off = 0;

	buf[0] = 0;
	for (size_t k = 0; k < ARRAY_SIZE(keys) && off + 1 < len; k++) {
		json_t *v = json_object_get(obj, keys[k]);
		int n;

		if (!v || json_is_null(v))
			continue;
		n = snprintf(buf + off, len - off, "%s%s=", off ? ";" : "", shown[k]);
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
		if (json_is_array(v))
			off = fmt_list_at(v, buf, off, len);
		else
			off += (size_t)snprintf(buf + off, len - off, "%s",
						json_is_string(v) ? json_string_value(v) : "?");
		if (off >= len)
			off = len - 1;
	}
	return buf[0] ? buf : "-";
}

static const char *fmt_col(const struct col *col, json_t *obj, char *buf, size_t len)
{
	json_t *v = json_object_get(obj, col->key);

	switch (col->kind) {
	case COL_TIME:
		return fmt_time(v, "-", buf, len);
	case COL_EXPIRY:
		return fmt_time(v, "never", buf, len);
	case COL_LIMIT:
		return json_is_integer(v) && !json_integer_value(v) ? "unlimited"
								    : fmt_val(v, buf, len);
	case COL_COUNT:
		if (!json_is_array(v))
			return fmt_val(v, buf, len);
		snprintf(buf, len, "%zu", json_array_size(v));
		return buf;
	case COL_DURATION:
		return fmt_duration(v, buf, len);
	case COL_BYTES:
		return fmt_bytes(v, buf, len);
	case COL_LIST:
		if (!json_is_array(v))
			return fmt_val(v, buf, len);
		buf[0] = 0;
		fmt_list_at(v, buf, 0, len);
		return buf;
	case COL_RESTRICT:
		return fmt_restrict(obj, buf, len);
	default:
		return fmt_val(v, buf, len);
	}
}

/* A list reply {"items","page","per_page","total"} as a table with a paging hint. */
static int print_list(json_t *resp, const struct col *cols, unsigned ncols)
{
	json_t *items = json_object_get(resp, "items");
	json_int_t page, per_page, total;
	struct table t = {.ncols = ncols};
	char buf[256];
	int ret;

	if (!json_is_array(items)) {
		fail("unexpected reply from controld: no \"items\" list");
		return EXIT_FAIL;
	}
	for (unsigned k = 0; k < ncols; k++)
		table_add(&t, cols[k].title);
	for (size_t i = 0; i < json_array_size(items); i++) {
		json_t *it = json_array_get(items, i);

		for (unsigned k = 0; k < ncols; k++)
			table_add(&t, fmt_col(&cols[k], it, buf, sizeof(buf)));
	}
	ret = table_print(&t);
	table_free(&t);
	page = json_integer_value(json_object_get(resp, "page"));
	per_page = json_integer_value(json_object_get(resp, "per_page"));
	total = json_integer_value(json_object_get(resp, "total"));
	if (!ret && page > 0 && per_page > 0 && total > per_page)
		printf("(page %" JSON_INTEGER_FORMAT " of %" JSON_INTEGER_FORMAT
		       ", %" JSON_INTEGER_FORMAT " in all; --page N for others)\n",
		       page, (total + per_page - 1) / per_page, total);
	return ret;
}

/* A record as "title:  value" lines. */
static int print_record(json_t *obj, const struct col *cols, unsigned ncols)
{
	struct table t = {.ncols = 2};
	char buf[256], title[64];
	int ret;

	for (unsigned k = 0; k < ncols; k++) {
		snprintf(title, sizeof(title), "%s:", cols[k].title);
		table_add(&t, title);
		table_add(&t, fmt_col(&cols[k], obj, buf, sizeof(buf)));
	}
	ret = table_print(&t);
	table_free(&t);
	return ret;
}

/* A string member the reply must have (tokens, ids); NULL after a message. */
static const char *need_str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	if (!s || !*s) {
		fail("unexpected reply from controld: no \"%s\"", key);
		return NULL;
	}
	return s;
}

/* "/api/v1/" + the given segments (each percent-encoded). */
static struct sbuf api_path(const char *a, const char *id, const char *b)
{
	struct sbuf p = {0};

	sb_str(&p, "/api/v1/");
	sb_str(&p, a);
	if (id) {
		sb_str(&p, "/");
		sb_escape(&p, id);
	}
	if (b) {
		sb_str(&p, "/");
		sb_str(&p, b);
	}
	return p;
}

/* --page N for list commands. */
static int add_page(struct ctx *c, struct sbuf *path, const char *page)
{
	unsigned long long n;
	int ret;

	if (!page)
		return 0;
	ret = parse_num(c, "page", page, 1, 1000000000, &n);
	if (!ret)
		sb_query(path, "page", page);
	return ret;
}

/* GETs one page of a list (path is consumed) and prints it as a table. */
static int get_list(struct ctx *c, struct sbuf *path, const char *page, const struct col *cols,
		    unsigned ncols)
{
	json_t *j = NULL;
	int ret = add_page(c, path, page);

	if (ret) {
		sb_free(path);
		return ret;
	}
	ret = api_call(c, "GET", path, NULL, &j);
	if (ret || !j)
		return ret;
	ret = print_list(j, cols, ncols);
	json_decref(j);
	return ret;
}

/* ---- commands ------------------------------------------------------------------- */

/*
 * The integer counters keys[0..n) of a relay status object as text into
 * v[k] ("-" when null or not an integer); false when the object has none of
 * them (an older controld).
 */
static bool counters_fmt(json_t *rel, const char *const *keys, size_t n, char (*v)[32])
{
	bool any = false;

	for (size_t k = 0; k < n; k++) {
		json_t *j = json_object_get(rel, keys[k]);

		any |= j != NULL;
		if (json_is_integer(j))
			snprintf(v[k], sizeof(v[k]), "%" JSON_INTEGER_FORMAT,
				 json_integer_value(j));
		else
			str_copy(v[k], sizeof(v[k]), "-");
	}
	return any;
}

/*
 * The relay's limit counters as one "limits:" line; a controld that does
 * not send them (older) gets no line, a null or odd value shows as "-".
 */
static void status_limits(struct table *t, json_t *rel)
{
	static const char *const keys[] = {"refused_per_source", "idle_timeouts",
					   "pending_timeouts"};
	static const char *const full[] = {"refused_max_links", "refused_fd_limit"};
	char v[ARRAY_SIZE(keys)][32], f[ARRAY_SIZE(full)][32], buf[160];

	if (!counters_fmt(rel, keys, ARRAY_SIZE(keys), v))
		return;
	snprintf(buf, sizeof(buf),
		 "%s refused (per-source limit), %s idle timeouts, %s pending timeouts", v[0], v[1],
		 v[2]);
	table_add(t, "  limits:");
	table_add(t, buf);
	/* connections reset at once because no data link could come for them */
	if (!counters_fmt(rel, full, ARRAY_SIZE(full), f))
		return;
	snprintf(buf, sizeof(buf), "%s refused (max_links), %s refused (open-file limit)", f[0],
		 f[1]);
	table_add(t, "  no link:");
	table_add(t, buf);
}

/*
 * The relay's kTLS mode, and with it the split of its data links when the
 * controld sends one: "kernel (links: 3 kTLS, 1 userspace, 0 fallbacks)". A
 * controld that sends no counters (older) gets the mode alone; a null or odd
 * counter shows as "-".
 */
static const char *status_ktls(json_t *rel, char *buf, size_t len)
{
	static const char *const keys[] = {"links_ktls", "links_tls", "ktls_fallbacks"};
	char mode[128], v[ARRAY_SIZE(keys)][32];
	bool any;

	str_copy(mode, sizeof(mode), fmt_val(json_object_get(rel, "ktls"), buf, len));
	any = counters_fmt(rel, keys, ARRAY_SIZE(keys), v);
	/* cut short at len, as every other cell */
	if (!any || snprintf(buf, len, "%s (links: %s kTLS, %s userspace, %s fallbacks)", mode,
			     v[0], v[1], v[2]) < 0)
		snprintf(buf, len, "%s", mode);
	return buf;
}

/* The steering mode, with the listening sockets when the controld sends them: "bpf (4 listeners)".
 */
static const char *status_steering(json_t *rel, char *buf, size_t len)
{
	json_t *n = json_object_get(rel, "listeners");
	char mode[128];

	str_copy(mode, sizeof(mode), fmt_val(json_object_get(rel, "steering"), buf, len));
	if (json_is_integer(n))
		snprintf(buf, len, "%s (%" JSON_INTEGER_FORMAT " listener%s)", mode,
			 json_integer_value(n), json_integer_value(n) == 1 ? "" : "s");
	else
		snprintf(buf, len, "%s", mode);
	return buf;
}

/* An integer member as text, "-" when it is null, missing or not an integer. */
static const char *int_or_dash(json_t *obj, const char *key, char *buf, size_t len)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v))
		return "-";
	snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	return buf;
}

/*
 * The kernel assists: "xdp:" (interface, mode, packets passed, the SYN
 * limit, or "off"), "maps:" (the BPF maps' sizes, or "none"), and "drops:"
 * (XDP's drop counters and the connections refused at accept). A controld
 * that does not send a member (older) gets no line for it; a null or odd
 * counter shows as "-".
 */
static void status_kassist(struct table *t, json_t *rel)
{
	json_t *xdp = json_object_get(rel, "xdp"), *maps = json_object_get(rel, "maps");
	char a[32], b[32], d[32], e[32], buf[384], part[192];
	struct sbuf drops = {0};

	if (xdp) {
		table_add(t, "  xdp:");
		if (json_is_object(xdp)) {
			json_t *rate = json_object_get(xdp, "syn_rate");

			if (json_is_integer(rate) && json_integer_value(rate) == 0)
				snprintf(part, sizeof(part), "no SYN rate limit");
			else
				snprintf(part, sizeof(part), "SYN rate limit %s/s per source",
					 int_or_dash(xdp, "syn_rate", a, sizeof(a)));
			snprintf(buf, sizeof(buf), "%s (%s), %s passed, %s",
				 fmt_val(json_object_get(xdp, "interface"), b, sizeof(b)),
				 fmt_val(json_object_get(xdp, "mode"), d, sizeof(d)),
				 int_or_dash(xdp, "pass", e, sizeof(e)), part);
			table_add(t, buf);
		} else {
			table_add(t, "off");
		}
	}
	if (maps) {
		table_add(t, "  maps:");
		if (json_is_object(maps)) {
			snprintf(buf, sizeof(buf), "%s ports, %s deny, %s allow",
				 int_or_dash(maps, "ports", a, sizeof(a)),
				 int_or_dash(maps, "deny", b, sizeof(b)),
				 int_or_dash(maps, "allow", d, sizeof(d)));
			table_add(t, buf);
		} else {
			table_add(t, "none (no BPF loaded)");
		}
	}
	if (json_is_object(xdp)) {
		char f[32];

		char g[32];

		sb_printf(
		    &drops,
		    "%s deny, %s not allowed, %s unallocated, %s SYN rate, %s malformed (XDP)",
		    int_or_dash(xdp, "deny", a, sizeof(a)),
		    int_or_dash(xdp, "not_allowed", b, sizeof(b)),
		    int_or_dash(xdp, "unallocated", d, sizeof(d)),
		    int_or_dash(xdp, "syn_rate_drops", f, sizeof(f)),
		    int_or_dash(xdp, "malformed", g, sizeof(g)));
	}
	if (json_is_object(json_object_get(rel, "http"))) {
		json_t *h = json_object_get(rel, "http");
		static const char *const k[] = {"bad_request", "no_host",     "unknown_host",
						"offline",     "too_large",   "timeout",
						"busy",	       "unauthorized"};
		static const char *const shown[] = {"400", "400 no host", "404", "502",
						    "431", "408",	  "503", "401"};
		struct sbuf hs = {0};
		char v[32];

		sb_printf(&hs, "%s requests; the edge answered:",
			  int_or_dash(h, "requests", v, sizeof(v)));
		for (size_t i = 0; i < ARRAY_SIZE(k); i++)
			sb_printf(&hs, " %s %s%s", int_or_dash(h, k[i], v, sizeof(v)), shown[i],
				  i + 1 < ARRAY_SIZE(k) ? "," : "");
		if (!hs.oom) {
			table_add(t, "  http:");
			table_add(t, hs.p);
		}
		sb_free(&hs);
	}
	if (json_is_object(json_object_get(rel, "mesh"))) {
		/* streams clients opened through the edge, and the refusals by reason */
		json_t *m = json_object_get(rel, "mesh"), *r = json_object_get(m, "refused");
		static const char *const k[] = {"denied",      "not_found", "offline",
						"not_allowed", "dns",	    "refused",
						"unreachable", "busy",	    "bad"};
		struct sbuf ms = {0};
		char v[32];

		sb_printf(&ms, "%s opened; refused:", int_or_dash(m, "opened", v, sizeof(v)));
		for (size_t i = 0; i < ARRAY_SIZE(k); i++)
			sb_printf(&ms, " %s %s%s", int_or_dash(r, k[i], v, sizeof(v)), k[i],
				  i + 1 < ARRAY_SIZE(k) ? "," : "");
		sb_printf(&ms, " (%s by default deny)",
			  int_or_dash(m, "denied_default", v, sizeof(v)));
		if (!ms.oom) {
			table_add(t, "  mesh:");
			table_add(t, ms.p);
		}
		sb_free(&ms);
	}
	if (json_is_object(json_object_get(rel, "udp"))) {
		/* UDP flows (public and mesh) and what was dropped, by cause */
		json_t *u = json_object_get(rel, "udp"), *ud = json_object_get(u, "dropped");
		static const char *const k[] = {"queue", "flows", "oversize", "offline", "socks"};
		struct sbuf us = {0};
		char v[32], x[32], i[32], o[32];

		sb_printf(&us, "%s flows (%s expired); datagrams %s in, %s out; dropped:",
			  int_or_dash(u, "flows", v, sizeof(v)),
			  int_or_dash(u, "flows_expired", x, sizeof(x)),
			  int_or_dash(u, "datagrams_in", i, sizeof(i)),
			  int_or_dash(u, "datagrams_out", o, sizeof(o)));
		for (size_t j = 0; j < ARRAY_SIZE(k); j++)
			sb_printf(&us, " %s %s%s", int_or_dash(ud, k[j], v, sizeof(v)), k[j],
				  j + 1 < ARRAY_SIZE(k) ? "," : "");
		if (!us.oom) {
			table_add(t, "  udp:");
			table_add(t, us.p);
		}
		sb_free(&us);
	}
	if (json_is_object(json_object_get(rel, "socks"))) {
		/* relayd's SOCKS5 server: connections, and those refused before a CONNECT */
		json_t *so = json_object_get(rel, "socks"), *r = json_object_get(so, "refused");
		static const char *const k[] = {"auth", "locked", "limit", "method", "handshake"};
		struct sbuf ss = {0};
		char v[32];

		sb_printf(&ss, "%s connections; refused:", int_or_dash(so, "conns", v, sizeof(v)));
		for (size_t j = 0; j < ARRAY_SIZE(k); j++)
			sb_printf(&ss, " %s %s%s", int_or_dash(r, k[j], v, sizeof(v)), k[j],
				  j + 1 < ARRAY_SIZE(k) ? "," : "");
		if (!ss.oom) {
			table_add(t, "  socks:");
			table_add(t, ss.p);
		}
		sb_free(&ss);
	}
	if (json_object_get(rel, "firewall_refused"))
		sb_printf(&drops, "%s%s refused at accept (firewall)", drops.len ? "; " : "",
			  int_or_dash(rel, "firewall_refused", a, sizeof(a)));
	if (drops.len && !drops.oom) {
		table_add(t, "  drops:");
		table_add(t, drops.p);
	}
	sb_free(&drops);
}

/* The connection records: what controld took, and what relayd dropped (not stored). */
static void status_records(struct table *t, json_t *j, json_t *rel)
{
	json_t *r = json_object_get(j, "records");
	char a[32], b[32], d[32], line[192];

	if (!json_is_object(r))
		return; /* an older controld */
	snprintf(line, sizeof(line), "%s stored, %s refused; relayd: %s records dropped",
		 int_or_dash(r, "stored", a, sizeof(a)), int_or_dash(r, "refused", b, sizeof(b)),
		 int_or_dash(rel, "records_dropped", d, sizeof(d)));
	table_add(t, "records:");
	table_add(t, line);
}

static int cmd_status(struct ctx *c, int argc, char **argv)
{
	static const struct col top[] = {
	    {"version", "version", COL_VAL},
	    {"uptime", "uptime", COL_DURATION},
	};
	static const struct col relay[] = {
	    {"pid", "pid", COL_VAL},
	    {"workers", "workers", COL_VAL},
	    {"ktls", "ktls", COL_VAL},
	    {"steering", "steering", COL_VAL},
	    {"links", "links", COL_VAL},
	    {"connections", "conns", COL_VAL},
	    {"connections total", "conns_total", COL_VAL},
	    {"bytes in", "bytes_in", COL_BYTES},
	    {"bytes out", "bytes_out", COL_BYTES},
	};
	struct sbuf path = api_path("status", NULL, NULL);
	json_t *j, *rel, *tun, *ports;
	struct table t = {.ncols = 2};
	char buf[256], title[64];
	int ret;

	ret = parse_args(c, argc, argv, NULL, NULL, NULL);
	if (ret) {
		sb_free(&path);
		return args_exit(ret);
	}
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		return ret;
	rel = json_object_get(j, "relay");
	tun = json_object_get(j, "tunnels");
	ports = json_object_get(j, "ports");
	for (unsigned k = 0; k < ARRAY_SIZE(top); k++) {
		snprintf(title, sizeof(title), "%s:", top[k].title);
		table_add(&t, title);
		table_add(&t, fmt_col(&top[k], j, buf, sizeof(buf)));
	}
	table_add(&t, "relay:");
	table_add(&t,
		  json_is_true(json_object_get(rel, "connected")) ? "connected" : "not connected");
	if (json_is_true(json_object_get(rel, "connected"))) {
		for (unsigned k = 0; k < ARRAY_SIZE(relay); k++) {
			snprintf(title, sizeof(title), "  %s:", relay[k].title);
			table_add(&t, title);
			if (!strcmp(relay[k].key, "ktls"))
				table_add(&t, status_ktls(rel, buf, sizeof(buf)));
			else if (!strcmp(relay[k].key, "steering"))
				table_add(&t, status_steering(rel, buf, sizeof(buf)));
			else
				table_add(&t, fmt_col(&relay[k], rel, buf, sizeof(buf)));
			if (!strcmp(relay[k].key, "steering"))
				status_kassist(&t, rel);
		}
		status_limits(&t, rel);
	}
	table_add(&t, "tunnels:");
	snprintf(buf, sizeof(buf),
		 "%" JSON_INTEGER_FORMAT " online, %" JSON_INTEGER_FORMAT " total",
		 json_integer_value(json_object_get(tun, "online")),
		 json_integer_value(json_object_get(tun, "total")));
	table_add(&t, buf);
	table_add(&t, "ports:");
	snprintf(buf, sizeof(buf), "%s, %" JSON_INTEGER_FORMAT " allocated",
		 fmt_val(json_object_get(ports, "range"), title, sizeof(title)),
		 json_integer_value(json_object_get(ports, "allocated")));
	table_add(&t, buf);
	status_records(&t, j, rel);
	table_add(&t, "tls fingerprint:");
	table_add(&t, fmt_val(json_object_get(j, "tls_fingerprint"), buf, sizeof(buf)));
	ret = table_print(&t);
	table_free(&t);
	json_decref(j);
	return ret;
}

/* The restriction options of tokens create and registration create (restrict.h). */
struct restrict_opts {
	const char *from, *ids, *kinds, *domains, *ports;
};

/* "a,b" as the array ["a", "b"] (controld checks each item and names the bad one). */
static json_t *split_list(const char *s)
{
	json_t *a = json_array();

	while (a) {
		size_t n = strcspn(s, ",");

		if (json_array_append_new(a, json_stringn(s, n))) {
			json_decref(a);
			return NULL;
		}
		if (!s[n])
			break;
		s += n + 1;
	}
	return a;
}

/* Adds the given restrictions to body: 0, or EXIT_USAGE/EXIT_FAIL after a message. */
static int add_restrict(struct ctx *c, json_t *body, const struct restrict_opts *r)
{
	const char *lists[] = {r->from, r->ids, r->kinds, r->domains};
	static const char *const keys[] = {"allow_from", "allow_ids", "kinds", "domains"};
	static const char *const opts[] = {"--allow-from", "--allow-id", "--kinds", "--domains"};

	for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
		if (!lists[k])
			continue;
		if (!*lists[k])
			return usage_error(c, "empty %s", opts[k]);
		if (json_object_set_new(body, keys[k], split_list(lists[k]))) {
			fail("out of memory or %s not UTF-8", opts[k]);
			return EXIT_FAIL;
		}
	}
	if (r->ports && !*r->ports)
		return usage_error(c, "empty --ports");
	if (r->ports && json_object_set_new(body, "ports", json_string(r->ports))) {
		fail("out of memory or --ports not UTF-8");
		return EXIT_FAIL;
	}
	return 0;
}

static int cmd_registration_create(struct ctx *c, int argc, char **argv)
{
	struct restrict_opts r = {0};
	const char *desc = NULL, *max_uses = NULL, *expires = NULL, *token;
	const struct opt opts[] = {
	    {"--description", "D", &desc, NULL},
	    {"--max-uses", "N", &max_uses, NULL},
	    {"--expires", "DURATION", &expires, NULL},
	    {"--allow-from", "CIDR[,CIDR...]", &r.from, NULL},
	    {"--allow-id", "PATTERN[,PATTERN...]", &r.ids, NULL},
	    {"--kinds", "tcp,udp,http,mesh", &r.kinds, NULL},
	    {"--domains", "PATTERN[,PATTERN...]", &r.domains, NULL},
	    {"--ports", "A-B", &r.ports, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	unsigned long long uses = 0;
	char tb[1024];
	uint64_t ms = 0;
	struct sbuf path;
	json_t *body, *j;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	if (max_uses && (ret = parse_num(c, "--max-uses", max_uses, 0, INT32_MAX, &uses)))
		return ret;
	if (expires && cfg_parse_duration_ms(expires, &ms) < 0)
		return usage_error(c, "bad --expires '%s' (e.g. 90m, 12h, 7d; 0 = never)", expires);
	if (ms / 1000 > INT32_MAX)
		return usage_error(c, "bad --expires '%s': too far away", expires);
	/* Rounded up: "500ms" must not turn into 0 = never. */
	body = json_pack("{s:s, s:I, s:I}", "description", desc ? desc : "", "max_uses",
			 (json_int_t)uses, "expires", (json_int_t)((ms + 999) / 1000));
	if (!body) {
		fail("out of memory or --description not UTF-8");
		return EXIT_FAIL;
	}
	ret = add_restrict(c, body, &r);
	if (ret) {
		json_decref(body);
		return ret;
	}
	path = api_path("registrations", NULL, NULL);
	ret = api_call(c, "POST", &path, body, &j);
	if (ret || !j)
		return ret;
	token = need_str(j, "token");
	if (token) {
		log_esc_str(token, tb, sizeof(tb));
		printf("%s\n", tb);
		printf("Register a client: nave configure --server HOST:PORT --registration %s\n",
		       tb);
	}
	json_decref(j);
	return token ? EXIT_OK : EXIT_FAIL;
}

static const struct col registration_cols[] = {
    {"ID", "id", COL_VAL},
    {"ENABLED", "enabled", COL_VAL},
    {"USES", "uses", COL_VAL},
    {"MAX", "max_uses", COL_LIMIT},
    {"EXPIRES", "expires_at", COL_EXPIRY},
    {"CREATED", "created_at", COL_TIME},
    {"RESTRICTIONS", "", COL_RESTRICT},
    {"DESCRIPTION", "description", COL_VAL},
};

/* GET a list at /api/v1/what (optionally ?page=N) and print it with cols. */
static int list_cmd(struct ctx *c, int argc, char **argv, const char *what, const struct col *cols,
		    unsigned ncols)
{
	const char *page = NULL;
	const struct opt opts[] = {
	    {"--page", "N", &page, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	struct sbuf path;
	json_t *j;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	path = api_path(what, NULL, NULL);
	ret = add_page(c, &path, page);
	if (ret) {
		sb_free(&path);
		return ret;
	}
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		return ret;
	ret = print_list(j, cols, ncols);
	json_decref(j);
	return ret;
}

static int cmd_registration_ls(struct ctx *c, int argc, char **argv)
{
	return list_cmd(c, argc, argv, "registrations", registration_cols,
			ARRAY_SIZE(registration_cols));
}

/*
 * POST /api/v1/what/ID/action (no body); prints "noun ID done" from the
 * returned record's key field.
 */
static int action_cmd(struct ctx *c, int argc, char **argv, const char *what, const char *action,
		      const char *noun, const char *key, const char *done)
{
	const char *id = NULL;
	char buf[1024];
	struct sbuf path;
	json_t *j;
	int ret;

	ret = parse_args(c, argc, argv, NULL, &id, "ID");
	if (ret)
		return args_exit(ret);
	path = api_path(what, id, action);
	ret = api_call(c, "POST", &path, NULL, &j);
	if (ret || !j)
		return ret;
	printf("%s %s %s\n", noun, fmt_esc(json_object_get(j, key), buf, sizeof(buf)), done);
	json_decref(j);
	return EXIT_OK;
}

static int cmd_registration_disable(struct ctx *c, int argc, char **argv)
{
	return action_cmd(c, argc, argv, "registrations", "disable", "registration", "id",
			  "disabled");
}

static int cmd_registration_enable(struct ctx *c, int argc, char **argv)
{
	return action_cmd(c, argc, argv, "registrations", "enable", "registration", "id",
			  "enabled");
}

static int cmd_tokens_create(struct ctx *c, int argc, char **argv)
{
	const char *id = NULL, *desc = NULL, *token;
	struct restrict_opts r = {0};
	const struct opt opts[] = {
	    {"--id", "NAME", &id, NULL},
	    {"--description", "D", &desc, NULL},
	    {"--allow-from", "CIDR[,CIDR...]", &r.from, NULL},
	    {"--allow-id", "PATTERN[,PATTERN...]", &r.ids, NULL},
	    {"--kinds", "tcp,udp,http,mesh", &r.kinds, NULL},
	    {"--domains", "PATTERN[,PATTERN...]", &r.domains, NULL},
	    {"--ports", "A-B", &r.ports, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	struct sbuf path;
	char buf[1024], tb[1024];
	json_t *body, *j;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	if (id && !*id)
		return usage_error(c, "empty --id");
	body = json_pack("{s:s}", "description", desc ? desc : "");
	if (body && id && json_object_set_new(body, "id", json_string(id)) < 0) {
		json_decref(body);
		body = NULL;
	}
	if (!body) {
		fail("out of memory or --id/--description not UTF-8");
		return EXIT_FAIL;
	}
	ret = add_restrict(c, body, &r);
	if (ret) {
		json_decref(body);
		return ret;
	}
	path = api_path("tokens", NULL, NULL);
	ret = api_call(c, "POST", &path, body, &j);
	if (ret || !j)
		return ret;
	token = need_str(j, "token");
	if (token) {
		log_esc_str(token, tb, sizeof(tb));
		printf("%s\n", tb);
		printf("Tunnel %s; on the client: nave configure --server HOST:PORT --key %s\n",
		       fmt_esc(json_object_get(j, "tunnel_id"), buf, sizeof(buf)), tb);
	}
	json_decref(j);
	return token ? EXIT_OK : EXIT_FAIL;
}

static const struct col token_cols[] = {
    {"ID", "id", COL_VAL},
    {"TUNNEL", "tunnel_id", COL_VAL},
    {"REVOKED", "revoked", COL_VAL},
    {"CREATED", "created_at", COL_TIME},
    {"LAST USED", "last_used", COL_TIME},
    {"RESTRICTIONS", "", COL_RESTRICT},
    {"DESCRIPTION", "description", COL_VAL},
};

static int cmd_tokens_ls(struct ctx *c, int argc, char **argv)
{
	return list_cmd(c, argc, argv, "tokens", token_cols, ARRAY_SIZE(token_cols));
}

static int cmd_tokens_show(struct ctx *c, int argc, char **argv)
{
	static const struct col cols[] = {
	    {"id", "id", COL_VAL},
	    {"tunnel", "tunnel_id", COL_VAL},
	    {"revoked", "revoked", COL_VAL},
	    {"created", "created_at", COL_TIME},
	    {"last used", "last_used", COL_TIME},
	    {"description", "description", COL_VAL},
	    {"allow from", "allow_from", COL_LIST},
	    {"allow ids", "allow_ids", COL_LIST},
	    {"kinds", "kinds", COL_LIST},
	    {"domains", "domains", COL_LIST},
	    {"ports", "ports", COL_VAL},
	};
	const char *id = NULL;
	struct sbuf path;
	json_t *j;
	int ret;

	ret = parse_args(c, argc, argv, NULL, &id, "ID");
	if (ret)
		return args_exit(ret);
	path = api_path("tokens", id, NULL);
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		return ret;
	ret = print_record(j, cols, ARRAY_SIZE(cols));
	json_decref(j);
	return ret;
}

static int cmd_tokens_revoke(struct ctx *c, int argc, char **argv)
{
	return action_cmd(c, argc, argv, "tokens", "revoke", "token", "id", "revoked");
}

static int cmd_tunnels_ls(struct ctx *c, int argc, char **argv)
{
	static const struct col cols[] = {
	    {"ID", "id", COL_VAL},
	    {"GROUP", "group_id", COL_VAL},
	    {"STATE", "state", COL_VAL},
	    {"HOSTNAME", "hostname", COL_VAL},
	    {"VERSION", "client_version", COL_VAL},
	    {"PORTS", "ports", COL_COUNT},
	    {"LAST SEEN", "last_seen", COL_TIME},
	};
	const char *search = NULL, *page = NULL;
	bool online = false;
	const struct opt opts[] = {
	    {"--online", NULL, NULL, &online},
	    {"--search", "TERM", &search, NULL},
	    {"--page", "N", &page, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	struct sbuf path;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	path = api_path("tunnels", NULL, NULL);
	if (online)
		sb_query(&path, "online", "1");
	if (search)
		sb_query(&path, "search", search);
	return get_list(c, &path, page, cols, ARRAY_SIZE(cols));
}

/* The BYTES IN, BYTES OUT and CONNS cells of rule (traffic: the tunnel's "traffic"). */
static void rule_traffic(struct table *t, json_t *traffic, const char *rule)
{
	static const struct col tc[] = {
	    {"", "bytes_in", COL_BYTES}, {"", "bytes_out", COL_BYTES}, {"", "conns", COL_VAL}};
	json_t *it, *hit = NULL;
	char buf[64];
	size_t i;

	json_array_foreach(traffic, i, it)
	{
		const char *r = json_string_value(json_object_get(it, "rule"));

		if (r && rule && !strcmp(r, rule))
			hit = it;
	}
	for (unsigned k = 0; k < ARRAY_SIZE(tc); k++)
		table_add(t, hit ? fmt_col(&tc[k], hit, buf, sizeof(buf)) : "0");
}

/* True when the tunnel j holds a port or domain under rule. */
static bool rule_held(json_t *j, const char *rule)
{
	static const char *const lists[] = {"ports", "domains"};
	json_t *it;
	size_t i;

	for (unsigned k = 0; rule && k < ARRAY_SIZE(lists); k++)
		json_array_foreach(json_object_get(j, lists[k]), i, it)
		{
			const char *r = json_string_value(json_object_get(it, "rule"));

			if (r && !strcmp(r, rule))
				return true;
		}
	return false;
}

static int cmd_tunnels_show(struct ctx *c, int argc, char **argv)
{
	static const struct col cols[] = {
	    {"id", "id", COL_VAL},
	    {"group", "group_id", COL_VAL},
	    {"state", "state", COL_VAL},
	    {"hostname", "hostname", COL_VAL},
	    {"os", "os", COL_VAL},
	    {"arch", "arch", COL_VAL},
	    {"client version", "client_version", COL_VAL},
	    {"last seen", "last_seen", COL_TIME},
	    {"created", "created_at", COL_TIME},
	    {"token", "token_id", COL_VAL},
	    {"identity", "identity", COL_VAL},
	};
	/* the tunnel's rules: its TCP ports and its HTTP domains */
	static const struct {
		const char *kind, *list, *key;
	} rules[] = {{"tcp", "ports", "port"}, {"http", "domains", "domain"}};
	const char *id = NULL;
	struct table t = {.ncols = 6};
	struct sbuf path;
	char buf[256];
	json_t *j, *it, *traffic;
	size_t i, n = 0;
	int ret;

	ret = parse_args(c, argc, argv, NULL, &id, "ID");
	if (ret)
		return args_exit(ret);
	path = api_path("tunnels", id, NULL);
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		return ret;
	ret = print_record(j, cols, ARRAY_SIZE(cols));
	table_add(&t, "KIND");
	table_add(&t, "RULE");
	table_add(&t, "PORT/DOMAIN");
	table_add(&t, "BYTES IN");
	table_add(&t, "BYTES OUT");
	table_add(&t, "CONNS");
	/* each rule's totals from the connection records (an older controld sends none) */
	traffic = json_object_get(j, "traffic");
	for (unsigned k = 0; k < ARRAY_SIZE(rules); k++) {
		/* an older controld sends no domains */
		json_array_foreach(json_object_get(j, rules[k].list), i, it)
		{
			table_add(&t, rules[k].kind);
			table_add(&t, fmt_val(json_object_get(it, "rule"), buf, sizeof(buf)));
			table_add(&t, fmt_val(json_object_get(it, rules[k].key), buf, sizeof(buf)));
			rule_traffic(&t, traffic, json_string_value(json_object_get(it, "rule")));
			n++;
		}
	}
	/* traffic of rules the tunnel no longer holds */
	json_array_foreach(traffic, i, it)
	{
		if (rule_held(j, json_string_value(json_object_get(it, "rule"))))
			continue;
		table_add(&t, "-");
		table_add(&t, fmt_val(json_object_get(it, "rule"), buf, sizeof(buf)));
		table_add(&t, "(gone)");
		rule_traffic(&t, traffic, json_string_value(json_object_get(it, "rule")));
		n++;
	}
	if (!ret && n) {
		putchar('\n');
		ret = table_print(&t);
	} else if (!ret) {
		printf("rules:  -\n");
	}
	table_free(&t);
	json_decref(j);
	return ret;
}

static int cmd_tunnels_shutdown(struct ctx *c, int argc, char **argv)
{
	return action_cmd(c, argc, argv, "tunnels", "shutdown", "tunnel", "id",
			  "asked to shut down");
}

static int cmd_ports_ls(struct ctx *c, int argc, char **argv)
{
	/* PACKETS and BYTES only when relayd reported counters (XDP) for a port listed */
	static const struct col cols[] = {
	    {"PORT", "port", COL_VAL},		 {"TRANSPORT", "transport", COL_VAL},
	    {"TUNNEL", "tunnel_id", COL_VAL},	 {"RULE", "rule", COL_VAL},
	    {"CREATED", "created_at", COL_TIME}, {"PACKETS", "packets", COL_VAL},
	    {"BYTES", "bytes", COL_BYTES},
	};
	json_t *j = NULL, *items, *it;
	unsigned ncols = 5;
	size_t i;
	const char *tunnel = NULL, *page = NULL;
	const struct opt opts[] = {
	    {"--tunnel", "ID", &tunnel, NULL},
	    {"--page", "N", &page, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	struct sbuf path;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	path = api_path("ports", NULL, NULL);
	if (tunnel)
		sb_query(&path, "tunnel", tunnel);
	ret = add_page(c, &path, page);
	if (ret) {
		sb_free(&path);
		return ret;
	}
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		return ret;
	items = json_object_get(j, "items");
	json_array_foreach(items, i, it)
	{
		if (json_object_get(it, "packets") || json_object_get(it, "bytes"))
			ncols = ARRAY_SIZE(cols);
		/* a controld from before UDP ports holds TCP ports only */
		if (json_is_object(it) && !json_object_get(it, "transport"))
			json_object_set_new(it, "transport", json_string("tcp"));
	}
	ret = print_list(j, cols, ncols);
	json_decref(j);
	return ret;
}

static int cmd_connections_ls(struct ctx *c, int argc, char **argv)
{
	static const struct col cols[] = {
	    {"ENDED", "end", COL_TIME},	     {"TUNNEL", "tunnel_id", COL_VAL},
	    {"RULE", "rule", COL_VAL},	     {"KIND", "kind", COL_VAL},
	    {"PORT", "port", COL_VAL},	     {"DOMAIN", "domain", COL_VAL},
	    {"SOURCE", "src", COL_VAL},	     {"SPORT", "src_port", COL_VAL},
	    {"MS", "duration_ms", COL_VAL},  {"IN", "bytes_in", COL_BYTES},
	    {"OUT", "bytes_out", COL_BYTES}, {"REASON", "reason", COL_VAL},
	};
	const char *tunnel = NULL, *rule = NULL, *since = NULL, *limit = NULL;
	const struct opt opts[] = {
	    {"--tunnel", "ID", &tunnel, NULL}, {"--rule", "R", &rule, NULL},
	    {"--since", "T", &since, NULL},    {"--limit", "N", &limit, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	unsigned long long n = 0;
	struct sbuf path;
	json_t *j = NULL;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	if (limit && (ret = parse_num(c, "--limit", limit, 1, 1000, &n)))
		return ret;
	path = api_path("connections", NULL, NULL);
	if (tunnel)
		sb_query(&path, "tunnel", tunnel);
	if (rule)
		sb_query(&path, "rule", rule);
	if (since)
		sb_query(&path, "since", since);
	if (limit)
		sb_query(&path, "limit", limit);
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		return ret;
	ret = print_list(j, cols, ARRAY_SIZE(cols));
	json_decref(j);
	return ret;
}

static int cmd_ports_allocate(struct ctx *c, int argc, char **argv)
{
	const char *tunnel = NULL, *port = NULL, *transport = NULL;
	const struct opt opts[] = {
	    {"--tunnel", "ID", &tunnel, NULL},
	    {"--port", "N", &port, NULL},
	    {"--transport", "tcp|udp", &transport, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	unsigned long long n = 0;
	char b1[1024], b2[1024];
	bool udp;
	struct sbuf path;
	json_t *body, *j;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	if (!tunnel || !*tunnel)
		return usage_error(c, "missing --tunnel ID");
	if (port && (ret = parse_num(c, "--port", port, 1, 65535, &n)))
		return ret;
	if (transport && strcmp(transport, "tcp") && strcmp(transport, "udp"))
		return usage_error(c, "--transport must be tcp or udp, not '%s'", transport);
	body = json_pack("{s:s}", "tunnel", tunnel);
	if (body &&
	    ((port && json_object_set_new(body, "port", json_integer((json_int_t)n)) < 0) ||
	     (transport && json_object_set_new(body, "transport", json_string(transport)) < 0))) {
		json_decref(body);
		body = NULL;
	}
	if (!body) {
		fail("out of memory or --tunnel not UTF-8");
		return EXIT_FAIL;
	}
	path = api_path("ports", NULL, NULL);
	ret = api_call(c, "POST", &path, body, &j);
	if (ret || !j)
		return ret;
	/* a TCP port's line as before: the transport is named for UDP only */
	udp = !strcmp(json_string_value(json_object_get(j, "transport")) ?: "", "udp");
	printf("%sport %s allocated to tunnel %s\n", udp ? "udp " : "",
	       fmt_esc(json_object_get(j, "port"), b1, sizeof(b1)),
	       fmt_esc(json_object_get(j, "tunnel_id"), b2, sizeof(b2)));
	json_decref(j);
	return EXIT_OK;
}

static int cmd_ports_release(struct ctx *c, int argc, char **argv)
{
	const char *port = NULL;
	unsigned long long n;
	struct sbuf path;
	json_t *j;
	int ret;

	ret = parse_args(c, argc, argv, NULL, &port, "PORT");
	if (ret)
		return args_exit(ret);
	ret = parse_num(c, "PORT", port, 1, 65535, &n);
	if (ret)
		return ret;
	path = api_path("ports", port, NULL);
	ret = api_call(c, "DELETE", &path, NULL, &j);
	if (ret || !j)
		return ret;
	printf("port %llu released\n", n);
	json_decref(j);
	return EXIT_OK;
}

/* ---- remote rules (ctl/API.md: /api/v1/tunnels/ID/rules) ---- */

/* The first positional arguments (ID, KIND or NAME) ahead of the options. */
static int take_positionals(struct ctx *c, int *argc, char ***argv, const char **out,
			    const char *const *names, int n)
{
	for (int i = 0; i < n; i++) {
		if (!*argc || (*argv)[0][0] == '-') {
			/* --help before them still prints the usage */
			for (int k = 0; k < *argc; k++)
				if (!strcmp((*argv)[k], "--help") || !strcmp((*argv)[k], "-h")) {
					cmd_usage(stdout, c->cmd);
					return ARGS_HELP;
				}
			return usage_error(c, "missing %s", names[i]);
		}
		out[i] = (*argv)[0];
		(*argc)--;
		(*argv)++;
	}
	return 0;
}

/* One operation's outcome in a line: "applied (port 22001)", "failed: REASON", "pending". */
static void print_op(json_t *op)
{
	char b1[1024], b2[1024], b3[1024], b4[1024];
	const char *state = json_string_value(json_object_get(op, "state")) ?: "?";

	printf("operation %s (%s rule %s) for tunnel %s: %s",
	       fmt_esc(json_object_get(op, "id"), b1, sizeof(b1)),
	       fmt_esc(json_object_get(op, "action"), b2, sizeof(b2)),
	       fmt_esc(json_object_get(op, "name"), b3, sizeof(b3)),
	       fmt_esc(json_object_get(op, "tunnel_id"), b4, sizeof(b4)), state);
	if (json_is_integer(json_object_get(op, "port")))
		printf(" (public port %s)", fmt_esc(json_object_get(op, "port"), b1, sizeof(b1)));
	if (json_is_string(json_object_get(op, "reason")))
		printf(": %s", fmt_esc(json_object_get(op, "reason"), b1, sizeof(b1)));
	if (!strcmp(state, "pending"))
		printf(" (the client applies it when it is online)");
	putchar('\n');
}

/*
 * POST or DELETE an operation; --wait: poll the tunnel's list until the client
 * answered it (30 s), exit 1 when it failed. --json prints the API's answer, or with
 * --wait the operation's record as the tunnel's list has it at the end.
 */
static int rules_send(struct ctx *c, const char *tunnel, const char *method, struct sbuf *path,
		      json_t *body, bool wait)
{
	bool json = c->json;
	json_t *op = NULL;
	int ret;

	if (!wait) {
		/* --json: the API's answer as it came */
		ret = api_call(c, method, path, body, &op);
		if (ret || !op)
			return ret;
		print_op(op);
		json_decref(op);
		return EXIT_OK;
	}
	c->json = false;
	ret = api_call(c, method, path, body, &op);
	c->json = json;
	if (ret || !op)
		return ret;
	for (int i = 0; wait && i < 150 &&
			!strcmp(json_string_value(json_object_get(op, "state")) ?: "", "pending");
	     i++) {
		json_int_t id = json_integer_value(json_object_get(op, "id"));
		struct sbuf p2 = api_path("tunnels", tunnel, "rules");
		json_t *list = NULL, *it;
		size_t k;

		usleep(200000);
		c->json = false;
		ret = api_call(c, "GET", &p2, NULL, &list);
		c->json = json;
		if (ret) {
			json_decref(op);
			return ret;
		}
		json_array_foreach(json_object_get(list, "ops"), k, it)
		{
			if (json_integer_value(json_object_get(it, "id")) == id) {
				json_decref(op);
				op = json_incref(it);
				break;
			}
		}
		json_decref(list);
	}
	if (json) {
		char *t = json_dumps(op, JSON_COMPACT);

		if (t)
			puts(t);
		free(t);
	} else {
		print_op(op);
	}
	ret = !strcmp(json_string_value(json_object_get(op, "state")) ?: "", "failed") ? EXIT_FAIL
										       : EXIT_OK;
	json_decref(op);
	return ret;
}

static int cmd_tunnels_rules_add(struct ctx *c, int argc, char **argv)
{
	static const char *const names[] = {"ID", "KIND (tcp or http)"};
	const char *pos[2], *name = NULL, *to = NULL, *port = NULL, *proxy = NULL, *domain = NULL,
			    *webroot = NULL, *host_header = NULL, *basic_auth = NULL;
	bool tls_passthrough = false, redirect_https = false, wait = false;
	const struct opt opts[] = {
	    {"--name", "NAME", &name, NULL},
	    {"--to", "HOST:PORT", &to, NULL},
	    {"--port", "N", &port, NULL},
	    {"--proxy-protocol", "v1|v2", &proxy, NULL},
	    {"--domain", "D", &domain, NULL},
	    {"--webroot", "DIR", &webroot, NULL},
	    {"--tls-passthrough", NULL, NULL, &tls_passthrough},
	    {"--redirect-https", NULL, NULL, &redirect_https},
	    {"--host-header", "H", &host_header, NULL},
	    {"--basic-auth-hash", "USER:HASH", &basic_auth, NULL},
	    {"--wait", NULL, NULL, &wait},
	    {NULL, NULL, NULL, NULL},
	};
	unsigned long long n = 0;
	json_t *body;
	struct sbuf path;
	int ret;

	ret = take_positionals(c, &argc, &argv, pos, names, 2);
	if (!ret)
		ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	if (strcmp(pos[1], "tcp") && strcmp(pos[1], "http"))
		return usage_error(c, "bad KIND '%s': tcp or http", pos[1]);
	if (!name || !*name)
		return usage_error(c, "missing --name NAME");
	if (!strcmp(pos[1], "tcp") && (!to || !*to))
		return usage_error(c, "missing --to HOST:PORT");
	if (!strcmp(pos[1], "http") && (!domain || !*domain))
		return usage_error(c, "missing --domain D");
	if (!strcmp(pos[1], "http") && !to == !webroot)
		return usage_error(c, "an http rule needs one of --to HOST:PORT and --webroot DIR");
	if (port && (ret = parse_num(c, "--port", port, 0, 65535, &n)))
		return ret;
	if (proxy && strcmp(proxy, "v1") && strcmp(proxy, "v2"))
		return usage_error(c, "bad --proxy-protocol '%s': v1 or v2", proxy);
	/* every member is checked by controld, which names what is wrong */
	body = json_pack("{s:s, s:s}", "kind", pos[1], "name", name);
	{
		const char *keys[] = {"to",	 "proxy_protocol", "domain",
				      "webroot", "host_header",	   "basic_auth"};
		const char *vals[] = {to, proxy, domain, webroot, host_header, basic_auth};

		for (size_t i = 0; body && i < ARRAY_SIZE(keys); i++)
			if (vals[i] && json_object_set_new(body, keys[i], json_string(vals[i])))
				json_decref(body), body = NULL;
	}
	if (body && port)
		json_object_set_new(body, "port", json_integer((json_int_t)n));
	if (body && tls_passthrough)
		json_object_set_new(body, "tls_passthrough", json_true());
	if (body && redirect_https)
		json_object_set_new(body, "redirect_https", json_true());
	if (!body) {
		fail("out of memory, or an argument is not UTF-8");
		return EXIT_FAIL;
	}
	path = api_path("tunnels", pos[0], "rules");
	return rules_send(c, pos[0], "POST", &path, body, wait);
}

static int cmd_tunnels_rules_rm(struct ctx *c, int argc, char **argv)
{
	static const char *const names[] = {"ID", "NAME"};
	const char *pos[2];
	bool wait = false;
	const struct opt opts[] = {
	    {"--wait", NULL, NULL, &wait},
	    {NULL, NULL, NULL, NULL},
	};
	struct sbuf path;
	int ret;

	ret = take_positionals(c, &argc, &argv, pos, names, 2);
	if (!ret)
		ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	path = api_path("tunnels", pos[0], "rules/");
	sb_escape(&path, pos[1]);
	return rules_send(c, pos[0], "DELETE", &path, NULL, wait);
}

static int cmd_tunnels_rules_ls(struct ctx *c, int argc, char **argv)
{
	static const struct col rcols[] = {
	    {"RULE", "name", COL_VAL},
	    {"KIND", "kind", COL_VAL},
	    {"PORT", "port", COL_VAL},
	    {"DOMAIN", "domain", COL_VAL},
	};
	static const struct col ocols[] = {
	    {"OP", "id", COL_VAL},
	    {"ACTION", "action", COL_VAL},
	    {"RULE", "name", COL_VAL},
	    {"KIND", "kind", COL_VAL},
	    {"STATE", "state", COL_VAL},
	    {"PORT", "port", COL_VAL},
	    {"UPDATED", "updated_at", COL_TIME},
	    {"REASON", "reason", COL_VAL},
	};
	const char *id = NULL;
	struct table t;
	struct sbuf path;
	char buf[256];
	json_t *j, *it;
	size_t i;
	int ret;

	ret = parse_args(c, argc, argv, NULL, &id, "ID");
	if (ret)
		return args_exit(ret);
	path = api_path("tunnels", id, "rules");
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		return ret;
	printf("tunnel %s (%s): %s operation(s) pending of at most %s\n",
	       fmt_esc(json_object_get(j, "tunnel_id"), buf, sizeof(buf)),
	       json_is_true(json_object_get(j, "online")) ? "online" : "offline",
	       fmt_val(json_object_get(j, "pending"), (char[32]){0}, 32),
	       fmt_val(json_object_get(j, "pending_max"), (char[32]){0}, 32));
	for (int pass = 0; pass < 2 && !ret; pass++) {
		const struct col *cols = pass ? ocols : rcols;
		unsigned ncols = pass ? ARRAY_SIZE(ocols) : ARRAY_SIZE(rcols);
		json_t *list = json_object_get(j, pass ? "ops" : "rules");

		putchar('\n');
		if (!json_array_size(list)) {
			printf(pass ? "operations: -\n" : "rules: -\n");
			continue;
		}
		memset(&t, 0, sizeof(t));
		t.ncols = ncols;
		for (unsigned k = 0; k < ncols; k++)
			table_add(&t, cols[k].title);
		json_array_foreach(list, i, it)
		{
			for (unsigned k = 0; k < ncols; k++)
				table_add(&t, fmt_col(&cols[k], it, buf, sizeof(buf)));
		}
		ret = table_print(&t);
		table_free(&t);
	}
	json_decref(j);
	return ret;
}

/* ---- domains ---- */

static int cmd_domains_ls(struct ctx *c, int argc, char **argv)
{
	static const struct col cols[] = {
	    {"DOMAIN", "domain", COL_VAL},
	    {"TUNNEL", "tunnel_id", COL_VAL},
	    {"RULE", "rule", COL_VAL},
	    {"CREATED", "created_at", COL_TIME},
	};
	const char *tunnel = NULL, *page = NULL;
	const struct opt opts[] = {
	    {"--tunnel", "ID", &tunnel, NULL},
	    {"--page", "N", &page, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	struct sbuf path;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	if (tunnel && !*tunnel)
		return usage_error(c, "empty --tunnel");
	path = api_path("domains", NULL, NULL);
	if (tunnel)
		sb_query(&path, "tunnel", tunnel);
	return get_list(c, &path, page, cols, ARRAY_SIZE(cols));
}

static int cmd_domains_release(struct ctx *c, int argc, char **argv)
{
	const char *domain = NULL;
	char b1[1024], b2[1024];
	struct sbuf path;
	json_t *j;
	int ret;

	ret = parse_args(c, argc, argv, NULL, &domain, "DOMAIN");
	if (ret)
		return args_exit(ret);
	if (!*domain)
		return usage_error(c, "empty DOMAIN");
	/* checked by controld, which names what is wrong with it */
	path = api_path("domains", domain, NULL);
	ret = api_call(c, "DELETE", &path, NULL, &j);
	if (ret || !j)
		return ret;
	printf("domain %s released (it was held by tunnel %s)\n",
	       fmt_esc(json_object_get(j, "domain"), b1, sizeof(b1)),
	       fmt_esc(json_object_get(j, "tunnel_id"), b2, sizeof(b2)));
	json_decref(j);
	return EXIT_OK;
}

/* ---- firewall ---- */

/* POST /api/v1/firewall/LIST {"cidr"} or DELETE /api/v1/firewall/LIST/CIDR. */
static int fw_change(struct ctx *c, int argc, char **argv, const char *list, bool add)
{
	const char *cidr = NULL;
	char buf[1024];
	struct sbuf path;
	json_t *body = NULL, *j;
	int ret;

	ret = parse_args(c, argc, argv, NULL, &cidr, "CIDR");
	if (ret)
		return args_exit(ret);
	if (!*cidr)
		return usage_error(c, "empty CIDR");
	path = api_path("firewall", list, NULL);
	if (add) {
		body = json_pack("{s:s}", "cidr", cidr);
		if (!body) {
			/* not UTF-8: refused as controld would, without asking it */
			struct cidr blk;
			char why[160];

			sb_free(&path);
			if (cidr_parse(cidr, &blk, why, sizeof(why)))
				fail("%s", why);
			else
				fail("out of memory");
			return EXIT_FAIL;
		}
	} else {
		sb_str(&path, "/");
		sb_escape(&path, cidr);
	}
	ret = api_call(c, add ? "POST" : "DELETE", &path, body, &j);
	if (ret || !j)
		return ret;
	printf("%s %s the %s list\n", fmt_esc(json_object_get(j, "cidr"), buf, sizeof(buf)),
	       add ? "added to" : "removed from", list);
	json_decref(j);
	return EXIT_OK;
}

static int cmd_firewall_deny_add(struct ctx *c, int argc, char **argv)
{
	return fw_change(c, argc, argv, "deny", true);
}

static int cmd_firewall_deny_rm(struct ctx *c, int argc, char **argv)
{
	return fw_change(c, argc, argv, "deny", false);
}

static int cmd_firewall_allow_add(struct ctx *c, int argc, char **argv)
{
	return fw_change(c, argc, argv, "allow", true);
}

static int cmd_firewall_allow_rm(struct ctx *c, int argc, char **argv)
{
	return fw_change(c, argc, argv, "allow", false);
}

/* only: NULL for both lists, or "deny" / "allow" (--json: the API body, both lists) */
static int firewall_ls(struct ctx *c, int argc, char **argv, const char *only)
{
	static const char *const lists[] = {"deny", "allow"};
	static const struct col cols[] = {
	    {"CIDR", "cidr", COL_VAL},
	    {"CREATED", "created", COL_TIME},
	};
	struct table t = {.ncols = 3};
	struct sbuf path;
	char buf[256];
	json_t *j, *it;
	size_t i;
	int ret;

	ret = parse_args(c, argc, argv, NULL, NULL, NULL);
	if (ret)
		return args_exit(ret);
	path = api_path("firewall", NULL, NULL);
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		return ret;
	table_add(&t, "KIND");
	for (unsigned k = 0; k < ARRAY_SIZE(cols); k++)
		table_add(&t, cols[k].title);
	for (unsigned l = 0; l < ARRAY_SIZE(lists); l++) {
		json_t *items = json_object_get(j, lists[l]);

		if (!json_is_array(items)) {
			fail("unexpected reply from controld: no \"%s\" list", lists[l]);
			table_free(&t);
			json_decref(j);
			return EXIT_FAIL;
		}
		if (only && strcmp(only, lists[l]))
			continue;
		json_array_foreach(items, i, it)
		{
			table_add(&t, lists[l]);
			for (unsigned k = 0; k < ARRAY_SIZE(cols); k++)
				table_add(&t, fmt_col(&cols[k], it, buf, sizeof(buf)));
		}
	}
	ret = table_print(&t);
	table_free(&t);
	json_decref(j);
	return ret;
}

static int cmd_firewall_ls(struct ctx *c, int argc, char **argv)
{
	return firewall_ls(c, argc, argv, NULL);
}

static int cmd_firewall_deny_ls(struct ctx *c, int argc, char **argv)
{
	return firewall_ls(c, argc, argv, "deny");
}

static int cmd_firewall_allow_ls(struct ctx *c, int argc, char **argv)
{
	return firewall_ls(c, argc, argv, "allow");
}

/* ---- the mesh access policy ---- */

/* "P" or "A-B" (1..65535) into lo, hi; EXIT_USAGE after a message. */
static int parse_port_range(struct ctx *c, const char *s, unsigned *lo, unsigned *hi)
{
	unsigned long long a, b;
	char first[16];
	const char *dash = strchr(s, '-');
	int ret;

	if (!dash) {
		ret = parse_num(c, "--port", s, 1, 65535, &a);
		*lo = *hi = (unsigned)a;
		return ret;
	}
	if ((size_t)(dash - s) >= sizeof(first))
		return usage_error(c, "bad --port '%s': P or A-B", s);
	memcpy(first, s, (size_t)(dash - s));
	first[dash - s] = 0;
	if ((ret = parse_num(c, "--port", first, 1, 65535, &a)) ||
	    (ret = parse_num(c, "--port", dash + 1, 1, 65535, &b)))
		return ret;
	if (a > b)
		return usage_error(c, "bad --port '%s': A-B with A <= B", s);
	*lo = (unsigned)a;
	*hi = (unsigned)b;
	return 0;
}

/* POST /api/v1/mesh {action, from, to, port_lo, port_hi, position, comment} */
static int mesh_add(struct ctx *c, int argc, char **argv, const char *action)
{
	static const char *const names[] = {"FROM", "TO"};
	const char *pos[2], *port = NULL, *position = NULL, *comment = NULL;
	const struct opt opts[] = {
	    {"--port", "P|A-B", &port, NULL},
	    {"--position", "N", &position, NULL},
	    {"--comment", "TEXT", &comment, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	unsigned lo = 0, hi = 0;
	unsigned long long at = 0;
	char b1[1024], b2[1024], b3[1024], b4[1024];
	struct sbuf path;
	json_t *body, *j;
	int ret;

	ret = take_positionals(c, &argc, &argv, pos, names, 2);
	if (!ret)
		ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (!ret && port)
		ret = parse_port_range(c, port, &lo, &hi);
	if (!ret && position)
		ret = parse_num(c, "--position", position, 1, 1000000, &at);
	if (ret)
		return args_exit(ret);
	body = json_pack("{s:s, s:s, s:s, s:i, s:i}", "action", action, "from", pos[0], "to",
			 pos[1], "port_lo", (int)lo, "port_hi", (int)hi);
	if (body && at)
		json_object_set_new(body, "position", json_integer((json_int_t)at));
	if (body && comment && json_object_set_new(body, "comment", json_string(comment)) < 0) {
		json_decref(body);
		body = NULL;
	}
	if (!body) {
		fail("FROM, TO and --comment must be UTF-8");
		return EXIT_FAIL;
	}
	path = api_path("mesh", NULL, NULL);
	ret = api_call(c, "POST", &path, body, &j);
	if (ret || !j)
		return ret;
	printf("mesh rule %s added at position %s: %s %s -> %s",
	       fmt_esc(json_object_get(j, "id"), b1, sizeof(b1)),
	       fmt_esc(json_object_get(j, "position"), b2, sizeof(b2)), action,
	       fmt_esc(json_object_get(j, "from"), b3, sizeof(b3)),
	       fmt_esc(json_object_get(j, "to"), b4, sizeof(b4)));
	if (lo)
		printf(lo == hi ? " port %u" : " ports %u-%u", lo, hi);
	putchar('\n');
	json_decref(j);
	return EXIT_OK;
}

static int cmd_mesh_allow(struct ctx *c, int argc, char **argv)
{
	return mesh_add(c, argc, argv, "allow");
}

static int cmd_mesh_deny(struct ctx *c, int argc, char **argv)
{
	return mesh_add(c, argc, argv, "deny");
}

static int cmd_mesh_ls(struct ctx *c, int argc, char **argv)
{
	static const struct col cols[] = {
	    {"ID", "id", COL_VAL},	     {"POS", "position", COL_VAL},
	    {"ACTION", "action", COL_VAL},   {"FROM", "from", COL_VAL},
	    {"TO", "to", COL_VAL},	     {"PORTS", NULL, COL_VAL},
	    {"COMMENT", "comment", COL_VAL},
	};
	struct table t = {.ncols = ARRAY_SIZE(cols)};
	struct sbuf path;
	char buf[1024];
	json_t *j, *rules, *it;
	size_t i;
	int ret;

	ret = parse_args(c, argc, argv, NULL, NULL, NULL);
	if (ret)
		return args_exit(ret);
	path = api_path("mesh", NULL, NULL);
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		return ret;
	rules = json_object_get(j, "rules");
	if (!json_is_array(rules)) {
		fail("unexpected reply from controld: no \"rules\" list");
		json_decref(j);
		return EXIT_FAIL;
	}
	for (unsigned k = 0; k < ARRAY_SIZE(cols); k++)
		table_add(&t, cols[k].title);
	json_array_foreach(rules, i, it)
	{
		for (unsigned k = 0; k < ARRAY_SIZE(cols); k++) {
			json_int_t lo = json_integer_value(json_object_get(it, "port_lo"));
			json_int_t hi = json_integer_value(json_object_get(it, "port_hi"));

			if (cols[k].key) {
				table_add(&t, fmt_col(&cols[k], it, buf, sizeof(buf)));
				continue;
			}
			if (!lo)
				snprintf(buf, sizeof(buf), "any");
			else if (lo == hi)
				snprintf(buf, sizeof(buf), "%lld", (long long)lo);
			else
				snprintf(buf, sizeof(buf), "%lld-%lld", (long long)lo,
					 (long long)hi);
			table_add(&t, buf);
		}
	}
	ret = table_print(&t);
	table_free(&t);
	json_decref(j);
	return ret;
}

static int cmd_mesh_rm(struct ctx *c, int argc, char **argv)
{
	const char *id = NULL;
	unsigned long long n;
	char b[32];
	struct sbuf path;
	json_t *j;
	int ret;

	ret = parse_args(c, argc, argv, NULL, &id, "ID");
	if (!ret)
		ret = parse_num(c, "ID", id, 1, INT32_MAX, &n);
	if (ret)
		return args_exit(ret);
	snprintf(b, sizeof(b), "%llu", n);
	path = api_path("mesh", b, NULL);
	ret = api_call(c, "DELETE", &path, NULL, &j);
	if (ret || !j)
		return ret;
	printf("mesh rule %s removed\n", b);
	json_decref(j);
	return EXIT_OK;
}

/*
 * Which rule decides FROM (a tunnel id) -> TO (tunnel:ID, group:NAME,
 * domain:NAME or external:NAME|ADDRESS) on a port: controld evaluates its
 * stored rules (GET /api/v1/mesh/test) as relayd would. The port is --port P
 * or TO's last ":P" (an IPv6 address takes --port).
 */
static int cmd_mesh_test(struct ctx *c, int argc, char **argv)
{
	static const char *const names[] = {"FROM", "TO[:PORT]"};
	const char *pos[2], *port = NULL, *colon, *last;
	bool role = false;
	const struct opt opts[] = {
	    {"--port", "P", &port, NULL},
	    {"--mesh-role", NULL, NULL, &role},
	    {NULL, NULL, NULL, NULL},
	};
	unsigned long long p = 0;
	char to[MESH_TO_MAX + 8], portbuf[8], b1[1024], b2[1024], b3[1024];
	struct sbuf path;
	json_t *j;
	int ret;

	ret = take_positionals(c, &argc, &argv, pos, names, 2);
	if (!ret)
		ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	colon = strchr(pos[1], ':');
	if (!colon || !colon[1] || strlen(pos[1]) >= sizeof(to))
		return args_exit(usage_error(
		    c, "TO is tunnel:ID, group:NAME, domain:NAME or external:NAME|ADDRESS"));
	snprintf(to, sizeof(to), "%s", pos[1]);
	last = strrchr(to, ':');
	if (!port && last != to + (colon - pos[1]) && last[1] &&
	    strspn(last + 1, "0123456789") == strlen(last + 1) && strlen(last + 1) < 6) {
		snprintf(portbuf, sizeof(portbuf), "%s", last + 1);
		to[last - to] = 0;
		port = portbuf;
	}
	if (!port)
		return args_exit(usage_error(c, "missing the port: TO:PORT or --port P"));
	ret = parse_num(c, "port", port, 1, 65535, &p);
	if (ret)
		return args_exit(ret);
	path = api_path("mesh", NULL, "test");
	sb_query(&path, "from", pos[0]);
	sb_query(&path, "to", to);
	snprintf(portbuf, sizeof(portbuf), "%llu", p);
	sb_query(&path, "port", portbuf);
	if (role)
		sb_query(&path, "mesh_role", "1");
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		return ret;
	printf("%s -> %s port %llu: %s by %s\n", log_esc_str(pos[0], b1, sizeof(b1)),
	       log_esc_str(to, b2, sizeof(b2)), p,
	       !strcmp(json_string_value(json_object_get(j, "decision")) ?: "", "allow") ? "allowed"
											 : "denied",
	       fmt_esc(json_object_get(j, "reason"), b3, sizeof(b3)));
	json_decref(j);
	return EXIT_OK;
}

static int cmd_reload(struct ctx *c, int argc, char **argv)
{
	struct sbuf path = api_path("reload", NULL, NULL);
	char buf[600];
	json_t *j, *cd;
	int ret;

	ret = parse_args(c, argc, argv, NULL, NULL, NULL);
	if (ret) {
		sb_free(&path);
		return args_exit(ret);
	}
	ret = api_call(c, "POST", &path, NULL, &j);
	if (ret || !j)
		return ret;
	cd = json_object_get(j, "controld");
	printf("controld: reloaded");
	if (json_integer_value(json_object_get(cd, "applied")))
		printf("; applied: %s",
		       fmt_esc(json_object_get(cd, "applied_changes"), buf, sizeof(buf)));
	if (json_integer_value(json_object_get(cd, "waiting")))
		printf("; waiting for a restart: %s",
		       fmt_esc(json_object_get(cd, "changes"), buf, sizeof(buf)));
	printf("\n");
	if (json_string_length(json_object_get(cd, "refused")))
		printf("controld: refused: %s\n",
		       fmt_esc(json_object_get(cd, "refused"), buf, sizeof(buf)));
	if (!strcmp(json_string_value(json_object_get(j, "relayd")) ?: "", "asked"))
		printf("relayd: asked to reload (its log says what applied)\n");
	else
		printf("relayd: not connected, not reloaded\n");
	json_decref(j);
	return EXIT_OK;
}

/* Copies controld's backup src to dst (made 0600, replaced if there); 0 or -errno. */
static int copy_file(const char *src, const char *dst)
{
	char buf[65536], tmp[4200];
	int in, out, ret = 0;
	ssize_t n;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp-navectl", dst) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	out = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (out < 0) {
		ret = -errno;
		close(in);
		return ret;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			ret = errno ? -errno : -EIO;
			break;
		}
	if (n < 0)
		ret = -errno;
	if (!ret && fsync(out) < 0)
		ret = -errno;
	close(in);
	if (close(out) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, dst) < 0)
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

static int cmd_backup(struct ctx *c, int argc, char **argv)
{
	struct sbuf path = api_path("backup", NULL, NULL);
	const char *file = NULL, *src;
	char buf[4200], esc[4200];
	json_t *j;
	int ret;

	/* FILE is optional: a first argument that is no option */
	if (argc > 0 && argv[0][0] && argv[0][0] != '-') {
		file = argv[0];
		argc--;
		argv++;
	}
	ret = parse_args(c, argc, argv, NULL, NULL, NULL);
	if (ret) {
		sb_free(&path);
		return args_exit(ret);
	}
	ret = api_call(c, "POST", &path, NULL, &j);
	if (ret || !j)
		return ret;
	src = json_string_value(json_object_get(j, "path"));
	if (!src) {
		json_decref(j);
		fail("controld answered without a backup path");
		return EXIT_FAIL;
	}
	if (file) {
		ret = copy_file(src, file);
		if (ret) {
			fail("backup made as %s, but copying it to %s: %s (run navectl as root or "
			     "a member of the group that owns the state directory)",
			     log_esc_str(src, buf, sizeof(buf)),
			     log_esc_str(file, esc, sizeof(esc)), strerror(-ret));
			json_decref(j);
			return EXIT_FAIL;
		}
		printf("backup written to %s (%" JSON_INTEGER_FORMAT
		       " bytes, schema v%" JSON_INTEGER_FORMAT "); controld keeps it as %s too\n",
		       log_esc_str(file, esc, sizeof(esc)),
		       json_integer_value(json_object_get(j, "bytes")),
		       json_integer_value(json_object_get(j, "schema_version")),
		       log_esc_str(src, buf, sizeof(buf)));
	} else {
		printf("backup written to %s (%" JSON_INTEGER_FORMAT
		       " bytes, schema v%" JSON_INTEGER_FORMAT ")\n",
		       log_esc_str(src, buf, sizeof(buf)),
		       json_integer_value(json_object_get(j, "bytes")),
		       json_integer_value(json_object_get(j, "schema_version")));
	}
	json_decref(j);
	return EXIT_OK;
}

/* ---- acme ---- */

static const struct col acme_cols[] = {
    {"DOMAIN", "domain", COL_VAL},    {"STATE", "state", COL_VAL},
    {"SERIAL", "serial", COL_VAL},    {"EXPIRES", "not_after", COL_TIME},
    {"RENEWS", "renew_at", COL_TIME}, {"NEXT TRY", "next_try", COL_TIME},
    {"ERROR", "error", COL_VAL},
};

static void acme_print(json_t *j)
{
	json_t *doms = json_object_get(j, "domains"), *d;
	struct table t = {.ncols = ARRAY_SIZE(acme_cols)};
	char b1[600], b2[600];
	size_t i;

	if (!json_is_true(json_object_get(j, "enabled"))) {
		printf("ACME: off ([acme] directory is empty)\n");
		return;
	}
	printf("ACME: %s, account %s\n", fmt_esc(json_object_get(j, "directory"), b1, sizeof(b1)),
	       fmt_esc(json_object_get(j, "account"), b2, sizeof(b2)));
	if (json_is_string(json_object_get(j, "error")))
		printf("error: %s\n", fmt_esc(json_object_get(j, "error"), b1, sizeof(b1)));
	for (unsigned k = 0; k < ARRAY_SIZE(acme_cols); k++)
		table_add(&t, acme_cols[k].title);
	json_array_foreach(doms, i, d)
	{
		for (unsigned k = 0; k < ARRAY_SIZE(acme_cols); k++) {
			json_t *v = json_object_get(d, acme_cols[k].key);

			if (acme_cols[k].kind == COL_TIME && json_integer_value(v) == 0)
				table_add(&t, "-");
			else if (acme_cols[k].kind == COL_VAL)
				table_add(&t, fmt_esc(v, b1, sizeof(b1)));
			else
				table_add(&t, fmt_col(&acme_cols[k], d, b1, sizeof(b1)));
		}
	}
	table_print(&t);
	table_free(&t);
}

static int cmd_acme_status(struct ctx *c, int argc, char **argv)
{
	struct sbuf path = api_path("acme", NULL, NULL);
	json_t *j;
	int ret = parse_args(c, argc, argv, NULL, NULL, NULL);

	if (ret) {
		sb_free(&path);
		return args_exit(ret);
	}
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		return ret;
	acme_print(j);
	json_decref(j);
	return EXIT_OK;
}

#define ACME_WAIT_S 180

/* the attempts made for domain (every domain: their sum) in an acme status */
static json_int_t acme_attempts(json_t *j, const char *domain, bool *working)
{
	json_int_t n = 0;
	json_t *d;
	size_t i;

	*working = false;
	json_array_foreach(json_object_get(j, "domains"), i, d)
	{
		const char *name = json_string_value(json_object_get(d, "domain")) ?: "";

		if (domain && strcasecmp(name, domain))
			continue;
		n += json_integer_value(json_object_get(d, "attempts"));
		*working |=
		    !strcmp(json_string_value(json_object_get(d, "state")) ?: "", "working");
	}
	return n;
}

/* navectl acme renew|revoke: asks, and with --wait follows the status until done */
static int acme_ask(struct ctx *c, int argc, char **argv, const char *what)
{
	bool wait = false, json = c->json, working;
	const char *domain = NULL;
	const struct opt opts[] = {
	    {"--wait", NULL, NULL, &wait},
	    {NULL, NULL, NULL, NULL},
	};
	bool revoke = !strcmp(what, "revoke");
	char shown[300];
	json_int_t before;
	struct sbuf path;
	json_t *j = NULL, *body = NULL;
	int ret;

	ret = parse_args(c, argc, argv, opts, &domain, revoke ? "DOMAIN" : "[DOMAIN]");
	if (ret)
		return args_exit(ret);
	c->json = false;
	path = api_path("acme", NULL, NULL);
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		goto out;
	before = acme_attempts(j, domain, &working);
	json_decref(j);
	j = NULL;
	if (domain)
		body = json_pack("{s:s}", "domain", domain);
	path = api_path("acme", revoke ? "revoke" : "renew", NULL);
	ret = api_call(c, "POST", &path, body, &j);
	if (ret || !j)
		goto out;
	if (!wait && json) {
		char *t = json_dumps(j, JSON_COMPACT);

		if (t)
			puts(t);
		free(t);
		goto out;
	}
	if (!wait) {
		printf("%s of %s asked: navectl acme status shows the outcome\n",
		       revoke ? "revocation (and a new certificate)" : "renewal",
		       domain ? log_esc_str(domain, shown, sizeof(shown)) : "every domain");
		goto out;
	}
	for (int i = 0; i < ACME_WAIT_S * 4; i++) {
		json_decref(j);
		j = NULL;
		usleep(250 * 1000);
		path = api_path("acme", NULL, NULL);
		ret = api_call(c, "GET", &path, NULL, &j);
		if (ret || !j)
			goto out;
		if (acme_attempts(j, domain, &working) > before && !working)
			break;
	}
	if (json) {
		char *t = json_dumps(j, JSON_COMPACT);

		if (t)
			puts(t);
		free(t);
	} else {
		acme_print(j);
	}
	if (acme_attempts(j, domain, &working) <= before || working) {
		fail("no outcome within %d s: navectl acme status shows it later", ACME_WAIT_S);
		ret = EXIT_FAIL;
	} else {
		json_t *d;
		size_t i;

		json_array_foreach(json_object_get(j, "domains"), i, d)
		{
			const char *name = json_string_value(json_object_get(d, "domain")) ?: "";

			if ((!domain || !strcasecmp(name, domain)) &&
			    strcmp(json_string_value(json_object_get(d, "state")) ?: "", "valid"))
				ret = EXIT_FAIL;
		}
	}
out:
	c->json = json;
	json_decref(j);
	return ret;
}

static int cmd_acme_renew(struct ctx *c, int argc, char **argv)
{
	return acme_ask(c, argc, argv, "renew");
}

static int cmd_acme_revoke(struct ctx *c, int argc, char **argv)
{
	return acme_ask(c, argc, argv, "revoke");
}

/* ---- admin users and API keys ------------------------------------------------ */

#define PASSWORD_MIN 8
#define PASSWORD_MAX 1024

/*
 * A new password: with --password-stdin one line of stdin (its line end
 * dropped), else asked twice on the terminal without echo. Never from argv.
 * EXIT_OK with pw (PASSWORD_MAX + 2 bytes), or an exit code after a message.
 */
static int read_password(struct ctx *c, bool from_stdin, char *pw)
{
	char again[PASSWORD_MAX + 2];
	struct termios old, quiet;
	size_t n;
	FILE *tty;

	if (from_stdin) {
		if (!fgets(pw, PASSWORD_MAX + 2, stdin)) {
			fail("no password on stdin");
			return EXIT_FAIL;
		}
	} else {
		tty = isatty(STDIN_FILENO) ? fopen("/dev/tty", "r+e") : NULL;
		if (!tty)
			return usage_error(c, "no terminal to ask the password on: use "
					      "--password-stdin");
		tcgetattr(fileno(tty), &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
		fputs("Password: ", tty);
		fflush(tty);
		if (!fgets(pw, PASSWORD_MAX + 2, tty))
			pw[0] = 0;
		fputs("\nAgain: ", tty);
		fflush(tty);
		if (!fgets(again, sizeof(again), tty))
			again[0] = 0;
		fputs("\n", tty);
		tcsetattr(fileno(tty), TCSAFLUSH, &old);
		fclose(tty);
		if (strcmp(pw, again) != 0) {
			explicit_bzero(again, sizeof(again));
			fail("the passwords differ");
			return EXIT_FAIL;
		}
		explicit_bzero(again, sizeof(again));
	}
	n = strlen(pw);
	if (n && pw[n - 1] == '\n')
		pw[--n] = 0;
	else if (n > PASSWORD_MAX) {
		fail("a password is %d-%d bytes", PASSWORD_MIN, PASSWORD_MAX);
		return EXIT_FAIL;
	}
	if (n && pw[n - 1] == '\r')
		pw[--n] = 0;
	if (n < PASSWORD_MIN || n > PASSWORD_MAX) {
		fail("a password is %d-%d bytes", PASSWORD_MIN, PASSWORD_MAX);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* POST body {"name"?, "password"} from the password read; NULL after a message. */
static json_t *password_body(const char *name, const char *pw)
{
	json_t *b = json_pack("{s:s}", "password", pw);

	if (b && name && json_object_set_new(b, "name", json_string(name)) < 0) {
		json_decref(b);
		b = NULL;
	}
	if (!b)
		fail("the password is not UTF-8 (or out of memory)");
	return b;
}

static const struct col user_cols[] = {
    {"NAME", "name", COL_VAL},
    {"TWO-FACTOR", "two_factor", COL_VAL},
    {"CREATED", "created_at", COL_TIME},
    {"LAST LOGIN", "last_login", COL_TIME},
    {"FAILED", "failed_logins", COL_VAL},
    {"LOCKED UNTIL", "locked_until", COL_TIME},
};

/* users add NAME / users passwd NAME */
static int user_password_cmd(struct ctx *c, int argc, char **argv, bool add)
{
	const char *name = NULL;
	bool from_stdin = false;
	const struct opt opts[] = {
	    {"--password-stdin", NULL, NULL, &from_stdin},
	    {NULL, NULL, NULL, NULL},
	};
	char pw[PASSWORD_MAX + 2], buf[256];
	struct sbuf path;
	json_t *body, *j;
	int ret;

	ret = parse_args(c, argc, argv, opts, &name, "NAME");
	if (ret)
		return args_exit(ret);
	ret = read_password(c, from_stdin, pw);
	if (ret) {
		explicit_bzero(pw, sizeof(pw));
		return ret;
	}
	body = password_body(add ? name : NULL, pw);
	explicit_bzero(pw, sizeof(pw));
	if (!body)
		return EXIT_FAIL;
	path = add ? api_path("users", NULL, NULL) : api_path("users", name, "password");
	ret = api_call(c, "POST", &path, body, &j);
	if (ret || !j)
		return ret;
	printf("user %s %s\n", fmt_esc(json_object_get(j, "name"), buf, sizeof(buf)),
	       add ? "added" : "has a new password (its sessions ended)");
	json_decref(j);
	return EXIT_OK;
}

static int cmd_users_add(struct ctx *c, int argc, char **argv)
{
	return user_password_cmd(c, argc, argv, true);
}

static int cmd_users_passwd(struct ctx *c, int argc, char **argv)
{
	return user_password_cmd(c, argc, argv, false);
}

static int cmd_users_ls(struct ctx *c, int argc, char **argv)
{
	return list_cmd(c, argc, argv, "users", user_cols, ARRAY_SIZE(user_cols));
}

/* METHOD /api/v1/users/NAME[/tail]; prints "user NAME done". */
static int user_action(struct ctx *c, int argc, char **argv, const char *method, const char *tail,
		       const char *done)
{
	const char *name = NULL;
	char buf[256];
	struct sbuf path;
	json_t *j;
	int ret;

	ret = parse_args(c, argc, argv, NULL, &name, "NAME");
	if (ret)
		return args_exit(ret);
	path = api_path("users", name, tail);
	ret = api_call(c, method, &path, NULL, &j);
	if (ret || !j)
		return ret;
	printf("user %s %s\n", fmt_esc(json_object_get(j, "name"), buf, sizeof(buf)), done);
	json_decref(j);
	return EXIT_OK;
}

static int cmd_users_rm(struct ctx *c, int argc, char **argv)
{
	return user_action(c, argc, argv, "DELETE", NULL, "removed");
}

static int cmd_users_unlock(struct ctx *c, int argc, char **argv)
{
	return user_action(c, argc, argv, "POST", "unlock", "unlocked");
}

static int cmd_users_2fa_disable(struct ctx *c, int argc, char **argv)
{
	return user_action(c, argc, argv, "DELETE", "two-factor", "has two-factor off");
}

/* two-factor enable/reset: the new secret, shown this once. */
static int totp_cmd(struct ctx *c, int argc, char **argv, const char *tail)
{
	const char *name = NULL, *secret, *uri;
	char b1[256], b2[512];
	struct sbuf path;
	json_t *j;
	int ret;

	ret = parse_args(c, argc, argv, NULL, &name, "NAME");
	if (ret)
		return args_exit(ret);
	path = api_path("users", name, tail);
	ret = api_call(c, "POST", &path, NULL, &j);
	if (ret || !j)
		return ret;
	secret = need_str(j, "secret");
	uri = secret ? need_str(j, "uri") : NULL;
	if (uri) {
		printf("secret: %s\n", log_esc_str(secret, b1, sizeof(b1)));
		printf("uri:    %s\n", log_esc_str(uri, b2, sizeof(b2)));
		printf("Add it to an authenticator app (TOTP, SHA-1, 6 digits, 30 s); it is shown "
		       "only this once.\n");
	}
	json_decref(j);
	return uri ? EXIT_OK : EXIT_FAIL;
}

static int cmd_users_2fa_enable(struct ctx *c, int argc, char **argv)
{
	return totp_cmd(c, argc, argv, "two-factor");
}

static int cmd_users_2fa_reset(struct ctx *c, int argc, char **argv)
{
	return totp_cmd(c, argc, argv, "two-factor/reset");
}

static int cmd_apikeys_create(struct ctx *c, int argc, char **argv)
{
	const char *desc = NULL, *expires = NULL, *key;
	const struct opt opts[] = {
	    {"--description", "D", &desc, NULL},
	    {"--expires", "DURATION", &expires, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	char buf[256], kb[256];
	uint64_t ms = 0;
	struct sbuf path;
	json_t *j;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	if (expires && cfg_parse_duration_ms(expires, &ms) < 0)
		return usage_error(c, "bad --expires '%s' (e.g. 90m, 12h, 7d; 0 = never)", expires);
	if (ms / 1000 > INT32_MAX)
		return usage_error(c, "bad --expires '%s': too far away", expires);
	path = api_path("apikeys", NULL, NULL);
	ret = api_call(c, "POST", &path,
		       json_pack("{s:s, s:I}", "description", desc ? desc : "", "expires",
				 (json_int_t)((ms + 999) / 1000)),
		       &j);
	if (ret || !j)
		return ret;
	key = need_str(j, "key");
	if (key) {
		printf("%s\n", log_esc_str(key, kb, sizeof(kb)));
		printf("API key %s; it is shown only this once (navectl --server URL "
		       "--api-key-file FILE)\n",
		       fmt_esc(json_object_get(j, "id"), buf, sizeof(buf)));
	}
	json_decref(j);
	return key ? EXIT_OK : EXIT_FAIL;
}

static const struct col apikey_cols[] = {
    {"ID", "id", COL_VAL},
    {"REVOKED", "revoked", COL_VAL},
    {"CREATED", "created_at", COL_TIME},
    {"EXPIRES", "expires_at", COL_EXPIRY},
    {"LAST USED", "last_used", COL_TIME},
    {"DESCRIPTION", "description", COL_VAL},
};

static int cmd_apikeys_ls(struct ctx *c, int argc, char **argv)
{
	return list_cmd(c, argc, argv, "apikeys", apikey_cols, ARRAY_SIZE(apikey_cols));
}

static int cmd_apikeys_revoke(struct ctx *c, int argc, char **argv)
{
	return action_cmd(c, argc, argv, "apikeys", "revoke", "API key", "id", "revoked");
}

/* ---- pki: local files, in nave-pki (ctl/pki_main.c) ---- */

/*
 * The pki commands link BoringSSL's libcrypto; navectl links libcurl, whose
 * dependencies bring OpenSSL's libcrypto, and both in one process would
 * resolve each other's symbols. So navectl runs them in nave-pki: next to
 * its own executable (the build tree), else in PREFIX/lib/nave beside
 * PREFIX/bin (make install), else in PKI_LIBEXEC (the package).
 */
#define PKI_HELPER  "nave-pki"
#define PKI_LIBEXEC "/usr/lib/nave"

/* execv nave-pki [--config FILE] [--json] CMD ARGS; returns only when it could not */
static int cmd_pki(struct ctx *c, int argc, char **argv)
{
	char self[PATH_MAX], path[3][PATH_MAX + 32], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	unsigned ntry = 0;
	char **args;
	int k = 0;

	if (n > 0 && (size_t)n < sizeof(self) - 1 && (slash = memrchr(self, '/', (size_t)n))) {
		*slash = 0;
		snprintf(path[ntry++], sizeof(path[0]), "%s/" PKI_HELPER, self);
		snprintf(path[ntry++], sizeof(path[0]), "%s/../lib/nave/" PKI_HELPER, self);
	}
	snprintf(path[ntry++], sizeof(path[0]), PKI_LIBEXEC "/" PKI_HELPER);
	args = calloc((size_t)argc + 6, sizeof(*args));
	if (!args) {
		fail("out of memory");
		return EXIT_FAIL;
	}
	args[k++] = PKI_HELPER;
	if (c->config) {
		args[k++] = "--config";
		args[k++] = (char *)c->config;
	}
	if (c->json)
		args[k++] = "--json";
	args[k++] = (char *)c->cmd->name;
	memcpy(args + k, argv, (size_t)argc * sizeof(*args));
	for (unsigned i = 0; i < ntry; i++) {
		if (access(path[i], X_OK))
			continue;
		fflush(stdout);
		execv(path[i], args);
		fail("pki: cannot run %s: %s", path[i], strerror(errno));
		free(args);
		return EXIT_FAIL;
	}
	free(args);
	if (ntry == 3)
		fail("pki: " PKI_HELPER " is not installed (looked for %s, %s and %s)", path[0],
		     path[1], path[2]);
	else
		fail("pki: " PKI_HELPER " is not installed (looked for %s)", path[0]);
	return EXIT_FAIL;
}

/* ---- support sessions ----------------------------------------------------------- */

static const struct col support_cols[] = {
    {"ID", "id", COL_VAL},
    {"TUNNEL", "tunnel_id", COL_VAL},
    {"STATE", "state", COL_VAL},
    {"SERVICES", "services", COL_LIST},
    {"EXPIRES", "expires_at", COL_TIME},
    {"APPROVED BY", "approved_by", COL_VAL},
    {"CONNS", "connections", COL_VAL},
    {"REASON", "reason", COL_VAL},
};

static int cmd_support_ls(struct ctx *c, int argc, char **argv)
{
	static const char *const states[] = {"pending", "approved", "ended", "expired"};
	const char *state = NULL, *tunnel = NULL, *page = NULL;
	const struct opt opts[] = {
	    {"--state", "S", &state, NULL},
	    {"--tunnel", "ID", &tunnel, NULL},
	    {"--page", "N", &page, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	struct sbuf path;
	bool known = false;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	for (size_t i = 0; state && i < ARRAY_SIZE(states); i++)
		known |= !strcmp(state, states[i]);
	if (state && !known)
		return usage_error(c, "bad --state '%s': pending, approved, ended or expired",
				   state);
	if (tunnel && !*tunnel)
		return usage_error(c, "empty --tunnel");
	path = api_path("support", NULL, NULL);
	if (state)
		sb_query(&path, "state", state);
	if (tunnel)
		sb_query(&path, "tunnel", tunnel);
	return get_list(c, &path, page, support_cols, ARRAY_SIZE(support_cols));
}

/* An audit record's detail: an object as "key=value ..." (arrays as a,b), else its text. */
static const char *fmt_detail(json_t *v, char *buf, size_t len)
{
	const char *key;
	json_t *it;
	size_t off = 0;

	if (!json_is_object(v))
		return fmt_val(v, buf, len);
	buf[0] = 0;
	json_object_foreach(v, key, it)
	{
		char val[512];
		int n;

		if (json_is_array(it)) {
			val[0] = 0;
			fmt_list_at(it, val, 0, sizeof(val));
		} else {
			str_copy(val, sizeof(val), fmt_val(it, val, sizeof(val)));
		}
		n = snprintf(buf + off, len - off, "%s%s=%s", off ? " " : "", key,
			     *val ? val : "\"\"");
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
	return buf[0] ? buf : "-";
}

static int cmd_support_show(struct ctx *c, int argc, char **argv)
{
	static const struct col cols[] = {
	    {"id", "id", COL_VAL},
	    {"tunnel", "tunnel_id", COL_VAL},
	    {"state", "state", COL_VAL},
	    {"reason", "reason", COL_VAL},
	    {"services", "services", COL_LIST},
	    {"created", "created_at", COL_TIME},
	    {"expires", "expires_at", COL_TIME},
	    {"approved by", "approved_by", COL_VAL},
	    {"approved", "approved_at", COL_TIME},
	    {"ended by", "ended_by", COL_VAL},
	    {"ended", "ended_at", COL_TIME},
	    {"connections", "connections", COL_VAL},
	};
	struct table t = {.ncols = 4};
	const char *id = NULL;
	struct sbuf path;
	char buf[1024];
	json_t *j, *it;
	size_t i;
	int ret;

	ret = parse_args(c, argc, argv, NULL, &id, "ID");
	if (ret)
		return args_exit(ret);
	path = api_path("support", id, NULL);
	ret = api_call(c, "GET", &path, NULL, &j);
	if (ret || !j)
		return ret;
	ret = print_record(j, cols, ARRAY_SIZE(cols));
	table_add(&t, "AT");
	table_add(&t, "EVENT");
	table_add(&t, "ACTOR");
	table_add(&t, "DETAIL");
	json_array_foreach(json_object_get(j, "audit"), i, it)
	{
		json_t *at = json_object_get(it, "at");
		json_t *sec =
		    json_is_integer(at) ? json_integer(json_integer_value(at) / 1000) : NULL;
		const char *ts = fmt_time(sec, "-", buf, sizeof(buf) - 8);
		size_t n = ts == buf ? strlen(buf) : 0;

		json_decref(sec);
		/* the time to the millisecond: "2026-11-22 01:30:00.123Z" */
		if (n && buf[n - 1] == 'Z')
			snprintf(buf + n - 1, sizeof(buf) - n + 1, ".%03dZ",
				 (int)(json_integer_value(at) % 1000));
		table_add(&t, ts);
		table_add(&t, fmt_val(json_object_get(it, "event"), buf, sizeof(buf)));
		table_add(&t, fmt_val(json_object_get(it, "actor"), buf, sizeof(buf)));
		table_add(&t, fmt_detail(json_object_get(it, "detail"), buf, sizeof(buf)));
	}
	if (!ret) {
		putchar('\n');
		ret = table_print(&t);
	}
	table_free(&t);
	json_decref(j);
	return ret;
}

static int cmd_support_approve(struct ctx *c, int argc, char **argv)
{
	return action_cmd(c, argc, argv, "support", "approve", "support session", "id", "approved");
}

static int cmd_support_end(struct ctx *c, int argc, char **argv)
{
	const char *id = NULL;
	char buf[1024];
	struct sbuf path;
	json_t *j;
	int ret;

	ret = parse_args(c, argc, argv, NULL, &id, "ID");
	if (ret)
		return args_exit(ret);
	path = api_path("support", id, "end");
	ret = api_call(c, "POST", &path, NULL, &j);
	if (ret || !j)
		return ret;
	/* a session ended before anyone approved it was denied */
	printf("support session %s %s\n", fmt_esc(json_object_get(j, "id"), buf, sizeof(buf)),
	       json_is_null(json_object_get(j, "approved_at")) ? "denied" : "ended");
	json_decref(j);
	return EXIT_OK;
}

static const struct cmd cmds[] = {
    {"status", NULL, cmd_status, "",
     "Show versions, uptime, relayd state, tunnels, connections and ports."},
    {"reload", NULL, cmd_reload, "",
     "Read the config again in controld and relayd (as systemctl reload does)."},
    {"backup", NULL, cmd_backup, "[FILE]",
     "Copy the store, online and consistent, into state_dir/backups (and to FILE)."},
    {"acme", "status", cmd_acme_status, "",
     "Show the ACME certificates: state, serial, expiry, next renewal, last error."},
    {"acme", "renew", cmd_acme_renew, "[DOMAIN] [--wait]",
     "Ask the ACME CA for a new certificate now (for DOMAIN, else every domain)."},
    {"acme", "revoke", cmd_acme_revoke, "DOMAIN [--wait]",
     "Have the CA revoke DOMAIN's certificate; a domain still in [acme] domains gets a new one."},
    {"registration", "create", cmd_registration_create,
     "[--description D] [--max-uses N] [--expires DURATION] [--allow-from CIDR[,CIDR...]] "
     "[--allow-id PATTERN[,PATTERN...]] [--kinds tcp,udp,http,mesh] "
     "[--domains PATTERN[,PATTERN...]] [--ports A-B]",
     "Create a registration token for new clients; it is printed only this once. The "
     "restrictions are inherited by the auth tokens it mints."},
    {"registration", "ls", cmd_registration_ls, "[--page N]", "List registration tokens."},
    {"registration", "disable", cmd_registration_disable, "ID",
     "Stop a registration token from registering clients."},
    {"registration", "enable", cmd_registration_enable, "ID",
     "Let a disabled registration token register clients again."},
    {"tokens", "create", cmd_tokens_create,
     "[--id NAME] [--description D] [--allow-from CIDR[,CIDR...]] "
     "[--allow-id PATTERN[,PATTERN...]] [--kinds tcp,udp,http,mesh] "
     "[--domains PATTERN[,PATTERN...]] [--ports A-B]",
     "Create an auth token (and its tunnel); it is printed only this once."},
    {"tokens", "ls", cmd_tokens_ls, "[--page N]", "List auth tokens."},
    {"tokens", "show", cmd_tokens_show, "ID", "Show one auth token and its restrictions."},
    {"tokens", "revoke", cmd_tokens_revoke, "ID",
     "Revoke an auth token; a tunnel online with it is disconnected."},
    {"tunnels", "ls", cmd_tunnels_ls, "[--online] [--search TERM] [--page N]", "List tunnels."},
    {"tunnels", "show", cmd_tunnels_show, "ID",
     "Show one tunnel and its rules (TCP ports and HTTP domains) with their traffic."},
    {"tunnels", "shutdown", cmd_tunnels_shutdown, "ID",
     "Tell a tunnel's client to shut down (it exits)."},
    {"tunnels", "rules ls", cmd_tunnels_rules_ls, "ID",
     "Show a tunnel's rules and its remote rule operations (pending, applied, failed)."},
    {"tunnels", "rules add", cmd_tunnels_rules_add,
     "ID tcp|http --name NAME (--to HOST:PORT | --webroot DIR) [--port N] [--domain D] "
     "[--proxy-protocol v1|v2] [--tls-passthrough] [--redirect-https] [--host-header H] "
     "[--basic-auth-hash USER:HASH] [--wait]",
     "Add a rule on a tunnel's client (now if online, else when it connects)."},
    {"tunnels", "rules rm", cmd_tunnels_rules_rm, "ID NAME [--wait]",
     "Remove a rule from a tunnel's client (now if online, else when it connects)."},
    {"ports", "ls", cmd_ports_ls, "[--tunnel ID] [--page N]",
     "List allocated public ports (TCP and UDP)."},
    {"connections", "ls", cmd_connections_ls, "[--tunnel ID] [--rule R] [--since T] [--limit N]",
     "List relayed connections that closed, newest first (T: Unix seconds or 1h, 2d, ...)."},
    {"ports", "allocate", cmd_ports_allocate, "--tunnel ID [--port N] [--transport tcp|udp]",
     "Allocate a public TCP (default) or UDP port (the given one, else any free one) to a "
     "tunnel."},
    {"ports", "release", cmd_ports_release, "PORT", "Release an allocated port (TCP or UDP)."},
    {"domains", "ls", cmd_domains_ls, "[--tunnel ID] [--page N]",
     "List the domains tunnels hold for HTTP rules."},
    {"domains", "release", cmd_domains_release, "DOMAIN",
     "Release a domain (a name or *.NAME): it stops routing to its tunnel."},
    {"firewall", "ls", cmd_firewall_ls, "", "List the firewall's deny and allow lists."},
    {"firewall", "deny ls", cmd_firewall_deny_ls, "", "List the deny list."},
    {"firewall", "allow ls", cmd_firewall_allow_ls, "", "List the allow list."},
    {"firewall", "deny add", cmd_firewall_deny_add, "CIDR",
     "Refuse connections from an address block (e.g. 192.0.2.0/24, 2001:db8::/32, 192.0.2.7)."},
    {"firewall", "deny rm", cmd_firewall_deny_rm, "CIDR",
     "Take an address block out of the deny list."},
    {"firewall", "allow add", cmd_firewall_allow_add, "CIDR",
     "Allow an address block; while the allow list holds any, only its blocks may connect "
     "(devices to the tunnel port too)."},
    {"firewall", "allow rm", cmd_firewall_allow_rm, "CIDR",
     "Take an address block out of the allow list."},
    {"mesh", "allow", cmd_mesh_allow, "FROM TO [--port P|A-B] [--position N] [--comment TEXT]",
     "Let tunnels matching FROM (*, tunnel id GLOB or id:GLOB, group:GLOB) open streams to "
     "TO (*, tunnel:GLOB by tunnel id, group:GLOB by group id, domain:PATTERN, "
     "external:CIDR|PATTERN); the first matching rule decides."},
    {"mesh", "deny", cmd_mesh_deny, "FROM TO [--port P|A-B] [--position N] [--comment TEXT]",
     "Refuse streams from FROM to TO (as mesh allow takes them)."},
    {"mesh", "ls", cmd_mesh_ls, "", "List the mesh rules in the order they decide."},
    {"mesh", "rm", cmd_mesh_rm, "ID", "Remove a mesh rule."},
    {"mesh", "test", cmd_mesh_test, "FROM TO[:PORT] [--port P] [--mesh-role]",
     "Ask controld which of its mesh rules (or the default) decides a stream from tunnel id "
     "FROM to TO (tunnel:ID, group:NAME, domain:NAME, external:NAME|ADDRESS)."},
    {"users", "add", cmd_users_add, "NAME [--password-stdin]",
     "Add an admin user of the remote admin API (the password asked, or one line of stdin)."},
    {"users", "ls", cmd_users_ls, "[--page N]", "List admin users."},
    {"users", "passwd", cmd_users_passwd, "NAME [--password-stdin]",
     "Set a user's password; its sessions and login locks end."},
    {"users", "rm", cmd_users_rm, "NAME", "Remove a user and its sessions."},
    {"users", "unlock", cmd_users_unlock, "NAME",
     "End a user's login locks from every address and forget its failed logins."},
    {"users", "two-factor enable", cmd_users_2fa_enable, "NAME",
     "Turn on TOTP for a user: the secret is printed only this once."},
    {"users", "two-factor disable", cmd_users_2fa_disable, "NAME", "Turn off TOTP for a user."},
    {"users", "two-factor reset", cmd_users_2fa_reset, "NAME",
     "Give a user a new TOTP secret (printed only this once); the old one stops working."},
    {"pki", "init", cmd_pki, PKI_INIT_ARGS, PKI_INIT_HELP},
    {"pki", "issue", cmd_pki, PKI_ISSUE_ARGS, PKI_ISSUE_HELP},
    {"pki", "ls", cmd_pki, PKI_LS_ARGS, PKI_LS_HELP},
    {"pki", "revoke", cmd_pki, PKI_REVOKE_ARGS, PKI_REVOKE_HELP},
    {"support", "ls", cmd_support_ls, "[--state S] [--tunnel ID] [--page N]",
     "List support sessions devices asked for, newest first (S: pending, approved, ended, "
     "expired)."},
    {"support", "show", cmd_support_show, "ID",
     "Show a support session and its audit trail (requested, approved, connections, end)."},
    {"support", "approve", cmd_support_approve, "ID",
     "Approve a pending support session: supporters with its key may connect until it "
     "expires."},
    {"support", "end", cmd_support_end, "ID",
     "End a support session (deny it when pending): its connections close at once."},
    {"apikeys", "create", cmd_apikeys_create, "[--description D] [--expires DURATION]",
     "Create an API key for the remote admin API; it is printed only this once."},
    {"apikeys", "ls", cmd_apikeys_ls, "[--page N]", "List API keys (never the keys)."},
    {"apikeys", "revoke", cmd_apikeys_revoke, "ID", "Revoke an API key."},
};

/* True when cmd's name is two words, the first of them sub. */
static bool name_under(const struct cmd *cmd, const char *sub)
{
	size_t n = strlen(sub);

	return cmd->name && !strncmp(cmd->name, sub, n) && cmd->name[n] == ' ';
}

/* Usage of every command, of one group's, or of the two-word ones under group sub. */
static void usage(FILE *f, const char *group, const char *sub)
{
	fprintf(f, "usage: navectl [--socket PATH | --config FILE | --server URL] [--json] COMMAND "
		   "[ARGS]\n");
	if (!group)
		fprintf(f, "\nAdmin client of nave-controld (its HTTP+JSON API on a Unix socket);\n"
			   "the pki commands work on local files (state_dir/pki or --dir DIR).\n");
	fprintf(f, "\nCommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		const struct cmd *cmd = &cmds[i];

		if (group && strcmp(group, cmd->group))
			continue;
		if (sub && !name_under(cmd, sub))
			continue;
		fprintf(f, "  %s%s%s%s%s\n      %s\n", cmd->group, cmd->name ? " " : "",
			cmd->name ? cmd->name : "", *cmd->args ? " " : "", cmd->args, cmd->help);
	}
	if (group)
		return;
	fprintf(f, "\nOptions (before or after the command):\n"
		   "  --socket PATH  controld's socket\n"
		   "  --config FILE  the server config: its runtime_dir + \"" SOCKET_NAME "\"\n"
		   "  --json         print the API's JSON reply as it is\n"
		   "  --server URL   https://HOST:PORT: the remote admin API ([admin] listen), or\n"
		   "                 $" SERVER_ENV
		   "; with an API key from --api-key-file FILE or $" APIKEY_ENV "\n"
		   "  --cert DIR     with --server: log in with the admin certificate DIR/tls.crt\n"
		   "                 and DIR/tls.key (navectl pki: PKI_DIR/nodes/NAME) instead\n"
		   "                 of an API key\n"
		   "  --ca FILE      the CA (or the self-signed certificate) the server's is\n"
		   "                 verified against (default: the system's CAs)\n"
		   "  -h, --help     this help; COMMAND --help for one command\n"
		   "  -V, --version  print the version\n"
		   "\nThe socket: --socket PATH, else from --config FILE, else $" SOCKET_ENV
		   ",\nelse the first of these that answers: runtime_dir of " SYSTEM_CONFIG
		   "\n(when it exists), " SYSTEM_SOCKET ", ./var/run" SOCKET_NAME ".\n"
		   "\nDURATION: 90s, 30m, 12h, 7d (0 = never). Exit status: 0 done, 1 refused or\n"
		   "failed (the reason on stderr), 2 bad usage.\n");
}

static const struct cmd *find_group(const char *group)
{
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		if (!strcmp(cmds[i].group, group))
			return &cmds[i];
	return NULL;
}

static const struct cmd *find_cmd(const char *group, const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		if (!strcmp(cmds[i].group, group) && cmds[i].name && !strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

/* A command of group whose name is two words, the first of them sub. */
static const struct cmd *find_sub(const char *group, const char *sub)
{
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		if (!strcmp(cmds[i].group, group) && name_under(&cmds[i], sub))
			return &cmds[i];
	return NULL;
}

int main(int argc, char **argv)
{
	struct ctx c = {0};
	const struct cmd *cmd;
	int i = 1, ret;

	if (argc == 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
		printf("navectl %s\n", NAVE_VERSION);
		return EXIT_OK;
	}
	ret = take_globals(&c, argc, argv, &i);
	if (ret == ARGS_HELP) {
		usage(stdout, NULL, NULL);
		return EXIT_OK;
	}
	if (ret)
		return ret;
	if (i >= argc)
		return usage_error(&c, "missing command");
	cmd = find_group(argv[i]);
	if (!cmd)
		return usage_error(&c, "unknown command '%s'", argv[i]);
	i++;
	if (cmd->name) {
		const char *group = cmd->group;

		c.group = group;
		ret = take_globals(&c, argc, argv, &i);
		if (ret == ARGS_HELP) {
			usage(stdout, group, NULL);
			return EXIT_OK;
		}
		if (ret)
			return ret;
		if (i >= argc)
			return usage_error(&c, "missing %s subcommand", group);
		cmd = find_cmd(group, argv[i]);
		if (!cmd && find_sub(group, argv[i])) {
			/* a two-word name: "firewall deny add" */
			char name[64];

			c.sub = argv[i++];
			ret = take_globals(&c, argc, argv, &i);
			if (ret == ARGS_HELP) {
				usage(stdout, group, c.sub);
				return EXIT_OK;
			}
			if (ret)
				return ret;
			if (i >= argc)
				return usage_error(&c, "missing %s %s subcommand", group, c.sub);
			snprintf(name, sizeof(name), "%s %s", c.sub, argv[i]);
			cmd = find_cmd(group, name);
			if (!cmd)
				return usage_error(&c, "unknown command '%s %s %s'", group, c.sub,
						   argv[i]);
		}
		if (!cmd)
			return usage_error(&c, "unknown command '%s %s'", group, argv[i]);
		i++;
	}
	c.cmd = cmd;
	/* before any handle, and undone after: what curl_easy_init sets up lazily is never freed */
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		fail("cannot initialise libcurl");
		return EXIT_FAIL;
	}
	ret = cmd->fn(&c, argc - i, argv + i);
	curl_global_cleanup();
	if (fflush(stdout) == EOF || ferror(stdout)) {
		fail("writing output: %s", strerror(errno));
		return EXIT_FAIL;
	}
	return ret;
}

// SPDX-License-Identifier: Apache-2.0
#include "http.h"

#include "domain.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---------- the parser's callbacks: spans of the current head ---------- */

static struct http_req *req_of(http_parser *hp)
{
	return hp->data;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
	struct http_req *r = req_of(hp);
	uint32_t off = (uint32_t)((const uint8_t *)at - r->base);

	if (!r->url.len)
		r->url.off = off;
	r->url.len = off + (uint32_t)len - r->url.off;
	return 0;
}

static int on_field(http_parser *hp, const char *at, size_t len)
{
	struct http_req *r = req_of(hp);
	uint32_t off = (uint32_t)((const uint8_t *)at - r->base);
	struct http_hdr *h;

	if (r->nhdr == 0 || r->last_value) {
		if (r->nhdr == HTTP_HEADERS_MAX) {
			r->too_many = true;
			return 0;
		}
		h = &r->hdr[r->nhdr++];
		h->name.off = off;
		h->name.len = 0;
		h->value.off = h->value.len = 0;
		r->last_value = false;
	}
	if (r->too_many)
		return 0;
	h = &r->hdr[r->nhdr - 1];
	h->name.len = off + (uint32_t)len - h->name.off;
	return 0;
}

static int on_value(http_parser *hp, const char *at, size_t len)
{
	struct http_req *r = req_of(hp);
	uint32_t off = (uint32_t)((const uint8_t *)at - r->base);
	struct http_hdr *h;

	if (r->too_many || r->nhdr == 0)
		return 0;
	h = &r->hdr[r->nhdr - 1];
	if (!r->last_value) {
		h->value.off = off;
		r->last_value = true;
	}
	h->value.len = off + (uint32_t)len - h->value.off;
	return 0;
}

/*
 * A chunked body's framing: Debian builds libhttp-parser with
 * HTTP_PARSER_STRICT=0, which takes any two bytes after chunk data for CRLF,
 * any byte after a chunk line's CR for LF and a bare LF inside a chunk
 * extension as part of it. The service's parser may frame such a body
 * differently (request smuggling), so every byte of a chunked body outside
 * chunk data is checked here: CR always followed by LF, LF always after CR,
 * CR LF right after chunk data, no control bytes, no folded trailer.
 */
#define FR_CHUNKED 1 /* the current body is chunked */
#define FR_CR	   2 /* the last framing byte was CR */
#define FR_LF	   4 /* ... was LF: a line starts */
#define FR_DATA	   8 /* chunk data just ended: CR LF must follow */

static bool ctl(uint8_t c)
{
	return (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f;
}

static bool frame_ok(struct http_req *r, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (((r->fr & FR_DATA) && c != '\r') || !!(r->fr & FR_CR) != (c == '\n') ||
		    ((r->fr & FR_LF) && (c == ' ' || c == '\t')) || ctl(c))
			return false;
		r->fr = (uint8_t)((r->fr & FR_CHUNKED) | (c == '\r' ? FR_CR : 0) |
				  (c == '\n' ? FR_LF : 0));
	}
	return true;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	struct http_req *r = req_of(hp);
	uint32_t off = (uint32_t)((const uint8_t *)at - r->base);

	if (!(r->fr & FR_CHUNKED))
		return 0;
	if (!frame_ok(r, r->base + r->fr_off, off - r->fr_off))
		return -1; /* the parser stops with HPE_CB_body */
	r->fr_off = off + (uint32_t)len;
	r->fr = FR_CHUNKED | FR_DATA;
	return 0;
}

static int on_headers_complete(http_parser *hp)
{
	struct http_req *r = req_of(hp);

	r->head_done = true;
	r->upgrade = hp->upgrade;
	http_parser_pause(hp, 1);
	return 0;
}

static int on_message_complete(http_parser *hp)
{
	req_of(hp)->msg_done = true;
	http_parser_pause(hp, 1);
	return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_body = on_body,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

/* ---------- requests ---------- */

void http_req_init(struct http_req *r)
{
	memset(r, 0, sizeof(*r));
	http_parser_init(&r->hp, HTTP_REQUEST);
	r->hp.data = r;
	r->mode = HTTP_M_HEAD;
}

static int error_status(enum http_errno e)
{
	switch (e) {
	case HPE_HEADER_OVERFLOW:
		return 431;
	case HPE_INVALID_VERSION:
		return 505;
	case HPE_INVALID_METHOD:
		return 501;
	default:
		return 400;
	}
}

bool http_hdr_is(const struct http_req *r, const uint8_t *base, unsigned i, const char *name)
{
	size_t n = strlen(name);

	return r->hdr[i].name.len == n &&
	       !strncasecmp((const char *)base + r->hdr[i].name.off, name, n);
}

static bool has_crlf(const uint8_t *p, size_t n)
{
	return memchr(p, '\r', n) || memchr(p, '\n', n) || memchr(p, '\0', n);
}

/*
 * The authority of an absolute-form target ("http://Host:8080/x", or CONNECT's
 * "host:443"): host alone and host[:port] as spans of the head. false for an
 * origin-form ("/x") or asterisk-form target, or one without a host.
 */
static bool target_authority(const struct http_req *r, const uint8_t *base, struct http_span *host,
			     struct http_span *auth)
{
	struct http_parser_url u;
	uint32_t end;

	if (!r->url.len || base[r->url.off] == '/' || base[r->url.off] == '*')
		return false;
	http_parser_url_init(&u);
	if (http_parser_parse_url((const char *)base + r->url.off, r->url.len,
				  r->hp.method == HTTP_CONNECT, &u) ||
	    !(u.field_set & (1 << UF_HOST)) || !u.field_data[UF_HOST].len)
		return false;
	host->off = r->url.off + u.field_data[UF_HOST].off;
	host->len = u.field_data[UF_HOST].len;
	auth->off = host->off;
	end = host->off + host->len;
	if (base[auth->off - 1] == '[' && base[end] == ']') { /* an IPv6 literal */
		auth->off--;
		end++;
	}
	if (u.field_set & (1 << UF_PORT))
		end = r->url.off + u.field_data[UF_PORT].off + u.field_data[UF_PORT].len;
	auth->len = end - auth->off;
	return true;
}

/*
 * What the lax parser (HTTP_PARSER_STRICT=0, see above) lets through in a head
 * and a service may read otherwise: "HXXP/1.1" for the version, extra blanks
 * in the request line, tabs in the target, a space in a header name
 * ("Content-Length : 5" counts as Content-Length), any byte after a CR where
 * LF belongs; also obs-fold, control bytes, a version other than 1.0 and 1.1,
 * an absolute-form target that does not parse, Transfer-Encoding that is not
 * chunked or comes with HTTP/1.0 (RFC 9112 6.1). 0 when the head is fine.
 */
static int head_check(const struct http_req *r, const uint8_t *base, const struct http_head *h)
{
	static const char *const framing[] = {"connection", "proxy-connection", "upgrade",
					      "transfer-encoding", "content-length"};
	const char *m = http_method_str((enum http_method)r->hp.method);
	size_t ml = strlen(m), i = 0, e;
	struct http_span host, auth;

	if (r->hp.http_major != 1 || r->hp.http_minor > 1)
		return 505;
	for (size_t k = 0; k < h->len; k++) {
		uint8_t c = base[k];

		if (ctl(c) || (c == '\r' && (k + 1 == h->len || base[k + 1] != '\n')))
			return 400;
		if (c == '\n' && k + 1 < h->len && (base[k + 1] == ' ' || base[k + 1] == '\t'))
			return 400; /* obs-fold, RFC 9112 5.2 */
	}
	/* the request line: METHOD SP target SP HTTP/d.d, after empty lines */
	while (base[i] == '\r' || base[i] == '\n')
		i++;
	if (r->url.off != i + ml + 1 || memcmp(base + i, m, ml) || base[i + ml] != ' ')
		return 400;
	for (size_t k = 0; k < r->url.len; k++)
		if (base[r->url.off + k] <= ' ' || base[r->url.off + k] >= 0x7f)
			return 400;
	e = r->url.off + r->url.len;
	if (e + 10 > h->len || memcmp(base + e, " HTTP/", 6) ||
	    (base[e + 9] != '\r' && base[e + 9] != '\n'))
		return 400;
	if (base[r->url.off] != '/' && base[r->url.off] != '*' &&
	    !target_authority(r, base, &host, &auth))
		return 400;
	for (unsigned k = 0; k < r->nhdr; k++) {
		if (memchr(base + r->hdr[k].name.off, ' ', r->hdr[k].name.len))
			return 400;
		/* the parser reads these values token by token and takes a tab
		   for part of one ("upgrade\t" is not upgrade); a service trims it */
		for (size_t j = 0; j < sizeof(framing) / sizeof(framing[0]); j++)
			if (http_hdr_is(r, base, k, framing[j]) &&
			    memchr(base + r->hdr[k].value.off, '\t', r->hdr[k].value.len))
				return 400;
	}
	if (r->hp.uses_transfer_encoding && (!(r->hp.flags & F_CHUNKED) || r->hp.http_minor == 0))
		return 400;
	return 0;
}

static void head_fill(struct http_req *r, const uint8_t *base, struct http_head *h)
{
	h->method = r->hp.method;
	h->major = r->hp.http_major;
	h->minor = r->hp.http_minor;
	h->keep_alive = http_should_keep_alive(&r->hp);
	h->upgrade = r->hp.upgrade;
	h->body = (r->hp.flags & F_CHUNKED) ||
		  (r->hp.content_length > 0 && r->hp.content_length != ULLONG_MAX);
	h->host = h->authorization = -1;
	h->host_twice = false;
	for (unsigned i = 0; i < r->nhdr; i++) {
		if (http_hdr_is(r, base, i, "host")) {
			if (h->host >= 0)
				h->host_twice = true;
			h->host = (int)i;
		} else if (http_hdr_is(r, base, i, "authorization")) {
			h->authorization = (int)i;
		}
	}
}

enum http_result http_req_head(struct http_req *r, const uint8_t *base, size_t len, size_t max,
			       struct http_head *h, int *status)
{
	size_t todo, n;
	enum http_errno e;

	if (r->fed == 0) {
		r->nhdr = 0;
		r->url.off = r->url.len = 0;
		r->last_value = r->too_many = r->head_done = r->msg_done = false;
		r->upgrade = false;
	}
	if (len <= r->fed)
		return HTTP_R_MORE;
	todo = len - r->fed;
	if (r->fed + todo > max + 1)
		todo = max + 1 - r->fed; /* one byte past the bound tells "too large" */
	r->base = base;
	n = http_parser_execute(&r->hp, &settings, (const char *)base + r->fed, todo);
	e = HTTP_PARSER_ERRNO(&r->hp);
	if (e == HPE_PAUSED && r->head_done) {
		h->len = r->fed + (uint32_t)n + 1;
		if (base[h->len - 1] != '\n') {
			*status = 400; /* not where libhttp-parser 2.9 stops: refuse, never guess */
			return HTTP_R_ERROR;
		}
		if (h->len > max || r->too_many) {
			*status = 431;
			return HTTP_R_ERROR;
		}
		for (unsigned i = 0; i < r->nhdr; i++)
			if (has_crlf(base + r->hdr[i].value.off, r->hdr[i].value.len) ||
			    !r->hdr[i].name.len) {
				*status = 400; /* obs-fold or a NUL: refused, RFC 9112 5.2 */
				return HTTP_R_ERROR;
			}
		head_fill(r, base, h);
		*status = head_check(r, base, h);
		return *status ? HTTP_R_ERROR : HTTP_R_HEAD;
	}
	if (e == HPE_OK) {
		r->fed += (uint32_t)n;
		if (r->fed > max) {
			*status = 431;
			return HTTP_R_ERROR;
		}
		return HTTP_R_MORE;
	}
	*status = error_status(e);
	return HTTP_R_ERROR;
}

/* the mode after a complete request message */
#define ANSWER_SWITCHED 1
#define ANSWER_REFUSED	2

static enum http_mode after_message(struct http_req *r)
{
	uint8_t a = r->answer;

	r->answer = 0;
	if (!r->upgrade)
		return HTTP_M_HEAD;
	return a == ANSWER_SWITCHED  ? HTTP_M_RAW
	       : a == ANSWER_REFUSED ? HTTP_M_HEAD
				     : HTTP_M_UPGRADE;
}

void http_req_head_done(struct http_req *r, const uint8_t *base, const struct http_head *h)
{
	r->fed = 0;
	r->requests++;
	r->msg_done = false;
	http_parser_pause(&r->hp, 0);
	r->fr = (r->hp.flags & F_CHUNKED) ? FR_CHUNKED : 0;
	/* the head's last byte, the LF, is where the parser paused */
	http_parser_execute(&r->hp, &settings, (const char *)base + h->len - 1, 1);
	if (HTTP_PARSER_ERRNO(&r->hp) == HPE_PAUSED)
		http_parser_pause(&r->hp, 0);
	r->answer = 0;
	r->mode = r->msg_done ? after_message(r) : HTTP_M_BODY;
}

long http_req_body(struct http_req *r, const uint8_t *p, size_t len, int *status)
{
	size_t n;
	enum http_errno e;

	if (r->mode != HTTP_M_BODY) {
		*status = 500; /* the caller's mistake: never hand the parser these bytes */
		return -1;
	}
	r->msg_done = false;
	r->base = p; /* no header callbacks in a body, but trailers call on_field */
	r->nhdr = 0;
	r->last_value = r->too_many = false;
	r->fr_off = 0;
	n = http_parser_execute(&r->hp, &settings, (const char *)p, len);
	e = HTTP_PARSER_ERRNO(&r->hp);
	if ((r->fr & FR_CHUNKED) && (e == HPE_OK || e == HPE_PAUSED) &&
	    !frame_ok(r, p + r->fr_off, n - r->fr_off)) {
		*status = 400;
		return -1;
	}
	if (e == HPE_PAUSED && r->msg_done) {
		http_parser_pause(&r->hp, 0);
		r->mode = after_message(r);
		return (long)n;
	}
	if (e == HPE_OK)
		return (long)n;
	*status = 400;
	return -1;
}

bool http_req_upgrade_answer(struct http_req *r, bool switched)
{
	if (r->mode == HTTP_M_UPGRADE) {
		r->mode = switched ? HTTP_M_RAW : HTTP_M_HEAD;
		return true;
	}
	if (r->mode == HTTP_M_BODY && r->upgrade && !r->answer) {
		r->answer = switched ? ANSWER_SWITCHED : ANSWER_REFUSED;
		return true;
	}
	return false;
}

/* ---------- responses ---------- */

#define RQ_HEAD	   1 /* a HEAD request: its final answer has no body */
#define RQ_UPGRADE 2 /* it asked for Upgrade: a 101 may answer it */

static struct http_resp *resp_of(http_parser *hp)
{
	return hp->data;
}

static uint8_t resp_front(const struct http_resp *s)
{
	return s->q[s->first];
}

static uint8_t resp_pop(struct http_resp *s)
{
	uint8_t f = s->q[s->first];

	s->first = (uint8_t)((s->first + 1) % HTTP_RESP_QUEUE);
	s->n--;
	return f;
}

static int resp_begin(http_parser *hp)
{
	return resp_of(hp)->n ? 0 : -1; /* a response nobody asked for */
}

/* 1: no body (libhttp-parser's F_SKIPBODY), whatever the head says */
static int resp_headers(http_parser *hp)
{
	struct http_resp *s = resp_of(hp);
	unsigned st = hp->status_code;

	if (st < 100)
		return -1;
	if (st == 101 && !(resp_front(s) & RQ_UPGRADE))
		return -1; /* switching protocols nobody asked to switch */
	/* RFC 9112 6.3: 1xx, 204, 304 and an answer to HEAD end at their head */
	if (st < 200 || st == 204 || st == 304 || (resp_front(s) & RQ_HEAD))
		return 1;
	return 0;
}

static int resp_complete(http_parser *hp)
{
	struct http_resp *s = resp_of(hp);
	unsigned st = hp->status_code;

	if (st == 101) {
		resp_pop(s);
		s->ev = HTTP_RESP_SWITCHED;
	} else if (st < 200) {
		return 0; /* interim: the request still waits for its answer */
	} else if (resp_pop(s) & RQ_UPGRADE) {
		s->ev = HTTP_RESP_REFUSED;
	} else {
		return 0;
	}
	http_parser_pause(hp, 1); /* the event's last byte: feed returns there */
	return 0;
}

static const http_parser_settings resp_settings = {
    .on_message_begin = resp_begin,
    .on_headers_complete = resp_headers,
    .on_message_complete = resp_complete,
};

void http_resp_init(struct http_resp *s)
{
	memset(s, 0, sizeof(*s));
	http_parser_init(&s->hp, HTTP_RESPONSE);
	s->hp.data = s;
}

bool http_resp_expect(struct http_resp *s, unsigned method, bool upgrade)
{
	if (s->n == HTTP_RESP_QUEUE)
		return false;
	s->q[(s->first + s->n) % HTTP_RESP_QUEUE] =
	    (uint8_t)((method == HTTP_HEAD ? RQ_HEAD : 0) | (upgrade ? RQ_UPGRADE : 0));
	s->n++;
	return true;
}

enum http_resp_result http_resp_feed(struct http_resp *s, const uint8_t *p, size_t len,
				     size_t *used)
{
	enum http_errno e;
	size_t n;

	*used = 0;
	if (s->end)
		return (enum http_resp_result)s->end;
	if (!len)
		return HTTP_RESP_OK; /* 0 bytes would tell the parser the stream ended */
	s->hp.data = s;		     /* s may have moved */
	s->ev = HTTP_RESP_OK;
	n = http_parser_execute(&s->hp, &resp_settings, (const char *)p, len);
	e = HTTP_PARSER_ERRNO(&s->hp);
	*used = n;
	if (e == HPE_PAUSED) {
		http_parser_pause(&s->hp, 0);
		if (s->ev == HTTP_RESP_SWITCHED)
			s->end = HTTP_RESP_SWITCHED;
		return (enum http_resp_result)s->ev;
	}
	if (e != HPE_OK || n != len) {
		s->end = HTTP_RESP_ERROR;
		return HTTP_RESP_ERROR;
	}
	return HTTP_RESP_OK;
}

unsigned http_resp_outstanding(const struct http_resp *s)
{
	return s->n;
}

/* ---------- the forwarded head ---------- */

struct out {
	uint8_t *p;
	size_t len, cap;
	bool over;
};

static void put(struct out *o, const void *s, size_t n)
{
	if (o->over || o->len + n > o->cap) {
		o->over = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_hdr(struct out *o, const char *name, const void *v, size_t n)
{
	puts_(o, name);
	puts_(o, ": ");
	put(o, v, n);
	puts_(o, "\r\n");
}

/* the value with the blanks around it cut */
static struct http_span trim(const uint8_t *base, struct http_span s)
{
	while (s.len && (base[s.off] == ' ' || base[s.off] == '\t')) {
		s.off++;
		s.len--;
	}
	while (s.len && (base[s.off + s.len - 1] == ' ' || base[s.off + s.len - 1] == '\t'))
		s.len--;
	return s;
}

/*
 * name is one of ours (lowercase, '-'), also spelled with '_': many services
 * (CGI, WSGI, PHP) read X_Forwarded_For as X-Forwarded-For.
 */
static bool fwd_name_is(const struct http_req *r, const uint8_t *base, unsigned i, const char *name)
{
	const uint8_t *p = base + r->hdr[i].name.off;
	size_t n = strlen(name);

	if (r->hdr[i].name.len != n)
		return false;
	for (size_t k = 0; k < n; k++) {
		uint8_t c = p[k] == '_' ? '-' : p[k];

		if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != (uint8_t)name[k])
			return false;
	}
	return true;
}

static int find(const struct http_req *r, const uint8_t *base, const char *name)
{
	for (unsigned i = 0; i < r->nhdr; i++)
		if (http_hdr_is(r, base, i, name))
			return (int)i;
	return -1;
}

size_t http_head_rewrite(const struct http_req *r, const uint8_t *base, const struct http_head *h,
			 const struct http_fwd *f, uint8_t *out, size_t cap)
{
	static const char *const ours[] = {"x-forwarded-for",  "x-forwarded-proto",
					   "x-forwarded-host", "x-forwarded-port",
					   "forwarded",	       "x-real-ip"};
	struct out o = {.p = out, .cap = cap};
	size_t start = 0, line;
	struct http_span host = {0, 0}, thost;
	bool has_host = true;

	/* the request line, after the empty lines a client may send before it */
	while (base[start] == '\r' || base[start] == '\n')
		start++;
	line = (size_t)((const uint8_t *)memchr(base + start, '\n', h->len - start) - base);
	if (line > start && base[line - 1] == '\r')
		line--;
	put(&o, base + start, line - start);
	puts_(&o, "\r\n");
	/* RFC 9112 3.2.2: a proxy sends the host of an absolute-form target as Host */
	if (!target_authority(r, base, &thost, &host)) {
		if (h->host >= 0)
			host = trim(base, r->hdr[h->host].value);
		else
			has_host = false;
	}
	if (f->host_header)
		put_hdr(&o, "Host", f->host_header, strlen(f->host_header));
	else if (has_host)
		put_hdr(&o, "Host", base + host.off, host.len);
	for (unsigned k = 0; k < r->nhdr; k++) {
		bool skip = http_hdr_is(r, base, k, "host") ||
			    (f->strip_authorization && http_hdr_is(r, base, k, "authorization"));

		for (size_t j = 0; j < sizeof(ours) / sizeof(ours[0]) && !skip; j++)
			skip = fwd_name_is(r, base, k, ours[j]) &&
			       (!f->trusted || j == 0); /* XFF is rebuilt below */
		if (skip)
			continue;
		put(&o, base + r->hdr[k].name.off, r->hdr[k].name.len);
		puts_(&o, ": ");
		struct http_span v = trim(base, r->hdr[k].value);
		put(&o, base + v.off, v.len);
		puts_(&o, "\r\n");
	}
	/* X-Forwarded-For: a trusted proxy's chain, then the peer */
	puts_(&o, "X-Forwarded-For: ");
	for (unsigned k = 0; f->trusted && k < r->nhdr; k++) {
		if (!http_hdr_is(r, base, k, "x-forwarded-for"))
			continue;
		struct http_span v = trim(base, r->hdr[k].value);
		if (!v.len)
			continue;
		put(&o, base + v.off, v.len);
		puts_(&o, ", ");
	}
	puts_(&o, f->client_ip);
	puts_(&o, "\r\n");
	if (!f->trusted || find(r, base, "x-forwarded-proto") < 0)
		put_hdr(&o, "X-Forwarded-Proto", f->proto, strlen(f->proto));
	if ((!f->trusted || find(r, base, "x-forwarded-host") < 0) && has_host)
		put_hdr(&o, "X-Forwarded-Host", base + host.off, host.len);
	if ((!f->trusted || find(r, base, "x-forwarded-port") < 0) && f->port)
		put_hdr(&o, "X-Forwarded-Port", f->port, strlen(f->port));
	puts_(&o, "\r\n");
	return o.over ? 0 : o.len;
}

bool http_head_host(const struct http_req *r, const uint8_t *base, const struct http_head *h,
		    char *out)
{
	struct http_span th, auth;
	const char *p = NULL;
	size_t n = 0;

	if (target_authority(r, base, &th, &auth)) {
		p = (const char *)base + th.off;
		n = th.len;
	} else if (r->url.len && base[r->url.off] != '/' && base[r->url.off] != '*') {
		return false; /* never the Host header when the target names another */
	} else {
		struct http_span v;
		const char *colon;

		if (h->host < 0 || h->host_twice)
			return false;
		v = trim(base, r->hdr[h->host].value);
		p = (const char *)base + v.off;
		n = v.len;
		colon = memchr(p, ':', n);
		if (colon) {
			/* the port: digits only */
			for (const char *d = colon + 1; d < p + n; d++)
				if (*d < '0' || *d > '9')
					return false;
			n = (size_t)(colon - p);
		}
	}
	if (n && p[n - 1] == '.')
		n--; /* "example.com." is example.com */
	if (!domain_norm(p, n, out, false))
		return false;
	/* an IPv4 address is a valid name to domain_norm: refuse what inet_aton
	   reads as one ("192.0.2.1", "10.1", "0x7f.1") and any numeric top label */
	const char *top = strrchr(out, '.') ? strrchr(out, '.') + 1 : out;
	struct in_addr a4;

	return !inet_aton(out, &a4) && strspn(top, "0123456789") != strlen(top);
}

/* ---------- the edge's own answers ---------- */

const char *http_status_text(int status)
{
	switch (status) {
	case 301:
		return "Moved Permanently";
	case 308:
		return "Permanent Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 421:
		return "Misdirected Request";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Error";
	}
}

size_t http_error_page(uint8_t *out, size_t cap, int status, const char *extra, const char *text)
{
	char body[512];
	const char *st = http_status_text(status);
	int bl, n;

	bl = snprintf(body, sizeof(body),
		      "<!doctype html>\n<html><head><title>%d %s</title></head>\n"
		      "<body><h1>%d %s</h1>\n<p>%s</p>\n<hr><p>nave</p></body></html>\n",
		      status, st, status, st, text);
	if (bl < 0 || (size_t)bl >= sizeof(body))
		return 0;
	n = snprintf((char *)out, cap,
		     "HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\n"
		     "Content-Length: %d\r\nConnection: close\r\nCache-Control: no-store\r\n"
		     "%s\r\n%s",
		     status, st, bl, extra ? extra : "", body);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n;
}

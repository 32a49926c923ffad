/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request side of an HTTP/1.x connection at the edge: where each request's
 * head ends, what it says, where its body ends (Content-Length, chunked), and
 * the head that goes on to the service.
 *
 * Parsing is libhttp-parser's (Debian's libhttp-parser-dev 2.9.4, the parser
 * Node.js used for a decade; the only standalone HTTP/1 parser Debian 12
 * packages): one parser per connection sees every byte the client sends, so
 * pipelined requests, chunked bodies and Upgrade are followed request by
 * request. It pauses at the end of each head and at the end of each message,
 * which is how the caller learns the boundaries without copying bodies.
 *
 * A head is kept in one contiguous buffer (the caller's); the spans below are
 * offsets from its first byte, so the caller may move a partial head between
 * calls (http_req_head feeds only the bytes it has not seen yet).
 */
#ifndef NAVE_HTTP_H
#define NAVE_HTTP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_HEADERS_MAX 100 /* header lines in one head; more is 431 */

struct http_span {
	uint32_t off, len;
};

struct http_hdr {
	struct http_span name, value;
};

enum http_mode { HTTP_M_HEAD, HTTP_M_BODY, HTTP_M_RAW };

struct http_req {
	http_parser hp;
	enum http_mode mode;
	uint32_t fed;	     /* bytes of the current head the parser has seen */
	bool head_done;	     /* the parser paused at the end of a head */
	bool msg_done;	     /* ... or at the end of a message */
	bool upgrade;	     /* the head asked for Upgrade: raw bytes after this message */
	bool last_value;     /* the last header callback was a value */
	bool too_many;	     /* more than HTTP_HEADERS_MAX header lines */
	const uint8_t *base; /* the current head's first byte, during a call */
	struct http_span url;
	unsigned nhdr;
	struct http_hdr hdr[HTTP_HEADERS_MAX];
	unsigned requests; /* heads completed on this connection */
	/* a chunked body's framing, checked beside the parser (it is built lax) */
	uint32_t fr_off; /* bytes of the current body buffer checked so far */
	uint8_t fr;	 /* FR_* state bits (http.c) */
};

/* What a completed head says, for routing and checks. */
struct http_head {
	uint32_t len;	 /* bytes, blank line included */
	unsigned method; /* enum http_method */
	unsigned major, minor;
	int host;	 /* index of the Host header, -1 when none */
	bool host_twice; /* more than one Host header */
	bool keep_alive;
	bool upgrade;
	bool body;	   /* Content-Length > 0 or chunked */
	int authorization; /* index of the Authorization header, -1 */
};

void http_req_init(struct http_req *r);

enum http_result {
	HTTP_R_MORE,  /* every byte taken; more are needed */
	HTTP_R_HEAD,  /* a head of head->len bytes ends inside the buffer */
	HTTP_R_ERROR, /* malformed: *status says which answer fits (400, 431, 501, 505) */
};

/*
 * HEAD mode: the current head starts at base and len bytes of it are there
 * (the first r->fed of them were seen by an earlier call). max bounds the head.
 * On HTTP_R_HEAD the request is in r (spans) and h; the caller then calls
 * http_req_head_done() once it has dealt with the head (forwarded or refused).
 */
enum http_result http_req_head(struct http_req *r, const uint8_t *base, size_t len, size_t max,
			       struct http_head *h, int *status);
/*
 * After HTTP_R_HEAD: the parser moves past the head; r->mode is BODY, HEAD
 * again (a message without body) or RAW (an Upgrade without body).
 */
void http_req_head_done(struct http_req *r, const uint8_t *base, const struct http_head *h);
/*
 * BODY mode: how many of the len bytes at p belong to the current message's
 * body; when the message ended there, r->mode becomes HEAD (or RAW after an
 * Upgrade). -1 when the body is malformed (bad chunk), *status 400.
 */
long http_req_body(struct http_req *r, const uint8_t *p, size_t len, int *status);

/* A header's name equals name (case-insensitive). */
bool http_hdr_is(const struct http_req *r, const uint8_t *base, unsigned i, const char *name);

/* What the edge adds to and takes from a head on its way to the service. */
struct http_fwd {
	const char *client_ip;	  /* X-Forwarded-For gains it */
	const char *proto;	  /* "http" | "https" */
	const char *port;	  /* X-Forwarded-Port, the public port */
	bool trusted;		  /* the peer is a trusted proxy: its X-Forwarded-* stay */
	const char *host_header;  /* non-NULL: Host becomes this (the original goes in
				     X-Forwarded-Host) */
	bool strip_authorization; /* the edge checked it: the service does not see it */
};

/*
 * Writes the head to forward into out: the request line as it came, every
 * header but Host (when rewritten), X-Forwarded-* and Forwarded (unless
 * trusted) and Authorization (when stripped), then Host and the X-Forwarded-*
 * of this hop. Returns its length, or 0 when it does not fit cap.
 */
size_t http_head_rewrite(const struct http_req *r, const uint8_t *base, const struct http_head *h,
			 const struct http_fwd *f, uint8_t *out, size_t cap);
/* Extra bytes http_head_rewrite may add to a head (for buffer sizing). */
#define HTTP_REWRITE_EXTRA 1024

/*
 * The host a head names, lowercased, without port, into out (DOMAIN_MAX + 1):
 * the authority of an absolute-form target, else the Host header. false when
 * there is none or it is not a valid name (an IP literal is not routed).
 */
bool http_head_host(const struct http_req *r, const uint8_t *base, const struct http_head *h,
		    char *out);

/*
 * A small complete response the edge answers with itself (errors, redirects,
 * 401): status line, Content-Type text/html, Content-Length, Connection:
 * close, extra header lines (each ending in \r\n, may be NULL), then a short
 * page. Returns its length, 0 when it does not fit.
 */
size_t http_error_page(uint8_t *out, size_t cap, int status, const char *extra, const char *text);
const char *http_status_text(int status);

#endif

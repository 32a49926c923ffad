/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request side of an HTTP/1.x connection at the edge: where each request's
 * head ends, what it says, where its body ends (Content-Length, chunked), and
 * the head that goes on to the service. The response side is followed too, a
 * little: where each response ends, and whether an Upgrade was accepted.
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

/*
 * Where a client's byte stream is. HEAD: a request head comes (http_req_head).
 * BODY: its body (http_req_body). UPGRADE: an Upgrade request was forwarded
 * whole and its answer has not come: no client byte goes on (they wait) until
 * http_req_upgrade_answer() says what the service answered. RAW: the service
 * switched protocols (101): every byte goes as it is, both ways.
 */
enum http_mode { HTTP_M_HEAD, HTTP_M_BODY, HTTP_M_UPGRADE, HTTP_M_RAW };

struct http_req {
	http_parser hp;
	enum http_mode mode;
	uint32_t fed;	     /* bytes of the current head the parser has seen */
	bool head_done;	     /* the parser paused at the end of a head */
	bool msg_done;	     /* ... or at the end of a message */
	bool upgrade;	     /* the head asked for Upgrade: UPGRADE mode after this message */
	uint8_t answer;	     /* the service answered that Upgrade before its body ended */
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
 * again (a message without body) or UPGRADE (an Upgrade without body).
 */
void http_req_head_done(struct http_req *r, const uint8_t *base, const struct http_head *h);
/*
 * BODY mode: how many of the len bytes at p belong to the current message's
 * body; when the message ended there, r->mode becomes HEAD (or, after an
 * Upgrade request, UPGRADE, or what its answer already said). -1 when the
 * body is malformed (bad chunk), *status 400; also -1 (500) when r->mode is
 * not BODY (UPGRADE bytes must wait, RAW bytes need no call).
 */
long http_req_body(struct http_req *r, const uint8_t *p, size_t len, int *status);
/*
 * The service answered the Upgrade request (the last one forwarded, r->upgrade):
 * switched (a 101, HTTP_RESP_SWITCHED) or not (a final response,
 * HTTP_RESP_REFUSED). In UPGRADE mode r->mode becomes RAW or HEAD (the next
 * request is parsed and checked like any); in BODY mode (an answer before the
 * request's body ended) the answer is kept and applies when the body ends.
 * false when no Upgrade request waits for an answer (nothing changes).
 */
bool http_req_upgrade_answer(struct http_req *r, bool switched);

/*
 * The response side, followed lightly: where each response the service sends
 * ends, so that the edge knows which request it answers and whether a 101
 * switched the connection (an Upgrade request answered 200 leaves it HTTP,
 * and what the client sends next must still be parsed and checked). Response
 * bytes are never copied nor changed: the caller forwards them as they are.
 * Bodies with a length (Content-Length, chunk data) are skipped, not scanned;
 * a body that ends at close (neither) keeps everything after it as body.
 *
 * The relay calls http_resp_expect() for each request head it forwards, in
 * order, then http_resp_feed() over every byte the service sends, in order.
 */
#define HTTP_RESP_QUEUE 64 /* requests forwarded and not answered, at most */

struct http_resp {
	http_parser hp;
	uint8_t q[HTTP_RESP_QUEUE]; /* RQ_* (http.c) of each request not answered, a ring */
	uint8_t first, n;	    /* the oldest one's slot; how many */
	uint8_t ev;		    /* enum http_resp_result of the current call */
	uint8_t end;		    /* SWITCHED or ERROR once there: every later call says it */
};

enum http_resp_result {
	HTTP_RESP_OK,	    /* every byte followed (*used == len) */
	HTTP_RESP_REFUSED,  /* the final answer to the Upgrade request ended at *used:
			       not a 101, the connection stays HTTP; feed the rest again */
	HTTP_RESP_SWITCHED, /* a 101 answered the Upgrade request and ended at *used:
			       what follows is raw, both ways; no more calls needed */
	HTTP_RESP_ERROR,    /* not HTTP, a response nobody asked for, a 101 to a request
			       that did not ask for Upgrade: the edge closes */
};

void http_resp_init(struct http_resp *s);
/*
 * A request was forwarded (call it before the head's first byte goes to the
 * service): its response is now expected. HEAD answers have no body; upgrade
 * is what struct http_head says. false when HTTP_RESP_QUEUE requests are
 * outstanding: nothing recorded, the head must wait (forward no request while
 * http_resp_outstanding() == HTTP_RESP_QUEUE).
 */
bool http_resp_expect(struct http_resp *s, unsigned method, bool upgrade);
/*
 * The service sent len bytes at p: follows them up to the first event (see
 * the results); *used is how many were followed (all of them on OK).
 */
enum http_resp_result http_resp_feed(struct http_resp *s, const uint8_t *p, size_t len,
				     size_t *used);
/* Requests forwarded without a complete final response yet. */
unsigned http_resp_outstanding(const struct http_resp *s);

/* A header's name equals name (case-insensitive). */
bool http_hdr_is(const struct http_req *r, const uint8_t *base, unsigned i, const char *name);

/* What the edge adds to and takes from a head on its way to the service. */
struct http_fwd {
	const char *client_ip; /* X-Forwarded-For gains it */
	const char *proto;     /* "http" | "https" */
	const char *port;      /* X-Forwarded-Port, the public port */
	bool
	    trusted; /* the peer is a trusted proxy: its X-Forwarded-*, Forwarded, X-Real-IP stay */
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

// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/http.c, the request side of an HTTP/1.x connection:
 * heads whole and in every split, Content-Length and chunked bodies (every
 * split, extensions, trailers), pipelining, Upgrade, each refusal with its
 * status (and the lax parser's smuggling openings), the routed host, the
 * forwarded head, the edge's own pages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "domain.h"
#include "http.h"

#define MAX 8192

static const uint8_t *B(const char *s)
{
	return (const uint8_t *)s;
}

/* one head given whole: its result and status */
static enum http_result head1(struct http_req *r, const char *s, size_t max, struct http_head *h,
			      int *status)
{
	http_req_init(r);
	*status = 0;
	return http_req_head(r, B(s), strlen(s), max, h, status);
}

static int head_status(const char *s)
{
	struct http_req r;
	struct http_head h;
	int st;

	if (head1(&r, s, MAX, &h, &st) != HTTP_R_ERROR)
		return 0;
	return st;
}

/*
 * A relay over a client byte stream, fed in pieces of the sizes in cuts (0
 * ends the list, then the rest): heads found (offset, length), body bytes
 * counted, RAW bytes, the first error. The same thing the fuzz target does.
 */
struct run {
	unsigned heads;
	size_t head_off[8], head_len[8];
	struct http_head h[8];
	size_t body, raw;
	size_t held; /* bytes waiting in UPGRADE mode at the end */
	int status;
	enum http_mode mode;
};

/*
 * What the service answers each Upgrade request, in order: 'S' a 101
 * (switched), 'R' a refusal (200); none left: the bytes after it wait.
 */
static const char *answers = "";

static void relay(const char *in, size_t len, const size_t *cuts, struct run *out)
{
	const char *ans = answers;

	static uint8_t buf[65536];
	struct http_req r;
	size_t have = 0, got = 0, base_off = 0; /* base_off: stream offset of buf[0] */

	memset(out, 0, sizeof(*out));
	http_req_init(&r);
	while (got < len) {
		size_t add = (cuts && *cuts) ? *cuts++ : len - got;

		if (add > len - got)
			add = len - got;
		memcpy(buf + have, in + got, add);
		have += add;
		got += add;
		for (;;) {
			if (r.mode == HTTP_M_HEAD) {
				struct http_head h;
				int st = 0;
				enum http_result res;

				if (!have)
					break;
				res = http_req_head(&r, buf, have, MAX, &h, &st);
				if (res == HTTP_R_ERROR) {
					out->status = st;
					out->mode = r.mode;
					return;
				}
				if (res == HTTP_R_MORE)
					break;
				assert_true(h.len <= have);
				if (out->heads < 8) {
					out->head_off[out->heads] = base_off;
					out->head_len[out->heads] = h.len;
					out->h[out->heads] = h;
				}
				out->heads++;
				http_req_head_done(&r, buf, &h);
				memmove(buf, buf + h.len, have - h.len);
				have -= h.len;
				base_off += h.len;
			} else if (r.mode == HTTP_M_BODY) {
				int st = 0;
				long n;

				if (!have)
					break;
				n = http_req_body(&r, buf, have, &st);
				if (n < 0) {
					out->status = st;
					out->mode = r.mode;
					return;
				}
				assert_true((size_t)n <= have);
				out->body += (size_t)n;
				memmove(buf, buf + n, have - (size_t)n);
				have -= (size_t)n;
				base_off += (size_t)n;
				if (r.mode == HTTP_M_BODY)
					break; /* every byte was body */
			} else if (r.mode == HTTP_M_UPGRADE) {
				if (!*ans) {
					out->held = have;
					break;
				}
				assert_true(http_req_upgrade_answer(&r, *ans++ == 'S'));
				assert_int_not_equal(r.mode, HTTP_M_UPGRADE);
			} else {
				out->raw += have;
				base_off += have;
				have = 0;
				break;
			}
		}
	}
	out->mode = r.mode;
}

static void relay_whole(const char *s, struct run *out)
{
	relay(s, strlen(s), NULL, out);
}

/* ---------- heads ---------- */

static const char GET[] = "GET /index.html?q=1 HTTP/1.1\r\n"
			  "Host: example.com\r\n"
			  "User-Agent: t\r\n"
			  "Accept: */*\r\n"
			  "\r\n";

static void check_get(const struct http_req *r, const struct http_head *h)
{
	assert_int_equal(h->len, strlen(GET));
	assert_int_equal(h->method, HTTP_GET);
	assert_int_equal(h->major, 1);
	assert_int_equal(h->minor, 1);
	assert_int_equal(h->host, 0);
	assert_false(h->host_twice);
	assert_true(h->keep_alive);
	assert_false(h->upgrade);
	assert_false(h->body);
	assert_int_equal(h->authorization, -1);
	assert_int_equal(r->nhdr, 3);
	assert_int_equal(r->url.len, strlen("/index.html?q=1"));
	assert_memory_equal(GET + r->url.off, "/index.html?q=1", r->url.len);
	assert_true(http_hdr_is(r, B(GET), 1, "user-agent"));
	assert_memory_equal(GET + r->hdr[2].value.off, "*/*", 3);
	assert_int_equal(r->hdr[2].value.len, 3);
}

static void test_get(void **state)
{
	struct http_req r;
	struct http_head h;
	int st;
	char host[DOMAIN_MAX + 1];

	assert_int_equal(head1(&r, GET, MAX, &h, &st), HTTP_R_HEAD);
	check_get(&r, &h);
	assert_true(http_head_host(&r, B(GET), &h, host));
	assert_string_equal(host, "example.com");
	http_req_head_done(&r, B(GET), &h);
	assert_int_equal(r.mode, HTTP_M_HEAD);
	assert_int_equal(r.requests, 1);
	assert_int_equal(r.fed, 0);
}

static void test_get_http10(void **state)
{
	static const char s[] = "GET / HTTP/1.0\r\nHost: a.example\r\n\r\n";
	static const char ka[] =
	    "GET / HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\n";
	static const char cl[] = "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n";
	struct http_req r;
	struct http_head h;
	int st;

	assert_int_equal(head1(&r, s, MAX, &h, &st), HTTP_R_HEAD);
	assert_int_equal(h.minor, 0);
	assert_false(h.keep_alive);
	assert_int_equal(head1(&r, ka, MAX, &h, &st), HTTP_R_HEAD);
	assert_true(h.keep_alive);
	assert_int_equal(head1(&r, cl, MAX, &h, &st), HTTP_R_HEAD);
	assert_false(h.keep_alive);
}

/* every split: the first k bytes (MORE), then the whole buffer */
static void split_same(const char *s)
{
	size_t len = strlen(s);
	struct http_req r0, r;
	struct http_head h0, h;
	int st;

	assert_int_equal(head1(&r0, s, MAX, &h0, &st), HTTP_R_HEAD);
	for (size_t k = 1; k < h0.len; k++) {
		http_req_init(&r);
		assert_int_equal(http_req_head(&r, B(s), k, MAX, &h, &st), HTTP_R_MORE);
		assert_int_equal(r.fed, k);
		assert_int_equal(http_req_head(&r, B(s), len, MAX, &h, &st), HTTP_R_HEAD);
		assert_memory_equal(&h, &h0, sizeof(h));
		assert_int_equal(r.nhdr, r0.nhdr);
		assert_memory_equal(&r.url, &r0.url, sizeof(r.url));
		assert_memory_equal(r.hdr, r0.hdr, r.nhdr * sizeof(r.hdr[0]));
	}
}

static void test_get_split(void **state)
{
	split_same(GET);
	split_same("GET / HTTP/1.1\nHost: a.example\nX-Empty:\nX-B: v \n\n");
	split_same("\r\n\r\nPOST /p HTTP/1.1\r\nHost: h.example\r\nContent-Length: 3\r\n\r\nabc");
}

/* the partial head moves between calls: spans are offsets from its start */
static void test_get_moved(void **state)
{
	static uint8_t a[256], b[256];
	size_t len = strlen(GET);
	struct http_req r;
	struct http_head h;
	int st;

	http_req_init(&r);
	memcpy(a, GET, 20);
	assert_int_equal(http_req_head(&r, a, 20, MAX, &h, &st), HTTP_R_MORE);
	memcpy(b, GET, len);
	memset(a, 'x', sizeof(a));
	assert_int_equal(http_req_head(&r, b, len, MAX, &h, &st), HTTP_R_HEAD);
	check_get(&r, &h);
}

/* ---------- bodies ---------- */

static void test_content_length(void **state)
{
	static const char s[] = "POST /up HTTP/1.1\r\nHost: a.example\r\nContent-Length: 10\r\n\r\n"
				"0123456789GET / HTTP/1.1\r\n";
	size_t hl = strlen(s) - strlen("0123456789GET / HTTP/1.1\r\n");
	struct http_req r;
	struct http_head h;
	int st;
	long n;

	assert_int_equal(head1(&r, s, MAX, &h, &st), HTTP_R_HEAD);
	assert_int_equal(h.len, hl);
	assert_true(h.body);
	http_req_head_done(&r, B(s), &h);
	assert_int_equal(r.mode, HTTP_M_BODY);
	n = http_req_body(&r, B(s) + hl, 3, &st);
	assert_int_equal(n, 3);
	assert_int_equal(r.mode, HTTP_M_BODY);
	n = http_req_body(&r, B(s) + hl + 3, 4, &st);
	assert_int_equal(n, 4);
	/* the rest of the body and more: only the body is counted */
	n = http_req_body(&r, B(s) + hl + 7, strlen(s) - hl - 7, &st);
	assert_int_equal(n, 3);
	assert_int_equal(r.mode, HTTP_M_HEAD);
}

static const char CHUNKED[] = "POST /c HTTP/1.1\r\n"
			      "Host: a.example\r\n"
			      "Transfer-Encoding: chunked\r\n"
			      "\r\n"
			      "5;name=value;q=\"x y\"\r\n"
			      "hello\r\n"
			      "1a\r\n"
			      "abcdefghijklmnopqrstuvwxyz\r\n"
			      "0\r\n"
			      "Trailer-One: 1\r\n"
			      "Trailer-Two: two\r\n"
			      "\r\n";

static void test_chunked_every_split(void **state)
{
	size_t len = strlen(CHUNKED);
	const char *body = strstr(CHUNKED, "\r\n\r\n") + 4;
	size_t hl = (size_t)(body - CHUNKED);
	char in[512];
	struct run out;

	/* the body, then a second request that must be found after it */
	snprintf(in, sizeof(in), "%sGET /next HTTP/1.1\r\nHost: a.example\r\n\r\n", CHUNKED);
	for (size_t k = 1; k < strlen(in); k++) {
		size_t cuts[] = {k, 0};

		relay(in, strlen(in), cuts, &out);
		assert_int_equal(out.status, 0);
		assert_int_equal(out.heads, 2);
		assert_int_equal(out.head_len[0], hl);
		assert_true(out.h[0].body);
		assert_int_equal(out.body, len - hl);
		assert_int_equal(out.head_off[1], len);
		assert_int_equal(out.mode, HTTP_M_HEAD);
	}
	/* one byte at a time */
	{
		size_t ones[1024];

		for (size_t i = 0; i < strlen(in); i++)
			ones[i] = 1;
		ones[strlen(in)] = 0;
		relay(in, strlen(in), ones, &out);
		assert_int_equal(out.status, 0);
		assert_int_equal(out.heads, 2);
		assert_int_equal(out.body, len - hl);
	}
}

static void test_pipelined(void **state)
{
	static const char a[] = "GET /a HTTP/1.1\r\nHost: a.example\r\n\r\n";
	static const char b[] = "POST /b HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\n";
	static const char c[] = "GET /c HTTP/1.1\r\nHost: a.example\r\n\r\n";
	char in[512];
	struct run out;

	snprintf(in, sizeof(in), "%s%sHELLO%s", a, b, c);
	for (size_t k = 0; k < strlen(in); k++) {
		size_t cuts[] = {k, 0};

		relay(in, strlen(in), k ? cuts : NULL, &out);
		assert_int_equal(out.status, 0);
		assert_int_equal(out.heads, 3);
		assert_int_equal(out.head_off[0], 0);
		assert_int_equal(out.head_len[0], strlen(a));
		assert_int_equal(out.head_off[1], strlen(a));
		assert_int_equal(out.head_len[1], strlen(b));
		assert_int_equal(out.head_off[2], strlen(a) + strlen(b) + 5);
		assert_int_equal(out.head_len[2], strlen(c));
		assert_int_equal(out.h[1].method, HTTP_POST);
		assert_int_equal(out.body, 5);
	}
}

static void test_upgrade(void **state)
{
	static const char s[] = "GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\n"
				"Upgrade: websocket\r\n\r\n"
				"\x81\x85garbage that is not HTTP\r\n\r\n";
	const char *end = strstr(s, "\r\n\r\n") + 4;
	struct http_req r;
	struct http_head h;
	int st;
	struct run out;

	assert_int_equal(head1(&r, s, MAX, &h, &st), HTTP_R_HEAD);
	assert_true(h.upgrade);
	assert_int_equal(h.len, (size_t)(end - s));
	http_req_head_done(&r, B(s), &h);
	/* forwarded: nothing more goes on until the service answers */
	assert_int_equal(r.mode, HTTP_M_UPGRADE);
	assert_int_equal(http_req_body(&r, B(s) + h.len, 3, &st), -1);
	assert_int_equal(r.mode, HTTP_M_UPGRADE);
	assert_true(http_req_upgrade_answer(&r, true));
	assert_int_equal(r.mode, HTTP_M_RAW);
	assert_false(http_req_upgrade_answer(&r, true));
	assert_int_equal(r.mode, HTTP_M_RAW);

	answers = "";
	relay_whole(s, &out);
	assert_int_equal(out.heads, 1);
	assert_int_equal(out.raw, 0);
	assert_int_equal(out.held, strlen(s) - h.len);
	assert_int_equal(out.mode, HTTP_M_UPGRADE);
	answers = "S";
	relay_whole(s, &out);
	assert_int_equal(out.heads, 1);
	assert_int_equal(out.raw, strlen(s) - h.len);
	assert_int_equal(out.mode, HTTP_M_RAW);

	/* Upgrade with a body: the body first, then UPGRADE, then RAW */
	static const char b[] = "POST /ws HTTP/1.1\r\nHost: a.example\r\nConnection: upgrade\r\n"
				"Upgrade: x\r\nContent-Length: 2\r\n\r\nhiRAWRAW";
	relay_whole(b, &out);
	assert_int_equal(out.heads, 1);
	assert_int_equal(out.body, 2);
	assert_int_equal(out.raw, 6);
	assert_int_equal(out.mode, HTTP_M_RAW);
	answers = "";
	relay_whole(b, &out);
	assert_int_equal(out.body, 2);
	assert_int_equal(out.held, 6);
	assert_int_equal(out.mode, HTTP_M_UPGRADE);

	/* a request without Upgrade waits for no answer */
	assert_int_equal(head1(&r, GET, MAX, &h, &st), HTTP_R_HEAD);
	http_req_head_done(&r, B(GET), &h);
	assert_int_equal(r.mode, HTTP_M_HEAD);
	assert_false(http_req_upgrade_answer(&r, true));
	assert_false(http_req_upgrade_answer(&r, false));
	assert_int_equal(r.mode, HTTP_M_HEAD);
}

static const char UP[] = "GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\n"
			 "Upgrade: websocket\r\n\r\n";

/* an Upgrade the service refused (200): the connection stays HTTP */
static void test_upgrade_refused(void **state)
{
	static const char next[] = "GET /next HTTP/1.1\r\nHost: b.example\r\n"
				   "X-Forwarded-For: 6.6.6.6\r\n\r\n";
	char in[512];
	struct run out;

	snprintf(in, sizeof(in), "%s%s", UP, next);
	answers = "R";
	for (size_t k = 0; k < strlen(in); k++) {
		size_t cuts[] = {k, 0};

		relay(in, strlen(in), k ? cuts : NULL, &out);
		assert_int_equal(out.status, 0);
		assert_int_equal(out.heads, 2);
		assert_true(out.h[0].upgrade);
		assert_int_equal(out.head_off[1], strlen(UP));
		assert_int_equal(out.head_len[1], strlen(next));
		assert_int_equal(out.h[1].method, HTTP_GET);
		assert_false(out.h[1].upgrade);
		assert_int_equal(out.raw, 0);
		assert_int_equal(out.held, 0);
		assert_int_equal(out.mode, HTTP_M_HEAD);
	}

	/* refused, then an Upgrade again, switched this time */
	snprintf(in, sizeof(in), "%s%s%sRAW", UP, next, UP);
	answers = "RS";
	relay_whole(in, &out);
	assert_int_equal(out.heads, 3);
	assert_int_equal(out.raw, 3);
	assert_int_equal(out.mode, HTTP_M_RAW);

	/* a POST with a body after the refusal: framed as usual */
	snprintf(in, sizeof(in),
		 "%sPOST /p HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\n\r\n"
		 "abcdGET /z HTTP/1.1\r\nHost: a.example\r\n\r\n",
		 UP);
	answers = "R";
	relay_whole(in, &out);
	assert_int_equal(out.status, 0);
	assert_int_equal(out.heads, 3);
	assert_int_equal(out.body, 4);
	assert_int_equal(out.mode, HTTP_M_HEAD);
	answers = "";
}

/* what a client hides behind an Upgrade it expects to be refused is checked */
static void smuggle_status(const char *after, int want)
{
	char in[1024];
	struct run out;

	snprintf(in, sizeof(in), "%s%s", UP, after);
	answers = "R";
	for (size_t k = 0; k < strlen(in); k++) {
		size_t cuts[] = {k, 0};

		relay(in, strlen(in), k ? cuts : NULL, &out);
		assert_int_equal(out.heads, 1);
		assert_int_equal(out.raw, 0);
		assert_int_equal(out.status, want);
	}
	answers = "";
}

static void test_upgrade_refused_smuggling(void **state)
{
	smuggle_status("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n"
		       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		       400);
	smuggle_status("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length : 5\r\n\r\n", 400);
	smuggle_status("GET / HTTP/1.1\r\nHost: a.example\r\nX: a\r\n b\r\n\r\n", 400);
	smuggle_status("\x81\x85not HTTP at all\r\n\r\n", 501);
	smuggle_status("GET / HXXP/1.1\r\nHost: a.example\r\n\r\n", 400);
	smuggle_status("GET / HTTP/1.1\r\nHost: a.example\r\n"
		       "Transfer-Encoding: chunked\t\r\n\r\n",
		       400);
}

/* the service answers the Upgrade before the request's body ended */
static void test_upgrade_answer_in_body(void **state)
{
	static const char s[] = "POST /ws HTTP/1.1\r\nHost: a.example\r\nConnection: upgrade\r\n"
				"Upgrade: x\r\nContent-Length: 4\r\n\r\nbody";
	static const char t[] = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
	size_t hl = strlen(s) - 4;
	struct http_req r;
	struct http_head h;
	int st;

	for (int sw = 0; sw < 2; sw++) {
		assert_int_equal(head1(&r, s, MAX, &h, &st), HTTP_R_HEAD);
		http_req_head_done(&r, B(s), &h);
		assert_int_equal(r.mode, HTTP_M_BODY);
		assert_int_equal(http_req_body(&r, B(s) + hl, 2, &st), 2);
		assert_true(http_req_upgrade_answer(&r, sw));
		assert_false(http_req_upgrade_answer(&r, !sw)); /* one answer */
		assert_int_equal(r.mode, HTTP_M_BODY);
		assert_int_equal(http_req_body(&r, B(s) + hl + 2, 2, &st), 2);
		assert_int_equal(r.mode, sw ? HTTP_M_RAW : HTTP_M_HEAD);
		if (!sw) {
			assert_int_equal(http_req_head(&r, B(t), strlen(t), MAX, &h, &st),
					 HTTP_R_HEAD);
			assert_int_equal(h.len, strlen(t));
			http_req_head_done(&r, B(t), &h);
			assert_int_equal(r.mode, HTTP_M_HEAD);
		}
	}
	/* a body without Upgrade takes no answer */
	static const char p[] = "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\n\r\n";
	assert_int_equal(head1(&r, p, MAX, &h, &st), HTTP_R_HEAD);
	http_req_head_done(&r, B(p), &h);
	assert_int_equal(r.mode, HTTP_M_BODY);
	assert_false(http_req_upgrade_answer(&r, true));
}

/* ---------- refusals ---------- */

static void test_errors(void **state)
{
	char big[MAX * 2];
	struct http_req r;
	struct http_head h;
	int st;

	st = head_status("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
	assert_true(st == 400 || st == 501);
	st = head_status("HELLO THERE\r\n\r\n");
	assert_true(st == 400 || st == 501);
	assert_int_equal(head_status("GET / HTTP/1.1\r\nHost a.example\r\n\r\n"), 400);

	/* too large: whole and in many pieces */
	strcpy(big, "GET / HTTP/1.1\r\nHost: a.example\r\nX-Pad: ");
	memset(big + strlen(big), 'a', 300);
	big[strlen("GET / HTTP/1.1\r\nHost: a.example\r\nX-Pad: ") + 300] = 0;
	strcat(big, "\r\n\r\n");
	assert_int_equal(head1(&r, big, strlen(big), &h, &st), HTTP_R_HEAD);
	assert_int_equal(head1(&r, big, strlen(big) - 1, &h, &st), HTTP_R_ERROR);
	assert_int_equal(st, 431);
	http_req_init(&r);
	for (size_t k = 1;; k++) {
		enum http_result res = http_req_head(&r, B(big), k, 200, &h, &st);

		if (res == HTTP_R_ERROR) {
			assert_int_equal(st, 431);
			assert_true(k <= 201);
			break;
		}
		assert_int_equal(res, HTTP_R_MORE);
	}
	/* far past the bound in one piece, with no head end */
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /", 5);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(head1(&r, big, 1000, &h, &st), HTTP_R_ERROR);
	assert_int_equal(st, 431);

	/* more than HTTP_HEADERS_MAX header lines */
	strcpy(big, "GET / HTTP/1.1\r\n");
	for (int i = 0; i <= HTTP_HEADERS_MAX; i++)
		sprintf(big + strlen(big), "X-%d: v\r\n", i);
	strcat(big, "\r\n");
	assert_int_equal(head_status(big), 431);

	/* versions */
	assert_int_equal(head_status("GET / HTTP/2.0\r\nHost: a.example\r\n\r\n"), 505);
	assert_int_equal(head_status("GET / HTTP/1.2\r\nHost: a.example\r\n\r\n"), 505);
	assert_int_equal(head_status("GET / HTTP/0.9\r\nHost: a.example\r\n\r\n"), 505);
	assert_int_equal(head_status("GET / HTTP/1.1x\r\nHost: a.example\r\n\r\n"), 505);
	assert_int_equal(head_status("GET / HTTP/12.1\r\nHost: a.example\r\n\r\n"), 505);
	assert_int_equal(head_status("GET /\r\nHost: a.example\r\n\r\n"), 505);

	/* obs-fold, also after an empty first line */
	assert_int_equal(head_status("GET / HTTP/1.1\r\nHost: a.example\r\nX: a\r\n b\r\n\r\n"),
			 400);
	assert_int_equal(head_status("GET / HTTP/1.1\r\nHost: a.example\r\nX:\r\n\tb\r\n\r\n"),
			 400);
	assert_int_equal(head_status("GET / HTTP/1.1\r\nHost: a.example\r\nX: a\n b\n\n"), 400);

	/* request smuggling: CL + TE, two CL, TE not chunked, TE in HTTP/1.0 */
	assert_int_equal(head_status("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n"
				     "Transfer-Encoding: chunked\r\n\r\n"),
			 400);
	assert_int_equal(head_status("POST / HTTP/1.1\r\nHost: a.example\r\n"
				     "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
			 400);
	assert_int_equal(head_status("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n"
				     "Content-Length: 6\r\n\r\n"),
			 400);
	assert_int_equal(head_status("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n"
				     "Content-Length: 5\r\n\r\n"),
			 400);
	assert_int_equal(head_status("POST / HTTP/1.1\r\nHost: a.example\r\n"
				     "Transfer-Encoding: gzip\r\n\r\n"),
			 400);
	assert_int_equal(
	    head_status("POST / HTTP/1.1\r\nHost: a.example\r\n"
			"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"),
	    400);
	assert_int_equal(head_status("POST / HTTP/1.0\r\nHost: a.example\r\n"
				     "Transfer-Encoding: chunked\r\n\r\n"),
			 400);

	/* what the lax (HTTP_PARSER_STRICT=0) parser lets through */
	assert_int_equal(head_status("POST / HTTP/1.1\r\nHost: a.example\r\n"
				     "Content-Length : 5\r\n\r\n"),
			 400);
	assert_int_equal(head_status("GET / HTTP/1.1\r\nHost: a.example\r\nFoo Bar: x\r\n\r\n"),
			 400);
	assert_int_equal(head_status("GET / HXXP/1.1\r\nHost: a.example\r\n\r\n"), 400);
	assert_int_equal(head_status("GET /a\tb HTTP/1.1\r\nHost: a.example\r\n\r\n"), 400);
	assert_int_equal(head_status("GET  / HTTP/1.1\r\nHost: a.example\r\n\r\n"), 400);
	assert_int_equal(head_status("GET /  HTTP/1.1\r\nHost: a.example\r\n\r\n"), 400);
	assert_int_equal(head_status("GET / HTTP/1.1\r\nHost: a.example\r\nX:\rY: z\r\n\r\n"), 400);
	assert_int_equal(head_status("GET / HTTP/1.1\r\nHost: a.example\r\n\rX"), 400);
	assert_int_equal(head_status("GET http://a b/ HTTP/1.1\r\nHost: a.example\r\n\r\n"), 400);

	/* a tab the parser reads as part of a token where a service trims it */
	assert_int_equal(head_status("POST / HTTP/1.1\r\nHost: a.example\r\n"
				     "Connection: upgrade\t\r\nUpgrade: x\r\n\r\n"),
			 400);
	assert_int_equal(head_status("POST / HTTP/1.1\r\nHost: a.example\r\n"
				     "Transfer-Encoding: chunked\t\r\n\r\n"),
			 400);
	assert_int_equal(head_status("GET / HTTP/1.1\r\nHost: a.example\r\nX-A: b\t\r\n\r\n"), 0);

	/* a NUL or another control byte in a header */
	{
		static const char nul[] = "GET / HTTP/1.1\r\nHost: a.example\r\nX: a\0b\r\n\r\n";

		http_req_init(&r);
		assert_int_equal(http_req_head(&r, B(nul), sizeof(nul) - 1, MAX, &h, &st),
				 HTTP_R_ERROR);
		assert_int_equal(st, 400);
	}
	assert_int_equal(head_status("GET / HTTP/1.1\r\nHost: a.example\r\nX: a\x01"
				     "b\r\n\r\n"),
			 400);
}

/* chunked framing the lax parser takes and a service may read otherwise */
static void body_status(const char *body, int want)
{
	char in[512];
	struct run out;

	snprintf(in, sizeof(in),
		 "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n%s",
		 body);
	for (size_t k = 0; k < strlen(in); k++) {
		size_t cuts[] = {k, 0};

		relay(in, strlen(in), k ? cuts : NULL, &out);
		assert_int_equal(out.heads, 1);
		assert_int_equal(out.status, want);
	}
}

static void test_chunked_errors(void **state)
{
	body_status("5\r\nhello\r\n0\r\n\r\n", 0);
	body_status("5\r\nhelloXX0\r\n\r\n", 400);
	body_status("5\r\nhello\n0\r\n\r\n", 400);
	body_status("5;a\nb\r\nhello\r\n0\r\n\r\n", 400);
	body_status("5\rXhello\r\n0\r\n\r\n", 400);
	body_status("5\r\nhello\r\n0\r\n\rX", 400);
	body_status("5\r\nhello\r\n0\r\nT: a\r\n b\r\n\r\n", 400);
	body_status("5;\x01\r\nhello\r\n0\r\n\r\n", 400);
	body_status("x\r\n", 400);
	body_status("5\r\nhello\r\n0\r\nT: a\rB\r\n\r\n", 400);
}

/* ---------- the routed host ---------- */

static bool host_of(const char *s, char *out)
{
	struct http_req r;
	struct http_head h;
	int st;

	assert_int_equal(head1(&r, s, MAX, &h, &st), HTTP_R_HEAD);
	return http_head_host(&r, B(s), &h, out);
}

static void test_host(void **state)
{
	char o[DOMAIN_MAX + 1];

	assert_true(host_of("GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n", o));
	assert_string_equal(o, "example.com");
	assert_true(host_of("GET / HTTP/1.1\r\nHost:  www.example.com.  \r\n\r\n", o));
	assert_string_equal(o, "www.example.com");
	assert_true(host_of("GET / HTTP/1.1\r\nHost: example.com.:443\r\n\r\n", o));
	assert_string_equal(o, "example.com");
	assert_false(host_of("GET / HTTP/1.1\r\nHost: example.com:8x\r\n\r\n", o));
	assert_false(host_of("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", o));
	assert_false(host_of("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", o));
	assert_false(host_of("GET / HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n", o));
	assert_false(host_of("GET / HTTP/1.1\r\nHost: 192.0.2.1:80\r\n\r\n", o));
	assert_false(host_of("GET / HTTP/1.1\r\nHost: 0x7f.1\r\n\r\n", o));
	assert_false(host_of("GET / HTTP/1.1\r\nHost: a.example.123\r\n\r\n", o));
	assert_true(host_of("GET / HTTP/1.1\r\nHost: 1.example\r\n\r\n", o));
	assert_false(host_of("GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", o));
	assert_false(host_of("GET / HTTP/1.1\r\nHost:\r\n\r\n", o));
	assert_false(host_of("GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", o));
	assert_false(host_of("GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n", o));
	/* absolute-form: the target wins */
	assert_true(
	    host_of("GET http://Example.COM:8080/x HTTP/1.1\r\nHost: other.example\r\n\r\n", o));
	assert_string_equal(o, "example.com");
	assert_true(host_of("GET https://a.example HTTP/1.1\r\n\r\n", o));
	assert_string_equal(o, "a.example");
	assert_false(host_of("GET http://[::1]:80/ HTTP/1.1\r\nHost: a.example\r\n\r\n", o));
	assert_false(host_of("GET http://10.0.0.1/ HTTP/1.1\r\nHost: a.example\r\n\r\n", o));
	assert_true(host_of("OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n", o));
	assert_string_equal(o, "a.example");
}

/* ---------- the forwarded head ---------- */

/* rewrite s with f, check it parses again (same method and target), return it */
static size_t fwd(const char *s, const struct http_fwd *f, char *out, size_t cap)
{
	struct http_req r, r2;
	struct http_head h, h2;
	int st;
	size_t n;

	assert_int_equal(head1(&r, s, MAX, &h, &st), HTTP_R_HEAD);
	n = http_head_rewrite(&r, B(s), &h, f, (uint8_t *)out, cap);
	if (!n)
		return 0;
	assert_true(n < cap);
	out[n] = 0;
	http_req_init(&r2);
	assert_int_equal(http_req_head(&r2, (uint8_t *)out, n, MAX, &h2, &st), HTTP_R_HEAD);
	assert_int_equal(h2.len, n);
	assert_int_equal(h2.method, h.method);
	assert_int_equal(h2.major, h.major);
	assert_int_equal(h2.minor, h.minor);
	assert_int_equal(r2.url.len, r.url.len);
	assert_memory_equal(out + r2.url.off, s + r.url.off, r.url.len);
	assert_int_equal(h2.body, h.body);
	assert_false(h2.host_twice);
	return n;
}

static const char SPOOF[] = "GET /p HTTP/1.1\r\n"
			    "Host: app.example\r\n"
			    "X-Forwarded-For: 6.6.6.6\r\n"
			    "X-Forwarded-Proto: https\r\n"
			    "X-Forwarded-Host: evil.example\r\n"
			    "X-Forwarded-Port: 1\r\n"
			    "Forwarded: for=6.6.6.6\r\n"
			    "x_forwarded_for: 7.7.7.7\r\n"
			    "Authorization: Basic dTpw\r\n"
			    "Accept: text/html\r\n"
			    "\r\n";

static void test_rewrite_untrusted(void **state)
{
	struct http_fwd f = {.client_ip = "203.0.113.9", .proto = "http", .port = "80"};
	char out[2048];

	assert_true(fwd(SPOOF, &f, out, sizeof(out)) > 0);
	assert_string_equal(out, "GET /p HTTP/1.1\r\n"
				 "Host: app.example\r\n"
				 "Authorization: Basic dTpw\r\n"
				 "Accept: text/html\r\n"
				 "X-Forwarded-For: 203.0.113.9\r\n"
				 "X-Forwarded-Proto: http\r\n"
				 "X-Forwarded-Host: app.example\r\n"
				 "X-Forwarded-Port: 80\r\n"
				 "\r\n");
	f.strip_authorization = true;
	f.host_header = "internal.svc";
	assert_true(fwd(SPOOF, &f, out, sizeof(out)) > 0);
	assert_string_equal(out, "GET /p HTTP/1.1\r\n"
				 "Host: internal.svc\r\n"
				 "Accept: text/html\r\n"
				 "X-Forwarded-For: 203.0.113.9\r\n"
				 "X-Forwarded-Proto: http\r\n"
				 "X-Forwarded-Host: app.example\r\n"
				 "X-Forwarded-Port: 80\r\n"
				 "\r\n");
}

static void test_rewrite_trusted(void **state)
{
	static const char s[] = "POST /p HTTP/1.1\r\n"
				"Host: app.example\r\n"
				"X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n"
				"X-Forwarded-For:  3.3.3.3 \r\n"
				"X-Forwarded-Proto: https\r\n"
				"Content-Length: 0\r\n"
				"\r\n";
	struct http_fwd f = {.client_ip = "10.0.0.2", .proto = "http", .trusted = true};
	char out[2048];

	assert_true(fwd(s, &f, out, sizeof(out)) > 0);
	assert_string_equal(out, "POST /p HTTP/1.1\r\n"
				 "Host: app.example\r\n"
				 "X-Forwarded-Proto: https\r\n"
				 "Content-Length: 0\r\n"
				 "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.2\r\n"
				 "X-Forwarded-Host: app.example\r\n"
				 "\r\n");
}

static void test_rewrite_forms(void **state)
{
	struct http_fwd f = {.client_ip = "192.0.2.1", .proto = "https", .port = "443"};
	char out[2048];
	size_t n;

	/* bare LF in, CRLF out; empty lines before the request line dropped */
	assert_true(fwd("\r\n\nGET /x HTTP/1.0\nHost: a.example\nX-Empty:\nX-A:  v  \n\n", &f, out,
			sizeof(out)) > 0);
	assert_string_equal(out, "GET /x HTTP/1.0\r\n"
				 "Host: a.example\r\n"
				 "X-Empty: \r\n"
				 "X-A: v\r\n"
				 "X-Forwarded-For: 192.0.2.1\r\n"
				 "X-Forwarded-Proto: https\r\n"
				 "X-Forwarded-Host: a.example\r\n"
				 "X-Forwarded-Port: 443\r\n"
				 "\r\n");
	/* absolute-form: Host is the target's authority (RFC 9112 3.2.2) */
	assert_true(fwd("GET http://Example.COM:8080/x HTTP/1.1\r\nHost: evil.example\r\n\r\n", &f,
			out, sizeof(out)) > 0);
	assert_non_null(strstr(out, "\r\nHost: Example.COM:8080\r\n"));
	assert_null(strstr(out, "evil"));
	/* no Host at all */
	assert_true(fwd("GET / HTTP/1.0\r\n\r\n", &f, out, sizeof(out)) > 0);
	assert_null(strstr(out, "Host"));
	/* too small: 0, at every size below the need */
	n = fwd(SPOOF, &f, out, sizeof(out));
	for (size_t cap = 0; cap < n; cap++)
		assert_int_equal(fwd(SPOOF, &f, out, cap), 0);
	assert_int_equal(fwd(SPOOF, &f, out, n + 1), n);
}

/* ---------- the edge's pages ---------- */

static void test_error_page(void **state)
{
	char out[2048];
	size_t n;
	const char *body, *cl;

	n = http_error_page((uint8_t *)out, sizeof(out), 404, "X-A: b\r\n", "no such tunnel");
	assert_true(n > 0);
	out[n] = 0;
	assert_int_equal(strncmp(out, "HTTP/1.1 404 Not Found\r\n", 24), 0);
	assert_non_null(strstr(out, "\r\nX-A: b\r\n"));
	body = strstr(out, "\r\n\r\n");
	assert_non_null(body);
	body += 4;
	cl = strstr(out, "Content-Length: ");
	assert_non_null(cl);
	assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(body));
	assert_non_null(strstr(body, "no such tunnel"));
	/* it parses as a response with that body */
	n = http_error_page((uint8_t *)out, sizeof(out), 431, NULL, "too large");
	out[n] = 0;
	assert_int_equal(strncmp(out, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46), 0);
	body = strstr(out, "\r\n\r\n") + 4;
	cl = strstr(out, "Content-Length: ");
	assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(body));
	/* too small */
	assert_int_equal(http_error_page((uint8_t *)out, n, 431, NULL, "too large"), 0);
	assert_int_equal(http_error_page((uint8_t *)out, n + 1, 431, NULL, "too large"), n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_get),
	    cmocka_unit_test(test_get_http10),
	    cmocka_unit_test(test_get_split),
	    cmocka_unit_test(test_get_moved),
	    cmocka_unit_test(test_content_length),
	    cmocka_unit_test(test_chunked_every_split),
	    cmocka_unit_test(test_pipelined),
	    cmocka_unit_test(test_upgrade),
	    cmocka_unit_test(test_upgrade_refused),
	    cmocka_unit_test(test_upgrade_refused_smuggling),
	    cmocka_unit_test(test_upgrade_answer_in_body),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_chunked_errors),
	    cmocka_unit_test(test_host),
	    cmocka_unit_test(test_rewrite_untrusted),
	    cmocka_unit_test(test_rewrite_trusted),
	    cmocka_unit_test(test_rewrite_forms),
	    cmocka_unit_test(test_error_page),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

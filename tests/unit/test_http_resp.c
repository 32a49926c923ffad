// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/http.c's response tracker (http_resp_*): where each
 * response ends (Content-Length, chunked, HEAD, 204, 304, read until close),
 * interim 1xx, a 101 to an Upgrade request (SWITCHED at its exact last byte)
 * or to another (ERROR), a refused Upgrade (REFUSED, and the request side
 * back to HEAD), pipelining, every split of the stream, responses nobody
 * asked for, garbage, the queue's bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

static const uint8_t *B(const char *s)
{
	return (const uint8_t *)s;
}

/* requests expected, one letter each: G GET, H HEAD, U GET with Upgrade */
static void expect(struct http_resp *s, const char *reqs)
{
	for (; *reqs; reqs++)
		assert_true(http_resp_expect(s, *reqs == 'H' ? HTTP_HEAD : HTTP_GET, *reqs == 'U'));
}

/*
 * What a relay sees feeding the stream in pieces (cuts: sizes, 0 ends the
 * list, then the rest): each event other than OK with the stream offset
 * where it ended, the outstanding count after each event, the final count.
 */
struct seen {
	unsigned n;
	enum http_resp_result ev[8];
	size_t at[8];
	unsigned out_at[8];
	unsigned outstanding;
	size_t followed; /* bytes followed before SWITCHED or ERROR, or all */
};

static void track(const char *reqs, const char *in, size_t len, const size_t *cuts,
		  struct seen *out)
{
	struct http_resp s;
	size_t got = 0, pos = 0;

	memset(out, 0, sizeof(*out));
	http_resp_init(&s);
	expect(&s, reqs);
	while (got < len) {
		size_t add = (cuts && *cuts) ? *cuts++ : len - got;

		if (add > len - got)
			add = len - got;
		got += add;
		while (pos < got) {
			size_t used = 99999;
			enum http_resp_result r = http_resp_feed(&s, B(in) + pos, got - pos, &used);

			assert_true(used <= got - pos);
			if (r == HTTP_RESP_OK) {
				assert_int_equal(used, got - pos);
				pos = got;
				break;
			}
			pos += used;
			assert_true(out->n < 8);
			out->ev[out->n] = r;
			out->at[out->n] = pos;
			out->out_at[out->n] = http_resp_outstanding(&s);
			out->n++;
			if (r != HTTP_RESP_REFUSED) {
				/* the end: every later call says so and takes nothing */
				assert_int_equal(
				    http_resp_feed(&s, B(in) + pos, len - pos + 1, &used), r);
				assert_int_equal(used, 0);
				out->outstanding = http_resp_outstanding(&s);
				out->followed = pos;
				return;
			}
		}
	}
	out->outstanding = http_resp_outstanding(&s);
	out->followed = pos;
}

/* the same seen whole, in every two pieces, and one byte at a time */
static void track_all(const char *reqs, const char *in, struct seen *out)
{
	size_t len = strlen(in);
	static size_t ones[4096];
	struct seen o;

	track(reqs, in, len, NULL, out);
	for (size_t k = 1; k < len; k++) {
		size_t cuts[] = {k, 0};

		track(reqs, in, len, cuts, &o);
		assert_memory_equal(&o, out, sizeof(o));
	}
	assert_true(len < sizeof(ones) / sizeof(ones[0]));
	for (size_t i = 0; i < len; i++)
		ones[i] = 1;
	ones[len] = 0;
	track(reqs, in, len, ones, &o);
	assert_memory_equal(&o, out, sizeof(o));
}

/* the stream's outstanding count after its first k bytes */
static unsigned outstanding_after(const char *reqs, const char *in, size_t k)
{
	struct http_resp s;
	size_t used;

	http_resp_init(&s);
	expect(&s, reqs);
	assert_int_equal(http_resp_feed(&s, B(in), k, &used), HTTP_RESP_OK);
	assert_int_equal(used, k);
	return http_resp_outstanding(&s);
}

static void test_content_length(void **state)
{
	static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
	struct seen o;

	track_all("G", r, &o);
	assert_int_equal(o.n, 0);
	assert_int_equal(o.outstanding, 0);
	assert_int_equal(o.followed, strlen(r));
	/* answered only once the body's last byte came */
	for (size_t k = 1; k < strlen(r); k++)
		assert_int_equal(outstanding_after("G", r, k), 1);
	/* nothing outstanding before: no answer expected */
	assert_int_equal(outstanding_after("", "", 0), 0);
}

static void test_chunked(void **state)
{
	static const char r[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				"5;x=y\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"
				"0\r\nT: 1\r\n\r\n";
	struct seen o;

	track_all("G", r, &o);
	assert_int_equal(o.n, 0);
	assert_int_equal(o.outstanding, 0);
	for (size_t k = 1; k < strlen(r); k++)
		assert_int_equal(outstanding_after("G", r, k), 1);
	/* Content-Length beside chunked: not HTTP the edge follows */
	track_all("G",
		  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
		  "0\r\n\r\n",
		  &o);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.ev[0], HTTP_RESP_ERROR);
	/* a bad chunk size */
	track_all("G", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", &o);
	assert_int_equal(o.ev[0], HTTP_RESP_ERROR);
}

/* HEAD, 204 and 304 answers end at their head, whatever it says */
static void test_no_body(void **state)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
	static const char chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	char in[512];
	struct seen o;

	/* a HEAD answer, then the GET's right after it */
	snprintf(in, sizeof(in), "%s%s", head, ok);
	track_all("HG", in, &o);
	assert_int_equal(o.n, 0);
	assert_int_equal(o.outstanding, 0);
	assert_int_equal(outstanding_after("HG", in, strlen(head)), 1);
	snprintf(in, sizeof(in), "%s%s", chunked, ok);
	track_all("HG", in, &o);
	assert_int_equal(o.outstanding, 0);
	/* the same bytes to a GET: the GET's body is 100 bytes long */
	snprintf(in, sizeof(in), "%s%s", head, ok);
	track_all("GG", in, &o);
	assert_int_equal(o.outstanding, 2);

	static const char *const none[] = {
	    "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
	    "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
	    "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
	    "HTTP/1.1 204 No Content\r\n\r\n",
	    "HTTP/1.0 304 Not Modified\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		snprintf(in, sizeof(in), "%s%s", none[i], ok);
		track_all("GG", in, &o);
		assert_int_equal(o.n, 0);
		assert_int_equal(o.outstanding, 0);
		assert_int_equal(outstanding_after("GG", in, strlen(none[i])), 1);
	}
}

static void test_interim(void **state)
{
	static const char r[] = "HTTP/1.1 100 Continue\r\n\r\n"
				"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	size_t interim = strlen(r) - strlen("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	struct seen o;

	track_all("G", r, &o);
	assert_int_equal(o.n, 0);
	assert_int_equal(o.outstanding, 0);
	/* the request still waits after its interim answers */
	assert_int_equal(outstanding_after("G", r, interim), 1);
	/* an interim answer to an Upgrade request is no refusal */
	track_all("U", "HTTP/1.1 100 Continue\r\n\r\n", &o);
	assert_int_equal(o.n, 0);
	assert_int_equal(o.outstanding, 1);
	/* an interim answer to HEAD, then the HEAD's */
	track_all("H",
		  "HTTP/1.1 100 Continue\r\nContent-Length: 4\r\n\r\n"
		  "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
		  &o);
	assert_int_equal(o.n, 0);
	assert_int_equal(o.outstanding, 0);
}

static const char SW[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\n\r\n";

static void test_switched(void **state)
{
	char in[512];
	struct seen o;

	/* the 101 ends at its head: what follows is raw, however it looks */
	snprintf(in, sizeof(in), "%s\x81\x05hello", SW);
	track_all("U", in, &o);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.ev[0], HTTP_RESP_SWITCHED);
	assert_int_equal(o.at[0], strlen(SW));
	assert_int_equal(o.outstanding, 0);
	snprintf(in, sizeof(in), "%sHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", SW);
	track_all("U", in, &o);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.at[0], strlen(SW));
	/* after earlier answers, pipelined in front of it */
	snprintf(in, sizeof(in), "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx%sRAW", SW);
	track_all("GU", in, &o);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.ev[0], HTTP_RESP_SWITCHED);
	assert_int_equal(o.at[0], strlen(in) - 3);
	/* a 101 without the headers the parser wants, or with a body length: still its head */
	static const char *const bare[] = {
	    "HTTP/1.1 101 Switching Protocols\r\n\r\n",
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n"
	    "Content-Length: 5\r\n\r\n",
	    "HTTP/1.1 101 Switching Protocols\r\nTransfer-Encoding: chunked\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bare) / sizeof(bare[0]); i++) {
		snprintf(in, sizeof(in), "%sHTTP/1.1 200 OK\r\n\r\n", bare[i]);
		track_all("U", in, &o);
		assert_int_equal(o.n, 1);
		assert_int_equal(o.ev[0], HTTP_RESP_SWITCHED);
		assert_int_equal(o.at[0], strlen(bare[i]));
	}
	/* an interim answer first */
	snprintf(in, sizeof(in), "HTTP/1.1 100 Continue\r\n\r\n%s", SW);
	track_all("U", in, &o);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.ev[0], HTTP_RESP_SWITCHED);
	assert_int_equal(o.at[0], strlen(in));
}

/* a 101 to a request that did not ask for Upgrade */
static void test_switched_unasked(void **state)
{
	char in[512];
	struct seen o;

	track_all("G", SW, &o);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.ev[0], HTTP_RESP_ERROR);
	track_all("H", SW, &o);
	assert_int_equal(o.ev[0], HTTP_RESP_ERROR);
	/* the Upgrade request waits behind another: that one is answered first */
	snprintf(in, sizeof(in), "%s", SW);
	track_all("GU", in, &o);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.ev[0], HTTP_RESP_ERROR);
	/* one 101 per Upgrade */
	snprintf(in, sizeof(in), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n%s", SW);
	track_all("UG", in, &o);
	assert_int_equal(o.n, 2);
	assert_int_equal(o.ev[0], HTTP_RESP_REFUSED);
	assert_int_equal(o.ev[1], HTTP_RESP_ERROR);
}

/* the Upgrade refused: REFUSED where its answer ends, then on as HTTP */
static void test_refused(void **state)
{
	static const char a[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
	static const char b[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
	char in[512];
	struct seen o;

	snprintf(in, sizeof(in), "%s%s", a, b);
	track_all("UG", in, &o);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.ev[0], HTTP_RESP_REFUSED);
	assert_int_equal(o.at[0], strlen(a));
	assert_int_equal(o.out_at[0], 1);
	assert_int_equal(o.outstanding, 0);
	assert_int_equal(o.followed, strlen(in));
	/* a chunked refusal: where its last chunk ends */
	snprintf(in, sizeof(in),
		 "HTTP/1.1 426 Upgrade Required\r\nTransfer-Encoding: chunked\r\n\r\n"
		 "3\r\nabc\r\n0\r\n\r\n%s",
		 b);
	track_all("UG", in, &o);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.at[0], strlen(in) - strlen(b));
	/* refused, then a second Upgrade switched */
	snprintf(in, sizeof(in), "%s%s%sRAW", a, b, SW);
	track_all("UGU", in, &o);
	assert_int_equal(o.n, 2);
	assert_int_equal(o.ev[0], HTTP_RESP_REFUSED);
	assert_int_equal(o.ev[1], HTTP_RESP_SWITCHED);
	assert_int_equal(o.at[1], strlen(in) - 3);
	/* a refusal with Upgrade headers (announcing support) is a refusal */
	track_all("U",
		  "HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
		  "Content-Length: 0\r\n\r\n",
		  &o);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.ev[0], HTTP_RESP_REFUSED);
}

/* the relay: both sides of one connection, the Upgrade refused then a GET */
static void test_refused_relay(void **state)
{
	static const char req[] = "GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\n"
				  "Upgrade: websocket\r\n\r\n"
				  "GET /next HTTP/1.1\r\nHost: a.example\r\n\r\n";
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno"
				   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	struct http_req r;
	struct http_resp s;
	struct http_head h;
	size_t pos = 0, used;
	int st;

	http_req_init(&r);
	http_resp_init(&s);
	assert_int_equal(http_req_head(&r, B(req), strlen(req), 8192, &h, &st), HTTP_R_HEAD);
	assert_true(http_resp_expect(&s, h.method, h.upgrade));
	http_req_head_done(&r, B(req), &h);
	pos = h.len;
	assert_int_equal(r.mode, HTTP_M_UPGRADE); /* the GET behind it waits */
	assert_int_equal(http_resp_feed(&s, B(resp), strlen(resp), &used), HTTP_RESP_REFUSED);
	assert_true(http_req_upgrade_answer(&r, false));
	assert_int_equal(r.mode, HTTP_M_HEAD);
	assert_int_equal(http_req_head(&r, B(req) + pos, strlen(req) - pos, 8192, &h, &st),
			 HTTP_R_HEAD);
	assert_int_equal(h.len, strlen(req) - pos);
	assert_false(h.upgrade);
	assert_true(http_resp_expect(&s, h.method, h.upgrade));
	http_req_head_done(&r, B(req) + pos, &h);
	assert_int_equal(r.mode, HTTP_M_HEAD);
	assert_int_equal(http_resp_feed(&s, B(resp) + used, strlen(resp) - used, &used),
			 HTTP_RESP_OK);
	assert_int_equal(http_resp_outstanding(&s), 0);
}

static void test_pipelined(void **state)
{
	static const char r[] =
	    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
	    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
	    "HTTP/1.1 100 Continue\r\n\r\n"
	    "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	    "\r\n" /* a stray blank line between answers is skipped */
	    "HTTP/1.0 204 No Content\r\n\r\n";
	struct seen o;

	track_all("GHGG", r, &o);
	assert_int_equal(o.n, 0);
	assert_int_equal(o.outstanding, 0);
	assert_int_equal(o.followed, strlen(r));
	/* one more request than answers */
	track_all("GHGGG", r, &o);
	assert_int_equal(o.outstanding, 1);
}

/* bytes with no request waiting for them */
static void test_unasked(void **state)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	char in[512];
	struct seen o;

	track_all("", ok, &o);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.ev[0], HTTP_RESP_ERROR);
	snprintf(in, sizeof(in), "%s%s", ok, ok);
	track_all("G", in, &o);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.ev[0], HTTP_RESP_ERROR);
	assert_true(o.followed >= strlen(ok));
	/* blank lines alone are no answer */
	track_all("", "\r\n\r\n", &o);
	assert_int_equal(o.n, 0);
}

static void test_garbage(void **state)
{
	static const char *const bad[] = {
	    "garbage",
	    "\x16\x03\x01\x02\x00",
	    "HTTP/1.1 2x0 OK\r\n\r\n",
	    "HTTP/1.1 099 Low\r\n\r\n",
	    "HTTP/1.1 1000 High\r\n\r\n",
	    "HTTP/x.1 200 OK\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
	};
	struct seen o;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		track_all("GG", bad[i], &o);
		assert_int_equal(o.n, 1);
		assert_int_equal(o.ev[0], HTTP_RESP_ERROR);
	}
}

/* no length: the body goes on until the service closes */
static void test_until_close(void **state)
{
	static const char *const heads[] = {
	    "HTTP/1.0 200 OK\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
	};
	char in[512];
	struct seen o;

	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		/* what looks like answers after it is body */
		snprintf(in, sizeof(in), "%s%s%s", heads[i], SW,
			 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
		track_all("UG", in, &o);
		assert_int_equal(o.n, 0);
		assert_int_equal(o.outstanding, 2);
		assert_int_equal(o.followed, strlen(in));
	}
}

/* a long Content-Length body in pieces */
static void test_large_body(void **state)
{
	static uint8_t body[1 << 16];
	static const char h[] = "HTTP/1.1 200 OK\r\nContent-Length: 16777216\r\n\r\n";
	struct http_resp s;
	size_t used;

	memset(body, 'H', sizeof(body)); /* no head would start with these */
	http_resp_init(&s);
	expect(&s, "GG");
	assert_int_equal(http_resp_feed(&s, B(h), strlen(h), &used), HTTP_RESP_OK);
	for (int i = 0; i < 256; i++) {
		assert_int_equal(http_resp_feed(&s, body, sizeof(body), &used), HTTP_RESP_OK);
		assert_int_equal(used, sizeof(body));
		assert_int_equal(http_resp_outstanding(&s), i == 255 ? 1 : 2);
	}
	assert_int_equal(http_resp_feed(&s, B(h), strlen(h), &used), HTTP_RESP_OK);
	assert_int_equal(http_resp_outstanding(&s), 1);
}

static void test_queue(void **state)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
	struct http_resp s;
	size_t used;

	http_resp_init(&s);
	for (unsigned i = 0; i < HTTP_RESP_QUEUE; i++) {
		assert_int_equal(http_resp_outstanding(&s), i);
		assert_true(http_resp_expect(&s, i % 3 ? HTTP_GET : HTTP_HEAD, false));
	}
	assert_false(http_resp_expect(&s, HTTP_GET, false));
	assert_int_equal(http_resp_outstanding(&s), HTTP_RESP_QUEUE);
	/* answers make room; around the ring many times, in order */
	for (unsigned i = 0; i < 10 * HTTP_RESP_QUEUE; i++) {
		assert_int_equal(http_resp_feed(&s, B(ok), strlen(ok), &used), HTTP_RESP_OK);
		assert_int_equal(http_resp_outstanding(&s), HTTP_RESP_QUEUE - 1);
		assert_true(http_resp_expect(&s, HTTP_GET, i == 10 * HTTP_RESP_QUEUE - 1));
		assert_false(http_resp_expect(&s, HTTP_GET, false));
	}
	for (unsigned i = 0; i < HTTP_RESP_QUEUE - 1; i++)
		assert_int_equal(http_resp_feed(&s, B(ok), strlen(ok), &used), HTTP_RESP_OK);
	assert_int_equal(http_resp_outstanding(&s), 1);
	/* the last one expected asked for Upgrade */
	assert_int_equal(http_resp_feed(&s, B(sw), strlen(sw), &used), HTTP_RESP_SWITCHED);
	assert_int_equal(used, strlen(sw));
	assert_int_equal(http_resp_outstanding(&s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_content_length), cmocka_unit_test(test_chunked),
	    cmocka_unit_test(test_no_body),	   cmocka_unit_test(test_interim),
	    cmocka_unit_test(test_switched),	   cmocka_unit_test(test_switched_unasked),
	    cmocka_unit_test(test_refused),	   cmocka_unit_test(test_refused_relay),
	    cmocka_unit_test(test_pipelined),	   cmocka_unit_test(test_unasked),
	    cmocka_unit_test(test_garbage),	   cmocka_unit_test(test_until_close),
	    cmocka_unit_test(test_large_body),	   cmocka_unit_test(test_queue),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

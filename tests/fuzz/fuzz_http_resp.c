// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for common/http.c's response tracker (http_resp_*). The
 * input: a byte whose low nibble is how many split points follow the request
 * list (one byte each, the size of the next feed; the last feed is the
 * rest), and whose bit 4 says the service's bytes are tokens; a byte n, then
 * n requests, one byte each (bit 0: HEAD, else GET; bit 1: it asks for
 * Upgrade); the split points; then what the service sends. Tokens: each byte
 * below the table's size stands for a piece of HTTP ("101 Switching
 * Protocols\r\n", "Content-Length: ", ...), any other byte for itself: the
 * parser is a library libFuzzer does not see into, and this reaches its
 * states much sooner than bytes alone.
 *
 * It is fed as a relay does: the requests are expected in order, up to and
 * including the next Upgrade request (the relay forwards none after one until
 * its answer), as many as the queue takes, at the start and after each
 * REFUSED; feeds go on after REFUSED and stop at SWITCHED or ERROR. Each
 * Upgrade request's answer is also given to a request side waiting in
 * UPGRADE mode.
 *
 * Checks: used <= len, all of it on OK; the outstanding count never grows in
 * a feed nor passes what was expected; expect fails exactly when the queue is
 * full; SWITCHED and REFUSED only where the request just answered asked for
 * Upgrade, and no Upgrade request answered otherwise; SWITCHED and ERROR
 * stay, taking nothing; the request side goes RAW after SWITCHED and HEAD
 * after REFUSED; the same events at the same offsets come out when the
 * stream is fed in one piece.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_http_resp.c common/http.c common/domain.c -lhttp_parser
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SPLITS_MAX 15
#define EV_MAX	   32

struct ev {
	size_t kind; /* enum http_resp_result */
	size_t off;  /* stream offset where it ended */
	size_t outstanding;
};

struct result {
	struct ev ev[EV_MAX];
	size_t n;
	size_t answered, outstanding, followed;
};

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_http_resp: %s\n", what);
	abort();
}

static const char UPGRADE_REQ[] = "GET /ws HTTP/1.1\r\nHost: a.example\r\n"
				  "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n";

/* the request side of an Upgrade request, forwarded whole: UPGRADE mode */
static void upgrade_side(struct http_req *r)
{
	struct http_head h;
	int st = 0;

	http_req_init(r);
	if (http_req_head(r, (const uint8_t *)UPGRADE_REQ, sizeof(UPGRADE_REQ) - 1, 8192, &h,
			  &st) != HTTP_R_HEAD ||
	    !h.upgrade)
		fail("the Upgrade request does not parse");
	http_req_head_done(r, (const uint8_t *)UPGRADE_REQ, &h);
	if (r->mode != HTTP_M_UPGRADE)
		fail("an Upgrade request forwarded, not in UPGRADE mode");
}

/* expects what a relay forwards now: up to the next Upgrade request */
static void forward(struct http_resp *s, const uint8_t *reqs, size_t nreq, size_t *next,
		    struct http_req *side)
{
	while (*next < nreq) {
		uint8_t q = reqs[*next];
		unsigned before = http_resp_outstanding(s);
		bool ok = http_resp_expect(s, (q & 1) ? HTTP_HEAD : HTTP_GET, q & 2);

		if (ok != (before < HTTP_RESP_QUEUE))
			fail("expect and the queue's bound");
		if (!ok)
			return;
		if (http_resp_outstanding(s) != before + 1)
			fail("expect did not count");
		(*next)++;
		if (q & 2) {
			upgrade_side(side);
			return;
		}
	}
}

static void run(const uint8_t *reqs, size_t nreq, const uint8_t *in, size_t len, const size_t *cuts,
		size_t ncuts, struct result *res)
{
	struct http_resp s;
	struct http_req side;
	size_t next = 0, answered = 0, got = 0, pos = 0;

	memset(res, 0, sizeof(*res));
	http_resp_init(&s);
	http_req_init(&side);
	forward(&s, reqs, nreq, &next, &side);
	while (got < len) {
		size_t piece = ncuts ? *cuts : len - got;

		if (ncuts) {
			cuts++;
			ncuts--;
		}
		if (piece > len - got)
			piece = len - got;
		got += piece;
		while (pos < got) {
			unsigned before = http_resp_outstanding(&s), after;
			size_t used = (size_t)-1, now;
			enum http_resp_result r = http_resp_feed(&s, in + pos, got - pos, &used);

			if (used > got - pos)
				fail("used more than given");
			if (r == HTTP_RESP_OK && used != got - pos)
				fail("OK without taking every byte");
			after = http_resp_outstanding(&s);
			if (after > before)
				fail("outstanding grew in a feed");
			if (after != next - answered - (before - after))
				fail("outstanding is not expected less answered");
			now = before - after;
			/* the Upgrade requests answered in this call: only the last, on an event */
			for (size_t i = answered; i < answered + now; i++) {
				bool last = i + 1 == answered + now;
				bool ev = r == HTTP_RESP_SWITCHED || r == HTTP_RESP_REFUSED;

				if ((reqs[i] & 2) && !(last && ev))
					fail("an Upgrade request answered without an event");
				if (last && ev && !(reqs[i] & 2))
					fail("an event for a request without Upgrade");
			}
			if ((r == HTTP_RESP_SWITCHED || r == HTTP_RESP_REFUSED) && !now)
				fail("an event answering nothing");
			answered += now;
			pos += used;
			if (r == HTTP_RESP_OK)
				break;
			if (res->n < EV_MAX)
				res->ev[res->n] = (struct ev){r, pos, after};
			res->n++;
			if (r == HTTP_RESP_REFUSED) {
				if (!http_req_upgrade_answer(&side, false) ||
				    side.mode != HTTP_M_HEAD)
					fail("the request side after REFUSED");
				forward(&s, reqs, nreq, &next, &side);
				continue;
			}
			if (r == HTTP_RESP_SWITCHED &&
			    (!http_req_upgrade_answer(&side, true) || side.mode != HTTP_M_RAW))
				fail("the request side after SWITCHED");
			if (r != HTTP_RESP_SWITCHED && r != HTTP_RESP_ERROR)
				fail("no such result");
			/* the end: it stays */
			if (http_resp_feed(&s, in, len, &used) != r || used != 0 ||
			    http_resp_outstanding(&s) != after)
				fail("SWITCHED or ERROR did not stay");
			res->answered = answered;
			res->outstanding = after;
			res->followed = pos;
			return;
		}
	}
	res->answered = answered;
	res->outstanding = http_resp_outstanding(&s);
	res->followed = pos;
}

static const char *const tokens[] = {
    "HTTP/1.1 ",
    "HTTP/1.0 ",
    "100 Continue\r\n",
    "101 Switching Protocols\r\n",
    "103 Early Hints\r\n",
    "200 OK\r\n",
    "204 No Content\r\n",
    "304 Not Modified\r\n",
    "426 Upgrade Required\r\n",
    "Content-Length: ",
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: gzip\r\n",
    "Connection: Upgrade\r\n",
    "Connection: close\r\n",
    "Connection: keep-alive\r\n",
    "Upgrade: websocket\r\n",
    "\r\n",
    "0\r\n\r\n",
    "5\r\nhello\r\n",
    "5;e=1\r\n",
    "X: y\r\n",
};
#define NTOKENS (sizeof(tokens) / sizeof(tokens[0]))

/* the service's bytes from tokens; at most 32 bytes each */
static size_t untoken(const uint8_t *in, size_t len, uint8_t *out)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] < NTOKENS) {
			size_t l = strlen(tokens[in[i]]);

			memcpy(out + n, tokens[in[i]], l);
			n += l;
		} else {
			out[n++] = in[i];
		}
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct result a, b;
	static uint8_t text[4096 * 32];
	size_t cuts[SPLITS_MAX], ncuts, nreq;
	const uint8_t *reqs;
	bool tok;

	if (size < 2)
		return 0;
	ncuts = data[0] & 15;
	tok = data[0] & 16;
	nreq = data[1];
	if (size < 2 + nreq + ncuts)
		return 0;
	reqs = data + 2;
	for (size_t i = 0; i < ncuts; i++)
		cuts[i] = data[2 + nreq + i];
	data += 2 + nreq + ncuts;
	size -= 2 + nreq + ncuts;
	if (tok) {
		if (size > 4096)
			return 0;
		size = untoken(data, size, text);
		data = text;
	}

	run(reqs, nreq, data, size, cuts, ncuts, &a);
	run(reqs, nreq, data, size, NULL, 0, &b);
	if (a.n != b.n || a.answered != b.answered || a.outstanding != b.outstanding ||
	    a.followed != b.followed ||
	    memcmp(a.ev, b.ev, (a.n < EV_MAX ? a.n : EV_MAX) * sizeof(a.ev[0]))) {
		fprintf(stderr,
			"fuzz_http_resp: split: %zu events, %zu answered; whole: %zu, %zu\n", a.n,
			a.answered, b.n, b.answered);
		fail("split and whole feeds differ");
	}
	return 0;
}

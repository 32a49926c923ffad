// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for common/http.c, the request side of an HTTP/1.x
 * connection. The first input byte: its low nibble is how many split points
 * follow (one byte each, the size of the next feed; the last feed is the
 * rest), its high nibble picks the head bound (max) and whether the peer is a
 * trusted proxy. The rest is a client's byte stream, fed as a relay does: the
 * partial head kept at the start of a buffer, http_req_head until a head,
 * http_req_head_done, http_req_body over the body, after an Upgrade request
 * the service's answer (http_req_upgrade_answer), everything after a 101 as
 * RAW. Each head is rewritten as it would be forwarded. The answer to an
 * Upgrade request comes from its head's length: odd a 101, even a refusal
 * (the next request is parsed as usual); with bit 1 set too it comes right
 * after the head (during the body, if any), else once the message ended.
 *
 * Checks: bytes taken never exceed what was given; a head ends in LF, within
 * max, its spans inside it; a body call in BODY mode that does not end the
 * message takes everything; the rewritten head parses again (fresh parser)
 * as the same request and, for a routable head, grows by at most
 * HTTP_REWRITE_EXTRA; http_head_host gives a valid lowercase name; the same
 * heads, bodies and verdict come out when the stream is fed in one piece.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_http.c common/http.c common/domain.c -lhttp_parser
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SPLITS_MAX 15
#define EV_MAX	   64
#define BUF_MAX	   (16384 + 64)

struct ev {
	size_t kind; /* 'H' head at off, len; 'B' message end at off; 'R' raw from off;
			'U' the answer to an Upgrade at off: len 1 switched, 0 refused */
	size_t off, len;
};

struct result {
	struct ev ev[EV_MAX];
	size_t n;
	int status; /* the error's status, 0 when none */
	size_t taken;
	bool raw; /* an 'R' was added */
};

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_http: %s\n", what);
	abort();
}

static void add(struct result *res, size_t kind, size_t off, size_t len)
{
	if (res->n < EV_MAX)
		res->ev[res->n] = (struct ev){kind, off, len};
	res->n++;
}

static void check_head(const struct http_req *r, const uint8_t *base, const struct http_head *h,
		       size_t have, size_t max, bool trusted)
{
	static uint8_t out[BUF_MAX + HTTP_REWRITE_EXTRA + 65536];
	struct http_fwd f = {.client_ip = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
			     .proto = "https",
			     .port = "65535",
			     .trusted = trusted};
	char host[DOMAIN_MAX + 1];
	bool routable;
	size_t n;

	if (h->len == 0 || h->len > have || h->len > max || base[h->len - 1] != '\n')
		fail("head length");
	if (r->url.off + r->url.len > h->len || r->nhdr > HTTP_HEADERS_MAX)
		fail("head spans");
	for (unsigned i = 0; i < r->nhdr; i++)
		if (r->hdr[i].name.off + r->hdr[i].name.len > h->len ||
		    r->hdr[i].value.off + r->hdr[i].value.len > h->len || !r->hdr[i].name.len)
			fail("header span");
	if (h->host >= (int)r->nhdr || h->authorization >= (int)r->nhdr)
		fail("header index");
	routable = http_head_host(r, base, h, host);
	if (routable) {
		char again[DOMAIN_MAX + 1];

		for (const char *c = host; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				fail("host not lowercase");
		if (!domain_norm(host, strlen(host), again, false) || strcmp(host, again))
			fail("host not a name");
	}
	n = http_head_rewrite(r, base, h, &f, out, sizeof(out));
	if (!n || n > sizeof(out))
		fail("rewrite did not fit");
	if (routable && n > h->len + HTTP_REWRITE_EXTRA)
		fail("rewrite grew past HTTP_REWRITE_EXTRA");
	if (http_head_rewrite(r, base, h, &f, out, n - 1) != 0)
		fail("rewrite into too small a buffer");
	n = http_head_rewrite(r, base, h, &f, out, n);

	/* the forwarded head is a request head the edge reads the same way */
	struct http_req r2;
	struct http_head h2;
	int st = 0;
	enum http_result res;

	http_req_init(&r2);
	res = http_req_head(&r2, out, n, n, &h2, &st);
	if (res == HTTP_R_ERROR && st == 431 && r->nhdr + 5 > HTTP_HEADERS_MAX)
		return; /* ours pushed it over the line count */
	if (res != HTTP_R_HEAD || h2.len != n) {
		fprintf(stderr, "fuzz_http: rewritten head: result %d status %d\n%.*s\n", res, st,
			(int)n, out);
		fail("rewritten head does not parse");
	}
	if (h2.method != h->method || h2.major != h->major || h2.minor != h->minor ||
	    h2.body != h->body || h2.upgrade != h->upgrade || h2.keep_alive != h->keep_alive ||
	    h2.host_twice || r2.url.len != r->url.len ||
	    memcmp(out + r2.url.off, base + r->url.off, r->url.len))
		fail("rewritten head says something else");
	if (routable) {
		char host2[DOMAIN_MAX + 1];

		if (!http_head_host(&r2, out, &h2, host2) || strcmp(host, host2))
			fail("rewritten head routes elsewhere");
	}
}

/* feeds the stream in the given pieces (NULL: one piece) as a relay does */
static void run(const uint8_t *in, size_t len, const size_t *cuts, size_t ncuts, size_t max,
		bool trusted, struct result *res)
{
	static uint8_t buf[BUF_MAX];
	struct http_req r;
	size_t have = 0, got = 0, off = 0; /* off: stream offset of buf[0] */
	size_t up_len = 0;		   /* the last Upgrade head's length */

	memset(res, 0, sizeof(*res));
	http_req_init(&r);
	while (got < len) {
		size_t piece = ncuts ? *cuts : len - got;

		if (ncuts) {
			cuts++;
			ncuts--;
		}
		if (piece > len - got)
			piece = len - got;
		if (have + piece > sizeof(buf))
			piece = sizeof(buf) - have; /* max < sizeof(buf): a head never fills it */
		memcpy(buf + have, in + got, piece);
		have += piece;
		got += piece;
		for (;;) {
			if (r.mode == HTTP_M_HEAD) {
				struct http_head h;
				int st = 0;
				enum http_result hr;

				if (!have)
					break;
				hr = http_req_head(&r, buf, have, max, &h, &st);
				if (hr == HTTP_R_ERROR) {
					if (st != 400 && st != 431 && st != 501 && st != 505)
						fail("head status");
					res->status = st;
					return;
				}
				if (r.fed > have || r.fed > max)
					fail("fed");
				if (hr == HTTP_R_MORE) {
					if (r.fed != have && have <= max)
						fail("MORE without taking every byte");
					break;
				}
				check_head(&r, buf, &h, have, max, trusted);
				add(res, 'H', off, h.len);
				http_req_head_done(&r, buf, &h);
				if (r.fed != 0)
					fail("fed after head_done");
				if (h.upgrade != (r.mode == HTTP_M_UPGRADE ||
						  (r.mode == HTTP_M_BODY && r.upgrade)))
					fail("Upgrade head, mode");
				memmove(buf, buf + h.len, have - h.len);
				have -= h.len;
				off += h.len;
				res->taken += h.len;
				up_len = h.upgrade ? h.len : 0;
				if (up_len & 2) { /* the service answers at once */
					add(res, 'U', off, up_len & 1);
					if (!http_req_upgrade_answer(&r, up_len & 1))
						fail("an answer to Upgrade not taken");
					if (http_req_upgrade_answer(&r, up_len & 1))
						fail("a second answer taken");
				}
				if (r.mode == HTTP_M_HEAD)
					add(res, 'B', off, 0);
			} else if (r.mode == HTTP_M_BODY) {
				int st = 0;
				long n;

				if (!have)
					break;
				n = http_req_body(&r, buf, have, &st);
				if (n < 0) {
					if (st != 400)
						fail("body status");
					res->status = st;
					return;
				}
				if ((size_t)n > have)
					fail("body took more than given");
				memmove(buf, buf + n, have - (size_t)n);
				have -= (size_t)n;
				off += (size_t)n;
				res->taken += (size_t)n;
				if (r.mode == HTTP_M_BODY) {
					if (have)
						fail("body left bytes in BODY mode");
					break;
				}
				add(res, 'B', off, 0);
			} else if (r.mode == HTTP_M_UPGRADE) {
				int st = 0;

				if (!up_len || (up_len & 2))
					fail("UPGRADE mode after no Upgrade, or after its answer");
				if (have && http_req_body(&r, buf, have, &st) != -1)
					fail("a body call in UPGRADE mode took bytes");
				add(res, 'U', off, up_len & 1);
				if (!http_req_upgrade_answer(&r, up_len & 1) ||
				    r.mode != ((up_len & 1) ? HTTP_M_RAW : HTTP_M_HEAD))
					fail("the answer to Upgrade not taken");
			} else {
				if (r.mode != HTTP_M_RAW || !(up_len & 1))
					fail("RAW without a 101");
				if (!res->raw)
					add(res, 'R', off, 0);
				res->raw = true;
				off += have;
				res->taken += have;
				have = 0;
				break;
			}
		}
	}
	if (res->taken > len)
		fail("took more than given");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct result a, b;
	size_t cuts[SPLITS_MAX], ncuts, max;
	bool trusted;

	if (size < 1)
		return 0;
	ncuts = data[0] & 15;
	max = (size_t)64 << ((data[0] >> 4) & 7); /* 64 .. 8192 */
	trusted = data[0] & 0x80;
	if (size < 1 + ncuts)
		return 0;
	for (size_t i = 0; i < ncuts; i++)
		cuts[i] = data[1 + i];
	data += 1 + ncuts;
	size -= 1 + ncuts;

	run(data, size, cuts, ncuts, max, trusted, &a);
	run(data, size, NULL, 0, max, trusted, &b);
	if (a.n != b.n || a.status != b.status ||
	    memcmp(a.ev, b.ev, (a.n < EV_MAX ? a.n : EV_MAX) * sizeof(a.ev[0]))) {
		fprintf(stderr, "fuzz_http: split: %zu events, status %d; whole: %zu, %d\n", a.n,
			a.status, b.n, b.status);
		fail("split and whole feeds differ");
	}
	return 0;
}

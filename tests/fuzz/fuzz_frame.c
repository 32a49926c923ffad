// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for common/frame.c, the data-link frame receiver and
 * DATA_HELLO check. The first input byte picks allow_bind (bit 7) and the
 * read size (low bits + 1); the rest is the link's byte stream, handed to the
 * receiver the way engine.c does (header bytes into frame_rx_hdr(), at most
 * body_left body bytes per read). Beyond "never crash", it checks the state
 * invariants after every call (have < need, need is 4 or a BIND header,
 * body_left within LINK_CHUNK_MAX and never underflowing, errors carry a
 * terminated reason) and that the event sequence equals that of a one-pass
 * reference parser, whatever the read size. frame_hello_check runs on the
 * first 72 bytes and is compared with the rules of link_proto.h.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_frame.c common/frame.c common/util.c common/log.c
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define EV_MAX	 4096
#define BIND_HDR (4 + sizeof(struct link_bind))

struct trace {
	int ev[EV_MAX];
	struct link_bind bind[EV_MAX];
	uint32_t len[EV_MAX]; /* chunk length of FRAME_DATA */
	size_t n;
};

static struct trace got, want;

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_frame: %s\n", what);
	abort();
}

static void trace_add(struct trace *t, int ev, const struct link_bind *b, uint32_t len)
{
	if (t->n == EV_MAX)
		fail("event trace overflow");
	t->ev[t->n] = ev;
	t->len[t->n] = len;
	if (b)
		memcpy(&t->bind[t->n], b, sizeof(*b));
	else
		memset(&t->bind[t->n], 0, sizeof(*b));
	t->n++;
}

static void check_rx(const struct frame_rx *rx, bool allow_bind)
{
	if (rx->need != 4 && rx->need != BIND_HDR)
		fail("need is neither a word nor a BIND header");
	if (rx->need == BIND_HDR && !allow_bind)
		fail("BIND header collected with allow_bind off");
	if (rx->have >= rx->need)
		fail("have >= need after a call");
	if (rx->body_left > LINK_CHUNK_MAX)
		fail("body_left beyond LINK_CHUNK_MAX (underflow?)");
	if (rx->body_left && rx->have)
		fail("header bytes collected inside a body");
	if (rx->allow_bind != allow_bind)
		fail("allow_bind changed");
}

/* The stream read through the receiver in reads of at most step bytes. */
static void drive(const uint8_t *p, size_t n, bool allow_bind, size_t step)
{
	struct frame_rx rx;
	struct link_bind bind;
	char err[96];
	size_t off = 0;

	frame_rx_init(&rx, allow_bind);
	check_rx(&rx, allow_bind);
	while (off < n) {
		size_t k = n - off < step ? n - off : step;
		uint32_t before = rx.body_left;
		size_t room;
		uint8_t *dst;
		int ev;

		if (frame_rx_in_body(&rx)) {
			if (k > rx.body_left)
				k = rx.body_left;
			frame_rx_body_done(&rx, k);
			if (rx.body_left != before - k || rx.body_left > before)
				fail("body_left arithmetic");
			off += k;
			check_rx(&rx, allow_bind);
			continue;
		}
		dst = frame_rx_hdr(&rx, &room);
		if (room == 0 || dst < rx.hdr || dst + room > rx.hdr + sizeof(rx.hdr))
			fail("frame_rx_hdr outside the header buffer");
		if (k > room)
			k = room;
		memcpy(dst, p + off, k);
		off += k;
		memset(err, 0x55, sizeof(err));
		memset(&bind, 0xa5, sizeof(bind));
		ev = frame_rx_hdr_done(&rx, k, &bind, err, sizeof(err));
		if (ev < 0) {
			if (ev != -EBADMSG)
				fail("error other than -EBADMSG");
			if (!memchr(err, 0, sizeof(err)) || !err[0])
				fail("error without a terminated reason");
			trace_add(&got, ev, NULL, 0);
			return;
		}
		check_rx(&rx, allow_bind);
		switch (ev) {
		case FRAME_NEED:
			if (rx.have == 0)
				fail("FRAME_NEED with nothing collected");
			break;
		case FRAME_DATA:
			if (rx.body_left == 0 || rx.have)
				fail("FRAME_DATA without a body or with header bytes");
			trace_add(&got, ev, NULL, rx.body_left);
			break;
		case FRAME_BIND:
			if (!allow_bind)
				fail("FRAME_BIND with allow_bind off");
			/* fallthrough */
		case FRAME_EOF:
		case FRAME_RESET:
			if (rx.body_left || rx.have)
				fail("control frame left state behind");
			trace_add(&got, ev, ev == FRAME_BIND ? &bind : NULL, 0);
			break;
		default:
			fail("unknown frame_ev");
		}
	}
}

/* One pass over the whole stream by the rules of link_proto.h. */
static void reference(const uint8_t *p, size_t n, bool allow_bind)
{
	size_t off = 0;

	while (n - off >= 4) {
		uint32_t w = frame_get32(p + off);

		off += 4;
		if (w == LINK_FRAME_BIND) {
			if (!allow_bind) {
				trace_add(&want, -EBADMSG, NULL, 0);
				return;
			}
			if (n - off < sizeof(struct link_bind))
				return;
			trace_add(&want, FRAME_BIND, (const struct link_bind *)(p + off), 0);
			off += sizeof(struct link_bind);
		} else if (w == LINK_FRAME_EOF) {
			trace_add(&want, FRAME_EOF, NULL, 0);
		} else if (w == LINK_FRAME_RESET) {
			trace_add(&want, FRAME_RESET, NULL, 0);
		} else if (w > LINK_CHUNK_MAX) {
			trace_add(&want, -EBADMSG, NULL, 0);
			return;
		} else {
			trace_add(&want, FRAME_DATA, NULL, w);
			if (n - off < w)
				return;
			off += w;
		}
	}
}

static void compare(void)
{
	size_t i;

	if (got.n != want.n)
		fail("event count differs from the reference parser");
	for (i = 0; i < got.n; i++) {
		if (got.ev[i] != want.ev[i] || got.len[i] != want.len[i])
			fail("event differs from the reference parser");
		if (memcmp(&got.bind[i], &want.bind[i], sizeof(got.bind[i])))
			fail("BIND contents differ from the bytes on the wire");
	}
}

static void hello(const uint8_t *p, size_t n)
{
	struct link_data_hello h, h2;
	char err[64];
	bool ok;
	int r;

	memset(&h, 0, sizeof(h));
	memcpy(&h, p, n < sizeof(h) ? n : sizeof(h));
	ok = frame_get32(p) == LINK_MAGIC && ((uint8_t *)&h.version)[0] == 0 &&
	     ((uint8_t *)&h.version)[1] == LINK_VERSION && h.tunnel_id[0] &&
	     memchr(h.tunnel_id, 0, LINK_ID_MAX) && h.flags == 0;
	/* ids are printable ASCII without spaces: they reach the logs */
	for (size_t i = 0; ok && i < LINK_ID_MAX && h.tunnel_id[i]; i++)
		ok = h.tunnel_id[i] > 0x20 && h.tunnel_id[i] < 0x7f;
	memset(err, 0x55, sizeof(err));
	r = frame_hello_check(&h, err, sizeof(err));
	if (r != 0 && r != -EBADMSG)
		fail("frame_hello_check: unexpected return");
	if ((r == 0) != ok)
		fail("frame_hello_check disagrees with link_proto.h");
	if (r && (!memchr(err, 0, sizeof(err)) || !err[0]))
		fail("frame_hello_check: error without a terminated reason");
	if (r)
		return;
	/* an accepted hello rebuilds to the same bytes */
	frame_hello_build(&h2, h.tunnel_id, h.secret);
	if (memcmp(&h, &h2, offsetof(struct link_data_hello, tunnel_id)) ||
	    strcmp(h.tunnel_id, h2.tunnel_id) || memcmp(h.secret, h2.secret, LINK_SECRET_LEN))
		fail("accepted DATA_HELLO does not rebuild");
	if (frame_hello_check(&h2, err, sizeof(err)))
		fail("rebuilt DATA_HELLO rejected");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool allow_bind;
	size_t step, i;

	if (size < 1)
		return 0;
	allow_bind = data[0] & 0x80;
	step = (size_t)(data[0] & 0x7f) + 1;
	data++;
	size--;

	want.n = 0;
	reference(data, size, allow_bind);
	got.n = 0;
	drive(data, size, allow_bind, step);
	compare();
	/* the read size must not matter: also one byte and all at once */
	for (i = 0; i < 2; i++) {
		got.n = 0;
		drive(data, size, allow_bind, i ? (size ? size : 1) : 1);
		compare();
	}

	if (size >= 4)
		hello(data, size);
	return 0;
}

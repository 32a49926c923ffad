// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for common/frame.c, the data-link frame receiver and
 * DATA_HELLO check. The first input byte picks allow_bind (bit 7), allow_open
 * (bit 6), allow_opened (bit 5) and the read size (low 5 bits + 1); the rest is
 * the link's byte stream, handed to the
 * receiver the way engine.c does (header bytes into frame_rx_hdr(), at most
 * body_left body bytes per read). Beyond "never crash", it checks the state
 * invariants after every call (have < need, need is 4 or a BIND, OPEN or
 * OPENED header,
 * body_left within LINK_CHUNK_MAX and never underflowing, errors carry a
 * terminated reason) and that the event sequence equals that of a one-pass
 * reference parser (which also judges OPEN headers by link_proto.h's rules),
 * whatever the read size; every accepted OPEN goes through frame_open_check.
 * frame_hello_check runs on the first 72 bytes and is compared with the rules
 * of link_proto.h.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_frame.c common/frame.c common/domain.c common/util.c common/log.c
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define EV_MAX	   4096
#define BIND_HDR   (4 + sizeof(struct link_bind))
#define OPEN_HDR   (4 + sizeof(struct link_open))
#define OPENED_HDR (4 + sizeof(struct link_opened))

struct trace {
	int ev[EV_MAX];
	uint8_t body[EV_MAX][sizeof(struct link_open)]; /* BIND, OPEN or OPENED */
	uint32_t len[EV_MAX];				/* chunk length of FRAME_DATA */
	size_t n;
};

struct allow {
	bool bind, open, opened;
};

static struct trace got, want;

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_frame: %s\n", what);
	abort();
}

static void trace_add(struct trace *t, int ev, const void *b, size_t blen, uint32_t len)
{
	if (t->n == EV_MAX)
		fail("event trace overflow");
	t->ev[t->n] = ev;
	t->len[t->n] = len;
	memset(t->body[t->n], 0, sizeof(t->body[t->n]));
	if (b)
		memcpy(t->body[t->n], b, blen);
	t->n++;
}

static void check_rx(const struct frame_rx *rx, struct allow a)
{
	if (rx->need != 4 && rx->need != BIND_HDR && rx->need != OPEN_HDR && rx->need != OPENED_HDR)
		fail("need is neither a word nor a BIND, OPEN or OPENED header");
	if ((rx->need == BIND_HDR && !a.bind) || (rx->need == OPEN_HDR && !a.open) ||
	    (rx->need == OPENED_HDR && !a.opened))
		fail("a header collected that is not allowed");
	if (rx->have >= rx->need)
		fail("have >= need after a call");
	if (rx->body_left > LINK_CHUNK_MAX)
		fail("body_left beyond LINK_CHUNK_MAX (underflow?)");
	if (rx->body_left && rx->have)
		fail("header bytes collected inside a body");
	if (rx->allow_bind != a.bind || rx->allow_open != a.open || rx->allow_opened != a.opened)
		fail("allow_* changed");
}

/* An OPEN frame_rx passed: frame_open_check takes it or answers LINK_OPEN_BAD. */
static void check_open(const struct link_open *o)
{
	struct frame_open_dst d;
	char err[96];
	int r;

	memset(err, 0x55, sizeof(err));
	r = frame_open_check(o, &d, err, sizeof(err));
	if (r == LINK_OPEN_BAD) {
		if (!memchr(err, 0, sizeof(err)) || !err[0])
			fail("frame_open_check: LINK_OPEN_BAD without a reason");
		return;
	}
	if (r != 0)
		fail("frame_open_check refused what frame_rx accepted");
	if (strlen(d.name) != o->name_len || (!d.is_ip && !d.is_dns && !d.is_id))
		fail("frame_open_check: accepted name without a class");
	for (const char *c = d.name; *c; c++)
		if (*c <= 0x20 || *c >= 0x7f || (*c >= 'A' && *c <= 'Z'))
			fail("frame_open_check: unprintable or uppercase name accepted");
	if (d.is_id && (o->name_len > LINK_GROUP_MAX))
		fail("frame_open_check: an id longer than LINK_GROUP_MAX");
	if (d.udp != (o->transport == LINK_OPEN_UDP))
		fail("frame_open_check: the transport misread");
}

/* The stream read through the receiver in reads of at most step bytes. */
static void drive(const uint8_t *p, size_t n, struct allow a, size_t step)
{
	struct frame_rx rx;
	struct link_bind bind;
	char err[96];
	size_t off = 0;

	frame_rx_init(&rx, a.bind);
	rx.allow_open = a.open;
	rx.allow_opened = a.opened;
	check_rx(&rx, a);
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
			check_rx(&rx, a);
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
			trace_add(&got, ev, NULL, 0, 0);
			return;
		}
		check_rx(&rx, a);
		switch (ev) {
		case FRAME_NEED:
			if (rx.have == 0)
				fail("FRAME_NEED with nothing collected");
			break;
		case FRAME_DATA:
			if (rx.body_left == 0 || rx.have)
				fail("FRAME_DATA without a body or with header bytes");
			trace_add(&got, ev, NULL, 0, rx.body_left);
			break;
		case FRAME_BIND:
			if (!a.bind)
				fail("FRAME_BIND with allow_bind off");
			/* fallthrough */
		case FRAME_EOF:
		case FRAME_RESET:
			if (rx.body_left || rx.have)
				fail("control frame left state behind");
			trace_add(&got, ev, ev == FRAME_BIND ? &bind : NULL, sizeof(bind), 0);
			break;
		case FRAME_OPEN:
		case FRAME_OPENED:
			if (ev == FRAME_OPEN ? !a.open : !a.opened)
				fail("FRAME_OPEN(ED) where it is not allowed");
			if (rx.body_left || rx.have)
				fail("control frame left state behind");
			if (ev == FRAME_OPEN) {
				check_open(&rx.open);
				trace_add(&got, ev, &rx.open, sizeof(rx.open), 0);
			} else {
				trace_add(&got, ev, &rx.opened, sizeof(rx.opened), 0);
			}
			break;
		default:
			fail("unknown frame_ev");
		}
	}
}

/* link_proto.h's shape of an OPEN header: transport, flags, reserved, name_len, port, padding */
static bool open_wellformed(const uint8_t *o)
{
	size_t name_len = o[5];

	if (o[4] > LINK_OPEN_UDP || frame_get16(o + 6) == 0 || (frame_get16(o + 8) & ~1u) ||
	    frame_get16(o + 10) || name_len == 0)
		return false;
	for (size_t i = 12 + name_len; i < sizeof(struct link_open); i++)
		if (o[i])
			return false;
	return true;
}

/* One pass over the whole stream by the rules of link_proto.h. */
static void reference(const uint8_t *p, size_t n, struct allow a)
{
	size_t off = 0;

	while (n - off >= 4) {
		uint32_t w = frame_get32(p + off);

		off += 4;
		if (w == LINK_FRAME_BIND) {
			if (!a.bind) {
				trace_add(&want, -EBADMSG, NULL, 0, 0);
				return;
			}
			if (n - off < sizeof(struct link_bind))
				return;
			trace_add(&want, FRAME_BIND, p + off, sizeof(struct link_bind), 0);
			off += sizeof(struct link_bind);
		} else if (w == LINK_FRAME_OPEN) {
			if (!a.open) {
				trace_add(&want, -EBADMSG, NULL, 0, 0);
				return;
			}
			if (n - off < sizeof(struct link_open))
				return;
			if (!open_wellformed(p + off)) {
				trace_add(&want, -EBADMSG, NULL, 0, 0);
				return;
			}
			trace_add(&want, FRAME_OPEN, p + off, sizeof(struct link_open), 0);
			off += sizeof(struct link_open);
		} else if (w == LINK_FRAME_OPENED) {
			if (!a.opened) {
				trace_add(&want, -EBADMSG, NULL, 0, 0);
				return;
			}
			if (n - off < sizeof(struct link_opened))
				return;
			trace_add(&want, FRAME_OPENED, p + off, sizeof(struct link_opened), 0);
			off += sizeof(struct link_opened);
		} else if (w == LINK_FRAME_EOF) {
			trace_add(&want, FRAME_EOF, NULL, 0, 0);
		} else if (w == LINK_FRAME_RESET) {
			trace_add(&want, FRAME_RESET, NULL, 0, 0);
		} else if (w > LINK_CHUNK_MAX) {
			trace_add(&want, -EBADMSG, NULL, 0, 0);
			return;
		} else {
			trace_add(&want, FRAME_DATA, NULL, 0, w);
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
		if (memcmp(got.body[i], want.body[i], sizeof(got.body[i])))
			fail("BIND/OPEN/OPENED contents differ from the bytes on the wire");
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
	     memchr(h.tunnel_id, 0, LINK_ID_MAX) &&
	     (frame_get16((const uint8_t *)&h.flags) & ~LINK_HELLO_OUTBOUND) == 0;
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
	frame_hello_set_flags(&h2, frame_hello_flags(&h));
	if (memcmp(&h, &h2, offsetof(struct link_data_hello, tunnel_id)) ||
	    strcmp(h.tunnel_id, h2.tunnel_id) || memcmp(h.secret, h2.secret, LINK_SECRET_LEN))
		fail("accepted DATA_HELLO does not rebuild");
	if (frame_hello_check(&h2, err, sizeof(err)))
		fail("rebuilt DATA_HELLO rejected");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct allow a;
	size_t step, i;

	if (size < 1)
		return 0;
	a.bind = data[0] & 0x80;
	a.open = data[0] & 0x40;
	a.opened = data[0] & 0x20;
	step = (size_t)(data[0] & 0x1f) + 1;
	data++;
	size--;

	want.n = 0;
	reference(data, size, a);
	got.n = 0;
	drive(data, size, a, step);
	compare();
	/* the read size must not matter: also one byte and all at once */
	for (i = 0; i < 2; i++) {
		got.n = 0;
		drive(data, size, a, i ? (size ? size : 1) : 1);
		compare();
	}

	if (size >= 4)
		hello(data, size);
	return 0;
}

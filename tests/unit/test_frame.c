// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/frame.c, the data-link frame receiver and DATA_HELLO
 * codec (link_proto.h): each frame word (data chunk, EOF, RESET, BIND) parsed
 * whole and one byte at a time, BIND refused where allow_bind is off, chunk
 * lengths at and beyond LINK_CHUNK_MAX, body_left arithmetic across split
 * body reads, and the DATA_HELLO round trip plus every rejection of
 * frame_hello_check (and its OUTBOUND flag); OPEN and OPENED (mesh streams):
 * parsed only where allowed, split anywhere, every malformed header refused,
 * frame_open_check's name classes and LINK_OPEN_BAD, the status texts. The
 * test links the module's object like the rest of common/ instead of
 * including frame.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"
#include "link_proto.h"

#define ERR_POISON 'Z'

struct feed {
	struct frame_rx rx;
	struct link_bind bind;
	char err[128];
};

static void feed_init(struct feed *f, bool allow_bind)
{
	memset(f, 0, sizeof(*f));
	memset(f->err, ERR_POISON, sizeof(f->err));
	f->err[sizeof(f->err) - 1] = 0;
	frame_rx_init(&f->rx, allow_bind);
}

/*
 * Hands n bytes of p to the receiver exactly as the datapath does: ask
 * frame_rx_hdr() for room, copy at most chunk bytes there, report them.
 * Returns the event of the last call; *used says how many bytes went in
 * (less than n only when an event other than FRAME_NEED ended the header).
 */
static int feed_hdr(struct feed *f, const uint8_t *p, size_t n, size_t chunk, size_t *used)
{
	size_t off = 0;
	int ev = FRAME_NEED;

	assert_false(frame_rx_in_body(&f->rx));
	while (off < n) {
		size_t room, k;
		uint8_t *dst = frame_rx_hdr(&f->rx, &room);

		assert_true(room > 0);
		assert_true(room <= sizeof(f->rx.hdr) - f->rx.have);
		k = n - off;
		if (k > chunk)
			k = chunk;
		if (k > room)
			k = room;
		memcpy(dst, p + off, k);
		off += k;
		ev = frame_rx_hdr_done(&f->rx, k, &f->bind, f->err, sizeof(f->err));
		if (ev != FRAME_NEED)
			break;
	}
	if (used)
		*used = off;
	return ev;
}

static void put_bind(uint8_t *p, uint32_t stream_id, uint16_t port)
{
	struct link_bind b;

	memset(&b, 0, sizeof(b));
	frame_put32((uint8_t *)&b.stream_id, stream_id);
	((uint8_t *)&b.port)[0] = (uint8_t)(port >> 8);
	((uint8_t *)&b.port)[1] = (uint8_t)port;
	b.origin_addr[10] = 0xff;
	b.origin_addr[11] = 0xff;
	b.origin_addr[12] = 192;
	b.origin_addr[15] = 7;
	((uint8_t *)&b.flags)[1] = LINK_BIND_PROXY_V2;
	frame_put32(p, LINK_FRAME_BIND);
	memcpy(p + 4, &b, sizeof(b));
}

static void assert_rx_idle(const struct feed *f)
{
	assert_int_equal(f->rx.have, 0);
	assert_int_equal(f->rx.need, 4);
}

static void assert_err_set(const struct feed *f, const char *needle)
{
	assert_non_null(memchr(f->err, 0, sizeof(f->err)));
	assert_true(f->err[0] != ERR_POISON);
	assert_non_null(strstr(f->err, needle));
}

static void test_put_get32(void **state)
{
	uint8_t b[4];

	frame_put32(b, 0x01020304u);
	assert_int_equal(b[0], 1);
	assert_int_equal(b[3], 4);
	assert_int_equal(frame_get32(b), 0x01020304u);
	frame_put32(b, LINK_FRAME_RESET);
	assert_int_equal(frame_get32(b), LINK_FRAME_RESET);
}

static void test_init(void **state)
{
	struct feed f;
	size_t room;

	feed_init(&f, true);
	assert_true(f.rx.allow_bind);
	assert_false(frame_rx_in_body(&f.rx));
	assert_ptr_equal(frame_rx_hdr(&f.rx, &room), f.rx.hdr);
	assert_int_equal(room, 4);
	feed_init(&f, false);
	assert_false(f.rx.allow_bind);
}

static void test_data_header(void **state)
{
	struct feed f;
	uint8_t h[4];
	size_t used;

	feed_init(&f, false);
	frame_put32(h, 1234);
	assert_int_equal(feed_hdr(&f, h, 4, 4, &used), FRAME_DATA);
	assert_int_equal(used, 4);
	assert_int_equal(f.rx.body_left, 1234);
	assert_true(frame_rx_in_body(&f.rx));
	assert_rx_idle(&f);
	frame_rx_body_done(&f.rx, 1234);
	assert_false(frame_rx_in_body(&f.rx));
}

static void test_data_one(void **state)
{
	struct feed f;
	uint8_t h[4];

	feed_init(&f, true);
	frame_put32(h, 1);
	assert_int_equal(feed_hdr(&f, h, 4, 4, NULL), FRAME_DATA);
	assert_int_equal(f.rx.body_left, 1);
	frame_rx_body_done(&f.rx, 1);
	assert_false(frame_rx_in_body(&f.rx));
}

static void test_eof(void **state)
{
	struct feed f;
	uint8_t h[4];

	feed_init(&f, false);
	frame_put32(h, LINK_FRAME_EOF);
	assert_int_equal(feed_hdr(&f, h, 4, 4, NULL), FRAME_EOF);
	assert_false(frame_rx_in_body(&f.rx));
	assert_rx_idle(&f);
}

static void test_reset(void **state)
{
	struct feed f;
	uint8_t h[4];

	feed_init(&f, true);
	frame_put32(h, LINK_FRAME_RESET);
	assert_int_equal(feed_hdr(&f, h, 4, 4, NULL), FRAME_RESET);
	assert_false(frame_rx_in_body(&f.rx));
	assert_rx_idle(&f);
}

static void test_bind_allowed(void **state)
{
	struct feed f;
	uint8_t h[4 + sizeof(struct link_bind)];
	size_t used, room;

	feed_init(&f, true);
	put_bind(h, 0xdeadbeefu, 8080);

	/* the word alone asks for the struct behind it */
	assert_int_equal(feed_hdr(&f, h, 4, 4, &used), FRAME_NEED);
	assert_int_equal(used, 4);
	frame_rx_hdr(&f.rx, &room);
	assert_int_equal(room, sizeof(struct link_bind));
	assert_int_equal(f.rx.need, sizeof(h));

	assert_int_equal(feed_hdr(&f, h + 4, sizeof(h) - 4, sizeof(h), &used), FRAME_BIND);
	assert_int_equal(used, sizeof(struct link_bind));
	assert_memory_equal(&f.bind, h + 4, sizeof(struct link_bind));
	assert_int_equal(frame_get32((uint8_t *)&f.bind.stream_id), 0xdeadbeefu);
	assert_false(frame_rx_in_body(&f.rx));
	assert_rx_idle(&f);
}

static void test_bind_refused(void **state)
{
	struct feed f;
	uint8_t h[4 + sizeof(struct link_bind)];

	feed_init(&f, false);
	put_bind(h, 1, 1);
	assert_int_equal(feed_hdr(&f, h, sizeof(h), 4, NULL), -EBADMSG);
	assert_err_set(&f, "BIND");
	assert_false(frame_rx_in_body(&f.rx));
}

static void test_too_long(void **state)
{
	static const uint32_t bad[] = {LINK_CHUNK_MAX + 1, 0x7fffffffu, 0x80000000u,
				       LINK_FRAME_OPENED - 1, LINK_FRAME_RESET - 0x10000};
	struct feed f;
	uint8_t h[4];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		feed_init(&f, true);
		frame_put32(h, bad[i]);
		assert_int_equal(feed_hdr(&f, h, 4, 4, NULL), -EBADMSG);
		assert_err_set(&f, "exceeds");
		assert_false(frame_rx_in_body(&f.rx));
	}
}

static void test_chunk_max(void **state)
{
	struct feed f;
	uint8_t h[4];

	feed_init(&f, false);
	frame_put32(h, LINK_CHUNK_MAX);
	assert_int_equal(feed_hdr(&f, h, 4, 1, NULL), FRAME_DATA);
	assert_int_equal(f.rx.body_left, LINK_CHUNK_MAX);
}

static void test_bytewise_headers(void **state)
{
	uint8_t s[4 * 4 + 4 + sizeof(struct link_bind)];
	static const int want[] = {FRAME_DATA, FRAME_EOF, FRAME_BIND, FRAME_RESET, FRAME_DATA};
	struct feed f;
	size_t off = 0, used, i;

	/* DATA(7) EOF BIND RESET DATA(LINK_CHUNK_MAX), bodies skipped */
	frame_put32(s, 7);
	frame_put32(s + 4, LINK_FRAME_EOF);
	put_bind(s + 8, 42, 443);
	frame_put32(s + 8 + 4 + sizeof(struct link_bind), LINK_FRAME_RESET);
	frame_put32(s + 12 + 4 + sizeof(struct link_bind), LINK_CHUNK_MAX);

	feed_init(&f, true);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		int ev = feed_hdr(&f, s + off, sizeof(s) - off, 1, &used);

		assert_int_equal(ev, want[i]);
		off += used;
		if (ev == FRAME_DATA)
			frame_rx_body_done(&f.rx, f.rx.body_left);
		if (ev == FRAME_BIND)
			assert_int_equal(frame_get32((uint8_t *)&f.bind.stream_id), 42);
	}
	assert_int_equal(off, sizeof(s));
	assert_rx_idle(&f);
}

/* Every split point of a BIND header gives the same struct. */
static void test_bind_every_split(void **state)
{
	uint8_t h[4 + sizeof(struct link_bind)];
	struct feed f;
	size_t cut, used;

	put_bind(h, 0x01020304u, 65535);
	for (cut = 1; cut < sizeof(h); cut++) {
		feed_init(&f, true);
		assert_int_equal(feed_hdr(&f, h, cut, sizeof(h), &used), FRAME_NEED);
		assert_int_equal(used, cut);
		assert_int_equal(f.rx.have, cut);
		assert_int_equal(feed_hdr(&f, h + cut, sizeof(h) - cut, sizeof(h), &used),
				 FRAME_BIND);
		assert_int_equal(used, sizeof(h) - cut);
		assert_memory_equal(&f.bind, h + 4, sizeof(f.bind));
	}
}

static void test_body_left_split(void **state)
{
	static const size_t reads[] = {1, 4095, 4096, 65536, 1, 974847};
	struct feed f;
	uint8_t h[4];
	size_t i, total = 0;

	/* the reads sum to LINK_CHUNK_MAX */
	for (i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
		total += reads[i];
	assert_int_equal(total, LINK_CHUNK_MAX);

	feed_init(&f, false);
	frame_put32(h, LINK_CHUNK_MAX);
	assert_int_equal(feed_hdr(&f, h, 4, 4, NULL), FRAME_DATA);
	for (i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		uint32_t before = f.rx.body_left;

		assert_true(frame_rx_in_body(&f.rx));
		assert_true(reads[i] <= before);
		frame_rx_body_done(&f.rx, reads[i]);
		assert_int_equal(f.rx.body_left, before - reads[i]);
	}
	assert_int_equal(f.rx.body_left, 0);
	assert_false(frame_rx_in_body(&f.rx));

	/* the next header follows straight on */
	frame_put32(h, 3);
	assert_int_equal(feed_hdr(&f, h, 4, 2, NULL), FRAME_DATA);
	frame_rx_body_done(&f.rx, 2);
	assert_int_equal(f.rx.body_left, 1);
	frame_rx_body_done(&f.rx, 1);
	assert_false(frame_rx_in_body(&f.rx));
}

static void test_overrun(void **state)
{
	struct feed f;
	size_t room;

	feed_init(&f, true);
	frame_rx_hdr(&f.rx, &room);
	assert_int_equal(frame_rx_hdr_done(&f.rx, room + 1, &f.bind, f.err, sizeof(f.err)),
			 -EBADMSG);
	assert_err_set(&f, "overrun");
	assert_int_equal(f.rx.have, 0);
}

static void test_err_truncated(void **state)
{
	struct feed f;
	uint8_t h[4];
	char small[8];

	feed_init(&f, true);
	frame_put32(h, LINK_FRAME_OPENED - 1);
	memcpy(frame_rx_hdr(&f.rx, &(size_t){0}), h, 4);
	memset(small, ERR_POISON, sizeof(small));
	assert_int_equal(frame_rx_hdr_done(&f.rx, 4, &f.bind, small, sizeof(small)), -EBADMSG);
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

static const uint8_t secret[LINK_SECRET_LEN] = {1,  2,	3,  4,	5,  6,	7,  8,	9,  10, 11,
						12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
						23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static void test_hello_round_trip(void **state)
{
	struct link_data_hello h;
	const uint8_t *raw = (const uint8_t *)&h;
	char err[128] = "";
	size_t i;

	memset(&h, 0xaa, sizeof(h));
	frame_hello_build(&h, "t-0123", secret);
	assert_int_equal(frame_hello_check(&h, err, sizeof(err)), 0);
	/* wire layout: "NVDL", version 1, flags 0, padded id, secret */
	assert_memory_equal(raw, "NVDL\0\1\0\0t-0123", 14);
	for (i = 14; i < 8 + LINK_ID_MAX; i++)
		assert_int_equal(raw[i], 0);
	assert_memory_equal(h.secret, secret, LINK_SECRET_LEN);
}

static void test_hello_longest_id(void **state)
{
	char id[LINK_ID_MAX + 8];
	struct link_data_hello h;
	char err[128];

	memset(id, 'a', LINK_ID_MAX - 1);
	id[LINK_ID_MAX - 1] = 0;
	frame_hello_build(&h, id, secret);
	assert_int_equal(frame_hello_check(&h, err, sizeof(err)), 0);
	assert_string_equal(h.tunnel_id, id);

	/* a longer id is cut to LINK_ID_MAX - 1 and stays terminated */
	memset(id, 'b', sizeof(id) - 1);
	id[sizeof(id) - 1] = 0;
	frame_hello_build(&h, id, secret);
	assert_int_equal(frame_hello_check(&h, err, sizeof(err)), 0);
	assert_int_equal(strlen(h.tunnel_id), LINK_ID_MAX - 1);
}

static void expect_hello_bad(const struct link_data_hello *h, const char *needle)
{
	char err[128];

	memset(err, ERR_POISON, sizeof(err));
	assert_int_equal(frame_hello_check(h, err, sizeof(err)), -EBADMSG);
	assert_non_null(memchr(err, 0, sizeof(err)));
	assert_non_null(strstr(err, needle));
}

static void test_hello_bad_magic(void **state)
{
	struct link_data_hello h;

	frame_hello_build(&h, "t1", secret);
	((uint8_t *)&h.magic)[3] ^= 1;
	expect_hello_bad(&h, "magic");
	/* a control-link length prefix is not a DATA_HELLO */
	frame_hello_build(&h, "t1", secret);
	frame_put32((uint8_t *)&h.magic, 64);
	expect_hello_bad(&h, "magic");
	/* host byte order on a little-endian sender */
	frame_hello_build(&h, "t1", secret);
	memcpy(&h.magic, &(uint32_t){LINK_MAGIC}, 4);
	if (frame_get32((uint8_t *)&h.magic) != LINK_MAGIC)
		expect_hello_bad(&h, "magic");
}

static void test_hello_bad_version(void **state)
{
	struct link_data_hello h;

	frame_hello_build(&h, "t1", secret);
	((uint8_t *)&h.version)[1] = LINK_VERSION + 1;
	expect_hello_bad(&h, "version 2");
	frame_hello_build(&h, "t1", secret);
	((uint8_t *)&h.version)[0] = 1;
	expect_hello_bad(&h, "version 257");
	frame_hello_build(&h, "t1", secret);
	((uint8_t *)&h.version)[1] = 0;
	expect_hello_bad(&h, "version 0");
}

static void test_hello_empty_id(void **state)
{
	struct link_data_hello h;

	frame_hello_build(&h, "", secret);
	expect_hello_bad(&h, "tunnel id");
	/* an empty id is empty whatever the padding holds */
	memset(h.tunnel_id + 1, 'x', LINK_ID_MAX - 1);
	expect_hello_bad(&h, "tunnel id");
}

static void test_hello_unprintable_id_and_flags(void **state)
{
	struct link_data_hello h;

	frame_hello_build(&h, "t-1\nfake log line", secret);
	expect_hello_bad(&h, "tunnel id");
	frame_hello_build(&h, "t 1", secret);
	expect_hello_bad(&h, "tunnel id");
	frame_hello_build(&h, "t-\x7f", secret);
	expect_hello_bad(&h, "tunnel id");
	frame_hello_build(&h, "t-1", secret);
	frame_hello_set_flags(&h, 2);
	expect_hello_bad(&h, "flags");
	frame_hello_set_flags(&h, 0x100);
	expect_hello_bad(&h, "flags");
	/* host byte order of OUTBOUND on a little-endian sender is another flag */
	h.flags = LINK_HELLO_OUTBOUND;
	if (frame_hello_flags(&h) != LINK_HELLO_OUTBOUND)
		expect_hello_bad(&h, "flags");
}

static void test_hello_outbound(void **state)
{
	struct link_data_hello h;
	char err[128];

	frame_hello_build(&h, "t-1", secret);
	assert_int_equal(frame_hello_flags(&h), 0);
	frame_hello_set_flags(&h, LINK_HELLO_OUTBOUND);
	assert_int_equal(((uint8_t *)&h.flags)[0], 0);
	assert_int_equal(((uint8_t *)&h.flags)[1], 1);
	assert_int_equal(frame_hello_flags(&h), LINK_HELLO_OUTBOUND);
	assert_int_equal(frame_hello_check(&h, err, sizeof(err)), 0);
}

static void feed_init_open(struct feed *f, bool open, bool opened)
{
	feed_init(f, false);
	f->rx.allow_open = open;
	f->rx.allow_opened = opened;
}

static void test_open_round_trip(void **state)
{
	uint8_t buf[FRAME_OPEN_LEN + 8];
	struct frame_open_dst d;
	struct feed f;
	size_t used, chunk;
	char err[128];

	assert_int_equal(
	    frame_open_build(buf, 77, LINK_OPEN_TCP, LINK_OPEN_SOCKS, "Redis.Example.COM", 6379),
	    FRAME_OPEN_LEN);
	assert_int_equal(frame_get32(buf), LINK_FRAME_OPEN);
	/* wire: stream id, transport, name_len, port, flags, reserved, name */
	assert_memory_equal(buf + 4, "\0\0\0\x4d\0\x11\x18\xeb\0\1\0\0Redis", 17);
	for (chunk = 1; chunk <= FRAME_OPEN_LEN; chunk += 13) {
		feed_init_open(&f, true, false);
		assert_int_equal(feed_hdr(&f, buf, FRAME_OPEN_LEN, chunk, &used), FRAME_OPEN);
		assert_int_equal(used, FRAME_OPEN_LEN);
		assert_int_equal(f.rx.have, 0);
		assert_int_equal(f.rx.need, 4);
		assert_memory_equal(&f.rx.open, buf + 4, sizeof(struct link_open));
	}
	assert_int_equal(frame_open_check(&f.rx.open, &d, err, sizeof(err)), 0);
	assert_string_equal(d.name, "redis.example.com");
	assert_int_equal(d.stream_id, 77);
	assert_int_equal(d.port, 6379);
	assert_int_equal(d.flags, LINK_OPEN_SOCKS);
	assert_true(d.is_dns);
	assert_false(d.is_ip);
	assert_true(d.is_id); /* 17 bytes of [A-Za-z0-9.-]: an id too */
}

static void test_open_refused(void **state)
{
	uint8_t buf[FRAME_OPEN_LEN];
	struct feed f;

	frame_open_build(buf, 1, LINK_OPEN_TCP, 0, "a", 1);
	feed_init_open(&f, false, true);
	assert_int_equal(feed_hdr(&f, buf, sizeof(buf), 4, NULL), -EBADMSG);
	assert_err_set(&f, "unexpected OPEN");
	frame_opened_build(buf, 1, 0, 0);
	feed_init_open(&f, true, false);
	assert_int_equal(feed_hdr(&f, buf, FRAME_OPENED_LEN, 4, NULL), -EBADMSG);
	assert_err_set(&f, "unexpected OPENED");
	/* BIND is still the client's only */
	feed_init_open(&f, true, false);
	put_bind(buf, 1, 1);
	assert_int_equal(feed_hdr(&f, buf, 4 + sizeof(struct link_bind), 4, NULL), -EBADMSG);
}

static void test_opened(void **state)
{
	uint8_t buf[FRAME_OPENED_LEN];
	struct feed f;
	size_t i;

	assert_int_equal(frame_opened_build(buf, 0x01020304, LINK_OPEN_DENIED, 7),
			 FRAME_OPENED_LEN);
	assert_memory_equal(buf, "\xff\xff\xff\xfc\1\2\3\4\1\0\0\7", FRAME_OPENED_LEN);
	for (i = 1; i <= FRAME_OPENED_LEN; i++) {
		feed_init_open(&f, false, true);
		assert_int_equal(feed_hdr(&f, buf, sizeof(buf), i, NULL), FRAME_OPENED);
		assert_int_equal(frame_get32((uint8_t *)&f.rx.opened.stream_id), 0x01020304);
		assert_int_equal(f.rx.opened.status, LINK_OPEN_DENIED);
		assert_int_equal(frame_get16((uint8_t *)&f.rx.opened.rule), 7);
	}
	/* data follows on the same receiver */
	frame_put32(buf, 5);
	assert_int_equal(feed_hdr(&f, buf, 4, 4, NULL), FRAME_DATA);
	assert_int_equal(f.rx.body_left, 5);
}

static void expect_open_bad(const uint8_t *buf, const char *needle)
{
	struct feed f;

	feed_init_open(&f, true, false);
	assert_int_equal(feed_hdr(&f, buf, FRAME_OPEN_LEN, FRAME_OPEN_LEN, NULL), -EBADMSG);
	assert_err_set(&f, needle);
}

static void test_open_malformed(void **state)
{
	uint8_t buf[FRAME_OPEN_LEN];

	frame_open_build(buf, 1, 2, 0, "a", 1);
	expect_open_bad(buf, "transport");
	frame_open_build(buf, 1, LINK_OPEN_TCP, 2, "a", 1);
	expect_open_bad(buf, "flags");
	frame_open_build(buf, 1, LINK_OPEN_TCP, 0, "a", 1);
	buf[4 + offsetof(struct link_open, reserved) + 1] = 1;
	expect_open_bad(buf, "reserved");
	frame_open_build(buf, 1, LINK_OPEN_TCP, 0, "a", 0);
	expect_open_bad(buf, "port");
	frame_open_build(buf, 1, LINK_OPEN_TCP, 0, "", 1);
	expect_open_bad(buf, "name length");
	frame_open_build(buf, 1, LINK_OPEN_TCP, 0, "a", 1);
	buf[FRAME_OPEN_LEN - 1] = 'x';
	expect_open_bad(buf, "padding");
}

static int open_check(const char *name, uint8_t transport, struct frame_open_dst *d)
{
	uint8_t buf[FRAME_OPEN_LEN];
	struct link_open o;
	char err[128];
	int r;

	frame_open_build(buf, 9, transport, 0, name, 443);
	memcpy(&o, buf + 4, sizeof(o));
	memset(err, ERR_POISON, sizeof(err));
	r = frame_open_check(&o, d, err, sizeof(err));
	if (r)
		assert_non_null(memchr(err, 0, sizeof(err)));
	return r;
}

static void test_open_names(void **state)
{
	static const uint8_t v4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};
	static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	char longest[LINK_OPEN_NAME_MAX + 1];
	struct frame_open_dst d;

	assert_int_equal(open_check("10.1.2.3", LINK_OPEN_TCP, &d), 0);
	assert_true(d.is_ip);
	assert_memory_equal(d.addr, v4, 16);
	assert_int_equal(open_check("2001:DB8::1", LINK_OPEN_TCP, &d), 0);
	assert_true(d.is_ip);
	assert_false(d.is_dns);
	assert_memory_equal(d.addr, v6, 16);
	assert_string_equal(d.name, "2001:db8::1");
	/* a tunnel id is both an id and a DNS name; a group id with '_' only an id */
	assert_int_equal(open_check("Office-1", LINK_OPEN_TCP, &d), 0);
	assert_true(d.is_id && d.is_dns && !d.is_ip);
	assert_string_equal(d.name, "office-1");
	assert_int_equal(open_check("db_main", LINK_OPEN_TCP, &d), 0);
	assert_true(d.is_id && !d.is_dns);
	/* bad: brackets, spaces, control bytes, NUL inside */
	assert_int_equal(open_check("[::1]", LINK_OPEN_TCP, &d), LINK_OPEN_BAD);
	assert_int_equal(open_check("a b", LINK_OPEN_TCP, &d), LINK_OPEN_BAD);
	assert_int_equal(open_check("a\nb", LINK_OPEN_TCP, &d), LINK_OPEN_BAD);
	assert_int_equal(open_check("-x-", LINK_OPEN_TCP, &d), 0); /* an id, not a name */
	assert_true(d.is_id && !d.is_dns);
	/* UDP: the same names, the transport said */
	assert_int_equal(open_check("a.example.com", LINK_OPEN_UDP, &d), 0);
	assert_true(d.udp && d.is_dns);
	assert_int_equal(open_check("a.example.com", LINK_OPEN_TCP, &d), 0);
	assert_false(d.udp);
	assert_int_equal(open_check("a b", LINK_OPEN_UDP, &d), LINK_OPEN_BAD);
	/* 64..253 bytes: a DNS name at most, never an id */
	memset(longest, 'a', sizeof(longest));
	for (size_t i = 63; i < sizeof(longest) - 1; i += 64)
		longest[i] = '.';
	longest[253] = 0;
	assert_int_equal(open_check(longest, LINK_OPEN_TCP, &d), 0);
	assert_true(d.is_dns && !d.is_id);
	memset(longest, 'a', sizeof(longest));
	longest[LINK_OPEN_NAME_MAX] = 0;
	assert_int_equal(open_check(longest, LINK_OPEN_TCP, &d), LINK_OPEN_BAD);
	{
		uint8_t buf[FRAME_OPEN_LEN];
		struct link_open o;
		char err[64];

		frame_open_build(buf, 9, LINK_OPEN_TCP, 0, "ab", 443);
		memcpy(&o, buf + 4, sizeof(o));
		o.name[0] = 0;
		assert_int_equal(frame_open_check(&o, &d, err, sizeof(err)), LINK_OPEN_BAD);
		assert_non_null(strstr(err, "NUL"));
	}
}

static void test_open_status_names(void **state)
{
	unsigned i;

	for (i = 0; i <= LINK_OPEN_STATUS_MAX; i++)
		assert_true(strlen(link_open_status_name(i)) > 1);
	assert_string_equal(link_open_status_name(LINK_OPEN_OFFLINE), "destination tunnel offline");
	assert_string_equal(link_open_status_name(LINK_OPEN_STATUS_MAX + 1), "refused");
	assert_string_equal(link_open_status_name(255), "refused");
}

static void test_hello_unterminated_id(void **state)
{
	struct link_data_hello h;

	frame_hello_build(&h, "t1", secret);
	memset(h.tunnel_id, 'x', LINK_ID_MAX);
	expect_hello_bad(&h, "tunnel id");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_put_get32),
	    cmocka_unit_test(test_init),
	    cmocka_unit_test(test_data_header),
	    cmocka_unit_test(test_data_one),
	    cmocka_unit_test(test_eof),
	    cmocka_unit_test(test_reset),
	    cmocka_unit_test(test_bind_allowed),
	    cmocka_unit_test(test_bind_refused),
	    cmocka_unit_test(test_too_long),
	    cmocka_unit_test(test_chunk_max),
	    cmocka_unit_test(test_bytewise_headers),
	    cmocka_unit_test(test_bind_every_split),
	    cmocka_unit_test(test_body_left_split),
	    cmocka_unit_test(test_overrun),
	    cmocka_unit_test(test_err_truncated),
	    cmocka_unit_test(test_hello_round_trip),
	    cmocka_unit_test(test_hello_longest_id),
	    cmocka_unit_test(test_hello_bad_magic),
	    cmocka_unit_test(test_hello_bad_version),
	    cmocka_unit_test(test_hello_empty_id),
	    cmocka_unit_test(test_hello_unprintable_id_and_flags),
	    cmocka_unit_test(test_hello_unterminated_id),
	    cmocka_unit_test(test_hello_outbound),
	    cmocka_unit_test(test_open_round_trip),
	    cmocka_unit_test(test_open_refused),
	    cmocka_unit_test(test_opened),
	    cmocka_unit_test(test_open_malformed),
	    cmocka_unit_test(test_open_names),
	    cmocka_unit_test(test_open_status_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

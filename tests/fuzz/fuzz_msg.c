// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for common/msg.c, the length-prefixed JSON reader of the
 * control link and relay.sock. The first input byte says how many split
 * points follow (low nibble); each split point is one byte giving the size of
 * the next feed, and the rest of the input is the byte stream. The stream is
 * fed in those pieces, draining messages after every feed as the daemons do,
 * until the reader reports a malformed stream. Beyond "never crash", it checks
 * that every message is an object with a string "type", that it encodes and
 * reads back equal, that errors are -EBADMSG with a terminated reason, that
 * the buffer bound holds, and that the same messages and verdict come out
 * when the stream is fed in one piece.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_msg.c common/msg.c common/util.c common/log.c -ljansson
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SPLITS_MAX 15
#define OUT_MAX	   1024

struct result {
	json_t *msg[OUT_MAX]; /* the first OUT_MAX messages */
	size_t n;	      /* messages read */
	int verdict;	      /* 0 (wants more) or the error */
};

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_msg: %s\n", what);
	abort();
}

static void result_free(struct result *res)
{
	size_t i;

	for (i = 0; i < res->n && i < OUT_MAX; i++)
		json_decref(res->msg[i]);
	res->n = 0;
}

/* An accepted message re-encodes and reads back equal. */
static void round_trip(const json_t *m, size_t stream_len)
{
	struct msg_reader r;
	json_t *back;
	char err[128];
	uint8_t *buf;
	size_t len;

	buf = msg_encode(m, &len);
	if (!buf) {
		/* compact output of a message can grow (reals), but not eightfold */
		if (stream_len <= MSG_MAX / 8)
			fail("msg_encode refused an accepted message");
		return;
	}
	if (len < 5 || len - 4 > MSG_MAX || frame_get32(buf) != len - 4)
		fail("msg_encode: bad length prefix");
	msg_reader_init(&r);
	if (msg_reader_feed(&r, buf, len) != 0)
		fail("msg_encode output does not feed");
	if (msg_reader_next(&r, &back, err, sizeof(err)) != 1) {
		fprintf(stderr, "%s\n", err);
		fail("msg_encode output does not read back");
	}
	if (!json_equal(m, back))
		fail("message changed over encode/decode");
	if (r.len != 0)
		fail("bytes left after a re-encoded message");
	json_decref(back);
	msg_reader_free(&r);
	free(buf);
}

/* Drains r into res; true when the stream is finished (malformed). */
static bool drain(struct msg_reader *r, struct result *res, size_t stream_len)
{
	for (;;) {
		char err[96];
		json_t *m = (json_t *)1;
		int ret;

		memset(err, 0x55, sizeof(err));
		ret = msg_reader_next(r, &m, err, sizeof(err));
		if (r->len > r->cap || r->len > 2 * (MSG_MAX + 4))
			fail("reader buffer bound");
		if (ret == 0) {
			if (m)
				fail("*out set without a message");
			return false;
		}
		if (ret < 0) {
			if (ret != -EBADMSG || m)
				fail("error other than -EBADMSG, or *out set");
			if (!memchr(err, 0, sizeof(err)) || !err[0])
				fail("error without a terminated reason");
			res->verdict = ret;
			return true;
		}
		if (ret != 1 || !json_is_object(m) || !msg_str(m, "type"))
			fail("message is not an object with a string \"type\"");
		if (msg_str(m, "type") != json_string_value(json_object_get(m, "type")))
			fail("msg_str disagrees with jansson");
		round_trip(m, stream_len);
		if (res->n < OUT_MAX)
			res->msg[res->n] = m;
		else
			json_decref(m);
		res->n++;
	}
}

static void run(const uint8_t *p, size_t n, const uint8_t *splits, size_t nsplits,
		struct result *res)
{
	struct msg_reader r;
	size_t off = 0, i = 0;

	res->n = 0;
	res->verdict = 0;
	msg_reader_init(&r);
	while (off < n) {
		size_t k = n - off;
		int ret;

		if (i < nsplits) {
			size_t want = (size_t)splits[i++] * 16 + 1;

			if (k > want)
				k = want;
		}
		ret = msg_reader_feed(&r, p + off, k);
		if (ret == -EMSGSIZE)
			break;
		if (ret)
			fail("msg_reader_feed: unexpected error");
		off += k;
		if (drain(&r, res, n))
			break;
	}
	msg_reader_free(&r);
	if (r.buf || r.len || r.cap)
		fail("msg_reader_free left state behind");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct result split, whole;
	const uint8_t *splits;
	size_t nsplits, i;

	if (size < 1)
		return 0;
	nsplits = data[0] & SPLITS_MAX;
	if (nsplits > size - 1)
		nsplits = size - 1;
	splits = data + 1;
	data += 1 + nsplits;
	size -= 1 + nsplits;

	run(data, size, splits, nsplits, &split);
	run(data, size, NULL, 0, &whole);
	/* beyond two maximal messages the one-piece feed is refused outright */
	if (size <= 2 * (MSG_MAX + 4) && (split.n != whole.n || split.verdict != whole.verdict))
		fail("split feeding changes the outcome");
	for (i = 0; i < split.n && i < whole.n && i < OUT_MAX; i++)
		if (!json_equal(split.msg[i], whole.msg[i]))
			fail("split feeding changes a message");
	result_free(&split);
	result_free(&whole);

	/* the getters on anything */
	msg_str(NULL, "type");
	msg_int(NULL, "type", 0);
	return 0;
}

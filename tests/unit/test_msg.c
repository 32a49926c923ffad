// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/msg.c, the length-prefixed JSON codec of the control
 * link and relay.sock: encode/decode round trip, delivery split byte by byte,
 * several messages in one feed, every -EBADMSG case (zero or oversized length,
 * invalid JSON, non-object, missing or non-string "type", duplicate keys),
 * the feed bound (-EMSGSIZE), and msg_str/msg_int on missing and wrong-typed
 * members. msg.c has no static functions, so the test links the module's
 * object like the rest of common/ instead of including msg.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"
#include "msg.h"

static int setup(void **state)
{
	struct msg_reader *r = malloc(sizeof(*r));

	if (!r)
		return -1;
	msg_reader_init(r);
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	msg_reader_free(*state);
	free(*state);
	return 0;
}

/* Feeds a length prefix of len followed by the n bytes of body. */
static int feed_raw(struct msg_reader *r, uint32_t len, const char *body, size_t n)
{
	uint8_t pfx[4];
	int ret;

	frame_put32(pfx, len);
	ret = msg_reader_feed(r, pfx, 4);
	if (ret == 0 && n)
		ret = msg_reader_feed(r, body, n);
	return ret;
}

static int feed_str(struct msg_reader *r, const char *body)
{
	return feed_raw(r, (uint32_t)strlen(body), body, strlen(body));
}

/* The reader must reject what is buffered with -EBADMSG and a reason containing needle. */
static void expect_bad(struct msg_reader *r, const char *needle)
{
	char err[256];
	json_t *m = (json_t *)1;

	memset(err, 'Z', sizeof(err));
	assert_int_equal(msg_reader_next(r, &m, err, sizeof(err)), -EBADMSG);
	assert_null(m);
	assert_non_null(memchr(err, 0, sizeof(err)));
	assert_non_null(strstr(err, needle));
}

static void test_round_trip(void **state)
{
	struct msg_reader *r = *state;
	json_t *in, *out = NULL;
	uint8_t *buf;
	size_t len = 0;
	char err[128] = "";

	in = json_pack("{s:s, s:I, s:s, s:{s:i}}", "type", "welcome", "port", (json_int_t)22001,
		       "name", "caf\xc3\xa9", "limits", "max_links", 8);
	assert_non_null(in);
	buf = msg_encode(in, &len);
	assert_non_null(buf);
	assert_true(len > 4);
	assert_int_equal(frame_get32(buf), len - 4);

	assert_int_equal(msg_reader_next(r, &out, err, sizeof(err)), 0);
	assert_int_equal(msg_reader_feed(r, buf, len), 0);
	assert_int_equal(msg_reader_next(r, &out, err, sizeof(err)), 1);
	assert_non_null(out);
	assert_true(json_equal(in, out));
	assert_string_equal(msg_str(out, "type"), "welcome");
	assert_string_equal(msg_str(out, "name"), "caf\xc3\xa9");
	assert_int_equal(msg_int(out, "port", -1), 22001);
	assert_int_equal(r->len, 0);
	json_decref(out);
	assert_int_equal(msg_reader_next(r, &out, err, sizeof(err)), 0);
	assert_null(out);

	json_decref(in);
	free(buf);
}

static void test_encode_too_big(void **state)
{
	char *big = malloc(MSG_MAX + 1);
	json_t *o;
	size_t len = 12345;

	assert_non_null(big);
	memset(big, 'x', MSG_MAX);
	big[MSG_MAX] = 0;
	o = json_pack("{s:s, s:s}", "type", "t", "pad", big);
	assert_non_null(o);
	assert_null(msg_encode(o, &len));
	json_decref(o);
	free(big);
}

static void test_byte_by_byte(void **state)
{
	struct msg_reader *r = *state;
	json_t *in = json_pack("{s:s, s:i}", "type", "tcp_add", "req", 7);
	json_t *out = NULL;
	char err[128];
	uint8_t *buf;
	size_t len, i;

	buf = msg_encode(in, &len);
	assert_non_null(buf);
	for (i = 0; i < len - 1; i++) {
		assert_int_equal(msg_reader_feed(r, buf + i, 1), 0);
		assert_int_equal(msg_reader_next(r, &out, err, sizeof(err)), 0);
		assert_null(out);
	}
	assert_int_equal(msg_reader_feed(r, buf + len - 1, 1), 0);
	assert_int_equal(msg_reader_next(r, &out, err, sizeof(err)), 1);
	assert_true(json_equal(in, out));
	json_decref(out);
	json_decref(in);
	free(buf);
}

static void test_two_in_one(void **state)
{
	struct msg_reader *r = *state;
	json_t *a = json_pack("{s:s}", "type", "heartbeat");
	json_t *b = json_pack("{s:s, s:s}", "type", "error", "reason", "no");
	uint8_t *ba, *bb, *all;
	json_t *out;
	char err[128];
	size_t la, lb;

	ba = msg_encode(a, &la);
	bb = msg_encode(b, &lb);
	assert_non_null(ba);
	assert_non_null(bb);
	all = malloc(la + lb + 3);
	assert_non_null(all);
	memcpy(all, ba, la);
	memcpy(all + la, bb, lb);
	/* and the start of a third one */
	memcpy(all + la + lb, ba, 3);
	assert_int_equal(msg_reader_feed(r, all, la + lb + 3), 0);

	assert_int_equal(msg_reader_next(r, &out, err, sizeof(err)), 1);
	assert_true(json_equal(a, out));
	json_decref(out);
	assert_int_equal(msg_reader_next(r, &out, err, sizeof(err)), 1);
	assert_true(json_equal(b, out));
	json_decref(out);
	assert_int_equal(msg_reader_next(r, &out, err, sizeof(err)), 0);
	assert_int_equal(r->len, 3);

	/* the rest of the third arrives later */
	assert_int_equal(msg_reader_feed(r, ba + 3, la - 3), 0);
	assert_int_equal(msg_reader_next(r, &out, err, sizeof(err)), 1);
	assert_true(json_equal(a, out));
	json_decref(out);

	free(all);
	free(ba);
	free(bb);
	json_decref(a);
	json_decref(b);
}

static void test_zero_length(void **state)
{
	struct msg_reader *r = *state;

	assert_int_equal(feed_raw(r, 0, NULL, 0), 0);
	expect_bad(r, "out of range");
}

static void test_too_long(void **state)
{
	struct msg_reader *r = *state;
	char err[128];
	json_t *m;

	/* MSG_MAX itself is a valid length: the reader waits for the body */
	assert_int_equal(feed_raw(r, MSG_MAX, NULL, 0), 0);
	assert_int_equal(msg_reader_next(r, &m, err, sizeof(err)), 0);
	msg_reader_free(r);

	/* one more is rejected on the prefix alone, before any body */
	msg_reader_init(r);
	assert_int_equal(feed_raw(r, MSG_MAX + 1, NULL, 0), 0);
	expect_bad(r, "out of range");
	msg_reader_free(r);

	msg_reader_init(r);
	assert_int_equal(feed_raw(r, 0xffffffffu, NULL, 0), 0);
	expect_bad(r, "out of range");
	msg_reader_free(r);

	/* a DATA_HELLO sent on the control link */
	msg_reader_init(r);
	assert_int_equal(feed_raw(r, LINK_MAGIC, NULL, 0), 0);
	expect_bad(r, "out of range");
}

static void test_max_size_message(void **state)
{
	struct msg_reader *r = *state;
	char *body = malloc(MSG_MAX);
	static const char head[] = "{\"type\":\"x\",\"pad\":\"";
	char err[128];
	json_t *m;

	assert_non_null(body);
	memset(body, 'p', MSG_MAX);
	memcpy(body, head, strlen(head));
	memcpy(body + MSG_MAX - 2, "\"}", 2);
	assert_int_equal(feed_raw(r, MSG_MAX, body, MSG_MAX), 0);
	assert_int_equal(msg_reader_next(r, &m, err, sizeof(err)), 1);
	assert_int_equal(strlen(msg_str(m, "pad")), MSG_MAX - strlen(head) - 2);
	json_decref(m);
	free(body);
}

static void test_invalid_json(void **state)
{
	struct msg_reader *r = *state;
	static const char *const bad[] = {
	    "{",
	    "{\"type\":\"x\"",
	    "{\"type\":\"x\"} trailing",
	    "{'type':'x'}",
	    "{\"type\":\"\\ud800\"}",
	    "{\"type\":\"\xff\"}",
	    "{\"type\":\"a\\u0000b\"}",
	    "{\"type\":\"x\",}",
	    "nul",
	    " ",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(feed_str(r, bad[i]), 0);
		expect_bad(r, "malformed JSON");
		/* the bad message was consumed */
		assert_int_equal(r->len, 0);
	}
}

static void test_embedded_nul(void **state)
{
	struct msg_reader *r = *state;
	static const char body[] = "{\"type\":\"x\"}\0{}";

	assert_int_equal(feed_raw(r, sizeof(body) - 1, body, sizeof(body) - 1), 0);
	expect_bad(r, "malformed JSON");
}

static void test_not_object(void **state)
{
	struct msg_reader *r = *state;
	static const char *const arrays[] = {"[\"type\",\"x\"]", "[{\"type\":\"x\"}]", "[]"};
	/* jansson refuses a scalar at the top level already (no JSON_DECODE_ANY) */
	static const char *const scalars[] = {"\"type\"", "42", "null", "true"};
	size_t i;

	for (i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
		assert_int_equal(feed_str(r, arrays[i]), 0);
		expect_bad(r, "not an object");
	}
	for (i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
		assert_int_equal(feed_str(r, scalars[i]), 0);
		expect_bad(r, "malformed JSON");
	}
}

static void test_type_member(void **state)
{
	struct msg_reader *r = *state;
	static const char *const bad[] = {
	    "{}",
	    "{\"Type\":\"x\"}",
	    "{\"type\":1}",
	    "{\"type\":null}",
	    "{\"type\":[\"x\"]}",
	    "{\"type\":{\"type\":\"x\"}}",
	    "{\"type\":true}",
	    "{\"inner\":{\"type\":\"x\"}}",
	};
	json_t *m;
	char err[128];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(feed_str(r, bad[i]), 0);
		expect_bad(r, "\"type\"");
	}
	/* an empty string is still a string: naming the type is the caller's job */
	assert_int_equal(feed_str(r, "{\"type\":\"\"}"), 0);
	assert_int_equal(msg_reader_next(r, &m, err, sizeof(err)), 1);
	assert_string_equal(msg_str(m, "type"), "");
	json_decref(m);
}

static void test_duplicate_keys(void **state)
{
	struct msg_reader *r = *state;

	assert_int_equal(feed_str(r, "{\"type\":\"a\",\"type\":\"b\"}"), 0);
	expect_bad(r, "malformed JSON");
	assert_int_equal(feed_str(r, "{\"type\":\"a\",\"x\":{\"k\":1,\"k\":2}}"), 0);
	expect_bad(r, "malformed JSON");
}

/* After a bad message the stream is dead for the caller, but the reader stays sane. */
static void test_bad_then_good(void **state)
{
	struct msg_reader *r = *state;
	json_t *m;
	char err[128];

	assert_int_equal(feed_str(r, "{\"type\":2}"), 0);
	assert_int_equal(feed_str(r, "{\"type\":\"ok\"}"), 0);
	expect_bad(r, "\"type\"");
	assert_int_equal(msg_reader_next(r, &m, err, sizeof(err)), 1);
	assert_string_equal(msg_str(m, "type"), "ok");
	json_decref(m);
}

static void test_feed_overflow(void **state)
{
	struct msg_reader *r = *state;
	const size_t limit = 2 * (MSG_MAX + 4);
	uint8_t *junk = calloc(1, limit + 1);
	size_t cap;

	assert_non_null(junk);
	/* all at once */
	assert_int_equal(msg_reader_feed(r, junk, limit + 1), -EMSGSIZE);
	assert_int_equal(r->len, 0);
	/* up to the limit exactly is fine, one more byte is not */
	assert_int_equal(msg_reader_feed(r, junk, limit - 1), 0);
	assert_int_equal(msg_reader_feed(r, junk, 1), 0);
	assert_int_equal(r->len, limit);
	cap = r->cap;
	assert_int_equal(msg_reader_feed(r, junk, 1), -EMSGSIZE);
	assert_int_equal(r->len, limit);
	assert_int_equal(r->cap, cap);
	/* a zero-byte feed is always fine */
	assert_int_equal(msg_reader_feed(r, junk, 0), 0);
	free(junk);
}

/* Two maximal messages fit in the buffer at once. */
static void test_feed_two_max(void **state)
{
	struct msg_reader *r = *state;
	char *body = malloc(MSG_MAX);
	char err[128];
	json_t *m;
	int i;

	assert_non_null(body);
	memset(body, ' ', MSG_MAX);
	memcpy(body, "{\"type\":\"x\"}", 12);
	for (i = 0; i < 2; i++)
		assert_int_equal(feed_raw(r, MSG_MAX, body, MSG_MAX), 0);
	assert_int_equal(msg_reader_feed(r, "", 1), -EMSGSIZE);
	for (i = 0; i < 2; i++) {
		assert_int_equal(msg_reader_next(r, &m, err, sizeof(err)), 1);
		json_decref(m);
	}
	assert_int_equal(r->len, 0);
	free(body);
}

static void test_getters(void **state)
{
	json_t *o =
	    json_pack("{s:s, s:i, s:f, s:s, s:b, s:n, s:[i], s:I}", "type", "t", "int", -5, "real",
		      1.5, "numstr", "12", "bool", 1, "null", "arr", 1, "big", (json_int_t)1 << 40);

	assert_non_null(o);
	assert_string_equal(msg_str(o, "type"), "t");
	assert_null(msg_str(o, "missing"));
	assert_null(msg_str(o, "int"));
	assert_null(msg_str(o, "null"));
	assert_null(msg_str(o, "arr"));
	assert_null(msg_str(o, "bool"));

	assert_int_equal(msg_int(o, "int", 99), -5);
	assert_int_equal(msg_int(o, "big", 0), 1LL << 40);
	assert_int_equal(msg_int(o, "missing", 99), 99);
	assert_int_equal(msg_int(o, "real", 99), 99);
	assert_int_equal(msg_int(o, "numstr", 99), 99);
	assert_int_equal(msg_int(o, "bool", 99), 99);
	assert_int_equal(msg_int(o, "null", 99), 99);
	assert_int_equal(msg_int(o, "type", -1), -1);

	/* a non-object or NULL holder acts as if every member is missing */
	assert_null(msg_str(NULL, "type"));
	assert_int_equal(msg_int(NULL, "x", 7), 7);
	assert_null(msg_str(json_object_get(o, "arr"), "type"));
	assert_int_equal(msg_int(json_object_get(o, "type"), "x", 7), 7);
	json_decref(o);
}

static void test_free_twice(void **state)
{
	struct msg_reader r;

	msg_reader_init(&r);
	assert_int_equal(msg_reader_feed(&r, "abc", 3), 0);
	msg_reader_free(&r);
	msg_reader_free(&r);
	msg_reader_free(NULL);
	assert_null(r.buf);
}

/* The outbound queue: push, bound, partial flush into a socket, order kept. */
static void test_outq(void **state)
{
	struct msg_outq q = {0};
	struct msg_reader r;
	json_t *a = json_pack("{s:s, s:i}", "type", "a", "n", 1);
	json_t *b = json_pack("{s:s, s:s}", "type", "b", "pad", "xxxxxxxxxxxxxxxx");
	uint8_t buf[256];
	char err[64];
	json_t *m;
	int sv[2];
	ssize_t n;

	(void)state;
	assert_int_equal(msg_outq_push(&q, a, 1024), 0);
	assert_int_equal(msg_outq_push(&q, b, 1024), 0);
	size_t queued = q.len;
	/* a bound that the next message would cross */
	assert_int_equal(msg_outq_push(&q, b, queued + 4), -ENOBUFS);
	assert_int_equal(q.len, queued);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(msg_outq_flush(&q, sv[0]), 0);
	assert_int_equal(q.len, 0);
	n = read(sv[1], buf, sizeof(buf));
	assert_int_equal((size_t)n, queued);
	msg_reader_init(&r);
	assert_int_equal(msg_reader_feed(&r, buf, (size_t)n), 0);
	assert_int_equal(msg_reader_next(&r, &m, err, sizeof(err)), 1);
	assert_string_equal(msg_str(m, "type"), "a");
	json_decref(m);
	assert_int_equal(msg_reader_next(&r, &m, err, sizeof(err)), 1);
	assert_string_equal(msg_str(m, "type"), "b");
	json_decref(m);
	msg_reader_free(&r);
	/* a closed peer is a write error, not a hang */
	assert_int_equal(msg_outq_push(&q, a, 1024), 0);
	close(sv[1]);
	assert_int_equal(msg_outq_flush(&q, sv[0]), -EPIPE);
	close(sv[0]);
	msg_outq_free(&q);
	msg_outq_free(&q);
	json_decref(a);
	json_decref(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	    cmocka_unit_test(test_encode_too_big),
	    cmocka_unit_test_setup_teardown(test_byte_by_byte, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_in_one, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_zero_length, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_too_long, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_max_size_message, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_invalid_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_embedded_nul, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_object, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_type_member, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_duplicate_keys, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_then_good, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_feed_overflow, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_feed_two_max, setup, teardown),
	    cmocka_unit_test(test_getters),
	    cmocka_unit_test(test_free_twice),
	    cmocka_unit_test(test_outq),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/log.c: log_escape in text and JSON form (control
 * bytes, ESC sequences, a forged second line, backslashes, UTF-8 valid and
 * not, truncation that never splits an escape), whole log lines read back
 * from stderr (one line per message whatever the message holds), and the
 * rate limiter (the first message, then one summary with the count).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"

static void esc_text(const char *in, const char *want)
{
	char out[256];

	log_escape(in, strlen(in), out, sizeof(out), false);
	assert_string_equal(out, want);
}

static void test_escape_text(void **state)
{
	esc_text("plain host-1.example", "plain host-1.example");
	esc_text("a\nb", "a\\x0ab");
	esc_text("x\r\n2026-01-01T00:00:00.000Z info nave-controld: forged",
		 "x\\x0d\\x0a2026-01-01T00:00:00.000Z info nave-controld: forged");
	esc_text("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m");
	esc_text("back\\slash", "back\\\\slash");
	esc_text("caf\xc3\xa9", "caf\xc3\xa9");
	esc_text("c1 \xc2\x9b"
		 "31m",
		 "c1 \\xc2\\x9b31m");
	esc_text("bad\xff", "bad\\xff");
	/* U+202E RIGHT-TO-LEFT OVERRIDE, U+2028 LINE SEPARATOR, U+200B ZERO WIDTH SPACE */
	esc_text("a\xe2\x80\xae"
		 "b\xe2\x80\xa8"
		 "c\xe2\x80\x8b",
		 "a\\xe2\\x80\\xaeb\\xe2\\x80\\xa8c\\xe2\\x80\\x8b");
	esc_text("\x7f\x01", "\\x7f\\x01");
	esc_text("quote\"", "quote\"");
}

static void esc_json(const char *in, const char *want)
{
	char out[256], doc[300];
	json_error_t e;
	json_t *j;

	log_escape(in, strlen(in), out, sizeof(out), true);
	assert_string_equal(out, want);
	/* whatever the input, the escaped text is a valid JSON string body */
	snprintf(doc, sizeof(doc), "\"%s\"", out);
	j = json_loads(doc, JSON_DECODE_ANY, &e);
	assert_non_null(j);
	json_decref(j);
}

static void test_escape_json(void **state)
{
	esc_json("a\nb", "a\\u000ab");
	esc_json("say \"hi\"", "say \\\"hi\\\"");
	esc_json("caf\xc3\xa9", "caf\xc3\xa9");
	esc_json("\xc2\x9b"
		 "31m",
		 "\\u009b31m"); /* C1 CSI */
	esc_json("bad\xff\xc3", "bad\\\\xff\\\\xc3");
	esc_json("\xed\xa0\x80", "\\\\xed\\\\xa0\\\\x80"); /* a surrogate */
	esc_json("\x1b", "\\u001b");
	esc_json("x\xe2\x80\xaey", "x\\u202ey");
}

static void test_esc_str(void **state)
{
	char out[16];

	assert_string_equal(log_esc_str(NULL, out, sizeof(out)), "-");
	assert_string_equal(log_esc_str("ok\x1b", out, sizeof(out)), "ok\\x1b");
	assert_string_equal(log_esc_str("0123456789abcdefgh", out, sizeof(out)), "0123456789ab...");
	assert_string_equal(log_esc_str("0123456789a\n", out, sizeof(out)), "0123456789a...");
}

static void test_escape_truncates_whole_escapes(void **state)
{
	char out[8];
	size_t n;

	n = log_escape("ab\ncd", 5, out, sizeof(out), false);
	/* "ab\x0a" is 6 bytes, "c" fits, "d" would not leave room for the NUL */
	assert_int_equal(n, 7);
	assert_string_equal(out, "ab\\x0ac");
	n = log_escape("\n\n", 2, out, 6, false);
	assert_int_equal(n, 4);
	assert_string_equal(out, "\\x0a");
}

/* Runs fn with stderr going to a temporary file; returns what was written. */
static char *capture(void (*fn)(void))
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	char *buf = calloc(1, 65536);
	size_t n;

	assert_non_null(tmp);
	assert_non_null(buf);
	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(buf, 1, 65535, tmp);
	buf[n] = 0;
	fclose(tmp);
	return buf;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void log_forged(void)
{
	log_info("auth refused (host %s): %s",
		 "evil\n2026-11-30T00:00:00.000Z info nave-controld: tunnel t-x online",
		 "\x1b]0;title\x07");
}

static void test_line_cannot_be_forged(void **state)
{
	char *out;

	log_init("test", NLOG_INFO, false);
	out = capture(log_forged);
	assert_int_equal(count_lines(out), 1);
	assert_null(strchr(out, '\x1b'));
	assert_non_null(strstr(out, "evil\\x0a2026"));
	free(out);

	log_init("test", NLOG_INFO, true);
	out = capture(log_forged);
	assert_int_equal(count_lines(out), 1);
	{
		json_error_t e;
		json_t *j = json_loads(out, 0, &e);

		assert_non_null(j);
		assert_non_null(strstr(json_string_value(json_object_get(j, "msg")), "evil\n2026"));
		json_decref(j);
	}
	free(out);
	log_init("test", NLOG_INFO, false);
}

static void log_long(void)
{
	char big[3000];

	memset(big, '\n', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	log_warn("%s", big);
}

static void test_long_line_stays_one_line(void **state)
{
	char *out = capture(log_long);

	assert_int_equal(count_lines(out), 1);
	free(out);
}

static void flood(void)
{
	for (int i = 0; i < 1000; i++)
		log_every(NLOG_WARN, "fd %d: handshake timed out", i);
}

static void flush_later(void)
{
	usleep(80 * 1000);
	log_limit_flush();
	log_limit_flush(); /* nothing more to say */
}

static void test_rate_limit(void **state)
{
	char *out;

	log_limit_window(50);
	out = capture(flood);
	assert_int_equal(count_lines(out), 1);
	assert_non_null(strstr(out, "fd 0: handshake timed out"));
	free(out);
	out = capture(flush_later);
	assert_int_equal(count_lines(out), 1);
	assert_non_null(strstr(out, "999 more like this"));
	assert_non_null(strstr(out, "fd 999: handshake timed out"));
	free(out);
	/* a new window: the next message is written at once */
	out = capture(flood);
	assert_int_equal(count_lines(out), 1);
	free(out);
	log_limit_window(10000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape_text),
	    cmocka_unit_test(test_escape_json),
	    cmocka_unit_test(test_escape_truncates_whole_escapes),
	    cmocka_unit_test(test_esc_str),
	    cmocka_unit_test(test_line_cannot_be_forged),
	    cmocka_unit_test(test_long_line_stays_one_line),
	    cmocka_unit_test(test_rate_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

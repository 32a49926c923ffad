// SPDX-License-Identifier: Apache-2.0
/*
 * Text or JSON log lines on stderr, written with one write(2) each. Every
 * message is escaped as a whole (log_escape), so a peer's string can neither
 * forge a line nor reach a terminal raw. Rate-limited causes keep a window
 * each; a global mutex guards them (only taken when such a message is
 * logged or a summary is due, never on a data path).
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define MSG_MAX	 1024
#define LINE_MAX (4 * MSG_MAX + 160)

static const char *log_prog = "nave";
/* atomic: a reload (SIGHUP) changes them while other threads log */
static _Atomic int log_level = NLOG_INFO;
static _Atomic bool log_json;
static const char *const log_names[] = {"debug", "info", "warn", "error"};

static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;
static struct log_limit *limit_head;
static _Atomic unsigned limit_pending; /* windows with suppressed messages */
static unsigned limit_ms = 10000;

void log_init(const char *prog, int level, bool json)
{
	log_prog = prog;
	log_level = level;
	log_json = json;
}

int log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, log_names[i]))
			return i;
	return -1;
}

bool log_enabled(int level)
{
	return level >= log_level;
}

static void hex_byte(char *out, unsigned char c)
{
	static const char digits[] = "0123456789abcdef";

	out[0] = '\\';
	out[1] = 'x';
	out[2] = digits[c >> 4];
	out[3] = digits[c & 15];
}

/* log_escape, telling how many input bytes went out (*used). */
static size_t escape(const char *in, size_t n, char *out, size_t outlen, bool json, size_t *used)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t i = 0, j = 0;

	*used = 0;
	if (!outlen)
		return 0;
	while (i < n) {
		char e[8];
		size_t elen, take = 1;
		uint32_t cp;

		if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\' && !(json && s[i] == '"')) {
			e[0] = (char)s[i];
			elen = 1;
		} else if (s[i] == '\\' || (json && s[i] == '"')) {
			e[0] = '\\';
			e[1] = (char)s[i];
			elen = 2;
		} else if (json && (s[i] < 0x20 || s[i] == 0x7f)) {
			elen = (size_t)snprintf(e, sizeof(e), "\\u%04x", s[i]);
		} else if ((take = utf8_decode(s + i, n - i, &cp)) > 0 && utf8_printable(cp)) {
			memcpy(e, s + i, take);
			elen = take;
		} else if (json && take > 0) { /* C1 controls, format characters */
			elen = (size_t)snprintf(e, sizeof(e), "\\u%04x", (unsigned)cp);
		} else {
			/* a control byte, or one of invalid UTF-8 (in JSON: as text) */
			take = 1;
			if (json) {
				e[0] = '\\';
				hex_byte(e + 1, s[i]);
				elen = 5;
			} else {
				hex_byte(e, s[i]);
				elen = 4;
			}
		}
		if (j + elen >= outlen)
			break;
		memcpy(out + j, e, elen);
		j += elen;
		i += take;
	}
	out[j] = 0;
	*used = i;
	return j;
}

size_t log_escape(const char *in, size_t n, char *out, size_t outlen, bool json)
{
	size_t used;

	return escape(in, n, out, outlen, json, &used);
}

const char *log_esc_str(const char *s, char *buf, size_t len)
{
	size_t n, k, used;

	if (len < 4) {
		if (len)
			buf[0] = 0;
		return buf;
	}
	if (!s)
		s = "-";
	n = strlen(s);
	k = escape(s, n, buf, len - 3, false, &used);
	if (used < n)
		memcpy(buf + k, "...", 4);
	return buf;
}

/* Formats and writes one line of an already formatted (unescaped) message. */
static void log_write(int level, const char *msg)
{
	char line[LINE_MAX], esc[4 * MSG_MAX + 8], when[32];
	struct timespec ts;
	struct tm tm;
	bool json = log_json; /* one format per line, whatever a reload does */
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	log_escape(msg, strlen(msg), esc, sizeof(esc), json);
	if (json)
		n = snprintf(
		    line, sizeof(line),
		    "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"prog\":\"%s\",\"msg\":\"%s\"}\n",
		    when, ts.tv_nsec / 1000000, log_names[level], log_prog, esc);
	else
		n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s: %s\n", when,
			     ts.tv_nsec / 1000000, log_names[level], log_prog, esc);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 1) {
		/* cut, but keep the line a line (and JSON closed) */
		n = (int)sizeof(line) - 1;
		if (json)
			memcpy(line + n - 3, "\"}\n", 3);
		else
			line[n - 1] = '\n';
	}
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

void log_msg(int level, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;

	if (level < log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_write(level, msg);
}

void log_limit_window(unsigned ms)
{
	limit_ms = ms;
}

/* The summary of l's window; called with limit_lock held. */
static void limit_summary(struct log_limit *l)
{
	char msg[MSG_MAX];

	snprintf(msg, sizeof(msg), "%llu more like this in the last %us: %s",
		 (unsigned long long)l->suppressed, (limit_ms + 999) / 1000, l->last);
	log_write(l->level, msg);
	l->suppressed = 0;
	atomic_fetch_sub(&limit_pending, 1);
}

void log_limited(struct log_limit *l, int level, const char *fmt, ...)
{
	uint64_t now = now_ms();
	char msg[MSG_MAX];
	va_list ap;

	if (level < log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&limit_lock);
	if (!l->linked) {
		l->linked = true;
		l->next = limit_head;
		limit_head = l;
	}
	if (now >= l->until) {
		if (l->suppressed)
			limit_summary(l);
		l->until = now + limit_ms;
		pthread_mutex_unlock(&limit_lock);
		log_write(level, msg);
		return;
	}
	if (l->suppressed++ == 0)
		atomic_fetch_add(&limit_pending, 1);
	l->level = level;
	str_copy(l->last, sizeof(l->last), msg);
	pthread_mutex_unlock(&limit_lock);
}

void log_limit_flush(void)
{
	uint64_t now;

	if (!atomic_load_explicit(&limit_pending, memory_order_relaxed))
		return;
	now = now_ms();
	pthread_mutex_lock(&limit_lock);
	for (struct log_limit *l = limit_head; l; l = l->next) {
		if (l->suppressed && now >= l->until) {
			limit_summary(l);
			l->until = 0;
		}
	}
	pthread_mutex_unlock(&limit_lock);
}

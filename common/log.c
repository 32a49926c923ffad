// SPDX-License-Identifier: Apache-2.0
/* Text or JSON log lines on stderr, written with one write(2) each. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "nave";
static int log_level = NLOG_INFO;
static bool log_json;
static const char *const log_names[] = {"debug", "info", "warn", "error"};

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

void log_msg(int level, const char *fmt, ...)
{
	char msg[1024], line[2304];
	struct timespec ts;
	struct tm tm;
	char when[32];
	va_list ap;
	int n;

	if (level < log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	if (log_json) {
		char esc[2048];
		size_t j = 0;

		for (size_t i = 0; msg[i] && j < sizeof(esc) - 7; i++) {
			unsigned char c = (unsigned char)msg[i];

			if (c == '"' || c == '\\') {
				esc[j++] = '\\';
				esc[j++] = (char)c;
			} else if (c < 0x20) {
				j += (size_t)snprintf(esc + j, sizeof(esc) - j, "\\u%04x", c);
			} else {
				esc[j++] = (char)c;
			}
		}
		esc[j] = 0;
		n = snprintf(
		    line, sizeof(line),
		    "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"prog\":\"%s\",\"msg\":\"%s\"}\n",
		    when, ts.tv_nsec / 1000000, log_names[level], log_prog, esc);
	} else {
		n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s: %s\n", when,
			     ts.tv_nsec / 1000000, log_names[level], log_prog, msg);
	}
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging to stderr as text or JSON lines; thread-safe (one write per line).
 *
 * Every line goes through log_escape(), so nothing a peer sent (a host name,
 * a reason, a message type) can start a line of its own or drive a terminal:
 * text lines show control characters and invalid UTF-8 as \xHH (and a
 * backslash as \\), JSON lines are valid JSON whatever the input.
 *
 * Messages a peer can trigger over and over (a handshake timeout, a refused
 * request) go through log_limited(): per call site, the first one in a
 * window is written, the rest are counted, and one summary line reports the
 * count when the window is over.
 */
#ifndef NAVE_LOG_H
#define NAVE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { NLOG_DEBUG, NLOG_INFO, NLOG_WARN, NLOG_ERROR };

/* prog is a static string; level one of NLOG_*; json selects JSON lines. */
void log_init(const char *prog, int level, bool json);
/* Parses "debug|info|warn|error"; returns the level or -1. */
int log_level_parse(const char *s);
/* True when messages of this level are written. */
bool log_enabled(int level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(NLOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(NLOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(NLOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(NLOG_ERROR, __VA_ARGS__)

/*
 * Escapes n bytes of in into out (always NUL-terminated, cut short when out
 * is full; never splits an escape). Printable ASCII and printable UTF-8 stay
 * as they are; control characters (C0, DEL, C1) and bytes of invalid UTF-8
 * become \xHH and a backslash \\. json: for a JSON string body instead
 * (quotes and backslashes escaped, controls as \u00XX, invalid bytes as the
 * text \xHH). Returns the length written.
 */
size_t log_escape(const char *in, size_t n, char *out, size_t outlen, bool json);
/*
 * s (NULL: "-") escaped like a text log line into buf, for printing to a
 * terminal; "..." marks a cut. Returns buf.
 */
const char *log_esc_str(const char *s, char *buf, size_t len);

/* One rate-limited cause: a static instance per call site (zero-initialised). */
struct log_limit {
	uint64_t until;	     /* end of the current window (ms); 0: no window */
	uint64_t suppressed; /* messages counted, not written, in this window */
	int level;
	char last[192]; /* the latest suppressed message, for the summary */
	struct log_limit *next;
	bool linked;
};

/*
 * Writes the message unless another one of the same cause was written less
 * than the window (10 s) ago; then it is only counted.
 */
void log_limited(struct log_limit *l, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes the summary of every window that ended; call it every second or so. */
void log_limit_flush(void);
/* The window length in ms (tests shorten it). */
void log_limit_window(unsigned ms);

#define log_every(level, ...)                                                                      \
	do {                                                                                       \
		static struct log_limit log_ll_;                                                   \
		log_limited(&log_ll_, level, __VA_ARGS__);                                         \
	} while (0)

#endif

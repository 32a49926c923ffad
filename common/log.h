/* SPDX-License-Identifier: Apache-2.0 */
/* Logging to stderr as text or JSON lines; thread-safe (one write per line). */
#ifndef NAVE_LOG_H
#define NAVE_LOG_H

#include <stdbool.h>

enum { NLOG_DEBUG, NLOG_INFO, NLOG_WARN, NLOG_ERROR };

/* prog is a static string; level one of NLOG_*; json selects JSON lines. */
void log_init(const char *prog, int level, bool json);
/* Parses "debug|info|warn|error"; returns the level or -1. */
int log_level_parse(const char *s);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(NLOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(NLOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(NLOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(NLOG_ERROR, __VA_ARGS__)

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * controld's Prometheus endpoint ([metrics] listen): GET /metrics in the text
 * exposition format 0.0.4 on plain HTTP, a second libmicrohttpd daemon in
 * external-select mode driven by controld's poll loop (no threads), with its
 * own connection limits and timeouts. The figures come from the store
 * (tunnels, ports), relayd's latest stats message (relaylink) and the admin
 * API's request latency, which api.c reports here. Scrapes never wait on
 * relayd: they render what controld holds.
 */
#ifndef NAVE_METRICS_H
#define NAVE_METRICS_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;
struct store;
struct relaylink;
struct cfg_server;

/*
 * Opens the listener of cfg->metrics_listen (HOST:PORT; a name is resolved
 * once, the first address that binds is kept) and starts serving. Empty
 * metrics_listen: *out is a struct that only records API latency (no
 * listener). st, rl and cfg must outlive it. 0, or -errno with a one-line
 * reason in err.
 */
int metrics_start(struct metrics **out, const struct cfg_server *cfg, struct store *st,
		  struct relaylink *rl, char *err, size_t errlen);
/* Closes the listener and every connection; NULL is fine. */
void metrics_stop(struct metrics *m);

/* per-rule series at most (nave_rule_bytes_total, two each) */
#define METRICS_RULES_MAX 4096
#define METRICS_POLLFDS	  40 /* the listener and METRICS_CONN_MAX connections */
#define METRICS_CONN_MAX  32
/* As api_pollfds / api_process (api.h), for the metrics listener; NULL adds nothing. */
int metrics_pollfds(struct metrics *m, struct pollfd *pfd, int max, int *timeout_ms);
void metrics_process(struct metrics *m, const struct pollfd *pfd, int n);

/*
 * One admin API request answered: method (GET, POST, ... ; anything else
 * counts as "other"), route the pattern of api.c's route table it matched (an
 * id segment as its '*'; NULL: none matched) and the microseconds from its
 * head to its answer. Kept in a histogram per (method, route) with fixed
 * buckets, at most METRICS_ROUTES_MAX series (the rest go to route
 * "(other)"). NULL m: ignored.
 */
#define METRICS_ROUTES_MAX 96
void metrics_api_observe(struct metrics *m, const char *method, const char *route, uint64_t usec);
/* A monotonic clock in microseconds, for metrics_api_observe. */
uint64_t metrics_now_us(void);

/* --- the exposition text (also for tests) --- */

/* A growing text buffer; failed is set (and the text cut) when memory runs out or max is hit. */
struct prom_buf {
	char *p;
	size_t len, cap, max;
	bool failed;
};
void prom_free(struct prom_buf *b);
/* A label value escaped per the format (backslash, double quote, line feed). */
void prom_escape(struct prom_buf *b, const char *s);

/*
 * Per-rule bytes: one row per (tunnel, rule) with the bytes each way. The
 * family nave_rule_bytes_total{tunnel, rule, direction} is written from a list;
 * nothing (not even the header) when n is 0. Strings are escaped.
 */
struct metrics_rule_bytes {
	const char *tunnel;
	const char *rule;
	uint64_t bytes_in, bytes_out;
};
void metrics_rule_bytes(struct prom_buf *b, const struct metrics_rule_bytes *rows, size_t n);

/* The whole /metrics body as served now (a scrape); false when out of memory. */
bool metrics_render(struct metrics *m, struct prom_buf *b);

#endif

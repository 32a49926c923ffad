// SPDX-License-Identifier: Apache-2.0
/*
 * controld's Prometheus endpoint (metrics.h): GET/HEAD /metrics on [metrics]
 * listen in the text exposition format 0.0.4. libmicrohttpd runs without
 * threads, as the admin API's does: controld's loop polls the fds it reports
 * and calls MHD_run_from_select, so a scrape reads the store and relayd's
 * latest stats on the loop's thread, without locks and without asking relayd
 * anything (relayd sends stats every 2 s on its own). Only GET and HEAD of
 * /metrics answer 200; another path is 404, another method on /metrics 405.
 * At most METRICS_CONN_MAX connections (8 per source address), 10 s to send a
 * request, 16 KiB for its head: a larger head gets MHD's 414/431 and the
 * connection closes.
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config/cfg.h"
#include "ctl/mhdpoll.h"
#include "ctl/relaylink.h"
#include "ctl/store.h"
#include "log.h"
#include "util.h"
#include "valid.h"

#define CONN_TIMEOUT_S 10
#define PER_IP_MAX     8
#define HEAD_MEM_MAX   (16 * 1024) /* MHD's per-connection memory: the request head */
#define BODY_MAX       (16u << 20) /* a body larger than this is a 500, never a cut text */
#define LABEL_MAX      64	   /* label values taken from relayd's stats */
#define METHOD_MAX     7
#define ROUTE_MAX      63
#define WORKERS_MAX    256

/* the latency histogram's upper bounds, in microseconds and as the le label */
static const uint64_t lat_us[] = {500,	 1000,	 2500,	 5000,	 10000,	  25000,
				  50000, 100000, 250000, 500000, 1000000, 2500000};
static const char *const lat_le[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
				     "0.05",   "0.1",	"0.25",	  "0.5",   "1",	   "2.5"};
#define LAT_N (sizeof(lat_us) / sizeof(lat_us[0]))

struct lat_series {
	char method[METHOD_MAX + 1];
	char route[ROUTE_MAX + 1];
	uint64_t bucket[LAT_N]; /* not cumulative: the request fell in this one */
	uint64_t count, sum_us;
};

struct metrics {
	struct MHD_Daemon *mhd; /* NULL: no listener */
	struct store *st;
	struct relaylink *rl;
	const struct cfg_server *cfg;
	double started;				       /* Unix seconds */
	struct lat_series lat[METRICS_ROUTES_MAX + 1]; /* the last one: route "(other)" */
	size_t nlat;
	uint64_t scrapes;
};

uint64_t metrics_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---------- the text ---------- */

static void put(struct prom_buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((b->max && cap > b->max) || !(p = realloc(b->p, cap))) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void puts_(struct prom_buf *b, const char *s)
{
	put(b, s, strlen(s));
}

void prom_free(struct prom_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void prom_escape(struct prom_buf *b, const char *s)
{
	for (const char *p = s; *p; p++) {
		if (*p == '\\')
			puts_(b, "\\\\");
		else if (*p == '"')
			puts_(b, "\\\"");
		else if (*p == '\n')
			puts_(b, "\\n");
		else
			put(b, p, 1);
	}
}

/* A family: its # HELP and # TYPE lines go out before its first sample. */
struct fam {
	const char *name, *type, *help;
	bool head;
};

#define FAM(n, t, h)                                                                               \
	{                                                                                          \
		.name = (n), .type = (t), .help = (h)                                              \
	}

/*
 * One sample: name + suffix, labels (kv: n pairs of name and value), value
 * (already text: an integer or a decimal).
 */
static void sample(struct prom_buf *b, struct fam *f, const char *suffix, const char *const *kv,
		   size_t n, const char *value)
{
	if (!f->head) {
		const char *parts[] = {"# HELP ", f->name, " ",	    f->help, "\n# TYPE ",
				       f->name,	  " ",	   f->type, "\n"};

		for (size_t i = 0; i < ARRAY_SIZE(parts); i++)
			puts_(b, parts[i]);
		f->head = true;
	}
	puts_(b, f->name);
	puts_(b, suffix);
	for (size_t i = 0; i < n; i++) {
		puts_(b, i ? "," : "{");
		puts_(b, kv[2 * i]);
		puts_(b, "=\"");
		prom_escape(b, kv[2 * i + 1]);
		puts_(b, "\"");
	}
	if (n)
		puts_(b, "}");
	puts_(b, " ");
	puts_(b, value);
	puts_(b, "\n");
}

static void sample_u(struct prom_buf *b, struct fam *f, const char *const *kv, size_t n, uint64_t v)
{
	char t[24];

	snprintf(t, sizeof(t), "%" PRIu64, v);
	sample(b, f, "", kv, n, t);
}

/* A sample with no label, or one. */
static void sample0(struct prom_buf *b, struct fam *f, uint64_t v)
{
	sample_u(b, f, NULL, 0, v);
}

static void sample1(struct prom_buf *b, struct fam *f, const char *k, const char *val, uint64_t v)
{
	const char *kv[2] = {k, val};

	sample_u(b, f, kv, 1, v);
}

void metrics_rule_bytes(struct prom_buf *b, const struct metrics_rule_bytes *rows, size_t n)
{
	struct fam f = FAM("nave_rule_bytes_total", "counter",
			   "Bytes relayed per tunnel rule: in from public clients to the tunnel, "
			   "out from the tunnel to them.");

	for (size_t i = 0; i < n; i++) {
		const char *kv[6] = {"tunnel",	   rows[i].tunnel, "rule",
				     rows[i].rule, "direction",	   "in"};

		sample_u(b, &f, kv, 3, rows[i].bytes_in);
		kv[5] = "out";
		sample_u(b, &f, kv, 3, rows[i].bytes_out);
	}
}

/* The store's per-rule totals (connection records, schema v9), at most METRICS_RULES_MAX. */
struct rule_rows {
	struct store_rule_traffic *t;
	size_t n, cap;
};

static int rule_row(const void *row, void *arg)
{
	struct rule_rows *r = arg;

	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct store_rule_traffic *t;

		if (cap > METRICS_RULES_MAX)
			cap = METRICS_RULES_MAX;
		if (r->n == cap)
			return 0;
		t = realloc(r->t, cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		r->t = t;
		r->cap = cap;
	}
	r->t[r->n++] = *(const struct store_rule_traffic *)row;
	return 0;
}

static void render_rule_bytes(struct metrics *m, struct prom_buf *b)
{
	struct rule_rows r = {0};
	struct metrics_rule_bytes *rows = NULL;

	if (store_list(m->st, &store_rule_traffics, NULL, 0, METRICS_RULES_MAX, rule_row, &r,
		       NULL) < 0 ||
	    (r.n && !(rows = calloc(r.n, sizeof(*rows))))) {
		log_every(NLOG_WARN, "metrics: per-rule totals not read from the store");
		r.n = 0;
	}
	for (size_t i = 0; i < r.n; i++) {
		rows[i].tunnel = r.t[i].tunnel_id;
		rows[i].rule = r.t[i].rule;
		rows[i].bytes_in = (uint64_t)(r.t[i].bytes_in > 0 ? r.t[i].bytes_in : 0);
		rows[i].bytes_out = (uint64_t)(r.t[i].bytes_out > 0 ? r.t[i].bytes_out : 0);
	}
	metrics_rule_bytes(b, rows, r.n);
	free(rows);
	free(r.t);
}

/* ---------- what relayd said, checked ---------- */

/* A counter member: a non-negative integer. */
static bool cnt(const json_t *o, const char *key, uint64_t *v)
{
	const json_t *j = json_object_get(o, key);

	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return false;
	*v = (uint64_t)json_integer_value(j);
	return true;
}

/* A text member fit for a label value (printable UTF-8, at most LABEL_MAX bytes), else NULL. */
static const char *text(const json_t *o, const char *key)
{
	const json_t *j = json_object_get(o, key);
	const char *s = json_string_value(j);

	if (!s || strlen(s) != json_string_length(j) || !valid_str(s, VALID_TEXT, LABEL_MAX))
		return NULL;
	return s;
}

static void put_cnt(struct prom_buf *b, struct fam *f, const json_t *o, const char *key)
{
	uint64_t v;

	if (cnt(o, key, &v))
		sample0(b, f, v);
}

/* A family with one label whose values map to members of o. */
static void put_by(struct prom_buf *b, struct fam *f, const json_t *o, const char *label,
		   const char *const *map, size_t n)
{
	uint64_t v;

	for (size_t i = 0; i < n; i++)
		if (cnt(o, map[2 * i + 1], &v))
			sample1(b, f, label, map[2 * i], v);
}

static void render_relay(struct prom_buf *b, const json_t *s, const json_t *counters)
{
	static const char *const refused[] = {
	    "per_source", "refused_per_source", "max_links", "refused_max_links",
	    "fd_limit",	  "refused_fd_limit",	"firewall",  "firewall_refused"};
	static const char *const dropped[] = {"idle_timeout", "idle_timeouts", "pending_timeout",
					      "pending_timeouts"};
	static const char *const bytes[] = {"in", "bytes_in", "out", "bytes_out"};
	static const char *const links[] = {"ktls", "links_ktls", "userspace_tls", "links_tls"};
	static const char *const answers[] = {
	    "bad_request",  "bad_request",  "no_host",	    "no_host",
	    "unknown_host", "unknown_host", "offline",	    "offline",
	    "too_large",    "too_large",    "timeout",	    "timeout",
	    "busy",	    "busy",	    "unauthorized", "unauthorized"};
	static const char *const maps[] = {"ports", "ports", "deny", "deny", "allow", "allow"};
	static const char *const xdrops[] = {
	    "deny",	   "deny",     "not_allowed",	 "not_allowed", "unallocated",
	    "unallocated", "syn_rate", "syn_rate_drops", "malformed",	"malformed"};
	struct fam info =
	    FAM("nave_relayd_info", "gauge",
		"relayd's modes: kTLS (ktls) and port steering (steering); always 1.");
	struct fam start = FAM("nave_relayd_start_time_seconds", "gauge",
			       "When the connected relayd started, Unix seconds.");
	struct fam workers = FAM("nave_relayd_workers", "gauge", "relayd's worker threads.");
	struct fam copen = FAM("nave_connections_open", "gauge",
			       "Public connections open (relayed or waiting for a data link).");
	struct fam ctot = FAM("nave_connections_total", "counter",
			      "Public connections accepted since relayd started.");
	struct fam by = FAM("nave_relayed_bytes_total", "counter",
			    "Bytes relayed: in from public clients to tunnels, out back to them.");
	struct fam lk = FAM("nave_links", "gauge",
			    "Data links open, by who does their TLS: the kernel (ktls) or "
			    "userspace (userspace_tls).");
	struct fam kfb = FAM("nave_ktls_fallbacks_total", "counter",
			     "Data links whose move into kernel TLS failed.");
	struct fam ref = FAM("nave_connections_refused_total", "counter",
			     "Connections refused at accept, by cause: the source at "
			     "max_conns_per_source (per_source), the tunnel at max_links, out of "
			     "descriptors (fd_limit), the firewall lists (firewall).");
	struct fam drop = FAM("nave_connections_dropped_total", "counter",
			      "Connections reset after accept, by cause: idle_timeout (no bytes "
			      "either way), pending_timeout (no data link in time).");
	struct fam hreq = FAM("nave_http_requests_total", "counter",
			      "Request heads the HTTP edge forwarded to tunnels.");
	struct fam hans =
	    FAM("nave_http_edge_answers_total", "counter",
		"Answers the HTTP edge gave itself, by cause: bad_request (400, 405, a "
		"bad TLS hello), no_host (400), unknown_host (404, unrecognized_name), "
		"offline (502), too_large (431), timeout (408), busy (503), "
		"unauthorized (401).");
	struct fam hkt =
	    FAM("nave_http_tls_kernel_total", "counter",
		"Connections whose TLS the HTTPS edge terminates that went into kernel "
		"TLS.");
	struct fam lst = FAM("nave_steering_listeners", "gauge",
			     "Listening sockets relayd holds for the port range.");
	struct fam me =
	    FAM("nave_bpf_map_entries", "gauge",
		"Entries in relayd's BPF maps: ports (steering), deny and allow (XDP).");
	struct fam xi = FAM("nave_xdp_info", "gauge",
			    "The XDP filter: its interface and mode (native, generic, detached); "
			    "always 1.");
	struct fam xp = FAM("nave_xdp_passed_packets_total", "counter",
			    "Packets to relayd's ports the XDP filter passed.");
	struct fam xd = FAM("nave_xdp_dropped_packets_total", "counter",
			    "Packets the XDP filter dropped, by cause: deny, not_allowed, "
			    "unallocated (a SYN to a port nobody holds), syn_rate, malformed.");
	struct fam pp = FAM("nave_xdp_port_packets_total", "counter",
			    "Packets XDP counted to an allocated port.");
	struct fam pb = FAM("nave_xdp_port_bytes_total", "counter",
			    "Payload bytes XDP counted to an allocated port.");
	static const char *const mesh_reasons[] = {
	    "denied",	   "denied",	  "not_found", "not_found", "offline", "offline",
	    "not_allowed", "not_allowed", "dns",       "dns",	    "refused", "refused",
	    "unreachable", "unreachable", "busy",      "busy",	    "bad",     "bad"};
	struct fam mopen = FAM("nave_mesh_streams_total", "counter",
			       "Mesh streams clients opened through the edge (port maps, SOCKS).");
	struct fam mref =
	    FAM("nave_mesh_refused_total", "counter",
		"Mesh streams the edge refused, by reason: denied (the mesh policy), "
		"not_found, offline, not_allowed ([socks] allow), dns, refused, unreachable, "
		"busy, bad.");
	struct fam mdec = FAM("nave_mesh_rule_decisions_total", "counter",
			      "Mesh policy decisions by the deciding rule's id (0: the default) "
			      "and verdict (allow, deny), since relayd started.");
	static const char *const udp_dirs[] = {"in", "datagrams_in", "out", "datagrams_out"};
	static const char *const udp_drops[] = {"queue",    "queue",	"flows",   "flows",
						"oversize", "oversize", "offline", "offline",
						"socks",    "socks"};
	struct fam uflows = FAM("nave_udp_flows", "gauge",
				"UDP flows open (a public source on a public UDP port).");
	struct fam uexp = FAM("nave_udp_flows_expired_total", "counter",
			      "UDP flows ended after [udp] idle_timeout without a datagram.");
	struct fam udg = FAM("nave_udp_datagrams_total", "counter",
			     "UDP datagrams relayed: in from public sources to tunnels, out back "
			     "to them.");
	struct fam udrop =
	    FAM("nave_udp_dropped_total", "counter",
		"UDP datagrams dropped, by reason: queue (a flow's queue full while its data "
		"link is not ready), flows ([udp] max_flows reached), oversize, offline (no "
		"tunnel online for the port), socks (at relayd's SOCKS UDP relay: another "
		"source, malformed, a fragment, a refused destination or a limit).");
	static const char *const socks_reasons[] = {"auth",	 "auth",     "locked", "locked",
						    "limit",	 "limit",    "method", "method",
						    "handshake", "handshake"};
	struct fam sconns =
	    FAM("nave_socks_connections_total", "counter",
		"Connections to relayd's SOCKS5 server ([socks] listen, tls_listen).");
	struct fam sref =
	    FAM("nave_socks_refused_total", "counter",
		"SOCKS5 connections relayd refused before their CONNECT, by reason: auth (a wrong "
		"user or token), locked (more than 5 failed logins from the source in 60 s), "
		"limit (handshakes under way), method (no user/password method), handshake "
		"(malformed, too long, too slow). Their CONNECTs count in nave_mesh_*.");
	const json_t *socks = json_object_get(s, "socks");
	const json_t *udp = json_object_get(s, "udp");
	const json_t *mesh = json_object_get(s, "mesh"), *mrules = json_object_get(s, "mesh_rules");
	const json_t *http = json_object_get(s, "http"), *maps_o = json_object_get(s, "maps");
	const json_t *xdp = json_object_get(s, "xdp"), *v;
	const char *kt = text(s, "ktls"), *steer = text(s, "steering"), *key;
	uint64_t u;

	{
		const char *kv[4] = {"ktls", kt ? kt : "", "steering", steer ? steer : ""};

		sample_u(b, &info, kv, 2, 1);
	}
	put_cnt(b, &start, s, "started");
	put_cnt(b, &workers, s, "workers");
	put_cnt(b, &copen, s, "conns");
	put_cnt(b, &ctot, s, "conns_total");
	put_by(b, &by, s, "direction", bytes, 2);
	put_by(b, &lk, s, "mode", links, 2);
	put_cnt(b, &kfb, s, "ktls_fallbacks");
	put_by(b, &ref, s, "cause", refused, 4);
	put_by(b, &drop, s, "cause", dropped, 2);
	if (json_is_object(http)) {
		put_cnt(b, &hreq, http, "requests");
		put_by(b, &hans, http, "cause", answers, 8);
		put_cnt(b, &hkt, http, "tls_kernel");
	}
	if (json_is_object(mesh)) {
		const json_t *mr = json_object_get(mesh, "refused");

		put_cnt(b, &mopen, mesh, "opened");
		if (json_is_object(mr))
			put_by(b, &mref, mr, "reason", mesh_reasons, 9);
	}
	if (json_is_object(socks)) {
		const json_t *sr = json_object_get(socks, "refused");

		put_cnt(b, &sconns, socks, "conns");
		if (json_is_object(sr))
			put_by(b, &sref, sr, "reason", socks_reasons, 5);
	}
	if (json_is_object(udp)) {
		const json_t *ud = json_object_get(udp, "dropped");

		put_cnt(b, &uflows, udp, "flows");
		put_cnt(b, &uexp, udp, "flows_expired");
		put_by(b, &udg, udp, "direction", udp_dirs, 2);
		if (json_is_object(ud))
			put_by(b, &udrop, ud, "reason", udp_drops, 5);
	}
	if (json_is_array(mrules)) {
		/* allow and deny samples of one family, each rule id once (relayd's table) */
		for (int verdict = 0; verdict < 2; verdict++) {
			size_t i;

			json_array_foreach(mrules, i, v)
			{
				uint64_t id, n;
				char idt[16];
				const char *kv[4] = {"rule", idt, "verdict",
						     verdict ? "deny" : "allow"};

				if (i > MESH_RULES_MAX || !cnt(v, "rule", &id) || id > INT32_MAX ||
				    !cnt(v, verdict ? "denied" : "allowed", &n) || !n)
					continue;
				snprintf(idt, sizeof(idt), "%" PRIu64, id);
				sample_u(b, &mdec, kv, 2, n);
			}
		}
	}
	if (cnt(s, "listeners", &u))
		sample0(b, &lst, u);
	if (json_is_object(maps_o))
		put_by(b, &me, maps_o, "map", maps, 3);
	if (json_is_object(xdp)) {
		const char *ifn = text(xdp, "interface"), *mode = text(xdp, "mode");
		const char *kv[4] = {"interface", ifn ? ifn : "", "mode", mode ? mode : ""};

		sample_u(b, &xi, kv, 2, 1);
		put_cnt(b, &xp, xdp, "pass");
		put_by(b, &xd, xdp, "cause", xdrops, 5);
	}
	/* relaylink kept only ports of the range with two counters (keep_counters) */
	json_object_foreach((json_t *)counters, key, v)
	{
		json_int_t n = json_integer_value(json_array_get(v, 0));

		sample1(b, &pp, "port", key, (uint64_t)(n < 0 ? 0 : n));
	}
	json_object_foreach((json_t *)counters, key, v)
	{
		json_int_t n = json_integer_value(json_array_get(v, 1));

		sample1(b, &pb, "port", key, (uint64_t)(n < 0 ? 0 : n));
	}
}

/* worker_stats, as relaylink checked it: an array of objects (or null) of counters (or null) */
static void render_workers(struct prom_buf *b, const json_t *ws)
{
	static const struct {
		const char *key, *name, *type, *help;
	} fams[] = {
	    {"sqes", "nave_worker_sqes_total", "counter",
	     "Submission queue entries the worker's io_uring took."},
	    {"cqes", "nave_worker_cqes_total", "counter", "Completions the worker reaped."},
	    {"waits", "nave_worker_waits_total", "counter",
	     "Times the worker waited for completions (completion batches)."},
	    {"sq_full", "nave_worker_sq_full_total", "counter",
	     "Submits forced by a full submission queue."},
	    {"nobufs", "nave_worker_buffer_ring_empty_total", "counter",
	     "Receives that found the provided-buffer ring empty (ENOBUFS) and waited."},
	    {"cq_overflow", "nave_worker_cq_overflow_total", "counter",
	     "Completions the kernel dropped for a full completion queue."},
	    {"conns", "nave_worker_connections_open", "gauge",
	     "Public connections open on the worker."},
	    {"conns_total", "nave_worker_connections_total", "counter",
	     "Connections accepted on the worker."},
	    {"links", "nave_worker_links", "gauge", "Data links open on the worker."},
	};

	for (size_t f = 0; f < ARRAY_SIZE(fams); f++) {
		struct fam fm = FAM(fams[f].name, fams[f].type, fams[f].help);
		const json_t *w;
		size_t i;

		json_array_foreach(ws, i, w)
		{
			char id[8];
			uint64_t v;

			if (i >= WORKERS_MAX || !cnt(w, fams[f].key, &v))
				continue;
			snprintf(id, sizeof(id), "%zu", i);
			sample1(b, &fm, "worker", id, v);
		}
	}
}

static void render_latency(struct metrics *m, struct prom_buf *b)
{
	struct fam f = FAM("nave_api_request_duration_seconds", "histogram",
			   "Admin API requests by method and route pattern: the time from the "
			   "request head to the answer.");

	for (size_t i = 0; i < ARRAY_SIZE(m->lat); i++) {
		const struct lat_series *s = &m->lat[i];
		const char *kv[6] = {"method", s->method, "route", s->route, "le", NULL};
		uint64_t cum = 0;
		char t[40];

		if (!s->count)
			continue;
		for (size_t k = 0; k < LAT_N; k++) {
			cum += s->bucket[k];
			kv[5] = lat_le[k];
			snprintf(t, sizeof(t), "%" PRIu64, cum);
			sample(b, &f, "_bucket", kv, 3, t);
		}
		kv[5] = "+Inf";
		snprintf(t, sizeof(t), "%" PRIu64, s->count);
		sample(b, &f, "_bucket", kv, 3, t);
		snprintf(t, sizeof(t), "%" PRIu64 ".%06" PRIu64, s->sum_us / 1000000u,
			 s->sum_us % 1000000u);
		sample(b, &f, "_sum", kv, 2, t);
		snprintf(t, sizeof(t), "%" PRIu64, s->count);
		sample(b, &f, "_count", kv, 2, t);
	}
}

bool metrics_render(struct metrics *m, struct prom_buf *b)
{
	struct fam build = FAM("nave_build_info", "gauge", "nave-controld's version; always 1.");
	struct fam start =
	    FAM("process_start_time_seconds", "gauge", "When nave-controld started, Unix seconds.");
	struct fam tun = FAM("nave_tunnels", "gauge", "Tunnels registered (auth tokens issued).");
	struct fam onl = FAM("nave_tunnels_online", "gauge", "Tunnels whose client is connected.");
	struct fam ports =
	    FAM("nave_ports_allocated", "gauge", "Ports of the range allocated (TCP and UDP).");
	struct fam conn = FAM("nave_relayd_connected", "gauge",
			      "1 when a relayd is connected to controld, else 0 (and relayd's "
			      "figures are absent).");
	struct fam scr =
	    FAM("nave_metrics_scrapes_total", "counter", "Scrapes of /metrics served.");
	const json_t *s = relaylink_stats(m->rl);
	int64_t total, online, nports;
	char t[40];

	m->scrapes++;
	sample1(b, &build, "version", NAVE_VERSION, 1);
	snprintf(t, sizeof(t), "%.3f", m->started);
	sample(b, &start, "", NULL, 0, t);
	if (store_tunnel_counts(m->st, &total, &online) == 0) {
		sample0(b, &tun, (uint64_t)total);
		sample0(b, &onl, (uint64_t)online);
	}
	if (store_port_count(m->st, &nports) == 0)
		sample0(b, &ports, (uint64_t)nports);
	sample0(b, &conn, s ? 1 : 0);
	if (s) {
		render_relay(b, s, relaylink_counters(m->rl));
		render_workers(b, json_object_get(s, "worker_stats"));
	}
	render_rule_bytes(m, b);
	render_latency(m, b);
	sample0(b, &scr, m->scrapes);
	return !b->failed;
}

/* ---------- API latency ---------- */

static bool known_method(const char *s)
{
	static const char *const ms[] = {"GET",	  "HEAD",   "POST",   "PUT",
					 "PATCH", "DELETE", "OPTIONS"};

	for (size_t i = 0; i < ARRAY_SIZE(ms); i++)
		if (!strcmp(s, ms[i]))
			return true;
	return false;
}

void metrics_api_observe(struct metrics *m, const char *method, const char *route, uint64_t usec)
{
	struct lat_series *s = NULL;
	const char *meth = method && known_method(method) ? method : "other";
	char path[ROUTE_MAX + 1];

	if (!m)
		return;
	/* route patterns are ours; anything else (too long, odd bytes) is not a label */
	if (!route)
		snprintf(path, sizeof(path), "(none)");
	else if (strlen(route) + 8 > ROUTE_MAX || !valid_str(route, VALID_TEXT, ROUTE_MAX))
		snprintf(path, sizeof(path), "(other)");
	else
		snprintf(path, sizeof(path), "/api/v1/%s", route);
	for (size_t i = 0; i < m->nlat; i++)
		if (!strcmp(m->lat[i].method, meth) && !strcmp(m->lat[i].route, path)) {
			s = &m->lat[i];
			break;
		}
	if (!s && m->nlat < METRICS_ROUTES_MAX) {
		s = &m->lat[m->nlat++];
		snprintf(s->method, sizeof(s->method), "%s", meth);
		snprintf(s->route, sizeof(s->route), "%s", path);
	}
	if (!s) { /* full: one series for the rest */
		s = &m->lat[METRICS_ROUTES_MAX];
		snprintf(s->method, sizeof(s->method), "other");
		snprintf(s->route, sizeof(s->route), "(other)");
	}
	s->count++;
	s->sum_us += usec;
	for (size_t k = 0; k < LAT_N; k++)
		if (usec <= lat_us[k]) {
			s->bucket[k]++;
			break;
		}
}

/* ---------- HTTP ---------- */

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *type,
			      char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
	enum MHD_Result ret;

	if (!resp) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result text_answer(struct MHD_Connection *conn, unsigned status, const char *msg)
{
	return answer(conn, status, "text/plain; charset=utf-8", (char *)msg, strlen(msg),
		      MHD_RESPMEM_PERSISTENT);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct metrics *m = cls;
	struct prom_buf b = {.max = BODY_MAX};

	/* answered at the first call: a body sent along is not read (the connection then ends) */
	if (strcmp(url, "/metrics") != 0)
		return text_answer(conn, MHD_HTTP_NOT_FOUND,
				   "not found: the metrics are at /metrics\n");
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return text_answer(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				   "method not allowed: GET or HEAD\n");
	if (!metrics_render(m, &b)) {
		log_every(NLOG_WARN,
			  "metrics: could not render a scrape (%zu bytes; out of memory?)", b.len);
		prom_free(&b);
		return text_answer(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
	}
	return answer(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len,
		      MHD_RESPMEM_MUST_FREE);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = 0;
	log_every(NLOG_DEBUG, "metrics: %s", msg);
}

/* A listening TCP socket on host:port (the first address that binds); 0 with *fd, or -errno. */
static int listen_on(const char *spec, int *fd_out, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *res = NULL;
	char host[256], serv[8];
	uint16_t port;
	int r, last = EADDRNOTAVAIL;

	if (cfg_parse_hostport(spec, host, sizeof(host), &port)) {
		snprintf(err, errlen, "[metrics] listen %s is not HOST:PORT", spec);
		return -EINVAL;
	}
	snprintf(serv, sizeof(serv), "%u", (unsigned)port);
	r = getaddrinfo(host, serv, &hints, &res);
	if (r) {
		snprintf(err, errlen, "[metrics] listen %s: %s", spec, gai_strerror(r));
		return -EINVAL;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int one = 1,
		    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);

		if (fd < 0) {
			last = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) {
			freeaddrinfo(res);
			*fd_out = fd;
			return 0;
		}
		last = errno;
		close(fd);
	}
	freeaddrinfo(res);
	if (last == EPERM || last == EACCES)
		snprintf(err, errlen,
			 "[metrics] listen %s: %s (a port below 1024 needs a privilege controld "
			 "does not keep; under systemd the unit's SocketBindAllow= must name the "
			 "port)",
			 spec, strerror(last));
	else
		snprintf(err, errlen, "[metrics] listen %s: %s", spec, strerror(last));
	return -last;
}

int metrics_start(struct metrics **out, const struct cfg_server *cfg, struct store *st,
		  struct relaylink *rl, char *err, size_t errlen)
{
	struct metrics *m = calloc(1, sizeof(*m));
	struct timespec ts;
	int fd = -1, ret;

	*out = NULL;
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	m->st = st;
	m->rl = rl;
	m->cfg = cfg;
	clock_gettime(CLOCK_REALTIME, &ts);
	m->started = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	if (!cfg->metrics_listen[0]) {
		*out = m;
		return 0;
	}
	ret = listen_on(cfg->metrics_listen, &fd, err, errlen);
	if (ret) {
		free(m);
		return ret;
	}
	/* no threading flag: external select mode, driven by metrics_pollfds/metrics_process */
	m->mhd = MHD_start_daemon(
	    MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, m, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
	    m, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_CONN_MAX,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)PER_IP_MAX,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HEAD_MEM_MAX, MHD_OPTION_END);
	if (!m->mhd) {
		close(fd);
		free(m);
		snprintf(err, errlen, "[metrics] listen %s: could not start the HTTP server",
			 cfg->metrics_listen);
		return -EIO;
	}
	*out = m;
	return 0;
}

void metrics_stop(struct metrics *m)
{
	if (!m)
		return;
	if (m->mhd)
		MHD_stop_daemon(m->mhd);
	free(m);
}

int metrics_pollfds(struct metrics *m, struct pollfd *pfd, int max, int *timeout_ms)
{
	return m ? mhd_pollfds(m->mhd, "metrics", pfd, max, timeout_ms) : 0;
}

void metrics_process(struct metrics *m, const struct pollfd *pfd, int n)
{
	if (m)
		mhd_process(m->mhd, pfd, n);
}

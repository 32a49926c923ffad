// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of ctl/metrics.c's text: label values escaped per the exposition
 * format, the per-rule bytes family written from a list (nothing for an empty
 * one), the API latency histogram (buckets by upper bound, cumulative in the
 * text, +Inf = count, the sum in seconds; methods outside the known set as
 * "other", a route that is no label as "(other)", series past
 * METRICS_ROUTES_MAX in one "(other)" series), and a whole render without
 * relayd (nave_relayd_connected 0 and no relayd family). The listener and
 * the figures relayd sends are tested end to end in test_metrics.py.
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

#include "config/cfg.h"
#include "ctl/metrics.h"
#include "ctl/relaylink.h"
#include "ctl/store.h"

static void test_escape(void **state)
{
	struct prom_buf b = {0};

	prom_escape(&b, "a\"b\\c\nd é");
	assert_false(b.failed);
	assert_string_equal(b.p, "a\\\"b\\\\c\\nd é");
	prom_free(&b);
}

static void test_rule_bytes(void **state)
{
	const struct metrics_rule_bytes rows[] = {
	    {"t-1", "web", 10, 20},
	    {"t-\"2\"", "a\\b", 0, 18446744073709551615u},
	};
	struct prom_buf b = {0};

	metrics_rule_bytes(&b, rows, 0);
	assert_null(b.p); /* nothing at all for no rows */
	metrics_rule_bytes(&b, rows, 2);
	assert_false(b.failed);
	assert_non_null(strstr(b.p, "# TYPE nave_rule_bytes_total counter\n"));
	assert_non_null(strstr(
	    b.p, "nave_rule_bytes_total{tunnel=\"t-1\",rule=\"web\",direction=\"in\"} 10\n"));
	assert_non_null(strstr(
	    b.p, "nave_rule_bytes_total{tunnel=\"t-1\",rule=\"web\",direction=\"out\"} 20\n"));
	assert_non_null(strstr(b.p, "nave_rule_bytes_total{tunnel=\"t-\\\"2\\\"\",rule=\"a\\\\b\","
				    "direction=\"out\"} 18446744073709551615\n"));
	/* the header once */
	assert_ptr_equal(strstr(b.p, "# HELP"), b.p);
	assert_null(strstr(b.p + 1, "# HELP"));
	assert_null(strstr(strstr(b.p, "# TYPE") + 1, "# TYPE"));
	prom_free(&b);
}

struct fixture {
	char dir[64];
	struct cfg_server cfg;
	struct store *st;
	struct relaylink *rl;
	struct metrics *m;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char db[128], err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/nave-test-metrics-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(db, sizeof(db), "%s/nave.db", f->dir);
	assert_int_equal(cfg_server_load(&f->cfg, NULL, err, sizeof(err)), 0);
	assert_int_equal(store_open(&f->st, db, 22000, 22999, 5, err, sizeof(err)), 0);
	assert_int_equal(relaylink_open(&f->rl, -1, f->st, &f->cfg), 0);
	/* [metrics] listen empty: no listener, latency recorded all the same */
	assert_int_equal(metrics_start(&f->m, &f->cfg, f->st, f->rl, err, sizeof(err)), 0);
	assert_non_null(f->m);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	metrics_stop(f->m);
	relaylink_close(f->rl);
	store_close(f->st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static char *render(struct metrics *m)
{
	struct prom_buf b = {0};

	assert_true(metrics_render(m, &b));
	return b.p;
}

static void test_render_without_relayd(void **state)
{
	struct fixture *f = *state;
	char *t = render(f->m);

	assert_non_null(strstr(t, "\nnave_relayd_connected 0\n"));
	assert_non_null(strstr(t, "\nnave_tunnels 0\n"));
	assert_non_null(strstr(t, "\nnave_tunnels_online 0\n"));
	assert_non_null(strstr(t, "\nnave_ports_allocated 0\n"));
	assert_non_null(strstr(t, "# TYPE process_start_time_seconds gauge\n"));
	assert_null(strstr(t, "nave_connections_total"));
	assert_null(strstr(t, "nave_worker_"));
	assert_null(strstr(t, "nave_rule_bytes_total"));
	/* no request yet: no histogram */
	assert_null(strstr(t, "nave_api_request_duration_seconds"));
	assert_non_null(strstr(t, "\nnave_metrics_scrapes_total 1\n"));
	free(t);
}

static void test_latency(void **state)
{
	struct fixture *f = *state;
	char *t, name[32];

	metrics_api_observe(f->m, "GET", "status", 100);     /* <= 0.0005 */
	metrics_api_observe(f->m, "GET", "status", 500);     /* <= 0.0005, the bound itself */
	metrics_api_observe(f->m, "GET", "status", 30000);   /* <= 0.05 */
	metrics_api_observe(f->m, "GET", "status", 9000000); /* +Inf only */
	metrics_api_observe(f->m, "BREW", NULL, 10);
	metrics_api_observe(f->m, "GET", "bad\nroute", 10);
	metrics_api_observe(NULL, "GET", "status", 10); /* no metrics: nothing */
	t = render(f->m);
	assert_non_null(strstr(t, "# TYPE nave_api_request_duration_seconds histogram\n"));
	assert_non_null(strstr(t, "nave_api_request_duration_seconds_bucket{method=\"GET\","
				  "route=\"/api/v1/status\",le=\"0.0005\"} 2\n"));
	assert_non_null(strstr(t, "nave_api_request_duration_seconds_bucket{method=\"GET\","
				  "route=\"/api/v1/status\",le=\"0.025\"} 2\n"));
	assert_non_null(strstr(t, "nave_api_request_duration_seconds_bucket{method=\"GET\","
				  "route=\"/api/v1/status\",le=\"0.05\"} 3\n"));
	assert_non_null(strstr(t, "nave_api_request_duration_seconds_bucket{method=\"GET\","
				  "route=\"/api/v1/status\",le=\"2.5\"} 3\n"));
	assert_non_null(strstr(t, "nave_api_request_duration_seconds_bucket{method=\"GET\","
				  "route=\"/api/v1/status\",le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(t, "nave_api_request_duration_seconds_sum{method=\"GET\","
				  "route=\"/api/v1/status\"} 9.030600\n"));
	assert_non_null(strstr(t, "nave_api_request_duration_seconds_count{method=\"GET\","
				  "route=\"/api/v1/status\"} 4\n"));
	assert_non_null(strstr(t, "nave_api_request_duration_seconds_count{method=\"other\","
				  "route=\"(none)\"} 1\n"));
	assert_non_null(strstr(t, "nave_api_request_duration_seconds_count{method=\"GET\","
				  "route=\"(other)\"} 1\n"));
	free(t);

	/* past METRICS_ROUTES_MAX series: the rest share one */
	for (int i = 0; i < METRICS_ROUTES_MAX + 10; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		metrics_api_observe(f->m, "POST", name, 10);
	}
	t = render(f->m);
	assert_non_null(strstr(t, "route=\"/api/v1/r0\""));
	assert_null(strstr(t, "route=\"/api/v1/r100\""));
	/* 3 series came before the POSTs: 93 got one each, 13 share the last */
	assert_non_null(strstr(t, "nave_api_request_duration_seconds_count{method=\"other\","
				  "route=\"(other)\"} 13\n"));
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape),
	    cmocka_unit_test(test_rule_bytes),
	    cmocka_unit_test_setup_teardown(test_render_without_relayd, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_latency, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

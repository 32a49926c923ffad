// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the connection records: relayd's per-worker record ring
 * (datapath/recring.h: full -> the record is dropped and counted, slots come
 * back once read, one producer and one consumer thread lose nothing and reorder
 * nothing), controld's check of a conn_records message (ctl/records.c: every
 * member, a bad record dropped and counted, a malformed message refused), the
 * since= values, and the store's side (ctl/store.c: the rule of a record, the
 * rule totals in the same transaction, records of unknown tunnels, newest
 * first and the filters, bandwidth buckets, pruning by age and by max_rows in
 * bounded chunks, and the query plans of the record queries).
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "ctl/records.h"
#include "ctl/store.h"
#include "datapath/recring.h"
#include "log.h"

/* ---------- the ring ---------- */

static void test_ring_full_drops(void **state)
{
	struct rec_ring *r = calloc(1, sizeof(*r));
	struct engine_record *e;

	(void)state;
	assert_non_null(r);
	for (unsigned i = 0; i < REC_RING_SIZE; i++) {
		e = rec_ring_reserve(r);
		assert_non_null(e);
		e->bytes_in = i;
		rec_ring_commit(r);
	}
	assert_int_equal(rec_ring_count(r), REC_RING_SIZE);
	/* full: the next records are dropped and counted, nothing is overwritten */
	assert_null(rec_ring_reserve(r));
	assert_null(rec_ring_reserve(r));
	assert_int_equal(rec_ring_dropped(r), 2);
	assert_int_equal(rec_ring_peek(r, 0)->bytes_in, 0);
	assert_int_equal(rec_ring_peek(r, REC_RING_SIZE - 1)->bytes_in, REC_RING_SIZE - 1);
	/* read 10: 10 slots come back, in order */
	rec_ring_release(r, 10);
	assert_int_equal(rec_ring_count(r), REC_RING_SIZE - 10);
	assert_int_equal(rec_ring_peek(r, 0)->bytes_in, 10);
	for (unsigned i = 0; i < 10; i++) {
		e = rec_ring_reserve(r);
		assert_non_null(e);
		e->bytes_in = 100000 + i;
		rec_ring_commit(r);
	}
	assert_null(rec_ring_reserve(r));
	assert_int_equal(rec_ring_dropped(r), 3);
	assert_int_equal(rec_ring_peek(r, REC_RING_SIZE - 1)->bytes_in, 100009);
	rec_ring_release(r, REC_RING_SIZE);
	assert_int_equal(rec_ring_count(r), 0);
	free(r);
}

#define SPSC_N 2000000u

struct spsc {
	struct rec_ring *r;
	uint64_t produced, dropped_seen;
};

static void *producer(void *arg)
{
	struct spsc *s = arg;

	for (uint64_t i = 0; i < SPSC_N; i++) {
		struct engine_record *e = rec_ring_reserve(s->r);

		if (!e)
			continue;
		e->bytes_in = i;
		e->bytes_out = ~i;
		rec_ring_commit(s->r);
		s->produced++;
	}
	return NULL;
}

static void test_ring_two_threads(void **state)
{
	struct spsc s = {calloc(1, sizeof(struct rec_ring)), 0, 0};
	uint64_t got = 0, last = 0;
	bool first = true, done = false;
	pthread_t t;

	(void)state;
	assert_non_null(s.r);
	assert_int_equal(pthread_create(&t, NULL, producer, &s), 0);
	while (!done) {
		uint32_t n;

		done = !pthread_tryjoin_np(t, NULL);
		n = rec_ring_count(s.r);
		for (uint32_t i = 0; i < n; i++) {
			const struct engine_record *e = rec_ring_peek(s.r, i);

			/* whole records only, in order (drops leave gaps, never reorder) */
			assert_int_equal(e->bytes_out, ~e->bytes_in);
			if (!first)
				assert_true(e->bytes_in > last);
			last = e->bytes_in;
			first = false;
		}
		rec_ring_release(s.r, n);
		got += n;
	}
	got += rec_ring_count(s.r);
	assert_int_equal(got, s.produced);
	assert_int_equal(s.produced + rec_ring_dropped(s.r), SPSC_N);
	free(s.r);
}

/* ---------- the check of a conn_records message ---------- */

static json_t *good_record(void)
{
	return json_pack("{s:s, s:s, s:i, s:s, s:i, s:I, s:I, s:I, s:I, s:s}", "tunnel_id",
			 "t-0123456789ab", "kind", "tcp", "port", 22000, "src", "192.0.2.1",
			 "src_port", 5555, "start_ms", (json_int_t)1700000000123, "duration_ms",
			 (json_int_t)2500, "bytes_in", (json_int_t)10, "bytes_out", (json_int_t)20,
			 "reason", "done");
}

static json_t *with(json_t *r, const char *key, json_t *v)
{
	if (v)
		json_object_set_new(r, key, v);
	else
		json_object_del(r, key);
	return r;
}

static void test_parse(void **state)
{
	struct store_conn_record out[16];
	json_t *m = json_pack("{s:s, s:[]}", "type", "conn_records", "records");
	json_t *a = json_object_get(m, "records");
	char why[256];
	size_t n, bad;

	(void)state;
	json_array_append_new(a, good_record());
	json_array_append_new(a, with(good_record(), "src", json_string("999.1.1.1")));
	json_array_append_new(a, with(good_record(), "bytes_in", json_integer(-1)));
	json_array_append_new(a, with(good_record(), "bytes_out", json_real(1.5)));
	json_array_append_new(a, with(good_record(), "reason", json_string("boom")));
	json_array_append_new(a, with(good_record(), "kind", json_string("sctp")));
	json_array_append_new(a, with(good_record(), "port", json_integer(65536)));
	json_array_append_new(a, with(good_record(), "domain", json_string("a.example.com")));
	json_array_append_new(a, with(good_record(), "tunnel_id", json_string("t-0123456789abc")));
	json_array_append_new(a, with(good_record(), "tunnel_id", json_string("t x")));
	json_array_append_new(a, with(good_record(), "src_port", NULL));
	json_array_append_new(a, json_string("not an object"));
	json_array_append_new(a, with(with(good_record(), "kind", json_string("https")), "domain",
				      json_string("Www.Example.COM")));
	json_array_append_new(a, with(with(good_record(), "kind", json_string("http")), "domain",
				      json_string("bad..name")));
	/* mesh: "from:ID" or the name asked for (an address too); nothing else */
	json_array_append_new(a, with(with(good_record(), "kind", json_string("mesh")), "domain",
				      json_string("from:t-0123456789ab")));
	json_array_append_new(a, with(with(good_record(), "kind", json_string("mesh")), "domain",
				      json_string("2001:db8::1")));
	json_array_append_new(a, with(with(good_record(), "kind", json_string("mesh")), "domain",
				      json_string("from:a b")));
	json_array_append_new(
	    a, with(with(good_record(), "kind", json_string("mesh")), "domain", json_string("")));
	assert_int_equal(records_parse(m, out, 16, &n, &bad, why, sizeof(why)), 0);
	assert_int_equal(n, 4);
	assert_int_equal(bad, 14);
	assert_string_equal(why, "records[1]: src must be an IPv4 or IPv6 address");
	assert_string_equal(out[0].tunnel_id, "t-0123456789ab");
	assert_int_equal(out[0].kind, STORE_REC_TCP);
	assert_int_equal(out[0].port, 22000);
	assert_string_equal(out[0].src, "192.0.2.1");
	assert_int_equal(out[0].src_port, 5555);
	assert_int_equal(out[0].start, 1700000000);
	assert_int_equal(out[0].ended, 1700000002);
	assert_int_equal(out[0].reason, STORE_REC_DONE);
	assert_int_equal(out[1].kind, STORE_REC_HTTPS);
	assert_string_equal(out[1].domain, "www.example.com");
	assert_int_equal(out[2].kind, STORE_REC_MESH);
	assert_string_equal(out[2].domain, "from:t-0123456789ab");
	assert_string_equal(out[3].domain, "2001:db8::1");
	/* no room: counted as bad, never written past max */
	assert_int_equal(records_parse(m, out, 1, &n, &bad, why, sizeof(why)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(bad, 17);
	/* the message itself */
	json_object_set_new(m, "records", json_object());
	assert_int_equal(records_parse(m, out, 16, &n, &bad, why, sizeof(why)), -EBADMSG);
	assert_string_equal(why, "conn_records: \"records\" is not an array");
	json_object_del(m, "records");
	assert_int_equal(records_parse(m, out, 16, &n, &bad, why, sizeof(why)), -EBADMSG);
	a = json_array();
	for (int i = 0; i <= RECORDS_MSG_MAX; i++)
		json_array_append_new(a, json_integer(i));
	json_object_set_new(m, "records", a);
	assert_int_equal(records_parse(m, out, 16, &n, &bad, why, sizeof(why)), -EBADMSG);
	json_decref(m);
}

static void test_since(void **state)
{
	int64_t v;

	(void)state;
	assert_int_equal(records_since("1700000000", 1800000000, &v), 0);
	assert_int_equal(v, 1700000000);
	assert_int_equal(records_since("90s", 1000, &v), 0);
	assert_int_equal(v, 910);
	assert_int_equal(records_since("1h", 100000, &v), 0);
	assert_int_equal(v, 100000 - 3600);
	assert_int_equal(records_since("2w", 10000000, &v), 0);
	assert_int_equal(v, 10000000 - 14 * 86400);
	assert_int_equal(records_since("7d", 100, &v), 0);
	assert_int_equal(v, 0);
	static const char *const bad[] = {
	    "", "-1", "1y", "1hh", "h", "1 h", "99999999999999999999", "200000000000d", "0x10"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(records_since(bad[i], 100, &v), -EINVAL);
	assert_int_equal(records_since(NULL, 100, &v), -EINVAL);
}

/* ---------- the store ---------- */

struct fixture {
	char dir[64];
	char db[1024]; /* store.c copies up to its path's 1023 bytes (LTO checks the source) */
	struct store *s;
	char tid[STORE_TUNNEL_ID_LEN];
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256], tok[STORE_SECRET_LEN];
	struct store_token t;

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_records.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/nave.db", f->dir);
	if (store_open(&f->s, f->db, 22000, 22099, 10, err, sizeof(err)) ||
	    store_token_create(f->s, "g", "test", &t, tok))
		return -1;
	memcpy(f->tid, t.tunnel_id, sizeof(f->tid));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	store_close(f->s);
	nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static struct store_conn_record rec(const char *tid, int kind, unsigned port, const char *domain,
				    int64_t ended, int64_t in, int64_t out)
{
	struct store_conn_record r = {.kind = kind, .port = (uint16_t)port};

	snprintf(r.tunnel_id, sizeof(r.tunnel_id), "%s", tid);
	snprintf(r.domain, sizeof(r.domain), "%s", domain ? domain : "");
	snprintf(r.src, sizeof(r.src), "198.51.100.9");
	r.src_port = 4000;
	r.start_ms = (ended - 1) * 1000;
	r.start = ended - 1;
	r.duration_ms = 1000;
	r.ended = ended;
	r.bytes_in = in;
	r.bytes_out = out;
	r.reason = STORE_REC_RESET;
	return r;
}

struct collect {
	struct store_conn_record r[64];
	size_t n;
};

static int collect_cb(const void *row, void *arg)
{
	struct collect *c = arg;

	if (c->n < 64)
		c->r[c->n++] = *(const struct store_conn_record *)row;
	return 0;
}

static size_t list(struct fixture *f, const char *tid, const char *rule, int64_t since,
		   struct collect *c)
{
	struct store_filter flt = {.tunnel_id = tid, .rule = rule, .since = since};

	c->n = 0;
	assert_int_equal(store_records_list(f->s, &flt, 64, collect_cb, c), 0);
	return c->n;
}

struct traffic {
	char rule[STORE_RULE_LEN];
	int64_t in, out, conns;
};

static int traffic_cb(const void *row, void *arg)
{
	const struct store_rule_traffic *t = row;
	struct traffic *want = arg;

	if (!strcmp(t->rule, want->rule)) {
		want->in = t->bytes_in;
		want->out = t->bytes_out;
		want->conns = t->conns;
	}
	return 0;
}

static struct traffic traffic_of(struct fixture *f, const char *rule)
{
	struct store_filter flt = {.tunnel_id = f->tid};
	struct traffic t = {.conns = -1};

	snprintf(t.rule, sizeof(t.rule), "%s", rule);
	assert_int_equal(store_list(f->s, &store_rule_traffics, &flt, 0, -1, traffic_cb, &t, NULL),
			 0);
	return t;
}

static void test_store_records(void **state)
{
	struct fixture *f = *state;
	struct store_conn_record r[6];
	struct store_domain d;
	struct store_port p;
	struct collect c;
	struct traffic t;
	bool created;
	char err[256];

	assert_int_equal(
	    store_port_alloc(f->s, f->tid, 22005, "ssh", NULL, &p, &created, err, sizeof(err)), 0);
	assert_int_equal(store_domain_claim(f->s, f->tid, "*.example.com", "wild", &d, &created,
					    err, sizeof(err)),
			 0);
	assert_int_equal(store_domain_claim(f->s, f->tid, "app.example.com", "app", &d, &created,
					    err, sizeof(err)),
			 0);
	r[0] = rec(f->tid, STORE_REC_TCP, 22005, NULL, 1000, 1, 2);
	r[1] = rec(f->tid, STORE_REC_HTTP, 8080, "app.example.com", 1010, 10, 20);
	r[2] = rec(f->tid, STORE_REC_HTTPS, 8443, "x.y.example.com", 1020, 100, 200);
	r[3] = rec(f->tid, STORE_REC_TCP, 22006, NULL, 1030, 1000, 2000);     /* no rule holds it */
	r[4] = rec("t-ffffffffffff", STORE_REC_TCP, 22005, NULL, 1040, 5, 5); /* unknown */
	r[5] = rec(f->tid, STORE_REC_TCP, 22005, NULL, 1050, 3, 4);
	assert_int_equal(store_records_add(f->s, r, 6), 5);
	assert_int_equal(r[4].id, 0);
	assert_int_equal(list(f, f->tid, NULL, 0, &c), 5);
	/* newest first; each with its rule */
	assert_int_equal(c.r[0].ended, 1050);
	assert_string_equal(c.r[0].rule, "ssh");
	assert_int_equal(c.r[0].reason, STORE_REC_RESET);
	assert_string_equal(c.r[1].rule, "");
	assert_string_equal(c.r[2].rule, "wild");
	assert_string_equal(c.r[2].domain, "x.y.example.com");
	assert_int_equal(c.r[2].kind, STORE_REC_HTTPS);
	assert_string_equal(c.r[3].rule, "app");
	assert_int_equal(c.r[4].ended, 1000);
	assert_int_equal(list(f, f->tid, "ssh", 0, &c), 2);
	assert_int_equal(list(f, NULL, "app", 0, &c), 1);
	assert_int_equal(list(f, f->tid, NULL, 1020, &c), 3);
	assert_int_equal(list(f, "t-ffffffffffff", NULL, 0, &c), 0);
	t = traffic_of(f, "ssh");
	assert_int_equal(t.in, 4);
	assert_int_equal(t.out, 6);
	assert_int_equal(t.conns, 2);
	t = traffic_of(f, "");
	assert_int_equal(t.conns, 1);
	assert_int_equal(t.in, 1000);
	/* a bad kind or reason is refused whole (the parser never makes one) */
	r[0].reason = STORE_REC_REASONS;
	assert_int_equal(store_records_add(f->s, r, 1), -EINVAL);
	assert_int_equal(list(f, f->tid, NULL, 0, &c), 5);
}

struct bucket_sum {
	int64_t t[8], in[8], conns[8];
	int n;
};

static int bucket_cb(int64_t t, int64_t in, int64_t out, int64_t conns, void *arg)
{
	struct bucket_sum *b = arg;

	(void)out;
	if (b->n < 8) {
		b->t[b->n] = t;
		b->in[b->n] = in;
		b->conns[b->n++] = conns;
	}
	return 0;
}

static void test_store_bandwidth(void **state)
{
	struct fixture *f = *state;
	struct store_conn_record r[4];
	struct store_filter flt = {.tunnel_id = f->tid, .since = 1000};
	struct bucket_sum b = {0};

	r[0] = rec(f->tid, STORE_REC_TCP, 22001, NULL, 990, 1, 1);
	r[1] = rec(f->tid, STORE_REC_TCP, 22001, NULL, 1001, 2, 2);
	r[2] = rec(f->tid, STORE_REC_TCP, 22001, NULL, 1019, 4, 4);
	r[3] = rec(f->tid, STORE_REC_TCP, 22001, NULL, 1130, 8, 8);
	assert_int_equal(store_records_add(f->s, r, 4), 4);
	assert_int_equal(store_records_bandwidth(f->s, &flt, 60, bucket_cb, &b), 0);
	assert_int_equal(b.n, 2);
	assert_int_equal(b.t[0], 960); /* 1001 and 1019 are both in [960, 1020) */
	assert_int_equal(b.in[0], 6);
	assert_int_equal(b.conns[0], 2);
	assert_int_equal(b.t[1], 1080);
	assert_int_equal(b.in[1], 8);
	/* whole minutes from a whole minute: the per-minute sums give the same answer */
	memset(&b, 0, sizeof(b));
	flt.since = 960;
	assert_int_equal(store_records_bandwidth(f->s, &flt, 60, bucket_cb, &b), 0);
	assert_int_equal(b.n, 2);
	assert_int_equal(b.t[0], 960); /* 990, 1001 and 1019 */
	assert_int_equal(b.in[0], 7);
	assert_int_equal(b.conns[0], 3);
	assert_int_equal(b.t[1], 1080);
	assert_int_equal(b.conns[1], 1);
	memset(&b, 0, sizeof(b));
	assert_int_equal(store_records_bandwidth(f->s, &flt, 120, bucket_cb, &b), 0);
	assert_int_equal(b.n, 2);
	assert_int_equal(b.t[0], 960); /* [960, 1080) */
	assert_int_equal(b.in[0], 7);
	assert_int_equal(b.t[1], 1080);
	memset(&b, 0, sizeof(b));
	flt.rule = "nosuch";
	assert_int_equal(store_records_bandwidth(f->s, &flt, 60, bucket_cb, &b), 0);
	assert_int_equal(b.n, 0);
	flt.rule = NULL;
	/* whole hours: the per-hour sums */
	memset(&b, 0, sizeof(b));
	flt.since = 0;
	assert_int_equal(store_records_bandwidth(f->s, &flt, 3600, bucket_cb, &b), 0);
	assert_int_equal(b.n, 1);
	assert_int_equal(b.t[0], 0);
	assert_int_equal(b.in[0], 15);
	assert_int_equal(b.conns[0], 4);
	flt.since = 960;
	/* the same through the records (a step not of whole minutes) */
	memset(&b, 0, sizeof(b));
	assert_int_equal(store_records_bandwidth(f->s, &flt, 30, bucket_cb, &b), 0);
	assert_int_equal(b.n, 2); /* 990 (990, 1001, 1019) and 1110 (1130) */
	assert_int_equal(b.t[0], 990);
	assert_int_equal(b.conns[0], 3);
	flt.tunnel_id = NULL;
	assert_int_equal(store_records_bandwidth(f->s, &flt, 60, bucket_cb, &b), -EINVAL);
}

static int64_t raw_count(struct fixture *f, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2(store_sqlite(f->s), sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void test_store_prune(void **state)
{
	struct fixture *f = *state;
	struct store_conn_record r[50];
	struct collect c;
	int64_t deleted;

	for (int i = 0; i < 50; i++)
		r[i] = rec(f->tid, STORE_REC_TCP, 22001, NULL, 1000 + i, i, i);
	assert_int_equal(store_records_add(f->s, r, 50), 50);
	/* by age, in chunks of 7: ended before 1020 is 20 records */
	assert_int_equal(store_records_prune(f->s, 1020, 0, 7, &deleted), 0);
	assert_int_equal(deleted, 7);
	assert_int_equal(store_records_prune(f->s, 1020, 0, 7, &deleted), 0);
	assert_int_equal(store_records_prune(f->s, 1020, 0, 7, &deleted), 0);
	assert_int_equal(deleted, 6);
	assert_int_equal(store_records_prune(f->s, 1020, 0, 7, &deleted), 0);
	assert_int_equal(deleted, 0);
	assert_int_equal(list(f, f->tid, NULL, 0, &c), 30);
	/* then by max_rows: the newest 12 stay */
	do
		assert_int_equal(store_records_prune(f->s, 0, 12, 5, &deleted), 0);
	while (deleted == 5);
	assert_int_equal(list(f, f->tid, NULL, 0, &c), 12);
	assert_int_equal(c.r[11].ended, 1038);
	assert_int_equal(c.r[0].ended, 1049);
	/* totals are not pruned */
	assert_int_equal(traffic_of(f, "").conns, 50);
	/* the per-minute sums follow: the minute of 1038 stays (cut in two), none older */
	assert_int_equal(raw_count(f, "SELECT count(*) FROM conn_minutes WHERE rule = '*'"), 1);
	assert_int_equal(raw_count(f, "SELECT min(at) FROM conn_minutes"), 1020);
	/* the hour [0, 3600) holds them all: cut in two, it stays */
	assert_int_equal(raw_count(f, "SELECT count(*) FROM conn_hours WHERE rule = '*'"), 1);
	/* and go with the records by age */
	assert_int_equal(store_records_prune(f->s, 3600, 0, 100, &deleted), 0);
	assert_int_equal(raw_count(f, "SELECT count(*) FROM conn_minutes"), 0);
	assert_int_equal(raw_count(f, "SELECT count(*) FROM conn_hours"), 0);
}

/* The plan of a query mentions idx (an index of conn_records), and no full scan of it. */
static bool plan_uses(sqlite3 *db, const char *sql, const char *idx)
{
	char q[1024];
	sqlite3_stmt *st;
	bool uses = false, scans = false;

	snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", sql);
	assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *d = (const char *)sqlite3_column_text(st, 3);

		if (strstr(d, idx))
			uses = true;
		if (!strncmp(d, "SCAN conn_records", 17) && !strstr(d, "INDEX"))
			scans = true;
	}
	sqlite3_finalize(st);
	return uses && !scans;
}

static void test_store_plans(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_sqlite(f->s);

	assert_true(plan_uses(db,
			      "SELECT id FROM conn_records WHERE tunnel_id = ?1 ORDER BY ended "
			      "DESC, id DESC LIMIT 50",
			      "conn_records_tunnel"));
	assert_true(plan_uses(db,
			      "SELECT id FROM conn_records WHERE tunnel_id = ?1 AND rule = ?2 "
			      "ORDER BY ended DESC, id DESC LIMIT 50",
			      "conn_records_rule"));
	/* a rule without a tunnel: no scan of the table */
	assert_true(plan_uses(db,
			      "SELECT id FROM conn_records WHERE rule = ?2 ORDER BY ended DESC, "
			      "id DESC LIMIT 50",
			      "conn_records_rule_only"));
	assert_true(plan_uses(db,
			      "SELECT id FROM conn_records WHERE rule = ?2 AND ended >= ?3 ORDER "
			      "BY ended DESC, id DESC LIMIT 50",
			      "conn_records_rule_only"));
	assert_true(plan_uses(db,
			      "SELECT id FROM conn_records ORDER BY ended DESC, id DESC LIMIT 50",
			      "conn_records_ended"));
	assert_true(plan_uses(db,
			      "SELECT id FROM conn_records WHERE ended < ?1 ORDER BY ended LIMIT 9",
			      "conn_records_ended"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ring_full_drops),
	    cmocka_unit_test(test_ring_two_threads),
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_since),
	    cmocka_unit_test_setup_teardown(test_store_records, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_bandwidth, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_prune, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_plans, setup, teardown),
	};

	log_init("test_records", NLOG_WARN, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

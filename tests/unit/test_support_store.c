// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the support sessions in ctl/store.c (schema v13): the value checks (ids,
 * service names, reasons, hex), create (at most 4 pending or approved unexpired sessions
 * a tunnel, the refusals), the states and their transitions (approve, owner end, operator
 * end and denial, expiry computed at the time given and handled once), the connect check
 * (state, key, service, in that order), the list's filters and order, the audit trail's
 * order and its cap, and persistence. Times are given to the store, so nothing sleeps.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "ctl/store.h"
#include "log.h"
#include "util.h"

#define T0 1800000000000LL /* ms */

struct fixture {
	char dir[64];
	char db[128];
	struct store *s;
	char tid[STORE_TUNNEL_ID_LEN], other[STORE_TUNNEL_ID_LEN];
	char auth[65], hash[65]; /* an auth key as hex and its SHA-256 as hex */
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int open_store(struct fixture *f)
{
	char err[256] = "";
	int ret = store_open(&f->s, f->db, 22000, 22010, 4, err, sizeof(err));

	if (ret)
		print_error("store_open: %s\n", err);
	return ret;
}

static void new_tunnel(struct fixture *f, const char *group, char tid[STORE_TUNNEL_ID_LEN])
{
	struct store_token t;
	char tok[STORE_SECRET_LEN];

	assert_int_equal(store_token_create(f->s, group, "test", &t, tok), 0);
	memcpy(tid, t.tunnel_id, STORE_TUNNEL_ID_LEN);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	uint8_t key[32], md[32];

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_support.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/nave.db", f->dir);
	if (open_store(f))
		return -1;
	new_tunnel(f, "box", f->tid);
	new_tunnel(f, "cam", f->other);
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)(i * 7 + 1);
	hex_encode(key, sizeof(key), f->auth);
	SHA256(key, sizeof(key), md);
	hex_encode(md, sizeof(md), f->hash);
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

static const char *const two[] = {"ssh", "web"};

/* A new session of tid for expires seconds at now; its id into id. */
static void create(struct fixture *f, const char *tid, int64_t expires, int64_t now,
		   char id[STORE_SUP_ID_LEN])
{
	struct store_support r;
	char err[256] = "";

	assert_int_equal(store_support_create(f->s, tid, "disk full", two, 2, f->hash, expires,
					      "{\"source\":\"192.0.2.1\"}", now, &r, err,
					      sizeof(err)),
			 0);
	assert_true(store_support_id_ok(r.id));
	assert_string_equal(r.tunnel_id, tid);
	assert_int_equal(r.state, STORE_SUP_PENDING);
	assert_int_equal(r.created_at, now / 1000);
	assert_int_equal(r.expires_at, now / 1000 + expires);
	assert_string_equal(r.services, "[\"ssh\",\"web\"]");
	assert_string_equal(r.auth_hash, f->hash);
	memcpy(id, r.id, STORE_SUP_ID_LEN);
}

static int state_at(struct fixture *f, const char *id, int64_t now)
{
	struct store_support r;

	assert_int_equal(store_support_get(f->s, id, now, &r), 0);
	return r.state;
}

static void test_values(void **state)
{
	char s201[2 * 201 + 1], s200[2 * 200 + 1];

	(void)state;
	assert_true(store_support_id_ok("sup-k3x9q2m7ab"));
	assert_true(store_support_id_ok("sup-0000000000"));
	assert_false(store_support_id_ok("sup-K3x9q2m7ab"));
	assert_false(store_support_id_ok("sup-k3x9q2m7a"));
	assert_false(store_support_id_ok("sup-k3x9q2m7abc"));
	assert_false(store_support_id_ok("sup_k3x9q2m7ab"));
	assert_false(store_support_id_ok("sup-k3x9q2m7a-"));
	assert_false(store_support_id_ok(""));
	assert_false(store_support_id_ok(NULL));
	assert_true(store_support_service_ok("ssh"));
	assert_true(store_support_service_ok("A_b-9"));
	assert_true(store_support_service_ok("0123456789012345678901234567890"));
	assert_false(store_support_service_ok("01234567890123456789012345678901"));
	assert_false(store_support_service_ok("a b"));
	assert_false(store_support_service_ok("a.b"));
	assert_false(store_support_service_ok(""));
	assert_true(store_support_reason_ok("", 0));
	assert_true(store_support_reason_ok("caf\xc3\xa9 \xe2\x9c\x93", 9));
	assert_false(store_support_reason_ok("a\nb", 3));
	assert_false(store_support_reason_ok("a\x7f", 2));
	assert_false(store_support_reason_ok("a\xe2\x80\xae"
					     "b",
					     5));	      /* U+202E */
	assert_false(store_support_reason_ok("\xc3", 1));     /* cut */
	assert_false(store_support_reason_ok("\xc0\xaf", 2)); /* overlong */
	assert_false(store_support_reason_ok("a\0b", 3));
	for (int i = 0; i < 201; i++)
		memcpy(s201 + 2 * i, "\xc3\xa9", 2);
	s201[402] = 0;
	memcpy(s200, s201, 400);
	s200[400] = 0;
	assert_true(store_support_reason_ok(s200, 400));
	assert_false(store_support_reason_ok(s201, 402));
	assert_true(store_support_hex64_ok(
	    "00112233445566778899aabbccddeeffAABBCCDDEEFF00112233445566778899"));
	assert_false(store_support_hex64_ok(
	    "00112233445566778899aabbccddeeffAABBCCDDEEFF0011223344556677889"));
	assert_false(store_support_hex64_ok(
	    "00112233445566778899aabbccddeeffAABBCCDDEEFF0011223344556677889g"));
	assert_int_equal(store_support_state_of("pending"), STORE_SUP_PENDING);
	assert_int_equal(store_support_state_of("expired"), STORE_SUP_EXPIRED);
	assert_int_equal(store_support_state_of("Pending"), -1);
	assert_int_equal(store_support_state_of(NULL), -1);
}

static int count_cb(const struct store_support *r, void *arg)
{
	(void)r;
	(*(int *)arg)++;
	return 0;
}

static void test_create_refusals(void **state)
{
	struct fixture *f = *state;
	static const char *const dup[] = {"ssh", "ssh"}, *const bad[] = {"a b"};
	static const char *const nine[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
	struct store_support r;
	char err[256], upper[65];
	int n = 0;

	assert_int_equal(store_support_create(f->s, "t-000000000000", "", two, 2, f->hash, 60, NULL,
					      T0, &r, err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "unknown tunnel t-000000000000");
	assert_int_equal(store_support_create(f->s, "a b", "", two, 2, f->hash, 60, NULL, T0, &r,
					      err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "invalid tunnel_id");
	assert_int_equal(store_support_create(f->s, f->tid, "", dup, 2, f->hash, 60, NULL, T0, &r,
					      err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "service \"ssh\" is named twice");
	assert_int_equal(store_support_create(f->s, f->tid, "", bad, 1, f->hash, 60, NULL, T0, &r,
					      err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "bad service name: 1-31 characters: letters, digits, '_' and '-'");
	assert_int_equal(store_support_create(f->s, f->tid, "", nine, 9, f->hash, 60, NULL, T0, &r,
					      err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "a support session offers 1 to 8 services");
	assert_int_equal(store_support_create(f->s, f->tid, "", two, 0, f->hash, 60, NULL, T0, &r,
					      err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(store_support_create(f->s, f->tid, "x\ty", two, 2, f->hash, 60, NULL, T0,
					      &r, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "bad reason: at most 200 characters of UTF-8 text without "
				 "control characters");
	assert_int_equal(store_support_create(f->s, f->tid, "", two, 2, f->hash, 0, NULL, T0, &r,
					      err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "bad expiry: 1 s to 7 days");
	assert_int_equal(store_support_create(f->s, f->tid, "", two, 2, f->hash, 7 * 86400 + 1,
					      NULL, T0, &r, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(store_support_create(f->s, f->tid, "", two, 2, "abc", 60, NULL, T0, &r,
					      err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "bad auth_hash: 64 hex digits");
	/* a refused request stores nothing */
	assert_int_equal(store_support_list(f->s, -1, NULL, T0, 0, -1, count_cb, &n, NULL), 0);
	assert_int_equal(n, 0);
	/* an upper-case hash is stored lower case */
	for (int i = 0; i < 65; i++)
		upper[i] =
		    (char)(f->hash[i] >= 'a' && f->hash[i] <= 'f' ? f->hash[i] - 32 : f->hash[i]);
	assert_int_equal(store_support_create(f->s, f->tid, NULL, two, 1, upper, 7 * 86400, NULL,
					      T0, &r, err, sizeof(err)),
			 0);
	assert_string_equal(r.auth_hash, f->hash);
	assert_string_equal(r.reason, "");
	assert_string_equal(r.services, "[\"ssh\"]");
}

static void test_active_limit(void **state)
{
	struct fixture *f = *state;
	char ids[6][STORE_SUP_ID_LEN], err[256];
	struct store_support r;
	bool denied;

	create(f, f->tid, 60, T0, ids[0]);
	create(f, f->tid, 3600, T0, ids[1]);
	create(f, f->tid, 3600, T0, ids[2]);
	create(f, f->tid, 3600, T0, ids[3]);
	assert_int_equal(store_support_approve(f->s, ids[3], "local", T0, &r, err, sizeof(err)), 0);
	assert_int_equal(store_support_create(f->s, f->tid, "", two, 2, f->hash, 60, NULL, T0, &r,
					      err, sizeof(err)),
			 -EDQUOT);
	assert_string_equal(err, "this tunnel has 4 support sessions pending or approved already "
				 "(at most 4)");
	create(f, f->other, 60, T0, ids[4]); /* another tunnel's own four */
	/* one ended: room for one */
	assert_int_equal(
	    store_support_end(f->s, ids[1], f->tid, NULL, T0, &r, &denied, err, sizeof(err)), 0);
	create(f, f->tid, 60, T0, ids[5]);
	assert_int_equal(store_support_create(f->s, f->tid, "", two, 2, f->hash, 60, NULL, T0, &r,
					      err, sizeof(err)),
			 -EDQUOT);
	/* one expired (60 s): room again, counted at the time given */
	assert_int_equal(store_support_create(f->s, f->tid, "", two, 2, f->hash, 60, NULL,
					      T0 + 60000, &r, err, sizeof(err)),
			 0);
}

static void test_states(void **state)
{
	struct fixture *f = *state;
	char a[STORE_SUP_ID_LEN], b[STORE_SUP_ID_LEN], c[STORE_SUP_ID_LEN], err[256];
	struct store_support r;
	bool denied = true;

	create(f, f->tid, 100, T0, a);
	create(f, f->tid, 100, T0, b);
	create(f, f->tid, 100, T0, c);
	/* approve: only pending and unexpired; the approver and the time kept */
	assert_int_equal(
	    store_support_approve(f->s, a, "user:alice", T0 + 5000, &r, err, sizeof(err)), 0);
	assert_int_equal(r.state, STORE_SUP_APPROVED);
	assert_string_equal(r.approved_by, "user:alice");
	assert_int_equal(r.approved_at, T0 / 1000 + 5);
	assert_int_equal(store_support_approve(f->s, a, "local", T0, &r, err, sizeof(err)),
			 -EALREADY);
	snprintf(err + 128, 128, "support session %s is already approved", a);
	assert_string_equal(err, err + 128);
	assert_int_equal(
	    store_support_approve(f->s, "sup-0000000000", "local", T0, &r, err, sizeof(err)),
	    -ENOENT);
	assert_string_equal(err, "no support session sup-0000000000");
	assert_int_equal(store_support_approve(f->s, "sup-\x1b", "local", T0, &r, err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "no support session sup-\\x1b");
	/* expiry: computed at the time given */
	assert_int_equal(state_at(f, a, T0 + 99999), STORE_SUP_APPROVED);
	assert_int_equal(state_at(f, a, T0 + 100000), STORE_SUP_EXPIRED);
	assert_int_equal(state_at(f, b, T0 + 100000), STORE_SUP_EXPIRED);
	assert_int_equal(store_support_approve(f->s, b, "local", T0 + 100000, &r, err, sizeof(err)),
			 -ETIME);
	snprintf(err + 128, 128, "support session %s has expired", b);
	assert_string_equal(err, err + 128);
	assert_int_equal(
	    store_support_end(f->s, a, NULL, "local", T0 + 100000, &r, NULL, err, sizeof(err)),
	    -ETIME);
	/* the owner ends its own; another tunnel's is unknown to it */
	assert_int_equal(
	    store_support_end(f->s, c, f->other, NULL, T0, &r, &denied, err, sizeof(err)), -ENOENT);
	assert_int_equal(
	    store_support_end(f->s, c, f->tid, NULL, T0 + 1000, &r, &denied, err, sizeof(err)), 0);
	assert_false(denied);
	assert_int_equal(r.state, STORE_SUP_ENDED);
	snprintf(err + 128, 128, "tunnel:%s", f->tid);
	assert_string_equal(r.ended_by, err + 128);
	assert_int_equal(r.ended_at, T0 / 1000 + 1);
	/* ended stays ended, also past its expiry */
	assert_int_equal(state_at(f, c, T0 + 999999), STORE_SUP_ENDED);
	assert_int_equal(store_support_end(f->s, c, NULL, "local", T0, &r, NULL, err, sizeof(err)),
			 -ESRCH);
	snprintf(err + 128, 128, "support session %s was ended", c);
	assert_string_equal(err, err + 128);
	assert_int_equal(store_support_approve(f->s, c, "local", T0, &r, err, sizeof(err)), -ESRCH);
	/* the operator's end of a pending one is a denial; of an approved one an end */
	create(f, f->tid, 100, T0, b);
	assert_int_equal(
	    store_support_end(f->s, b, NULL, "apikey:0a1b2c3d", T0, &r, &denied, err, sizeof(err)),
	    0);
	assert_true(denied);
	assert_string_equal(r.ended_by, "apikey:0a1b2c3d");
	create(f, f->tid, 100, T0, b);
	assert_int_equal(store_support_approve(f->s, b, "local", T0, &r, err, sizeof(err)), 0);
	assert_int_equal(
	    store_support_end(f->s, b, NULL, "cert:ops", T0, &r, &denied, err, sizeof(err)), 0);
	assert_false(denied);
}

static void test_check(void **state)
{
	struct fixture *f = *state;
	char id[STORE_SUP_ID_LEN], err[256], want[256], wrong[65];
	struct store_support r;
	const char *code;
	int idx;

	create(f, f->tid, 100, T0, id);
	/* unknown and malformed ids */
	assert_int_equal(store_support_check(f->s, "sup-0000000000", "ssh", f->auth, T0, &r, &idx,
					     &code, err, sizeof(err)),
			 -EACCES);
	assert_string_equal(code, "unknown session");
	assert_int_equal(store_support_check(f->s, "x'; DROP TABLE", "ssh", f->auth, T0, &r, &idx,
					     &code, err, sizeof(err)),
			 -EACCES);
	assert_string_equal(err, "no support session x'; DROP TABLE");
	/* pending: not before the approval, whatever the key */
	assert_int_equal(
	    store_support_check(f->s, id, "ssh", f->auth, T0, &r, &idx, &code, err, sizeof(err)),
	    -EACCES);
	assert_string_equal(code, "not approved");
	snprintf(want, sizeof(want), "support session %s is not approved yet", id);
	assert_string_equal(err, want);
	assert_int_equal(store_support_approve(f->s, id, "local", T0, &r, err, sizeof(err)), 0);
	/* a wrong key, before the service is looked at */
	memcpy(wrong, f->auth, 65);
	wrong[63] = wrong[63] == '0' ? '1' : '0';
	assert_int_equal(
	    store_support_check(f->s, id, "nope", wrong, T0, &r, &idx, &code, err, sizeof(err)),
	    -EACCES);
	assert_string_equal(code, "wrong key");
	snprintf(want, sizeof(want), "wrong key for support session %s", id);
	assert_string_equal(err, want);
	/* the hash itself is no key */
	assert_int_equal(
	    store_support_check(f->s, id, "ssh", f->hash, T0, &r, &idx, &code, err, sizeof(err)),
	    -EACCES);
	assert_int_equal(
	    store_support_check(f->s, id, "ssh", "abcd", T0, &r, &idx, &code, err, sizeof(err)),
	    -EACCES);
	assert_int_equal(
	    store_support_check(f->s, id, "ssh", NULL, T0, &r, &idx, &code, err, sizeof(err)),
	    -EACCES);
	/* the right key: each service's place; another service refused with its name */
	assert_int_equal(
	    store_support_check(f->s, id, "ssh", f->auth, T0, &r, &idx, &code, err, sizeof(err)),
	    0);
	assert_int_equal(idx, 0);
	assert_null(code);
	assert_string_equal(r.tunnel_id, f->tid);
	assert_int_equal(
	    store_support_check(f->s, id, "web", f->auth, T0, &r, &idx, &code, err, sizeof(err)),
	    0);
	assert_int_equal(idx, 1);
	assert_int_equal(
	    store_support_check(f->s, id, "we", f->auth, T0, &r, &idx, &code, err, sizeof(err)),
	    -EACCES);
	assert_string_equal(code, "unknown service");
	snprintf(want, sizeof(want), "service \"we\" is not offered by support session %s", id);
	assert_string_equal(err, want);
	assert_int_equal(
	    store_support_check(f->s, id, "web\"", f->auth, T0, &r, &idx, &code, err, sizeof(err)),
	    -EACCES);
	assert_int_equal(
	    store_support_check(f->s, id, "sh", f->auth, T0, &r, &idx, &code, err, sizeof(err)),
	    -EACCES);
	/* the key is lower-case hex (common/support.h): upper case is not it */
	for (int i = 0; i < 64; i++)
		wrong[i] = (char)(f->auth[i] >= 'a' ? f->auth[i] - 32 : f->auth[i]);
	wrong[64] = 0;
	assert_int_equal(
	    store_support_check(f->s, id, "web", wrong, T0, &r, &idx, &code, err, sizeof(err)),
	    -EACCES);
	assert_string_equal(code, "wrong key");
	/* expired, then ended */
	assert_int_equal(store_support_check(f->s, id, "ssh", f->auth, T0 + 100000, &r, &idx, &code,
					     err, sizeof(err)),
			 -EACCES);
	assert_string_equal(code, "expired");
	assert_int_equal(store_support_end(f->s, id, NULL, "local", T0, &r, NULL, err, sizeof(err)),
			 0);
	assert_int_equal(
	    store_support_check(f->s, id, "ssh", f->auth, T0, &r, &idx, &code, err, sizeof(err)),
	    -EACCES);
	assert_string_equal(code, "ended");
}

struct seen {
	char ids[16][STORE_SUP_ID_LEN];
	int n;
};

static int seen_cb(const struct store_support *r, void *arg)
{
	struct seen *s = arg;

	if (s->n < 16)
		memcpy(s->ids[s->n++], r->id, STORE_SUP_ID_LEN);
	return 0;
}

static void test_list_and_expire(void **state)
{
	struct fixture *f = *state;
	char a[STORE_SUP_ID_LEN], b[STORE_SUP_ID_LEN], c[STORE_SUP_ID_LEN], err[256];
	struct store_support r;
	struct seen s = {0};
	int64_t total = -1;
	int n = 0;

	create(f, f->tid, 10, T0, a);
	create(f, f->tid, 100, T0 + 1000, b);
	create(f, f->other, 100, T0 + 2000, c);
	assert_int_equal(store_support_approve(f->s, a, "local", T0, &r, err, sizeof(err)), 0);
	/* newest first; filters by state (as of the time) and tunnel; pages */
	assert_int_equal(store_support_list(f->s, -1, NULL, T0 + 3000, 0, -1, seen_cb, &s, &total),
			 0);
	assert_int_equal(total, 3);
	assert_string_equal(s.ids[0], c);
	assert_string_equal(s.ids[1], b);
	assert_string_equal(s.ids[2], a);
	s.n = 0;
	assert_int_equal(store_support_list(f->s, -1, NULL, T0 + 3000, 1, 1, seen_cb, &s, &total),
			 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.ids[0], b);
	assert_int_equal(total, 3);
	s.n = 0;
	assert_int_equal(store_support_list(f->s, STORE_SUP_PENDING, f->tid, T0 + 3000, 0, -1,
					    seen_cb, &s, &total),
			 0);
	assert_int_equal(total, 1);
	assert_string_equal(s.ids[0], b);
	s.n = 0;
	assert_int_equal(store_support_list(f->s, STORE_SUP_APPROVED, NULL, T0 + 9999, 0, -1,
					    seen_cb, &s, &total),
			 0);
	assert_int_equal(total, 1);
	assert_int_equal(store_support_list(f->s, STORE_SUP_EXPIRED, NULL, T0 + 10000, 0, -1,
					    count_cb, &n, &total),
			 0);
	assert_int_equal(n, 1);
	/* expiry handled once: ended_by "expiry", the state stays "expired" */
	s.n = 0;
	assert_int_equal(store_support_expire(f->s, T0 + 9999, seen_cb, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(store_support_expire(f->s, T0 + 10000, seen_cb, &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.ids[0], a);
	assert_int_equal(store_support_expire(f->s, T0 + 200000, seen_cb, &s), 0);
	assert_int_equal(s.n, 3); /* b and c, not a again */
	assert_int_equal(store_support_get(f->s, a, T0 + 200000, &r), 0);
	assert_int_equal(r.state, STORE_SUP_EXPIRED);
	assert_string_equal(r.ended_by, "expiry");
	assert_int_equal(r.ended_at, T0 / 1000 + 10);
	s.n = 0;
	assert_int_equal(store_support_expire(f->s, T0 + 300000, seen_cb, &s), 0);
	assert_int_equal(s.n, 0);
	/* what is over since a time: all three */
	s.n = 0;
	assert_int_equal(store_support_over_since(f->s, T0 / 1000, T0 + 300000, 256, seen_cb, &s),
			 0);
	assert_int_equal(s.n, 3);
	s.n = 0;
	assert_int_equal(
	    store_support_over_since(f->s, T0 / 1000 + 11, T0 + 300000, 256, seen_cb, &s), 0);
	assert_int_equal(s.n, 2);
}

struct trail {
	char events[16][16];
	char actors[16][STORE_SUP_ACTOR_LEN];
	int64_t at[16];
	int n;
};

static int trail_cb(const struct store_support_audit *a, void *arg)
{
	struct trail *t = arg;

	if (t->n < 16) {
		str_copy(t->events[t->n], sizeof(t->events[0]), a->event);
		str_copy(t->actors[t->n], sizeof(t->actors[0]), a->actor);
		t->at[t->n++] = a->at;
	}
	return 0;
}

static void test_audit(void **state)
{
	struct fixture *f = *state;
	char id[STORE_SUP_ID_LEN], err[256], owner[STORE_SUP_ACTOR_LEN];
	struct store_support r;
	struct trail t = {0};
	int64_t total = 0;

	create(f, f->tid, 100, T0, id);
	assert_int_equal(
	    store_support_approve(f->s, id, "user:alice", T0 + 10, &r, err, sizeof(err)), 0);
	/* records at the same ms keep the order they came in */
	assert_int_equal(
	    store_support_audit_add(f->s, id, T0 + 20, "connected", "supporter", "{\"conn\":1}"),
	    0);
	assert_int_equal(
	    store_support_audit_add(f->s, id, T0 + 20, "disconnected", "supporter", "{\"conn\":1}"),
	    0);
	assert_int_equal(store_support_audit_add(f->s, id, T0 + 15, "refused", "supporter", ""), 0);
	assert_int_equal(
	    store_support_end(f->s, id, f->tid, NULL, T0 + 30, &r, NULL, err, sizeof(err)), 0);
	assert_int_equal(store_support_audit_add(f->s, "nope", T0, "x", "y", ""), -EINVAL);
	assert_int_equal(store_support_audit_list(f->s, id, -1, trail_cb, &t, &total), 0);
	assert_int_equal(total, 6);
	assert_int_equal(t.n, 6);
	snprintf(owner, sizeof(owner), "tunnel:%s", f->tid);
	assert_string_equal(t.events[0], "requested");
	assert_string_equal(t.actors[0], owner);
	assert_string_equal(t.events[1], "approved");
	assert_string_equal(t.actors[1], "user:alice");
	assert_string_equal(t.events[2], "refused");
	assert_string_equal(t.events[3], "connected");
	assert_string_equal(t.events[4], "disconnected");
	assert_string_equal(t.events[5], "ended");
	assert_string_equal(t.actors[5], owner);
	for (int i = 1; i < t.n; i++)
		assert_true(t.at[i - 1] <= t.at[i]);
	/* a detail too long to keep whole is left out, the record kept */
	{
		char *big = malloc(STORE_SUP_DETAIL_LEN + 1);
		struct trail one = {0};
		int64_t n = 0;

		assert_non_null(big);
		memset(big, 'x', STORE_SUP_DETAIL_LEN);
		big[STORE_SUP_DETAIL_LEN] = 0;
		assert_int_equal(
		    store_support_audit_add(f->s, id, T0 + 35, "refused", "supporter", big), 0);
		free(big);
		assert_int_equal(store_support_audit_list(f->s, id, -1, trail_cb, &one, &n), 0);
		assert_int_equal(n, 7);
		assert_string_equal(one.events[6], "refused");
	}
	/* the caps: refused connects stop first (room stays for connections), then all */
	for (int i = 7; i < STORE_SUP_AUDIT_REFUSED_MAX; i++)
		assert_int_equal(
		    store_support_audit_add(f->s, id, T0 + 40, "refused", "supporter", ""), 0);
	assert_int_equal(store_support_audit_add(f->s, id, T0 + 40, "refused", "supporter", ""),
			 -EDQUOT);
	for (int i = STORE_SUP_AUDIT_REFUSED_MAX; i < STORE_SUP_AUDIT_MAX; i++)
		assert_int_equal(
		    store_support_audit_add(f->s, id, T0 + 40, "connected", "supporter", ""), 0);
	assert_int_equal(store_support_audit_add(f->s, id, T0 + 40, "connected", "supporter", ""),
			 -EDQUOT);
	{
		int64_t n = 0;

		assert_int_equal(store_support_audit_count(f->s, id, &n), 0);
		assert_int_equal(n, STORE_SUP_AUDIT_MAX);
	}
	assert_int_equal(store_support_audit_list(f->s, id, 3, trail_cb, &t, &total), 0);
	assert_int_equal(total, STORE_SUP_AUDIT_MAX);
}

/* a device asking in a loop is bounded an hour; ended sessions are pruned after a while */
static void test_hour_limit_and_prune(void **state)
{
	struct fixture *f = *state;
	char id[STORE_SUP_ID_LEN], err[256];
	struct store_support r;
	int removed = -1;
	int64_t n = 0;

	for (int i = 0; i < STORE_SUP_HOUR_MAX; i++) {
		create(f, f->tid, 3600, T0 + i, id);
		assert_int_equal(
		    store_support_end(f->s, id, f->tid, NULL, T0 + i, &r, NULL, err, sizeof(err)),
		    0);
	}
	assert_int_equal(store_support_create(f->s, f->tid, "", two, 2, f->hash, 60, NULL, T0 + 100,
					      &r, err, sizeof(err)),
			 -EACCES);
	assert_string_equal(err, "this tunnel asked for 20 support sessions in the last hour (at "
				 "most 20): try again later");
	/* an hour later it may ask again; another tunnel never was limited */
	create(f, f->other, 60, T0 + 100, id);
	create(f, f->tid, 60, T0 + 3601000, id);
	/* pruning: what ended before the time given goes, with its audit trail */
	assert_int_equal(store_support_audit_count(f->s, id, &n), 0);
	assert_true(n >= 1);
	assert_int_equal(store_support_prune(f->s, T0 / 1000 + 10, &removed), 0);
	assert_int_equal(removed, STORE_SUP_HOUR_MAX);
	assert_int_equal(store_support_get(f->s, id, T0 + 3601000, &r), 0); /* kept */
	assert_int_equal(store_support_prune(f->s, T0 / 1000 + 10, &removed), 0);
	assert_int_equal(removed, 0);
}

static void test_persists(void **state)
{
	struct fixture *f = *state;
	char id[STORE_SUP_ID_LEN], err[256];
	struct store_support r;

	create(f, f->tid, 100, T0, id);
	assert_int_equal(store_support_approve(f->s, id, "local", T0, &r, err, sizeof(err)), 0);
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(open_store(f), 0);
	assert_int_equal(store_support_get(f->s, id, T0, &r), 0);
	assert_int_equal(r.state, STORE_SUP_APPROVED);
	assert_string_equal(r.reason, "disk full");
	assert_string_equal(r.approved_by, "local");
	assert_int_equal(store_support_get(f->s, "sup-0000000000", T0, &r), -ENOENT);
	assert_int_equal(store_support_get(f->s, "bad", T0, &r), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_values),
	    cmocka_unit_test_setup_teardown(test_create_refusals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_active_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_states, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_check, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_and_expire, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hour_limit_and_prune, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_persists, setup, teardown),
	};

	log_init("test_support_store", NLOG_WARN, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for controld's support sessions on relay.sock (ctl/support.c and the
 * store_support_* of ctl/store.c): the input is the JSON of one support_* message as
 * relayd would send it, handled against a real store in a temporary directory (no relayd
 * is connected: the answers go nowhere). "T" as a tunnel_id and "S" as a session stand for
 * the store's tunnel and an approved session of it (made again for each input, with the
 * auth key "00..01"). Beyond "never crash": a malformed message is -EBADMSG with a one-line
 * printable reason; whatever the store holds afterwards is within what the rest of
 * controld and the API rely on: ids of the shape, 1-8 distinct valid service names as a
 * JSON array, a reason of printable UTF-8 (at most 200 characters), a lower-case 64-hex
 * hash, a known state, times in order, every audit detail empty or a JSON object, and a
 * session's JSON as the API writes it.
 *
 *   see run.sh's deps() for the link line
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "config/cfg.h"
#include "ctl/relaylink.h"
#include "ctl/store.h"
#include "ctl/support.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct store *st;
static struct relaylink *rl;
static struct support *sp;
static struct cfg_server cfg;
static char tid[STORE_TUNNEL_ID_LEN];
static char dir[] = "/tmp/fuzz_support.XXXXXX";

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_support_ctl: %s\n", what);
	abort();
}

/* At exit: the store closed, its directory removed. */
static void cleanup(void)
{
	static const char *const files[] = {"nave.db", "nave.db-wal", "nave.db-shm"};
	char path[64];

	support_close(sp);
	relaylink_close(rl);
	store_close(st);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

static void init(void)
{
	char path[64], err[256], tok[STORE_SECRET_LEN];
	struct store_token t;

	log_init("fuzz_support_ctl", NLOG_ERROR + 1, false);
	if (!mkdtemp(dir))
		fail("mkdtemp");
	snprintf(path, sizeof(path), "%s/nave.db", dir);
	if (store_open(&st, path, 22000, 22010, 4, err, sizeof(err)))
		fail(err);
	if (store_token_create(st, "box", "fuzz", &t, tok))
		fail("token");
	memcpy(tid, t.tunnel_id, sizeof(tid));
	if (relaylink_open(&rl, -1, st, &cfg) || support_open(&sp, st))
		fail("open");
	relaylink_set_support(rl, sp);
	atexit(cleanup);
}

/* "T" -> the tunnel, "S" -> the session, in the members that name them */
static void substitute(json_t *m, const char *sid)
{
	static const char *const keys[] = {"tunnel_id", "session", "id"};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *v = json_string_value(json_object_get(m, keys[i]));

		if (v && !strcmp(v, "T"))
			json_object_set_new(m, keys[i], json_string(tid));
		else if (v && !strcmp(v, "S"))
			json_object_set_new(m, keys[i], json_string(sid));
	}
}

static void check_line(const char *why)
{
	size_t n = strlen(why);

	if (!n || n > 255)
		fail("a refusal without a reason, or an unterminated one");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)why[i] < 0x20 || why[i] == 0x7f)
			fail("a reason with a control character");
}

static int audit_cb(const struct store_support_audit *a, void *arg)
{
	json_t *d;

	(void)arg;
	if (!store_support_id_ok(a->session) || !a->event[0] || !a->actor[0])
		fail("an audit record without its session, event or actor");
	if (!a->detail[0])
		return 0;
	d = json_loads(a->detail, 0, NULL);
	if (!json_is_object(d))
		fail("an audit detail that is not a JSON object");
	json_decref(d);
	return 0;
}

static int session_cb(const struct store_support *r, void *arg)
{
	json_t *svc, *o, *v;
	size_t i, j;

	(void)arg;
	if (!store_support_id_ok(r->id) || strcmp(r->tunnel_id, tid) != 0)
		fail("a session with a bad id or another tunnel");
	if (!store_support_reason_ok(r->reason, strlen(r->reason)))
		fail("a stored reason that is not printable UTF-8 of 200 characters");
	if (!store_support_hex64_ok(r->auth_hash) || strpbrk(r->auth_hash, "ABCDEF"))
		fail("a stored hash that is not lower-case hex");
	if (r->state < 0 || r->state >= STORE_SUP_STATES || r->expires_at <= r->created_at ||
	    r->expires_at - r->created_at > STORE_SUP_EXPIRES_MAX)
		fail("a state or times out of range");
	svc = json_loads(r->services, 0, NULL);
	if (!json_is_array(svc) || !json_array_size(svc) ||
	    json_array_size(svc) > STORE_SUP_SERVICES_MAX)
		fail("services that are not an array of 1-8");
	json_array_foreach(svc, i, v)
	{
		if (!store_support_service_ok(json_string_value(v)))
			fail("a bad service name stored");
		for (j = 0; j < i; j++)
			if (json_equal(v, json_array_get(svc, j)))
				fail("a service named twice");
	}
	json_decref(svc);
	o = support_json(r, support_live(sp, r->id));
	if (!o || json_array_size(json_object_get(o, "services")) == 0 ||
	    !json_is_string(json_object_get(o, "reason")))
		fail("a session the API cannot write");
	json_decref(o);
	if (store_support_audit_list(st, r->id, -1, audit_cb, NULL, NULL))
		fail("audit list");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const two[] = {"ssh", "web"};
	char why[256] = "", err[256], hash[65];
	struct store_support r;
	json_t *m;
	int ret;

	if (!st)
		init();
	sqlite3_exec(store_sqlite(st), "DELETE FROM support_sessions; DELETE FROM support_audit",
		     NULL, NULL, NULL);
	/* SHA-256 of 31 zero bytes and a one */
	snprintf(hash, sizeof(hash), "%s",
		 "ec4916dd28fc4c10d78e287ca5d9cc51ee1ae73cbfde08c6b37324cbfaac8bc5");
	if (store_support_create(st, tid, "fuzz", two, 2, hash, 3600, NULL, 1800000000000LL, &r,
				 err, sizeof(err)) ||
	    store_support_approve(st, r.id, "local", 1800000000000LL, &r, err, sizeof(err)))
		fail(err);
	m = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(m) || !json_is_string(json_object_get(m, "type"))) {
		json_decref(m);
		return 0;
	}
	substitute(m, r.id);
	ret = support_handle(sp, rl, m, why, sizeof(why));
	json_decref(m);
	if (ret && ret != -EBADMSG)
		fail("an error other than -EBADMSG");
	if (ret)
		check_line(why);
	if (store_support_list(st, -1, NULL, 1800000000000LL, 0, -1, session_cb, NULL, NULL))
		fail("list");
	return 0;
}

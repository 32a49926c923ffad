// SPDX-License-Identifier: Apache-2.0
/*
 * Remote rule operations: the per-tunnel queue of ruleops.h in the store's
 * rule_ops table (schema migration 6). An operation is pending until the
 * tunnel's client answers it (applied, or failed with the client's reason),
 * or relayd answers for it (failed: "client too old"). At most one operation
 * per tunnel is in flight (sent = 1); the next goes when it is answered, so a
 * client applies them in the order they were queued. An operation in flight
 * when the tunnel, or relayd, goes away is pushed again later; the client
 * answers a repeated add of a rule it holds already as applied.
 */
#include "ruleops.h"

#include "ctl/relaylink.h"
#include "ctl/store.h"
#include "ctl_proto.h"
#include "link_proto.h"
#include "log.h"
#include "msg.h"
#include "rulemsg.h"
#include "util.h"
#include "valid.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static sqlite3_stmt *prep(struct store *st, const char *sql)
{
	sqlite3_stmt *s = NULL;

	if (sqlite3_prepare_v2(store_sqlite(st), sql, -1, &s, NULL) != SQLITE_OK) {
		log_error("rule_ops: %s: %s", sql, sqlite3_errmsg(store_sqlite(st)));
		return NULL;
	}
	return s;
}

/* Runs a statement with text and integer arguments ("s" and "i" in types); 0 or -EIO. */
static int run(struct store *st, const char *sql, const char *types, ...)
{
	sqlite3_stmt *s = prep(st, sql);
	va_list ap;
	int rc;

	if (!s)
		return -EIO;
	va_start(ap, types);
	for (int i = 0; types[i]; i++) {
		if (types[i] == 's') {
			const char *v = va_arg(ap, const char *);

			if (v)
				sqlite3_bind_text(s, i + 1, v, -1, SQLITE_TRANSIENT);
			else
				sqlite3_bind_null(s, i + 1);
		} else {
			sqlite3_bind_int64(s, i + 1, va_arg(ap, long long));
		}
	}
	va_end(ap);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_error("rule_ops: %s", sqlite3_errmsg(store_sqlite(st)));
		return -EIO;
	}
	return 0;
}

static bool tunnel_online(struct store *st, const char *tid, int *found)
{
	struct store_tunnel t;
	int ret = store_tunnel_get(st, tid, &t);

	*found = ret;
	return !ret && t.state == STORE_ONLINE;
}

static const char *col_text(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	return t ? (const char *)t : NULL;
}

#define OP_COLS                                                                                    \
	"id, tunnel_id, action, name, rule, state, sent, reason, port, created_at, updated_at"

/* The API's record of the operation in the current row (OP_COLS). */
static json_t *op_json(sqlite3_stmt *s)
{
	json_t *rule = json_loads(col_text(s, 4) ?: "{}", 0, NULL), *o;
	const char *reason = col_text(s, 7);

	if (!rule)
		rule = json_object();
	if (json_is_string(json_object_get(rule, "basic_auth"))) {
		/* never a hash in an answer: the user only, as `nave tunnel ls` shows it */
		char user[LINK_AUTH_USER_MAX + 1];

		str_copy(user, sizeof(user),
			 json_string_value(json_object_get(rule, "basic_auth")));
		*strchrnul(user, ':') = 0;
		json_object_del(rule, "basic_auth");
		json_object_set_new(rule, "basic_auth_user", json_string(user));
	}
	o = json_pack("{s:I, s:s, s:s, s:s, s:o, s:s, s:b, s:o, s:o, s:I, s:I}", "id",
		      (json_int_t)sqlite3_column_int64(s, 0), "tunnel_id", col_text(s, 1) ?: "",
		      "action", col_text(s, 2) ?: "", "name", col_text(s, 3) ?: "", "rule", rule,
		      "state", col_text(s, 5) ?: "", "sent", sqlite3_column_int(s, 6) != 0,
		      "reason", reason ? json_string(reason) : json_null(), "port",
		      sqlite3_column_type(s, 8) == SQLITE_NULL
			  ? json_null()
			  : json_integer(sqlite3_column_int64(s, 8)),
		      "created_at", (json_int_t)sqlite3_column_int64(s, 9), "updated_at",
		      (json_int_t)sqlite3_column_int64(s, 10));
	if (o && json_object_get(rule, "kind"))
		json_object_set(o, "kind", json_object_get(rule, "kind"));
	else if (o)
		json_object_set_new(o, "kind", json_null());
	return o;
}

static json_t *op_get(struct store *st, long long id)
{
	sqlite3_stmt *s = prep(st, "SELECT " OP_COLS " FROM rule_ops WHERE id = ?1");
	json_t *o = NULL;

	if (!s)
		return NULL;
	sqlite3_bind_int64(s, 1, id);
	if (sqlite3_step(s) == SQLITE_ROW)
		o = op_json(s);
	sqlite3_finalize(s);
	return o;
}

static long long count_pending(struct store *st, const char *tid)
{
	sqlite3_stmt *s =
	    prep(st, "SELECT count(*) FROM rule_ops WHERE tunnel_id = ?1 AND state = 'pending'");
	long long n = -1;

	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, tid, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return n;
}

int ruleops_queue(struct store *st, struct relaylink *rl, const char *tunnel_id, const json_t *op,
		  json_t **out)
{
	char *text = json_dumps(op, JSON_COMPACT | JSON_SORT_KEYS);
	long long now = (long long)time(NULL), id, n;
	int found;

	*out = NULL;
	if (!text)
		return -EIO;
	tunnel_online(st, tunnel_id, &found);
	if (found) {
		free(text);
		return found == -ENOENT ? -ENOENT : -EIO;
	}
	n = count_pending(st, tunnel_id);
	if (n < 0 || n >= RULEOPS_PENDING_MAX) {
		free(text);
		return n < 0 ? -EIO : -ENOSPC;
	}
	if (run(st,
		"INSERT INTO rule_ops (tunnel_id, action, name, rule, created_at, updated_at) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
		"ssssi", tunnel_id, msg_str(op, "action"), msg_str(op, "name"), text, now)) {
		free(text);
		return -EIO;
	}
	free(text);
	id = (long long)sqlite3_last_insert_rowid(store_sqlite(st));
	log_info("tunnel %s: remote rule operation %lld queued: %s rule %s", tunnel_id, id,
		 msg_str(op, "action"), msg_str(op, "name"));
	ruleops_pump(st, rl, tunnel_id);
	*out = op_get(st, id);
	return *out ? 0 : -EIO;
}

/* The tunnel's rules as controld knows them: ports and domains held under a rule name. */
static int port_cb(const struct store_port *p, void *arg)
{
	if (p->rule[0])
		json_array_append_new(arg, json_pack("{s:s, s:s, s:i}", "name", p->rule, "kind",
						     p->transport, "port", (int)p->port));
	return 0;
}

static int domain_cb(const struct store_domain *d, void *arg)
{
	if (d->rule[0])
		json_array_append_new(arg, json_pack("{s:s, s:s, s:s}", "name", d->rule, "kind",
						     "http", "domain", d->domain));
	return 0;
}

int ruleops_list(struct store *st, const char *tunnel_id, json_t **out)
{
	json_t *rules = json_array(), *ops = json_array();
	sqlite3_stmt *s;
	bool online;
	int found, rc;

	*out = NULL;
	online = tunnel_online(st, tunnel_id, &found);
	if (found || !rules || !ops) {
		json_decref(rules);
		json_decref(ops);
		return found == -ENOENT ? -ENOENT : -EIO;
	}
	if (store_port_list(st, tunnel_id, 0, -1, port_cb, rules, NULL) ||
	    store_domain_list(st, tunnel_id, 0, -1, domain_cb, rules, NULL))
		goto fail;
	s = prep(st, "SELECT " OP_COLS " FROM rule_ops WHERE tunnel_id = ?1 ORDER BY id");
	if (!s)
		goto fail;
	sqlite3_bind_text(s, 1, tunnel_id, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		json_array_append_new(ops, op_json(s));
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		goto fail;
	*out =
	    json_pack("{s:s, s:b, s:o, s:o, s:I, s:i}", "tunnel_id", tunnel_id, "online", online,
		      "rules", rules, "ops", ops, "pending",
		      (json_int_t)count_pending(st, tunnel_id), "pending_max", RULEOPS_PENDING_MAX);
	return *out ? 0 : -EIO;
fail:
	json_decref(rules);
	json_decref(ops);
	return -EIO;
}

static void pump_one(struct store *st, struct relaylink *rl, const char *tid)
{
	sqlite3_stmt *s;
	long long id = 0;
	json_t *m = NULL;
	int found;

	if (!relaylink_connected(rl) || !tunnel_online(st, tid, &found))
		return;
	s = prep(st, "SELECT id, rule, sent FROM rule_ops WHERE tunnel_id = ?1 AND state = "
		     "'pending' ORDER BY id LIMIT 1");
	if (!s)
		return;
	sqlite3_bind_text(s, 1, tid, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) == SQLITE_ROW && !sqlite3_column_int(s, 2)) {
		id = sqlite3_column_int64(s, 0);
		m = json_loads(col_text(s, 1) ?: "", 0, NULL);
	}
	sqlite3_finalize(s);
	if (!id)
		return; /* nothing pending, or the oldest is in flight */
	if (!json_is_object(m)) {
		json_decref(m);
		run(st,
		    "UPDATE rule_ops SET state = 'failed', reason = 'unreadable in the store', "
		    "updated_at = ?2 WHERE id = ?1",
		    "ii", id, (long long)time(NULL));
		return;
	}
	json_object_set_new(m, "type", json_string(CTL_RULE_PUSH));
	json_object_set_new(m, "op", json_integer(id));
	json_object_set_new(m, "tunnel_id", json_string(tid));
	if (relaylink_rule_push(rl, m) == 0 &&
	    !run(st, "UPDATE rule_ops SET sent = 1, sent_at = ?2 WHERE id = ?1", "ii", id,
		 (long long)time(NULL)))
		log_info("tunnel %s: remote rule operation %lld pushed", tid, id);
	json_decref(m);
}

void ruleops_pump(struct store *st, struct relaylink *rl, const char *tunnel_id)
{
	sqlite3_stmt *s;
	json_t *ids;
	json_t *v;
	size_t i;

	if (tunnel_id) {
		pump_one(st, rl, tunnel_id);
		return;
	}
	s = prep(st, "SELECT DISTINCT o.tunnel_id FROM rule_ops o JOIN tunnels t ON t.id = "
		     "o.tunnel_id WHERE o.state = 'pending' AND t.state = 'online'");
	ids = json_array();
	if (!s || !ids) {
		sqlite3_finalize(s);
		json_decref(ids);
		return;
	}
	while (sqlite3_step(s) == SQLITE_ROW)
		json_array_append_new(ids, json_string(col_text(s, 0) ?: ""));
	sqlite3_finalize(s);
	json_array_foreach(ids, i, v) pump_one(st, rl, json_string_value(v));
	json_decref(ids);
}

void ruleops_unsend(struct store *st, const char *tunnel_id)
{
	if (tunnel_id)
		run(st, "UPDATE rule_ops SET sent = 0 WHERE sent = 1 AND tunnel_id = ?1", "s",
		    tunnel_id);
	else
		run(st, "UPDATE rule_ops SET sent = 0 WHERE sent = 1", "");
}

/* The operation is done: applied or failed; the oldest done ones beyond the kept go. */
static void finish(struct store *st, long long id, const char *tid, bool ok, long long port,
		   const char *reason)
{
	long long now = (long long)time(NULL);

	if (port > 0)
		run(st,
		    "UPDATE rule_ops SET state = ?2, sent = 0, reason = ?3, port = ?4, "
		    "updated_at = ?5 WHERE id = ?1",
		    "issii", id, ok ? "applied" : "failed", reason, port, now);
	else
		run(st,
		    "UPDATE rule_ops SET state = ?2, sent = 0, reason = ?3, updated_at = ?4 "
		    "WHERE id = ?1",
		    "issi", id, ok ? "applied" : "failed", reason, now);
	run(st,
	    "DELETE FROM rule_ops WHERE tunnel_id = ?1 AND state != 'pending' AND id NOT IN "
	    "(SELECT id FROM rule_ops WHERE tunnel_id = ?1 AND state != 'pending' "
	    "ORDER BY id DESC LIMIT ?2)",
	    "si", tid, (long long)RULEOPS_DONE_KEPT);
	if (ok)
		log_info("tunnel %s: remote rule operation %lld applied%s", tid, id,
			 port > 0 ? " (public port given)" : "");
	else
		log_warn("tunnel %s: remote rule operation %lld failed: %s", tid, id,
			 reason ?: "no reason given");
}

/*
 * The public port an applied TCP add holds: the store's word (the port relayd granted
 * under the rule's name), not the client's; 0 for anything else.
 */
static long long held_port(struct store *st, long long op, const char *tid)
{
	sqlite3_stmt *s = prep(st, "SELECT p.port FROM rule_ops o JOIN ports p ON p.tunnel_id = "
				   "o.tunnel_id AND p.rule = o.name WHERE o.id = ?1 AND "
				   "o.tunnel_id = ?2 AND o.action = 'add'");
	long long port = 0;

	if (!s)
		return 0;
	sqlite3_bind_int64(s, 1, op);
	sqlite3_bind_text(s, 2, tid, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) == SQLITE_ROW)
		port = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return port;
}

int ruleops_result(struct store *st, struct relaylink *rl, const json_t *m, char *why,
		   size_t whylen)
{
	const char *tid = msg_str(m, "tunnel_id");
	long long op = rulemsg_op(m);
	sqlite3_stmt *s;
	bool pending = false, sent = false, mine = false;

	if (!tid || !valid_str(tid, VALID_ID, LINK_ID_MAX - 1)) {
		snprintf(why, whylen, "rule_result: tunnel_id missing or malformed");
		return -EBADMSG;
	}
	if (!rulemsg_result_check(m, why, whylen))
		return -EBADMSG;
	s = prep(st, "SELECT tunnel_id, state, sent FROM rule_ops WHERE id = ?1");
	if (!s)
		return 0;
	sqlite3_bind_int64(s, 1, op);
	if (sqlite3_step(s) == SQLITE_ROW) {
		mine = !strcmp(col_text(s, 0) ?: "", tid);
		pending = !strcmp(col_text(s, 1) ?: "", "pending");
		sent = sqlite3_column_int(s, 2) != 0;
	}
	sqlite3_finalize(s);
	if (!mine || !pending || !sent) {
		log_every(NLOG_WARN,
			  "tunnel %s: a rule_result for operation %lld, which is not in flight "
			  "for it: ignored",
			  tid, op);
		return 0;
	}
	if (json_is_true(json_object_get(m, "retry"))) {
		/* not delivered (the tunnel is not online at relayd): again when it is */
		ruleops_unsend(st, tid);
		return 0;
	}
	finish(st, op, tid, json_is_true(json_object_get(m, "ok")), held_port(st, op, tid),
	       msg_str(m, "reason"));
	ruleops_pump(st, rl, tid);
	return 0;
}

void ruleops_tick(struct store *st, struct relaylink *rl)
{
	static long long last;
	long long now = (long long)time(NULL);
	sqlite3_stmt *s;
	json_t *late;
	json_t *v;
	size_t i;

	if (now == last)
		return;
	last = now;
	s = prep(st, "SELECT id, tunnel_id FROM rule_ops WHERE sent = 1 AND state = 'pending' "
		     "AND sent_at < ?1");
	late = json_array();
	if (!s || !late) {
		sqlite3_finalize(s);
		json_decref(late);
		return;
	}
	sqlite3_bind_int64(s, 1, now - RULEOPS_ANSWER_S);
	while (sqlite3_step(s) == SQLITE_ROW)
		json_array_append_new(
		    late, json_pack("[I, s]", sqlite3_column_int64(s, 0), col_text(s, 1) ?: ""));
	sqlite3_finalize(s);
	json_array_foreach(late, i, v)
	{
		const char *tid = json_string_value(json_array_get(v, 1));

		finish(st, (long long)json_integer_value(json_array_get(v, 0)), tid, false, 0,
		       "no answer from the client in time");
		ruleops_pump(st, rl, tid);
	}
	json_decref(late);
}

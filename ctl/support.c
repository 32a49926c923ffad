// SPDX-License-Identifier: Apache-2.0
/*
 * Support sessions, controld's side of relay.sock (ctl_proto.h support_*): requests are
 * stored pending, connects are checked against the store (approved, unexpired, the key's
 * hash, the service) after the rate limits of this file, the owner's end and list are
 * answered, relayd's connected/disconnected events become audit records and the live
 * count of each session. A session leaving the approved state is pushed to relayd as
 * support_kill. The in-memory state (rate windows, live counts) is small fixed tables:
 * a full table forgets its oldest idle entry.
 */
#include "support.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cidr.h"
#include "ctl/relaylink.h"
#include "ctl/store.h"
#include "ctl_proto.h"
#include "log.h"
#include "msg.h"
#include "util.h"
#include "valid.h"

#define SESSION_SLOTS 1024
#define SOURCE_SLOTS  1024
#define WINDOW_MS     60000u
#define REFUSED_GAP   1000u /* ms between two refused records of a session */
#define TICK_MS	      1000u
#define ADDR_MAX      63
#define WHY_MAX	      128

struct sess_slot {
	char id[STORE_SUP_ID_LEN]; /* "": free */
	unsigned conns;		   /* live connections */
	uint64_t win_ms;	   /* connect attempts counted since */
	unsigned attempts;
	uint64_t refused_ms; /* the last refused record written (0: none) */
	uint64_t used_ms;
};

struct src_slot {
	char addr[ADDR_MAX + 1]; /* "": free */
	uint64_t win_ms;
	unsigned attempts;
};

struct support {
	struct store *st;
	struct sess_slot sess[SESSION_SLOTS];
	struct src_slot src[SOURCE_SLOTS];
	uint64_t tick_ms;
	unsigned gen; /* relaylink_generation seen last */
};

int support_open(struct support **out, struct store *st)
{
	struct support *sp = calloc(1, sizeof(*sp));

	*out = sp;
	if (!sp)
		return -ENOMEM;
	sp->st = st;
	return 0;
}

void support_close(struct support *sp)
{
	free(sp);
}

/* Wall-clock Unix milliseconds: the store's times. */
static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- in-memory state --- */

static struct sess_slot *sess_find(struct support *sp, const char *id)
{
	for (size_t i = 0; i < SESSION_SLOTS; i++)
		if (sp->sess[i].id[0] && !strcmp(sp->sess[i].id, id))
			return &sp->sess[i];
	return NULL;
}

/* The slot of id, made when missing (a free one, else the idle one used longest ago). */
static struct sess_slot *sess_get(struct support *sp, const char *id, uint64_t now)
{
	struct sess_slot *s = sess_find(sp, id), *old = NULL;

	for (size_t i = 0; !s && i < SESSION_SLOTS; i++) {
		struct sess_slot *c = &sp->sess[i];

		if (!c->id[0]) {
			old = c;
			break;
		}
		if (!c->conns && (!old || c->used_ms < old->used_ms))
			old = c;
	}
	if (!s && old) {
		memset(old, 0, sizeof(*old));
		str_copy(old->id, sizeof(old->id), id);
		s = old;
	}
	if (s)
		s->used_ms = now;
	return s;
}

unsigned support_live(const struct support *sp, const char *id)
{
	if (!sp || !id)
		return 0;
	for (size_t i = 0; i < SESSION_SLOTS; i++)
		if (sp->sess[i].id[0] && !strcmp(sp->sess[i].id, id))
			return sp->sess[i].conns;
	return 0;
}

/* Counts an attempt in a one-minute window: false when it is past max. */
static bool window_take(uint64_t *win_ms, unsigned *attempts, unsigned max, uint64_t now)
{
	if (!*win_ms || now - *win_ms >= WINDOW_MS) {
		*win_ms = now;
		*attempts = 0;
	}
	if (*attempts >= max)
		return false;
	(*attempts)++;
	return true;
}

/* A connect attempt from addr: false when the address is past its limit. */
static bool source_take(struct support *sp, const char *addr, uint64_t now)
{
	struct src_slot *s = NULL, *spare = NULL;

	for (size_t i = 0; i < SOURCE_SLOTS; i++) {
		struct src_slot *c = &sp->src[i];

		if (c->addr[0] && !strcmp(c->addr, addr)) {
			s = c;
			break;
		}
		/* a free slot, else the one whose window began first */
		if (!spare || (spare->addr[0] && (!c->addr[0] || c->win_ms < spare->win_ms)))
			spare = c;
	}
	if (!s) {
		s = spare;
		memset(s, 0, sizeof(*s));
		str_copy(s->addr, sizeof(s->addr), addr);
	}
	return window_take(&s->win_ms, &s->attempts, SUPPORT_SRC_PER_MIN, now);
}

/* --- output --- */

static int reply(struct relaylink *rl, json_t *o)
{
	return relaylink_send(rl, o);
}

static int reply_error(struct relaylink *rl, json_int_t req, const char *reason)
{
	return reply(rl,
		     json_pack("{s:s, s:I, s:s}", "type", CTL_ERROR, "req", req, "reason", reason));
}

int support_kill(struct relaylink *rl, const char *id, const char *why)
{
	return relaylink_send(
	    rl, json_pack("{s:s, s:s, s:s}", "type", CTL_SUPPORT_KILL, "id", id, "why", why));
}

void support_actor(const char *who, char *out, size_t len)
{
	static const struct {
		const char *prefix, *as;
	} map[] = {{"user ", "user:"}, {"API key ", "apikey:"}, {"cert ", "cert:"}};

	if (!who || !*who) {
		str_copy(out, len, "local");
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
		size_t n = strlen(map[i].prefix);

		if (!strncmp(who, map[i].prefix, n)) {
			snprintf(out, len, "%s%s", map[i].as, who + n);
			return;
		}
	}
	str_copy(out, len, who);
}

json_t *support_detail_json(const char *detail)
{
	json_t *v;

	if (!detail || !*detail)
		return json_null();
	v = json_loads(detail, 0, NULL);
	if (v && json_is_object(v))
		return v;
	json_decref(v);
	v = json_string(detail);
	return v ? v : json_null();
}

static json_t *opt_str(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

static json_t *opt_time(int64_t t)
{
	return t ? json_integer(t) : json_null();
}

json_t *support_json(const struct store_support *r, unsigned live)
{
	json_t *services = json_loads(r->services, 0, NULL), *reason = json_string(r->reason);

	if (!json_is_array(services)) {
		json_decref(services);
		services = json_array();
	}
	if (!reason)
		reason = json_string(""); /* not UTF-8: never stored so, but never fatal */
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:o, s:o, s:o, s:o, s:I}", "id",
			 r->id, "tunnel_id", r->tunnel_id, "state", store_sup_state_names[r->state],
			 "reason", reason, "services", services, "created_at",
			 (json_int_t)r->created_at, "expires_at", (json_int_t)r->expires_at,
			 "approved_by", opt_str(r->approved_by), "approved_at",
			 opt_time(r->approved_at), "ended_by", opt_str(r->ended_by), "ended_at",
			 opt_time(r->ended_at), "connections", (json_int_t)live);
}

/* --- member checks: -EBADMSG with why when the message is malformed --- */

struct in {
	const json_t *m;
	char *why;
	size_t whylen;
};

static int bad(struct in *in, const char *key, const char *what)
{
	snprintf(in->why, in->whylen, "%s: \"%s\" %s", msg_str(in->m, "type"), key, what);
	return -EBADMSG;
}

static int get_str(struct in *in, const char *key, bool required, const char **out)
{
	const json_t *v = json_object_get(in->m, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return required ? bad(in, key, "is missing") : 0;
	if (!json_is_string(v))
		return bad(in, key, "is not a string");
	*out = json_string_value(v);
	if (strlen(*out) != json_string_length(v)) /* msg.c refuses \u0000 already */
		return bad(in, key, "holds a NUL");
	return 0;
}

static int get_int(struct in *in, const char *key, bool required, json_int_t *out)
{
	const json_t *v = json_object_get(in->m, key);

	*out = 0;
	if (!v || json_is_null(v))
		return required ? bad(in, key, "is missing") : 0;
	if (!json_is_integer(v))
		return bad(in, key, "is not an integer");
	*out = json_integer_value(v);
	return 0;
}

/* A source address (relayd's text) that cidr_parse reads as one address: else NULL. */
static const char *addr_ok(const char *s)
{
	struct cidr c;

	if (!s || !*s || strlen(s) > ADDR_MAX || cidr_parse(s, &c, NULL, 0) != 0 ||
	    c.prefix != (c.family == AF_INET ? 32 : 128))
		return NULL;
	return s;
}

/* The tunnel id of a request; false (the reply sent) when it is not one of ours. */
static bool tunnel_ok(struct relaylink *rl, json_int_t req, const char *tid)
{
	if (valid_str(tid, VALID_ID, STORE_TUNNEL_ID_LEN - 1))
		return true;
	reply_error(rl, req, "invalid tunnel_id");
	return false;
}

/* A session id of a message as one escaped line for an answer or the log. */
static const char *esc_id(const char *id, char *buf, size_t len)
{
	return log_esc_str(id ? id : "", buf, len);
}

/* --- handlers --- */

static int on_request(struct support *sp, struct relaylink *rl, struct in *in)
{
	const char *tid, *reason, *hash, *source, *names[STORE_SUP_SERVICES_MAX];
	char err[256], *detail = NULL;
	struct store_support r;
	json_int_t req, expires;
	const json_t *services, *v;
	json_t *d;
	size_t i, n;
	int ret;

	ret = get_int(in, "req", true, &req);
	if (!ret)
		ret = get_str(in, "tunnel_id", true, &tid);
	if (!ret)
		ret = get_int(in, "expires", true, &expires);
	if (!ret)
		ret = get_str(in, "reason", false, &reason);
	if (!ret)
		ret = get_str(in, "auth_hash", true, &hash);
	if (!ret)
		ret = get_str(in, "source", false, &source);
	if (ret)
		return ret;
	services = json_object_get(in->m, "services");
	if (!json_is_array(services))
		return bad(in, "services", "is not an array");
	if (!tunnel_ok(rl, req, tid))
		return 0;
	n = json_array_size(services);
	if (n < 1 || n > STORE_SUP_SERVICES_MAX) {
		snprintf(err, sizeof(err), "a support session offers 1 to %d services",
			 STORE_SUP_SERVICES_MAX);
		return reply_error(rl, req, err), 0;
	}
	json_array_foreach(services, i, v)
	{
		if (!json_is_string(v))
			return bad(in, "services", "holds a member that is not a string");
		names[i] = json_string_value(v);
		if (strlen(names[i]) != json_string_length(v) ||
		    !store_support_service_ok(names[i])) {
			snprintf(err, sizeof(err), "bad service name: 1-%d characters: %s",
				 STORE_SUP_SERVICE_MAX, valid_alphabet(VALID_NAME));
			return reply_error(rl, req, err), 0;
		}
	}
	if (source && !addr_ok(source)) {
		reply_error(rl, req, "\"source\" is not an address");
		return 0;
	}
	d = json_pack("{s:s, s:O, s:I, s:o}", "reason", reason ? reason : "", "services", services,
		      "expires", expires, "source", opt_str(source));
	/* the reason is checked by the store: a d that could not be made for it is no detail */
	detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
	json_decref(d);
	ret = store_support_create(sp->st, tid, reason, names, n, hash, expires, detail, wall_ms(),
				   &r, err, sizeof(err));
	free(detail);
	if (ret) {
		log_every(NLOG_INFO, "support request of tunnel %.64s refused: %s", tid, err);
		reply_error(rl, req, err);
		return 0;
	}
	log_info("support session %s requested by tunnel %s (%zu service%s, until %lld)", r.id, tid,
		 n, n == 1 ? "" : "s", (long long)r.expires_at);
	reply(rl, json_pack("{s:s, s:I, s:s, s:I}", "type", CTL_SUPPORT_GRANTED, "req", req, "id",
			    r.id, "expires_at", (json_int_t)r.expires_at));
	return 0;
}

/* A refused connect's audit record, at most one a second per session (when it exists). */
static void refused(struct support *sp, struct sess_slot *slot, const char *id, const char *code,
		    const char *source, json_int_t port, const char *service, uint64_t now)
{
	char addr[ADDR_MAX + 16], *text;
	json_t *d;

	if (!slot || (slot->refused_ms && now - slot->refused_ms < REFUSED_GAP))
		return;
	slot->refused_ms = now;
	if (port > 0)
		snprintf(addr, sizeof(addr), strchr(source, ':') ? "[%s]:%lld" : "%s:%lld", source,
			 (long long)port);
	else
		str_copy(addr, sizeof(addr), source);
	d = json_pack("{s:s, s:s, s:s}", "reason", code, "source", addr, "service",
		      store_support_service_ok(service) ? service : "?");
	text = d ? json_dumps(d, JSON_COMPACT) : NULL;
	json_decref(d);
	if (store_support_audit_add(sp->st, id, wall_ms(), "refused", "supporter", text) == -EIO)
		log_every(NLOG_ERROR, "support session %s: audit record not stored", id);
	free(text);
}

static int on_connect(struct support *sp, struct relaylink *rl, struct in *in)
{
	const char *id, *service, *auth, *source, *code;
	struct store_support r;
	struct sess_slot *slot = NULL;
	char err[256], eid[64], esrc[80];
	uint64_t now = now_ms();
	json_int_t req, port;
	int idx, ret;

	ret = get_int(in, "req", true, &req);
	if (!ret)
		ret = get_str(in, "session", true, &id);
	if (!ret)
		ret = get_str(in, "service", true, &service);
	if (!ret)
		ret = get_str(in, "auth", true, &auth);
	if (!ret)
		ret = get_str(in, "source", true, &source);
	if (!ret)
		ret = get_int(in, "source_port", false, &port);
	if (ret)
		return ret;
	if (!addr_ok(source)) {
		reply_error(rl, req, "\"source\" is not an address");
		return 0;
	}
	if (port < 0 || port > 65535) {
		reply_error(rl, req, "\"source_port\" is not a port");
		return 0;
	}
	/* a slot only for a session that exists: made-up ids take none from real ones */
	ret = store_support_id_ok(id) ? store_support_get(sp->st, id, wall_ms(), &r) : -ENOENT;
	if (ret && ret != -ENOENT) {
		reply_error(rl, req, "internal error");
		return 0;
	}
	if (!ret)
		slot = sess_get(sp, id, now);
	esc_id(id, eid, sizeof(eid));
	log_esc_str(source, esrc, sizeof(esrc));
	/* the limits before the key is looked at */
	if (!source_take(sp, source, now) ||
	    (slot && !window_take(&slot->win_ms, &slot->attempts, SUPPORT_SESSION_PER_MIN, now))) {
		log_every(NLOG_INFO, "support connect to %s from %s refused: too many attempts",
			  eid, esrc);
		refused(sp, slot, id, "too many attempts", source, port, service, now);
		reply_error(rl, req, "too many attempts");
		return 0;
	}
	ret = store_support_check(sp->st, id, service, auth, wall_ms(), &r, &idx, &code, err,
				  sizeof(err));
	if (ret == -EACCES) {
		log_every(NLOG_INFO, "support connect to %s from %s refused: %s", eid, esrc, code);
		refused(sp, slot, id, code, source, port, service, now);
		reply_error(rl, req, err);
		return 0;
	}
	if (ret) {
		reply_error(rl, req, "internal error");
		return 0;
	}
	/* a connection is audited (connected, disconnected): no room, no connection */
	{
		int64_t n = 0;

		if (store_support_audit_count(sp->st, id, &n) == 0 && n + 2 > STORE_SUP_AUDIT_MAX) {
			snprintf(err, sizeof(err),
				 "support session %s has a full audit trail (%d records): the "
				 "device may request a new session",
				 id, STORE_SUP_AUDIT_MAX);
			reply_error(rl, req, err);
			return 0;
		}
	}
	if (slot && slot->conns >= SUPPORT_CONNS_MAX) {
		snprintf(err, sizeof(err), "support session %s has %d connections already", id,
			 SUPPORT_CONNS_MAX);
		refused(sp, slot, id, "too many connections", source, port, service, now);
		reply_error(rl, req, err);
		return 0;
	}
	reply(rl, json_pack("{s:s, s:I, s:s, s:s, s:i, s:I}", "type", CTL_SUPPORT_ALLOWED, "req",
			    req, "session", id, "tunnel_id", r.tunnel_id, "service_index", idx,
			    "expires_at", (json_int_t)r.expires_at));
	return 0;
}

static int on_end(struct support *sp, struct relaylink *rl, struct in *in)
{
	const char *tid, *id;
	struct store_support r;
	char err[256], eid[64];
	json_int_t req;
	int ret;

	ret = get_int(in, "req", true, &req);
	if (!ret)
		ret = get_str(in, "tunnel_id", true, &tid);
	if (!ret)
		ret = get_str(in, "id", true, &id);
	if (ret)
		return ret;
	if (!tunnel_ok(rl, req, tid))
		return 0;
	ret = store_support_end(sp->st, id, tid, NULL, wall_ms(), &r, NULL, err, sizeof(err));
	if (ret) {
		if (ret == -ENOENT)
			snprintf(err, sizeof(err), "no support session %s", esc_id(id, eid, 64));
		reply_error(rl, req, err);
		return 0;
	}
	log_info("support session %s ended by its tunnel %s", r.id, tid);
	support_kill(rl, r.id, "ended by its device");
	reply(rl, json_pack("{s:s, s:I, s:s}", "type", CTL_SUPPORT_ENDED, "req", req, "id", r.id));
	return 0;
}

struct ls_walk {
	struct support *sp;
	json_t *items;
};

static int ls_item(const struct store_support *r, void *arg)
{
	struct ls_walk *w = arg;
	json_t *o = support_json(r, support_live(w->sp, r->id));

	/* the device knows the rest: the list stays within what it asked for */
	if (o) {
		json_object_del(o, "tunnel_id");
		json_object_del(o, "approved_at");
		json_object_del(o, "ended_by");
		json_object_del(o, "ended_at");
	}
	return o && !json_array_append_new(w->items, o) ? 0 : -ENOMEM;
}

static int on_ls(struct support *sp, struct relaylink *rl, struct in *in)
{
	struct ls_walk w = {sp, json_array()};
	const char *tid;
	json_int_t req;
	int ret;

	ret = get_int(in, "req", true, &req);
	if (!ret)
		ret = get_str(in, "tunnel_id", true, &tid);
	if (ret) {
		json_decref(w.items);
		return ret;
	}
	if (!tunnel_ok(rl, req, tid)) {
		json_decref(w.items);
		return 0;
	}
	if (!w.items ||
	    store_support_list(sp->st, -1, tid, wall_ms(), 0, SUPPORT_LS_MAX, ls_item, &w, NULL)) {
		json_decref(w.items);
		reply_error(rl, req, "internal error");
		return 0;
	}
	reply(rl, json_pack("{s:s, s:I, s:o}", "type", CTL_SUPPORT_LIST, "req", req, "sessions",
			    w.items));
	return 0;
}

/* A non-negative integer member of a detail: false when absent or not one. */
static bool detail_count(const json_t *d, const char *key, json_int_t *out)
{
	const json_t *v = json_object_get(d, key);

	*out = json_is_integer(v) ? json_integer_value(v) : -1;
	return *out >= 0;
}

/* A string member of a detail of a kind, 1..max bytes: NULL when not. */
static const char *detail_str(const json_t *d, const char *key, enum valid_kind kind, size_t max)
{
	const json_t *v = json_object_get(d, key);
	const char *s = json_string_value(v);

	if (!s || strlen(s) != json_string_length(v) || !valid_str(s, kind, max))
		return NULL;
	return s;
}

static int on_event(struct support *sp, struct relaylink *rl, struct in *in)
{
	const char *id, *event, *source = NULL, *service = NULL, *why = NULL;
	json_int_t conn, port = 0, up = 0, down = 0, dur = 0;
	const json_t *d = json_object_get(in->m, "detail");
	struct sess_slot *slot;
	struct store_support r;
	char eid[64], addr[ADDR_MAX + 16], *text;
	json_t *o = NULL;
	bool ok;
	int ret;

	(void)rl;
	ret = get_str(in, "session", true, &id);
	if (!ret)
		ret = get_str(in, "event", true, &event);
	if (ret)
		return ret;
	if (!json_is_object(d))
		return bad(in, "detail", "is not an object");
	esc_id(id, eid, sizeof(eid));
	if (!store_support_id_ok(id) || store_support_get(sp->st, id, wall_ms(), &r)) {
		log_every(NLOG_WARN, "relayd sent a support event of unknown session %s, dropped",
			  eid);
		return 0;
	}
	ok = detail_count(d, "conn", &conn);
	if (ok && !strcmp(event, "connected")) {
		source = addr_ok(json_string_value(json_object_get(d, "source")));
		service = detail_str(d, "service", VALID_NAME, STORE_SUP_SERVICE_MAX);
		if (json_object_get(d, "source_port"))
			ok = detail_count(d, "source_port", &port) && port <= 65535;
		ok = ok && source && service;
		if (ok) {
			if (port > 0)
				snprintf(addr, sizeof(addr),
					 strchr(source, ':') ? "[%s]:%lld" : "%s:%lld", source,
					 (long long)port);
			else
				str_copy(addr, sizeof(addr), source);
			o = json_pack("{s:s, s:s, s:I}", "source", addr, "service", service, "conn",
				      conn);
		}
	} else if (ok && !strcmp(event, "disconnected")) {
		why = detail_str(d, "why", VALID_TEXT, WHY_MAX);
		ok = detail_count(d, "bytes_up", &up) && detail_count(d, "bytes_down", &down) &&
		     detail_count(d, "duration_ms", &dur) && why;
		if (ok)
			o = json_pack("{s:I, s:I, s:I, s:I, s:s}", "conn", conn, "bytes_up", up,
				      "bytes_down", down, "duration_ms", dur, "why", why);
	} else {
		ok = false;
	}
	if (!ok) {
		char eev[48];

		log_every(NLOG_WARN, "relayd sent a malformed support event \"%s\" of %s, dropped",
			  log_esc_str(event, eev, sizeof(eev)), eid);
		return 0;
	}
	slot = sess_get(sp, id, now_ms());
	if (slot && !strcmp(event, "connected"))
		slot->conns++;
	else if (slot && slot->conns)
		slot->conns--;
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	ret = store_support_audit_add(sp->st, id, wall_ms(), event, "supporter", text);
	free(text);
	if (ret == -EDQUOT)
		log_every(NLOG_WARN, "support session %s: audit trail full, %s not recorded", id,
			  event);
	else if (ret)
		log_every(NLOG_ERROR, "support session %s: audit record not stored", id);
	if (!strcmp(event, "connected"))
		log_info("support session %s: supporter connected from %s to %s (conn %lld)", id,
			 addr, service, (long long)conn);
	else
		log_info("support session %s: conn %lld closed (%s; %lld bytes up, %lld down)", id,
			 (long long)conn, why, (long long)up, (long long)down);
	return 0;
}

int support_handle(struct support *sp, struct relaylink *rl, const json_t *m, char *why,
		   size_t whylen)
{
	static const struct {
		const char *type;
		int (*fn)(struct support *sp, struct relaylink *rl, struct in *in);
	} h[] = {
	    {CTL_SUPPORT_REQUEST, on_request}, {CTL_SUPPORT_CONNECT, on_connect},
	    {CTL_SUPPORT_END, on_end},	       {CTL_SUPPORT_LS, on_ls},
	    {CTL_SUPPORT_EVENT, on_event},
	};
	struct in in = {m, why, whylen};
	const char *type = msg_str(m, "type");

	for (size_t i = 0; type && i < ARRAY_SIZE(h); i++)
		if (!strcmp(type, h[i].type))
			return h[i].fn(sp, rl, &in);
	return 0;
}

/* --- the timer --- */

static int kill_expired(const struct store_support *r, void *arg)
{
	struct relaylink *rl = arg;

	log_info("support session %s of tunnel %s expired", r->id, r->tunnel_id);
	support_kill(rl, r->id, "expired");
	return 0;
}

static int kill_again(const struct store_support *r, void *arg)
{
	struct relaylink *rl = arg;

	support_kill(rl, r->id, r->state == STORE_SUP_EXPIRED ? "expired" : "ended");
	return 0;
}

void support_tick(struct support *sp, struct relaylink *rl)
{
	uint64_t now = now_ms();
	int64_t wall;

	if (!sp || (sp->tick_ms && now - sp->tick_ms < TICK_MS))
		return;
	sp->tick_ms = now;
	wall = wall_ms();
	if (relaylink_connected(rl) && relaylink_generation(rl) != sp->gen) {
		/* a new relayd: it holds no link of ours; one that stayed knows these again */
		sp->gen = relaylink_generation(rl);
		for (size_t i = 0; i < SESSION_SLOTS; i++)
			sp->sess[i].conns = 0;
		store_support_over_since(sp->st, wall / 1000 - SUPPORT_KILL_AGAIN_S, wall, 256,
					 kill_again, rl);
	}
	if (store_support_expire(sp->st, wall, kill_expired, rl))
		log_every(NLOG_ERROR, "support sessions: expiry failed (see above); trying again");
	/* ended sessions and their audit trails go after STORE_SUP_KEEP_S (a step a second) */
	{
		int n = 0;

		if (store_support_prune(sp->st, wall / 1000 - STORE_SUP_KEEP_S, &n))
			log_every(NLOG_ERROR, "support sessions: pruning failed (see above)");
		else if (n)
			log_info("support sessions: %d ended more than 30 days ago removed", n);
	}
}

// SPDX-License-Identifier: Apache-2.0
/*
 * SQLite state store of nave-controld. One connection, used only from
 * controld's event loop. The schema is a list of migrations applied in order,
 * each in its own transaction, recorded in schema_version; a database that
 * already holds data is copied with the backup API before it is migrated.
 * Secrets never reach the database: only the SHA-256 of a token's secret part
 * is stored and compared in constant time. Port allocation follows the rules
 * of ctl_proto.h port_request, inside one IMMEDIATE transaction each, and
 * so do domain claims (one tunnel per domain, LINK_RULES_MAX per tunnel). The
 * firewall's blocks are stored in their canonical text (common/cidr.h), one
 * row per list and block, at most CIDR_LIST_MAX per list.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/support.h"
#include "config/cfg.h"
#include "link_proto.h"
#include "log.h"
#include "util.h"
#include "valid.h"

struct store {
	sqlite3 *db;
	char path[1024];
	uint16_t port_min, port_max;
	unsigned max_per_tunnel;
	int version;
};

#define REG_PREFIX     "nvr_"
#define TOK_PREFIX     "nvt_"
#define SECRET_HEX     48 /* 24 random bytes */
#define TOKEN_TEXT_LEN (4 + 8 + 1 + SECRET_HEX)
#define ID_TRIES       8

/*
 * Migrations: index i takes the schema from version i to i + 1. Append only;
 * never edit a released entry.
 */
static const char *const store_migrations[] = {
    /* 1: the core tables */
    "CREATE TABLE registrations ("
    " id TEXT PRIMARY KEY,"
    " hash TEXT NOT NULL,"
    " description TEXT NOT NULL DEFAULT '',"
    " max_uses INTEGER NOT NULL DEFAULT 0,"
    " uses INTEGER NOT NULL DEFAULT 0,"
    " expires_at INTEGER,"
    " enabled INTEGER NOT NULL DEFAULT 1,"
    " created_at INTEGER NOT NULL);"
    "CREATE TABLE tunnels ("
    " id TEXT PRIMARY KEY,"
    " group_id TEXT NOT NULL,"
    " hostname TEXT NOT NULL DEFAULT '',"
    " os TEXT NOT NULL DEFAULT '',"
    " arch TEXT NOT NULL DEFAULT '',"
    " client_version TEXT NOT NULL DEFAULT '',"
    " state TEXT NOT NULL DEFAULT 'offline' CHECK (state IN ('online', 'offline')),"
    " last_seen INTEGER,"
    " created_at INTEGER NOT NULL,"
    " token_id TEXT);"
    "CREATE TABLE tokens ("
    " id TEXT PRIMARY KEY,"
    " hash TEXT NOT NULL,"
    " tunnel_id TEXT NOT NULL REFERENCES tunnels(id),"
    " description TEXT NOT NULL DEFAULT '',"
    " created_at INTEGER NOT NULL,"
    " revoked INTEGER NOT NULL DEFAULT 0,"
    " last_used INTEGER);"
    "CREATE TABLE ports ("
    " port INTEGER PRIMARY KEY CHECK (port BETWEEN 1 AND 65535),"
    " tunnel_id TEXT NOT NULL REFERENCES tunnels(id),"
    " rule TEXT NOT NULL DEFAULT '',"
    " created_at INTEGER NOT NULL);",
    /* 2: indexes for the per-tunnel and online lookups */
    "CREATE INDEX ports_tunnel ON ports(tunnel_id);"
    "CREATE INDEX tokens_tunnel ON tokens(tunnel_id);"
    "CREATE INDEX tunnels_state ON tunnels(state);",
    /* 3: a tunnel whose token is revoked holds no ports (revoking now releases them) */
    "DELETE FROM ports WHERE tunnel_id IN (SELECT tunnel_id FROM tokens WHERE revoked = 1);",
    /* 4: the firewall's deny and allow lists (navectl firewall); id keeps the order */
    "CREATE TABLE firewall ("
    " id INTEGER PRIMARY KEY,"
    " kind TEXT NOT NULL CHECK (kind IN ('deny', 'allow')),"
    " cidr TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " UNIQUE (kind, cidr));",
    /* 5: domains claimed by tunnels for HTTP rules (normalised: lowercase) */
    "CREATE TABLE domains ("
    " domain TEXT PRIMARY KEY,"
    " tunnel_id TEXT NOT NULL REFERENCES tunnels(id),"
    " rule TEXT NOT NULL DEFAULT '',"
    " created_at INTEGER NOT NULL);"
    "CREATE INDEX domains_tunnel ON domains(tunnel_id);",
    /* 6: token restrictions (restrict.h: canonical text, NULL = none); a registration's are
       inherited by the tokens it mints */
    "ALTER TABLE tokens ADD COLUMN allow_from TEXT;"
    "ALTER TABLE tokens ADD COLUMN allow_ids TEXT;"
    "ALTER TABLE tokens ADD COLUMN kinds TEXT;"
    "ALTER TABLE tokens ADD COLUMN domains TEXT;"
    "ALTER TABLE tokens ADD COLUMN ports TEXT;"
    "ALTER TABLE registrations ADD COLUMN allow_from TEXT;"
    "ALTER TABLE registrations ADD COLUMN allow_ids TEXT;"
    "ALTER TABLE registrations ADD COLUMN kinds TEXT;"
    "ALTER TABLE registrations ADD COLUMN domains TEXT;"
    "ALTER TABLE registrations ADD COLUMN ports TEXT;",
    /*
     * 7: remote rule operations (navectl tunnels rules, ctl/ruleops.c): a queue per tunnel,
     * applied by its client in id order; rule is the checked operation (common/rulemsg.h)
     * as JSON; sent: pushed to relayd and not answered yet
     */
    "CREATE TABLE rule_ops ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " tunnel_id TEXT NOT NULL REFERENCES tunnels(id),"
    " action TEXT NOT NULL CHECK (action IN ('add', 'rm')),"
    " name TEXT NOT NULL,"
    " rule TEXT NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'applied', 'failed')),"
    " sent INTEGER NOT NULL DEFAULT 0,"
    " sent_at INTEGER,"
    " reason TEXT,"
    " port INTEGER,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE INDEX rule_ops_tunnel ON rule_ops(tunnel_id, state, id);",
    /* 8: admin users (scrypt, TOTP), their login sessions (hashed ids) and API keys (hashed) */
    "CREATE TABLE users ("
    " name TEXT PRIMARY KEY,"
    " hash TEXT NOT NULL,"
    " totp_secret TEXT,"
    " totp_step INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL,"
    " last_login INTEGER,"
    " failed INTEGER NOT NULL DEFAULT 0,"
    " locked_until INTEGER);"
    "CREATE TABLE sessions ("
    " id_hash TEXT PRIMARY KEY,"
    " user TEXT NOT NULL REFERENCES users(name),"
    " csrf TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL,"
    " last_used INTEGER NOT NULL,"
    " source TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX sessions_user ON sessions(user);"
    "CREATE TABLE apikeys ("
    " id TEXT PRIMARY KEY,"
    " hash TEXT NOT NULL,"
    " description TEXT NOT NULL DEFAULT '',"
    " created_at INTEGER NOT NULL,"
    " expires_at INTEGER,"
    " last_used INTEGER,"
    " revoked INTEGER NOT NULL DEFAULT 0);",
    /* 9: connection records from relayd (newest by ended) and each rule's traffic */
    "CREATE TABLE conn_records ("
    " id INTEGER PRIMARY KEY,"
    " tunnel_id TEXT NOT NULL,"
    " rule TEXT NOT NULL DEFAULT '',"
    " kind TEXT NOT NULL,"
    " port INTEGER NOT NULL,"
    " domain TEXT NOT NULL DEFAULT '',"
    " src TEXT NOT NULL,"
    " src_port INTEGER NOT NULL,"
    " start_ms INTEGER NOT NULL,"
    " duration_ms INTEGER NOT NULL,"
    " ended INTEGER NOT NULL,"
    " bytes_in INTEGER NOT NULL,"
    " bytes_out INTEGER NOT NULL,"
    " reason TEXT NOT NULL);"
    "CREATE INDEX conn_records_tunnel ON conn_records(tunnel_id, ended);"
    "CREATE INDEX conn_records_rule ON conn_records(tunnel_id, rule, ended);"
    "CREATE INDEX conn_records_rule_only ON conn_records(rule, ended);"
    "CREATE INDEX conn_records_ended ON conn_records(ended);"
    /*
     * each (tunnel, rule, minute)'s and (tunnel, rule, hour)'s traffic, written with the
     * records (rule "*": the whole tunnel's), read by the bandwidth route
     */
    "CREATE TABLE conn_minutes ("
    " tunnel_id TEXT NOT NULL,"
    " rule TEXT NOT NULL,"
    " at INTEGER NOT NULL,"
    " bytes_in INTEGER NOT NULL DEFAULT 0,"
    " bytes_out INTEGER NOT NULL DEFAULT 0,"
    " conns INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (tunnel_id, rule, at)) WITHOUT ROWID;"
    "CREATE INDEX conn_minutes_at ON conn_minutes(at);"
    "CREATE TABLE conn_hours ("
    " tunnel_id TEXT NOT NULL,"
    " rule TEXT NOT NULL,"
    " at INTEGER NOT NULL,"
    " bytes_in INTEGER NOT NULL DEFAULT 0,"
    " bytes_out INTEGER NOT NULL DEFAULT 0,"
    " conns INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (tunnel_id, rule, at)) WITHOUT ROWID;"
    "CREATE INDEX conn_hours_at ON conn_hours(at);"
    "CREATE TABLE rule_traffic ("
    " tunnel_id TEXT NOT NULL,"
    " rule TEXT NOT NULL,"
    " bytes_in INTEGER NOT NULL DEFAULT 0,"
    " bytes_out INTEGER NOT NULL DEFAULT 0,"
    " conns INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (tunnel_id, rule)) WITHOUT ROWID;",
    /* 10: the mesh access policy (ids never reused: relayd's counters name them) */
    "CREATE TABLE mesh_rules ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " position INTEGER NOT NULL,"
    " action TEXT NOT NULL,"
    " from_pat TEXT NOT NULL,"
    " to_kind TEXT NOT NULL,"
    " to_pat TEXT NOT NULL,"
    " port_lo INTEGER NOT NULL DEFAULT 0,"
    " port_hi INTEGER NOT NULL DEFAULT 0,"
    " comment TEXT NOT NULL DEFAULT '',"
    " created INTEGER NOT NULL);"
    "CREATE INDEX mesh_rules_order ON mesh_rules(position, id);",
    /* 11: UDP port tunnels: a port number is held under one transport (existing rows: tcp) */
    "ALTER TABLE ports ADD COLUMN transport TEXT NOT NULL DEFAULT 'tcp'"
    " CHECK (transport IN ('tcp', 'udp'));",
    /* 12: how a tunnel's last session logged in (a token or a certificate, navectl pki) */
    "ALTER TABLE tunnels ADD COLUMN identity TEXT NOT NULL DEFAULT '';",
    /*
     * 13: support sessions (ctl/support.h): a device's request for a support tunnel, the
     * operator's approval, the end; expiry is computed on read. ended_at is set once a
     * session is over (ended, or expired and its expiry handled: ended_by 'expiry').
     */
    "CREATE TABLE support_sessions ("
    " id TEXT PRIMARY KEY,"
    " tunnel_id TEXT NOT NULL,"
    " reason TEXT NOT NULL DEFAULT '',"
    " services TEXT NOT NULL,"
    " auth_hash TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'ended')),"
    " approved_by TEXT,"
    " approved_at INTEGER,"
    " ended_by TEXT,"
    " ended_at INTEGER);"
    "CREATE INDEX support_sessions_tunnel ON support_sessions(tunnel_id, created_at);"
    "CREATE INDEX support_sessions_due ON support_sessions(expires_at) WHERE ended_at IS NULL;"
    "CREATE TABLE support_audit ("
    " session TEXT NOT NULL,"
    " at INTEGER NOT NULL,"
    " event TEXT NOT NULL,"
    " actor TEXT NOT NULL,"
    " detail TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX support_audit_session ON support_audit(session, at);",
};

_Static_assert(ARRAY_SIZE(store_migrations) == STORE_SCHEMA_VERSION,
	       "STORE_SCHEMA_VERSION must match the migration list");

static int64_t store_now(void)
{
	return (int64_t)time(NULL);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int db_fail(struct store *s, const char *what)
{
	log_error("store: %s: %s", what, sqlite3_errmsg(s->db));
	return -EIO;
}

static int exec_sql(struct store *s, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_error("store: %s: %s", sql, msg ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

static int prep(struct store *s, const char *sql, sqlite3_stmt **st)
{
	if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) {
		*st = NULL;
		return db_fail(s, sql);
	}
	return 0;
}

static int tx_begin(struct store *s)
{
	return exec_sql(s, "BEGIN IMMEDIATE");
}

static int tx_end(struct store *s, int ret)
{
	if (ret == 0) {
		ret = exec_sql(s, "COMMIT");
		if (ret == 0)
			return 0;
	}
	exec_sql(s, "ROLLBACK");
	return ret;
}

/*
 * The transaction of a change that can be refused with a reason in err: a
 * database failure is an "internal error" to the peer (the log has the rest).
 */
static int tx_begin_err(struct store *s, char *err, size_t errlen)
{
	int ret = tx_begin(s);

	if (ret)
		set_err(err, errlen, "internal error");
	return ret;
}

static int tx_end_err(struct store *s, int ret, char *err, size_t errlen)
{
	if (ret == -EIO)
		set_err(err, errlen, "internal error");
	return tx_end(s, ret);
}

/* Length of s cut to at most max bytes without splitting a UTF-8 sequence. */
static size_t utf8_clamp(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n <= max)
		return n;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

/* Binds text clamped to what the record structs hold (peer input is bounded here). */
static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (!v)
		v = "";
	sqlite3_bind_text(st, i, v, (int)utf8_clamp(v, STORE_STR_LEN - 1), SQLITE_TRANSIENT);
}

static void col_text(sqlite3_stmt *st, int i, char *dst, size_t len)
{
	const char *v = (const char *)sqlite3_column_text(st, i);
	size_t n;

	if (!v)
		v = "";
	n = utf8_clamp(v, len - 1);
	memcpy(dst, v, n);
	dst[n] = 0;
}

/* A nullable integer column: NULL reads as 0 ("unset"). */
static int64_t col_int(sqlite3_stmt *st, int i)
{
	return sqlite3_column_int64(st, i);
}

/* Runs a statement that returns no rows; 0 or -EIO. */
static int step_done(struct store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE)
		return db_fail(s, sqlite3_sql(st));
	return 0;
}

/* Runs a one-integer query; 0 with *v, or -EIO. */
static int query_int(struct store *s, sqlite3_stmt *st, int64_t *v)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW) {
		*v = sqlite3_column_int64(st, 0);
		return 0;
	}
	if (rc == SQLITE_DONE) {
		*v = 0;
		return 0;
	}
	return db_fail(s, sqlite3_sql(st));
}

/* --- rows: reading, getting and listing an entity from its column table --- */

/*
 * How an entity is queried. where holds the filter with its parameters
 * ?1..?nparams, which bind sets from a struct store_filter (NULL: no
 * filter); the page's LIMIT and OFFSET come after them. where_of, when set,
 * picks the WHERE for a filter instead (one of its fixed texts, never built
 * from the filter's values): a filter that is not set is no WHERE at all,
 * so a set one can be a plain condition an index serves.
 */
struct store_query {
	const char *table;
	const char *key;   /* the column a row is found, changed and deleted by; NULL: none */
	const char *where; /* "" or " WHERE ..." */
	const char *(*where_of)(const struct store_filter *f);
	int nparams;
	const char *order; /* ORDER BY of a list: stable */
	int (*bind)(sqlite3_stmt *st, const struct store_filter *f);
	bool need_filter; /* a list needs f (no f is -EINVAL): a zeroed one means no "all" */
};

/* Any record, for the generic code that holds one (a new entity joins it). */
union store_any {
	struct store_registration reg;
	struct store_token token;
	struct store_tunnel tunnel;
	struct store_port port;
	struct store_domain domain;
	struct store_fw_rule fw;
	struct store_user user;
	struct store_session session;
	struct store_apikey apikey;
	struct store_conn_record rec;
	struct store_rule_traffic traffic;
};

/*
 * Defines the entity var, whose records are a type: the type must fit union
 * store_any, the row store_list reads every entity's records into.
 */
#define STORE_ENTITY(var, name, type, cols, query)                                                 \
	_Static_assert(sizeof(type) <= sizeof(union store_any),                                    \
		       #type " must fit union store_any: make it a member");                       \
	const struct store_entity var = {name, sizeof(type), cols, ARRAY_SIZE(cols), &(query)}

int64_t store_col_int(const struct store_col *c, const void *row)
{
	const char *p = (const char *)row + c->off;

	switch (c->ctype) {
	case STORE_C_I64:
		return *(const int64_t *)p;
	case STORE_C_BOOL:
		return *(const bool *)p;
	case STORE_C_U16:
		return *(const uint16_t *)p;
	case STORE_C_ENUM:
		return *(const int *)p;
	case STORE_C_TEXT:
		break;
	}
	return 0;
}

const char *store_col_name(const struct store_col *c, const void *row)
{
	int64_t v = store_col_int(c, row);

	for (int64_t i = 0; c->names && c->names[i]; i++)
		if (i == v)
			return c->names[i];
	return NULL;
}

/* The columns of st (selected in e's order) into the record row. */
static void row_read(const struct store_entity *e, sqlite3_stmt *st, void *row)
{
	memset(row, 0, e->size);
	for (size_t i = 0; i < e->ncols; i++) {
		const struct store_col *c = &e->cols[i];
		char *p = (char *)row + c->off;
		const char *text;
		int v = 0;

		switch (c->ctype) {
		case STORE_C_TEXT:
			col_text(st, (int)i, p, c->size);
			break;
		case STORE_C_I64:
			*(int64_t *)p = col_int(st, (int)i);
			break;
		case STORE_C_BOOL:
			*(bool *)p = col_int(st, (int)i) != 0;
			break;
		case STORE_C_U16:
			*(uint16_t *)p = (uint16_t)sqlite3_column_int(st, (int)i);
			break;
		case STORE_C_ENUM:
			text = (const char *)sqlite3_column_text(st, (int)i);
			for (int k = 0; text && c->names[k]; k++)
				if (!strcmp(text, c->names[k]))
					v = k;
			*(int *)p = v;
			break;
		}
	}
}

/*
 * e's column selected as sql ("rule", its key); NULL, logged, when e has
 * none (sql NULL: e has no key): its callers then refuse with -EINVAL.
 */
static const struct store_col *col_named(const struct store_entity *e, const char *sql)
{
	for (size_t i = 0; sql && i < e->ncols; i++)
		if (!strcmp(e->cols[i].sql, sql))
			return &e->cols[i];
	log_error("store: %s: no %s column", e->name, sql ? sql : "key");
	return NULL;
}

/* Binds a column's value in row to parameter i, as row_read reads it back. */
static void bind_col(sqlite3_stmt *st, int i, const struct store_col *c, const void *row)
{
	if (c->ctype == STORE_C_TEXT)
		bind_text(st, i, (const char *)row + c->off);
	else if (c->ctype == STORE_C_ENUM)
		bind_text(st, i, store_col_name(c, row));
	else
		sqlite3_bind_int64(st, i, store_col_int(c, row));
}

/*
 * ports, domains: a tunnel's rows are " WHERE tunnel_id = ?1", which the
 * ports_tunnel and domains_tunnel indexes serve (a per-tunnel query runs at
 * every client connect, revoke and deauth); no tunnel_id: every row, no
 * WHERE (an "?1 IS NULL OR tunnel_id = ?1" makes SQLite scan the table).
 */
static const char *tunnel_id_where(const struct store_filter *f)
{
	return f && f->tunnel_id ? " WHERE tunnel_id = ?1" : "";
}

static int tunnel_id_bind(sqlite3_stmt *st, const struct store_filter *f)
{
	if (f->tunnel_id)
		bind_text(st, 1, f->tunnel_id);
	return 0;
}

/* Prepares "SELECT <e's columns> FROM <its table><tail>". */
static int prep_select(struct store *s, const struct store_entity *e, const char *tail,
		       sqlite3_stmt **st)
{
	char sql[1024];
	size_t n = (size_t)snprintf(sql, sizeof(sql), "SELECT ");

	for (size_t i = 0; i < e->ncols && n < sizeof(sql); i++)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, "%s%s", i ? ", " : "",
				      e->cols[i].sql);
	if (n < sizeof(sql))
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, " FROM %s%s", e->q->table, tail);
	if (n >= sizeof(sql)) {
		log_error("store: %s: query too long", e->name);
		*st = NULL;
		return -EIO;
	}
	return prep(s, sql, st);
}

/* Steps a query of at most one row of e into out and finalizes it: 1 found, 0 none, or -EIO. */
static int row_one(struct store *s, const struct store_entity *e, sqlite3_stmt *st, void *out)
{
	int rc = sqlite3_step(st), ret;

	if (rc == SQLITE_ROW) {
		row_read(e, st, out);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		ret = db_fail(s, e->name);
	}
	sqlite3_finalize(st);
	return ret;
}

/* The row of e whose key is key: 1 found, 0 not, or -EIO. */
static int row_find(struct store *s, const struct store_entity *e, const char *key, void *out)
{
	char tail[128];
	sqlite3_stmt *st;
	int ret;

	if (!e->q->key)
		return -EINVAL;
	snprintf(tail, sizeof(tail), " WHERE %s = ?1", e->q->key);
	ret = prep_select(s, e, tail, &st);
	if (ret)
		return ret;
	bind_text(st, 1, key);
	return row_one(s, e, st, out);
}

int store_get(struct store *s, const struct store_entity *e, const char *key, void *out)
{
	int ret = row_find(s, e, key, out);

	return ret == 1 ? 0 : ret == 0 ? -ENOENT : ret;
}

/* The WHERE of e's lists for f (NULL: no filter): a fixed text of its query. */
static const char *filter_where(const struct store_entity *e, const struct store_filter *f)
{
	return e->q->where_of ? e->q->where_of(f) : e->q->where;
}

static int filter_bind(const struct store_entity *e, sqlite3_stmt *st, const struct store_filter *f)
{
	static const struct store_filter all;

	if (!f && e->q->need_filter) {
		log_error("store: %s: a list of them needs a filter", e->name);
		return -EINVAL;
	}
	return e->q->bind ? e->q->bind(st, f ? f : &all) : 0;
}

/* The number of rows of e that f keeps. */
static int row_count(struct store *s, const struct store_entity *e, const struct store_filter *f,
		     int64_t *n)
{
	char sql[512];
	sqlite3_stmt *st;
	int ret;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s%s", e->q->table, filter_where(e, f));
	ret = prep(s, sql, &st);
	if (ret)
		return ret;
	ret = filter_bind(e, st, f);
	if (!ret)
		ret = query_int(s, st, n);
	sqlite3_finalize(st);
	return ret;
}

int store_list(struct store *s, const struct store_entity *e, const struct store_filter *f,
	       int64_t offset, int64_t limit, store_row_cb cb, void *arg, int64_t *total)
{
	const struct store_query *q = e->q;
	union store_any row;
	char tail[512];
	sqlite3_stmt *st;
	int rc, ret;

	if (e->size > sizeof(row)) { /* an entity not made by STORE_ENTITY */
		log_error("store: %s: its record does not fit union store_any", e->name);
		return -EINVAL;
	}
	if (total) {
		ret = row_count(s, e, f, total);
		if (ret)
			return ret;
	}
	snprintf(tail, sizeof(tail), "%s ORDER BY %s LIMIT ?%d OFFSET ?%d", filter_where(e, f),
		 q->order, q->nparams + 1, q->nparams + 2);
	ret = prep_select(s, e, tail, &st);
	if (ret)
		return ret;
	ret = filter_bind(e, st, f);
	if (ret)
		goto out;
	sqlite3_bind_int64(st, q->nparams + 1, limit);
	sqlite3_bind_int64(st, q->nparams + 2, offset);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_read(e, st, &row);
		ret = cb(&row, arg);
		if (ret)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = db_fail(s, e->name);
out:
	sqlite3_finalize(st);
	return ret;
}

/*
 * Writing a record of e, for the entities whose columns are plain column
 * names (ports, domains, firewall blocks): every column is written as
 * row_read reads it back.
 */
static int row_write(struct store *s, const struct store_entity *e, const char *sql,
		     const struct store_col *const *cols, size_t n, const void *row)
{
	sqlite3_stmt *st;
	int ret = prep(s, sql, &st);

	if (ret)
		return ret;
	for (size_t i = 0; i < n; i++)
		bind_col(st, (int)i + 1, cols[i], row);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	return ret;
}

/* INSERT INTO <table> (<every column>) VALUES (...) of the record row. */
static int row_insert(struct store *s, const struct store_entity *e, const void *row)
{
	const struct store_col *cols[16];
	char sql[512];
	size_t n = (size_t)snprintf(sql, sizeof(sql), "INSERT INTO %s (", e->q->table);

	if (e->ncols > ARRAY_SIZE(cols)) {
		log_error("store: %s: insert: more than %zu columns", e->name, ARRAY_SIZE(cols));
		return -EIO;
	}
	for (size_t i = 0; i < e->ncols && n < sizeof(sql); i++) {
		cols[i] = &e->cols[i];
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, "%s%s", i ? ", " : "",
				      e->cols[i].sql);
	}
	for (size_t i = 0; i < e->ncols && n < sizeof(sql); i++)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, "%s?%zu", i ? ", " : ") VALUES (",
				      i + 1);
	if (n + 2 > sizeof(sql)) { /* no SQLite call failed: its errmsg would be another's */
		log_error("store: %s: insert: query too long", e->name);
		return -EIO;
	}
	strcat(sql, ")");
	return row_write(s, e, sql, cols, e->ncols, row);
}

/* Sets the column col of the stored row with row's key to row's value of it. */
static int row_update(struct store *s, const struct store_entity *e, const void *row,
		      const char *col)
{
	const struct store_col *cols[2] = {col_named(e, e->q->key), col_named(e, col)};
	char sql[256];

	if (!cols[0] || !cols[1])
		return -EINVAL;
	snprintf(sql, sizeof(sql), "UPDATE %s SET %s = ?2 WHERE %s = ?1", e->q->table, col,
		 e->q->key);
	return row_write(s, e, sql, cols, 2, row);
}

/* Prepares the DELETE of a row of e by its key, the column *key. */
static int prep_delete(struct store *s, const struct store_entity *e, sqlite3_stmt **st,
		       const struct store_col **key)
{
	char sql[256];

	*key = col_named(e, e->q->key);
	if (!*key) {
		*st = NULL;
		return -EINVAL;
	}
	snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE %s = ?1", e->q->table, e->q->key);
	return prep(s, sql, st);
}

/* Runs prep_delete's st for row's key and resets it for the next row. */
static int delete_step(struct store *s, sqlite3_stmt *st, const struct store_col *key,
		       const void *row)
{
	int ret;

	bind_col(st, 1, key, row);
	ret = step_done(s, st);
	sqlite3_reset(st);
	return ret;
}

/*
 * Sets the stored rule of row (a port or a domain) to rule; row gets the new
 * rule only once the UPDATE worked.
 */
static int rule_update(struct store *s, const struct store_entity *e, void *row, const char *rule)
{
	const struct store_col *c = col_named(e, "rule");
	union store_any upd;
	int ret;

	if (!c || e->size > sizeof(upd))
		return -EINVAL;
	memcpy(&upd, row, e->size);
	str_copy((char *)&upd + c->off, c->size, rule);
	ret = row_update(s, e, &upd, "rule");
	if (!ret)
		memcpy(row, &upd, e->size);
	return ret;
}

/* Deletes the stored row with row's key. */
static int row_delete(struct store *s, const struct store_entity *e, const void *row)
{
	const struct store_col *key;
	sqlite3_stmt *st;
	int ret = prep_delete(s, e, &st, &key);

	if (ret)
		return ret;
	ret = delete_step(s, st, key, row);
	sqlite3_finalize(st);
	return ret;
}

/*
 * The end of releasing a port or a domain: found is its lookup's answer (1,
 * 0 or -errno) for the row of what name says ("port 80"), which must be held
 * by tunnel_id when that is given, then the row is deleted. The refusals:
 * "NAME is not HELD" and "NAME is not HELD BY tunnel ID" ("allocated" "to",
 * "held" "by").
 */
static int release_held(struct store *s, const struct store_entity *e, int found, const void *row,
			const char *tunnel_id, const char *name, const char *held, const char *by,
			char *err, size_t errlen)
{
	const struct store_col *tunnel = col_named(e, "tunnel_id");
	int ret = found;

	if (!tunnel) {
		set_err(err, errlen, "internal error");
		return -EINVAL;
	}
	if (found == 0) {
		set_err(err, errlen, "%s is not %s", name, held);
		return -ENOENT;
	}
	if (found > 0 && tunnel_id && strcmp(tunnel_id, (const char *)row + tunnel->off) != 0) {
		set_err(err, errlen, "%s is not %s %s tunnel %s", name, held, by, tunnel_id);
		return -ENOENT;
	}
	if (found > 0)
		ret = row_delete(s, e, row);
	if (ret)
		set_err(err, errlen, "internal error");
	return ret;
}

/*
 * A typed callback of store.h (store_port_cb, ...) and its argument, called
 * through a store_row_cb by a TYPED_CB trampoline: the list wrappers keep
 * their types, the core walks records of any entity.
 */
struct typed_cb {
	void (*fn)(void);
	void *arg;
};

#define TYPED_CB(name, cb_type, row_type)                                                          \
	static int name(const void *row, void *arg)                                                \
	{                                                                                          \
		const struct typed_cb *t = arg;                                                    \
		return ((cb_type)t->fn)((const row_type *)row, t->arg);                            \
	}

TYPED_CB(call_reg_cb, store_reg_cb, struct store_registration)
TYPED_CB(call_token_cb, store_token_cb, struct store_token)
TYPED_CB(call_tunnel_cb, store_tunnel_cb, struct store_tunnel)
TYPED_CB(call_port_cb, store_port_cb, struct store_port)
TYPED_CB(call_domain_cb, store_domain_cb, struct store_domain)
TYPED_CB(call_fw_cb, store_fw_cb, struct store_fw_rule)

/* A list wrapper's store_list with its typed callback. */
static int list_typed(struct store *s, const struct store_entity *e, const struct store_filter *f,
		      int64_t offset, int64_t limit, store_row_cb call, void (*fn)(void), void *arg,
		      int64_t *total)
{
	struct typed_cb t = {fn, arg};

	return store_list(s, e, f, offset, limit, call, &t, total);
}

/* A column table's off and size of a member of the record struct */
#define AT(type, member) offsetof(type, member), sizeof(((type *)0)->member)

void store_hash_secret(const char *secret, char out[65])
{
	uint8_t md[SHA256_DIGEST_LENGTH];

	SHA256((const uint8_t *)secret, strlen(secret), md);
	hex_encode(md, sizeof(md), out);
	OPENSSL_cleanse(md, sizeof(md));
}

/* Constant-time check of secret against a stored hex hash. */
static bool secret_matches(const char *secret, const char *stored_hex)
{
	char h[65];
	bool ok;

	if (strlen(stored_hex) != 64)
		return false;
	store_hash_secret(secret, h);
	ok = CRYPTO_memcmp(h, stored_hex, 64) == 0;
	OPENSSL_cleanse(h, sizeof(h));
	return ok;
}

static bool is_lhex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

/* Splits "PFX<8 hex>_<48 hex>" into id and a pointer to the secret. */
static bool parse_token(const char *tok, const char *prefix, char id[STORE_ID_LEN],
			const char **secret)
{
	if (!tok || strlen(tok) != TOKEN_TEXT_LEN || strncmp(tok, prefix, 4) != 0)
		return false;
	if (!is_lhex(tok + 4, 8) || tok[12] != '_' || !is_lhex(tok + 13, SECRET_HEX))
		return false;
	memcpy(id, tok + 4, 8);
	id[8] = 0;
	*secret = tok + 13;
	return true;
}

/* Makes a new token: id, full text and the hash of its secret part. */
static void mint_token(const char *prefix, char id[STORE_ID_LEN], char token[STORE_SECRET_LEN],
		       char hash[65])
{
	char secret[SECRET_HEX + 1];

	random_hex(id, 4);
	random_hex(secret, SECRET_HEX / 2);
	snprintf(token, STORE_SECRET_LEN, "%s%s_%s", prefix, id, secret);
	store_hash_secret(secret, hash);
	OPENSSL_cleanse(secret, sizeof(secret));
}

/* --- open, migrate, close --- */

static int read_version(struct store *s, int *version)
{
	sqlite3_stmt *st = NULL;
	int64_t v = 0;
	int ret;

	ret = exec_sql(s, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
	if (ret)
		return ret;
	ret = prep(s, "SELECT max(version) FROM schema_version", &st);
	if (ret)
		return ret;
	ret = query_int(s, st, &v);
	sqlite3_finalize(st);
	*version = (int)v;
	return ret;
}

/* A consistent copy of the database at dst (made with mode), by SQLite's backup API. */
static int copy_db(struct store *s, const char *dst_path, mode_t mode, char *err, size_t errlen)
{
	sqlite3 *dst = NULL;
	sqlite3_backup *b;
	int fd, rc, ret = 0;

	fd = open(dst_path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0) {
		ret = -errno;
		set_err(err, errlen, "%s: %s", dst_path, strerror(errno));
		return ret;
	}
	close(fd);
	if (sqlite3_open_v2(dst_path, &dst, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		set_err(err, errlen, "%s: %s", dst_path,
			dst ? sqlite3_errmsg(dst) : "out of memory");
		ret = -EIO;
		goto out;
	}
	b = sqlite3_backup_init(dst, "main", s->db, "main");
	if (!b) {
		set_err(err, errlen, "%s: backup: %s", dst_path, sqlite3_errmsg(dst));
		ret = -EIO;
		goto out;
	}
	/* one step: the whole database, with no write of ours in between */
	rc = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		set_err(err, errlen, "%s: backup: %s", dst_path, sqlite3_errstr(rc));
		ret = -EIO;
	}
out:
	sqlite3_close(dst);
	return ret;
}

static int backup_db(struct store *s, int old, char *err, size_t errlen)
{
	char bak[1100];
	int ret;

	snprintf(bak, sizeof(bak), "%s.bak-v%d", s->path, old);
	ret = copy_db(s, bak, 0600, err, errlen);
	if (!ret)
		log_info("store: backed up schema v%d to %s", old, bak);
	return ret;
}

static int backup_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Keeps the newest `keep` nave-*.db files of dir (their names sort by time). */
static void backup_prune(const char *dir, unsigned keep)
{
	char *names[256], path[1200];
	unsigned n = 0;
	struct dirent *e;
	DIR *d = opendir(dir);

	while (d && (e = readdir(d)) && n < ARRAY_SIZE(names)) {
		size_t len = strlen(e->d_name);

		if (len > 8 && !strncmp(e->d_name, "nave-", 5) &&
		    !strcmp(e->d_name + len - 3, ".db"))
			names[n] = strdup(e->d_name), n += names[n] != NULL;
	}
	if (d)
		closedir(d);
	qsort(names, n, sizeof(names[0]), backup_name_cmp);
	for (unsigned i = 0; i < n; i++) {
		if (i + keep < n) {
			snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
			if (unlink(path) == 0)
				log_info("store: removed the old backup %s", path);
		}
		free(names[i]);
	}
}

int store_backup(struct store *s, const char *dir, unsigned keep, char *out, size_t outlen,
		 int64_t *bytes, char *err, size_t errlen)
{
	char tmp[1200], when[32];
	struct timespec ts;
	struct stat st;
	struct tm tm;
	int ret;

	ret = mkdir_p(dir, 0750);
	if (ret) {
		set_err(err, errlen, "%s: %s", dir, strerror(-ret));
		return ret;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y%m%dT%H%M%S", &tm);
	/*
	 * Names sort by time (the prune relies on it): to the microsecond, and a
	 * fixed-width counter in the unlikely case that one is taken.
	 */
	for (unsigned i = 0;; i++) {
		snprintf(out, outlen, "%s/nave-%s.%06ldZ-%02u.db", dir, when, ts.tv_nsec / 1000, i);
		if (lstat(out, &st) < 0 && errno == ENOENT)
			break;
		if (i == 99) {
			set_err(err, errlen, "%s: too many backups at once", dir);
			return -EEXIST;
		}
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", out);
	ret = copy_db(s, tmp, 0640, err, errlen);
	if (!ret && rename(tmp, out) < 0) {
		ret = -errno;
		set_err(err, errlen, "%s: %s", out, strerror(errno));
	}
	if (ret) {
		unlink(tmp);
		return ret;
	}
	*bytes = stat(out, &st) == 0 ? (int64_t)st.st_size : 0;
	log_info("store: backed up schema v%d to %s (%lld bytes)", s->version, out,
		 (long long)*bytes);
	if (keep)
		backup_prune(dir, keep);
	return 0;
}

static int migrate(struct store *s, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int version, ret;

	ret = read_version(s, &version);
	if (ret) {
		set_err(err, errlen, "%s: cannot read schema version: %s", s->path,
			sqlite3_errmsg(s->db));
		return ret;
	}
	if (version > STORE_SCHEMA_VERSION) {
		set_err(err, errlen, "%s: schema version %d is newer than this build's %d", s->path,
			version, STORE_SCHEMA_VERSION);
		return -EPROTO;
	}
	if (version >= 1 && version < STORE_SCHEMA_VERSION) {
		ret = backup_db(s, version, err, errlen);
		if (ret)
			return ret;
	}
	while (version < STORE_SCHEMA_VERSION) {
		ret = tx_begin(s);
		if (ret)
			goto fail;
		ret = exec_sql(s, store_migrations[version]);
		if (!ret) {
			ret = prep(s, "DELETE FROM schema_version", &st);
			if (!ret)
				ret = step_done(s, st);
			sqlite3_finalize(st);
		}
		if (!ret) {
			ret = prep(s, "INSERT INTO schema_version (version) VALUES (?1)", &st);
			if (!ret) {
				sqlite3_bind_int(st, 1, version + 1);
				ret = step_done(s, st);
			}
			sqlite3_finalize(st);
		}
		ret = tx_end(s, ret);
		if (ret)
			goto fail;
		version++;
		log_info("store: migrated %s to schema v%d", s->path, version);
	}
	s->version = version;
	return 0;
fail:
	set_err(err, errlen, "%s: migration to schema v%d failed: %s", s->path, version + 1,
		sqlite3_errmsg(s->db));
	return ret;
}

int store_open(struct store **out, const char *path, uint16_t port_min, uint16_t port_max,
	       unsigned max_per_tunnel, char *err, size_t errlen)
{
	struct store *s;
	int fd, ret;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!str_copy(s->path, sizeof(s->path), path)) {
		set_err(err, errlen, "%s: path too long", path);
		ret = -ENAMETOOLONG;
		goto out;
	}
	s->port_min = port_min;
	s->port_max = port_max;
	s->max_per_tunnel = max_per_tunnel;
	/* create it 0600 ourselves: SQLite would use the umask */
	fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	close(fd);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		set_err(err, errlen, "%s: %s", path,
			s->db ? sqlite3_errmsg(s->db) : "out of memory");
		ret = -EIO;
		goto out;
	}
	sqlite3_busy_timeout(s->db, 5000);
	ret = exec_sql(s, "PRAGMA journal_mode = WAL");
	if (!ret)
		ret = exec_sql(s, "PRAGMA synchronous = NORMAL");
	if (!ret)
		ret = exec_sql(s, "PRAGMA foreign_keys = ON");
	if (ret) {
		set_err(err, errlen, "%s: %s", path, sqlite3_errmsg(s->db));
		goto out;
	}
	ret = migrate(s, err, errlen);
out:
	if (ret) {
		store_close(s);
		return ret;
	}
	*out = s;
	return 0;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->db)
		sqlite3_close(s->db);
	free(s);
}

int store_schema_version(struct store *s)
{
	return s->version;
}

sqlite3 *store_sqlite(struct store *s)
{
	return s->db;
}

/* --- registrations --- */

/* Binds the five restriction columns at first, first + 1, ...: NULL when unset. */
static void bind_restrict(sqlite3_stmt *st, int first, const struct restrict_set *rs)
{
	const char *v[] = {rs ? rs->allow_from : "", rs ? rs->allow_ids : "", rs ? rs->kinds : "",
			   rs ? rs->domains : "", rs ? rs->ports : ""};

	for (int i = 0; i < 5; i++) {
		if (*v[i])
			sqlite3_bind_text(st, first + i, v[i], -1, SQLITE_TRANSIENT);
		else
			sqlite3_bind_null(st, first + i);
	}
}

#define R(m) AT(struct store_registration, m)
static const struct store_col reg_cols[] = {
    {"id", STORE_C_TEXT, R(id), .json = "id", .jtype = STORE_J_STR},
    {"description", STORE_C_TEXT, R(description), .json = "description", .jtype = STORE_J_TEXT},
    {"max_uses", STORE_C_I64, R(max_uses), .json = "max_uses", .jtype = STORE_J_INT},
    {"uses", STORE_C_I64, R(uses), .json = "uses", .jtype = STORE_J_INT},
    {"expires_at", STORE_C_I64, R(expires_at), .json = "expires_at", .jtype = STORE_J_TIME},
    {"enabled", STORE_C_BOOL, R(enabled), .json = "enabled", .jtype = STORE_J_BOOL},
    {"created_at", STORE_C_I64, R(created_at), .json = "created_at", .jtype = STORE_J_INT},
    /* its restrictions (restrict.h) */
    {"allow_from", STORE_C_TEXT, R(rs.allow_from), .json = "allow_from", .jtype = STORE_J_LIST},
    {"allow_ids", STORE_C_TEXT, R(rs.allow_ids), .json = "allow_ids", .jtype = STORE_J_LIST},
    {"kinds", STORE_C_TEXT, R(rs.kinds), .json = "kinds", .jtype = STORE_J_LIST},
    {"domains", STORE_C_TEXT, R(rs.domains), .json = "domains", .jtype = STORE_J_LIST},
    {"ports", STORE_C_TEXT, R(rs.ports), .json = "ports", .jtype = STORE_J_STR_NULL},
};
#undef R

static const struct store_query reg_query = {
    .table = "registrations", .key = "id", .where = "", .order = "created_at, rowid"};

STORE_ENTITY(store_registrations, "registration", struct store_registration, reg_cols, reg_query);

int store_registration_get(struct store *s, const char *id, struct store_registration *out)
{
	return store_get(s, &store_registrations, id, out);
}

int store_registration_create(struct store *s, const char *description, int64_t max_uses,
			      int64_t expires_in, struct store_registration *out,
			      char token[STORE_SECRET_LEN])
{
	return store_registration_create_rs(s, description, max_uses, expires_in, NULL, out, token);
}

int store_registration_create_rs(struct store *s, const char *description, int64_t max_uses,
				 int64_t expires_in, const struct restrict_set *rs,
				 struct store_registration *out, char token[STORE_SECRET_LEN])
{
	sqlite3_stmt *st;
	char id[STORE_ID_LEN], hash[65];
	int64_t now = store_now();
	int rc = SQLITE_CONSTRAINT, ret;

	if (max_uses < 0 || expires_in < 0)
		return -EINVAL;
	ret = prep(s,
		   "INSERT INTO registrations (id, hash, description, max_uses, uses, expires_at,"
		   " enabled, created_at, allow_from, allow_ids, kinds, domains, ports)"
		   " VALUES (?1, ?2, ?3, ?4, 0, ?5, 1, ?6, ?7, ?8, ?9, ?10, ?11)",
		   &st);
	if (ret)
		return ret;
	for (int i = 0; i < ID_TRIES && rc == SQLITE_CONSTRAINT; i++) {
		mint_token(REG_PREFIX, id, token, hash);
		sqlite3_reset(st);
		bind_text(st, 1, id);
		bind_text(st, 2, hash);
		bind_text(st, 3, description);
		sqlite3_bind_int64(st, 4, max_uses);
		if (expires_in)
			sqlite3_bind_int64(st, 5, now + expires_in);
		else
			sqlite3_bind_null(st, 5);
		sqlite3_bind_int64(st, 6, now);
		bind_restrict(st, 7, rs);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE)
		ret = db_fail(s, "registration create");
	sqlite3_finalize(st);
	if (ret) {
		OPENSSL_cleanse(token, STORE_SECRET_LEN);
		return ret;
	}
	return store_registration_get(s, id, out);
}

int store_registration_set_enabled(struct store *s, const char *id, bool enabled,
				   struct store_registration *out)
{
	sqlite3_stmt *st;
	int ret;

	ret = prep(s, "UPDATE registrations SET enabled = ?2 WHERE id = ?1", &st);
	if (ret)
		return ret;
	bind_text(st, 1, id);
	sqlite3_bind_int(st, 2, enabled);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	if (ret)
		return ret;
	return store_registration_get(s, id, out);
}

int store_registration_list(struct store *s, int64_t offset, int64_t limit, store_reg_cb cb,
			    void *arg, int64_t *total)
{
	return list_typed(s, &store_registrations, NULL, offset, limit, call_reg_cb,
			  (void (*)(void))cb, arg, total);
}

/* --- tunnels and tokens --- */

/* enum store_state by its text in the tunnels table */
static const char *const tunnel_states[] = {"offline", "online", NULL};

#define T(m) AT(struct store_tunnel, m)
static const struct store_col tunnel_cols[] = {
    {"id", STORE_C_TEXT, T(id), .json = "id", .jtype = STORE_J_STR},
    {"group_id", STORE_C_TEXT, T(group_id), .json = "group_id", .jtype = STORE_J_TEXT},
    {"hostname", STORE_C_TEXT, T(hostname), .json = "hostname", .jtype = STORE_J_TEXT},
    {"os", STORE_C_TEXT, T(os), .json = "os", .jtype = STORE_J_TEXT},
    {"arch", STORE_C_TEXT, T(arch), .json = "arch", .jtype = STORE_J_TEXT},
    {"client_version", STORE_C_TEXT, T(client_version), .json = "client_version",
     .jtype = STORE_J_TEXT},
    {"state", STORE_C_ENUM, T(state), .names = tunnel_states, .json = "state",
     .jtype = STORE_J_ENUM},
    {"last_seen", STORE_C_I64, T(last_seen), .json = "last_seen", .jtype = STORE_J_TIME},
    {"created_at", STORE_C_I64, T(created_at), .json = "created_at", .jtype = STORE_J_INT},
    {"coalesce(token_id, '')", STORE_C_TEXT, T(token_id), .json = "token_id",
     .jtype = STORE_J_STR_NULL},
    {"identity", STORE_C_TEXT, T(identity), .json = "identity", .jtype = STORE_J_TEXT},
};
#undef T

static int tunnel_bind(sqlite3_stmt *st, const struct store_filter *f);

static const struct store_query tunnel_query = {
    .table = "tunnels",
    .key = "id",
    .where = " WHERE (?1 = 0 OR state = 'online') AND (?2 = '' OR id LIKE ?2 ESCAPE '\\'"
	     " OR group_id LIKE ?2 ESCAPE '\\' OR hostname LIKE ?2 ESCAPE '\\')",
    .nparams = 2,
    .order = "created_at, rowid",
    .bind = tunnel_bind,
};

STORE_ENTITY(store_tunnels, "tunnel", struct store_tunnel, tunnel_cols, tunnel_query);

int store_tunnel_get(struct store *s, const char *id, struct store_tunnel *out)
{
	return store_get(s, &store_tunnels, id, out);
}

static const char *nz(const char *s)
{
	return s ? s : "";
}

/*
 * Creates a tunnel and an auth token bound to it, inside the caller's
 * transaction. group may be empty: the hostname, else the tunnel id is used.
 */
static int create_tunnel_token(struct store *s, const char *group,
			       const struct store_client_info *info, const char *description,
			       const struct restrict_set *rs, char tunnel_id[STORE_TUNNEL_ID_LEN],
			       char token_id[STORE_ID_LEN], char token[STORE_SECRET_LEN])
{
	static const struct store_client_info none;
	const char *hostname = NULL;
	sqlite3_stmt *st = NULL;
	char hash[65];
	int64_t now = store_now();
	int rc = SQLITE_CONSTRAINT, ret;

	if (!info)
		info = &none;
	if (info->hostname && *info->hostname)
		hostname = info->hostname;
	ret = prep(s,
		   "INSERT INTO tunnels (id, group_id, hostname, os, arch, client_version, state,"
		   " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'offline', ?7)",
		   &st);
	if (ret)
		return ret;
	for (int i = 0; i < ID_TRIES && rc == SQLITE_CONSTRAINT; i++) {
		char hex[13];

		random_hex(hex, 6);
		snprintf(tunnel_id, STORE_TUNNEL_ID_LEN, "t-%s", hex);
		sqlite3_reset(st);
		bind_text(st, 1, tunnel_id);
		bind_text(st, 2, group && *group ? group : hostname ? hostname : tunnel_id);
		bind_text(st, 3, nz(info->hostname));
		bind_text(st, 4, nz(info->os));
		bind_text(st, 5, nz(info->arch));
		bind_text(st, 6, nz(info->client_version));
		sqlite3_bind_int64(st, 7, now);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE)
		ret = db_fail(s, "tunnel create");
	sqlite3_finalize(st);
	if (ret)
		return ret;

	ret = prep(s,
		   "INSERT INTO tokens (id, hash, tunnel_id, description, created_at, revoked,"
		   " allow_from, allow_ids, kinds, domains, ports)"
		   " VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?9, ?10)",
		   &st);
	if (ret)
		return ret;
	rc = SQLITE_CONSTRAINT;
	for (int i = 0; i < ID_TRIES && rc == SQLITE_CONSTRAINT; i++) {
		mint_token(TOK_PREFIX, token_id, token, hash);
		sqlite3_reset(st);
		bind_text(st, 1, token_id);
		bind_text(st, 2, hash);
		bind_text(st, 3, tunnel_id);
		bind_text(st, 4, description);
		sqlite3_bind_int64(st, 5, now);
		bind_restrict(st, 6, rs);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE)
		ret = db_fail(s, "token create");
	sqlite3_finalize(st);
	if (ret)
		return ret;

	ret = prep(s, "UPDATE tunnels SET token_id = ?2 WHERE id = ?1", &st);
	if (ret)
		return ret;
	bind_text(st, 1, tunnel_id);
	bind_text(st, 2, token_id);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	return ret;
}

#define K(m) AT(struct store_token, m)
static const struct store_col token_cols[] = {
    {"id", STORE_C_TEXT, K(id), .json = "id", .jtype = STORE_J_STR},
    {"tunnel_id", STORE_C_TEXT, K(tunnel_id), .json = "tunnel_id", .jtype = STORE_J_STR},
    {"description", STORE_C_TEXT, K(description), .json = "description", .jtype = STORE_J_TEXT},
    {"created_at", STORE_C_I64, K(created_at), .json = "created_at", .jtype = STORE_J_INT},
    {"revoked", STORE_C_BOOL, K(revoked), .json = "revoked", .jtype = STORE_J_BOOL},
    /* a new token's answer shows its secret instead */
    {"last_used", STORE_C_I64, K(last_used), .json = "last_used", .jtype = STORE_J_TIME,
     .flags = STORE_J_STORED},
    /* its restrictions (restrict.h) */
    {"allow_from", STORE_C_TEXT, K(rs.allow_from), .json = "allow_from", .jtype = STORE_J_LIST},
    {"allow_ids", STORE_C_TEXT, K(rs.allow_ids), .json = "allow_ids", .jtype = STORE_J_LIST},
    {"kinds", STORE_C_TEXT, K(rs.kinds), .json = "kinds", .jtype = STORE_J_LIST},
    {"domains", STORE_C_TEXT, K(rs.domains), .json = "domains", .jtype = STORE_J_LIST},
    {"ports", STORE_C_TEXT, K(rs.ports), .json = "ports", .jtype = STORE_J_STR_NULL},
};
#undef K

static const struct store_query token_query = {
    .table = "tokens", .key = "id", .where = "", .order = "created_at, rowid"};

STORE_ENTITY(store_tokens, "token", struct store_token, token_cols, token_query);

int store_token_get(struct store *s, const char *id, struct store_token *out)
{
	return store_get(s, &store_tokens, id, out);
}

int store_token_create(struct store *s, const char *group, const char *description,
		       struct store_token *out, char token[STORE_SECRET_LEN])
{
	return store_token_create_rs(s, group, description, NULL, out, token);
}

int store_tunnel_restrictions(struct store *s, const char *tunnel_id, struct restrict_set *out)
{
	struct store_token t;
	sqlite3_stmt *st;
	char token_id[STORE_ID_LEN];
	int rc, ret;

	memset(out, 0, sizeof(*out));
	ret = prep(s, "SELECT coalesce(token_id, '') FROM tunnels WHERE id = ?1", &st);
	if (ret)
		return ret;
	bind_text(st, 1, tunnel_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		col_text(st, 0, token_id, sizeof(token_id));
	else
		ret = rc == SQLITE_DONE ? -ENOENT : db_fail(s, "tunnel token");
	sqlite3_finalize(st);
	if (ret)
		return ret;
	if (!token_id[0])
		return -ENOENT;
	ret = store_token_get(s, token_id, &t);
	if (!ret)
		*out = t.rs;
	return ret;
}

int store_token_create_rs(struct store *s, const char *group, const char *description,
			  const struct restrict_set *rs, struct store_token *out,
			  char token[STORE_SECRET_LEN])
{
	char tunnel_id[STORE_TUNNEL_ID_LEN], token_id[STORE_ID_LEN];
	int ret;

	ret = tx_begin(s);
	if (ret)
		return ret;
	ret = create_tunnel_token(s, group, NULL, description, rs, tunnel_id, token_id, token);
	ret = tx_end(s, ret);
	if (ret) {
		OPENSSL_cleanse(token, STORE_SECRET_LEN);
		return ret;
	}
	return store_token_get(s, token_id, out);
}

static bool name_in(const char *name, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(name, names[i]))
			return true;
	return false;
}

/* Rows of a tunnel that release_tunnel deletes, collected before the first delete. */
struct release {
	const struct store_col *rule;
	const char *const *keep;
	size_t nkeep, size, n, cap;
	char *rows;
};

static int release_collect(const void *row, void *arg)
{
	struct release *r = arg;
	const char *rule = (const char *)row + r->rule->off;

	if (r->keep && (!rule[0] || name_in(rule, r->keep, r->nkeep)))
		return 0;
	if (r->n == r->cap) {
		char *rows = realloc(r->rows, (r->cap = r->cap ? 2 * r->cap : 8) * r->size);

		if (!rows)
			return -ENOMEM;
		r->rows = rows;
	}
	memcpy(r->rows + r->n++ * r->size, row, r->size);
	return 0;
}

/*
 * Inside the caller's transaction: deletes the tunnel's rows of e (ports,
 * domains: by key, with a "rule" column), all of them (keep NULL) or those
 * with a rule name not in keep[0..nkeep); each deleted row goes to the typed
 * callback fn (through call) first.
 */
static int release_tunnel(struct store *s, const struct store_entity *e, const char *tunnel_id,
			  const char *const *keep, size_t nkeep, store_row_cb call,
			  void (*fn)(void), void *arg)
{
	struct release r = {col_named(e, "rule"), keep, nkeep, e->size, 0, 0, NULL};
	struct store_filter f = {.tunnel_id = nz(tunnel_id)}; /* NULL: none, not all */
	struct typed_cb t = {fn, arg};
	const struct store_col *key;
	sqlite3_stmt *del = NULL;
	int ret;

	if (!r.rule)
		return -EINVAL;
	/* collect first: rows are not deleted under a running SELECT of the table */
	ret = store_list(s, e, &f, 0, -1, release_collect, &r, NULL);
	if (!ret && r.n)
		ret = prep_delete(s, e, &del, &key); /* one DELETE, reset between rows */
	for (size_t i = 0; !ret && i < r.n; i++) {
		const void *row = r.rows + i * r.size;

		ret = delete_step(s, del, key, row);
		if (!ret && fn)
			ret = call(row, &t);
	}
	sqlite3_finalize(del);
	free(r.rows);
	return ret;
}

/*
 * release_tunnel in a transaction of its own; sync: a connecting client's
 * rule list, the names of keep[0..nkeep) (none at all is a list too).
 */
static int release_tunnel_tx(struct store *s, const struct store_entity *e, const char *tunnel_id,
			     bool sync, const char *const *keep, size_t nkeep, store_row_cb call,
			     void (*fn)(void), void *arg)
{
	static const char *const none[1] = {""};
	int ret = tx_begin(s);

	if (ret)
		return ret;
	if (sync && !nkeep)
		keep = none;
	ret = release_tunnel(s, e, tunnel_id, sync ? keep : NULL, nkeep, call, fn, arg);
	return tx_end(s, ret);
}

/*
 * Revokes every token of the tunnel and releases its ports and domains, in
 * the caller's transaction.
 */
static int revoke_tunnel_tx(struct store *s, const char *tunnel_id, store_port_cb cb,
			    store_domain_cb dcb, void *arg)
{
	sqlite3_stmt *st;
	int ret;

	ret = prep(s, "UPDATE tokens SET revoked = 1 WHERE tunnel_id = ?1", &st);
	if (ret)
		return ret;
	bind_text(st, 1, tunnel_id);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	if (!ret)
		ret = release_tunnel(s, &store_ports, tunnel_id, NULL, 0, call_port_cb,
				     (void (*)(void))cb, arg);
	if (!ret)
		ret = release_tunnel(s, &store_domains, tunnel_id, NULL, 0, call_domain_cb,
				     (void (*)(void))dcb, arg);
	return ret;
}

int store_token_revoke(struct store *s, const char *id, struct store_token *out, bool *changed,
		       store_port_cb released, store_domain_cb released_domain, void *arg)
{
	int ret;

	*changed = false;
	ret = store_token_get(s, id, out);
	if (ret)
		return ret;
	*changed = !out->revoked;
	/* revoking again still releases what the tunnel may hold */
	ret = tx_begin(s);
	if (ret)
		return ret;
	ret = revoke_tunnel_tx(s, out->tunnel_id, released, released_domain, arg);
	ret = tx_end(s, ret);
	if (ret) {
		*changed = false;
		return ret;
	}
	return store_token_get(s, id, out);
}

int store_tunnel_revoke(struct store *s, const char *tunnel_id, store_port_cb released,
			store_domain_cb released_domain, void *arg)
{
	struct store_tunnel t;
	int ret;

	ret = store_tunnel_get(s, tunnel_id, &t);
	if (ret)
		return ret;
	ret = tx_begin(s);
	if (ret)
		return ret;
	ret = revoke_tunnel_tx(s, tunnel_id, released, released_domain, arg);
	return tx_end(s, ret);
}

int store_port_sync(struct store *s, const char *tunnel_id, const char *const *names, size_t n,
		    store_port_cb released, void *arg)
{
	return release_tunnel_tx(s, &store_ports, tunnel_id, true, names, n, call_port_cb,
				 (void (*)(void))released, arg);
}

int store_token_list(struct store *s, int64_t offset, int64_t limit, store_token_cb cb, void *arg,
		     int64_t *total)
{
	return list_typed(s, &store_tokens, NULL, offset, limit, call_token_cb, (void (*)(void))cb,
			  arg, total);
}

/* Updates the client-reported fields that are known (non-empty). */
static int update_info(struct store *s, const char *tunnel_id, const struct store_client_info *info)
{
	sqlite3_stmt *st;
	int ret;

	if (!info)
		return 0;
	ret = prep(s,
		   "UPDATE tunnels SET hostname = coalesce(nullif(?2, ''), hostname),"
		   " os = coalesce(nullif(?3, ''), os), arch = coalesce(nullif(?4, ''), arch),"
		   " client_version = coalesce(nullif(?5, ''), client_version) WHERE id = ?1",
		   &st);
	if (ret)
		return ret;
	bind_text(st, 1, tunnel_id);
	bind_text(st, 2, info->hostname);
	bind_text(st, 3, info->os);
	bind_text(st, 4, info->arch);
	bind_text(st, 5, info->client_version);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	return ret;
}

int store_auth_cert(struct store *s, const char *name, bool update,
		    const struct store_client_info *info, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int ret;

	ret = tx_begin(s);
	if (ret)
		goto out;
	ret =
	    prep(s,
		 "INSERT OR IGNORE INTO tunnels (id, group_id, hostname, os, arch, client_version,"
		 " state, created_at) VALUES (?1, ?1, ?2, ?3, ?4, ?5, 'offline', ?6)",
		 &st);
	if (!ret) {
		bind_text(st, 1, name);
		bind_text(st, 2, nz(info ? info->hostname : NULL));
		bind_text(st, 3, nz(info ? info->os : NULL));
		bind_text(st, 4, nz(info ? info->arch : NULL));
		bind_text(st, 5, nz(info ? info->client_version : NULL));
		sqlite3_bind_int64(st, 6, store_now());
		ret = step_done(s, st);
	}
	sqlite3_finalize(st);
	if (!ret && update)
		ret = update_info(s, name, info);
	ret = tx_end(s, ret);
out:
	if (ret)
		set_err(err, errlen, "internal error");
	return ret;
}

int store_tunnel_set_identity(struct store *s, const char *id, const char *identity)
{
	sqlite3_stmt *st;
	int ret = prep(s, "UPDATE tunnels SET identity = ?2 WHERE id = ?1", &st);

	if (ret)
		return ret;
	bind_text(st, 1, id);
	bind_text(st, 2, identity);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	return ret;
}

int store_auth_registration(struct store *s, const char *registration, const char *group,
			    const struct store_client_info *info,
			    char tunnel_id[STORE_TUNNEL_ID_LEN], char token[STORE_SECRET_LEN],
			    char *err, size_t errlen)
{
	return store_auth_registration_rs(s, registration, group, info, NULL, NULL, tunnel_id,
					  token, err, errlen);
}

int store_auth_registration_rs(struct store *s, const char *registration, const char *group,
			       const struct store_client_info *info, store_restrict_check check,
			       void *check_arg, char tunnel_id[STORE_TUNNEL_ID_LEN],
			       char token[STORE_SECRET_LEN], char *err, size_t errlen)
{
	char id[STORE_ID_LEN], hash[65], token_id[STORE_ID_LEN], desc[64];
	struct store_registration reg;
	const char *secret;
	sqlite3_stmt *st = NULL;
	int64_t now = store_now(), max_uses, uses, expires_at;
	bool enabled;
	int rc, ret;

	if (!parse_token(registration, REG_PREFIX, id, &secret)) {
		set_err(err, errlen, "invalid registration token");
		return -EACCES;
	}
	ret = tx_begin(s);
	if (ret)
		return ret;
	ret = prep(s,
		   "SELECT hash, enabled, coalesce(expires_at, 0), max_uses, uses"
		   " FROM registrations WHERE id = ?1",
		   &st);
	if (ret)
		goto out;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		ret = rc == SQLITE_DONE ? -EACCES : db_fail(s, "registration lookup");
		set_err(err, errlen, "invalid registration token");
		goto out;
	}
	col_text(st, 0, hash, sizeof(hash));
	enabled = sqlite3_column_int(st, 1) != 0;
	expires_at = sqlite3_column_int64(st, 2);
	max_uses = sqlite3_column_int64(st, 3);
	uses = sqlite3_column_int64(st, 4);
	sqlite3_finalize(st);
	st = NULL;
	ret = -EACCES;
	if (!secret_matches(secret, hash)) {
		set_err(err, errlen, "invalid registration token");
		goto out;
	}
	if (!enabled) {
		set_err(err, errlen, "registration token disabled");
		goto out;
	}
	if (expires_at && now >= expires_at) {
		set_err(err, errlen, "registration token expired");
		goto out;
	}
	if (max_uses && uses >= max_uses) {
		set_err(err, errlen, "registration token used up");
		goto out;
	}
	ret = store_registration_get(s, id, &reg);
	if (ret)
		goto out;
	if (check && check(&reg.rs, NULL, check_arg, err, errlen)) {
		ret = -EACCES;
		goto out;
	}
	ret = prep(s, "UPDATE registrations SET uses = uses + 1 WHERE id = ?1", &st);
	if (ret)
		goto out;
	bind_text(st, 1, id);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	st = NULL;
	if (ret)
		goto out;
	snprintf(desc, sizeof(desc), "registration %s", id);
	ret = create_tunnel_token(s, group, info, desc, &reg.rs, tunnel_id, token_id, token);
out:
	sqlite3_finalize(st);
	if (ret && ret != -EACCES)
		set_err(err, errlen, "internal error");
	ret = tx_end(s, ret);
	if (ret)
		OPENSSL_cleanse(token, STORE_SECRET_LEN);
	return ret;
}

int store_auth_token(struct store *s, const char *token, bool update,
		     const struct store_client_info *info, char tunnel_id[STORE_TUNNEL_ID_LEN],
		     char *err, size_t errlen)
{
	return store_auth_token_rs(s, token, update, info, NULL, NULL, tunnel_id, err, errlen);
}

int store_auth_token_rs(struct store *s, const char *token, bool update,
			const struct store_client_info *info, store_restrict_check check,
			void *check_arg, char tunnel_id[STORE_TUNNEL_ID_LEN], char *err,
			size_t errlen)
{
	struct store_token t;
	char id[STORE_ID_LEN], hash[65];
	const char *secret;
	sqlite3_stmt *st = NULL;
	bool revoked;
	int rc, ret;

	if (!parse_token(token, TOK_PREFIX, id, &secret)) {
		set_err(err, errlen, "invalid token");
		return -EACCES;
	}
	ret = prep(s, "SELECT hash, tunnel_id, revoked FROM tokens WHERE id = ?1", &st);
	if (ret)
		goto out;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		ret = rc == SQLITE_DONE ? -EACCES : db_fail(s, "token lookup");
		set_err(err, errlen, "invalid token");
		goto out;
	}
	col_text(st, 0, hash, sizeof(hash));
	col_text(st, 1, tunnel_id, STORE_TUNNEL_ID_LEN);
	revoked = sqlite3_column_int(st, 2) != 0;
	sqlite3_finalize(st);
	st = NULL;
	ret = -EACCES;
	if (!secret_matches(secret, hash)) {
		set_err(err, errlen, "invalid token");
		goto out;
	}
	if (revoked) {
		set_err(err, errlen, "token revoked");
		goto out;
	}
	if (check) {
		struct store_tunnel tun;

		ret = store_token_get(s, id, &t);
		if (!ret)
			ret = store_tunnel_get(s, tunnel_id, &tun);
		if (ret)
			goto out;
		if (check(&t.rs, tun.group_id[0] ? tun.group_id : tun.id, check_arg, err, errlen)) {
			ret = -EACCES;
			goto out;
		}
	}
	ret = 0;
	if (!update)
		goto out;
	ret = tx_begin(s);
	if (ret)
		goto out;
	ret = update_info(s, tunnel_id, info);
	if (!ret)
		ret = prep(s, "UPDATE tokens SET last_used = ?2 WHERE id = ?1", &st);
	if (!ret) {
		bind_text(st, 1, id);
		sqlite3_bind_int64(st, 2, store_now());
		ret = step_done(s, st);
	}
	sqlite3_finalize(st);
	st = NULL;
	ret = tx_end(s, ret);
out:
	sqlite3_finalize(st);
	if (ret && ret != -EACCES)
		set_err(err, errlen, "internal error");
	return ret;
}

/* Escapes LIKE wildcards with '\' and wraps in '%'; false if too long. */
static bool like_pattern(const char *term, char *out, size_t len)
{
	size_t j = 0;

	if (len < 3)
		return false;
	out[j++] = '%';
	for (const char *p = term; *p; p++) {
		if (j + 4 > len)
			return false;
		if (*p == '%' || *p == '_' || *p == '\\')
			out[j++] = '\\';
		out[j++] = *p;
	}
	out[j++] = '%';
	out[j] = 0;
	return true;
}

/*
 * The search's pattern holds every byte of a search of STORE_SEARCH_MAX, each
 * escaped, and is bound whole: bind_text's cut at STORE_STR_LEN - 1 bytes
 * would drop its closing '%' or end it on a lone '\\'.
 */
static int tunnel_bind(sqlite3_stmt *st, const struct store_filter *f)
{
	char pat[2 * STORE_SEARCH_MAX + 3] = "";

	if (f->search && *f->search &&
	    (strlen(f->search) > STORE_SEARCH_MAX || !like_pattern(f->search, pat, sizeof(pat))))
		return -EINVAL;
	sqlite3_bind_int(st, 1, f->online_only);
	sqlite3_bind_text(st, 2, pat, -1, SQLITE_TRANSIENT);
	return 0;
}

int store_tunnel_list(struct store *s, bool online_only, const char *search, int64_t offset,
		      int64_t limit, store_tunnel_cb cb, void *arg, int64_t *total)
{
	struct store_filter f = {.online_only = online_only, .search = search};

	return list_typed(s, &store_tunnels, &f, offset, limit, call_tunnel_cb, (void (*)(void))cb,
			  arg, total);
}

int store_tunnel_set_state(struct store *s, const char *id, int state,
			   const struct store_client_info *info)
{
	sqlite3_stmt *st;
	int ret;

	ret = tx_begin(s);
	if (ret)
		return ret;
	ret = prep(s,
		   "UPDATE tunnels SET state = ?2,"
		   " last_seen = CASE WHEN ?2 = 'online' THEN ?3 ELSE last_seen END WHERE id = ?1",
		   &st);
	if (ret)
		goto out;
	bind_text(st, 1, id);
	bind_text(st, 2, state == STORE_ONLINE ? "online" : "offline");
	sqlite3_bind_int64(st, 3, store_now());
	ret = step_done(s, st);
	sqlite3_finalize(st);
	if (!ret && sqlite3_changes(s->db) == 0)
		ret = -ENOENT;
	if (!ret)
		ret = update_info(s, id, info);
out:
	return tx_end(s, ret);
}

int store_tunnel_all_offline(struct store *s)
{
	return exec_sql(s, "UPDATE tunnels SET state = 'offline' WHERE state <> 'offline'");
}

int store_tunnel_touch(struct store *s, const char *id)
{
	sqlite3_stmt *st;
	int ret;

	ret = prep(s, "UPDATE tunnels SET last_seen = ?2 WHERE id = ?1 AND state = 'online'", &st);
	if (ret)
		return ret;
	bind_text(st, 1, id);
	sqlite3_bind_int64(st, 2, store_now());
	ret = step_done(s, st);
	sqlite3_finalize(st);
	return ret;
}

int store_tunnel_counts(struct store *s, int64_t *total, int64_t *online)
{
	sqlite3_stmt *st;
	int rc, ret;

	ret = prep(s, "SELECT count(*), coalesce(sum(state = 'online'), 0) FROM tunnels", &st);
	if (ret)
		return ret;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*total = sqlite3_column_int64(st, 0);
		*online = sqlite3_column_int64(st, 1);
	} else {
		ret = db_fail(s, "tunnel counts");
	}
	sqlite3_finalize(st);
	return ret;
}

/* --- ports --- */

#define P(m) AT(struct store_port, m)
static const struct store_col port_cols[] = {
    {"port", STORE_C_U16, P(port), .json = "port", .jtype = STORE_J_INT, .flags = STORE_J_BRIEF},
    {"tunnel_id", STORE_C_TEXT, P(tunnel_id), .json = "tunnel_id", .jtype = STORE_J_STR},
    {"rule", STORE_C_TEXT, P(rule), .json = "rule", .jtype = STORE_J_TEXT, .flags = STORE_J_BRIEF},
    {"transport", STORE_C_TEXT, P(transport), .json = "transport", .jtype = STORE_J_STR,
     .flags = STORE_J_BRIEF},
    {"created_at", STORE_C_I64, P(created_at), .json = "created_at", .jtype = STORE_J_INT},
};
#undef P

static const struct store_query port_query = {
    .table = "ports",
    .key = "port",
    .where_of = tunnel_id_where,
    .nparams = 1,
    .order = "port",
    .bind = tunnel_id_bind,
};

STORE_ENTITY(store_ports, "port", struct store_port, port_cols, port_query);

bool store_transport_valid(const char *transport)
{
	return transport &&
	       (!strcmp(transport, STORE_TRANSPORT_TCP) || !strcmp(transport, STORE_TRANSPORT_UDP));
}

/*
 * Looks one port row up with a WHERE (and more) taking ?1, ?2 and ?3 (c and d, when
 * set); 1 found, 0 not, -EIO.
 */
static int port_find(struct store *s, const char *tail, const char *a, int64_t b, const char *c,
		     const char *d, struct store_port *out)
{
	sqlite3_stmt *st;
	int ret;

	ret = prep_select(s, &store_ports, tail, &st);
	if (ret)
		return ret;
	if (a)
		bind_text(st, 1, a);
	else
		sqlite3_bind_int64(st, 1, b);
	if (c)
		bind_text(st, 2, c);
	if (d)
		bind_text(st, 3, d);
	return row_one(s, &store_ports, st, out);
}

void store_set_limits(struct store *s, uint16_t port_min, uint16_t port_max,
		      unsigned max_per_tunnel)
{
	s->port_min = port_min;
	s->port_max = port_max;
	s->max_per_tunnel = max_per_tunnel;
}

int store_port_outside(struct store *s, uint16_t lo, uint16_t hi, struct store_port *out)
{
	sqlite3_stmt *st;
	int ret;

	ret = prep_select(s, &store_ports, " WHERE port < ?1 OR port > ?2 ORDER BY port LIMIT 1",
			  &st);
	if (ret)
		return ret;
	sqlite3_bind_int(st, 1, lo);
	sqlite3_bind_int(st, 2, hi);
	return row_one(s, &store_ports, st, out);
}

/*
 * Whether a tunnel may hold ports and domains: 0, -ENOENT (unknown) or
 * -EACCES (its token is revoked: it cannot connect, so it holds nothing),
 * with err set; -EIO.
 */
static int tunnel_usable(struct store *s, const char *tunnel_id, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int64_t n;
	int ret;

	/* -1: unknown; 0: usable; 1: its token is revoked */
	ret = prep(s,
		   "SELECT coalesce((SELECT count(*) > 0 FROM tokens WHERE tunnel_id = ?1 AND"
		   " revoked = 1), 0) FROM tunnels WHERE id = ?1 UNION ALL SELECT -1 LIMIT 1",
		   &st);
	if (ret)
		return ret;
	bind_text(st, 1, tunnel_id);
	ret = query_int(s, st, &n);
	sqlite3_finalize(st);
	if (ret)
		return ret;
	if (n < 0) {
		set_err(err, errlen, "unknown tunnel %s", tunnel_id);
		return -ENOENT;
	}
	if (n > 0) {
		set_err(err, errlen, "tunnel %s: its token is revoked", tunnel_id);
		return -EACCES;
	}
	return 0;
}

static int port_alloc_tx(struct store *s, const char *tunnel_id, unsigned port, const char *rule,
			 const char *transport, unsigned lo, unsigned hi, struct store_port *out,
			 bool *created, char *err, size_t errlen)
{
	struct store_filter f = {.tunnel_id = tunnel_id};
	sqlite3_stmt *st;
	int64_t n, free_port;
	int ret;

	ret = tunnel_usable(s, tunnel_id, err, errlen);
	if (ret)
		return ret;

	if (port) {
		if (port < s->port_min || port > s->port_max) {
			set_err(err, errlen, "port %u is outside the range %u-%u", port,
				s->port_min, s->port_max);
			return -ERANGE;
		}
		ret = port_find(s, " WHERE port = ?1", NULL, port, NULL, NULL, out);
		if (ret < 0)
			return ret;
		if (ret == 1) {
			if (strcmp(out->tunnel_id, tunnel_id) != 0) {
				set_err(err, errlen, "port %u is allocated to another tunnel",
					port);
				return -EADDRINUSE;
			}
			if (strcmp(out->transport, transport) != 0) {
				set_err(err, errlen, "port %u is a %s port of this tunnel", port,
					out->transport);
				return -EADDRINUSE;
			}
			if (!rule || !*rule || !strcmp(rule, out->rule))
				return 0;
			return rule_update(s, &store_ports, out, rule);
		}
	} else if (rule && *rule) {
		ret = port_find(s,
				" WHERE tunnel_id = ?1 AND rule = ?2 AND transport = ?3"
				" ORDER BY port LIMIT 1",
				tunnel_id, 0, rule, transport, out);
		if (ret < 0)
			return ret;
		/* held under the rule, and inside the token's range when it has one */
		if (ret == 1 && (!lo || (out->port >= lo && out->port <= hi)))
			return 0;
	}

	ret = row_count(s, &store_ports, &f, &n);
	if (ret)
		return ret;
	if (s->max_per_tunnel && n >= s->max_per_tunnel) {
		set_err(err, errlen, "tunnel %s already has %" PRId64 " ports (max_per_tunnel)",
			tunnel_id, n);
		return -EDQUOT;
	}

	if (!port) {
		/* the lowest free port is the range start or just above an allocated one */
		ret = prep(s,
			   "SELECT min(p) FROM (SELECT ?1 AS p UNION ALL SELECT port + 1 FROM ports"
			   " WHERE port >= ?1 AND port < ?2)"
			   " WHERE p NOT IN (SELECT port FROM ports)",
			   &st);
		if (ret)
			return ret;
		sqlite3_bind_int(st, 1, lo ? (int)lo : s->port_min);
		sqlite3_bind_int(st, 2, lo ? (int)hi : s->port_max);
		if (sqlite3_step(st) != SQLITE_ROW) {
			ret = db_fail(s, "free port");
			sqlite3_finalize(st);
			return ret;
		}
		free_port =
		    sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		if (free_port == 0) {
			set_err(err, errlen, "no free port in %u-%u", lo ? lo : s->port_min,
				lo ? hi : s->port_max);
			return -ENOSPC;
		}
		port = (unsigned)free_port;
	}

	memset(out, 0, sizeof(*out));
	out->port = (uint16_t)port;
	str_copy(out->tunnel_id, sizeof(out->tunnel_id), tunnel_id);
	str_copy(out->rule, sizeof(out->rule), nz(rule));
	str_copy(out->transport, sizeof(out->transport), transport);
	out->created_at = store_now();
	ret = row_insert(s, &store_ports, out);
	if (!ret)
		*created = true;
	return ret;
}

int store_port_alloc(struct store *s, const char *tunnel_id, unsigned port, const char *rule,
		     const char *transport, struct store_port *out, bool *created, char *err,
		     size_t errlen)
{
	return store_port_alloc_in(s, tunnel_id, port, rule, transport, 0, 0, out, created, err,
				   errlen);
}

int store_port_alloc_in(struct store *s, const char *tunnel_id, unsigned port, const char *rule,
			const char *transport, unsigned lo, unsigned hi, struct store_port *out,
			bool *created, char *err, size_t errlen)
{
	int ret;

	*created = false;
	if (!transport)
		transport = STORE_TRANSPORT_TCP;
	if (!store_transport_valid(transport)) {
		set_err(err, errlen, "bad transport");
		return -EINVAL;
	}
	if (rule && strlen(rule) >= STORE_RULE_LEN) {
		set_err(err, errlen, "invalid rule name");
		return -EINVAL;
	}
	if (port > 65535) {
		set_err(err, errlen, "port %u is outside the range %u-%u", port, s->port_min,
			s->port_max);
		return -ERANGE;
	}
	/* the token's range, inside the server's (a reload may have narrowed that) */
	if (lo && (lo < s->port_min || hi > s->port_max || lo > hi)) {
		if (lo < s->port_min)
			lo = s->port_min;
		if (hi > s->port_max)
			hi = s->port_max;
		if (lo > hi) {
			set_err(err, errlen, "the token's port range is outside the range %u-%u",
				s->port_min, s->port_max);
			return -ERANGE;
		}
	}
	if (lo && port && (port < lo || port > hi)) {
		set_err(err, errlen, "port %u is outside this token's port range %u-%u", port, lo,
			hi);
		return -ERANGE;
	}
	ret = tx_begin_err(s, err, errlen);
	if (ret)
		return ret;
	ret = port_alloc_tx(s, tunnel_id, port, rule, transport, lo, hi, out, created, err, errlen);
	ret = tx_end_err(s, ret, err, errlen);
	if (ret)
		*created = false;
	return ret;
}

int store_port_release(struct store *s, unsigned port, const char *tunnel_id,
		       struct store_port *out, char *err, size_t errlen)
{
	struct store_port p;
	char name[16];
	int ret;

	if (port == 0 || port > 65535) {
		set_err(err, errlen, "port %u is not allocated", port);
		return -ENOENT;
	}
	ret = port_find(s, " WHERE port = ?1", NULL, port, NULL, NULL, &p);
	snprintf(name, sizeof(name), "port %u", port);
	ret =
	    release_held(s, &store_ports, ret, &p, tunnel_id, name, "allocated", "to", err, errlen);
	if (!ret && out)
		*out = p;
	return ret;
}

int store_port_list(struct store *s, const char *tunnel_id, int64_t offset, int64_t limit,
		    store_port_cb cb, void *arg, int64_t *total)
{
	struct store_filter f = {.tunnel_id = tunnel_id};

	return list_typed(s, &store_ports, &f, offset, limit, call_port_cb, (void (*)(void))cb, arg,
			  total);
}

int store_port_count(struct store *s, int64_t *count)
{
	sqlite3_stmt *st;
	int ret;

	ret = prep(s, "SELECT count(*) FROM ports", &st);
	if (ret)
		return ret;
	ret = query_int(s, st, count);
	sqlite3_finalize(st);
	return ret;
}

/* --- domains --- */

/* What a domain claim that domain_norm refused gets wrong, as a reason. */
static void domain_reason(const char *d, size_t n, char *why, size_t whylen)
{
	char raw[61], shown[4 * sizeof(raw) + 4];
	size_t label = 0, i = 0, cut = n < sizeof(raw) ? n : sizeof(raw) - 1;
	bool bad_char = false, star = false, empty = false, dash = false, long_label = false;

	if (n == 0) {
		set_err(why, whylen, "the domain is empty");
		return;
	}
	/* shown escaped (log_escape: printable UTF-8 out of any bytes), cut with "..." */
	memcpy(raw, d, cut);
	raw[cut] = 0;
	log_escape(raw, cut, shown, sizeof(shown) - 4, false);
	if (cut < n)
		strcat(shown, "...");
	if (n > DOMAIN_MAX) {
		set_err(why, whylen, "domain \"%s\" is longer than %d characters", shown,
			DOMAIN_MAX);
		return;
	}
	if (n >= 2 && d[0] == '*' && d[1] == '.')
		i = 2;
	if (i == n) {
		set_err(why, whylen, "domain \"%s\" names nothing after '*.'", shown);
		return;
	}
	for (size_t k = i; k < n; k++) {
		unsigned char c = (unsigned char)d[k];

		if (c == '.') {
			empty |= label == 0;
			dash |= label && d[k - 1] == '-';
			label = 0;
		} else if (c == '*') {
			star = true;
		} else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
			label++;
		} else if ((c >= '0' && c <= '9') || c == '-') {
			dash |= label == 0 && c == '-';
			label++;
		} else {
			bad_char = true;
		}
		long_label |= label > 63;
	}
	empty |= label == 0;
	dash |= d[n - 1] == '-';
	if (bad_char)
		set_err(why, whylen,
			"domain \"%s\" holds characters other than letters, digits, '-' and '.' "
			"(a name in another script goes in its xn-- form)",
			shown);
	else if (star)
		set_err(why, whylen,
			"domain \"%s\": '*' only as the whole first label (*.example.com)", shown);
	else if (empty)
		set_err(why, whylen,
			"domain \"%s\" has an empty label (a leading, trailing or "
			"doubled '.')",
			shown);
	else if (long_label)
		set_err(why, whylen, "domain \"%s\" has a label longer than 63 characters", shown);
	else if (dash)
		set_err(why, whylen, "domain \"%s\" has a label that starts or ends with '-'",
			shown);
	else
		set_err(why, whylen, "domain \"%s\" is not a valid domain name", shown);
}

bool store_domain_check(const char *d, size_t n, char out[DOMAIN_MAX + 1], char *why, size_t whylen)
{
	if (n <= DOMAIN_MAX && domain_norm(d, n, out, true))
		return true;
	domain_reason(d, n, why, whylen);
	return false;
}

bool store_domain_allowed(const char *patterns, const char *domain)
{
	char item[CFG_STR_MAX], pat[DOMAIN_MAX + 1];
	const char *p;

	if (!patterns || !patterns[strspn(patterns, ", \t")])
		return true;
	for (p = patterns; (p = cfg_list_next(p, item, sizeof(item)));) {
		if (!domain_norm(item, strlen(item), pat, true))
			continue; /* refused at load: never here */
		if (!strcmp(pat, domain))
			return true;
		if (!domain_is_wildcard(domain)) {
			if (domain_match(pat, domain))
				return true;
			continue;
		}
		/* "*.S" under "*.T": every name under S is under T */
		if (domain_is_wildcard(pat) &&
		    (!strcmp(domain + 2, pat + 2) || domain_match(pat, domain + 2)))
			return true;
	}
	return false;
}

#define D(m) AT(struct store_domain, m)
static const struct store_col domain_cols[] = {
    {"domain", STORE_C_TEXT, D(domain), .json = "domain", .jtype = STORE_J_STR,
     .flags = STORE_J_BRIEF},
    {"tunnel_id", STORE_C_TEXT, D(tunnel_id), .json = "tunnel_id", .jtype = STORE_J_STR},
    {"rule", STORE_C_TEXT, D(rule), .json = "rule", .jtype = STORE_J_TEXT, .flags = STORE_J_BRIEF},
    {"created_at", STORE_C_I64, D(created_at), .json = "created_at", .jtype = STORE_J_INT},
};
#undef D

static const struct store_query domain_query = {
    .table = "domains",
    .key = "domain",
    .where_of = tunnel_id_where,
    .nparams = 1,
    .order = "domain",
    .bind = tunnel_id_bind,
};

STORE_ENTITY(store_domains, "domain", struct store_domain, domain_cols, domain_query);

/* The row of a (normalised) domain: 1 found, 0 not, or -EIO. */
static int domain_find(struct store *s, const char *domain, struct store_domain *out)
{
	return row_find(s, &store_domains, domain, out);
}

static int domain_claim_tx(struct store *s, const char *tunnel_id, const char *domain,
			   const char *rule, struct store_domain *out, bool *created, char *err,
			   size_t errlen)
{
	struct store_filter f = {.tunnel_id = tunnel_id};
	int64_t n;
	int ret;

	ret = tunnel_usable(s, tunnel_id, err, errlen);
	if (ret)
		return ret;
	ret = domain_find(s, domain, out);
	if (ret < 0)
		return ret;
	if (ret == 1) {
		if (strcmp(out->tunnel_id, tunnel_id) != 0) {
			set_err(err, errlen, "domain %s is held by tunnel %s", domain,
				out->tunnel_id);
			return -EADDRINUSE;
		}
		if (!rule || !*rule || !strcmp(rule, out->rule))
			return 0;
		return rule_update(s, &store_domains, out, rule);
	}
	ret = row_count(s, &store_domains, &f, &n);
	if (ret)
		return ret;
	if (n >= LINK_RULES_MAX) {
		set_err(err, errlen, "tunnel %s already holds %d domains, the most it can",
			tunnel_id, LINK_RULES_MAX);
		return -EDQUOT;
	}
	memset(out, 0, sizeof(*out));
	str_copy(out->domain, sizeof(out->domain), domain);
	str_copy(out->tunnel_id, sizeof(out->tunnel_id), tunnel_id);
	str_copy(out->rule, sizeof(out->rule), nz(rule));
	out->created_at = store_now();
	ret = row_insert(s, &store_domains, out);
	if (!ret)
		*created = true;
	return ret;
}

int store_domain_claim(struct store *s, const char *tunnel_id, const char *domain, const char *rule,
		       struct store_domain *out, bool *created, char *err, size_t errlen)
{
	char d[DOMAIN_MAX + 1];
	int ret;

	*created = false;
	if (!store_domain_check(domain, strlen(domain), d, err, errlen))
		return -EINVAL;
	if (rule && strlen(rule) >= STORE_RULE_LEN) {
		set_err(err, errlen, "invalid rule name");
		return -EINVAL;
	}
	ret = tx_begin_err(s, err, errlen);
	if (ret)
		return ret;
	ret = domain_claim_tx(s, tunnel_id, d, rule, out, created, err, errlen);
	ret = tx_end_err(s, ret, err, errlen);
	if (ret)
		*created = false;
	return ret;
}

int store_domain_release(struct store *s, const char *domain, const char *tunnel_id,
			 struct store_domain *out, char *err, size_t errlen)
{
	struct store_domain row;
	char d[DOMAIN_MAX + 1], name[DOMAIN_MAX + 8];
	int ret;

	if (!store_domain_check(domain, strlen(domain), d, err, errlen))
		return -EINVAL;
	ret = domain_find(s, d, &row);
	snprintf(name, sizeof(name), "domain %s", d);
	ret =
	    release_held(s, &store_domains, ret, &row, tunnel_id, name, "held", "by", err, errlen);
	if (!ret && out)
		*out = row;
	return ret;
}

int store_domain_sync(struct store *s, const char *tunnel_id, const char *const *names, size_t n,
		      store_domain_cb released, void *arg)
{
	return release_tunnel_tx(s, &store_domains, tunnel_id, true, names, n, call_domain_cb,
				 (void (*)(void))released, arg);
}

int store_domain_release_tunnel(struct store *s, const char *tunnel_id, store_domain_cb released,
				void *arg)
{
	return release_tunnel_tx(s, &store_domains, tunnel_id, false, NULL, 0, call_domain_cb,
				 (void (*)(void))released, arg);
}

int store_domain_list(struct store *s, const char *tunnel_id, int64_t offset, int64_t limit,
		      store_domain_cb cb, void *arg, int64_t *total)
{
	struct store_filter f = {.tunnel_id = tunnel_id};

	return list_typed(s, &store_domains, &f, offset, limit, call_domain_cb, (void (*)(void))cb,
			  arg, total);
}

/* --- firewall --- */

/* enum store_fw_kind by its text in the firewall table */
static const char *const fw_kinds[] = {"deny", "allow", NULL};

#define F(m) AT(struct store_fw_rule, m)
static const struct store_col fw_cols[] = {
    /* a list's rows: the list is known, not written */
    {"kind", STORE_C_ENUM, F(kind), .names = fw_kinds, .jtype = STORE_J_NONE},
    {"cidr", STORE_C_TEXT, F(cidr), .json = "cidr", .jtype = STORE_J_STR},
    {"created_at", STORE_C_I64, F(created_at), .json = "created", .jtype = STORE_J_INT},
};
#undef F

/* the filter " WHERE kind = ?1": -EINVAL for no such list */
static int fw_bind(sqlite3_stmt *st, const struct store_filter *f)
{
	const char *kind = store_fw_kind_name(f->kind);

	if (!kind)
		return -EINVAL;
	sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	return 0;
}

static const struct store_query fw_query = {
    .table = "firewall",
    .key = NULL, /* a block is one row of each list it is in */
    .where = " WHERE kind = ?1",
    .nparams = 1,
    .order = "id",
    .bind = fw_bind,
    .need_filter = true, /* a zeroed filter would be kind 0, the deny list: say which */
};

STORE_ENTITY(store_fw_rules, "firewall rule", struct store_fw_rule, fw_cols, fw_query);

const char *store_fw_kind_name(int kind)
{
	return kind >= 0 && kind < (int)ARRAY_SIZE(fw_kinds) - 1 ? fw_kinds[kind] : NULL;
}

/* The kind and the canonical text of a block; -EINVAL with err set. */
static int fw_canon(int kind, const char *text, struct store_fw_rule *r, char *err, size_t errlen)
{
	struct cidr c;
	char why[192];

	memset(r, 0, sizeof(*r));
	if (!store_fw_kind_name(kind)) {
		set_err(err, errlen, "no such firewall list");
		return -EINVAL;
	}
	if (cidr_parse(text, &c, why, sizeof(why))) {
		set_err(err, errlen, "%s", why);
		return -EINVAL;
	}
	r->kind = kind;
	cidr_format(&c, r->cidr, sizeof(r->cidr));
	return 0;
}

/* The row of the list holding r's block: 1 with created_at set, 0 when absent, or -EIO. */
static int fw_find(struct store *s, struct store_fw_rule *r)
{
	struct store_fw_rule found;
	sqlite3_stmt *st;
	int ret;

	ret = prep_select(s, &store_fw_rules, " WHERE kind = ?1 AND cidr = ?2", &st);
	if (ret)
		return ret;
	sqlite3_bind_text(st, 1, store_fw_kind_name(r->kind), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r->cidr, -1, SQLITE_STATIC);
	ret = row_one(s, &store_fw_rules, st, &found);
	if (ret == 1)
		r->created_at = found.created_at;
	return ret;
}

static int fw_count(struct store *s, int kind, int64_t *n)
{
	struct store_filter f = {.kind = kind};

	return row_count(s, &store_fw_rules, &f, n);
}

static int fw_add_tx(struct store *s, struct store_fw_rule *r, char *err, size_t errlen)
{
	const char *list = store_fw_kind_name(r->kind);
	struct store_fw_rule old = *r;
	int64_t n;
	int ret;

	ret = fw_find(s, &old);
	if (ret < 0)
		return ret;
	if (ret) {
		set_err(err, errlen, "%s is in the %s list already", r->cidr, list);
		return -EEXIST;
	}
	ret = fw_count(s, r->kind, &n);
	if (ret)
		return ret;
	if (n >= CIDR_LIST_MAX) {
		set_err(err, errlen, "the %s list holds %d blocks, the most it can", list,
			CIDR_LIST_MAX);
		return -EDQUOT;
	}
	return row_insert(s, &store_fw_rules, r);
}

int store_fw_add(struct store *s, int kind, const char *cidr, struct store_fw_rule *out, char *err,
		 size_t errlen)
{
	struct store_fw_rule r;
	int ret;

	ret = fw_canon(kind, cidr, &r, err, errlen);
	if (ret)
		return ret;
	r.created_at = store_now();
	ret = tx_begin_err(s, err, errlen);
	if (ret)
		return ret;
	ret = fw_add_tx(s, &r, err, errlen);
	ret = tx_end_err(s, ret, err, errlen);
	if (!ret && out)
		*out = r;
	return ret;
}

int store_fw_del(struct store *s, int kind, const char *cidr, struct store_fw_rule *out, char *err,
		 size_t errlen)
{
	struct store_fw_rule r;
	sqlite3_stmt *st;
	int ret;

	ret = fw_canon(kind, cidr, &r, err, errlen);
	if (ret)
		return ret;
	ret = fw_find(s, &r);
	if (ret == 0) {
		set_err(err, errlen, "%s is not in the %s list", r.cidr, store_fw_kind_name(kind));
		return -ENOENT;
	}
	if (ret > 0)
		ret = prep(s, "DELETE FROM firewall WHERE kind = ?1 AND cidr = ?2", &st);
	if (ret) {
		set_err(err, errlen, "internal error");
		return ret;
	}
	sqlite3_bind_text(st, 1, store_fw_kind_name(kind), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r.cidr, -1, SQLITE_STATIC);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	if (ret) {
		set_err(err, errlen, "internal error");
		return ret;
	}
	if (out)
		*out = r;
	return 0;
}

int store_fw_list(struct store *s, int kind, store_fw_cb cb, void *arg, int64_t *total)
{
	struct store_filter f = {.kind = kind};

	return list_typed(s, &store_fw_rules, &f, 0, -1, call_fw_cb, (void (*)(void))cb, arg,
			  total);
}

/* --- the mesh access policy --- */

/* to_kind and to_pat of a canonical to ("*": both "*") */
static void mesh_to_split(const char *to, char kind[16], const char **pat)
{
	const char *colon = strchr(to, ':');

	if (!strcmp(to, "*") || !colon || colon - to >= 16) {
		strcpy(kind, "*");
		*pat = "*";
		return;
	}
	memcpy(kind, to, (size_t)(colon - to));
	kind[colon - to] = 0;
	*pat = colon + 1;
}

static int mesh_count(struct store *s, int64_t *n)
{
	sqlite3_stmt *st;
	int ret = prep(s, "SELECT count(*) FROM mesh_rules", &st);

	if (ret)
		return ret;
	ret = query_int(s, st, n);
	sqlite3_finalize(st);
	return ret;
}

/* empty, or printable UTF-8 (valid.h) of at most MESH_COMMENT_MAX bytes, whoever calls */
static bool mesh_comment_ok(const char *c)
{
	return !*c || valid_str(c, VALID_TEXT, MESH_COMMENT_MAX);
}

static int mesh_add_tx(struct store *s, struct store_mesh_rule *r, char *err, size_t errlen)
{
	char kind[16];
	const char *pat;
	sqlite3_stmt *st;
	int64_t n;
	int ret;

	ret = mesh_count(s, &n);
	if (ret)
		return ret;
	if (n >= MESH_RULES_MAX) {
		set_err(err, errlen, "the mesh policy holds %d rules, the most it can",
			MESH_RULES_MAX);
		return -EDQUOT;
	}
	if (r->position > 0) {
		ret = prep(s, "UPDATE mesh_rules SET position = position + 1 WHERE position >= ?1",
			   &st);
		if (ret)
			return ret;
		sqlite3_bind_int64(st, 1, r->position);
		ret = step_done(s, st);
		sqlite3_finalize(st);
	} else {
		ret = prep(s, "SELECT coalesce(max(position), 0) + 1 FROM mesh_rules", &st);
		if (ret)
			return ret;
		ret = query_int(s, st, &r->position);
		sqlite3_finalize(st);
	}
	if (ret)
		return ret;
	mesh_to_split(r->to, kind, &pat);
	ret = prep(s,
		   "INSERT INTO mesh_rules (position, action, from_pat, to_kind, to_pat, port_lo,"
		   " port_hi, comment, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
		   &st);
	if (ret)
		return ret;
	sqlite3_bind_int64(st, 1, r->position);
	sqlite3_bind_text(st, 2, r->action == MESH_ALLOW ? "allow" : "deny", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, r->from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, pat, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 6, (int)r->port_lo);
	sqlite3_bind_int(st, 7, (int)r->port_hi);
	sqlite3_bind_text(st, 8, r->comment, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, r->created);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	if (!ret)
		r->id = sqlite3_last_insert_rowid(s->db);
	return ret;
}

int store_mesh_add(struct store *s, struct store_mesh_rule *r, char *err, size_t errlen)
{
	char from[MESH_FROM_MAX], to[MESH_TO_MAX], why[256];
	int ret;

	if (r->action != MESH_ALLOW && r->action != MESH_DENY) {
		set_err(err, errlen, "action: allow or deny");
		return -EINVAL;
	}
	if (!mesh_from_norm(r->from, from, why, sizeof(why)) ||
	    !mesh_to_norm(r->to, to, why, sizeof(why))) {
		set_err(err, errlen, "%s", why);
		return -EINVAL;
	}
	if (r->port_lo > r->port_hi || r->port_hi > 65535 || (!r->port_lo && r->port_hi)) {
		set_err(err, errlen, "port: a port or a range A-B in 1-65535");
		return -EINVAL;
	}
	if (!mesh_comment_ok(r->comment)) {
		set_err(err, errlen,
			"comment: at most %d bytes of UTF-8 text without control characters",
			MESH_COMMENT_MAX);
		return -EINVAL;
	}
	if (r->position < 0 || r->position > 1000000) {
		set_err(err, errlen, "position: 1-1000000");
		return -EINVAL;
	}
	strcpy(r->from, from);
	strcpy(r->to, to);
	r->created = store_now();
	ret = tx_begin_err(s, err, errlen);
	if (ret)
		return ret;
	ret = mesh_add_tx(s, r, err, errlen);
	return tx_end_err(s, ret, err, errlen);
}

static void mesh_row(sqlite3_stmt *st, struct store_mesh_rule *r)
{
	char kind[16];

	memset(r, 0, sizeof(*r));
	r->id = sqlite3_column_int64(st, 0);
	r->position = sqlite3_column_int64(st, 1);
	r->action = !strcmp((const char *)sqlite3_column_text(st, 2) ?: "", "allow") ? MESH_ALLOW
										     : MESH_DENY;
	col_text(st, 3, r->from, sizeof(r->from));
	col_text(st, 4, kind, sizeof(kind));
	if (!strcmp(kind, "*"))
		strcpy(r->to, "*");
	else
		snprintf(r->to, sizeof(r->to), "%s:%s", kind,
			 (const char *)sqlite3_column_text(st, 5) ?: "");
	r->port_lo = (unsigned)sqlite3_column_int(st, 6);
	r->port_hi = (unsigned)sqlite3_column_int(st, 7);
	col_text(st, 8, r->comment, sizeof(r->comment));
	r->created = sqlite3_column_int64(st, 9);
}

#define MESH_SELECT                                                                                \
	"SELECT id, position, action, from_pat, to_kind, to_pat, port_lo, port_hi, comment,"       \
	" created FROM mesh_rules"

int store_mesh_del(struct store *s, int64_t id, struct store_mesh_rule *out, char *err,
		   size_t errlen)
{
	struct store_mesh_rule r;
	sqlite3_stmt *st;
	int rc, ret;

	ret = prep(s, MESH_SELECT " WHERE id = ?1", &st);
	if (ret) {
		set_err(err, errlen, "internal error");
		return ret;
	}
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		mesh_row(st, &r);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW) {
		if (rc != SQLITE_DONE) {
			set_err(err, errlen, "internal error");
			return -EIO;
		}
		set_err(err, errlen, "no mesh rule %lld", (long long)id);
		return -ENOENT;
	}
	ret = prep(s, "DELETE FROM mesh_rules WHERE id = ?1", &st);
	if (!ret) {
		sqlite3_bind_int64(st, 1, id);
		ret = step_done(s, st);
		sqlite3_finalize(st);
	}
	if (ret) {
		set_err(err, errlen, "internal error");
		return ret;
	}
	if (out)
		*out = r;
	return 0;
}

int store_mesh_list(struct store *s, store_mesh_cb cb, void *arg, int64_t *total)
{
	struct store_mesh_rule r;
	sqlite3_stmt *st;
	int64_t n = 0;
	int rc, ret;

	ret = prep(s, MESH_SELECT " ORDER BY position, id", &st);
	if (ret)
		return ret;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		n++;
		mesh_row(st, &r);
		if (cb && (ret = cb(&r, arg)))
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(s, "mesh rules");
	sqlite3_finalize(st);
	if (!ret && total)
		*total = n;
	return ret;
}

/* --- admin users, sessions, API keys --- */

bool store_user_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n < 1 || n > STORE_USER_LEN - 1 || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

#define U(m) AT(struct store_user, m)
static const struct store_col user_cols[] = {
    {"name", STORE_C_TEXT, U(name), .json = "name", .jtype = STORE_J_STR},
    {"hash", STORE_C_TEXT, U(hash), .jtype = STORE_J_NONE},
    {"totp_secret", STORE_C_TEXT, U(totp_secret), .jtype = STORE_J_NONE},
    {"totp_secret IS NOT NULL", STORE_C_BOOL, U(two_factor), .json = "two_factor",
     .jtype = STORE_J_BOOL},
    {"totp_step", STORE_C_I64, U(totp_step), .jtype = STORE_J_NONE},
    {"created_at", STORE_C_I64, U(created_at), .json = "created_at", .jtype = STORE_J_INT},
    {"last_login", STORE_C_I64, U(last_login), .json = "last_login", .jtype = STORE_J_TIME},
    {"failed", STORE_C_I64, U(failed), .json = "failed_logins", .jtype = STORE_J_INT},
    {"locked_until", STORE_C_I64, U(locked_until), .json = "locked_until", .jtype = STORE_J_TIME},
};
#undef U

static const struct store_query user_query = {
    .table = "users", .key = "name", .where = "", .order = "name"};

STORE_ENTITY(store_users, "user", struct store_user, user_cols, user_query);

#define S(m) AT(struct store_session, m)
static const struct store_col session_cols[] = {
    {"id_hash", STORE_C_TEXT, S(id_hash), .jtype = STORE_J_NONE},
    {"user", STORE_C_TEXT, S(user), .json = "user", .jtype = STORE_J_STR},
    {"csrf", STORE_C_TEXT, S(csrf), .jtype = STORE_J_NONE},
    {"created_at", STORE_C_I64, S(created_at), .json = "created_at", .jtype = STORE_J_INT},
    {"expires_at", STORE_C_I64, S(expires_at), .json = "expires_at", .jtype = STORE_J_INT},
    {"last_used", STORE_C_I64, S(last_used), .json = "last_used", .jtype = STORE_J_INT},
    {"source", STORE_C_TEXT, S(source), .json = "source", .jtype = STORE_J_TEXT},
};
#undef S

static const struct store_query session_query = {
    .table = "sessions", .key = "id_hash", .where = "", .order = "created_at, rowid"};

STORE_ENTITY(store_sessions, "session", struct store_session, session_cols, session_query);

#define A(m) AT(struct store_apikey, m)
static const struct store_col apikey_cols[] = {
    {"id", STORE_C_TEXT, A(id), .json = "id", .jtype = STORE_J_STR},
    {"hash", STORE_C_TEXT, A(hash), .jtype = STORE_J_NONE},
    {"description", STORE_C_TEXT, A(description), .json = "description", .jtype = STORE_J_TEXT},
    {"created_at", STORE_C_I64, A(created_at), .json = "created_at", .jtype = STORE_J_INT},
    {"expires_at", STORE_C_I64, A(expires_at), .json = "expires_at", .jtype = STORE_J_TIME},
    {"last_used", STORE_C_I64, A(last_used), .json = "last_used", .jtype = STORE_J_TIME,
     .flags = STORE_J_STORED},
    {"revoked", STORE_C_BOOL, A(revoked), .json = "revoked", .jtype = STORE_J_BOOL},
};
#undef A

static const struct store_query apikey_query = {
    .table = "apikeys", .key = "id", .where = "", .order = "created_at, rowid"};

STORE_ENTITY(store_apikeys, "API key", struct store_apikey, apikey_cols, apikey_query);

/* Runs sql with text parameters ?1.. (NULL binds NULL) and int64 ones after them. */
static int run_sql(struct store *s, const char *sql, const char *const *texts, int nt,
		   const int64_t *ints, int ni, int *changes)
{
	sqlite3_stmt *st;
	int ret = prep(s, sql, &st);

	if (ret)
		return ret;
	for (int i = 0; i < nt; i++) {
		if (texts[i])
			bind_text(st, i + 1, texts[i]);
		else
			sqlite3_bind_null(st, i + 1);
	}
	for (int i = 0; i < ni; i++)
		sqlite3_bind_int64(st, nt + i + 1, ints[i]);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	if (!ret && changes)
		*changes = sqlite3_changes(s->db);
	return ret;
}

static int count_sql(struct store *s, const char *sql, int64_t *n)
{
	sqlite3_stmt *st;
	int ret = prep(s, sql, &st);

	if (ret)
		return ret;
	ret = query_int(s, st, n);
	sqlite3_finalize(st);
	return ret;
}

int store_user_add(struct store *s, const char *name, const char *hash, struct store_user *out)
{
	const char *t[] = {name, hash};
	int64_t now = store_now(), n;
	int ret;

	if (!store_user_name_ok(name) || !hash || strlen(hash) >= STORE_PWHASH_LEN)
		return -EINVAL;
	ret = tx_begin(s);
	if (ret)
		return ret;
	ret = row_find(s, &store_users, name, out);
	if (ret == 1)
		ret = -EEXIST;
	if (!ret)
		ret = count_sql(s, "SELECT count(*) FROM users", &n);
	if (!ret && n >= STORE_USERS_MAX)
		ret = -EDQUOT;
	if (!ret)
		ret = run_sql(s, "INSERT INTO users (name, hash, created_at) VALUES (?1, ?2, ?3)",
			      t, 2, &now, 1, NULL);
	ret = tx_end(s, ret);
	return ret ? ret : store_user_get(s, name, out);
}

int store_user_get(struct store *s, const char *name, struct store_user *out)
{
	return store_get(s, &store_users, name, out);
}

/* An UPDATE of one user's row: -ENOENT when it changed none. */
static int user_update(struct store *s, const char *sql, const char *name, const char *text,
		       const int64_t *ints, int ni)
{
	const char *t[] = {name, text};
	int changes = 0, ret = run_sql(s, sql, t, 2, ints, ni, &changes);

	return ret ? ret : changes ? 0 : -ENOENT;
}

int store_user_set_password(struct store *s, const char *name, const char *hash)
{
	const char *t[] = {name};
	int ret = tx_begin(s);

	if (ret)
		return ret;
	ret = user_update(s, "UPDATE users SET hash = ?2 WHERE name = ?1", name, hash, NULL, 0);
	if (!ret)
		ret = run_sql(s, "DELETE FROM sessions WHERE user = ?1", t, 1, NULL, 0, NULL);
	return tx_end(s, ret);
}

int store_user_unlock(struct store *s, const char *name)
{
	return user_update(s,
			   "UPDATE users SET failed = 0, locked_until = NULL WHERE name = ?1"
			   " AND ?2 IS NULL",
			   name, NULL, NULL, 0);
}

int store_user_del(struct store *s, const char *name)
{
	const char *t[] = {name};
	int changes = 0, ret = tx_begin(s);

	if (ret)
		return ret;
	ret = run_sql(s, "DELETE FROM sessions WHERE user = ?1", t, 1, NULL, 0, NULL);
	if (!ret)
		ret = run_sql(s, "DELETE FROM users WHERE name = ?1", t, 1, NULL, 0, &changes);
	if (!ret && !changes)
		ret = -ENOENT;
	return tx_end(s, ret);
}

int store_user_set_totp(struct store *s, const char *name, const char *secret)
{
	return user_update(s, "UPDATE users SET totp_secret = ?2, totp_step = 0 WHERE name = ?1",
			   name, secret, NULL, 0);
}

int store_user_login(struct store *s, const char *name, bool ok, int64_t step, int64_t now,
		     unsigned max_failed, int64_t lock_s, bool *locked)
{
	int64_t v[3] = {now, step, 0};

	if (locked)
		*locked = false;
	if (ok)
		return user_update(
		    s,
		    "UPDATE users SET failed = 0, locked_until = NULL, last_login = ?3,"
		    " totp_step = CASE WHEN ?4 > 0 THEN ?4 ELSE totp_step END"
		    " WHERE name = ?1 AND ?2 IS NULL",
		    name, NULL, v, 2);
	v[0] = max_failed;
	v[1] = now + lock_s;
	{
		struct store_user u;
		int ret = user_update(s,
				      "UPDATE users SET failed = failed + 1 WHERE name = ?1"
				      " AND ?2 IS NULL",
				      name, NULL, NULL, 0);

		if (!ret)
			ret = store_user_get(s, name, &u);
		if (ret || u.failed < (int64_t)max_failed)
			return ret;
		if (locked)
			*locked = true;
		return user_update(s,
				   "UPDATE users SET failed = 0, locked_until = ?3 WHERE name = ?1"
				   " AND ?2 IS NULL",
				   name, NULL, &v[1], 1);
	}
}

int store_session_add(struct store *s, const struct store_session *sess)
{
	const char *t[] = {sess->id_hash, sess->user, sess->csrf, sess->source};
	const int64_t v[] = {sess->created_at, sess->expires_at, sess->last_used,
			     STORE_SESSIONS_PER_USER};
	int ret = tx_begin(s);

	if (ret)
		return ret;
	ret = run_sql(s,
		      "INSERT INTO sessions (id_hash, user, csrf, source, created_at, expires_at,"
		      " last_used) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
		      t, 4, v, 3, NULL);
	/* the newest STORE_SESSIONS_PER_USER of the user stay */
	if (!ret) {
		const char *u[] = {sess->user};
		const int64_t keep[] = {STORE_SESSIONS_PER_USER};

		ret = run_sql(s,
			      "DELETE FROM sessions WHERE user = ?1 AND rowid NOT IN (SELECT rowid"
			      " FROM sessions WHERE user = ?1 ORDER BY created_at DESC, rowid DESC"
			      " LIMIT ?2)",
			      u, 1, keep, 1, NULL);
	}
	return tx_end(s, ret);
}

int store_session_get(struct store *s, const char *id_hash, struct store_session *out)
{
	return store_get(s, &store_sessions, id_hash, out);
}

int store_session_touch(struct store *s, const char *id_hash, int64_t now)
{
	const char *t[] = {id_hash};

	return run_sql(s, "UPDATE sessions SET last_used = ?2 WHERE id_hash = ?1", t, 1, &now, 1,
		       NULL);
}

int store_session_del(struct store *s, const char *id_hash)
{
	const char *t[] = {id_hash};

	return run_sql(s, "DELETE FROM sessions WHERE id_hash = ?1", t, 1, NULL, 0, NULL);
}

int store_session_purge(struct store *s, int64_t now, int64_t idle_s)
{
	const int64_t v[] = {now, now - idle_s};

	return run_sql(s, "DELETE FROM sessions WHERE expires_at <= ?1 OR last_used <= ?2", NULL, 0,
		       v, 2, NULL);
}

#define KEY_PREFIX   "nvk_"
#define KEY_HEX	     64 /* 32 random bytes */
#define KEY_TEXT_LEN (4 + 8 + 1 + KEY_HEX)

int store_apikey_create(struct store *s, const char *description, int64_t expires_in,
			struct store_apikey *out, char key[STORE_APIKEY_LEN])
{
	char id[STORE_ID_LEN], secret[KEY_HEX + 1], hash[65];
	int64_t now = store_now(), n, v[2];
	int ret;

	if (expires_in < 0)
		return -EINVAL;
	ret = tx_begin(s);
	if (ret)
		return ret;
	ret = count_sql(s, "SELECT count(*) FROM apikeys WHERE revoked = 0", &n);
	if (!ret && n >= STORE_APIKEYS_MAX)
		ret = -EDQUOT;
	for (int i = 0; !ret && i < ID_TRIES; i++) {
		ret = -EEXIST;
		random_hex(id, 4);
		if (row_find(s, &store_apikeys, id, out) == 0)
			ret = 0;
	}
	if (!ret) {
		const char *t[] = {id, hash, description ? description : ""};

		random_hex(secret, KEY_HEX / 2);
		store_hash_secret(secret, hash);
		snprintf(key, STORE_APIKEY_LEN, "%s%s_%s", KEY_PREFIX, id, secret);
		OPENSSL_cleanse(secret, sizeof(secret));
		v[0] = now;
		v[1] = expires_in;
		ret = run_sql(s,
			      "INSERT INTO apikeys (id, hash, description, created_at, expires_at)"
			      " VALUES (?1, ?2, ?3, ?4, CASE WHEN ?5 > 0 THEN ?4 + ?5 END)",
			      t, 3, v, 2, NULL);
	}
	ret = tx_end(s, ret);
	if (ret)
		return ret;
	return store_get(s, &store_apikeys, id, out);
}

int store_apikey_revoke(struct store *s, const char *id, struct store_apikey *out)
{
	const char *t[] = {id};
	int changes = 0;
	int ret =
	    run_sql(s, "UPDATE apikeys SET revoked = 1 WHERE id = ?1", t, 1, NULL, 0, &changes);

	if (ret)
		return ret;
	if (!changes)
		return -ENOENT;
	return store_get(s, &store_apikeys, id, out);
}

int store_apikey_auth(struct store *s, const char *key, int64_t now, struct store_apikey *out,
		      const char **why)
{
	char id[STORE_ID_LEN];
	const char *secret;
	int ret;

	*why = "malformed key";
	if (!key || strlen(key) != KEY_TEXT_LEN || strncmp(key, KEY_PREFIX, 4) ||
	    !is_lhex(key + 4, 8) || key[12] != '_' || !is_lhex(key + 13, KEY_HEX))
		return -EACCES;
	memcpy(id, key + 4, 8);
	id[8] = 0;
	secret = key + 13;
	ret = store_get(s, &store_apikeys, id, out);
	*why = "unknown key";
	if (ret == -ENOENT)
		return -EACCES;
	if (ret)
		return ret;
	*why = "wrong key";
	if (!secret_matches(secret, out->hash))
		return -EACCES;
	*why = "revoked key";
	if (out->revoked)
		return -EACCES;
	*why = "expired key";
	if (out->expires_at && out->expires_at <= now)
		return -EACCES;
	*why = NULL;
	if (out->last_used != now) {
		const char *t[] = {id};

		out->last_used = now;
		return run_sql(s, "UPDATE apikeys SET last_used = ?2 WHERE id = ?1", t, 1, &now, 1,
			       NULL);
	}
	return 0;
}

/* --- connection records --- */

#define C(m) AT(struct store_conn_record, m)
static const struct store_col rec_cols[] = {
    {"id", STORE_C_I64, C(id), .json = "id", .jtype = STORE_J_INT},
    {"tunnel_id", STORE_C_TEXT, C(tunnel_id), .json = "tunnel_id", .jtype = STORE_J_STR},
    {"rule", STORE_C_TEXT, C(rule), .json = "rule", .jtype = STORE_J_TEXT},
    {"kind", STORE_C_ENUM, C(kind), store_rec_kind_names, .json = "kind", .jtype = STORE_J_ENUM},
    {"port", STORE_C_U16, C(port), .json = "port", .jtype = STORE_J_INT},
    {"domain", STORE_C_TEXT, C(domain), .json = "domain", .jtype = STORE_J_STR_NULL},
    {"src", STORE_C_TEXT, C(src), .json = "src", .jtype = STORE_J_STR},
    {"src_port", STORE_C_U16, C(src_port), .json = "src_port", .jtype = STORE_J_INT},
    {"start_ms / 1000", STORE_C_I64, C(start), .json = "start", .jtype = STORE_J_INT},
    {"start_ms", STORE_C_I64, C(start_ms), .json = "start_ms", .jtype = STORE_J_INT},
    {"duration_ms", STORE_C_I64, C(duration_ms), .json = "duration_ms", .jtype = STORE_J_INT},
    {"ended", STORE_C_I64, C(ended), .json = "end", .jtype = STORE_J_INT},
    {"bytes_in", STORE_C_I64, C(bytes_in), .json = "bytes_in", .jtype = STORE_J_INT},
    {"bytes_out", STORE_C_I64, C(bytes_out), .json = "bytes_out", .jtype = STORE_J_INT},
    {"reason", STORE_C_ENUM, C(reason), store_rec_reason_names, .json = "reason",
     .jtype = STORE_J_ENUM},
};
#undef C

/* The WHERE of a records filter: bit 0 tunnel (?1), bit 1 rule (?2), bit 2 since (?3). */
static const char *rec_where(const struct store_filter *f)
{
	static const char *const w[8] = {
	    "",
	    " WHERE tunnel_id = ?1",
	    " WHERE rule = ?2",
	    " WHERE tunnel_id = ?1 AND rule = ?2",
	    " WHERE ended >= ?3",
	    " WHERE tunnel_id = ?1 AND ended >= ?3",
	    " WHERE rule = ?2 AND ended >= ?3",
	    " WHERE tunnel_id = ?1 AND rule = ?2 AND ended >= ?3",
	};

	if (!f)
		return w[0];
	return w[(f->tunnel_id ? 1 : 0) | (f->rule ? 2 : 0) | (f->since > 0 ? 4 : 0)];
}

static int rec_bind(sqlite3_stmt *st, const struct store_filter *f)
{
	if (f->tunnel_id)
		bind_text(st, 1, f->tunnel_id);
	if (f->rule)
		bind_text(st, 2, f->rule);
	if (f->since > 0)
		sqlite3_bind_int64(st, 3, f->since);
	return 0;
}

static const struct store_query rec_query = {
    .table = "conn_records",
    .key = "id",
    .where_of = rec_where,
    .nparams = 3,
    .order = "ended DESC, id DESC",
    .bind = rec_bind,
};

STORE_ENTITY(store_conn_records, "connection record", struct store_conn_record, rec_cols,
	     rec_query);

#define RT(m) AT(struct store_rule_traffic, m)
static const struct store_col traffic_cols[] = {
    {"tunnel_id", STORE_C_TEXT, RT(tunnel_id), .json = "tunnel_id", .jtype = STORE_J_STR},
    {"rule", STORE_C_TEXT, RT(rule), .json = "rule", .jtype = STORE_J_TEXT, .flags = STORE_J_BRIEF},
    {"bytes_in", STORE_C_I64, RT(bytes_in), .json = "bytes_in", .jtype = STORE_J_INT,
     .flags = STORE_J_BRIEF},
    {"bytes_out", STORE_C_I64, RT(bytes_out), .json = "bytes_out", .jtype = STORE_J_INT,
     .flags = STORE_J_BRIEF},
    {"conns", STORE_C_I64, RT(conns), .json = "conns", .jtype = STORE_J_INT,
     .flags = STORE_J_BRIEF},
};
#undef RT

static const struct store_query traffic_query = {
    .table = "rule_traffic",
    .where_of = tunnel_id_where,
    .nparams = 1,
    .order = "tunnel_id, rule",
    .bind = tunnel_id_bind,
};

STORE_ENTITY(store_rule_traffics, "rule traffic", struct store_rule_traffic, traffic_cols,
	     traffic_query);

/* The statements of one batch of records. */
struct rec_stmts {
	sqlite3_stmt *tunnel, *port, *domain, *insert, *traffic, *minute, *hour;
};

static void rec_stmts_free(struct rec_stmts *q)
{
	sqlite3_finalize(q->tunnel);
	sqlite3_finalize(q->port);
	sqlite3_finalize(q->domain);
	sqlite3_finalize(q->insert);
	sqlite3_finalize(q->traffic);
	sqlite3_finalize(q->minute);
	sqlite3_finalize(q->hour);
}

static int rec_stmts_prep(struct store *s, struct rec_stmts *q)
{
	memset(q, 0, sizeof(*q));
	if (prep(s, "SELECT 1 FROM tunnels WHERE id = ?1", &q->tunnel) ||
	    prep(s, "SELECT rule FROM ports WHERE port = ?1 AND tunnel_id = ?2", &q->port) ||
	    prep(s, "SELECT rule FROM domains WHERE domain = ?1 AND tunnel_id = ?2", &q->domain) ||
	    prep(s,
		 "INSERT INTO conn_records (tunnel_id, rule, kind, port, domain, src, src_port,"
		 " start_ms, duration_ms, ended, bytes_in, bytes_out, reason)"
		 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
		 &q->insert) ||
	    prep(s,
		 "INSERT INTO rule_traffic (tunnel_id, rule, bytes_in, bytes_out, conns)"
		 " VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (tunnel_id, rule) DO UPDATE SET"
		 " bytes_in = bytes_in + excluded.bytes_in,"
		 " bytes_out = bytes_out + excluded.bytes_out, conns = conns + 1",
		 &q->traffic) ||
	    prep(s,
		 "INSERT INTO conn_minutes (tunnel_id, rule, at, bytes_in, bytes_out, conns)"
		 " VALUES (?1, ?2, ?3, ?4, ?5, 1) ON CONFLICT (tunnel_id, rule, at) DO UPDATE"
		 " SET bytes_in = bytes_in + excluded.bytes_in,"
		 " bytes_out = bytes_out + excluded.bytes_out, conns = conns + 1",
		 &q->minute) ||
	    prep(s,
		 "INSERT INTO conn_hours (tunnel_id, rule, at, bytes_in, bytes_out, conns)"
		 " VALUES (?1, ?2, ?3, ?4, ?5, 1) ON CONFLICT (tunnel_id, rule, at) DO UPDATE"
		 " SET bytes_in = bytes_in + excluded.bytes_in,"
		 " bytes_out = bytes_out + excluded.bytes_out, conns = conns + 1",
		 &q->hour)) {
		rec_stmts_free(q);
		return -EIO;
	}
	return 0;
}

/* Runs a lookup st (bound already) and resets it: 1 with its first column in out, 0, -EIO. */
static int rec_lookup(struct store *s, sqlite3_stmt *st, char *out, size_t len)
{
	int rc = sqlite3_step(st), ret = 0;

	if (rc == SQLITE_ROW) {
		if (out)
			col_text(st, 0, out, len);
		ret = 1;
	} else if (rc != SQLITE_DONE) {
		ret = db_fail(s, sqlite3_sql(st));
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return ret;
}

/* r's rule: its port's, or its host's domain claim (exact, then the closest wildcard). */
static int rec_rule(struct store *s, struct rec_stmts *q, struct store_conn_record *r)
{
	char pat[DOMAIN_MAX + 1];
	size_t pos = 0;
	int ret;

	r->rule[0] = 0;
	if (r->kind == STORE_REC_MESH) /* a stream a client opened: no rule of the tunnel's */
		return 0;
	if (r->kind == STORE_REC_TCP || r->kind == STORE_REC_UDP) {
		sqlite3_bind_int64(q->port, 1, r->port);
		bind_text(q->port, 2, r->tunnel_id);
		ret = rec_lookup(s, q->port, r->rule, sizeof(r->rule));
		return ret < 0 ? ret : 0;
	}
	if (!r->domain[0])
		return 0;
	sqlite3_bind_text(q->domain, 1, r->domain, -1, SQLITE_TRANSIENT);
	bind_text(q->domain, 2, r->tunnel_id);
	ret = rec_lookup(s, q->domain, r->rule, sizeof(r->rule));
	while (ret == 0 && domain_next_wildcard(r->domain, &pos, pat)) {
		sqlite3_bind_text(q->domain, 1, pat, -1, SQLITE_TRANSIENT);
		bind_text(q->domain, 2, r->tunnel_id);
		ret = rec_lookup(s, q->domain, r->rule, sizeof(r->rule));
	}
	return ret < 0 ? ret : 0;
}

static int rec_store_one(struct store *s, struct rec_stmts *q, struct store_conn_record *r)
{
	int ret;

	bind_text(q->tunnel, 1, r->tunnel_id);
	ret = rec_lookup(s, q->tunnel, NULL, 0);
	if (ret <= 0)
		return ret < 0 ? ret : 1; /* a tunnel this store never knew: not kept */
	ret = rec_rule(s, q, r);
	if (ret)
		return ret;
	bind_text(q->insert, 1, r->tunnel_id);
	bind_text(q->insert, 2, r->rule);
	sqlite3_bind_text(q->insert, 3, store_rec_kind_names[r->kind], -1, SQLITE_STATIC);
	sqlite3_bind_int64(q->insert, 4, r->port);
	sqlite3_bind_text(q->insert, 5, r->domain, -1, SQLITE_TRANSIENT);
	bind_text(q->insert, 6, r->src);
	sqlite3_bind_int64(q->insert, 7, r->src_port);
	sqlite3_bind_int64(q->insert, 8, r->start_ms);
	sqlite3_bind_int64(q->insert, 9, r->duration_ms);
	sqlite3_bind_int64(q->insert, 10, r->ended);
	sqlite3_bind_int64(q->insert, 11, r->bytes_in);
	sqlite3_bind_int64(q->insert, 12, r->bytes_out);
	sqlite3_bind_text(q->insert, 13, store_rec_reason_names[r->reason], -1, SQLITE_STATIC);
	ret = step_done(s, q->insert);
	sqlite3_reset(q->insert);
	if (ret)
		return ret;
	r->id = sqlite3_last_insert_rowid(s->db);
	bind_text(q->traffic, 1, r->tunnel_id);
	bind_text(q->traffic, 2, r->rule);
	sqlite3_bind_int64(q->traffic, 3, r->bytes_in);
	sqlite3_bind_int64(q->traffic, 4, r->bytes_out);
	ret = step_done(s, q->traffic);
	sqlite3_reset(q->traffic);
	if (ret)
		return ret;
	/* the rule's and the tunnel's ("*", never a rule name) minute and hour */
	for (int k = 0; !ret && k < 4; k++) {
		sqlite3_stmt *st = k < 2 ? q->minute : q->hour;
		int64_t len = k < 2 ? 60 : 3600;

		bind_text(st, 1, r->tunnel_id);
		bind_text(st, 2, k % 2 ? "*" : r->rule);
		sqlite3_bind_int64(st, 3, r->ended - ((r->ended % len) + len) % len);
		sqlite3_bind_int64(st, 4, r->bytes_in);
		sqlite3_bind_int64(st, 5, r->bytes_out);
		ret = step_done(s, st);
		sqlite3_reset(st);
	}
	return ret;
}

int store_records_add(struct store *s, struct store_conn_record *recs, size_t n)
{
	struct rec_stmts q;
	bool prepared;
	int ret, stored = 0;

	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (recs[i].kind < 0 || recs[i].kind > STORE_REC_UDP || recs[i].reason < 0 ||
		    recs[i].reason >= STORE_REC_REASONS)
			return -EINVAL;
	ret = tx_begin(s);
	if (ret)
		return ret;
	ret = rec_stmts_prep(s, &q);
	prepared = !ret;
	for (size_t i = 0; !ret && i < n; i++) {
		ret = rec_store_one(s, &q, &recs[i]);
		if (ret == 1) {
			recs[i].id = 0;
			ret = 0;
		} else if (!ret) {
			stored++;
		}
	}
	if (prepared)
		rec_stmts_free(&q);
	ret = tx_end(s, ret);
	return ret ? ret : stored;
}

/*
 * conn_minutes and conn_hours follow the records: a minute (hour) wholly before the
 * age limit, or before the oldest record kept, goes (one the pruning cut in two stays
 * whole).
 */
static int minutes_prune(struct store *s, int64_t older_than)
{
	static const char *const sql[] = {
	    "DELETE FROM conn_minutes WHERE at <= max(?1,"
	    " coalesce((SELECT min(ended) FROM conn_records), ?1)) - 60",
	    "DELETE FROM conn_hours WHERE at <= max(?1,"
	    " coalesce((SELECT min(ended) FROM conn_records), ?1)) - 3600",
	};
	sqlite3_stmt *st = NULL;
	int ret = 0;

	for (size_t i = 0; !ret && i < ARRAY_SIZE(sql); i++) {
		ret = prep(s, sql[i], &st);
		if (ret)
			return ret;
		sqlite3_bind_int64(st, 1, older_than);
		ret = step_done(s, st);
		sqlite3_finalize(st);
	}
	return ret;
}

static int records_prune_rows(struct store *s, int64_t older_than, int64_t max_rows, int64_t chunk,
			      int64_t *deleted)
{
	sqlite3_stmt *st = NULL;
	int64_t top = 0;
	int ret;

	*deleted = 0;
	ret = prep(s,
		   "DELETE FROM conn_records WHERE id IN (SELECT id FROM conn_records"
		   " WHERE ended < ?1 ORDER BY ended LIMIT ?2)",
		   &st);
	if (ret)
		return ret;
	sqlite3_bind_int64(st, 1, older_than);
	sqlite3_bind_int64(st, 2, chunk);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	if (ret)
		return ret;
	*deleted = sqlite3_changes(s->db);
	if (*deleted >= chunk || max_rows <= 0)
		return 0;
	/* ids only grow: every row kept lies in (max(id) - max_rows, max(id)] */
	ret = prep(s, "SELECT max(id) FROM conn_records", &st);
	if (ret)
		return ret;
	ret = query_int(s, st, &top);
	sqlite3_finalize(st);
	if (ret || top <= max_rows)
		return ret;
	ret = prep(s,
		   "DELETE FROM conn_records WHERE id IN (SELECT id FROM conn_records"
		   " WHERE id <= ?1 ORDER BY id LIMIT ?2)",
		   &st);
	if (ret)
		return ret;
	sqlite3_bind_int64(st, 1, top - max_rows);
	sqlite3_bind_int64(st, 2, chunk - *deleted);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	if (!ret)
		*deleted += sqlite3_changes(s->db);
	return ret;
}

int store_records_prune(struct store *s, int64_t older_than, int64_t max_rows, int64_t chunk,
			int64_t *deleted)
{
	int ret = records_prune_rows(s, older_than, max_rows, chunk, deleted);

	return ret ? ret : minutes_prune(s, older_than);
}

int store_records_list(struct store *s, const struct store_filter *f, int64_t limit,
		       store_row_cb cb, void *arg)
{
	return store_list(s, &store_conn_records, f, 0, limit, cb, arg, NULL);
}

int store_records_bandwidth(struct store *s, const struct store_filter *f, int64_t step,
			    store_bucket_cb cb, void *arg)
{
	char sql[512];
	sqlite3_stmt *st;
	int rc, ret;

	if (!f || !f->tunnel_id || step <= 0)
		return -EINVAL;
	if (step % 60 == 0 && f->since % 60 == 0) {
		/*
		 * whole minutes (hours): the per-minute (per-hour) sums of the rule, or of
		 * the tunnel (rule "*"): at most one row per minute (hour) of the window,
		 * whatever the number of records
		 */
		bool hours = step % 3600 == 0 && f->since % 3600 == 0;

		snprintf(sql, sizeof(sql),
			 "SELECT (at / ?4) * ?4 AS t, sum(bytes_in), sum(bytes_out), sum(conns)"
			 " FROM %s WHERE tunnel_id = ?1 AND rule = %s AND at >= ?3"
			 " GROUP BY t ORDER BY t",
			 hours ? "conn_hours" : "conn_minutes", f->rule ? "?2" : "'*'");
	} else {
		snprintf(sql, sizeof(sql),
			 "SELECT (ended / ?4) * ?4 AS t, sum(bytes_in), sum(bytes_out), count(*)"
			 " FROM conn_records%s GROUP BY t ORDER BY t",
			 rec_where(f));
	}
	ret = prep(s, sql, &st);
	if (ret)
		return ret;
	rec_bind(st, f);
	sqlite3_bind_int64(st, 3, f->since); /* "at >= ?3" takes one always */
	sqlite3_bind_int64(st, 4, step);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		ret = cb(sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
			 sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3), arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = db_fail(s, "connection records: bandwidth");
	sqlite3_finalize(st);
	return ret;
}

/* --- support sessions --- */

bool store_support_id_ok(const char *id)
{
	if (!id || strlen(id) != STORE_SUP_ID_LEN - 1 || strncmp(id, "sup-", 4) != 0)
		return false;
	for (const char *p = id + 4; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			return false;
	return true;
}

bool store_support_service_ok(const char *name)
{
	return valid_str(name, VALID_NAME, STORE_SUP_SERVICE_MAX);
}

bool store_support_reason_ok(const char *reason, size_t n)
{
	size_t chars = 0;

	if (!reason || memchr(reason, 0, n))
		return false;
	for (size_t i = 0, len; i < n; i += len, chars++) {
		uint32_t cp;

		len = utf8_decode((const unsigned char *)reason + i, n - i, &cp);
		if (!len || !utf8_printable(cp) || chars >= STORE_SUP_REASON_MAX)
			return false;
	}
	return true;
}

bool store_support_hex64_ok(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (hex_val(s[i]) < 0)
			return false;
	return true;
}

int store_support_state_of(const char *name)
{
	for (int i = 0; name && store_sup_state_names[i]; i++)
		if (!strcmp(name, store_sup_state_names[i]))
			return i;
	return -1;
}

/* the state as read at ?1 (now, Unix s): expired when due and not ended */
#define SUP_STATE_SQL                                                                              \
	"CASE WHEN state = 'ended' THEN 'ended' WHEN ?1 >= expires_at THEN 'expired'"              \
	" ELSE state END"
#define SUP_COLS                                                                                   \
	"id, tunnel_id, reason, services, auth_hash, created_at, expires_at, " SUP_STATE_SQL       \
	", approved_by, approved_at, ended_by, ended_at"

static void sup_row(sqlite3_stmt *st, struct store_support *r)
{
	const char *state;

	memset(r, 0, sizeof(*r));
	col_text(st, 0, r->id, sizeof(r->id));
	col_text(st, 1, r->tunnel_id, sizeof(r->tunnel_id));
	col_text(st, 2, r->reason, sizeof(r->reason));
	col_text(st, 3, r->services, sizeof(r->services));
	col_text(st, 4, r->auth_hash, sizeof(r->auth_hash));
	r->created_at = col_int(st, 5);
	r->expires_at = col_int(st, 6);
	state = (const char *)sqlite3_column_text(st, 7);
	r->state = store_support_state_of(state);
	if (r->state < 0)
		r->state = STORE_SUP_ENDED;
	col_text(st, 8, r->approved_by, sizeof(r->approved_by));
	r->approved_at = col_int(st, 9);
	col_text(st, 10, r->ended_by, sizeof(r->ended_by));
	r->ended_at = col_int(st, 11);
}

/* The session id into out: 1 found, 0 not, -EIO. */
static int sup_find(struct store *s, const char *id, int64_t now_ms, struct store_support *out)
{
	sqlite3_stmt *st;
	int rc, ret = prep(s, "SELECT " SUP_COLS " FROM support_sessions WHERE id = ?2", &st);

	if (ret)
		return ret;
	sqlite3_bind_int64(st, 1, now_ms / 1000);
	sqlite3_bind_text(st, 2, id, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		sup_row(st, out);
		ret = 1;
	} else if (rc != SQLITE_DONE) {
		ret = db_fail(s, "support session");
	}
	sqlite3_finalize(st);
	return ret;
}

int store_support_get(struct store *s, const char *id, int64_t now_ms, struct store_support *out)
{
	int ret;

	if (!store_support_id_ok(id))
		return -ENOENT;
	ret = sup_find(s, id, now_ms, out);
	return ret == 1 ? 0 : ret == 0 ? -ENOENT : ret;
}

/* Binds text as is (the caller checked its length: no clamp to STORE_STR_LEN). */
static void bind_raw(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

static int sup_audit_add(struct store *s, const char *id, int64_t at_ms, const char *event,
			 const char *actor, const char *detail)
{
	sqlite3_stmt *st;
	int64_t n = 0;
	int ret = prep(s, "SELECT count(*) FROM support_audit WHERE session = ?1", &st);

	if (ret)
		return ret;
	bind_raw(st, 1, id);
	ret = query_int(s, st, &n);
	sqlite3_finalize(st);
	if (ret)
		return ret;
	if (n >= STORE_SUP_AUDIT_MAX ||
	    (n >= STORE_SUP_AUDIT_REFUSED_MAX && !strcmp(event, "refused")))
		return -EDQUOT;
	ret = prep(s,
		   "INSERT INTO support_audit (session, at, event, actor, detail)"
		   " VALUES (?1, ?2, ?3, ?4, ?5)",
		   &st);
	if (ret)
		return ret;
	bind_raw(st, 1, id);
	sqlite3_bind_int64(st, 2, at_ms);
	bind_raw(st, 3, event);
	sqlite3_bind_text(st, 4, actor ? actor : "",
			  (int)utf8_clamp(actor ? actor : "", STORE_SUP_ACTOR_LEN - 1),
			  SQLITE_TRANSIENT);
	/* a detail is JSON: cut short it would be none, so one too long is left out */
	if (detail && strlen(detail) >= STORE_SUP_DETAIL_LEN) {
		log_warn("store: support session %s: %s detail of %zu bytes left out", id, event,
			 strlen(detail));
		detail = NULL;
	}
	sqlite3_bind_text(st, 5, detail ? detail : "", -1, SQLITE_TRANSIENT);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	return ret;
}

int store_support_audit_add(struct store *s, const char *id, int64_t at_ms, const char *event,
			    const char *actor, const char *detail)
{
	if (!store_support_id_ok(id) || !event || strlen(event) >= 16)
		return -EINVAL;
	return sup_audit_add(s, id, at_ms, event, actor, detail);
}

/* A new id "sup-" + 10 of [a-z0-9], uniformly (bytes past 251 are drawn again). */
static void sup_new_id(char id[STORE_SUP_ID_LEN])
{
	static const char abc[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	size_t n = 0;

	memcpy(id, "sup-", 4);
	while (n < 10) {
		uint8_t b[16];

		random_bytes(b, sizeof(b));
		for (size_t i = 0; i < sizeof(b) && n < 10; i++)
			if (b[i] < 252)
				id[4 + n++] = abc[b[i] % 36];
	}
	id[14] = 0;
}

/* services as the JSON array text stored; false when one is bad, repeated or too many */
static bool sup_services_text(const char *const *services, size_t n, char *out, size_t len,
			      char *err, size_t errlen)
{
	size_t at = 0;

	if (n < 1 || n > STORE_SUP_SERVICES_MAX) {
		set_err(err, errlen, "a support session offers 1 to %d services",
			STORE_SUP_SERVICES_MAX);
		return false;
	}
	out[at++] = '[';
	for (size_t i = 0; i < n; i++) {
		if (!store_support_service_ok(services[i])) {
			set_err(err, errlen, "bad service name: 1-%d characters: %s",
				STORE_SUP_SERVICE_MAX, valid_alphabet(VALID_NAME));
			return false;
		}
		for (size_t k = 0; k < i; k++)
			if (!strcmp(services[k], services[i])) {
				set_err(err, errlen, "service \"%s\" is named twice", services[i]);
				return false;
			}
		at += (size_t)snprintf(out + at, len - at, "%s\"%s\"", i ? "," : "", services[i]);
	}
	snprintf(out + at, len - at, "]");
	return true;
}

static int sup_create_tx(struct store *s, const char *tunnel_id, const char *reason,
			 const char *services, const char *hash, int64_t expires_s,
			 const char *detail, int64_t now_ms, char id[STORE_SUP_ID_LEN], char *err,
			 size_t errlen)
{
	struct store_tunnel t;
	struct store_support r;
	sqlite3_stmt *st;
	int64_t now = now_ms / 1000, n = 0;
	char actor[STORE_SUP_ACTOR_LEN];
	int ret = store_tunnel_get(s, tunnel_id, &t);

	if (ret == -ENOENT) {
		set_err(err, errlen, "unknown tunnel %s", tunnel_id);
		return ret;
	}
	if (ret)
		return ret;
	ret = prep(s,
		   "SELECT count(*) FROM support_sessions WHERE tunnel_id = ?1 AND"
		   " state IN ('pending', 'approved') AND expires_at > ?2",
		   &st);
	if (ret)
		return ret;
	bind_raw(st, 1, tunnel_id);
	sqlite3_bind_int64(st, 2, now);
	ret = query_int(s, st, &n);
	sqlite3_finalize(st);
	if (ret)
		return ret;
	/* a device that asks and ends in a loop: the requests of the last hour are bounded */
	if (n < STORE_SUP_ACTIVE_MAX) {
		int64_t hour = 0;

		ret = prep(s,
			   "SELECT count(*) FROM support_sessions WHERE tunnel_id = ?1 AND"
			   " created_at > ?2",
			   &st);
		if (ret)
			return ret;
		bind_raw(st, 1, tunnel_id);
		sqlite3_bind_int64(st, 2, now - 3600);
		ret = query_int(s, st, &hour);
		sqlite3_finalize(st);
		if (ret)
			return ret;
		if (hour >= STORE_SUP_HOUR_MAX) {
			set_err(
			    err, errlen,
			    "this tunnel asked for %d support sessions in the last hour (at most "
			    "%d): try again later",
			    (int)hour, STORE_SUP_HOUR_MAX);
			return -EACCES;
		}
	}
	if (n >= STORE_SUP_ACTIVE_MAX) {
		set_err(
		    err, errlen,
		    "this tunnel has %d support sessions pending or approved already (at most %d)",
		    (int)n, STORE_SUP_ACTIVE_MAX);
		return -EDQUOT;
	}
	ret = -EEXIST;
	for (int i = 0; i < ID_TRIES && ret == -EEXIST; i++) {
		sup_new_id(id);
		ret = sup_find(s, id, now_ms, &r);
		ret = ret == 1 ? -EEXIST : ret;
	}
	if (ret)
		return ret == -EEXIST ? -EIO : ret;
	ret = prep(s,
		   "INSERT INTO support_sessions (id, tunnel_id, reason, services, auth_hash,"
		   " created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
		   &st);
	if (ret)
		return ret;
	bind_raw(st, 1, id);
	bind_raw(st, 2, tunnel_id);
	bind_raw(st, 3, reason);
	bind_raw(st, 4, services);
	bind_raw(st, 5, hash);
	sqlite3_bind_int64(st, 6, now);
	sqlite3_bind_int64(st, 7, now + expires_s);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	snprintf(actor, sizeof(actor), "tunnel:%s", tunnel_id);
	if (!ret)
		ret = sup_audit_add(s, id, now_ms, "requested", actor, detail);
	return ret;
}

int store_support_create(struct store *s, const char *tunnel_id, const char *reason,
			 const char *const *services, size_t n, const char *auth_hash,
			 int64_t expires_s, const char *detail, int64_t now_ms,
			 struct store_support *out, char *err, size_t errlen)
{
	char text[STORE_SUP_SERVICES_LEN], hash[STORE_HEX_LEN], id[STORE_SUP_ID_LEN];
	int ret;

	if (!reason)
		reason = "";
	if (!valid_str(tunnel_id, VALID_ID, STORE_TUNNEL_ID_LEN - 1)) {
		set_err(err, errlen, "invalid tunnel_id");
		return -EINVAL;
	}
	if (!store_support_reason_ok(reason, strlen(reason))) {
		set_err(err, errlen,
			"bad reason: at most %d characters of UTF-8 text without control "
			"characters",
			STORE_SUP_REASON_MAX);
		return -EINVAL;
	}
	if (expires_s < 1 || expires_s > STORE_SUP_EXPIRES_MAX) {
		set_err(err, errlen, "bad expiry: 1 s to 7 days");
		return -EINVAL;
	}
	if (!store_support_hex64_ok(auth_hash)) {
		set_err(err, errlen, "bad auth_hash: 64 hex digits");
		return -EINVAL;
	}
	for (size_t i = 0; i < 65; i++)
		hash[i] = (char)(auth_hash[i] >= 'A' && auth_hash[i] <= 'F' ? auth_hash[i] + 32
									    : auth_hash[i]);
	if (!sup_services_text(services, n, text, sizeof(text), err, errlen))
		return -EINVAL;
	ret = tx_begin_err(s, err, errlen);
	if (ret)
		return ret;
	ret = sup_create_tx(s, tunnel_id, reason, text, hash, expires_s, detail, now_ms, id, err,
			    errlen);
	ret = tx_end_err(s, ret, err, errlen);
	if (ret)
		return ret;
	ret = store_support_get(s, id, now_ms, out);
	if (ret)
		set_err(err, errlen, "internal error");
	return ret;
}

/* Binds the list's ?1 now, ?2 the state's name (NULL: any), ?3 the tunnel (NULL: any). */
static void sup_list_bind(sqlite3_stmt *st, int64_t now_ms, const char *state, const char *tunnel)
{
	sqlite3_bind_int64(st, 1, now_ms / 1000);
	bind_raw(st, 2, state);
	bind_raw(st, 3, tunnel);
}

#define SUP_WHERE " WHERE (?2 IS NULL OR " SUP_STATE_SQL " = ?2) AND (?3 IS NULL OR tunnel_id = ?3)"

int store_support_list(struct store *s, int state, const char *tunnel_id, int64_t now_ms,
		       int64_t offset, int64_t limit, store_support_cb cb, void *arg,
		       int64_t *total)
{
	const char *sname =
	    state >= 0 && state < STORE_SUP_STATES ? store_sup_state_names[state] : NULL;
	struct store_support r;
	sqlite3_stmt *st;
	int rc, ret;

	if (total) {
		ret = prep(s, "SELECT count(*) FROM support_sessions" SUP_WHERE, &st);
		if (ret)
			return ret;
		sup_list_bind(st, now_ms, sname, tunnel_id);
		ret = query_int(s, st, total);
		sqlite3_finalize(st);
		if (ret)
			return ret;
	}
	ret = prep(s,
		   "SELECT " SUP_COLS " FROM support_sessions" SUP_WHERE
		   " ORDER BY created_at DESC, rowid DESC LIMIT ?4 OFFSET ?5",
		   &st);
	if (ret)
		return ret;
	sup_list_bind(st, now_ms, sname, tunnel_id);
	sqlite3_bind_int64(st, 4, limit);
	sqlite3_bind_int64(st, 5, offset);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		sup_row(st, &r);
		ret = cb(&r, arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(s, "support sessions");
	sqlite3_finalize(st);
	return ret;
}

/* The refusal of a change to r (not pending or approved now): -ETIME or -ESRCH with err. */
static int sup_over(const struct store_support *r, char *err, size_t errlen)
{
	if (r->state == STORE_SUP_EXPIRED) {
		set_err(err, errlen, "support session %s has expired", r->id);
		return -ETIME;
	}
	set_err(err, errlen, "support session %s was ended", r->id);
	return -ESRCH;
}

static int sup_approve_tx(struct store *s, const char *id, const char *actor, int64_t now_ms,
			  struct store_support *r, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int ret = sup_find(s, id, now_ms, r);

	if (ret == 0) {
		set_err(err, errlen, "no support session %s", id);
		return -ENOENT;
	}
	if (ret < 0)
		return ret;
	if (r->state == STORE_SUP_APPROVED) {
		set_err(err, errlen, "support session %s is already approved", id);
		return -EALREADY;
	}
	if (r->state != STORE_SUP_PENDING)
		return sup_over(r, err, errlen);
	ret = prep(s,
		   "UPDATE support_sessions SET state = 'approved', approved_by = ?2,"
		   " approved_at = ?3 WHERE id = ?1",
		   &st);
	if (ret)
		return ret;
	bind_raw(st, 1, id);
	sqlite3_bind_text(st, 2, actor, (int)utf8_clamp(actor, STORE_SUP_ACTOR_LEN - 1),
			  SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, now_ms / 1000);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	if (!ret)
		ret = sup_audit_add(s, id, now_ms, "approved", actor, "");
	return ret;
}

int store_support_approve(struct store *s, const char *id, const char *actor, int64_t now_ms,
			  struct store_support *out, char *err, size_t errlen)
{
	int ret;

	if (!store_support_id_ok(id)) {
		char esc[4 * STORE_SUP_ID_LEN];

		set_err(err, errlen, "no support session %s",
			log_esc_str(id ? id : "", esc, sizeof(esc)));
		return -ENOENT;
	}
	if (!actor || !*actor)
		actor = "local";
	ret = tx_begin_err(s, err, errlen);
	if (ret)
		return ret;
	ret = sup_approve_tx(s, id, actor, now_ms, out, err, errlen);
	ret = tx_end_err(s, ret, err, errlen);
	if (!ret && sup_find(s, id, now_ms, out) != 1)
		ret = -EIO;
	return ret;
}

static int sup_end_tx(struct store *s, const char *id, const char *owner, const char *actor,
		      int64_t now_ms, struct store_support *r, bool *denied, char *err,
		      size_t errlen)
{
	sqlite3_stmt *st;
	int ret = sup_find(s, id, now_ms, r);

	if (ret == 0 || (ret == 1 && owner && strcmp(owner, r->tunnel_id) != 0)) {
		set_err(err, errlen, "no support session %s", id);
		return -ENOENT;
	}
	if (ret < 0)
		return ret;
	if (r->state != STORE_SUP_PENDING && r->state != STORE_SUP_APPROVED)
		return sup_over(r, err, errlen);
	*denied = !owner && r->state == STORE_SUP_PENDING;
	ret = prep(s,
		   "UPDATE support_sessions SET state = 'ended', ended_by = ?2, ended_at = ?3"
		   " WHERE id = ?1",
		   &st);
	if (ret)
		return ret;
	bind_raw(st, 1, id);
	sqlite3_bind_text(st, 2, actor, (int)utf8_clamp(actor, STORE_SUP_ACTOR_LEN - 1),
			  SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, now_ms / 1000);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	if (!ret)
		ret = sup_audit_add(s, id, now_ms, *denied ? "denied" : "ended", actor, "");
	return ret;
}

int store_support_end(struct store *s, const char *id, const char *owner_tunnel, const char *actor,
		      int64_t now_ms, struct store_support *out, bool *denied, char *err,
		      size_t errlen)
{
	char own[STORE_SUP_ACTOR_LEN];
	bool den = false;
	int ret;

	if (denied)
		*denied = false;
	if (!store_support_id_ok(id)) {
		char esc[4 * STORE_SUP_ID_LEN];

		set_err(err, errlen, "no support session %s",
			log_esc_str(id ? id : "", esc, sizeof(esc)));
		return -ENOENT;
	}
	if (owner_tunnel) {
		snprintf(own, sizeof(own), "tunnel:%s", owner_tunnel);
		actor = own;
	} else if (!actor || !*actor) {
		actor = "local";
	}
	ret = tx_begin_err(s, err, errlen);
	if (ret)
		return ret;
	ret = sup_end_tx(s, id, owner_tunnel, actor, now_ms, out, &den, err, errlen);
	ret = tx_end_err(s, ret, err, errlen);
	if (!ret && sup_find(s, id, now_ms, out) != 1)
		ret = -EIO;
	if (!ret && denied)
		*denied = den;
	return ret;
}

/* Collects rows of a query into a growing array (the callbacks run after the statement). */
struct sup_rows {
	struct store_support *v;
	size_t n, cap;
};

static int sup_rows_add(struct sup_rows *a, const struct store_support *r)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 16;
		struct store_support *v = realloc(a->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = *r;
	return 0;
}

/* Runs a SELECT of SUP_COLS with ?1 now and ?2 an integer into a. */
static int sup_select(struct store *s, const char *sql, int64_t now_ms, int64_t v,
		      struct sup_rows *a)
{
	struct store_support r;
	sqlite3_stmt *st;
	int rc, ret = prep(s, sql, &st);

	if (ret)
		return ret;
	sqlite3_bind_int64(st, 1, now_ms / 1000);
	sqlite3_bind_int64(st, 2, v);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		sup_row(st, &r);
		ret = sup_rows_add(a, &r);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(s, "support sessions");
	sqlite3_finalize(st);
	return ret;
}

int store_support_audit_count(struct store *s, const char *id, int64_t *n)
{
	sqlite3_stmt *st;
	int ret = prep(s, "SELECT count(*) FROM support_audit WHERE session = ?1", &st);

	*n = 0;
	if (ret)
		return ret;
	bind_raw(st, 1, id);
	ret = query_int(s, st, n);
	sqlite3_finalize(st);
	return ret;
}

int store_support_prune(struct store *s, int64_t before_s, int *removed)
{
	static const char *const sql[] = {
	    "DELETE FROM support_audit WHERE session IN (SELECT id FROM support_sessions WHERE"
	    " coalesce(ended_at, expires_at) < ?1 ORDER BY rowid LIMIT 256)",
	    "DELETE FROM support_sessions WHERE id IN (SELECT id FROM support_sessions WHERE"
	    " coalesce(ended_at, expires_at) < ?1 ORDER BY rowid LIMIT 256)",
	};
	int ret = tx_begin(s), n = 0;

	if (ret)
		return ret;
	for (size_t i = 0; !ret && i < 2; i++) {
		sqlite3_stmt *st;

		ret = prep(s, sql[i], &st);
		if (ret)
			break;
		sqlite3_bind_int64(st, 1, before_s);
		ret = step_done(s, st);
		if (!ret && i == 1)
			n = sqlite3_changes(s->db);
		sqlite3_finalize(st);
	}
	ret = tx_end(s, ret);
	if (removed)
		*removed = ret ? 0 : n;
	return ret;
}

int store_support_expire(struct store *s, int64_t now_ms, store_support_cb cb, void *arg)
{
	struct sup_rows due = {0};
	sqlite3_stmt *st = NULL;
	int ret = tx_begin(s);

	if (ret)
		return ret;
	/* at most 256 a call: the rest in the next second's */
	ret = sup_select(s,
			 "SELECT " SUP_COLS " FROM support_sessions WHERE ended_at IS NULL AND"
			 " expires_at <= ?1 AND state IN ('pending', 'approved')"
			 " ORDER BY expires_at LIMIT 256",
			 now_ms, 0, &due);
	if (!ret)
		ret = prep(s,
			   "UPDATE support_sessions SET ended_by = 'expiry', ended_at = expires_at"
			   " WHERE id = ?1",
			   &st);
	for (size_t i = 0; !ret && i < due.n; i++) {
		bind_raw(st, 1, due.v[i].id);
		ret = step_done(s, st);
		sqlite3_reset(st);
		if (!ret)
			ret = sup_audit_add(s, due.v[i].id, due.v[i].expires_at * 1000, "ended",
					    "expiry", "");
		if (ret == -EDQUOT)
			ret = 0;
		str_copy(due.v[i].ended_by, sizeof(due.v[i].ended_by), "expiry");
		due.v[i].ended_at = due.v[i].expires_at;
	}
	sqlite3_finalize(st);
	ret = tx_end(s, ret);
	for (size_t i = 0; !ret && cb && i < due.n; i++)
		ret = cb(&due.v[i], arg);
	free(due.v);
	return ret;
}

int store_support_over_since(struct store *s, int64_t since_s, int64_t now_ms, int64_t limit,
			     store_support_cb cb, void *arg)
{
	struct sup_rows rows = {0};
	char sql[512];
	int ret;

	snprintf(sql, sizeof(sql),
		 "SELECT " SUP_COLS " FROM support_sessions WHERE ended_at >= ?2"
		 " ORDER BY ended_at DESC LIMIT %lld",
		 (long long)(limit < 0 ? -1 : limit));
	ret = sup_select(s, sql, now_ms, since_s, &rows);
	for (size_t i = 0; !ret && i < rows.n; i++)
		ret = cb(&rows.v[i], arg);
	free(rows.v);
	return ret;
}

/* The place of name in a stored services array (names need no escaping), or -1. */
static int sup_service_index(const char *services, const char *name)
{
	size_t n = strlen(name);
	int idx = 0;

	for (const char *p = services; *p; p++) {
		if (*p == ',')
			idx++;
		if (*p == '"' && !strncmp(p + 1, name, n) && p[1 + n] == '"')
			return idx;
		if (*p == '"')
			p = strchr(p + 1, '"') ?: p + strlen(p) - 1;
	}
	return -1;
}

int store_support_check(struct store *s, const char *id, const char *service, const char *auth_hex,
			int64_t now_ms, struct store_support *out, int *index, const char **code,
			char *err, size_t errlen)
{
	bool ok;
	int ret;

	*index = -1;
	*code = "unknown session";
	memset(out, 0, sizeof(*out));
	ret = store_support_id_ok(id) ? sup_find(s, id, now_ms, out) : 0;
	if (ret < 0)
		return ret;
	if (ret == 0) {
		char esc[4 * STORE_SUP_ID_LEN];

		set_err(err, errlen, "no support session %s",
			log_esc_str(id ? id : "", esc, sizeof(esc)));
		return -EACCES;
	}
	switch (out->state) {
	case STORE_SUP_ENDED:
		*code = "ended";
		set_err(err, errlen, "support session %s was ended", id);
		return -EACCES;
	case STORE_SUP_EXPIRED:
		*code = "expired";
		set_err(err, errlen, "support session %s has expired", id);
		return -EACCES;
	case STORE_SUP_PENDING:
		*code = "not approved";
		set_err(err, errlen, "support session %s is not approved yet", id);
		return -EACCES;
	default:
		break;
	}
	/* the key before the services: no key, no word about what the session offers */
	ok = sup_auth_check(auth_hex, out->auth_hash); /* SHA-256, compared in constant time */
	if (!ok) {
		*code = "wrong key";
		set_err(err, errlen, "wrong key for support session %s", id);
		return -EACCES;
	}
	*index = store_support_service_ok(service) ? sup_service_index(out->services, service) : -1;
	if (*index < 0) {
		char esc[2 * STORE_SUP_SERVICE_MAX + 8];

		*code = "unknown service";
		log_esc_str(service ? service : "", esc, sizeof(esc));
		set_err(err, errlen, "service \"%s\" is not offered by support session %s", esc,
			id);
		return -EACCES;
	}
	*code = NULL;
	return 0;
}

int store_support_audit_list(struct store *s, const char *id, int64_t limit,
			     store_support_audit_cb cb, void *arg, int64_t *total)
{
	struct store_support_audit a;
	sqlite3_stmt *st;
	int rc, ret;

	if (total) {
		ret = prep(s, "SELECT count(*) FROM support_audit WHERE session = ?1", &st);
		if (ret)
			return ret;
		bind_raw(st, 1, id);
		ret = query_int(s, st, total);
		sqlite3_finalize(st);
		if (ret)
			return ret;
	}
	ret = prep(s,
		   "SELECT session, at, event, actor, detail FROM support_audit WHERE session = ?1"
		   " ORDER BY at, rowid LIMIT ?2",
		   &st);
	if (ret)
		return ret;
	bind_raw(st, 1, id);
	sqlite3_bind_int64(st, 2, limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&a, 0, sizeof(a));
		col_text(st, 0, a.session, sizeof(a.session));
		a.at = col_int(st, 1);
		col_text(st, 2, a.event, sizeof(a.event));
		col_text(st, 3, a.actor, sizeof(a.actor));
		col_text(st, 4, a.detail, sizeof(a.detail));
		ret = cb(&a, arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(s, "support audit");
	sqlite3_finalize(st);
	return ret;
}

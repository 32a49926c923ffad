// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of ctl/store.c: auth tokens (right/wrong secret, revocation, the
 * secret never on disk), registration tokens (uses, expiry, disable), the
 * port allocator (specific, lowest free, range, ownership, per-tunnel limit,
 * rule names, release, persistence), the firewall lists (canonical text,
 * refusals, the per-list limit, order, persistence), domain claims (one
 * holder, re-claims, the per-tunnel limit, sync, release with revocation,
 * the reasons of a refused domain, allowed_domains) and schema migrations
 * with the backup copy, and the query plans of the per-tunnel queries
 * (the tunnel_id indexes). Each test works in a fresh temporary state directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "ctl/store.h"
#include "link_proto.h"
#include "log.h"

#define PMIN  22000
#define PMAX  22004
#define MAXPT 3

struct fixture {
	char dir[64];
	char db[128];
	struct store *s;
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int open_store(struct fixture *f)
{
	char err[256] = "";
	int ret = store_open(&f->s, f->db, PMIN, PMAX, MAXPT, err, sizeof(err));

	if (ret)
		print_error("store_open: %s\n", err);
	return ret;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_store.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/nave.db", f->dir);
	if (open_store(f))
		return -1;
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

static void reopen(struct fixture *f)
{
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(open_store(f), 0);
}

/* Runs SQL on a second connection to the database (WAL allows it). */
static void raw_sql(const char *db, const char *sql)
{
	sqlite3 *h;
	char *msg = NULL;

	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
	sqlite3_close(h);
}

static long long raw_int(const char *db, const char *sql)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	long long v = -1;

	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

/* True when needle occurs in the file's bytes (a missing file holds nothing). */
static bool file_contains(const char *path, const char *needle)
{
	size_t n = strlen(needle), len = 0, cap = 0;
	char *buf = NULL, chunk[65536];
	bool found = false;
	ssize_t r;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return false;
	while ((r = read(fd, chunk, sizeof(chunk))) > 0) {
		if (len + (size_t)r > cap) {
			cap = (len + (size_t)r) * 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		memcpy(buf + len, chunk, (size_t)r);
		len += (size_t)r;
	}
	close(fd);
	for (size_t i = 0; i + n <= len && !found; i++)
		found = !memcmp(buf + i, needle, n);
	free(buf);
	return found;
}

static void new_tunnel(struct fixture *f, const char *group, char tid[STORE_TUNNEL_ID_LEN])
{
	struct store_token t;
	char tok[STORE_SECRET_LEN];

	assert_int_equal(store_token_create(f->s, group, "test", &t, tok), 0);
	memcpy(tid, t.tunnel_id, STORE_TUNNEL_ID_LEN);
}

/* --- migrations --- */

static void test_migrate_empty(void **state)
{
	struct fixture *f = *state;
	char bak[160];

	assert_int_equal(store_schema_version(f->s), STORE_SCHEMA_VERSION);
	assert_int_equal(raw_int(f->db, "SELECT version FROM schema_version"),
			 STORE_SCHEMA_VERSION);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM schema_version"), 1);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_master WHERE name IN"
					" ('registrations','tokens','tunnels','ports','firewall',"
					" 'domains')"),
			 6);
	/* a fresh database has nothing to back up */
	for (int v = 0; v <= STORE_SCHEMA_VERSION; v++) {
		snprintf(bak, sizeof(bak), "%s.bak-v%d", f->db, v);
		assert_int_not_equal(access(bak, F_OK), 0);
	}
	/* reopening an up-to-date database does not migrate or back up */
	reopen(f);
	snprintf(bak, sizeof(bak), "%s.bak-v%d", f->db, STORE_SCHEMA_VERSION);
	assert_int_not_equal(access(bak, F_OK), 0);
}

static void test_wal_mode(void **state)
{
	struct fixture *f = *state;
	sqlite3 *h;
	sqlite3_stmt *st;

	assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	sqlite3_close(h);
}

/*
 * What migrations 6 (token restrictions), 7 (rule_ops), 8 (users, sessions, apikeys), 9
 * (conn_records, rule_traffic), 10 (mesh_rules) and 11 (ports.transport) added, taken away
 * again to make an older database.
 */
#define UNDO_V13 "DROP TABLE support_sessions; DROP TABLE support_audit;"
#define UNDO_V12 UNDO_V13 "ALTER TABLE tunnels DROP COLUMN identity;"
#define UNDO_V11 UNDO_V12 "ALTER TABLE ports DROP COLUMN transport;"
#define UNDO_V6                                                                                    \
	UNDO_V11                                                                                   \
	"DROP TABLE mesh_rules;"                                                                   \
	"DROP TABLE conn_records; DROP TABLE rule_traffic; DROP TABLE conn_minutes;"               \
	"DROP TABLE conn_hours;"                                                                   \
	"DROP TABLE rule_ops; DROP TABLE users; DROP TABLE sessions; DROP TABLE apikeys;"          \
	"ALTER TABLE tokens DROP COLUMN allow_from; ALTER TABLE tokens DROP COLUMN allow_ids;"     \
	"ALTER TABLE tokens DROP COLUMN kinds; ALTER TABLE tokens DROP COLUMN domains;"            \
	"ALTER TABLE tokens DROP COLUMN ports;"                                                    \
	"ALTER TABLE registrations DROP COLUMN allow_from;"                                        \
	"ALTER TABLE registrations DROP COLUMN allow_ids;"                                         \
	"ALTER TABLE registrations DROP COLUMN kinds;"                                             \
	"ALTER TABLE registrations DROP COLUMN domains;"                                           \
	"ALTER TABLE registrations DROP COLUMN ports;"

static void test_migrate_backup(void **state)
{
	struct fixture *f = *state;
	char tid[STORE_TUNNEL_ID_LEN], bak[160];
	struct stat sb;

	new_tunnel(f, "old-data", tid);
	store_close(f->s);
	f->s = NULL;
	/* make it look like a v1 database: version 1 and no v2 indexes */
	raw_sql(f->db,
		"UPDATE schema_version SET version = 1;"
		"DROP INDEX ports_tunnel; DROP INDEX tokens_tunnel;"
		"DROP INDEX tunnels_state; DROP TABLE firewall; DROP TABLE domains;" UNDO_V6);
	assert_int_equal(open_store(f), 0);
	assert_int_equal(store_schema_version(f->s), STORE_SCHEMA_VERSION);
	assert_int_equal(raw_int(f->db, "SELECT version FROM schema_version"),
			 STORE_SCHEMA_VERSION);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
					" AND name = 'ports_tunnel'"),
			 1);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM firewall"), 0);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM rule_ops"), 0); /* v7 */

	snprintf(bak, sizeof(bak), "%s.bak-v1", f->db);
	assert_int_equal(stat(bak, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* the copy is the old database, data included */
	assert_int_equal(raw_int(bak, "SELECT version FROM schema_version"), 1);
	assert_int_equal(raw_int(bak, "SELECT count(*) FROM tunnels WHERE group_id = 'old-data'"),
			 1);
	assert_int_equal(raw_int(bak, "SELECT count(*) FROM sqlite_master WHERE name ="
				      " 'ports_tunnel'"),
			 0);
	/* and the data survived the migration */
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM tunnels WHERE group_id ="
					" 'old-data'"),
			 1);
}

static void test_migrate_newer_refused(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";

	store_close(f->s);
	f->s = NULL;
	raw_sql(f->db, "UPDATE schema_version SET version = 99");
	assert_int_equal(store_open(&f->s, f->db, PMIN, PMAX, MAXPT, err, sizeof(err)), -EPROTO);
	assert_null(f->s);
	assert_non_null(strstr(err, "newer"));
	raw_sql(f->db, "UPDATE schema_version SET version = 3; DROP TABLE firewall;"
		       "DROP TABLE domains;" UNDO_V6);
	assert_int_equal(open_store(f), 0);
}

/* schema v10: a v9 database gains an empty mesh_rules */
static void test_migrate_v10(void **state)
{
	struct fixture *f = *state;

	store_close(f->s);
	f->s = NULL;
	raw_sql(f->db, "UPDATE schema_version SET version = 9; DROP TABLE mesh_rules;" UNDO_V11);
	assert_int_equal(open_store(f), 0);
	assert_int_equal(store_schema_version(f->s), STORE_SCHEMA_VERSION);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM mesh_rules"), 0);
}

/* schema v11: a v10 database's ports stay tcp ports; the column takes only tcp and udp */
/* schema v12: identity; a certificate login makes its tunnel once and records it */
static void test_auth_cert_identity(void **state)
{
	struct fixture *f = *state;
	const struct store_client_info ci = {"host-a", "linux", "x86_64", "1.0"};
	char tid[STORE_TUNNEL_ID_LEN], err[128];
	struct store_tunnel t;

	new_tunnel(f, "tok-one", tid);
	assert_int_equal(store_tunnel_get(f->s, tid, &t), 0);
	assert_string_equal(t.identity, "");
	assert_int_equal(store_auth_cert(f->s, "kiosk-7", false, &ci, err, sizeof(err)), 0);
	assert_int_equal(store_tunnel_get(f->s, "kiosk-7", &t), 0);
	assert_string_equal(t.group_id, "kiosk-7");
	assert_string_equal(t.token_id, "");
	assert_string_equal(t.hostname, "host-a");
	/* again, in mode run: the same tunnel, its info updated */
	const struct store_client_info ci2 = {"host-b", "linux", "aarch64", "1.1"};
	assert_int_equal(store_auth_cert(f->s, "kiosk-7", true, &ci2, err, sizeof(err)), 0);
	assert_int_equal(store_tunnel_get(f->s, "kiosk-7", &t), 0);
	assert_string_equal(t.hostname, "host-b");
	assert_string_equal(t.arch, "aarch64");
	assert_int_equal(
	    store_tunnel_set_identity(f->s, "kiosk-7", "certificate kiosk-7 serial 1f"), 0);
	assert_int_equal(store_tunnel_get(f->s, "kiosk-7", &t), 0);
	assert_string_equal(t.identity, "certificate kiosk-7 serial 1f");
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM tunnels WHERE id = 'kiosk-7'"), 1);
}

static void test_migrate_v11(void **state)
{
	struct fixture *f = *state;
	char tid[STORE_TUNNEL_ID_LEN], err[128];
	struct store_port p;
	bool created;

	new_tunnel(f, "old-ports", tid);
	store_close(f->s);
	f->s = NULL;
	raw_sql(f->db, "UPDATE schema_version SET version = 10;" UNDO_V11);
	{
		char sql[256];

		snprintf(sql, sizeof(sql),
			 "INSERT INTO ports (port, tunnel_id, rule, created_at)"
			 " VALUES (22001, '%s', 'ssh', 1)",
			 tid);
		raw_sql(f->db, sql);
	}
	assert_int_equal(open_store(f), 0);
	assert_int_equal(store_schema_version(f->s), STORE_SCHEMA_VERSION);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ports WHERE port = 22001 AND"
					" transport = 'tcp'"),
			 1);
	/* the old port is this tunnel's tcp port: asking it as udp is refused */
	assert_int_equal(
	    store_port_alloc(f->s, tid, 22001, NULL, "udp", &p, &created, err, sizeof(err)),
	    -EADDRINUSE);
	assert_string_equal(err, "port 22001 is a tcp port of this tunnel");
	assert_int_equal(
	    store_port_alloc(f->s, tid, 0, "ssh", NULL, &p, &created, err, sizeof(err)), 0);
	assert_int_equal(p.port, 22001);
	assert_string_equal(p.transport, "tcp");
	assert_false(created);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ports WHERE port = 22001"), 1);
}

/* --- the mesh policy --- */

static int mesh_collect(const struct store_mesh_rule *r, void *arg)
{
	char *out = arg;
	size_t n = strlen(out);

	snprintf(out + n, 512 - n, "%lld:%lld:%s %s->%s %u-%u;", (long long)r->id,
		 (long long)r->position, r->action == MESH_ALLOW ? "allow" : "deny", r->from, r->to,
		 r->port_lo, r->port_hi);
	return 0;
}

static void test_mesh_rules(void **state)
{
	struct fixture *f = *state;
	struct store_mesh_rule r, old;
	char err[256], out[512];
	int64_t total;

	memset(&r, 0, sizeof(r));
	r.action = MESH_ALLOW;
	strcpy(r.from, "office-*");
	strcpy(r.to, "tunnel:db");
	r.port_lo = r.port_hi = 5432;
	strcpy(r.comment, "office to the database");
	assert_int_equal(store_mesh_add(f->s, &r, err, sizeof(err)), 0);
	assert_int_equal(r.id, 1);
	assert_int_equal(r.position, 1);
	assert_true(r.created > 0);

	memset(&r, 0, sizeof(r));
	r.action = MESH_DENY;
	strcpy(r.from, "*");
	strcpy(r.to, "domain:*.Example.COM");
	assert_int_equal(store_mesh_add(f->s, &r, err, sizeof(err)), 0);
	assert_string_equal(r.to, "domain:*.example.com");
	assert_int_equal(r.position, 2);

	/* at position 1: the others move down */
	memset(&r, 0, sizeof(r));
	r.action = MESH_DENY;
	strcpy(r.from, "group:lab");
	strcpy(r.to, "external:10.0.0.0/8");
	r.position = 1;
	assert_int_equal(store_mesh_add(f->s, &r, err, sizeof(err)), 0);
	out[0] = 0;
	assert_int_equal(store_mesh_list(f->s, mesh_collect, out, &total), 0);
	assert_int_equal(total, 3);
	assert_string_equal(out, "3:1:deny group:lab->external:10.0.0.0/8 0-0;"
				 "1:2:allow id:office-*->tunnel:db 5432-5432;"
				 "2:3:deny *->domain:*.example.com 0-0;");

	/* refusals name the field */
	memset(&r, 0, sizeof(r));
	r.action = MESH_ALLOW;
	strcpy(r.from, "a b");
	strcpy(r.to, "*");
	assert_int_equal(store_mesh_add(f->s, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "from"));
	strcpy(r.from, "*");
	strcpy(r.to, "nowhere");
	assert_int_equal(store_mesh_add(f->s, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "to"));
	strcpy(r.to, "*");
	r.port_lo = 9;
	r.port_hi = 8;
	assert_int_equal(store_mesh_add(f->s, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "port"));
	r.port_lo = r.port_hi = 0;
	strcpy(r.comment, "bad\ncomment");
	assert_int_equal(store_mesh_add(f->s, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "comment"));

	/* removal; ids are never reused */
	assert_int_equal(store_mesh_del(f->s, 3, &old, err, sizeof(err)), 0);
	assert_string_equal(old.from, "group:lab");
	assert_int_equal(store_mesh_del(f->s, 3, NULL, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no mesh rule 3"));
	memset(&r, 0, sizeof(r));
	r.action = MESH_ALLOW;
	strcpy(r.from, "*");
	strcpy(r.to, "*");
	assert_int_equal(store_mesh_add(f->s, &r, err, sizeof(err)), 0);
	assert_int_equal(r.id, 4);
	assert_int_equal(store_mesh_list(f->s, NULL, NULL, &total), 0);
	assert_int_equal(total, 3);

	/* at most MESH_RULES_MAX */
	raw_sql(f->db,
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1021)"
		" INSERT INTO mesh_rules (position, action, from_pat, to_kind, to_pat, created)"
		" SELECT 100 + x, 'deny', '*', '*', '*', 0 FROM c");
	assert_int_equal(store_mesh_add(f->s, &r, err, sizeof(err)), -EDQUOT);
	assert_non_null(strstr(err, "1024"));
}

/* --- auth tokens --- */

static void test_token_verify(void **state)
{
	struct fixture *f = *state;
	struct store_token t, t2;
	struct store_tunnel tun;
	struct store_client_info info = {"host1", "linux", "amd64", "0.1.0"};
	char tok[STORE_SECRET_LEN], bad[STORE_SECRET_LEN], tid[STORE_TUNNEL_ID_LEN], err[128];
	char path[160];
	bool changed;

	assert_int_equal(store_token_create(f->s, "grp", "desc", &t, tok), 0);
	assert_int_equal(strlen(tok), 61);
	assert_memory_equal(tok, "nvt_", 4);
	assert_memory_equal(tok + 4, t.id, 8);
	assert_int_equal(strlen(t.tunnel_id), 14);
	assert_memory_equal(t.tunnel_id, "t-", 2);
	assert_false(t.revoked);
	assert_int_equal(t.last_used, 0);

	assert_int_equal(store_tunnel_get(f->s, t.tunnel_id, &tun), 0);
	assert_string_equal(tun.group_id, "grp");
	assert_string_equal(tun.token_id, t.id);
	assert_int_equal(tun.state, STORE_OFFLINE);

	/* right secret, mode configure: nothing updated */
	assert_int_equal(store_auth_token(f->s, tok, false, &info, tid, err, sizeof(err)), 0);
	assert_string_equal(tid, t.tunnel_id);
	assert_int_equal(store_tunnel_get(f->s, tid, &tun), 0);
	assert_string_equal(tun.hostname, "");
	/* mode run: client info and last_used updated */
	assert_int_equal(store_auth_token(f->s, tok, true, &info, tid, err, sizeof(err)), 0);
	assert_int_equal(store_tunnel_get(f->s, tid, &tun), 0);
	assert_string_equal(tun.hostname, "host1");
	assert_string_equal(tun.os, "linux");
	assert_string_equal(tun.arch, "amd64");
	assert_string_equal(tun.client_version, "0.1.0");
	assert_int_equal(store_token_get(f->s, t.id, &t2), 0);
	assert_true(t2.last_used > 0);

	/* wrong secret */
	memcpy(bad, tok, sizeof(bad));
	bad[60] = bad[60] == '0' ? '1' : '0';
	assert_int_equal(store_auth_token(f->s, bad, true, NULL, tid, err, sizeof(err)), -EACCES);
	assert_string_equal(err, "invalid token");
	/* malformed and unknown */
	assert_int_equal(store_auth_token(f->s, "nvt_zz", true, NULL, tid, err, sizeof(err)),
			 -EACCES);
	assert_string_equal(err, "invalid token");
	memcpy(bad, tok, sizeof(bad));
	bad[4] = bad[4] == '0' ? '1' : '0';
	assert_int_equal(store_auth_token(f->s, bad, true, NULL, tid, err, sizeof(err)), -EACCES);
	assert_string_equal(err, "invalid token");
	/* a registration-shaped token is not an auth token */
	memcpy(bad, tok, sizeof(bad));
	bad[2] = 'r';
	assert_int_equal(store_auth_token(f->s, bad, true, NULL, tid, err, sizeof(err)), -EACCES);

	/* revoked */
	assert_int_equal(store_token_revoke(f->s, t.id, &t2, &changed, NULL, NULL, NULL), 0);
	assert_true(changed);
	assert_true(t2.revoked);
	assert_int_equal(store_token_revoke(f->s, t.id, &t2, &changed, NULL, NULL, NULL), 0);
	assert_false(changed);
	assert_int_equal(store_auth_token(f->s, tok, true, NULL, tid, err, sizeof(err)), -EACCES);
	assert_string_equal(err, "token revoked");
	assert_int_equal(store_token_revoke(f->s, "00000000", &t2, &changed, NULL, NULL, NULL),
			 -ENOENT);

	/* the secret is nowhere in the database files */
	store_close(f->s);
	f->s = NULL;
	assert_true(file_contains(f->db, t.id)); /* sanity: the scan sees stored text */
	snprintf(path, sizeof(path), "%s", f->db);
	assert_false(file_contains(path, tok + 13));
	snprintf(path, sizeof(path), "%s-wal", f->db);
	assert_false(file_contains(path, tok + 13));
	assert_int_equal(open_store(f), 0);
}

static int count_cb(const struct store_token *t, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static void test_token_list(void **state)
{
	struct fixture *f = *state;
	struct store_token t;
	char tok[STORE_SECRET_LEN];
	int64_t total;
	int n = 0;

	for (int i = 0; i < 5; i++)
		assert_int_equal(store_token_create(f->s, NULL, "x", &t, tok), 0);
	assert_int_equal(store_token_list(f->s, 0, 3, count_cb, &n, &total), 0);
	assert_int_equal(total, 5);
	assert_int_equal(n, 3);
	n = 0;
	assert_int_equal(store_token_list(f->s, 3, 3, count_cb, &n, &total), 0);
	assert_int_equal(n, 2);
	/* no group given: the tunnel's group id is its own id */
	{
		struct store_tunnel tun;

		assert_int_equal(store_tunnel_get(f->s, t.tunnel_id, &tun), 0);
		assert_string_equal(tun.group_id, t.tunnel_id);
	}
}

/* --- registrations --- */

static int reg_cb(const struct store_registration *r, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static void test_registration(void **state)
{
	struct fixture *f = *state;
	struct store_registration r, r2;
	struct store_client_info info = {"dev-a", "linux", "arm64", "0.1.0"};
	struct store_tunnel tun;
	char reg[STORE_SECRET_LEN], tok[STORE_SECRET_LEN], tok2[STORE_SECRET_LEN];
	char tid[STORE_TUNNEL_ID_LEN], tid2[STORE_TUNNEL_ID_LEN], err[128], bad[STORE_SECRET_LEN];

	assert_int_equal(store_registration_create(f->s, "two devices", 2, 0, &r, reg), 0);
	assert_int_equal(strlen(reg), 61);
	assert_memory_equal(reg, "nvr_", 4);
	assert_memory_equal(reg + 4, r.id, 8);
	assert_string_equal(r.description, "two devices");
	assert_int_equal(r.max_uses, 2);
	assert_int_equal(r.uses, 0);
	assert_int_equal(r.expires_at, 0);
	assert_true(r.enabled);
	assert_false(file_contains(f->db, reg + 13));

	/* wrong secret */
	memcpy(bad, reg, sizeof(bad));
	bad[40] = bad[40] == 'a' ? 'b' : 'a';
	assert_int_equal(
	    store_auth_registration(f->s, bad, NULL, &info, tid, tok, err, sizeof(err)), -EACCES);
	assert_string_equal(err, "invalid registration token");
	/* an auth token is not a registration token */
	bad[2] = 't';
	assert_int_equal(
	    store_auth_registration(f->s, bad, NULL, &info, tid, tok, err, sizeof(err)), -EACCES);
	assert_string_equal(err, "invalid registration token");

	/* first use: group from the hostname */
	assert_int_equal(
	    store_auth_registration(f->s, reg, NULL, &info, tid, tok, err, sizeof(err)), 0);
	assert_int_equal(store_tunnel_get(f->s, tid, &tun), 0);
	assert_string_equal(tun.group_id, "dev-a");
	assert_string_equal(tun.hostname, "dev-a");
	assert_string_equal(tun.arch, "arm64");
	assert_int_equal(store_auth_token(f->s, tok, true, &info, tid2, err, sizeof(err)), 0);
	assert_string_equal(tid2, tid);
	/* second use: group from "id" */
	assert_int_equal(
	    store_auth_registration(f->s, reg, "kiosk", &info, tid2, tok2, err, sizeof(err)), 0);
	assert_string_not_equal(tid, tid2);
	assert_string_not_equal(tok, tok2);
	assert_int_equal(store_tunnel_get(f->s, tid2, &tun), 0);
	assert_string_equal(tun.group_id, "kiosk");
	assert_int_equal(store_registration_get(f->s, r.id, &r2), 0);
	assert_int_equal(r2.uses, 2);
	/* third: used up */
	assert_int_equal(
	    store_auth_registration(f->s, reg, NULL, &info, tid2, tok2, err, sizeof(err)), -EACCES);
	assert_string_equal(err, "registration token used up");
	assert_int_equal(store_registration_get(f->s, r.id, &r2), 0);
	assert_int_equal(r2.uses, 2);
	assert_false(file_contains(f->db, tok + 13));
}

static void test_registration_disable_expire(void **state)
{
	struct fixture *f = *state;
	struct store_registration r, r2;
	char reg[STORE_SECRET_LEN], tok[STORE_SECRET_LEN], tid[STORE_TUNNEL_ID_LEN], err[128];
	char sql[128];
	int64_t total;
	int n = 0;

	assert_int_equal(store_registration_create(f->s, "", 0, 3600, &r, reg), 0);
	assert_true(r.expires_at >= r.created_at + 3600);

	assert_int_equal(store_registration_set_enabled(f->s, r.id, false, &r2), 0);
	assert_false(r2.enabled);
	assert_int_equal(store_auth_registration(f->s, reg, NULL, NULL, tid, tok, err, sizeof(err)),
			 -EACCES);
	assert_string_equal(err, "registration token disabled");
	assert_int_equal(store_registration_set_enabled(f->s, r.id, true, &r2), 0);
	assert_true(r2.enabled);
	/* unlimited uses */
	for (int i = 0; i < 3; i++)
		assert_int_equal(
		    store_auth_registration(f->s, reg, NULL, NULL, tid, tok, err, sizeof(err)), 0);
	assert_int_equal(store_registration_set_enabled(f->s, "ffffffff", true, &r2), -ENOENT);

	/* expired: move expires_at into the past */
	snprintf(sql, sizeof(sql), "UPDATE registrations SET expires_at = 1000 WHERE id = '%s'",
		 r.id);
	raw_sql(f->db, sql);
	assert_int_equal(store_auth_registration(f->s, reg, NULL, NULL, tid, tok, err, sizeof(err)),
			 -EACCES);
	assert_string_equal(err, "registration token expired");

	assert_int_equal(store_registration_list(f->s, 0, 50, reg_cb, &n, &total), 0);
	assert_int_equal(total, 1);
	assert_int_equal(n, 1);
}

/* --- ports --- */

static void alloc_ok(struct fixture *f, const char *tid, unsigned port, const char *rule,
		     unsigned want, bool want_created)
{
	struct store_port p;
	char err[128] = "";
	bool created;
	int ret = store_port_alloc(f->s, tid, port, rule, NULL, &p, &created, err, sizeof(err));

	if (ret)
		fail_msg("alloc %s %u %s: %d %s", tid, port, rule ? rule : "", ret, err);
	assert_int_equal(p.port, want);
	assert_string_equal(p.tunnel_id, tid);
	assert_int_equal(created, want_created);
}

static void alloc_err(struct fixture *f, const char *tid, unsigned port, const char *rule, int want,
		      const char *reason)
{
	struct store_port p;
	char err[128] = "";
	bool created = true;

	assert_int_equal(
	    store_port_alloc(f->s, tid, port, rule, NULL, &p, &created, err, sizeof(err)), want);
	assert_false(created);
	assert_string_equal(err, reason);
}

static int port_cb(const struct store_port *p, void *arg)
{
	char *out = arg;
	size_t n = strlen(out);

	snprintf(out + n, 256 - n, "%u:%s ", p->port, p->rule);
	return 0;
}

static void test_ports(void **state)
{
	struct fixture *f = *state;
	char a[STORE_TUNNEL_ID_LEN], b[STORE_TUNNEL_ID_LEN], reason[128], err[128];
	char list[256] = "";
	struct store_port p;
	int64_t total;

	new_tunnel(f, "a", a);
	new_tunnel(f, "b", b);

	alloc_ok(f, a, 22002, NULL, 22002, true); /* specific */
	alloc_ok(f, a, 0, NULL, 22000, true);	  /* any = lowest free */
	alloc_ok(f, b, 0, "", 22001, true);
	alloc_ok(f, a, 22002, NULL, 22002, false); /* already ours */
	alloc_err(f, b, 22002, NULL, -EADDRINUSE, "port 22002 is allocated to another tunnel");
	alloc_err(f, a, 21999, NULL, -ERANGE, "port 21999 is outside the range 22000-22004");
	alloc_err(f, a, 22005, NULL, -ERANGE, "port 22005 is outside the range 22000-22004");
	alloc_err(f, a, 70000, NULL, -ERANGE, "port 70000 is outside the range 22000-22004");
	alloc_err(f, "t-000000000000", 0, NULL, -ENOENT, "unknown tunnel t-000000000000");

	alloc_ok(f, a, 0, "ssh", 22003, true);	/* a now holds 3 */
	alloc_ok(f, a, 0, "ssh", 22003, false); /* same rule, same port */
	snprintf(reason, sizeof(reason), "tunnel %s already has 3 ports (max_per_tunnel)", a);
	alloc_err(f, a, 0, NULL, -EDQUOT, reason);
	alloc_err(f, a, 22004, NULL, -EDQUOT, reason);
	alloc_err(f, a, 0, "web", -EDQUOT, reason);
	/* naming an owned port sets its rule */
	alloc_ok(f, a, 22000, "web", 22000, false);
	alloc_ok(f, a, 0, "web", 22000, false);

	alloc_ok(f, b, 0, NULL, 22004, true);
	alloc_err(f, b, 0, NULL, -ENOSPC, "no free port in 22000-22004");

	assert_int_equal(store_port_list(f->s, NULL, 0, 50, port_cb, list, &total), 0);
	assert_int_equal(total, 5);
	assert_string_equal(list, "22000:web 22001: 22002: 22003:ssh 22004: ");
	list[0] = 0;
	assert_int_equal(store_port_list(f->s, b, 0, 50, port_cb, list, &total), 0);
	assert_int_equal(total, 2);
	assert_string_equal(list, "22001: 22004: ");

	/* release: only by the owner when a tunnel is named */
	assert_int_equal(store_port_release(f->s, 22003, b, &p, err, sizeof(err)), -ENOENT);
	snprintf(reason, sizeof(reason), "port 22003 is not allocated to tunnel %s", b);
	assert_string_equal(err, reason);
	assert_int_equal(store_port_release(f->s, 22003, a, &p, err, sizeof(err)), 0);
	assert_string_equal(p.rule, "ssh");
	assert_int_equal(store_port_release(f->s, 22003, a, &p, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "port 22003 is not allocated");
	/* and reallocate: a is below its limit again, 22003 is the lowest free */
	alloc_ok(f, b, 0, NULL, 22003, true);
	alloc_err(f, a, 0, "ssh", -ENOSPC, "no free port in 22000-22004");
	assert_int_equal(store_port_release(f->s, 22003, NULL, NULL, err, sizeof(err)), 0);
	alloc_ok(f, a, 0, "ssh", 22003, true);

	/* persistence across close/reopen */
	reopen(f);
	list[0] = 0;
	assert_int_equal(store_port_list(f->s, NULL, 0, 50, port_cb, list, &total), 0);
	assert_string_equal(list, "22000:web 22001: 22002: 22003:ssh 22004: ");
	alloc_ok(f, a, 0, "ssh", 22003, false); /* a reconnecting tunnel gets its port back */
	alloc_ok(f, a, 0, "web", 22000, false);
	assert_int_equal(store_port_count(f->s, &total), 0);
	assert_int_equal(total, 5);
}

static int port_transport_cb(const struct store_port *p, void *arg)
{
	char *out = arg;
	size_t n = strlen(out);

	snprintf(out + n, 256 - n, "%u:%s:%s ", p->port, p->rule, p->transport);
	return 0;
}

/* one namespace: a port number is one tunnel's under one transport */
static void test_ports_transport(void **state)
{
	struct fixture *f = *state;
	char a[STORE_TUNNEL_ID_LEN], b[STORE_TUNNEL_ID_LEN], err[128], list[256] = "";
	struct store_port p;
	bool created;
	int64_t total;

	new_tunnel(f, "a", a);
	new_tunnel(f, "b", b);
	assert_int_equal(store_port_alloc(f->s, a, 0, "dns", "udp", &p, &created, err, sizeof(err)),
			 0);
	assert_int_equal(p.port, 22000);
	assert_string_equal(p.transport, "udp");
	assert_true(created);
	/* the same rule under udp again: the same port */
	assert_int_equal(store_port_alloc(f->s, a, 0, "dns", "udp", &p, &created, err, sizeof(err)),
			 0);
	assert_int_equal(p.port, 22000);
	assert_false(created);
	/* tcp: the lowest free number, a udp port's is not free */
	assert_int_equal(store_port_alloc(f->s, a, 0, "ssh", NULL, &p, &created, err, sizeof(err)),
			 0);
	assert_int_equal(p.port, 22001);
	assert_string_equal(p.transport, "tcp");
	/* a number held under the other transport */
	assert_int_equal(
	    store_port_alloc(f->s, a, 22000, NULL, "tcp", &p, &created, err, sizeof(err)),
	    -EADDRINUSE);
	assert_string_equal(err, "port 22000 is a udp port of this tunnel");
	assert_int_equal(
	    store_port_alloc(f->s, a, 22001, "x", "udp", &p, &created, err, sizeof(err)),
	    -EADDRINUSE);
	assert_string_equal(err, "port 22001 is a tcp port of this tunnel");
	assert_int_equal(
	    store_port_alloc(f->s, b, 22000, NULL, "udp", &p, &created, err, sizeof(err)),
	    -EADDRINUSE);
	assert_string_equal(err, "port 22000 is allocated to another tunnel");
	assert_int_equal(store_port_alloc(f->s, a, 0, NULL, "sctp", &p, &created, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "bad transport");
	assert_false(created);
	assert_int_equal(store_port_alloc(f->s, a, 0, NULL, "", &p, &created, err, sizeof(err)),
			 -EINVAL);
	/* udp ports count against max_per_tunnel too */
	assert_int_equal(
	    store_port_alloc(f->s, a, 22004, NULL, "udp", &p, &created, err, sizeof(err)), 0);
	assert_int_equal(store_port_alloc(f->s, a, 0, NULL, "udp", &p, &created, err, sizeof(err)),
			 -EDQUOT);

	assert_int_equal(store_port_list(f->s, NULL, 0, 50, port_transport_cb, list, &total), 0);
	assert_string_equal(list, "22000:dns:udp 22001:ssh:tcp 22004::udp ");
	reopen(f);
	list[0] = 0;
	assert_int_equal(store_port_list(f->s, a, 0, 50, port_transport_cb, list, &total), 0);
	assert_string_equal(list, "22000:dns:udp 22001:ssh:tcp 22004::udp ");
}

static int rel_cb(const struct store_port *p, void *arg)
{
	char *list = arg;
	size_t n = strlen(list);

	snprintf(list + n, 256 - n, "%u ", p->port);
	return 0;
}

/* A connecting client's rule list releases its other named ports; reserved ones stay. */
static void test_ports_sync(void **state)
{
	struct fixture *f = *state;
	const char *keep[] = {"ssh"};
	char a[STORE_TUNNEL_ID_LEN], b[STORE_TUNNEL_ID_LEN], list[256] = "", rel[256] = "";
	int64_t total;

	new_tunnel(f, "a", a);
	new_tunnel(f, "b", b);
	alloc_ok(f, a, 0, "ssh", 22000, true);
	alloc_ok(f, a, 0, "web", 22001, true);
	alloc_ok(f, a, 22003, NULL, 22003, true); /* reserved by an administrator: no rule */
	alloc_ok(f, b, 0, "web", 22002, true);
	assert_int_equal(store_port_sync(f->s, a, keep, 1, rel_cb, rel), 0);
	assert_string_equal(rel, "22001 ");
	assert_int_equal(store_port_list(f->s, NULL, 0, 50, port_cb, list, &total), 0);
	assert_string_equal(list, "22000:ssh 22002:web 22003: ");
	/* the freed slot counts again: a's third rule fits under max_per_tunnel (3) */
	alloc_ok(f, a, 0, "db", 22001, true);
	/* an empty list releases every named port of the tunnel, none of b's */
	rel[0] = 0;
	assert_int_equal(store_port_sync(f->s, a, NULL, 0, rel_cb, rel), 0);
	assert_string_equal(rel, "22000 22001 ");
	list[0] = 0;
	assert_int_equal(store_port_list(f->s, NULL, 0, 50, port_cb, list, &total), 0);
	assert_string_equal(list, "22002:web 22003: ");
}

/* A revoked token's tunnel holds no ports, by either way of revoking. */
static void test_revoke_releases_ports(void **state)
{
	struct fixture *f = *state;
	char a[STORE_TUNNEL_ID_LEN], b[STORE_TUNNEL_ID_LEN], list[256] = "", rel[256] = "";
	char tok[STORE_SECRET_LEN], tid[STORE_TUNNEL_ID_LEN], err[128];
	struct store_token t, t2;
	bool changed;
	int64_t total;

	assert_int_equal(store_token_create(f->s, "a", "test", &t, tok), 0);
	memcpy(a, t.tunnel_id, sizeof(a));
	new_tunnel(f, "b", b);
	alloc_ok(f, a, 0, "ssh", 22000, true);
	alloc_ok(f, a, 22004, NULL, 22004, true);
	alloc_ok(f, b, 0, "web", 22001, true);
	assert_int_equal(store_token_revoke(f->s, t.id, &t2, &changed, rel_cb, NULL, rel), 0);
	assert_true(changed);
	assert_string_equal(rel, "22000 22004 ");
	assert_int_equal(store_port_list(f->s, NULL, 0, 50, port_cb, list, &total), 0);
	assert_string_equal(list, "22001:web ");
	/* a revoked tunnel gets no port again (a request that was in flight, say) */
	snprintf(err, sizeof(err), "tunnel %s: its token is revoked", a);
	alloc_err(f, a, 0, "late", -EACCES, err);
	/* and revoking again releases whatever it may hold */
	raw_sql(f->db, "INSERT INTO ports (port, tunnel_id, rule, created_at) SELECT 22003, id,"
		       " 'stale', 0 FROM tunnels WHERE group_id = 'a'");
	rel[0] = 0;
	assert_int_equal(store_token_revoke(f->s, t.id, &t2, &changed, rel_cb, NULL, rel), 0);
	assert_false(changed);
	assert_string_equal(rel, "22003 ");

	/* the client's own deauth: revokes the token of the tunnel */
	assert_int_equal(store_token_create(f->s, "c", "test", &t, tok), 0);
	assert_int_equal(store_auth_token(f->s, tok, false, NULL, tid, err, sizeof(err)), 0);
	alloc_ok(f, tid, 0, "x", 22000, true);
	rel[0] = 0;
	assert_int_equal(store_tunnel_revoke(f->s, tid, rel_cb, NULL, rel), 0);
	assert_string_equal(rel, "22000 ");
	assert_int_equal(store_auth_token(f->s, tok, false, NULL, tid, err, sizeof(err)), -EACCES);
	assert_string_equal(err, "token revoked");
	assert_int_equal(store_tunnel_revoke(f->s, "t-000000000000", NULL, NULL, NULL), -ENOENT);

	/* schema v3 also frees ports that revoked tokens held before it existed */
	alloc_ok(f, b, 22002, "db", 22002, true);
	store_close(f->s);
	f->s = NULL;
	raw_sql(f->db, "UPDATE tokens SET revoked = 1 WHERE tunnel_id IN"
		       " (SELECT id FROM tunnels WHERE group_id = 'b');"
		       "UPDATE schema_version SET version = 2; DROP TABLE firewall;"
		       "DROP TABLE domains;" UNDO_V6);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ports"), 2);
	assert_int_equal(open_store(f), 0);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ports"), 0);
}

static void test_ports_lowest_free_gap(void **state)
{
	struct fixture *f = *state;
	char a[STORE_TUNNEL_ID_LEN], b[STORE_TUNNEL_ID_LEN], err[128];

	new_tunnel(f, "a", a);
	new_tunnel(f, "b", b);
	alloc_ok(f, a, 22000, NULL, 22000, true);
	alloc_ok(f, a, 22001, NULL, 22001, true);
	alloc_ok(f, b, 22003, NULL, 22003, true);
	assert_int_equal(store_port_release(f->s, 22000, NULL, NULL, err, sizeof(err)), 0);
	alloc_ok(f, b, 0, NULL, 22000, true);
	alloc_ok(f, b, 0, NULL, 22002, true);
	alloc_ok(f, a, 0, NULL, 22004, true);
}

/* --- domains --- */

static void claim_ok(struct fixture *f, const char *tid, const char *domain, const char *rule,
		     const char *want, bool want_created)
{
	struct store_domain d;
	char err[256] = "";
	bool created;
	int ret = store_domain_claim(f->s, tid, domain, rule, &d, &created, err, sizeof(err));

	if (ret)
		fail_msg("claim %s %s: %d %s", tid, domain, ret, err);
	assert_string_equal(d.domain, want);
	assert_string_equal(d.tunnel_id, tid);
	assert_int_equal(created, want_created);
}

static void claim_err(struct fixture *f, const char *tid, const char *domain, const char *rule,
		      int want_ret, const char *want_err)
{
	struct store_domain d;
	char err[256] = "";
	bool created = true;

	assert_int_equal(
	    store_domain_claim(f->s, tid, domain, rule, &d, &created, err, sizeof(err)), want_ret);
	assert_false(created);
	assert_string_equal(err, want_err);
}

static int dom_cb(const struct store_domain *d, void *arg)
{
	char *out = arg;
	size_t n = strlen(out);

	snprintf(out + n, 512 - n, "%s:%s ", d->domain, d->rule);
	return 0;
}

static int dom_rel_cb(const struct store_domain *d, void *arg)
{
	char *out = arg;
	size_t n = strlen(out);

	snprintf(out + n, 512 - n, "%s ", d->domain);
	return 0;
}

static void test_domains(void **state)
{
	struct fixture *f = *state;
	char a[STORE_TUNNEL_ID_LEN], b[STORE_TUNNEL_ID_LEN], reason[256], err[256];
	char list[512] = "";
	struct store_domain d;
	int64_t total;

	new_tunnel(f, "a", a);
	new_tunnel(f, "b", b);
	claim_ok(f, a, "App.Example.COM", "web", "app.example.com", true);
	/* held by another tunnel: the reason names the holder */
	snprintf(reason, sizeof(reason), "domain app.example.com is held by tunnel %s", a);
	claim_err(f, b, "app.example.com", "web", -EADDRINUSE, reason);
	/* the same tunnel again (a reconnect): fine, and it takes the new rule name */
	claim_ok(f, a, "app.example.com", "site", "app.example.com", false);
	/* a wildcard and a name under it are distinct keys */
	claim_ok(f, b, "*.Example.com", "wild", "*.example.com", true);
	claim_ok(f, b, "b.example.com", "web", "b.example.com", true);
	snprintf(reason, sizeof(reason), "domain *.example.com is held by tunnel %s", b);
	claim_err(f, a, "*.example.com", "w", -EADDRINUSE, reason);
	claim_err(f, "t-000000000000", "x.example.com", "w", -ENOENT,
		  "unknown tunnel t-000000000000");
	claim_err(f, a, "a..b", "w", -EINVAL,
		  "domain \"a..b\" has an empty label (a leading, trailing or doubled '.')");

	assert_int_equal(store_domain_list(f->s, NULL, 0, 50, dom_cb, list, &total), 0);
	assert_int_equal(total, 3);
	assert_string_equal(list, "*.example.com:wild app.example.com:site b.example.com:web ");
	list[0] = 0;
	assert_int_equal(store_domain_list(f->s, b, 1, 50, dom_cb, list, &total), 0);
	assert_int_equal(total, 2);
	assert_string_equal(list, "b.example.com:web ");

	/* release: by its holder only when a tunnel is named, in any case */
	assert_int_equal(store_domain_release(f->s, "APP.example.com", b, &d, err, sizeof(err)),
			 -ENOENT);
	snprintf(reason, sizeof(reason), "domain app.example.com is not held by tunnel %s", b);
	assert_string_equal(err, reason);
	assert_int_equal(store_domain_release(f->s, "APP.example.com", a, &d, err, sizeof(err)), 0);
	assert_string_equal(d.rule, "site");
	assert_int_equal(store_domain_release(f->s, "app.example.com", NULL, &d, err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "domain app.example.com is not held");
	assert_int_equal(store_domain_release(f->s, "-a.com", NULL, &d, err, sizeof(err)), -EINVAL);
	/* once released, another tunnel may claim it */
	claim_ok(f, b, "app.example.com", "web2", "app.example.com", true);

	/* persistence */
	reopen(f);
	list[0] = 0;
	assert_int_equal(store_domain_list(f->s, NULL, 0, 50, dom_cb, list, &total), 0);
	assert_string_equal(list, "*.example.com:wild app.example.com:web2 b.example.com:web ");
}

static void test_domains_limit_sync_revoke(void **state)
{
	struct fixture *f = *state;
	const char *keep[] = {"web", "ssh"};
	char a[STORE_TUNNEL_ID_LEN], b[STORE_TUNNEL_ID_LEN], name[64], reason[256];
	char list[512] = "", rel[512] = "", prel[256] = "", tok[STORE_SECRET_LEN];
	struct store_token t, t2;
	bool changed;
	int64_t total;

	new_tunnel(f, "a", a);
	new_tunnel(f, "b", b);
	for (int i = 0; i < LINK_RULES_MAX; i++) {
		snprintf(name, sizeof(name), "d%d.example.com", i);
		claim_ok(f, a, name, "r", name, true);
	}
	snprintf(reason, sizeof(reason), "tunnel %s already holds %d domains, the most it can", a,
		 LINK_RULES_MAX);
	claim_err(f, a, "more.example.com", "r", -EDQUOT, reason);
	/* a re-claim of a held one is no new domain */
	claim_ok(f, a, "d0.example.com", "r", "d0.example.com", false);
	/* the sync of a rule list without "r" releases them all */
	assert_int_equal(store_domain_sync(f->s, a, keep, 2, dom_rel_cb, rel), 0);
	assert_int_equal(store_domain_list(f->s, a, 0, 100, dom_cb, list, &total), 0);
	assert_int_equal(total, 0);

	claim_ok(f, a, "web.example.com", "web", "web.example.com", true);
	claim_ok(f, a, "old.example.com", "old", "old.example.com", true);
	claim_ok(f, a, "*.old.example.com", "old", "*.old.example.com", true);
	claim_ok(f, b, "b.example.com", "old", "b.example.com", true);
	rel[0] = 0;
	assert_int_equal(store_domain_sync(f->s, a, keep, 2, dom_rel_cb, rel), 0);
	assert_string_equal(rel, "*.old.example.com old.example.com ");
	list[0] = 0;
	assert_int_equal(store_domain_list(f->s, NULL, 0, 100, dom_cb, list, &total), 0);
	assert_string_equal(list, "b.example.com:old web.example.com:web ");
	/* release all of a tunnel */
	rel[0] = 0;
	assert_int_equal(store_domain_release_tunnel(f->s, a, dom_rel_cb, rel), 0);
	assert_string_equal(rel, "web.example.com ");

	/* revoking a token releases its tunnel's ports and domains; it claims nothing after */
	assert_int_equal(store_token_create(f->s, "c", "test", &t, tok), 0);
	claim_ok(f, t.tunnel_id, "c.example.com", "web", "c.example.com", true);
	alloc_ok(f, t.tunnel_id, 0, "ssh", 22000, true);
	rel[0] = 0;
	assert_int_equal(store_token_revoke(f->s, t.id, &t2, &changed, rel_cb, dom_rel_cb, prel),
			 0);
	assert_string_equal(prel, "22000 c.example.com ");
	snprintf(reason, sizeof(reason), "tunnel %s: its token is revoked", t.tunnel_id);
	claim_err(f, t.tunnel_id, "c.example.com", "web", -EACCES, reason);
	/* the client's own deauth, too */
	claim_ok(f, b, "b2.example.com", "web", "b2.example.com", true);
	rel[0] = 0;
	assert_int_equal(store_tunnel_revoke(f->s, b, NULL, dom_rel_cb, rel), 0);
	assert_string_equal(rel, "b.example.com b2.example.com ");
	list[0] = 0;
	assert_int_equal(store_domain_list(f->s, NULL, 0, 100, dom_cb, list, &total), 0);
	assert_int_equal(total, 0);
}

static void check_reason(const char *d, const char *want)
{
	char out[DOMAIN_MAX + 1], why[256] = "";

	assert_false(store_domain_check(d, strlen(d), out, why, sizeof(why)));
	if (strcmp(why, want))
		fail_msg("%s: got \"%s\", want \"%s\"", d, why, want);
}

static void test_domain_check(void **state)
{
	char out[DOMAIN_MAX + 1], why[256], big[300];

	(void)state;
	assert_true(store_domain_check("A-1.Example.COM", 15, out, why, sizeof(why)));
	assert_string_equal(out, "a-1.example.com");
	assert_true(store_domain_check("*.EXAMPLE.com", 13, out, why, sizeof(why)));
	assert_string_equal(out, "*.example.com");
	check_reason("", "the domain is empty");
	check_reason("a..b", "domain \"a..b\" has an empty label (a leading, trailing or doubled "
			     "'.')");
	check_reason("a.com.", "domain \"a.com.\" has an empty label (a leading, trailing or "
			       "doubled '.')");
	check_reason("-a.com", "domain \"-a.com\" has a label that starts or ends with '-'");
	check_reason("a-.com", "domain \"a-.com\" has a label that starts or ends with '-'");
	check_reason("*.", "domain \"*.\" names nothing after '*.'");
	check_reason("a.*.com", "domain \"a.*.com\": '*' only as the whole first label "
				"(*.example.com)");
	check_reason("*", "domain \"*\": '*' only as the whole first label (*.example.com)");
	check_reason("caf\xc3\xa9.com", "domain \"caf\xc3\xa9.com\" holds characters other than "
					"letters, digits, '-' and '.' (a name in another "
					"script goes in its xn-- form)");
	check_reason("a\x1b[31m.com", "domain \"a\\x1b[31m.com\" holds characters other than "
				      "letters, digits, '-' and '.' (a name in another script "
				      "goes in its xn-- form)");
	memset(big, 'a', sizeof(big));
	for (int i = 60; i < 300; i += 61)
		big[i] = '.';
	big[299] = 0;
	check_reason(big, "domain \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			  "...\" is longer than 253 characters");
	memset(big, 'a', 64);
	memcpy(big + 64, ".com", 5);
	check_reason(big, "domain \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			  "aaaaaaaa...\" has a label longer than 63 characters");
}

static void test_domain_allowed(void **state)
{
	(void)state;
	assert_true(store_domain_allowed("", "a.example.com"));
	assert_true(store_domain_allowed(" ,", "*.anything.org"));
	/* exact names */
	assert_true(store_domain_allowed("app.example.com", "app.example.com"));
	assert_true(store_domain_allowed("App.Example.com", "app.example.com"));
	assert_false(store_domain_allowed("app.example.com", "x.app.example.com"));
	assert_false(store_domain_allowed("app.example.com", "*.app.example.com"));
	/* wildcards: names under them, wildcard claims of the same or a deeper suffix */
	assert_true(store_domain_allowed("other.org, *.example.com", "a.example.com"));
	assert_true(store_domain_allowed("*.example.com", "a.b.example.com"));
	assert_false(store_domain_allowed("*.example.com", "example.com"));
	assert_true(store_domain_allowed("*.example.com", "*.example.com"));
	assert_true(store_domain_allowed("*.example.com", "*.dev.example.com"));
	assert_false(store_domain_allowed("*.example.com", "*.com"));
	assert_false(store_domain_allowed("*.example.com", "*.badexample.com"));
	assert_false(store_domain_allowed("*.example.com", "a.badexample.com"));
	assert_false(store_domain_allowed("example.com a.example.com", "*.example.com"));
	assert_true(store_domain_allowed("example.com\t*.example.com", "example.com"));
}

/* --- tunnels --- */

static int tun_cb(const struct store_tunnel *t, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static void test_tunnels(void **state)
{
	struct fixture *f = *state;
	struct store_client_info info = {"box-1", "linux", "amd64", "0.1.0"};
	char a[STORE_TUNNEL_ID_LEN], b[STORE_TUNNEL_ID_LEN];
	struct store_tunnel t;
	int64_t total, online;
	int n = 0;

	new_tunnel(f, "alpha", a);
	new_tunnel(f, "beta_1", b);
	assert_int_equal(store_tunnel_set_state(f->s, a, STORE_ONLINE, &info), 0);
	assert_int_equal(store_tunnel_get(f->s, a, &t), 0);
	assert_int_equal(t.state, STORE_ONLINE);
	assert_true(t.last_seen > 0);
	assert_string_equal(t.hostname, "box-1");
	assert_int_equal(store_tunnel_set_state(f->s, "t-nope", STORE_ONLINE, NULL), -ENOENT);
	assert_int_equal(store_tunnel_counts(f->s, &total, &online), 0);
	assert_int_equal(total, 2);
	assert_int_equal(online, 1);

	assert_int_equal(store_tunnel_list(f->s, true, NULL, 0, 50, tun_cb, &n, &total), 0);
	assert_int_equal(total, 1);
	assert_int_equal(n, 1);
	n = 0;
	assert_int_equal(store_tunnel_list(f->s, false, "box", 0, 50, tun_cb, &n, &total), 0);
	assert_int_equal(n, 1);
	n = 0;
	/* '_' is literal, not a wildcard */
	assert_int_equal(store_tunnel_list(f->s, false, "a_1", 0, 50, tun_cb, &n, &total), 0);
	assert_int_equal(n, 1);
	n = 0;
	assert_int_equal(store_tunnel_list(f->s, false, "x_", 0, 50, tun_cb, &n, &total), 0);
	assert_int_equal(n, 0);
	n = 0;
	assert_int_equal(store_tunnel_list(f->s, false, b, 0, 50, tun_cb, &n, &total), 0);
	assert_int_equal(n, 1);

	assert_int_equal(store_tunnel_all_offline(f->s), 0);
	assert_int_equal(store_tunnel_counts(f->s, &total, &online), 0);
	assert_int_equal(online, 0);
}

/* --- firewall --- */

struct fw_seen {
	char text[512];
	int n;
};

static int fw_cb(const struct store_fw_rule *r, void *arg)
{
	struct fw_seen *seen = arg;
	size_t len = strlen(seen->text);

	assert_true(r->created_at > 0);
	snprintf(seen->text + len, sizeof(seen->text) - len, "%s%s", len ? " " : "", r->cidr);
	seen->n++;
	return 0;
}

static int fw_count_cb(const struct store_fw_rule *r, void *arg)
{
	((struct fw_seen *)arg)->n++;
	return 0;
}

static const char *fw_text(struct fixture *f, int kind, struct fw_seen *seen)
{
	int64_t total = -1;

	memset(seen, 0, sizeof(*seen));
	assert_int_equal(store_fw_list(f->s, kind, fw_cb, seen, &total), 0);
	assert_int_equal(total, seen->n);
	return seen->text;
}

static int row_none(const void *row, void *arg)
{
	(void)row;
	(void)arg;
	return -ECANCELED;
}

static void test_firewall(void **state)
{
	struct fixture *f = *state;
	struct store_fw_rule r;
	struct fw_seen seen;
	char err[256];

	assert_string_equal(store_fw_kind_name(STORE_FW_DENY), "deny");
	assert_string_equal(store_fw_kind_name(STORE_FW_ALLOW), "allow");
	assert_null(store_fw_kind_name(7));
	assert_string_equal(fw_text(f, STORE_FW_DENY, &seen), "");

	/* stored in the canonical text */
	assert_int_equal(store_fw_add(f->s, STORE_FW_DENY, "10.0.0.0/08", &r, err, sizeof(err)), 0);
	assert_string_equal(r.cidr, "10.0.0.0/8");
	assert_int_equal(r.kind, STORE_FW_DENY);
	assert_true(r.created_at > 0);
	assert_int_equal(store_fw_add(f->s, STORE_FW_DENY, "2001:DB8::/32", &r, err, sizeof(err)),
			 0);
	assert_string_equal(r.cidr, "2001:db8::/32");
	assert_int_equal(
	    store_fw_add(f->s, STORE_FW_DENY, "::ffff:192.0.2.7", &r, err, sizeof(err)), 0);
	assert_string_equal(r.cidr, "192.0.2.7/32");
	/* the same block again, in any text: refused */
	assert_int_equal(store_fw_add(f->s, STORE_FW_DENY, "10.0.0.0/8", &r, err, sizeof(err)),
			 -EEXIST);
	assert_string_equal(err, "10.0.0.0/8 is in the deny list already");
	assert_int_equal(store_fw_add(f->s, STORE_FW_DENY, "192.0.2.7", NULL, err, sizeof(err)),
			 -EEXIST);
	/* but a block may be in both lists */
	assert_int_equal(store_fw_add(f->s, STORE_FW_ALLOW, "10.0.0.0/8", NULL, err, sizeof(err)),
			 0);
	/* cidr_parse's reason */
	assert_int_equal(store_fw_add(f->s, STORE_FW_DENY, "10.0.0.1/8", &r, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?");
	assert_int_equal(store_fw_add(f->s, STORE_FW_DENY, "", &r, err, sizeof(err)), -EINVAL);
	assert_int_equal(store_fw_add(f->s, 5, "10.0.0.0/8", &r, err, sizeof(err)), -EINVAL);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM firewall"), 4);

	/* in the order they were added, each list on its own */
	assert_string_equal(fw_text(f, STORE_FW_DENY, &seen),
			    "10.0.0.0/8 2001:db8::/32 192.0.2.7/32");
	assert_string_equal(fw_text(f, STORE_FW_ALLOW, &seen), "10.0.0.0/8");
	assert_int_equal(store_fw_list(f->s, 3, fw_cb, &seen, NULL), -EINVAL);

	/* removed in any text of the block; an absent one is refused */
	assert_int_equal(store_fw_del(f->s, STORE_FW_DENY, "2001:db8:0::/32", &r, err, sizeof(err)),
			 0);
	assert_string_equal(r.cidr, "2001:db8::/32");
	assert_true(r.created_at > 0);
	assert_int_equal(store_fw_del(f->s, STORE_FW_DENY, "2001:db8::/32", &r, err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "2001:db8::/32 is not in the deny list");
	assert_int_equal(store_fw_del(f->s, STORE_FW_ALLOW, "192.0.2.7", NULL, err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "192.0.2.7/32 is not in the allow list");
	assert_int_equal(store_fw_del(f->s, STORE_FW_ALLOW, "192.0.2.300", NULL, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "is not an IPv4 or IPv6 address"));

	/* it persists */
	reopen(f);
	assert_string_equal(fw_text(f, STORE_FW_DENY, &seen), "10.0.0.0/8 192.0.2.7/32");
	assert_string_equal(fw_text(f, STORE_FW_ALLOW, &seen), "10.0.0.0/8");

	/* a list is named: no filter is not the deny list */
	assert_int_equal(store_list(f->s, &store_fw_rules, NULL, 0, -1, row_none, NULL, NULL),
			 -EINVAL);
}

static void test_firewall_limit(void **state)
{
	struct fixture *f = *state;
	struct store_fw_rule r;
	struct fw_seen seen;
	char err[256], text[CIDR_STR_MAX];
	int64_t total;

	/* CIDR_LIST_MAX blocks in one transaction, as if added one by one */
	raw_sql(f->db, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n"
		       " WHERE i < 4095) INSERT INTO firewall (kind, cidr, created_at)"
		       " SELECT 'deny', '10.' || (i / 256) || '.' || (i % 256) || '.0/24', 1"
		       " FROM n;");
	assert_int_equal(CIDR_LIST_MAX, 4096);
	assert_int_equal(store_fw_add(f->s, STORE_FW_DENY, "11.0.0.0/8", &r, err, sizeof(err)),
			 -EDQUOT);
	assert_string_equal(err, "the deny list holds 4096 blocks, the most it can");
	/* the other list is not full */
	assert_int_equal(store_fw_add(f->s, STORE_FW_ALLOW, "11.0.0.0/8", &r, err, sizeof(err)), 0);
	/* one out, one in */
	snprintf(text, sizeof(text), "10.15.255.0/24");
	assert_int_equal(store_fw_del(f->s, STORE_FW_DENY, text, NULL, err, sizeof(err)), 0);
	assert_int_equal(store_fw_add(f->s, STORE_FW_DENY, "11.0.0.0/8", &r, err, sizeof(err)), 0);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(store_fw_list(f->s, STORE_FW_DENY, fw_count_cb, &seen, &total), 0);
	assert_int_equal(total, CIDR_LIST_MAX);
	assert_int_equal(seen.n, CIDR_LIST_MAX);
}

/* --- query plans --- */

/* The distinct statements the store ran, traced on its connection. */
struct traced {
	char *sql[64];
	size_t n;
};

static int trace_stmt(unsigned type, void *ctx, void *p, void *x)
{
	struct traced *t = ctx;
	const char *sql = sqlite3_sql(p);

	(void)type;
	(void)x;
	if (!sql)
		return 0;
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->sql[i], sql))
			return 0;
	if (t->n < sizeof(t->sql) / sizeof(t->sql[0]))
		t->sql[t->n++] = strdup(sql);
	return 0;
}

/*
 * Whether sql reads table (ports, domains) only through its tunnel_id index:
 * every step of its plan that names the table is a "SEARCH table USING
 * [COVERING] INDEX table_tunnel (tunnel_id=?)", and there is one.
 */
static bool uses_tunnel_index(sqlite3 *db, const char *sql, const char *table)
{
	char eqp[1024], scan[32], search[32], idx[64];
	sqlite3_stmt *st;
	bool ok = true, seen = false;

	snprintf(eqp, sizeof(eqp), "EXPLAIN QUERY PLAN %s", sql);
	snprintf(scan, sizeof(scan), "SCAN %s", table);
	snprintf(search, sizeof(search), "SEARCH %s", table);
	snprintf(idx, sizeof(idx), "INDEX %s_tunnel (tunnel_id=?)", table);
	assert_int_equal(sqlite3_prepare_v2(db, eqp, -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *d = (const char *)sqlite3_column_text(st, 3);
		size_t n = strlen(scan), m = strlen(search);

		if ((!strncmp(d, scan, n) && (!d[n] || d[n] == ' ')) ||
		    (!strncmp(d, search, m) && (!d[m] || d[m] == ' '))) {
			seen = true;
			ok &= !strncmp(d, search, m) && strstr(d, idx);
		}
	}
	sqlite3_finalize(st);
	return ok && seen;
}

/*
 * The per-tunnel queries (the count of an allocation or a claim, the
 * collect of a sync, a revoke or a deauth, a list of one tunnel's rows) use
 * the ports_tunnel and domains_tunnel indexes: every statement the store
 * runs that selects a table's rows by tunnel_id is checked with EXPLAIN
 * QUERY PLAN, and each kind must have been seen.
 */
static void test_tunnel_queries_use_index(void **state)
{
	struct fixture *f = *state;
	static const char *const tables[] = {"ports", "domains"};
	const char *keep[] = {"none"};
	char a[STORE_TUNNEL_ID_LEN], list[512] = "", tok[STORE_SECRET_LEN], from[32];
	sqlite3 *db = store_sqlite(f->s);
	struct traced tr = {0};
	struct store_token t, t2;
	int counts[2] = {0}, selects[2] = {0};
	bool changed;
	int64_t total;

	/* the check itself: the filter of the regression scans */
	assert_false(uses_tunnel_index(
	    db, "SELECT count(*) FROM ports WHERE ?1 IS NULL OR tunnel_id = ?1", "ports"));
	assert_true(
	    uses_tunnel_index(db, "SELECT count(*) FROM ports WHERE tunnel_id = ?1", "ports"));

	new_tunnel(f, "a", a);
	assert_int_equal(store_token_create(f->s, "b", "test", &t, tok), 0);
	sqlite3_trace_v2(db, SQLITE_TRACE_STMT, trace_stmt, &tr);
	alloc_ok(f, a, 0, "ssh", 22000, true);
	alloc_ok(f, t.tunnel_id, 0, "ssh", 22001, true);
	claim_ok(f, a, "a.example.com", "web", "a.example.com", true);
	claim_ok(f, t.tunnel_id, "b.example.com", "web", "b.example.com", true);
	assert_int_equal(store_port_list(f->s, a, 0, 50, port_cb, list, &total), 0);
	assert_int_equal(total, 1);
	list[0] = 0;
	assert_int_equal(store_domain_list(f->s, a, 0, 50, dom_cb, list, &total), 0);
	assert_int_equal(total, 1);
	assert_int_equal(store_port_sync(f->s, a, keep, 1, NULL, NULL), 0);
	assert_int_equal(store_domain_sync(f->s, a, keep, 1, NULL, NULL), 0);
	assert_int_equal(store_token_revoke(f->s, t.id, &t2, &changed, NULL, NULL, NULL), 0);
	assert_true(changed);
	assert_int_equal(store_tunnel_revoke(f->s, a, NULL, NULL, NULL), 0);
	sqlite3_trace_v2(db, 0, NULL, NULL);

	for (size_t i = 0; i < tr.n; i++) {
		for (int k = 0; k < 2; k++) {
			const char *rest;

			snprintf(from, sizeof(from), " FROM %s", tables[k]);
			rest = strstr(tr.sql[i], from);
			/* a statement selecting the table's rows by tunnel */
			if (!rest || strncmp(tr.sql[i], "SELECT ", 7) || !strstr(rest, "tunnel_id"))
				continue;
			if (!uses_tunnel_index(db, tr.sql[i], tables[k]))
				fail_msg("does not use %s_tunnel: %s", tables[k], tr.sql[i]);
			if (strstr(tr.sql[i], "count(*)"))
				counts[k]++;
			else
				selects[k]++;
		}
		free(tr.sql[i]);
	}
	for (int k = 0; k < 2; k++) {
		if (!counts[k] || !selects[k])
			fail_msg("%s: %d counts and %d selects by tunnel seen", tables[k],
				 counts[k], selects[k]);
	}
}

/* --- token restrictions (restrict.h) --- */

/* the "stored" name the last check was given ("(null)" for none) */
static char seen_stored[64];

static int refuse_all(const struct restrict_set *rs, const char *stored, void *arg, char *err,
		      size_t errlen)
{
	*(struct restrict_set *)arg = *rs;
	snprintf(seen_stored, sizeof(seen_stored), "%s", stored ? stored : "(null)");
	snprintf(err, errlen, "refused by the check");
	return 1;
}

static int pass_all(const struct restrict_set *rs, const char *stored, void *arg, char *err,
		    size_t errlen)
{
	(void)err;
	(void)errlen;
	*(struct restrict_set *)arg = *rs;
	snprintf(seen_stored, sizeof(seen_stored), "%s", stored ? stored : "(null)");
	return 0;
}

static void test_restrictions(void **state)
{
	struct fixture *f = *state;
	struct restrict_set rs = {0}, seen, got;
	struct store_registration r;
	struct store_token t, plain;
	struct store_port p;
	char tok[STORE_SECRET_LEN], reg[STORE_SECRET_LEN], tid[STORE_TUNNEL_ID_LEN], err[160];
	bool created;

	strcpy(rs.allow_from, "10.9.9.0/24");
	strcpy(rs.kinds, "tcp");
	strcpy(rs.ports, "22002-22003");
	assert_int_equal(store_token_create_rs(f->s, "r", "d", &rs, &t, tok), 0);
	assert_string_equal(t.rs.allow_from, "10.9.9.0/24");
	assert_string_equal(t.rs.ports, "22002-22003");
	assert_string_equal(t.rs.allow_ids, "");
	assert_int_equal(store_token_create(f->s, "plain", "d", &plain, reg), 0);
	assert_string_equal(plain.rs.allow_from, "");
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM tokens WHERE allow_from IS NULL"), 1);

	/* a refusing check refuses the auth before last_used is written */
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(
	    store_auth_token_rs(f->s, tok, true, NULL, refuse_all, &seen, tid, err, sizeof(err)),
	    -EACCES);
	assert_string_equal(err, "refused by the check");
	assert_string_equal(seen.kinds, "tcp");
	/* an auth token's check gets its tunnel's stored name, not the client's word */
	assert_string_equal(seen_stored, "r");
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM tokens WHERE last_used IS NOT NULL"),
			 0);
	assert_int_equal(
	    store_auth_token_rs(f->s, tok, true, NULL, pass_all, &seen, tid, err, sizeof(err)), 0);
	assert_string_equal(tid, t.tunnel_id);
	assert_int_equal(store_tunnel_restrictions(f->s, tid, &got), 0);
	assert_string_equal(got.ports, "22002-22003");
	assert_int_equal(store_tunnel_restrictions(f->s, "t-000000000000", &got), -ENOENT);

	/* port 0 = any lands inside the token's range; a port outside it is refused */
	assert_int_equal(store_port_alloc_in(f->s, tid, 0, "a", NULL, 22002, 22003, &p, &created,
					     err, sizeof(err)),
			 0);
	assert_int_equal(p.port, 22002);
	assert_int_equal(store_port_alloc_in(f->s, tid, 0, "b", NULL, 22002, 22003, &p, &created,
					     err, sizeof(err)),
			 0);
	assert_int_equal(p.port, 22003);
	assert_int_equal(store_port_alloc_in(f->s, tid, 0, "a", NULL, 22002, 22003, &p, &created,
					     err, sizeof(err)),
			 0);
	assert_int_equal(p.port, 22002); /* held under its rule */
	assert_int_equal(store_port_alloc_in(f->s, tid, 22000, "c", NULL, 22002, 22003, &p,
					     &created, err, sizeof(err)),
			 -ERANGE);
	assert_string_equal(err, "port 22000 is outside this token's port range 22002-22003");

	/* a registration's restrictions: checked first, then inherited by what it mints */
	memset(&rs, 0, sizeof(rs));
	strcpy(rs.allow_ids, "kiosk-*");
	strcpy(rs.domains, "*.example.com");
	assert_int_equal(store_registration_create_rs(f->s, "k", 0, 0, &rs, &r, reg), 0);
	assert_string_equal(r.rs.allow_ids, "kiosk-*");
	assert_int_equal(store_auth_registration_rs(f->s, reg, "x", NULL, refuse_all, &seen, tid,
						    tok, err, sizeof(err)),
			 -EACCES);
	assert_string_equal(seen.allow_ids, "kiosk-*");
	assert_string_equal(seen_stored, "(null)");
	assert_int_equal(
	    raw_int(f->db, "SELECT uses FROM registrations WHERE allow_ids IS NOT NULL"), 0);
	assert_int_equal(store_auth_registration_rs(f->s, reg, "kiosk-1", NULL, pass_all, &seen,
						    tid, tok, err, sizeof(err)),
			 0);
	assert_int_equal(store_tunnel_restrictions(f->s, tid, &got), 0);
	assert_string_equal(got.allow_ids, "kiosk-*");
	assert_string_equal(got.domains, "*.example.com");
	assert_string_equal(got.allow_from, "");
}

/* --- admin users, sessions, API keys --- */

static int admin_count_cb(const void *row, void *arg)
{
	(void)row;
	(*(int *)arg)++;
	return 0;
}

static void test_admin_users(void **state)
{
	struct fixture *f = *state;
	struct store_user u;
	bool locked;

	assert_true(store_user_name_ok("alice"));
	assert_true(store_user_name_ok("a.b_c-9"));
	assert_false(store_user_name_ok(""));
	assert_false(store_user_name_ok("Alice"));
	assert_false(store_user_name_ok("-x"));
	assert_false(store_user_name_ok(".x"));
	assert_false(store_user_name_ok("a/b"));
	assert_false(store_user_name_ok("abcdefghijklmnopqrstuvwxyz0123456")); /* 33 */
	assert_int_equal(store_user_add(f->s, "alice", "$scrypt$hash", &u), 0);
	assert_string_equal(u.name, "alice");
	assert_false(u.two_factor);
	assert_int_equal(store_user_add(f->s, "alice", "$scrypt$hash", &u), -EEXIST);
	assert_int_equal(store_user_add(f->s, "Bad", "$scrypt$hash", &u), -EINVAL);
	assert_int_equal(store_user_set_totp(f->s, "alice", "GEZDGNBV"), 0);
	assert_int_equal(store_user_get(f->s, "alice", &u), 0);
	assert_true(u.two_factor);
	assert_string_equal(u.totp_secret, "GEZDGNBV");
	assert_int_equal(store_user_set_totp(f->s, "nobody", NULL), -ENOENT);
	/* 3 failures lock (max 3), the count starts again; a success clears all */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(store_user_login(f->s, "alice", false, 0, 1000, 3, 60, &locked),
				 0);
		assert_false(locked);
	}
	assert_int_equal(store_user_login(f->s, "alice", false, 0, 1000, 3, 60, &locked), 0);
	assert_true(locked);
	assert_int_equal(store_user_get(f->s, "alice", &u), 0);
	assert_int_equal(u.locked_until, 1060);
	assert_int_equal(u.failed, 0);
	/* unlock clears the lock and the count; an unknown user is -ENOENT */
	assert_int_equal(store_user_login(f->s, "alice", false, 0, 1000, 3, 60, &locked), 0);
	assert_int_equal(store_user_unlock(f->s, "alice"), 0);
	assert_int_equal(store_user_get(f->s, "alice", &u), 0);
	assert_int_equal(u.locked_until, 0);
	assert_int_equal(u.failed, 0);
	assert_int_equal(store_user_unlock(f->s, "nobody"), -ENOENT);
	assert_int_equal(store_user_login(f->s, "alice", true, 77, 2000, 3, 60, NULL), 0);
	assert_int_equal(store_user_get(f->s, "alice", &u), 0);
	assert_int_equal(u.locked_until, 0);
	assert_int_equal(u.last_login, 2000);
	assert_int_equal(u.totp_step, 77);
	/* a new TOTP secret forgets the step */
	assert_int_equal(store_user_set_totp(f->s, "alice", NULL), 0);
	assert_int_equal(store_user_get(f->s, "alice", &u), 0);
	assert_false(u.two_factor);
	assert_int_equal(u.totp_step, 0);
	assert_int_equal(store_user_del(f->s, "alice"), 0);
	assert_int_equal(store_user_del(f->s, "alice"), -ENOENT);
}

static void test_admin_sessions(void **state)
{
	struct fixture *f = *state;
	struct store_session s = {.user = "bob", .csrf = "c", .source = "127.0.0.1"}, got;
	struct store_user u;
	int n = 0;

	assert_int_equal(store_user_add(f->s, "bob", "$scrypt$hash", &u), 0);
	for (int i = 0; i < STORE_SESSIONS_PER_USER + 3; i++) {
		snprintf(s.id_hash, sizeof(s.id_hash), "%064d", i);
		s.created_at = s.last_used = 100 + i;
		s.expires_at = 1000 + i;
		assert_int_equal(store_session_add(f->s, &s), 0);
	}
	/* the newest STORE_SESSIONS_PER_USER stay */
	assert_int_equal(store_list(f->s, &store_sessions, NULL, 0, -1, admin_count_cb, &n, NULL),
			 0);
	assert_int_equal(n, STORE_SESSIONS_PER_USER);
	snprintf(s.id_hash, sizeof(s.id_hash), "%064d", 0);
	assert_int_equal(store_session_get(f->s, s.id_hash, &got), -ENOENT);
	snprintf(s.id_hash, sizeof(s.id_hash), "%064d", STORE_SESSIONS_PER_USER + 2);
	assert_int_equal(store_session_get(f->s, s.id_hash, &got), 0);
	assert_string_equal(got.user, "bob");
	assert_int_equal(store_session_touch(f->s, s.id_hash, 500), 0);
	/* idle for 100 s at 590: only the touched one is left */
	assert_int_equal(store_session_purge(f->s, 590, 100), 0);
	n = 0;
	assert_int_equal(store_list(f->s, &store_sessions, NULL, 0, -1, admin_count_cb, &n, NULL),
			 0);
	assert_int_equal(n, 1);
	/* a new password ends them */
	assert_int_equal(store_user_set_password(f->s, "bob", "$scrypt$new"), 0);
	assert_int_equal(store_session_get(f->s, s.id_hash, &got), -ENOENT);
	assert_int_equal(store_user_set_password(f->s, "nobody", "$scrypt$new"), -ENOENT);
}

static void test_admin_apikeys(void **state)
{
	struct fixture *f = *state;
	struct store_apikey k, got;
	char key[STORE_APIKEY_LEN], bad[STORE_APIKEY_LEN];
	const char *why;
	int64_t now = time(NULL);

	assert_int_equal(store_apikey_create(f->s, "ci", 0, &k, key), 0);
	assert_int_equal(strlen(key), 77);
	assert_int_equal(strncmp(key, "nvk_", 4), 0);
	assert_int_equal(store_apikey_auth(f->s, key, now, &got, &why), 0);
	assert_string_equal(got.id, k.id);
	assert_int_equal(got.last_used, now);
	strcpy(bad, key);
	bad[20] = bad[20] == 'a' ? 'b' : 'a';
	assert_int_equal(store_apikey_auth(f->s, bad, now, &got, &why), -EACCES);
	assert_string_equal(why, "wrong key");
	assert_int_equal(store_apikey_auth(f->s, "nvk_x", now, &got, &why), -EACCES);
	assert_string_equal(why, "malformed key");
	memcpy(bad, key, sizeof(bad));
	memcpy(bad + 4, "00000000", 8);
	assert_int_equal(store_apikey_auth(f->s, bad, now, &got, &why), -EACCES);
	assert_string_equal(why, "unknown key");
	assert_int_equal(store_apikey_revoke(f->s, k.id, &got), 0);
	assert_true(got.revoked);
	assert_int_equal(store_apikey_auth(f->s, key, now, &got, &why), -EACCES);
	assert_string_equal(why, "revoked key");
	assert_int_equal(store_apikey_revoke(f->s, "ffffffff", &got), -ENOENT);
	/* expiry */
	assert_int_equal(store_apikey_create(f->s, "short", 10, &k, key), 0);
	assert_int_equal(k.expires_at, k.created_at + 10);
	assert_int_equal(store_apikey_auth(f->s, key, k.created_at + 9, &got, &why), 0);
	assert_int_equal(store_apikey_auth(f->s, key, k.created_at + 10, &got, &why), -EACCES);
	assert_string_equal(why, "expired key");
	/* the secret is not in the database, its SHA-256 is */
	{
		char q[512], h[65];

		snprintf(q, sizeof(q),
			 "SELECT count(*) FROM apikeys WHERE hash = '%s' OR description = '%s'",
			 key + 13, key);
		assert_int_equal(raw_int(f->db, q), 0);
		store_hash_secret(key + 13, h);
		snprintf(q, sizeof(q), "SELECT count(*) FROM apikeys WHERE hash = '%s'", h);
		assert_int_equal(raw_int(f->db, q), 1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_migrate_empty, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wal_mode, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrate_backup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrate_v10, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrate_v11, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_auth_cert_identity, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ports_transport, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mesh_rules, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrate_newer_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_token_verify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_token_list, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_registration, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_registration_disable_expire, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ports, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ports_lowest_free_gap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ports_sync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_revoke_releases_ports, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tunnels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_firewall, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_firewall_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_domains, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_domains_limit_sync_revoke, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tunnel_queries_use_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin_users, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin_sessions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin_apikeys, setup, teardown),
	    cmocka_unit_test(test_domain_check),
	    cmocka_unit_test(test_domain_allowed),
	    cmocka_unit_test_setup_teardown(test_restrictions, setup, teardown),
	};

	log_init("test_store", NLOG_WARN, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

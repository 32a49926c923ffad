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

#include "config/cfg.h"
#include "link_proto.h"
#include "log.h"
#include "util.h"

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
};

_Static_assert(ARRAY_SIZE(store_migrations) == STORE_SCHEMA_VERSION,
	       "STORE_SCHEMA_VERSION must match the migration list");

static void port_row(sqlite3_stmt *st, struct store_port *p);
static int domains_release_tunnel(struct store *s, const char *tunnel_id, const char *const *keep,
				  size_t nkeep, store_domain_cb cb, void *arg);

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

/* Steps a port query of at most one row into out and finalizes it: 1 found, 0 none, or -errno. */
static int port_one(struct store *s, sqlite3_stmt *st, struct store_port *out)
{
	int rc = sqlite3_step(st), ret;

	if (rc == SQLITE_ROW) {
		port_row(st, out);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		ret = db_fail(s, "port lookup");
	}
	sqlite3_finalize(st);
	return ret;
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

/* --- registrations --- */

#define REG_COLS "id, description, max_uses, uses, expires_at, enabled, created_at"

static void reg_row(sqlite3_stmt *st, struct store_registration *r)
{
	memset(r, 0, sizeof(*r));
	col_text(st, 0, r->id, sizeof(r->id));
	col_text(st, 1, r->description, sizeof(r->description));
	r->max_uses = col_int(st, 2);
	r->uses = col_int(st, 3);
	r->expires_at = col_int(st, 4);
	r->enabled = col_int(st, 5) != 0;
	r->created_at = col_int(st, 6);
}

int store_registration_get(struct store *s, const char *id, struct store_registration *out)
{
	sqlite3_stmt *st;
	int rc, ret;

	ret = prep(s, "SELECT " REG_COLS " FROM registrations WHERE id = ?1", &st);
	if (ret)
		return ret;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		reg_row(st, out);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : db_fail(s, "registration get");
	sqlite3_finalize(st);
	return ret;
}

int store_registration_create(struct store *s, const char *description, int64_t max_uses,
			      int64_t expires_in, struct store_registration *out,
			      char token[STORE_SECRET_LEN])
{
	sqlite3_stmt *st;
	char id[STORE_ID_LEN], hash[65];
	int64_t now = store_now();
	int rc = SQLITE_CONSTRAINT, ret;

	if (max_uses < 0 || expires_in < 0)
		return -EINVAL;
	ret = prep(s,
		   "INSERT INTO registrations (id, hash, description, max_uses, uses, expires_at,"
		   " enabled, created_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, 1, ?6)",
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
	struct store_registration r;
	sqlite3_stmt *st;
	int rc, ret;

	ret = prep(s, "SELECT count(*) FROM registrations", &st);
	if (ret)
		return ret;
	ret = query_int(s, st, total);
	sqlite3_finalize(st);
	if (ret)
		return ret;
	ret = prep(s,
		   "SELECT " REG_COLS " FROM registrations ORDER BY created_at, rowid"
		   " LIMIT ?1 OFFSET ?2",
		   &st);
	if (ret)
		return ret;
	sqlite3_bind_int64(st, 1, limit);
	sqlite3_bind_int64(st, 2, offset);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		reg_row(st, &r);
		ret = cb(&r, arg);
		if (ret)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = db_fail(s, "registration list");
out:
	sqlite3_finalize(st);
	return ret;
}

/* --- tunnels and tokens --- */

#define TUN_COLS                                                                                   \
	"id, group_id, hostname, os, arch, client_version, state, last_seen, created_at,"          \
	" coalesce(token_id, '')"

static void tunnel_row(sqlite3_stmt *st, struct store_tunnel *t)
{
	const unsigned char *state;

	memset(t, 0, sizeof(*t));
	col_text(st, 0, t->id, sizeof(t->id));
	col_text(st, 1, t->group_id, sizeof(t->group_id));
	col_text(st, 2, t->hostname, sizeof(t->hostname));
	col_text(st, 3, t->os, sizeof(t->os));
	col_text(st, 4, t->arch, sizeof(t->arch));
	col_text(st, 5, t->client_version, sizeof(t->client_version));
	state = sqlite3_column_text(st, 6);
	t->state = state && !strcmp((const char *)state, "online") ? STORE_ONLINE : STORE_OFFLINE;
	t->last_seen = col_int(st, 7);
	t->created_at = col_int(st, 8);
	col_text(st, 9, t->token_id, sizeof(t->token_id));
}

int store_tunnel_get(struct store *s, const char *id, struct store_tunnel *out)
{
	sqlite3_stmt *st;
	int rc, ret;

	ret = prep(s, "SELECT " TUN_COLS " FROM tunnels WHERE id = ?1", &st);
	if (ret)
		return ret;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		tunnel_row(st, out);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : db_fail(s, "tunnel get");
	sqlite3_finalize(st);
	return ret;
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
			       char tunnel_id[STORE_TUNNEL_ID_LEN], char token_id[STORE_ID_LEN],
			       char token[STORE_SECRET_LEN])
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
		   "INSERT INTO tokens (id, hash, tunnel_id, description, created_at, revoked)"
		   " VALUES (?1, ?2, ?3, ?4, ?5, 0)",
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

#define TOK_COLS "id, tunnel_id, description, created_at, revoked, last_used"

static void token_row(sqlite3_stmt *st, struct store_token *t)
{
	memset(t, 0, sizeof(*t));
	col_text(st, 0, t->id, sizeof(t->id));
	col_text(st, 1, t->tunnel_id, sizeof(t->tunnel_id));
	col_text(st, 2, t->description, sizeof(t->description));
	t->created_at = col_int(st, 3);
	t->revoked = col_int(st, 4) != 0;
	t->last_used = col_int(st, 5);
}

int store_token_get(struct store *s, const char *id, struct store_token *out)
{
	sqlite3_stmt *st;
	int rc, ret;

	ret = prep(s, "SELECT " TOK_COLS " FROM tokens WHERE id = ?1", &st);
	if (ret)
		return ret;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		token_row(st, out);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : db_fail(s, "token get");
	sqlite3_finalize(st);
	return ret;
}

int store_token_create(struct store *s, const char *group, const char *description,
		       struct store_token *out, char token[STORE_SECRET_LEN])
{
	char tunnel_id[STORE_TUNNEL_ID_LEN], token_id[STORE_ID_LEN];
	int ret;

	ret = tx_begin(s);
	if (ret)
		return ret;
	ret = create_tunnel_token(s, group, NULL, description, tunnel_id, token_id, token);
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

/*
 * Inside the caller's transaction: deletes the tunnel's ports, all of them
 * (keep NULL) or those with a rule name not in keep[0..nkeep); each deleted
 * row goes to cb first.
 */
static int ports_release_tunnel(struct store *s, const char *tunnel_id, const char *const *keep,
				size_t nkeep, store_port_cb cb, void *arg)
{
	struct store_port *rel = NULL, p;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st;
	int rc, ret;

	/* collect first: rows are not deleted under a running SELECT of the table */
	ret = prep(s,
		   "SELECT port, tunnel_id, rule, created_at FROM ports WHERE tunnel_id = ?1"
		   " ORDER BY port",
		   &st);
	if (ret)
		return ret;
	bind_text(st, 1, tunnel_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		port_row(st, &p);
		if (keep && (!p.rule[0] || name_in(p.rule, keep, nkeep)))
			continue;
		if (n == cap) {
			struct store_port *r = realloc(rel, (cap = cap ? 2 * cap : 8) * sizeof(*r));

			if (!r) {
				ret = -ENOMEM;
				break;
			}
			rel = r;
		}
		rel[n++] = p;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(s, "port release");
	sqlite3_finalize(st);
	if (!ret && n)
		ret = prep(s, "DELETE FROM ports WHERE port = ?1", &st);
	for (size_t i = 0; !ret && i < n; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int(st, 1, rel[i].port);
		ret = step_done(s, st);
		if (!ret && cb)
			ret = cb(&rel[i], arg);
	}
	if (n)
		sqlite3_finalize(st);
	free(rel);
	return ret;
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
		ret = ports_release_tunnel(s, tunnel_id, NULL, 0, cb, arg);
	if (!ret)
		ret = domains_release_tunnel(s, tunnel_id, NULL, 0, dcb, arg);
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
	static const char *const none[1] = {""};
	int ret = tx_begin(s);

	if (ret)
		return ret;
	ret = ports_release_tunnel(s, tunnel_id, n ? names : none, n, released, arg);
	return tx_end(s, ret);
}

int store_token_list(struct store *s, int64_t offset, int64_t limit, store_token_cb cb, void *arg,
		     int64_t *total)
{
	struct store_token t;
	sqlite3_stmt *st;
	int rc, ret;

	ret = prep(s, "SELECT count(*) FROM tokens", &st);
	if (ret)
		return ret;
	ret = query_int(s, st, total);
	sqlite3_finalize(st);
	if (ret)
		return ret;
	ret =
	    prep(s, "SELECT " TOK_COLS " FROM tokens ORDER BY created_at, rowid LIMIT ?1 OFFSET ?2",
		 &st);
	if (ret)
		return ret;
	sqlite3_bind_int64(st, 1, limit);
	sqlite3_bind_int64(st, 2, offset);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		token_row(st, &t);
		ret = cb(&t, arg);
		if (ret)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = db_fail(s, "token list");
out:
	sqlite3_finalize(st);
	return ret;
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

int store_auth_registration(struct store *s, const char *registration, const char *group,
			    const struct store_client_info *info,
			    char tunnel_id[STORE_TUNNEL_ID_LEN], char token[STORE_SECRET_LEN],
			    char *err, size_t errlen)
{
	char id[STORE_ID_LEN], hash[65], token_id[STORE_ID_LEN], desc[64];
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
	ret = create_tunnel_token(s, group, info, desc, tunnel_id, token_id, token);
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

int store_tunnel_list(struct store *s, bool online_only, const char *search, int64_t offset,
		      int64_t limit, store_tunnel_cb cb, void *arg, int64_t *total)
{
	static const char where[] =
	    " WHERE (?1 = 0 OR state = 'online') AND (?2 = '' OR id LIKE ?2 ESCAPE '\\'"
	    " OR group_id LIKE ?2 ESCAPE '\\' OR hostname LIKE ?2 ESCAPE '\\')";
	struct store_tunnel t;
	sqlite3_stmt *st;
	char pat[600] = "", sql[512];
	int rc, ret;

	if (search && *search && !like_pattern(search, pat, sizeof(pat)))
		return -EINVAL;
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM tunnels%s", where);
	ret = prep(s, sql, &st);
	if (ret)
		return ret;
	sqlite3_bind_int(st, 1, online_only);
	bind_text(st, 2, pat);
	ret = query_int(s, st, total);
	sqlite3_finalize(st);
	if (ret)
		return ret;
	snprintf(sql, sizeof(sql),
		 "SELECT " TUN_COLS " FROM tunnels%s ORDER BY created_at, rowid LIMIT ?3 OFFSET ?4",
		 where);
	ret = prep(s, sql, &st);
	if (ret)
		return ret;
	sqlite3_bind_int(st, 1, online_only);
	bind_text(st, 2, pat);
	sqlite3_bind_int64(st, 3, limit);
	sqlite3_bind_int64(st, 4, offset);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		tunnel_row(st, &t);
		ret = cb(&t, arg);
		if (ret)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = db_fail(s, "tunnel list");
out:
	sqlite3_finalize(st);
	return ret;
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

static void port_row(sqlite3_stmt *st, struct store_port *p)
{
	memset(p, 0, sizeof(*p));
	p->port = (uint16_t)sqlite3_column_int(st, 0);
	col_text(st, 1, p->tunnel_id, sizeof(p->tunnel_id));
	col_text(st, 2, p->rule, sizeof(p->rule));
	p->created_at = col_int(st, 3);
}

/* Looks one port row up with a query taking ?1 and ?2; 1 found, 0 not, -EIO. */
static int port_find(struct store *s, const char *sql, const char *a, int64_t b, const char *c,
		     struct store_port *out)
{
	sqlite3_stmt *st;
	int ret;

	ret = prep(s, sql, &st);
	if (ret)
		return ret;
	if (a)
		bind_text(st, 1, a);
	else
		sqlite3_bind_int64(st, 1, b);
	if (c)
		bind_text(st, 2, c);
	return port_one(s, st, out);
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

	ret = prep(s,
		   "SELECT port, tunnel_id, rule, created_at FROM ports"
		   " WHERE port < ?1 OR port > ?2 ORDER BY port LIMIT 1",
		   &st);
	if (ret)
		return ret;
	sqlite3_bind_int(st, 1, lo);
	sqlite3_bind_int(st, 2, hi);
	return port_one(s, st, out);
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
			 struct store_port *out, bool *created, char *err, size_t errlen)
{
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
		ret = port_find(s,
				"SELECT port, tunnel_id, rule, created_at FROM ports"
				" WHERE port = ?1",
				NULL, port, NULL, out);
		if (ret < 0)
			return ret;
		if (ret == 1) {
			if (strcmp(out->tunnel_id, tunnel_id) != 0) {
				set_err(err, errlen, "port %u is allocated to another tunnel",
					port);
				return -EADDRINUSE;
			}
			if (rule && *rule && strcmp(rule, out->rule) != 0) {
				ret = prep(s, "UPDATE ports SET rule = ?2 WHERE port = ?1", &st);
				if (ret)
					return ret;
				sqlite3_bind_int(st, 1, (int)port);
				bind_text(st, 2, rule);
				ret = step_done(s, st);
				sqlite3_finalize(st);
				if (ret)
					return ret;
				str_copy(out->rule, sizeof(out->rule), rule);
			}
			return 0;
		}
	} else if (rule && *rule) {
		ret = port_find(s,
				"SELECT port, tunnel_id, rule, created_at FROM ports"
				" WHERE tunnel_id = ?1 AND rule = ?2 ORDER BY port LIMIT 1",
				tunnel_id, 0, rule, out);
		if (ret < 0)
			return ret;
		if (ret == 1)
			return 0;
	}

	ret = prep(s, "SELECT count(*) FROM ports WHERE tunnel_id = ?1", &st);
	if (ret)
		return ret;
	bind_text(st, 1, tunnel_id);
	ret = query_int(s, st, &n);
	sqlite3_finalize(st);
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
		sqlite3_bind_int(st, 1, s->port_min);
		sqlite3_bind_int(st, 2, s->port_max);
		if (sqlite3_step(st) != SQLITE_ROW) {
			ret = db_fail(s, "free port");
			sqlite3_finalize(st);
			return ret;
		}
		free_port =
		    sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		if (free_port == 0) {
			set_err(err, errlen, "no free port in %u-%u", s->port_min, s->port_max);
			return -ENOSPC;
		}
		port = (unsigned)free_port;
	}

	ret =
	    prep(s, "INSERT INTO ports (port, tunnel_id, rule, created_at) VALUES (?1, ?2, ?3, ?4)",
		 &st);
	if (ret)
		return ret;
	memset(out, 0, sizeof(*out));
	out->port = (uint16_t)port;
	str_copy(out->tunnel_id, sizeof(out->tunnel_id), tunnel_id);
	str_copy(out->rule, sizeof(out->rule), nz(rule));
	out->created_at = store_now();
	sqlite3_bind_int(st, 1, (int)port);
	bind_text(st, 2, tunnel_id);
	bind_text(st, 3, out->rule);
	sqlite3_bind_int64(st, 4, out->created_at);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	if (!ret)
		*created = true;
	return ret;
}

int store_port_alloc(struct store *s, const char *tunnel_id, unsigned port, const char *rule,
		     struct store_port *out, bool *created, char *err, size_t errlen)
{
	int ret;

	*created = false;
	if (rule && strlen(rule) >= STORE_RULE_LEN) {
		set_err(err, errlen, "invalid rule name");
		return -EINVAL;
	}
	if (port > 65535) {
		set_err(err, errlen, "port %u is outside the range %u-%u", port, s->port_min,
			s->port_max);
		return -ERANGE;
	}
	ret = tx_begin(s);
	if (ret) {
		set_err(err, errlen, "internal error");
		return ret;
	}
	ret = port_alloc_tx(s, tunnel_id, port, rule, out, created, err, errlen);
	if (ret == -EIO)
		set_err(err, errlen, "internal error");
	ret = tx_end(s, ret);
	if (ret)
		*created = false;
	return ret;
}

int store_port_release(struct store *s, unsigned port, const char *tunnel_id,
		       struct store_port *out, char *err, size_t errlen)
{
	struct store_port p;
	sqlite3_stmt *st;
	int ret;

	if (port == 0 || port > 65535) {
		set_err(err, errlen, "port %u is not allocated", port);
		return -ENOENT;
	}
	ret = port_find(s, "SELECT port, tunnel_id, rule, created_at FROM ports WHERE port = ?1",
			NULL, port, NULL, &p);
	if (ret < 0) {
		set_err(err, errlen, "internal error");
		return ret;
	}
	if (ret == 0) {
		set_err(err, errlen, "port %u is not allocated", port);
		return -ENOENT;
	}
	if (tunnel_id && strcmp(tunnel_id, p.tunnel_id) != 0) {
		set_err(err, errlen, "port %u is not allocated to tunnel %s", port, tunnel_id);
		return -ENOENT;
	}
	ret = prep(s, "DELETE FROM ports WHERE port = ?1", &st);
	if (ret) {
		set_err(err, errlen, "internal error");
		return ret;
	}
	sqlite3_bind_int(st, 1, (int)port);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	if (ret) {
		set_err(err, errlen, "internal error");
		return ret;
	}
	if (out)
		*out = p;
	return 0;
}

int store_port_list(struct store *s, const char *tunnel_id, int64_t offset, int64_t limit,
		    store_port_cb cb, void *arg, int64_t *total)
{
	struct store_port p;
	sqlite3_stmt *st;
	int rc, ret;

	ret = prep(s, "SELECT count(*) FROM ports WHERE ?1 IS NULL OR tunnel_id = ?1", &st);
	if (ret)
		return ret;
	if (tunnel_id)
		bind_text(st, 1, tunnel_id);
	ret = query_int(s, st, total);
	sqlite3_finalize(st);
	if (ret)
		return ret;
	ret = prep(s,
		   "SELECT port, tunnel_id, rule, created_at FROM ports"
		   " WHERE ?1 IS NULL OR tunnel_id = ?1 ORDER BY port LIMIT ?2 OFFSET ?3",
		   &st);
	if (ret)
		return ret;
	if (tunnel_id)
		bind_text(st, 1, tunnel_id);
	sqlite3_bind_int64(st, 2, limit);
	sqlite3_bind_int64(st, 3, offset);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		port_row(st, &p);
		ret = cb(&p, arg);
		if (ret)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = db_fail(s, "port list");
out:
	sqlite3_finalize(st);
	return ret;
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

#define DOM_COLS "domain, tunnel_id, rule, created_at"

static void domain_row(sqlite3_stmt *st, struct store_domain *d)
{
	memset(d, 0, sizeof(*d));
	col_text(st, 0, d->domain, sizeof(d->domain));
	col_text(st, 1, d->tunnel_id, sizeof(d->tunnel_id));
	col_text(st, 2, d->rule, sizeof(d->rule));
	d->created_at = col_int(st, 3);
}

/* The row of a (normalised) domain: 1 found, 0 not, or -EIO. */
static int domain_find(struct store *s, const char *domain, struct store_domain *out)
{
	sqlite3_stmt *st;
	int rc, ret;

	ret = prep(s, "SELECT " DOM_COLS " FROM domains WHERE domain = ?1", &st);
	if (ret)
		return ret;
	bind_text(st, 1, domain);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		domain_row(st, out);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		ret = db_fail(s, "domain lookup");
	}
	sqlite3_finalize(st);
	return ret;
}

static int domain_claim_tx(struct store *s, const char *tunnel_id, const char *domain,
			   const char *rule, struct store_domain *out, bool *created, char *err,
			   size_t errlen)
{
	sqlite3_stmt *st;
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
		ret = prep(s, "UPDATE domains SET rule = ?2 WHERE domain = ?1", &st);
		if (ret)
			return ret;
		bind_text(st, 1, domain);
		bind_text(st, 2, rule);
		ret = step_done(s, st);
		sqlite3_finalize(st);
		if (!ret)
			str_copy(out->rule, sizeof(out->rule), rule);
		return ret;
	}
	ret = prep(s, "SELECT count(*) FROM domains WHERE tunnel_id = ?1", &st);
	if (ret)
		return ret;
	bind_text(st, 1, tunnel_id);
	ret = query_int(s, st, &n);
	sqlite3_finalize(st);
	if (ret)
		return ret;
	if (n >= LINK_RULES_MAX) {
		set_err(err, errlen, "tunnel %s already holds %d domains, the most it can",
			tunnel_id, LINK_RULES_MAX);
		return -EDQUOT;
	}
	ret = prep(s,
		   "INSERT INTO domains (domain, tunnel_id, rule, created_at) VALUES (?1, ?2, ?3,"
		   " ?4)",
		   &st);
	if (ret)
		return ret;
	memset(out, 0, sizeof(*out));
	str_copy(out->domain, sizeof(out->domain), domain);
	str_copy(out->tunnel_id, sizeof(out->tunnel_id), tunnel_id);
	str_copy(out->rule, sizeof(out->rule), nz(rule));
	out->created_at = store_now();
	bind_text(st, 1, out->domain);
	bind_text(st, 2, out->tunnel_id);
	bind_text(st, 3, out->rule);
	sqlite3_bind_int64(st, 4, out->created_at);
	ret = step_done(s, st);
	sqlite3_finalize(st);
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
	ret = tx_begin(s);
	if (ret) {
		set_err(err, errlen, "internal error");
		return ret;
	}
	ret = domain_claim_tx(s, tunnel_id, d, rule, out, created, err, errlen);
	if (ret == -EIO)
		set_err(err, errlen, "internal error");
	ret = tx_end(s, ret);
	if (ret)
		*created = false;
	return ret;
}

int store_domain_release(struct store *s, const char *domain, const char *tunnel_id,
			 struct store_domain *out, char *err, size_t errlen)
{
	struct store_domain row;
	char d[DOMAIN_MAX + 1];
	sqlite3_stmt *st;
	int ret;

	if (!store_domain_check(domain, strlen(domain), d, err, errlen))
		return -EINVAL;
	ret = domain_find(s, d, &row);
	if (ret < 0) {
		set_err(err, errlen, "internal error");
		return ret;
	}
	if (ret == 0) {
		set_err(err, errlen, "domain %s is not held", d);
		return -ENOENT;
	}
	if (tunnel_id && strcmp(tunnel_id, row.tunnel_id) != 0) {
		set_err(err, errlen, "domain %s is not held by tunnel %s", d, tunnel_id);
		return -ENOENT;
	}
	ret = prep(s, "DELETE FROM domains WHERE domain = ?1", &st);
	if (!ret) {
		bind_text(st, 1, d);
		ret = step_done(s, st);
		sqlite3_finalize(st);
	}
	if (ret) {
		set_err(err, errlen, "internal error");
		return ret;
	}
	if (out)
		*out = row;
	return 0;
}

/*
 * Inside the caller's transaction: deletes the tunnel's domains, all of them
 * (keep NULL) or those with a rule name not in keep[0..nkeep); each deleted
 * row goes to cb first.
 */
static int domains_release_tunnel(struct store *s, const char *tunnel_id, const char *const *keep,
				  size_t nkeep, store_domain_cb cb, void *arg)
{
	struct store_domain *rel = NULL, d;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st;
	int rc, ret;

	ret = prep(s, "SELECT " DOM_COLS " FROM domains WHERE tunnel_id = ?1 ORDER BY domain", &st);
	if (ret)
		return ret;
	bind_text(st, 1, tunnel_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		domain_row(st, &d);
		if (keep && (!d.rule[0] || name_in(d.rule, keep, nkeep)))
			continue;
		if (n == cap) {
			struct store_domain *r =
			    realloc(rel, (cap = cap ? 2 * cap : 8) * sizeof(*r));

			if (!r) {
				ret = -ENOMEM;
				break;
			}
			rel = r;
		}
		rel[n++] = d;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(s, "domain release");
	sqlite3_finalize(st);
	if (!ret && n)
		ret = prep(s, "DELETE FROM domains WHERE domain = ?1", &st);
	for (size_t i = 0; !ret && i < n; i++) {
		sqlite3_reset(st);
		bind_text(st, 1, rel[i].domain);
		ret = step_done(s, st);
		if (!ret && cb)
			ret = cb(&rel[i], arg);
	}
	if (n)
		sqlite3_finalize(st);
	free(rel);
	return ret;
}

int store_domain_sync(struct store *s, const char *tunnel_id, const char *const *names, size_t n,
		      store_domain_cb released, void *arg)
{
	static const char *const none[1] = {""};
	int ret = tx_begin(s);

	if (ret)
		return ret;
	ret = domains_release_tunnel(s, tunnel_id, n ? names : none, n, released, arg);
	return tx_end(s, ret);
}

int store_domain_release_tunnel(struct store *s, const char *tunnel_id, store_domain_cb released,
				void *arg)
{
	int ret = tx_begin(s);

	if (ret)
		return ret;
	ret = domains_release_tunnel(s, tunnel_id, NULL, 0, released, arg);
	return tx_end(s, ret);
}

int store_domain_list(struct store *s, const char *tunnel_id, int64_t offset, int64_t limit,
		      store_domain_cb cb, void *arg, int64_t *total)
{
	struct store_domain d;
	sqlite3_stmt *st;
	int rc, ret;

	ret = prep(s, "SELECT count(*) FROM domains WHERE ?1 IS NULL OR tunnel_id = ?1", &st);
	if (ret)
		return ret;
	if (tunnel_id)
		bind_text(st, 1, tunnel_id);
	ret = query_int(s, st, total);
	sqlite3_finalize(st);
	if (ret)
		return ret;
	ret = prep(s,
		   "SELECT " DOM_COLS " FROM domains WHERE ?1 IS NULL OR tunnel_id = ?1"
		   " ORDER BY domain LIMIT ?2 OFFSET ?3",
		   &st);
	if (ret)
		return ret;
	if (tunnel_id)
		bind_text(st, 1, tunnel_id);
	sqlite3_bind_int64(st, 2, limit);
	sqlite3_bind_int64(st, 3, offset);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		domain_row(st, &d);
		ret = cb(&d, arg);
		if (ret)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = db_fail(s, "domain list");
out:
	sqlite3_finalize(st);
	return ret;
}

/* --- firewall --- */

const char *store_fw_kind_name(int kind)
{
	switch (kind) {
	case STORE_FW_DENY:
		return "deny";
	case STORE_FW_ALLOW:
		return "allow";
	default:
		return NULL;
	}
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
	sqlite3_stmt *st;
	int rc, ret;

	ret = prep(s, "SELECT created_at FROM firewall WHERE kind = ?1 AND cidr = ?2", &st);
	if (ret)
		return ret;
	sqlite3_bind_text(st, 1, store_fw_kind_name(r->kind), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r->cidr, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		r->created_at = col_int(st, 0);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		ret = db_fail(s, "firewall lookup");
	}
	sqlite3_finalize(st);
	return ret;
}

static int fw_count(struct store *s, int kind, int64_t *n)
{
	sqlite3_stmt *st;
	int ret;

	ret = prep(s, "SELECT count(*) FROM firewall WHERE kind = ?1", &st);
	if (ret)
		return ret;
	sqlite3_bind_text(st, 1, store_fw_kind_name(kind), -1, SQLITE_STATIC);
	ret = query_int(s, st, n);
	sqlite3_finalize(st);
	return ret;
}

static int fw_add_tx(struct store *s, struct store_fw_rule *r, char *err, size_t errlen)
{
	const char *list = store_fw_kind_name(r->kind);
	struct store_fw_rule old = *r;
	sqlite3_stmt *st;
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
	ret = prep(s, "INSERT INTO firewall (kind, cidr, created_at) VALUES (?1, ?2, ?3)", &st);
	if (ret)
		return ret;
	sqlite3_bind_text(st, 1, list, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r->cidr, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, r->created_at);
	ret = step_done(s, st);
	sqlite3_finalize(st);
	return ret;
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
	ret = tx_begin(s);
	if (ret) {
		set_err(err, errlen, "internal error");
		return ret;
	}
	ret = fw_add_tx(s, &r, err, errlen);
	if (ret == -EIO)
		set_err(err, errlen, "internal error");
	ret = tx_end(s, ret);
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
	struct store_fw_rule r;
	sqlite3_stmt *st;
	int rc, ret;

	if (!store_fw_kind_name(kind))
		return -EINVAL;
	if (total) {
		ret = fw_count(s, kind, total);
		if (ret)
			return ret;
	}
	ret = prep(s, "SELECT cidr, created_at FROM firewall WHERE kind = ?1 ORDER BY id", &st);
	if (ret)
		return ret;
	sqlite3_bind_text(st, 1, store_fw_kind_name(kind), -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&r, 0, sizeof(r));
		r.kind = kind;
		col_text(st, 0, r.cidr, sizeof(r.cidr));
		r.created_at = col_int(st, 1);
		ret = cb(&r, arg);
		if (ret)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = db_fail(s, "firewall list");
out:
	sqlite3_finalize(st);
	return ret;
}

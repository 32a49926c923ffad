/* SPDX-License-Identifier: Apache-2.0 */
/*
 * controld's state store over SQLite (state_dir/nave.db, WAL): registration
 * tokens, auth tokens (SHA-256 of the secret only), tunnels, TCP port
 * allocations, domain claims of HTTP rules, the firewall's deny and
 * allow lists, and the remote admin API's users, sessions and API keys
 * (hashes of their secrets only), with versioned
 * migrations and a backup copy before migrating.
 * Single-threaded by design: controld's one event loop is the only user, so
 * there are no locks. Functions return 0 or -errno; the ones that can refuse
 * a request also write a one-line reason meant for the peer into err. Text
 * longer than STORE_STR_LEN - 1 bytes is cut at a UTF-8 character boundary,
 * so valid UTF-8 in reads back valid (peer input is bounded here).
 */
#ifndef NAVE_STORE_H
#define NAVE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cidr.h"
#include "domain.h"
#include "mesh.h"
#include "restrict.h"

struct store;

#define STORE_ID_LEN	    9	/* 8 hex + NUL: registration and token ids */
#define STORE_TUNNEL_ID_LEN 15	/* "t-" + 12 hex + NUL */
#define STORE_SECRET_LEN    64	/* "nvr_<8>_<48>" / "nvt_<8>_<48>" + NUL fits */
#define STORE_STR_LEN	    256 /* free text fields (description, hostname, ...) */
#define STORE_RULE_LEN	    64
#define STORE_SEARCH_MAX    200 /* bytes of a tunnel search (its LIKE pattern: 2 * this + 2) */

/* The schema version this build migrates to. */
#define STORE_SCHEMA_VERSION 13

enum store_state { STORE_OFFLINE = 0, STORE_ONLINE = 1 };

struct store_registration {
	char id[STORE_ID_LEN];
	char description[STORE_STR_LEN];
	int64_t max_uses; /* 0 = unlimited */
	int64_t uses;
	int64_t expires_at; /* 0 = never */
	bool enabled;
	int64_t created_at;
	struct restrict_set rs; /* what the tokens it mints inherit */
};

struct store_token {
	char id[STORE_ID_LEN];
	char tunnel_id[STORE_TUNNEL_ID_LEN];
	char description[STORE_STR_LEN];
	int64_t created_at;
	bool revoked;
	int64_t last_used; /* 0 = never */
	struct restrict_set rs;
};

/* What a client says about itself (auth, tunnel_online); empty = unknown. */
struct store_client_info {
	const char *hostname;
	const char *os;
	const char *arch;
	const char *client_version;
};

struct store_tunnel {
	char id[STORE_TUNNEL_ID_LEN];
	char group_id[STORE_STR_LEN];
	char hostname[STORE_STR_LEN];
	char os[STORE_STR_LEN];
	char arch[STORE_STR_LEN];
	char client_version[STORE_STR_LEN];
	int state;	   /* enum store_state */
	int64_t last_seen; /* 0 = never */
	int64_t created_at;
	char token_id[STORE_ID_LEN];
	/* how its last session logged in: "token ID" or "certificate NAME serial HEX" */
	char identity[STORE_STR_LEN];
};

struct store_port {
	uint16_t port;
	char tunnel_id[STORE_TUNNEL_ID_LEN];
	char rule[STORE_RULE_LEN]; /* empty: none */
	char transport[4];	   /* "tcp" or "udp" (STORE_TRANSPORT_*) */
	int64_t created_at;
};
/* a port number belongs to one tunnel under one transport (ports.transport) */
#define STORE_TRANSPORT_TCP "tcp"
#define STORE_TRANSPORT_UDP "udp"
/* "tcp" or "udp": true (the transports a port can be allocated under) */
bool store_transport_valid(const char *transport);

/* A domain claimed by a tunnel for an HTTP rule (common/domain.h, normalised). */
struct store_domain {
	char domain[DOMAIN_MAX + 1];
	char tunnel_id[STORE_TUNNEL_ID_LEN];
	char rule[STORE_RULE_LEN]; /* empty: none */
	int64_t created_at;
};

/*
 * The record of one relayed connection (relayd's conn_records, ctl/records.h checks
 * it): kept newest first, pruned by [records] keep and max_rows.
 */
/*
 * mesh: a stream a client opened (relayd's ER_MESH); its domain is "from:ID" or the name.
 * udp: a UDP flow (one public source on one public UDP port), resolved like tcp by its port.
 */
enum store_rec_kind {
	STORE_REC_TCP = 0,
	STORE_REC_HTTP = 1,
	STORE_REC_HTTPS = 2,
	STORE_REC_MESH = 3,
	STORE_REC_UDP = 4,
};
enum store_rec_reason {
	STORE_REC_DONE = 0,
	STORE_REC_RESET,
	STORE_REC_IDLE_TIMEOUT,
	STORE_REC_PENDING_TIMEOUT,
	STORE_REC_REFUSED,
	STORE_REC_ERROR,
	STORE_REC_SHUTDOWN,
	STORE_REC_IDLE, /* a UDP flow that expired ([udp] idle_timeout): udp records only */
	STORE_REC_REASONS
};
/* their names, as stored and in the API (ctl_proto.h's conn_records); NULL ends each */
static const char *const store_rec_kind_names[] = {"tcp", "http", "https", "mesh", "udp", NULL};
static const char *const store_rec_reason_names[] = {
    "done", "reset", "idle_timeout", "pending_timeout", "refused", "error", "shutdown",
    "idle", NULL};
#define STORE_ADDR_LEN 46 /* INET6_ADDRSTRLEN */
struct store_conn_record {
	int64_t id;
	char tunnel_id[STORE_TUNNEL_ID_LEN];
	char rule[STORE_RULE_LEN];   /* resolved when stored; "": no rule held it */
	int kind;		     /* enum store_rec_kind */
	uint16_t port;		     /* the public port (HTTP(S): the edge's listener port) */
	char domain[DOMAIN_MAX + 1]; /* HTTP(S): the host; "" for TCP */
	char src[STORE_ADDR_LEN];
	uint16_t src_port;
	int64_t start;	  /* Unix seconds */
	int64_t start_ms; /* Unix milliseconds */
	int64_t duration_ms;
	int64_t ended;	   /* Unix seconds: (start_ms + duration_ms) / 1000 */
	int64_t bytes_in;  /* public -> tunnel */
	int64_t bytes_out; /* tunnel -> public */
	int reason;	   /* enum store_rec_reason */
};
/* A rule's traffic since it was first recorded (every record adds to it). */
struct store_rule_traffic {
	char tunnel_id[STORE_TUNNEL_ID_LEN];
	char rule[STORE_RULE_LEN];
	int64_t bytes_in, bytes_out, conns;
};
enum store_fw_kind { STORE_FW_DENY = 0, STORE_FW_ALLOW = 1 };

/* One block of a firewall list. */
struct store_fw_rule {
	int kind;		 /* enum store_fw_kind */
	char cidr[CIDR_STR_MAX]; /* the canonical text (cidr_format) */
	int64_t created_at;
};

/* An admin user of the remote admin API (ctl/API.md, "Authentication"). */
#define STORE_USER_LEN		33  /* name: 1-32 of [a-z0-9._-] + NUL */
#define STORE_PWHASH_LEN	128 /* common/passwd.h's text form (PASSWD_STR_MAX) */
#define STORE_TOTP_LEN		64  /* base32 of the TOTP secret (ctl/totp.h) */
#define STORE_HEX_LEN		65  /* 64 hex digits + NUL: SHA-256 of a secret, a CSRF token */
#define STORE_APIKEY_LEN	80  /* "nvk_<8 hex>_<64 hex>" + NUL */
#define STORE_USERS_MAX		1000
#define STORE_APIKEYS_MAX	1000 /* not revoked */
#define STORE_SESSIONS_PER_USER 16

struct store_user {
	char name[STORE_USER_LEN];
	char hash[STORE_PWHASH_LEN];	  /* scrypt, never in an answer */
	char totp_secret[STORE_TOTP_LEN]; /* base32; empty: two-factor off; never in an answer */
	bool two_factor;
	int64_t totp_step; /* the last TOTP step accepted (replays refused) */
	int64_t created_at;
	int64_t last_login;   /* 0 = never */
	int64_t failed;	      /* consecutive failed logins */
	int64_t locked_until; /* 0 = not locked */
};

/* A login session: only the SHA-256 of its id is stored. */
struct store_session {
	char id_hash[STORE_HEX_LEN];
	char user[STORE_USER_LEN];
	char csrf[STORE_HEX_LEN];
	int64_t created_at;
	int64_t expires_at; /* absolute: created_at + [admin] session_lifetime */
	int64_t last_used;
	char source[64]; /* the address it logged in from */
};

struct store_apikey {
	char id[STORE_ID_LEN];
	char hash[STORE_HEX_LEN]; /* SHA-256 of the secret part, never in an answer */
	char description[STORE_STR_LEN];
	int64_t created_at;
	int64_t expires_at; /* 0 = never */
	int64_t last_used;  /* 0 = never */
	bool revoked;
};

/*
 * Opens (creating if needed) the database at path and migrates it to
 * STORE_SCHEMA_VERSION; when an existing database at version >= 1 is
 * migrated, a copy is first written to "<path>.bak-v<OLD>". The port range
 * and per-tunnel limit come from the config. 0 or -errno with err set.
 */
int store_open(struct store **out, const char *path, uint16_t port_min, uint16_t port_max,
	       unsigned max_per_tunnel, char *err, size_t errlen);
/* Closes the database; NULL is fine. */
void store_close(struct store *s);
/* A reload's [ports] range and max_per_tunnel: allocations from now on use them. */
void store_set_limits(struct store *s, uint16_t port_min, uint16_t port_max,
		      unsigned max_per_tunnel);
/* The lowest allocated port outside lo..hi into out: 1, 0 when none, or -EIO. */
int store_port_outside(struct store *s, uint16_t lo, uint16_t hi, struct store_port *out);
/* The schema version of the open database. */
int store_schema_version(struct store *s);
/*
 * For tests only: the store's SQLite connection (tests/unit/test_store.c
 * traces the statements the store runs and checks their query plans).
 */
struct sqlite3 *store_sqlite(struct store *s);
/*
 * An online, consistent copy of the database (SQLite's backup API, in one
 * step of controld's loop) as dir/nave-YYYYmmddTHHMMSS.uuuuuuZ-00.db, mode 0640,
 * written under a temporary name and renamed; dir is made if missing (0750).
 * Then only the newest keep backups of dir stay (0: all). The path goes to
 * out, the size to *bytes. 0 or -errno with err.
 */
int store_backup(struct store *s, const char *dir, unsigned keep, char *out, size_t outlen,
		 int64_t *bytes, char *err, size_t errlen);

/*
 * The row mapping of an entity (registrations, tokens, ...): one table of
 * columns that says where each column of the SELECT goes in the record
 * struct and how the admin API writes it (ctl/api.c's row writer), so that
 * reading a row, getting one, listing a page and answering with JSON are
 * each written once. A new entity is its record struct, its column table and
 * a struct store_entity in store.c, and thin typed wrappers here.
 */
enum store_ctype {
	STORE_C_TEXT, /* char[size], cut at a UTF-8 character boundary; NULL reads "" */
	STORE_C_I64,  /* int64_t; NULL reads 0 ("unset") */
	STORE_C_BOOL, /* bool: the integer is not 0 */
	STORE_C_U16,  /* uint16_t */
	STORE_C_ENUM, /* int: the index of the text in names, 0 when none matches */
};

enum store_jtype {
	STORE_J_NONE,	  /* not in the API's answers */
	STORE_J_STR,	  /* a string; text that is not UTF-8 fails the whole object */
	STORE_J_TEXT,	  /* a string; text that is not UTF-8 is written "" */
	STORE_J_STR_NULL, /* STORE_J_STR, null when empty */
	STORE_J_INT,
	STORE_J_TIME, /* Unix seconds, null when 0 (unset) */
	STORE_J_BOOL,
	STORE_J_ENUM, /* names[value] */
	STORE_J_LIST, /* STORE_C_TEXT of comma-separated items: an array of strings, null when empty
		       */
};

/* store_col.flags: in which of the API's forms of a record a member is */
#define STORE_J_BRIEF  0x1 /* also in the brief form (a tunnel's list of its rules) */
#define STORE_J_STORED 0x2 /* not in the answer that shows a new secret once */

struct store_col {
	const char *sql; /* the column (or expression) in the SELECT */
	enum store_ctype ctype;
	size_t off, size;	  /* where it goes in the record struct */
	const char *const *names; /* STORE_C_ENUM: the text of each value */
	const char *json;	  /* the member's name in the API's answers */
	enum store_jtype jtype;
	unsigned flags; /* STORE_J_* */
};

/* How an entity is queried: its table, key, filter and order (store.c). */
struct store_query;

struct store_entity {
	const char *name; /* "registration", in log lines */
	size_t size;	  /* of the record struct */
	const struct store_col *cols;
	size_t ncols;
	const struct store_query *q;
};

extern const struct store_entity store_registrations, store_tokens, store_tunnels, store_ports,
    store_domains, store_fw_rules, store_users, store_sessions, store_apikeys, store_conn_records,
    store_rule_traffics;

/* What a list keeps; each entity looks at its own members only. */
struct store_filter {
	const char *tunnel_id; /* ports, domains: the tunnel's rows; NULL = all */
	bool online_only;      /* tunnels */
	const char *search;    /* tunnels: a substring of id, group id or hostname; NULL = all */
	int kind;	       /* firewall: enum store_fw_kind (required: f NULL is -EINVAL) */
	const char *rule;      /* connection records: the rule's; NULL = all */
	int64_t since;	       /* connection records: ended at or after (Unix s); 0 = all */
};

/* A column's value as an integer (STORE_C_I64, _BOOL, _U16, _ENUM) in row. */
int64_t store_col_int(const struct store_col *c, const void *row);
/* A STORE_C_ENUM column's text in row; NULL when out of range. */
const char *store_col_name(const struct store_col *c, const void *row);

/*
 * Pagination for the list functions: items offset..offset+limit-1 (limit -1:
 * all) in a stable order go to cb (a nonzero return stops the walk and is
 * returned); *total receives the number of matching rows.
 */
typedef int (*store_row_cb)(const void *row, void *arg);
/*
 * The rows of an entity that f keeps (NULL: all), in its order, as records
 * of e->size bytes; total may be NULL. -EINVAL when f does not make sense
 * for e (an unknown firewall list, a search too long) or is missing where
 * e needs one (the firewall: f->kind names the list; NULL is no list).
 */
int store_list(struct store *s, const struct store_entity *e, const struct store_filter *f,
	       int64_t offset, int64_t limit, store_row_cb cb, void *arg, int64_t *total);
/* The row of e whose key is key into out (e->size bytes): 0, -ENOENT, -EIO, or -EINVAL (no key). */
int store_get(struct store *s, const struct store_entity *e, const char *key, void *out);

typedef int (*store_reg_cb)(const struct store_registration *r, void *arg);
typedef int (*store_token_cb)(const struct store_token *t, void *arg);
typedef int (*store_tunnel_cb)(const struct store_tunnel *t, void *arg);
typedef int (*store_port_cb)(const struct store_port *p, void *arg);
typedef int (*store_domain_cb)(const struct store_domain *d, void *arg);
typedef int (*store_fw_cb)(const struct store_fw_rule *r, void *arg);

/* --- registrations --- */
/* New registration token; the secret goes to token (shown once, never stored). */
int store_registration_create(struct store *s, const char *description, int64_t max_uses,
			      int64_t expires_in, struct store_registration *out,
			      char token[STORE_SECRET_LEN]);
/* The same with restrictions (restrict.h, canonical text; NULL = none), which the tokens it
 * mints inherit. */
int store_registration_create_rs(struct store *s, const char *description, int64_t max_uses,
				 int64_t expires_in, const struct restrict_set *rs,
				 struct store_registration *out, char token[STORE_SECRET_LEN]);
/* -ENOENT when unknown. */
int store_registration_get(struct store *s, const char *id, struct store_registration *out);
int store_registration_set_enabled(struct store *s, const char *id, bool enabled,
				   struct store_registration *out);
int store_registration_list(struct store *s, int64_t offset, int64_t limit, store_reg_cb cb,
			    void *arg, int64_t *total);

/* --- auth tokens --- */
/*
 * New auth token and its tunnel (group_id from group, else the tunnel id).
 * The secret goes to token. 0 or -errno.
 */
int store_token_create(struct store *s, const char *group, const char *description,
		       struct store_token *out, char token[STORE_SECRET_LEN]);
/* The same with restrictions (restrict.h, canonical text; NULL = none). */
int store_token_create_rs(struct store *s, const char *group, const char *description,
			  const struct restrict_set *rs, struct store_token *out,
			  char token[STORE_SECRET_LEN]);
/*
 * The restrictions of the token a tunnel connects with (its tunnels.token_id)
 * into out ("" each when none). -ENOENT for an unknown tunnel or one without
 * a token.
 */
int store_tunnel_restrictions(struct store *s, const char *tunnel_id, struct restrict_set *out);
int store_token_get(struct store *s, const char *id, struct store_token *out);
/*
 * Marks the token revoked; *changed tells whether it was not revoked before.
 * A tunnel that can no longer connect holds no ports and no domains: every
 * port and domain of the token's tunnel is released (again on a repeated
 * revoke), each passed to released or released_domain (either may be NULL)
 * first, both with arg.
 */
int store_token_revoke(struct store *s, const char *id, struct store_token *out, bool *changed,
		       store_port_cb released, store_domain_cb released_domain, void *arg);
/*
 * Revokes the token of a tunnel (its client's own deauth) and releases the
 * tunnel's ports and domains like store_token_revoke. -ENOENT when the
 * tunnel is unknown.
 */
int store_tunnel_revoke(struct store *s, const char *tunnel_id, store_port_cb released,
			store_domain_cb released_domain, void *arg);
int store_token_list(struct store *s, int64_t offset, int64_t limit, store_token_cb cb, void *arg,
		     int64_t *total);

/*
 * Auth with a registration token: on success (0) a new tunnel (group_id =
 * group, else the hostname, else the tunnel id) and an auth token bound to it
 * are created, the registration's use count goes up, tunnel_id and token are
 * filled; the new token inherits the registration's restrictions.
 * -EACCES with reason in err when refused; other -errno on failure.
 */
int store_auth_registration(struct store *s, const char *registration, const char *group,
			    const struct store_client_info *info,
			    char tunnel_id[STORE_TUNNEL_ID_LEN], char token[STORE_SECRET_LEN],
			    char *err, size_t errlen);
/*
 * A check of the restrictions of the token or registration a client presents
 * (relaylink.c: its source address and tunnel name): 0, or nonzero with a
 * one-line reason in err, which refuses the auth (-EACCES) before anything is
 * created, counted or updated.
 */
/*
 * stored: for an auth token, the name of its tunnel as stored when the tunnel was
 * created (its group id), which the client cannot change; NULL for a registration
 * (the name is the one the client asks for, the tunnel's name from then on).
 */
typedef int (*store_restrict_check)(const struct restrict_set *rs, const char *stored, void *arg,
				    char *err, size_t errlen);
/* store_auth_registration with check (NULL: none) */
int store_auth_registration_rs(struct store *s, const char *registration, const char *group,
			       const struct store_client_info *info, store_restrict_check check,
			       void *check_arg, char tunnel_id[STORE_TUNNEL_ID_LEN],
			       char token[STORE_SECRET_LEN], char *err, size_t errlen);
/*
 * Auth with an auth token: 0 and tunnel_id filled, or -EACCES with a reason.
 * With update (mode "run") the tunnel's client info and the token's last_used
 * are updated.
 */
int store_auth_token(struct store *s, const char *token, bool update,
		     const struct store_client_info *info, char tunnel_id[STORE_TUNNEL_ID_LEN],
		     char *err, size_t errlen);
/* store_auth_token with check (NULL: none) */
int store_auth_token_rs(struct store *s, const char *token, bool update,
			const struct store_client_info *info, store_restrict_check check,
			void *check_arg, char tunnel_id[STORE_TUNNEL_ID_LEN], char *err,
			size_t errlen);

/* --- tunnels --- */
int store_tunnel_get(struct store *s, const char *id, struct store_tunnel *out);
/*
 * online_only and search (substring of id, group id or hostname, at most
 * STORE_SEARCH_MAX bytes, else -EINVAL; NULL = all).
 */
int store_tunnel_list(struct store *s, bool online_only, const char *search, int64_t offset,
		      int64_t limit, store_tunnel_cb cb, void *arg, int64_t *total);
/*
 * A certificate login (relayd checked the chain): the tunnel is the one named
 * like the certificate, made (group id the same name) when it is new. With
 * update (mode "run") its client info is updated. 0, or -errno with err.
 */
int store_auth_cert(struct store *s, const char *name, bool update,
		    const struct store_client_info *info, char *err, size_t errlen);
/* Records how a tunnel's session logged in (struct store_tunnel identity). */
int store_tunnel_set_identity(struct store *s, const char *id, const char *identity);
/* Sets the state (and last_seen when online); info may be NULL. -ENOENT when unknown. */
int store_tunnel_set_state(struct store *s, const char *id, int state,
			   const struct store_client_info *info);
/* Marks every tunnel offline (relayd gone, or start-up). */
int store_tunnel_all_offline(struct store *s);
/* Refreshes last_seen of an online tunnel. */
int store_tunnel_touch(struct store *s, const char *id);
int store_tunnel_counts(struct store *s, int64_t *total, int64_t *online);

/* --- ports --- */
/*
 * Allocates a port to a tunnel under transport ("tcp" or "udp"; NULL = "tcp") with
 * the rules of ctl_proto.h port_request: port 0 = the port already held under the
 * non-empty rule name and the same transport, else the lowest free one (one
 * namespace: a number held under either transport is not free). rule may be
 * NULL/empty. On 0, *out is the port and *created tells whether it is a new
 * allocation. Refusals set err and return -ENOENT (unknown tunnel), -ERANGE
 * (outside the range), -EADDRINUSE (taken by another tunnel, or held by this one
 * under the other transport: "port P is a tcp port of this tunnel"), -EACCES (the
 * tunnel's token is revoked), -EDQUOT (max_per_tunnel reached, both transports
 * counted), -ENOSPC (no free port), -EINVAL (rule name of STORE_RULE_LEN or more
 * bytes, "bad transport"). max_per_tunnel 0 = no limit.
 */
int store_port_alloc(struct store *s, const char *tunnel_id, unsigned port, const char *rule,
		     const char *transport, struct store_port *out, bool *created, char *err,
		     size_t errlen);
/*
 * store_port_alloc inside lo..hi (a token's port range, restrict.h; a
 * subset of the range): port 0 takes the port held under the rule name
 * inside lo..hi, else the lowest free one there ("no free port in LO-HI").
 * lo = hi = 0 is the whole range.
 */
int store_port_alloc_in(struct store *s, const char *tunnel_id, unsigned port, const char *rule,
			const char *transport, unsigned lo, unsigned hi, struct store_port *out,
			bool *created, char *err, size_t errlen);
/*
 * Releases a port; with tunnel_id set only if that tunnel holds it. -ENOENT
 * with err when not allocated (to it). On 0, *out (if given) is the old row.
 */
int store_port_release(struct store *s, unsigned port, const char *tunnel_id,
		       struct store_port *out, char *err, size_t errlen);
/*
 * A connecting client's rule list: releases the tunnel's ports whose rule
 * name is set and not one of names[0..n) (ports without a rule name, which
 * an administrator reserved, stay), each passed to released first.
 */
int store_port_sync(struct store *s, const char *tunnel_id, const char *const *names, size_t n,
		    store_port_cb released, void *arg);
/* Ports in port order; tunnel_id NULL = all. */
int store_port_list(struct store *s, const char *tunnel_id, int64_t offset, int64_t limit,
		    store_port_cb cb, void *arg, int64_t *total);
int store_port_count(struct store *s, int64_t *count);

/* --- domains --- */
/*
 * Checks the n bytes at d as a domain claim (a name or "*.NAME", domain.h):
 * true with the normalised (lowercase) form in out, or false with a
 * one-line reason in why naming what is wrong (the domain escaped and cut
 * in it, so the reason is printable UTF-8 whatever d holds).
 */
bool store_domain_check(const char *d, size_t n, char out[DOMAIN_MAX + 1], char *why,
			size_t whylen);
/*
 * True when the normalised claim domain is allowed by patterns, a list value
 * of [http] allowed_domains (cfg_list_next; empty: everything): a name is
 * allowed by a pattern that matches it or equals it; a wildcard "*.S" by a
 * pattern "*.S", or by a wildcard "*.T" where S is T or ends in ".T" (the
 * pattern matches every name under S).
 */
bool store_domain_allowed(const char *patterns, const char *domain);
/*
 * Claims a domain (store_domain_check's rules; stored normalised) for a
 * tunnel's rule. A claim by the tunnel that holds it already succeeds and
 * takes the new rule name (*created false). Refusals set err and return
 * -EINVAL (not a domain, or a rule name of STORE_RULE_LEN or more bytes),
 * -ENOENT (unknown tunnel), -EACCES (the tunnel's token is revoked),
 * -EADDRINUSE ("domain D is held by tunnel ID"), -EDQUOT (the tunnel holds
 * LINK_RULES_MAX domains). On 0, *out is the row.
 */
int store_domain_claim(struct store *s, const char *tunnel_id, const char *domain, const char *rule,
		       struct store_domain *out, bool *created, char *err, size_t errlen);
/*
 * Releases a domain (any case of it); with tunnel_id set only if that
 * tunnel holds it. -EINVAL (not a domain) or -ENOENT ("domain D is not
 * held", "... by tunnel ID") with err. On 0, *out (if given) is the old row.
 */
int store_domain_release(struct store *s, const char *domain, const char *tunnel_id,
			 struct store_domain *out, char *err, size_t errlen);
/*
 * A connecting client's rule list: releases the tunnel's domains whose rule
 * name is set and not one of names[0..n), each passed to released first.
 */
int store_domain_sync(struct store *s, const char *tunnel_id, const char *const *names, size_t n,
		      store_domain_cb released, void *arg);
/* Releases every domain of the tunnel, each passed to released first. */
int store_domain_release_tunnel(struct store *s, const char *tunnel_id, store_domain_cb released,
				void *arg);
/* Domains in name order; tunnel_id NULL = all. */
int store_domain_list(struct store *s, const char *tunnel_id, int64_t offset, int64_t limit,
		      store_domain_cb cb, void *arg, int64_t *total);

/* --- firewall --- */
/* "deny" or "allow"; NULL for anything else. */
const char *store_fw_kind_name(int kind);
/*
 * Adds an address block (any text cidr_parse takes) to a list, stored in its
 * canonical form, which *out receives. Refusals set err: -EINVAL (not an
 * address block: cidr_parse's reason, or not a kind), -EEXIST (the list
 * holds it already), -EDQUOT (the list holds CIDR_LIST_MAX blocks). A block
 * may be in both lists (deny wins).
 */
int store_fw_add(struct store *s, int kind, const char *cidr, struct store_fw_rule *out, char *err,
		 size_t errlen);
/*
 * Removes a block given in any text of it; *out (if given) is the old row.
 * Refusals set err: -EINVAL as above, -ENOENT (not in the list).
 */
int store_fw_del(struct store *s, int kind, const char *cidr, struct store_fw_rule *out, char *err,
		 size_t errlen);
/* Every block of a list in the order they were added; *total (if given) their number. */
int store_fw_list(struct store *s, int kind, store_fw_cb cb, void *arg, int64_t *total);

/* --- the mesh access policy (common/mesh.h; navectl mesh, /api/v1/mesh) --- */
struct store_mesh_rule {
	int64_t id;	  /* never reused: relayd's counters and logs name it */
	int64_t position; /* the order (then id): the first match decides */
	int action;	  /* MESH_ALLOW or MESH_DENY */
	char from[MESH_FROM_MAX];
	char to[MESH_TO_MAX];	   /* canonical (mesh_to_norm) */
	unsigned port_lo, port_hi; /* 0-0: any port */
	char comment[MESH_COMMENT_MAX + 1];
	int64_t created; /* Unix s */
};
typedef int (*store_mesh_cb)(const struct store_mesh_rule *r, void *arg);
/*
 * A new rule from r's action, from, to (checked and made canonical here),
 * ports, comment and position (0: after the last; N: at position N, the rules
 * from N on move down one). *r receives id, position, created and the
 * canonical texts. Refusals set err: -EINVAL (naming the field), -EDQUOT
 * (MESH_RULES_MAX rules).
 */
int store_mesh_add(struct store *s, struct store_mesh_rule *r, char *err, size_t errlen);
/* Removes rule id; *out (if given) is the old row. -ENOENT with err. */
int store_mesh_del(struct store *s, int64_t id, struct store_mesh_rule *out, char *err,
		   size_t errlen);
/* Every rule in deciding order (position, then id); *total (if given) their number. */
int store_mesh_list(struct store *s, store_mesh_cb cb, void *arg, int64_t *total);

/* --- admin users, sessions and API keys (ctl/API.md, "Authentication") --- */
/* True for a user name: 1-32 of [a-z0-9._-], not starting with '.' or '-'. */
bool store_user_name_ok(const char *name);
/* A new user with a password hash (passwd.h): -EINVAL, -EEXIST, -EDQUOT (STORE_USERS_MAX). */
int store_user_add(struct store *s, const char *name, const char *hash, struct store_user *out);
int store_user_get(struct store *s, const char *name, struct store_user *out);
/* A new password hash; every session of the user ends. -ENOENT when unknown. */
int store_user_set_password(struct store *s, const char *name, const char *hash);
/* Clears a user's failed count and lock (navectl users unlock). -ENOENT when unknown. */
int store_user_unlock(struct store *s, const char *name);
/* Removes a user and its sessions. -ENOENT when unknown. */
int store_user_del(struct store *s, const char *name);
/* The TOTP secret (base32; NULL: two-factor off), the replay step reset. -ENOENT. */
int store_user_set_totp(struct store *s, const char *name, const char *secret);
/*
 * A login's outcome for a known user at now. ok: the failures are cleared,
 * last_login set and, when step > 0, the TOTP step recorded. Not ok: the
 * count goes up, and at max_failed the user is locked for lock_s seconds
 * (the count starts again); *locked (may be NULL) tells whether it was.
 */
int store_user_login(struct store *s, const char *name, bool ok, int64_t step, int64_t now,
		     unsigned max_failed, int64_t lock_s, bool *locked);

/*
 * A new session of user: id_hash (SHA-256 hex of its id), csrf and source
 * stored; at most STORE_SESSIONS_PER_USER per user (the oldest ones end).
 */
int store_session_add(struct store *s, const struct store_session *sess);
/* The session whose id hashes to id_hash: 0, -ENOENT. */
int store_session_get(struct store *s, const char *id_hash, struct store_session *out);
int store_session_touch(struct store *s, const char *id_hash, int64_t now);
int store_session_del(struct store *s, const char *id_hash);
/* Deletes the sessions past their absolute expiry or idle for idle_s seconds at now. */
int store_session_purge(struct store *s, int64_t now, int64_t idle_s);

/*
 * A new API key (expires_in seconds; 0: never); the key goes to key (shown
 * once, only its hash is stored). -EDQUOT past STORE_APIKEYS_MAX live keys.
 */
int store_apikey_create(struct store *s, const char *description, int64_t expires_in,
			struct store_apikey *out, char key[STORE_APIKEY_LEN]);
int store_apikey_revoke(struct store *s, const char *id, struct store_apikey *out);
/*
 * The key of an Authorization header: 0 with *out (last_used set to now),
 * or -EACCES (malformed, unknown, wrong secret, revoked, expired) with the
 * reason for the log in why.
 */
int store_apikey_auth(struct store *s, const char *key, int64_t now, struct store_apikey *out,
		      const char **why);

/* --- connection records --- */
/*
 * Stores n checked records in one transaction: each gets its rule (a TCP record the
 * rule of the tunnel's port, an HTTP(S) one the rule of the tunnel's domain claim that
 * covers its host, exact name first, then the most specific wildcard; "" when none)
 * and adds to its rule's traffic totals in the same transaction. 0 or -EIO (nothing
 * stored).
 */
int store_records_add(struct store *s, struct store_conn_record *recs, size_t n);
/*
 * One bounded step of retention: deletes at most chunk records ended before
 * older_than (Unix s) or beyond the newest max_rows. *deleted gets how many; a
 * full chunk means more may wait. 0 or -EIO.
 */
int store_records_prune(struct store *s, int64_t older_than, int64_t max_rows, int64_t chunk,
			int64_t *deleted);
/* The newest records f keeps (tunnel_id, rule, since), at most limit, newest first. */
int store_records_list(struct store *s, const struct store_filter *f, int64_t limit,
		       store_row_cb cb, void *arg);
/*
 * Traffic of the records of f->tunnel_id (and f->rule) ended since f->since, in
 * buckets of step seconds aligned to step: cb gets each non-empty bucket's start
 * (Unix s), bytes in, bytes out and connections, in time order.
 */
typedef int (*store_bucket_cb)(int64_t t, int64_t in, int64_t out, int64_t conns, void *arg);
int store_records_bandwidth(struct store *s, const struct store_filter *f, int64_t step,
			    store_bucket_cb cb, void *arg);

/* --- support sessions (schema v13; ctl/support.h has the protocol side) --- */
#define STORE_SUP_ID_LEN       15  /* "sup-" + 10 of [a-z0-9] + NUL */
#define STORE_SUP_REASON_MAX   200 /* characters (printable UTF-8) */
#define STORE_SUP_REASON_LEN   (4 * STORE_SUP_REASON_MAX + 1)
#define STORE_SUP_SERVICES_MAX 8
#define STORE_SUP_SERVICE_MAX  31 /* bytes of a service name: [A-Za-z0-9_-] */
/* the services as stored: a JSON array of names ("["ssh","web"]") */
#define STORE_SUP_SERVICES_LEN (STORE_SUP_SERVICES_MAX * (STORE_SUP_SERVICE_MAX + 3) + 3)
#define STORE_SUP_ACTOR_LEN    96
#define STORE_SUP_ACTIVE_MAX   4	   /* pending or approved, unexpired, per tunnel */
#define STORE_SUP_EXPIRES_MAX  (7 * 86400) /* seconds */
#define STORE_SUP_DETAIL_LEN   2048  /* an audit record's detail (JSON text): a request fits */
#define STORE_SUP_AUDIT_MAX    10000 /* audit records per session; later ones are dropped */
/* refused connects stop being recorded here: room stays for the connections' records */
#define STORE_SUP_AUDIT_REFUSED_MAX 8000
#define STORE_SUP_HOUR_MAX	    20		 /* support requests one tunnel may make an hour */
#define STORE_SUP_KEEP_S	    (30 * 86400) /* an ended session is kept this long */

/* expired is computed when read: now >= expires_at and not ended */
enum store_sup_state {
	STORE_SUP_PENDING = 0,
	STORE_SUP_APPROVED,
	STORE_SUP_ENDED,
	STORE_SUP_EXPIRED,
	STORE_SUP_STATES
};
static const char *const store_sup_state_names[] = {"pending", "approved", "ended", "expired",
						    NULL};

struct store_support {
	char id[STORE_SUP_ID_LEN];
	char tunnel_id[STORE_TUNNEL_ID_LEN];
	char reason[STORE_SUP_REASON_LEN];
	char services[STORE_SUP_SERVICES_LEN]; /* JSON array of the names */
	char auth_hash[STORE_HEX_LEN];	/* SHA-256 of the auth key, hex; never in an answer */
	int64_t created_at, expires_at; /* Unix seconds */
	int state;			/* enum store_sup_state, as of the read */
	char approved_by[STORE_SUP_ACTOR_LEN]; /* "" when not approved */
	int64_t approved_at;		       /* 0: not approved */
	char ended_by[STORE_SUP_ACTOR_LEN];    /* "tunnel:T", an operator, "expiry"; "" */
	int64_t ended_at;		       /* 0: not over */
};

struct store_support_audit {
	char session[STORE_SUP_ID_LEN];
	int64_t at; /* Unix milliseconds */
	char event[16];
	char actor[STORE_SUP_ACTOR_LEN];
	char detail[STORE_SUP_DETAIL_LEN]; /* JSON text, or "" */
};

typedef int (*store_support_cb)(const struct store_support *r, void *arg);
typedef int (*store_support_audit_cb)(const struct store_support_audit *a, void *arg);

/* ^sup-[a-z0-9]{10}$ */
bool store_support_id_ok(const char *id);
/* 1..STORE_SUP_SERVICE_MAX of [A-Za-z0-9_-] */
bool store_support_service_ok(const char *name);
/* n bytes (no NUL among them) of printable UTF-8, at most STORE_SUP_REASON_MAX characters */
bool store_support_reason_ok(const char *reason, size_t n);
/* 64 hex digits (either case) */
bool store_support_hex64_ok(const char *s);
/* The enum store_sup_state of a name ("pending", ...), or -1. */
int store_support_state_of(const char *name);

/*
 * A new pending support session of tunnel_id for expires_s seconds (1..STORE_SUP_EXPIRES_MAX)
 * from now_ms (Unix ms), with services (1..STORE_SUP_SERVICES_MAX distinct names), reason
 * and auth_hash (64 hex digits, stored lower case); its audit record "requested" (actor
 * "tunnel:T", detail: JSON text) in the same transaction. Refused with a one-line err:
 * -ENOENT (no such tunnel), -EINVAL (a bad value), -EDQUOT (the tunnel holds
 * STORE_SUP_ACTIVE_MAX pending or approved sessions that have not expired); -EIO.
 */
int store_support_create(struct store *s, const char *tunnel_id, const char *reason,
			 const char *const *services, size_t n, const char *auth_hash,
			 int64_t expires_s, const char *detail, int64_t now_ms,
			 struct store_support *out, char *err, size_t errlen);
/* One session, its state as of now_ms: 0, -ENOENT, -EIO. */
int store_support_get(struct store *s, const char *id, int64_t now_ms, struct store_support *out);
/*
 * The sessions in state (-1: any; STORE_SUP_EXPIRED as computed at now_ms) of tunnel_id
 * (NULL: every tunnel), newest first, items offset..offset+limit-1 (limit -1: all); *total
 * (may be NULL) the number that match.
 */
int store_support_list(struct store *s, int state, const char *tunnel_id, int64_t now_ms,
		       int64_t offset, int64_t limit, store_support_cb cb, void *arg,
		       int64_t *total);
/*
 * The operator approves a pending, unexpired session (actor: who, for approved_by and
 * the audit record "approved"). Refusals with err: -ENOENT "no support session ID",
 * -EALREADY "support session ID is already approved", -ETIME "... has expired",
 * -ESRCH "... was ended".
 */
int store_support_approve(struct store *s, const char *id, const char *actor, int64_t now_ms,
			  struct store_support *out, char *err, size_t errlen);
/*
 * Ends a pending or approved session that has not expired. owner_tunnel set: the device
 * ends its own (another tunnel's is -ENOENT, as an unknown one), actor "tunnel:T"; NULL:
 * the operator (actor), whose end of a pending one is a denial (*denied, may be NULL; audit
 * "denied", else "ended"). Refusals as store_support_approve's (-ETIME, -ESRCH).
 */
int store_support_end(struct store *s, const char *id, const char *owner_tunnel, const char *actor,
		      int64_t now_ms, struct store_support *out, bool *denied, char *err,
		      size_t errlen);
/*
 * The expiry of every pending or approved session whose expires_at has come at now_ms and
 * was not handled yet: ended_by "expiry", ended_at its expires_at, audit "ended" (actor
 * "expiry"); cb (may be NULL) gets each afterwards. 0 or -EIO.
 */
int store_support_expire(struct store *s, int64_t now_ms, store_support_cb cb, void *arg);
/* The sessions over (ended, or expired and handled) since since_s (Unix s), newest first. */
int store_support_over_since(struct store *s, int64_t since_s, int64_t now_ms, int64_t limit,
			     store_support_cb cb, void *arg);
/*
 * A supporter's connect: 0 with *index the service's place in the session's list when the
 * session is approved, unexpired, auth_hex (the auth key, 64 lower-case hex digits) hashes
 * to its auth_hash (SHA-256, compared in constant time: common/support.h sup_auth_check)
 * and service is one of its services.
 * Else -EACCES with the one-line answer in err and a short reason for the audit record in
 * *code ("unknown session", "ended", "expired", "not approved", "wrong key", "unknown
 * service"); -EIO. out gets the session when it exists.
 */
int store_support_check(struct store *s, const char *id, const char *service, const char *auth_hex,
			int64_t now_ms, struct store_support *out, int *index, const char **code,
			char *err, size_t errlen);
/* The number of audit records of session id into *n; 0 or -EIO. */
int store_support_audit_count(struct store *s, const char *id, int64_t *n);
/*
 * Removes the sessions (and their audit trails) that ended or expired before
 * before_s (Unix s), at most 256 a call; *removed (may be NULL) says how many.
 */
int store_support_prune(struct store *s, int64_t before_s, int *removed);
/* Appends an audit record of session id (at most STORE_SUP_AUDIT_MAX each: -EDQUOT). */
int store_support_audit_add(struct store *s, const char *id, int64_t at_ms, const char *event,
			    const char *actor, const char *detail);
/* The audit records of id in order (at, then as added), at most limit (-1: all). */
int store_support_audit_list(struct store *s, const char *id, int64_t limit,
			     store_support_audit_cb cb, void *arg, int64_t *total);

/* Lower-case hex SHA-256 of a token secret, as stored: 65 bytes. */
void store_hash_secret(const char *secret, char out[65]);

#endif

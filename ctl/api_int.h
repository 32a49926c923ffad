/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What api.c and auth.c share: the API's state, one call being answered,
 * the helpers handlers answer with, and the handlers of auth.c and
 * api_support.c. Only these three files include it.
 */
#ifndef NAVE_API_INT_H
#define NAVE_API_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/cfg.h"
#include "ctl/store.h"
#include "valid.h"

struct acme;
struct pki_verifier;

/* One HTTP server of the API: control.sock (local) or [admin] listen (remote, TLS). */
struct srv {
	struct api *a;
	struct MHD_Daemon *mhd;
	bool remote;
};

/*
 * Logins of one source (an IPv4 address, or an IPv6 /64): its failures in a
 * window (the per-address limit of the admin listener) and its share of the
 * logins a second.
 */
struct src_fail {
	char addr[64];	   /* src_key(): "192.0.2.1", "2001:db8:1:2::/64" */
	uint64_t since_ms; /* the failure window's start */
	unsigned n;	   /* failures in the window */
	bool warned;	   /* the refusal for n is logged */
	uint64_t sec_ms;   /* the second its logins are counted in */
	unsigned logins;   /* logins (each an scrypt) in that second */
};

/* Failed logins of one user name from one source: the lockout is per pair. */
struct pair_fail {
	char user[STORE_USER_LEN];
	char addr[64];
	unsigned n;	      /* consecutive failures */
	int64_t locked_until; /* Unix seconds; 0: not locked */
	uint64_t last_ms;     /* the last failure (the oldest slot is reused) */
};

#define SRC_FAIL_SLOTS	 256
#define SRC_FAIL_MAX	 10	       /* failed logins per source address per window */
#define SRC_FAIL_WINDOW	 (15 * 60000u) /* ms */
#define LOGINS_PER_S	 10	       /* logins (each an scrypt) a second, from all addresses */
#define SRC_LOGINS_PER_S 2	       /* of them, from one address: its fair share */
#define USER_FAIL_MAX	 5	       /* consecutive failed logins of a user from a source */
#define PAIR_SLOTS	 1024
#define ADMIN_CONNS	 64
#define ADMIN_PER_IP	 16
#define ADMIN_TIMEOUT_S	 30
#define PASSWORD_MIN	 8
#define PASSWORD_MAX	 1024
#define SESSION_COOKIE	 "nave_session"
#define SESSION_ID_HEX	 64 /* 32 random bytes */

struct api {
	struct srv local, admin;
	int admin_lfd; /* ours: each admin MHD daemon gets a dup of it */
	char *cert_pem, *key_pem;
	/* paths, inodes, sizes, mtimes of what it serves ([tls] certificate ... client_crl) */
	char cert_sig[CFG_PATH_MAX * 4 + 192];
	uint64_t cert_checked_ms;
	/*
	 * Admin certificates ([tls] client_ca with client_auth not off): the CA's
	 * PEM the listener's CertificateRequest names (MHD_OPTION_HTTPS_MEM_TRUST)
	 * and the verifier of what clients present (tls/pki.h), refreshed at most
	 * once a second (pki_checked_ms). NULL: the listener asks for none.
	 */
	char *trust_pem;
	struct pki_verifier *pki;
	uint64_t pki_checked_ms;
	struct src_fail fails[SRC_FAIL_SLOTS];
	struct pair_fail pairs[PAIR_SLOTS];
	uint64_t login_sec_ms; /* the second logins are counted in */
	unsigned logins;
	int nlocal; /* of the last api_pollfds: the local server's fds come first */
	struct store *st;
	struct relaylink *rl;
	struct cfg_server *cfg; /* controld's, changed in place by a reload */
	struct acme *acme;
	struct metrics *metrics; /* request latency (metrics.h), NULL: none */
	uint64_t started_ms;
};

/* One API call being answered. */
struct call {
	struct api *a;
	bool remote; /* on the admin listener */
	struct MHD_Connection *conn;
	const char *method;
	char source[64]; /* the peer's address ("local" on control.sock) */
	char who[64]; /* who asked, for the log: "user alice", "API key ID", "cert:NAME", "local" */
	bool have_session; /* a valid session cookie came with the request */
	bool by_key;	   /* authenticated by an API key */
	bool by_cert;	   /* authenticated by an admin certificate (tls/pki.h) */
	bool authed;	   /* authenticated already (on the request's head) */
	struct store_session sess;
	char set_cookie[256]; /* a Set-Cookie header for the answer */
	int retry_after;      /* seconds, for a 429 */
	const char *id;	      /* the '*' segment of the route (the last one when it has two) */
	const char *id0;      /* the first '*' segment of a route that has two */
	json_t *body;	      /* the request body: an object, or NULL when empty */
	json_t *out;	      /* the response body */
	const char *route;    /* the pattern of the route matched (metrics), NULL: none */
};

/* The forms of a record in the answers. */
enum form {
	FORM_FULL,  /* a list's item, or the one record a change or a show answers with */
	FORM_NEW,   /* a new record with its secret: no STORE_J_STORED members */
	FORM_BRIEF, /* a tunnel's rules: the STORE_J_BRIEF members only */
};

/* What a list adds to each item of an entity: a tunnel's rules, a port's counters. */
typedef int (*item_fn)(struct api *a, const void *row, json_t *o);

/* c->out = {"error": reason}; returns status. */
int fail(struct call *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* 500 "internal error (see the controld log)". */
int internal(struct call *c);
/* Optional body members of a kind (valid.h) or an integer range: 0, or 400 with c->out. */
int body_str(struct call *c, const char *key, enum valid_kind kind, size_t max, const char **out);
int body_int(struct call *c, const char *key, long long min, long long max, long long *out);
#define PER_PAGE 50 /* items of a list's page */
/* A query argument (NULL: absent). */
const char *query(struct call *c, const char *key);
/* An optional query value of a kind: 0 with *out (NULL: absent or empty), or 400. */
int query_arg(struct call *c, const char *key, enum valid_kind kind, size_t max, const char **out);
/* ?page (1..): 0 with *page (1 when absent), or 400. */
int get_page(struct call *c, long long *page);
/* {"items": items, "page", "per_page", "total"}; consumes items. */
int list_reply(struct call *c, json_t *items, long long page, int64_t total);
/* A record of e as a JSON object of its members (store.h column table); NULL on failure. */
json_t *row_json(const struct store_entity *e, const void *row, enum form form);
/* A GET of a list: the page asked for of e's records that f keeps. */
int list_page(struct call *c, const struct store_entity *e, const struct store_filter *f,
	      item_fn extra);

/* --- api_support.c: support sessions (ctl/support.h) --- */
int h_support_list(struct call *c);
int h_support_show(struct call *c);
int h_support_approve(struct call *c);
int h_support_end(struct call *c);

/* --- auth.c --- */
/*
 * True when method and url answer without authentication on the admin
 * listener: the one list of them (auth_exempt[] in auth.c).
 */
bool api_auth_exempt(const char *method, const char *url);
/*
 * Checks a request on the admin listener: a client certificate when one was
 * presented (an admin certificate of [tls] client_ca, else 401), else an API
 * key (Authorization: Bearer) or a session cookie, and a cookie's
 * X-CSRF-Token when the method is not GET or HEAD. 0, or 401/403 with c->out.
 */
int api_authenticate(struct call *c);
int h_login(struct call *c);
int h_logout(struct call *c);
int h_session(struct call *c);
int h_users_list(struct call *c);
int h_users_add(struct call *c);
int h_user_get(struct call *c);
int h_user_password(struct call *c);
int h_user_del(struct call *c);
int h_user_unlock(struct call *c);
int h_user_totp_enable(struct call *c);
int h_user_totp_reset(struct call *c);
int h_user_totp_disable(struct call *c);
int h_apikeys_list(struct call *c);
int h_apikeys_create(struct call *c);
int h_apikey_revoke(struct call *c);

#endif

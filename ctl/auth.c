// SPDX-License-Identifier: Apache-2.0
/*
 * Authentication of the remote admin API (ctl/API.md, "Authentication") and
 * the routes of its users, sessions and API keys: api.c calls
 * api_authenticate for every request on the admin listener that
 * api_auth_exempt does not let through, and routes /api/v1/login, logout,
 * session, users and apikeys here. Login checks the password with scrypt
 * (common/passwd.c) and the TOTP code (totp.c), counts failures per user
 * (the store's lockout) and per source address (a table here), and at most
 * LOGINS_PER_S logins a second are tried in all (scrypt runs on the loop).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config/cfg.h"
#include "ctl/api_int.h"
#include "ctl/store.h"
#include "ctl/totp.h"
#include "log.h"
#include "passwd.h"
#include "tls/pki.h"
#include "util.h"
#include "valid.h"

/* --- admin users, login sessions, API keys (API.md, "Authentication") --- */

static void hex32(const uint8_t *b, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[b[i] >> 4];
		out[2 * i + 1] = hx[b[i] & 15];
	}
	out[2 * n] = 0;
}

/* 32 random bytes as 64 lower-case hex digits. */
static bool random_token(char out[SESSION_ID_HEX + 1])
{
	uint8_t b[SESSION_ID_HEX / 2];

	if (!RAND_bytes(b, sizeof(b)))
		return false;
	hex32(b, sizeof(b), out);
	OPENSSL_cleanse(b, sizeof(b));
	return true;
}

static void sha256_hex(const char *s, char out[STORE_HEX_LEN])
{
	uint8_t md[SHA256_DIGEST_LENGTH];

	SHA256((const uint8_t *)s, strlen(s), md);
	hex32(md, sizeof(md), out);
}

static bool is_hex64(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n != SESSION_ID_HEX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static int64_t ms_to_s(unsigned ms)
{
	return (int64_t)((ms + 999) / 1000);
}

/* When a session ends if it is not used again: the sooner of its two limits. */
static int64_t session_end(const struct api *a, const struct store_session *s)
{
	int64_t idle = s->last_used + ms_to_s(a->cfg->admin_session_idle_ms);

	return idle < s->expires_at ? idle : s->expires_at;
}

/*
 * The session of the request's nave_session cookie: true with c->sess when
 * it is known and not past either limit (its last use is now then); an
 * expired one is deleted.
 */
static bool session_of(struct call *c)
{
	const char *id = MHD_lookup_connection_value(c->conn, MHD_COOKIE_KIND, SESSION_COOKIE);
	char h[STORE_HEX_LEN];
	int64_t now = now_s();

	if (!is_hex64(id))
		return false;
	sha256_hex(id, h);
	if (store_session_get(c->a->st, h, &c->sess))
		return false;
	if (session_end(c->a, &c->sess) <= now) {
		log_info("api: session of user %s from %s expired", c->sess.user, c->sess.source);
		store_session_del(c->a->st, h);
		return false;
	}
	if (c->sess.last_used != now && !store_session_touch(c->a->st, h, now))
		c->sess.last_used = now;
	c->have_session = true;
	return true;
}

/*
 * What answers without authentication on the admin listener under /api/: this
 * list and nothing else (outside /api/ only the dashboard's files, ctl/ui.c).
 */
static const struct {
	const char *method, *path;
} auth_exempt[] = {
    {"POST", "/api/v1/login"},
};

bool api_auth_exempt(const char *method, const char *url)
{
	for (size_t i = 0; i < ARRAY_SIZE(auth_exempt); i++)
		if (!strcmp(auth_exempt[i].method, method) && !strcmp(auth_exempt[i].path, url))
			return true;
	return false;
}

/*
 * The admin listener's verifier follows its CA and CRL files: read again
 * when they changed, looked at no more than once a second (a revocation
 * applies within a second, without a restart). Files that do not load
 * leave the verifier as it was, logged.
 */
static void pki_refresh(struct api *a)
{
	char err[256];
	int ret;

	if (now_ms() - a->pki_checked_ms < 1000)
		return;
	a->pki_checked_ms = now_ms();
	ret = pki_verifier_refresh(a->pki, err, sizeof(err));
	if (ret > 0)
		log_info("api: admin certificates: %s or its CRL changed: read again",
			 a->cfg->client_ca);
	else if (ret < 0)
		log_every(NLOG_WARN, "api: admin certificates: %s: the previous CA and CRL stay",
			  err);
}

/* 401 for a client certificate that is not an admin certificate of this CA; logged (limited). */
static int cert_refused(struct call *c, const char *why, bool kind)
{
	char esc[320];

	log_esc_str(why, esc, sizeof(esc));
	/* two causes, each written at most once in 10 s (the rest counted) */
	if (kind)
		log_every(NLOG_WARN, "api: request from %s refused: client %s", c->source, esc);
	else
		log_every(NLOG_WARN, "api: request from %s refused: client %s", c->source, esc);
	return fail(c, MHD_HTTP_UNAUTHORIZED, "client %s", why);
}

/*
 * The client certificate of a request on the admin listener, when admin
 * certificates are on ([tls] client_ca, client_auth not off). 0 with *shown
 * false when the handshake carried none; 0 with c->who "cert:NAME" for an
 * admin certificate that pki_verify accepts now; else 401 with the reason
 * (a node certificate, another CA's, expired, revoked, ...).
 */
static int cert_auth(struct call *c, bool *shown)
{
	const union MHD_ConnectionInfo *ci;
	const gnutls_datum_t *peers = NULL;
	const uint8_t *ders[PKI_CHAIN_MAX];
	size_t lens[PKI_CHAIN_MAX];
	struct pki_ident id;
	char why[256];
	unsigned n = 0;

	*shown = false;
	if (!c->a->pki)
		return 0;
	ci = MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (ci && ci->tls_session)
		peers = gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &n);
	if (!peers || !n)
		return 0;
	*shown = true;
	if (n > PKI_CHAIN_MAX) {
		snprintf(why, sizeof(why), "certificate refused: a chain of %u (at most %d)", n,
			 PKI_CHAIN_MAX);
		return cert_refused(c, why, false);
	}
	for (unsigned i = 0; i < n; i++) {
		if (peers[i].size > PKI_DER_MAX) {
			snprintf(why, sizeof(why), "certificate refused: %u bytes (at most %d)",
				 peers[i].size, PKI_DER_MAX);
			return cert_refused(c, why, false);
		}
		ders[i] = peers[i].data;
		lens[i] = peers[i].size;
	}
	pki_refresh(c->a);
	if (pki_verify(c->a->pki, ders, lens, n, now_s(), &id, why, sizeof(why)))
		return cert_refused(c, why, false);
	if (id.kind != PKI_ADMIN) {
		snprintf(why, sizeof(why),
			 "certificate \"%s\" is a %s certificate: the admin API takes admin ones",
			 id.name, pki_kind_name(id.kind));
		return cert_refused(c, why, true);
	}
	snprintf(c->who, sizeof(c->who), "cert:%s", id.name);
	c->by_cert = true;
	return 0;
}

/*
 * A browser presents its certificate with any page's request, as it sends
 * its cookies: a request authenticated by a certificate that changes
 * anything (not GET or HEAD) must not come from another site's page. When
 * a browser says where it comes from (Origin, Sec-Fetch-Site), that must be
 * this server; navectl and scripts send neither.
 */
static bool same_origin(struct call *c)
{
	const char *origin = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Origin");
	const char *site = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
	const char *host =
	    MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);

	if (!strcmp(c->method, "GET") || !strcmp(c->method, "HEAD"))
		return true;
	if (site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
		return false;
	if (!origin)
		return true;
	return host && !strncmp(origin, "https://", 8) && !strcmp(origin + 8, host);
}

/*
 * Authentication on the admin listener: a client certificate when the
 * connection presented one (it decides: a refused one is 401 whatever
 * else the request carries), else an API key (Authorization: Bearer) or a
 * session cookie; a cookie's request that changes anything (not GET or
 * HEAD) must carry the session's X-CSRF-Token, a certificate's must not
 * come from another site's page. 0, or 401/403 with c->out.
 */
int api_authenticate(struct call *c)
{
	const char *auth =
	    MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	const char *csrf;
	bool shown;
	int ret = cert_auth(c, &shown);

	if (ret)
		return ret;
	if (shown) {
		if (same_origin(c))
			return 0;
		log_info("api: %s from %s refused: a %s from another site's page (Origin)", c->who,
			 c->source, c->method);
		return fail(c, MHD_HTTP_FORBIDDEN,
			    "a request from another site's page (Origin) is refused");
	}
	if (auth) {
		struct store_apikey k;
		const char *why = NULL;

		if (strncmp(auth, "Bearer ", 7) != 0) {
			log_info("api: %s %s from %s: refused: not a Bearer authorization",
				 c->method, "request", c->source);
			return fail(c, MHD_HTTP_UNAUTHORIZED, "authentication required");
		}
		ret = store_apikey_auth(c->a->st, auth + 7, now_s(), &k, &why);
		if (ret == -EACCES) {
			log_info("api: request from %s refused: API key: %s", c->source, why);
			return fail(c, MHD_HTTP_UNAUTHORIZED, "authentication required");
		}
		if (ret)
			return internal(c);
		snprintf(c->who, sizeof(c->who), "API key %s", k.id);
		c->by_key = true;
		return 0;
	}
	if (!session_of(c))
		return fail(c, MHD_HTTP_UNAUTHORIZED, "authentication required");
	snprintf(c->who, sizeof(c->who), "user %s", c->sess.user);
	if (!strcmp(c->method, "GET") || !strcmp(c->method, "HEAD"))
		return 0;
	csrf = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "X-CSRF-Token");
	if (!csrf || strlen(csrf) != strlen(c->sess.csrf) ||
	    CRYPTO_memcmp(csrf, c->sess.csrf, strlen(c->sess.csrf))) {
		log_info("api: %s from %s refused: missing or wrong CSRF token", c->who, c->source);
		return fail(c, MHD_HTTP_FORBIDDEN, "missing or wrong CSRF token");
	}
	return 0;
}

/*
 * The source a login is counted under: an IPv4 address as it is (a
 * v4-mapped IPv6 one as IPv4), an IPv6 address by its /64 (one host holds
 * a whole /64 as easily as one address).
 */
static void src_key(const char *source, char out[64])
{
	struct in6_addr a6;

	str_copy(out, 64, source);
	if (inet_pton(AF_INET6, source, &a6) != 1)
		return;
	if (IN6_IS_ADDR_V4MAPPED(&a6)) {
		inet_ntop(AF_INET, &a6.s6_addr[12], out, 64);
		return;
	}
	memset(&a6.s6_addr[8], 0, 8);
	inet_ntop(AF_INET6, &a6, out, 48);
	strcat(out, "/64");
}

/* True while a source's slot holds something: failures in the window, or logins this second. */
static bool src_live(const struct src_fail *f, uint64_t now)
{
	return (f->n && now - f->since_ms < SRC_FAIL_WINDOW) || now - f->sec_ms < 1000;
}

/*
 * The slot of a source (src_key): its own, else (create) a free one, else
 * the one whose window (or first login) began first, reset for it; NULL
 * when absent.
 */
static struct src_fail *src_slot(struct api *a, const char *key, bool create)
{
	struct src_fail *pick = NULL;
	uint64_t now = now_ms();

	for (size_t i = 0; i < SRC_FAIL_SLOTS; i++) {
		struct src_fail *f = &a->fails[i];
		bool live = f->addr[0] && src_live(f, now);

		if (f->n && now - f->since_ms >= SRC_FAIL_WINDOW)
			f->n = 0, f->warned = false; /* its window is over */
		if (live && !strcmp(f->addr, key))
			return f;
		if (!live)
			f->addr[0] = 0;
		if (!pick || (pick->addr[0] && (!f->addr[0] || f->since_ms < pick->since_ms)))
			pick = f;
	}
	if (!create)
		return NULL;
	memset(pick, 0, sizeof(*pick));
	str_copy(pick->addr, sizeof(pick->addr), key);
	pick->since_ms = now;
	return pick;
}

/*
 * The failure slot of a user name from a source: its own, else (create) a
 * free one, else the one whose last failure is the oldest; NULL when absent.
 * Any valid name gets one, a user or not: the answers and their cost do not
 * tell them apart.
 */
static struct pair_fail *pair_slot(struct api *a, const char *user, const char *key, bool create)
{
	struct pair_fail *pick = NULL;
	int64_t now = now_s();

	for (size_t i = 0; i < PAIR_SLOTS; i++) {
		struct pair_fail *p = &a->pairs[i];

		if (p->user[0] && !p->n && p->locked_until <= now)
			p->user[0] = 0; /* nothing left to remember */
		if (p->user[0] && !strcmp(p->user, user) && !strcmp(p->addr, key))
			return p;
		if (!pick || (pick->user[0] && (!p->user[0] || p->last_ms < pick->last_ms)))
			pick = p;
	}
	if (!create)
		return NULL;
	memset(pick, 0, sizeof(*pick));
	str_copy(pick->user, sizeof(pick->user), user);
	str_copy(pick->addr, sizeof(pick->addr), key);
	return pick;
}

/* Forgets every failure and lock of a user (users unlock, a new password). */
static void pairs_clear(struct api *a, const char *user)
{
	for (size_t i = 0; i < PAIR_SLOTS; i++)
		if (!strcmp(a->pairs[i].user, user))
			memset(&a->pairs[i], 0, sizeof(a->pairs[i]));
}

/* A user's failures since its last success, and the end of its latest lock, from any source. */
static void pairs_of(struct api *a, const char *user, int64_t *failed, int64_t *locked_until)
{
	int64_t now = now_s();

	*failed = *locked_until = 0;
	for (size_t i = 0; i < PAIR_SLOTS; i++) {
		const struct pair_fail *p = &a->pairs[i];

		if (!p->user[0] || strcmp(p->user, user) != 0)
			continue;
		*failed += p->n;
		if (p->locked_until > now && p->locked_until > *locked_until)
			*locked_until = p->locked_until;
	}
}

/* A member of the login body that must be a string (or absent); 0 or 400. */
static int login_str(struct call *c, const char *key, bool required, const char **out)
{
	json_t *v = json_object_get(c->body, key);

	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required)
			return fail(c, MHD_HTTP_BAD_REQUEST, "\"%s\" is required", key);
		return 0;
	}
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"%s\" must be a string", key);
	*out = json_string_value(v);
	return 0;
}

/*
 * Every refused login for a reason of the user (unknown, wrong password or
 * code, locked, no two-factor) is this one answer; the log says why. It
 * counts for the source, and for the name from the source (USER_FAIL_MAX in
 * a row lock the name there for [admin] lockout) when count is set.
 */
static int login_failed(struct call *c, const char *key, const char *user, bool count,
			const char *why)
{
	struct api *a = c->a;
	struct src_fail *f = src_slot(a, key, true);
	struct pair_fail *p =
	    count && store_user_name_ok(user) ? pair_slot(a, user, key, true) : NULL;
	char esc[256];

	if (!f->n)
		f->since_ms = now_ms();
	f->n++;
	log_esc_str(user, esc, sizeof(esc));
	log_warn("api: login of \"%s\" from %s failed: %s", esc, c->source, why);
	if (p) {
		p->last_ms = now_ms();
		if (++p->n >= USER_FAIL_MAX) {
			p->n = 0;
			p->locked_until = now_s() + ms_to_s(a->cfg->admin_lockout_ms);
			log_warn("api: \"%s\" locked from %s for %us after %d failed logins in a "
				 "row (navectl users unlock ends it)",
				 esc, key, a->cfg->admin_lockout_ms / 1000, USER_FAIL_MAX);
		}
	}
	return fail(c, MHD_HTTP_UNAUTHORIZED, "login failed");
}

static int too_many(struct call *c, int64_t secs, const char *msg)
{
	c->retry_after = secs > 0 ? (int)secs : 1;
	return fail(c, MHD_HTTP_TOO_MANY_REQUESTS, "%s", msg);
}

/* A fixed scrypt hash of the default cost that no password matches in practice. */
#define DUMMY_HASH                                                                                 \
	"$scrypt$ln=14,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

int h_login(struct call *c)
{
	struct api *a = c->a;
	const char *user, *pass, *code;
	struct store_user u;
	struct store_session s = {0};
	struct src_fail *f;
	struct pair_fail *p;
	char id[SESSION_ID_HEX + 1], key[64];
	int64_t now = now_s(), step = 0;
	uint64_t ms = now_ms();
	bool valid, known, ok;
	int ret;

	ret = login_str(c, "user", true, &user);
	if (!ret)
		ret = login_str(c, "password", true, &pass);
	if (!ret)
		ret = login_str(c, "totp", false, &code);
	if (ret)
		return ret;
	src_key(c->source, key);
	/* the source over its own limit: refused before anything is spent or counted */
	f = src_slot(a, key, true);
	if (f->n >= SRC_FAIL_MAX) {
		if (!f->warned) /* once a window: a flood does not flood the log */
			log_warn("api: login from %s refused: %u failed logins from there in "
				 "%u minutes (logged once)",
				 c->source, f->n, SRC_FAIL_WINDOW / 60000);
		f->warned = true;
		return too_many(c, (int64_t)(f->since_ms + SRC_FAIL_WINDOW - ms) / 1000 + 1,
				"too many failed logins: try again later");
	}
	/* the name locked from this source: no scrypt, the answer of any failure */
	valid = store_user_name_ok(user);
	p = valid ? pair_slot(a, user, key, false) : NULL;
	if (p && p->locked_until > now) {
		char why[96];

		snprintf(why, sizeof(why), "locked from this address for %llds more",
			 (long long)(p->locked_until - now));
		return login_failed(c, key, user, false, why);
	}
	/*
	 * scrypt runs on the loop: at most LOGINS_PER_S logins a second from
	 * everywhere, SRC_LOGINS_PER_S of them from one source, counted only for
	 * logins that run it
	 */
	if (ms - f->sec_ms >= 1000) {
		f->sec_ms = ms;
		f->logins = 0;
	}
	if (ms - a->login_sec_ms >= 1000) {
		a->login_sec_ms = ms;
		a->logins = 0;
	}
	if (f->logins >= SRC_LOGINS_PER_S)
		return too_many(c, 1, "too many logins: try again in a second");
	if (a->logins >= LOGINS_PER_S) {
		if (a->logins++ == LOGINS_PER_S)
			log_warn("api: more than %d logins in a second: the rest of this second "
				 "get 429",
				 LOGINS_PER_S);
		return too_many(c, 1, "too many logins: try again in a second");
	}
	f->logins++;
	a->logins++;
	known = valid && store_user_get(a->st, user, &u) == 0;
	/* an unknown user costs the same scrypt: the time does not tell them apart */
	ok = passwd_verify(pass, strlen(pass), known ? u.hash : DUMMY_HASH) && known &&
	     strlen(pass) >= PASSWORD_MIN && strlen(pass) <= PASSWORD_MAX;
	if (!known)
		return login_failed(c, key, user, true, "no such user");
	if (!ok)
		return login_failed(c, key, user, true, "wrong password");
	if (u.two_factor) {
		uint8_t k[TOTP_SECRET_LEN + 8];
		int n = totp_b32_decode(u.totp_secret, k, sizeof(k));

		ret = n <= 0  ? -EIO
		      : !code ? -ENOENT
			      : totp_check(k, (size_t)n, code, (uint64_t)now, u.totp_step, &step);
		OPENSSL_cleanse(k, sizeof(k));
		if (ret)
			return login_failed(c, key, user, true,
					    ret == -ENOENT     ? "no TOTP code"
					    : ret == -EALREADY ? "TOTP code replayed"
					    : ret == -EIO      ? "stored TOTP secret unreadable"
							       : "wrong TOTP code");
	} else if (a->cfg->admin_require_two_factor) {
		/* counted like any failure: the right password shows in nothing */
		return login_failed(c, key, user, true,
				    "two-factor is off for the user and [admin] require_two_factor "
				    "is on (navectl users two-factor enable)");
	}
	if (store_user_login(a->st, user, true, step, now, USER_FAIL_MAX, 0, NULL))
		return internal(c);
	p = pair_slot(a, user, key, false);
	if (p) /* a success clears the name's count from this source */
		memset(p, 0, sizeof(*p));
	store_session_purge(a->st, now, ms_to_s(a->cfg->admin_session_idle_ms));
	if (!random_token(id) || !random_token(s.csrf))
		return internal(c);
	sha256_hex(id, s.id_hash);
	str_copy(s.user, sizeof(s.user), user);
	str_copy(s.source, sizeof(s.source), c->source);
	s.created_at = s.last_used = now;
	s.expires_at = now + ms_to_s(a->cfg->admin_session_lifetime_ms);
	if (store_session_add(a->st, &s)) {
		OPENSSL_cleanse(id, sizeof(id));
		return internal(c);
	}
	snprintf(c->set_cookie, sizeof(c->set_cookie),
		 SESSION_COOKIE "=%s; Path=/; HttpOnly; Secure; SameSite=Strict", id);
	OPENSSL_cleanse(id, sizeof(id));
	log_info("api: user %s logged in from %s%s", user, c->source,
		 u.two_factor ? " (password and TOTP)" : " (password)");
	c->out = json_pack("{s:s, s:s, s:I}", "user", s.user, "csrf", s.csrf, "expires",
			   (json_int_t)session_end(a, &s));
	return c->out ? MHD_HTTP_OK : internal(c);
}

/* A request made with an API key or a certificate has no session to show or end. */
static int no_session(struct call *c)
{
	return fail(c, MHD_HTTP_BAD_REQUEST, "no session: this request is authenticated by %s",
		    c->by_cert ? "a certificate" : "an API key");
}

int h_logout(struct call *c)
{
	if (c->by_key || c->by_cert)
		return no_session(c);
	if (!c->have_session && !session_of(c))
		return fail(c, MHD_HTTP_UNAUTHORIZED, "not logged in");
	if (store_session_del(c->a->st, c->sess.id_hash))
		return internal(c);
	log_info("api: user %s logged out", c->sess.user);
	snprintf(c->set_cookie, sizeof(c->set_cookie),
		 SESSION_COOKIE "=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
	return MHD_HTTP_NO_CONTENT;
}

int h_session(struct call *c)
{
	if (c->by_key || c->by_cert)
		return no_session(c);
	if (!c->have_session && !session_of(c))
		return fail(c, MHD_HTTP_UNAUTHORIZED, "not logged in");
	c->out = json_pack("{s:s, s:s, s:I}", "user", c->sess.user, "csrf", c->sess.csrf, "expires",
			   (json_int_t)session_end(c->a, &c->sess));
	return c->out ? MHD_HTTP_OK : internal(c);
}

/* "password": a string of PASSWORD_MIN..PASSWORD_MAX bytes; its scrypt hash to hash. */
static int body_password(struct call *c, char hash[STORE_PWHASH_LEN])
{
	json_t *v = json_object_get(c->body, "password");
	size_t n;

	if (!v || json_is_null(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"password\" is required");
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"password\" must be a string");
	n = json_string_length(v);
	if (n < PASSWORD_MIN || n > PASSWORD_MAX)
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"password\" must be %d-%d bytes",
			    PASSWORD_MIN, PASSWORD_MAX);
	if (passwd_hash(json_string_value(v), n, hash, STORE_PWHASH_LEN))
		return internal(c);
	return 0;
}

static int bad_user_name(struct call *c, const char *name)
{
	(void)name;
	return fail(c, MHD_HTTP_BAD_REQUEST,
		    "a user name is 1-32 characters of a-z 0-9 . _ - (not starting with . or -)");
}

/*
 * A user's failed_logins and locked_until are controld's (the lockout is
 * per source and kept in memory): the failures since the last success and
 * the end of the latest lock, from any source.
 */
static int user_extra(struct api *a, const void *row, json_t *o)
{
	const struct store_user *u = row;
	int64_t failed, until;

	pairs_of(a, u->name, &failed, &until);
	if (json_object_set_new(o, "failed_logins", json_integer(failed)) ||
	    json_object_set_new(o, "locked_until", until ? json_integer(until) : json_null()))
		return -ENOMEM;
	return 0;
}

int h_users_list(struct call *c)
{
	return list_page(c, &store_users, NULL, user_extra);
}

static int user_reply(struct call *c, const char *name, int status)
{
	struct store_user u;
	int ret = store_user_get(c->a->st, name, &u);

	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown user %s", name);
	if (ret)
		return internal(c);
	c->out = row_json(&store_users, &u, FORM_FULL);
	if (c->out && user_extra(c->a, &u, c->out)) {
		json_decref(c->out);
		c->out = NULL;
	}
	return c->out ? status : internal(c);
}

int h_users_add(struct call *c)
{
	char hash[STORE_PWHASH_LEN];
	struct store_user u;
	json_t *v = json_object_get(c->body, "name");
	const char *name;
	int ret;

	if (!v || json_is_null(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"name\" is required");
	if (!json_is_string(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"name\" must be a string");
	name = json_string_value(v);
	if (strlen(name) != json_string_length(v) || !store_user_name_ok(name))
		return bad_user_name(c, name);
	ret = body_password(c, hash);
	if (ret)
		return ret;
	ret = store_user_add(c->a->st, name, hash, &u);
	OPENSSL_cleanse(hash, sizeof(hash));
	if (ret == -EEXIST)
		return fail(c, MHD_HTTP_CONFLICT, "user %s exists", name);
	if (ret == -EDQUOT)
		return fail(c, MHD_HTTP_CONFLICT, "at most %d users", STORE_USERS_MAX);
	if (ret)
		return internal(c);
	log_info("api: user %s added (by %s)", name, c->who);
	c->out = row_json(&store_users, &u, FORM_FULL);
	return c->out ? MHD_HTTP_CREATED : internal(c);
}

int h_user_get(struct call *c)
{
	if (!store_user_name_ok(c->id))
		return bad_user_name(c, c->id);
	return user_reply(c, c->id, MHD_HTTP_OK);
}

int h_user_password(struct call *c)
{
	char hash[STORE_PWHASH_LEN];
	int ret;

	if (!store_user_name_ok(c->id))
		return bad_user_name(c, c->id);
	ret = body_password(c, hash);
	if (ret)
		return ret;
	ret = store_user_set_password(c->a->st, c->id, hash);
	OPENSSL_cleanse(hash, sizeof(hash));
	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown user %s", c->id);
	if (ret)
		return internal(c);
	pairs_clear(c->a, c->id);
	log_info("api: password of user %s changed, its sessions and locks ended (by %s)", c->id,
		 c->who);
	return user_reply(c, c->id, MHD_HTTP_OK);
}

int h_user_unlock(struct call *c)
{
	int64_t failed, until;
	int ret;

	if (!store_user_name_ok(c->id))
		return bad_user_name(c, c->id);
	ret = store_user_unlock(c->a->st, c->id);
	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown user %s", c->id);
	if (ret)
		return internal(c);
	pairs_of(c->a, c->id, &failed, &until);
	pairs_clear(c->a, c->id);
	log_info("api: user %s unlocked (%s, %lld failed logins forgotten) (by %s)", c->id,
		 until ? "was locked" : "was not locked", (long long)failed, c->who);
	return user_reply(c, c->id, MHD_HTTP_OK);
}

int h_user_del(struct call *c)
{
	int ret;

	if (!store_user_name_ok(c->id))
		return bad_user_name(c, c->id);
	ret = store_user_del(c->a->st, c->id);
	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown user %s", c->id);
	if (ret)
		return internal(c);
	pairs_clear(c->a, c->id);
	log_info("api: user %s removed (by %s)", c->id, c->who);
	c->out = json_pack("{s:s, s:b}", "name", c->id, "removed", 1);
	return c->out ? MHD_HTTP_OK : internal(c);
}

/* A new TOTP secret for the user, shown this once as base32 and otpauth:// URI. */
static int totp_new(struct call *c, bool reset)
{
	uint8_t key[TOTP_SECRET_LEN];
	char b32[TOTP_B32_LEN], uri[256];
	struct store_user u;
	int ret;

	if (!store_user_name_ok(c->id))
		return bad_user_name(c, c->id);
	ret = store_user_get(c->a->st, c->id, &u);
	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown user %s", c->id);
	if (ret)
		return internal(c);
	if (!reset && u.two_factor)
		return fail(c, MHD_HTTP_CONFLICT,
			    "two-factor is on for user %s already (reset makes a new secret)",
			    c->id);
	if (reset && !u.two_factor)
		return fail(c, MHD_HTTP_CONFLICT, "two-factor is off for user %s (enable it)",
			    c->id);
	if (!RAND_bytes(key, sizeof(key)))
		return internal(c);
	totp_b32_encode(key, sizeof(key), b32, sizeof(b32));
	OPENSSL_cleanse(key, sizeof(key));
	if (totp_uri("nave", c->id, b32, uri, sizeof(uri)) ||
	    store_user_set_totp(c->a->st, c->id, b32)) {
		OPENSSL_cleanse(b32, sizeof(b32));
		return internal(c);
	}
	log_info("api: two-factor of user %s %s (by %s)", c->id, reset ? "reset" : "enabled",
		 c->who);
	c->out = json_pack("{s:s, s:s, s:s}", "name", c->id, "secret", b32, "uri", uri);
	OPENSSL_cleanse(b32, sizeof(b32));
	OPENSSL_cleanse(uri, sizeof(uri));
	return c->out ? MHD_HTTP_OK : internal(c);
}

int h_user_totp_enable(struct call *c)
{
	return totp_new(c, false);
}

int h_user_totp_reset(struct call *c)
{
	return totp_new(c, true);
}

int h_user_totp_disable(struct call *c)
{
	int ret;

	if (!store_user_name_ok(c->id))
		return bad_user_name(c, c->id);
	ret = store_user_set_totp(c->a->st, c->id, NULL);
	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown user %s", c->id);
	if (ret)
		return internal(c);
	log_info("api: two-factor of user %s disabled (by %s)", c->id, c->who);
	return user_reply(c, c->id, MHD_HTTP_OK);
}

int h_apikeys_list(struct call *c)
{
	return list_page(c, &store_apikeys, NULL, NULL);
}

int h_apikeys_create(struct call *c)
{
	struct store_apikey k;
	char key[STORE_APIKEY_LEN];
	const char *desc;
	long long expires;
	int ret;

	ret = body_str(c, "description", VALID_TEXT, STORE_STR_LEN - 1, &desc);
	if (!ret)
		ret = body_int(c, "expires", 0, 100LL * 365 * 86400, &expires);
	if (ret)
		return ret;
	ret = store_apikey_create(c->a->st, desc, expires, &k, key);
	if (ret == -EDQUOT)
		return fail(c, MHD_HTTP_CONFLICT, "at most %d API keys (revoke some)",
			    STORE_APIKEYS_MAX);
	if (ret)
		return internal(c);
	log_info("api: API key %s created (by %s)", k.id, c->who);
	c->out = row_json(&store_apikeys, &k, FORM_NEW);
	if (c->out)
		json_object_set_new(c->out, "key", json_string(key));
	OPENSSL_cleanse(key, sizeof(key));
	return c->out ? MHD_HTTP_CREATED : internal(c);
}

int h_apikey_revoke(struct call *c)
{
	struct store_apikey k;
	int ret = store_apikey_revoke(c->a->st, c->id, &k);

	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown API key %s", c->id);
	if (ret)
		return internal(c);
	log_info("api: API key %s revoked (by %s)", k.id, c->who);
	c->out = row_json(&store_apikeys, &k, FORM_FULL);
	return c->out ? MHD_HTTP_OK : internal(c);
}

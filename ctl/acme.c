// SPDX-License-Identifier: Apache-2.0
/* controld's ACME client (acme.h). */
#include "ctl/acme.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ctl/acme_http.h"
#include "ctl/jws.h"
#include "ctl/relaylink.h"
#include "domain.h"
#include "log.h"
#include "util.h"

/* snprintf whose truncation is fine (messages, copies of checked lengths) */
__attribute__((format(printf, 3, 4))) static void sfmt(char *out, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, n, fmt, ap);
	va_end(ap);
}

#define OUTBOX_MAX	   64
#define POLL_MS		   1000	      /* between looks at a pending authorization or order */
#define DECIDE_S	   90	      /* how long the CA may take to decide one */
#define BACKOFF_MIN_S	   60	      /* after a failure: 1 min, doubling ... */
#define BACKOFF_MAX_S	   (6 * 3600) /* ... up to 6 h */
#define RECHECK_S	   3600	      /* the files are looked at again at least this often */
#define BAD_NONCE_TRIES	   5
#define SELFCHECK_TRIES	   25 /* 100 ms apart: relayd has the challenge within 2.5 s */
#define ERR_LEN		   512
#define PROBLEM_PREFIX	   "urn:ietf:params:acme:error:"
#define ACME_TOKEN_LEN_MAX 128 /* relayd takes tokens of at most this (datapath/acme_chal.h) */
#define ACME_CHAL_PATH	   "/.well-known/acme-challenge/"

enum dom_state { D_NONE, D_VALID, D_WORKING, D_FAILED, D_REVOKED };
static const char *const state_names[] = {"none", "valid", "working", "failed", "revoked"};

struct dom {
	char name[DOMAIN_MAX + 1];
	enum dom_state state;
	long long not_before, not_after, due; /* unix seconds; due 0: now */
	char serial[80];
	char error[ERR_LEN];
	long long next_try; /* after a failure */
	unsigned fails, attempts;
	bool force, revoke, known; /* known: the file was looked at */
	enum dom_state prev;	   /* before the attempt in progress */
	char issued[80];	   /* the serial this client stored last */
};

/* the [acme] settings the thread works with */
struct conf {
	char directory[CFG_PATH_MAX];
	char email[CFG_STR_MAX];
	char ca[CFG_PATH_MAX];
	char dir[CFG_PATH_MAX + 16];	/* state_dir/acme */
	char http_at[CFG_STR_MAX + 16]; /* relayd's HTTP listener, for the self-check */
	long long renew_before;
	bool accept_terms;
};

struct post {
	enum { P_CHAL, P_UNCHAL, P_CERTS } type;
	char domain[DOMAIN_MAX + 1];
	char token[ACME_TOKEN_LEN_MAX + 1];
	char keyauth[ACME_TOKEN_LEN_MAX + 48];
};

struct acme {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t th;
	bool running, stop, reconf;
	int efd;
	struct conf conf, next; /* next: what a reload asked for */
	struct dom dom[ACME_DOMAINS_MAX];
	unsigned ndom;
	char error[ERR_LEN]; /* what stops every domain (the directory, the account) */
	char kid[ACME_URL_MAX];
	/* to the main loop */
	struct post out[OUTBOX_MAX];
	unsigned nout;
	struct post pub[ACME_DOMAINS_MAX]; /* challenges published now */
	unsigned npub;
	unsigned rl_gen; /* the relay link generation the published ones went to */
	/* the thread's own */
	struct acme_http http; /* from acme_open to acme_close */
	bool cut;	       /* a reload of the CA, or a stop, cut the attempt in progress */
	long long next_look;   /* when pick() reads every domain's file again */
	bool contact_due;      /* [acme] email changed: the account's contact is updated */
	EVP_PKEY *akey;
	char thumb[JWS_THUMB_LEN + 1];
	char nonce[ACME_NONCE_MAX];
	struct {
		char nonce[ACME_URL_MAX], account[ACME_URL_MAX], order[ACME_URL_MAX],
		    revoke[ACME_URL_MAX];
		bool terms;
	} urls;
};

long long acme_due(long long nb, long long na, long long renew_before_s)
{
	long long life = na - nb, ahead = renew_before_s;

	if (life > 0 && ahead > life / 3)
		ahead = life / 3;
	return na - ahead;
}

static long long now_s(void)
{
	return (long long)time(NULL);
}

/* ---------- configuration ---------- */

static void conf_from(struct conf *c, const struct cfg_server *cfg)
{
	const char *addr = cfg->address;

	memset(c, 0, sizeof(*c));
	sfmt(c->directory, sizeof(c->directory), "%s", cfg->acme_directory);
	sfmt(c->email, sizeof(c->email), "%s", cfg->acme_email);
	sfmt(c->ca, sizeof(c->ca), "%s", cfg->acme_ca);
	sfmt(c->dir, sizeof(c->dir), "%s/acme", cfg->state_dir);
	if (!strcmp(addr, "0.0.0.0"))
		addr = "127.0.0.1";
	else if (!strcmp(addr, "::"))
		addr = "::1";
	sfmt(c->http_at, sizeof(c->http_at), strchr(addr, ':') ? "[%s]:%u" : "%s:%u", addr,
	     cfg->http_port);
	c->renew_before = cfg->acme_renew_before_ms / 1000;
	c->accept_terms = cfg->acme_accept_terms;
}

/* The domains of cfg into a (keeping what is known of those already there); under the lock. */
static void domains_from(struct acme *a, const struct cfg_server *cfg)
{
	struct dom *old = malloc(sizeof(a->dom));
	unsigned nold = a->ndom;
	char item[DOMAIN_MAX + 2];
	const char *list = cfg->acme_domains[0] ? cfg->acme_domains : cfg->domain;

	if (old)
		memcpy(old, a->dom, sizeof(a->dom));
	a->ndom = 0;
	for (const char *p = list;
	     a->ndom < ACME_DOMAINS_MAX && (p = cfg_list_next(p, item, sizeof(item)));) {
		struct dom *d = &a->dom[a->ndom];
		bool dup = false;

		for (unsigned i = 0; i < a->ndom; i++)
			dup |= !strcmp(a->dom[i].name, item);
		if (dup || !domain_norm(item, strlen(item), d->name, false))
			continue;
		memset(d, 0, sizeof(*d));
		domain_norm(item, strlen(item), d->name, false);
		for (unsigned i = 0; old && i < nold; i++)
			if (!strcmp(old[i].name, d->name))
				*d = old[i];
		d->known = false; /* the file is looked at again */
		a->ndom++;
	}
	free(old);
}

/* ---------- to the main loop ---------- */

static void wake_main(struct acme *a)
{
	uint64_t one = 1;

	if (write(a->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("acme: eventfd: %s", strerror(errno));
}

/* under the lock */
static void post(struct acme *a, int type, const char *domain, const char *token,
		 const char *keyauth)
{
	struct post *p;

	if (type == P_CHAL && a->npub < ACME_DOMAINS_MAX) {
		p = &a->pub[a->npub++];
		memset(p, 0, sizeof(*p));
		p->type = P_CHAL;
		sfmt(p->domain, sizeof(p->domain), "%s", domain);
		sfmt(p->token, sizeof(p->token), "%s", token);
		sfmt(p->keyauth, sizeof(p->keyauth), "%s", keyauth);
	}
	if (type == P_UNCHAL)
		for (unsigned i = 0; i < a->npub; i++)
			if (!strcmp(a->pub[i].token, token)) {
				a->pub[i] = a->pub[--a->npub];
				break;
			}
	if (a->nout == OUTBOX_MAX)
		return; /* the main loop is far behind: a pending one is sent again on sync */
	p = &a->out[a->nout++];
	memset(p, 0, sizeof(*p));
	p->type = type;
	sfmt(p->domain, sizeof(p->domain), "%s", domain ? domain : "");
	sfmt(p->token, sizeof(p->token), "%s", token ? token : "");
	sfmt(p->keyauth, sizeof(p->keyauth), "%s", keyauth ? keyauth : "");
	wake_main(a);
}

static void post_locked(struct acme *a, int type, const char *domain, const char *token,
			const char *keyauth)
{
	pthread_mutex_lock(&a->lock);
	post(a, type, domain, token, keyauth);
	pthread_mutex_unlock(&a->lock);
}

int acme_pollfd(struct acme *a, struct pollfd *p)
{
	if (!a)
		return 0;
	p->fd = a->efd;
	p->events = POLLIN;
	p->revents = 0;
	return 1;
}

void acme_pump(struct acme *a, struct relaylink *rl)
{
	uint64_t v;
	unsigned gen;

	if (!a)
		return;
	if (read(a->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_debug("acme: eventfd: %s", strerror(errno));
	pthread_mutex_lock(&a->lock);
	gen = relaylink_generation(rl);
	if (relaylink_connected(rl) && gen != a->rl_gen) {
		/* a relayd that connected since: every pending challenge again */
		for (unsigned i = 0; i < a->npub; i++)
			relaylink_acme_challenge(rl, a->pub[i].domain, a->pub[i].token,
						 a->pub[i].keyauth);
		a->rl_gen = gen;
	}
	for (unsigned i = 0; i < a->nout; i++) {
		const struct post *p = &a->out[i];

		if (p->type == P_CERTS)
			relaylink_certs(rl);
		else
			relaylink_acme_challenge(rl, p->domain, p->token,
						 p->type == P_CHAL ? p->keyauth : NULL);
	}
	a->nout = 0;
	pthread_mutex_unlock(&a->lock);
}

/* ---------- requests ---------- */

/* "type: detail" of an RFC 7807 problem document, the type without its ACME prefix */
static void problem_text(json_t *p, char *out, size_t n)
{
	const char *type = json_string_value(json_object_get(p, "type"));
	const char *detail = json_string_value(json_object_get(p, "detail"));

	if (type && !strncmp(type, PROBLEM_PREFIX, strlen(PROBLEM_PREFIX)))
		type += strlen(PROBLEM_PREFIX);
	sfmt(out, n, "%s: %s", type ? type : "error", detail ? detail : "(no detail)");
	/* the CA's words end in our log and API: printable ASCII only */
	for (char *c = out; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			*c = '?';
}

static bool stopping(struct acme *a)
{
	bool s;

	pthread_mutex_lock(&a->lock);
	s = a->stop || a->cut;
	pthread_mutex_unlock(&a->lock);
	return s;
}

/* GET or HEAD url: 0 with r (json: the body parsed, NULL if none), or -1 with err */
static int get(struct acme *a, const char *method, const char *url, struct acme_resp *r,
	       json_t **json, char *err, size_t el)
{
	if (json)
		*json = NULL;
	if (acme_http_request(&a->http, method, url, NULL, NULL, NULL, NULL, r, err, el) < 0)
		return -1;
	if (r->nonce[0])
		memcpy(a->nonce, r->nonce, sizeof(a->nonce));
	if (r->status / 100 != 2) {
		sfmt(err, el, "%s %.200s: HTTP status %d", method, url, r->status);
		acme_resp_free(r);
		return -1;
	}
	if (json && r->body) {
		*json = json_loadb(r->body, r->len, 0, NULL);
		if (!*json) {
			sfmt(err, el, "GET %.200s: the answer is no JSON", url);
			acme_resp_free(r);
			return -1;
		}
	}
	return 0;
}

/*
 * A signed POST of payload (NULL: POST-as-GET) to url, with the account's kid
 * (or the key itself when use_jwk). A badNonce is tried again with the nonce
 * it brought. 0 with r and *json (the body, parsed when it is JSON), or -1
 * with err ("type: detail" of the CA's problem document).
 */
static int post_jws(struct acme *a, const char *url, const char *payload, bool use_jwk,
		    struct acme_resp *r, json_t **json, char *err, size_t el)
{
	*json = NULL;
	for (int tries = 0; tries < BAD_NONCE_TRIES; tries++) {
		char *body;
		json_t *j = NULL;
		int ret;

		if (!a->nonce[0]) {
			struct acme_resp nr;

			if (get(a, "HEAD", a->urls.nonce, &nr, NULL, err, el) < 0)
				return -1;
			acme_resp_free(&nr);
			if (!a->nonce[0]) {
				sfmt(err, el, "the CA gave no nonce (%.200s)", a->urls.nonce);
				return -1;
			}
		}
		body = jws_sign(a->akey, use_jwk ? NULL : a->kid, a->nonce, url, payload);
		a->nonce[0] = '\0'; /* used */
		if (!body) {
			sfmt(err, el, "cannot sign the request");
			return -1;
		}
		ret = acme_http_request(&a->http, "POST", url, NULL, NULL, "application/jose+json",
					body, r, err, el);
		free(body);
		if (ret < 0)
			return -1;
		if (r->nonce[0])
			memcpy(a->nonce, r->nonce, sizeof(a->nonce));
		if (r->body && (strstr(r->ctype, "json") || r->body[0] == '{'))
			j = json_loadb(r->body, r->len, 0, NULL);
		if (r->status / 100 == 2) {
			*json = j;
			return 0;
		}
		if (j)
			problem_text(j, err, el);
		else
			sfmt(err, el, "POST %.200s: HTTP status %d", url, r->status);
		if (j && !strcmp(json_string_value(json_object_get(j, "type")) ?: "",
				 PROBLEM_PREFIX "badNonce")) {
			json_decref(j);
			acme_resp_free(r);
			continue;
		}
		json_decref(j);
		acme_resp_free(r);
		return -1;
	}
	return -1;
}

/* a URL the CA sent: https (RFC 8555 6.1; nothing signed goes out in clear), printable */
static const char *url_of(json_t *obj, const char *key)
{
	const char *u = json_string_value(json_object_get(obj, key));

	return acme_url_https(u) ? u : NULL;
}

static int directory(struct acme *a, char *err, size_t el)
{
	struct acme_resp r;
	json_t *d;
	const char *u[4];
	static const char *const keys[4] = {"newNonce", "newAccount", "newOrder", "revokeCert"};

	if (a->urls.order[0])
		return 0;
	if (get(a, "GET", a->conf.directory, &r, &d, err, el) < 0)
		return -1;
	acme_resp_free(&r);
	for (int i = 0; i < 4; i++)
		u[i] = d ? url_of(d, keys[i]) : NULL;
	if (!u[0] || !u[1] || !u[2] || !u[3]) {
		sfmt(err, el,
		     "%.200s is no ACME directory (no newNonce, newAccount, newOrder "
		     "and revokeCert)",
		     a->conf.directory);
		json_decref(d);
		return -1;
	}
	sfmt(a->urls.nonce, sizeof(a->urls.nonce), "%s", u[0]);
	sfmt(a->urls.account, sizeof(a->urls.account), "%s", u[1]);
	sfmt(a->urls.order, sizeof(a->urls.order), "%s", u[2]);
	sfmt(a->urls.revoke, sizeof(a->urls.revoke), "%s", u[3]);
	a->urls.terms =
	    json_is_string(json_object_get(json_object_get(d, "meta"), "termsOfService"));
	json_decref(d);
	return 0;
}

static int account(struct acme *a, char *err, size_t el)
{
	char path[CFG_PATH_MAX + 64], payload[CFG_STR_MAX + 128];
	struct acme_resp r;
	json_t *j;

	if (directory(a, err, el) < 0)
		return -1;
	if (a->kid[0] && a->contact_due) {
		/* [acme] email changed: the account's contact follows (RFC 8555 7.3.2) */
		if (a->conf.email[0])
			sfmt(payload, sizeof(payload), "{\"contact\":[\"mailto:%s\"]}",
			     a->conf.email);
		else
			sfmt(payload, sizeof(payload), "{\"contact\":[]}");
		if (post_jws(a, a->kid, payload, false, &r, &j, err, el) < 0)
			return -1;
		json_decref(j);
		acme_resp_free(&r);
		pthread_mutex_lock(&a->lock);
		a->contact_due = false;
		pthread_mutex_unlock(&a->lock);
		log_info("acme: account %s: contact %s", a->kid,
			 a->conf.email[0] ? a->conf.email : "removed");
	}
	if (a->kid[0])
		return 0;
	if (a->urls.terms && !a->conf.accept_terms) {
		sfmt(err, el,
		     "the CA has terms of service: read them and set [acme] "
		     "accept_terms = on");
		return -1;
	}
	if (!a->akey) {
		sfmt(path, sizeof(path), "%s/account.key", a->conf.dir);
		a->akey = jws_key_load_or_make(path, err, el);
		if (!a->akey || jws_thumbprint(a->akey, a->thumb) < 0)
			return -1;
	}
	if (a->conf.email[0])
		sfmt(payload, sizeof(payload),
		     "{\"termsOfServiceAgreed\":%s,\"contact\":[\"mailto:%s\"]}",
		     a->conf.accept_terms ? "true" : "false", a->conf.email);
	else
		sfmt(payload, sizeof(payload), "{\"termsOfServiceAgreed\":%s}",
		     a->conf.accept_terms ? "true" : "false");
	if (post_jws(a, a->urls.account, payload, true, &r, &j, err, el) < 0)
		return -1;
	json_decref(j);
	if (!acme_url_https(r.location)) {
		sfmt(err, el, "the CA named no account (no https Location)");
		acme_resp_free(&r);
		return -1;
	}
	pthread_mutex_lock(&a->lock);
	memcpy(a->kid, r.location, sizeof(a->kid));
	pthread_mutex_unlock(&a->lock);
	acme_resp_free(&r);
	log_info("acme: account %s at %s", a->kid, a->conf.directory);
	return 0;
}

/* POST-as-GET url until its "status" is none of the waiting ones, or DECIDE_S passed */
static json_t *wait_status(struct acme *a, const char *url, const char *what, char *err, size_t el)
{
	long long until = now_s() + DECIDE_S;

	for (;;) {
		struct acme_resp r;
		json_t *j;
		const char *st;
		unsigned wait_ms = POLL_MS;

		if (post_jws(a, url, NULL, false, &r, &j, err, el) < 0)
			return NULL;
		if (r.retry_after)
			wait_ms = r.retry_after > 10 ? 10000 : r.retry_after * 1000;
		acme_resp_free(&r);
		st = json_string_value(json_object_get(j, "status"));
		if (!st) {
			sfmt(err, el, "the %s has no status", what);
			json_decref(j);
			return NULL;
		}
		if (strcmp(st, "pending") && strcmp(st, "processing"))
			return j;
		json_decref(j);
		if (now_s() >= until) {
			sfmt(err, el, "the CA did not decide the %s within %d s", what, DECIDE_S);
			return NULL;
		}
		if (stopping(a)) {
			sfmt(err, el, "stopped");
			return NULL;
		}
		usleep(wait_ms * 1000);
	}
}

/* relayd answers the challenge on its HTTP listener (what the CA will ask) */
static int self_check(struct acme *a, const char *domain, const char *token, const char *keyauth,
		      char *err, size_t el)
{
	char url[DOMAIN_MAX + ACME_TOKEN_LEN_MAX + 64];

	sfmt(url, sizeof(url), "http://%s" ACME_CHAL_PATH "%s", domain, token);
	for (int i = 0; i < SELFCHECK_TRIES && !stopping(a); i++) {
		struct acme_resp r;
		char why[256];

		if (acme_http_request(&a->http, "GET", url, domain, a->conf.http_at, NULL, NULL, &r,
				      why, sizeof(why)) == 0) {
			bool ok = r.status == 200 && r.body && !strcmp(r.body, keyauth);

			acme_resp_free(&r);
			if (ok)
				return 0;
			sfmt(why, sizeof(why), "HTTP status %d", r.status);
		}
		sfmt(err, el,
		     "nave-relayd does not answer the challenge on %s (%s): is it running and "
		     "connected to nave-controld?",
		     a->conf.http_at, why);
		usleep(100 * 1000);
	}
	if (stopping(a))
		sfmt(err, el, "stopped");
	return -1;
}

/* one authorization of an order: valid already, or proved by HTTP-01 now */
static int authorize(struct acme *a, const char *domain, const char *url, char *err, size_t el)
{
	struct acme_resp r;
	json_t *z, *ch, *c, *http01 = NULL;
	const char *st, *token, *curl;
	char keyauth[ACME_TOKEN_LEN_MAX + 48], tok[ACME_TOKEN_LEN_MAX + 1], chal_url[ACME_URL_MAX];
	size_t i;
	int ret = -1;

	if (post_jws(a, url, NULL, false, &r, &z, err, el) < 0)
		return -1;
	acme_resp_free(&r);
	st = json_string_value(json_object_get(z, "status"));
	if (st && !strcmp(st, "valid")) {
		json_decref(z);
		return 0;
	}
	ch = json_object_get(z, "challenges");
	json_array_foreach(ch, i, c)
	{
		const char *type = json_string_value(json_object_get(c, "type"));

		if (type && !strcmp(type, "http-01"))
			http01 = c;
	}
	token = json_string_value(json_object_get(http01, "token"));
	curl = url_of(http01, "url");
	if (!st || strcmp(st, "pending") || !http01 || !token || !curl ||
	    strlen(token) > ACME_TOKEN_LEN_MAX) {
		sfmt(err, el, "the authorization for %s is %s and offers %s", domain,
		     st ? st : "without status", http01 ? "a broken http-01" : "no http-01");
		goto out;
	}
	/* z goes before they are used: copies */
	sfmt(tok, sizeof(tok), "%s", token);
	sfmt(chal_url, sizeof(chal_url), "%s", curl);
	token = tok;
	curl = chal_url;
	if (snprintf(keyauth, sizeof(keyauth), "%s.%s", token, a->thumb) >= (int)sizeof(keyauth)) {
		sfmt(err, el, "the CA's token is too long");
		goto out;
	}
	post_locked(a, P_CHAL, domain, token, keyauth); /* relayd checks the token itself */
	if (self_check(a, domain, token, keyauth, err, el) < 0)
		goto unpublish;
	json_decref(z);
	z = NULL;
	if (post_jws(a, curl, "{}", false, &r, &c, err, el) < 0)
		goto unpublish;
	acme_resp_free(&r);
	json_decref(c);
	z = wait_status(a, url, "authorization", err, el);
	if (!z)
		goto unpublish;
	st = json_string_value(json_object_get(z, "status"));
	if (!strcmp(st, "valid")) {
		ret = 0;
		goto unpublish;
	}
	/* invalid: the challenge says why */
	sfmt(err, el, "the CA found the authorization %s", st);
	json_array_foreach(json_object_get(z, "challenges"), i, c)
	{
		json_t *e = json_object_get(c, "error");

		if (e) {
			char why[ERR_LEN - 64];

			problem_text(e, why, sizeof(why));
			sfmt(err, el, "challenge http-01 %s: %s", st, why);
		}
	}
unpublish:
	post_locked(a, P_UNCHAL, domain, token, NULL);
out:
	json_decref(z);
	return ret;
}

/* ---------- certificates ---------- */

static void cert_path(const struct acme *a, const char *domain, char *out, size_t n)
{
	sfmt(out, n, "%s/certs/%s.pem", a->conf.dir, domain);
}

static long long asn1_secs(const ASN1_TIME *t)
{
	int days = 0, secs = 0;

	if (!ASN1_TIME_diff(&days, &secs, NULL, t))
		return 0;
	return now_s() + (long long)days * 86400 + secs;
}

/* the leaf's validity and serial, and whether key and name fit: 0, or -1 with err */
static int cert_check(X509 *x, EVP_PKEY *key, const char *domain, long long *nb, long long *na,
		      char *serial, size_t sn, char *err, size_t el)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;

	sfmt(serial, sn, "%s", hex ? hex : "?");
	for (char *c = serial; *c; c++)
		if (*c >= 'A' && *c <= 'F')
			*c = (char)(*c - 'A' + 'a');
	OPENSSL_free(hex);
	BN_free(bn);
	*nb = asn1_secs(X509_get0_notBefore(x));
	*na = asn1_secs(X509_get0_notAfter(x));
	if (key && X509_check_private_key(x, key) != 1) {
		ERR_clear_error();
		sfmt(err, el, "the certificate does not fit its key");
		return -1;
	}
	if (X509_check_host(x, domain, strlen(domain), 0, NULL) != 1) {
		sfmt(err, el, "the certificate does not name %s", domain);
		return -1;
	}
	return 0;
}

/* What the file of d holds now: state, validity, due (under the lock: d is shared). */
static void cert_look(struct acme *a, struct dom *d)
{
	char path[CFG_PATH_MAX + DOMAIN_MAX + 32], err[256] = "";
	FILE *f;
	EVP_PKEY *k = NULL;
	X509 *x = NULL;

	cert_path(a, d->name, path, sizeof(path));
	d->known = true;
	f = fopen(path, "re");
	if (f) {
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		rewind(f);
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
		ERR_clear_error();
	}
	if (!x || !k ||
	    cert_check(x, k, d->name, &d->not_before, &d->not_after, d->serial, sizeof(d->serial),
		       err, sizeof(err)) < 0) {
		if (f)
			log_warn("acme: %s: %s: a new certificate is asked for", path,
				 err[0] ? err : "no key and certificate in PEM");
		d->due = 0;
		d->not_before = d->not_after = 0;
		d->serial[0] = '\0';
		if (d->state == D_VALID)
			d->state = D_NONE;
	} else {
		d->due = acme_due(d->not_before, d->not_after, a->conf.renew_before);
		/* put there by someone else: the minute between two issues is not for it */
		if (strcmp(d->serial, d->issued) && !d->fails)
			d->next_try = 0;
		if (d->state != D_FAILED && d->state != D_REVOKED)
			d->state = D_VALID;
	}
	X509_free(x);
	EVP_PKEY_free(k);
}

/* writes key + chain to the domain's file in one rename; 0 or -1 with err */
static int cert_store(struct acme *a, const char *domain, EVP_PKEY *key, STACK_OF(X509) * chain,
		      char *err, size_t el)
{
	char path[CFG_PATH_MAX + DOMAIN_MAX + 32], tmp[sizeof(path) + 8];
	BIO *b = BIO_new(BIO_s_mem());
	const uint8_t *data;
	size_t len, off = 0;
	int fd = -1, ret = -1;

	cert_path(a, domain, path, sizeof(path));
	sfmt(tmp, sizeof(tmp), "%s.tmp", path);
	if (!b || !PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL))
		goto out;
	for (size_t i = 0; i < sk_X509_num(chain); i++)
		if (!PEM_write_bio_X509(b, sk_X509_value(chain, i)))
			goto out;
	if (!BIO_mem_contents(b, &data, &len))
		goto out;
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		sfmt(err, el, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			sfmt(err, el, "%s: %s", tmp, strerror(errno));
			goto out;
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		sfmt(err, el, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		sfmt(err, el, "%s: %s", path, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (ret < 0 && !err[0])
		sfmt(err, el, "out of memory writing the certificate");
	if (fd >= 0)
		close(fd);
	if (ret < 0)
		unlink(tmp);
	BIO_free(b);
	return ret;
}

/* the PEM chain the CA sent: every certificate of it, the leaf first */
static STACK_OF(X509) * chain_parse(const char *pem, size_t len)
{
	BIO *b = BIO_new_mem_buf(pem, (long)len);
	STACK_OF(X509) *sk = sk_X509_new_null();
	X509 *x;

	while (b && sk && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			break;
		}
	ERR_clear_error();
	BIO_free(b);
	if (sk && !sk_X509_num(sk)) {
		sk_X509_free(sk);
		sk = NULL;
	}
	return sk;
}

static int issue(struct acme *a, const char *domain, char *err, size_t el)
{
	char payload[DOMAIN_MAX + 96], *csr64 = NULL, order_url[ACME_URL_MAX], serial[80],
				       fin_url[ACME_URL_MAX];
	const char *fin, *st, *cert_url;
	struct acme_resp r;
	json_t *o = NULL, *z, *x;
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;
	uint8_t *der = NULL;
	long long nb, na;
	size_t i, n;
	int ret = -1;

	sfmt(payload, sizeof(payload), "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"%s\"}]}",
	     domain);
	if (post_jws(a, a->urls.order, payload, false, &r, &o, err, el) < 0)
		return -1;
	sfmt(order_url, sizeof(order_url), "%s", r.location);
	acme_resp_free(&r);
	fin = url_of(o, "finalize");
	if (!fin || !acme_url_https(order_url) ||
	    json_array_size(json_object_get(o, "authorizations")) != 1) {
		sfmt(err, el,
		     "the CA's order has no https finalize URL or location, or not one "
		     "authorization for its one name");
		goto out;
	}
	sfmt(fin_url, sizeof(fin_url), "%s", fin); /* o goes before it is used */
	fin = fin_url;
	json_array_foreach(json_object_get(o, "authorizations"), i, z)
	{
		const char *u = json_string_value(z);

		if (!acme_url_https(u)) {
			sfmt(err, el,
			     "the CA's order names an authorization URL that is not https");
			goto out;
		}
		if (authorize(a, domain, u, err, el) < 0)
			goto out;
	}
	/* a new key for every certificate */
	key = jws_key_new();
	n = key ? jws_csr(key, domain, &der) : 0;
	csr64 = n ? malloc(4 * (n / 3 + 1) + 64) : NULL;
	if (!csr64) {
		sfmt(err, el, "cannot make a key and CSR");
		goto out;
	}
	memcpy(csr64, "{\"csr\":\"", 8);
	n = 8 + b64url_encode(der, n, csr64 + 8);
	memcpy(csr64 + n, "\"}", 3);
	json_decref(o);
	o = NULL;
	if (post_jws(a, fin, csr64, false, &r, &o, err, el) < 0)
		goto out;
	acme_resp_free(&r);
	json_decref(o);
	o = wait_status(a, order_url, "order", err, el);
	if (!o)
		goto out;
	st = json_string_value(json_object_get(o, "status"));
	cert_url = url_of(o, "certificate");
	if (strcmp(st, "valid") || !cert_url) {
		json_t *e = json_object_get(o, "error");

		if (e) {
			char why[ERR_LEN - 64];

			problem_text(e, why, sizeof(why));
			sfmt(err, el, "the order is %s: %s", st, why);
		} else {
			sfmt(err, el, "the order is %s%s", st,
			     cert_url ? "" : " without a certificate URL");
		}
		goto out;
	}
	if (post_jws(a, cert_url, NULL, false, &r, &x, err, el) < 0)
		goto out;
	json_decref(x);
	chain = r.body ? chain_parse(r.body, r.len) : NULL;
	acme_resp_free(&r);
	if (!chain) {
		sfmt(err, el, "the CA's certificate is no PEM chain");
		goto out;
	}
	if (cert_check(sk_X509_value(chain, 0), key, domain, &nb, &na, serial, sizeof(serial), err,
		       el) < 0 ||
	    cert_store(a, domain, key, chain, err, el) < 0)
		goto out;
	log_info("acme: %s: certificate %s issued, valid until %lld (unix time)", domain, serial,
		 na);
	post_locked(a, P_CERTS, NULL, NULL, NULL);
	ret = 0;
out:
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
	OPENSSL_free(der);
	free(csr64);
	json_decref(o);
	return ret;
}

static int do_revoke(struct acme *a, const char *domain, char *err, size_t el)
{
	char path[CFG_PATH_MAX + DOMAIN_MAX + 32], *payload = NULL, serial[80];
	uint8_t *der = NULL;
	struct acme_resp r;
	json_t *j;
	long long nb, na;
	X509 *x = NULL;
	FILE *f;
	int n, ret = -1;

	cert_path(a, domain, path, sizeof(path));
	f = fopen(path, "re");
	if (f) {
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
		ERR_clear_error();
	}
	if (!x) {
		sfmt(err, el, "%s: no certificate to revoke", path);
		return -1;
	}
	cert_check(x, NULL, domain, &nb, &na, serial, sizeof(serial), err, el);
	n = i2d_X509(x, &der);
	payload = n > 0 ? malloc(4 * ((size_t)n / 3 + 1) + 64) : NULL;
	if (!payload) {
		sfmt(err, el, "out of memory");
		goto out;
	}
	strcpy(payload, "{\"certificate\":\"");
	b64url_encode(der, (size_t)n, payload + strlen(payload));
	strcat(payload, "\"}");
	if (post_jws(a, a->urls.revoke, payload, false, &r, &j, err, el) < 0) {
		char why[ERR_LEN - 64];

		sfmt(why, sizeof(why), "%s", err);
		sfmt(err, el, "revoking %s: %s", serial, why);
		goto out;
	}
	json_decref(j);
	acme_resp_free(&r);
	unlink(path);
	log_info("acme: %s: certificate %s revoked", domain, serial);
	post_locked(a, P_CERTS, NULL, NULL, NULL);
	ret = 0;
out:
	X509_free(x);
	OPENSSL_free(der);
	free(payload);
	return ret;
}

/* ---------- the thread ---------- */

static int mkdirs(const struct acme *a, char *err, size_t el)
{
	char certs[sizeof(a->conf.dir) + 8];

	sfmt(certs, sizeof(certs), "%s/certs", a->conf.dir);
	if ((mkdir(a->conf.dir, 0700) < 0 && errno != EEXIST) ||
	    (mkdir(certs, 0700) < 0 && errno != EEXIST)) {
		sfmt(err, el, "%s: %s", certs, strerror(errno));
		return -1;
	}
	return 0;
}

/* the next domain to work on (under the lock), or NULL with *wake when to look again */
static struct dom *pick(struct acme *a, long long now, long long *wake)
{
	*wake = now + RECHECK_S;
	if (now >= a->next_look) { /* the files are looked at again at least this often */
		for (unsigned i = 0; i < a->ndom; i++)
			a->dom[i].known = false;
		a->next_look = now + RECHECK_S;
	}
	for (unsigned i = 0; i < a->ndom; i++)
		if (a->dom[i].revoke)
			return &a->dom[i];
	for (unsigned i = 0; i < a->ndom; i++) {
		struct dom *d = &a->dom[i];
		long long at;

		if (!d->known)
			cert_look(a, d);
		at = d->due > d->next_try ? d->due : d->next_try;
		if (d->force || (a->error[0] == '\0' && at <= now) ||
		    (a->error[0] && d->next_try <= now))
			return d;
		if (at < *wake)
			*wake = at;
	}
	return NULL;
}

static void fail(struct acme *a, struct dom *d, const char *err)
{
	long long back = BACKOFF_MIN_S;

	for (unsigned i = 1; i < d->fails && back < BACKOFF_MAX_S; i++)
		back *= 2;
	if (back > BACKOFF_MAX_S)
		back = BACKOFF_MAX_S;
	d->next_try = now_s() + back;
	d->state = D_FAILED;
	sfmt(d->error, sizeof(d->error), "%s", err);
}

/* what the CA or the system said, for the log and the API: printable ASCII, cut */
static void clean(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
}

static void *acme_main(void *arg)
{
	struct acme *a = arg;
	bool ca_due = true; /* the CA file is read (again) before the next request */

	pthread_setname_np(pthread_self(), "acme");
	pthread_mutex_lock(&a->lock);
	while (!a->stop) {
		char err[ERR_LEN] = "", name[DOMAIN_MAX + 1];
		long long now = now_s(), wake;
		bool rev, ok, cut, revoked;
		struct dom *d;
		int ret;

		if (a->reconf) {
			bool same = !strcmp(a->conf.directory, a->next.directory) &&
				    !strcmp(a->conf.ca, a->next.ca);

			a->contact_due |= a->kid[0] && strcmp(a->conf.email, a->next.email);
			a->conf = a->next;
			a->reconf = false;
			a->error[0] = '\0';
			ca_due = true; /* its contents may have changed under the same name */
			if (!same) {   /* a new CA or trust: a new account session */
				a->kid[0] = '\0';
				a->contact_due = false;
				memset(&a->urls, 0, sizeof(a->urls));
			}
		}
		a->cut = false;
		acme_http_resume(&a->http); /* an exchange cut by a reload is over */
		d = pick(a, now, &wake);
		if (!d) {
			struct timespec ts = {.tv_sec = (time_t)wake};

			pthread_cond_timedwait(&a->cond, &a->lock, &ts);
			continue;
		}
		rev = d->revoke;
		d->revoke = false;
		d->force = false;
		d->prev = d->state;
		d->state = D_WORKING;
		d->attempts++;
		sfmt(name, sizeof(name), "%s", d->name);
		pthread_mutex_unlock(&a->lock);

		ret = mkdirs(a, err, sizeof(err));
		if (!ret && ca_due) {
			ret = acme_http_set_ca(&a->http, a->conf.ca, err, sizeof(err));
			ca_due = ret != 0;
		}
		if (!ret)
			ret = account(a, err, sizeof(err));
		ok = !ret;
		revoked = false;
		if (!ret && rev) {
			ret = do_revoke(a, name, err, sizeof(err));
			revoked = !ret;
		}
		if (!ret)
			ret = issue(a, name, err, sizeof(err));
		clean(err);

		pthread_mutex_lock(&a->lock);
		cut = a->cut || a->stop; /* a reload of the CA or a stop cut it: no failure */
		/* a reload may have changed the list: find the domain again */
		d = NULL;
		for (unsigned i = 0; i < a->ndom; i++)
			if (!strcmp(a->dom[i].name, name))
				d = &a->dom[i];
		if (!cut)
			sfmt(a->error, sizeof(a->error), "%s", ok ? "" : err);
		if (!d)
			continue;
		if (revoked) {
			/* the file is gone: nothing of the old certificate decides the next try */
			d->serial[0] = '\0';
			d->not_before = d->not_after = d->due = 0;
			d->known = false;
		}
		if (ret && cut) {
			d->state = revoked ? D_REVOKED : d->prev;
			d->revoke |= rev && !revoked; /* the admin's revocation is still to do */
			d->known = false; /* looked at again, then tried again at once */
			log_info("acme: %s: stopped by a reload or a stop", name);
		} else if (ret) {
			d->fails++;
			fail(a, d, err);
			log_error("acme: %s: %s (next try in %lld s)", name, err,
				  d->next_try - now_s());
		} else {
			d->fails = 0;
			d->error[0] = '\0';
			d->state = D_VALID;
			cert_look(a, d);
			sfmt(d->issued, sizeof(d->issued), "%s", d->serial);
			/* never issued again within a minute, whatever the CA's validity */
			d->next_try = now_s() + BACKOFF_MIN_S;
			if (d->due <= now_s() + BACKOFF_MIN_S) {
				d->fails++;
				fail(a, d,
				     "the CA's certificate is due for renewal within a minute "
				     "of its issue: its validity is too short for renew_before");
				d->state = D_VALID; /* it is valid and served meanwhile */
				log_warn("acme: %s: %s (next try in %lld s)", name, d->error,
					 d->next_try - now_s());
			}
		}
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

static int start(struct acme *a)
{
	int e;

	a->stop = false;
	e = pthread_create(&a->th, NULL, acme_main, a);
	if (e) {
		log_error("acme: cannot start its thread: %s", strerror(e));
		return -e;
	}
	a->running = true;
	return 0;
}

static void stop(struct acme *a)
{
	if (!a->running)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
	acme_http_abort(&a->http);
	pthread_join(a->th, NULL);
	a->running = false;
	acme_http_resume(&a->http);
	a->kid[0] = '\0';
	memset(&a->urls, 0, sizeof(a->urls));
	/* relayd stops answering what was pending (acme_pump sends it) */
	pthread_mutex_lock(&a->lock);
	while (a->npub) {
		struct post p = a->pub[0];

		post(a, P_UNCHAL, p.domain, p.token, NULL);
	}
	pthread_mutex_unlock(&a->lock);
}

int acme_open(struct acme **out, const struct cfg_server *cfg)
{
	struct acme *a = calloc(1, sizeof(*a));
	pthread_condattr_t ca;

	*out = NULL;
	if (!a)
		return -ENOMEM;
	a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (a->efd < 0) {
		int e = -errno;

		free(a);
		return e;
	}
	pthread_mutex_init(&a->lock, NULL);
	acme_http_init(&a->http);
	pthread_condattr_init(&ca);
	pthread_cond_init(&a->cond, &ca); /* CLOCK_REALTIME: wake-ups are wall-clock times */
	pthread_condattr_destroy(&ca);
	a->rl_gen = ~0u;
	conf_from(&a->conf, cfg);
	if (cfg->acme_directory[0]) {
		domains_from(a, cfg);
		if (start(a) < 0) {
			acme_close(a);
			return -EAGAIN;
		}
		log_info("acme: certificates for %u domain(s) from %s", a->ndom,
			 cfg->acme_directory);
	}
	*out = a;
	return 0;
}

void acme_close(struct acme *a)
{
	if (!a)
		return;
	stop(a);
	acme_http_free(&a->http);
	EVP_PKEY_free(a->akey);
	close(a->efd);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

void acme_reconfigure(struct acme *a, const struct cfg_server *cfg)
{
	if (!cfg->acme_directory[0]) {
		if (a->running)
			log_info("acme: [acme] directory is empty now: no more certificates are "
				 "asked for (those issued stay)");
		stop(a);
		pthread_mutex_lock(&a->lock);
		a->ndom = 0;
		pthread_mutex_unlock(&a->lock);
		return;
	}
	bool cut;

	pthread_mutex_lock(&a->lock);
	conf_from(&a->next, cfg);
	domains_from(a, cfg);
	a->reconf = true;
	/* an exchange with the old CA, or under the old trust, ends now; any other
	   change waits for the attempt in progress */
	cut = a->running &&
	      (strcmp(a->conf.directory, a->next.directory) || strcmp(a->conf.ca, a->next.ca));
	a->cut |= cut;
	if (cut) /* under a->lock: the thread cannot resume before it (a->lock, then h->lock) */
		acme_http_abort(&a->http);
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
	if (!a->running) {
		a->conf = a->next;
		start(a);
	}
}

json_t *acme_status(struct acme *a)
{
	json_t *o, *arr = json_array();

	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; arr && i < a->ndom; i++) {
		const struct dom *d = &a->dom[i];

		json_array_append_new(
		    arr, json_pack("{s:s, s:s, s:s?, s:I, s:I, s:I, s:I, s:s?, s:i}", "domain",
				   d->name, "state", state_names[d->state], "serial",
				   d->serial[0] ? d->serial : NULL, "not_before",
				   (json_int_t)d->not_before, "not_after", (json_int_t)d->not_after,
				   "renew_at", (json_int_t)(d->not_after ? d->due : 0), "next_try",
				   (json_int_t)d->next_try, "error", d->error[0] ? d->error : NULL,
				   "attempts", (int)d->attempts));
	}
	o = json_pack("{s:b, s:s?, s:s?, s:s?, s:o?}", "enabled", a->running, "directory",
		      a->running ? a->conf.directory : NULL, "account", a->kid[0] ? a->kid : NULL,
		      "error", a->error[0] ? a->error : NULL, "domains", arr);
	pthread_mutex_unlock(&a->lock);
	return o;
}

static struct dom *find(struct acme *a, const char *domain)
{
	for (unsigned i = 0; i < a->ndom; i++)
		if (!strcmp(a->dom[i].name, domain))
			return &a->dom[i];
	return NULL;
}

static int ask(struct acme *a, const char *domain, bool rev, char *err, size_t errlen)
{
	char d[DOMAIN_MAX + 1];
	struct dom *x;
	int ret = 0;

	if (!a->running) {
		sfmt(err, errlen, "ACME is off: set [acme] directory");
		return -1;
	}
	if (domain && !domain_norm(domain, strlen(domain), d, false)) {
		sfmt(err, errlen, "not a domain name");
		return -1;
	}
	pthread_mutex_lock(&a->lock);
	x = domain ? find(a, d) : NULL;
	if (domain && !x) {
		sfmt(err, errlen, "%s is not in [acme] domains", d);
		ret = -1;
	} else if (rev && !x->serial[0]) {
		sfmt(err, errlen, "%s has no certificate to revoke", d);
		ret = -1;
	} else {
		for (unsigned i = 0; i < a->ndom; i++)
			if (!x || x == &a->dom[i]) {
				a->dom[i].force = true;
				a->dom[i].revoke |= rev;
				a->dom[i].next_try = 0;
			}
		pthread_cond_signal(&a->cond);
	}
	pthread_mutex_unlock(&a->lock);
	return ret;
}

int acme_renew(struct acme *a, const char *domain, char *err, size_t errlen)
{
	return ask(a, domain, false, err, errlen);
}

int acme_revoke(struct acme *a, const char *domain, char *err, size_t errlen)
{
	if (!domain) {
		sfmt(err, errlen, "name the domain whose certificate to revoke");
		return -1;
	}
	return ask(a, domain, true, err, errlen);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * The HTTP edge of the relay role: public HTTP connections routed by Host.
 *
 * An accepted connection reads its first request head (PS_HEAD, bounded by
 * [http] max_head and header_timeout), parsed by common/http.c. The head's
 * host picks a route (routes.h): unknown hosts, offline tunnels, redirects
 * and failed basic auth are answered by the edge itself and the connection
 * closes. Otherwise the connection goes to the tunnel's home worker (with
 * the bytes read so far) and takes a data link like a TCP port's connection,
 * with a BIND that names the route (LINK_BIND_HTTP).
 *
 * Once bound, every byte the client sends still passes the parser: each
 * request head is checked (same route) and rewritten (X-Forwarded-*, Host),
 * bodies go through as they are, and after an Upgrade everything is raw.
 * Responses are relayed as they come. A later request that cannot go on
 * (another host, a malformed head) is not forwarded: the service gets the
 * end of the client's direction, answers what it has, and the connection
 * closes after that.
 */
#include "acme_chal.h"
#include "dp.h"

#include "cidr.h"
#include "http.h"
#include "log.h"
#include "passwd.h"
#include "routes.h"
#include "sock.h"
#include "tlspeek.h"
#include "xprt_tls.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/base64.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

/* What the edge answered by itself: engine_stats.http_errors[] */
enum http_cause {
	HC_BAD,	    /* 400 malformed request */
	HC_NO_HOST, /* 400 no (valid) Host */
	HC_UNKNOWN, /* 404 no route for the host */
	HC_OFFLINE, /* 502 the tunnel is offline or has no rule for it now */
	HC_LARGE,   /* 431 head too large */
	HC_TIMEOUT, /* 408 head not complete within header_timeout */
	HC_BUSY,    /* 503 no data link became free */
	HC_AUTH,    /* 401 basic auth missing or wrong */
};

struct hconn {
	struct http_req req;
	struct http_head head;
	uint8_t *in; /* client bytes not dealt with yet (a partial head, or what did not fit) */
	uint32_t in_len, in_cap;
	uint16_t route;	     /* bound: the route (BIND port) */
	struct tunnel *tun;  /* bound: the route's tunnel */
	bool stopped;	     /* no more client bytes go to the service */
	bool blocked;	     /* feed stopped for room on the link */
	bool trusted;	     /* the peer is in [http] trusted_proxies */
	bool tunnel_port;    /* PS_HELLO: on the port tunnels share (ALPN nave/1 is a link) */
	bool passthrough;    /* TLS bytes relayed as they are (a passthrough rule) */
	bool tls;	     /* the edge terminates this connection's TLS (p->x) */
	bool qfull;	     /* HTTP_RESP_QUEUE requests wait for answers: no more go on */
	bool eof_pending;    /* the client ended its direction behind bytes still held here */
	bool auth_counted;   /* a check of this connection counts against its source */
	uint64_t head_since; /* bound: when the partial head waiting here began (ms), 0: none */
	/* [http] settings when it was accepted (a reload changes later connections') */
	uint32_t header_ms, keepalive_ms, max_head;
	bool resp_raw; /* the service switched protocols (101): responses are not followed */
	struct http_resp resp; /* the service's answers, followed to find the 101 of an Upgrade */
	char ip[INET6_ADDRSTRLEN]; /* the peer, for X-Forwarded-For and logs */
	char host[DOMAIN_MAX + 1]; /* the first request's host */
	char cert[DOMAIN_MAX + 1]; /* terminated: the certificate's name (or wildcard) */
	uint8_t auth_ok[32];	   /* the Authorization value verified on this connection */
	bool has_auth_ok;
};

/* A connection routed to a tunnel homed on another worker, with what it read. */
struct edge_handoff {
	int fd;
	struct xprt x; /* a terminated connection's TLS */
	struct hconn *h;
	struct link_bind bind; /* the route and tunnel are in h */
	uint64_t t0;	       /* its accept (the record's start), ms */
};

static const char *const cause_text[] = {
    [HC_BAD] = "malformed request",
    [HC_NO_HOST] = "no valid Host",
    [HC_UNKNOWN] = "no tunnel serves this host",
    [HC_OFFLINE] = "tunnel offline",
    [HC_LARGE] = "request head too large",
    [HC_TIMEOUT] = "request head timed out",
    [HC_BUSY] = "no data link free",
    [HC_AUTH] = "authorization required",
};

/* ---------- the edge's own answers ---------- */

/* Sends a complete response on p (not bound) and closes it once it is out. */
static int pub_put(struct worker *w, struct conn *p, const void *buf, size_t n);

static void answer(struct worker *w, struct conn *p, int status, const char *extra,
		   const char *text)
{
	uint8_t page[4096];
	size_t n;

	n = http_error_page(page, sizeof(page), status, extra, text);
	if (!n) {
		conn_close(w, p, true, "answer does not fit");
		return;
	}
	if (pub_put(w, p, page, n) < 0)
		return;
	p->connected = true; /* the send path treats it as a live socket */
	p->deadline = w->now + 5000;
	p->linger = true;
	p->state = PS_BOUND; /* answered: nothing it sends now is read */
	obuf_kick(w, p);
}

/* A fatal TLS alert (record version 1.2, as a server before its hello) and close. */
static void alert(struct worker *w, struct conn *p, uint8_t desc)
{
	uint8_t a[7] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, desc};

	if (!obuf_ensure(w, p)) {
		conn_close(w, p, true, "out of memory");
		return;
	}
	memcpy(p->tx.p + p->tx.tail, a, sizeof(a));
	p->tx.tail += sizeof(a);
	p->connected = true;
	p->deadline = w->now + 5000;
	p->linger = true;
	obuf_kick(w, p);
}

#define ALERT_INTERNAL_ERROR 80
#define ALERT_UNRECOGNIZED   112
#define ALERT_DECODE_ERROR   50

static void refuse(struct worker *w, struct conn *p, enum http_cause cause, int status,
		   const char *extra)
{
	atomic_fetch_add(&w->st_http_err[cause], 1);
	log_every(NLOG_INFO, "http: %s: %d %s", p->http->ip, status, cause_text[cause]);
	answer(w, p, status, extra, cause_text[cause]);
}

static void refuse_status(struct worker *w, struct conn *p, int status)
{
	refuse(w, p, status == 431 ? HC_LARGE : HC_BAD, status, NULL);
}

/* ---------- buffered client bytes ---------- */

static bool in_keep(struct hconn *h, const uint8_t *p, size_t n)
{
	size_t need = (size_t)h->in_len + n;

	if (need > h->in_cap) {
		size_t cap = h->in_cap ? h->in_cap : 4096;
		uint8_t *b;

		while (cap < need)
			cap *= 2;
		b = realloc(h->in, cap);
		if (!b)
			return false;
		h->in = b;
		h->in_cap = (uint32_t)cap;
	}
	memmove(h->in + h->in_len, p, n);
	h->in_len += (uint32_t)n;
	return true;
}

/* Drops the first n buffered bytes; frees the buffer when it is empty. */
static void in_drop(struct hconn *h, size_t n)
{
	if (n >= h->in_len) {
		free(h->in);
		h->in = NULL;
		h->in_len = h->in_cap = 0;
		return;
	}
	memmove(h->in, h->in + n, h->in_len - n);
	h->in_len -= (uint32_t)n;
}

/* ---------- basic auth ---------- */

/*
 * scrypt is slow on purpose (~50 ms at nave's cost): it never runs on a worker.
 * A verifier thread per engine takes the checks from a bounded queue and posts
 * each answer back to the worker (MB_AUTH); the connection waits in PS_AUTH.
 * What was checked once is remembered by its SHA-256 (with the rule's hash),
 * on the connection and in the worker's small cache, so a browser's next
 * requests and connections cost nothing. A full queue is a 503 (busy), never
 * a stalled worker.
 */
#define AUTHQ_MAX	64 /* checks waiting for the verifier, all workers */
#define AUTH_CACHED	32 /* credentials a worker remembers as checked */
#define AUTH_WAIT_MS	10000
#define AUTH_PER_SOURCE 4 /* checks one source (an IPv4 address, an IPv6 /64) has queued */

static const char auth_tag; /* its address tags the per-source count of checks */

struct auth_job {
	int worker;
	uint32_t idx, gen;
	uint8_t key[SHA256_DIGEST_LENGTH];
	char pass[PASSWD_PASS_MAX + 1];
	size_t passlen;
	char hash[LINK_AUTH_MAX + 1];
	struct auth_job *next;
};

struct auth_answer {
	uint32_t idx, gen;
	bool ok;
	uint8_t key[SHA256_DIGEST_LENGTH];
};

struct authq {
	struct engine *e;
	pthread_t thread;
	pthread_cond_t cond;
	struct auth_job *head, *tail;
	unsigned n;
};

/* per worker thread: every worker is one thread */
static __thread unsigned auth_next;
static __thread uint8_t auth_cache[AUTH_CACHED][SHA256_DIGEST_LENGTH];

static void *authq_main(void *arg)
{
	struct authq *q = arg;
	struct engine *e = q->e;

	pthread_setname_np(pthread_self(), "basic-auth");

	pthread_mutex_lock(&e->aq_lock);
	for (;;) {
		struct auth_job *j;
		struct auth_answer res;
		struct mb_msg m;

		while (!q->head && !e->aq_stop)
			pthread_cond_wait(&q->cond, &e->aq_lock);
		if (e->aq_stop)
			break;
		j = q->head;
		q->head = j->next;
		if (!q->head)
			q->tail = NULL;
		q->n--;
		pthread_mutex_unlock(&e->aq_lock);
		res.idx = j->idx;
		res.gen = j->gen;
		memcpy(res.key, j->key, sizeof(res.key));
		res.ok = passwd_verify(j->pass, j->passlen, j->hash);
		OPENSSL_cleanse(j->pass, sizeof(j->pass));
		memset(&m, 0, sizeof(m));
		m.type = MB_AUTH;
		m.data = (uint8_t *)&res;
		m.len = sizeof(res);
		engine_post(e, j->worker, &m);
		free(j);
		pthread_mutex_lock(&e->aq_lock);
	}
	pthread_mutex_unlock(&e->aq_lock);
	return NULL;
}

/* Queues a check; false when the queue is full or no verifier can run. */
static bool authq_push(struct worker *w, struct auth_job *j)
{
	struct engine *e = w->e;
	struct authq *q;
	bool ok = false;

	pthread_mutex_lock(&e->aq_lock);
	if (!e->aq && !e->aq_stop) {
		q = calloc(1, sizeof(*q));
		if (q) {
			q->e = e;
			pthread_cond_init(&q->cond, NULL);
			if (pthread_create(&q->thread, NULL, authq_main, q) == 0) {
				e->aq = q;
			} else {
				pthread_cond_destroy(&q->cond);
				free(q);
			}
		}
	}
	q = e->aq;
	if (q && !e->aq_stop && q->n < AUTHQ_MAX) {
		j->next = NULL;
		if (q->tail)
			q->tail->next = j;
		else
			q->head = j;
		q->tail = j;
		q->n++;
		pthread_cond_signal(&q->cond);
		ok = true;
	}
	pthread_mutex_unlock(&e->aq_lock);
	return ok;
}

void edge_authq_stop(struct engine *e)
{
	struct authq *q;

	pthread_mutex_lock(&e->aq_lock);
	e->aq_stop = true;
	q = e->aq;
	e->aq = NULL;
	if (q)
		pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&e->aq_lock);
	if (!q)
		return;
	pthread_join(q->thread, NULL);
	while (q->head) {
		struct auth_job *j = q->head;

		q->head = j->next;
		OPENSSL_cleanse(j->pass, sizeof(j->pass));
		free(j);
	}
	pthread_cond_destroy(&q->cond);
	free(q);
}

enum auth_result { AUTH_OK, AUTH_FAIL, AUTH_BUSY, AUTH_WAIT };

/*
 * The request's Authorization against rt's "USER:HASH": OK when it was checked
 * before, FAIL when it cannot be right, WAIT when the verifier now checks it
 * (only with wait: the connection parks in PS_AUTH), BUSY when it cannot.
 */
static enum auth_result auth_check(struct worker *w, struct conn *p, const struct http_route *rt,
				   const uint8_t *base, bool wait)
{
	struct hconn *h = p->http;
	const char *stored = rt->auth, *colon = strchr(stored, ':');
	uint8_t key[SHA256_DIGEST_LENGTH], dec[384];
	const uint8_t *v, *sep;
	size_t vlen, dlen, plen;
	SHA256_CTX sc;
	struct http_span sp;
	struct auth_job *j;
	int i = h->head.authorization;

	if (i < 0 || !colon)
		return AUTH_FAIL;
	sp = h->req.hdr[i].value;
	v = base + sp.off;
	vlen = sp.len;
	while (vlen && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	if (vlen < 7 || strncasecmp((const char *)v, "basic ", 6) || vlen > 6 + 512)
		return AUTH_FAIL;
	SHA256_Init(&sc);
	SHA256_Update(&sc, stored, strlen(stored) + 1);
	SHA256_Update(&sc, v, vlen);
	SHA256_Final(key, &sc);
	if (h->has_auth_ok && !CRYPTO_memcmp(h->auth_ok, key, sizeof(key)))
		return AUTH_OK;
	for (unsigned k = 0; k < AUTH_CACHED; k++)
		if (!CRYPTO_memcmp(auth_cache[k], key, sizeof(key))) {
			memcpy(h->auth_ok, key, sizeof(key));
			h->has_auth_ok = true;
			return AUTH_OK;
		}
	v += 6;
	vlen -= 6;
	while (vlen && *v == ' ') {
		v++;
		vlen--;
	}
	if (!EVP_DecodeBase64(dec, &dlen, sizeof(dec) - 1, v, vlen))
		return AUTH_FAIL;
	sep = memchr(dec, ':', dlen);
	if (!sep || (size_t)(sep - dec) != (size_t)(colon - stored) ||
	    memcmp(dec, stored, (size_t)(colon - stored)))
		return AUTH_FAIL;
	plen = dlen - (size_t)(sep + 1 - dec);
	if (plen > PASSWD_PASS_MAX)
		return AUTH_FAIL;
	if (!wait)
		return AUTH_FAIL; /* new credentials in the middle of a connection */
	/* one source cannot fill the verifier's queue for everyone */
	if (relay_src_tag_add(w, &auth_tag, p->bind.origin_addr) > AUTH_PER_SOURCE) {
		relay_src_tag_del(w, &auth_tag, p->bind.origin_addr);
		return AUTH_BUSY;
	}
	h->auth_counted = true;
	j = calloc(1, sizeof(*j));
	if (!j)
		return AUTH_BUSY;
	j->worker = w->id;
	j->idx = conn_idx(w, p);
	j->gen = p->gen;
	memcpy(j->key, key, sizeof(key));
	memcpy(j->pass, sep + 1, plen);
	j->passlen = plen;
	str_copy(j->hash, sizeof(j->hash), colon + 1);
	OPENSSL_cleanse(dec, sizeof(dec));
	if (!authq_push(w, j)) {
		OPENSSL_cleanse(j->pass, sizeof(j->pass));
		free(j);
		return AUTH_BUSY;
	}
	return AUTH_WAIT;
}

/* 308 to the same URL over https (--redirect-https) */
static void redirect_https(struct worker *w, struct conn *p, const uint8_t *base)
{
	struct hconn *h = p->http;
	const struct http_span *u = &h->req.url;
	char extra[DOMAIN_MAX + 2048 + 64], port[8] = "";
	const char *target = "/";
	size_t tlen = 1;

	if (u->len && base[u->off] == '/' && u->len <= 2048) {
		bool ok = true;

		for (uint32_t k = 0; k < u->len && ok; k++)
			ok = base[u->off + k] > 0x20 && base[u->off + k] < 0x7f;
		if (ok) {
			target = (const char *)base + u->off;
			tlen = u->len;
		}
	}
	if (w->e->cfg.https_port != 443)
		snprintf(port, sizeof(port), ":%u", w->e->cfg.https_port);
	snprintf(extra, sizeof(extra), "Location: https://%s%s%.*s\r\n", h->host, port, (int)tlen,
		 target);
	log_every(NLOG_DEBUG, "http: %s: 308 to https://%s%s", h->ip, h->host, port);
	answer(w, p, 308, extra, "this site is served over https");
}

/*
 * An ACME HTTP-01 validation (acme_chal.h): plain HTTP, GET or HEAD of
 * ACME_CHAL_PREFIX TOKEN for a token controld published for this host. true
 * when the edge answered it (200 with the key authorization).
 */
static bool acme_answer(struct worker *w, struct conn *p, const uint8_t *base, const char *host)
{
	static const size_t plen = sizeof(ACME_CHAL_PREFIX) - 1;
	struct hconn *h = p->http;
	const struct http_span *u = &h->req.url;
	char keyauth[ACME_KEYAUTH_MAX + 1], page[ACME_KEYAUTH_MAX + 256];
	size_t n;
	int len;

	if (h->tls || (h->head.method != HTTP_GET && h->head.method != HTTP_HEAD) ||
	    u->len <= plen || memcmp(base + u->off, ACME_CHAL_PREFIX, plen))
		return false;
	n = acme_chal_find(host, (const char *)base + u->off + plen, u->len - plen, keyauth,
			   w->now);
	if (!n)
		return false;
	len = snprintf(
	    page, sizeof(page),
	    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n%s",
	    n, h->head.method == HTTP_HEAD ? "" : keyauth);
	log_every(NLOG_INFO, "http: %s: answered the ACME challenge for %s", h->ip, host);
	if (len < 0 || (size_t)len >= sizeof(page) || pub_put(w, p, page, (size_t)len) < 0)
		return true;
	p->connected = true;
	p->deadline = w->now + 5000;
	p->linger = true;
	p->state = PS_BOUND;
	obuf_kick(w, p);
	return true;
}

/* ---------- routing ---------- */

/*
 * The certificate for host: its own, else a wildcard one label up, as
 * browsers accept them (*.example.com covers a.example.com, not a.b.example.com).
 */
static const struct http_route *cert_find(struct worker *w, const char *host)
{
	const struct http_route *c = http_routes_find(w->certs, host);
	const char *dot;

	if (!c || !domain_is_wildcard(c->domain))
		return c;
	dot = strchr(host, '.');
	return dot && !strcmp(c->domain + 1, dot) ? c : NULL;
}

/* On a terminated connection a request may only name hosts its certificate covers. */
static bool host_fits_cert(struct worker *w, const struct hconn *h, const char *host)
{
	const struct http_route *c;

	if (!h->tls)
		return true;
	c = cert_find(w, host);
	return c && !strcmp(c->domain, h->cert);
}

/*
 * The route for the head at base, checked: NULL when the edge answered
 * (and p is closing). Sets *rt.
 */
static const struct http_route *route_head(struct worker *w, struct conn *p, const uint8_t *base)
{
	struct hconn *h = p->http;
	const struct http_route *rt;
	char host[DOMAIN_MAX + 1];

	if (h->head.method == HTTP_CONNECT) {
		refuse(w, p, HC_BAD, 405,
		       "Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n");
		return NULL;
	}
	if (!http_head_host(&h->req, base, &h->head, host)) {
		refuse(w, p, HC_NO_HOST, 400, NULL);
		return NULL;
	}
	if (acme_answer(w, p, base, host))
		return NULL;
	if (!host_fits_cert(w, h, host)) {
		/* another name than the TLS connection was made for (domain fronting) */
		refuse(w, p, HC_UNKNOWN, 421, NULL);
		return NULL;
	}
	rt = http_routes_find(w->routes, host);
	if (!rt) {
		refuse(w, p, HC_UNKNOWN, 404, NULL);
		return NULL;
	}
	if (rt->flags & ROUTE_PASSTHROUGH) {
		/* its service takes TLS only: plain HTTP would reach it as garbage */
		refuse(w, p, HC_UNKNOWN, 421, NULL);
		return NULL;
	}
	if (!rt->route || atomic_load(&rt->tun->home) < 0) {
		refuse(w, p, HC_OFFLINE, 502, NULL);
		return NULL;
	}
	str_copy(h->host, sizeof(h->host), host);
	if ((rt->flags & ROUTE_REDIRECT_HTTPS) && !h->tls) {
		redirect_https(w, p, base);
		return NULL;
	}
	if (rt->auth[0]) {
		enum auth_result a = auth_check(w, p, rt, base, true);

		if (a == AUTH_WAIT) {
			/* the verifier answers with MB_AUTH (edge_auth_done) */
			p->state = PS_AUTH;
			p->deadline = w->now + AUTH_WAIT_MS;
			return NULL;
		}
		if (a == AUTH_BUSY) {
			refuse(w, p, HC_BUSY, 503, "Retry-After: 1\r\n");
			return NULL;
		}
		if (a != AUTH_OK) {
			refuse(w, p, HC_AUTH, 401,
			       "WWW-Authenticate: Basic realm=\"nave\", charset=\"UTF-8\"\r\n");
			return NULL;
		}
	}
	return rt;
}

/* ---------- accept and hand-over ---------- */

/*
 * A connection of the HTTP or HTTPS listener with its hconn, its ends read
 * (the source, whether it is a trusted proxy), not yet counted or armed. NULL
 * when the slab or memory is full: the peer gets an RST, counted.
 */
static struct conn *hconn_accept(struct worker *w, int fd, enum pstate state, uint64_t timeout_ms)
{
	const struct engine_live *cfg = w->live;
	struct conn *p = conn_new(w, CK_PLAIN, fd);
	struct hconn *h = p ? calloc(1, sizeof(*h)) : NULL;

	if (!h) {
		log_every(NLOG_WARN,
			  "w%d: connection slab or memory full, refusing a %s connection", w->id,
			  state == PS_HEAD ? "HTTP" : "TLS");
		if (p)
			conn_release(w, p);
		atomic_fetch_add(&w->st_refused_fds, 1);
		sock_rst_on_close(fd);
		close(fd);
		return NULL;
	}
	http_req_init(&h->req);
	http_resp_init(&h->resp);
	h->header_ms = cfg->header_timeout_ms;
	h->keepalive_ms = cfg->keepalive_ms;
	h->max_head = cfg->max_head;
	p->http = h;
	sock_nodelay(fd);
	p->state = state;
	p->last_io = w->now;
	p->deadline = w->now + timeout_ms;
	relay_ends(p);
	sock_addr16_ntop(p->bind.origin_addr, h->ip, sizeof(h->ip));
	for (unsigned i = 0; i < cfg->ntrusted && !h->trusted; i++)
		h->trusted = cidr_match(&cfg->trusted[i], p->bind.origin_addr);
	return p;
}

void edge_accept(struct worker *w, struct conn *listener, int fd)
{
	struct conn *p = hconn_accept(w, fd, PS_HEAD, w->live->header_timeout_ms);

	if (!p)
		return;
	p->port = listener->port;
	p->counted = true;
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	/* a source's unfinished heads count with its unfinished handshakes */
	if (!relay_src_take(w, p)) {
		conn_close(w, p, false, "too many unfinished requests from one source");
		return;
	}
	arm_recv(w, p);
}

void edge_tls_accept(struct worker *w, struct conn *listener, int fd, bool tunnel)
{
	const struct engine_config *cfg = &w->e->cfg;
	struct conn *p = hconn_accept(w, fd, PS_HELLO,
				      tunnel ? HANDSHAKE_TIMEOUT_MS : w->live->header_timeout_ms);

	if (!p)
		return;
	p->http->tunnel_port = tunnel;
	p->port = cfg->https_port;
	if (!relay_src_take(w, p)) {
		conn_close(w, p, false, "too many handshakes from one source");
		return;
	}
	arm_recv(w, p);
}

/* p's first head is routed to rt: bind here, or hand p to the tunnel's home worker */
static void dispatch(struct worker *w, struct conn *p, const struct http_route *rt)
{
	struct hconn *h = p->http;
	struct tunnel *t = rt->tun;
	int home = atomic_load(&t->home);
	struct edge_handoff *ho;
	struct io_uring_sqe *sqe;

	if (home < 0) { /* it went offline since it was looked at */
		atomic_fetch_add(&w->st_http_err[HC_OFFLINE], 1);
		if (h->passthrough)
			alert(w, p, ALERT_INTERNAL_ERROR);
		else
			answer(w, p, 502, NULL, cause_text[HC_OFFLINE]);
		return;
	}
	h->route = rt->route;
	h->tun = t;
	p->port = rt->route;
	p->bind.flags = htons(LINK_BIND_HTTP);
	p->deadline = 0;
	p->state = PS_BOUND;
	relay_src_done(w, p);	/* it counts under its tunnel from now on */
	http_req_init(&h->req); /* the head is parsed again, bound, and forwarded */
	if (h->passthrough)
		h->req.mode = HTTP_M_RAW;
	if (!p->counted) {
		p->counted = true;
		atomic_fetch_add(&w->st_conns, 1);
		atomic_fetch_add(&w->st_conns_total, 1);
	}
	if (home == w->id) {
		relay_attach(w, p, t);
		return;
	}
	if (p->tx.p && (p->tx.inflight || p->tx.head != p->tx.tail)) {
		/* its TLS still sends here (never seen: the server's flight is out before
		   the client's first request); the bytes cannot move with it */
		refuse(w, p, HC_BUSY, 503, "Retry-After: 1\r\n");
		return;
	}
	ho = calloc(1, sizeof(*ho));
	if (!ho) {
		conn_close(w, p, true, "out of memory");
		return;
	}
	ho->fd = p->fd;
	ho->h = h;
	xprt_move(&ho->x, &p->x);
	p->x.tls = NULL;
	ho->bind = p->bind;
	ho->t0 = p->rec_t0;
	/* p leaves this worker without closing its socket */
	p->http = NULL;
	p->fd = -1;
	conn_close(w, p, false, NULL);
	sqe = get_sqe(w);
	io_uring_prep_msg_ring(sqe, w->e->ring_fds[home], 0,
			       (uint64_t)OP_MSG_HTTP << 56 | (uintptr_t)ho, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)OP_SENT_HTTP << 56 | (uintptr_t)ho);
}

void edge_handoff_failed(struct edge_handoff *ho)
{
	xprt_free(&ho->x);
	close(ho->fd);
	free(ho->h->in);
	free(ho->h);
	free(ho);
}

void edge_adopt(struct worker *w, struct edge_handoff *ho)
{
	struct conn *p;

	if (w->stopping || atomic_load(&ho->h->tun->home) != w->id) {
		/* the tunnel moved or went while the connection was on its way */
		edge_handoff_failed(ho);
		return;
	}
	p = conn_new(w, CK_PLAIN, ho->fd);
	if (!p) {
		log_every(NLOG_WARN, "w%d: connection slab full, dropping an HTTP connection",
			  w->id);
		edge_handoff_failed(ho);
		return;
	}
	p->http = ho->h;
	xprt_move(&p->x, &ho->x);
	p->bind = ho->bind;
	p->port = ho->h->route;
	p->rec_t0 = ho->t0;
	p->counted = true;
	p->last_io = w->now;
	atomic_fetch_add(&w->st_conns, 1);
	free(ho);
	relay_attach(w, p, p->http->tun);
}

/* ---------- bound: requests on their way to the service ---------- */

/* Room on l for a chunk of n bytes (plus its frame word). */
static bool link_room(struct worker *w, struct conn *l, size_t n)
{
	return obuf_room(w, l) >= xprt_overhead(&l->x, n + 4) + 64;
}

static bool forward(struct worker *w, struct conn *l, const uint8_t *p, size_t n)
{
	uint8_t word[4];

	while (n) {
		size_t k = n > LINK_CHUNK_MAX ? LINK_CHUNK_MAX : n;

		frame_put32(word, (uint32_t)k);
		if (link_write(w, l, word, 4) < 0 || link_write(w, l, p, k) < 0) {
			conn_close(w, l, false, "link send buffer overrun");
			return false;
		}
		atomic_fetch_add_explicit(&w->st_in, (uint64_t)k, memory_order_relaxed);
		if (l->peer != NONE)
			w->conns[l->peer].rec_in += k;
		p += k;
		n -= k;
	}
	return true;
}

/* No more of the client's bytes go on: the service gets the end of the stream. */
static void stop(struct worker *w, struct conn *p, struct conn *l, const char *why)
{
	struct hconn *h = p->http;

	if (h->stopped)
		return;
	h->stopped = true;
	log_every(NLOG_INFO, "http: %s: %s; the connection ends after the responses so far", h->ip,
		  why);
	in_drop(h, h->in_len);
	plain_send_eof(w, p, l);
}

/* A later request's head: may it go to the same service? */
static bool head_allowed(struct worker *w, struct conn *p, const uint8_t *base)
{
	struct hconn *h = p->http;
	const struct http_route *rt;
	char host[DOMAIN_MAX + 1];

	if (h->head.method == HTTP_CONNECT || !http_head_host(&h->req, base, &h->head, host))
		return false;
	if (!host_fits_cert(w, h, host))
		return false;
	rt = http_routes_find(w->routes, host);
	if (!rt || rt->tun != h->tun || rt->route != h->route || (rt->flags & ROUTE_PASSTHROUGH))
		return false;
	str_copy(h->host, sizeof(h->host), host);
	/* every request carries the credentials; the ones checked cost nothing */
	return !rt->auth[0] || auth_check(w, p, rt, base, false) == AUTH_OK;
}

/*
 * Takes the n client bytes at data (bound). Returns how many it dealt with;
 * the rest waits for room on the link. -1 when p or l closed.
 */
static long feed(struct worker *w, struct conn *p, struct conn *l, const uint8_t *data, size_t n)
{
	const struct engine_config *cfg = &w->e->cfg;
	struct hconn *h = p->http;
	size_t pos = 0;
	int status = 0;

	while (pos < n && !h->stopped) {
		if (h->req.mode == HTTP_M_HEAD) {
			const struct http_route *rt;
			struct http_fwd f;
			char port[8];
			size_t out;
			enum http_result r;

			if (!link_room(w, l, h->max_head + HTTP_REWRITE_EXTRA)) {
				h->blocked = true;
				break;
			}
			/* the service owes answers to HTTP_RESP_QUEUE requests: wait for some */
			h->qfull = http_resp_outstanding(&h->resp) >= HTTP_RESP_QUEUE;
			if (h->qfull) {
				h->blocked = true;
				break;
			}
			r = http_req_head(&h->req, data + pos, n - pos, h->max_head, &h->head,
					  &status);
			if (r == HTTP_R_MORE) {
				/* the partial head stays buffered, for header_timeout at most */
				if (!h->head_since)
					h->head_since = w->now;
				break;
			}
			h->head_since = 0;
			if (r == HTTP_R_ERROR || !head_allowed(w, p, data + pos)) {
				stop(w, p, l,
				     r == HTTP_R_ERROR ? "a malformed request follows"
						       : "a request for another host follows");
				return -1;
			}
			rt = http_routes_find(w->routes, h->host);
			snprintf(port, sizeof(port), "%u",
				 h->tls ? cfg->https_port : cfg->http_port);
			f = (struct http_fwd){
			    .client_ip = h->ip,
			    .proto = h->tls ? "https" : "http",
			    .port = port,
			    .trusted = h->trusted,
			    .host_header = rt && rt->host_header[0] ? rt->host_header : NULL,
			    .strip_authorization = rt && rt->auth[0],
			};
			/* built behind room for its frame word: head and word go in one write */
			out = http_head_rewrite(&h->req, data + pos, &h->head, &f, w->hscratch + 4,
						h->max_head + HTTP_REWRITE_EXTRA);
			if (!out) {
				stop(w, p, l, "a request head grew too large to forward");
				return -1;
			}
			if (!http_resp_expect(&h->resp, h->head.method, h->head.upgrade)) {
				stop(w, p, l, "too many requests wait for answers");
				return -1;
			}
			frame_put32(w->hscratch, (uint32_t)out);
			if (link_write(w, l, w->hscratch, out + 4) < 0) {
				conn_close(w, l, false, "link send buffer overrun");
				return -1;
			}
			atomic_fetch_add_explicit(&w->st_in, (uint64_t)out, memory_order_relaxed);
			atomic_fetch_add(&w->st_http_req, 1);
			http_req_head_done(&h->req, data + pos, &h->head);
			p->rec_in += h->head.len; /* the client's head, as it sent it */
			pos += h->head.len;
			continue;
		}
		size_t k = n - pos;
		long used;

		if (h->req.mode == HTTP_M_UPGRADE) {
			/* nothing more goes on until the service answers the Upgrade */
			h->blocked = true;
			break;
		}
		while (k && !link_room(w, l, k))
			k /= 2;
		if (!k) {
			h->blocked = true;
			break;
		}
		if (h->req.mode == HTTP_M_RAW) {
			used = (long)k;
		} else {
			used = http_req_body(&h->req, data + pos, k, &status);
			if (used < 0) {
				stop(w, p, l, "a malformed request body");
				return -1;
			}
		}
		if (used && !forward(w, l, data + pos, (size_t)used))
			return -1;
		pos += (size_t)used;
	}
	return (long)pos;
}

/*
 * Deals with the buffered bytes of bound p: 0 when it may read more (nothing
 * left, or a partial head waiting for the rest), 1 when it waits for room on
 * the link, -1 when p or l is closing.
 */
static int drain_in(struct worker *w, struct conn *p, struct conn *l)
{
	struct hconn *h = p->http;
	long used;

	h->blocked = false;
	if (!h->in_len)
		return 0;
	used = feed(w, p, l, h->in, h->in_len);
	if (used < 0 || p->closing || l->closing)
		return -1;
	in_drop(h, (size_t)used);
	obuf_kick(w, l);
	if (h->eof_pending && (!h->in_len || h->req.mode == HTTP_M_HEAD)) {
		/* what the client sent before its end went on (a partial head never will) */
		h->eof_pending = false;
		in_drop(h, h->in_len);
		plain_send_eof(w, p, l);
		return -1;
	}
	return h->blocked ? 1 : 0;
}

void edge_arm(struct worker *w, struct conn *p)
{
	struct conn *l = conn_at(w, p->peer);

	if (!l || p->http->stopped || p->recv_armed)
		return;
	if (drain_in(w, p, l) != 0 || p->http->stopped || p->eof_in)
		return;
	if (l->tx.p && obuf_room(w, l) < xprt_overhead(&l->x, w->bufsz + 4) + 64)
		return;
	arm_recv(w, p);
}

/* ---------- receiving ---------- */

/* PS_HEAD: the first head arrives (buffered whole: it may move to another worker) */
static void first_head(struct worker *w, struct conn *p, const uint8_t *data, size_t n)
{
	struct hconn *h = p->http;
	const struct http_route *rt;
	enum http_result r;
	int status = 0;

	if (n && !in_keep(h, data, n)) {
		conn_close(w, p, true, "out of memory");
		return;
	}
	r = http_req_head(&h->req, h->in, h->in_len, h->max_head, &h->head, &status);
	if (r == HTTP_R_MORE)
		return; /* the caller reads on */
	if (r == HTTP_R_ERROR) {
		refuse_status(w, p, status);
		return;
	}
	rt = route_head(w, p, h->in);
	if (!rt)
		return;
	dispatch(w, p, rt);
}

static void client_hello(struct worker *w, struct conn *p, const uint8_t *data, size_t n);

/* Bound p: plaintext from the client goes on (what does not fit waits in h->in). */
static void bound_bytes(struct worker *w, struct conn *p, const uint8_t *data, size_t n)
{
	struct hconn *h = p->http;
	struct conn *l = conn_at(w, p->peer);
	long used;

	if (h->stopped)
		return; /* bytes after the stop: dropped */
	if (!l || h->in_len) {
		/* not bound yet (pending, or on its way), or older bytes wait: behind them */
		if (!in_keep(h, data, n))
			conn_close(w, p, true, "out of memory");
		return;
	}
	h->blocked = false;
	used = feed(w, p, l, data, n);
	if (used < 0 || p->closing)
		return;
	if ((size_t)used < n && !in_keep(h, data + used, n - (size_t)used)) {
		conn_close(w, p, true, "out of memory");
		return;
	}
	obuf_kick(w, l);
}

/* After client bytes were dealt with, or a receive that met an empty buffer
   ring: read more when p may. */
static void read_more(struct worker *w, struct conn *p)
{
	if (p->closing || p->linger || p->recv_armed)
		return;
	switch (p->state) {
	case PS_HEAD:
	case PS_HELLO:
	case PS_TLS:
		arm_recv(w, p);
		return;
	case PS_BOUND:
		if (p->peer != NONE && !p->http->blocked)
			edge_arm(w, p);
		return;
	default:
		return; /* pending: reads once bound */
	}
}

/* The client's direction ended (FIN, or a close_notify). */
static void client_eof(struct worker *w, struct conn *p)
{
	struct hconn *h = p->http;
	struct conn *l = conn_at(w, p->peer);

	if (!l) {
		conn_close(w, p, false, NULL);
		return;
	}
	if (h->in_len && h->req.mode != HTTP_M_HEAD && !h->stopped) {
		/* a body or raw bytes still wait for room or an answer: the end follows them */
		h->eof_pending = true;
		p->eof_in = true;
		return;
	}
	in_drop(h, h->in_len); /* a partial head is nobody's request */
	plain_send_eof(w, p, l);
}

static void client_hello(struct worker *w, struct conn *p, const uint8_t *data, size_t n);
static void tls_bytes(struct worker *w, struct conn *p, const uint8_t *data, size_t n);

void edge_on_recv(struct worker *w, struct conn *p, int res, unsigned flags)
{
	struct hconn *h = p->http;
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
	const uint8_t *data;

	p->recv_armed = false;
	if (res == -ENOBUFS) {
		p->rearm = true; /* retried after this batch */
		w->starved++;
		return;
	}
	if (res <= 0) {
		if (flags & IORING_CQE_F_BUFFER)
			buf_recycle(w, bid);
		if (res == 0)
			client_eof(w, p);
		else
			conn_close(w, p, true, strerror(-res));
		return;
	}
	p->last_io = w->now;
	if (p->linger) {
		buf_recycle(w, bid); /* answered already: what comes after is not read */
		return;
	}
	data = buf_addr(w, bid) + HEADROOM;
	if (h->tls)
		tls_bytes(w, p, data, (size_t)res);
	else if (p->state == PS_HEAD)
		first_head(w, p, data, (size_t)res);
	else if (p->state == PS_HELLO)
		client_hello(w, p, data, (size_t)res);
	else
		bound_bytes(w, p, data, (size_t)res);
	buf_recycle(w, bid);
	if (!p->closing)
		read_more(w, p);
	if (!p->closing && h->tls) /* h is gone with p */
		edge_settle(w, p);
}

/* ---------- HTTPS: TLS the edge terminates ---------- */

/*
 * A terminated connection's TLS moves into the kernel (kTLS) as the data links'
 * does, once the datapath holds none of its bytes; where the kernel cannot,
 * it stays in userspace ([datapath] ktls = on: the connection closes).
 */
void edge_settle(struct worker *w, struct conn *p)
{
	bool out_empty = !p->tx.p || (!p->tx.inflight && p->tx.head == p->tx.tail);
	bool in_quiet = !p->recv_armed || p->recv_epoch == w->sq_epoch;
	char err[192];
	int r;

	if (!p->http || !p->http->tls || xprt_mode(&p->x) != XPRT_TLS || p->closing ||
	    p->state == PS_TLS || p->http->in_len)
		return;
	r = xprt_settle(&p->x, out_empty, in_quiet, err, sizeof(err));
	if (r < 0) {
		log_every(NLOG_WARN, "https: %s: %s, closing", p->http->ip, err);
		conn_close(w, p, true, err);
		return;
	}
	if (r & XPRT_EV_FALLBACK)
		log_every(NLOG_WARN, "https: %s: %s; it goes on in userspace TLS", p->http->ip,
			  err);
	if (r & XPRT_EV_KTLS)
		atomic_fetch_add(&w->st_http_ktls, 1);
}

/* Puts n bytes on p's way out: through its TLS when it has one. 0 or -1 (p closing). */
static int pub_put(struct worker *w, struct conn *p, const void *buf, size_t n)
{
	struct xprt_out o;

	if (!obuf_ensure(w, p)) {
		conn_close(w, p, true, "out of memory");
		return -1;
	}
	if (!p->x.tls) {
		if (obuf_room(w, p) < n) {
			conn_close(w, p, true, "answer does not fit");
			return -1;
		}
		memcpy(p->tx.p + p->tx.tail, buf, n);
		p->tx.tail += (uint32_t)n;
		return 0;
	}
	obuf_room(w, p); /* compacts */
	o.p = p->tx.p;
	o.len = p->tx.tail;
	o.cap = w->txcap;
	if (xprt_write(&p->x, &o, buf, n) < 0) {
		conn_close(w, p, true, "TLS write failed");
		return -1;
	}
	p->tx.tail = (uint32_t)o.len;
	return 0;
}

/* Ciphertext from a client whose TLS the edge terminates. */
static void tls_bytes(struct worker *w, struct conn *p, const uint8_t *data, size_t n)
{
	struct hconn *h = p->http;
	char err[192];
	int r;

	xprt_feed(&p->x, data, n);
	if (p->state == PS_TLS) {
		struct xprt_out o;

		if (!obuf_ensure(w, p)) {
			conn_close(w, p, true, "out of memory");
			return;
		}
		obuf_room(w, p);
		o.p = p->tx.p;
		o.len = p->tx.tail;
		o.cap = w->txcap;
		r = xprt_handshake(&p->x, &o, err, sizeof(err));
		p->tx.tail = (uint32_t)o.len;
		obuf_kick(w, p);
		if (r < 0) {
			atomic_fetch_add(&w->st_http_err[HC_BAD], 1);
			log_every(NLOG_INFO, "https: %s: %s: %s", h->ip, h->host, err);
			xprt_feed(&p->x, NULL, 0);
			p->linger = true; /* the alert BoringSSL wrote goes out first */
			p->connected = true;
			p->deadline = w->now + 5000;
			return;
		}
		if (r == XPRT_WANT) {
			xprt_feed(&p->x, NULL, 0);
			return;
		}
		p->state = PS_HEAD;
		p->deadline = w->now + p->http->header_ms;
	}
	for (;;) {
		r = xprt_read(&p->x, w->scratch, w->bufsz);
		if (r <= 0)
			break;
		/* before routing the head gathers whole: it may move to another worker */
		if (p->state == PS_HEAD) {
			if (!in_keep(h, w->scratch, (size_t)r)) {
				conn_close(w, p, true, "out of memory");
				break;
			}
		} else {
			bound_bytes(w, p, w->scratch, (size_t)r);
		}
		if (p->closing)
			break;
	}
	xprt_feed(&p->x, NULL, 0);
	if (p->closing)
		return;
	if (r == -EPIPE) {
		client_eof(w, p);
		return;
	}
	if (r < 0) {
		conn_close(w, p, true, "TLS error");
		return;
	}
	if (p->state == PS_HEAD && h->in_len)
		first_head(w, p, NULL, 0);
}

/* The ClientHello named a domain the edge has a certificate for: terminate here. */
static void terminate(struct worker *w, struct conn *p, const struct http_route *cert)
{
	struct hconn *h = p->http;

	if (xprt_init_server(&p->x, w->e->cfg.edge_xprt, p->fd) < 0 ||
	    xprt_tls_use_ctx(&p->x, cert->tls) < 0) {
		conn_close(w, p, true, "out of memory");
		return;
	}
	h->tls = true;
	p->state = PS_TLS;
	p->counted = true;
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	/* the hello read so far starts the handshake */
	if (h->in_len) {
		uint8_t *hello = h->in;
		uint32_t len = h->in_len;

		h->in = NULL;
		h->in_len = h->in_cap = 0;
		tls_bytes(w, p, hello, len);
		free(hello);
	}
}

/* ---------- the service's answers ---------- */

/*
 * n bytes the service sent p's client (they go on unchanged): followed to learn
 * when an Upgrade was answered (101: raw both ways from there; anything else:
 * requests are parsed again) and when answers free room in the request queue.
 */
void edge_response(struct worker *w, struct conn *p, const uint8_t *d, size_t n)
{
	struct hconn *h = p->http;
	bool answered = false;
	size_t pos = 0, used;

	if (h->passthrough || h->resp_raw)
		return;
	while (pos < n) {
		enum http_resp_result r = http_resp_feed(&h->resp, d + pos, n - pos, &used);

		if (r == HTTP_RESP_OK)
			break;
		if (r == HTTP_RESP_ERROR) {
			log_every(NLOG_INFO,
				  "http: %s: the service's answer is no HTTP/1.x, closing", h->ip);
			conn_close(w, p, true, "the service answered no HTTP");
			return;
		}
		if (!http_req_upgrade_answer(&h->req, r == HTTP_RESP_SWITCHED)) {
			conn_close(w, p, true, "internal: an answer to no Upgrade");
			return;
		}
		answered = true;
		pos += used;
		if (r == HTTP_RESP_SWITCHED) {
			h->resp_raw = true;
			break;
		}
	}
	if (answered || (h->qfull && http_resp_outstanding(&h->resp) < HTTP_RESP_QUEUE)) {
		h->qfull = false;
		h->blocked = false;
		edge_arm(w, p); /* the bytes held back go on */
	}
}

/* ---------- HTTPS: the ClientHello decides ---------- */

static void client_hello(struct worker *w, struct conn *p, const uint8_t *data, size_t n)
{
	struct hconn *h = p->http;
	const struct http_route *rt;
	struct tlspeek pk;
	char why[128];

	if (!in_keep(h, data, n)) {
		conn_close(w, p, true, "out of memory");
		return;
	}
	switch (tlspeek_client_hello(h->in, h->in_len, &pk, why, sizeof(why))) {
	case TLSPEEK_MORE:
		return; /* the caller reads on */
	case TLSPEEK_NOT_TLS:
		atomic_fetch_add(&w->st_http_err[HC_BAD], 1);
		log_every(NLOG_INFO, "https: %s: no TLS handshake (plain HTTP?): 400", h->ip);
		answer(w, p, 400, NULL, "this port speaks TLS (https)");
		return;
	case TLSPEEK_BAD:
		atomic_fetch_add(&w->st_http_err[HC_BAD], 1);
		log_every(NLOG_INFO, "https: %s: %s", h->ip, why);
		alert(w, p, ALERT_DECODE_ERROR);
		return;
	case TLSPEEK_OK:
		break;
	}
	if (h->tunnel_port && tlspeek_offers(&pk, LINK_ALPN)) {
		/* a nave client: the bytes read go to the link's TLS handshake */
		int fd = p->fd;

		relay_src_done(w, p);
		relay_link_accept(w, fd, h->in, h->in_len);
		p->fd = -1;
		conn_close(w, p, false, NULL);
		return;
	}
	rt = pk.sni[0] ? http_routes_find(w->routes, pk.sni) : NULL;
	if (!rt || !(rt->flags & ROUTE_PASSTHROUGH)) {
		const struct http_route *cert = pk.sni[0] ? cert_find(w, pk.sni) : NULL;

		if (cert) {
			str_copy(h->host, sizeof(h->host), pk.sni);
			str_copy(h->cert, sizeof(h->cert), cert->domain);
			terminate(w, p, cert);
			return;
		}
		atomic_fetch_add(&w->st_http_err[HC_UNKNOWN], 1);
		log_every(NLOG_INFO,
			  "https: %s: no passthrough rule and no certificate for \"%s\": "
			  "unrecognized_name",
			  h->ip, pk.sni[0] ? pk.sni : "(no SNI)");
		alert(w, p, ALERT_UNRECOGNIZED);
		return;
	}
	if (!rt->route || atomic_load(&rt->tun->home) < 0) {
		atomic_fetch_add(&w->st_http_err[HC_OFFLINE], 1);
		log_every(NLOG_INFO, "https: %s: %s: tunnel offline", h->ip, pk.sni);
		alert(w, p, ALERT_INTERNAL_ERROR);
		return;
	}
	str_copy(h->host, sizeof(h->host), pk.sni);
	h->passthrough = true;
	dispatch(w, p, rt);
}

/* The verifier's answer for p, waiting in PS_AUTH with its head in h->in. */
void edge_auth_done(struct worker *w, const struct mb_msg *m)
{
	const struct auth_answer *res = (const void *)m->data;
	const struct http_route *rt;
	struct conn *p;

	if (!res || m->len != sizeof(*res))
		return;
	p = conn_ref(w, res->idx, res->gen);
	if (!p || p->closing || p->kind != CK_PLAIN || !p->http || p->state != PS_AUTH)
		return;	    /* gone while it waited */
	edge_closing(w, p); /* its check is done: no longer counted */
	if (!res->ok) {
		p->state = PS_HEAD;
		refuse(w, p, HC_AUTH, 401,
		       "WWW-Authenticate: Basic realm=\"nave\", charset=\"UTF-8\"\r\n");
		return;
	}
	memcpy(auth_cache[auth_next++ % AUTH_CACHED], res->key, sizeof(res->key));
	memcpy(p->http->auth_ok, res->key, sizeof(res->key));
	p->http->has_auth_ok = true;
	/* routed again: the routes may have changed meanwhile; the check is a cache hit */
	p->state = PS_HEAD;
	rt = route_head(w, p, p->http->in);
	if (rt)
		dispatch(w, p, rt);
}

/* ---------- time ---------- */

bool edge_tick(struct worker *w, struct conn *p, uint64_t now)
{
	if (p->state == PS_HEAD && p->deadline && now > p->deadline && !p->linger) {
		refuse(w, p, HC_TIMEOUT, 408, NULL);
		return true;
	}
	if (p->state == PS_BOUND && !p->linger && p->peer != NONE && !p->http->stopped) {
		struct hconn *h = p->http;
		struct conn *l = conn_at(w, p->peer);

		if (h->head_since && now - h->head_since > h->header_ms) {
			atomic_fetch_add(&w->st_http_err[HC_TIMEOUT], 1);
			stop(w, p, l, "a later request head did not come whole in time");
			return true;
		}
		/* idle between requests, every answer given: the connection ends */
		if (h->keepalive_ms && h->req.mode == HTTP_M_HEAD && !h->in_len &&
		    !h->passthrough && !h->resp_raw && !http_resp_outstanding(&h->resp) &&
		    now - p->last_io > h->keepalive_ms) {
			h->stopped = true; /* quietly: keep-alive ends are routine */
			plain_send_eof(w, p, l);
			return true;
		}
	}
	if (p->state == PS_AUTH && p->deadline && now > p->deadline && !p->linger) {
		p->state = PS_HEAD;
		refuse(w, p, HC_BUSY, 503, "Retry-After: 1\r\n");
		return true;
	}
	if ((p->state == PS_HELLO || p->state == PS_TLS) && p->deadline && now > p->deadline &&
	    !p->linger) {
		atomic_fetch_add(&w->st_http_err[HC_TIMEOUT], 1);
		log_every(NLOG_INFO, "https: %s: no TLS handshake in time, closing", p->http->ip);
		conn_close(w, p, true, "no TLS handshake in time");
		return true;
	}
	if (p->linger && p->deadline && now > p->deadline) {
		conn_close(w, p, true, "answer not taken in time");
		return true;
	}
	return false; /* the rest (pending, idle) as for any public connection */
}

void edge_pending_timeout(struct worker *w, struct conn *p)
{
	conn_reason(p, EC_PENDING_TIMEOUT);
	if (p->state == PS_PENDING)
		relay_pending_remove(w, p);
	p->state = PS_BOUND;
	if (p->http->passthrough) { /* a TLS client: no HTTP page */
		atomic_fetch_add(&w->st_http_err[HC_BUSY], 1);
		alert(w, p, ALERT_INTERNAL_ERROR);
		return;
	}
	refuse(w, p, HC_BUSY, 503, "Retry-After: 1\r\n");
}

uint8_t edge_record_host(const struct conn *p, char *host, size_t n)
{
	const struct hconn *h = p->http;

	str_copy(host, n, h->host);
	return h->tls || h->passthrough ? ER_HTTPS : ER_HTTP;
}

void edge_rearm(struct worker *w, struct conn *p)
{
	read_more(w, p);
}

void edge_closing(struct worker *w, struct conn *p)
{
	if (p->http->auth_counted) {
		relay_src_tag_del(w, &auth_tag, p->bind.origin_addr);
		p->http->auth_counted = false;
	}
}

void edge_free(struct conn *p)
{
	free(p->http->in);
	free(p->http);
	p->http = NULL;
}

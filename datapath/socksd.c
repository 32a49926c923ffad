// SPDX-License-Identifier: Apache-2.0
/*
 * relayd's own SOCKS5 server ([socks] listen, and tls_listen inside TLS with
 * the server certificate): RFC 1928 CONNECT behind RFC 1929 username/password,
 * the only method taken (a greeting without it is answered 0xff). The user is
 * a tunnel id or group id, the password that tunnel's token: controld checks
 * the token as it checks a client's (auth, mode "check", with the connection's
 * source for allow_from), and the user must name the tunnel it belongs to. The
 * tunnel need not be online: the token is the credential.
 *
 * A CONNECT is then decided exactly as an OPEN from that tunnel
 * (mesh_open_socks: the same resolution order, mesh policy and [socks] allow,
 * meshopen.c), and answered with the reply code the client's own listener
 * gives for the same OPENED status (socks5_rep_from_open). Once connected, the
 * SOCKS connection and its destination's end (an external host's socket, or
 * end a of the socketpair whose end b entered the tunnel's home worker as a
 * public connection) pass bytes to each other here: plain to plain (c->pp),
 * with backpressure, half-close and reset as streams have them.
 *
 * Each listener is one socket, accepted by worker 0, which keeps the counts:
 * at most SOCKS_LISTENER_HS handshakes under way per listener (when full, the
 * oldest one not yet logged in is dropped for a new one), SOCKS_SOURCE_HS from
 * one source (an IPv4 address, an IPv6 /64); a source with more than
 * SOCKS_FAILS_MAX failed logins in SOCKS_WINDOW_MS is refused for as long, on
 * both listeners (one table of SOCKS_SRC_SLOTS sources; when every slot is
 * held, the oldest unlocked one without a handshake is forgotten, and if none
 * is, a new source is taken untracked). Only controld's refusal of a token is
 * a failed login: controld away or busy is not. A handshake (TLS, greeting,
 * login, request) has SOCKS_HS_MS and SOCKS_HS_MAX bytes; what follows a whole
 * request (early data) is the stream's. A token's CONNECTs are at most
 * SOCKS_TUN_STREAMS at a time, and a revoked token's end (socks_kick).
 * Every refusal is one rate-limited line and counted.
 */
#include "dp.h"

#include "log.h"
#include "sock.h"
#include "socks5.h"
#include "util.h"
#include "valid.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define SOCKS_HS_MAX	  1024	/* bytes of one handshake */
#define SOCKS_HS_MS	  10000 /* a handshake's time, from accept to the CONNECT */
#define SOCKS_LISTENER_HS 64	/* handshakes under way per listener */
#define SOCKS_SOURCE_HS	  8	/* of which from one source */
#define SOCKS_SRC_SLOTS	  256	/* sources remembered, both listeners' */
#define SOCKS_FAILS_MAX	  5	/* failed logins a source may have in SOCKS_WINDOW_MS */
#define SOCKS_WINDOW_MS	  60000 /* the window, and how long a source is refused past it */
#define SOCKS_LINGER_MS	  5000	/* a refusal's last bytes go out within this */
#define SOCKS_AUTH_MS	  12000 /* a login's wait for controld (the control thread's is 10 s) */
#define SOCKS_TUN_STREAMS 1024	/* CONNECTs of one token at a time */
#define SOCKS_UDP_FLOWS	  32	/* destinations of one UDP ASSOCIATE, as the client's */
#define SOCKS_ASSOC_LST	  256	/* UDP ASSOCIATEs per listener */
#define SOCKS_ASSOC_SRC	  16	/* of which from one source */

struct socks_src {
	uint8_t addr[16]; /* the source's key (an IPv6 source: its /64) */
	unsigned hs;	  /* its handshakes under way */
	unsigned fails;	  /* failed logins since t0 */
	uint64_t t0;	  /* the window's start; 0: no failure */
	uint64_t until;	  /* refused until (ms) */
	unsigned assoc;	  /* its UDP ASSOCIATEs */
};

/* worker 0's: each listener's handshakes, and the sources of both */
struct socks_edge {
	unsigned hs[2];
	unsigned assoc[2]; /* UDP ASSOCIATEs per listener */
	struct socks_src src[SOCKS_SRC_SLOTS];
};

enum { SK_CONN, SK_RELAY, SK_FLOW };

struct socks_conn {
	uint8_t role;	 /* SK_CONN: a SOCKS connection; SK_RELAY: a UDP ASSOCIATE's relay
			    socket (CK_LISTEN); SK_FLOW: one of its flows (CK_PLAIN, no fd) */
	uint8_t lst;	 /* 0: [socks] listen, 1: tls_listen */
	uint8_t step;	 /* 0 greeting, 1 login, 2 request */
	bool in_hs;	 /* counted among its listener's handshakes */
	bool tracked;	 /* and its source's (it has a slot) */
	bool streamed;	 /* counted in its tunnel's socks_streams */
	bool mesh_role;	 /* controld's word on the token */
	uint16_t lport;	 /* the listener's port (log lines) */
	uint8_t key[16]; /* its source's key */
	uint8_t src[16]; /* its source address (controld checks allow_from with it) */
	char ip[48];	 /* its source address as text */
	char user[LINK_GROUP_MAX + 1];
	char group[LINK_GROUP_MAX + 1];
	uint32_t hs_len, hs_cap;
	uint8_t *hs; /* the handshake's bytes, and early data behind a request */
	/* SK_CONN after a UDP ASSOCIATE: its relay socket and flows */
	bool assoc;
	uint8_t nflows;
	uint16_t client_port; /* the port its datagrams come from (host order); 0: any */
	uint32_t relay, relay_gen;
	uint32_t flows[SOCKS_UDP_FLOWS];
	/* SK_RELAY, SK_FLOW: the SOCKS connection */
	uint32_t owner, owner_gen;
	/* SK_FLOW: its destination as the datagrams name it, its client's address */
	bool refused; /* the destination was refused: its datagrams are dropped */
	uint16_t dport;
	char dst[SOCKS5_NAME_MAX + 1];
	struct sockaddr_storage to;
	socklen_t to_len;
	uint16_t hdr_len; /* the answers' header (the request's as sent) */
	uint8_t hdr[SOCKS5_REQUEST_MAX];
};

static void refused(struct worker *w, enum socks_refusal r)
{
	atomic_fetch_add_explicit(&w->st_socks_refused[r], 1, memory_order_relaxed);
}

/* ---------- the sources ---------- */

static bool src_busy(const struct socks_src *f, uint64_t now)
{
	return f->hs || f->assoc || (f->t0 && now - f->t0 <= SOCKS_WINDOW_MS) || now < f->until;
}

/*
 * a's slot, or (add) a free or spent one for it; with none, the oldest that is
 * not locked and has no handshake or UDP ASSOCIATE (its failed logins are
 * forgotten). NULL when every slot is locked or in use.
 */
static struct socks_src *src_slot(struct socks_edge *E, const uint8_t a[16], bool add, uint64_t now)
{
	struct socks_src *spare = NULL, *old = NULL;

	for (unsigned i = 0; i < SOCKS_SRC_SLOTS; i++) {
		struct socks_src *f = &E->src[i];

		if ((f->hs || f->assoc || f->t0 || f->until) && !memcmp(f->addr, a, 16))
			return f;
		if (!spare && !src_busy(f, now))
			spare = f;
		if (!f->hs && !f->assoc && now >= f->until && (!old || f->t0 < old->t0))
			old = f;
	}
	if (!add || (!spare && !old))
		return NULL;
	if (!spare) {
		spare = old;
		log_every(NLOG_WARN,
			  "socks: all %d sources remembered are busy: forgetting the failed logins "
			  "of the oldest",
			  SOCKS_SRC_SLOTS);
	}
	memset(spare, 0, sizeof(*spare));
	memcpy(spare->addr, a, 16);
	return spare;
}

/* p's handshake is over (answered, refused or closed): its counts go */
static void hs_end(struct worker *w, struct conn *p)
{
	struct socks_src *f;

	if (!p->sk || !p->sk->in_hs || !w->socks)
		return;
	p->sk->in_hs = false;
	w->socks->hs[p->sk->lst]--;
	f = p->sk->tracked ? src_slot(w->socks, p->sk->key, false, w->now) : NULL;
	if (f && f->hs)
		f->hs--;
}

/* one more failed login from p's source: past SOCKS_FAILS_MAX in the window it is refused */
static void src_failed(struct worker *w, struct conn *p)
{
	struct socks_src *f = src_slot(w->socks, p->sk->key, true, w->now);

	if (!f)
		return;
	if (!f->t0 || w->now - f->t0 > SOCKS_WINDOW_MS) {
		f->t0 = w->now ? w->now : 1;
		f->fails = 0;
	}
	if (++f->fails > SOCKS_FAILS_MAX && w->now >= f->until) {
		f->until = w->now + SOCKS_WINDOW_MS;
		log_warn("socks %u: more than %d failed logins from %s in %d s: refused for %d s",
			 p->sk->lport, SOCKS_FAILS_MAX, p->sk->ip, SOCKS_WINDOW_MS / 1000,
			 SOCKS_WINDOW_MS / 1000);
	}
}

static bool src_locked(struct worker *w, const uint8_t key[16])
{
	struct socks_src *f = src_slot(w->socks, key, false, w->now);

	return f && w->now < f->until;
}

/* ---------- bytes out ---------- */

static bool obuf_idle(const struct conn *c)
{
	return !c->tx.p || (!c->tx.inflight && c->tx.head == c->tx.tail);
}

/* n bytes on c's way out, through its TLS when it has one: 0, or -1 (c is closing) */
static int put(struct worker *w, struct conn *c, const void *b, size_t n)
{
	struct xprt_out o;

	if (!obuf_ensure(w, c)) {
		conn_close(w, c, true, "out of memory");
		return -1;
	}
	if (obuf_room(w, c) < xprt_overhead(&c->x, n)) {
		conn_close(w, c, true, "send buffer overrun");
		return -1;
	}
	o.p = c->tx.p;
	o.len = c->tx.tail;
	o.cap = w->txcap;
	if (xprt_write(&c->x, &o, b, n) < 0) {
		conn_close(w, c, true, "TLS write failed");
		return -1;
	}
	c->tx.tail = (uint32_t)o.len;
	return 0;
}

static bool answer(struct worker *w, struct conn *p, const uint8_t *b, size_t n)
{
	if (put(w, p, b, n) < 0)
		return false;
	obuf_kick(w, p);
	return true;
}

/* A refused connection whose answer is out: a clean end (a close_notify first in TLS) */
static void close_clean(struct worker *w, struct conn *p)
{
	if (p->x.tls && p->state != PS_SOCKS_TLS)
		xprt_shutdown(&p->x);
	conn_close(w, p, false, NULL);
}

/* The handshake ends here: what is queued goes out, then p closes. */
static void finish(struct worker *w, struct conn *p)
{
	hs_end(w, p);
	p->linger = true;
	p->deadline = w->now + SOCKS_LINGER_MS;
	if (obuf_idle(p))
		close_clean(w, p);
}

/* ---------- accept ---------- */

static void hs_refuse(struct worker *w, struct conn *p, enum socks_refusal r, const char *why);

/*
 * Listener lst is full: its oldest handshake not yet logged in (TLS, greeting
 * or login still to come) is dropped, the cost of whoever holds them idle.
 * False when every one has logged in (or is with controld).
 */
static bool drop_oldest(struct worker *w, unsigned lst)
{
	struct conn *old = NULL;

	for (uint32_t i = 0; i < w->high; i++) {
		struct conn *p = &w->conns[i];

		if (p->kind != CK_PLAIN || p->closing || p->linger || !p->sk || !p->sk->in_hs ||
		    p->sk->lst != lst || p->sk->step > 1 ||
		    (p->state != PS_SOCKS_TLS && p->state != PS_SOCKS_HS))
			continue;
		if (!old || p->deadline < old->deadline)
			old = p;
	}
	if (!old)
		return false;
	hs_refuse(w, old, SOCKS_R_LIMIT,
		  "dropped: the oldest handshake not logged in, the listener's 64 being full");
	conn_close(w, old, true, "SOCKS handshake dropped for a new one");
	return true;
}

void socks_accept(struct worker *w, struct conn *c, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct socks_edge *E;
	struct socks_src *f;
	struct socks_conn *sk;
	uint8_t a[16], key[16];
	unsigned lst;
	char ip[48];
	struct conn *p;

	if (!w->socks)
		w->socks = calloc(1, sizeof(*w->socks));
	if (!w->socks || w->stopping || getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
		sock_rst_on_close(fd);
		close(fd);
		return;
	}
	atomic_fetch_add_explicit(&w->st_socks_conns, 1, memory_order_relaxed);
	sock_addr16(&ss, a);
	sock_addr16_ntop(a, ip, sizeof(ip));
	memcpy(key, a, 16);
	if (!sock_addr16_is_v4(key))
		memset(key + 8, 0, 8); /* an IPv6 source: its /64 */
	E = w->socks;
	lst = (unsigned)c->socks_listener - 1;
	if (src_locked(w, key)) {
		refused(w, SOCKS_R_LOCKED);
		log_every(NLOG_INFO,
			  "socks %u: %s refused: more than %d failed logins in %d s (for %d s)",
			  c->port, ip, SOCKS_FAILS_MAX, SOCKS_WINDOW_MS / 1000,
			  SOCKS_WINDOW_MS / 1000);
		sock_rst_on_close(fd);
		close(fd);
		return;
	}
	f = src_slot(E, key, true, w->now);
	if ((f && f->hs >= SOCKS_SOURCE_HS) ||
	    (E->hs[lst] >= SOCKS_LISTENER_HS && !drop_oldest(w, lst))) {
		refused(w, SOCKS_R_LIMIT);
		if (f && f->hs >= SOCKS_SOURCE_HS)
			log_every(NLOG_WARN,
				  "socks %u: %s refused: 8 handshakes under way from that source",
				  c->port, ip);
		else
			log_every(NLOG_WARN,
				  "socks %u: %s refused: 64 handshakes under way on the listener, "
				  "all logged in",
				  c->port, ip);
		sock_rst_on_close(fd);
		close(fd);
		return;
	}
	if (!f)
		log_every(NLOG_WARN,
			  "socks %u: %s taken untracked: all %d sources remembered are locked out "
			  "or in a handshake",
			  c->port, ip, SOCKS_SRC_SLOTS);
	p = conn_new(w, CK_PLAIN, fd);
	sk = p ? calloc(1, sizeof(*sk)) : NULL;
	if (!sk || (c->socks_listener == 2 && xprt_init_server(&p->x, w->e->cfg.socks_xprt, fd))) {
		free(sk);
		if (p)
			conn_release(w, p);
		refused(w, SOCKS_R_LIMIT);
		log_every(NLOG_WARN, "socks %u: %s refused: out of connection slots or memory",
			  c->port, ip);
		sock_rst_on_close(fd);
		close(fd);
		return;
	}
	p->sk = sk;
	sk->lst = (uint8_t)(c->socks_listener - 1);
	sk->lport = c->port;
	memcpy(sk->key, key, 16);
	memcpy(sk->src, a, 16);
	str_copy(sk->ip, sizeof(sk->ip), ip);
	sk->in_hs = true;
	E->hs[lst]++;
	if (f) {
		sk->tracked = true;
		f->hs++;
	}
	relay_ends(p); /* its source: the firewall's MB_FIREWALL check */
	p->port = c->port;
	p->connected = true;
	p->last_io = w->now;
	p->deadline = w->now + SOCKS_HS_MS;
	p->state = c->socks_listener == 2 ? PS_SOCKS_TLS : PS_SOCKS_HS;
	sock_nodelay(fd);
	arm_recv(w, p);
}

/* ---------- the handshake ---------- */

/* one line per refusal, rate-limited per cause: a flood of one kind hides no other */
static void hs_refuse(struct worker *w, struct conn *p, enum socks_refusal r, const char *why)
{
	refused(w, r);
#define REFUSED_LINE()                                                                             \
	log_every(NLOG_INFO, "socks %u: %s refused: %s", p->sk->lport, p->sk->ip, why)
	switch (r) {
	case SOCKS_R_AUTH:
		REFUSED_LINE();
		break;
	case SOCKS_R_LOCKED:
		REFUSED_LINE();
		break;
	case SOCKS_R_LIMIT:
		REFUSED_LINE();
		break;
	case SOCKS_R_METHOD:
		REFUSED_LINE();
		break;
	default:
		REFUSED_LINE();
		break;
	}
#undef REFUSED_LINE
}

/* a refused login: its line per cause (a user no id, a token refused, another tunnel's) */
static void login_refused(struct worker *w, struct conn *p, int cause, const char *why)
{
	refused(w, SOCKS_R_AUTH);
#define REFUSED_LINE()                                                                             \
	log_every(NLOG_INFO, "socks %u: %s refused: %s", p->sk->lport, p->sk->ip, why)
	if (cause == 0)
		REFUSED_LINE();
	else if (cause == 1)
		REFUSED_LINE();
	else
		REFUSED_LINE();
#undef REFUSED_LINE
}

/* A CONNECT's room: a descriptor or two for its destination, and its token's cap */
static bool stream_room(struct worker *w, struct conn *p)
{
	uint8_t out[SOCKS5_REPLY_LEN];
	const char *why = NULL;

	if (!fds_left(w, 2))
		why = "relayd's open-file limit leaves no room for the destination";
	else if (p->tun && p->tun->socks_streams >= SOCKS_TUN_STREAMS)
		why = "the token has 1024 CONNECTs open already";
	if (why) {
		hs_refuse(w, p, SOCKS_R_LIMIT, why);
		if (answer(w, p, out, socks5_reply(out, SOCKS5_REP_FAILURE)))
			finish(w, p);
		return false;
	}
	if (p->tun) {
		p->tun->socks_streams++;
		p->sk->streamed = true;
	}
	return true;
}

static void associate(struct worker *w, struct conn *p, const struct socks5_request *q);

static void step(struct worker *w, struct conn *p)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct socks_conn *sk = p->sk;
	struct socks5_err err = {.code = -1, .why = NULL};
	enum socks5_result r = SOCKS5_NEED;
	uint8_t out[SOCKS5_REPLY_LEN];
	size_t used = 0;

	for (;;) {
		if (sk->step == 0) {
			struct socks5_greeting g;
			uint8_t method;

			r = socks5_parse_greeting(sk->hs, sk->hs_len, &used, &g, &err);
			if (r != SOCKS5_DONE)
				break;
			method = socks5_choose_method(&g, true);
			if (!answer(w, p, out, socks5_method_reply(out, method)))
				return;
			if (method == SOCKS5_METHOD_REFUSED) {
				hs_refuse(w, p, SOCKS_R_METHOD,
					  "the client offers no user/password method (RFC 1929), "
					  "the only one taken");
				finish(w, p);
				return;
			}
			sk->step = 1;
		} else if (sk->step == 1) {
			struct socks5_auth a;

			r = socks5_parse_auth(sk->hs, sk->hs_len, &used, &a, &err);
			if (r != SOCKS5_DONE)
				break;
			memmove(sk->hs, sk->hs + used, sk->hs_len - used);
			sk->hs_len -= (uint32_t)used;
			if (!valid_str(a.user, VALID_ID, LINK_GROUP_MAX)) {
				explicit_bzero(&a, sizeof(a));
				src_failed(w, p);
				login_refused(w, p, 0, "a user that is no tunnel id or group id");
				if (answer(w, p, out, socks5_auth_reply(out, SOCKS5_AUTH_FAILED)))
					finish(w, p);
				return;
			}
			str_copy(sk->user, sizeof(sk->user), a.user);
			if (src_locked(w, sk->key) || !ops->socks_auth) {
				explicit_bzero(&a, sizeof(a));
				hs_refuse(w, p, SOCKS_R_LOCKED,
					  "more than 5 failed logins from it in 60 s");
				if (answer(w, p, out, socks5_auth_reply(out, SOCKS5_AUTH_FAILED)))
					finish(w, p);
				return;
			}
			p->state = PS_SOCKS_AUTH;
			/* the control thread answers within its 10 s, so the client gets status 1
			 */
			if (p->deadline < w->now + SOCKS_AUTH_MS)
				p->deadline = w->now + SOCKS_AUTH_MS;
			ops->socks_auth(ops->arg, w->id, conn_idx(w, p), p->gen, a.pass, sk->src);
			explicit_bzero(&a, sizeof(a));
			return; /* MB_SOCKS_AUTH follows */
		} else {
			struct socks5_request q;

			r = socks5_parse_request(sk->hs, sk->hs_len, &used, &q, &err);
			if (r != SOCKS5_DONE)
				break;
			memmove(sk->hs, sk->hs + used, sk->hs_len - used);
			sk->hs_len -= (uint32_t)used;
			if (q.cmd == SOCKS5_CMD_UDP_ASSOCIATE) {
				associate(w, p, &q);
				return;
			}
			if (q.cmd != SOCKS5_CMD_CONNECT) {
				hs_refuse(
				    w, p, SOCKS_R_HANDSHAKE,
				    "SOCKS5 UDP ASSOCIATE is not supported by the edge's server");
				if (answer(w, p, out,
					   socks5_reply(out, SOCKS5_REP_CMD_UNSUPPORTED)))
					finish(w, p);
				return;
			}
			if (!stream_room(w, p))
				return;
			mesh_open_socks(w, p, q.host, q.port,
					false); /* the bytes left are early data */
			return;
		}
		memmove(sk->hs, sk->hs + used, sk->hs_len - used);
		sk->hs_len -= (uint32_t)used;
	}
	if (r == SOCKS5_ERROR) {
		hs_refuse(w, p,
			  sk->step == 0 && err.code == SOCKS5_METHOD_REFUSED ? SOCKS_R_METHOD
									     : SOCKS_R_HANDSHAKE,
			  err.why ? err.why : "bad input");
		if (err.code >= 0) {
			size_t n = sk->step == 0   ? socks5_method_reply(out, (uint8_t)err.code)
				   : sk->step == 1 ? socks5_auth_reply(out, (uint8_t)err.code)
						   : socks5_reply(out, (uint8_t)err.code);

			if (!answer(w, p, out, n))
				return;
		}
		finish(w, p);
		return;
	}
	if (sk->hs_len >= SOCKS_HS_MAX) {
		hs_refuse(w, p, SOCKS_R_HANDSHAKE, "a handshake of more than 1024 bytes");
		conn_close(w, p, true, "SOCKS handshake too long");
		return;
	}
	arm_recv(w, p);
}

/*
 * n bytes (plaintext) from p's client. What is not yet parsed is at most
 * SOCKS_HS_MAX when step() looks (it refuses more); behind a whole request
 * there may be more, early data for the destination: one receive's worth (no
 * receive is armed from the request on), two with TLS's record held back.
 */
static bool hs_take(struct worker *w, struct conn *p, const uint8_t *b, size_t n)
{
	struct socks_conn *sk = p->sk;
	size_t cap = SOCKS_HS_MAX + 2 * (size_t)w->bufsz + 64;

	if (n > cap - sk->hs_len) {
		hs_refuse(w, p, SOCKS_R_HANDSHAKE, "a handshake of more than 1024 bytes");
		conn_close(w, p, true, "SOCKS handshake too long");
		return false;
	}
	if (sk->hs_len + n > sk->hs_cap) {
		size_t want = sk->hs_len + n < 2 * (size_t)sk->hs_cap ? 2 * (size_t)sk->hs_cap
								      : sk->hs_len + n;
		uint8_t *hs = malloc(want < cap ? want : cap);

		if (!hs) {
			conn_close(w, p, true, "out of memory");
			return false;
		}
		if (sk->hs) {
			memcpy(hs, sk->hs, sk->hs_len);
			explicit_bzero(sk->hs, sk->hs_cap);
			free(sk->hs);
		}
		sk->hs = hs;
		sk->hs_cap = (uint32_t)(want < cap ? want : cap);
	}
	memcpy(sk->hs + sk->hs_len, b, n);
	sk->hs_len = (uint32_t)(sk->hs_len + n);
	return true;
}

/* TLS bytes in the handshake: the TLS handshake first, then the SOCKS one's plaintext */
static bool hs_tls(struct worker *w, struct conn *p, const uint8_t *b, size_t n)
{
	char err[192];
	int r;

	xprt_feed(&p->x, b, n);
	if (p->state == PS_SOCKS_TLS) {
		struct xprt_out o;

		if (!obuf_ensure(w, p)) {
			xprt_feed(&p->x, NULL, 0);
			conn_close(w, p, true, "out of memory");
			return false;
		}
		obuf_room(w, p);
		o.p = p->tx.p;
		o.len = p->tx.tail;
		o.cap = w->txcap;
		r = xprt_handshake(&p->x, &o, err, sizeof(err));
		p->tx.tail = (uint32_t)o.len;
		obuf_kick(w, p);
		if (r < 0) {
			xprt_feed(&p->x, NULL, 0);
			hs_refuse(w, p, SOCKS_R_HANDSHAKE, err);
			finish(w, p); /* the alert goes out first */
			return false;
		}
		if (r == XPRT_WANT) {
			xprt_feed(&p->x, NULL, 0);
			return true;
		}
		p->state = PS_SOCKS_HS;
	}
	while ((r = xprt_read(&p->x, w->scratch, w->bufsz)) > 0)
		if (!hs_take(w, p, w->scratch, (size_t)r))
			break;
	xprt_feed(&p->x, NULL, 0);
	if (p->closing)
		return false;
	if (r < 0) {
		conn_close(w, p, true, r == -EPIPE ? "closed in the SOCKS handshake" : "TLS error");
		return false;
	}
	return true;
}

static void hs_recv(struct worker *w, struct conn *p, int res, unsigned flags)
{
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
	bool go;

	if (res <= 0) {
		if (flags & IORING_CQE_F_BUFFER)
			buf_recycle(w, bid);
		conn_close(w, p, true, "closed in the SOCKS handshake");
		return;
	}
	if (p->linger || (p->state != PS_SOCKS_TLS && p->state != PS_SOCKS_HS)) {
		buf_recycle(w, bid); /* a refusal on its way out, or bytes behind the request */
		return;
	}
	if (p->x.tls)
		go = hs_tls(w, p, buf_addr(w, bid) + HEADROOM, (size_t)res);
	else
		go = hs_take(w, p, buf_addr(w, bid) + HEADROOM, (size_t)res);
	buf_recycle(w, bid);
	if (!go)
		return;
	if (p->state == PS_SOCKS_TLS)
		arm_recv(w, p);
	else
		step(w, p);
}

void socks_auth_done(struct worker *w, struct mb_msg *m)
{
	const struct engine_socks_auth *a = (const struct engine_socks_auth *)m->data;
	struct conn *p = conn_ref(w, m->idx, m->gen);
	uint8_t out[SOCKS5_AUTH_REPLY_LEN];
	struct socks_conn *sk;

	if (!a || m->len != sizeof(*a) || !p || p->kind != CK_PLAIN || !p->sk ||
	    p->state != PS_SOCKS_AUTH || p->closing)
		return; /* the connection went (or timed out) meanwhile */
	sk = p->sk;
	if (!a->ok || !m->tun ||
	    (strcasecmp(sk->user, m->tun->id) &&
	     (!a->group[0] || strcasecmp(sk->user, a->group)))) {
		char why[256];

		if (!a->ok && a->transient) {
			/* no word on the token: no failed login, the client may retry */
			snprintf(why, sizeof(why), "login as %s: %s", sk->user,
				 a->reason[0] ? a->reason : "control daemon unavailable");
			hs_refuse(w, p, SOCKS_R_AUTH, why);
			if (answer(w, p, out, socks5_auth_reply(out, SOCKS5_AUTH_FAILED)))
				finish(w, p);
			return;
		}
		if (a->ok)
			snprintf(why, sizeof(why),
				 "login as %s: the token is not that tunnel's (it is %s's)",
				 sk->user, m->tun ? m->tun->id : "-");
		else
			snprintf(why, sizeof(why), "login as %s: %s", sk->user,
				 a->reason[0] ? a->reason : "refused");
		src_failed(w, p);
		login_refused(w, p, a->ok ? 2 : 1, why);
		if (answer(w, p, out, socks5_auth_reply(out, SOCKS5_AUTH_FAILED)))
			finish(w, p);
		return;
	}
	p->tun = m->tun;
	str_copy(sk->group, sizeof(sk->group), a->group);
	sk->mesh_role = a->mesh_role;
	sk->step = 2;
	p->state = PS_SOCKS_HS;
	if (!answer(w, p, out, socks5_auth_reply(out, SOCKS5_AUTH_OK)))
		return;
	step(w, p); /* a request sent behind the login is here already */
}

void socks_query_from(const struct conn *s, const char **group, bool *mesh_role)
{
	*group = s->sk->group;
	*mesh_role = s->sk->mesh_role;
}

/* ---------- UDP ASSOCIATE (RFC 1928 section 7) ---------- */

static void udp_dropped(struct worker *w, enum udp_drop why)
{
	atomic_fetch_add_explicit(&w->st_udp_drop[why], 1, memory_order_relaxed);
}

/* the SOCKS connection of c (a relay socket or a flow), while its association lasts */
static struct conn *owner_of(struct worker *w, const struct conn *c)
{
	struct conn *s = conn_ref(w, c->sk->owner, c->sk->owner_gen);

	return s && s->kind == CK_PLAIN && s->sk && s->sk->assoc ? s : NULL;
}

/*
 * A UDP ASSOCIATE: a UDP socket bound on the address the connection arrived
 * on (the kernel picks the port), whose datagrams only the connection's
 * source address (and the port the request named, unless 0) may send. Its
 * reply names it; the association lasts as long as the connection.
 */
static void associate(struct worker *w, struct conn *p, const struct socks5_request *q)
{
	struct socks_conn *sk = p->sk;
	unsigned *na = &w->socks->assoc[sk->lst];
	struct socks_src *f = src_slot(w->socks, sk->key, true, w->now);
	uint8_t out[SOCKS5_REPLY_MAX], a16[16];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	const char *why = NULL;
	struct conn *r = NULL;
	uint16_t port;
	int fd = -1;

	if (*na >= SOCKS_ASSOC_LST)
		why = "256 UDP ASSOCIATEs on the listener already";
	else if (!f)
		why = "every source slot is in use";
	else if (f->assoc >= SOCKS_ASSOC_SRC)
		why = "16 UDP ASSOCIATEs from that source already";
	else if (!fds_left(w, 1))
		why = "out of file descriptors";
	if (why) {
		hs_refuse(w, p, SOCKS_R_LIMIT, why);
		if (answer(w, p, out, socks5_reply(out, SOCKS5_REP_FAILURE)))
			finish(w, p);
		return;
	}
	if (getsockname(p->fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			((struct sockaddr_in *)&ss)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&ss)->sin6_port = 0;
		fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	}
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		why = "cannot bind a UDP relay socket";
	if (!why && !(r = conn_new(w, CK_LISTEN, fd)))
		why = "out of connection slots";
	if (!why && !(r->sk = calloc(1, sizeof(*r->sk))))
		why = "out of memory";
	if (why) {
		if (r)
			conn_release(w, r);
		if (fd >= 0)
			close(fd);
		hs_refuse(w, p, SOCKS_R_LIMIT, why);
		if (answer(w, p, out, socks5_reply(out, SOCKS5_REP_FAILURE)))
			finish(w, p);
		return;
	}
	port = sock_addr16(&ss, a16);
	r->sk->role = SK_RELAY;
	r->sk->owner = conn_idx(w, p);
	r->sk->owner_gen = p->gen;
	r->tun = p->tun;
	memcpy(r->bind.dst_addr, a16, 16); /* a flow's BIND dst: the relay's address */
	r->bind.dst_port = port;
	hs_end(w, p);
	(*na)++;
	f->assoc++;
	sk->assoc = true;
	sk->relay = conn_idx(w, r);
	sk->relay_gen = r->gen;
	sk->client_port = q->port;
	sk->hs_len = 0; /* nothing follows a UDP ASSOCIATE on its connection */
	p->state = PS_BOUND;
	p->deadline = 0;
	udp_arm_poll(w, r);
	log_debug("socks %u: tunnel %s (user %s, from %s): UDP ASSOCIATE relay on port %u",
		  sk->lport, p->tun ? p->tun->id : "-", sk->user, sk->ip, ntohs(port));
	if (!answer(w, p, out, socks5_reply_addr(out, SOCKS5_REP_OK, a16, ntohs(port))))
		return;
	arm_recv(w, p); /* its end is the association's */
}

/* s's association ends: its relay socket and flows close */
static void assoc_end(struct worker *w, struct conn *s)
{
	struct socks_conn *sk = s->sk;
	unsigned *na = &w->socks->assoc[sk->lst];
	struct socks_src *f = src_slot(w->socks, sk->key, false, w->now);
	struct conn *r = conn_ref(w, sk->relay, sk->relay_gen);
	uint32_t flows[SOCKS_UDP_FLOWS];
	unsigned n = sk->nflows;

	sk->assoc = false;
	(*na)--;
	if (f && f->assoc)
		f->assoc--;
	memcpy(flows, sk->flows, n * sizeof(flows[0]));
	sk->nflows = 0;
	for (unsigned i = 0; i < n; i++) {
		struct conn *c = conn_at(w, flows[i]);

		if (c && c->kind == CK_PLAIN && c->sk && !c->closing)
			conn_close(w, c, false, "UDP ASSOCIATE ended");
	}
	if (r && r->kind == CK_LISTEN && r->sk)
		conn_close(w, r, false, "UDP ASSOCIATE ended");
}

/* flow c is gone: out of its association's list */
static void flow_gone(struct worker *w, struct conn *c)
{
	struct conn *s = owner_of(w, c);
	uint32_t me = conn_idx(w, c);

	for (unsigned i = 0; s && i < s->sk->nflows; i++) {
		if (s->sk->flows[i] == me) {
			s->sk->flows[i] = s->sk->flows[--s->sk->nflows];
			break;
		}
	}
}

/* a datagram for flow c while its destination is being decided: queued, or dropped */
static void flow_queue(struct worker *w, struct conn *c, const uint8_t *d, uint32_t len)
{
	if (c->udp_q >= (w->live ? w->live->udp_queue : w->e->cfg.udp_queue) ||
	    (c->stash && c->stash_len + 4 + len > w->txcap) ||
	    (!c->stash && !(c->stash = pool_get(w)))) {
		udp_dropped(w, UDP_DROP_QUEUE);
		return;
	}
	frame_put32(c->stash + c->stash_len, len);
	memcpy(c->stash + c->stash_len + 4, d, len);
	c->stash_len += 4 + len;
	c->udp_q++;
}

/* one datagram to flow c's destination end p */
static void flow_send(struct worker *w, struct conn *p, const uint8_t *d, uint32_t len)
{
	if (send(p->fd, d, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		udp_dropped(w, UDP_DROP_QUEUE); /* its send queue is full, or ICMP said no */
		return;
	}
	p->last_io = w->now;
	p->rec_out += len;
	atomic_fetch_add_explicit(&w->st_udp_in, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->st_in, len, memory_order_relaxed);
}

/* the queue of flow c goes to p (started), or is dropped (p NULL: refused) */
static void flow_flush(struct worker *w, struct conn *c, struct conn *p)
{
	for (uint32_t off = 0; off < c->stash_len;) {
		uint32_t n = frame_get32(c->stash + off);

		if (p)
			flow_send(w, p, c->stash + off + 4, n);
		else
			udp_dropped(w, UDP_DROP_SOCKS);
		off += 4 + n;
	}
	pool_put(w, c->stash);
	c->stash = NULL;
	c->stash_len = 0;
	c->udp_q = 0;
}

/* A new destination of s's association: a flow, decided as a UDP OPEN from s's tunnel. */
static void flow_new(struct worker *w, struct conn *s, struct conn *r,
		     const struct sockaddr_storage *peer, socklen_t peer_len,
		     const struct socks5_request *q, const uint8_t *d, size_t used, size_t n)
{
	struct socks_conn *sk = s->sk, *fk;
	struct conn *c;

	if (sk->nflows >= SOCKS_UDP_FLOWS) {
		udp_dropped(w, UDP_DROP_SOCKS);
		log_every(NLOG_WARN,
			  "socks %u: tunnel %s: a UDP ASSOCIATE with %d destinations already, "
			  "dropping a new one's datagrams",
			  sk->lport, s->tun ? s->tun->id : "-", SOCKS_UDP_FLOWS);
		return;
	}
	c = conn_new(w, CK_PLAIN, -1); /* no socket: the relay's sends its answers */
	fk = c ? calloc(1, sizeof(*fk)) : NULL;
	if (!fk) {
		if (c)
			conn_release(w, c);
		udp_dropped(w, UDP_DROP_SOCKS);
		log_every(NLOG_WARN, "socks %u: UDP ASSOCIATE: out of connection slots or memory",
			  sk->lport);
		return;
	}
	c->sk = fk;
	fk->role = SK_FLOW;
	fk->lst = sk->lst;
	fk->lport = sk->lport;
	memcpy(fk->key, sk->key, 16);
	memcpy(fk->src, sk->src, 16);
	memcpy(fk->ip, sk->ip, sizeof(fk->ip));
	memcpy(fk->user, sk->user, sizeof(fk->user));
	memcpy(fk->group, sk->group, sizeof(fk->group));
	fk->mesh_role = sk->mesh_role;
	fk->owner = conn_idx(w, s);
	fk->owner_gen = s->gen;
	fk->dport = q->port;
	str_copy(fk->dst, sizeof(fk->dst), q->host);
	memcpy(fk->hdr, d, used); /* the answers' header: the destination as the client named it */
	fk->hdr_len = (uint16_t)used;
	fk->to = *peer;
	fk->to_len = peer_len;
	c->tun = s->tun;
	c->last_io = w->now;
	c->idle_ms = 0; /* socks_tick's own: [udp] idle_timeout */
	c->bind.origin_port = sock_addr16(peer, c->bind.origin_addr);
	memcpy(c->bind.dst_addr, r->bind.dst_addr, 16);
	c->bind.dst_port = r->bind.dst_port;
	sk->flows[sk->nflows++] = conn_idx(w, c);
	flow_queue(w, c, d + used, (uint32_t)(n - used));
	/* decided now (a refusal, an external destination) or later; c may be gone after */
	mesh_open_socks(w, c, q->host, q->port, true);
}

static void assoc_datagram(struct worker *w, struct conn *s, struct conn *r,
			   const struct sockaddr_storage *peer, socklen_t peer_len, uint8_t *d,
			   size_t n)
{
	struct socks_conn *sk = s->sk;
	struct socks5_err err = {.code = -1, .why = NULL};
	struct socks5_request q;
	uint16_t sport;
	uint8_t a16[16];
	struct conn *c = NULL;
	size_t used = 0;

	sport = sock_addr16(peer, a16);
	if (memcmp(a16, sk->src, 16) || (sk->client_port && ntohs(sport) != sk->client_port)) {
		char ip[48];

		udp_dropped(w, UDP_DROP_SOCKS);
		sock_addr16_ntop(a16, ip, sizeof(ip));
		log_every(NLOG_INFO,
			  "socks %u: tunnel %s: a UDP datagram from %s port %u, not the "
			  "association's client, dropped",
			  sk->lport, s->tun ? s->tun->id : "-", ip, ntohs(sport));
		return;
	}
	if (socks5_parse_udp(d, n, &used, &q, &err) != SOCKS5_DONE || used >= n) {
		udp_dropped(w, UDP_DROP_SOCKS);
		log_every(NLOG_INFO, "socks %u: tunnel %s: UDP datagram dropped: %s", sk->lport,
			  s->tun ? s->tun->id : "-",
			  err.why ? err.why : "no data behind its header");
		return;
	}
	for (unsigned i = 0; i < sk->nflows && !c; i++) {
		struct conn *x = conn_at(w, sk->flows[i]);

		if (x && !x->closing && x->sk && x->bind.origin_port == sport &&
		    x->sk->dport == q.port && !strcmp(x->sk->dst, q.host))
			c = x;
	}
	if (!c) {
		flow_new(w, s, r, peer, peer_len, &q, d, used, n);
		return;
	}
	c->last_io = w->now;
	if (c->sk->refused)
		udp_dropped(w, UDP_DROP_SOCKS); /* its refusal was logged once */
	else if (c->state == PS_SOCKS_OPEN)
		flow_queue(w, c, d + used, (uint32_t)(n - used));
	else if (conn_at(w, c->peer))
		flow_send(w, conn_at(w, c->peer), d + used, (uint32_t)(n - used));
	else
		udp_dropped(w, UDP_DROP_SOCKS);
}

void socks_udp_poll(struct worker *w, struct conn *r, int res)
{
	struct conn *s = owner_of(w, r);

	r->recv_armed = false;
	if (!s) {
		conn_close(w, r, false, "its UDP ASSOCIATE ended");
		return;
	}
	if (res < 0 && res != -ECANCELED)
		log_every(NLOG_WARN, "socks %u: a UDP relay's poll: %s", s->sk->lport,
			  strerror(-res));
	for (int i = 0; i < 64 && !r->closing && s->sk->assoc; i++) {
		struct sockaddr_storage peer;
		socklen_t peer_len = sizeof(peer);
		ssize_t n = recvfrom(r->fd, w->udp_buf + 4, LINK_UDP_MAX + 1,
				     MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&peer, &peer_len);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			continue; /* an ICMP error queued on the socket: the next one */
		}
		if (n == 0 || n > LINK_UDP_MAX) {
			udp_dropped(w, UDP_DROP_OVERSIZE);
			continue;
		}
		assoc_datagram(w, s, r, &peer, peer_len, w->udp_buf + 4, (size_t)n);
	}
	udp_arm_poll(w, r);
}

/* flow c's destination refused: logged once, its datagrams dropped until it idles out */
static void flow_refused(struct worker *w, struct conn *c, uint8_t status, uint32_t rule,
			 const char *why)
{
	/* one rate limit per cause, as meshopen.c's */
#define REFUSED_LINE()                                                                             \
	log_every(NLOG_INFO,                                                                       \
		  "socks %u: tunnel %s (user %s, from %s) UDP -> %.255s:%u refused: %s",           \
		  c->sk->lport, c->tun ? c->tun->id : "-", c->sk->user, c->sk->ip,                 \
		  c->mesh_host ? c->mesh_host : "-", c->sk->dport, why)
	switch (status) {
	case LINK_OPEN_DENIED:
		if (rule)
			REFUSED_LINE();
		else
			REFUSED_LINE();
		break;
	case LINK_OPEN_NOT_FOUND:
		REFUSED_LINE();
		break;
	case LINK_OPEN_OFFLINE:
		REFUSED_LINE();
		break;
	case LINK_OPEN_NOT_ALLOWED:
		REFUSED_LINE();
		break;
	default:
		REFUSED_LINE();
		break;
	}
#undef REFUSED_LINE
	c->sk->refused = true;
	c->peer = NONE;
	c->state = PS_BOUND;
	c->deadline = 0;
	flow_flush(w, c, NULL);
}

/* flow c's destination end p is there: its queue first, then datagrams both ways */
static void flow_start(struct worker *w, struct conn *c, struct conn *p)
{
	c->state = PS_BOUND;
	c->deadline = 0;
	c->peer = conn_idx(w, p);
	p->peer = conn_idx(w, c);
	p->pp = true;
	p->connected = true;
	p->idle_ms = 0; /* the flow's idle timeout is c's */
	p->last_io = c->last_io = w->now;
	flow_flush(w, c, p);
	arm_recv(w, p);
}

/* a datagram from flow c's destination (p): back to the client behind its header */
static void flow_back(struct worker *w, struct conn *p, int res, unsigned flags)
{
	struct conn *c = conn_at(w, p->peer);
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
	bool buf = flags & IORING_CQE_F_BUFFER;
	struct conn *s = c && c->sk ? owner_of(w, c) : NULL;
	struct conn *r = s ? conn_ref(w, s->sk->relay, s->sk->relay_gen) : NULL;

	if (!r || (res == 0 && p->udp_pair) || (res < 0 && res != -ECONNREFUSED)) {
		if (buf)
			buf_recycle(w, bid);
		conn_close(w, p, true, res < 0 ? strerror(-res) : "udp flow ended");
		return;
	}
	if (res > 0 && (unsigned)res <= w->bufsz - 4 && buf) {
		struct iovec iov[2] = {
		    {.iov_base = c->sk->hdr, .iov_len = c->sk->hdr_len},
		    {.iov_base = buf_addr(w, bid) + HEADROOM, .iov_len = (size_t)res},
		};
		struct msghdr mh = {
		    .msg_name = &c->sk->to,
		    .msg_namelen = c->sk->to_len,
		    .msg_iov = iov,
		    .msg_iovlen = 2,
		};

		if (sendmsg(r->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			udp_dropped(w, UDP_DROP_QUEUE);
		} else {
			p->last_io = c->last_io = w->now;
			p->rec_in += (uint64_t)res;
			atomic_fetch_add_explicit(&w->st_udp_out, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&w->st_out, (uint64_t)res, memory_order_relaxed);
		}
	} else if (res >= 0) {
		udp_dropped(w, UDP_DROP_OVERSIZE);
	}
	if (buf)
		buf_recycle(w, bid);
	if (!p->closing)
		arm_recv(w, p);
}

/* bytes on an association's connection mean nothing (RFC 1928); its end ends it */
static void assoc_conn_recv(struct worker *w, struct conn *s, int res, unsigned flags)
{
	if (flags & IORING_CQE_F_BUFFER)
		buf_recycle(w, flags >> IORING_CQE_BUFFER_SHIFT);
	if (res <= 0) {
		conn_close(w, s, res < 0, "its UDP ASSOCIATE's connection closed");
		return;
	}
	arm_recv(w, s);
}

/* a flow's tick: no datagram either way for [udp] idle_timeout ends it */
static void flow_tick(struct worker *w, struct conn *c, uint64_t now)
{
	unsigned idle = w->live ? w->live->udp_idle_ms : w->e->cfg.udp_idle_ms;
	struct conn *p = conn_at(w, c->peer);
	uint64_t last = p && p->last_io > c->last_io ? p->last_io : c->last_io;

	if (!idle || now - last <= idle)
		return;
	atomic_fetch_add_explicit(&w->st_udp_expired, 1, memory_order_relaxed);
	if (p)
		conn_reason(p, EC_IDLE_TIMEOUT);
	conn_close(w, c, false, "udp flow idle");
}

/* ---------- meshopen.c's answers ---------- */

void socks_refused(struct worker *w, struct conn *s, uint8_t status, uint32_t rule, const char *why)
{
	uint8_t out[SOCKS5_REPLY_LEN];

	if (s->sk->role == SK_FLOW) {
		flow_refused(w, s, status, rule, why);
		return;
	}
	/* one rate limit per cause, as meshopen.c's */
#define REFUSED_LINE()                                                                             \
	log_every(NLOG_INFO, "socks %u: tunnel %s (user %s, from %s) -> %.255s:%u refused: %s",    \
		  s->sk->lport, s->tun ? s->tun->id : "-", s->sk->user, s->sk->ip,                 \
		  s->mesh_host ? s->mesh_host : "-", s->port, why)
	switch (status) {
	case LINK_OPEN_DENIED:
		if (rule)
			REFUSED_LINE();
		else
			REFUSED_LINE();
		break;
	case LINK_OPEN_NOT_FOUND:
		REFUSED_LINE();
		break;
	case LINK_OPEN_OFFLINE:
		REFUSED_LINE();
		break;
	case LINK_OPEN_NOT_ALLOWED:
		REFUSED_LINE();
		break;
	case LINK_OPEN_BAD:
		REFUSED_LINE();
		break;
	default:
		REFUSED_LINE();
		break;
	}
#undef REFUSED_LINE
	s->peer = NONE;
	s->state = PS_BOUND;
	if (answer(w, s, out, socks5_reply(out, socks5_rep_from_open(status))))
		finish(w, s);
}

void socks_stream(struct worker *w, struct conn *s, struct conn *p)
{
	uint8_t out[SOCKS5_REPLY_LEN];
	unsigned idle = w->live ? w->live->idle_timeout_ms : 0;

	if (s->sk->role == SK_FLOW) {
		flow_start(w, s, p);
		return;
	}
	hs_end(w, s);
	s->state = PS_BOUND;
	s->deadline = 0;
	s->peer = conn_idx(w, p);
	p->peer = conn_idx(w, s);
	s->pp = p->pp = true;
	p->connected = true;
	s->last_io = p->last_io = w->now;
	s->idle_ms = p->idle_ms = idle;
	if (!answer(w, s, out, socks5_reply(out, SOCKS5_REP_OK)))
		return;
	/* bytes the client sent behind its request */
	if (s->sk->hs_len) {
		if (put(w, p, s->sk->hs, s->sk->hs_len) < 0)
			return;
		p->rec_out += s->sk->hs_len;
		s->sk->hs_len = 0;
		obuf_kick(w, p);
	}
	socks_arm(w, s);
	socks_arm(w, p);
}

/* ---------- plain to plain ---------- */

/* c's direction out ended at the other end: passed on once its bytes are out */
static void pp_shut(struct conn *c)
{
	if (c->shut_wr_pending && !c->shut_wr_done && obuf_idle(c)) {
		if (c->x.tls)
			xprt_shutdown(&c->x); /* a close_notify first */
		shutdown(c->fd, SHUT_WR);
		c->shut_wr_done = true;
	}
}

/* both directions over and out: both close */
static void pp_maybe_done(struct worker *w, struct conn *p)
{
	struct conn *q = conn_at(w, p->peer);

	if (!q || !p->eof_in || !q->eof_in || !p->shut_wr_done || !q->shut_wr_done)
		return;
	p->peer = q->peer = NONE;
	conn_close(w, q, false, NULL);
	conn_close(w, p, false, NULL);
}

static void pp_eof(struct worker *w, struct conn *p, struct conn *q)
{
	p->eof_in = true;
	q->shut_wr_pending = true;
	pp_shut(q);
	pp_maybe_done(w, p);
}

static void pp_recv(struct worker *w, struct conn *p, int res, unsigned flags)
{
	struct conn *q = conn_at(w, p->peer);
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
	const uint8_t *b;
	int r = 0;

	if (res <= 0 || !q) {
		if (flags & IORING_CQE_F_BUFFER)
			buf_recycle(w, bid);
		if (q && res == 0)
			pp_eof(w, p, q);
		else
			conn_close(w, p, true, q ? strerror(-res) : "its peer went");
		return;
	}
	b = buf_addr(w, bid) + HEADROOM;
	p->last_io = q->last_io = w->now;
	if (!p->x.tls) {
		r = put(w, q, b, (size_t)res);
		buf_recycle(w, bid);
		if (r < 0)
			return;
		p->rec_in += (uint64_t)res;
		q->rec_out += (uint64_t)res;
		atomic_fetch_add_explicit(&w->st_in, (uint64_t)res, memory_order_relaxed);
	} else {
		xprt_feed(&p->x, b, (size_t)res);
		while ((r = xprt_read(&p->x, w->scratch, w->bufsz)) > 0) {
			if (put(w, q, w->scratch, (size_t)r) < 0)
				break;
			q->rec_out += (uint64_t)r;
			atomic_fetch_add_explicit(&w->st_in, (uint64_t)r, memory_order_relaxed);
		}
		xprt_feed(&p->x, NULL, 0);
		buf_recycle(w, bid);
		if (q->closing || p->closing)
			return;
		if (r == -EPIPE) {
			obuf_kick(w, q);
			pp_eof(w, p, q);
			return;
		}
		if (r < 0) {
			conn_close(w, p, true, "TLS error");
			return;
		}
	}
	obuf_kick(w, q);
	socks_arm(w, p);
}

void socks_on_recv(struct worker *w, struct conn *p, int res, unsigned flags)
{
	p->recv_armed = false;
	if (res == -ENOBUFS) {
		p->rearm = true; /* retried after this batch */
		w->starved++;
		return;
	}
	if (p->sk && p->sk->assoc)
		assoc_conn_recv(w, p, res, flags);
	else if (p->pp && p->udp)
		flow_back(w, p, res, flags);
	else if (p->sk && p->state != PS_BOUND)
		hs_recv(w, p, res, flags);
	else if (p->linger) /* a refusal on its way out */
		hs_recv(w, p, res, flags);
	else
		pp_recv(w, p, res, flags);
}

void socks_on_sent(struct worker *w, struct conn *p)
{
	struct conn *q = conn_at(w, p->peer);

	if (p->linger) {
		if (obuf_idle(p))
			close_clean(w, p);
		return;
	}
	p->last_io = w->now;
	obuf_maybe_release(w, p);
	if (p->state != PS_BOUND || !p->pp)
		return;
	pp_shut(p);
	if (q)
		socks_arm(w, q); /* p has room again */
	if (!p->closing)
		pp_maybe_done(w, p);
}

void socks_arm(struct worker *w, struct conn *p)
{
	struct conn *q;
	size_t need;

	if (p->sk && p->sk->role == SK_FLOW)
		return; /* no socket of its own */
	if ((p->sk && p->sk->assoc) || (p->pp && p->udp)) {
		arm_recv(w, p);
		return;
	}
	if (p->sk && p->state != PS_BOUND) {
		if (p->state == PS_SOCKS_TLS || p->state == PS_SOCKS_HS)
			arm_recv(w, p);
		return;
	}
	q = conn_at(w, p->peer);
	if (!q || p->eof_in || p->linger || !p->connected || !p->pp)
		return;
	/* what one receive may put on q (a TLS receive may complete a record held before) */
	need = xprt_overhead(&q->x, (p->x.tls ? 2u : 1u) * w->bufsz) + 64;
	if (q->tx.p && obuf_room(w, q) < need)
		return;
	arm_recv(w, p);
}

void socks_closing(struct worker *w, struct conn *p)
{
	struct conn *q = conn_at(w, p->peer);

	hs_end(w, p);
	if (p->sk && p->sk->streamed && p->tun) {
		p->sk->streamed = false;
		p->tun->socks_streams--;
	}
	if (p->sk && p->sk->assoc)
		assoc_end(w, p);
	if (p->sk && p->sk->role == SK_FLOW)
		flow_gone(w, p);
	if (!q)
		return;
	p->peer = NONE;
	q->peer = NONE;
	if (q->kind == CK_PLAIN)
		conn_close(w, q, true, "its SOCKS peer closed");
}

bool socks_tick(struct worker *w, struct conn *p, uint64_t now)
{
	if (p->sk && p->state == PS_SOCKS_OPEN && p->deadline && now > p->deadline) {
		mesh_open_timeout(w, p); /* answered as an OPEN's: host unreachable */
		return true;
	}
	if (p->sk && p->sk->role == SK_FLOW) {
		flow_tick(w, p, now);
		return true;
	}
	if (p->sk && p->state != PS_BOUND && p->deadline && now > p->deadline) {
		hs_refuse(w, p, SOCKS_R_HANDSHAKE, "no whole handshake within 10 s");
		conn_close(w, p, true, "SOCKS handshake timed out");
		return true;
	}
	if (p->linger && p->deadline && now > p->deadline) {
		conn_close(w, p, true, "refusal not taken");
		return true;
	}
	if (p->pp && p->state == PS_BOUND && p->idle_ms && p->connected &&
	    now - p->last_io > p->idle_ms) {
		log_every(NLOG_INFO, "socks: a stream with no bytes either way for idle_timeout, "
				     "resetting it");
		conn_reason(p, EC_IDLE_TIMEOUT);
		conn_close(w, p, true, "idle timeout");
		return true;
	}
	/* an external destination's end while it connects: arm_connect bounds it */
	return true;
}

/* t's token went (revoked, deauth, the tunnel deleted): its SOCKS conns end, with their peers */
void socks_kick(struct worker *w, const struct tunnel *t)
{
	unsigned n = 0;

	for (uint32_t i = 0; t && i < w->high; i++) {
		struct conn *p = &w->conns[i];

		/* a UDP ASSOCIATE's flows end with its connection */
		if (p->kind != CK_PLAIN || p->closing || !p->sk || p->tun != t ||
		    p->sk->role == SK_FLOW)
			continue;
		conn_close(w, p, true, "its token was revoked");
		n++;
	}
	if (n)
		log_info("socks: tunnel %s's token was revoked: %u SOCKS connection(s) reset",
			 t->id, n);
}

void socks_free(struct worker *w, struct conn *p)
{
	(void)w;
	if (p->x.tls)
		xprt_free(&p->x);
	if (p->sk->hs) {
		explicit_bzero(p->sk->hs, p->sk->hs_cap);
		free(p->sk->hs);
	}
	explicit_bzero(p->sk, sizeof(*p->sk));
	free(p->sk);
	p->sk = NULL;
}

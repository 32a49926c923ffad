// SPDX-License-Identifier: Apache-2.0
/*
 * The client role (nave start): one floating worker that keeps a pool of
 * idle data links to relayd (connect, TLS handshake, DATA_HELLO), and, when
 * relayd binds a stream to one of them, connects to the local service the
 * rule names (with an optional PROXY protocol header) and relays. Only
 * relayd trims idle links, so a link is never closed here while a BIND for
 * it may be in flight.
 *
 * Mesh streams go the other way: the local listeners of port maps and SOCKS
 * proxies (MB_MAP_LISTEN) accept connections, and each is carried on an
 * outbound link (DATA_HELLO flag LINK_HELLO_OUTBOUND: relayd never BINDs on
 * it), a pool of its own that is opened on demand and trimmed here (relayd
 * never binds on it, so nothing can be in flight). A connection waits for an
 * idle outbound link (PS_MAPWAIT), sends OPEN and waits for OPENED
 * (PS_OPENING), then streams as a BIND's stream does. A SOCKS connection
 * first speaks SOCKS5 (PS_SOCKS, common/socks5.h).
 *
 * A UDP port map's socket is polled (dial_udp_poll); each local source address
 * and port is a flow (w->udp_tab), a conn of its own that waits, OPENs with
 * LINK_OPEN_UDP and streams like a TCP map's connection, one chunk a datagram.
 * The flow's fd is a dup of the map's socket, used to send only (sendto the
 * source, from the map's address and port). While it waits it queues at most
 * [udp] queue datagrams (beyond: dropped, counted); a refused flow drops its
 * datagrams for MAP_UDP_RETRY_MS before it OPENs again; a flow idle for
 * UDP_MAP_IDLE_MS (udp.c) ends, and a full map ends its least recently used
 * flow for a new source (flow_evict).
 */
#include "dp.h"

#include "log.h"
#include "passwd.h"
#include "proxy.h"
#include "sock.h"
#include "socks5.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/mem.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* SOCKS UDP ASSOCIATE: associations per SOCKS listener, flows (destinations) per association */
#define SOCKS_ASSOC_MAX 32
#define ASSOC_FLOWS	32
/* UDP port maps: flows per map, and how long a refused flow drops its datagrams */
#define MAP_UDP_FLOWS	 128
#define MAP_UDP_RETRY_MS 5000
/* a full map ends its least recently used flow for a new source, if idle this long */
#define MAP_UDP_EVICT_MS 1000
/* a local connection waits this long for an outbound link, and its SOCKS handshake as long */
#define MAP_WAIT_MS 10000
/* OPENED within this (relayd answers every OPEN within 10 s) */
#define OPENED_TIMEOUT_MS 15000
/* local connections waiting for an outbound link at most */
#define MAP_WAIT_MAX 1024
/* bytes of a SOCKS handshake (greeting, authentication, request, early data) */
#define SOCKS_HS_MAX 1024

/* A port map's or SOCKS proxy's settings, shared by its listener and its connections. */
#define SOCKS_HS_CONCURRENT 64	  /* handshakes under way per SOCKS listener */
#define SRC_SLOTS	    64	  /* sources with failed logins remembered per listener */
#define SRC_FAILS_MAX	    5	  /* failed logins a source may have in SRC_WINDOW_MS */
#define SRC_WINDOW_MS	    60000 /* ... and how long it is refused past them */

struct dial_map {
	unsigned refs;
	struct engine_map m;
	/*
	 * scrypt runs on the worker (tens of ms, every stream waits): the password
	 * last verified is remembered as its SHA-256, and failed attempts are held to
	 * AUTH_FAILS_MAX a second (past it a wrong password is not even checked).
	 */
	uint8_t ok_sha[SHA256_DIGEST_LENGTH];
	bool ok_set;
	uint64_t fail_t0;
	unsigned fails;
	unsigned handshakes; /* SOCKS connections not past their request yet */
	unsigned flows;	     /* a UDP map's flows (a SOCKS listener's: its associations') */
	unsigned assocs;     /* a SOCKS listener's UDP ASSOCIATEs */
	/* sources with failed logins: past SRC_FAILS_MAX in SRC_WINDOW_MS, refused as long */
	struct src_fail {
		uint8_t addr[16];
		uint64_t t0, until; /* ms: the window's start; refused before until */
		unsigned fails;
	} src[SRC_SLOTS];
};

#define AUTH_FAILS_MAX 4

/* A mesh stream's local end (or a listener's map): c->mo. */
struct dial_open {
	struct dial_map *map;
	bool in_hs;	    /* counted in map->handshakes */
	uint8_t src[16];    /* the SOCKS client's address */
	uint32_t link;	    /* PS_OPENING: the link its OPEN went on */
	uint32_t stream_id; /* the OPEN's */
	uint8_t step;	    /* PS_SOCKS: 0 greeting, 1 authentication, 2 request */
	bool socks;	    /* a SOCKS CONNECT: the reply follows OPENED */
	uint16_t port;	    /* the destination */
	char name[LINK_OPEN_NAME_MAX + 1];
	uint16_t hs_len;	      /* bytes held in hs: the handshake so far, then early data;
					 a UDP ASSOCIATE's flow: the header its answers carry */
	uint8_t hs[SOCKS_HS_MAX + 4]; /* + a chunk header in front of early data */
	/* SOCKS UDP ASSOCIATE (see "UDP ASSOCIATE" below) */
	bool associated;	   /* the control connection, past its UDP ASSOCIATE */
	bool relay;		   /* the association's relay socket (a CK_LISTEN conn) */
	bool assoc_flow;	   /* a flow of one (the client's source and one destination) */
	uint32_t assoc, assoc_gen; /* control and flow: the relay's conn */
	uint16_t client_port;	   /* relay: the only source port taken (0: any) */
	uint8_t nflows;		   /* relay: its flows */
	uint32_t flows[ASSOC_FLOWS];
};

static void map_put(struct dial_map *m)
{
	if (m && --m->refs == 0)
		free(m);
}

void dial_mo_free(struct conn *c)
{
	if (c->mo->in_hs)
		c->mo->map->handshakes--;
	map_put(c->mo->map);
	free(c->mo);
	c->mo = NULL;
}

/* ---------- the pool of data links ---------- */

static bool dial_open_link(struct worker *w, bool out)
{
	struct engine_config *cfg = &w->e->cfg;
	struct conn *l;
	int fd;

	fd = socket(cfg->server_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_every(NLOG_WARN, "data link: socket: %s", strerror(errno));
		return false;
	}
	l = conn_new(w, CK_LINK, fd);
	if (!l || xprt_init_client(&l->x, cfg->xprt, fd, cfg->server_host) < 0) {
		log_every(NLOG_WARN, "data link: out of connection slots or memory");
		if (l)
			conn_release(w, l);
		close(fd);
		return false;
	}
	l->state = LS_CONNECT;
	l->deadline = now_ms() + HANDSHAKE_TIMEOUT_MS;
	l->outbound = out;
	if (out)
		w->out_opening++;
	else
		w->opening++;
	arm_connect(w, l, (struct sockaddr *)&cfg->server_addr, cfg->server_addr_len);
	return true;
}

/*
 * Handshakes in flight at most while a burst ramps the pool up: below the
 * server's default max_conns_per_source (256 unfinished handshakes per source
 * and worker), so a ramp never has its own handshakes reset.
 */
#define DIAL_OPENING_MAX 128

/*
 * Keeps pool_idle links idle or on their way. A burst of public connections
 * ramps up: each BIND that says others wait (LINK_BIND_WAITING) asks for one
 * link more than its replacement, so the links on their way double every
 * handshake time instead of staying at pool_idle.
 */
static void dial_fill_pool(struct worker *w)
{
	if (!w->session || w->stopping || now_ms() < w->open_block_until)
		return;
	while (w->links + w->opening + w->out_links + w->out_opening < w->max_links &&
	       w->opening < DIAL_OPENING_MAX) {
		if (w->idle + w->opening >= w->pool_idle) {
			if (!w->want_more)
				break;
			w->want_more--;
		}
		if (!dial_open_link(w, false)) {
			w->open_block_until = now_ms() + 1000; /* retried on a later tick */
			break;
		}
	}
}

static void dial_idle_unlink(struct worker *w, struct conn *l)
{
	if (l->outbound) {
		struct conn *n = conn_at(w, l->next), *pv = conn_at(w, l->prev);

		if (pv)
			pv->next = l->next;
		else
			w->out_idle_head = l->next;
		if (n)
			n->prev = l->prev;
		l->next = l->prev = NONE;
		w->out_idle--;
		return;
	}
	w->idle--;
	atomic_fetch_sub(&w->st_idle, 1);
}

static void dial_out_dispatch(struct worker *w);

static void dial_link_idle(struct worker *w, struct conn *l)
{
	if (!w->session || l->draining) {
		l->state = LS_STREAM; /* not counted idle */
		link_close_graceful(w, l, "session ended");
		return;
	}
	if (l->outbound) {
		struct conn *h = conn_at(w, w->out_idle_head);

		/* OPENED is what comes on it, never a BIND */
		l->rx.allow_bind = false;
		l->rx.allow_opened = true;
		l->last_io = w->now;
		l->prev = NONE;
		l->next = w->out_idle_head;
		if (h)
			h->prev = conn_idx(w, l);
		w->out_idle_head = conn_idx(w, l);
		w->out_idle++;
		link_arm_recv(w, l);
		dial_out_dispatch(w);
		return;
	}
	w->idle++;
	atomic_fetch_add(&w->st_idle, 1);
	link_arm_recv(w, l);
}

/* What a mesh connection is called in a log line: "port map 16379 -> redis:22001". */
static const char *mo_what(const struct conn *p, char *buf, size_t len)
{
	const struct dial_open *mo = p->mo;

	if (mo->socks)
		snprintf(buf, len, "SOCKS proxy %u: CONNECT %s:%u", mo->map->m.local, mo->name,
			 mo->port);
	else if (mo->assoc_flow)
		snprintf(buf, len, "SOCKS proxy %u: UDP %s:%u", mo->map->m.local, mo->name,
			 mo->port);
	else if (mo->map->m.kind == EMAP_SOCKS)
		snprintf(buf, len, "SOCKS proxy %u", mo->map->m.local);
	else
		snprintf(buf, len, "%sport map %u -> %s:%u", mo->map->m.udp ? "udp " : "",
			 mo->map->m.local, mo->name, mo->port);
	return buf;
}

/*
 * The log line of a refused mesh connection, counted by status (0: refused
 * here). Rate-limited per cause (each status, a rule's denial, each local
 * cause), so that one cause repeated does not hide another.
 */
enum { RL_RULE = 16, RL_LINK, RL_OLD, RL_WAIT, RL_N };

static void mo_log(struct worker *w, struct conn *p, unsigned status, unsigned cause,
		   const char *why)
{
	static struct log_limit ll[RL_N];
	char what[LINK_OPEN_NAME_MAX + 64];

	atomic_fetch_add(&w->st_mesh_refused[status <= LINK_OPEN_STATUS_MAX ? status : 0], 1);
	log_limited(&ll[cause < RL_N ? cause : 0], NLOG_WARN, "%s refused: %s",
		    mo_what(p, what, sizeof(what)), why);
}

/* A mesh connection refused before its stream: counted, one line, an RST. */
static void wait_unlink(struct worker *w, struct conn *p);
static void flow_refused(struct worker *w, struct conn *p);
static bool socks_send(struct worker *w, struct conn *p, const uint8_t *b, size_t n);
static void socks_finish(struct worker *w, struct conn *p);

/*
 * A local refusal. A SOCKS client past its request is told why first (RFC
 * 1928): the edge's answer's code, or "general failure" for a limit or no
 * session here.
 */
static void mo_refuse(struct worker *w, struct conn *p, unsigned status, unsigned cause,
		      const char *why)
{
	uint8_t out[SOCKS5_REPLY_LEN];

	mo_log(w, p, status, cause, why);
	if (p->udp) {
		flow_refused(w, p);
		return;
	}
	if (p->mo->socks && p->state != PS_BOUND) {
		if (p->state == PS_MAPWAIT)
			wait_unlink(w, p);
		p->state = PS_BOUND;
		p->deadline = 0;
		if (socks_send(w, p, out,
			       socks5_reply(out, status ? socks5_rep_from_open(status)
							: SOCKS5_REP_FAILURE)))
			socks_finish(w, p);
		return;
	}
	conn_close(w, p, true, "refused");
}

static void wait_unlink(struct worker *w, struct conn *p)
{
	struct conn *n = conn_at(w, p->next), *pv = conn_at(w, p->prev);

	if (pv)
		pv->next = p->next;
	else
		w->wait_head = p->next;
	if (n)
		n->prev = p->prev;
	else
		w->wait_tail = p->prev;
	p->next = p->prev = NONE;
	w->waiting--;
}

static void assoc_end(struct worker *w, struct conn *c);
static void assoc_flow_gone(struct worker *w, struct conn *c);

static void dial_closing(struct worker *w, struct conn *c, const char *why)
{
	if (c->kind == CK_PLAIN && c->mo) {
		struct conn *l;

		if (c->mo->associated)
			assoc_end(w, c);
		if (c->udp && c->mo->assoc_flow)
			assoc_flow_gone(w, c);
		if (c->udp) { /* a UDP map's flow */
			udp_flow_remove(w, c);
			c->mo->map->flows--;
			if (c->udp_counted)
				atomic_fetch_sub_explicit(&w->st_udp_flows, 1,
							  memory_order_relaxed);
			c->udp_counted = false;
		}
		if (c->state == PS_MAPWAIT)
			wait_unlink(w, c);
		/* its link still waits for OPENED: the stream is reset once that comes */
		l = c->state == PS_OPENING ? conn_at(w, c->mo->link) : NULL;
		if (l && l->peer == conn_idx(w, c))
			l->peer = NONE;
		c->state = PS_BOUND;
		return;
	}
	if (c->kind != CK_LINK)
		return;
	if (c->state == LS_IDLE)
		dial_idle_unlink(w, c);
	if (c->state == LS_CONNECT || c->state == LS_HANDSHAKE) {
		if (c->outbound)
			w->out_opening--;
		else
			w->opening--;
	} else if (c->outbound) {
		w->out_links--;
		if (c->state == LS_OPENING && conn_at(w, c->peer)) {
			struct conn *p = conn_at(w, c->peer);
			char msg[160];

			/* stream_link_closing resets p */
			snprintf(msg, sizeof(msg),
				 "the data link closed before the server answered (%s)",
				 why ? why : "closed");
			mo_log(w, p, 0, RL_LINK, msg);
			p->state = PS_BOUND;
		}
	} else {
		w->links--;
	}
}

/* TLS is up: DATA_HELLO, then the link is idle. */
static void dial_handshake_done(struct worker *w, struct conn *l)
{
	struct link_data_hello h;

	if (xprt_pending(&l->x)) { /* relayd says nothing before our DATA_HELLO */
		log_every(NLOG_WARN,
			  "data link fd %d: bytes from the server before DATA_HELLO, "
			  "closing",
			  l->fd);
		conn_close(w, l, false, "data before DATA_HELLO");
		return;
	}
	frame_hello_build(&h, w->tunnel_id, w->secret);
	if (l->outbound)
		frame_hello_set_flags(&h, LINK_HELLO_OUTBOUND);
	if (link_write(w, l, &h, sizeof(h)) < 0) {
		conn_close(w, l, false, "cannot send DATA_HELLO");
		return;
	}
	obuf_kick(w, l);
	if (l->outbound) {
		w->out_opening--;
		w->out_links++;
	} else {
		w->opening--;
		w->links++;
	}
	l->deadline = 0;
	l->counted = true;
	atomic_fetch_add(&w->st_links, 1);
	link_make_idle(w, l);
}

/* ---------- streams: BIND and the local connect ---------- */

static void dial_bind(struct worker *w, struct conn *l, const struct link_bind *b)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct engine_rule rule;
	uint16_t port = ntohs(b->port), flags = ntohs(b->flags);
	bool http = flags & LINK_BIND_HTTP;
	struct conn *p;
	int fd;

	dial_idle_unlink(w, l);
	l->state = LS_STREAM;
	l->tx_done = l->rx_done = false;
	if (!(flags & LINK_BIND_WAITING))
		w->want_more = 0; /* nobody waits behind it: the burst is over */
	else if (w->want_more < DIAL_OPENING_MAX)
		w->want_more++;
	dial_fill_pool(w);
	if (!ops->rule_find(ops->arg, port, flags, &rule)) {
		log_every(NLOG_WARN, "stream for %s %u: no rule, resetting",
			  http ? "HTTP route" : "port", port);
		link_send_reset(w, l);
		return;
	}
	if (flags & LINK_BIND_UDP) {
		if (!udp_dial(w, l, b, &rule))
			link_send_reset(w, l);
		return;
	}
	/* HTTP rules send a PROXY header only when asked (--proxy-protocol): the edge
	   puts the client's address in X-Forwarded-For, which passthrough cannot */
	fd = socket(rule.to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	p = fd >= 0 ? conn_new(w, CK_PLAIN, fd) : NULL;
	if (!p) {
		if (fd >= 0)
			close(fd);
		link_send_reset(w, l);
		return;
	}
	p->rule = rule;
	p->bind = *b;
	p->port = port;
	p->peer = conn_idx(w, l);
	p->counted = true;
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	l->peer = conn_idx(w, p);
	arm_connect(w, p, (struct sockaddr *)&p->rule.to, p->rule.to_len);
}

static void plain_on_connect(struct worker *w, struct conn *p, int res)
{
	struct conn *l = conn_at(w, p->peer);

	if (!l) {
		conn_close(w, p, true, "link gone");
		return;
	}
	if (res < 0) {
		char a[SOCK_ADDR_STRLEN];

		sock_addr_str((struct sockaddr *)&p->rule.to, a, sizeof(a));
		log_every(NLOG_WARN, "stream for port %u: connect to local service %s failed: %s",
			  p->port, a, strerror(-res));
		conn_close(w, p, true, "connect failed");
		return;
	}
	if (p->rule.to.ss_family != AF_UNIX)
		sock_nodelay(p->fd);
	p->connected = true;
	if (p->rule.proxy && obuf_ensure(w, p)) {
		const struct link_bind *b = &p->bind;

		p->tx.tail = (uint32_t)proxy_header(p->rule.proxy, b->origin_addr, b->origin_port,
						    b->dst_addr, b->dst_port, p->tx.p, w->txcap);
		obuf_kick(w, p);
	}
	plain_maybe_shut(p);
	plain_arm_recv(w, p);
	link_pump(w, l);
}

static void link_on_connect(struct worker *w, struct conn *l, int res)
{
	if (res < 0) {
		log_every(NLOG_WARN, "data link: connect to the server failed: %s", strerror(-res));
		w->open_block_until = now_ms() + 1000;
		conn_close(w, l, false, "connect failed");
		return;
	}
	sock_nodelay(l->fd);
	l->state = LS_HANDSHAKE;
	link_handshake(w, l);
}

static void dial_connected(struct worker *w, struct conn *c, int res)
{
	if (c->kind == CK_PLAIN)
		plain_on_connect(w, c, res);
	else
		link_on_connect(w, c, res);
}

/* ---------- mesh streams: local listeners, OPEN and OPENED ---------- */

/* p (PS_MAPWAIT) takes idle outbound link l: OPEN goes out, p waits for OPENED. */
static void dial_send_open(struct worker *w, struct conn *l, struct conn *p)
{
	struct dial_open *mo = p->mo;
	uint8_t f[FRAME_OPEN_LEN];
	size_t n;

	dial_idle_unlink(w, l);
	mo->stream_id = ++w->stream_seq;
	n = frame_open_build(f, mo->stream_id, p->udp ? LINK_OPEN_UDP : LINK_OPEN_TCP,
			     mo->socks ? LINK_OPEN_SOCKS : 0, mo->name, mo->port);
	l->state = LS_OPENING;
	l->tx_done = l->rx_done = false;
	l->peer = conn_idx(w, p);
	l->deadline = w->now + OPENED_TIMEOUT_MS;
	p->state = PS_OPENING;
	mo->link = conn_idx(w, l);
	if (link_write(w, l, f, n) < 0) {
		conn_close(w, l, false, "cannot send OPEN");
		return;
	}
	obuf_kick(w, l);
}

/*
 * Pairs waiting local connections with idle outbound links, oldest first, and
 * opens links for those left (one each, within max_links and the handshakes a
 * ramp may have in flight).
 */
static void dial_out_dispatch(struct worker *w)
{
	while (w->wait_head != NONE && w->out_idle_head != NONE) {
		struct conn *p = conn_at(w, w->wait_head), *l = conn_at(w, w->out_idle_head);

		wait_unlink(w, p);
		dial_send_open(w, l, p);
	}
	if (!w->session || !w->mesh_ok || w->stopping || w->now < w->open_block_until)
		return;
	while (w->waiting > w->out_opening && w->out_opening < DIAL_OPENING_MAX &&
	       w->links + w->opening + w->out_links + w->out_opening < w->max_links) {
		if (!dial_open_link(w, true)) {
			w->open_block_until = now_ms() + 1000;
			break;
		}
	}
}

/* p's destination is known: it waits for an outbound link. */
static void mo_wait(struct worker *w, struct conn *p)
{
	struct conn *t = conn_at(w, w->wait_tail);

	if (w->session && !w->mesh_ok) {
		mo_refuse(w, p, 0, RL_OLD, "the server does not support port maps (too old)");
		return;
	}
	if (w->waiting >= MAP_WAIT_MAX) {
		mo_refuse(w, p, 0, RL_WAIT, "too many connections wait for a data link");
		return;
	}
	p->state = PS_MAPWAIT;
	p->deadline = w->now + MAP_WAIT_MS;
	p->next = NONE;
	p->prev = w->wait_tail;
	if (t)
		t->next = conn_idx(w, p);
	else
		w->wait_head = conn_idx(w, p);
	w->wait_tail = conn_idx(w, p);
	w->waiting++;
	dial_out_dispatch(w);
}

/* A SOCKS answer (or a method choice) to p's client. */
static bool socks_send(struct worker *w, struct conn *p, const uint8_t *b, size_t n)
{
	if (!obuf_ensure(w, p) || obuf_room(w, p) < n) {
		conn_close(w, p, true, "out of memory");
		return false;
	}
	memcpy(p->tx.p + p->tx.tail, b, n);
	p->tx.tail += (uint32_t)n;
	obuf_kick(w, p);
	return true;
}

/* The SOCKS exchange ends here: what is queued goes out, then p closes. */
static void socks_finish(struct worker *w, struct conn *p)
{
	p->linger = true;
	p->state = PS_BOUND;
	if (!p->tx.p || (!p->tx.inflight && p->tx.head == p->tx.tail))
		conn_close(w, p, false, NULL);
}

/* which slot to reuse first: 0 a free one, 1 one whose window and refusal are over, 2 a live one */
static int src_rank(const struct src_fail *f, uint64_t now)
{
	if (!f->t0)
		return 0;
	return now - f->t0 > SRC_WINDOW_MS && now >= f->until ? 1 : 2;
}

/* the source's failed-login slot (or a free, expired or the oldest one when add) */
static struct src_fail *src_slot(struct dial_map *map, const uint8_t a[16], bool add, uint64_t now)
{
	struct src_fail *spare = NULL;

	for (unsigned i = 0; i < SRC_SLOTS; i++) {
		struct src_fail *f = &map->src[i];

		if (f->t0 && !memcmp(f->addr, a, 16))
			return f;
		if (!spare || src_rank(f, now) < src_rank(spare, now) ||
		    (src_rank(f, now) == src_rank(spare, now) && f->t0 < spare->t0))
			spare = f;
	}
	if (!add)
		return NULL;
	memset(spare, 0, sizeof(*spare));
	memcpy(spare->addr, a, 16);
	spare->t0 = now ? now : 1;
	return spare;
}

static bool src_locked(struct worker *w, struct dial_map *map, const uint8_t a[16])
{
	struct src_fail *f = src_slot(map, a, false, w->now);

	return f && w->now < f->until;
}

/* one more failed login from a: past SRC_FAILS_MAX in the window, it is refused for one */
static void src_failed(struct worker *w, struct dial_map *map, const uint8_t a[16])
{
	struct src_fail *f = src_slot(map, a, true, w->now);

	if (w->now - f->t0 > SRC_WINDOW_MS) {
		f->t0 = w->now ? w->now : 1;
		f->fails = 0;
	}
	if (++f->fails > SRC_FAILS_MAX && w->now >= f->until) {
		f->until = w->now + SRC_WINDOW_MS;
		log_warn("SOCKS proxy %u: more than %d failed logins from one source in %d s: "
			 "refused for %d s",
			 map->m.local, SRC_FAILS_MAX, SRC_WINDOW_MS / 1000, SRC_WINDOW_MS / 1000);
	}
}

/* RFC 1929: the user and password against the map's (see struct dial_map). */
static bool socks_auth_ok(struct worker *w, struct dial_map *map, const struct socks5_auth *a)
{
	uint8_t sha[SHA256_DIGEST_LENGTH];
	bool ok;

	if (strcmp(a->user, map->m.user))
		return false;
	SHA256((const uint8_t *)a->pass, a->pass_len, sha);
	if (map->ok_set && CRYPTO_memcmp(sha, map->ok_sha, sizeof(sha)) == 0)
		return true;
	if (w->now - map->fail_t0 >= 1000) {
		map->fail_t0 = w->now;
		map->fails = 0;
	}
	if (map->fails >= AUTH_FAILS_MAX)
		return false; /* not checked: the worker is not a password oracle to flood */
	ok = passwd_verify(a->pass, a->pass_len, map->m.hash);
	if (ok) {
		memcpy(map->ok_sha, sha, sizeof(sha));
		map->ok_set = true;
	} else {
		map->fails++;
	}
	explicit_bzero(sha, sizeof(sha));
	return ok;
}

static void assoc_start(struct worker *w, struct conn *p, const struct socks5_request *q);

/* The handshake bytes held so far: as many messages as they hold, answered. */
static void socks_step(struct worker *w, struct conn *p)
{
	struct dial_open *mo = p->mo;
	const struct engine_map *m = &mo->map->m;
	struct socks5_err err = {.code = -1, .why = NULL};
	enum socks5_result r = SOCKS5_NEED;
	uint8_t out[SOCKS5_REPLY_LEN];
	size_t used = 0;

	for (;;) {
		if (mo->step == 0) {
			struct socks5_greeting g;
			uint8_t method;

			r = socks5_parse_greeting(mo->hs, mo->hs_len, &used, &g, &err);
			if (r != SOCKS5_DONE)
				break;
			method = socks5_choose_method(&g, m->user[0] != 0);
			if (!socks_send(w, p, out, socks5_method_reply(out, method)))
				return;
			if (method == SOCKS5_METHOD_REFUSED) {
				log_every(
				    NLOG_WARN,
				    "SOCKS proxy %u: the client offers no method it takes (%s)",
				    m->local, m->user[0] ? "a user and password" : "none");
				socks_finish(w, p);
				return;
			}
			mo->step = method == SOCKS5_METHOD_USERPASS ? 1 : 2;
		} else if (mo->step == 1) {
			struct socks5_auth a;
			bool ok;

			r = socks5_parse_auth(mo->hs, mo->hs_len, &used, &a, &err);
			if (r != SOCKS5_DONE)
				break;
			ok = socks_auth_ok(w, mo->map, &a);
			explicit_bzero(&a, sizeof(a));
			if (!socks_send(
				w, p, out,
				socks5_auth_reply(out, ok ? SOCKS5_AUTH_OK : SOCKS5_AUTH_FAILED)))
				return;
			if (!ok) {
				src_failed(w, mo->map, mo->src);
				log_every(NLOG_WARN, "SOCKS proxy %u: a wrong user or password",
					  m->local);
				socks_finish(w, p);
				return;
			}
			mo->step = 2;
		} else {
			struct socks5_request q;

			r = socks5_parse_request(mo->hs, mo->hs_len, &used, &q, &err);
			if (r != SOCKS5_DONE)
				break;
			memmove(mo->hs, mo->hs + used, mo->hs_len - used);
			mo->hs_len = (uint16_t)(mo->hs_len - used);
			if (q.cmd == SOCKS5_CMD_UDP_ASSOCIATE) {
				assoc_start(w, p, &q);
				return;
			}
			str_copy(mo->name, sizeof(mo->name), q.host);
			mo->port = q.port;
			mo->socks = true;
			if (mo->in_hs) {
				mo->in_hs = false;
				mo->map->handshakes--;
			}
			mo_wait(w, p); /* the bytes left are early data */
			return;
		}
		memmove(mo->hs, mo->hs + used, mo->hs_len - used);
		mo->hs_len = (uint16_t)(mo->hs_len - used);
	}
	if (r == SOCKS5_ERROR) {
		log_every(NLOG_WARN, "SOCKS proxy %u: %s", m->local,
			  err.why ? err.why : "bad input");
		if (err.code >= 0) {
			size_t n = mo->step == 0   ? socks5_method_reply(out, (uint8_t)err.code)
				   : mo->step == 1 ? socks5_auth_reply(out, (uint8_t)err.code)
						   : socks5_reply(out, (uint8_t)err.code);

			if (!socks_send(w, p, out, n))
				return;
		}
		socks_finish(w, p);
		return;
	}
	if (mo->hs_len >= SOCKS_HS_MAX) {
		log_every(NLOG_WARN, "SOCKS proxy %u: a handshake of more than %d bytes, closing",
			  m->local, SOCKS_HS_MAX);
		conn_close(w, p, true, "SOCKS handshake too long");
		return;
	}
	arm_recv(w, p);
}

void dial_socks_recv(struct worker *w, struct conn *p, int res, unsigned flags)
{
	struct dial_open *mo = p->mo;
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
	size_t n;

	p->recv_armed = false;
	if (res == -ENOBUFS) {
		p->rearm = true;
		w->starved++;
		return;
	}
	if (res <= 0) {
		if (flags & IORING_CQE_F_BUFFER)
			buf_recycle(w, bid);
		conn_close(w, p, !mo->associated,
			   mo->associated ? "UDP ASSOCIATE ended"
					  : "closed in the SOCKS handshake");
		return;
	}
	if (mo->associated) { /* the control connection says nothing more: ignored */
		buf_recycle(w, bid);
		arm_recv(w, p);
		return;
	}
	n = (size_t)res;
	if (n > (size_t)(SOCKS_HS_MAX - mo->hs_len))
		n = SOCKS_HS_MAX - mo->hs_len; /* socks_step refuses a full buffer */
	memcpy(mo->hs + mo->hs_len, buf_addr(w, bid) + HEADROOM, n);
	mo->hs_len = (uint16_t)(mo->hs_len + n);
	buf_recycle(w, bid);
	if ((size_t)res > n) {
		log_every(NLOG_WARN, "SOCKS proxy %u: a handshake of more than %d bytes, closing",
			  mo->map->m.local, SOCKS_HS_MAX);
		conn_close(w, p, true, "SOCKS handshake too long");
		return;
	}
	socks_step(w, p);
}

/* A connection on a port map's or SOCKS proxy's listener c. */
static void dial_accept(struct worker *w, struct conn *c, int fd)
{
	struct dial_map *map = c->mo ? c->mo->map : NULL;
	struct conn *p;

	if (!map || w->stopping) {
		sock_rst_on_close(fd);
		close(fd);
		return;
	}
	p = conn_new(w, CK_PLAIN, fd);
	if (!p || !(p->mo = calloc(1, sizeof(*p->mo)))) {
		if (p)
			conn_release(w, p);
		log_every(NLOG_WARN, "local port %u: out of connection slots or memory",
			  map->m.local);
		sock_rst_on_close(fd);
		close(fd);
		return;
	}
	map->refs++;
	p->mo->map = map;
	p->port = map->m.local;
	p->connected = true;
	p->counted = true;
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	sock_nodelay(fd);
	if (map->m.kind == EMAP_SOCKS) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
			sock_addr16(&ss, p->mo->src);
		if (map->handshakes >= SOCKS_HS_CONCURRENT) {
			log_every(NLOG_WARN,
				  "SOCKS proxy %u: %d handshakes under way already, closing a new "
				  "connection",
				  map->m.local, SOCKS_HS_CONCURRENT);
			conn_close(w, p, true, "too many SOCKS handshakes");
			return;
		}
		if (map->m.user[0] && src_locked(w, map, p->mo->src)) {
			log_every(
			    NLOG_WARN,
			    "SOCKS proxy %u: a source with more than %d failed logins in %d s, "
			    "refused for %d s",
			    map->m.local, SRC_FAILS_MAX, SRC_WINDOW_MS / 1000,
			    SRC_WINDOW_MS / 1000);
			conn_close(w, p, true, "SOCKS source locked out");
			return;
		}
		p->mo->in_hs = true;
		map->handshakes++;
		p->state = PS_SOCKS;
		p->deadline = w->now + MAP_WAIT_MS;
		arm_recv(w, p);
		return;
	}
	str_copy(p->mo->name, sizeof(p->mo->name), map->m.name);
	p->mo->port = map->m.port;
	mo_wait(w, p);
}

/* ---------- UDP port maps ---------- */

/* A refused flow: its queue dropped, its datagrams dropped until MAP_UDP_RETRY_MS. */
static void flow_refused(struct worker *w, struct conn *p)
{
	if (p->state == PS_MAPWAIT)
		wait_unlink(w, p);
	if (p->udp_q)
		atomic_fetch_add_explicit(&w->st_udp_drop[UDP_DROP_OFFLINE], p->udp_q,
					  memory_order_relaxed);
	pool_put(w, p->stash);
	p->stash = NULL;
	p->stash_len = 0;
	p->udp_q = 0;
	p->state = PS_BOUND;
	p->peer = NONE;
	p->deadline = w->now + MAP_UDP_RETRY_MS;
}

/*
 * A UDP map at MAP_UDP_FLOWS: the flow of map idle longest, if for MAP_UDP_EVICT_MS or
 * more, ends (reset) to make room, as a NAT drops its oldest mapping; a resolver that
 * takes a new source port per query keeps working past 128 queries a minute.
 */
static bool flow_evict(struct worker *w, struct dial_map *map)
{
	struct conn *old = NULL;

	for (uint32_t b = 0; b <= w->udp_mask; b++)
		for (struct conn *p = conn_at(w, w->udp_tab[b]); p; p = conn_at(w, p->udp_next))
			if (p->mo && p->mo->map == map && !p->closing &&
			    (!old || p->last_io < old->last_io))
				old = p;
	if (!old || w->now - old->last_io < MAP_UDP_EVICT_MS)
		return false;
	atomic_fetch_add_explicit(&w->st_udp_expired, 1, memory_order_relaxed);
	conn_reason(old, EC_IDLE_TIMEOUT);
	conn_close(w, old, true, "udp map flow evicted");
	return true;
}

/* A new flow of map c for the source peer; NULL (the datagram dropped) past a limit. */
static struct conn *flow_new(struct worker *w, struct conn *c, const struct sockaddr_storage *peer,
			     socklen_t peer_len, const uint8_t a16[16], uint16_t sport, bool table)
{
	struct dial_map *map = c->mo->map;
	struct conn *p;
	int fd;

	if (map->flows >= MAP_UDP_FLOWS && !(table && flow_evict(w, map))) {
		atomic_fetch_add_explicit(&w->st_udp_drop[UDP_DROP_FLOWS], 1, memory_order_relaxed);
		log_every(NLOG_WARN,
			  "udp port map %u: %d flows open, dropping a new source's datagrams",
			  map->m.local, MAP_UDP_FLOWS);
		return NULL;
	}
	fd = fds_left(w, 1) ? fcntl(c->fd, F_DUPFD_CLOEXEC, 0) : -1;
	p = fd >= 0 ? conn_new(w, CK_PLAIN, fd) : NULL;
	if (!p || !(p->mo = calloc(1, sizeof(*p->mo)))) {
		if (p)
			conn_release(w, p);
		if (fd >= 0)
			close(fd);
		atomic_fetch_add_explicit(&w->st_udp_drop[UDP_DROP_FLOWS], 1, memory_order_relaxed);
		log_every(NLOG_WARN, "udp port map %u: out of descriptors or connection slots",
			  map->m.local);
		return NULL;
	}
	map->refs++;
	map->flows++;
	p->mo->map = map;
	str_copy(p->mo->name, sizeof(p->mo->name), map->m.name);
	p->mo->port = map->m.port;
	p->udp = p->udp_counted = true;
	p->port = map->m.local;
	memcpy(p->bind.origin_addr, a16, 16);
	p->bind.origin_port = sport;
	memcpy(&p->rule.to, peer, peer_len); /* where its answers go */
	p->rule.to_len = peer_len;
	p->connected = true;
	p->counted = true;
	p->peer = NONE;
	p->last_io = w->now;
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	atomic_fetch_add_explicit(&w->st_udp_flows, 1, memory_order_relaxed);
	if (table) /* a UDP map's; a UDP ASSOCIATE's flows are its relay's list */
		udp_flow_insert(w, p);
	return p;
}

/* A datagram from the flow's source: carried, queued, or dropped (refused a while ago). */
static void flow_datagram(struct worker *w, struct conn *p, uint8_t *d, uint32_t len)
{
	p->last_io = w->now;
	if (p->state == PS_BOUND && !conn_at(w, p->peer)) {
		if (w->now < p->deadline) { /* refused: OPENed again no sooner than the retry */
			atomic_fetch_add_explicit(&w->st_udp_drop[UDP_DROP_OFFLINE], 1,
						  memory_order_relaxed);
			return;
		}
		p->state = PS_MAPWAIT; /* queues it */
		udp_input(w, p, d, len);
		p->state = PS_BOUND;
		mo_wait(w, p);
		return;
	}
	udp_input(w, p, d, len);
}

static void assoc_poll(struct worker *w, struct conn *c);

void dial_udp_poll(struct worker *w, struct conn *c, int res)
{
	c->recv_armed = false;
	if (res >= 0 && c->mo && c->mo->relay) {
		assoc_poll(w, c);
		udp_arm_poll(w, c);
		return;
	}
	if (res < 0) {
		if (res != -ECANCELED)
			log_every(NLOG_WARN, "udp port map %u: poll: %s", c->port, strerror(-res));
		udp_arm_poll(w, c);
		return;
	}
	for (int i = 0; i < 64 && c->mo && !c->closing; i++) {
		struct sockaddr_storage peer;
		socklen_t peer_len = sizeof(peer);
		uint8_t a16[16];
		uint16_t sport;
		struct conn *p;
		ssize_t n;

		n = recvfrom(c->fd, w->udp_buf + 4, LINK_UDP_MAX + 1, MSG_DONTWAIT | MSG_TRUNC,
			     (struct sockaddr *)&peer, &peer_len);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			continue; /* an ICMP error queued on the socket: the next one */
		}
		if (n == 0 || n > LINK_UDP_MAX) { /* a chunk is 1..LINK_UDP_MAX bytes */
			atomic_fetch_add_explicit(&w->st_udp_drop[UDP_DROP_OVERSIZE], 1,
						  memory_order_relaxed);
			continue;
		}
		sport = sock_addr16(&peer, a16);
		p = udp_flow_find(w, c->port, a16, sport);
		if (p && p->linger && !p->closing) { /* its stream ended: a new flow */
			conn_close(w, p, false, "udp flow ended");
			p = udp_flow_find(w, c->port, a16, sport);
		}
		if (!p && !(p = flow_new(w, c, &peer, peer_len, a16, sport, true)))
			continue;
		flow_datagram(w, p, w->udp_buf + 4, (uint32_t)n);
	}
	udp_arm_poll(w, c);
}

/* ---------- SOCKS UDP ASSOCIATE (RFC 1928 section 7) ---------- */

/*
 * A UDP ASSOCIATE on SOCKS connection p: a datagram socket bound on the
 * listener's address (the relay, a CK_LISTEN conn polled like a UDP map's), its
 * address in the reply. Datagrams from the client's address (and port, when
 * the request named one) carry a header naming their destination; each (source,
 * destination) is a flow (at most ASSOC_FLOWS) that OPENs with LINK_OPEN_UDP as
 * a UDP map's does, and its answers go back with the header it came with. The
 * association ends with p (assoc_end): its relay and flows are closed.
 */
static void assoc_start(struct worker *w, struct conn *p, const struct socks5_request *q)
{
	struct dial_open *mo = p->mo;
	struct dial_map *map = mo->map;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	uint8_t out[SOCKS5_REPLY_MAX], a16[16];
	struct conn *r = NULL;
	const char *why = NULL;
	uint16_t port;
	int fd = -1;

	if (mo->in_hs) {
		mo->in_hs = false;
		map->handshakes--;
	}
	if (map->assocs >= SOCKS_ASSOC_MAX)
		why = "too many UDP ASSOCIATEs under way";
	else if (!fds_left(w, 2) || getsockname(p->fd, (struct sockaddr *)&ss, &sl) < 0)
		why = "out of descriptors";
	if (!why) {
		sock_addr16(&ss, a16);
		if (ss.ss_family == AF_INET)
			((struct sockaddr_in *)&ss)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&ss)->sin6_port = 0;
		fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		sl = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
					     : sizeof(struct sockaddr_in6);
		if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0 ||
		    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
			why = "cannot bind a UDP relay socket";
	}
	if (!why && !(r = conn_new(w, CK_LISTEN, fd)))
		why = "out of connection slots";
	if (!why && !(r->mo = calloc(1, sizeof(*r->mo))))
		why = "out of memory";
	if (why) {
		if (r)
			conn_release(w, r);
		if (fd >= 0)
			close(fd);
		log_every(NLOG_WARN, "SOCKS proxy %u: UDP ASSOCIATE refused: %s", map->m.local,
			  why);
		if (socks_send(w, p, out, socks5_reply(out, SOCKS5_REP_FAILURE)))
			socks_finish(w, p);
		return;
	}
	port = ntohs(sock_addr16(&ss, a16));
	map->refs++;
	map->assocs++;
	r->mo->map = map;
	r->mo->relay = true;
	memcpy(r->mo->src, mo->src, 16); /* the client's address: the only one taken */
	r->mo->client_port = q->port;
	r->udp = true;
	r->port = port;
	mo->associated = true;
	mo->assoc = conn_idx(w, r);
	mo->assoc_gen = r->gen;
	mo->hs_len = 0;
	p->deadline = 0;
	udp_arm_poll(w, r);
	log_debug("SOCKS proxy %u: UDP ASSOCIATE relay on port %u", map->m.local, port);
	if (!socks_send(w, p, out, socks5_reply_addr(out, SOCKS5_REP_OK, a16, port)))
		return;
	arm_recv(w, p); /* its end is the association's */
}

/* p's association ends: its relay and flows are closed. */
static void assoc_end(struct worker *w, struct conn *c)
{
	struct conn *r = conn_ref(w, c->mo->assoc, c->mo->assoc_gen);
	uint32_t flows[ASSOC_FLOWS];
	unsigned n;

	c->mo->associated = false;
	c->mo->map->assocs--;
	if (!r || r->kind != CK_LISTEN || !r->mo || !r->mo->relay)
		return;
	n = r->mo->nflows;
	memcpy(flows, r->mo->flows, n * sizeof(flows[0]));
	for (unsigned i = 0; i < n; i++) {
		struct conn *f = conn_at(w, flows[i]);

		if (f && !f->closing)
			conn_close(w, f, false, "UDP ASSOCIATE ended");
	}
	r->mo->nflows = 0;
	conn_close(w, r, false, "UDP ASSOCIATE ended");
}

/* flow c is gone: out of its relay's list */
static void assoc_flow_gone(struct worker *w, struct conn *c)
{
	struct conn *r = conn_ref(w, c->mo->assoc, c->mo->assoc_gen);
	uint32_t me = conn_idx(w, c);

	if (!r || !r->mo || !r->mo->relay)
		return;
	for (unsigned i = 0; i < r->mo->nflows; i++) {
		if (r->mo->flows[i] == me) {
			r->mo->flows[i] = r->mo->flows[--r->mo->nflows];
			break;
		}
	}
}

static void assoc_datagram(struct worker *w, struct conn *c, const struct sockaddr_storage *peer,
			   socklen_t peer_len, uint8_t *d, size_t n)
{
	struct dial_open *rm = c->mo;
	struct socks5_request q;
	struct socks5_err err = {.code = -1, .why = NULL};
	uint8_t a16[16];
	uint16_t sport = sock_addr16(peer, a16);
	struct conn *f = NULL;
	size_t used = 0;

	if (memcmp(a16, rm->src, 16) || (rm->client_port && ntohs(sport) != rm->client_port)) {
		atomic_fetch_add_explicit(&w->st_udp_drop[UDP_DROP_OFFLINE], 1,
					  memory_order_relaxed);
		log_every(NLOG_WARN,
			  "SOCKS proxy %u: a UDP datagram from another address than its "
			  "client's, dropped",
			  rm->map->m.local);
		return;
	}
	if (socks5_parse_udp(d, n, &used, &q, &err) != SOCKS5_DONE || used >= n) {
		atomic_fetch_add_explicit(&w->st_udp_drop[UDP_DROP_OVERSIZE], 1,
					  memory_order_relaxed);
		log_every(NLOG_WARN, "SOCKS proxy %u: UDP datagram dropped: %s", rm->map->m.local,
			  err.why ? err.why : "no data behind its header");
		return;
	}
	for (unsigned i = 0; i < rm->nflows && !f; i++) {
		struct conn *x = conn_at(w, rm->flows[i]);

		if (x && !x->closing && !x->linger && x->bind.origin_port == sport &&
		    x->mo->port == q.port && !strcmp(x->mo->name, q.host))
			f = x;
	}
	if (!f) {
		if (rm->nflows >= ASSOC_FLOWS) {
			atomic_fetch_add_explicit(&w->st_udp_drop[UDP_DROP_FLOWS], 1,
						  memory_order_relaxed);
			log_every(NLOG_WARN,
				  "SOCKS proxy %u: a UDP ASSOCIATE with %d destinations already, "
				  "dropping a new one's datagrams",
				  rm->map->m.local, ASSOC_FLOWS);
			return;
		}
		f = flow_new(w, c, peer, peer_len, a16, sport, false);
		if (!f)
			return;
		f->mo->assoc_flow = true;
		f->mo->assoc = conn_idx(w, c);
		f->mo->assoc_gen = c->gen;
		str_copy(f->mo->name, sizeof(f->mo->name), q.host);
		f->mo->port = q.port;
		memcpy(f->mo->hs, d, used); /* its answers' header: the destination as asked */
		f->mo->hs_len = (uint16_t)used;
		rm->flows[rm->nflows++] = conn_idx(w, f);
	}
	flow_datagram(w, f, d + used, (uint32_t)(n - used));
}

static void assoc_poll(struct worker *w, struct conn *c)
{
	for (int i = 0; i < 64 && !c->closing; i++) {
		struct sockaddr_storage peer;
		socklen_t peer_len = sizeof(peer);
		ssize_t n = recvfrom(c->fd, w->udp_buf + 4, LINK_UDP_MAX + 1,
				     MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&peer, &peer_len);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			continue;
		}
		if (n == 0 || n > LINK_UDP_MAX) {
			atomic_fetch_add_explicit(&w->st_udp_drop[UDP_DROP_OVERSIZE], 1,
						  memory_order_relaxed);
			continue;
		}
		assoc_datagram(w, c, &peer, peer_len, w->udp_buf + 4, (size_t)n);
	}
}

ssize_t dial_udp_send(struct conn *p, const uint8_t *d, size_t n)
{
	struct iovec iov[2] = {
	    {.iov_base = p->mo->hs, .iov_len = p->mo->assoc_flow ? p->mo->hs_len : 0},
	    {.iov_base = (void *)d, .iov_len = n},
	};
	struct msghdr mh = {
	    .msg_name = &p->rule.to,
	    .msg_namelen = p->rule.to_len,
	    .msg_iov = iov,
	    .msg_iovlen = 2,
	};

	return sendmsg(p->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* OPENED on l: the stream is up (p bound to l as after a BIND), or p is refused. */
static void dial_opened(struct worker *w, struct conn *l)
{
	const struct link_opened *o = &l->rx.opened;
	struct conn *p = conn_at(w, l->peer);
	unsigned status = o->status, rule = frame_get16((const uint8_t *)&o->rule);
	struct dial_open *mo = p ? p->mo : NULL;
	uint8_t out[SOCKS5_REPLY_LEN];
	unsigned cause;
	char why[160];

	l->deadline = 0;
	if (status != LINK_OPEN_OK) {
		l->peer = NONE;
		link_make_idle(w, l); /* the link takes the next OPEN */
		if (!p)
			return;
		cause = status == LINK_OPEN_DENIED && rule ? RL_RULE
			: status <= LINK_OPEN_STATUS_MAX   ? status
							   : 0;
		if (status == LINK_OPEN_DENIED && rule)
			snprintf(why, sizeof(why), "denied by mesh rule %u", rule);
		else if (status == LINK_OPEN_DENIED)
			snprintf(why, sizeof(why), "denied by the mesh policy (default deny)");
		else
			snprintf(why, sizeof(why), "%s", link_open_status_name(status));
		if (p->udp) {
			p->state = PS_BOUND;
			mo_refuse(w, p, status, cause, why);
			return;
		}
		if (mo->socks) {
			mo_log(w, p, status, cause, why);
			p->state = PS_BOUND;
			if (socks_send(w, p, out, socks5_reply(out, socks5_rep_from_open(status))))
				socks_finish(w, p);
			return;
		}
		p->state = PS_BOUND;
		mo_refuse(w, p, status, cause, why);
		return;
	}
	atomic_fetch_add(&w->st_mesh_opened, 1);
	l->state = LS_STREAM;
	l->tx_done = l->rx_done = false;
	if (!p) { /* its local connection went while it waited: the stream ends at once */
		link_send_reset(w, l);
		return;
	}
	p->state = PS_BOUND;
	p->deadline = 0;
	p->peer = conn_idx(w, l);
	if (p->udp) { /* a UDP map's flow: what it queued goes out; the map's socket reads */
		if (udp_flush(w, p, l))
			obuf_kick(w, l);
		return;
	}
	if (mo->socks && !socks_send(w, p, out, socks5_reply(out, SOCKS5_REP_OK)))
		return;
	if (mo->hs_len) { /* what the SOCKS client sent behind its request */
		uint8_t *b = mo->hs;

		memmove(b + 4, b, mo->hs_len);
		frame_put32(b, mo->hs_len);
		if (link_write(w, l, b, (size_t)mo->hs_len + 4) < 0) {
			conn_close(w, l, false, "link send buffer overrun");
			return;
		}
		atomic_fetch_add_explicit(&w->st_in, mo->hs_len, memory_order_relaxed);
		mo->hs_len = 0;
		obuf_kick(w, l);
	}
	plain_arm_recv(w, p);
}

static void dial_link_input(struct worker *w, struct conn *l)
{
	conn_close(w, l, false, "internal: a client link in a relay state");
}

static void dial_ring_msg(struct worker *w, enum op op, uint64_t ud, int res)
{
}

/* ---------- mailbox, tick, init ---------- */

/* MB_MAP_LISTEN: a listener of a port map or SOCKS proxy. */
static void dial_map_listen(struct worker *w, struct mb_msg *m)
{
	struct dial_map *map;
	struct conn *c;

	if (w->stopping) { /* its listeners are closed already */
		close(m->fd);
		return;
	}
	map = calloc(1, sizeof(*map));
	c = conn_new(w, CK_LISTEN, m->fd);

	if (!map || !c || m->len != sizeof(map->m) || !(c->mo = calloc(1, sizeof(*c->mo)))) {
		log_warn("local port %u: out of memory for its listener", m->port);
		free(map);
		if (c)
			conn_release(w, c);
		close(m->fd);
		return;
	}
	memcpy(&map->m, m->data, sizeof(map->m));
	map->m.name[sizeof(map->m.name) - 1] = 0;
	map->m.user[sizeof(map->m.user) - 1] = 0;
	map->m.hash[sizeof(map->m.hash) - 1] = 0;
	map->refs = 1;
	c->mo->map = map;
	c->port = m->port;
	if (map->m.udp) {
		c->udp = true;
		udp_arm_poll(w, c);
		return;
	}
	arm_accept(w, c);
}

static bool dial_mailbox(struct worker *w, struct mb_msg *m)
{
	struct conn *c;

	switch (m->type) {
	case MB_MAP_LISTEN:
		dial_map_listen(w, m);
		return true;
	case MB_MAP_UNLISTEN:
		/* its connections go on; new ones are no longer taken */
		for (uint32_t i = 0; i < w->high; i++) {
			c = &w->conns[i];
			if ((c->kind == CK_LISTEN || (c->kind == CK_PLAIN && c->udp && c->mo)) &&
			    !c->closing && c->port == m->port &&
			    !(c->mo && (c->mo->relay || c->mo->assoc_flow)))
				conn_close(w, c, false,
					   "port map removed"); /* and a UDP map's flows */
		}
		if (m->ack)
			atomic_fetch_add(m->ack, 1);
		return true;
	case MB_SESSION:
		w->session = true;
		w->want_more = 0;
		memcpy(w->tunnel_id, m->tunnel_id, sizeof(w->tunnel_id));
		memcpy(w->secret, m->secret, sizeof(w->secret));
		w->open_block_until = 0;
		if (m->pool_idle)
			w->pool_idle = m->pool_idle;
		if (m->max_links)
			w->max_links = m->max_links;
		w->mesh_ok = m->mesh_ok;
		dial_fill_pool(w);
		if (!w->mesh_ok) /* the connections waiting for this session: refused now */
			while (w->wait_head != NONE)
				mo_refuse(w, conn_at(w, w->wait_head), 0, RL_OLD,
					  "the server does not support port maps (too old)");
		dial_out_dispatch(w);
		return true;
	case MB_SESSION_END:
		w->session = false;
		w->want_more = 0;
		for (uint32_t i = 0; i < w->high; i++) {
			c = &w->conns[i];
			if (c->kind != CK_LINK || c->closing)
				continue;
			if (c->state == LS_STREAM)
				c->draining = true;
			else if (c->state == LS_IDLE)
				link_close_graceful(w, c, "session ended");
			else
				conn_close(w, c, false, "session ended");
		}
		return true;
	default:
		return false;
	}
}

static void dial_tick_conn(struct worker *w, struct conn *c, uint64_t now)
{
	if (c->kind == CK_PLAIN && c->udp) {
		if (c->mo && c->state == PS_MAPWAIT && now > c->deadline) {
			mo_refuse(w, c, 0, RL_WAIT,
				  w->session ? "no data link to the server within 10 s"
					     : "not connected to the server (10 s)");
			return;
		}
		udp_tick(w, c, now);
		return;
	}
	if (c->kind == CK_PLAIN && c->mo && c->deadline && now > c->deadline) {
		if (c->state == PS_SOCKS) {
			log_every(NLOG_WARN,
				  "SOCKS proxy %u: no complete handshake within %d s, "
				  "closing",
				  c->mo->map->m.local, MAP_WAIT_MS / 1000);
			conn_close(w, c, true, "SOCKS handshake timed out");
		} else if (c->state == PS_MAPWAIT) {
			mo_refuse(w, c, 0, RL_WAIT,
				  w->session ? "no data link to the server within 10 s"
					     : "not connected to the server (10 s)");
		}
		return;
	}
	if (c->kind == CK_LINK && c->state == LS_OPENING && c->deadline && now > c->deadline) {
		log_every(NLOG_WARN, "data link fd %d: no OPENED within %d s, closing", c->fd,
			  OPENED_TIMEOUT_MS / 1000);
		conn_close(w, c, false, "no OPENED");
		return;
	}
	/* outbound links above pool_idle, idle a while: closed (relayd never binds on them) */
	if (c->kind == CK_LINK && c->outbound && c->state == LS_IDLE &&
	    w->out_idle > w->pool_idle && now - c->last_io > POOL_PURGE_MS) {
		link_close_graceful(w, c, "outbound pool trimmed");
		return;
	}
	if (c->kind != CK_PLAIN && c->state != LS_IDLE && c->deadline && now > c->deadline) {
		log_every(NLOG_WARN, "data link fd %d: connect or TLS handshake timed out, closing",
			  c->fd);
		conn_close(w, c, true, "timeout");
	}
}

static void dial_tick(struct worker *w)
{
	dial_fill_pool(w);
	if (w->stopping) /* nothing carries them any more */
		while (w->wait_head != NONE)
			mo_refuse(w, conn_at(w, w->wait_head), 0, RL_WAIT,
				  "the client is stopping");
	dial_out_dispatch(w);
}

static int dial_init(struct worker *w, char *err, size_t errlen)
{
	uint32_t slots = 1;

	w->out_idle_head = w->wait_head = w->wait_tail = NONE;
	/* UDP port maps' flows by (local port, source) */
	while (slots < 2 * w->e->cfg.max_conns && slots < (1u << 20))
		slots <<= 1;
	w->udp_mask = slots - 1;
	w->udp_tab = malloc((size_t)slots * sizeof(*w->udp_tab));
	w->udp_buf = malloc(4 + LINK_UDP_MAX + 1);
	if (!w->udp_tab || !w->udp_buf) {
		snprintf(err, errlen, "out of memory for the UDP flow table");
		return -1;
	}
	for (uint32_t i = 0; i <= w->udp_mask; i++)
		w->udp_tab[i] = NONE;
	random_bytes(&w->udp_seed, sizeof(w->udp_seed));
	return 0;
}

const struct role_ops dial_ops = {
    .name = "client",
    .link_name = "data link",
    .pin = false,
    .rx_bind = true,
    .listeners = false,
    .init = dial_init,
    .accept = dial_accept,
    .connected = dial_connected,
    .handshake_done = dial_handshake_done,
    .link_input = dial_link_input,
    .bind = dial_bind,
    .link_idle = dial_link_idle,
    .idle_unlink = dial_idle_unlink,
    .closing = dial_closing,
    .ring_msg = dial_ring_msg,
    .opened = dial_opened,
    .mailbox = dial_mailbox,
    .tick_conn = dial_tick_conn,
    .tick = dial_tick,
};

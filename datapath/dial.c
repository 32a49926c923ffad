// SPDX-License-Identifier: Apache-2.0
/*
 * The client role (nave start): one floating worker that keeps a pool of
 * idle data links to relayd (connect, TLS handshake, DATA_HELLO), and, when
 * relayd binds a stream to one of them, connects to the local service the
 * rule names (with an optional PROXY protocol header) and relays. Only
 * relayd trims idle links, so a link is never closed here while a BIND for
 * it may be in flight.
 */
#include "dp.h"

#include "log.h"
#include "proxy.h"
#include "sock.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

/* ---------- the pool of data links ---------- */

static bool dial_open_link(struct worker *w)
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
	while (w->links + w->opening < w->max_links && w->opening < DIAL_OPENING_MAX) {
		if (w->idle + w->opening >= w->pool_idle) {
			if (!w->want_more)
				break;
			w->want_more--;
		}
		if (!dial_open_link(w)) {
			w->open_block_until = now_ms() + 1000; /* retried on a later tick */
			break;
		}
	}
}

static void dial_idle_unlink(struct worker *w, struct conn *l)
{
	w->idle--;
	atomic_fetch_sub(&w->st_idle, 1);
}

static void dial_link_idle(struct worker *w, struct conn *l)
{
	if (!w->session || l->draining) {
		l->state = LS_STREAM; /* not counted idle */
		link_close_graceful(w, l, "session ended");
		return;
	}
	w->idle++;
	atomic_fetch_add(&w->st_idle, 1);
	link_arm_recv(w, l);
}

static void dial_closing(struct worker *w, struct conn *c, const char *why)
{
	if (c->kind != CK_LINK)
		return;
	if (c->state == LS_IDLE)
		dial_idle_unlink(w, c);
	if (c->state == LS_CONNECT || c->state == LS_HANDSHAKE)
		w->opening--;
	else
		w->links--;
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
	if (link_write(w, l, &h, sizeof(h)) < 0) {
		conn_close(w, l, false, "cannot send DATA_HELLO");
		return;
	}
	obuf_kick(w, l);
	w->opening--;
	w->links++;
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

/* ---------- what the client never gets ---------- */

static void dial_accept(struct worker *w, struct conn *c, int fd)
{
	close(fd);
}

static void dial_link_input(struct worker *w, struct conn *l)
{
	conn_close(w, l, false, "internal: a client link in a relay state");
}

static void dial_ring_msg(struct worker *w, enum op op, uint64_t ud, int res)
{
}

/* ---------- mailbox, tick, init ---------- */

static bool dial_mailbox(struct worker *w, struct mb_msg *m)
{
	struct conn *c;

	switch (m->type) {
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
		dial_fill_pool(w);
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
	if (c->deadline && now > c->deadline) {
		log_every(NLOG_WARN, "data link fd %d: connect or TLS handshake timed out, closing",
			  c->fd);
		conn_close(w, c, true, "timeout");
	}
}

static void dial_tick(struct worker *w)
{
	dial_fill_pool(w);
}

static int dial_init(struct worker *w, char *err, size_t errlen)
{
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
    .mailbox = dial_mailbox,
    .tick_conn = dial_tick_conn,
    .tick = dial_tick,
};

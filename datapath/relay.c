// SPDX-License-Identifier: Apache-2.0
/*
 * The relay role (nave-relayd). Each worker multishot-accepts on its own
 * socket of the tunnel listener group and on the port listeners the control
 * thread gives it. A tunnel connection's first plaintext decides what it is:
 * DATA_HELLO makes a data link (handed to the tunnel's home worker), anything
 * else is a control link (its messages go to the control thread). A public
 * connection is routed by port to its tunnel's home worker, where it takes an
 * idle data link with a BIND or waits in the tunnel's pending queue. A data
 * link whose DATA_HELLO says LINK_HELLO_OUTBOUND carries streams the client
 * opens instead (meshopen.c): it is never BINDed nor on the idle list.
 */
#include "dp.h"

#include "http.h"
#include "mesh.h"
#include "routes.h"

#include "log.h"
#include "sock.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------- open connections per source ---------- */

static uint64_t mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	return h ^ (h >> 33);
}

/* Keyed with a random seed, so a peer cannot pick addresses that collide. */
static uint32_t src_hash(const struct worker *w, const struct tunnel *t, const uint8_t a[16])
{
	uint64_t x, y;

	memcpy(&x, a, 8);
	memcpy(&y, a + 8, 8);
	return (uint32_t)mix64(mix64(w->src_seed ^ (uintptr_t)t ^ x) ^ y);
}

/* The key of a source: IPv4 as it is, IPv6 cut to its /64 (one subscriber). */
static void src_key(const uint8_t origin[16], uint8_t key[16])
{
	memcpy(key, origin, 16);
	if (!sock_addr16_is_v4(origin))
		memset(key + 8, 0, 8);
}

static uint32_t src_find(struct worker *w, const struct tunnel *t, const uint8_t key[16],
			 uint32_t h)
{
	for (uint32_t i = h & w->src_mask;; i = (i + 1) & w->src_mask) {
		struct src_slot *s = &w->src[i];

		if (!s->count)
			return i;
		if (s->hash == h && s->tun == t && !memcmp(s->addr, key, 16))
			return i;
	}
}

/* Counts one more connection of the source; returns the new count. */
static uint32_t src_add(struct worker *w, struct tunnel *t, const uint8_t origin[16])
{
	uint8_t key[16];
	uint32_t h, i;

	src_key(origin, key);
	h = src_hash(w, t, key);
	i = src_find(w, t, key, h);
	if (!w->src[i].count) {
		w->src[i].tun = t;
		w->src[i].hash = h;
		memcpy(w->src[i].addr, key, 16);
	}
	return ++w->src[i].count;
}

static void src_del(struct worker *w, struct tunnel *t, const uint8_t origin[16])
{
	uint8_t key[16];
	uint32_t h, i, j;

	src_key(origin, key);
	h = src_hash(w, t, key);
	i = src_find(w, t, key, h);
	if (!w->src[i].count || --w->src[i].count)
		return;
	/* backward-shift deletion: no tombstones, probe chains stay short */
	for (j = (i + 1) & w->src_mask; w->src[j].count; j = (j + 1) & w->src_mask) {
		uint32_t home = w->src[j].hash & w->src_mask;

		/* j's entry may move to i unless its home lies cyclically in (i, j] */
		if (i <= j ? (home > i && home <= j) : (home > i || home <= j))
			continue;
		w->src[i] = w->src[j];
		i = j;
	}
	w->src[i].count = 0;
}

uint32_t relay_src_tag_add(struct worker *w, const void *tag, const uint8_t origin[16])
{
	return w->src ? src_add(w, (struct tunnel *)(uintptr_t)tag, origin) : 0;
}

void relay_src_tag_del(struct worker *w, const void *tag, const uint8_t origin[16])
{
	if (w->src)
		src_del(w, (struct tunnel *)(uintptr_t)tag, origin);
}

/* ---------- a tunnel's lists ---------- */

/* a data link of t is gone (outbound: a client-opened one) */
static void links_put(struct tunnel *t, bool outbound)
{
	atomic_fetch_sub(&t->links, 1);
	if (outbound)
		atomic_fetch_sub(&t->outbound, 1);
}

static void relay_idle_unlink(struct worker *w, struct conn *l)
{
	struct tunnel *t = l->tun;

	if (l->outbound) /* never on the idle list */
		return;
	if (l->prev != NONE)
		w->conns[l->prev].next = l->next;
	else
		t->idle_head = l->next;
	if (l->next != NONE)
		w->conns[l->next].prev = l->prev;
	l->next = l->prev = NONE;
	t->idle--;
	atomic_fetch_sub(&w->st_idle, 1);
}

void relay_pending_remove(struct worker *w, struct conn *p)
{
	struct tunnel *t = p->tun;

	if (p->prev != NONE)
		w->conns[p->prev].next = p->next;
	else
		t->pend_head = p->next;
	if (p->next != NONE)
		w->conns[p->next].prev = p->prev;
	else
		t->pend_tail = p->prev;
	p->next = p->prev = NONE;
	p->state = PS_BOUND;
	t->pending--;
}

static void tunnel_offline(struct worker *w, struct tunnel *t, const char *why)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct conn *c;

	atomic_store(&t->home, -1);
	t->ctl_idx = NONE;
	while ((c = conn_at(w, t->idle_head)))
		link_close_graceful(w, c, "tunnel offline");
	while ((c = conn_at(w, t->pend_head))) {
		relay_pending_remove(w, c);
		conn_close(w, c, true, "tunnel offline");
	}
	for (uint32_t i = 0; i < w->high; i++) {
		c = &w->conns[i];
		if (c->kind != CK_LINK || c->tun != t || c->closing)
			continue;
		if (c->state == LS_STREAM)
			c->draining = true;
		else if (c->outbound && c->state == LS_IDLE)
			link_close_graceful(w, c, "tunnel offline");
		else if (c->outbound && c->state == LS_OPEN)
			conn_close(w, c, false, "tunnel offline");
	}
	log_every(NLOG_INFO, "tunnel %s offline: %s", t->id, why);
	ops->tunnel_offline(ops->arg, t, why);
}

static void relay_closing(struct worker *w, struct conn *c, const char *why)
{
	if (c->sup)
		support_closing(w, c, why);
	if (c->http)
		edge_closing(w, c);
	if (c->src_counted) {
		/* public conns count per tunnel; tunnel-port handshakes under no tunnel */
		src_del(w, c->kind == CK_PLAIN ? c->tun : NULL, c->bind.origin_addr);
		c->src_counted = false;
	}
	if (c->kind == CK_PLAIN) {
		if (c->state == PS_PENDING)
			relay_pending_remove(w, c);
		if (c->udp)
			udp_closing(w, c);
		return;
	}
	if (c->state == LS_IDLE)
		relay_idle_unlink(w, c);
	if (c->tun && (c->state == LS_IDLE || c->state == LS_STREAM || c->state == LS_OPEN))
		links_put(c->tun, c->outbound);
	if (c->state == LS_CONTROL && c->tun && c->tun->ctl_idx == conn_idx(w, c) &&
	    c->tun->ctl_gen == c->gen)
		tunnel_offline(w, c->tun, why ? why : "control link closed");
}

/* ---------- control links ---------- */

static void ctl_send_json(struct worker *w, struct conn *l, json_t *obj)
{
	size_t n;
	uint8_t *m = msg_encode(obj, &n);

	if (!m || link_write(w, l, m, n) < 0) {
		free(m);
		conn_close(w, l, false, "control link send buffer full");
		return;
	}
	free(m);
	obuf_kick(w, l);
}

static void ctl_on_message(struct worker *w, struct conn *l, json_t *obj)
{
	const char *type = msg_str(obj, "type");
	struct engine_ops *ops = &w->e->cfg.ops;

	if (!l->tun) {
		if (strcmp(type, LINK_MSG_HELLO) || l->hello_have) {
			json_decref(obj);
			return;
		}
		l->hello_have = 1; /* a HELLO is being handled */
		relay_src_done(w, l);
		/* where the client connects from: its token may be restricted to some blocks */
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		uint8_t src[16];
		bool have = getpeername(l->fd, (struct sockaddr *)&ss, &sl) == 0 &&
			    sock_addr16(&ss, src) != 0;

		size_t nc;
		uint8_t *certs = xprt_take_peer_certs(&l->x, &nc);

		ops->ctl_hello(ops->arg, w->id, conn_idx(w, l), l->gen, obj, have ? src : NULL,
			       certs, nc);
		return;
	}
	if (!strcmp(type, LINK_MSG_HEARTBEAT)) {
		json_t *ack = json_pack("{s:s}", "type", LINK_MSG_HEARTBEAT_ACK);

		l->tun->last_hb = now_ms();
		json_decref(obj);
		ctl_send_json(w, l, ack);
		json_decref(ack);
		return;
	}
	ops->ctl_message(ops->arg, l->tun, obj);
}

static void ctl_pump(struct worker *w, struct conn *l)
{
	uint8_t buf[4096];
	char err[160];
	json_t *obj;
	int r;

	for (;;) {
		r = xprt_read(&l->x, buf, sizeof(buf));
		if (r == 0)
			break;
		if (r < 0) {
			conn_close(w, l, false,
				   r == -EPIPE ? "control link closed by peer"
					       : "control link TLS error");
			return;
		}
		if (msg_reader_feed(l->mr, buf, (size_t)r) < 0) {
			log_every(NLOG_WARN, "control link fd %d: message too large, closing",
				  l->fd);
			conn_close(w, l, false, "oversized control message");
			return;
		}
		for (;;) {
			r = msg_reader_next(l->mr, &obj, err, sizeof(err));
			if (r == 0)
				break;
			if (r < 0) {
				log_every(NLOG_WARN, "control link fd %d: %s, closing", l->fd, err);
				conn_close(w, l, false, err);
				return;
			}
			ctl_on_message(w, l, obj);
			if (l->closing)
				return;
		}
	}
	arm_recv(w, l);
}

/* ---------- public connections ---------- */

static void relay_bind(struct worker *w, struct conn *p, struct conn *l)
{
	struct link_bind b = p->bind; /* addresses from relay_public */
	uint8_t frame[4 + sizeof(b)];

	frame_put32((uint8_t *)&b.stream_id, ++w->stream_seq);
	b.port = htons(p->port);
	/*
	 * A burst, more waiting than the idle pool would absorb and than the extra
	 * links asked for already: the client opens one more link than the
	 * replacement (a steady load is served by links coming back instead).
	 */
	if (p->tun && p->tun->pending > p->tun->max_pool && p->tun->pending > p->tun->asked) {
		b.flags |= htons(LINK_BIND_WAITING);
		p->tun->asked++;
	}
	frame_put32(frame, LINK_FRAME_BIND);
	memcpy(frame + 4, &b, sizeof(b));
	l->state = LS_STREAM;
	l->tx_done = l->rx_done = false;
	l->peer = conn_idx(w, p);
	p->peer = conn_idx(w, l);
	p->connected = true;
	p->deadline = 0;     /* it may have waited in the pending queue */
	p->last_io = w->now; /* and its idle time starts now */
	frame_rx_init(&l->rx, false);
	if (link_write(w, l, frame, sizeof(frame)) < 0) {
		conn_close(w, l, false, "cannot send BIND");
		return;
	}
	if (p->udp && !udp_flush(w, p, l)) /* the datagrams it queued while it waited */
		return;
	obuf_kick(w, l);
	plain_arm_recv(w, p);
	link_arm_recv(w, l);
}

/*
 * The two ends of an accepted connection, read once: the firewall wants the
 * peer, the range listener the local port, the BIND both.
 */
struct ends {
	bool have_peer, have_local;
	struct sockaddr_storage peer, local;
};

static bool ends_peer(int fd, struct ends *e)
{
	socklen_t sl = sizeof(e->peer);

	if (!e->have_peer)
		e->have_peer = getpeername(fd, (struct sockaddr *)&e->peer, &sl) == 0;
	return e->have_peer;
}

static bool ends_local(int fd, struct ends *e)
{
	socklen_t sl = sizeof(e->local);

	if (!e->have_local)
		e->have_local = getsockname(fd, (struct sockaddr *)&e->local, &sl) == 0;
	return e->have_local;
}

void relay_ends(struct conn *p)
{
	struct ends e = {.have_peer = false};

	if (ends_peer(p->fd, &e))
		p->bind.origin_port = sock_addr16(&e.peer, p->bind.origin_addr);
	if (ends_local(p->fd, &e))
		p->bind.dst_port = sock_addr16(&e.local, p->bind.dst_addr);
}

/* No link can come for p: an RST (TCP) or a 503 (HTTP) now rather than a wait. */
static void relay_refuse_now(struct worker *w, struct conn *p, const char *why)
{
	conn_reason(p, EC_REFUSED);
	if (p->http)
		edge_pending_timeout(w, p);
	else
		conn_close(w, p, true, why);
}

void relay_attach(struct worker *w, struct conn *p, struct tunnel *t)
{
	unsigned limit = w->live->max_conns_per_source;
	struct conn *l;
	int busy; /* links of the tunnel not on their way here (the two reads may race) */

	p->tun = t;
	p->rec = true; /* a record when it ends */
	/* counted with the limit off too: a reload may set one, and it meets the true counts */
	if (w->src) {
		p->src_counted = true;
		if (src_add(w, t, p->bind.origin_addr) > limit && limit) {
			char a[INET6_ADDRSTRLEN];

			atomic_fetch_add(&w->st_refused_src, 1);
			sock_addr16_ntop(p->bind.origin_addr, a, sizeof(a));
			log_every(NLOG_WARN,
				  "tunnel %s, %s %u: %s already holds max_conns_per_source (%u) "
				  "connections, resetting a new one",
				  t->id, p->http ? "route" : "port", p->port, a, limit);
			conn_reason(p, EC_REFUSED);
			conn_close(w, p, true, NULL);
			return;
		}
	}
	l = conn_at(w, t->idle_head);
	if (l) {
		relay_idle_unlink(w, l);
		relay_bind(w, p, l);
		return;
	}
	/*
	 * Every waiting connection needs a link of its own: the links on their way
	 * here, and those the tunnel may still open (max_links, the lower of the
	 * server's and the client's). Past them a new connection could only wait for
	 * another to end: it is refused at once. (This bounds the waiting list too.)
	 */
	busy = atomic_load(&t->links) - atomic_load(&t->arriving);
	if ((unsigned)(busy > 0 ? busy : 0) + t->pending >= t->max_links) {
		atomic_fetch_add(&w->st_refused_links, 1);
		log_every(NLOG_WARN,
			  "tunnel %s: the %u data links it may have are all busy or on their way "
			  "(max_links), resetting new connections",
			  t->id, t->max_links);
		relay_refuse_now(w, p, "max_links reached");
		return;
	}
	/* and the link it waits for needs a descriptor, and a slot on this worker */
	if (!fds_left(w, t->pending + 1) ||
	    atomic_load_explicit(&w->st_slots, memory_order_relaxed) + t->pending + 1 > w->nconns) {
		atomic_fetch_add(&w->st_refused_fds, 1);
		log_every(NLOG_WARN,
			  "tunnel %s: relayd's open-file limit (or its connection table) leaves no "
			  "room for another data link, resetting new connections",
			  t->id);
		relay_refuse_now(w, p, "out of file descriptors");
		return;
	}
	p->state = PS_PENDING;
	p->deadline = w->now + w->live->pending_timeout_ms;
	p->prev = t->pend_tail;
	p->next = NONE;
	if (t->pend_tail != NONE)
		w->conns[t->pend_tail].next = conn_idx(w, p);
	else
		t->pend_head = conn_idx(w, p);
	t->pend_tail = conn_idx(w, p);
	t->pending++;
}

/* ends: what the accepting worker read already (NULL after a hand-over) */
static void relay_public(struct worker *w, int fd, uint16_t port, struct tunnel *t,
			 struct ends *ends)
{
	struct ends mine = {.have_peer = false};
	struct conn *p;

	p = conn_new(w, CK_PLAIN, fd);
	if (!p) {
		log_every(NLOG_WARN, "w%d: connection slab full, refusing connection on port %u",
			  w->id, port);
		atomic_fetch_add(&w->st_refused_fds, 1);
		sock_rst_on_close(fd);
		close(fd);
		return;
	}
	sock_nodelay(fd);
	p->port = port;
	p->counted = true;
	p->last_io = w->now;
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	/* the origin (and the address it reached) go in the BIND and the per-source count */
	p->bind.dst_port = htons(port);
	if (!ends)
		ends = &mine;
	if (ends_peer(fd, ends))
		p->bind.origin_port = sock_addr16(&ends->peer, p->bind.origin_addr);
	if (ends_local(fd, ends))
		p->bind.dst_port = sock_addr16(&ends->local, p->bind.dst_addr);
	relay_attach(w, p, t);
}

/* ---------- data links ---------- */

/* A stream ended on l: bind a waiting connection, keep l idle, or close it. */
static void relay_link_idle(struct worker *w, struct conn *l)
{
	struct tunnel *t = l->tun;
	struct conn *p;

	if (l->sup) { /* a supporter's link carries one stream */
		l->state = LS_STREAM;
		link_close_graceful(w, l, "support stream ended");
		return;
	}
	if (l->draining || atomic_load(&t->home) != w->id) {
		l->state = LS_STREAM;
		link_close_graceful(w, l, "tunnel gone");
		return;
	}
	if (l->outbound) { /* waits for the client's next OPEN, off the idle list */
		mesh_link_idle(w, l);
		return;
	}
	p = conn_at(w, t->pend_head);
	if (p) {
		relay_pending_remove(w, p);
		relay_bind(w, p, l);
		return;
	}
	/*
	 * Kept even past max_pool_size: the tick closes the idle links above it
	 * that stayed unused for POOL_PURGE_MS. Under a steady load the links come
	 * back and go out again, and closing them at once would make the client
	 * pay a handshake for the next burst (measured: ~1 in 5 connections did).
	 */
	l->last_io = w->now;
	l->prev = NONE;
	l->next = t->idle_head;
	if (l->next != NONE)
		w->conns[l->next].prev = conn_idx(w, l);
	t->idle_head = conn_idx(w, l);
	t->idle++;
	atomic_fetch_add(&w->st_idle, 1);
	link_arm_recv(w, l);
}

/*
 * A new data link at home: it serves a waiting connection, or joins the idle
 * pool when it was asked for or the pool has room. Otherwise it is closed: the
 * idle links kept above max_pool_size are those that came back from streams,
 * so a client cannot pin descriptors here with links nobody wanted.
 */
static void relay_new_link(struct worker *w, struct conn *l)
{
	struct tunnel *t = l->tun;
	bool asked = t->asked > 0;

	if (l->outbound) { /* counted in max_links already; no pool to fit */
		link_make_idle(w, l);
		return;
	}
	if (asked)
		t->asked--;
	if (!asked && !t->pending && t->idle >= t->max_pool) {
		l->state = LS_STREAM;
		link_close_graceful(w, l, "idle pool full");
		return;
	}
	link_make_idle(w, l);
}

/* A verified data link is now this worker's (the tunnel's home). */
static void relay_adopt_link(struct worker *w, struct handoff *h)
{
	struct conn *l = conn_new(w, CK_LINK, h->fd);

	atomic_fetch_sub(&h->tun->arriving, 1);
	if (!l) {
		log_every(NLOG_WARN, "w%d: connection slab full, dropping data link", w->id);
		xprt_free(&h->x);
		close(h->fd);
		links_put(h->tun, h->outbound);
		free(h->in);
		free(h);
		return;
	}
	xprt_move(&l->x, &h->x);
	xprt_feed(&l->x, h->in, h->in_len); /* an OPEN sent right behind the DATA_HELLO */
	l->tun = h->tun;
	l->outbound = h->outbound;
	l->counted = true;
	atomic_fetch_add(&w->st_links, 1);
	if (atomic_load(&l->tun->home) != w->id) {
		l->state = LS_STREAM;
		conn_close(w, l, false, "tunnel moved");
		free(h->in);
		free(h);
		return;
	}
	relay_new_link(w, l);
	if (l->outbound && !l->closing && xprt_pending(&l->x))
		link_pump(w, l); /* what it does not take waits in its stash */
	if (l->kind == CK_LINK)	 /* not finalized under the pump: h->in goes */
		xprt_feed(&l->x, NULL, 0);
	free(h->in);
	free(h);
	link_settle(w, l); /* returns for a link that closed */
}

/*
 * A tunnel-port connection counts against its source until it has said
 * what it is (DATA_HELLO or HELLO): one address cannot hold every slot with
 * handshakes that never finish. false when the source is at its limit.
 */
bool relay_src_take(struct worker *w, struct conn *l)
{
	unsigned limit = w->live->max_conns_per_source;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (!w->src || getpeername(l->fd, (struct sockaddr *)&ss, &sl) < 0)
		return true;
	sock_addr16(&ss, l->bind.origin_addr);
	l->src_counted = true;
	if (src_add(w, NULL, l->bind.origin_addr) <= limit || !limit)
		return true;
	atomic_fetch_add(&w->st_refused_src, 1);
	log_every(NLOG_WARN,
		  "a source already has max_conns_per_source (%u) unfinished TLS handshakes "
		  "or request heads, closing a new one",
		  limit);
	return false;
}

void relay_src_done(struct worker *w, struct conn *l)
{
	if (l->src_counted) {
		src_del(w, NULL, l->bind.origin_addr);
		l->src_counted = false;
	}
}

/* Hands a verified data link to the tunnel's home worker (a MSG_RING). */
static void relay_handoff(struct worker *w, struct conn *l, struct tunnel *t, int home)
{
	struct handoff *ho = malloc(sizeof(*ho));
	struct io_uring_sqe *sqe;

	if (!ho || l->tx.inflight || l->recv_armed) {
		free(ho);
		links_put(t, l->outbound);
		conn_close(w, l, false, "cannot hand off link");
		return;
	}
	ho->outbound = l->outbound;
	ho->in = NULL;
	ho->in_len = 0;
	if (l->x.in_len) { /* only an outbound link's (an OPEN): the check in relay_first */
		ho->in = malloc(l->x.in_len);
		if (!ho->in) {
			free(ho);
			links_put(t, l->outbound);
			conn_close(w, l, false, "out of memory");
			return;
		}
		memcpy(ho->in, l->x.in, l->x.in_len);
		ho->in_len = l->x.in_len;
		xprt_feed(&l->x, NULL, 0);
	}
	xprt_move(&ho->x, &l->x);
	ho->fd = l->fd;
	ho->tun = t;
	atomic_fetch_add(&t->arriving, 1);
	l->fd = -1;
	sqe = get_sqe(w);
	io_uring_prep_msg_ring(sqe, w->e->ring_fds[home], 0,
			       (uint64_t)OP_MSG_LINK << 56 | (uint64_t)(uintptr_t)ho, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)OP_SENT_LINK << 56 | (uint64_t)(uintptr_t)ho);
	pool_put(w, l->tx.p);
	l->tx.p = NULL;
	conn_finalize(w, l);
}

/* First plaintext on a tunnel connection: DATA_HELLO or a control message. */
static void relay_first(struct worker *w, struct conn *l)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct link_data_hello *h = (struct link_data_hello *)l->hello;
	struct tunnel *t;
	char err[128];
	bool outbound;
	int r, home;

	while (l->hello_have < sizeof(l->hello)) {
		size_t want =
		    l->hello_have < 4 ? 4 - l->hello_have : sizeof(l->hello) - l->hello_have;

		r = xprt_read(&l->x, l->hello + l->hello_have, want);
		if (r == 0) {
			arm_recv(w, l);
			return;
		}
		if (r < 0) {
			conn_close(w, l, false, "closed before the first message");
			return;
		}
		l->hello_have += (uint32_t)r;
		if (l->hello_have == 4 && frame_get32(l->hello) != LINK_MAGIC) {
			/*
			 * a control link: the 4 bytes are a message length. It counts against
			 * its source (max_conns_per_source) until its HELLO is in: a peer
			 * cannot hold more half-made control links than that
			 */
			l->state = LS_CONTROL;
			l->mr = calloc(1, sizeof(*l->mr));
			if (!l->mr) {
				conn_close(w, l, false, "out of memory");
				return;
			}
			msg_reader_init(l->mr);
			msg_reader_feed(l->mr, l->hello, 4);
			l->hello_have = 0;
			l->deadline = now_ms() + HANDSHAKE_TIMEOUT_MS + 5000;
			ctl_pump(w, l);
			return;
		}
	}
	/* a data link is its DATA_HELLO's secret: certificates it showed are not kept */
	{
		size_t n;

		free(xprt_take_peer_certs(&l->x, &n));
	}
	if (frame_hello_check(h, err, sizeof(err)) < 0) {
		log_every(NLOG_WARN, "data link fd %d: %s, closing", l->fd, err);
		conn_close(w, l, false, err);
		return;
	}
	outbound = frame_hello_flags(h) & LINK_HELLO_OUTBOUND;
	t = ops->tunnel_find(ops->arg, h->tunnel_id);
	home = t ? atomic_load(&t->home) : -1;
	if (!t || home < 0 || !ct_equal(t->secret, h->secret, LINK_SECRET_LEN)) {
		log_every(NLOG_WARN,
			  "data link fd %d: unknown tunnel or bad link secret for %.31s, closing",
			  l->fd, h->tunnel_id);
		conn_close(w, l, false, "bad DATA_HELLO");
		return;
	}
	/* an outbound link's client may send its first OPEN right behind the DATA_HELLO */
	if (!outbound && xprt_pending(&l->x)) {
		log_every(
		    NLOG_WARN,
		    "data link fd %d: frame after DATA_HELLO while no stream is bound, closing",
		    l->fd);
		conn_close(w, l, false, "data after DATA_HELLO");
		return;
	}
	if ((unsigned)atomic_fetch_add(&t->links, 1) >= t->max_links) {
		atomic_fetch_sub(&t->links, 1);
		log_every(NLOG_WARN, "tunnel %s: max_links (%u) reached, refusing data link", t->id,
			  t->max_links);
		conn_close(w, l, false, "max_links reached");
		return;
	}
	/*
	 * Client-opened links may hold max_links less the idle pool: the edge's
	 * own links for the tunnel's public connections always have room.
	 */
	if (outbound && (unsigned)atomic_fetch_add(&t->outbound, 1) >=
			    (t->max_links > t->max_pool ? t->max_links - t->max_pool : 0)) {
		links_put(t, true);
		log_every(NLOG_WARN,
			  "tunnel %s: outbound links at max_links (%u) less the idle pool (%u), "
			  "refusing one",
			  t->id, t->max_links, t->max_pool);
		conn_close(w, l, false, "outbound links at their limit");
		return;
	}
	l->deadline = 0;
	l->outbound = outbound;
	relay_src_done(w, l);
	if (home != w->id) {
		relay_handoff(w, l, t, home);
		return;
	}
	l->tun = t;
	l->counted = true;
	atomic_fetch_add(&w->st_links, 1);
	relay_new_link(w, l);
	if (outbound && !l->closing && xprt_pending(&l->x))
		link_pump(w, l);
}

static void relay_handshake_done(struct worker *w, struct conn *l)
{
	l->state = LS_FIRST;
	relay_first(w, l);
}

static void relay_link_input(struct worker *w, struct conn *l)
{
	if (l->state == LS_FIRST)
		relay_first(w, l);
	else
		ctl_pump(w, l);
}

static void relay_bind_frame(struct worker *w, struct conn *l, const struct link_bind *b)
{
	/* frame_rx refuses BIND on relayd's links: a client never sends one */
	conn_close(w, l, false, "BIND from a client");
}

/* relayd connects only to a mesh stream's external destination */
static void relay_connected(struct worker *w, struct conn *c, int res)
{
	if (c->kind == CK_PLAIN && c->mesh)
		mesh_connected(w, c, res);
	else
		conn_close(w, c, false, "internal: relayd does not connect");
}

/* ---------- accept ---------- */

void relay_link_accept(struct worker *w, int fd, const uint8_t *hello, size_t n)
{
	struct conn *l = conn_new(w, CK_LINK, fd);

	if (!l || xprt_init_server(&l->x, w->e->cfg.xprt, fd) < 0) {
		if (l)
			conn_release(w, l);
		close(fd);
		return;
	}
	sock_nodelay(fd);
	l->state = LS_HANDSHAKE;
	l->deadline = now_ms() + HANDSHAKE_TIMEOUT_MS;
	if (!relay_src_take(w, l)) {
		conn_close(w, l, false, "too many handshakes from one source");
		return;
	}
	if (!n) {
		arm_recv(w, l);
		return;
	}
	/* the ClientHello the HTTPS side read already */
	xprt_feed(&l->x, hello, n);
	link_handshake(w, l);
	xprt_feed(&l->x, NULL, 0);
}

/* The firewall lists (navectl firewall): false when fd's source may not connect. */
static bool firewall_pass(struct worker *w, int fd, const struct conn *c, struct ends *ends)
{
	uint8_t a16[16];
	enum cidr_verdict v;
	char a[INET6_ADDRSTRLEN];

	if (!w->fw || (!w->fw->ndeny && !w->fw->nallow))
		return true;
	if (!ends_peer(fd, ends))
		return false;
	sock_addr16(&ends->peer, a16);
	v = cidr_table_check(w->fw, a16);
	if (v == CIDR_PASS)
		return true;
	atomic_fetch_add(&w->st_fw_refused, 1);
	sock_addr16_ntop(a16, a, sizeof(a));
	log_every(NLOG_INFO, "firewall: %s refused on %s (%s)", a,
		  c->tunnel_listener ? "the tunnel port" : "a port of the range",
		  v == CIDR_DENIED ? "denied" : "not in the allow list");
	return false;
}

static void relay_accept(struct worker *w, struct conn *c, int fd)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct tunnel *t;
	struct io_uring_sqe *sqe;
	uint16_t port = c->port;
	struct ends ends = {.have_peer = false};
	int home;

	if (!firewall_pass(w, fd, c, &ends)) {
		sock_rst_on_close(fd);
		close(fd);
		return;
	}
	if (c->http_listener) {
		edge_accept(w, c, fd);
		return;
	}
	if (c->https_listener) {
		edge_tls_accept(w, c, fd, false);
		return;
	}
	if (c->socks_listener) {
		socks_accept(w, c, fd);
		return;
	}
	if (c->tunnel_listener) {
		/* tunnels share the HTTPS port: the ClientHello says which it is */
		if (w->e->cfg.https_shared)
			edge_tls_accept(w, c, fd, true);
		else
			relay_link_accept(w, fd, NULL, 0);
		return;
	}
	if (!port) {
		/* the range listener (steering = bpf): sk_lookup steered it here, the port
		 * it reached is the route */
		uint8_t a16[16];

		if (ends_local(fd, &ends))
			port = ntohs(sock_addr16(&ends.local, a16));
	}
	t = port ? ops->port_route(ops->arg, port) : NULL;
	home = t ? atomic_load(&t->home) : -1;
	if (home < 0) {
		log_debug("port %u: tunnel offline or port released, refusing connection", port);
		sock_rst_on_close(fd);
		close(fd);
		return;
	}
	if (home == w->id) {
		relay_public(w, fd, port, t, &ends);
		return;
	}
	sqe = get_sqe(w);
	io_uring_prep_msg_ring(sqe, w->e->ring_fds[home], port,
			       (uint64_t)OP_MSG_PUBLIC << 56 | (uint32_t)fd, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)OP_SENT_PUBLIC << 56 | (uint32_t)fd);
}

/* Hand-offs between workers (IORING_OP_MSG_RING) and their completions. */
static void relay_ring_msg(struct worker *w, enum op op, uint64_t ud, int res)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct handoff *h = (struct handoff *)(uintptr_t)ud_ptr(ud);
	struct tunnel *t;
	int fd = (int)(uint32_t)ud;

	switch (op) {
	case OP_SENT_PUBLIC:
		if (res < 0) { /* the home worker never got it */
			log_warn("w%d: handing a connection over failed: %s", w->id,
				 strerror(-res));
			close(fd);
		}
		break;
	case OP_SENT_LINK:
		if (res < 0) {
			log_warn("w%d: handing a data link over failed: %s", w->id, strerror(-res));
			xprt_free(&h->x);
			close(h->fd);
			atomic_fetch_sub(&h->tun->arriving, 1);
			links_put(h->tun, h->outbound);
			free(h->in);
			free(h);
		}
		break;
	case OP_MSG_PUBLIC:
		t = ops->port_route(ops->arg, (uint16_t)res);
		if (!t || atomic_load(&t->home) != w->id || w->stopping) {
			close(fd);
			break;
		}
		relay_public(w, fd, (uint16_t)res, t, NULL);
		break;
	case OP_MSG_LINK:
		relay_adopt_link(w, h);
		break;
	case OP_MSG_HTTP:
		edge_adopt(w, (struct edge_handoff *)(uintptr_t)ud_ptr(ud));
		break;
	case OP_MSG_UDP:
		udp_adopt(w, (struct udp_handoff *)(uintptr_t)ud_ptr(ud));
		break;
	case OP_SENT_UDP:
		if (res < 0) {
			log_every(NLOG_WARN, "w%d: handing a datagram over failed: %s", w->id,
				  strerror(-res));
			udp_handoff_failed((struct udp_handoff *)(uintptr_t)ud_ptr(ud));
		}
		break;
	case OP_MSG_MESH:
	case OP_SENT_MESH:
		mesh_ring_msg(w, op, (struct mesh_handoff *)(uintptr_t)ud_ptr(ud), res);
		break;
	case OP_SENT_HTTP:
		if (res < 0) {
			log_warn("w%d: handing an HTTP connection over failed: %s", w->id,
				 strerror(-res));
			edge_handoff_failed((struct edge_handoff *)(uintptr_t)ud_ptr(ud));
		}
		break;
	default:
		break;
	}
}

/* ---------- mailbox, tick, init ---------- */

static bool relay_mailbox(struct worker *w, struct mb_msg *m)
{
	struct conn *c;

	switch (m->type) {
	case MB_LISTEN:
		c = conn_new(w, CK_LISTEN, m->fd);
		if (!c) {
			close(m->fd);
			break;
		}
		c->port = m->port;
		c->http_listener = m->listener == LISTEN_HTTP;
		c->https_listener = m->listener == LISTEN_HTTPS;
		c->udp = m->listener == LISTEN_UDP;
		c->socks_listener = m->listener == LISTEN_SOCKS	      ? 1
				    : m->listener == LISTEN_SOCKS_TLS ? 2
								      : 0;
		if (c->udp)
			udp_arm_poll(w, c);
		else
			arm_accept(w, c);
		break;
	case MB_ROUTES:
		http_routes_put(w->routes);
		w->routes = m->routes;
		m->routes = NULL;
		break;
	case MB_AUTH:
		edge_auth_done(w, m);
		break;
	case MB_SOCKS_AUTH:
		socks_auth_done(w, m);
		break;
	case MB_SOCKS_KICK:
		socks_kick(w, m->tun);
		break;
	case MB_SUPPORT_JOIN:
		support_join(w, m);
		break;
	case MB_SUPPORT_KILL:
		support_kill(w, m);
		break;
	case MB_MESH:
		mesh_table_put(w->mesh);
		w->mesh = m->mesh;
		m->mesh = NULL;
		break;
	case MB_RESOLVED:
		mesh_resolved(w, m);
		break;
	case MB_CERTS:
		http_routes_put(w->certs);
		w->certs = m->routes;
		m->routes = NULL;
		break;
	case MB_FIREWALL:
		cidr_table_put(w->fw);
		w->fw = m->fw;
		m->fw = NULL;
		/* a source refused from now on loses what it holds open, not only what comes */
		for (uint32_t i = 0; w->fw && i < w->high; i++) {
			c = &w->conns[i];
			if (c->kind != CK_PLAIN || c->closing ||
			    cidr_table_check(w->fw, c->bind.origin_addr) == CIDR_PASS)
				continue;
			atomic_fetch_add(&w->st_fw_refused, 1);
			log_every(NLOG_INFO, "firewall: resetting an open connection of a source "
					     "the lists refuse now");
			conn_close(w, c, true, "firewall");
		}
		break;
	case MB_UNLISTEN:
		/* shut now: the port leaves the listening table; freed when the accept ends */
		for (uint32_t i = 0; i < w->high; i++) {
			c = &w->conns[i];
			if (c->kind == CK_LISTEN && !c->tunnel_listener && !c->http_listener &&
			    !c->https_listener && !c->socks_listener && c->port == m->port)
				conn_close(w, c, false, "port released");
			/* a UDP port's flows have sockets of their own on it */
			if (c->kind == CK_PLAIN && c->udp && c->port == m->port) {
				conn_reason(c, EC_SHUTDOWN);
				conn_close(w, c, true, "port released");
			}
		}
		if (m->ack)
			atomic_fetch_add(m->ack, 1);
		break;
	case MB_WELCOME:
		c = conn_ref(w, m->idx, m->gen);
		if (!c) {
			/* the control link went away during auth: never online here */
			w->e->cfg.ops.tunnel_offline(w->e->cfg.ops.arg, m->tun,
						     "control link closed before WELCOME");
			break;
		}
		c->tun = m->tun;
		m->tun->ctl_idx = m->idx;
		m->tun->ctl_gen = m->gen;
		m->tun->idle_head = m->tun->pend_head = m->tun->pend_tail = NONE;
		m->tun->idle = m->tun->pending = m->tun->asked = 0;
		m->tun->last_hb = now_ms();
		c->deadline = 0;
		/* only now may other workers route to this tunnel: its lists exist */
		atomic_store(&m->tun->home, w->id);
		/* fall through: send the WELCOME */
		/* FALLTHROUGH */
	case MB_CTL_SEND:
		c = conn_ref(w, m->idx, m->gen);
		if (!c)
			break;
		if (!m->tun && !c->tun)
			c->hello_have = 0; /* a refused HELLO: the link closes after this */
		if (link_write(w, c, m->data, m->len) < 0) {
			conn_close(w, c, false, "control link send buffer full");
			break;
		}
		obuf_kick(w, c);
		if (m->close_after)
			c->close_after_send = true;
		break;
	case MB_KICK:
		if (!m->tun || atomic_load(&m->tun->home) != w->id)
			break;
		c = conn_ref(w, m->tun->ctl_idx, m->tun->ctl_gen);
		if (!c)
			break;
		if (m->data && link_write(w, c, m->data, m->len) == 0)
			obuf_kick(w, c);
		tunnel_offline(w, m->tun, "kicked by the control daemon");
		c->close_after_send = true;
		if (!c->tx.inflight && c->tx.head == c->tx.tail)
			conn_close(w, c, false, "kicked");
		break;
	default:
		return false;
	}
	return true;
}

static void relay_tick_conn(struct worker *w, struct conn *c, uint64_t now)
{
	unsigned idle_ms = c->idle_ms; /* what it was accepted with */

	if (c->http && edge_tick(w, c, now))
		return;
	if (c->kind == CK_PLAIN && (c->sk || c->pp) && socks_tick(w, c, now))
		return;
	if (c->kind == CK_LINK && c->sup && support_tick(w, c))
		return;
	if (c->kind == CK_LINK && c->outbound && c->state >= LS_IDLE) {
		mesh_tick_link(w, c, now);
		return;
	}
	if (c->kind == CK_PLAIN && c->udp && udp_tick(w, c, now))
		return;
	if (c->deadline && now > c->deadline) {
		if (c->kind == CK_PLAIN) {
			atomic_fetch_add(&w->st_pend_to, 1);
			conn_reason(c, EC_PENDING_TIMEOUT);
			if (c->http) {
				edge_pending_timeout(w, c);
				return;
			}
			log_every(NLOG_WARN,
				  "tunnel %s, port %u: no data link became free within "
				  "pending_timeout, resetting the connection",
				  c->tun ? c->tun->id : "-", c->port);
		} else {
			log_every(NLOG_WARN,
				  "fd %d: TLS handshake or first message timed out, closing",
				  c->fd);
		}
		conn_close(w, c, true, "timeout");
		return;
	}
	if (c->kind == CK_PLAIN && idle_ms && c->state != PS_PENDING &&
	    now - c->last_io > idle_ms) {
		atomic_fetch_add(&w->st_idle_to, 1);
		log_every(NLOG_INFO,
			  "tunnel %s, port %u: no bytes either way for idle_timeout, "
			  "resetting the connection",
			  c->tun ? c->tun->id : "-", c->port);
		conn_reason(c, EC_IDLE_TIMEOUT);
		conn_close(w, c, true, "idle timeout");
		return;
	}
	if (c->kind == CK_LINK && c->state == LS_IDLE && c->tun &&
	    c->tun->idle > c->tun->max_pool && now - c->last_io > POOL_PURGE_MS) {
		link_close_graceful(w, c, "unused above max_pool_size");
		return;
	}
	if (c->kind == CK_LINK && c->state == LS_CONTROL && c->tun && c->tun->heartbeat_ms &&
	    now - c->tun->last_hb > 3 * (uint64_t)c->tun->heartbeat_ms) {
		log_warn("tunnel %s: heartbeat lost (3 missed), closing control link", c->tun->id);
		conn_close(w, c, false, "heartbeat lost");
	}
}

static void relay_tick(struct worker *w)
{
}

static int relay_init(struct worker *w, char *err, size_t errlen)
{
	const struct engine_config *cfg = &w->e->cfg;
	struct conn *c;

	/*
	 * With max_conns_per_source = 0 too: a reload may set a limit. Twice the
	 * slots a worker has connections: never more than half full.
	 */
	uint32_t slots = 2;

	while (slots < 2 * w->nconns)
		slots <<= 1;
	w->src_mask = slots - 1;
	w->src = calloc(slots, sizeof(*w->src));
	if (!w->src) {
		snprintf(err, errlen, "out of memory for the per-source table");
		return -ENOMEM;
	}
	random_bytes(&w->src_seed, sizeof(w->src_seed));
	/* the UDP flow table: as many chains as slots; a datagram's room with its header */
	w->udp_mask = slots / 2 - 1;
	w->udp_tab = malloc((size_t)(w->udp_mask + 1) * sizeof(*w->udp_tab));
	w->udp_buf = malloc(4 + LINK_UDP_MAX + 1);
	if (!w->udp_tab || !w->udp_buf) {
		snprintf(err, errlen, "out of memory for the UDP flow table");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i <= w->udp_mask; i++)
		w->udp_tab[i] = NONE;
	random_bytes(&w->udp_seed, sizeof(w->udp_seed));
	/* frame word + head, for the largest max_head a reload may set */
	w->hscratch = malloc(4 + ENGINE_HEAD_MAX + HTTP_REWRITE_EXTRA);
	if (!w->hscratch) {
		snprintf(err, errlen, "out of memory for the HTTP edge");
		return -ENOMEM;
	}
	c = conn_new(w, CK_LISTEN, cfg->tunnel_fds[w->id]);
	c->tunnel_listener = true;
	arm_accept(w, c);
	return 0;
}

const struct role_ops relay_ops = {
    .name = "relay",
    .link_name = "tunnel connection",
    .pin = true,
    .rx_bind = false,
    .listeners = true,
    .init = relay_init,
    .accept = relay_accept,
    .connected = relay_connected,
    .handshake_done = relay_handshake_done,
    .link_input = relay_link_input,
    .bind = relay_bind_frame,
    .open = mesh_open,
    .link_idle = relay_link_idle,
    .idle_unlink = relay_idle_unlink,
    .closing = relay_closing,
    .ring_msg = relay_ring_msg,
    .mailbox = relay_mailbox,
    .tick_conn = relay_tick_conn,
    .tick = relay_tick,
};

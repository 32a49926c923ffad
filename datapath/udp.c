// SPDX-License-Identifier: Apache-2.0
/*
 * UDP port tunnels (link_proto.h "UDP rules"). A flow is one source address
 * and port on one public UDP port; it is one stream on a data link, and each
 * chunk on that stream is one datagram.
 *
 * relayd: every worker holds a socket of the port's SO_REUSEPORT group and
 * polls it. A datagram from a source without a flow goes to the tunnel's home
 * worker (itself, or a copy through IORING_OP_MSG_RING), which looks the
 * source up in its flow table. A new flow gets a socket of its own, bound to
 * the public port and connected to the source: from then on the kernel
 * delivers that source's datagrams to it (a connected socket wins the
 * lookup), so they reach the home worker directly, and replies leave from the
 * public port. The flow is a plain connection (conn.udp) that takes a data
 * link as a TCP public connection does (relay_attach, BIND with
 * LINK_BIND_UDP); while it waits it reads its datagrams into a queue of at
 * most [udp] queue (beyond: dropped and counted). A tunnel has at most [udp]
 * max_flows flows; a flow idle for [udp] idle_timeout ends with EOF.
 *
 * client: a BIND with LINK_BIND_UDP gets a socket connected to the rule's
 * target; each chunk is sent as one datagram, each datagram received is one
 * chunk (udp_dial); it ends on EOF or RESET, or idle on its side too.
 *
 * Nothing here grows with a peer's input: a flow holds a pool buffer only
 * while it queues or reassembles a datagram, the forwards between workers are
 * bounded (UDP_FWD_MAX per worker, until the home worker took them) and the flows by max_flows per
 * tunnel.
 */
#include "dp.h"

#include "log.h"
#include "sock.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* datagrams read from a port's socket per poll completion */
#define UDP_BATCH 64
/* datagrams one worker may have on their way to other workers */
#define UDP_FWD_MAX 4096
/* the client's idle timeout for a flow when the engine config has none */
#define UDP_CLIENT_IDLE_MS 300000
/* the client's idle timeout for a UDP port map's flow (dial.c) */
#define UDP_MAP_IDLE_MS 60000

/* A datagram on its way to its tunnel's home worker (OP_MSG_UDP). */
struct udp_handoff {
	struct worker *from; /* the worker that counts it in udp_fwd */
	uint16_t port;
	struct sockaddr_storage peer, local;
	socklen_t peer_len, local_len;
	uint32_t len;
	uint8_t data[]; /* 4 bytes of room, then the datagram */
};

static void drop(struct worker *w, enum udp_drop why)
{
	atomic_fetch_add_explicit(&w->st_udp_drop[why], 1, memory_order_relaxed);
}

/* ---------- the flow table (home worker) ---------- */

static uint32_t flow_hash(const struct worker *w, uint16_t port, const uint8_t a[16],
			  uint16_t sport)
{
	uint64_t x, y, h;

	memcpy(&x, a, 8);
	memcpy(&y, a + 8, 8);
	h = w->udp_seed ^ ((uint64_t)port << 16 | sport);
	h = (h ^ x) * 0x9e3779b97f4a7c15ull;
	h = (h ^ (h >> 29) ^ y) * 0xbf58476d1ce4e5b9ull;
	return (uint32_t)(h ^ (h >> 32));
}

struct conn *udp_flow_find(struct worker *w, uint16_t port, const uint8_t a[16], uint16_t sport)
{
	uint32_t i = w->udp_tab[flow_hash(w, port, a, sport) & w->udp_mask];

	for (struct conn *p; (p = conn_at(w, i)); i = p->udp_next)
		if (p->port == port && p->bind.origin_port == sport &&
		    !memcmp(p->bind.origin_addr, a, 16))
			return p;
	return NULL;
}

void udp_flow_insert(struct worker *w, struct conn *p)
{
	uint32_t *head =
	    &w->udp_tab[flow_hash(w, p->port, p->bind.origin_addr, p->bind.origin_port) &
			w->udp_mask];

	p->udp_next = *head;
	*head = conn_idx(w, p);
}

void udp_flow_remove(struct worker *w, struct conn *p)
{
	uint32_t *at = &w->udp_tab[flow_hash(w, p->port, p->bind.origin_addr, p->bind.origin_port) &
				   w->udp_mask];

	while (*at != NONE && *at != conn_idx(w, p))
		at = &w->conns[*at].udp_next;
	if (*at != NONE)
		*at = p->udp_next;
	p->udp_next = NONE;
}

/* ---------- a datagram for a flow ---------- */

/* relay: [udp] queue as the last reload left it; client: its engine's own */
static unsigned udp_queue_max(const struct worker *w)
{
	return w->live ? w->live->udp_queue : w->e->cfg.udp_queue;
}

/*
 * d: len bytes with 4 bytes of room in front. A bound flow writes it as a
 * chunk, a waiting one queues it.
 */
void udp_input(struct worker *w, struct conn *p, uint8_t *d, uint32_t len)
{
	struct conn *l = conn_at(w, p->peer);

	/* relay: waits for a data link; client (a port map's flow): for a link or OPENED */
	if (p->state == PS_PENDING || p->state == PS_MAPWAIT || p->state == PS_OPENING) {
		uint32_t cap = w->txcap;

		if (p->udp_q >= udp_queue_max(w) || (p->stash && p->stash_len + 4 + len > cap) ||
		    (!p->stash && !(p->stash = pool_get(w)))) {
			drop(w, UDP_DROP_QUEUE);
			return;
		}
		frame_put32(p->stash + p->stash_len, len);
		memcpy(p->stash + p->stash_len + 4, d, len);
		p->stash_len += 4 + len;
		p->udp_q++;
		return;
	}
	if (!l || p->eof_in || l->tx_done) { /* the flow is ending: nothing carries it */
		drop(w, UDP_DROP_OFFLINE);
		return;
	}
	frame_put32(d - 4, len);
	if (link_write(w, l, d - 4, (size_t)len + 4) < 0) {
		/* the link is full: a datagram is dropped, never buffered past it */
		drop(w, UDP_DROP_QUEUE);
		return;
	}
	p->last_io = w->now;
	p->rec_in += len;
	atomic_fetch_add_explicit(&w->st_udp_in, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->st_in, len, memory_order_relaxed);
	obuf_kick(w, l);
}

void udp_recv(struct worker *w, struct conn *p, int res, unsigned flags)
{
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
	bool buf = flags & IORING_CQE_F_BUFFER;

	p->recv_armed = false;
	if (res == -ENOBUFS) {
		p->rearm = true; /* retried after this batch */
		w->starved++;
		return;
	}
	/* a mesh flow's socketpair: 0 bytes is its other end gone, the flow's end */
	if (res == 0 && p->udp_pair) {
		struct conn *l = conn_at(w, p->peer);

		if (buf)
			buf_recycle(w, bid);
		if (l && !p->eof_in)
			plain_send_eof(w, p, l);
		else
			conn_close(w, p, true, "udp flow ended");
		return;
	}
	/* a refused send (ICMP port unreachable) comes back on the next receive: not fatal */
	if (res < 0 && res != -ECONNREFUSED) {
		if (buf)
			buf_recycle(w, bid);
		conn_close(w, p, true, strerror(-res));
		return;
	}
	if (res > 0 && (unsigned)res <= w->bufsz - 4 && buf)
		udp_input(w, p, buf_addr(w, bid) + HEADROOM, (uint32_t)res);
	else if (res >= 0) /* empty (it would read as EOF) or longer than a buffer */
		drop(w, UDP_DROP_OVERSIZE);
	if (buf)
		buf_recycle(w, bid);
	if (!p->closing)
		plain_arm_recv(w, p);
}

bool udp_flush(struct worker *w, struct conn *p, struct conn *l)
{
	uint32_t off = 0;

	while (off < p->stash_len) {
		uint32_t n = frame_get32(p->stash + off);

		if (link_write(w, l, p->stash + off, (size_t)n + 4) < 0) {
			conn_close(w, l, false, "link send buffer overrun");
			return false;
		}
		p->rec_in += n;
		atomic_fetch_add_explicit(&w->st_udp_in, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&w->st_in, n, memory_order_relaxed);
		off += 4 + n;
	}
	pool_put(w, p->stash);
	p->stash = NULL;
	p->stash_len = 0;
	p->udp_q = 0;
	return true;
}

static bool fw_pass(struct worker *w, const uint8_t a16[16])
{
	if (!w->fw || (!w->fw->ndeny && !w->fw->nallow) ||
	    cidr_table_check(w->fw, a16) == CIDR_PASS)
		return true;
	atomic_fetch_add(&w->st_fw_refused, 1);
	return false;
}

/* ---------- new flows (home worker) ---------- */

/*
 * A socket filter that takes datagrams from the flow's source only (the source
 * address in the network header, the source port at the UDP header's start).
 * From the moment the socket joins the port's reuseport group until its
 * connect, the kernel may pick it for other sources. The filter goes on right
 * after the connect, and flow_strays then drains the queue: what the queue holds
 * at that point arrived before the filter and goes to its own flow; a datagram
 * the kernel picked this socket for before the connect but queues only after the
 * filter (a window of instructions) is dropped, never taken as this flow's. A
 * v4-mapped source arrives as an IPv4 packet.
 */
static int flow_filter(int fd, const struct sockaddr_storage *peer)
{
	struct sock_filter f[12];
	struct sock_fprog prog = {.filter = f};
	uint8_t a16[16];
	uint16_t port = ntohs(sock_addr16(peer, a16));
	unsigned n = 0, words = sock_addr16_is_v4(a16) ? 1 : 4, off = words == 1 ? 12 : 8;
	unsigned drop_at = 2 * words + 3; /* index of the last instruction */

	for (unsigned i = 0; i < words; i++) {
		uint32_t v;
		unsigned at = n + 1; /* the jump's own index */

		memcpy(&v, a16 + (words == 1 ? 12 : 4 * i), 4);
		f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
						      (uint32_t)SKF_NET_OFF + off + 4 * i);
		f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ntohl(v), 0,
						      (uint8_t)(drop_at - at - 1));
	}
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 0);
	f[n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port, 0,
					    (uint8_t)(drop_at - n - 1));
	n++;
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0xffffffffu);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
	prog.len = (unsigned short)n;
	return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
}

static int flow_socket(const struct sockaddr_storage *local, socklen_t local_len,
		       const struct sockaddr_storage *peer, socklen_t peer_len)
{
	int fd = socket(local->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)local, local_len) < 0 ||
	    connect(fd, (const struct sockaddr *)peer, peer_len) < 0 || flow_filter(fd, peer) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static void udp_deliver(struct worker *w, uint16_t port, const struct sockaddr_storage *peer,
			socklen_t peer_len, const struct sockaddr_storage *local,
			socklen_t local_len, uint8_t *d, uint32_t len, unsigned depth);

/*
 * A new flow's socket sat in the port's reuseport group, bound and not yet
 * connected, for a moment: the kernel may have put other sources' datagrams in
 * its queue then. What its queue holds now goes where it belongs (a few
 * datagrams at most; deeper than UDP_STRAY_DEPTH new flows, they are dropped).
 */
#define UDP_STRAY_DEPTH 4
static void flow_strays(struct worker *w, struct conn *p, const struct sockaddr_storage *local,
			socklen_t local_len, unsigned depth)
{
	for (int i = 0; i < UDP_BATCH && p->kind == CK_PLAIN && !p->closing; i++) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		uint8_t a16[16];
		ssize_t n = recvfrom(p->fd, w->udp_buf + 4, LINK_UDP_MAX + 1,
				     MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &fl);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			continue;
		}
		if (n == 0 || n > LINK_UDP_MAX) {
			drop(w, UDP_DROP_OVERSIZE);
			continue;
		}
		if (sock_addr16(&from, a16) == p->bind.origin_port &&
		    !memcmp(a16, p->bind.origin_addr, 16))
			udp_input(w, p, w->udp_buf + 4, (uint32_t)n);
		else if (depth < UDP_STRAY_DEPTH && fw_pass(w, a16))
			udp_deliver(w, p->port, &from, fl, local, local_len, w->udp_buf + 4,
				    (uint32_t)n, depth + 1);
		else
			drop(w, UDP_DROP_QUEUE);
	}
}

/* A datagram from peer to port at its tunnel's home (this worker). */
static void udp_deliver(struct worker *w, uint16_t port, const struct sockaddr_storage *peer,
			socklen_t peer_len, const struct sockaddr_storage *local,
			socklen_t local_len, uint8_t *d, uint32_t len, unsigned depth)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct tunnel *t = ops->port_route(ops->arg, port);
	uint8_t a16[16];
	uint16_t sport = sock_addr16(peer, a16);
	struct conn *p;
	int fd;

	if (!t || atomic_load(&t->home) != w->id || w->stopping) {
		drop(w, UDP_DROP_OFFLINE);
		return;
	}
	p = udp_flow_find(w, port, a16, sport);
	if (p) {
		udp_input(w, p, d, len);
		return;
	}
	if ((unsigned)atomic_fetch_add(&t->udp_flows, 1) >= w->live->udp_max_flows) {
		atomic_fetch_sub(&t->udp_flows, 1);
		drop(w, UDP_DROP_FLOWS);
		log_every(NLOG_WARN,
			  "tunnel %s, udp port %u: max_flows (%u) flows open, dropping a new "
			  "one's datagrams",
			  t->id, port, w->live->udp_max_flows);
		return;
	}
	fd = fds_left(w, 2) ? flow_socket(local, local_len, peer, peer_len) : -EMFILE;
	p = fd >= 0 ? conn_new(w, CK_PLAIN, fd) : NULL;
	if (!p) {
		atomic_fetch_sub(&t->udp_flows, 1);
		drop(w, UDP_DROP_OFFLINE);
		log_every(NLOG_WARN, "udp port %u: cannot open a flow: %s", port,
			  fd < 0 ? strerror(-fd) : "connection slab full");
		if (fd >= 0)
			close(fd);
		return;
	}
	p->udp = p->udp_counted = true;
	p->port = port;
	p->counted = true;
	p->last_io = w->now;
	p->idle_ms = 0; /* udp_tick's own timeout */
	memcpy(p->bind.origin_addr, a16, 16);
	p->bind.origin_port = sport;
	p->bind.dst_port = sock_addr16(local, p->bind.dst_addr);
	p->bind.flags = htons(LINK_BIND_UDP);
	udp_flow_insert(w, p);
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	atomic_fetch_add_explicit(&w->st_udp_flows, 1, memory_order_relaxed);
	p->state = PS_PENDING; /* queues the first datagram; relay_attach decides */
	udp_input(w, p, d, len);
	flow_strays(w, p, local, local_len, depth); /* d is copied: udp_buf is free */
	p->state = PS_BOUND;
	relay_attach(w, p, t);
	if (p->kind == CK_PLAIN && !p->closing) {
		if (p->state == PS_BOUND)
			return;
		plain_arm_recv(w, p); /* reads into its queue while it waits */
	}
}

void udp_closing(struct worker *w, struct conn *p)
{
	udp_flow_remove(w, p);
	if (p->udp_counted) { /* a flow of a tunnel's port (a public or a mesh one) */
		if (p->tun)
			atomic_fetch_sub(&p->tun->udp_flows, 1);
		atomic_fetch_sub_explicit(&w->st_udp_flows, 1, memory_order_relaxed);
		p->udp_counted = false;
	}
	pool_put(w, p->stash);
	p->stash = NULL;
	p->stash_len = 0;
}

void udp_adopt(struct worker *w, struct udp_handoff *h)
{
	atomic_fetch_sub_explicit(&h->from->udp_fwd, 1, memory_order_relaxed);
	udp_deliver(w, h->port, &h->peer, h->peer_len, &h->local, h->local_len, h->data + 4, h->len,
		    0);
	free(h);
}

void udp_handoff_failed(struct udp_handoff *h)
{
	atomic_fetch_sub_explicit(&h->from->udp_fwd, 1, memory_order_relaxed);
	drop(h->from, UDP_DROP_OFFLINE);
	free(h);
}

/* ---------- a port's sockets (every worker) ---------- */

void udp_arm_poll(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_armed || c->closing || w->stopping)
		return;
	sqe = get_sqe(w);
	io_uring_prep_poll_add(sqe, c->fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud_make(OP_POLL, conn_idx(w, c), c->gen));
	c->recv_armed = true;
	c->inflight++;
}

static void udp_forward(struct worker *w, int home, uint16_t port,
			const struct sockaddr_storage *peer, socklen_t peer_len,
			const struct sockaddr_storage *local, socklen_t local_len, const uint8_t *d,
			uint32_t len)
{
	struct udp_handoff *h;
	struct io_uring_sqe *sqe;

	if (atomic_load_explicit(&w->udp_fwd, memory_order_relaxed) >= UDP_FWD_MAX ||
	    !(h = malloc(sizeof(*h) + 4 + len))) {
		drop(w, UDP_DROP_QUEUE);
		return;
	}
	h->from = w;
	h->port = port;
	h->peer = *peer;
	h->peer_len = peer_len;
	h->local = *local;
	h->local_len = local_len;
	h->len = len;
	memcpy(h->data + 4, d, len);
	atomic_fetch_add_explicit(&w->udp_fwd, 1, memory_order_relaxed);
	sqe = get_sqe(w);
	io_uring_prep_msg_ring(sqe, w->e->ring_fds[home], 0,
			       (uint64_t)OP_MSG_UDP << 56 | (uint64_t)(uintptr_t)h, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)OP_SENT_UDP << 56 | (uint64_t)(uintptr_t)h);
}

void udp_on_poll(struct worker *w, struct conn *c, int res)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct sockaddr_storage local;
	socklen_t local_len = sizeof(local);
	bool have_local = false;

	c->recv_armed = false;
	if (res < 0) {
		if (res != -ECANCELED)
			log_every(NLOG_WARN, "udp port %u: poll: %s", c->port, strerror(-res));
		udp_arm_poll(w, c);
		return;
	}
	for (int i = 0; i < UDP_BATCH; i++) {
		struct sockaddr_storage peer;
		socklen_t peer_len = sizeof(peer);
		uint8_t a16[16];
		struct tunnel *t;
		ssize_t n;
		int home;

		n = recvfrom(c->fd, w->udp_buf + 4, LINK_UDP_MAX + 1, MSG_DONTWAIT | MSG_TRUNC,
			     (struct sockaddr *)&peer, &peer_len);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			continue; /* an ICMP error queued on the socket: the next one */
		}
		if (n == 0 || n > LINK_UDP_MAX) {
			drop(w, UDP_DROP_OVERSIZE);
			continue;
		}
		sock_addr16(&peer, a16);
		if (!fw_pass(w, a16))
			continue;
		t = ops->port_route(ops->arg, c->port);
		home = t ? atomic_load(&t->home) : -1;
		if (home < 0) {
			drop(w, UDP_DROP_OFFLINE);
			continue;
		}
		if (!have_local && getsockname(c->fd, (struct sockaddr *)&local, &local_len) < 0) {
			drop(w, UDP_DROP_OFFLINE);
			continue;
		}
		have_local = true;
		if (home == w->id)
			udp_deliver(w, c->port, &peer, peer_len, &local, local_len, w->udp_buf + 4,
				    (uint32_t)n, 0);
		else
			udp_forward(w, home, c->port, &peer, peer_len, &local, local_len,
				    w->udp_buf + 4, (uint32_t)n);
	}
	udp_arm_poll(w, c);
}

/* ---------- L -> P: chunks to datagrams ---------- */

int udp_pump(struct worker *w, struct conn *l, struct conn *p, size_t n)
{
	bool whole;
	int r;

	if (!p->udp_over && p->tx.tail + n > LINK_UDP_MAX)
		p->udp_over = true; /* read on and dropped */
	if (p->udp_over) {
		r = xprt_read(&l->x, w->scratch, n > w->bufsz ? w->bufsz : n);
	} else {
		if (!obuf_ensure(w, p))
			return -ENOMEM;
		r = xprt_read(&l->x, p->tx.p + p->tx.tail, n);
		if (r > 0)
			p->tx.tail += (uint32_t)r;
	}
	whole = r > 0 && (size_t)r == n; /* n is what is left of the chunk */
	if (!whole)
		return r;
	if (p->udp_over) {
		drop(w, UDP_DROP_OVERSIZE);
	} else if ((p->mo ? dial_udp_send(p, p->tx.p, p->tx.tail)
			  : send(p->fd, p->tx.p, p->tx.tail, MSG_DONTWAIT | MSG_NOSIGNAL)) >= 0) {
		atomic_fetch_add_explicit(&w->st_udp_out, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&w->st_out, p->tx.tail, memory_order_relaxed);
		p->rec_out += p->tx.tail;
		p->last_io = w->now;
	} else {
		drop(w, UDP_DROP_QUEUE); /* the socket's send queue is full, or ICMP said no */
	}
	p->udp_over = false;
	p->tx.tail = 0;
	obuf_maybe_release(w, p);
	return r;
}

/* ---------- idle flows ---------- */

bool udp_tick(struct worker *w, struct conn *p, uint64_t now)
{
	unsigned idle = w->live ? w->live->udp_idle_ms : w->e->cfg.udp_idle_ms;
	struct conn *l = conn_at(w, p->peer);

	if (!idle && w->e->cfg.role == ENGINE_CLIENT)
		idle = p->mo ? UDP_MAP_IDLE_MS : UDP_CLIENT_IDLE_MS;
	if (p->state == PS_PENDING)
		return false; /* pending_timeout */
	if (!idle || now - p->last_io <= idle)
		return true;
	if (l && !p->eof_in && !l->tx_done) {
		atomic_fetch_add_explicit(&w->st_udp_expired, 1, memory_order_relaxed);
		conn_reason(p, EC_IDLE_TIMEOUT);
		p->last_io = now; /* the other side answers EOF within another idle period */
		plain_send_eof(w, p, l);
		return true;
	}
	conn_reason(p, EC_IDLE_TIMEOUT);
	conn_close(w, p, true, "udp flow idle");
	return true;
}

/* ---------- client: a flow's local end ---------- */

bool udp_dial(struct worker *w, struct conn *l, const struct link_bind *b,
	      const struct engine_rule *rule)
{
	int fd = socket(rule->to.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct conn *p;

	if (fd >= 0 && connect(fd, (const struct sockaddr *)&rule->to, rule->to_len) < 0) {
		char a[SOCK_ADDR_STRLEN];

		sock_addr_str((const struct sockaddr *)&rule->to, a, sizeof(a));
		log_every(NLOG_WARN, "udp flow for port %u: cannot reach %s: %s", ntohs(b->port), a,
			  strerror(errno));
		close(fd);
		return false;
	}
	p = fd >= 0 ? conn_new(w, CK_PLAIN, fd) : NULL;
	if (!p) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	p->udp = true;
	p->rule = *rule;
	p->bind = *b;
	p->port = ntohs(b->port);
	p->peer = conn_idx(w, l);
	p->counted = true;
	p->connected = true;
	p->last_io = w->now;
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	l->peer = conn_idx(w, p);
	plain_arm_recv(w, p);
	return true;
}

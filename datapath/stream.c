// SPDX-License-Identifier: Apache-2.0
/*
 * Streams: the bytes between a plain connection (P: a public connection on
 * relayd, a local service connection in the client) and a data link (L).
 *
 * P -> L: a receive lands in a provided buffer whose headroom takes the
 * 4-byte chunk header; one xprt_write puts header + data on L's transport
 * (TLS records in L's send buffer, or plain bytes for kTLS) and the provided
 * buffer goes straight back to the ring. L -> P: received link bytes are fed
 * to the transport and plaintext is read straight into P's send buffer.
 *
 * A send buffer is taken from the pool only while it holds bytes, so an idle
 * stream holds none; a full send buffer stops the receive that feeds it,
 * which is how a slow reader pushes back through the link to the writer at
 * the other end. Each direction ends on its own (a zero-length chunk is a
 * half-close); a reset frame ends both. Also here: link handshakes and the
 * moment a link's transport may move into the kernel (link_settle).
 */
#include "dp.h"

#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------- sending ---------- */

void obuf_kick(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;

	/* a UDP flow's buffer holds a datagram being reassembled: udp_pump sends it */
	if (c->tx.inflight || c->tx.head == c->tx.tail || c->closing || c->udp)
		return;
	sqe = get_sqe(w);
	c->tx.inflight = c->tx.tail - c->tx.head;
	io_uring_prep_send(sqe, c->fd, c->tx.p + c->tx.head, c->tx.inflight, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_make(OP_SEND, conn_idx(w, c), c->gen));
	c->inflight++;
}

/* Free bytes in c's send buffer, compacting when nothing is in flight. */
uint32_t obuf_room(struct worker *w, struct conn *c)
{
	if (!c->tx.p)
		return w->txcap;
	if (!c->tx.inflight && c->tx.head) {
		memmove(c->tx.p, c->tx.p + c->tx.head, c->tx.tail - c->tx.head);
		c->tx.tail -= c->tx.head;
		c->tx.head = 0;
	}
	return w->txcap - c->tx.tail;
}

bool obuf_ensure(struct worker *w, struct conn *c)
{
	if (!c->tx.p) {
		c->tx.p = pool_get(w);
		c->tx.head = c->tx.tail = c->tx.inflight = 0;
	}
	return c->tx.p != NULL;
}

void obuf_maybe_release(struct worker *w, struct conn *c)
{
	if (c->tx.p && !c->tx.inflight && c->tx.head == c->tx.tail) {
		pool_put(w, c->tx.p);
		c->tx.p = NULL;
		c->tx.head = c->tx.tail = 0;
	}
}

static bool obuf_empty(const struct conn *c)
{
	return !c->tx.p || (!c->tx.inflight && c->tx.head == c->tx.tail);
}

int link_write(struct worker *w, struct conn *l, const void *buf, size_t len)
{
	struct xprt_out o;
	int r;

	if (!obuf_ensure(w, l))
		return -ENOMEM;
	if (obuf_room(w, l) < xprt_overhead(&l->x, len))
		return -ENOBUFS;
	o.p = l->tx.p;
	o.len = l->tx.tail;
	o.cap = w->txcap;
	r = xprt_write(&l->x, &o, buf, len);
	l->tx.tail = (uint32_t)o.len;
	return r;
}

int link_write_word(struct worker *w, struct conn *l, uint32_t word)
{
	uint8_t b[4];

	frame_put32(b, word);
	return link_write(w, l, b, 4);
}

bool link_send_reset(struct worker *w, struct conn *l)
{
	if (link_write_word(w, l, LINK_FRAME_RESET) < 0) {
		conn_close(w, l, false, "cannot send reset");
		return false;
	}
	l->tx_done = true;
	obuf_kick(w, l);
	return true;
}

/* ---------- arming ---------- */

void plain_arm_recv(struct worker *w, struct conn *p)
{
	struct conn *l = conn_at(w, p->peer);

	if (p->sk || p->pp) {
		socks_arm(w, p); /* relayd's SOCKS server: its handshake, or plain to plain */
		return;
	}
	if (p->http && p->state != PS_BOUND) {
		edge_rearm(w, p); /* no link yet: a head or a handshake still arrives */
		return;
	}
	if (p->udp && p->mo)
		return; /* a UDP port map's flow: its datagrams come from the map's socket */
	if (p->udp && p->state == PS_PENDING) {
		arm_recv(w, p); /* a UDP flow reads into its bounded queue while it waits */
		return;
	}
	if (p->mo && p->state != PS_BOUND) {
		if (p->state == PS_SOCKS)
			arm_recv(w, p); /* the client's SOCKS5 handshake */
		return;
	}
	if (!l || p->eof_in || l->tx_done || !p->connected)
		return;
	if (p->http) {
		edge_arm(w, p);
		return;
	}
	if (l->tx.p && obuf_room(w, l) < xprt_overhead(&l->x, w->bufsz + 4) + 64)
		return;
	arm_recv(w, p);
}

void link_arm_recv(struct worker *w, struct conn *l)
{
	struct conn *p;

	if (l->stash_len || l->pumping)
		return; /* link_pump arms it when it has taken all input */
	if (l->state == LS_STREAM && !l->rx_done) {
		p = conn_at(w, l->peer);
		if (p && (!p->connected || (p->tx.p && obuf_room(w, p) < w->bufsz)))
			return;
	}
	arm_recv(w, l);
}

/* ---------- the ends of a stream ---------- */

/* Both directions of l's stream ended: close its plain end, l goes idle. */
static void stream_maybe_done(struct worker *w, struct conn *l)
{
	struct conn *p;

	if (l->closing || l->state != LS_STREAM || !l->tx_done || !l->rx_done)
		return;
	p = conn_at(w, l->peer);
	if (p) {
		/*
		 * The link is free as soon as both directions ended on it (the
		 * peer may bind the next stream right behind our EOF); p
		 * finishes flushing on its own and then closes.
		 */
		p->peer = NONE;
		l->peer = NONE;
		p->linger = true;
		obuf_kick(w, p); /* its link no longer kicks it */
		plain_maybe_shut(p);
		if (!p->tx.inflight && p->tx.head == p->tx.tail &&
		    (!p->shut_wr_pending || p->shut_wr_done || !p->connected))
			conn_close(w, p, false, NULL);
	}
	link_make_idle(w, l);
}

/* The link ended this direction: pass the half-close on once p's bytes are out. */
void plain_maybe_shut(struct conn *p)
{
	if (p->shut_wr_pending && !p->shut_wr_done && p->connected && !p->tx.inflight &&
	    p->tx.head == p->tx.tail) {
		shutdown(p->fd, SHUT_WR);
		p->shut_wr_done = true;
	}
}

/* A plain end whose stream is over closes once its last bytes are out. */
static void plain_maybe_close(struct worker *w, struct conn *p)
{
	obuf_kick(w, p);
	plain_maybe_shut(p);
	if (p->linger && !p->tx.inflight && p->tx.head == p->tx.tail &&
	    (!p->shut_wr_pending || p->shut_wr_done || !p->connected))
		conn_close(w, p, false, NULL);
}

void plain_on_sent(struct worker *w, struct conn *p)
{
	struct conn *l = conn_at(w, p->peer);

	if (p->sk || p->pp) {
		socks_on_sent(w, p);
		return;
	}
	p->last_io = w->now;
	if (p->http && p->x.tls) {
		edge_settle(w, p);
		if (p->closing)
			return;
	}
	if (p->linger) {
		plain_maybe_close(w, p);
		return;
	}
	plain_maybe_shut(p);
	obuf_maybe_release(w, p);
	if (l) {
		stream_maybe_done(w, l);
		if (!l->closing && l->state == LS_STREAM && l->peer == conn_idx(w, p))
			link_pump(w, l);
	}
}

void link_on_sent(struct worker *w, struct conn *l)
{
	struct conn *p = conn_at(w, l->peer);

	if (l->close_after_send && l->tx.head == l->tx.tail) {
		xprt_shutdown(&l->x);
		conn_close(w, l, false, "closed after final message");
		return;
	}
	if (p && l->state == LS_STREAM)
		plain_arm_recv(w, p);
	obuf_maybe_release(w, l);
	link_settle(w, l);
}

void plain_send_eof(struct worker *w, struct conn *p, struct conn *l)
{
	p->eof_in = true;
	if (!l->tx_done) {
		if (link_write_word(w, l, LINK_FRAME_EOF) < 0) {
			conn_close(w, l, false, "cannot send end of stream");
			return;
		}
		l->tx_done = true;
		obuf_kick(w, l);
	}
	stream_maybe_done(w, l);
}

/* P -> L: a receive on a plain socket completed. */
void plain_on_recv(struct worker *w, struct conn *p, int res, unsigned flags)
{
	struct conn *l = conn_at(w, p->peer);
	uint8_t *b;

	if (p->http) {
		edge_on_recv(w, p, res, flags);
		return;
	}
	if (p->mo && p->state == PS_SOCKS) {
		dial_socks_recv(w, p, res, flags);
		return;
	}
	if (p->sk || p->pp) {
		socks_on_recv(w, p, res, flags);
		return;
	}
	if (p->udp) {
		udp_recv(w, p, res, flags);
		return;
	}

	p->recv_armed = false;
	if (res == -ENOBUFS) {
		p->rearm = true; /* retried after this batch */
		w->starved++;
		log_debug("w%d: provided buffers exhausted (plain)", w->id);
		return;
	}
	if (res <= 0 || !l) {
		if (flags & IORING_CQE_F_BUFFER)
			buf_recycle(w, flags >> IORING_CQE_BUFFER_SHIFT);
		if (!l) {
			conn_close(w, p, true, "no link");
			return;
		}
		if (res == 0) {
			plain_send_eof(w, p, l);
			return;
		}
		conn_close(w, p, true, strerror(-res));
		return;
	}
	p->last_io = w->now;
	b = buf_addr(w, flags >> IORING_CQE_BUFFER_SHIFT);
	frame_put32(b + HEADROOM - 4, (uint32_t)res);
	if (link_write(w, l, b + HEADROOM - 4, (size_t)res + 4) < 0) {
		buf_recycle(w, flags >> IORING_CQE_BUFFER_SHIFT);
		conn_close(w, l, false, "link send buffer overrun");
		return;
	}
	buf_recycle(w, flags >> IORING_CQE_BUFFER_SHIFT);
	atomic_fetch_add_explicit(&w->st_in, (uint64_t)res, memory_order_relaxed);
	p->rec_in += (uint64_t)res;
	if (l->sup) /* a supporter's link (supportd.c): what its stream carried */
		l->sup->down += (uint64_t)res;
	obuf_kick(w, l);
	plain_arm_recv(w, p);
}

/* ---------- closing one end ---------- */

void stream_link_closing(struct worker *w, struct conn *l)
{
	struct conn *p = conn_at(w, l->peer);

	if (p) {
		p->peer = NONE;
		conn_close(w, p, true, "link closed");
	}
}

void stream_plain_closing(struct worker *w, struct conn *p)
{
	struct conn *l = conn_at(w, p->peer);

	if (p->sk || p->pp) {
		socks_closing(w, p); /* its peer is a plain conn, or none */
		return;
	}
	if (!l)
		return;
	l->peer = NONE;
	if (!l->tx_done && !l->closing && !link_send_reset(w, l))
		return;
	if (!l->closing && l->tx_done && l->rx_done)
		link_make_idle(w, l);
	else if (!l->closing && !l->pumping)
		link_pump(w, l); /* discards the rest, even a stash */
}

/*
 * Closes a link that is not idle-listed once what it queued has been sent:
 * the final chunks and EOF of its last stream may still be waiting.
 */
void link_close_graceful(struct worker *w, struct conn *l, const char *why)
{
	if (l->state == LS_IDLE) {
		w->ops->idle_unlink(w, l);
		l->state = LS_STREAM;
	}
	if (l->tx.p && (l->tx.inflight || l->tx.head != l->tx.tail)) {
		log_debug("w%d: link fd %d closes after its last bytes: %s", w->id, l->fd, why);
		l->close_after_send = true;
		l->peer = NONE;
		obuf_kick(w, l);
		return;
	}
	xprt_shutdown(&l->x); /* a clean close: the peer reads close_notify */
	conn_close(w, l, false, why);
}

void link_make_idle(struct worker *w, struct conn *l)
{
	l->state = LS_IDLE;
	l->peer = NONE;
	l->tx_done = l->rx_done = false;
	frame_rx_init(&l->rx, w->ops->rx_bind);
	obuf_maybe_release(w, l);
	w->ops->link_idle(w, l);
}

/* ---------- the link receive path (L -> P) ---------- */

static void link_stash_rest(struct worker *w, struct conn *l)
{
	if (l->x.in_len == 0) {
		pool_put(w, l->stash);
		l->stash = NULL;
		l->stash_len = l->stash_off = 0;
		return;
	}
	if (l->stash && l->x.in >= l->stash && l->x.in < l->stash + w->txcap) {
		l->stash_off = (uint32_t)(l->x.in - l->stash);
		l->stash_len = (uint32_t)l->x.in_len;
		return;
	}
	if (!l->stash)
		l->stash = pool_get(w);
	if (!l->stash) {
		conn_close(w, l, false, "out of memory");
		return;
	}
	memcpy(l->stash, l->x.in, l->x.in_len);
	l->stash_off = 0;
	l->stash_len = (uint32_t)l->x.in_len;
}

/*
 * Reads what the transport holds: frames of the current stream into the
 * plain end's send buffer, until input runs out or the plain end is full.
 */
/*
 * Up to n bytes of l's stream to p through p's own TLS (edge termination):
 * read into the scratch buffer, encrypted into p's send buffer. The bytes read,
 * 0 or <0 from xprt_read, -ENOBUFS when p has no room, -ECONNRESET when p closed.
 */
static int pump_tls(struct worker *w, struct conn *l, struct conn *p, size_t n, uint32_t room)
{
	struct xprt_out o;
	int r;

	if (n > w->bufsz)
		n = w->bufsz;
	while (n && xprt_overhead(&p->x, n) > room)
		n /= 2;
	if (!n)
		return -ENOBUFS;
	r = xprt_read(&l->x, w->scratch, n);
	if (r <= 0)
		return r;
	if (p->http) {
		edge_response(w, p, w->scratch, (size_t)r);
		if (l->closing)
			return -ESHUTDOWN;
		if (p->closing) {
			frame_rx_body_done(&l->rx, (size_t)r);
			return -ECONNRESET;
		}
	}
	o.p = p->tx.p;
	o.len = p->tx.tail;
	o.cap = w->txcap;
	if (xprt_write(&p->x, &o, w->scratch, (size_t)r) < 0) {
		conn_close(w, p, true, "TLS write failed");
		frame_rx_body_done(&l->rx, (size_t)r);
		return -ECONNRESET;
	}
	p->tx.tail = (uint32_t)o.len;
	atomic_fetch_add_explicit(&w->st_out, (uint64_t)r, memory_order_relaxed);
	p->rec_out += (uint64_t)r;
	if (l->sup)
		l->sup->up += (uint64_t)r;
	return r;
}

void link_pump(struct worker *w, struct conn *l)
{
	struct conn *p;
	struct link_bind bind;
	char err[128];
	uint8_t *hdr;
	size_t n;
	int r, ev;

	if (l->stash_len)
		xprt_feed(&l->x, l->stash + l->stash_off, l->stash_len);
	l->pumping = true;
	for (;;) {
		p = conn_at(w, l->peer);
		if (frame_rx_in_body(&l->rx)) {
			if (l->state != LS_STREAM)
				goto bad_state;
			n = l->rx.body_left;
			if (p && !p->closing) {
				uint32_t room;

				if (!p->connected)
					break;
				if (p->udp) {
					r = udp_pump(w, l, p, n);
					if (r == -ENOMEM) {
						conn_close(w, l, false, "out of memory");
						return;
					}
					goto body_read;
				}
				if (!obuf_ensure(w, p)) {
					conn_close(w, l, false, "out of memory");
					return;
				}
				room = obuf_room(w, p);
				if (room == 0)
					break;
				if (p->x.tls) {
					/* the edge terminates p's TLS: the bytes go through it */
					r = pump_tls(w, l, p, n, room);
					if (r == -ESHUTDOWN)
						return; /* l closed under it */
					if (r == -ENOBUFS)
						break;
					if (r == -ECONNRESET)
						continue; /* p closed: the rest is discarded */
				} else {
					if (n > room)
						n = room;
					r = xprt_read(&l->x, p->tx.p + p->tx.tail, n);
					if (r > 0) {
						p->tx.tail += (uint32_t)r;
						atomic_fetch_add_explicit(&w->st_out, (uint64_t)r,
									  memory_order_relaxed);
						p->rec_out += (uint64_t)r;
						if (l->sup)
							l->sup->up += (uint64_t)r;
						if (p->http) {
							edge_response(w, p,
								      p->tx.p + p->tx.tail - r,
								      (size_t)r);
							/* the client's held bytes went on: l may
							   have failed under them */
							if (l->closing)
								return;
						}
					}
				}
			} else {
				if (n > w->bufsz)
					n = w->bufsz;
				r = xprt_read(&l->x, w->scratch, n);
			}
		body_read:
			if (r == 0)
				break;
			if (r < 0)
				goto link_err;
			frame_rx_body_done(&l->rx, (size_t)r);
			continue;
		}
		hdr = frame_rx_hdr(&l->rx, &n);
		r = xprt_read(&l->x, hdr, n);
		if (r == 0)
			break;
		if (r < 0)
			goto link_err;
		ev = frame_rx_hdr_done(&l->rx, (size_t)r, &bind, err, sizeof(err));
		if (ev == FRAME_NEED)
			continue;
		if (ev < 0) {
			log_every(NLOG_WARN, "data link fd %d: %s, closing", l->fd, err);
			conn_close(w, l, false, err);
			return;
		}
		if (ev == FRAME_OPENED) {
			if (l->state != LS_OPENING || !w->ops->opened) {
				log_every(NLOG_WARN,
					  "data link fd %d: OPENED without an OPEN, closing",
					  l->fd);
				conn_close(w, l, false, "OPENED without an OPEN");
				return;
			}
			w->ops->opened(w, l);
			if (l->closing)
				return;
			continue;
		}
		if (ev == FRAME_BIND) {
			if (l->state != LS_IDLE) {
				log_every(NLOG_WARN, "data link fd %d: BIND while busy, closing",
					  l->fd);
				conn_close(w, l, false, "BIND while busy");
				return;
			}
			w->ops->bind(w, l, &bind);
			if (l->closing)
				return;
			continue;
		}
		if (ev == FRAME_OPEN) { /* frame_rx takes it only where the role set allow_open */
			if (l->state != LS_IDLE || !w->ops->open) {
				log_every(NLOG_WARN, "data link fd %d: OPEN while busy, closing",
					  l->fd);
				conn_close(w, l, false, "OPEN while busy");
				return;
			}
			w->ops->open(w, l);
			if (l->closing)
				return;
			continue;
		}
		if (l->state != LS_STREAM || l->rx_done)
			goto bad_state;
		if (ev == FRAME_DATA)
			continue;
		l->rx_done = true;
		if (ev == FRAME_EOF && p && p->udp) {
			/* a UDP flow ends both ways on EOF: this side answers it */
			plain_send_eof(w, p, l);
			if (l->closing)
				return;
			continue;
		}
		if (ev == FRAME_EOF) {
			if (p) {
				p->shut_wr_pending = true;
				plain_maybe_shut(p);
			}
		} else { /* FRAME_RESET */
			if (p) {
				p->peer = NONE;
				l->peer = NONE;
				conn_close(w, p, true, "reset by peer");
			}
			if (!l->tx_done && !link_send_reset(w, l))
				return;
		}
		stream_maybe_done(w, l);
		if (l->closing)
			return;
	}
	l->pumping = false;
	link_stash_rest(w, l);
	if (l->closing)
		return;
	p = conn_at(w, l->peer);
	if (p)
		obuf_kick(w, p);
	link_arm_recv(w, l);
	return;
bad_state:
	log_every(NLOG_WARN, "data link fd %d: data outside a stream, closing", l->fd);
	conn_close(w, l, false, "data outside a stream");
	return;
link_err:
	conn_close(w, l, false, r == -EPIPE ? "link closed by peer" : "link TLS error");
}

/* ---------- handshakes and the kernel switch ---------- */

void link_handshake(struct worker *w, struct conn *l)
{
	struct xprt_out o;
	char err[192];
	int r;

	if (!obuf_ensure(w, l)) {
		conn_close(w, l, false, "out of memory");
		return;
	}
	obuf_room(w, l); /* compacts */
	o.p = l->tx.p;
	o.len = l->tx.tail;
	o.cap = w->txcap;
	r = xprt_handshake(&l->x, &o, err, sizeof(err));
	l->tx.tail = (uint32_t)o.len;
	if (r < 0) {
		log_every(NLOG_WARN, "%s fd %d: %s", w->ops->link_name, l->fd, err);
		conn_close(w, l, false, err);
		return;
	}
	obuf_kick(w, l);
	if (r == XPRT_WANT) {
		arm_recv(w, l);
		return;
	}
	w->ops->handshake_done(w, l);
}

void link_settle(struct worker *w, struct conn *l)
{
	char err[192];
	int r;

	if (l->kind != CK_LINK || l->closing)
		return;
	if (xprt_mode(&l->x) == XPRT_TLS && l->state > LS_HANDSHAKE && !l->stash_len &&
	    !l->x.in_len) {
		/*
		 * A receive the kernel has already been given may hold ciphertext
		 * whose completion is not handled yet: RX waits for a moment
		 * when the only receive armed is still in our submission queue.
		 */
		bool in_quiet = !l->recv_armed || l->recv_epoch == w->sq_epoch;

		r = xprt_settle(&l->x, obuf_empty(l), in_quiet, err, sizeof(err));
		if (r < 0) {
			atomic_fetch_add(&w->st_ktls_fallback, 1);
			log_every(NLOG_WARN, "%s fd %d: %s, closing", w->ops->link_name, l->fd,
				  err);
			conn_close(w, l, false, err);
			return;
		}
		if (r & XPRT_EV_FALLBACK) {
			atomic_fetch_add(&w->st_ktls_fallback, 1);
			log_every(NLOG_WARN, "%s fd %d: %s; it goes on in userspace TLS",
				  w->ops->link_name, l->fd, err);
		}
	}
	/* a data link counts as kTLS once both directions are in the kernel */
	if (xprt_mode(&l->x) == XPRT_KTLS && l->counted && !l->ktls_counted) {
		l->ktls_counted = true;
		atomic_fetch_add(&w->st_ktls, 1);
	}
}

void link_on_recv(struct worker *w, struct conn *l, int res, unsigned flags)
{
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
	char why[160];

	l->recv_armed = false;
	if (res == -ENOBUFS) {
		l->rearm = true;
		w->starved++;
		log_debug("w%d: provided buffers exhausted (link)", w->id);
		return;
	}
	if (res <= 0) {
		if (flags & IORING_CQE_F_BUFFER)
			buf_recycle(w, bid);
		if (xprt_recv_error(&l->x, res, why, sizeof(why)) == XPRT_RX_PROTO)
			log_every(NLOG_WARN, "%s fd %d: %s, closing", w->ops->link_name, l->fd,
				  why);
		conn_close(w, l, false, why);
		return;
	}
	xprt_feed(&l->x, buf_addr(w, bid) + HEADROOM, (size_t)res);
	switch (l->state) {
	case LS_HANDSHAKE:
		link_handshake(w, l);
		break;
	case LS_FIRST:
	case LS_CONTROL:
		w->ops->link_input(w, l);
		break;
	default:
		if (l->stash_len) { /* cannot happen: recv is not armed with a stash */
			conn_close(w, l, false, "internal: stash");
			break;
		}
		link_pump(w, l);
		break;
	}
	xprt_feed(&l->x, NULL, 0);
	buf_recycle(w, bid);
	link_settle(w, l);
}

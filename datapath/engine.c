// SPDX-License-Identifier: Apache-2.0
/*
 * The relay engine: workers, rings, buffers, links and streams.
 *
 * Each worker is a pinned thread with its own io_uring, provided-buffer ring,
 * connection slab and pool of send buffers. A stream joins a plain socket
 * (P) with a data link (L). P -> L: a receive lands in a provided buffer
 * whose headroom takes the 4-byte chunk header, one xprt_write turns it into
 * TLS records in L's send buffer and the provided buffer goes straight back
 * to the ring. L -> P: a receive of TLS records is fed to the transport and
 * plaintext is read straight into P's send buffer. A send buffer is taken
 * from the pool only while it holds bytes, so an idle stream holds none; a
 * full send buffer stops the receive that feeds it, which is how a slow
 * reader pushes back through the link to the writer at the other end.
 *
 * user_data packs {op, generation, slot}; a completion for a slot reused
 * since is recognised by its generation and dropped.
 */
#include "engine.h"

#include "frame.h"
#include "log.h"
#include "msg.h"
#include "util.h"
#include "xprt.h"
#include "tls/tls.h"

#include <errno.h>
#include <jansson.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NONE		     UINT32_MAX
#define HEADROOM	     8
#define TICK_MS		     500
#define HANDSHAKE_TIMEOUT_MS 10000
#define PENDING_MAX	     4096
#define CONNECT_TIMEOUT_MS   5000
#define POOL_KEEP	     256

enum op {
	OP_ACCEPT = 1,
	OP_RECV,
	OP_SEND,
	OP_CONNECT,
	OP_MAILBOX,
	OP_TICK,
	OP_MSG_PUBLIC, /* from another worker: a public fd for a tunnel homed here */
	OP_MSG_LINK,   /* from another worker: a data link (struct handoff *) */
	OP_IGNORE,
	OP_SENT_PUBLIC, /* our MSG_RING of a public fd completed (fd in the low bits) */
	OP_SENT_LINK,	/* our MSG_RING of a handoff completed (pointer in the low bits) */
};

enum kind { CK_FREE, CK_LISTEN, CK_LINK, CK_PLAIN };
enum lstate { LS_CONNECT, LS_HANDSHAKE, LS_FIRST, LS_CONTROL, LS_IDLE, LS_STREAM };
/* plain conns: relayd queues a public connection until a data link is free */
enum pstate { PS_BOUND = 0, PS_PENDING = 1 };

struct obuf {
	uint8_t *p;
	uint32_t head, tail, inflight;
};

struct conn {
	uint32_t gen;
	uint8_t kind, state;
	bool recv_armed, closing, tx_done, rx_done, eof_in, shut_wr_pending, shut_wr_done;
	bool tunnel_listener, draining, close_after_send, connected, counted, rearm, pumping;
	bool linger;	  /* plain: stream over, close when flushed */
	bool src_counted; /* relay: counted in the worker's per-source table (public conns,
			     and tunnel-port conns until their first message) */
	int fd;
	uint16_t inflight;
	uint16_t port;
	uint32_t peer;
	uint32_t next, prev;
	struct tunnel *tun;
	struct obuf tx;
	/* link */
	struct xprt x;
	struct frame_rx rx;
	uint8_t *stash;
	uint32_t stash_off, stash_len;
	struct msg_reader *mr;
	uint8_t hello[sizeof(struct link_data_hello)];
	uint32_t hello_have;
	uint32_t stream_id;
	/* times */
	uint64_t deadline;
	uint64_t last_io; /* relay plain: the last byte received or sent (ms) */
	/* client: where a plain conn connects */
	struct engine_rule rule;
	struct link_bind bind;
};

/*
 * Open public connections per (tunnel, source address) on a relay worker: a
 * tunnel's public connections all live on its home worker, so the table
 * needs no lock. Linear probing with backward-shift deletion, at most half
 * full (it has twice as many slots as the worker has connection slots).
 */
struct src_slot {
	struct tunnel *tun; /* NULL: the tunnel port's handshakes */
	uint32_t count;	    /* 0: the slot is empty */
	uint32_t hash;
	uint8_t addr[16]; /* IPv4-mapped, or an IPv6 /64 prefix */
};

struct handoff {
	struct xprt x;
	int fd;
	struct tunnel *tun;
};

struct worker {
	struct engine *e;
	int id;
	pthread_t thread;
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	size_t br_size;
	uint8_t *bufs;
	unsigned nbufs, bufsz, slot;
	unsigned txcap;
	struct conn *conns;
	uint32_t nconns, free_head, high;
	void *pool;
	unsigned pool_n;
	uint8_t *scratch;
	int efd;
	uint64_t efd_val;
	pthread_mutex_t mb_lock;
	struct mb_msg *mb_head, *mb_tail;
	struct __kernel_timespec tick_ts;
	bool stopping;
	bool mb_init, ring_ok; /* what worker_init got to (worker_free undoes that much) */
	unsigned starved;
	uint64_t stop_deadline;
	uint32_t stream_seq;
	uint64_t now; /* ms, refreshed once per completion batch */
	struct src_slot *src;
	uint32_t src_mask;
	uint64_t src_seed;
	/* client session */
	bool session;
	char tunnel_id[LINK_ID_MAX];
	uint8_t secret[LINK_SECRET_LEN];
	unsigned links, idle, opening;
	unsigned pool_idle, max_links;
	uint64_t open_block_until;
	/* counters, read by other threads */
	_Atomic uint64_t st_conns, st_conns_total, st_in, st_out, st_links, st_idle;
	_Atomic uint64_t st_refused_src, st_idle_to, st_pend_to;
};

struct engine {
	struct engine_config cfg;
	unsigned n;
	struct worker *w;
	int *ring_fds;
};

static struct worker *worker_of(struct engine *e, int i)
{
	return &e->w[i];
}

/* ---------- user_data ---------- */

static inline uint64_t ud_make(enum op op, uint32_t idx, uint32_t gen)
{
	return (uint64_t)op << 56 | (uint64_t)(gen & 0xffffff) << 32 | idx;
}
static inline enum op ud_op(uint64_t ud)
{
	return (enum op)(ud >> 56);
}
static inline uint32_t ud_idx(uint64_t ud)
{
	return (uint32_t)ud;
}
static inline uint32_t ud_gen(uint64_t ud)
{
	return (uint32_t)(ud >> 32) & 0xffffff;
}

static struct io_uring_sqe *get_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe; /* never NULL after a submit of a full SQ */
}

/* ---------- pools ---------- */

static uint8_t *pool_get(struct worker *w)
{
	void *p = w->pool;

	if (p) {
		w->pool = *(void **)p;
		w->pool_n--;
		return p;
	}
	return malloc(w->txcap);
}

static void pool_put(struct worker *w, uint8_t *p)
{
	if (!p)
		return;
	if (w->pool_n >= POOL_KEEP) {
		free(p);
		return;
	}
	*(void **)p = w->pool;
	w->pool = p;
	w->pool_n++;
}

static inline uint8_t *buf_addr(struct worker *w, unsigned bid)
{
	return w->bufs + (size_t)bid * w->slot;
}

static void buf_recycle(struct worker *w, unsigned bid)
{
	io_uring_buf_ring_add(w->br, buf_addr(w, bid) + HEADROOM, w->bufsz, (unsigned short)bid,
			      io_uring_buf_ring_mask(w->nbufs), 0);
	io_uring_buf_ring_advance(w->br, 1);
}

/* ---------- slab ---------- */

static struct conn *conn_at(struct worker *w, uint32_t idx)
{
	return idx == NONE ? NULL : &w->conns[idx];
}

static uint32_t conn_idx(struct worker *w, struct conn *c)
{
	return (uint32_t)(c - w->conns);
}

static struct conn *conn_new(struct worker *w, enum kind k, int fd)
{
	struct conn *c;
	uint32_t gen;

	if (w->free_head != NONE) {
		c = &w->conns[w->free_head];
		w->free_head = c->next;
	} else if (w->high < w->nconns) {
		/* never-used slots are taken in order, so untouched pages stay unmapped */
		c = &w->conns[w->high];
	} else {
		return NULL;
	}
	gen = c->gen;
	memset(c, 0, sizeof(*c));
	c->gen = gen;
	c->kind = (uint8_t)k;
	c->fd = fd;
	c->peer = c->next = c->prev = NONE;
	if (conn_idx(w, c) + 1 > w->high)
		w->high = conn_idx(w, c) + 1;
	return c;
}

static void conn_release(struct worker *w, struct conn *c)
{
	c->kind = CK_FREE;
	c->gen = (c->gen + 1) & 0xffffff;
	c->next = w->free_head;
	w->free_head = conn_idx(w, c);
}

/* ---------- open connections per source (relay) ---------- */

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

static bool is_v4_mapped(const uint8_t a[16]);

/* The key of a source: IPv4 as it is, IPv6 cut to its /64 (one subscriber). */
static void src_key(const uint8_t origin[16], uint8_t key[16])
{
	memcpy(key, origin, 16);
	if (!is_v4_mapped(origin))
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

/* ---------- forward declarations ---------- */

static void conn_close(struct worker *w, struct conn *c, bool rst, const char *why);
static void link_pump(struct worker *w, struct conn *l);
static void link_make_idle(struct worker *w, struct conn *l);
static void plain_arm_recv(struct worker *w, struct conn *p);
static void link_arm_recv(struct worker *w, struct conn *l);
static void client_fill_pool(struct worker *w);
static void plain_maybe_close(struct worker *w, struct conn *p);
static void link_close_graceful(struct worker *w, struct conn *l, const char *why);
static void relay_bind(struct worker *w, struct conn *p, struct conn *l);

/* ---------- sending ---------- */

static void obuf_kick(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->tx.inflight || c->tx.head == c->tx.tail || c->closing)
		return;
	sqe = get_sqe(w);
	c->tx.inflight = c->tx.tail - c->tx.head;
	io_uring_prep_send(sqe, c->fd, c->tx.p + c->tx.head, c->tx.inflight, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_make(OP_SEND, conn_idx(w, c), c->gen));
	c->inflight++;
}

/* Free bytes in c's send buffer, compacting when nothing is in flight. */
static uint32_t obuf_room(struct worker *w, struct conn *c)
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

static bool obuf_ensure(struct worker *w, struct conn *c)
{
	if (!c->tx.p) {
		c->tx.p = pool_get(w);
		c->tx.head = c->tx.tail = c->tx.inflight = 0;
	}
	return c->tx.p != NULL;
}

static void obuf_maybe_release(struct worker *w, struct conn *c)
{
	if (c->tx.p && !c->tx.inflight && c->tx.head == c->tx.tail) {
		pool_put(w, c->tx.p);
		c->tx.p = NULL;
		c->tx.head = c->tx.tail = 0;
	}
}

/* Encrypts len bytes onto link l's send buffer; 0 or -errno. */
static int link_write(struct worker *w, struct conn *l, const void *buf, size_t len)
{
	int r;

	if (!obuf_ensure(w, l))
		return -ENOMEM;
	if (obuf_room(w, l) < xprt_overhead(len))
		return -ENOBUFS;
	l->x.out = l->tx.p;
	l->x.out_len = l->tx.tail;
	l->x.out_cap = w->txcap;
	r = xprt_write(&l->x, buf, len);
	l->tx.tail = (uint32_t)l->x.out_len;
	l->x.out = NULL;
	l->x.out_len = l->x.out_cap = 0;
	return r;
}

static int link_write_word(struct worker *w, struct conn *l, uint32_t word)
{
	uint8_t b[4];

	frame_put32(b, word);
	return link_write(w, l, b, 4);
}

/* ---------- arming ---------- */

static void arm_recv(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_armed || c->closing)
		return;
	sqe = get_sqe(w);
	/*
	 * A plain receive leaves 4 bytes for the chunk header so that header +
	 * data fill whole 16 KiB TLS records instead of spilling a tiny one.
	 */
	io_uring_prep_recv(sqe, c->fd, NULL, c->kind == CK_PLAIN ? w->bufsz - 4 : w->bufsz, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data64(sqe, ud_make(OP_RECV, conn_idx(w, c), c->gen));
	c->recv_armed = true;
	c->inflight++;
}

static void plain_arm_recv(struct worker *w, struct conn *p)
{
	struct conn *l = conn_at(w, p->peer);

	if (!l || p->eof_in || l->tx_done || !p->connected)
		return;
	if (l->tx.p && obuf_room(w, l) < xprt_overhead(w->bufsz + 4) + 64)
		return;
	arm_recv(w, p);
}

static void link_arm_recv(struct worker *w, struct conn *l)
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

static void arm_accept(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_multishot_accept(sqe, c->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_make(OP_ACCEPT, conn_idx(w, c), c->gen));
	c->inflight++;
}

/* ---------- closing ---------- */

static void conn_finalize(struct worker *w, struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	if (c->kind == CK_LINK) {
		xprt_free(&c->x);
		msg_reader_free(c->mr);
		free(c->mr);
		pool_put(w, c->stash);
		if (c->counted)
			atomic_fetch_sub(&w->st_links, 1);
	} else if (c->kind == CK_PLAIN && c->counted) {
		atomic_fetch_sub(&w->st_conns, 1);
	}
	pool_put(w, c->tx.p);
	conn_release(w, c);
}

static void idle_unlink(struct worker *w, struct conn *l)
{
	struct tunnel *t = l->tun;

	if (w->e->cfg.role == ENGINE_CLIENT) {
		w->idle--;
		atomic_fetch_sub(&w->st_idle, 1);
		return;
	}
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

static void pending_remove(struct worker *w, struct conn *p)
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
	t->pending--;
}

static void tunnel_offline(struct worker *w, struct tunnel *t, const char *why);

static void conn_close(struct worker *w, struct conn *c, bool rst, const char *why)
{
	struct conn *peer;

	if (c->closing || c->kind == CK_FREE)
		return;
	if (why)
		log_debug("w%d: closing %s fd %d: %s", w->id,
			  c->kind == CK_LINK	? "link"
			  : c->kind == CK_PLAIN ? "conn"
						: "listener",
			  c->fd, why);
	c->closing = true;
	if (c->src_counted) {
		/* public conns count per tunnel; tunnel-port handshakes under no tunnel */
		src_del(w, c->kind == CK_PLAIN ? c->tun : NULL, c->bind.origin_addr);
		c->src_counted = false;
	}
	if (c->kind == CK_LINK) {
		if (c->state == LS_IDLE)
			idle_unlink(w, c);
		if (c->state == LS_CONNECT ||
		    (w->e->cfg.role == ENGINE_CLIENT && (c->state == LS_HANDSHAKE)))
			w->opening--;
		if (w->e->cfg.role == ENGINE_CLIENT && c->state != LS_CONNECT &&
		    c->state != LS_HANDSHAKE)
			w->links--;
		if (c->tun && c->state != LS_CONTROL && c->state != LS_FIRST &&
		    c->state != LS_HANDSHAKE)
			atomic_fetch_sub(&c->tun->links, 1);
		if (c->state == LS_CONTROL && c->tun && c->tun->ctl_idx == conn_idx(w, c) &&
		    c->tun->ctl_gen == c->gen)
			tunnel_offline(w, c->tun, why ? why : "control link closed");
		peer = conn_at(w, c->peer);
		if (peer) {
			peer->peer = NONE;
			conn_close(w, peer, true, "link closed");
		}
	} else if (c->kind == CK_PLAIN) {
		if (c->state == PS_PENDING)
			pending_remove(w, c);
		peer = conn_at(w, c->peer);
		if (peer) {
			peer->peer = NONE;
			if (!peer->tx_done && !peer->closing) {
				if (link_write_word(w, peer, LINK_FRAME_RESET) < 0) {
					conn_close(w, peer, true, "cannot send reset");
				} else {
					peer->tx_done = true;
					obuf_kick(w, peer);
				}
			}
			if (!peer->closing && peer->tx_done && peer->rx_done)
				link_make_idle(w, peer);
			else if (!peer->closing && !peer->pumping)
				link_pump(w, peer); /* discards the rest, even a stash */
		}
	}
	c->peer = NONE;
	if (c->fd >= 0) {
		if (rst && c->kind == CK_PLAIN) {
			struct linger lg = {1, 0};

			setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		shutdown(c->fd, SHUT_RDWR);
		if (c->inflight) {
			struct io_uring_sqe *sqe = get_sqe(w);

			io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
		}
	}
	if (!c->inflight)
		conn_finalize(w, c);
}

/* A completion for c arrived: false when c is gone or going (caller returns). */
static bool conn_done_op(struct worker *w, struct conn *c)
{
	c->inflight--;
	if (c->closing) {
		if (!c->inflight)
			conn_finalize(w, c);
		return false;
	}
	return true;
}

/* ---------- streams ---------- */

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
		plain_maybe_close(w, p);
	}
	link_make_idle(w, l);
}

/* The link ended this direction: pass the half-close on once p's bytes are out. */
static void plain_maybe_shut(struct conn *p)
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
	obuf_kick(w, p); /* its link no longer kicks it */
	plain_maybe_shut(p);
	if (p->linger && !p->tx.inflight && p->tx.head == p->tx.tail &&
	    (!p->shut_wr_pending || p->shut_wr_done || !p->connected))
		conn_close(w, p, false, NULL);
}

static void plain_flush_done(struct worker *w, struct conn *p)
{
	struct conn *l = conn_at(w, p->peer);

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

/* P -> L: a receive on a plain socket completed. */
static void plain_on_recv(struct worker *w, struct conn *p, int res, unsigned flags)
{
	struct conn *l = conn_at(w, p->peer);
	uint8_t *b;

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
	obuf_kick(w, l);
	plain_arm_recv(w, p);
}

/* ---------- control links (relay) ---------- */

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
		ops->ctl_hello(ops->arg, w->id, conn_idx(w, l), l->gen, obj);
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

/* ---------- relay: tunnels, idle links, pending conns ---------- */

static void tunnel_offline(struct worker *w, struct tunnel *t, const char *why)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct conn *c;

	atomic_store(&t->home, -1);
	t->ctl_idx = NONE;
	while ((c = conn_at(w, t->idle_head)))
		link_close_graceful(w, c, "tunnel offline");
	while ((c = conn_at(w, t->pend_head))) {
		pending_remove(w, c);
		c->state = PS_BOUND;
		conn_close(w, c, true, "tunnel offline");
	}
	for (uint32_t i = 0; i < w->high; i++) {
		c = &w->conns[i];
		if (c->kind == CK_LINK && c->tun == t && c->state == LS_STREAM)
			c->draining = true;
	}
	log_every(NLOG_INFO, "tunnel %s offline: %s", t->id, why);
	ops->tunnel_offline(ops->arg, t, why);
}

/* A socket address as 16 bytes (v4-mapped for IPv4); returns its big-endian port. */
static uint16_t addr_to_wire(const struct sockaddr_storage *ss, uint8_t addr[16])
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		memset(addr, 0, 10);
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &s4->sin_addr, 4);
		return s4->sin_port;
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		memcpy(addr, &s6->sin6_addr, 16);
		return s6->sin6_port;
	}
	return 0;
}

static void relay_bind(struct worker *w, struct conn *p, struct conn *l)
{
	struct link_bind b = p->bind; /* addresses from relay_public */
	uint8_t frame[4 + sizeof(b)];

	frame_put32((uint8_t *)&b.stream_id, ++w->stream_seq);
	b.port = htons(p->port);
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
	obuf_kick(w, l);
	plain_arm_recv(w, p);
	link_arm_recv(w, l);
}

static void relay_public(struct worker *w, int fd, uint16_t port, struct tunnel *t)
{
	unsigned limit = w->e->cfg.max_conns_per_source;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct conn *p, *l;
	int one = 1;

	p = conn_new(w, CK_PLAIN, fd);
	if (!p) {
		log_every(NLOG_WARN, "w%d: connection slab full, refusing connection on port %u",
			  w->id, port);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	p->port = port;
	p->tun = t;
	p->counted = true;
	p->last_io = w->now;
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	/* the origin (and the address it reached) go in the BIND and the per-source count */
	p->bind.dst_port = htons(port);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		p->bind.origin_port = addr_to_wire(&ss, p->bind.origin_addr);
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		p->bind.dst_port = addr_to_wire(&ss, p->bind.dst_addr);
	if (limit && w->src) {
		p->src_counted = true;
		if (src_add(w, t, p->bind.origin_addr) > limit) {
			char a[INET6_ADDRSTRLEN];

			atomic_fetch_add(&w->st_refused_src, 1);
			if (is_v4_mapped(p->bind.origin_addr))
				inet_ntop(AF_INET, p->bind.origin_addr + 12, a, sizeof(a));
			else
				inet_ntop(AF_INET6, p->bind.origin_addr, a, sizeof(a));
			log_every(NLOG_WARN,
				  "tunnel %s, port %u: %s already holds max_conns_per_source (%u) "
				  "connections, resetting a new one",
				  t->id, port, a, limit);
			conn_close(w, p, true, NULL);
			return;
		}
	}
	l = conn_at(w, t->idle_head);
	if (l) {
		idle_unlink(w, l);
		relay_bind(w, p, l);
		return;
	}
	if (t->pending >= PENDING_MAX) {
		log_every(NLOG_WARN, "tunnel %s: %u connections wait for a data link, resetting",
			  t->id, PENDING_MAX);
		conn_close(w, p, true, "too many pending connections");
		return;
	}
	p->state = PS_PENDING;
	p->deadline = w->now + w->e->cfg.pending_timeout_ms;
	p->prev = t->pend_tail;
	p->next = NONE;
	if (t->pend_tail != NONE)
		w->conns[t->pend_tail].next = conn_idx(w, p);
	else
		t->pend_head = conn_idx(w, p);
	t->pend_tail = conn_idx(w, p);
	t->pending++;
}

/*
 * Closes a link that is not idle-listed once what it queued has been sent:
 * the final chunks and EOF of its last stream may still be waiting.
 */
static void link_close_graceful(struct worker *w, struct conn *l, const char *why)
{
	if (l->state == LS_IDLE) {
		idle_unlink(w, l);
		l->state = LS_STREAM;
	}
	if (l->tx.p && (l->tx.inflight || l->tx.head != l->tx.tail)) {
		log_debug("w%d: link fd %d closes after its last bytes: %s", w->id, l->fd, why);
		l->close_after_send = true;
		l->peer = NONE;
		obuf_kick(w, l);
		return;
	}
	conn_close(w, l, false, why);
}

static void link_make_idle(struct worker *w, struct conn *l)
{
	struct tunnel *t = l->tun;
	struct conn *p;

	l->state = LS_IDLE;
	l->peer = NONE;
	l->tx_done = l->rx_done = false;
	frame_rx_init(&l->rx, w->e->cfg.role == ENGINE_CLIENT);
	obuf_maybe_release(w, l);
	if (w->e->cfg.role == ENGINE_CLIENT) {
		/*
		 * Only relayd trims idle links (it alone binds streams to them,
		 * so closing one here could race with a BIND in flight).
		 */
		if (!w->session || l->draining) {
			l->state = LS_STREAM; /* not counted idle */
			link_close_graceful(w, l, "session ended");
			return;
		}
		w->idle++;
		atomic_fetch_add(&w->st_idle, 1);
		link_arm_recv(w, l);
		return;
	}
	if (l->draining || atomic_load(&t->home) != w->id) {
		l->state = LS_STREAM;
		link_close_graceful(w, l, "tunnel gone");
		return;
	}
	p = conn_at(w, t->pend_head);
	if (p) {
		pending_remove(w, p);
		p->state = PS_BOUND;
		relay_bind(w, p, l);
		return;
	}
	if (t->idle >= t->max_pool) {
		l->state = LS_STREAM;
		link_close_graceful(w, l, "idle pool full");
		return;
	}
	l->prev = NONE;
	l->next = t->idle_head;
	if (l->next != NONE)
		w->conns[l->next].prev = conn_idx(w, l);
	t->idle_head = conn_idx(w, l);
	t->idle++;
	atomic_fetch_add(&w->st_idle, 1);
	link_arm_recv(w, l);
}

/* A verified data link is now this worker's (the tunnel's home). */
static void relay_adopt_link(struct worker *w, struct handoff *h)
{
	struct conn *l = conn_new(w, CK_LINK, h->fd);

	if (!l) {
		log_every(NLOG_WARN, "w%d: connection slab full, dropping data link", w->id);
		xprt_free(&h->x);
		close(h->fd);
		atomic_fetch_sub(&h->tun->links, 1);
		free(h);
		return;
	}
	xprt_move(&l->x, &h->x);
	xprt_feed(&l->x, NULL, 0);
	l->tun = h->tun;
	l->counted = true;
	atomic_fetch_add(&w->st_links, 1);
	free(h);
	if (atomic_load(&l->tun->home) != w->id) {
		l->state = LS_STREAM;
		conn_close(w, l, false, "tunnel moved");
		return;
	}
	link_make_idle(w, l);
}

/*
 * A tunnel-port connection counts against its source until it has said
 * what it is (DATA_HELLO or HELLO): one address cannot hold every slot with
 * handshakes that never finish. false when the source is at its limit.
 */
static bool link_src_take(struct worker *w, struct conn *l)
{
	unsigned limit = w->e->cfg.max_conns_per_source;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (!limit || !w->src || getpeername(l->fd, (struct sockaddr *)&ss, &sl) < 0)
		return true;
	addr_to_wire(&ss, l->bind.origin_addr);
	l->src_counted = true;
	if (src_add(w, NULL, l->bind.origin_addr) <= limit)
		return true;
	atomic_fetch_add(&w->st_refused_src, 1);
	log_every(NLOG_WARN,
		  "tunnel port: a source already has max_conns_per_source (%u) unfinished "
		  "handshakes, closing a new one",
		  limit);
	return false;
}

static void link_src_done(struct worker *w, struct conn *l)
{
	if (l->src_counted) {
		src_del(w, NULL, l->bind.origin_addr);
		l->src_counted = false;
	}
}

/* First plaintext on a relay tunnel connection: DATA_HELLO or a control message. */
static void relay_first(struct worker *w, struct conn *l)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct link_data_hello *h = (struct link_data_hello *)l->hello;
	struct tunnel *t;
	char err[128];
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
			/* a control link: the 4 bytes are a message length */
			link_src_done(w, l);
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
	if (frame_hello_check(h, err, sizeof(err)) < 0) {
		log_every(NLOG_WARN, "data link fd %d: %s, closing", l->fd, err);
		conn_close(w, l, false, err);
		return;
	}
	t = ops->tunnel_find(ops->arg, h->tunnel_id);
	home = t ? atomic_load(&t->home) : -1;
	if (!t || home < 0 || !ct_equal(t->secret, h->secret, LINK_SECRET_LEN)) {
		log_every(NLOG_WARN,
			  "data link fd %d: unknown tunnel or bad link secret for %.31s, closing",
			  l->fd, h->tunnel_id);
		conn_close(w, l, false, "bad DATA_HELLO");
		return;
	}
	if (l->x.in_len || SSL_pending(l->x.ssl)) {
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
	l->deadline = 0;
	link_src_done(w, l);
	if (home == w->id) {
		l->tun = t;
		l->counted = true;
		atomic_fetch_add(&w->st_links, 1);
		link_make_idle(w, l);
		return;
	}
	/* hand the link to the tunnel's home worker */
	struct handoff *ho = malloc(sizeof(*ho));

	if (!ho || l->tx.inflight || l->recv_armed) {
		free(ho);
		atomic_fetch_sub(&t->links, 1);
		conn_close(w, l, false, "cannot hand off link");
		return;
	}
	xprt_move(&ho->x, &l->x);
	ho->fd = l->fd;
	ho->tun = t;
	l->fd = -1;
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_msg_ring(sqe, w->e->ring_fds[home], 0,
			       (uint64_t)OP_MSG_LINK << 56 | (uint64_t)(uintptr_t)ho, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)OP_SENT_LINK << 56 | (uint64_t)(uintptr_t)ho);
	pool_put(w, l->tx.p);
	l->tx.p = NULL;
	conn_finalize(w, l);
}

/* ---------- client: BIND and local connect ---------- */

static void client_on_bind(struct worker *w, struct conn *l, const struct link_bind *b)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct engine_rule rule;
	struct conn *p;
	struct io_uring_sqe *sqe, *lt;
	static struct __kernel_timespec cts = {.tv_sec = CONNECT_TIMEOUT_MS / 1000};
	uint16_t port = ntohs(b->port);
	int fd;

	idle_unlink(w, l);
	l->state = LS_STREAM;
	l->tx_done = l->rx_done = false;
	client_fill_pool(w);
	if (!ops->rule_find(ops->arg, port, &rule)) {
		log_every(NLOG_WARN, "stream for port %u: no rule, resetting", port);
		goto reset;
	}
	fd = socket(rule.to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	p = fd >= 0 ? conn_new(w, CK_PLAIN, fd) : NULL;
	if (!p) {
		if (fd >= 0)
			close(fd);
		goto reset;
	}
	p->rule = rule;
	p->bind = *b;
	p->port = port;
	p->peer = conn_idx(w, l);
	p->counted = true;
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	l->peer = conn_idx(w, p);
	sqe = get_sqe(w);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&p->rule.to, p->rule.to_len);
	io_uring_sqe_set_data64(sqe, ud_make(OP_CONNECT, conn_idx(w, p), p->gen));
	sqe->flags |= IOSQE_IO_LINK;
	p->inflight++;
	lt = get_sqe(w);
	io_uring_prep_link_timeout(lt, &cts, 0);
	io_uring_sqe_set_data64(lt, ud_make(OP_IGNORE, 0, 0));
	return;
reset:
	if (link_write_word(w, l, LINK_FRAME_RESET) < 0) {
		conn_close(w, l, false, "cannot send reset");
		return;
	}
	l->tx_done = true;
	obuf_kick(w, l);
}

static bool is_v4_mapped(const uint8_t a[16])
{
	static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	return !memcmp(a, pre, sizeof(pre));
}

/* Writes a PROXY protocol v1 or v2 header for a stream into out; returns its length. */
static size_t proxy_header(int version, const struct link_bind *b, uint8_t *out, size_t cap)
{
	bool v4 = is_v4_mapped(b->origin_addr) && is_v4_mapped(b->dst_addr);
	static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
	size_t n;

	if (version == 2) {
		memcpy(out, sig, sizeof(sig));
		out[12] = 0x21; /* v2, PROXY */
		out[13] = v4 ? 0x11 : 0x21;
		out[14] = 0;
		out[15] = v4 ? 12 : 36;
		if (v4) {
			memcpy(out + 16, b->origin_addr + 12, 4);
			memcpy(out + 20, b->dst_addr + 12, 4);
			memcpy(out + 24, &b->origin_port, 2);
			memcpy(out + 26, &b->dst_port, 2);
			return 28;
		}
		memcpy(out + 16, b->origin_addr, 16);
		memcpy(out + 32, b->dst_addr, 16);
		memcpy(out + 48, &b->origin_port, 2);
		memcpy(out + 50, &b->dst_port, 2);
		return 52;
	}
	if (v4) {
		inet_ntop(AF_INET, b->origin_addr + 12, src, sizeof(src));
		inet_ntop(AF_INET, b->dst_addr + 12, dst, sizeof(dst));
	} else {
		inet_ntop(AF_INET6, b->origin_addr, src, sizeof(src));
		inet_ntop(AF_INET6, b->dst_addr, dst, sizeof(dst));
	}
	n = (size_t)snprintf((char *)out, cap, "PROXY %s %s %s %u %u\r\n", v4 ? "TCP4" : "TCP6",
			     src, dst, ntohs(b->origin_port), ntohs(b->dst_port));
	return n < cap ? n : 0;
}

static void plain_on_connect(struct worker *w, struct conn *p, int res)
{
	struct conn *l = conn_at(w, p->peer);
	int one = 1;

	if (!l) {
		conn_close(w, p, true, "link gone");
		return;
	}
	if (res < 0) {
		char a[INET6_ADDRSTRLEN] = "?";

		if (p->rule.to.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&p->rule.to)->sin_addr, a,
				  sizeof(a));
		log_every(NLOG_WARN, "stream for port %u: connect to local service %s failed: %s",
			  p->port, a, strerror(-res));
		conn_close(w, p, true, "connect failed");
		return;
	}
	setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	p->connected = true;
	if (p->rule.proxy && obuf_ensure(w, p)) {
		p->tx.tail = (uint32_t)proxy_header(p->rule.proxy, &p->bind, p->tx.p, w->txcap);
		obuf_kick(w, p);
	}
	plain_maybe_shut(p);
	plain_arm_recv(w, p);
	link_pump(w, l);
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
static void link_pump(struct worker *w, struct conn *l)
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
				if (!obuf_ensure(w, p)) {
					conn_close(w, l, false, "out of memory");
					return;
				}
				room = obuf_room(w, p);
				if (room == 0)
					break;
				if (n > room)
					n = room;
				r = xprt_read(&l->x, p->tx.p + p->tx.tail, n);
				if (r > 0) {
					p->tx.tail += (uint32_t)r;
					atomic_fetch_add_explicit(&w->st_out, (uint64_t)r,
								  memory_order_relaxed);
				}
			} else {
				if (n > w->bufsz)
					n = w->bufsz;
				r = xprt_read(&l->x, w->scratch, n);
			}
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
		if (ev == FRAME_BIND) {
			if (l->state != LS_IDLE) {
				log_every(NLOG_WARN, "data link fd %d: BIND while busy, closing",
					  l->fd);
				conn_close(w, l, false, "BIND while busy");
				return;
			}
			client_on_bind(w, l, &bind);
			if (l->closing)
				return;
			continue;
		}
		if (l->state != LS_STREAM || l->rx_done)
			goto bad_state;
		if (ev == FRAME_DATA)
			continue;
		l->rx_done = true;
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
			if (!l->tx_done) {
				if (link_write_word(w, l, LINK_FRAME_RESET) < 0)
					goto link_err;
				l->tx_done = true;
				obuf_kick(w, l);
			}
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

/* ---------- handshakes ---------- */

static void link_handshake(struct worker *w, struct conn *l)
{
	char err[192];
	int r;

	if (!obuf_ensure(w, l)) {
		conn_close(w, l, false, "out of memory");
		return;
	}
	obuf_room(w, l);
	l->x.out = l->tx.p;
	l->x.out_len = l->tx.tail;
	l->x.out_cap = w->txcap;
	r = xprt_handshake(&l->x, err, sizeof(err));
	l->tx.tail = (uint32_t)l->x.out_len;
	l->x.out = NULL;
	l->x.out_len = l->x.out_cap = 0;
	if (r < 0) {
		log_every(NLOG_WARN, "%s fd %d: %s",
			  w->e->cfg.role == ENGINE_RELAY ? "tunnel connection" : "data link", l->fd,
			  err);
		conn_close(w, l, false, err);
		return;
	}
	obuf_kick(w, l);
	if (r == XPRT_WANT) {
		arm_recv(w, l);
		return;
	}
	if (w->e->cfg.role == ENGINE_RELAY) {
		l->state = LS_FIRST;
		relay_first(w, l);
		return;
	}
	/* client: send DATA_HELLO, then the link is idle */
	struct link_data_hello h;

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

static void link_on_recv(struct worker *w, struct conn *l, int res, unsigned flags)
{
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;

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
		conn_close(w, l, false, res == 0 ? "closed by peer" : strerror(-res));
		return;
	}
	xprt_feed(&l->x, buf_addr(w, bid) + HEADROOM, (size_t)res);
	switch (l->state) {
	case LS_HANDSHAKE:
		link_handshake(w, l);
		break;
	case LS_FIRST:
		relay_first(w, l);
		break;
	case LS_CONTROL:
		ctl_pump(w, l);
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
}

/* ---------- client: opening data links ---------- */

static bool client_open_link(struct worker *w)
{
	struct engine_config *cfg = &w->e->cfg;
	struct io_uring_sqe *sqe, *lt;
	static struct __kernel_timespec cts = {.tv_sec = CONNECT_TIMEOUT_MS / 1000};
	struct conn *l;
	SSL *ssl;
	int fd;

	fd = socket(cfg->server_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_every(NLOG_WARN, "data link: socket: %s", strerror(errno));
		return false;
	}
	l = conn_new(w, CK_LINK, fd);
	ssl = l ? SSL_new(cfg->ssl_ctx) : NULL;
	if (!ssl) {
		log_every(NLOG_WARN, "data link: out of connection slots or memory");
		if (l)
			conn_release(w, l);
		close(fd);
		return false;
	}
	xprt_attach(&l->x, ssl, false);
	tls_client_set_host(ssl, cfg->server_host);
	l->state = LS_CONNECT;
	l->deadline = now_ms() + HANDSHAKE_TIMEOUT_MS;
	w->opening++;
	sqe = get_sqe(w);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&cfg->server_addr, cfg->server_addr_len);
	io_uring_sqe_set_data64(sqe, ud_make(OP_CONNECT, conn_idx(w, l), l->gen));
	sqe->flags |= IOSQE_IO_LINK;
	l->inflight++;
	lt = get_sqe(w);
	io_uring_prep_link_timeout(lt, &cts, 0);
	io_uring_sqe_set_data64(lt, ud_make(OP_IGNORE, 0, 0));
	return true;
}

static void client_fill_pool(struct worker *w)
{
	if (!w->session || w->stopping || now_ms() < w->open_block_until)
		return;
	while (w->idle + w->opening < w->pool_idle && w->links + w->opening < w->max_links) {
		if (!client_open_link(w)) {
			w->open_block_until = now_ms() + 1000; /* retried on a later tick */
			break;
		}
	}
}

static void link_on_connect(struct worker *w, struct conn *l, int res)
{
	int one = 1;

	if (res < 0) {
		log_every(NLOG_WARN, "data link: connect to the server failed: %s", strerror(-res));
		w->open_block_until = now_ms() + 1000;
		conn_close(w, l, false, "connect failed");
		return;
	}
	setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	l->state = LS_HANDSHAKE;
	link_handshake(w, l);
}

/* ---------- accept ---------- */

static void on_accept(struct worker *w, struct conn *c, int res, unsigned flags)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	int one = 1;

	if (!(flags & IORING_CQE_F_MORE) && !c->closing && !w->stopping)
		arm_accept(w, c);
	if (res < 0) {
		if (res != -ECANCELED && res != -EINVAL)
			log_every(NLOG_WARN, "w%d: accept: %s", w->id, strerror(-res));
		return;
	}
	if (w->stopping) {
		close(res);
		return;
	}
	if (c->tunnel_listener) {
		struct conn *l = conn_new(w, CK_LINK, res);
		SSL *ssl = l ? SSL_new(w->e->cfg.ssl_ctx) : NULL;

		if (!ssl) {
			if (l)
				conn_release(w, l);
			close(res);
			return;
		}
		setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		xprt_attach(&l->x, ssl, true);
		l->state = LS_HANDSHAKE;
		l->deadline = now_ms() + HANDSHAKE_TIMEOUT_MS;
		if (!link_src_take(w, l)) {
			conn_close(w, l, false, "too many handshakes from one source");
			return;
		}
		arm_recv(w, l);
		return;
	}
	struct tunnel *t = ops->port_route(ops->arg, c->port);
	int home = t ? atomic_load(&t->home) : -1;

	if (home < 0) {
		log_debug("port %u: tunnel offline, refusing connection", c->port);
		struct linger lg = {1, 0};

		setsockopt(res, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(res);
		return;
	}
	if (home == w->id) {
		relay_public(w, res, c->port, t);
		return;
	}
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_msg_ring(sqe, w->e->ring_fds[home], c->port,
			       (uint64_t)OP_MSG_PUBLIC << 56 | (uint32_t)res, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)OP_SENT_PUBLIC << 56 | (uint32_t)res);
}

/* ---------- mailbox ---------- */

static void mb_arm(struct worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_read(sqe, w->efd, &w->efd_val, sizeof(w->efd_val), 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_MAILBOX, 0, 0));
}

static struct conn *conn_ref(struct worker *w, uint32_t idx, uint32_t gen)
{
	struct conn *c;

	if (idx >= w->nconns)
		return NULL;
	c = &w->conns[idx];
	return c->kind == CK_FREE || c->gen != gen || c->closing ? NULL : c;
}

static void mb_handle(struct worker *w, struct mb_msg *m)
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
		arm_accept(w, c);
		break;
	case MB_UNLISTEN:
		/* shut now: the port leaves the listening table; freed when the accept ends */
		for (uint32_t i = 0; i < w->high; i++) {
			c = &w->conns[i];
			if (c->kind == CK_LISTEN && !c->tunnel_listener && c->port == m->port)
				conn_close(w, c, false, "port released");
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
		m->tun->idle = m->tun->pending = 0;
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
	case MB_SESSION:
		w->session = true;
		memcpy(w->tunnel_id, m->tunnel_id, sizeof(w->tunnel_id));
		memcpy(w->secret, m->secret, sizeof(w->secret));
		w->open_block_until = 0;
		if (m->pool_idle)
			w->pool_idle = m->pool_idle;
		if (m->max_links)
			w->max_links = m->max_links;
		client_fill_pool(w);
		break;
	case MB_SESSION_END:
		w->session = false;
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
		break;
	case MB_STOP:
		w->stopping = true;
		w->stop_deadline = now_ms() + (m->len ? m->len : 5000);
		for (uint32_t i = 0; i < w->high; i++) {
			c = &w->conns[i];
			if (c->kind == CK_FREE || c->closing)
				continue;
			if (c->kind == CK_LISTEN)
				conn_close(w, c, false, "stopping");
			else if (c->kind == CK_LINK && c->state == LS_IDLE)
				link_close_graceful(w, c, "stopping");
			else if (c->kind == CK_LINK && c->state != LS_STREAM)
				conn_close(w, c, false, "stopping");
			else if (c->kind == CK_LINK)
				c->draining = true;
		}
		break;
	}
	free(m->data);
	free(m);
}

static void mb_drain(struct worker *w)
{
	struct mb_msg *m, *next;

	pthread_mutex_lock(&w->mb_lock);
	m = w->mb_head;
	w->mb_head = w->mb_tail = NULL;
	pthread_mutex_unlock(&w->mb_lock);
	for (; m; m = next) {
		next = m->next;
		mb_handle(w, m);
	}
}

int engine_post(struct engine *e, int worker, const struct mb_msg *src)
{
	unsigned from = worker < 0 ? 0 : (unsigned)worker;
	unsigned to = worker < 0 ? e->n : (unsigned)worker + 1;

	for (unsigned i = from; i < to; i++) {
		struct worker *w = worker_of(e, (int)i);
		struct mb_msg *m = malloc(sizeof(*m));
		uint64_t one = 1;

		if (!m)
			return -ENOMEM;
		*m = *src;
		m->next = NULL;
		if (src->data) {
			m->data = malloc(src->len);
			if (!m->data) {
				free(m);
				return -ENOMEM;
			}
			memcpy(m->data, src->data, src->len);
		}
		pthread_mutex_lock(&w->mb_lock);
		if (w->mb_tail)
			w->mb_tail->next = m;
		else
			w->mb_head = m;
		w->mb_tail = m;
		pthread_mutex_unlock(&w->mb_lock);
		if (write(w->efd, &one, sizeof(one)) < 0)
			return -errno;
	}
	return 0;
}

/* ---------- tick ---------- */

static void tick_arm(struct worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	w->tick_ts.tv_sec = 0;
	w->tick_ts.tv_nsec = TICK_MS * 1000000L;
	io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_TICK, 0, 0));
}

static void on_tick(struct worker *w)
{
	uint64_t now = now_ms();
	unsigned hb3 = 3 * w->e->cfg.heartbeat_ms;
	unsigned idle_ms = w->e->cfg.idle_timeout_ms;

	for (uint32_t i = 0; i < w->high; i++) {
		struct conn *c = &w->conns[i];

		if (c->kind == CK_FREE || c->closing)
			continue;
		if (c->rearm) { /* a receive that met an empty buffer ring */
			c->rearm = false;
			if (c->kind == CK_PLAIN)
				plain_arm_recv(w, c);
			else
				link_arm_recv(w, c);
			continue;
		}
		if (c->deadline && now > c->deadline) {
			if (c->kind == CK_PLAIN) {
				atomic_fetch_add(&w->st_pend_to, 1);
				log_every(NLOG_WARN,
					  "tunnel %s, port %u: no data link became free within "
					  "pending_timeout, resetting the connection",
					  c->tun ? c->tun->id : "-", c->port);
			} else {
				log_every(NLOG_WARN,
					  "fd %d: TLS handshake or first message timed out, "
					  "closing",
					  c->fd);
			}
			if (c->kind == CK_PLAIN && c->state == PS_PENDING) {
				pending_remove(w, c);
				c->state = PS_BOUND;
			}
			conn_close(w, c, true, "timeout");
			continue;
		}
		if (c->kind == CK_PLAIN && idle_ms && w->e->cfg.role == ENGINE_RELAY &&
		    c->state != PS_PENDING && now - c->last_io > idle_ms) {
			atomic_fetch_add(&w->st_idle_to, 1);
			log_every(NLOG_INFO,
				  "tunnel %s, port %u: no bytes either way for idle_timeout, "
				  "resetting the connection",
				  c->tun ? c->tun->id : "-", c->port);
			conn_close(w, c, true, "idle timeout");
			continue;
		}
		if (c->kind == CK_LINK && c->state == LS_CONTROL && c->tun && hb3 &&
		    now - c->tun->last_hb > hb3) {
			log_warn("tunnel %s: heartbeat lost (3 missed), closing control link",
				 c->tun->id);
			conn_close(w, c, false, "heartbeat lost");
		}
	}
	if (w->e->cfg.role == ENGINE_CLIENT)
		client_fill_pool(w);
	log_limit_flush();
}

/* ---------- the loop ---------- */

static void handle_cqe(struct worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum op op = ud_op(ud);
	struct conn *c;

	switch (op) {
	case OP_IGNORE:
		return;
	case OP_SENT_PUBLIC:
		if (cqe->res < 0) { /* the home worker never got it */
			log_warn("w%d: handing a connection over failed: %s", w->id,
				 strerror(-cqe->res));
			close((int)(uint32_t)ud);
		}
		return;
	case OP_SENT_LINK:
		if (cqe->res < 0) {
			struct handoff *h = (struct handoff *)(uintptr_t)(ud & ((1ull << 56) - 1));

			log_warn("w%d: handing a data link over failed: %s", w->id,
				 strerror(-cqe->res));
			xprt_free(&h->x);
			close(h->fd);
			atomic_fetch_sub(&h->tun->links, 1);
			free(h);
		}
		return;
	case OP_MAILBOX:
		mb_drain(w);
		mb_arm(w);
		return;
	case OP_TICK:
		on_tick(w);
		tick_arm(w);
		return;
	case OP_MSG_PUBLIC: {
		int fd = (int)(uint32_t)ud;
		struct engine_ops *ops = &w->e->cfg.ops;
		struct tunnel *t = ops->port_route(ops->arg, (uint16_t)cqe->res);

		if (!t || atomic_load(&t->home) != w->id || w->stopping) {
			close(fd);
			return;
		}
		relay_public(w, fd, (uint16_t)cqe->res, t);
		return;
	}
	case OP_MSG_LINK:
		relay_adopt_link(w, (struct handoff *)(uintptr_t)(ud & ((1ull << 56) - 1)));
		return;
	default:
		break;
	}
	if (ud_idx(ud) >= w->nconns)
		return;
	c = &w->conns[ud_idx(ud)];
	if (c->kind == CK_FREE || c->gen != ud_gen(ud)) {
		if (cqe->flags & IORING_CQE_F_BUFFER)
			buf_recycle(w, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		if (op == OP_ACCEPT && cqe->res >= 0)
			close(cqe->res);
		return;
	}
	if (op == OP_ACCEPT && (cqe->flags & IORING_CQE_F_MORE)) {
		if (c->closing) {
			if (cqe->res >= 0)
				close(cqe->res);
			return;
		}
		on_accept(w, c, cqe->res, cqe->flags);
		return;
	}
	if (!conn_done_op(w, c)) {
		if (cqe->flags & IORING_CQE_F_BUFFER)
			buf_recycle(w, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		if (op == OP_ACCEPT && cqe->res >= 0)
			close(cqe->res);
		return;
	}
	switch (op) {
	case OP_ACCEPT:
		on_accept(w, c, cqe->res, cqe->flags);
		break;
	case OP_RECV:
		if (c->kind == CK_PLAIN)
			plain_on_recv(w, c, cqe->res, cqe->flags);
		else
			link_on_recv(w, c, cqe->res, cqe->flags);
		break;
	case OP_SEND:
		if (cqe->res < 0) {
			c->tx.inflight = 0;
			conn_close(w, c, true, strerror(-cqe->res));
			break;
		}
		c->tx.head += (uint32_t)cqe->res;
		c->tx.inflight = 0;
		if (c->tx.head == c->tx.tail)
			c->tx.head = c->tx.tail = 0;
		obuf_kick(w, c);
		if (c->kind == CK_PLAIN) {
			c->last_io = w->now;
			plain_flush_done(w, c);
		} else {
			struct conn *p = conn_at(w, c->peer);

			if (c->close_after_send && c->tx.head == c->tx.tail) {
				conn_close(w, c, false, "closed after final message");
				break;
			}
			if (p && c->state == LS_STREAM)
				plain_arm_recv(w, p);
			obuf_maybe_release(w, c);
		}
		break;
	case OP_CONNECT:
		if (c->kind == CK_PLAIN)
			plain_on_connect(w, c, cqe->res);
		else
			link_on_connect(w, c, cqe->res);
		break;
	default:
		break;
	}
}

/* Receives that met an empty buffer ring go again once a batch recycled buffers. */
static void rearm_starved(struct worker *w)
{
	w->starved = 0;
	for (uint32_t i = 0; i < w->high; i++) {
		struct conn *c = &w->conns[i];

		if (c->kind == CK_FREE || c->closing || !c->rearm)
			continue;
		c->rearm = false;
		if (c->kind == CK_PLAIN)
			plain_arm_recv(w, c);
		else
			link_arm_recv(w, c);
	}
}

static bool worker_idle_for_stop(struct worker *w)
{
	for (uint32_t i = 0; i < w->high; i++)
		if (w->conns[i].kind != CK_FREE)
			return false;
	return true;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct io_uring_cqe *cqe;
	cpu_set_t set;
	/* liburing 2.3 declares io_uring_enable_rings() but does not export it */
	long r =
	    syscall(__NR_io_uring_register, w->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);

	if (r < 0) {
		log_error("w%d: cannot enable the io_uring: %s", w->id, strerror(errno));
		abort(); /* start-up only: nothing can run without the ring */
	}

	/*
	 * relayd pins one worker per CPU; the client's single worker floats, so
	 * it never sits on the same core as a pinned relayd worker or the
	 * services it feeds.
	 */
	if (w->e->cfg.role == ENGINE_RELAY) {
		CPU_ZERO(&set);
		CPU_SET((unsigned)w->id % (unsigned)sysconf(_SC_NPROCESSORS_ONLN), &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	mb_arm(w);
	tick_arm(w);
	for (;;) {
		unsigned head, n = 0;

		io_uring_submit_and_wait(&w->ring, 1);
		w->now = now_ms();
		io_uring_for_each_cqe(&w->ring, head, cqe)
		{
			handle_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
		if (w->starved)
			rearm_starved(w);
		if (w->stopping && (worker_idle_for_stop(w) || now_ms() > w->stop_deadline))
			break;
	}
	return NULL;
}

/* ---------- setup ---------- */

static int worker_init(struct engine *e, struct worker *w, int id, char *err, size_t errlen)
{
	struct io_uring_params p;
	struct io_uring_buf_reg reg;
	const struct engine_config *cfg = &e->cfg;
	int r;

	memset(&p, 0, sizeof(p));
	w->e = e;
	w->id = id;
	w->bufsz = cfg->buffer_size;
	w->nbufs = cfg->buffers;
	w->slot = w->bufsz + HEADROOM;
	w->txcap = 8 * w->bufsz < 65536 ? 65536 : 8 * w->bufsz;
	w->nconns = cfg->max_conns;
	w->pool_idle = cfg->pool_idle;
	w->max_links = cfg->max_links;
	pthread_mutex_init(&w->mb_lock, NULL);
	w->mb_init = true;
	/*
	 * One thread submits and reaps, so completions run only when the worker
	 * asks for them (DEFER_TASKRUN). The ring starts disabled and the worker
	 * thread enables it, which makes that thread its single issuer.
	 */
	p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
	p.cq_entries = 8192;
	p.flags |= IORING_SETUP_CQSIZE;
	r = io_uring_queue_init_params(2048, &w->ring, &p);
	if (r < 0) {
		snprintf(err, errlen, "io_uring_queue_init: %s", strerror(-r));
		return r;
	}
	w->ring_ok = true;
	w->br_size = w->nbufs * sizeof(struct io_uring_buf);
	w->br = mmap(NULL, w->br_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (w->br == MAP_FAILED) {
		w->br = NULL;
		snprintf(err, errlen, "mmap buffer ring: %s", strerror(errno));
		return -ENOMEM;
	}
	io_uring_buf_ring_init(w->br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uintptr_t)w->br;
	reg.ring_entries = w->nbufs;
	reg.bgid = 0;
	r = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (r < 0) {
		snprintf(err, errlen, "io_uring_register_buf_ring: %s", strerror(-r));
		return r;
	}
	w->bufs = malloc((size_t)w->nbufs * w->slot);
	w->scratch = malloc(w->bufsz);
	w->conns = calloc(w->nconns, sizeof(*w->conns));
	if (!w->bufs || !w->scratch || !w->conns) {
		snprintf(err, errlen, "out of memory for worker pools");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < w->nbufs; i++)
		io_uring_buf_ring_add(w->br, buf_addr(w, i) + HEADROOM, w->bufsz, (unsigned short)i,
				      io_uring_buf_ring_mask(w->nbufs), (int)i);
	io_uring_buf_ring_advance(w->br, (int)w->nbufs);
	w->free_head = NONE; /* calloc'd slots are CK_FREE; conn_new takes them lazily */
	w->efd = eventfd(0, EFD_CLOEXEC);
	if (w->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -errno;
	}
	w->now = now_ms();
	if (cfg->role == ENGINE_RELAY) {
		struct conn *c;

		if (cfg->max_conns_per_source) {
			/* twice the slots a worker has connections: never more than half full */
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
		}
		c = conn_new(w, CK_LISTEN, cfg->tunnel_fds[id]);
		c->tunnel_listener = true;
		arm_accept(w, c);
	}
	return 0;
}

int engine_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints, *res = NULL;
	char ps[8];
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	snprintf(ps, sizeof(ps), "%u", port);
	r = getaddrinfo(host, ps, &hints, &res);
	if (r != 0 || !res)
		return -EHOSTUNREACH;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void worker_free(struct worker *w);

/* A failed start: threads that run are stopped, everything made so far freed. */
static void engine_unwind(struct engine *e, unsigned initialised, unsigned running)
{
	struct mb_msg m;

	memset(&m, 0, sizeof(m));
	m.type = MB_STOP;
	for (unsigned i = 0; i < running; i++)
		engine_post(e, (int)i, &m);
	for (unsigned i = 0; i < running; i++)
		pthread_join(e->w[i].thread, NULL);
	/* a worker adopts its tunnel listener as its last step of worker_init */
	for (unsigned i = initialised; e->cfg.role == ENGINE_RELAY && i < e->n; i++)
		close(e->cfg.tunnel_fds[i]);
	for (unsigned i = 0; e->w && i < e->n; i++)
		worker_free(&e->w[i]);
	free(e->w);
	free(e->ring_fds);
	free(e);
}

int engine_start(struct engine **out, const struct engine_config *cfg, char *err, size_t errlen)
{
	struct engine *e = calloc(1, sizeof(*e));
	unsigned n = cfg->workers ? cfg->workers : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);

	if (n > ENGINE_MAX_WORKERS)
		n = ENGINE_MAX_WORKERS;
	struct rlimit rl;
	unsigned i;
	int r;

	if (!e) {
		for (i = 0; cfg->role == ENGINE_RELAY && i < n; i++)
			close(cfg->tunnel_fds[i]);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* every relayed connection is two descriptors: take what the hard limit allows */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	e->cfg = *cfg;
	e->n = n;
	if (xprt_global_init() < 0) {
		snprintf(err, errlen, "TLS transport init failed");
		engine_unwind(e, 0, 0);
		return -ENOMEM;
	}
	if (!e->cfg.max_conns)
		e->cfg.max_conns = 65536;
	e->w = calloc(n, sizeof(*e->w));
	e->ring_fds = calloc(n, sizeof(int));
	if (!e->w || !e->ring_fds) {
		snprintf(err, errlen, "out of memory");
		engine_unwind(e, 0, 0);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++)
		e->w[i].efd = -1;
	for (i = 0; i < n; i++) {
		r = worker_init(e, &e->w[i], (int)i, err, errlen);
		if (r < 0) {
			engine_unwind(e, i, 0);
			return r;
		}
		e->ring_fds[i] = e->w[i].ring.ring_fd;
	}
	for (i = 0; i < n; i++) {
		r = pthread_create(&e->w[i].thread, NULL, worker_main, &e->w[i]);
		if (r) {
			snprintf(err, errlen, "pthread_create: %s", strerror(r));
			engine_unwind(e, n, i);
			return -r;
		}
	}
	*out = e;
	return 0;
}

unsigned engine_workers(const struct engine *e)
{
	return e->n;
}

void engine_stats(struct engine *e, struct engine_stats *s)
{
	memset(s, 0, sizeof(*s));
	for (unsigned i = 0; i < e->n; i++) {
		struct worker *w = &e->w[i];

		s->conns += atomic_load_explicit(&w->st_conns, memory_order_relaxed);
		s->conns_total += atomic_load_explicit(&w->st_conns_total, memory_order_relaxed);
		s->bytes_in += atomic_load_explicit(&w->st_in, memory_order_relaxed);
		s->bytes_out += atomic_load_explicit(&w->st_out, memory_order_relaxed);
		s->links += atomic_load_explicit(&w->st_links, memory_order_relaxed);
		s->idle_links += atomic_load_explicit(&w->st_idle, memory_order_relaxed);
		s->refused_per_source +=
		    atomic_load_explicit(&w->st_refused_src, memory_order_relaxed);
		s->idle_timeouts += atomic_load_explicit(&w->st_idle_to, memory_order_relaxed);
		s->pending_timeouts += atomic_load_explicit(&w->st_pend_to, memory_order_relaxed);
	}
	s->links_tls = s->links - s->links_ktls;
}

/* After the worker thread ended (or never started): everything it owned goes. */
static void worker_free(struct worker *w)
{
	struct mb_msg *m, *next;
	void *p;

	for (uint32_t i = 0; i < w->high; i++) {
		struct conn *c = &w->conns[i];

		if (c->kind == CK_FREE)
			continue;
		c->counted = false;
		conn_finalize(w, c);
	}
	while ((p = w->pool)) {
		w->pool = *(void **)p;
		free(p);
	}
	for (m = w->mb_head; m; m = next) {
		next = m->next;
		if (m->type == MB_LISTEN)
			close(m->fd);
		free(m->data);
		free(m);
	}
	if (w->ring_ok)
		io_uring_queue_exit(&w->ring);
	if (w->br)
		munmap(w->br, w->br_size);
	if (w->efd >= 0)
		close(w->efd);
	free(w->bufs);
	free(w->scratch);
	free(w->conns);
	free(w->src);
	if (w->mb_init)
		pthread_mutex_destroy(&w->mb_lock);
}

void engine_stop(struct engine *e, unsigned timeout_ms)
{
	struct mb_msg m;

	memset(&m, 0, sizeof(m));
	m.type = MB_STOP;
	m.len = timeout_ms;
	engine_post(e, -1, &m);
	for (unsigned i = 0; i < e->n; i++)
		pthread_join(e->w[i].thread, NULL);
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	for (unsigned i = 0; i < e->n; i++)
		worker_free(&e->w[i]);
	free(e->w);
	free(e->ring_fds);
	free(e);
}

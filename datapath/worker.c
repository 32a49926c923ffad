// SPDX-License-Identifier: Apache-2.0
/*
 * Workers: one pinned thread per CPU (one floating thread in the client),
 * each with its own io_uring, provided-buffer ring, connection slab and
 * pool of send buffers. This file runs them: setup, the completion loop and
 * its dispatch, the mailbox other threads post to, the tick, closing, and
 * engine start/stop/stats. What the bytes do is in stream.c; what a role
 * does is in relay.c and dial.c, reached through the role's ops table.
 *
 * user_data packs {op, generation, slot}; a completion for a slot reused
 * since is recognised by its generation and dropped.
 */
#include "dp.h"
#include "mesh.h"
#include "recring.h"
#include "resolve.h"

#include "routes.h"

#include "log.h"
#include "sock.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct io_uring_sqe *get_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe) {
		int r;

		w->sq_epoch++;
		w->n_sq_full++;
		r = io_uring_submit(&w->ring);
		if (r > 0)
			w->n_sqes += (unsigned)r;
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe; /* never NULL after a submit of a full SQ */
}

/* ---------- pools ---------- */

uint8_t *pool_get(struct worker *w)
{
	void *p = w->pool;

	if (p) {
		w->pool = *(void **)p;
		w->pool_n--;
		return p;
	}
	return malloc(w->txcap);
}

void pool_put(struct worker *w, uint8_t *p)
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

void buf_recycle(struct worker *w, unsigned bid)
{
	io_uring_buf_ring_add(w->br, buf_addr(w, bid) + HEADROOM, w->bufsz, (unsigned short)bid,
			      io_uring_buf_ring_mask(w->nbufs), 0);
	io_uring_buf_ring_advance(w->br, 1);
}

/* ---------- slab ---------- */

struct conn *conn_new(struct worker *w, enum kind k, int fd)
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
	c->x.fd = -1;
	c->peer = c->next = c->prev = NONE;
	c->idle_ms = w->live ? w->live->idle_timeout_ms : 0;
	c->rec_t0 = w->now;
	if (conn_idx(w, c) + 1 > w->high)
		w->high = conn_idx(w, c) + 1;
	atomic_fetch_add_explicit(&w->st_slots, 1, memory_order_relaxed);
	return c;
}

void conn_release(struct worker *w, struct conn *c)
{
	c->kind = CK_FREE;
	c->gen = (c->gen + 1) & 0xffffff;
	atomic_fetch_sub_explicit(&w->st_slots, 1, memory_order_relaxed);
	c->next = w->free_head;
	w->free_head = conn_idx(w, c);
}

struct conn *conn_ref(struct worker *w, uint32_t idx, uint32_t gen)
{
	struct conn *c;

	if (idx >= w->nconns)
		return NULL;
	c = &w->conns[idx];
	return c->kind == CK_FREE || c->gen != gen || c->closing ? NULL : c;
}

/* ---------- arming ---------- */

void arm_recv(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_armed || c->closing)
		return;
	sqe = get_sqe(w);
	/*
	 * A plain receive leaves 4 bytes for the chunk header so that header +
	 * data fill whole 16 KiB TLS records instead of spilling a tiny one.
	 */
	/* a UDP flow's receive says a datagram's true length (longer ones are dropped) */
	io_uring_prep_recv(sqe, c->fd, NULL, c->kind == CK_PLAIN ? w->bufsz - 4 : w->bufsz,
			   c->udp ? MSG_TRUNC : 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data64(sqe, ud_make(OP_RECV, conn_idx(w, c), c->gen));
	c->recv_armed = true;
	c->recv_epoch = w->sq_epoch;
	c->inflight++;
}

void arm_accept(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_multishot_accept(sqe, c->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_make(OP_ACCEPT, conn_idx(w, c), c->gen));
	c->inflight++;
}

void arm_connect(struct worker *w, struct conn *c, const struct sockaddr *sa, socklen_t len)
{
	static struct __kernel_timespec cts = {.tv_sec = CONNECT_TIMEOUT_MS / 1000};
	struct io_uring_sqe *sqe = get_sqe(w), *lt;

	io_uring_prep_connect(sqe, c->fd, sa, len);
	io_uring_sqe_set_data64(sqe, ud_make(OP_CONNECT, conn_idx(w, c), c->gen));
	sqe->flags |= IOSQE_IO_LINK;
	c->inflight++;
	lt = get_sqe(w);
	io_uring_prep_link_timeout(lt, &cts, 0);
	io_uring_sqe_set_data64(lt, ud_make(OP_IGNORE, 0, 0));
}

/* ---------- closing ---------- */

static const char *const close_names[EC_COUNT] = {
    [EC_NONE] = "done",
    [EC_DONE] = "done",
    [EC_RESET] = "reset",
    [EC_IDLE_TIMEOUT] = "idle_timeout",
    [EC_PENDING_TIMEOUT] = "pending_timeout",
    [EC_REFUSED] = "refused",
    [EC_ERROR] = "error",
    [EC_SHUTDOWN] = "shutdown",
};

const char *engine_close_name(unsigned reason)
{
	return reason < EC_COUNT ? close_names[reason] : "error";
}

/* what conn_close's arguments say about a relayed connection's end */
static uint8_t close_classify(bool rst, const char *why)
{
	static const char *const shutdown_why[] = {"stopping", "tunnel offline", "kicked",
						   "port released"};

	if (!why)
		return rst ? EC_RESET : EC_DONE;
	for (size_t i = 0; i < sizeof(shutdown_why) / sizeof(shutdown_why[0]); i++)
		if (!strcmp(why, shutdown_why[i]))
			return EC_SHUTDOWN;
	if (!strcmp(why, "firewall"))
		return EC_REFUSED;
	if (!rst)
		return EC_DONE;
	if (strstr(why, "reset") || strstr(why, "closed") || strstr(why, "Broken pipe") ||
	    strstr(why, "no link"))
		return EC_RESET;
	return EC_ERROR;
}

/* c (a relayed public connection) is gone: its record into the worker's ring */
static void conn_record(struct worker *w, struct conn *c)
{
	struct engine_record *r;
	struct timespec ts;
	uint64_t dur, wall;

	c->rec = false;
	if (!w->rec || !c->tun || !(r = rec_ring_reserve(w->rec)))
		return;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	wall = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	dur = w->now > c->rec_t0 ? w->now - c->rec_t0 : 0;
	memcpy(r->tunnel, c->tun->id, sizeof(r->tunnel));
	r->tunnel[sizeof(r->tunnel) - 1] = 0;
	r->host[0] = 0;
	r->kind = ER_TCP;
	if (c->http)
		r->kind = edge_record_host(c, r->host, sizeof(r->host));
	if (c->udp)
		r->kind = ER_UDP;
	if (c->mesh) {
		r->kind = ER_MESH;
		snprintf(r->host, sizeof(r->host), "%s", c->mesh_host ? c->mesh_host : "");
	}
	memcpy(r->src, c->bind.origin_addr, sizeof(r->src));
	r->src_port = ntohs(c->bind.origin_port);
	r->port = c->http ? ntohs(c->bind.dst_port) : c->port;
	r->reason = c->rec_reason ? c->rec_reason : EC_DONE;
	r->start_ms = wall > dur ? wall - dur : 0;
	r->duration_ms = dur;
	r->bytes_in = c->rec_in;
	r->bytes_out = c->rec_out;
	rec_ring_commit(w->rec);
}

void conn_finalize(struct worker *w, struct conn *c)
{
	if (c->kind == CK_PLAIN && c->rec)
		conn_record(w, c);
	if (c->fd >= 0)
		close(c->fd);
	if (c->kind == CK_LINK) {
		xprt_free(&c->x);
		msg_reader_free(c->mr);
		free(c->mr);
		free(c->sup);
		c->sup = NULL;
		if (c->counted)
			atomic_fetch_sub(&w->st_links, 1);
		if (c->ktls_counted)
			atomic_fetch_sub(&w->st_ktls, 1);
	} else if (c->kind == CK_PLAIN && c->counted) {
		atomic_fetch_sub(&w->st_conns, 1);
	}
	if (c->http) {
		xprt_free(&c->x); /* a terminated connection's TLS */
		edge_free(c);
	}
	if (c->mo)
		dial_mo_free(c);
	if (c->sk)
		socks_free(w, c);
	free(c->mesh_host);
	c->mesh_host = NULL;
	pool_put(w, c->stash); /* a link's, or a UDP flow's queue */
	c->stash = NULL;
	c->stash_len = 0;
	pool_put(w, c->tx.p);
	conn_release(w, c);
}

void conn_close(struct worker *w, struct conn *c, bool rst, const char *why)
{
	if (c->closing || c->kind == CK_FREE)
		return;
	if (why)
		log_debug("w%d: closing %s fd %d: %s", w->id,
			  c->kind == CK_LINK	? "link"
			  : c->kind == CK_PLAIN ? "conn"
						: "listener",
			  c->fd, why);
	c->closing = true;
	if (c->kind == CK_PLAIN && c->rec)
		conn_reason(c, close_classify(rst, why));
	if (c->kind != CK_LISTEN)
		w->ops->closing(w, c, why);
	if (c->kind == CK_LINK)
		stream_link_closing(w, c);
	else if (c->kind == CK_PLAIN)
		stream_plain_closing(w, c);
	c->peer = NONE;
	/* a UDP port map's flow: its fd is a dup of the map's socket, which goes on */
	if (c->fd >= 0 && !(c->kind == CK_PLAIN && c->udp && c->mo)) {
		/*
		 * Shutting down wakes what is in flight; a reset must not send a
		 * FIN first (the peer would read a clean end), so it shuts only
		 * the receive side and the close sends the RST (SO_LINGER 0).
		 */
		if (rst && c->kind == CK_PLAIN) {
			sock_rst_on_close(c->fd);
			shutdown(c->fd, SHUT_RD);
		} else {
			shutdown(c->fd, SHUT_RDWR);
		}
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

/* ---------- accept ---------- */

bool fds_left(struct worker *w, unsigned n)
{
	const struct engine *e = w->e;
	uint64_t used = 0;

	/* every connection of every worker (links in their handshake too) */
	for (unsigned i = 0; i < e->n; i++)
		used += atomic_load_explicit(&e->w[i].st_slots, memory_order_relaxed);
	return used + n <= e->fd_budget;
}

/* n connections reset at accept: out of descriptors (the budget, or the limit itself) */
static void fds_refused(struct worker *w, unsigned n)
{
	atomic_fetch_add(&w->st_refused_fds, n);
	log_every(NLOG_WARN,
		  "w%d: out of file descriptors (the open-file limit): resetting new "
		  "connections",
		  w->id);
}

/*
 * accept met the descriptor limit: the connections queued on c are taken with
 * the spare descriptor and reset at once (a peer is never left in the accept
 * queue). Returns false when none could be taken: accept waits for a tick.
 */
static bool accept_refuse(struct worker *w, struct conn *c)
{
	unsigned n = 0;

	if (w->spare_fd >= 0) {
		close(w->spare_fd);
		w->spare_fd = -1;
	}
	for (; n < 1024; n++) {
		struct pollfd pf = {.fd = c->fd, .events = POLLIN};
		int fd;

		if (poll(&pf, 1, 0) != 1 || !(pf.revents & POLLIN))
			break;
		fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			break;
		sock_rst_on_close(fd);
		close(fd);
	}
	w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fds_refused(w, n);
	return n > 0;
}

static void on_accept(struct worker *w, struct conn *c, int res, unsigned flags)
{
	if ((res == -EMFILE || res == -ENFILE) && !c->closing && !w->stopping) {
		if (!accept_refuse(w, c) && !(flags & IORING_CQE_F_MORE)) {
			c->accept_paused = true; /* nothing taken: not again at once */
			return;
		}
	}
	if (!(flags & IORING_CQE_F_MORE) && !c->closing && !w->stopping)
		arm_accept(w, c);
	if (res == -EMFILE || res == -ENFILE)
		return;
	if (res < 0) {
		if (res != -ECANCELED && res != -EINVAL)
			log_every(NLOG_WARN, "w%d: accept: %s", w->id, strerror(-res));
		return;
	}
	if (w->stopping) {
		close(res);
		return;
	}
	/*
	 * The budget keeps FD_RESERVE descriptors free, so accept itself seldom
	 * meets the limit (and the spare above stays a last resort): past it a new
	 * connection of any listener is reset at once.
	 */
	if (!fds_left(w, 1)) {
		sock_rst_on_close(res);
		close(res);
		fds_refused(w, 1);
		return;
	}
	w->ops->accept(w, c, res);
}

/* ---------- mailbox ---------- */

static void mb_arm(struct worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_read(sqe, w->efd, &w->efd_val, sizeof(w->efd_val), 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_MAILBOX, 0, 0));
}

/* Drain: listeners close, idle links close once flushed, busy links finish. */
static void mb_stop(struct worker *w, struct mb_msg *m)
{
	w->stopping = true;
	w->stop_deadline = now_ms() + (m->len ? m->len : 5000);
	for (uint32_t i = 0; i < w->high; i++) {
		struct conn *c = &w->conns[i];

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
		else if (c->kind == CK_PLAIN && c->sk && c->state != PS_BOUND)
			conn_close(w, c, true, "stopping"); /* a SOCKS handshake */
	}
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
		if (m->type == MB_STOP) {
			mb_stop(w, m);
		} else if (m->type == MB_LIVE) {
			engine_live_put(w->live);
			w->live = m->live;
		} else if (!w->ops->mailbox(w, m)) {
			log_warn("w%d: mailbox message %d is not for the %s role", w->id, m->type,
				 w->ops->name);
		}
		free(m->data);
		free(m);
	}
}

int engine_post(struct engine *e, int worker, const struct mb_msg *src)
{
	unsigned from = worker < 0 ? 0 : (unsigned)worker;
	unsigned to = worker < 0 ? e->n : (unsigned)worker + 1;

	for (unsigned i = from; i < to; i++) {
		struct worker *w = &e->w[i];
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

static void rearm(struct worker *w, struct conn *c)
{
	c->rearm = false;
	if (c->kind == CK_PLAIN)
		plain_arm_recv(w, c);
	else
		link_arm_recv(w, c);
}

static void on_tick(struct worker *w)
{
	uint64_t now = now_ms();

	for (uint32_t i = 0; i < w->high; i++) {
		struct conn *c = &w->conns[i];

		if (c->kind == CK_FREE || c->closing)
			continue;
		if (c->accept_paused && w->spare_fd < 0) /* taken by another thread */
			w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (c->accept_paused) { /* the descriptor limit, a tick ago */
			c->accept_paused = false;
			if (!w->stopping)
				arm_accept(w, c);
		} else if (c->rearm) /* a receive that met an empty buffer ring */
			rearm(w, c);
		else
			w->ops->tick_conn(w, c, now);
	}
	w->ops->tick(w);
	log_limit_flush();
	atomic_fetch_add_explicit(&w->st_ticks, 1, memory_order_relaxed);
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
	case OP_MAILBOX:
		mb_drain(w);
		mb_arm(w);
		return;
	case OP_TICK:
		on_tick(w);
		tick_arm(w);
		return;
	case OP_SENT_PUBLIC:
	case OP_SENT_LINK:
	case OP_MSG_PUBLIC:
	case OP_MSG_LINK:
	case OP_MSG_HTTP:
	case OP_SENT_HTTP:
	case OP_MSG_MESH:
	case OP_SENT_MESH:
	case OP_MSG_UDP:
	case OP_SENT_UDP:
		w->ops->ring_msg(w, op, ud, cqe->res);
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
		if (c->kind == CK_PLAIN)
			plain_on_sent(w, c);
		else
			link_on_sent(w, c);
		break;
	case OP_CONNECT:
		w->ops->connected(w, c, cqe->res);
		break;
	case OP_POLL:
		if (w->e->cfg.role == ENGINE_CLIENT)
			dial_udp_poll(w, c, cqe->res); /* a UDP port map's socket */
		else if (c->kind == CK_LISTEN && c->sk)
			socks_udp_poll(w, c, cqe->res); /* a UDP ASSOCIATE's relay socket */
		else
			udp_on_poll(w, c, cqe->res);
		break;
	default:
		break;
	}
}

/*
 * The ring's figures for engine_worker_stats: plain stores of what this
 * thread alone counts (a mov each on x86), and the kernel's count of
 * completions it dropped for a full CQ (never with IORING_FEAT_NODROP, bar
 * an allocation failure; counted all the same).
 */
static void ring_publish(struct worker *w)
{
	atomic_store_explicit(&w->st_sqes, w->n_sqes, memory_order_relaxed);
	atomic_store_explicit(&w->st_cqes, w->n_cqes, memory_order_relaxed);
	atomic_store_explicit(&w->st_waits, w->n_waits, memory_order_relaxed);
	atomic_store_explicit(&w->st_sq_full, w->n_sq_full, memory_order_relaxed);
	atomic_store_explicit(&w->st_nobufs, w->n_nobufs, memory_order_relaxed);
	atomic_store_explicit(&w->st_cq_overflow, IO_URING_READ_ONCE(*w->ring.cq.koverflow),
			      memory_order_relaxed);
}

/* Receives that met an empty buffer ring go again once a batch recycled buffers. */
static void rearm_starved(struct worker *w)
{
	w->n_nobufs += w->starved;
	w->starved = 0;
	for (uint32_t i = 0; i < w->high; i++) {
		struct conn *c = &w->conns[i];

		if (c->kind != CK_FREE && !c->closing && c->rearm)
			rearm(w, c);
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
	char name[16];
	/* liburing 2.3 declares io_uring_enable_rings() but does not export it */
	long r =
	    syscall(__NR_io_uring_register, w->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);

	/* top -H, ps -L and the watchdog test tell the threads apart by name */
	snprintf(name, sizeof(name), "worker%d", w->id);
	pthread_setname_np(pthread_self(), name);

	if (r < 0) {
		log_error("w%d: cannot enable the io_uring: %s", w->id, strerror(errno));
		abort(); /* start-up only: nothing can run without the ring */
	}
	/*
	 * relayd pins one worker per CPU; the client's single worker floats, so
	 * it never sits on the same core as a pinned relayd worker or the
	 * services it feeds.
	 */
	if (w->ops->pin) {
		CPU_ZERO(&set);
		CPU_SET((unsigned)w->id % (unsigned)sysconf(_SC_NPROCESSORS_ONLN), &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	mb_arm(w);
	tick_arm(w);
	for (;;) {
		unsigned head, n = 0;
		int sub;

		w->sq_epoch++;
		sub = io_uring_submit_and_wait(&w->ring, 1);
		if (sub > 0)
			w->n_sqes += (unsigned)sub;
		w->now = now_ms();
		io_uring_for_each_cqe(&w->ring, head, cqe)
		{
			handle_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
		if (w->starved)
			rearm_starved(w);
		w->n_cqes += n;
		w->n_waits++;
		ring_publish(w);
		if (w->stopping && (worker_idle_for_stop(w) || now_ms() > w->stop_deadline))
			break;
	}
	return NULL;
}

/* ---------- setup ---------- */

static struct engine_live *engine_live_new(const struct engine_config *cfg, unsigned refs);

static int worker_init(struct engine *e, struct worker *w, int id, char *err, size_t errlen)
{
	struct io_uring_params p;
	struct io_uring_buf_reg reg;
	const struct engine_config *cfg = &e->cfg;
	int r;

	memset(&p, 0, sizeof(p));
	w->e = e;
	w->ops = e->ops;
	w->id = id;
	w->bufsz = cfg->buffer_size;
	w->nbufs = cfg->buffers;
	w->slot = w->bufsz + HEADROOM;
	w->txcap = 8 * w->bufsz < 65536 ? 65536 : 8 * w->bufsz;
	w->nconns = cfg->max_conns;
	w->pool_idle = cfg->pool_idle;
	w->max_links = cfg->max_links;
	if (cfg->role == ENGINE_RELAY && !(w->live = engine_live_new(cfg, 1))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
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
	if (cfg->role == ENGINE_RELAY && !(w->rec = calloc(1, sizeof(*w->rec)))) {
		snprintf(err, errlen, "out of memory for the connection-record ring");
		return -ENOMEM;
	}
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
	w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	w->now = now_ms();
	return w->ops->init(w, err, errlen);
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
	/* a worker adopts its tunnel listener as the last step of worker_init */
	for (unsigned i = initialised; e->ops->listeners && i < e->n; i++)
		close(e->cfg.tunnel_fds[i]);
	edge_authq_stop(e);
	resolver_stop(e->res);
	e->res = NULL;
	for (unsigned i = 0; e->w && i < e->n; i++)
		worker_free(&e->w[i]);
	free(e->w);
	free(e->ring_fds);
	free(e);
}

int engine_start(struct engine **out, const struct engine_config *cfg, char *err, size_t errlen)
{
	const struct role_ops *ops = cfg->role == ENGINE_RELAY ? &relay_ops : &dial_ops;
	struct engine *e = calloc(1, sizeof(*e));
	unsigned n = cfg->workers ? cfg->workers : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	unsigned long fd_limit;
	unsigned i;
	int r;

	if (n > ENGINE_MAX_WORKERS)
		n = ENGINE_MAX_WORKERS;
	if (!e) {
		for (i = 0; ops->listeners && i < n; i++)
			close(cfg->tunnel_fds[i]);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* every relayed connection is two descriptors: take what the process may */
	fd_limit = fd_limit_raise();
	e->fd_budget = fd_limit > FD_RESERVE ? fd_limit - FD_RESERVE : 0;
	e->cfg = *cfg;
	e->ops = ops;
	pthread_mutex_init(&e->aq_lock, NULL);
	e->n = n;
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
		e->w[i].efd = e->w[i].spare_fd = -1;
	for (i = 0; i < n; i++) {
		r = worker_init(e, &e->w[i], (int)i, err, errlen);
		if (r < 0) {
			engine_unwind(e, i, 0);
			return r;
		}
		e->ring_fds[i] = e->w[i].ring.ring_fd;
	}
	/* before the workers: they may ask it from their first OPEN on */
	if (cfg->role == ENGINE_RELAY &&
	    !(e->res = resolver_start(e, cfg->dns_cache, err, errlen))) {
		engine_unwind(e, n, 0);
		return -ENOMEM;
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

/* The reloadable part of cfg as a table holding refs references; NULL when out of memory. */
static struct engine_live *engine_live_new(const struct engine_config *cfg, unsigned refs)
{
	struct engine_live *l = malloc(sizeof(*l) + cfg->ntrusted * sizeof(struct cidr));

	if (!l)
		return NULL;
	atomic_init(&l->refs, refs);
	l->idle_timeout_ms = cfg->idle_timeout_ms;
	l->pending_timeout_ms = cfg->pending_timeout_ms;
	l->max_conns_per_source = cfg->max_conns_per_source;
	l->header_timeout_ms = cfg->header_timeout_ms;
	l->keepalive_ms = cfg->keepalive_ms;
	l->udp_idle_ms = cfg->udp_idle_ms;
	l->udp_max_flows = cfg->udp_max_flows;
	l->udp_queue = cfg->udp_queue;
	l->max_head = cfg->max_head < ENGINE_HEAD_MAX ? cfg->max_head : ENGINE_HEAD_MAX;
	l->ntrusted = cfg->ntrusted;
	if (cfg->ntrusted)
		memcpy(l->trusted, cfg->trusted, cfg->ntrusted * sizeof(struct cidr));
	return l;
}

void engine_live_put(struct engine_live *l)
{
	if (l && atomic_fetch_sub(&l->refs, 1) == 1)
		free(l);
}

int engine_reconfigure(struct engine *e, const struct engine_config *cfg)
{
	struct engine_live *l;
	struct mb_msg m;

	if (e->cfg.role != ENGINE_RELAY)
		return 0;
	l = engine_live_new(cfg, e->n);
	if (!l)
		return -ENOMEM;
	memset(&m, 0, sizeof(m));
	m.type = MB_LIVE;
	m.live = l;
	return engine_post(e, -1, &m);
}

unsigned long engine_fd_budget(const struct engine *e)
{
	return e->fd_budget;
}

unsigned engine_workers(const struct engine *e)
{
	return e->n;
}

struct xprt_ctx *engine_xprt(const struct engine *e)
{
	return e->cfg.xprt;
}

bool engine_alive(struct engine *e, uint64_t now, uint64_t max_age_ms)
{
	bool alive = true;

	for (unsigned i = 0; i < e->n; i++) {
		struct worker *w = &e->w[i];
		uint64_t t = atomic_load_explicit(&w->st_ticks, memory_order_relaxed);

		if (t != w->ticks_seen || !w->ticks_at) {
			w->ticks_seen = t;
			w->ticks_at = now;
		}
		if (now - w->ticks_at > max_age_ms)
			alive = false;
	}
	return alive;
}

struct rec_ring *engine_rec_ring(struct engine *e, unsigned i)
{
	return i < e->n ? e->w[i].rec : NULL;
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
		s->udp_flows += atomic_load_explicit(&w->st_udp_flows, memory_order_relaxed);
		s->udp_expired += atomic_load_explicit(&w->st_udp_expired, memory_order_relaxed);
		s->udp_in += atomic_load_explicit(&w->st_udp_in, memory_order_relaxed);
		s->udp_out += atomic_load_explicit(&w->st_udp_out, memory_order_relaxed);
		for (int k = 0; k < 5; k++)
			s->udp_dropped[k] +=
			    atomic_load_explicit(&w->st_udp_drop[k], memory_order_relaxed);
		s->refused_max_links +=
		    atomic_load_explicit(&w->st_refused_links, memory_order_relaxed);
		s->refused_fd_limit +=
		    atomic_load_explicit(&w->st_refused_fds, memory_order_relaxed);
		s->links_ktls += atomic_load_explicit(&w->st_ktls, memory_order_relaxed);
		s->ktls_fallbacks +=
		    atomic_load_explicit(&w->st_ktls_fallback, memory_order_relaxed);
		if (w->rec)
			s->records_dropped += rec_ring_dropped(w->rec);
		s->firewall_refused +=
		    atomic_load_explicit(&w->st_fw_refused, memory_order_relaxed);
		s->http_requests += atomic_load_explicit(&w->st_http_req, memory_order_relaxed);
		s->http_tls_kernel += atomic_load_explicit(&w->st_http_ktls, memory_order_relaxed);
		for (unsigned k = 0; k < 8; k++)
			s->http_errors[k] +=
			    atomic_load_explicit(&w->st_http_err[k], memory_order_relaxed);
		s->mesh_opened += atomic_load_explicit(&w->st_mesh_opened, memory_order_relaxed);
		for (unsigned k = 0; k <= LINK_OPEN_STATUS_MAX; k++)
			s->mesh_refused[k] +=
			    atomic_load_explicit(&w->st_mesh_refused[k], memory_order_relaxed);
		s->mesh_denied_default +=
		    atomic_load_explicit(&w->st_mesh_denied_default, memory_order_relaxed);
		s->socks_conns += atomic_load_explicit(&w->st_socks_conns, memory_order_relaxed);
		for (unsigned k = 0; k < 5; k++)
			s->socks_refused[k] +=
			    atomic_load_explicit(&w->st_socks_refused[k], memory_order_relaxed);
	}
	if (e->res)
		resolver_counts(e->res, &s->dns_lookups, &s->dns_cache_hits, &s->dns_queue_full);
	/* per-worker counters move separately (a link handed over): never below zero */
	if (s->links_ktls > s->links)
		s->links_ktls = s->links;
	s->links_tls = s->links - s->links_ktls;
}

void engine_worker_stats(struct engine *e, unsigned i, struct engine_worker_stats *s)
{
	struct worker *w;

	memset(s, 0, sizeof(*s));
	if (i >= e->n)
		return;
	w = &e->w[i];
	s->sqes = atomic_load_explicit(&w->st_sqes, memory_order_relaxed);
	s->cqes = atomic_load_explicit(&w->st_cqes, memory_order_relaxed);
	s->waits = atomic_load_explicit(&w->st_waits, memory_order_relaxed);
	s->sq_full = atomic_load_explicit(&w->st_sq_full, memory_order_relaxed);
	s->nobufs = atomic_load_explicit(&w->st_nobufs, memory_order_relaxed);
	s->cq_overflow = atomic_load_explicit(&w->st_cq_overflow, memory_order_relaxed);
	s->conns = atomic_load_explicit(&w->st_conns, memory_order_relaxed);
	s->conns_total = atomic_load_explicit(&w->st_conns_total, memory_order_relaxed);
	s->links = atomic_load_explicit(&w->st_links, memory_order_relaxed);
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
		c->counted = c->ktls_counted = c->rec = false;
		conn_finalize(w, c);
	}
	while ((p = w->pool)) {
		w->pool = *(void **)p;
		free(p);
	}
	for (m = w->mb_head; m; m = next) {
		next = m->next;
		if (m->type == MB_LISTEN || m->type == MB_MAP_LISTEN)
			close(m->fd);
		if (m->type == MB_FIREWALL)
			cidr_table_put(m->fw);
		if (m->type == MB_ROUTES || m->type == MB_CERTS)
			http_routes_put(m->routes);
		if (m->type == MB_LIVE)
			engine_live_put(m->live);
		if (m->type == MB_MESH)
			mesh_table_put(m->mesh);
		free(m->data);
		free(m);
	}
	if (w->ring_ok)
		io_uring_queue_exit(&w->ring);
	if (w->br)
		munmap(w->br, w->br_size);
	if (w->efd >= 0)
		close(w->efd);
	if (w->spare_fd >= 0)
		close(w->spare_fd);
	free(w->bufs);
	free(w->scratch);
	free(w->conns);
	free(w->rec);
	w->rec = NULL;
	free(w->src);
	cidr_table_put(w->fw);
	w->fw = NULL;
	http_routes_put(w->routes);
	w->routes = NULL;
	http_routes_put(w->certs);
	w->certs = NULL;
	free(w->hscratch);
	w->hscratch = NULL;
	free(w->udp_tab);
	w->udp_tab = NULL;
	free(w->udp_buf);
	w->udp_buf = NULL;
	free(w->socks);
	w->socks = NULL;
	engine_live_put(w->live);
	w->live = NULL;
	mesh_table_put(w->mesh);
	w->mesh = NULL;
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
	edge_authq_stop(e);
	resolver_stop(e->res); /* it posts to the workers' mailboxes: gone before they are freed */
	e->res = NULL;
	/*
	 * Relayed connections still open past the drain deadline: their records now,
	 * reason shutdown, while the control thread still reads the rings (this thread
	 * is their only producer once the workers ended). worker_free closes them.
	 */
	for (unsigned i = 0; i < e->n; i++) {
		struct worker *w = &e->w[i];

		for (uint32_t j = 0; w->conns && j < w->high; j++) {
			struct conn *c = &w->conns[j];

			if (c->kind != CK_PLAIN || !c->rec)
				continue;
			if (!c->rec_reason)
				c->rec_reason = EC_SHUTDOWN;
			conn_record(w, c);
		}
	}
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	edge_authq_stop(e);
	resolver_stop(e->res);
	e->res = NULL;
	for (unsigned i = 0; i < e->n; i++)
		worker_free(&e->w[i]);
	free(e->w);
	free(e->ring_fds);
	free(e);
}

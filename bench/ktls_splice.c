// SPDX-License-Identifier: Apache-2.0
/*
 * ktls_splice: is IORING_OP_SPLICE (socket -> pipe -> socket) faster than
 * the datapath's provided-buffer ring (RECV into a 64 KiB provided buffer,
 * memcpy into a send buffer, SEND) for bulk bytes on a kernel-TLS link?
 *
 * One run moves N bytes through one io_uring "worker" (the calling thread)
 * from a source socket to a destination socket, in one of two directions:
 *
 *   L2P  link -> public: feeder writes into kTLS TX socket A; the worker
 *        reads its peer B (kTLS RX, the kernel decrypts) and sends to the
 *        plain TCP socket P1; the receiver drains P2.
 *   P2L  public -> link: feeder writes into plain P1; the worker reads P2
 *        and sends to B (kTLS TX, the kernel encrypts); the receiver reads
 *        A (kTLS RX).
 *
 * A and B are a loopback TCP pair after a real TLS 1.3 handshake with
 * BoringSSL, keys installed on both ends with ktls_install (tls/ktls.h);
 * --no-ktls makes them a plain TCP pair (the mechanism's cost without
 * crypto). The mechanisms:
 *
 *   bufring  the datapath's way (datapath/worker.c, stream.c): a provided-
 *            buffer ring (mmap + io_uring_register_buf_ring, 64 x 64 KiB),
 *            one RECV with IOSQE_BUFFER_SELECT at a time, memcpy into a
 *            512 KiB send buffer, one SEND of everything pending at a time,
 *            the receive re-armed while the send buffer has 64 KiB of room.
 *   splice   one pipe (F_SETPIPE_SZ 64 KiB or 1 MiB); one SPLICE source ->
 *            pipe and one SPLICE pipe -> destination in flight at a time,
 *            not linked (a short first SPLICE would cancel a linked second).
 *
 * Every byte is checked: the feeder sends a position-dependent pseudo-random
 * stream and the receiver compares each received byte with it, then the
 * count. The clock runs from the feeder's first write to the receiver's EOF.
 * Runs go round-robin over the cases; medians of MB/s (10^6 bytes/s) and the
 * splice / bufring ratio per direction are printed, then one JSON object.
 * Under QEMU TCG the CPU is emulated: absolute numbers mean nothing there,
 * the ratios inside one run are what to read.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <openssl/is_boringssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls/ktls.h"
#include "tls/tls.h"
#include "util.h"

#define PROG	     "ktls_splice"
#define BUFSZ	     (64u * 1024) /* provided buffer, as [datapath] buffer_size */
#define NBUFS	     64u
#define TXCAP	     (8u * BUFSZ) /* the datapath's send buffer: max(64 KiB, 8 x bufsz) */
#define IOCHUNK	     (256u * 1024)
#define PATTERN_SIZE ((64u << 20) + 4093u) /* not a multiple of any record or buffer size */
#define MAX_CASES    8
#define MAX_RUNS     15

enum dir { L2P, P2L };
enum mech { BUFRING, SPLICE };
enum { UD_RECV = 1, UD_SEND, UD_IN, UD_OUT };

struct opts {
	uint64_t bytes;
	unsigned runs, timeout_s, npipes;
	unsigned pipe_sizes[4];
	bool ktls, json;
};

struct bcase {
	enum dir dir;
	enum mech mech;
	unsigned pipe_size; /* splice: the size asked for; pipe_actual: what F_SETPIPE_SZ gave */
	unsigned pipe_actual;
	double mbps[MAX_RUNS], cpu_s[MAX_RUNS];
	uint64_t in_ops, in_bytes, in_max, out_ops; /* summed over runs */
};

/* One measured run's numbers. */
struct sample {
	double secs, cpu_s;
	uint64_t in_ops, in_bytes, in_max, out_ops;
};

static uint8_t *g_pattern;
static char g_dir[64], g_cert[128], g_key[128], g_fpr[TLS_FPR_LEN];
static SSL_CTX *g_sctx, *g_cctx;
static char g_cipher[64] = "none";

/* ---------- small helpers ---------- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru); /* every thread, io-wq workers included */
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The stream byte at offset o is g_pattern[o % PATTERN_SIZE]. */
static int pattern_init(void)
{
	uint64_t seed = 0x6e617665u; /* "nave" */
	size_t words = (PATTERN_SIZE + 7) / 8;

	g_pattern = malloc(words * 8);
	if (!g_pattern)
		return -ENOMEM;
	for (size_t i = 0; i < words; i++) {
		uint64_t v = splitmix64(&seed);

		memcpy(g_pattern + 8 * i, &v, 8);
	}
	return 0;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(const double *v, unsigned n)
{
	double s[MAX_RUNS];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_dbl);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ---------- sockets and the TLS link ---------- */

static int tcp_pair(int *a, int *b, char *err, size_t errlen)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r = 0;

	*a = *b = -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &len))
		goto fail;
	*a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*a < 0 || connect(*a, (struct sockaddr *)&sa, sizeof(sa)))
		goto fail;
	*b = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (*b < 0)
		goto fail;
	close(lfd);
	return 0;
fail:
	r = -errno;
	snprintf(err, errlen, "loopback TCP pair: %s", strerror(errno));
	if (lfd >= 0)
		close(lfd);
	if (*a >= 0)
		close(*a);
	*a = -1;
	return r;
}

static int tls_setup(char *err, size_t errlen)
{
	snprintf(g_dir, sizeof(g_dir), "%s/nave-splice-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(g_dir)) {
		snprintf(err, errlen, "mkdtemp %s: %s", g_dir, strerror(errno));
		return -errno;
	}
	snprintf(g_cert, sizeof(g_cert), "%s/server.crt", g_dir);
	snprintf(g_key, sizeof(g_key), "%s/server.key", g_dir);
	if (tls_ensure_selfsigned(g_cert, g_key, "relay.test", err, errlen))
		return -EIO;
	if (tls_cert_fingerprint_file(g_cert, g_fpr)) {
		snprintf(err, errlen, "fingerprint of %s failed", g_cert);
		return -EIO;
	}
	g_sctx = tls_server_ctx(g_cert, g_key, false, err, errlen);
	if (!g_sctx)
		return -EIO;
	g_cctx = tls_client_ctx(NULL, g_fpr, false, err, errlen);
	if (!g_cctx)
		return -EIO;
	if (ktls_ctx_prepare(g_sctx) || ktls_ctx_prepare(g_cctx)) {
		snprintf(err, errlen, "ktls_ctx_prepare failed");
		return -EIO;
	}
	return 0;
}

static void tls_cleanup(void)
{
	SSL_CTX_free(g_sctx);
	SSL_CTX_free(g_cctx);
	unlink(g_cert);
	unlink(g_key);
	if (g_dir[0])
		rmdir(g_dir);
}

/* Steps one end of the handshake: 1 done, 0 wants I/O, -1 failed. */
static int hs_step(SSL *ssl, bool *done)
{
	int r;

	if (*done)
		return 1;
	r = SSL_do_handshake(ssl);
	if (r == 1) {
		*done = true;
		return 1;
	}
	r = SSL_get_error(ssl, r);
	return r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/*
 * The link: a loopback TCP pair a (client) and b (server); with ktls, a TLS
 * 1.3 handshake by BoringSSL on both ends (non-blocking, stepped in turn),
 * then ktls_install TX and RX on both. The fds end up blocking.
 */
static int link_open(bool ktls, int *a, int *b, char *err, size_t errlen)
{
	SSL *c = NULL, *s = NULL;
	bool c_done = false, s_done = false;
	int r = tcp_pair(a, b, err, errlen);

	if (r || !ktls)
		return r;
	r = -EIO;
	c = SSL_new(g_cctx);
	s = SSL_new(g_sctx);
	if (!c || !s || SSL_set_fd(c, *a) != 1 || SSL_set_fd(s, *b) != 1) {
		snprintf(err, errlen, "SSL_new/SSL_set_fd failed");
		goto out;
	}
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	fd_set_nonblock(*a, true);
	fd_set_nonblock(*b, true);
	for (int i = 0; i < 3000 && !(c_done && s_done); i++) {
		struct pollfd pf[2] = {{.fd = *a, .events = POLLIN}, {.fd = *b, .events = POLLIN}};

		if (hs_step(c, &c_done) < 0 || hs_step(s, &s_done) < 0) {
			char buf[256];

			snprintf(err, errlen, "TLS handshake: %s",
				 tls_last_error(buf, sizeof(buf)));
			goto out;
		}
		if (!(c_done && s_done))
			poll(pf, 2, 10);
	}
	if (!(c_done && s_done)) {
		snprintf(err, errlen, "TLS handshake did not finish in 30 s");
		goto out;
	}
	fd_set_nonblock(*a, false);
	fd_set_nonblock(*b, false);
	snprintf(g_cipher, sizeof(g_cipher), "%s", SSL_CIPHER_get_name(SSL_get_current_cipher(s)));
	if (ktls_install(c, *a, KTLS_TX | KTLS_RX, err, errlen) ||
	    ktls_install(s, *b, KTLS_TX | KTLS_RX, err, errlen))
		goto out;
	r = 0;
out:
	SSL_free(c); /* the fds stay open: SSL_set_fd does not own them */
	SSL_free(s);
	ERR_clear_error();
	if (r) {
		close(*a);
		close(*b);
		*a = *b = -1;
	}
	return r;
}

/* ---------- feeder and receiver threads ---------- */

struct peer {
	pthread_t th;
	int fd;
	uint64_t bytes, done;
	double t_end;
	int err;	 /* errno of a failed call, or EBADMSG on a wrong byte */
	uint64_t bad_at; /* offset of the first wrong byte */
	bool ktls;
};

static void *feeder_run(void *arg)
{
	struct peer *p = arg;

	while (p->done < p->bytes) {
		size_t at = p->done % PATTERN_SIZE, n = IOCHUNK;
		ssize_t w;

		if (n > PATTERN_SIZE - at)
			n = PATTERN_SIZE - at;
		if (n > p->bytes - p->done)
			n = p->bytes - p->done;
		w = send(p->fd, g_pattern + at, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			p->err = errno;
			return NULL;
		}
		p->done += (uint64_t)w;
	}
	if (shutdown(p->fd, SHUT_WR))
		p->err = errno;
	return NULL;
}

static bool check_bytes(struct peer *p, const uint8_t *buf, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t at = (p->done + i) % PATTERN_SIZE, k = n - i;

		if (k > PATTERN_SIZE - at)
			k = PATTERN_SIZE - at;
		if (memcmp(buf + i, g_pattern + at, k)) {
			for (size_t j = 0; j < k; j++)
				if (buf[i + j] != g_pattern[at + j]) {
					p->bad_at = p->done + i + j;
					break;
				}
			return false;
		}
		i += k;
	}
	return true;
}

static void *receiver_run(void *arg)
{
	struct peer *p = arg;
	uint8_t *buf = malloc(IOCHUNK);

	if (!buf) {
		p->err = ENOMEM;
		return NULL;
	}
	for (;;) {
		ssize_t n = recv(p->fd, buf, IOCHUNK, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			p->err = errno;
			break;
		}
		if (n == 0) {
			p->t_end = now_s();
			break;
		}
		if (p->done + (uint64_t)n > p->bytes || !check_bytes(p, buf, (size_t)n)) {
			if (p->done + (uint64_t)n > p->bytes)
				p->bad_at = p->bytes;
			p->err = EBADMSG;
			break;
		}
		p->done += (uint64_t)n;
	}
	free(buf);
	return NULL;
}

/* ---------- the io_uring worker ---------- */

struct wk {
	struct io_uring ring;
	bool ring_ok;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	int src, dst;
	double deadline;
	struct sample *st;
	char *err;
	size_t errlen;
};

static struct io_uring_sqe *sqe_get(struct wk *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe; /* a 64-entry SQ with at most 2 requests in flight: never NULL */
}

/* The ring as a nave worker sets it up (datapath/worker.c), minus R_DISABLED. */
static int wk_init(struct wk *w, bool bufring)
{
	struct io_uring_params p = {0};
	struct io_uring_buf_reg reg = {0};
	size_t br_size = NBUFS * sizeof(struct io_uring_buf);
	int r;

	p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
	p.cq_entries = 256;
	r = io_uring_queue_init_params(64, &w->ring, &p);
	if (r < 0) {
		snprintf(w->err, w->errlen, "io_uring_queue_init: %s", strerror(-r));
		return r;
	}
	w->ring_ok = true;
	if (!bufring)
		return 0;
	w->br = mmap(NULL, br_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (w->br == MAP_FAILED) {
		w->br = NULL;
		snprintf(w->err, w->errlen, "mmap buffer ring: %s", strerror(errno));
		return -ENOMEM;
	}
	io_uring_buf_ring_init(w->br);
	reg.ring_addr = (uintptr_t)w->br;
	reg.ring_entries = NBUFS;
	reg.bgid = 0;
	r = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (r < 0) {
		snprintf(w->err, w->errlen, "io_uring_register_buf_ring: %s", strerror(-r));
		return r;
	}
	w->bufs = malloc((size_t)NBUFS * BUFSZ);
	if (!w->bufs) {
		snprintf(w->err, w->errlen, "out of memory for the provided buffers");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < NBUFS; i++)
		io_uring_buf_ring_add(w->br, w->bufs + (size_t)i * BUFSZ, BUFSZ, (unsigned short)i,
				      io_uring_buf_ring_mask(NBUFS), (int)i);
	io_uring_buf_ring_advance(w->br, (int)NBUFS);
	return 0;
}

static void wk_fini(struct wk *w)
{
	if (w->ring_ok)
		io_uring_queue_exit(&w->ring);
	if (w->br)
		munmap(w->br, NBUFS * sizeof(struct io_uring_buf));
	free(w->bufs);
}

/* Submits and waits up to 1 s for a completion; -ETIMEDOUT past the deadline. */
static int wk_wait(struct wk *w)
{
	struct __kernel_timespec ts = {.tv_sec = 1};
	struct io_uring_cqe *cqe;

	for (;;) {
		int r = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);

		if (r >= 0 || (r != -ETIME && r != -EINTR))
			return r < 0 ? r : 0;
		if (now_s() > w->deadline)
			return -ETIMEDOUT;
	}
}

static int io_fail(struct wk *w, const char *what, int res)
{
	char why[160] = "";

	if (res == -EIO && w->src >= 0) /* kTLS RX: the next record is not data */
		ktls_recv_control(w->src, why, sizeof(why));
	snprintf(w->err, w->errlen, "%s: %s%s%s", what, strerror(-res), why[0] ? ": " : "", why);
	return res;
}

/* The datapath's obuf_room: free bytes, compacting when no SEND is in flight. */
static uint32_t tx_room(uint8_t *tx, uint32_t *head, uint32_t *tail, uint32_t inflight)
{
	if (!inflight && *head) {
		memmove(tx, tx + *head, *tail - *head);
		*tail -= *head;
		*head = 0;
	}
	return TXCAP - *tail;
}

static int loop_bufring(struct wk *w)
{
	uint8_t *tx = malloc(TXCAP);
	uint32_t head = 0, tail = 0, inflight = 0;
	bool recv_armed = false, eof = false;
	int r = 0;

	if (!tx) {
		snprintf(w->err, w->errlen, "out of memory for the send buffer");
		return -ENOMEM;
	}
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned seen = 0, hd;

		if (!inflight && head != tail) { /* obuf_kick */
			struct io_uring_sqe *sqe = sqe_get(w);

			inflight = tail - head;
			io_uring_prep_send(sqe, w->dst, tx + head, inflight, MSG_NOSIGNAL);
			io_uring_sqe_set_data64(sqe, UD_SEND);
		}
		if (!eof && !recv_armed && tx_room(tx, &head, &tail, inflight) >= BUFSZ) {
			struct io_uring_sqe *sqe = sqe_get(w);

			io_uring_prep_recv(sqe, w->src, NULL, BUFSZ, 0);
			sqe->flags |= IOSQE_BUFFER_SELECT;
			sqe->buf_group = 0;
			io_uring_sqe_set_data64(sqe, UD_RECV);
			recv_armed = true;
		}
		if (eof && !inflight && head == tail)
			break;
		r = wk_wait(w);
		if (r) {
			io_fail(w, "io_uring wait", r);
			break;
		}
		io_uring_for_each_cqe(&w->ring, hd, cqe)
		{
			int res = cqe->res;

			seen++;
			if (cqe->user_data == UD_RECV) {
				recv_armed = false;
				if (res > 0) {
					unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

					memcpy(tx + tail, w->bufs + (size_t)bid * BUFSZ,
					       (size_t)res);
					tail += (uint32_t)res;
					io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * BUFSZ,
							      BUFSZ, (unsigned short)bid,
							      io_uring_buf_ring_mask(NBUFS), 0);
					io_uring_buf_ring_advance(w->br, 1);
					w->st->in_ops++;
					w->st->in_bytes += (uint64_t)res;
					if ((uint64_t)res > w->st->in_max)
						w->st->in_max = (uint64_t)res;
				} else if (res == 0) {
					eof = true;
				} else if (res != -ENOBUFS && res != -EINTR) {
					r = io_fail(w, "RECV", res);
				}
			} else {
				if (res <= 0 && res != -EINTR) {
					r = io_fail(w, "SEND", res ? res : -EPIPE);
				} else if (res > 0) {
					head += (uint32_t)res;
					if (head == tail)
						head = tail = 0;
					w->st->out_ops++;
				}
				inflight = 0;
			}
		}
		io_uring_cq_advance(&w->ring, seen);
		if (r)
			break;
	}
	free(tx);
	return r;
}

static int loop_splice(struct wk *w, int pipe_r, int pipe_w, unsigned cap)
{
	uint64_t fill = 0; /* bytes in the pipe: spliced in, not yet spliced out */
	bool in_flight = false, out_flight = false, eof = false;
	unsigned min_in = cap < 16384 ? cap : 16384;
	int r = 0;

	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned seen = 0, hd;

		if (!eof && !in_flight && cap - fill >= min_in) {
			struct io_uring_sqe *sqe = sqe_get(w);

			io_uring_prep_splice(sqe, w->src, -1, pipe_w, -1, (unsigned)(cap - fill),
					     0);
			io_uring_sqe_set_data64(sqe, UD_IN);
			in_flight = true;
		}
		if (!out_flight && fill) {
			struct io_uring_sqe *sqe = sqe_get(w);

			io_uring_prep_splice(sqe, pipe_r, -1, w->dst, -1, (unsigned)fill, 0);
			io_uring_sqe_set_data64(sqe, UD_OUT);
			out_flight = true;
		}
		if (eof && !fill && !out_flight)
			break;
		r = wk_wait(w);
		if (r) {
			io_fail(w, "io_uring wait", r);
			break;
		}
		io_uring_for_each_cqe(&w->ring, hd, cqe)
		{
			int res = cqe->res;

			seen++;
			if (cqe->user_data == UD_IN) {
				in_flight = false;
				if (res > 0) {
					fill += (uint64_t)res;
					w->st->in_ops++;
					w->st->in_bytes += (uint64_t)res;
					if ((uint64_t)res > w->st->in_max)
						w->st->in_max = (uint64_t)res;
				} else if (res == 0) {
					eof = true;
				} else if (res != -EINTR && res != -EAGAIN) {
					r = io_fail(w, "SPLICE in", res);
				}
			} else {
				out_flight = false;
				if (res > 0) {
					fill -= (uint64_t)res;
					w->st->out_ops++;
				} else if (res != -EINTR && res != -EAGAIN) {
					r = io_fail(w, "SPLICE out", res ? res : -EPIPE);
				}
			}
		}
		io_uring_cq_advance(&w->ring, seen);
		if (r)
			break;
	}
	return r;
}

/* ---------- one run ---------- */

static const char *dir_name(enum dir d)
{
	return d == L2P ? "L2P" : "P2L";
}

static void case_name(const struct bcase *c, char *out, size_t len)
{
	if (c->mech == BUFRING)
		snprintf(out, len, "bufring");
	else if (c->pipe_size % (1u << 20) == 0)
		snprintf(out, len, "splice-%uM", c->pipe_size >> 20);
	else
		snprintf(out, len, "splice-%uK", c->pipe_size >> 10);
}

static int run_once(const struct opts *o, struct bcase *c, struct sample *st, char *err,
		    size_t errlen)
{
	int la = -1, lb = -1, pa = -1, pb = -1, pipefd[2] = {-1, -1}, r;
	int fds[4] = {-1, -1, -1, -1};
	struct peer feed = {.bytes = o->bytes}, recv = {.bytes = o->bytes};
	struct wk w = {.st = st, .err = err, .errlen = errlen};
	bool fed = false, recvd = false;
	double t0, c0;

	memset(st, 0, sizeof(*st));
	r = link_open(o->ktls, &la, &lb, err, errlen);
	if (r)
		return r;
	r = tcp_pair(&pa, &pb, err, errlen);
	if (r)
		goto out;
	if (c->dir == L2P) { /* A -kTLS-> B -worker-> P1 -> P2 */
		feed.fd = la;
		w.src = lb;
		w.dst = pa;
		recv.fd = pb;
	} else { /* P1 -> P2 -worker-> B -kTLS-> A */
		feed.fd = pa;
		w.src = pb;
		w.dst = lb;
		recv.fd = la;
	}
	fds[0] = la;
	fds[1] = lb;
	fds[2] = pa;
	fds[3] = pb;
	r = wk_init(&w, c->mech == BUFRING);
	if (r)
		goto out;
	if (c->mech == SPLICE) {
		int got;

		if (pipe2(pipefd, O_CLOEXEC)) {
			r = -errno;
			snprintf(err, errlen, "pipe2: %s", strerror(errno));
			goto out;
		}
		got = fcntl(pipefd[1], F_SETPIPE_SZ, (int)c->pipe_size);
		if (got < 0) {
			r = -errno;
			snprintf(err, errlen, "F_SETPIPE_SZ %u: %s", c->pipe_size, strerror(errno));
			goto out;
		}
		c->pipe_actual = (unsigned)got;
	}
	r = pthread_create(&recv.th, NULL, receiver_run, &recv);
	if (r) {
		snprintf(err, errlen, "pthread_create: %s", strerror(r));
		r = -r;
		goto out;
	}
	recvd = true;
	w.deadline = now_s() + o->timeout_s;
	c0 = cpu_s();
	t0 = now_s();
	r = pthread_create(&feed.th, NULL, feeder_run, &feed);
	if (r) {
		snprintf(err, errlen, "pthread_create: %s", strerror(r));
		r = -r;
		goto out;
	}
	fed = true;
	if (c->mech == BUFRING)
		r = loop_bufring(&w);
	else
		r = loop_splice(&w, pipefd[0], pipefd[1], c->pipe_actual);
	if (!r && shutdown(w.dst, SHUT_WR)) { /* the receiver's EOF */
		r = -errno;
		snprintf(err, errlen, "shutdown: %s", strerror(errno));
	}
	if (r) /* unblock the threads */
		for (int i = 0; i < 4; i++)
			shutdown(fds[i], SHUT_RDWR);
	pthread_join(feed.th, NULL);
	fed = false;
	pthread_join(recv.th, NULL);
	recvd = false;
	st->secs = recv.t_end - t0;
	st->cpu_s = cpu_s() - c0;
	if (r)
		goto out;
	if (feed.err) {
		r = -feed.err;
		snprintf(err, errlen, "feeder: %s after %llu bytes", strerror(feed.err),
			 (unsigned long long)feed.done);
	} else if (recv.err == EBADMSG) {
		r = -EBADMSG;
		snprintf(err, errlen, "receiver: wrong byte at offset %llu",
			 (unsigned long long)recv.bad_at);
	} else if (recv.err) {
		r = -recv.err;
		snprintf(err, errlen, "receiver: %s after %llu bytes", strerror(recv.err),
			 (unsigned long long)recv.done);
	} else if (recv.done != o->bytes) {
		r = -EPROTO;
		snprintf(err, errlen, "receiver: EOF after %llu of %llu bytes",
			 (unsigned long long)recv.done, (unsigned long long)o->bytes);
	}
out:
	if (r && (fed || recvd))
		for (int i = 0; i < 4; i++)
			shutdown(fds[i], SHUT_RDWR);
	if (fed)
		pthread_join(feed.th, NULL);
	if (recvd)
		pthread_join(recv.th, NULL);
	wk_fini(&w);
	for (int i = 0; i < 2; i++)
		if (pipefd[i] >= 0)
			close(pipefd[i]);
	if (la >= 0)
		close(la);
	if (lb >= 0)
		close(lb);
	if (pa >= 0)
		close(pa);
	if (pb >= 0)
		close(pb);
	return r;
}

/* ---------- output ---------- */

static double case_median(const struct bcase *c, unsigned runs)
{
	return median(c->mbps, runs);
}

static const struct bcase *find_bufring(const struct bcase *cs, unsigned n, enum dir d)
{
	for (unsigned i = 0; i < n; i++)
		if (cs[i].dir == d && cs[i].mech == BUFRING)
			return &cs[i];
	return NULL;
}

/*
 * The median over rounds of (this case's MB/s / bufring's MB/s in the same
 * round): steadier than the ratio of medians when the machine's speed drifts
 * between rounds (a shared host, TCG). Per-round ratios go to rr.
 */
static double round_ratio(const struct bcase *c, const struct bcase *b, unsigned runs, double *rr)
{
	for (unsigned r = 0; r < runs; r++)
		rr[r] = c->mbps[r] / b->mbps[r];
	return median(rr, runs);
}

static void print_table(FILE *f, const struct opts *o, const struct bcase *cs, unsigned n)
{
	fprintf(f, "%-4s %-11s %10s %8s %9s %10s %12s  %s\n", "dir", "mechanism", "MB/s", "ratio",
		"rnd-ratio", "cpu s/GiB", "B/in-op", "samples MB/s");
	for (unsigned i = 0; i < n; i++) {
		const struct bcase *c = &cs[i], *b = find_bufring(cs, n, c->dir);
		char name[32];
		double m = case_median(c, o->runs), rr[MAX_RUNS];

		case_name(c, name, sizeof(name));
		fprintf(f, "%-4s %-11s %10.1f %8.3f %9.3f %10.2f %12.0f  ", dir_name(c->dir), name,
			m, b ? m / case_median(b, o->runs) : 0.0,
			b ? round_ratio(c, b, o->runs, rr) : 0.0,
			median(c->cpu_s, o->runs) * (double)(1ull << 30) / (double)o->bytes,
			c->in_ops ? (double)c->in_bytes / (double)c->in_ops : 0.0);
		for (unsigned r = 0; r < o->runs; r++)
			fprintf(f, "%s%.1f", r ? " " : "", c->mbps[r]);
		fprintf(f, "\n");
	}
	fprintf(f,
		"ratio = median MB/s / bufring median MB/s of the same direction; rnd-ratio = "
		"median over rounds of the same ratio taken inside each round.%s\n",
		o->ktls ? " Under QEMU TCG the CPU (and so the crypto) is emulated: absolute MB/s "
			  "mean nothing, compare the ratios inside this run."
			: "");
}

static void print_json(FILE *f, const struct opts *o, const struct bcase *cs, unsigned n)
{
	struct utsname u;

	uname(&u);
	fprintf(f,
		"{\"tool\":\"" PROG "\",\"mode\":\"%s\",\"kernel\":\"%s\",\"machine\":\"%s\","
		"\"nproc\":%ld,\"cipher\":\"%s\",\"bytes_per_run\":%llu,\"runs\":%u,"
		"\"buffer_size\":%u,\"buffers\":%u,\"send_buffer\":%u,\"unit\":\"MB/s "
		"(10^6 bytes/s), feeder's first write to receiver's EOF, every byte checked\","
		"\"note\":\"%s\",\"cases\":[",
		o->ktls ? "ktls" : "plain", u.release, u.machine, sysconf(_SC_NPROCESSORS_ONLN),
		g_cipher, (unsigned long long)o->bytes, o->runs, BUFSZ, NBUFS, TXCAP,
		o->ktls
		    ? "link sockets are kTLS (TLS 1.3, keys from a BoringSSL handshake via "
		      "ktls_install); if run under QEMU TCG the CPU is emulated, so absolute "
		      "MB/s are meaningless and only ratios inside one run count"
		    : "link sockets are plain TCP (--no-ktls): the cost of the mechanism alone");
	for (unsigned i = 0; i < n; i++) {
		const struct bcase *c = &cs[i], *b = find_bufring(cs, n, c->dir);
		char name[32];
		double m = case_median(c, o->runs), rr[MAX_RUNS], rm;

		case_name(c, name, sizeof(name));
		fprintf(f, "%s{\"dir\":\"%s\",\"mechanism\":\"%s\",", i ? "," : "",
			dir_name(c->dir), name);
		if (c->mech == SPLICE)
			fprintf(f, "\"pipe_size\":%u,", c->pipe_actual);
		fprintf(f, "\"median_mbps\":%.1f,\"ratio_to_bufring\":%.3f,\"samples_mbps\":[", m,
			b ? m / case_median(b, o->runs) : 0.0);
		for (unsigned r = 0; r < o->runs; r++)
			fprintf(f, "%s%.1f", r ? "," : "", c->mbps[r]);
		rm = b ? round_ratio(c, b, o->runs, rr) : 0.0;
		fprintf(f, "],\"round_ratio_median\":%.3f,\"round_ratios\":[", rm);
		for (unsigned r = 0; b && r < o->runs; r++)
			fprintf(f, "%s%.3f", r ? "," : "", rr[r]);
		fprintf(f,
			"],\"cpu_s_per_gib\":%.3f,\"in_ops\":%llu,\"in_avg_bytes\":%.0f,"
			"\"in_max_bytes\":%llu,\"out_ops\":%llu}",
			median(c->cpu_s, o->runs) * (double)(1ull << 30) / (double)o->bytes,
			(unsigned long long)c->in_ops,
			c->in_ops ? (double)c->in_bytes / (double)c->in_ops : 0.0,
			(unsigned long long)c->in_max, (unsigned long long)c->out_ops);
	}
	fprintf(f, "],\"ratios\":{");
	for (unsigned i = 0, k = 0; i < n; i++) {
		const struct bcase *c = &cs[i], *b = find_bufring(cs, n, c->dir);
		char name[32];

		if (c->mech != SPLICE || !b)
			continue;
		case_name(c, name, sizeof(name));
		fprintf(f, "%s\"%s %s\":%.3f", k++ ? "," : "", dir_name(c->dir), name,
			case_median(c, o->runs) / case_median(b, o->runs));
	}
	fprintf(f, "},\"round_ratios\":{");
	for (unsigned i = 0, k = 0; i < n; i++) {
		const struct bcase *c = &cs[i], *b = find_bufring(cs, n, c->dir);
		char name[32];
		double rr[MAX_RUNS];

		if (c->mech != SPLICE || !b)
			continue;
		case_name(c, name, sizeof(name));
		fprintf(f, "%s\"%s %s\":%.3f", k++ ? "," : "", dir_name(c->dir), name,
			round_ratio(c, b, o->runs, rr));
	}
	fprintf(f, "},\"verified\":true}\n");
}

/* ---------- main ---------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [--no-ktls] [--mib N] [--runs N] [--pipe-kib K[,K...]]\n"
		"                   [--timeout S] [--json]\n"
		"Measures io_uring provided-buffer-ring RECV+memcpy+SEND against SPLICE through a\n"
		"pipe for bulk bytes link->public (kTLS RX -> TCP) and public->link (TCP -> kTLS "
		"TX),\n"
		"every byte checked. Prints a table, then one JSON object.\n"
		"  --no-ktls      the link is a plain TCP pair (no TLS module needed)\n"
		"  --mib N        MiB moved per run (default 256)\n"
		"  --runs N       runs per case, round-robin over the cases (default 3, max %d)\n"
		"  --pipe-kib L   splice pipe sizes in KiB (default 64,1024; up to 4)\n"
		"  --timeout S    a run that takes longer fails (default 60)\n"
		"  --json         only the JSON on stdout (table and progress on stderr)\n"
		"Needs the kernel's TLS ULP unless --no-ktls (run it in the kTLS guest:\n"
		"tests/ktls/guest.sh build/bench/" PROG "); exits 77 without it, 1 on a failure.\n"
		"Under QEMU TCG absolute numbers are meaningless: compare ratios inside one run.\n",
		MAX_RUNS);
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v == 0 || v > max || *s == '-')
		return false;
	*out = v;
	return true;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
	    {"no-ktls", no_argument, NULL, 'n'},       {"mib", required_argument, NULL, 'm'},
	    {"runs", required_argument, NULL, 'r'},    {"pipe-kib", required_argument, NULL, 'p'},
	    {"timeout", required_argument, NULL, 't'}, {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0}};
	unsigned long v;
	int ch, idx = -1;

	*o = (struct opts){.bytes = 256ull << 20,
			   .runs = 3,
			   .timeout_s = 60,
			   .npipes = 2,
			   .pipe_sizes = {64u << 10, 1u << 20},
			   .ktls = true};
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "h", lo, &idx)) != -1) {
		switch (ch) {
		case 'n':
			o->ktls = false;
			break;
		case 'm':
			if (!parse_uint(optarg, 1u << 16, &v))
				goto bad;
			o->bytes = (uint64_t)v << 20;
			break;
		case 'r':
			if (!parse_uint(optarg, MAX_RUNS, &v))
				goto bad;
			o->runs = (unsigned)v;
			break;
		case 't':
			if (!parse_uint(optarg, 86400, &v))
				goto bad;
			o->timeout_s = (unsigned)v;
			break;
		case 'p': {
			char buf[128], *save = NULL, *tok;

			if (!str_copy(buf, sizeof(buf), optarg))
				goto bad;
			o->npipes = 0;
			for (tok = strtok_r(buf, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				if (o->npipes == ARRAY_SIZE(o->pipe_sizes) ||
				    !parse_uint(tok, 1u << 20, &v))
					goto bad;
				o->pipe_sizes[o->npipes++] = (unsigned)v << 10;
			}
			if (!o->npipes)
				goto bad;
			break;
		}
		case 'j':
			o->json = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			goto bad;
		}
	}
	if (optind == argc)
		return 0;
	fprintf(stderr, PROG ": unexpected argument %s (see --help)\n", argv[optind]);
	return -EINVAL;
bad:
	if (ch != '?' && idx >= 0)
		fprintf(stderr, PROG ": bad value for --%s: %s (see --help)\n", lo[idx].name,
			optarg);
	else
		fprintf(stderr, PROG ": unknown option or missing value: %s (see --help)\n",
			argv[optind - 1]);
	return -EINVAL;
}

int main(int argc, char **argv)
{
	struct bcase cs[MAX_CASES];
	struct opts o;
	unsigned n = 0;
	char err[512] = "", why[256] = "";
	FILE *out;
	int rc = 0;

	if (parse_args(argc, argv, &o))
		return 2;
	out = o.json ? stderr : stdout;
	if (o.ktls && !ktls_supported(why, sizeof(why))) {
		fprintf(stderr,
			PROG ": kTLS unavailable (%s); run it in the kTLS guest or pass "
			     "--no-ktls\n",
			why);
		return 77;
	}
	if (pattern_init()) {
		fprintf(stderr, PROG ": out of memory for the pattern\n");
		return 1;
	}
	if (o.ktls && tls_setup(err, sizeof(err))) {
		fprintf(stderr, PROG ": %s\n", err);
		tls_cleanup();
		return 1;
	}
	for (int d = L2P; d <= P2L; d++) {
		cs[n++] = (struct bcase){.dir = (enum dir)d, .mech = BUFRING};
		for (unsigned i = 0; i < o.npipes; i++)
			cs[n++] = (struct bcase){
			    .dir = (enum dir)d, .mech = SPLICE, .pipe_size = o.pipe_sizes[i]};
	}
	fprintf(stderr, PROG ": %s link, %llu MiB per run, %u runs of %u cases, round-robin\n",
		o.ktls ? "kTLS" : "plain TCP", (unsigned long long)(o.bytes >> 20), o.runs, n);
	for (unsigned r = 0; r < o.runs && !rc; r++)
		for (unsigned i = 0; i < n && !rc; i++) {
			struct sample st;
			char name[32];

			case_name(&cs[i], name, sizeof(name));
			if (run_once(&o, &cs[i], &st, err, sizeof(err))) {
				fprintf(stderr, PROG ": %s %s run %u: %s\n", dir_name(cs[i].dir),
					name, r + 1, err);
				rc = 1;
				break;
			}
			cs[i].mbps[r] = (double)o.bytes / 1e6 / st.secs;
			cs[i].cpu_s[r] = st.cpu_s;
			cs[i].in_ops += st.in_ops;
			cs[i].in_bytes += st.in_bytes;
			cs[i].out_ops += st.out_ops;
			if (st.in_max > cs[i].in_max)
				cs[i].in_max = st.in_max;
			fprintf(stderr,
				"  run %u %s %-11s %9.1f MB/s  %.2f s  cpu %.2f s  %llu in-ops "
				"(avg %.0f B, max %llu B)\n",
				r + 1, dir_name(cs[i].dir), name, cs[i].mbps[r], st.secs, st.cpu_s,
				(unsigned long long)st.in_ops,
				st.in_ops ? (double)st.in_bytes / (double)st.in_ops : 0.0,
				(unsigned long long)st.in_max);
		}
	if (!rc) {
		print_table(out, &o, cs, n);
		print_json(stdout, &o, cs, n);
	}
	if (o.ktls)
		tls_cleanup();
	free(g_pattern);
	return rc;
}

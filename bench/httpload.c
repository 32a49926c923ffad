// SPDX-License-Identifier: Apache-2.0
/*
 * httpload: HTTP/1.1 requests per second and latency through a proxy (make bench).
 *
 *   httpload serve [-a ADDR] [-p PORT] [-t THREADS] [-b BYTES]
 *       The service: prints "port N" on stdout once it listens, then serves
 *       until SIGTERM. THREADS epoll loops, each on its own SO_REUSEPORT
 *       socket of one port. Every request (a head; a Content-Length body is
 *       read and dropped) gets "200 OK" with the same BYTES-byte body and an
 *       X-Req header that repeats the request's target, in order when
 *       pipelined. A request with "Connection: close" (or HTTP/1.0) gets
 *       "Connection: close" and the connection closes once the answer is out.
 *
 *   httpload run -a ADDR -p PORT -H HOST [-m keepalive|close] [-b BYTES]
 *                [-d SECONDS] [-w WARMUP] [-t THREADS] [-c CONNS] [-T TIMEOUT]
 *                [-s SOURCES]
 *       The load: THREADS epoll loops with CONNS connections each, one request
 *       in flight per connection ("GET /N" with Host: HOST, N a sequence
 *       number). keepalive: each connection sends its next request as soon as
 *       the answer to the last one is in. close: every request on a new
 *       connection ("Connection: close"); the client closes once the answer
 *       is in. Every answer is checked: status 200, Content-Length BYTES, the
 *       body byte for byte, X-Req naming the request's own target (crossed
 *       streams show). Requests answered in the first WARMUP seconds are not
 *       counted; after WARMUP + SECONDS no request starts and those in flight
 *       get TIMEOUT seconds. SOURCES > 0 binds connections to 127.0.0.2 and
 *       up (so the client's ephemeral ports are not what runs out).
 *       Prints one JSON object: requests answered in the measured window and
 *       their rate, connections opened, failures by kind, latency (keepalive:
 *       request sent to last byte; close: connect to last byte) percentiles,
 *       and this process's CPU.
 *
 * Exit status: 0 when it ran (failures are in the JSON), 2 on bad usage or a
 * setup error. Only Linux, only the C library.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MAX_CONNS   4096
#define MAX_BODY    65536
#define HEAD_MAX    8192   /* a request or response head */
#define LAT_BUCKETS 200000 /* 10 us each: up to 2 s; slower ones land in the last */
#define LAT_STEP_US 10
#define SRV_IN	    16384
#define SRV_OUT	    65536

static struct sockaddr_in target;
static int body_len = 128;
static char body[MAX_BODY];

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "httpload: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* The body both sides know: "httpload" then letters, a newline last. */
static void make_body(void)
{
	for (int i = 0; i < body_len; i++)
		body[i] = (char)('a' + i % 26);
	memcpy(body, "httpload", body_len < 8 ? (size_t)body_len : 8);
	if (body_len)
		body[body_len - 1] = '\n';
}

/* The value of header NAME (lower case, with the colon) in head[0..n), or NULL; *vl its length. */
static const char *header(const char *head, size_t n, const char *name, size_t *vl)
{
	size_t nl = strlen(name);
	const char *p = memchr(head, '\n', n), *end = head + n;

	while (p && p + 1 + nl <= end) {
		const char *line = p + 1, *eol = memchr(line, '\n', (size_t)(end - line));

		if (!eol)
			eol = end;
		if (!strncasecmp(line, name, nl)) {
			const char *v = line + nl;

			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*vl = (size_t)(eol - v);
			while (*vl && (v[*vl - 1] == '\r' || v[*vl - 1] == ' '))
				(*vl)--;
			return v;
		}
		p = eol < end ? eol : NULL;
	}
	return NULL;
}

static bool has_token(const char *v, size_t vl, const char *tok)
{
	size_t tl = strlen(tok);

	for (size_t i = 0; i + tl <= vl; i++)
		if (!strncasecmp(v + i, tok, tl))
			return true;
	return false;
}

/* ---------------------------------------------------------------- serve */

static int serve_port;
static int serve_threads = 1;

struct sconn {
	int fd;
	bool closing; /* the last answer said Connection: close */
	bool want_out;
	size_t in_len, out_off, out_len;
	size_t skip; /* request body bytes still to drop */
	char in[SRV_IN];
	char out[SRV_OUT];
};

static int listen_reuseport(int port)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = target;

	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		die("setsockopt");
	a.sin_port = htons((uint16_t)port);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	if (listen(fd, 4096) < 0)
		die("listen");
	return fd;
}

static void sconn_close(int ep, struct sconn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* Appends the answers to the complete requests in c->in while they fit in c->out. */
static void sconn_parse(struct sconn *c)
{
	size_t off = 0;

	while (!c->closing && off < c->in_len) {
		const char *h = c->in + off, *end, *v, *sp, *sp2;
		size_t n = c->in_len - off, hl, vl, tl;
		int w;

		if (c->skip) {
			size_t k = c->skip < n ? c->skip : n;

			c->skip -= k;
			off += k;
			continue;
		}
		end = memmem(h, n, "\r\n\r\n", 4);
		if (!end)
			break;
		hl = (size_t)(end - h) + 4;
		if (SRV_OUT - c->out_len < 512 + (size_t)body_len)
			break; /* no room: the rest waits for the socket */
		sp = memchr(h, ' ', hl);
		sp2 = sp ? memchr(sp + 1, ' ', hl - (size_t)(sp + 1 - h)) : NULL;
		tl = sp2 ? (size_t)(sp2 - sp - 1) : 1;
		if (!sp2 || tl > 64) {
			sp = "?/";
			tl = 1;
		}
		v = header(h, hl, "connection:", &vl);
		c->closing = (v && has_token(v, vl, "close")) ||
			     (sp2 && hl > (size_t)(sp2 - h) + 9 && !memcmp(sp2 + 1, "HTTP/1.0", 8));
		v = header(h, hl, "content-length:", &vl);
		if (v)
			c->skip = strtoull(v, NULL, 10);
		w = snprintf(c->out + c->out_len, SRV_OUT - c->out_len,
			     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
			     "X-Req: %.*s\r\n%s\r\n",
			     body_len, (int)tl, sp + 1, c->closing ? "Connection: close\r\n" : "");
		c->out_len += (size_t)w;
		memcpy(c->out + c->out_len, body, (size_t)body_len);
		c->out_len += (size_t)body_len;
		off += hl;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
}

/* Writes what c->out holds; false when the connection is to close now. */
static bool sconn_flush(int ep, struct sconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t r = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			if (!c->want_out) {
				struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
							 .data.ptr = c};

				c->want_out = true;
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
			}
			return true;
		}
		if (r <= 0)
			return false;
		c->out_off += (size_t)r;
	}
	c->out_off = c->out_len = 0;
	if (c->want_out) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

		c->want_out = false;
		epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	}
	return !c->closing;
}

static void *serve_loop(void *arg)
{
	int lfd = (int)(intptr_t)arg, ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}, evs[256];

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll");
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);

		for (int i = 0; i < n; i++) {
			struct sconn *c = evs[i].data.ptr;

			if (!c) {
				int fd;

				while ((fd = accept4(lfd, NULL, NULL,
						     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					c = malloc(sizeof(*c));
					if (!c) {
						close(fd);
						continue;
					}
					c->fd = fd;
					c->closing = c->want_out = false;
					c->in_len = c->out_off = c->out_len = c->skip = 0;
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
						close(fd);
						free(c);
					}
				}
				continue;
			}
			if ((evs[i].events & EPOLLOUT) && !sconn_flush(ep, c)) {
				sconn_close(ep, c);
				continue;
			}
			if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
			    c->in_len < SRV_IN) {
				ssize_t r = read(c->fd, c->in + c->in_len, SRV_IN - c->in_len);

				if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
					/* the peer's FIN (or a reset): done */
					sconn_close(ep, c);
					continue;
				}
				if (r > 0)
					c->in_len += (size_t)r;
			}
			/* answer what is complete; answers wait while earlier ones wait for room */
			while (!c->want_out && c->in_len) {
				size_t before = c->in_len;

				sconn_parse(c);
				if (!sconn_flush(ep, c)) {
					sconn_close(ep, c);
					c = NULL;
					break;
				}
				if (c->in_len == before)
					break;
			}
			if (c && c->in_len == SRV_IN && !c->want_out)
				sconn_close(ep, c); /* a head larger than the buffer */
		}
	}
	return NULL;
}

static int serve(void)
{
	pthread_t th[MAX_THREADS];
	int fds[MAX_THREADS];
	struct sockaddr_in a;
	socklen_t al = sizeof(a);

	signal(SIGPIPE, SIG_IGN);
	fds[0] = listen_reuseport(serve_port);
	if (getsockname(fds[0], (struct sockaddr *)&a, &al) < 0)
		die("getsockname");
	for (int i = 1; i < serve_threads; i++)
		fds[i] = listen_reuseport(ntohs(a.sin_port));
	for (int i = 0; i < serve_threads; i++)
		if (pthread_create(&th[i], NULL, serve_loop, (void *)(intptr_t)fds[i]))
			die("pthread_create");
	printf("port %u\n", ntohs(a.sin_port));
	fflush(stdout);
	for (int i = 0; i < serve_threads; i++)
		pthread_join(th[i], NULL);
	return 0;
}

/* ---------------------------------------------------------------- run */

enum fail {
	F_REFUSED,
	F_RESET,
	F_SHORT,
	F_STATUS,
	F_BADREPLY,
	F_TIMEOUT,
	F_ADDRNOTAVAIL,
	F_OTHER,
	F_N,
};

static const char *const fail_names[F_N] = {
    "refused",	 "reset",   "short_reply",   "bad_status",
    "bad_reply", "timeout", "no_local_port", "other",
};

static double run_seconds = 3, warmup_seconds = 0.5, timeout_seconds = 5;
static int run_threads = 2, nconns = 16, nsources;
static bool keepalive = true;
static const char *host;
static uint64_t t_measure, t_stop;

enum cstate { C_IDLE, C_CONNECTING, C_READING };

struct cconn {
	int fd;
	enum cstate state;
	uint64_t connected; /* when the connect started */
	uint64_t started;   /* when this request started (close: = connected) */
	uint32_t seq;
	size_t got;
	char *buf; /* HEAD_MAX + body_len */
};

struct worker {
	pthread_t th;
	int ep;
	unsigned id;
	uint32_t seq;
	uint64_t ok, late_ok, warm_ok, warm_fail, conns, server_closes;
	uint64_t fails[F_N];
	int first_errno;
	enum fail first_fail;
	char first_detail[96];
	bool have_first;
	uint32_t *lat; /* LAT_BUCKETS counters */
	uint64_t lat_max_us;
	struct cconn *c;
};

static void record_fail(struct worker *w, enum fail f, int err, const char *detail)
{
	if (now_ns() < t_measure) {
		w->warm_fail++;
		return;
	}
	w->fails[f]++;
	if (!w->have_first) {
		w->have_first = true;
		w->first_fail = f;
		w->first_errno = err;
		snprintf(w->first_detail, sizeof(w->first_detail), "%s", detail ? detail : "");
	}
}

static enum fail errno_fail(int e)
{
	switch (e) {
	case ECONNREFUSED:
		return F_REFUSED;
	case ECONNRESET:
	case EPIPE:
		return F_RESET;
	case EADDRNOTAVAIL:
		return F_ADDRNOTAVAIL;
	case ETIMEDOUT:
		return F_TIMEOUT;
	default:
		return F_OTHER;
	}
}

static void cconn_end(struct worker *w, struct cconn *c)
{
	if (c->fd >= 0)
		close(c->fd); /* epoll forgets a closed fd by itself */
	c->fd = -1;
	c->state = C_IDLE;
}

static bool cconn_send(struct worker *w, struct cconn *c)
{
	char req[512];
	int n;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

	c->seq = ++w->seq;
	c->got = 0;
	n = snprintf(req, sizeof(req),
		     "GET /%u-%" PRIu32 " HTTP/1.1\r\nHost: %s\r\nUser-Agent: httpload\r\n"
		     "Accept: */*\r\n%s\r\n",
		     w->id, c->seq, host, keepalive ? "" : "Connection: close\r\n");
	if (write(c->fd, req, (size_t)n) != n) {
		record_fail(w, errno_fail(errno), errno, NULL);
		cconn_end(w, c);
		return false;
	}
	if (c->state != C_READING) {
		c->state = C_READING;
		if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
			record_fail(w, F_OTHER, errno, NULL);
			cconn_end(w, c);
			return false;
		}
	}
	return true;
}

static void cconn_start(struct worker *w, struct cconn *c)
{
	struct epoll_event ev;
	int fd;

	if (now_ns() >= t_stop)
		return;
	c->connected = c->started = now_ns();
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		record_fail(w, F_OTHER, errno, NULL);
		return;
	}
	w->conns++;
	if (nsources) {
		/* a source address of 127.0.0.2 and up, the port left to connect */
		struct sockaddr_in src = {.sin_family = AF_INET};
		int one = 1;

		src.sin_addr.s_addr =
		    htonl(0x7f000002u + (uint32_t)(w->conns % (uint64_t)nsources));
		if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0 ||
		    bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			record_fail(w, errno_fail(errno), errno, NULL);
			close(fd);
			return;
		}
	}
	if (connect(fd, (struct sockaddr *)&target, sizeof(target)) < 0 && errno != EINPROGRESS) {
		/* the slot stays idle: the loop tries again after its next wait */
		record_fail(w, errno_fail(errno), errno, NULL);
		close(fd);
		return;
	}
	c->fd = fd;
	c->state = C_CONNECTING;
	ev.events = EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		record_fail(w, F_OTHER, errno, NULL);
		cconn_end(w, c);
	}
}

/*
 * The answer so far in c->buf: 0 incomplete, 1 complete and right, -1 wrong
 * (recorded). *close_after: the server said Connection: close.
 */
static int cconn_check(struct worker *w, struct cconn *c, bool *close_after)
{
	const char *end = memmem(c->buf, c->got, "\r\n\r\n", 4), *v;
	size_t hl, vl;
	char want[32], detail[96];
	int wl;

	if (!end) {
		if (c->got >= HEAD_MAX) {
			record_fail(w, F_BADREPLY, 0, "answer head too long");
			return -1;
		}
		return 0;
	}
	hl = (size_t)(end - c->buf) + 4;
	if (c->got < 12 || memcmp(c->buf, "HTTP/1.", 7) || memcmp(c->buf + 8, " 200", 4)) {
		snprintf(detail, sizeof(detail), "%.40s", c->buf);
		for (char *p = detail; *p; p++)
			if (*p == '\r' || *p == '\n')
				*p = ' ';
		record_fail(w, F_STATUS, 0, detail);
		return -1;
	}
	v = header(c->buf, hl, "content-length:", &vl);
	if (!v || strtol(v, NULL, 10) != body_len) {
		record_fail(w, F_BADREPLY, 0, v ? "wrong Content-Length" : "no Content-Length");
		return -1;
	}
	if (c->got < hl + (size_t)body_len)
		return 0;
	if (c->got > hl + (size_t)body_len) {
		record_fail(w, F_BADREPLY, 0, "bytes after the body");
		return -1;
	}
	if (memcmp(c->buf + hl, body, (size_t)body_len)) {
		record_fail(w, F_BADREPLY, 0, "wrong body");
		return -1;
	}
	wl = snprintf(want, sizeof(want), "/%u-%" PRIu32, w->id, c->seq);
	v = header(c->buf, hl, "x-req:", &vl);
	if (!v || vl != (size_t)wl || memcmp(v, want, vl)) {
		record_fail(w, F_BADREPLY, 0, "X-Req names another request");
		return -1;
	}
	v = header(c->buf, hl, "connection:", &vl);
	*close_after = v && has_token(v, vl, "close");
	return 1;
}

static void cconn_done(struct worker *w, struct cconn *c)
{
	uint64_t t = now_ns(), us = (t - c->started) / 1000;

	if (t < t_measure) {
		w->warm_ok++;
		return;
	}
	if (t > t_stop) {
		w->late_ok++;
		return;
	}
	w->ok++;
	w->lat[us / LAT_STEP_US < LAT_BUCKETS ? us / LAT_STEP_US : LAT_BUCKETS - 1]++;
	if (us > w->lat_max_us)
		w->lat_max_us = us;
}

static void cconn_event(struct worker *w, struct cconn *c, uint32_t events)
{
	size_t cap = HEAD_MAX + (size_t)body_len;
	bool close_after = false;
	ssize_t r;
	int err = 0, st;
	socklen_t el = sizeof(err);

	if (c->state == C_CONNECTING) {
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err) {
			record_fail(w, errno_fail(err), err, NULL);
			cconn_end(w, c);
			return;
		}
		cconn_send(w, c);
		return;
	}
	r = read(c->fd, c->buf + c->got, cap - c->got);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r < 0) {
		record_fail(w, errno_fail(errno), errno, NULL);
		cconn_end(w, c);
		return;
	}
	if (r == 0) {
		record_fail(w, F_SHORT, 0,
			    c->got ? "EOF inside an answer" : "EOF before an answer");
		cconn_end(w, c);
		return;
	}
	c->got += (size_t)r;
	st = cconn_check(w, c, &close_after);
	if (st == 0) {
		if (c->got == cap) {
			record_fail(w, F_BADREPLY, 0, "answer too long");
			cconn_end(w, c);
		}
		return;
	}
	if (st < 0) {
		cconn_end(w, c);
		return;
	}
	cconn_done(w, c);
	if (!keepalive || close_after || now_ns() >= t_stop) {
		if (keepalive && close_after)
			w->server_closes++;
		cconn_end(w, c);
		return;
	}
	c->started = now_ns();
	cconn_send(w, c);
}

static void *run_loop(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[256];
	uint64_t last_sweep = 0, tmo = (uint64_t)(timeout_seconds * 1e9);
	int active;

	for (int i = 0; i < nconns; i++) {
		w->c[i].fd = -1;
		cconn_start(w, &w->c[i]);
	}
	for (;;) {
		uint64_t now = now_ns();
		int n;

		if (now - last_sweep > 100000000u) { /* timeouts, every 100 ms */
			last_sweep = now;
			for (int i = 0; i < nconns; i++)
				if (w->c[i].state != C_IDLE && now - w->c[i].started > tmo) {
					record_fail(w, F_TIMEOUT, ETIMEDOUT, NULL);
					cconn_end(w, &w->c[i]);
				}
		}
		for (int i = 0; i < nconns; i++)
			if (w->c[i].state == C_IDLE)
				cconn_start(w, &w->c[i]);
		active = 0;
		for (int i = 0; i < nconns; i++)
			active += w->c[i].state != C_IDLE;
		if (!active && now_ns() >= t_stop)
			break;
		n = epoll_wait(w->ep, evs, 256, 50);
		for (int i = 0; i < n; i++)
			cconn_event(w, evs[i].data.ptr, evs[i].events);
	}
	return NULL;
}

static uint64_t percentile(const uint64_t *lat, uint64_t total, double p)
{
	uint64_t want = (uint64_t)(p * (double)total), seen = 0;

	if (!total)
		return 0;
	if (want >= total)
		want = total - 1;
	for (unsigned i = 0; i < LAT_BUCKETS; i++) {
		seen += lat[i];
		if (seen > want)
			return (uint64_t)(i + 1) * LAT_STEP_US; /* the bucket's upper edge */
	}
	return (uint64_t)LAT_BUCKETS * LAT_STEP_US;
}

/*
 * The latency histogram, for a CDF: the 10 us buckets merged into bins whose upper
 * edges grow by ~10% (a multiple of 10 us, at least 10 us apart; ~25 bins per decade),
 * printed as [upper edge us, count] pairs, empty bins left out.
 */
static void print_hist(const uint64_t *lat)
{
	uint64_t edge = LAT_STEP_US, count = 0;
	bool first = true;

	printf("[");
	for (unsigned i = 0; i < LAT_BUCKETS; i++) {
		uint64_t upper = (uint64_t)(i + 1) * LAT_STEP_US, next;

		count += lat[i];
		if (upper < edge && i + 1 < LAT_BUCKETS)
			continue;
		if (count) {
			printf("%s[%" PRIu64 ", %" PRIu64 "]", first ? "" : ", ", upper, count);
			first = false;
		}
		count = 0;
		next = edge + edge / 10;
		next -= next % LAT_STEP_US;
		edge = next > edge + LAT_STEP_US ? next : edge + LAT_STEP_US;
	}
	printf("]");
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20 || ch > 0x7e)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static int run(void)
{
	struct worker *ws = calloc((size_t)run_threads, sizeof(*ws));
	uint64_t *lat = calloc(LAT_BUCKETS, sizeof(*lat));
	uint64_t ok = 0, late = 0, warm_ok = 0, warm_fail = 0, fails[F_N] = {0}, nfail = 0,
		 lmax = 0, conns = 0, closes = 0;
	struct rusage ru;
	const struct worker *first = NULL;
	struct rlimit rl;
	uint64_t t_start;

	if (!ws || !lat)
		die("calloc");
	signal(SIGPIPE, SIG_IGN);
	/* THREADS x CONNS sockets plus what closes lingers: lift the soft limit */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	t_start = now_ns();
	t_measure = t_start + (uint64_t)(warmup_seconds * 1e9);
	t_stop = t_measure + (uint64_t)(run_seconds * 1e9);
	for (int i = 0; i < run_threads; i++) {
		ws[i].id = (unsigned)i;
		ws[i].ep = epoll_create1(EPOLL_CLOEXEC);
		ws[i].c = calloc((size_t)nconns, sizeof(struct cconn));
		ws[i].lat = calloc(LAT_BUCKETS, sizeof(uint32_t));
		if (ws[i].ep < 0 || !ws[i].c || !ws[i].lat)
			die("setup");
		for (int k = 0; k < nconns; k++)
			if (!(ws[i].c[k].buf = malloc(HEAD_MAX + (size_t)body_len)))
				die("malloc");
		if (pthread_create(&ws[i].th, NULL, run_loop, &ws[i]))
			die("pthread_create");
	}
	for (int i = 0; i < run_threads; i++) {
		struct worker *w = &ws[i];

		pthread_join(w->th, NULL);
		ok += w->ok;
		late += w->late_ok;
		warm_ok += w->warm_ok;
		warm_fail += w->warm_fail;
		conns += w->conns;
		closes += w->server_closes;
		for (int f = 0; f < F_N; f++) {
			fails[f] += w->fails[f];
			nfail += w->fails[f];
		}
		for (unsigned b = 0; b < LAT_BUCKETS; b++)
			lat[b] += w->lat[b];
		if (w->lat_max_us > lmax)
			lmax = w->lat_max_us;
		if (w->have_first && !first)
			first = w;
	}
	getrusage(RUSAGE_SELF, &ru);
	printf(
	    "{\"mode\": \"%s\", \"seconds\": %.3f, \"warmup_seconds\": %.3f, \"threads\": %d, "
	    "\"conns_per_thread\": %d, \"body_bytes\": %d, \"ok\": %" PRIu64
	    ", \"requests_per_s\": %.1f, \"late_ok\": %" PRIu64 ", \"warmup_ok\": %" PRIu64
	    ", \"warmup_failures\": %" PRIu64 ", \"connections\": %" PRIu64
	    ", \"server_closes\": %" PRIu64 ", \"failures\": %" PRIu64 ", \"failures_by_kind\": {",
	    keepalive ? "keepalive" : "close", run_seconds, warmup_seconds, run_threads, nconns,
	    body_len, ok, (double)ok / run_seconds, late, warm_ok, warm_fail, conns, closes, nfail);
	for (int f = 0; f < F_N; f++)
		printf("%s\"%s\": %" PRIu64, f ? ", " : "", fail_names[f], fails[f]);
	printf("}, \"first_failure\": ");
	if (first) {
		char msg[192];

		snprintf(msg, sizeof(msg), "%s%s%s%s%s", fail_names[first->first_fail],
			 first->first_errno ? ": " : "",
			 first->first_errno ? strerror(first->first_errno) : "",
			 first->first_detail[0] ? ": " : "", first->first_detail);
		json_str(msg);
	} else {
		printf("null");
	}
	printf(", \"latency_us\": {\"p50\": %" PRIu64 ", \"p90\": %" PRIu64 ", \"p99\": %" PRIu64
	       ", \"p999\": %" PRIu64 ", \"max\": %" PRIu64 "}, \"latency_hist_us\": ",
	       percentile(lat, ok, 0.50), percentile(lat, ok, 0.90), percentile(lat, ok, 0.99),
	       percentile(lat, ok, 0.999), lmax);
	print_hist(lat);
	printf(", \"cpu_seconds\": {\"user\": %.3f, \"sys\": %.3f}}\n", tv_s(ru.ru_utime),
	       tv_s(ru.ru_stime));
	return 0;
}

/* ---------------------------------------------------------------- main */

static void usage(void)
{
	fprintf(stderr,
		"usage: httpload serve [-a ADDR] [-p PORT] [-t THREADS] [-b BYTES]\n"
		"       httpload run -a ADDR -p PORT -H HOST [-m keepalive|close] [-b BYTES]\n"
		"                    [-d SECONDS] [-w WARMUP] [-t THREADS] [-c CONNS] [-T TIMEOUT]"
		" [-s SOURCES]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	bool is_run;
	int opt, port = -1;

	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "serve"))
		is_run = false;
	else if (!strcmp(argv[1], "run"))
		is_run = true;
	else
		usage();
	target.sin_family = AF_INET;
	target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	optind = 2;
	while ((opt = getopt(argc, argv, "a:p:t:d:w:c:T:s:H:m:b:")) != -1) {
		switch (opt) {
		case 'a':
			if (inet_pton(AF_INET, optarg, &target.sin_addr) != 1)
				usage();
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 't':
			run_threads = serve_threads = atoi(optarg);
			break;
		case 'd':
			run_seconds = atof(optarg);
			break;
		case 'w':
			warmup_seconds = atof(optarg);
			break;
		case 'c':
			nconns = atoi(optarg);
			break;
		case 'T':
			timeout_seconds = atof(optarg);
			break;
		case 's':
			nsources = atoi(optarg);
			break;
		case 'H':
			host = optarg;
			break;
		case 'm':
			if (!strcmp(optarg, "keepalive"))
				keepalive = true;
			else if (!strcmp(optarg, "close"))
				keepalive = false;
			else
				usage();
			break;
		case 'b':
			body_len = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || run_threads < 1 || run_threads > MAX_THREADS || nconns < 1 ||
	    nconns > MAX_CONNS || run_seconds <= 0 || warmup_seconds < 0 || timeout_seconds <= 0 ||
	    port > 65535 || body_len < 1 || body_len > MAX_BODY ||
	    (is_run && (port <= 0 || !host || strlen(host) > 255)))
		usage();
	make_body();
	if (!is_run) {
		serve_port = port < 0 ? 0 : port;
		return serve();
	}
	target.sin_port = htons((uint16_t)port);
	return run();
}

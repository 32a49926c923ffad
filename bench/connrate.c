// SPDX-License-Identifier: Apache-2.0
/*
 * connrate: new TCP connections per second, keep-alive off (make bench).
 *
 *   connrate serve [-a ADDR] [-p PORT] [-t THREADS]
 *       The service: prints "port N" on stdout once it listens, then serves
 *       until SIGTERM. Each connection: read the 16-byte request, write the
 *       64-byte reply (which carries the request's sequence number), wait
 *       for the client's FIN, close. THREADS epoll loops, each on its own
 *       SO_REUSEPORT socket of one port.
 *
 *   connrate echo [-a ADDR] [-p PORT] [-t THREADS]
 *       The hold's service: prints "port N" once it listens, then echoes
 *       whatever a connection sends until it closes, until SIGTERM. THREADS
 *       epoll loops as above; the soft RLIMIT_NOFILE is lifted to the hard one.
 *
 *   connrate run -a ADDR -p PORT [-d SECONDS] [-w WARMUP] [-t THREADS]
 *                [-c INFLIGHT] [-T TIMEOUT]
 *       The load: THREADS epoll loops, each keeping INFLIGHT connections in
 *       flight. A connection: non-blocking connect, send the request, read
 *       the whole reply and check it, close (the client closes first, as an
 *       HTTP/1.0 client without keep-alive does). Connections finished in the
 *       first WARMUP seconds are not counted; after WARMUP + SECONDS no new
 *       connection starts and those in flight get TIMEOUT seconds to finish.
 *       Prints one JSON object: connections that finished inside the
 *       measured window, their rate, failures by kind (refused, reset,
 *       short reply, wrong reply, timeout, no local port, other), latency
 *       (connect to last reply byte) percentiles, and this process's CPU.
 *
 * Exit status: 0 when it ran (failures are in the JSON), 2 on bad usage or
 * a setup error. Only Linux, only the C library.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQ_LEN	     16
#define REPLY_LEN    64
#define MAX_THREADS  64
#define MAX_INFLIGHT 4096
#define LAT_BUCKETS  200000 /* 10 us each: up to 2 s; slower ones land in the last */
#define LAT_STEP_US  10

enum fail {
	F_REFUSED,
	F_RESET,
	F_SHORT,
	F_BADREPLY,
	F_TIMEOUT,
	F_ADDRNOTAVAIL,
	F_OTHER,
	F_N,
};

static const char *const fail_names[F_N] = {
    "refused", "reset", "short_reply", "bad_reply", "timeout", "no_local_port", "other",
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "connrate: %s: %s\n", what, strerror(errno));
	exit(2);
}

static struct sockaddr_in target;

/* ---------------------------------------------------------------- serve */

static int serve_port;
static int serve_threads = 1;

struct sconn {
	int fd;
	unsigned got;
	bool replied;
	char req[REQ_LEN];
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
			char buf[256];
			ssize_t r;

			if (!c) {
				int fd;

				while ((fd = accept4(lfd, NULL, NULL,
						     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					c = calloc(1, sizeof(*c));
					if (!c) {
						close(fd);
						continue;
					}
					c->fd = fd;
					ev.events = EPOLLIN | EPOLLRDHUP;
					ev.data.ptr = c;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
						close(fd);
						free(c);
					}
				}
				continue;
			}
			r = read(c->fd, buf, sizeof(buf));
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) { /* the client's FIN (or a reset): done */
				sconn_close(ep, c);
				continue;
			}
			if (c->replied)
				continue; /* nothing more is expected; wait for the FIN */
			for (ssize_t k = 0; k < r && c->got < REQ_LEN; k++)
				c->req[c->got++] = buf[k];
			if (c->got == REQ_LEN) {
				char reply[REPLY_LEN];

				/* "pong " + the request's 10-digit sequence + padding + "\n" */
				memset(reply, '.', sizeof(reply));
				memcpy(reply, "pong ", 5);
				memcpy(reply + 5, c->req + 5, 10);
				reply[REPLY_LEN - 1] = '\n';
				if (write(c->fd, reply, sizeof(reply)) != (ssize_t)sizeof(reply)) {
					sconn_close(ep, c);
					continue;
				}
				c->replied = true;
			}
		}
	}
	return NULL;
}

/* connrate echo: what a connection sends comes back; its EOF closes it */
static void *echo_loop(void *arg)
{
	int lfd = (int)(intptr_t)arg, ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = -1}, evs[256];

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll");
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			char buf[4096];
			ssize_t r;

			if (fd < 0) {
				while ((fd = accept4(lfd, NULL, NULL,
						     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					ev.events = EPOLLIN;
					ev.data.fd = fd;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
						close(fd);
				}
				continue;
			}
			r = read(fd, buf, sizeof(buf));
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			/* a few bytes at a time: the socket's buffer takes them at once */
			if (r <= 0 || write(fd, buf, (size_t)r) != r)
				close(fd);
		}
	}
	return NULL;
}

static int serve(bool echo)
{
	pthread_t th[MAX_THREADS];
	int fds[MAX_THREADS];
	struct sockaddr_in a;
	socklen_t al = sizeof(a);

	signal(SIGPIPE, SIG_IGN);
	if (echo) {
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	fds[0] = listen_reuseport(serve_port);
	if (getsockname(fds[0], (struct sockaddr *)&a, &al) < 0)
		die("getsockname");
	for (int i = 1; i < serve_threads; i++)
		fds[i] = listen_reuseport(ntohs(a.sin_port));
	for (int i = 0; i < serve_threads; i++)
		if (pthread_create(&th[i], NULL, echo ? echo_loop : serve_loop,
				   (void *)(intptr_t)fds[i]))
			die("pthread_create");
	printf("port %u\n", ntohs(a.sin_port));
	fflush(stdout);
	for (int i = 0; i < serve_threads; i++)
		pthread_join(th[i], NULL);
	return 0;
}

/* ---------------------------------------------------------------- run */

static double run_seconds = 3, warmup_seconds = 0.5, timeout_seconds = 5;
static int run_threads = 2, inflight = 16, nsources;
static uint64_t t_start, t_measure, t_stop;

enum cstate { C_IDLE, C_CONNECTING, C_READING };

struct cconn {
	int fd;
	enum cstate state;
	uint64_t started;
	unsigned got;
	uint32_t seq;
	char reply[REPLY_LEN];
};

struct worker {
	pthread_t th;
	int ep;
	uint32_t seq;
	uint64_t ok, late_ok, warm_ok, warm_fail;
	uint64_t fails[F_N];
	int first_errno;
	enum fail first_fail;
	bool have_first;
	uint32_t *lat; /* LAT_BUCKETS counters */
	uint64_t lat_max_us;
	struct cconn *c;
};

static void record_fail(struct worker *w, enum fail f, int err)
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

static void cconn_start(struct worker *w, struct cconn *c)
{
	struct epoll_event ev;
	int fd;

	if (now_ns() >= t_stop)
		return;
	c->started = now_ns();
	c->got = 0;
	c->seq = ++w->seq;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		record_fail(w, F_OTHER, errno);
		return;
	}
	if (nsources) {
		/* a source address of 127.0.0.2 and up, the port left to connect */
		struct sockaddr_in src = {.sin_family = AF_INET};
		int one = 1;

		src.sin_addr.s_addr = htonl(0x7f000002u + (c->seq % (uint32_t)nsources));
		if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0 ||
		    bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			record_fail(w, errno_fail(errno), errno);
			close(fd);
			return;
		}
	}
	if (connect(fd, (struct sockaddr *)&target, sizeof(target)) < 0 && errno != EINPROGRESS) {
		/* the slot stays idle: the loop tries again after its next wait */
		record_fail(w, errno_fail(errno), errno);
		close(fd);
		return;
	}
	c->fd = fd;
	c->state = C_CONNECTING;
	ev.events = EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		record_fail(w, F_OTHER, errno);
		cconn_end(w, c);
	}
}

static void cconn_done(struct worker *w, struct cconn *c)
{
	uint64_t t = now_ns(), us = (t - c->started) / 1000;
	char want[11];

	snprintf(want, sizeof(want), "%010" PRIu32, c->seq);
	if (memcmp(c->reply, "pong ", 5) || memcmp(c->reply + 5, want, 10) ||
	    c->reply[REPLY_LEN - 1] != '\n') {
		record_fail(w, F_BADREPLY, 0);
		return;
	}
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
	struct epoll_event ev;
	char req[REQ_LEN + 1];
	int err = 0;
	socklen_t el = sizeof(err);
	ssize_t r;

	if (c->state == C_CONNECTING) {
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err) {
			record_fail(w, errno_fail(err), err);
			cconn_end(w, c);
			return;
		}
		snprintf(req, sizeof(req), "ping %010" PRIu32 "\n", c->seq);
		if (write(c->fd, req, REQ_LEN) != REQ_LEN) {
			record_fail(w, errno_fail(errno), errno);
			cconn_end(w, c);
			return;
		}
		c->state = C_READING;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
			record_fail(w, F_OTHER, errno);
			cconn_end(w, c);
		}
		return;
	}
	r = read(c->fd, c->reply + c->got, REPLY_LEN - c->got);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r < 0) {
		record_fail(w, errno_fail(errno), errno);
		cconn_end(w, c);
		return;
	}
	if (r == 0) {
		record_fail(w, F_SHORT, 0);
		cconn_end(w, c);
		return;
	}
	c->got += (unsigned)r;
	if (c->got < REPLY_LEN)
		return;
	cconn_done(w, c);
	cconn_end(w, c);
}

static void *run_loop(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[256];
	uint64_t last_sweep = 0, tmo = (uint64_t)(timeout_seconds * 1e9);
	int active;

	for (int i = 0; i < inflight; i++) {
		w->c[i].fd = -1;
		cconn_start(w, &w->c[i]);
	}
	for (;;) {
		uint64_t now = now_ns();
		int n;

		if (now - last_sweep > 100000000u) { /* timeouts, every 100 ms */
			last_sweep = now;
			for (int i = 0; i < inflight; i++)
				if (w->c[i].state != C_IDLE && now - w->c[i].started > tmo) {
					record_fail(w, F_TIMEOUT, ETIMEDOUT);
					cconn_end(w, &w->c[i]);
				}
		}
		for (int i = 0; i < inflight; i++)
			if (w->c[i].state == C_IDLE)
				cconn_start(w, &w->c[i]);
		active = 0;
		for (int i = 0; i < inflight; i++)
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

static int run(void)
{
	struct worker *ws = calloc((size_t)run_threads, sizeof(*ws));
	uint64_t *lat = calloc(LAT_BUCKETS, sizeof(*lat));
	uint64_t ok = 0, late = 0, warm_ok = 0, warm_fail = 0, fails[F_N] = {0}, nfail = 0,
		 lmax = 0;
	struct rusage ru;
	const struct worker *first = NULL;
	struct rlimit rl;

	if (!ws || !lat)
		die("calloc");
	signal(SIGPIPE, SIG_IGN);
	/* THREADS x INFLIGHT sockets plus what closes lingers: lift the soft limit */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	t_start = now_ns();
	t_measure = t_start + (uint64_t)(warmup_seconds * 1e9);
	t_stop = t_measure + (uint64_t)(run_seconds * 1e9);
	for (int i = 0; i < run_threads; i++) {
		ws[i].ep = epoll_create1(EPOLL_CLOEXEC);
		ws[i].c = calloc((size_t)inflight, sizeof(struct cconn));
		ws[i].lat = calloc(LAT_BUCKETS, sizeof(uint32_t));
		if (ws[i].ep < 0 || !ws[i].c || !ws[i].lat)
			die("setup");
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
	printf("{\"seconds\": %.3f, \"warmup_seconds\": %.3f, \"threads\": %d, \"inflight\": %d, "
	       "\"ok\": %" PRIu64 ", \"conns_per_s\": %.1f, \"late_ok\": %" PRIu64
	       ", \"warmup_ok\": %" PRIu64 ", \"warmup_failures\": %" PRIu64
	       ", \"failures\": %" PRIu64 ", \"failures_by_kind\": {",
	       run_seconds, warmup_seconds, run_threads, inflight, ok, (double)ok / run_seconds,
	       late, warm_ok, warm_fail, nfail);
	for (int f = 0; f < F_N; f++)
		printf("%s\"%s\": %" PRIu64, f ? ", " : "", fail_names[f], fails[f]);
	printf("}, \"first_failure\": ");
	if (first)
		printf("\"%s%s%s\"", fail_names[first->first_fail], first->first_errno ? ": " : "",
		       first->first_errno ? strerror(first->first_errno) : "");
	else
		printf("null");
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
	fprintf(stderr, "usage: connrate serve|echo [-a ADDR] [-p PORT] [-t THREADS]\n"
			"       connrate run -a ADDR -p PORT [-d SECONDS] [-w WARMUP] [-t THREADS]"
			" [-c INFLIGHT] [-T TIMEOUT]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	bool is_run, is_echo = false;
	int opt, port = -1;

	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "serve"))
		is_run = false;
	else if (!strcmp(argv[1], "echo"))
		is_run = false, is_echo = true;
	else if (!strcmp(argv[1], "run"))
		is_run = true;
	else
		usage();
	target.sin_family = AF_INET;
	target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	optind = 2;
	while ((opt = getopt(argc, argv, "a:p:t:d:w:c:T:s:")) != -1) {
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
			inflight = atoi(optarg);
			break;
		case 'T':
			timeout_seconds = atof(optarg);
			break;
		case 's':
			nsources = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || run_threads < 1 || run_threads > MAX_THREADS || inflight < 1 ||
	    inflight > MAX_INFLIGHT || run_seconds <= 0 || warmup_seconds < 0 ||
	    timeout_seconds <= 0 || port > 65535 || (is_run && port <= 0))
		usage();
	if (!is_run) {
		serve_port = port < 0 ? 0 : port;
		return serve(is_echo);
	}
	target.sin_port = htons((uint16_t)port);
	return run();
}

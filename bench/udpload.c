// SPDX-License-Identifier: Apache-2.0
/*
 * udpload: UDP request/response datagrams per second and loss (make bench, part 10).
 *
 *   udpload echo [-a ADDR] [-p PORT]
 *       The service: prints "port N" on stdout once it is bound, then sends
 *       every datagram back to its source unchanged, until SIGTERM. One
 *       thread, recvmmsg / sendmmsg in batches.
 *
 *   udpload run -a ADDR -p PORT [-s SIZE] [-c WINDOW] [-d SECONDS] [-w WARMUP]
 *               [-L LOSS_MS] [-n MAX]
 *       The load: one connected UDP socket (one flow) keeps WINDOW requests
 *       of SIZE bytes outstanding. A request carries its slot and sequence
 *       number and a pattern derived from them; every answer is checked
 *       byte for byte. A request unanswered for LOSS_MS is lost and its slot
 *       sends the next one at once. Answers in the first WARMUP seconds are
 *       not counted; after WARMUP + SECONDS (or MAX requests in all) no
 *       request is sent and those outstanding get LOSS_MS to come back.
 *       Prints one JSON object: answers inside the measured window and their
 *       rate; of the requests sent inside it, how many were answered and
 *       how many lost; answers that came after their request was given up
 *       (late) and wrong ones (bad); latency (send to answer) percentiles
 *       and this process's CPU.
 *
 * Exit status: 0 when it ran (loss is in the JSON), 2 on bad usage or a setup
 * error. Only Linux, only the C library.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HDR_LEN	    16
#define MAX_SIZE    65000
#define MAX_WINDOW  4096
#define BATCH	    64
#define LAT_BUCKETS 100000 /* 10 us each: up to 1 s; slower ones land in the last */
#define LAT_STEP_US 10
#define MAGIC	    0x6e554450u /* "nUDP" */

struct slot {
	uint64_t seq;	  /* of the request outstanding; 0: none */
	uint64_t sent_ns; /* when it was sent */
	bool counted;	  /* sent inside the measured window */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "udpload: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void usage(void)
{
	fprintf(stderr, "usage: udpload echo [-a ADDR] [-p PORT]\n"
			"       udpload run -a ADDR -p PORT [-s SIZE] [-c WINDOW] [-d SECONDS]"
			" [-w WARMUP] [-L LOSS_MS] [-n MAX]\n");
	exit(2);
}

/* ---------------------------------------------------------------- echo */

_Noreturn static void echo(const struct sockaddr_in *addr)
{
	static char bufs[BATCH][MAX_SIZE];
	struct sockaddr_in from[BATCH];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_in me;
	socklen_t ml = sizeof(me);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), big = 4 << 20;

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0)
		die("bind");
	if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0)
		die("getsockname");
	printf("port %d\n", ntohs(me.sin_port));
	fflush(stdout);
	for (;;) {
		int n, off = 0;

		for (int i = 0; i < BATCH; i++) {
			iov[i].iov_base = bufs[i];
			iov[i].iov_len = MAX_SIZE;
			memset(&msgs[i], 0, sizeof(msgs[i]));
			msgs[i].msg_hdr.msg_name = &from[i];
			msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("recvmmsg");
		}
		for (int i = 0; i < n; i++)
			iov[i].iov_len = msgs[i].msg_len;
		while (off < n) {
			int s = sendmmsg(fd, msgs + off, (unsigned)(n - off), 0);

			if (s <= 0) {
				if (s < 0 && errno == EINTR)
					continue;
				/* a source gone (ECONNREFUSED and the like): drop the rest */
				break;
			}
			off += s;
		}
	}
}

/* ---------------------------------------------------------------- run */

static void fill(unsigned char *b, size_t size, uint32_t slot, uint64_t seq)
{
	uint32_t m = MAGIC;

	memcpy(b, &m, 4);
	memcpy(b + 4, &slot, 4);
	memcpy(b + 8, &seq, 8);
	for (size_t i = HDR_LEN; i < size; i++)
		b[i] = (unsigned char)(seq * 131u + i);
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

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static int run(const struct sockaddr_in *target, size_t size, int window, double seconds,
	       double warmup, double loss_ms, uint64_t max_req)
{
	struct slot *slots = calloc((size_t)window, sizeof(*slots));
	uint64_t *lat = calloc(LAT_BUCKETS, sizeof(*lat));
	unsigned char *out = malloc(size), *want = malloc(size), *in = malloc(MAX_SIZE + 1);
	uint64_t seq = 0, ok = 0, warm_ok = 0, late_ok = 0, sent = 0, answered = 0, lost = 0,
		 warm_lost = 0, stale = 0, bad = 0, send_err = 0, refused = 0, lmax = 0,
		 sent_all = 0;
	uint64_t t_start, t_measure, t_stop, tmo = (uint64_t)(loss_ms * 1e6), last_sweep = 0;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), big = 4 << 20;
	int outstanding = 0, first_errno = 0;
	struct rusage ru;

	if (!slots || !lat || !out || !want || !in)
		die("calloc");
	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (connect(fd, (const struct sockaddr *)target, sizeof(*target)) < 0)
		die("connect");
	t_start = now_ns();
	t_measure = t_start + (uint64_t)(warmup * 1e9);
	t_stop = t_measure + (uint64_t)(seconds * 1e9);
	for (;;) {
		uint64_t now = now_ns();
		bool sending = now < t_stop && sent_all < max_req;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		/* requests unanswered for LOSS_MS are lost: every millisecond */
		if (now - last_sweep >= 1000000u) {
			last_sweep = now;
			for (int i = 0; i < window; i++) {
				struct slot *s = &slots[i];

				if (!s->seq || now - s->sent_ns < tmo)
					continue;
				if (s->counted)
					lost++;
				else
					warm_lost++;
				s->seq = 0;
				outstanding--;
			}
		}
		/* every free slot sends its next request */
		for (int i = 0; sending && i < window && sent_all < max_req; i++) {
			struct slot *s = &slots[i];

			if (s->seq)
				continue;
			fill(out, size, (uint32_t)i, ++seq);
			if (send(fd, out, size, 0) != (ssize_t)size) {
				if (!first_errno)
					first_errno = errno;
				if (errno == ECONNREFUSED)
					refused++;
				else
					send_err++;
				break; /* try again after the next wait */
			}
			s->seq = seq;
			s->sent_ns = now_ns();
			s->counted = s->sent_ns >= t_measure && s->sent_ns < t_stop;
			sent += s->counted;
			sent_all++;
			outstanding++;
		}
		if (!sending && !outstanding)
			break;
		if (poll(&pfd, 1, 1) < 0 && errno != EINTR)
			die("poll");
		for (;;) {
			ssize_t r = recv(fd, in, MAX_SIZE + 1, 0);
			uint32_t m, si;
			uint64_t q, t, us;
			struct slot *s;

			if (r < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				if (!first_errno)
					first_errno = errno;
				if (errno == ECONNREFUSED) {
					refused++; /* an ICMP error for an earlier datagram */
					continue;
				}
				die("recv");
			}
			t = now_ns();
			if ((size_t)r != size) {
				bad++;
				continue;
			}
			memcpy(&m, in, 4);
			memcpy(&si, in + 4, 4);
			memcpy(&q, in + 8, 8);
			if (m != MAGIC || si >= (uint32_t)window || !q || q > seq) {
				bad++;
				continue;
			}
			fill(want, size, si, q);
			if (memcmp(in, want, size)) {
				bad++;
				continue;
			}
			s = &slots[si];
			if (s->seq != q) {
				stale++; /* given up already, or a duplicate */
				continue;
			}
			us = (t - s->sent_ns) / 1000;
			answered += s->counted;
			s->seq = 0;
			outstanding--;
			if (t < t_measure) {
				warm_ok++;
				continue;
			}
			if (t >= t_stop) {
				late_ok++;
				continue;
			}
			ok++;
			lat[us / LAT_STEP_US < LAT_BUCKETS ? us / LAT_STEP_US : LAT_BUCKETS - 1]++;
			if (us > lmax)
				lmax = us;
		}
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"seconds\": %.3f, \"warmup_seconds\": %.3f, \"size\": %zu, \"window\": %d, "
	       "\"loss_ms\": %.1f, \"ok\": %" PRIu64 ", \"per_s\": %.1f, \"warmup_ok\": %" PRIu64
	       ", \"late_ok\": %" PRIu64 ", \"sent\": %" PRIu64 ", \"answered\": %" PRIu64
	       ", \"lost\": %" PRIu64 ", \"loss\": %.6f, \"warmup_lost\": %" PRIu64
	       ", \"sent_all\": %" PRIu64 ", \"stale\": %" PRIu64 ", \"bad\": %" PRIu64
	       ", \"refused\": %" PRIu64 ", \"send_errors\": %" PRIu64 ", \"first_error\": ",
	       seconds, warmup, size, window, loss_ms, ok, (double)ok / seconds, warm_ok, late_ok,
	       sent, answered, lost, sent ? (double)lost / (double)sent : 0.0, warm_lost, sent_all,
	       stale, bad, refused, send_err);
	if (first_errno)
		printf("\"%s\"", strerror(first_errno));
	else
		printf("null");
	printf(", \"latency_us\": {\"p50\": %" PRIu64 ", \"p90\": %" PRIu64 ", \"p99\": %" PRIu64
	       ", \"max\": %" PRIu64 "}, \"cpu_seconds\": {\"user\": %.3f, \"sys\": %.3f}}\n",
	       percentile(lat, ok, 0.50), percentile(lat, ok, 0.90), percentile(lat, ok, 0.99),
	       lmax, tv_s(ru.ru_utime), tv_s(ru.ru_stime));
	close(fd);
	free(slots);
	free(lat);
	free(out);
	free(want);
	free(in);
	return 0;
}

/* ---------------------------------------------------------------- main */

static double num(const char *s, double lo, double hi)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= lo && v <= hi))
		usage();
	return v;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	double seconds = 2, warmup = 0.3, loss_ms = 200;
	int opt, window = 64, port = 0;
	size_t size = 64;
	uint64_t max_req = 100000000u;
	bool is_run;

	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "run"))
		is_run = true;
	else if (!strcmp(argv[1], "echo"))
		is_run = false;
	else
		usage();
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	optind = 2;
	while ((opt = getopt(argc, argv, "a:p:s:c:d:w:L:n:")) != -1) {
		switch (opt) {
		case 'a':
			if (inet_pton(AF_INET, optarg, &addr.sin_addr) != 1)
				usage();
			break;
		case 'p':
			port = (int)num(optarg, is_run ? 1 : 0, 65535);
			break;
		case 's':
			size = (size_t)num(optarg, HDR_LEN, MAX_SIZE);
			break;
		case 'c':
			window = (int)num(optarg, 1, MAX_WINDOW);
			break;
		case 'd':
			seconds = num(optarg, 0.1, 600);
			break;
		case 'w':
			warmup = num(optarg, 0, 60);
			break;
		case 'L':
			loss_ms = num(optarg, 1, 10000);
			break;
		case 'n':
			max_req = (uint64_t)num(optarg, 1, 1e12);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || (is_run && !port))
		usage();
	addr.sin_port = htons((uint16_t)port);
	if (is_run)
		return run(&addr, size, window, seconds, warmup, loss_ms, max_req);
	echo(&addr);
}

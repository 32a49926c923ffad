// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the two ends of a support stream without an edge between them:
 * client/supgw.c (the device's gateway: a real loopback listener and its threads)
 * and client/supstream.c's supporter end (supc_stream), joined by a TCP connection
 * to the gateway, as the engine's dial makes one. An echo server is the service.
 * 1 MiB each way checked byte for byte with both half-closes; the wrong PSK;
 * an unknown session, a service index it does not have, an expired session, a
 * stream whose engine header (the BIND's session) is missing or names another
 * session than SUP1 (a supporter of one session reaching another); ending
 * a session closes its open connection at once and refuses the next; the limit
 * of connections per session.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/supgw.h"
#include "client/supstream.h"
#include "proxy.h"
#include "util.h"

#define SID "sup-abcdefgh12"
#define MIB (1u << 20)

static struct supgw *gw;
static int echo_lfd = -1;
static uint16_t echo_port;
static uint8_t psk[SUP_PSK_LEN];

/* ---------- the service: echo, then FIN after the peer's FIN ---------- */

static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint8_t buf[16384];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write_all(fd, buf, (size_t)n) < 0)
			break;
	shutdown(fd, SHUT_WR);
	close(fd);
	return NULL;
}

static void *echo_main(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_t t;
		int fd = accept(echo_lfd, NULL, NULL);

		if (fd < 0)
			return NULL;
		pthread_create(&t, NULL, echo_conn, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
}

static int listen_lo(uint16_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	getsockname(fd, (struct sockaddr *)&a, &l);
	*port = ntohs(a.sin_port);
	return fd;
}

static void hold(const char *id, int64_t expires_at)
{
	struct sup_services svc;
	char allow[SUP_ALLOW_MAX + 1], err[SUP_ERR_MAX];

	snprintf(allow, sizeof(allow), "echo=127.0.0.1:%u,web=127.0.0.1:1", echo_port);
	assert_int_equal(sup_services_parse(allow, &svc, err, sizeof(err)), 0);
	assert_int_equal(supgw_session_set(gw, id, psk, &svc, expires_at), 0);
}

static int group_setup(void **state)
{
	char err[128];
	pthread_t t;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	RAND_bytes(psk, sizeof(psk));
	echo_lfd = listen_lo(&echo_port);
	pthread_create(&t, NULL, echo_main, NULL);
	pthread_detach(t);
	gw = supgw_start(err, sizeof(err));
	assert_non_null(gw);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	supgw_stop(gw);
	shutdown(echo_lfd, SHUT_RDWR);
	return 0;
}

/* ---------- the supporter's end, in a thread ---------- */

struct sup_run {
	pthread_t t;
	int plain[2]; /* [0] the pump's, [1] the test's (blocking) */
	int sfd;
	uint8_t psk[SUP_PSK_LEN];
	char session[SUP_ID_LEN + 1];
	unsigned service;
	int rc;
	bool wrong;
	struct sup_pump_res res;
};

static void *sup_thread(void *arg)
{
	struct sup_run *r = arg;
	struct sio *s = calloc(1, sizeof(*s));

	sio_init(s, r->sfd, NULL, false);
	r->rc = supc_stream(s, r->plain[0], r->psk, r->session, r->service, now_ms() + 5000, NULL,
			    &r->res, &r->wrong);
	close(r->plain[0]);
	close(r->sfd);
	free(s);
	return NULL;
}

/* A supporter for session/service whose stream comes to the gateway's listener of index
 * listener (the BIND's index, as relayd checked it) with the engine's header naming the
 * BIND's session bound (NULL: no header). */
static struct sup_run *sup_start_bound(const uint8_t *key, const char *session, unsigned service,
				       unsigned listener, const char *bound)
{
	struct sup_run *r = calloc(1, sizeof(*r));
	struct sockaddr_storage ss;
	socklen_t sl;
	struct timeval tv = {.tv_sec = 10};
	uint8_t src[16] = {[10] = 0xff, [11] = 0xff, 127, 0, 0, 1}, dst[16] = {0}, h[64];

	assert_int_equal(supgw_addr(gw, listener, &ss, &sl), 0);
	r->sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(r->sfd, (struct sockaddr *)&ss, sl), 0);
	if (bound) { /* as the engine writes it (dial.c, rule.proxy 2) from the BIND */
		memcpy(dst, bound, strlen(bound));
		assert_int_equal(proxy_header(2, src, htons(40000), dst, 0, h, sizeof(h)),
				 SUPGW_BIND_LEN);
		assert_int_equal(write_all(r->sfd, h, SUPGW_BIND_LEN), 0);
	}
	assert_int_equal(fd_nonblock(r->sfd), 0);
	setsockopt(r->sfd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r->plain), 0);
	assert_int_equal(fd_nonblock(r->plain[0]), 0);
	/* every wait of the test's end has a deadline */
	setsockopt(r->plain[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(r->plain[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memcpy(r->psk, key, SUP_PSK_LEN);
	str_copy(r->session, sizeof(r->session), session);
	r->service = service;
	pthread_create(&r->t, NULL, sup_thread, r);
	return r;
}

static struct sup_run *sup_start_at(const uint8_t *key, const char *session, unsigned service,
				    unsigned listener)
{
	return sup_start_bound(key, session, service, listener, session);
}

static struct sup_run *sup_start(const uint8_t *key, const char *session, unsigned service)
{
	return sup_start_at(key, session, service, service < SUP_SERVICES_MAX ? service : 0);
}

static void sup_join(struct sup_run *r)
{
	pthread_join(r->t, NULL);
	close(r->plain[1]);
}

struct writer {
	int fd;
	const uint8_t *buf;
	size_t n;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	write_all(w->fd, w->buf, w->n);
	shutdown(w->fd, SHUT_WR);
	return NULL;
}

/* Reads until EOF (or the deadline of SO_RCVTIMEO): the count. */
static size_t read_all(int fd, uint8_t *buf, size_t cap)
{
	size_t have = 0;
	ssize_t n;

	while (have < cap && (n = read(fd, buf + have, cap - have)) > 0)
		have += (size_t)n;
	return have;
}

static bool wait_conns(const char *id, unsigned want, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (supgw_conns(gw, id) != want)
		if (now_ms() > end)
			return false;
		else
			usleep(10000);
	return true;
}

/* ---------- tests ---------- */

static void test_echo_mib(void **state)
{
	uint8_t *out = malloc(MIB), *in = malloc(MIB + 1);
	struct writer w;
	pthread_t wt;
	struct sup_run *r;

	(void)state;
	hold(SID, (int64_t)time(NULL) + 3600);
	RAND_bytes(out, MIB);
	r = sup_start(psk, SID, 0);
	w = (struct writer){.fd = r->plain[1], .buf = out, .n = MIB};
	pthread_create(&wt, NULL, writer_main, &w);
	/* the echo's bytes come back, then its FIN after ours: both half-closes crossed */
	assert_int_equal(read_all(r->plain[1], in, MIB + 1), MIB);
	assert_memory_equal(in, out, MIB);
	pthread_join(wt, NULL);
	sup_join(r);
	assert_int_equal(r->rc, 0);
	assert_false(r->wrong);
	assert_int_equal(r->res.up, MIB);
	assert_int_equal(r->res.down, MIB);
	assert_true(wait_conns(SID, 0, 5000));
	free(r);
	free(out);
	free(in);
}

static void test_wrong_psk(void **state)
{
	uint8_t bad[SUP_PSK_LEN];
	struct sup_run *r;

	(void)state;
	hold(SID, (int64_t)time(NULL) + 3600);
	memcpy(bad, psk, sizeof(bad));
	bad[7] ^= 1;
	r = sup_start(bad, SID, 0);
	sup_join(r);
	assert_int_equal(r->rc, -1);
	assert_true(r->wrong);
	assert_string_equal(r->res.why, "wrong pre-shared key for support session " SID);
	free(r);
}

/* The gateway closes without a word: the supporter's line says so. */
static void refused_at(const char *id, unsigned service, unsigned listener)
{
	struct sup_run *r = sup_start_at(psk, id, service, listener);

	sup_join(r);
	assert_int_equal(r->rc, -1);
	assert_false(r->wrong);
	assert_non_null(strstr(r->res.why, "closed the stream without answering"));
	free(r);
}

static void refused(const char *id, unsigned service)
{
	refused_at(id, service, service);
}

/* A stream the edge joined to session bound whose SUP1 names id: refused. */
static void refused_bound(const char *id, const char *bound)
{
	struct sup_run *r = sup_start_bound(psk, id, 0, 0, bound);

	sup_join(r);
	assert_int_equal(r->rc, -1);
	assert_false(r->wrong);
	assert_non_null(strstr(r->res.why, "closed the stream without answering"));
	free(r);
}

static void test_refusals(void **state)
{
	(void)state;
	hold(SID, (int64_t)time(NULL) + 3600);
	refused("sup-zzzzzzzzzz", 0); /* not held */
	refused(SID, 2);	      /* the session has two services */
	hold("sup-expired000", (int64_t)time(NULL) - 1);
	refused("sup-expired000", 0);
	supgw_session_drop(gw, "sup-expired000", "test");
	/* the edge allowed SID (approved); SUP1 names another session held here (pending) */
	hold("sup-pending000", (int64_t)time(NULL) + 3600);
	refused_bound("sup-pending000", SID);
	refused_bound(SID, "sup-pending000");
	refused_bound(SID, NULL); /* no header: not from the engine */
	supgw_session_drop(gw, "sup-pending000", "test");
}

static void test_service_down(void **state)
{
	uint8_t b[4];
	struct sup_run *r;

	(void)state;
	hold(SID, (int64_t)time(NULL) + 3600);
	r = sup_start(psk, SID, 1); /* web=127.0.0.1:1: nothing listens */
	assert_true(read(r->plain[1], b, sizeof(b)) <= 0);
	sup_join(r);
	assert_int_equal(r->rc, -1);
	assert_false(r->wrong);
	free(r);
}

static void test_drop_closes_at_once(void **state)
{
	struct sup_run *r[3];
	uint8_t b[8];
	uint64_t t0;

	(void)state;
	hold(SID, (int64_t)time(NULL) + 3600);
	for (int i = 0; i < 3; i++) {
		r[i] = sup_start(psk, SID, 0);
		assert_int_equal(write(r[i]->plain[1], "ping", 4), 4);
		assert_int_equal(read(r[i]->plain[1], b, 4), 4);
		assert_memory_equal(b, "ping", 4);
	}
	assert_int_equal(supgw_conns(gw, SID), 3);
	t0 = now_ms();
	supgw_session_drop(gw, SID, "ended by its owner");
	for (int i = 0; i < 3; i++) {
		assert_true(read(r[i]->plain[1], b, sizeof(b)) <= 0);
		sup_join(r[i]);
		assert_int_equal(r[i]->rc, -1);
		free(r[i]);
	}
	assert_true(now_ms() - t0 < 1000);
	assert_true(wait_conns(SID, 0, 2000));
	refused(SID, 0); /* and nothing connects after */
}

static void test_per_session_limit(void **state)
{
	struct sup_run *r[SUPGW_PER_SESSION];
	uint8_t b[4];

	(void)state;
	hold(SID, (int64_t)time(NULL) + 3600);
	for (int i = 0; i < SUPGW_PER_SESSION; i++) {
		r[i] = sup_start(psk, SID, 0);
		assert_int_equal(write(r[i]->plain[1], "ping", 4), 4);
		assert_int_equal(read(r[i]->plain[1], b, 4), 4);
	}
	refused(SID, 0); /* the ninth */
	for (int i = 0; i < SUPGW_PER_SESSION; i++) {
		shutdown(r[i]->plain[1], SHUT_WR);
		assert_int_equal(read(r[i]->plain[1], b, 4), 0);
		sup_join(r[i]);
		assert_int_equal(r[i]->rc, 0);
		free(r[i]);
	}
	assert_true(wait_conns(SID, 0, 5000));
	supgw_session_drop(gw, SID, "test");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_echo_mib),
	    cmocka_unit_test(test_wrong_psk),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_service_down),
	    cmocka_unit_test(test_drop_closes_at_once),
	    cmocka_unit_test(test_per_session_limit),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* SPDX-License-Identifier: Apache-2.0 */
#include "supconnect.h"
#include "client.h"
#include "link_proto.h"
#include "log.h"
#include "msg.h"
#include "supstream.h"
#include "tls/tls.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define SUPC_SETUP_MS 10000 /* TLS, HELLO, WELCOME, OPENED and the inner handshake */

struct supc {
	struct supc_opts *o;
	SSL_CTX *ctx;
	char host[256];
	uint16_t port;
	char auth[SUP_HEX_STR];
	int quit_pipe[2];
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned nconns;
	atomic_bool any_ok; /* a connection got through to the device once */
	volatile int stop;
	struct supc_conn {
		bool used;
		int fd, lfd; /* the local connection, the link (-1 until open) */
		unsigned long no;
		struct supc *sc;
	} c[SUPC_CONNS];
};

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

/* One line on stdout (stderr: err), whole. */
static void __attribute__((format(printf, 2, 3))) say(bool err, const char *fmt, ...)
{
	char msg[512], esc[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&out_lock);
	fprintf(err ? stderr : stdout, "%s%s\n", err ? "nave: " : "",
		log_esc_str(msg, esc, sizeof(esc)));
	fflush(err ? stderr : stdout);
	pthread_mutex_unlock(&out_lock);
}

/* Asks the main loop to end with status code. */
static void quit(struct supc *sc, int code)
{
	char b = (char)code;

	(void)!write(sc->quit_pipe[1], &b, 1); /* full: a quit is on its way already */
}

/* TCP and TLS to the server (non-blocking fd): 0, or -1 with err. */
static int link_open(struct supc *sc, int *fdp, SSL **sslp, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	uint64_t deadline = now_ms() + SUPC_SETUP_MS;
	char ps[8];
	int fd, r, one = 1;
	SSL *ssl = NULL;

	*fdp = -1;
	*sslp = NULL;
	snprintf(ps, sizeof(ps), "%u", sc->port);
	if (getaddrinfo(sc->host, ps, &hints, &ai) != 0 || !ai) {
		snprintf(err, errlen, "cannot resolve %s", sc->host);
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	*fdp = fd;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	r = connect(fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (r < 0 && errno != EINPROGRESS) {
		snprintf(err, errlen, "cannot connect to %s: %s", sc->o->server, strerror(errno));
		return -1;
	}
	struct pollfd pf = {.fd = fd, .events = POLLOUT};
	socklen_t el = sizeof(r);

	if (poll(&pf, 1, SUPC_SETUP_MS) <= 0) {
		snprintf(err, errlen, "cannot connect to %s: timed out", sc->o->server);
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &r, &el) < 0 || r) {
		snprintf(err, errlen, "cannot connect to %s: %s", sc->o->server, strerror(r));
		return -1;
	}
	ssl = SSL_new(sc->ctx);
	if (!ssl) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	*sslp = ssl;
	tls_client_set_host(ssl, sc->host);
	SSL_set_fd(ssl, fd);
	for (;;) {
		int e;

		ERR_clear_error();
		r = SSL_connect(ssl);
		if (r == 1)
			return 0;
		e = SSL_get_error(ssl, r);
		if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
		    now_ms() < deadline && !sc->stop) {
			pf.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
			poll(&pf, 1, 200);
			continue;
		}
		char tb[256];

		if (e == SSL_ERROR_SSL && tls_verify_error(ssl, tb, sizeof(tb)))
			snprintf(err, errlen, "%s", tb);
		else if (e == SSL_ERROR_SSL)
			snprintf(err, errlen, "TLS handshake with %s failed: %s", sc->o->server,
				 tls_last_error(tb, sizeof(tb)));
		else
			snprintf(err, errlen, "TLS handshake with %s failed: %s", sc->o->server,
				 now_ms() >= deadline ? "timed out" : "connection closed");
		return -1;
	}
}

/* Exactly n bytes of s (not framed) before deadline: 0, or -1 (closed, timed out). */
static int read_exact(struct supc *sc, struct sio *s, uint8_t *buf, size_t n, uint64_t deadline)
{
	size_t have = 0;

	while (have < n) {
		ssize_t r = sio_read(s, buf + have, n - have);
		uint64_t now = now_ms();

		if (r > 0) {
			have += (size_t)r;
			continue;
		}
		if (r != -EAGAIN || now >= deadline || sc->stop)
			return -1;
		struct pollfd pf = {.fd = s->fd, .events = POLLIN};

		if (!sio_pending(s))
			poll(&pf, 1, (int)(deadline - now > 200 ? 200 : deadline - now));
	}
	return 0;
}

/*
 * HELLO, then WELCOME or error, then OPENED on the link. 0 with the service's index
 * in the session's list (WELCOME's service_index: what SUP1 carries); or -1 with the
 * line to print in err, *refused set when the server said no (its reason).
 */
static int link_setup(struct supc *sc, struct sio *s, unsigned *index, char *err, size_t errlen,
		      bool *refused)
{
	uint64_t deadline = now_ms() + SUPC_SETUP_MS;
	json_t *h, *m = NULL;
	uint8_t hdr[4], *body = NULL, *enc;
	struct msg_reader mr;
	size_t n;
	int rc = -1;

	*refused = false;
	h = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s}", "type", LINK_MSG_HELLO, "version",
		      LINK_VERSION, "mode", "support", "session", sc->o->session, "service",
		      sc->o->service, "auth", sc->auth, "client_version", NAVE_VERSION);
	enc = h ? msg_encode(h, &n) : NULL;
	json_decref(h);
	if (!enc || sio_send(s, enc, n, deadline) < 0) {
		free(enc);
		snprintf(err, errlen, "cannot send the HELLO to %s", sc->o->server);
		return -1;
	}
	free(enc);
	if (read_exact(sc, s, hdr, 4, deadline) < 0) {
		snprintf(err, errlen, "the server %s closed the link without an answer",
			 sc->o->server);
		return -1;
	}
	n = frame_get32(hdr);
	if (n == 0 || n > MSG_MAX) {
		snprintf(err, errlen, "a malformed answer from the server");
		return -1;
	}
	body = malloc(n);
	msg_reader_init(&mr);
	if (!body || read_exact(sc, s, body, n, deadline) < 0 || msg_reader_feed(&mr, hdr, 4) < 0 ||
	    msg_reader_feed(&mr, body, n) < 0 || msg_reader_next(&mr, &m, err, errlen) != 1) {
		if (!err[0] || body)
			snprintf(err, errlen, "a malformed or missing answer from the server");
		goto out;
	}
	const char *type = msg_str(m, "type");

	if (!strcmp(type, LINK_MSG_ERROR)) {
		*refused = true;
		snprintf(err, errlen, "server refused: %s", msg_str(m, "reason") ?: "no reason");
		goto out;
	}
	if (strcmp(type, LINK_MSG_WELCOME)) {
		snprintf(err, errlen, "an unexpected answer from the server");
		goto out;
	}
	long long si = msg_int(m, "service_index", -1);

	if (si < 0 || si >= SUP_SERVICES_MAX) {
		snprintf(err, errlen,
			 "the server's welcome names no service index (a server too old "
			 "for support streams)");
		goto out;
	}
	*index = (unsigned)si;
	/* from now on: frames, OPENED first */
	s->framed = true;
	frame_rx_init(&s->frx, false);
	s->frx.allow_opened = true;
	for (;;) {
		uint8_t b[1];
		ssize_t r = sio_read(s, b, 0);
		uint64_t now = now_ms();

		if (r == -EPROTO)
			break;
		if (r == -EAGAIN && now < deadline && !sc->stop) {
			struct pollfd pf = {.fd = s->fd, .events = POLLIN};

			if (!sio_pending(s))
				poll(&pf, 1, 200);
			continue;
		}
		snprintf(err, errlen, "the server did not open the stream to the device");
		goto out;
	}
	s->frx.allow_opened = false;
	if (s->frx.opened.status != LINK_OPEN_OK) {
		*refused = true;
		snprintf(err, errlen, "server refused: %s",
			 link_open_status_name(s->frx.opened.status));
		goto out;
	}
	rc = 0;
out:
	json_decref(m);
	msg_reader_free(&mr);
	free(body);
	return rc;
}

static void *conn_main(void *arg)
{
	struct supc_conn *c = arg;
	struct supc *sc = c->sc;
	struct sio *s = calloc(1, sizeof(*s));
	struct sup_pump_res res = {.why = ""};
	char err[SUP_ERR_MAX * 2] = "";
	uint64_t t0 = now_ms();
	bool refused = false, wrong = false;
	unsigned index = 0;
	SSL *ssl = NULL;
	int lfd = -1;

	if (!s) {
		say(true, "connection %lu: out of memory", c->no);
		goto out;
	}
	if (link_open(sc, &lfd, &ssl, err, sizeof(err)) < 0) {
		say(true, "%s", err);
		if (c->no == 1 && !atomic_load(&sc->any_ok))
			quit(sc, 1);
		goto out;
	}
	pthread_mutex_lock(&sc->lock);
	c->lfd = lfd;
	if (sc->stop)
		shutdown(lfd, SHUT_RDWR);
	pthread_mutex_unlock(&sc->lock);
	sio_init(s, lfd, ssl, false);
	if (link_setup(sc, s, &index, err, sizeof(err), &refused) < 0) {
		say(true, "%s", err);
		if (c->no == 1 && !atomic_load(&sc->any_ok))
			quit(sc, 1);
		goto out;
	}
	if (supc_stream(s, c->fd, sc->o->psk, sc->o->session, index, now_ms() + SUPC_SETUP_MS,
			&sc->stop, &res, &wrong) < 0) {
		if (wrong) {
			say(true, "%s", res.why);
			quit(sc, 1);
			goto out;
		}
		sio_reset(s);
		struct linger lg = {.l_onoff = 1, .l_linger = 0};

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	atomic_store(&sc->any_ok, true);
	say(false, "connection %lu closed after %llu ms: %s (%llu bytes sent, %llu received)",
	    c->no, (unsigned long long)(now_ms() - t0),
	    res.why[0] ? res.why : "ended by both sides", (unsigned long long)res.up,
	    (unsigned long long)res.down);
out:
	free(s);
	pthread_mutex_lock(&sc->lock);
	if (ssl)
		SSL_free(ssl);
	if (lfd >= 0)
		close(lfd);
	close(c->fd);
	c->used = false;
	sc->nconns--;
	pthread_cond_broadcast(&sc->idle);
	pthread_mutex_unlock(&sc->lock);
	return NULL;
}

static void accept_one(struct supc *sc, int lsn, unsigned long *next_no)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct supc_conn *c = NULL;
	pthread_attr_t at;
	pthread_t t;
	int fd = accept4(lsn, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	pthread_mutex_lock(&sc->lock);
	for (unsigned i = 0; i < SUPC_CONNS && !c; i++)
		if (!sc->c[i].used)
			c = &sc->c[i];
	if (c) {
		memset(c, 0, sizeof(*c));
		c->used = true;
		c->fd = fd;
		c->lfd = -1;
		c->sc = sc;
		c->no = ++*next_no;
		sc->nconns++;
	}
	pthread_mutex_unlock(&sc->lock);
	if (!c) {
		close(fd);
		say(true, "a local connection refused: %d connections already", SUPC_CONNS);
		return;
	}
	say(false, "connection %lu: opening", c->no);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &at, conn_main, c) != 0) {
		pthread_mutex_lock(&sc->lock);
		close(fd);
		c->used = false;
		sc->nconns--;
		pthread_mutex_unlock(&sc->lock);
		say(true, "connection %lu: cannot start a thread", c->no);
	}
	pthread_attr_destroy(&at);
}

/* HOST[:PORT] of the server (port 8443 when not given). */
static int split_server(const char *server, char *host, size_t hostlen, uint16_t *port)
{
	if (cfg_parse_hostport(server, host, hostlen, port) == 0)
		return 0;
	if (!str_copy(host, hostlen, server) || !*host)
		return -1;
	*port = 8443;
	return 0;
}

int supconnect_run(struct supc_opts *o)
{
	struct supc *sc = calloc(1, sizeof(*sc));
	struct sockaddr_storage la;
	socklen_t ll = sizeof(la);
	unsigned long next_no = 0;
	char err[512];
	sigset_t set;
	int lsn = -1, sfd = -1, rc = 1;
	struct timespec ts;

	if (!sc) {
		say(true, "out of memory");
		return 1;
	}
	sc->o = o;
	sc->quit_pipe[0] = sc->quit_pipe[1] = -1;
	pthread_mutex_init(&sc->lock, NULL);
	pthread_cond_init(&sc->idle, NULL);
	if (split_server(o->server, sc->host, sizeof(sc->host), &sc->port) < 0) {
		say(true, "bad server address '%s'", o->server);
		goto done;
	}
	if (sup_auth_key(o->psk, sc->auth) < 0) {
		say(true, "cannot derive the auth key");
		goto done;
	}
	sc->ctx = tls_client_ctx(o->ca[0] ? o->ca : NULL, o->fingerprint[0] ? o->fingerprint : NULL,
				 true, err, sizeof(err));
	if (!sc->ctx) {
		say(true, "%s", err);
		goto done;
	}
	lsn = client_listen_local(o->addr, o->port, true, false, err, sizeof(err));
	if (lsn < 0) {
		say(true, "%s", err);
		goto done;
	}
	if (getsockname(lsn, (struct sockaddr *)&la, &ll) == 0)
		o->port = ntohs(la.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&la)->sin6_port
							 : ((struct sockaddr_in *)&la)->sin_port);
	if (pipe2(sc->quit_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		say(true, "pipe: %s", strerror(errno));
		goto done;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	say(false, "support session %s: connect to %s%s%s:%u for service %s", o->session,
	    strchr(o->addr, ':') ? "[" : "", o->addr, strchr(o->addr, ':') ? "]" : "", o->port,
	    o->service);
	rc = 0;
	for (;;) {
		struct pollfd pf[3] = {{.fd = lsn, .events = POLLIN},
				       {.fd = sfd, .events = POLLIN},
				       {.fd = sc->quit_pipe[0], .events = POLLIN}};

		if (poll(pf, 3, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents & POLLIN) {
			say(false, "stopping");
			break;
		}
		if (pf[2].revents & POLLIN) {
			char b = 0;

			if (read(sc->quit_pipe[0], &b, 1) == 1)
				rc = b;
			break;
		}
		if (pf[0].revents & POLLIN)
			accept_one(sc, lsn, &next_no);
	}
	/* every connection ends now; their threads go within a moment */
	close(lsn);
	lsn = -1;
	pthread_mutex_lock(&sc->lock);
	sc->stop = 1;
	for (unsigned i = 0; i < SUPC_CONNS; i++)
		if (sc->c[i].used) {
			shutdown(sc->c[i].fd, SHUT_RDWR);
			if (sc->c[i].lfd >= 0)
				shutdown(sc->c[i].lfd, SHUT_RDWR);
		}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 3;
	while (sc->nconns && pthread_cond_timedwait(&sc->idle, &sc->lock, &ts) == 0)
		;
	pthread_mutex_unlock(&sc->lock);
done:
	if (lsn >= 0)
		close(lsn);
	if (sfd >= 0)
		close(sfd);
	explicit_bzero(sc->auth, sizeof(sc->auth));
	pthread_mutex_lock(&sc->lock);
	bool left = sc->nconns != 0;

	pthread_mutex_unlock(&sc->lock);
	if (left) /* a thread still holds sc and the key: both end with the process */
		return rc;
	explicit_bzero(o->psk, sizeof(o->psk));
	SSL_CTX_free(sc->ctx);
	if (sc->quit_pipe[0] >= 0) {
		close(sc->quit_pipe[0]);
		close(sc->quit_pipe[1]);
	}
	pthread_mutex_destroy(&sc->lock);
	pthread_cond_destroy(&sc->idle);
	free(sc);
	return rc;
}

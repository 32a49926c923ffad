/* SPDX-License-Identifier: Apache-2.0 */
#include "supgw.h"
#include "log.h"
#include "supstream.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct gw_session {
	bool used;
	char id[SUP_ID_LEN + 1];
	uint8_t psk[SUP_PSK_LEN];
	struct sup_services svc;
	int64_t expires_at;
};

struct gw_conn {
	struct supgw *gw;
	bool used;
	volatile int killed; /* the session was dropped (or the gateway stops) */
	int fd, tfd;	     /* the stream (from the engine), the service (-1 until connected) */
	char session[SUP_ID_LEN + 1]; /* "" until SUP1 named a session held here */
	char bound[SUP_ID_LEN + 1];   /* the session relayd joined the stream to (the BIND's) */
	unsigned index;		      /* the service index of the listener it came to */
	unsigned long no;
};

struct supgw {
	/* one listener per service index: the index relayd checked (the BIND's) is the
	   listener a stream arrives on, and SUP1 must name the same one */
	int lfd[SUP_SERVICES_MAX], wake[2];
	struct sockaddr_in addr[SUP_SERVICES_MAX];
	pthread_t thr;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	bool quit;
	unsigned nconns;
	unsigned long next_no;
	struct gw_session s[SUPGW_SESSIONS];
	struct gw_conn c[SUPGW_CONNS];
	uint64_t log_at; /* refusals: one line a second, the others counted */
	unsigned log_quiet;
};

/* A refusal's line, at most one a second (lock held or not: its own fields only). */
static void __attribute__((format(printf, 2, 3)))
gw_refuse_log(struct supgw *gw, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	uint64_t now = now_ms();
	unsigned quiet;

	pthread_mutex_lock(&gw->lock);
	if (now - gw->log_at < 1000 && gw->log_at) {
		gw->log_quiet++;
		pthread_mutex_unlock(&gw->lock);
		return;
	}
	gw->log_at = now;
	quiet = gw->log_quiet;
	gw->log_quiet = 0;
	pthread_mutex_unlock(&gw->lock);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (quiet)
		log_warn("%s (and %u more refused in the last second)", line, quiet);
	else
		log_warn("%s", line);
}

static struct gw_session *session_find(struct supgw *gw, const char *id)
{
	for (unsigned i = 0; i < SUPGW_SESSIONS; i++)
		if (gw->s[i].used && !strcmp(gw->s[i].id, id))
			return &gw->s[i];
	return NULL;
}

/* Lock held: every connection of id (NULL: all) shut down now. */
static void kill_conns(struct supgw *gw, const char *id)
{
	for (unsigned i = 0; i < SUPGW_CONNS; i++) {
		struct gw_conn *c = &gw->c[i];

		if (!c->used || (id && strcmp(c->session, id)))
			continue;
		c->killed = 1;
		shutdown(c->fd, SHUT_RDWR);
		if (c->tfd >= 0)
			shutdown(c->tfd, SHUT_RDWR);
	}
}

static unsigned count_conns(struct supgw *gw, const char *id)
{
	unsigned n = 0;

	for (unsigned i = 0; i < SUPGW_CONNS; i++)
		n += gw->c[i].used && (!id || !strcmp(gw->c[i].session, id));
	return n;
}

/* A non-blocking TCP connection to host:port within ms; the fd or -1 with err. */
static int connect_target(const char *host, uint16_t port, int ms, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	char ps[8];
	int fd = -1, r, one = 1;

	snprintf(ps, sizeof(ps), "%u", port);
	if (getaddrinfo(host, ps, &hints, &ai) != 0 || !ai) {
		snprintf(err, errlen, "cannot resolve %s", host);
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto fail;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
		snprintf(err, errlen, "%s", strerror(errno));
		goto fail;
	}
	struct pollfd pf = {.fd = fd, .events = POLLOUT};

	if (poll(&pf, 1, ms) <= 0) {
		snprintf(err, errlen, "timed out");
		goto fail;
	}
	socklen_t el = sizeof(r);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &r, &el) < 0 || r) {
		snprintf(err, errlen, "%s", strerror(r));
		goto fail;
	}
	freeaddrinfo(ai);
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return -1;
}

/*
 * The header the engine writes ahead of a support stream (supgw.h): PROXY v2, TCP over
 * IPv6, whose destination address is the BIND's dst_addr, the session id relayd joined
 * the stream to (14 bytes and 2 zeros). That id into out (SUP_ID_LEN + 1), or false.
 */
static bool bind_header(const uint8_t h[SUPGW_BIND_LEN], char out[SUP_ID_LEN + 1])
{
	static const uint8_t head[16] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
					 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 36};

	if (memcmp(h, head, sizeof(head)) || h[32 + SUP_ID_LEN] || h[33 + SUP_ID_LEN])
		return false;
	memcpy(out, h + 32, SUP_ID_LEN);
	out[SUP_ID_LEN] = 0;
	return sup_id_valid(out);
}

/*
 * The device's handshake on c: 0 with tx/rx ready and the service's target in
 * host/port, or -1 (logged; close).
 */
static int conn_handshake(struct gw_conn *c, struct sio *s, struct sup_hs *hs, struct sup_tx *tx,
			  struct sup_rx *rx, char *host, size_t hostlen, uint16_t *port)
{
	struct supgw *gw = c->gw;
	uint64_t deadline = now_ms() + SUPGW_HS_MS;
	enum sup_hs_res hr = SUP_HS_MORE;
	uint8_t buf[256], hdr[SUPGW_BIND_LEN];
	size_t n, hlen = 0;
	const uint8_t *o;

	sup_hs_device(hs);
	for (;;) {
		o = sup_hs_out(hs, &n);
		if (n) {
			if (sio_send(s, o, n, deadline) < 0)
				return -1;
			sup_hs_sent(hs, n);
		}
		if (hr == SUP_HS_DONE)
			break;
		ssize_t r = sio_read(s, buf, sizeof(buf));

		if (r == -EAGAIN) {
			uint64_t now = now_ms();
			struct pollfd pf = {.fd = s->fd, .events = POLLIN};

			if (now >= deadline || c->killed) {
				gw_refuse_log(gw, "support stream %lu: no handshake in time",
					      c->no);
				return -1;
			}
			poll(&pf, 1, (int)(deadline - now > 500 ? 500 : deadline - now));
			continue;
		}
		if (r <= 0)
			return -1; /* closed or reset before the handshake was done: nothing to say
				    */
		size_t off = 0;

		/* the engine's header first: the session of the BIND */
		if (hlen < SUPGW_BIND_LEN) {
			off = SUPGW_BIND_LEN - hlen < (size_t)r ? SUPGW_BIND_LEN - hlen : (size_t)r;
			memcpy(hdr + hlen, buf, off);
			hlen += off;
			if (hlen == SUPGW_BIND_LEN && !bind_header(hdr, c->bound)) {
				gw_refuse_log(gw,
					      "support stream %lu refused: it does not start "
					      "with the edge's session (PROXY v2 header)",
					      c->no);
				return -1;
			}
		}
		while (off < (size_t)r && hr != SUP_HS_DONE) {
			size_t used = 0;

			hr = sup_hs_feed(hs, buf + off, (size_t)r - off, &used);
			off += used;
			if (hr == SUP_HS_ERR) {
				char b[SUP_ERR_MAX * 4];

				gw_refuse_log(gw, "support stream %lu refused: %s", c->no,
					      log_esc_str(hs->err, b, sizeof(b)));
				return -1;
			}
			if (hr == SUP_HS_PSK) {
				struct gw_session *ss;
				const char *why = NULL;
				uint8_t psk[SUP_PSK_LEN];

				pthread_mutex_lock(&gw->lock);
				ss = session_find(gw, hs->session);
				if (!ss)
					why = "no such support session here (ended, or never held)";
				else if ((int64_t)time(NULL) >= ss->expires_at)
					why = "the support session has expired";
				else if (strcmp(hs->session, c->bound))
					why = "the handshake names another session than the edge "
					      "allowed";
				else if (hs->service >= ss->svc.n)
					why = "no such service in the support session";
				else if (hs->service != c->index)
					why = "the handshake names another service than the edge "
					      "allowed";
				else if (count_conns(gw, hs->session) >= SUPGW_PER_SESSION)
					why = "too many connections of the support session";
				if (!why) {
					memcpy(psk, ss->psk, sizeof(psk));
					str_copy(host, hostlen, ss->svc.s[hs->service].host);
					*port = ss->svc.s[hs->service].port;
					str_copy(c->session, sizeof(c->session), hs->session);
				}
				pthread_mutex_unlock(&gw->lock);
				if (why) {
					gw_refuse_log(gw, "support stream %lu for %s refused: %s",
						      c->no, hs->session, why);
					return -1;
				}
				sup_hs_psk(hs, psk);
				explicit_bzero(psk, sizeof(psk));
				hr = SUP_HS_MORE;
				continue;
			}
			if (used == 0)
				break;
		}
		if (hr == SUP_HS_DONE && off < (size_t)r) {
			/* records the supporter sent at once after tag_s: keep them for the pump */
			memcpy(s->raw, buf + off, (size_t)r - off);
			s->roff = 0;
			s->rlen = (size_t)r - off;
		}
	}
	if (sup_hs_finish(hs, tx, rx) < 0)
		return -1;
	return 0;
}

static void *conn_main(void *arg)
{
	struct gw_conn *c = arg;
	struct supgw *gw = c->gw;
	struct sio *s = calloc(1, sizeof(*s));
	struct sup_hs *hs = calloc(1, sizeof(*hs));
	struct sup_tx *tx = calloc(1, sizeof(*tx));
	struct sup_rx *rx = calloc(1, sizeof(*rx));
	struct sup_pump_res res;
	char host[SUP_SVC_HOST_MAX + 1], err[SUP_SVC_HOST_MAX + 64];
	uint16_t port = 0;
	uint64_t t0 = now_ms();
	int tfd;

	if (!s || !hs || !tx || !rx)
		goto out;
	sio_init(s, c->fd, NULL, false);
	if (conn_handshake(c, s, hs, tx, rx, host, sizeof(host), &port) < 0)
		goto out;
	tfd = connect_target(host, port, SUPGW_CONNECT_MS, err, sizeof(err));
	if (tfd < 0) {
		log_warn("support session %s: stream %lu: cannot connect to %s:%u: %s", c->session,
			 c->no, host, port, err);
		sio_reset(s);
		goto out;
	}
	pthread_mutex_lock(&gw->lock);
	c->tfd = tfd;
	if (c->killed)
		shutdown(tfd, SHUT_RDWR);
	pthread_mutex_unlock(&gw->lock);
	log_info("support session %s: stream %lu connected to %s:%u", c->session, c->no, host,
		 port);
	if (sup_pump(tfd, s, tx, rx, &c->killed, &res) < 0) {
		if (c->killed)
			snprintf(res.why, sizeof(res.why), "the session ended");
		sio_reset(s);
		struct linger lg = {.l_onoff = 1, .l_linger = 0};

		setsockopt(tfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	log_info("support session %s: stream %lu closed after %llu ms: %s (%llu bytes to the "
		 "service, %llu from it)",
		 c->session, c->no, (unsigned long long)(now_ms() - t0),
		 res.why[0] ? res.why : "ended by both sides", (unsigned long long)res.down,
		 (unsigned long long)res.up);
out:
	if (hs)
		sup_hs_wipe(hs);
	if (tx)
		sup_tx_wipe(tx);
	if (rx)
		sup_rx_wipe(rx);
	free(hs);
	free(tx);
	free(rx);
	free(s);
	pthread_mutex_lock(&gw->lock);
	close(c->fd);
	if (c->tfd >= 0)
		close(c->tfd);
	c->used = false;
	c->session[0] = 0;
	gw->nconns--;
	pthread_cond_broadcast(&gw->idle);
	pthread_mutex_unlock(&gw->lock);
	return NULL;
}

static void expire(struct supgw *gw)
{
	int64_t now = (int64_t)time(NULL);

	pthread_mutex_lock(&gw->lock);
	for (unsigned i = 0; i < SUPGW_SESSIONS; i++) {
		struct gw_session *ss = &gw->s[i];

		if (ss->used && now >= ss->expires_at) {
			kill_conns(gw, ss->id);
			explicit_bzero(ss, sizeof(*ss));
		}
	}
	pthread_mutex_unlock(&gw->lock);
}

static void gw_accept(struct supgw *gw, unsigned index)
{
	pthread_attr_t at;
	pthread_t t;
	struct gw_conn *c = NULL;
	int one = 1;
	int fd = accept4(gw->lfd[index], NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pthread_mutex_lock(&gw->lock);
	for (unsigned i = 0; i < SUPGW_CONNS && !c; i++)
		if (!gw->c[i].used)
			c = &gw->c[i];
	if (!c || gw->quit) {
		pthread_mutex_unlock(&gw->lock);
		close(fd);
		gw_refuse_log(gw, "support stream refused: %u connections already", SUPGW_CONNS);
		return;
	}
	memset(c, 0, sizeof(*c));
	c->gw = gw;
	c->used = true;
	c->fd = fd;
	c->tfd = -1;
	c->index = index;
	c->no = ++gw->next_no;
	gw->nconns++;
	pthread_mutex_unlock(&gw->lock);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 * 1024);
	if (pthread_create(&t, &at, conn_main, c) != 0) {
		pthread_mutex_lock(&gw->lock);
		close(fd);
		c->used = false;
		gw->nconns--;
		pthread_mutex_unlock(&gw->lock);
		log_warn("support stream refused: cannot start a thread");
	}
	pthread_attr_destroy(&at);
}

static void *gw_main(void *arg)
{
	struct supgw *gw = arg;

	for (;;) {
		struct pollfd pf[SUP_SERVICES_MAX + 1];
		bool quit;

		for (unsigned i = 0; i < SUP_SERVICES_MAX; i++)
			pf[i] = (struct pollfd){.fd = gw->lfd[i], .events = POLLIN};
		pf[SUP_SERVICES_MAX] = (struct pollfd){.fd = gw->wake[0], .events = POLLIN};
		poll(pf, SUP_SERVICES_MAX + 1, 500);
		pthread_mutex_lock(&gw->lock);
		quit = gw->quit;
		pthread_mutex_unlock(&gw->lock);
		if (quit)
			break;
		for (unsigned i = 0; i < SUP_SERVICES_MAX; i++)
			if (pf[i].revents & POLLIN)
				gw_accept(gw, i);
		expire(gw);
	}
	return NULL;
}

struct supgw *supgw_start(char *err, size_t errlen)
{
	struct supgw *gw = calloc(1, sizeof(*gw));

	if (!gw) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	gw->wake[0] = gw->wake[1] = -1;
	for (unsigned i = 0; i < SUP_SERVICES_MAX; i++)
		gw->lfd[i] = -1;
	for (unsigned i = 0; i < SUP_SERVICES_MAX; i++) {
		socklen_t sl = sizeof(gw->addr[i]);

		gw->lfd[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		gw->addr[i].sin_family = AF_INET;
		gw->addr[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (gw->lfd[i] < 0 ||
		    bind(gw->lfd[i], (struct sockaddr *)&gw->addr[i], sizeof(gw->addr[i])) < 0 ||
		    listen(gw->lfd[i], 64) < 0 ||
		    getsockname(gw->lfd[i], (struct sockaddr *)&gw->addr[i], &sl) < 0) {
			snprintf(err, errlen, "support gateway: cannot listen on 127.0.0.1: %s",
				 strerror(errno));
			goto fail;
		}
	}
	if (pipe2(gw->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "support gateway: pipe: %s", strerror(errno));
		goto fail;
	}
	pthread_mutex_init(&gw->lock, NULL);
	pthread_cond_init(&gw->idle, NULL);
	if (pthread_create(&gw->thr, NULL, gw_main, gw) != 0) {
		snprintf(err, errlen, "support gateway: cannot start its thread");
		pthread_mutex_destroy(&gw->lock);
		pthread_cond_destroy(&gw->idle);
		goto fail;
	}
	return gw;
fail:
	for (unsigned i = 0; i < SUP_SERVICES_MAX; i++)
		if (gw->lfd[i] >= 0)
			close(gw->lfd[i]);
	if (gw->wake[0] >= 0) {
		close(gw->wake[0]);
		close(gw->wake[1]);
	}
	free(gw);
	return NULL;
}

int supgw_addr(const struct supgw *gw, unsigned index, struct sockaddr_storage *ss, socklen_t *len)
{
	if (index >= SUP_SERVICES_MAX)
		return -1;
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, &gw->addr[index], sizeof(gw->addr[index]));
	*len = sizeof(gw->addr[index]);
	return 0;
}

int supgw_session_set(struct supgw *gw, const char *id, const uint8_t psk[SUP_PSK_LEN],
		      const struct sup_services *svc, int64_t expires_at)
{
	struct gw_session *ss;

	if (!gw || !sup_id_valid(id))
		return -1;
	pthread_mutex_lock(&gw->lock);
	ss = session_find(gw, id);
	for (unsigned i = 0; i < SUPGW_SESSIONS && !ss; i++)
		if (!gw->s[i].used)
			ss = &gw->s[i];
	if (ss) {
		ss->used = true;
		str_copy(ss->id, sizeof(ss->id), id);
		memcpy(ss->psk, psk, SUP_PSK_LEN);
		ss->svc = *svc;
		ss->expires_at = expires_at;
	}
	pthread_mutex_unlock(&gw->lock);
	return ss ? 0 : -1;
}

void supgw_session_drop(struct supgw *gw, const char *id, const char *why)
{
	struct gw_session *ss;
	unsigned n;

	if (!gw || !id || !*id)
		return;
	pthread_mutex_lock(&gw->lock);
	n = count_conns(gw, id);
	kill_conns(gw, id);
	if ((ss = session_find(gw, id)))
		explicit_bzero(ss, sizeof(*ss));
	pthread_mutex_unlock(&gw->lock);
	if (n)
		log_info("support session %s: %s: %u connection%s closed", id, why, n,
			 n == 1 ? "" : "s");
}

unsigned supgw_conns(struct supgw *gw, const char *id)
{
	unsigned n;

	pthread_mutex_lock(&gw->lock);
	n = count_conns(gw, id);
	pthread_mutex_unlock(&gw->lock);
	return n;
}

void supgw_stop(struct supgw *gw)
{
	struct timespec ts;

	if (!gw)
		return;
	pthread_mutex_lock(&gw->lock);
	gw->quit = true;
	kill_conns(gw, NULL);
	pthread_mutex_unlock(&gw->lock);
	/* a full pipe is fine: the thread looks at quit within 500 ms anyway */
	(void)!write(gw->wake[1], "q", 1);
	pthread_join(gw->thr, NULL);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	pthread_mutex_lock(&gw->lock);
	while (gw->nconns && pthread_cond_timedwait(&gw->idle, &gw->lock, &ts) == 0)
		;
	bool left = gw->nconns != 0;

	pthread_mutex_unlock(&gw->lock);
	for (unsigned i = 0; i < SUP_SERVICES_MAX; i++)
		close(gw->lfd[i]);
	close(gw->wake[0]);
	close(gw->wake[1]);
	if (left) /* a thread still holds gw: leave it to the process's end */
		return;
	explicit_bzero(gw->s, sizeof(gw->s));
	pthread_mutex_destroy(&gw->lock);
	pthread_cond_destroy(&gw->idle);
	free(gw);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * nave client runtime. The main thread keeps the control link (TLS over a
 * non-blocking socket, length-prefixed JSON) and the local control socket in
 * one poll() loop; the relay engine's worker keeps the data-link pool and
 * moves the bytes. A lost control link ends the data-link session (busy links
 * finish their streams) and the loop reconnects with capped exponential
 * backoff and jitter. Rule changes arrive on the local socket, go to the
 * server, and are persisted in the config when granted.
 */
#include "client.h"

#include "datapath/engine.h"
#include "datapath/xprt_tls.h"
#include "frame.h"
#include "domain.h"
#include "webroot.h"
#include "link_proto.h"
#include "log.h"
#include "svc.h"
#include "msg.h"
#include "rulemsg.h"
#include "support.h"
#include "supgw.h"
#include "supmsg.h"
#include "tls/ktls.h"
#include "tls/tls.h"
#include "util.h"
#include "valid.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS	   500
#define BACKOFF_MAX_MS	   30000
#define LOCAL_MAX	   32
#define LOCAL_TIMEOUT_MS   15000
#define REMOTE_DONE	   16 /* remote operations whose answers are kept */
#define SUP_HELD_MAX	   8  /* support sessions a running client holds */

/* ---------- a blocking-ish TLS control connection ---------- */

struct cconn {
	int fd;
	SSL *ssl;
	bool ktls_tx, ktls_rx; /* a direction in kernel TLS: plain send/recv on fd */
	struct msg_reader mr;
};

static int wait_fd(int fd, short ev, int ms)
{
	struct pollfd p = {.fd = fd, .events = ev};
	int r;

	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r > 0 ? 0 : -ETIMEDOUT;
}

static void cconn_close(struct cconn *cc)
{
	if (cc->ssl)
		SSL_free(cc->ssl);
	if (cc->fd >= 0)
		close(cc->fd);
	msg_reader_free(&cc->mr);
	cc->ssl = NULL;
	cc->fd = -1;
	cc->ktls_tx = cc->ktls_rx = false;
}

static int split_server(const char *server, char *host, size_t hostlen, uint16_t *port)
{
	if (cfg_parse_hostport(server, host, hostlen, port) == 0)
		return 0;
	if (!str_copy(host, hostlen, server) || !*host)
		return -EINVAL;
	*port = 8443;
	return 0;
}

/*
 * Moves an open control connection into kernel TLS: BoringSSL reads whole
 * records only and the server says nothing until our HELLO, so right after
 * the handshake no byte is held in userspace. One direction at a time, so a
 * failure leaves a usable connection (the rest stays in userspace TLS).
 * 0, or -1 with the reason in err.
 */
static int cconn_ktls(struct cconn *cc, char *err, size_t errlen)
{
	if (ktls_install(cc->ssl, cc->fd, KTLS_TX, err, errlen) < 0)
		return -1;
	cc->ktls_tx = true;
	if (ktls_install(cc->ssl, cc->fd, KTLS_RX, err, errlen) < 0)
		return -1;
	cc->ktls_rx = true;
	return 0;
}

/*
 * Opens TCP + TLS to the server; 0 or -1 with err. ktls: 0 userspace TLS,
 * 1 kernel TLS if it installs (else one warning), 2 kernel TLS or fail.
 */
static int cconn_open(struct cconn *cc, SSL_CTX *ctx, const char *server, int ktls, char *err,
		      size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char host[256];
	uint16_t port;
	int one = 1, r;

	cc->fd = -1;
	cc->ssl = NULL;
	cc->ktls_tx = cc->ktls_rx = false;
	msg_reader_init(&cc->mr);
	if (split_server(server, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "bad server address '%s'", server);
		return -1;
	}
	if (engine_resolve(host, port, &ss, &sl) < 0) {
		snprintf(err, errlen, "cannot resolve %s", host);
		return -1;
	}
	cc->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (cc->fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(cc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(cc->fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
		snprintf(err, errlen, "cannot connect to %s: %s", server, strerror(errno));
		goto fail;
	}
	if (wait_fd(cc->fd, POLLOUT, CONNECT_TIMEOUT_MS) < 0) {
		snprintf(err, errlen, "cannot connect to %s: timed out", server);
		goto fail;
	}
	socklen_t el = sizeof(r);
	getsockopt(cc->fd, SOL_SOCKET, SO_ERROR, &r, &el);
	if (r) {
		snprintf(err, errlen, "cannot connect to %s: %s", server, strerror(r));
		goto fail;
	}
	cc->ssl = SSL_new(ctx);
	if (!cc->ssl) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	tls_client_set_host(cc->ssl, host);
	SSL_set_fd(cc->ssl, cc->fd);
	uint64_t deadline = now_ms() + CONNECT_TIMEOUT_MS;
	for (;;) {
		int e;

		r = SSL_connect(cc->ssl);
		if (r == 1)
			break;
		e = SSL_get_error(cc->ssl, r);
		if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
		    now_ms() < deadline) {
			wait_fd(cc->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, 200);
			continue;
		}
		if (e == SSL_ERROR_SSL) {
			char tb[256];

			if (tls_verify_error(cc->ssl, tb, sizeof(tb))) {
				ERR_clear_error();
				snprintf(err, errlen, "%s", tb);
			} else {
				snprintf(err, errlen, "TLS handshake with %s failed: %s", server,
					 tls_last_error(tb, sizeof(tb)));
			}
		} else {
			snprintf(err, errlen, "TLS handshake with %s failed: %s", server,
				 now_ms() >= deadline ? "timed out" : "connection closed");
		}
		goto fail;
	}
	if (ktls) {
		char kerr[192];

		if (cconn_ktls(cc, kerr, sizeof(kerr)) < 0) {
			if (ktls == 2) {
				snprintf(err, errlen, "control link: %s (ktls = on)", kerr);
				goto fail;
			}
			log_every(NLOG_WARN, "control link: %s; it goes on in userspace TLS", kerr);
		}
	}
	return 0;
fail:
	cconn_close(cc);
	return -1;
}

/* One send on the control connection: >= 0 bytes, or -errno. */
static int cconn_write(struct cconn *cc, const uint8_t *p, size_t n, int *want)
{
	ssize_t w;
	int e;

	*want = 0;
	if (cc->ktls_tx) {
		w = send(cc->fd, p, n, MSG_NOSIGNAL);
		if (w >= 0)
			return (int)w;
		if (errno == EAGAIN || errno == EINTR) {
			*want = POLLOUT;
			return 0;
		}
		return -errno;
	}
	w = SSL_write(cc->ssl, p, (int)n);
	if (w > 0)
		return (int)w;
	e = SSL_get_error(cc->ssl, (int)w);
	ERR_clear_error();
	if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
		*want = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
		return 0;
	}
	return -EPIPE;
}

/* One receive: > 0 bytes, 0 for none yet, -EPIPE closed (reason in err). */
static int cconn_read(struct cconn *cc, uint8_t *buf, size_t len, char *err, size_t errlen)
{
	ssize_t n;
	int e;

	if (cc->ktls_rx) {
		n = recv(cc->fd, buf, len, 0);
		if (n > 0)
			return (int)n;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n < 0 && errno == EIO) /* a record that is not data: read what it says */
			ktls_recv_control(cc->fd, err, errlen);
		else
			snprintf(err, errlen, "control link closed");
		return -EPIPE;
	}
	n = SSL_read(cc->ssl, buf, (int)len);
	if (n > 0)
		return (int)n;
	e = SSL_get_error(cc->ssl, (int)n);
	ERR_clear_error();
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	snprintf(err, errlen, "control link closed");
	return -EPIPE;
}

static int cconn_send(struct cconn *cc, json_t *obj)
{
	size_t n, off = 0;
	uint8_t *m = msg_encode(obj, &n);
	uint64_t deadline = now_ms() + CONNECT_TIMEOUT_MS;
	int r = 0;

	if (!m)
		return -ENOMEM;
	while (off < n) {
		int want, w = cconn_write(cc, m + off, n - off, &want);

		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w == 0 && want && now_ms() < deadline) {
			wait_fd(cc->fd, (short)want, 200);
			continue;
		}
		r = -EPIPE;
		break;
	}
	free(m);
	return r;
}

/*
 * Reads what is available; returns 1 with *out for a message, 0 for none yet,
 * -EPIPE when the link closed, -EBADMSG when it sent garbage.
 */
static int cconn_recv(struct cconn *cc, json_t **out, char *err, size_t errlen)
{
	uint8_t buf[8192];
	int r;

	r = msg_reader_next(&cc->mr, out, err, errlen);
	if (r != 0)
		return r;
	for (;;) {
		int n = cconn_read(cc, buf, sizeof(buf), err, errlen);

		if (n <= 0)
			return n;
		if (msg_reader_feed(&cc->mr, buf, (size_t)n) < 0) {
			snprintf(err, errlen, "oversized message from the server");
			return -EBADMSG;
		}
		r = msg_reader_next(&cc->mr, out, err, errlen);
		if (r != 0)
			return r;
	}
}

/* Waits up to ms for one message. */
static int cconn_recv_wait(struct cconn *cc, json_t **out, int ms, char *err, size_t errlen)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	int r;

	for (;;) {
		r = cconn_recv(cc, out, err, errlen);
		if (r != 0)
			return r;
		if (now_ms() >= deadline) {
			snprintf(err, errlen, "the server did not answer in time");
			return -ETIMEDOUT;
		}
		wait_fd(cc->fd, POLLIN, 200);
	}
}

static json_t *hello_msg(const struct cfg_client *c, const char *mode, const char *token,
			 const char *registration)
{
	struct utsname u;
	char host[256] = "";
	json_t *h;

	uname(&u);
	gethostname(host, sizeof(host) - 1);
	/* the server refuses what does not fit the protocol's limits: send what fits */
	valid_fit(host, VALID_ID, LINK_HOSTNAME_MAX);
	valid_fit(u.machine, VALID_ID, LINK_OS_MAX);
	h = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s}", "type", LINK_MSG_HELLO, "version",
		      LINK_VERSION, "mode", mode, "hostname", host, "os", "linux", "arch",
		      u.machine, "client_version", NAVE_VERSION);
	if (c->id[0])
		json_object_set_new(h, "id", json_string(c->id));
	/* the server refuses a connection at once when the tunnel's links are used up */
	json_object_set_new(h, "max_links", json_integer(c->max_links));
	/* what this client takes beyond version 1 (link_proto.h); remote_rules = off refuses
	 * each push with its own reason rather than posing as an older client */
	json_object_set_new(h, "features",
			    json_pack("[s, s, s, s]", LINK_FEATURE_RULES, LINK_FEATURE_MESH,
				      LINK_FEATURE_UDP, LINK_FEATURE_SUPPORT));
	if (token && *token)
		json_object_set_new(h, "token", json_string(token));
	if (registration)
		json_object_set_new(h, "registration", json_string(registration));
	/* no token: the certificate of [client] cert is the login (for the server's reason) */
	if ((!token || !*token) && !registration && c->cert[0])
		json_object_set_new(h, "auth", json_string("certificate"));
	return h;
}

static SSL_CTX *client_ctx(const struct cfg_client *c, char *err, size_t errlen)
{
	return tls_client_ctx(c->ca[0] ? c->ca : NULL, c->fingerprint[0] ? c->fingerprint : NULL,
			      true, err, errlen);
}

int client_cert_check(const char *dir, char *err, size_t errlen)
{
	char path[CFG_PATH_MAX + 16];
	struct stat st;

	snprintf(path, sizeof(path), "%s/tls.crt", dir);
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "%s: %s (want a nodes/NAME directory of navectl pki)", path,
			 strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/tls.key", dir);
	if (lstat(path, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		return -1;
	}
	/* as ssh does with its keys: a key others may read is not used */
	if (st.st_mode & 077) {
		snprintf(err, errlen, "%s is readable by other users (mode %04o): chmod 600 it",
			 path, (unsigned)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

/*
 * The control link's context: the data links' one, plus the certificate of
 * [client] cert when set (only the control link presents it: a data link is
 * its DATA_HELLO's secret).
 */
static SSL_CTX *client_ctl_ctx(const struct cfg_client *c, char *err, size_t errlen)
{
	char crt[CFG_PATH_MAX + 16], key[CFG_PATH_MAX + 16], why[CFG_PATH_MAX + 256];
	SSL_CTX *ctx = client_ctx(c, err, errlen);

	if (!ctx || !c->cert[0])
		return ctx;
	/* nave configure writes it absolute: one edited by hand must not follow the cwd */
	if (c->cert[0] != '/') {
		snprintf(err, errlen, "[client] cert: %s is not an absolute path", c->cert);
		SSL_CTX_free(ctx);
		return NULL;
	}
	snprintf(crt, sizeof(crt), "%s/tls.crt", c->cert);
	snprintf(key, sizeof(key), "%s/tls.key", c->cert);
	if (client_cert_check(c->cert, why, sizeof(why)) < 0 ||
	    tls_client_use_cert(ctx, crt, key, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "[client] cert: %s", why);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/*
 * One short connection: HELLO in mode ("configure" or "deauth"), then the
 * WELCOME (returned, the caller decrefs) or a one-line reason in err.
 */
static json_t *short_hello(const struct cfg_client *c, const char *mode, const char *registration,
			   const char *key, char *err, size_t errlen)
{
	struct cconn cc;
	SSL_CTX *ctx = client_ctl_ctx(c, err, errlen);
	json_t *m = NULL, *welcome = NULL;

	if (!ctx)
		return NULL;
	if (cconn_open(&cc, ctx, c->server, 0, err, errlen) < 0)
		goto out;
	json_t *h = hello_msg(c, mode, key, registration);
	if (cconn_send(&cc, h) < 0) {
		json_decref(h);
		snprintf(err, errlen, "the server closed the connection");
		goto out_close;
	}
	json_decref(h);
	if (cconn_recv_wait(&cc, &m, 15000, err, errlen) <= 0)
		goto out_close;
	if (!strcmp(msg_str(m, "type"), LINK_MSG_WELCOME))
		welcome = json_incref(m);
	else if (!strcmp(msg_str(m, "type"), LINK_MSG_ERROR))
		snprintf(err, errlen, "server refused: %s", msg_str(m, "reason") ?: "no reason");
	else
		snprintf(err, errlen, "unexpected answer from the server");
	json_decref(m);
out_close:
	cconn_close(&cc);
out:
	SSL_CTX_free(ctx);
	return welcome;
}

int client_configure(const struct cfg_client *c, const char *registration, const char *key,
		     char *tunnel_id, size_t idlen, char *token, size_t toklen, char *err,
		     size_t errlen)
{
	json_t *w = short_hello(c, "configure", registration, key, err, errlen);

	if (!w)
		return -1;
	str_copy(tunnel_id, idlen, msg_str(w, "tunnel_id") ?: "");
	str_copy(token, toklen, msg_str(w, "token") ?: "");
	json_decref(w);
	return 0;
}

int client_deauth_offline(const struct cfg_client *c, char *tunnel_id, size_t idlen, char *err,
			  size_t errlen)
{
	json_t *w = short_hello(c, "deauth", NULL, c->token, err, errlen);
	bool revoked = w && json_is_true(json_object_get(w, "revoked"));

	if (w && !revoked)
		snprintf(err, errlen, "the server did not revoke the token (an older server?)");
	if (revoked)
		str_copy(tunnel_id, idlen, msg_str(w, "tunnel_id") ?: "");
	json_decref(w);
	return revoked ? 0 : -1;
}

/* ---------- the running client ---------- */

/*
 * A rule of the running client. TCP: cfg is the rule, granted its public
 * port. HTTP: h is the rule (cfg.name holds its name too, so lookups by name
 * treat both alike), granted the route of this session's http_grant (0 when
 * none: routes die with the session).
 */
struct rule {
	bool http;
	struct cfg_tcp_rule cfg;
	struct cfg_http_rule h;
	struct engine_rule er;
	uint16_t granted;
	bool requested;
	long long req;	   /* the last tcp_add/http_add sent for it */
	char refused[160]; /* the server's reason when it refused that request */
};

struct local {
	int fd;
	struct msg_reader mr;
	long long waiting; /* control-link req it waits for, 0 none */
	uint64_t deadline;
	char rule[64];
	bool remove;
	bool deauth;
	/* a remote rule operation (rule_push) run through the local path: no fd, the reply
	 * goes to the server as rule_result {op} */
	bool remote;
	long long op;
	/* the answer is not the operation's outcome (lost link, timeout): never cached */
	bool transient;
	bool support; /* a support_* request (its answers are support_* or req_error) */
};

/* Marks the answer about to be given as not the operation's outcome; true. */
static bool local_transient(struct local *lo)
{
	lo->transient = true;
	return true;
}

/* A slot in use: a local connection, or a remote operation waiting for the server. */
static bool lo_used(const struct local *lo)
{
	return lo->fd > 0 || lo->remote;
}

/* A port map or SOCKS listener of the running client. */
struct lsn {
	bool socks;
	struct cfg_portmap map; /* !socks */
	struct cfg_socks sk;	/* socks */
	bool up;		/* listening (the worker has its fd) */
	char error[160];	/* why not */
};

/* connection slots for UDP port maps' flows, and datagrams a flow queues while it opens */
#define CLIENT_UDP_FLOW_SLOTS 256
#define CLIENT_UDP_QUEUE      64

struct client {
	struct cfg_client *cfg;
	SSL_CTX *ctx;
	SSL_CTX *ctl_ctx;      /* the control link's: ctx plus [client] cert's certificate */
	struct xprt_ctx *xprt; /* data links (the engine's transports) */
	struct engine *eng;
	struct cconn cc;
	bool online;
	char tunnel_id[LINK_ID_MAX];
	unsigned hb_ms;
	uint64_t next_hb, last_rx;
	unsigned backoff;
	uint64_t next_try;
	long long next_req;
	pthread_mutex_t lock; /* rules, read by the worker */
	struct rule rules[CFG_MAX_RULES];
	unsigned nrules;
	int lfd;
	struct local locals[LOCAL_MAX];
	struct webroot *www; /* the static file server, started by the first webroot rule */
	struct supgw *gw;    /* the support gateway (supgw.h): NULL when it could not start */
	char www_path[CFG_PATH_MAX];
	int exit_code;
	bool quit;
	/*
	 * The kTLS mode `nave status` shows ("kernel", "userspace (kernel has no
	 * TLS ULP)", "userspace (ktls = off)"): set once in client_run before the
	 * main loop, read only by the main thread.
	 */
	char ktls_mode[64];
	int ctl_ktls; /* cconn_open's ktls: 0, 1 (auto) or 2 (on) */
	/*
	 * Port maps and SOCKS listeners ([portmap.N], [socks.N]): bound here, their
	 * fds handed to the worker (MB_MAP_LISTEN), which carries their connections
	 * as mesh streams. Main thread only.
	 */
	struct lsn lsn[CFG_MAX_MAPS + CFG_MAX_SOCKS];
	unsigned nlsn;
	_Atomic unsigned unlisten_acked; /* MB_MAP_UNLISTENs the worker has done */
	bool mesh;			 /* this session's WELCOME named the feature "mesh" */
	bool udp;			 /* and "udp": it takes udp_add (link_proto.h) */
	/*
	 * The answers sent for the last REMOTE_DONE remote operations, by (tunnel id, op):
	 * one pushed again (its answer lost with a link, or with a controld restart) gets
	 * the same answer. Only answers that were sent and are the operation's outcome are
	 * kept; emptied when the tunnel id or the server changes (op ids are an edge
	 * database's: a new one starts again at 1).
	 */
	char done_server[CFG_STR_MAX];
	struct remote_done {
		char tunnel_id[LINK_ID_MAX];
		long long op;
		bool ok;
		long long port, route;
		char reason[RULEMSG_REASON_MAX + 1];
	} done[REMOTE_DONE];
	unsigned ndone;
	/*
	 * Support sessions (nave support request): in memory only, main thread only. The
	 * PSK never leaves this process but once, in the answer to the local request that
	 * made it; the targets of its services never leave the device. A restart forgets
	 * them all (the owner requests again).
	 */
	bool support_ok; /* this session's WELCOME named the feature "support" */
	long long sup_sync_req;
	struct sup_held {
		bool used, granted;
		long long req;		 /* the support_request in flight (until granted) */
		char id[SUP_ID_LEN + 1]; /* the edge's id, once granted */
		uint8_t psk[SUP_PSK_LEN];
		struct sup_services svc;
		int64_t expires_at;
	} sup[SUP_HELD_MAX];
};

static bool op_rule_find(void *arg, uint16_t port, uint16_t flags, struct engine_rule *out)
{
	struct client *cl = arg;
	bool found = false;

	bool http = flags & LINK_BIND_HTTP, udp = flags & LINK_BIND_UDP;

	if (flags & LINK_BIND_SUPPORT) { /* a support stream: the gateway, never a rule */
		if (!cl->gw || udp || http)
			return false;
		memset(out, 0, sizeof(*out));
		out->port = port;
		out->proxy = 2; /* the BIND's session id to the gateway (supgw.h) */
		return supgw_addr(cl->gw, port, &out->to, &out->to_len) == 0;
	}

	pthread_mutex_lock(&cl->lock);
	for (unsigned i = 0; i < cl->nrules; i++)
		if (cl->rules[i].http == http && cl->rules[i].granted == port &&
		    (http || cl->rules[i].cfg.udp == udp) && cl->rules[i].er.to_len) {
			*out = cl->rules[i].er;
			found = true;
			break;
		}
	pthread_mutex_unlock(&cl->lock);
	return found;
}

static int webroot_ensure(struct client *cl, char *err, size_t errlen)
{
	if (cl->www)
		return 0;
	if (snprintf(cl->www_path, sizeof(cl->www_path), "%s.www", cl->cfg->socket) >=
	    (int)sizeof(cl->www_path)) {
		snprintf(err, errlen, "socket path too long for the webroot server");
		return -1;
	}
	cl->www = webroot_start(cl->www_path, err, errlen);
	if (!cl->www)
		return -1;
	log_info("webroot server on %s", cl->www_path);
	return 0;
}

/* Where an HTTP rule's streams go: its to, or the webroot server (started on first use). */
static int http_resolve(struct client *cl, struct rule *r, char *err, size_t errlen)
{
	char host[256];
	uint16_t port;

	r->er.proxy = 0;
	if (r->h.webroot[0]) {
		if (webroot_ensure(cl, err, errlen) < 0)
			return -1;
		if (webroot_add(cl->www, r->h.domain, r->h.webroot, err, errlen) < 0)
			return -1;
		webroot_addr(cl->www, &r->er.to, &r->er.to_len);
		return 0;
	}
	if (cfg_parse_hostport(r->h.to, host, sizeof(host), &port) < 0 || port == 0) {
		snprintf(err, errlen, "bad --to '%s' (want HOST:PORT)", r->h.to);
		return -1;
	}
	r->er.proxy = r->h.proxy_protocol; /* the client's address, for the service */
	if (engine_resolve(host, port, &r->er.to, &r->er.to_len) < 0) {
		snprintf(err, errlen, "cannot resolve %s", host);
		return -1;
	}
	return 0;
}

/* What an HTTP rule's streams reach, for logs and replies. */
static const char *http_target(const struct rule *r, char *buf, size_t len)
{
	if (r->h.webroot[0])
		snprintf(buf, len, "webroot %s", r->h.webroot);
	else
		snprintf(buf, len, "%s", r->h.to);
	return buf;
}

/* A forgotten HTTP rule no longer has the webroot serve its domain. */
static void rule_forget(struct client *cl, const struct rule *r)
{
	if (r->http && r->h.webroot[0] && cl->www)
		webroot_remove(cl->www, r->h.domain);
}

static int rule_resolve(struct rule *r, char *err, size_t errlen)
{
	char host[256];
	uint16_t port;

	if (cfg_parse_hostport(r->cfg.to, host, sizeof(host), &port) < 0 || port == 0) {
		snprintf(err, errlen, "bad --to '%s' (want HOST:PORT)", r->cfg.to);
		return -1;
	}
	if (engine_resolve(host, port, &r->er.to, &r->er.to_len) < 0) {
		snprintf(err, errlen, "cannot resolve %s", host);
		return -1;
	}
	r->er.proxy = r->cfg.proxy_protocol;
	return 0;
}

static struct rule *rule_by_name(struct client *cl, const char *name)
{
	for (unsigned i = 0; i < cl->nrules; i++)
		if (!strcasecmp(cl->rules[i].cfg.name, name)) /* as the config's sections */
			return &cl->rules[i];
	return NULL;
}

/* Copies the rules back into the config and saves it. */
static void persist(struct client *cl)
{
	char err[CFG_ERR_MAX];
	struct cfg_client *c = cl->cfg;

	pthread_mutex_lock(&cl->lock);
	c->n_tcp = c->n_http = 0;
	for (unsigned i = 0; i < cl->nrules; i++) {
		if (cl->rules[i].http) {
			c->http[c->n_http++] = cl->rules[i].h;
			continue;
		}
		c->tcp[c->n_tcp] = cl->rules[i].cfg;
		if (cl->rules[i].granted)
			c->tcp[c->n_tcp].port = cl->rules[i].granted;
		c->n_tcp++;
	}
	pthread_mutex_unlock(&cl->lock);
	c->n_maps = c->n_socks = 0;
	for (unsigned i = 0; i < cl->nlsn; i++) {
		if (cl->lsn[i].socks)
			c->socks[c->n_socks++] = cl->lsn[i].sk;
		else
			c->maps[c->n_maps++] = cl->lsn[i].map;
	}
	if (cfg_client_save(c, err, sizeof(err)) < 0)
		log_warn("cannot save %s: %s", c->path, err);
}

static void remote_reply(struct client *cl, struct local *lo, json_t *obj);
static void sup_local_done(struct client *cl, long long req);

static void local_reply(struct client *cl, struct local *lo, json_t *obj)
{
	size_t n;
	uint8_t *m;

	if (lo->remote) {
		remote_reply(cl, lo, obj);
		return;
	}
	if (lo->support && lo->waiting)
		sup_local_done(cl, lo->waiting);
	json_object_set_new(obj, "type", json_string("reply"));
	m = msg_encode(obj, &n);
	if (m) {
		struct timeval tv = {.tv_sec = 2};

		setsockopt(lo->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (write_all(lo->fd, m, n) < 0)
			log_debug("local client went away");
	}
	free(m);
	json_decref(obj);
	close(lo->fd);
	msg_reader_free(&lo->mr);
	memset(lo, 0, sizeof(*lo));
	lo->fd = -1;
}

static json_t *http_msg(struct rule *r, long long id, bool remove)
{
	const struct cfg_http_rule *h = &r->h;
	json_t *m =
	    json_pack("{s:s, s:I, s:s, s:s}", "type", remove ? LINK_MSG_HTTP_RM : LINK_MSG_HTTP_ADD,
		      "req", (json_int_t)id, "name", h->name, "domain", h->domain);

	if (remove)
		return m;
	/* booleans only when true, strings only when set (link_proto.h) */
	if (h->tls_passthrough)
		json_object_set_new(m, "tls_passthrough", json_true());
	if (h->redirect_https)
		json_object_set_new(m, "redirect_https", json_true());
	if (h->host_header[0])
		json_object_set_new(m, "host_header", json_string(h->host_header));
	if (h->basic_auth[0])
		json_object_set_new(m, "basic_auth", json_string(h->basic_auth));
	return m;
}

static long long request_rule(struct client *cl, struct rule *r, bool remove)
{
	long long id = ++cl->next_req;
	json_t *m;

	if (!r->http && r->cfg.udp && !cl->udp) {
		/* udp_* only to a relayd whose WELCOME named "udp" (link_proto.h) */
		if (!remove) {
			log_warn("rule %s: the server does not support UDP rules (too old)",
				 r->cfg.name);
			str_copy(r->refused, sizeof(r->refused),
				 "the server does not support UDP rules");
		}
		r->requested = false;
		return 0;
	}
	if (r->http)
		m = http_msg(r, id, remove);
	else if (remove)
		m = json_pack("{s:s, s:I, s:s, s:i}", "type",
			      r->cfg.udp ? LINK_MSG_UDP_RM : LINK_MSG_TCP_RM, "req", id, "name",
			      r->cfg.name, "port", (int)r->granted);
	else
		m = json_pack("{s:s, s:I, s:s, s:i}", "type",
			      r->cfg.udp ? LINK_MSG_UDP_ADD : LINK_MSG_TCP_ADD, "req", id, "name",
			      r->cfg.name, "port", (int)r->cfg.port);
	if (cconn_send(&cl->cc, m) < 0)
		id = 0;
	json_decref(m);
	r->requested = !remove;
	if (!remove) {
		r->req = id;
		r->refused[0] = 0;
	}
	return id;
}

/* tcp_sync: the names of every rule this client holds. */
static void sync_rules(struct client *cl)
{
	json_t *names = json_array(), *m;

	pthread_mutex_lock(&cl->lock);
	for (unsigned i = 0; i < cl->nrules; i++)
		json_array_append_new(names, json_string(cl->rules[i].cfg.name));
	pthread_mutex_unlock(&cl->lock);
	m = json_pack("{s:s, s:I, s:o}", "type", LINK_MSG_TCP_SYNC, "req",
		      (json_int_t)++cl->next_req, "names", names);
	if (cconn_send(&cl->cc, m) < 0)
		log_warn("cannot send the rule list to the server");
	json_decref(m);
}

static void sup_sync(struct client *cl);

static void session_start(struct client *cl, json_t *welcome)
{
	const char *secret = msg_str(welcome, "link_secret");
	json_t *limits = json_object_get(welcome, "limits");
	struct mb_msg mb;
	long long hb = msg_int(limits, "heartbeat", 10);
	long long pool = msg_int(limits, "max_pool_size", 8);
	long long max_links = msg_int(limits, "max_links", 16384);
	json_t *fv;
	size_t fi;

	memset(&mb, 0, sizeof(mb));
	mb.type = MB_SESSION;
	str_copy(mb.tunnel_id, sizeof(mb.tunnel_id), cl->tunnel_id);
	if (!secret || hex_decode(secret, mb.secret, LINK_SECRET_LEN) < 0)
		log_warn("server sent no usable link secret");
	mb.pool_idle =
	    (unsigned)(pool > 0 && (unsigned)pool < cl->cfg->pool_idle ? pool : cl->cfg->pool_idle);
	mb.max_links = (unsigned)(max_links > 0 && (unsigned)max_links < cl->cfg->max_links
				      ? max_links
				      : cl->cfg->max_links);
	cl->hb_ms = (unsigned)(hb > 0 ? hb : 10) * 1000;
	/* port maps and SOCKS need relayd to take OPEN (WELCOME features, link_proto.h) */
	cl->mesh = false;
	json_array_foreach(json_object_get(welcome, "features"), fi,
			   fv) if (json_is_string(fv) &&
				   !strcmp(json_string_value(fv), LINK_FEATURE_MESH)) cl->mesh =
	    true;
	mb.mesh_ok = cl->mesh;
	cl->udp = false;
	json_array_foreach(json_object_get(welcome, "features"), fi, fv)
	{
		if (json_is_string(fv) && !strcmp(json_string_value(fv), LINK_FEATURE_UDP))
			cl->udp = true;
	}
	cl->support_ok = false;
	json_array_foreach(json_object_get(welcome, "features"), fi, fv)
	{
		if (json_is_string(fv) && !strcmp(json_string_value(fv), LINK_FEATURE_SUPPORT))
			cl->support_ok = true;
	}
	if (!cl->mesh && cl->nlsn)
		log_warn("the server does not support port maps (too old): connections to the "
			 "local ports of port maps and SOCKS proxies are refused");
	engine_post(cl->eng, 0, &mb);
	cl->online = true;
	cl->backoff = 0;
	cl->next_hb = now_ms() + cl->hb_ms;
	cl->last_rx = now_ms();
	/* first the whole list, so the server drops ports of rules removed while stopped */
	sync_rules(cl);
	for (unsigned i = 0; i < cl->nrules; i++)
		request_rule(cl, &cl->rules[i], false);
	sup_sync(cl);
}

static const struct remote_done *remote_done_find(const struct client *cl, long long op)
{
	for (unsigned i = 0; i < REMOTE_DONE && i < cl->ndone; i++)
		if (cl->done[i].op == op && !strcmp(cl->done[i].tunnel_id, cl->tunnel_id))
			return &cl->done[i];
	return NULL;
}

/* A new tunnel id or server: the cached answers are another edge's (or tunnel's). */
static void remote_done_check(struct client *cl)
{
	if (!strcmp(cl->done_server, cl->cfg->server) &&
	    (!cl->ndone ||
	     !strcmp(cl->done[(cl->ndone - 1) % REMOTE_DONE].tunnel_id, cl->tunnel_id)))
		return;
	if (cl->ndone)
		log_info("remote rule operations: forgetting %u cached answer(s) (new tunnel "
			 "id or server)",
			 cl->ndone < REMOTE_DONE ? cl->ndone : REMOTE_DONE);
	memset(cl->done, 0, sizeof(cl->done));
	cl->ndone = 0;
	str_copy(cl->done_server, sizeof(cl->done_server), cl->cfg->server);
}

static void session_end(struct client *cl, const char *why)
{
	struct mb_msg mb;

	if (cl->cc.fd >= 0)
		cconn_close(&cl->cc);
	if (cl->online) {
		log_warn("control link lost: %s", why);
		svc_status("offline: %s; reconnecting", why);
		memset(&mb, 0, sizeof(mb));
		mb.type = MB_SESSION_END;
		engine_post(cl->eng, 0, &mb);
	}
	cl->online = false;
	/* HTTP routes are valid for one session only */
	pthread_mutex_lock(&cl->lock);
	for (unsigned i = 0; i < cl->nrules; i++)
		if (cl->rules[i].http)
			cl->rules[i].granted = 0;
	pthread_mutex_unlock(&cl->lock);
	for (unsigned i = 0; i < LOCAL_MAX; i++)
		if (lo_used(&cl->locals[i]) && cl->locals[i].waiting &&
		    local_transient(&cl->locals[i]))
			local_reply(
			    cl, &cl->locals[i],
			    json_pack("{s:b, s:s}", "ok", 0, "error",
				      cl->locals[i].deauth || cl->locals[i].support
					  ? "lost the connection to the server before it "
					    "answered"
					  : "lost the connection to the server; the rule is "
					    "saved and will be applied on reconnect"));
	/* capped exponential backoff with +-25% jitter */
	cl->backoff = cl->backoff ? cl->backoff * 2 : BACKOFF_MIN_MS;
	if (cl->backoff > BACKOFF_MAX_MS)
		cl->backoff = BACKOFF_MAX_MS;
	uint32_t rnd;
	random_bytes(&rnd, sizeof(rnd));
	cl->next_try = now_ms() + cl->backoff * 3 / 4 + rnd % (cl->backoff / 2 + 1);
}

static bool reason_is_fatal(const char *reason)
{
	return strstr(reason, "token") || strstr(reason, "version") ||
	       strstr(reason, "registration");
}

static void try_connect(struct client *cl)
{
	char err[256];
	json_t *m = NULL, *h;
	int r;

	if (cconn_open(&cl->cc, cl->ctl_ctx, cl->cfg->server, cl->ctl_ktls, err, sizeof(err)) < 0) {
		log_warn("%s", err);
		cl->online = false;
		session_end(cl, err);
		if (!strncmp(err, TLS_VERIFY_ERROR_PREFIX, strlen(TLS_VERIFY_ERROR_PREFIX))) {
			fprintf(stderr, "nave: %s\n", err);
			cl->exit_code = 1;
			cl->quit = true;
		}
		return;
	}
	h = hello_msg(cl->cfg, "run", cl->cfg->token, NULL);
	r = cconn_send(&cl->cc, h);
	json_decref(h);
	if (r == 0)
		r = cconn_recv_wait(&cl->cc, &m, 15000, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "the server closed the connection");
	if (r <= 0) {
		log_warn("HELLO: %s", err);
		session_end(cl, err);
		return;
	}
	if (!strcmp(msg_str(m, "type"), LINK_MSG_ERROR)) {
		const char *reason = msg_str(m, "reason") ?: "no reason given";

		if (reason_is_fatal(reason)) {
			fprintf(stderr, "nave: server refused: %s\n", reason);
			log_error("server refused: %s", reason);
			cl->exit_code = 1;
			cl->quit = true;
		} else {
			log_warn("server refused for now: %s", reason);
		}
		session_end(cl, reason);
		json_decref(m); /* reason points into m */
		return;
	}
	if (strcmp(msg_str(m, "type"), LINK_MSG_WELCOME)) {
		json_decref(m);
		session_end(cl, "unexpected answer to HELLO");
		return;
	}
	str_copy(cl->tunnel_id, sizeof(cl->tunnel_id), msg_str(m, "tunnel_id") ?: "");
	remote_done_check(cl);
	log_info("connected to %s as tunnel %s (%s, %s)", cl->cfg->server, cl->tunnel_id,
		 SSL_CIPHER_get_name(SSL_get_current_cipher(cl->cc.ssl)),
		 SSL_get_curve_name(SSL_get_curve_id(cl->cc.ssl)) ?: "?");
	svc_status("connected to %s as tunnel %s", cl->cfg->server, cl->tunnel_id);
	session_start(cl, m);
	json_decref(m);
}

static struct local *local_waiting(struct client *cl, long long req)
{
	for (unsigned i = 0; i < LOCAL_MAX; i++)
		if (lo_used(&cl->locals[i]) && cl->locals[i].waiting == req)
			return &cl->locals[i];
	return NULL;
}

/* ---------- remote rule operations (rule_push, link_proto.h) ---------- */

static void on_local_request(struct client *cl, struct local *lo, json_t *req);

static void rule_result_send(struct client *cl, long long op, bool ok, long long port,
			     long long route, const char *reason, bool keep)
{
	char buf[RULEMSG_REASON_MAX + 1] = "";
	json_t *m = json_pack("{s:s, s:I, s:b}", "type", LINK_MSG_RULE_RESULT, "op", (json_int_t)op,
			      "ok", ok);
	struct remote_done *d;

	if (!m)
		return;
	if (port > 0 && port <= 65535)
		json_object_set_new(m, "port", json_integer(port));
	if (route > 0 && route <= 65535)
		json_object_set_new(m, "route", json_integer(route));
	if (!ok || (reason && reason[0])) {
		/* one line the server takes: printable, at most RULEMSG_REASON_MAX bytes */
		if (!reason || !valid_str(reason, VALID_TEXT, RULEMSG_REASON_MAX))
			log_escape(reason ? reason : "refused", strlen(reason ? reason : "refused"),
				   buf, sizeof(buf), false);
		else
			str_copy(buf, sizeof(buf), reason);
		json_object_set_new(m, "reason", json_string(buf[0] ? buf : "refused"));
	}
	if (cl->cc.fd < 0 || cconn_send(&cl->cc, m) < 0) {
		/* not sent: the server pushes the operation again, and it runs again */
		if (cl->cc.fd >= 0)
			log_warn("remote rule operation %lld: cannot send the result", op);
		keep = false;
	}
	json_decref(m);
	/* kept, so that the operation pushed again gets the same answer */
	if (!keep || remote_done_find(cl, op))
		return;
	d = &cl->done[cl->ndone++ % REMOTE_DONE];
	str_copy(d->tunnel_id, sizeof(d->tunnel_id), cl->tunnel_id);
	d->op = op;
	d->ok = ok;
	d->port = port;
	d->route = route;
	str_copy(d->reason, sizeof(d->reason), ok ? (reason ?: "") : buf);
}

/* The local path's answer to a remote operation: to the server as rule_result. */
static void remote_reply(struct client *cl, struct local *lo, json_t *obj)
{
	bool ok = json_is_true(json_object_get(obj, "ok"));
	const char *reason = msg_str(obj, "error");
	long long port = msg_int(obj, "port", 0), route = msg_int(obj, "route", 0);

	if (ok)
		log_info("remote rule operation %lld (rule %s): applied%s", lo->op, lo->rule,
			 lo->remove ? " (removed)" : "");
	else
		log_warn("remote rule operation %lld (rule %s): refused: %s", lo->op, lo->rule,
			 reason ?: "refused");
	/*
	 * a link that is gone takes no answer: the server pushes the operation again. A
	 * remote add that timed out is forgotten, so that its failure is the truth.
	 */
	if (lo->transient && !lo->remove && cl->cc.fd >= 0) {
		struct rule gone;
		bool forgot = false;
		struct rule *r;

		pthread_mutex_lock(&cl->lock);
		r = rule_by_name(cl, lo->rule);
		if (r) {
			gone = *r;
			forgot = true;
			*r = cl->rules[--cl->nrules];
		}
		pthread_mutex_unlock(&cl->lock);
		if (forgot) {
			rule_forget(cl, &gone);
			persist(cl);
			log_warn("remote rule operation %lld: rule %s forgotten again (no answer "
				 "from the server)",
				 lo->op, lo->rule);
		}
	}
	rule_result_send(cl, lo->op, ok, port, route, reason, !lo->transient);
	json_decref(obj);
	memset(lo, 0, sizeof(*lo));
	lo->fd = -1;
}

/* An identical rule held already (a push repeated after a lost link): its port or route. */
static bool rule_same(const struct rule *r, const json_t *n, long long *port, long long *route)
{
	const char *pp = msg_str(n, "proxy_protocol") ?: "";
	int proxy = !strcmp(pp, "v1") ? 1 : !strcmp(pp, "v2") ? 2 : 0;

	if (!strcmp(msg_str(n, "kind"), "tcp")) {
		long long want = msg_int(n, "port", 0);

		if (r->http || strcmp(r->cfg.to, msg_str(n, "to") ?: "") ||
		    r->cfg.proxy_protocol != proxy ||
		    (want && want != r->cfg.port && want != r->granted))
			return false;
		*port = r->granted;
		return true;
	}
	if (!r->http || strcmp(r->h.domain, msg_str(n, "domain") ?: "") ||
	    strcmp(r->h.to, msg_str(n, "to") ?: "") ||
	    strcmp(r->h.webroot, msg_str(n, "webroot") ?: "") ||
	    strcmp(r->h.host_header, msg_str(n, "host_header") ?: "") ||
	    strcmp(r->h.basic_auth, msg_str(n, "basic_auth") ?: "") ||
	    r->h.proxy_protocol != proxy ||
	    r->h.tls_passthrough != json_is_true(json_object_get(n, "tls_passthrough")) ||
	    r->h.redirect_https != json_is_true(json_object_get(n, "redirect_https")))
		return false;
	*route = r->granted; /* 0 until the server grants it on this session */
	return true;
}

/*
 * rule_push: checked again (rulemsg.h), held against [client] remote_rules,
 * logged, then run exactly as `nave tunnel tcp|http add` / `nave tunnel rm`
 * would through the local socket; the answer goes back as rule_result.
 */
static void on_rule_push(struct client *cl, json_t *m)
{
	static const char *const allow[] = {"type", "op", NULL};
	long long op = rulemsg_op(m), port = 0, route = 0;
	char why[300], what[CFG_PATH_MAX + 64];
	const char *action, *kind, *name;
	const struct remote_done *d;
	struct local *lo = NULL;
	struct rule *r;
	json_t *n, *req;
	bool same = false, busy = false;

	if (!op) {
		log_warn("rule_push without a usable op: ignored");
		return;
	}
	for (unsigned i = 0; i < LOCAL_MAX; i++)
		if (cl->locals[i].remote && cl->locals[i].op == op)
			return; /* under way: its answer comes */
	n = rulemsg_norm(m, NULL, allow, why, sizeof(why));
	if (!n) {
		log_warn("remote rule operation %lld refused: %s", op, why);
		rule_result_send(cl, op, false, 0, 0, why, true);
		return;
	}
	action = msg_str(n, "action");
	name = msg_str(n, "name");
	/*
	 * A repeated add of a rule held already is applied (its outcome when the answer
	 * was lost with the link), before any cached answer.
	 */
	if (!strcmp(action, "add") && cl->cfg->remote_rules != CFG_REMOTE_OFF) {
		pthread_mutex_lock(&cl->lock);
		r = rule_by_name(cl, name);
		same = r && rule_same(r, n, &port, &route);
		pthread_mutex_unlock(&cl->lock);
		if (same) {
			log_info("remote rule operation %lld: rule %s is there already", op, name);
			rule_result_send(cl, op, true, port, route, NULL, true);
			goto out;
		}
	}
	d = remote_done_find(cl, op);
	if (d) {
		struct remote_done again = *d;

		log_info("remote rule operation %lld pushed again: answered as before", op);
		rule_result_send(cl, op, again.ok, again.port, again.route, again.reason, true);
		goto out;
	}
	kind = msg_str(n, "kind") ?: "";
	if (!strcmp(action, "add"))
		snprintf(what, sizeof(what), "add %s rule %s -> %s", kind, name,
			 msg_str(n, "webroot") ? msg_str(n, "webroot") : msg_str(n, "to"));
	else
		snprintf(what, sizeof(what), "remove rule %s", name);
	log_info("remote rule change from the server (operation %lld): %s%s%s", op, what,
		 msg_str(n, "domain") ? " for " : "", msg_str(n, "domain") ?: "");
	if (cl->cfg->remote_rules == CFG_REMOTE_OFF) {
		rule_result_send(
		    cl, op, false, 0, 0,
		    "remote rules are off on this client ([client] remote_rules = off)", true);
		log_warn("remote rule operation %lld refused: [client] remote_rules = off", op);
		goto out;
	}
	if (msg_str(n, "webroot") && cl->cfg->remote_rules != CFG_REMOTE_ALL) {
		rule_result_send(cl, op, false, 0, 0,
				 "remote webroot rules are off on this client ([client] "
				 "remote_rules = tcp-http; all allows them)",
				 true);
		log_warn("remote rule operation %lld refused: a webroot needs [client] "
			 "remote_rules = all",
			 op);
		goto out;
	}
	if (!strcmp(action, "rm") && cl->cfg->remote_rules != CFG_REMOTE_ALL) {
		bool www;

		pthread_mutex_lock(&cl->lock);
		r = rule_by_name(cl, name);
		www = r && r->http && r->h.webroot[0];
		pthread_mutex_unlock(&cl->lock);
		if (www) {
			rule_result_send(cl, op, false, 0, 0,
					 "rule is a webroot rule of this device; remote_rules = "
					 "tcp-http does not let the server remove it (all does)",
					 true);
			log_warn("remote rule operation %lld refused: removing webroot rule %s "
				 "needs [client] remote_rules = all",
				 op, name);
			goto out;
		}
	}
	if (!strcmp(action, "add") && !msg_str(n, "webroot") &&
	    !cfg_remote_to_ok(cl->cfg->remote_to, msg_str(n, "to"))) {
		char shown[200];

		log_escape(msg_str(n, "to") ?: "", strlen(msg_str(n, "to") ?: ""), shown,
			   sizeof(shown), false);
		snprintf(why, sizeof(why), "%s is not allowed by [client] remote_to on this client",
			 shown);
		rule_result_send(cl, op, false, 0, 0, why, true);
		log_warn("remote rule operation %lld refused: %s (remote_to %s)", op, why,
			 cl->cfg->remote_to);
		goto out;
	}
	/* one remote operation at a time: the edge cannot take the local socket's slots */
	for (unsigned i = 0; i < LOCAL_MAX && !busy; i++)
		busy = cl->locals[i].remote;
	for (unsigned i = 0; i < LOCAL_MAX && !lo && !busy; i++)
		if (!lo_used(&cl->locals[i]))
			lo = &cl->locals[i];
	if (!lo) {
		rule_result_send(cl, op, false, 0, 0,
				 busy ? "the client is busy with another remote operation; try "
					"again"
				      : "the client is busy; try again",
				 false);
		goto out;
	}
	memset(lo, 0, sizeof(*lo));
	lo->fd = -1;
	lo->remote = true;
	lo->op = op;
	lo->deadline = now_ms() + LOCAL_TIMEOUT_MS;
	str_copy(lo->rule, sizeof(lo->rule), name);
	/* the request `nave tunnel ...` sends to the local socket (client/nave.c) */
	req = json_deep_copy(n);
	json_object_del(req, "action");
	json_object_del(req, "kind");
	json_object_set_new(req, "type",
			    json_string(!strcmp(action, "rm")  ? "rule_rm"
					: !strcmp(kind, "tcp") ? "tcp_add"
							       : "http_add"));
	{
		const char *pp = msg_str(n, "proxy_protocol");

		json_object_set_new(req, "proxy_protocol",
				    json_integer(!pp		     ? 0
						 : !strcmp(pp, "v1") ? 1
								     : 2));
	}
	on_local_request(cl, lo, req);
	json_decref(req);
out:
	json_decref(n);
}

static void on_support_message(struct client *cl, struct local *lo, const char *type, json_t *m);

/* ---------- support sessions (nave support, link_proto.h "Support sessions") ---------- */

static struct sup_held *sup_by_id(struct client *cl, const char *id)
{
	for (unsigned i = 0; id && i < SUP_HELD_MAX; i++)
		if (cl->sup[i].used && cl->sup[i].granted && !strcmp(cl->sup[i].id, id))
			return &cl->sup[i];
	return NULL;
}

/* Forgets a session: its key is wiped, the gateway's copy too, and its connections close. */
static void sup_forget(struct client *cl, struct sup_held *h)
{
	if (h->granted)
		supgw_session_drop(cl->gw, h->id, "ended");
	explicit_bzero(h, sizeof(*h));
}

/* The local request waiting for req is answered: a request not granted goes with it. */
static void sup_local_done(struct client *cl, long long req)
{
	for (unsigned i = 0; i < SUP_HELD_MAX; i++)
		if (cl->sup[i].used && !cl->sup[i].granted && cl->sup[i].req == req)
			sup_forget(cl, &cl->sup[i]);
}

/* After each WELCOME: the edge's view of the sessions held (and a new relayd learns them). */
static void sup_sync(struct client *cl)
{
	json_t *m;
	bool any = false;

	for (unsigned i = 0; i < SUP_HELD_MAX; i++)
		any |= cl->sup[i].used && cl->sup[i].granted;
	cl->sup_sync_req = 0;
	if (!any || !cl->support_ok)
		return;
	cl->sup_sync_req = ++cl->next_req;
	m = json_pack("{s:s, s:I}", "type", LINK_MSG_SUPPORT_LS, "req",
		      (json_int_t)cl->sup_sync_req);
	if (cconn_send(&cl->cc, m) < 0)
		log_warn("support: cannot ask the server for its list of sessions");
	json_decref(m);
}

/* Sessions past their expiry are forgotten here too (the server closes them anyway). */
static void sup_expire(struct client *cl)
{
	int64_t now = (int64_t)time(NULL);

	for (unsigned i = 0; i < SUP_HELD_MAX; i++) {
		struct sup_held *h = &cl->sup[i];

		if (h->used && h->granted && now >= h->expires_at) {
			log_info("support session %s expired; its key is forgotten", h->id);
			sup_forget(cl, h);
		}
	}
}

/* {name: "HOST:PORT"} of a held session: the device's own view (never sent to the server). */
static json_t *sup_allow_json(const struct sup_held *h)
{
	json_t *o = json_object();
	char t[SUP_SVC_HOST_MAX + 16];

	for (unsigned i = 0; i < h->svc.n; i++) {
		const struct sup_service *v = &h->svc.s[i];

		snprintf(t, sizeof(t), v->v6 ? "[%s]:%u" : "%s:%u", v->host, v->port);
		json_object_set_new(o, v->name, json_string(t));
	}
	return o;
}

static json_t *sup_names_json(const struct sup_held *h)
{
	json_t *a = json_array();

	for (unsigned i = 0; i < h->svc.n; i++)
		json_array_append_new(a, json_string(h->svc.s[i].name));
	return a;
}

/*
 * support_list: the edge's sessions of this tunnel joined with the ones held here
 * ("held", "allow"); a held session the edge has as ended or expired, or does not
 * list, is forgotten. The joined list, or NULL when the message is not one.
 */
static json_t *sup_join(struct client *cl, json_t *m)
{
	json_t *list = json_object_get(m, "sessions"), *out, *s, *e;
	bool seen[SUP_HELD_MAX] = {false};
	size_t i;

	if (!json_is_array(list))
		return NULL;
	out = json_array();
	json_array_foreach(list, i, s)
	{
		const char *id = msg_str(s, "id"), *state = msg_str(s, "state") ?: "";
		struct sup_held *h = sup_id_valid(id) ? sup_by_id(cl, id) : NULL;

		if (!sup_id_valid(id))
			continue;
		e = supmsg_entry(s); /* what the server says, checked again */
		if (!e)
			continue;
		if (h) {
			seen[h - cl->sup] = true;
			if (strcmp(state, "pending") && strcmp(state, "approved")) {
				log_info("support session %s is %s at the server; its key is "
					 "forgotten",
					 id, state);
				sup_forget(cl, h);
				h = NULL;
			} else {
				json_object_set_new(e, "allow", sup_allow_json(h));
			}
		}
		json_object_set_new(e, "held", json_boolean(h != NULL));
		json_array_append_new(out, e);
	}
	for (unsigned k = 0; k < SUP_HELD_MAX; k++)
		if (cl->sup[k].used && cl->sup[k].granted && !seen[k]) {
			log_info("support session %s is not known to the server; its key is "
				 "forgotten",
				 cl->sup[k].id);
			sup_forget(cl, &cl->sup[k]);
		}
	return out;
}

static void on_support_message(struct client *cl, struct local *lo, const char *type, json_t *m)
{
	const char *id = msg_str(m, "id");
	long long req = msg_int(m, "req", 0);
	struct sup_held *h = NULL;
	json_t *a;

	if (!strcmp(type, LINK_MSG_SUPPORT_CLOSED)) {
		char why[LINK_SUPPORT_WHY_MAX * 4];

		h = sup_id_valid(id) ? sup_by_id(cl, id) : NULL;
		if (!h)
			return; /* not one of this client's (any more) */
		log_info("support session %s closed by the server: %s; its key is forgotten", id,
			 log_esc_str(msg_str(m, "why") ?: "?", why, sizeof(why)));
		sup_forget(cl, h);
		return;
	}
	if (!strcmp(type, LINK_MSG_SUPPORT_LIST) && req && req == cl->sup_sync_req) {
		cl->sup_sync_req = 0;
		json_decref(sup_join(cl, m));
		return;
	}
	if (!lo || !lo->support)
		return; /* an answer nobody waits for (any more) */
	if (!strcmp(type, LINK_MSG_SUPPORT_GRANTED)) {
		for (unsigned i = 0; i < SUP_HELD_MAX && !h; i++)
			if (cl->sup[i].used && !cl->sup[i].granted && cl->sup[i].req == req)
				h = &cl->sup[i];
		if (!h || !sup_id_valid(id)) {
			local_reply(cl, lo,
				    json_pack("{s:b, s:s}", "ok", 0, "error",
					      "the server's answer names no session"));
			return;
		}
		char psk[SUP_PSK_STR];

		h->granted = true;
		h->req = 0;
		str_copy(h->id, sizeof(h->id), id);
		h->expires_at = msg_int(m, "expires_at", 0);
		/* the gateway serves its streams once the edge lets them through (approved) */
		if (supgw_session_set(cl->gw, h->id, h->psk, &h->svc, h->expires_at) < 0)
			log_warn("support session %s: the support gateway cannot take it (not "
				 "running): its streams will be refused",
				 h->id);
		sup_psk_format(h->psk, psk);
		a = json_pack("{s:b, s:s, s:s, s:I, s:o, s:o}", "ok", 1, "id", h->id, "psk", psk,
			      "expires_at", (json_int_t)h->expires_at, "services",
			      sup_names_json(h), "allow", sup_allow_json(h));
		explicit_bzero(psk, sizeof(psk));
		log_info("support session %s requested (%u service%s, until %lld); waiting for an "
			 "operator's approval",
			 h->id, h->svc.n, h->svc.n == 1 ? "" : "s", (long long)h->expires_at);
		local_reply(cl, lo, a);
		return;
	}
	if (!strcmp(type, LINK_MSG_SUPPORT_ENDED)) {
		if ((h = sup_id_valid(id) ? sup_by_id(cl, id) : NULL))
			sup_forget(cl, h);
		log_info("support session %s ended by this device", sup_id_valid(id) ? id : "?");
		local_reply(cl, lo,
			    json_pack("{s:b, s:s}", "ok", 1, "id", sup_id_valid(id) ? id : ""));
		return;
	}
	if (!strcmp(type, LINK_MSG_SUPPORT_LIST)) {
		a = sup_join(cl, m);
		local_reply(cl, lo,
			    a ? json_pack("{s:b, s:o}", "ok", 1, "sessions", a)
			      : json_pack("{s:b, s:s}", "ok", 0, "error",
					  "the server's list is malformed"));
		return;
	}
}

/* Why a support request cannot go to the server now, or NULL. */
static const char *sup_unreachable(const struct client *cl)
{
	if (!cl->online)
		return "not connected to the server now; try again when the tunnel is online";
	if (!cl->support_ok)
		return "the server does not support support sessions (too old)";
	return NULL;
}

/* support_request {expires, reason, allow} from `nave support request`. */
static void sup_request_local(struct client *cl, struct local *lo, json_t *req)
{
	const char *allow = msg_str(req, "allow") ?: "", *why;
	json_t *rv = json_object_get(req, "reason"), *m;
	long long expires = msg_int(req, "expires", 0);
	struct sup_held *h = NULL;
	char err[SUP_ERR_MAX + 64], key[SUP_HEX_STR], hash[SUP_HEX_STR];
	struct sup_services svc;

	if (sup_services_parse(allow, &svc, err, sizeof(err)) < 0) {
		local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", err));
		return;
	}
	if (expires < LINK_SUPPORT_EXPIRES_MIN || expires > LINK_SUPPORT_EXPIRES_MAX) {
		local_reply(
		    cl, lo,
		    json_pack("{s:b, s:s}", "ok", 0, "error", "bad expires: 1 minute to 7 days"));
		return;
	}
	if (rv &&
	    !(json_is_string(rv) && valid_text_chars(json_string_value(rv), json_string_length(rv),
						     LINK_SUPPORT_REASON_MAX))) {
		snprintf(err, sizeof(err),
			 "bad reason: at most %d characters of UTF-8 text without control "
			 "characters",
			 LINK_SUPPORT_REASON_MAX);
		local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", err));
		return;
	}
	if ((why = sup_unreachable(cl))) {
		local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", why));
		return;
	}
	for (unsigned i = 0; i < SUP_HELD_MAX && !h; i++)
		if (!cl->sup[i].used)
			h = &cl->sup[i];
	if (!h) {
		snprintf(err, sizeof(err),
			 "this client holds %d support sessions already; end one first (nave "
			 "support end ID)",
			 SUP_HELD_MAX);
		local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", err));
		return;
	}
	memset(h, 0, sizeof(*h));
	h->used = true;
	h->svc = svc;
	sup_psk_make(h->psk);
	if (sup_auth_key(h->psk, key) < 0 || sup_auth_hash(key, hash) < 0) {
		explicit_bzero(key, sizeof(key));
		sup_forget(cl, h);
		local_reply(
		    cl, lo,
		    json_pack("{s:b, s:s}", "ok", 0, "error", "cannot derive the auth key"));
		return;
	}
	explicit_bzero(key, sizeof(key));
	h->req = ++cl->next_req;
	m = json_pack("{s:s, s:I, s:I, s:s, s:o, s:s}", "type", LINK_MSG_SUPPORT_REQUEST, "req",
		      (json_int_t)h->req, "expires", (json_int_t)expires, "reason",
		      rv ? json_string_value(rv) : "", "services", sup_names_json(h), "auth_hash",
		      hash);
	lo->support = true;
	lo->waiting = h->req;
	lo->deadline = now_ms() + LOCAL_TIMEOUT_MS;
	if (cconn_send(&cl->cc, m) < 0)
		local_reply(
		    cl, lo,
		    json_pack("{s:b, s:s}", "ok", 0, "error", "cannot reach the server now"));
	json_decref(m);
}

static void support_local(struct client *cl, struct local *lo, const char *type, json_t *req)
{
	const char *id = msg_str(req, "id"), *why;
	json_t *m, *list;
	long long rq;

	if (!strcmp(type, "support_request")) {
		sup_request_local(cl, lo, req);
		return;
	}
	if (!strcmp(type, "support_ls") && sup_unreachable(cl)) {
		/* what this client holds, without the server's word */
		list = json_array();
		for (unsigned i = 0; i < SUP_HELD_MAX; i++) {
			struct sup_held *h = &cl->sup[i];

			if (h->used && h->granted)
				json_array_append_new(
				    list, json_pack("{s:s, s:s, s:I, s:o, s:b, s:o}", "id", h->id,
						    "state", "unknown", "expires_at",
						    (json_int_t)h->expires_at, "services",
						    sup_names_json(h), "held", 1, "allow",
						    sup_allow_json(h)));
		}
		local_reply(cl, lo,
			    json_pack("{s:b, s:o, s:s}", "ok", 1, "sessions", list, "note",
				      sup_unreachable(cl)));
		return;
	}
	if (!strcmp(type, "support_end") && !sup_id_valid(id)) {
		local_reply(cl, lo,
			    json_pack("{s:b, s:s}", "ok", 0, "error",
				      "bad support session id: \"sup-\" and 10 of [a-z0-9]"));
		return;
	}
	if (strcmp(type, "support_ls") && strcmp(type, "support_end")) {
		local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", "unknown request"));
		return;
	}
	if ((why = sup_unreachable(cl))) {
		local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", why));
		return;
	}
	rq = ++cl->next_req;
	if (!strcmp(type, "support_end")) {
		struct sup_held *h = sup_by_id(cl, id);

		if (h) /* the owner ends it: its key goes now, whatever the server says */
			sup_forget(cl, h);
		m = json_pack("{s:s, s:I, s:s}", "type", LINK_MSG_SUPPORT_END, "req",
			      (json_int_t)rq, "id", id);
	} else {
		m = json_pack("{s:s, s:I}", "type", LINK_MSG_SUPPORT_LS, "req", (json_int_t)rq);
	}
	lo->support = true;
	lo->waiting = rq;
	lo->deadline = now_ms() + LOCAL_TIMEOUT_MS;
	if (cconn_send(&cl->cc, m) < 0)
		local_reply(
		    cl, lo,
		    json_pack("{s:b, s:s}", "ok", 0, "error", "cannot reach the server now"));
	json_decref(m);
}

static void on_server_message(struct client *cl, json_t *m)
{
	const char *type = msg_str(m, "type");
	long long req = msg_int(m, "req", 0);
	struct local *lo = req ? local_waiting(cl, req) : NULL;
	struct rule *r;

	cl->last_rx = now_ms();
	if (!strcmp(type, LINK_MSG_HEARTBEAT_ACK))
		return;
	if (!strcmp(type, LINK_MSG_TCP_GRANT) || !strcmp(type, LINK_MSG_UDP_GRANT)) {
		long long port = msg_int(m, "port", 0);
		bool udp = !strcmp(type, LINK_MSG_UDP_GRANT);

		pthread_mutex_lock(&cl->lock);
		r = rule_by_name(cl, msg_str(m, "name") ?: "");
		if (r && (r->http || r->cfg.udp != udp))
			r = NULL;
		if (r && port > 0 && port <= 65535)
			r->granted = (uint16_t)port;
		pthread_mutex_unlock(&cl->lock);
		if (r) {
			log_info("rule %s: public %s port %lld -> %s", r->cfg.name,
				 udp ? "UDP" : "TCP", port, r->cfg.to);
			persist(cl);
		}
		if (lo) {
			json_t *a =
			    json_pack("{s:b, s:s, s:I, s:s}", "ok", 1, "name", r ? r->cfg.name : "",
				      "port", (json_int_t)port, "to", r ? r->cfg.to : "");

			if (a && udp)
				json_object_set_new(a, "transport", json_string("udp"));
			local_reply(cl, lo, a);
		}
		return;
	}
	if (!strcmp(type, LINK_MSG_HTTP_GRANT)) {
		long long route = msg_int(m, "route", 0);
		char tb[CFG_PATH_MAX + 16], dom[CFG_STR_MAX];

		pthread_mutex_lock(&cl->lock);
		r = rule_by_name(cl, msg_str(m, "name") ?: "");
		if (r && (!r->http || route < 1 || route > 65535))
			r = NULL;
		if (r) {
			r->granted = (uint16_t)route;
			r->refused[0] = 0;
			str_copy(dom, sizeof(dom), r->h.domain);
			http_target(r, tb, sizeof(tb));
		}
		pthread_mutex_unlock(&cl->lock);
		if (!r) {
			log_warn(
			    "http_grant for no HTTP rule of this client (name %s, route %lld): "
			    "ignored",
			    msg_str(m, "name") ?: "?", route);
			if (lo)
				local_reply(cl, lo,
					    json_pack("{s:b, s:s}", "ok", 0, "error",
						      "the server granted something else"));
			return;
		}
		log_info("rule %s: %s://%s -> %s", r->cfg.name,
			 r->h.tls_passthrough ? "https" : "http", dom, tb);
		if (lo)
			local_reply(cl, lo,
				    json_pack("{s:b, s:s, s:s, s:s, s:I, s:s}", "ok", 1, "type",
					      "http", "name", r->cfg.name, "domain", dom, "route",
					      (json_int_t)route, "state", "granted"));
		return;
	}
	if (!strcmp(type, LINK_MSG_TCP_REMOVED) || !strcmp(type, LINK_MSG_HTTP_REMOVED) ||
	    !strcmp(type, LINK_MSG_UDP_REMOVED)) {
		if (lo)
			local_reply(cl, lo, json_pack("{s:b}", "ok", 1));
		return;
	}
	if (!strcmp(type, LINK_MSG_TCP_SYNCED)) {
		json_t *rel = json_object_get(m, "released"), *v;
		size_t i;

		json_array_foreach(rel, i, v)
		    log_info("public port %lld released: no rule of this client holds it any more",
			     (long long)json_integer_value(v));
		return;
	}
	if (!strcmp(type, LINK_MSG_DEAUTHED)) {
		log_info("the server revoked this client's token (deauth); stopping");
		cl->cfg->token[0] = 0;
		persist(cl);
		if (lo)
			local_reply(cl, lo,
				    json_pack("{s:b, s:b, s:s}", "ok", 1, "revoked", 1, "tunnel_id",
					      cl->tunnel_id));
		cl->exit_code = 0;
		cl->quit = true;
		return;
	}
	if (!strcmp(type, LINK_MSG_REQ_ERROR) && (lo ? lo->support : req == cl->sup_sync_req)) {
		log_warn("support: the server refused a request: %s", msg_str(m, "reason") ?: "?");
		if (lo)
			local_reply(cl, lo,
				    json_pack("{s:b, s:s}", "ok", 0, "error",
					      msg_str(m, "reason") ?: "refused"));
		return;
	}
	if (!strcmp(type, LINK_MSG_REQ_ERROR)) {
		const char *reason = msg_str(m, "reason") ?: "refused";
		struct rule gone;
		bool forgot = false;

		pthread_mutex_lock(&cl->lock);
		r = NULL;
		for (unsigned i = 0; req && i < cl->nrules && !r; i++)
			if (cl->rules[i].req == req)
				r = &cl->rules[i];
		if (r && !lo)
			str_copy(r->refused, sizeof(r->refused), reason);
		pthread_mutex_unlock(&cl->lock);
		if (r)
			log_warn("rule %s: the server refused it: %s", r->cfg.name, reason);
		else
			log_warn("server refused a request: %s", reason);
		if (lo) {
			if (!lo->remove && !lo->deauth) {
				/* a refused add: forget the rule again */
				pthread_mutex_lock(&cl->lock);
				r = rule_by_name(cl, lo->rule);
				if (r) {
					gone = *r;
					forgot = true;
					*r = cl->rules[--cl->nrules];
				}
				pthread_mutex_unlock(&cl->lock);
				if (forgot)
					rule_forget(cl, &gone);
				persist(cl);
			}
			local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", reason));
		}
		return;
	}
	if (!strcmp(type, LINK_MSG_RULE_PUSH)) {
		on_rule_push(cl, m);
		return;
	}
	if (!strncmp(type, "support_", 8)) {
		on_support_message(cl, lo, type, m);
		return;
	}
	if (!strcmp(type, LINK_MSG_SHUTDOWN)) {
		const char *reason = msg_str(m, "reason") ?: "no reason given";

		log_warn("the server shut this tunnel down: %s", reason);
		fprintf(stderr, "nave: the server shut this tunnel down: %s\n", reason);
		/* a revoked token or certificate, an expired one: the client cannot come back */
		cl->exit_code =
		    strstr(reason, "revoked") || !strncmp(reason, "certificate", 11) ? 1 : 0;
		cl->quit = true;
		return;
	}
	if (!strcmp(type, LINK_MSG_ERROR)) {
		log_warn("server error: %s", msg_str(m, "reason") ?: "?");
		return;
	}
	/* unknown types are ignored */
}

json_t *client_http_rule_json(const struct cfg_http_rule *h, unsigned route, const char *state,
			      const char *reason)
{
	json_t *flags = json_array(), *j;
	char user[CFG_STR_MAX];

	if (h->tls_passthrough)
		json_array_append_new(flags, json_string("tls_passthrough"));
	if (h->redirect_https)
		json_array_append_new(flags, json_string("redirect_https"));
	if (h->host_header[0])
		json_array_append_new(flags, json_string("host_header"));
	if (h->basic_auth[0])
		json_array_append_new(flags, json_string("basic_auth"));
	if (h->proxy_protocol)
		json_array_append_new(flags,
				      json_string(h->proxy_protocol == 1 ? "proxy_protocol_v1"
									 : "proxy_protocol_v2"));
	j = json_pack("{s:s, s:s, s:s}", "name", h->name, "type", "http", "domain", h->domain);
	if (h->webroot[0])
		json_object_set_new(j, "webroot", json_string(h->webroot));
	else
		json_object_set_new(j, "to", json_string(h->to));
	json_object_set_new(j, "flags", flags);
	if (h->host_header[0])
		json_object_set_new(j, "host_header", json_string(h->host_header));
	if (h->basic_auth[0]) {
		str_copy(user, sizeof(user), h->basic_auth);
		*strchrnul(user, ':') = 0;
		json_object_set_new(j, "basic_auth_user", json_string(user));
	}
	json_object_set_new(j, "state", json_string(state));
	if (route)
		json_object_set_new(j, "route", json_integer(route));
	if (reason && reason[0])
		json_object_set_new(j, "reason", json_string(reason));
	return j;
}

static json_t *lsn_list(struct client *cl, bool socks);

static json_t *status_json(struct client *cl)
{
	struct engine_stats s;
	json_t *rules = json_array(), *hrules = json_array();

	engine_stats(cl->eng, &s);
	pthread_mutex_lock(&cl->lock);
	for (unsigned i = 0; i < cl->nrules; i++) {
		const struct rule *r = &cl->rules[i];

		if (r->http) {
			json_array_append_new(hrules,
					      client_http_rule_json(&r->h, r->granted,
								    r->refused[0] ? "refused"
								    : r->granted  ? "granted"
								    : cl->online  ? "waiting"
										  : "offline",
								    r->refused));
			continue;
		}
		json_t *tr = json_pack(
		    "{s:s, s:s, s:i, s:s}", "name", cl->rules[i].cfg.name, "to",
		    cl->rules[i].cfg.to, "port",
		    (int)(cl->rules[i].granted ? cl->rules[i].granted : cl->rules[i].cfg.port),
		    "state",
		    cl->rules[i].refused[0] ? "refused"
		    : cl->rules[i].granted  ? "active"
					    : "pending");

		/* "transport" only for a UDP rule: absent means tcp */
		if (tr && cl->rules[i].cfg.udp)
			json_object_set_new(tr, "transport", json_string("udp"));
		json_array_append_new(rules, tr);
	}
	pthread_mutex_unlock(&cl->lock);
	json_t *st =
	    json_pack("{s:b, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I, "
		      "s:I, s:b, s:o}",
		      "ok", 1, "state", cl->online ? "online" : "connecting", "server",
		      cl->cfg->server, "tunnel_id", cl->tunnel_id, "version", NAVE_VERSION, "links",
		      (json_int_t)s.links, "idle_links", (json_int_t)s.idle_links, "ktls",
		      cl->ktls_mode, "links_ktls", (json_int_t)s.links_ktls, "links_tls",
		      (json_int_t)s.links_tls, "ktls_fallbacks", (json_int_t)s.ktls_fallbacks,
		      "conns", (json_int_t)s.conns, "conns_total", (json_int_t)s.conns_total,
		      "bytes_in", (json_int_t)s.bytes_out, "bytes_out", (json_int_t)s.bytes_in,
		      "control_ktls", cl->cc.ktls_tx && cl->cc.ktls_rx, "rules", rules);
	json_object_set_new(st, "http_rules", hrules);
	json_object_set_new(st, "maps", lsn_list(cl, false));
	json_object_set_new(st, "socks", lsn_list(cl, true));
	json_object_set_new(st, "mesh", json_boolean(cl->mesh));
	/* UDP: flows of UDP port maps (a gauge); datagrams of every UDP flow, and drops */
	json_object_set_new(st, "udp",
			    json_pack("{s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I}}", "map_flows",
				      (json_int_t)s.udp_flows, "flows_expired",
				      (json_int_t)s.udp_expired, "datagrams_in",
				      (json_int_t)s.udp_in, "datagrams_out", (json_int_t)s.udp_out,
				      "dropped", "queue", (json_int_t)s.udp_dropped[UDP_DROP_QUEUE],
				      "flows", (json_int_t)s.udp_dropped[UDP_DROP_FLOWS],
				      "oversize", (json_int_t)s.udp_dropped[UDP_DROP_OVERSIZE],
				      "refused", (json_int_t)s.udp_dropped[UDP_DROP_OFFLINE]));
	json_object_set_new(st, "mesh_opened", json_integer((json_int_t)s.mesh_opened));
	{
		/* by OPENED status (link_proto.h); "local": refused by the client itself */
		static const char *const names[LINK_OPEN_STATUS_MAX + 1] = {
		    "local", "denied",	"not_found",   "offline", "not_allowed",
		    "dns",   "refused", "unreachable", "busy",	  "bad"};
		json_t *by = json_object();
		uint64_t total = 0;

		for (unsigned k = 0; k <= LINK_OPEN_STATUS_MAX; k++) {
			if (!s.mesh_refused[k])
				continue;
			total += s.mesh_refused[k];
			json_object_set_new(by, names[k],
					    json_integer((json_int_t)s.mesh_refused[k]));
		}
		json_object_set_new(st, "mesh_refused", json_integer((json_int_t)total));
		json_object_set_new(st, "mesh_refused_by", by);
	}
	if (cl->www)
		json_object_set_new(st, "webroot_socket", json_string(cl->www_path));
	return st;
}

/*
 * A rule name free among both kinds; NULL, or why not. Under cl->lock.
 */
static const char *rule_slot_error(struct client *cl, const char *name)
{
	if (rule_by_name(cl, name))
		return "a rule with that name exists";
	if (cl->nrules >= CFG_MAX_RULES)
		return "too many rules";
	return NULL;
}

/*
 * http_add from `nave tunnel http add`: the same checks as the config's
 * (the socket is ours, but the config is what persists it), then the rule is
 * saved and asked for; the reply waits for http_grant or req_error.
 */
static void http_add_local(struct client *cl, struct local *lo, json_t *req)
{
	const char *domain = msg_str(req, "domain") ?: "", *why, *key;
	char err[CFG_ERR_MAX], tb[CFG_PATH_MAX + 16];
	struct rule nr;

	memset(&nr, 0, sizeof(nr));
	nr.http = true;
	if (!str_copy(nr.h.name, sizeof(nr.h.name), msg_str(req, "name") ?: "") ||
	    !cfg_valid_name(nr.h.name)) {
		local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", "bad rule name"));
		return;
	}
	str_copy(nr.cfg.name, sizeof(nr.cfg.name), nr.h.name);
	if (!domain_norm(domain, strlen(domain), nr.h.domain, true)) {
		local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", "bad domain"));
		return;
	}
	if (!str_copy(nr.h.to, sizeof(nr.h.to), msg_str(req, "to") ?: "") ||
	    !str_copy(nr.h.webroot, sizeof(nr.h.webroot), msg_str(req, "webroot") ?: "") ||
	    !str_copy(nr.h.host_header, sizeof(nr.h.host_header),
		      msg_str(req, "host_header") ?: "") ||
	    !str_copy(nr.h.basic_auth, sizeof(nr.h.basic_auth), msg_str(req, "basic_auth") ?: "") ||
	    (nr.h.webroot[0] && nr.h.webroot[0] != '/') ||
	    (nr.h.host_header[0] && !cfg_valid_host_header(nr.h.host_header)) ||
	    (nr.h.basic_auth[0] && !cfg_valid_basic_auth(nr.h.basic_auth))) {
		local_reply(cl, lo,
			    json_pack("{s:b, s:s}", "ok", 0, "error", "bad http_add request"));
		return;
	}
	nr.h.tls_passthrough = json_is_true(json_object_get(req, "tls_passthrough"));
	nr.h.redirect_https = json_is_true(json_object_get(req, "redirect_https"));
	nr.h.proxy_protocol = (int)msg_int(req, "proxy_protocol", 0);
	if (nr.h.proxy_protocol < 0 || nr.h.proxy_protocol > 2) {
		local_reply(cl, lo,
			    json_pack("{s:b, s:s}", "ok", 0, "error", "bad http_add request"));
		return;
	}
	why = cfg_http_rule_check(&nr.h, &key);
	if (why) {
		snprintf(err, sizeof(err), "%s: %s", key, why);
		local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", err));
		return;
	}
	pthread_mutex_lock(&cl->lock);
	why = rule_slot_error(cl, nr.h.name);
	for (unsigned i = 0; !why && i < cl->nrules; i++)
		if (cl->rules[i].http && !strcmp(cl->rules[i].h.domain, nr.h.domain))
			why = "another rule of this client has that domain";
	pthread_mutex_unlock(&cl->lock);
	if (why) {
		local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", why));
		return;
	}
	if (http_resolve(cl, &nr, err, sizeof(err)) < 0) {
		local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", err));
		return;
	}
	pthread_mutex_lock(&cl->lock);
	cl->rules[cl->nrules++] = nr;
	pthread_mutex_unlock(&cl->lock);
	persist(cl);
	log_info("rule %s: http://%s -> %s (asking the server)", nr.h.name, nr.h.domain,
		 http_target(&nr, tb, sizeof(tb)));
	if (!cl->online) {
		local_reply(cl, lo,
			    json_pack("{s:b, s:s, s:s, s:s, s:s}", "ok", 1, "type", "http", "name",
				      nr.h.name, "domain", nr.h.domain, "note",
				      "not connected to the server: saved, applied on reconnect"));
		return;
	}
	lo->waiting = request_rule(cl, rule_by_name(cl, nr.h.name), false);
	str_copy(lo->rule, sizeof(lo->rule), nr.h.name);
	lo->deadline = now_ms() + LOCAL_TIMEOUT_MS;
}

/* ---------- port maps and SOCKS listeners ---------- */

int client_listen_local(const char *addr, uint16_t port, bool lis, bool udp, char *err,
			size_t errlen)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	socklen_t sl;
	int fd, one = 1, e;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		sl = sizeof(*a4);
	} else if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		sl = sizeof(*a6);
	} else {
		snprintf(err, errlen, "bad local address (want an IPv4 or IPv6 address)");
		return -1;
	}
	fd = socket(ss.ss_family, (udp ? SOCK_DGRAM | SOCK_NONBLOCK : SOCK_STREAM) | SOCK_CLOEXEC,
		    0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/* a map removed and added again binds at once (its old connections linger) */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || (lis && !udp && listen(fd, 256) < 0)) {
		e = errno;
		close(fd);
		if (e == EADDRINUSE)
			snprintf(err, errlen, "local port %u is already in use on %s", port, addr);
		else
			snprintf(err, errlen, "cannot listen on %s port %u: %s", addr, port,
				 strerror(e));
		return -1;
	}
	return fd;
}

static uint16_t lsn_port(const struct lsn *l)
{
	return l->socks ? l->sk.port : l->map.local;
}

static struct lsn *lsn_find(struct client *cl, uint16_t port)
{
	for (unsigned i = 0; i < cl->nlsn; i++)
		if (lsn_port(&cl->lsn[i]) == port)
			return &cl->lsn[i];
	return NULL;
}

/* Binds l's port and hands the listener to the worker; 0 or -1 with err (l->error too). */
static int lsn_start(struct client *cl, struct lsn *l, char *err, size_t errlen)
{
	struct engine_map em;
	struct mb_msg mb;
	int fd;

	fd = client_listen_local(l->socks ? l->sk.bind : l->map.bind, lsn_port(l), true,
				 !l->socks && l->map.transport == CFG_TRANSPORT_UDP, err, errlen);
	if (fd < 0) {
		str_copy(l->error, sizeof(l->error), err);
		return -1;
	}
	memset(&em, 0, sizeof(em));
	em.kind = l->socks ? EMAP_SOCKS : EMAP_PORT;
	em.local = lsn_port(l);
	if (l->socks) {
		str_copy(em.user, sizeof(em.user), l->sk.username);
		str_copy(em.hash, sizeof(em.hash), l->sk.password_hash);
	} else {
		em.port = l->map.port;
		em.udp = l->map.transport == CFG_TRANSPORT_UDP;
		str_copy(em.name, sizeof(em.name), l->map.destination);
	}
	memset(&mb, 0, sizeof(mb));
	mb.type = MB_MAP_LISTEN;
	mb.fd = fd;
	mb.port = lsn_port(l);
	mb.data = (uint8_t *)&em; /* engine_post copies it */
	mb.len = sizeof(em);
	if (engine_post(cl->eng, 0, &mb) < 0) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		str_copy(l->error, sizeof(l->error), err);
		return -1;
	}
	l->up = true;
	l->error[0] = 0;
	if (l->socks)
		log_info("SOCKS5 proxy listening on %s port %u%s", l->sk.bind, l->sk.port,
			 l->sk.username[0] ? " (with a user and password)" : "");
	else
		log_info("%sport map %u -> %s:%u listening on %s",
			 l->map.transport == CFG_TRANSPORT_UDP ? "udp " : "", l->map.local,
			 l->map.destination, l->map.port, l->map.bind);
	return 0;
}

/* The worker closes l's listener; waits (briefly) until it did, so the port is free again. */
static void lsn_stop(struct client *cl, struct lsn *l)
{
	unsigned want = atomic_load(&cl->unlisten_acked) + 1;
	struct mb_msg mb;

	if (!l->up)
		return;
	memset(&mb, 0, sizeof(mb));
	mb.type = MB_MAP_UNLISTEN;
	mb.port = lsn_port(l);
	mb.ack = &cl->unlisten_acked; /* lives as long as the engine */
	l->up = false;
	if (engine_post(cl->eng, 0, &mb) < 0)
		return;
	for (int i = 0; i < 400 && atomic_load(&cl->unlisten_acked) < want; i++)
		usleep(5000);
	if (atomic_load(&cl->unlisten_acked) < want)
		log_warn("local port %u: the worker did not close its listener in time", mb.port);
}

static json_t *lsn_json(const struct lsn *l, bool running)
{
	json_t *j;

	if (l->socks) {
		j = json_pack("{s:i, s:s, s:b}", "port", l->sk.port, "bind", l->sk.bind, "auth",
			      l->sk.username[0] != 0);
		if (l->sk.username[0])
			json_object_set_new(j, "username", json_string(l->sk.username));
	} else {
		j = json_pack("{s:i, s:s, s:s, s:i, s:s, s:b}", "local", l->map.local, "transport",
			      l->map.transport == CFG_TRANSPORT_UDP ? "udp" : "tcp", "destination",
			      l->map.destination, "port", l->map.port, "bind", l->map.bind,
			      "public", l->map.public);
	}
	json_object_set_new(j, "state",
			    json_string(!running ? "saved"
					: l->up	 ? "listening"
						 : "error"));
	if (running && !l->up && l->error[0])
		json_object_set_new(j, "error", json_string(l->error));
	return j;
}

json_t *client_listeners_json(const struct cfg_client *c, bool socks)
{
	json_t *a = json_array();
	struct lsn l;

	for (unsigned i = 0; i < (socks ? c->n_socks : c->n_maps); i++) {
		memset(&l, 0, sizeof(l));
		l.socks = socks;
		if (socks)
			l.sk = c->socks[i];
		else
			l.map = c->maps[i];
		json_array_append_new(a, lsn_json(&l, false));
	}
	return a;
}

static json_t *lsn_list(struct client *cl, bool socks)
{
	json_t *a = json_array();

	for (unsigned i = 0; i < cl->nlsn; i++)
		if (cl->lsn[i].socks == socks)
			json_array_append_new(a, lsn_json(&cl->lsn[i], true));
	return a;
}

static json_t *reply_err(const char *why)
{
	return json_pack("{s:b, s:s}", "ok", 0, "error", why);
}

/* A local port of a request: 1..65535, else 0. */
static uint16_t req_port(json_t *req, const char *key)
{
	long long v = msg_int(req, key, 0);

	return v >= 1 && v <= 65535 ? (uint16_t)v : 0;
}

/* Whether another listener may take port; else why not, into err. */
static bool lsn_port_free(struct client *cl, uint16_t port, char *err, size_t errlen)
{
	struct lsn *o = lsn_find(cl, port);

	if (!o)
		return true;
	snprintf(err, errlen, "local port %u is a %s already (remove it first)", port,
		 o->socks ? "SOCKS proxy" : "port map");
	return false;
}

/* map_add, socks_add: checked as the config's keys, bound, handed over, saved. */
static void lsn_add_local(struct client *cl, struct local *lo, json_t *req, bool socks)
{
	const char *bind = msg_str(req, "bind") ?: "127.0.0.1", *why, *key;
	char err[256];
	struct lsn nl;

	memset(&nl, 0, sizeof(nl));
	nl.socks = socks;
	if (!cfg_valid_bind(bind)) {
		local_reply(cl, lo, reply_err("bad bind address (want an IPv4 or IPv6 address)"));
		return;
	}
	if (socks) {
		nl.sk.port = req_port(req, "port");
		str_copy(nl.sk.bind, sizeof(nl.sk.bind), bind);
		if (!nl.sk.port) {
			local_reply(cl, lo, reply_err("bad port (1-65535)"));
			return;
		}
		if (!str_copy(nl.sk.username, sizeof(nl.sk.username),
			      msg_str(req, "username") ?: "") ||
		    !str_copy(nl.sk.password_hash, sizeof(nl.sk.password_hash),
			      msg_str(req, "password_hash") ?: "")) {
			local_reply(cl, lo, reply_err("bad username or password_hash"));
			return;
		}
		if (nl.sk.username[0]) {
			char ua[CFG_STR_MAX + CFG_USER_MAX + 2];

			snprintf(ua, sizeof(ua), "%s:%s", nl.sk.username, nl.sk.password_hash);
			if (!cfg_valid_basic_auth(ua)) {
				local_reply(cl, lo, reply_err("bad username or password_hash"));
				return;
			}
		}
		why = cfg_socks_check(&nl.sk, &key);
		if (why) {
			snprintf(err, sizeof(err), "%s: %s", key, why);
			local_reply(cl, lo, reply_err(err));
			return;
		}
	} else {
		const char *tr = msg_str(req, "transport") ?: "tcp";

		if (strcmp(tr, "tcp") && strcmp(tr, "udp")) {
			local_reply(cl, lo, reply_err("bad transport (tcp or udp)"));
			return;
		}
		nl.map.transport = !strcmp(tr, "udp") ? CFG_TRANSPORT_UDP : CFG_TRANSPORT_TCP;
		nl.map.public = json_is_true(json_object_get(req, "public"));
		nl.map.local = req_port(req, "local");
		nl.map.port = req_port(req, "port");
		str_copy(nl.map.bind, sizeof(nl.map.bind), bind);
		if (!nl.map.local || !nl.map.port) {
			local_reply(cl, lo, reply_err("bad local port or port (1-65535)"));
			return;
		}
		if (!cfg_valid_destination(msg_str(req, "destination")) ||
		    !str_copy(nl.map.destination, sizeof(nl.map.destination),
			      msg_str(req, "destination"))) {
			local_reply(cl, lo,
				    reply_err("bad destination (a tunnel id, group id, domain name "
					      "or IP address)"));
			return;
		}
		why = cfg_portmap_check(&nl.map, &key);
		if (why) {
			snprintf(err, sizeof(err), "%s: %s", key, why);
			local_reply(cl, lo, reply_err(err));
			return;
		}
	}
	if (!lsn_port_free(cl, lsn_port(&nl), err, sizeof(err))) {
		local_reply(cl, lo, reply_err(err));
		return;
	}
	if (socks ? cl->cfg->n_socks >= CFG_MAX_SOCKS : cl->cfg->n_maps >= CFG_MAX_MAPS) {
		snprintf(err, sizeof(err), "too many %s (at most %d)",
			 socks ? "SOCKS proxies" : "port maps",
			 socks ? CFG_MAX_SOCKS : CFG_MAX_MAPS);
		local_reply(cl, lo, reply_err(err));
		return;
	}
	if (lsn_start(cl, &nl, err, sizeof(err)) < 0) {
		local_reply(cl, lo, reply_err(err)); /* nothing saved */
		return;
	}
	cl->lsn[cl->nlsn++] = nl;
	persist(cl);
	json_t *r = lsn_json(&nl, true);
	json_object_set_new(r, "ok", json_true());
	if (!cl->online || !cl->mesh)
		json_object_set_new(r, "note",
				    json_string(!cl->online ? "not connected to the server: "
							      "connections wait for it (10 s)"
							    : "the server does not support port "
							      "maps (too old)"));
	local_reply(cl, lo, r);
}

static void lsn_rm_local(struct client *cl, struct local *lo, json_t *req, bool socks)
{
	uint16_t port = req_port(req, socks ? "port" : "local");
	struct lsn *l = port ? lsn_find(cl, port) : NULL;
	char err[128];

	if (!l || l->socks != socks) {
		snprintf(err, sizeof(err), "no %s on local port %u",
			 socks ? "SOCKS proxy" : "port map", port);
		local_reply(cl, lo, reply_err(err));
		return;
	}
	lsn_stop(cl, l);
	log_info("%s on local port %u removed", socks ? "SOCKS proxy" : "port map", port);
	*l = cl->lsn[--cl->nlsn];
	persist(cl);
	local_reply(cl, lo, json_pack("{s:b}", "ok", 1));
}

static void support_local(struct client *cl, struct local *lo, const char *type, json_t *req);

static void on_local_request(struct client *cl, struct local *lo, json_t *req)
{
	const char *type = msg_str(req, "type");
	char err[256];

	if (!strcmp(type, "status") || !strcmp(type, "tcp_ls")) {
		local_reply(cl, lo, status_json(cl));
		return;
	}
	if (!strcmp(type, "tcp_add")) {
		struct rule nr;

		memset(&nr, 0, sizeof(nr));
		str_copy(nr.cfg.name, sizeof(nr.cfg.name), msg_str(req, "name") ?: "");
		str_copy(nr.cfg.to, sizeof(nr.cfg.to), msg_str(req, "to") ?: "");
		nr.cfg.port = (uint16_t)msg_int(req, "port", 0);
		nr.cfg.proxy_protocol = (int)msg_int(req, "proxy_protocol", 0);
		nr.cfg.udp = !strcmp(msg_str(req, "transport") ?: "tcp", "udp");
		if (nr.cfg.udp && nr.cfg.proxy_protocol) {
			local_reply(cl, lo,
				    json_pack("{s:b, s:s}", "ok", 0, "error",
					      "a UDP rule takes no PROXY protocol header"));
			return;
		}
		if (!cfg_valid_name(nr.cfg.name) || rule_resolve(&nr, err, sizeof(err)) < 0) {
			if (!cfg_valid_name(nr.cfg.name))
				snprintf(err, sizeof(err), "bad rule name");
			local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", err));
			return;
		}
		pthread_mutex_lock(&cl->lock);
		if (rule_by_name(cl, nr.cfg.name) || cl->nrules >= CFG_MAX_RULES) {
			pthread_mutex_unlock(&cl->lock);
			local_reply(cl, lo,
				    json_pack("{s:b, s:s}", "ok", 0, "error",
					      cl->nrules >= CFG_MAX_RULES
						  ? "too many rules"
						  : "a rule with that name exists"));
			return;
		}
		cl->rules[cl->nrules++] = nr;
		pthread_mutex_unlock(&cl->lock);
		persist(cl);
		if (!cl->online) {
			local_reply(cl, lo,
				    json_pack("{s:b, s:s, s:n, s:s}", "ok", 1, "name", nr.cfg.name,
					      "port", "note",
					      "not connected to the server: saved, applied on "
					      "reconnect"));
			return;
		}
		if (nr.cfg.udp && !cl->udp) {
			request_rule(cl, rule_by_name(cl, nr.cfg.name), false); /* refused */
			local_reply(cl, lo,
				    json_pack("{s:b, s:s, s:n, s:s}", "ok", 1, "name", nr.cfg.name,
					      "port", "note",
					      "saved, but the server does not support UDP rules "
					      "(too old)"));
			return;
		}
		lo->waiting = request_rule(cl, rule_by_name(cl, nr.cfg.name), false);
		str_copy(lo->rule, sizeof(lo->rule), nr.cfg.name);
		lo->deadline = now_ms() + LOCAL_TIMEOUT_MS;
		return;
	}
	if (!strcmp(type, "http_add")) {
		http_add_local(cl, lo, req);
		return;
	}
	if (!strcmp(type, "map_add") || !strcmp(type, "socks_add")) {
		lsn_add_local(cl, lo, req, type[0] == 's');
		return;
	}
	if (!strcmp(type, "map_rm") || !strcmp(type, "socks_rm")) {
		lsn_rm_local(cl, lo, req, type[0] == 's');
		return;
	}
	if (!strcmp(type, "map_ls")) {
		local_reply(cl, lo,
			    json_pack("{s:b, s:o, s:o}", "ok", 1, "maps", lsn_list(cl, false),
				      "socks", lsn_list(cl, true)));
		return;
	}
	if (!strcmp(type, "tcp_rm") || !strcmp(type, "http_rm") || !strcmp(type, "rule_rm")) {
		struct rule *r, old;

		pthread_mutex_lock(&cl->lock);
		r = rule_by_name(cl, msg_str(req, "name") ?: "");
		if (!r) {
			pthread_mutex_unlock(&cl->lock);
			local_reply(cl, lo,
				    json_pack("{s:b, s:s}", "ok", 0, "error", "no such rule"));
			return;
		}
		old = *r;
		*r = cl->rules[--cl->nrules];
		pthread_mutex_unlock(&cl->lock);
		rule_forget(cl, &old);
		persist(cl);
		if (!cl->online || !old.granted) {
			local_reply(cl, lo, json_pack("{s:b}", "ok", 1));
			return;
		}
		lo->waiting = request_rule(cl, &old, true);
		lo->remove = true;
		lo->deadline = now_ms() + LOCAL_TIMEOUT_MS;
		return;
	}
	if (!strncmp(type, "support_", 8)) {
		support_local(cl, lo, type, req);
		return;
	}
	if (!strcmp(type, "deauth")) {
		json_t *d;

		if (!cl->online && json_is_true(json_object_get(req, "force"))) {
			/* forget the token without the server (nave deauth --force) */
			log_warn("deauth --force: forgetting the token without the server");
			cl->cfg->token[0] = 0;
			persist(cl);
			local_reply(cl, lo, json_pack("{s:b, s:b}", "ok", 1, "revoked", 0));
			cl->quit = true;
			return;
		}
		if (!cl->online) {
			local_reply(
			    cl, lo,
			    json_pack("{s:b, s:s}", "ok", 0, "error",
				      "the running client is not connected to the server, so "
				      "it cannot revoke the token now"));
			return;
		}
		lo->waiting = ++cl->next_req;
		d = json_pack("{s:s, s:I}", "type", LINK_MSG_DEAUTH, "req",
			      (json_int_t)lo->waiting);
		if (cconn_send(&cl->cc, d) < 0) {
			json_decref(d);
			local_reply(cl, lo,
				    json_pack("{s:b, s:s}", "ok", 0, "error",
					      "cannot reach the server now"));
			return;
		}
		json_decref(d);
		lo->deauth = true;
		lo->deadline = now_ms() + LOCAL_TIMEOUT_MS;
		return;
	}
	local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", "unknown request"));
}

static void local_accept(struct client *cl)
{
	int fd = accept4(cl->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	for (unsigned i = 0; i < LOCAL_MAX; i++) {
		if (!lo_used(&cl->locals[i])) {
			cl->locals[i].fd = fd;
			msg_reader_init(&cl->locals[i].mr);
			cl->locals[i].deadline = now_ms() + LOCAL_TIMEOUT_MS;
			return;
		}
	}
	close(fd);
}

static void local_read(struct client *cl, struct local *lo)
{
	uint8_t buf[4096];
	char err[128];
	json_t *req;
	ssize_t n = read(lo->fd, buf, sizeof(buf));
	int r;

	if (n <= 0 || msg_reader_feed(&lo->mr, buf, (size_t)n) < 0) {
		if (n < 0 && errno == EAGAIN)
			return;
		close(lo->fd);
		msg_reader_free(&lo->mr);
		memset(lo, 0, sizeof(*lo));
		return;
	}
	r = msg_reader_next(&lo->mr, &req, err, sizeof(err));
	if (r < 0) {
		local_reply(cl, lo, json_pack("{s:b, s:s}", "ok", 0, "error", err));
		return;
	}
	if (r == 1) {
		on_local_request(cl, lo, req);
		json_decref(req);
	}
}

static int local_listen(struct client *cl)
{
	struct sockaddr_un sa;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (!str_copy(sa.sun_path, sizeof(sa.sun_path), cl->cfg->socket)) {
		fprintf(stderr, "nave: socket path too long: %s\n", cl->cfg->socket);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		fprintf(stderr, "nave: already running (socket %s)\n", cl->cfg->socket);
		close(fd);
		return -1;
	}
	unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		fprintf(stderr, "nave: cannot listen on %s: %s\n", cl->cfg->socket,
			strerror(errno));
		close(fd);
		return -1;
	}
	chmod(sa.sun_path, 0600);
	return fd;
}

int client_run(struct cfg_client *c)
{
	struct client *cl = calloc(1, sizeof(*cl));
	struct engine_config ec;
	char err[CFG_ERR_MAX], host[256];
	uint16_t port;
	sigset_t set;
	unsigned long fd_limit;
	uint64_t wd, wd_next;
	int sfd, rc;

	if (!cl)
		return 1;
	cl->cfg = c;
	cl->cc.fd = -1;
	cl->lfd = -1;
	/* until the engine setup below says which mode it runs in */
	pthread_mutex_init(&cl->lock, NULL);
	if (!c->token[0] && !c->cert[0]) {
		fprintf(stderr, "nave: not configured: run nave configure first (%s)\n", c->path);
		goto fail;
	}
	for (unsigned i = 0; i < c->n_tcp; i++) {
		struct rule *r = &cl->rules[cl->nrules];

		memset(r, 0, sizeof(*r));
		r->cfg = c->tcp[i];
		if (rule_resolve(r, err, sizeof(err)) < 0) {
			fprintf(stderr, "nave: rule %s: %s\n", r->cfg.name, err);
			goto fail;
		}
		cl->nrules++;
	}
	cl->ctx = client_ctx(c, err, sizeof(err));
	if (!cl->ctx) {
		fprintf(stderr, "nave: %s\n", err);
		goto fail;
	}
	cl->ctl_ctx = client_ctl_ctx(c, err, sizeof(err));
	if (!cl->ctl_ctx) {
		fprintf(stderr, "nave: %s\n", err);
		goto fail;
	}
	/*
	 * blocked before any thread starts (the webroot server's below): a thread that
	 * takes SIGTERM would end the process without its shutdown
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	cl->lfd = local_listen(cl);
	if (cl->lfd < 0)
		goto fail;
	/* after the socket: a second instance must not replace the first one's webroot */
	for (unsigned i = 0; i < c->n_http; i++) {
		struct rule *r = &cl->rules[cl->nrules];

		memset(r, 0, sizeof(*r));
		r->http = true;
		r->h = c->http[i];
		str_copy(r->cfg.name, sizeof(r->cfg.name), r->h.name);
		if (http_resolve(cl, r, err, sizeof(err)) < 0) {
			fprintf(stderr, "nave: rule %s: %s\n", r->h.name, err);
			goto fail;
		}
		cl->nrules++;
	}
	/*
	 * A relayed connection is a data link and a service connection here: what the
	 * open-file limit cannot hold is not asked for (the server hears the lower
	 * max_links in the HELLO and refuses past it at once, rather than letting
	 * connections wait for links that cannot come).
	 */
	fd_limit = fd_limit_raise();
	if (fd_limit < 2 * (unsigned long)c->max_links + FD_RESERVE) {
		unsigned cap =
		    fd_limit > FD_RESERVE + 2 ? (unsigned)((fd_limit - FD_RESERVE) / 2) : 1;

		log_warn("the open-file limit (%lu) holds %u relayed connections: max_links %u "
			 "lowered to %u (raise ulimit -n / LimitNOFILE for more)",
			 fd_limit, cap, c->max_links, cap);
		c->max_links = cap;
	}
	memset(&ec, 0, sizeof(ec));
	ec.role = ENGINE_CLIENT;
	ec.workers = 1;
	ec.buffer_size = 65536;
	ec.buffers = 128;
	/* a relayed connection is a link and a service connection */
	ec.max_conns = 2 * c->max_links + FD_RESERVE + CLIENT_UDP_FLOW_SLOTS;
	ec.udp_queue = CLIENT_UDP_QUEUE; /* a UDP map's flow while its stream opens */
	cl->xprt = xprt_ctx_new(cl->ctx,
				c->ktls == CFG_ON    ? XPRT_KTLS_ON
				: c->ktls == CFG_OFF ? XPRT_KTLS_OFF
						     : XPRT_KTLS_AUTO,
				err, sizeof(err));
	if (!cl->xprt) {
		fprintf(stderr, "nave: [client] %s\n", err);
		goto fail;
	}
	str_copy(cl->ktls_mode, sizeof(cl->ktls_mode), xprt_ctx_mode(cl->xprt));
	cl->ctl_ktls = !xprt_ctx_ktls(cl->xprt) ? 0 : c->ktls == CFG_ON ? 2 : 1;
	/* the control link's own context captures its secrets too (xprt_ctx_new did ctx's) */
	if (cl->ctl_ktls && ktls_ctx_prepare(cl->ctl_ctx) < 0) {
		fprintf(stderr, "nave: [client] kTLS: cannot prepare the control link's context\n");
		goto fail;
	}
	if (c->ktls == CFG_AUTO && !xprt_ctx_ktls(cl->xprt))
		log_warn("kTLS: %s: data links use userspace TLS (ktls = auto)",
			 xprt_ctx_why(cl->xprt));
	ec.xprt = cl->xprt;
	ec.pool_idle = c->pool_idle;
	ec.max_links = c->max_links;
	if (split_server(c->server, host, sizeof(host), &port) < 0 ||
	    engine_resolve(host, port, &ec.server_addr, &ec.server_addr_len) < 0) {
		fprintf(stderr, "nave: cannot resolve server %s\n", c->server);
		goto fail;
	}
	str_copy(ec.server_host, sizeof(ec.server_host), host);
	ec.ops.arg = cl;
	ec.ops.rule_find = op_rule_find;
	/* support streams (LINK_BIND_SUPPORT) reach the gateway; without it they are reset */
	cl->gw = supgw_start(err, sizeof(err));
	if (!cl->gw)
		log_warn("%s: support streams will be refused", err);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (engine_start(&cl->eng, &ec, err, sizeof(err)) < 0) {
		fprintf(stderr, "nave: %s\n", err);
		close(sfd);
		goto fail;
	}
	/* port maps and SOCKS proxies: one that cannot listen stays (its state says why) */
	for (unsigned i = 0; i < c->n_maps + c->n_socks; i++) {
		struct lsn *l = &cl->lsn[cl->nlsn++];

		memset(l, 0, sizeof(*l));
		l->socks = i >= c->n_maps;
		if (l->socks)
			l->sk = c->socks[i - c->n_maps];
		else
			l->map = c->maps[i];
		if (lsn_start(cl, l, err, sizeof(err)) < 0)
			log_warn("%s on local port %u: %s", l->socks ? "SOCKS proxy" : "port map",
				 lsn_port(l), err);
	}
	log_info("nave %s starting: server %s, %u rule(s), control socket %s", NAVE_VERSION,
		 c->server, cl->nrules, c->socket);
	svc_ready("connecting to %s", c->server);
	wd = svc_watchdog_ms();
	wd_next = now_ms() + wd / 2;
	while (!cl->quit) {
		struct pollfd p[3 + LOCAL_MAX];
		unsigned n = 0, li[LOCAL_MAX];
		uint64_t now = now_ms();
		json_t *m;

		/* pinged on schedule, and only while the worker ticks (looked at every turn) */
		if (wd && engine_alive(cl->eng, now, 3 * ENGINE_TICK_MS) && now >= wd_next)
			svc_watchdog();
		if (wd && now >= wd_next)
			wd_next = now + wd / 2;
		if (cl->cc.fd < 0 && now >= cl->next_try) {
			try_connect(cl);
			continue;
		}
		if (cl->online && now >= cl->next_hb) {
			json_t *hb = json_pack("{s:s}", "type", LINK_MSG_HEARTBEAT);

			if (cconn_send(&cl->cc, hb) < 0)
				session_end(cl, "cannot send heartbeat");
			json_decref(hb);
			cl->next_hb = now + cl->hb_ms;
		}
		if (cl->online && now - cl->last_rx > 3ull * cl->hb_ms) {
			session_end(cl, "heartbeat lost (3 missed)");
			continue;
		}
		sup_expire(cl);
		for (unsigned i = 0; i < LOCAL_MAX; i++) {
			struct local *lo = &cl->locals[i];

			if (lo_used(lo) && now > lo->deadline && local_transient(lo))
				local_reply(cl, lo,
					    json_pack("{s:b, s:s}", "ok", 0, "error",
						      "timed out waiting for the server"));
		}
		p[n].fd = sfd;
		p[n++].events = POLLIN;
		p[n].fd = cl->lfd;
		p[n++].events = POLLIN;
		if (cl->cc.fd >= 0) {
			p[n].fd = cl->cc.fd;
			p[n++].events = POLLIN;
		}
		unsigned base = n;
		for (unsigned i = 0; i < LOCAL_MAX; i++) {
			if (cl->locals[i].fd > 0 && !cl->locals[i].waiting) {
				li[n - base] = i;
				p[n].fd = cl->locals[i].fd;
				p[n++].events = POLLIN;
			}
		}
		if (poll(p, n, 200) < 0 && errno != EINTR)
			break;
		log_limit_flush();
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si = {.ssi_signo = 0};

			if (read(sfd, &si, sizeof(si)) > 0 && si.ssi_signo == SIGHUP) {
				/* a reload of a unit: nothing to re-read, the config is the
				 * client's */
				log_info("SIGHUP: nothing to reload (the client keeps its config "
					 "itself; restart it to read an edited one)");
				continue;
			}
			log_info("signal %u: stopping", si.ssi_signo);
			break;
		}
		if (p[1].revents & POLLIN)
			local_accept(cl);
		if (cl->cc.fd >= 0 && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
			while ((rc = cconn_recv(&cl->cc, &m, err, sizeof(err))) == 1) {
				on_server_message(cl, m);
				json_decref(m);
				if (cl->quit)
					break;
			}
			if (rc < 0 && !cl->quit)
				session_end(cl, err);
		}
		for (unsigned i = base; i < n; i++)
			if (p[i].revents & (POLLIN | POLLHUP))
				local_read(cl, &cl->locals[li[i - base]]);
	}
	svc_stopping();
	if (cl->cc.fd >= 0)
		cconn_close(&cl->cc);
	engine_stop(cl->eng, 5000);
	engine_free(cl->eng);
	supgw_stop(cl->gw);
	close(cl->lfd);
	close(sfd);
	unlink(c->socket);
	for (unsigned i = 0; i < LOCAL_MAX; i++)
		if (cl->locals[i].fd > 0) {
			close(cl->locals[i].fd);
			msg_reader_free(&cl->locals[i].mr);
		}
	xprt_ctx_free(cl->xprt);
	SSL_CTX_free(cl->ctx);
	SSL_CTX_free(cl->ctl_ctx);
	webroot_stop(cl->www);
	pthread_mutex_destroy(&cl->lock);
	explicit_bzero(cl->sup, sizeof(cl->sup)); /* the support sessions' keys */
	rc = cl->exit_code;
	free(cl);
	return rc;
fail:
	if (cl->lfd >= 0) {
		close(cl->lfd);
		unlink(c->socket);
	}
	webroot_stop(cl->www);
	supgw_stop(cl->gw);
	xprt_ctx_free(cl->xprt);
	SSL_CTX_free(cl->ctx);
	SSL_CTX_free(cl->ctl_ctx);
	pthread_mutex_destroy(&cl->lock);
	free(cl);
	return 1;
}

json_t *client_local_request(const char *path, json_t *req, int timeout_ms)
{
	struct sockaddr_un sa;
	struct msg_reader mr;
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	uint8_t buf[4096], *m;
	char err[128];
	json_t *out = NULL;
	size_t n;
	int fd, e;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (!str_copy(sa.sun_path, sizeof(sa.sun_path), path)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	m = msg_encode(req, &n);
	if (!m || write_all(fd, m, n) < 0) {
		free(m);
		close(fd);
		errno = EPIPE;
		return NULL;
	}
	free(m);
	msg_reader_init(&mr);
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r <= 0 || msg_reader_feed(&mr, buf, (size_t)r) < 0) {
			errno = r < 0 ? errno : EPIPE;
			break;
		}
		if (msg_reader_next(&mr, &out, err, sizeof(err)) != 0)
			break;
	}
	msg_reader_free(&mr);
	close(fd);
	return out;
}

// SPDX-License-Identifier: Apache-2.0
/*
 * The TLS transport: BoringSSL driven through a custom BIO whose read side
 * serves bytes straight out of the datapath's receive buffer and whose write
 * side appends to the link's send buffer. No socket calls happen here for
 * the bytes themselves, so a worker's io_uring owns every byte of I/O.
 *
 * The BIO also follows the TLS record framing of what it hands BoringSSL, so
 * the transport knows when it sits on a record boundary: the moment the
 * receive side may move into the kernel (kTLS) without stranding a byte.
 */
#include "xprt_tls.h"

#include "tls/ktls.h"
#include "tls/tls.h"

#include <errno.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/is_boringssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct xprt_ctx {
	pthread_mutex_t lock; /* ssl_ctx may be swapped (xprt_ctx_swap) while links are made */
	SSL_CTX *ssl_ctx;     /* a reference of its own */
	enum xprt_ktls ktls;
	bool kernel; /* links go into the kernel after their handshake */
	char mode[64];
	char why[192]; /* why not, when the kernel cannot */
};

struct xprt_tls {
	SSL *ssl;
	struct xprt *x; /* the transport this state belongs to (the BIO's way back) */
	struct xprt_ctx *ctx;
	uint8_t hdr[5]; /* the record header being read, hdr_have bytes of it */
	uint8_t hdr_have;
	uint32_t body_left; /* bytes of the current record's body not handed over yet */
	bool hs_done;
	bool ktls_failed; /* an install failed: this link stays in userspace */
};

static BIO_METHOD *bio_method;

/* Follows the record framing of n bytes handed to BoringSSL. */
static void rec_track(struct xprt_tls *t, const uint8_t *p, size_t n)
{
	while (n) {
		size_t k;

		if (t->body_left) {
			k = n < t->body_left ? n : t->body_left;
			t->body_left -= (uint32_t)k;
		} else {
			k = 5u - t->hdr_have;
			if (k > n)
				k = n;
			memcpy(t->hdr + t->hdr_have, p, k);
			t->hdr_have = (uint8_t)(t->hdr_have + k);
			if (t->hdr_have == 5) {
				t->body_left = (uint32_t)t->hdr[3] << 8 | t->hdr[4];
				t->hdr_have = 0;
			}
		}
		p += k;
		n -= k;
	}
}

static int bio_read(BIO *b, char *buf, int len)
{
	struct xprt_tls *t = BIO_get_data(b);
	struct xprt *x = t->x;
	size_t n;

	BIO_clear_retry_flags(b);
	if (x->in_len == 0) {
		BIO_set_retry_read(b);
		return -1;
	}
	n = (size_t)len < x->in_len ? (size_t)len : x->in_len;
	memcpy(buf, x->in, n);
	rec_track(t, x->in, n);
	x->in += n;
	x->in_len -= n;
	return (int)n;
}

static int bio_write(BIO *b, const char *buf, int len)
{
	struct xprt_out *o = ((struct xprt_tls *)BIO_get_data(b))->x->out;
	size_t room;

	BIO_clear_retry_flags(b);
	if (!o || o->len == o->cap) {
		BIO_set_retry_write(b);
		return -1;
	}
	room = o->cap - o->len;
	if ((size_t)len > room)
		len = (int)room;
	memcpy(o->p + o->len, buf, (size_t)len);
	o->len += (size_t)len;
	return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

struct xprt_ctx *xprt_ctx_new(SSL_CTX *ssl_ctx, enum xprt_ktls ktls, char *err, size_t errlen)
{
	struct xprt_ctx *c;

	if (!bio_method) {
		/* start-up, before any worker runs */
		bio_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | 0x80, "nave-xprt");
		if (!bio_method) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		BIO_meth_set_read(bio_method, bio_read);
		BIO_meth_set_write(bio_method, bio_write);
		BIO_meth_set_ctrl(bio_method, bio_ctrl);
		BIO_meth_set_create(bio_method, bio_create);
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	SSL_CTX_up_ref(ssl_ctx);
	c->ssl_ctx = ssl_ctx;
	c->ktls = ktls;
	if (ktls == XPRT_KTLS_OFF) {
		snprintf(c->mode, sizeof(c->mode), "userspace (ktls = off)");
		return c;
	}
	if (!ktls_supported(c->why, sizeof(c->why))) {
		if (ktls == XPRT_KTLS_ON) {
			snprintf(err, errlen, "ktls = on: %s", c->why);
			xprt_ctx_free(c);
			return NULL;
		}
		snprintf(c->mode, sizeof(c->mode), "userspace (no TLS ULP in the kernel)");
		return c;
	}
	if (ktls_ctx_prepare(ssl_ctx) < 0) {
		snprintf(err, errlen, "cannot prepare the TLS context for kTLS");
		xprt_ctx_free(c);
		return NULL;
	}
	c->kernel = true;
	snprintf(c->mode, sizeof(c->mode), "kernel");
	return c;
}

void xprt_ctx_free(struct xprt_ctx *c)
{
	if (!c)
		return;
	SSL_CTX_free(c->ssl_ctx);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int xprt_ctx_swap(struct xprt_ctx *c, SSL_CTX *n, char *err, size_t errlen)
{
	SSL_CTX *old;

	if (c->kernel && ktls_ctx_prepare(n) < 0) {
		snprintf(err, errlen, "cannot prepare the TLS context for kTLS");
		return -1;
	}
	SSL_CTX_up_ref(n);
	pthread_mutex_lock(&c->lock);
	old = c->ssl_ctx;
	c->ssl_ctx = n;
	pthread_mutex_unlock(&c->lock);
	SSL_CTX_free(old); /* links made with it keep their own references */
	return 0;
}

const char *xprt_ctx_mode(const struct xprt_ctx *c)
{
	return c->mode;
}

bool xprt_ctx_ktls(const struct xprt_ctx *c)
{
	return c->kernel;
}

const char *xprt_ctx_why(const struct xprt_ctx *c)
{
	return c->why;
}

static int tls_init(struct xprt *x, struct xprt_ctx *ctx, int fd, bool server)
{
	struct xprt_tls *t = calloc(1, sizeof(*t));
	BIO *b = NULL;

	memset(x, 0, sizeof(*x));
	x->fd = fd;
	x->mode = XPRT_TLS;
	if (t) {
		pthread_mutex_lock(&ctx->lock);
		t->ssl = SSL_new(ctx->ssl_ctx);
		pthread_mutex_unlock(&ctx->lock);
	}
	if (t && t->ssl)
		b = BIO_new(bio_method);
	if (!b) {
		if (t)
			SSL_free(t->ssl);
		free(t);
		return -ENOMEM;
	}
	t->x = x;
	t->ctx = ctx;
	BIO_set_data(b, t);
	SSL_set_bio(t->ssl, b, b);
	if (server)
		SSL_set_accept_state(t->ssl);
	else
		SSL_set_connect_state(t->ssl);
	x->tls = t;
	return 0;
}

int xprt_init_server(struct xprt *x, struct xprt_ctx *ctx, int fd)
{
	return tls_init(x, ctx, fd, true);
}

int xprt_init_client(struct xprt *x, struct xprt_ctx *ctx, int fd, const char *host)
{
	int r = tls_init(x, ctx, fd, false);

	if (r == 0 && tls_client_set_host(x->tls->ssl, host) < 0) {
		xprt_tls_free(x);
		return -EINVAL;
	}
	return r;
}

void xprt_tls_free(struct xprt *x)
{
	SSL_free(x->tls->ssl);
	free(x->tls);
	x->tls = NULL;
}

void xprt_tls_moved(struct xprt *x)
{
	x->tls->x = x;
}

/*
 * An accepting end keeps the certificates the client presented (asked for only
 * when [tls] client_ca is set; tls_take_client_certs): the SSL may be gone
 * (kernel TLS) by the time the control thread checks them.
 */
static void keep_peer_certs(struct xprt *x, SSL *ssl)
{
	size_t n;
	uint8_t *p;

	if (x->peer_certs || !SSL_is_server(ssl))
		return;
	p = tls_take_client_certs(ssl, &n);
	x->peer_certs = p;
	x->peer_certs_len = p ? (uint32_t)n : 0;
}

int xprt_tls_handshake(struct xprt *x, struct xprt_out *out, char *err, size_t errlen)
{
	struct xprt_tls *t = x->tls;
	int r, e;

	x->out = out;
	r = SSL_do_handshake(t->ssl);
	x->out = NULL;
	if (r == 1) {
		t->hs_done = true;
		keep_peer_certs(x, t->ssl);
		return XPRT_OK;
	}
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return XPRT_WANT;
	snprintf(err, errlen, "TLS handshake failed: %s",
		 ERR_reason_error_string(ERR_peek_last_error()) ?: "connection closed");
	ERR_clear_error();
	return -EPROTO;
}

int xprt_tls_read(struct xprt *x, void *buf, size_t len)
{
	struct xprt_tls *t = x->tls;
	int r, e;

	if (x->ktls_dirs & XPRT_DIR_RX) /* received bytes are plaintext already */
		return xprt_copy_in(x, buf, len);
	if (len > 0x7fffffff)
		len = 0x7fffffff;
	r = SSL_read(t->ssl, buf, (int)len);
	if (r > 0)
		return r;
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	ERR_clear_error();
	return e == SSL_ERROR_ZERO_RETURN ? -EPIPE : -EPROTO;
}

int xprt_tls_write(struct xprt *x, struct xprt_out *out, const void *buf, size_t len)
{
	struct xprt_tls *t = x->tls;
	int r, e;

	if (x->ktls_dirs & XPRT_DIR_TX) /* the kernel encrypts what we send */
		return xprt_copy_out(out, buf, len);
	if (len == 0)
		return 0;
	if (out->cap - out->len < xprt_overhead(x, len))
		return -ENOBUFS;
	x->out = out;
	r = SSL_write(t->ssl, buf, (int)len);
	x->out = NULL;
	if (r == (int)len)
		return 0;
	e = SSL_get_error(t->ssl, r);
	ERR_clear_error();
	return e == SSL_ERROR_WANT_WRITE ? -ENOBUFS : -EPROTO;
}

size_t xprt_tls_pending(const struct xprt *x)
{
	return x->ktls_dirs & XPRT_DIR_RX ? 0 : (size_t)SSL_pending(x->tls->ssl);
}

int xprt_tls_shutdown(struct xprt *x)
{
	uint8_t b[64];
	struct xprt_out o = {b, 0, sizeof(b)};
	ssize_t n;

	if (x->ktls_dirs & XPRT_DIR_TX)
		return ktls_send_close_notify(x->fd);
	if (!x->tls->hs_done)
		return 0;
	x->out = &o;
	SSL_shutdown(x->tls->ssl); /* 0: sent, the peer's is not awaited */
	x->out = NULL;
	ERR_clear_error();
	if (!o.len)
		return -EPROTO;
	n = send(x->fd, b, o.len, MSG_DONTWAIT | MSG_NOSIGNAL);
	return n == (ssize_t)o.len ? 0 : n < 0 ? -errno : -EAGAIN;
}

int xprt_ktls_shutdown(struct xprt *x)
{
	return ktls_send_close_notify(x->fd);
}

/*
 * The moment a link moves into the kernel: TX once nothing encrypted by
 * BoringSSL waits to be sent (record sequence numbers come from BoringSSL),
 * RX once BoringSSL has taken whole records only and has no plaintext left.
 * When both are in, the SSL goes: the kernel holds the link's whole state.
 */
int xprt_tls_settle(struct xprt *x, bool out_empty, bool in_quiet, char *err, size_t errlen)
{
	struct xprt_tls *t = x->tls;
	int dirs = 0, r;

	if (!t->ctx->kernel || !t->hs_done || t->ktls_failed)
		return 0;
	if (!(x->ktls_dirs & XPRT_DIR_TX) && out_empty)
		dirs |= KTLS_TX;
	if (!(x->ktls_dirs & XPRT_DIR_RX) && in_quiet && !x->in_len && !t->hdr_have &&
	    !t->body_left && !SSL_pending(t->ssl))
		dirs |= KTLS_RX;
	/* one ktls_install per direction, so a failure says which one failed */
	for (int d = KTLS_TX; d <= KTLS_RX; d <<= 1) {
		if (!(dirs & d))
			continue;
		r = ktls_install(t->ssl, x->fd, d, err, errlen);
		if (r < 0) {
			t->ktls_failed = true;
			/*
			 * With one direction in the kernel already, BoringSSL could
			 * not answer the peer on the other: such a link closes.
			 */
			if (t->ctx->ktls == XPRT_KTLS_ON || x->ktls_dirs)
				return -EPROTO;
			return XPRT_EV_FALLBACK;
		}
		x->ktls_dirs |= d == KTLS_TX ? XPRT_DIR_TX : XPRT_DIR_RX;
	}
	if (x->ktls_dirs != (XPRT_DIR_TX | XPRT_DIR_RX))
		return 0;
	xprt_tls_free(x);
	x->mode = XPRT_KTLS;
	return XPRT_EV_KTLS;
}

enum xprt_rx_end xprt_tls_recv_error(struct xprt *x, int res, char *why, size_t len)
{
	int r;

	if (res == 0) {
		snprintf(why, len, "closed by peer");
		return XPRT_RX_CLEAN;
	}
	if (!(x->ktls_dirs & XPRT_DIR_RX) || (res != -EIO && res != -EBADMSG && res != -EMSGSIZE)) {
		snprintf(why, len, "%s", strerror(-res));
		return XPRT_RX_ERRNO;
	}
	if (res == -EBADMSG) {
		snprintf(why, len, "kTLS: a record failed to decrypt");
		return XPRT_RX_PROTO;
	}
	if (res == -EMSGSIZE) {
		snprintf(why, len, "kTLS: a record longer than TLS allows");
		return XPRT_RX_PROTO;
	}
	/* EIO: a record that is not application data stopped the receive */
	r = ktls_recv_control(x->fd, why, len);
	return r == KTLS_REC_CLOSE_NOTIFY ? XPRT_RX_CLEAN : XPRT_RX_PROTO;
}

int xprt_tls_use_ctx(struct xprt *x, SSL_CTX *ctx)
{
	if (!x->tls || !SSL_set_SSL_CTX(x->tls->ssl, ctx))
		return -EINVAL;
	return 0;
}

// SPDX-License-Identifier: Apache-2.0
/*
 * Userspace TLS transport: BoringSSL driven through a custom BIO whose read
 * side serves bytes straight out of the datapath's receive buffer and whose
 * write side appends to the link's send buffer. No socket calls happen here,
 * so a worker's io_uring owns every byte of I/O.
 */
#include "xprt.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/is_boringssl.h>
#include <stdio.h>
#include <string.h>

static BIO_METHOD *xprt_bio_method;

static int xprt_bio_read(BIO *b, char *buf, int len)
{
	struct xprt *x = BIO_get_data(b);
	size_t n;

	BIO_clear_retry_flags(b);
	if (x->in_len == 0) {
		BIO_set_retry_read(b);
		return -1;
	}
	n = (size_t)len < x->in_len ? (size_t)len : x->in_len;
	memcpy(buf, x->in, n);
	x->in += n;
	x->in_len -= n;
	return (int)n;
}

static int xprt_bio_write(BIO *b, const char *buf, int len)
{
	struct xprt *x = BIO_get_data(b);
	size_t room = x->out_cap - x->out_len;

	BIO_clear_retry_flags(b);
	if (room == 0 || !x->out) {
		BIO_set_retry_write(b);
		return -1;
	}
	if ((size_t)len > room)
		len = (int)room;
	memcpy(x->out + x->out_len, buf, (size_t)len);
	x->out_len += (size_t)len;
	return len;
}

static long xprt_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int xprt_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

int xprt_global_init(void)
{
	if (xprt_bio_method)
		return 0;
	xprt_bio_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | 0x80, "nave-xprt");
	if (!xprt_bio_method)
		return -ENOMEM;
	BIO_meth_set_read(xprt_bio_method, xprt_bio_read);
	BIO_meth_set_write(xprt_bio_method, xprt_bio_write);
	BIO_meth_set_ctrl(xprt_bio_method, xprt_bio_ctrl);
	BIO_meth_set_create(xprt_bio_method, xprt_bio_create);
	return 0;
}

void xprt_attach(struct xprt *x, SSL *ssl, bool server)
{
	BIO *b = BIO_new(xprt_bio_method);

	memset(x, 0, sizeof(*x));
	x->ssl = ssl;
	BIO_set_data(b, x);
	SSL_set_bio(ssl, b, b);
	if (server)
		SSL_set_accept_state(ssl);
	else
		SSL_set_connect_state(ssl);
}

void xprt_free(struct xprt *x)
{
	if (!x)
		return;
	SSL_free(x->ssl);
	x->ssl = NULL;
}

void xprt_move(struct xprt *dst, struct xprt *src)
{
	*dst = *src;
	if (dst->ssl)
		BIO_set_data(SSL_get_rbio(dst->ssl), dst);
	memset(src, 0, sizeof(*src));
}

int xprt_handshake(struct xprt *x, char *err, size_t errlen)
{
	int r = SSL_do_handshake(x->ssl);
	int e;

	if (r == 1) {
		x->hs_done = true;
		return XPRT_OK;
	}
	e = SSL_get_error(x->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return XPRT_WANT;
	snprintf(err, errlen, "TLS handshake failed: %s",
		 ERR_reason_error_string(ERR_peek_last_error()) ?: "connection closed");
	ERR_clear_error();
	return -EPROTO;
}

int xprt_read(struct xprt *x, void *buf, size_t len)
{
	int r, e;

	if (len > 0x7fffffff)
		len = 0x7fffffff;
	r = SSL_read(x->ssl, buf, (int)len);
	if (r > 0)
		return r;
	e = SSL_get_error(x->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	ERR_clear_error();
	return e == SSL_ERROR_ZERO_RETURN ? -EPIPE : -EPROTO;
}

int xprt_write(struct xprt *x, const void *buf, size_t len)
{
	int r, e;

	if (len == 0)
		return 0;
	if (x->out_cap - x->out_len < xprt_overhead(len))
		return -ENOBUFS;
	r = SSL_write(x->ssl, buf, (int)len);
	if (r == (int)len)
		return 0;
	e = SSL_get_error(x->ssl, r);
	ERR_clear_error();
	return e == SSL_ERROR_WANT_WRITE ? -ENOBUFS : -EPROTO;
}

size_t xprt_overhead(size_t len)
{
	/* TLS 1.3 record: 5 header + 1 type + 16 tag per 16 KiB of payload */
	return len + 22 * (len / 16384 + 1);
}

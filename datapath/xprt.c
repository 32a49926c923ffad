// SPDX-License-Identifier: Apache-2.0
/*
 * The transport calls the relay code makes. A transport with userspace TLS
 * state (x->tls) goes to xprt_tls.c; one without passes bytes as they are:
 * a plain socket, or a socket whose TLS records the kernel handles (kTLS).
 */
#include "xprt.h"
#include "xprt_tls.h"

#include <errno.h>
#include <string.h>

void xprt_free(struct xprt *x)
{
	if (!x)
		return;
	if (x->tls)
		xprt_tls_free(x);
	free(x->peer_certs);
	x->peer_certs = NULL;
	x->peer_certs_len = 0;
}

void xprt_move(struct xprt *dst, struct xprt *src)
{
	*dst = *src;
	if (dst->tls)
		xprt_tls_moved(dst);
	memset(src, 0, sizeof(*src));
	src->fd = -1;
}

int xprt_handshake(struct xprt *x, struct xprt_out *out, char *err, size_t errlen)
{
	return x->tls ? xprt_tls_handshake(x, out, err, errlen) : XPRT_OK;
}

int xprt_copy_in(struct xprt *x, void *buf, size_t len)
{
	size_t n;

	if (!x->in_len)
		return 0;
	n = len < x->in_len ? len : x->in_len;
	if (n > 0x7fffffff)
		n = 0x7fffffff;
	memcpy(buf, x->in, n);
	x->in += n;
	x->in_len -= n;
	return (int)n;
}

int xprt_copy_out(struct xprt_out *out, const void *buf, size_t len)
{
	if (out->cap - out->len < len)
		return -ENOBUFS;
	memcpy(out->p + out->len, buf, len);
	out->len += len;
	return 0;
}

int xprt_read(struct xprt *x, void *buf, size_t len)
{
	return x->tls ? xprt_tls_read(x, buf, len) : xprt_copy_in(x, buf, len);
}

int xprt_write(struct xprt *x, struct xprt_out *out, const void *buf, size_t len)
{
	return x->tls ? xprt_tls_write(x, out, buf, len) : xprt_copy_out(out, buf, len);
}

size_t xprt_overhead(const struct xprt *x, size_t len)
{
	/* TLS 1.3 record: 5 header + 1 type + 16 tag per 16 KiB of payload */
	return x->tls && !(x->ktls_dirs & XPRT_DIR_TX) ? len + 22 * (len / 16384 + 1) : len;
}

size_t xprt_pending(const struct xprt *x)
{
	return x->in_len + (x->tls ? xprt_tls_pending(x) : 0);
}

int xprt_shutdown(struct xprt *x)
{
	if (x->tls)
		return xprt_tls_shutdown(x);
	return x->mode == XPRT_KTLS ? xprt_ktls_shutdown(x) : 0;
}

int xprt_settle(struct xprt *x, bool out_empty, bool in_quiet, char *err, size_t errlen)
{
	return x->tls ? xprt_tls_settle(x, out_empty, in_quiet, err, errlen) : 0;
}

enum xprt_rx_end xprt_recv_error(struct xprt *x, int res, char *why, size_t len)
{
	return xprt_tls_recv_error(x, res, why, len);
}

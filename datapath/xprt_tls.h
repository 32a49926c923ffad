/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The TLS transport's contexts (made by relayd and the client from their
 * BoringSSL context) and the calls xprt.c hands to the TLS transport. Only
 * xprt.c, xprt_tls.c and the programs' main files include this header: the
 * relay code sees struct xprt_ctx as an opaque pointer.
 */
#ifndef NAVE_XPRT_TLS_H
#define NAVE_XPRT_TLS_H

#include "xprt.h"

#include <openssl/ssl.h>

/*
 * A context for TLS transports over ssl_ctx (the caller keeps ssl_ctx alive
 * and frees it after the context). ktls: XPRT_KTLS_OFF keeps every link in
 * userspace TLS; AUTO moves links into the kernel when the kernel has the
 * TLS ULP; ON refuses (NULL, err) when it has not. NULL + err on failure.
 */
struct xprt_ctx *xprt_ctx_new(SSL_CTX *ssl_ctx, enum xprt_ktls ktls, char *err, size_t errlen);
void xprt_ctx_free(struct xprt_ctx *c);
/* "kernel", "userspace (ktls = off)" or "userspace (<why the kernel cannot>)" */
const char *xprt_ctx_mode(const struct xprt_ctx *c);
/* true when links made from c go into the kernel after their handshake */
bool xprt_ctx_ktls(const struct xprt_ctx *c);

/* why links stay in userspace when the kernel cannot ("" otherwise) */
const char *xprt_ctx_why(const struct xprt_ctx *c);

/* for xprt_tls.c: bytes as they are, in (from x->in) and out */
int xprt_copy_in(struct xprt *x, void *buf, size_t len);
int xprt_copy_out(struct xprt_out *out, const void *buf, size_t len);

/* for xprt.c */
void xprt_tls_free(struct xprt *x);
void xprt_tls_moved(struct xprt *x);
int xprt_tls_handshake(struct xprt *x, struct xprt_out *out, char *err, size_t errlen);
int xprt_tls_read(struct xprt *x, void *buf, size_t len);
int xprt_tls_write(struct xprt *x, struct xprt_out *out, const void *buf, size_t len);
size_t xprt_tls_pending(const struct xprt *x);
int xprt_tls_shutdown(struct xprt *x);
int xprt_ktls_shutdown(struct xprt *x);
int xprt_tls_settle(struct xprt *x, bool out_empty, bool in_quiet, char *err, size_t errlen);
enum xprt_rx_end xprt_tls_recv_error(struct xprt *x, int res, char *why, size_t len);

/*
 * Before the handshake of an accepting end: the certificate (and the callbacks)
 * of ctx instead of the context's (the HTTPS edge picks a domain's by SNI).
 * BoringSSL takes a reference: ctx may be freed by the caller after. 0 or -EINVAL.
 */
int xprt_tls_use_ctx(struct xprt *x, SSL_CTX *ctx);
/*
 * Links made from now on use n (a reference is taken; the caller keeps its
 * own), links made before keep the context they had: the tunnel port's
 * certificate replaced without a restart. 0, or -1 with err.
 */
int xprt_ctx_swap(struct xprt_ctx *c, SSL_CTX *n, char *err, size_t errlen);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Link transport: moves a link's bytes between the datapath's buffers and
 * its security layer without ever blocking. The datapath hands in received
 * bytes (xprt_feed), reads plaintext (xprt_read), writes plaintext
 * (xprt_write) and ships what the transport produced (out/out_len). Two
 * implementations sit behind it: userspace TLS with BoringSSL over a custom
 * BIO (no socket calls, no staging buffer of its own), and (later) kTLS where
 * the kernel does the crypto and the transport copies plain bytes. The relay
 * code does not care which.
 */
#ifndef NAVE_XPRT_H
#define NAVE_XPRT_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xprt {
	SSL *ssl;
	const uint8_t *in; /* received bytes not yet taken by the TLS layer */
	size_t in_len;
	uint8_t *out; /* bytes produced for the wire: out[out_len..out_cap) is free */
	size_t out_len;
	size_t out_cap;
	bool hs_done;
};

enum { XPRT_OK = 0, XPRT_WANT = 1, XPRT_CLOSED = 2 };

/* Global init: the BIO method. Call once at start. */
int xprt_global_init(void);
/* Takes ownership of ssl and attaches the transport's BIO; server or client end. */
void xprt_attach(struct xprt *x, SSL *ssl, bool server);
/* Frees the SSL (NULL-safe). */
void xprt_free(struct xprt *x);
/* Moves an xprt to new storage (the BIO keeps a pointer to it). */
void xprt_move(struct xprt *dst, struct xprt *src);
/* Makes n received bytes available to the transport (not copied: valid until consumed). */
static inline void xprt_feed(struct xprt *x, const uint8_t *p, size_t n)
{
	x->in = p;
	x->in_len = n;
}
/*
 * Drives the handshake: XPRT_OK when done, XPRT_WANT when it needs more
 * input (ship out first if out_len > 0), or -EPROTO with a reason in err.
 */
int xprt_handshake(struct xprt *x, char *err, size_t errlen);
/*
 * Reads up to len plaintext bytes: >0 bytes read, 0 when more input is
 * needed, -EPIPE on a clean close by the peer, -EPROTO on an error.
 */
int xprt_read(struct xprt *x, void *buf, size_t len);
/* Writes all len bytes into out; 0, or -ENOBUFS if out lacks room, -EPROTO. */
int xprt_write(struct xprt *x, const void *buf, size_t len);
/* Worst-case wire bytes for len plaintext bytes written in one xprt_write. */
size_t xprt_overhead(size_t len);

#endif

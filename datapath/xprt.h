/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A connection's transport, as the relay code sees it: feed it received
 * bytes, read plaintext, write plaintext, flush what it produced, shut it
 * down. Three kinds sit behind the same calls, and the relay code does not
 * know which one it drives:
 *
 *   plain   bytes pass as they are (a socket without a transport layer);
 *   TLS     userspace TLS (BoringSSL over a custom BIO: no socket calls, no
 *           staging buffer; xprt_tls.c);
 *   kTLS    the kernel encrypts and decrypts (TLS_TX/TLS_RX on the socket),
 *           so bytes pass as they are, as with plain.
 *
 * A TLS transport moves itself into the kernel when xprt_settle says the
 * datapath holds none of its bytes (nothing unsent, nothing unread): TX once
 * the send buffer is empty, RX on a record boundary. Every I/O still goes
 * through the worker's io_uring; the transport itself only ever makes the
 * setsockopt calls of that switch (and a close_notify's sendmsg).
 */
#ifndef NAVE_XPRT_H
#define NAVE_XPRT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum xprt_mode { XPRT_PLAIN = 0, XPRT_TLS, XPRT_KTLS };

enum { XPRT_OK = 0, XPRT_WANT = 1 };

/* [datapath] ktls / [client] ktls */
enum xprt_ktls { XPRT_KTLS_OFF, XPRT_KTLS_AUTO, XPRT_KTLS_ON };

/* directions in the kernel (struct xprt.ktls_dirs) */
enum { XPRT_DIR_TX = 1, XPRT_DIR_RX = 2 };

/* xprt_settle results (a bit set) */
enum { XPRT_EV_KTLS = 1, XPRT_EV_FALLBACK = 2 };

/* What new TLS transports are made from (xprt_tls.h builds one). */
struct xprt_ctx;
/* Userspace TLS state, private to xprt_tls.c. */
struct xprt_tls;

/* Where a call may put bytes for the wire: p[len..cap) is free. */
struct xprt_out {
	uint8_t *p;
	size_t len, cap;
};

struct xprt {
	struct xprt_tls *tls; /* NULL: bytes pass as they are (plain, kTLS) */
	const uint8_t *in;    /* received bytes not yet taken */
	size_t in_len;
	struct xprt_out *out; /* during a call that may produce wire bytes */
	/*
	 * The certificates a client presented to an accepting end, DER one after the
	 * other (leaf first), kept from the handshake until taken: NULL when none.
	 */
	uint8_t *peer_certs;
	uint32_t peer_certs_len;
	int fd;
	uint8_t mode;	   /* enum xprt_mode */
	uint8_t ktls_dirs; /* XPRT_DIR_* already in the kernel */
};

/* A zeroed struct xprt (with fd set) is a plain transport: bytes pass as they are. */
/*
 * A TLS transport on fd, the accepting or the connecting end (host: the name
 * the server's certificate must carry). 0 or -ENOMEM.
 */
int xprt_init_server(struct xprt *x, struct xprt_ctx *ctx, int fd);
int xprt_init_client(struct xprt *x, struct xprt_ctx *ctx, int fd, const char *host);
/* Hands over the peer's certificates (see struct xprt; free() them): NULL when none. */
static inline uint8_t *xprt_take_peer_certs(struct xprt *x, size_t *len)
{
	uint8_t *p = x->peer_certs;

	*len = x->peer_certs_len;
	x->peer_certs = NULL;
	x->peer_certs_len = 0;
	return p;
}
/* Frees what the transport holds (not the fd). */
void xprt_free(struct xprt *x);
/* Moves a transport to new storage. */
void xprt_move(struct xprt *dst, struct xprt *src);

/* Makes n received bytes available (not copied: valid until taken or refed). */
static inline void xprt_feed(struct xprt *x, const uint8_t *p, size_t n)
{
	x->in = p;
	x->in_len = n;
}
static inline enum xprt_mode xprt_mode(const struct xprt *x)
{
	return (enum xprt_mode)x->mode;
}
/*
 * Drives the handshake: XPRT_OK when done, XPRT_WANT when it needs more
 * input (ship out first if it grew), or -EPROTO with a reason in err.
 */
int xprt_handshake(struct xprt *x, struct xprt_out *out, char *err, size_t errlen);
/*
 * Reads up to len plaintext bytes: >0 bytes read, 0 when more input is
 * needed, -EPIPE on a clean close by the peer, -EPROTO on an error.
 */
int xprt_read(struct xprt *x, void *buf, size_t len);
/* Writes all len bytes into out; 0, or -ENOBUFS if out lacks room, -EPROTO. */
int xprt_write(struct xprt *x, struct xprt_out *out, const void *buf, size_t len);
/* Worst-case wire bytes for len plaintext bytes written in one xprt_write. */
size_t xprt_overhead(const struct xprt *x, size_t len);
/* Bytes the transport holds that the datapath has not read yet. */
size_t xprt_pending(const struct xprt *x);
/*
 * Sends a close_notify on x's socket now (a link closing cleanly; the caller
 * has nothing unsent queued before it): a few bytes, without blocking.
 * 0 (also for plain, which has none) or -errno.
 */
int xprt_shutdown(struct xprt *x);
/*
 * The datapath holds no unsent output of x when out_empty, and no unread
 * input when in_quiet (nothing fed and no receive in the kernel's hands
 * that may already hold bytes): a TLS transport may move that direction
 * into the kernel now. Returns a set of XPRT_EV_* (XPRT_EV_KTLS: both
 * directions are in the kernel now), or -EPROTO with a reason in err (the
 * link must close: ktls = on).
 */
int xprt_settle(struct xprt *x, bool out_empty, bool in_quiet, char *err, size_t errlen);
/* what ended a receive (xprt_recv_error) */
enum xprt_rx_end {
	XPRT_RX_CLEAN, /* the peer closed: EOF, or a close_notify */
	XPRT_RX_ERRNO, /* the socket failed (a reset, ...) */
	XPRT_RX_PROTO, /* the peer broke TLS (a record the link cannot take): log it */
};
/*
 * A receive on x's socket ended with res (0 or -errno): says why in a line
 * (on kTLS, reads the non-data record that stopped it) and what kind of end
 * it was.
 */
enum xprt_rx_end xprt_recv_error(struct xprt *x, int res, char *why, size_t len);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One support stream's two ends (common/support.h's handshake and records over a
 * socket): shared by the device's support gateway (supgw.c: the stream arrives as a
 * plain TCP connection from the engine) and `nave support connect` (supconnect.c: the
 * stream is a TLS link to relayd carrying link_proto.h's chunk frames).
 *
 * A struct sio is the sealed side's transport: fd alone, or TLS on fd with the stream's
 * bytes in chunk frames. Every fd here is non-blocking; the functions wait with poll
 * and a deadline where they say so.
 */
#ifndef NAVE_SUPSTREAM_H
#define NAVE_SUPSTREAM_H

#include "frame.h"
#include "support.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SIO_RAW_MAX 16384

struct sio {
	int fd;
	SSL *ssl;    /* NULL: fd carries the stream's bytes as they are */
	bool framed; /* chunk frames around the bytes (a supporter's link to relayd) */
	struct frame_rx frx;
	uint8_t raw[SIO_RAW_MAX]; /* bytes read from fd (TLS plaintext), not yet parsed */
	size_t roff, rlen;
	char err[SUP_ERR_MAX];
};

void sio_init(struct sio *s, int fd, SSL *ssl, bool framed);
/*
 * Up to n of the stream's bytes into buf: their count, 0 at the stream's end (FIN
 * or an EOF frame), -EAGAIN when none are there now, -ECONNRESET for a reset (RST or a
 * RESET frame), -EIO with s->err (a malformed frame, a TLS error). An OPENED frame is
 * -EIO too unless s->frx.allow_opened: then -EPROTO and the header is in s->frx.opened.
 */
ssize_t sio_read(struct sio *s, void *buf, size_t n);
/* Bytes buffered here or in TLS: read them without waiting for the fd. */
bool sio_pending(const struct sio *s);
/* Writes what fd takes of buf (the wire bytes, frames already around them): count or -errno. */
ssize_t sio_write(struct sio *s, const void *buf, size_t n);
/* All of n bytes of the stream (framed: as one chunk) before deadline (now_ms): 0 or -1. */
int sio_send(struct sio *s, const void *buf, size_t n, uint64_t deadline);
/* Ends the stream at once: a RESET frame (best effort) or an RST. fd stays open. */
void sio_reset(struct sio *s);

/* The bytes a connection carried (data, not records), and why it ended. */
struct sup_pump_res {
	uint64_t up, down; /* plain -> sealed, sealed -> plain */
	char why[SUP_ERR_MAX];
};

/*
 * Moves bytes until both directions ended or something failed: plain fd -> sealed
 * records -> s, and back. A read EOF on plain becomes the end record (then the
 * transport's own end: SHUT_WR or an EOF frame); the peer's end record becomes
 * SHUT_WR on plain. 0 when both ended cleanly; -1 (res->why) on a bad record, a
 * cut stream, a reset, or *stop set. Both fds must be non-blocking. tx and rx are
 * the record layer of this end (sup_hs_finish).
 */
int sup_pump(int plain, struct sio *s, struct sup_tx *tx, struct sup_rx *rx,
	     const volatile int *stop, struct sup_pump_res *res);

/*
 * The supporter's end on an open stream s (framed or not): the handshake for
 * session/service with psk (deadline: now_ms), then sup_pump with plain. 0 when the
 * connection ended cleanly; -1 with the reason in res->why; *wrong_psk is set when
 * the reason is a wrong pre-shared key.
 */
int supc_stream(struct sio *s, int plain, const uint8_t psk[SUP_PSK_LEN], const char *session,
		unsigned service, uint64_t deadline, const volatile int *stop,
		struct sup_pump_res *res, bool *wrong_psk);

/* Sets O_NONBLOCK; 0 or -1. */
int fd_nonblock(int fd);

#endif

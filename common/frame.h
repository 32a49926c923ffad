/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Data-link frame codec (link_proto.h). The receiver is a small state machine
 * that the datapath drives with exactly the bytes it asks for, so plaintext
 * lands straight in the destination buffer: in header state it asks for
 * header bytes (frame_rx_hdr), in body state it tells how many data bytes of
 * the current chunk remain (body_left) and the caller reads them wherever it
 * likes, then reports them with frame_rx_body_done.
 */
#ifndef NAVE_FRAME_H
#define NAVE_FRAME_H

#include "link_proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum frame_ev {
	FRAME_NEED = 0,	 /* header incomplete: read more */
	FRAME_DATA = 1,	 /* a chunk header: body_left bytes follow */
	FRAME_EOF = 2,	 /* zero-length chunk: sender's direction ended */
	FRAME_RESET = 3, /* stream aborted */
	FRAME_BIND = 4,	 /* a BIND header is in *bind */
};

struct frame_rx {
	uint8_t hdr[4 + sizeof(struct link_bind)];
	uint32_t have;	    /* header bytes collected */
	uint32_t need;	    /* header bytes wanted in total */
	uint32_t body_left; /* data bytes left in the current chunk */
	bool allow_bind;    /* only the client side accepts BIND */
};

void frame_rx_init(struct frame_rx *rx, bool allow_bind);
static inline bool frame_rx_in_body(const struct frame_rx *rx)
{
	return rx->body_left > 0;
}
/* Where the next header bytes go and how many are wanted. */
static inline uint8_t *frame_rx_hdr(struct frame_rx *rx, size_t *len)
{
	*len = rx->need - rx->have;
	return rx->hdr + rx->have;
}
/*
 * n header bytes were stored at frame_rx_hdr(). Returns a frame_ev, or
 * -EBADMSG with err set when the header is malformed (close the link).
 */
int frame_rx_hdr_done(struct frame_rx *rx, size_t n, struct link_bind *bind, char *err,
		      size_t errlen);
static inline void frame_rx_body_done(struct frame_rx *rx, size_t n)
{
	rx->body_left -= (uint32_t)n;
}

/* Big-endian u32 store/load. */
static inline void frame_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline uint32_t frame_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Fills a DATA_HELLO; validates one (0 or -EBADMSG with err). */
void frame_hello_build(struct link_data_hello *h, const char *tunnel_id,
		       const uint8_t secret[LINK_SECRET_LEN]);
int frame_hello_check(const struct link_data_hello *h, char *err, size_t errlen);

#endif

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
	FRAME_NEED = 0,	  /* header incomplete: read more */
	FRAME_DATA = 1,	  /* a chunk header: body_left bytes follow */
	FRAME_EOF = 2,	  /* zero-length chunk: sender's direction ended */
	FRAME_RESET = 3,  /* stream aborted */
	FRAME_BIND = 4,	  /* a BIND header is in *bind */
	FRAME_OPEN = 5,	  /* a well-formed OPEN header is in rx->open (frame_open_check it) */
	FRAME_OPENED = 6, /* an OPENED header is in rx->opened */
};

struct frame_rx {
	uint8_t hdr[4 + sizeof(struct link_open)]; /* the largest header */
	uint32_t have;				   /* header bytes collected */
	uint32_t need;				   /* header bytes wanted in total */
	uint32_t body_left;			   /* data bytes left in the current chunk */
	bool allow_bind;			   /* only the client side accepts BIND */
	bool allow_open;   /* relayd's side of a LINK_HELLO_OUTBOUND link: OPEN */
	bool allow_opened; /* the client's side of an outbound link: OPENED */
	union {		   /* copied out with FRAME_OPEN / FRAME_OPENED */
		struct link_open open;
		struct link_opened opened;
	};
};

/* allow_open and allow_opened start false: set them after init where they apply. */
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
/* A DATA_HELLO's flags (LINK_HELLO_*); frame_hello_build leaves them 0. */
static inline uint16_t frame_hello_flags(const struct link_data_hello *h)
{
	const uint8_t *f = (const uint8_t *)&h->flags;

	return (uint16_t)(f[0] << 8 | f[1]);
}
void frame_hello_set_flags(struct link_data_hello *h, uint16_t flags);

/*
 * OPEN / OPENED (link_proto.h, "Mesh streams"). The builders write the frame
 * word and the struct to out and return the byte count (FRAME_OPEN_LEN,
 * FRAME_OPENED_LEN). name: 1..LINK_OPEN_NAME_MAX bytes (longer is cut).
 */
#define FRAME_OPEN_LEN	 (4 + sizeof(struct link_open))
#define FRAME_OPENED_LEN (4 + sizeof(struct link_opened))
size_t frame_open_build(uint8_t *out, uint32_t stream_id, uint8_t transport, uint16_t flags,
			const char *name, uint16_t port);
size_t frame_opened_build(uint8_t *out, uint32_t stream_id, uint8_t status, uint16_t rule);

/* An OPEN's destination, as frame_open_check reads it. */
struct frame_open_dst {
	char name[LINK_OPEN_NAME_MAX + 1]; /* lowercased, NUL-terminated */
	uint8_t addr[16];		   /* is_ip: the address (IPv4: v4-mapped) */
	uint32_t stream_id;
	uint16_t port, flags;
	bool is_ip;  /* an IPv4 or IPv6 literal */
	bool is_dns; /* a DNS name by domain.h's rules (not a literal) */
	bool is_id;  /* 1..LINK_GROUP_MAX of [A-Za-z0-9._-]: may name a tunnel or group */
	bool udp;    /* transport LINK_OPEN_UDP: a flow of datagrams, one per chunk */
};
/*
 * Checks an OPEN: -EBADMSG with err for a malformed header (what frame_rx
 * refuses: close the link), LINK_OPEN_BAD with err for a name outside the
 * alphabets (answer OPENED with it), 0 with *dst
 * filled otherwise.
 */
int frame_open_check(const struct link_open *o, struct frame_open_dst *dst, char *err,
		     size_t errlen);
static inline uint16_t frame_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}
static inline void frame_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
/* One-line text of an OPENED status ("destination tunnel offline"); never NULL. */
const char *link_open_status_name(unsigned status);

#endif

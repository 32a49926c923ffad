// SPDX-License-Identifier: Apache-2.0
/* Data-link frame codec: header state machine, DATA_HELLO build/check. */
#include "frame.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void frame_rx_init(struct frame_rx *rx, bool allow_bind)
{
	memset(rx, 0, sizeof(*rx));
	rx->need = 4;
	rx->allow_bind = allow_bind;
}

int frame_rx_hdr_done(struct frame_rx *rx, size_t n, struct link_bind *bind, char *err,
		      size_t errlen)
{
	uint32_t w;

	if (n > rx->need - rx->have) {
		snprintf(err, errlen, "frame header overrun");
		return -EBADMSG;
	}
	rx->have += (uint32_t)n;
	if (rx->have < rx->need)
		return FRAME_NEED;
	w = frame_get32(rx->hdr);
	if (w == LINK_FRAME_BIND) {
		if (!rx->allow_bind) {
			snprintf(err, errlen, "unexpected BIND frame");
			return -EBADMSG;
		}
		if (rx->need == 4) {
			rx->need = 4 + sizeof(struct link_bind);
			return FRAME_NEED;
		}
		memcpy(bind, rx->hdr + 4, sizeof(*bind));
		rx->have = 0;
		rx->need = 4;
		return FRAME_BIND;
	}
	rx->have = 0;
	rx->need = 4;
	if (w == LINK_FRAME_EOF)
		return FRAME_EOF;
	if (w == LINK_FRAME_RESET)
		return FRAME_RESET;
	if (w > LINK_CHUNK_MAX) {
		snprintf(err, errlen, "frame length %u exceeds %u", w, LINK_CHUNK_MAX);
		return -EBADMSG;
	}
	rx->body_left = w;
	return FRAME_DATA;
}

void frame_hello_build(struct link_data_hello *h, const char *tunnel_id,
		       const uint8_t secret[LINK_SECRET_LEN])
{
	memset(h, 0, sizeof(*h));
	frame_put32((uint8_t *)&h->magic, LINK_MAGIC);
	((uint8_t *)&h->version)[0] = 0;
	((uint8_t *)&h->version)[1] = LINK_VERSION;
	strncpy(h->tunnel_id, tunnel_id, LINK_ID_MAX - 1);
	memcpy(h->secret, secret, LINK_SECRET_LEN);
}

int frame_hello_check(const struct link_data_hello *h, char *err, size_t errlen)
{
	const uint8_t *v = (const uint8_t *)&h->version;

	if (frame_get32((const uint8_t *)&h->magic) != LINK_MAGIC) {
		snprintf(err, errlen, "bad DATA_HELLO magic");
		return -EBADMSG;
	}
	if (v[0] != 0 || v[1] != LINK_VERSION) {
		snprintf(err, errlen, "unsupported link version %u", v[0] << 8 | v[1]);
		return -EBADMSG;
	}
	if (memchr(h->tunnel_id, 0, LINK_ID_MAX) == NULL || h->tunnel_id[0] == 0) {
		snprintf(err, errlen, "bad tunnel id in DATA_HELLO");
		return -EBADMSG;
	}
	for (const char *c = h->tunnel_id; *c; c++) {
		if (*c <= 0x20 || *c >= 0x7f) { /* ids are printable: they reach the logs */
			snprintf(err, errlen, "bad tunnel id in DATA_HELLO");
			return -EBADMSG;
		}
	}
	if (h->flags != 0) {
		snprintf(err, errlen, "unknown DATA_HELLO flags");
		return -EBADMSG;
	}
	return 0;
}

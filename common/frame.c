// SPDX-License-Identifier: Apache-2.0
/* Data-link frame codec: header state machine, DATA_HELLO build/check, OPEN/OPENED. */
#include "frame.h"

#include "domain.h"

#include <arpa/inet.h>
#include <ctype.h>
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
	if (w == LINK_FRAME_OPEN || w == LINK_FRAME_OPENED) {
		bool open = w == LINK_FRAME_OPEN;
		size_t len = open ? sizeof(struct link_open) : sizeof(struct link_opened);

		if (!(open ? rx->allow_open : rx->allow_opened)) {
			snprintf(err, errlen, "unexpected %s frame", open ? "OPEN" : "OPENED");
			return -EBADMSG;
		}
		if (rx->need == 4) {
			rx->need = 4 + (uint32_t)len;
			return FRAME_NEED;
		}
		rx->have = 0;
		rx->need = 4;
		if (!open) {
			memcpy(&rx->opened, rx->hdr + 4, len);
			return FRAME_OPENED;
		}
		memcpy(&rx->open, rx->hdr + 4, len);
		if (frame_open_check(&rx->open, NULL, err, errlen) == -EBADMSG)
			return -EBADMSG;
		return FRAME_OPEN;
	}
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
	if (frame_hello_flags(h) & ~LINK_HELLO_FLAGS) {
		snprintf(err, errlen, "unknown DATA_HELLO flags");
		return -EBADMSG;
	}
	return 0;
}

void frame_hello_set_flags(struct link_data_hello *h, uint16_t flags)
{
	frame_put16((uint8_t *)&h->flags, flags);
}

size_t frame_open_build(uint8_t *out, uint32_t stream_id, uint8_t transport, uint16_t flags,
			const char *name, uint16_t port)
{
	struct link_open o;
	size_t n = strlen(name);

	if (n > LINK_OPEN_NAME_MAX)
		n = LINK_OPEN_NAME_MAX;
	memset(&o, 0, sizeof(o));
	frame_put32((uint8_t *)&o.stream_id, stream_id);
	o.transport = transport;
	o.name_len = (uint8_t)n;
	frame_put16((uint8_t *)&o.port, port);
	frame_put16((uint8_t *)&o.flags, flags);
	memcpy(o.name, name, n);
	frame_put32(out, LINK_FRAME_OPEN);
	memcpy(out + 4, &o, sizeof(o));
	return FRAME_OPEN_LEN;
}

size_t frame_opened_build(uint8_t *out, uint32_t stream_id, uint8_t status, uint16_t rule)
{
	struct link_opened o;

	memset(&o, 0, sizeof(o));
	frame_put32((uint8_t *)&o.stream_id, stream_id);
	o.status = status;
	frame_put16((uint8_t *)&o.rule, rule);
	frame_put32(out, LINK_FRAME_OPENED);
	memcpy(out + 4, &o, sizeof(o));
	return FRAME_OPENED_LEN;
}

/* 1..LINK_GROUP_MAX of [A-Za-z0-9._-]: what a tunnel id or group id may be. */
static bool open_name_is_id(const char *s, size_t n)
{
	if (n == 0 || n > LINK_GROUP_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

int frame_open_check(const struct link_open *o, struct frame_open_dst *dst, char *err,
		     size_t errlen)
{
	const uint8_t *p = (const uint8_t *)o;
	uint16_t port = frame_get16(p + offsetof(struct link_open, port));
	uint16_t flags = frame_get16(p + offsetof(struct link_open, flags));
	char name[LINK_OPEN_NAME_MAX + 1], dom[DOMAIN_MAX + 1];
	struct in_addr a4;
	size_t n = o->name_len;

	/* the header's shape: a sender that gets it wrong is broken, not misinformed */
	if (o->transport != LINK_OPEN_TCP && o->transport != LINK_OPEN_UDP) {
		snprintf(err, errlen, "OPEN: unknown transport %u", o->transport);
		return -EBADMSG;
	}
	if (flags & ~LINK_OPEN_FLAGS) {
		snprintf(err, errlen, "OPEN: unknown flags 0x%x", flags);
		return -EBADMSG;
	}
	if (o->reserved != 0) {
		snprintf(err, errlen, "OPEN: reserved field not 0");
		return -EBADMSG;
	}
	if (n == 0 || port == 0) {
		snprintf(err, errlen, "OPEN: %s 0", n == 0 ? "name length" : "port");
		return -EBADMSG;
	}
	for (size_t i = n; i < LINK_OPEN_NAME_MAX; i++) {
		if (o->name[i]) {
			snprintf(err, errlen, "OPEN: name padding not 0");
			return -EBADMSG;
		}
	}
	memcpy(name, o->name, n);
	name[n] = 0;
	if (memchr(name, 0, n)) {
		snprintf(err, errlen, "OPEN: a NUL byte in the name");
		return LINK_OPEN_BAD;
	}
	if (!dst)
		return 0;
	memset(dst, 0, sizeof(*dst));
	dst->stream_id = frame_get32(p);
	dst->port = port;
	dst->flags = flags;
	dst->udp = o->transport == LINK_OPEN_UDP;
	if (inet_pton(AF_INET, name, &a4) == 1) {
		dst->is_ip = true;
		dst->addr[10] = dst->addr[11] = 0xff;
		memcpy(dst->addr + 12, &a4, 4);
	} else if (inet_pton(AF_INET6, name, dst->addr) == 1) {
		dst->is_ip = true;
	} else {
		dst->is_dns = n <= DOMAIN_MAX && domain_norm(name, n, dom, false);
		dst->is_id = open_name_is_id(name, n);
	}
	if (!dst->is_ip && !dst->is_dns && !dst->is_id) {
		snprintf(err, errlen, "OPEN: the name is neither an address, a DNS name nor an id");
		return LINK_OPEN_BAD;
	}
	for (size_t i = 0; i < n; i++)
		dst->name[i] = (char)tolower((unsigned char)name[i]);
	dst->name[n] = 0;
	return 0;
}

const char *link_open_status_name(unsigned status)
{
	static const char *const names[] = {
	    [LINK_OPEN_OK] = "ok",
	    [LINK_OPEN_DENIED] = "denied by the mesh policy",
	    [LINK_OPEN_NOT_FOUND] = "no such destination",
	    [LINK_OPEN_OFFLINE] = "destination tunnel offline",
	    [LINK_OPEN_NOT_ALLOWED] = "destination not allowed",
	    [LINK_OPEN_DNS] = "the name did not resolve",
	    [LINK_OPEN_REFUSED] = "connection refused",
	    [LINK_OPEN_UNREACHABLE] = "destination unreachable",
	    [LINK_OPEN_BUSY] = "busy (a limit was reached)",
	    [LINK_OPEN_BAD] = "bad destination",
	};

	if (status < sizeof(names) / sizeof(names[0]))
		return names[status];
	return "refused";
}

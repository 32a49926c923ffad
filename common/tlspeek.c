// SPDX-License-Identifier: Apache-2.0
/* The ClientHello peek (tlspeek.h). */
#include "tlspeek.h"

#include "domain.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* a read cursor over one buffer: every take is checked */
struct cur {
	const uint8_t *p;
	size_t n;
	bool bad;
};

static bool take(struct cur *c, size_t n, const uint8_t **out)
{
	if (c->bad || c->n < n) {
		c->bad = true;
		return false;
	}
	*out = c->p;
	c->p += n;
	c->n -= n;
	return true;
}

static unsigned u8(struct cur *c)
{
	const uint8_t *b;

	return take(c, 1, &b) ? b[0] : 0;
}

static unsigned u16(struct cur *c)
{
	const uint8_t *b;

	return take(c, 2, &b) ? (unsigned)b[0] << 8 | b[1] : 0;
}

static unsigned u24(struct cur *c)
{
	const uint8_t *b;

	return take(c, 3, &b) ? (unsigned)b[0] << 16 | (unsigned)b[1] << 8 | b[2] : 0;
}

/* a sub-cursor of n bytes taken from c */
static struct cur sub(struct cur *c, size_t n)
{
	struct cur s = {.bad = true};
	const uint8_t *b;

	if (take(c, n, &b)) {
		s.p = b;
		s.n = n;
		s.bad = false;
	}
	return s;
}

static enum tlspeek_result bad(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return TLSPEEK_BAD;
}

static enum tlspeek_result extensions(struct cur *e, struct tlspeek *out, char *why, size_t whylen)
{
	uint32_t seen[4] = {0, 0, 0, 0}; /* the types below 128 seen, for duplicates */

	while (e->n && !e->bad) {
		unsigned type = u16(e), len = u16(e);
		struct cur x = sub(e, len);

		if (x.bad)
			return bad(why, whylen, "an extension runs past the hello");
		if (type < 128) {
			if (seen[type / 32] & 1u << (type % 32))
				return bad(why, whylen, "extension %u appears twice", type);
			seen[type / 32] |= 1u << (type % 32);
		}
		if (type == 0) { /* server_name */
			struct cur l = sub(&x, u16(&x));
			bool named = false;

			if (l.bad || x.n)
				return bad(why, whylen, "malformed server_name extension");
			while (l.n) {
				unsigned nt = u8(&l);
				struct cur name = sub(&l, u16(&l));

				if (name.bad)
					return bad(why, whylen, "malformed server_name extension");
				if (nt != 0)
					continue; /* only host_name is defined */
				if (named)
					return bad(why, whylen, "two host names in server_name");
				if (!domain_norm((const char *)name.p, name.n, out->sni, false))
					return bad(why, whylen,
						   "the server name is not a DNS name");
				named = true;
			}
		} else if (type == 16) { /* application_layer_protocol_negotiation */
			struct cur l = sub(&x, u16(&x));

			if (l.bad || x.n || !l.n)
				return bad(why, whylen, "malformed ALPN extension");
			if (l.n > TLSPEEK_ALPN_MAX)
				return bad(why, whylen, "the ALPN list is longer than %d bytes",
					   TLSPEEK_ALPN_MAX);
			memcpy(out->alpn, l.p, l.n);
			out->alpn_len = l.n;
			while (l.n) {
				struct cur proto = sub(&l, u8(&l));

				if (proto.bad || !proto.n)
					return bad(why, whylen, "malformed ALPN protocol list");
			}
		} else if (type == 43) { /* supported_versions */
			struct cur l = sub(&x, u8(&x));

			if (l.bad || x.n || !l.n || l.n % 2)
				return bad(why, whylen, "malformed supported_versions extension");
			while (l.n)
				if (u16(&l) == 0x0304)
					out->tls13 = true;
		}
	}
	return e->bad ? bad(why, whylen, "the extensions run past the hello") : TLSPEEK_OK;
}

enum tlspeek_result tlspeek_client_hello(const uint8_t *buf, size_t len, struct tlspeek *out,
					 char *why, size_t whylen)
{
	uint8_t hs[TLSPEEK_MAX + 4];
	size_t have = 0, need = 0;
	struct cur in = {.p = buf, .n = len};

	memset(out, 0, sizeof(*out));
	if (why && whylen)
		why[0] = '\0';
	/* gather the handshake message from as many records as it takes */
	for (;;) {
		const uint8_t *h, *body;
		unsigned rlen;

		if (in.n < 5) {
			/* a first byte that no handshake record starts with: not TLS at all */
			if (have == 0 && in.n >= 1 && buf[0] != 22)
				return TLSPEEK_NOT_TLS;
			if (have == 0 && in.n >= 2 && buf[1] != 3)
				return TLSPEEK_NOT_TLS;
			return TLSPEEK_MORE;
		}
		take(&in, 5, &h);
		if (h[0] != 22 || h[1] != 3)
			return have == 0 ? TLSPEEK_NOT_TLS
					 : bad(why, whylen, "the hello is cut by another record");
		rlen = (unsigned)h[3] << 8 | h[4];
		if (rlen == 0 || rlen > 16384)
			return bad(why, whylen, "a handshake record of %u bytes", rlen);
		if (in.n < rlen)
			return TLSPEEK_MORE;
		take(&in, rlen, &body);
		if (have + rlen > sizeof(hs))
			return bad(why, whylen, "the hello is longer than %d bytes", TLSPEEK_MAX);
		memcpy(hs + have, body, rlen);
		have += rlen;
		if (!need && have >= 4) {
			if (hs[0] != 1)
				return bad(why, whylen,
					   "the first handshake message is not a "
					   "ClientHello");
			need = 4 + ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3]);
			if (need > TLSPEEK_MAX)
				return bad(why, whylen, "the hello is longer than %d bytes",
					   TLSPEEK_MAX);
		}
		if (need && have >= need)
			break;
	}
	{
		struct cur m = {.p = hs, .n = need}, ch, e;
		const uint8_t *skip;
		unsigned n;

		u8(&m);
		ch = sub(&m, u24(&m));
		out->version = (uint16_t)u16(&ch);
		take(&ch, 32, &skip); /* random */
		n = u8(&ch);
		if (n > 32 || !take(&ch, n, &skip))
			return bad(why, whylen, "malformed session id");
		n = u16(&ch);
		if (n < 2 || n % 2 || !take(&ch, n, &skip))
			return bad(why, whylen, "malformed cipher suites");
		n = u8(&ch);
		if (n < 1 || !take(&ch, n, &skip))
			return bad(why, whylen, "malformed compression methods");
		if (ch.bad)
			return bad(why, whylen, "the hello is cut short");
		if (!ch.n)
			return TLSPEEK_OK; /* no extensions: no SNI, no ALPN */
		e = sub(&ch, u16(&ch));
		if (e.bad || ch.n)
			return bad(why, whylen, "the extensions do not fill the hello");
		return extensions(&e, out, why, whylen);
	}
}

bool tlspeek_offers(const struct tlspeek *p, const char *proto)
{
	size_t want = strlen(proto), i = 0;

	while (i < p->alpn_len) {
		size_t n = p->alpn[i];

		if (i + 1 + n > p->alpn_len)
			return false;
		if (n == want && !memcmp(p->alpn + i + 1, proto, n))
			return true;
		i += 1 + n;
	}
	return false;
}

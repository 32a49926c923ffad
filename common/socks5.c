// SPDX-License-Identifier: Apache-2.0
/* SOCKS5 messages, server side (socks5.h). */
#include "socks5.h"

#include "domain.h"

#include <arpa/inet.h>
#include <string.h>

static enum socks5_result fail(struct socks5_err *err, int code, const char *why)
{
	err->code = code;
	err->why = why;
	return SOCKS5_ERROR;
}

/* bytes [from, to) of buf that are there, each checked against [lo, hi] */
static bool chars_in(const uint8_t *buf, size_t len, size_t from, size_t to, uint8_t lo, uint8_t hi)
{
	if (to > len)
		to = len;
	for (size_t i = from; i < to; i++)
		if (buf[i] < lo || buf[i] > hi)
			return false;
	return true;
}

enum socks5_result socks5_parse_greeting(const uint8_t *buf, size_t len, size_t *used,
					 struct socks5_greeting *out, struct socks5_err *err)
{
	size_t n;

	if (len < 1)
		return SOCKS5_NEED;
	/* not SOCKS5 (a SOCKS4 client, an HTTP request): nothing it would understand */
	if (buf[0] != SOCKS5_VERSION)
		return fail(err, -1, "not a SOCKS5 greeting (version byte)");
	if (len < 2)
		return SOCKS5_NEED;
	n = buf[1];
	if (n == 0)
		return fail(err, SOCKS5_METHOD_REFUSED, "a SOCKS5 greeting offering no method");
	if (len < 2 + n)
		return SOCKS5_NEED;
	memset(out, 0, sizeof(*out));
	out->nmethods = (uint8_t)n;
	for (size_t i = 0; i < n; i++) {
		if (buf[2 + i] == SOCKS5_METHOD_NONE)
			out->none = true;
		else if (buf[2 + i] == SOCKS5_METHOD_USERPASS)
			out->userpass = true;
	}
	*used = 2 + n;
	return SOCKS5_DONE;
}

uint8_t socks5_choose_method(const struct socks5_greeting *g, bool auth_required)
{
	if (auth_required)
		return g->userpass ? SOCKS5_METHOD_USERPASS : SOCKS5_METHOD_REFUSED;
	return g->none ? SOCKS5_METHOD_NONE : SOCKS5_METHOD_REFUSED;
}

enum socks5_result socks5_parse_auth(const uint8_t *buf, size_t len, size_t *used,
				     struct socks5_auth *out, struct socks5_err *err)
{
	size_t ulen, plen, p;

	if (len < 1)
		return SOCKS5_NEED;
	if (buf[0] != SOCKS5_AUTH_VERSION)
		return fail(err, SOCKS5_AUTH_FAILED,
			    "not an RFC 1929 authentication (version byte)");
	if (len < 2)
		return SOCKS5_NEED;
	ulen = buf[1];
	if (ulen == 0)
		return fail(err, SOCKS5_AUTH_FAILED, "an empty SOCKS5 user name");
	/* no spaces in a user name: it is printed in logs and kept in an ini file */
	if (!chars_in(buf, len, 2, 2 + ulen, 0x21, 0x7e))
		return fail(err, SOCKS5_AUTH_FAILED,
			    "a SOCKS5 user name must be printable ASCII without spaces");
	p = 2 + ulen; /* PLEN */
	if (len < p + 1)
		return SOCKS5_NEED;
	plen = buf[p];
	if (plen == 0)
		return fail(err, SOCKS5_AUTH_FAILED, "an empty SOCKS5 password");
	if (!chars_in(buf, len, p + 1, p + 1 + plen, 0x20, 0x7e))
		return fail(err, SOCKS5_AUTH_FAILED, "a SOCKS5 password must be printable ASCII");
	if (len < p + 1 + plen)
		return SOCKS5_NEED;
	memcpy(out->user, buf + 2, ulen);
	out->user[ulen] = '\0';
	out->user_len = ulen;
	memcpy(out->pass, buf + p + 1, plen);
	out->pass[plen] = '\0';
	out->pass_len = plen;
	*used = p + 1 + plen;
	return SOCKS5_DONE;
}

enum socks5_result socks5_parse_request(const uint8_t *buf, size_t len, size_t *used,
					struct socks5_request *out, struct socks5_err *err)
{
	size_t alen, a = 4; /* where the address starts */
	uint8_t atyp;

	if (len < 1)
		return SOCKS5_NEED;
	if (buf[0] != SOCKS5_VERSION)
		return fail(err, -1, "not a SOCKS5 request (version byte)");
	if (len < 4)
		return SOCKS5_NEED;
	atyp = buf[3];
	switch (atyp) {
	case SOCKS5_ATYP_IPV4:
		alen = 4;
		break;
	case SOCKS5_ATYP_IPV6:
		alen = 16;
		break;
	case SOCKS5_ATYP_DOMAIN:
		if (len < 5)
			return SOCKS5_NEED;
		alen = buf[4];
		if (alen == 0)
			return fail(err, SOCKS5_REP_ATYP_UNSUPPORTED,
				    "an empty destination name in a SOCKS5 request");
		a = 5;
		break;
	default:
		/* the length of the address is unknown: nothing after it can be read */
		return fail(err, SOCKS5_REP_ATYP_UNSUPPORTED,
			    "an unknown address type in a SOCKS5 request");
	}
	if (len < a + alen + 2)
		return SOCKS5_NEED;
	/*
	 * The whole request is read before the command is looked at, so the
	 * caller has taken every byte the client sent when it answers and
	 * closes (unread bytes would make the close a reset that can overtake
	 * the answer).
	 */
	*used = a + alen + 2;
	if (buf[2] != 0)
		return fail(err, SOCKS5_REP_FAILURE,
			    "a SOCKS5 request with a non-zero reserved byte");
	if (buf[1] != SOCKS5_CMD_CONNECT && buf[1] != SOCKS5_CMD_UDP_ASSOCIATE)
		return fail(err, SOCKS5_REP_CMD_UNSUPPORTED,
			    buf[1] == SOCKS5_CMD_BIND ? "SOCKS5 BIND is not supported"
						      : "an unknown SOCKS5 command");
	memset(out, 0, sizeof(*out));
	out->cmd = buf[1];
	out->atyp = atyp;
	out->port = (uint16_t)(buf[a + alen] << 8 | buf[a + alen + 1]);
	/* UDP ASSOCIATE: the client's own address and port, zeros when it does not know them */
	if (out->port == 0 && out->cmd == SOCKS5_CMD_CONNECT)
		return fail(err, SOCKS5_REP_FAILURE, "a SOCKS5 request for port 0");
	if (atyp == SOCKS5_ATYP_DOMAIN) {
		if (!socks5_host_check((const char *)buf + a, alen))
			return fail(
			    err, SOCKS5_REP_ATYP_UNSUPPORTED,
			    "a SOCKS5 destination that is no DNS name, address or tunnel id");
		memcpy(out->host, buf + a, alen);
		out->host[alen] = '\0';
		out->host_len = alen;
		return SOCKS5_DONE;
	}
	memcpy(out->addr, buf + a, alen);
	if (!inet_ntop(atyp == SOCKS5_ATYP_IPV4 ? AF_INET : AF_INET6, out->addr, out->host,
		       sizeof(out->host)))
		return fail(err, SOCKS5_REP_FAILURE, "a SOCKS5 address that does not print");
	out->host_len = strlen(out->host);
	return SOCKS5_DONE;
}

enum socks5_result socks5_parse_udp(const uint8_t *buf, size_t len, size_t *used,
				    struct socks5_request *out, struct socks5_err *err)
{
	uint8_t req[SOCKS5_REQUEST_MAX];
	size_t n = len < sizeof(req) ? len : sizeof(req);
	enum socks5_result r;

	if (len < 4)
		return fail(err, -1, "a SOCKS5 UDP datagram shorter than its header");
	if (buf[0] || buf[1])
		return fail(err, -1, "a SOCKS5 UDP datagram with a non-zero reserved field");
	if (buf[2])
		return fail(err, -1, "a fragment of a SOCKS5 UDP datagram (FRAG not 0)");
	/* ATYP, address and port sit where a request has them: read as a CONNECT */
	memcpy(req, buf, n);
	req[0] = SOCKS5_VERSION;
	req[1] = SOCKS5_CMD_CONNECT;
	req[2] = 0;
	r = socks5_parse_request(req, n, used, out, err);
	if (r == SOCKS5_NEED)
		return fail(err, -1, "a SOCKS5 UDP datagram shorter than its header");
	if (r == SOCKS5_ERROR)
		err->code = -1;
	return r;
}

size_t socks5_reply_addr(uint8_t out[SOCKS5_REPLY_MAX], uint8_t rep, const uint8_t addr[16],
			 uint16_t port)
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	bool v4 = !memcmp(addr, v4mapped, sizeof(v4mapped));
	size_t alen = v4 ? 4 : 16;

	out[0] = SOCKS5_VERSION;
	out[1] = rep;
	out[2] = 0;
	out[3] = v4 ? SOCKS5_ATYP_IPV4 : SOCKS5_ATYP_IPV6;
	memcpy(out + 4, v4 ? addr + 12 : addr, alen);
	out[4 + alen] = (uint8_t)(port >> 8);
	out[5 + alen] = (uint8_t)port;
	return 6 + alen;
}

size_t socks5_method_reply(uint8_t out[SOCKS5_METHOD_REPLY_LEN], uint8_t method)
{
	out[0] = SOCKS5_VERSION;
	out[1] = method;
	return SOCKS5_METHOD_REPLY_LEN;
}

size_t socks5_auth_reply(uint8_t out[SOCKS5_AUTH_REPLY_LEN], uint8_t status)
{
	out[0] = SOCKS5_AUTH_VERSION;
	out[1] = status;
	return SOCKS5_AUTH_REPLY_LEN;
}

size_t socks5_reply(uint8_t out[SOCKS5_REPLY_LEN], uint8_t rep)
{
	memset(out, 0, SOCKS5_REPLY_LEN);
	out[0] = SOCKS5_VERSION;
	out[1] = rep;
	out[3] = SOCKS5_ATYP_IPV4; /* BND.ADDR 0.0.0.0, BND.PORT 0 */
	return SOCKS5_REPLY_LEN;
}

uint8_t socks5_rep_from_open(unsigned link_open_status)
{
	/*
	 * The numbers are link_proto.h's LINK_OPEN_* (the OPENED status); they
	 * are part of the wire protocol and never change meaning.
	 */
	switch (link_open_status) {
	case 0: /* LINK_OPEN_OK */
		return SOCKS5_REP_OK;
	case 1: /* LINK_OPEN_DENIED: the mesh policy */
	case 4: /* LINK_OPEN_NOT_ALLOWED: outside [socks] allow */
		return SOCKS5_REP_NOT_ALLOWED;
	case 2: /* LINK_OPEN_NOT_FOUND */
	case 3: /* LINK_OPEN_OFFLINE */
	case 5: /* LINK_OPEN_DNS */
	case 7: /* LINK_OPEN_UNREACHABLE */
		return SOCKS5_REP_HOST_UNREACHABLE;
	case 6: /* LINK_OPEN_REFUSED */
		return SOCKS5_REP_REFUSED;
	case 9: /* LINK_OPEN_BAD: a SOCKS stream is TCP, so it was the name */
		return SOCKS5_REP_ATYP_UNSUPPORTED;
	case 8: /* LINK_OPEN_BUSY */
	default:
		return SOCKS5_REP_FAILURE;
	}
}

static bool is_id_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

bool socks5_host_check(const char *s, size_t n)
{
	char buf[SOCKS5_NAME_MAX + 1], norm[DOMAIN_MAX + 1];
	uint8_t a[16];
	bool id = n <= 63;

	if (n == 0 || n > SOCKS5_NAME_MAX || memchr(s, '\0', n))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, a) == 1 || inet_pton(AF_INET6, buf, a) == 1)
		return true;
	if (domain_norm(s, n, norm, false))
		return true;
	/* a tunnel or group id (valid.h's VALID_ID, at most 63) */
	for (size_t i = 0; id && i < n; i++)
		id = is_id_char((unsigned char)s[i]);
	return id;
}

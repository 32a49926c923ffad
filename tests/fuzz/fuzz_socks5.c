// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for common/socks5.c, the client's SOCKS5 proxy: whatever
 * a local program sends to `nave proxies socks listen`. The first byte picks
 * the message the bytes after it are read as (greeting, RFC 1929
 * authentication, request) or a whole handshake fed in pieces whose sizes
 * the second byte picks. Checks: a verdict on a prefix is never taken back
 * by more bytes (DONE keeps its length and result, ERROR its code); a DONE
 * message re-encodes to the bytes it took; a user name, password and
 * destination are within their lengths and alphabets, and a destination
 * passes socks5_host_check; a UDP ASSOCIATE datagram's header (first byte 5)
 * is DONE only with RSV and FRAG 0 and reads as a CONNECT's address, else
 * dropped without an answer; an error has a known code and a one-line
 * printable reason; the answers and the OPENED mapping stay in range.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_socks5.c common/socks5.c common/domain.c
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "socks5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum kind { GREETING, AUTH, REQUEST };

union msg {
	struct socks5_greeting g;
	struct socks5_auth a;
	struct socks5_request r;
};

static enum socks5_result parse(enum kind k, const uint8_t *b, size_t n, size_t *used, union msg *m,
				struct socks5_err *err)
{
	switch (k) {
	case GREETING:
		return socks5_parse_greeting(b, n, used, &m->g, err);
	case AUTH:
		return socks5_parse_auth(b, n, used, &m->a, err);
	default:
		return socks5_parse_request(b, n, used, &m->r, err);
	}
}

static void check_err(enum kind k, const struct socks5_err *err)
{
	size_t n;

	if (!err->why || !(n = strlen(err->why)) || n > 120)
		abort();
	for (size_t i = 0; i < n; i++)
		if (err->why[i] < 0x20 || err->why[i] > 0x7e)
			abort();
	switch (k) {
	case GREETING:
		if (err->code != -1 && err->code != SOCKS5_METHOD_REFUSED)
			abort();
		break;
	case AUTH:
		if (err->code != SOCKS5_AUTH_FAILED)
			abort();
		break;
	default:
		if (err->code != -1 && err->code != SOCKS5_REP_FAILURE &&
		    err->code != SOCKS5_REP_CMD_UNSUPPORTED &&
		    err->code != SOCKS5_REP_ATYP_UNSUPPORTED)
			abort();
	}
}

static bool in(const char *s, size_t n, char lo, char hi)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < lo || s[i] > hi)
			return false;
	return strlen(s) == n;
}

/* a DONE message: within bounds, and the bytes it took are what it says */
static void check_done(enum kind k, const uint8_t *b, size_t used, const union msg *m)
{
	uint8_t a16[16];

	switch (k) {
	case GREETING:
		if (used != 2u + m->g.nmethods || used > SOCKS5_GREETING_MAX || !m->g.nmethods ||
		    b[0] != 5 || b[1] != m->g.nmethods)
			abort();
		if (m->g.none != (memchr(b + 2, 0, m->g.nmethods) != NULL) ||
		    m->g.userpass != (memchr(b + 2, 2, m->g.nmethods) != NULL))
			abort();
		break;
	case AUTH:
		if (!m->a.user_len || !m->a.pass_len || m->a.user_len > SOCKS5_USER_MAX ||
		    m->a.pass_len > SOCKS5_PASS_MAX || used != 3 + m->a.user_len + m->a.pass_len ||
		    used > SOCKS5_AUTH_MAX)
			abort();
		if (!in(m->a.user, m->a.user_len, 0x21, 0x7e) ||
		    !in(m->a.pass, m->a.pass_len, 0x20, 0x7e))
			abort();
		if (b[0] != 1 || b[1] != m->a.user_len || memcmp(b + 2, m->a.user, m->a.user_len) ||
		    b[2 + m->a.user_len] != m->a.pass_len ||
		    memcmp(b + 3 + m->a.user_len, m->a.pass, m->a.pass_len))
			abort();
		break;
	default:
		if (used > SOCKS5_REQUEST_MAX || b[0] != 5 ||
		    (b[1] != SOCKS5_CMD_CONNECT && b[1] != SOCKS5_CMD_UDP_ASSOCIATE) || b[2] ||
		    b[3] != m->r.atyp || m->r.cmd != b[1] ||
		    (!m->r.port && m->r.cmd == SOCKS5_CMD_CONNECT) ||
		    (b[used - 2] << 8 | b[used - 1]) != m->r.port)
			abort();
		if (!m->r.host_len || m->r.host_len > SOCKS5_NAME_MAX ||
		    strlen(m->r.host) != m->r.host_len ||
		    !in(m->r.host, m->r.host_len, 0x21, 0x7e) ||
		    !socks5_host_check(m->r.host, m->r.host_len))
			abort();
		if (m->r.atyp == SOCKS5_ATYP_DOMAIN) {
			if (used != 7u + m->r.host_len || b[4] != m->r.host_len ||
			    memcmp(b + 5, m->r.host, m->r.host_len))
				abort();
		} else if (m->r.atyp == SOCKS5_ATYP_IPV4) {
			if (used != 10 || memcmp(b + 4, m->r.addr, 4) ||
			    inet_pton(AF_INET, m->r.host, a16) != 1 || memcmp(a16, m->r.addr, 4))
				abort();
		} else if (m->r.atyp == SOCKS5_ATYP_IPV6) {
			if (used != 22 || memcmp(b + 4, m->r.addr, 16) ||
			    inet_pton(AF_INET6, m->r.host, a16) != 1 || memcmp(a16, m->r.addr, 16))
				abort();
		} else {
			abort();
		}
	}
}

/* one message: the whole, then every prefix against it */
static void one(enum kind k, const uint8_t *b, size_t n)
{
	union msg whole, part;
	struct socks5_err ew = {0, NULL}, ep = {0, NULL};
	size_t uw = 0, up = 0;
	enum socks5_result rw;

	memset(&whole, 0, sizeof(whole));
	memset(&part, 0, sizeof(part));
	rw = parse(k, b, n, &uw, &whole, &ew);

	if (rw == SOCKS5_DONE) {
		if (uw > n)
			abort();
		check_done(k, b, uw, &whole);
	} else if (rw == SOCKS5_ERROR) {
		check_err(k, &ew);
	}
	for (size_t i = 0; i < n && i < 300; i++) {
		enum socks5_result rp = parse(k, b, i, &up, &part, &ep);

		if (rp == SOCKS5_NEED)
			continue;
		if (rp != rw)
			abort();
		if (rp == SOCKS5_ERROR && ep.code != ew.code)
			abort();
		if (rp == SOCKS5_DONE && (up != uw || memcmp(&part, &whole, sizeof(whole))))
			abort();
	}
}

/*
 * A client's whole handshake as the proxy reads it: bytes arrive in pieces,
 * each message parsed from where the last ended; the outcome is the same as
 * parsing the bytes in one piece.
 */
static int handshake(const uint8_t *b, size_t n, size_t piece, bool auth, size_t *taken)
{
	union msg m;
	struct socks5_err err;
	size_t have = 0, off = 0, used;
	int stage = 0;

	while (stage < 3) {
		enum kind k = stage == 0 ? GREETING : stage == 1 ? AUTH : REQUEST;
		enum socks5_result r;

		if (stage == 1 && !auth) {
			stage++;
			continue;
		}
		r = parse(k, b + off, have - off, &used, &m, &err);
		if (r == SOCKS5_ERROR) {
			*taken = off;
			return -1 - stage;
		}
		if (r == SOCKS5_DONE) {
			if (used > have - off)
				abort();
			off += used;
			stage++;
			continue;
		}
		if (have == n) {
			*taken = off;
			return stage;
		}
		have += piece < n - have ? piece : n - have;
	}
	*taken = off;
	return 3;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	switch (data[0] & 7) {
	case 0:
		one(GREETING, data + 1, size - 1);
		break;
	case 1:
		one(AUTH, data + 1, size - 1);
		break;
	case 2:
		one(REQUEST, data + 1, size - 1);
		break;
	case 3: {
		/* a name as a request's destination */
		bool ok = socks5_host_check((const char *)data + 1, size - 1);

		if (ok && (size - 1 > SOCKS5_NAME_MAX || memchr(data + 1, 0, size - 1)))
			abort();
		break;
	}
	case 5: {
		/* a datagram to a UDP ASSOCIATE's relay: its header, as the whole datagram */
		struct socks5_request r;
		union msg m;
		struct socks5_err err = {0, NULL};
		size_t used = 0;
		uint8_t req[SOCKS5_REQUEST_MAX];

		if (socks5_parse_udp(data + 1, size - 1, &used, &r, &err) == SOCKS5_ERROR) {
			if (err.code != -1 || !err.why)
				abort();
			break;
		}
		/* DONE: RSV and FRAG 0, and the rest of the header reads as a CONNECT's */
		if (used > size - 1 || used > SOCKS5_REQUEST_MAX || data[1] || data[2] || data[3] ||
		    !r.port)
			abort();
		memcpy(req, data + 1, used);
		req[0] = 5;
		req[1] = SOCKS5_CMD_CONNECT;
		memset(&m, 0, sizeof(m));
		m.r = r;
		check_done(REQUEST, req, used, &m);
		break;
	}
	case 4: {
		unsigned s = (unsigned)data[1];
		uint8_t rep = socks5_rep_from_open(s), out[SOCKS5_REPLY_LEN];

		if (rep > SOCKS5_REP_ATYP_UNSUPPORTED || (rep == 0) != (s == 0))
			abort();
		if (socks5_reply(out, rep) != SOCKS5_REPLY_LEN || out[0] != 5 || out[1] != rep ||
		    out[3] != SOCKS5_ATYP_IPV4)
			abort();
		if (size >= 18) { /* a bound address: 10 bytes (v4-mapped) or 22 */
			uint8_t big[SOCKS5_REPLY_MAX];
			size_t n = socks5_reply_addr(big, rep, data + 2, 1080);

			if ((n != 10 && n != 22) || big[0] != 5 || big[1] != rep ||
			    big[n - 2] != 1080 >> 8 || big[n - 1] != (1080 & 0xff))
				abort();
		}
		break;
	}
	default: {
		/* a whole handshake: in pieces of 1..32, and in one piece */
		bool auth = data[0] & 8;
		size_t piece = (size_t)(data[1] & 31) + 1, t1, t2;
		int a = handshake(data + 2, size - 2, piece, auth, &t1);
		int b = handshake(data + 2, size - 2, size, auth, &t2);

		if (a != b || t1 != t2)
			abort();
	}
	}
	return 0;
}

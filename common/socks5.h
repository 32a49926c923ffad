/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SOCKS5 (RFC 1928) with username/password authentication (RFC 1929), the
 * server side of the client's local proxy (`nave proxies socks listen`):
 * an incremental, allocation-free parser of the three messages a SOCKS client
 * sends (greeting, authentication, request) and builders of the three
 * answers (method choice, authentication status, reply).
 *
 * Each parser looks at the bytes received so far (buf, len), starting at the
 * message's first byte, and returns
 *   SOCKS5_NEED   a prefix of a valid message: call again with more bytes
 *   SOCKS5_DONE   out is filled; *used = the message's length (bytes after
 *                 it belong to the next message: a client may send its
 *                 greeting, authentication and request in one segment)
 *   SOCKS5_ERROR  err->why says why in one printable line; err->code is the
 *                 answer to send before closing (a method 0xff, an auth
 *                 status 0x01, a reply code) or -1: close without a word
 *                 (the peer does not speak SOCKS5)
 * A field is checked as soon as its bytes are there, so a verdict on a prefix
 * is never taken back by more bytes. Nothing is read past len.
 *
 * Strings are checked where they enter: a user name is 1-255 bytes of
 * printable ASCII without spaces (0x21-0x7e), a password 1-255 bytes of
 * printable ASCII (0x20-0x7e); a destination name (ATYP 3) is 1-255 bytes
 * and must pass socks5_host_check (a DNS name, an IP literal or a tunnel
 * id), else the reply is 0x08 (address type not supported).
 */
#ifndef NAVE_SOCKS5_H
#define NAVE_SOCKS5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SOCKS5_VERSION	    0x05
#define SOCKS5_AUTH_VERSION 0x01 /* RFC 1929's subnegotiation version */

/* methods (greeting, method choice) */
#define SOCKS5_METHOD_NONE     0x00
#define SOCKS5_METHOD_USERPASS 0x02
#define SOCKS5_METHOD_REFUSED  0xff /* no acceptable method: the client closes */

/* commands */
#define SOCKS5_CMD_CONNECT	 0x01
#define SOCKS5_CMD_BIND		 0x02
#define SOCKS5_CMD_UDP_ASSOCIATE 0x03

/* address types */
#define SOCKS5_ATYP_IPV4   0x01
#define SOCKS5_ATYP_DOMAIN 0x03
#define SOCKS5_ATYP_IPV6   0x04

/* reply codes (RFC 1928 section 6) */
#define SOCKS5_REP_OK		    0x00
#define SOCKS5_REP_FAILURE	    0x01 /* general SOCKS server failure */
#define SOCKS5_REP_NOT_ALLOWED	    0x02 /* connection not allowed by ruleset */
#define SOCKS5_REP_NET_UNREACHABLE  0x03
#define SOCKS5_REP_HOST_UNREACHABLE 0x04
#define SOCKS5_REP_REFUSED	    0x05
#define SOCKS5_REP_TTL_EXPIRED	    0x06
#define SOCKS5_REP_CMD_UNSUPPORTED  0x07
#define SOCKS5_REP_ATYP_UNSUPPORTED 0x08

/* RFC 1929 status: 0 success, anything else failure (the server closes) */
#define SOCKS5_AUTH_OK	   0x00
#define SOCKS5_AUTH_FAILED 0x01

#define SOCKS5_NAME_MAX 255 /* a destination name, as link_proto.h's LINK_OPEN_NAME_MAX */
#define SOCKS5_USER_MAX 255
#define SOCKS5_PASS_MAX 255
/* the longest message of each kind */
#define SOCKS5_GREETING_MAX (2 + 255)
#define SOCKS5_AUTH_MAX	    (3 + SOCKS5_USER_MAX + SOCKS5_PASS_MAX)
#define SOCKS5_REQUEST_MAX  (7 + SOCKS5_NAME_MAX)
/* the answers' sizes */
#define SOCKS5_METHOD_REPLY_LEN 2
#define SOCKS5_AUTH_REPLY_LEN	2
#define SOCKS5_REPLY_LEN	10 /* with an IPv4 bound address */
#define SOCKS5_REPLY_MAX	22 /* with an IPv6 one (socks5_reply_addr) */

enum socks5_result {
	SOCKS5_NEED,
	SOCKS5_DONE,
	SOCKS5_ERROR,
};

struct socks5_err {
	int code;	 /* the answer's code before closing, or -1: none */
	const char *why; /* a static one-line reason */
};

struct socks5_greeting {
	uint8_t nmethods;
	bool none;     /* offers SOCKS5_METHOD_NONE */
	bool userpass; /* offers SOCKS5_METHOD_USERPASS */
};

struct socks5_auth {
	char user[SOCKS5_USER_MAX + 1]; /* NUL-terminated */
	char pass[SOCKS5_PASS_MAX + 1];
	size_t user_len, pass_len;
};

struct socks5_request {
	uint8_t cmd;  /* SOCKS5_CMD_CONNECT or SOCKS5_CMD_UDP_ASSOCIATE when DONE */
	uint8_t atyp; /* SOCKS5_ATYP_* as received */
	uint16_t port;
	/*
	 * The destination as text, NUL-terminated: the name as received (its
	 * case kept: the edge lowercases DNS names and compares tunnel ids
	 * without case), or the address as inet_ntop writes it (IPv6 without
	 * brackets). What link_proto.h's OPEN carries in name.
	 */
	char host[SOCKS5_NAME_MAX + 1];
	size_t host_len;
	uint8_t addr[16]; /* ATYP IPv4: the first 4 bytes; IPv6: all 16; a name: zero */
};

enum socks5_result socks5_parse_greeting(const uint8_t *buf, size_t len, size_t *used,
					 struct socks5_greeting *out, struct socks5_err *err);
/*
 * The method to answer a greeting with: USERPASS when auth is required and
 * offered, NONE when auth is not required and NONE is offered, else
 * SOCKS5_METHOD_REFUSED (a listener without auth takes NONE only, one with
 * auth takes USERPASS only).
 */
uint8_t socks5_choose_method(const struct socks5_greeting *g, bool auth_required);
enum socks5_result socks5_parse_auth(const uint8_t *buf, size_t len, size_t *used,
				     struct socks5_auth *out, struct socks5_err *err);
/*
 * A complete request other than CONNECT and UDP ASSOCIATE (BIND, unknown) is
 * an ERROR with code SOCKS5_REP_CMD_UNSUPPORTED, *used set; an unknown address
 * type or an unusable name one with SOCKS5_REP_ATYP_UNSUPPORTED. Port 0 is
 * refused for CONNECT; a UDP ASSOCIATE names the client's own address and
 * port, zeros when it does not know them (RFC 1928 section 7).
 */
enum socks5_result socks5_parse_request(const uint8_t *buf, size_t len, size_t *used,
					struct socks5_request *out, struct socks5_err *err);

/*
 * The header of a datagram a client sends to a UDP ASSOCIATE's relay address
 * (RFC 1928 section 7): RSV (2 bytes, 0), FRAG, ATYP, DST.ADDR, DST.PORT, then
 * the data. len is the whole datagram; SOCKS5_DONE with *used = the header's
 * length and out as a CONNECT request's (port 1..65535, the destination
 * checked as there), or SOCKS5_ERROR (code -1: the datagram is dropped) for a
 * datagram shorter than its header, RSV not 0, any FRAG other than 0
 * (fragments are not reassembled), an unknown ATYP or an unusable destination.
 * Never SOCKS5_NEED.
 */
enum socks5_result socks5_parse_udp(const uint8_t *buf, size_t len, size_t *used,
				    struct socks5_request *out, struct socks5_err *err);

/* The answers; each returns the bytes written (the *_LEN above). */
size_t socks5_method_reply(uint8_t out[SOCKS5_METHOD_REPLY_LEN], uint8_t method);
size_t socks5_auth_reply(uint8_t out[SOCKS5_AUTH_REPLY_LEN], uint8_t status);
/* a reply with the bound address 0.0.0.0:0 (the edge's address is not the client's to tell) */
size_t socks5_reply(uint8_t out[SOCKS5_REPLY_LEN], uint8_t rep);
/* a reply naming a bound address (16 bytes, IPv4 v4-mapped) and port: a UDP ASSOCIATE's relay */
size_t socks5_reply_addr(uint8_t out[SOCKS5_REPLY_MAX], uint8_t rep, const uint8_t addr[16],
			 uint16_t port);

/*
 * The reply code for an OPENED status (link_proto.h, LINK_OPEN_*):
 *   0 OK -> 0x00; 1 DENIED, 4 NOT_ALLOWED -> 0x02 (not allowed by ruleset);
 *   2 NOT_FOUND, 3 OFFLINE, 5 DNS, 7 UNREACHABLE -> 0x04 (host unreachable);
 *   6 REFUSED -> 0x05; 8 BUSY -> 0x01; 9 BAD -> 0x08 (a SOCKS stream is
 *   always TCP, so the edge refused the name: address type not supported);
 *   anything else -> 0x01.
 */
uint8_t socks5_rep_from_open(unsigned link_open_status);

/*
 * Whether the n bytes at s name a destination the edge takes (link_proto.h's
 * OPEN name): a DNS name (domain.h's rules, any case), an IPv4 literal, an
 * IPv6 literal without brackets, or a tunnel or group id (1-63 of
 * [A-Za-z0-9._-]). n is 1..SOCKS5_NAME_MAX; a NUL byte is refused.
 */
bool socks5_host_check(const char *s, size_t n);

#endif

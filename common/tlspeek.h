/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reads a TLS ClientHello from the bytes a public HTTPS connection sent so
 * far, without consuming them (the HTTPS listener peeks with MSG_PEEK, then
 * routes by SNI and ALPN: a tunnel link, a passthrough rule, or termination).
 * The hello may span several handshake records; everything is bounds-checked
 * and the names are validated where they enter: an SNI is a DNS name
 * (1-253 characters of [a-z0-9.-], lowercased, labels 1-63, no trailing
 * dot), an ALPN protocol 1-255 bytes.
 */
#ifndef NAVE_TLSPEEK_H
#define NAVE_TLSPEEK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLSPEEK_MAX	 16384 /* handshake bytes looked at; a longer hello is refused */
#define TLSPEEK_SNI_MAX	 253
#define TLSPEEK_ALPN_MAX 512 /* wire-format ALPN list kept */

enum tlspeek_result {
	TLSPEEK_OK,	 /* out is filled */
	TLSPEEK_MORE,	 /* a prefix of a possible hello: peek again with more bytes */
	TLSPEEK_NOT_TLS, /* the first bytes are not a TLS handshake record (plain HTTP, say) */
	TLSPEEK_BAD,	 /* a TLS record, but no valid ClientHello: why says what */
};

struct tlspeek {
	char sni[TLSPEEK_SNI_MAX + 1];	/* "" when the hello names no host */
	uint8_t alpn[TLSPEEK_ALPN_MAX]; /* the protocols, wire format ({len, bytes}...) */
	size_t alpn_len;		/* 0: no ALPN extension */
	uint16_t version;		/* legacy_version of the hello */
	bool tls13;			/* supported_versions offers TLS 1.3 */
};

enum tlspeek_result tlspeek_client_hello(const uint8_t *buf, size_t len, struct tlspeek *out,
					 char *why, size_t whylen);
/* whether the hello offers protocol proto (e.g. "nave/1", "http/1.1") */
bool tlspeek_offers(const struct tlspeek *p, const char *proto);

#endif

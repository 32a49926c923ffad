/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PROXY protocol headers (v1 text, v2 binary) as a local service expects
 * them ahead of a relayed connection's bytes, built from 16-byte addresses
 * (IPv4 as v4-mapped IPv6) and big-endian ports, the form a BIND carries.
 */
#ifndef NAVE_PROXY_H
#define NAVE_PROXY_H

#include <stddef.h>
#include <stdint.h>

#define PROXY_HEADER_MAX 108 /* the longest v1 line; v2 needs at most 52 */

/*
 * Writes a version 1 or 2 header for a TCP connection from src:sport to
 * dst:dport into out; returns its length, or 0 when cap is too small or the
 * version is neither. TCP4 / AF_INET when both addresses are IPv4.
 */
size_t proxy_header(int version, const uint8_t src[16], uint16_t sport_be, const uint8_t dst[16],
		    uint16_t dport_be, uint8_t *out, size_t cap);

#endif

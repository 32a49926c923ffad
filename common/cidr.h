/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Source address blocks for the firewall (navectl firewall, relayd's accept
 * check, the XDP deny/allow tries). An IPv4 block is kept as written (family
 * AF_INET, the address in addr[0..3]); matching takes the 16-byte form of
 * sock_addr16 (IPv4 as ::ffff:a.b.c.d), so a v4-mapped peer matches a v4 block.
 * An IPv4 peer is matched by IPv4 blocks only, as XDP sees it: an IPv6 block
 * never matches a v4-mapped address (::/0 is every IPv6 source, no IPv4 one),
 * and a v4-mapped block (::ffff:10.0.0.0/104) is parsed as the IPv4 block it
 * stands for (10.0.0.0/8), so each block has one canonical text.
 */
#ifndef NAVE_CIDR_H
#define NAVE_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CIDR_STR_MAX  44   /* "ffff:...:ffff/128" and the NUL: the canonical text */
#define CIDR_TEXT_MAX 49   /* the longest text cidr_parse reads: 45-character IPv6, "/128" */
#define CIDR_LIST_MAX 4096 /* rules per list (deny, allow), in relayd and in each XDP trie */

struct cidr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t prefix; /* 0..32 or 0..128 */
	uint8_t addr[16];
};

/*
 * "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128). Refuses
 * anything else with a one-line why: other characters, more than
 * CIDR_TEXT_MAX of them, a prefix out of range, host bits set beyond the
 * prefix ("did you mean ..."). 0, or -1 with *out zeroed.
 */
int cidr_parse(const char *s, struct cidr *out, char *why, size_t whylen);
/* The canonical text ("10.0.0.0/8"); out holds CIDR_STR_MAX. */
void cidr_format(const struct cidr *c, char *out, size_t len);
/* addr16 as sock_addr16 gives it (IPv4 as ::ffff:a.b.c.d). */
bool cidr_match(const struct cidr *c, const uint8_t addr16[16]);

/* An immutable pair of lists that relayd's workers share (refcounted). */
struct cidr_table {
	_Atomic unsigned refs;
	unsigned ndeny, nallow;
	struct cidr *deny, *allow; /* one allocation after the struct */
};

enum cidr_verdict { CIDR_PASS, CIDR_DENIED, CIDR_NOT_ALLOWED };

struct cidr_table *cidr_table_new(const struct cidr *deny, unsigned ndeny, const struct cidr *allow,
				  unsigned nallow, unsigned refs);
void cidr_table_put(struct cidr_table *t); /* frees it with the last reference */
/* deny first; then, when the allow list is not empty, only what it holds passes */
enum cidr_verdict cidr_table_check(const struct cidr_table *t, const uint8_t addr16[16]);

#endif

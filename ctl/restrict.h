/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Token restrictions (connet-style): what an auth token or a registration
 * token allows its client. Each is stored as canonical text, "" when unset
 * (no restriction: everything allowed, as before restrictions existed):
 *
 *   allow_from  address blocks the client may connect from: cidr.h's
 *               canonical blocks, comma-separated, 1..RESTRICT_CIDRS_MAX
 *   allow_ids   tunnel names the client may connect as (the HELLO's "id",
 *               else its hostname): exact names or globs where '*' stands
 *               for any run of characters; 1..RESTRICT_ID_MAX of
 *               [A-Za-z0-9._-*] each, 1..RESTRICT_IDS_MAX of them
 *   kinds       the rule kinds the client may request: "tcp", "udp", "http", and
 *               the mesh role "mesh" (its tunnel may reach other tunnels when no
 *               mesh rule decides, common/mesh.h); any of them, always written in
 *               the order tcp, udp, http, mesh. A token with kinds unset has no
 *               mesh role.
 *   domains     domains an HTTP rule may claim: domain.h names or "*.NAME"
 *               patterns, lowercased, 1..RESTRICT_DOMAINS_MAX, matched as
 *               [http] allowed_domains is (store_domain_allowed)
 *   ports       "A-B": the public ports a TCP or UDP rule may hold (port 0 = any
 *               allocates inside it); a subset of [ports] range
 *
 * Duplicates in a list are dropped. Each refusal is a one-line reason that
 * names nothing but printable ASCII (a refused input is shown escaped and cut).
 */
#ifndef NAVE_RESTRICT_H
#define NAVE_RESTRICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cidr.h"
#include "domain.h"

#define RESTRICT_CIDRS_MAX   16
#define RESTRICT_IDS_MAX     16
#define RESTRICT_ID_MAX	     63
#define RESTRICT_DOMAINS_MAX 16

/* The stored text of each, with its NUL */
#define RESTRICT_FROM_LEN    (RESTRICT_CIDRS_MAX * CIDR_STR_MAX)
#define RESTRICT_IDS_LEN     (RESTRICT_IDS_MAX * (RESTRICT_ID_MAX + 1))
#define RESTRICT_KINDS_LEN   24
#define RESTRICT_DOMAINS_LEN (RESTRICT_DOMAINS_MAX * (DOMAIN_MAX + 1))
#define RESTRICT_PORTS_LEN   12

/* The list fields (ports is not a list). */
enum restrict_list {
	RESTRICT_FROM,
	RESTRICT_IDS,
	RESTRICT_KINDS,
	RESTRICT_DOMAINS,
};

/* A token's or a registration's restrictions as stored; "" = unrestricted. */
struct restrict_set {
	char allow_from[RESTRICT_FROM_LEN];
	char allow_ids[RESTRICT_IDS_LEN];
	char kinds[RESTRICT_KINDS_LEN];
	char domains[RESTRICT_DOMAINS_LEN];
	char ports[RESTRICT_PORTS_LEN];
};

/* The API's and the stored name of a field ("allow_from", ...). */
const char *restrict_list_name(enum restrict_list f);

/*
 * Checks one item (n bytes at item, which may hold anything) of a list field
 * and appends its canonical form to out (outlen bytes, comma-separated, NUL-
 * terminated; an item out holds already is not added again). false with a
 * one-line reason in why (out unchanged): not an item of the field, or the
 * list is full.
 */
bool restrict_add(enum restrict_list f, const char *item, size_t n, char *out, size_t outlen,
		  char *why, size_t whylen);
/*
 * A whole list given as text, items between commas (navectl's form, and the
 * fuzz target's): each checked by restrict_add into out (emptied first).
 * Empty items are refused. false with why.
 */
bool restrict_norm(enum restrict_list f, const char *text, size_t n, char *out, size_t outlen,
		   char *why, size_t whylen);
/*
 * "A-B" (or "P", the range P-P), 1 <= A <= B <= 65535, inside lo..hi: true
 * with the canonical "A-B" in out (RESTRICT_PORTS_LEN), else false with why.
 */
bool restrict_ports(const char *s, size_t n, unsigned lo, unsigned hi, char out[RESTRICT_PORTS_LEN],
		    char *why, size_t whylen);

/* --- matching; an unset ("") field allows everything --- */

/* A 16-byte source address (sock_addr16's form) inside one of allow_from's blocks. */
bool restrict_from_ok(const char *allow_from, const uint8_t addr16[16]);
/* '*' matches any run of characters (also none); everything else itself, case and all. */
bool restrict_glob(const char *pattern, const char *name);
/* name matches one of allow_ids' patterns. */
bool restrict_id_ok(const char *allow_ids, const char *name);
/* kind ("tcp", "udp", "http") is one of kinds. */
bool restrict_kind_ok(const char *kinds, const char *kind);
/* ports' range into lo..hi: false when unset (or not a range: never stored). */
bool restrict_port_range(const char *ports, unsigned *lo, unsigned *hi);

/*
 * A list value cut for a reason ("10.0.0.0/8,192.168.0.0/16" or its first
 * max bytes at an item boundary and ",..."): out holds max + 5.
 */
void restrict_brief(const char *list, char *out, size_t max);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The mesh access policy: which tunnel may open a stream to which
 * destination (another tunnel by id or group, a domain of the HTTP edge, or
 * an external address) through the edge. controld stores the rules (navectl
 * mesh allow|deny), pushes them to relayd (ctl message mesh_policy), whose
 * control thread builds one immutable table here and hands every worker a
 * reference (MB_MESH); the workers decide each OPEN with mesh_decide.
 *
 * A rule is {id, action, from, to, port_lo, port_hi}:
 *   from  "*"            every opener
 *         "GLOB"         a tunnel whose id (server-assigned, t-<hex>) matches;
 *                        stored as id:GLOB
 *         "id:GLOB"      the same
 *         "group:GLOB"   a tunnel whose group id (the id its HELLO or token
 *                        named, chosen by the client) matches
 *   to    "*"            every destination
 *         "tunnel:GLOB"  a destination tunnel by its id only (also when it is
 *                        reached through one of its domains)
 *         "group:GLOB"   a destination tunnel by its group id (likewise)
 *         "domain:PAT"   a domain of the HTTP edge (domain.h: NAME or *.NAME)
 *         "external:PAT" an external destination: a CIDR (cidr.h) holding the
 *                        address, or a hostname pattern (NAME or *.NAME)
 *                        matching the name as the client asked it
 *   port_lo..port_hi     the destination port (1..65535); 0-0 = any port
 * A GLOB is 1..MESH_GLOB_MAX of [A-Za-z0-9._-*], '*' any run of characters;
 * globs and names match without regard to case.
 *
 * The first rule that matches decides (the table keeps the order it was given:
 * controld sends the rules by position, then id). When none matches: a tunnel
 * or domain destination is allowed only when the opener's token holds the
 * "mesh" kind (from_mesh_role), else denied; an external destination is
 * allowed (the [socks] allow list gated it already). Rule id 0 stands for
 * that default. A NULL table has no rules and no allow list.
 */
#ifndef NAVE_MESH_H
#define NAVE_MESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cidr.h"
#include "domain.h"

#define MESH_RULES_MAX 1024 /* rules in a table (and in controld's store) */
#define MESH_GLOB_MAX  63   /* a tunnel id / group id glob */
/* the longest from / to text, with its NUL: "external:" + a domain pattern */
#define MESH_FROM_MAX	 (6 + MESH_GLOB_MAX + 1)
#define MESH_TO_MAX	 (9 + DOMAIN_MAX + 1)
#define MESH_ALLOW_MAX	 256  /* entries of a [socks] allow list */
#define MESH_ALLOW_TEXT	 8192 /* bytes of a [socks] allow list's text */
#define MESH_COMMENT_MAX 200  /* a rule's comment (controld's store only) */

enum mesh_dst { MESH_DST_TUNNEL = 1, MESH_DST_DOMAIN, MESH_DST_EXTERNAL };
enum mesh_verdict { MESH_ALLOW = 1, MESH_DENY };

struct mesh_table; /* immutable once built (and its allow list set), reference counted */

struct mesh_query {
	const char *from_id, *from_group; /* the opener tunnel's id and group id */
	bool from_mesh_role;		  /* its token's kinds include "mesh" */
	enum mesh_dst kind;
	const char *to_id, *to_group; /* TUNNEL and DOMAIN: the destination tunnel */
	const char *name;	      /* DOMAIN: the domain; EXTERNAL: the name as asked */
	const uint8_t *addr;	      /* EXTERNAL: the address (16 bytes, v4-mapped) or NULL */
	uint16_t port;
};

/*
 * The verdict; *rule (may be NULL) = the deciding rule's id (0: the default).
 * Counts the decision in the table's atomic per-rule counters. Thread-safe
 * (any worker). t may be NULL (defaults only, nothing counted).
 */
enum mesh_verdict mesh_decide(struct mesh_table *t, const struct mesh_query *q, uint32_t *rule);

/*
 * A table from a JSON array (a json_t *, jansson) of rule objects {id (1..
 * 2^31-1), action ("allow"|"deny"), from, to, port_lo, port_hi (optional, 0 =
 * any)}; NULL json_array = no rules. One reference, no allow list. NULL with a
 * one-line reason in err (naming the rule's index and field) when anything is
 * malformed or there are more than MESH_RULES_MAX rules.
 */
struct mesh_table *mesh_table_from_json(const void *json_array, char *err, size_t errlen);
void mesh_table_get(struct mesh_table *t);
void mesh_table_put(struct mesh_table *t); /* frees it with the last reference; NULL-safe */
unsigned mesh_table_rules(const struct mesh_table *t);

/*
 * Sets the [socks] allow list (text as mesh_allow_norm takes it; NULL or ""
 * = nothing external) before the table is shared. false with err, the table
 * unchanged.
 */
bool mesh_table_set_allow(struct mesh_table *t, const char *list, char *err, size_t errlen);
/*
 * An external destination inside the allow list: name (may be NULL; as asked,
 * any case) matches one of its hostname patterns, or addr16 (may be NULL)
 * lies in one of its CIDRs. A NULL table or an empty list allows nothing.
 */
bool mesh_external_allowed(const struct mesh_table *t, const char *name, const uint8_t *addr16);

/* the allow list holds a CIDR (a name may resolve into it); false for NULL */
bool mesh_external_cidrs(const struct mesh_table *t);
/*
 * addr16 lies in a CIDR of the allow list that names it narrowly: a prefix of
 * at least MESH_NARROW_V4 bits for an IPv4 address, MESH_NARROW_V6 for IPv6.
 * relayd reaches loopback, unspecified, link-local and its own addresses only
 * through such an entry (never through a hostname pattern or 0.0.0.0/0).
 */
#define MESH_NARROW_V4 8
#define MESH_NARROW_V6 64
bool mesh_external_narrow(const struct mesh_table *t, const uint8_t *addr16);

/*
 * The counters carried over from an older table (same rule ids and action,
 * and the default's), so a new push does not restart them. Call before
 * sharing t. Decisions a worker makes with the old table after the copy, until
 * it takes the new one, are not carried (a few at most, per push).
 */
void mesh_table_inherit(struct mesh_table *t, const struct mesh_table *old);
/*
 * Per-rule counters for stats: fn(arg, rule_id, allowed, denied) for rule 0
 * (the default) and then every rule in order. Relaxed reads.
 */
void mesh_table_counts(const struct mesh_table *t,
		       void (*fn)(void *arg, uint32_t rule, uint64_t allowed, uint64_t denied),
		       void *arg);

/* --- the texts, checked where they enter (API, navectl, config) --- */

/* A rule's from / to into its canonical form (out: MESH_FROM_MAX / MESH_TO_MAX); false with why. */
bool mesh_from_norm(const char *s, char *out, char *why, size_t whylen);
bool mesh_to_norm(const char *s, char *out, char *why, size_t whylen);
/*
 * A [socks] allow list: entries between commas (spaces around them ignored),
 * each a CIDR or a hostname pattern; canonical comma-separated text into out
 * (outlen bytes). Empty text is the empty list. false with why.
 */
bool mesh_allow_norm(const char *s, char *out, size_t outlen, char *why, size_t whylen);
/* '*' matches any run of characters; the rest itself without regard to ASCII case. */
bool mesh_glob(const char *pattern, const char *name);

#endif

// SPDX-License-Identifier: Apache-2.0
/*
 * The mesh access policy's table and decision (mesh.h).
 */
#include "mesh.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

enum from_kind { FROM_ANY, FROM_ID, FROM_GROUP };
enum to_kind { TO_ANY, TO_TUNNEL, TO_DOMAIN, TO_EXT_CIDR, TO_EXT_NAME, TO_GROUP };

struct mesh_rule {
	uint32_t id;
	uint8_t action; /* enum mesh_verdict */
	uint8_t from_kind, to_kind;
	uint16_t port_lo, port_hi; /* 0-0: any */
	char from[MESH_GLOB_MAX + 1];
	char to[DOMAIN_MAX + 1]; /* the glob or the normalised domain pattern */
	struct cidr cidr;
	_Atomic uint64_t hits;
};

struct allow_ent {
	bool is_cidr;
	struct cidr cidr;
	char name[DOMAIN_MAX + 1];
};

struct mesh_table {
	_Atomic unsigned refs;
	unsigned n, nallow;
	_Atomic uint64_t def_allowed, def_denied;
	struct allow_ent *allow;
	struct mesh_rule rules[]; /* n */
};

static void set_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_why(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* up to 40 bytes of anything as printable ASCII for a reason: \xNN for the rest */
static void shown(const char *s, size_t n, char out[4 * 40 + 4])
{
	size_t o = 0;

	for (size_t i = 0; i < n && i < 40; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
			out[o++] = (char)c;
		else
			o += (size_t)sprintf(out + o, "\\x%02x", c);
	}
	if (n > 40) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = 0;
}

bool mesh_glob(const char *pattern, const char *name)
{
	const char *star = NULL, *back = NULL;

	if (!name)
		return false;
	/* the greedy walk with one backtrack point: O(len(pattern) * len(name)) */
	while (*name) {
		if (*pattern == '*') {
			star = ++pattern;
			back = name;
		} else if (*pattern &&
			   tolower((unsigned char)*pattern) == tolower((unsigned char)*name)) {
			pattern++;
			name++;
		} else if (star) {
			pattern = star;
			name = ++back;
		} else {
			return false;
		}
	}
	while (*pattern == '*')
		pattern++;
	return !*pattern;
}

static bool glob_ok(const char *s, size_t n)
{
	if (n == 0 || n > MESH_GLOB_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && c != '.' && c != '_' && c != '-' && c != '*')
			return false;
	}
	return true;
}

static bool has_prefix(const char *s, const char *p, const char **rest)
{
	size_t n = strlen(p);

	if (strncmp(s, p, n))
		return false;
	*rest = s + n;
	return true;
}

/*
 * from into kind + glob (out: MESH_GLOB_MAX + 1). A bare glob is the tunnel id:
 * the group id is whatever the client's HELLO said, so it matches only where
 * a rule says group: (a client must not pass for another tunnel by naming
 * itself after it).
 */
static bool from_parse(const char *s, enum from_kind *k, char *glob, char *why, size_t whylen)
{
	const char *g = s;

	if (!strcmp(s, "*")) {
		*k = FROM_ANY;
		strcpy(glob, "*");
		return true;
	}
	if (has_prefix(s, "group:", &g))
		*k = FROM_GROUP;
	else {
		has_prefix(s, "id:", &g);
		*k = FROM_ID;
	}
	if (!glob_ok(g, strlen(g))) {
		set_why(why, whylen,
			"from: a tunnel id glob (optionally id:) or group:GLOB, of 1-%d "
			"letters, digits, '.', '_', '-' and '*', or *",
			MESH_GLOB_MAX);
		return false;
	}
	strcpy(glob, g);
	return true;
}

bool mesh_from_norm(const char *s, char *out, char *why, size_t whylen)
{
	enum from_kind k;
	char glob[MESH_GLOB_MAX + 1];

	if (!s || strlen(s) >= MESH_FROM_MAX) {
		set_why(why, whylen, "from: at most %d characters", MESH_FROM_MAX - 1);
		return false;
	}
	if (!from_parse(s, &k, glob, why, whylen))
		return false;
	/* a bare glob is written id:GLOB, so a listing says what it matches */
	snprintf(out, MESH_FROM_MAX, "%s%s",
		 k == FROM_ID	   ? "id:"
		 : k == FROM_GROUP ? "group:"
				   : "",
		 glob);
	return true;
}

/* the last label of a name is all digits or 0x...: what inet_aton reads as IPv4 */
static bool numeric_last_label(const char *name)
{
	const char *last = strrchr(name, '.');

	last = last ? last + 1 : name;
	return strspn(last, "0123456789") == strlen(last) || !strncasecmp(last, "0x", 2);
}

/*
 * One hostname pattern or CIDR, n bytes at s; false with why (no prefix: the
 * caller names the field) when neither. Text of digits and dots (and a
 * '/'), or with a ':' or '/', is an address or block and nothing else: a
 * partial IPv4 ("10.0.5", "10.5/8") or an octet over 255 is refused, never
 * taken for a host name that no destination would ever match.
 */
static bool ext_parse(const char *s, size_t n, struct cidr *c, char *name, bool *is_cidr, char *why,
		      size_t whylen)
{
	char buf[DOMAIN_MAX + 1], r[160], show[4 * 40 + 4];

	shown(s, n, show);
	if (n == 0 || n > DOMAIN_MAX || memchr(s, 0, n)) {
		set_why(why, whylen, "\"%s\" is not 1-%d characters", show, DOMAIN_MAX);
		return false;
	}
	memcpy(buf, s, n);
	buf[n] = 0;
	if (strspn(buf, "0123456789abcdefABCDEF.:/") == n &&
	    cidr_parse(buf, c, r, sizeof(r)) == 0) {
		*is_cidr = true;
		return true;
	}
	if (strspn(buf, "0123456789./") == n || strpbrk(buf, ":/")) {
		set_why(why, whylen,
			"\"%s\" is not an address block: IPv4 is four dotted numbers 0-255 "
			"(10.0.5.0/24), IPv6 as in 2001:db8::/32",
			show);
		return false;
	}
	*is_cidr = false;
	if (!domain_norm(buf, n, name, true)) {
		set_why(why, whylen,
			"\"%s\" is neither an address block nor a hostname pattern (NAME or "
			"*.NAME of letters, digits, '-' and '.')",
			show);
		return false;
	}
	if (numeric_last_label(name)) {
		set_why(why, whylen,
			"\"%s\": a hostname pattern's last label is not a number (an address is "
			"four dotted numbers 0-255)",
			show);
		return false;
	}
	return true;
}

static bool to_parse(const char *s, struct mesh_rule *r, char *why, size_t whylen)
{
	const char *p;
	bool is_cidr;

	if (!strcmp(s, "*")) {
		r->to_kind = TO_ANY;
		strcpy(r->to, "*");
		return true;
	}
	/* tunnel: is the server-assigned id only, group: the id the client chose */
	if (has_prefix(s, "tunnel:", &p) || has_prefix(s, "group:", &p)) {
		bool group = *s == 'g';

		if (!glob_ok(p, strlen(p))) {
			set_why(why, whylen,
				"to: %s takes a %s glob of 1-%d letters, digits, '.', '_', '-' "
				"and '*'",
				group ? "group:" : "tunnel:", group ? "group id" : "tunnel id",
				MESH_GLOB_MAX);
			return false;
		}
		r->to_kind = group ? TO_GROUP : TO_TUNNEL;
		strcpy(r->to, p);
		return true;
	}
	if (has_prefix(s, "domain:", &p)) {
		size_t n = strlen(p);

		if (n == 0 || n > DOMAIN_MAX || !domain_norm(p, n, r->to, true)) {
			set_why(why, whylen,
				"to: domain: takes a domain or a wildcard *.NAME (1-%d characters "
				"of letters, digits, '-' and '.')",
				DOMAIN_MAX);
			return false;
		}
		r->to_kind = TO_DOMAIN;
		return true;
	}
	if (has_prefix(s, "external:", &p)) {
		char r2[256];

		if (!ext_parse(p, strlen(p), &r->cidr, r->to, &is_cidr, r2, sizeof(r2))) {
			set_why(why, whylen,
				"to: external: takes an address block (10.0.0.0/8, 2001:db8::/32) "
				"or a hostname pattern (NAME or *.NAME): %s",
				r2);
			return false;
		}
		if (is_cidr)
			cidr_format(&r->cidr, r->to, sizeof(r->to));
		r->to_kind = is_cidr ? TO_EXT_CIDR : TO_EXT_NAME;
		return true;
	}
	set_why(why, whylen,
		"to: one of *, tunnel:GLOB, group:GLOB, domain:PATTERN, external:CIDR|PATTERN");
	return false;
}

static const char *to_prefix(uint8_t k)
{
	switch (k) {
	case TO_TUNNEL:
		return "tunnel:";
	case TO_GROUP:
		return "group:";
	case TO_DOMAIN:
		return "domain:";
	case TO_EXT_CIDR:
	case TO_EXT_NAME:
		return "external:";
	}
	return "";
}

bool mesh_to_norm(const char *s, char *out, char *why, size_t whylen)
{
	struct mesh_rule r;

	if (!s || strlen(s) >= MESH_TO_MAX) {
		set_why(why, whylen, "to: at most %d characters", MESH_TO_MAX - 1);
		return false;
	}
	memset(&r, 0, sizeof(r));
	if (!to_parse(s, &r, why, whylen))
		return false;
	snprintf(out, MESH_TO_MAX, "%s%s", to_prefix(r.to_kind), r.to);
	return true;
}

/*
 * name as a host name for the patterns (lowercased into out), or NULL: not a
 * name, or an IPv4 literal (an address matches blocks, never "*.0.1")
 */
static const char *host_of(const char *name, char out[DOMAIN_MAX + 1])
{
	size_t n;

	if (!name || !(n = strlen(name)) || n > DOMAIN_MAX || !domain_norm(name, n, out, false))
		return NULL;
	/*
	 * a last label of digits (or 0x...) is what inet_aton and getaddrinfo read as
	 * an IPv4 address ("10.1", "0x7f.1"), never a host name
	 */
	if (numeric_last_label(out))
		return NULL;
	return out;
}

/* ---------- the [socks] allow list ---------- */

/* Walks the entries: calls add for each trimmed one; false with why. */
static bool allow_walk(const char *s, bool (*add)(void *arg, const struct allow_ent *e), void *arg,
		       char *why, size_t whylen)
{
	unsigned count = 0;

	if (!s || strspn(s, " \t") == strlen(s))
		return true; /* the empty list */
	if (strlen(s) >= MESH_ALLOW_TEXT) {
		set_why(why, whylen, "the allow list is longer than %d characters",
			MESH_ALLOW_TEXT - 1);
		return false;
	}
	while (*s) {
		size_t n = strcspn(s, ","), b = 0, e = n;
		struct allow_ent ent;
		char show[256];

		while (b < e && (s[b] == ' ' || s[b] == '\t'))
			b++;
		while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t'))
			e--;
		if (e == b) {
			set_why(why, whylen, "an empty entry in the allow list");
			return false;
		}
		memset(&ent, 0, sizeof(ent));
		if (!ext_parse(s + b, e - b, &ent.cidr, ent.name, &ent.is_cidr, show,
			       sizeof(show))) {
			set_why(why, whylen, "allow entry %s", show);
			return false;
		}
		if (++count > MESH_ALLOW_MAX) {
			set_why(why, whylen, "at most %d allow entries", MESH_ALLOW_MAX);
			return false;
		}
		if (add && !add(arg, &ent)) {
			set_why(why, whylen, "out of memory");
			return false;
		}
		s += n;
		if (*s)
			s++;
	}
	return true;
}

struct norm_out {
	char *out;
	size_t len, used;
};

static bool norm_add(void *arg, const struct allow_ent *e)
{
	struct norm_out *o = arg;
	char t[DOMAIN_MAX + 1];
	int n;

	if (e->is_cidr)
		cidr_format(&e->cidr, t, sizeof(t));
	else
		strcpy(t, e->name);
	n = snprintf(o->out + o->used, o->len - o->used, "%s%s", o->used ? "," : "", t);
	if (n < 0 || (size_t)n >= o->len - o->used)
		return false;
	o->used += (size_t)n;
	return true;
}

bool mesh_allow_norm(const char *s, char *out, size_t outlen, char *why, size_t whylen)
{
	struct norm_out o = {out, outlen, 0};

	if (!outlen)
		return false;
	out[0] = 0;
	if (!allow_walk(s, norm_add, &o, why, whylen)) {
		out[0] = 0;
		return false;
	}
	return true;
}

struct table_out {
	struct allow_ent *ents;
	unsigned n;
};

static bool table_add(void *arg, const struct allow_ent *e)
{
	struct table_out *o = arg;

	o->ents[o->n++] = *e;
	return true;
}

static bool count_add(void *arg, const struct allow_ent *e)
{
	(*(unsigned *)arg)++;
	return true;
}

bool mesh_table_set_allow(struct mesh_table *t, const char *list, char *err, size_t errlen)
{
	struct table_out o = {NULL, 0};
	unsigned n = 0;

	if (!t)
		return false;
	if (!allow_walk(list, count_add, &n, err, errlen))
		return false;
	o.ents = n ? calloc(n, sizeof(*o.ents)) : NULL;
	if (n && !o.ents) {
		set_why(err, errlen, "out of memory");
		return false;
	}
	allow_walk(list, table_add, &o, NULL, 0);
	free(t->allow);
	t->allow = o.ents;
	t->nallow = o.n;
	return true;
}

bool mesh_external_allowed(const struct mesh_table *t, const char *name, const uint8_t *addr16)
{
	char buf[DOMAIN_MAX + 1];
	const char *host;

	if (!t || !t->nallow)
		return false;
	host = host_of(name, buf);
	for (unsigned i = 0; i < t->nallow; i++) {
		const struct allow_ent *e = &t->allow[i];

		if (e->is_cidr ? addr16 && cidr_match(&e->cidr, addr16)
			       : host && domain_match(e->name, host))
			return true;
	}
	return false;
}

bool mesh_external_cidrs(const struct mesh_table *t)
{
	for (unsigned i = 0; t && i < t->nallow; i++)
		if (t->allow[i].is_cidr)
			return true;
	return false;
}

bool mesh_external_narrow(const struct mesh_table *t, const uint8_t *addr16)
{
	bool v4 = !memcmp(addr16, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12);

	for (unsigned i = 0; t && i < t->nallow; i++) {
		const struct allow_ent *e = &t->allow[i];
		int prefix;

		if (!e->is_cidr || !cidr_match(&e->cidr, addr16))
			continue;
		/* an IPv6 block over v4-mapped addresses counts by its IPv4 bits */
		prefix = e->cidr.family == AF_INET6 && v4 ? e->cidr.prefix - 96 : e->cidr.prefix;
		if (prefix >= (v4 ? MESH_NARROW_V4 : MESH_NARROW_V6))
			return true;
	}
	return false;
}

/* ---------- the table ---------- */

static bool rule_from_json(json_t *o, size_t i, struct mesh_rule *r, char *err, size_t errlen)
{
	json_t *id = json_object_get(o, "id"), *lo = json_object_get(o, "port_lo"),
	       *hi = json_object_get(o, "port_hi");
	const char *action = json_string_value(json_object_get(o, "action"));
	const char *from = json_string_value(json_object_get(o, "from"));
	const char *to = json_string_value(json_object_get(o, "to"));
	enum from_kind fk;
	char why[200];

	if (!json_is_object(o)) {
		set_why(err, errlen, "mesh rule %zu: not an object", i);
		return false;
	}
	if (!json_is_integer(id) || json_integer_value(id) < 1 ||
	    json_integer_value(id) > INT32_MAX) {
		set_why(err, errlen, "mesh rule %zu: \"id\" is not 1..%d", i, INT32_MAX);
		return false;
	}
	r->id = (uint32_t)json_integer_value(id);
	if (action && !strcmp(action, "allow"))
		r->action = MESH_ALLOW;
	else if (action && !strcmp(action, "deny"))
		r->action = MESH_DENY;
	else {
		set_why(err, errlen, "mesh rule %u: \"action\" is not allow or deny", r->id);
		return false;
	}
	if (!from || strlen(from) >= MESH_FROM_MAX) {
		set_why(err, errlen, "mesh rule %u: \"from\" is missing or too long", r->id);
		return false;
	}
	if (!from_parse(from, &fk, r->from, why, sizeof(why))) {
		set_why(err, errlen, "mesh rule %u: %s", r->id, why);
		return false;
	}
	r->from_kind = (uint8_t)fk;
	if (!to || strlen(to) >= MESH_TO_MAX) {
		set_why(err, errlen, "mesh rule %u: \"to\" is missing or too long", r->id);
		return false;
	}
	if (!to_parse(to, r, why, sizeof(why))) {
		set_why(err, errlen, "mesh rule %u: %s", r->id, why);
		return false;
	}
	if ((lo && !json_is_integer(lo)) || (hi && !json_is_integer(hi)) ||
	    json_integer_value(lo) < 0 || json_integer_value(lo) > 65535 ||
	    json_integer_value(hi) < 0 || json_integer_value(hi) > 65535 ||
	    json_integer_value(lo) > json_integer_value(hi) ||
	    (!json_integer_value(lo) && json_integer_value(hi))) {
		set_why(
		    err, errlen,
		    "mesh rule %u: \"port_lo\"..\"port_hi\" is not a range in 1..65535 (or 0-0)",
		    r->id);
		return false;
	}
	r->port_lo = (uint16_t)json_integer_value(lo);
	r->port_hi = (uint16_t)json_integer_value(hi);
	return true;
}

struct mesh_table *mesh_table_from_json(const void *json_array, char *err, size_t errlen)
{
	json_t *a = (json_t *)json_array, *o;
	struct mesh_table *t;
	size_t n = 0, i;

	if (a && !json_is_array(a)) {
		set_why(err, errlen, "mesh rules: not an array");
		return NULL;
	}
	n = a ? json_array_size(a) : 0;
	if (n > MESH_RULES_MAX) {
		set_why(err, errlen, "mesh rules: %zu of them, at most %d", n, MESH_RULES_MAX);
		return NULL;
	}
	t = calloc(1, sizeof(*t) + n * sizeof(t->rules[0]));
	if (!t) {
		set_why(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&t->refs, 1);
	json_array_foreach(a, i, o)
	{
		if (!rule_from_json(o, i, &t->rules[i], err, errlen)) {
			free(t);
			return NULL;
		}
	}
	t->n = (unsigned)n;
	return t;
}

void mesh_table_get(struct mesh_table *t)
{
	if (t)
		atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void mesh_table_put(struct mesh_table *t)
{
	if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) {
		free(t->allow);
		free(t);
	}
}

unsigned mesh_table_rules(const struct mesh_table *t)
{
	return t ? t->n : 0;
}

void mesh_table_inherit(struct mesh_table *t, const struct mesh_table *old)
{
	if (!t || !old)
		return;
	atomic_store_explicit(&t->def_allowed,
			      atomic_load_explicit(&old->def_allowed, memory_order_relaxed),
			      memory_order_relaxed);
	atomic_store_explicit(&t->def_denied,
			      atomic_load_explicit(&old->def_denied, memory_order_relaxed),
			      memory_order_relaxed);
	for (unsigned i = 0; i < t->n; i++)
		for (unsigned k = 0; k < old->n; k++)
			if (old->rules[k].id == t->rules[i].id &&
			    old->rules[k].action == t->rules[i].action) {
				atomic_store_explicit(
				    &t->rules[i].hits,
				    atomic_load_explicit(&old->rules[k].hits, memory_order_relaxed),
				    memory_order_relaxed);
				break;
			}
}

void mesh_table_counts(const struct mesh_table *t,
		       void (*fn)(void *arg, uint32_t rule, uint64_t allowed, uint64_t denied),
		       void *arg)
{
	if (!t)
		return;
	fn(arg, 0, atomic_load_explicit(&t->def_allowed, memory_order_relaxed),
	   atomic_load_explicit(&t->def_denied, memory_order_relaxed));
	for (unsigned i = 0; i < t->n; i++) {
		uint64_t h = atomic_load_explicit(&t->rules[i].hits, memory_order_relaxed);

		fn(arg, t->rules[i].id, t->rules[i].action == MESH_ALLOW ? h : 0,
		   t->rules[i].action == MESH_DENY ? h : 0);
	}
}

static bool from_match(const struct mesh_rule *r, const struct mesh_query *q)
{
	switch (r->from_kind) {
	case FROM_ANY:
		return true;
	case FROM_ID:
		return mesh_glob(r->from, q->from_id);
	case FROM_GROUP:
		return mesh_glob(r->from, q->from_group);
	}
	return false;
}

static bool to_match(const struct mesh_rule *r, const struct mesh_query *q, const char *host)
{
	switch (r->to_kind) {
	case TO_ANY:
		return true;
	case TO_TUNNEL:
		return (q->kind == MESH_DST_TUNNEL || q->kind == MESH_DST_DOMAIN) &&
		       mesh_glob(r->to, q->to_id);
	case TO_GROUP:
		return (q->kind == MESH_DST_TUNNEL || q->kind == MESH_DST_DOMAIN) &&
		       mesh_glob(r->to, q->to_group);
	case TO_DOMAIN:
		return q->kind == MESH_DST_DOMAIN && host && domain_match(r->to, host);
	case TO_EXT_CIDR:
		return q->kind == MESH_DST_EXTERNAL && q->addr && cidr_match(&r->cidr, q->addr);
	case TO_EXT_NAME:
		return q->kind == MESH_DST_EXTERNAL && host && domain_match(r->to, host);
	}
	return false;
}

enum mesh_verdict mesh_decide(struct mesh_table *t, const struct mesh_query *q, uint32_t *rule)
{
	char hostbuf[DOMAIN_MAX + 1];
	const char *host = host_of(q->name, hostbuf);
	enum mesh_verdict v;

	for (unsigned i = 0; t && i < t->n; i++) {
		struct mesh_rule *r = &t->rules[i];

		if (r->port_lo && (q->port < r->port_lo || q->port > r->port_hi))
			continue;
		if (!from_match(r, q) || !to_match(r, q, host))
			continue;
		atomic_fetch_add_explicit(&r->hits, 1, memory_order_relaxed);
		if (rule)
			*rule = r->id;
		return (enum mesh_verdict)r->action;
	}
	if (rule)
		*rule = 0;
	v = q->kind == MESH_DST_EXTERNAL || q->from_mesh_role ? MESH_ALLOW : MESH_DENY;
	if (t)
		atomic_fetch_add_explicit(v == MESH_ALLOW ? &t->def_allowed : &t->def_denied, 1,
					  memory_order_relaxed);
	return v;
}

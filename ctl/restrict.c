// SPDX-License-Identifier: Apache-2.0
/*
 * Token restrictions: parsing into canonical text, and matching (restrict.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "restrict.h"

#define SHOWN_MAX 40 /* bytes of a refused input shown in a reason */

static const char *const list_names[] = {
    [RESTRICT_FROM] = "allow_from",
    [RESTRICT_IDS] = "allow_ids",
    [RESTRICT_KINDS] = "kinds",
    [RESTRICT_DOMAINS] = "domains",
};

static const unsigned list_max[] = {
    [RESTRICT_FROM] = RESTRICT_CIDRS_MAX,
    [RESTRICT_IDS] = RESTRICT_IDS_MAX,
    [RESTRICT_KINDS] = 4, /* tcp, udp, http, mesh */
    [RESTRICT_DOMAINS] = RESTRICT_DOMAINS_MAX,
};

const char *restrict_list_name(enum restrict_list f)
{
	return (unsigned)f < sizeof(list_names) / sizeof(list_names[0]) ? list_names[f] : "?";
}

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

/* n bytes of anything as printable ASCII: \xNN for the rest, cut with "..." */
static void shown(const char *s, size_t n, char out[4 * SHOWN_MAX + 4])
{
	size_t o = 0;

	for (size_t i = 0; i < n && i < SHOWN_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
			out[o++] = (char)c;
		else
			o += (size_t)sprintf(out + o, "\\x%02x", c);
	}
	if (n > SHOWN_MAX) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = 0;
}

/* The items of a stored list one by one: for (p = l; (p = next_item(p, it, len));) */
static const char *next_item(const char *p, char *out, size_t outlen)
{
	size_t n;

	if (!p || !*p)
		return NULL;
	n = strcspn(p, ",");
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, p, n);
	out[n] = 0;
	p += strcspn(p, ",");
	return *p ? p + 1 : p;
}

static bool list_has(const char *list, const char *item)
{
	char it[DOMAIN_MAX + 1];

	for (const char *p = list; (p = next_item(p, it, sizeof(it)));)
		if (!strcmp(it, item))
			return true;
	return false;
}

static unsigned list_count(const char *list)
{
	unsigned n = *list ? 1 : 0;

	for (; *list; list++)
		n += *list == ',';
	return n;
}

static bool id_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-' || c == '*';
}

/* One item's canonical form into canon, or false with why. */
static bool item_canon(enum restrict_list f, const char *item, size_t n, char *canon, size_t clen,
		       char *why, size_t whylen)
{
	char show[4 * SHOWN_MAX + 4], buf[CIDR_TEXT_MAX + 1], r[160];
	struct cidr c;

	shown(item, n, show);
	switch (f) {
	case RESTRICT_FROM:
		if (n > CIDR_TEXT_MAX || memchr(item, 0, n)) {
			set_why(why, whylen, "\"%s\" is not an address block", show);
			return false;
		}
		memcpy(buf, item, n);
		buf[n] = 0;
		if (cidr_parse(buf, &c, r, sizeof(r))) {
			set_why(why, whylen, "%s", r);
			return false;
		}
		cidr_format(&c, canon, clen);
		return true;
	case RESTRICT_IDS:
		if (n == 0 || n > RESTRICT_ID_MAX) {
			set_why(why, whylen, "a tunnel id pattern is 1-%d characters",
				RESTRICT_ID_MAX);
			return false;
		}
		for (size_t i = 0; i < n; i++)
			if (!id_char((unsigned char)item[i])) {
				set_why(why, whylen,
					"\"%s\": a tunnel id pattern holds letters, digits, '.', "
					"'_', '-' and '*'",
					show);
				return false;
			}
		memcpy(canon, item, n);
		canon[n] = 0;
		return true;
	case RESTRICT_KINDS:
		if ((n == 3 && !memcmp(item, "tcp", 3)) || (n == 3 && !memcmp(item, "udp", 3)) ||
		    (n == 4 && !memcmp(item, "http", 4)) || (n == 4 && !memcmp(item, "mesh", 4))) {
			memcpy(canon, item, n);
			canon[n] = 0;
			return true;
		}
		set_why(why, whylen, "\"%s\" is not a rule kind (tcp, udp, http, mesh)", show);
		return false;
	case RESTRICT_DOMAINS:
		if (n == 0 || n > DOMAIN_MAX || memchr(item, 0, n) ||
		    !domain_norm(item, n, canon, true)) {
			set_why(why, whylen,
				"\"%s\" is not a domain or a wildcard *.NAME (1-%d characters of "
				"letters, digits, '-' and '.')",
				show, DOMAIN_MAX);
			return false;
		}
		return true;
	}
	set_why(why, whylen, "no such field");
	return false;
}

bool restrict_add(enum restrict_list f, const char *item, size_t n, char *out, size_t outlen,
		  char *why, size_t whylen)
{
	char canon[DOMAIN_MAX + 1];
	size_t used = strlen(out), cl;

	if ((unsigned)f > RESTRICT_DOMAINS) {
		set_why(why, whylen, "no such field");
		return false;
	}
	if (!item_canon(f, item, n, canon, sizeof(canon), why, whylen))
		return false;
	if (list_has(out, canon))
		return true;
	if (list_count(out) >= list_max[f]) {
		set_why(why, whylen, "at most %u items", list_max[f]);
		return false;
	}
	cl = strlen(canon);
	if (used + (used ? 1 : 0) + cl + 1 > outlen) {
		set_why(why, whylen, "the list is too long");
		return false;
	}
	if (used)
		out[used++] = ',';
	memcpy(out + used, canon, cl + 1);
	if (f == RESTRICT_KINDS) {
		/* always in the order tcp, udp, http, mesh */
		static const char *const order[] = {"tcp", "udp", "http", "mesh"};
		char sorted[RESTRICT_KINDS_LEN] = "";

		for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
			if (list_has(out, order[i])) {
				if (*sorted)
					strcat(sorted, ",");
				strcat(sorted, order[i]);
			}
		strcpy(out, sorted);
	}
	return true;
}

bool restrict_norm(enum restrict_list f, const char *text, size_t n, char *out, size_t outlen,
		   char *why, size_t whylen)
{
	char tmp[RESTRICT_DOMAINS_LEN], r[200];
	size_t i = 0, k = 1;

	if (!outlen)
		return false;
	tmp[0] = 0;
	if (n == 0) {
		set_why(why, whylen, "the list is empty");
		return false;
	}
	while (i <= n) {
		const char *comma = memchr(text + i, ',', n - i);
		size_t len = comma ? (size_t)(comma - (text + i)) : n - i;

		if (len == 0) {
			set_why(why, whylen, "item %zu is empty", k);
			return false;
		}
		if (!restrict_add(f, text + i, len, tmp,
				  outlen < sizeof(tmp) ? outlen : sizeof(tmp), r, sizeof(r))) {
			set_why(why, whylen, "item %zu: %s", k, r);
			return false;
		}
		i += len + 1;
		k++;
	}
	memcpy(out, tmp, strlen(tmp) + 1);
	return true;
}

static bool parse_port(const char *s, size_t n, unsigned *out)
{
	unsigned v = 0;

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return v >= 1 && v <= 65535;
}

bool restrict_ports(const char *s, size_t n, unsigned lo, unsigned hi, char out[RESTRICT_PORTS_LEN],
		    char *why, size_t whylen)
{
	char show[4 * SHOWN_MAX + 4];
	const char *dash = memchr(s, '-', n);
	unsigned a, b;

	shown(s, n, show);
	if (dash ? !parse_port(s, (size_t)(dash - s), &a) ||
		       !parse_port(dash + 1, n - (size_t)(dash - s) - 1, &b)
		 : !parse_port(s, n, &a)) {
		set_why(why, whylen, "\"%s\" is not a port range A-B (ports 1-65535)", show);
		return false;
	}
	if (!dash)
		b = a;
	if (a > b) {
		set_why(why, whylen, "%u-%u: the range starts above its end", a, b);
		return false;
	}
	if (a < lo || b > hi) {
		set_why(why, whylen, "%u-%u is not inside the server's [ports] range %u-%u", a, b,
			lo, hi);
		return false;
	}
	snprintf(out, RESTRICT_PORTS_LEN, "%u-%u", a, b);
	return true;
}

bool restrict_from_ok(const char *allow_from, const uint8_t addr16[16])
{
	char it[CIDR_STR_MAX + 1];
	struct cidr c;

	if (!allow_from || !*allow_from)
		return true;
	for (const char *p = allow_from; (p = next_item(p, it, sizeof(it)));)
		if (!cidr_parse(it, &c, NULL, 0) && cidr_match(&c, addr16))
			return true;
	return false;
}

bool restrict_glob(const char *pattern, const char *name)
{
	const char *star = NULL, *back = NULL;

	/* the greedy walk with one backtrack point: O(len(pattern) * len(name)) */
	while (*name) {
		if (*pattern == '*') {
			star = ++pattern;
			back = name;
		} else if (*pattern == *name) {
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

bool restrict_id_ok(const char *allow_ids, const char *name)
{
	char it[RESTRICT_ID_MAX + 1];

	if (!allow_ids || !*allow_ids)
		return true;
	if (!name || !*name)
		return false;
	for (const char *p = allow_ids; (p = next_item(p, it, sizeof(it)));)
		if (restrict_glob(it, name))
			return true;
	return false;
}

bool restrict_kind_ok(const char *kinds, const char *kind)
{
	return !kinds || !*kinds || list_has(kinds, kind);
}

bool restrict_port_range(const char *ports, unsigned *lo, unsigned *hi)
{
	const char *dash;

	if (!ports || !*ports || !(dash = strchr(ports, '-')))
		return false;
	return parse_port(ports, (size_t)(dash - ports), lo) &&
	       parse_port(dash + 1, strlen(dash + 1), hi) && *lo <= *hi;
}

void restrict_brief(const char *list, char *out, size_t max)
{
	size_t n = strlen(list), cut;

	if (n <= max) {
		memcpy(out, list, n + 1);
		return;
	}
	for (cut = max; cut && list[cut] != ','; cut--)
		;
	memcpy(out, list, cut);
	memcpy(out + cut, cut ? ",..." : "...", cut ? 5 : 4);
}

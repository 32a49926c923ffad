// SPDX-License-Identifier: Apache-2.0
/*
 * The check of relayd's connection records (records.h). Everything a record
 * holds is checked against its type, range and alphabet before the store sees
 * it; one bad record is dropped (and counted by the caller), never the batch.
 */
#include "ctl/records.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "valid.h"

#define BYTES_MAX    (1ll << 62)
#define TIME_MS_MAX  253402300799999ll	     /* 9999-12-31T23:59:59.999Z */
#define DURATION_MAX (3650ll * 86400 * 1000) /* ten years of ms */

static int bad(char *why, size_t whylen, size_t i, const char *fmt, const char *key)
{
	char what[128];

	snprintf(what, sizeof(what), fmt, key);
	snprintf(why, whylen, "records[%zu]: %s", i, what);
	return -EINVAL;
}

static int get_int(const json_t *r, const char *key, int64_t lo, int64_t hi, int64_t *out, size_t i,
		   char *why, size_t whylen)
{
	const json_t *v = json_object_get(r, key);

	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		char fmt[96];

		snprintf(fmt, sizeof(fmt), "%%s must be an integer %lld-%lld", (long long)lo,
			 (long long)hi);
		return bad(why, whylen, i, fmt, key);
	}
	*out = json_integer_value(v);
	return 0;
}

static int name_index(const char *const *names, const char *s)
{
	for (int k = 0; s && names[k]; k++)
		if (!strcmp(names[k], s))
			return k;
	return -1;
}

/* One record r (records[i]) into out; -EINVAL with why. */
/* a mesh record's host: "from:ID", a DNS name, or an IPv4 / IPv6 literal */
static bool mesh_host_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > DOMAIN_MAX)
		return false;
	for (size_t k = 0; k < n; k++)
		if (!((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') ||
		      (s[k] >= '0' && s[k] <= '9') || strchr(".:_-", s[k])))
			return false;
	return true;
}

static int record_one(const json_t *r, struct store_conn_record *out, size_t i, char *why,
		      size_t whylen)
{
	const char *tid, *src, *dom;
	const json_t *d;
	unsigned char addr[16];
	int64_t v;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(r))
		return bad(why, whylen, i, "%s", "not an object");
	tid = json_string_value(json_object_get(r, "tunnel_id"));
	if (!tid || !valid_str(tid, VALID_ID, STORE_TUNNEL_ID_LEN - 1))
		return bad(why, whylen, i,
			   "%s must be 1-14 characters of letters, digits, '.', "
			   "'_' and '-'",
			   "tunnel_id");
	memcpy(out->tunnel_id, tid, strlen(tid) + 1);
	out->kind = name_index(store_rec_kind_names, json_string_value(json_object_get(r, "kind")));
	if (out->kind < 0)
		return bad(why, whylen, i,
			   "%s must be \"tcp\", \"udp\", \"http\", \"https\" or \"mesh\"", "kind");
	if (get_int(r, "port", 1, 65535, &v, i, why, whylen))
		return -EINVAL;
	out->port = (uint16_t)v;
	d = json_object_get(r, "domain");
	if (d && !json_is_null(d)) {
		dom = json_string_value(d);
		if (out->kind == STORE_REC_TCP || out->kind == STORE_REC_UDP)
			return bad(why, whylen, i, "%s is for http, https and mesh records only",
				   "domain");
		/* mesh: "from:ID" (the opener) or the name asked for (a DNS name or an address) */
		if (out->kind == STORE_REC_MESH) {
			if (!dom || !mesh_host_ok(dom))
				return bad(why, whylen, i,
					   "%s must be 1-253 of letters, digits, '.', ':', '_' "
					   "and '-'",
					   "domain");
			memcpy(out->domain, dom, strlen(dom) + 1);
		} else if (!dom || !domain_norm(dom, strlen(dom), out->domain, false))
			return bad(why, whylen, i, "%s must be a DNS name", "domain");
	}
	src = json_string_value(json_object_get(r, "src"));
	if (!src || strlen(src) >= STORE_ADDR_LEN ||
	    (inet_pton(AF_INET, src, addr) != 1 && inet_pton(AF_INET6, src, addr) != 1))
		return bad(why, whylen, i, "%s must be an IPv4 or IPv6 address", "src");
	memcpy(out->src, src, strlen(src) + 1);
	if (get_int(r, "src_port", 0, 65535, &v, i, why, whylen))
		return -EINVAL;
	out->src_port = (uint16_t)v;
	if (get_int(r, "start_ms", 0, TIME_MS_MAX, &out->start_ms, i, why, whylen) ||
	    get_int(r, "duration_ms", 0, DURATION_MAX, &out->duration_ms, i, why, whylen) ||
	    get_int(r, "bytes_in", 0, BYTES_MAX, &out->bytes_in, i, why, whylen) ||
	    get_int(r, "bytes_out", 0, BYTES_MAX, &out->bytes_out, i, why, whylen))
		return -EINVAL;
	out->start = out->start_ms / 1000;
	out->ended = (out->start_ms + out->duration_ms) / 1000;
	out->reason =
	    name_index(store_rec_reason_names, json_string_value(json_object_get(r, "reason")));
	if (out->reason < 0)
		return bad(why, whylen, i,
			   "%s must be one of done, reset, idle_timeout, pending_timeout, refused, "
			   "error, shutdown, idle",
			   "reason");
	if (out->reason == STORE_REC_IDLE && out->kind != STORE_REC_UDP)
		return bad(why, whylen, i, "%s \"idle\" is for udp records only", "reason");
	return 0;
}

int records_parse(const json_t *m, struct store_conn_record *out, size_t max, size_t *n,
		  size_t *nbad, char *why, size_t whylen)
{
	const json_t *a = json_object_get(m, "records");
	char one[256];
	size_t i;
	json_t *r;

	*n = *nbad = 0;
	if (why && whylen)
		why[0] = 0;
	if (!json_is_array(a)) {
		snprintf(why, whylen, "conn_records: \"records\" is not an array");
		return -EBADMSG;
	}
	if (json_array_size(a) > RECORDS_MSG_MAX) {
		snprintf(why, whylen, "conn_records: %zu records, more than %d in one message",
			 json_array_size(a), RECORDS_MSG_MAX);
		return -EBADMSG;
	}
	json_array_foreach(a, i, r)
	{
		if (*n >= max || record_one(r, &out[*n], i, one, sizeof(one))) {
			if (*n >= max)
				snprintf(one, sizeof(one), "records[%zu]: no room", i);
			if (!*nbad && why && whylen)
				snprintf(why, whylen, "%s", one);
			(*nbad)++;
			continue;
		}
		(*n)++;
	}
	return 0;
}

int records_since(const char *s, int64_t now, int64_t *since)
{
	static const struct {
		char unit;
		int64_t secs;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 7 * 86400}};
	char *end;
	long long v;
	size_t n = s ? strlen(s) : 0;

	if (!n || n > 20 || s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || v < 0)
		return -EINVAL;
	if (!*end) {
		if (v > TIME_MS_MAX / 1000)
			return -EINVAL;
		*since = v; /* Unix seconds */
		return 0;
	}
	if (end[1])
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (*end != units[i].unit)
			continue;
		if (v > 100ll * 365 * 86400 / units[i].secs)
			return -EINVAL;
		*since = now - v * units[i].secs;
		if (*since < 0)
			*since = 0;
		return 0;
	}
	return -EINVAL;
}

// SPDX-License-Identifier: Apache-2.0
/* Remote rule operations: the one checker of rulemsg.h. */
#include "rulemsg.h"

#include "config/cfg.h"
#include "domain.h"
#include "link_proto.h"
#include "log.h"
#include "msg.h"
#include "util.h"
#include "valid.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static json_t *bad(json_t *out, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static json_t *bad(json_t *out, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	json_decref(out);
	return NULL;
}

/* A string member: NULL when absent; *ok false when present and not a string. */
static const char *str_of(const json_t *m, const char *key, bool *ok)
{
	json_t *v = json_object_get(m, key);

	*ok = true;
	if (!v)
		return NULL;
	if (!json_is_string(v)) {
		*ok = false;
		return NULL;
	}
	return json_string_value(v);
}

/* HOST:PORT with a port, as the client's rule_resolve wants it. */
static bool hostport_ok(const char *s)
{
	char host[256];
	uint16_t port;

	if (strlen(s) > 255 || !valid_str(s, VALID_TEXT, 255))
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return false;
	return cfg_parse_hostport(s, host, sizeof(host), &port) == 0 && port != 0 && host[0];
}

/* An absolute path without "." or ".." segments or control characters. */
static bool webroot_ok(const char *s)
{
	const char *p = s;

	if (s[0] != '/' || !valid_str(s, VALID_TEXT, RULEMSG_PATH_MAX))
		return false;
	while (*p) {
		size_t n;

		p += strspn(p, "/");
		n = strcspn(p, "/");
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
	}
	return true;
}

static const char *const known[] = {
    "action",
    "kind",
    "name",
    "to",
    "port",
    "proxy_protocol",
    "domain",
    "webroot",
    "tls_passthrough",
    "redirect_https",
    "host_header",
    "basic_auth",
};

json_t *rulemsg_norm(const json_t *m, const char *action, const char *const *allow, char *err,
		     size_t errlen)
{
	const char *key, *s, *kind, *name;
	json_t *v, *out;
	bool ok, add, http;

	if (!json_is_object(m))
		return bad(NULL, err, errlen, "rule: must be a JSON object");
	json_object_foreach((json_t *)m, key, v)
	{
		bool found = false;

		for (size_t i = 0; !found && i < ARRAY_SIZE(known); i++)
			found = !strcmp(key, known[i]) && (strcmp(key, "action") || !action);
		for (size_t i = 0; !found && allow && allow[i]; i++)
			found = !strcmp(key, allow[i]);
		if (!found) {
			char esc[80];

			log_escape(key, strlen(key), esc, sizeof(esc), false);
			return bad(NULL, err, errlen, "%s: unknown member", esc);
		}
	}
	if (!action) {
		action = str_of(m, "action", &ok);
		if (!action || (strcmp(action, "add") && strcmp(action, "rm")))
			return bad(NULL, err, errlen, "action: must be \"add\" or \"rm\"");
	}
	add = !strcmp(action, "add");
	name = str_of(m, "name", &ok);
	if (!name || !valid_str(name, VALID_NAME, LINK_RULE_MAX))
		return bad(NULL, err, errlen, "name: must be 1-%d characters: %s", LINK_RULE_MAX,
			   valid_alphabet(VALID_NAME));
	kind = str_of(m, "kind", &ok);
	if ((add || kind) && (!kind || (strcmp(kind, "tcp") && strcmp(kind, "http"))))
		return bad(NULL, err, errlen, "kind: must be \"tcp\" or \"http\"");
	out = json_pack("{s:s, s:s}", "action", action, "name", name);
	if (!out)
		return bad(NULL, err, errlen, "rule: out of memory");
	if (kind)
		json_object_set_new(out, "kind", json_string(kind));
	if (!add) {
		for (size_t i = 3; i < ARRAY_SIZE(known); i++)
			if (json_object_get(m, known[i]))
				return bad(out, err, errlen, "%s: not with action rm", known[i]);
		return out;
	}
	http = !strcmp(kind, "http");

	/* to: both kinds */
	s = str_of(m, "to", &ok);
	if (!ok || (s && !hostport_ok(s)))
		return bad(out, err, errlen,
			   "to: must be HOST:PORT (port 1-65535, at most 255 bytes)");
	if (s)
		json_object_set_new(out, "to", json_string(s));
	else if (!http)
		return bad(out, err, errlen, "to: missing (HOST:PORT of a local service)");
	/* proxy_protocol: both kinds */
	s = str_of(m, "proxy_protocol", &ok);
	if (!ok || (s && strcmp(s, "v1") && strcmp(s, "v2")))
		return bad(out, err, errlen, "proxy_protocol: must be \"v1\" or \"v2\"");
	if (s)
		json_object_set_new(out, "proxy_protocol", json_string(s));
	if (!http) {
		v = json_object_get(m, "port");
		if (v && (!json_is_integer(v) || json_integer_value(v) < 0 ||
			  json_integer_value(v) > 65535))
			return bad(out, err, errlen, "port: must be a number from 0 to 65535");
		if (v && json_integer_value(v))
			json_object_set_new(out, "port", json_integer(json_integer_value(v)));
		static const char *const http_only[] = {"domain",	   "webroot",
							"tls_passthrough", "redirect_https",
							"host_header",	   "basic_auth"};
		for (size_t i = 0; i < ARRAY_SIZE(http_only); i++)
			if (json_object_get(m, http_only[i]))
				return bad(out, err, errlen, "%s: not for a tcp rule",
					   http_only[i]);
		return out;
	}
	if (json_object_get(m, "port"))
		return bad(out, err, errlen, "port: not for an http rule");
	{
		char dom[DOMAIN_MAX + 1];

		s = str_of(m, "domain", &ok);
		if (!s || !domain_norm(s, strlen(s), dom, true))
			return bad(out, err, errlen,
				   "domain: must be a domain name or a wildcard \"*.NAME\"");
		json_object_set_new(out, "domain", json_string(dom));
	}
	s = str_of(m, "webroot", &ok);
	if (!ok || (s && !webroot_ok(s)))
		return bad(out, err, errlen,
			   "webroot: must be an absolute path (printable, at most %d bytes, no . "
			   "or .. segment)",
			   RULEMSG_PATH_MAX);
	if (s)
		json_object_set_new(out, "webroot", json_string(s));
	for (int i = 0; i < 2; i++) {
		const char *k = i ? "redirect_https" : "tls_passthrough";

		v = json_object_get(m, k);
		if (v && !json_is_boolean(v))
			return bad(out, err, errlen, "%s: must be true or false", k);
		if (json_is_true(v))
			json_object_set_new(out, k, json_true());
	}
	s = str_of(m, "host_header", &ok);
	if (!ok || (s && !cfg_valid_host_header(s)))
		return bad(out, err, errlen,
			   "host_header: must be 1-255 characters of "
			   "letters, digits, '.', ':', '_' and '-'");
	if (s)
		json_object_set_new(out, "host_header", json_string(s));
	s = str_of(m, "basic_auth", &ok);
	if (!ok || (s && !cfg_valid_basic_auth(s)))
		return bad(out, err, errlen,
			   "basic_auth: must be USER:HASH as nave stores it (USER 1-64 of "
			   "letters, digits, '.', '_' and '-'; HASH \"$scrypt$...\")");
	if (s)
		json_object_set_new(out, "basic_auth", json_string(s));
	{
		struct cfg_http_rule h;
		const char *why, *k;

		memset(&h, 0, sizeof(h));
		str_copy(h.to, sizeof(h.to), msg_str(out, "to") ?: "");
		str_copy(h.webroot, sizeof(h.webroot), msg_str(out, "webroot") ?: "");
		str_copy(h.host_header, sizeof(h.host_header), msg_str(out, "host_header") ?: "");
		str_copy(h.basic_auth, sizeof(h.basic_auth), msg_str(out, "basic_auth") ?: "");
		h.tls_passthrough = json_is_true(json_object_get(out, "tls_passthrough"));
		h.redirect_https = json_is_true(json_object_get(out, "redirect_https"));
		h.proxy_protocol = json_object_get(out, "proxy_protocol") ? 1 : 0;
		why = cfg_http_rule_check(&h, &k);
		if (why)
			return bad(out, err, errlen, "%s: %s", k, why);
	}
	return out;
}

long long rulemsg_op(const json_t *m)
{
	json_t *v = json_object_get(m, "op");

	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > RULEMSG_OP_MAX)
		return 0;
	return (long long)json_integer_value(v);
}

bool rulemsg_result_check(const json_t *m, char *err, size_t errlen)
{
	json_t *v;

	if (!json_is_object(m)) {
		snprintf(err, errlen, "rule_result must be a JSON object");
		return false;
	}
	if (!rulemsg_op(m)) {
		snprintf(err, errlen, "op: must be a number from 1 to 2^53");
		return false;
	}
	v = json_object_get(m, "ok");
	if (!json_is_boolean(v)) {
		snprintf(err, errlen, "ok: must be true or false");
		return false;
	}
	for (int i = 0; i < 2; i++) {
		const char *k = i ? "route" : "port";
		json_t *p = json_object_get(m, k);

		if (p && !json_is_null(p) &&
		    (!json_is_integer(p) || json_integer_value(p) < 1 ||
		     json_integer_value(p) > 65535)) {
			snprintf(err, errlen, "%s: must be a number from 1 to 65535", k);
			return false;
		}
	}
	v = json_object_get(m, "reason");
	if ((v && !json_is_null(v) &&
	     (!json_is_string(v) ||
	      !valid_str(json_string_value(v), VALID_TEXT, RULEMSG_REASON_MAX))) ||
	    (json_is_false(json_object_get(m, "ok")) && !json_is_string(v))) {
		snprintf(err, errlen, "reason: must be 1-%d bytes of printable text",
			 RULEMSG_REASON_MAX);
		return false;
	}
	return true;
}

// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for common/rulemsg.c, the checker of remote rule
 * operations at every boundary: the admin API's body (POST
 * /api/v1/tunnels/ID/rules), relay.sock's rule_push at relayd, the link's
 * rule_push at the client, and rule_result on the way back. The input is a
 * JSON text (what a peer or an API caller sends). Beyond "never crash": an
 * accepted operation holds only known members, each within its limits (a
 * name of the rule alphabet, HOST:PORT with a port, an absolute webroot
 * without "." or ".." segments, a lowercase domain, booleans only when true,
 * one of to and webroot for http); checking the result again accepts it and
 * gives the same object (the checker is idempotent, so a relayd or a client
 * checking again what controld sent never refuses it); a refusal names its
 * member in a one-line printable reason; rule_result verdicts agree with a
 * reference.
 *
 *   see run.sh for the link line
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg.h"
#include "domain.h"
#include "link_proto.h"
#include "rulemsg.h"
#include "valid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_rulemsg: %s\n", what);
	abort();
}

static void check_reason(const char *err)
{
	size_t n = strlen(err);

	if (!n || n >= 300)
		fail("a refusal without a reason, or a reason that is too long");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)err[i] < 0x20 || err[i] == 0x7f)
			fail("a reason with a control character");
	if (!strchr(err, ':'))
		fail("a reason that names no member");
}

static void check_op(const json_t *op)
{
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
	const char *key, *s;
	json_t *v;
	char dom[DOMAIN_MAX + 1];
	bool add;

	json_object_foreach((json_t *)op, key, v)
	{
		bool found = false;

		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			found |= !strcmp(key, known[i]);
		if (!found)
			fail("an unknown member accepted");
		if (json_is_false(v))
			fail("a false boolean kept");
	}
	s = json_string_value(json_object_get(op, "action"));
	if (!s || (strcmp(s, "add") && strcmp(s, "rm")))
		fail("no action");
	add = !strcmp(s, "add");
	s = json_string_value(json_object_get(op, "name"));
	if (!s || !valid_str(s, VALID_NAME, LINK_RULE_MAX))
		fail("a bad name accepted");
	if (!add)
		return;
	s = json_string_value(json_object_get(op, "kind"));
	if (!s || (strcmp(s, "tcp") && strcmp(s, "http")))
		fail("an add without a kind");
	if (!strcmp(s, "tcp") && !json_object_get(op, "to"))
		fail("a tcp rule without to");
	if (!strcmp(s, "http")) {
		const char *d = json_string_value(json_object_get(op, "domain"));

		if (!d || !domain_norm(d, strlen(d), dom, true) || strcmp(d, dom))
			fail("an http rule without a normalised domain");
		if (!json_object_get(op, "to") == !json_object_get(op, "webroot"))
			fail("an http rule without exactly one of to and webroot");
	}
	s = json_string_value(json_object_get(op, "to"));
	if (s) {
		char host[256];
		uint16_t port;

		if (cfg_parse_hostport(s, host, sizeof(host), &port) || !port)
			fail("a to without a port accepted");
	}
	s = json_string_value(json_object_get(op, "webroot"));
	if (s &&
	    (s[0] != '/' || strstr(s, "/../") || strstr(s, "/./") ||
	     (strlen(s) >= 3 && !strcmp(s + strlen(s) - 3, "/..")) || strlen(s) > RULEMSG_PATH_MAX))
		fail("a bad webroot accepted");
	v = json_object_get(op, "port");
	if (v &&
	    (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535))
		fail("a bad port kept");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const allow[] = {"type", "op", "tunnel_id", NULL};
	char err[300], err2[300];
	json_t *m = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	json_t *op, *again;

	if (!m)
		return 0;
	for (int mode = 0; mode < 3; mode++) {
		const char *action = mode == 0 ? NULL : mode == 1 ? "add" : "rm";

		err[0] = 0;
		op = rulemsg_norm(m, action, mode ? NULL : allow, err, sizeof(err));
		if (!op) {
			check_reason(err);
			continue;
		}
		check_op(op);
		again = rulemsg_norm(op, NULL, allow, err2, sizeof(err2));
		if (!again || !json_equal(op, again))
			fail("an accepted operation is not accepted the same when checked again");
		json_decref(again);
		json_decref(op);
	}
	/* rule_result */
	{
		json_t *okv = json_object_get(m, "ok"), *r = json_object_get(m, "reason");
		bool want = json_is_object(m) && rulemsg_op(m) && json_is_boolean(okv);

		err[0] = 0;
		if (rulemsg_result_check(m, err, sizeof(err))) {
			if (!want)
				fail("a rule_result without op or ok accepted");
			if (json_is_false(okv) && !json_is_string(r))
				fail("a refusal without a reason accepted");
			if (r && json_is_string(r) &&
			    !valid_str(json_string_value(r), VALID_TEXT, RULEMSG_REASON_MAX))
				fail("a bad reason accepted");
		} else if (!err[0]) {
			fail("a refused rule_result without a reason");
		}
	}
	json_decref(m);
	return 0;
}

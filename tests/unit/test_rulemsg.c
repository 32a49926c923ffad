// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/rulemsg.c, the checker of remote rule operations:
 * accepted operations come out normalised with only their members, every
 * refusal names its member, the allow list of a message's own members, rm
 * taking a name only, and rule_result.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rulemsg.h"

static json_t *norm(const char *text, const char *action, char *err)
{
	static const char *const allow[] = {"type", "op", "tunnel_id", NULL};
	json_t *m = json_loads(text, 0, NULL), *out;

	assert_non_null(m);
	out = rulemsg_norm(m, action, action ? NULL : allow, err, 300);
	json_decref(m);
	return out;
}

static void refused(const char *text, const char *action, const char *reason_start)
{
	char err[300] = "";
	json_t *out = norm(text, action, err);

	if (out)
		fail_msg("accepted: %s", text);
	if (strncmp(err, reason_start, strlen(reason_start)))
		fail_msg("%s: reason '%s' does not start with '%s'", text, err, reason_start);
}

static void test_tcp(void **state)
{
	char err[300];
	json_t *o =
	    norm("{\"type\":\"rule_push\",\"op\":4,\"tunnel_id\":\"t-1\",\"action\":\"add\","
		 "\"kind\":\"tcp\",\"name\":\"web\",\"to\":\"127.0.0.1:80\",\"port\":0,"
		 "\"proxy_protocol\":\"v2\"}",
		 NULL, err);
	json_t *want = json_pack("{s:s, s:s, s:s, s:s, s:s}", "action", "add", "kind", "tcp",
				 "name", "web", "to", "127.0.0.1:80", "proxy_protocol", "v2");

	assert_non_null(o);
	assert_true(json_equal(o, want)); /* port 0 (any) is left out; no type/op/tunnel_id */
	json_decref(o);
	json_decref(want);
	o = norm("{\"kind\":\"tcp\",\"name\":\"a\",\"to\":\"[::1]:22\",\"port\":22001}", "add",
		 err);
	assert_non_null(o);
	assert_int_equal(json_integer_value(json_object_get(o, "port")), 22001);
	json_decref(o);
	refused("{\"kind\":\"tcp\",\"name\":\"a\",\"to\":\"x:1\",\"op\":1}", "add", "op: unknown");
	refused("{\"kind\":\"tcp\",\"name\":\"a\",\"to\":\"x\"}", "add", "to:");
	refused("{\"kind\":\"tcp\",\"name\":\"a\",\"to\":\"x:65536\"}", "add", "to:");
	refused("{\"kind\":\"tcp\",\"name\":\"a\",\"to\":\"x y:1\"}", "add", "to:");
	refused("{\"kind\":\"tcp\",\"name\":\"a\",\"to\":\"x:1\",\"port\":-1}", "add", "port:");
	refused("{\"kind\":\"tcp\",\"name\":\"a\",\"to\":\"x:1\",\"webroot\":\"/\"}", "add",
		"webroot: not for a tcp rule");
	refused("{\"kind\":\"tcp\",\"name\":\"a.b\",\"to\":\"x:1\"}", "add", "name:");
	refused("{\"kind\":\"tcp\",\"to\":\"x:1\"}", "add", "name:");
	refused("{\"name\":\"a\",\"to\":\"x:1\"}", "add", "kind:");
	refused("{\"action\":\"add\",\"kind\":\"tcp\",\"name\":\"a\",\"to\":\"x:1\"}", "add",
		"action: unknown");
	refused("{\"action\":\"delete\",\"name\":\"a\"}", NULL, "action:");
	refused("[1]", "add", "rule:");
}

static void test_http(void **state)
{
	char err[300];
	json_t *o = norm("{\"kind\":\"http\",\"name\":\"s\",\"domain\":\"*.Example.COM\","
			 "\"to\":\"127.0.0.1:8000\",\"redirect_https\":true,"
			 "\"tls_passthrough\":false,\"host_header\":\"in.local:80\"}",
			 "add", err);

	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "domain")), "*.example.com");
	assert_null(json_object_get(o, "tls_passthrough")); /* false is left out */
	assert_true(json_is_true(json_object_get(o, "redirect_https")));
	json_decref(o);
	o = norm("{\"kind\":\"http\",\"name\":\"f\",\"domain\":\"f.test\",\"webroot\":\"/srv/"
		 "my www/\"}",
		 "add", err);
	assert_non_null(o);
	json_decref(o);
	refused("{\"kind\":\"http\",\"name\":\"f\",\"domain\":\"f.test\"}", "add", "to: missing");
	refused("{\"kind\":\"http\",\"name\":\"f\",\"domain\":\"f.test\",\"webroot\":\"srv\"}",
		"add", "webroot:");
	refused("{\"kind\":\"http\",\"name\":\"f\",\"domain\":\"f.test\",\"webroot\":\"/a/..\"}",
		"add", "webroot:");
	refused("{\"kind\":\"http\",\"name\":\"f\",\"domain\":\"f.test\",\"webroot\":\"/a/./b\"}",
		"add", "webroot:");
	refused("{\"kind\":\"http\",\"name\":\"f\",\"domain\":\"f.test\",\"to\":\"a:1\","
		"\"webroot\":\"/a\"}",
		"add", "to: to and webroot exclude each other");
	refused("{\"kind\":\"http\",\"name\":\"f\",\"domain\":\"f.test\",\"webroot\":\"/a\","
		"\"host_header\":\"x\"}",
		"add", "host_header: goes with to only");
	refused("{\"kind\":\"http\",\"name\":\"f\",\"domain\":\"-bad-.test\",\"to\":\"a:1\"}",
		"add", "domain:");
	refused("{\"kind\":\"http\",\"name\":\"f\",\"domain\":\"f.test\",\"to\":\"a:1\","
		"\"basic_auth\":\"u:secret\"}",
		"add", "basic_auth:");
	refused(
	    "{\"kind\":\"http\",\"name\":\"f\",\"domain\":\"f.test\",\"to\":\"a:1\",\"port\":1}",
	    "add", "port: not for an http rule");
}

static void test_rm(void **state)
{
	char err[300];
	json_t *o = norm("{\"action\":\"rm\",\"name\":\"web\",\"op\":2}", NULL, err);

	assert_non_null(o);
	assert_int_equal(json_object_size(o), 2);
	json_decref(o);
	refused("{\"name\":\"web\",\"to\":\"a:1\"}", "rm", "to: not with action rm");
	refused("{\"name\":\"web\",\"kind\":\"udp\"}", "rm", "kind:");
}

static void test_result(void **state)
{
	char err[160];
	json_t *r = json_pack("{s:s, s:i, s:b, s:i}", "type", "rule_result", "op", 3, "ok", 1,
			      "port", 22000);

	assert_true(rulemsg_result_check(r, err, sizeof(err)));
	assert_int_equal(rulemsg_op(r), 3);
	json_object_set_new(r, "ok", json_false());
	assert_false(rulemsg_result_check(r, err, sizeof(err)));
	assert_string_equal(err, "reason: must be 1-200 bytes of printable text");
	json_object_set_new(r, "reason", json_string("no\x1b[31m"));
	assert_false(rulemsg_result_check(r, err, sizeof(err)));
	json_object_set_new(r, "reason", json_string("cannot resolve x"));
	assert_true(rulemsg_result_check(r, err, sizeof(err)));
	json_object_set_new(r, "port", json_integer(70000));
	assert_false(rulemsg_result_check(r, err, sizeof(err)));
	json_object_set_new(r, "port", json_integer(1));
	json_object_set_new(r, "op", json_integer(0));
	assert_false(rulemsg_result_check(r, err, sizeof(err)));
	assert_int_equal(rulemsg_op(r), 0);
	json_decref(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tcp),
	    cmocka_unit_test(test_http),
	    cmocka_unit_test(test_rm),
	    cmocka_unit_test(test_result),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

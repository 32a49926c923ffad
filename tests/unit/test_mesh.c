// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/mesh.c: the mesh access policy. The defaults (no rule:
 * a tunnel or domain destination only for an opener with the mesh role, an
 * external one always; a NULL table), every kind of from (*, GLOB, id:,
 * group:) and to (*, tunnel:, group:, domain:, external: CIDR and hostname
 * pattern), a client-chosen group id never passing for a tunnel id,
 * port ranges, first match wins, the counters (and their carry-over), the
 * canonical texts and their refusals, malformed tables, and the [socks]
 * allow list.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mesh.h"
#include "valid.h"

/* A table from JSON text (which must be accepted). */
static struct mesh_table *table(const char *text)
{
	json_error_t je;
	json_t *a = json_loads(text, 0, &je);
	struct mesh_table *t;
	char err[256] = "";

	if (!a)
		fail_msg("bad test JSON: %s", je.text);
	t = mesh_table_from_json(a, err, sizeof(err));
	json_decref(a);
	if (!t)
		fail_msg("table refused: %s", err);
	return t;
}

/* The reason a table from text is refused with ("" when accepted). */
static const char *refused(const char *text, char *err, size_t errlen)
{
	json_t *a = json_loads(text, 0, NULL);
	struct mesh_table *t;

	assert_non_null(a);
	err[0] = 0;
	t = mesh_table_from_json(a, err, errlen);
	json_decref(a);
	if (t) {
		mesh_table_put(t);
		return "";
	}
	assert_true(strlen(err) > 0);
	return err;
}

static void addr(const char *ip, uint8_t a[16])
{
	memset(a, 0, 16);
	if (inet_pton(AF_INET6, ip, a) == 1)
		return;
	a[10] = a[11] = 0xff;
	assert_int_equal(inet_pton(AF_INET, ip, a + 12), 1);
}

static struct mesh_query tun_q(const char *fid, const char *fgroup, bool role, const char *tid,
			       const char *tgroup, uint16_t port)
{
	struct mesh_query q = {.from_id = fid,
			       .from_group = fgroup,
			       .from_mesh_role = role,
			       .kind = MESH_DST_TUNNEL,
			       .to_id = tid,
			       .to_group = tgroup,
			       .port = port};
	return q;
}

static void test_defaults(void **state)
{
	struct mesh_table *t = table("[]");
	struct mesh_query q = tun_q("t1", "office-a", false, "t2", "db", 5432);
	uint8_t a[16];
	uint32_t rule = 99;

	/* tunnel: only with the mesh role */
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 0);
	q.from_mesh_role = true;
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	/* domain: the same */
	q.kind = MESH_DST_DOMAIN;
	q.name = "app.example.com";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	q.from_mesh_role = false;
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	/* external: allowed, the allow list gated it */
	q.kind = MESH_DST_EXTERNAL;
	q.to_id = q.to_group = NULL;
	addr("192.0.2.1", a);
	q.addr = a;
	q.name = "192.0.2.1";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 0);
	/* NULL table: the same defaults, rule out-pointer optional */
	assert_int_equal(mesh_decide(NULL, &q, NULL), MESH_ALLOW);
	q.kind = MESH_DST_TUNNEL;
	q.to_id = "t2";
	assert_int_equal(mesh_decide(NULL, &q, &rule), MESH_DENY);
	q.from_mesh_role = true;
	assert_int_equal(mesh_decide(NULL, &q, &rule), MESH_ALLOW);
	assert_int_equal(mesh_table_rules(NULL), 0);
	assert_int_equal(mesh_table_rules(t), 0);
	mesh_table_put(t);
	mesh_table_put(NULL);
}

static void test_from_kinds(void **state)
{
	struct mesh_table *t =
	    table("[{\"id\": 1, \"action\": \"allow\", \"from\": \"id:t1\", \"to\": "
		  "\"*\"},"
		  "{\"id\": 2, \"action\": \"allow\", \"from\": \"group:office-*\","
		  " \"to\": \"*\"},"
		  "{\"id\": 3, \"action\": \"allow\", \"from\": \"lab*\", \"to\": "
		  "\"*\"}]");
	struct mesh_query q = tun_q("t1", "x", false, "t9", "db", 1);
	uint32_t rule;

	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 1);
	/* id: does not look at the group, group: not at the id */
	q.from_id = "office-z";
	q.from_group = "none";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 0);
	q.from_group = "OFFICE-Paris"; /* any case */
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 2);
	/* a bare glob: the tunnel id only */
	q.from_id = "lab-1";
	q.from_group = "g";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 3);
	q.from_id = "x";
	q.from_group = "lab-group";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 0);
	/* a NULL group never matches a glob */
	q.from_group = NULL;
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	mesh_table_put(t);
}

/*
 * A client names its group (HELLO id): a group that spells another tunnel's id
 * matches neither a bare / id: from nor a tunnel: to; only group: sees it.
 */
static void test_group_not_tunnel(void **state)
{
	struct mesh_table *t =
	    table("[{\"id\": 1, \"action\": \"allow\", \"from\": \"t-00aa11\", \"to\": "
		  "\"tunnel:t-00bb22\"},"
		  "{\"id\": 2, \"action\": \"deny\", \"from\": \"*\", \"to\": \"group:t-*\"},"
		  "{\"id\": 3, \"action\": \"allow\", \"from\": \"group:lab\", \"to\": "
		  "\"group:db\"}]");
	struct mesh_query q = tun_q("t-00aa11", "office", false, "t-00bb22", "db", 1);
	uint32_t rule;

	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 1);
	/* the opener spoofs t-00aa11 as its group: not the tunnel of rule 1 */
	q.from_id = "t-99cc33";
	q.from_group = "t-00aa11";
	q.to_group = "lab";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 0);
	/* a destination whose group spells the tunnel id: rule 1 does not match it */
	q.from_id = "t-00aa11";
	q.from_group = "office";
	q.to_id = "t-77dd44";
	q.to_group = "t-00bb22";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 2);
	/* group: from and to; also through a domain */
	q.from_group = "LAB";
	q.to_group = "db";
	q.kind = MESH_DST_DOMAIN;
	q.name = "db.example.com";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 3);
	/* group: never matches an external destination */
	q.kind = MESH_DST_EXTERNAL;
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 0);
	mesh_table_put(t);

	assert_true(valid_tunnel_id_shaped("t-0a1b2c"));
	assert_true(valid_tunnel_id_shaped("T-ABC"));
	assert_false(valid_tunnel_id_shaped("t-"));
	assert_false(valid_tunnel_id_shaped("t-lab"));
	assert_false(valid_tunnel_id_shaped("tt-01"));
	assert_false(valid_tunnel_id_shaped("office"));
	assert_false(valid_tunnel_id_shaped(NULL));
}

static void test_to_kinds(void **state)
{
	struct mesh_table *t = table(
	    "[{\"id\": 10, \"action\": \"deny\", \"from\": \"*\", \"to\": \"tunnel:secret*\"},"
	    "{\"id\": 11, \"action\": \"allow\", \"from\": \"*\", \"to\": "
	    "\"domain:*.example.com\"},"
	    "{\"id\": 12, \"action\": \"deny\", \"from\": \"*\", \"to\": \"external:10.0.0.0/8\"},"
	    "{\"id\": 13, \"action\": \"deny\", \"from\": \"*\", \"to\": \"external:*.bad.net\"},"
	    "{\"id\": 14, \"action\": \"allow\", \"from\": \"*\", \"to\": \"tunnel:db\"}]");
	struct mesh_query q = tun_q("a", "ga", true, "secret-1", "g", 80);
	uint8_t a[16];
	uint32_t rule;

	/* tunnel: by id only (not the group); also when reached through a domain */
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 10);
	q.to_id = "x";
	q.to_group = "SECRET-group";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 0);
	q.to_id = "Secret-2";
	q.kind = MESH_DST_DOMAIN;
	q.name = "app.example.com";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 10);
	q.to_id = "x";
	/* domain: wildcard at any depth, not the bare name; any case */
	q.to_group = "g";
	q.name = "A.B.Example.COM";
	q.from_mesh_role = false;
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 11);
	q.name = "example.com";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 0);
	/* a domain rule never matches a tunnel destination */
	q.kind = MESH_DST_TUNNEL;
	q.name = "app.example.com";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 0);
	q.to_id = "db";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 14);
	/* external by CIDR (address needed) and by name */
	q.kind = MESH_DST_EXTERNAL;
	q.to_id = q.to_group = NULL;
	q.name = "10.1.2.3";
	addr("10.1.2.3", a);
	q.addr = a;
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 12);
	q.addr = NULL;
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 0);
	q.name = "www.BAD.net";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 13);
	addr("192.0.2.7", a);
	q.addr = a;
	q.name = "good.net";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	/* an external rule never matches a tunnel */
	q = tun_q("a", "ga", false, "10.1.2.3", "bad.net", 80);
	addr("10.1.2.3", a);
	q.addr = a;
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 0);
	mesh_table_put(t);
}

static void test_ports_and_order(void **state)
{
	struct mesh_table *t = table(
	    "[{\"id\": 5, \"action\": \"deny\", \"from\": \"*\", \"to\": \"*\", \"port_lo\": 22, "
	    "\"port_hi\": 22},"
	    "{\"id\": 3, \"action\": \"allow\", \"from\": \"*\", \"to\": \"tunnel:b\", "
	    "\"port_lo\": 1,"
	    " \"port_hi\": 1024},"
	    "{\"id\": 4, \"action\": \"deny\", \"from\": \"*\", \"to\": \"tunnel:b\"}]");
	struct mesh_query q = tun_q("a", "", true, "b", "", 22);
	uint32_t rule;

	/* the table's order, not the ids */
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 5);
	q.port = 21;
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 3);
	q.port = 1024;
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 3);
	q.port = 1025;
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_DENY);
	assert_int_equal(rule, 4);
	q.port = 23;
	q.to_id = "c";
	assert_int_equal(mesh_decide(t, &q, &rule), MESH_ALLOW);
	assert_int_equal(rule, 0);
	mesh_table_put(t);
}

struct counts {
	unsigned n;
	uint32_t id[8];
	uint64_t allowed[8], denied[8];
};

static void count_cb(void *arg, uint32_t rule, uint64_t allowed, uint64_t denied)
{
	struct counts *c = arg;

	assert_true(c->n < 8);
	c->id[c->n] = rule;
	c->allowed[c->n] = allowed;
	c->denied[c->n++] = denied;
}

static void test_counters(void **state)
{
	const char *text = "[{\"id\": 1, \"action\": \"allow\", \"from\": \"a\", \"to\": \"*\"},"
			   "{\"id\": 2, \"action\": \"deny\", \"from\": \"b\", \"to\": \"*\"}]";
	struct mesh_table *t = table(text), *t2;
	struct mesh_query q = tun_q("a", "", false, "x", "", 1);
	struct counts c = {0};

	mesh_decide(t, &q, NULL);
	mesh_decide(t, &q, NULL);
	q.from_id = "b";
	mesh_decide(t, &q, NULL);
	q.from_id = "c";
	mesh_decide(t, &q, NULL); /* default deny */
	q.from_mesh_role = true;
	mesh_decide(t, &q, NULL); /* default allow */
	mesh_decide(t, &q, NULL);
	mesh_table_counts(t, count_cb, &c);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.id[0], 0);
	assert_int_equal(c.allowed[0], 2);
	assert_int_equal(c.denied[0], 1);
	assert_int_equal(c.id[1], 1);
	assert_int_equal(c.allowed[1], 2);
	assert_int_equal(c.denied[1], 0);
	assert_int_equal(c.id[2], 2);
	assert_int_equal(c.allowed[2], 0);
	assert_int_equal(c.denied[2], 1);

	/* a new push keeps the counts of the rules it still holds */
	t2 = table("[{\"id\": 2, \"action\": \"deny\", \"from\": \"b\", \"to\": \"*\"},"
		   "{\"id\": 7, \"action\": \"allow\", \"from\": \"*\", \"to\": \"*\"}]");
	mesh_table_inherit(t2, t);
	memset(&c, 0, sizeof(c));
	mesh_table_counts(t2, count_cb, &c);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.allowed[0], 2);
	assert_int_equal(c.denied[0], 1);
	assert_int_equal(c.id[1], 2);
	assert_int_equal(c.denied[1], 1);
	assert_int_equal(c.id[2], 7);
	assert_int_equal(c.allowed[2], 0);

	/* references */
	mesh_table_get(t);
	mesh_table_put(t);
	mesh_table_put(t);
	mesh_table_put(t2);
}

static void test_texts(void **state)
{
	char out[MESH_TO_MAX], why[256];

	assert_true(mesh_from_norm("*", out, why, sizeof(why)));
	assert_string_equal(out, "*");
	assert_true(mesh_from_norm("office-*", out, why, sizeof(why)));
	assert_string_equal(out, "id:office-*");
	assert_true(mesh_from_norm("group:Lab.1", out, why, sizeof(why)));
	assert_string_equal(out, "group:Lab.1");
	assert_true(mesh_from_norm("id:t_1", out, why, sizeof(why)));
	assert_false(mesh_from_norm("", out, why, sizeof(why)));
	assert_non_null(strstr(why, "from"));
	assert_false(mesh_from_norm("group:", out, why, sizeof(why)));
	assert_false(mesh_from_norm("a b", out, why, sizeof(why)));
	assert_false(mesh_from_norm("tunnel:x", out, why, sizeof(why)));
	assert_false(
	    mesh_from_norm("id:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
			   out, why, sizeof(why)));

	assert_true(mesh_to_norm("*", out, why, sizeof(why)));
	assert_string_equal(out, "*");
	assert_true(mesh_to_norm("tunnel:db-*", out, why, sizeof(why)));
	assert_string_equal(out, "tunnel:db-*");
	assert_true(mesh_to_norm("group:DB-*", out, why, sizeof(why)));
	assert_string_equal(out, "group:DB-*");
	assert_false(mesh_to_norm("group:", out, why, sizeof(why)));
	assert_false(mesh_to_norm("group:a b", out, why, sizeof(why)));
	assert_true(mesh_to_norm("domain:*.Example.COM", out, why, sizeof(why)));
	assert_string_equal(out, "domain:*.example.com");
	assert_true(mesh_to_norm("external:10.1.0.0/16", out, why, sizeof(why)));
	assert_string_equal(out, "external:10.1.0.0/16");
	assert_true(mesh_to_norm("external:2001:DB8::/32", out, why, sizeof(why)));
	assert_string_equal(out, "external:2001:db8::/32");
	assert_true(mesh_to_norm("external:192.0.2.1", out, why, sizeof(why)));
	assert_string_equal(out, "external:192.0.2.1/32");
	assert_true(mesh_to_norm("external:Api.Example.com", out, why, sizeof(why)));
	assert_string_equal(out, "external:api.example.com");
	assert_false(mesh_to_norm("external:10.1.0.1/16", out, why, sizeof(why)));
	assert_false(mesh_to_norm("domain:-bad.com", out, why, sizeof(why)));
	assert_non_null(strstr(why, "domain"));
	assert_false(mesh_to_norm("tunnel:", out, why, sizeof(why)));
	assert_false(mesh_to_norm("host:x", out, why, sizeof(why)));
	assert_false(mesh_to_norm("", out, why, sizeof(why)));
	assert_false(mesh_to_norm("tunnel:a\nb", out, why, sizeof(why)));
}

/* Partial IPv4 and octets out of range: refused, never taken for a host name. */
static void test_partial_addresses(void **state)
{
	static const char *const bad[] = {
	    "10.0.5",	 "10.5/8",	 "10.0.0.256", "300.1.1.1/8", "1.2.3.4/33", "10",
	    "10.0.0.0/", "10.0.0.0/8/8", "1.2.3.4.5",  "10..0.1",     "::g",	    "db:5432",
	    "foo.10",	 "*.5",		 "a.0x1f",     "10.0.0.01",   "-1.0.0.0",
	};
	char out[MESH_ALLOW_TEXT], to[MESH_TO_MAX + 16], why[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(to, sizeof(to), "external:%s", bad[i]);
		why[0] = 0;
		if (mesh_to_norm(to, out, why, sizeof(why)))
			fail_msg("to %s accepted as %s", to, out);
		assert_non_null(strstr(why, "to: external:"));
		assert_null(strchr(why, '\n'));
		why[0] = 0;
		if (mesh_allow_norm(bad[i], out, sizeof(out), why, sizeof(why)))
			fail_msg("allow %s accepted as %s", bad[i], out);
		assert_non_null(strstr(why, "allow entry \""));
		assert_null(strchr(why, '\n'));
	}
	assert_false(mesh_to_norm("external:10.0.5", out, why, sizeof(why)));
	assert_non_null(strstr(why, "\"10.0.5\" is not an address block: IPv4 is four dotted "
				    "numbers 0-255"));
	assert_false(mesh_allow_norm("10.0.0.0/8, 10.5/8", out, sizeof(out), why, sizeof(why)));
	assert_non_null(strstr(why, "allow entry \"10.5/8\" is not an address block"));
	/* whole ones, and names with digits elsewhere, stay fine */
	assert_true(mesh_to_norm("external:10.0.5.0/24", out, why, sizeof(why)));
	assert_string_equal(out, "external:10.0.5.0/24");
	assert_true(mesh_to_norm("external:0.0.0.0/0", out, why, sizeof(why)));
	assert_true(mesh_to_norm("external:10.db.internal", out, why, sizeof(why)));
	assert_true(mesh_to_norm("external:*.10x.example", out, why, sizeof(why)));
	assert_true(mesh_allow_norm("10.0.5.20, 1.2.3.0/24", out, sizeof(out), why, sizeof(why)));
	assert_string_equal(out, "10.0.5.20/32,1.2.3.0/24");
}

static void test_malformed(void **state)
{
	char err[256], big[64 * 1024];
	size_t o;

	assert_string_equal(refused("[]", err, sizeof(err)), "");
	assert_non_null(strstr(refused("{}", err, sizeof(err)), "not an array"));
	assert_non_null(strstr(refused("[1]", err, sizeof(err)), "not an object"));
	assert_non_null(strstr(
	    refused("[{\"action\": \"allow\", \"from\": \"*\", \"to\": \"*\"}]", err, sizeof(err)),
	    "\"id\""));
	assert_non_null(
	    strstr(refused("[{\"id\": 0, \"action\": \"allow\", \"from\": \"*\", \"to\": "
			   "\"*\"}]",
			   err, sizeof(err)),
		   "\"id\""));
	assert_non_null(strstr(refused("[{\"id\": 1, \"action\": \"maybe\", \"from\": \"*\", "
				       "\"to\": \"*\"}]",
				       err, sizeof(err)),
			       "\"action\""));
	assert_non_null(
	    strstr(refused("[{\"id\": 1, \"action\": \"allow\", \"to\": \"*\"}]", err, sizeof(err)),
		   "\"from\""));
	assert_non_null(
	    strstr(refused("[{\"id\": 1, \"action\": \"allow\", \"from\": \"*\", \"to\": "
			   "\"nowhere\"}]",
			   err, sizeof(err)),
		   "to:"));
	assert_non_null(
	    strstr(refused("[{\"id\": 1, \"action\": \"allow\", \"from\": \"*\", \"to\": "
			   "\"*\", \"port_lo\": 9, \"port_hi\": 8}]",
			   err, sizeof(err)),
		   "port_lo"));
	assert_non_null(
	    strstr(refused("[{\"id\": 1, \"action\": \"allow\", \"from\": \"*\", \"to\": "
			   "\"*\", \"port_lo\": 0, \"port_hi\": 8}]",
			   err, sizeof(err)),
		   "port_lo"));
	assert_non_null(
	    strstr(refused("[{\"id\": 1, \"action\": \"allow\", \"from\": \"*\", \"to\": "
			   "\"*\", \"port_lo\": 1, \"port_hi\": 65536}]",
			   err, sizeof(err)),
		   "port_lo"));
	/* at most MESH_RULES_MAX rules */
	o = (size_t)snprintf(big, sizeof(big), "[");
	for (int i = 0; i <= MESH_RULES_MAX; i++)
		o += (size_t)snprintf(
		    big + o, sizeof(big) - o,
		    "%s{\"id\":%d,\"action\":\"deny\",\"from\":\"*\",\"to\":\"*\"}", i ? "," : "",
		    i + 1);
	snprintf(big + o, sizeof(big) - o, "]");
	assert_non_null(strstr(refused(big, err, sizeof(err)), "at most"));
	/* no array at all: no rules */
	{
		struct mesh_table *t = mesh_table_from_json(NULL, err, sizeof(err));

		assert_non_null(t);
		assert_int_equal(mesh_table_rules(t), 0);
		mesh_table_put(t);
	}
}

static void test_allow_list(void **state)
{
	struct mesh_table *t = table("[]");
	char out[MESH_ALLOW_TEXT], why[256];
	uint8_t a[16];

	/* NULL table or empty list: nothing external */
	addr("127.0.0.1", a);
	assert_false(mesh_external_allowed(NULL, "localhost", a));
	assert_false(mesh_external_allowed(t, "localhost", a));

	assert_true(mesh_allow_norm(" 127.0.0.1/32 , *.Example.com,db.internal,2001:db8::/32 ", out,
				    sizeof(out), why, sizeof(why)));
	assert_string_equal(out, "127.0.0.1/32,*.example.com,db.internal,2001:db8::/32");
	assert_true(mesh_allow_norm("", out, sizeof(out), why, sizeof(why)));
	assert_string_equal(out, "");
	assert_true(mesh_allow_norm("  ", out, sizeof(out), why, sizeof(why)));
	assert_false(mesh_allow_norm("10.0.0.0/8,,x.com", out, sizeof(out), why, sizeof(why)));
	assert_non_null(strstr(why, "empty"));
	assert_false(mesh_allow_norm("10.0.0.1/8", out, sizeof(out), why, sizeof(why)));
	assert_false(mesh_allow_norm("bad_name!", out, sizeof(out), why, sizeof(why)));
	assert_non_null(strstr(why, "bad_name!"));

	assert_false(mesh_table_set_allow(t, "x..y", why, sizeof(why)));
	assert_true(
	    mesh_table_set_allow(t, "127.0.0.1/32, *.example.com, db.internal", why, sizeof(why)));
	assert_true(mesh_external_allowed(t, NULL, a));
	assert_true(mesh_external_allowed(t, "127.0.0.1", a));
	addr("127.0.0.2", a);
	assert_false(mesh_external_allowed(t, "127.0.0.2", a));
	assert_true(mesh_external_allowed(t, "WWW.example.com", NULL));
	assert_false(mesh_external_allowed(t, "example.com", NULL));
	assert_true(mesh_external_allowed(t, "db.internal", a));
	/* an IP literal is an address, never a name for the patterns (which never end in a
	 * number) */
	assert_false(mesh_table_set_allow(t, "*.0.2, 127.0.0.1/32", why, sizeof(why)));
	assert_non_null(strstr(why, "\"*.0.2\": a hostname pattern's last label is not a number"));
	assert_true(mesh_table_set_allow(t, "*.0x2, 127.0.0.1/32", why, sizeof(why)) == false);
	assert_true(mesh_table_set_allow(t, "192.0.0.0/8, 127.0.0.1/32", why, sizeof(why)));
	addr("192.0.2.9", a);
	assert_true(mesh_external_allowed(t, "192.0.2", a));
	assert_false(mesh_external_allowed(t, "192.0.2", NULL));
	assert_false(mesh_external_allowed(t, "1.0x2", NULL));
	assert_true(mesh_table_set_allow(t, "*.example.com", why, sizeof(why)));
	assert_true(mesh_external_allowed(t, "a.example.com", NULL));
	assert_false(mesh_external_allowed(t, "a.example.com.1", NULL));
	assert_true(
	    mesh_table_set_allow(t, "127.0.0.1/32, *.example.com, db.internal", why, sizeof(why)));
	assert_false(mesh_external_allowed(t, "x.db.internal", NULL));
	addr("::1", a);
	assert_false(mesh_external_allowed(t, NULL, a));
	/* set again: replaces */
	assert_true(mesh_table_set_allow(t, "::1", why, sizeof(why)));
	assert_true(mesh_external_allowed(t, NULL, a));
	assert_false(mesh_external_allowed(t, "www.example.com", NULL));
	assert_true(mesh_table_set_allow(t, "", why, sizeof(why)));
	assert_false(mesh_external_allowed(t, NULL, a));
	mesh_table_put(t);
}

static void test_glob(void **state)
{
	assert_true(mesh_glob("*", ""));
	assert_true(mesh_glob("*", "abc"));
	assert_true(mesh_glob("a*c", "ABBC"));
	assert_true(mesh_glob("a*b*c", "axxbyyc"));
	assert_false(mesh_glob("a*b*c", "axxbyy"));
	assert_false(mesh_glob("abc", "abcd"));
	assert_false(mesh_glob("abc", NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_from_kinds),
	    cmocka_unit_test(test_to_kinds),
	    cmocka_unit_test(test_ports_and_order),
	    cmocka_unit_test(test_counters),
	    cmocka_unit_test(test_texts),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_allow_list),
	    cmocka_unit_test(test_glob),
	    cmocka_unit_test(test_group_not_tunnel),
	    cmocka_unit_test(test_partial_addresses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for common/mesh.c: the mesh policy table relayd builds from
 * controld's mesh_policy push, the decision its workers make, and the [socks]
 * allow list of the config. The input is the rules' JSON, then optionally a
 * newline and a query's text: a destination name (also used as the opener's
 * and the destination's ids), whose first 16 bytes are the address too, and
 * which is tried as an allow list. Checks: a refused table gives a one-line
 * printable reason; an accepted one decides every destination kind with a
 * verdict and a rule id it holds (0 only for the default, whose verdict is
 * the documented one); its counters add up to the decisions made; the rule
 * texts' canonical forms are fixed points; an accepted allow list's
 * canonical text is accepted again as itself.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_mesh.c common/mesh.c common/cidr.c common/domain.c -ljansson
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_mesh: %s\n", what);
	abort();
}

static void check_reason(const char *why, size_t whylen)
{
	size_t n = strnlen(why, whylen);

	if (n == 0 || n == whylen)
		fail("refusal without a terminated reason");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
			fail("reason holds a byte that is not printable ASCII");
}

struct sums {
	uint64_t total;
};

static void sum_cb(void *arg, uint32_t rule, uint64_t allowed, uint64_t denied)
{
	((struct sums *)arg)->total += allowed + denied;
}

static bool holds_rule(json_t *a, uint32_t id)
{
	json_t *o;
	size_t i;

	json_array_foreach(a, i, o)
	{
		if (json_integer_value(json_object_get(o, "id")) == (json_int_t)id)
			return true;
	}
	return false;
}

/* the canonical text of every rule's from/to is its own canonical text */
static void check_texts(json_t *a)
{
	char c1[MESH_TO_MAX], c2[MESH_TO_MAX], why[256];
	json_t *o;
	size_t i;

	json_array_foreach(a, i, o)
	{
		const char *from = json_string_value(json_object_get(o, "from"));
		const char *to = json_string_value(json_object_get(o, "to"));

		if (!mesh_from_norm(from, c1, why, sizeof(why)))
			fail("an accepted rule's from is refused");
		if (!mesh_from_norm(c1, c2, why, sizeof(why)) || strcmp(c1, c2))
			fail("from's canonical text is not a fixed point");
		if (!mesh_to_norm(to, c1, why, sizeof(why)))
			fail("an accepted rule's to is refused");
		if (!mesh_to_norm(c1, c2, why, sizeof(why)) || strcmp(c1, c2))
			fail("to's canonical text is not a fixed point");
	}
}

static void check_allow(const char *text)
{
	static char out[MESH_ALLOW_TEXT], again[MESH_ALLOW_TEXT];
	char why[256];

	memset(why, 0, sizeof(why));
	if (!mesh_allow_norm(text, out, sizeof(out), why, sizeof(why))) {
		check_reason(why, sizeof(why));
		return;
	}
	if (!mesh_allow_norm(out, again, sizeof(again), why, sizeof(why)) || strcmp(out, again))
		fail("an allow list's canonical text is not a fixed point");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t jlen = nl ? (size_t)(nl - data) : size, qlen = nl ? size - jlen - 1 : 0;
	static const enum mesh_dst kinds[] = {MESH_DST_TUNNEL, MESH_DST_DOMAIN, MESH_DST_EXTERNAL};
	struct mesh_table *t;
	struct sums s = {0};
	uint8_t addr[16] = {0};
	char *name, why[256];
	uint64_t decided = 0;
	json_t *a;

	name = malloc(qlen + 1);
	if (!name)
		return 0;
	memcpy(name, nl ? nl + 1 : data, qlen);
	name[qlen] = 0;
	memcpy(addr, name, qlen < 16 ? qlen : 16);
	check_allow(name);

	a = json_loadb((const char *)data, jlen, JSON_DECODE_ANY, NULL);
	memset(why, 0, sizeof(why));
	t = mesh_table_from_json(a, why, sizeof(why));
	if (!t) {
		check_reason(why, sizeof(why));
		goto out;
	}
	if (a)
		check_texts(a);
	mesh_table_set_allow(t, name, why, sizeof(why));
	mesh_external_allowed(t, name, addr);
	for (unsigned k = 0; k < 3; k++)
		for (int role = 0; role < 2; role++) {
			struct mesh_query q = {.from_id = name,
					       .from_group = "g",
					       .from_mesh_role = role,
					       .kind = kinds[k],
					       .to_id = name,
					       .to_group = name,
					       .name = name,
					       .addr = k == 2 ? addr : NULL,
					       .port = qlen ? (uint16_t)(data[size - 1] * 257) : 0};
			uint32_t rule = 12345;
			enum mesh_verdict v = mesh_decide(t, &q, &rule);

			decided++;
			if (v != MESH_ALLOW && v != MESH_DENY)
				fail("a verdict that is neither allow nor deny");
			if (rule && !holds_rule(a, rule))
				fail("a deciding rule the table does not hold");
			if (!rule &&
			    v != (kinds[k] == MESH_DST_EXTERNAL || role ? MESH_ALLOW : MESH_DENY))
				fail("the default's verdict is not the documented one");
		}
	mesh_table_counts(t, sum_cb, &s);
	if (s.total != decided)
		fail("the counters do not add up to the decisions");
	mesh_table_put(t);
out:
	json_decref(a);
	free(name);
	return 0;
}

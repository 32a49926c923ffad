// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for common/supmsg.c: a client's support_request,
 * support_end and support_ls as relayd checks them where they enter, and one
 * session of a support_list as relayd and the client check it. The first byte
 * picks which (0 request, 1 end, 2 ls, 3 a list entry), the rest is the JSON
 * text a peer sends. Beyond "never crash": an accepted message holds only the
 * members controld's message takes, each within the limits of link_proto.h
 * (expires 60..604800, a reason of at most 200 printable characters, 1-8
 * distinct service names of the rule alphabet, a 64-digit lower-case hex hash;
 * an end's session id of the shape); a refusal is one printable line naming its
 * member; an entry holds only the known members, within theirs; and both
 * checks take what they gave again unchanged.
 *
 *   see run.sh for the link line
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link_proto.h"
#include "support.h"
#include "supmsg.h"
#include "valid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_supmsg: %s\n", what);
	abort();
}

static void only(const json_t *o, const char *const *keys)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)o, k, v)
	{
		size_t i;

		for (i = 0; keys[i] && strcmp(keys[i], k); i++)
			;
		if (!keys[i])
			fail("a member the message does not know");
	}
}

static bool hex64(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!strchr("0123456789abcdef", s[i]))
			return false;
	return i == 64;
}

static void names_ok(const json_t *a, size_t min)
{
	json_t *v;
	size_t i, j;

	if (!json_is_array(a) || json_array_size(a) < min ||
	    json_array_size(a) > LINK_SUPPORT_SERVICES)
		fail("services out of bounds");
	json_array_foreach(a, i, v)
	{
		if (!json_is_string(v) ||
		    !valid_str(json_string_value(v), VALID_NAME, LINK_SUPPORT_NAME_MAX))
			fail("a service name out of its alphabet");
		for (j = 0; min && j < i; j++)
			if (json_equal(json_array_get(a, j), v))
				fail("a service named twice");
	}
}

static void check_msg(const json_t *m, const char *type)
{
	static const char *const keys[] = {"expires",	"reason", "services",
					   "auth_hash", "id",	  NULL};
	char why[200] = "";
	json_t *o = supmsg_check(m, type, why, sizeof(why)), *again;
	const char *s;

	if (!o) {
		if (!why[0] || !strchr(why, ':'))
			fail("a refusal that names no member");
		for (size_t i = 0; why[i]; i++)
			if ((unsigned char)why[i] < 0x20 || why[i] == 0x7f)
				fail("a reason with a control character");
		return;
	}
	only(o, keys);
	if ((s = json_string_value(json_object_get(o, "id"))) && !sup_id_valid(s))
		fail("an id of the wrong shape");
	if (json_object_get(o, "id") && !s)
		fail("an id that is not a string");
	if (!strcmp(type, LINK_MSG_SUPPORT_END) != !!s)
		fail("an id other than an end's, or an end without one");
	if (!strcmp(type, LINK_MSG_SUPPORT_REQUEST)) {
		json_int_t e = json_integer_value(json_object_get(o, "expires"));

		if (e < LINK_SUPPORT_EXPIRES_MIN || e > LINK_SUPPORT_EXPIRES_MAX)
			fail("expires out of bounds");
		s = json_string_value(json_object_get(o, "reason"));
		if (!s || !valid_text_chars(s, strlen(s), LINK_SUPPORT_REASON_MAX))
			fail("a reason out of bounds");
		names_ok(json_object_get(o, "services"), 1);
		s = json_string_value(json_object_get(o, "auth_hash"));
		if (!s || !hex64(s))
			fail("an auth_hash that is not 64 lower-case hex digits");
	} else if (json_object_size(o) != !strcmp(type, LINK_MSG_SUPPORT_END)) {
		fail("members an end or ls does not take");
	}
	again = supmsg_check(o, type, why, sizeof(why));
	if (!again || !json_equal(again, o))
		fail("what was accepted is not accepted again unchanged");
	json_decref(again);
	json_decref(o);
}

static void check_entry(const json_t *m)
{
	static const char *const keys[] = {"id",	  "state",	 "reason",
					   "services",	  "created_at",	 "expires_at",
					   "approved_by", "connections", NULL};
	json_t *o = supmsg_entry(m), *again, *v;
	const char *s;

	if (!o)
		return;
	only(o, keys);
	if (json_object_size(o) != 8)
		fail("an entry without all its members");
	if (!sup_id_valid(json_string_value(json_object_get(o, "id"))))
		fail("an entry's id of the wrong shape");
	s = json_string_value(json_object_get(o, "reason"));
	if (!s || !valid_text_chars(s, strlen(s), LINK_SUPPORT_REASON_MAX))
		fail("an entry's reason out of bounds");
	names_ok(json_object_get(o, "services"), 0);
	v = json_object_get(o, "approved_by");
	if (!json_is_null(v) && !valid_str(json_string_value(v), VALID_TEXT, LINK_SUPPORT_WHY_MAX))
		fail("an approver out of bounds");
	again = supmsg_entry(o);
	if (!again || !json_equal(again, o))
		fail("an entry is not taken again unchanged");
	json_decref(again);
	json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const types[] = {LINK_MSG_SUPPORT_REQUEST, LINK_MSG_SUPPORT_END,
					    LINK_MSG_SUPPORT_LS};
	json_t *m;

	if (size < 1)
		return 0;
	m = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(m)) {
		json_decref(m);
		return 0;
	}
	if (data[0] % 4 < 3)
		check_msg(m, types[data[0] % 4]);
	else
		check_entry(m);
	json_decref(m);
	return 0;
}

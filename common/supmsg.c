// SPDX-License-Identifier: Apache-2.0
/* Support sessions on the control link: the checks of supmsg.h. */
#include "supmsg.h"

#include <stdio.h>
#include <string.h>

#include "link_proto.h"
#include "support.h"
#include "valid.h"

/* Exactly 64 lower-case hex digits (an auth_hash). */
static bool hex64(const char *s)
{
	size_t i;

	for (i = 0; s && s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s && i == 64;
}

static const char *str_of(const json_t *m, const char *key)
{
	const json_t *v = json_object_get(m, key);

	/* a string with a NUL inside is none (the JSON reader refuses one anyway) */
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return NULL;
	return json_string_value(v);
}

static json_t *fail(char *why, size_t whylen, const char *what)
{
	snprintf(why, whylen, "%s", what);
	return NULL;
}

json_t *supmsg_check(const json_t *m, const char *type, char *why, size_t whylen)
{
	const json_t *services, *reason, *v;
	const char *id = str_of(m, "id"), *hash = str_of(m, "auth_hash");
	json_int_t expires;
	json_t *o;
	size_t i, j;

	if (!type || (strcmp(type, LINK_MSG_SUPPORT_REQUEST) &&
		      strcmp(type, LINK_MSG_SUPPORT_END) && strcmp(type, LINK_MSG_SUPPORT_LS)))
		return fail(why, whylen, "type: not a support request");
	if (!strcmp(type, LINK_MSG_SUPPORT_LS))
		return json_object();
	if (!strcmp(type, LINK_MSG_SUPPORT_END)) {
		if (!sup_id_valid(id))
			return fail(why, whylen,
				    "bad support session id: \"sup-\" and 10 of [a-z0-9]");
		return json_pack("{s:s}", "id", id);
	}
	v = json_object_get(m, "expires");
	expires = json_is_integer(v) ? json_integer_value(v) : 0;
	if (expires < LINK_SUPPORT_EXPIRES_MIN || expires > LINK_SUPPORT_EXPIRES_MAX) {
		snprintf(why, whylen, "bad expires: %d to %d seconds (1 minute to 7 days)",
			 LINK_SUPPORT_EXPIRES_MIN, LINK_SUPPORT_EXPIRES_MAX);
		return NULL;
	}
	reason = json_object_get(m, "reason");
	if (reason && !(json_is_string(reason) &&
			valid_text_chars(json_string_value(reason), json_string_length(reason),
					 LINK_SUPPORT_REASON_MAX))) {
		snprintf(why, whylen,
			 "bad reason: at most %d characters of UTF-8 text without control "
			 "characters",
			 LINK_SUPPORT_REASON_MAX);
		return NULL;
	}
	services = json_object_get(m, "services");
	if (!json_is_array(services) || json_array_size(services) < 1 ||
	    json_array_size(services) > LINK_SUPPORT_SERVICES) {
		snprintf(why, whylen, "bad services: an array of 1 to %d service names",
			 LINK_SUPPORT_SERVICES);
		return NULL;
	}
	json_array_foreach(services, i, v)
	{
		if (!json_is_string(v) ||
		    !valid_str(json_string_value(v), VALID_NAME, LINK_SUPPORT_NAME_MAX) ||
		    strlen(json_string_value(v)) != json_string_length(v)) {
			snprintf(why, whylen, "bad service name: 1-%d characters: %s",
				 LINK_SUPPORT_NAME_MAX, valid_alphabet(VALID_NAME));
			return NULL;
		}
		for (j = 0; j < i; j++)
			if (!strcmp(json_string_value(json_array_get(services, j)),
				    json_string_value(v))) {
				snprintf(why, whylen, "services: \"%s\" is named twice",
					 json_string_value(v));
				return NULL;
			}
	}
	if (!hex64(hash))
		return fail(why, whylen, "bad auth_hash: 64 lower-case hex digits");
	o = json_pack("{s:I, s:s, s:O, s:s}", "expires", expires, "reason",
		      reason ? json_string_value(reason) : "", "services", services, "auth_hash",
		      hash);
	if (!o)
		return fail(why, whylen, "out of memory");
	return o;
}

json_t *supmsg_entry(const json_t *s)
{
	static const char *const states[] = {"pending", "approved", "ended", "expired"};
	static const char *const ints[] = {"created_at", "expires_at", "connections"};
	const char *id = str_of(s, "id"), *state = str_of(s, "state");
	const char *reason = str_of(s, "reason"), *by = str_of(s, "approved_by");
	json_t *o, *names, *v;
	bool known = false;
	size_t i;

	for (i = 0; state && i < sizeof(states) / sizeof(states[0]); i++)
		known |= !strcmp(state, states[i]);
	if (!sup_id_valid(id) || !known)
		return NULL;
	if (!reason || !valid_text_chars(reason, strlen(reason), LINK_SUPPORT_REASON_MAX))
		reason = "";
	names = json_array();
	json_array_foreach(json_object_get(s, "services"), i, v)
	{
		if (json_is_string(v) && json_array_size(names) < LINK_SUPPORT_SERVICES &&
		    strlen(json_string_value(v)) == json_string_length(v) &&
		    valid_str(json_string_value(v), VALID_NAME, LINK_SUPPORT_NAME_MAX))
			json_array_append(names, v);
	}
	o = json_pack("{s:s, s:s, s:s, s:o}", "id", id, "state", state, "reason", reason,
		      "services", names);
	for (i = 0; o && i < sizeof(ints) / sizeof(ints[0]); i++) {
		v = json_object_get(s, ints[i]);
		json_object_set_new(o, ints[i],
				    json_integer(json_is_integer(v) && json_integer_value(v) >= 0
						     ? json_integer_value(v)
						     : 0));
	}
	if (o)
		json_object_set_new(o, "approved_by",
				    by && valid_str(by, VALID_TEXT, LINK_SUPPORT_WHY_MAX)
					? json_string(by)
					: json_null());
	return o;
}

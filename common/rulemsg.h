/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Remote rule operations (issue 11, item 2): one checker for the rule an
 * operator asks a device to add or remove, used where it enters at every
 * boundary: the admin API (controld), relay.sock's rule_push (relayd) and the
 * link's rule_push (the client), and for the answer (rule_result) on its way
 * back. The members are those of the client's rule sections ([tcp.NAME],
 * [http.NAME], config/cfg.h), flat:
 *
 *   action  "add" | "rm"
 *   name    1..LINK_RULE_MAX of [A-Za-z0-9_-]
 *   add, kind "tcp":  to (HOST:PORT, port 1..65535, at most 255 bytes),
 *                     port (0..65535, 0 = any), proxy_protocol ("v1" | "v2")
 *   add, kind "http": domain (a name or "*.NAME", normalised lowercase),
 *                     exactly one of to (HOST:PORT) and webroot (an absolute
 *                     path of printable UTF-8, at most RULEMSG_PATH_MAX bytes,
 *                     no "." or ".." segment), tls_passthrough, redirect_https
 *                     (booleans), host_header (cfg_valid_host_header),
 *                     basic_auth ("USER:HASH" as nave stores it,
 *                     cfg_valid_basic_auth), proxy_protocol ("v1" | "v2"), with
 *                     the combinations cfg_http_rule_check allows
 *   rm:     name only (kind, when given, must be tcp or http)
 *
 * Anything else (an unknown member, a wrong type) is refused with a one-line
 * reason that names the member.
 */
#ifndef NAVE_RULEMSG_H
#define NAVE_RULEMSG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define RULEMSG_PATH_MAX   511 /* webroot bytes (CFG_PATH_MAX - 1) */
#define RULEMSG_REASON_MAX 200 /* a result's reason: printable UTF-8 */
#define RULEMSG_OP_MAX	   ((long long)1 << 53)

/*
 * Checks the rule operation in m and returns a new object holding only its
 * members, normalised (action, kind, name, ...; booleans only when true,
 * strings only when set), or NULL with "MEMBER: what is wrong" in err.
 * action: the operation when the caller knows it (the API's POST is "add",
 * DELETE "rm"; m must then carry no "action"), or NULL to read m's "action".
 * Members in allow (NULL-terminated, may be NULL) are skipped: a message's
 * "type", "op", "tunnel_id".
 */
json_t *rulemsg_norm(const json_t *m, const char *action, const char *const *allow, char *err,
		     size_t errlen);

/*
 * A rule_result {op, ok, port?, route?, reason?}: op 1..RULEMSG_OP_MAX, ok a
 * boolean, port and route 1..65535, reason 1..RULEMSG_REASON_MAX bytes of
 * printable UTF-8 (required when ok is false). Other members are ignored.
 */
bool rulemsg_result_check(const json_t *m, char *err, size_t errlen);

/* The op member of a push or result: 1..RULEMSG_OP_MAX, else 0. */
long long rulemsg_op(const json_t *m);

#endif

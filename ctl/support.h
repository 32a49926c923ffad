/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Support sessions in controld: relay.sock's support_* messages (common/ctl_proto.h), the
 * rate limits of supporters' connects, the live connections of each session, the kills
 * (support_kill) when a session leaves the approved state, and the JSON the admin API and
 * relayd are given. The sessions and their audit trail are in the store (store.h,
 * store_support_*). Everything runs on controld's one thread.
 */
#ifndef NAVE_SUPPORT_CTL_H
#define NAVE_SUPPORT_CTL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct store_support;
struct relaylink;
struct support;

#define SUPPORT_SRC_PER_MIN	10	    /* connect attempts a minute from one source address */
#define SUPPORT_SESSION_PER_MIN 30	    /* connect attempts a minute for one session */
#define SUPPORT_CONNS_MAX	8	    /* live connections of one session */
#define SUPPORT_LS_MAX		16	    /* sessions in a support_list */
#define SUPPORT_KILL_AGAIN_S	(7 * 86400) /* a new relayd is told of sessions over since */

/* 0 or -ENOMEM. */
int support_open(struct support **out, struct store *st);
void support_close(struct support *sp);

/*
 * A support_* message of relayd (m's type is one of them): 0, or -EBADMSG with why
 * (whylen bytes) when it is malformed (the caller closes the connection).
 */
int support_handle(struct support *sp, struct relaylink *rl, const json_t *m, char *why,
		   size_t whylen);
/*
 * Once a second at most (call it every turn of the loop): sessions that expired get their
 * expiry handled and a support_kill; a relayd new since the last call is told of every
 * session over in the last SUPPORT_KILL_AGAIN_S, and the live connections start at 0.
 */
void support_tick(struct support *sp, struct relaylink *rl);
/* Pushes support_kill {id, why}: 0, or -ENOTCONN (no relayd: it is told at its hello). */
int support_kill(struct relaylink *rl, const char *id, const char *why);
/* The live connections of session id (0 when sp is NULL). */
unsigned support_live(const struct support *sp, const char *id);
/*
 * The actor of an API caller for the audit trail from its name in the API's log lines:
 * "local" (control.sock), "user NAME" -> "user:NAME", "API key ID" -> "apikey:ID",
 * "cert NAME" or "cert:NAME" -> "cert:NAME"; anything else as is.
 */
void support_actor(const char *who, char *out, size_t len);
/*
 * A session as the API and the support_list show it: {id, tunnel_id, state, reason,
 * services, created_at, expires_at, approved_by, approved_at, ended_by, ended_at,
 * connections} (never its auth_hash); NULL when out of memory.
 */
json_t *support_json(const struct store_support *r, unsigned live);
/* An audit record's detail as stored (JSON text) as a value: an object, or its text. */
json_t *support_detail_json(const char *detail);

#endif

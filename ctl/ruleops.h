/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Remote rule operations (navectl tunnels rules, ctl/API.md): a queue per
 * tunnel in the store (table rule_ops), pushed to the tunnel's client through
 * relayd one at a time and in order while it is online (ctl_proto.h
 * rule_push / rule_result), kept pending while it is offline. Every function
 * runs on controld's one thread.
 */
#ifndef NAVE_RULEOPS_H
#define NAVE_RULEOPS_H

#include <jansson.h>
#include <stddef.h>

struct store;
struct relaylink;

#define RULEOPS_PENDING_MAX 64 /* pending operations per tunnel; past it 409 */
#define RULEOPS_DONE_KEPT   64 /* applied and failed ones kept per tunnel (the newest) */
#define RULEOPS_ANSWER_S    30 /* a pushed operation unanswered this long fails */

/*
 * Queues op (a rulemsg_norm result, not consumed) for the tunnel and pushes
 * it when it is the tunnel's next: 0 with *out the operation's record (as
 * GET .../rules lists it), -ENOENT (no such tunnel), -ENOSPC (the queue is
 * full), or -EIO.
 */
int ruleops_queue(struct store *st, struct relaylink *rl, const char *tunnel_id, const json_t *op,
		  json_t **out);

/* GET .../rules: {tunnel_id, online, rules, ops, pending, pending_max}; -ENOENT, -EIO. */
int ruleops_list(struct store *st, const char *tunnel_id, json_t **out);

/* Pushes the tunnel's next operation if it is online and none is in flight; NULL: every tunnel. */
void ruleops_pump(struct store *st, struct relaylink *rl, const char *tunnel_id);
/* The tunnel's (NULL: every) operation in flight is to be pushed again (a link or relayd lost). */
void ruleops_unsend(struct store *st, const char *tunnel_id);
/* relay.sock's rule_result: 0 (an answer for nothing in flight is logged and ignored), or
 * -EBADMSG with why (WHY_LEN bytes) for a malformed one. */
int ruleops_result(struct store *st, struct relaylink *rl, const json_t *m, char *why,
		   size_t whylen);
/* Fails operations pushed RULEOPS_ANSWER_S ago and not answered; cheap, call often. */
void ruleops_tick(struct store *st, struct relaylink *rl);

#endif

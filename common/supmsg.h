/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Support sessions on the control link (link_proto.h "Support sessions"): the
 * checks of what a client sends (relayd, where it enters) and of one session of
 * a support_list (relayd on its way from controld, the client on its way in).
 * Both give a new object holding only the members they know, each within its
 * limits, and are idempotent: what they give is taken again unchanged.
 */
#ifndef NAVE_SUPMSG_H
#define NAVE_SUPMSG_H

#include <jansson.h>
#include <stddef.h>

/*
 * A client's support_request, support_end or support_ls (type): the members for
 * controld's message of the same name (ctl_proto.h) without its type,
 * tunnel_id and source: {expires, reason, services, auth_hash}, {id} or {}.
 * NULL with a one-line reason in why (the member it names) when a member is
 * not within its limits, or type is none of the three.
 */
json_t *supmsg_check(const json_t *m, const char *type, char *why, size_t whylen);

/*
 * One session of a support_list: {id, state, reason, services, created_at,
 * expires_at, approved_by, connections}; NULL when its id or state is not one.
 * A reason or approver out of bounds becomes "" or null, services outside
 * the alphabet are left out, numbers that are not non-negative integers 0.
 */
json_t *supmsg_entry(const json_t *s);

#endif

// SPDX-License-Identifier: Apache-2.0
/*
 * The admin API's support sessions (ctl/API.md "Support sessions"): the list, one session
 * with its audit trail, the operator's approval and end (a denial when it was pending).
 * The approver is the caller as the API knows it (support_actor); an end is pushed to
 * relayd as support_kill at once.
 */
#include "api_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/relaylink.h"
#include "ctl/store.h"
#include "ctl/support.h"
#include "log.h"
#include "util.h"

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct sup_walk {
	struct call *c;
	json_t *items;
};

static int sup_item(const struct store_support *r, void *arg)
{
	struct sup_walk *w = arg;
	json_t *o = support_json(r, support_live(relaylink_support(w->c->a->rl), r->id));

	return o && !json_array_append_new(w->items, o) ? 0 : -ENOMEM;
}

int h_support_list(struct call *c)
{
	struct sup_walk w = {c, NULL};
	const char *state, *tunnel;
	long long page;
	int64_t total = 0;
	int st = -1, ret;

	ret = get_page(c, &page);
	if (!ret)
		ret = query_arg(c, "tunnel", VALID_ID, STORE_TUNNEL_ID_LEN - 1, &tunnel);
	if (ret)
		return ret;
	state = query(c, "state");
	if (state && *state && (st = store_support_state_of(state)) < 0)
		return fail(c, MHD_HTTP_BAD_REQUEST,
			    "invalid state (pending, approved, ended or expired)");
	w.items = json_array();
	if (!w.items || store_support_list(c->a->st, st, tunnel, wall_ms(), (page - 1) * PER_PAGE,
					   PER_PAGE, sup_item, &w, &total)) {
		json_decref(w.items);
		return internal(c);
	}
	return list_reply(c, w.items, page, total);
}

static int audit_item(const struct store_support_audit *a, void *arg)
{
	json_t *o = json_pack("{s:I, s:s, s:s, s:o}", "at", (json_int_t)a->at, "event", a->event,
			      "actor", a->actor, "detail", support_detail_json(a->detail));

	return o && !json_array_append_new(arg, o) ? 0 : -ENOMEM;
}

/* The session as the answer, with its audit trail when audit is set; 200, or 500. */
static int session_reply(struct call *c, const struct store_support *r, bool audit)
{
	json_t *trail = NULL;

	c->out = support_json(r, support_live(relaylink_support(c->a->rl), r->id));
	if (!c->out)
		return internal(c);
	if (!audit)
		return MHD_HTTP_OK;
	trail = json_array();
	if (!trail || store_support_audit_list(c->a->st, r->id, -1, audit_item, trail, NULL) ||
	    json_object_set_new(c->out, "audit", trail)) {
		json_decref(c->out);
		c->out = NULL;
		return internal(c);
	}
	return MHD_HTTP_OK;
}

int h_support_show(struct call *c)
{
	struct store_support r;
	int ret = store_support_get(c->a->st, c->id, wall_ms(), &r);

	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "no support session %s", c->id);
	if (ret)
		return internal(c);
	return session_reply(c, &r, true);
}

/* A refusal of the store as the answer: 404 for an unknown session, else 409. */
static int refusal(struct call *c, int ret, const char *err)
{
	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "%s", err);
	if (ret == -EALREADY || ret == -ETIME || ret == -ESRCH)
		return fail(c, MHD_HTTP_CONFLICT, "%s", err);
	return internal(c);
}

int h_support_approve(struct call *c)
{
	char actor[STORE_SUP_ACTOR_LEN], err[256];
	struct store_support r;
	int ret;

	support_actor(c->who, actor, sizeof(actor));
	ret = store_support_approve(c->a->st, c->id, actor, wall_ms(), &r, err, sizeof(err));
	if (ret)
		return refusal(c, ret, err);
	log_info("api: support session %s of tunnel %s approved by %s (until %lld)", r.id,
		 r.tunnel_id, c->who, (long long)r.expires_at);
	return session_reply(c, &r, false);
}

int h_support_end(struct call *c)
{
	char actor[STORE_SUP_ACTOR_LEN], err[256];
	struct store_support r;
	bool denied = false;
	int ret;

	support_actor(c->who, actor, sizeof(actor));
	ret = store_support_end(c->a->st, c->id, NULL, actor, wall_ms(), &r, &denied, err,
				sizeof(err));
	if (ret)
		return refusal(c, ret, err);
	log_info("api: support session %s of tunnel %s %s by %s", r.id, r.tunnel_id,
		 denied ? "denied" : "ended", c->who);
	/* relayd ends its links now; one that is away is told when it says hello */
	support_kill(c->a->rl, r.id, denied ? "denied by the operator" : "ended by the operator");
	return session_reply(c, &r, false);
}

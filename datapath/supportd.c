// SPDX-License-Identifier: Apache-2.0
/*
 * A supporter's links (link_proto.h "Support streams"): a TLS link to the
 * tunnel port whose HELLO said mode "support", allowed by controld
 * (support_connect; the control thread checked every field first), becomes
 * one stream to the session's device and closes when that ends.
 *
 * The control thread posts MB_SUPPORT_JOIN to the link's worker: the link
 * gets its WELCOME, leaves the control state and waits in LS_OPEN while
 * meshopen.c joins it to the device like a mesh stream (socketpair into the
 * device's home worker, BIND with LINK_BIND_SUPPORT); the OPENED frame tells
 * the supporter, and from then on the link carries that one stream's frames.
 * It never goes idle, never takes an OPEN or a BIND, and it ends at the
 * session's expires_at, or at once when the session ends (MB_SUPPORT_KILL,
 * every worker). What it carried (bytes each way, how long, why it ended)
 * goes to controld's audit through engine_ops.support_event.
 */
#include "dp.h"

#include "log.h"
#include "sock.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* the link's id in the audit: its worker, slot and generation */
static uint64_t link_id(struct worker *w, struct conn *l)
{
	return (uint64_t)w->id << 56 | (uint64_t)conn_idx(w, l) << 24 | (l->gen & 0xffffff);
}

void support_join(struct worker *w, struct mb_msg *m)
{
	struct conn *l = conn_ref(w, m->idx, m->gen);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	/* the link went, or is something else by now: nothing to do */
	if (!l || l->kind != CK_LINK || l->state != LS_CONTROL || l->tun || l->sup || l->closing)
		return;
	l->sup = calloc(1, sizeof(*l->sup));
	if (!l->sup) {
		conn_close(w, l, false, "out of memory");
		return;
	}
	l->sup->s = m->sup;
	if (getpeername(l->fd, (struct sockaddr *)&ss, &sl) == 0)
		l->bind.origin_port = sock_addr16(&ss, l->bind.origin_addr);
	/* WELCOME, then the link's bytes are one stream's frames */
	if (!m->data || link_write(w, l, m->data, m->len) < 0) {
		conn_close(w, l, false, "cannot send WELCOME");
		return;
	}
	obuf_kick(w, l);
	msg_reader_free(l->mr);
	free(l->mr);
	l->mr = NULL;
	l->outbound = true; /* mesh's OPEN state machine, off every idle list */
	l->state = LS_OPEN;
	l->stream_id = 1;
	l->deadline = w->now + 10000;
	frame_rx_init(&l->rx, false);
	/* a device gone offline meanwhile: OPENED says so and the link closes */
	mesh_join_support(w, l, m->tun, m->sup.index);
}

void support_connected(struct worker *w, struct conn *l)
{
	struct engine_ops *ops = &w->e->cfg.ops;

	l->sup->connected = true;
	l->sup->t0 = w->now;
	log_info("support session %s: a supporter reached service %s of its device",
		 l->sup->s.session, l->sup->s.service);
	if (ops->support_event)
		ops->support_event(ops->arg, &l->sup->s, true, link_id(w, l), l->bind.origin_addr,
				   l->bind.origin_port, 0, 0, 0, NULL);
}

/* A supporter's link closes: what its stream carried goes to the audit. */
void support_closing(struct worker *w, struct conn *c, const char *why)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct sup_link *s = c->sup;

	if (!s || !s->connected)
		return;
	s->connected = false;
	if (ops->support_event)
		ops->support_event(ops->arg, &s->s, false, link_id(w, c), c->bind.origin_addr,
				   c->bind.origin_port, s->up, s->down, w->now - s->t0,
				   why ? why : "closed");
}

/* The session ended (its owner, the operator, expiry): its links end now. */
void support_kill(struct worker *w, const struct mb_msg *m)
{
	for (uint32_t i = 0; i < w->high; i++) {
		struct conn *c = &w->conns[i];

		if (c->kind != CK_LINK || !c->sup || c->closing ||
		    strcmp(c->sup->s.session, m->sup.session))
			continue;
		log_info("support session %s: ended, its supporter's link closes",
			 c->sup->s.session);
		conn_close(w, c, true, "support session ended");
	}
}

/* The tick: a link past its session's expiry ends (controld may be away). true: closed. */
bool support_tick(struct worker *w, struct conn *l)
{
	if (!l->sup || (int64_t)time(NULL) < l->sup->s.expires_at)
		return false;
	log_info("support session %s: expired, its supporter's link closes", l->sup->s.session);
	conn_close(w, l, true, "support session expired");
	return true;
}

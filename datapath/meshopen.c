// SPDX-License-Identifier: Apache-2.0
/*
 * Streams a client opens (relay role; link_proto.h "Mesh streams"). An OPEN
 * arrives on an idle LINK_HELLO_OUTBOUND link of tunnel A, on A's home worker.
 * Its name is resolved in this order:
 *
 *   1. an IP literal inside [socks] allow, or a DNS name matching one of its
 *      hostname patterns: an external destination (names through the resolver
 *      thread, resolve.h), connected from this worker;
 *   2. the id or group id of the tunnel B that holds the port (port_route):
 *      B's TCP port;
 *   3. a domain of the HTTP edge's routes: that tunnel's HTTP rule, raw (the
 *      edge parses no heads on a mesh stream), whatever the port (TCP only);
 *   4. any other DNS name is resolved and is an external destination when
 *      every address it gives lies inside an allowed CIDR;
 *   else LINK_OPEN_NOT_FOUND. Each destination passes the mesh policy
 *   (mesh_decide) before anything is opened for it.
 *
 * A tunnel destination is joined by a socketpair: end a becomes the stream's
 * plain end on A's link, end b enters B's home worker exactly like a public
 * connection of B's port (relay_attach: pending queue, max_links,
 * max_conns_per_source keyed on A's link's source, idle_timeout). B's worker
 * answers back (MSG_RING) whether b was taken, and only then does A's client
 * get OPENED: OK, or OFFLINE / BUSY without a stream.
 *
 * A UDP OPEN (LINK_OPEN_UDP) takes the same steps: an external destination
 * gets a datagram socket of this worker's, connected to it; a tunnel's port
 * must be a UDP port, and the pair is SOCK_SEQPACKET (a message a datagram)
 * whose end b enters B's worker as a flow of that port (LINK_BIND_UDP, B's
 * max_flows); both ends are udp conns (udp.c: a chunk a datagram, idle EOF).
 *
 * The link waits in LS_OPEN for at most MESH_OPEN_TIMEOUT_MS (then
 * LINK_OPEN_UNREACHABLE); answers that come later find another OPEN sequence
 * number (or another connection generation) and are dropped.
 */
#include "dp.h"

#include "mesh.h"
#include "resolve.h"
#include "routes.h"

#include "log.h"
#include "sock.h"
#include "util.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <pthread.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MESH_OPEN_TIMEOUT_MS 10000
#define MESH_IDLE_MS	     (5 * 60 * 1000)

/* A tunnel destination's end b on its way to B's home worker, and B's answer back. */
struct mesh_handoff {
	int fd_a, fd_b;			/* the socketpair: a for the opener's link, b for B */
	struct tunnel *to;		/* B */
	uint16_t port;			/* B's TCP port, or the HTTP rule's route */
	uint16_t flags;			/* the BIND's (LINK_BIND_HTTP for a domain) */
	uint8_t origin[16];		/* A's link's source: the BIND's origin */
	uint8_t dst[16];		/* the edge's address of A's link: the BIND's dst */
	uint16_t origin_port, dst_port; /* big-endian, as struct link_bind holds them */
	int opener;			/* A's home worker */
	uint32_t idx, gen, seq;		/* A's link and its OPEN */
	uint32_t rule;			/* the mesh rule that allowed it */
	char from[LINK_ID_MAX];		/* A's id, for b's record */
	uint8_t status;			/* B's worker's answer (LINK_OPEN_*) */
	bool answered;			/* on its way back to the opener */
	bool udp;			/* a UDP flow: a SOCK_SEQPACKET pair, B's port a UDP one */
};

/*
 * The opener: an outbound link in LS_OPEN, or a connection of relayd's own
 * SOCKS listener (socksd.c) whose CONNECT is being decided (PS_SOCKS_OPEN),
 * or a flow of one of its UDP ASSOCIATEs (socksd.c, the same state).
 */
static bool opener_waiting(const struct conn *l)
{
	if (l->kind == CK_LINK)
		return l->outbound && l->state == LS_OPEN;
	return l->kind == CK_PLAIN && l->sk && l->state == PS_SOCKS_OPEN;
}

static const char *link_name(const struct conn *l)
{
	return l->mesh_host ? l->mesh_host : "-";
}

static uint16_t wire_rule(uint32_t rule)
{
	return rule > 0xffff ? 0xffff : (uint16_t)rule;
}

/* OPENED with a refusal: no stream, the link stays idle for the next OPEN. */
static void open_refuse(struct worker *w, struct conn *l, uint8_t status, uint32_t rule,
			const char *why)
{
	const char *from = l->tun ? l->tun->id : "-";
	uint8_t f[FRAME_OPENED_LEN];

	atomic_fetch_add_explicit(&w->st_mesh_refused[status], 1, memory_order_relaxed);
	if (l->kind == CK_PLAIN) { /* relayd's SOCKS listener: its reply, its line */
		socks_refused(w, l, status, rule, why);
		return;
	}
	/* one rate limit per cause: a flood of one kind hides no other */
#define REFUSED_LINE()                                                                             \
	log_every(NLOG_INFO, "mesh: tunnel %s -> %.255s:%u refused: %s", from, link_name(l),       \
		  l->port, why)
	switch (status) {
	case LINK_OPEN_DENIED:
		if (rule)
			REFUSED_LINE();
		else
			REFUSED_LINE();
		break;
	case LINK_OPEN_NOT_FOUND:
		REFUSED_LINE();
		break;
	case LINK_OPEN_OFFLINE:
		REFUSED_LINE();
		break;
	case LINK_OPEN_NOT_ALLOWED:
		REFUSED_LINE();
		break;
	case LINK_OPEN_BAD:
		REFUSED_LINE();
		break;
	default: /* DNS, REFUSED, UNREACHABLE, BUSY */
		REFUSED_LINE();
		break;
	}
#undef REFUSED_LINE
	l->state = LS_IDLE;
	l->deadline = 0;
	l->last_io = w->now;
	l->peer = NONE;
	frame_opened_build(f, l->stream_id, status, wire_rule(rule));
	if (link_write(w, l, f, sizeof(f)) < 0) {
		conn_close(w, l, false, "cannot send OPENED");
		return;
	}
	if (l->sup) { /* a supporter's link carries one stream or none: it closes */
		l->state = LS_STREAM;
		link_close_graceful(w, l, why);
		return;
	}
	obuf_kick(w, l);
	link_arm_recv(w, l);
}

/* A mesh_decide refusal: its one line and its OPENED */
static void open_denied(struct worker *w, struct conn *l, uint32_t rule)
{
	char why[64];

	if (rule)
		snprintf(why, sizeof(why), "denied by mesh rule %u", rule);
	else
		snprintf(why, sizeof(why), "denied by the mesh policy (default deny)");
	if (!rule)
		atomic_fetch_add_explicit(&w->st_mesh_denied_default, 1, memory_order_relaxed);
	open_refuse(w, l, LINK_OPEN_DENIED, rule, why);
}

/* OPENED OK: p (connected) is the stream's plain end on l from now on. */
static void stream_start(struct worker *w, struct conn *l, struct conn *p, uint32_t rule)
{
	uint8_t f[FRAME_OPENED_LEN];

	if (l->kind == CK_PLAIN) {
		atomic_fetch_add_explicit(&w->st_mesh_opened, 1, memory_order_relaxed);
		socks_stream(w, l, p);
		return;
	}
	l->state = LS_STREAM;
	l->deadline = 0;
	l->tx_done = l->rx_done = false;
	l->peer = conn_idx(w, p);
	p->peer = conn_idx(w, l);
	p->connected = true;
	p->last_io = w->now;
	frame_rx_init(&l->rx, false); /* a stream's frames only: an OPEN now is malformed */
	frame_opened_build(f, l->stream_id, LINK_OPEN_OK, wire_rule(rule));
	atomic_fetch_add_explicit(&w->st_mesh_opened, 1, memory_order_relaxed);
	if (link_write(w, l, f, sizeof(f)) < 0) {
		conn_close(w, l, false, "cannot send OPENED");
		return;
	}
	if (l->sup)
		support_connected(w, l);
	obuf_kick(w, l);
	plain_arm_recv(w, p);
	link_arm_recv(w, l);
}

static void query_from(struct mesh_query *q, const struct conn *l, enum mesh_dst kind,
		       uint16_t port)
{
	memset(q, 0, sizeof(*q));
	q->from_id = l->tun->id;
	q->from_group = l->tun->group;
	q->from_mesh_role = l->tun->mesh_role;
	if (l->sk) /* a SOCKS login: what controld said of the token, not the session's */
		socks_query_from(l, &q->from_group, &q->from_mesh_role);
	q->kind = kind;
	q->port = port;
}

/* ---------- external destinations ---------- */

/*
 * Addresses an allowed name or a wide block must never reach (SSRF): loopback,
 * unspecified ("this network", 0.0.0.0/8 and ::), link-local (169.254/16,
 * fe80::/10), and for UDP flows multicast and broadcast (224/4, 255.255.255.255,
 * ff00::/8: mDNS or SSDP onto the edge's own network). Only an allow CIDR that
 * names them narrowly does (mesh_external_narrow).
 */
static bool addr_is_special(const uint8_t a[16])
{
	static const uint8_t any6[16], lo6[16] = {[15] = 1};

	if (sock_addr16_is_v4(a))
		return a[12] == 127 || a[12] == 0 || (a[12] == 169 && a[13] == 254) ||
		       (a[12] & 0xf0) == 224 ||
		       (a[12] == 255 && a[13] == 255 && a[14] == 255 && a[15] == 255);
	return !memcmp(a, any6, 16) || !memcmp(a, lo6, 16) ||
	       (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) || a[0] == 0xff;
}

/*
 * The host's own addresses (getifaddrs), read at the first external OPEN and
 * again when the copy is older than OWN_ADDRS_TTL_MS: an address added since
 * is known within that time. Shared by the workers under one mutex.
 */
#define OWN_ADDRS_MAX	 256
#define OWN_ADDRS_TTL_MS 10000
static pthread_mutex_t own_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t own_addrs[OWN_ADDRS_MAX][16];
static unsigned own_n;
static uint64_t own_read; /* ms; 0: never */

static void own_refresh(uint64_t now)
{
	struct ifaddrs *ifa, *i;
	unsigned n = 0;

	if (getifaddrs(&ifa) < 0) {
		log_every(NLOG_WARN,
			  "mesh: getifaddrs: %s: the edge's own addresses are those "
			  "read before",
			  strerror(errno));
		return;
	}
	for (i = ifa; i && n < OWN_ADDRS_MAX; i = i->ifa_next) {
		struct sockaddr_storage ss;

		if (!i->ifa_addr ||
		    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
			continue;
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, i->ifa_addr,
		       i->ifa_addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
							 : sizeof(struct sockaddr_in6));
		sock_addr16(&ss, own_addrs[n++]);
	}
	freeifaddrs(ifa);
	own_n = n;
	own_read = now;
}

static bool addr_is_own(const uint8_t a[16], uint64_t now)
{
	bool own = false;

	pthread_mutex_lock(&own_lock);
	if (!own_read || now - own_read > OWN_ADDRS_TTL_MS)
		own_refresh(now);
	for (unsigned i = 0; i < own_n && !own; i++)
		own = !memcmp(own_addrs[i], a, 16);
	pthread_mutex_unlock(&own_lock);
	return own;
}

/* a loopback, unspecified, link-local, multicast, broadcast or own address the allow list does
 * not name narrowly */
static bool addr_guarded(struct worker *w, const uint8_t a[16])
{
	return (addr_is_special(a) || addr_is_own(a, w->now)) && !mesh_external_narrow(w->mesh, a);
}

static socklen_t addr_to_sockaddr(const uint8_t a[16], uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (sock_addr16_is_v4(a)) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		memcpy(&s4->sin_addr, a + 12, 4);
		return sizeof(*s4);
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(port);
	memcpy(&s6->sin6_addr, a, 16);
	return sizeof(*s6);
}

/*
 * A UDP flow to an external address: a datagram socket of this worker's,
 * connected to it (the kernel picks the source); one chunk, one datagram.
 */
static void external_udp(struct worker *w, struct conn *l, const uint8_t addr[16], uint32_t rule)
{
	struct sockaddr_storage to;
	socklen_t tl = addr_to_sockaddr(addr, l->port, &to);
	int fd = socket(to.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct conn *p;
	char why[96];

	if (fd >= 0 && connect(fd, (struct sockaddr *)&to, tl) < 0) {
		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		close(fd);
		open_refuse(w, l, LINK_OPEN_UNREACHABLE, rule, why);
		return;
	}
	p = fd >= 0 ? conn_new(w, CK_PLAIN, fd) : NULL;
	if (!p) {
		if (fd >= 0)
			close(fd);
		open_refuse(w, l, LINK_OPEN_BUSY, rule, "out of sockets or connection slots");
		return;
	}
	p->udp = true;
	p->mesh = true;
	p->mesh_host = strdup(link_name(l));
	p->tun = l->tun; /* its record is the opener's */
	p->port = l->port;
	p->counted = true;
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	memcpy(p->bind.origin_addr, l->bind.origin_addr, 16);
	p->bind.origin_port = l->bind.origin_port;
	p->rule.to = to;
	p->rule.to_len = tl;
	p->rec = true; /* kind mesh, tunnel the opener, host the name */
	p->rec_t0 = w->now;
	stream_start(w, l, p, rule);
}

/* The policy for an external address, then a connect from this worker. */
static void external_connect(struct worker *w, struct conn *l, const uint8_t addr[16])
{
	struct mesh_query q;
	enum mesh_verdict v;
	uint32_t rule = 0;
	struct conn *p;
	int fd;

	if (addr_guarded(w, addr)) {
		open_refuse(w, l, LINK_OPEN_NOT_ALLOWED, 0,
			    "a loopback, link-local, unspecified, multicast, broadcast or the "
			    "edge's own address: only an allow CIDR naming it narrowly reaches it");
		return;
	}
	query_from(&q, l, MESH_DST_EXTERNAL, l->port);
	q.name = l->mesh_host;
	q.addr = addr;
	v = mesh_decide(w->mesh, &q, &rule);
	if (v != MESH_ALLOW) {
		open_denied(w, l, rule);
		return;
	}
	if (!fds_left(w, 1)) {
		atomic_fetch_add(&w->st_refused_fds, 1);
		open_refuse(w, l, LINK_OPEN_BUSY, rule, "out of file descriptors");
		return;
	}
	if (l->open_udp) {
		external_udp(w, l, addr, rule);
		return;
	}
	fd = socket(sock_addr16_is_v4(addr) ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	p = fd >= 0 ? conn_new(w, CK_PLAIN, fd) : NULL;
	if (!p) {
		if (fd >= 0)
			close(fd);
		open_refuse(w, l, LINK_OPEN_BUSY, rule, "out of sockets or connection slots");
		return;
	}
	p->mesh = true;
	p->pp = l->sk != NULL; /* relayd's SOCKS connection: plain to plain */
	p->mesh_host = strdup(link_name(l));
	p->tun = l->tun; /* its record is the opener's */
	p->port = l->port;
	p->counted = true;
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	memcpy(p->bind.origin_addr, l->bind.origin_addr, 16);
	p->bind.origin_port = l->bind.origin_port;
	p->rule.to_len = addr_to_sockaddr(addr, l->port, &p->rule.to);
	p->peer = conn_idx(w, l);
	l->peer = conn_idx(w, p);
	l->open_rule = rule;
	arm_connect(w, p, (struct sockaddr *)&p->rule.to, p->rule.to_len);
}

void mesh_connected(struct worker *w, struct conn *p, int res)
{
	struct conn *l = conn_at(w, p->peer);
	uint8_t status;

	if (!l || !opener_waiting(l) || l->peer != conn_idx(w, p)) {
		conn_close(w, p, true, "link gone");
		return;
	}
	if (res < 0) {
		char why[96];

		status = res == -ECONNREFUSED ? LINK_OPEN_REFUSED : LINK_OPEN_UNREACHABLE;
		snprintf(why, sizeof(why), "connect: %s",
			 res == -ECANCELED ? "timed out" : strerror(-res));
		p->peer = NONE;
		l->peer = NONE;
		conn_close(w, p, true, "connect failed");
		open_refuse(w, l, status, l->open_rule, why);
		return;
	}
	sock_nodelay(p->fd);
	p->rec = true; /* kind mesh, tunnel the opener, host the name */
	p->rec_t0 = w->now;
	stream_start(w, l, p, l->open_rule);
}

/*
 * An answer for a name (cached or from the resolver thread). pattern: the name
 * matched a hostname pattern of [socks] allow, so any address it gives will do
 * (loopback, link-local, unspecified and the edge's own addresses only when a
 * narrow CIDR names them: addr_guarded); otherwise every address must lie
 * inside an allowed CIDR.
 */
static void on_answer(struct worker *w, struct conn *l, const struct resolve_answer *a)
{
	const char *name = link_name(l);
	bool pattern = mesh_external_allowed(w->mesh, name, NULL);
	const uint8_t *pick = NULL;
	unsigned inside = 0;

	if (a->err || !a->n) {
		if (pattern)
			open_refuse(w, l, LINK_OPEN_DNS, 0, "the name did not resolve");
		else
			open_refuse(w, l, LINK_OPEN_NOT_FOUND, 0,
				    "no tunnel, port or domain by that name");
		return;
	}
	for (unsigned i = 0; i < a->n && i < RESOLVE_ADDRS; i++) {
		bool cidr = mesh_external_allowed(w->mesh, NULL, a->addr[i]);

		inside += cidr;
		if (pick || (!pattern && !cidr))
			continue;
		if (addr_guarded(w, a->addr[i]))
			continue; /* loopback and the like only where a narrow CIDR names them */
		pick = a->addr[i];
	}
	if (!pattern && !inside) {
		open_refuse(w, l, LINK_OPEN_NOT_FOUND, 0, "no tunnel, port or domain by that name");
		return;
	}
	if (!pattern && inside < a->n) {
		open_refuse(w, l, LINK_OPEN_NOT_ALLOWED, 0,
			    "an address of the name lies outside [socks] allow");
		return;
	}
	if (!pick) {
		open_refuse(
		    w, l, LINK_OPEN_NOT_ALLOWED, 0,
		    "every address of the name is loopback, link-local, unspecified, "
		    "multicast, broadcast or the edge's own, and no narrow allow CIDR names "
		    "it");
		return;
	}
	external_connect(w, l, pick);
}

static void resolve_name(struct worker *w, struct conn *l)
{
	struct resolve_answer a;
	int r;

	if (!w->e->res) {
		open_refuse(w, l, LINK_OPEN_BUSY, 0, "no resolver");
		return;
	}
	/* one tunnel cannot keep the resolver threads to itself */
	if (atomic_load(&l->tun->dns_inflight) >= RESOLVE_PER_TUNNEL) {
		open_refuse(w, l, LINK_OPEN_BUSY, 0, "the tunnel has 8 lookups in flight already");
		return;
	}
	r = resolver_lookup(w->e->res, link_name(l), w->id, l->tun, conn_idx(w, l), l->gen,
			    l->open_seq, &a);
	if (r == RSV_CACHED)
		on_answer(w, l, &a);
	else if (r < 0)
		open_refuse(w, l, LINK_OPEN_BUSY, 0, "the resolver's queue is full");
	/* else MB_RESOLVED follows; the link waits in LS_OPEN */
}

void mesh_resolved(struct worker *w, const struct mb_msg *m)
{
	const struct resolve_answer *a = (const struct resolve_answer *)m->data;
	struct conn *l;

	if (!a || m->len != sizeof(*a))
		return;
	if (a->tun)
		atomic_fetch_sub(&a->tun->dns_inflight, 1);
	l = conn_ref(w, a->idx, a->gen);
	if (!l || !opener_waiting(l) || l->open_seq != a->seq || !l->mesh_host ||
	    strcmp(l->mesh_host, a->name))
		return; /* the OPEN timed out, or the link went */
	on_answer(w, l, a);
}

/* ---------- tunnel destinations ---------- */

/* B's worker: end b enters like a public connection of B's port (or route). */
static void mesh_enter(struct worker *w, struct mesh_handoff *h)
{
	struct conn *p;
	uint32_t idx, gen;

	h->status = LINK_OPEN_OK;
	if (w->stopping || atomic_load(&h->to->home) != w->id) {
		h->status = LINK_OPEN_OFFLINE;
		return;
	}
	/* a flow into B counts in B's [udp] max_flows as a public one does */
	if (h->udp && (unsigned)atomic_fetch_add(&h->to->udp_flows, 1) >= w->live->udp_max_flows) {
		atomic_fetch_sub(&h->to->udp_flows, 1);
		atomic_fetch_add_explicit(&w->st_udp_drop[UDP_DROP_FLOWS], 1, memory_order_relaxed);
		h->status = LINK_OPEN_BUSY;
		return;
	}
	p = conn_new(w, CK_PLAIN, h->fd_b);
	if (!p) {
		if (h->udp)
			atomic_fetch_sub(&h->to->udp_flows, 1);
		atomic_fetch_add(&w->st_refused_fds, 1);
		h->status = LINK_OPEN_BUSY;
		return;
	}
	h->fd_b = -1; /* p's now */
	if (h->udp) {
		p->udp = p->udp_pair = p->udp_counted = true;
		p->idle_ms = 0; /* udp_tick's own timeout */
		atomic_fetch_add_explicit(&w->st_udp_flows, 1, memory_order_relaxed);
	}
	p->port = h->port;
	p->counted = true;
	p->last_io = w->now;
	atomic_fetch_add(&w->st_conns, 1);
	atomic_fetch_add(&w->st_conns_total, 1);
	p->mesh = true;
	if (asprintf(&p->mesh_host, "from:%s", h->from) < 0)
		p->mesh_host = NULL;
	memcpy(p->bind.origin_addr, h->origin, 16);
	p->bind.origin_port = h->origin_port;
	memcpy(p->bind.dst_addr, h->dst, 16);
	p->bind.dst_port = h->dst_port;
	p->bind.flags = htons(h->flags);
	idx = conn_idx(w, p);
	gen = p->gen;
	relay_attach(w, p, h->to);
	/* refused at once (max_links, max_conns_per_source, descriptors): it is closed */
	if (!conn_ref(w, idx, gen)) {
		h->status = LINK_OPEN_BUSY;
		return;
	}
	if (h->udp && p->state == PS_PENDING)
		plain_arm_recv(w, p); /* reads into its bounded queue while it waits */
}

/* A's worker: B's answer; the stream starts or the OPEN is refused. */
static void mesh_done(struct worker *w, struct mesh_handoff *h)
{
	struct conn *l = conn_ref(w, h->idx, h->gen), *p;

	if (h->fd_b >= 0)
		close(h->fd_b); /* B never took it */
	if (!l || !opener_waiting(l) || l->open_seq != h->seq) {
		close(h->fd_a); /* b reads the end of its stream */
		free(h);
		return;
	}
	if (h->status != LINK_OPEN_OK) {
		close(h->fd_a);
		open_refuse(w, l, h->status, h->rule,
			    h->status == LINK_OPEN_OFFLINE ? "destination tunnel offline"
							   : "destination tunnel at max_links or "
							     "another limit");
		free(h);
		return;
	}
	p = conn_new(w, CK_PLAIN, h->fd_a);
	if (!p) {
		close(h->fd_a);
		atomic_fetch_add(&w->st_refused_fds, 1);
		open_refuse(w, l, LINK_OPEN_BUSY, h->rule, "connection slab full");
		free(h);
		return;
	}
	p->mesh = true; /* the opener's end: b's record tells the stream */
	p->udp = p->udp_pair = h->udp;
	p->port = h->port;
	memcpy(p->bind.origin_addr, h->origin, 16); /* the firewall's view of it */
	p->bind.origin_port = h->origin_port;
	stream_start(w, l, p, h->rule);
	free(h);
}

void mesh_ring_msg(struct worker *w, enum op op, struct mesh_handoff *h, int res)
{
	struct io_uring_sqe *sqe;

	if (op == OP_SENT_MESH) {
		if (res >= 0)
			return; /* the other worker has it */
		log_warn("w%d: handing a mesh stream over failed: %s", w->id, strerror(-res));
		if (!h->answered) { /* A's worker: B's never got it */
			h->status = LINK_OPEN_BUSY;
			mesh_done(w, h);
		} else { /* B's worker: b is attached (or refused), A's link times out */
			if (h->fd_b >= 0)
				close(h->fd_b); /* refused: B never took it */
			close(h->fd_a);
			free(h);
		}
		return;
	}
	if (h->answered) {
		mesh_done(w, h);
		return;
	}
	mesh_enter(w, h);
	h->answered = true;
	if (h->opener == w->id) {
		mesh_done(w, h);
		return;
	}
	sqe = get_sqe(w);
	io_uring_prep_msg_ring(sqe, w->e->ring_fds[h->opener], 0,
			       (uint64_t)OP_MSG_MESH << 56 | (uint64_t)(uintptr_t)h, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)OP_SENT_MESH << 56 | (uint64_t)(uintptr_t)h);
}

/* B (online, the destination) allowed: a socketpair joins the two tunnels. */
static void tunnel_join(struct worker *w, struct conn *l, struct tunnel *b, uint16_t port,
			uint16_t flags, uint32_t rule, const char *from)
{
	struct io_uring_sqe *sqe;
	struct mesh_handoff *h;
	int sv[2], home;

	if (!fds_left(w, 2)) {
		atomic_fetch_add(&w->st_refused_fds, 1);
		open_refuse(w, l, LINK_OPEN_BUSY, rule, "out of file descriptors");
		return;
	}
	h = calloc(1, sizeof(*h));
	/* a UDP flow keeps its datagrams' edges: one message each */
	if (!h || socketpair(AF_UNIX, (l->open_udp ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC,
			     0, sv) < 0) {
		free(h);
		open_refuse(w, l, LINK_OPEN_BUSY, rule, "out of memory or descriptors");
		return;
	}
	h->fd_a = sv[0];
	h->fd_b = sv[1];
	h->to = b;
	h->port = port;
	h->flags = flags;
	h->udp = l->open_udp;
	memcpy(h->origin, l->bind.origin_addr, 16);
	h->origin_port = l->bind.origin_port;
	memcpy(h->dst, l->bind.dst_addr, 16);
	h->dst_port = l->bind.dst_port;
	h->opener = w->id;
	h->idx = conn_idx(w, l);
	h->gen = l->gen;
	h->seq = l->open_seq;
	h->rule = rule;
	snprintf(h->from, sizeof(h->from), "%s", from ? from : l->tun->id);
	home = atomic_load(&b->home);
	if (home < 0 || (unsigned)home >= w->e->n) {
		h->status = LINK_OPEN_OFFLINE;
		h->answered = true;
		mesh_done(w, h);
		return;
	}
	if (home == w->id) {
		mesh_ring_msg(w, OP_MSG_MESH, h, 0);
		return;
	}
	sqe = get_sqe(w);
	io_uring_prep_msg_ring(sqe, w->e->ring_fds[home], 0,
			       (uint64_t)OP_MSG_MESH << 56 | (uint64_t)(uintptr_t)h, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)OP_SENT_MESH << 56 | (uint64_t)(uintptr_t)h);
}

static bool id_matches(const struct tunnel *t, const char *name)
{
	return !strcasecmp(t->id, name) || (t->group[0] && !strcasecmp(t->group, name));
}

/*
 * 2: a tunnel by id or group id; false when the name names none (it may be a
 * domain). raw: the name as sent (ids are looked up as they are).
 */
static bool open_tunnel(struct worker *w, struct conn *l, const char *raw)
{
	struct engine_ops *ops = &w->e->cfg.ops;
	struct tunnel *b = ops->port_route(ops->arg, l->port);
	struct mesh_query q;
	enum mesh_verdict v;
	uint32_t rule = 0;

	if (!b || !id_matches(b, link_name(l))) {
		struct tunnel *t = ops->tunnel_find(ops->arg, raw);

		if (!t && strcmp(raw, link_name(l)))
			t = ops->tunnel_find(ops->arg, link_name(l));
		if (!t)
			return false;
		if (atomic_load(&t->home) < 0)
			open_refuse(w, l, LINK_OPEN_OFFLINE, 0, "destination tunnel offline");
		else
			open_refuse(w, l, LINK_OPEN_NOT_FOUND, 0, "the tunnel holds no such port");
		return true;
	}
	if (atomic_load(&b->home) < 0) {
		open_refuse(w, l, LINK_OPEN_OFFLINE, 0, "destination tunnel offline");
		return true;
	}
	if (ops->port_is_udp && ops->port_is_udp(ops->arg, l->port) != l->open_udp) {
		open_refuse(w, l, LINK_OPEN_NOT_FOUND, 0,
			    l->open_udp ? "the tunnel holds no such UDP port (a TCP one)"
					: "the tunnel holds no such TCP port (a UDP one)");
		return true;
	}
	query_from(&q, l, MESH_DST_TUNNEL, l->port);
	q.to_id = b->id;
	q.to_group = b->group;
	v = mesh_decide(w->mesh, &q, &rule);
	if (v != MESH_ALLOW)
		open_denied(w, l, rule);
	else
		tunnel_join(w, l, b, l->port, l->open_udp ? LINK_BIND_UDP : 0, rule, NULL);
	return true;
}

/* 3: a domain of the HTTP edge; false when no route holds it */
static bool open_domain(struct worker *w, struct conn *l)
{
	const struct http_route *rt = w->routes ? http_routes_find(w->routes, link_name(l)) : NULL;
	struct mesh_query q;
	enum mesh_verdict v;
	uint32_t rule = 0;

	if (!rt)
		return false;
	if (!rt->route || atomic_load(&rt->tun->home) < 0) {
		open_refuse(w, l, LINK_OPEN_OFFLINE, 0, "destination tunnel offline");
		return true;
	}
	/*
	 * A mesh stream is raw: the edge would check no credentials on it, so a
	 * rule the edge guards with basic auth is not reachable this way.
	 */
	if (rt->auth[0]) {
		open_refuse(w, l, LINK_OPEN_NOT_ALLOWED, 0,
			    "the domain's HTTP rule has basic auth, which a raw mesh stream would "
			    "bypass");
		return true;
	}
	/* port 0: the OPEN's port means nothing to a domain, so a port-filtered rule never matches
	 */
	query_from(&q, l, MESH_DST_DOMAIN, 0);
	q.to_id = rt->tun->id;
	q.to_group = rt->tun->group;
	q.name = link_name(l);
	v = mesh_decide(w->mesh, &q, &rule);
	if (v != MESH_ALLOW)
		open_denied(w, l, rule);
	else
		tunnel_join(w, l, rt->tun, rt->route, LINK_BIND_HTTP, rule, NULL);
	return true;
}

/* ---------- OPEN ---------- */

/*
 * The decision for l's OPEN (an outbound link's, or a SOCKS CONNECT's: l in
 * LS_OPEN / PS_SOCKS_OPEN, l->mesh_host and l->port set): r and err are
 * frame_open_check's, d its destination, raw the name as sent.
 */
static void open_decide(struct worker *w, struct conn *l, int r, const struct frame_open_dst *d,
			const char *raw, const char *err)
{
	if (r == LINK_OPEN_BAD) {
		open_refuse(w, l, LINK_OPEN_BAD, 0, err);
		return;
	}
	/*
	 * w->mesh arrives with controld's first policy push (MB_MESH); before it
	 * an empty table would judge by the defaults (an external destination
	 * allowed, a token with the mesh kind anywhere), so nothing is judged.
	 */
	if (!w->mesh) {
		open_refuse(w, l, LINK_OPEN_BUSY, 0, "mesh policy not yet received");
		return;
	}
	relay_ends(l); /* A's link's source and the edge's address: the BIND's origin and dst */
	if (d->is_ip) {
		if (!mesh_external_allowed(w->mesh, NULL, d->addr))
			open_refuse(w, l, LINK_OPEN_NOT_ALLOWED, 0, "outside [socks] allow");
		else
			external_connect(w, l, d->addr);
		return;
	}
	if (d->is_dns && mesh_external_allowed(w->mesh, d->name, NULL)) {
		resolve_name(w, l);
		return;
	}
	if (d->is_id && open_tunnel(w, l, raw))
		return;
	if (d->is_dns && !l->open_udp && open_domain(w, l)) /* HTTP rules are TCP's */
		return;
	if (d->is_dns && mesh_external_cidrs(w->mesh)) {
		resolve_name(w, l); /* inside an allowed CIDR, perhaps */
		return;
	}
	open_refuse(w, l, LINK_OPEN_NOT_FOUND, 0, "no tunnel, port or domain by that name");
}

void mesh_open(struct worker *w, struct conn *l)
{
	struct frame_open_dst d;
	char raw[LINK_OPEN_NAME_MAX + 1], err[128];
	int r;

	r = frame_open_check(&l->rx.open, &d, err, sizeof(err));
	if (r < 0) { /* frame_rx checked the shape already */
		log_every(NLOG_WARN, "data link fd %d: %s, closing", l->fd, err);
		conn_close(w, l, false, err);
		return;
	}
	memcpy(raw, l->rx.open.name, l->rx.open.name_len);
	raw[l->rx.open.name_len] = 0;
	l->open_seq++;
	l->state = LS_OPEN;
	l->deadline = w->now + MESH_OPEN_TIMEOUT_MS;
	l->stream_id = frame_get32((const uint8_t *)&l->rx.open.stream_id);
	l->port = frame_get16((const uint8_t *)&l->rx.open.port);
	l->open_udp = r == 0 && d.udp;
	free(l->mesh_host);
	l->mesh_host = strdup(r == 0 ? d.name : raw);
	if (!l->mesh_host) {
		conn_close(w, l, false, "out of memory");
		return;
	}
	if (!l->tun) {
		conn_close(w, l, false, "internal: an outbound link without a tunnel");
		return;
	}
	open_decide(w, l, r, &d, raw, err);
}

void mesh_open_socks(struct worker *w, struct conn *s, const char *name, uint16_t port, bool udp)
{
	uint8_t f[FRAME_OPEN_LEN];
	struct frame_open_dst d;
	struct link_open o;
	char err[128];
	int r;

	/* the OPEN a client would send, checked by the same code */
	frame_open_build(f, 0, udp ? LINK_OPEN_UDP : LINK_OPEN_TCP, LINK_OPEN_SOCKS, name, port);
	memcpy(&o, f + 4, sizeof(o));
	r = frame_open_check(&o, &d, err, sizeof(err));
	s->open_seq++;
	s->state = PS_SOCKS_OPEN;
	s->deadline = w->now + MESH_OPEN_TIMEOUT_MS;
	s->port = port;
	s->open_udp = udp; /* a UDP ASSOCIATE's flow (socksd.c), else a CONNECT */
	free(s->mesh_host);
	s->mesh_host = strdup(r == 0 ? d.name : name);
	if (!s->mesh_host) {
		conn_close(w, s, true, "out of memory");
		return;
	}
	if (r < 0) {
		open_refuse(w, s, LINK_OPEN_BAD, 0, err);
		return;
	}
	open_decide(w, s, r, &d, name, err);
}

/*
 * A supporter's link (supportd.c): a stream to its session's device t, whose
 * client hands it to its support gateway (LINK_BIND_SUPPORT, port = the
 * service's index, dst_addr = the session id). No mesh policy: the session's
 * approval decided, and the device checks the key.
 */
void mesh_join_support(struct worker *w, struct conn *l, struct tunnel *t, uint16_t index)
{
	l->open_seq++;
	l->open_udp = false;
	l->port = index;
	memset(l->bind.dst_addr, 0, sizeof(l->bind.dst_addr));
	memcpy(l->bind.dst_addr, l->sup->s.session, strnlen(l->sup->s.session, 14));
	l->bind.dst_port = 0;
	tunnel_join(w, l, t, index, LINK_BIND_SUPPORT, 0, l->sup->s.session);
}

/* ---------- the link's life ---------- */

void mesh_link_idle(struct worker *w, struct conn *l)
{
	l->rx.allow_open = true;
	l->last_io = w->now;
	l->deadline = 0;
	link_arm_recv(w, l);
}

void mesh_open_timeout(struct worker *w, struct conn *l)
{
	struct conn *p = conn_at(w, l->peer);

	if (p) {
		p->peer = NONE;
		l->peer = NONE;
		p->rec = false;
		conn_close(w, p, true, "open timed out");
	}
	open_refuse(w, l, LINK_OPEN_UNREACHABLE, 0, "no answer within 10 s");
}

void mesh_tick_link(struct worker *w, struct conn *l, uint64_t now)
{
	if (l->state == LS_OPEN && l->deadline && now > l->deadline) {
		mesh_open_timeout(w, l);
		return;
	}
	if (l->state == LS_IDLE && now - l->last_io > MESH_IDLE_MS)
		link_close_graceful(w, l, "outbound link unused for 5 minutes");
}

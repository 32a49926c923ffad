/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The datapath's private types, shared by its modules and by nothing else:
 *
 *   worker.c  rings, buffer rings, the connection slab, pools, completion
 *             dispatch, mailbox, ticks; engine start/stop/stats
 *   stream.c  bytes between a plain connection and a data link:
 *             backpressure, half-close, reset, stash, link handshakes
 *   relay.c   the relay role (nave-relayd): accept routing, DATA_HELLO,
 *             control links, hand-off, pending and idle links, BIND
 *   dial.c    the client role (nave): the data-link pool, BIND handling,
 *             local connect
 *
 * The role is chosen once at engine_start: struct role_ops holds what the
 * two roles do differently, and the shared code calls through it.
 */
#ifndef NAVE_DP_H
#define NAVE_DP_H

#include "engine.h"
#include "frame.h"
#include "msg.h"
#include "xprt.h"

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define NONE	 UINT32_MAX
#define HEADROOM 8
#define TICK_MS	 ENGINE_TICK_MS
/* idle data links above a tunnel's max_pool_size unused this long are closed */
#define POOL_PURGE_MS	     5000
#define HANDSHAKE_TIMEOUT_MS 10000
#define CONNECT_TIMEOUT_MS   5000
#define POOL_KEEP	     256

enum op {
	OP_ACCEPT = 1,
	OP_RECV,
	OP_SEND,
	OP_CONNECT,
	OP_MAILBOX,
	OP_TICK,
	OP_MSG_PUBLIC, /* from another worker: a public fd for a tunnel homed here */
	OP_MSG_LINK,   /* from another worker: a data link (struct handoff *) */
	OP_IGNORE,
	OP_SENT_PUBLIC, /* our MSG_RING of a public fd completed (fd in the low bits) */
	OP_SENT_LINK,	/* our MSG_RING of a handoff completed (pointer in the low bits) */
	OP_MSG_HTTP,	/* from another worker: an HTTP connection routed to a tunnel homed here
			   (struct edge_handoff *) */
	OP_SENT_HTTP,	/* our MSG_RING of an edge_handoff completed (pointer in the low bits) */
	OP_MSG_MESH,	/* from another worker: a mesh stream's end for a tunnel homed here, or
			   its answer back to the opener's worker (struct mesh_handoff *) */
	OP_SENT_MESH,	/* our MSG_RING of a mesh_handoff completed (pointer in the low bits) */
	OP_POLL,	/* a UDP port's socket is readable (udp.c) */
	OP_MSG_UDP,	/* from another worker: a new UDP flow of a tunnel homed here
			   (struct udp_handoff *) */
	OP_SENT_UDP,	/* our MSG_RING of a udp_handoff completed (pointer in the low bits) */
};

enum kind { CK_FREE, CK_LISTEN, CK_LINK, CK_PLAIN };
/* LS_OPEN: relay, an outbound link whose OPEN is being resolved (meshopen.c);
   LS_OPENING: client, an outbound link whose OPEN waits for OPENED (dial.c) */
enum lstate {
	LS_CONNECT,
	LS_HANDSHAKE,
	LS_FIRST,
	LS_CONTROL,
	LS_IDLE,
	LS_STREAM,
	LS_OPEN,
	LS_OPENING
};
/* plain conns: relayd queues a public connection until a data link is free; an HTTP
   connection reads its first request head before it has a tunnel */
enum pstate {
	PS_BOUND = 0,
	PS_PENDING = 1,
	PS_HEAD = 2,
	PS_HELLO = 3,
	PS_TLS = 4,
	PS_AUTH = 5,
	/* client: a local connection of a port map or SOCKS proxy (c->mo) waits for an
	   outbound link (PS_MAPWAIT), for OPENED (PS_OPENING), or speaks SOCKS5 */
	PS_MAPWAIT = 6,
	PS_OPENING = 7,
	PS_SOCKS = 8,
	/* relay: a connection of relayd's own SOCKS listener (socksd.c, c->sk): its handshake
	   (TLS first on tls_listen), its login with controld, its CONNECT being decided */
	PS_SOCKS_TLS = 9,
	PS_SOCKS_HS = 10,
	PS_SOCKS_AUTH = 11,
	PS_SOCKS_OPEN = 12
};

struct obuf {
	uint8_t *p;
	uint32_t head, tail, inflight;
};

struct conn {
	uint32_t gen;
	uint8_t kind, state;
	bool recv_armed, closing, tx_done, rx_done, eof_in, shut_wr_pending, shut_wr_done;
	bool tunnel_listener, draining, close_after_send, connected, counted, rearm, pumping;
	bool accept_paused;  /* a listener: accept is armed again on the next tick */
	bool linger;	     /* plain: stream over, close when flushed */
	bool src_counted;    /* relay: counted in the worker's per-source table (public conns,
				and tunnel-port conns until their first message) */
	bool ktls_counted;   /* link: counted in st_ktls (its transport is in the kernel) */
	bool http_listener;  /* relay: the HTTP edge's listener */
	bool https_listener; /* relay: the HTTPS edge's own listener (tunnels elsewhere) */
	bool outbound;	     /* link: DATA_HELLO had LINK_HELLO_OUTBOUND (client-opened streams) */
	bool mesh;	     /* relay plain: an end of a mesh stream (record kind ER_MESH) */
	bool udp;	     /* plain: a UDP flow's connected socket (udp.c); listen: a UDP port */
	bool udp_over;	     /* plain, udp: the chunk being read is over LINK_UDP_MAX (dropped) */
	bool pp;	     /* relay plain: bytes go to another plain conn (peer), not a link:
				relayd's SOCKS connection and its destination's end (socksd.c) */
	uint8_t socks_listener; /* relay listen: 1 [socks] listen, 2 tls_listen */
	uint16_t udp_q;		/* relay plain, udp: datagrams queued in stash while it waits */
	uint32_t udp_next;	/* relay plain, udp: the next flow in its table chain */
	bool udp_pair;		/* relay plain, udp: an end of a mesh flow's socketpair
				   (SOCK_SEQPACKET: one message a datagram, 0 bytes the end) */
	bool udp_counted; /* udp: counted in st_udp_flows (relay: and its tunnel's udp_flows) */
	bool open_udp;	  /* relay link, LS_OPEN: the OPEN's transport is LINK_OPEN_UDP */
	int fd;
	uint16_t inflight;
	uint16_t port;
	uint32_t peer;
	uint32_t next, prev;
	struct tunnel *tun;
	struct obuf tx;
	/* link */
	struct xprt x;
	struct frame_rx rx;
	uint8_t *stash;
	uint32_t stash_off, stash_len;
	struct msg_reader *mr;
	uint8_t hello[sizeof(struct link_data_hello)];
	uint32_t hello_have;
	uint32_t stream_id; /* relay outbound link: the OPEN's stream id */
	uint32_t open_seq;  /* relay outbound link: OPENs seen (answers carry it back) */
	uint32_t open_rule; /* relay outbound link: the mesh rule that allowed its OPEN */
	char *mesh_host;    /* relay plain, mesh: its record's host ("from:ID" or the name) */
	/* times */
	uint64_t recv_epoch; /* w->sq_epoch when its receive was armed */
	uint64_t deadline;
	uint64_t last_io;   /* relay plain: the last byte received or sent (ms) */
	uint32_t idle_ms;   /* relay plain: idle_timeout when it was accepted; 0 = off */
	struct hconn *http; /* relay: a connection of the HTTP edge (edge.c) */
	/* relay plain: its connection record (made when it is finalized, rec set) */
	bool rec;	    /* reached a tunnel (relay_attach): a record is due */
	uint8_t rec_reason; /* enum engine_close; EC_NONE: conn_close decides */
	uint64_t rec_t0;    /* w->now at accept */
	uint64_t rec_in, rec_out;
	/* client: where a plain conn connects */
	struct engine_rule rule;
	struct link_bind bind;
	/* client: a mesh stream's local end or a port map's listener (dial.c), else NULL */
	struct dial_open *mo;
	/* relay: a connection of relayd's SOCKS listener (socksd.c), else NULL */
	struct socks_conn *sk;
	/* relay: a supporter's link (support.c in datapath/), else NULL */
	struct sup_link *sup;
};

/*
 * Open public connections per (tunnel, source address) on a relay worker: a
 * tunnel's public connections all live on its home worker, so the table
 * needs no lock. Linear probing with backward-shift deletion, at most half
 * full (it has twice as many slots as the worker has connection slots).
 */
struct src_slot {
	struct tunnel *tun; /* NULL: the tunnel port's handshakes */
	uint32_t count;	    /* 0: the slot is empty */
	uint32_t hash;
	uint8_t addr[16]; /* IPv4-mapped, or an IPv6 /64 prefix */
};

/* A verified data link on its way to its tunnel's home worker. */
struct handoff {
	struct xprt x;
	int fd;
	struct tunnel *tun;
	bool outbound; /* LINK_HELLO_OUTBOUND */
	uint8_t *in;   /* outbound: received bytes behind the DATA_HELLO (an OPEN), malloc'd */
	size_t in_len;
};

struct worker;
struct edge_handoff;

/* What the relay and client roles do differently; one table per role. */
struct role_ops {
	const char *name;
	const char *link_name; /* what a link is called in a log line */
	bool pin;	       /* pin worker i to CPU i */
	bool rx_bind;	       /* a data link's receive side accepts BIND frames */
	bool listeners;	       /* engine_config.tunnel_fds hold a listener per worker */
	/* worker_init's last step; 0 or -errno with err */
	int (*init)(struct worker *w, char *err, size_t errlen);
	/* a multishot accept on listener c produced fd */
	void (*accept)(struct worker *w, struct conn *c, int fd);
	/* an OP_CONNECT of c completed */
	void (*connected)(struct worker *w, struct conn *c, int res);
	/* a link's TLS handshake finished */
	void (*handshake_done)(struct worker *w, struct conn *l);
	/* input on a link in LS_FIRST or LS_CONTROL */
	void (*link_input)(struct worker *w, struct conn *l);
	/* a BIND frame arrived on idle link l */
	void (*bind)(struct worker *w, struct conn *l, const struct link_bind *b);
	/* an OPEN frame (l->rx.open) arrived on idle outbound link l; NULL: never taken */
	void (*open)(struct worker *w, struct conn *l);
	/* l's stream ended (state already LS_IDLE): keep it, reuse or close it */
	void (*link_idle)(struct worker *w, struct conn *l);
	/* take l off the role's idle list */
	void (*idle_unlink)(struct worker *w, struct conn *l);
	/* c (a link or plain conn) starts closing: the role's bookkeeping */
	void (*closing)(struct worker *w, struct conn *c, const char *why);
	/* a completion of a role-only op (MSG_RING hand-offs) */
	void (*ring_msg)(struct worker *w, enum op op, uint64_t ud, int res);
	/* client: OPENED arrived on l (in LS_OPENING; the struct is in l->rx.opened) */
	void (*opened)(struct worker *w, struct conn *l);
	/* a mailbox message; false when the role does not know it */
	bool (*mailbox)(struct worker *w, struct mb_msg *m);
	/* the tick, per live connection and once after them */
	void (*tick_conn)(struct worker *w, struct conn *c, uint64_t now);
	void (*tick)(struct worker *w);
};

struct worker {
	struct engine *e;
	const struct role_ops *ops;
	int id;
	pthread_t thread;
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	size_t br_size;
	uint8_t *bufs;
	unsigned nbufs, bufsz, slot;
	unsigned txcap;
	struct conn *conns;
	uint32_t nconns, free_head, high;
	void *pool;
	unsigned pool_n;
	uint8_t *scratch;
	int efd;
	int spare_fd; /* held back for the moment accept meets the descriptor limit */
	uint64_t efd_val;
	pthread_mutex_t mb_lock;
	struct mb_msg *mb_head, *mb_tail;
	struct __kernel_timespec tick_ts;
	bool stopping;
	bool mb_init, ring_ok; /* what worker_init got to (worker_free undoes that much) */
	unsigned starved;
	uint64_t stop_deadline;
	uint32_t stream_seq;
	uint64_t now;	   /* ms, refreshed once per completion batch */
	uint64_t sq_epoch; /* submits so far: what was armed since is not in the kernel yet */
	struct src_slot *src;
	uint32_t src_mask;
	uint64_t src_seed;
	/* client session */
	bool session;
	char tunnel_id[LINK_ID_MAX];
	uint8_t secret[LINK_SECRET_LEN];
	unsigned links, idle, opening;
	unsigned pool_idle, max_links;
	unsigned want_more; /* links to open beyond the idle pool: BINDs said others wait */
	uint64_t open_block_until;
	/* client mesh: outbound links (their own pool) and local connections waiting for one */
	bool mesh_ok; /* the session's WELCOME named "mesh" */
	unsigned out_links, out_idle, out_opening, waiting;
	uint32_t out_idle_head;	       /* idle outbound links (conn index, next/prev) */
	uint32_t wait_head, wait_tail; /* local connections in PS_MAPWAIT, oldest first */
	/* counters, read by other threads */
	_Atomic uint64_t st_conns, st_conns_total, st_in, st_out, st_links, st_idle;
	_Atomic uint64_t st_refused_src, st_idle_to, st_pend_to, st_refused_links, st_refused_fds;
	_Atomic uint64_t st_slots; /* connections in the slab: a descriptor each, nearly */
	_Atomic uint64_t st_ktls, st_ktls_fallback;
	_Atomic uint64_t st_fw_refused;
	_Atomic uint64_t st_http_req, st_http_err[8], st_http_ktls;
	_Atomic uint64_t st_mesh_opened, st_mesh_refused[LINK_OPEN_STATUS_MAX + 1];
	_Atomic uint64_t st_mesh_denied_default;
	_Atomic uint64_t st_udp_flows, st_udp_expired, st_udp_in, st_udp_out, st_udp_drop[5];
	_Atomic uint64_t st_socks_conns, st_socks_refused[5];
	struct socks_edge *socks; /* relay: the SOCKS listeners' bookkeeping (socksd.c) */
	/* the ring, counted by the worker in plain fields and published after each batch */
	uint64_t n_sqes, n_cqes, n_waits, n_sq_full, n_nobufs;
	_Atomic uint64_t st_sqes, st_cqes, st_waits, st_sq_full, st_nobufs, st_cq_overflow;
	_Atomic uint64_t st_ticks;     /* the watchdog's sign of life */
	uint64_t ticks_seen, ticks_at; /* [the thread calling engine_alive] */
	struct cidr_table *fw;	       /* relay: the firewall lists (MB_FIREWALL), NULL = none */
	struct http_routes *routes;    /* relay: the HTTP routes (MB_ROUTES), NULL = none */
	struct http_routes *certs;     /* relay: the HTTPS edge's certificates (MB_CERTS) */
	uint8_t *hscratch;	       /* relay: a forwarded request head is built here */
	struct engine_live *live;      /* relay: the reloadable settings (MB_LIVE); client: NULL */
	struct rec_ring *rec;	       /* relay: connection records for the control thread */
	struct mesh_table *mesh;       /* relay: the mesh policy and [socks] allow (MB_MESH) */
	/* relay: UDP flows homed here by (port, source) (udp.c): chained through udp_next */
	uint32_t *udp_tab, udp_mask;
	uint8_t *udp_buf; /* a datagram read from a port's socket, 4 bytes of room in front */
	_Atomic unsigned udp_fwd; /* datagrams sent from here a home worker has not taken yet */
	uint64_t udp_seed;	  /* keys the flow table's hash */
};

/*
 * relay: the settings a reload changes (engine_reconfigure), immutable once
 * posted; each worker holds one reference to the current one.
 */
struct engine_live {
	_Atomic unsigned refs;
	unsigned idle_timeout_ms, pending_timeout_ms, max_conns_per_source;
	unsigned header_timeout_ms, keepalive_ms, max_head;
	unsigned udp_idle_ms, udp_max_flows, udp_queue; /* [udp] */
	unsigned ntrusted;
	struct cidr trusted[]; /* [http] trusted_proxies */
};
void engine_live_put(struct engine_live *l);

struct authq;
struct resolver;

struct engine {
	struct authq *aq;	 /* relay: the basic-auth verifier (edge.c), NULL until needed */
	struct resolver *res;	 /* relay: the DNS resolver of mesh streams (resolve.h) */
	unsigned long fd_budget; /* descriptors relayed connections may hold (the limit less
				    FD_RESERVE) */
	pthread_mutex_t aq_lock;
	bool aq_stop;
	struct engine_config cfg;
	const struct role_ops *ops;
	unsigned n;
	struct worker *w;
	int *ring_fds;
};

extern const struct role_ops relay_ops, dial_ops;

/* ---------- user_data: {op: 8, generation: 24, slot: 32} ---------- */

static inline uint64_t ud_make(enum op op, uint32_t idx, uint32_t gen)
{
	return (uint64_t)op << 56 | (uint64_t)(gen & 0xffffff) << 32 | idx;
}
static inline enum op ud_op(uint64_t ud)
{
	return (enum op)(ud >> 56);
}
static inline uint32_t ud_idx(uint64_t ud)
{
	return (uint32_t)ud;
}
static inline uint32_t ud_gen(uint64_t ud)
{
	return (uint32_t)(ud >> 32) & 0xffffff;
}
/* MSG_RING payloads: the op in the top 8 bits, an fd or a pointer below */
static inline uint64_t ud_ptr(uint64_t ud)
{
	return ud & ((1ull << 56) - 1);
}

static inline uint8_t *buf_addr(struct worker *w, unsigned bid)
{
	return w->bufs + (size_t)bid * w->slot;
}

static inline struct conn *conn_at(struct worker *w, uint32_t idx)
{
	return idx == NONE ? NULL : &w->conns[idx];
}

static inline uint32_t conn_idx(struct worker *w, struct conn *c)
{
	return (uint32_t)(c - w->conns);
}

/* worker.c */
struct io_uring_sqe *get_sqe(struct worker *w);
uint8_t *pool_get(struct worker *w);
void pool_put(struct worker *w, uint8_t *p);
void buf_recycle(struct worker *w, unsigned bid);
struct conn *conn_new(struct worker *w, enum kind k, int fd);
void conn_release(struct worker *w, struct conn *c);
/* the live connection at idx with generation gen, or NULL */
struct conn *conn_ref(struct worker *w, uint32_t idx, uint32_t gen);
/* room for n more descriptors (connections) within the open-file budget, all workers */
bool fds_left(struct worker *w, unsigned n);
void arm_recv(struct worker *w, struct conn *c);
void arm_accept(struct worker *w, struct conn *c);
/* connect c to sa, bounded by CONNECT_TIMEOUT_MS (OP_CONNECT completes) */
void arm_connect(struct worker *w, struct conn *c, const struct sockaddr *sa, socklen_t len);
/* closes c (rst: an RST for a plain socket); freed once nothing is in flight */
void conn_close(struct worker *w, struct conn *c, bool rst, const char *why);
void conn_finalize(struct worker *w, struct conn *c);
/* c's close reason, unless one is set already (enum engine_close) */
static inline void conn_reason(struct conn *c, uint8_t reason)
{
	if (!c->rec_reason)
		c->rec_reason = reason;
}

/* relay.c: a public connection p of tunnel t (homed here) takes a data link or waits */
void relay_attach(struct worker *w, struct conn *p, struct tunnel *t);
/* relay.c: a tunnel connection on fd; hello: the bytes of it read already (or NULL) */
void relay_link_accept(struct worker *w, int fd, const uint8_t *hello, size_t n);
/* relay.c: c counts among its source's unfinished handshakes and heads (false: over) */
bool relay_src_take(struct worker *w, struct conn *c);
void relay_src_done(struct worker *w, struct conn *c);
/* relay.c: counts per source under a tag of the caller's (the table of max_conns_per_source;
   0 and nothing when that is off) */
uint32_t relay_src_tag_add(struct worker *w, const void *tag, const uint8_t origin[16]);
void relay_src_tag_del(struct worker *w, const void *tag, const uint8_t origin[16]);
/* relay.c: p leaves its tunnel's pending queue */
void relay_pending_remove(struct worker *w, struct conn *p);
/* relay.c: the two ends of p's socket into p->bind (origin and destination) */
void relay_ends(struct conn *p);

/* meshopen.c: streams the client opens (OPEN on an outbound link, relay role) */
struct mesh_handoff;
void mesh_open(struct worker *w, struct conn *l);
/* OP_MSG_MESH / OP_SENT_MESH */
void mesh_ring_msg(struct worker *w, enum op op, struct mesh_handoff *h, int res);
/* MB_RESOLVED: the resolver's answer (m->data: struct resolve_answer) */
void mesh_resolved(struct worker *w, const struct mb_msg *m);
/* an OP_CONNECT of an external destination's end completed */
void mesh_connected(struct worker *w, struct conn *p, int res);
/* the tick for an outbound link: the OPEN's 10 s, the idle link's 5 minutes */
void mesh_tick_link(struct worker *w, struct conn *l, uint64_t now);
/* an outbound link that is idle again (its stream ended, or it is new) */
void mesh_link_idle(struct worker *w, struct conn *l);
/* outbound link l closes: what its OPEN waited for goes */
void mesh_link_closing(struct worker *w, struct conn *l);

/* meshopen.c: a SOCKS CONNECT of relayd's own listener s, or (udp) a flow of a UDP
   ASSOCIATE's, decided as an OPEN from s->tun */
void mesh_open_socks(struct worker *w, struct conn *s, const char *name, uint16_t port, bool udp);
/* l's OPEN (or CONNECT) had no answer within 10 s */
void mesh_open_timeout(struct worker *w, struct conn *l);

/* socksd.c: relayd's SOCKS5 server ([socks] listen, tls_listen) */
/* a supporter's link (supportd.c) */
struct sup_link {
	struct engine_support s;
	uint64_t t0;	   /* w->now when it reached the device */
	uint64_t up, down; /* bytes its stream carried to the device and back (stream.c) */
	bool connected;	   /* reported connected */
};
void support_join(struct worker *w, struct mb_msg *m);
void support_kill(struct worker *w, const struct mb_msg *m);
void support_closing(struct worker *w, struct conn *c, const char *why);
bool support_tick(struct worker *w, struct conn *l);
void support_connected(struct worker *w, struct conn *l);
/* meshopen.c: a supporter's link l joins a stream to its device t */
void mesh_join_support(struct worker *w, struct conn *l, struct tunnel *t, uint16_t index);
void socks_accept(struct worker *w, struct conn *listener, int fd);
void socks_on_recv(struct worker *w, struct conn *p, int res, unsigned flags);
void socks_on_sent(struct worker *w, struct conn *p);
void socks_arm(struct worker *w, struct conn *p);
/* p (a SOCKS connection or its destination's end) starts closing */
void socks_closing(struct worker *w, struct conn *p);
/* the tick: handshake, login, CONNECT and idle deadlines (true when it dealt with p) */
bool socks_tick(struct worker *w, struct conn *p, uint64_t now);
/* MB_SOCKS_AUTH */
void socks_auth_done(struct worker *w, struct mb_msg *m);
void socks_kick(struct worker *w, const struct tunnel *t);
void socks_free(struct worker *w, struct conn *p);
/* meshopen.c's answers for a SOCKS connection s: refused (its reply, then it closes), or
   connected to p (its reply, then bytes both ways) */
void socks_refused(struct worker *w, struct conn *s, uint8_t status, uint32_t rule,
		   const char *why);
void socks_stream(struct worker *w, struct conn *s, struct conn *p);
/* a UDP ASSOCIATE's relay socket is readable (OP_POLL) */
void socks_udp_poll(struct worker *w, struct conn *r, int res);
/* the policy's view of s's login (controld's answer, not a session's) */
void socks_query_from(const struct conn *s, const char **group, bool *mesh_role);

/* edge.c: the HTTP edge (relay) */
void edge_accept(struct worker *w, struct conn *listener, int fd);
/* an HTTPS connection (tunnel: on the port tunnels share): its ClientHello decides */
void edge_tls_accept(struct worker *w, struct conn *listener, int fd, bool tunnel);
void edge_on_recv(struct worker *w, struct conn *p, int res, unsigned flags);
/* p may take more client bytes (bound, its link has room): buffered ones first */
void edge_arm(struct worker *w, struct conn *p);
/* a receive met an empty buffer ring: p asks again, whatever its state */
void edge_rearm(struct worker *w, struct conn *p);
void edge_adopt(struct worker *w, struct edge_handoff *h);
void edge_handoff_failed(struct edge_handoff *h);
/* the tick: header and keep-alive timeouts; true when it dealt with p */
bool edge_tick(struct worker *w, struct conn *p, uint64_t now);
/* p's record: its host into host (n bytes), and ER_HTTP or ER_HTTPS */
uint8_t edge_record_host(const struct conn *p, char *host, size_t n);
/* p waited for a data link too long: 503 */
void edge_pending_timeout(struct worker *w, struct conn *p);
void edge_free(struct conn *p);
/* p starts closing: what the edge counted for it goes */
void edge_closing(struct worker *w, struct conn *p);
/* MB_AUTH: the verifier's answer for a connection waiting in PS_AUTH */
void edge_auth_done(struct worker *w, const struct mb_msg *m);
/* stops and frees the engine's verifier (engine_stop, engine_free) */
void edge_authq_stop(struct engine *e);
/* the service sent p's client these bytes (plaintext, on their way unchanged) */
void edge_response(struct worker *w, struct conn *p, const uint8_t *d, size_t n);
/* p's terminated TLS may move into the kernel (its send buffer drained, say) */
void edge_settle(struct worker *w, struct conn *p);

/* udp.c */
struct udp_handoff;
/* relay: a UDP port's socket c is readable: its datagrams go to their flows */
void udp_on_poll(struct worker *w, struct conn *c, int res);
void udp_arm_poll(struct worker *w, struct conn *c);
/* relay: a new flow handed over from another worker (OP_MSG_UDP), or its failure */
void udp_adopt(struct worker *w, struct udp_handoff *h);
void udp_handoff_failed(struct udp_handoff *h);
/* a receive on flow p's socket completed: a chunk, or its queue while it waits */
void udp_recv(struct worker *w, struct conn *p, int res, unsigned flags);
/* relay: flow p got data link l: its queued datagrams go out as chunks; false: l closed */
bool udp_flush(struct worker *w, struct conn *p, struct conn *l);
/* L -> P: up to n bytes of the current chunk into p, a datagram sent when it is whole;
   the bytes taken, 0 or <0 as xprt_read */
int udp_pump(struct worker *w, struct conn *l, struct conn *p, size_t n);
/* the flow p's idle timeout: EOF on its stream (true when it dealt with p) */
bool udp_tick(struct worker *w, struct conn *p, uint64_t now);
/* flow p closes: its tunnel's count */
void udp_closing(struct worker *w, struct conn *p);
/* the flow table (w->udp_tab): by (port, origin address, origin port) */
struct conn *udp_flow_find(struct worker *w, uint16_t port, const uint8_t a[16], uint16_t sport);
void udp_flow_insert(struct worker *w, struct conn *p);
void udp_flow_remove(struct worker *w, struct conn *p);
/* client: a BIND with LINK_BIND_UDP on l for rule; false when it could not be served */
bool udp_dial(struct worker *w, struct conn *l, const struct link_bind *b,
	      const struct engine_rule *rule);

/* dial.c: a UDP port map's socket c is readable: its datagrams go to their flows */
void dial_udp_poll(struct worker *w, struct conn *c, int res);
/* dial.c: a datagram to a UDP map's or UDP ASSOCIATE's flow's source (with its SOCKS header) */
ssize_t dial_udp_send(struct conn *p, const uint8_t *d, size_t n);
/* udp.c: a datagram d (4 bytes of room in front) for flow p: a chunk, or queued while it waits */
void udp_input(struct worker *w, struct conn *p, uint8_t *d, uint32_t len);
/* dial.c: a SOCKS handshake's receive on p completed (p->state PS_SOCKS) */
void dial_socks_recv(struct worker *w, struct conn *p, int res, unsigned flags);
/* dial.c: c's mesh state goes (conn_finalize) */
void dial_mo_free(struct conn *c);

/* stream.c */
/* the client ended its direction: the stream learns it (EOF frame) */
void plain_send_eof(struct worker *w, struct conn *p, struct conn *l);
void obuf_kick(struct worker *w, struct conn *c);
uint32_t obuf_room(struct worker *w, struct conn *c);
bool obuf_ensure(struct worker *w, struct conn *c);
void obuf_maybe_release(struct worker *w, struct conn *c);
/* Puts len bytes on link l's transport (encrypted into its send buffer); 0 or -errno. */
int link_write(struct worker *w, struct conn *l, const void *buf, size_t len);
int link_write_word(struct worker *w, struct conn *l, uint32_t word);
/* Ends this direction of l's stream with a reset frame; false if l had to close. */
bool link_send_reset(struct worker *w, struct conn *l);
void plain_arm_recv(struct worker *w, struct conn *p);
void link_arm_recv(struct worker *w, struct conn *l);
void link_pump(struct worker *w, struct conn *l);
void link_handshake(struct worker *w, struct conn *l);
void link_make_idle(struct worker *w, struct conn *l);
void link_close_graceful(struct worker *w, struct conn *l, const char *why);
/* l's transport may settle (kTLS): its send buffer is empty or it took input */
void link_settle(struct worker *w, struct conn *l);
void link_on_recv(struct worker *w, struct conn *l, int res, unsigned flags);
void link_on_sent(struct worker *w, struct conn *l);
void plain_on_recv(struct worker *w, struct conn *p, int res, unsigned flags);
void plain_on_sent(struct worker *w, struct conn *p);
void plain_maybe_shut(struct conn *p);
/* one side of a stream is closing: the other side learns it */
void stream_plain_closing(struct worker *w, struct conn *p);
void stream_link_closing(struct worker *w, struct conn *l);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The relay engine: one pinned worker thread per CPU, each with its own
 * io_uring, provided-buffer ring, connection slab and buffer pool. It moves
 * bytes between plain sockets (public connections on relayd, local services
 * on the client) and data links (TLS, link protocol v1), and is shared by
 * nave-relayd (ENGINE_RELAY) and the nave client (ENGINE_CLIENT).
 *
 * Threads other than the workers talk to a worker only through its mailbox
 * (engine_post); workers talk to each other with IORING_OP_MSG_RING.
 */
#ifndef NAVE_ENGINE_H
#define NAVE_ENGINE_H

#include "cidr.h"
#include "link_proto.h"

/* a domain's room in a record (DOMAIN_MAX + 1) */
#define DOMAIN_REC_MAX 254

struct xprt_ctx;
struct http_routes;
struct engine_live;
struct mesh_table;

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

enum engine_role { ENGINE_RELAY, ENGINE_CLIENT };

#define ENGINE_MAX_WORKERS 256

struct engine;
struct worker;

/*
 * A tunnel as the relay datapath sees it. Created by relayd's control thread
 * and never freed (a reconnecting tunnel gets the same object back). Fields
 * marked [home] are touched only by the tunnel's home worker while online.
 */
/*
 * Descriptors kept back from relayed connections (listeners, rings, BPF, logs,
 * the store): relayd's budget is the open-file limit less these, and the
 * client lowers its max_links to what the rest holds.
 */
#define FD_RESERVE 256

struct tunnel {
	char id[LINK_ID_MAX];
	uint8_t secret[LINK_SECRET_LEN]; /* written before home is published */
	_Atomic int home;		 /* worker index, -1 when offline */
	_Atomic int links;		 /* data links open, all workers */
	_Atomic int arriving;		 /* of which on their way to the home worker */
	_Atomic int outbound;		 /* of which client-opened (LINK_HELLO_OUTBOUND) */
	unsigned max_links;
	unsigned max_pool;
	unsigned socks_streams;	   /* [worker 0] relayd's SOCKS CONNECTs on its token (socksd.c) */
	unsigned heartbeat_ms;	   /* what its WELCOME said (a reload changes the next session's) */
	uint32_t ctl_idx, ctl_gen; /* [home] its control link */
	uint32_t idle_head;	   /* [home] idle data links (conn index) */
	unsigned idle;		   /* [home] */
	uint32_t pend_head, pend_tail; /* [home] public conns waiting for a link */
	unsigned pending;	       /* [home] */
	unsigned asked;	  /* [home] extra links asked for (LINK_BIND_WAITING), to come */
	uint64_t last_hb; /* [home] last heartbeat, ms */
	char hostname[LINK_HOSTNAME_MAX + 1], os[LINK_OS_MAX + 1]; /* [control thread] */
	char arch[LINK_OS_MAX + 1], version[LINK_VERSION_MAX + 1];
	/* the mesh policy's view (mesh.h), set at auth before the tunnel is online */
	char group[LINK_GROUP_MAX + 1]; /* its group id ("" = none) */
	bool mesh_role;			/* its token's kinds include "mesh" */
	_Atomic int dns_inflight;	/* its OPENs' names with the resolver (resolve.h) */
	_Atomic int udp_flows;		/* its UDP flows, open or on their way home (udp.c) */
	struct tunnel *next;		/* registry chain [control thread, under lock] */
};

/*
 * A client-side forwarding rule: public port (or HTTP route) -> local target.
 * to may be an AF_UNIX address (the client's own webroot server).
 */
struct engine_rule {
	uint16_t port;
	struct sockaddr_storage to;
	socklen_t to_len;
	int proxy;
};

/* Mailbox commands (engine_post). Ownership of data moves to the worker. */
enum mb_type {
	MB_LISTEN,   /* relay: arm accept on fd (a port listener for port) */
	MB_UNLISTEN, /* relay: stop accepting on port's listener */
	MB_CTL_SEND, /* relay: write data (a control message) on conn idx/gen; close after if flag
		      */
	MB_WELCOME,  /* relay: tunnel is online on this worker via conn idx/gen; then send data */
	MB_KICK,     /* relay: send data on the tunnel's control link, close it, tunnel offline */
	MB_SESSION,  /* client: start keeping data links for tunnel id/secret */
	MB_SESSION_END, /* client: close idle links, let busy ones finish */
	MB_STOP,	/* drain and leave the loop */
	MB_FIREWALL,	/* relay: fw replaces the worker's firewall lists (one reference each) */
	MB_ROUTES,	/* relay: routes replaces the worker's HTTP routes (one reference each) */
	MB_CERTS,	/* relay: routes (a certificate table) replaces the worker's certificates */
	MB_AUTH,	/* relay: a basic-auth check finished (data: edge.c's result) */
	MB_LIVE, /* relay: live replaces the worker's reloadable settings (one reference each) */
	MB_MESH, /* relay: mesh replaces the worker's mesh policy table (one reference each) */
	MB_RESOLVED,   /* relay: the resolver's answer for an OPEN (data: struct resolve_answer) */
	MB_MAP_LISTEN, /* client: arm accept on fd, a port map's or SOCKS listener (data: struct
			  engine_map) */
	MB_MAP_UNLISTEN, /* client: close the listener of local port port; ack as MB_UNLISTEN */
	MB_SOCKS_AUTH,	 /* relay: controld's answer to a SOCKS login (data: struct
			    engine_socks_auth; tun: the token's tunnel, NULL when refused) */
	MB_SOCKS_KICK,	 /* relay: tun's token went (revoked, deauth, deleted): its SOCKS
			    streams and logins on this worker end */
	MB_SUPPORT_JOIN, /* relay: control link idx/gen is a supporter's, allowed: WELCOME
			    (data), then a stream to tun (struct engine_support in sup) */
	MB_SUPPORT_KILL, /* relay: every supporter link of session sup.session ends now */
};

/* MB_SUPPORT_JOIN / MB_SUPPORT_KILL: a support session (link_proto.h "Support streams") */
struct engine_support {
	char session[16];   /* sup-..., NUL-terminated */
	char service[32];   /* its name (for the audit) */
	uint16_t index;	    /* the service's place in the session's request */
	int64_t expires_at; /* Unix s: the link ends then, with or without controld */
};

/*
 * client: a local listener (MB_MAP_LISTEN's data). Its connections are carried
 * through the server as mesh streams (link_proto.h OPEN) on outbound data links:
 * a port map's to name:port, a SOCKS proxy's to what each CONNECT asks for.
 */
enum engine_map_kind { EMAP_PORT = 0, EMAP_SOCKS = 1 };
struct engine_map {
	uint8_t kind;	/* enum engine_map_kind */
	uint16_t local; /* the local port (logs) */
	uint16_t port;	/* EMAP_PORT: the destination's port */
	char name[256]; /* EMAP_PORT: the destination (cfg_valid_destination) */
	char user[65];	/* EMAP_SOCKS: the RFC 1929 user; "" = no authentication */
	char hash[256]; /* EMAP_SOCKS: its password hash (common/passwd.h) */
	bool udp;	/* EMAP_PORT: a UDP map (the fd is a bound datagram socket) */
};

/* What a relay listener posted with MB_LISTEN carries. */
enum listen_kind {
	LISTEN_PORT = 0, /* a port of the range (port 0: the range group under steering = bpf) */
	LISTEN_HTTP,	 /* the HTTP edge ([listen] http) */
	LISTEN_HTTPS,	 /* the HTTPS edge when tunnels have a port of their own */
	LISTEN_UDP,	 /* a UDP port of the range: a datagram socket of its reuseport group */
	LISTEN_SOCKS,	 /* relayd's SOCKS5 server ([socks] listen) */
	LISTEN_SOCKS_TLS /* the same inside TLS ([socks] tls_listen) */
};

/* relay: controld's answer to a SOCKS login (MB_SOCKS_AUTH's data) */
struct engine_socks_auth {
	bool ok;
	bool transient; /* !ok: controld unavailable, busy or unclear (no failure) */
	bool mesh_role; /* the token's kinds include "mesh" */
	char group[LINK_GROUP_MAX + 1]; /* the token's tunnel's group id ("" = none) */
	char reason[160];		/* !ok: controld's (or relayd's) one line */
};

struct mb_msg {
	enum mb_type type;
	int fd;
	uint16_t port;
	bool close_after;
	uint32_t idx, gen;
	struct tunnel *tun;
	uint8_t *data; /* malloc'd; freed by the worker */
	size_t len;
	char tunnel_id[LINK_ID_MAX];
	uint8_t secret[LINK_SECRET_LEN];
	unsigned pool_idle, max_links; /* MB_SESSION: the pool, within the server's limits */
	bool mesh_ok;		       /* MB_SESSION: the WELCOME named the feature "mesh" */
	_Atomic unsigned *ack;	       /* MB_UNLISTEN: incremented once the listener is shut */
	struct cidr_table *fw;	       /* MB_FIREWALL (cidr.h) */
	struct http_routes *routes;    /* MB_ROUTES (routes.h) */
	struct engine_live *live;      /* MB_LIVE */
	struct mesh_table *mesh;       /* MB_MESH (mesh.h) */
	struct engine_support sup;     /* MB_SUPPORT_JOIN, MB_SUPPORT_KILL */
	enum listen_kind listener;     /* MB_LISTEN */
	struct mb_msg *next;
};

/* Events a relay worker reports to the control thread (engine_ops). */
struct engine_ops {
	/*
	 * relay: a control link sent HELLO (obj is a json_t*, ownership passes); source is
	 * the address it connects from (sock_addr16's form), NULL when unknown; certs
	 * the certificates the client presented in its handshake (DER one after the other,
	 * leaf first; malloc'd, ownership passes; NULL when none).
	 */
	void (*ctl_hello)(void *arg, int worker, uint32_t idx, uint32_t gen, void *obj,
			  const uint8_t *source, uint8_t *certs, size_t certs_len);
	/* relay: a control message from an online tunnel (json_t*, ownership passes). */
	void (*ctl_message)(void *arg, struct tunnel *t, void *obj);
	/* relay: a tunnel's control link closed (reason is a static or short string). */
	void (*tunnel_offline)(void *arg, struct tunnel *t, const char *reason);
	/* relay: look up a tunnel by id for a DATA_HELLO (any worker thread). */
	struct tunnel *(*tunnel_find)(void *arg, const char *id);
	/*
	 * relay: a SOCKS login (socksd.c) to check: pass is a token, checked by
	 * controld (auth, mode "check", from source); the answer comes back to the
	 * worker as MB_SOCKS_AUTH for connection idx/gen. Strings are checked.
	 */
	void (*socks_auth)(void *arg, int worker, uint32_t idx, uint32_t gen, const char *pass,
			   const uint8_t source[16]);
	/* relay: the tunnel a public port routes to, or NULL. */
	struct tunnel *(*port_route)(void *arg, uint16_t port);
	/*
	 * relay: a supporter's link (link_proto.h "Support streams") reached its device
	 * (connected: source is the supporter's address) or ended (disconnected: bytes each
	 * way, how long, why). conn identifies the link in the audit.
	 */
	void (*support_event)(void *arg, const struct engine_support *s, bool connected,
			      uint64_t conn, const uint8_t source[16], uint16_t source_port,
			      uint64_t bytes_up, uint64_t bytes_down, uint64_t duration_ms,
			      const char *why);
	/* relay: whether a routed port is a UDP port (udp_grant) rather than a TCP one. */
	bool (*port_is_udp)(void *arg, uint16_t port);
	/*
	 * client: the rule for a BIND (copied out), false if none. flags are the
	 * BIND's (host order): with LINK_BIND_HTTP, port is an HTTP route of an
	 * http_grant, else a public TCP port.
	 */
	bool (*rule_find)(void *arg, uint16_t port, uint16_t flags, struct engine_rule *out);
	/* client: the data-link pool changed (links, idle) - for status. */
	void *arg;
};

struct engine_config {
	enum engine_role role;
	unsigned workers;      /* 0 = online CPUs */
	unsigned buffer_size;  /* provided-buffer size */
	unsigned buffers;      /* provided buffers per worker */
	unsigned max_conns;    /* connection slab size per worker */
	struct xprt_ctx *xprt; /* what links are made of (xprt_tls.h); the caller frees it */
	/* relay */
	int tunnel_fds[ENGINE_MAX_WORKERS]; /* listening tunnel sockets, one per worker
					       (sock_listen_group); the engine owns them */
	/*
	 * From here to ntrusted: what engine_reconfigure changes while the engine
	 * runs (each connection keeps the values it was accepted with).
	 */
	unsigned idle_timeout_ms;      /* a stream without bytes this long is reset; 0 = off */
	unsigned pending_timeout_ms;   /* a public conn waits this long for a data link */
	unsigned max_conns_per_source; /* per tunnel and source address (IPv6: /64); 0 = off */
	/* relay: the HTTP edge */
	unsigned header_timeout_ms; /* a request head arrives whole within this */
	unsigned keepalive_ms;	    /* an HTTP connection idle between requests closes */
	unsigned max_head;	    /* bytes of one request head (ENGINE_HEAD_MAX at most) */
	uint16_t http_port;	    /* X-Forwarded-Port of the HTTP listener */
	uint16_t https_port;	    /* where --redirect-https sends browsers */
	bool https_shared;	    /* the tunnel listener is the HTTPS port too */
	struct xprt_ctx *edge_xprt; /* what terminated HTTPS connections are made of (the
				       domain's certificate is picked per connection) */
	const struct cidr *trusted; /* [http] trusted_proxies: their X-Forwarded-* stay */
	unsigned ntrusted;
	unsigned dns_cache; /* relay: names the mesh resolver caches ([socks] dns_cache; 0: 512) */
	struct xprt_ctx *socks_xprt; /* relay: what [socks] tls_listen's connections are made of
					(the server certificate, no ALPN required); NULL: none */
	/* relay: UDP flows ([udp]); client: udp_idle_ms only (0: UDP_CLIENT_IDLE_MS) */
	unsigned udp_idle_ms;	/* a flow without a datagram either way this long ends (EOF) */
	unsigned udp_max_flows; /* open flows per tunnel; a new one past it is dropped */
	unsigned udp_queue;	/* datagrams a flow queues while it waits for a data link */
	/* client */
	struct sockaddr_storage server_addr;
	socklen_t server_addr_len;
	char server_host[256];
	unsigned pool_idle;
	unsigned max_links;
	struct engine_ops ops;
};

/*
 * relay: the record of one relayed public connection (a TCP port's, or the HTTP
 * edge's once routed to a tunnel), made by its worker when it closes and queued
 * in the worker's record ring (datapath/recring.h) for the control thread,
 * which sends them to controld in batches (conn_records, ctl_proto.h).
 */
enum engine_close {
	EC_NONE = 0,	    /* not decided yet (conn_close classifies it) */
	EC_DONE,	    /* both ends finished (FIN), or the edge closed a finished exchange */
	EC_RESET,	    /* either end reset the connection, or its data link went away */
	EC_IDLE_TIMEOUT,    /* [tunnel] idle_timeout */
	EC_PENDING_TIMEOUT, /* no data link within [tunnel] pending_timeout */
	EC_REFUSED,	    /* reset at once: max_conns_per_source, max_links, descriptors,
			       the firewall */
	EC_ERROR,	    /* relayd's own failure (memory, a buffer overrun, TLS) */
	EC_SHUTDOWN,	    /* relayd stopping, the tunnel going offline, its port released */
	EC_COUNT
};

/* the names controld stores (engine_close_name) */
const char *engine_close_name(unsigned reason);

/* ER_MESH: a stream a client opened (OPEN): the destination tunnel's end (host
   "from:OPENER"), or an external destination's (tunnel: the opener, host: the name) */
enum engine_rec_kind { ER_TCP = 0, ER_HTTP = 1, ER_HTTPS = 2, ER_MESH = 3, ER_UDP = 4 };

struct engine_record {
	char tunnel[LINK_ID_MAX];  /* NUL-terminated */
	char host[DOMAIN_REC_MAX]; /* HTTP(S): the request's host (or SNI), "" for TCP; mesh:
				      "from:ID" or the name asked for */
	uint8_t src[16];	   /* the source address, IPv4-mapped or IPv6 */
	uint16_t src_port, port;   /* the source port; the public port it reached */
	uint8_t kind, reason;	   /* enum engine_rec_kind, enum engine_close */
	uint64_t start_ms;	   /* Unix time of the accept, ms */
	uint64_t duration_ms;
	uint64_t bytes_in, bytes_out; /* public -> tunnel, tunnel -> public */
};

struct engine_stats {
	uint64_t conns;	      /* open public/local connections */
	uint64_t conns_total; /* accepted since start */
	uint64_t bytes_in;    /* plain -> link */
	uint64_t bytes_out;   /* link -> plain */
	uint64_t links;	      /* data links open */
	uint64_t idle_links;
	uint64_t refused_per_source; /* public conns reset: their source was at its limit */
	uint64_t idle_timeouts;	     /* streams reset after idle_timeout */
	uint64_t pending_timeouts;   /* public conns reset: no data link within pending_timeout */
	uint64_t refused_max_links;  /* public conns reset at once: their tunnel held max_links */
	uint64_t refused_fd_limit;   /* public conns reset at once: out of file descriptors */
	uint64_t links_ktls;	     /* data links open whose TLS records the kernel handles */
	uint64_t links_tls;	     /* data links open with userspace TLS (links - links_ktls) */
	uint64_t ktls_fallbacks;     /* links whose kTLS install failed (auto: went on in
					userspace TLS; on: closed) */
	uint64_t firewall_refused;   /* connections refused at accept: source denied or not
					allowed (relay) */
	uint64_t http_requests;	     /* request heads the HTTP edge forwarded */
	uint64_t http_errors[8];     /* edge answers by cause (enum http_cause, edge.c) */
	uint64_t http_tls_kernel;    /* terminated HTTPS connections whose TLS went to kTLS */
	uint64_t records_dropped;    /* connection records a full worker ring dropped */
	uint64_t mesh_opened; /* OPENs answered LINK_OPEN_OK (relay: answered; client: received) */
	/* OPENs refused, by OPENED status (client: [0] counts those it refused itself: no data
	   link within 10 s, a link lost, a server too old, a SOCKS handshake never done) */
	uint64_t mesh_refused[LINK_OPEN_STATUS_MAX + 1];
	uint64_t mesh_denied_default; /* of the LINK_OPEN_DENIED: by the default (no rule) */
	/* relay: the mesh resolver (resolve.h): getaddrinfo calls, answers from its cache,
	   requests refused for a full queue */
	uint64_t dns_lookups, dns_cache_hits, dns_queue_full;
	/* UDP flows (udp.c): open (a gauge), ended by the idle timeout, datagrams each way,
	   datagrams dropped by cause (enum udp_drop) */
	uint64_t udp_flows, udp_expired, udp_in, udp_out, udp_dropped[5];
	/* relay: relayd's SOCKS listeners (socksd.c): connections accepted, and those refused
	   before a CONNECT by cause (enum socks_refusal) */
	uint64_t socks_conns, socks_refused[5];
};

/* why relayd's SOCKS server refused a connection before its CONNECT (socks_refused) */
enum socks_refusal {
	SOCKS_R_AUTH,	   /* a wrong user or password (RFC 1929 status 1) */
	SOCKS_R_LOCKED,	   /* its source had more than 5 failed logins in 60 s */
	SOCKS_R_LIMIT,	   /* the listener's or the source's handshakes in flight */
	SOCKS_R_METHOD,	   /* no user/password method offered (0xff) */
	SOCKS_R_HANDSHAKE, /* malformed, over 1 KiB, over 10 s, a command other than CONNECT */
};

/* why a datagram was dropped (engine_stats.udp_dropped) */
enum udp_drop {
	UDP_DROP_QUEUE,
	UDP_DROP_FLOWS,
	UDP_DROP_OVERSIZE,
	UDP_DROP_OFFLINE,
	UDP_DROP_SOCKS, /* at a SOCKS UDP ASSOCIATE's relay (socksd.c): another source, a
			   malformed datagram or a fragment, a refused destination, a limit */
};

/* One worker's ring and connections (engine_worker_stats); counters only grow. */
struct engine_worker_stats {
	uint64_t sqes;	      /* submission queue entries the kernel took */
	uint64_t cqes;	      /* completions reaped */
	uint64_t waits;	      /* io_uring_submit_and_wait calls: completion batches */
	uint64_t sq_full;     /* submits forced by a full submission queue */
	uint64_t nobufs;      /* receives that found the provided-buffer ring empty (ENOBUFS) */
	uint64_t cq_overflow; /* completions the kernel dropped for a full CQ (its count) */
	uint64_t conns;	      /* gauge: public/local connections open on it */
	uint64_t conns_total; /* accepted on it since start */
	uint64_t links;	      /* gauge: data links open on it */
};

/* the largest [http] max_head: the workers' head scratch holds this much */
#define ENGINE_HEAD_MAX 32768

/* Starts the workers; 0 or -errno with err (then everything is freed, tunnel_fds closed). */
int engine_start(struct engine **out, const struct engine_config *cfg, char *err, size_t errlen);
unsigned engine_workers(const struct engine *e);
/* What links are made of (engine_config.xprt): the control thread swaps its certificate. */
struct xprt_ctx *engine_xprt(const struct engine *e);
/* descriptors relayed connections may hold: the open-file limit, less a reserve */
unsigned long engine_fd_budget(const struct engine *e);
/* Posts a mailbox message to worker i (i < 0: to every worker, data copied each). */
int engine_post(struct engine *e, int worker, const struct mb_msg *m);
/*
 * relay: a reload's idle_timeout_ms, pending_timeout_ms, max_conns_per_source,
 * header_timeout_ms, keepalive_ms, max_head and trusted/ntrusted (copied) go
 * to every worker as one reference-counted table (MB_LIVE); the other fields
 * of cfg are not looked at. Connections accepted from then on take the new
 * values; open ones keep theirs. 0 or -ENOMEM (nothing changed).
 */
int engine_reconfigure(struct engine *e, const struct engine_config *cfg);
/*
 * relay: worker i's connection-record ring (recring.h), which one consumer
 * thread (relayd's control thread) drains; NULL for the client role.
 */
struct rec_ring *engine_rec_ring(struct engine *e, unsigned i);
/* Sums the workers' counters (relaxed reads). */
void engine_stats(struct engine *e, struct engine_stats *out);
/* Worker i's figures (i < engine_workers; else all zero), read without stopping it. */
void engine_worker_stats(struct engine *e, unsigned i, struct engine_worker_stats *out);
/* Each worker ticks this often (timeouts, re-arms, purges). */
#define ENGINE_TICK_MS 500
/*
 * Samples the workers' tick counters (one caller thread, often: at least
 * every ENGINE_TICK_MS / 2); true when every worker's counter moved within
 * the last max_age_ms. The watchdog pings only then, so a stuck worker gets
 * the daemon restarted.
 */
bool engine_alive(struct engine *e, uint64_t now, uint64_t max_age_ms);
/* Tells every worker to drain and waits for them (at most timeout_ms). */
void engine_stop(struct engine *e, unsigned timeout_ms);
/* Frees a stopped engine (NULL-safe); nothing may call into it after this. */
void engine_free(struct engine *e);

/* Parses "host" + port into a sockaddr (numeric or resolved); 0 or -errno. */
int engine_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len);

#endif

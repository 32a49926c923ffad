// SPDX-License-Identifier: Apache-2.0
/*
 * relayd's control thread. It owns the connection to nave-controld, the
 * tunnel registry and the port table, and turns control-link requests into
 * controld requests and back. It runs a poll() loop over the controld socket
 * and an eventfd fed by the workers; every answer to a tunnel goes back
 * through the home worker's mailbox. controld being away never stops
 * forwarding: requests that need it wait (bounded) and then fail with a
 * clear reason, and the thread reconnects and resynchronises on its own.
 */
#include "acme_chal.h"
#include "ctlthread.h"
#include "recring.h"
#include "kern.h"
#include "tls/ktls.h"
#include "tls/pki.h"
#include "tls/tls.h"
#include "routes.h"
#include "xprt_tls.h"

#include "ctl_proto.h"
#include "domain.h"
#include "mesh.h"
#include "passwd.h"
#include "log.h"
#include "msg.h"
#include "sock.h"
#include "util.h"
#include "rulemsg.h"
#include "support.h"
#include "supmsg.h"
#include "valid.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define REQ_TIMEOUT_MS 10000
#define STATS_MS       2000
#define MAX_REQS       4096
/* requests one tunnel may have waiting for controld: more than a connecting client
   sends at once (tcp_sync and a tcp_add for each of at most LINK_RULES_MAX rules) */
#define TUNNEL_REQS	   (2 * LINK_RULES_MAX)
#define CD_OUT_MAX	   (8u << 20) /* queued bytes before controld counts as stuck */
#define NPORTS		   65536      /* the port table covers every port: the range may move */
#define RECONFIGURE_WAIT_S 10	      /* how long a reload waits for this thread */
/* connection records (conn_records): at most this many per message (one is at most
   ~560 bytes of JSON, so a batch stays well under MSG_MAX), sent when a batch is
   full or REC_FLUSH_MS after the last send; dropped (counted) while controld is away
   or more than REC_OUT_MAX bytes wait for it */
#define REC_BATCH    96
#define REC_FLUSH_MS 1000
#define REC_OUT_MAX  (1u << 20)
/* conn_records messages queued for controld and not yet written, at most */
#define REC_Q_MAX 4096
/* at shutdown, how long the last records may take to reach controld */
#define REC_STOP_FLUSH_MS 2000
/* a record's JSON without its tunnel id and host: keys, numbers, address, reason */
#define REC_JSON_FIXED 360

/* An HTTP rule of a tunnel's session (http_add), granted or waiting for controld. */
struct hrule {
	char name[LINK_RULE_MAX + 1];
	struct http_route r; /* domain and options; route once granted */
	bool granted;
};

/* A domain controld says a tunnel holds (sync, domain_grant). */
struct hdom {
	char domain[DOMAIN_MAX + 1];
	struct rtun *rt;
};

/* A tunnel plus what only this thread touches. */
struct rtun {
	struct tunnel t;  /* first: engine callbacks get &t */
	struct hrule *hr; /* this session's HTTP rules */
	unsigned nhr;
	uint16_t next_route;
	bool online;
	bool rule_push;	   /* the session's HELLO named the "rule_push" feature (link_proto.h) */
	bool support;	   /* and "support": it may ask for support sessions */
	char source[48];   /* the control link's address as text ("" unknown) */
	long long push_op; /* the rule_push in flight to its client (0 none): the only
			      rule_result passed on to controld */
	unsigned reqs;	   /* requests of this session waiting for controld */
	int worker;
	uint32_t idx, gen;
	uint64_t since;
	/* a session that logged in with a certificate: its serial ("" a token's session) and
	 * end of validity, looked at with every CRL read (revoked or expired: kicked) */
	char cert_serial[PKI_SERIAL_MAX];
	int64_t cert_not_after;
	uint8_t *cert_der; /* the chain it logged in with (checked again on a new CA or CRL) */
	size_t cert_der_len;
	uint64_t cert_kicked; /* when it was shut down for its certificate (ms; 0 not) */
};

enum ev_type { EV_HELLO, EV_MESSAGE, EV_OFFLINE, EV_SOCKS, EV_CTL };

struct ev {
	enum ev_type type;
	int worker;
	uint32_t idx, gen;
	struct rtun *rt;
	json_t *obj;
	char reason[96];
	char source[48]; /* EV_HELLO: the client's address as text, "" when unknown */
	uint8_t *certs;	 /* EV_HELLO: what the client presented in its handshake (DER) */
	size_t certs_len;
	struct ev *next;
};

enum req_kind {
	RQ_AUTH,
	RQ_PORT,
	RQ_RELEASE,
	RQ_SYNC,
	RQ_DEAUTH,
	RQ_DOMAIN,
	RQ_DOMAIN_RELEASE,
	RQ_SOCKS,   /* a login on relayd's SOCKS server: its token checked (auth, mode "check") */
	RQ_SUPPORT, /* support_request, support_end, support_ls (its msg's type says which) */
	RQ_SUPCONN  /* a supporter's link: support_connect (link_proto.h "Support streams") */
};

struct req {
	long long id;
	enum req_kind kind;
	bool sent;
	uint64_t deadline;
	int worker;
	uint32_t idx, gen;
	struct rtun *rt;
	json_t *hello;	       /* the HELLO (RQ_AUTH) */
	struct pki_ident cert; /* RQ_AUTH by certificate (cert.name set): what it verified as */
	uint8_t *certs;	       /* and the chain, for the session (rtun cert_der) */
	size_t certs_len;
	long long creq; /* client's req id */
	bool udp;	/* RQ_PORT, RQ_RELEASE: a UDP rule's port (udp_add, udp_rm) */
	char name[64];
	uint16_t port;
	char domain[DOMAIN_MAX + 1]; /* RQ_DOMAIN, RQ_DOMAIN_RELEASE */
	json_t *msg;		     /* what to send to controld */
	struct req *next;
};

struct ctlthread {
	struct cfg_server cfg;
	struct engine *e;
	pthread_t thread;
	bool running; /* the thread was started */
	_Atomic bool stop;
	char fingerprint[128];
	char ktls[64], steering[64];
	struct kern *kern; /* steering and XDP (kern.h); relayd owns it */
	/* a firewall push arriving in pieces */
	struct cidr *fw_deny, *fw_allow;
	unsigned fw_ndeny, fw_nallow;
	/* registry */
	pthread_mutex_t lock;
	struct rtun *tunnels[256];
	/* port table */
	/* indexed by port, all 65536: a reload may move the range ([ports] range) */
	_Atomic(struct tunnel *) *route;
	bool *listening;
	bool *udp; /* indexed by port: a UDP port (its listeners are datagram sockets) */
	unsigned nlistening;
	int *hold; /* steering = bpf: the socket that holds each allocated port, -1 */
	/* a reload's live settings for this thread (ctlthread_reconfigure) */
	pthread_mutex_t rc_lock;
	pthread_cond_t rc_cond;
	struct cfg_server *rc_next; /* posted, not taken yet */
	unsigned rc_posted, rc_done;
	int rc_result;
	char rc_why[768];
	unsigned unlisten_posted; /* MB_UNLISTEN messages sent to workers */
	/* the HTTP edge: domains held (controld's view) and the routes the workers have */
	struct hdom *doms;
	unsigned ndoms, capdoms;
	struct http_routes *routes; /* this thread's reference */
	json_t *sync_acc;
	bool routes_dirty;	   /* routes_build at the end of this loop pass */
	struct http_routes *certs; /* the HTTPS edge's certificates (this thread's reference) */
	uint64_t certs_sig, next_certs; /* a sync arriving in pieces */
	uint64_t link_sig; /* the tunnel port's certificate and key files ([tls]) as last read */
	bool link_looked;  /* link_sig holds a look (0 there: a file was missing) */
	/* [tls] client_ca and client_crl: certificate logins (NULL: client_auth = off) */
	struct pki_verifier *pki;
	uint64_t next_pki, next_pki_scan;
	bool pki_changed;		 /* a reload changed client_ca, client_crl or client_auth */
	struct cfg_server rc_eff;	 /* what a reload left in force (ctlthread_reconfigure) */
	_Atomic unsigned unlisten_acked; /* and handled by them */
	/* worker events */
	int efd;
	pthread_mutex_t ev_lock;
	struct ev *ev_head, *ev_tail;
	/* controld */
	int fd;
	struct msg_reader mr;
	struct msg_outq out;
	uint64_t next_connect;
	uint64_t next_stats;
	long long next_req;
	struct req *reqs;
	unsigned nreqs;
	uint64_t started;
	uint64_t next_records;
	uint64_t rec_sent, rec_dropped; /* records written to controld; dropped here */
	/*
	 * The conn_records messages in out, oldest first: a message's records count as
	 * sent when its last byte is written (out_done reaches end), as dropped when the
	 * queue is thrown away with the connection. Byte positions count from the
	 * connection's start.
	 */
	struct rec_q {
		uint64_t end;
		uint32_t n;
	} recq[REC_Q_MAX];
	unsigned recq_head, recq_len;
	uint64_t out_queued, out_done;
	uint64_t stray_results; /* rule_results from clients that answer no op in flight */
	time_t started_unix;	/* wall clock at start: stats "started" */
	/* the mesh policy: a push arriving in pieces, the last whole one, the workers' table */
	json_t *mesh_acc;     /* NULL: no push under way */
	json_int_t mesh_next; /* the seq the push under way expects next */
	json_t *mesh_rules;
	struct mesh_table *mesh; /* this thread's reference (its counters go into stats) */
	/* support sessions: which tunnel each live one belongs to (support_closed's address) */
	struct sup_owner {
		char id[SUP_ID_LEN + 1];
		char tid[LINK_ID_MAX];
	} * sup_own;
	unsigned nsup_own;
};

/* ---------- registry ---------- */

static unsigned name_hash(const char *s)
{
	unsigned h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h & 255;
}

static struct rtun *rtun_find(struct ctlthread *ct, const char *id, bool create)
{
	unsigned h = name_hash(id);
	struct rtun *rt;

	pthread_mutex_lock(&ct->lock);
	for (rt = ct->tunnels[h]; rt; rt = (struct rtun *)rt->t.next)
		if (!strcmp(rt->t.id, id))
			break;
	if (!rt && create && strlen(id) < LINK_ID_MAX) {
		rt = calloc(1, sizeof(*rt));
		if (rt) {
			str_copy(rt->t.id, sizeof(rt->t.id), id);
			atomic_init(&rt->t.home, -1);
			atomic_init(&rt->t.links, 0);
			atomic_init(&rt->t.arriving, 0);
			rt->t.ctl_idx = rt->t.idle_head = UINT32_MAX;
			rt->t.pend_head = rt->t.pend_tail = UINT32_MAX;
			rt->t.max_links = ct->cfg.max_links;
			rt->t.max_pool = ct->cfg.max_pool_size;
			rt->t.heartbeat_ms = ct->cfg.heartbeat_ms;
			rt->t.next = (struct tunnel *)ct->tunnels[h];
			ct->tunnels[h] = rt;
		}
	}
	pthread_mutex_unlock(&ct->lock);
	return rt;
}

static struct tunnel *op_tunnel_find(void *arg, const char *id)
{
	struct rtun *rt = rtun_find(arg, id, false);

	return rt ? &rt->t : NULL;
}

static struct tunnel *op_port_route(void *arg, uint16_t port)
{
	struct ctlthread *ct = arg;

	/* only ports of the range are ever routed */
	return atomic_load(&ct->route[port]);
}

static bool op_port_is_udp(void *arg, uint16_t port)
{
	struct ctlthread *ct = arg;

	return __atomic_load_n(&ct->udp[port], __ATOMIC_RELAXED);
}

/* ---------- worker events ---------- */

static void ev_push(struct ctlthread *ct, struct ev *ev)
{
	uint64_t one = 1;

	pthread_mutex_lock(&ct->ev_lock);
	if (ct->ev_tail)
		ct->ev_tail->next = ev;
	else
		ct->ev_head = ev;
	ct->ev_tail = ev;
	pthread_mutex_unlock(&ct->ev_lock);
	if (write(ct->efd, &one, sizeof(one)) < 0)
		log_error("control thread: eventfd write: %s", strerror(errno));
}

static void op_socks_auth(void *arg, int worker, uint32_t idx, uint32_t gen, const char *pass,
			  const uint8_t source[16])
{
	struct ev *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return; /* the login times out with the handshake */
	ev->obj = json_string(pass);
	if (!ev->obj) { /* not UTF-8: socks5.c took printable ASCII only, so never */
		free(ev);
		return;
	}
	sock_addr16_ntop(source, ev->source, sizeof(ev->source));
	ev->type = EV_SOCKS;
	ev->worker = worker;
	ev->idx = idx;
	ev->gen = gen;
	ev_push(arg, ev);
}

static void op_ctl_hello(void *arg, int worker, uint32_t idx, uint32_t gen, void *obj,
			 const uint8_t *source, uint8_t *certs, size_t certs_len)
{
	struct ev *ev = calloc(1, sizeof(*ev));

	if (!ev) {
		json_decref(obj);
		free(certs);
		return;
	}
	ev->certs = certs;
	ev->certs_len = certs_len;
	if (source)
		sock_addr16_ntop(source, ev->source, sizeof(ev->source));
	ev->type = EV_HELLO;
	ev->worker = worker;
	ev->idx = idx;
	ev->gen = gen;
	ev->obj = obj;
	ev_push(arg, ev);
}

/* A supporter's link reached its device or ended: an audit record (support_event). */
static void op_support_event(void *arg, const struct engine_support *s, bool connected,
			     uint64_t conn, const uint8_t source[16], uint16_t source_port,
			     uint64_t up, uint64_t down, uint64_t duration_ms, const char *why)
{
	struct ev *ev = calloc(1, sizeof(*ev));
	char src[48];
	json_t *d;

	if (!ev)
		return;
	sock_addr16_ntop(source, src, sizeof(src));
	if (connected)
		d = json_pack("{s:I, s:s, s:i, s:s}", "conn", (json_int_t)conn, "source", src,
			      "source_port", (int)source_port, "service", s->service);
	else
		d = json_pack("{s:I, s:I, s:I, s:I, s:s}", "conn", (json_int_t)conn, "bytes_up",
			      (json_int_t)up, "bytes_down", (json_int_t)down, "duration_ms",
			      (json_int_t)duration_ms, "why", why ? why : "closed");
	ev->obj =
	    d ? json_pack("{s:s, s:s, s:s, s:o}", "type", CTL_SUPPORT_EVENT, "session", s->session,
			  "event", connected ? "connected" : "disconnected", "detail", d)
	      : NULL;
	if (!ev->obj) {
		free(ev);
		return;
	}
	ev->type = EV_CTL;
	ev_push(arg, ev);
}

static void op_ctl_message(void *arg, struct tunnel *t, void *obj)
{
	struct ev *ev = calloc(1, sizeof(*ev));

	if (!ev) {
		json_decref(obj);
		return;
	}
	ev->type = EV_MESSAGE;
	ev->rt = (struct rtun *)t;
	ev->obj = obj;
	ev_push(arg, ev);
}

static void op_tunnel_offline(void *arg, struct tunnel *t, const char *reason)
{
	struct ev *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return;
	ev->type = EV_OFFLINE;
	ev->rt = (struct rtun *)t;
	str_copy(ev->reason, sizeof(ev->reason), reason);
	ev_push(arg, ev);
}

/* ---------- talking to workers ---------- */

static void send_to_link(struct ctlthread *ct, int worker, uint32_t idx, uint32_t gen, json_t *obj,
			 bool close_after)
{
	struct mb_msg m;
	size_t n;

	memset(&m, 0, sizeof(m));
	m.type = MB_CTL_SEND;
	m.idx = idx;
	m.gen = gen;
	m.close_after = close_after;
	m.data = msg_encode(obj, &n);
	m.len = n;
	if (m.data)
		engine_post(ct->e, worker, &m);
	free(m.data);
	json_decref(obj);
}

static void tunnel_kick(struct ctlthread *ct, struct rtun *rt, const char *reason);
static void pki_poll(struct ctlthread *ct);
_Static_assert(TLS_CLIENT_CERTS_MAX == PKI_CHAIN_MAX + 1,
	       "a chain one longer than the check takes");

static void link_error(struct ctlthread *ct, int worker, uint32_t idx, uint32_t gen,
		       const char *reason)
{
	send_to_link(ct, worker, idx, gen,
		     json_pack("{s:s, s:s}", "type", LINK_MSG_ERROR, "reason", reason), true);
}

static void tunnel_reply(struct ctlthread *ct, struct rtun *rt, json_t *obj)
{
	if (!rt->online) {
		json_decref(obj);
		return;
	}
	send_to_link(ct, rt->worker, rt->idx, rt->gen, obj, false);
}

/* ---------- controld connection ---------- */

static void fw_pieces_drop(struct ctlthread *ct)
{
	free(ct->fw_deny);
	free(ct->fw_allow);
	ct->fw_deny = ct->fw_allow = NULL;
	ct->fw_ndeny = ct->fw_nallow = 0;
}

static void cd_disconnect(struct ctlthread *ct, const char *why);

/* Queues a message for controld (nothing when it is away: state is resent on hello). */
static void cd_send(struct ctlthread *ct, json_t *obj)
{
	int r;

	size_t len0 = ct->out.len;

	if (ct->fd < 0)
		return;
	r = msg_outq_push(&ct->out, obj, CD_OUT_MAX);
	if (!r)
		ct->out_queued += ct->out.len - len0;
	if (r == -ENOBUFS)
		cd_disconnect(ct, "it is not reading (output queue full)");
	else if (r < 0)
		log_every(NLOG_WARN, "cannot queue a message for nave-controld: %s", strerror(-r));
}

/* The records of the messages written up to out_done count as sent. */
static void recq_written(struct ctlthread *ct)
{
	while (ct->recq_len && ct->recq[ct->recq_head].end <= ct->out_done) {
		ct->rec_sent += ct->recq[ct->recq_head].n;
		ct->recq_head = (ct->recq_head + 1) % REC_Q_MAX;
		ct->recq_len--;
	}
}

/* The queue is thrown away (the connection is gone): its records count as dropped. */
static void recq_drop(struct ctlthread *ct)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < ct->recq_len; i++)
		n += ct->recq[(ct->recq_head + i) % REC_Q_MAX].n;
	if (n)
		log_every(NLOG_WARN,
			  "%llu connection record(s) queued for nave-controld dropped (the "
			  "connection is gone)",
			  (unsigned long long)n);
	ct->rec_dropped += n;
	ct->recq_head = ct->recq_len = 0;
	ct->out_queued = ct->out_done = 0;
}

static void cd_flush(struct ctlthread *ct)
{
	size_t len0 = ct->out.len;
	int r;

	if (ct->fd < 0 || !ct->out.len)
		return;
	r = msg_outq_flush(&ct->out, ct->fd);
	ct->out_done += len0 - ct->out.len;
	recq_written(ct);
	if (r < 0)
		cd_disconnect(ct, strerror(-r));
}

/*
 * At shutdown: writes what is queued for up to ms, then counts the records still
 * queued as dropped (and logs the totals: no stats go out any more).
 */
static void cd_flush_wait(struct ctlthread *ct, unsigned ms)
{
	uint64_t until = now_ms() + ms;

	while (ct->fd >= 0 && ct->out.len && now_ms() < until) {
		struct pollfd p = {.fd = ct->fd, .events = POLLOUT};

		if (poll(&p, 1, 50) < 0 && errno != EINTR)
			break;
		cd_flush(ct);
	}
	recq_drop(ct);
	if (ct->rec_sent || ct->rec_dropped)
		log_info("connection records: %llu sent to nave-controld, %llu dropped",
			 (unsigned long long)ct->rec_sent, (unsigned long long)ct->rec_dropped);
}

static json_t *online_list(struct ctlthread *ct, bool full)
{
	json_t *a = json_array();

	pthread_mutex_lock(&ct->lock);
	for (unsigned h = 0; h < 256; h++)
		for (struct rtun *rt = ct->tunnels[h]; rt; rt = (struct rtun *)rt->t.next) {
			if (!rt->online)
				continue;
			if (full)
				json_array_append_new(
				    a, json_pack("{s:s, s:s, s:s, s:s, s:s}", "tunnel_id", rt->t.id,
						 "hostname", rt->t.hostname, "os", rt->t.os, "arch",
						 rt->t.arch, "client_version", rt->t.version));
			else
				json_array_append_new(a, json_string(rt->t.id));
		}
	pthread_mutex_unlock(&ct->lock);
	return a;
}

/* worker_stats (ctl_proto.h): one object per worker, in worker order */
static json_t *worker_stats(struct ctlthread *ct)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < engine_workers(ct->e); i++) {
		struct engine_worker_stats w;

		engine_worker_stats(ct->e, i, &w);
		json_array_append_new(
		    a, json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "sqes",
				 (json_int_t)w.sqes, "cqes", (json_int_t)w.cqes, "waits",
				 (json_int_t)w.waits, "sq_full", (json_int_t)w.sq_full, "nobufs",
				 (json_int_t)w.nobufs, "cq_overflow", (json_int_t)w.cq_overflow,
				 "conns", (json_int_t)w.conns, "conns_total",
				 (json_int_t)w.conns_total, "links", (json_int_t)w.links));
	}
	return a ? a : json_null();
}

static void mesh_pieces_drop(struct ctlthread *ct)
{
	json_decref(ct->mesh_acc);
	ct->mesh_acc = NULL;
}

static void mesh_count_cb(void *arg, uint32_t rule, uint64_t allowed, uint64_t denied)
{
	/* only rules that decided something: a stats message stays small */
	if (allowed || denied)
		json_array_append_new(arg, json_pack("{s:I, s:I, s:I}", "rule", (json_int_t)rule,
						     "allowed", (json_int_t)allowed, "denied",
						     (json_int_t)denied));
}

/*
 * A stats message too large for MSG_MAX (hundreds of workers, many tunnels
 * online, XDP port counters) goes without worker_stats rather than not at all.
 */
static void stats_fit(json_t *o)
{
	char *t = json_dumps(o, JSON_COMPACT);
	size_t n = t ? strlen(t) : 0;

	free(t);
	if (n <= MSG_MAX)
		return;
	json_object_del(o, "worker_stats");
	log_every(NLOG_WARN, "stats: %zu bytes with worker_stats: sent without them", n);
	t = json_dumps(o, JSON_COMPACT);
	n = t ? strlen(t) : 0;
	free(t);
	if (n <= MSG_MAX)
		return;
	json_object_del(o, "mesh_rules");
	log_every(NLOG_WARN, "stats: %zu bytes with mesh_rules: sent without them", n);
}

/* mesh streams (OPEN): opened, refused by OPENED status (link_proto.h), default denials */
static json_t *mesh_stats(const struct engine_stats *s)
{
	static const char *const keys[LINK_OPEN_STATUS_MAX + 1] = {
	    [LINK_OPEN_DENIED] = "denied",
	    [LINK_OPEN_NOT_FOUND] = "not_found",
	    [LINK_OPEN_OFFLINE] = "offline",
	    [LINK_OPEN_NOT_ALLOWED] = "not_allowed",
	    [LINK_OPEN_DNS] = "dns",
	    [LINK_OPEN_REFUSED] = "refused",
	    [LINK_OPEN_UNREACHABLE] = "unreachable",
	    [LINK_OPEN_BUSY] = "busy",
	    [LINK_OPEN_BAD] = "bad"};
	json_t *refused = json_object();

	for (unsigned k = 1; k <= LINK_OPEN_STATUS_MAX; k++)
		json_object_set_new(refused, keys[k], json_integer((json_int_t)s->mesh_refused[k]));
	return json_pack("{s:I, s:o, s:I, s:{s:I, s:I, s:I}}", "opened", (json_int_t)s->mesh_opened,
			 "refused", refused, "denied_default", (json_int_t)s->mesh_denied_default,
			 "dns", "lookups", (json_int_t)s->dns_lookups, "cache_hits",
			 (json_int_t)s->dns_cache_hits, "queue_full",
			 (json_int_t)s->dns_queue_full);
}

static void send_stats(struct ctlthread *ct)
{
	struct engine_stats s;
	json_t *o;

	engine_stats(ct->e, &s);
	o = json_pack(
	    "{s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
	    "s:I, s:o}",
	    "type", CTL_STATS, "workers", (int)engine_workers(ct->e), "ktls", ct->ktls, "steering",
	    ct->steering, "conns", (json_int_t)s.conns, "conns_total", (json_int_t)s.conns_total,
	    "bytes_in", (json_int_t)s.bytes_in, "bytes_out", (json_int_t)s.bytes_out, "links",
	    (json_int_t)s.links, "links_ktls", (json_int_t)s.links_ktls, "links_tls",
	    (json_int_t)s.links_tls, "ktls_fallbacks", (json_int_t)s.ktls_fallbacks,
	    "refused_per_source", (json_int_t)s.refused_per_source, "idle_timeouts",
	    (json_int_t)s.idle_timeouts, "pending_timeouts", (json_int_t)s.pending_timeouts,
	    "uptime", (json_int_t)((now_ms() - ct->started) / 1000), "online",
	    online_list(ct, false));
	/* UDP port tunnels (udp.c) */
	json_object_set_new(o, "udp",
			    json_pack("{s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}}", "flows",
				      (json_int_t)s.udp_flows, "flows_expired",
				      (json_int_t)s.udp_expired, "datagrams_in",
				      (json_int_t)s.udp_in, "datagrams_out", (json_int_t)s.udp_out,
				      "dropped", "queue", (json_int_t)s.udp_dropped[UDP_DROP_QUEUE],
				      "flows", (json_int_t)s.udp_dropped[UDP_DROP_FLOWS],
				      "oversize", (json_int_t)s.udp_dropped[UDP_DROP_OVERSIZE],
				      "offline", (json_int_t)s.udp_dropped[UDP_DROP_OFFLINE],
				      "socks", (json_int_t)s.udp_dropped[UDP_DROP_SOCKS]));
	/* relayd's SOCKS server (socksd.c); its CONNECTs count in mesh */
	json_object_set_new(o, "socks",
			    json_pack("{s:I, s:{s:I, s:I, s:I, s:I, s:I}}", "conns",
				      (json_int_t)s.socks_conns, "refused", "auth",
				      (json_int_t)s.socks_refused[SOCKS_R_AUTH], "locked",
				      (json_int_t)s.socks_refused[SOCKS_R_LOCKED], "limit",
				      (json_int_t)s.socks_refused[SOCKS_R_LIMIT], "method",
				      (json_int_t)s.socks_refused[SOCKS_R_METHOD], "handshake",
				      (json_int_t)s.socks_refused[SOCKS_R_HANDSHAKE]));
	json_object_set_new(o, "firewall_refused", json_integer((json_int_t)s.firewall_refused));
	json_object_set_new(o, "refused_max_links", json_integer((json_int_t)s.refused_max_links));
	json_object_set_new(o, "refused_fd_limit", json_integer((json_int_t)s.refused_fd_limit));
	json_object_set_new(o, "records_sent", json_integer((json_int_t)ct->rec_sent));
	json_object_set_new(o, "records_dropped",
			    json_integer((json_int_t)(s.records_dropped + ct->rec_dropped)));
	json_object_set_new(o, "started", json_integer((json_int_t)ct->started_unix));
	json_object_set_new(o, "worker_stats", worker_stats(ct));
	/* the HTTP edge: requests forwarded, and what it answered itself (edge.c's causes) */
	json_object_set_new(
	    o, "http",
	    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "requests",
		      (json_int_t)s.http_requests, "bad_request", (json_int_t)s.http_errors[0],
		      "no_host", (json_int_t)s.http_errors[1], "unknown_host",
		      (json_int_t)s.http_errors[2], "offline", (json_int_t)s.http_errors[3],
		      "too_large", (json_int_t)s.http_errors[4], "timeout",
		      (json_int_t)s.http_errors[5], "busy", (json_int_t)s.http_errors[6],
		      "unauthorized", (json_int_t)s.http_errors[7]));
	json_object_set_new(json_object_get(o, "http"), "tls_kernel",
			    json_integer((json_int_t)s.http_tls_kernel));
	json_object_set_new(o, "mesh", mesh_stats(&s));
	/* the mesh policy's decisions per rule (0: the default), since relayd started */
	if (ct->mesh) {
		json_t *mr = json_array();

		mesh_table_counts(ct->mesh, mesh_count_cb, mr);
		json_object_set_new(o, "mesh_rules", mr ? mr : json_null());
	}
	kern_stats(ct->kern, o,
		   kern_steering(ct->kern) ? engine_workers(ct->e)
					   : ct->nlistening * engine_workers(ct->e));
	stats_fit(o);
	cd_send(ct, o);
	json_decref(o);
}

/* ---------- connection records ---------- */

static json_t *record_json(const struct engine_record *r)
{
	char src[INET6_ADDRSTRLEN];
	json_t *o;

	sock_addr16_ntop(r->src, src, sizeof(src));
	o = json_pack(
	    "{s:s, s:s, s:i, s:s, s:i, s:I, s:I, s:I, s:I, s:s}", "tunnel_id", r->tunnel, "kind",
	    r->kind == ER_HTTPS	 ? "https"
	    : r->kind == ER_HTTP ? "http"
	    : r->kind == ER_MESH ? "mesh"
	    : r->kind == ER_UDP	 ? "udp"
				 : "tcp",
	    "port", (int)r->port, "src", src, "src_port", (int)r->src_port, "start_ms",
	    (json_int_t)r->start_ms, "duration_ms", (json_int_t)r->duration_ms, "bytes_in",
	    (json_int_t)r->bytes_in, "bytes_out", (json_int_t)r->bytes_out, "reason",
	    r->kind == ER_UDP && r->reason == EC_IDLE_TIMEOUT ? "idle"
							      : engine_close_name(r->reason));
	if (o && r->kind != ER_TCP && r->host[0])
		json_object_set_new(o, "domain", json_string(r->host));
	return o;
}

static void records_send(struct ctlthread *ct, json_t *batch)
{
	json_t *o = json_pack("{s:s, s:o}", "type", CTL_CONN_RECORDS, "records", batch);

	uint64_t before = ct->out_queued;
	uint32_t n = (uint32_t)json_array_size(batch);

	if (!o) {
		ct->rec_dropped += n;
		return;
	}
	cd_send(ct, o);
	json_decref(o);
	if (ct->fd < 0 || ct->out_queued == before) {
		ct->rec_dropped += n; /* not queued */
		return;
	}
	/* records_pump queues none while the list is full */
	ct->recq[(ct->recq_head + ct->recq_len++) % REC_Q_MAX] =
	    (struct rec_q){.end = ct->out_queued, .n = n};
}

/*
 * The workers' record rings into conn_records messages: when a batch is full,
 * REC_FLUSH_MS after the last send, or now (force). Never waits: while controld is
 * away or not reading, the records are dropped and counted.
 */
static void records_pump(struct ctlthread *ct, bool force)
{
	unsigned nw = engine_workers(ct->e), nb = 0;
	uint64_t now = now_ms(), waiting = 0;
	const struct engine_record *rec;
	size_t bytes = 0, est;
	json_t *batch = NULL;

	for (unsigned i = 0; i < nw; i++) {
		struct rec_ring *r = engine_rec_ring(ct->e, i);

		if (r)
			waiting += rec_ring_count(r);
	}
	if (!waiting) {
		ct->next_records = now + REC_FLUSH_MS;
		return;
	}
	if (!force && waiting < REC_BATCH && now < ct->next_records)
		return;
	ct->next_records = now + REC_FLUSH_MS;
	for (unsigned i = 0; i < nw; i++) {
		struct rec_ring *r = engine_rec_ring(ct->e, i);
		uint32_t n = r ? rec_ring_count(r) : 0;

		for (uint32_t j = 0; j < n; j++) {
			json_t *o;

			if (ct->fd < 0 || ct->out.len > REC_OUT_MAX ||
			    ct->recq_len + (batch ? 1 : 0) >= REC_Q_MAX) {
				ct->rec_dropped++;
				continue;
			}
			rec = rec_ring_peek(r, j);
			o = record_json(rec);
			if (!o) {
				ct->rec_dropped++;
				continue;
			}
			/* a record's JSON is at most REC_JSON_FIXED plus its strings: a batch
			   is sent early rather than grow past MSG_MAX */
			est = REC_JSON_FIXED + strlen(rec->host) + 2 * strlen(rec->tunnel);
			if (batch && bytes + est > MSG_MAX - 1024) {
				records_send(ct, batch);
				batch = NULL;
				nb = 0;
			}
			if (!batch) {
				batch = json_array();
				bytes = 64;
			}
			json_array_append_new(batch, o);
			bytes += est;
			if (++nb == REC_BATCH) {
				records_send(ct, batch);
				batch = NULL;
				nb = 0;
			}
		}
		if (n)
			rec_ring_release(r, n);
	}
	if (batch)
		records_send(ct, batch);
}

static void cd_connect(struct ctlthread *ct)
{
	struct sockaddr_un sa;
	json_t *o;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/relay.sock", ct->cfg.runtime_dir) >=
	    (int)sizeof(sa.sun_path))
		return;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return;
	}
	fd_set_nonblock(fd, true);
	ct->fd = fd;
	msg_outq_reset(&ct->out);
	recq_drop(ct);
	msg_reader_free(&ct->mr);
	msg_reader_init(&ct->mr);
	log_info("connected to nave-controld at %s", sa.sun_path);
	o = json_pack("{s:s, s:i, s:i, s:i, s:s, s:s, s:s, s:o}", "type", CTL_RELAY_HELLO,
		      "version", CTL_PROTO_VERSION, "pid", (int)getpid(), "workers",
		      (int)engine_workers(ct->e), "ktls", ct->ktls, "steering", ct->steering,
		      "tls_fingerprint", ct->fingerprint, "online", online_list(ct, true));
	cd_send(ct, o);
	json_decref(o);
	for (struct req *r = ct->reqs; r; r = r->next) {
		if (!r->sent && r->msg) {
			cd_send(ct, r->msg);
			r->sent = true;
		}
	}
	send_stats(ct);
}

static void cd_disconnect(struct ctlthread *ct, const char *why)
{
	if (ct->fd < 0)
		return;
	log_warn("lost nave-controld (%s); forwarding continues, reconnecting", why);
	fw_pieces_drop(ct);
	if (ct->mesh_acc)
		log_warn("mesh: lost nave-controld in the middle of a policy push: discarded, the "
			 "policy in force stays");
	mesh_pieces_drop(ct);
	json_decref(ct->sync_acc);
	ct->sync_acc = NULL;
	close(ct->fd);
	ct->fd = -1;
	recq_drop(ct); /* the queue goes with the connection (cd_connect resets it) */
	ct->next_connect = now_ms() + 500;
	/* requests already sent are lost with the connection: resend them */
	for (struct req *r = ct->reqs; r; r = r->next)
		r->sent = false;
}

/* ---------- requests ---------- */

static struct req *req_new(struct ctlthread *ct, enum req_kind kind, json_t *msg)
{
	struct req *r;

	if (ct->nreqs >= MAX_REQS) {
		json_decref(msg);
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		json_decref(msg);
		return NULL;
	}
	r->id = ++ct->next_req;
	r->kind = kind;
	r->deadline = now_ms() + REQ_TIMEOUT_MS;
	json_object_set_new(msg, "req", json_integer(r->id));
	r->msg = msg;
	r->next = ct->reqs;
	ct->reqs = r;
	ct->nreqs++;
	if (ct->fd >= 0) {
		cd_send(ct, msg);
		r->sent = true;
	}
	return r;
}

static struct req *req_take(struct ctlthread *ct, long long id)
{
	for (struct req **pp = &ct->reqs; *pp; pp = &(*pp)->next) {
		struct req *r = *pp;

		if (r->id == id) {
			*pp = r->next;
			ct->nreqs--;
			return r;
		}
	}
	return NULL;
}

static void req_free(struct req *r)
{
	if (r->rt && r->rt->reqs)
		r->rt->reqs--;
	json_decref(r->hello);
	json_decref(r->msg);
	free(r->certs);
	free(r);
}

/* A request failed (refused by controld or timed out): tell whoever asked. */
static void req_error_reply(struct ctlthread *ct, struct rtun *rt, long long creq,
			    const char *reason)
{
	tunnel_reply(ct, rt,
		     json_pack("{s:s, s:I, s:s}", "type", LINK_MSG_REQ_ERROR, "req",
			       (json_int_t)creq, "reason", reason));
}

/* The answer to a SOCKS login goes back to its worker (MB_SOCKS_AUTH). */
static void socks_answer(struct ctlthread *ct, int worker, uint32_t idx, uint32_t gen,
			 struct tunnel *t, const json_t *ok, const char *reason, bool transient)
{
	struct engine_socks_auth a;
	struct mb_msg mb;
	const char *group = ok ? msg_str(ok, "group") : NULL;

	memset(&a, 0, sizeof(a));
	a.ok = t != NULL;
	a.transient = !a.ok && transient;
	if (ok) {
		a.mesh_role = json_is_true(json_object_get(ok, "mesh"));
		str_copy(a.group, sizeof(a.group),
			 group && valid_str(group, VALID_ID, LINK_GROUP_MAX) ? group : "");
	}
	str_copy(a.reason, sizeof(a.reason), reason ? reason : "");
	memset(&mb, 0, sizeof(mb));
	mb.type = MB_SOCKS_AUTH;
	mb.idx = idx;
	mb.gen = gen;
	mb.tun = t;
	mb.data = (uint8_t *)&a;
	mb.len = sizeof(a);
	engine_post(ct->e, worker, &mb); /* copies data */
}

/* controld refused r (CTL_ERROR): anything else is no word on the credential */
static void req_fail_as(struct ctlthread *ct, struct req *r, const char *reason, bool refused)
{
	if (r->kind == RQ_SOCKS)
		socks_answer(ct, r->worker, r->idx, r->gen, NULL, NULL, reason, !refused);
	else if (r->kind == RQ_AUTH || r->kind == RQ_SUPCONN)
		link_error(ct, r->worker, r->idx, r->gen, reason);
	else if (r->rt)
		req_error_reply(ct, r->rt, r->creq, reason);
}

static void req_fail(struct ctlthread *ct, struct req *r, const char *reason)
{
	req_fail_as(ct, r, reason, false);
}

/* ---------- listeners ---------- */

/*
 * A port released a moment ago may be granted again: its old sockets must have
 * left the workers first (at most 2 s), or we would refuse ourselves.
 */
static void wait_unlistened(struct ctlthread *ct)
{
	for (uint64_t until = now_ms() + 2000;
	     atomic_load(&ct->unlisten_acked) < ct->unlisten_posted && now_ms() < until;)
		usleep(1000);
}

/* Hands worker i its socket fds[i] of port (LISTEN_PORT for TCP, LISTEN_UDP). */
static void post_listeners(struct ctlthread *ct, const int *fds, unsigned n, uint16_t port,
			   enum listen_kind listener)
{
	for (unsigned i = 0; i < n; i++) {
		struct mb_msg m;

		memset(&m, 0, sizeof(m));
		m.type = MB_LISTEN;
		m.fd = fds[i];
		m.port = port;
		m.listener = listener;
		engine_post(ct->e, (int)i, &m);
	}
}

/*
 * A UDP port: one datagram socket per worker in a SO_REUSEPORT group, in both
 * steering modes (sk_lookup steers TCP only); a flow's own connected socket
 * joins the group at the home worker (udp.c). 0 or -errno with why.
 */
static int port_listen_udp(struct ctlthread *ct, uint16_t port, char *why, size_t whylen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	unsigned n = engine_workers(ct->e);
	int fds[ENGINE_MAX_WORKERS];
	int r, one = 1;

	wait_unlistened(ct);
	r = engine_resolve(ct->cfg.address, port, &ss, &sl);
	if (r < 0) {
		snprintf(why, whylen, "cannot resolve %.64s", ct->cfg.address);
		return r;
	}
	for (unsigned i = 0; i < n; i++) {
		fds[i] = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fds[i] < 0 ||
		    setsockopt(fds[i], SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
		    bind(fds[i], (struct sockaddr *)&ss, sl) < 0) {
			r = -errno;
			snprintf(why, whylen, "udp port %u: %s", port,
				 r == -EADDRINUSE ? "in use" : strerror(-r));
			for (unsigned j = 0; j <= i; j++)
				if (fds[j] >= 0)
					close(fds[j]);
			return r;
		}
	}
	post_listeners(ct, fds, n, port, LISTEN_UDP);
	ct->listening[port] = true;
	__atomic_store_n(&ct->udp[port], true, __ATOMIC_RELAXED);
	ct->nlistening++;
	log_every(NLOG_INFO, "udp port %u: listening", port);
	return 0;
}

/* Opens port's listeners (one per worker, held exclusively); 0 or -errno with why. */
static int port_listen(struct ctlthread *ct, uint16_t port, const char *tid, char *why,
		       size_t whylen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	unsigned n = engine_workers(ct->e);
	int fds[ENGINE_MAX_WORKERS];
	int r;

	if (ct->listening[port])
		return 0;
	if (kern_steering(ct->kern)) {
		int *hold = &ct->hold[port];

		/*
		 * The port is ours while it is allocated: a bound socket that never
		 * listens keeps every other process from binding it (their listener
		 * would get nothing: sk_lookup runs first), and someone already
		 * there keeps it from us, as a failed bind does in listeners mode.
		 */
		r = engine_resolve(ct->cfg.address, port, &ss, &sl);
		if (r < 0) {
			snprintf(why, whylen, "cannot resolve %.64s", ct->cfg.address);
			return r;
		}
		r = sock_hold_port((struct sockaddr *)&ss, sl, why, whylen);
		if (r < 0)
			return r;
		*hold = r;
		/* the range group takes it: one map entry, no listener */
		r = kern_port_set(ct->kern, port, name_hash(tid));
		if (r < 0) {
			snprintf(why, whylen, "ports map: %s", strerror(-r));
			close(*hold);
			*hold = -1;
			return r;
		}
		ct->listening[port] = true;
		ct->nlistening++;
		log_every(NLOG_INFO, "port %u: steered (bpf)", port);
		return 0;
	}
	/*
	 * A port released a moment ago may be granted again: its old listeners
	 * must have left the listening table first, or we would refuse ourselves.
	 */
	wait_unlistened(ct);
	r = engine_resolve(ct->cfg.address, port, &ss, &sl);
	if (r < 0) {
		snprintf(why, whylen, "cannot resolve %.64s", ct->cfg.address);
		return r;
	}
	/* a client asks for ports: it learns no more than "in use", and costs no /proc scan */
	r = sock_listen_group((struct sockaddr *)&ss, sl, n, 1024, false, fds, why, whylen);
	if (r < 0)
		return r;
	post_listeners(ct, fds, n, port, LISTEN_PORT);
	ct->listening[port] = true;
	ct->nlistening++;
	/* XDP's own ports map (steering = listeners): SYNs to the port pass it now */
	if (kern_port_set(ct->kern, port, name_hash(tid)) < 0)
		log_every(NLOG_WARN, "port %u: ports map: %s", port, strerror(errno));
	log_every(NLOG_INFO, "port %u: listening", port);
	return 0;
}

static void port_unlisten(struct ctlthread *ct, uint16_t port)
{
	struct mb_msg m;

	if (!ct->listening[port])
		return;
	ct->listening[port] = false;
	ct->nlistening--;
	/* from now on the kernel refuses its SYNs (sk_lookup, XDP) */
	if (!ct->udp[port])
		kern_port_del(ct->kern, port);
	if (kern_steering(ct->kern) && !ct->udp[port]) {
		int *hold = &ct->hold[port];

		if (*hold >= 0)
			close(*hold);
		*hold = -1;
		log_every(NLOG_INFO, "port %u: released", port);
		return;
	}
	memset(&m, 0, sizeof(m));
	m.type = MB_UNLISTEN;
	m.port = port;
	m.ack = &ct->unlisten_acked;
	ct->unlisten_posted += engine_workers(ct->e);
	engine_post(ct->e, -1, &m);
	log_every(NLOG_INFO, "%s %u: released", ct->udp[port] ? "udp port" : "port", port);
	__atomic_store_n(&ct->udp[port], false, __ATOMIC_RELAXED);
}

static bool port_in_range(struct ctlthread *ct, long long port)
{
	return port >= ct->cfg.port_min && port <= ct->cfg.port_max;
}

static void port_drop(struct ctlthread *ct, long long port);

/* "transport" of a port_grant, sync entry or port_add: true for "udp" (absent: tcp) */
static bool is_udp(const json_t *m)
{
	const char *t = msg_str(m, "transport");

	return t && !strcmp(t, "udp");
}

/* Routes port to tunnel id and opens its listeners (udp: datagram sockets); 0 or -errno
   with why. */
static int port_assign(struct ctlthread *ct, long long port, const char *tid, bool udp, char *why,
		       size_t whylen)
{
	struct rtun *rt;
	int r;

	if (!port_in_range(ct, port) || !tid) {
		snprintf(why, whylen, "port %lld is outside the range %u-%u", port,
			 ct->cfg.port_min, ct->cfg.port_max);
		return -EINVAL;
	}
	rt = rtun_find(ct, tid, true);
	if (!rt) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	/* the other transport's listeners go first: a port is one transport's */
	if (ct->listening[port] && ct->udp[port] != udp)
		port_drop(ct, port);
	/* routed before the kernel steers to it: a SYN may arrive at once */
	atomic_store(&ct->route[port], &rt->t);
	r = udp ? port_listen_udp(ct, (uint16_t)port, why, whylen)
		: port_listen(ct, (uint16_t)port, tid, why, whylen);
	if (r < 0) {
		atomic_store(&ct->route[port], NULL);
		log_every(NLOG_WARN, "port %lld: cannot listen: %s", port, why);
		return r;
	}
	return 0;
}

static void port_drop(struct ctlthread *ct, long long port)
{
	if (!port_in_range(ct, port))
		return;
	port_unlisten(ct, (uint16_t)port);
	atomic_store(&ct->route[port], NULL);
}

/* ---------- controld messages ---------- */

/* the most links a client that sends no max_links could open (its config's cap) */
#define OLD_CLIENT_MAX_LINKS 4096

static bool has_feature(const json_t *hello, const char *name)
{
	json_t *v;
	size_t i;

	json_array_foreach(json_object_get(hello, "features"), i, v)
	{
		if (json_is_string(v) && !strcmp(json_string_value(v), name))
			return true;
	}
	return false;
}

static void on_auth_ok(struct ctlthread *ct, struct req *r, json_t *m)
{
	const char *tid = msg_str(m, "tunnel_id");
	const char *token = msg_str(m, "token");
	const char *mode = msg_str(r->hello, "mode");
	const char *group;
	struct rtun *rt;
	struct mb_msg mb;
	json_t *w, *own;
	char secret_hex[2 * LINK_SECRET_LEN + 1];
	size_t n;

	if (!tid || strlen(tid) >= LINK_ID_MAX) {
		link_error(ct, r->worker, r->idx, r->gen, "control daemon gave no tunnel id");
		return;
	}
	if (mode && (!strcmp(mode, "configure") || !strcmp(mode, "deauth"))) {
		w = json_pack("{s:s, s:s}", "type", LINK_MSG_WELCOME, "tunnel_id", tid);
		if (token)
			json_object_set_new(w, "token", json_string(token));
		if (json_is_true(json_object_get(m, "revoked"))) {
			json_object_set_new(w, "revoked", json_true());
			log_info("tunnel %s: its token was revoked by its client (deauth)", tid);
		}
		send_to_link(ct, r->worker, r->idx, r->gen, w, true);
		return;
	}
	rt = rtun_find(ct, tid, true);
	if (!rt) {
		link_error(ct, r->worker, r->idx, r->gen, "out of memory");
		return;
	}
	if (rt->online || atomic_load(&rt->t.home) >= 0) {
		link_error(ct, r->worker, r->idx, r->gen,
			   "this tunnel is already connected from elsewhere");
		return;
	}
	random_bytes(rt->t.secret, sizeof(rt->t.secret));
	hex_encode(rt->t.secret, sizeof(rt->t.secret), secret_hex);
	str_copy(rt->t.hostname, sizeof(rt->t.hostname), msg_str(r->hello, "hostname") ?: "");
	str_copy(rt->t.os, sizeof(rt->t.os), msg_str(r->hello, "os") ?: "");
	str_copy(rt->t.arch, sizeof(rt->t.arch), msg_str(r->hello, "arch") ?: "");
	str_copy(rt->t.version, sizeof(rt->t.version), msg_str(r->hello, "client_version") ?: "");
	/* the client may hold fewer links than the server allows: the lower counts */
	own = json_object_get(r->hello, "max_links");
	rt->t.max_links = ct->cfg.max_links;
	if (json_is_integer(own) && json_integer_value(own) < ct->cfg.max_links)
		rt->t.max_links = (unsigned)json_integer_value(own);
	else if (!own && rt->t.max_links > OLD_CLIENT_MAX_LINKS)
		rt->t.max_links = OLD_CLIENT_MAX_LINKS; /* a client from before the field */
	/* this session's limits, as its WELCOME says them (a reload changes the next one's) */
	rt->t.max_pool = ct->cfg.max_pool_size;
	rt->t.heartbeat_ms = ct->cfg.heartbeat_ms;
	/* the mesh policy's view of it, in place before the workers see it online */
	group = msg_str(m, "group");
	str_copy(rt->t.group, sizeof(rt->t.group),
		 group && valid_str(group, VALID_ID, LINK_GROUP_MAX) ? group : "");
	rt->t.mesh_role = json_is_true(json_object_get(m, "mesh"));
	log_debug("tunnel %s: group %s, mesh role %s", tid, rt->t.group[0] ? rt->t.group : "-",
		  rt->t.mesh_role ? "yes" : "no");
	rt->online = true;
	rt->rule_push = has_feature(r->hello, LINK_FEATURE_RULES);
	rt->support = has_feature(r->hello, LINK_FEATURE_SUPPORT);
	str_copy(rt->source, sizeof(rt->source), msg_str(r->msg, "source") ?: "");
	rt->worker = r->worker;
	rt->idx = r->idx;
	rt->gen = r->gen;
	rt->since = now_ms();
	str_copy(rt->cert_serial, sizeof(rt->cert_serial), r->cert.name[0] ? r->cert.serial : "");
	rt->cert_not_after = r->cert.not_after;
	free(rt->cert_der);
	rt->cert_der = r->certs;
	rt->cert_der_len = r->certs_len;
	r->certs = NULL;
	rt->cert_kicked = 0;
	if (r->cert.name[0]) {
		time_t na = (time_t)r->cert.not_after;
		struct tm tm;
		char until[32] = "?";

		if (gmtime_r(&na, &tm))
			strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
		log_info("tunnel %s: logged in with certificate serial %s (valid until %s)", tid,
			 r->cert.serial, until);
	}
	/* the worker publishes t.home once it has set the tunnel up (MB_WELCOME) */
	/* features: relayd takes outbound data links and OPEN (link_proto.h) */
	w = json_pack("{s:s, s:s, s:s, s:{s:i, s:i, s:i, s:i}, s:[s]}", "type", LINK_MSG_WELCOME,
		      "tunnel_id", tid, "link_secret", secret_hex, "limits", "max_pool_size",
		      (int)ct->cfg.max_pool_size, "max_links", (int)ct->cfg.max_links, "heartbeat",
		      (int)(ct->cfg.heartbeat_ms / 1000 ? ct->cfg.heartbeat_ms / 1000 : 1),
		      "max_ports", (int)ct->cfg.max_per_tunnel, "features", LINK_FEATURE_MESH);
	json_array_append_new(json_object_get(w, "features"), json_string(LINK_FEATURE_UDP));
	json_array_append_new(json_object_get(w, "features"), json_string(LINK_FEATURE_SUPPORT));
	if (token)
		json_object_set_new(w, "token", json_string(token));
	memset(&mb, 0, sizeof(mb));
	mb.type = MB_WELCOME;
	mb.idx = r->idx;
	mb.gen = r->gen;
	mb.tun = &rt->t;
	mb.data = msg_encode(w, &n);
	mb.len = n;
	json_decref(w);
	if (mb.data)
		engine_post(ct->e, r->worker, &mb);
	free(mb.data);
	log_every(NLOG_INFO, "tunnel %s online (%s, %s/%s, client %s) on worker %d", tid,
		  rt->t.hostname, rt->t.os, rt->t.arch, rt->t.version, r->worker);
	w = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", CTL_TUNNEL_ONLINE, "tunnel_id", tid,
		      "hostname", rt->t.hostname, "os", rt->t.os, "arch", rt->t.arch,
		      "client_version", rt->t.version);
	cd_send(ct, w);
	json_decref(w);
}

static void on_port_grant(struct ctlthread *ct, struct req *r, json_t *m)
{
	long long port = msg_int(m, "port", 0);
	const char *tid = msg_str(m, "tunnel_id");
	/* a control daemon that does not know transports grants without one */
	bool udp = json_object_get(m, "transport") ? is_udp(m) : r->udp;
	char reason[320], why[256];
	int e;

	if (!tid)
		tid = r->rt ? r->rt->t.id : "";
	/* the allocation stands even if the session that asked is gone */
	e = port_assign(ct, port, tid, udp, why, sizeof(why));
	if (e < 0) {
		json_t *rel = json_pack("{s:s, s:s, s:I}", "type", CTL_PORT_RELEASE, "tunnel_id",
					tid, "port", (json_int_t)port);
		struct req *rr = req_new(ct, RQ_RELEASE, rel);

		if (rr)
			rr->port = 0; /* nobody waits for this one */
		snprintf(reason, sizeof(reason), "port %lld cannot be opened on this server: %s",
			 port, why);
		req_fail(ct, r, reason);
		return;
	}
	if (r->rt)
		tunnel_reply(ct, r->rt,
			     json_pack("{s:s, s:I, s:s, s:I}", "type",
				       r->udp ? LINK_MSG_UDP_GRANT : LINK_MSG_TCP_GRANT, "req",
				       (json_int_t)r->creq, "name", r->name, "port",
				       (json_int_t)port));
}

/* Appends one list of a push to *c; false when malformed or over CIDR_LIST_MAX. */
static bool fw_append(json_t *list, struct cidr **c, unsigned *n)
{
	size_t i, add = json_array_size(list);
	struct cidr *grown;
	char why[160];
	json_t *v;

	if (!json_is_array(list) || add > CIDR_LIST_MAX || *n + add > CIDR_LIST_MAX)
		return false;
	grown = realloc(*c, (*n + add + 1) * sizeof(**c));
	if (!grown)
		return false;
	*c = grown;
	json_array_foreach(list, i, v)
	{
		if (!json_is_string(v) ||
		    cidr_parse(json_string_value(v), &(*c)[*n], why, sizeof(why)) < 0)
			return false;
		(*n)++;
	}
	return true;
}

/*
 * CTL_FIREWALL: the whole lists, in pieces when they do not fit one message
 * ("more": true on all but the last); applied when the last arrives. A
 * malformed push changes nothing.
 */
static void on_firewall(struct ctlthread *ct, json_t *m)
{
	unsigned nw = engine_workers(ct->e);
	struct cidr_table *t;
	struct mb_msg mb;

	if (!fw_append(json_object_get(m, "deny"), &ct->fw_deny, &ct->fw_ndeny) ||
	    !fw_append(json_object_get(m, "allow"), &ct->fw_allow, &ct->fw_nallow)) {
		log_warn("firewall: malformed push from nave-controld: ignored");
		fw_pieces_drop(ct);
		return;
	}
	if (json_is_true(json_object_get(m, "more")))
		return;
	/* one reference per worker and one for the kernel's copy */
	t = cidr_table_new(ct->fw_deny, ct->fw_ndeny, ct->fw_allow, ct->fw_nallow, nw + 1);
	if (t) {
		memset(&mb, 0, sizeof(mb));
		mb.type = MB_FIREWALL;
		mb.fw = t;
		engine_post(ct->e, -1, &mb);
		kern_firewall(ct->kern, t);
		log_info("firewall: %u deny, %u allow rule(s)", ct->fw_ndeny, ct->fw_nallow);
	} else {
		log_error("firewall: out of memory: the lists are unchanged");
	}
	fw_pieces_drop(ct);
}

/* ---------- the mesh policy ---------- */

/*
 * A new table for every worker from the last whole push and [socks] allow;
 * the counters of the rules it keeps carry over. Nothing changes when it
 * cannot be built (logged).
 */
static void mesh_publish(struct ctlthread *ct)
{
	unsigned nw = engine_workers(ct->e);
	struct mesh_table *t;
	struct mb_msg mb;
	char err[256];

	t = mesh_table_from_json(ct->mesh_rules, err, sizeof(err));
	if (t && !mesh_table_set_allow(t, ct->cfg.socks_allow, err, sizeof(err))) {
		mesh_table_put(t);
		t = NULL;
	}
	if (!t) {
		log_error("mesh: %s: the policy is unchanged", err);
		return;
	}
	mesh_table_inherit(t, ct->mesh);
	for (unsigned i = 0; i < nw; i++)
		mesh_table_get(t); /* one reference per worker */
	memset(&mb, 0, sizeof(mb));
	mb.type = MB_MESH;
	mb.mesh = t;
	engine_post(ct->e, -1, &mb);
	mesh_table_put(ct->mesh);
	ct->mesh = t;
}

/*
 * CTL_MESH_POLICY: the whole rule list, in pieces numbered "seq" from 0, the
 * first marked "first", the last "last". A push is installed (mesh_publish)
 * only once its last piece is in and every piece came in order; anything else
 * (a piece out of order or without its first, a new first before the last, a
 * malformed piece or table) discards the push under way with a logged reason,
 * and the policy in force stays.
 */
static void on_mesh_policy(struct ctlthread *ct, json_t *m)
{
	json_t *rules = json_object_get(m, "rules"), *seqv = json_object_get(m, "seq");
	bool first = json_is_true(json_object_get(m, "first"));
	bool last = json_is_true(json_object_get(m, "last"));
	json_int_t seq = json_integer_value(seqv);
	struct mesh_table *t;
	char err[256];

	if (!json_is_integer(seqv) || seq < 0 || seq > MESH_RULES_MAX || first != (seq == 0)) {
		log_warn("mesh: policy piece without a valid \"seq\" and \"first\" from "
			 "nave-controld: discarded%s, the policy in force stays",
			 ct->mesh_acc ? " with the push under way" : "");
		mesh_pieces_drop(ct);
		return;
	}
	if (first && ct->mesh_acc) {
		log_warn("mesh: a new policy push began before the last piece of the one under "
			 "way (%" JSON_INTEGER_FORMAT " piece(s) in): that one is discarded",
			 ct->mesh_next);
		mesh_pieces_drop(ct);
	}
	if (!first && (!ct->mesh_acc || seq != ct->mesh_next)) {
		log_warn("mesh: policy piece %" JSON_INTEGER_FORMAT " from nave-controld out of "
			 "order (expected %s%" JSON_INTEGER_FORMAT "): the push is discarded, the "
			 "policy in force stays",
			 seq, ct->mesh_acc ? "" : "a first piece, not ",
			 ct->mesh_acc ? ct->mesh_next : seq);
		mesh_pieces_drop(ct);
		return;
	}
	if (first)
		ct->mesh_acc = json_array();
	if (!ct->mesh_acc || !json_is_array(rules) ||
	    json_array_size(ct->mesh_acc) + json_array_size(rules) > MESH_RULES_MAX ||
	    json_array_extend(ct->mesh_acc, rules)) {
		log_warn("mesh: malformed policy from nave-controld (rules not an array, or more "
			 "than %d): the push is discarded, the policy in force stays",
			 MESH_RULES_MAX);
		mesh_pieces_drop(ct);
		return;
	}
	ct->mesh_next = seq + 1;
	if (!last)
		return;
	/* checked whole before it replaces anything */
	t = mesh_table_from_json(ct->mesh_acc, err, sizeof(err));
	if (!t) {
		log_warn("mesh: malformed policy from nave-controld: %s: the push is discarded, "
			 "the policy in force stays",
			 err);
		mesh_pieces_drop(ct);
		return;
	}
	mesh_table_put(t);
	json_decref(ct->mesh_rules);
	ct->mesh_rules = ct->mesh_acc;
	ct->mesh_acc = NULL;
	mesh_publish(ct);
	log_info("mesh: policy of %zu rule(s) from nave-controld in force (%" JSON_INTEGER_FORMAT
		 " piece(s))",
		 json_array_size(ct->mesh_rules), ct->mesh_next);
}

/* ---------- the HTTP edge: domains and rules ---------- */

static int dom_find(struct ctlthread *ct, const char *domain)
{
	for (unsigned i = 0; i < ct->ndoms; i++)
		if (!strcmp(ct->doms[i].domain, domain))
			return (int)i;
	return -1;
}

static void dom_set(struct ctlthread *ct, const char *domain, struct rtun *rt)
{
	int i = dom_find(ct, domain);

	if (i >= 0) {
		ct->doms[i].rt = rt;
		return;
	}
	if (ct->ndoms == ct->capdoms) {
		unsigned cap = ct->capdoms ? 2 * ct->capdoms : 64;
		struct hdom *d = realloc(ct->doms, cap * sizeof(*d));

		if (!d) {
			log_error("http: out of memory: domain %s is not routed", domain);
			return;
		}
		ct->doms = d;
		ct->capdoms = cap;
	}
	str_copy(ct->doms[ct->ndoms].domain, sizeof(ct->doms[0].domain), domain);
	ct->doms[ct->ndoms++].rt = rt;
}

static void dom_del(struct ctlthread *ct, const char *domain)
{
	int i = dom_find(ct, domain);

	if (i >= 0)
		ct->doms[i] = ct->doms[--ct->ndoms];
}

static struct hrule *hrule_find(struct rtun *rt, const char *name)
{
	for (unsigned i = 0; i < rt->nhr; i++)
		if (!strcmp(rt->hr[i].name, name))
			return &rt->hr[i];
	return NULL;
}

static void hrule_drop(struct rtun *rt, struct hrule *h)
{
	*h = rt->hr[--rt->nhr];
	if (!rt->nhr) {
		free(rt->hr);
		rt->hr = NULL;
	}
}

/* A new table of routes for every worker: every domain held, with its rule if one serves it. */
static void routes_build(struct ctlthread *ct)
{
	unsigned nw = engine_workers(ct->e);
	struct http_routes *t = http_routes_new(ct->ndoms, nw + 1);
	struct mb_msg mb;

	if (!t) {
		log_error("http: out of memory: the routes are unchanged");
		return;
	}
	for (unsigned i = 0; i < ct->ndoms; i++) {
		struct rtun *rt = ct->doms[i].rt;
		struct http_route r;
		unsigned k;

		for (k = 0; rt->online && k < rt->nhr; k++)
			if (rt->hr[k].granted && !strcmp(rt->hr[k].r.domain, ct->doms[i].domain))
				break;
		if (rt->online && k < rt->nhr) {
			r = rt->hr[k].r;
		} else {
			memset(&r, 0, sizeof(r));
			str_copy(r.domain, sizeof(r.domain), ct->doms[i].domain);
		}
		r.tun = &rt->t;
		http_routes_add(t, &r);
	}
	memset(&mb, 0, sizeof(mb));
	mb.type = MB_ROUTES;
	mb.routes = t;
	engine_post(ct->e, -1, &mb);
	http_routes_put(ct->routes);
	ct->routes = t;
}

/* The routes changed: one new table per pass of the thread's loop, however many changes. */
static void routes_publish(struct ctlthread *ct)
{
	ct->routes_dirty = true;
}

static bool hdr_value_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > LINK_HOST_HEADER_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || strchr(".:_-", s[i])))
			return false;
	return true;
}

static bool auth_ok(const char *s)
{
	const char *colon = strchr(s, ':');
	size_t n = strlen(s), u;
	struct passwd_params pp;

	if (!colon || n > LINK_AUTH_MAX)
		return false;
	u = (size_t)(colon - s);
	if (u == 0 || u > LINK_AUTH_USER_MAX || n == u + 1)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (i < u && !((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
			       (s[i] >= '0' && s[i] <= '9') || strchr("._-", s[i])))
			return false;
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	}
	/* a well-formed hash no costlier than nave's own: a client cannot make the
	   edge's checks slower than it has to */
	return passwd_parse(colon + 1, n - u - 1, &pp) && pp.ln <= PASSWD_LN_DEFAULT &&
	       pp.r <= PASSWD_R_DEFAULT && pp.p <= PASSWD_P_DEFAULT;
}

/* http_add: checked where it enters; a rule waiting for controld, or an error. */
static json_t *http_add_request(struct ctlthread *ct, struct rtun *rt, json_t *m,
				char domain[DOMAIN_MAX + 1], char *why, size_t whylen)
{
	const char *name = msg_str(m, "name") ?: "";
	const char *d = msg_str(m, "domain") ?: "";
	const char *hh = msg_str(m, "host_header");
	const char *auth = msg_str(m, "basic_auth");
	bool pass = json_is_true(json_object_get(m, "tls_passthrough"));
	bool redir = json_is_true(json_object_get(m, "redirect_https"));
	struct hrule *h;

	if (!valid_str(name, VALID_NAME, LINK_RULE_MAX)) {
		snprintf(why, whylen, "bad rule name: 1-%d characters: %s", LINK_RULE_MAX,
			 valid_alphabet(VALID_NAME));
		return NULL;
	}
	if (!domain_norm(d, strlen(d), domain, true)) {
		snprintf(why, whylen,
			 "bad domain: a DNS name (labels of letters, digits and '-') or *.NAME");
		return NULL;
	}
	if (hh && !hdr_value_ok(hh)) {
		snprintf(why, whylen,
			 "bad host_header: 1-%d characters of letters, digits, "
			 ".:_-",
			 LINK_HOST_HEADER_MAX);
		return NULL;
	}
	if (auth && !auth_ok(auth)) {
		snprintf(why, whylen,
			 "bad basic_auth: USER:HASH, USER 1-%d of letters, digits, "
			 "._-",
			 LINK_AUTH_USER_MAX);
		return NULL;
	}
	if (pass && (redir || hh || auth)) {
		snprintf(why, whylen,
			 "tls_passthrough cannot be combined with redirect_https, "
			 "host_header or basic_auth: the edge does not see the requests");
		return NULL;
	}
	h = hrule_find(rt, name);
	if (h && h->granted && strcmp(h->r.domain, domain)) {
		snprintf(why, whylen, "rule %s already holds %s; remove it first", name,
			 h->r.domain);
		return NULL;
	}
	for (unsigned i = 0; i < rt->nhr; i++)
		if (&rt->hr[i] != h && !strcmp(rt->hr[i].r.domain, domain)) {
			snprintf(why, whylen, "rule %s of this tunnel already serves %s",
				 rt->hr[i].name, domain);
			return NULL;
		}
	if (!h) {
		struct hrule *n;

		if (rt->nhr >= LINK_RULES_MAX) {
			snprintf(why, whylen, "at most %d HTTP rules per tunnel", LINK_RULES_MAX);
			return NULL;
		}
		n = realloc(rt->hr, (rt->nhr + 1) * sizeof(*n));
		if (!n) {
			snprintf(why, whylen, "server out of memory");
			return NULL;
		}
		rt->hr = n;
		h = &rt->hr[rt->nhr++];
		memset(h, 0, sizeof(*h));
		str_copy(h->name, sizeof(h->name), name);
	}
	str_copy(h->r.domain, sizeof(h->r.domain), domain);
	str_copy(h->r.host_header, sizeof(h->r.host_header), hh ? hh : "");
	str_copy(h->r.auth, sizeof(h->r.auth), auth ? auth : "");
	h->r.flags =
	    (uint16_t)((redir ? ROUTE_REDIRECT_HTTPS : 0) | (pass ? ROUTE_PASSTHROUGH : 0));
	return json_pack("{s:s, s:s, s:s, s:s}", "type", CTL_DOMAIN_REQUEST, "tunnel_id", rt->t.id,
			 "domain", domain, "rule", name);
}

static void on_domain_grant(struct ctlthread *ct, struct req *r, json_t *m)
{
	const char *tid = msg_str(m, "tunnel_id");
	const char *d = msg_str(m, "domain") ?: r->domain;
	char domain[DOMAIN_MAX + 1];
	struct rtun *rt;
	struct hrule *h;

	if (!domain_norm(d, strlen(d), domain, true) || !tid || !(rt = rtun_find(ct, tid, true))) {
		req_fail(ct, r, "malformed answer from the control daemon");
		return;
	}
	dom_set(ct, domain, rt);
	if (r->rt == rt && (h = hrule_find(rt, r->name)) && !strcmp(h->r.domain, domain)) {
		if (!h->granted) {
			bool used;

			/* the next route number no rule of the session holds (it wraps) */
			do {
				if (!++rt->next_route)
					rt->next_route = 1;
				used = false;
				for (unsigned k = 0; k < rt->nhr && !used; k++)
					used = rt->hr[k].granted &&
					       rt->hr[k].r.route == rt->next_route;
			} while (used);
			h->r.route = rt->next_route;
			h->granted = true;
		}
		tunnel_reply(ct, rt,
			     json_pack("{s:s, s:I, s:s, s:s, s:I}", "type", LINK_MSG_HTTP_GRANT,
				       "req", (json_int_t)r->creq, "name", h->name, "domain",
				       domain, "route", (json_int_t)h->r.route));
		log_info("tunnel %s: rule %s: http://%s (route %u)", rt->t.id, h->name, domain,
			 h->r.route);
	}
	routes_publish(ct);
}

static void on_domain_released(struct ctlthread *ct, struct req *r)
{
	struct hrule *h;

	dom_del(ct, r->domain);
	if (r->rt && (h = hrule_find(r->rt, r->name)))
		hrule_drop(r->rt, h);
	if (r->rt)
		tunnel_reply(ct, r->rt,
			     json_pack("{s:s, s:I, s:s, s:s}", "type", LINK_MSG_HTTP_REMOVED, "req",
				       (json_int_t)r->creq, "name", r->name, "domain", r->domain));
	routes_publish(ct);
}

/* controld's list of held domains replaces ours */
static void on_sync_domains(struct ctlthread *ct, json_t *list)
{
	json_t *d;
	size_t i;

	ct->ndoms = 0;
	json_array_foreach(list, i, d)
	{
		const char *name = msg_str(d, "domain") ?: "", *tid = msg_str(d, "tunnel_id");
		char domain[DOMAIN_MAX + 1];
		struct rtun *rt;

		if (!tid || !domain_norm(name, strlen(name), domain, true)) {
			log_warn("sync: a malformed domain from nave-controld: ignored");
			continue;
		}
		rt = rtun_find(ct, tid, true);
		if (rt)
			dom_set(ct, domain, rt);
	}
	routes_publish(ct);
}

/* a domain no longer routes to its tunnel (released by an administrator, a sync, deauth) */
static void on_domain_del(struct ctlthread *ct, const char *d)
{
	char domain[DOMAIN_MAX + 1];
	int i;

	if (!d || !domain_norm(d, strlen(d), domain, true) || (i = dom_find(ct, domain)) < 0)
		return;
	for (unsigned k = 0; k < ct->doms[i].rt->nhr; k++) {
		struct rtun *rt = ct->doms[i].rt;

		if (!strcmp(rt->hr[k].r.domain, domain)) {
			log_info("tunnel %s: rule %s: %s released by the server", rt->t.id,
				 rt->hr[k].name, domain);
			hrule_drop(rt, &rt->hr[k]);
			break;
		}
	}
	dom_del(ct, domain);
	routes_publish(ct);
}

static void certs_load(struct ctlthread *ct);
static void link_cert_poll(struct ctlthread *ct);

/* relayd's own answer to a rule_push that does not reach the client */
static void rule_result_self(struct ctlthread *ct, long long op, const char *tid, bool retry,
			     const char *reason)
{
	json_t *o = json_pack("{s:s, s:I, s:s, s:b, s:s}", "type", CTL_RULE_RESULT, "op",
			      (json_int_t)op, "tunnel_id", tid, "ok", 0, "reason", reason);

	if (!o)
		return;
	if (retry)
		json_object_set_new(o, "retry", json_true());
	cd_send(ct, o);
	json_decref(o);
}

/* CTL_RULE_PUSH: checked again here, then to the client as the link's rule_push */
static void on_rule_push(struct ctlthread *ct, json_t *m)
{
	static const char *const allow[] = {"type", "op", "tunnel_id", NULL};
	const char *tid = msg_str(m, "tunnel_id");
	long long op = rulemsg_op(m);
	char why[300];
	struct rtun *rt;
	json_t *n;

	if (!op || !tid || !valid_str(tid, VALID_ID, LINK_ID_MAX - 1)) {
		log_warn("rule_push from nave-controld without a usable op or tunnel_id: ignored");
		return;
	}
	n = rulemsg_norm(m, NULL, allow, why, sizeof(why));
	if (!n) {
		log_warn("rule_push %lld for tunnel %s refused: %s", op, tid, why);
		rule_result_self(ct, op, tid, false, why);
		return;
	}
	rt = rtun_find(ct, tid, false);
	if (!rt || !rt->online) {
		rule_result_self(ct, op, tid, true, "tunnel offline");
	} else if (!rt->rule_push) {
		log_info("tunnel %s: rule operation %lld: client too old (no rule_push)", tid, op);
		rule_result_self(ct, op, tid, false, "client too old");
	} else {
		json_object_set_new(n, "type", json_string(LINK_MSG_RULE_PUSH));
		json_object_set_new(n, "op", json_integer(op));
		rt->push_op = op;
		tunnel_reply(ct, rt, json_incref(n));
	}
	json_decref(n);
}

/* ---------- support sessions (link_proto.h "Support sessions") ---------- */

/* the most session owners kept: 4 live sessions of every tunnel of a large edge */
#define SUP_OWNERS_MAX 16384

static int sup_owner_find(struct ctlthread *ct, const char *id)
{
	for (unsigned i = 0; i < ct->nsup_own; i++)
		if (!strcmp(ct->sup_own[i].id, id))
			return (int)i;
	return -1;
}

/* Session id belongs to tunnel tid (support_granted, support_list): support_kill's address. */
static void sup_owner_set(struct ctlthread *ct, const char *id, const char *tid)
{
	struct sup_owner *o;
	int i = sup_owner_find(ct, id);

	if (i >= 0) {
		str_copy(ct->sup_own[i].tid, sizeof(ct->sup_own[i].tid), tid);
		return;
	}
	if (!ct->sup_own) {
		ct->sup_own = calloc(SUP_OWNERS_MAX, sizeof(*ct->sup_own));
		if (!ct->sup_own)
			return; /* its support_closed is not sent; the client's ls still sees it */
	}
	if (ct->nsup_own == SUP_OWNERS_MAX) /* the oldest goes */
		memmove(ct->sup_own, ct->sup_own + 1, --ct->nsup_own * sizeof(*ct->sup_own));
	o = &ct->sup_own[ct->nsup_own++];
	str_copy(o->id, sizeof(o->id), id);
	str_copy(o->tid, sizeof(o->tid), tid);
}

static void sup_owner_del(struct ctlthread *ct, const char *id)
{
	int i = sup_owner_find(ct, id);

	if (i >= 0) /* the order stays: the oldest first */
		memmove(&ct->sup_own[i], &ct->sup_own[i + 1],
			(--ct->nsup_own - (unsigned)i) * sizeof(*ct->sup_own));
}

/*
 * A client's support_request, support_end or support_ls, checked here where it
 * enters (supmsg.h): the message for controld (a new reference, with the session's
 * tunnel id, never the client's word, and the control link's address), or NULL with
 * the one-line reason in why.
 */
static json_t *support_msg(struct rtun *rt, json_t *m, const char *type, char *why, size_t whylen)
{
	static const struct {
		const char *link, *ctl;
	} names[] = {
	    {LINK_MSG_SUPPORT_REQUEST, CTL_SUPPORT_REQUEST},
	    {LINK_MSG_SUPPORT_END, CTL_SUPPORT_END},
	    {LINK_MSG_SUPPORT_LS, CTL_SUPPORT_LS},
	};
	json_t *o;

	if (!rt->support) {
		snprintf(
		    why, whylen,
		    "support sessions need a client that names the \"%s\" feature in its HELLO",
		    LINK_FEATURE_SUPPORT);
		return NULL;
	}
	o = supmsg_check(m, type, why, whylen);
	for (size_t i = 0; o && i < ARRAY_SIZE(names); i++)
		if (!strcmp(type, names[i].link))
			json_object_set_new(o, "type", json_string(names[i].ctl));
	if (o)
		json_object_set_new(o, "tunnel_id", json_string(rt->t.id));
	if (o && rt->source[0] && !strcmp(type, LINK_MSG_SUPPORT_REQUEST))
		json_object_set_new(o, "source", json_string(rt->source));
	return o;
}

/*
 * controld's answer to a client's support_* (r->msg says which it asked): passed on
 * under the client's req; the owners of live sessions are noted for support_kill.
 * false when it is not the answer that request expects.
 */
static bool support_answer(struct ctlthread *ct, struct req *r, const char *type, json_t *m)
{
	const char *asked = msg_str(r->msg, "type"), *tid = msg_str(r->msg, "tunnel_id");
	const char *id = msg_str(m, "id");
	json_t *o, *list, *s, *e;
	size_t i;

	if (!strcmp(asked, CTL_SUPPORT_REQUEST) && !strcmp(type, CTL_SUPPORT_GRANTED)) {
		if (!sup_id_valid(id))
			return false;
		sup_owner_set(ct, id, tid);
		log_info("tunnel %s: support session %s requested", tid, id);
		o = json_pack("{s:s, s:I, s:s, s:I}", "type", LINK_MSG_SUPPORT_GRANTED, "req",
			      (json_int_t)r->creq, "id", id, "expires_at",
			      (json_int_t)msg_int(m, "expires_at", 0));
	} else if (!strcmp(asked, CTL_SUPPORT_END) && !strcmp(type, CTL_SUPPORT_ENDED)) {
		id = msg_str(r->msg, "id");
		sup_owner_del(ct, id);
		log_info("tunnel %s: support session %s ended by its device", tid, id);
		o = json_pack("{s:s, s:I, s:s}", "type", LINK_MSG_SUPPORT_ENDED, "req",
			      (json_int_t)r->creq, "id", id);
	} else if (!strcmp(asked, CTL_SUPPORT_LS) && !strcmp(type, CTL_SUPPORT_LIST)) {
		list = json_array();
		json_array_foreach(json_object_get(m, "sessions"), i, s)
		{
			e = supmsg_entry(s);
			if (!e)
				continue;
			if (!strcmp(msg_str(e, "state"), "pending") ||
			    !strcmp(msg_str(e, "state"), "approved"))
				sup_owner_set(ct, msg_str(e, "id"), tid);
			json_array_append_new(list, e);
		}
		o = json_pack("{s:s, s:I, s:o}", "type", LINK_MSG_SUPPORT_LIST, "req",
			      (json_int_t)r->creq, "sessions", list);
	} else {
		return false;
	}
	if (r->rt && o)
		tunnel_reply(ct, r->rt, o);
	else
		json_decref(o);
	return true;
}

/*
 * CTL_SUPPORT_KILL {id, why}: a session left the pending or approved state. Its
 * owner's client, when online here, is told support_closed and forgets its key.
 */
static void on_support_kill(struct ctlthread *ct, json_t *m)
{
	const char *id = msg_str(m, "id"), *why = msg_str(m, "why");
	char tid[LINK_ID_MAX];
	struct rtun *rt;
	int i;

	if (!sup_id_valid(id))
		return;
	if (!why || !valid_str(why, VALID_TEXT, LINK_SUPPORT_WHY_MAX))
		why = "closed by the server";
	/* every supporter link of it ends now, on whichever worker it is */
	{
		struct mb_msg mb;

		memset(&mb, 0, sizeof(mb));
		mb.type = MB_SUPPORT_KILL;
		str_copy(mb.sup.session, sizeof(mb.sup.session), id);
		engine_post(ct->e, -1, &mb);
	}
	i = sup_owner_find(ct, id);
	if (i < 0)
		return; /* not one of this relayd's (a hello's replay of old ones) */
	str_copy(tid, sizeof(tid), ct->sup_own[i].tid);
	sup_owner_del(ct, id);
	log_info("tunnel %s: support session %s closed: %s", tid, id, why);
	rt = rtun_find(ct, tid, false);
	if (rt && rt->online && rt->support)
		tunnel_reply(ct, rt,
			     json_pack("{s:s, s:s, s:s}", "type", LINK_MSG_SUPPORT_CLOSED, "id", id,
				       "why", why));
}

static void on_support_allowed(struct ctlthread *ct, struct req *r, json_t *m);

static void cd_message(struct ctlthread *ct, json_t *m)
{
	const char *type = msg_str(m, "type");
	long long id = msg_int(m, "req", 0);
	struct req *r = NULL;
	struct rtun *rt;

	if (!strcmp(type, CTL_SYNC)) {
		size_t i;
		json_t *ports, *p;

		/* a large sync comes in pieces: gather them, apply the whole */
		if (!ct->sync_acc)
			ct->sync_acc = json_pack("{s:[], s:[]}", "ports", "domains");
		if (!ct->sync_acc)
			return;
		for (i = 0; i < 2; i++) {
			const char *k = i ? "domains" : "ports";
			json_t *part = json_object_get(m, k);

			if (json_is_array(part))
				json_array_extend(json_object_get(ct->sync_acc, k), part);
		}
		if (json_is_true(json_object_get(m, "more")))
			return;
		m = ct->sync_acc;
		ct->sync_acc = NULL;
		ports = json_object_get(m, "ports");
		bool *keep = calloc(NPORTS, sizeof(bool));
		char why[256];

		json_array_foreach(ports, i, p)
		{
			long long port = msg_int(p, "port", 0);

			if (keep && port_in_range(ct, port))
				keep[port] = true;
			port_assign(ct, port, msg_str(p, "tunnel_id"), is_udp(p), why, sizeof(why));
		}
		/* a port released while we were apart (its port_del was lost) closes now */
		for (i = 0; keep && i < NPORTS; i++)
			if (!keep[i] && (ct->listening[i] || atomic_load(&ct->route[i])))
				port_drop(ct, (long long)i);
		free(keep);
		on_sync_domains(ct, json_object_get(m, "domains"));
		log_info("synchronised with nave-controld: %zu port(s), %u domain(s)",
			 json_array_size(ports), ct->ndoms);
		json_decref(m);
		return;
	}
	if (!strcmp(type, CTL_DOMAIN_DEL)) {
		on_domain_del(ct, msg_str(m, "domain"));
		return;
	}
	if (!strcmp(type, CTL_FIREWALL)) {
		on_firewall(ct, m);
		return;
	}
	if (!strcmp(type, CTL_MESH_POLICY)) {
		on_mesh_policy(ct, m);
		return;
	}
	if (!strcmp(type, CTL_PORT_ADD)) {
		char why[256];

		port_assign(ct, msg_int(m, "port", 0), msg_str(m, "tunnel_id"), is_udp(m), why,
			    sizeof(why));
		return;
	}
	if (!strcmp(type, CTL_PORT_DEL)) {
		port_drop(ct, msg_int(m, "port", 0));
		return;
	}
	if (!strcmp(type, CTL_ACME_CHALLENGE)) {
		const char *why = NULL, *dom = msg_str(m, "domain");
		char shown[300];

		if (acme_chal_set(dom, msg_str(m, "token"), msg_str(m, "key_authorization"),
				  now_ms(), &why) < 0)
			log_warn("acme: a challenge from nave-controld for %s refused: %s",
				 dom ? log_esc_str(dom, shown, sizeof(shown)) : "(none)", why);
		else
			log_debug("acme: answering the HTTP-01 challenge for %s", dom);
		return;
	}
	if (!strcmp(type, CTL_ACME_CHALLENGE_DEL)) {
		acme_chal_del(msg_str(m, "token"));
		return;
	}
	if (!strcmp(type, CTL_CERTS)) {
		ct->certs_sig = 0; /* even a change its signature would miss */
		certs_load(ct);
		link_cert_poll(ct); /* [tls] may name an ACME certificate too */
		return;
	}
	if (!strcmp(type, CTL_RELOAD)) {
		/* the main thread reloads on SIGHUP (blocked everywhere else): send it one */
		log_info("reload asked by nave-controld (navectl reload)");
		syscall(SYS_tgkill, getpid(), getpid(), SIGHUP);
		return;
	}
	if (!strcmp(type, CTL_RULE_PUSH)) {
		on_rule_push(ct, m);
		return;
	}
	if (!strcmp(type, CTL_SUPPORT_KILL)) {
		on_support_kill(ct, m);
		return;
	}
	if (!strcmp(type, CTL_KICK)) {
		const char *tid = msg_str(m, "tunnel_id");
		const char *reason = msg_str(m, "reason") ?: "disconnected by the server";

		rt = tid ? rtun_find(ct, tid, false) : NULL;
		if (!rt)
			return;
		if (rt->online)
			log_info("tunnel %s: kicked by nave-controld: %s", tid, reason);
		tunnel_kick(ct, rt, reason);
		return;
	}
	if (id)
		r = req_take(ct, id);
	if (!r)
		return; /* a late answer, or an unknown message type: ignored */
	if (!strcmp(type, CTL_ERROR)) {
		struct hrule *h;

		/* a refused claim leaves no rule behind */
		if (r->kind == RQ_DOMAIN && r->rt && (h = hrule_find(r->rt, r->name)) &&
		    !h->granted)
			hrule_drop(r->rt, h);
		req_fail_as(ct, r, msg_str(m, "reason") ?: "refused by the control daemon", true);
	} else if (r->kind == RQ_DOMAIN && !strcmp(type, CTL_DOMAIN_GRANT)) {
		on_domain_grant(ct, r, m);
	} else if (r->kind == RQ_DOMAIN_RELEASE && !strcmp(type, CTL_DOMAIN_RELEASED)) {
		on_domain_released(ct, r);
	} else if (r->kind == RQ_AUTH && !strcmp(type, CTL_AUTH_OK)) {
		on_auth_ok(ct, r, m);
	} else if (r->kind == RQ_SOCKS && !strcmp(type, CTL_AUTH_OK)) {
		const char *tid = msg_str(m, "tunnel_id");
		struct rtun *srt = tid && valid_str(tid, VALID_ID, LINK_ID_MAX - 1)
				       ? rtun_find(ct, tid, true)
				       : NULL;

		if (srt)
			socks_answer(ct, r->worker, r->idx, r->gen, &srt->t, m, NULL, false);
		else
			req_fail(ct, r, "control daemon gave no tunnel id");
	} else if (r->kind == RQ_PORT && !strcmp(type, CTL_PORT_GRANT)) {
		on_port_grant(ct, r, m);
	} else if (r->kind == RQ_SUPPORT && support_answer(ct, r, type, m)) {
		/* passed on to the client */
	} else if (r->kind == RQ_SUPCONN && !strcmp(type, CTL_SUPPORT_ALLOWED)) {
		on_support_allowed(ct, r, m);
	} else if (r->kind == RQ_SYNC && !strcmp(type, CTL_PORT_SYNCED)) {
		json_t *rel = json_object_get(m, "released");

		if (r->rt)
			tunnel_reply(
			    ct, r->rt,
			    json_pack("{s:s, s:I, s:o}", "type", LINK_MSG_TCP_SYNCED, "req",
				      (json_int_t)r->creq, "released",
				      json_is_array(rel) ? json_incref(rel) : json_array()));
	} else if (r->kind == RQ_DEAUTH && !strcmp(type, CTL_DEAUTHED)) {
		json_t *rel = json_object_get(m, "released");

		if (r->rt && r->rt->online) {
			log_info("tunnel %s revoked its own token (deauth)", r->rt->t.id);
			send_to_link(
			    ct, r->rt->worker, r->rt->idx, r->rt->gen,
			    json_pack("{s:s, s:I, s:o}", "type", LINK_MSG_DEAUTHED, "req",
				      (json_int_t)r->creq, "released",
				      json_is_array(rel) ? json_incref(rel) : json_array()),
			    true);
		}
	} else if (r->kind == RQ_RELEASE && !strcmp(type, CTL_RELEASED)) {
		port_drop(ct, msg_int(m, "port", r->port));
		if (r->rt && r->name[0])
			tunnel_reply(ct, r->rt,
				     json_pack("{s:s, s:I, s:s, s:I}", "type",
					       r->udp ? LINK_MSG_UDP_REMOVED : LINK_MSG_TCP_REMOVED,
					       "req", (json_int_t)r->creq, "name", r->name, "port",
					       (json_int_t)r->port));
	} else {
		req_fail(ct, r, "unexpected answer from the control daemon");
	}
	req_free(r);
}

static void cd_read(struct ctlthread *ct)
{
	uint8_t buf[16384];
	char err[160];
	json_t *m;
	ssize_t n;
	int r;

	for (;;) {
		n = recv(ct->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n <= 0) {
			cd_disconnect(ct, n == 0 ? "closed" : strerror(errno));
			return;
		}
		if (msg_reader_feed(&ct->mr, buf, (size_t)n) < 0) {
			cd_disconnect(ct, "oversized message");
			return;
		}
		while ((r = msg_reader_next(&ct->mr, &m, err, sizeof(err))) == 1) {
			cd_message(ct, m);
			json_decref(m);
		}
		if (r < 0) {
			cd_disconnect(ct, err);
			return;
		}
	}
}

/* ---------- the HTTPS edge's certificates ---------- */

#define CERTS_MS 5000 /* how often the certificate directory is looked at */

static void certs_dir(struct ctlthread *ct, char *out, size_t n)
{
	if (ct->cfg.certificates[0])
		snprintf(out, n, "%s", ct->cfg.certificates);
	else
		snprintf(out, n, "%s/certs", ct->cfg.state_dir);
}

static void ssl_ctx_drop(void *tls)
{
	SSL_CTX_free(tls);
}

/* What the directory holds (names, sizes, times), in any order. */
static uint64_t certs_signature(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t sig = 1;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char path[CFG_PATH_MAX + 8 + 300];
		struct stat st;
		uint64_t h = 1469598103934665603ull;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) < 0)
			continue;
		for (const char *c = e->d_name; *c; c++)
			h = (h ^ (uint8_t)*c) * 1099511628211ull;
		h ^= (uint64_t)st.st_size * 0x9e3779b97f4a7c15ull;
		h ^= (uint64_t)st.st_mtim.tv_sec * 0xc2b2ae3d27d4eb4full +
		     (uint64_t)st.st_mtim.tv_nsec;
		sig += h;
	}
	closedir(d);
	return sig;
}

/* Where ACME certificates are (controld's ctl/acme.c writes them): DOMAIN.pem, key and chain. */
static void certs_acme_dir(struct ctlthread *ct, char *out, size_t n)
{
	snprintf(out, n, "%s/acme/certs", ct->cfg.state_dir);
}

struct cert_list {
	struct http_route *r;
	unsigned n, cap;
};

/*
 * Appends the certificates of dir: DOMAIN.crt + DOMAIN.key pairs
 * (_wildcard.NAME.crt for *.NAME), or with acme DOMAIN.pem files holding the
 * key and the chain together (one rename replaces both).
 */
static void certs_scan(const char *dir, bool acme, struct cert_list *l)
{
	const char *ext = acme ? ".pem" : ".crt";
	DIR *d = opendir(dir);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char name[DOMAIN_MAX + 16], domain[DOMAIN_MAX + 1], crt[CFG_PATH_MAX + 16 + 300],
		    key[CFG_PATH_MAX + 16 + 300], err[256];
		const char *base = name;
		SSL_CTX *ctx;
		bool wild;

		if (len < 5 || len - 4 >= sizeof(name) || strcmp(e->d_name + len - 4, ext))
			continue;
		memcpy(name, e->d_name, len - 4);
		name[len - 4] = '\0';
		wild = !acme && !strncmp(name, "_wildcard.", 10);
		if (wild) {
			name[8] = '*'; /* "_wildcar*.NAME" -> "*.NAME" */
			base = name + 8;
		}
		if (!domain_norm(base, strlen(base), domain, wild)) {
			char shown[300];

			log_warn("https: %s/%s: the name is no domain (%s): ignored", dir,
				 log_esc_str(e->d_name, shown, sizeof(shown)),
				 acme ? "DOMAIN.pem"
				      : "DOMAIN.crt, or _wildcard.DOMAIN.crt for *.DOMAIN");
			continue;
		}
		snprintf(crt, sizeof(crt), "%s/%s", dir, e->d_name);
		snprintf(key, sizeof(key), "%s/%.*s%s", dir, (int)(len - 4), e->d_name,
			 acme ? ".pem" : ".key");
		ctx = tls_edge_ctx(crt, key, err, sizeof(err));
		if (!ctx) {
			log_warn("https: %s: %s: ignored", domain, err);
			continue;
		}
		if (X509_cmp_current_time(X509_get0_notAfter(SSL_CTX_get0_certificate(ctx))) < 0) {
			/* a name no longer renewed (taken out of [acme] domains, say) */
			log_warn("https: %s: the certificate in %s has expired: ignored", domain,
				 crt);
			SSL_CTX_free(ctx);
			continue;
		}
		/* connections take this context before their handshake: what kTLS needs of
		   it (the traffic secrets) must be in it */
		if (ktls_ctx_prepare(ctx) < 0) {
			log_warn("https: %s: cannot prepare the context for kTLS: ignored", domain);
			SSL_CTX_free(ctx);
			continue;
		}
		if (l->n == l->cap) {
			unsigned cap = l->cap ? 2 * l->cap : 16;
			struct http_route *nl = realloc(l->r, cap * sizeof(*nl));

			if (!nl) {
				SSL_CTX_free(ctx);
				break;
			}
			l->r = nl;
			l->cap = cap;
		}
		memset(&l->r[l->n], 0, sizeof(l->r[l->n]));
		str_copy(l->r[l->n].domain, sizeof(l->r[l->n].domain), domain);
		l->r[l->n++].tls = ctx;
	}
	if (d)
		closedir(d);
}

/*
 * Loads the certificates of the certificate directory, then those ACME
 * issued (a name in both: the directory's wins), when either changed, and
 * posts the new table to every worker: certificates are replaced without a
 * restart, connections already open keep theirs.
 */
static void certs_load(struct ctlthread *ct)
{
	unsigned nw = engine_workers(ct->e);
	char dir[CFG_PATH_MAX + 8], adir[CFG_PATH_MAX + 16];
	struct cert_list l = {0};
	struct http_routes *t;
	struct mb_msg mb;
	uint64_t sig;

	certs_dir(ct, dir, sizeof(dir));
	certs_acme_dir(ct, adir, sizeof(adir));
	sig = certs_signature(dir) * 31 + certs_signature(adir);
	if (sig == ct->certs_sig)
		return;
	ct->certs_sig = sig;
	certs_scan(dir, false, &l);
	certs_scan(adir, true, &l);
	t = http_routes_new(l.n, nw + 1);
	if (!t) {
		for (unsigned i = 0; i < l.n; i++)
			SSL_CTX_free(l.r[i].tls);
		free(l.r);
		log_error("https: out of memory: certificates unchanged");
		ct->certs_sig = 0;
		return;
	}
	t->drop = ssl_ctx_drop;
	for (unsigned i = 0; i < l.n; i++)
		if (!http_routes_add(t, &l.r[i]))
			SSL_CTX_free(l.r[i].tls); /* a second file for the same name */
	free(l.r);
	memset(&mb, 0, sizeof(mb));
	mb.type = MB_CERTS;
	mb.routes = t;
	engine_post(ct->e, -1, &mb);
	http_routes_put(ct->certs);
	ct->certs = t;
	log_info("https: %u certificate(s) for edge termination from %s and %s (ACME)", t->n, dir,
		 adir);
}

/* The files' identity: size, times and inode of each, and pq. 0: one is missing. */
static uint64_t link_signature(const struct cfg_server *c)
{
	const char *paths[2] = {c->certificate, c->private_key};
	uint64_t sig = c->pq ? 7 : 3;

	for (int i = 0; i < 2; i++) {
		struct stat st;

		if (stat(paths[i], &st) < 0)
			return 0;
		sig = sig * 1099511628211ull ^ (uint64_t)st.st_size;
		sig = sig * 1099511628211ull ^ (uint64_t)st.st_mtim.tv_sec;
		sig = sig * 1099511628211ull ^ (uint64_t)st.st_mtim.tv_nsec;
		/* a rewrite in place that keeps size and mtime (cp -p) still changes ctime */
		sig = sig * 1099511628211ull ^ (uint64_t)st.st_ctim.tv_sec;
		sig = sig * 1099511628211ull ^ (uint64_t)st.st_ctim.tv_nsec;
		sig = sig * 1099511628211ull ^ (uint64_t)st.st_ino;
	}
	return sig ? sig : 1;
}

/*
 * [tls] certificate and private_key of c: the tunnel port's certificate,
 * read again when the files changed since the last time (or force) and
 * swapped in for links made from then on (xprt_ctx_swap); links open keep
 * theirs. 1 swapped, 0 unchanged, -1 with why (the running one stays).
 */
static int link_cert_load(struct ctlthread *ct, const struct cfg_server *c, bool force, char *why,
			  size_t whylen)
{
	uint64_t sig = link_signature(c);
	char err[256], fpr[TLS_FPR_LEN] = "?";
	SSL_CTX *n;

	if (!ct->link_looked) {
		ct->link_looked = true;
		ct->link_sig = sig; /* the first look: what relayd started with */
		if (!force)
			return 0;
	}
	if (!force && sig == ct->link_sig)
		return 0;
	ct->link_sig = sig; /* a file that does not load is said once, not every look */
	n = tls_server_ctx(c->certificate, c->private_key, c->pq, err, sizeof(err));
	/* ct->cfg.client_auth: the running one (a reload sets it before it calls this) */
	if (n && ct->cfg.client_auth != CFG_CLIENT_AUTH_OFF && tls_server_ask_client_cert(n) < 0) {
		SSL_CTX_free(n);
		n = NULL;
		snprintf(err, sizeof(err), "cannot ask for client certificates");
	}
	if (!n || xprt_ctx_swap(engine_xprt(ct->e), n, err, sizeof(err)) < 0) {
		SSL_CTX_free(n);
		snprintf(why, whylen,
			 "[tls] certificate %s: %s: the tunnel port keeps its certificate",
			 c->certificate, err);
		return -1;
	}
	SSL_CTX_free(n); /* the links' context holds it now */
	tls_cert_fingerprint_file(c->certificate, fpr);
	str_copy(ct->fingerprint, sizeof(ct->fingerprint), fpr);
	log_info("tls: the tunnel port's certificate is now %s (%s), for links from now on", fpr,
		 c->certificate);
	return 1;
}

/* The poll of the tunnel port's certificate files (every CERTS_MS and when controld says). */
static void link_cert_poll(struct ctlthread *ct)
{
	char why[CFG_PATH_MAX + 400];

	if (link_cert_load(ct, &ct->cfg, false, why, sizeof(why)) < 0)
		log_warn("%s", why);
}

/* ---------- events from workers ---------- */

/* HELLO "features": absent, or an array of at most LINK_FEATURES_MAX names */
static bool features_ok(const json_t *f)
{
	json_t *v;
	size_t i;

	if (!f)
		return true;
	if (!json_is_array(f) || json_array_size(f) > LINK_FEATURES_MAX)
		return false;
	json_array_foreach(f, i, v)
	{
		if (!json_is_string(v) ||
		    !valid_str(json_string_value(v), VALID_NAME, LINK_FEATURE_MAX))
			return false;
	}
	return true;
}

/*
 * The certificates a control link presented (ev->certs), checked now against
 * [tls] client_ca and its CRL: chain-only, the certificate's name is the
 * tunnel id. 0 with id filled, or -1 with the one-line reason for the client.
 */
static int hello_cert(struct ctlthread *ct, const struct ev *ev, const char *hello_id,
		      struct pki_ident *id, char *why, size_t whylen)
{
	/* the CA and CRL as they are now: a login right behind a revoke is refused too */
	pki_poll(ct);
	if (pki_verify_concat(ct->pki, ev->certs, ev->certs_len, (int64_t)time(NULL), id, why,
			      whylen) < 0)
		return -1;
	if (id->kind != PKI_NODE) {
		snprintf(why, whylen, "certificate \"%s\" is an %s certificate, not a tunnel's",
			 id->name, pki_kind_name(id->kind));
		return -1;
	}
	/* token tunnels' ids are t- and hex: a certificate never takes one of those over */
	if (valid_tunnel_id_shaped(id->name)) {
		snprintf(why, whylen,
			 "certificate \"%s\": a name of that shape (t- and hex digits) is a token "
			 "tunnel's id; issue it under another name",
			 id->name);
		return -1;
	}
	if (hello_id && *hello_id && strcmp(hello_id, id->name)) {
		snprintf(why, whylen, "certificate is for tunnel \"%s\", not \"%s\"", id->name,
			 hello_id);
		return -1;
	}
	return 0;
}

/*
 * Shuts a tunnel's session down (SHUTDOWN with reason: its client exits) and
 * ends the streams relayd's SOCKS server holds on it, online or not.
 */
static void tunnel_kick(struct ctlthread *ct, struct rtun *rt, const char *reason)
{
	struct mb_msg mb;
	json_t *s;
	size_t n;

	/* relayd's SOCKS server (worker 0) holds streams on the token, online or not */
	memset(&mb, 0, sizeof(mb));
	mb.type = MB_SOCKS_KICK;
	mb.tun = &rt->t;
	engine_post(ct->e, 0, &mb);
	if (!rt->online)
		return;
	s = json_pack("{s:s, s:s}", "type", LINK_MSG_SHUTDOWN, "reason", reason);
	memset(&mb, 0, sizeof(mb));
	mb.type = MB_KICK;
	mb.tun = &rt->t;
	mb.data = msg_encode(s, &n);
	mb.len = n;
	json_decref(s);
	engine_post(ct->e, rt->worker, &mb);
	free(mb.data);
}

#define PKI_MS 250 /* how often the CA and CRL files are looked at */

/*
 * The certificate logins' CA and CRL, read again when they changed; every
 * session that logged in with a certificate now revoked or expired is shut
 * down (within PKI_MS of the new CRL), and after a new CA or CRL (or a reload
 * that changed them) its chain is checked again: a session is never left
 * online on a certificate the files in force would refuse. With client_auth
 * off (a reload), every certificate session is shut down. A session that is
 * still online 2 s after its kick is kicked again.
 */
static void pki_poll(struct ctlthread *ct)
{
	char err[320], why[360];
	int64_t now = (int64_t)time(NULL);
	bool recheck;
	int r = 0;

	if (ct->pki) {
		r = pki_verifier_refresh(ct->pki, err, sizeof(err));
		if (r < 0)
			log_every(NLOG_WARN,
				  "[tls] client_ca: %s: certificate logins keep the last good one",
				  err);
		else if (r > 0)
			log_info("[tls] client_ca and CRL read again");
	}
	recheck = r > 0 || ct->pki_changed;
	/* the sessions are looked at after a change, else once a second (expiry) */
	if (!recheck && now_ms() < ct->next_pki_scan)
		return;
	ct->pki_changed = false;
	ct->next_pki_scan = now_ms() + 1000;
	for (unsigned b = 0; b < 256; b++) {
		for (struct rtun *rt = ct->tunnels[b]; rt; rt = (struct rtun *)rt->t.next) {
			struct pki_ident id;
			const char *reason = NULL;

			if (!rt->online || !rt->cert_serial[0])
				continue;
			if (rt->cert_kicked && now_ms() - rt->cert_kicked < 2000)
				continue;
			if (!ct->pki)
				reason = "certificate logins are off on this server";
			else if (pki_verifier_revoked(ct->pki, rt->cert_serial))
				reason = "certificate revoked";
			else if (now >= rt->cert_not_after)
				reason = "certificate expired";
			else if (recheck &&
				 pki_verify_concat(ct->pki, rt->cert_der, rt->cert_der_len, now,
						   &id, err, sizeof(err)) < 0) {
				snprintf(why, sizeof(why), "certificate no longer valid: %s", err);
				reason = why;
			}
			if (!reason)
				continue;
			log_info("tunnel %s: %s (serial %s): disconnected", rt->t.id, reason,
				 rt->cert_serial);
			rt->cert_kicked = now_ms();
			tunnel_kick(ct, rt, reason);
		}
	}
}

/*
 * A supporter's HELLO (mode "support", link_proto.h "Support streams"): its
 * fields checked here, then controld decides (support_connect).
 */
static void on_support_hello(struct ctlthread *ct, struct ev *ev)
{
	json_t *h = ev->obj, *a;
	const char *session = msg_str(h, "session"), *service = msg_str(h, "service");
	const char *auth = msg_str(h, "auth");
	struct req *r;

	if (!sup_id_valid(session)) {
		link_error(ct, ev->worker, ev->idx, ev->gen,
			   "bad HELLO: session must be a support session id (sup- and 10 of "
			   "[a-z0-9])");
		return;
	}
	if (!service || !valid_str(service, VALID_NAME, LINK_SUPPORT_NAME_MAX)) {
		link_error(ct, ev->worker, ev->idx, ev->gen,
			   "bad HELLO: service must be 1-31 of [A-Za-z0-9_-]");
		return;
	}
	if (!auth || !sup_hex_valid(auth)) {
		link_error(ct, ev->worker, ev->idx, ev->gen,
			   "bad HELLO: auth must be 64 lower-case hex digits");
		return;
	}
	a = json_pack("{s:s, s:s, s:s, s:s}", "type", CTL_SUPPORT_CONNECT, "session", session,
		      "service", service, "auth", auth);
	if (a && ev->source[0])
		json_object_set_new(a, "source", json_string(ev->source));
	r = a ? req_new(ct, RQ_SUPCONN, a) : NULL;
	if (!r) {
		link_error(ct, ev->worker, ev->idx, ev->gen, "server busy, try again");
		return;
	}
	r->worker = ev->worker;
	r->idx = ev->idx;
	r->gen = ev->gen;
	r->hello = json_incref(h);
}

/* controld allowed a supporter's link: its WELCOME, then the stream to the device. */
static void on_support_allowed(struct ctlthread *ct, struct req *r, json_t *m)
{
	const char *tid = msg_str(m, "tunnel_id"), *session = msg_str(r->hello, "session");
	long long index = msg_int(m, "service_index", -1);
	long long until = msg_int(m, "expires_at", 0);
	struct rtun *rt;
	struct mb_msg mb;
	json_t *w;
	size_t n;

	if (!tid || !valid_str(tid, VALID_ID, LINK_ID_MAX - 1) || index < 0 ||
	    index >= LINK_SUPPORT_SERVICES || until <= 0) {
		link_error(ct, r->worker, r->idx, r->gen, "control daemon gave no valid answer");
		return;
	}
	rt = rtun_find(ct, tid, false);
	if (!rt || !rt->online) {
		link_error(ct, r->worker, r->idx, r->gen,
			   "the device of this support session is offline");
		return;
	}
	w = json_pack("{s:s, s:s, s:s, s:I, s:I}", "type", LINK_MSG_WELCOME, "session", session,
		      "service", msg_str(r->hello, "service"), "service_index", (json_int_t)index,
		      "expires_at", (json_int_t)until);
	memset(&mb, 0, sizeof(mb));
	mb.type = MB_SUPPORT_JOIN;
	mb.idx = r->idx;
	mb.gen = r->gen;
	mb.tun = &rt->t;
	mb.data = w ? msg_encode(w, &n) : NULL;
	mb.len = mb.data ? n : 0;
	json_decref(w);
	str_copy(mb.sup.session, sizeof(mb.sup.session), session);
	str_copy(mb.sup.service, sizeof(mb.sup.service), msg_str(r->hello, "service"));
	mb.sup.index = (uint16_t)index;
	mb.sup.expires_at = until;
	if (!mb.data) {
		link_error(ct, r->worker, r->idx, r->gen, "out of memory");
		return;
	}
	engine_post(ct->e, r->worker, &mb);
	free(mb.data);
	log_info("support session %s: a supporter from %s allowed to service %s of tunnel %s",
		 session, msg_str(r->msg, "source") ?: "?", mb.sup.service, tid);
}

static void on_hello(struct ctlthread *ct, struct ev *ev)
{
	json_t *h = ev->obj;
	const char *token = msg_str(h, "token"), *reg = msg_str(h, "registration");
	const char *mode = msg_str(h, "mode") ?: "run";
	long long ver = msg_int(h, "version", 0);
	json_t *a, *ml;
	struct req *r;

	char why[160], reason[200];

	if (ver != LINK_VERSION) {
		link_error(ct, ev->worker, ev->idx, ev->gen, "unsupported link protocol version");
		return;
	}
	if (!strcmp(mode, "support")) {
		on_support_hello(ct, ev);
		return;
	}
	if (strcmp(mode, "run") && strcmp(mode, "configure") && strcmp(mode, "deauth")) {
		link_error(ct, ev->worker, ev->idx, ev->gen, "bad HELLO mode");
		return;
	}
	/* every string a client sends is checked here, where it enters */
	if (!valid_hello(h, why, sizeof(why))) {
		log_every(NLOG_INFO, "HELLO refused: %s", why);
		snprintf(reason, sizeof(reason), "bad HELLO: %s", why);
		link_error(ct, ev->worker, ev->idx, ev->gen, reason);
		return;
	}
	ml = json_object_get(h, "max_links");
	if (ml && (!json_is_integer(ml) || json_integer_value(ml) < 1 ||
		   json_integer_value(ml) > 1048576)) {
		link_error(ct, ev->worker, ev->idx, ev->gen,
			   "bad HELLO: max_links is not a number from 1 to 1048576");
		return;
	}
	if (!features_ok(json_object_get(h, "features"))) {
		snprintf(reason, sizeof(reason),
			 "bad HELLO: features must be an array of at most %d names of 1-%d "
			 "characters: %s",
			 LINK_FEATURES_MAX, LINK_FEATURE_MAX, valid_alphabet(VALID_NAME));
		link_error(ct, ev->worker, ev->idx, ev->gen, reason);
		return;
	}
	const json_t *auth = json_object_get(h, "auth");
	bool by_token = (token && *token) || (reg && *reg);
	struct pki_ident cert = {0};

	/* "auth": "certificate" says the client means to log in with one (for the reason) */
	if (auth && (!json_is_string(auth) || strcmp(json_string_value(auth), "certificate"))) {
		link_error(ct, ev->worker, ev->idx, ev->gen,
			   "bad HELLO: auth must be \"certificate\" when present");
		return;
	}
	if (by_token && ct->cfg.client_auth == CFG_CLIENT_AUTH_REQUIRED) {
		link_error(
		    ct, ev->worker, ev->idx, ev->gen,
		    "this server takes certificate logins only ([tls] client_auth = required)");
		return;
	}
	if (!by_token && ev->certs_len && ct->pki) {
		if (!strcmp(mode, "deauth")) {
			link_error(ct, ev->worker, ev->idx, ev->gen,
				   "deauth needs a token (a certificate is revoked on the server "
				   "with navectl pki revoke)");
			return;
		}
		if (hello_cert(ct, ev, msg_str(h, "id"), &cert, why, sizeof(why)) < 0) {
			log_every(NLOG_INFO, "certificate login refused (from %s): %s",
				  ev->source[0] ? ev->source : "?", why);
			link_error(ct, ev->worker, ev->idx, ev->gen, why);
			return;
		}
	} else if (!by_token) {
		const char *no = "HELLO carries no token";

		if (auth && ct->cfg.client_auth == CFG_CLIENT_AUTH_OFF)
			no = "this server does not take certificate logins ([tls] client_ca is not "
			     "set)";
		else if (auth)
			no = "the client presented no certificate";
		else if (ct->cfg.client_auth == CFG_CLIENT_AUTH_REQUIRED)
			no = "HELLO carries no certificate: this server takes certificate logins "
			     "only";
		link_error(ct, ev->worker, ev->idx, ev->gen, no);
		return;
	}
	if (reg && !strcmp(mode, "deauth")) {
		link_error(ct, ev->worker, ev->idx, ev->gen, "deauth needs a token");
		return;
	}
	a = json_pack("{s:s, s:s}", "type", CTL_AUTH, "mode", mode);
	if (cert.name[0])
		json_object_set_new(a, "certificate",
				    json_pack("{s:s, s:s, s:I}", "name", cert.name, "serial",
					      cert.serial, "not_after",
					      (json_int_t)cert.not_after));
	else if (token && *token)
		json_object_set_new(a, "token", json_string(token));
	else
		json_object_set_new(a, "registration", json_string(reg));
	/* controld checks a token's allow_from against it */
	if (ev->source[0])
		json_object_set_new(a, "source", json_string(ev->source));
	static const char *const keys[] = {"id", "hostname", "os", "arch", "client_version"};
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		const char *v = msg_str(h, keys[i]);

		if (v)
			json_object_set_new(a, keys[i], json_string(v));
	}
	r = req_new(ct, RQ_AUTH, a);
	if (!r) {
		link_error(ct, ev->worker, ev->idx, ev->gen, "server busy, try again");
		return;
	}
	r->worker = ev->worker;
	r->idx = ev->idx;
	r->gen = ev->gen;
	r->hello = json_incref(h);
	r->cert = cert;
	if (cert.name[0]) {
		r->certs = ev->certs; /* the session keeps it */
		r->certs_len = ev->certs_len;
		ev->certs = NULL;
	}
}

/* tcp_sync's names: an array of rule names; a new reference, or NULL with why. */
static json_t *sync_names(json_t *m, char *why, size_t whylen)
{
	json_t *names = json_object_get(m, "names"), *v;
	size_t i;

	if (!json_is_array(names) || json_array_size(names) > LINK_RULES_MAX) {
		snprintf(why, whylen, "names must be an array of at most %d rule names",
			 LINK_RULES_MAX);
		return NULL;
	}
	json_array_foreach(names, i, v)
	{
		if (!json_is_string(v) ||
		    !valid_str(json_string_value(v), VALID_NAME, LINK_RULE_MAX)) {
			snprintf(why, whylen, "names[%zu] must be 1-%d characters: %s", i,
				 LINK_RULE_MAX, valid_alphabet(VALID_NAME));
			return NULL;
		}
	}
	return json_incref(names);
}

/* A client's rule_result: checked, then to controld under the session's tunnel id */
static void on_rule_result(struct ctlthread *ct, struct rtun *rt, json_t *m)
{
	static const char *const keys[] = {"port", "route", "reason"};
	char why[160];
	json_t *o;

	if (!rulemsg_result_check(m, why, sizeof(why))) {
		log_every(NLOG_WARN, "tunnel %s: bad rule_result ignored: %s", rt->t.id, why);
		return;
	}
	/* only the answer to the operation pushed to it: a client cannot flood controld */
	if (!rt->push_op || rulemsg_op(m) != rt->push_op) {
		ct->stray_results++;
		log_every(NLOG_WARN,
			  "tunnel %s: rule_result for operation %lld, which is not in flight for "
			  "it: dropped (%llu so far)",
			  rt->t.id, rulemsg_op(m), (unsigned long long)ct->stray_results);
		return;
	}
	rt->push_op = 0;
	o = json_pack("{s:s, s:I, s:s, s:O}", "type", CTL_RULE_RESULT, "op",
		      (json_int_t)rulemsg_op(m), "tunnel_id", rt->t.id, "ok",
		      json_object_get(m, "ok"));
	for (size_t i = 0; o && i < ARRAY_SIZE(keys); i++) {
		json_t *v = json_object_get(m, keys[i]);

		if (v && !json_is_null(v))
			json_object_set(o, keys[i], v);
	}
	if (o)
		cd_send(ct, o);
	json_decref(o);
}

static void on_message(struct ctlthread *ct, struct ev *ev)
{
	struct rtun *rt = ev->rt;
	const char *type = msg_str(ev->obj, "type");
	long long creq = msg_int(ev->obj, "req", 0);
	const char *name = msg_str(ev->obj, "name") ?: "";
	long long port = msg_int(ev->obj, "port", 0);
	char why[640], domain[DOMAIN_MAX + 1] = "";
	json_t *msg;
	enum req_kind kind;
	struct req *r;

	if (!rt->online)
		return;
	bool udp = !strcmp(type, LINK_MSG_UDP_ADD) || !strcmp(type, LINK_MSG_UDP_RM);

	if (!strcmp(type, LINK_MSG_TCP_ADD) || !strcmp(type, LINK_MSG_UDP_ADD)) {
		if (port < 0 || port > 65535) {
			req_error_reply(ct, rt, creq, "bad port");
			return;
		}
		if (!valid_str(name, VALID_NAME, LINK_RULE_MAX)) {
			snprintf(why, sizeof(why), "bad rule name: 1-%d characters: %s",
				 LINK_RULE_MAX, valid_alphabet(VALID_NAME));
			req_error_reply(ct, rt, creq, why);
			return;
		}
		kind = RQ_PORT;
		msg = json_pack("{s:s, s:s, s:I, s:s}", "type", CTL_PORT_REQUEST, "tunnel_id",
				rt->t.id, "port", (json_int_t)port, "rule", name);
		if (msg && udp)
			json_object_set_new(msg, "transport", json_string("udp"));
	} else if (!strcmp(type, LINK_MSG_TCP_RM) || !strcmp(type, LINK_MSG_UDP_RM)) {
		if (!port_in_range(ct, port) || atomic_load(&ct->route[port]) != &rt->t) {
			req_error_reply(ct, rt, creq, "that port is not allocated to this tunnel");
			return;
		}
		if (ct->listening[port] && ct->udp[port] != udp) {
			snprintf(why, sizeof(why), "port %lld is a %s port of this tunnel", port,
				 ct->udp[port] ? "udp" : "tcp");
			req_error_reply(ct, rt, creq, why);
			return;
		}
		kind = RQ_RELEASE;
		msg = json_pack("{s:s, s:s, s:I}", "type", CTL_PORT_RELEASE, "tunnel_id", rt->t.id,
				"port", (json_int_t)port);
	} else if (!strcmp(type, LINK_MSG_TCP_SYNC)) {
		json_t *names = sync_names(ev->obj, why, sizeof(why));

		if (!names) {
			req_error_reply(ct, rt, creq, why);
			return;
		}
		kind = RQ_SYNC;
		msg = json_pack("{s:s, s:s, s:o}", "type", CTL_PORT_SYNC, "tunnel_id", rt->t.id,
				"rules", names);
	} else if (!strcmp(type, LINK_MSG_HTTP_ADD)) {
		msg = http_add_request(ct, rt, ev->obj, domain, why, sizeof(why));
		if (!msg) {
			req_error_reply(ct, rt, creq, why);
			return;
		}
		kind = RQ_DOMAIN;
	} else if (!strcmp(type, LINK_MSG_HTTP_RM)) {
		struct hrule *h = hrule_find(rt, name);

		if (!h || !h->granted) {
			/* nothing held: it goes at once */
			if (h)
				hrule_drop(rt, h);
			tunnel_reply(ct, rt,
				     json_pack("{s:s, s:I, s:s, s:s}", "type",
					       LINK_MSG_HTTP_REMOVED, "req", (json_int_t)creq,
					       "name", name, "domain",
					       msg_str(ev->obj, "domain") ?: ""));
			return;
		}
		str_copy(domain, sizeof(domain), h->r.domain);
		kind = RQ_DOMAIN_RELEASE;
		msg = json_pack("{s:s, s:s, s:s}", "type", CTL_DOMAIN_RELEASE, "tunnel_id",
				rt->t.id, "domain", domain);
	} else if (!strcmp(type, LINK_MSG_RULE_RESULT)) {
		on_rule_result(ct, rt, ev->obj);
		return;
	} else if (!strcmp(type, LINK_MSG_DEAUTH)) {
		kind = RQ_DEAUTH;
		msg = json_pack("{s:s, s:s}", "type", CTL_DEAUTH, "tunnel_id", rt->t.id);
	} else if (!strcmp(type, LINK_MSG_SUPPORT_REQUEST) || !strcmp(type, LINK_MSG_SUPPORT_END) ||
		   !strcmp(type, LINK_MSG_SUPPORT_LS)) {
		msg = support_msg(rt, ev->obj, type, why, sizeof(why));
		if (!msg) {
			log_every(NLOG_INFO, "tunnel %s: %s refused: %s", rt->t.id, type, why);
			req_error_reply(ct, rt, creq, why);
			return;
		}
		kind = RQ_SUPPORT;
	} else {
		return; /* unknown types are ignored */
	}
	/* one tunnel cannot fill the request table that every tunnel's auth needs */
	if (rt->reqs >= TUNNEL_REQS) {
		json_decref(msg);
		log_every(NLOG_WARN, "tunnel %s: more than %d requests waiting, refusing %s",
			  rt->t.id, TUNNEL_REQS, type);
		req_error_reply(ct, rt, creq, "too many requests waiting; try again");
		return;
	}
	r = req_new(ct, kind, msg);
	if (!r) {
		req_error_reply(ct, rt, creq, "server busy, try again");
		return;
	}
	r->rt = rt;
	rt->reqs++;
	r->creq = creq;
	r->udp = udp;
	r->port = (uint16_t)port;
	str_copy(r->name, sizeof(r->name), *name ? name : "-");
	str_copy(r->domain, sizeof(r->domain), domain);
}

static void on_offline(struct ctlthread *ct, struct ev *ev)
{
	struct rtun *rt = ev->rt;
	json_t *o;

	if (!rt->online)
		return;
	rt->online = false;
	rt->cert_serial[0] = 0;
	free(rt->cert_der);
	rt->cert_der = NULL;
	rt->cert_der_len = 0;
	/* its HTTP rules go with the session; the domains stay held (502 until it is back) */
	if (rt->nhr) {
		free(rt->hr);
		rt->hr = NULL;
		rt->nhr = 0;
		routes_publish(ct);
	}
	/* requests of this session can no longer be answered */
	for (struct req *r = ct->reqs; r; r = r->next)
		if (r->rt == rt)
			r->rt = NULL;
	rt->reqs = 0;
	o = json_pack("{s:s, s:s, s:s}", "type", CTL_TUNNEL_OFFLINE, "tunnel_id", rt->t.id,
		      "reason", ev->reason);
	cd_send(ct, o);
	json_decref(o);
}

/* A SOCKS login (socksd.c): controld checks the token, from the client's address. */
static void on_socks(struct ctlthread *ct, struct ev *ev)
{
	json_t *a =
	    json_pack("{s:s, s:s, s:O}", "type", CTL_AUTH, "mode", "check", "token", ev->obj);
	struct req *r;

	/* a SOCKS login is a token's: client_auth = required closes that door too */
	if (ct->cfg.client_auth == CFG_CLIENT_AUTH_REQUIRED) {
		json_decref(a);
		socks_answer(ct, ev->worker, ev->idx, ev->gen, NULL, NULL,
			     "this server takes certificate logins only ([tls] client_auth = "
			     "required)",
			     true);
		return;
	}
	if (a && ev->source[0])
		json_object_set_new(a, "source", json_string(ev->source));
	r = a ? req_new(ct, RQ_SOCKS, a) : NULL;
	if (!r) {
		socks_answer(ct, ev->worker, ev->idx, ev->gen, NULL, NULL, "server busy, try again",
			     true);
		return;
	}
	r->worker = ev->worker;
	r->idx = ev->idx;
	r->gen = ev->gen;
}

static void drain_events(struct ctlthread *ct)
{
	struct ev *ev, *next;
	uint64_t v;

	if (ct->efd >= 0 && read(ct->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("control thread: eventfd read: %s", strerror(errno));
	pthread_mutex_lock(&ct->ev_lock);
	ev = ct->ev_head;
	ct->ev_head = ct->ev_tail = NULL;
	pthread_mutex_unlock(&ct->ev_lock);
	for (; ev; ev = next) {
		next = ev->next;
		if (ev->type == EV_HELLO)
			on_hello(ct, ev);
		else if (ev->type == EV_MESSAGE)
			on_message(ct, ev);
		else if (ev->type == EV_SOCKS)
			on_socks(ct, ev);
		else if (ev->type == EV_CTL)
			cd_send(ct, ev->obj); /* a message for controld as it is */
		else
			on_offline(ct, ev);
		json_decref(ev->obj);
		free(ev->certs);
		free(ev);
	}
}

static void expire_requests(struct ctlthread *ct)
{
	uint64_t now = now_ms();

	for (struct req **pp = &ct->reqs; *pp;) {
		struct req *r = *pp;

		if (now < r->deadline) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		ct->nreqs--;
		req_fail(ct, r,
			 ct->fd < 0 ? "control daemon unavailable, try again later"
				    : "control daemon did not answer in time");
		req_free(r);
	}
}

/* ---------- a reload ---------- */

/*
 * A reload's values for this thread: [ports] range (moved only when no port
 * routed now falls outside the new one: else -1 with why, and it stays),
 * max_per_tunnel, [tunnel] max_pool_size, max_links and heartbeat (each
 * tunnel's next session takes them: its WELCOME says them), [http]
 * certificates (read at once) and [xdp] syn_rate.
 */
static int reconfigure(struct ctlthread *ct, const struct cfg_server *n, char *why, size_t whylen)
{
	int ret = 0;

	if (n->port_min != ct->cfg.port_min || n->port_max != ct->cfg.port_max) {
		unsigned out = 0;

		for (unsigned p = ct->cfg.port_min; p <= ct->cfg.port_max && !out; p++)
			if ((p < n->port_min || p > n->port_max) &&
			    (atomic_load(&ct->route[p]) || ct->listening[p]))
				out = p;
		if (out) {
			struct tunnel *t = atomic_load(&ct->route[out]);

			snprintf(
			    why, whylen,
			    "[ports] range %u-%u: port %u (tunnel %s) is allocated outside it; "
			    "the range stays %u-%u",
			    n->port_min, n->port_max, out, t ? t->id : "-", ct->cfg.port_min,
			    ct->cfg.port_max);
			ret = -1;
		} else {
			log_info("[ports] range %u-%u (was %u-%u)", n->port_min, n->port_max,
				 ct->cfg.port_min, ct->cfg.port_max);
			ct->cfg.port_min = n->port_min;
			ct->cfg.port_max = n->port_max;
			kern_set_range(ct->kern, n->port_min, n->port_max);
		}
	}
	ct->cfg.max_per_tunnel = n->max_per_tunnel;
	ct->cfg.max_pool_size = n->max_pool_size;
	ct->cfg.max_links = n->max_links;
	ct->cfg.heartbeat_ms = n->heartbeat_ms;
	if (n->syn_rate != ct->cfg.syn_rate) {
		kern_set_syn_rate(ct->kern, n->syn_rate);
		ct->cfg.syn_rate = n->syn_rate;
	}
	/* certificate logins: a new CA or CRL file, or client_auth; the old stay on failure */
	if (strcmp(n->client_ca, ct->cfg.client_ca) || strcmp(n->client_crl, ct->cfg.client_crl) ||
	    n->client_auth != ct->cfg.client_auth) {
		struct pki_verifier *v = NULL;
		char pw[CFG_PATH_MAX + 400];
		bool ask = (n->client_auth != CFG_CLIENT_AUTH_OFF) !=
			   (ct->cfg.client_auth != CFG_CLIENT_AUTH_OFF);

		if (n->client_auth != CFG_CLIENT_AUTH_OFF)
			v = pki_verifier_new(n->client_ca, n->client_crl, pw, sizeof(pw));
		if (n->client_auth != CFG_CLIENT_AUTH_OFF && !v) {
			if (snprintf(
				why + strlen(why), whylen - strlen(why),
				"%s[tls] client_ca %s: %s: certificate logins stay as they were",
				ret == -1 ? "; " : "", n->client_ca, pw) < 0)
				why[0] = '\0';
			ret = -1;
		} else {
			int was = ct->cfg.client_auth;

			/* the tunnel port asks for certificates (or stops) from now on */
			ct->cfg.client_auth = n->client_auth;
			if (ask && link_cert_load(ct, n, true, pw, sizeof(pw)) < 0) {
				ct->cfg.client_auth = was;
				pki_verifier_free(v);
				if (snprintf(why + strlen(why), whylen - strlen(why), "%s%s",
					     ret == -1 ? "; " : "", pw) < 0)
					why[0] = '\0';
				ret = -1;
			} else {
				pki_verifier_free(ct->pki);
				ct->pki = v;
				ct->next_pki = 0;
				ct->pki_changed = true; /* the sessions are checked against it */
				str_copy(ct->cfg.client_ca, sizeof(ct->cfg.client_ca),
					 n->client_ca);
				str_copy(ct->cfg.client_crl, sizeof(ct->cfg.client_crl),
					 n->client_crl);
				ct->cfg.client_auth = n->client_auth;
				log_info("[tls] client_auth %s%s%s",
					 n->client_auth == CFG_CLIENT_AUTH_OFF	      ? "off"
					 : n->client_auth == CFG_CLIENT_AUTH_REQUIRED ? "required"
										      : "optional",
					 v ? ", client_ca " : "", v ? n->client_ca : "");
			}
		}
	}
	if (strcmp(n->certificate, ct->cfg.certificate) ||
	    strcmp(n->private_key, ct->cfg.private_key) || n->pq != ct->cfg.pq ||
	    link_signature(n) != ct->link_sig) {
		char tw[CFG_PATH_MAX + 400];

		if (link_cert_load(ct, n, true, tw, sizeof(tw)) < 0) {
			if (ret == -1 &&
			    snprintf(why + strlen(why), whylen - strlen(why), "; %s", tw) < 0)
				why[0] = '\0';
			else if (ret != -1)
				str_copy(why, whylen, tw);
			ret = -1;
			ct->link_sig =
			    link_signature(&ct->cfg); /* the running files stay watched */
		} else {
			str_copy(ct->cfg.certificate, sizeof(ct->cfg.certificate), n->certificate);
			str_copy(ct->cfg.private_key, sizeof(ct->cfg.private_key), n->private_key);
			ct->cfg.pq = n->pq;
		}
	}
	if (strcmp(n->socks_allow, ct->cfg.socks_allow)) {
		str_copy(ct->cfg.socks_allow, sizeof(ct->cfg.socks_allow), n->socks_allow);
		mesh_publish(ct); /* the rules stay, the allow list is the new one */
		log_info("[socks] allow: %s",
			 *n->socks_allow ? n->socks_allow : "(nothing external)");
	}
	str_copy(ct->cfg.certificates, sizeof(ct->cfg.certificates), n->certificates);
	/* the certificates are read again now, the directory moved or not */
	ct->certs_sig = UINT64_MAX; /* no signature: a missing directory differs too */
	ct->next_certs = 0;
	return ret;
}

/* Takes a reload posted by ctlthread_reconfigure and says the outcome. */
static void reconfigure_take(struct ctlthread *ct)
{
	struct cfg_server *n;
	unsigned seq;
	char why[768] = "";
	int r;

	pthread_mutex_lock(&ct->rc_lock);
	n = ct->rc_next;
	ct->rc_next = NULL;
	seq = ct->rc_posted;
	pthread_mutex_unlock(&ct->rc_lock);
	if (!n)
		return;
	r = reconfigure(ct, n, why, sizeof(why));
	free(n);
	pthread_mutex_lock(&ct->rc_lock);
	ct->rc_result = r;
	ct->rc_eff = ct->cfg;
	str_copy(ct->rc_why, sizeof(ct->rc_why), why);
	ct->rc_done = seq;
	pthread_cond_broadcast(&ct->rc_cond);
	pthread_mutex_unlock(&ct->rc_lock);
}

static void *ctl_main(void *arg)
{
	struct ctlthread *ct = arg;

	pthread_setname_np(pthread_self(), "control");
	mesh_publish(ct); /* [socks] allow and no rules until controld pushes them */
	while (!ct->stop) {
		reconfigure_take(ct);
		if (now_ms() >= ct->next_certs) {
			certs_load(ct);
			link_cert_poll(ct);
			ct->next_certs = now_ms() + CERTS_MS;
		}
		if (now_ms() >= ct->next_pki) {
			pki_poll(ct);
			ct->next_pki = now_ms() + PKI_MS;
		}
		struct pollfd pfd[3];
		int n = 1, wfd = kern_watch_fd(ct->kern);

		if (ct->fd < 0 && now_ms() >= ct->next_connect) {
			cd_connect(ct);
			if (ct->fd < 0)
				ct->next_connect = now_ms() + 500;
		}
		pfd[0].fd = ct->efd;
		pfd[0].events = POLLIN;
		pfd[1].fd = -1; /* poll skips it */
		pfd[1].revents = 0;
		if (ct->fd >= 0) {
			pfd[1].fd = ct->fd;
			pfd[1].events = POLLIN | (ct->out.len ? POLLOUT : 0);
			n = 2;
		}
		pfd[2].fd = wfd;
		pfd[2].events = POLLIN;
		pfd[2].revents = 0;
		if (poll(pfd, wfd >= 0 ? 3 : (nfds_t)n, 200) < 0 && errno != EINTR)
			break;
		if (wfd >= 0 && (pfd[2].revents & POLLIN))
			kern_watch(ct->kern);
		if (pfd[0].revents & POLLIN)
			drain_events(ct);
		if (n == 2 && ct->fd >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)))
			cd_read(ct);
		if (ct->fd >= 0 && now_ms() >= ct->next_stats) {
			send_stats(ct);
			ct->next_stats = now_ms() + STATS_MS;
		}
		expire_requests(ct);
		if (ct->routes_dirty) {
			ct->routes_dirty = false;
			routes_build(ct);
		}
		records_pump(ct, false);
		cd_flush(ct);
		log_limit_flush();
	}
	records_pump(ct, true); /* what the drain closed, if controld takes it now */
	cd_flush(ct);
	return NULL;
}

int ctlthread_init(struct ctlthread **out, const struct cfg_server *cfg, const char *fingerprint,
		   const char *ktls_mode, struct kern *kern, struct engine_ops *ops)
{
	struct ctlthread *ct = calloc(1, sizeof(*ct));

	if (!ct)
		return -ENOMEM;
	ct->cfg = *cfg;
	ct->fd = -1;
	ct->started = now_ms();
	ct->started_unix = time(NULL);
	str_copy(ct->fingerprint, sizeof(ct->fingerprint), fingerprint);
	str_copy(ct->ktls, sizeof(ct->ktls), ktls_mode);
	str_copy(ct->steering, sizeof(ct->steering), kern_steering_name(kern));
	ct->kern = kern;
	pthread_mutex_init(&ct->lock, NULL);
	pthread_mutex_init(&ct->ev_lock, NULL);
	msg_reader_init(&ct->mr);
	pthread_mutex_init(&ct->rc_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&ct->rc_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	ct->route = calloc(NPORTS, sizeof(*ct->route));
	ct->listening = calloc(NPORTS, sizeof(bool));
	ct->udp = calloc(NPORTS, sizeof(bool));
	ct->hold = malloc(NPORTS * sizeof(int));
	for (size_t i = 0; ct->hold && i < NPORTS; i++)
		ct->hold[i] = -1;
	ct->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!ct->route || !ct->listening || !ct->hold || ct->efd < 0) {
		ctlthread_stop(ct);
		return -ENOMEM;
	}
	memset(ops, 0, sizeof(*ops));
	ops->arg = ct;
	ops->ctl_hello = op_ctl_hello;
	ops->support_event = op_support_event;
	ops->ctl_message = op_ctl_message;
	ops->tunnel_offline = op_tunnel_offline;
	ops->tunnel_find = op_tunnel_find;
	ops->socks_auth = op_socks_auth;
	ops->port_route = op_port_route;
	ops->port_is_udp = op_port_is_udp;
	*out = ct;
	return 0;
}

void ctlthread_set_pki(struct ctlthread *ct, struct pki_verifier *v)
{
	pki_verifier_free(ct->pki);
	ct->pki = v;
}

int ctlthread_start(struct ctlthread *ct, struct engine *e)
{
	int r;

	ct->e = e;
	r = pthread_create(&ct->thread, NULL, ctl_main, ct);
	ct->running = r == 0;
	return -r;
}

int ctlthread_reconfigure(struct ctlthread *ct, struct cfg_server *next, char *why, size_t whylen)
{
	struct cfg_server *n = malloc(sizeof(*n));
	struct timespec until;
	uint64_t one = 1;
	unsigned seq;
	int r = 0;

	why[0] = '\0';
	if (!n) {
		snprintf(why, whylen, "out of memory: the control thread's settings stay");
		return -ENOMEM;
	}
	*n = *next;
	pthread_mutex_lock(&ct->rc_lock);
	free(ct->rc_next); /* one that timed out and was not taken yet: this one replaces it */
	ct->rc_next = n;
	seq = ++ct->rc_posted;
	pthread_mutex_unlock(&ct->rc_lock);
	if (write(ct->efd, &one, sizeof(one)) < 0)
		log_error("control thread: eventfd write: %s", strerror(errno));
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += RECONFIGURE_WAIT_S;
	pthread_mutex_lock(&ct->rc_lock);
	while (ct->rc_done != seq && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&ct->rc_cond, &ct->rc_lock, &until);
	if (ct->rc_done == seq) {
		r = ct->rc_result;
		str_copy(why, whylen, ct->rc_why);
		/* what was refused stays as it runs */
		next->port_min = ct->rc_eff.port_min;
		next->port_max = ct->rc_eff.port_max;
		str_copy(next->certificate, sizeof(next->certificate), ct->rc_eff.certificate);
		str_copy(next->private_key, sizeof(next->private_key), ct->rc_eff.private_key);
		next->pq = ct->rc_eff.pq;
	} else {
		snprintf(why, whylen,
			 "the control thread did not answer within %d s: it applies [ports] "
			 "range and [tunnel] when it can",
			 RECONFIGURE_WAIT_S);
		r = -ETIMEDOUT;
	}
	pthread_mutex_unlock(&ct->rc_lock);
	return r;
}

void ctlthread_stop(struct ctlthread *ct)
{
	if (!ct)
		return;
	ct->stop = true;
	if (ct->running)
		pthread_join(ct->thread, NULL);
	if (ct->fd >= 0) {
		drain_events(ct);
		records_pump(ct, true); /* what engine_stop recorded after the drain */
		cd_flush_wait(ct, REC_STOP_FLUSH_MS);
		close(ct->fd);
	}
	drain_events(ct);
	while (ct->reqs) {
		struct req *r = ct->reqs;

		ct->reqs = r->next;
		req_free(r);
	}
	for (unsigned h = 0; h < 256; h++) {
		while (ct->tunnels[h]) {
			struct rtun *rt = ct->tunnels[h];

			ct->tunnels[h] = (struct rtun *)rt->t.next;
			free(rt->cert_der);
			free(rt);
		}
	}
	msg_reader_free(&ct->mr);
	msg_outq_free(&ct->out);
	pki_verifier_free(ct->pki);
	fw_pieces_drop(ct);
	mesh_pieces_drop(ct);
	json_decref(ct->mesh_rules);
	mesh_table_put(ct->mesh);
	free(ct->route);
	free(ct->doms);
	free(ct->sup_own);
	http_routes_put(ct->routes);
	http_routes_put(ct->certs);
	json_decref(ct->sync_acc);
	free(ct->listening);
	free(ct->udp);
	for (size_t i = 0; ct->hold && i < NPORTS; i++)
		if (ct->hold[i] >= 0)
			close(ct->hold[i]);
	free(ct->hold);
	if (ct->efd >= 0)
		close(ct->efd);
	free(ct->rc_next);
	pthread_mutex_destroy(&ct->lock);
	pthread_mutex_destroy(&ct->ev_lock);
	pthread_mutex_destroy(&ct->rc_lock);
	pthread_cond_destroy(&ct->rc_cond);
	free(ct);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * controld's side of relay.sock. Accepts one relayd at a time (a newer one
 * replaces the older, both logged) after checking its uid with SO_PEERCRED,
 * reads length-prefixed JSON messages (msg.h) and answers them from the
 * store: relay_hello -> tunnel states + sync + the firewall, auth,
 * tunnel_online/offline, port_request/release, stats. Writes are queued and
 * flushed on POLLOUT so a slow relayd never blocks the loop. Every message is checked member by
 * member; a malformed one closes the connection with the reason logged, an
 * unknown type is ignored. When relayd goes away every tunnel is offline.
 */
#include "relaylink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/cfg.h"
#include "cidr.h"
#include "ctl_proto.h"
#include "domain.h"
#include "link_proto.h"
#include "ctl/ruleops.h"
#include "ctl/records.h"
#include "ctl/store.h"
#include "ctl/support.h"
#include "log.h"
#include "msg.h"
#include "util.h"
#include "valid.h"

#define OUT_MAX	       (8u << 20) /* queued bytes before relayd counts as stuck */
#define READS_PER_POLL 16	  /* recv() calls per wake-up, to keep the API responsive */
#define READ_BUDGET_MS 5	  /* and at most this long dispatching (conn_records stores) */
#define WHY_LEN	       256
/* JSON bytes of address blocks in one firewall message: the rest of MSG_MAX is room to spare */
#define FW_PIECE_MAX (MSG_MAX - 1024)

struct relaylink {
	struct store *st;
	const struct cfg_server *cfg;
	int lfd;
	int fd;	   /* -1: no relayd */
	pid_t pid; /* from SO_PEERCRED */
	bool hello;
	unsigned gen;  /* relayd connections greeted so far (relaylink_generation) */
	bool fw_due;   /* the firewall is to be pushed (relaylink_firewall) */
	bool mesh_due; /* the mesh policy is to be pushed (relaylink_mesh) */
	struct msg_reader rd;
	struct msg_outq out;
	json_t *info;	  /* from relay_hello */
	json_t *stats;	  /* the latest stats */
	json_t *counters; /* {"PORT": [packets, bytes]} of the latest hello or stats, checked */
	/* connection records (conn_records): a batch's room, and counts since start */
	struct store_conn_record *recs;
	uint64_t rec_received, rec_stored, rec_refused, rec_failed;
	bool busy; /* a wake-up's budget ran out with messages left: read again next turn */
	struct support *sup; /* support sessions (ctl/support.h); NULL: none */
};

int relaylink_open(struct relaylink **out, int lfd, struct store *st, const struct cfg_server *cfg)
{
	struct relaylink *rl = calloc(1, sizeof(*rl));

	*out = NULL;
	if (!rl) {
		close(lfd);
		return -ENOMEM;
	}
	rl->st = st;
	rl->cfg = cfg;
	rl->lfd = lfd;
	rl->fd = -1;
	msg_reader_init(&rl->rd);
	*out = rl;
	return 0;
}

/* Drops the relayd connection; every tunnel goes offline with it. */
static void conn_close(struct relaylink *rl, int level, const char *why)
{
	if (rl->fd < 0)
		return;
	log_msg(level, "relayd (pid %d) connection closed: %s", (int)rl->pid, why);
	close(rl->fd);
	rl->fd = -1;
	rl->pid = 0;
	rl->hello = false;
	rl->fw_due = false;
	msg_reader_free(&rl->rd);
	msg_reader_init(&rl->rd);
	msg_outq_free(&rl->out);
	json_decref(rl->info);
	json_decref(rl->stats);
	json_decref(rl->counters);
	rl->info = rl->stats = rl->counters = NULL;
	if (store_tunnel_all_offline(rl->st))
		log_error("could not mark tunnels offline");
	ruleops_unsend(rl->st, NULL); /* pushed again to the next relayd */
}

void relaylink_close(struct relaylink *rl)
{
	if (!rl)
		return;
	conn_close(rl, NLOG_INFO, "controld is stopping");
	if (rl->lfd >= 0)
		close(rl->lfd);
	msg_reader_free(&rl->rd);
	free(rl->recs);
	free(rl);
}

bool relaylink_connected(const struct relaylink *rl)
{
	return rl->fd >= 0 && rl->hello;
}

/* --- output --- */

/* Writes what the socket takes now; 0, or -errno after closing the connection. */
static int flush_out(struct relaylink *rl)
{
	int ret = msg_outq_flush(&rl->out, rl->fd);

	if (ret) {
		char why[WHY_LEN];

		snprintf(why, sizeof(why), "write: %s", strerror(-ret));
		conn_close(rl, NLOG_WARN, why);
	}
	return ret;
}

/* Queues obj (the reference is consumed) and tries to send it. */
static int send_obj(struct relaylink *rl, json_t *obj)
{
	int ret;

	if (!obj)
		return -ENOMEM;
	if (rl->fd < 0) {
		json_decref(obj);
		return -ENOTCONN;
	}
	ret = msg_outq_push(&rl->out, obj, OUT_MAX); /* wipes the encoding: auth_ok has tokens */
	json_decref(obj);
	if (ret == -ENOBUFS) {
		conn_close(rl, NLOG_WARN, "relayd is not reading (output queue full)");
		return ret;
	}
	if (ret) {
		log_error("relayd: could not queue a message: %s", strerror(-ret));
		return ret;
	}
	return flush_out(rl);
}

int relaylink_send(struct relaylink *rl, json_t *obj)
{
	return send_obj(rl, obj);
}

void relaylink_set_support(struct relaylink *rl, struct support *sup)
{
	rl->sup = sup;
}

struct support *relaylink_support(const struct relaylink *rl)
{
	return rl ? rl->sup : NULL;
}

static int reply_error(struct relaylink *rl, json_int_t req, const char *reason)
{
	return send_obj(
	    rl, json_pack("{s:s, s:I, s:s}", "type", CTL_ERROR, "req", req, "reason", reason));
}

/* --- pushes --- */

/*
 * Adds "transport": "udp" to o for a UDP port; a TCP port's messages carry none (absent =
 * tcp: an older relayd reads them as before). NULL when o is.
 */
static json_t *with_transport(json_t *o, const char *transport)
{
	if (o && transport && !strcmp(transport, STORE_TRANSPORT_UDP) &&
	    json_object_set_new(o, "transport", json_string(STORE_TRANSPORT_UDP))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int relaylink_port_add(struct relaylink *rl, unsigned port, const char *tunnel_id,
		       const char *transport)
{
	if (!relaylink_connected(rl))
		return -ENOTCONN;
	return send_obj(rl, with_transport(json_pack("{s:s, s:i, s:s}", "type", CTL_PORT_ADD,
						     "port", (int)port, "tunnel_id", tunnel_id),
					   transport));
}

int relaylink_port_del(struct relaylink *rl, unsigned port)
{
	if (!relaylink_connected(rl))
		return -ENOTCONN;
	return send_obj(rl, json_pack("{s:s, s:i}", "type", CTL_PORT_DEL, "port", (int)port));
}

int relaylink_kick(struct relaylink *rl, const char *tunnel_id, const char *reason)
{
	if (!relaylink_connected(rl))
		return -ENOTCONN;
	return send_obj(rl, json_pack("{s:s, s:s, s:s}", "type", CTL_KICK, "tunnel_id", tunnel_id,
				      "reason", reason));
}

unsigned relaylink_generation(const struct relaylink *rl)
{
	return rl->gen;
}

int relaylink_acme_challenge(struct relaylink *rl, const char *domain, const char *token,
			     const char *keyauth)
{
	if (!relaylink_connected(rl))
		return -ENOTCONN;
	if (!keyauth)
		return send_obj(
		    rl, json_pack("{s:s, s:s}", "type", CTL_ACME_CHALLENGE_DEL, "token", token));
	return send_obj(rl, json_pack("{s:s, s:s, s:s, s:s}", "type", CTL_ACME_CHALLENGE, "domain",
				      domain, "token", token, "key_authorization", keyauth));
}

int relaylink_certs(struct relaylink *rl)
{
	if (!relaylink_connected(rl))
		return -ENOTCONN;
	return send_obj(rl, json_pack("{s:s}", "type", CTL_CERTS));
}

int relaylink_rule_push(struct relaylink *rl, const json_t *m)
{
	if (!relaylink_connected(rl))
		return -ENOTCONN;
	return send_obj(rl, json_deep_copy(m));
}

int relaylink_reload(struct relaylink *rl)
{
	if (!relaylink_connected(rl))
		return -ENOTCONN;
	return send_obj(rl, json_pack("{s:s}", "type", CTL_RELOAD));
}

static int fw_collect(const struct store_fw_rule *r, void *arr)
{
	struct cidr c;
	char text[CIDR_STR_MAX];

	/* what the store holds went in through cidr_parse; a hand-edited row may not have */
	if (cidr_parse(r->cidr, &c, NULL, 0)) {
		log_warn("firewall: the %s list in the store holds '%.64s', not an address "
			 "block: not sent to relayd",
			 store_fw_kind_name(r->kind), r->cidr);
		return 0;
	}
	cidr_format(&c, text, sizeof(text));
	return json_array_append_new(arr, json_string(text)) ? -ENOMEM : 0;
}

static json_t *fw_piece(void)
{
	return json_pack("{s:s, s:[], s:[]}", "type", CTL_FIREWALL, "deny", "allow");
}

/*
 * Sends the lists as one firewall message, or when they do not fit as pieces
 * of at most FW_PIECE_MAX bytes of blocks: every piece but the last has
 * "more": true, and relayd applies the lists when the last one arrives.
 */
static int fw_send(struct relaylink *rl, json_t *const lists[2], int *pieces)
{
	json_t *msg = fw_piece(), *v;
	size_t bytes = 0, i;
	int ret;

	*pieces = 0;
	for (int k = 0; k < 2; k++) {
		json_array_foreach(lists[k], i, v)
		{
			size_t n = json_string_length(v) + 3; /* the quotes and a comma */

			if (!msg)
				return -ENOMEM;
			if (bytes + n > FW_PIECE_MAX) {
				json_object_set_new(msg, "more", json_true());
				ret = send_obj(rl, msg);
				(*pieces)++;
				if (ret)
					return ret;
				msg = fw_piece();
				bytes = 0;
				if (!msg)
					return -ENOMEM;
			}
			if (json_array_append(json_object_get(msg, store_fw_kind_name(k)), v)) {
				json_decref(msg);
				return -ENOMEM;
			}
			bytes += n;
		}
	}
	(*pieces)++;
	return send_obj(rl, msg);
}

/* Sends the firewall as the store holds it now: 0, -ENOTCONN, -EIO (nothing sent). */
static int fw_push(struct relaylink *rl)
{
	json_t *lists[2] = {json_array(), json_array()};
	int ret = 0, pieces = 0;

	if (!relaylink_connected(rl)) {
		ret = -ENOTCONN;
		goto out;
	}
	/* both lists read whole first: relayd never gets a piece and then nothing */
	for (int k = 0; k < 2 && !ret; k++) {
		ret = lists[k] ? store_fw_list(rl->st, k, fw_collect, lists[k], NULL) : -ENOMEM;
		if (ret)
			log_error("firewall: could not read the %s list: not pushed to relayd",
				  store_fw_kind_name(k));
	}
	if (ret) {
		ret = -EIO;
		goto out;
	}
	ret = fw_send(rl, lists, &pieces);
	if (!ret)
		log_debug("firewall: pushed %zu deny and %zu allow block(s) to relayd in %d "
			  "message(s)",
			  json_array_size(lists[0]), json_array_size(lists[1]), pieces);
out:
	json_decref(lists[0]);
	json_decref(lists[1]);
	return ret;
}

int relaylink_firewall(struct relaylink *rl)
{
	if (!relaylink_connected(rl))
		return -ENOTCONN;
	rl->fw_due = true;
	return 0;
}

/* --- the mesh policy (mesh_policy) --- */

static int mesh_collect(const struct store_mesh_rule *r, void *arr)
{
	json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:i, s:i}", "id", (json_int_t)r->id, "action",
			      r->action == MESH_ALLOW ? "allow" : "deny", "from", r->from, "to",
			      r->to, "port_lo", (int)r->port_lo, "port_hi", (int)r->port_hi);

	return !o || json_array_append_new(arr, o) ? -ENOMEM : 0;
}

/* piece seq of a push: "first" on the first, "last" added when it is the last */
static json_t *mesh_piece(int seq)
{
	return json_pack("{s:s, s:i, s:b, s:[]}", "type", CTL_MESH_POLICY, "seq", seq, "first",
			 seq == 0, "rules");
}

/*
 * Sends the rules as the store holds them now, in pieces numbered from 0, the
 * first marked "first" and the last "last" (relayd installs a push only once
 * its last piece is in and every seq arrived in order): 0 or -errno.
 */
static int mesh_push(struct relaylink *rl)
{
	json_t *rules = json_array(), *msg = NULL, *v;
	size_t bytes = 0, i;
	int ret, pieces = 0;

	if (!relaylink_connected(rl)) {
		json_decref(rules);
		return -ENOTCONN;
	}
	/* read whole first: relayd never gets a piece and then nothing */
	ret = rules ? store_mesh_list(rl->st, mesh_collect, rules, NULL) : -ENOMEM;
	if (ret) {
		log_error("mesh: could not read the rules: not pushed to relayd");
		json_decref(rules);
		return -EIO;
	}
	msg = mesh_piece(0);
	json_array_foreach(rules, i, v)
	{
		/* the texts, their quotes and the members' names and numbers */
		size_t n = strlen(json_string_value(json_object_get(v, "from"))) +
			   strlen(json_string_value(json_object_get(v, "to"))) + 96;

		if (!msg) {
			ret = -ENOMEM;
			break;
		}
		if (bytes + n > FW_PIECE_MAX) {
			ret = send_obj(rl, msg);
			pieces++;
			msg = ret ? NULL : mesh_piece(pieces);
			bytes = 0;
			if (ret || !msg) {
				ret = ret ?: -ENOMEM;
				break;
			}
		}
		json_array_append(json_object_get(msg, "rules"), v);
		bytes += n;
	}
	if (!ret && msg) {
		json_object_set_new(msg, "last", json_true());
		pieces++;
		ret = send_obj(rl, msg);
	} else {
		json_decref(msg);
	}
	if (!ret)
		log_debug("mesh: pushed %zu rule(s) to relayd in %d message(s)",
			  json_array_size(rules), pieces);
	json_decref(rules);
	return ret;
}

int relaylink_mesh(struct relaylink *rl)
{
	if (!relaylink_connected(rl))
		return -ENOTCONN;
	rl->mesh_due = true;
	return 0;
}

int relaylink_domain_del(struct relaylink *rl, const char *domain)
{
	if (!relaylink_connected(rl))
		return -ENOTCONN;
	return send_obj(rl, json_pack("{s:s, s:s}", "type", CTL_DOMAIN_DEL, "domain", domain));
}

bool relaylink_released_init(struct relaylink_released *r)
{
	r->ports = json_array();
	r->domains = json_array();
	if (r->ports && r->domains)
		return true;
	relaylink_released_free(r);
	return false;
}

void relaylink_released_free(struct relaylink_released *r)
{
	json_decref(r->ports);
	json_decref(r->domains);
	r->ports = r->domains = NULL;
}

void relaylink_released_push(struct relaylink *rl, const struct relaylink_released *r)
{
	const json_t *v;
	size_t i;

	json_array_foreach(r->ports, i, v) relaylink_port_del(rl, (unsigned)json_integer_value(v));
	json_array_foreach(r->domains, i, v) relaylink_domain_del(rl, json_string_value(v));
}

int relaylink_collect_port(const struct store_port *p, void *released)
{
	struct relaylink_released *r = released;

	return json_array_append_new(r->ports, json_integer(p->port)) ? -ENOMEM : 0;
}

int relaylink_collect_domain(const struct store_domain *d, void *released)
{
	struct relaylink_released *r = released;

	return json_array_append_new(r->domains, json_string(d->domain)) ? -ENOMEM : 0;
}

/* --- member checks: -EBADMSG with why set when the message is malformed --- */

static int get_str(const json_t *m, const char *key, bool required, const char **out, char *why)
{
	const json_t *v = json_object_get(m, key);

	*out = NULL;
	if (!v || json_is_null(v)) {
		if (!required)
			return 0;
		snprintf(why, WHY_LEN, "%s: missing \"%s\"", msg_str(m, "type"), key);
		return -EBADMSG;
	}
	if (!json_is_string(v)) {
		snprintf(why, WHY_LEN, "%s: \"%s\" is not a string", msg_str(m, "type"), key);
		return -EBADMSG;
	}
	*out = json_string_value(v);
	return 0;
}

static int get_int(const json_t *m, const char *key, bool required, json_int_t dflt,
		   json_int_t *out, char *why)
{
	const json_t *v = json_object_get(m, key);

	*out = dflt;
	if (!v || json_is_null(v)) {
		if (!required)
			return 0;
		snprintf(why, WHY_LEN, "%s: missing \"%s\"", msg_str(m, "type"), key);
		return -EBADMSG;
	}
	if (!json_is_integer(v)) {
		snprintf(why, WHY_LEN, "%s: \"%s\" is not an integer", msg_str(m, "type"), key);
		return -EBADMSG;
	}
	*out = json_integer_value(v);
	return 0;
}

/* The client's strings; relayd checked them already, and so do we (valid_hello). */
static int get_info(const json_t *m, struct store_client_info *info, char *why)
{
	char err[160];
	int ret;

	if (!valid_hello(m, err, sizeof(err))) {
		snprintf(why, WHY_LEN, "%s: %s", msg_str(m, "type") ?: "client info", err);
		return -EBADMSG;
	}
	ret = get_str(m, "hostname", false, &info->hostname, why);
	if (!ret)
		ret = get_str(m, "os", false, &info->os, why);
	if (!ret)
		ret = get_str(m, "arch", false, &info->arch, why);
	if (!ret)
		ret = get_str(m, "client_version", false, &info->client_version, why);
	return ret;
}

static const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

/*
 * --- the kernel assists (ctl_proto.h, above CTL_STATS) in relay_hello and stats ---
 * Checked member by member: a value of the wrong type or out of range becomes
 * null (so does a malformed member of maps and xdp), never trusted and never fatal.
 */

#define IFNAME_MAX 15 /* IFNAMSIZ - 1 */
#define MODE_MAX   32

static const char *const kassist_keys[] = {"listeners", "maps", "xdp", "firewall_refused",
					   "http",	"mesh", "udp", "socks"};

/* A counter: a non-negative integer as a new reference, else NULL. */
static json_t *count_of(const json_t *v)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return NULL;
	return json_integer(json_integer_value(v));
}

/* A counter member of src set in dst, null when it is missing or malformed. */
static void set_count(json_t *dst, const json_t *src, const char *key)
{
	json_t *v = count_of(json_object_get(src, key));

	json_object_set_new(dst, key, v ? v : json_null());
}

/* A string member of src of a kind set in dst, null when missing or malformed. */
static void set_text(json_t *dst, const json_t *src, const char *key, enum valid_kind kind,
		     size_t max)
{
	const json_t *v = json_object_get(src, key);
	const char *s = json_string_value(v);

	if (s && strlen(s) == json_string_length(v) && valid_str(s, kind, max))
		json_object_set_new(dst, key, json_string(s));
	else
		json_object_set_new(dst, key, json_null());
}

/* maps: null, or {ports, deny, allow}; NULL (left out) when it is neither. */
static json_t *maps_of(const json_t *v)
{
	static const char *const keys[] = {"ports", "deny", "allow"};
	json_t *o;

	if (json_is_null(v))
		return json_null();
	if (!json_is_object(v) || !(o = json_object()))
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		set_count(o, v, keys[i]);
	return o;
}

/* xdp: null (off), or {interface, mode, syn_rate and the drop counters}; NULL when neither. */
static json_t *xdp_of(const json_t *v)
{
	static const char *const keys[] = {"syn_rate",	  "pass",	 "deny",
					   "not_allowed", "unallocated", "syn_rate_drops",
					   "malformed"};
	json_t *o;

	if (json_is_null(v))
		return json_null();
	if (!json_is_object(v) || !(o = json_object()))
		return NULL;
	set_text(o, v, "interface", VALID_TEXT, IFNAME_MAX);
	set_text(o, v, "mode", VALID_ID, MODE_MAX);
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		set_count(o, v, keys[i]);
	return o;
}

/* http: {requests and the edge's own answers by cause} (ctl_proto.h); NULL when no object. */
static json_t *http_of(const json_t *v)
{
	static const char *const keys[] = {"requests",	   "bad_request", "no_host", "unknown_host",
					   "offline",	   "too_large",	  "timeout", "busy",
					   "unauthorized", "tls_kernel"};
	json_t *o;

	if (!json_is_object(v) || !(o = json_object()))
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		set_count(o, v, keys[i]);
	return o;
}

/* mesh: {opened, denied_default, refused: {by reason}} (ctl_proto.h); NULL when no object. */
static json_t *mesh_of(const json_t *v)
{
	static const char *const reasons[] = {"denied",	     "not_found", "offline",
					      "not_allowed", "dns",	  "refused",
					      "unreachable", "busy",	  "bad"};
	const json_t *r = json_object_get(v, "refused");
	json_t *o, *ro = NULL;

	if (!json_is_object(v) || !(o = json_object()))
		return NULL;
	set_count(o, v, "opened");
	set_count(o, v, "denied_default");
	if (json_is_object(r) && (ro = json_object()))
		for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
			set_count(ro, r, reasons[i]);
	json_object_set_new(o, "refused", ro ? ro : json_null());
	/* relayd's resolver for mesh names */
	r = json_object_get(v, "dns");
	if (json_is_object(r) && (ro = json_object())) {
		set_count(ro, r, "lookups");
		set_count(ro, r, "cache_hits");
		set_count(ro, r, "queue_full");
		json_object_set_new(o, "dns", ro);
	}
	return o;
}

/*
 * udp: {flows, flows_expired, datagrams_in, datagrams_out, dropped: {queue, flows, oversize,
 * offline, socks}} (ctl_proto.h's stats); NULL when no object.
 */
static json_t *udp_of(const json_t *v)
{
	static const char *const keys[] = {"flows", "flows_expired", "datagrams_in",
					   "datagrams_out"};
	static const char *const drops[] = {"queue", "flows", "oversize", "offline", "socks"};
	const json_t *d = json_object_get(v, "dropped");
	json_t *o, *dobj = NULL;

	if (!json_is_object(v) || !(o = json_object()))
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		set_count(o, v, keys[i]);
	if (json_is_object(d) && (dobj = json_object()))
		for (size_t i = 0; i < ARRAY_SIZE(drops); i++)
			set_count(dobj, d, drops[i]);
	json_object_set_new(o, "dropped", dobj ? dobj : json_null());
	return o;
}

/* relayd's SOCKS server: {conns, refused{auth, locked, limit, method, handshake}} */
static json_t *socks_of(const json_t *v)
{
	static const char *const why[] = {"auth", "locked", "limit", "method", "handshake"};
	const json_t *r = json_object_get(v, "refused");
	json_t *o, *robj = NULL;

	if (!json_is_object(v) || !(o = json_object()))
		return NULL;
	set_count(o, v, "conns");
	if (json_is_object(r) && (robj = json_object()))
		for (size_t i = 0; i < ARRAY_SIZE(why); i++)
			set_count(robj, r, why[i]);
	json_object_set_new(o, "refused", robj ? robj : json_null());
	return o;
}

/*
 * worker_stats (ctl_proto.h): an array of at most WORKERS_MAX objects whose
 * members are counters; a member missing or malformed is null, an element that
 * is no object is null, and the array is cut at WORKERS_MAX. NULL when m has
 * no array there.
 */
#define WORKERS_MAX 256 /* [datapath] workers at most */

static json_t *workers_of(const json_t *v)
{
	static const char *const keys[] = {"sqes",    "cqes",	     "waits",
					   "sq_full", "nobufs",	     "cq_overflow",
					   "conns",   "conns_total", "links"};
	json_t *a, *e;
	size_t i;

	if (!json_is_array(v) || !(a = json_array()))
		return NULL;
	json_array_foreach(v, i, e)
	{
		json_t *o;

		if (i == WORKERS_MAX)
			break;
		if (!json_is_object(e) || !(o = json_object())) {
			json_array_append_new(a, json_null());
			continue;
		}
		for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
			set_count(o, e, keys[k]);
		json_array_append_new(a, o);
	}
	return a;
}

/* Replaces dst's kernel-assist members with the checked ones of m (those m has). */
static void keep_kassist(json_t *dst, const json_t *m)
{
	for (size_t i = 0; i < ARRAY_SIZE(kassist_keys); i++) {
		const char *key = kassist_keys[i];
		const json_t *v = json_object_get(m, key);
		json_t *c = NULL;

		json_object_del(dst, key);
		if (!v)
			continue;
		if (!strcmp(key, "maps"))
			c = maps_of(v);
		else if (!strcmp(key, "xdp"))
			c = xdp_of(v);
		else if (!strcmp(key, "http"))
			c = http_of(v);
		else if (!strcmp(key, "mesh"))
			c = mesh_of(v);
		else if (!strcmp(key, "udp"))
			c = udp_of(v);
		else if (!strcmp(key, "socks"))
			c = socks_of(v);
		else
			c = count_of(v);
		/* malformed: null, so that an older good value does not show instead */
		json_object_set_new(dst, key, c ? c : json_null());
	}
}

/* A port number as relayd writes it: decimal, no sign or leading zero, in the range. */
static long port_key(const struct relaylink *rl, const char *key)
{
	long port = 0;

	if (!*key || strlen(key) > 5 || key[0] == '0')
		return -1;
	for (const char *p = key; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		port = port * 10 + (*p - '0');
	}
	if (port < rl->cfg->port_min || port > rl->cfg->port_max)
		return -1;
	return port;
}

/*
 * port_counters {"PORT": [packets, bytes]}: the entries for ports of the range
 * with two counters are kept (at most the range's size), the rest ignored.
 * Absent or not an object: no counters.
 */
static void keep_counters(struct relaylink *rl, const json_t *m)
{
	size_t max = (size_t)rl->cfg->port_max - rl->cfg->port_min + 1, ignored = 0;
	const json_t *pc = json_object_get(m, "port_counters"), *v;
	const char *key;
	json_t *out = NULL;

	if (json_is_object(pc) && (out = json_object())) {
		json_object_foreach((json_t *)pc, key, v)
		{
			json_t *p, *b;

			if (json_object_size(out) >= max || port_key(rl, key) < 0 ||
			    json_array_size(v) != 2) {
				ignored++;
				continue;
			}
			p = count_of(json_array_get(v, 0));
			b = count_of(json_array_get(v, 1));
			if (!p || !b) {
				json_decref(p);
				json_decref(b);
				ignored++;
				continue;
			}
			json_object_set_new(out, key, json_pack("[o, o]", p, b));
		}
		if (ignored)
			log_every(NLOG_DEBUG, "relayd: %zu malformed port_counters entries ignored",
				  ignored);
	}
	json_decref(rl->counters);
	rl->counters = out;
}

bool relaylink_port_counters(const struct relaylink *rl, unsigned port, int64_t *packets,
			     int64_t *bytes)
{
	char key[8];
	json_t *v;

	if (!relaylink_connected(rl) || !rl->counters)
		return false;
	snprintf(key, sizeof(key), "%u", port);
	v = json_object_get(rl->counters, key);
	if (!v)
		return false;
	*packets = json_integer_value(json_array_get(v, 0));
	*bytes = json_integer_value(json_array_get(v, 1));
	return true;
}

/* --- handlers: 0, or -EBADMSG with why (the caller closes the connection) --- */

static int port_cb(const struct store_port *p, void *arg)
{
	json_t *o = with_transport(
	    json_pack("{s:i, s:s}", "port", (int)p->port, "tunnel_id", p->tunnel_id), p->transport);

	if (!o || json_array_append_new(arg, o))
		return -ENOMEM;
	return 0;
}

static int sync_domain_cb(const struct store_domain *d, void *arg)
{
	char norm[DOMAIN_MAX + 1];
	json_t *o;

	/* what the store holds went in through domain_norm; a hand-edited row may not have */
	if (!domain_norm(d->domain, strlen(d->domain), norm, true) || strcmp(norm, d->domain)) {
		/* the log line is escaped as a whole */
		log_warn("sync: the store holds '%.80s' (tunnel %.64s), not a normalised domain: "
			 "not sent to relayd",
			 d->domain, d->tunnel_id);
		return 0;
	}
	o = json_pack("{s:s, s:s}", "domain", d->domain, "tunnel_id", d->tunnel_id);
	if (!o || json_array_append_new(arg, o))
		return -ENOMEM;
	return 0;
}

static json_t *sync_piece(void)
{
	return json_pack("{s:s, s:[], s:[]}", "type", CTL_SYNC, "ports", "domains");
}

/* JSON bytes of one sync item, a bound: the members' names, quotes and punctuation */
static size_t sync_item_size(const json_t *v)
{
	return 48 + strlen(msg_str(v, "domain") ?: "") + strlen(msg_str(v, "tunnel_id") ?: "");
}

/*
 * Sends the ports and domains as one sync message, or, when they do not fit
 * MSG_MAX, as pieces like the firewall's: every piece but the last carries
 * "more": true. 0, -ENOMEM, or what send_obj returned.
 */
static int sync_send(struct relaylink *rl, json_t *ports, json_t *domains, int *pieces)
{
	json_t *const lists[2] = {ports, domains};
	static const char *const keys[2] = {"ports", "domains"};
	json_t *msg = sync_piece(), *v;
	size_t bytes = 0, i;
	int ret;

	*pieces = 0;
	for (int k = 0; k < 2; k++) {
		json_array_foreach(lists[k], i, v)
		{
			size_t n = sync_item_size(v);

			if (!msg)
				return -ENOMEM;
			if (bytes + n > FW_PIECE_MAX) {
				json_object_set_new(msg, "more", json_true());
				ret = send_obj(rl, msg);
				(*pieces)++;
				if (ret)
					return ret;
				msg = sync_piece();
				bytes = 0;
				if (!msg)
					return -ENOMEM;
			}
			if (json_array_append(json_object_get(msg, keys[k]), v)) {
				json_decref(msg);
				return -ENOMEM;
			}
			bytes += n;
		}
	}
	if (!msg)
		return -ENOMEM;
	(*pieces)++;
	return send_obj(rl, msg);
}

static int on_hello(struct relaylink *rl, json_t *m, char *why)
{
	static const char *const keep[] = {"pid", "workers", "ktls", "steering", "tls_fingerprint"};
	json_t *online, *item, *ports, *domains, *info;
	json_int_t version;
	int64_t total;
	size_t i;
	int ret, n_online = 0, pieces = 0;

	ret = get_int(m, "version", true, 0, &version, why);
	if (ret)
		return ret;
	if (version != CTL_PROTO_VERSION) {
		snprintf(why, WHY_LEN,
			 "relay_hello: protocol version %" JSON_INTEGER_FORMAT
			 " is not supported (want %d)",
			 version, CTL_PROTO_VERSION);
		return -EBADMSG;
	}
	online = json_object_get(m, "online");
	if (online && !json_is_array(online) && !json_is_null(online)) {
		snprintf(why, WHY_LEN, "relay_hello: \"online\" is not an array");
		return -EBADMSG;
	}
	/* check everything before changing anything */
	json_array_foreach(online, i, item)
	{
		struct store_client_info ci;
		const char *tid;

		if (!json_is_object(item)) {
			snprintf(why, WHY_LEN, "relay_hello: online[%zu] is not an object", i);
			return -EBADMSG;
		}
		ret = get_str(item, "tunnel_id", true, &tid, why);
		if (!ret)
			ret = get_info(item, &ci, why);
		if (ret) {
			/* items carry no "type": name the message ourselves */
			snprintf(why, WHY_LEN, "relay_hello: online[%zu] is malformed", i);
			return ret;
		}
	}

	info = json_object();
	for (i = 0; info && i < ARRAY_SIZE(keep); i++) {
		json_t *v = json_object_get(m, keep[i]);

		if (v)
			json_object_set(info, keep[i], v);
	}
	if (info)
		keep_kassist(info, m);
	json_decref(rl->info);
	rl->info = info;
	keep_counters(rl, m);

	if (store_tunnel_all_offline(rl->st))
		log_error("relay_hello: could not reset tunnel states");
	json_array_foreach(online, i, item)
	{
		struct store_client_info ci;
		const char *tid = msg_str(item, "tunnel_id");

		get_info(item, &ci, why);
		ret = store_tunnel_set_state(rl->st, tid, STORE_ONLINE, &ci);
		if (ret == -ENOENT)
			log_warn("relayd reports unknown tunnel %.64s online", tid);
		else if (ret)
			log_error("relay_hello: could not mark tunnel %.64s online", tid);
		else
			n_online++;
	}

	ports = json_array();
	domains = json_array();
	if (!ports || !domains) {
		json_decref(ports);
		json_decref(domains);
		return -ENOMEM;
	}
	ret = store_port_list(rl->st, NULL, 0, INT64_MAX, port_cb, ports, &total);
	if (!ret)
		ret =
		    store_domain_list(rl->st, NULL, 0, INT64_MAX, sync_domain_cb, domains, &total);
	if (ret) {
		/* relayd must not start from a partial list: let it reconnect */
		json_decref(ports);
		json_decref(domains);
		snprintf(why, WHY_LEN, "could not read the port allocations and domains for sync");
		return -EIO;
	}
	rl->hello = true;
	rl->gen++;
	ret = sync_send(rl, ports, domains, &pieces);
	log_info("relayd (pid %d) said hello: %d tunnel(s) online, syncing %zu port(s) and %zu "
		 "domain(s) in %d message(s)",
		 (int)rl->pid, n_online, json_array_size(ports), json_array_size(domains), pieces);
	json_decref(ports);
	json_decref(domains);
	if (ret == -ENOMEM) {
		snprintf(why, WHY_LEN, "out of memory building sync");
		return ret;
	}
	/*
	 * The mesh policy now, right behind sync, not when the queue drains: relayd
	 * reads it before the answer to any auth it sends from here on, so no tunnel
	 * it admits ever opens a stream under no policy at all.
	 */
	rl->mesh_due = false;
	if (mesh_push(rl))
		rl->mesh_due = true; /* retried when the queue drains */
	relaylink_firewall(rl);	     /* sent once sync is out */
	ruleops_unsend(rl->st, NULL);
	ruleops_pump(rl->st, rl, NULL); /* remote rule operations of the tunnels online */
	return 0;
}

/*
 * A client revokes its own token: revoked, its ports and domains released
 * and pushed as port_del and domain_del. 0 with *rel filled (the caller
 * frees it), or -errno.
 */
static int deauth_tunnel(struct relaylink *rl, const char *tid, struct relaylink_released *rel)
{
	int ret = relaylink_released_init(rel) ? 0 : -ENOMEM;

	if (!ret)
		ret = store_tunnel_revoke(rl->st, tid, relaylink_collect_port,
					  relaylink_collect_domain, rel);
	if (ret) {
		relaylink_released_free(rel);
		return ret;
	}
	log_info("tunnel %.64s: its client revoked the token (deauth); %zu port(s) and %zu "
		 "domain(s) released",
		 tid, json_array_size(rel->ports), json_array_size(rel->domains));
	relaylink_released_push(rl, rel);
	return 0;
}

/* What a token's restrictions are checked against at auth (restrict.h). */
struct auth_who {
	bool has_source;
	uint8_t source[16]; /* sock_addr16's form */
	char source_text[CIDR_STR_MAX];
	const char *name; /* the HELLO's id, else its hostname; NULL: none */
	bool registration;
	bool source_only; /* a deauth: allow_from only (the tunnel's name is not asked for) */
	bool mesh;	  /* out: the token's (registration's) kinds name "mesh" */
};

/*
 * The source address relayd saw the client connect from ("source", an
 * address without a prefix): 0 with who filled, 0 without one, or -1 with
 * the reason in err (the auth is refused).
 */
static int auth_source(const json_t *m, struct auth_who *who, char *err, size_t errlen)
{
	const json_t *v = json_object_get(m, "source");
	char r[160], shown[4 * 48 + 8];
	struct cidr c;
	const char *t;

	if (!v || json_is_null(v))
		return 0;
	t = json_string_value(v);
	if (t && strlen(t) == json_string_length(v) && !cidr_parse(t, &c, r, sizeof(r)) &&
	    c.prefix == (c.family == AF_INET ? 32 : 128)) {
		who->has_source = true;
		memset(who->source, 0, sizeof(who->source));
		if (c.family == AF_INET) {
			who->source[10] = who->source[11] = 0xff;
			memcpy(who->source + 12, c.addr, 4);
		} else {
			memcpy(who->source, c.addr, 16);
		}
		cidr_format(&c, who->source_text, sizeof(who->source_text));
		*strchrnul(who->source_text, '/') = 0;
		return 0;
	}
	if (!t)
		snprintf(err, errlen, "auth: \"source\" is not a string");
	else {
		log_escape(t, json_string_length(v) < 48 ? json_string_length(v) : 48, shown,
			   sizeof(shown), false);
		snprintf(err, errlen, "auth: \"source\" \"%s\" is not an address", shown);
	}
	return -1;
}

/* store_restrict_check: the client's source and tunnel name against the restrictions. */
static int auth_check(const struct restrict_set *rs, const char *stored, void *arg, char *err,
		      size_t errlen)
{
	const struct auth_who *who = arg;
	const char *what = who->registration ? "registration token" : "token";
	/* an auth token's tunnel is the one it was made for, whatever the HELLO says */
	const char *name = stored ? stored : who->name;
	char list[128];

	/* the mesh role: named in kinds; an unrestricted token ("") does not have it */
	((struct auth_who *)arg)->mesh = *rs->kinds && restrict_kind_ok(rs->kinds, "mesh");

	if (*rs->allow_from) {
		restrict_brief(rs->allow_from, list, 100);
		if (!who->has_source) {
			snprintf(err, errlen,
				 "the source address is unknown and this %s allows only %s", what,
				 list);
			return -1;
		}
		if (!restrict_from_ok(rs->allow_from, who->source)) {
			snprintf(err, errlen,
				 "source address %s is not allowed by this %s (allow_from %s)",
				 who->source_text, what, list);
			return -1;
		}
	}
	if (*rs->allow_ids && !who->source_only && !restrict_id_ok(rs->allow_ids, name)) {
		restrict_brief(rs->allow_ids, list, 100);
		if (name)
			snprintf(err, errlen,
				 "tunnel id \"%s\" is not allowed by this %s (allow_ids %s)", name,
				 what, list);
		else
			snprintf(err, errlen,
				 "this %s allows only the tunnel ids %s and the client named none",
				 what, list);
		return -1;
	}
	return 0;
}

/* auth_ok for a session: the tunnel's group id and its mesh role go with it */
static json_t *auth_ok_msg(struct relaylink *rl, json_int_t req, const char *tid,
			   const struct auth_who *who, const char *token)
{
	json_t *o = json_pack("{s:s, s:I, s:s}", "type", CTL_AUTH_OK, "req", req, "tunnel_id", tid);
	struct store_tunnel tun;

	if (!o)
		return NULL;
	if (token)
		json_object_set_new(o, "token", json_string(token));
	if (!store_tunnel_get(rl->st, tid, &tun) && tun.group_id[0] &&
	    valid_str(tun.group_id, VALID_ID, LINK_GROUP_MAX))
		json_object_set_new(o, "group", json_string(tun.group_id));
	if (who->mesh)
		json_object_set_new(o, "mesh", json_true());
	return o;
}

/*
 * A certificate login relayd checked (chain, CRL, the name a tunnel id):
 * {name, serial, not_after}. The tunnel is the certificate's name. Not for
 * deauth or a SOCKS check (refused: those take tokens).
 */
static int auth_cert(struct relaylink *rl, json_int_t req, json_t *cert, bool run, bool token_only,
		     const struct store_client_info *ci, char *why)
{
	const char *name = json_string_value(json_object_get(cert, "name"));
	const char *serial = json_string_value(json_object_get(cert, "serial"));
	char err[WHY_LEN], identity[160];
	struct auth_who who = {0};

	if (!json_is_object(cert) || !name || !valid_str(name, VALID_ID, LINK_ID_MAX - 1) ||
	    valid_tunnel_id_shaped(name) || !serial || !*serial || strlen(serial) > 40 ||
	    strspn(serial, "0123456789abcdef") != strlen(serial)) {
		snprintf(why, WHY_LEN,
			 "auth: \"certificate\" is not {name (a tunnel id), serial (hex)}");
		return -EBADMSG;
	}
	if (token_only) {
		reply_error(rl, req, "a certificate cannot be used here: this takes a token");
		return 0;
	}
	if (store_auth_cert(rl->st, name, run, ci, err, sizeof(err))) {
		reply_error(rl, req, err);
		return 0;
	}
	if (run) {
		snprintf(identity, sizeof(identity), "certificate %s serial %s", name, serial);
		store_tunnel_set_identity(rl->st, name, identity);
	}
	log_info("tunnel %.64s authenticated by certificate serial %s (host %.64s)", name, serial,
		 or_dash(ci->hostname));
	send_obj(rl, auth_ok_msg(rl, req, name, &who, NULL));
	return 0;
}

static int on_auth(struct relaylink *rl, json_t *m, char *why)
{
	struct auth_who who = {0};
	struct store_client_info ci;
	const char *token, *reg, *mode, *group;
	char tid[STORE_TUNNEL_ID_LEN], tok[STORE_SECRET_LEN], err[WHY_LEN];
	json_int_t req;
	bool run, deauth;
	struct relaylink_released rel;
	json_t *cert;
	int ret;

	ret = get_int(m, "req", true, 0, &req, why);
	if (!ret)
		ret = get_str(m, "token", false, &token, why);
	if (!ret)
		ret = get_str(m, "registration", false, &reg, why);
	if (!ret)
		ret = get_str(m, "mode", false, &mode, why);
	if (!ret)
		ret = get_str(m, "id", false, &group, why);
	if (ret)
		return ret;
	/* a client's strings, refused with a reason (relayd checks them first) */
	if (!valid_hello(m, err, sizeof(err))) {
		reply_error(rl, req, err);
		return 0;
	}
	ret = get_info(m, &ci, why);
	if (ret)
		return ret;
	cert = json_object_get(m, "certificate");
	if (!!token + !!reg + !!cert != 1) {
		snprintf(why, WHY_LEN,
			 "auth: needs exactly one of \"token\", \"registration\" and "
			 "\"certificate\"");
		return -EBADMSG;
	}
	if (mode && strcmp(mode, "run") && strcmp(mode, "configure") && strcmp(mode, "deauth") &&
	    strcmp(mode, "check")) {
		snprintf(why, WHY_LEN, "auth: \"mode\" is not run, configure, deauth or check");
		return -EBADMSG;
	}
	/* check: relayd's SOCKS server asks whether a token is good (nothing is updated) */
	if (mode && !strcmp(mode, "check") && reg) {
		reply_error(rl, req, "a SOCKS login needs a token");
		return 0;
	}
	run = !mode || !strcmp(mode, "run");
	deauth = mode && !strcmp(mode, "deauth");
	if (cert)
		return auth_cert(rl, req, cert, run, deauth || (mode && !strcmp(mode, "check")),
				 &ci, why);
	/* the restrictions' inputs: where the client connects from, the name it asks for */
	if (auth_source(m, &who, err, sizeof(err))) {
		log_every(NLOG_WARN, "auth refused: %s", err);
		reply_error(rl, req, err);
		return 0;
	}
	who.name = group && *group ? group : ci.hostname && *ci.hostname ? ci.hostname : NULL;
	who.registration = reg != NULL;

	if (reg) {
		struct store_tunnel other;

		if (deauth) {
			reply_error(rl, req, "deauth needs a token");
			return 0;
		}
		/* a certificate tunnel's name (its id and group id) is not a group for others */
		if (group && *group && !store_tunnel_get(rl->st, group, &other) &&
		    !other.token_id[0]) {
			snprintf(err, sizeof(err),
				 "id \"%s\" is the name of a certificate tunnel: choose another",
				 group);
			log_every(NLOG_INFO, "auth refused (registration): %s", err);
			reply_error(rl, req, err);
			return 0;
		}
		ret = store_auth_registration_rs(rl->st, reg, group, &ci, auth_check, &who, tid,
						 tok, err, sizeof(err));
		if (ret) {
			log_every(NLOG_INFO, "auth refused (registration, host %.64s): %s",
				  or_dash(ci.hostname), err);
			reply_error(rl, req, err);
			return 0;
		}
		log_info("tunnel %.64s created from registration %.8s (host %.64s)", tid, reg + 4,
			 or_dash(ci.hostname));
		send_obj(rl, auth_ok_msg(rl, req, tid, &who, tok));
		memset(tok, 0, sizeof(tok));
		return 0;
	}
	/*
	 * A deauth revokes the token: it must come from where the token may be used
	 * (allow_from), or a leaked token could knock the device off from anywhere.
	 */
	who.source_only = deauth;
	ret = store_auth_token_rs(rl->st, token, run, &ci, auth_check, &who, tid, err, sizeof(err));
	if (ret) {
		log_every(NLOG_INFO, "auth refused (host %.64s): %s", or_dash(ci.hostname), err);
		reply_error(rl, req, err);
		return 0;
	}
	if (deauth) {
		if (deauth_tunnel(rl, tid, &rel)) {
			reply_error(rl, req, "internal error");
			return 0;
		}
		relaylink_released_free(&rel);
		/* a session of the tunnel running elsewhere is shut down */
		relaylink_kick(rl, tid, "token revoked (deauth)");
		send_obj(rl, json_pack("{s:s, s:I, s:s, s:b}", "type", CTL_AUTH_OK, "req", req,
				       "tunnel_id", tid, "revoked", 1));
		return 0;
	}
	log_debug("tunnel %.64s authenticated (%s, host %.64s)", tid, mode ? mode : "run",
		  or_dash(ci.hostname));
	if (run) {
		char identity[80];
		struct store_tunnel tun;

		/* which token: the tunnel's (a token is bound to one tunnel) */
		if (!store_tunnel_get(rl->st, tid, &tun) && tun.token_id[0]) {
			snprintf(identity, sizeof(identity), "token %s", tun.token_id);
			if (strcmp(identity, tun.identity))
				store_tunnel_set_identity(rl->st, tid, identity);
		}
	}
	send_obj(rl, auth_ok_msg(rl, req, tid, &who, NULL));
	return 0;
}

static int on_tunnel_online(struct relaylink *rl, json_t *m, char *why)
{
	struct store_client_info ci;
	const char *tid;
	int ret;

	ret = get_str(m, "tunnel_id", true, &tid, why);
	if (!ret)
		ret = get_info(m, &ci, why);
	if (ret)
		return ret;
	ret = store_tunnel_set_state(rl->st, tid, STORE_ONLINE, &ci);
	if (ret == -ENOENT)
		log_warn("relayd reports unknown tunnel %.64s online", tid);
	else if (ret)
		log_error("could not mark tunnel %.64s online", tid);
	else
		log_every(NLOG_INFO, "tunnel %.64s online (host %.64s)", tid, or_dash(ci.hostname));
	if (!ret) {
		ruleops_unsend(rl->st, tid);
		ruleops_pump(rl->st, rl, tid); /* operations queued while it was offline */
	}
	return 0;
}

static int on_tunnel_offline(struct relaylink *rl, json_t *m, char *why)
{
	const char *tid, *reason;
	int ret;

	ret = get_str(m, "tunnel_id", true, &tid, why);
	if (!ret)
		ret = get_str(m, "reason", false, &reason, why);
	if (ret)
		return ret;
	ret = store_tunnel_set_state(rl->st, tid, STORE_OFFLINE, NULL);
	if (ret == -ENOENT)
		log_warn("relayd reports unknown tunnel %.64s offline", tid);
	else if (ret)
		log_error("could not mark tunnel %.64s offline", tid);
	else
		log_every(NLOG_INFO, "tunnel %.64s offline: %.200s", tid, or_dash(reason));
	ruleops_unsend(rl->st, tid);
	return 0;
}

static int on_port_request(struct relaylink *rl, json_t *m, char *why)
{
	struct restrict_set rs;
	unsigned lo, hi;
	const char *tid, *rule, *transport = STORE_TRANSPORT_TCP;
	char err[WHY_LEN];
	struct store_port p;
	json_int_t req, port;
	json_t *v;
	bool created;
	int ret;

	ret = get_int(m, "req", true, 0, &req, why);
	if (!ret)
		ret = get_str(m, "tunnel_id", true, &tid, why);
	if (!ret)
		ret = get_int(m, "port", false, 0, &port, why);
	if (!ret)
		ret = get_str(m, "rule", false, &rule, why);
	if (ret)
		return ret;
	if (rule && *rule && !cfg_valid_name(rule)) {
		reply_error(rl, req, "invalid rule name");
		return 0;
	}
	/* absent (an older relayd) = tcp; anything but "tcp" or "udp" is refused */
	v = json_object_get(m, "transport");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v) || !store_transport_valid(json_string_value(v))) {
			reply_error(rl, req, "bad transport");
			return 0;
		}
		transport = json_string_value(v);
	}
	if (port < 0 || port > 65535) {
		snprintf(err, sizeof(err),
			 "port %" JSON_INTEGER_FORMAT " is outside the range %u-%u", port,
			 rl->cfg->port_min, rl->cfg->port_max);
		reply_error(rl, req, err);
		return 0;
	}
	/* the role of the tunnel's token: the transport allowed, the port inside its range */
	ret = store_tunnel_restrictions(rl->st, tid, &rs);
	if (ret && ret != -ENOENT) {
		reply_error(rl, req, "internal error");
		return 0;
	}
	if (!ret && !restrict_kind_ok(rs.kinds, transport)) {
		snprintf(err, sizeof(err), "this token does not allow %s rules (kinds %s)",
			 transport, rs.kinds);
		log_every(NLOG_INFO, "port request of tunnel %.64s refused: %s", tid, err);
		reply_error(rl, req, err);
		return 0;
	}
	if (ret || !restrict_port_range(rs.ports, &lo, &hi))
		lo = hi = 0;
	ret = store_port_alloc_in(rl->st, tid, (unsigned)port, rule, transport, lo, hi, &p,
				  &created, err, sizeof(err));
	if (ret) {
		log_every(NLOG_INFO, "port request of tunnel %.64s refused: %s", tid, err);
		reply_error(rl, req, err);
		return 0;
	}
	if (created)
		log_every(NLOG_INFO, "%s port %u allocated to tunnel %.64s (rule %s)", p.transport,
			  p.port, tid, or_dash(p.rule));
	send_obj(rl, with_transport(json_pack("{s:s, s:I, s:s, s:i}", "type", CTL_PORT_GRANT, "req",
					      req, "tunnel_id", tid, "port", (int)p.port),
				    p.transport));
	return 0;
}

static int on_port_release(struct relaylink *rl, json_t *m, char *why)
{
	const char *tid;
	char err[WHY_LEN];
	json_int_t req, port;
	int ret;

	ret = get_int(m, "req", true, 0, &req, why);
	if (!ret)
		ret = get_str(m, "tunnel_id", true, &tid, why);
	if (!ret)
		ret = get_int(m, "port", true, 0, &port, why);
	if (ret)
		return ret;
	if (port <= 0 || port > 65535) {
		snprintf(err, sizeof(err), "port %" JSON_INTEGER_FORMAT " is not allocated", port);
		reply_error(rl, req, err);
		return 0;
	}
	ret = store_port_release(rl->st, (unsigned)port, tid, NULL, err, sizeof(err));
	if (ret) {
		reply_error(rl, req, err);
		return 0;
	}
	log_every(NLOG_INFO, "port %u released by tunnel %.64s", (unsigned)port, tid);
	send_obj(rl, json_pack("{s:s, s:I, s:I}", "type", CTL_RELEASED, "req", req, "port", port));
	return 0;
}

/*
 * A tunnel_id member of a request: a string (-EBADMSG otherwise), and one of
 * our ids (the reply names the refusal otherwise: false).
 */
static bool tunnel_id_ok(struct relaylink *rl, json_int_t req, const char *tid)
{
	if (valid_str(tid, VALID_ID, STORE_TUNNEL_ID_LEN - 1))
		return true;
	reply_error(rl, req, "invalid tunnel_id");
	return false;
}

/* The length in bytes of a string member (a JSON string may hold NUL). */
static size_t str_len(const json_t *m, const char *key)
{
	return json_string_length(json_object_get(m, key));
}

static int on_domain_request(struct relaylink *rl, json_t *m, char *why)
{
	struct restrict_set rs;
	const char *tid, *domain, *rule;
	char d[DOMAIN_MAX + 1], err[2 * WHY_LEN];
	struct store_domain row;
	json_int_t req;
	bool created;
	int ret;

	ret = get_int(m, "req", true, 0, &req, why);
	if (!ret)
		ret = get_str(m, "tunnel_id", true, &tid, why);
	if (!ret)
		ret = get_str(m, "domain", true, &domain, why);
	if (!ret)
		ret = get_str(m, "rule", true, &rule, why);
	if (ret)
		return ret;
	if (!tunnel_id_ok(rl, req, tid))
		return 0;
	if (!valid_str(rule, VALID_NAME, LINK_RULE_MAX) || strlen(rule) != str_len(m, "rule")) {
		snprintf(err, sizeof(err), "rule must be 1-%d characters: %s", LINK_RULE_MAX,
			 valid_alphabet(VALID_NAME));
		reply_error(rl, req, err);
		return 0;
	}
	if (!store_domain_check(domain, str_len(m, "domain"), d, err, sizeof(err))) {
		log_every(NLOG_INFO, "domain request of tunnel %.64s refused: %s", tid, err);
		reply_error(rl, req, err);
		return 0;
	}
	/* the role of the tunnel's token: http allowed, the domain under its patterns */
	ret = store_tunnel_restrictions(rl->st, tid, &rs);
	if (ret && ret != -ENOENT) {
		reply_error(rl, req, "internal error");
		return 0;
	}
	if (!ret && !restrict_kind_ok(rs.kinds, "http")) {
		snprintf(err, sizeof(err), "this token does not allow http rules (kinds %s)",
			 rs.kinds);
		log_every(NLOG_INFO, "domain request of tunnel %.64s refused: %s", tid, err);
		reply_error(rl, req, err);
		return 0;
	}
	if (!ret && !store_domain_allowed(rs.domains, d)) {
		char list[128];

		restrict_brief(rs.domains, list, 100);
		snprintf(err, sizeof(err), "domain %s is not allowed by this token (domains %s)", d,
			 list);
		log_every(NLOG_INFO, "domain request of tunnel %.64s refused: %s", tid, err);
		reply_error(rl, req, err);
		return 0;
	}
	if (!store_domain_allowed(rl->cfg->allowed_domains, d)) {
		snprintf(err, sizeof(err), "domain %s is not in the server's allowed_domains", d);
		log_every(NLOG_INFO, "domain request of tunnel %.64s refused: %s", tid, err);
		reply_error(rl, req, err);
		return 0;
	}
	ret = store_domain_claim(rl->st, tid, d, rule, &row, &created, err, sizeof(err));
	if (ret) {
		log_every(NLOG_INFO, "domain request of tunnel %.64s refused: %s", tid, err);
		reply_error(rl, req, err);
		return 0;
	}
	if (created)
		log_every(NLOG_INFO, "domain %s claimed by tunnel %.64s (rule %s)", row.domain, tid,
			  row.rule);
	send_obj(rl, json_pack("{s:s, s:I, s:s, s:s}", "type", CTL_DOMAIN_GRANT, "req", req,
			       "tunnel_id", tid, "domain", row.domain));
	return 0;
}

static int on_domain_release(struct relaylink *rl, json_t *m, char *why)
{
	const char *tid, *domain;
	char err[2 * WHY_LEN];
	struct store_domain row;
	json_int_t req;
	int ret;

	ret = get_int(m, "req", true, 0, &req, why);
	if (!ret)
		ret = get_str(m, "tunnel_id", true, &tid, why);
	if (!ret)
		ret = get_str(m, "domain", true, &domain, why);
	if (ret)
		return ret;
	if (!tunnel_id_ok(rl, req, tid))
		return 0;
	if (strlen(domain) != str_len(m, "domain")) {
		reply_error(rl, req, "the domain holds a NUL byte");
		return 0;
	}
	ret = store_domain_release(rl->st, domain, tid, &row, err, sizeof(err));
	if (ret) {
		reply_error(rl, req, err);
		return 0;
	}
	log_every(NLOG_INFO, "domain %s released by tunnel %.64s", row.domain, tid);
	send_obj(rl, json_pack("{s:s, s:I, s:s}", "type", CTL_DOMAIN_RELEASED, "req", req, "domain",
			       row.domain));
	return 0;
}

static int on_port_sync(struct relaylink *rl, json_t *m, char *why)
{
	const char *tid, *names[LINK_RULES_MAX];
	struct relaylink_released rel;
	json_t *rules, *v;
	json_int_t req;
	size_t i, n;
	int ret;

	ret = get_int(m, "req", true, 0, &req, why);
	if (!ret)
		ret = get_str(m, "tunnel_id", true, &tid, why);
	if (ret)
		return ret;
	rules = json_object_get(m, "rules");
	n = json_array_size(rules);
	if (!json_is_array(rules) || n > ARRAY_SIZE(names)) {
		snprintf(why, WHY_LEN, "port_sync: \"rules\" is not an array of at most %zu names",
			 ARRAY_SIZE(names));
		return -EBADMSG;
	}
	json_array_foreach(rules, i, v)
	{
		names[i] = json_string_value(v);
		if (!names[i] || !cfg_valid_name(names[i])) {
			snprintf(why, WHY_LEN, "port_sync: rules[%zu] is not a rule name", i);
			return -EBADMSG;
		}
	}
	if (!relaylink_released_init(&rel)) {
		reply_error(rl, req, "internal error");
		return 0;
	}
	/* the ports released stay released when the domains fail: both are pushed */
	ret = store_port_sync(rl->st, tid, names, n, relaylink_collect_port, &rel);
	if (!ret)
		ret = store_domain_sync(rl->st, tid, names, n, relaylink_collect_domain, &rel);
	if (json_array_size(rel.ports) || json_array_size(rel.domains))
		log_info("tunnel %.64s: %zu port(s) and %zu domain(s) released that its client's "
			 "rules no longer hold",
			 tid, json_array_size(rel.ports), json_array_size(rel.domains));
	relaylink_released_push(rl, &rel);
	if (ret)
		reply_error(rl, req, "internal error");
	else
		send_obj(rl, json_pack("{s:s, s:I, s:O, s:O}", "type", CTL_PORT_SYNCED, "req", req,
				       "released", rel.ports, "released_domains", rel.domains));
	relaylink_released_free(&rel);
	return 0;
}

static int on_deauth(struct relaylink *rl, json_t *m, char *why)
{
	const char *tid;
	json_int_t req;
	struct relaylink_released rel;
	int ret;

	ret = get_int(m, "req", true, 0, &req, why);
	if (!ret)
		ret = get_str(m, "tunnel_id", true, &tid, why);
	if (ret)
		return ret;
	ret = deauth_tunnel(rl, tid, &rel);
	if (ret) {
		reply_error(rl, req, ret == -ENOENT ? "unknown tunnel" : "internal error");
		return 0;
	}
	send_obj(rl, json_pack("{s:s, s:I, s:O, s:O}", "type", CTL_DEAUTHED, "req", req, "released",
			       rel.ports, "released_domains", rel.domains));
	relaylink_released_free(&rel);
	return 0;
}

static int on_stats(struct relaylink *rl, json_t *m, char *why)
{
	json_t *online = json_object_get(m, "online"), *copy, *v;
	size_t i;

	if (online && !json_is_array(online) && !json_is_null(online)) {
		snprintf(why, WHY_LEN, "stats: \"online\" is not an array");
		return -EBADMSG;
	}
	json_array_foreach(online, i, v)
	{
		if (!json_is_string(v)) {
			snprintf(why, WHY_LEN, "stats: online[%zu] is not a string", i);
			return -EBADMSG;
		}
	}
	json_array_foreach(online, i, v)
	{
		if (store_tunnel_touch(rl->st, json_string_value(v)))
			log_error("stats: could not refresh tunnel %.64s", json_string_value(v));
	}
	copy = json_copy(m);
	if (copy) {
		json_object_del(copy, "type");
		json_object_del(copy, "online");
		json_object_del(copy, "port_counters");
		keep_kassist(copy, m);
		json_object_del(copy, "worker_stats");
		v = workers_of(json_object_get(m, "worker_stats"));
		if (v)
			json_object_set_new(copy, "worker_stats", v);
	}
	json_decref(rl->stats);
	rl->stats = copy;
	keep_counters(rl, m);
	return 0;
}

static int on_rule_result(struct relaylink *rl, json_t *m, char *why)
{
	return ruleops_result(rl->st, rl, m, why, WHY_LEN);
}

/*
 * conn_records: every record checked (ctl/records.h); a bad one is dropped and
 * counted, the batch stored in one transaction. Only a malformed message closes
 * the link.
 */
static int on_conn_records(struct relaylink *rl, json_t *m, char *why)
{
	char bad_why[WHY_LEN];
	size_t n, nbad;
	int ret;

	if (!rl->recs && !(rl->recs = calloc(RECORDS_MSG_MAX, sizeof(*rl->recs)))) {
		log_every(NLOG_ERROR, "conn_records: out of memory, records dropped");
		rl->rec_failed += json_array_size(json_object_get(m, "records"));
		return 0;
	}
	ret = records_parse(m, rl->recs, RECORDS_MSG_MAX, &n, &nbad, bad_why, sizeof(bad_why));
	if (ret) {
		snprintf(why, WHY_LEN, "%s", bad_why);
		return ret;
	}
	rl->rec_received += n + nbad;
	rl->rec_refused += nbad;
	if (nbad)
		log_every(NLOG_WARN, "relayd sent %zu malformed connection record(s), dropped: %s",
			  nbad, bad_why);
	ret = store_records_add(rl->st, rl->recs, n);
	if (ret < 0) {
		rl->rec_failed += n;
		log_every(NLOG_ERROR, "conn_records: %zu record(s) not stored: %s", n,
			  strerror(-ret));
		return 0;
	}
	rl->rec_stored += (uint64_t)ret;
	if ((size_t)ret < n) {
		rl->rec_refused += n - (size_t)ret;
		log_every(NLOG_WARN,
			  "relayd sent %zu connection record(s) of unknown tunnels, "
			  "dropped",
			  n - (size_t)ret);
	}
	return 0;
}

json_t *relaylink_records_status(const struct relaylink *rl)
{
	return json_pack("{s:I, s:I, s:I, s:I}", "received", (json_int_t)rl->rec_received, "stored",
			 (json_int_t)rl->rec_stored, "refused", (json_int_t)rl->rec_refused,
			 "failed", (json_int_t)rl->rec_failed);
}

/* support_*: ctl/support.c */
static int on_support(struct relaylink *rl, json_t *m, char *why)
{
	return rl->sup ? support_handle(rl->sup, rl, m, why, WHY_LEN) : 0;
}

static const struct {
	const char *type;
	int (*fn)(struct relaylink *rl, json_t *m, char *why);
} handlers[] = {
    {CTL_RELAY_HELLO, on_hello},
    {CTL_AUTH, on_auth},
    {CTL_TUNNEL_ONLINE, on_tunnel_online},
    {CTL_TUNNEL_OFFLINE, on_tunnel_offline},
    {CTL_PORT_REQUEST, on_port_request},
    {CTL_PORT_RELEASE, on_port_release},
    {CTL_DOMAIN_REQUEST, on_domain_request},
    {CTL_DOMAIN_RELEASE, on_domain_release},
    {CTL_PORT_SYNC, on_port_sync},
    {CTL_DEAUTH, on_deauth},
    {CTL_STATS, on_stats},
    {CTL_RULE_RESULT, on_rule_result},
    {CTL_CONN_RECORDS, on_conn_records},
    {CTL_SUPPORT_REQUEST, on_support},
    {CTL_SUPPORT_CONNECT, on_support},
    {CTL_SUPPORT_END, on_support},
    {CTL_SUPPORT_LS, on_support},
    {CTL_SUPPORT_EVENT, on_support},
};

static int dispatch(struct relaylink *rl, json_t *m, char *why)
{
	const char *type = msg_str(m, "type");

	for (size_t i = 0; i < ARRAY_SIZE(handlers); i++) {
		if (strcmp(type, handlers[i].type) != 0)
			continue;
		if (!rl->hello && handlers[i].fn != on_hello)
			log_debug("relayd sent %.64s before relay_hello", type);
		return handlers[i].fn(rl, m, why);
	}
	log_debug("ignoring relayd message of unknown type \"%.64s\"", type);
	return 0;
}

/* --- input --- */

/*
 * Dispatches the messages buffered in the reader: false when the connection
 * closed, or when this wake-up's READ_BUDGET_MS is spent (rl->busy: the rest
 * waits for the next turn of the loop, so the admin API is served in between
 * however fast relayd sends).
 */
static bool conn_drain(struct relaylink *rl, uint64_t t0)
{
	char why[WHY_LEN];
	json_t *m;
	int ret;

	while (rl->fd >= 0) {
		if (now_ms() - t0 >= READ_BUDGET_MS) {
			rl->busy = true;
			return false;
		}
		why[0] = 0;
		ret = msg_reader_next(&rl->rd, &m, why, sizeof(why));
		if (ret == 0)
			return true;
		if (ret < 0) {
			conn_close(rl, NLOG_WARN, why);
			return false;
		}
		ret = dispatch(rl, m, why);
		json_decref(m);
		if (ret) {
			if (!why[0])
				snprintf(why, sizeof(why), "%s", strerror(-ret));
			conn_close(rl, NLOG_WARN, why);
			return false;
		}
	}
	return false;
}

static void conn_read(struct relaylink *rl)
{
	uint64_t t0 = now_ms();
	char why[WHY_LEN];
	uint8_t buf[16384];
	int ret;

	rl->busy = false;
	if (!conn_drain(rl, t0)) /* what an earlier turn left */
		return;
	for (int n = 0; n < READS_PER_POLL && rl->fd >= 0; n++) {
		ssize_t r = recv(rl->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (r == 0) {
			conn_close(rl, NLOG_WARN, "relayd disconnected");
			return;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			snprintf(why, sizeof(why), "read: %s", strerror(errno));
			conn_close(rl, NLOG_WARN, why);
			return;
		}
		ret = msg_reader_feed(&rl->rd, buf, (size_t)r);
		if (ret) {
			snprintf(why, sizeof(why), "input buffer: %s", strerror(-ret));
			conn_close(rl, NLOG_WARN, why);
			return;
		}
		if (!conn_drain(rl, t0))
			return;
	}
}

bool relaylink_busy(const struct relaylink *rl)
{
	return rl->busy && rl->fd >= 0;
}

static void do_accept(struct relaylink *rl)
{
	for (;;) {
		struct ucred uc;
		socklen_t len = sizeof(uc);
		char why[WHY_LEN];
		int fd = accept4(rl->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("relay.sock: accept: %s", strerror(errno));
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0) {
			log_warn("relay.sock: refusing a connection: SO_PEERCRED: %s",
				 strerror(errno));
			close(fd);
			continue;
		}
		if (uc.uid != geteuid() && uc.uid != 0) {
			log_warn("relay.sock: refusing pid %d: uid %u is neither controld's uid %u "
				 "nor root",
				 (int)uc.pid, (unsigned)uc.uid, (unsigned)geteuid());
			close(fd);
			continue;
		}
		if (rl->fd >= 0) {
			snprintf(why, sizeof(why), "replaced by a new relayd connection (pid %d)",
				 (int)uc.pid);
			conn_close(rl, NLOG_WARN, why);
		}
		rl->fd = fd;
		rl->pid = uc.pid;
		log_info("relayd connected (pid %d, uid %u)", (int)uc.pid, (unsigned)uc.uid);
	}
}

int relaylink_pollfds(struct relaylink *rl, struct pollfd *pfd)
{
	int n = 0;

	/*
	 * A firewall push waits for the output queue to drain: changes made
	 * meanwhile (a script adding blocks one by one) go out as one push of
	 * the latest lists, and a slow relayd is never sent a backlog of them.
	 */
	if (rl->fw_due && relaylink_connected(rl) && !rl->out.len) {
		rl->fw_due = false;
		fw_push(rl);
	}
	/* the mesh policy likewise: a burst of rule changes is one push */
	if (rl->mesh_due && relaylink_connected(rl) && !rl->out.len) {
		rl->mesh_due = false;
		mesh_push(rl);
	}

	pfd[n].fd = rl->lfd;
	pfd[n].events = POLLIN;
	pfd[n++].revents = 0;
	if (rl->fd >= 0) {
		pfd[n].fd = rl->fd;
		pfd[n].events = POLLIN | (rl->out.len ? POLLOUT : 0);
		pfd[n++].revents = 0;
	}
	return n;
}

void relaylink_process(struct relaylink *rl, const struct pollfd *pfd, int n)
{
	bool read = false;

	for (int i = 0; i < n; i++) {
		if (!pfd[i].revents)
			continue;
		if (pfd[i].fd == rl->lfd) {
			do_accept(rl);
			continue;
		}
		/* the connection may have been replaced by the accept above */
		if (pfd[i].fd != rl->fd)
			continue;
		if (pfd[i].revents & POLLOUT)
			flush_out(rl);
		if (rl->fd >= 0 && pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
			conn_read(rl);
			read = true;
		}
	}
	if (!read && relaylink_busy(rl))
		conn_read(rl);
}

const json_t *relaylink_stats(const struct relaylink *rl)
{
	return relaylink_connected(rl) ? rl->stats : NULL;
}

const json_t *relaylink_counters(const struct relaylink *rl)
{
	return relaylink_connected(rl) ? rl->counters : NULL;
}

json_t *relaylink_status(const struct relaylink *rl)
{
	static const char *const keys[] = {"pid",
					   "workers",
					   "ktls",
					   "steering",
					   "conns",
					   "conns_total",
					   "bytes_in",
					   "bytes_out",
					   "links",
					   "links_ktls",
					   "links_tls",
					   "ktls_fallbacks",
					   "refused_per_source",
					   "idle_timeouts",
					   "pending_timeouts",
					   "refused_max_links",
					   "refused_fd_limit",
					   "records_sent",
					   "records_dropped",
					   "listeners",
					   "maps",
					   "xdp",
					   "firewall_refused",
					   "http",
					   "mesh",
					   "udp",
					   "socks"};
	bool up = relaylink_connected(rl);
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new(o, "connected", json_boolean(up));
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		json_t *v = NULL;

		if (up && rl->stats)
			v = json_object_get(rl->stats, keys[i]);
		if (up && !v && rl->info)
			v = json_object_get(rl->info, keys[i]);
		if (up && !v && !strcmp(keys[i], "pid")) {
			/* a relayd that does not say its pid: the kernel told us */
			json_object_set_new(o, keys[i], json_integer(rl->pid));
			continue;
		}
		json_object_set(o, keys[i], v ? v : json_null());
	}
	return o;
}

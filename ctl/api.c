// SPDX-License-Identifier: Apache-2.0
/*
 * The admin API of ctl/API.md on control.sock. libmicrohttpd runs without
 * threads: controld's loop polls the fds MHD reports and calls
 * MHD_run_from_select, so every handler runs on the loop's thread and uses
 * the store directly. Requests are routed by a table of {method, path
 * pattern, handler}; a handler reads the parsed JSON body and query, fills a
 * response object and returns the HTTP status. Errors are {"error": reason}.
 * Admin actions that relayd must know about are pushed through relaylink
 * (ports, kicks, and the whole firewall after each change of it).
 * With [admin] listen set, a second MHD daemon serves the same routes over
 * TLS with the server certificate; there every request but those
 * api_auth_exempt lets through is authenticated first (auth.c).
 */
#include "api.h"
#include "api_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cidr.h"
#include "config/cfg.h"
#include "ctl/relaylink.h"
#include "ctl/acme.h"
#include "ctl/records.h"
#include "ctl/metrics.h"
#include "ctl/mhdpoll.h"
#include "ctl/reload.h"
#include "ctl/ruleops.h"
#include "ctl/store.h"
#include "ctl/ui.h"
#include "link_proto.h"
#include "log.h"
#include "rulemsg.h"
#include "tls/pki.h"
#include "tls/tls.h"
#include "util.h"
#include "valid.h"

#define BODY_MAX   (64 * 1024)
#define MAX_SEGS   4
#define ID_MAX	   64		    /* ids in paths and queries: [A-Za-z0-9._-] */
#define SEARCH_MAX STORE_SEARCH_MAX /* tunnels ?search=: text without control characters */
#define CTL_MARK   0x7f		    /* what a decoded control byte becomes (see unescape) */

void api_set_metrics(struct api *a, struct metrics *m)
{
	if (a)
		a->metrics = m;
}

void api_set_acme(struct api *a, struct acme *acme)
{
	a->acme = acme;
}

/* Per-request state kept by MHD between calls of the access handler. */
struct req {
	char *body;
	size_t len;
	bool too_big;
	bool answered; /* a response is queued already (head_check, a body too big) */
	bool authed;   /* the admin listener authenticated the head: the fields below */
	bool by_key, by_cert, have_session;
	char who[64];
	struct store_session sess;
	uint64_t start_us; /* the head arrived (metrics_now_us) */
};

int fail(struct call *c, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_decref(c->out);
	c->out = json_pack("{s:s}", "error", msg);
	if (!c->out) { /* not UTF-8 (a path echoed back): say it in ASCII */
		char esc[4 * sizeof(msg)];

		log_escape(msg, strlen(msg), esc, sizeof(esc), false);
		c->out = json_pack("{s:s}", "error", esc);
	}
	return status;
}

int internal(struct call *c)
{
	return fail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error (see the controld log)");
}

/* A JSON string, never NULL for stored text (it is valid UTF-8 by construction). */
static json_t *jstr(const char *s)
{
	json_t *v = json_string(s ? s : "");

	return v ? v : json_string("");
}

/* Times are Unix seconds, null when unset. */
static json_t *jtime(int64_t t)
{
	return t ? json_integer(t) : json_null();
}

/* --- request helpers --- */

const char *query(struct call *c, const char *key)
{
	return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, key);
}

/*
 * An optional query value of a kind: 0 with *out (NULL when absent or
 * empty), or 400 with the response set.
 */
int query_arg(struct call *c, const char *key, enum valid_kind kind, size_t max, const char **out)
{
	const char *v = query(c, key);

	*out = v && *v ? v : NULL;
	if (*out && !valid_str(v, kind, max))
		return fail(c, MHD_HTTP_BAD_REQUEST, "invalid %s: 1-%zu characters: %s", key, max,
			    valid_alphabet(kind));
	return 0;
}

/* Parses a decimal integer filling the whole string. */
static bool parse_ll(const char *s, long long *v)
{
	char *end;

	if (!s || !*s)
		return false;
	errno = 0;
	*v = strtoll(s, &end, 10);
	return !errno && !*end;
}

int get_page(struct call *c, long long *page)
{
	const char *p = query(c, "page");

	*page = 1;
	if (p && (!parse_ll(p, page) || *page < 1 || *page > 1000000000))
		return fail(c, MHD_HTTP_BAD_REQUEST, "invalid page \"%s\"", p);
	return 0;
}

/* Optional body members of a kind (valid.h): 0, or 400 with the response set. */
int body_str(struct call *c, const char *key, enum valid_kind kind, size_t max, const char **out)
{
	json_t *v = json_object_get(c->body, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"%s\" must be a string", key);
	if (!json_string_length(v))
		return 0;
	if (!valid_str(json_string_value(v), kind, max) ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"%s\" must be 1-%zu bytes: %s", key, max,
			    valid_alphabet(kind));
	*out = json_string_value(v);
	return 0;
}

int body_int(struct call *c, const char *key, long long min, long long max, long long *out)
{
	json_t *v = json_object_get(c->body, key);

	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"%s\" must be an integer", key);
	*out = json_integer_value(v);
	if (*out < min || *out > max)
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"%s\" must be between %lld and %lld", key,
			    min, max);
	return 0;
}

/*
 * A token's or a registration's restrictions from the body (restrict.h): the
 * lists allow_from, allow_ids, kinds, domains as arrays of strings, ports as
 * "A-B" inside [ports] range; absent or null = unrestricted. 0, or 400 naming
 * the member (and the item) with the response set.
 */
static int body_restrict(struct call *c, struct restrict_set *rs)
{
	static const enum restrict_list lists[] = {RESTRICT_FROM, RESTRICT_IDS, RESTRICT_KINDS,
						   RESTRICT_DOMAINS};
	char *outs[] = {rs->allow_from, rs->allow_ids, rs->kinds, rs->domains};
	size_t lens[] = {sizeof(rs->allow_from), sizeof(rs->allow_ids), sizeof(rs->kinds),
			 sizeof(rs->domains)};
	char why[256];
	json_t *v, *item;
	size_t i;

	memset(rs, 0, sizeof(*rs));
	for (size_t k = 0; k < ARRAY_SIZE(lists); k++) {
		const char *key = restrict_list_name(lists[k]);

		v = json_object_get(c->body, key);
		if (!v || json_is_null(v))
			continue;
		if (!json_is_array(v) || !json_array_size(v) || json_array_size(v) > 64)
			return fail(c, MHD_HTTP_BAD_REQUEST,
				    "\"%s\" must be an array of 1 or more strings (null: no "
				    "restriction)",
				    key);
		json_array_foreach(v, i, item)
		{
			if (!json_is_string(item))
				return fail(c, MHD_HTTP_BAD_REQUEST,
					    "\"%s\" item %zu is not a string", key, i + 1);
			if (!restrict_add(lists[k], json_string_value(item),
					  json_string_length(item), outs[k], lens[k], why,
					  sizeof(why)))
				return fail(c, MHD_HTTP_BAD_REQUEST, "\"%s\" item %zu: %s", key,
					    i + 1, why);
		}
	}
	v = json_object_get(c->body, "ports");
	if (!v || json_is_null(v) || (json_is_string(v) && !json_string_length(v)))
		return 0;
	if (!json_is_string(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"ports\" must be a string A-B (null: any)");
	if (!restrict_ports(json_string_value(v), json_string_length(v), c->a->cfg->port_min,
			    c->a->cfg->port_max, rs->ports, why, sizeof(why)))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"ports\": %s", why);
	return 0;
}

/* {"items": items, "page", "per_page", "total"}; consumes items. */
int list_reply(struct call *c, json_t *items, long long page, int64_t total)
{
	c->out = json_pack("{s:o, s:I, s:i, s:I}", "items", items, "page", (json_int_t)page,
			   "per_page", PER_PAGE, "total", (json_int_t)total);
	return c->out ? MHD_HTTP_OK : internal(c);
}

/* --- record -> JSON, from the entity's column table (store.h) --- */

/* "a,b" as ["a", "b"], "" as null (STORE_J_LIST); NULL on failure. */
static json_t *list_json(const char *text)
{
	json_t *a;

	if (!*text)
		return json_null();
	a = json_array();
	while (a && *text) {
		size_t n = strcspn(text, ",");

		if (json_array_append_new(a, json_stringn(text, n))) {
			json_decref(a);
			return NULL;
		}
		text += n + (text[n] == ',');
	}
	return a;
}

/* A member's value, or NULL (not UTF-8 where that fails, or out of memory). */
static json_t *col_json(const struct store_col *k, const void *row)
{
	const char *text = (const char *)row + k->off;

	switch (k->jtype) {
	case STORE_J_STR:
		return json_string(text);
	case STORE_J_TEXT:
		return jstr(text);
	case STORE_J_STR_NULL:
		return *text ? json_string(text) : json_null();
	case STORE_J_INT:
		return json_integer(store_col_int(k, row));
	case STORE_J_TIME:
		return jtime(store_col_int(k, row));
	case STORE_J_BOOL:
		return json_boolean(store_col_int(k, row));
	case STORE_J_ENUM:
		return json_string(store_col_name(k, row));
	case STORE_J_LIST:
		return list_json(text);
	case STORE_J_NONE:
		break;
	}
	return NULL;
}

/* A record of e as a JSON object of its members in table order; NULL when one fails. */
json_t *row_json(const struct store_entity *e, const void *row, enum form form)
{
	json_t *o = json_object();

	for (size_t i = 0; o && i < e->ncols; i++) {
		const struct store_col *k = &e->cols[i];

		if (k->jtype == STORE_J_NONE ||
		    (form == FORM_BRIEF && !(k->flags & STORE_J_BRIEF)) ||
		    (form == FORM_NEW && (k->flags & STORE_J_STORED)))
			continue;
		if (json_object_set_new(o, k->json, col_json(k, row))) {
			json_decref(o);
			o = NULL;
		}
	}
	return o;
}

/* A registration or a token, with its secret when just made (shown this once). */
static json_t *secret_json(const struct store_entity *e, const void *row, const char *token)
{
	json_t *o = row_json(e, row, token ? FORM_NEW : FORM_FULL);

	if (o && token)
		json_object_set_new(o, "token", json_string(token));
	return o;
}

/* A walk of store_list that appends each record, in a form, to items. */
struct walk {
	struct api *a;
	const struct store_entity *e;
	enum form form;
	item_fn extra;
	json_t *items;
};

static int walk_item(const void *row, void *arg)
{
	struct walk *w = arg;
	json_t *o = row_json(w->e, row, w->form);

	if (o && w->extra && w->extra(w->a, row, o)) {
		json_decref(o);
		o = NULL;
	}
	return o && !json_array_append_new(w->items, o) ? 0 : -ENOMEM;
}

/* Every record of e that f keeps, in the form, as a new array; NULL on failure. */
static json_t *all_json(struct api *a, const struct store_entity *e, const struct store_filter *f,
			enum form form)
{
	struct walk w = {a, e, form, NULL, json_array()};

	if (w.items && store_list(a->st, e, f, 0, -1, walk_item, &w, NULL)) {
		json_decref(w.items);
		return NULL;
	}
	return w.items;
}

/* A tunnel's rules: its ports and its domains, each with its rule name. */
static int tunnel_rules(struct api *a, const void *row, json_t *o)
{
	const struct store_tunnel *t = row;
	struct store_filter f = {.tunnel_id = t->id};
	json_t *ports = all_json(a, &store_ports, &f, FORM_BRIEF);
	json_t *domains = all_json(a, &store_domains, &f, FORM_BRIEF);
	json_t *traffic = all_json(a, &store_rule_traffics, &f, FORM_BRIEF);

	if (!ports || !domains || !traffic) {
		json_decref(ports);
		json_decref(domains);
		json_decref(traffic);
		return -ENOMEM;
	}
	/* each rule's bytes and connections from the connection records (ctl/records.h) */
	if (json_object_set_new(o, "traffic", traffic)) {
		json_decref(ports);
		json_decref(domains);
		return -ENOMEM;
	}
	/* json_object_set_new takes its value even when it fails: domains is still ours */
	if (json_object_set_new(o, "ports", ports)) {
		json_decref(domains);
		return -ENOMEM;
	}
	return json_object_set_new(o, "domains", domains) ? -ENOMEM : 0;
}

/* A port with the packets and bytes relayd's XDP counted for it, when it reported them. */
static int port_counters(struct api *a, const void *row, json_t *o)
{
	const struct store_port *p = row;
	int64_t packets, bytes;

	if (relaylink_port_counters(a->rl, p->port, &packets, &bytes) &&
	    (json_object_set_new(o, "packets", json_integer(packets)) ||
	     json_object_set_new(o, "bytes", json_integer(bytes))))
		return -ENOMEM;
	return 0;
}

/*
 * A GET of a list: the page asked for of e's records that f keeps, each with
 * what extra adds (may be NULL), as {"items", "page", "per_page", "total"}.
 */
int list_page(struct call *c, const struct store_entity *e, const struct store_filter *f,
	      item_fn extra)
{
	struct walk w = {c->a, e, FORM_FULL, extra, NULL};
	long long page;
	int64_t total;
	int ret = get_page(c, &page);

	if (ret)
		return ret;
	w.items = json_array();
	if (!w.items ||
	    store_list(c->a->st, e, f, (page - 1) * PER_PAGE, PER_PAGE, walk_item, &w, &total)) {
		json_decref(w.items);
		return internal(c);
	}
	return list_reply(c, w.items, page, total);
}

/* The one tunnel of a show or a change, with its rules. */
static json_t *tunnel_json(struct api *a, const struct store_tunnel *t)
{
	json_t *o = row_json(&store_tunnels, t, FORM_FULL);

	if (o && tunnel_rules(a, t, o)) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

/* --- handlers: return the HTTP status with c->out set --- */

static int h_status(struct call *c)
{
	struct api *a = c->a;
	char fpr[TLS_FPR_LEN], cert[CFG_PATH_MAX + 32], range[32];
	int64_t total, online, ports;
	json_t *fp = json_null();

	if (store_tunnel_counts(a->st, &total, &online) || store_port_count(a->st, &ports))
		return internal(c);
	if (a->cfg->certificate[0])
		snprintf(cert, sizeof(cert), "%s", a->cfg->certificate);
	else
		snprintf(cert, sizeof(cert), "%s/tls/server.crt", a->cfg->state_dir);
	if (access(cert, F_OK) == 0 && tls_cert_fingerprint_file(cert, fpr) == 0)
		fp = json_string(fpr);
	snprintf(range, sizeof(range), "%u-%u", a->cfg->port_min, a->cfg->port_max);
	c->out =
	    json_pack("{s:s, s:I, s:o, s:{s:I, s:I}, s:o, s:{s:s, s:I}, s:o}", "version",
		      NAVE_VERSION, "uptime", (json_int_t)((now_ms() - a->started_ms) / 1000),
		      "relay", relaylink_status(a->rl), "tunnels", "total", (json_int_t)total,
		      "online", (json_int_t)online, "tls_fingerprint", fp, "ports", "range", range,
		      "allocated", (json_int_t)ports, "records", relaylink_records_status(a->rl));
	return c->out ? MHD_HTTP_OK : internal(c);
}

static int h_registrations_list(struct call *c)
{
	return list_page(c, &store_registrations, NULL, NULL);
}

static int h_registrations_create(struct call *c)
{
	struct restrict_set rs;
	struct store_registration r;
	char token[STORE_SECRET_LEN];
	const char *desc;
	long long max_uses, expires;
	int ret;

	char uses[48], life[48];

	ret = body_str(c, "description", VALID_TEXT, STORE_STR_LEN - 1, &desc);
	if (!ret)
		ret = body_int(c, "max_uses", 0, 1000000000, &max_uses);
	if (!ret)
		ret = body_int(c, "expires", 0, 100LL * 365 * 86400, &expires);
	if (!ret)
		ret = body_restrict(c, &rs);
	if (ret)
		return ret;
	if (store_registration_create_rs(c->a->st, desc, max_uses, expires, &rs, &r, token))
		return internal(c);
	if (max_uses)
		snprintf(uses, sizeof(uses), "%lld use%s", max_uses, max_uses == 1 ? "" : "s");
	else
		snprintf(uses, sizeof(uses), "unlimited uses");
	if (expires) {
		char d[24];

		cfg_format_duration_ms((uint64_t)expires * 1000, d, sizeof(d));
		snprintf(life, sizeof(life), "expires in %s", d);
	} else
		snprintf(life, sizeof(life), "never expires");
	log_info("api: registration %s created (%s, %s)", r.id, uses, life);
	c->out = secret_json(&store_registrations, &r, token);
	memset(token, 0, sizeof(token));
	return c->out ? MHD_HTTP_CREATED : internal(c);
}

static int set_enabled(struct call *c, bool on)
{
	struct store_registration r;
	int ret = store_registration_set_enabled(c->a->st, c->id, on, &r);

	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown registration %s", c->id);
	if (ret)
		return internal(c);
	log_info("api: registration %s %s", r.id, on ? "enabled" : "disabled");
	c->out = row_json(&store_registrations, &r, FORM_FULL);
	return c->out ? MHD_HTTP_OK : internal(c);
}

static int h_registration_disable(struct call *c)
{
	return set_enabled(c, false);
}

static int h_registration_enable(struct call *c)
{
	return set_enabled(c, true);
}

static int h_tokens_list(struct call *c)
{
	return list_page(c, &store_tokens, NULL, NULL);
}

static int h_tokens_create(struct call *c)
{
	struct restrict_set rs;
	struct store_token t;
	char token[STORE_SECRET_LEN];
	const char *group, *desc;
	int ret;

	ret = body_str(c, "id", VALID_ID, LINK_GROUP_MAX, &group);
	/* the id is the tunnel's group id: a mesh rule must never take it for a tunnel id */
	if (!ret && valid_tunnel_id_shaped(group))
		return fail(c, MHD_HTTP_BAD_REQUEST,
			    "\"id\" must not look like a tunnel id (t- and hex digits)");
	if (!ret)
		ret = body_str(c, "description", VALID_TEXT, STORE_STR_LEN - 1, &desc);
	if (!ret)
		ret = body_restrict(c, &rs);
	if (ret)
		return ret;
	if (store_token_create_rs(c->a->st, group, desc, &rs, &t, token))
		return internal(c);
	log_info("api: token %s created for tunnel %s", t.id, t.tunnel_id);
	c->out = secret_json(&store_tokens, &t, token);
	memset(token, 0, sizeof(token));
	return c->out ? MHD_HTTP_CREATED : internal(c);
}

static int h_token_show(struct call *c)
{
	struct store_token t;
	int ret = store_token_get(c->a->st, c->id, &t);

	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown token %s", c->id);
	if (ret)
		return internal(c);
	c->out = row_json(&store_tokens, &t, FORM_FULL);
	return c->out ? MHD_HTTP_OK : internal(c);
}

static int h_token_revoke(struct call *c)
{
	struct relaylink_released rel;
	struct store_token t;
	bool changed;
	int ret = relaylink_released_init(&rel) ? 0 : -ENOMEM;

	if (!ret)
		ret = store_token_revoke(c->a->st, c->id, &t, &changed, relaylink_collect_port,
					 relaylink_collect_domain, &rel);
	if (ret) {
		relaylink_released_free(&rel);
		if (ret == -ENOENT)
			return fail(c, MHD_HTTP_NOT_FOUND, "unknown token %s", c->id);
		return internal(c);
	}
	/* a tunnel that can no longer connect holds no ports and no domains */
	if (changed || json_array_size(rel.ports) || json_array_size(rel.domains))
		log_info("api: token %s %s (tunnel %s); %zu port(s) and %zu domain(s) released",
			 t.id, changed ? "revoked" : "was revoked already", t.tunnel_id,
			 json_array_size(rel.ports), json_array_size(rel.domains));
	relaylink_released_push(c->a->rl, &rel);
	if (changed && relaylink_kick(c->a->rl, t.tunnel_id, "token revoked") == 0)
		log_info("api: kicked tunnel %s", t.tunnel_id);
	relaylink_released_free(&rel);
	c->out = row_json(&store_tokens, &t, FORM_FULL);
	return c->out ? MHD_HTTP_OK : internal(c);
}

static int h_tunnels_list(struct call *c)
{
	const char *online = query(c, "online");
	bool only = online && (!strcmp(online, "1") || !strcmp(online, "true"));
	struct store_filter f = {.online_only = only};
	int ret;

	if (online && !only && strcmp(online, "0") && strcmp(online, "false") && *online)
		return fail(c, MHD_HTTP_BAD_REQUEST, "invalid online (1 or 0)");
	ret = query_arg(c, "search", VALID_TEXT, SEARCH_MAX, &f.search);
	return ret ? ret : list_page(c, &store_tunnels, &f, tunnel_rules);
}

static int h_tunnel_get(struct call *c)
{
	struct store_tunnel t;
	int ret = store_tunnel_get(c->a->st, c->id, &t);

	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown tunnel %s", c->id);
	if (ret)
		return internal(c);
	c->out = tunnel_json(c->a, &t);
	return c->out ? MHD_HTTP_OK : internal(c);
}

/*
 * navectl reload: controld reads its config again (ctl/reload.h) and asks
 * relayd to do the same. A file that does not load is refused here and
 * relayd is not asked (it reads the same file).
 */
static int h_reload(struct call *c)
{
	struct cfg_reload r;
	int relay;

	if (ctl_reload(c->a->cfg, c->a->st, &r) < 0)
		return fail(c, MHD_HTTP_CONFLICT, "%s: the running configuration stays", r.error);
	relay = relaylink_reload(c->a->rl);
	log_info("api: reload: controld done, relayd %s", relay ? "not connected" : "asked");
	c->out = json_pack("{s:{s:I, s:s, s:I, s:s, s:s}, s:s}", "controld", "waiting",
			   (json_int_t)r.nwaiting, "changes", r.waiting, "applied",
			   (json_int_t)r.napplied, "applied_changes", r.applied, "refused",
			   r.refused, "relayd", relay ? "not connected" : "asked");
	return c->out ? MHD_HTTP_OK : internal(c);
}

/* navectl acme status: the ACME client's state (ctl/acme.h) */
static int h_acme(struct call *c)
{
	c->out = acme_status(c->a->acme);
	return c->out ? MHD_HTTP_OK : internal(c);
}

/* {domain?}: a renewal (or a revocation and a new certificate) now; the thread answers later */
static int acme_ask(struct call *c, bool rev)
{
	json_t *d = c->body ? json_object_get(c->body, "domain") : NULL;
	const char *domain = json_string_value(d);
	char err[300];

	if (d && !json_is_null(d) && (!domain || strlen(domain) > DOMAIN_MAX))
		return fail(c, MHD_HTTP_BAD_REQUEST, "domain: a domain name");
	if ((rev ? acme_revoke : acme_renew)(c->a->acme, domain, err, sizeof(err)) < 0)
		return fail(c, MHD_HTTP_CONFLICT, "%s", err);
	log_info("api: acme: %s of %s asked", rev ? "revocation" : "renewal",
		 domain ? "one domain" : "every domain");
	c->out = acme_status(c->a->acme);
	return c->out ? MHD_HTTP_ACCEPTED : internal(c);
}

static int h_acme_renew(struct call *c)
{
	return acme_ask(c, false);
}

static int h_acme_revoke(struct call *c)
{
	return acme_ask(c, true);
}

#define BACKUPS_KEPT 10 /* the newest backups controld keeps in state_dir/backups */

/* navectl backup: an online, consistent copy of the store in state_dir/backups. */
static int h_backup(struct call *c)
{
	char dir[CFG_PATH_MAX + 16], path[CFG_PATH_MAX + 64], err[CFG_PATH_MAX + 256];
	int64_t bytes = 0;

	if (snprintf(dir, sizeof(dir), "%s/backups", c->a->cfg->state_dir) >= (int)sizeof(dir))
		return internal(c);
	if (store_backup(c->a->st, dir, BACKUPS_KEPT, path, sizeof(path), &bytes, err,
			 sizeof(err)) < 0) {
		log_error("api: backup: %s", err);
		return fail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "backup failed: %s", err);
	}
	c->out = json_pack("{s:s, s:I, s:i, s:i}", "path", path, "bytes", (json_int_t)bytes,
			   "schema_version", store_schema_version(c->a->st), "kept", BACKUPS_KEPT);
	return c->out ? MHD_HTTP_CREATED : internal(c);
}

static int h_tunnel_shutdown(struct call *c)
{
	struct store_tunnel t;
	int ret = store_tunnel_get(c->a->st, c->id, &t);

	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown tunnel %s", c->id);
	if (ret)
		return internal(c);
	if (relaylink_kick(c->a->rl, t.id, "shut down by the administrator"))
		return fail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "relayd is not connected");
	log_info("api: tunnel %s shut down by the administrator", t.id);
	c->out = tunnel_json(c->a, &t);
	return c->out ? MHD_HTTP_OK : internal(c);
}

/* --- remote rule operations (ctl/ruleops.c) --- */

static int rules_status(struct call *c, int ret, const char *tid)
{
	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown tunnel %s", tid);
	if (ret == -ENOSPC)
		return fail(c, MHD_HTTP_CONFLICT,
			    "tunnel %s has %d remote rule operations pending already; wait for "
			    "them (its client applies them when it is online)",
			    tid, RULEOPS_PENDING_MAX);
	if (ret)
		return internal(c);
	return MHD_HTTP_ACCEPTED;
}

static int h_tunnel_rules_list(struct call *c)
{
	int ret = ruleops_list(c->a->st, c->id, &c->out);

	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "unknown tunnel %s", c->id);
	return ret ? internal(c) : MHD_HTTP_OK;
}

/* {kind, name, ...}: the members of the client's rule sections (common/rulemsg.h) */
static int h_tunnel_rules_add(struct call *c)
{
	char err[300];
	json_t *op;
	int ret;

	if (!c->body)
		return fail(c, MHD_HTTP_BAD_REQUEST,
			    "kind: missing (a body {\"kind\": \"tcp\" "
			    "or \"http\", \"name\", ...})");
	op = rulemsg_norm(c->body, "add", NULL, err, sizeof(err));
	if (!op)
		return fail(c, MHD_HTTP_BAD_REQUEST, "%s", err);
	ret = ruleops_queue(c->a->st, c->a->rl, c->id, op, &c->out);
	json_decref(op);
	return rules_status(c, ret, c->id);
}

static int h_tunnel_rule_rm(struct call *c)
{
	json_t *req = json_pack("{s:s}", "name", c->id), *op;
	char err[300];
	int ret;

	if (c->body)
		return fail(c, MHD_HTTP_BAD_REQUEST, "DELETE takes no body");
	op = req ? rulemsg_norm(req, "rm", NULL, err, sizeof(err)) : NULL;
	json_decref(req);
	if (!op)
		return fail(c, MHD_HTTP_BAD_REQUEST, "%s", req ? err : "out of memory");
	ret = ruleops_queue(c->a->st, c->a->rl, c->id0, op, &c->out);
	json_decref(op);
	return rules_status(c, ret, c->id0);
}

static int h_ports_list(struct call *c)
{
	struct store_filter f = {0};
	int ret = query_arg(c, "tunnel", VALID_ID, ID_MAX, &f.tunnel_id);

	return ret ? ret : list_page(c, &store_ports, &f, port_counters);
}

static int h_ports_allocate(struct call *c)
{
	const struct cfg_server *cfg = c->a->cfg;
	const char *tunnel, *rule, *transport = NULL;
	char err[256];
	struct store_port p;
	long long port = 0;
	json_t *v;
	bool created;
	int ret;

	ret = body_str(c, "tunnel", VALID_ID, ID_MAX, &tunnel);
	if (!ret)
		ret = body_str(c, "rule", VALID_NAME, LINK_RULE_MAX, &rule);
	if (ret)
		return ret;
	if (!tunnel)
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"tunnel\" is required");
	/* absent or null: tcp */
	v = json_object_get(c->body, "transport");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v) || !store_transport_valid(json_string_value(v)))
			return fail(c, MHD_HTTP_BAD_REQUEST,
				    "\"transport\" must be \"tcp\" or \"udp\"");
		transport = json_string_value(v);
	}
	v = json_object_get(c->body, "port");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v))
			return fail(c, MHD_HTTP_BAD_REQUEST, "\"port\" must be an integer");
		port = json_integer_value(v);
		if (port < 0 || port > 65535)
			return fail(c, MHD_HTTP_BAD_REQUEST, "port %lld is outside the range %u-%u",
				    port, cfg->port_min, cfg->port_max);
	}
	ret = store_port_alloc(c->a->st, tunnel, (unsigned)port, rule, transport, &p, &created, err,
			       sizeof(err));
	switch (ret) {
	case 0:
		break;
	case -ENOENT:
		return fail(c, MHD_HTTP_NOT_FOUND, "%s", err);
	case -ERANGE:
	case -EINVAL:
		return fail(c, MHD_HTTP_BAD_REQUEST, "%s", err);
	case -EADDRINUSE:
	case -EACCES:
	case -EDQUOT:
	case -ENOSPC:
		return fail(c, MHD_HTTP_CONFLICT, "%s", err);
	default:
		return internal(c);
	}
	if (created) {
		log_info("api: %s port %u allocated to tunnel %s", p.transport, p.port,
			 p.tunnel_id);
		relaylink_port_add(c->a->rl, p.port, p.tunnel_id, p.transport);
	}
	c->out = row_json(&store_ports, &p, FORM_FULL);
	return c->out ? MHD_HTTP_CREATED : internal(c);
}

static int h_port_release(struct call *c)
{
	char err[256];
	long long port;
	int ret;

	if (!parse_ll(c->id, &port) || port < 1 || port > 65535)
		return fail(c, MHD_HTTP_BAD_REQUEST, "invalid port \"%s\"", c->id);
	ret = store_port_release(c->a->st, (unsigned)port, NULL, NULL, err, sizeof(err));
	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "%s", err);
	if (ret)
		return internal(c);
	log_info("api: port %lld released", port);
	relaylink_port_del(c->a->rl, (unsigned)port);
	c->out = json_pack("{s:I, s:b}", "port", (json_int_t)port, "released", 1);
	return c->out ? MHD_HTTP_OK : internal(c);
}

/* --- domains --- */

static int h_domains_list(struct call *c)
{
	struct store_filter f = {0};
	int ret = query_arg(c, "tunnel", VALID_ID, ID_MAX, &f.tunnel_id);

	return ret ? ret : list_page(c, &store_domains, &f, NULL);
}

static int h_domain_release(struct call *c)
{
	struct store_domain d;
	char err[512];
	int ret = store_domain_release(c->a->st, c->id, NULL, &d, err, sizeof(err));

	if (ret == -EINVAL)
		return fail(c, MHD_HTTP_BAD_REQUEST, "%s", err);
	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "%s", err);
	if (ret)
		return internal(c);
	log_info("api: domain %s released (tunnel %s, rule %s)", d.domain, d.tunnel_id,
		 d.rule[0] ? d.rule : "-");
	relaylink_domain_del(c->a->rl, d.domain);
	c->out = json_pack("{s:s, s:s, s:b}", "domain", d.domain, "tunnel_id", d.tunnel_id,
			   "released", 1);
	return c->out ? MHD_HTTP_OK : internal(c);
}

/* --- firewall --- */

static int h_firewall_list(struct call *c)
{
	struct store_filter fd = {.kind = STORE_FW_DENY}, fa = {.kind = STORE_FW_ALLOW};
	json_t *deny = all_json(c->a, &store_fw_rules, &fd, FORM_FULL);
	json_t *allow = all_json(c->a, &store_fw_rules, &fa, FORM_FULL);

	if (!deny || !allow) {
		json_decref(deny);
		json_decref(allow);
		return internal(c);
	}
	c->out = json_pack("{s:o, s:o}", "deny", deny, "allow", allow);
	return c->out ? MHD_HTTP_OK : internal(c);
}

static int fw_add(struct call *c, int kind)
{
	const char *list = store_fw_kind_name(kind);
	json_t *v = json_object_get(c->body, "cidr");
	struct store_fw_rule r;
	char err[256];
	int ret;

	if (!v || json_is_null(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"cidr\" is required");
	if (!json_is_string(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"cidr\" must be a string");
	if (strlen(json_string_value(v)) != json_string_length(v))
		return fail(c, MHD_HTTP_BAD_REQUEST,
			    "an address block is ADDRESS[/PREFIX], e.g. 192.0.2.0/24");
	ret = store_fw_add(c->a->st, kind, json_string_value(v), &r, err, sizeof(err));
	switch (ret) {
	case 0:
		break;
	case -EINVAL:
		return fail(c, MHD_HTTP_BAD_REQUEST, "%s", err);
	case -EEXIST:
	case -EDQUOT:
		return fail(c, MHD_HTTP_CONFLICT, "%s", err);
	default:
		return internal(c);
	}
	log_info("api: %s added to the firewall's %s list", r.cidr, list);
	/* relayd gets the lists right after this request; without relayd, when it says hello */
	relaylink_firewall(c->a->rl);
	c->out = json_pack("{s:s, s:s, s:I}", "kind", list, "cidr", r.cidr, "created",
			   (json_int_t)r.created_at);
	return c->out ? MHD_HTTP_CREATED : internal(c);
}

static int fw_del(struct call *c, int kind)
{
	const char *list = store_fw_kind_name(kind);
	struct store_fw_rule r;
	char err[256];
	int ret = store_fw_del(c->a->st, kind, c->id, &r, err, sizeof(err));

	if (ret == -EINVAL)
		return fail(c, MHD_HTTP_BAD_REQUEST, "%s", err);
	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "%s", err);
	if (ret)
		return internal(c);
	log_info("api: %s removed from the firewall's %s list", r.cidr, list);
	relaylink_firewall(c->a->rl);
	c->out = json_pack("{s:s, s:s, s:b}", "kind", list, "cidr", r.cidr, "removed", 1);
	return c->out ? MHD_HTTP_OK : internal(c);
}

static int h_firewall_deny_add(struct call *c)
{
	return fw_add(c, STORE_FW_DENY);
}

static int h_firewall_allow_add(struct call *c)
{
	return fw_add(c, STORE_FW_ALLOW);
}

static int h_firewall_deny_del(struct call *c)
{
	return fw_del(c, STORE_FW_DENY);
}

static int h_firewall_allow_del(struct call *c)
{
	return fw_del(c, STORE_FW_ALLOW);
}

/* --- the mesh access policy (common/mesh.h) --- */

static json_t *mesh_json(const struct store_mesh_rule *r)
{
	return json_pack("{s:I, s:I, s:s, s:s, s:s, s:i, s:i, s:s, s:I}", "id", (json_int_t)r->id,
			 "position", (json_int_t)r->position, "action",
			 r->action == MESH_ALLOW ? "allow" : "deny", "from", r->from, "to", r->to,
			 "port_lo", (int)r->port_lo, "port_hi", (int)r->port_hi, "comment",
			 r->comment, "created", (json_int_t)r->created);
}

static int mesh_item(const struct store_mesh_rule *r, void *arr)
{
	return json_array_append_new(arr, mesh_json(r)) ? -ENOMEM : 0;
}

static int h_mesh_list(struct call *c)
{
	json_t *rules = json_array();
	int64_t total = 0;

	if (!rules || store_mesh_list(c->a->st, mesh_item, rules, &total)) {
		json_decref(rules);
		return internal(c);
	}
	c->out = json_pack("{s:o, s:I}", "rules", rules, "total", (json_int_t)total);
	return c->out ? MHD_HTTP_OK : internal(c);
}

/* a stored rule as relayd's push carries it */
static int mesh_collect_bare(const struct store_mesh_rule *r, void *arr)
{
	json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:i, s:i}", "id", (json_int_t)r->id, "action",
			      r->action == MESH_ALLOW ? "allow" : "deny", "from", r->from, "to",
			      r->to, "port_lo", (int)r->port_lo, "port_hi", (int)r->port_hi);

	return !o || json_array_append_new(arr, o) ? -ENOMEM : 0;
}

/*
 * GET mesh/test?from=ID&to=KIND:NAME&port=P[&mesh_role=1]: the verdict of
 * controld's stored rules (common/mesh.c, as relayd decides) for a stream from
 * tunnel ID (its group id from the store when it knows the tunnel) to
 * tunnel:ID, group:NAME, domain:NAME or external:NAME|ADDRESS on port P.
 */
static int h_mesh_test(struct call *c)
{
	const char *from, *to = query(c, "to"), *port = query(c, "port"),
			  *role = query(c, "mesh_role"), *name;
	struct store_tunnel ft, tt;
	struct mesh_query q = {0};
	struct mesh_table *t;
	json_t *rules;
	long long p;
	uint8_t addr[16];
	char err[256], reason[200];
	uint32_t rule;
	enum mesh_verdict v;
	int ret;

	ret = query_arg(c, "from", VALID_ID, MESH_GLOB_MAX, &from);
	if (ret)
		return ret;
	if (!from)
		return fail(c, MHD_HTTP_BAD_REQUEST, "from is required: a tunnel id");
	if (!to || !*to || strlen(to) >= MESH_TO_MAX || !strchr(to, ':'))
		return fail(c, MHD_HTTP_BAD_REQUEST,
			    "to is required: tunnel:ID, group:NAME, domain:NAME or "
			    "external:NAME|ADDRESS (at most %d characters)",
			    MESH_TO_MAX - 1);
	if (!parse_ll(port, &p) || p < 1 || p > 65535)
		return fail(c, MHD_HTTP_BAD_REQUEST, "port is required: 1-65535");
	if (role && strcmp(role, "0") && strcmp(role, "1"))
		return fail(c, MHD_HTTP_BAD_REQUEST, "mesh_role is 0 or 1");
	name = strchr(to, ':') + 1;
	q.from_id = from;
	q.from_group = !store_tunnel_get(c->a->st, from, &ft) ? ft.group_id : NULL;
	q.from_mesh_role = role && !strcmp(role, "1");
	q.port = (uint16_t)p;
	if (!strncmp(to, "tunnel:", 7) && valid_str(name, VALID_ID, MESH_GLOB_MAX)) {
		q.kind = MESH_DST_TUNNEL;
		q.to_id = name;
		q.to_group = !store_tunnel_get(c->a->st, name, &tt) ? tt.group_id : NULL;
	} else if (!strncmp(to, "group:", 6) && valid_str(name, VALID_ID, MESH_GLOB_MAX)) {
		q.kind = MESH_DST_TUNNEL;
		q.to_id = "";
		q.to_group = name;
	} else if (!strncmp(to, "domain:", 7) && valid_str(name, VALID_ID, DOMAIN_MAX)) {
		q.kind = MESH_DST_DOMAIN;
		q.name = name;
	} else if (!strncmp(to, "external:", 9) && *name &&
		   strspn(name,
			  "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_:") ==
		       strlen(name)) {
		struct cidr blk;

		q.kind = MESH_DST_EXTERNAL;
		q.name = name;
		if (!cidr_parse(name, &blk, NULL, 0) &&
		    blk.prefix == (blk.family == AF_INET ? 32 : 128)) {
			memset(addr, 0, sizeof(addr));
			if (blk.family == AF_INET) {
				addr[10] = addr[11] = 0xff;
				memcpy(addr + 12, blk.addr, 4);
			} else {
				memcpy(addr, blk.addr, 16);
			}
			q.addr = addr;
		}
	} else {
		return fail(
		    c, MHD_HTTP_BAD_REQUEST,
		    "to: tunnel:ID, group:NAME, domain:NAME or external:NAME|ADDRESS (names "
		    "of letters, digits, '.', '_' and '-')");
	}
	rules = json_array();
	if (!rules || store_mesh_list(c->a->st, mesh_collect_bare, rules, NULL)) {
		json_decref(rules);
		return internal(c);
	}
	t = mesh_table_from_json(rules, err, sizeof(err));
	json_decref(rules);
	if (!t) {
		log_error("api: mesh test: the stored rules do not make a table: %s", err);
		return internal(c);
	}
	v = mesh_decide(t, &q, &rule);
	mesh_table_put(t);
	if (rule)
		snprintf(reason, sizeof(reason), "mesh rule %u", rule);
	else
		snprintf(reason, sizeof(reason), "the default (no rule matches%s)",
			 q.kind == MESH_DST_EXTERNAL ? "; [socks] allow decides first"
			 : q.from_mesh_role	     ? "; the opener has the mesh role"
						     : "; the opener has no mesh role");
	c->out = json_pack("{s:s, s:I, s:s}", "decision", v == MESH_ALLOW ? "allow" : "deny",
			   "rule", (json_int_t)rule, "reason", reason);
	return c->out ? MHD_HTTP_OK : internal(c);
}

/* A required string member of at most max bytes (its alphabet is the store's to check). */
static int body_req_str(struct call *c, const char *key, size_t max, const char **out)
{
	json_t *v = json_object_get(c->body, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"%s\" is required", key);
	if (!json_is_string(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"%s\" must be a string", key);
	if (!json_string_length(v) || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"%s\" must be 1-%zu bytes", key, max);
	*out = json_string_value(v);
	return 0;
}

static int h_mesh_add(struct call *c)
{
	struct store_mesh_rule r;
	const char *action, *from, *to, *comment;
	long long lo, hi, pos;
	char err[256];
	int ret;

	memset(&r, 0, sizeof(r));
	ret = body_req_str(c, "action", 5, &action);
	if (!ret && strcmp(action, "allow") && strcmp(action, "deny"))
		return fail(c, MHD_HTTP_BAD_REQUEST, "\"action\" must be allow or deny");
	if (!ret)
		ret = body_req_str(c, "from", MESH_FROM_MAX - 1, &from);
	if (!ret)
		ret = body_req_str(c, "to", MESH_TO_MAX - 1, &to);
	if (!ret)
		ret = body_int(c, "port_lo", 0, 65535, &lo);
	if (!ret)
		ret = body_int(c, "port_hi", 0, 65535, &hi);
	if (!ret)
		ret = body_int(c, "position", 0, 1000000, &pos);
	if (!ret)
		ret = body_str(c, "comment", VALID_TEXT, MESH_COMMENT_MAX, &comment);
	if (ret)
		return ret;
	if (lo && !hi)
		hi = lo;
	if (lo > hi || (!lo && hi))
		return fail(c, MHD_HTTP_BAD_REQUEST,
			    "\"port_lo\"..\"port_hi\" must be a range in 1-65535 (or both 0: any)");
	r.action = !strcmp(action, "allow") ? MESH_ALLOW : MESH_DENY;
	snprintf(r.from, sizeof(r.from), "%s", from);
	snprintf(r.to, sizeof(r.to), "%s", to);
	r.port_lo = (unsigned)lo;
	r.port_hi = (unsigned)hi;
	r.position = pos;
	snprintf(r.comment, sizeof(r.comment), "%s", comment ? comment : "");
	ret = store_mesh_add(c->a->st, &r, err, sizeof(err));
	switch (ret) {
	case 0:
		break;
	case -EINVAL:
		return fail(c, MHD_HTTP_BAD_REQUEST, "%s", err);
	case -EDQUOT:
		return fail(c, MHD_HTTP_CONFLICT, "%s", err);
	default:
		return internal(c);
	}
	log_info("api: mesh rule %lld added by %s: %s %s -> %s ports %u-%u at position %lld",
		 (long long)r.id, c->who, action, r.from, r.to, r.port_lo, r.port_hi,
		 (long long)r.position);
	/* relayd gets the rules right after this request; without relayd, when it says hello */
	relaylink_mesh(c->a->rl);
	c->out = mesh_json(&r);
	return c->out ? MHD_HTTP_CREATED : internal(c);
}

static int h_mesh_del(struct call *c)
{
	struct store_mesh_rule r;
	long long id;
	char err[256];
	int ret;

	if (!parse_ll(c->id, &id) || id < 1 || id > INT32_MAX)
		return fail(c, MHD_HTTP_BAD_REQUEST,
			    "a mesh rule id is a number (navectl mesh ls)");
	ret = store_mesh_del(c->a->st, id, &r, err, sizeof(err));
	if (ret == -ENOENT)
		return fail(c, MHD_HTTP_NOT_FOUND, "%s", err);
	if (ret)
		return internal(c);
	log_info("api: mesh rule %lld removed by %s (was: %s %s -> %s ports %u-%u)", id, c->who,
		 r.action == MESH_ALLOW ? "allow" : "deny", r.from, r.to, r.port_lo, r.port_hi);
	relaylink_mesh(c->a->rl);
	c->out = json_pack("{s:I, s:b}", "id", (json_int_t)id, "removed", 1);
	return c->out ? MHD_HTTP_OK : internal(c);
}

/* --- routing --- */

/* --- connection records (ctl/records.h) --- */

#define CONN_LIMIT_DEFAULT  50
#define CONN_LIMIT_MAX	    1000
#define BUCKETS_MAX	    1000
#define BUCKETS_DEFAULT	    60
#define BANDWIDTH_MINUTES_S (7 * 86400) /* per-minute sums: at most 10080 rows read */

/* ?tunnel=, ?rule= and ?since= of the records' routes: 0, or 400 with the response set. */
static int records_filter(struct call *c, struct store_filter *f)
{
	const char *since = query(c, "since");
	int ret = query_arg(c, "tunnel", VALID_ID, ID_MAX, &f->tunnel_id);

	if (!ret)
		ret = query_arg(c, "rule", VALID_NAME, LINK_RULE_MAX, &f->rule);
	if (ret)
		return ret;
	if (since && *since && records_since(since, (int64_t)time(NULL), &f->since))
		return fail(c, MHD_HTTP_BAD_REQUEST,
			    "invalid since \"%.32s\": Unix seconds, or a duration back from now "
			    "(90s, 15m, 1h, 7d, 2w)",
			    since);
	return 0;
}

static int h_connections_list(struct call *c)
{
	struct store_filter f = {0};
	struct walk w = {c->a, &store_conn_records, FORM_FULL, NULL, NULL};
	const char *l = query(c, "limit");
	long long limit = CONN_LIMIT_DEFAULT;
	int ret = records_filter(c, &f);

	if (ret)
		return ret;
	if (l && *l && (!parse_ll(l, &limit) || limit < 1 || limit > CONN_LIMIT_MAX))
		return fail(c, MHD_HTTP_BAD_REQUEST, "invalid limit \"%.32s\": 1-%d", l,
			    CONN_LIMIT_MAX);
	w.items = json_array();
	if (!w.items || store_records_list(c->a->st, &f, limit, walk_item, &w)) {
		json_decref(w.items);
		return internal(c);
	}
	c->out = json_pack("{s:o, s:I}", "items", w.items, "limit", (json_int_t)limit);
	return c->out ? MHD_HTTP_OK : internal(c);
}

struct buckets {
	json_t *arr;
	int64_t since, step, n;
};

static int bucket_set(int64_t t, int64_t in, int64_t out, int64_t conns, void *arg)
{
	struct buckets *b = arg;
	int64_t k = (t - b->since) / b->step;
	json_t *o = json_array_get(b->arr, (size_t)k);

	if (k < 0 || !o)
		return 0; /* ended in the future (a clock step): not in the window */
	json_object_set_new(o, "bytes_in", json_integer(in));
	json_object_set_new(o, "bytes_out", json_integer(out));
	json_object_set_new(o, "conns", json_integer(conns));
	return 0;
}

static int h_connections_bandwidth(struct call *c)
{
	struct store_filter f = {0};
	struct buckets b = {NULL, 0, 0, 0};
	const char *st = query(c, "step");
	int64_t now = (int64_t)time(NULL);
	long long step = 0;
	int ret = records_filter(c, &f);

	if (ret)
		return ret;
	if (!f.tunnel_id)
		return fail(c, MHD_HTTP_BAD_REQUEST, "tunnel is required");
	/*
	 * Whole minutes, read from the per-minute sums (store.c conn_minutes), or whole
	 * hours from the per-hour ones: one row per minute (hour) of the window at most,
	 * whatever the number of records; minutes for at most 7 days.
	 */
	if (st && *st && (!parse_ll(st, &step) || step < 60 || step > 30 * 86400 || step % 60))
		return fail(c, MHD_HTTP_BAD_REQUEST,
			    "invalid step \"%.32s\": seconds, a multiple of 60 from 60 to 2592000",
			    st);
	if (!f.since)
		f.since = now - 3600;
	if (f.since > now)
		f.since = now;
	if (!step) {
		step = (now - f.since + BUCKETS_DEFAULT - 1) / BUCKETS_DEFAULT;
		step = step > 3600 ? (step + 3599) / 3600 * 3600 : (step + 59) / 60 * 60;
		if (step < 60)
			step = 60;
	}
	b.step = step;
	b.since = f.since - f.since % step;
	b.n = (now - b.since) / step + 1;
	if (b.n > BUCKETS_MAX)
		return fail(c, MHD_HTTP_BAD_REQUEST,
			    "since and step make %lld buckets, at most %d: a larger step",
			    (long long)b.n, BUCKETS_MAX);
	if (step % 3600 && now - f.since > BANDWIDTH_MINUTES_S)
		return fail(c, MHD_HTTP_BAD_REQUEST,
			    "a step of whole minutes covers 7 days at most (since is %lld s ago): "
			    "a step of whole hours",
			    (long long)(now - f.since));
	f.since = b.since;
	b.arr = json_array();
	for (int64_t k = 0; b.arr && k < b.n; k++)
		if (json_array_append_new(b.arr,
					  json_pack("{s:I, s:i, s:i, s:i}", "t",
						    (json_int_t)(b.since + k * step), "bytes_in", 0,
						    "bytes_out", 0, "conns", 0))) {
			json_decref(b.arr);
			b.arr = NULL;
		}
	if (!b.arr || store_records_bandwidth(c->a->st, &f, step, bucket_set, &b)) {
		json_decref(b.arr);
		return internal(c);
	}
	c->out = json_pack("{s:I, s:I, s:o}", "since", (json_int_t)b.since, "step",
			   (json_int_t)step, "buckets", b.arr);
	return c->out ? MHD_HTTP_OK : internal(c);
}

/*
 * '#' ends a pattern: an address block, one segment or two (its '/' may come
 * percent-encoded or not: the path is decoded before routing), checked by its
 * handler instead of as an id. '@' is one segment holding a domain ("*.NAME"
 * included), also checked by its handler.
 */
static const struct route {
	const char *method;
	const char *path; /* under /api/v1/, '*' = one id segment, '#' = an address block,
			     '@' = a domain */
	int (*fn)(struct call *c);
} routes[] = {
    {"GET", "status", h_status},
    {"POST", "reload", h_reload},
    {"POST", "backup", h_backup},
    {"GET", "acme", h_acme},
    {"POST", "acme/renew", h_acme_renew},
    {"POST", "acme/revoke", h_acme_revoke},
    {"GET", "registrations", h_registrations_list},
    {"POST", "registrations", h_registrations_create},
    {"POST", "registrations/*/disable", h_registration_disable},
    {"POST", "registrations/*/enable", h_registration_enable},
    {"GET", "tokens", h_tokens_list},
    {"POST", "tokens", h_tokens_create},
    {"GET", "tokens/*", h_token_show},
    {"POST", "tokens/*/revoke", h_token_revoke},
    {"GET", "tunnels", h_tunnels_list},
    {"GET", "tunnels/*", h_tunnel_get},
    {"POST", "tunnels/*/shutdown", h_tunnel_shutdown},
    {"GET", "tunnels/*/rules", h_tunnel_rules_list},
    {"POST", "tunnels/*/rules", h_tunnel_rules_add},
    {"DELETE", "tunnels/*/rules/*", h_tunnel_rule_rm},
    {"GET", "ports", h_ports_list},
    {"POST", "ports", h_ports_allocate},
    {"DELETE", "ports/*", h_port_release},
    {"GET", "domains", h_domains_list},
    {"DELETE", "domains/@", h_domain_release},
    {"GET", "firewall", h_firewall_list},
    {"GET", "connections", h_connections_list},
    {"GET", "connections/bandwidth", h_connections_bandwidth},
    {"POST", "firewall/deny", h_firewall_deny_add},
    {"POST", "firewall/allow", h_firewall_allow_add},
    {"DELETE", "firewall/deny/#", h_firewall_deny_del},
    {"DELETE", "firewall/allow/#", h_firewall_allow_del},
    {"GET", "mesh", h_mesh_list},
    {"GET", "mesh/test", h_mesh_test},
    {"POST", "mesh", h_mesh_add},
    {"DELETE", "mesh/*", h_mesh_del},
    {"POST", "login", h_login},
    {"POST", "logout", h_logout},
    {"GET", "session", h_session},
    {"GET", "users", h_users_list},
    {"POST", "users", h_users_add},
    {"GET", "users/*", h_user_get},
    {"DELETE", "users/*", h_user_del},
    {"POST", "users/*/password", h_user_password},
    {"POST", "users/*/unlock", h_user_unlock},
    {"POST", "users/*/two-factor", h_user_totp_enable},
    {"DELETE", "users/*/two-factor", h_user_totp_disable},
    {"POST", "users/*/two-factor/reset", h_user_totp_reset},
    {"GET", "support", h_support_list},
    {"GET", "support/*", h_support_show},
    {"POST", "support/*/approve", h_support_approve},
    {"POST", "support/*/end", h_support_end},
    {"GET", "apikeys", h_apikeys_list},
    {"POST", "apikeys", h_apikeys_create},
    {"POST", "apikeys/*/revoke", h_apikey_revoke},
};

void api_list_routes(FILE *f)
{
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
		fprintf(f, "%s /api/v1/%s\n", routes[i].method, routes[i].path);
}

/* Splits p at '/' into at most max segments (in place); -1 if there are more. */
static int split(char *p, char **seg, int max)
{
	int n = 0;

	while (*p) {
		char *e = strchr(p, '/');

		if (n == max)
			return -1;
		seg[n++] = p;
		if (!e)
			break;
		*e = 0;
		p = e + 1;
	}
	return n;
}

/*
 * True when the route's pattern matches the segments; *idx gets the index of
 * the '*', '#' or '@' one (-1: none), *rest whether it is a '#' and *dom
 * whether it is a '@'.
 */
static bool route_match(const char *pattern, char **seg, int n, int *idx, int *idx0, bool *rest,
			bool *dom)
{
	char pat[64], *ps[MAX_SEGS];
	int pn;

	*idx = *idx0 = -1;
	*dom = false;
	snprintf(pat, sizeof(pat), "%s", pattern);
	pn = split(pat, ps, MAX_SEGS);
	*rest = pn > 0 && !strcmp(ps[pn - 1], "#");
	if (*rest ? n < pn || n > pn + 1 : n != pn)
		return false;
	for (int i = 0; i < pn; i++) {
		if (!strcmp(ps[i], "*") || !strcmp(ps[i], "#") || !strcmp(ps[i], "@")) {
			if (!*seg[i])
				return false;
			if (*idx >= 0)
				*idx0 = *idx;
			*idx = i;
			*dom = !strcmp(ps[i], "@");
		} else if (strcmp(ps[i], seg[i]) != 0) {
			return false;
		}
	}
	for (int i = pn; i < n; i++)
		if (!*seg[i])
			return false;
	return true;
}

static int route(struct call *c, const char *url, const char *method, struct req *rq)
{
	static const char prefix[] = "/api/v1/";
	const struct route *r = NULL;
	bool path_known = false, rest = false, dom = false;
	char path[512], whole[512], *seg[MAX_SEGS];
	size_t len;
	int n;

	/* decoded %00..%1f and %7f arrive as CTL_MARK (unescape): nothing is cut short */
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == CTL_MARK)
			return fail(c, MHD_HTTP_BAD_REQUEST,
				    "the request path holds control characters");
	/*
	 * the admin listener: nothing outside the exemptions answers without authentication
	 * (the dashboard's files, ui_owns, were answered before: here only "/api" is left)
	 */
	if (c->remote && strncmp(url, "/api/", 5) != 0)
		return fail(c, MHD_HTTP_NOT_FOUND, "no such endpoint: %s", url);
	if (c->remote && !c->authed && !api_auth_exempt(method, url)) {
		int ret = api_authenticate(c);

		if (ret)
			return ret;
	}
	if (strncmp(url, prefix, sizeof(prefix) - 1) != 0 ||
	    strlen(url) - (sizeof(prefix) - 1) >= sizeof(path))
		return fail(c, MHD_HTTP_NOT_FOUND, "no such endpoint: %s", url);
	snprintf(path, sizeof(path), "%s", url + sizeof(prefix) - 1);
	/* as sent: an address block keeps a trailing '/' (and is refused for it) */
	snprintf(whole, sizeof(whole), "%s", path);
	len = strlen(path);
	if (len && path[len - 1] == '/')
		path[len - 1] = 0;
	n = split(path, seg, MAX_SEGS);
	for (size_t i = 0; n > 0 && i < ARRAY_SIZE(routes); i++) {
		int idx, idx0;

		if (!route_match(routes[i].path, seg, n, &idx, &idx0, &rest, &dom))
			continue;
		path_known = true;
		if (strcmp(routes[i].method, method) != 0)
			continue;
		r = &routes[i];
		c->route = r->path;
		/* split() cut path in place: the '#' text runs to the end of whole */
		if (idx >= 0)
			c->id = rest ? whole + (seg[idx] - path) : seg[idx];
		if (idx0 >= 0)
			c->id0 = seg[idx0];
		break;
	}
	if (!r && path_known)
		return fail(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method %s not allowed on %s", method,
			    url);
	if (!r)
		return fail(c, MHD_HTTP_NOT_FOUND, "no such endpoint: %s", url);
	if (c->id && rest && strlen(c->id) > CIDR_TEXT_MAX)
		return fail(c, MHD_HTTP_BAD_REQUEST, "an address block is 1 to %d characters",
			    CIDR_TEXT_MAX);
	/* a domain: store_domain_check in the handler says what is wrong with it */
	if ((c->id && !rest && !dom && !valid_str(c->id, VALID_ID, ID_MAX)) ||
	    (c->id0 && !valid_str(c->id0, VALID_ID, ID_MAX)))
		return fail(c, MHD_HTTP_BAD_REQUEST, "invalid id: 1-%d characters: %s", ID_MAX,
			    valid_alphabet(VALID_ID));
	if (rq->too_big)
		return fail(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body larger than %d bytes",
			    BODY_MAX);
	if (rq->len) {
		json_error_t jerr;

		c->body = json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, &jerr);
		if (!c->body)
			return fail(c, MHD_HTTP_BAD_REQUEST, "invalid JSON body: %s", jerr.text);
		if (!json_is_object(c->body))
			return fail(c, MHD_HTTP_BAD_REQUEST, "the body must be a JSON object");
	}
	return r->fn(c);
}

static enum MHD_Result send_json(struct MHD_Connection *conn, int status, json_t *body,
				 const struct call *c)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	size_t len;

	if (status == MHD_HTTP_NO_CONTENT && !body) {
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	} else if (!text) {
		static const char oom[] = "{\"error\":\"internal error\"}";

		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		resp = MHD_create_response_from_buffer(sizeof(oom) - 1, (void *)oom,
						       MHD_RESPMEM_PERSISTENT);
	} else {
		len = strlen(text);
		/* newline-terminated so curl output ends cleanly */
		text[len] = '\n';
		resp = MHD_create_response_from_buffer(len + 1, text, MHD_RESPMEM_MUST_FREE);
		if (!resp)
			free(text);
	}
	if (!resp)
		return MHD_NO;
	if (status != MHD_HTTP_NO_CONTENT)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (c->set_cookie[0])
		MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, c->set_cookie);
	if (c->remote)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_TOO_MANY_REQUESTS && c->retry_after > 0) {
		char ra[16];

		snprintf(ra, sizeof(ra), "%d", c->retry_after);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	ret = MHD_queue_response(conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* The request's peer address into c->source ("local" on control.sock). */
static void peer_addr(struct call *c)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;

	str_copy(c->source, sizeof(c->source), "local");
	if (!c->remote)
		return;
	ci = MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	sa = ci ? ci->client_addr : NULL;
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->source,
			  sizeof(c->source));
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->source,
			  sizeof(c->source));
	else
		str_copy(c->source, sizeof(c->source), "unknown");
}

/* True for a Content-Type of application/json, with parameters or without. */
static bool is_json_type(const char *ct)
{
	static const char want[] = "application/json";
	size_t n = sizeof(want) - 1;

	if (!ct)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, want, n) != 0)
		return false;
	ct += n;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return !*ct || *ct == ';';
}

/*
 * What the head alone decides, on the first call of the access handler
 * (before any of the body is read): on the admin listener the credentials
 * (401 without reading the body; the result kept in rq for the last call),
 * then a Content-Length over BODY_MAX (413) and a body that is not
 * application/json (415). 0: read the body and answer at the end.
 */
static int head_check(struct call *c, const char *url, struct req *rq)
{
	const char *cl =
	    MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *te = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_TRANSFER_ENCODING);
	const char *ct =
	    MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	unsigned long long len = 0;
	bool ctl = false;

	if (c->remote && ui_owns(url))
		return 0; /* the dashboard's files: ui_serve answers at the end */
	for (const char *p = url; *p; p++)
		ctl |= (unsigned char)*p < 0x20 || *p == CTL_MARK;
	/* route() refuses these before it authenticates: it answers them */
	if (c->remote && !ctl && !strncmp(url, "/api/", 5) && !api_auth_exempt(c->method, url)) {
		int ret = api_authenticate(c);

		if (ret)
			return ret;
		rq->authed = true;
		rq->by_key = c->by_key;
		rq->by_cert = c->by_cert;
		rq->have_session = c->have_session;
		str_copy(rq->who, sizeof(rq->who), c->who);
		rq->sess = c->sess;
	}
	if (cl) {
		char *end;

		errno = 0;
		len = strtoull(cl, &end, 10);
		if (errno || end == cl || *end)
			len = ULLONG_MAX; /* MHD refuses such a head itself */
	}
	if (cl && len > BODY_MAX)
		return fail(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body larger than %d bytes",
			    BODY_MAX);
	if ((len || te) && !is_json_type(ct))
		return fail(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
			    "a request body must be Content-Type: application/json");
	return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct srv *sv = cls;
	struct req *rq = *con_cls;
	struct call c = {.a = sv->a, .remote = sv->remote, .conn = conn, .method = method};
	enum MHD_Result ret;
	int status;

	if (!rq) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		rq->start_us = metrics_now_us();
		*con_cls = rq;
		peer_addr(&c);
		str_copy(c.who, sizeof(c.who), c.remote ? "nobody" : "local");
		status = head_check(&c, url, rq);
		if (!status)
			return MHD_YES;
		/* answered now: MHD reads none of the body and closes the connection */
		log_debug("api: %s %s from %s -> %d (on the head)", method, url, c.source, status);
		rq->answered = true;
		ret = send_json(conn, status, c.out, &c);
		metrics_api_observe(c.a->metrics, method, NULL, metrics_now_us() - rq->start_us);
		json_decref(c.out);
		return ret;
	}
	if (rq->answered) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size) {
		if (rq->too_big || rq->len + *upload_size > BODY_MAX) {
			/* no more of it is read: 413 now, or the connection closes */
			rq->too_big = true;
			rq->answered = true;
			*upload_size = 0;
			peer_addr(&c);
			log_info("api: %s %s from %s: the body is over %d bytes: 413, or the "
				 "connection closed",
				 method, url, c.source, BODY_MAX);
			fail(&c, MHD_HTTP_CONTENT_TOO_LARGE, "request body larger than %d bytes",
			     BODY_MAX);
			/* libmicrohttpd 0.9.75 queues no answer during an upload: MHD_NO closes */
			ret = send_json(conn, MHD_HTTP_CONTENT_TOO_LARGE, c.out, &c);
			json_decref(c.out);
			return ret;
		} else {
			char *b = realloc(rq->body, rq->len + *upload_size);

			if (!b)
				return MHD_NO;
			memcpy(b + rq->len, upload, *upload_size);
			rq->body = b;
			rq->len += *upload_size;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	peer_addr(&c);
	/* the admin listener: the dashboard's files, outside /api/, need no login (ui.h) */
	if (c.remote && ui_owns(url)) {
		log_debug("api: %s %s from %s: the dashboard", method, url, c.source);
		return ui_serve(conn, method, url);
	}
	str_copy(c.who, sizeof(c.who), c.remote ? "nobody" : "local");
	if (rq->authed) {
		c.authed = true;
		c.by_key = rq->by_key;
		c.by_cert = rq->by_cert;
		c.have_session = rq->have_session;
		str_copy(c.who, sizeof(c.who), rq->who);
		c.sess = rq->sess;
	}
	status = route(&c, url, method, rq);
	log_debug("api: %s %s from %s -> %d", method, url, c.source, status);
	ret = send_json(conn, status, c.out, &c);
	metrics_api_observe(c.a->metrics, method, c.route, metrics_now_us() - rq->start_us);
	json_decref(c.out);
	json_decref(c.body);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req *rq = *con_cls;

	if (!rq)
		return;
	free(rq->body);
	free(rq);
	*con_cls = NULL;
}

/*
 * Percent-decodes a path or query part in place like MHD's own unescaper,
 * except that a decoded control byte (%00 above all, which would cut the
 * string) becomes CTL_MARK, which route() and valid_str() refuse.
 */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	size_t n = MHD_http_unescape(s);

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == CTL_MARK)
			s[i] = CTL_MARK;
	s[n] = 0;
	return n;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = 0;
	log_warn("api: %s", msg);
}

/* Reads a whole file (at most 1 MiB) as a NUL-terminated string; NULL with errno. */
static char *read_file(const char *path)
{
	struct stat sb;
	char *buf;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &sb) < 0 || sb.st_size > (1 << 20)) {
		close(fd);
		errno = EFBIG;
		return NULL;
	}
	buf = malloc((size_t)sb.st_size + 1);
	n = buf ? read(fd, buf, (size_t)sb.st_size) : -1;
	close(fd);
	if (n != sb.st_size) {
		free(buf);
		errno = EIO;
		return NULL;
	}
	buf[n] = 0;
	return buf;
}

/* True when the admin listener asks clients for certificates ([tls] client_ca, client_auth). */
static bool admin_certs_on(const struct cfg_server *cfg)
{
	return cfg->client_ca[0] && cfg->client_auth != CFG_CLIENT_AUTH_OFF;
}

/*
 * What identifies the certificate files now: paths, inodes, sizes and
 * mtimes, and with admin certificates on the CA file's too and the CRL's
 * path (the CRL's content is the verifier's to follow: pki_verifier_refresh).
 */
static void cert_sig(const struct cfg_server *cfg, char *out, size_t len)
{
	struct stat c = {0}, k = {0}, ca = {0};
	bool on = admin_certs_on(cfg);

	stat(cfg->certificate, &c);
	stat(cfg->private_key, &k);
	if (on)
		stat(cfg->client_ca, &ca);
	snprintf(out, len,
		 "%s %lu %lld %lld.%09ld|%s %lu %lld %lld.%09ld|%s %lu %lld %lld.%09ld|%s",
		 cfg->certificate, (unsigned long)c.st_ino, (long long)c.st_size,
		 (long long)c.st_mtim.tv_sec, c.st_mtim.tv_nsec, cfg->private_key,
		 (unsigned long)k.st_ino, (long long)k.st_size, (long long)k.st_mtim.tv_sec,
		 k.st_mtim.tv_nsec, on ? cfg->client_ca : "-", (unsigned long)ca.st_ino,
		 (long long)ca.st_size, (long long)ca.st_mtim.tv_sec, ca.st_mtim.tv_nsec,
		 on ? cfg->client_crl : "-");
}

/*
 * Whether cert and key are a PEM certificate and the private key of it:
 * checked here (BoringSSL) before libmicrohttpd gets them, for a clear
 * reason and because its GnuTLS leaks what a failed load allocated.
 */
static bool pem_pair_ok(const char *cert, const char *key, char *why, size_t len)
{
	BIO *cb = BIO_new_mem_buf(cert, -1), *kb = BIO_new_mem_buf(key, -1);
	X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
	EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
	bool ok = x && k && X509_check_private_key(x, k);

	if (!x)
		snprintf(why, len, "not a PEM certificate");
	else if (!k)
		snprintf(why, len, "the key file holds no PEM private key");
	else if (!ok)
		snprintf(why, len, "the private key is not the certificate's");
	ERR_clear_error();
	EVP_PKEY_free(k);
	X509_free(x);
	BIO_free(kb);
	BIO_free(cb);
	return ok;
}

static void pem_free(char *cert, char *key)
{
	if (key)
		OPENSSL_cleanse(key, strlen(key));
	free(key);
	free(cert);
}

static void admin_stop(struct api *a)
{
	if (a->admin.mhd)
		MHD_stop_daemon(a->admin.mhd);
	a->admin.mhd = NULL;
	pem_free(a->cert_pem, a->key_pem);
	a->key_pem = a->cert_pem = NULL;
	free(a->trust_pem);
	a->trust_pem = NULL;
	pki_verifier_free(a->pki);
	a->pki = NULL;
}

/*
 * With admin certificates on: the CA's PEM for libmicrohttpd (its GnuTLS
 * then sends a CertificateRequest naming the CA, GNUTLS_CERT_REQUEST: a
 * client without a certificate still completes the handshake) and the
 * verifier of what clients present. 0 (both NULL when off), or -errno with
 * err.
 */
static int admin_trust(const struct cfg_server *cfg, char **pem, struct pki_verifier **v, char *err,
		       size_t errlen)
{
	char why[256];
	int ret;

	*pem = NULL;
	*v = NULL;
	if (!admin_certs_on(cfg))
		return 0;
	*pem = read_file(cfg->client_ca);
	if (!*pem) {
		ret = -errno;
		snprintf(err, errlen, "[tls] client_ca %s: %s", cfg->client_ca, strerror(errno));
		return ret;
	}
	*v = pki_verifier_new(cfg->client_ca, cfg->client_crl, why, sizeof(why));
	if (!*v) {
		snprintf(err, errlen, "[tls] client_ca %s: %s", cfg->client_ca, why);
		free(*pem);
		*pem = NULL;
		return -EINVAL;
	}
	return 0;
}

/*
 * (Re)starts the admin listener's HTTPS server on a->admin_lfd with the
 * server certificate ([tls] certificate and private_key; self-signed in
 * state_dir/tls when they are the defaults and missing, as relayd makes
 * them). The new server starts on a second dup of the listening socket
 * while the old one serves; only once it runs is the old one stopped, so a
 * pair that does not load leaves the old certificate served. a->cert_sig
 * is the files' identity tried last, loaded or not. 0, or -errno with err.
 */
static int admin_start(struct api *a, char *err, size_t errlen)
{
	struct cfg_server *cfg = a->cfg;
	struct MHD_Daemon *mhd;
	struct pki_verifier *pki;
	/* the CA's PEM when admin certificates are on, else nothing */
	struct MHD_OptionItem trust_opt[] = {{MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}};
	char *cert, *key, *trust, why[96];
	int fd, ret;

	ret = tls_ensure_selfsigned(cfg->certificate, cfg->private_key, cfg->domain, err, errlen);
	cert_sig(cfg, a->cert_sig, sizeof(a->cert_sig));
	if (ret < 0)
		return ret;
	cert = read_file(cfg->certificate);
	if (!cert) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", cfg->certificate, strerror(errno));
		return ret;
	}
	key = read_file(cfg->private_key);
	if (!key) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", cfg->private_key, strerror(errno));
		pem_free(cert, NULL);
		return ret;
	}
	if (!pem_pair_ok(cert, key, why, sizeof(why))) {
		snprintf(err, errlen, "%s and %s: %s", cfg->certificate, cfg->private_key, why);
		pem_free(cert, key);
		return -EINVAL;
	}
	ret = admin_trust(cfg, &trust, &pki, err, errlen);
	if (ret) {
		pem_free(cert, key);
		return ret;
	}
	if (trust)
		trust_opt[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, trust};
	fd = fcntl(a->admin_lfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "dup: %s", strerror(errno));
		pem_free(cert, key);
		free(trust);
		pki_verifier_free(pki);
		return ret;
	}
	mhd = MHD_start_daemon(
	    MHD_USE_ERROR_LOG | MHD_USE_TLS, 0, NULL, NULL, on_request, &a->admin,
	    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, a, MHD_OPTION_UNESCAPE_CALLBACK, unescape, a,
	    MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
	    MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_HTTPS_MEM_KEY, key,
	    MHD_OPTION_HTTPS_PRIORITIES, "SECURE256:+SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2",
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ADMIN_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)ADMIN_CONNS, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)ADMIN_PER_IP,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024), MHD_OPTION_ARRAY, trust_opt,
	    MHD_OPTION_END);
	if (!mhd) {
		snprintf(
		    err, errlen,
		    "could not start the HTTPS server with %s and %s%s%s (libmicrohttpd: not a "
		    "PEM certificate and key that match?)",
		    cfg->certificate, cfg->private_key, trust ? " and client CA " : "",
		    trust ? cfg->client_ca : "");
		close(fd);
		pem_free(cert, key);
		free(trust);
		pki_verifier_free(pki);
		return -EIO;
	}
	admin_stop(a);
	a->admin.mhd = mhd;
	a->cert_pem = cert;
	a->key_pem = key;
	a->trust_pem = trust;
	a->pki = pki;
	a->pki_checked_ms = now_ms();
	return 0;
}

/* A listening TCP socket on [admin] listen: 0 with *fd, or -errno with err. */
static int admin_listen(const char *hostport, int *fd_out, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res, *ai;
	char host[256], port[8];
	uint16_t p;
	int fd = -1, rc, one = 1, e = 0;

	if (cfg_parse_hostport(hostport, host, sizeof(host), &p)) {
		snprintf(err, errlen, "[admin] listen %s is not HOST:PORT", hostport);
		return -EINVAL;
	}
	snprintf(port, sizeof(port), "%u", p);
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "[admin] listen %s: %s", hostport, gai_strerror(rc));
		return -EINVAL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "[admin] listen %s: %s", hostport, strerror(e));
		return -e;
	}
	*fd_out = fd;
	return 0;
}

int api_start(struct api **out, int lfd, struct store *st, struct relaylink *rl,
	      struct cfg_server *cfg, char *err, size_t errlen)
{
	struct api *a = calloc(1, sizeof(*a));
	int ret;

	*out = NULL;
	if (!a) {
		close(lfd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	a->st = st;
	a->rl = rl;
	a->cfg = cfg;
	a->started_ms = now_ms();
	a->admin_lfd = -1;
	a->local.a = a->admin.a = a;
	a->admin.remote = true;
	/* no threading flag: external select mode, driven by api_pollfds/api_process */
	a->local.mhd = MHD_start_daemon(
	    MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, &a->local, MHD_OPTION_EXTERNAL_LOGGER,
	    on_mhd_log, a, MHD_OPTION_UNESCAPE_CALLBACK, unescape, a, MHD_OPTION_LISTEN_SOCKET,
	    (MHD_socket)lfd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
	    MHD_OPTION_END);
	if (!a->local.mhd) {
		close(lfd);
		free(a);
		snprintf(err, errlen, "could not start the HTTP server (libmicrohttpd)");
		return -EIO;
	}
	if (cfg->admin_listen[0]) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			snprintf(err, errlen,
				 "[admin] listen: libmicrohttpd was built without TLS");
			api_stop(a);
			return -ENOTSUP;
		}
		ret = admin_listen(cfg->admin_listen, &a->admin_lfd, err, errlen);
		if (!ret)
			ret = admin_start(a, err, errlen);
		if (ret) {
			api_stop(a);
			return ret;
		}
		log_info("admin API on https://%s (TLS with %s%s%s)", cfg->admin_listen,
			 cfg->certificate, a->pki ? "; admin certificates of " : "",
			 a->pki ? cfg->client_ca : "");
	}
	*out = a;
	return 0;
}

void api_stop(struct api *a)
{
	if (!a)
		return;
	if (a->local.mhd)
		MHD_stop_daemon(a->local.mhd);
	admin_stop(a);
	if (a->admin_lfd >= 0)
		close(a->admin_lfd);
	free(a);
}

/*
 * The admin listener serves the certificate files as they are: once a
 * second their identity is compared, and a change (a reload's new paths,
 * a renewed certificate) restarts its HTTPS server with them (open
 * connections end; the listening socket stays). A pair that does not load
 * is logged once and the old one kept; the next change of the files is
 * tried again.
 */
static void admin_cert_check(struct api *a)
{
	char sig[sizeof(a->cert_sig)], err[512];

	if (a->admin_lfd < 0 || now_ms() - a->cert_checked_ms < 1000)
		return;
	a->cert_checked_ms = now_ms();
	cert_sig(a->cfg, sig, sizeof(sig));
	if (!strcmp(sig, a->cert_sig))
		return;
	if (admin_start(a, err, sizeof(err)))
		log_error("admin API: %s: %s until the files change again", err,
			  a->admin.mhd ? "the previous certificate stays served"
				       : "the admin listener is off");
	else
		log_info("admin API: certificate %s loaded%s%s", a->cfg->certificate,
			 a->pki ? "; admin certificates of " : "; no admin certificates",
			 a->pki ? a->cfg->client_ca : "");
}

static int srv_pollfds(struct srv *sv, struct pollfd *pfd, int max, int *timeout_ms)
{
	return mhd_pollfds(sv->mhd, "api", pfd, max, timeout_ms);
}

int api_pollfds(struct api *a, struct pollfd *pfd, int max, int *timeout_ms)
{
	int n;

	admin_cert_check(a);
	n = srv_pollfds(&a->local, pfd, max, timeout_ms);
	a->nlocal = n;
	return n + srv_pollfds(&a->admin, pfd + n, max - n, timeout_ms);
}

static void srv_process(struct srv *sv, const struct pollfd *pfd, int n)
{
	mhd_process(sv->mhd, pfd, n);
}

void api_process(struct api *a, const struct pollfd *pfd, int n)
{
	int nl = a->nlocal < n ? a->nlocal : n;

	srv_process(&a->local, pfd, nl);
	srv_process(&a->admin, pfd + nl, n - nl);
}

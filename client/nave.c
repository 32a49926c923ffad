// SPDX-License-Identifier: Apache-2.0
/*
 * nave: the tunnel client's command line. A table of {verb, handler, help}
 * drives dispatch and usage. Rule commands talk to a running client through
 * its local socket (live change, persisted by the client) and fall back to
 * editing the config when it is not running.
 */
#include "client.h"
#include "config/cfg.h"
#include "log.h"
#include "msg.h"
#include "tls/tls.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct opts {
	const char *config;
	bool json;
	struct cfg_client cfg;
};

static void die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "nave: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see nave --help)\n");
	exit(2);
}

static void load_cfg(struct opts *o, bool missing_ok)
{
	char path[CFG_PATH_MAX], err[CFG_ERR_MAX];

	if (o->config)
		str_copy(path, sizeof(path), o->config);
	else
		cfg_client_default_path(path, sizeof(path));
	if (cfg_client_load(&o->cfg, path, missing_ok, err, sizeof(err)) < 0) {
		fprintf(stderr, "nave: %s\n", err);
		exit(2);
	}
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s)
		puts(s);
	free(s);
}

static json_t *local(struct opts *o, json_t *req)
{
	json_t *r = client_local_request(o->cfg.socket, req, 20000);

	json_decref(req);
	return r;
}

/* ---------- configure ---------- */

static int cmd_configure(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"server", required_argument, NULL, 's'},
	    {"registration", required_argument, NULL, 'r'},
	    {"key", required_argument, NULL, 'k'},
	    {"id", required_argument, NULL, 'i'},
	    {"ca", required_argument, NULL, 'a'},
	    {"fingerprint", required_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *server = NULL, *reg = NULL, *key = NULL, *id = NULL, *ca = NULL, *fp = NULL;
	char tid[64], token[256], err[512];
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			server = optarg;
			break;
		case 'r':
			reg = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'i':
			id = optarg;
			break;
		case 'a':
			ca = optarg;
			break;
		case 'f':
			fp = optarg;
			break;
		case 'h':
			puts(
			    "usage: nave configure --server HOST[:PORT] (--registration TOKEN | "
			    "--key "
			    "TOKEN)\n"
			    "                      [--id NAME] [--ca FILE | --fingerprint SHA256] "
			    "[--config FILE]\n"
			    "Checks the credentials with the server and writes the client config.");
			return 0;
		default:
			exit(2);
		}
	}
	if (!server)
		die_usage("configure needs --server HOST[:PORT]%s", "");
	if (!reg == !key)
		die_usage("configure needs exactly one of --registration or --key%s", "");
	if (ca && fp)
		die_usage("--ca and --fingerprint exclude each other%s", "");
	load_cfg(o, true);
	str_copy(o->cfg.server, sizeof(o->cfg.server), server);
	str_copy(o->cfg.id, sizeof(o->cfg.id), id ? id : "");
	str_copy(o->cfg.ca, sizeof(o->cfg.ca), ca ? ca : "");
	str_copy(o->cfg.fingerprint, sizeof(o->cfg.fingerprint), fp ? fp : "");
	if (fp) {
		unsigned char b[32];

		if (tls_fingerprint_parse(fp, b) < 0)
			die_usage("bad --fingerprint '%s' (want 64 hex digits, colons allowed)",
				  fp);
	}
	if (client_configure(&o->cfg, reg, key, tid, sizeof(tid), token, sizeof(token), err,
			     sizeof(err)) < 0) {
		fprintf(stderr, "nave: %s\n", err);
		return 1;
	}
	str_copy(o->cfg.token, sizeof(o->cfg.token), token[0] ? token : key);
	if (cfg_client_save(&o->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "nave: cannot write %s: %s\n", o->cfg.path, err);
		return 1;
	}
	if (o->json) {
		json_t *j = json_pack("{s:s, s:s, s:s}", "tunnel_id", tid, "server", server,
				      "config", o->cfg.path);

		print_json(j);
		json_decref(j);
	} else {
		printf("configured tunnel %s on %s (config %s)\nnext: nave start%s%s\n", tid,
		       server, o->cfg.path, o->config ? " --config " : "",
		       o->config ? o->config : "");
	}
	return 0;
}

/* ---------- start / status / deauth ---------- */

static int cmd_start(struct opts *o, int argc, char **argv)
{
	int level;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		puts("usage: nave start [--config FILE]\nRuns the tunnel in the foreground until "
		     "SIGTERM/SIGINT.");
		return 0;
	}
	if (argc > 1)
		die_usage("start: unexpected argument '%s'", argv[1]);
	load_cfg(o, false);
	level = o->cfg.log_level;
	log_init("nave", level, o->cfg.log_json);
	return client_run(&o->cfg);
}

static int cmd_status(struct opts *o, int argc, char **argv)
{
	json_t *r;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		puts("usage: nave status [--json] [--config FILE]");
		return 0;
	}
	load_cfg(o, true);
	r = local(o, json_pack("{s:s}", "type", "status"));
	if (!r) {
		if (o->json) {
			json_t *j = json_pack("{s:s, s:s, s:b}", "state", "stopped", "server",
					      o->cfg.server, "configured", o->cfg.token[0] != 0);

			print_json(j);
			json_decref(j);
		} else {
			printf("state:   stopped\nserver:  %s\nconfig:  %s (%s)\nrules:   %u\n",
			       o->cfg.server[0] ? o->cfg.server : "-", o->cfg.path,
			       o->cfg.token[0] ? "configured" : "not configured", o->cfg.n_tcp);
		}
		return 0;
	}
	json_object_del(r, "ok");
	json_object_del(r, "type");
	if (o->json) {
		print_json(r);
	} else {
		printf("state:   %s\nserver:  %s\ntunnel:  %s\nlinks:   %lld (%lld idle)\n"
		       "conns:   %lld open, %lld total\nbytes:   %lld in, %lld out\n",
		       msg_str(r, "state"), msg_str(r, "server"), msg_str(r, "tunnel_id"),
		       msg_int(r, "links", 0), msg_int(r, "idle_links", 0), msg_int(r, "conns", 0),
		       msg_int(r, "conns_total", 0), msg_int(r, "bytes_in", 0),
		       msg_int(r, "bytes_out", 0));
	}
	json_decref(r);
	return 0;
}

static int cmd_deauth(struct opts *o, int argc, char **argv)
{
	char err[CFG_ERR_MAX], tid[64] = "";
	bool force = false;
	json_t *r;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			puts(
			    "usage: nave deauth [--force] [--config FILE]\n"
			    "Revokes this client's auth token on the server, stops a running "
			    "client and\n"
			    "removes the token from the config. --force removes it even when the "
			    "server\ncannot be reached (ask the administrator to revoke it then).");
			return 0;
		}
		if (strcmp(argv[i], "--force"))
			die_usage("deauth: unexpected argument '%s'", argv[i]);
		force = true;
	}
	load_cfg(o, false);
	if (!o->cfg.token[0]) {
		fprintf(stderr, "nave: there is no token in %s (not configured)\n", o->cfg.path);
		return 1;
	}
	/* a running client revokes over its control link, removes the token and stops */
	r = local(o, json_pack("{s:s, s:b}", "type", "deauth", "force", force));
	if (r) {
		bool ok = json_is_true(json_object_get(r, "ok"));

		if (!ok)
			fprintf(stderr, "nave: %s%s\n", msg_str(r, "error") ?: "refused",
				force ? "" : " (nave deauth --force forgets the token anyway)");
		else if (json_is_true(json_object_get(r, "revoked")))
			printf("deauthorised: the server revoked the token of tunnel %s; the "
			       "running client stopped and the token is removed from %s\n",
			       msg_str(r, "tunnel_id") ?: "?", o->cfg.path);
		else
			printf("the running client stopped and the token is removed from %s; the "
			       "server was not reached: ask the administrator to revoke it\n",
			       o->cfg.path);
		json_decref(r);
		return ok ? 0 : 1;
	}
	if (errno != ENOENT && errno != ECONNREFUSED) {
		fprintf(stderr, "nave: cannot reach the running client at %s: %s\n", o->cfg.socket,
			strerror(errno));
		return 1;
	}
	/* stopped: one short connection */
	if (client_deauth_offline(&o->cfg, tid, sizeof(tid), err, sizeof(err)) < 0) {
		if (strncmp(err, "server refused:", 15) == 0) {
			/* the server no longer takes this token: nothing left to revoke */
			fprintf(stderr, "nave: %s; removing the token anyway\n", err);
		} else if (!force) {
			fprintf(
			    stderr,
			    "nave: cannot revoke the token on the server: %s; the token stays in "
			    "%s (nave deauth --force removes it anyway)\n",
			    err, o->cfg.path);
			return 1;
		} else {
			fprintf(stderr,
				"nave: cannot revoke the token on the server: %s; "
				"removing it anyway: ask the administrator to revoke it\n",
				err);
		}
	}
	o->cfg.token[0] = 0;
	if (cfg_client_save(&o->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "nave: %s\n", err);
		return 1;
	}
	if (tid[0])
		printf("deauthorised: the server revoked the token of tunnel %s and it is removed "
		       "from %s\n",
		       tid, o->cfg.path);
	else
		printf("the token is removed from %s\n", o->cfg.path);
	return 0;
}

/* ---------- tunnel rules ---------- */

static void print_rules(struct opts *o, json_t *rules)
{
	json_t *r;
	size_t i;

	if (o->json) {
		print_json(rules);
		return;
	}
	printf("%-16s %-8s %-10s %s\n", "NAME", "PORT", "STATE", "TO");
	json_array_foreach(rules, i, r)
	{
		long long port = msg_int(r, "port", 0);
		char ps[16];

		snprintf(ps, sizeof(ps), "%lld", port);
		printf("%-16s %-8s %-10s %s\n", msg_str(r, "name"), port ? ps : "any",
		       msg_str(r, "state") ?: "saved", msg_str(r, "to"));
	}
}

static int tunnel_ls(struct opts *o)
{
	json_t *r, *rules;

	load_cfg(o, true);
	r = local(o, json_pack("{s:s}", "type", "tcp_ls"));
	if (r) {
		print_rules(o, json_object_get(r, "rules"));
		json_decref(r);
		return 0;
	}
	rules = json_array();
	for (unsigned i = 0; i < o->cfg.n_tcp; i++)
		json_array_append_new(rules,
				      json_pack("{s:s, s:s, s:i, s:s}", "name", o->cfg.tcp[i].name,
						"to", o->cfg.tcp[i].to, "port",
						(int)o->cfg.tcp[i].port, "state", "saved"));
	print_rules(o, rules);
	json_decref(rules);
	return 0;
}

static int tunnel_rm(struct opts *o, const char *name)
{
	json_t *r;
	char err[CFG_ERR_MAX];
	unsigned i;

	load_cfg(o, true);
	r = local(o, json_pack("{s:s, s:s}", "type", "tcp_rm", "name", name));
	if (r) {
		bool ok = json_is_true(json_object_get(r, "ok"));

		if (!ok)
			fprintf(stderr, "nave: %s\n", msg_str(r, "error") ?: "refused");
		else if (!o->json)
			printf("removed %s\n", name);
		json_decref(r);
		return ok ? 0 : 1;
	}
	for (i = 0; i < o->cfg.n_tcp; i++)
		if (!strcmp(o->cfg.tcp[i].name, name))
			break;
	if (i == o->cfg.n_tcp) {
		fprintf(stderr, "nave: no rule named %s\n", name);
		return 1;
	}
	o->cfg.tcp[i] = o->cfg.tcp[--o->cfg.n_tcp];
	if (cfg_client_save(&o->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "nave: %s\n", err);
		return 1;
	}
	if (!o->json)
		printf("removed %s (from the config; nave is not running)\n", name);
	return 0;
}

static int tcp_add(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"to", required_argument, NULL, 't'},
	    {"name", required_argument, NULL, 'n'},
	    {"proxy-protocol", required_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *to = NULL, *name = NULL, *pp = NULL;
	long port = 0;
	char nbuf[64], host[256], err[CFG_ERR_MAX], *end;
	uint16_t hp;
	int c, proxy = 0;
	json_t *r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			port = strtol(optarg, &end, 10);
			if (*end || port < 1 || port > 65535)
				die_usage("bad --port '%s'", optarg);
			break;
		case 't':
			to = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'P':
			pp = optarg;
			break;
		case 'h':
			puts("usage: nave tunnel tcp add [--port N] --to HOST:PORT [--name NAME] "
			     "[--proxy-protocol v1|v2]\n"
			     "Exposes HOST:PORT on a public TCP port of the server and prints the "
			     "port.");
			return 0;
		default:
			exit(2);
		}
	}
	if (!to)
		die_usage("tunnel tcp add needs --to HOST:PORT%s", "");
	if (cfg_parse_hostport(to, host, sizeof(host), &hp) < 0 || hp == 0)
		die_usage("bad --to '%s' (want HOST:PORT)", to);
	if (pp) {
		if (!strcmp(pp, "v1"))
			proxy = 1;
		else if (!strcmp(pp, "v2"))
			proxy = 2;
		else
			die_usage("bad --proxy-protocol '%s' (v1 or v2)", pp);
	}
	load_cfg(o, true);
	if (!name) {
		for (unsigned i = 1;; i++) {
			bool used = false;

			snprintf(nbuf, sizeof(nbuf), "tcp%u", i);
			for (unsigned j = 0; j < o->cfg.n_tcp; j++)
				used |= !strcmp(o->cfg.tcp[j].name, nbuf);
			if (!used)
				break;
		}
		name = nbuf;
	}
	if (!cfg_valid_name(name))
		die_usage("bad --name '%s' (letters, digits, - and _)", name);
	r = local(o, json_pack("{s:s, s:s, s:s, s:i, s:i}", "type", "tcp_add", "name", name, "to",
			       to, "port", (int)port, "proxy_protocol", proxy));
	if (r) {
		bool ok = json_is_true(json_object_get(r, "ok"));

		if (!ok) {
			fprintf(stderr, "nave: %s\n", msg_str(r, "error") ?: "refused");
		} else if (o->json) {
			json_object_del(r, "type");
			print_json(r);
		} else if (msg_int(r, "port", 0)) {
			printf("%lld\n", msg_int(r, "port", 0));
		} else {
			printf("saved %s: %s\n", name, msg_str(r, "note") ?: "");
		}
		json_decref(r);
		return ok ? 0 : 1;
	}
	if (errno != ENOENT && errno != ECONNREFUSED) {
		fprintf(stderr, "nave: cannot reach the running client at %s: %s\n", o->cfg.socket,
			strerror(errno));
		return 1;
	}
	for (unsigned j = 0; j < o->cfg.n_tcp; j++)
		if (!strcmp(o->cfg.tcp[j].name, name)) {
			fprintf(stderr, "nave: a rule named %s exists\n", name);
			return 1;
		}
	if (o->cfg.n_tcp >= CFG_MAX_RULES) {
		fprintf(stderr, "nave: too many rules\n");
		return 1;
	}
	struct cfg_tcp_rule *t = &o->cfg.tcp[o->cfg.n_tcp++];
	memset(t, 0, sizeof(*t));
	str_copy(t->name, sizeof(t->name), name);
	str_copy(t->to, sizeof(t->to), to);
	t->port = (uint16_t)port;
	t->proxy_protocol = proxy;
	if (cfg_client_save(&o->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "nave: %s\n", err);
		return 1;
	}
	if (o->json) {
		json_t *j = json_pack("{s:b, s:s, s:n, s:s}", "ok", 1, "name", name, "port", "note",
				      "saved; applied at the next nave start");

		print_json(j);
		json_decref(j);
	} else
		printf("saved %s (nave is not running: the port is allocated at the next nave "
		       "start)\n",
		       name);
	return 0;
}

static int cmd_tunnel(struct opts *o, int argc, char **argv)
{
	const char *help = "usage: nave tunnel tcp add [--port N] --to HOST:PORT [--name NAME]\n"
			   "       nave tunnel tcp ls | nave tunnel ls\n"
			   "       nave tunnel tcp rm NAME | nave tunnel rm NAME";

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		puts(help);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "ls"))
		return tunnel_ls(o);
	if (!strcmp(argv[1], "rm")) {
		if (argc != 3)
			die_usage("tunnel rm needs one rule NAME%s", "");
		return tunnel_rm(o, argv[2]);
	}
	if (!strcmp(argv[1], "tcp") && argc >= 3) {
		if (!strcmp(argv[2], "add"))
			return tcp_add(o, argc - 2, argv + 2);
		if (!strcmp(argv[2], "ls"))
			return tunnel_ls(o);
		if (!strcmp(argv[2], "rm")) {
			if (argc != 4)
				die_usage("tunnel tcp rm needs one rule NAME%s", "");
			return tunnel_rm(o, argv[3]);
		}
	}
	die_usage("unknown tunnel command '%s'", argv[1]);
	return 2;
}

/* ---------- dispatch ---------- */

struct command {
	const char *name;
	int (*fn)(struct opts *o, int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
    {"configure", cmd_configure, "check credentials with a server and write the config"},
    {"start", cmd_start, "run the tunnel (foreground)"},
    {"tunnel", cmd_tunnel, "tcp add|ls|rm: public TCP ports for local services"},
    {"status", cmd_status, "show whether the tunnel runs and what it carries"},
    {"deauth", cmd_deauth, "revoke the auth token on the server and forget it"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: nave [--config FILE] [--json] COMMAND [ARGS]\n\nCommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\nThe config defaults to $NAVE_CONFIG or ~/.config/nave/nave.ini.\n"
		   "Each command takes --help.\n");
}

int main(int argc, char **argv)
{
	struct opts o;
	char *args[64];
	int n = 0;

	memset(&o, 0, sizeof(o));
	/* global options may appear anywhere: take them out first */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) {
			if (++i >= argc)
				die_usage("--config needs a FILE%s", "");
			o.config = argv[i];
		} else if (!strncmp(argv[i], "--config=", 9)) {
			o.config = argv[i] + 9;
		} else if (!strcmp(argv[i], "--json")) {
			o.json = true;
		} else if (n < (int)ARRAY_SIZE(args) - 1) {
			args[n++] = argv[i];
		}
	}
	args[n] = NULL;
	if (n == 0 || !strcmp(args[0], "--help") || !strcmp(args[0], "-h") ||
	    !strcmp(args[0], "help")) {
		usage(n == 0 ? stderr : stdout);
		return n == 0 ? 2 : 0;
	}
	if (!strcmp(args[0], "--version")) {
		printf("nave %s\n", NAVE_VERSION);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(args[0], commands[i].name))
			return commands[i].fn(&o, n, args);
	die_usage("unknown command '%s'", args[0]);
	return 2;
}

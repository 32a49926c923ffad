// SPDX-License-Identifier: Apache-2.0
/*
 * nave: the tunnel client's command line. A table of {verb, handler, help}
 * drives dispatch and usage. Rule commands talk to a running client through
 * its local socket (live change, persisted by the client) and fall back to
 * editing the config when it is not running.
 */
#include "client.h"
#include "config/cfg.h"
#include "domain.h"
#include "link_proto.h"
#include "log.h"
#include "msg.h"
#include "passwd.h"
#include "supconnect.h"
#include "support.h"
#include "tls/tls.h"
#include "util.h"
#include "valid.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TOKEN_MAX      255  /* bytes of a registration or auth token */
#define TOKEN_LINE_MAX 4096 /* a token file's first line is read up to this */

struct opts {
	const char *config;
	bool json;
	struct cfg_client cfg;
};

/* "nave: reason" as one escaped line on stderr. */
static void __attribute__((format(printf, 1, 2))) say_err(const char *fmt, ...)
{
	char msg[1024], out[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "nave: %s\n", log_esc_str(msg, out, sizeof(out)));
}

static void __attribute__((format(printf, 1, 2), noreturn)) die_usage(const char *fmt, ...)
{
	char msg[1024], out[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "nave: %s (see nave --help)\n", log_esc_str(msg, out, sizeof(out)));
	exit(2);
}

/* getopt_long's '?' and ':' as one "nave: ..." line, exit 2. */
static void __attribute__((noreturn)) bad_option(const char *cmd, int c, char **argv)
{
	const char *a = argv[optind - 1];

	if (c == ':')
		die_usage("%s: option %s needs a value", cmd, a);
	if (optopt && a[0] == '-' && a[1] != '-')
		die_usage("%s: unknown option '-%c'", cmd, optopt);
	die_usage("%s: unknown option '%s'", cmd, a);
}

/* True for --help / -h. */
static bool is_help(const char *a)
{
	return !strcmp(a, "--help") || !strcmp(a, "-h");
}

static void load_cfg(struct opts *o, bool missing_ok)
{
	char path[CFG_PATH_MAX], err[CFG_ERR_MAX];

	if (o->config)
		str_copy(path, sizeof(path), o->config);
	else
		cfg_client_default_path(path, sizeof(path));
	if (cfg_client_load(&o->cfg, path, missing_ok, err, sizeof(err)) < 0) {
		say_err("%s", err);
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
	json_t *r;
	int e;

	errno = 0; /* a reply it cannot parse leaves errno alone */
	r = client_local_request(o->cfg.socket, req, 20000);
	e = errno;

	json_decref(req);
	errno = e;
	return r;
}

/*
 * After local() gave NULL: true when nave start is not running (no socket,
 * or a stale one), so the config is what counts; else says why it cannot
 * ask the running client, and the command fails.
 */
static bool not_running(struct opts *o)
{
	if (errno == ENOENT || errno == ECONNREFUSED)
		return true;
	say_err("cannot reach the running client at %s: %s", o->cfg.socket,
		errno == EPIPE || errno == 0 ? "no valid answer" : strerror(errno));
	return false;
}

/* ---------- configure ---------- */

static const char configure_help[] =
    "usage: nave configure --server HOST[:PORT] (CREDENTIALS | --cert DIR) [--id NAME]\n"
    "                      [--ca FILE | --fingerprint SHA256] [--config FILE]\n"
    "                      [--json]\n"
    "Checks the credentials with the server and writes the client config.\n"
    "\n"
    "CREDENTIALS, exactly one of:\n"
    "  --registration TOKEN      a registration token (navectl registration create)\n"
    "  --registration-file FILE  the registration token on the first line of FILE\n"
    "  --key TOKEN               an auth token (navectl tokens create)\n"
    "  --key-file FILE           the auth token on the first line of FILE\n"
    "  NAVE_REGISTRATION, NAVE_KEY  the same in the environment\n"
    "FILE - is stdin. A token on the command line shows in ps and in the shell's\n"
    "history: prefer a file or the environment.\n"
    "Or, instead of a token:\n"
    "  --cert DIR                log in with a certificate: a nodes/NAME directory of\n"
    "                            navectl pki (tls.crt, tls.key mode 0600); the\n"
    "                            tunnel id is the certificate's name\n"
    "\n"
    "Options:\n"
    "  --server HOST[:PORT]  the relay (port 8443 when omitted)\n"
    "  --id NAME             a tunnel group name\n"
    "  --ca FILE             verify the server against this CA certificate file\n"
    "  --fingerprint SHA256  pin the server certificate: its SHA-256, as navectl\n"
    "                        status prints it (neither --ca nor this: system CAs)\n"
    "  --config FILE         the client config to write\n"
    "  --json                print the result as JSON\n"
    "  -h, --help            this help";

/* Where the credentials came from: one of these per configure. */
struct cred {
	const char *what; /* "--registration", "NAVE_KEY", ... for messages */
	const char *val;  /* the token, or the FILE */
	bool key;	  /* an auth token, else a registration token */
	bool file;	  /* val names a file ("-" = stdin) */
};

static bool token_char(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '_';
}

static bool is_space(int ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

/* 1..TOKEN_MAX bytes of [A-Za-z0-9_], or exit 2 naming where it came from. */
static void check_token(const char *t, size_t n, const char *what)
{
	if (n == 0)
		die_usage("%s: no token", what);
	if (n > TOKEN_MAX)
		die_usage("%s: the token is longer than %d bytes", what, TOKEN_MAX);
	for (size_t i = 0; i < n; i++)
		if (!token_char((unsigned char)t[i]))
			die_usage("%s: the token may only hold letters, digits and _", what);
}

/*
 * The token on the first line of path ("-": stdin), surrounding white space
 * stripped, into out[TOKEN_MAX + 1]; exit 2 with the reason when it cannot.
 */
static void read_token_file(const struct cred *cr, char *out)
{
	bool is_stdin = !strcmp(cr->val, "-");
	const char *name = is_stdin ? "stdin" : cr->val;
	char line[TOKEN_LINE_MAX], label[CFG_PATH_MAX];
	size_t n = 0, b = 0;
	FILE *f;
	int ch;

	f = is_stdin ? stdin : fopen(cr->val, "re");
	if (!f)
		die_usage("%s: cannot read %s: %s", cr->what, name, strerror(errno));
	while ((ch = getc(f)) != EOF && ch != '\n') {
		if (n == sizeof(line)) {
			if (!is_stdin)
				fclose(f);
			explicit_bzero(line, sizeof(line));
			die_usage("%s: the first line of %s is longer than %d bytes", cr->what,
				  name, TOKEN_MAX);
		}
		line[n++] = (char)ch;
	}
	if (ferror(f)) {
		int e = errno;

		if (!is_stdin)
			fclose(f);
		explicit_bzero(line, sizeof(line));
		die_usage("%s: cannot read %s: %s", cr->what, name, strerror(e ? e : EIO));
	}
	if (!is_stdin)
		fclose(f);
	while (b < n && is_space(line[b]))
		b++;
	while (n > b && is_space(line[n - 1]))
		n--;
	if (n == b)
		die_usage("%s: no token on the first line of %s", cr->what, name);
	snprintf(label, sizeof(label), "%s %s", cr->what, name);
	check_token(line + b, n - b, label);
	memcpy(out, line + b, n - b);
	out[n - b] = 0;
	explicit_bzero(line, sizeof(line));
}

/* Adds a credential source; two of them are bad usage. */
static void cred_add(struct cred *cr, const char *what, const char *val, bool key, bool file)
{
	if (cr->what) {
		if (!strcmp(cr->what, what))
			die_usage("configure: %s given twice", what);
		die_usage("configure: credentials from both %s and %s: give exactly one", cr->what,
			  what);
	}
	cr->what = what;
	cr->val = val;
	cr->key = key;
	cr->file = file;
}

static int cmd_configure(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"server", required_argument, NULL, 's'},
	    {"registration", required_argument, NULL, 'r'},
	    {"registration-file", required_argument, NULL, 'R'},
	    {"key", required_argument, NULL, 'k'},
	    {"key-file", required_argument, NULL, 'K'},
	    {"id", required_argument, NULL, 'i'},
	    {"ca", required_argument, NULL, 'a'},
	    {"fingerprint", required_argument, NULL, 'f'},
	    {"cert", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *server = NULL, *id = NULL, *ca = NULL, *fp = NULL, *env, *cert = NULL;
	char certdir[CFG_PATH_MAX];
	static char tok[TOKEN_MAX + 1];
	const char *reg = NULL, *key = NULL;
	struct cred cr = {0};
	char tid[64], token[256], err[512], b1[256], b2[1024], b3[2048], b4[2048];
	int c, ret = 1;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			server = optarg;
			break;
		case 'r':
			cred_add(&cr, "--registration", optarg, false, false);
			break;
		case 'R':
			cred_add(&cr, "--registration-file", optarg, false, true);
			break;
		case 'k':
			cred_add(&cr, "--key", optarg, true, false);
			break;
		case 'K':
			cred_add(&cr, "--key-file", optarg, true, true);
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
		case 'c':
			cert = optarg;
			break;
		case 'h':
			puts(configure_help);
			return 0;
		default:
			bad_option("configure", c, argv);
		}
	}
	if (optind < argc)
		die_usage("configure: unexpected argument '%s'", argv[optind]);
	env = getenv("NAVE_REGISTRATION");
	if (env && *env)
		cred_add(&cr, "NAVE_REGISTRATION", env, false, false);
	env = getenv("NAVE_KEY");
	if (env && *env)
		cred_add(&cr, "NAVE_KEY", env, true, false);
	if (!server)
		die_usage("configure needs --server HOST[:PORT]");
	if (cert && cr.what)
		die_usage("configure: --cert and %s exclude each other: give one", cr.what);
	if (!cr.what && !cert)
		die_usage(
		    "configure needs credentials: --registration, --registration-file, --key, "
		    "--key-file, NAVE_REGISTRATION, NAVE_KEY or --cert");
	if (ca && fp)
		die_usage("--ca and --fingerprint exclude each other");
	if (fp) {
		unsigned char b[32];

		if (tls_fingerprint_parse(fp, b) < 0)
			die_usage("bad --fingerprint '%s' (want 64 hex digits, colons allowed)",
				  fp);
	}
	if (id && !valid_str(id, VALID_ID, LINK_GROUP_MAX))
		die_usage("bad --id '%s' (1-%d letters, digits, '.', '_' and '-')", id,
			  LINK_GROUP_MAX);
	if (cert) {
		/* the config keeps the directory wherever nave start runs from */
		if (!realpath(cert, certdir) || strlen(certdir) >= sizeof(o->cfg.cert)) {
			say_err("--cert %s: %s", cert, errno ? strerror(errno) : "path too long");
			return 1;
		}
		if (client_cert_check(certdir, err, sizeof(err)) < 0) {
			say_err("--cert: %s", err);
			return 1;
		}
	} else if (cr.file) {
		read_token_file(&cr, tok);
	} else {
		check_token(cr.val, strlen(cr.val), cr.what);
		str_copy(tok, sizeof(tok), cr.val);
	}
	if (cert)
		; /* no token */
	else if (cr.key)
		key = tok;
	else
		reg = tok;
	load_cfg(o, true);
	str_copy(o->cfg.cert, sizeof(o->cfg.cert), cert ? certdir : "");
	if (cert)
		o->cfg.token[0] = 0; /* the certificate is the login from now on */
	str_copy(o->cfg.server, sizeof(o->cfg.server), server);
	str_copy(o->cfg.id, sizeof(o->cfg.id), id ? id : "");
	str_copy(o->cfg.ca, sizeof(o->cfg.ca), ca ? ca : "");
	str_copy(o->cfg.fingerprint, sizeof(o->cfg.fingerprint), fp ? fp : "");
	if (client_configure(&o->cfg, reg, key, tid, sizeof(tid), token, sizeof(token), err,
			     sizeof(err)) < 0) {
		say_err("%s", err);
		goto out;
	}
	str_copy(o->cfg.token, sizeof(o->cfg.token), token[0] ? token : key ? key : "");
	if (cfg_client_save(&o->cfg, err, sizeof(err)) < 0) {
		say_err("cannot write %s: %s", o->cfg.path, err);
		goto out;
	}
	if (o->json) {
		json_t *j = json_pack("{s:s, s:s, s:s}", "tunnel_id", tid, "server", server,
				      "config", o->cfg.path);

		print_json(j);
		json_decref(j);
	} else {
		printf("configured tunnel %s on %s (config %s)\nnext: nave start%s%s\n",
		       log_esc_str(tid, b1, sizeof(b1)), log_esc_str(server, b2, sizeof(b2)),
		       log_esc_str(o->cfg.path, b3, sizeof(b3)), o->config ? " --config " : "",
		       o->config ? log_esc_str(o->config, b4, sizeof(b4)) : "");
	}
	ret = 0;
out:
	explicit_bzero(tok, sizeof(tok));
	explicit_bzero(token, sizeof(token));
	explicit_bzero(o->cfg.token, sizeof(o->cfg.token));
	return ret;
}

/* ---------- start / status / deauth ---------- */

static int cmd_start(struct opts *o, int argc, char **argv)
{
	int level;

	if (argc > 1 && is_help(argv[1])) {
		puts("usage: nave start [--config FILE]\n"
		     "Runs the tunnel in the foreground until SIGTERM/SIGINT (or until the server\n"
		     "tells it to stop), reconnecting on its own.\n"
		     "\n"
		     "Options:\n"
		     "  --config FILE  the client config (written by nave configure)\n"
		     "  -h, --help     this help");
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
	char b1[256], b2[1024], b3[256], b4[2048];
	json_t *r;

	if (argc > 1 && is_help(argv[1])) {
		puts("usage: nave status [--json] [--config FILE]\n"
		     "Shows whether the tunnel runs, its links, connections and bytes.\n"
		     "\n"
		     "Options:\n"
		     "  --json         print the running client's status as JSON\n"
		     "  --config FILE  the client config\n"
		     "  -h, --help     this help");
		return 0;
	}
	if (argc > 1)
		die_usage("status: unexpected argument '%s'", argv[1]);
	load_cfg(o, true);
	r = local(o, json_pack("{s:s}", "type", "status"));
	if (!r && !not_running(o))
		return 1;
	if (!r) {
		if (o->json) {
			json_t *j = json_pack("{s:s, s:s, s:b, s:o, s:o}", "state", "stopped",
					      "server", o->cfg.server, "configured",
					      o->cfg.token[0] || o->cfg.cert[0], "maps",
					      client_listeners_json(&o->cfg, false), "socks",
					      client_listeners_json(&o->cfg, true));

			print_json(j);
			json_decref(j);
		} else {
			printf("state:   stopped\nserver:  %s\nconfig:  %s (%s)\nrules:   %u\n",
			       log_esc_str(o->cfg.server[0] ? o->cfg.server : "-", b2, sizeof(b2)),
			       log_esc_str(o->cfg.path, b4, sizeof(b4)),
			       o->cfg.token[0] || o->cfg.cert[0] ? "configured" : "not configured",
			       o->cfg.n_tcp);
			if (o->cfg.n_maps || o->cfg.n_socks)
				printf("mesh:    %u port map(s), %u SOCKS proxy(ies)\n",
				       o->cfg.n_maps, o->cfg.n_socks);
		}
		return 0;
	}
	json_object_del(r, "ok");
	json_object_del(r, "type");
	if (o->json) {
		print_json(r);
	} else {
		printf("state:   %s\nserver:  %s\ntunnel:  %s\nlinks:   %lld (%lld idle)\n",
		       log_esc_str(msg_str(r, "state"), b1, sizeof(b1)),
		       log_esc_str(msg_str(r, "server"), b2, sizeof(b2)),
		       log_esc_str(msg_str(r, "tunnel_id"), b3, sizeof(b3)), msg_int(r, "links", 0),
		       msg_int(r, "idle_links", 0));
		/* a client that does not say (older) gets no line */
		if (json_is_string(json_object_get(r, "ktls")))
			printf("ktls:    %s (links: %lld kTLS, %lld userspace, %lld fallbacks)\n",
			       log_esc_str(msg_str(r, "ktls"), b1, sizeof(b1)),
			       msg_int(r, "links_ktls", 0), msg_int(r, "links_tls", 0),
			       msg_int(r, "ktls_fallbacks", 0));
		printf("conns:   %lld open, %lld total\nbytes:   %lld in, %lld out\n",
		       msg_int(r, "conns", 0), msg_int(r, "conns_total", 0),
		       msg_int(r, "bytes_in", 0), msg_int(r, "bytes_out", 0));
		if (json_array_size(json_object_get(r, "maps")) ||
		    json_array_size(json_object_get(r, "socks")))
			printf("mesh:    %zu port map(s), %zu SOCKS proxy(ies); %lld streams "
			       "opened, %lld refused%s\n",
			       json_array_size(json_object_get(r, "maps")),
			       json_array_size(json_object_get(r, "socks")),
			       msg_int(r, "mesh_opened", 0), msg_int(r, "mesh_refused", 0),
			       json_is_false(json_object_get(r, "mesh")) &&
				       !strcmp(msg_str(r, "state") ?: "", "online")
				   ? " (the server does not support port maps: too old)"
				   : "");
	}
	json_decref(r);
	return 0;
}

static int cmd_deauth(struct opts *o, int argc, char **argv)
{
	char err[CFG_ERR_MAX], tid[64] = "", b[2048], b2[128];
	bool force = false;
	json_t *r;

	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			puts("usage: nave deauth [--force] [--config FILE]\n"
			     "Revokes this client's auth token on the server, stops a running "
			     "client "
			     "and\nremoves the token from the config.\n"
			     "\n"
			     "Options:\n"
			     "  --force        remove the token even when the server cannot be "
			     "reached\n"
			     "                 (then ask the administrator to revoke it)\n"
			     "  --config FILE  the client config\n"
			     "  -h, --help     this help");
			return 0;
		}
		if (strcmp(argv[i], "--force"))
			die_usage("deauth: unexpected argument '%s'", argv[i]);
		force = true;
	}
	load_cfg(o, false);
	if (!o->cfg.token[0] && o->cfg.cert[0]) {
		say_err(
		    "this client logs in with a certificate (%s): the server's admin revokes it "
		    "with navectl pki revoke",
		    o->cfg.cert);
		return 1;
	}
	if (!o->cfg.token[0]) {
		say_err("there is no token in %s (not configured)", o->cfg.path);
		return 1;
	}
	/* a running client revokes over its control link, removes the token and stops */
	r = local(o, json_pack("{s:s, s:b}", "type", "deauth", "force", force));
	if (r) {
		bool ok = json_is_true(json_object_get(r, "ok"));

		if (!ok)
			say_err("%s%s", msg_str(r, "error") ?: "refused",
				force ? "" : " (nave deauth --force forgets the token anyway)");
		else if (json_is_true(json_object_get(r, "revoked")))
			printf("deauthorised: the server revoked the token of tunnel %s; the "
			       "running client stopped and the token is removed from %s\n",
			       log_esc_str(msg_str(r, "tunnel_id") ?: "?", b2, sizeof(b2)),
			       log_esc_str(o->cfg.path, b, sizeof(b)));
		else
			printf("the running client stopped and the token is removed from %s; the "
			       "server was not reached: ask the administrator to revoke it\n",
			       log_esc_str(o->cfg.path, b, sizeof(b)));
		json_decref(r);
		return ok ? 0 : 1;
	}
	if (errno != ENOENT && errno != ECONNREFUSED) {
		say_err("cannot reach the running client at %s: %s", o->cfg.socket,
			strerror(errno));
		return 1;
	}
	/* stopped: one short connection */
	if (client_deauth_offline(&o->cfg, tid, sizeof(tid), err, sizeof(err)) < 0) {
		if (!strcmp(err, "server refused: invalid token") ||
		    !strcmp(err, "server refused: token revoked")) {
			/* the server no longer takes this token: nothing left to revoke */
			say_err("%s; removing the token anyway", err);
		} else if (!force) {
			say_err("cannot revoke the token on the server: %s; the token stays in %s "
				"(nave deauth --force removes it anyway)",
				err, o->cfg.path);
			return 1;
		} else {
			say_err(
			    "cannot revoke the token on the server: %s; removing it anyway: ask "
			    "the administrator to revoke it",
			    err);
		}
	}
	o->cfg.token[0] = 0;
	if (cfg_client_save(&o->cfg, err, sizeof(err)) < 0) {
		say_err("%s", err);
		return 1;
	}
	if (tid[0])
		printf("deauthorised: the server revoked the token of tunnel %s and it is removed "
		       "from %s\n",
		       log_esc_str(tid, b2, sizeof(b2)), log_esc_str(o->cfg.path, b, sizeof(b)));
	else
		printf("the token is removed from %s\n", log_esc_str(o->cfg.path, b, sizeof(b)));
	return 0;
}

/* ---------- tunnel rules ---------- */

#define TCP_ADD_USAGE                                                                              \
	"nave tunnel tcp add [--port N] --to HOST:PORT [--name NAME]\n"                            \
	"                           [--proxy-protocol v1|v2] [--config FILE] [--json]"

#define TCP_ADD_OPTIONS                                                                            \
	"  --port N                the public port, from the server's range; 0 or none:\n"         \
	"                          any free one\n"                                                 \
	"  --to HOST:PORT          the local service to expose\n"                                  \
	"  --name NAME             its name: letters, digits, - and _ (default tcpN)\n"            \
	"  --proxy-protocol v1|v2  send a PROXY protocol header (v1 text, v2 binary) to\n"         \
	"                          the service: it sees the public client's address\n"             \
	"  --config FILE           the client config\n"                                            \
	"  --json                  print the result as JSON\n"                                     \
	"  -h, --help              this help"

#define UDP_ADD_USAGE                                                                              \
	"nave tunnel udp add [--port N] --to HOST:PORT [--name NAME] [--config FILE]\n"            \
	"                           [--json]"

#define UDP_ADD_OPTIONS                                                                            \
	"  --port N                the public UDP port, from the server's range; 0 or\n"           \
	"                          none: any free one\n"                                           \
	"  --to HOST:PORT          the local UDP service to expose\n"                              \
	"  --name NAME             its name: letters, digits, - and _ (default udpN)\n"            \
	"  --config FILE           the client config\n"                                            \
	"  --json                  print the result as JSON\n"                                     \
	"  -h, --help              this help"

#define HTTP_ADD_USAGE                                                                             \
	"nave tunnel http add --domain D (--to HOST:PORT | --webroot DIR)\n"                       \
	"                            [--tls-passthrough] [--redirect-https] [--host-header H]\n"   \
	"                            [--basic-auth USER:PASS] [--proxy-protocol v1|v2]\n"          \
	"                            [--name NAME] [--config FILE] [--json]"

#define HTTP_ADD_OPTIONS                                                                           \
	"  --domain D              the name the server's HTTP/HTTPS edge routes here: a\n"         \
	"                          domain or a wildcard *.DOMAIN\n"                                \
	"  --to HOST:PORT          the local HTTP service\n"                                       \
	"  --webroot DIR           serve the files of DIR instead (nave serves them itself;\n"     \
	"                          index.html for a directory, GET and HEAD only)\n"               \
	"  --tls-passthrough       the edge forwards TLS untouched: the service at --to\n"         \
	"                          terminates it (no other option below goes with it)\n"           \
	"  --redirect-https        the edge answers plain HTTP with a redirect to HTTPS\n"         \
	"  --host-header H         the edge sets Host to H (with --to only)\n"                     \
	"  --basic-auth USER:PASS  the edge asks for this user and password; only a hash\n"        \
	"                          (scrypt) is kept and sent. It shows in ps while nave\n"         \
	"                          runs: prefer adding it when nobody else is logged in\n"         \
	"  --proxy-protocol v1|v2  send a PROXY protocol header (v1 text, v2 binary) with\n"       \
	"                          the client's address to the service at --to (useful\n"          \
	"                          with --tls-passthrough, where no X-Forwarded-For can be)\n"     \
	"  --name NAME             the rule's name: letters, digits, - and _ (default: from\n"     \
	"                          the domain)\n"                                                  \
	"  --config FILE           the client config\n"                                            \
	"  --json                  print the result as JSON\n"                                     \
	"  -h, --help              this help"

static const char tunnel_help[] =
    "usage: " TCP_ADD_USAGE "\n"
    "       " UDP_ADD_USAGE "\n"
    "       " HTTP_ADD_USAGE "\n"
    "       nave tunnel ls [--config FILE] [--json]\n"
    "       nave tunnel rm NAME [--config FILE] [--json]\n"
    "       (also: nave tunnel tcp ls, nave tunnel tcp rm NAME, nave tunnel udp ls,\n"
    "        nave tunnel udp rm NAME, nave tunnel http ls,\n"
    "        nave tunnel http rm NAME)\n"
    "Rules expose local services: TCP and UDP rules on public ports of the server\n"
    "(each UDP source address and port is a flow of datagrams), HTTP rules under a\n"
    "domain of its HTTP/HTTPS edge. While nave start runs they apply\n"
    "at once (and are saved); else they are saved for the next start.\n"
    "\n"
    "Options of tcp add:\n" TCP_ADD_OPTIONS "\n"
    "\n"
    "Options of udp add:\n" UDP_ADD_OPTIONS "\n"
    "\n"
    "Options of http add:\n" HTTP_ADD_OPTIONS;

/* Which rules a listing shows. */
enum ls_kind { LS_ALL, LS_TCP, LS_HTTP };

static void print_tcp_rules(json_t *rules)
{
	char b1[256], b2[64], b3[1024];
	json_t *r;
	size_t i;

	printf("%-16s %-8s %-10s %s\n", "NAME", "PORT", "STATE", "TO");
	json_array_foreach(rules, i, r)
	{
		long long port = msg_int(r, "port", 0);
		char ps[16];

		snprintf(ps, sizeof(ps), "%lld", port);
		printf("%-16s %-8s %-10s %s%s\n", log_esc_str(msg_str(r, "name"), b1, sizeof(b1)),
		       port ? ps : "any",
		       log_esc_str(msg_str(r, "state") ?: "saved", b2, sizeof(b2)),
		       log_esc_str(msg_str(r, "to"), b3, sizeof(b3)),
		       !strcmp(msg_str(r, "transport") ?: "tcp", "udp") ? " (udp)" : "");
	}
}

static void print_http_rules(json_t *rules)
{
	char b1[256], b2[512], b3[64], b4[1024], b5[256], to[CFG_PATH_MAX + 16], fl[128];
	json_t *r, *f;
	size_t i, k;

	printf("%-16s %-28s %-10s %-24s %s\n", "NAME", "DOMAIN", "STATE", "TO", "FLAGS");
	json_array_foreach(rules, i, r)
	{
		fl[0] = 0;
		json_array_foreach(json_object_get(r, "flags"), k, f)
		{
			const char *n = json_string_value(f);

			if (n && strlen(fl) + strlen(n) + 2 < sizeof(fl))
				snprintf(fl + strlen(fl), sizeof(fl) - strlen(fl), "%s%s",
					 fl[0] ? "," : "", n);
		}
		if (msg_str(r, "webroot"))
			snprintf(to, sizeof(to), "webroot:%s", msg_str(r, "webroot"));
		else
			snprintf(to, sizeof(to), "%s", msg_str(r, "to") ?: "-");
		printf(
		    "%-16s %-28s %-10s %-24s %s\n", log_esc_str(msg_str(r, "name"), b1, sizeof(b1)),
		    log_esc_str(msg_str(r, "domain"), b2, sizeof(b2)),
		    log_esc_str(msg_str(r, "state") ?: "saved", b3, sizeof(b3)),
		    log_esc_str(to, b4, sizeof(b4)), fl[0] ? log_esc_str(fl, b5, sizeof(b5)) : "-");
		if (msg_str(r, "reason"))
			printf("  refused: %s\n",
			       log_esc_str(msg_str(r, "reason"), b4, sizeof(b4)));
	}
}

/*
 * Prints tcp (TCP rules as the running client or the config lists them) and
 * http (HTTP rules), as kind asks. JSON: a TCP rule keeps the shape it
 * always had (no "type": scripts read it), an HTTP rule has "type": "http".
 */
static void print_rules(struct opts *o, json_t *tcp, json_t *http, enum ls_kind kind)
{
	json_t *all;

	if (o->json) {
		if (kind == LS_TCP) {
			print_json(tcp);
			return;
		}
		if (kind == LS_HTTP) {
			print_json(http);
			return;
		}
		/* TCP rules keep the shape they always had; HTTP rules say "type": "http" */
		all = json_deep_copy(tcp);
		json_array_extend(all, http);
		print_json(all);
		json_decref(all);
		return;
	}
	if (kind == LS_TCP || (kind == LS_ALL && (json_array_size(tcp) || !json_array_size(http))))
		print_tcp_rules(tcp);
	if (kind == LS_ALL && json_array_size(tcp) && json_array_size(http))
		printf("\n");
	if (kind == LS_HTTP || (kind == LS_ALL && json_array_size(http)))
		print_http_rules(http);
}

static int tunnel_ls(struct opts *o, int argc, char **argv, enum ls_kind kind)
{
	json_t *r, *rules, *http;

	if (argc > 1 && is_help(argv[1])) {
		puts(tunnel_help);
		return 0;
	}
	if (argc > 1)
		die_usage("tunnel ls: unexpected argument '%s'", argv[1]);
	load_cfg(o, true);
	r = local(o, json_pack("{s:s}", "type", "tcp_ls"));
	if (r) {
		http = json_object_get(r, "http_rules");
		if (!json_is_array(http))
			http = NULL; /* an older client */
		http = http ? json_incref(http) : json_array();
		print_rules(o, json_object_get(r, "rules"), http, kind);
		json_decref(http);
		json_decref(r);
		return 0;
	}
	if (!not_running(o))
		return 1;
	rules = json_array();
	http = json_array();
	for (unsigned i = 0; i < o->cfg.n_tcp; i++) {
		json_t *tr =
		    json_pack("{s:s, s:s, s:i, s:s}", "name", o->cfg.tcp[i].name, "to",
			      o->cfg.tcp[i].to, "port", (int)o->cfg.tcp[i].port, "state", "saved");

		/* "transport" only for a UDP rule, as the running client says it */
		if (tr && o->cfg.tcp[i].udp)
			json_object_set_new(tr, "transport", json_string("udp"));
		json_array_append_new(rules, tr);
	}
	for (unsigned i = 0; i < o->cfg.n_http; i++)
		json_array_append_new(http,
				      client_http_rule_json(&o->cfg.http[i], 0, "saved", NULL));
	print_rules(o, rules, http, kind);
	json_decref(rules);
	json_decref(http);
	return 0;
}

static int tunnel_rm(struct opts *o, int argc, char **argv)
{
	const char *name;
	json_t *r;
	char err[CFG_ERR_MAX], b[256];
	unsigned i;

	if (argc > 1 && is_help(argv[1])) {
		puts(tunnel_help);
		return 0;
	}
	if (argc != 2)
		die_usage("tunnel rm needs one rule NAME");
	name = argv[1];
	load_cfg(o, true);
	r = local(o, json_pack("{s:s, s:s}", "type", "tcp_rm", "name", name));
	if (r) {
		bool ok = json_is_true(json_object_get(r, "ok"));

		if (!ok)
			say_err("%s", msg_str(r, "error") ?: "refused");
		else if (!o->json)
			printf("removed %s\n", log_esc_str(name, b, sizeof(b)));
		json_decref(r);
		return ok ? 0 : 1;
	}
	if (!not_running(o))
		return 1;
	for (i = 0; i < o->cfg.n_tcp; i++)
		if (!strcmp(o->cfg.tcp[i].name, name))
			break;
	if (i < o->cfg.n_tcp) {
		o->cfg.tcp[i] = o->cfg.tcp[--o->cfg.n_tcp];
	} else {
		for (i = 0; i < o->cfg.n_http; i++)
			if (!strcmp(o->cfg.http[i].name, name))
				break;
		if (i == o->cfg.n_http) {
			say_err("no rule named %s", name);
			return 1;
		}
		/* the order of the others is kept: it is the order of the file */
		memmove(&o->cfg.http[i], &o->cfg.http[i + 1],
			(o->cfg.n_http - i - 1) * sizeof(o->cfg.http[0]));
		o->cfg.n_http--;
	}
	if (cfg_client_save(&o->cfg, err, sizeof(err)) < 0) {
		say_err("%s", err);
		return 1;
	}
	if (!o->json)
		printf("removed %s (from the config; nave is not running)\n",
		       log_esc_str(name, b, sizeof(b)));
	return 0;
}

/* True when a TCP or HTTP rule of the config has this name (case-insensitive, as INI sections). */
static bool rule_name_used(const struct cfg_client *c, const char *name)
{
	for (unsigned j = 0; j < c->n_tcp; j++)
		if (!strcasecmp(c->tcp[j].name, name))
			return true;
	for (unsigned j = 0; j < c->n_http; j++)
		if (!strcasecmp(c->http[j].name, name))
			return true;
	return false;
}

/* A public port: 0 (any) .. 65535, decimal digits only. -1 if it is not. */
static long parse_port(const char *s)
{
	long v = 0;

	if (!*s || strlen(s) > 5)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v <= 65535 ? v : -1;
}

/* tcp add, and udp add (udp: no --proxy-protocol) */
static int tcp_add(struct opts *o, int argc, char **argv, bool udp)
{
	const char *cmd = udp ? "tunnel udp add" : "tunnel tcp add";
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
	char nbuf[64], host[256], err[CFG_ERR_MAX], b[1024];
	uint16_t hp;
	int c, proxy = 0;
	json_t *r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			port = parse_port(optarg);
			if (port < 0)
				die_usage("bad --port '%s' (0..65535; 0 = any)", optarg);
			break;
		case 't':
			to = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'P':
			if (udp)
				die_usage("%s: --proxy-protocol is not for a UDP rule", cmd);
			pp = optarg;
			break;
		case 'h':
			if (udp) {
				printf(
				    "usage: " UDP_ADD_USAGE "\n"
				    "Exposes the UDP service at HOST:PORT on a public UDP port of "
				    "the server and prints the port.\n\nOptions:\n" UDP_ADD_OPTIONS
				    "\n");
				return 0;
			}
			printf("usage: " TCP_ADD_USAGE "\n"
			       "Exposes HOST:PORT on a public TCP port of the server and prints "
			       "the port.\n\nOptions:\n" TCP_ADD_OPTIONS "\n");
			return 0;
		default:
			bad_option(cmd, c, argv);
		}
	}
	if (optind < argc)
		die_usage("%s: unexpected argument '%s'", cmd, argv[optind]);
	if (!to)
		die_usage("%s needs --to HOST:PORT", cmd);
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

			snprintf(nbuf, sizeof(nbuf), "%s%u", udp ? "udp" : "tcp", i);
			used = rule_name_used(&o->cfg, nbuf);
			if (!used)
				break;
		}
		name = nbuf;
	}
	if (!cfg_valid_name(name))
		die_usage("bad --name '%s' (letters, digits, - and _)", name);
	r = local(o, json_pack("{s:s, s:s, s:s, s:i, s:i, s:s}", "type", "tcp_add", "name", name,
			       "to", to, "port", (int)port, "proxy_protocol", proxy, "transport",
			       udp ? "udp" : "tcp"));
	if (r) {
		bool ok = json_is_true(json_object_get(r, "ok"));

		if (!ok) {
			say_err("%s", msg_str(r, "error") ?: "refused");
		} else if (o->json) {
			json_object_del(r, "type");
			print_json(r);
		} else if (msg_int(r, "port", 0)) {
			printf("%lld\n", msg_int(r, "port", 0));
		} else {
			printf("saved %s: %s\n", name,
			       log_esc_str(msg_str(r, "note") ?: "", b, sizeof(b)));
		}
		json_decref(r);
		return ok ? 0 : 1;
	}
	if (!not_running(o))
		return 1;
	if (rule_name_used(&o->cfg, name)) {
		say_err("a rule named %s exists", name);
		return 1;
	}
	if (o->cfg.n_tcp + o->cfg.n_http >= CFG_MAX_RULES) {
		say_err("too many rules");
		return 1;
	}
	struct cfg_tcp_rule *t = &o->cfg.tcp[o->cfg.n_tcp++];
	memset(t, 0, sizeof(*t));
	str_copy(t->name, sizeof(t->name), name);
	str_copy(t->to, sizeof(t->to), to);
	t->port = (uint16_t)port;
	t->proxy_protocol = proxy;
	t->udp = udp;
	if (cfg_client_save(&o->cfg, err, sizeof(err)) < 0) {
		say_err("%s", err);
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

/*
 * The default name of an HTTP rule: the domain with '.' as '-' ("*." as
 * "wildcard-"), cut to fit, then "-2", "-3"... until no rule has it.
 */
static void http_default_name(const struct cfg_client *c, const char *domain, char *out, size_t len)
{
	char base[LINK_RULE_MAX + 1];
	size_t n = 0;

	if (domain_is_wildcard(domain)) {
		n = (size_t)snprintf(base, sizeof(base), "wildcard-");
		domain += 2;
	}
	for (; *domain && n + 1 < sizeof(base) - 4; domain++)
		base[n++] = *domain == '.' ? '-' : *domain;
	while (n && base[n - 1] == '-')
		n--;
	base[n] = 0;
	snprintf(out, len, "%s", base);
	for (unsigned i = 2; rule_name_used(c, out); i++)
		if (snprintf(out, len, "%s-%u", base, i) >= (int)len)
			break; /* base leaves room for the suffix: never */
}

/* --basic-auth USER:PASS into "USER:HASH" (out, CFG_STR_MAX); exit 2 when it is not one. */
static void basic_auth_hash(char *arg, char *out, size_t outlen)
{
	char *colon = strchr(arg, ':'), hash[PASSWD_STR_MAX];
	size_t ul, pl;

	if (!colon)
		die_usage("bad --basic-auth (want USER:PASS)");
	ul = (size_t)(colon - arg);
	pl = strlen(colon + 1);
	if (ul < 1 || ul > LINK_AUTH_USER_MAX)
		die_usage("bad --basic-auth: the user is 1-%d characters", LINK_AUTH_USER_MAX);
	for (size_t i = 0; i < ul; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
			    arg[i]))
			die_usage("bad --basic-auth: the user may only hold letters, digits, '.', "
				  "'_' and '-'");
	if (pl < 1 || pl > PASSWD_PASS_MAX)
		die_usage("bad --basic-auth: the password is 1-%d bytes", PASSWD_PASS_MAX);
	for (size_t i = 0; i < pl; i++)
		if ((unsigned char)colon[1 + i] < 0x20 || colon[1 + i] == 0x7f)
			die_usage("bad --basic-auth: the password has control characters");
	if (passwd_hash(colon + 1, pl, hash, sizeof(hash)) < 0) {
		say_err("cannot hash the password");
		exit(1);
	}
	/* the clear password leaves this process's memory (and ps, where that works) */
	explicit_bzero(colon + 1, pl);
	if (snprintf(out, outlen, "%.*s:%s", (int)ul, arg, hash) >= (int)outlen ||
	    strlen(out) > LINK_AUTH_MAX || !cfg_valid_basic_auth(out)) {
		say_err("internal: the basic-auth hash does not fit");
		exit(1);
	}
}

static int http_add(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"domain", required_argument, NULL, 'd'},
	    {"to", required_argument, NULL, 't'},
	    {"webroot", required_argument, NULL, 'w'},
	    {"tls-passthrough", no_argument, NULL, 'T'},
	    {"redirect-https", no_argument, NULL, 'R'},
	    {"host-header", required_argument, NULL, 'H'},
	    {"basic-auth", required_argument, NULL, 'A'},
	    {"proxy-protocol", required_argument, NULL, 'P'},
	    {"name", required_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *domain = NULL, *to = NULL, *webroot = NULL, *hh = NULL, *name = NULL;
	char *auth = NULL;
	char host[256], err[CFG_ERR_MAX], b[1024], b2[512];
	struct cfg_http_rule h;
	bool passthrough = false, redirect = false;
	uint16_t hp;
	int c;
	json_t *req, *r;

	memset(&h, 0, sizeof(h));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 'd':
			domain = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'w':
			webroot = optarg;
			break;
		case 'T':
			passthrough = true;
			break;
		case 'R':
			redirect = true;
			break;
		case 'H':
			hh = optarg;
			break;
		case 'A':
			auth = optarg;
			break;
		case 'P':
			if (!strcmp(optarg, "v1"))
				h.proxy_protocol = 1;
			else if (!strcmp(optarg, "v2"))
				h.proxy_protocol = 2;
			else
				die_usage("bad --proxy-protocol '%s' (v1 or v2)", optarg);
			break;
		case 'n':
			name = optarg;
			break;
		case 'h':
			printf("usage: " HTTP_ADD_USAGE "\n"
			       "Routes a domain of the server's HTTP/HTTPS edge to a local HTTP "
			       "service or\nto files served by nave.\n\nOptions:\n" HTTP_ADD_OPTIONS
			       "\n");
			return 0;
		default:
			bad_option("tunnel http add", c, argv);
		}
	}
	if (optind < argc)
		die_usage("tunnel http add: unexpected argument '%s'", argv[optind]);
	if (!domain)
		die_usage("tunnel http add needs --domain D");
	if (!domain_norm(domain, strlen(domain), h.domain, true))
		die_usage("bad --domain '%s' (a domain name or a wildcard *.DOMAIN)", domain);
	if (!to == !webroot)
		die_usage("tunnel http add needs exactly one of --to HOST:PORT and --webroot DIR");
	if (to) {
		if (cfg_parse_hostport(to, host, sizeof(host), &hp) < 0 || hp == 0)
			die_usage("bad --to '%s' (want HOST:PORT)", to);
		str_copy(h.to, sizeof(h.to), to);
	} else {
		char real[CFG_PATH_MAX + 4096];
		struct stat st;

		if (!realpath(webroot, real) || stat(real, &st) < 0)
			die_usage("bad --webroot '%s': %s", webroot, strerror(errno));
		if (!S_ISDIR(st.st_mode))
			die_usage("bad --webroot '%s': not a directory", webroot);
		if (!str_copy(h.webroot, sizeof(h.webroot), real))
			die_usage("bad --webroot '%s': the path is too long", webroot);
	}
	if (passthrough && (webroot || auth || hh || redirect))
		die_usage("--tls-passthrough goes with --to only: --webroot, --basic-auth, "
			  "--host-header and --redirect-https need the edge to see plain HTTP");
	if (hh && webroot)
		die_usage("--host-header goes with --to only: the webroot is chosen by the "
			  "request's Host");
	if (h.proxy_protocol && webroot)
		die_usage("--proxy-protocol goes with --to only: the webroot server takes no "
			  "PROXY header");
	if (hh && !cfg_valid_host_header(hh))
		die_usage("bad --host-header '%s' (1-%d of letters, digits, '.', ':', '_' and '-')",
			  hh, LINK_HOST_HEADER_MAX);
	if (hh)
		str_copy(h.host_header, sizeof(h.host_header), hh);
	h.tls_passthrough = passthrough;
	h.redirect_https = redirect;
	if (name && !cfg_valid_name(name))
		die_usage("bad --name '%s' (letters, digits, - and _)", name);
	if (auth)
		basic_auth_hash(auth, h.basic_auth, sizeof(h.basic_auth));
	load_cfg(o, true);
	if (name)
		str_copy(h.name, sizeof(h.name), name);
	else
		http_default_name(&o->cfg, h.domain, h.name, sizeof(h.name));
	req = json_pack("{s:s, s:s, s:s, s:b, s:b}", "type", "http_add", "name", h.name, "domain",
			h.domain, "tls_passthrough", h.tls_passthrough, "redirect_https",
			h.redirect_https);
	json_object_set_new(req, h.to[0] ? "to" : "webroot",
			    json_string(h.to[0] ? h.to : h.webroot));
	if (h.host_header[0])
		json_object_set_new(req, "host_header", json_string(h.host_header));
	if (h.basic_auth[0])
		json_object_set_new(req, "basic_auth", json_string(h.basic_auth));
	if (h.proxy_protocol)
		json_object_set_new(req, "proxy_protocol", json_integer(h.proxy_protocol));
	r = local(o, req);
	if (r) {
		bool ok = json_is_true(json_object_get(r, "ok"));

		if (!ok) {
			say_err("%s", msg_str(r, "error") ?: "refused");
		} else if (o->json) {
			json_object_del(r, "type");
			print_json(r);
		} else if (msg_int(r, "route", 0)) {
			printf("%s: %s granted\n", log_esc_str(h.name, b2, sizeof(b2)),
			       log_esc_str(h.domain, b, sizeof(b)));
		} else {
			printf("saved %s: %s\n", log_esc_str(h.name, b2, sizeof(b2)),
			       log_esc_str(msg_str(r, "note") ?: "", b, sizeof(b)));
		}
		json_decref(r);
		return ok ? 0 : 1;
	}
	if (!not_running(o))
		return 1;
	if (rule_name_used(&o->cfg, h.name)) {
		say_err("a rule named %s exists", h.name);
		return 1;
	}
	for (unsigned j = 0; j < o->cfg.n_http; j++)
		if (!strcmp(o->cfg.http[j].domain, h.domain)) {
			say_err("the rule %s has the domain %s already", o->cfg.http[j].name,
				h.domain);
			return 1;
		}
	if (o->cfg.n_tcp + o->cfg.n_http >= CFG_MAX_RULES) {
		say_err("too many rules (at most %d, TCP and HTTP together)", CFG_MAX_RULES);
		return 1;
	}
	o->cfg.http[o->cfg.n_http++] = h;
	if (cfg_client_save(&o->cfg, err, sizeof(err)) < 0) {
		say_err("%s", err);
		return 1;
	}
	if (o->json) {
		json_t *j = json_pack("{s:b, s:s, s:s, s:s}", "ok", 1, "name", h.name, "domain",
				      h.domain, "note", "saved; applied at the next nave start");

		print_json(j);
		json_decref(j);
	} else {
		printf("saved %s (nave is not running: the domain is claimed at the next nave "
		       "start)\n",
		       log_esc_str(h.name, b2, sizeof(b2)));
	}
	return 0;
}

static int cmd_tunnel(struct opts *o, int argc, char **argv)
{
	if (argc < 2)
		die_usage("tunnel needs a command: tcp add, udp add, http add, ls or rm");
	if (is_help(argv[1])) {
		puts(tunnel_help);
		return 0;
	}
	if (!strcmp(argv[1], "ls"))
		return tunnel_ls(o, argc - 1, argv + 1, LS_ALL);
	if (!strcmp(argv[1], "rm"))
		return tunnel_rm(o, argc - 1, argv + 1);
	if (!strcmp(argv[1], "tcp")) {
		if (argc < 3)
			die_usage("tunnel tcp needs a command: add, ls or rm");
		if (is_help(argv[2])) {
			puts(tunnel_help);
			return 0;
		}
		if (!strcmp(argv[2], "add"))
			return tcp_add(o, argc - 2, argv + 2, false);
		if (!strcmp(argv[2], "ls"))
			return tunnel_ls(o, argc - 2, argv + 2, LS_TCP);
		if (!strcmp(argv[2], "rm"))
			return tunnel_rm(o, argc - 2, argv + 2);
		die_usage("unknown tunnel command 'tcp %s'", argv[2]);
	}
	if (!strcmp(argv[1], "udp")) {
		if (argc < 3)
			die_usage("tunnel udp needs a command: add, ls or rm");
		if (is_help(argv[2])) {
			puts(tunnel_help);
			return 0;
		}
		if (!strcmp(argv[2], "add"))
			return tcp_add(o, argc - 2, argv + 2, true);
		if (!strcmp(argv[2], "ls"))
			return tunnel_ls(o, argc - 2, argv + 2, LS_TCP);
		if (!strcmp(argv[2], "rm"))
			return tunnel_rm(o, argc - 2, argv + 2);
		die_usage("unknown tunnel command 'udp %s'", argv[2]);
	}
	if (!strcmp(argv[1], "http")) {
		if (argc < 3)
			die_usage("tunnel http needs a command: add, ls or rm");
		if (is_help(argv[2])) {
			puts(tunnel_help);
			return 0;
		}
		if (!strcmp(argv[2], "add"))
			return http_add(o, argc - 2, argv + 2);
		if (!strcmp(argv[2], "ls"))
			return tunnel_ls(o, argc - 2, argv + 2, LS_HTTP);
		if (!strcmp(argv[2], "rm"))
			return tunnel_rm(o, argc - 2, argv + 2);
		die_usage("unknown tunnel command 'http %s'", argv[2]);
	}
	die_usage("unknown tunnel command '%s'", argv[1]);
}

/* ---------- port maps and SOCKS proxies ---------- */

#define MAP_USAGE                                                                                  \
	"nave ports map LOCALPORT [--transport tcp|udp] --destination HOST --port N\n"             \
	"                      [--bind ADDR [--public]] [--config FILE] [--json]"

static const char ports_help[] =
    "usage: " MAP_USAGE "\n"
    "       nave ports ls [--config FILE] [--json]\n"
    "       nave ports rm LOCALPORT [--config FILE] [--json]\n"
    "A port map carries the connections to a local port through the server to\n"
    "HOST:N: a service of another tunnel (HOST its tunnel id or group id, N one of\n"
    "its public TCP ports), an HTTP rule's domain, or an external name or address\n"
    "the server's [socks] allow list lets through. The server's mesh policy\n"
    "decides. With --transport udp the map carries datagrams: each local source\n"
    "address and port is a flow to one of HOST's UDP ports (or an external UDP\n"
    "service), ended after 60 s without a datagram. While nave start runs a\n"
    "change applies at once (and is saved); else it is saved for the next start.\n"
    "\n"
    "Options of map:\n"
    "  --transport T       tcp (the default) or udp\n"
    "  --destination HOST  a tunnel id, group id, domain name or IP address\n"
    "  --port N            the destination's port (1-65535)\n"
    "  --bind ADDR         the local address to listen on (default 127.0.0.1)\n"
    "  --public            needed with a --bind address other than loopback: others\n"
    "                      on that network reach the destination through the map\n"
    "                      (saved as public = yes)\n"
    "  --config FILE       the client config\n"
    "  --json              print the result as JSON\n"
    "  -h, --help          this help";

static const char proxies_help[] =
    "usage: nave proxies socks listen PORT [--bind ADDR] [--auth USER:PASS]\n"
    "                                [--config FILE] [--json]\n"
    "       nave proxies socks rm PORT [--config FILE] [--json]\n"
    "       nave proxies ls [--config FILE] [--json]\n"
    "A SOCKS5 proxy on a local port: each CONNECT goes through the server to the\n"
    "host and port it names (a tunnel id or group id and one of its ports, a\n"
    "domain of the server's HTTP routes, or an external destination the server's\n"
    "[socks] allow list lets through), as a port map's connections do. A UDP\n"
    "ASSOCIATE gets a UDP relay address; its datagrams go to a tunnel's UDP port\n"
    "or an allowed external UDP service, as a UDP port map's do.\n"
    "\n"
    "Options of socks listen:\n"
    "  --bind ADDR       the local address to listen on (default 127.0.0.1; another\n"
    "                    than loopback needs --auth)\n"
    "  --auth USER:PASS  ask for this user and password (RFC 1929); only a hash\n"
    "                    (scrypt) is kept. It shows in ps while nave runs\n"
    "  --config FILE     the client config\n"
    "  --json            print the result as JSON\n"
    "  -h, --help        this help";

/* A local or destination port: 1..65535 in decimal, or exit 2 naming what. */
static uint16_t port_arg(const char *s, const char *what)
{
	long v = parse_port(s);

	if (v < 1)
		die_usage("bad %s '%s' (1-65535)", what, s);
	return (uint16_t)v;
}

/* Whether a port map or SOCKS proxy of the config has local port p. */
static const char *lsn_used(const struct cfg_client *c, uint16_t p)
{
	for (unsigned i = 0; i < c->n_maps; i++)
		if (c->maps[i].local == p)
			return "port map";
	for (unsigned i = 0; i < c->n_socks; i++)
		if (c->socks[i].port == p)
			return "SOCKS proxy";
	return NULL;
}

/* The answer of a running client to an add or rm: printed; the exit status. */
static int lsn_answer(struct opts *o, json_t *r, const char *done)
{
	bool ok = json_is_true(json_object_get(r, "ok"));
	char b[512];

	if (!ok) {
		say_err("%s", msg_str(r, "error") ?: "refused");
	} else if (o->json) {
		json_object_del(r, "type");
		print_json(r);
	} else {
		printf("%s\n", done);
		if (msg_str(r, "note"))
			printf("note: %s\n", log_esc_str(msg_str(r, "note"), b, sizeof(b)));
	}
	json_decref(r);
	return ok ? 0 : 1;
}

/* After a stopped client's config changed: saved, printed. */
static int lsn_saved(struct opts *o, const char *done)
{
	char err[CFG_ERR_MAX];

	if (cfg_client_save(&o->cfg, err, sizeof(err)) < 0) {
		say_err("%s", err);
		return 1;
	}
	if (o->json) {
		json_t *j = json_pack("{s:b, s:s}", "ok", 1, "note",
				      "saved; applied at the next nave start");

		print_json(j);
		json_decref(j);
	} else {
		printf("%s (saved; nave is not running: applied at the next nave start)\n", done);
	}
	return 0;
}

static int ports_map(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"transport", required_argument, NULL, 'T'},
	    {"destination", required_argument, NULL, 'd'},
	    {"port", required_argument, NULL, 'p'},
	    {"bind", required_argument, NULL, 'b'},
	    {"public", no_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *dest = NULL, *bind = "127.0.0.1", *used;
	bool public = false, udp = false;
	char err[256], done[CFG_DEST_MAX + 128], b[CFG_DEST_MAX * 4 + 8];
	uint16_t lport, port = 0;
	int c, fd;
	json_t *r;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 'T':
			if (strcmp(optarg, "tcp") && strcmp(optarg, "udp"))
				die_usage("bad --transport '%s' (tcp or udp)", optarg);
			udp = !strcmp(optarg, "udp");
			break;
		case 'd':
			dest = optarg;
			break;
		case 'p':
			port = port_arg(optarg, "--port");
			break;
		case 'b':
			bind = optarg;
			break;
		case 'P':
			public
			= true;
			break;
		case 'h':
			puts(ports_help);
			return 0;
		default:
			bad_option("ports map", c, argv);
		}
	}
	if (optind >= argc)
		die_usage("ports map needs a LOCALPORT");
	lport = port_arg(argv[optind], "LOCALPORT");
	if (optind + 1 < argc)
		die_usage("ports map: unexpected argument '%s'", argv[optind + 1]);
	if (!dest)
		die_usage("ports map needs --destination HOST");
	if (!cfg_valid_destination(dest))
		die_usage("bad --destination '%s' (a tunnel id, group id, domain name or IP "
			  "address)",
			  dest);
	if (!port)
		die_usage("ports map needs --port N (the destination's port)");
	if (!cfg_valid_bind(bind))
		die_usage("bad --bind '%s' (an IPv4 or IPv6 address)", bind);
	/* another address than loopback lets the local network through the map: said so */
	if (!public && !cfg_bind_loopback(bind)) {
		say_err("--bind %s is not a loopback address: the map would let others on that "
			"network reach %s; add --public to mean it",
			bind, log_esc_str(dest, b, sizeof(b)));
		return 1;
	}
	snprintf(done, sizeof(done), "%sport map %u -> %s:%u on %s", udp ? "udp " : "", lport,
		 log_esc_str(dest, b, sizeof(b)), port, bind);
	load_cfg(o, true);
	r = local(o, json_pack("{s:s, s:i, s:s, s:s, s:i, s:s, s:b}", "type", "map_add", "local",
			       lport, "transport", udp ? "udp" : "tcp", "destination", dest, "port",
			       port, "bind", bind, "public", public));
	if (r)
		return lsn_answer(o, r, done);
	if (!not_running(o))
		return 1;
	if ((used = lsn_used(&o->cfg, lport))) {
		say_err("local port %u is a %s already (remove it first)", lport, used);
		return 1;
	}
	if (o->cfg.n_maps >= CFG_MAX_MAPS) {
		say_err("too many port maps (at most %d)", CFG_MAX_MAPS);
		return 1;
	}
	/* a port another program holds is refused now, not at the next start */
	fd = client_listen_local(bind, lport, false, udp, err, sizeof(err));
	if (fd < 0) {
		say_err("%s", err);
		return 1;
	}
	close(fd);
	struct cfg_portmap *m = &o->cfg.maps[o->cfg.n_maps++];
	memset(m, 0, sizeof(*m));
	m->local = lport;
	m->transport = udp ? CFG_TRANSPORT_UDP : CFG_TRANSPORT_TCP;
	m->port = port;
	str_copy(m->destination, sizeof(m->destination), dest);
	str_copy(m->bind, sizeof(m->bind), bind);
	m->public = public;
	return lsn_saved(o, done);
}

static void print_maps(json_t *maps)
{
	char b1[CFG_DEST_MAX * 4 + 8], b2[128], b3[64], b4[512];
	json_t *m;
	size_t i;

	printf("%-7s %-5s %-28s %-6s %-16s %s\n", "LOCAL", "PROTO", "DESTINATION", "PORT", "BIND",
	       "STATE");
	json_array_foreach(maps, i, m)
	{
		printf("%-7lld %-5s %-28s %-6lld %-16s %s\n", msg_int(m, "local", 0),
		       !strcmp(msg_str(m, "transport") ?: "tcp", "udp") ? "udp" : "tcp",
		       log_esc_str(msg_str(m, "destination") ?: "-", b1, sizeof(b1)),
		       msg_int(m, "port", 0),
		       log_esc_str(msg_str(m, "bind") ?: "-", b2, sizeof(b2)),
		       log_esc_str(msg_str(m, "state") ?: "saved", b3, sizeof(b3)));
		if (msg_str(m, "error"))
			printf("  error: %s\n", log_esc_str(msg_str(m, "error"), b4, sizeof(b4)));
	}
}

static void print_socks(json_t *socks)
{
	char b1[128], b2[64], b3[512], b4[128];
	json_t *k;
	size_t i;

	printf("%-7s %-16s %-12s %s\n", "PORT", "BIND", "AUTH", "STATE");
	json_array_foreach(socks, i, k)
	{
		printf("%-7lld %-16s %-12s %s\n", msg_int(k, "port", 0),
		       log_esc_str(msg_str(k, "bind") ?: "-", b1, sizeof(b1)),
		       msg_str(k, "username") ? log_esc_str(msg_str(k, "username"), b4, sizeof(b4))
					      : "none",
		       log_esc_str(msg_str(k, "state") ?: "saved", b2, sizeof(b2)));
		if (msg_str(k, "error"))
			printf("  error: %s\n", log_esc_str(msg_str(k, "error"), b3, sizeof(b3)));
	}
}

/* ports ls, proxies ls: the running client's listeners, else the config's. */
static int lsn_ls(struct opts *o, int argc, char **argv, bool socks)
{
	json_t *r, *a;

	if (argc > 1 && is_help(argv[1])) {
		puts(socks ? proxies_help : ports_help);
		return 0;
	}
	if (argc > 1)
		die_usage("%s ls: unexpected argument '%s'", socks ? "proxies" : "ports", argv[1]);
	load_cfg(o, true);
	r = local(o, json_pack("{s:s}", "type", "map_ls"));
	if (!r && !not_running(o))
		return 1;
	if (r) {
		a = json_object_get(r, socks ? "socks" : "maps");
		a = json_is_array(a) ? json_incref(a) : json_array(); /* an older client */
		json_decref(r);
	} else {
		a = client_listeners_json(&o->cfg, socks);
	}
	if (o->json)
		print_json(a);
	else if (socks)
		print_socks(a);
	else
		print_maps(a);
	json_decref(a);
	return 0;
}

/* ports rm LOCALPORT, proxies socks rm PORT */
static int lsn_rm(struct opts *o, int argc, char **argv, bool socks)
{
	const char *what = socks ? "SOCKS proxy" : "port map";
	char done[96];
	uint16_t port;
	unsigned i;
	json_t *r;

	if (argc > 1 && is_help(argv[1])) {
		puts(socks ? proxies_help : ports_help);
		return 0;
	}
	if (argc != 2)
		die_usage("%s needs one %s", socks ? "proxies socks rm" : "ports rm",
			  socks ? "PORT" : "LOCALPORT");
	port = port_arg(argv[1], socks ? "PORT" : "LOCALPORT");
	snprintf(done, sizeof(done), "removed the %s on local port %u", what, port);
	load_cfg(o, true);
	r = local(o, socks ? json_pack("{s:s, s:i}", "type", "socks_rm", "port", port)
			   : json_pack("{s:s, s:i}", "type", "map_rm", "local", port));
	if (r)
		return lsn_answer(o, r, done);
	if (!not_running(o))
		return 1;
	for (i = 0; i < (socks ? o->cfg.n_socks : o->cfg.n_maps); i++)
		if ((socks ? o->cfg.socks[i].port : o->cfg.maps[i].local) == port)
			break;
	if (i == (socks ? o->cfg.n_socks : o->cfg.n_maps)) {
		say_err("no %s on local port %u", what, port);
		return 1;
	}
	if (socks)
		memmove(&o->cfg.socks[i], &o->cfg.socks[i + 1],
			(o->cfg.n_socks-- - i - 1) * sizeof(o->cfg.socks[0]));
	else
		memmove(&o->cfg.maps[i], &o->cfg.maps[i + 1],
			(o->cfg.n_maps-- - i - 1) * sizeof(o->cfg.maps[0]));
	return lsn_saved(o, done);
}

/* --auth USER:PASS into user and its password hash; exit 2 when it is not one. */
static void socks_auth(char *arg, char *user, size_t ulen, char *hash, size_t hlen)
{
	char *colon = strchr(arg, ':');
	size_t ul, pl;

	if (!colon)
		die_usage("bad --auth (want USER:PASS)");
	ul = (size_t)(colon - arg);
	pl = strlen(colon + 1);
	if (ul < 1 || ul > CFG_USER_MAX)
		die_usage("bad --auth: the user is 1-%d characters", CFG_USER_MAX);
	for (size_t i = 0; i < ul; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
			    arg[i]))
			die_usage("bad --auth: the user may only hold letters, digits, '.', '_' "
				  "and '-'");
	/* RFC 1929 carries at most 255 bytes; nave's hashes take PASSWD_PASS_MAX */
	if (pl < 1 || pl > PASSWD_PASS_MAX)
		die_usage("bad --auth: the password is 1-%d bytes", PASSWD_PASS_MAX);
	for (size_t i = 0; i < pl; i++)
		if ((unsigned char)colon[1 + i] < 0x20 || colon[1 + i] == 0x7f)
			die_usage("bad --auth: the password has control characters");
	if (passwd_hash(colon + 1, pl, hash, hlen) < 0) {
		say_err("cannot hash the password");
		exit(1);
	}
	explicit_bzero(colon + 1, pl);
	snprintf(user, ulen, "%.*s", (int)ul, arg);
}

static int socks_listen(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"bind", required_argument, NULL, 'b'},
	    {"auth", required_argument, NULL, 'A'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *bind = "127.0.0.1", *used, *why, *key;
	char *auth = NULL, err[256], done[128];
	struct cfg_socks k;
	int c, fd;
	json_t *req, *r;

	memset(&k, 0, sizeof(k));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 'b':
			bind = optarg;
			break;
		case 'A':
			auth = optarg;
			break;
		case 'h':
			puts(proxies_help);
			return 0;
		default:
			bad_option("proxies socks listen", c, argv);
		}
	}
	if (optind >= argc)
		die_usage("proxies socks listen needs a PORT");
	k.port = port_arg(argv[optind], "PORT");
	if (optind + 1 < argc)
		die_usage("proxies socks listen: unexpected argument '%s'", argv[optind + 1]);
	if (!cfg_valid_bind(bind))
		die_usage("bad --bind '%s' (an IPv4 or IPv6 address)", bind);
	str_copy(k.bind, sizeof(k.bind), bind);
	if (!auth && !cfg_bind_loopback(bind)) {
		/* refused (1), as the running client and the config refuse it */
		say_err("--bind %s is not a loopback address: a SOCKS proxy others can reach "
			"needs --auth USER:PASS",
			bind);
		return 1;
	}
	if (auth)
		socks_auth(auth, k.username, sizeof(k.username), k.password_hash,
			   sizeof(k.password_hash));
	why = cfg_socks_check(&k, &key);
	if (why) {
		say_err("%s: %s", key, why);
		return 1;
	}
	snprintf(done, sizeof(done), "SOCKS5 proxy on %s port %u%s", bind, k.port,
		 auth ? " (with a user and password)" : "");
	load_cfg(o, true);
	req = json_pack("{s:s, s:i, s:s}", "type", "socks_add", "port", k.port, "bind", bind);
	if (k.username[0]) {
		json_object_set_new(req, "username", json_string(k.username));
		json_object_set_new(req, "password_hash", json_string(k.password_hash));
	}
	r = local(o, req);
	if (r)
		return lsn_answer(o, r, done);
	if (!not_running(o))
		return 1;
	if ((used = lsn_used(&o->cfg, k.port))) {
		say_err("local port %u is a %s already (remove it first)", k.port, used);
		return 1;
	}
	if (o->cfg.n_socks >= CFG_MAX_SOCKS) {
		say_err("too many SOCKS proxies (at most %d)", CFG_MAX_SOCKS);
		return 1;
	}
	fd = client_listen_local(bind, k.port, false, false, err, sizeof(err));
	if (fd < 0) {
		say_err("%s", err);
		return 1;
	}
	close(fd);
	o->cfg.socks[o->cfg.n_socks++] = k;
	return lsn_saved(o, done);
}

static int cmd_ports(struct opts *o, int argc, char **argv)
{
	if (argc < 2)
		die_usage("ports needs a command: map, ls or rm");
	if (is_help(argv[1])) {
		puts(ports_help);
		return 0;
	}
	if (!strcmp(argv[1], "map"))
		return ports_map(o, argc - 1, argv + 1);
	if (!strcmp(argv[1], "ls"))
		return lsn_ls(o, argc - 1, argv + 1, false);
	if (!strcmp(argv[1], "rm"))
		return lsn_rm(o, argc - 1, argv + 1, false);
	die_usage("unknown ports command '%s'", argv[1]);
}

static int cmd_proxies(struct opts *o, int argc, char **argv)
{
	if (argc < 2)
		die_usage("proxies needs a command: socks listen, socks rm or ls");
	if (is_help(argv[1])) {
		puts(proxies_help);
		return 0;
	}
	if (!strcmp(argv[1], "ls"))
		return lsn_ls(o, argc - 1, argv + 1, true);
	if (!strcmp(argv[1], "socks")) {
		if (argc < 3)
			die_usage("proxies socks needs a command: listen or rm");
		if (is_help(argv[2])) {
			puts(proxies_help);
			return 0;
		}
		if (!strcmp(argv[2], "listen"))
			return socks_listen(o, argc - 2, argv + 2);
		if (!strcmp(argv[2], "rm"))
			return lsn_rm(o, argc - 2, argv + 2, true);
		die_usage("unknown proxies command 'socks %s'", argv[2]);
	}
	die_usage("unknown proxies command '%s'", argv[1]);
}

/* ---------- support sessions ---------- */

static const char support_help[] =
    "usage: nave support request --allow NAME=HOST:PORT[,...] [--expires DURATION]\n"
    "                            [--reason TEXT] [--config FILE] [--json]\n"
    "       nave support ls [--config FILE] [--json]\n"
    "       nave support end ID [--config FILE] [--json]\n"
    "       nave support connect ID --psk KEY | --psk-file FILE --service NAME\n"
    "                            --to [ADDR:]PORT [--config FILE |\n"
    "                            --server HOST[:PORT] --fingerprint SHA256 | --ca FILE]\n"
    "Asks the server for a support session: a support person who gets its id and\n"
    "its pre-shared key from you may then reach the local services named by\n"
    "--allow (and only those) through the server, once an operator of the server\n"
    "approved it, until it expires or you end it. The key is made here and shown\n"
    "once; the server learns only the service names and a hash, never the key or\n"
    "where the services are. Sessions live in the running client's memory only: a\n"
    "restart of nave start forgets them (request again). Needs a running client.\n"
    "\n"
    "Options of request:\n"
    "  --allow LIST       1-8 services NAME=HOST:PORT separated by commas (NAME:\n"
    "                     1-31 of letters, digits, '_' and '-'; an IPv6 HOST in\n"
    "                     brackets), e.g. ssh=127.0.0.1:22,web=127.0.0.1:8080\n"
    "  --expires D        how long the session may be used: 1m to 7d (NUMBER with\n"
    "                     s, m, h or d; default 2h)\n"
    "  --reason TEXT      shown to the operator: at most 200 characters, no control\n"
    "                     characters\n"
    "  --config FILE      the client config\n"
    "  --json             print the result as JSON ({id, psk, expires_at, services})\n"
    "  -h, --help         this help\n"
    "\n"
    "ls shows the server's sessions of this tunnel (state, services, expiry, who\n"
    "approved) and, for the ones this client holds, where each service leads.\n"
    "end ends a session at once (every connection of it closes) and forgets its key.\n"
    "\n"
    "connect is the support person's end: it listens on PORT (ADDR 127.0.0.1 unless\n"
    "given; PORT 0: one the system picks, printed) and carries each connection\n"
    "there through the server to the service NAME of session ID, end to end\n"
    "encrypted with the session's pre-shared key. It runs in the foreground until\n"
    "Ctrl-C, needs no configured client (--server with --fingerprint or --ca), or\n"
    "takes server, ca and fingerprint from a client config (--config). The key:\n"
    "--psk KEY, --psk-file FILE (its first line; - is stdin) or the environment\n"
    "variable NAVE_SUPPORT_PSK (a key on the command line shows in ps). Exit status\n"
    "1 when the server refuses the first connection or the key is wrong.\n"
    "  --service NAME     the service to reach (the name the device gave it)\n"
    "  --to [ADDR:]PORT   where to listen, e.g. 2222 or 127.0.0.1:2222\n"
    "  --server HOST[:PORT]  the server (port 8443 when not given)\n"
    "  --fingerprint SHA256  the server certificate's SHA-256 fingerprint\n"
    "  --ca FILE          or the CA that signed it";

/* "90s", "30m", "2h", "7d" (or seconds alone): seconds, or -1. */
static long long parse_duration(const char *s)
{
	char *end;
	long long v, mul = 1;

	if (!s || *s < '0' || *s > '9' || strlen(s) > 12)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno)
		return -1;
	if (*end && end[1])
		return -1;
	switch (*end) {
	case 0:
	case 's':
		break;
	case 'm':
		mul = 60;
		break;
	case 'h':
		mul = 3600;
		break;
	case 'd':
		mul = 86400;
		break;
	default:
		return -1;
	}
	return v * mul;
}

/* A Unix time as "2026-12-02 17:40 UTC". */
static const char *utc_time(long long t, char *out, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(out, n, "%lld", t);
	return out;
}

/* The running client's answer, or exit 1 with the reason (not running, refused). */
static json_t *support_ask(struct opts *o, json_t *req)
{
	json_t *r;

	load_cfg(o, true);
	r = local(o, req);
	if (!r) {
		if (not_running(o))
			say_err("the client is not running: support sessions need a running "
				"tunnel");
		exit(1);
	}
	if (!json_is_true(json_object_get(r, "ok"))) {
		say_err("%s", msg_str(r, "error") ?: "refused");
		json_decref(r);
		exit(1);
	}
	json_object_del(r, "ok");
	json_object_del(r, "type");
	return r;
}

static int support_request(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"allow", required_argument, NULL, 'a'},
	    {"expires", required_argument, NULL, 'e'},
	    {"reason", required_argument, NULL, 'r'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *allow = NULL, *reason = NULL;
	long long expires = 7200;
	char err[SUP_ERR_MAX], b1[256], b2[64];
	struct sup_services svc;
	json_t *req, *r, *v;
	size_t i;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 'a':
			allow = optarg;
			break;
		case 'e':
			expires = parse_duration(optarg);
			if (expires < LINK_SUPPORT_EXPIRES_MIN ||
			    expires > LINK_SUPPORT_EXPIRES_MAX)
				die_usage("bad --expires '%s' (1m to 7d: a number with s, m, h or "
					  "d)",
					  optarg);
			break;
		case 'r':
			reason = optarg;
			break;
		case 'h':
			puts(support_help);
			return 0;
		default:
			bad_option("support request", c, argv);
		}
	}
	if (optind < argc)
		die_usage("support request: unexpected argument '%s'", argv[optind]);
	if (!allow)
		die_usage("support request needs --allow NAME=HOST:PORT[,...]");
	if (strlen(allow) > SUP_ALLOW_MAX || sup_services_parse(allow, &svc, err, sizeof(err)) < 0)
		die_usage("bad --allow: %s", strlen(allow) > SUP_ALLOW_MAX ? "too long" : err);
	if (reason && !valid_text_chars(reason, strlen(reason), LINK_SUPPORT_REASON_MAX))
		die_usage("bad --reason: at most %d characters of UTF-8 text without control "
			  "characters",
			  LINK_SUPPORT_REASON_MAX);
	req = json_pack("{s:s, s:s, s:I}", "type", "support_request", "allow", allow, "expires",
			(json_int_t)expires);
	if (reason)
		json_object_set_new(req, "reason", json_string(reason));
	r = support_ask(o, req);
	if (o->json) {
		json_t *j = json_pack("{s:O, s:O, s:O, s:O}", "id", json_object_get(r, "id"), "psk",
				      json_object_get(r, "psk"), "expires_at",
				      json_object_get(r, "expires_at"), "services",
				      json_object_get(r, "services"));

		print_json(j);
		json_decref(j);
		json_decref(r);
		return 0;
	}
	printf("support session: %s\n", log_esc_str(msg_str(r, "id") ?: "?", b1, sizeof(b1)));
	printf("pre-shared key:  %s\n", log_esc_str(msg_str(r, "psk") ?: "?", b1, sizeof(b1)));
	printf("expires:         %s\n", utc_time(msg_int(r, "expires_at", 0), b2, sizeof(b2)));
	printf("services:       ");
	json_array_foreach(json_object_get(r, "services"), i, v)
	    printf("%s %s", i ? "," : "", log_esc_str(json_string_value(v) ?: "?", b1, sizeof(b1)));
	printf("\n\nSend the session id and the key to your support person by another channel\n"
	       "than this tunnel (a call, a chat): the key is shown only now and the server\n"
	       "never sees it. An operator of the server must approve the session before\n"
	       "anything connects: navectl support approve %s\n"
	       "End it at any time with: nave support end %s\n",
	       msg_str(r, "id") ?: "?", msg_str(r, "id") ?: "?");
	json_decref(r);
	return 0;
}

static int support_ls(struct opts *o, int argc, char **argv)
{
	char b1[1024], b2[64], b3[600];
	json_t *r, *s, *v, *a;
	size_t i, k;

	if (argc > 1 && is_help(argv[1])) {
		puts(support_help);
		return 0;
	}
	if (argc > 1)
		die_usage("support ls: unexpected argument '%s'", argv[1]);
	r = support_ask(o, json_pack("{s:s}", "type", "support_ls"));
	a = json_object_get(r, "sessions");
	if (o->json) {
		print_json(a);
		json_decref(r);
		return 0;
	}
	if (msg_str(r, "note"))
		printf("note: %s\n", log_esc_str(msg_str(r, "note"), b1, sizeof(b1)));
	if (!json_array_size(a))
		printf("no support sessions\n");
	else
		printf("%-15s %-9s %-24s %-5s %s\n", "ID", "STATE", "EXPIRES", "KEY", "SERVICES");
	json_array_foreach(a, i, s)
	{
		printf("%-15s %-9s %-24s %-5s", log_esc_str(msg_str(s, "id") ?: "?", b1, 32),
		       log_esc_str(msg_str(s, "state") ?: "?", b3, 32),
		       utc_time(msg_int(s, "expires_at", 0), b2, sizeof(b2)),
		       json_is_true(json_object_get(s, "held")) ? "held" : "-");
		json_array_foreach(json_object_get(s, "services"), k, v)
		{
			const char *n = json_string_value(v) ?: "?";
			const char *to = msg_str(json_object_get(s, "allow"), n);

			printf("%s %s%s%s", k ? "," : "", log_esc_str(n, b1, 64), to ? "=" : "",
			       to ? log_esc_str(to, b3, sizeof(b3)) : "");
		}
		printf("\n");
		if (msg_str(s, "reason") && *msg_str(s, "reason"))
			printf("  reason: %s\n", log_esc_str(msg_str(s, "reason"), b1, sizeof(b1)));
		if (msg_str(s, "approved_by"))
			printf("  approved by %s, %lld connection(s)\n",
			       log_esc_str(msg_str(s, "approved_by"), b1, sizeof(b1)),
			       msg_int(s, "connections", 0));
	}
	json_decref(r);
	return 0;
}

static int support_end(struct opts *o, int argc, char **argv)
{
	char b[64];
	json_t *r;

	if (argc > 1 && is_help(argv[1])) {
		puts(support_help);
		return 0;
	}
	if (argc != 2)
		die_usage("support end needs one session ID");
	if (!sup_id_valid(argv[1]))
		die_usage("bad session ID '%s' (sup- and 10 of a-z, 0-9)", argv[1]);
	r = support_ask(o, json_pack("{s:s, s:s}", "type", "support_end", "id", argv[1]));
	if (o->json)
		print_json(r);
	else
		printf("ended support session %s\n", log_esc_str(argv[1], b, sizeof(b)));
	json_decref(r);
	return 0;
}

/* A PSK's text from a file's first line ("-": stdin) into out (SUP_PSK_IN_MAX + 1). */
static void read_psk_file(const char *path, char *out)
{
	bool is_stdin = !strcmp(path, "-");
	FILE *f = is_stdin ? stdin : fopen(path, "re");
	size_t n = 0;
	int ch;

	if (!f)
		die_usage("--psk-file: cannot read %s: %s", path, strerror(errno));
	while ((ch = getc(f)) != EOF && ch != '\n') {
		if (n == SUP_PSK_IN_MAX) {
			if (!is_stdin)
				fclose(f);
			explicit_bzero(out, SUP_PSK_IN_MAX + 1);
			die_usage("--psk-file: the first line of %s is too long for a key",
				  is_stdin ? "stdin" : path);
		}
		out[n++] = (char)ch;
	}
	out[n] = 0;
	if (n && out[n - 1] == '\r')
		out[--n] = 0;
	if (!is_stdin)
		fclose(f);
}

static int support_connect(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"psk", required_argument, NULL, 'p'},
	    {"psk-file", required_argument, NULL, 'P'},
	    {"service", required_argument, NULL, 's'},
	    {"to", required_argument, NULL, 't'},
	    {"server", required_argument, NULL, 'S'},
	    {"fingerprint", required_argument, NULL, 'f'},
	    {"ca", required_argument, NULL, 'C'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *psk = NULL, *psk_file = NULL, *service = NULL, *to = NULL, *server = NULL,
		   *fpr = NULL, *ca = NULL, *psk_from = "--psk";
	static struct supc_opts so;
	char text[SUP_PSK_IN_MAX + 1], err[SUP_ERR_MAX];
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			psk = optarg;
			break;
		case 'P':
			psk_file = optarg;
			break;
		case 's':
			service = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'S':
			server = optarg;
			break;
		case 'f':
			fpr = optarg;
			break;
		case 'C':
			ca = optarg;
			break;
		case 'h':
			puts(support_help);
			return 0;
		default:
			bad_option("support connect", c, argv);
		}
	}
	if (optind >= argc)
		die_usage("support connect needs a session ID");
	if (optind + 1 < argc)
		die_usage("support connect: unexpected argument '%s'", argv[optind + 1]);
	if (!sup_id_valid(argv[optind]))
		die_usage("bad support session id: \"sup-\" and 10 of [a-z0-9]");
	str_copy(so.session, sizeof(so.session), argv[optind]);
	if (!service)
		die_usage("support connect needs --service NAME (the name of the service in the "
			  "device's request, e.g. ssh)");
	if (!sup_service_name_valid(service))
		die_usage("bad --service: 1-31 of letters, digits, '_' and '-'");
	str_copy(so.service, sizeof(so.service), service);
	if (!to)
		die_usage("support connect needs --to [ADDR:]PORT (where to listen)");
	{
		const char *colon = strrchr(to, ':');
		const char *ps = colon ? colon + 1 : to;
		char *end;
		long v;

		if (colon) {
			size_t n = (size_t)(colon - to);
			struct in6_addr a6;
			struct in_addr a4;

			if (n && to[0] == '[' && to[n - 1] == ']') {
				to++;
				n -= 2;
			}
			if (n == 0 || n >= sizeof(so.addr))
				die_usage("bad --to '%s' (want [ADDR:]PORT)", to);
			memcpy(so.addr, to, n);
			so.addr[n] = 0;
			if (inet_pton(AF_INET, so.addr, &a4) != 1 &&
			    inet_pton(AF_INET6, so.addr, &a6) != 1)
				die_usage("bad --to: ADDR must be an IPv4 or IPv6 address");
		} else {
			str_copy(so.addr, sizeof(so.addr), "127.0.0.1");
		}
		errno = 0;
		v = *ps >= '0' && *ps <= '9' ? strtol(ps, &end, 10) : -1;
		if (v < 0 || v > 65535 || errno || *end)
			die_usage("bad --to: PORT must be 0-65535");
		so.port = (uint16_t)v;
	}
	if (server && o->config)
		die_usage("support connect: give either --config or --server, not both");
	if (server) {
		if (!fpr == !ca)
			die_usage("support connect --server needs exactly one of --fingerprint and "
				  "--ca");
		if (!str_copy(so.server, sizeof(so.server), server) ||
		    (fpr && !str_copy(so.fingerprint, sizeof(so.fingerprint), fpr)) ||
		    (ca && !str_copy(so.ca, sizeof(so.ca), ca)))
			die_usage("support connect: --server, --fingerprint or --ca too long");
	} else {
		if (fpr || ca)
			die_usage("support connect: --fingerprint and --ca go with --server");
		load_cfg(o, true);
		if (!o->cfg.server[0])
			die_usage(
			    "support connect needs --server HOST[:PORT] (with --fingerprint or "
			    "--ca), or a client config with a server (--config)");
		str_copy(so.server, sizeof(so.server), o->cfg.server);
		str_copy(so.ca, sizeof(so.ca), o->cfg.ca);
		str_copy(so.fingerprint, sizeof(so.fingerprint), o->cfg.fingerprint);
	}
	if (!!psk + !!psk_file > 1)
		die_usage("support connect: give either --psk or --psk-file, not both");
	if (psk_file) {
		read_psk_file(psk_file, text);
		psk_from = "--psk-file";
	} else if (psk) {
		if (!str_copy(text, sizeof(text), psk))
			die_usage("bad --psk: too long for a key");
	} else if (getenv("NAVE_SUPPORT_PSK")) {
		psk_from = "NAVE_SUPPORT_PSK";
		if (!str_copy(text, sizeof(text), getenv("NAVE_SUPPORT_PSK")))
			die_usage("bad NAVE_SUPPORT_PSK: too long for a key");
	} else {
		die_usage("support connect needs the session's key: --psk KEY, --psk-file FILE or "
			  "NAVE_SUPPORT_PSK");
	}
	if (sup_psk_parse(text, so.psk, err, sizeof(err)) < 0) {
		explicit_bzero(text, sizeof(text));
		die_usage("bad %s: %s", psk_from, err);
	}
	explicit_bzero(text, sizeof(text));
	rc = supconnect_run(&so);
	explicit_bzero(&so, sizeof(so));
	return rc;
}

static int cmd_support(struct opts *o, int argc, char **argv)
{
	if (argc < 2)
		die_usage("support needs a command: request, ls, end or connect");
	if (is_help(argv[1])) {
		puts(support_help);
		return 0;
	}
	if (!strcmp(argv[1], "request"))
		return support_request(o, argc - 1, argv + 1);
	if (!strcmp(argv[1], "ls"))
		return support_ls(o, argc - 1, argv + 1);
	if (!strcmp(argv[1], "end"))
		return support_end(o, argc - 1, argv + 1);
	if (!strcmp(argv[1], "connect"))
		return support_connect(o, argc - 1, argv + 1);
	die_usage("unknown support command '%s'", argv[1]);
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
    {"tunnel", cmd_tunnel,
     "tcp add | udp add | http add | ls | rm: public TCP and UDP ports and HTTP domains for "
     "local services"},
    {"ports", cmd_ports, "map | ls | rm: local ports carried to services of the mesh"},
    {"proxies", cmd_proxies, "socks listen | socks rm | ls: a local SOCKS5 proxy into the mesh"},
    {"support", cmd_support,
     "request | ls | end | connect: a support person's way in to chosen local services"},
    {"status", cmd_status, "show whether the tunnel runs and what it carries"},
    {"deauth", cmd_deauth, "revoke the auth token on the server and forget it"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: nave [--config FILE] [--json] COMMAND [ARGS]\n"
		   "       nave --help | --version\n\nCommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(
	    f, "\nOptions (before or after the command):\n"
	       "  --config FILE  the client config (default: $NAVE_CONFIG, else\n"
	       "                 ~/.config/nave/nave.ini)\n"
	       "  --json         machine-readable output\n"
	       "  --version      print the version\n"
	       "  -h, --help     this help; COMMAND --help for one command\n"
	       "\nExit status: 0 done, 1 refused or failed (the reason on stderr), 2 bad usage.\n");
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
				die_usage("--config needs a FILE");
			o.config = argv[i];
		} else if (!strncmp(argv[i], "--config=", 9)) {
			o.config = argv[i] + 9;
		} else if (!strcmp(argv[i], "--json")) {
			o.json = true;
		} else if (n < (int)ARRAY_SIZE(args) - 1) {
			args[n++] = argv[i];
		} else {
			die_usage("too many arguments");
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
}

// SPDX-License-Identifier: Apache-2.0
/*
 * nave-pki: the commands of `navectl pki` (init, issue, ls, revoke), the
 * client-certificate PKI as local files over tls/pki.c (BoringSSL's
 * libcrypto). navectl runs this program (execv, ctl/navectl.c) instead of
 * linking BoringSSL beside libcurl, whose dependencies bring OpenSSL's
 * libcrypto; nave-pki links no libcurl. It speaks as navectl does (the same
 * rows, options, messages, --json and exit codes): 0 done, 1 refused or
 * failed, 2 bad usage.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "config/cfg.h"
#include "ctl/cli.h"
#include "log.h"
#include "tls/pki.h"
#include "util.h"
#include "valid.h"

#define PKI_CA_DAYS   3650
#define PKI_NODE_DAYS 365

/* --dir, else [server] state_dir of --config (or of the embedded default) + "/pki" */
static int pki_dir(struct ctx *c, const char *dir, char *out, size_t len)
{
	char err[CFG_ERR_MAX];
	struct cfg_server *cfg;
	int n;

	if (dir) {
		if (!*dir)
			return usage_error(c, "empty --dir");
		if (!str_copy(out, len, dir))
			return usage_error(c, "--dir too long");
		return 0;
	}
	cfg = malloc(sizeof(*cfg));
	if (!cfg) {
		fail("out of memory");
		return EXIT_FAIL;
	}
	if (cfg_server_load(cfg, c->config, err, sizeof(err)) < 0) {
		free(cfg);
		fail("%s", err);
		return EXIT_USAGE;
	}
	n = snprintf(out, len, "%s/pki", cfg->state_dir);
	free(cfg);
	if (n < 0 || (size_t)n >= len) {
		fail("state_dir too long");
		return EXIT_USAGE;
	}
	return 0;
}

static int pki_days(struct ctx *c, const char *s, unsigned def, unsigned *out)
{
	unsigned long long v;
	int ret;

	*out = def;
	if (!s)
		return 0;
	ret = parse_num(c, "--days", s, 1, PKI_DAYS_MAX, &v);
	if (!ret)
		*out = (unsigned)v;
	return ret;
}

static int pki_name(struct ctx *c, const char *name)
{
	if (!name)
		return usage_error(c, "missing --name NAME");
	if (!pki_name_ok(name))
		return usage_error(c, "bad --name '%s': 1-%d characters: %s, not starting with '.'",
				   name, PKI_NAME_MAX - 1, valid_alphabet(VALID_ID));
	return 0;
}

static const char *pki_status(const struct pki_ident *id, int64_t now)
{
	if (id->revoked)
		return "revoked";
	return now >= id->not_after ? "expired" : "valid";
}

static json_t *pki_json(const struct pki_ident *id, int64_t now)
{
	char nb[PKI_TIME_LEN], na[PKI_TIME_LEN];

	pki_time_str(id->not_before, nb);
	pki_time_str(id->not_after, na);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:b}", "name", id->name, "kind",
			 pki_kind_name(id->kind), "serial", id->serial, "not_before", nb,
			 "not_after", na, "revoked", id->revoked, "expired", now >= id->not_after);
}

/* prints j (taken) as one JSON document */
static int pki_print_json(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;

	json_decref(j);
	if (!s) {
		fail("out of memory");
		return EXIT_FAIL;
	}
	printf("%s\n", s);
	free(s);
	return EXIT_OK;
}

static int cmd_pki_init(struct ctx *c, int argc, char **argv)
{
	const char *dir_opt = NULL, *key_opt = NULL, *days_opt = NULL;
	const struct opt opts[] = {
	    {"--dir", "DIR", &dir_opt, NULL},
	    {"--key-type", "ed25519|p256", &key_opt, NULL},
	    {"--days", "N", &days_opt, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	char dir[CFG_PATH_MAX + 8], crt[CFG_PATH_MAX + 64], err[1024], esc[4 * sizeof(dir)],
	    na[PKI_TIME_LEN], ca_na[PKI_TIME_LEN];
	struct pki_ident admin;
	enum pki_key key = PKI_ED25519;
	int64_t ca_not_after;
	unsigned days;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	if (key_opt && !strcmp(key_opt, "p256"))
		key = PKI_P256;
	else if (key_opt && strcmp(key_opt, "ed25519"))
		return usage_error(c, "bad --key-type '%s': ed25519 or p256", key_opt);
	ret = pki_days(c, days_opt, PKI_CA_DAYS, &days);
	if (!ret)
		ret = pki_dir(c, dir_opt, dir, sizeof(dir));
	if (ret)
		return ret;
	if (pki_init(dir, key, days, err, sizeof(err)) < 0) {
		fail("pki init: %s", err);
		return EXIT_FAIL;
	}
	snprintf(crt, sizeof(crt), "%s/nodes/admin/tls.crt", dir);
	if (pki_cert_ident(crt, &admin, err, sizeof(err)) < 0) {
		fail("%s", err);
		return EXIT_FAIL;
	}
	snprintf(crt, sizeof(crt), "%s/ca/ca.crt", dir);
	if (pki_cert_not_after(crt, &ca_not_after, err, sizeof(err)) < 0) {
		fail("%s", err);
		return EXIT_FAIL;
	}
	pki_time_str(admin.not_after, na);
	pki_time_str(ca_not_after, ca_na);
	log_esc_str(dir, esc, sizeof(esc));
	if (c->json)
		return pki_print_json(json_pack("{s:s, s:s, s:s, s:o}", "dir", dir, "key_type",
						key == PKI_P256 ? "p256" : "ed25519",
						"ca_not_after", ca_na, "admin",
						pki_json(&admin, time(NULL))));
	printf("made %s: the root CA in ca/ (%s, until %s) and the admin certificate nodes/admin "
	       "(serial %s, until %s)\n",
	       esc, key == PKI_P256 ? "P-256" : "Ed25519", ca_na, admin.serial, na);
	printf("next: in nave.ini set [tls] client_ca = %s/ca/ca.crt and client_auth = optional, "
	       "then navectl reload\n",
	       esc);
	printf("then: navectl pki issue --name NAME; copy %s/nodes/NAME to the device and run "
	       "there: nave configure --server HOST:PORT --cert THAT_DIR\n",
	       esc);
	return EXIT_OK;
}

static int cmd_pki_issue(struct ctx *c, int argc, char **argv)
{
	const char *dir_opt = NULL, *name = NULL, *days_opt = NULL;
	bool admin = false, force = false;
	const struct opt opts[] = {
	    {"--dir", "DIR", &dir_opt, NULL}, {"--name", "NAME", &name, NULL},
	    {"--days", "N", &days_opt, NULL}, {"--admin", NULL, NULL, &admin},
	    {"--force", NULL, NULL, &force},  {NULL, NULL, NULL, NULL},
	};
	char dir[CFG_PATH_MAX + 8], crt[CFG_PATH_MAX + 64], err[1024], esc[4 * sizeof(dir)],
	    na[PKI_TIME_LEN];
	struct pki_ident id, old;
	bool had_old = false;
	unsigned days;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	ret = pki_name(c, name);
	if (!ret)
		ret = pki_days(c, days_opt, PKI_NODE_DAYS, &days);
	if (!ret)
		ret = pki_dir(c, dir_opt, dir, sizeof(dir));
	if (ret)
		return ret;
	if (force) {
		snprintf(crt, sizeof(crt), "%s/nodes/%s/tls.crt", dir, name);
		had_old = pki_cert_ident(crt, &old, err, sizeof(err)) == 0;
	}
	ret =
	    pki_issue(dir, name, admin ? PKI_ADMIN : PKI_NODE, days, force, &id, err, sizeof(err));
	if (ret < 0) {
		fail("pki issue: %s%s", err,
		     ret == -EEXIST && !force
			 ? " (--force replaces it and puts the old certificate on the CRL)"
			 : "");
		return EXIT_FAIL;
	}
	if (c->json)
		return pki_print_json(pki_json(&id, time(NULL)));
	pki_time_str(id.not_after, na);
	log_esc_str(dir, esc, sizeof(esc));
	printf("issued %s/nodes/%s: %s certificate \"%s\", serial %s, valid until %s\n", esc,
	       id.name, pki_kind_name(id.kind), id.name, id.serial, na);
	if (had_old && strcmp(old.serial, id.serial))
		printf("replaced serial %s, now on the CRL\n", old.serial);
	return EXIT_OK;
}

static int cmd_pki_ls(struct ctx *c, int argc, char **argv)
{
	const char *dir_opt = NULL;
	const struct opt opts[] = {
	    {"--dir", "DIR", &dir_opt, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	char dir[CFG_PATH_MAX + 8], err[1024], na[PKI_TIME_LEN];
	struct table t = {.ncols = 5};
	struct pki_ident *ids;
	int64_t now = time(NULL);
	size_t n;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	ret = pki_dir(c, dir_opt, dir, sizeof(dir));
	if (ret)
		return ret;
	if (pki_ls(dir, &ids, &n, err, sizeof(err)) < 0) {
		fail("pki ls: %s", err);
		return EXIT_FAIL;
	}
	if (c->json) {
		json_t *a = json_array();

		for (size_t i = 0; a && i < n; i++)
			if (json_array_append_new(a, pki_json(&ids[i], now)) < 0) {
				json_decref(a);
				a = NULL;
			}
		free(ids);
		return pki_print_json(a);
	}
	table_add(&t, "NAME");
	table_add(&t, "KIND");
	table_add(&t, "SERIAL");
	table_add(&t, "EXPIRES");
	table_add(&t, "STATUS");
	for (size_t i = 0; i < n; i++) {
		pki_time_str(ids[i].not_after, na);
		table_add(&t, ids[i].name);
		table_add(&t, pki_kind_name(ids[i].kind));
		table_add(&t, ids[i].serial);
		table_add(&t, na);
		table_add(&t, pki_status(&ids[i], now));
	}
	free(ids);
	ret = table_print(&t);
	table_free(&t);
	return ret;
}

static int cmd_pki_revoke(struct ctx *c, int argc, char **argv)
{
	const char *dir_opt = NULL, *name = NULL;
	const struct opt opts[] = {
	    {"--dir", "DIR", &dir_opt, NULL},
	    {"--name", "NAME", &name, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	char dir[CFG_PATH_MAX + 8], err[1024], esc[4 * sizeof(dir)];
	struct pki_ident id;
	int ret;

	ret = parse_args(c, argc, argv, opts, NULL, NULL);
	if (ret)
		return args_exit(ret);
	ret = pki_name(c, name);
	if (!ret)
		ret = pki_dir(c, dir_opt, dir, sizeof(dir));
	if (ret)
		return ret;
	if (pki_revoke(dir, name, &id, err, sizeof(err)) < 0) {
		fail("pki revoke: %s", err);
		return EXIT_FAIL;
	}
	if (c->json)
		return pki_print_json(pki_json(&id, time(NULL)));
	log_esc_str(dir, esc, sizeof(esc));
	printf("revoked \"%s\" (serial %s): %s/ca/crl.pem re-signed; relayd and the admin "
	       "listener pick it up within a second\n",
	       name, id.serial, esc);
	return EXIT_OK;
}

static const struct cmd cmds[] = {
    {"pki", "init", cmd_pki_init, PKI_INIT_ARGS, PKI_INIT_HELP},
    {"pki", "issue", cmd_pki_issue, PKI_ISSUE_ARGS, PKI_ISSUE_HELP},
    {"pki", "ls", cmd_pki_ls, PKI_LS_ARGS, PKI_LS_HELP},
    {"pki", "revoke", cmd_pki_revoke, PKI_REVOKE_ARGS, PKI_REVOKE_HELP},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: nave-pki [--config FILE] [--json] COMMAND [ARGS]\n"
		   "\nThe helper behind 'navectl pki': navectl runs it, so that BoringSSL's\n"
		   "libcrypto stays out of navectl's process. Use navectl pki COMMAND.\n"
		   "\nCommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		fprintf(f, "  %s%s%s\n      %s\n", cmds[i].name, *cmds[i].args ? " " : "",
			cmds[i].args, cmds[i].help);
	fprintf(
	    f, "\nOptions (before or after the command):\n"
	       "  --config FILE  the server config: DIR defaults to its state_dir/pki\n"
	       "  --json         print the result as JSON\n"
	       "  -h, --help     this help; COMMAND --help for one command\n"
	       "  -V, --version  print the version\n"
	       "\nExit status: 0 done, 1 refused or failed (the reason on stderr), 2 bad usage.\n");
}

int main(int argc, char **argv)
{
	struct ctx c = {.group = "pki"};
	const struct cmd *cmd = NULL;
	int i = 1, ret;

	if (argc == 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
		printf("nave-pki %s\n", NAVE_VERSION);
		return EXIT_OK;
	}
	ret = take_globals(&c, argc, argv, &i);
	if (ret == ARGS_HELP) {
		usage(stdout);
		return EXIT_OK;
	}
	if (ret)
		return ret;
	if (i >= argc)
		return usage_error(&c, "missing pki subcommand");
	for (size_t k = 0; k < ARRAY_SIZE(cmds); k++)
		if (!strcmp(cmds[k].name, argv[i]))
			cmd = &cmds[k];
	if (!cmd)
		return usage_error(&c, "unknown command 'pki %s'", argv[i]);
	i++;
	c.cmd = cmd;
	ret = cmd->fn(&c, argc - i, argv + i);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		fail("writing output: %s", strerror(errno));
		return EXIT_FAIL;
	}
	return ret;
}

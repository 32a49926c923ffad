// SPDX-License-Identifier: Apache-2.0
/*
 * What navectl and nave-pki (the helper navectl runs for its pki commands,
 * so that BoringSSL stays out of navectl's process) share: the command table's
 * row, the options (the global ones and a command's own), the one-line
 * messages and the aligned tables. Both speak as "navectl".
 */
#ifndef NAVE_CLI_H
#define NAVE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config/cfg.h"

#define SOCKET_NAME    "/control.sock"
#define TABLE_MAX_COLS 12

/* Exit codes (README.md, "Commands"). */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };
/* parse_args() result when --help was printed: the command is done, exit 0. */
#define ARGS_HELP (-1)

struct cmd;

struct ctx {
	const char *socket;   /* --socket */
	const char *config;   /* --config */
	const char *server;   /* --server https://HOST:PORT (or NAVE_SERVER): the admin listener */
	const char *key_file; /* --api-key-file FILE (or NAVE_API_KEY holding the key) */
	const char *ca;	  /* --ca FILE: the CA (or the certificate) the server's is checked by */
	const char *cert; /* --cert DIR: an admin certificate (DIR/tls.crt, tls.key) for --server */
	bool json;	  /* --json */
	const struct cmd *cmd; /* the command being run, for messages */
	const char *group;     /* the command group named so far, for messages */
	const char *sub;       /* and the first word of a two-word name ("deny" add) */
	char sock[CFG_PATH_MAX + sizeof(SOCKET_NAME)];
};

struct cmd {
	const char *group; /* first word */
	const char *name;  /* the rest: one word, two ("deny add"), or NULL for one-word commands */
	int (*fn)(struct ctx *c, int argc, char **argv);
	const char *args; /* usage of its arguments */
	const char *help; /* one line */
};

struct opt {
	const char *name;    /* "--description" */
	const char *metavar; /* NULL: a flag */
	const char **val;
	bool *flag;
};

/* Rows of cells, printed with columns padded to their widest cell. */
struct table {
	unsigned ncols;
	size_t n, cap;
	char **cell;
	bool oom;
};

/* "navectl: reason" as one line on stderr. */
void __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...);
/* A bad-usage line with a pointer to the right --help; returns EXIT_USAGE. */
int __attribute__((format(printf, 2, 3))) usage_error(const struct ctx *c, const char *fmt, ...);

int take_opt(struct ctx *c, const struct opt *opts, int argc, char **argv, int *i);
int take_globals(struct ctx *c, int argc, char **argv, int *i);
void cmd_usage(FILE *f, const struct cmd *cmd);
int parse_args(struct ctx *c, int argc, char **argv, const struct opt *opts, const char **pos,
	       const char *posname);
int args_exit(int ret);
int parse_num(struct ctx *c, const char *what, const char *s, unsigned long long min,
	      unsigned long long max, unsigned long long *out);

void table_add(struct table *t, const char *s);
int table_print(const struct table *t);
void table_free(struct table *t);

/*
 * The usage and help of navectl's pki commands, for the rows of both tables
 * (navectl's run nave-pki, nave-pki's do the work): one text for both --help.
 */
#define PKI_INIT_ARGS "[--dir DIR] [--key-type ed25519|p256] [--days N]"
#define PKI_INIT_HELP                                                                              \
	"Make a root CA (ca/) and the admin certificate (nodes/admin) in DIR (default "            \
	"state_dir/pki); local files, no daemon needed."
#define PKI_ISSUE_ARGS "--name NAME [--days N] [--admin] [--force] [--dir DIR]"
#define PKI_ISSUE_HELP                                                                             \
	"Issue a certificate for a device (a tunnel id) or, with --admin, an admin into "          \
	"DIR/nodes/NAME; --force replaces one and revokes the old."
#define PKI_LS_ARGS	"[--dir DIR]"
#define PKI_LS_HELP	"List the certificates in DIR/nodes: name, kind, serial, expiry, status."
#define PKI_REVOKE_ARGS "--name NAME [--dir DIR]"
#define PKI_REVOKE_HELP                                                                            \
	"Put NAME's certificate on the CRL (DIR/ca/crl.pem); relayd and the admin listener "       \
	"reload it."

#endif

// SPDX-License-Identifier: Apache-2.0
/* navectl's and nave-pki's messages, options and tables (cli.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/cli.h"
#include "log.h"

/* ---- messages ---------------------------------------------------------- */

/* "navectl: reason" as one line on stderr. */
void __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
	char msg[1024], out[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "navectl: %s\n", log_esc_str(msg, out, sizeof(out)));
}

/* A bad-usage line with a pointer to the right --help; returns EXIT_USAGE. */
int __attribute__((format(printf, 2, 3))) usage_error(const struct ctx *c, const char *fmt, ...)
{
	char raw[768], msg[768], where[64] = "";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	log_esc_str(raw, msg, sizeof(msg));
	if (c->cmd)
		snprintf(where, sizeof(where), " %s%s%s", c->cmd->group, c->cmd->name ? " " : "",
			 c->cmd->name ? c->cmd->name : "");
	else if (c->group)
		snprintf(where, sizeof(where), " %s%s%s", c->group, c->sub ? " " : "",
			 c->sub ? c->sub : "");
	fprintf(stderr, "navectl: %s (see 'navectl%s --help')\n", msg, where);
	return EXIT_USAGE;
}

/* ---- arguments ---------------------------------------------------------- */

static const struct opt *opt_find(const struct opt *o, const char *name, size_t len)
{
	for (; o && o->name; o++)
		if (strlen(o->name) == len && !strncmp(o->name, name, len))
			return o;
	return NULL;
}

/*
 * Takes the option at argv[*i] ("--name", "--name VALUE" or "--name=VALUE"),
 * one of opts or of the global ones, and advances *i. Returns 0, ARGS_HELP
 * for -h/--help, or EXIT_USAGE after a message.
 */
int take_opt(struct ctx *c, const struct opt *opts, int argc, char **argv, int *i)
{
	const struct opt globals[] = {
	    {"--socket", "PATH", &c->socket, NULL},
	    {"--config", "FILE", &c->config, NULL},
	    {"--json", NULL, NULL, &c->json},
	    {"--server", "URL", &c->server, NULL},
	    {"--api-key-file", "FILE", &c->key_file, NULL},
	    {"--ca", "FILE", &c->ca, NULL},
	    {"--cert", "DIR", &c->cert, NULL},
	    {NULL, NULL, NULL, NULL},
	};
	const char *a = argv[*i], *eq = strchr(a, '=');
	size_t len = eq ? (size_t)(eq - a) : strlen(a);
	const struct opt *o;

	(*i)++;
	if (!strcmp(a, "-h") || !strcmp(a, "--help"))
		return ARGS_HELP;
	o = opt_find(opts, a, len);
	if (!o)
		o = opt_find(globals, a, len);
	if (!o)
		return usage_error(c, "unknown option '%.*s'", (int)len, a);
	if (!o->metavar) {
		if (eq)
			return usage_error(c, "option %s takes no value", o->name);
		*o->flag = true;
		return 0;
	}
	if (eq) {
		*o->val = eq + 1;
	} else if (*i < argc) {
		*o->val = argv[(*i)++];
	} else {
		return usage_error(c, "option %s needs a value (%s)", o->name, o->metavar);
	}
	return 0;
}

void cmd_usage(FILE *f, const struct cmd *cmd)
{
	fprintf(f,
		"usage: navectl [--socket PATH | --config FILE | --server URL] [--json] "
		"%s%s%s%s%s\n  %s\n",
		cmd->group, cmd->name ? " " : "", cmd->name ? cmd->name : "", *cmd->args ? " " : "",
		cmd->args, cmd->help);
}

/*
 * Parses a subcommand's arguments: its options, the global ones (which may
 * follow the command too) and, when posname is set, exactly one positional
 * argument into *pos. Returns 0, ARGS_HELP after printing the command's
 * usage, or EXIT_USAGE after a message.
 */
int parse_args(struct ctx *c, int argc, char **argv, const struct opt *opts, const char **pos,
	       const char *posname)
{
	bool dashdash = false;
	int i = 0, n = 0, ret;

	while (i < argc) {
		const char *a = argv[i];

		if (dashdash || a[0] != '-' || !a[1]) {
			if (!posname || n)
				return usage_error(c, "unexpected argument '%s'", a);
			*pos = a;
			n++;
			i++;
			continue;
		}
		if (!strcmp(a, "--")) {
			dashdash = true;
			i++;
			continue;
		}
		ret = take_opt(c, opts, argc, argv, &i);
		if (ret == ARGS_HELP)
			cmd_usage(stdout, c->cmd);
		if (ret)
			return ret;
	}
	if (posname && !n && posname[0] != '[') /* "[NAME]": optional */
		return usage_error(c, "missing %s", posname);
	return 0;
}

/* parse_args() result -> what the command returns when it stops early. */
int args_exit(int ret)
{
	return ret == ARGS_HELP ? EXIT_OK : ret;
}

/* A decimal number in [min, max], nothing else; EXIT_USAGE after a message. */
int parse_num(struct ctx *c, const char *what, const char *s, unsigned long long min,
	      unsigned long long max, unsigned long long *out)
{
	unsigned long long v = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (max - (unsigned long long)(*p - '0')) / 10) {
			v = max + 1;
			break;
		}
		v = v * 10 + (unsigned long long)(*p - '0');
	}
	if (p == s || (*p && v <= max))
		return usage_error(c, "bad %s '%s': not a number", what, s);
	if (v < min || v > max)
		return usage_error(c, "bad %s '%s': must be %llu..%llu", what, s, min, max);
	*out = v;
	return 0;
}

/* Global options up to the next word; returns 0, ARGS_HELP or EXIT_USAGE. */
int take_globals(struct ctx *c, int argc, char **argv, int *i)
{
	while (*i < argc && argv[*i][0] == '-' && argv[*i][1]) {
		int ret;

		if (!strcmp(argv[*i], "--")) {
			(*i)++;
			break;
		}
		ret = take_opt(c, NULL, argc, argv, i);
		if (ret)
			return ret;
	}
	return 0;
}

/* ---- tables ------------------------------------------------------------- */

void table_add(struct table *t, const char *s)
{
	size_t len;
	char *d;

	if (t->oom)
		return;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **p = realloc(t->cell, cap * sizeof(*p));

		if (!p) {
			t->oom = true;
			return;
		}
		t->cell = p;
		t->cap = cap;
	}
	len = 4 * strlen(s ? s : "-") + 4;
	d = malloc(len);
	if (!d) {
		t->oom = true;
		return;
	}
	log_esc_str(s, d, len);
	t->cell[t->n++] = d;
}

/* Terminal columns of UTF-8 text, near enough: one per code point. */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

int table_print(const struct table *t)
{
	size_t w[TABLE_MAX_COLS] = {0};

	if (t->oom) {
		fail("out of memory");
		return EXIT_FAIL;
	}
	for (size_t i = 0; i < t->n; i++) {
		size_t cw = text_width(t->cell[i]);

		if (cw > w[i % t->ncols])
			w[i % t->ncols] = cw;
	}
	for (size_t i = 0; i < t->n; i++) {
		unsigned col = (unsigned)(i % t->ncols);

		fputs(t->cell[i], stdout);
		if (col + 1 == t->ncols)
			putchar('\n');
		else
			printf("%*s", (int)(w[col] - text_width(t->cell[i]) + 2), "");
	}
	return EXIT_OK;
}

void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->cell[i]);
	free(t->cell);
	memset(t, 0, sizeof(*t));
}

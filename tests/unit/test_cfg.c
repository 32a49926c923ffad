// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for config/: the embedded default, a full file, every class of
 * error with its exact "FILE:LINE:" prefix, --check output fed back in, the
 * client config round trip, the parse helpers and the appliance config. Files
 * go to a fresh mkdtemp directory that is removed at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/cfg.h"
#include "log.h"
#include "util.h"

static char tmpdir[256];
static unsigned nfile;

/* Writes text to a new file under tmpdir; returns its path (static, per call). */
static const char *write_tmp(const char *text)
{
	static char paths[8][512];
	char *p = paths[nfile % 8];
	FILE *f;

	snprintf(p, 512, "%s/f%u.ini", tmpdir, nfile++);
	f = fopen(p, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
	return p;
}

/* The struct without its source, for comparing loads of the same settings. */
static void server_strip(struct cfg_server *c)
{
	memset(c->source, 0, sizeof(c->source));
}

static void assert_server_equal(struct cfg_server *a, struct cfg_server *b)
{
	server_strip(a);
	server_strip(b);
	assert_memory_equal(a, b, sizeof(*a));
}

/* Loads text as a server config and checks for "PATH:LINE: " + needle. */
static void expect_server_err(const char *text, unsigned line, const char *needle)
{
	const char *path = write_tmp(text);
	struct cfg_server c;
	char err[CFG_ERR_MAX], prefix[600];

	err[0] = 0;
	assert_int_equal(cfg_server_load(&c, path, err, sizeof(err)), -1);
	snprintf(prefix, sizeof(prefix), "%s:%u: ", path, line);
	if (strncmp(err, prefix, strlen(prefix)) || !strstr(err, needle))
		fail_msg("want \"%s...%s\", got \"%s\"", prefix, needle, err);
}

static void expect_client_err(const char *text, unsigned line, const char *needle)
{
	const char *path = write_tmp(text);
	struct cfg_client *c = calloc(1, sizeof(*c));
	char err[CFG_ERR_MAX], prefix[600];

	assert_non_null(c);
	err[0] = 0;
	assert_int_equal(cfg_client_load(c, path, false, err, sizeof(err)), -1);
	snprintf(prefix, sizeof(prefix), "%s:%u: ", path, line);
	if (strncmp(err, prefix, strlen(prefix)) || !strstr(err, needle))
		fail_msg("want \"%s...%s\", got \"%s\"", prefix, needle, err);
	free(c);
}

static void test_embedded_default(void **state)
{
	struct cfg_server c;
	char err[CFG_ERR_MAX] = "";

	(void)state;
	assert_int_equal(cfg_server_load(&c, NULL, err, sizeof(err)), 0);
	assert_string_equal(c.source, "(embedded default)");
	assert_string_equal(c.domain, "localhost");
	assert_string_equal(c.state_dir, "./var");
	assert_string_equal(c.runtime_dir, "./var/run");
	assert_int_equal(c.log_level, NLOG_INFO);
	assert_false(c.log_json);
	assert_int_equal(c.http_port, 8080);
	assert_int_equal(c.https_port, 8443);
	assert_int_equal(c.tunnel_port, 8443);
	assert_string_equal(c.address, "127.0.0.1");
	assert_int_equal(c.port_min, 22000);
	assert_int_equal(c.port_max, 22999);
	assert_int_equal(c.max_per_tunnel, 5);
	assert_true(c.reserve_ports);
	assert_int_equal(c.max_pool_size, 8);
	assert_int_equal(c.max_links, 16384);
	assert_int_equal(c.heartbeat_ms, 10000);
	assert_string_equal(c.certificate, "./var/tls/server.crt");
	assert_string_equal(c.private_key, "./var/tls/server.key");
	assert_true(c.pq);
	assert_int_equal(c.workers, 0);
	assert_int_equal(c.ktls, CFG_AUTO);
	assert_int_equal(c.steering, CFG_STEER_AUTO);
	assert_int_equal(c.buffer_size, 65536);
	assert_int_equal(c.buffers, 128);
	assert_string_equal(c.xdp_interface, "");
	assert_int_equal(c.syn_rate, 0);
	assert_string_equal(c.metrics_listen, "");
}

/* The embedded text, an empty file and the table defaults all agree. */
static void test_default_text_matches_table(void **state)
{
	struct cfg_server a, b, e;
	char err[CFG_ERR_MAX] = "";

	(void)state;
	assert_int_equal(cfg_server_load(&a, NULL, err, sizeof(err)), 0);
	assert_int_equal(cfg_server_load(&b, write_tmp(cfg_server_default_ini), err, sizeof(err)),
			 0);
	assert_int_equal(cfg_server_load(&e, write_tmp(""), err, sizeof(err)), 0);
	assert_server_equal(&a, &b);
	assert_server_equal(&a, &e);
}

static const char full_ini[] = "; a full configuration\n"
			       "[server]\n"
			       "domain = tunnels.example.com\n"
			       "state_dir = /srv/nave\n"
			       "runtime_dir = /run/nave\n"
			       "log_level = DEBUG\n"
			       "log_format = json\n"
			       "[listen]\n"
			       "http = 80\n"
			       "https = 443\n"
			       "tunnel = 4443\n"
			       "address = ::\n"
			       "[ports]\n"
			       "range = 30000-30099   # inline comment\n"
			       "max_per_tunnel = 10\n"
			       "reserve = off\n"
			       "[tunnel]\n"
			       "max_pool_size = 16\n"
			       "max_links = 4096\n"
			       "heartbeat = 90s\n"
			       "[tls]\n"
			       "certificate = \"/etc/nave/a;b.crt\"\n"
			       "private_key = '/etc/nave/key #1.pem'\n"
			       "pq = no\n"
			       "[datapath]\n"
			       "workers = 4\n"
			       "ktls = off\n"
			       "steering = listeners\n"
			       "buffer_size = 65536\n"
			       "buffers = 1024\n"
			       "[xdp]\n"
			       "interface = eth0\n"
			       "syn_rate = 100000\n"
			       "[METRICS]\n"
			       "Listen = 127.0.0.1:9100\n";

static void test_full_file(void **state)
{
	struct cfg_server c;
	char err[CFG_ERR_MAX] = "";
	const char *path = write_tmp(full_ini);

	(void)state;
	if (cfg_server_load(&c, path, err, sizeof(err)))
		fail_msg("%s", err);
	assert_string_equal(c.source, path);
	assert_string_equal(c.domain, "tunnels.example.com");
	assert_string_equal(c.state_dir, "/srv/nave");
	assert_string_equal(c.runtime_dir, "/run/nave");
	assert_int_equal(c.log_level, NLOG_DEBUG);
	assert_true(c.log_json);
	assert_int_equal(c.http_port, 80);
	assert_int_equal(c.https_port, 443);
	assert_int_equal(c.tunnel_port, 4443);
	assert_string_equal(c.address, "::");
	assert_int_equal(c.port_min, 30000);
	assert_int_equal(c.port_max, 30099);
	assert_int_equal(c.max_per_tunnel, 10);
	assert_false(c.reserve_ports);
	assert_int_equal(c.max_pool_size, 16);
	assert_int_equal(c.max_links, 4096);
	assert_int_equal(c.heartbeat_ms, 90000);
	assert_string_equal(c.certificate, "/etc/nave/a;b.crt");
	assert_string_equal(c.private_key, "/etc/nave/key #1.pem");
	assert_false(c.pq);
	assert_int_equal(c.workers, 4);
	assert_int_equal(c.ktls, CFG_OFF);
	assert_int_equal(c.steering, CFG_STEER_LISTENERS);
	assert_int_equal(c.buffer_size, 65536);
	assert_int_equal(c.buffers, 1024);
	assert_string_equal(c.xdp_interface, "eth0");
	assert_int_equal(c.syn_rate, 100000);
	assert_string_equal(c.metrics_listen, "127.0.0.1:9100");
}

/* --check output is a config that loads to the same settings. */
static void test_print_round_trip(void **state)
{
	const char *srcs[] = {full_ini, cfg_server_default_ini};
	char err[CFG_ERR_MAX] = "", *text = NULL;
	size_t len = 0;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(srcs); i++) {
		struct cfg_server a, b;
		const char *path = write_tmp(srcs[i]);
		FILE *f;

		assert_int_equal(cfg_server_load(&a, path, err, sizeof(err)), 0);
		f = open_memstream(&text, &len);
		assert_non_null(f);
		cfg_server_print(&a, f);
		assert_int_equal(fclose(f), 0);
		assert_true(!strncmp(text, "# effective configuration from ", 31));
		assert_non_null(strstr(text, path));
		assert_non_null(strstr(text, "\nheartbeat = "));
		if (cfg_server_load(&b, write_tmp(text), err, sizeof(err)))
			fail_msg("%s\n%s", err, text);
		assert_server_equal(&a, &b);
		free(text);
		text = NULL;
	}
}

static void test_errors_structure(void **state)
{
	(void)state;
	expect_server_err("[server]\ndomain = x\n\n[bogus]\nk = 1\n", 4, "unknown section [bogus]");
	expect_server_err("[server]\n# comment\ndomian = x\n", 3, "[server] domian: unknown key");
	expect_server_err("[server]\ndomain = x\nthis is junk\n", 3, "syntax error");
	expect_server_err("[server\n", 1, "syntax error");
	expect_server_err("[]\n", 1, "syntax error");
	expect_server_err("http = 80\n[listen]\n", 1, "outside of any [section]");
	expect_server_err("[listen]\n= 80\n", 2, "syntax error");
	expect_server_err("[server]\ndomain = \"abc\n", 2, "unterminated quote");
	expect_server_err("[server]\ndomain = \"abc\" d\n", 2, "text after the quoted value");
	expect_server_err("[server]\n# a comment \\\ndomain = x\n", 2, "continuation");
	expect_server_err("[listen]\nhttp = 80\n[server]\n[listen]\nhttp = 81\n", 5,
			  "[listen] http: set twice (first at line 2)");

	/* a NUL needs the length: write it by hand */
	{
		const char text[] = "[server]\n\ndomain = a\0b\n";
		char path[512], err[CFG_ERR_MAX], want[600];
		struct cfg_server c;
		FILE *f;

		snprintf(path, sizeof(path), "%s/nul.ini", tmpdir);
		f = fopen(path, "w");
		assert_non_null(f);
		assert_int_equal(fwrite(text, 1, sizeof(text) - 1, f), sizeof(text) - 1);
		fclose(f);
		assert_int_equal(cfg_server_load(&c, path, err, sizeof(err)), -1);
		snprintf(want, sizeof(want), "%s:3: the line contains a NUL byte", path);
		assert_string_equal(err, want);
	}
	{
		char *big = malloc(2000);

		assert_non_null(big);
		memcpy(big, "[server]\ndomain = ", 18);
		memset(big + 18, 'a', 1500);
		memcpy(big + 1518, "\n", 2);
		expect_server_err(big, 2, "line too long");
		free(big);
	}
}

static void test_errors_values(void **state)
{
	const char *path = write_tmp("[server]\n\n\n\n\n\n[ports]\nrange = 22999-22000\n");
	struct cfg_server c;
	char err[CFG_ERR_MAX], want[700];

	(void)state;
	/* the exact text of one message */
	assert_int_equal(cfg_server_load(&c, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want),
		 "%s:8: [ports] range: \"22999-22000\" is not a valid range (low-high, 1-65535)",
		 path);
	assert_string_equal(err, want);

	expect_server_err("[listen]\nhttp = 80a\n", 2, "[listen] http: \"80a\" is not a number");
	expect_server_err("[listen]\nhttp = -1\n", 2, "is not a number");
	expect_server_err("[listen]\nhttp = 70000\n", 2, "\"70000\" is out of range (1-65535)");
	expect_server_err("[listen]\nhttp = 99999999999999999999999\n", 2, "out of range");
	expect_server_err("[listen]\nhttp = 0\n", 2, "out of range");
	expect_server_err("[listen]\ntunnel = x\n", 2, "is not a port number");
	expect_server_err("[ports]\nrange = 0-100\n", 2, "not a valid range");
	expect_server_err("[ports]\nrange = 100-65536\n", 2, "not a valid range");
	expect_server_err("[ports]\nrange = 100\n", 2, "not a valid range");
	expect_server_err("[tls]\npq = maybe\n", 2, "[tls] pq: \"maybe\" is not a boolean");
	expect_server_err("[tunnel]\nheartbeat = 10x\n", 2, "\"10x\" is not a duration");
	expect_server_err("[tunnel]\nheartbeat = 500ms\n", 2, "\"500ms\" is out of range (1s-1h)");
	expect_server_err("[tunnel]\nheartbeat = 2h\n", 2, "out of range (1s-1h)");
	expect_server_err("[server]\nlog_format = xml\n", 2, "not one of text|json");
	expect_server_err("[server]\nlog_level = loud\n", 2, "not one of debug|info|warn|error");
	expect_server_err("[datapath]\nktls = yes\n", 2, "not one of auto|on|off");
	expect_server_err("[datapath]\nsteering = magic\n", 2, "not one of auto|bpf|listeners");
	expect_server_err("[datapath]\nbuffer_size = 1000\n", 2,
			  "not a power of two in 1024-1048576");
	expect_server_err("[datapath]\nbuffer_size = 2097152\n", 2, "power of two");
	expect_server_err("[datapath]\nbuffer_size = 512\n", 2, "power of two");
	expect_server_err("[datapath]\nbuffers = 4\n", 2, "not a power of two in 8-32768");
	expect_server_err("[datapath]\nbuffers = 65536\n", 2, "power of two");
	expect_server_err("[datapath]\nworkers = 0\n", 2, "not auto or a number 1-256");
	expect_server_err("[datapath]\nworkers = 257\n", 2, "not auto or a number 1-256");
	expect_server_err("[server]\ndomain =\n", 2, "[server] domain: may not be empty");
	expect_server_err("[server]\ndomain = bad_name!\n", 2, "not a valid domain name");
	expect_server_err("[socks]\nallow = 10.0.0.1/8\n", 2, "[socks] allow:");
	expect_server_err("[socks]\nallow = 10.0.0.0/8,,x.com\n", 2, "an empty entry");
	expect_server_err("[socks]\nallow = bad_name!\n", 2,
			  "allow entry \"bad_name!\" is neither an address block nor");
	expect_server_err("[socks]\ndns_cache = 8\n", 2, "out of range (16-65536)");
	{
		const char *p2 = write_tmp("[socks]\nallow = 127.0.0.1, *.Example.com ,::1/128\n");

		assert_int_equal(cfg_server_load(&c, p2, err, sizeof(err)), 0);
		assert_string_equal(c.socks_allow, "127.0.0.1/32,*.example.com,::1/128");
		assert_int_equal(c.socks_dns_cache, 512);
		assert_true(cfg_server_key_live("socks", "allow"));
		assert_false(cfg_server_key_live("socks", "dns_cache"));
	}
	expect_server_err("[listen]\naddress = localhost\n", 2, "not an IPv4 or IPv6 address");
	expect_server_err("[metrics]\nlisten = 9100\n", 2, "is not HOST:PORT");
	expect_server_err("[xdp]\ninterface = averyveryverylongname\n", 2, "interface name");
	/* conflicts between keys */
	expect_server_err("[listen]\nhttp = 8443\n", 2, "port 8443 is also the http port");
	expect_server_err("[ports]\nrange = 8000-9000\n", 2, "contains the http port 8080");
	/* the first bad line wins, whatever kind of error it is */
	expect_server_err("[listen]\nhttp = x\n[server]\nnope = 1\n", 2, "not a number");
	expect_server_err("[listen]\nnope = 1\n[server]\nhttp = x\n", 2, "unknown key");
}

static void test_errors_file(void **state)
{
	struct cfg_server c;
	char err[CFG_ERR_MAX], want[700], path[512];

	(void)state;
	snprintf(path, sizeof(path), "%s/does-not-exist.ini", tmpdir);
	assert_int_equal(cfg_server_load(&c, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
	assert_string_equal(err, want);
	/* a tiny err buffer still gets a terminated prefix */
	assert_int_equal(cfg_server_load(&c, path, err, 8), -1);
	assert_int_equal(strlen(err), 7);
}

/* The appliance config in the tree loads cleanly, with 80/443. */
static void test_appliance_config(void **state)
{
	char path[PATH_MAX] = "appliance/nave.ini", exe[PATH_MAX - 64], err[CFG_ERR_MAX] = "";
	struct cfg_server c;
	ssize_t n;

	(void)state;
	if (access(path, R_OK) < 0) {
		/* run from elsewhere: build/tests/test_cfg -> ../../appliance */
		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		assert_true(n > 0);
		exe[n] = 0;
		*strrchr(exe, '/') = 0;
		snprintf(path, sizeof(path), "%s/../../appliance/nave.ini", exe);
	}
	if (cfg_server_load(&c, path, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(c.http_port, 80);
	assert_int_equal(c.https_port, 443);
	assert_int_equal(c.tunnel_port, 443);
	assert_string_equal(c.state_dir, "/var/lib/nave");
	assert_string_equal(c.runtime_dir, "/run/nave");
	assert_string_equal(c.address, "0.0.0.0");
	assert_string_equal(c.certificate, "/var/lib/nave/tls/server.crt");
	assert_int_equal(c.port_min, 22000);
	assert_int_equal(c.port_max, 22999);
}

/* ---- client ---- */

static void test_client_round_trip(void **state)
{
	struct cfg_client *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	char err[CFG_ERR_MAX] = "", path[512];
	struct stat st;

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	snprintf(path, sizeof(path), "%s/sub/dir/nave.ini", tmpdir);
	assert_int_equal(cfg_client_load(a, path, true, err, sizeof(err)), 0);
	assert_string_equal(a->path, path);
	assert_int_equal(a->pool_idle, 4);
	assert_int_equal(a->max_links, 16384);
	assert_int_equal(a->ktls, CFG_AUTO);
	assert_int_equal(a->n_tcp, 0);
	assert_int_equal(a->log_level, NLOG_INFO);
	assert_true(!strncmp(a->socket, path, strlen(path)));
	assert_string_equal(a->socket + strlen(path), ".sock");

	str_copy(a->server, sizeof(a->server), "relay.example.com");
	str_copy(a->token, sizeof(a->token), "tok#en;1");
	str_copy(a->id, sizeof(a->id), "dev1");
	str_copy(a->ca, sizeof(a->ca), " /etc/ca with spaces.pem");
	str_copy(a->fingerprint, sizeof(a->fingerprint),
		 "AB:cd:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:"
		 "77:88:99:aa:bb:cc:dd");
	a->log_json = true;
	a->log_level = NLOG_WARN;
	a->pool_idle = 2;
	a->max_links = 100;
	a->ktls = CFG_OFF;
	a->n_tcp = 2;
	str_copy(a->tcp[0].name, sizeof(a->tcp[0].name), "SSH");
	str_copy(a->tcp[0].to, sizeof(a->tcp[0].to), "127.0.0.1:22");
	a->tcp[0].port = 22022;
	a->tcp[0].proxy_protocol = CFG_PROXY_NONE;
	str_copy(a->tcp[1].name, sizeof(a->tcp[1].name), "db-1");
	str_copy(a->tcp[1].to, sizeof(a->tcp[1].to), "[::1]:5432");
	a->tcp[1].port = 0;
	a->tcp[1].proxy_protocol = CFG_PROXY_V2;
	if (cfg_client_save(a, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	{
		char tmp[600];

		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		assert_int_equal(access(tmp, F_OK), -1);
		*strrchr(tmp, '/') = 0;
		assert_int_equal(stat(tmp, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0700);
	}
	if (cfg_client_load(b, path, false, err, sizeof(err)))
		fail_msg("%s", err);
	assert_memory_equal(a, b, sizeof(*a));
	assert_string_equal(b->tcp[0].name, "SSH");
	assert_string_equal(b->ca, " /etc/ca with spaces.pem");

	/* an explicit socket is kept, the default one is not written */
	str_copy(a->socket, sizeof(a->socket), "/run/user/nave.sock");
	assert_int_equal(cfg_client_save(a, err, sizeof(err)), 0);
	assert_int_equal(cfg_client_load(b, path, false, err, sizeof(err)), 0);
	assert_string_equal(b->socket, "/run/user/nave.sock");

	/* what cannot be read back is refused */
	str_copy(a->tcp[1].name, sizeof(a->tcp[1].name), "bad name");
	assert_int_equal(cfg_client_save(a, err, sizeof(err)), -EINVAL);
	str_copy(a->tcp[1].name, sizeof(a->tcp[1].name), "ssh");
	assert_int_equal(cfg_client_save(a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "appears twice"));
	str_copy(a->tcp[1].name, sizeof(a->tcp[1].name), "db");
	str_copy(a->tcp[1].to, sizeof(a->tcp[1].to), "nowhere");
	assert_int_equal(cfg_client_save(a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "[tcp.db] to:"));
	str_copy(a->tcp[1].to, sizeof(a->tcp[1].to), "db:5432");
	str_copy(a->token, sizeof(a->token), "a\nb");
	assert_int_equal(cfg_client_save(a, err, sizeof(err)), -EINVAL);
	free(a);
	free(b);
}

static void test_client_file(void **state)
{
	struct cfg_client *c = calloc(1, sizeof(*c));
	char err[CFG_ERR_MAX] = "";
	const char *path = write_tmp("# client\n"
				     "[client]\n"
				     "server = relay.example.com:9443\n"
				     "token = abc\n"
				     "pool_idle = 8\n"
				     "[tcp.web]\n"
				     "to = localhost:8080\n"
				     "proxy_protocol = v1\n"
				     "[TCP.Mail]\n"
				     "to = 10.0.0.2:25\n"
				     "port = 2525\n");

	(void)state;
	assert_non_null(c);
	if (cfg_client_load(c, path, false, err, sizeof(err)))
		fail_msg("%s", err);
	assert_string_equal(c->server, "relay.example.com:9443");
	assert_int_equal(c->pool_idle, 8);
	assert_int_equal(c->n_tcp, 2);
	assert_string_equal(c->tcp[0].name, "web");
	assert_int_equal(c->tcp[0].proxy_protocol, CFG_PROXY_V1);
	assert_int_equal(c->tcp[0].port, 0);
	assert_string_equal(c->tcp[1].name, "Mail");
	assert_int_equal(c->tcp[1].port, 2525);
	assert_int_equal(c->tcp[1].proxy_protocol, CFG_PROXY_NONE);

	/* a missing file is an error unless missing_ok */
	assert_int_equal(cfg_client_load(c, "/nonexistent/nave.ini", false, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/nave.ini: cannot open: "));
	free(c);
}

static void test_client_errors(void **state)
{
	char *many;
	size_t off = 0;

	(void)state;
	expect_client_err("[client]\n[web.x]\nto = a:1\n", 2, "unknown section [web.x]");
	expect_client_err("[client]\nsever = x\n", 2, "[client] sever: unknown key");
	expect_client_err("[tcp.bad name]\nto = a:1\n", 1, "rule name");
	expect_client_err("[tcp.]\n", 1, "rule name");
	expect_client_err("[client]\n\n[tcp.ssh]\nport = 22\n", 3, "[tcp.ssh] to: missing");
	expect_client_err("[tcp.ssh]\nto = 127.0.0.1\n", 2, "is not HOST:PORT");
	expect_client_err("[tcp.ssh]\nto = a:1\nproxy_protocol = v3\n", 3, "not one of v1|v2");
	expect_client_err("[tcp.ssh]\nto = a:1\nport = 65536\n", 3, "out of range (0-65535)");
	expect_client_err("[tcp.a]\nto = a:1\n[tcp.A]\nto = b:1\n", 3, "appears twice");
	expect_client_err("[tcp.a]\nto=a:1\nport=5\n[tcp.b]\nto=b:1\nport=5\n", 6,
			  "5 is also asked for by [tcp.a]");
	expect_client_err("[client]\npool_idle = 0\n", 2, "out of range (1-64)");
	expect_client_err("[client]\nmax_links = 1048577\n", 2, "out of range (1-1048576)");
	expect_client_err("[client]\nktls = yes\n", 2,
			  "[client] ktls: \"yes\" is not one of auto|on|off");
	expect_client_err("[client]\nfingerprint = abcd\n", 2, "fingerprint");
	expect_client_err("[client]\nserver = a b\n", 2, "HOST[:PORT]");
	expect_client_err("[client]\nlog_format = yaml\n", 2, "text|json");
	expect_client_err("server = x\n", 1, "outside of any [section]");
	expect_client_err("[client]\nserver x\n", 2, "syntax error");

	many = malloc(CFG_MAX_RULES * 40 + 64);
	assert_non_null(many);
	for (int i = 0; i <= CFG_MAX_RULES; i++)
		off += (size_t)snprintf(many + off, CFG_MAX_RULES * 40 + 64 - off,
					"[tcp.r%d]\nto = h:%d\n", i, i + 1);
	expect_client_err(many, 2 * CFG_MAX_RULES + 1, "too many rules");
	free(many);
}

#define HASH                                                                                       \
	"$scrypt$ln=10,r=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

/* [http.NAME]: every key, each refusal with its line, TCP and HTTP share the bound and names. */
static void test_client_http(void **state)
{
	struct cfg_client *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	char err[CFG_ERR_MAX] = "", path[512], *many;
	size_t off = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/http/nave.ini", tmpdir);
	assert_int_equal(cfg_client_load(a, path, true, err, sizeof(err)), 0);
	str_copy(a->server, sizeof(a->server), "relay.example.com");
	a->n_tcp = 1;
	str_copy(a->tcp[0].name, sizeof(a->tcp[0].name), "ssh");
	str_copy(a->tcp[0].to, sizeof(a->tcp[0].to), "127.0.0.1:22");
	a->n_http = 3;
	str_copy(a->http[0].name, sizeof(a->http[0].name), "app");
	str_copy(a->http[0].domain, sizeof(a->http[0].domain), "app.example.com");
	str_copy(a->http[0].to, sizeof(a->http[0].to), "127.0.0.1:8080");
	a->http[0].redirect_https = true;
	str_copy(a->http[0].host_header, sizeof(a->http[0].host_header), "localhost:8080");
	str_copy(a->http[0].basic_auth, sizeof(a->http[0].basic_auth), "bob:" HASH);
	str_copy(a->http[1].name, sizeof(a->http[1].name), "site");
	str_copy(a->http[1].domain, sizeof(a->http[1].domain), "*.pages.example.com");
	str_copy(a->http[1].webroot, sizeof(a->http[1].webroot), "/srv/www with space");
	str_copy(a->http[2].name, sizeof(a->http[2].name), "tls");
	str_copy(a->http[2].domain, sizeof(a->http[2].domain), "mail.example.com");
	str_copy(a->http[2].to, sizeof(a->http[2].to), "[::1]:993");
	a->http[2].tls_passthrough = true;
	if (cfg_client_save(a, err, sizeof(err)))
		fail_msg("%s", err);
	if (cfg_client_load(b, path, false, err, sizeof(err)))
		fail_msg("%s", err);
	assert_memory_equal(a, b, sizeof(*a));

	/* what cannot be read back is refused */
	str_copy(a->http[2].name, sizeof(a->http[2].name), "SSH");
	assert_int_equal(cfg_client_save(a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "appears twice"));
	str_copy(a->http[2].name, sizeof(a->http[2].name), "tls");
	a->http[2].redirect_https = true;
	assert_int_equal(cfg_client_save(a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "[http.tls] tls_passthrough: excludes"));
	a->http[2].redirect_https = false;
	str_copy(a->http[0].basic_auth, sizeof(a->http[0].basic_auth), "bob:secret");
	assert_int_equal(cfg_client_save(a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "[http.app] basic_auth: is not USER:HASH"));
	assert_null(strstr(err, "secret"));
	free(a);
	free(b);

	expect_client_err("[http.w]\nto = a:1\n", 1, "[http.w] domain: missing");
	expect_client_err("[http.w]\ndomain = a..b\nto = a:1\n", 2, "not a domain name");
	expect_client_err("[http.w]\ndomain = A.Example\n", 1, "[http.w] to: missing");
	expect_client_err("[http.w]\ndomain = a.b\nto = a:1\nwebroot = /x\n", 3,
			  "to and webroot exclude");
	expect_client_err("[http.w]\ndomain = a.b\nwebroot = x\n", 3, "not an absolute path");
	expect_client_err("[http.w]\ndomain = a.b\nwebroot = /x\ntls_passthrough = on\n", 4,
			  "tls_passthrough: needs to");
	expect_client_err("[http.w]\ndomain = a.b\nto = a:1\ntls_passthrough = on\n"
			  "host_header = h\n",
			  4, "tls_passthrough: excludes");
	expect_client_err("[http.w]\ndomain = a.b\nto = a:1\nhost_header = a b\n", 4,
			  "not a Host value");
	expect_client_err("[http.w]\ndomain = a.b\nto = a:1\nbasic_auth = u:pw\n", 4,
			  "not USER:HASH");
	expect_client_err("[http.w]\ndomain = a.b\nto = a:1\nbasic_auth = u s:" HASH "\n", 4,
			  "not USER:HASH");
	expect_client_err("[http.w]\ndomain = a.b\nto = a:1\nfrob = 1\n", 4,
			  "[http.w] frob: unknown key");
	expect_client_err("[tcp.w]\nto = a:1\n[http.w]\ndomain = a.b\nto = a:1\n", 3,
			  "taken by [tcp.w]");
	expect_client_err("[http.w]\ndomain = a.b\nto = a:1\n[http.v]\ndomain = A.B\nto = a:2\n", 5,
			  "a.b is also claimed by [http.w]");

	/* CFG_MAX_RULES bounds both kinds together */
	many = malloc(CFG_MAX_RULES * 60 + 64);
	assert_non_null(many);
	for (int i = 0; i <= CFG_MAX_RULES; i++)
		off += (size_t)snprintf(many + off, CFG_MAX_RULES * 60 + 64 - off,
					i % 2 ? "[tcp.r%d]\nto = h:%d\n"
					      : "[http.r%d]\ndomain = d%d.example\nto = h:1\n",
					i, i + 1);
	expect_client_err(many, (CFG_MAX_RULES / 2) * 5 + 1, "too many rules");
	free(many);
}

/* [client] ktls: auto by default, each value read, and each kept by a rewrite. */
static void test_client_ktls(void **state)
{
	static const struct {
		const char *text;
		int want;
	} vals[] = {{"auto", CFG_AUTO}, {"on", CFG_ON}, {"off", CFG_OFF}, {"OFF", CFG_OFF}};
	struct cfg_client *c = calloc(1, sizeof(*c)), *b = calloc(1, sizeof(*b));
	char text[128], err[CFG_ERR_MAX], line[64], *saved;
	const char *path;
	FILE *f;
	long n;

	(void)state;
	assert_non_null(c);
	assert_non_null(b);
	if (cfg_client_load(c, write_tmp("[client]\nserver = relay:8443\n"), false, err,
			    sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(c->ktls, CFG_AUTO);
	for (size_t i = 0; i < ARRAY_SIZE(vals); i++) {
		snprintf(text, sizeof(text), "[client]\nserver = relay:8443\nktls = %s\n",
			 vals[i].text);
		path = write_tmp(text);
		if (cfg_client_load(c, path, false, err, sizeof(err)))
			fail_msg("%s: %s", vals[i].text, err);
		assert_int_equal(c->ktls, vals[i].want);
		/* a rewrite (nave configure, a rule command) keeps it */
		c->n_tcp = 1;
		str_copy(c->tcp[0].name, sizeof(c->tcp[0].name), "web");
		str_copy(c->tcp[0].to, sizeof(c->tcp[0].to), "127.0.0.1:8000");
		if (cfg_client_save(c, err, sizeof(err)))
			fail_msg("%s: %s", vals[i].text, err);
		if (cfg_client_load(b, path, false, err, sizeof(err)))
			fail_msg("%s: %s", vals[i].text, err);
		assert_int_equal(b->ktls, vals[i].want);
		assert_int_equal(b->n_tcp, 1);
		f = fopen(path, "r");
		assert_non_null(f);
		assert_int_equal(fseek(f, 0, SEEK_END), 0);
		n = ftell(f);
		rewind(f);
		saved = calloc(1, (size_t)n + 1);
		assert_non_null(saved);
		assert_int_equal(fread(saved, 1, (size_t)n, f), (size_t)n);
		fclose(f);
		snprintf(line, sizeof(line), "\nktls = %s\n",
			 vals[i].want == CFG_AUTO ? "auto"
			 : vals[i].want		  ? "on"
						  : "off");
		if (!strstr(saved, line))
			fail_msg("%s: no \"%s\" in the saved file:\n%s", vals[i].text, line + 1,
				 saved);
		free(saved);
	}
	free(c);
	free(b);
}

/* [client] remote_rules: tcp-http by default, each value read and kept by a rewrite. */
static void test_client_remote_rules(void **state)
{
	static const struct {
		const char *text;
		unsigned want;
	} vals[] = {
	    {"off", CFG_REMOTE_OFF}, {"tcp-http", CFG_REMOTE_TCP_HTTP}, {"all", CFG_REMOTE_ALL}};
	struct cfg_client *c = calloc(1, sizeof(*c)), *b = calloc(1, sizeof(*b));
	char text[128], err[CFG_ERR_MAX];
	const char *path;

	(void)state;
	assert_non_null(c);
	assert_non_null(b);
	if (cfg_client_load(c, write_tmp("[client]\nserver = relay:8443\n"), false, err,
			    sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(c->remote_rules, CFG_REMOTE_TCP_HTTP);
	for (size_t i = 0; i < ARRAY_SIZE(vals); i++) {
		snprintf(text, sizeof(text), "[client]\nserver = relay:8443\nremote_rules = %s\n",
			 vals[i].text);
		path = write_tmp(text);
		if (cfg_client_load(c, path, false, err, sizeof(err)))
			fail_msg("%s: %s", vals[i].text, err);
		assert_int_equal(c->remote_rules, vals[i].want);
		if (cfg_client_save(c, err, sizeof(err)))
			fail_msg("%s: %s", vals[i].text, err);
		if (cfg_client_load(b, path, false, err, sizeof(err)))
			fail_msg("%s: %s", vals[i].text, err);
		assert_int_equal(b->remote_rules, vals[i].want);
	}
	expect_client_err("[client]\nremote_rules = webroot\n", 2,
			  "[client] remote_rules: \"webroot\" is not one of off|tcp-http|all");
	free(c);
	free(b);
}

/* [client] remote_to: HOST:PORT patterns, checked when read, kept by a rewrite, matched. */
static void test_client_remote_to(void **state)
{
	struct cfg_client *c = calloc(1, sizeof(*c));
	char err[CFG_ERR_MAX];
	const char *path;

	(void)state;
	assert_non_null(c);
	path = write_tmp("[client]\nserver = relay:8443\n"
			 "remote_to = 127.0.0.1:*, *:8080 [::1]:22,Host.Lan:443\n");
	if (cfg_client_load(c, path, false, err, sizeof(err)))
		fail_msg("%s", err);
	assert_string_equal(c->remote_to, "127.0.0.1:*, *:8080 [::1]:22,Host.Lan:443");
	if (cfg_client_save(c, err, sizeof(err)) ||
	    cfg_client_load(c, path, false, err, sizeof(err)))
		fail_msg("%s", err);
	assert_string_equal(c->remote_to, "127.0.0.1:*, *:8080 [::1]:22,Host.Lan:443");
	assert_true(cfg_remote_to_ok(c->remote_to, "127.0.0.1:22"));
	assert_true(cfg_remote_to_ok(c->remote_to, "10.0.0.1:8080"));
	assert_true(cfg_remote_to_ok(c->remote_to, "[::1]:22"));
	assert_true(cfg_remote_to_ok(c->remote_to, "host.lan:443"));
	assert_false(cfg_remote_to_ok(c->remote_to, "host.lan:444"));
	assert_false(cfg_remote_to_ok(c->remote_to, "localhost:22"));
	assert_false(cfg_remote_to_ok(c->remote_to, "[::1]:23"));
	assert_false(cfg_remote_to_ok(c->remote_to, "10.0.0.1:808"));
	assert_false(cfg_remote_to_ok(c->remote_to, NULL));
	assert_true(cfg_remote_to_ok("", "anything:1"));
	expect_client_err("[client]\nremote_to = 127.0.0.1\n", 2,
			  "[client] remote_to: \"127.0.0.1\" is not a HOST:PORT pattern (HOST or "
			  "PORT may be '*', IPv6 as [ADDR]:PORT)");
	expect_client_err("[client]\nremote_to = *:70000\n", 2,
			  "[client] remote_to: \"*:70000\" is not a HOST:PORT pattern (HOST or "
			  "PORT may be '*', IPv6 as [ADDR]:PORT)");
	expect_client_err("[client]\nremote_to = a b:1\n", 2,
			  "[client] remote_to: \"a\" is not a HOST:PORT pattern (HOST or "
			  "PORT may be '*', IPv6 as [ADDR]:PORT)");
	free(c);
}

static void test_client_server_values(void **state)
{
	static const char *const good[] = {
	    "relay.example.com", "relay:8443", "[::1]:8443", "[::1]", "::1", "10.0.0.1"};
	static const char *const bad[] = {"relay:", "relay:0", "[::1", "a b", "[zz]:1"};
	struct cfg_client *c = calloc(1, sizeof(*c));
	char text[128], err[CFG_ERR_MAX];

	(void)state;
	assert_non_null(c);
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		snprintf(text, sizeof(text), "[client]\nserver = %s\n", good[i]);
		if (cfg_client_load(c, write_tmp(text), false, err, sizeof(err)))
			fail_msg("%s: %s", good[i], err);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		snprintf(text, sizeof(text), "[client]\nserver = %s\n", bad[i]);
		if (!cfg_client_load(c, write_tmp(text), false, err, sizeof(err)))
			fail_msg("accepted %s", bad[i]);
	}
	free(c);
}

static void test_client_default_path(void **state)
{
	char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
	char out[CFG_PATH_MAX];

	(void)state;
	setenv("NAVE_CONFIG", "/etc/x.ini", 1);
	cfg_client_default_path(out, sizeof(out));
	assert_string_equal(out, "/etc/x.ini");
	unsetenv("NAVE_CONFIG");
	setenv("HOME", "/home/u", 1);
	cfg_client_default_path(out, sizeof(out));
	assert_string_equal(out, "/home/u/.config/nave/nave.ini");
	unsetenv("HOME");
	cfg_client_default_path(out, sizeof(out));
	assert_string_equal(out, "./nave.ini");
	if (home)
		setenv("HOME", home, 1);
	free(home);
}

/* ---- helpers ---- */

static void test_duration(void **state)
{
	uint64_t ms = 0;

	(void)state;
	assert_int_equal(cfg_parse_duration_ms("10s", &ms), 0);
	assert_int_equal(ms, 10000);
	assert_int_equal(cfg_parse_duration_ms("500ms", &ms), 0);
	assert_int_equal(ms, 500);
	assert_int_equal(cfg_parse_duration_ms("2m", &ms), 0);
	assert_int_equal(ms, 120000);
	assert_int_equal(cfg_parse_duration_ms("1h", &ms), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(cfg_parse_duration_ms("3d", &ms), 0);
	assert_int_equal(ms, 3 * 86400000ull);
	assert_int_equal(cfg_parse_duration_ms("7", &ms), 0);
	assert_int_equal(ms, 7000);
	assert_int_equal(cfg_parse_duration_ms("0", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(cfg_parse_duration_ms("18446744073709551", &ms), 0); /* s: fits */
	assert_int_equal(cfg_parse_duration_ms("18446744073709552", &ms), -EINVAL);
	assert_int_equal(cfg_parse_duration_ms("99999999999999999999ms", &ms), -EINVAL);
	assert_int_equal(cfg_parse_duration_ms("", &ms), -EINVAL);
	assert_int_equal(cfg_parse_duration_ms("s", &ms), -EINVAL);
	assert_int_equal(cfg_parse_duration_ms("-1s", &ms), -EINVAL);
	assert_int_equal(cfg_parse_duration_ms("1.5s", &ms), -EINVAL);
	assert_int_equal(cfg_parse_duration_ms("10 s", &ms), -EINVAL);
	assert_int_equal(cfg_parse_duration_ms("10sec", &ms), -EINVAL);
	assert_int_equal(cfg_parse_duration_ms("10w", &ms), -EINVAL);
	assert_int_equal(cfg_parse_duration_ms(NULL, &ms), -EINVAL);
}

static void test_hostport(void **state)
{
	char host[64];
	uint16_t port = 0;

	(void)state;
	assert_int_equal(cfg_parse_hostport("[::1]:80", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 80);
	assert_int_equal(cfg_parse_hostport("localhost:65535", host, sizeof(host), &port), 0);
	assert_string_equal(host, "localhost");
	assert_int_equal(port, 65535);
	assert_int_equal(cfg_parse_hostport("10.1.2.3:1", host, sizeof(host), &port), 0);
	assert_int_equal(port, 1);
	assert_int_equal(cfg_parse_hostport("localhost", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport("localhost:", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport("localhost:0", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport("localhost:65536", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport("localhost:000080", host, sizeof(host), &port),
			 -EINVAL);
	assert_int_equal(cfg_parse_hostport("localhost:+80", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport("", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport(":80", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport("::1:80", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport("[::1]", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport("[::1]80", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport("[]:80", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport("[nope]:80", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport("a b:80", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(cfg_parse_hostport(NULL, host, sizeof(host), &port), -EINVAL);
	/* too small for the host */
	assert_int_equal(cfg_parse_hostport("localhost:80", host, 5, &port), -EINVAL);
	/* validation only */
	assert_int_equal(cfg_parse_hostport("[::1]:80", NULL, 0, NULL), 0);
}

static void test_valid_name(void **state)
{
	char name[80];

	(void)state;
	assert_true(cfg_valid_name("ssh"));
	assert_true(cfg_valid_name("A-b_9"));
	assert_false(cfg_valid_name(""));
	assert_false(cfg_valid_name(NULL));
	assert_false(cfg_valid_name("a.b"));
	assert_false(cfg_valid_name("a b"));
	memset(name, 'x', 63);
	name[63] = 0;
	assert_true(cfg_valid_name(name));
	name[63] = 'x';
	name[64] = 0;
	assert_false(cfg_valid_name(name));
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/nave-test-cfg.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[400];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* cfg_server_diff: what a reload reports as waiting for a restart */
static void test_server_diff(void **state)
{
	static struct cfg_server a, b;
	char err[CFG_ERR_MAX], out[256], tiny[12];

	(void)state;
	assert_int_equal(
	    cfg_server_load(&a, write_tmp("[server]\ndomain = a.example\n"), err, sizeof(err)), 0);
	assert_int_equal(
	    cfg_server_load(&b, write_tmp("[server]\ndomain = a.example\n"), err, sizeof(err)), 0);
	assert_int_equal(cfg_server_diff(&a, &b, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	/* a shorter string over a longer default: equal values, whatever follows the NUL */
	assert_int_equal(
	    cfg_server_load(&b,
			    write_tmp("[server]\ndomain = a.example\nlog_level = warn\n"
				      "[listen]\nhttp = 81\n[ports]\nrange = 22000-22500\n"
				      "[http]\ntrusted_proxies = 10.0.0.0/8\n"),
			    err, sizeof(err)),
	    0);
	assert_int_equal(cfg_server_diff(&a, &b, out, sizeof(out)), 4);
	assert_string_equal(out, "[server] log_level, [listen] http, [ports] range, "
				 "[http] trusted_proxies");
	/* the high end of a range alone counts */
	assert_int_equal(cfg_server_load(&b,
					 write_tmp("[server]\ndomain = a.example\n"
						   "[ports]\nrange = 22000-22998\n"),
					 err, sizeof(err)),
			 0);
	assert_int_equal(cfg_server_diff(&a, &b, out, sizeof(out)), 1);
	assert_string_equal(out, "[ports] range");
	/* cut short, still a string, still counted */
	assert_int_equal(
	    cfg_server_load(&b, write_tmp("[server]\ndomain = b.example\nlog_level = warn\n"), err,
			    sizeof(err)),
	    0);
	assert_int_equal(cfg_server_diff(&a, &b, tiny, sizeof(tiny)), 2);
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
	assert_string_equal(tiny + sizeof(tiny) - 4, "...");
}

/* cfg_server_reload: the live keys go into run, the rest is named for a restart */
static void test_server_reload(void **state)
{
	static struct cfg_server run, next;
	struct cfg_reload r;
	char err[CFG_ERR_MAX];

	(void)state;
	assert_int_equal(cfg_server_load(&run, NULL, err, sizeof(err)), 0);
	assert_int_equal(cfg_server_load(&next, NULL, err, sizeof(err)), 0);
	memset(&r, 0, sizeof(r));
	cfg_server_reload(&run, &next, &r);
	assert_int_equal(r.napplied, 0);
	assert_int_equal(r.nwaiting, 0);
	assert_string_equal(r.applied, "");
	assert_string_equal(r.waiting, "");
	assert_int_equal(
	    cfg_server_load(&next,
			    write_tmp("[server]\nlog_level = warn\n[listen]\nhttp = 81\n"
				      "[ports]\nrange = 21000-23999\nmax_conns_per_source = 3\n"
				      "reserve = off\n[tunnel]\nidle_timeout = 5s\n"
				      "[http]\nallowed_domains = *.example.com\nmax_head = 2048\n"
				      "[datapath]\nworkers = 3\n[xdp]\nsyn_rate = 7\n"),
			    err, sizeof(err)),
	    0);
	cfg_server_reload(&run, &next, &r);
	assert_int_equal(r.napplied, 7);
	assert_string_equal(r.applied, "[server] log_level, [ports] range, "
				       "[ports] max_conns_per_source, [tunnel] idle_timeout, "
				       "[http] allowed_domains, [http] max_head, [xdp] syn_rate");
	assert_int_equal(r.nwaiting, 3);
	assert_string_equal(r.waiting, "[listen] http, [ports] reserve, [datapath] workers");
	/* live values are in run now, restart-only ones are not */
	assert_int_equal(run.port_min, 21000);
	assert_int_equal(run.port_max, 23999);
	assert_int_equal(run.max_conns_per_source, 3);
	assert_int_equal(run.idle_timeout_ms, 5000);
	assert_string_equal(run.allowed_domains, "*.example.com");
	assert_int_equal(run.max_head, 2048);
	assert_int_equal(run.syn_rate, 7);
	assert_int_equal(run.http_port, 8080);
	assert_true(run.reserve_ports);
	assert_int_equal(run.workers, 0);
	/* the same file again: nothing more applies, the same keys still wait */
	cfg_server_reload(&run, &next, &r);
	assert_int_equal(r.napplied, 0);
	assert_int_equal(r.nwaiting, 3);
	assert_string_equal(r.waiting, "[listen] http, [ports] reserve, [datapath] workers");
}

/* a daemon's step refuses the range: it stays, the rest applies */
static void refuse_range(void *arg, const struct cfg_server *run, struct cfg_server *next,
			 struct cfg_reload *r)
{
	(*(int *)arg)++;
	snprintf(r->refused, sizeof(r->refused), "[ports] range: no");
	next->port_min = run->port_min;
	next->port_max = run->port_max;
}

static void rewrite(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

/* cfg_server_reread: the file again, the daemon's step, then the table */
static void test_server_reread(void **state)
{
	static struct cfg_server run;
	const char *path = write_tmp("[ports]\nrange = 22000-22999\n");
	struct cfg_reload r;
	char err[CFG_ERR_MAX];
	int calls = 0;

	(void)state;
	assert_int_equal(cfg_server_load(&run, path, err, sizeof(err)), 0);
	rewrite(path, "[server]\nlog_level = error\n[ports]\nrange = 22000-22099\n"
		      "max_per_tunnel = 9\n[datapath]\nbuffers = 256\n");
	assert_int_equal(cfg_server_reread(&run, "test_cfg", refuse_range, &calls, &r), 0);
	assert_int_equal(calls, 1);
	assert_int_equal(run.port_max, 22999);
	assert_int_equal(run.max_per_tunnel, 9);
	assert_int_equal(run.log_level, 3);
	assert_int_equal(run.buffers, 128);
	assert_string_equal(r.applied, "[server] log_level, [ports] max_per_tunnel");
	assert_string_equal(r.waiting, "[datapath] buffers");
	assert_string_equal(r.refused, "[ports] range: no");
	/* a file that does not load: nothing changes, the step is not called */
	rewrite(path, "[ports]\nmax_per_tunnel = 1\nbogus = 1\n");
	assert_int_equal(cfg_server_reread(&run, "test_cfg", refuse_range, &calls, &r), -1);
	assert_int_equal(calls, 1);
	assert_int_equal(run.max_per_tunnel, 9);
	assert_non_null(strstr(r.error, "bogus"));
	log_init("test_cfg", 1, false);
}

/* the table's live column, as the man pages and the README say it */
static void test_server_key_live(void **state)
{
	static const char *const live[][2] = {
	    {"server", "log_level"},
	    {"server", "log_format"},
	    {"ports", "range"},
	    {"ports", "max_per_tunnel"},
	    {"ports", "max_conns_per_source"},
	    {"tunnel", "max_pool_size"},
	    {"tunnel", "max_links"},
	    {"tunnel", "heartbeat"},
	    {"tunnel", "idle_timeout"},
	    {"tunnel", "pending_timeout"},
	    {"http", "trusted_proxies"},
	    {"http", "allowed_domains"},
	    {"http", "certificates"},
	    {"http", "header_timeout"},
	    {"http", "keepalive_timeout"},
	    {"http", "max_head"},
	    {"xdp", "syn_rate"},
	    {"tls", "certificate"},
	    {"tls", "private_key"},
	    {"tls", "pq"},
	    {"acme", "directory"},
	    {"acme", "domains"},
	    {"acme", "renew_before"},
	};
	static const char *const restart[][2] = {
	    {"server", "domain"},	 {"server", "state_dir"},  {"server", "runtime_dir"},
	    {"server", "user"},		 {"listen", "http"},	   {"listen", "https"},
	    {"listen", "tunnel"},	 {"listen", "address"},	   {"ports", "reserve"},
	    {"datapath", "workers"},	 {"datapath", "ktls"},	   {"datapath", "steering"},
	    {"datapath", "buffer_size"}, {"datapath", "buffers"},  {"xdp", "interface"},
	    {"metrics", "listen"},	 {"ports", "no_such_key"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		assert_true(cfg_server_key_live(live[i][0], live[i][1]));
	for (size_t i = 0; i < sizeof(restart) / sizeof(restart[0]); i++)
		assert_false(cfg_server_key_live(restart[i][0], restart[i][1]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_embedded_default),
	    cmocka_unit_test(test_default_text_matches_table),
	    cmocka_unit_test(test_full_file),
	    cmocka_unit_test(test_print_round_trip),
	    cmocka_unit_test(test_errors_structure),
	    cmocka_unit_test(test_errors_values),
	    cmocka_unit_test(test_errors_file),
	    cmocka_unit_test(test_appliance_config),
	    cmocka_unit_test(test_client_round_trip),
	    cmocka_unit_test(test_client_file),
	    cmocka_unit_test(test_client_errors),
	    cmocka_unit_test(test_client_http),
	    cmocka_unit_test(test_client_ktls),
	    cmocka_unit_test(test_client_remote_rules),
	    cmocka_unit_test(test_client_remote_to),
	    cmocka_unit_test(test_client_server_values),
	    cmocka_unit_test(test_client_default_path),
	    cmocka_unit_test(test_server_diff),
	    cmocka_unit_test(test_server_reload),
	    cmocka_unit_test(test_server_reread),
	    cmocka_unit_test(test_server_key_live),
	    cmocka_unit_test(test_duration),
	    cmocka_unit_test(test_hostport),
	    cmocka_unit_test(test_valid_name),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * Configuration: INI text into validated plain structs. Every key is one row
 * of a table {section, key, default text, type, offset}; loading applies all
 * defaults, then the file. iniparser (the only user in the tree) supplies the
 * values, but it knows no line numbers and is lax about what it skips, so a
 * line scanner here reads the same text first: it rejects syntax errors,
 * unknown sections and keys, duplicates and the constructs iniparser handles
 * oddly (continuation lines, over-long lines, NUL bytes), and remembers the
 * line of every section and key. iniparser is then given exactly the text
 * before the first such error (through a memfd, so both read the same bytes),
 * which keeps errors in file order: the first bad line wins.
 */
#include "cfg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Debian ships the header in /usr/include/iniparser/, others in /usr/include/. */
#if defined(__has_include)
#if __has_include(<iniparser.h>)
#include <iniparser.h>
#else
#include <iniparser/iniparser.h>
#endif
#else
#include <iniparser.h>
#endif

#include "cidr.h"
#include "log.h"
#include "domain.h"
#include "mesh.h"
#include "log.h"
#include "util.h"

#define CFG_FILE_MAX (1u << 20) /* bytes; a config is a few hundred */
#define INI_LINE_MAX 1000	/* iniparser 4.1 fails on lines of 1023+ */
#define INI_MAX_SEC  (16 + CFG_MAX_RULES + CFG_MAX_MAPS + CFG_MAX_SOCKS)
#define INI_MAX_KEY  768
#define INI_NAME_MAX 80
#define EMBEDDED     "(embedded default)"

const char cfg_server_default_ini[] =
    "# nave embedded default: a working single-machine setup on 127.0.0.1.\n"
    "# HTTP on 8080, HTTPS and tunnels on 8443, TCP ports 22000-22999, state in\n"
    "# ./var, sockets in ./var/run, a self-signed certificate made on first start.\n"
    "\n"
    "[server]\n"
    "domain = localhost\n"
    "state_dir = ./var\n"
    "runtime_dir = ./var/run\n"
    "log_level = info\n"
    "log_format = text\n"
    "# started as root: bind, load BPF, then run as this user (empty: stay as started)\n"
    "user =\n"
    "\n"
    "[listen]\n"
    "http = 8080\n"
    "https = 8443\n"
    "# empty: tunnels share the https port\n"
    "tunnel =\n"
    "address = 127.0.0.1\n"
    "\n"
    "[ports]\n"
    "range = 22000-22999\n"
    "max_per_tunnel = 5\n"
    "# open public connections per source address (IPv6: per /64) and tunnel, and TLS\n"
    "# handshakes one source has unfinished on the tunnel port (per worker); 0 = no limit\n"
    "max_conns_per_source = 256\n"
    "# put the range into net.ipv4.ip_local_reserved_ports at start (never ephemeral ports)\n"
    "reserve = on\n"
    "\n"
    "[tunnel]\n"
    "max_pool_size = 8\n"
    "# data links per tunnel: one per open relayed connection (past it a new one is reset)\n"
    "max_links = 16384\n"
    "heartbeat = 10s\n"
    "# a relayed connection with no bytes either way for this long is reset; 0 = off\n"
    "idle_timeout = 1h\n"
    "# how long a public connection waits for a free data link before it is reset\n"
    "pending_timeout = 10s\n"
    "\n"
    "[udp]\n"
    "# UDP port tunnels (nave tunnel udp add): a flow is one source address and port\n"
    "# a flow without a datagram either way for this long ends\n"
    "idle_timeout = 60s\n"
    "# open flows per tunnel; a new flow past it is dropped (counted)\n"
    "max_flows = 1024\n"
    "# datagrams a flow queues while it waits for a data link; more are dropped (counted)\n"
    "queue = 64\n"
    "\n"
    "[tls]\n"
    "# empty: state_dir/tls/server.crt and server.key, self-signed on first start\n"
    "certificate =\n"
    "private_key =\n"
    "pq = on\n"
    "# clients may log in with a certificate of this CA (navectl pki init makes one);\n"
    "# the CRL: empty means crl.pem beside client_ca when it exists\n"
    "client_ca =\n"
    "client_crl =\n"
    "# off | optional (a token or a certificate) | required (certificates only);\n"
    "# empty: optional when client_ca is set, else off\n"
    "client_auth =\n"
    "\n"
    "[datapath]\n"
    "workers = auto\n"
    "ktls = auto\n"
    "steering = auto\n"
    "buffer_size = 65536\n"
    "buffers = 128\n"
    "\n"
    "[http]\n"
    "# proxies in front of the edge whose X-Forwarded-For chain is kept (CIDRs); empty: none\n"
    "trusted_proxies =\n"
    "# domains clients may claim (names and *.NAME wildcards); empty: any\n"
    "allowed_domains =\n"
    "# per-domain certificates for edge termination (DOMAIN.crt + DOMAIN.key); empty: "
    "state_dir/certs\n"
    "certificates =\n"
    "# a request head must arrive whole within header_timeout and fit in max_head bytes\n"
    "header_timeout = 10s\n"
    "# an HTTP connection idle between requests (every answer given) ends; 0 = never\n"
    "keepalive_timeout = 30s\n"
    "max_head = 16384\n"
    "\n"
    "[xdp]\n"
    "# empty: no XDP filter\n"
    "interface =\n"
    "syn_rate = 0\n"
    "\n"
    "[metrics]\n"
    "# empty: no metrics listener\n"
    "listen =\n"
    "\n"
    "[admin]\n"
    "# HOST:PORT of the remote admin API over TLS (the server certificate); empty: off\n"
    "listen =\n"
    "# a login session ends this long after the login, or after this long unused\n"
    "session_lifetime = 12h\n"
    "session_idle = 1h\n"
    "# a user with 5 failed logins in a row from one address is locked there this long\n"
    "lockout = 15m\n"
    "# on: a user without two-factor (TOTP) cannot log in\n"
    "require_two_factor = on\n"
    "\n"
    "[acme]\n"
    "# an ACME CA's directory URL (https://...); empty: no ACME certificates\n"
    "directory =\n"
    "email =\n"
    "# names to certify (HTTP-01, no wildcards); empty: [server] domain\n"
    "domains =\n"
    "# CA file trusted for the directory's own HTTPS; empty: the system's\n"
    "ca =\n"
    "# renew this long before expiry (at most a third of a certificate's lifetime)\n"
    "renew_before = 30d\n"
    "# on: agree to the CA's terms of service (required by CAs that have them)\n"
    "accept_terms = off\n"
    "\n"
    "[records]\n"
    "# connection records (navectl connections ls) older than this are removed\n"
    "keep = 30d\n"
    "# at most this many are kept (the oldest go first)\n"
    "max_rows = 1000000\n"
    "\n"
    "[socks]\n"
    "# what clients' port maps and SOCKS proxies may reach outside the tunnels: address\n"
    "# blocks and hostname patterns (NAME, *.NAME), comma-separated; empty: nothing external\n"
    "allow =\n"
    "# names relayd's resolver keeps (16-65536)\n"
    "dns_cache = 512\n"
    "# relayd's own SOCKS5 server (HOST:PORT; empty: off): user a tunnel id or group id,\n"
    "# password that tunnel's token; tls_listen: the same inside TLS (the server certificate)\n"
    "listen =\n"
    "tls_listen =\n";

/* ---- the tables ---- */

enum row_type {
	R_STR,	       /* text without control characters */
	R_DOMAIN,      /* a DNS name */
	R_ADDR,	       /* an IPv4 or IPv6 literal */
	R_LISTEN,      /* empty or HOST:PORT */
	R_IFNAME,      /* empty or a network interface name */
	R_SERVER,      /* empty or HOST[:PORT] */
	R_HOSTPORT,    /* HOST:PORT */
	R_DOMAINS,     /* empty or domain names and wildcards ("*.NAME"), ',' or ' ' between */
	R_CIDRS,       /* empty or CIDR blocks (or addresses), ',' or ' ' between */
	R_TOKEN,       /* text without spaces or control characters */
	R_PATTERN,     /* a domain name or wildcard "*.NAME", stored lowercased */
	R_ABSPATH,     /* empty or an absolute path */
	R_HOSTHDR,     /* empty or a Host header value (cfg_valid_host_header) */
	R_AUTH,	       /* empty or "USER:HASH" (cfg_valid_basic_auth) */
	R_URL,	       /* empty or an https:// URL (cfg_valid_url) */
	R_EMAIL,       /* empty or an e-mail address (cfg_valid_email) */
	R_HOSTPATS,    /* empty or HOST:PORT patterns ('*' for either part), ',' or ' ' between */
	R_DEST,	       /* a port map's destination (cfg_valid_destination) */
	R_USER,	       /* empty or 1..64 of [A-Za-z0-9._-] */
	R_PWHASH,      /* empty or "$scrypt$..." as --auth stores it (common/passwd.h) */
	R_MESHALLOW,   /* empty or CIDRs and hostname patterns, ',' between (mesh_allow_norm) */
	R_FPR,	       /* empty or hex SHA-256, colons allowed */
	R_LOGLEVEL,    /* int: NLOG_* */
	R_LOGFMT,      /* bool: text|json */
	R_BOOL,	       /* bool */
	R_PORT,	       /* uint16_t in min..max */
	R_PORT_OPT,    /* uint16_t: empty is 0, else 1..65535 */
	R_RANGE,       /* uint16_t pair "low-high" at off and off2 */
	R_UINT,	       /* unsigned in min..max */
	R_DURATION,    /* unsigned milliseconds in min..max */
	R_WORKERS,     /* unsigned: auto is 0, else min..max */
	R_KTLS,	       /* int: auto|on|off */
	R_STEERING,    /* int: auto|bpf|listeners */
	R_CLIENT_AUTH, /* int: off|optional|required (CFG_CLIENT_AUTH_*) */
	R_POW2,	       /* unsigned power of two in min..max */
	R_PROXY,       /* int: empty|v1|v2 */
	R_REMOTE,      /* unsigned: off|tcp-http|all (enum cfg_remote) */
	R_TRANSPORT,   /* int: tcp (0) or udp (1) */
};

struct cfg_row {
	const char *section; /* "tcp.*" for the rule sections */
	const char *key;
	const char *def; /* default, as file text */
	enum row_type type;
	size_t off;  /* into the struct the section fills */
	size_t size; /* of the field */
	size_t off2; /* R_RANGE: the high end */
	uint64_t min, max;
	bool required; /* may not be empty */
	bool live;     /* server: a reload applies it (cfg_server_reload); else at restart */
	bool yes;      /* R_BOOL written as yes / no (else on / off) */
};

#define ROW(st, sec, k, d, t, f, ...)                                                              \
	{                                                                                          \
		.section = sec, .key = k, .def = d, .type = t, .off = offsetof(st, f),             \
		.size = sizeof(((st *)0)->f), __VA_ARGS__                                          \
	}
#define SRV(...)   ROW(struct cfg_server, __VA_ARGS__)
#define CLI(...)   ROW(struct cfg_client, "client", __VA_ARGS__)
#define TCP(...)   ROW(struct cfg_tcp_rule, "tcp.*", __VA_ARGS__)
#define HTTP(...)  ROW(struct cfg_http_rule, "http.*", __VA_ARGS__)
#define PMAP(...)  ROW(struct cfg_portmap, "portmap.*", __VA_ARGS__)
#define SOCKS(...) ROW(struct cfg_socks, "socks.*", __VA_ARGS__)

static const struct cfg_row server_rows[] = {
    SRV("server", "domain", "localhost", R_DOMAIN, domain, .required = true),
    SRV("server", "state_dir", "./var", R_STR, state_dir, .required = true),
    SRV("server", "runtime_dir", "./var/run", R_STR, runtime_dir, .required = true),
    SRV("server", "log_level", "info", R_LOGLEVEL, log_level, .live = true),
    SRV("server", "log_format", "text", R_LOGFMT, log_json, .live = true),
    SRV("server", "user", "", R_TOKEN, user),
    SRV("listen", "http", "8080", R_PORT, http_port, .min = 1, .max = 65535),
    SRV("listen", "https", "8443", R_PORT, https_port, .min = 1, .max = 65535),
    SRV("listen", "tunnel", "", R_PORT_OPT, tunnel_port),
    SRV("listen", "address", "127.0.0.1", R_ADDR, address, .required = true),
    SRV("ports", "range", "22000-22999", R_RANGE, port_min,
	.off2 = offsetof(struct cfg_server, port_max), .live = true),
    SRV("ports", "max_per_tunnel", "5", R_UINT, max_per_tunnel, .min = 1, .max = 65535,
	.live = true),
    SRV("ports", "max_conns_per_source", "256", R_UINT, max_conns_per_source, .min = 0,
	.max = 1048576, .live = true),
    SRV("ports", "reserve", "on", R_BOOL, reserve_ports),
    SRV("tunnel", "max_pool_size", "8", R_UINT, max_pool_size, .min = 1, .max = 256, .live = true),
    SRV("tunnel", "max_links", "16384", R_UINT, max_links, .min = 1, .max = 1048576, .live = true),
    SRV("tunnel", "heartbeat", "10s", R_DURATION, heartbeat_ms, .min = 1000, .max = 3600000,
	.live = true),
    SRV("tunnel", "idle_timeout", "1h", R_DURATION, idle_timeout_ms, .min = 0,
	.max = 30 * 86400000u, .live = true),
    SRV("tunnel", "pending_timeout", "10s", R_DURATION, pending_timeout_ms, .min = 1000,
	.max = 600000, .live = true),
    SRV("udp", "idle_timeout", "60s", R_DURATION, udp_idle_ms, .min = 1000, .max = 86400000u,
	.live = true),
    SRV("udp", "max_flows", "1024", R_UINT, udp_max_flows, .min = 1, .max = 1048576, .live = true),
    SRV("udp", "queue", "64", R_UINT, udp_queue, .min = 1, .max = 4096, .live = true),
    SRV("tls", "certificate", "", R_STR, certificate, .live = true),
    SRV("tls", "private_key", "", R_STR, private_key, .live = true),
    SRV("tls", "pq", "on", R_BOOL, pq, .live = true),
    SRV("tls", "client_ca", "", R_STR, client_ca, .live = true),
    SRV("tls", "client_crl", "", R_STR, client_crl, .live = true),
    SRV("tls", "client_auth", "", R_CLIENT_AUTH, client_auth, .live = true),
    SRV("datapath", "workers", "auto", R_WORKERS, workers, .min = 1, .max = 256),
    SRV("datapath", "ktls", "auto", R_KTLS, ktls),
    SRV("datapath", "steering", "auto", R_STEERING, steering),
    SRV("datapath", "buffer_size", "65536", R_POW2, buffer_size, .min = 1024, .max = 1048576),
    SRV("datapath", "buffers", "128", R_POW2, buffers, .min = 8, .max = 32768),
    SRV("http", "trusted_proxies", "", R_CIDRS, trusted_proxies, .live = true),
    SRV("http", "allowed_domains", "", R_DOMAINS, allowed_domains, .live = true),
    SRV("http", "certificates", "", R_STR, certificates, .live = true),
    SRV("http", "header_timeout", "10s", R_DURATION, header_timeout_ms, .min = 1000, .max = 600000,
	.live = true),
    SRV("http", "keepalive_timeout", "30s", R_DURATION, keepalive_ms, .min = 0, .max = 3600000,
	.live = true),
    /* at most 32 KiB: a forwarded head always fits a link's send buffer (64 KiB or more) */
    SRV("http", "max_head", "16384", R_UINT, max_head, .min = 1024, .max = 32768, .live = true),
    SRV("xdp", "interface", "", R_IFNAME, xdp_interface),
    SRV("xdp", "syn_rate", "0", R_UINT, syn_rate, .min = 0, .max = UINT_MAX, .live = true),
    SRV("metrics", "listen", "", R_LISTEN, metrics_listen),
    SRV("admin", "listen", "", R_LISTEN, admin_listen),
    SRV("admin", "session_lifetime", "12h", R_DURATION, admin_session_lifetime_ms, .min = 1000,
	.max = 30 * 86400000u, .live = true),
    SRV("admin", "session_idle", "1h", R_DURATION, admin_session_idle_ms, .min = 1000,
	.max = 30 * 86400000u, .live = true),
    SRV("admin", "lockout", "15m", R_DURATION, admin_lockout_ms, .min = 1000, .max = 86400000u,
	.live = true),
    SRV("admin", "require_two_factor", "on", R_BOOL, admin_require_two_factor, .live = true),
    SRV("acme", "directory", "", R_URL, acme_directory, .live = true),
    SRV("acme", "email", "", R_EMAIL, acme_email, .live = true),
    SRV("acme", "domains", "", R_DOMAINS, acme_domains, .live = true),
    SRV("acme", "ca", "", R_ABSPATH, acme_ca, .live = true),
    SRV("acme", "renew_before", "30d", R_DURATION, acme_renew_before_ms, .min = 3600000,
	.max = 45 * 86400000u, .live = true),
    SRV("acme", "accept_terms", "off", R_BOOL, acme_accept_terms, .live = true),
    SRV("records", "keep", "30d", R_DURATION, records_keep_ms, .min = 3600000,
	.max = 3650 * 86400000ull, .live = true),
    SRV("records", "max_rows", "1000000", R_UINT, records_max_rows, .min = 1, .max = 1000000000,
	.live = true),
    SRV("socks", "allow", "", R_MESHALLOW, socks_allow, .live = true),
    SRV("socks", "dns_cache", "512", R_UINT, socks_dns_cache, .min = 16, .max = 65536),
    SRV("socks", "listen", "", R_LISTEN, socks_listen),
    SRV("socks", "tls_listen", "", R_LISTEN, socks_tls_listen),
};

static const struct cfg_row client_rows[] = {
    CLI("server", "", R_SERVER, server),
    CLI("token", "", R_TOKEN, token),
    CLI("id", "", R_TOKEN, id),
    CLI("ca", "", R_STR, ca),
    CLI("fingerprint", "", R_FPR, fingerprint),
    CLI("cert", "", R_STR, cert),
    CLI("socket", "", R_STR, socket),
    CLI("log_level", "info", R_LOGLEVEL, log_level),
    CLI("log_format", "text", R_LOGFMT, log_json),
    CLI("pool_idle", "4", R_UINT, pool_idle, .min = 1, .max = 64),
    CLI("max_links", "16384", R_UINT, max_links, .min = 1, .max = 1048576),
    CLI("ktls", "auto", R_KTLS, ktls),
    CLI("remote_rules", "tcp-http", R_REMOTE, remote_rules),
    CLI("remote_to", "", R_HOSTPATS, remote_to),
};

static const struct cfg_row tcp_rows[] = {
    TCP("to", "", R_HOSTPORT, to, .required = true),
    TCP("port", "0", R_PORT, port, .min = 0, .max = 65535),
    TCP("proxy_protocol", "", R_PROXY, proxy_protocol),
};

static const struct cfg_row http_rows[] = {
    HTTP("domain", "", R_PATTERN, domain, .required = true),
    HTTP("to", "", R_LISTEN, to),
    HTTP("webroot", "", R_ABSPATH, webroot),
    HTTP("tls_passthrough", "off", R_BOOL, tls_passthrough),
    HTTP("redirect_https", "off", R_BOOL, redirect_https),
    HTTP("host_header", "", R_HOSTHDR, host_header),
    HTTP("basic_auth", "", R_AUTH, basic_auth),
    HTTP("proxy_protocol", "", R_PROXY, proxy_protocol),
};

static const struct cfg_row portmap_rows[] = {
    PMAP("transport", "tcp", R_TRANSPORT, transport),
    PMAP("destination", "", R_DEST, destination, .required = true),
    PMAP("port", "", R_PORT_OPT, port),
    PMAP("bind", "127.0.0.1", R_ADDR, bind, .required = true),
    PMAP("public", "no", R_BOOL, public, .yes = true),
};

static const struct cfg_row socks_rows[] = {
    SOCKS("bind", "127.0.0.1", R_ADDR, bind, .required = true),
    SOCKS("username", "", R_USER, username),
    SOCKS("password_hash", "", R_PWHASH, password_hash),
};

static const char *const log_names[] = {"debug", "info", "warn", "error"};

/* ---- small helpers ---- */

static int cfg_err(char *err, size_t errlen, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* "FILE:LINE: reason" (or "FILE: reason" without a line) into err; returns -1. */
static int cfg_err(char *err, size_t errlen, const char *file, unsigned line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!err || !errlen)
		return -1;
	if (line)
		n = snprintf(err, errlen, "%s:%u: ", file, line);
	else
		n = snprintf(err, errlen, "%s: ", file);
	if (n < 0 || (size_t)n >= errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* Copies n bytes of s for an error message: non-printables become '?', long text is cut. */
static const char *safe(char *out, size_t outlen, const char *s, size_t n)
{
	size_t j = 0;

	for (size_t i = 0; i < n && j + 4 < outlen; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (i == 60) {
			memcpy(out + j, "...", 3);
			j += 3;
			break;
		}
		out[j++] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
	}
	out[j] = 0;
	return out;
}

static bool has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Decimal digits only, no sign or spaces: 0, -EINVAL or -ERANGE. */
static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		unsigned d;

		if (*s < '0' || *s > '9')
			return -EINVAL;
		d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static int parse_bool(const char *s)
{
	static const char *const on[] = {"on", "yes", "true", "1"};
	static const char *const off[] = {"off", "no", "false", "0"};

	for (size_t i = 0; i < ARRAY_SIZE(on); i++) {
		if (!strcasecmp(s, on[i]))
			return 1;
		if (!strcasecmp(s, off[i]))
			return 0;
	}
	return -1;
}

/* Index of s (case-insensitive) in names, or -1. */
static int parse_enum(const char *s, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcasecmp(s, names[i]))
			return (int)i;
	return -1;
}

/* A DNS-ish host name: [A-Za-z0-9._-], 1..253 characters. */
static bool host_ok(const char *s, size_t n)
{
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

/* HOST, [V6], bare V6 or any of them with :PORT. */
static bool server_ok(const char *s)
{
	char host[256];
	unsigned char a[16];
	size_t n = strlen(s);

	if (cfg_parse_hostport(s, NULL, 0, NULL) == 0)
		return true;
	if (n > 2 && s[0] == '[' && s[n - 1] == ']' && n - 2 < sizeof(host)) {
		memcpy(host, s + 1, n - 2);
		host[n - 2] = 0;
		return inet_pton(AF_INET6, host, a) == 1;
	}
	if (strchr(s, ':'))
		return inet_pton(AF_INET6, s, a) == 1;
	return host_ok(s, n);
}

static bool fpr_ok(const char *s)
{
	size_t hex = 0;

	for (; *s; s++) {
		if (*s == ':')
			continue;
		if (!isxdigit((unsigned char)*s))
			return false;
		hex++;
	}
	return hex == 64;
}

void cfg_format_duration_ms(uint64_t ms, char *out, size_t len)
{
	static const struct {
		uint64_t ms;
		const char *unit;
	} units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};

	if (ms == 0) {
		snprintf(out, len, "0s");
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (ms % units[i].ms == 0) {
			snprintf(out, len, "%llu%s", (unsigned long long)(ms / units[i].ms),
				 units[i].unit);
			return;
		}
	}
	snprintf(out, len, "%llums", (unsigned long long)ms);
}

/* ---- exported helpers ---- */

int cfg_parse_duration_ms(const char *s, uint64_t *ms)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"", 1000},   {"ms", 1},	   {"s", 1000},
		     {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
	char num[24];
	uint64_t v;
	size_t n = 0;

	if (!s)
		return -EINVAL;
	while (s[n] >= '0' && s[n] <= '9')
		n++;
	if (n == 0 || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, s, n);
	num[n] = 0;
	if (parse_u64(num, &v) < 0)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcasecmp(s + n, units[i].unit))
			continue;
		if (v > UINT64_MAX / units[i].ms)
			return -EINVAL;
		if (ms)
			*ms = v * units[i].ms;
		return 0;
	}
	return -EINVAL;
}

int cfg_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *h, *hend, *p;
	char v6[INET6_ADDRSTRLEN + 1];
	unsigned char a[16];
	uint64_t v;
	size_t n;

	if (!s || !*s)
		return -EINVAL;
	if (*s == '[') {
		hend = strchr(s, ']');
		if (!hend || hend[1] != ':')
			return -EINVAL;
		h = s + 1;
		p = hend + 2;
		n = (size_t)(hend - h);
		if (n == 0 || n >= sizeof(v6))
			return -EINVAL;
		memcpy(v6, h, n);
		v6[n] = 0;
		if (inet_pton(AF_INET6, v6, a) != 1)
			return -EINVAL;
	} else {
		hend = strrchr(s, ':');
		if (!hend)
			return -EINVAL;
		h = s;
		p = hend + 1;
		n = (size_t)(hend - h);
		if (!host_ok(h, n))
			return -EINVAL;
	}
	if (strlen(p) > 5 || parse_u64(p, &v) < 0 || v < 1 || v > 65535)
		return -EINVAL;
	if (host) {
		if (n >= hostlen)
			return -EINVAL;
		memcpy(host, h, n);
		host[n] = 0;
	}
	if (port)
		*port = (uint16_t)v;
	return 0;
}

bool cfg_valid_name(const char *s)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++)
		if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '-')
			return false;
	return n >= 1 && n <= 63;
}

bool cfg_valid_user(const char *s)
{
	size_t n = 0;

	if (!s || !(islower((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (; s[n]; n++)
		if (!islower((unsigned char)s[n]) && !isdigit((unsigned char)s[n]) && s[n] != '_' &&
		    s[n] != '-')
			return false;
	return n <= 32;
}

bool cfg_valid_url(const char *s)
{
	size_t n = 0;

	if (!s || strncasecmp(s, "https://", 8) || !s[8] || s[8] == '/')
		return false;
	for (; s[n]; n++)
		if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f ||
		    strchr("\"'<>\\^`{|}", s[n]))
			return false;
	return n < CFG_PATH_MAX;
}

bool cfg_valid_email(const char *s)
{
	const char *at = s ? strchr(s, '@') : NULL;
	char d[DOMAIN_MAX + 1];

	if (!at || at == s || at - s > 64 || strchr(at + 1, '@'))
		return false;
	for (const char *p = s; p < at; p++)
		if (!isalnum((unsigned char)*p) && !strchr(".!#$%&*+/=?^_`{|}~-", *p))
			return false;
	return domain_norm(at + 1, strlen(at + 1), d, false);
}

bool cfg_valid_host_header(const char *s)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++)
		if (!isalnum((unsigned char)s[n]) && !strchr(".:_-", s[n]))
			return false;
	return n >= 1 && n <= 255;
}

bool cfg_valid_basic_auth(const char *s)
{
	size_t n = 0, user;

	if (!s)
		return false;
	for (; s[n] && s[n] != ':'; n++)
		if (!isalnum((unsigned char)s[n]) && !strchr("._-", s[n]))
			return false;
	user = n;
	if (user < 1 || user > 64 || s[n] != ':' || strncmp(s + n + 1, "$scrypt$", 8))
		return false;
	for (n++; s[n]; n++)
		if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
			return false;
	return n <= 255;
}

/* A SOCKS user name (RFC 1929 allows more; this is what the config and logs take). */
static bool cfg_valid_basic_auth_user(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!isalnum((unsigned char)s[n]) && !strchr("._-", s[n]))
			return false;
	return n >= 1 && n <= CFG_USER_MAX;
}

/* A password hash alone: "$scrypt$", printable, no spaces (the layout; passwd.c parses it). */
static bool pwhash_ok(const char *s)
{
	char buf[CFG_STR_MAX + 4];

	return strlen(s) < CFG_STR_MAX &&
	       snprintf(buf, sizeof(buf), "u:%s", s) < (int)sizeof(buf) &&
	       cfg_valid_basic_auth(buf);
}

bool cfg_valid_destination(const char *s)
{
	unsigned char a[16];
	char d[DOMAIN_MAX + 1];
	size_t n;

	if (!s || !*s || (n = strlen(s)) > CFG_DEST_MAX)
		return false;
	if (inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1)
		return true;
	if (domain_norm(s, n, d, false))
		return true;
	/* a tunnel id or group id */
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return n <= 63;
}

bool cfg_valid_bind(const char *s)
{
	unsigned char a[16];

	return s && strlen(s) < CFG_ADDR_MAX &&
	       (inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1);
}

bool cfg_bind_loopback(const char *s)
{
	static const unsigned char v6lo[16] = {[15] = 1};
	unsigned char a[16];

	if (inet_pton(AF_INET, s, a) == 1)
		return a[0] == 127;
	if (inet_pton(AF_INET6, s, a) != 1)
		return false;
	if (!memcmp(a, v6lo, 16))
		return true;
	/* ::ffff:127.x.y.z */
	return !memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) && a[12] == 127;
}

const char *cfg_socks_check(const struct cfg_socks *s, const char **key)
{
	*key = "password_hash";
	if (s->username[0] && !s->password_hash[0])
		return "missing: a username needs a password_hash (nave proxies socks listen "
		       "--auth USER:PASS)";
	*key = "username";
	if (!s->username[0] && s->password_hash[0])
		return "missing: a password_hash needs a username";
	*key = "bind";
	if (!s->username[0] && !cfg_bind_loopback(s->bind))
		return "a listener on an address other than loopback needs a username and "
		       "password (--auth USER:PASS)";
	return NULL;
}

const char *cfg_portmap_check(const struct cfg_portmap *m, const char **key)
{
	*key = "bind";
	if (!m->public && !cfg_bind_loopback(m->bind))
		return "a port map on an address other than loopback needs public = yes (nave "
		       "ports map --public)";
	return NULL;
}

/* ---- one row: parse, store, format ---- */

static void set_num(const struct cfg_row *r, void *base, size_t off, int64_t v)
{
	char *p = (char *)base + off;

	switch (r->size) {
	case sizeof(bool):
		*(bool *)p = v != 0;
		break;
	case sizeof(uint16_t):
		*(uint16_t *)p = (uint16_t)v;
		break;
	case sizeof(uint64_t): /* [records] keep */
		*(uint64_t *)p = (uint64_t)v;
		break;
	default:
		if (r->type == R_LOGLEVEL || r->type == R_KTLS || r->type == R_STEERING ||
		    r->type == R_PROXY || r->type == R_CLIENT_AUTH)
			*(int *)p = (int)v;
		else
			*(unsigned *)p = (unsigned)v;
		break;
	}
}

static int64_t get_num(const struct cfg_row *r, const void *base, size_t off)
{
	const char *p = (const char *)base + off;

	switch (r->size) {
	case sizeof(bool):
		return *(const bool *)p;
	case sizeof(uint16_t):
		return *(const uint16_t *)p;
	case sizeof(uint64_t):
		return (int64_t) * (const uint64_t *)p;
	default:
		if (r->type == R_LOGLEVEL || r->type == R_KTLS || r->type == R_STEERING ||
		    r->type == R_PROXY || r->type == R_CLIENT_AUTH)
			return *(const int *)p;
		return *(const unsigned *)p;
	}
}

const char *cfg_list_next(const char *s, char *out, size_t outlen)
{
	size_t n;

	s += strspn(s, ", \t");
	n = strcspn(s, ", \t");
	if (!n)
		return NULL;
	if (n >= outlen)
		n = outlen - 1; /* list_check refused longer items at load */
	memcpy(out, s, n);
	out[n] = '\0';
	return s + n;
}

/* Every item of a list value is a domain pattern (cidr: a CIDR block). */
static int list_check(const char *v, bool cidr, char *why, size_t wl)
{
	char item[DOMAIN_MAX + 2], shown[80], d[DOMAIN_MAX + 1], cw[96];
	struct cidr c;
	size_t n;

	for (v += strspn(v, ", \t"); *v; v += strspn(v, ", \t")) {
		n = strcspn(v, ", \t");
		if (n >= sizeof(item)) {
			snprintf(why, wl, "\"%s...\" is too long", safe(shown, 40, v, 40));
			return -1;
		}
		memcpy(item, v, n);
		item[n] = '\0';
		v += n;
		if (cidr ? cidr_parse(item, &c, cw, sizeof(cw)) < 0
			 : !domain_norm(item, n, d, true)) {
			snprintf(why, wl, "\"%s\" is not %s", safe(shown, sizeof(shown), item, n),
				 cidr ? "an address or CIDR block"
				      : "a domain name or a wildcard (*.NAME)");
			return -1;
		}
	}
	return 0;
}

/* One HOST:PORT pattern of [client] remote_to: host and port split at the last ':'. */
static bool hostpat_split(const char *item, size_t n, char *host, size_t hostlen, char *port,
			  size_t portlen)
{
	const char *colon = memrchr(item, ':', n);
	size_t hl, pl;

	if (!colon)
		return false;
	hl = (size_t)(colon - item);
	pl = n - hl - 1;
	if (hl >= 2 && item[0] == '[' && item[hl - 1] == ']') {
		item++;
		hl -= 2;
	}
	if (!hl || hl >= hostlen || !pl || pl >= portlen)
		return false;
	memcpy(host, item, hl);
	host[hl] = 0;
	memcpy(port, colon + 1, pl);
	port[pl] = 0;
	return true;
}

int cfg_hostpats_check(const char *v, char *why, size_t wl)
{
	char host[CFG_STR_MAX], port[8], shown[80];
	unsigned count = 0;
	size_t n;

	for (v += strspn(v, ", \t"); *v; v += strspn(v, ", \t")) {
		bool ok;

		n = strcspn(v, ", \t");
		ok = hostpat_split(v, n, host, sizeof(host), port, sizeof(port));
		if (ok && strcmp(host, "*")) {
			char hp[CFG_STR_MAX + 16];

			snprintf(hp, sizeof(hp), strchr(host, ':') ? "[%s]:1" : "%s:1", host);
			ok = !cfg_parse_hostport(hp, NULL, 0, NULL);
		}
		if (ok && strcmp(port, "*")) {
			char *end;
			unsigned long p = strtoul(port, &end, 10);

			ok = *end == 0 && port[0] >= '0' && port[0] <= '9' && p >= 1 && p <= 65535;
		}
		if (!ok) {
			snprintf(why, wl,
				 "\"%s\" is not a HOST:PORT pattern (HOST or PORT may be '*', IPv6 "
				 "as [ADDR]:PORT)",
				 safe(shown, sizeof(shown), v, n));
			return -1;
		}
		if (++count > CFG_REMOTE_TO_MAX) {
			snprintf(why, wl, "at most %d patterns", CFG_REMOTE_TO_MAX);
			return -1;
		}
		v += n;
	}
	return 0;
}

bool cfg_remote_to_ok(const char *patterns, const char *to)
{
	char host[CFG_STR_MAX], port[8], th[CFG_STR_MAX], tp[8];
	const char *v = patterns;
	size_t n;

	if (!v || !*v)
		return true;
	if (!to || !hostpat_split(to, strlen(to), th, sizeof(th), tp, sizeof(tp)))
		return false;
	for (v += strspn(v, ", \t"); *v; v += strspn(v, ", \t")) {
		n = strcspn(v, ", \t");
		if (hostpat_split(v, n, host, sizeof(host), port, sizeof(port)) &&
		    (!strcmp(host, "*") || !strcasecmp(host, th)) &&
		    (!strcmp(port, "*") || strtoul(port, NULL, 10) == strtoul(tp, NULL, 10)))
			return true;
		v += n;
	}
	return false;
}

static bool row_is_string(const struct cfg_row *r)
{
	return r->type <= R_FPR;
}

static const char *const ktls_names[] = {"off", "on", "auto"}; /* CFG_OFF, CFG_ON, CFG_AUTO */
static const char *const steer_names[] = {"auto", "bpf", "listeners"};
static const char *const client_auth_names[] = {"off", "optional", "required"};
static const char *const proxy_names[] = {"", "v1", "v2"};
static const char *const remote_names[] = {"off", "tcp-http", "all"};
static const char *const fmt_names[] = {"text", "json"};

/*
 * Parses v for row r into base. On error writes the reason (which quotes the
 * value) into why and returns -1.
 */
static int row_parse(const struct cfg_row *r, void *base, const char *v, char *why, size_t wl)
{
	char shown[80], q[96], *p = (char *)base + r->off;
	uint64_t n = 0, hi;
	int e = 0, k;

	snprintf(q, sizeof(q), "\"%s\"", safe(shown, sizeof(shown), v, strlen(v)));
	if (row_is_string(r)) {
		if (has_ctl(v)) {
			snprintf(why, wl, "%s contains control characters", q);
			return -1;
		}
		if (strlen(v) >= r->size) {
			snprintf(why, wl, "%s is too long (at most %zu characters)", q,
				 r->size - 1);
			return -1;
		}
		if (!*v && r->required) {
			snprintf(why, wl, "may not be empty");
			return -1;
		}
		switch (r->type) {
		case R_DOMAIN: {
			char d[DOMAIN_MAX + 1];

			if (!domain_norm(v, strlen(v), d, false)) {
				snprintf(why, wl, "%s is not a valid domain name", q);
				return -1;
			}
			memcpy(p, d, strlen(d) + 1); /* lowercased */
			return 0;
		}
		case R_PATTERN: {
			char d[DOMAIN_MAX + 1];

			if (!domain_norm(v, strlen(v), d, true)) {
				snprintf(why, wl, "%s is not a domain name or a wildcard (*.NAME)",
					 q);
				return -1;
			}
			memcpy(p, d, strlen(d) + 1);
			return 0;
		}
		case R_ABSPATH:
			if (*v && v[0] != '/') {
				snprintf(why, wl, "%s is not an absolute path", q);
				return -1;
			}
			break;
		case R_HOSTHDR:
			if (*v && !cfg_valid_host_header(v)) {
				snprintf(why, wl,
					 "%s is not a Host value (1-255 of A-Z a-z 0-9 . : _ -)",
					 q);
				return -1;
			}
			break;
		case R_AUTH:
			if (*v && !cfg_valid_basic_auth(v)) {
				snprintf(
				    why, wl,
				    "is not USER:HASH (USER 1-64 of A-Z a-z 0-9 . _ -, HASH as "
				    "nave stores it: never a clear password)");
				return -1;
			}
			break;
		case R_DOMAINS:
			if (*v && list_check(v, false, why, wl) < 0)
				return -1;
			break;
		case R_CIDRS:
			if (*v && list_check(v, true, why, wl) < 0)
				return -1;
			break;
		case R_HOSTPATS:
			if (*v && cfg_hostpats_check(v, why, wl) < 0)
				return -1;
			break;
		case R_MESHALLOW: {
			char canon[sizeof(((struct cfg_server *)0)->socks_allow)];

			if (!mesh_allow_norm(v, canon, sizeof(canon), why, wl))
				return -1;
			memcpy(p, canon, strlen(canon) + 1);
			return 0;
		}
		case R_ADDR: {
			unsigned char a[16];

			if (inet_pton(AF_INET, v, a) != 1 && inet_pton(AF_INET6, v, a) != 1) {
				snprintf(why, wl, "%s is not an IPv4 or IPv6 address", q);
				return -1;
			}
			break;
		}
		case R_LISTEN:
		case R_HOSTPORT:
			if ((*v || r->type == R_HOSTPORT) && cfg_parse_hostport(v, NULL, 0, NULL)) {
				snprintf(why, wl, "%s is not HOST:PORT (IPv6 as [ADDR]:PORT)", q);
				return -1;
			}
			break;
		case R_SERVER:
			if (*v && !server_ok(v)) {
				snprintf(why, wl, "%s is not HOST[:PORT] (IPv6 as [ADDR]:PORT)", q);
				return -1;
			}
			break;
		case R_IFNAME:
			if (*v && (strlen(v) > 15 || strpbrk(v, "/: \t") || !strcmp(v, ".") ||
				   !strcmp(v, ".."))) {
				snprintf(why, wl, "%s is not a network interface name", q);
				return -1;
			}
			break;
		case R_TOKEN:
			if (strpbrk(v, " \t")) {
				snprintf(why, wl, "%s contains spaces", q);
				return -1;
			}
			break;
		case R_URL:
			if (*v && !cfg_valid_url(v)) {
				snprintf(
				    why, wl,
				    "%s is not an https:// URL (printable, no spaces or quotes)",
				    q);
				return -1;
			}
			break;
		case R_EMAIL:
			if (*v && !cfg_valid_email(v)) {
				snprintf(why, wl, "%s is not an e-mail address (LOCAL@DOMAIN)", q);
				return -1;
			}
			break;
		case R_DEST:
			if (!cfg_valid_destination(v)) {
				snprintf(
				    why, wl,
				    "%s is not a tunnel id, group id, domain name or IP address",
				    q);
				return -1;
			}
			break;
		case R_USER:
			if (*v && !cfg_valid_basic_auth_user(v)) {
				snprintf(why, wl,
					 "%s is not a user name (1-%d of A-Z a-z 0-9 . _ -)", q,
					 CFG_USER_MAX);
				return -1;
			}
			break;
		case R_PWHASH:
			if (*v && !pwhash_ok(v)) {
				snprintf(why, wl,
					 "is not a password hash as nave stores it (never a clear "
					 "password)");
				return -1;
			}
			break;
		case R_FPR:
			if (*v && !fpr_ok(v)) {
				snprintf(why, wl, "%s is not a hex SHA-256 fingerprint", q);
				return -1;
			}
			break;
		default:
			break;
		}
		memcpy(p, v, strlen(v) + 1);
		return 0;
	}

	switch (r->type) {
	case R_LOGLEVEL: {
		char low[16];
		size_t i;

		for (i = 0; v[i] && i + 1 < sizeof(low); i++)
			low[i] = (char)tolower((unsigned char)v[i]);
		low[i] = 0;
		k = v[i] ? -1 : log_level_parse(low);
		if (k < 0) {
			snprintf(why, wl, "%s is not one of debug|info|warn|error", q);
			return -1;
		}
		set_num(r, base, r->off, k);
		return 0;
	}
	case R_LOGFMT:
		k = parse_enum(v, fmt_names, ARRAY_SIZE(fmt_names));
		if (k < 0) {
			snprintf(why, wl, "%s is not one of text|json", q);
			return -1;
		}
		set_num(r, base, r->off, k);
		return 0;
	case R_BOOL:
		k = parse_bool(v);
		if (k < 0) {
			snprintf(why, wl, "%s is not a boolean (on|off, yes|no, true|false, 1|0)",
				 q);
			return -1;
		}
		set_num(r, base, r->off, k);
		return 0;
	case R_KTLS:
		k = parse_enum(v, ktls_names, ARRAY_SIZE(ktls_names));
		if (k < 0) {
			snprintf(why, wl, "%s is not one of auto|on|off", q);
			return -1;
		}
		set_num(r, base, r->off, k == 2 ? CFG_AUTO : k);
		return 0;
	case R_STEERING:
		k = parse_enum(v, steer_names, ARRAY_SIZE(steer_names));
		if (k < 0) {
			snprintf(why, wl, "%s is not one of auto|bpf|listeners", q);
			return -1;
		}
		set_num(r, base, r->off, k);
		return 0;
	case R_CLIENT_AUTH:
		/* empty: decided by client_ca once the section is read (cfg_check_server) */
		k = *v ? parse_enum(v, client_auth_names, ARRAY_SIZE(client_auth_names)) : -1;
		if (!*v) {
			set_num(r, base, r->off, -1);
			return 0;
		}
		if (k < 0) {
			snprintf(why, wl, "%s is not one of off|optional|required", q);
			return -1;
		}
		set_num(r, base, r->off, k);
		return 0;
	case R_REMOTE:
		k = parse_enum(v, remote_names, ARRAY_SIZE(remote_names));
		if (k < 0) {
			snprintf(why, wl, "%s is not one of off|tcp-http|all", q);
			return -1;
		}
		set_num(r, base, r->off, k);
		return 0;
	case R_TRANSPORT:
		if (strcasecmp(v, "tcp") && strcasecmp(v, "udp")) {
			snprintf(why, wl, "%s is not tcp or udp", q);
			return -1;
		}
		set_num(r, base, r->off, !strcasecmp(v, "udp"));
		return 0;
	case R_PROXY:
		k = parse_enum(v, proxy_names, ARRAY_SIZE(proxy_names));
		if (k < 0) {
			snprintf(why, wl, "%s is not one of v1|v2 (or empty)", q);
			return -1;
		}
		set_num(r, base, r->off, k);
		return 0;
	case R_RANGE: {
		const char *dash = strchr(v, '-');
		char lo[8];

		if (!dash || (size_t)(dash - v) >= sizeof(lo))
			goto bad_range;
		memcpy(lo, v, (size_t)(dash - v));
		lo[dash - v] = 0;
		if (parse_u64(lo, &n) || parse_u64(dash + 1, &hi) || n < 1 || hi > 65535 || n > hi)
			goto bad_range;
		set_num(r, base, r->off, (int64_t)n);
		set_num(r, base, r->off2, (int64_t)hi);
		return 0;
	bad_range:
		snprintf(why, wl, "%s is not a valid range (low-high, 1-65535)", q);
		return -1;
	}
	case R_PORT_OPT:
		if (!*v) {
			set_num(r, base, r->off, 0);
			return 0;
		}
		e = parse_u64(v, &n);
		if (e == -EINVAL) {
			snprintf(why, wl, "%s is not a port number (1-65535, or empty)", q);
			return -1;
		}
		if (e || n < 1 || n > 65535) {
			snprintf(why, wl, "%s is out of range (1-65535)", q);
			return -1;
		}
		set_num(r, base, r->off, (int64_t)n);
		return 0;
	case R_DURATION: {
		char lo_s[24], hi_s[24];

		if (cfg_parse_duration_ms(v, &n) < 0) {
			snprintf(why, wl, "%s is not a duration (e.g. 500ms, 10s, 2m, 1h, 3d)", q);
			return -1;
		}
		if (n < r->min || n > r->max) {
			cfg_format_duration_ms(r->min, lo_s, sizeof(lo_s));
			cfg_format_duration_ms(r->max, hi_s, sizeof(hi_s));
			snprintf(why, wl, "%s is out of range (%s-%s)", q, lo_s, hi_s);
			return -1;
		}
		set_num(r, base, r->off, (int64_t)n);
		return 0;
	}
	case R_WORKERS:
		if (!strcasecmp(v, "auto")) {
			set_num(r, base, r->off, 0);
			return 0;
		}
		if (parse_u64(v, &n) || n < r->min || n > r->max) {
			snprintf(why, wl, "%s is not auto or a number %llu-%llu", q,
				 (unsigned long long)r->min, (unsigned long long)r->max);
			return -1;
		}
		set_num(r, base, r->off, (int64_t)n);
		return 0;
	case R_POW2:
		e = parse_u64(v, &n);
		if (e || n < r->min || n > r->max || !is_pow2(n)) {
			snprintf(why, wl, "%s is not a power of two in %llu-%llu", q,
				 (unsigned long long)r->min, (unsigned long long)r->max);
			return -1;
		}
		set_num(r, base, r->off, (int64_t)n);
		return 0;
	case R_PORT:
	case R_UINT:
		e = parse_u64(v, &n);
		if (e == -EINVAL) {
			snprintf(why, wl, "%s is not a number (%llu-%llu)", q,
				 (unsigned long long)r->min, (unsigned long long)r->max);
			return -1;
		}
		if (e || n < r->min || n > r->max) {
			snprintf(why, wl, "%s is out of range (%llu-%llu)", q,
				 (unsigned long long)r->min, (unsigned long long)r->max);
			return -1;
		}
		set_num(r, base, r->off, (int64_t)n);
		return 0;
	default:
		snprintf(why, wl, "internal error: row type %d", (int)r->type);
		return -1;
	}
}

/* The value of row r in base as file text. */
static void row_format(const struct cfg_row *r, const void *base, char *out, size_t len)
{
	int64_t v;

	if (row_is_string(r)) {
		str_copy(out, len, (const char *)base + r->off);
		return;
	}
	v = get_num(r, base, r->off);
	switch (r->type) {
	case R_LOGLEVEL:
		snprintf(out, len, "%s", v >= 0 && v < 4 ? log_names[v] : "info");
		break;
	case R_LOGFMT:
		snprintf(out, len, "%s", fmt_names[v ? 1 : 0]);
		break;
	case R_BOOL:
		snprintf(out, len, "%s", v ? (r->yes ? "yes" : "on") : (r->yes ? "no" : "off"));
		break;
	case R_KTLS:
		snprintf(out, len, "%s", v == CFG_AUTO ? "auto" : v ? "on" : "off");
		break;
	case R_STEERING:
		snprintf(out, len, "%s", v >= 0 && v < 3 ? steer_names[v] : "auto");
		break;
	case R_CLIENT_AUTH:
		snprintf(out, len, "%s", v >= 0 && v < 3 ? client_auth_names[v] : "off");
		break;
	case R_REMOTE:
		snprintf(out, len, "%s", v >= 0 && v < 3 ? remote_names[v] : "tcp-http");
		break;
	case R_PROXY:
		snprintf(out, len, "%s", v >= 0 && v < 3 ? proxy_names[v] : "");
		break;
	case R_TRANSPORT:
		snprintf(out, len, "%s", v == 1 ? "udp" : "tcp");
		break;
	case R_RANGE:
		snprintf(out, len, "%lld-%lld", (long long)v, (long long)get_num(r, base, r->off2));
		break;
	case R_PORT_OPT:
		if (v)
			snprintf(out, len, "%lld", (long long)v);
		else
			snprintf(out, len, "%s", "");
		break;
	case R_DURATION:
		cfg_format_duration_ms((uint64_t)v, out, len);
		break;
	case R_WORKERS:
		if (v)
			snprintf(out, len, "%lld", (long long)v);
		else
			snprintf(out, len, "auto");
		break;
	default:
		snprintf(out, len, "%lld", (long long)v);
		break;
	}
}

/* Defaults are table text run through the same parser; they cannot fail. */
static void rows_apply_defaults(const struct cfg_row *rows, size_t n, void *base)
{
	char why[CFG_ERR_MAX];

	for (size_t i = 0; i < n; i++) {
		if (row_is_string(&rows[i]) && !rows[i].def[0])
			((char *)base + rows[i].off)[0] = 0;
		else if (row_parse(&rows[i], base, rows[i].def, why, sizeof(why)) < 0)
			log_error("config: bad default for %s: %s", rows[i].key, why);
	}
}

/*
 * Writes "key = value", quoting where iniparser would otherwise cut or strip
 * the value. -EINVAL when the value cannot be written so that it reads back.
 */
static int ini_put(FILE *f, const char *key, const char *v)
{
	size_t n = strlen(v);
	char q = 0;

	if (has_ctl(v))
		return -EINVAL;
	if (n &&
	    (strpbrk(v, ";#") || isspace((unsigned char)v[0]) || isspace((unsigned char)v[n - 1]) ||
	     v[0] == '"' || v[0] == '\'' || v[n - 1] == '\\'))
		q = !strchr(v, '"') ? '"' : !strchr(v, '\'') ? '\'' : -1;
	if (q == -1)
		return -EINVAL;
	if (!n)
		fprintf(f, "%s =\n", key);
	else if (q)
		fprintf(f, "%s = %c%s%c\n", key, q, v, q);
	else
		fprintf(f, "%s = %s\n", key, v);
	return 0;
}

/* ---- the line scanner ---- */

struct ini_sec {
	char name[INI_NAME_MAX];  /* lower case, as iniparser keys it */
	char shown[INI_NAME_MAX]; /* as written, for messages */
	unsigned line;		  /* of the first header */
	bool unique;		  /* a second header is an error (rules) */
	const struct cfg_row *rows;
	size_t nrows;
	void *base;
	unsigned nkeys;
};

struct ini_key {
	unsigned sec;
	const struct cfg_row *row;
	unsigned line;
};

struct ini_doc {
	const char *file;
	struct ini_sec sec[INI_MAX_SEC];
	unsigned nsec;
	struct ini_key key[INI_MAX_KEY];
	unsigned nkey;
	unsigned err_line; /* first structural error; 0: none */
	char err[CFG_ERR_MAX];
	size_t prefix; /* bytes before the line of err_line */
};

/*
 * Fills in a new section (rows, base, unique) from its name as written; -1
 * with a reason when there is no such section.
 */
typedef int (*ini_section_fn)(void *ctx, struct ini_sec *s, const char *raw, char *why, size_t wl);

static void lower(char *out, const char *in, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[n] = 0;
}

static const struct cfg_row *find_row(const struct ini_sec *s, const char *key)
{
	for (size_t i = 0; i < s->nrows; i++)
		if (!strcmp(s->rows[i].key, key))
			return &s->rows[i];
	return NULL;
}

/* Returns the line of [section] key in d, or 0. */
static unsigned ini_line(const struct ini_doc *d, const char *section, const char *key)
{
	for (unsigned i = 0; i < d->nkey; i++) {
		const struct ini_key *k = &d->key[i];

		if (!strcmp(d->sec[k->sec].name, section) && !strcmp(k->row->key, key))
			return k->line;
	}
	return 0;
}

/*
 * Classifies lines as iniparser 4.1 does (strip, '#'/';' comment, "[...]"
 * section, anything with '=' a key), but refuses what iniparser would take
 * differently from how it reads: see the file comment.
 */
static void ini_scan(struct ini_doc *d, const char *text, size_t len, ini_section_fn fn, void *ctx)
{
	char buf[INI_LINE_MAX + 1], shown[80], why[CFG_ERR_MAX];
	size_t pos = 0, start = 0;
	unsigned line = 0;
	int cur = -1;

	d->prefix = len;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		const char *b = text + pos, *e = text + end, *eq, *ke, *v;
		struct ini_sec *s;
		int found = -1;

		start = pos;
		pos = nl ? end + 1 : len;
		line++;
		if (memchr(b, 0, (size_t)(e - b))) {
			cfg_err(d->err, sizeof(d->err), d->file, line,
				"the line contains a NUL byte");
			goto fail;
		}
		if (e - b > INI_LINE_MAX) {
			cfg_err(d->err, sizeof(d->err), d->file, line,
				"line too long (more than %d characters)", INI_LINE_MAX);
			goto fail;
		}
		while (b < e && isspace((unsigned char)*b))
			b++;
		while (e > b && isspace((unsigned char)e[-1]))
			e--;
		if (b == e)
			continue;
		if (e[-1] == '\\') {
			cfg_err(
			    d->err, sizeof(d->err), d->file, line,
			    "a line may not end with '\\' (continuation lines are not supported)");
			goto fail;
		}
		if (*b == '#' || *b == ';')
			continue;

		if (*b == '[') {
			const char *nb = b + 1, *ne = e - 1;

			if (e[-1] != ']') {
				cfg_err(
				    d->err, sizeof(d->err), d->file, line,
				    "syntax error: a section header is [NAME] alone on its line");
				goto fail;
			}
			while (nb < ne && isspace((unsigned char)*nb))
				nb++;
			while (ne > nb && isspace((unsigned char)ne[-1]))
				ne--;
			if (nb == ne || memchr(nb, '[', (size_t)(ne - nb)) ||
			    memchr(nb, ']', (size_t)(ne - nb))) {
				cfg_err(d->err, sizeof(d->err), d->file, line,
					"syntax error: bad section header %s",
					safe(shown, sizeof(shown), b, (size_t)(e - b)));
				goto fail;
			}
			memcpy(buf, nb, (size_t)(ne - nb));
			buf[ne - nb] = 0;
			if (ne - nb < INI_NAME_MAX) {
				char name[INI_NAME_MAX];

				lower(name, nb, (size_t)(ne - nb));
				for (unsigned i = 0; i < d->nsec; i++)
					if (!strcmp(d->sec[i].name, name))
						found = (int)i;
			}
			if (found >= 0 && d->sec[found].unique) {
				cfg_err(d->err, sizeof(d->err), d->file, line,
					"[%s] appears twice (first at line %u)",
					d->sec[found].shown, d->sec[found].line);
				goto fail;
			}
			if (found >= 0) {
				cur = found;
				continue;
			}
			if (d->nsec == INI_MAX_SEC) {
				cfg_err(d->err, sizeof(d->err), d->file, line, "too many sections");
				goto fail;
			}
			s = &d->sec[d->nsec];
			memset(s, 0, sizeof(*s));
			if (ne - nb >= INI_NAME_MAX) {
				cfg_err(d->err, sizeof(d->err), d->file, line,
					"unknown section [%s]",
					safe(shown, sizeof(shown), nb, (size_t)(ne - nb)));
				goto fail;
			}
			if (fn(ctx, s, buf, why, sizeof(why)) < 0) {
				cfg_err(d->err, sizeof(d->err), d->file, line, "%s", why);
				goto fail;
			}
			lower(s->name, buf, strlen(buf));
			str_copy(s->shown, sizeof(s->shown), buf);
			s->line = line;
			cur = (int)d->nsec++;
			continue;
		}

		eq = memchr(b, '=', (size_t)(e - b));
		if (!eq) {
			cfg_err(d->err, sizeof(d->err), d->file, line,
				"syntax error: expected [section], key = value or a comment");
			goto fail;
		}
		ke = eq;
		while (ke > b && isspace((unsigned char)ke[-1]))
			ke--;
		if (ke == b) {
			cfg_err(d->err, sizeof(d->err), d->file, line,
				"syntax error: no key before '='");
			goto fail;
		}
		v = eq + 1;
		while (v < e && isspace((unsigned char)*v))
			v++;
		if (v < e && (*v == '"' || *v == '\'')) {
			const char *close = memchr(v + 1, *v, (size_t)(e - v - 1));

			if (!close) {
				cfg_err(d->err, sizeof(d->err), d->file, line,
					"syntax error: unterminated quote");
				goto fail;
			}
			for (close++; close < e && isspace((unsigned char)*close); close++)
				;
			if (close < e && *close != ';' && *close != '#') {
				cfg_err(d->err, sizeof(d->err), d->file, line,
					"syntax error: text after the quoted value");
				goto fail;
			}
		}
		if (cur < 0) {
			cfg_err(d->err, sizeof(d->err), d->file, line,
				"key \"%s\" is outside of any [section]",
				safe(shown, sizeof(shown), b, (size_t)(ke - b)));
			goto fail;
		}
		s = &d->sec[cur];
		lower(buf, b, (size_t)(ke - b));
		{
			const struct cfg_row *r = find_row(s, buf);

			if (!r) {
				cfg_err(d->err, sizeof(d->err), d->file, line,
					"[%s] %s: unknown key", s->shown,
					safe(shown, sizeof(shown), b, (size_t)(ke - b)));
				goto fail;
			}
			for (unsigned i = 0; i < d->nkey; i++) {
				if (d->key[i].sec == (unsigned)cur && d->key[i].row == r) {
					cfg_err(d->err, sizeof(d->err), d->file, line,
						"[%s] %s: set twice (first at line %u)", s->shown,
						r->key, d->key[i].line);
					goto fail;
				}
			}
			if (d->nkey == INI_MAX_KEY) {
				cfg_err(d->err, sizeof(d->err), d->file, line, "too many keys");
				goto fail;
			}
			d->key[d->nkey++] =
			    (struct ini_key){.sec = (unsigned)cur, .row = r, .line = line};
			s->nkeys++;
		}
	}
	return;
fail:
	d->err_line = line;
	d->prefix = start;
}

static int ini_silent(const char *fmt, ...)
{
	(void)fmt;
	return 0;
}

/*
 * Hands text to iniparser through a memfd so that it reads exactly the bytes
 * the scanner read. Without memfd or /proc, falls back to the file path when
 * the whole file is wanted. NULL when neither works.
 */
static dictionary *ini_load_text(const char *text, size_t len, const char *path, bool whole)
{
	dictionary *dict = NULL;
	char proc[64];
	int fd;

	iniparser_set_error_callback(ini_silent);
	fd = memfd_create("nave-cfg", MFD_CLOEXEC);
	if (fd >= 0) {
		if (write_all(fd, text, len) == 0) {
			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
			dict = iniparser_load(proc);
		}
		close(fd);
	}
	if (!dict && path && whole)
		dict = iniparser_load(path);
	return dict;
}

/*
 * Scans text, then applies the values iniparser finds to the structs the
 * sections name, in file order. 0; -1 with err set; or -2 (err set) when
 * iniparser could not be run at all. path: the file, for the fallback.
 */
static int ini_apply(struct ini_doc *d, const char *text, size_t len, const char *path,
		     ini_section_fn fn, void *ctx, char *err, size_t errlen)
{
	char k[2 * INI_NAME_MAX], why[CFG_ERR_MAX];
	dictionary *dict;
	int ret = 0;

	ini_scan(d, text, len, fn, ctx);
	if (d->nkey == 0)
		goto out;
	dict = ini_load_text(text, d->prefix, path, d->prefix == len);
	if (!dict && d->err_line) {
		str_copy(err, errlen, d->err);
		return -1;
	}
	if (!dict) {
		cfg_err(err, errlen, d->file, 0, "cannot hand the file to iniparser: %s",
			strerror(errno));
		return -2;
	}
	/* the scanner and iniparser must agree on what the text holds */
	if (iniparser_getnsec(dict) != (int)d->nsec) {
		ret = cfg_err(err, errlen, d->file, 0,
			      "internal error: iniparser disagrees with the line scanner");
		goto free;
	}
	for (unsigned i = 0; i < d->nsec; i++) {
		if (iniparser_getsecnkeys(dict, d->sec[i].name) != (int)d->sec[i].nkeys) {
			ret = cfg_err(err, errlen, d->file, 0,
				      "internal error: iniparser disagrees with the line scanner");
			goto free;
		}
	}
	for (unsigned i = 0; i < d->nkey; i++) {
		const struct ini_key *key = &d->key[i];
		const struct ini_sec *s = &d->sec[key->sec];
		const char *v;

		snprintf(k, sizeof(k), "%s:%s", s->name, key->row->key);
		v = iniparser_getstring(dict, k, NULL);
		if (!v) {
			ret = cfg_err(err, errlen, d->file, key->line,
				      "internal error: iniparser disagrees with the line scanner");
			goto free;
		}
		if (row_parse(key->row, s->base, v, why, sizeof(why)) < 0) {
			ret = cfg_err(err, errlen, d->file, key->line, "[%s] %s: %s", s->shown,
				      key->row->key, why);
			goto free;
		}
	}
free:
	iniparser_freedict(dict);
	if (ret)
		return ret;
out:
	if (d->err_line) {
		str_copy(err, errlen, d->err);
		return -1;
	}
	return 0;
}

/* Reads a whole file of at most CFG_FILE_MAX bytes: 0 or -errno (-EFBIG: too large). */
static int read_text(const char *path, char **out, size_t *outlen)
{
	size_t cap = 4096, n = 0;
	char *buf = NULL, *nbuf;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t r;

		if (!buf || n == cap) {
			if (buf)
				cap *= 2;
			nbuf = realloc(buf, cap + 1);
			if (!nbuf) {
				ret = -ENOMEM;
				goto out;
			}
			buf = nbuf;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > CFG_FILE_MAX) {
			ret = -EFBIG;
			goto out;
		}
	}
	buf[n] = 0;
out:
	close(fd);
	if (ret) {
		free(buf);
		return ret;
	}
	*out = buf;
	*outlen = n;
	return 0;
}

static int read_err(char *err, size_t errlen, const char *file, int e)
{
	if (e == -EFBIG)
		return cfg_err(err, errlen, file, 0, "too large (more than %u bytes)",
			       CFG_FILE_MAX);
	return cfg_err(err, errlen, file, 0, "cannot open: %s", strerror(-e));
}

/* ---- server ---- */

static const char *const server_sections[] = {"server", "tls",	    "listen",  "ports", "tunnel",
					      "udp",	"datapath", "http",    "xdp",	"metrics",
					      "acme",	"admin",    "records", "socks"};

static int server_section(void *ctx, struct ini_sec *s, const char *raw, char *why, size_t wl)
{
	char shown[80];

	for (size_t i = 0; i < ARRAY_SIZE(server_sections); i++) {
		if (strcasecmp(raw, server_sections[i]))
			continue;
		s->rows = server_rows;
		s->nrows = ARRAY_SIZE(server_rows);
		/* narrow to this section's rows, which are contiguous in the table */
		while (s->nrows && strcasecmp(s->rows->section, raw)) {
			s->rows++;
			s->nrows--;
		}
		for (size_t n = 0; n < s->nrows; n++) {
			if (strcasecmp(s->rows[n].section, raw)) {
				s->nrows = n;
				break;
			}
		}
		s->base = ctx;
		return 0;
	}
	snprintf(why, wl, "unknown section [%s]", safe(shown, sizeof(shown), raw, strlen(raw)));
	return -1;
}

/* Cross-key checks and derived values, after the file. */
static int server_finish(struct cfg_server *c, const struct ini_doc *d, char *err, size_t errlen)
{
	const struct {
		const char *key;
		uint16_t port;
	} listeners[] = {{"http", c->http_port}, {"https", c->https_port}, {"tunnel", 0}};
	char item[DOMAIN_MAX + 2];
	unsigned line, n = 0;

	if (c->user[0] && !cfg_valid_user(c->user))
		return cfg_err(err, errlen, d->file, ini_line(d, "server", "user"),
			       "[server] user: \"%s\" is not a user name (a-z, 0-9, _ and -, "
			       "starting with a letter or _, at most 32)",
			       c->user);
	if (!c->tunnel_port)
		c->tunnel_port = c->https_port;
	for (const char *p = c->acme_domains; (p = cfg_list_next(p, item, sizeof(item)));) {
		if (item[0] == '*')
			return cfg_err(err, errlen, d->file, ini_line(d, "acme", "domains"),
				       "[acme] domains: %s: a wildcard needs a DNS-01 challenge; "
				       "nave answers HTTP-01 only",
				       item);
		if (++n > ACME_DOMAINS_MAX)
			return cfg_err(err, errlen, d->file, ini_line(d, "acme", "domains"),
				       "[acme] domains: more than %d names", ACME_DOMAINS_MAX);
	}
	if (c->acme_domains[0] && !c->acme_directory[0])
		return cfg_err(err, errlen, d->file, ini_line(d, "acme", "domains"),
			       "[acme] domains: set [acme] directory too (the CA to ask)");
	if (c->http_port == c->https_port) {
		line = ini_line(d, "listen", "https") ?: ini_line(d, "listen", "http");
		return cfg_err(err, errlen, d->file, line,
			       "[listen] https: port %u is also the http port", c->https_port);
	}
	if (c->tunnel_port == c->http_port)
		return cfg_err(err, errlen, d->file, ini_line(d, "listen", "tunnel"),
			       "[listen] tunnel: port %u is also the http port", c->tunnel_port);
	for (size_t i = 0; i < ARRAY_SIZE(listeners); i++) {
		uint16_t p = i == 2 ? c->tunnel_port : listeners[i].port;

		if (p < c->port_min || p > c->port_max)
			continue;
		line = ini_line(d, "ports", "range") ?: ini_line(d, "listen", listeners[i].key);
		return cfg_err(err, errlen, d->file, line,
			       "[ports] range: %u-%u contains the %s port %u", c->port_min,
			       c->port_max, listeners[i].key, p);
	}
	if (!c->certificate[0] &&
	    snprintf(c->certificate, sizeof(c->certificate), "%s/tls/server.crt", c->state_dir) >=
		(int)sizeof(c->certificate))
		return cfg_err(err, errlen, d->file, ini_line(d, "server", "state_dir"),
			       "[server] state_dir: too long for [tls] certificate");
	if (!c->private_key[0] &&
	    snprintf(c->private_key, sizeof(c->private_key), "%s/tls/server.key", c->state_dir) >=
		(int)sizeof(c->private_key))
		return cfg_err(err, errlen, d->file, ini_line(d, "server", "state_dir"),
			       "[server] state_dir: too long for [tls] private_key");
	/* client certificates: client_auth empty follows client_ca; a mode needs a CA */
	if (c->client_auth < 0)
		c->client_auth = c->client_ca[0] ? CFG_CLIENT_AUTH_OPTIONAL : CFG_CLIENT_AUTH_OFF;
	if (c->client_auth != CFG_CLIENT_AUTH_OFF && !c->client_ca[0])
		return cfg_err(err, errlen, d->file, ini_line(d, "tls", "client_auth"),
			       "[tls] client_auth: %s needs [tls] client_ca",
			       client_auth_names[c->client_auth]);
	if (c->client_crl[0] && !c->client_ca[0])
		return cfg_err(err, errlen, d->file, ini_line(d, "tls", "client_crl"),
			       "[tls] client_crl: needs [tls] client_ca");
	/* relayd's SOCKS ports: outside the range, not on one another */
	for (int i = 0; i < 2; i++) {
		const char *key = i ? "tls_listen" : "listen";
		const char *v = i ? c->socks_tls_listen : c->socks_listen;
		char host[256];
		uint16_t p, other;

		if (!v[0] || cfg_parse_hostport(v, host, sizeof(host), &p))
			continue;
		if (p >= c->port_min && p <= c->port_max)
			return cfg_err(err, errlen, d->file, ini_line(d, "socks", key),
				       "[socks] %s: port %u lies inside [ports] range %u-%u", key,
				       p, c->port_min, c->port_max);
		if (i && c->socks_listen[0] &&
		    !cfg_parse_hostport(c->socks_listen, host, sizeof(host), &other) && other == p)
			return cfg_err(err, errlen, d->file, ini_line(d, "socks", key),
				       "[socks] tls_listen: port %u is also [socks] listen's", p);
	}
	return 0;
}

int cfg_server_load(struct cfg_server *c, const char *path, char *err, size_t errlen)
{
	const char *file = path ? path : EMBEDDED;
	const char *text = cfg_server_default_ini;
	size_t len = sizeof(cfg_server_default_ini) - 1;
	char *buf = NULL;
	struct ini_doc *d;
	int ret;

	memset(c, 0, sizeof(*c));
	rows_apply_defaults(server_rows, ARRAY_SIZE(server_rows), c);
	if (!str_copy(c->source, sizeof(c->source), file))
		return cfg_err(err, errlen, file, 0, "path too long");
	if (path) {
		ret = read_text(path, &buf, &len);
		if (ret < 0)
			return read_err(err, errlen, path, ret);
		text = buf;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		free(buf);
		return cfg_err(err, errlen, file, 0, "out of memory");
	}
	d->file = file;
	ret = ini_apply(d, text, len, path, server_section, c, err, errlen);
	/* the embedded text says what the defaults say; without iniparser they stand */
	if (ret == -2 && !path)
		ret = 0;
	if (ret == 0)
		ret = server_finish(c, d, err, errlen);
	free(d);
	free(buf);
	return ret < 0 ? -1 : 0;
}

const char *cfg_server_path(const struct cfg_server *c)
{
	return strcmp(c->source, EMBEDDED) ? c->source : NULL;
}

/* Does row r hold different values in a and b? */
static bool row_differs(const struct cfg_row *r, const void *a, const void *b)
{
	const char *pa = (const char *)a + r->off, *pb = (const char *)b + r->off;
	bool same = row_is_string(r) ? !strncmp(pa, pb, r->size) : !memcmp(pa, pb, r->size);

	if (same && r->type == R_RANGE)
		same = !memcmp((const char *)a + r->off2, (const char *)b + r->off2, r->size);
	return !same;
}

/* Appends "[section] key" to the ", "-joined list out (cut short with "..."). */
static void key_append(char *out, size_t outlen, size_t *len, unsigned n, const struct cfg_row *r)
{
	int w;

	if (*len >= outlen)
		return;
	w = snprintf(out + *len, outlen - *len, "%s[%s] %s", n > 1 ? ", " : "", r->section, r->key);
	if (w < 0 || (size_t)w >= outlen - *len) {
		/* cut short: end with "..." where it fits */
		if (outlen >= 4)
			memcpy(out + outlen - 4, "...", 4);
		*len = outlen;
	} else {
		*len += (size_t)w;
	}
}

unsigned cfg_server_diff(const struct cfg_server *a, const struct cfg_server *b, char *out,
			 size_t outlen)
{
	unsigned n = 0;
	size_t len = 0;

	if (outlen)
		out[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(server_rows); i++) {
		if (row_differs(&server_rows[i], a, b))
			key_append(out, outlen, &len, ++n, &server_rows[i]);
	}
	return n;
}

void cfg_server_reload(struct cfg_server *run, const struct cfg_server *next, struct cfg_reload *r)
{
	size_t la = 0, lw = 0;

	r->napplied = r->nwaiting = 0;
	r->applied[0] = r->waiting[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(server_rows); i++) {
		const struct cfg_row *row = &server_rows[i];

		if (!row_differs(row, run, next))
			continue;
		if (!row->live) {
			key_append(r->waiting, sizeof(r->waiting), &lw, ++r->nwaiting, row);
			continue;
		}
		memcpy((char *)run + row->off, (const char *)next + row->off, row->size);
		if (row->type == R_RANGE)
			memcpy((char *)run + row->off2, (const char *)next + row->off2, row->size);
		key_append(r->applied, sizeof(r->applied), &la, ++r->napplied, row);
	}
}

int cfg_server_reread(struct cfg_server *run, const char *prog, cfg_reload_apply apply, void *arg,
		      struct cfg_reload *r)
{
	struct cfg_server *next = malloc(sizeof(*next));
	const char *path = cfg_server_path(run);

	memset(r, 0, sizeof(*r));
	if (!next)
		snprintf(r->error, sizeof(r->error), "out of memory");
	if (!next || cfg_server_load(next, path, r->error, sizeof(r->error)) < 0) {
		free(next);
		log_error("reload: %s: the running configuration stays", r->error);
		return -1;
	}
	if (apply)
		apply(arg, run, next, r);
	cfg_server_reload(run, next, r);
	free(next);
	log_init(prog, run->log_level, run->log_json);
	log_info("reload: %s read: %u change(s) applied%s%s", path ? path : EMBEDDED, r->napplied,
		 r->napplied ? ": " : "", r->applied);
	if (r->refused[0])
		log_warn("reload: refused: %s", r->refused);
	if (r->nwaiting)
		log_warn("reload: %u change(s) wait for a restart: %s", r->nwaiting, r->waiting);
	return 0;
}

bool cfg_server_range_keeps_socks(const struct cfg_server *run, struct cfg_server *next, char *why,
				  size_t whylen)
{
	if (next->port_min == run->port_min && next->port_max == run->port_max)
		return false;
	for (int i = 0; i < 2; i++) {
		const char *v = i ? run->socks_tls_listen : run->socks_listen;
		char host[256];
		uint16_t p;

		if (!v[0] || cfg_parse_hostport(v, host, sizeof(host), &p) || p < next->port_min ||
		    p > next->port_max)
			continue;
		snprintf(why, whylen,
			 "[ports] range %u-%u: the running [socks] %s port %u lies inside it; the "
			 "range stays %u-%u",
			 next->port_min, next->port_max, i ? "tls_listen" : "listen", p,
			 run->port_min, run->port_max);
		next->port_min = run->port_min;
		next->port_max = run->port_max;
		return true;
	}
	return false;
}

bool cfg_server_key_live(const char *section, const char *key)
{
	for (size_t i = 0; i < ARRAY_SIZE(server_rows); i++)
		if (!strcasecmp(server_rows[i].section, section) &&
		    !strcasecmp(server_rows[i].key, key))
			return server_rows[i].live;
	return false;
}

void cfg_server_print(const struct cfg_server *c, FILE *out)
{
	char val[CFG_PATH_MAX + 8], shown[80];
	const char *sec = NULL;

	fprintf(out, "# effective configuration from %s\n",
		safe(shown, sizeof(shown), c->source, strlen(c->source)));
	for (size_t i = 0; i < ARRAY_SIZE(server_rows); i++) {
		const struct cfg_row *r = &server_rows[i];

		if (!sec || strcmp(sec, r->section)) {
			sec = r->section;
			fprintf(out, "\n[%s]\n", sec);
		}
		row_format(r, c, val, sizeof(val));
		if (ini_put(out, r->key, val) < 0)
			fprintf(out, "%s = %s\n", r->key, val); /* best effort */
	}
}

/* ---- client ---- */

/* The port of [portmap.PORT] or [socks.PORT]: 1..65535 in decimal, else 0. */
static uint16_t section_port(const char *s)
{
	uint64_t v;

	if (strlen(s) > 5 || parse_u64(s, &v) < 0 || v < 1 || v > 65535)
		return 0;
	return (uint16_t)v;
}

/* [portmap.LOCALPORT] and [socks.PORT]: local listeners (a local port is one section's). */
static int listener_section(struct cfg_client *c, struct ini_sec *s, const char *raw, char *why,
			    size_t wl)
{
	bool map = !strncasecmp(raw, "portmap.", 8);
	uint16_t port = section_port(raw + (map ? 8 : 6));
	char shown[80];

	if (!port) {
		snprintf(why, wl, "[%s]: the section's name ends in a port number (1-65535)",
			 safe(shown, sizeof(shown), raw, strlen(raw)));
		return -1;
	}
	if (map ? c->n_maps >= CFG_MAX_MAPS : c->n_socks >= CFG_MAX_SOCKS) {
		snprintf(why, wl, "[%s]: too many %s (at most %d)",
			 safe(shown, sizeof(shown), raw, strlen(raw)),
			 map ? "port maps" : "SOCKS listeners", map ? CFG_MAX_MAPS : CFG_MAX_SOCKS);
		return -1;
	}
	if (map) {
		struct cfg_portmap *m = &c->maps[c->n_maps++];

		memset(m, 0, sizeof(*m));
		rows_apply_defaults(portmap_rows, ARRAY_SIZE(portmap_rows), m);
		m->local = port;
		s->rows = portmap_rows;
		s->nrows = ARRAY_SIZE(portmap_rows);
		s->base = m;
	} else {
		struct cfg_socks *k = &c->socks[c->n_socks++];

		memset(k, 0, sizeof(*k));
		rows_apply_defaults(socks_rows, ARRAY_SIZE(socks_rows), k);
		k->port = port;
		s->rows = socks_rows;
		s->nrows = ARRAY_SIZE(socks_rows);
		s->base = k;
	}
	s->unique = true;
	return 0;
}

static int client_section(void *ctx, struct ini_sec *s, const char *raw, char *why, size_t wl)
{
	struct cfg_client *c = ctx;
	bool http = !strncasecmp(raw, "http.", 5);
	bool udp = !strncasecmp(raw, "udp.", 4);
	const char *name = raw + (http ? 5 : 4);
	char shown[80];

	if (!strcasecmp(raw, "client")) {
		s->rows = client_rows;
		s->nrows = ARRAY_SIZE(client_rows);
		s->base = c;
		return 0;
	}
	if (!strncasecmp(raw, "portmap.", 8) || !strncasecmp(raw, "socks.", 6))
		return listener_section(c, s, raw, why, wl);
	if (!http && !udp && strncasecmp(raw, "tcp.", 4)) {
		snprintf(
		    why, wl,
		    "unknown section [%s] (expected [client], [tcp.NAME], [udp.NAME], [http.NAME], "
		    "[portmap.LOCALPORT] or [socks.PORT])",
		    safe(shown, sizeof(shown), raw, strlen(raw)));
		return -1;
	}
	if (!cfg_valid_name(name)) {
		snprintf(why, wl, "[%s]: a rule name is 1-63 of A-Z a-z 0-9 _ -",
			 safe(shown, sizeof(shown), raw, strlen(raw)));
		return -1;
	}
	if (c->n_tcp + c->n_http >= CFG_MAX_RULES) {
		snprintf(why, wl,
			 "[%s]: too many rules (at most %d, [tcp.*] and [http.*] together)", raw,
			 CFG_MAX_RULES);
		return -1;
	}
	for (unsigned i = 0; i < c->n_tcp + c->n_http; i++) {
		const char *other = i < c->n_tcp ? c->tcp[i].name : c->http[i - c->n_tcp].name;

		bool other_udp = i < c->n_tcp && c->tcp[i].udp;

		if (!strcasecmp(other, name) &&
		    (http ? i < c->n_tcp : i >= c->n_tcp || other_udp != udp)) {
			snprintf(why, wl, "[%s]: the rule name %s is taken by [%s.%s]", raw, name,
				 i >= c->n_tcp ? "http"
				 : other_udp   ? "udp"
					       : "tcp",
				 other);
			return -1;
		}
	}
	if (http) {
		struct cfg_http_rule *h = &c->http[c->n_http++];

		memset(h, 0, sizeof(*h));
		rows_apply_defaults(http_rows, ARRAY_SIZE(http_rows), h);
		str_copy(h->name, sizeof(h->name), name);
		s->rows = http_rows;
		s->nrows = ARRAY_SIZE(http_rows);
		s->base = h;
	} else {
		struct cfg_tcp_rule *t = &c->tcp[c->n_tcp++];

		memset(t, 0, sizeof(*t));
		rows_apply_defaults(tcp_rows, ARRAY_SIZE(tcp_rows), t);
		str_copy(t->name, sizeof(t->name), name);
		t->udp = udp;
		s->rows = tcp_rows;
		s->nrows = ARRAY_SIZE(tcp_rows);
		s->base = t;
	}
	s->unique = true;
	return 0;
}

const char *cfg_http_rule_check(const struct cfg_http_rule *h, const char **key)
{
	*key = "to";
	if (!h->to[0] && !h->webroot[0])
		return "missing: to (HOST:PORT of a local service) or webroot (a directory)";
	if (h->to[0] && h->webroot[0])
		return "to and webroot exclude each other";
	*key = "host_header";
	if (h->host_header[0] && h->webroot[0])
		return "goes with to only: the webroot is chosen by the request's Host";
	*key = "proxy_protocol";
	if (h->proxy_protocol && h->webroot[0])
		return "goes with to only: the webroot server takes no PROXY header";
	*key = "tls_passthrough";
	if (h->tls_passthrough && h->webroot[0])
		return "needs to: a webroot cannot take TLS it does not terminate";
	if (h->tls_passthrough && (h->basic_auth[0] || h->host_header[0] || h->redirect_https))
		return "excludes basic_auth, host_header and redirect_https (they need plain "
		       "HTTP at the edge)";
	return NULL;
}

static int client_default_socket(struct cfg_client *c)
{
	if (c->socket[0])
		return 0;
	return snprintf(c->socket, sizeof(c->socket), "%s.sock", c->path) < (int)sizeof(c->socket)
		   ? 0
		   : -ENAMETOOLONG;
}

static int client_finish(struct cfg_client *c, const struct ini_doc *d, char *err, size_t errlen)
{
	for (unsigned i = 0; i < c->n_tcp; i++) {
		const struct cfg_tcp_rule *t = &c->tcp[i];
		char sec[INI_NAME_MAX];

		if (!t->to[0]) {
			unsigned line = 0;

			snprintf(sec, sizeof(sec), "tcp.%s", t->name);
			lower(sec, sec, strlen(sec));
			for (unsigned j = 0; j < d->nsec; j++)
				if (!strcmp(d->sec[j].name, sec))
					line = d->sec[j].line;
			return cfg_err(err, errlen, d->file, line,
				       "[%s.%s] to: missing (HOST:PORT of the local service)",
				       t->udp ? "udp" : "tcp", t->name);
		}
		if (t->udp && t->proxy_protocol) {
			snprintf(sec, sizeof(sec), "udp.%s", t->name);
			lower(sec, sec, strlen(sec));
			return cfg_err(err, errlen, d->file, ini_line(d, sec, "proxy_protocol"),
				       "[udp.%s] proxy_protocol: not for a UDP rule", t->name);
		}
		for (unsigned j = 0; j < i && t->port; j++) {
			if (c->tcp[j].port != t->port || c->tcp[j].udp != t->udp)
				continue;
			snprintf(sec, sizeof(sec), "tcp.%s", t->name);
			lower(sec, sec, strlen(sec));
			return cfg_err(err, errlen, d->file, ini_line(d, sec, "port"),
				       "[tcp.%s] port: %u is also asked for by [tcp.%s]", t->name,
				       t->port, c->tcp[j].name);
		}
	}
	for (unsigned i = 0; i < c->n_http; i++) {
		const struct cfg_http_rule *h = &c->http[i];
		const char *why, *key;
		char sec[INI_NAME_MAX];
		unsigned line = 0;

		snprintf(sec, sizeof(sec), "http.%s", h->name);
		lower(sec, sec, strlen(sec));
		for (unsigned j = 0; j < d->nsec; j++)
			if (!strcmp(d->sec[j].name, sec))
				line = d->sec[j].line;
		if (!h->domain[0])
			return cfg_err(err, errlen, d->file, line,
				       "[http.%s] domain: missing (the name the edge routes here)",
				       h->name);
		why = cfg_http_rule_check(h, &key);
		if (why)
			return cfg_err(err, errlen, d->file, ini_line(d, sec, key) ?: line,
				       "[http.%s] %s: %s", h->name, key, why);
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(c->http[j].domain, h->domain))
				return cfg_err(err, errlen, d->file, ini_line(d, sec, "domain"),
					       "[http.%s] domain: %s is also claimed by [http.%s]",
					       h->name, h->domain, c->http[j].name);
	}
	for (unsigned i = 0; i < c->n_maps + c->n_socks; i++) {
		bool map = i < c->n_maps;
		uint16_t port = map ? c->maps[i].local : c->socks[i - c->n_maps].port;
		char sec[INI_NAME_MAX];
		const char *why, *key;

		unsigned line = 0;

		snprintf(sec, sizeof(sec), "%s.%u", map ? "portmap" : "socks", port);
		for (unsigned j = 0; j < d->nsec; j++)
			if (!strcmp(d->sec[j].name, sec))
				line = d->sec[j].line;
		if (map && !c->maps[i].destination[0])
			return cfg_err(
			    err, errlen, d->file, line,
			    "[%s] destination: missing (a tunnel id, group id, domain or "
			    "address)",
			    sec);
		if (map && !c->maps[i].port)
			return cfg_err(err, errlen, d->file, line,
				       "[%s] port: missing (the destination's port, 1-65535)", sec);
		why = map ? cfg_portmap_check(&c->maps[i], &key)
			  : cfg_socks_check(&c->socks[i - c->n_maps], &key);
		if (why)
			return cfg_err(err, errlen, d->file, ini_line(d, sec, key) ?: line,
				       "[%s] %s: %s", sec, key, why);
		for (unsigned j = 0; j < i; j++) {
			uint16_t other =
			    j < c->n_maps ? c->maps[j].local : c->socks[j - c->n_maps].port;

			if (other == port)
				return cfg_err(err, errlen, d->file, line,
					       "[%s]: local port %u is also [%s.%u]", sec, port,
					       j < c->n_maps ? "portmap" : "socks", port);
		}
	}
	if (client_default_socket(c) < 0)
		return cfg_err(err, errlen, d->file, 0, "path too long for the default socket");
	return 0;
}

int cfg_client_load(struct cfg_client *c, const char *path, bool missing_ok, char *err,
		    size_t errlen)
{
	char def[CFG_PATH_MAX], *buf = NULL;
	struct ini_doc *d;
	size_t len = 0;
	int ret;

	memset(c, 0, sizeof(*c));
	rows_apply_defaults(client_rows, ARRAY_SIZE(client_rows), c);
	if (!path) {
		cfg_client_default_path(def, sizeof(def));
		path = def;
	}
	if (!str_copy(c->path, sizeof(c->path), path))
		return cfg_err(err, errlen, path, 0, "path too long");
	ret = read_text(path, &buf, &len);
	if (ret == -ENOENT && missing_ok) {
		if (client_default_socket(c) < 0)
			return cfg_err(err, errlen, path, 0,
				       "path too long for the default socket");
		return 0;
	}
	if (ret < 0)
		return read_err(err, errlen, path, ret);
	d = calloc(1, sizeof(*d));
	if (!d) {
		free(buf);
		return cfg_err(err, errlen, path, 0, "out of memory");
	}
	d->file = c->path;
	ret = ini_apply(d, buf, len, path, client_section, c, err, errlen);
	if (ret == 0)
		ret = client_finish(c, d, err, errlen);
	free(d);
	free(buf);
	return ret < 0 ? -1 : 0;
}

/* Validates c and renders it as INI into a malloc'd string (*text). 0 or -errno. */
static int client_render(const struct cfg_client *c, char **text, size_t *len, char *err,
			 size_t errlen)
{
	char val[CFG_PATH_MAX + 8], why[CFG_ERR_MAX], def_sock[CFG_PATH_MAX + 8];
	struct cfg_client *scratch;
	FILE *f;
	int ret = 0;

	if (c->n_maps > CFG_MAX_MAPS || c->n_socks > CFG_MAX_SOCKS) {
		cfg_err(err, errlen, c->path, 0, "too many port maps or SOCKS listeners");
		return -EINVAL;
	}
	if (c->n_tcp > CFG_MAX_RULES || c->n_http > CFG_MAX_RULES ||
	    c->n_tcp + c->n_http > CFG_MAX_RULES) {
		cfg_err(err, errlen, c->path, 0,
			"too many rules (at most %d, [tcp.*] and [http.*] together)",
			CFG_MAX_RULES);
		return -EINVAL;
	}
	scratch = calloc(1, sizeof(*scratch));
	if (!scratch)
		return -ENOMEM;
	f = open_memstream(text, len);
	if (!f) {
		free(scratch);
		return -errno;
	}
	snprintf(def_sock, sizeof(def_sock), "%s.sock", c->path);
	fprintf(f, "# nave client configuration (rewritten by nave; comments are not kept)\n");
	fprintf(f, "[client]\n");
	for (size_t i = 0; i < ARRAY_SIZE(client_rows) && !ret; i++) {
		const struct cfg_row *r = &client_rows[i];

		why[0] = 0;
		row_format(r, c, val, sizeof(val));
		if (!val[0] ||
		    (r->off == offsetof(struct cfg_client, socket) && !strcmp(val, def_sock)))
			continue;
		if (row_parse(r, scratch, val, why, sizeof(why)) < 0 || ini_put(f, r->key, val)) {
			if (!why[0])
				snprintf(why, sizeof(why), "cannot be written");
			cfg_err(err, errlen, c->path, 0, "[client] %s: %s", r->key, why);
			ret = -EINVAL;
		}
	}
	for (unsigned i = 0; i < c->n_tcp && !ret; i++) {
		const struct cfg_tcp_rule *t = &c->tcp[i];

		if (!cfg_valid_name(t->name)) {
			cfg_err(err, errlen, c->path, 0,
				"rule name \"%s\": 1-63 of A-Z a-z 0-9 _ -",
				safe(why, sizeof(why), t->name, strnlen(t->name, sizeof(t->name))));
			ret = -EINVAL;
			break;
		}
		for (unsigned j = 0; j < i; j++) {
			if (!strcasecmp(c->tcp[j].name, t->name)) {
				cfg_err(err, errlen, c->path, 0, "[tcp.%s] appears twice", t->name);
				ret = -EINVAL;
			}
		}
		fprintf(f, "\n[%s.%s]\n", t->udp ? "udp" : "tcp", t->name);
		for (size_t k = 0; k < ARRAY_SIZE(tcp_rows) && !ret; k++) {
			const struct cfg_row *r = &tcp_rows[k];

			row_format(r, t, val, sizeof(val));
			if (!val[0] && !r->required)
				continue;
			why[0] = 0;
			if (row_parse(r, &scratch->tcp[0], val, why, sizeof(why)) < 0 ||
			    ini_put(f, r->key, val)) {
				if (!why[0])
					snprintf(why, sizeof(why), "cannot be written");
				cfg_err(err, errlen, c->path, 0, "[tcp.%s] %s: %s", t->name, r->key,
					why);
				ret = -EINVAL;
			}
		}
	}
	for (unsigned i = 0; i < c->n_http && !ret; i++) {
		const struct cfg_http_rule *h = &c->http[i];
		const char *bad, *key;

		if (!cfg_valid_name(h->name)) {
			cfg_err(err, errlen, c->path, 0,
				"rule name \"%s\": 1-63 of A-Z a-z 0-9 _ -",
				safe(why, sizeof(why), h->name, strnlen(h->name, sizeof(h->name))));
			ret = -EINVAL;
			break;
		}
		for (unsigned j = 0; j < c->n_tcp + i; j++) {
			const char *other =
			    j < c->n_tcp ? c->tcp[j].name : c->http[j - c->n_tcp].name;

			if (!strcasecmp(other, h->name)) {
				cfg_err(err, errlen, c->path, 0, "rule name %s appears twice",
					h->name);
				ret = -EINVAL;
			}
		}
		bad = ret ? NULL : cfg_http_rule_check(h, &key);
		if (bad) {
			cfg_err(err, errlen, c->path, 0, "[http.%s] %s: %s", h->name, key, bad);
			ret = -EINVAL;
		}
		if (!ret)
			fprintf(f, "\n[http.%s]\n", h->name);
		for (size_t k = 0; k < ARRAY_SIZE(http_rows) && !ret; k++) {
			const struct cfg_row *r = &http_rows[k];

			row_format(r, h, val, sizeof(val));
			if ((!val[0] && !r->required) || (r->type == R_BOOL && !strcmp(val, "off")))
				continue;
			why[0] = 0;
			if (row_parse(r, &scratch->http[0], val, why, sizeof(why)) < 0 ||
			    ini_put(f, r->key, val)) {
				if (!why[0])
					snprintf(why, sizeof(why), "cannot be written");
				cfg_err(err, errlen, c->path, 0, "[http.%s] %s: %s", h->name,
					r->key, why);
				ret = -EINVAL;
			}
		}
	}
	for (unsigned i = 0; i < c->n_maps + c->n_socks && !ret; i++) {
		bool map = i < c->n_maps;
		const void *base =
		    map ? (const void *)&c->maps[i] : (const void *)&c->socks[i - c->n_maps];
		const struct cfg_row *rows = map ? portmap_rows : socks_rows;
		size_t nrows = map ? ARRAY_SIZE(portmap_rows) : ARRAY_SIZE(socks_rows);
		uint16_t port = map ? c->maps[i].local : c->socks[i - c->n_maps].port;
		const char *bad = NULL, *key = "port";
		char sec[32];

		snprintf(sec, sizeof(sec), "%s.%u", map ? "portmap" : "socks", port);
		if (!port || (map && !c->maps[i].port))
			bad = "missing";
		else
			bad = map ? cfg_portmap_check(&c->maps[i], &key)
				  : cfg_socks_check(&c->socks[i - c->n_maps], &key);
		for (unsigned j = 0; j < i && !bad; j++)
			if ((j < c->n_maps ? c->maps[j].local : c->socks[j - c->n_maps].port) ==
			    port)
				bad = "the local port appears twice";
		if (bad) {
			cfg_err(err, errlen, c->path, 0, "[%s] %s: %s", sec, key, bad);
			ret = -EINVAL;
			break;
		}
		fprintf(f, "\n[%s]\n", sec);
		for (size_t k = 0; k < nrows && !ret; k++) {
			const struct cfg_row *r = &rows[k];

			row_format(r, base, val, sizeof(val));
			if ((!val[0] && !r->required) || (r->type == R_BOOL && !strcmp(val, "no")))
				continue;
			why[0] = 0;
			if (row_parse(r,
				      map ? (void *)&scratch->maps[0] : (void *)&scratch->socks[0],
				      val, why, sizeof(why)) < 0 ||
			    ini_put(f, r->key, val)) {
				if (!why[0])
					snprintf(why, sizeof(why), "cannot be written");
				cfg_err(err, errlen, c->path, 0, "[%s] %s: %s", sec, r->key, why);
				ret = -EINVAL;
			}
		}
	}
	if (fclose(f) != 0 && !ret)
		ret = -ENOMEM;
	free(scratch);
	if (ret) {
		free(*text);
		*text = NULL;
	}
	return ret;
}

int cfg_client_save(const struct cfg_client *c, char *err, size_t errlen)
{
	char tmp[CFG_PATH_MAX + 8], dir[CFG_PATH_MAX], *text = NULL, *slash;
	size_t len = 0;
	int fd = -1, ret;

	if (!c->path[0] || strnlen(c->path, sizeof(c->path)) >= sizeof(c->path)) {
		cfg_err(err, errlen, "(client config)", 0, "no valid config path");
		return -EINVAL;
	}
	ret = client_render(c, &text, &len, err, errlen);
	if (ret < 0) {
		if (ret != -EINVAL)
			cfg_err(err, errlen, c->path, 0, "cannot render: %s", strerror(-ret));
		return ret;
	}
	str_copy(dir, sizeof(dir), c->path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		ret = mkdir_p(dir, 0700);
		if (ret < 0) {
			cfg_err(err, errlen, dir, 0, "cannot create: %s", strerror(-ret));
			goto out;
		}
	} else if (slash) {
		str_copy(dir, sizeof(dir), "/");
	} else {
		str_copy(dir, sizeof(dir), ".");
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", c->path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		ret = -errno;
		cfg_err(err, errlen, tmp, 0, "cannot create: %s", strerror(errno));
		goto out;
	}
	if (fchmod(fd, 0600) < 0 || (ret = write_all(fd, text, len)) < 0 || fsync(fd) < 0) {
		ret = ret ? ret : -errno;
		cfg_err(err, errlen, tmp, 0, "cannot write: %s", strerror(-ret));
		goto out_unlink;
	}
	if (close(fd) < 0) {
		fd = -1;
		ret = -errno;
		cfg_err(err, errlen, tmp, 0, "cannot write: %s", strerror(errno));
		goto out_unlink;
	}
	fd = -1;
	if (rename(tmp, c->path) < 0) {
		ret = -errno;
		cfg_err(err, errlen, c->path, 0, "cannot rename %s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	/* make the rename itself durable; failure here loses nothing already written */
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
		fd = -1;
	}
	ret = 0;
	goto out;
out_unlink:
	unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	free(text);
	return ret;
}

void cfg_client_default_path(char *out, size_t len)
{
	const char *env = getenv("NAVE_CONFIG"), *home = getenv("HOME");

	if (env && *env)
		snprintf(out, len, "%s", env);
	else if (home && *home)
		snprintf(out, len, "%s/.config/nave/nave.ini", home);
	else
		snprintf(out, len, "./nave.ini");
}

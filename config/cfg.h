/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Configuration: INI files (iniparser) into validated plain structs. This is
 * the only module that includes iniparser. Every key has one row in a
 * defaults table; unknown sections/keys and bad values are one-line errors
 * "FILE:LINE: reason" and callers exit 2.
 */
#ifndef NAVE_CFG_H
#define NAVE_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CFG_PATH_MAX	 512
#define CFG_STR_MAX	 256
#define CFG_ERR_MAX	 768
#define ACME_DOMAINS_MAX 32 /* names in [acme] domains */

enum cfg_tristate { CFG_AUTO = -1, CFG_OFF = 0, CFG_ON = 1 };
/* [tls] client_auth */
enum { CFG_CLIENT_AUTH_OFF, CFG_CLIENT_AUTH_OPTIONAL, CFG_CLIENT_AUTH_REQUIRED };

struct cfg_server {
	/* [server] */
	char domain[CFG_STR_MAX];	/* default "localhost" */
	char state_dir[CFG_PATH_MAX];	/* default "./var" */
	char runtime_dir[CFG_PATH_MAX]; /* default "./var/run" */
	int log_level;			/* NLOG_*, default info */
	bool log_json;			/* log_format = text|json */
	char user[33];			/* started as root: run as this user; empty: stay */
	/* [listen] */
	uint16_t http_port;	   /* http = 8080 */
	uint16_t https_port;	   /* https = 8443 */
	uint16_t tunnel_port;	   /* tunnel = (empty: https port) */
	char address[CFG_STR_MAX]; /* address = 127.0.0.1 (TCP range and all listeners) */
	/* [ports] */
	uint16_t port_min, port_max;   /* range = 22000-22999 */
	unsigned max_per_tunnel;       /* 5 */
	unsigned max_conns_per_source; /* 256; 0 = no limit */
	bool reserve_ports;	       /* reserve = on: the range in ip_local_reserved_ports */
	/* [tunnel] */
	unsigned max_pool_size;	     /* 8 */
	unsigned max_links;	     /* 1024 */
	unsigned heartbeat_ms;	     /* heartbeat = 10s */
	unsigned idle_timeout_ms;    /* idle_timeout = 1h; 0 = off */
	unsigned pending_timeout_ms; /* pending_timeout = 10s */
	/* [udp] (UDP port tunnels; read at start) */
	unsigned udp_idle_ms;	/* idle_timeout = 60s: a flow without datagrams ends */
	unsigned udp_max_flows; /* max_flows = 1024 per tunnel */
	unsigned udp_queue;	/* queue = 64 datagrams per flow waiting for a data link */
	/* [tls] */
	char certificate[CFG_PATH_MAX]; /* empty: state_dir/tls/server.crt (self-signed on first
					   run) */
	char private_key[CFG_PATH_MAX]; /* empty: state_dir/tls/server.key */
	bool pq;			/* pq = on */
	char client_ca[CFG_PATH_MAX];	/* empty: no client certificates */
	char client_crl[CFG_PATH_MAX];	/* empty: crl.pem beside client_ca, when it exists */
	int client_auth;		/* CFG_CLIENT_AUTH_*; empty: OPTIONAL with client_ca */
	/* [datapath] */
	unsigned workers;     /* 0 = auto (online CPUs) */
	int ktls;	      /* CFG_AUTO|CFG_ON|CFG_OFF */
	int steering;	      /* 0 auto, 1 bpf, 2 listeners */
	unsigned buffer_size; /* 65536; 1024..1048576, power of two */
	unsigned buffers;     /* 128 per worker; 8..32768, power of two */
	/* [http] */
	char trusted_proxies[1024];	 /* CIDRs whose X-Forwarded-For is kept (cfg_list_next) */
	char allowed_domains[1024];	 /* patterns clients may claim; empty: any */
	char certificates[CFG_PATH_MAX]; /* empty: state_dir/certs */
	unsigned header_timeout_ms;	 /* 10s */
	unsigned keepalive_ms;		 /* keepalive_timeout = 30s; 0 = off */
	unsigned max_head;		 /* 16384 */
	/* [xdp] */
	char xdp_interface[CFG_STR_MAX]; /* empty: off */
	unsigned syn_rate;		 /* 0 = no limit */
	/* [metrics] */
	char metrics_listen[CFG_STR_MAX]; /* empty: off */
	/* [admin] */
	char admin_listen[CFG_STR_MAX];	    /* empty: off (HOST:PORT, TLS) */
	unsigned admin_session_lifetime_ms; /* session_lifetime = 12h */
	unsigned admin_session_idle_ms;	    /* session_idle = 1h */
	unsigned admin_lockout_ms;	    /* lockout = 15m */
	bool admin_require_two_factor;	    /* require_two_factor = on */
	/* [acme] */
	char acme_directory[CFG_PATH_MAX]; /* empty: off */
	char acme_email[CFG_STR_MAX];	   /* empty: an account without contact */
	char acme_domains[1024];	   /* empty: [server] domain */
	char acme_ca[CFG_PATH_MAX];	   /* empty: the system's CA bundle */
	unsigned acme_renew_before_ms;	   /* renew_before = 30d */
	bool acme_accept_terms;		   /* accept_terms = off */
	/* [records] */
	uint64_t records_keep_ms;  /* keep = 30d: connection records older are pruned */
	unsigned records_max_rows; /* max_rows = 1000000 */
	/* [socks]: what clients' port maps and SOCKS may reach outside the tunnels (mesh.h) */
	char socks_allow[4096];	  /* allow = CIDRs and hostname patterns, canonical; empty: none */
	unsigned socks_dns_cache; /* dns_cache = 512 names relayd's resolver keeps */
	char socks_listen[CFG_STR_MAX]; /* listen = HOST:PORT of relayd's SOCKS5 server; "" off */
	char socks_tls_listen[CFG_STR_MAX]; /* tls_listen = the same inside TLS; "" off */
	/* where it came from, for --check */
	char source[CFG_PATH_MAX]; /* file path or "(embedded default)" */
};

enum { CFG_STEER_AUTO = 0, CFG_STEER_BPF = 1, CFG_STEER_LISTENERS = 2 };

/*
 * Loads path (NULL: the embedded default) into *c. Returns 0, or -1 with a
 * one-line "FILE:LINE: reason" in err. Relative state_dir/runtime_dir stay
 * relative to the working directory.
 */
int cfg_server_load(struct cfg_server *c, const char *path, char *err, size_t errlen);
/* Prints the effective configuration as INI (for --check). */
void cfg_server_print(const struct cfg_server *c, FILE *out);
/* The file c was loaded from; NULL for the embedded default. */
const char *cfg_server_path(const struct cfg_server *c);
/*
 * The keys whose values differ between a and b, as "[section] key" joined by
 * ", " into out (cut short with "..." when it is full). Returns how many.
 */
unsigned cfg_server_diff(const struct cfg_server *a, const struct cfg_server *b, char *out,
			 size_t outlen);
/*
 * A reload (SIGHUP, navectl reload) of nave-relayd or nave-controld. Each row
 * of the key table says whether a reload applies the key live (the "live"
 * column); every other key waits for a restart. cfg_server_reload copies into
 * run every live key whose value differs in next, and names the live keys it
 * copied and the restart-only keys that differ: both daemons derive what they
 * report from the table.
 */
struct cfg_reload {
	unsigned napplied, nwaiting;
	char applied[512];	 /* "[section] key, ..." changed and now in run */
	char waiting[512];	 /* changed, restart-only: they wait for the next start */
	char refused[768];	 /* what the daemon refused to apply (its reason), or empty */
	char error[CFG_ERR_MAX]; /* cfg_server_reread failed: the file's "FILE:LINE: reason" */
};
/* Sets napplied, nwaiting, applied and waiting (refused and error stay as they are). */
void cfg_server_reload(struct cfg_server *run, const struct cfg_server *next, struct cfg_reload *r);
/* Does a reload apply [section] key live? (false for an unknown key) */
bool cfg_server_key_live(const char *section, const char *key);
/*
 * A reload's [ports] range (next) that differs from the running one and holds a
 * running [socks] listen or tls_listen port (which wait for a restart): true,
 * with the refusal in why ("... the range stays A-B"), and next's range set
 * back to run's. Both daemons call it before they apply a range.
 */
bool cfg_server_range_keeps_socks(const struct cfg_server *run, struct cfg_server *next, char *why,
				  size_t whylen);
/*
 * What a daemon does with a reloaded file before run takes it: it puts the
 * live values into force where its other threads or its store hold them, and
 * may refuse a key that cannot apply now (a [ports] range shrink that would
 * strand an allocated port) by setting next's value back to run's and saying
 * why in r->refused (one line, also logged by cfg_server_reread).
 */
typedef void (*cfg_reload_apply)(void *arg, const struct cfg_server *run, struct cfg_server *next,
				 struct cfg_reload *r);
/*
 * A whole reload: run's file read again (a file that does not load changes
 * nothing: -1 with r->error, logged); apply(arg, ...) (may be NULL); the live
 * keys into run; the log level and format into force (log_init with prog);
 * then the log lines: "reload: FILE read: N change(s) applied[: keys]" (info),
 * "reload: refused: ..." (warning, when apply refused something) and
 * "reload: N change(s) wait for a restart: [section] key, ..." (warning).
 * Returns 0.
 */
int cfg_server_reread(struct cfg_server *run, const char *prog, cfg_reload_apply apply, void *arg,
		      struct cfg_reload *r);
/*
 * The next item of a list value (R_DOMAINS, R_CIDRS: items between ',' or
 * blanks): copies it to out and returns where the rest starts, or NULL at
 * the end. Use: for (p = v; (p = cfg_list_next(p, item, sizeof(item)));)
 */
const char *cfg_list_next(const char *s, char *out, size_t outlen);
/* The embedded default file text. */
extern const char cfg_server_default_ini[];

#define CFG_MAX_RULES 64

enum cfg_proxy { CFG_PROXY_NONE = 0, CFG_PROXY_V1 = 1, CFG_PROXY_V2 = 2 };

struct cfg_tcp_rule {
	char name[64];	      /* the NAME of [tcp.NAME] */
	char to[CFG_STR_MAX]; /* HOST:PORT, validated */
	uint16_t port;	      /* public port; 0 = any */
	int proxy_protocol;   /* enum cfg_proxy */
	bool udp;	      /* a UDP rule ([udp.NAME]): to and port only */
};

/*
 * An HTTP rule ([http.NAME]): a domain the relay's HTTP/HTTPS edge routes to
 * this tunnel, and where the client sends those streams: a local service
 * (to) or its own static file server (webroot). Exactly one of them.
 */
struct cfg_http_rule {
	char name[64];		       /* the NAME of [http.NAME] */
	char domain[CFG_STR_MAX];      /* a name or "*.NAME", normalised (domain.h) */
	char to[CFG_STR_MAX];	       /* HOST:PORT, or empty */
	char webroot[CFG_PATH_MAX];    /* an absolute directory, or empty */
	bool tls_passthrough;	       /* the edge forwards TLS untouched (needs to) */
	bool redirect_https;	       /* the edge answers plain HTTP with a redirect */
	char host_header[CFG_STR_MAX]; /* empty: the request's own Host */
	char basic_auth[CFG_STR_MAX];  /* "USER:HASH" (common/passwd.h), or empty */
	int proxy_protocol;	       /* enum cfg_proxy: a PROXY header to the service (to only) */
};

/*
 * [client] remote_rules: the rule changes an operator may push from the edge
 * (navectl tunnels rules): none; TCP rules and HTTP rules to a HOST:PORT; or
 * also HTTP rules with a webroot (a directory of this device served to the
 * world: off unless the device's owner opts in).
 */
enum cfg_remote { CFG_REMOTE_OFF, CFG_REMOTE_TCP_HTTP, CFG_REMOTE_ALL };

/*
 * A port map ([portmap.LOCALPORT], `nave ports map`): connections to
 * bind:local are carried to destination:port through the server (a mesh
 * stream, common/link_proto.h OPEN). destination: a tunnel id or group id,
 * a domain of the server's HTTP routes, or an external name or address the
 * server's [socks] allow lets through (cfg_valid_destination).
 */
#define CFG_MAX_MAPS  32
#define CFG_MAX_SOCKS 8
#define CFG_DEST_MAX  255
#define CFG_ADDR_MAX  64 /* an IPv4 or IPv6 literal */
#define CFG_USER_MAX  64

#define CFG_TRANSPORT_TCP 0
#define CFG_TRANSPORT_UDP 1

struct cfg_portmap {
	uint16_t local;			    /* LOCALPORT of [portmap.LOCALPORT], 1..65535 */
	int transport;			    /* 0 = tcp, 1 = udp (CFG_TRANSPORT_*) */
	char destination[CFG_DEST_MAX + 1]; /* required */
	uint16_t port;			    /* the destination's port, 1..65535 */
	char bind[CFG_ADDR_MAX];	    /* the local address, default 127.0.0.1 */
	bool public;			    /* public = yes: bind may be other than loopback */
};

/*
 * A SOCKS5 listener ([socks.PORT], `nave proxies socks listen`): CONNECT
 * requests go through the server like a port map's connections. Without
 * username and password_hash it takes method 0x00 (no authentication) only,
 * and then bind must be a loopback address.
 */
struct cfg_socks {
	uint16_t port;			 /* PORT of [socks.PORT] */
	char bind[CFG_ADDR_MAX];	 /* default 127.0.0.1 */
	char username[CFG_USER_MAX + 1]; /* RFC 1929 user, 1..64 of [A-Za-z0-9._-], or empty */
	char password_hash[CFG_STR_MAX]; /* "$scrypt$..." (common/passwd.h), or empty */
};

struct cfg_client {
	char server[CFG_STR_MAX]; /* HOST[:PORT], port default 8443 */
	char token[CFG_STR_MAX];
	char id[CFG_STR_MAX];
	char ca[CFG_PATH_MAX];
	char fingerprint[CFG_STR_MAX]; /* hex SHA-256, colons allowed */
	char cert[CFG_PATH_MAX];       /* a nodes/NAME directory: log in with its certificate */
	char socket[CFG_PATH_MAX];     /* default: config path + ".sock" */
	int log_level;
	bool log_json;
	unsigned pool_idle; /* pool_idle = 4 */
	unsigned max_links; /* max_links = 1024 */
	int ktls;	    /* ktls = auto: CFG_AUTO|CFG_ON|CFG_OFF, as [datapath] ktls */
	/* remote_rules = tcp-http: which rule changes the server may push (enum cfg_remote) */
	unsigned remote_rules;
	/* remote_to: empty (any) or HOST:PORT patterns a remote add's "to" must match */
	char remote_to[CFG_STR_MAX];
	/* CFG_MAX_RULES bounds TCP and HTTP rules together (n_tcp + n_http) */
	unsigned n_tcp;
	struct cfg_tcp_rule tcp[CFG_MAX_RULES];
	unsigned n_http;
	struct cfg_http_rule http[CFG_MAX_RULES];
	unsigned n_maps;
	struct cfg_portmap maps[CFG_MAX_MAPS];
	unsigned n_socks;
	struct cfg_socks socks[CFG_MAX_SOCKS];
	char path[CFG_PATH_MAX]; /* file it was read from / will be written to */
};

/*
 * Loads a client config. A missing file with missing_ok gives defaults (and
 * sets path). Returns 0 or -1 with "FILE:LINE: reason" in err.
 */
int cfg_client_load(struct cfg_client *c, const char *path, bool missing_ok, char *err,
		    size_t errlen);
/* Writes the client config atomically (tmp + rename, mode 0600). 0 or -errno. */
int cfg_client_save(const struct cfg_client *c, char *err, size_t errlen);
/* The default client config path: $NAVE_CONFIG, else $HOME/.config/nave/nave.ini, else ./nave.ini
 */
void cfg_client_default_path(char *out, size_t len);

/* Helpers shared with the CLIs. */
/* "10s", "500ms", "2m", "1h", "3d", plain number = seconds -> milliseconds. 0 or -EINVAL. */
int cfg_parse_duration_ms(const char *s, uint64_t *ms);
/* The shortest exact form of a duration: "0s", "90s", "24h", "1500ms". */
void cfg_format_duration_ms(uint64_t ms, char *out, size_t len);
/* "HOST:PORT" or "[V6]:PORT" -> host and port; 0 or -EINVAL. */
int cfg_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

/*
 * [client] remote_to: at most CFG_REMOTE_TO_MAX patterns HOST:PORT, each part
 * a literal or '*' (the host compared as written, case-insensitively: no name
 * is resolved). cfg_hostpats_check: 0, or -1 with the reason; cfg_remote_to_ok:
 * whether "to" (HOST:PORT) matches one (an empty list allows any).
 */
#define CFG_REMOTE_TO_MAX 16
int cfg_hostpats_check(const char *v, char *why, size_t wl);
bool cfg_remote_to_ok(const char *patterns, const char *to);
/*
 * A port map's destination: an IPv4 or IPv6 literal (no brackets), a DNS
 * name (domain.h), or a tunnel id or group id (1..63 of [A-Za-z0-9._-]);
 * at most CFG_DEST_MAX bytes.
 */
bool cfg_valid_destination(const char *s);
/* An address a local listener may bind: an IPv4 or IPv6 literal. */
bool cfg_valid_bind(const char *s);
/* A loopback address (127.0.0.0/8, ::1, ::ffff:127.x). */
bool cfg_bind_loopback(const char *s);
/*
 * What makes a SOCKS listener's keys invalid: NULL when fine, else the reason
 * with the key in *key (username without password_hash, a non-loopback bind
 * without them).
 */
const char *cfg_socks_check(const struct cfg_socks *s, const char **key);
/*
 * NULL, or why a port map is unusable (*key: the key at fault): a bind
 * address other than loopback opens the destination to the local network, so
 * it takes public = yes (nave ports map --public).
 */
const char *cfg_portmap_check(const struct cfg_portmap *m, const char **key);
/* A rule name: [A-Za-z0-9_-]{1,63}. */
bool cfg_valid_name(const char *s);
/* A system user name: [a-z_][a-z0-9_-]*, at most 32 characters. */
bool cfg_valid_user(const char *s);
/*
 * What makes an HTTP rule's combination of keys invalid (to/webroot, what
 * tls_passthrough excludes): NULL when fine, else the reason with the key in
 * *key.
 */
const char *cfg_http_rule_check(const struct cfg_http_rule *h, const char **key);
/* An ACME directory: "https://" HOST..., printable ASCII without spaces, quotes or <>\^`{|}. */
bool cfg_valid_url(const char *s);
/* LOCAL@DOMAIN: LOCAL 1..64 of RFC 5322 atext and '.', DOMAIN a DNS name. */
bool cfg_valid_email(const char *s);
/* A Host header value for host_header: 1..255 of [A-Za-z0-9.:_-]. */
bool cfg_valid_host_header(const char *s);
/*
 * A stored basic_auth "USER:HASH": USER 1..64 of [A-Za-z0-9._-], HASH
 * "$scrypt$" and printable ASCII without spaces, 255 bytes in all. The layout
 * only: common/passwd.c parses the hash itself (cfg links no libcrypto).
 */
bool cfg_valid_basic_auth(const char *s);

#endif

// SPDX-License-Identifier: Apache-2.0
/*
 * nave-relayd: the datapath daemon. Loads the config, makes sure the server
 * certificate exists, starts one io_uring worker per CPU and the control
 * thread, then waits for SIGTERM/SIGINT and drains.
 */
#include "config/cfg.h"
#include "ctlthread.h"
#include "kern.h"
#include "engine.h"
#include "log.h"
#include "portlist.h"
#include "sandbox.h"
#include "sock.h"
#include "tls/tls.h"
#include "tls/pki.h"
#include "xprt_tls.h"
#include "svc.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/capability.h>
#include <unistd.h>

#define DRAIN_MS	    5000
#define RESERVED_PORTS_PATH "/proc/sys/net/ipv4/ip_local_reserved_ports"
#define LOCAL_RANGE_PATH    "/proc/sys/net/ipv4/ip_local_port_range"

static void usage(FILE *f)
{
	fprintf(f, "usage: nave-relayd [--config FILE] [--check] [--help] [--version]\n"
		   "\n"
		   "The nave datapath daemon: tunnel links, public TCP ports, relaying.\n"
		   "  -c, --config FILE  server config (default: the embedded default)\n"
		   "  -n, --check        validate the config, print the effective settings, exit\n"
		   "  -h, --help         this help\n"
		   "  -V, --version      print the version\n");
}

/*
 * [ports] reserve: the range goes into net.ipv4.ip_local_reserved_ports
 * (this network namespace's), merged with what is there, so the kernel never
 * hands one of its ports to an outgoing connection. Not fatal: without the
 * privilege relayd says so and goes on. An unreserved range that overlaps
 * the ephemeral range is worth a warning either way.
 */
static void reserve_range(const struct cfg_server *c)
{
	unsigned lo = c->port_min, hi = c->port_max, a, b;
	bool reserved = false;
	char err[256];
	FILE *f;
	int r;

	if (c->reserve_ports) {
		r = portlist_reserve(RESERVED_PORTS_PATH, c->port_min, c->port_max, err,
				     sizeof(err));
		if (r >= 0)
			log_info("[ports] %u-%u %s net.ipv4.ip_local_reserved_ports", lo, hi,
				 r == 0 ? "added to" : "already in");
		else
			log_warn("[ports] reserve: cannot reserve %u-%u: %s", lo, hi, err);
		reserved = r >= 0;
	}
	f = fopen(LOCAL_RANGE_PATH, "r");
	if (f && fscanf(f, "%u %u", &a, &b) == 2 && lo <= b && a <= hi && !reserved)
		log_warn("[ports] %u-%u overlaps net.ipv4.ip_local_port_range %u-%u and is not "
			 "reserved: an outgoing connection may take one of its ports",
			 lo, hi, a, b);
	if (f)
		fclose(f);
}

/*
 * What a reload changes in the engine (engine_reconfigure), as at start:
 * the timeouts and limits the workers read, and [http] trusted_proxies
 * (parsed into trusted, which holds TRUSTED_MAX).
 */
#define TRUSTED_MAX 64
static void engine_live_cfg(struct engine_config *ec, const struct cfg_server *c,
			    struct cidr *trusted)
{
	char item[128], err[128];
	unsigned n = 0;

	ec->idle_timeout_ms = c->idle_timeout_ms;
	ec->pending_timeout_ms = c->pending_timeout_ms;
	ec->udp_idle_ms = c->udp_idle_ms;
	ec->udp_max_flows = c->udp_max_flows;
	ec->udp_queue = c->udp_queue;
	ec->max_conns_per_source = c->max_conns_per_source;
	ec->header_timeout_ms = c->header_timeout_ms;
	ec->keepalive_ms = c->keepalive_ms;
	ec->max_head = c->max_head;
	for (const char *p = c->trusted_proxies;
	     n < TRUSTED_MAX && (p = cfg_list_next(p, item, sizeof(item)));)
		if (cidr_parse(item, &trusted[n], err, sizeof(err)) == 0)
			n++; /* the config checked every item at load */
	ec->trusted = trusted;
	ec->ntrusted = n;
}

struct reload {
	struct cfg_server *run; /* what relayd runs with: a reload changes its live keys */
	struct ctlthread *ct;
	struct engine *eng;
};

/*
 * cfg_server_reread's step for relayd: the control thread takes the range
 * (or refuses it: an allocated port would fall outside), the tunnel limits,
 * the certificate directory (read again now) and syn_rate; the workers take
 * the connection limits, timeouts and trusted proxies; a grown range is
 * reserved like the first one.
 */
static void reload_apply(void *arg, const struct cfg_server *run, struct cfg_server *next,
			 struct cfg_reload *r)
{
	const struct reload *rl = arg;
	struct cidr trusted[TRUSTED_MAX];
	struct engine_config ec;
	char why[768];
	int ret;

	/* [socks] listen waits for a restart: a new range keeps clear of the running ports */
	cfg_server_range_keeps_socks(run, next, r->refused, sizeof(r->refused));
	ret = ctlthread_reconfigure(rl->ct, next, why, sizeof(why));
	if (ret == -1) {
		str_copy(r->refused, sizeof(r->refused), why);
		next->port_min = run->port_min;
		next->port_max = run->port_max;
	} else if (ret < 0) {
		log_warn("reload: %s", why);
	} else if ((next->port_min < run->port_min || next->port_max > run->port_max) &&
		   run->reserve_ports) {
		reserve_range(next);
	}
	memset(&ec, 0, sizeof(ec));
	engine_live_cfg(&ec, next, trusted);
	if (engine_reconfigure(rl->eng, &ec) < 0)
		log_error("reload: out of memory: the workers keep their limits and timeouts");
}

/*
 * SIGHUP (systemctl reload): the config is read again (cfg_server_reread).
 * What a reload applies live is the "live" column of config/cfg.c's table;
 * every other change is named in one line and waits for the next restart; a
 * config that does not load changes nothing.
 */
static void reload(const struct reload *rl)
{
	struct cfg_reload r;

	svc_reloading();
	if (cfg_server_reread(rl->run, "nave-relayd", reload_apply, (void *)rl, &r) < 0)
		svc_ready("reload failed: %s: the running configuration stays", r.error);
	else
		svc_ready("reloaded");
}

/*
 * Waits for SIGTERM or SIGINT, reloading on SIGHUP. Under a service manager's
 * watchdog it pings twice per period, on a schedule signals do not move, and
 * only while every worker has ticked within the last three ticks; it looks at
 * the workers at least twice per tick.
 */
static int wait_signal(const sigset_t *set, struct engine *eng, const struct reload *r)
{
	uint64_t wd = svc_watchdog_ms(), next = now_ms() + wd / 2;
	uint64_t step = wd / 4 < ENGINE_TICK_MS / 2 ? wd / 4 : ENGINE_TICK_MS / 2;
	int sig;

	for (;;) {
		if (!wd) {
			if (sigwait(set, &sig) != 0)
				return SIGTERM;
		} else {
			struct timespec ts = {.tv_sec = (time_t)(step / 1000),
					      .tv_nsec = (long)(step % 1000) * 1000000L};
			uint64_t now;
			bool alive;

			sig = sigtimedwait(set, NULL, &ts);
			now = now_ms();
			alive = engine_alive(eng, now, 3 * ENGINE_TICK_MS);
			if (now >= next) {
				if (alive)
					svc_watchdog();
				else
					log_warn(
					    "a worker has not ticked for %u ms: no watchdog ping",
					    3 * ENGINE_TICK_MS);
				next = now + wd / 2;
			}
			if (sig < 0)
				continue;
		}
		if (sig == SIGHUP)
			reload(r);
		else if (sig == SIGTERM || sig == SIGINT)
			return sig;
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", no_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	bool check = false;
	struct cfg_server cfg;
	struct engine_config ec;
	struct engine *eng = NULL;
	struct ctlthread *ct = NULL;
	struct reload rl;
	bool dropped = false;
	uid_t uid = 0;
	gid_t gid = 0;
	char err[CFG_ERR_MAX], fpr[TLS_FPR_LEN] = "";
	const char *ktls;
	struct kern *kern = NULL;
	int range_fds[ENGINE_MAX_WORKERS];
	bool range_open = false;
	int http_fds[ENGINE_MAX_WORKERS], https_fds[ENGINE_MAX_WORKERS];
	bool http_open = false, https_open = false;
	int socks_fds[2] = {-1, -1}; /* [socks] listen, tls_listen: one socket each, worker 0 */
	SSL_CTX *socks_ssl = NULL;
	struct sockaddr_storage hss;
	socklen_t hsl;
	struct cidr trusted[TRUSTED_MAX];
	SSL_CTX *ssl_ctx = NULL, *edge_ssl = NULL;
	struct pki_verifier *pki = NULL;
	const char *dirs[2];
	struct sockaddr_storage ss;
	socklen_t sl;
	unsigned nworkers = 0;
	sigset_t set;
	int c, sig, rc = 1;

	while ((c = getopt_long(argc, argv, "c:nhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'n':
			check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("nave-relayd %s\n", NAVE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "nave-relayd: unexpected argument '%s' (see --help)\n",
			argv[optind]);
		return 2;
	}
	if (cfg_server_load(&cfg, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "nave-relayd: %s\n", err);
		return 2;
	}
	if (check) {
		cfg_server_print(&cfg, stdout);
		return 0;
	}
	log_init("nave-relayd", cfg.log_level, cfg.log_json);
	signal(SIGPIPE, SIG_IGN);
	/*
	 * Every thread inherits this mask; only the main thread's sigwait takes
	 * the signals. From the start: a SIGHUP during start-up waits and reloads
	 * then, instead of ending the process.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	memset(&ec, 0, sizeof(ec));
	for (unsigned i = 0; i < ENGINE_MAX_WORKERS; i++)
		ec.tunnel_fds[i] = -1;

	/*
	 * Started as root with [server] user: what needs root itself happens
	 * now (the reserved ports, the open-file limit), then relayd runs as the
	 * user keeping three capabilities for what follows (ports below 1024,
	 * BPF steering, XDP; and CAP_SETPCAP to empty the bounding set later):
	 * the ones not needed after start-up go below.
	 */
	if (geteuid() == 0 && cfg.user[0]) {
		if (sandbox_user(cfg.user, &uid, &gid, err, sizeof(err)) < 0 ||
		    sandbox_mkdir_for(cfg.state_dir, 0700, uid, gid, err, sizeof(err)) < 0 ||
		    sandbox_mkdir_for(cfg.runtime_dir, 0755, uid, gid, err, sizeof(err)) < 0) {
			fprintf(stderr, "nave-relayd: %s\n", err);
			goto out;
		}
		reserve_range(&cfg);
		fd_limit_raise();
		if (sandbox_drop(uid, gid,
				 SBX_CAP(CAP_NET_BIND_SERVICE) | SBX_CAP(CAP_BPF) |
				     SBX_CAP(CAP_NET_ADMIN) | SBX_CAP(CAP_SETPCAP),
				 err, sizeof(err)) < 0) {
			fprintf(stderr, "nave-relayd: %s\n", err);
			goto out;
		}
		dropped = true;
	}
	if (mkdir_p(cfg.state_dir, 0700) < 0 || mkdir_p(cfg.runtime_dir, 0755) < 0) {
		fprintf(stderr, "nave-relayd: cannot create %s or %s: %s\n", cfg.state_dir,
			cfg.runtime_dir, strerror(errno));
		goto out;
	}
	/* one relayd per state and runtime directory: a second would share controld */
	dirs[0] = cfg.state_dir;
	dirs[1] = cfg.runtime_dir;
	if (lock_dirs("nave-relayd", dirs, 2, err, sizeof(err)) < 0) {
		fprintf(stderr, "nave-relayd: %s\n", err);
		goto out;
	}
	if (!dropped)
		reserve_range(&cfg);
	if (tls_ensure_selfsigned(cfg.certificate, cfg.private_key, cfg.domain, err, sizeof(err)) <
	    0) {
		fprintf(stderr, "nave-relayd: %s\n", err);
		goto out;
	}
	tls_cert_fingerprint_file(cfg.certificate, fpr);

	nworkers = cfg.workers ? cfg.workers : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (nworkers > ENGINE_MAX_WORKERS)
		nworkers = ENGINE_MAX_WORKERS;
	ec.role = ENGINE_RELAY;
	ec.workers = nworkers;
	ec.dns_cache = cfg.socks_dns_cache; /* the mesh resolver's cache (read at start) */
	ec.buffer_size = cfg.buffer_size;
	ec.buffers = cfg.buffers;
	engine_live_cfg(&ec, &cfg, trusted);
	ec.http_port = cfg.http_port;
	ec.https_port = cfg.https_port;
	ec.https_shared = cfg.tunnel_port == cfg.https_port;
	ssl_ctx = tls_server_ctx(cfg.certificate, cfg.private_key, cfg.pq, err, sizeof(err));
	if (!ssl_ctx) {
		fprintf(stderr, "nave-relayd: %s\n", err);
		goto out;
	}
	/* certificate logins: the tunnel port asks for one, the control thread checks it */
	if (cfg.client_auth != CFG_CLIENT_AUTH_OFF) {
		pki = pki_verifier_new(cfg.client_ca, cfg.client_crl, err, sizeof(err));
		if (!pki) {
			fprintf(stderr, "nave-relayd: [tls] client_ca %s: %s\n", cfg.client_ca,
				err);
			goto out;
		}
		if (tls_server_ask_client_cert(ssl_ctx) < 0) {
			fprintf(stderr, "nave-relayd: cannot ask for client certificates\n");
			goto out;
		}
	}
	ec.xprt = xprt_ctx_new(ssl_ctx,
			       cfg.ktls == CFG_ON    ? XPRT_KTLS_ON
			       : cfg.ktls == CFG_OFF ? XPRT_KTLS_OFF
						     : XPRT_KTLS_AUTO,
			       err, sizeof(err));
	if (!ec.xprt) {
		fprintf(stderr, "nave-relayd: [datapath] %s\n", err);
		goto out;
	}
	/* the HTTPS edge's base: each terminated connection takes its domain's certificate */
	edge_ssl = tls_edge_ctx(NULL, NULL, err, sizeof(err));
	ec.edge_xprt = edge_ssl ? xprt_ctx_new(edge_ssl,
					       cfg.ktls == CFG_ON    ? XPRT_KTLS_ON
					       : cfg.ktls == CFG_OFF ? XPRT_KTLS_OFF
								     : XPRT_KTLS_AUTO,
					       err, sizeof(err))
				: NULL;
	if (!ec.edge_xprt) {
		fprintf(stderr, "nave-relayd: HTTPS edge: %s\n", err);
		goto out;
	}
	ktls = xprt_ctx_mode(ec.xprt);
	if (cfg.ktls == CFG_AUTO && !xprt_ctx_ktls(ec.xprt))
		log_warn("kTLS: %s: links use userspace TLS (ktls = auto)", xprt_ctx_why(ec.xprt));
	if (engine_resolve(cfg.address, cfg.tunnel_port ? cfg.tunnel_port : cfg.https_port, &ss,
			   &sl) < 0) {
		fprintf(stderr, "nave-relayd: [listen] address %s: cannot resolve\n", cfg.address);
		goto out;
	}
	/* exclusive: a second instance on the same address is refused here */
	if (sock_listen_group((struct sockaddr *)&ss, sl, nworkers, 1024, true, ec.tunnel_fds, err,
			      sizeof(err)) < 0) {
		fprintf(stderr, "nave-relayd: cannot listen for tunnels: %s\n", err);
		goto out;
	}
	/* the HTTP edge: one listener per worker, posted once the engine runs */
	if (engine_resolve(cfg.address, cfg.http_port, &hss, &hsl) < 0 ||
	    sock_listen_group((struct sockaddr *)&hss, hsl, nworkers, 1024, true, http_fds, err,
			      sizeof(err)) < 0) {
		fprintf(stderr, "nave-relayd: cannot listen for HTTP on port %u: %s\n",
			cfg.http_port, err);
		goto out;
	}
	http_open = true;
	if (!ec.https_shared) {
		if (engine_resolve(cfg.address, cfg.https_port, &hss, &hsl) < 0 ||
		    sock_listen_group((struct sockaddr *)&hss, hsl, nworkers, 1024, true, https_fds,
				      err, sizeof(err)) < 0) {
			fprintf(stderr, "nave-relayd: cannot listen for HTTPS on port %u: %s\n",
				cfg.https_port, err);
			goto out;
		}
		https_open = true;
	}
	/* relayd's SOCKS5 server: one socket each, accepted by worker 0 (its limits are its) */
	for (int i = 0; i < 2; i++) {
		const char *spec = i ? cfg.socks_tls_listen : cfg.socks_listen;
		char host[256];
		uint16_t port;

		if (!spec[0])
			continue;
		if (cfg_parse_hostport(spec, host, sizeof(host), &port)) {
			snprintf(err, sizeof(err), "not a host:port");
		} else if (engine_resolve(host, port, &hss, &hsl) < 0) {
			snprintf(err, sizeof(err), "cannot resolve %.200s", host);
		} else if (sock_listen_group((struct sockaddr *)&hss, hsl, 1, 1024, true,
					     &socks_fds[i], err, sizeof(err)) >= 0) {
			continue;
		}
		fprintf(stderr, "nave-relayd: [socks] %s %s: cannot listen: %s\n",
			i ? "tls_listen" : "listen", spec, err);
		goto out;
	}
	if (cfg.socks_tls_listen[0]) {
		/* the server certificate, without the links' ALPN: any SOCKS client's TLS */
		socks_ssl = tls_edge_ctx(cfg.certificate, cfg.private_key, err, sizeof(err));
		ec.socks_xprt =
		    socks_ssl ? xprt_ctx_new(socks_ssl, XPRT_KTLS_OFF, err, sizeof(err)) : NULL;
		if (!ec.socks_xprt) {
			fprintf(stderr, "nave-relayd: [socks] tls_listen: %s\n", err);
			goto out;
		}
	}
	/* after the tunnel listeners: a second instance has been refused by now */
	if (kern_open(&kern, &cfg, nworkers, (struct sockaddr *)&ss, sl, err, sizeof(err)) < 0) {
		fprintf(stderr, "nave-relayd: %s\n", err);
		goto out;
	}
	if (kern_steering(kern)) {
		if (kern_range_listen(kern, range_fds, err, sizeof(err)) == 0) {
			range_open = true;
		} else if (cfg.steering == CFG_STEER_AUTO) {
			log_warn("steering: %s: one listener per port and worker instead "
				 "(steering = auto)",
				 err);
			kern_steering_off(kern);
		} else {
			fprintf(stderr, "nave-relayd: [datapath] steering = bpf: %s\n", err);
			goto out;
		}
	}
	/*
	 * Listeners bound, BPF loaded: keep only the capabilities the rest needs
	 * (ports below 1024 opened later, BPF maps and XDP), whether relayd
	 * dropped from root or was given them (a systemd unit's ambient set);
	 * root without [server] user keeps what root has. Then the seccomp
	 * filter, which every thread started from here on inherits.
	 */
	if (dropped || geteuid() != 0) {
		uint64_t keep = 0, had = sandbox_caps_effective();

		if (cfg.port_min < 1024)
			keep |= SBX_CAP(CAP_NET_BIND_SERVICE);
		if (kern_steering(kern) || cfg.xdp_interface[0])
			keep |= SBX_CAP(CAP_BPF) | SBX_CAP(CAP_NET_ADMIN);
		if ((dropped || had) && sandbox_caps_limit(keep, err, sizeof(err)) < 0) {
			fprintf(stderr, "nave-relayd: %s\n", err);
			goto out;
		}
		if (!dropped && had) {
			char caps[96];

			log_info("capabilities kept after start-up: %s",
				 sandbox_caps_name(sandbox_caps_effective(), caps, sizeof(caps)));
		}
	}
	if (sandbox_seccomp_relayd(err, sizeof(err)) < 0) {
		fprintf(stderr, "nave-relayd: %s\n", err);
		goto out;
	}
	if (dropped) {
		char caps[96];

		log_info("running as %s (uid %u, gid %u), capabilities: %s, seccomp filter on",
			 cfg.user, (unsigned)uid, (unsigned)gid,
			 sandbox_caps_name(sandbox_caps_effective(), caps, sizeof(caps)));
	}
	if (ctlthread_init(&ct, &cfg, fpr, ktls, kern, &ec.ops) < 0) {
		fprintf(stderr, "nave-relayd: out of memory\n");
		goto out;
	}
	ctlthread_set_pki(ct, pki);
	pki = NULL;
	if (engine_start(&eng, &ec, err, sizeof(err)) < 0) {
		/* the engine closed the tunnel listeners */
		for (unsigned i = 0; i < nworkers; i++)
			ec.tunnel_fds[i] = -1;
		fprintf(stderr, "nave-relayd: %s\n", err);
		goto out;
	}
	/* the range listener group: each worker accepts on its own socket */
	for (unsigned i = 0; range_open && i < nworkers; i++) {
		struct mb_msg m;

		memset(&m, 0, sizeof(m));
		m.type = MB_LISTEN;
		m.fd = range_fds[i];
		m.port = 0;
		engine_post(eng, (int)i, &m);
	}
	range_open = false;
	for (unsigned i = 0; http_open && i < nworkers; i++) {
		struct mb_msg m;

		memset(&m, 0, sizeof(m));
		m.type = MB_LISTEN;
		m.fd = http_fds[i];
		m.port = cfg.http_port;
		m.listener = LISTEN_HTTP;
		engine_post(eng, (int)i, &m);
	}
	http_open = false;
	for (unsigned i = 0; https_open && i < nworkers; i++) {
		struct mb_msg m;

		memset(&m, 0, sizeof(m));
		m.type = MB_LISTEN;
		m.fd = https_fds[i];
		m.port = cfg.https_port;
		m.listener = LISTEN_HTTPS;
		engine_post(eng, (int)i, &m);
	}
	https_open = false;
	for (int i = 0; i < 2; i++) {
		struct mb_msg m;
		char host[256];

		if (socks_fds[i] < 0)
			continue;
		memset(&m, 0, sizeof(m));
		m.type = MB_LISTEN;
		m.fd = socks_fds[i];
		if (cfg_parse_hostport(i ? cfg.socks_tls_listen : cfg.socks_listen, host,
				       sizeof(host), &m.port))
			m.port = 0;
		m.listener = i ? LISTEN_SOCKS_TLS : LISTEN_SOCKS;
		engine_post(eng, 0, &m);
		socks_fds[i] = -1;
		log_info(
		    "SOCKS5 server on %s%s (user: a tunnel id or group id, password: its token)",
		    i ? cfg.socks_tls_listen : cfg.socks_listen, i ? " (TLS)" : "");
	}
	if (ctlthread_start(ct, eng) < 0) {
		fprintf(stderr, "nave-relayd: cannot start the control thread\n");
		engine_stop(eng, 0);
		goto out;
	}
	log_info("nave-relayd %s: %u worker(s), tunnels on %s:%u, HTTP on %u, ports %u-%u, "
		 "kTLS %s, steering %s, certificate %s",
		 NAVE_VERSION, engine_workers(eng), cfg.address,
		 cfg.tunnel_port ? cfg.tunnel_port : cfg.https_port, cfg.http_port, cfg.port_min,
		 cfg.port_max, ktls, kern_steering_name(kern), fpr);
	if (!dropped && geteuid() == 0)
		log_warn("running as root: set [server] user to run as that user once started");
	if (engine_fd_budget(eng) / 2 < cfg.max_links)
		log_warn("the open-file limit holds about %lu relayed connections, fewer than "
			 "[tunnel] max_links (%u): past it new connections are reset (raise "
			 "ulimit -n / LimitNOFILE)",
			 engine_fd_budget(eng) / 2, cfg.max_links);
	svc_ready("%u worker(s), tunnels on %s:%u, kTLS %s, steering %s", engine_workers(eng),
		  cfg.address, cfg.tunnel_port ? cfg.tunnel_port : cfg.https_port, ktls,
		  kern_steering_name(kern));
	rl.run = &cfg;
	rl.ct = ct;
	rl.eng = eng;
	sig = wait_signal(&set, eng, &rl);
	log_info("signal %d: draining (up to %d ms)", sig, DRAIN_MS);
	svc_stopping();
	engine_stop(eng, DRAIN_MS);
	rc = 0;
out:
	/* start-up failures free what they made too (the sanitizer build checks) */
	ctlthread_stop(ct);
	engine_free(eng);
	for (unsigned i = 0; !eng && i < ENGINE_MAX_WORKERS; i++)
		if (ec.tunnel_fds[i] >= 0)
			close(ec.tunnel_fds[i]);
	for (unsigned i = 0; range_open && i < nworkers; i++)
		close(range_fds[i]);
	for (unsigned i = 0; http_open && i < nworkers; i++)
		close(http_fds[i]);
	for (unsigned i = 0; https_open && i < nworkers; i++)
		close(https_fds[i]);
	for (int i = 0; i < 2; i++)
		if (socks_fds[i] >= 0)
			close(socks_fds[i]);
	xprt_ctx_free(ec.socks_xprt);
	SSL_CTX_free(socks_ssl);
	kern_free(kern);
	xprt_ctx_free(ec.xprt);
	SSL_CTX_free(ssl_ctx);
	pki_verifier_free(pki);
	xprt_ctx_free(ec.edge_xprt);
	SSL_CTX_free(edge_ssl);
	if (!rc)
		log_info("stopped");
	return rc;
}

// SPDX-License-Identifier: Apache-2.0
/*
 * nave-controld: the control daemon. Loads the server config, opens the
 * SQLite store, listens on runtime_dir/relay.sock for relayd and on
 * runtime_dir/control.sock for the admin API, and runs everything from one
 * poll() loop (signalfd, relay link, libmicrohttpd in external select mode),
 * so the store needs no locks. SIGTERM/SIGINT end the loop cleanly and
 * remove both sockets. Usage errors and bad config exit 2, start-up failures
 * exit 1; nothing a peer sends can stop the daemon.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config/cfg.h"
#include "ctl/acme.h"
#include "ctl/api.h"
#include "ctl/metrics.h"
#include "ctl/relaylink.h"
#include "ctl/ruleops.h"
#include "ctl/reload.h"
#include "ctl/store.h"
#include "ctl/support.h"
#include "log.h"
#include "sandbox.h"
#include "svc.h"
#include "util.h"

#define API_POLLFDS 256

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: nave-controld [--config FILE] [--check] [--list-routes] [--help] "
	       "[--version]\n"
	       "\n"
	       "The nave control daemon: state, tokens, tunnels, ports, the admin API.\n"
	       "  -c, --config FILE  server config (default: the embedded single-machine setup)\n"
	       "  -n, --check        validate the config, print the effective settings, exit\n"
	       "      --list-routes  print the admin API's routes (METHOD PATH), one a line, exit\n"
	       "  -h, --help         this help\n"
	       "  -V, --version      print the version\n");
}

/* True when something accepts connections on the socket file at path. */
static bool unix_in_use(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	bool live;
	int fd;

	if (!str_copy(sa.sun_path, sizeof(sa.sun_path), path))
		return false;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return live;
}

/*
 * Binds a listening AF_UNIX socket at path with mode. A stale socket file is
 * replaced; a live one (another controld) is an error. 0 with *fd, or -errno.
 */
static int unix_listen(const char *path, mode_t mode, int *fd_out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat sb;
	mode_t old;
	int fd, ret;

	if (!str_copy(sa.sun_path, sizeof(sa.sun_path), path)) {
		log_error("%s: path longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	if (lstat(path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode)) {
			log_error("%s exists and is not a socket", path);
			return -EEXIST;
		}
		if (unix_in_use(path)) {
			log_error("%s is in use: is another nave-controld running?", path);
			return -EADDRINUSE;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			ret = -errno;
			log_error("%s: cannot remove the stale socket: %s", path, strerror(errno));
			return ret;
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		log_error("socket: %s", strerror(errno));
		return ret;
	}
	/* no window in which the socket is more open than mode */
	old = umask(~mode & 0777);
	ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	umask(old);
	if (!ret && chmod(path, mode) < 0)
		ret = -errno;
	if (!ret && listen(fd, 16) < 0)
		ret = -errno;
	if (ret) {
		log_error("%s: %s", path, strerror(-ret));
		close(fd);
		return ret;
	}
	*fd_out = fd;
	return 0;
}

static int join_path(char *out, size_t len, const char *dir, const char *name)
{
	int n = snprintf(out, len, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= len) {
		log_error("%s/%s: path too long", dir, name);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* SIGHUP (systemctl reload): ctl/reload.h, told to systemd around it. */
static void reload(struct cfg_server *run, struct store *st)
{
	struct cfg_reload r;

	svc_reloading();
	if (ctl_reload(run, st, &r) == 0)
		svc_ready("reloaded");
	else
		svc_ready("reload failed: %s: the running configuration stays", r.error);
}

/*
 * [records] retention, one bounded step at a time (RECORDS_PRUNE_CHUNK rows) so
 * that a large backlog never stalls the loop: a step every second, every
 * RECORDS_PRUNE_BUSY_MS while a step found a full chunk. Returns the ms until
 * the next step.
 */
#define RECORDS_PRUNE_CHUNK   2000
#define RECORDS_PRUNE_MS      1000
#define RECORDS_PRUNE_BUSY_MS 50
static int64_t records_retention(struct store *st, const struct cfg_server *cfg, uint64_t *at)
{
	uint64_t now = now_ms();
	int64_t deleted = 0;

	if (now < *at)
		return (int64_t)(*at - now);
	if (store_records_prune(st, (int64_t)time(NULL) - (int64_t)(cfg->records_keep_ms / 1000),
				cfg->records_max_rows, RECORDS_PRUNE_CHUNK, &deleted))
		log_every(NLOG_ERROR, "records: pruning failed (see above); trying again");
	else if (deleted)
		log_debug("records: %lld pruned", (long long)deleted);
	*at = now + (deleted >= RECORDS_PRUNE_CHUNK ? RECORDS_PRUNE_BUSY_MS : RECORDS_PRUNE_MS);
	return (int64_t)(*at - now);
}

static int run(struct cfg_server *cfg)
{
	char db[CFG_PATH_MAX + 16], relay_sock[CFG_PATH_MAX + 16], ctl_sock[CFG_PATH_MAX + 16];
	char err[CFG_ERR_MAX];
	struct pollfd pfd[2 + RELAYLINK_POLLFDS + API_POLLFDS + METRICS_POLLFDS];
	struct relaylink *rl = NULL;
	struct acme *acme = NULL;
	struct store *st = NULL;
	struct api *api = NULL;
	struct metrics *metrics = NULL;
	struct support *sup = NULL;
	bool relay_bound = false, ctl_bound = false;
	const char *dirs[2];
	sigset_t sigs;
	uint64_t wd, wd_last;
	uint64_t prune_at = 0; /* the next step of [records] retention (ms) */
	int sfd = -1, lfd, ret;

	/* from the start: a SIGHUP during start-up waits and reloads then */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	if (join_path(db, sizeof(db), cfg->state_dir, "nave.db") ||
	    join_path(relay_sock, sizeof(relay_sock), cfg->runtime_dir, "relay.sock") ||
	    join_path(ctl_sock, sizeof(ctl_sock), cfg->runtime_dir, "control.sock"))
		return 1;
	/*
	 * Started as root: controld needs no privilege at all, so it runs as
	 * [server] user before it opens anything (the directories it makes for
	 * that are the user's).
	 */
	if (geteuid() == 0 && cfg->user[0]) {
		uid_t uid;
		gid_t gid;

		if (sandbox_user(cfg->user, &uid, &gid, err, sizeof(err)) < 0 ||
		    sandbox_mkdir_for(cfg->state_dir, 0700, uid, gid, err, sizeof(err)) < 0 ||
		    sandbox_mkdir_for(cfg->runtime_dir, 0755, uid, gid, err, sizeof(err)) < 0 ||
		    sandbox_drop(uid, gid, 0, err, sizeof(err)) < 0) {
			log_error("%s", err);
			return 1;
		}
		log_info("running as %s (uid %u, gid %u), no capabilities", cfg->user,
			 (unsigned)uid, (unsigned)gid);
	}
	ret = mkdir_p(cfg->state_dir, 0700);
	if (ret) {
		log_error("state_dir %s: %s", cfg->state_dir, strerror(-ret));
		return 1;
	}
	ret = mkdir_p(cfg->runtime_dir, 0755);
	if (ret) {
		log_error("runtime_dir %s: %s", cfg->runtime_dir, strerror(-ret));
		return 1;
	}
	/* one controld per state and runtime directory */
	dirs[0] = cfg->state_dir;
	dirs[1] = cfg->runtime_dir;
	if (lock_dirs("nave-controld", dirs, 2, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return 1;
	}

	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		log_error("signalfd: %s", strerror(errno));
		return 1;
	}

	ret = store_open(&st, db, cfg->port_min, cfg->port_max, cfg->max_per_tunnel, err,
			 sizeof(err));
	if (ret) {
		log_error("store: %s", err);
		goto out;
	}
	/* no relayd is connected yet: nothing can be online */
	store_tunnel_all_offline(st);

	/*
	 * Probe control.sock first: a probe of a live relay.sock would count as
	 * a new relayd there and replace the running controld's real one.
	 */
	if (unix_in_use(ctl_sock)) {
		log_error("%s is in use: is another nave-controld running?", ctl_sock);
		ret = -EADDRINUSE;
		goto out;
	}
	ret = unix_listen(relay_sock, 0600, &lfd);
	if (ret)
		goto out;
	relay_bound = true;
	ret = relaylink_open(&rl, lfd, st, cfg);
	if (ret) {
		log_error("relay link: %s", strerror(-ret));
		goto out;
	}
	ret = support_open(&sup, st);
	if (ret) {
		log_error("support sessions: %s", strerror(-ret));
		goto out;
	}
	relaylink_set_support(rl, sup);
	ret = unix_listen(ctl_sock, 0660, &lfd);
	if (ret)
		goto out;
	ctl_bound = true;
	ret = acme_open(&acme, cfg);
	if (ret) {
		log_error("acme: %s", strerror(-ret));
		goto out;
	}
	ctl_reload_set_acme(acme);
	ret = api_start(&api, lfd, st, rl, cfg, err, sizeof(err));
	if (ret) {
		log_error("admin API: %s", err);
		goto out;
	}
	api_set_acme(api, acme);
	ret = metrics_start(&metrics, cfg, st, rl, err, sizeof(err));
	if (ret) {
		log_error("metrics: %s", err);
		goto out;
	}
	api_set_metrics(api, metrics);
	if (cfg->metrics_listen[0])
		log_info("metrics on http://%s/metrics", cfg->metrics_listen);
	log_info("nave-controld %s started: store %s (schema v%d), admin API on %s, relayd on %s",
		 NAVE_VERSION, db, store_schema_version(st), ctl_sock, relay_sock);
	if (geteuid() == 0)
		log_warn("running as root: set [server] user to run as that user instead");
	svc_ready("admin API on %s, relayd on %s", ctl_sock, relay_sock);
	wd = svc_watchdog_ms();
	wd_last = now_ms();

	for (;;) {
		int n = 0, nrl, napi, nmet, timeout = -1;
		int64_t wait_ms = records_retention(st, cfg, &prune_at);

		pfd[n].fd = sfd;
		pfd[n].events = POLLIN;
		pfd[n++].revents = 0;
		n += acme_pollfd(acme, pfd + n); /* pfd[1] */
		nrl = relaylink_pollfds(rl, pfd + n);
		n += nrl;
		napi = api_pollfds(api, pfd + n, API_POLLFDS, &timeout);
		n += napi;
		nmet = metrics_pollfds(metrics, pfd + n, METRICS_POLLFDS, &timeout);
		n += nmet;
		if (timeout < 0 || timeout > 1000)
			timeout = 1000; /* rate-limited log summaries are due now and then */
		if (timeout > wait_ms)
			timeout = (int)wait_ms;
		if (relaylink_busy(rl))
			timeout = 0; /* relayd's messages that the last turn's budget left */
		if (wd && timeout > (int)(wd / 2))
			timeout = (int)(wd / 2);
		if (wd && now_ms() - wd_last >= wd / 2) {
			svc_watchdog(); /* the loop turns: the store and the API answer */
			wd_last = now_ms();
		}
		if (poll(pfd, (nfds_t)n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			ret = -errno;
			break;
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si = {.ssi_signo = 0};

			if (read(sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGHUP) {
				reload(cfg, st);
			} else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
				log_info("signal %u: stopping", si.ssi_signo);
				svc_stopping();
				ret = 0;
				break;
			}
		}
		relaylink_process(rl, pfd + 2, nrl);
		api_process(api, pfd + 2 + nrl, napi);
		metrics_process(metrics, pfd + 2 + nrl + napi, nmet);
		acme_pump(acme, rl);   /* also after relaylink_process: a relayd that just synced */
		ruleops_tick(st, rl);  /* remote rule operations the client never answered */
		support_tick(sup, rl); /* support sessions' expiry, once a second */
		log_limit_flush();
	}
out:
	api_set_metrics(api, NULL);
	metrics_stop(metrics);
	api_stop(api);
	ctl_reload_set_acme(NULL);
	acme_close(acme);
	relaylink_close(rl);
	support_close(sup);
	if (ctl_bound)
		unlink(ctl_sock);
	if (relay_bound)
		unlink(relay_sock);
	store_close(st);
	if (sfd >= 0)
		close(sfd);
	return ret ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'k'},
	    {"list-routes", no_argument, NULL, 'R'},  {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
	};
	static struct cfg_server cfg;
	const char *config = NULL;
	char err[CFG_ERR_MAX];
	bool check = false;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:nhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'k':
		case 'n':
			check = true;
			break;
		case 'R':
			api_list_routes(stdout);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("nave-controld %s\n", NAVE_VERSION);
			return 0;
		default:
			if (optopt)
				fprintf(stderr, "nave-controld: bad option -%c\n", optopt);
			else
				fprintf(stderr, "nave-controld: bad option %s\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "nave-controld: unexpected argument %s\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (cfg_server_load(&cfg, config, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	if (check) {
		cfg_server_print(&cfg, stdout);
		return 0;
	}
	log_init("nave-controld", cfg.log_level, cfg.log_json);
	return run(&cfg);
}

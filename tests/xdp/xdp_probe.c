// SPDX-License-Identifier: Apache-2.0
/*
 * xdp_probe: the XDP filter (bpf/xdp.c) driven from a test, without relayd.
 *
 *   xdp_probe --if IFNAME [--mode auto|native|generic] [--range MIN-MAX]
 *             [--syn-rate N] [--svc PORT]... [--alloc PORT]...
 *             [--deny CIDR]... [--allow CIDR]... [--share hash|bad] [--addr ADDR]
 *
 * Opens the filter (its own ports map; with --share, a ports map made here,
 * passed as ports_fd and written through this fd; "bad" makes one of the
 * wrong value size, which the loader must refuse; with --addr, relayd's
 * address: only TCP to it is judged), prints {"mode", "ifname",
 * "verified_insns"} (the verifier's count for the program)
 * and then answers one JSON line per command read from stdin:
 *   stats              the verdict counters, the list sizes and the mode
 *   port N             the port's packets and payload bytes
 *   mode               the mode ("native", "generic", "detached")
 *   deny CIDR          add to the deny list (the tries are replaced)
 *   allow CIDR         add to the allow list
 *   fill N A.B         the deny list becomes N addresses /32 from 10.A.B.0 up
 *   clear              both lists empty
 *   alloc N | hold N   the port into the ports map, open | held but not open
 *   release N          the port out of the ports map, its counters reset
 *   run HEX            the program on one frame (BPF_PROG_TEST_RUN): verdict
 *   quit               exit 0
 * Interface events are read while waiting (xdp_fw_watch). Logs go to stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <linux/bpf.h>
#include <bpf/bpf.h>

#include "cidr.h"
#include "log.h"
#include "maps.h"
#include "util.h"
#include "xdp.h"

static struct cidr deny[CIDR_LIST_MAX], allow[CIDR_LIST_MAX];
static unsigned ndeny, nallow;
static int shared_fd = -1; /* --share: the ports map made here, as sk_lookup's would be */

static int push_lists(struct xdp_fw *x)
{
	struct cidr_table *t = cidr_table_new(deny, ndeny, allow, nallow, 1);
	int err;

	if (!t)
		return -ENOMEM;
	err = xdp_fw_set_lists(x, t);
	cidr_table_put(t);
	return err;
}

static int add_cidr(const char *s, bool to_deny, char *why, size_t whylen)
{
	struct cidr c;

	if (cidr_parse(s, &c, why, whylen) < 0)
		return -1;
	if ((to_deny ? ndeny : nallow) >= CIDR_LIST_MAX) {
		snprintf(why, whylen, "list full");
		return -1;
	}
	if (to_deny)
		deny[ndeny++] = c;
	else
		allow[nallow++] = c;
	return 0;
}

static int parse_port(const char *s, uint16_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v == 0 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

static int port_set(struct xdp_fw *x, uint16_t port, int how)
{
	struct nave_port v = {.tunnel = 1, .flags = how > 0 ? NAVE_PORT_OPEN : 0};
	int fd = shared_fd >= 0 ? shared_fd : xdp_fw_ports_fd(x);
	__u16 k = port;

	if (how < 0) {
		xdp_fw_port_reset(x, port);
		return bpf_map_delete_elem(fd, &k) < 0 ? -errno : 0;
	}
	return bpf_map_update_elem(fd, &k, &v, BPF_ANY) < 0 ? -errno : 0;
}

static void print_stats(struct xdp_fw *x)
{
	struct xdp_fw_stats s;

	xdp_fw_stats(x, &s);
	printf("{\"pass\": %llu, \"deny\": %llu, \"not_allowed\": %llu, \"unallocated\": %llu, "
	       "\"syn_rate\": %llu, \"malformed\": %llu, \"ndeny\": %u, \"nallow\": %u, "
	       "\"mode\": \"%s\"}\n",
	       (unsigned long long)s.ctr[NAVE_XDP_PASS], (unsigned long long)s.ctr[NAVE_XDP_DENY],
	       (unsigned long long)s.ctr[NAVE_XDP_NOT_ALLOWED],
	       (unsigned long long)s.ctr[NAVE_XDP_UNALLOCATED],
	       (unsigned long long)s.ctr[NAVE_XDP_SYN_RATE],
	       (unsigned long long)s.ctr[NAVE_XDP_MALFORMED], s.ndeny, s.nallow, xdp_fw_mode(x));
}

static void run_frame(struct xdp_fw *x, const char *hex)
{
	static const char *const names[] = {"aborted", "drop", "pass", "tx", "redirect"};
	uint8_t frame[1600];
	size_t n = strlen(hex) / 2;
	int err;

	if (strlen(hex) % 2 || n > sizeof(frame) || hex_decode(hex, frame, n) < 0) {
		printf("{\"error\": \"a frame is up to %zu bytes of hex\"}\n", sizeof(frame));
		return;
	}
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_size_in = (__u32)n, .repeat = 1);
	err = bpf_prog_test_run_opts(xdp_fw_prog_fd(x), &o);
	if (err < 0) {
		printf("{\"error\": \"test run: %s\"}\n", strerror(-err));
		return;
	}
	printf("{\"verdict\": \"%s\", \"retval\": %u}\n",
	       o.retval < ARRAY_SIZE(names) ? names[o.retval] : "?", o.retval);
}

/* one command line; false on quit */
static bool command(struct xdp_fw *x, char *line)
{
	char why[256], *arg;
	uint16_t port;
	int err;

	line[strcspn(line, "\r\n")] = '\0';
	arg = strchr(line, ' ');
	if (arg)
		*arg++ = '\0';
	if (!strcmp(line, "quit"))
		return false;
	if (!strcmp(line, "stats")) {
		print_stats(x);
	} else if (!strcmp(line, "mode")) {
		printf("{\"mode\": \"%s\"}\n", xdp_fw_mode(x));
	} else if (!strcmp(line, "port") && arg && !parse_port(arg, &port)) {
		uint64_t p, b;
		bool any = xdp_fw_port_count(x, port, &p, &b);

		printf("{\"port\": %u, \"counted\": %s, \"packets\": %llu, \"bytes\": %llu}\n",
		       port, any ? "true" : "false", (unsigned long long)p, (unsigned long long)b);
	} else if ((!strcmp(line, "deny") || !strcmp(line, "allow")) && arg) {
		if (add_cidr(arg, line[0] == 'd', why, sizeof(why)) < 0) {
			printf("{\"error\": \"%s\"}\n", why);
		} else if ((err = push_lists(x)) < 0) {
			printf("{\"error\": \"set_lists: %s\"}\n", strerror(-err));
		} else {
			print_stats(x);
		}
	} else if (!strcmp(line, "fill") && arg) {
		unsigned n = (unsigned)strtoul(arg, &arg, 10), a, b;

		/* the deny list becomes n /32s from 10.A.B.0 up */
		if (n > CIDR_LIST_MAX || sscanf(arg, " %u.%u", &a, &b) != 2 || a > 255 || b > 255) {
			printf("{\"error\": \"fill N A.B\"}\n");
		} else {
			for (unsigned i = 0; i < n; i++) {
				deny[i] = (struct cidr){.family = AF_INET, .prefix = 32};
				deny[i].addr[0] = 10;
				deny[i].addr[1] = (uint8_t)a;
				deny[i].addr[2] = (uint8_t)(b + i / 256);
				deny[i].addr[3] = (uint8_t)(i % 256);
			}
			ndeny = n;
			err = push_lists(x);
			if (err < 0)
				printf("{\"error\": \"set_lists: %s\"}\n", strerror(-err));
			else
				print_stats(x);
		}
	} else if (!strcmp(line, "clear")) {
		ndeny = nallow = 0;
		err = push_lists(x);
		if (err < 0)
			printf("{\"error\": \"set_lists: %s\"}\n", strerror(-err));
		else
			print_stats(x);
	} else if ((!strcmp(line, "alloc") || !strcmp(line, "hold") || !strcmp(line, "release")) &&
		   arg && !parse_port(arg, &port)) {
		err = port_set(x, port, line[0] == 'a' ? 1 : line[0] == 'h' ? 0 : -1);
		if (err < 0)
			printf("{\"error\": \"%s %u: %s\"}\n", line, port, strerror(-err));
		else
			printf("{\"ok\": true}\n");
	} else if (!strcmp(line, "run") && arg) {
		run_frame(x, arg);
	} else {
		printf("{\"error\": \"unknown command\"}\n");
	}
	fflush(stdout);
	return true;
}

static void usage(void)
{
	fprintf(stderr, "usage: xdp_probe --if IFNAME [--mode auto|native|generic] "
			"[--range MIN-MAX] [--syn-rate N] [--svc PORT]... [--alloc PORT]... "
			"[--deny CIDR]... [--allow CIDR]... [--share hash|bad] [--addr ADDR]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"if", required_argument, NULL, 'i'},
					     {"mode", required_argument, NULL, 'm'},
					     {"range", required_argument, NULL, 'r'},
					     {"syn-rate", required_argument, NULL, 's'},
					     {"svc", required_argument, NULL, 'S'},
					     {"alloc", required_argument, NULL, 'a'},
					     {"deny", required_argument, NULL, 'd'},
					     {"allow", required_argument, NULL, 'A'},
					     {"share", required_argument, NULL, 'P'},
					     {"addr", required_argument, NULL, 'D'},
					     {NULL, 0, NULL, 0}};
	const char *share = NULL;
	struct xdp_fw_cfg c = {.mode = XDP_FW_AUTO, .ports_fd = -1};
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
	struct sockaddr_in a4 = {.sin_family = AF_INET};
	uint16_t alloc[64];
	unsigned nalloc = 0, nsvc = 0;
	char why[512], in[8192];
	size_t inlen = 0;
	bool run = true;
	struct xdp_fw *x;
	int o, err;

	log_init("xdp_probe", NLOG_INFO, false);
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		unsigned a, b;

		switch (o) {
		case 'i':
			c.ifname = optarg;
			break;
		case 'm':
			if (!strcmp(optarg, "auto"))
				c.mode = XDP_FW_AUTO;
			else if (!strcmp(optarg, "native"))
				c.mode = XDP_FW_NATIVE;
			else if (!strcmp(optarg, "generic"))
				c.mode = XDP_FW_GENERIC;
			else
				usage();
			break;
		case 'r':
			if (sscanf(optarg, "%u-%u", &a, &b) != 2 || !a || a > b || b > 65535)
				usage();
			c.port_min = (uint16_t)a;
			c.port_max = (uint16_t)b;
			break;
		case 's':
			c.syn_rate = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'S':
			if (nsvc >= ARRAY_SIZE(c.svc_ports) ||
			    parse_port(optarg, &c.svc_ports[nsvc]))
				usage();
			nsvc++;
			break;
		case 'a':
			if (nalloc >= ARRAY_SIZE(alloc) || parse_port(optarg, &alloc[nalloc]))
				usage();
			nalloc++;
			break;
		case 'd':
		case 'A':
			if (add_cidr(optarg, o == 'd', why, sizeof(why)) < 0) {
				fprintf(stderr, "xdp_probe: %s\n", why);
				return 2;
			}
			break;
		case 'P':
			share = optarg;
			break;
		case 'D':
			if (inet_pton(AF_INET, optarg, &a4.sin_addr) == 1) {
				c.addr = (struct sockaddr *)&a4;
				c.addrlen = sizeof(a4);
			} else if (inet_pton(AF_INET6, optarg, &a6.sin6_addr) == 1) {
				c.addr = (struct sockaddr *)&a6;
				c.addrlen = sizeof(a6);
			} else {
				usage();
			}
			break;
		default:
			usage();
		}
	}
	if (!c.ifname || optind != argc)
		usage();
	if (share) {
		/* "hash": a map like sk_lookup's; "bad": one of the wrong value size */
		bool bad = !strcmp(share, "bad");

		shared_fd =
		    bpf_map_create(BPF_MAP_TYPE_HASH, "ports", sizeof(__u16),
				   bad ? sizeof(__u32) : sizeof(struct nave_port), 64, NULL);
		if (shared_fd < 0) {
			fprintf(stderr, "xdp_probe: bpf_map_create: %s\n", strerror(-shared_fd));
			return 1;
		}
		c.ports_fd = shared_fd;
	}

	err = xdp_fw_open(&x, &c, why, sizeof(why));
	if (err < 0) {
		log_error("%s", why);
		printf("{\"error\": \"open\", \"errno\": %d}\n", -err);
		if (shared_fd >= 0)
			close(shared_fd);
		return 1;
	}
	for (unsigned i = 0; i < nalloc; i++)
		if (port_set(x, alloc[i], 1) < 0)
			log_error("alloc %u: %s", alloc[i], strerror(errno));
	if ((ndeny || nallow) && (err = push_lists(x)) < 0)
		log_error("set_lists: %s", strerror(-err));
	struct bpf_prog_info info;
	__u32 infolen = sizeof(info);

	memset(&info, 0, sizeof(info));
	bpf_obj_get_info_by_fd(xdp_fw_prog_fd(x), &info, &infolen);
	printf("{\"mode\": \"%s\", \"ifname\": \"%s\", \"verified_insns\": %u}\n", xdp_fw_mode(x),
	       xdp_fw_ifname(x), info.verified_insns);
	fflush(stdout);

	while (run) {
		struct pollfd p[2] = {{.fd = 0, .events = POLLIN},
				      {.fd = xdp_fw_watch_fd(x), .events = POLLIN}};
		char *nl;
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			xdp_fw_watch(x);
		if (!p[0].revents)
			continue;
		n = read(0, in + inlen, sizeof(in) - 1 - inlen);
		if (n <= 0)
			break;
		inlen += (size_t)n;
		in[inlen] = '\0';
		while (run && (nl = strchr(in, '\n'))) {
			*nl = '\0';
			run = command(x, in);
			inlen -= (size_t)(nl + 1 - in);
			memmove(in, nl + 1, inlen + 1);
		}
		if (inlen == sizeof(in) - 1)
			inlen = 0; /* a line too long: dropped */
	}
	xdp_fw_free(x);
	if (shared_fd >= 0)
		close(shared_fd);
	return 0;
}

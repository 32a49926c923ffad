// SPDX-License-Identifier: Apache-2.0
/*
 * The XDP filter's loader (xdp.h) over the bpftool skeleton of xdp.bpf.c.
 *
 * Attaching is a BPF link (bpf_link_create with BPF_XDP and the mode's flag):
 * an fd that detaches when it is closed or the process ends, and that the
 * kernel never lets replace a program someone else attached (EBUSY/EEXIST).
 * The interface is resolved and watched with libnl (route/link): a removed or
 * renamed interface leaves the filter detached; an interface of the name
 * appearing again gets it attached again. Both are logged once.
 */
#include "xdp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/route/link.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "maps.h"
#include "util.h"
#include "xdp.skel.h"

_Static_assert(sizeof(((struct xdp_fw_stats *)0)->ctr) / sizeof(uint64_t) == NAVE_XDP_NCTR,
	       "struct xdp_fw_stats holds every counter of enum nave_xdp_ctr");

struct xdp_fw {
	struct nave_xdp *skel;
	char ifname[IFNAMSIZ];
	int ifindex; /* of the interface attached to; 0 while detached */
	enum xdp_fw_mode want;
	int link_fd; /* the BPF link; -1 while detached */
	bool generic;
	struct nl_sock *watch;
	uint16_t port_min, port_max; /* the range at load: what port_counts covers */
	unsigned nports;	     /* entries of port_counts */
	unsigned ncpu;
	unsigned held[4]; /* entries in deny_v4, deny_v6, allow_v4, allow_v6 */
	void *pcpu;	  /* one per-CPU value (ncpu * struct nave_count) */
};

/* ---------------------------------------------------------------- libbpf's messages */

/*
 * The cause of a failed load, for the one-line why: the first warning that
 * names a failure (a program the verifier refused, a map not created), else
 * the first warning. Reset before each load.
 */
static char libbpf_first_warn[256], libbpf_cause[256];

static void note_warning(const char *line, size_t len)
{
	static const char *const causes[] = {"load failed", "failed to create", "Couldn't load"};
	char l[256];

	if (!strncmp(line, "libbpf: ", 8)) {
		line += 8;
		len -= 8;
	}
	snprintf(l, sizeof(l), "%.*s", (int)len, line);
	if (!libbpf_first_warn[0])
		memcpy(libbpf_first_warn, l, sizeof(l));
	for (size_t i = 0; i < ARRAY_SIZE(causes) && !libbpf_cause[0]; i++)
		if (strstr(l, causes[i]))
			memcpy(libbpf_cause, l, sizeof(l));
}

/*
 * libbpf's warnings into the log, one log line per line (a failed program
 * load prints the verifier's log: only its head and tail are kept); its info
 * and debug messages only at debug level. A successful load prints nothing.
 */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	enum { HEAD = 4, TAIL = 24 };
	char stackbuf[1024], *buf = stackbuf;
	int lvl = level == LIBBPF_WARN ? NLOG_WARN : NLOG_DEBUG;
	unsigned nlines = 0, i = 0;
	va_list aq;
	int n;

	if (!log_enabled(lvl))
		return 0;
	va_copy(aq, ap);
	n = vsnprintf(stackbuf, sizeof(stackbuf), fmt, aq);
	va_end(aq);
	if (n < 0)
		return 0;
	if ((size_t)n >= sizeof(stackbuf)) {
		buf = malloc((size_t)n + 1);
		if (!buf)
			return 0;
		vsnprintf(buf, (size_t)n + 1, fmt, ap);
	}
	for (char *p = buf; *p; p++)
		nlines += *p == '\n' || !p[1];
	for (char *line = buf, *nl; *line; line = nl, i++) {
		size_t len;

		nl = strchr(line, '\n');
		len = nl ? (size_t)(nl - line) : strlen(line);
		nl = nl ? nl + 1 : line + len;
		if (nlines > HEAD + TAIL + 1 && i >= HEAD && i < nlines - TAIL) {
			if (i == HEAD)
				log_msg(lvl, "libbpf: ... (%u lines) ...", nlines - HEAD - TAIL);
			continue;
		}
		while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
			len--;
		if (!len)
			continue;
		if (lvl == NLOG_WARN)
			note_warning(line, len);
		/* libbpf's own lines carry the prefix, the verifier's do not */
		log_msg(lvl, "%s%.*s", strncmp(line, "libbpf: ", 8) ? "libbpf: " : "", (int)len,
			line);
	}
	if (buf != stackbuf)
		free(buf);
	return 0;
}

/* ---------------------------------------------------------------- the interface */

/* the ifindex of name, 0 when there is none, or -errno with why */
static int resolve(const char *name, char *why, size_t whylen)
{
	struct rtnl_link *link = NULL;
	struct nl_sock *sk;
	int err, idx;

	sk = nl_socket_alloc();
	if (!sk) {
		snprintf(why, whylen, "xdp: netlink socket: out of memory");
		return -ENOMEM;
	}
	err = nl_connect(sk, NETLINK_ROUTE);
	if (err < 0) {
		snprintf(why, whylen, "xdp: netlink (route): %s", nl_geterror(err));
		nl_socket_free(sk);
		return -EIO;
	}
	err = rtnl_link_get_kernel(sk, 0, name, &link);
	nl_socket_free(sk);
	if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV)
		return 0;
	if (err < 0) {
		snprintf(why, whylen, "xdp: looking up interface %s: %s", name, nl_geterror(err));
		return -EIO;
	}
	idx = rtnl_link_get_ifindex(link);
	rtnl_link_put(link);
	return idx > 0 ? idx : 0;
}

static const char *busy_hint(int err)
{
	return err == -EBUSY || err == -EEXIST ? " (another XDP program is attached)" : "";
}

/* attaches to x->ifindex in the wanted mode (auto: native, else generic); 0 or -errno */
static int attach(struct xdp_fw *x, char *why, size_t whylen)
{
	int prog = bpf_program__fd(x->skel->progs.xdp_fw);
	int fd, native_err = 0;

	if (x->want != XDP_FW_GENERIC) {
		LIBBPF_OPTS(bpf_link_create_opts, o, .flags = XDP_FLAGS_DRV_MODE);

		fd = bpf_link_create(prog, x->ifindex, BPF_XDP, &o);
		if (fd >= 0) {
			x->link_fd = fd;
			x->generic = false;
			return 0;
		}
		native_err = fd;
		if (x->want == XDP_FW_NATIVE) {
			snprintf(why, whylen, "xdp: attaching to %s (native) failed: %s%s",
				 x->ifname, strerror(-fd), busy_hint(fd));
			return fd;
		}
	}
	LIBBPF_OPTS(bpf_link_create_opts, o, .flags = XDP_FLAGS_SKB_MODE);

	fd = bpf_link_create(prog, x->ifindex, BPF_XDP, &o);
	if (fd < 0) {
		if (native_err)
			snprintf(why, whylen,
				 "xdp: attaching to %s failed: native: %s%s; generic: %s%s",
				 x->ifname, strerror(-native_err), busy_hint(native_err),
				 strerror(-fd), busy_hint(fd));
		else
			snprintf(why, whylen, "xdp: attaching to %s (generic) failed: %s%s",
				 x->ifname, strerror(-fd), busy_hint(fd));
		return fd;
	}
	if (native_err)
		log_info("xdp: %s: native mode refused (%s); generic (skb) mode", x->ifname,
			 strerror(-native_err));
	x->link_fd = fd;
	x->generic = true;
	return 0;
}

static void detach(struct xdp_fw *x)
{
	if (x->link_fd >= 0)
		close(x->link_fd);
	x->link_fd = -1;
	x->ifindex = 0;
}

static void gone(struct xdp_fw *x, const char *what)
{
	if (x->link_fd < 0)
		return;
	detach(x);
	log_warn("xdp: interface %s %s: the filter is detached until it returns", x->ifname, what);
}

static void appeared(struct xdp_fw *x, int ifindex)
{
	char why[256];

	if (x->link_fd >= 0 && x->ifindex == ifindex)
		return;
	if (x->link_fd >= 0)
		gone(x, "was replaced");
	x->ifindex = ifindex;
	if (attach(x, why, sizeof(why)) < 0) {
		x->ifindex = 0;
		log_every(NLOG_WARN, "%s", why); /* tried again on the interface's next event */
		return;
	}
	log_info("xdp: interface %s is back (ifindex %d): attached, %s mode", x->ifname, ifindex,
		 xdp_fw_mode(x));
}

/* after lost events: the interface as it is now */
static void resync(struct xdp_fw *x)
{
	char why[256];
	int idx = resolve(x->ifname, why, sizeof(why));

	if (idx < 0) {
		log_warn("%s", why);
		return;
	}
	if (x->link_fd >= 0) {
		struct bpf_link_info info;
		__u32 len = sizeof(info);

		memset(&info, 0, sizeof(info));
		/* a link whose device went away has ifindex 0 */
		if (idx != x->ifindex ||
		    (!bpf_obj_get_info_by_fd(x->link_fd, &info, &len) && !info.xdp.ifindex))
			gone(x, idx ? "was replaced" : "is gone");
	}
	if (idx > 0)
		appeared(x, idx);
}

static int on_link_event(struct nl_msg *msg, void *arg)
{
	struct nlmsghdr *h = nlmsg_hdr(msg);
	struct xdp_fw *x = arg;
	struct nlattr *tb[IFLA_MAX + 1];
	char name[IFNAMSIZ] = "";
	struct ifinfomsg *ifi;

	if (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK)
		return NL_OK;
	if (!nlmsg_valid_hdr(h, sizeof(*ifi)) ||
	    nlmsg_parse(h, sizeof(*ifi), tb, IFLA_MAX, NULL) < 0)
		return NL_OK;
	ifi = nlmsg_data(h);
	if (tb[IFLA_IFNAME])
		nla_strlcpy(name, tb[IFLA_IFNAME], sizeof(name));

	if (h->nlmsg_type == RTM_DELLINK) {
		if (x->link_fd >= 0 && ifi->ifi_index == x->ifindex)
			gone(x, "was removed");
		return NL_OK;
	}
	if (x->link_fd >= 0 && ifi->ifi_index == x->ifindex) {
		if (name[0] && strcmp(name, x->ifname)) {
			char what[64];

			snprintf(what, sizeof(what), "was renamed to %s", name);
			gone(x, what);
		}
		return NL_OK;
	}
	if (!strcmp(name, x->ifname))
		appeared(x, ifi->ifi_index);
	return NL_OK;
}

static int watch_open(struct xdp_fw *x, char *why, size_t whylen)
{
	int err;

	x->watch = nl_socket_alloc();
	if (!x->watch) {
		snprintf(why, whylen, "xdp: netlink socket: out of memory");
		return -ENOMEM;
	}
	nl_socket_disable_seq_check(x->watch);
	nl_socket_modify_cb(x->watch, NL_CB_VALID, NL_CB_CUSTOM, on_link_event, x);
	err = nl_connect(x->watch, NETLINK_ROUTE);
	if (!err)
		err = nl_socket_add_membership(x->watch, RTNLGRP_LINK);
	if (!err)
		err = nl_socket_set_nonblocking(x->watch);
	if (err < 0) {
		snprintf(why, whylen, "xdp: watching interfaces (netlink): %s", nl_geterror(err));
		return -EIO;
	}
	return 0;
}

int xdp_fw_watch_fd(const struct xdp_fw *x)
{
	return nl_socket_get_fd(x->watch);
}

void xdp_fw_watch(struct xdp_fw *x)
{
	for (int i = 0; i < 64; i++) {
		int err = nl_recvmsgs_default(x->watch);

		if (err == -NLE_AGAIN)
			return;
		if (err == -NLE_NOMEM) { /* ENOBUFS: events were lost */
			resync(x);
			continue;
		}
		if (err < 0) {
			log_every(NLOG_WARN, "xdp: reading interface events: %s", nl_geterror(err));
			return;
		}
	}
}

/* ---------------------------------------------------------------- load and attach */

static int check_ports_map(int fd, char *why, size_t whylen)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0) {
		snprintf(why, whylen, "xdp: the shared ports map (fd %d): %s", fd, strerror(errno));
		return -errno;
	}
	if (info.type != BPF_MAP_TYPE_HASH || info.key_size != sizeof(__u16) ||
	    info.value_size != sizeof(struct nave_port)) {
		snprintf(why, whylen,
			 "xdp: the shared ports map is not a HASH of __u16 to struct "
			 "nave_port");
		return -EINVAL;
	}
	return 0;
}

/*
 * Which destinations the filter judges, from relayd's address: per family
 * NAVE_DST_NONE, NAVE_DST_ANY or NAVE_DST_ADDR (into dst4, dst6). 0 or -EINVAL.
 */
static int set_dst(struct nave_xdp *skel, const struct sockaddr *sa, socklen_t len, char *why,
		   size_t whylen)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	__u8 *m4 = &skel->rodata->dst4_mode, *m6 = &skel->rodata->dst6_mode;

	*m4 = *m6 = NAVE_DST_ANY;
	if (!sa)
		return 0;
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;

		*m6 = NAVE_DST_NONE;
		if (a->sin_addr.s_addr != htonl(INADDR_ANY)) {
			*m4 = NAVE_DST_ADDR;
			skel->rodata->dst4 = a->sin_addr.s_addr;
		}
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		const uint8_t *b = a->sin6_addr.s6_addr;

		/* ::: both families; ::ffff:a.b.c.d: IPv4, through an IPv6 socket */
		if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
			return 0;
		if (!memcmp(b, mapped, sizeof(mapped))) {
			*m6 = NAVE_DST_NONE;
			memcpy(&skel->rodata->dst4, b + 12, 4);
			if (skel->rodata->dst4 != htonl(INADDR_ANY))
				*m4 = NAVE_DST_ADDR;
			return 0;
		}
		*m4 = NAVE_DST_NONE;
		*m6 = NAVE_DST_ADDR;
		memcpy(skel->rodata->dst6, b, 16);
		return 0;
	}
	snprintf(why, whylen, "xdp: the address is neither IPv4 nor IPv6 (family %u, %u bytes)",
		 (unsigned)sa->sa_family, (unsigned)len);
	return -EINVAL;
}

int xdp_fw_open(struct xdp_fw **out, const struct xdp_fw_cfg *c, char *why, size_t whylen)
{
	libbpf_print_fn_t prev = NULL;
	bool printing = false;
	struct xdp_fw *x;
	int err, ncpu;

	*out = NULL;
	if (!c->ifname || !c->ifname[0] || strlen(c->ifname) >= IFNAMSIZ) {
		snprintf(why, whylen, "xdp: an interface name is 1 to %d characters", IFNAMSIZ - 1);
		return -EINVAL;
	}
	if (c->port_min > c->port_max) {
		snprintf(why, whylen, "xdp: the port range %u-%u is empty", c->port_min,
			 c->port_max);
		return -EINVAL;
	}
	ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0) {
		snprintf(why, whylen, "xdp: the number of CPUs: %s", strerror(-ncpu));
		return ncpu < 0 ? ncpu : -EINVAL;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		snprintf(why, whylen, "xdp: out of memory");
		return -ENOMEM;
	}
	x->link_fd = -1;
	x->want = c->mode;
	x->ncpu = (unsigned)ncpu;
	x->port_min = c->port_min;
	x->port_max = c->port_max;
	x->nports = c->port_min ? (unsigned)c->port_max - c->port_min + 1 : 0;
	str_copy(x->ifname, sizeof(x->ifname), c->ifname);
	x->pcpu = calloc(x->ncpu, sizeof(struct nave_count));
	if (!x->pcpu) {
		snprintf(why, whylen, "xdp: out of memory");
		err = -ENOMEM;
		goto fail;
	}

	err = resolve(x->ifname, why, whylen);
	if (err <= 0) {
		if (!err) {
			char esc[64];

			snprintf(why, whylen, "xdp: no interface %s",
				 log_esc_str(x->ifname, esc, sizeof(esc)));
			err = -ENODEV;
		}
		goto fail;
	}
	x->ifindex = err;

	libbpf_first_warn[0] = libbpf_cause[0] = '\0';
	prev = libbpf_set_print(libbpf_print); /* for this load only */
	printing = true;
	x->skel = nave_xdp__open();
	if (!x->skel) {
		err = -errno;
		snprintf(why, whylen, "xdp: opening the program: %s", strerror(errno));
		goto fail;
	}
	x->skel->bss->port_min = c->port_min;
	x->skel->bss->port_max = c->port_min ? c->port_max : 0;
	x->skel->rodata->count_base = c->port_min;
	for (unsigned i = 0; i < NAVE_SVC_MAX && i < ARRAY_SIZE(c->svc_ports); i++)
		x->skel->rodata->svc_ports[i] = c->svc_ports[i];
	x->skel->bss->syn_rate = c->syn_rate;
	err = set_dst(x->skel, c->addr, c->addrlen, why, whylen);
	if (err < 0)
		goto fail;
	err = bpf_map__set_max_entries(x->skel->maps.port_counts, x->nports ? x->nports : 1);
	if (!err && c->ports_fd >= 0) {
		err = check_ports_map(c->ports_fd, why, whylen);
		if (err < 0)
			goto fail;
		err = bpf_map__reuse_fd(x->skel->maps.ports, c->ports_fd);
	}
	if (err) {
		snprintf(why, whylen, "xdp: setting up the maps: %s", strerror(-err));
		goto fail;
	}
	err = nave_xdp__load(x->skel);
	libbpf_set_print(prev);
	printing = false;
	if (err) {
		const char *cause = libbpf_cause[0] ? libbpf_cause : libbpf_first_warn;

		snprintf(why, whylen, "xdp: loading the program xdp_fw failed: %s (errno %d)%s%s%s",
			 strerror(-err), -err,
			 err == -EPERM ? " (BPF needs root, or CAP_BPF with CAP_NET_ADMIN)" : "",
			 cause[0] ? ": " : "", cause);
		goto fail;
	}

	err = watch_open(x, why, whylen);
	if (err < 0)
		goto fail;
	err = attach(x, why, whylen);
	if (err < 0)
		goto fail;
	*out = x;
	return 0;
fail:
	if (printing)
		libbpf_set_print(prev);
	xdp_fw_free(x);
	return err;
}

void xdp_fw_free(struct xdp_fw *x)
{
	if (!x)
		return;
	detach(x);
	if (x->watch)
		nl_socket_free(x->watch);
	nave_xdp__destroy(x->skel);
	free(x->pcpu);
	free(x);
}

const char *xdp_fw_mode(const struct xdp_fw *x)
{
	if (x->link_fd < 0)
		return "detached";
	return x->generic ? "generic" : "native";
}

const char *xdp_fw_ifname(const struct xdp_fw *x)
{
	return x->ifname;
}

void xdp_fw_set_range(struct xdp_fw *x, uint16_t port_min, uint16_t port_max)
{
	volatile __u16 *lo = &x->skel->bss->port_min, *hi = &x->skel->bss->port_max;

	if (!*lo || !port_min)
		return; /* loaded without a range (a probe's): it stays so */
	/* the end that widens first: a port of both ranges is guarded throughout */
	if (port_min < *lo) {
		*lo = port_min;
		*hi = port_max;
	} else {
		*hi = port_max;
		*lo = port_min;
	}
}

void xdp_fw_set_syn_rate(struct xdp_fw *x, uint32_t syn_rate)
{
	x->skel->bss->syn_rate = syn_rate;
}

int xdp_fw_ports_fd(const struct xdp_fw *x)
{
	return bpf_map__fd(x->skel->maps.ports);
}

int xdp_fw_prog_fd(const struct xdp_fw *x)
{
	return bpf_program__fd(x->skel->progs.xdp_fw);
}

/* ---------------------------------------------------------------- the lists */

struct keys {
	uint8_t *k; /* n sorted, unique keys of size */
	unsigned n;
	size_t size;
};

static int key_cmp4(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct nave_lpm4));
}

static int key_cmp6(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct nave_lpm6));
}

static void mask(uint8_t *a, unsigned len, unsigned prefix)
{
	for (unsigned bit = prefix; bit < len * 8; bit++)
		a[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
}

/* the family's blocks of list as trie keys */
static int keys_of(struct keys *ks, const struct cidr *list, unsigned n, bool v6)
{
	int (*cmp)(const void *, const void *) = v6 ? key_cmp6 : key_cmp4;
	unsigned j = 0;

	ks->size = v6 ? sizeof(struct nave_lpm6) : sizeof(struct nave_lpm4);
	ks->n = 0;
	ks->k = calloc(n ? n : 1, ks->size);
	if (!ks->k)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		if (list[i].family != (v6 ? AF_INET6 : AF_INET))
			continue;
		if (v6) {
			struct nave_lpm6 k = {.prefixlen =
						  list[i].prefix > 128 ? 128 : list[i].prefix};

			memcpy(k.addr, list[i].addr, 16);
			mask(k.addr, 16, k.prefixlen);
			memcpy(ks->k + (size_t)ks->n++ * ks->size, &k, sizeof(k));
		} else {
			struct nave_lpm4 k = {.prefixlen =
						  list[i].prefix > 32 ? 32 : list[i].prefix};

			memcpy(k.addr, list[i].addr, 4);
			mask(k.addr, 4, k.prefixlen);
			memcpy(ks->k + (size_t)ks->n++ * ks->size, &k, sizeof(k));
		}
	}
	if (!ks->n)
		return 0;
	qsort(ks->k, ks->n, ks->size, cmp);
	for (unsigned i = 1; i < ks->n; i++)
		if (cmp(ks->k + (size_t)i * ks->size, ks->k + (size_t)j * ks->size))
			memmove(ks->k + (size_t)++j * ks->size, ks->k + (size_t)i * ks->size,
				ks->size);
	ks->n = j + 1;
	return 0;
}

/* the entries the trie holds, walked (at most NAVE_LPM_MAX + 1 are looked at) */
static unsigned trie_count(int fd)
{
	uint8_t k[2][sizeof(struct nave_lpm6)];
	unsigned n = 0;

	while (n <= NAVE_LPM_MAX && !bpf_map_get_next_key(fd, n ? k[(n - 1) % 2] : NULL, k[n % 2]))
		n++;
	return n;
}

/*
 * The trie holds exactly ks afterwards: stale keys are deleted first (so the
 * trie never holds more than the larger of the two), then the new ones added.
 * *held: the entries it holds afterwards, counted in the trie itself (left as
 * it is when nothing could be done). 0 or -errno.
 */
static int trie_sync(struct bpf_map *m, const struct keys *ks, unsigned *held)
{
	int (*cmp)(const void *, const void *) =
	    ks->size == sizeof(struct nave_lpm6) ? key_cmp6 : key_cmp4;
	int fd = bpf_map__fd(m), err = 0;
	unsigned cap = NAVE_LPM_MAX + 1, n = 0;
	uint8_t *old, key[sizeof(struct nave_lpm6)];
	const void *prev = NULL;
	uint8_t one = 1;

	old = calloc(cap, ks->size);
	if (!old)
		return -ENOMEM;
	while (n < cap && !bpf_map_get_next_key(fd, prev, key)) {
		memcpy(old + (size_t)n * ks->size, key, ks->size);
		prev = old + (size_t)n++ * ks->size;
	}
	for (unsigned i = 0; i < n; i++) {
		void *k = old + (size_t)i * ks->size;

		if (ks->n && bsearch(k, ks->k, ks->n, ks->size, cmp))
			continue;
		if (bpf_map_delete_elem(fd, k) < 0 && errno != ENOENT && !err)
			err = -errno;
	}
	free(old);
	for (unsigned i = 0; i < ks->n; i++) {
		void *k = ks->k + (size_t)i * ks->size;

		if (bpf_map_update_elem(fd, k, &one, BPF_NOEXIST) < 0 && errno != EEXIST && !err)
			err = -errno;
	}
	*held = trie_count(fd);
	return err;
}

int xdp_fw_set_lists(struct xdp_fw *x, const struct cidr_table *t)
{
	static const struct cidr none[1];
	struct bpf_map *maps[4] = {x->skel->maps.deny_v4, x->skel->maps.deny_v6,
				   x->skel->maps.allow_v4, x->skel->maps.allow_v6};
	volatile __u32 *cnt[4] = {&x->skel->bss->deny4, &x->skel->bss->deny6, &x->skel->bss->allow4,
				  &x->skel->bss->allow6};
	struct keys ks[4] = {{0}};
	unsigned *held = x->held;
	int err = 0;

	for (int i = 0; i < 4 && !err; i++) {
		const struct cidr *list = t ? (i < 2 ? t->deny : t->allow) : none;
		unsigned n = t ? (i < 2 ? t->ndeny : t->nallow) : 0;

		err = keys_of(&ks[i], list, n, i & 1);
	}
	if (err)
		goto out;
	/*
	 * While the tries change, each is looked up when it held or will hold
	 * something; an allow list about to be empty is off from the start, one
	 * about to be non-empty comes on when its entries are in.
	 */
	for (int i = 0; i < 2; i++)
		if (ks[i].n > *cnt[i])
			*cnt[i] = ks[i].n;
	if (!ks[2].n && !ks[3].n)
		*cnt[2] = *cnt[3] = 0;
	for (int i = 0; i < 4; i++) {
		int e = trie_sync(maps[i], &ks[i], &held[i]);

		if (e && !err)
			err = e;
	}
	for (int i = 0; i < 4; i++)
		*cnt[i] = held[i];
out:
	for (int i = 0; i < 4; i++)
		free(ks[i].k);
	return err;
}

/* ---------------------------------------------------------------- counters */

void xdp_fw_stats(struct xdp_fw *x, struct xdp_fw_stats *s)
{
	int fd = bpf_map__fd(x->skel->maps.counters);
	__u64 *v = x->pcpu;

	memset(s, 0, sizeof(*s));
	for (__u32 k = 0; k < NAVE_XDP_NCTR && k < ARRAY_SIZE(s->ctr); k++) {
		if (bpf_map_lookup_elem(fd, &k, v) < 0)
			continue;
		for (unsigned c = 0; c < x->ncpu; c++)
			s->ctr[k] += v[c];
	}
	s->ndeny = x->held[0] + x->held[1];
	s->nallow = x->held[2] + x->held[3];
}

bool xdp_fw_port_count(struct xdp_fw *x, uint16_t port, uint64_t *packets, uint64_t *bytes)
{
	int fd = bpf_map__fd(x->skel->maps.port_counts);
	struct nave_count *v = x->pcpu;
	__u32 idx;

	*packets = *bytes = 0;
	if (!x->nports || port < x->port_min || port > x->port_max)
		return false;
	idx = (__u32)port - x->port_min;
	if (bpf_map_lookup_elem(fd, &idx, v) < 0)
		return false;
	for (unsigned c = 0; c < x->ncpu; c++) {
		*packets += v[c].packets;
		*bytes += v[c].bytes;
	}
	return *packets || *bytes;
}

void xdp_fw_port_reset(struct xdp_fw *x, uint16_t port)
{
	int fd = bpf_map__fd(x->skel->maps.port_counts);
	__u32 idx;

	if (!x->nports || port < x->port_min || port > x->port_max)
		return;
	idx = (__u32)port - x->port_min;
	memset(x->pcpu, 0, x->ncpu * sizeof(struct nave_count));
	bpf_map_update_elem(fd, &idx, x->pcpu, BPF_ANY);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * Socket helpers (sock.h). Exclusive listener groups: SO_REUSEPORT lets any
 * socket of the same user join a group, so a second instance would silently
 * share our listeners; a probe bound without SO_REUSEPORT keeps it out, a
 * classic BPF program keeps traffic inside our own sockets, and a sock_diag
 * dump afterwards catches one that raced us. Holders are named by matching
 * the socket inode from sock_diag against /proc/PID/fd.
 */
#include "sock.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif
#define TCP_LISTEN_STATE 10

uint16_t sock_addr16(const struct sockaddr_storage *ss, uint8_t addr[16])
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		memset(addr, 0, 10);
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &s4->sin_addr, 4);
		return s4->sin_port;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		memcpy(addr, &s6->sin6_addr, 16);
		return s6->sin6_port;
	}
	memset(addr, 0, 16);
	return 0;
}

bool sock_addr16_is_v4(const uint8_t addr[16])
{
	static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	return !memcmp(addr, pre, sizeof(pre));
}

void sock_addr16_ntop(const uint8_t addr[16], char *out, size_t len)
{
	const char *r = sock_addr16_is_v4(addr) ? inet_ntop(AF_INET, addr + 12, out, (socklen_t)len)
						: inet_ntop(AF_INET6, addr, out, (socklen_t)len);

	if (!r && len)
		snprintf(out, len, "?");
}

void sock_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void sock_rst_on_close(int fd)
{
	struct linger lg = {1, 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

void sock_addr_str(const struct sockaddr *sa, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(out, len, "%s:%u", a, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(out, len, "[%s]:%u", a, ntohs(s6->sin6_port));
	} else if (sa->sa_family == AF_UNIX) {
		const struct sockaddr_un *su = (const struct sockaddr_un *)sa;

		snprintf(out, len, "unix:%.*s", (int)sizeof(su->sun_path), su->sun_path);
	} else {
		snprintf(out, len, "(family %d)", sa->sa_family);
	}
}

/* ---- who holds a port ---- */

/* An address as the kernel's bind conflicts see it. */
struct bound {
	int family;
	uint8_t addr[16]; /* 4 bytes for AF_INET */
	bool any;	  /* 0.0.0.0 or :: */
	bool v6only;	  /* AF_INET6: does not take IPv4 too */
};

struct want {
	struct bound b;
	uint16_t port; /* host order */
};

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void bound_set(struct bound *b, int family, const void *addr, bool v6only)
{
	static const uint8_t zero[16];

	memset(b, 0, sizeof(*b));
	b->family = family;
	memcpy(b->addr, addr, family == AF_INET ? 4 : 16);
	b->any = !memcmp(b->addr, zero, family == AF_INET ? 4 : 16);
	b->v6only = v6only;
}

static void want_from(const struct sockaddr *sa, int fd, struct want *w)
{
	int v6only = 0;
	socklen_t len = sizeof(v6only);

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		w->port = ntohs(s4->sin_port);
		bound_set(&w->b, AF_INET, &s4->sin_addr, false);
	} else {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		/* our own socket says whether :: takes IPv4 too (net.ipv6.bindv6only) */
		if (fd >= 0)
			getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len);
		w->port = ntohs(s6->sin6_port);
		bound_set(&w->b, AF_INET6, &s6->sin6_addr, v6only);
	}
}

/* The IPv4 address an IPv6 socket takes too: true with *v4 (NULL: any). */
static bool v4_side(const struct bound *b, const uint8_t **v4)
{
	if (b->family == AF_INET) {
		*v4 = b->any ? NULL : b->addr;
		return true;
	}
	if (b->any && !b->v6only) {
		*v4 = NULL; /* dual-stack :: */
		return true;
	}
	if (!memcmp(b->addr, v4mapped_prefix, 12)) {
		*v4 = b->addr + 12;
		return true;
	}
	return false;
}

/* Would the kernel see these two bound addresses (on one port) conflict? */
static bool overlaps(const struct bound *a, const struct bound *b)
{
	const uint8_t *x, *y;

	if (a->family == b->family && a->family == AF_INET6 &&
	    (a->any || b->any || !memcmp(a->addr, b->addr, 16)))
		return true;
	/* the IPv4 sides: AF_INET itself, dual-stack ::, a v4-mapped address */
	if (!v4_side(a, &x) || !v4_side(b, &y))
		return false;
	return !x || !y || !memcmp(x, y, 4);
}

/* The INET_DIAG_SKV6ONLY attribute after an AF_INET6 inet_diag_msg. */
static bool diag_v6only(const struct nlmsghdr *h, const struct inet_diag_msg *m)
{
	const struct rtattr *a = (const struct rtattr *)(m + 1);
	int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*m));

	for (; RTA_OK(a, len); a = RTA_NEXT(a, len))
		if (a->rta_type == INET_DIAG_SKV6ONLY && RTA_PAYLOAD(a) >= 1)
			return *(const uint8_t *)RTA_DATA(a) != 0;
	return false;
}

static bool is_ours(unsigned long ino, const unsigned long *ours, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (ours[i] == ino)
			return true;
	return false;
}

/*
 * Dumps the listening TCP sockets of one family; the first overlapping one
 * not in ours sets *ino and *uid and returns 1; 0 none; -errno.
 */
static int diag_find(int family, const struct want *w, const unsigned long *ours, unsigned nours,
		     unsigned long *ino, unsigned *uid)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req;
	struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
	uint32_t buf[8192];
	struct bound theirs;
	int fd, ret = 0;
	bool done = false;

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -errno;
	memset(&req, 0, sizeof(req));
	req.nlh.nlmsg_len = sizeof(req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.r.sdiag_family = (uint8_t)family;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = 1u << TCP_LISTEN_STATE;
	if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&nl, sizeof(nl)) < 0) {
		ret = -errno;
		goto out;
	}
	while (!done) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		for (; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			const struct inet_diag_msg *m = NLMSG_DATA(h);

			if (h->nlmsg_type == NLMSG_DONE) {
				done = true;
				break;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				ret = -EPROTO;
				goto out;
			}
			if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
			    h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
				continue;
			if (ret || ntohs(m->id.idiag_sport) != w->port ||
			    is_ours(m->idiag_inode, ours, nours))
				continue;
			bound_set(&theirs, m->idiag_family, m->id.idiag_src,
				  m->idiag_family == AF_INET6 && diag_v6only(h, m));
			if (!overlaps(&w->b, &theirs))
				continue;
			*ino = m->idiag_inode;
			*uid = m->idiag_uid;
			ret = 1; /* keep reading to the end of the dump */
		}
		if (n == 0)
			break;
	}
out:
	close(fd);
	return ret;
}

/* The pid whose fd table holds socket inode ino, or -1. */
static pid_t pid_of_inode(unsigned long ino)
{
	char want[48], path[560], link[64];
	DIR *proc = opendir("/proc");
	struct dirent *p;
	pid_t found = -1;

	if (!proc)
		return -1;
	snprintf(want, sizeof(want), "socket:[%lu]", ino);
	while (found < 0 && (p = readdir(proc))) {
		DIR *fds;
		struct dirent *f;

		if (!isdigit((unsigned char)p->d_name[0]))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd", p->d_name);
		fds = opendir(path);
		if (!fds)
			continue;
		while ((f = readdir(fds))) {
			ssize_t n;

			if (f->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/proc/%s/fd/%s", p->d_name, f->d_name);
			n = readlink(path, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = 0;
			if (!strcmp(link, want)) {
				found = (pid_t)atoi(p->d_name);
				break;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	return found;
}

int sock_listen_holder(const struct sockaddr *sa, const int *ours, unsigned nours, char *out,
		       size_t len)
{
	unsigned long inodes[256], ino = 0;
	unsigned uid = 0, n = 0;
	struct want w;
	pid_t pid;
	int r = 0;

	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	for (unsigned i = 0; i < nours && n < ARRAY_SIZE(inodes); i++) {
		struct stat st;

		if (fstat(ours[i], &st) == 0)
			inodes[n++] = (unsigned long)st.st_ino;
	}
	want_from(sa, nours ? ours[0] : -1, &w);
	r = diag_find(AF_INET, &w, inodes, n, &ino, &uid);
	if (r == 0)
		r = diag_find(AF_INET6, &w, inodes, n, &ino, &uid);
	if (r <= 0)
		return r < 0 ? r : -ENOENT;
	if (!out || !len)
		return 0; /* only whether there is one: no /proc scan */
	pid = pid_of_inode(ino);
	if (pid > 0) {
		char path[64], comm[64] = "";
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
		f = fopen(path, "r");
		if (f) {
			if (fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n")] = 0;
			fclose(f);
		}
		for (char *c = comm; *c; c++)
			if (!isprint((unsigned char)*c))
				*c = '?';
		snprintf(out, len, "%s (pid %d)", *comm ? comm : "a process", (int)pid);
	} else {
		snprintf(out, len, "a process of uid %u", uid);
	}
	return 0;
}

/* ---- exclusive listener groups ---- */

static void in_use(const struct sockaddr *sa, const int *ours, unsigned nours, bool name, char *err,
		   size_t errlen)
{
	char a[SOCK_ADDR_STRLEN], who[128];

	sock_addr_str(sa, a, sizeof(a));
	if (name && sock_listen_holder(sa, ours, nours, who, sizeof(who)) == 0)
		snprintf(err, errlen, "%s is in use by %s", a, who);
	else
		snprintf(err, errlen, "%s is in use", a);
}

/*
 * The group's picker: socket (hash of the client's address and TCP source
 * port) mod n, read from the SYN's IPv4 or IPv6 header. It spreads
 * connections like the kernel's own hash even when one CPU takes every SYN
 * (a NIC with one queue), and never returns a socket beyond our n, so a
 * socket another process adds to the group gets nothing. (Linux picks even
 * source ports for connect(): the port alone would not spread.)
 */
static int attach_picker(int fd, unsigned n)
{
	const uint32_t net = (uint32_t)SKF_NET_OFF;
	struct sock_filter code[] = {
	    /* 0 */ {BPF_LD | BPF_B | BPF_ABS, 0, 0, net}, /* A = version, IHL */
	    /* 1 */ {BPF_ALU | BPF_RSH | BPF_K, 0, 0, 4},
	    /* 2 */ {BPF_JMP | BPF_JEQ | BPF_K, 6, 0, 6},	/* IPv6: to 9 */
	    /* 3 */ {BPF_LDX | BPF_B | BPF_MSH, 0, 0, net},	/* X = 4 * IHL */
	    /* 4 */ {BPF_LD | BPF_H | BPF_IND, 0, 0, net},	/* A = source port */
	    /* 5 */ {BPF_ST, 0, 0, 0},				/* M[0] = A */
	    /* 6 */ {BPF_LD | BPF_W | BPF_ABS, 0, 0, net + 12}, /* A = source address */
	    /* 7 */ {BPF_LDX | BPF_MEM, 0, 0, 0},		/* X = M[0] */
	    /* 8 */ {BPF_JMP | BPF_JA, 0, 0, 4},		/* to 13 */
	    /* 9 */ {BPF_LD | BPF_H | BPF_ABS, 0, 0, net + 40}, /* A = source port */
	    /* 10 */ {BPF_ST, 0, 0, 0},
	    /* 11 */ {BPF_LD | BPF_W | BPF_ABS, 0, 0, net + 20}, /* A = address, last word */
	    /* 12 */ {BPF_LDX | BPF_MEM, 0, 0, 0},
	    /* 13 */ {BPF_ALU | BPF_XOR | BPF_X, 0, 0, 0},
	    /* 14 */ {BPF_ALU | BPF_MUL | BPF_K, 0, 0, 0x9e3779b1u},
	    /* 15 */ {BPF_ALU | BPF_RSH | BPF_K, 0, 0, 16},
	    /* 16 */ {BPF_ALU | BPF_MOD | BPF_K, 0, 0, n},
	    /* 17 */ {BPF_RET | BPF_A, 0, 0, 0},
	};
	struct sock_fprog prog = {.len = ARRAY_SIZE(code), .filter = code};

	return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) < 0
		   ? -errno
		   : 0;
}

int sock_hold_port(const struct sockaddr *sa, socklen_t len, char *err, size_t errlen)
{
	char a[SOCK_ADDR_STRLEN];
	int one = 1, fd, ret;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return ret;
	}
	if (bind(fd, sa, len) == 0)
		return fd;
	if (errno == EADDRINUSE && sock_listen_holder(sa, NULL, 0, NULL, 0) != 0) {
		/* no listener: what is there is TIME_WAIT, or bound and not listening */
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, sa, len) == 0)
			return fd;
	}
	ret = -errno;
	if (errno == EADDRINUSE) {
		in_use(sa, NULL, 0, false, err, errlen);
	} else {
		sock_addr_str(sa, a, sizeof(a));
		snprintf(err, errlen, "%s: %s", a, strerror(errno));
	}
	close(fd);
	return ret;
}

static uint16_t sock_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

int sock_listen_group(const struct sockaddr *sa, socklen_t len, unsigned n, int backlog,
		      bool name_holder, int *fds, char *err, size_t errlen)
{
	char a[SOCK_ADDR_STRLEN];
	struct sockaddr_storage bound;
	int one = 1, probe, ret = 0;
	unsigned i;

	sock_addr_str(sa, a, sizeof(a));
	if (n == 0) {
		snprintf(err, errlen, "%s: no sockets asked for", a);
		return -EINVAL;
	}
	probe = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: socket: %s", a, strerror(errno));
		return ret;
	}
	setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(probe, sa, len) < 0) {
		ret = -errno;
		if (errno == EADDRINUSE)
			in_use(sa, NULL, 0, name_holder, err, errlen);
		else
			snprintf(err, errlen, "%s: %s", a, strerror(errno));
		close(probe);
		return ret;
	}
	/* port 0: the whole group takes the port the kernel gave the probe */
	if (sock_port(sa) == 0) {
		socklen_t bl = sizeof(bound);

		if (getsockname(probe, (struct sockaddr *)&bound, &bl) < 0) {
			ret = -errno;
			snprintf(err, errlen, "%s: getsockname: %s", a, strerror(errno));
			close(probe);
			return ret;
		}
		sa = (const struct sockaddr *)&bound;
		sock_addr_str(sa, a, sizeof(a));
	}
	for (i = 0; i < n; i++) {
		fds[i] = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0) {
			ret = -errno;
			snprintf(err, errlen, "%s: socket: %s", a, strerror(errno));
			break;
		}
		setsockopt(fds[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(fds[i], SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
		if (bind(fds[i], sa, len) < 0) {
			ret = -errno;
			if (errno == EADDRINUSE)
				in_use(sa, fds, i, name_holder, err, errlen);
			else
				snprintf(err, errlen, "%s: bind: %s", a, strerror(errno));
			close(fds[i]);
			break;
		}
		if (i == 0 && (ret = attach_picker(fds[0], n)) < 0) {
			snprintf(err, errlen, "%s: SO_ATTACH_REUSEPORT_CBPF: %s", a,
				 strerror(-ret));
			close(fds[i]);
			break;
		}
		if (listen(fds[i], backlog) < 0) {
			ret = -errno;
			snprintf(err, errlen, "%s: listen: %s", a, strerror(errno));
			close(fds[i]);
			break;
		}
	}
	close(probe);
	if (!ret) {
		char who[128];

		/* a starter that probed at the same moment as we did joined us: both leave */
		if (sock_listen_holder(sa, fds, n, name_holder ? who : NULL, sizeof(who)) == 0) {
			if (name_holder)
				snprintf(err, errlen, "%s is also being opened by %s", a, who);
			else
				snprintf(err, errlen, "%s is also being opened by another process",
					 a);
			ret = -EADDRINUSE;
		}
	}
	if (ret) {
		while (i--)
			close(fds[i]);
		return ret;
	}
	return 0;
}

// SPDX-License-Identifier: Apache-2.0
/* Privilege separation without a service manager (sandbox.h). */
#include "sandbox.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s: %s", what, strerror(errno));
	return -1;
}

int sandbox_user(const char *name, uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
	struct passwd pw, *r = NULL;
	char buf[4096];
	int e = getpwnam_r(name, &pw, buf, sizeof(buf), &r);

	if (!r) {
		snprintf(err, errlen, "[server] user: %s: %s", name,
			 e ? strerror(e) : "no such user");
		return -1;
	}
	if (pw.pw_uid == 0) {
		snprintf(err, errlen, "[server] user: %s is root", name);
		return -1;
	}
	*uid = pw.pw_uid;
	*gid = pw.pw_gid;
	return 0;
}

int sandbox_mkdir_for(const char *path, unsigned mode, uid_t uid, gid_t gid, char *err,
		      size_t errlen)
{
	char parent[PATH_MAX], what[PATH_MAX + 32];
	char *slash;
	int fd, r;

	if (strlen(path) >= sizeof(parent)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	/* the parents as root, traversable (0755); only the leaf is the user's */
	memcpy(parent, path, strlen(path) + 1);
	slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = '\0';
		r = mkdir_p(parent, 0755);
		if (r < 0) {
			errno = -r;
			snprintf(what, sizeof(what), "cannot create %s", parent);
			return fail(err, errlen, what);
		}
	}
	snprintf(what, sizeof(what), "cannot create %s", path);
	if (mkdir(path, mode) < 0) {
		/* there already: the operator's, left as it is (a symlink is followed) */
		if (errno == EEXIST)
			return 0;
		return fail(err, errlen, what);
	}
	/* made now: handed over through a descriptor, never through a name */
	snprintf(what, sizeof(what), "cannot give %s to its user", path);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, what);
	r = fchown(fd, uid, gid);
	close(fd);
	if (r < 0)
		return fail(err, errlen, what);
	return 0;
}

static int capset_mask(uint64_t keep)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2];

	memset(d, 0, sizeof(d));
	d[0].permitted = d[0].effective = (uint32_t)keep;
	d[1].permitted = d[1].effective = (uint32_t)(keep >> 32);
	return (int)syscall(SYS_capset, &h, d);
}

uint64_t sandbox_caps_effective(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2];

	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) < 0)
		return 0;
	return (uint64_t)d[1].effective << 32 | d[0].effective;
}

int sandbox_drop(uid_t uid, gid_t gid, uint64_t keep, char *err, size_t errlen)
{
	/* the bounding set first (that needs CAP_SETPCAP, which goes with root) */
	for (int c = 0; c <= 63; c++) {
		if (keep & SBX_CAP(c))
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			return fail(err, errlen, "cannot drop from the capability bounding set");
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return fail(err, errlen, "cannot clear the ambient capabilities");
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return fail(err, errlen, "prctl(PR_SET_KEEPCAPS)");
	if (setgroups(1, &gid) < 0)
		return fail(err, errlen, "setgroups");
	if (setresgid(gid, gid, gid) < 0)
		return fail(err, errlen, "setresgid");
	if (setresuid(uid, uid, uid) < 0)
		return fail(err, errlen, "setresuid");
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return fail(err, errlen, "prctl(PR_SET_KEEPCAPS)");
	/* after setuid the effective set is empty and the permitted set root's: narrow both */
	if (capset_mask(keep) < 0)
		return fail(err, errlen, "capset");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fail(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS)");
#if defined(__SANITIZE_ADDRESS__)
	/*
	 * The sanitizer build only: setuid made the process undumpable, and then
	 * LeakSanitizer cannot read /proc/self/task nor stop the threads at exit.
	 * A release build stays undumpable (no other process of the user may
	 * ptrace it or read its memory).
	 */
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
	/* and nothing can take root back */
	if (setresuid(0, 0, 0) == 0) {
		errno = EPERM;
		return fail(err, errlen, "root could be regained after the drop");
	}
	return 0;
}

int sandbox_caps_limit(uint64_t keep, char *err, size_t errlen)
{
	bool setpcap = sandbox_caps_effective() & SBX_CAP(CAP_SETPCAP);

	/* inherited ambient capabilities (a systemd unit's) go whatever else happens */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return fail(err, errlen, "cannot clear the ambient capabilities");
	/* CAP_SETPCAP (kept by the drop for this) goes from the bounding set last */
	for (int c = 63; setpcap && c >= 0; c--) {
		if (c == CAP_SETPCAP || keep & SBX_CAP(c) ||
		    prctl(PR_CAPBSET_READ, c, 0, 0, 0) != 1)
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0)
			return fail(err, errlen, "cannot drop from the capability bounding set");
	}
	if (setpcap && !(keep & SBX_CAP(CAP_SETPCAP)) &&
	    prctl(PR_CAPBSET_READ, CAP_SETPCAP, 0, 0, 0) == 1 &&
	    prctl(PR_CAPBSET_DROP, CAP_SETPCAP, 0, 0, 0) < 0)
		return fail(err, errlen, "cannot drop CAP_SETPCAP from the bounding set");
	if (capset_mask(keep & sandbox_caps_effective()) < 0)
		return fail(err, errlen, "capset");
	return 0;
}

const char *sandbox_caps_name(uint64_t caps, char *buf, size_t len)
{
	static const struct {
		int cap;
		const char *name;
	} names[] = {{CAP_NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE"},
		     {CAP_NET_ADMIN, "CAP_NET_ADMIN"},
		     {CAP_BPF, "CAP_BPF"}};
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (caps & SBX_CAP(names[i].cap) && n < len)
			n +=
			    (size_t)snprintf(buf + n, len - n, "%s%s", n ? " " : "", names[i].name);
	if (!buf[0])
		snprintf(buf, len, "none");
	return buf;
}

/* ---------- seccomp ---------- */

/* What relayd's threads call once it runs (strace of the integration suite). */
static const char *const allowed[] = {
    /* files and descriptors */
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "close",
    "close_range",
    "openat",
    "open",
    "newfstatat",
    "fstat",
    "stat",
    "lstat",
    "statx",
    "lseek",
    "getdents",
    "getdents64",
    "readlink",
    "readlinkat",
    "access",
    "faccessat",
    "faccessat2",
    "mkdir",
    "mkdirat",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "fchmod",
    "ftruncate",
    "fsync",
    "fdatasync",
    "flock",
    "fcntl",
    "dup",
    "dup2",
    "dup3",
    "pipe2",
    "umask",
    "getcwd",
    /* memory */
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "brk",
    "membarrier",
    "mincore",
    "memfd_create",
    /* threads, time, signals */
    "futex",
    "futex_waitv",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "set_tid_address",
    "sched_yield",
    "sched_getaffinity",
    "sched_setaffinity",
    "getcpu",
    "exit",
    "exit_group",
    "gettid",
    "getpid",
    "getppid",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigtimedwait",
    "rt_sigpending",
    "sigaltstack",
    "restart_syscall",
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "getrandom",
    "uname",
    "sysinfo",
    "getrlimit",
    "setrlimit",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "capget",
    /* sockets and polling */
    "connect",
    "accept",
    "accept4",
    "bind",
    "listen",
    "getsockname",
    "getpeername",
    "setsockopt",
    "getsockopt",
    "shutdown",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    "socketpair",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "eventfd2",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "splice",
    /* the datapath's kernel interfaces */
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "bpf",
};

/*
 * Allowed with conditions (in sandbox_seccomp_relayd): clone for threads only
 * (clone3, whose flags sit in memory, fails with ENOSYS and glibc falls back to
 * clone), socket for INET, INET6, UNIX and NETLINK, tgkill and prlimit64 on this
 * process, prctl for a few read-only options and thread names, ioctl but not
 * TIOCSTI (a terminal's input injection), which kills.
 */

/* What would undo the drop or reach outside the process: the process dies. */
static const char *const killed[] = {
    "execve",
    "execveat",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "setns",
    "unshare",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setgroups",
    "setfsuid",
    "setfsgid",
    "capset",
    "personality",
    "userfaultfd",
    "perf_event_open",
    "open_by_handle_at",
    "name_to_handle_at",
    "iopl",
    "ioperm",
    "quotactl",
    "acct",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "sethostname",
    "setdomainname",
    "mknod",
    "mknodat",
    "keyctl",
    "add_key",
    "request_key",
    "fork",
    "vfork",
    "fanotify_init",
};

#if defined(__SANITIZE_ADDRESS__)
/*
 * The sanitizer build: LeakSanitizer stops the world with a ptrace-ing
 * thread at exit and the symbolizer is a program run on a report. Those are
 * allowed there, and only there.
 */
static const char *const sanitizer_allowed[] = {
    "ptrace", "process_vm_readv", "execve", "wait4", "waitid", "fork", "vfork", "kill",
};
#endif

static bool in(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(name, list[i]))
			return true;
	return false;
}

static int rule(scmp_filter_ctx ctx, uint32_t action, const char *name)
{
	int nr = seccomp_syscall_resolve_name(name);

	if (nr == __NR_SCMP_ERROR)
		return 0; /* not a system call on this architecture */
	return seccomp_rule_add(ctx, action, nr, 0);
}

#define NS_FLAGS                                                                                   \
	(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | \
	 CLONE_NEWCGROUP)

static int conditional_rules(scmp_filter_ctx ctx)
{
	static const int families[] = {AF_INET, AF_INET6, AF_UNIX, AF_NETLINK};
	static const long prctl_ok[] = {PR_SET_NAME,	 PR_GET_NAME,	      PR_GET_DUMPABLE,
					PR_CAPBSET_READ, PR_GET_NO_NEW_PRIVS, PR_GET_SECCOMP,
					0x53564d41 /* PR_SET_VMA */};
	scmp_datum_t pid = (scmp_datum_t)getpid();
	int r = 0;

#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer's tracer is a clone without CLONE_THREAD; it uses prctl too */
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 0);
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 0);
	(void)prctl_ok;
#else
	/* threads: CLONE_THREAD and no new namespace; a fork or an unshare fails */
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
			     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD | NS_FLAGS, CLONE_THREAD));
	for (size_t i = 0; r == 0 && i < sizeof(prctl_ok) / sizeof(prctl_ok[0]); i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
				     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)prctl_ok[i]));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(prctl), 1,
				     SCMP_A0(SCMP_CMP_EQ, PR_SET_DUMPABLE));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(prctl), 1,
				     SCMP_A0(SCMP_CMP_EQ, 0x59616d61 /* PR_SET_PTRACER */));
#endif
	for (size_t i = 0; r == 0 && i < sizeof(families) / sizeof(families[0]); i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i]));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
				     SCMP_A0(SCMP_CMP_EQ, pid));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1,
				     SCMP_A0(SCMP_CMP_EQ, 0));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1,
				     SCMP_A0(SCMP_CMP_EQ, pid));
	/* a terminal relayd was started from must not get keystrokes pushed into it */
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_NE, TIOCSTI));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_EQ, TIOCSTI));
	return r;
}

int sandbox_seccomp_relayd(char *err, size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(ENOSYS));
	size_t na = sizeof(allowed) / sizeof(allowed[0]), nk = sizeof(killed) / sizeof(killed[0]);
	int r = 0;

	if (!ctx) {
		snprintf(err, errlen, "seccomp: cannot make a filter");
		return -1;
	}
	for (size_t i = 0; r == 0 && i < na; i++)
		r = rule(ctx, SCMP_ACT_ALLOW, allowed[i]);
#if defined(__SANITIZE_ADDRESS__)
	for (size_t i = 0; r == 0 && i < sizeof(sanitizer_allowed) / sizeof(sanitizer_allowed[0]);
	     i++)
		if (!in(sanitizer_allowed[i], allowed, na))
			r = rule(ctx, SCMP_ACT_ALLOW, sanitizer_allowed[i]);
#endif
	for (size_t i = 0; r == 0 && i < nk; i++) {
#if defined(__SANITIZE_ADDRESS__)
		if (in(killed[i], sanitizer_allowed,
		       sizeof(sanitizer_allowed) / sizeof(sanitizer_allowed[0])))
			continue;
#endif
		if (!in(killed[i], allowed, na))
			r = rule(ctx, SCMP_ACT_KILL_PROCESS, killed[i]);
	}
	if (r == 0)
		r = conditional_rules(ctx);
	if (r == 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	if (r < 0) {
		snprintf(err, errlen, "seccomp: %s", strerror(-r));
		return -1;
	}
	return 0;
}

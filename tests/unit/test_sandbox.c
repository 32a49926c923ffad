// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/sandbox.c, each in a child process of its own (the
 * filter and the drop cannot be undone): relayd's seccomp filter lets what a
 * worker calls through, fails a system call it does not list with ENOSYS, and
 * kills the process on one that would undo the drop (SIGSYS); threads but not
 * forks or namespaces, four socket families, signals and limits of its own
 * pid only, no TIOCSTI; the drop from
 * root leaves exactly the capabilities asked for, in every set, and root
 * cannot come back. The drop tests need root and skip without it.
 */
#include <errno.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox.h"

/* Runs fn in a child; returns its wait status. */
static int in_child(int (*fn)(void))
{
	int st = 0;
	pid_t pid = fork();

	if (pid == 0)
		_exit(fn());
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return st;
}

static int filtered(void)
{
	char err[256];

	return sandbox_seccomp_relayd(err, sizeof(err)) == 0 ? 0 : 90;
}

static int allowed_calls(void)
{
	int fds[2];
	struct stat st;

	if (filtered())
		return 90;
	if (getpid() <= 0 || pipe(fds) < 0 || write(fds[1], "x", 1) != 1 || close(fds[0]) < 0)
		return 1;
	if (socket(AF_INET, SOCK_STREAM, 0) < 0 || stat("/", &st) < 0)
		return 2;
	return 0;
}

static void test_filter_allows_what_workers_call(void **state)
{
	int st = in_child(allowed_calls);

	(void)state;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void *thread_fn(void *arg)
{
	return arg;
}

/* threads yes; fork, new namespaces, other socket families, others' pids no */
static int conditional_calls(void)
{
	pthread_t t;
	void *ret = NULL;

	if (filtered())
		return 90;
	if (pthread_create(&t, NULL, thread_fn, (void *)1) != 0 || pthread_join(t, &ret) != 0 ||
	    ret != (void *)1)
		return 1;
#if !defined(__SANITIZE_ADDRESS__)
	errno = 0;
	if (fork() != -1 || errno != ENOSYS)
		return 2;
	errno = 0;
	if (syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNET | SIGCHLD, NULL, NULL, NULL, 0) != -1)
		return 3;
#endif
	errno = 0;
	if (socket(AF_PACKET, SOCK_RAW, 0) != -1 || errno != ENOSYS)
		return 4;
	if (socket(AF_UNIX, SOCK_DGRAM, 0) < 0 || socket(AF_INET6, SOCK_STREAM, 0) < 0)
		return 5;
	errno = 0;
	if (syscall(SYS_tgkill, 1, 1, 0) != -1 || errno != ENOSYS)
		return 6;
	if (syscall(SYS_tgkill, getpid(), getpid(), 0) != 0)
		return 7;
	errno = 0;
	if (syscall(SYS_prlimit64, 1, RLIMIT_NOFILE, NULL, NULL) != -1 || errno != ENOSYS)
		return 8;
	return 0;
}

static void test_filter_conditions(void **state)
{
	int st = in_child(conditional_calls);

	(void)state;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static int call_tiocsti(void)
{
	char c = 'x';

	if (filtered())
		return 90;
	syscall(SYS_ioctl, 0, TIOCSTI, &c);
	return 0;
}

#if !defined(__SANITIZE_ADDRESS__)
static int call_set_dumpable(void)
{
	if (filtered())
		return 90;
	syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
	return 0;
}
#endif

static int unlisted_call(void)
{
	if (filtered())
		return 90;
	/* getpriority is not something relayd calls: ENOSYS, and the process lives */
	errno = 0;
	if (syscall(SYS_getpriority, PRIO_PROCESS, 0) != -1 || errno != ENOSYS)
		return 1;
	return 0;
}

static void test_filter_fails_an_unlisted_call(void **state)
{
	int st = in_child(unlisted_call);

	(void)state;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static int call_unshare(void)
{
	if (filtered())
		return 90;
	syscall(SYS_unshare, CLONE_NEWNS);
	return 0; /* reached only when the filter let it through */
}

static int call_setuid(void)
{
	if (filtered())
		return 90;
	syscall(SYS_setuid, 0);
	return 0;
}

static int call_mount(void)
{
	if (filtered())
		return 90;
	syscall(SYS_mount, "none", "/", "tmpfs", 0, NULL);
	return 0;
}

static void test_filter_kills_what_would_undo_the_drop(void **state)
{
	int (*calls[])(void) = {
		call_unshare,
		call_setuid,
		call_mount,
		call_tiocsti,
#if !defined(__SANITIZE_ADDRESS__)
		call_set_dumpable,
#endif
	};

	(void)state;
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		int st = in_child(calls[i]);

		assert_true(WIFSIGNALED(st));
		assert_int_equal(WTERMSIG(st), SIGSYS);
	}
}

static uint64_t caps_of(const char *key)
{
	char line[256];
	uint64_t v = 0;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)))
			v = strtoull(line + strlen(key), NULL, 16);
	if (f)
		fclose(f);
	return v;
}

static int drop_keep_bind(void)
{
	struct passwd *pw = getpwnam("nobody");
	uint64_t want = SBX_CAP(CAP_NET_BIND_SERVICE);
	char err[256];

	if (!pw)
		return 90;
	if (sandbox_drop(pw->pw_uid, pw->pw_gid, want | SBX_CAP(CAP_SETPCAP), err, sizeof(err)) <
		0 ||
	    sandbox_caps_limit(want, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (getuid() != pw->pw_uid || geteuid() != pw->pw_uid || getgid() != pw->pw_gid)
		return 2;
	if (caps_of("CapEff:") != want || caps_of("CapPrm:") != want ||
	    caps_of("CapBnd:") != want || caps_of("CapAmb:") != 0)
		return 3;
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		return 4;
	if (setuid(0) == 0 || seteuid(0) == 0)
		return 5;
	return 0;
}

static void test_drop_keeps_exactly_what_is_asked(void **state)
{
	int st;

	(void)state;
	if (geteuid() != 0)
		skip();
	st = in_child(drop_keep_bind);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static int drop_all(void)
{
	struct passwd *pw = getpwnam("nobody");
	char err[256];

	if (!pw)
		return 90;
	if (sandbox_drop(pw->pw_uid, pw->pw_gid, 0, err, sizeof(err)) < 0)
		return 1;
	if (caps_of("CapEff:") || caps_of("CapPrm:") || caps_of("CapBnd:"))
		return 2;
	return sandbox_caps_effective() == 0 ? 0 : 3;
}

static void test_drop_all(void **state)
{
	int st;

	(void)state;
	if (geteuid() != 0)
		skip();
	st = in_child(drop_all);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_user_lookup(void **state)
{
	char err[256];
	uid_t uid;
	gid_t gid;

	(void)state;
	assert_int_equal(sandbox_user("nobody", &uid, &gid, err, sizeof(err)), 0);
	assert_true(uid > 0);
	assert_int_equal(sandbox_user("no-such-user-xyz", &uid, &gid, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no-such-user-xyz"));
	assert_int_equal(sandbox_user("root", &uid, &gid, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is root"));
}

static void test_caps_name(void **state)
{
	char b[96];

	(void)state;
	assert_string_equal(sandbox_caps_name(0, b, sizeof(b)), "none");
	assert_string_equal(
	    sandbox_caps_name(SBX_CAP(CAP_BPF) | SBX_CAP(CAP_NET_BIND_SERVICE), b, sizeof(b)),
	    "CAP_NET_BIND_SERVICE CAP_BPF");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_filter_allows_what_workers_call),
	    cmocka_unit_test(test_filter_fails_an_unlisted_call),
	    cmocka_unit_test(test_filter_conditions),
	    cmocka_unit_test(test_filter_kills_what_would_undo_the_drop),
	    cmocka_unit_test(test_drop_keeps_exactly_what_is_asked),
	    cmocka_unit_test(test_drop_all),
	    cmocka_unit_test(test_user_lookup),
	    cmocka_unit_test(test_caps_name),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

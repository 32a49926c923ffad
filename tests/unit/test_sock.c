// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/sock.c and lock_dirs (common/util.c): a listener
 * group holds its address alone (a second group on the same or an
 * overlapping address is refused with the holder's name and pid), a foreign
 * SO_REUSEPORT socket that joins the group anyway gets no connection, and a
 * state directory can be locked by one holder only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "sock.h"
#include "util.h"

static uint16_t free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static struct sockaddr_in addr(uint32_t host, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};

	sa.sin_addr.s_addr = htonl(host);
	return sa;
}

static void test_addr_str(void **state)
{
	struct sockaddr_in sa = addr(INADDR_LOOPBACK, 8443);
	struct sockaddr_in6 s6 = {
	    .sin6_family = AF_INET6, .sin6_port = htons(22), .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	char out[SOCK_ADDR_STRLEN];

	sock_addr_str((struct sockaddr *)&sa, out, sizeof(out));
	assert_string_equal(out, "127.0.0.1:8443");
	sock_addr_str((struct sockaddr *)&s6, out, sizeof(out));
	assert_string_equal(out, "[::1]:22");
}

static void test_group_is_exclusive(void **state)
{
	uint16_t port = free_port();
	struct sockaddr_in sa = addr(INADDR_LOOPBACK, port), any = addr(INADDR_ANY, port);
	int fds[2], fds2[2], one = 1, foreign;
	char err[256], want[128];
	int ours = 0, per[2] = {0, 0};

	assert_int_equal(sock_listen_group((struct sockaddr *)&sa, sizeof(sa), 2, 64, true, fds,
					   err, sizeof(err)),
			 0);
	/* without naming the holder (no /proc scan) */
	assert_int_equal(sock_listen_group((struct sockaddr *)&sa, sizeof(sa), 1, 64, false, fds2,
					   err, sizeof(err)),
			 -EADDRINUSE);
	snprintf(want, sizeof(want), "127.0.0.1:%u is in use", port);
	assert_string_equal(err, want);
	/* a second instance on the same address, or a wildcard over it, is refused */
	snprintf(want, sizeof(want), "127.0.0.1:%u is in use by test_sock (pid %d)", port,
		 (int)getpid());
	assert_int_equal(sock_listen_group((struct sockaddr *)&sa, sizeof(sa), 2, 64, true, fds2,
					   err, sizeof(err)),
			 -EADDRINUSE);
	assert_string_equal(err, want);
	assert_int_equal(sock_listen_group((struct sockaddr *)&any, sizeof(any), 1, 64, true, fds2,
					   err, sizeof(err)),
			 -EADDRINUSE);
	assert_non_null(strstr(err, "is in use by test_sock"));

	/* a foreign SO_REUSEPORT socket may join the group but is never picked */
	foreign = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(foreign, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	assert_int_equal(bind(foreign, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(foreign, 64), 0);
	assert_int_equal(sock_listen_holder((struct sockaddr *)&sa, fds, 2, want, sizeof(want)), 0);
	assert_non_null(strstr(want, "test_sock (pid "));
	for (int i = 0; i < 2; i++)
		fd_set_nonblock(fds[i], true);
	for (int i = 0; i < 40; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0), a;

		assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(accept(foreign, NULL, NULL), -1);
		for (int k = 0; k < 2; k++) {
			a = accept(fds[k], NULL, NULL);
			if (a >= 0) {
				ours++;
				per[k]++;
				close(a);
			}
		}
		close(c);
	}
	assert_int_equal(ours, 40);
	/* spread by source port, not by the one CPU this test runs on */
	assert_true(per[0] > 0 && per[1] > 0);
	close(foreign);
	for (int i = 0; i < 2; i++)
		close(fds[i]);
	/* released: it can be opened again */
	assert_int_equal(sock_listen_group((struct sockaddr *)&sa, sizeof(sa), 1, 64, true, fds,
					   err, sizeof(err)),
			 0);
	close(fds[0]);
}

static int listen6(uint16_t port, const struct in6_addr *a, int v6only)
{
	struct sockaddr_in6 s6 = {
	    .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = *a};
	int fd = socket(AF_INET6, SOCK_STREAM, 0), one = 1;

	/* (TIME_WAIT of earlier connections to the port may not block the bind) */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	assert_int_equal(bind(fd, (struct sockaddr *)&s6, sizeof(s6)), 0);
	assert_int_equal(listen(fd, 8), 0);
	return fd;
}

/* Only what the kernel itself sees as a conflict is refused. */
static void test_families(void **state)
{
	uint16_t port = free_port();
	struct sockaddr_in lo = addr(INADDR_LOOPBACK, port), any = addr(INADDR_ANY, port);
	int v6 = listen6(port, &in6addr_any, 1), fds[1];
	char err[256];

	/* [::] IPv6-only does not take IPv4: 127.0.0.1 and 0.0.0.0 are free */
	assert_int_equal(sock_listen_group((struct sockaddr *)&lo, sizeof(lo), 1, 8, true, fds, err,
					   sizeof(err)),
			 0);
	close(fds[0]);
	assert_int_equal(sock_listen_group((struct sockaddr *)&any, sizeof(any), 1, 8, true, fds,
					   err, sizeof(err)),
			 0);
	close(fds[0]);
	close(v6);
	/* [::1] does not take IPv4 either */
	v6 = listen6(port, &in6addr_loopback, 0);
	assert_int_equal(sock_listen_group((struct sockaddr *)&any, sizeof(any), 1, 8, true, fds,
					   err, sizeof(err)),
			 0);
	close(fds[0]);
	close(v6);
	/* an IPv6 group spreads its connections too */
	{
		struct sockaddr_in6 s6 = {.sin6_family = AF_INET6,
					  .sin6_port = htons(port),
					  .sin6_addr = IN6ADDR_LOOPBACK_INIT};
		int g[2], per[2] = {0, 0};

		assert_int_equal(sock_listen_group((struct sockaddr *)&s6, sizeof(s6), 2, 64, true,
						   g, err, sizeof(err)),
				 0);
		for (int k = 0; k < 2; k++)
			fd_set_nonblock(g[k], true);
		for (int i = 0; i < 40; i++) {
			int c = socket(AF_INET6, SOCK_STREAM, 0), a;

			assert_int_equal(connect(c, (struct sockaddr *)&s6, sizeof(s6)), 0);
			for (int k = 0; k < 2; k++) {
				a = accept(g[k], NULL, NULL);
				if (a >= 0) {
					per[k]++;
					close(a);
				}
			}
			close(c);
		}
		assert_int_equal(per[0] + per[1], 40);
		assert_true(per[0] > 0 && per[1] > 0);
		close(g[0]);
		close(g[1]);
	}
	/* a dual-stack [::] takes 127.0.0.1 too */
	v6 = listen6(port, &in6addr_any, 0);
	assert_int_equal(sock_listen_group((struct sockaddr *)&lo, sizeof(lo), 1, 8, true, fds, err,
					   sizeof(err)),
			 -EADDRINUSE);
	assert_non_null(strstr(err, "is in use by test_sock"));
	close(v6);
}

static void test_holder_none(void **state)
{
	struct sockaddr_in sa = addr(INADDR_LOOPBACK, free_port());
	char who[64];

	assert_int_equal(sock_listen_holder((struct sockaddr *)&sa, NULL, 0, who, sizeof(who)),
			 -ENOENT);
}

static void test_lock_dirs(void **state)
{
	char dir[] = "/tmp/nave-test-lock-XXXXXX", err[512], want[64];
	const char *dirs[3];

	assert_non_null(mkdtemp(dir));
	dirs[0] = dirs[1] = dir; /* the same directory twice is locked once */
	assert_int_equal(lock_dirs("navetest", dirs, 2, err, sizeof(err)), 0);
	/* a second holder (a new open file description) is refused, naming the first */
	assert_int_equal(lock_dirs("navetest", dirs, 1, err, sizeof(err)), -EWOULDBLOCK);
	snprintf(want, sizeof(want), "another navetest (pid %d)", (int)getpid());
	assert_non_null(strstr(err, want));
	assert_non_null(strstr(err, "navetest.lock"));
	dirs[2] = "/nonexistent/nave";
	assert_true(lock_dirs("other", dirs + 2, 1, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "/nonexistent/nave"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addr_str),  cmocka_unit_test(test_group_is_exclusive),
	    cmocka_unit_test(test_families),  cmocka_unit_test(test_holder_none),
	    cmocka_unit_test(test_lock_dirs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * libmicrohttpd on a poll() loop (mhdpoll.h): MHD's fd_sets turned into
 * pollfds and back.
 */
#include "mhdpoll.h"

#include <sys/select.h>

#include "log.h"

int mhd_pollfds(struct MHD_Daemon *mhd, const char *what, struct pollfd *pfd, int max,
		int *timeout_ms)
{
	fd_set rs, ws, es;
	MHD_socket maxfd = -1;
	MHD_UNSIGNED_LONG_LONG to;
	int n = 0;

	if (!mhd)
		return 0;
	FD_ZERO(&rs);
	FD_ZERO(&ws);
	FD_ZERO(&es);
	if (MHD_get_fdset2(mhd, &rs, &ws, &es, &maxfd, FD_SETSIZE) != MHD_YES)
		log_every(NLOG_WARN, "%s: could not get the HTTP server's fds", what);
	for (int fd = 0; fd <= maxfd && n < max; fd++) {
		short ev = (FD_ISSET(fd, &rs) ? POLLIN : 0) | (FD_ISSET(fd, &ws) ? POLLOUT : 0);

		if (!ev)
			continue;
		pfd[n].fd = fd;
		pfd[n].events = ev;
		pfd[n++].revents = 0;
	}
	if (MHD_get_timeout(mhd, &to) == MHD_YES &&
	    (*timeout_ms < 0 || to < (MHD_UNSIGNED_LONG_LONG)*timeout_ms))
		*timeout_ms = (int)to;
	return n;
}

void mhd_process(struct MHD_Daemon *mhd, const struct pollfd *pfd, int n)
{
	fd_set rs, ws, es;

	if (!mhd)
		return;
	FD_ZERO(&rs);
	FD_ZERO(&ws);
	FD_ZERO(&es);
	for (int i = 0; i < n; i++) {
		if (pfd[i].fd < 0 || pfd[i].fd >= FD_SETSIZE)
			continue;
		if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
			FD_SET(pfd[i].fd, &rs);
		if (pfd[i].revents & (POLLOUT | POLLERR))
			FD_SET(pfd[i].fd, &ws);
	}
	MHD_run_from_select(mhd, &rs, &ws, &es);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A libmicrohttpd daemon in external-select mode on controld's one poll()
 * loop: the admin API's two (api.c) and the metrics endpoint's (metrics.c).
 */
#ifndef NAVE_CTL_MHDPOLL_H
#define NAVE_CTL_MHDPOLL_H

#include <microhttpd.h>
#include <poll.h>

/*
 * Fills at most max pollfds with what mhd waits for and lowers *timeout_ms
 * (-1: none yet) to its timeout; returns how many. what names the server in
 * the (rate-limited) log line when MHD cannot say. NULL mhd: 0.
 */
int mhd_pollfds(struct MHD_Daemon *mhd, const char *what, struct pollfd *pfd, int max,
		int *timeout_ms);
/* Runs mhd on the n pollfds mhd_pollfds filled, after poll() returned. */
void mhd_process(struct MHD_Daemon *mhd, const struct pollfd *pfd, int n);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Socket helpers: printing addresses, listeners that only this process
 * holds, and naming the process that holds an address.
 */
#ifndef NAVE_SOCK_H
#define NAVE_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define SOCK_ADDR_STRLEN 64 /* "[v6]:port" */

/* "127.0.0.1:8443" or "[::1]:8443" into out. */
void sock_addr_str(const struct sockaddr *sa, char *out, size_t len);

/*
 * Opens n listening TCP sockets on sa that this process alone holds.
 *   - A probe without SO_REUSEPORT is bound first and kept until the group
 *     listens: an address someone else listens on (or is binding) makes it
 *     fail, so a second instance is refused instead of joining.
 *   - The n sockets form a SO_REUSEPORT group (one per worker) with a
 *     classic BPF program that only ever picks among them (by a hash of the
 *     client's address and TCP source port).
 *   - Afterwards no other listener may overlap the address (a racing
 *     starter is found with sock_diag): then everything is closed again.
 * 0 with fds[0..n) filled, or -errno with a one-line reason in err:
 * "127.0.0.1:8443 is in use", with name_holder "... by nave-relayd (pid
 * 1234)" (a scan of /proc: not for what a peer can ask for over and over).
 */
int sock_listen_group(const struct sockaddr *sa, socklen_t len, unsigned n, int backlog,
		      bool name_holder, int *fds, char *err, size_t errlen);

/*
 * Names the holder of a listening TCP socket whose address overlaps sa's
 * (same port; same address or either one a wildcard), skipping the sockets
 * ours[0..nours): "nave-relayd (pid 1234)", or "a process of uid 1000" when
 * its pid cannot be seen. 0, or -ENOENT when there is none. out NULL: only
 * whether there is one (no /proc scan).
 */
int sock_listen_holder(const struct sockaddr *sa, const int *ours, unsigned nours, char *out,
		       size_t len);

#endif

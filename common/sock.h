/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Socket helpers: printing addresses, listeners that only this process
 * holds, and naming the process that holds an address.
 */
#ifndef NAVE_SOCK_H
#define NAVE_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SOCK_ADDR_STRLEN 64 /* "[v6]:port" */

/*
 * 16-byte addresses (IPv4 as v4-mapped IPv6), the form the link protocol
 * carries. sock_addr16 fills addr from a socket address and returns its port
 * (big-endian), 0 for a family that is neither.
 */
uint16_t sock_addr16(const struct sockaddr_storage *ss, uint8_t addr[16]);
bool sock_addr16_is_v4(const uint8_t addr[16]);
/* "192.0.2.1" or "2001:db8::1" into out (INET6_ADDRSTRLEN bytes are enough). */
void sock_addr16_ntop(const uint8_t addr[16], char *out, size_t len);
/* TCP_NODELAY on; and an RST instead of a FIN when fd is closed (SO_LINGER 0). */
void sock_nodelay(int fd);
void sock_rst_on_close(int fd);

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
/*
 * 0 when nothing else holds sa (a bind probe, closed at once), or -errno with
 * the same reason sock_listen_group gives ("127.0.0.1:22001 is in use").
 */
int sock_probe_bind(const struct sockaddr *sa, socklen_t len, char *err, size_t errlen);
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

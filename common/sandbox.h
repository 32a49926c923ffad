/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Privilege separation without a service manager: a daemon started as root
 * runs as [server] user with only the capabilities it names, and relayd's
 * workers under a seccomp filter (libseccomp). Under the systemd units the
 * daemons start as that user already and none of this applies.
 */
#ifndef NAVE_SANDBOX_H
#define NAVE_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* capability numbers (linux/capability.h), as a mask: SBX_CAP(CAP_BPF) */
#define SBX_CAP(n) (1ull << (n))

/* The user's uid and primary gid; -1 with err when there is no such user. */
int sandbox_user(const char *name, uid_t *uid, gid_t *gid, char *err, size_t errlen);
/*
 * mkdir -p path (mode for what is made); a directory this call made is
 * chowned to uid:gid, one that was there is left alone. 0 or -1 with err.
 */
int sandbox_mkdir_for(const char *path, unsigned mode, uid_t uid, gid_t gid, char *err,
		      size_t errlen);
/*
 * From root to uid:gid (supplementary groups: gid alone), keeping the
 * capabilities in keep (permitted and effective) and no others, not even in
 * the bounding set; no_new_privs is set. Before any thread starts. 0 or -1.
 */
int sandbox_drop(uid_t uid, gid_t gid, uint64_t keep, char *err, size_t errlen);
/*
 * Narrows the capabilities to keep (a subset of what is held): permitted and
 * effective; the ambient set is cleared; the bounding set too when
 * CAP_SETPCAP is held (then it goes as well unless kept). 0 or -1.
 */
int sandbox_caps_limit(uint64_t keep, char *err, size_t errlen);
/* The effective capabilities of this thread, as a mask. */
uint64_t sandbox_caps_effective(void);
/* "CAP_NET_BIND_SERVICE CAP_BPF" for a mask of the three nave uses ("none" for 0). */
const char *sandbox_caps_name(uint64_t caps, char *buf, size_t len);
/*
 * relayd's seccomp filter, for this thread and every thread it starts after:
 * the system calls a worker and the control thread make are allowed; those
 * that would undo the drop or reach past the process (execve, ptrace, mount,
 * module loading, setuid, unshare, ...) kill the process; any other fails
 * with ENOSYS. io_uring's own operations are not system calls and are not
 * filtered (the kernel does not pass them through seccomp). 0 or -1.
 */
int sandbox_seccomp_relayd(char *err, size_t errlen);

#endif

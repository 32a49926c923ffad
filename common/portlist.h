/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Port lists in the kernel's form ("1,2-4,10", as net.ipv4.
 * ip_local_reserved_ports reads and writes them) and reserving nave's port
 * range there, so that the kernel never hands those ports out as ephemeral
 * ports. A write to that sysctl replaces the whole list: read, merge, write.
 */
#ifndef NAVE_PORTLIST_H
#define NAVE_PORTLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PORTLIST_MAX 1024 /* spans kept; more than any sane reservation */

struct port_span {
	uint16_t lo, hi;
};

/*
 * Parses "1,2-4,10" (no spaces; an empty string or a lone newline is the
 * empty list) into v, sorted and merged; the count, or -EINVAL (with the
 * offending part unread) or -ENOSPC.
 */
int portlist_parse(const char *s, struct port_span *v, int max);
/* Adds [lo, hi] to the sorted, merged list v[0..n): the new count or -ENOSPC. */
int portlist_add(struct port_span *v, int n, int max, uint16_t lo, uint16_t hi);
/* true when every port of [lo, hi] is in v[0..n). */
bool portlist_covers(const struct port_span *v, int n, uint16_t lo, uint16_t hi);
/* Writes v[0..n) as "1,2-4,10" into out: its length, or -ENOSPC. */
int portlist_format(const struct port_span *v, int n, char *out, size_t len);

/*
 * Reserves [lo, hi] in the list at path (the sysctl file), keeping what is
 * there: 0 when it was added, 1 when it was reserved already, -errno with a
 * one-line reason in err.
 */
int portlist_reserve(const char *path, uint16_t lo, uint16_t hi, char *err, size_t errlen);

#endif

// SPDX-License-Identifier: Apache-2.0
/* Kernel port lists and the reserved-ports sysctl (see portlist.h). */
#include "portlist.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int span_cmp(const void *a, const void *b)
{
	const struct port_span *x = a, *y = b;

	return (int)x->lo - (int)y->lo;
}

/* Sorts v[0..n) and merges overlapping and adjacent spans; the new count. */
static int normalise(struct port_span *v, int n)
{
	int out = 0;

	if (n <= 0)
		return 0;
	qsort(v, (size_t)n, sizeof(*v), span_cmp);
	for (int i = 1; i < n; i++) {
		if ((unsigned)v[i].lo <= (unsigned)v[out].hi + 1) {
			if (v[i].hi > v[out].hi)
				v[out].hi = v[i].hi;
		} else {
			v[++out] = v[i];
		}
	}
	return out + 1;
}

static int number(const char **p, uint16_t *out)
{
	unsigned long v = 0;
	const char *s = *p;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return -EINVAL;
		s++;
	}
	*out = (uint16_t)v;
	*p = s;
	return 0;
}

int portlist_parse(const char *s, struct port_span *v, int max)
{
	int n = 0;

	if (*s == '\n' && !s[1])
		s++;
	while (*s) {
		struct port_span sp;

		if (number(&s, &sp.lo) < 0)
			return -EINVAL;
		sp.hi = sp.lo;
		if (*s == '-') {
			s++;
			if (number(&s, &sp.hi) < 0 || sp.hi < sp.lo)
				return -EINVAL;
		}
		if (n == max)
			return -ENOSPC;
		v[n++] = sp;
		if (*s == ',') {
			s++;
			if (!*s || *s == '\n')
				return -EINVAL; /* a trailing comma */
			continue;
		}
		if (*s == '\n' && !s[1])
			break;
		if (*s)
			return -EINVAL;
	}
	return normalise(v, n);
}

int portlist_add(struct port_span *v, int n, int max, uint16_t lo, uint16_t hi)
{
	if (n >= max)
		return portlist_covers(v, n, lo, hi) ? n : -ENOSPC;
	v[n].lo = lo;
	v[n].hi = hi;
	return normalise(v, n + 1);
}

bool portlist_covers(const struct port_span *v, int n, uint16_t lo, uint16_t hi)
{
	for (int i = 0; i < n; i++)
		if (v[i].lo <= lo && hi <= v[i].hi)
			return true;
	return false; /* the list is merged: one span holds the whole range or none does */
}

int portlist_format(const struct port_span *v, int n, char *out, size_t len)
{
	size_t off = 0;

	if (len)
		out[0] = 0;
	for (int i = 0; i < n; i++) {
		int w =
		    v[i].lo == v[i].hi
			? snprintf(out + off, len - off, "%s%u", i ? "," : "", v[i].lo)
			: snprintf(out + off, len - off, "%s%u-%u", i ? "," : "", v[i].lo, v[i].hi);

		if (w < 0 || (size_t)w >= len - off)
			return -ENOSPC;
		off += (size_t)w;
	}
	return (int)off;
}

int portlist_reserve(const char *path, uint16_t lo, uint16_t hi, char *err, size_t errlen)
{
	static struct port_span v[PORTLIST_MAX];
	static char buf[PORTLIST_MAX * 12 + 2];
	ssize_t got;
	int fd, n, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	got = read(fd, buf, sizeof(buf) - 1);
	r = got < 0 ? -errno : 0;
	close(fd);
	if (r < 0 || got == (ssize_t)sizeof(buf) - 1) {
		snprintf(err, errlen, "%s: %s", path, r < 0 ? strerror(-r) : "list too long");
		return r < 0 ? r : -ENOSPC;
	}
	buf[got] = 0;
	n = portlist_parse(buf, v, PORTLIST_MAX);
	if (n < 0) {
		snprintf(err, errlen, "%s: cannot read its list", path);
		return n;
	}
	if (portlist_covers(v, n, lo, hi))
		return 1;
	n = portlist_add(v, n, PORTLIST_MAX, lo, hi);
	if (n < 0 || (r = portlist_format(v, n, buf, sizeof(buf) - 1)) < 0) {
		snprintf(err, errlen, "%s: list too long", path);
		return -ENOSPC;
	}
	buf[r++] = '\n';
	fd = open(path, O_WRONLY | O_CLOEXEC);
	got = fd < 0 ? -1 : write(fd, buf, (size_t)r);
	if (got != r) {
		r = got < 0 ? -errno : -EIO;
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "writing %s: %s", path, strerror(-r));
		return r;
	}
	close(fd);
	return 0;
}

// SPDX-License-Identifier: Apache-2.0
/* Small helpers shared by every binary. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = 0;
}

int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_decode(const char *in, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hex_val(in[2 * i]), lo;

		if (hi < 0)
			return -EINVAL;
		lo = hex_val(in[2 * i + 1]);
		if (lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return in[2 * n] ? -EINVAL : 0;
}

void random_bytes(void *out, size_t n)
{
	uint8_t *p = out;

	while (n) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			/* getrandom cannot fail on Linux >= 3.17 with a valid buffer */
			memset(p, 0, n);
			return;
		}
		p += r;
		n -= (size_t)r;
	}
}

void random_hex(char *out, size_t n)
{
	uint8_t buf[64];

	if (n > sizeof(buf))
		n = sizeof(buf);
	random_bytes(buf, n);
	hex_encode(buf, n, out);
}

bool ct_equal(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

int fd_set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

int write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int mkdir_p(const char *path, unsigned mode)
{
	char tmp[1024];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

bool str_copy(char *dst, size_t dstlen, const char *src)
{
	size_t n = strlen(src);

	if (dstlen == 0)
		return false;
	if (n >= dstlen) {
		memcpy(dst, src, dstlen - 1);
		dst[dstlen - 1] = 0;
		return false;
	}
	memcpy(dst, src, n + 1);
	return true;
}

int lock_dirs(const char *prog, const char *const *dirs, unsigned n, char *err, size_t errlen)
{
	struct stat seen[8];
	unsigned nseen = 0;

	for (unsigned i = 0; i < n && i < 8; i++) {
		char path[1100], text[32] = "";
		struct stat st;
		bool dup = false;
		ssize_t r;
		int fd;

		if (stat(dirs[i], &st) < 0) {
			snprintf(err, errlen, "%s: %s", dirs[i], strerror(errno));
			return -errno;
		}
		for (unsigned k = 0; k < nseen; k++)
			dup |= seen[k].st_dev == st.st_dev && seen[k].st_ino == st.st_ino;
		if (dup)
			continue;
		seen[nseen++] = st;
		snprintf(path, sizeof(path), "%s/%s.lock", dirs[i], prog);
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0) {
			int e = errno;

			snprintf(err, errlen, "%s: %s", path, strerror(e));
			return -e;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int e = errno;

			r = pread(fd, text, sizeof(text) - 1, 0);
			text[r > 0 ? r : 0] = 0;
			close(fd);
			if (e != EWOULDBLOCK) {
				snprintf(err, errlen, "%s: %s", path, strerror(e));
				return -e;
			}
			snprintf(err, errlen,
				 "another %s (pid %d) is running with %s (it holds %s)", prog,
				 atoi(text), dirs[i], path);
			return -EWOULDBLOCK;
		}
		r = snprintf(text, sizeof(text), "%d\n", (int)getpid());
		if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)r, 0) != r) {
			int e = errno;

			snprintf(err, errlen, "%s: %s", path, strerror(e));
			close(fd);
			return -e;
		}
		/* the descriptor stays open: the lock lives as long as the process */
	}
	return 0;
}

size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t v;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		v = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		v = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		v = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10ffff)) ||
	    (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

bool utf8_printable(uint32_t cp)
{
	if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
		return false; /* C0, DEL, C1 */
	/* invisible characters that reorder or split what a reader sees */
	if (cp == 0x061c || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
	    (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff)
		return false;
	return true;
}

unsigned long fd_limit_raise(void)
{
	struct rlimit rl;
	unsigned long want = 1048576;
	FILE *f = fopen("/proc/sys/fs/nr_open", "re");

	if (f) {
		if (fscanf(f, "%lu", &want) != 1 || want < 1024)
			want = 1048576;
		fclose(f);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
		/* only with CAP_SYS_RESOURCE; otherwise the hard limit stays */
		struct rlimit up = {.rlim_cur = want, .rlim_max = want};

		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			return want;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur == RLIM_INFINITY ? want : (unsigned long)rl.rlim_cur;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers shared by every binary: time, hex, randomness, fds. */
#ifndef NAVE_UTIL_H
#define NAVE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define NAVE_VERSION  "0.1.0"

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t now_ms(void);
/* Lower-case hex of n bytes into out (2n+1 bytes). */
void hex_encode(const uint8_t *in, size_t n, char *out);
/* The value of one hex digit (either case), or -1. */
int hex_val(char c);
/* Decodes exactly 2n hex chars into n bytes; 0 or -EINVAL. */
int hex_decode(const char *in, uint8_t *out, size_t n);
/* Cryptographic random bytes (BoringSSL RAND_bytes underneath in daemons; getrandom here). */
void random_bytes(void *out, size_t n);
/* Random lower-case hex string of n bytes of entropy into out (2n+1). */
void random_hex(char *out, size_t n);
/* Constant-time comparison of n bytes: true when equal. */
bool ct_equal(const void *a, const void *b, size_t n);
/* O_NONBLOCK on/off; 0 or -errno. */
int fd_set_nonblock(int fd, bool on);
/* Writes all of buf to a blocking fd; 0 or -errno. */
int write_all(int fd, const void *buf, size_t n);
/* mkdir -p with mode; 0 or -errno. */
int mkdir_p(const char *path, unsigned mode);
/*
 * The valid UTF-8 sequence at s (at most n bytes): its length, with the code
 * point in *cp; 0 when invalid (overlong, surrogate, beyond U+10FFFF, cut).
 */
size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/*
 * False for control characters (C0, DEL, C1) and for invisible format
 * characters that can reorder or split a line (bidi controls, zero-width
 * characters, line and paragraph separators, BOM).
 */
bool utf8_printable(uint32_t cp);

/* Safe string copy: always NUL-terminates; returns false if truncated. */
bool str_copy(char *dst, size_t dstlen, const char *src);

/*
 * One instance per directory: takes an exclusive lock on DIR/PROG.lock in
 * each of the n directories (a directory named twice is locked once) and
 * writes our pid into the files. The locks hold until the process exits.
 * 0, or -errno with a one-line reason naming the holder's pid in err.
 */
int lock_dirs(const char *prog, const char *const *dirs, unsigned n, char *err, size_t errlen);

/*
 * Raises RLIMIT_NOFILE as far as the process may (the hard limit, or fs.nr_open
 * with CAP_SYS_RESOURCE) and returns the soft limit now in force: every
 * relayed connection costs two descriptors at each end.
 */
unsigned long fd_limit_raise(void);

#endif

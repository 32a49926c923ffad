// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for config/: the input is written to a memfd and loaded as
 * a server and as a client config. Beyond "never crash", it checks that the
 * loader's line scanner and iniparser never disagree, that --check output of
 * an accepted server config loads back to the same settings, and that a saved
 * accepted client config loads back to the same struct.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_config.c config/cfg.c common/util.c common/log.c -liniparser
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/cfg.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char savedir[64];

/* A memfd holding buf; its /proc path in path. -1 on failure. */
static int memfd_with(const void *buf, size_t n, char *path, size_t len)
{
	int fd = memfd_create("fuzz-config", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (write_all(fd, buf, n) < 0) {
		close(fd);
		return -1;
	}
	snprintf(path, len, "/proc/self/fd/%d", fd);
	return fd;
}

/* err must be one line "PATH[:LINE]: reason", and not the loader's internal error. */
static void check_err(const char *err, const char *path)
{
	size_t n = strlen(path);

	if (!memchr(err, 0, CFG_ERR_MAX) || strchr(err, '\n') || strncmp(err, path, n) ||
	    err[n] != ':')
		abort();
	err += n + 1;
	err += strspn(err, "0123456789");
	if (*err == ':')
		err++;
	/* the line scanner let through something iniparser read differently */
	if (!strncmp(err, " internal error: iniparser disagrees", 36)) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
}

static void server_round_trip(struct cfg_server *a)
{
	struct cfg_server *b = calloc(1, sizeof(*b));
	char path[64], err[CFG_ERR_MAX];
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int fd;

	f = open_memstream(&text, &len);
	if (!b || !f)
		abort();
	cfg_server_print(a, f);
	fclose(f);
	fd = memfd_with(text, len, path, sizeof(path));
	if (fd >= 0) {
		if (cfg_server_load(b, path, err, sizeof(err)) < 0) {
			fprintf(stderr, "printed config does not load: %s\n%s", err, text);
			abort();
		}
		memset(a->source, 0, sizeof(a->source));
		memset(b->source, 0, sizeof(b->source));
		if (memcmp(a, b, sizeof(*a))) {
			fprintf(stderr, "printed config loads differently:\n%s", text);
			abort();
		}
		close(fd);
	}
	free(text);
	free(b);
}

static void client_round_trip(struct cfg_client *a)
{
	struct cfg_client *b = calloc(1, sizeof(*b));
	char err[CFG_ERR_MAX];

	if (!b)
		abort();
	/* the default socket follows the path: pin it before moving the file */
	snprintf(a->path, sizeof(a->path), "%s/c.ini", savedir);
	if (cfg_client_save(a, err, sizeof(err)) < 0) {
		fprintf(stderr, "loaded client config does not save: %s\n", err);
		abort();
	}
	if (cfg_client_load(b, a->path, false, err, sizeof(err)) < 0) {
		fprintf(stderr, "saved client config does not load: %s\n", err);
		abort();
	}
	if (memcmp(a, b, sizeof(*a))) {
		fprintf(stderr, "saved client config loads differently\n");
		abort();
	}
	free(b);
}

static void cleanup(void)
{
	char p[96];

	snprintf(p, sizeof(p), "%s/c.ini", savedir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/c.ini.tmp", savedir);
	unlink(p);
	rmdir(savedir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg_server *s = calloc(1, sizeof(*s));
	struct cfg_client *c = calloc(1, sizeof(*c));
	char path[64], err[CFG_ERR_MAX], *str;
	uint64_t ms;
	int fd;

	if (!savedir[0]) {
		snprintf(savedir, sizeof(savedir), "/tmp/fuzz-config.XXXXXX");
		if (!mkdtemp(savedir))
			abort();
		atexit(cleanup);
	}
	if (!s || !c)
		abort();
	fd = memfd_with(data, size, path, sizeof(path));
	if (fd >= 0) {
		memset(err, 0x55, sizeof(err));
		if (cfg_server_load(s, path, err, sizeof(err)) < 0)
			check_err(err, path);
		else
			server_round_trip(s);
		memset(err, 0x55, sizeof(err));
		if (cfg_client_load(c, path, false, err, sizeof(err)) < 0)
			check_err(err, path);
		else
			client_round_trip(c);
		close(fd);
	}

	/* the string helpers, on the input as one C string */
	str = malloc(size + 1);
	if (str) {
		char host[64];
		uint16_t port;

		memcpy(str, data, size);
		str[size] = 0;
		cfg_parse_duration_ms(str, &ms);
		cfg_parse_hostport(str, host, sizeof(host), &port);
		cfg_valid_name(str);
		free(str);
	}
	free(s);
	free(c);
	return 0;
}

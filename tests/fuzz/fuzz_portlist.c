// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for common/portlist.c, the reader of the kernel's port
 * lists ("1,2-4,10", net.ipv4.ip_local_reserved_ports). The input is the
 * list's text. Checks: a list that parses is sorted, merged (no two spans
 * touch) and each span ordered; formatting it and parsing that again gives
 * the same spans; adding a span keeps those properties and covers it.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_portlist.c common/portlist.c
 */
#include <stdlib.h>
#include <string.h>

#include "portlist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX 64

static void check_sorted(const struct port_span *v, int n)
{
	for (int i = 0; i < n; i++) {
		if (v[i].lo > v[i].hi)
			abort();
		if (i && (unsigned)v[i - 1].hi + 1 >= v[i].lo)
			abort(); /* overlapping or touching: not merged */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct port_span v[MAX], w[MAX];
	char *s, out[MAX * 12 + 1];
	int n, m;

	if (size > 4096)
		return 0;
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	n = portlist_parse(s, v, MAX);
	free(s);
	if (n < 0)
		return 0;
	check_sorted(v, n);
	if (portlist_format(v, n, out, sizeof(out)) < 0)
		abort(); /* MAX spans always fit */
	m = portlist_parse(out, w, MAX);
	if (m != n || memcmp(v, w, (size_t)n * sizeof(*v)))
		abort();
	m = portlist_add(v, n, MAX, 22000, 22999);
	if (m >= 0) {
		check_sorted(v, m);
		if (!portlist_covers(v, m, 22000, 22999))
			abort();
	}
	return 0;
}

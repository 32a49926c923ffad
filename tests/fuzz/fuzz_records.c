// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for ctl/records.c, controld's check of relayd's conn_records
 * messages (and of the API's since= values). The input is the JSON of one message
 * (its first line also a since= value). Beyond "never crash": a refusal is
 * -EBADMSG with a one-line reason and only for a message whose "records" is not
 * an array or is too long; otherwise accepted + dropped is the array's length,
 * never more than the room; every accepted record is within the bounds the store
 * relies on (a tunnel id of its alphabet and length, a known kind and reason, a
 * port, an address inet_pton reads, a lowercase DNS name only for HTTP(S), the
 * times and counts in range, ended from start and duration), and checking it
 * again (written back as JSON) gives the same record.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_records.c ctl/records.c common/valid.c common/domain.c \
 *     common/util.c common/log.c -ljansson
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/records.h"
#include "domain.h"
#include "valid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROOM 64

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_records: %s\n", what);
	abort();
}

static void check_reason(const char *why)
{
	size_t n = strlen(why);

	if (!n || n > 255)
		fail("a refusal without a reason, or an unterminated one");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)why[i] < 0x20 || why[i] == 0x7f)
			fail("a reason with a control character");
}

static json_t *as_json(const struct store_conn_record *r)
{
	json_t *o = json_pack(
	    "{s:s, s:s, s:i, s:s, s:i, s:I, s:I, s:I, s:I, s:s}", "tunnel_id", r->tunnel_id, "kind",
	    store_rec_kind_names[r->kind], "port", (int)r->port, "src", r->src, "src_port",
	    (int)r->src_port, "start_ms", (json_int_t)r->start_ms, "duration_ms",
	    (json_int_t)r->duration_ms, "bytes_in", (json_int_t)r->bytes_in, "bytes_out",
	    (json_int_t)r->bytes_out, "reason", store_rec_reason_names[r->reason]);

	if (o && r->domain[0])
		json_object_set_new(o, "domain", json_string(r->domain));
	return o;
}

static void check_record(const struct store_conn_record *r)
{
	char dom[DOMAIN_MAX + 1];
	unsigned char a[16];

	if (!valid_str(r->tunnel_id, VALID_ID, STORE_TUNNEL_ID_LEN - 1))
		fail("tunnel_id");
	if (r->kind < 0 || r->kind > STORE_REC_HTTPS || r->reason < 0 ||
	    r->reason >= STORE_REC_REASONS)
		fail("kind or reason out of range");
	if (!r->port)
		fail("port 0");
	if (inet_pton(AF_INET, r->src, a) != 1 && inet_pton(AF_INET6, r->src, a) != 1)
		fail("src not an address");
	if (r->domain[0] &&
	    (r->kind == STORE_REC_TCP || !domain_norm(r->domain, strlen(r->domain), dom, false) ||
	     strcmp(dom, r->domain)))
		fail("domain");
	if (r->start_ms < 0 || r->duration_ms < 0 || r->bytes_in < 0 || r->bytes_out < 0 ||
	    r->bytes_in > (1ll << 62) || r->bytes_out > (1ll << 62))
		fail("a time or a count out of range");
	if (r->start != r->start_ms / 1000 || r->ended != (r->start_ms + r->duration_ms) / 1000)
		fail("start or ended");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct store_conn_record out[ROOM], again[1];
	char why[256], since[32];
	size_t n, bad, n2, bad2;
	json_t *m, *a, *one;
	int64_t v;
	int ret;

	/* the first line as a since= value */
	n = 0;
	while (n < size && n < sizeof(since) - 1 && data[n] != '\n')
		n++;
	memcpy(since, data, n);
	since[n] = 0;
	if (!records_since(since, 1700000000, &v) && (v < 0 || v > 253402300799ll))
		fail("since out of range");

	m = json_loadb((const char *)data, size, 0, NULL);
	if (!m)
		return 0;
	ret = records_parse(m, out, ROOM, &n, &bad, why, sizeof(why));
	a = json_object_get(m, "records");
	if (ret) {
		if (ret != -EBADMSG || (json_is_array(a) && json_array_size(a) <= RECORDS_MSG_MAX))
			fail("a refusal of a well-formed message");
		check_reason(why);
		json_decref(m);
		return 0;
	}
	if (!json_is_array(a) || n + bad != json_array_size(a) || n > ROOM)
		fail("accepted + dropped is not the batch");
	if (bad)
		check_reason(why);
	for (size_t i = 0; i < n; i++) {
		check_record(&out[i]);
		one = json_pack("{s:[o]}", "records", as_json(&out[i]));
		if (records_parse(one, again, 1, &n2, &bad2, why, sizeof(why)) || n2 != 1 ||
		    memcmp(&again[0], &out[i], sizeof(again[0])))
			fail("an accepted record does not check the same again");
		json_decref(one);
	}
	json_decref(m);
	return 0;
}

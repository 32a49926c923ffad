/* SPDX-License-Identifier: Apache-2.0 */
/*
 * controld's side of relayd's connection records (conn_records, ctl_proto.h):
 * the check of every member of a batch, and the times the admin API takes
 * (since=). Pure functions: the store keeps the records (store.h), the relay
 * link counts them (relaylink.c), and tests/fuzz/fuzz_records.c fuzzes them.
 */
#ifndef NAVE_RECORDS_H
#define NAVE_RECORDS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ctl/store.h"

/* records one conn_records message may hold (relayd sends at most 96) */
#define RECORDS_MSG_MAX 1024

/*
 * Checks a conn_records message m. -EBADMSG with a reason in why when the message
 * itself is malformed ("records" missing, not an array, or longer than
 * RECORDS_MSG_MAX). Otherwise 0: every record that passes each check goes to out
 * (at most max; *n of them), every other one is counted in *bad, the first one's
 * reason in why ("records[3]: bytes_in must be an integer 0-2^62").
 */
int records_parse(const json_t *m, struct store_conn_record *out, size_t max, size_t *n,
		  size_t *bad, char *why, size_t whylen);

/*
 * A since= value: Unix seconds ("1733000000"), or a duration back from now ("90s",
 * "15m", "1h", "7d", "2w"). 0 with *since, or -EINVAL.
 */
int records_since(const char *s, int64_t now, int64_t *since);

#endif

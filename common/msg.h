/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Length-prefixed JSON messages: a big-endian u32 length, then that many
 * bytes holding one JSON object with a string member "type". Used on the
 * control link (client <-> relayd) and the internal socket (relayd <->
 * controld).
 */
#ifndef NAVE_MSG_H
#define NAVE_MSG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define MSG_MAX (64 * 1024)

/* Serialises obj with its length prefix into a malloc'd buffer (caller frees). */
uint8_t *msg_encode(const json_t *obj, size_t *len);

/* Incremental reader: append received bytes, then take whole messages. */
struct msg_reader {
	uint8_t *buf;
	size_t len;
	size_t cap;
};

void msg_reader_init(struct msg_reader *r);
void msg_reader_free(struct msg_reader *r);
/* Appends n bytes; -ENOMEM or -EMSGSIZE if more than one maximal message would be buffered. */
int msg_reader_feed(struct msg_reader *r, const void *data, size_t n);
/*
 * Takes the next message: 1 and *out set (caller decrefs, "type" guaranteed to
 * be a string), 0 when more bytes are needed, -EBADMSG (err says why) when the
 * stream is malformed: the caller closes the peer.
 */
int msg_reader_next(struct msg_reader *r, json_t **out, char *err, size_t errlen);

/*
 * Outbound queue for a non-blocking peer: messages are encoded on push and
 * written with msg_outq_flush whenever the socket takes them.
 */
struct msg_outq {
	uint8_t *buf;
	size_t len;
	size_t cap;
};

/*
 * Encodes obj and appends it: 0, -ENOMEM, or -ENOBUFS when more than max
 * bytes would be queued (the peer is not reading: close it). The temporary
 * encoding is wiped (messages may carry tokens).
 */
int msg_outq_push(struct msg_outq *q, const json_t *obj, size_t max);
/* Sends what fd takes now without blocking: 0, or -errno on a write error. */
int msg_outq_flush(struct msg_outq *q, int fd);
/* Drops everything queued; keeps the allocation (NULL-safe). */
void msg_outq_reset(struct msg_outq *q);
void msg_outq_free(struct msg_outq *q);

/* Convenience getters that tolerate missing members. */
const char *msg_str(const json_t *obj, const char *key);
long long msg_int(const json_t *obj, const char *key, long long dflt);

#endif

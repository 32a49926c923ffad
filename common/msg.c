// SPDX-License-Identifier: Apache-2.0
/* Length-prefixed JSON message codec shared by every control-plane peer. */
#include "msg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

uint8_t *msg_encode(const json_t *obj, size_t *len)
{
	char *s = json_dumps(obj, JSON_COMPACT);
	size_t n;
	uint8_t *out;

	if (!s)
		return NULL;
	n = strlen(s);
	if (n > MSG_MAX) {
		free(s);
		return NULL;
	}
	out = malloc(n + 4);
	if (out) {
		out[0] = (uint8_t)(n >> 24);
		out[1] = (uint8_t)(n >> 16);
		out[2] = (uint8_t)(n >> 8);
		out[3] = (uint8_t)n;
		memcpy(out + 4, s, n);
		*len = n + 4;
	}
	free(s);
	return out;
}

void msg_reader_init(struct msg_reader *r)
{
	memset(r, 0, sizeof(*r));
}

void msg_reader_free(struct msg_reader *r)
{
	if (!r)
		return;
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

int msg_reader_feed(struct msg_reader *r, const void *data, size_t n)
{
	if (n == 0)
		return 0;
	if (n > 2 * (MSG_MAX + 4) - r->len)
		return -EMSGSIZE;
	if (r->len + n > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		uint8_t *b;

		while (cap < r->len + n)
			cap *= 2;
		b = realloc(r->buf, cap);
		if (!b)
			return -ENOMEM;
		r->buf = b;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, data, n);
	r->len += n;
	return 0;
}

int msg_reader_next(struct msg_reader *r, json_t **out, char *err, size_t errlen)
{
	json_error_t jerr;
	uint32_t n;
	json_t *obj, *type;

	*out = NULL;
	if (r->len < 4)
		return 0;
	n = (uint32_t)r->buf[0] << 24 | (uint32_t)r->buf[1] << 16 | (uint32_t)r->buf[2] << 8 |
	    r->buf[3];
	if (n == 0 || n > MSG_MAX) {
		snprintf(err, errlen, "message length %u out of range 1..%u", n, MSG_MAX);
		return -EBADMSG;
	}
	if (r->len - 4 < n)
		return 0;
	obj = json_loadb((const char *)r->buf + 4, n, JSON_REJECT_DUPLICATES, &jerr);
	memmove(r->buf, r->buf + 4 + n, r->len - 4 - n);
	r->len -= 4 + n;
	if (!obj) {
		snprintf(err, errlen, "malformed JSON: %s", jerr.text);
		return -EBADMSG;
	}
	type = json_object_get(obj, "type");
	if (!json_is_object(obj) || !json_is_string(type)) {
		json_decref(obj);
		snprintf(err, errlen, "message is not an object with a string \"type\"");
		return -EBADMSG;
	}
	*out = obj;
	return 1;
}

int msg_outq_push(struct msg_outq *q, const json_t *obj, size_t max)
{
	size_t n;
	uint8_t *m = msg_encode(obj, &n);
	int ret = 0;

	if (!m)
		return -ENOMEM;
	if (n > max - q->len || q->len > max) {
		ret = -ENOBUFS;
		goto out;
	}
	if (q->len + n > q->cap) {
		size_t cap = q->cap ? q->cap : 4096;
		uint8_t *b;

		while (cap < q->len + n)
			cap *= 2;
		b = realloc(q->buf, cap);
		if (!b) {
			ret = -ENOMEM;
			goto out;
		}
		q->buf = b;
		q->cap = cap;
	}
	memcpy(q->buf + q->len, m, n);
	q->len += n;
out:
	memset(m, 0, n);
	free(m);
	return ret;
}

int msg_outq_flush(struct msg_outq *q, int fd)
{
	size_t off = 0;
	int ret = 0;

	while (off < q->len) {
		ssize_t w = send(fd, q->buf + off, q->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				ret = -errno;
			break;
		}
		off += (size_t)w;
	}
	memmove(q->buf, q->buf + off, q->len - off);
	q->len -= off;
	return ret;
}

void msg_outq_reset(struct msg_outq *q)
{
	if (q)
		q->len = 0;
}

void msg_outq_free(struct msg_outq *q)
{
	if (!q)
		return;
	free(q->buf);
	memset(q, 0, sizeof(*q));
}

const char *msg_str(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

long long msg_int(const json_t *obj, const char *key, long long dflt)
{
	const json_t *v = json_object_get(obj, key);

	return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

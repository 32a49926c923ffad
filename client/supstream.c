/* SPDX-License-Identifier: Apache-2.0 */
#include "supstream.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int fd_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

void sio_init(struct sio *s, int fd, SSL *ssl, bool framed)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->ssl = ssl;
	s->framed = framed;
	frame_rx_init(&s->frx, false);
	if (ssl)
		SSL_set_mode(ssl,
			     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/* Transport bytes into buf: count, 0 at EOF, -EAGAIN, -ECONNRESET or -EIO (s->err). */
static ssize_t sio_fill(struct sio *s, void *buf, size_t n)
{
	ssize_t r;

	if (!s->ssl) {
		r = read(s->fd, buf, n);
		if (r >= 0)
			return r;
		if (errno == EAGAIN || errno == EINTR)
			return -EAGAIN;
		if (errno == ECONNRESET)
			return -ECONNRESET;
		snprintf(s->err, sizeof(s->err), "read: %s", strerror(errno));
		return -EIO;
	}
	ERR_clear_error();
	int k = SSL_read(s->ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));

	if (k > 0)
		return k;
	switch (SSL_get_error(s->ssl, k)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (errno == ECONNRESET)
			return -ECONNRESET;
		if (k == 0 || errno == 0)
			return 0; /* closed without close_notify: the end all the same */
		break;
	default:
		break;
	}
	snprintf(s->err, sizeof(s->err), "TLS read failed");
	return -EIO;
}

ssize_t sio_read(struct sio *s, void *buf, size_t n)
{
	ssize_t r;

	if (!s->framed) {
		if (s->rlen > s->roff) { /* left over from before */
			size_t k = s->rlen - s->roff < n ? s->rlen - s->roff : n;

			memcpy(buf, s->raw + s->roff, k);
			s->roff += k;
			return (ssize_t)k;
		}
		return sio_fill(s, buf, n);
	}
	for (;;) {
		size_t have = s->rlen - s->roff;

		if (have && frame_rx_in_body(&s->frx)) {
			size_t k = have;

			if (k > s->frx.body_left)
				k = s->frx.body_left;
			if (k > n)
				k = n;
			memcpy(buf, s->raw + s->roff, k);
			s->roff += k;
			frame_rx_body_done(&s->frx, k);
			return (ssize_t)k;
		}
		if (have) {
			size_t want, k;
			uint8_t *h = frame_rx_hdr(&s->frx, &want);
			int ev;

			k = have < want ? have : want;
			memcpy(h, s->raw + s->roff, k);
			s->roff += k;
			ev = frame_rx_hdr_done(&s->frx, k, NULL, s->err, sizeof(s->err));
			if (ev < 0)
				return -EIO;
			if (ev == FRAME_EOF)
				return 0;
			if (ev == FRAME_RESET)
				return -ECONNRESET;
			if (ev == FRAME_OPENED)
				return -EPROTO;
			continue; /* FRAME_NEED, or a chunk's header (FRAME_DATA) */
		}
		s->roff = s->rlen = 0;
		r = sio_fill(s, s->raw, sizeof(s->raw));
		if (r == 0) {
			snprintf(s->err, sizeof(s->err),
				 "the link closed without ending the stream");
			return -ECONNRESET;
		}
		if (r < 0)
			return r;
		s->rlen = (size_t)r;
	}
}

bool sio_pending(const struct sio *s)
{
	return s->rlen > s->roff || (s->ssl && SSL_pending(s->ssl) > 0);
}

ssize_t sio_write(struct sio *s, const void *buf, size_t n)
{
	ssize_t r;

	if (!s->ssl) {
		r = send(s->fd, buf, n, MSG_NOSIGNAL);
		if (r >= 0)
			return r;
		return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
	}
	ERR_clear_error();
	int k = SSL_write(s->ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));

	if (k > 0)
		return k;
	switch (SSL_get_error(s->ssl, k)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -EAGAIN;
	default:
		return -EPIPE;
	}
}

static int send_all(struct sio *s, const uint8_t *p, size_t n, uint64_t deadline)
{
	while (n) {
		ssize_t w = sio_write(s, p, n);
		uint64_t now = now_ms();

		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w != -EAGAIN || now >= deadline)
			return -1;
		struct pollfd pf = {.fd = s->fd, .events = POLLOUT};

		poll(&pf, 1, (int)(deadline - now > 200 ? 200 : deadline - now));
	}
	return 0;
}

int sio_send(struct sio *s, const void *buf, size_t n, uint64_t deadline)
{
	uint8_t h[4];

	if (s->framed) {
		frame_put32(h, (uint32_t)n);
		if (send_all(s, h, 4, deadline) < 0)
			return -1;
	}
	return send_all(s, buf, n, deadline);
}

void sio_reset(struct sio *s)
{
	if (s->framed) {
		uint8_t h[4];

		frame_put32(h, LINK_FRAME_RESET);
		sio_write(s, h, 4); /* best effort: the link closes after it anyway */
		return;
	}
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* ---------- the pump ---------- */

#define OUTP_MAX (4 * SUP_REC_DATA_MAX)

struct pump {
	uint8_t outs[4 + SUP_REC_WIRE_MAX]; /* sealed, to s (a chunk header first when framed) */
	size_t outs_len, outs_off;
	uint8_t ins[SIO_RAW_MAX]; /* the stream's bytes from s, not yet opened */
	size_t ins_len, ins_off;
	uint8_t outp[OUTP_MAX]; /* plaintext to plain */
	size_t outp_len, outp_off;
};

static int fail(struct sup_pump_res *res, const char *why)
{
	snprintf(res->why, sizeof(res->why), "%s", why);
	return -1;
}

int sup_pump(int plain, struct sio *s, struct sup_tx *tx, struct sup_rx *rx,
	     const volatile int *stop, struct sup_pump_res *res)
{
	struct pump *p = calloc(1, sizeof(*p));
	bool p_in_eof = false, s_shut = false, s_in_end = false, p_out_shut = false,
	     s_in_eof = false;
	size_t f = s->framed ? 4 : 0;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (!p)
		return fail(res, "out of memory");
	for (;;) {
		bool progress = false;
		ssize_t r;

		if (stop && *stop) {
			fail(res, "stopped");
			break;
		}
		/* plain -> one sealed record (or the end record) */
		if (!p_in_eof && p->outs_len == 0) {
			uint8_t *d = p->outs + f + SUP_REC_HDR;
			size_t taken;
			int rl;

			r = read(plain, d, SUP_REC_DATA_MAX);
			if (r < 0 && errno != EAGAIN && errno != EINTR) {
				fail(res, errno == ECONNRESET ? "the service reset the connection"
							      : "read error on the connection");
				break;
			}
			if (r >= 0) {
				rl = r > 0 ? sup_seal(tx, d, (size_t)r, &taken, p->outs + f,
						      sizeof(p->outs) - f)
					   : sup_seal_end(tx, p->outs + f, sizeof(p->outs) - f);
				if (rl < 0) {
					fail(res, "the record layer is used up");
					break;
				}
				if (f)
					frame_put32(p->outs, (uint32_t)rl);
				p->outs_len = f + (size_t)rl;
				p->outs_off = 0;
				p_in_eof = r == 0;
				progress = true;
			}
		}
		if (p->outs_len) {
			r = sio_write(s, p->outs + p->outs_off, p->outs_len - p->outs_off);
			if (r < 0 && r != -EAGAIN) {
				fail(res, "the stream closed");
				break;
			}
			if (r > 0) {
				p->outs_off += (size_t)r;
				progress = true;
				if (p->outs_off == p->outs_len)
					p->outs_len = p->outs_off = 0;
			}
		}
		if (p_in_eof && !s_shut && p->outs_len == 0) {
			s_shut = true;
			if (f) {
				frame_put32(p->outs, LINK_FRAME_EOF);
				p->outs_len = 4;
			} else {
				shutdown(s->fd, SHUT_WR);
			}
			progress = true;
		}
		/* s -> records -> plaintext */
		while (p->ins_off < p->ins_len && OUTP_MAX - p->outp_len >= SUP_REC_DATA_MAX) {
			const uint8_t *data;
			size_t used, len;
			enum sup_rec_res rr;

			if (s_in_end) {
				fail(res, "bytes after the end of the stream");
				goto out;
			}
			rr = sup_open(rx, p->ins + p->ins_off, p->ins_len - p->ins_off, &used,
				      &data, &len);
			p->ins_off += used;
			progress = true;
			if (rr == SUP_REC_ERR) {
				fail(res, rx->err);
				goto out;
			}
			if (rr == SUP_REC_DATA) {
				if (p->outp_off == p->outp_len)
					p->outp_off = p->outp_len = 0;
				memcpy(p->outp + p->outp_len, data, len);
				p->outp_len += len;
			}
			if (rr == SUP_REC_END)
				s_in_end = true;
		}
		if (p->ins_off == p->ins_len && !s_in_eof &&
		    OUTP_MAX - p->outp_len >= SUP_REC_DATA_MAX) {
			p->ins_off = p->ins_len = 0;
			r = sio_read(s, p->ins, sizeof(p->ins));
			if (r > 0) {
				p->ins_len = (size_t)r;
				progress = true;
			} else if (r == 0) {
				s_in_eof = true;
				progress = true;
				if (!s_in_end) {
					const char *why = sup_rx_eof(rx);

					fail(res, why ? why : "the stream was cut");
					break;
				}
			} else if (r != -EAGAIN) {
				fail(res, r == -ECONNRESET ? "the stream was reset"
					  : s->err[0]	   ? s->err
							   : "the stream failed");
				break;
			}
		}
		if (p->outp_off < p->outp_len) {
			r = send(plain, p->outp + p->outp_off, p->outp_len - p->outp_off,
				 MSG_NOSIGNAL);
			if (r < 0 && errno != EAGAIN && errno != EINTR) {
				fail(res, "the connection closed");
				break;
			}
			if (r > 0) {
				p->outp_off += (size_t)r;
				progress = true;
				if (p->outp_off == p->outp_len)
					p->outp_off = p->outp_len = 0;
			}
		}
		if (s_in_end && !p_out_shut && p->outp_len == 0) {
			shutdown(plain, SHUT_WR);
			p_out_shut = true;
			progress = true;
		}
		if (p_in_eof && s_shut && p->outs_len == 0 && p_out_shut && s_in_eof) {
			rc = 0;
			break;
		}
		if (progress)
			continue;
		/* wait for what can move next */
		struct pollfd pf[2] = {{.fd = plain}, {.fd = s->fd}};
		bool want_s_in = !s_in_eof && p->ins_off == p->ins_len &&
				 OUTP_MAX - p->outp_len >= SUP_REC_DATA_MAX;

		if (!p_in_eof && p->outs_len == 0)
			pf[0].events |= POLLIN;
		if (p->outp_len)
			pf[0].events |= POLLOUT;
		if (want_s_in)
			pf[1].events |= POLLIN;
		if (p->outs_len)
			pf[1].events |= POLLOUT;
		if (want_s_in && sio_pending(s))
			continue;
		if (poll(pf, 2, 1000) < 0 && errno != EINTR) {
			fail(res, "poll failed");
			break;
		}
	}
out:
	res->up = tx->bytes;
	res->down = rx->bytes;
	free(p);
	return rc;
}

/* ---------- the supporter's handshake ---------- */

int supc_stream(struct sio *s, int plain, const uint8_t psk[SUP_PSK_LEN], const char *session,
		unsigned service, uint64_t deadline, const volatile int *stop,
		struct sup_pump_res *res, bool *wrong_psk)
{
	struct sup_hs *hs = calloc(1, sizeof(*hs));
	struct sup_tx *tx = calloc(1, sizeof(*tx));
	struct sup_rx *rx = calloc(1, sizeof(*rx));
	enum sup_hs_res hr = SUP_HS_MORE;
	uint8_t buf[512];
	const uint8_t *o;
	size_t n;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	*wrong_psk = false;
	if (!hs || !tx || !rx) {
		fail(res, "out of memory");
		goto out;
	}
	if (sup_hs_supporter(hs, psk, session, service) < 0) {
		fail(res, hs->err);
		goto out;
	}
	for (;;) {
		o = sup_hs_out(hs, &n);
		if (n) {
			if (sio_send(s, o, n, deadline) < 0) {
				fail(res, "the stream closed during the handshake");
				goto out;
			}
			sup_hs_sent(hs, n);
		}
		if (hr == SUP_HS_DONE)
			break;
		ssize_t r = sio_read(s, buf, sizeof(buf));

		if (r == -EAGAIN) {
			uint64_t now = now_ms();
			struct pollfd pf = {.fd = s->fd, .events = POLLIN};

			if (now >= deadline || (stop && *stop)) {
				fail(res, "the device did not answer the handshake in time");
				goto out;
			}
			if (!sio_pending(s))
				poll(&pf, 1, (int)(deadline - now > 200 ? 200 : deadline - now));
			continue;
		}
		if (r <= 0) {
			fail(res, r == 0 ? sup_hs_eof(hs)
				  : r == -EIO && s->err[0]
				      ? s->err
				      : "the stream was reset during the handshake");
			goto out;
		}
		size_t off = 0;

		while (off < (size_t)r) {
			size_t used = 0;

			hr = sup_hs_feed(hs, buf + off, (size_t)r - off, &used);
			off += used;
			if (hr == SUP_HS_ERR) {
				*wrong_psk = strstr(hs->err, "wrong pre-shared key") != NULL;
				fail(res, hs->err);
				goto out;
			}
			if (hr == SUP_HS_DONE)
				break;
			if (hr != SUP_HS_MORE || used == 0)
				break;
		}
		if (hr == SUP_HS_DONE && off < (size_t)r) {
			/* the device speaks only after tag_s: nothing may follow SUP2 yet */
			fail(res, "unexpected bytes after the device's handshake");
			goto out;
		}
	}
	if (sup_hs_finish(hs, tx, rx) < 0) {
		fail(res, "the handshake did not finish");
		goto out;
	}
	rc = sup_pump(plain, s, tx, rx, stop, res);
out:
	if (hs)
		sup_hs_wipe(hs);
	if (tx)
		sup_tx_wipe(tx);
	if (rx)
		sup_rx_wipe(rx);
	free(hs);
	free(tx);
	free(rx);
	return rc;
}

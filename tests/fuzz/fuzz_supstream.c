// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for client/supstream.c: what a support stream's sealed side
 * receives (the device's or relayd's bytes, untrusted) through sio_read (raw, or
 * in link_proto.h chunk frames) into sup_pump's record opening. The first input
 * byte picks: bit 0 framed, bit 1 "seal": the rest is plaintext that the target
 * seals into records with the pump's key (split by the next byte) followed by the
 * end record, so the fuzzer reaches whole valid streams; bit 2 then flips one byte
 * (at the position the following two bytes give) and bit 3 drops the end record.
 * Without bit 1 the rest goes as it is. The bytes are written into a socketpair
 * the pump reads; its plaintext side reads EOF at once (so it sends its own end
 * record). Beyond "never crash, never hang": the pump's result is checked
 * against what it was given: a clean 0 only for an intact sealed stream with its
 * end record, and then exactly the sealed plaintext came out.
 *
 *   see tests/fuzz/run.sh (deps "supstream") for the build line
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/supstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define IN_MAX 32768

static const uint8_t key_in[32] = {1, 2, 3};  /* the peer's direction: what the pump opens */
static const uint8_t key_out[32] = {4, 5, 6}; /* the pump's own direction */

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_supstream: %s\n", what);
	abort();
}

static uint8_t wire[IN_MAX * 2 + 4096];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sup_tx peer, *tx = calloc(1, sizeof(*tx));
	struct sup_rx *rx = calloc(1, sizeof(*rx));
	struct sio *s = calloc(1, sizeof(*s));
	struct sup_pump_res res;
	uint8_t mode, out[SUP_REC_WIRE_MAX], got[IN_MAX];
	size_t n = 0, plain_len = 0, split = 1, flip = (size_t)-1, gotn = 0;
	bool framed, seal, intact = false;
	int sp[2], pp[2], rc;

	if (size < 1 || size > IN_MAX)
		goto out;
	signal(SIGPIPE, SIG_IGN);
	mode = data[0];
	framed = mode & 1;
	seal = mode & 2;
	data++;
	size--;
	if (seal) {
		size_t taken;

		if (size >= 3) {
			split = (size_t)data[0] * 64 + 1;
			flip = mode & 4 ? ((size_t)data[1] << 8 | data[2]) : (size_t)-1;
			data += 3;
			size -= 3;
		}
		sup_tx_init(&peer, key_in, SUP_DIR_D2S);
		for (size_t off = 0; off < size; off += taken) {
			size_t k = size - off < split ? size - off : split;
			int rl = sup_seal(&peer, data + off, k, &taken, out, sizeof(out));

			if (rl < 0)
				fail("sealing failed");
			if (framed) {
				frame_put32(wire + n, (uint32_t)rl);
				n += 4;
			}
			memcpy(wire + n, out, (size_t)rl);
			n += (size_t)rl;
		}
		plain_len = size;
		if (!(mode & 8)) {
			int rl = sup_seal_end(&peer, out, sizeof(out));

			if (framed) {
				frame_put32(wire + n, (uint32_t)rl);
				n += 4;
			}
			memcpy(wire + n, out, (size_t)rl);
			n += (size_t)rl;
		}
		sup_tx_wipe(&peer);
		intact = !(mode & 8) && (flip == (size_t)-1 || flip >= n);
		if (flip < n)
			wire[flip] ^= 0x40;
	} else {
		memcpy(wire, data, size);
		n = size;
	}
	if (framed) { /* the link's end after the stream's: an EOF frame */
		frame_put32(wire + n, LINK_FRAME_EOF);
		n += 4;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, pp) < 0)
		fail("socketpair");
	int big = 1 << 20;

	setsockopt(sp[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sp[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(pp[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(pp[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (n && write(sp[1], wire, n) != (ssize_t)n)
		fail("the socketpair did not take the input");
	shutdown(sp[1], SHUT_WR);
	shutdown(pp[1], SHUT_WR); /* the plaintext side has nothing to send */
	fd_nonblock(sp[0]);
	fd_nonblock(pp[0]);
	sio_init(s, sp[0], NULL, framed);
	sup_tx_init(tx, key_out, SUP_DIR_S2D);
	sup_rx_init(rx, key_in, SUP_DIR_D2S);
	rc = sup_pump(pp[0], s, tx, rx, NULL, &res);
	if (rc < 0 && !res.why[0])
		fail("a failure without a reason");
	if (memchr(res.why, 0, sizeof(res.why)) == NULL)
		fail("an unterminated reason");
	close(pp[0]);
	for (ssize_t r;
	     gotn < sizeof(got) && (r = read(pp[1], got + gotn, sizeof(got) - gotn)) > 0;)
		gotn += (size_t)r;
	if (gotn > res.down)
		fail("more plaintext out than the pump counted");
	if (intact) {
		if (rc != 0)
			fail("an intact stream failed");
		if (gotn != plain_len || memcmp(got, data, plain_len))
			fail("an intact stream's plaintext changed");
	}
	if (seal && !intact && flip < n && rc == 0 && !(mode & 8)) {
		/* a flipped byte may only pass where it changes nothing the pump reads: the
		 * EOF frame after the end (framed), else never */
		if (!framed || flip < n - 4)
			fail("a changed record was accepted");
	}
	if (rc == 0 && seal && (mode & 8))
		fail("a stream without its end record ended cleanly");
	close(pp[1]);
	close(sp[0]);
	close(sp[1]);
	sup_tx_wipe(tx);
	sup_rx_wipe(rx);
out:
	free(tx);
	free(rx);
	free(s);
	return 0;
}

// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzzes common/support.c, the support tunnels' end-to-end layer, where the
 * bytes come through the edge or from a command line. The first byte picks:
 *   0  the device's handshake: the rest fed in pieces the second byte sizes
 *   1  the record opener with a fixed key: the rest fed in pieces
 *   2  a PSK text, 3  an --allow list, 4  an auth_key and auth_hash pair
 *   5  plaintext: sealed in records the second byte sizes, then opened
 * Checks: bytes taken never exceed those given; a handshake message is taken
 * whole (nothing past it); the PSK is asked for only with a valid session id
 * and a service index below 8; an error is one printable line and stays; the
 * same verdict when fed in one piece; every record opened re-seals (same key,
 * same counter) to exactly the bytes it came from, with 1..16367 data bytes;
 * an accepted PSK or list formats and reads back the same; what is sealed
 * opens to the same bytes.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fixed_psk[SUP_PSK_LEN] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};
/* the record key of the seeds in corpus/support/ */
static const uint8_t rec_key[32] = {
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
};

static void check_line(const char *s)
{
	if (!s || !*s || strlen(s) >= SUP_ERR_MAX)
		abort();
	for (; *s; s++)
		if (*s < 0x20 || *s >= 0x7f)
			abort();
}

/* The device's side over in (n bytes) in pieces of piece; the last result and its reason. */
static enum sup_hs_res device(const uint8_t *in, size_t n, size_t piece, char *why, size_t *taken)
{
	static struct sup_hs hs;
	static const uint8_t zero[32];
	size_t off = 0, used, out;
	enum sup_hs_res r = SUP_HS_MORE;

	sup_hs_device_fixed(&hs, zero, fixed_psk);
	while (off < n) {
		size_t k = n - off < piece ? n - off : piece;

		r = sup_hs_feed(&hs, in + off, k, &used);
		if (used > k)
			abort();
		off += used;
		if (r == SUP_HS_PSK) {
			if (!sup_id_valid(hs.session) || hs.service >= SUP_SERVICES_MAX ||
			    off != SUP1_LEN || memcmp(in, "NVS1", 4))
				abort();
			if (sup_hs_psk(&hs, fixed_psk) || sup_hs_psk(&hs, fixed_psk) != -1)
				abort();
			sup_hs_out(&hs, &out);
			if (out != SUP2_LEN)
				abort();
			sup_hs_sent(&hs, out);
			continue;
		}
		if (r == SUP_HS_ERR) {
			check_line(hs.err);
			if (sup_hs_feed(&hs, in, n, &used) != SUP_HS_ERR || used)
				abort();
			break;
		}
		if (r == SUP_HS_DONE) /* tag_s forged: cannot be */
			abort();
		if (used != k)
			abort();
	}
	if (r == SUP_HS_MORE)
		check_line(sup_hs_eof(&hs));
	snprintf(why, SUP_ERR_MAX, "%s", r == SUP_HS_ERR ? hs.err : "");
	*taken = off;
	sup_hs_wipe(&hs);
	return r;
}

/* Opens in (n bytes) in pieces; every record re-sealed must give its own bytes. */
static enum sup_rec_res opener(const uint8_t *in, size_t n, size_t piece, uint64_t *bytes,
			       uint64_t *records)
{
	static struct sup_rx rx;
	static uint8_t again[SUP_REC_WIRE_MAX];
	struct sup_tx tx;
	size_t off = 0, start = 0, used, len, taken;
	const uint8_t *d;
	enum sup_rec_res r = SUP_REC_MORE;

	sup_rx_init(&rx, rec_key, SUP_DIR_S2D);
	sup_tx_init(&tx, rec_key, SUP_DIR_S2D);
	while (off < n) {
		size_t k = n - off < piece ? n - off : piece;
		int w;

		r = sup_open(&rx, in + off, k, &used, &d, &len);
		if (used > k)
			abort();
		off += used;
		if (r == SUP_REC_MORE) {
			if (used != k)
				abort();
			continue;
		}
		if (r == SUP_REC_ERR) {
			check_line(rx.err);
			if (sup_open(&rx, in, n, &used, &d, &len) != SUP_REC_ERR || used)
				abort();
			break;
		}
		if (r == SUP_REC_DATA) {
			if (len < 1 || len > SUP_REC_DATA_MAX)
				abort();
			w = sup_seal(&tx, d, len, &taken, again, sizeof(again));
			if (taken != len)
				abort();
		} else {
			w = sup_seal_end(&tx, again, sizeof(again));
		}
		if (w < 0 || (size_t)w != off - start || memcmp(again, in + start, off - start))
			abort();
		start = off;
		if (r == SUP_REC_END && off < n) {
			/* nothing may follow the end */
			if (sup_open(&rx, in + off, n - off, &used, &d, &len) != SUP_REC_ERR)
				abort();
			check_line(rx.err);
			r = SUP_REC_ERR;
			break;
		}
	}
	if (r != SUP_REC_ERR && (sup_rx_eof(&rx) == NULL) != (r == SUP_REC_END))
		abort();
	*bytes = rx.bytes;
	*records = rx.seq;
	if (rx.seq != tx.seq || rx.bytes != tx.bytes)
		abort();
	sup_rx_wipe(&rx);
	sup_tx_wipe(&tx);
	return r;
}

static void text_of(const uint8_t *data, size_t size, char *out, size_t outlen)
{
	size_t n = size < outlen - 1 ? size : outlen - 1;

	memcpy(out, data, n);
	out[n] = 0;
}

static void psk_text(const uint8_t *data, size_t size)
{
	char s[SUP_PSK_IN_MAX + 8], err[SUP_ERR_MAX], f[SUP_PSK_STR];
	uint8_t psk[SUP_PSK_LEN], back[SUP_PSK_LEN];

	text_of(data, size, s, sizeof(s));
	memset(psk, 0x5a, sizeof(psk));
	if (sup_psk_parse(s, psk, err, sizeof(err))) {
		check_line(err);
		for (size_t i = 0; i < sizeof(psk); i++)
			if (psk[i] != 0x5a)
				abort();
		return;
	}
	sup_psk_format(psk, f);
	if (strlen(f) != SUP_PSK_STR - 1 || sup_psk_parse(f, back, err, sizeof(err)) ||
	    memcmp(psk, back, sizeof(psk)))
		abort();
}

static void services(const uint8_t *data, size_t size)
{
	static char s[SUP_ALLOW_MAX + 8], f[SUP_ALLOW_MAX + 8], f2[SUP_ALLOW_MAX + 8];
	static struct sup_services l, l2;
	char err[SUP_ERR_MAX];

	text_of(data, size, s, sizeof(s));
	if (sup_services_parse(s, &l, err, sizeof(err))) {
		check_line(err);
		return;
	}
	if (l.n < 1 || l.n > SUP_SERVICES_MAX)
		abort();
	for (unsigned i = 0; i < l.n; i++)
		if (!sup_service_name_valid(l.s[i].name) || !l.s[i].port || !l.s[i].host[0] ||
		    sup_services_find(&l, l.s[i].name) != (int)i)
			abort();
	if (sup_services_format(&l, f, sizeof(f)) || sup_services_parse(f, &l2, err, sizeof(err)) ||
	    sup_services_format(&l2, f2, sizeof(f2)) || strcmp(f, f2) || l2.n != l.n)
		abort();
	for (unsigned i = 0; i < l.n; i++)
		if (strcmp(l.s[i].name, l2.s[i].name) || strcmp(l.s[i].host, l2.s[i].host) ||
		    l.s[i].port != l2.s[i].port || l.s[i].v6 != l2.s[i].v6)
			abort();
}

static void auth(const uint8_t *data, size_t size)
{
	char s[160], h[SUP_HEX_STR], *nl;

	text_of(data, size, s, sizeof(s));
	nl = strchr(s, '\n');
	if (!nl)
		return;
	*nl = 0;
	if (sup_auth_check(s, nl + 1)) {
		if (!sup_hex_valid(s) || !sup_hex_valid(nl + 1) || sup_auth_hash(s, h) ||
		    strcmp(h, nl + 1))
			abort();
	}
	if (sup_auth_hash(s, h) == 0 && (!sup_hex_valid(h) || !sup_auth_check(s, h)))
		abort();
}

static void seal_open(const uint8_t *in, size_t n, size_t piece)
{
	static uint8_t wire[4096 * (1 + SUP_REC_HDR + 17) + 64], out[4096];
	static struct sup_rx rx;
	struct sup_tx tx;
	size_t off = 0, wn = 0, on = 0, used, len, taken;
	const uint8_t *d;
	enum sup_rec_res r;
	int w;

	sup_tx_init(&tx, rec_key, SUP_DIR_D2S);
	sup_rx_init(&rx, rec_key, SUP_DIR_D2S);
	while (off < n) {
		size_t k = n - off < piece ? n - off : piece;

		w = sup_seal(&tx, in + off, k, &taken, wire + wn, sizeof(wire) - wn);
		if (w < 0 || taken != k || (size_t)w != k + SUP_REC_HDR + 17)
			abort();
		off += taken;
		wn += (size_t)w;
	}
	w = sup_seal_end(&tx, wire + wn, sizeof(wire) - wn);
	if (w != SUP_REC_HDR + 17)
		abort();
	wn += (size_t)w;
	off = 0;
	do {
		r = sup_open(&rx, wire + off, wn - off, &used, &d, &len);
		off += used;
		if (r == SUP_REC_DATA) {
			memcpy(out + on, d, len);
			on += len;
		}
	} while (r == SUP_REC_DATA);
	if (r != SUP_REC_END || off != wn || on != n || (n && memcmp(out, in, n)))
		abort();
	sup_tx_wipe(&tx);
	sup_rx_wipe(&rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why1[SUP_ERR_MAX], why2[SUP_ERR_MAX];
	uint64_t b1, b2, r1, r2;
	size_t piece, t1, t2;
	enum sup_hs_res res;

	if (size < 2)
		return 0;
	piece = 1 + data[1] % 128;
	switch (data[0] % 6) {
	case 0:
		/* in pieces and in one: the same verdict */
		res = device(data + 2, size - 2, piece, why1, &t1);
		if (res != device(data + 2, size - 2, size, why2, &t2) || strcmp(why1, why2) ||
		    (res != SUP_HS_ERR && t1 != t2))
			abort();
		break;
	case 1:
		if (opener(data + 2, size - 2, piece, &b1, &r1) !=
			opener(data + 2, size - 2, size, &b2, &r2) ||
		    b1 != b2 || r1 != r2)
			abort();
		break;
	case 2:
		psk_text(data + 1, size - 1);
		break;
	case 3:
		services(data + 1, size - 1);
		break;
	case 4:
		auth(data + 1, size - 1);
		break;
	case 5:
		if (size - 2 <= 4096)
			seal_open(data + 2, size - 2, piece);
		break;
	}
	return 0;
}

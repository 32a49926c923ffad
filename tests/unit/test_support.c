// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of common/support.c, the support tunnels' end-to-end layer:
 * a known-answer test of the key schedule and the records (the answers come
 * from tests/unit/support_kat.py, an independent Python implementation);
 * whole handshakes of both roles fed in one piece and byte by byte; a wrong
 * PSK on either side; every byte of SUP1, SUP2 and tag_s changed; records of
 * 1 byte to the largest, many of them in random pieces, a flipped bit, a
 * replay, a reordering, a cut stream, the half-close and the counter limit;
 * the PSK text, session ids, the --allow list and the auth hash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/curve25519.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "support.h"

static void unhex(const char *s, uint8_t *out, size_t n)
{
	assert_int_equal(strlen(s), 2 * n);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

static void assert_hex(const uint8_t *b, size_t n, const char *want)
{
	char got[2 * SUP_REC_WIRE_MAX + 1];

	for (size_t i = 0; i < n; i++)
		snprintf(got + 2 * i, 3, "%02x", b[i]);
	got[2 * n] = 0;
	assert_string_equal(got, want);
}

/* A one-line, printable reason. */
static void assert_line(const char *s)
{
	assert_non_null(s);
	assert_true(strlen(s) > 0);
	for (const char *p = s; *p; p++)
		assert_true(*p >= 0x20 && *p < 0x7f);
}

/* ---------- the known answers ---------- */

/* tests/unit/support_kat.py's output */
#define KAT_SUP1                                                                                   \
	"4e5653317375702d6b33783971326d3761620111111111111111111111111111111111111111111111111111" \
	"111111111111118520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
#define KAT_SUP2                                                                                   \
	"4e5653322222222222222222222222222222222222222222222222222222222222222222de9edb7d7b7dc1b4" \
	"d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f9154939d059e276ea3ad307b2e98a36b4bd9d408" \
	"90a2efe03779bb6e3b7727a8"
#define KAT_TAG_S     "80a0fb279a77023bface5a07e4f77ed297fc9eab57f14b9ddd14e415687be2fd"
#define KAT_TH	      "08765f2ebe0422973871bbfc5f2d8b58fc4b1900bd4d5e617cadf9dc7aa5e6fd"
#define KAT_K_S2D     "29615e987043ac8422f3cb81f9b528be2157370ab9b2ba4d986864fe7c912aa8"
#define KAT_K_D2S     "7f51c02b2911fda1a33b68ee8a5617f7e2b37e4a77f9f12b5866e235c0077b7c"
#define KAT_REC_HELLO "00165535a604230b49023a0ae21185afe1e4aaaa38405c89"
#define KAT_REC_END   "0011c9c62fe03e6505d30830848da9d250a8a8"
#define KAT_REC_D2S   "001c47e37269a70978c5ece39aba50caada31e47b03b0eb701343da5be1c"
#define KAT_AUTH_KEY  "b8229208c6aa6c1bcdf63553a00627c313f3b5e830609fa68f06006e9e8b1858"
#define KAT_AUTH_HASH "6c6d711af0e7c96f8762f597eaa353b8f415c067972401261b5f997307d506d2"
#define KAT_PSK_TEXT  "AAAQ-EAYE-AUDA-OCAJ-BIFQ-YDIO-B4IB-CEQT-CQKR-MFYY-DENB-WHA5-DYPQ"
#define KAT_ID	      "sup-k3x9q2m7ab"
/* RFC 7748 section 6.1: Alice's private key (the supporter), Bob's (the device) */
#define KAT_PRIV_S "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
#define KAT_PRIV_D "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"

struct kat {
	uint8_t psk[32], nonce_s[32], nonce_d[32], priv_s[32], priv_d[32];
};

static void kat_inputs(struct kat *k)
{
	for (int i = 0; i < 32; i++)
		k->psk[i] = (uint8_t)i;
	memset(k->nonce_s, 0x11, 32);
	memset(k->nonce_d, 0x22, 32);
	unhex(KAT_PRIV_S, k->priv_s, 32);
	unhex(KAT_PRIV_D, k->priv_d, 32);
}

static void test_kat(void **state)
{
	struct kat k;
	struct sup_hs s, d;
	struct sup_tx stx, dtx;
	static struct sup_rx srx, drx;
	uint8_t rec[SUP_REC_WIRE_MAX];
	const uint8_t *out, *data;
	size_t n, used, len, taken;
	char text[SUP_PSK_STR], hexs[SUP_HEX_STR];
	int r;

	(void)state;
	kat_inputs(&k);
	assert_int_equal(sup_hs_supporter_fixed(&s, k.psk, KAT_ID, 1, k.nonce_s, k.priv_s), 0);
	sup_hs_device_fixed(&d, k.nonce_d, k.priv_d);
	out = sup_hs_out(&s, &n);
	assert_hex(out, n, KAT_SUP1);
	assert_int_equal(sup_hs_feed(&d, out, n, &used), SUP_HS_PSK);
	assert_int_equal(used, n);
	sup_hs_sent(&s, n);
	assert_string_equal(d.session, KAT_ID);
	assert_int_equal(d.service, 1);
	assert_int_equal(sup_hs_psk(&d, k.psk), 0);
	assert_hex(d.th, 32, KAT_TH);
	assert_hex(d.keys.k_s2d, 32, KAT_K_S2D);
	assert_hex(d.keys.k_d2s, 32, KAT_K_D2S);
	out = sup_hs_out(&d, &n);
	assert_hex(out, n, KAT_SUP2);
	assert_int_equal(sup_hs_feed(&s, out, n, &used), SUP_HS_DONE);
	sup_hs_sent(&d, n);
	assert_hex(s.th, 32, KAT_TH);
	assert_hex(s.keys.k_s2d, 32, KAT_K_S2D);
	assert_hex(s.keys.k_d2s, 32, KAT_K_D2S);
	out = sup_hs_out(&s, &n);
	assert_hex(out, n, KAT_TAG_S);
	assert_int_equal(sup_hs_feed(&d, out, n, &used), SUP_HS_DONE);
	assert_int_equal(used, 32);
	sup_hs_sent(&s, n);

	/* the key schedule alone gives the same */
	{
		struct sup_keys kk;
		uint8_t dh[32], th[32];

		unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", dh, 32);
		unhex(KAT_TH, th, 32);
		assert_int_equal(sup_kdf(k.psk, dh, th, &kk), 0);
		assert_hex(kk.k_s2d, 32, KAT_K_S2D);
		assert_hex(kk.k_d2s, 32, KAT_K_D2S);
	}

	assert_int_equal(sup_hs_finish(&s, &stx, &srx), 0);
	assert_int_equal(sup_hs_finish(&d, &dtx, &drx), 0);
	assert_int_equal(sup_hs_finish(&d, &dtx, &drx), -1); /* once */
	/* the secrets are gone */
	for (size_t i = 0; i < sizeof(s.keys); i++)
		assert_int_equal(((uint8_t *)&s.keys)[i] | ((uint8_t *)&d.keys)[i], 0);
	for (size_t i = 0; i < 32; i++)
		assert_int_equal(s.psk[i] | d.psk[i] | s.priv[i] | d.priv[i], 0);

	r = sup_seal(&stx, "hello", 5, &taken, rec, sizeof(rec));
	assert_int_equal(taken, 5);
	assert_hex(rec, (size_t)r, KAT_REC_HELLO);
	assert_int_equal(sup_open(&drx, rec, (size_t)r, &used, &data, &len), SUP_REC_DATA);
	assert_int_equal(len, 5);
	assert_memory_equal(data, "hello", 5);
	r = sup_seal_end(&stx, rec, sizeof(rec));
	assert_hex(rec, (size_t)r, KAT_REC_END);
	assert_int_equal(sup_open(&drx, rec, (size_t)r, &used, &data, &len), SUP_REC_END);
	assert_null(sup_rx_eof(&drx));
	r = sup_seal(&dtx, "SSH-2.0-x\r\n", 11, &taken, rec, sizeof(rec));
	assert_hex(rec, (size_t)r, KAT_REC_D2S);
	assert_int_equal(sup_open(&srx, rec, (size_t)r, &used, &data, &len), SUP_REC_DATA);
	assert_memory_equal(data, "SSH-2.0-x\r\n", 11);

	assert_int_equal(sup_auth_key(k.psk, hexs), 0);
	assert_string_equal(hexs, KAT_AUTH_KEY);
	assert_int_equal(sup_auth_hash(hexs, hexs), 0);
	assert_string_equal(hexs, KAT_AUTH_HASH);
	sup_psk_format(k.psk, text);
	assert_string_equal(text, KAT_PSK_TEXT);
	sup_tx_wipe(&stx);
	sup_tx_wipe(&dtx);
	sup_rx_wipe(&srx);
	sup_rx_wipe(&drx);
}

/* ---------- handshakes ---------- */

struct run {
	enum sup_hs_res rs, rd;
	bool psk_asked;
	uint8_t sup1[SUP1_LEN], sup2[SUP2_LEN], tag_s[SUP_TAG_LEN];
	/* bytes of each message to change on the way (index, xor), -1: none */
	int flip1, flip2, flip3;
	uint8_t x;
};

/* Moves what from has to send into to's feed, chunk bytes at a time. */
static enum sup_hs_res pump(struct sup_hs *from, struct sup_hs *to, size_t chunk, uint8_t *copy,
			    int flip, uint8_t x, enum sup_hs_res last)
{
	uint8_t buf[SUP2_LEN];
	const uint8_t *o;
	size_t n, off = 0, used;
	enum sup_hs_res r = last;

	o = sup_hs_out(from, &n);
	assert_true(n <= sizeof(buf));
	memcpy(buf, o, n);
	if (copy)
		memcpy(copy, buf, n);
	if (flip >= 0 && (size_t)flip < n)
		buf[flip] ^= x;
	sup_hs_sent(from, n);
	while (off < n) {
		size_t k = n - off < chunk ? n - off : chunk;

		r = sup_hs_feed(to, buf + off, k, &used);
		assert_true(used <= k);
		if (r == SUP_HS_ERR) {
			assert_line(to->err);
			/* an error stays */
			assert_int_equal(sup_hs_feed(to, buf, n, &used), SUP_HS_ERR);
			assert_int_equal(used, 0);
			return r;
		}
		/* a message is taken whole; only the last piece may leave nothing over */
		assert_int_equal(used, k);
		off += used;
		if (off < n)
			assert_int_equal(r, SUP_HS_MORE);
	}
	return r;
}

static void handshake(struct sup_hs *s, struct sup_hs *d, const uint8_t *spsk, const uint8_t *dpsk,
		      size_t chunk, struct run *run)
{
	static const char *id = "sup-0a1b2c3d4e";

	assert_int_equal(sup_hs_supporter(s, spsk, id, 5), 0);
	sup_hs_device(d);
	run->rs = run->rd = SUP_HS_MORE;
	run->psk_asked = false;
	run->rd = pump(s, d, chunk, run->sup1, run->flip1, run->x, run->rd);
	if (run->rd != SUP_HS_PSK)
		return;
	run->psk_asked = true;
	if (run->flip1 < 0) {
		assert_string_equal(d->session, id);
		assert_int_equal(d->service, 5);
	}
	/* nothing to send before the PSK is given */
	{
		size_t n;

		sup_hs_out(d, &n);
		assert_int_equal(n, 0);
	}
	assert_int_equal(sup_hs_psk(d, dpsk), 0);
	assert_int_equal(sup_hs_psk(d, dpsk), -1); /* once */
	run->rs = pump(d, s, chunk, run->sup2, run->flip2, run->x, run->rs);
	if (run->rs != SUP_HS_DONE)
		return;
	run->rd = pump(s, d, chunk, run->tag_s, run->flip3, run->x, run->rd);
}

static void no_flips(struct run *r)
{
	memset(r, 0, sizeof(*r));
	r->flip1 = r->flip2 = r->flip3 = -1;
}

/* Records both ways after a handshake. */
static void talk(struct sup_hs *s, struct sup_hs *d)
{
	struct sup_tx stx, dtx;
	static struct sup_rx srx, drx;
	uint8_t rec[SUP_REC_WIRE_MAX];
	const uint8_t *data;
	size_t used, len, taken;
	int r;

	assert_int_equal(sup_hs_finish(s, &stx, &srx), 0);
	assert_int_equal(sup_hs_finish(d, &dtx, &drx), 0);
	r = sup_seal(&stx, "ping", 4, &taken, rec, sizeof(rec));
	assert_true(r > 0);
	assert_int_equal(sup_open(&drx, rec, (size_t)r, &used, &data, &len), SUP_REC_DATA);
	assert_memory_equal(data, "ping", 4);
	r = sup_seal(&dtx, "pong", 4, &taken, rec, sizeof(rec));
	assert_int_equal(sup_open(&srx, rec, (size_t)r, &used, &data, &len), SUP_REC_DATA);
	assert_memory_equal(data, "pong", 4);
	/* a record meant for the other direction does not open here (other key, other AD) */
	r = sup_seal(&stx, "ping", 4, &taken, rec, sizeof(rec));
	assert_int_equal(sup_open(&srx, rec, (size_t)r, &used, &data, &len), SUP_REC_ERR);
	sup_tx_wipe(&stx);
	sup_tx_wipe(&dtx);
	sup_rx_wipe(&srx);
	sup_rx_wipe(&drx);
}

static void test_handshake(void **state)
{
	static const size_t chunks[] = {1, 2, 3, 7, 32, 83, 100, 1000};
	uint8_t psk[32];
	struct sup_hs s, d;
	struct run run;

	(void)state;
	sup_psk_make(psk);
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		no_flips(&run);
		handshake(&s, &d, psk, psk, chunks[i], &run);
		assert_int_equal(run.rs, SUP_HS_DONE);
		assert_int_equal(run.rd, SUP_HS_DONE);
		assert_memory_equal(run.sup1, "NVS1sup-0a1b2c3d4e\x05", 19);
		assert_memory_equal(run.sup2, "NVS2", 4);
		/* nothing left to send, a feed after done takes nothing */
		{
			size_t n, used;

			sup_hs_out(&s, &n);
			assert_int_equal(n, 0);
			assert_int_equal(sup_hs_feed(&d, (const uint8_t *)"x", 1, &used),
					 SUP_HS_DONE);
			assert_int_equal(used, 0);
			assert_null(sup_hs_eof(&d));
		}
		talk(&s, &d);
	}
}

/* The device takes SUP1 and no byte more; the supporter's tag_s and first record in one piece. */
static void test_handshake_pipelined(void **state)
{
	uint8_t psk[32], buf[SUP_TAG_LEN + SUP_REC_WIRE_MAX];
	struct sup_hs s, d;
	struct sup_tx stx, dtx;
	static struct sup_rx srx, drx;
	const uint8_t *o, *data;
	size_t n, used, len, taken, off;
	int r;

	(void)state;
	sup_psk_make(psk);
	assert_int_equal(sup_hs_supporter(&s, psk, "sup-zzzzzzzzzz", 0), 0);
	sup_hs_device(&d);
	o = sup_hs_out(&s, &n);
	memcpy(buf, o, n);
	memcpy(buf + n, "NVS1", 4);
	assert_int_equal(sup_hs_feed(&d, buf, n + 4, &used), SUP_HS_PSK);
	assert_int_equal(used, SUP1_LEN);
	sup_hs_sent(&s, n);
	assert_int_equal(sup_hs_psk(&d, psk), 0);
	o = sup_hs_out(&d, &n);
	assert_int_equal(sup_hs_feed(&s, o, n, &used), SUP_HS_DONE);
	sup_hs_sent(&d, n);
	/* finish before sending: tag_s is still there to send */
	assert_int_equal(sup_hs_finish(&s, &stx, &srx), 0);
	o = sup_hs_out(&s, &n);
	assert_int_equal(n, SUP_TAG_LEN);
	memcpy(buf, o, n);
	sup_hs_sent(&s, n);
	r = sup_seal(&stx, "first", 5, &taken, buf + n, sizeof(buf) - n);
	off = 0;
	assert_int_equal(sup_hs_feed(&d, buf, n + (size_t)r, &used), SUP_HS_DONE);
	assert_int_equal(used, SUP_TAG_LEN);
	off += used;
	assert_int_equal(sup_hs_finish(&d, &dtx, &drx), 0);
	assert_int_equal(sup_open(&drx, buf + off, n + (size_t)r - off, &used, &data, &len),
			 SUP_REC_DATA);
	assert_memory_equal(data, "first", 5);
	sup_tx_wipe(&stx);
	sup_tx_wipe(&dtx);
	sup_rx_wipe(&srx);
	sup_rx_wipe(&drx);
}

static void test_wrong_psk(void **state)
{
	uint8_t a[32], b[32];
	struct sup_hs s, d;
	struct run run;

	(void)state;
	sup_psk_make(a);
	memcpy(b, a, 32);
	b[31] ^= 1;
	/* the supporter sees it in SUP2's tag_d and sends nothing more */
	for (size_t chunk = 1; chunk <= 100; chunk += 99) {
		no_flips(&run);
		handshake(&s, &d, a, b, chunk, &run);
		assert_true(run.psk_asked);
		assert_int_equal(run.rs, SUP_HS_ERR);
		assert_string_equal(s.err,
				    "wrong pre-shared key for support session sup-0a1b2c3d4e");
		{
			size_t n;

			sup_hs_out(&s, &n);
			assert_int_equal(n, 0);
		}
		/* the device then sees the stream close before tag_s */
		assert_string_equal(sup_hs_eof(&d),
				    "the supporter closed the stream before confirming the key (a "
				    "wrong pre-shared key on its side?)");
		assert_int_equal(sup_hs_feed(&d, (const uint8_t *)"x", 1, &(size_t){0}),
				 SUP_HS_ERR);
	}

	/*
	 * A supporter that goes on anyway (its tag_s made with its own PSK over
	 * this transcript, as sup_kdf derives it): the device refuses it.
	 */
	{
		struct kat k;
		struct sup_keys kk;
		uint8_t dh[32], pub_d[32], th[32], td[64], tag_s[32];
		const uint8_t *o;
		size_t n, used;
		unsigned tl = 32;
		SHA256_CTX c;

		kat_inputs(&k);
		assert_int_equal(sup_hs_supporter_fixed(&s, a, KAT_ID, 2, k.nonce_s, k.priv_s), 0);
		sup_hs_device(&d);
		o = sup_hs_out(&s, &n);
		assert_int_equal(sup_hs_feed(&d, o, n, &used), SUP_HS_PSK);
		assert_int_equal(sup_hs_psk(&d, b), 0);
		o = sup_hs_out(&d, &n);
		assert_int_equal(n, SUP2_LEN);
		memcpy(pub_d, o + 36, 32);
		assert_int_equal(X25519(dh, k.priv_s, pub_d), 1);
		SHA256_Init(&c);
		SHA256_Update(&c, s.sup1, SUP1_LEN);
		SHA256_Update(&c, o + 4, 64);
		SHA256_Final(th, &c);
		assert_int_equal(sup_kdf(a, dh, th, &kk), 0);
		memcpy(td, th, 32);
		memcpy(td + 32, o + 68, 32);
		assert_non_null(HMAC(EVP_sha256(), kk.conf_s, 32, td, 64, tag_s, &tl));
		assert_int_equal(sup_hs_feed(&d, tag_s, 32, &used), SUP_HS_ERR);
		assert_string_equal(d.err, "wrong pre-shared key for support session " KAT_ID);
		/* and the right PSK's tag over the same transcript is taken (the check above is
		 * real) */
		sup_hs_device_fixed(&d, k.nonce_d, k.priv_d);
		o = sup_hs_out(&s, &n);
		assert_int_equal(sup_hs_feed(&d, o, n, &used), SUP_HS_PSK);
		assert_int_equal(sup_hs_psk(&d, a), 0);
		o = sup_hs_out(&d, &n);
		assert_int_equal(X25519(dh, k.priv_s, o + 36), 1);
		SHA256_Init(&c);
		SHA256_Update(&c, s.sup1, SUP1_LEN);
		SHA256_Update(&c, o + 4, 64);
		SHA256_Final(th, &c);
		assert_int_equal(sup_kdf(a, dh, th, &kk), 0);
		memcpy(td, th, 32);
		memcpy(td + 32, o + 68, 32);
		assert_non_null(HMAC(EVP_sha256(), kk.conf_s, 32, td, 64, tag_s, &tl));
		assert_int_equal(sup_hs_feed(&d, tag_s, 32, &used), SUP_HS_DONE);
		sup_hs_wipe(&s);
		sup_hs_wipe(&d);
	}
}

/* Every byte of every message changed on the way: never both ends done. */
static void test_tampered(void **state)
{
	static const uint8_t xs[] = {0x01, 0x80, 0xff};
	uint8_t psk[32];
	struct sup_hs s, d;
	struct run run;

	(void)state;
	sup_psk_make(psk);
	for (size_t xi = 0; xi < sizeof(xs); xi++) {
		for (int i = 0; i < SUP1_LEN; i++) {
			no_flips(&run);
			run.flip1 = i;
			run.x = xs[xi];
			handshake(&s, &d, psk, psk, i % 2 ? 1 : 100, &run);
			if (i < 8) /* the magic, "sup-" */
				assert_int_equal(run.rd, SUP_HS_ERR);
			if (run.rd == SUP_HS_ERR) {
				/* or an id or index that is no longer one */
				assert_true(i <= 18);
				assert_memory_equal(d.err, "bad message", 11);
				continue;
			}
			/* the rest reach the device, whose tag_d the supporter refuses */
			assert_true(run.psk_asked);
			assert_int_equal(run.rs, SUP_HS_ERR);
			assert_string_equal(
			    s.err, "wrong pre-shared key for support session sup-0a1b2c3d4e");
		}
		for (int i = 0; i < SUP2_LEN; i++) {
			no_flips(&run);
			run.flip2 = i;
			run.x = xs[xi];
			handshake(&s, &d, psk, psk, 100, &run);
			assert_int_equal(run.rs, SUP_HS_ERR);
			if (i < 4)
				assert_string_equal(s.err, "bad message from the device: not a "
							   "support handshake (no NVS2)");
			else
				assert_string_equal(
				    s.err,
				    "wrong pre-shared key for support session sup-0a1b2c3d4e");
		}
		for (int i = 0; i < SUP_TAG_LEN; i++) {
			no_flips(&run);
			run.flip3 = i;
			run.x = xs[xi];
			handshake(&s, &d, psk, psk, 1, &run);
			assert_int_equal(run.rs, SUP_HS_DONE);
			assert_int_equal(run.rd, SUP_HS_ERR);
			assert_string_equal(
			    d.err, "wrong pre-shared key for support session sup-0a1b2c3d4e");
		}
	}
}

static void test_hs_edges(void **state)
{
	uint8_t psk[32] = {0}, low[32] = {0}, buf[SUP2_LEN];
	struct sup_hs s, d;
	struct sup_tx tx;
	static struct sup_rx rx;
	const uint8_t *o;
	size_t n, used;

	(void)state;
	/* bad arguments */
	assert_int_equal(sup_hs_supporter(&s, psk, "sup-ABCDEFGHIJ", 0), -1);
	assert_line(s.err);
	assert_int_equal(sup_hs_supporter(&s, psk, "sup-abcdefghij", 8), -1);
	assert_line(s.err);
	assert_int_equal(sup_hs_finish(&s, &tx, &rx), -1);
	/* out of order calls */
	sup_hs_device(&d);
	assert_int_equal(sup_hs_psk(&d, psk), -1);
	assert_int_equal(sup_hs_finish(&d, &tx, &rx), -1);
	assert_int_equal(sup_hs_supporter(&s, psk, "sup-abcdefghij", 7), 0);
	assert_int_equal(sup_hs_psk(&s, psk), -1);
	/* a verdict on the magic as soon as it is there */
	sup_hs_device(&d);
	assert_int_equal(sup_hs_feed(&d, (const uint8_t *)"NVS", 3, &used), SUP_HS_MORE);
	assert_int_equal(sup_hs_feed(&d, (const uint8_t *)"2", 1, &used), SUP_HS_ERR);
	assert_string_equal(d.err, "bad message: not a support handshake (no NVS1)");
	sup_hs_device(&d);
	assert_int_equal(sup_hs_feed(&d, (const uint8_t *)"GET / HTTP/1.1\r\n", 16, &used),
			 SUP_HS_ERR);
	/* a service index past 7 in SUP1 */
	o = sup_hs_out(&s, &n);
	memcpy(buf, o, n);
	buf[18] = 8;
	sup_hs_device(&d);
	assert_int_equal(sup_hs_feed(&d, buf, n, &used), SUP_HS_ERR);
	assert_string_equal(d.err, "bad message: service index 8 in SUP1 (at most 7)");
	/* a low-order X25519 key (zero) from either side */
	memcpy(buf, o, n);
	memcpy(buf + 51, low, 32);
	sup_hs_device(&d);
	assert_int_equal(sup_hs_feed(&d, buf, n, &used), SUP_HS_ERR);
	assert_string_equal(d.err, "bad message: the supporter's X25519 key is of low order");
	sup_hs_device(&d);
	assert_int_equal(sup_hs_feed(&d, o, n, &used), SUP_HS_PSK);
	/* a feed while the PSK is awaited takes nothing */
	assert_int_equal(sup_hs_feed(&d, o, n, &used), SUP_HS_PSK);
	assert_int_equal(used, 0);
	assert_int_equal(sup_hs_psk(&d, psk), 0);
	o = sup_hs_out(&d, &n);
	memcpy(buf, o, n);
	memcpy(buf + 36, low, 32);
	assert_int_equal(sup_hs_feed(&s, buf, n, &used), SUP_HS_ERR);
	assert_string_equal(s.err, "bad message from the device: its X25519 key is of low order");
	/* closes in each state say what happened */
	assert_int_equal(sup_hs_supporter(&s, psk, "sup-abcdefghij", 7), 0);
	assert_string_equal(sup_hs_eof(&s), "the device closed the stream without answering the "
					    "handshake (support session sup-abcdefghij)");
	assert_int_equal(sup_hs_supporter(&s, psk, "sup-abcdefghij", 7), 0);
	assert_int_equal(sup_hs_feed(&s, (const uint8_t *)"NVS2", 4, &used), SUP_HS_MORE);
	assert_string_equal(sup_hs_eof(&s),
			    "the device closed the stream in the middle of its handshake");
	sup_hs_device(&d);
	assert_string_equal(sup_hs_eof(&d),
			    "the supporter closed the stream before its handshake was complete");
	/* sent in pieces */
	assert_int_equal(sup_hs_supporter(&s, psk, "sup-abcdefghij", 7), 0);
	o = sup_hs_out(&s, &n);
	assert_int_equal(n, SUP1_LEN);
	sup_hs_sent(&s, 10);
	assert_ptr_equal(sup_hs_out(&s, &n), o + 10);
	assert_int_equal(n, SUP1_LEN - 10);
	sup_hs_sent(&s, 1000);
	sup_hs_out(&s, &n);
	assert_int_equal(n, 0);
	sup_hs_wipe(&s);
	for (size_t i = 0; i < sizeof(s); i++)
		assert_int_equal(((uint8_t *)&s)[i], 0);
}

/* ---------- records ---------- */

struct pair {
	uint8_t key[32];
	struct sup_tx tx;
	struct sup_rx rx;
};

static struct pair *pair_new(void)
{
	struct pair *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	RAND_bytes(p->key, sizeof(p->key));
	sup_tx_init(&p->tx, p->key, SUP_DIR_S2D);
	sup_rx_init(&p->rx, p->key, SUP_DIR_S2D);
	return p;
}

static void pair_free(struct pair *p)
{
	sup_tx_wipe(&p->tx);
	sup_rx_wipe(&p->rx);
	free(p);
}

/* Opens a whole stream fed in random pieces; its data into out. The last result. */
static enum sup_rec_res open_all(struct sup_rx *rx, const uint8_t *in, size_t n, uint8_t *out,
				 size_t *outlen, unsigned *records)
{
	size_t off = 0, used, len;
	const uint8_t *data;
	enum sup_rec_res r = SUP_REC_MORE;

	*outlen = 0;
	*records = 0;
	while (off < n) {
		size_t k = 1 + (size_t)rand() % 40000;

		if (k > n - off)
			k = n - off;
		r = sup_open(rx, in + off, k, &used, &data, &len);
		assert_true(used <= k);
		if (r == SUP_REC_ERR)
			return r;
		if (r == SUP_REC_DATA) {
			assert_true(len >= 1 && len <= SUP_REC_DATA_MAX);
			memcpy(out + *outlen, data, len);
			*outlen += len;
			++*records;
		} else if (r == SUP_REC_MORE) {
			assert_int_equal(used, k);
		}
		off += used;
	}
	return r;
}

static void test_records(void **state)
{
	static const size_t sizes[] = {
	    1, 2, 100, SUP_REC_DATA_MAX - 1, SUP_REC_DATA_MAX, SUP_REC_DATA_MAX + 1, 16384, 100000};
	struct pair *p = pair_new();
	uint8_t *plain = malloc(100000), *wire = malloc(200000), *got = malloc(100000);
	size_t wn, gn;
	unsigned nrec;

	(void)state;
	assert_non_null(plain);
	assert_non_null(wire);
	assert_non_null(got);
	RAND_bytes(plain, 100000);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t off = 0, taken, want = (sizes[i] + SUP_REC_DATA_MAX - 1) / SUP_REC_DATA_MAX;

		wn = 0;
		while (off < sizes[i]) {
			int r = sup_seal(&p->tx, plain + off, sizes[i] - off, &taken, wire + wn,
					 200000 - wn);

			assert_true(r >= SUP_REC_HDR + SUP_REC_CT_MIN + 1);
			assert_true(r <= SUP_REC_WIRE_MAX);
			assert_int_equal((size_t)r, SUP_REC_HDR + taken + 17);
			off += taken;
			wn += (size_t)r;
		}
		assert_int_equal(open_all(&p->rx, wire, wn, got, &gn, &nrec), SUP_REC_DATA);
		assert_int_equal(gn, sizes[i]);
		assert_int_equal(nrec, want);
		assert_memory_equal(got, plain, gn);
	}
	/* the largest record is exactly 16384 bytes of ciphertext */
	{
		size_t taken;
		int r = sup_seal(&p->tx, plain, 100000, &taken, wire, SUP_REC_WIRE_MAX);

		assert_int_equal(r, SUP_REC_WIRE_MAX);
		assert_int_equal(wire[0] << 8 | wire[1], SUP_REC_CT_MAX);
		assert_int_equal(taken, SUP_REC_DATA_MAX);
		assert_int_equal(sup_seal(&p->tx, plain, 100, &taken, wire, 100 + 18), -1);
		assert_int_equal(sup_seal(&p->tx, plain, 0, &taken, wire, SUP_REC_WIRE_MAX), -1);
	}
	/* in place: the data already after the header */
	pair_free(p);
	p = pair_new();
	{
		size_t taken, used, len;
		const uint8_t *data;
		int r;

		memcpy(wire + SUP_REC_HDR, "in place", 8);
		r = sup_seal(&p->tx, wire + SUP_REC_HDR, 8, &taken, wire, 100);
		assert_int_equal(r, SUP_REC_HDR + 8 + 17);
		assert_int_equal(sup_open(&p->rx, wire, (size_t)r, &used, &data, &len),
				 SUP_REC_DATA);
		assert_memory_equal(data, "in place", 8);
		assert_int_equal(p->tx.bytes, 8);
		assert_int_equal(p->rx.bytes, 8);
		assert_int_equal(p->rx.seq, 1);
	}
	pair_free(p);
	free(plain);
	free(wire);
	free(got);
}

/* Many records of random sizes, the stream fed in random pieces, with the end. */
static void test_many_records(void **state)
{
	struct pair *p = pair_new();
	size_t cap = 8 << 20, wn = 0, total = 0, gn;
	uint8_t *plain = malloc(cap), *wire = malloc(cap + (cap >> 4)), *got = malloc(cap);
	unsigned nrec = 0, got_rec;
	int r;

	(void)state;
	RAND_bytes(plain, cap);
	srand(1234);
	for (unsigned i = 0; i < 3000; i++) {
		size_t n = 1 + (size_t)rand() % (i % 10 ? 200 : 20000), taken;

		if (total + n > cap)
			break;
		r = sup_seal(&p->tx, plain + total, n, &taken, wire + wn, SUP_REC_WIRE_MAX);
		assert_true(r > 0);
		total += taken;
		wn += (size_t)r;
		nrec++;
	}
	r = sup_seal_end(&p->tx, wire + wn, 19);
	assert_int_equal(r, 19);
	wn += 19;
	assert_int_equal(p->tx.seq, nrec + 1);
	assert_int_equal(p->tx.bytes, total);
	assert_int_equal(open_all(&p->rx, wire, wn, got, &gn, &got_rec), SUP_REC_END);
	assert_int_equal(gn, total);
	assert_int_equal(got_rec, nrec);
	assert_memory_equal(got, plain, total);
	assert_int_equal(p->rx.bytes, total);
	assert_null(sup_rx_eof(&p->rx));
	pair_free(p);
	free(plain);
	free(wire);
	free(got);
}

static void test_record_attacks(void **state)
{
	uint8_t rec[3][64], stream[200];
	int len[3];
	size_t taken, used, dl, n0;
	const uint8_t *data;
	struct pair *p;

	(void)state;
	p = pair_new();
	len[0] = sup_seal(&p->tx, "one", 3, &taken, rec[0], 64);
	len[1] = sup_seal(&p->tx, "two", 3, &taken, rec[1], 64);
	len[2] = sup_seal_end(&p->tx, rec[2], 64);
	/* a flipped bit anywhere: the header, the ciphertext, the tag */
	for (int i = 0; i < len[0]; i++) {
		for (int bit = 0; bit < 8; bit++) {
			static struct sup_rx rx;
			uint8_t b[64];
			enum sup_rec_res r;

			sup_rx_init(&rx, p->key, SUP_DIR_S2D);
			memcpy(b, rec[0], (size_t)len[0]);
			b[i] ^= (uint8_t)(1 << bit);
			r = sup_open(&rx, b, (size_t)len[0], &used, &data, &dl);
			if (i < 2 && r == SUP_REC_MORE) /* a longer length: waits for more */
				assert_string_equal(sup_rx_eof(&rx), "the stream was cut: the peer "
								     "closed it without ending it "
								     "(in the middle of a record)");
			else
				assert_int_equal(r, SUP_REC_ERR);
			assert_line(rx.err);
			sup_rx_wipe(&rx);
		}
		/* unchanged, it opens */
		{
			static struct sup_rx rx;

			sup_rx_init(&rx, p->key, SUP_DIR_S2D);
			assert_int_equal(sup_open(&rx, rec[0], (size_t)len[0], &used, &data, &dl),
					 SUP_REC_DATA);
			sup_rx_wipe(&rx);
		}
	}
	/* replayed */
	n0 = len[0] > 0 && len[0] <= 64 ? (size_t)len[0] : 0;
	assert_int_equal(n0, 2 + 3 + 17);
	memcpy(stream, rec[0], n0);
	memcpy(stream + n0, rec[0], n0);
	assert_int_equal(sup_open(&p->rx, stream, n0 * 2, &used, &data, &dl), SUP_REC_DATA);
	assert_int_equal(used, n0);
	assert_int_equal(sup_open(&p->rx, stream + used, n0, &used, &data, &dl), SUP_REC_ERR);
	assert_string_equal(p->rx.err, "record 1 does not authenticate (altered, replayed, "
				       "reordered or from another key)");
	/* an error stays */
	assert_int_equal(sup_open(&p->rx, rec[1], (size_t)len[1], &used, &data, &dl), SUP_REC_ERR);
	assert_int_equal(used, 0);
	pair_free(p);

	/* reordered: two before one */
	p = pair_new();
	len[0] = sup_seal(&p->tx, "one", 3, &taken, rec[0], 64);
	len[1] = sup_seal(&p->tx, "two", 3, &taken, rec[1], 64);
	assert_int_equal(sup_open(&p->rx, rec[1], (size_t)len[1], &used, &data, &dl), SUP_REC_ERR);
	pair_free(p);

	/* dropped: one missing, two does not open */
	p = pair_new();
	len[0] = sup_seal(&p->tx, "one", 3, &taken, rec[0], 64);
	len[1] = sup_seal(&p->tx, "two", 3, &taken, rec[1], 64);
	len[2] = sup_seal(&p->tx, "three", 5, &taken, rec[2], 64);
	assert_int_equal(sup_open(&p->rx, rec[0], (size_t)len[0], &used, &data, &dl), SUP_REC_DATA);
	assert_int_equal(sup_open(&p->rx, rec[2], (size_t)len[2], &used, &data, &dl), SUP_REC_ERR);
	pair_free(p);

	/* a cut stream: no end record, or half a record */
	p = pair_new();
	len[0] = sup_seal(&p->tx, "one", 3, &taken, rec[0], 64);
	assert_int_equal(sup_open(&p->rx, rec[0], (size_t)len[0], &used, &data, &dl), SUP_REC_DATA);
	assert_string_equal(sup_rx_eof(&p->rx),
			    "the stream was cut: the peer closed it without ending it");
	pair_free(p);
	p = pair_new();
	len[0] = sup_seal(&p->tx, "one", 3, &taken, rec[0], 64);
	assert_int_equal(sup_open(&p->rx, rec[0], (size_t)len[0] - 1, &used, &data, &dl),
			 SUP_REC_MORE);
	assert_non_null(strstr(sup_rx_eof(&p->rx), "in the middle of a record"));
	pair_free(p);

	/* bad lengths, judged on the header alone */
	{
		static const uint8_t bad[][2] = {{0, 0}, {0, 16}, {0x40, 0x01}, {0xff, 0xff}};

		for (size_t i = 0; i < 4; i++) {
			p = pair_new();
			assert_int_equal(sup_open(&p->rx, bad[i], 2, &used, &data, &dl),
					 SUP_REC_ERR);
			assert_memory_equal(p->rx.err, "bad record length", 17);
			pair_free(p);
		}
	}

	/* the half-close: an end, then nothing more may come; the other way still works */
	{
		struct sup_hs s, d;
		struct run run;
		struct sup_tx stx, dtx;
		static struct sup_rx srx, drx;
		uint8_t psk[32], b[SUP_REC_WIRE_MAX];
		int r;

		sup_psk_make(psk);
		no_flips(&run);
		handshake(&s, &d, psk, psk, 100, &run);
		assert_int_equal(sup_hs_finish(&s, &stx, &srx), 0);
		assert_int_equal(sup_hs_finish(&d, &dtx, &drx), 0);
		r = sup_seal_end(&stx, b, sizeof(b));
		assert_int_equal(r, 19);
		assert_int_equal(sup_seal_end(&stx, b + r, sizeof(b)), -1);
		assert_int_equal(sup_seal(&stx, "late", 4, &taken, b + r, sizeof(b)), -1);
		assert_int_equal(sup_open(&drx, b, (size_t)r, &used, &data, &dl), SUP_REC_END);
		assert_int_equal(sup_open(&drx, b, 0, &used, &data, &dl), SUP_REC_END);
		assert_null(sup_rx_eof(&drx));
		/* the device still talks */
		r = sup_seal(&dtx, "still here", 10, &taken, b, sizeof(b));
		assert_int_equal(sup_open(&srx, b, (size_t)r, &used, &data, &dl), SUP_REC_DATA);
		assert_memory_equal(data, "still here", 10);
		/* bytes after the end */
		assert_int_equal(sup_open(&drx, b, 1, &used, &data, &dl), SUP_REC_ERR);
		assert_string_equal(drx.err, "bytes after the end of the stream's direction");
		sup_tx_wipe(&stx);
		sup_tx_wipe(&dtx);
		sup_rx_wipe(&srx);
		sup_rx_wipe(&drx);
	}
}

/* At 2^32 records a direction is over; a record that is not data or end is refused. */
static void test_record_limits(void **state)
{
	struct pair *p = pair_new();
	uint8_t b[64];
	size_t taken, used, dl;
	const uint8_t *data;
	int r;

	(void)state;
	p->tx.seq = SUP_REC_LIMIT - 1;
	p->rx.seq = SUP_REC_LIMIT - 1;
	r = sup_seal(&p->tx, "last", 4, &taken, b, sizeof(b));
	assert_true(r > 0);
	assert_int_equal(sup_open(&p->rx, b, (size_t)r, &used, &data, &dl), SUP_REC_DATA);
	assert_int_equal(sup_seal(&p->tx, "more", 4, &taken, b, sizeof(b)), -1);
	assert_int_equal(sup_seal_end(&p->tx, b, sizeof(b)), -1);
	/* nor is one more record opened */
	{
		struct sup_tx t2 = p->tx;

		t2.seq = SUP_REC_LIMIT - 1;
		r = sup_seal(&t2, "x", 1, &taken, b, sizeof(b));
		assert_int_equal(sup_open(&p->rx, b, (size_t)r, &used, &data, &dl), SUP_REC_ERR);
		assert_string_equal(p->rx.err, "too many records on one stream");
	}
	pair_free(p);
}

/* ---------- values ---------- */

static void test_psk_text(void **state)
{
	uint8_t psk[32], back[32];
	char text[SUP_PSK_STR], err[SUP_ERR_MAX], t2[200];

	(void)state;
	for (int i = 0; i < 200; i++) {
		sup_psk_make(psk);
		sup_psk_format(psk, text);
		assert_int_equal(strlen(text), 64);
		for (int j = 0; j < 64; j++)
			assert_true(j % 5 == 4 ? text[j] == '-'
					       : strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
							text[j]) != NULL);
		assert_int_equal(sup_psk_parse(text, back, err, sizeof(err)), 0);
		assert_memory_equal(psk, back, 32);
		/* lower case, spaces for dashes, no separators */
		for (int j = 0; text[j]; j++)
			t2[j] = text[j] == '-' ? ' ' : (char)(text[j] | 0x20);
		t2[64] = 0;
		memset(back, 0, 32);
		assert_int_equal(sup_psk_parse(t2, back, err, sizeof(err)), 0);
		assert_memory_equal(psk, back, 32);
		int o = 0;
		for (int j = 0; text[j]; j++)
			if (text[j] != '-')
				t2[o++] = text[j];
		t2[o] = 0;
		assert_int_equal(o, SUP_PSK_B32);
		assert_int_equal(sup_psk_parse(t2, back, err, sizeof(err)), 0);
		assert_memory_equal(psk, back, 32);
	}
	memset(back, 0x5a, 32);
#define BAD(s, msg)                                                                                \
	do {                                                                                       \
		assert_int_equal(sup_psk_parse(s, back, err, sizeof(err)), -1);                    \
		assert_string_equal(err, msg);                                                     \
		for (int k = 0; k < 32; k++)                                                       \
			assert_int_equal(back[k], 0x5a);                                           \
	} while (0)
	BAD("", "pre-shared key: 0 base32 characters, expected 52");
	BAD("AAAQ-EAYE-AUDA-OCAJ-BIFQ-YDIO-B4IB-CEQT-CQKR-MFYY-DENB-WHA5-DYP",
	    "pre-shared key: 51 base32 characters, expected 52");
	BAD("AAAQ-EAYE-AUDA-OCAJ-BIFQ-YDIO-B4IB-CEQT-CQKR-MFYY-DENB-WHA5-DYPQA",
	    "pre-shared key: 53 base32 characters, expected 52");
	BAD("AAAQ-EAYE-AUDA-OCAJ-BIFQ-YDIO-B4IB-CEQT-CQKR-MFYY-DENB-WHA5-DYPR",
	    "pre-shared key: the last character is wrong (a typo?)");
	BAD("AAA1-EAYE-AUDA-OCAJ-BIFQ-YDIO-B4IB-CEQT-CQKR-MFYY-DENB-WHA5-DYPQ",
	    "pre-shared key: \"1\" (character 4) is not base32 (A-Z and 2-7)");
	BAD("AAAQ_EAYE", "pre-shared key: \"_\" (character 5) is not base32 (A-Z and 2-7)");
	BAD("AAAQ\tEAYE", "pre-shared key: \"\\x09\" (character 5) is not base32 (A-Z and 2-7)");
	BAD("\xc3\xa9", "pre-shared key: \"\\xc3\" (character 1) is not base32 (A-Z and 2-7)");
	BAD("AAAQ-EAYE-AUDA-OCAJ-BIFQ-YDIO-B4IB-CEQT-CQKR-MFYY-DENB-WHA5-DYPQ\n",
	    "pre-shared key: \"\\x0a\" (character 65) is not base32 (A-Z and 2-7)");
	BAD(NULL, "pre-shared key: missing");
	memset(t2, '-', sizeof(t2) - 1);
	t2[sizeof(t2) - 1] = 0;
	assert_int_equal(sup_psk_parse(t2, back, err, sizeof(err)), -1); /* 199 dashes: 0 chars */
	{
		char big[SUP_PSK_IN_MAX + 2];

		memset(big, ' ', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		BAD(big, "pre-shared key: too long (52 base32 characters expected)");
	}
#undef BAD
}

static void test_ids(void **state)
{
	char id[SUP_ID_LEN + 1], prev[SUP_ID_LEN + 1] = "";

	(void)state;
	assert_true(sup_id_valid("sup-k3x9q2m7ab"));
	assert_true(sup_id_valid("sup-0000000000"));
	assert_true(sup_id_valid("sup-zzzzzzzzzz"));
	assert_false(sup_id_valid(NULL));
	assert_false(sup_id_valid(""));
	assert_false(sup_id_valid("sup-"));
	assert_false(sup_id_valid("sup-k3x9q2m7a"));
	assert_false(sup_id_valid("sup-k3x9q2m7abc"));
	assert_false(sup_id_valid("sup-K3x9q2m7ab"));
	assert_false(sup_id_valid("Sup-k3x9q2m7ab"));
	assert_false(sup_id_valid("sup_k3x9q2m7ab"));
	assert_false(sup_id_valid("sup-k3x9q-m7ab"));
	assert_false(sup_id_valid("sup-k3x9q2m7a\n"));
	assert_false(sup_id_valid("t-k3x9q2m7abcd"));
	assert_false(sup_id_valid("sup-k3x9q2m7\xc3\xa9"));
	for (int i = 0; i < 1000; i++) {
		sup_id_make(id);
		assert_true(sup_id_valid(id));
		assert_string_not_equal(id, prev);
		memcpy(prev, id, sizeof(id));
	}
}

static void test_services(void **state)
{
	struct sup_services l;
	char err[SUP_ERR_MAX], text[SUP_ALLOW_MAX + 1];

	(void)state;
	assert_int_equal(
	    sup_services_parse("ssh=127.0.0.1:22,web=127.0.0.1:8080", &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.s[0].name, "ssh");
	assert_string_equal(l.s[0].host, "127.0.0.1");
	assert_int_equal(l.s[0].port, 22);
	assert_false(l.s[0].v6);
	assert_string_equal(l.s[1].name, "web");
	assert_int_equal(l.s[1].port, 8080);
	assert_int_equal(sup_services_find(&l, "web"), 1);
	assert_int_equal(sup_services_find(&l, "WEB"), -1);
	assert_int_equal(sup_services_format(&l, text, sizeof(text)), 0);
	assert_string_equal(text, "ssh=127.0.0.1:22,web=127.0.0.1:8080");

	assert_int_equal(
	    sup_services_parse(" db = [::1]:5432 , A_b-9=printer.lan:65535,x=[fe80::1]:1", &l, err,
			       sizeof(err)),
	    -1); /* spaces inside an entry are not ignored */
	assert_int_equal(
	    sup_services_parse(" db=[::1]:5432 , A_b-9=printer.lan:65535,x=[fe80::1]:1 ", &l, err,
			       sizeof(err)),
	    0);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.s[0].host, "::1");
	assert_true(l.s[0].v6);
	assert_int_equal(l.s[1].port, 65535);
	assert_int_equal(sup_services_format(&l, text, sizeof(text)), 0);
	assert_string_equal(text, "db=[::1]:5432,A_b-9=printer.lan:65535,x=[fe80::1]:1");
	assert_int_equal(sup_services_format(&l, text, 10), -1);
	assert_string_equal(text, "");

	/* eight, with the longest names and hosts, read back the same */
	{
		char in[SUP_ALLOW_MAX + 1], host[254];
		size_t o = 0;

		memset(host, 'h', 253);
		host[253] = 0;
		for (int i = 0; i < 8; i++)
			o += (size_t)snprintf(in + o, sizeof(in) - o, "%s%030d%c=%s:%d",
					      i ? "," : "", i, 'n', host, 60000 + i);
		assert_int_equal(sup_services_parse(in, &l, err, sizeof(err)), 0);
		assert_int_equal(l.n, 8);
		assert_int_equal(strlen(l.s[7].name), 31);
		assert_int_equal(sup_services_format(&l, text, sizeof(text)), 0);
		assert_string_equal(text, in);
	}

#define BAD(s, msg)                                                                                \
	do {                                                                                       \
		assert_int_equal(sup_services_parse(s, &l, err, sizeof(err)), -1);                 \
		assert_string_equal(err, msg);                                                     \
	} while (0)
	BAD("", "services: none (NAME=HOST:PORT, e.g. ssh=127.0.0.1:22)");
	BAD("   ", "services: none (NAME=HOST:PORT, e.g. ssh=127.0.0.1:22)");
	BAD(NULL, "services: none (NAME=HOST:PORT, e.g. ssh=127.0.0.1:22)");
	BAD("ssh=127.0.0.1:22,", "services: entry 2 is empty");
	BAD(",ssh=127.0.0.1:22", "services: entry 1 is empty");
	BAD("a=h:1,,b=h:2", "services: entry 2 is empty");
	BAD("a=h:1,b=h:2,c=h:3,d=h:4,e=h:5,f=h:6,g=h:7,h=h:8,i=h:9", "services: more than 8");
	BAD("ssh=h:22,ssh=h:23", "services: entry 2 \"ssh=h:23\": this NAME is given twice");
	BAD("ssh", "services: entry 1 \"ssh\": not NAME=HOST:PORT");
	BAD("=h:1", "services: entry 1 \"=h:1\": NAME must be 1-31 of A-Z a-z 0-9 _ -");
	BAD("abcdefghijabcdefghijabcdefghijab=h:1",
	    "services: entry 1 \"abcdefghijabcdefghijabcdefghijab=h:1\": NAME must be 1-31 of "
	    "A-Z a-z 0-9 _ -");
	BAD("s.sh=h:1", "services: entry 1 \"s.sh=h:1\": NAME must be 1-31 of A-Z a-z 0-9 _ -");
	BAD("s\x1b[2Jh=h:1", "services: entry 1 \"s\\x1b[2Jh=h:1\": NAME must be 1-31 of A-Z a-z "
			     "0-9 _ -");
	BAD("ssh=", "services: entry 1 \"ssh=\": no HOST:PORT after NAME=");
	BAD("ssh=host", "services: entry 1 \"ssh=host\": no :PORT");
	BAD("ssh=:22", "services: entry 1 \"ssh=:22\": HOST must be 1-253 of A-Z a-z 0-9 . _ - "
		       "(or [IPv6])");
	BAD("ssh=a/b:22", "services: entry 1 \"ssh=a/b:22\": HOST must be 1-253 of A-Z a-z 0-9 . "
			  "_ - (or [IPv6])");
	BAD("ssh=h:0", "services: entry 1 \"ssh=h:0\": PORT must be 1-65535");
	BAD("ssh=h:022", "services: entry 1 \"ssh=h:022\": PORT must be 1-65535");
	BAD("ssh=h:65536", "services: entry 1 \"ssh=h:65536\": PORT must be 1-65535");
	BAD("ssh=h:100000", "services: entry 1 \"ssh=h:100000\": PORT must be 1-65535");
	BAD("ssh=h:-1", "services: entry 1 \"ssh=h:-1\": PORT must be 1-65535");
	BAD("ssh=h:", "services: entry 1 \"ssh=h:\": PORT must be 1-65535");
	BAD("ssh=::1:22",
	    "services: entry 1 \"ssh=::1:22\": an IPv6 address goes in brackets: [ADDRESS]:PORT");
	BAD("ssh=[::1]", "services: entry 1 \"ssh=[::1]\": an IPv6 address is written "
			 "[ADDRESS]:PORT");
	BAD("ssh=[::1]22", "services: entry 1 \"ssh=[::1]22\": an IPv6 address is written "
			   "[ADDRESS]:PORT");
	BAD("ssh=[]:22", "services: entry 1 \"ssh=[]:22\": not an IPv6 address in the brackets");
	BAD("ssh=[1.2.3.4]:22",
	    "services: entry 1 \"ssh=[1.2.3.4]:22\": not an IPv6 address in the brackets");
	BAD("ssh=[zz::1]:22",
	    "services: entry 1 \"ssh=[zz::1]:22\": not an IPv6 address in the brackets");
	/* a long entry is cut in the message */
	{
		char in[400];

		memset(in, 'x', 300);
		memcpy(in + 300, "=h:1", 5);
		assert_int_equal(sup_services_parse(in, &l, err, sizeof(err)), -1);
		assert_line(err);
		assert_non_null(strstr(err, "...\": NAME must be"));
	}
	{
		char in[SUP_ALLOW_MAX + 2];

		memset(in, 'a', sizeof(in) - 1);
		in[sizeof(in) - 1] = 0;
		BAD(in, "services: too long (at most 2400 bytes)");
	}
#undef BAD
	assert_true(sup_service_name_valid("a"));
	assert_true(sup_service_name_valid("Web_2-x"));
	assert_false(sup_service_name_valid(""));
	assert_false(sup_service_name_valid(NULL));
	assert_false(sup_service_name_valid("a b"));
	assert_true(sup_service_name_valid("abcdefghijabcdefghijabcdefghija"));
	assert_false(sup_service_name_valid("abcdefghijabcdefghijabcdefghijab"));
}

static void test_auth(void **state)
{
	uint8_t psk[32];
	char key[SUP_HEX_STR], key2[SUP_HEX_STR], hash[SUP_HEX_STR], up[SUP_HEX_STR];

	(void)state;
	sup_psk_make(psk);
	assert_int_equal(sup_auth_key(psk, key), 0);
	assert_true(sup_hex_valid(key));
	assert_int_equal(sup_auth_key(psk, key2), 0);
	assert_string_equal(key, key2); /* a function of the PSK alone */
	assert_int_equal(sup_auth_hash(key, hash), 0);
	assert_true(sup_hex_valid(hash));
	assert_string_not_equal(key, hash);
	assert_true(sup_auth_check(key, hash));
	/* another PSK's key, a changed digit, a bad shape: no */
	psk[0] ^= 1;
	assert_int_equal(sup_auth_key(psk, key2), 0);
	assert_false(sup_auth_check(key2, hash));
	memcpy(key2, key, sizeof(key));
	key2[63] = key2[63] == '0' ? '1' : '0';
	assert_false(sup_auth_check(key2, hash));
	assert_false(sup_auth_check(hash, hash));
	for (int i = 0; i < 64; i++)
		up[i] = (char)(key[i] >= 'a' ? key[i] - 32 : key[i]);
	up[64] = 0;
	assert_false(sup_hex_valid(up) && strcmp(up, key));
	assert_false(sup_auth_check(key, ""));
	assert_false(sup_auth_check("", hash));
	assert_false(sup_auth_check(NULL, hash));
	memcpy(key2, key, sizeof(key));
	key2[63] = 0;
	assert_false(sup_auth_check(key2, hash));
	assert_int_equal(sup_auth_hash(key2, hash), -1);
	assert_false(
	    sup_hex_valid("g000000000000000000000000000000000000000000000000000000000000000"));
	assert_false(
	    sup_hex_valid("00000000000000000000000000000000000000000000000000000000000000000"));
	assert_true(
	    sup_hex_valid("0000000000000000000000000000000000000000000000000000000000000000"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kat),
	    cmocka_unit_test(test_handshake),
	    cmocka_unit_test(test_handshake_pipelined),
	    cmocka_unit_test(test_wrong_psk),
	    cmocka_unit_test(test_tampered),
	    cmocka_unit_test(test_hs_edges),
	    cmocka_unit_test(test_records),
	    cmocka_unit_test(test_many_records),
	    cmocka_unit_test(test_record_attacks),
	    cmocka_unit_test(test_record_limits),
	    cmocka_unit_test(test_psk_text),
	    cmocka_unit_test(test_ids),
	    cmocka_unit_test(test_services),
	    cmocka_unit_test(test_auth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Support tunnels (issue 13 part 3): the end-to-end layer between the
 * supporter's `nave support connect` (S) and the device's nave (D), run
 * inside the byte stream the edge relays, and the values around it. A pure
 * library: no I/O, no allocation, fixed-size state the caller owns, so both
 * ends can drive it from blocking or non-blocking sockets. BoringSSL's
 * libcrypto only; navectl does not link it (the inline sup_id_valid works there).
 *
 * Values
 *   session id  "sup-" and 10 of [a-z0-9] (51.7 bits), sup_id_make/valid
 *   PSK         32 random bytes made on the device, shown once as 52 base32
 *               characters (RFC 4648, upper case, no padding) in groups of
 *               4 with dashes; read in any case, dashes and spaces ignored
 *   auth_key    HKDF-SHA256(ikm = PSK, salt = "", info = "nave support auth
 *               v1"), 32 bytes: what the supporter shows the edge (64 hex
 *               digits). The session id is not in it: the device sends
 *               auth_hash with its request, before the edge names the session,
 *               and a PSK is fresh for each session anyway
 *   auth_hash   SHA-256(auth_key's 32 bytes), 64 hex digits: all the edge
 *               stores. HKDF is one-way: the edge never learns the PSK.
 *
 * Handshake (inside the relayed stream; every length fixed)
 *   S->D  SUP1 = "NVS1" | session id (14) | service index (1) | nonce_s (32)
 *                | pub_s (32)                                     83 bytes
 *   D->S  SUP2 = "NVS2" | nonce_d (32) | pub_d (32) | tag_d (32)  100 bytes
 *   S->D  tag_s (32), then records both ways
 *
 * Key schedule, for a reviewer:
 *   dh    = X25519(own ephemeral private key, peer's public key)
 *   th    = SHA-256(SUP1 | nonce_d | pub_d)          the transcript so far
 *   prk   = HKDF-Extract(salt = th, ikm = PSK | dh)   <- the PSK enters here
 *   k_s2d = HKDF-Expand(prk, "s2d key", 32)           S -> D traffic
 *   k_d2s = HKDF-Expand(prk, "d2s key", 32)           D -> S traffic
 *   conf_s = HKDF-Expand(prk, "s conf", 32), conf_d = HKDF-Expand(prk, "d conf", 32)
 *   tag_d = HMAC-SHA256(conf_d, th)
 *   tag_s = HMAC-SHA256(conf_s, th | tag_d)
 * Each side checks the other's tag in constant time: a wrong PSK (or any
 * byte of SUP1/SUP2 changed on the way, the session id and service index
 * included) fails there, before any record. Both ephemeral keys and both
 * nonces are in th and the PSK and dh in prk, so: the traffic keys need the
 * PSK (a broken certificate or X25519 alone does not give them) and the
 * ephemeral private keys (a PSK leaked after the session does not give
 * them); the edge, which relays these bytes, holds neither.
 *
 * Records (each direction its own key and counter)
 *   u16 big-endian length L (17..16384) | ChaCha20-Poly1305 ciphertext of
 *   L bytes (plaintext L - 16 bytes, tag 16)
 *   plaintext = data | type, type 0 = data (at least 1 byte), 1 = the end of
 *   this direction (no data: the half-close; nothing may follow it)
 *   nonce = 4 zero bytes | 64-bit big-endian record counter (from 0, per
 *   direction, never reused); AD = the direction byte (1 S->D, 2 D->S).
 *   A direction carries at most 2^32 records; then the connection ends.
 */
#ifndef NAVE_SUPPORT_H
#define NAVE_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/aead.h>

#define SUP_ID_LEN	 14 /* "sup-" + 10 */
#define SUP_ID_RAND	 10
#define SUP_PSK_LEN	 32
#define SUP_PSK_B32	 52			/* base32 characters of a PSK */
#define SUP_PSK_STR	 (SUP_PSK_B32 + 12 + 1) /* formatted, dashes and NUL: 65 */
#define SUP_PSK_IN_MAX	 256			/* longest text sup_psk_parse reads */
#define SUP_HEX_STR	 65			/* 32 bytes in hex and a NUL */
#define SUP_ERR_MAX	 160			/* every one-line error fits */
#define SUP_SERVICES_MAX 8
#define SUP_SVC_NAME_MAX 31
#define SUP_SVC_HOST_MAX 253
#define SUP_ALLOW_MAX	 2400 /* longest --allow text */
#define SUP1_LEN	 83
#define SUP2_LEN	 100
#define SUP_TAG_LEN	 32
#define SUP_REC_HDR	 2
#define SUP_REC_CT_MIN	 17		       /* 1 type byte + 16 tag */
#define SUP_REC_CT_MAX	 16384		       /* ciphertext and tag */
#define SUP_REC_DATA_MAX (SUP_REC_CT_MAX - 17) /* 16367 data bytes a record */
#define SUP_REC_WIRE_MAX (SUP_REC_HDR + SUP_REC_CT_MAX)
#define SUP_REC_LIMIT	 (1ull << 32) /* records a direction may carry */
#define SUP_DIR_S2D	 1
#define SUP_DIR_D2S	 2

/* ---------- values ---------- */

/* ^sup-[a-z0-9]{10}$ and nothing else (inline: navectl checks ids without linking support.c). */
static inline bool sup_id_valid(const char *s)
{
	if (!s || s[0] != 's' || s[1] != 'u' || s[2] != 'p' || s[3] != '-')
		return false;
	for (int i = 4; i < SUP_ID_LEN; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
			return false;
	return s[SUP_ID_LEN] == 0;
}
/* A fresh random session id into out (SUP_ID_LEN + 1 bytes). */
void sup_id_make(char *out);

/* 32 fresh random bytes. */
void sup_psk_make(uint8_t psk[SUP_PSK_LEN]);
/* "ABCD-EFGH-...-WXYZ" (64 characters and a NUL) into out (SUP_PSK_STR bytes). */
void sup_psk_format(const uint8_t psk[SUP_PSK_LEN], char out[SUP_PSK_STR]);
/*
 * Reads a PSK as sup_psk_format writes it, in any case, dashes and spaces
 * ignored: exactly 52 base32 characters whose last 4 bits are zero. 0, or
 * -1 with a one-line reason in err (psk untouched).
 */
int sup_psk_parse(const char *s, uint8_t psk[SUP_PSK_LEN], char *err, size_t errlen);

/* auth_key of a PSK, 64 lower-case hex digits into out (SUP_HEX_STR); 0 or -1. */
int sup_auth_key(const uint8_t psk[SUP_PSK_LEN], char out[SUP_HEX_STR]);
/* auth_hash of an auth_key given in hex; 0, or -1 when auth_key is not sup_hex_valid. */
int sup_auth_hash(const char *auth_key, char out[SUP_HEX_STR]);
/*
 * True when SHA-256 of the presented auth_key (hex) is the stored auth_hash
 * (hex), compared in constant time. Either one not sup_hex_valid: false.
 */
bool sup_auth_check(const char *auth_key, const char *auth_hash);
/* Exactly 64 lower-case hex digits: the shape of auth_key and auth_hash. */
bool sup_hex_valid(const char *s);

/* ---------- the services a device offers (--allow) ---------- */

struct sup_service {
	char name[SUP_SVC_NAME_MAX + 1];
	char host[SUP_SVC_HOST_MAX + 1]; /* a name or an address; IPv6 without brackets */
	uint16_t port;
	bool v6; /* host is an IPv6 address (written [host]:port) */
};

struct sup_services {
	unsigned n;
	struct sup_service s[SUP_SERVICES_MAX];
};

/*
 * "ssh=127.0.0.1:22,web=[::1]:8080": 1..8 entries NAME=HOST:PORT split at
 * commas (spaces around an entry ignored). NAME: 1-31 of [A-Za-z0-9_-],
 * each once; HOST: a name or IPv4 address of [A-Za-z0-9._-] (1-253), or an
 * IPv6 address in brackets; PORT 1-65535. The index of an entry is its
 * position (the service index of SUP1 and of the edge's BIND). 0, or -1
 * with a one-line reason in err (the offending entry escaped).
 */
int sup_services_parse(const char *s, struct sup_services *out, char *err, size_t errlen);
/* The canonical text of a list (what sup_services_parse reads back the same); 0 or -1 (too small).
 */
int sup_services_format(const struct sup_services *l, char *out, size_t outlen);
/* 1-31 of [A-Za-z0-9_-]. */
bool sup_service_name_valid(const char *s);
/* The index of the service called name, or -1. */
int sup_services_find(const struct sup_services *l, const char *name);

/* ---------- the handshake ---------- */

enum sup_role { SUP_SUPPORTER, SUP_DEVICE };

enum sup_hs_res {
	SUP_HS_MORE, /* send what sup_hs_out has, then feed more bytes */
	SUP_HS_PSK,  /* device: hs->session and hs->service are known: call sup_hs_psk */
	SUP_HS_DONE, /* send what sup_hs_out has; then sup_hs_finish, then records */
	SUP_HS_ERR,  /* hs->err says why in one line; close (send nothing more) */
};

struct sup_keys {
	uint8_t k_s2d[32], k_d2s[32], conf_s[32], conf_d[32];
};

struct sup_hs {
	enum sup_role role;
	int state;
	char session[SUP_ID_LEN + 1]; /* device: from SUP1 once SUP_HS_PSK */
	unsigned service;	      /* device: from SUP1 once SUP_HS_PSK */
	uint8_t psk[SUP_PSK_LEN];
	uint8_t priv[32], pub[32], nonce[32], dh[32];
	uint8_t sup1[SUP1_LEN];
	uint8_t in[SUP2_LEN]; /* the message being received */
	size_t in_len;
	uint8_t th[32];
	uint8_t want_tag[SUP_TAG_LEN]; /* device: the tag_s it expects */
	struct sup_keys keys;
	uint8_t out[SUP2_LEN]; /* the message to send */
	size_t out_len, out_off;
	char err[SUP_ERR_MAX];
};

/*
 * The supporter's side: SUP1 for session and service (index < 8) is ready
 * in sup_hs_out at once. 0, or -1 with hs->err (a bad id or index).
 */
int sup_hs_supporter(struct sup_hs *hs, const uint8_t psk[SUP_PSK_LEN], const char *session,
		     unsigned service);
/* The device's side: waits for SUP1. */
void sup_hs_device(struct sup_hs *hs);
/*
 * Feeds n received bytes; *used says how many the handshake took (it takes
 * no byte past its last message: the rest are records, for sup_open). The
 * results are above; SUP_HS_PSK, DONE and ERR stay until acted upon (a feed
 * then takes nothing).
 */
enum sup_hs_res sup_hs_feed(struct sup_hs *hs, const uint8_t *in, size_t n, size_t *used);
/*
 * Device, after SUP_HS_PSK: the caller has checked hs->session and
 * hs->service (the session is approved, this stream is for that service)
 * and gives the session's PSK; SUP2 is then in sup_hs_out and the feed goes
 * on. 0, or -1 when not waiting for it.
 */
int sup_hs_psk(struct sup_hs *hs, const uint8_t psk[SUP_PSK_LEN]);
/* The bytes to send now (*n of them, maybe 0); mark them sent with sup_hs_sent. */
const uint8_t *sup_hs_out(const struct sup_hs *hs, size_t *n);
void sup_hs_sent(struct sup_hs *hs, size_t n);
/*
 * The peer closed the stream before the handshake was done: the one-line
 * reason to show for it (also left in hs->err, and the state is ERR).
 */
const char *sup_hs_eof(struct sup_hs *hs);
/* Wipes every secret of hs. */
void sup_hs_wipe(struct sup_hs *hs);

/* ---------- records ---------- */

struct sup_tx {
	EVP_AEAD_CTX aead;
	uint8_t dir;
	bool ended; /* the end of this direction is sealed */
	uint64_t seq;
	uint64_t bytes; /* data bytes sealed */
};

enum sup_rec_res {
	SUP_REC_MORE, /* all bytes taken, no complete record yet */
	SUP_REC_DATA, /* one record's data at *data (*len bytes, valid until the next call) */
	SUP_REC_END,  /* the peer ended its direction; more bytes after it are an error */
	SUP_REC_ERR,  /* rx->err says why in one line; the stream is done */
};

/* About 16.6 KiB (one whole record is kept): keep it in a connection's state, not on a stack. */
struct sup_rx {
	EVP_AEAD_CTX aead;
	uint8_t dir;
	int state;
	uint64_t seq;
	uint64_t bytes; /* data bytes opened */
	size_t have, need;
	char err[SUP_ERR_MAX];
	uint8_t buf[SUP_REC_WIRE_MAX];
};

/*
 * After SUP_HS_DONE (and its output sent): the record layer for this role,
 * tx sealing what this side sends and rx opening what it receives; then
 * every secret of hs is wiped. 0, or -1 when the handshake is not done.
 */
int sup_hs_finish(struct sup_hs *hs, struct sup_tx *tx, struct sup_rx *rx);
/* The record layer from a raw 32-byte key and a direction byte (tests and the fuzzer). */
void sup_tx_init(struct sup_tx *tx, const uint8_t key[32], uint8_t dir);
void sup_rx_init(struct sup_rx *rx, const uint8_t key[32], uint8_t dir);
/*
 * Seals min(n, SUP_REC_DATA_MAX) bytes of data (n >= 1) as one record into
 * out (outlen >= that + SUP_REC_HDR + 17; SUP_REC_WIRE_MAX always fits).
 * data may already be at out + SUP_REC_HDR (then nothing is copied). The
 * record's length, with *taken = the data bytes in it; -1 when the
 * direction has ended or carried SUP_REC_LIMIT records (the connection
 * must end) or outlen is too small.
 */
int sup_seal(struct sup_tx *tx, const void *data, size_t n, size_t *taken, uint8_t *out,
	     size_t outlen);
/* The record that ends this direction (the half-close) into out (>= 19 bytes); its length or -1. */
int sup_seal_end(struct sup_tx *tx, uint8_t *out, size_t outlen);
/*
 * Feeds received bytes; *used = the bytes taken (up to the end of the first
 * complete record: call again with the rest). A record that fails to open
 * (changed, replayed, reordered, truncated, a bad length or type, a record
 * after the end) is SUP_REC_ERR, and so is everything after it.
 */
enum sup_rec_res sup_open(struct sup_rx *rx, const uint8_t *in, size_t n, size_t *used,
			  const uint8_t **data, size_t *len);
/* The peer closed the stream: NULL when that is clean (after its end record), else why not. */
const char *sup_rx_eof(struct sup_rx *rx);
void sup_tx_wipe(struct sup_tx *tx);
void sup_rx_wipe(struct sup_rx *rx);

/* ---------- for tests ---------- */

/* sup_hs_supporter with a fixed nonce and X25519 private key (the known-answer test). */
int sup_hs_supporter_fixed(struct sup_hs *hs, const uint8_t psk[SUP_PSK_LEN], const char *session,
			   unsigned service, const uint8_t nonce[32], const uint8_t priv[32]);
/* sup_hs_device with a fixed nonce and X25519 private key. */
void sup_hs_device_fixed(struct sup_hs *hs, const uint8_t nonce[32], const uint8_t priv[32]);
/* The key schedule alone: th and dh (32 bytes each) and the PSK -> keys. 0 or -1. */
int sup_kdf(const uint8_t psk[SUP_PSK_LEN], const uint8_t dh[32], const uint8_t th[32],
	    struct sup_keys *out);

#endif

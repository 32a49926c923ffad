// SPDX-License-Identifier: Apache-2.0
/*
 * Support tunnels' end-to-end layer and values (support.h has the messages
 * and the key schedule). Every input here is untrusted: the handshake and
 * the records arrive through the edge, the PSK and the --allow list from a
 * command line. Fixed sizes throughout, nothing allocated; secrets wiped
 * with OPENSSL_cleanse once used.
 */
#include "support.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/curve25519.h>
#include <openssl/digest.h>
#include <openssl/hkdf.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum {
	HS_WAIT_SUP1 = 1, /* device */
	HS_WAIT_PSK,	  /* device */
	HS_WAIT_TAG_S,	  /* device */
	HS_WAIT_SUP2,	  /* supporter */
	HS_DONE,
	HS_FINISHED, /* keys handed to the record layer and wiped */
	HS_ERR,
};

enum { RX_HDR = 1, RX_BODY, RX_ENDED, RX_ERR };

#define REC_DATA 0
#define REC_END	 1

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char auth_info[] = "nave support auth v1";

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* At most max bytes of s as printable ASCII (others \xHH), "..." when cut; out >= 4 * max + 4. */
static void esc(char *out, size_t outlen, const char *s, size_t n, size_t max)
{
	size_t o = 0;

	for (size_t i = 0; i < n && i < max && o + 5 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
	}
	if (n > max && o + 3 < outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = 0;
}

static void hex(const uint8_t *in, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * n] = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* ---------- values ---------- */

void sup_id_make(char *out)
{
	static const char a[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	uint8_t r[32];
	size_t k = sizeof(r);

	memcpy(out, "sup-", 4);
	for (int i = 4; i < SUP_ID_LEN; k++) {
		if (k == sizeof(r)) {
			RAND_bytes(r, sizeof(r));
			k = 0;
		}
		/* 252 = 7 * 36: no bias */
		if (r[k] < 252)
			out[i++] = a[r[k] % 36];
	}
	out[SUP_ID_LEN] = 0;
}

void sup_psk_make(uint8_t psk[SUP_PSK_LEN])
{
	RAND_bytes(psk, SUP_PSK_LEN);
}

void sup_psk_format(const uint8_t psk[SUP_PSK_LEN], char out[SUP_PSK_STR])
{
	uint32_t acc = 0;
	unsigned bits = 0, c = 0;
	size_t o = 0;

	for (size_t i = 0; i < SUP_PSK_LEN || bits; i++) {
		if (i < SUP_PSK_LEN) {
			acc = acc << 8 | psk[i];
			bits += 8;
		} else {
			/* the last 1 bit, padded with zeros to a character */
			acc <<= 5 - bits;
			bits = 5;
		}
		while (bits >= 5) {
			bits -= 5;
			if (c && c % 4 == 0)
				out[o++] = '-';
			out[o++] = b32[(acc >> bits) & 31];
			c++;
		}
		acc &= (1u << bits) - 1;
	}
	out[o] = 0;
}

static int b32val(char c)
{
	if (c >= 'a' && c <= 'z')
		c = (char)(c - 'a' + 'A');
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

int sup_psk_parse(const char *s, uint8_t psk[SUP_PSK_LEN], char *err, size_t errlen)
{
	uint8_t out[SUP_PSK_LEN];
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n, count = 0, o = 0;
	char e[16];

	if (!s) {
		errf(err, errlen, "pre-shared key: missing");
		return -1;
	}
	n = strnlen(s, SUP_PSK_IN_MAX + 1);
	if (n > SUP_PSK_IN_MAX) {
		errf(err, errlen, "pre-shared key: too long (%d base32 characters expected)",
		     SUP_PSK_B32);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '-' || s[i] == ' ')
			continue;
		if (b32val(s[i]) < 0) {
			esc(e, sizeof(e), s + i, 1, 1);
			errf(err, errlen,
			     "pre-shared key: \"%s\" (character %zu) is not base32 (A-Z and 2-7)",
			     e, i + 1);
			return -1;
		}
		count++;
	}
	if (count != SUP_PSK_B32) {
		errf(err, errlen, "pre-shared key: %zu base32 characters, expected %d", count,
		     SUP_PSK_B32);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		int v = b32val(s[i]);

		if (v < 0)
			continue;
		acc = acc << 5 | (uint32_t)v;
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
		acc &= (1u << bits) - 1;
	}
	/* 52 characters are 260 bits: the last 4 are padding, zero in a key sup_psk_format wrote */
	if (o != SUP_PSK_LEN || acc != 0) {
		OPENSSL_cleanse(out, sizeof(out));
		OPENSSL_cleanse(&acc, sizeof(acc));
		errf(err, errlen, "pre-shared key: the last character is wrong (a typo?)");
		return -1;
	}
	memcpy(psk, out, SUP_PSK_LEN);
	OPENSSL_cleanse(out, sizeof(out));
	return 0;
}

bool sup_hex_valid(const char *s)
{
	if (!s)
		return false;
	for (int i = 0; i < 64; i++)
		if (hexval(s[i]) < 0)
			return false;
	return s[64] == 0;
}

static void unhex32(const char *s, uint8_t out[32])
{
	for (int i = 0; i < 32; i++)
		out[i] = (uint8_t)(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
}

int sup_auth_key(const uint8_t psk[SUP_PSK_LEN], char out[SUP_HEX_STR])
{
	uint8_t key[32];

	if (!HKDF(key, sizeof(key), EVP_sha256(), psk, SUP_PSK_LEN, NULL, 0,
		  (const uint8_t *)auth_info, sizeof(auth_info) - 1))
		return -1;
	hex(key, sizeof(key), out);
	OPENSSL_cleanse(key, sizeof(key));
	return 0;
}

int sup_auth_hash(const char *auth_key, char out[SUP_HEX_STR])
{
	uint8_t key[32], h[SHA256_DIGEST_LENGTH];

	if (!sup_hex_valid(auth_key))
		return -1;
	unhex32(auth_key, key);
	SHA256(key, sizeof(key), h);
	OPENSSL_cleanse(key, sizeof(key));
	hex(h, sizeof(h), out);
	return 0;
}

bool sup_auth_check(const char *auth_key, const char *auth_hash)
{
	uint8_t key[32], h[SHA256_DIGEST_LENGTH], want[32];
	bool ok;

	if (!sup_hex_valid(auth_key) || !sup_hex_valid(auth_hash))
		return false;
	unhex32(auth_key, key);
	unhex32(auth_hash, want);
	SHA256(key, sizeof(key), h);
	ok = CRYPTO_memcmp(h, want, sizeof(h)) == 0;
	OPENSSL_cleanse(key, sizeof(key));
	return ok;
}

/* ---------- services ---------- */

bool sup_service_name_valid(const char *s)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++) {
		char c = s[n];

		if (n >= SUP_SVC_NAME_MAX || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
					       (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return n >= 1;
}

int sup_services_find(const struct sup_services *l, const char *name)
{
	for (unsigned i = 0; i < l->n; i++)
		if (!strcmp(l->s[i].name, name))
			return (int)i;
	return -1;
}

static bool host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

/* One NAME=HOST:PORT (n bytes at p): NULL, or why not. */
static const char *parse_entry(const char *p, size_t n, struct sup_service *sv)
{
	const char *eq = memchr(p, '=', n), *r, *end = p + n, *colon, *port;
	char v6[INET6_ADDRSTRLEN + 1];
	uint8_t a[16];
	size_t hn;
	unsigned v = 0;

	if (!eq)
		return "not NAME=HOST:PORT";
	if (eq == p || eq - p > SUP_SVC_NAME_MAX)
		return "NAME must be 1-31 of A-Z a-z 0-9 _ -";
	memcpy(sv->name, p, (size_t)(eq - p));
	sv->name[eq - p] = 0;
	if (!sup_service_name_valid(sv->name))
		return "NAME must be 1-31 of A-Z a-z 0-9 _ -";
	r = eq + 1;
	if (r == end)
		return "no HOST:PORT after NAME=";
	if (*r == '[') {
		const char *rb = memchr(r, ']', (size_t)(end - r));

		if (!rb || rb + 1 == end || rb[1] != ':')
			return "an IPv6 address is written [ADDRESS]:PORT";
		hn = (size_t)(rb - r - 1);
		if (hn == 0 || hn >= sizeof(v6))
			return "not an IPv6 address in the brackets";
		memcpy(v6, r + 1, hn);
		v6[hn] = 0;
		if (inet_pton(AF_INET6, v6, a) != 1)
			return "not an IPv6 address in the brackets";
		memcpy(sv->host, v6, hn + 1);
		sv->v6 = true;
		port = rb + 2;
	} else {
		colon = NULL;
		for (const char *q = r; q < end; q++)
			if (*q == ':')
				colon = q;
		if (!colon)
			return "no :PORT";
		hn = (size_t)(colon - r);
		if (memchr(r, ':', hn))
			return "an IPv6 address goes in brackets: [ADDRESS]:PORT";
		if (hn == 0 || hn > SUP_SVC_HOST_MAX)
			return "HOST must be 1-253 of A-Z a-z 0-9 . _ - (or [IPv6])";
		for (size_t i = 0; i < hn; i++)
			if (!host_char(r[i]))
				return "HOST must be 1-253 of A-Z a-z 0-9 . _ - (or [IPv6])";
		memcpy(sv->host, r, hn);
		sv->host[hn] = 0;
		sv->v6 = false;
		port = colon + 1;
	}
	if (port == end || end - port > 5 || *port == '0')
		return "PORT must be 1-65535";
	for (const char *q = port; q < end; q++) {
		if (*q < '0' || *q > '9')
			return "PORT must be 1-65535";
		v = v * 10 + (unsigned)(*q - '0');
	}
	if (v < 1 || v > 65535)
		return "PORT must be 1-65535";
	sv->port = (uint16_t)v;
	return NULL;
}

int sup_services_parse(const char *s, struct sup_services *out, char *err, size_t errlen)
{
	struct sup_services l;
	const char *p, *end;
	char e[4 * 48 + 4];
	size_t n;

	memset(&l, 0, sizeof(l));
	if (!s)
		s = "";
	n = strnlen(s, SUP_ALLOW_MAX + 1);
	if (n > SUP_ALLOW_MAX) {
		errf(err, errlen, "services: too long (at most %d bytes)", SUP_ALLOW_MAX);
		return -1;
	}
	p = s;
	end = s + n;
	for (unsigned idx = 1;; idx++) {
		const char *q = memchr(p, ',', (size_t)(end - p)), *a, *b, *why;

		if (!q)
			q = end;
		a = p;
		b = q;
		while (a < b && *a == ' ')
			a++;
		while (b > a && b[-1] == ' ')
			b--;
		if (a == b) {
			if (n == 0 || (idx == 1 && q == end))
				errf(err, errlen,
				     "services: none (NAME=HOST:PORT, e.g. ssh=127.0.0.1:22)");
			else
				errf(err, errlen, "services: entry %u is empty", idx);
			return -1;
		}
		if (l.n == SUP_SERVICES_MAX) {
			errf(err, errlen, "services: more than %d", SUP_SERVICES_MAX);
			return -1;
		}
		why = parse_entry(a, (size_t)(b - a), &l.s[l.n]);
		if (!why && sup_services_find(&l, l.s[l.n].name) >= 0)
			why = "this NAME is given twice";
		if (why) {
			esc(e, sizeof(e), a, (size_t)(b - a), 48);
			errf(err, errlen, "services: entry %u \"%s\": %s", idx, e, why);
			return -1;
		}
		l.n++;
		if (q == end)
			break;
		p = q + 1;
	}
	*out = l;
	return 0;
}

int sup_services_format(const struct sup_services *l, char *out, size_t outlen)
{
	size_t o = 0;

	if (!outlen)
		return -1;
	out[0] = 0;
	for (unsigned i = 0; i < l->n; i++) {
		const struct sup_service *sv = &l->s[i];
		int w = snprintf(out + o, outlen - o, "%s%s=%s%s%s:%u", i ? "," : "", sv->name,
				 sv->v6 ? "[" : "", sv->host, sv->v6 ? "]" : "", sv->port);

		if (w < 0 || (size_t)w >= outlen - o) {
			out[0] = 0;
			return -1;
		}
		o += (size_t)w;
	}
	return 0;
}

/* ---------- the handshake ---------- */

int sup_kdf(const uint8_t psk[SUP_PSK_LEN], const uint8_t dh[32], const uint8_t th[32],
	    struct sup_keys *out)
{
	static const struct {
		const char *label;
		size_t off;
	} exp[] = {
	    {"s2d key", offsetof(struct sup_keys, k_s2d)},
	    {"d2s key", offsetof(struct sup_keys, k_d2s)},
	    {"s conf", offsetof(struct sup_keys, conf_s)},
	    {"d conf", offsetof(struct sup_keys, conf_d)},
	};
	uint8_t ikm[SUP_PSK_LEN + 32], prk[EVP_MAX_MD_SIZE];
	size_t prklen = 0;
	int ok;

	memcpy(ikm, psk, SUP_PSK_LEN);
	memcpy(ikm + SUP_PSK_LEN, dh, 32);
	ok = HKDF_extract(prk, &prklen, EVP_sha256(), ikm, sizeof(ikm), th, 32);
	for (size_t i = 0; ok && i < sizeof(exp) / sizeof(exp[0]); i++)
		ok = HKDF_expand((uint8_t *)out + exp[i].off, 32, EVP_sha256(), prk, prklen,
				 (const uint8_t *)exp[i].label, strlen(exp[i].label));
	OPENSSL_cleanse(ikm, sizeof(ikm));
	OPENSSL_cleanse(prk, sizeof(prk));
	if (!ok)
		OPENSSL_cleanse(out, sizeof(*out));
	return ok ? 0 : -1;
}

static void hmac32(const uint8_t key[32], const uint8_t *d, size_t n, uint8_t out[32])
{
	unsigned outlen = 32;

	if (!HMAC(EVP_sha256(), key, 32, d, n, out, &outlen))
		/* cannot happen with SHA-256; a zero tag then matches nothing */
		memset(out, 0, 32);
}

/* th = SHA-256(SUP1 | nonce_d | pub_d) */
static void transcript(const uint8_t sup1[SUP1_LEN], const uint8_t nonce_d[32],
		       const uint8_t pub_d[32], uint8_t th[32])
{
	SHA256_CTX c;

	SHA256_Init(&c);
	SHA256_Update(&c, sup1, SUP1_LEN);
	SHA256_Update(&c, nonce_d, 32);
	SHA256_Update(&c, pub_d, 32);
	SHA256_Final(th, &c);
}

static enum sup_hs_res fail(struct sup_hs *hs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum sup_hs_res fail(struct sup_hs *hs, const char *fmt, ...)
{
	va_list ap;
	char err[SUP_ERR_MAX];

	va_start(ap, fmt);
	vsnprintf(err, sizeof(err), fmt, ap);
	va_end(ap);
	/* every secret goes; the session id and the reason stay for the caller */
	OPENSSL_cleanse(hs->psk, sizeof(hs->psk));
	OPENSSL_cleanse(hs->priv, sizeof(hs->priv));
	OPENSSL_cleanse(hs->dh, sizeof(hs->dh));
	OPENSSL_cleanse(&hs->keys, sizeof(hs->keys));
	OPENSSL_cleanse(hs->want_tag, sizeof(hs->want_tag));
	hs->out_len = hs->out_off = 0;
	hs->state = HS_ERR;
	memcpy(hs->err, err, sizeof(err));
	return SUP_HS_ERR;
}

int sup_hs_supporter_fixed(struct sup_hs *hs, const uint8_t psk[SUP_PSK_LEN], const char *session,
			   unsigned service, const uint8_t nonce[32], const uint8_t priv[32])
{
	memset(hs, 0, sizeof(*hs));
	hs->role = SUP_SUPPORTER;
	if (!sup_id_valid(session)) {
		fail(hs, "not a support session id (sup- and 10 of a-z 0-9)");
		return -1;
	}
	if (service >= SUP_SERVICES_MAX) {
		fail(hs, "service index %u out of range (0-%d)", service, SUP_SERVICES_MAX - 1);
		return -1;
	}
	memcpy(hs->session, session, SUP_ID_LEN + 1);
	hs->service = service;
	memcpy(hs->psk, psk, SUP_PSK_LEN);
	memcpy(hs->nonce, nonce, 32);
	memcpy(hs->priv, priv, 32);
	X25519_public_from_private(hs->pub, hs->priv);
	memcpy(hs->sup1, "NVS1", 4);
	memcpy(hs->sup1 + 4, session, SUP_ID_LEN);
	hs->sup1[18] = (uint8_t)service;
	memcpy(hs->sup1 + 19, hs->nonce, 32);
	memcpy(hs->sup1 + 51, hs->pub, 32);
	memcpy(hs->out, hs->sup1, SUP1_LEN);
	hs->out_len = SUP1_LEN;
	hs->state = HS_WAIT_SUP2;
	return 0;
}

int sup_hs_supporter(struct sup_hs *hs, const uint8_t psk[SUP_PSK_LEN], const char *session,
		     unsigned service)
{
	uint8_t nonce[32], priv[32], pub[32];
	int r;

	RAND_bytes(nonce, sizeof(nonce));
	X25519_keypair(pub, priv);
	r = sup_hs_supporter_fixed(hs, psk, session, service, nonce, priv);
	OPENSSL_cleanse(priv, sizeof(priv));
	return r;
}

void sup_hs_device_fixed(struct sup_hs *hs, const uint8_t nonce[32], const uint8_t priv[32])
{
	memset(hs, 0, sizeof(*hs));
	hs->role = SUP_DEVICE;
	memcpy(hs->nonce, nonce, 32);
	memcpy(hs->priv, priv, 32);
	X25519_public_from_private(hs->pub, hs->priv);
	hs->state = HS_WAIT_SUP1;
}

void sup_hs_device(struct sup_hs *hs)
{
	uint8_t nonce[32], priv[32], pub[32];

	RAND_bytes(nonce, sizeof(nonce));
	X25519_keypair(pub, priv);
	sup_hs_device_fixed(hs, nonce, priv);
	OPENSSL_cleanse(priv, sizeof(priv));
}

/* Device: SUP1 is in hs->in. */
static enum sup_hs_res got_sup1(struct sup_hs *hs)
{
	memcpy(hs->session, hs->in + 4, SUP_ID_LEN);
	hs->session[SUP_ID_LEN] = 0;
	if (!sup_id_valid(hs->session)) {
		hs->session[0] = 0;
		return fail(hs,
			    "bad message: the session id in SUP1 is not sup- and 10 of a-z 0-9");
	}
	hs->service = hs->in[18];
	if (hs->service >= SUP_SERVICES_MAX)
		return fail(hs, "bad message: service index %u in SUP1 (at most %d)", hs->service,
			    SUP_SERVICES_MAX - 1);
	memcpy(hs->sup1, hs->in, SUP1_LEN);
	if (!X25519(hs->dh, hs->priv, hs->sup1 + 51))
		return fail(hs, "bad message: the supporter's X25519 key is of low order");
	OPENSSL_cleanse(hs->priv, sizeof(hs->priv));
	hs->in_len = 0;
	hs->state = HS_WAIT_PSK;
	return SUP_HS_PSK;
}

int sup_hs_psk(struct sup_hs *hs, const uint8_t psk[SUP_PSK_LEN])
{
	uint8_t td[32 + SUP_TAG_LEN];

	if (hs->role != SUP_DEVICE || hs->state != HS_WAIT_PSK)
		return -1;
	transcript(hs->sup1, hs->nonce, hs->pub, hs->th);
	if (sup_kdf(psk, hs->dh, hs->th, &hs->keys) < 0) {
		fail(hs, "key derivation failed");
		return -1;
	}
	OPENSSL_cleanse(hs->dh, sizeof(hs->dh));
	memcpy(hs->out, "NVS2", 4);
	memcpy(hs->out + 4, hs->nonce, 32);
	memcpy(hs->out + 36, hs->pub, 32);
	hmac32(hs->keys.conf_d, hs->th, 32, hs->out + 68);
	hs->out_len = SUP2_LEN;
	hs->out_off = 0;
	memcpy(td, hs->th, 32);
	memcpy(td + 32, hs->out + 68, SUP_TAG_LEN);
	hmac32(hs->keys.conf_s, td, sizeof(td), hs->want_tag);
	hs->state = HS_WAIT_TAG_S;
	return 0;
}

/* Device: tag_s is in hs->in. */
static enum sup_hs_res got_tag_s(struct sup_hs *hs)
{
	if (CRYPTO_memcmp(hs->in, hs->want_tag, SUP_TAG_LEN))
		return fail(hs, "wrong pre-shared key for support session %s", hs->session);
	OPENSSL_cleanse(hs->want_tag, sizeof(hs->want_tag));
	hs->state = HS_DONE;
	return SUP_HS_DONE;
}

/* Supporter: SUP2 is in hs->in. */
static enum sup_hs_res got_sup2(struct sup_hs *hs)
{
	const uint8_t *nonce_d = hs->in + 4, *pub_d = hs->in + 36, *tag_d = hs->in + 68;
	uint8_t want[SUP_TAG_LEN], td[32 + SUP_TAG_LEN];

	if (!X25519(hs->dh, hs->priv, pub_d))
		return fail(hs, "bad message from the device: its X25519 key is of low order");
	OPENSSL_cleanse(hs->priv, sizeof(hs->priv));
	transcript(hs->sup1, nonce_d, pub_d, hs->th);
	if (sup_kdf(hs->psk, hs->dh, hs->th, &hs->keys) < 0)
		return fail(hs, "key derivation failed");
	OPENSSL_cleanse(hs->psk, sizeof(hs->psk));
	OPENSSL_cleanse(hs->dh, sizeof(hs->dh));
	hmac32(hs->keys.conf_d, hs->th, 32, want);
	if (CRYPTO_memcmp(want, tag_d, SUP_TAG_LEN))
		return fail(hs, "wrong pre-shared key for support session %s", hs->session);
	memcpy(td, hs->th, 32);
	memcpy(td + 32, tag_d, SUP_TAG_LEN);
	hmac32(hs->keys.conf_s, td, sizeof(td), hs->out);
	hs->out_len = SUP_TAG_LEN;
	hs->out_off = 0;
	hs->state = HS_DONE;
	return SUP_HS_DONE;
}

enum sup_hs_res sup_hs_feed(struct sup_hs *hs, const uint8_t *in, size_t n, size_t *used)
{
	size_t want, take;

	*used = 0;
	switch (hs->state) {
	case HS_WAIT_SUP1:
		want = SUP1_LEN;
		break;
	case HS_WAIT_SUP2:
		want = SUP2_LEN;
		break;
	case HS_WAIT_TAG_S:
		want = SUP_TAG_LEN;
		break;
	case HS_WAIT_PSK:
		return SUP_HS_PSK;
	case HS_DONE:
	case HS_FINISHED:
		return SUP_HS_DONE;
	default:
		return SUP_HS_ERR;
	}
	take = want - hs->in_len;
	if (take > n)
		take = n;
	if (take)
		memcpy(hs->in + hs->in_len, in, take);
	hs->in_len += take;
	*used = take;
	/* the magic is judged as soon as it is there: a verdict never waits for more */
	if (hs->state != HS_WAIT_TAG_S && hs->in_len >= 4 &&
	    memcmp(hs->in, hs->state == HS_WAIT_SUP1 ? "NVS1" : "NVS2", 4))
		return fail(hs,
			    hs->state == HS_WAIT_SUP1
				? "bad message: not a support handshake (no NVS1)"
				: "bad message from the device: not a support handshake (no NVS2)");
	if (hs->in_len < want)
		return SUP_HS_MORE;
	if (hs->state == HS_WAIT_SUP1)
		return got_sup1(hs);
	if (hs->state == HS_WAIT_SUP2)
		return got_sup2(hs);
	return got_tag_s(hs);
}

const uint8_t *sup_hs_out(const struct sup_hs *hs, size_t *n)
{
	*n = hs->out_len - hs->out_off;
	return hs->out + hs->out_off;
}

void sup_hs_sent(struct sup_hs *hs, size_t n)
{
	if (n > hs->out_len - hs->out_off)
		n = hs->out_len - hs->out_off;
	hs->out_off += n;
	if (hs->out_off == hs->out_len)
		hs->out_off = hs->out_len = 0;
}

const char *sup_hs_eof(struct sup_hs *hs)
{
	switch (hs->state) {
	case HS_DONE:
	case HS_FINISHED:
		return NULL;
	case HS_ERR:
		return hs->err;
	case HS_WAIT_SUP2:
		if (hs->in_len)
			fail(hs, "the device closed the stream in the middle of its handshake");
		else
			fail(hs,
			     "the device closed the stream without answering the handshake "
			     "(support session %s)",
			     hs->session);
		break;
	case HS_WAIT_TAG_S:
		fail(hs, "the supporter closed the stream before confirming the key (a wrong "
			 "pre-shared key on its side?)");
		break;
	default:
		fail(hs, "the supporter closed the stream before its handshake was complete");
		break;
	}
	return hs->err;
}

void sup_hs_wipe(struct sup_hs *hs)
{
	OPENSSL_cleanse(hs, sizeof(*hs));
}

/* ---------- records ---------- */

static void nonce_of(uint64_t seq, uint8_t nonce[12])
{
	memset(nonce, 0, 4);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(seq >> (56 - 8 * i));
}

void sup_tx_init(struct sup_tx *tx, const uint8_t key[32], uint8_t dir)
{
	memset(tx, 0, sizeof(*tx));
	tx->dir = dir;
	if (!EVP_AEAD_CTX_init(&tx->aead, EVP_aead_chacha20_poly1305(), key, 32,
			       EVP_AEAD_DEFAULT_TAG_LENGTH, NULL)) {
		EVP_AEAD_CTX_zero(&tx->aead);
		tx->ended = true; /* nothing can be sealed */
	}
}

void sup_rx_init(struct sup_rx *rx, const uint8_t key[32], uint8_t dir)
{
	memset(rx, 0, offsetof(struct sup_rx, buf));
	rx->dir = dir;
	rx->state = RX_HDR;
	rx->need = SUP_REC_HDR;
	if (!EVP_AEAD_CTX_init(&rx->aead, EVP_aead_chacha20_poly1305(), key, 32,
			       EVP_AEAD_DEFAULT_TAG_LENGTH, NULL)) {
		EVP_AEAD_CTX_zero(&rx->aead);
		rx->state = RX_ERR;
		errf(rx->err, sizeof(rx->err), "cannot set up the record key");
	}
}

int sup_hs_finish(struct sup_hs *hs, struct sup_tx *tx, struct sup_rx *rx)
{
	bool s = hs->role == SUP_SUPPORTER;

	if (hs->state != HS_DONE)
		return -1;
	sup_tx_init(tx, s ? hs->keys.k_s2d : hs->keys.k_d2s, s ? SUP_DIR_S2D : SUP_DIR_D2S);
	sup_rx_init(rx, s ? hs->keys.k_d2s : hs->keys.k_s2d, s ? SUP_DIR_D2S : SUP_DIR_S2D);
	/* the output (tag_s) may still be unsent: it is no secret */
	OPENSSL_cleanse(hs->psk, sizeof(hs->psk));
	OPENSSL_cleanse(hs->priv, sizeof(hs->priv));
	OPENSSL_cleanse(hs->dh, sizeof(hs->dh));
	OPENSSL_cleanse(&hs->keys, sizeof(hs->keys));
	OPENSSL_cleanse(hs->want_tag, sizeof(hs->want_tag));
	OPENSSL_cleanse(hs->th, sizeof(hs->th));
	hs->state = HS_FINISHED;
	return 0;
}

/* Seals the plaintext (len bytes at out + SUP_REC_HDR, its type byte last) in place. */
static int seal(struct sup_tx *tx, uint8_t *out, size_t outlen, size_t len)
{
	uint8_t nonce[12];
	size_t ctlen = 0;

	nonce_of(tx->seq, nonce);
	if (!EVP_AEAD_CTX_seal(&tx->aead, out + SUP_REC_HDR, &ctlen, outlen - SUP_REC_HDR, nonce,
			       sizeof(nonce), out + SUP_REC_HDR, len, &tx->dir, 1) ||
	    ctlen < SUP_REC_CT_MIN || ctlen > SUP_REC_CT_MAX)
		return -1;
	out[0] = (uint8_t)(ctlen >> 8);
	out[1] = (uint8_t)ctlen;
	tx->seq++;
	return (int)(SUP_REC_HDR + ctlen);
}

int sup_seal(struct sup_tx *tx, const void *data, size_t n, size_t *taken, uint8_t *out,
	     size_t outlen)
{
	size_t m = n < SUP_REC_DATA_MAX ? n : SUP_REC_DATA_MAX;
	int r;

	*taken = 0;
	if (tx->ended || tx->seq >= SUP_REC_LIMIT || n == 0 ||
	    outlen < SUP_REC_HDR + m + SUP_REC_CT_MIN)
		return -1;
	if (data != out + SUP_REC_HDR)
		memmove(out + SUP_REC_HDR, data, m);
	out[SUP_REC_HDR + m] = REC_DATA;
	r = seal(tx, out, outlen, m + 1);
	if (r < 0)
		return -1;
	tx->bytes += m;
	*taken = m;
	return r;
}

int sup_seal_end(struct sup_tx *tx, uint8_t *out, size_t outlen)
{
	int r;

	if (tx->ended || tx->seq >= SUP_REC_LIMIT || outlen < SUP_REC_HDR + SUP_REC_CT_MIN)
		return -1;
	out[SUP_REC_HDR] = REC_END;
	r = seal(tx, out, outlen, 1);
	if (r >= 0)
		tx->ended = true;
	return r;
}

static enum sup_rec_res rx_fail(struct sup_rx *rx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum sup_rec_res rx_fail(struct sup_rx *rx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rx->err, sizeof(rx->err), fmt, ap);
	va_end(ap);
	rx->state = RX_ERR;
	OPENSSL_cleanse(rx->buf, sizeof(rx->buf));
	return SUP_REC_ERR;
}

enum sup_rec_res sup_open(struct sup_rx *rx, const uint8_t *in, size_t n, size_t *used,
			  const uint8_t **data, size_t *len)
{
	uint8_t nonce[12], type;
	size_t take, ptlen = 0, ctlen;

	*used = 0;
	*data = NULL;
	*len = 0;
	if (rx->state == RX_ERR)
		return SUP_REC_ERR;
	if (rx->state == RX_ENDED) {
		if (!n)
			return SUP_REC_END;
		return rx_fail(rx, "bytes after the end of the stream's direction");
	}
	for (;;) {
		take = rx->need - rx->have;
		if (take > n - *used)
			take = n - *used;
		if (take)
			memcpy(rx->buf + rx->have, in + *used, take);
		rx->have += take;
		*used += take;
		if (rx->have < rx->need)
			return SUP_REC_MORE;
		if (rx->state == RX_BODY)
			break;
		ctlen = (size_t)rx->buf[0] << 8 | rx->buf[1];
		if (ctlen < SUP_REC_CT_MIN || ctlen > SUP_REC_CT_MAX)
			return rx_fail(rx, "bad record length %zu (%d-%d)", ctlen, SUP_REC_CT_MIN,
				       SUP_REC_CT_MAX);
		rx->need = SUP_REC_HDR + ctlen;
		rx->state = RX_BODY;
	}
	if (rx->seq >= SUP_REC_LIMIT)
		return rx_fail(rx, "too many records on one stream");
	nonce_of(rx->seq, nonce);
	ctlen = rx->need - SUP_REC_HDR;
	if (!EVP_AEAD_CTX_open(&rx->aead, rx->buf + SUP_REC_HDR, &ptlen, ctlen, nonce,
			       sizeof(nonce), rx->buf + SUP_REC_HDR, ctlen, &rx->dir, 1) ||
	    ptlen != ctlen - 16)
		return rx_fail(rx,
			       "record %llu does not authenticate (altered, replayed, reordered "
			       "or from another key)",
			       (unsigned long long)rx->seq);
	rx->seq++;
	rx->state = RX_HDR;
	rx->have = 0;
	rx->need = SUP_REC_HDR;
	type = rx->buf[SUP_REC_HDR + ptlen - 1];
	if (type == REC_DATA) {
		if (ptlen < 2)
			return rx_fail(rx, "an empty data record");
		*data = rx->buf + SUP_REC_HDR;
		*len = ptlen - 1;
		rx->bytes += ptlen - 1;
		return SUP_REC_DATA;
	}
	if (type == REC_END) {
		if (ptlen != 1)
			return rx_fail(rx, "an end record with data in it");
		rx->state = RX_ENDED;
		return SUP_REC_END;
	}
	return rx_fail(rx, "unknown record type %u", type);
}

const char *sup_rx_eof(struct sup_rx *rx)
{
	if (rx->state == RX_ENDED)
		return NULL;
	if (rx->state == RX_ERR)
		return rx->err;
	rx_fail(rx, "the stream was cut: the peer closed it without ending it%s",
		rx->have ? " (in the middle of a record)" : "");
	return rx->err;
}

void sup_tx_wipe(struct sup_tx *tx)
{
	EVP_AEAD_CTX_cleanup(&tx->aead);
	OPENSSL_cleanse(tx, sizeof(*tx));
}

void sup_rx_wipe(struct sup_rx *rx)
{
	EVP_AEAD_CTX_cleanup(&rx->aead);
	OPENSSL_cleanse(rx, sizeof(*rx));
}

// SPDX-License-Identifier: Apache-2.0
/*
 * Kernel TLS (kTLS) for links whose TLS 1.3 handshake BoringSSL has done.
 * BoringSSL has no C call that returns the traffic secrets, so a keylog
 * callback keeps each SSL's CLIENT_/SERVER_TRAFFIC_SECRET_0 in its ex_data;
 * ktls_install derives the record key and IV from them (HKDF-Expand-Label,
 * RFC 8446 7.1), takes the record sequence numbers from BoringSSL, and hands
 * them to the socket (TCP_ULP "tls", then TLS_TX / TLS_RX). Key material is
 * wiped as soon as the kernel has it. The kernel passes records that are not
 * application data (alerts, KeyUpdate, NewSessionTicket) to user space with
 * their content type; ktls_recv_control reads one and ktls_classify says what
 * it means. The host kernels we build on may lack CONFIG_TLS entirely:
 * ktls_supported probes once so that callers fall back to userspace TLS.
 */
#include "ktls.h"

#include <openssl/is_boringssl.h>

#include <openssl/digest.h>
#include <openssl/hkdf.h>
#include <openssl/mem.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TLS_RX_EXPECT_NO_PAD
#define TLS_RX_EXPECT_NO_PAD 4
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

#define ULP_LIST_PATH  "/proc/sys/net/ipv4/tcp_available_ulp"
#define SECRET_MAX     48 /* SHA-384 */
#define CLIENT_RND_LEN 32
#define REC_ALERT      21
#define REC_HANDSHAKE  22
#define REC_APPDATA    23
#define HS_NEW_TICKET  4
#define HS_KEY_UPDATE  24
#define RECV_BUF       (16384 + 256) /* largest TLS 1.3 plaintext record + slack */

/* ---- captured traffic secrets (per-SSL ex_data) ---- */

/* The TLS 1.3 application traffic secrets of one SSL; len 0 = none / wiped. */
struct ktls_secrets {
	uint8_t client[SECRET_MAX];
	uint8_t server[SECRET_MAX];
	uint8_t client_len, server_len;
	uint8_t used; /* KTLS_TX|KTLS_RX: directions already installed or attempted */
	bool rekeyed; /* a KeyUpdate went either way: the captured secrets are retired */
};

static pthread_once_t idx_once = PTHREAD_ONCE_INIT;
static int secrets_idx = -1;

static void secrets_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index, long argl,
			 void *argp)
{
	if (ptr) {
		OPENSSL_cleanse(ptr, sizeof(struct ktls_secrets));
		OPENSSL_free(ptr);
	}
}

static void idx_init(void)
{
	secrets_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, secrets_free);
}

static struct ktls_secrets *secrets_get(const SSL *ssl)
{
	pthread_once(&idx_once, idx_init);
	if (secrets_idx < 0)
		return NULL;
	return SSL_get_ex_data(ssl, secrets_idx);
}

/* The secret of direction d (KTLS_TX: ours, KTLS_RX: the peer's) and its length. */
static uint8_t *dir_secret(struct ktls_secrets *sec, const SSL *ssl, int d, uint8_t **len)
{
	bool client = (d == KTLS_TX) != !!SSL_is_server(ssl);

	*len = client ? &sec->client_len : &sec->server_len;
	return client ? sec->client : sec->server;
}

/*
 * "LABEL <client_random hex> <secret hex>": keeps the two application
 * traffic secrets of this SSL and ignores every other line. The callback
 * gets a const SSL, but it is the connection's own object, not a copy.
 */
static void keylog_cb(const SSL *cssl, const char *line)
{
	static const char c_label[] = "CLIENT_TRAFFIC_SECRET_0 ";
	static const char s_label[] = "SERVER_TRAFFIC_SECRET_0 ";
	SSL *ssl = (SSL *)cssl;
	uint8_t rnd[CLIENT_RND_LEN], ours[CLIENT_RND_LEN];
	char rnd_hex[2 * CLIENT_RND_LEN + 1];
	struct ktls_secrets *sec;
	const char *p;
	uint8_t *dst, *dst_len;
	size_t hexlen;
	bool client;

	if (strncmp(line, c_label, sizeof(c_label) - 1) == 0)
		client = true;
	else if (strncmp(line, s_label, sizeof(s_label) - 1) == 0)
		client = false;
	else
		return;
	p = line + sizeof(c_label) - 1; /* both labels have the same length */
	if (strlen(p) < 2 * CLIENT_RND_LEN + 1 || p[2 * CLIENT_RND_LEN] != ' ')
		return;
	memcpy(rnd_hex, p, 2 * CLIENT_RND_LEN);
	rnd_hex[2 * CLIENT_RND_LEN] = 0;
	if (hex_decode(rnd_hex, rnd, CLIENT_RND_LEN) < 0)
		return;
	if (SSL_get_client_random(ssl, ours, sizeof(ours)) != sizeof(ours) ||
	    CRYPTO_memcmp(rnd, ours, sizeof(ours)) != 0)
		return;
	p += 2 * CLIENT_RND_LEN + 1;
	hexlen = strlen(p);
	if (hexlen != 64 && hexlen != 96)
		return;

	sec = secrets_get(ssl);
	if (!sec) {
		if (secrets_idx < 0)
			return;
		sec = OPENSSL_malloc(sizeof(*sec));
		if (!sec)
			return;
		memset(sec, 0, sizeof(*sec));
		if (!SSL_set_ex_data(ssl, secrets_idx, sec)) {
			OPENSSL_free(sec);
			return;
		}
	}
	dst = client ? sec->client : sec->server;
	dst_len = client ? &sec->client_len : &sec->server_len;
	if (hex_decode(p, dst, hexlen / 2) < 0) {
		OPENSSL_cleanse(dst, SECRET_MAX);
		*dst_len = 0;
		return;
	}
	*dst_len = (uint8_t)(hexlen / 2);
}

/*
 * Every handshake message BoringSSL reads or writes passes here: a KeyUpdate
 * after the handshake (the only kind there is) replaces the traffic secret
 * of its direction, so the secret_0 the keylog gave us would install keys
 * that are retired (and restart the sequence at a nonce already used).
 */
static void msg_cb(int is_write, int version, int content_type, const void *buf, size_t len,
		   SSL *ssl, void *arg)
{
	struct ktls_secrets *sec;

	if (content_type != REC_HANDSHAKE || len < 1 || ((const uint8_t *)buf)[0] != HS_KEY_UPDATE)
		return;
	sec = secrets_get(ssl);
	if (sec)
		sec->rekeyed = true;
}

int ktls_ctx_prepare(SSL_CTX *ctx)
{
	if (!ctx)
		return -EINVAL;
	pthread_once(&idx_once, idx_init);
	if (secrets_idx < 0)
		return -ENOMEM;
	SSL_CTX_set_keylog_callback(ctx, keylog_cb);
	SSL_CTX_set_msg_callback(ctx, msg_cb);
	/* a ticket would be the first record after the handshake, sent by BoringSSL */
	if (!SSL_CTX_set_num_tickets(ctx, 0))
		return -EINVAL;
	return 0;
}

/* ---- support probe ---- */

/* Reads the kernel's list of TCP ULPs into list (one line, "" if unreadable): true if "tls" is in
 * it. */
static bool ulp_listed(char *list, size_t len)
{
	FILE *f = fopen(ULP_LIST_PATH, "r");
	char copy[128], *tok, *save = NULL;

	list[0] = 0;
	if (!f)
		return false;
	if (!fgets(list, (int)len, f))
		list[0] = 0;
	fclose(f);
	list[strcspn(list, "\n")] = 0;
	str_copy(copy, sizeof(copy), list);
	for (tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
		if (strcmp(tok, "tls") == 0)
			return true;
	return false;
}

/* Sets TCP_ULP "tls" on a connected loopback socket: loads tls.ko where it exists. 0 or -errno. */
static int ulp_try_loopback(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t slen = sizeof(sa);
	int lfd = -1, cfd = -1, afd = -1, r = 0;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || cfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 1) < 0 || getsockname(lfd, (struct sockaddr *)&sa, &slen) < 0 ||
	    connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		goto out;
	}
	afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (afd < 0) {
		r = -errno;
		goto out;
	}
	if (setsockopt(cfd, SOL_TCP, TCP_ULP, "tls", 3) < 0)
		r = -errno;
out:
	if (afd >= 0)
		close(afd);
	if (cfd >= 0)
		close(cfd);
	if (lfd >= 0)
		close(lfd);
	return r;
}

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool probe_ok;
static char probe_why[192];

static void probe(void)
{
	char list[128];
	int r;

	if (ulp_listed(list, sizeof(list))) {
		probe_ok = true;
		return;
	}
	r = ulp_try_loopback();
	if (r == 0 || ulp_listed(list, sizeof(list))) {
		probe_ok = true;
		return;
	}
	if (list[0])
		snprintf(probe_why, sizeof(probe_why),
			 "the kernel has no TLS ULP (tcp_available_ulp: %s)", list);
	else
		snprintf(probe_why, sizeof(probe_why),
			 "the kernel has no TLS ULP (setsockopt TCP_ULP \"tls\": %s)",
			 strerror(-r));
}

bool ktls_supported(char *why, size_t len)
{
	pthread_once(&probe_once, probe);
	if (!probe_ok && why && len)
		str_copy(why, len, probe_why);
	return probe_ok;
}

/* ---- key derivation ---- */

int ktls_derive(uint16_t suite, const uint8_t *secret, size_t secret_len, uint8_t *key,
		size_t *key_len, uint8_t iv[12])
{
	/* HkdfLabel: uint16 length, opaque label<7..255> = "tls13 " + label, context<0..255> = ""
	 */
	static const char prefix[] = "tls13 ";
	const EVP_MD *md;
	size_t klen;
	uint8_t info[2 + 1 + 6 + 3 + 1];
	const struct {
		const char *label;
		uint8_t *out;
		size_t len;
	} parts[2] = {{"key", key, 0}, {"iv", iv, 12}};

	switch (suite) {
	case 0x1301: /* TLS_AES_128_GCM_SHA256 */
		md = EVP_sha256();
		klen = 16;
		break;
	case 0x1302: /* TLS_AES_256_GCM_SHA384 */
		md = EVP_sha384();
		klen = 32;
		break;
	case 0x1303: /* TLS_CHACHA20_POLY1305_SHA256 */
		md = EVP_sha256();
		klen = 32;
		break;
	default:
		return -EINVAL;
	}
	if (!secret || !key || !key_len || !iv || secret_len != EVP_MD_size(md))
		return -EINVAL;
	for (int i = 0; i < 2; i++) {
		size_t llen = strlen(parts[i].label), n = 0, olen = i == 0 ? klen : parts[i].len;

		info[n++] = (uint8_t)(olen >> 8);
		info[n++] = (uint8_t)olen;
		info[n++] = (uint8_t)(sizeof(prefix) - 1 + llen);
		memcpy(info + n, prefix, sizeof(prefix) - 1);
		n += sizeof(prefix) - 1;
		memcpy(info + n, parts[i].label, llen);
		n += llen;
		info[n++] = 0; /* empty context */
		if (!HKDF_expand(parts[i].out, olen, md, secret, secret_len, info, n)) {
			OPENSSL_cleanse(key, KTLS_KEY_MAX);
			OPENSSL_cleanse(iv, 12);
			return -EINVAL;
		}
	}
	*key_len = klen;
	return 0;
}

/* ---- install ---- */

union crypto_info {
	struct tls_crypto_info base;
	struct tls12_crypto_info_aes_gcm_128 g128;
	struct tls12_crypto_info_aes_gcm_256 g256;
	struct tls12_crypto_info_chacha20_poly1305 chacha;
};

static void seq_be(uint8_t out[8], uint64_t seq)
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (uint8_t)seq;
		seq >>= 8;
	}
}

/* Fills ci for one direction; returns its size, or -EINVAL. */
static int crypto_info_fill(union crypto_info *ci, uint16_t suite, const uint8_t *secret,
			    size_t secret_len, uint64_t seq)
{
	uint8_t key[KTLS_KEY_MAX], iv[12];
	size_t klen;
	int r;

	memset(ci, 0, sizeof(*ci));
	r = ktls_derive(suite, secret, secret_len, key, &klen, iv);
	if (r < 0)
		return r;
	ci->base.version = TLS_1_3_VERSION;
	switch (suite) {
	case 0x1301: /* GCM: the 12-byte IV is salt (4) + iv (8) */
		ci->base.cipher_type = TLS_CIPHER_AES_GCM_128;
		memcpy(ci->g128.salt, iv, 4);
		memcpy(ci->g128.iv, iv + 4, 8);
		memcpy(ci->g128.key, key, 16);
		seq_be(ci->g128.rec_seq, seq);
		r = sizeof(ci->g128);
		break;
	case 0x1302:
		ci->base.cipher_type = TLS_CIPHER_AES_GCM_256;
		memcpy(ci->g256.salt, iv, 4);
		memcpy(ci->g256.iv, iv + 4, 8);
		memcpy(ci->g256.key, key, 32);
		seq_be(ci->g256.rec_seq, seq);
		r = sizeof(ci->g256);
		break;
	default: /* 0x1303: the whole IV, no salt */
		ci->base.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
		memcpy(ci->chacha.iv, iv, 12);
		memcpy(ci->chacha.key, key, 32);
		seq_be(ci->chacha.rec_seq, seq);
		r = sizeof(ci->chacha);
		break;
	}
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(iv, sizeof(iv));
	return r;
}

__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, int r,
						      const char *fmt, ...)
{
	char msg[160];
	va_list ap;

	if (!err || !errlen)
		return r;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "kTLS: %s", msg);
	return r;
}

int ktls_install(SSL *ssl, int fd, int dirs, char *err, size_t errlen)
{
	static const int order[2] = {KTLS_TX, KTLS_RX};
	union crypto_info ci;
	struct ktls_secrets *sec;
	const SSL_CIPHER *cipher;
	uint16_t suite;
	bool ulp_set = false;
	int r = 0;

	if (!ssl || fd < 0 || dirs == 0 || (dirs & ~(KTLS_TX | KTLS_RX)))
		return fail(err, errlen, -EINVAL, "bad arguments");
	if (!SSL_is_init_finished(ssl))
		return fail(err, errlen, -EINVAL, "the handshake is not finished");
	if (SSL_version(ssl) != TLS1_3_VERSION) {
		if (SSL_version(ssl) == TLS1_2_VERSION)
			return fail(err, errlen, -EPROTONOSUPPORT,
				    "TLS 1.2 is not supported on links");
		return fail(err, errlen, -EPROTONOSUPPORT, "%s is not supported on links",
			    SSL_get_version(ssl));
	}
	cipher = SSL_get_current_cipher(ssl);
	suite = cipher ? SSL_CIPHER_get_protocol_id(cipher) : 0;
	if (suite != 0x1301 && suite != 0x1302 && suite != 0x1303)
		return fail(err, errlen, -EOPNOTSUPP, "cipher suite %s is not supported",
			    cipher ? SSL_CIPHER_get_name(cipher) : "(none)");
	sec = secrets_get(ssl);
	if (sec && sec->rekeyed)
		return fail(err, errlen, -EKEYEXPIRED,
			    "a KeyUpdate was exchanged before the switch (the captured keys are "
			    "retired)");
	for (int i = 0; i < 2; i++) {
		int d = order[i];
		uint8_t *len;

		if (!(dirs & d))
			continue;
		if (sec && (sec->used & d))
			return fail(err, errlen, -EALREADY, "%s was installed (or tried) already",
				    d == KTLS_TX ? "TX" : "RX");
		if (!sec || (dir_secret(sec, ssl, d, &len), *len == 0))
			return fail(err, errlen, -ENOKEY,
				    "no traffic secret captured (keylog callback not installed?)");
	}

	/* From here on the secrets of dirs are consumed, whatever happens. */
	for (int i = 0; i < 2 && r == 0; i++) {
		int d = order[i], size;
		const char *name = d == KTLS_TX ? "TLS_TX" : "TLS_RX";
		uint8_t *secret, *len;
		uint64_t seq;

		if (!(dirs & d))
			continue;
		secret = dir_secret(sec, ssl, d, &len);
		seq = d == KTLS_TX ? SSL_get_write_sequence(ssl) : SSL_get_read_sequence(ssl);
		size = crypto_info_fill(&ci, suite, secret, *len, seq);
		if (size < 0) {
			r = fail(err, errlen, size, "cannot derive the %s key", name);
			break;
		}
		if (!ulp_set) {
			if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", 3) < 0 && errno != EEXIST) {
				int e = errno;

				r = fail(err, errlen, -e, "setsockopt TCP_ULP \"tls\": %s",
					 strerror(e));
				break;
			}
			ulp_set = true;
		}
		if (setsockopt(fd, SOL_TLS, d == KTLS_TX ? TLS_TX : TLS_RX, &ci, (socklen_t)size) <
		    0) {
			int e = errno;

			r = fail(err, errlen, -e, "setsockopt %s: %s", name, strerror(e));
		} else if (d == KTLS_RX) {
			/*
			 * Neither BoringSSL nor kTLS pads TLS 1.3 records: the kernel
			 * may then decrypt straight into the reader's buffer (a padded
			 * record still works, decrypted again the slow way). Kernels
			 * before 6.0 lack the option: no harm.
			 */
			int one = 1;

			setsockopt(fd, SOL_TLS, TLS_RX_EXPECT_NO_PAD, &one, sizeof(one));
		}
	}
	OPENSSL_cleanse(&ci, sizeof(ci));
	for (int i = 0; i < 2; i++) {
		int d = order[i];
		uint8_t *len;

		if (!(dirs & d))
			continue;
		OPENSSL_cleanse(dir_secret(sec, ssl, d, &len), SECRET_MAX);
		*len = 0;
		sec->used |= (uint8_t)d;
	}
	return r;
}

/* ---- control records ---- */

int ktls_send_close_notify(int fd)
{
	static const uint8_t alert[2] = {1, 0}; /* warning, close_notify */
	union {
		char buf[CMSG_SPACE(sizeof(uint8_t))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)alert, .iov_len = sizeof(alert)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *cmsg;
	ssize_t n;

	memset(&u, 0, sizeof(u));
	cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_TLS;
	cmsg->cmsg_type = TLS_SET_RECORD_TYPE;
	cmsg->cmsg_len = CMSG_LEN(sizeof(uint8_t));
	*CMSG_DATA(cmsg) = REC_ALERT;
	n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n == (ssize_t)sizeof(alert) ? 0 : -EIO;
}

static const struct {
	uint8_t code;
	const char *name;
} alert_names[] = {
    {0, "close_notify"},
    {10, "unexpected_message"},
    {20, "bad_record_mac"},
    {22, "record_overflow"},
    {40, "handshake_failure"},
    {42, "bad_certificate"},
    {43, "unsupported_certificate"},
    {44, "certificate_revoked"},
    {45, "certificate_expired"},
    {46, "certificate_unknown"},
    {47, "illegal_parameter"},
    {48, "unknown_ca"},
    {49, "access_denied"},
    {50, "decode_error"},
    {51, "decrypt_error"},
    {70, "protocol_version"},
    {71, "insufficient_security"},
    {80, "internal_error"},
    {86, "inappropriate_fallback"},
    {90, "user_canceled"},
    {109, "missing_extension"},
    {110, "unsupported_extension"},
    {112, "unrecognized_name"},
    {113, "bad_certificate_status_response"},
    {115, "unknown_psk_identity"},
    {116, "certificate_required"},
    {120, "no_application_protocol"},
};

static const char *alert_name(uint8_t code)
{
	for (size_t i = 0; i < ARRAY_SIZE(alert_names); i++)
		if (alert_names[i].code == code)
			return alert_names[i].name;
	return NULL;
}

#define SAY(...)                                                                                   \
	do {                                                                                       \
		if (reason && rlen)                                                                \
			snprintf(reason, rlen, __VA_ARGS__);                                       \
	} while (0)

enum ktls_record ktls_classify(uint8_t type, const uint8_t *payload, size_t len, char *reason,
			       size_t rlen)
{
	if (!payload)
		len = 0;
	switch (type) {
	case REC_APPDATA:
		SAY("application data (%zu bytes)", len);
		return KTLS_REC_DATA;
	case REC_ALERT: {
		const char *level, *name;

		if (len != 2) {
			SAY("peer sent a malformed alert (%zu bytes)", len);
			return KTLS_REC_OTHER;
		}
		if (payload[1] == 0) {
			SAY("peer sent close_notify");
			return KTLS_REC_CLOSE_NOTIFY;
		}
		level = payload[0] == 1 ? "warning" : payload[0] == 2 ? "fatal" : "unknown-level";
		name = alert_name(payload[1]);
		if (name)
			SAY("peer sent %s alert %u (%s)", level, payload[1], name);
		else
			SAY("peer sent %s alert %u", level, payload[1]);
		return KTLS_REC_ALERT;
	}
	case REC_HANDSHAKE:
		if (len == 0) {
			SAY("peer sent an empty handshake record");
			return KTLS_REC_OTHER;
		}
		if (payload[0] == HS_KEY_UPDATE) {
			SAY("peer sent KeyUpdate: not supported on kTLS links");
			return KTLS_REC_KEY_UPDATE;
		}
		if (payload[0] == HS_NEW_TICKET) {
			SAY("peer sent NewSessionTicket after the handshake");
			return KTLS_REC_NEW_SESSION_TICKET;
		}
		SAY("peer sent handshake message %u after the handshake", payload[0]);
		return KTLS_REC_OTHER;
	default:
		SAY("unexpected TLS record type %u", type);
		return KTLS_REC_OTHER;
	}
}

int ktls_recv_control(int fd, char *reason, size_t rlen)
{
	uint8_t buf[RECV_BUF];
	union {
		char buf[CMSG_SPACE(sizeof(uint8_t))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *cmsg;
	ssize_t n;
	int type = -1;

	memset(&u, 0, sizeof(u));
	n = recvmsg(fd, &msg, MSG_DONTWAIT);
	if (n < 0) {
		int e = errno == EWOULDBLOCK ? EAGAIN : errno;

		if (e == EAGAIN)
			SAY("kTLS: no record queued yet");
		else
			SAY("kTLS: recvmsg: %s", strerror(e));
		return -e;
	}
	for (cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg))
		if (cmsg->cmsg_level == SOL_TLS && cmsg->cmsg_type == TLS_GET_RECORD_TYPE &&
		    cmsg->cmsg_len >= CMSG_LEN(sizeof(uint8_t)))
			type = *CMSG_DATA(cmsg);
	if (type < 0) {
		if (n == 0) {
			SAY("peer closed the connection without close_notify");
			return -EPIPE;
		}
		type = REC_APPDATA; /* no record type: plain data */
	}
	return (int)ktls_classify((uint8_t)type, buf, (size_t)n, reason, rlen);
}

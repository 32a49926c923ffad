/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel TLS for links whose TLS 1.3 handshake was done by BoringSSL: the
 * traffic secrets are captured through the keylog callback, the record keys
 * derived here with HKDF-Expand-Label and handed to the socket with
 * TCP_ULP "tls" + TLS_TX / TLS_RX. After that the kernel encrypts and
 * decrypts application data; non-data records (alerts, post-handshake
 * messages) reach user space through the helpers at the bottom.
 */
#ifndef NAVE_KTLS_H
#define NAVE_KTLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KTLS_TX 1
#define KTLS_RX 2

#define KTLS_KEY_MAX 32 /* longest record key (AES-256-GCM, ChaCha20-Poly1305) */

/*
 * True when the kernel offers the "tls" TCP ULP: reads
 * /proc/sys/net/ipv4/tcp_available_ulp; if "tls" is not listed, sets TCP_ULP
 * "tls" once on a connected loopback TCP pair (which autoloads the module
 * where it exists) and reads again. When false, why (may be NULL) gets a
 * one-line reason. Thread-safe; probed once, then cached.
 */
bool ktls_supported(char *why, size_t len);

/*
 * Prepares ctx for connections that may move to kTLS: installs a keylog
 * callback that keeps each SSL's TLS 1.3 CLIENT_/SERVER_TRAFFIC_SECRET_0 in
 * its ex_data (wiped and freed with the SSL), a message callback that notes
 * a KeyUpdate either way (after one, ktls_install refuses: those secrets are
 * retired), and sets no session tickets. Replaces any keylog and message
 * callbacks already set. Idempotent. 0 or -errno.
 */
int ktls_ctx_prepare(SSL_CTX *ctx);

/*
 * After SSL_do_handshake returned 1 on ssl (TLS 1.3, ctx prepared above):
 * derives the record keys of dirs (KTLS_TX | KTLS_RX) from the captured
 * secrets, sets TCP_ULP "tls" on fd (an fd that has it already is fine) and
 * TLS_TX / TLS_RX with the negotiated AEAD (AES-128-GCM, AES-256-GCM,
 * ChaCha20-Poly1305) and BoringSSL's current sequence numbers. TX and RX may
 * be installed in separate calls; TX is set before RX. The derived keys and
 * the captured secrets of the requested directions are wiped whatever the
 * outcome, so a failed install is not retried: the link stays in userspace
 * BoringSSL (when nothing was installed) or is closed. 0, or -errno with a
 * one-line reason in err ("kTLS: setsockopt TLS_RX: Invalid argument").
 */
int ktls_install(SSL *ssl, int fd, int dirs, char *err, size_t errlen);

/*
 * HKDF-Expand-Label(secret, "key" / "iv", "", len) of RFC 8446 7.1 with the
 * hash of suite (SHA-256 for 0x1301 and 0x1303, SHA-384 for 0x1302):
 * key (KTLS_KEY_MAX bytes of room; *key_len gets 16 or 32) and iv (12).
 * secret_len must be the hash length. 0 or -EINVAL. Pure.
 */
int ktls_derive(uint16_t suite, const uint8_t *secret, size_t secret_len, uint8_t *key,
		size_t *key_len, uint8_t iv[12]);

/*
 * Sends a close_notify alert on a kTLS TX socket (one record of type 21,
 * payload {1, 0}) without blocking. 0, -EAGAIN when the send buffer is
 * full, or -errno.
 */
int ktls_send_close_notify(int fd);

/* What a record that is not application data means for the link. */
enum ktls_record {
	KTLS_REC_DATA = 0,
	KTLS_REC_CLOSE_NOTIFY,
	KTLS_REC_ALERT,
	KTLS_REC_KEY_UPDATE,
	KTLS_REC_NEW_SESSION_TICKET,
	KTLS_REC_OTHER,
};

/*
 * Classifies a record of TLS content type `type` (21 alert, 22 handshake,
 * 23 application data) with its plaintext payload (len bytes, never read
 * past) and writes a one-line reason for the log into reason (may be NULL):
 * "peer sent close_notify", "peer sent fatal alert 40 (handshake_failure)",
 * "peer sent KeyUpdate: not supported on kTLS links", ... Pure.
 */
enum ktls_record ktls_classify(uint8_t type, const uint8_t *payload, size_t len, char *reason,
			       size_t rlen);

/*
 * After a recv on a kTLS RX socket failed with EIO (the next record is not
 * application data): reads that one record (recvmsg, MSG_DONTWAIT, with a
 * TLS_GET_RECORD_TYPE control buffer) and classifies it. Returns the
 * enum ktls_record (>= 0) with a reason, or -errno with a reason: -EAGAIN
 * (nothing queued yet), -EPIPE (the peer closed TCP), the recvmsg error.
 * Call it only after that EIO: if the next record is data after all, its
 * bytes are consumed and KTLS_REC_DATA is returned (treat as an error).
 */
int ktls_recv_control(int fd, char *reason, size_t rlen);

#endif

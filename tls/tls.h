/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS contexts and PKI helpers over BoringSSL: the server context (TLS 1.3
 * only, ALPN "nave/1", optional post-quantum hybrid), the client context with
 * CA-file / system-CA / pinned-fingerprint verification, the self-signed
 * server pair made on first run, and certificate fingerprints.
 * The datapath drives SSL objects through its own transport (datapath/xprt.h).
 */
#ifndef NAVE_TLS_H
#define NAVE_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#define TLS_FPR_LEN 96 /* "AB:CD:..." 32 bytes -> 95 chars + NUL */

/*
 * Makes sure cert_path/key_path exist: when both are missing, writes a new
 * self-signed P-256 pair (CN = domain, SAN: domain, localhost, 127.0.0.1, ::1;
 * 10 years; key mode 0600), creating the parent directory. 0 or -errno with
 * a one-line reason in err.
 */
int tls_ensure_selfsigned(const char *cert_path, const char *key_path, const char *domain,
			  char *err, size_t errlen);

/* Server context: TLS 1.3 only, ALPN nave/1 required, no session tickets. NULL + err on failure. */
/*
 * A context for TLS the HTTPS edge terminates (a domain's certificate, or none for
 * the base every edge connection starts from): TLS 1.3, classic groups (what
 * browsers speak), ALPN http/1.1 when offered, no session cache or tickets.
 */
SSL_CTX *tls_edge_ctx(const char *cert_path, const char *key_path, char *err, size_t errlen);
SSL_CTX *tls_server_ctx(const char *cert_path, const char *key_path, bool pq, char *err,
			size_t errlen);

/*
 * Makes a server context ask clients for a certificate (optional: a client
 * without one still connects) and take any chain the client proves it holds
 * the key of; the caller checks the chain after the handshake (tls/pki.h).
 * Ed25519, ECDSA and RSA-PSS signatures. 0 or -EINVAL.
 */
int tls_server_ask_client_cert(SSL_CTX *ctx);
/* the most a client's Certificate message may hold, and the certificates kept of it */
#define TLS_CLIENT_CERTS_BYTES 16384
#define TLS_CLIENT_CERTS_MAX   5
/*
 * After a handshake on such a context: the client's certificates (DER one after
 * the other, leaf first, at most TLS_CLIENT_CERTS_MAX), handed over (free()
 * them) and forgotten by ssl; NULL with *len 0 when it presented none.
 */
uint8_t *tls_take_client_certs(SSL *ssl, size_t *len);

/*
 * Client context: TLS 1.3, ALPN nave/1. Verification: if fingerprint is set
 * (hex SHA-256 of the leaf DER, colons/case ignored) the leaf must match it
 * and nothing else is checked; else if ca_file is set the chain must verify
 * against it; else against the system CAs. Host name checking is done per
 * connection with tls_client_set_host(). NULL + err on failure.
 */
SSL_CTX *tls_client_ctx(const char *ca_file, const char *fingerprint, bool pq, char *err,
			size_t errlen);
/*
 * The certificate (chain file) and key a client presents when the server
 * asks (nave's certificate logins: nodes/NAME/tls.crt and tls.key). 0 or
 * -EINVAL with a one-line reason in err.
 */
int tls_client_use_cert(SSL_CTX *ctx, const char *cert_path, const char *key_path, char *err,
			size_t errlen);
/* Sets SNI and the expected host name (or IP literal) on a client SSL. 0 or -EINVAL. */
int tls_client_set_host(SSL *ssl, const char *host);

/* SHA-256 fingerprint of a PEM certificate file, as "AB:CD:...". 0 or -errno. */
int tls_cert_fingerprint_file(const char *cert_path, char out[TLS_FPR_LEN]);
/* Same for the peer certificate of an established connection. */
int tls_peer_fingerprint(const SSL *ssl, char out[TLS_FPR_LEN]);

/* Every tls_verify_error() message starts with this (callers may match it). */
#define TLS_VERIFY_ERROR_PREFIX "TLS: server certificate "

/*
 * After a failed client handshake: when it failed because the server's
 * certificate was refused, writes one line saying why into buf and returns
 * buf: "TLS: server certificate fingerprint mismatch: expected AB:CD:...,
 * got 12:34:..." (pinned; both in the colon form of tls_peer_fingerprint) or
 * "TLS: server certificate not trusted (<X.509 reason>)" (CA file or system
 * CAs). Returns NULL when verification did not fail (the handshake failed
 * for another reason, or did not get that far). 252 bytes hold the longest.
 * Leaves BoringSSL's error queue alone.
 */
const char *tls_verify_error(const SSL *ssl, char *buf, size_t len);

/* Normalises a user-given fingerprint into 32 bytes. 0 or -EINVAL. */
int tls_fingerprint_parse(const char *s, unsigned char out[32]);

/* One line describing the last BoringSSL error (and clears the queue). */
const char *tls_last_error(char *buf, size_t len);

#endif

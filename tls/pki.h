/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nave's small PKI over BoringSSL's X509 API: a root CA, certificates for
 * nodes (tunnels) and admins, a CRL, and the verifier relayd and controld's
 * admin listener use on the certificates clients present.
 *
 * Layout of a PKI directory (what `navectl pki` reads and writes):
 *
 *   DIR/ca/ca.crt          the root CA certificate (0644)
 *   DIR/ca/ca.key          its private key (0600)
 *   DIR/ca/crl.pem         the CA's CRL, re-signed on every revoke (0644)
 *   DIR/nodes/NAME/ca.crt  a copy of the root (0644)
 *   DIR/nodes/NAME/tls.crt NAME's certificate (0644)
 *   DIR/nodes/NAME/tls.key NAME's private key (0600)
 *
 * `pki init` also issues the admin certificate nodes/admin. A certificate's
 * name is its subject CN (also its one SAN, a DNS name); its kind is the
 * subject OU: "node" (a tunnel: the name is the tunnel id) or "admin" (the
 * remote admin API). Names: 1-31 of [A-Za-z0-9._-] (a tunnel id), not
 * starting with '.' (a name is a directory).
 * Verification is chain-only: the chain must end at the CA, every
 * certificate be inside its validity and the leaf's serial not be on the
 * CRL; no host name is checked.
 */
#ifndef NAVE_PKI_H
#define NAVE_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PKI_NAME_MAX   32    /* 31 characters + NUL, as a tunnel id */
#define PKI_SERIAL_MAX 41    /* 20 bytes as hex + NUL */
#define PKI_CHAIN_MAX  4     /* certificates a client may present */
#define PKI_DER_MAX    16384 /* bytes of one presented certificate */
#define PKI_TIME_LEN   32    /* "2026-11-30T12:00:00Z" + NUL */
#define PKI_DAYS_MAX   36500 /* the longest validity pki_init and pki_issue take */

enum pki_kind { PKI_NODE, PKI_ADMIN };
enum pki_key { PKI_ED25519, PKI_P256 };

/* what a verified (or listed) certificate says */
struct pki_ident {
	char name[PKI_NAME_MAX];
	enum pki_kind kind;
	char serial[PKI_SERIAL_MAX];   /* lower-case hex, no leading zeros */
	int64_t not_before, not_after; /* Unix seconds */
	bool revoked;		       /* pki_ls only */
};

/* ---- making the PKI (navectl pki) ---- */

/*
 * Makes DIR (mode 0755 when missing), DIR/ca (root CA, self-signed, CN
 * "nave root CA", valid days, 1..PKI_DAYS_MAX) and the admin certificate
 * DIR/nodes/admin (valid days, at most 365), and an empty CRL. Refuses
 * (-EEXIST, err) when DIR/ca/ca.crt, ca.key, crl.pem or DIR/nodes/admin
 * exists: nothing is overwritten. 0 or -errno with a one-line err.
 * Ed25519 certificates and CRLs are signed with Ed25519 (pure), P-256 ones
 * with ECDSA over SHA-256; issued keys are of the CA's type.
 */
int pki_init(const char *dir, enum pki_key key, unsigned days, char *err, size_t errlen);

/*
 * Issues DIR/nodes/NAME (kind node or admin), signed by DIR/ca, valid days
 * (1..PKI_DAYS_MAX, capped at the CA's not_after). When nodes/NAME exists:
 * -EEXIST unless force; with force the old certificate's serial is put on
 * the CRL (read it with pki_cert_ident first to know which) and the files
 * are replaced. out (may be NULL) gets what was issued. 0 or -errno with err.
 */
int pki_issue(const char *dir, const char *name, enum pki_kind kind, unsigned days, bool force,
	      struct pki_ident *out, char *err, size_t errlen);

/*
 * Puts NAME's certificate (DIR/nodes/NAME/tls.crt) on the CRL and re-signs
 * DIR/ca/crl.pem (written to a temporary file and renamed). The CRL is v2,
 * sorted, with a crlNumber; lastUpdate is the time of signing less an hour
 * (as every notBefore here: for verifiers whose clock lags) and nextUpdate
 * the CA's notAfter (it is re-signed on every change, so it never goes
 * stale before the CA). -ENOENT when there is no such node, -EALREADY when
 * it is on the CRL already. out (may be NULL) gets the certificate. 0 or
 * -errno with err.
 */
int pki_revoke(const char *dir, const char *name, struct pki_ident *out, char *err, size_t errlen);

/*
 * Every certificate under DIR/nodes, sorted by name, revoked marked from the
 * CRL: *out is malloc'd (free it), *n its count. 0 or -errno with err.
 */
int pki_ls(const char *dir, struct pki_ident **out, size_t *n, char *err, size_t errlen);

/* ---- checking what a client presents (relayd, controld's admin listener) ---- */

struct pki_verifier;

/*
 * A verifier of certificates issued by the CA in ca_file (PEM; one or more
 * roots), with the CRL in crl_file (PEM; NULL or "": DIR/crl.pem beside
 * ca_file when that exists, else none). Files are read now; see
 * pki_verifier_refresh. NULL with err when a file does not load.
 * Not thread-safe: one owner.
 */
struct pki_verifier *pki_verifier_new(const char *ca_file, const char *crl_file, char *err,
				      size_t errlen);
void pki_verifier_free(struct pki_verifier *v);

/*
 * Reads the CA and CRL files again when one of them changed (size, mtime,
 * ctime, inode; a CRL appearing or going counts). 1 reloaded, 0 unchanged,
 * -1 with err (the verifier keeps what it had).
 */
int pki_verifier_refresh(struct pki_verifier *v, char *err, size_t errlen);

/*
 * Verifies a presented chain (ders[0] the leaf, then intermediates; DER
 * each, at most PKI_CHAIN_MAX of at most PKI_DER_MAX bytes) at time now
 * (Unix seconds): chain to the CA, validity, CRL, subject CN a valid name,
 * OU "node" or "admin", key usage for client auth. 0 with *id filled, or
 * -1 with one line in why, e.g.:
 *   "certificate \"dev1\" expired at 2026-11-30T12:00:00Z"
 *   "certificate \"dev1\" (serial 3f2a...) is revoked"
 *   "certificate \"dev1\" is not issued by this server's CA"
 *   "certificate is not yet valid" / "certificate has no valid name"
 */
int pki_verify(const struct pki_verifier *v, const uint8_t *const *ders, const size_t *lens,
	       size_t n, int64_t now, struct pki_ident *id, char *why, size_t whylen);

/*
 * pki_verify of certificates given one after the other in buf (DER each, leaf
 * first: what relayd keeps from a client's handshake). A buf that does not
 * split into DER elements is refused ("the client certificate is not DER").
 */
int pki_verify_concat(const struct pki_verifier *v, const uint8_t *buf, size_t len, int64_t now,
		      struct pki_ident *id, char *why, size_t whylen);

/* true when serial (hex, as pki_ident) is on the verifier's current CRL */
bool pki_verifier_revoked(const struct pki_verifier *v, const char *serial);

/* what the certificate in crt_file (PEM) says; 0 or -errno with err */
int pki_cert_ident(const char *crt_file, struct pki_ident *id, char *err, size_t errlen);

/* the notAfter of the certificate in crt_file (the CA's too); 0 or -errno with err */
int pki_cert_not_after(const char *crt_file, int64_t *not_after, char *err, size_t errlen);

/* a certificate name: 1-31 of [A-Za-z0-9._-], not starting with '.' */
bool pki_name_ok(const char *s);

/* t as RFC 3339 UTC ("2026-11-30T12:00:00Z") */
void pki_time_str(int64_t t, char out[PKI_TIME_LEN]);

/* "node" / "admin", and the reverse (-1 unknown) */
const char *pki_kind_name(enum pki_kind k);
int pki_kind_parse(const char *s);

#endif

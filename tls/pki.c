/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nave's PKI (pki.h) over BoringSSL's X509 API: the root CA, node and admin
 * certificates, the CRL, and the verifier of presented client chains.
 *
 * Files are written to a temporary file beside the final one with the final
 * mode from creation (O_EXCL | O_NOFOLLOW), fsync'd, then linked (a new file:
 * never over an existing one) or renamed (a replacement), and the directory
 * fsync'd. Key files that are symlinks are refused, for reading and writing.
 */
#include "tls/pki.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/is_boringssl.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "valid.h"

#define PATH_LEN 1024
#define CA_CN	 "nave root CA"
#define BACKDATE 3600 /* notBefore an hour back: a clock that lags still accepts */

#define ADMIN_DAYS    365 /* pki_init's admin certificate: at most a year */
#define SERIAL_BYTES  16
#define SERIAL_DERMAX 20

static void __attribute__((format(printf, 3, 4)))
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	ERR_clear_error();
	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int __attribute__((format(printf, 2, 3))) pathf(char out[PATH_LEN], const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, PATH_LEN, fmt, ap);
	va_end(ap);
	return n < 0 || n >= PATH_LEN ? -ENAMETOOLONG : 0;
}

/* ---- small things ---- */

const char *pki_kind_name(enum pki_kind k)
{
	return k == PKI_ADMIN ? "admin" : "node";
}

int pki_kind_parse(const char *s)
{
	if (s && !strcmp(s, "node"))
		return PKI_NODE;
	if (s && !strcmp(s, "admin"))
		return PKI_ADMIN;
	return -1;
}

bool pki_name_ok(const char *s)
{
	return valid_str(s, VALID_ID, PKI_NAME_MAX - 1) && s[0] != '.';
}

void pki_time_str(int64_t t, char out[PKI_TIME_LEN])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(out, PKI_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, PKI_TIME_LEN, "@%lld", (long long)t);
}

static int asn1_time_unix(const ASN1_TIME *t, int64_t *out)
{
	ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
	int days, secs, ok;

	ok = epoch && t && ASN1_TIME_diff(&days, &secs, epoch, t);
	ASN1_TIME_free(epoch);
	if (!ok) {
		ERR_clear_error();
		return -1;
	}
	*out = (int64_t)days * 86400 + secs;
	return 0;
}

/* lower-case hex without leading zeros; -1 for a negative or too long serial */
static int serial_hex(const ASN1_INTEGER *s, char out[PKI_SERIAL_MAX])
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *p;
	size_t len, o = 0;

	if (!s || ASN1_STRING_type(s) != V_ASN1_INTEGER)
		return -1;
	p = ASN1_STRING_get0_data(s);
	len = (size_t)ASN1_STRING_length(s);
	while (len && !*p) {
		p++;
		len--;
	}
	if (len > SERIAL_DERMAX)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (o || p[i] >> 4)
			out[o++] = hex[p[i] >> 4];
		out[o++] = hex[p[i] & 15];
	}
	if (!o)
		out[o++] = '0';
	out[o] = 0;
	return 0;
}

static ASN1_INTEGER *serial_from_hex(const char *s)
{
	BIGNUM *bn = NULL;
	ASN1_INTEGER *a;
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 2 * SERIAL_DERMAX || strspn(s, "0123456789abcdefABCDEF") != n)
		return NULL;
	if (!BN_hex2bn(&bn, s))
		return NULL;
	a = BN_to_ASN1_INTEGER(bn, NULL);
	BN_free(bn);
	return a;
}

/* the one entry of nid in name as a C string of at most max bytes; false otherwise */
static bool name_entry(const X509_NAME *name, int nid, char *out, size_t max)
{
	int i = X509_NAME_get_index_by_NID(name, nid, -1);
	const ASN1_STRING *d;
	size_t len;

	if (i < 0 || X509_NAME_get_index_by_NID(name, nid, i) >= 0)
		return false;
	d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
	if (!d)
		return false;
	len = (size_t)ASN1_STRING_length(d);
	if (len == 0 || len >= max || memchr(ASN1_STRING_get0_data(d), 0, len))
		return false;
	memcpy(out, ASN1_STRING_get0_data(d), len);
	out[len] = 0;
	return true;
}

enum { IDENT_OK, IDENT_NAME, IDENT_KIND, IDENT_SERIAL, IDENT_TIME };

/* what x says: name (CN), kind (OU), serial and validity */
static int cert_ident(X509 *x, struct pki_ident *id)
{
	const X509_NAME *subj = X509_get_subject_name(x);
	char ou[8];
	int kind;

	memset(id, 0, sizeof(*id));
	if (!subj || !name_entry(subj, NID_commonName, id->name, sizeof(id->name)) ||
	    !pki_name_ok(id->name)) {
		id->name[0] = 0;
		return IDENT_NAME;
	}
	if (!name_entry(subj, NID_organizationalUnitName, ou, sizeof(ou)) ||
	    (kind = pki_kind_parse(ou)) < 0)
		return IDENT_KIND;
	id->kind = (enum pki_kind)kind;
	if (serial_hex(X509_get0_serialNumber(x), id->serial) < 0)
		return IDENT_SERIAL;
	if (asn1_time_unix(X509_get0_notBefore(x), &id->not_before) < 0 ||
	    asn1_time_unix(X509_get0_notAfter(x), &id->not_after) < 0)
		return IDENT_TIME;
	return IDENT_OK;
}

/* ---- files ---- */

static int fsync_dir_of(const char *path)
{
	char dir[PATH_LEN];
	char *slash;
	int fd, ret = 0;

	if (!str_copy(dir, sizeof(dir), path))
		return -ENAMETOOLONG;
	slash = strrchr(dir, '/');
	if (!slash)
		str_copy(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/*
 * Writes buf to path with mode: a temporary file beside it, fsync, then link
 * (replace false: refused with -EEXIST when path exists) or rename.
 */
static int write_atomic(const char *path, mode_t mode, const void *buf, size_t len, bool replace,
			char *err, size_t errlen)
{
	char tmp[PATH_LEN];
	struct stat st;
	int fd, ret;

	if (lstat(path, &st) == 0) {
		if (S_ISLNK(st.st_mode)) {
			seterr(err, errlen, "%s is a symlink: refused", path);
			return -ELOOP;
		}
		if (!replace) {
			seterr(err, errlen, "%s exists: not overwritten", path);
			return -EEXIST;
		}
		if (!S_ISREG(st.st_mode)) {
			seterr(err, errlen, "%s is not a regular file: refused", path);
			return -EINVAL;
		}
	} else if (errno != ENOENT) {
		ret = -errno;
		seterr(err, errlen, "cannot stat %s: %s", path, strerror(-ret));
		return ret;
	}
	if (pathf(tmp, "%s.tmp%ld", path, (long)getpid()) < 0) {
		seterr(err, errlen, "path too long: %s", path);
		return -ENAMETOOLONG;
	}
	unlink(tmp); /* a leftover of an interrupted run of the same pid */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0) {
		ret = -errno;
		seterr(err, errlen, "cannot create %s: %s", tmp, strerror(-ret));
		return ret;
	}
	if (fchmod(fd, mode) < 0 || write_all(fd, buf, len) < 0 || fsync(fd) < 0) {
		ret = -errno;
		close(fd);
		goto fail;
	}
	if (close(fd) < 0) {
		ret = -errno;
		goto fail;
	}
	if (replace) {
		if (rename(tmp, path) < 0) {
			ret = -errno;
			goto fail;
		}
	} else {
		if (link(tmp, path) < 0) {
			ret = -errno;
			unlink(tmp);
			if (ret == -EEXIST)
				seterr(err, errlen, "%s exists: not overwritten", path);
			else
				seterr(err, errlen, "cannot write %s: %s", path, strerror(-ret));
			return ret;
		}
		unlink(tmp);
	}
	fsync_dir_of(path);
	return 0;
fail:
	unlink(tmp);
	seterr(err, errlen, "cannot write %s: %s", path, strerror(-ret));
	return ret;
}

/* PEM of a cert, key or CRL into path */
static int write_pem(const char *path, X509 *cert, EVP_PKEY *key, X509_CRL *crl, bool replace,
		     char *err, size_t errlen)
{
	BIO *b = BIO_new(BIO_s_mem());
	const uint8_t *data;
	size_t len;
	int ok, ret;

	if (!b) {
		seterr(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (key)
		ok = PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
	else if (crl)
		ok = PEM_write_bio_X509_CRL(b, crl);
	else
		ok = PEM_write_bio_X509(b, cert);
	if (!ok || !BIO_mem_contents(b, &data, &len)) {
		BIO_free(b);
		seterr(err, errlen, "cannot encode %s", path);
		return -ENOMEM;
	}
	ret = write_atomic(path, key ? 0600 : 0644, data, len, replace, err, errlen);
	BIO_free(b); /* BoringSSL's free wipes the key's PEM */
	return ret;
}

/* fopen for reading, refusing a symlink (nofollow) and anything not a regular file */
static FILE *open_read(const char *path, bool nofollow, char *err, size_t errlen, int *ret)
{
	struct stat st;
	FILE *f;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
	if (fd < 0) {
		*ret = -errno;
		if (*ret == -ELOOP)
			seterr(err, errlen, "%s is a symlink: refused", path);
		else
			seterr(err, errlen, "cannot read %s: %s", path, strerror(-*ret));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		*ret = -EINVAL;
		seterr(err, errlen, "%s is not a regular file", path);
		return NULL;
	}
	f = fdopen(fd, "r");
	if (!f) {
		*ret = -errno;
		close(fd);
		seterr(err, errlen, "cannot read %s: %s", path, strerror(-*ret));
	}
	return f;
}

static X509 *read_cert(const char *path, char *err, size_t errlen, int *ret)
{
	FILE *f = open_read(path, false, err, errlen, ret);
	X509 *x;

	if (!f)
		return NULL;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!x) {
		*ret = -EINVAL;
		seterr(err, errlen, "%s: not a PEM certificate", path);
	}
	return x;
}

static EVP_PKEY *read_key(const char *path, char *err, size_t errlen, int *ret)
{
	FILE *f = open_read(path, true, err, errlen, ret);
	EVP_PKEY *k;

	if (!f)
		return NULL;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!k) {
		*ret = -EINVAL;
		seterr(err, errlen, "%s: not a PEM private key", path);
	}
	return k;
}

/* the CRL at path; *ret -ENOENT (err set) when there is none */
static X509_CRL *read_crl(const char *path, char *err, size_t errlen, int *ret)
{
	FILE *f = open_read(path, false, err, errlen, ret);
	X509_CRL *c;

	if (!f)
		return NULL;
	c = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	if (!c) {
		*ret = -EINVAL;
		seterr(err, errlen, "%s: not a PEM CRL", path);
	}
	return c;
}

/* a directory (made with mode when missing); a symlink or a file there is refused */
static int ensure_dir(const char *path, mode_t mode, char *err, size_t errlen)
{
	struct stat st;
	int ret;

	if (mkdir(path, mode) == 0) {
		chmod(path, mode); /* exactly mode, whatever the umask */
		return 0;
	}
	if (errno != EEXIST) {
		ret = -errno;
		seterr(err, errlen, "cannot create %s: %s", path, strerror(-ret));
		return ret;
	}
	if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		seterr(err, errlen, "%s exists and is not a directory", path);
		return -ENOTDIR;
	}
	return 0;
}

/* ---- keys and certificates ---- */

static EVP_PKEY *key_new(int type)
{
	EVP_PKEY *k = NULL;

	if (type == EVP_PKEY_ED25519) {
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);

		if (!c || EVP_PKEY_keygen_init(c) != 1 || EVP_PKEY_keygen(c, &k) != 1)
			k = NULL;
		EVP_PKEY_CTX_free(c);
		return k;
	}
	EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);

	if (!ec || !EC_KEY_generate_key(ec) || !(k = EVP_PKEY_new()) ||
	    !EVP_PKEY_assign_EC_KEY(k, ec)) {
		EVP_PKEY_free(k);
		EC_KEY_free(ec);
		return NULL;
	}
	return k;
}

/* Ed25519 signs its message itself (no digest), ECDSA over SHA-256 */
static const EVP_MD *sign_md(EVP_PKEY *k)
{
	return EVP_PKEY_id(k) == EVP_PKEY_ED25519 ? NULL : EVP_sha256();
}

static bool key_type_ok(EVP_PKEY *k)
{
	if (EVP_PKEY_id(k) == EVP_PKEY_ED25519)
		return true;
	if (EVP_PKEY_id(k) == EVP_PKEY_EC) {
		const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(k);

		return ec && EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) == NID_X9_62_prime256v1;
	}
	return false;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (!e)
		return -1;
	ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok ? 0 : -1;
}

static int set_random_serial(X509 *x)
{
	uint8_t raw[SERIAL_BYTES];
	BIGNUM *bn;
	ASN1_INTEGER *serial = NULL;
	int ret = -1;

	RAND_bytes(raw, sizeof(raw));
	raw[0] &= 0x7f; /* positive */
	raw[0] |= 0x40; /* and a full 16 bytes long */
	bn = BN_bin2bn(raw, sizeof(raw), NULL);
	if (bn && (serial = BN_to_ASN1_INTEGER(bn, NULL)) && X509_set_serialNumber(x, serial))
		ret = 0;
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	return ret;
}

/*
 * A v3 certificate for pub: the CA (issuer NULL: self-signed with sign_key)
 * or a leaf of kind named name, signed by issuer's sign_key.
 */
static X509 *make_cert(EVP_PKEY *pub, X509 *issuer, EVP_PKEY *sign_key, const char *name,
		       enum pki_kind kind, int64_t not_before, int64_t not_after)
{
	X509 *x = X509_new();
	X509_NAME *subj;
	char san[PKI_NAME_MAX + 8];
	bool ca = !issuer;

	if (!x || !X509_set_version(x, X509_VERSION_3) || set_random_serial(x) < 0 ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) || !X509_set_pubkey(x, pub))
		goto fail;
	subj = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(subj, "O", MBSTRING_UTF8, (const uint8_t *)"nave", -1, -1,
					0))
		goto fail;
	if (!ca && !X509_NAME_add_entry_by_txt(subj, "OU", MBSTRING_UTF8,
					       (const uint8_t *)pki_kind_name(kind), -1, -1, 0))
		goto fail;
	if (!X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
					(const uint8_t *)(ca ? CA_CN : name), -1, -1, 0))
		goto fail;
	if (!X509_set_issuer_name(x, ca ? subj : X509_get_subject_name(issuer)))
		goto fail;
	if (ca) {
		if (add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
		    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
		    add_ext(x, x, NID_subject_key_identifier, "hash") < 0)
			goto fail;
	} else {
		snprintf(san, sizeof(san), "DNS:%s", name);
		if (add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
		    add_ext(x, issuer, NID_key_usage, "critical,digitalSignature") < 0 ||
		    add_ext(x, issuer, NID_ext_key_usage, "clientAuth") < 0 ||
		    add_ext(x, issuer, NID_subject_key_identifier, "hash") < 0 ||
		    add_ext(x, issuer, NID_authority_key_identifier, "keyid:always") < 0 ||
		    add_ext(x, issuer, NID_subject_alt_name, san) < 0)
			goto fail;
	}
	if (!X509_sign(x, sign_key, sign_md(sign_key)))
		goto fail;
	return x;
fail:
	ERR_clear_error();
	X509_free(x);
	return NULL;
}

/* ---- the CA and its CRL ---- */

struct ca {
	char dir[PATH_LEN];
	char crt[PATH_LEN], key_path[PATH_LEN], crl_path[PATH_LEN];
	X509 *cert;
	EVP_PKEY *key;
	int64_t not_after;
};

static void ca_free(struct ca *ca)
{
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	ca->cert = NULL;
	ca->key = NULL;
}

static int ca_paths(struct ca *ca, const char *dir, char *err, size_t errlen)
{
	memset(ca, 0, sizeof(*ca));
	if (!dir || !*dir) {
		seterr(err, errlen, "no PKI directory given");
		return -EINVAL;
	}
	if (!str_copy(ca->dir, sizeof(ca->dir), dir) || pathf(ca->crt, "%s/ca/ca.crt", dir) < 0 ||
	    pathf(ca->key_path, "%s/ca/ca.key", dir) < 0 ||
	    pathf(ca->crl_path, "%s/ca/crl.pem", dir) < 0) {
		seterr(err, errlen, "path too long: %s", dir);
		return -ENAMETOOLONG;
	}
	return 0;
}

static int ca_load(struct ca *ca, const char *dir, char *err, size_t errlen)
{
	struct stat st;
	int ret = ca_paths(ca, dir, err, errlen);

	if (ret < 0)
		return ret;
	if (stat(ca->crt, &st) < 0 && errno == ENOENT) {
		seterr(err, errlen, "no CA in %s (navectl pki init makes one)", dir);
		return -ENOENT;
	}
	ca->cert = read_cert(ca->crt, err, errlen, &ret);
	if (!ca->cert)
		return ret;
	ca->key = read_key(ca->key_path, err, errlen, &ret);
	if (!ca->key)
		goto fail;
	if (!key_type_ok(ca->key) || !X509_check_private_key(ca->cert, ca->key)) {
		seterr(err, errlen, "%s does not match %s (or is neither Ed25519 nor P-256)",
		       ca->key_path, ca->crt);
		ret = -EINVAL;
		goto fail;
	}
	if (asn1_time_unix(X509_get0_notAfter(ca->cert), &ca->not_after) < 0) {
		seterr(err, errlen, "%s: bad notAfter", ca->crt);
		ret = -EINVAL;
		goto fail;
	}
	return 0;
fail:
	ca_free(ca);
	return ret;
}

static bool crl_has(X509_CRL *crl, const ASN1_INTEGER *serial)
{
	X509_REVOKED *rev = NULL;

	if (!crl || !serial)
		return false;
	return X509_CRL_get0_by_serial(crl, &rev, (ASN1_INTEGER *)serial) == 1;
}

/*
 * Signs a new CRL: the entries of old (may be NULL) and add (may be NULL,
 * revoked now), lastUpdate now less BACKDATE, nextUpdate the CA's notAfter (the CRL is re-signed on
 * every change and never goes stale before the CA does), crlNumber old's + 1; then writes
 * DIR/ca/crl.pem (replace: false for the first one).
 */
static int crl_write(const struct ca *ca, X509_CRL *old, const ASN1_INTEGER *add, bool replace,
		     char *err, size_t errlen)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *now = ASN1_TIME_set(NULL, time(NULL));
	/* lastUpdate backdated as notBefore is: a verifier whose clock lags (or a verify
	 * time taken a moment before the CRL was signed) still takes the CRL */
	ASN1_TIME *last = ASN1_TIME_set(NULL, time(NULL) - BACKDATE);
	ASN1_INTEGER *num = NULL, *oldnum = NULL;
	X509_REVOKED *rev = NULL;
	long n = 0;
	int ret = -ENOMEM;

	if (!crl || !now || !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)) || !last ||
	    !X509_CRL_set1_lastUpdate(crl, last) ||
	    !X509_CRL_set1_nextUpdate(crl, X509_get0_notAfter(ca->cert)))
		goto fail;
	if (old) {
		STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(old);

		for (size_t i = 0; i < sk_X509_REVOKED_num(revs); i++) {
			rev = X509_REVOKED_dup(sk_X509_REVOKED_value(revs, i));
			if (!rev || !X509_CRL_add0_revoked(crl, rev))
				goto fail;
			rev = NULL;
		}
		oldnum = X509_CRL_get_ext_d2i(old, NID_crl_number, NULL, NULL);
		if (oldnum)
			n = ASN1_INTEGER_get(oldnum);
	}
	if (add) {
		rev = X509_REVOKED_new();
		if (!rev || !X509_REVOKED_set_serialNumber(rev, add) ||
		    !X509_REVOKED_set_revocationDate(rev, now) || !X509_CRL_add0_revoked(crl, rev))
			goto fail;
		rev = NULL;
	}
	num = ASN1_INTEGER_new();
	if (!num || !ASN1_INTEGER_set(num, n < 0 ? 1 : n + 1) ||
	    !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) || !X509_CRL_sort(crl))
		goto fail;
	if (!X509_CRL_sign(crl, ca->key, sign_md(ca->key))) {
		seterr(err, errlen, "cannot sign the CRL");
		ret = -EINVAL;
		goto out;
	}
	ret = write_pem(ca->crl_path, NULL, NULL, crl, replace, err, errlen);
	goto out;
fail:
	seterr(err, errlen, "cannot build the CRL");
out:
	X509_REVOKED_free(rev);
	ASN1_INTEGER_free(num);
	ASN1_INTEGER_free(oldnum);
	ASN1_TIME_free(now);
	ASN1_TIME_free(last);
	X509_CRL_free(crl);
	return ret;
}

/* the CA's current CRL (NULL with *ret 0 when there is none yet) */
static X509_CRL *ca_crl(const struct ca *ca, char *err, size_t errlen, int *ret)
{
	X509_CRL *crl;

	*ret = 0;
	crl = read_crl(ca->crl_path, err, errlen, ret);
	if (!crl && *ret == -ENOENT)
		*ret = 0;
	return crl;
}

/* ---- pki init / issue / revoke / ls ---- */

static int check_days(unsigned days, char *err, size_t errlen)
{
	if (days < 1 || days > PKI_DAYS_MAX) {
		seterr(err, errlen, "days must be 1-%u", PKI_DAYS_MAX);
		return -EINVAL;
	}
	return 0;
}

static int check_absent(const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (lstat(path, &st) == 0) {
		seterr(err, errlen, "%s exists: nothing was changed", path);
		return -EEXIST;
	}
	if (errno != ENOENT) {
		int ret = -errno;

		seterr(err, errlen, "cannot stat %s: %s", path, strerror(-ret));
		return ret;
	}
	return 0;
}

int pki_init(const char *dir, enum pki_key key, unsigned days, char *err, size_t errlen)
{
	char cadir[PATH_LEN], nodes[PATH_LEN], admin[PATH_LEN];
	struct ca ca;
	struct stat st;
	int64_t now = time(NULL);
	bool had_dir;
	int ret;

	if (key != PKI_ED25519 && key != PKI_P256) {
		seterr(err, errlen, "unknown key type");
		return -EINVAL;
	}
	ret = check_days(days, err, errlen);
	if (ret < 0)
		return ret;
	ret = ca_paths(&ca, dir, err, errlen);
	if (ret < 0)
		return ret;
	if (pathf(cadir, "%s/ca", dir) < 0 || pathf(nodes, "%s/nodes", dir) < 0 ||
	    pathf(admin, "%s/nodes/admin", dir) < 0) {
		seterr(err, errlen, "path too long: %s", dir);
		return -ENAMETOOLONG;
	}
	/* every file init makes, looked at before anything is written */
	if ((ret = check_absent(ca.crt, err, errlen)) < 0 ||
	    (ret = check_absent(ca.key_path, err, errlen)) < 0 ||
	    (ret = check_absent(ca.crl_path, err, errlen)) < 0 ||
	    (ret = check_absent(admin, err, errlen)) < 0)
		return ret;
	had_dir = stat(dir, &st) == 0;
	ret = mkdir_p(dir, 0755);
	if (ret < 0) {
		seterr(err, errlen, "cannot create %s: %s", dir, strerror(-ret));
		return ret;
	}
	if (!had_dir)
		chmod(dir, 0755); /* exactly 0755 whatever the umask: the daemons read the CA */
	if ((ret = ensure_dir(cadir, 0755, err, errlen)) < 0 ||
	    (ret = ensure_dir(nodes, 0755, err, errlen)) < 0)
		return ret;

	ca.key = key_new(key == PKI_ED25519 ? EVP_PKEY_ED25519 : EVP_PKEY_EC);
	if (!ca.key) {
		seterr(err, errlen, "cannot generate the CA key");
		return -ENOMEM;
	}
	ca.cert = make_cert(ca.key, NULL, ca.key, NULL, PKI_NODE, now - BACKDATE,
			    now + (int64_t)days * 86400);
	if (!ca.cert) {
		seterr(err, errlen, "cannot make the CA certificate");
		ret = -ENOMEM;
		goto out;
	}
	/* the key first: a crash in between leaves a key without a certificate, refused next time
	 */
	if ((ret = write_pem(ca.key_path, NULL, ca.key, NULL, false, err, errlen)) < 0 ||
	    (ret = write_pem(ca.crt, ca.cert, NULL, NULL, false, err, errlen)) < 0 ||
	    (ret = crl_write(&ca, NULL, NULL, false, err, errlen)) < 0)
		goto out;
	ret = pki_issue(dir, "admin", PKI_ADMIN, days < ADMIN_DAYS ? days : ADMIN_DAYS, false, NULL,
			err, errlen);
out:
	ca_free(&ca);
	return ret;
}

int pki_cert_ident(const char *crt_file, struct pki_ident *id, char *err, size_t errlen)
{
	X509 *x;
	int ret;

	x = read_cert(crt_file, err, errlen, &ret);
	if (!x)
		return ret;
	ret = cert_ident(x, id);
	X509_free(x);
	if (ret != IDENT_OK) {
		seterr(err, errlen,
		       "%s: not a nave certificate (subject CN and OU, serial, validity)",
		       crt_file);
		return -EINVAL;
	}
	return 0;
}

int pki_cert_not_after(const char *crt_file, int64_t *not_after, char *err, size_t errlen)
{
	X509 *x;
	int ret;

	x = read_cert(crt_file, err, errlen, &ret);
	if (!x)
		return ret;
	ret = asn1_time_unix(X509_get0_notAfter(x), not_after);
	X509_free(x);
	if (ret < 0) {
		seterr(err, errlen, "%s: bad notAfter", crt_file);
		return -EINVAL;
	}
	return 0;
}

int pki_issue(const char *dir, const char *name, enum pki_kind kind, unsigned days, bool force,
	      struct pki_ident *out, char *err, size_t errlen)
{
	char nodes[PATH_LEN], nd[PATH_LEN], crt[PATH_LEN], key[PATH_LEN], cacopy[PATH_LEN];
	struct ca ca;
	struct stat st;
	EVP_PKEY *k = NULL;
	X509 *x = NULL, *old = NULL;
	X509_CRL *crl = NULL;
	int64_t now = time(NULL), not_after;
	bool exists = false;
	int ret;

	if (!pki_name_ok(name)) {
		seterr(err, errlen, "a name is 1-%d characters: %s (not starting with '.')",
		       PKI_NAME_MAX - 1, valid_alphabet(VALID_ID));
		return -EINVAL;
	}
	if (kind != PKI_NODE && kind != PKI_ADMIN) {
		seterr(err, errlen, "unknown certificate kind");
		return -EINVAL;
	}
	/* relayd refuses such a name: a certificate never takes a token tunnel's id */
	if (valid_tunnel_id_shaped(name)) {
		seterr(err, errlen,
		       "name \"%s\" has the shape of a token tunnel's id (t- and hex digits): "
		       "choose another",
		       name);
		return -EINVAL;
	}
	ret = check_days(days, err, errlen);
	if (ret < 0)
		return ret;
	if (pathf(nodes, "%s/nodes", dir) < 0 || pathf(nd, "%s/nodes/%s", dir, name) < 0 ||
	    pathf(crt, "%s/tls.crt", nd) < 0 || pathf(key, "%s/tls.key", nd) < 0 ||
	    pathf(cacopy, "%s/ca.crt", nd) < 0) {
		seterr(err, errlen, "path too long: %s", dir);
		return -ENAMETOOLONG;
	}
	/* tunnel ids and groups are matched without case by the mesh policy: one a name */
	{
		DIR *d = opendir(nodes);
		struct dirent *e;
		char other[PKI_NAME_MAX] = "";

		while (d && (e = readdir(d)))
			if (strcmp(e->d_name, name) && !strcasecmp(e->d_name, name))
				snprintf(other, sizeof(other), "%.31s", e->d_name);
		if (d)
			closedir(d);
		if (other[0]) {
			seterr(err, errlen,
			       "nodes/%s exists: names that differ only in case are refused",
			       other);
			return -EEXIST;
		}
	}
	ret = ca_load(&ca, dir, err, errlen);
	if (ret < 0)
		return ret;
	if (lstat(nd, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			seterr(err, errlen, "%s exists and is not a directory: refused", nd);
			ret = S_ISLNK(st.st_mode) ? -ELOOP : -ENOTDIR;
			goto out;
		}
		if (!force) {
			seterr(err, errlen, "%s exists: not replaced", nd);
			ret = -EEXIST;
			goto out;
		}
		exists = true;
	} else if (errno != ENOENT) {
		ret = -errno;
		seterr(err, errlen, "cannot stat %s: %s", nd, strerror(-ret));
		goto out;
	}
	if (exists) {
		/* the old certificate goes on the CRL before it is replaced */
		int r;

		old = read_cert(crt, err, errlen, &r);
		if (old) {
			crl = ca_crl(&ca, err, errlen, &ret);
			if (ret < 0)
				goto out;
			if (!crl_has(crl, X509_get0_serialNumber(old))) {
				ret = crl_write(&ca, crl, X509_get0_serialNumber(old), true, err,
						errlen);
				if (ret < 0)
					goto out;
			}
		}
	}
	if ((ret = ensure_dir(nodes, 0755, err, errlen)) < 0 ||
	    (ret = ensure_dir(nd, 0755, err, errlen)) < 0)
		goto out;

	not_after = now + (int64_t)days * 86400;
	if (not_after > ca.not_after)
		not_after = ca.not_after;
	k = key_new(EVP_PKEY_id(ca.key));
	if (!k) {
		seterr(err, errlen, "cannot generate a key");
		ret = -ENOMEM;
		goto out;
	}
	x = make_cert(k, ca.cert, ca.key, name, kind, now - BACKDATE, not_after);
	if (!x) {
		seterr(err, errlen, "cannot make the certificate");
		ret = -ENOMEM;
		goto out;
	}
	if ((ret = write_pem(key, NULL, k, NULL, exists, err, errlen)) < 0 ||
	    (ret = write_pem(crt, x, NULL, NULL, exists, err, errlen)) < 0 ||
	    (ret = write_pem(cacopy, ca.cert, NULL, NULL, exists, err, errlen)) < 0)
		goto out;
	if (out && cert_ident(x, out) != IDENT_OK) {
		seterr(err, errlen, "%s: cannot read back", crt);
		ret = -EINVAL;
		goto out;
	}
	ret = 0;
out:
	X509_CRL_free(crl);
	X509_free(old);
	X509_free(x);
	EVP_PKEY_free(k);
	ca_free(&ca);
	return ret;
}

int pki_revoke(const char *dir, const char *name, struct pki_ident *out, char *err, size_t errlen)
{
	char crt[PATH_LEN];
	struct pki_ident id;
	struct ca ca;
	X509 *x = NULL;
	X509_CRL *crl = NULL;
	int ret;

	if (!pki_name_ok(name)) {
		seterr(err, errlen, "a name is 1-%d characters: %s (not starting with '.')",
		       PKI_NAME_MAX - 1, valid_alphabet(VALID_ID));
		return -EINVAL;
	}
	if (pathf(crt, "%s/nodes/%s/tls.crt", dir, name) < 0) {
		seterr(err, errlen, "path too long: %s", dir);
		return -ENAMETOOLONG;
	}
	ret = ca_load(&ca, dir, err, errlen);
	if (ret < 0)
		return ret;
	x = read_cert(crt, err, errlen, &ret);
	if (!x) {
		if (ret == -ENOENT)
			seterr(err, errlen, "no certificate named \"%s\" in %s/nodes", name, dir);
		goto out;
	}
	if (cert_ident(x, &id) == IDENT_NAME) {
		/* listed by the directory's name; the serial is what the CRL needs */
		str_copy(id.name, sizeof(id.name), name);
	}
	if (serial_hex(X509_get0_serialNumber(x), id.serial) < 0) {
		seterr(err, errlen, "%s: bad serial number", crt);
		ret = -EINVAL;
		goto out;
	}
	crl = ca_crl(&ca, err, errlen, &ret);
	if (ret < 0)
		goto out;
	if (crl_has(crl, X509_get0_serialNumber(x))) {
		seterr(err, errlen, "\"%s\" (serial %s) is revoked already", name, id.serial);
		ret = -EALREADY;
		goto out;
	}
	ret = crl_write(&ca, crl, X509_get0_serialNumber(x), true, err, errlen);
	if (ret < 0)
		goto out;
	id.revoked = true;
	if (out)
		*out = id;
out:
	X509_CRL_free(crl);
	X509_free(x);
	ca_free(&ca);
	return ret;
}

static int ident_cmp(const void *a, const void *b)
{
	return strcmp(((const struct pki_ident *)a)->name, ((const struct pki_ident *)b)->name);
}

int pki_ls(const char *dir, struct pki_ident **out, size_t *n, char *err, size_t errlen)
{
	char nodes[PATH_LEN], crt[PATH_LEN];
	struct pki_ident *v = NULL, *nv;
	size_t cnt = 0, cap = 0;
	X509_CRL *crl = NULL;
	struct dirent *de;
	struct ca ca;
	DIR *d = NULL;
	struct stat st;
	int ret;

	*out = NULL;
	*n = 0;
	ret = ca_paths(&ca, dir, err, errlen);
	if (ret < 0)
		return ret;
	if (pathf(nodes, "%s/nodes", dir) < 0) {
		seterr(err, errlen, "path too long: %s", dir);
		return -ENAMETOOLONG;
	}
	if (stat(ca.crt, &st) < 0) {
		seterr(err, errlen, "no CA in %s (navectl pki init makes one)", dir);
		return -ENOENT;
	}
	crl = ca_crl(&ca, err, errlen, &ret);
	if (ret < 0)
		return ret;
	d = opendir(nodes);
	if (!d) {
		ret = errno == ENOENT ? 0 : -errno;
		if (ret < 0)
			seterr(err, errlen, "cannot read %s: %s", nodes, strerror(-ret));
		goto out;
	}
	while ((de = readdir(d))) {
		struct pki_ident id;
		X509 *x;
		int r;

		if (de->d_name[0] == '.')
			continue;
		if (pathf(crt, "%s/%s/tls.crt", nodes, de->d_name) < 0)
			continue;
		if (lstat(crt, &st) < 0 && errno == ENOENT)
			continue; /* not a node directory */
		if (!pki_name_ok(de->d_name)) {
			continue;
		}
		x = read_cert(crt, err, errlen, &r);
		if (!x) {
			ret = r;
			goto out;
		}
		r = cert_ident(x, &id);
		if (r == IDENT_OK && strcmp(id.name, de->d_name) != 0)
			r = IDENT_NAME;
		if (r != IDENT_OK) {
			X509_free(x);
			seterr(err, errlen, "%s: not a nave certificate for \"%s\"", crt,
			       de->d_name);
			ret = -EINVAL;
			goto out;
		}
		id.revoked = crl_has(crl, X509_get0_serialNumber(x));
		X509_free(x);
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				seterr(err, errlen, "out of memory");
				ret = -ENOMEM;
				goto out;
			}
			v = nv;
		}
		v[cnt++] = id;
	}
	qsort(v, cnt, sizeof(*v), ident_cmp);
	ret = 0;
out:
	if (d)
		closedir(d);
	X509_CRL_free(crl);
	if (ret < 0) {
		free(v);
		return ret;
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* ---- the verifier ---- */

struct pki_verifier {
	char ca_file[PATH_LEN];
	char crl_file[PATH_LEN];
	bool crl_auto; /* crl.pem beside ca_file, when it exists */
	uint64_t sig;
	X509_STORE *store;
	X509_CRL *crl; /* NULL: none */
};

static uint64_t file_sig(uint64_t sig, const char *path)
{
	struct stat st;

	if (!*path || stat(path, &st) < 0)
		return sig * 1099511628211ull ^ 0x6e6f6e65ull; /* absent */
	sig = sig * 1099511628211ull ^ (uint64_t)st.st_size;
	sig = sig * 1099511628211ull ^ (uint64_t)st.st_mtim.tv_sec;
	sig = sig * 1099511628211ull ^ (uint64_t)st.st_mtim.tv_nsec;
	/* a rewrite in place that keeps size and mtime (cp -p) still changes ctime */
	sig = sig * 1099511628211ull ^ (uint64_t)st.st_ctim.tv_sec;
	sig = sig * 1099511628211ull ^ (uint64_t)st.st_ctim.tv_nsec;
	sig = sig * 1099511628211ull ^ (uint64_t)st.st_ino;
	return sig;
}

static uint64_t verifier_sig(const struct pki_verifier *v)
{
	return file_sig(file_sig(14695981039346656037ull, v->ca_file), v->crl_file);
}

/* reads the files into a new store and CRL; nothing changes in v on failure */
static int verifier_load(struct pki_verifier *v, char *err, size_t errlen)
{
	X509_STORE *store = NULL;
	X509_CRL *crl = NULL;
	STACK_OF(X509) *roots = NULL;
	FILE *f;
	X509 *x;
	int ret = -1, r;
	bool signed_ok = false;

	f = open_read(v->ca_file, false, err, errlen, &r);
	if (!f)
		return -1;
	roots = sk_X509_new_null();
	store = X509_STORE_new();
	if (!roots || !store) {
		fclose(f);
		seterr(err, errlen, "out of memory");
		goto out;
	}
	while ((x = PEM_read_X509(f, NULL, NULL, NULL))) {
		if (!sk_X509_push(roots, x) || !X509_STORE_add_cert(store, x)) {
			X509_free(x);
			fclose(f);
			seterr(err, errlen, "out of memory");
			goto out;
		}
	}
	fclose(f);
	ERR_clear_error(); /* the end of the file */
	if (!sk_X509_num(roots)) {
		seterr(err, errlen, "%s: no PEM certificate", v->ca_file);
		goto out;
	}
	if (*v->crl_file) {
		crl = read_crl(v->crl_file, err, errlen, &r);
		/*
		 * crl.pem beside the CA may be missing (no CRL yet), but once one was
		 * read its going away must not undo the revocations: the last one stays
		 */
		if (!crl && v->crl_auto && r == -ENOENT && v->crl) {
			seterr(err, errlen, "%s went away: the last CRL read stays in force",
			       v->crl_file);
			goto out;
		}
		if (!crl && !(v->crl_auto && r == -ENOENT))
			goto out;
	}
	if (crl) {
		for (size_t i = 0; i < sk_X509_num(roots) && !signed_ok; i++) {
			X509 *ca = sk_X509_value(roots, i);
			EVP_PKEY *pub;

			if (X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)))
				continue;
			pub = X509_get_pubkey(ca);
			signed_ok = pub && X509_CRL_verify(crl, pub) == 1;
			EVP_PKEY_free(pub);
		}
		if (!signed_ok) {
			seterr(err, errlen, "%s: not signed by the CA of %s", v->crl_file,
			       v->ca_file);
			goto out;
		}
		if (!X509_STORE_add_crl(store, crl)) {
			seterr(err, errlen, "out of memory");
			goto out;
		}
	}
	X509_STORE_free(v->store);
	X509_CRL_free(v->crl);
	v->store = store;
	v->crl = crl;
	store = NULL;
	crl = NULL;
	ret = 0;
out:
	ERR_clear_error();
	X509_STORE_free(store);
	X509_CRL_free(crl);
	sk_X509_pop_free(roots, X509_free);
	return ret;
}

struct pki_verifier *pki_verifier_new(const char *ca_file, const char *crl_file, char *err,
				      size_t errlen)
{
	struct pki_verifier *v;
	const char *slash;

	if (!ca_file || !*ca_file) {
		seterr(err, errlen, "no CA file given");
		return NULL;
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	if (!str_copy(v->ca_file, sizeof(v->ca_file), ca_file))
		goto toolong;
	if (crl_file && *crl_file) {
		if (!str_copy(v->crl_file, sizeof(v->crl_file), crl_file))
			goto toolong;
	} else {
		v->crl_auto = true;
		slash = strrchr(ca_file, '/');
		if (!slash) {
			str_copy(v->crl_file, sizeof(v->crl_file), "crl.pem");
		} else if (pathf(v->crl_file, "%.*s/crl.pem", (int)(slash - ca_file), ca_file) <
			   0) {
			goto toolong;
		}
	}
	v->sig = verifier_sig(v);
	if (verifier_load(v, err, errlen) < 0) {
		pki_verifier_free(v);
		return NULL;
	}
	return v;
toolong:
	seterr(err, errlen, "path too long: %s", ca_file);
	free(v);
	return NULL;
}

void pki_verifier_free(struct pki_verifier *v)
{
	if (!v)
		return;
	X509_STORE_free(v->store);
	X509_CRL_free(v->crl);
	free(v);
}

int pki_verifier_refresh(struct pki_verifier *v, char *err, size_t errlen)
{
	uint64_t sig = verifier_sig(v);

	if (sig == v->sig)
		return 0;
	v->sig = sig; /* a file that does not load is said once, not every look */
	return verifier_load(v, err, errlen) < 0 ? -1 : 1;
}

bool pki_verifier_revoked(const struct pki_verifier *v, const char *serial)
{
	ASN1_INTEGER *a;
	bool r;

	if (!v || !v->crl)
		return false;
	a = serial_from_hex(serial);
	r = crl_has(v->crl, a);
	ASN1_INTEGER_free(a);
	ERR_clear_error();
	return r;
}

static void __attribute__((format(printf, 3, 4)))
why_set(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	ERR_clear_error();
	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

int pki_verify(const struct pki_verifier *v, const uint8_t *const *ders, const size_t *lens,
	       size_t n, int64_t now, struct pki_ident *id, char *why, size_t whylen)
{
	STACK_OF(X509) *chain = NULL;
	X509_STORE_CTX *ctx = NULL;
	X509 *leaf = NULL;
	char t[PKI_TIME_LEN];
	struct pki_ident me;
	int ret = -1, e, depth;

	if (!v || !ders || !lens || n == 0) {
		why_set(why, whylen, "no certificate");
		return -1;
	}
	if (n > PKI_CHAIN_MAX) {
		why_set(why, whylen, "a chain of %zu certificates is too long (at most %d)", n,
			PKI_CHAIN_MAX);
		return -1;
	}
	chain = sk_X509_new_null();
	if (!chain) {
		why_set(why, whylen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = ders[i];
		X509 *x;

		if (!p || lens[i] == 0 || lens[i] > PKI_DER_MAX) {
			why_set(why, whylen, "certificate %zu of the chain is empty or too long",
				i);
			goto out;
		}
		x = d2i_X509(NULL, &p, (long)lens[i]);
		if (!x || p != ders[i] + lens[i]) {
			X509_free(x);
			why_set(why, whylen, "certificate %zu of the chain is not valid DER", i);
			goto out;
		}
		if (i == 0)
			leaf = x;
		else if (!sk_X509_push(chain, x)) {
			X509_free(x);
			why_set(why, whylen, "out of memory");
			goto out;
		}
	}

	switch (cert_ident(leaf, &me)) {
	case IDENT_OK:
		break;
	case IDENT_NAME:
		why_set(why, whylen, "certificate has no valid name");
		goto out;
	case IDENT_KIND:
		why_set(why, whylen, "certificate \"%s\" has no kind (subject OU node or admin)",
			me.name);
		goto out;
	default:
		why_set(why, whylen, "certificate \"%s\" has a bad serial number or validity",
			me.name);
		goto out;
	}
	if (now < me.not_before) {
		pki_time_str(me.not_before, t);
		why_set(why, whylen, "certificate \"%s\" is not yet valid (from %s)", me.name, t);
		goto out;
	}
	if (now >= me.not_after) { /* BoringSSL's X509_cmp_time: notAfter itself is past */
		pki_time_str(me.not_after, t);
		why_set(why, whylen, "certificate \"%s\" expired at %s", me.name, t);
		goto out;
	}
	if (X509_check_ca(leaf)) {
		why_set(why, whylen, "certificate \"%s\" is a CA certificate", me.name);
		goto out;
	}
	if (!(X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) ||
	    !(X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT)) {
		why_set(why, whylen, "certificate \"%s\" is not for client authentication",
			me.name);
		goto out;
	}

	ctx = X509_STORE_CTX_new();
	if (!ctx || !X509_STORE_CTX_init(ctx, v->store, leaf, chain)) {
		why_set(why, whylen, "out of memory");
		goto out;
	}
	X509_STORE_CTX_set_time(ctx, 0, (time_t)now);
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
	if (v->crl)
		X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_CRL_CHECK);
	if (X509_verify_cert(ctx) != 1) {
		e = X509_STORE_CTX_get_error(ctx);
		depth = X509_STORE_CTX_get_error_depth(ctx);
		switch (e) {
		case X509_V_ERR_CERT_REVOKED:
			why_set(why, whylen, "certificate \"%s\" (serial %s) is revoked", me.name,
				me.serial);
			break;
		case X509_V_ERR_CERT_HAS_EXPIRED:
			why_set(why, whylen, "certificate \"%s\": the CA expired", me.name);
			break;
		case X509_V_ERR_CERT_NOT_YET_VALID:
			why_set(why, whylen, "certificate \"%s\": the CA is not yet valid",
				me.name);
			break;
		case X509_V_ERR_UNABLE_TO_GET_CRL:
		case X509_V_ERR_CRL_SIGNATURE_FAILURE:
		case X509_V_ERR_CRL_HAS_EXPIRED:
		case X509_V_ERR_CRL_NOT_YET_VALID:
		case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
			why_set(why, whylen,
				"certificate \"%s\": the server's CRL is not usable (%s)", me.name,
				X509_verify_cert_error_string(e));
			break;
		case X509_V_ERR_INVALID_PURPOSE:
			why_set(why, whylen, "certificate \"%s\" is not for client authentication",
				me.name);
			break;
		default:
			/* no chain to the CA: unknown issuer, bad signature, self-signed, ... */
			why_set(why, whylen,
				"certificate \"%s\" is not issued by this server's CA (%s at depth "
				"%d)",
				me.name, X509_verify_cert_error_string(e), depth);
			break;
		}
		goto out;
	}
	me.revoked = false;
	if (id)
		*id = me;
	ret = 0;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	sk_X509_pop_free(chain, X509_free);
	X509_free(leaf);
	return ret;
}

int pki_verify_concat(const struct pki_verifier *v, const uint8_t *buf, size_t len, int64_t now,
		      struct pki_ident *id, char *why, size_t whylen)
{
	/* one more than a chain may hold: pki_verify refuses that as too many */
	const uint8_t *ders[PKI_CHAIN_MAX + 1];
	size_t lens[PKI_CHAIN_MAX + 1], n = 0;
	CBS all, one;

	CBS_init(&all, buf, len);
	while (CBS_len(&all) > 0 && n < PKI_CHAIN_MAX + 1) {
		if (!CBS_get_any_asn1_element(&all, &one, NULL, NULL)) {
			if (why && whylen)
				snprintf(why, whylen, "the client certificate is not DER");
			return -1;
		}
		ders[n] = CBS_data(&one);
		lens[n++] = CBS_len(&one);
	}
	return pki_verify(v, ders, lens, n, now, id, why, whylen);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for tls/pki.c: pki_init, pki_issue, pki_revoke and pki_ls in a
 * temporary directory (layout, file modes, refusals that change nothing,
 * symlinked keys), and the verifier on what a client would present: a node
 * and an admin certificate, one of another CA, a revoked one after the CRL
 * changed on disk, expired and not yet valid ones (a verify time far in the
 * future or at 0), garbage DER, too long a chain; for both key types.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tls/pki.h"

static enum pki_key g_key;

/* dir and, for DIR/pki of init_ok, the temporary directory holding it */
static void rm_rf(const char *dir)
{
	char cmd[512];
	size_t n = strlen(dir);

	if (n > 4 && !strcmp(dir + n - 4, "/pki"))
		n -= 4;
	snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)n, dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", dir);
}

static void tmpdir(char *out, size_t len)
{
	snprintf(out, len, "/tmp/nave-pki-XXXXXX");
	assert_non_null(mkdtemp(out));
}

static char *path(char *buf, const char *dir, const char *rel)
{
	snprintf(buf, 512, "%s/%s", dir, rel);
	return buf;
}

static mode_t mode_of(const char *dir, const char *rel)
{
	char p[512];
	struct stat st;

	assert_int_equal(lstat(path(p, dir, rel), &st), 0);
	return st.st_mode & 07777;
}

/* the whole file, malloc'd (NULL when missing) */
static char *slurp(const char *file, size_t *len)
{
	FILE *f = fopen(file, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* DER of the PEM certificate in dir/rel */
static uint8_t *der_of(const char *dir, const char *rel, size_t *len)
{
	char p[512];
	FILE *f = fopen(path(p, dir, rel), "r");
	X509 *x;
	uint8_t *der = NULL, *copy;
	int n;

	assert_non_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	n = i2d_X509(x, &der);
	assert_true(n > 0);
	X509_free(x);
	copy = malloc((size_t)n); /* free()-able: BoringSSL's allocations are not */
	assert_non_null(copy);
	memcpy(copy, der, (size_t)n);
	OPENSSL_free(der);
	*len = (size_t)n;
	return copy;
}

static int verify_one(const struct pki_verifier *v, const uint8_t *der, size_t len, int64_t now,
		      struct pki_ident *id, char *why)
{
	const uint8_t *ders[1] = {der};
	size_t lens[1] = {len};

	return pki_verify(v, ders, lens, 1, now, id, why, 256);
}

static void init_ok(char *dir, size_t len)
{
	char err[256] = "";

	tmpdir(dir, len);
	strcat(dir, "/pki"); /* init makes DIR itself */
	if (pki_init(dir, g_key, 3650, err, sizeof(err)) != 0)
		fail_msg("pki_init: %s", err);
}

static void test_init_layout(void **state)
{
	char dir[128], err[256];
	struct pki_ident *ids;
	size_t n;

	init_ok(dir, sizeof(dir));
	assert_int_equal(mode_of(dir, ""), 0755);
	assert_int_equal(mode_of(dir, "ca"), 0755);
	assert_int_equal(mode_of(dir, "ca/ca.crt"), 0644);
	assert_int_equal(mode_of(dir, "ca/ca.key"), 0600);
	assert_int_equal(mode_of(dir, "ca/crl.pem"), 0644);
	assert_int_equal(mode_of(dir, "nodes"), 0755);
	assert_int_equal(mode_of(dir, "nodes/admin"), 0755);
	assert_int_equal(mode_of(dir, "nodes/admin/ca.crt"), 0644);
	assert_int_equal(mode_of(dir, "nodes/admin/tls.crt"), 0644);
	assert_int_equal(mode_of(dir, "nodes/admin/tls.key"), 0600);

	assert_int_equal(pki_ls(dir, &ids, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ids[0].name, "admin");
	assert_int_equal(ids[0].kind, PKI_ADMIN);
	assert_false(ids[0].revoked);
	/* the admin certificate is valid a year, not the CA's ten */
	assert_true(ids[0].not_after - ids[0].not_before <= 365 * 86400 + 3600);
	assert_true(ids[0].not_after > time(NULL) + 364 * 86400);
	assert_true(strlen(ids[0].serial) >= 31 && strlen(ids[0].serial) <= 32);
	assert_int_equal(strspn(ids[0].serial, "0123456789abcdef"), strlen(ids[0].serial));
	free(ids);
	rm_rf(dir);
}

static const char *const init_files[] = {
    "ca/ca.crt",	   "ca/ca.key",		  "ca/crl.pem",
    "nodes/admin/tls.crt", "nodes/admin/tls.key", "nodes/admin/ca.crt",
};

static void test_init_twice(void **state)
{
	char dir[128], err[256], p[512], q[512];
	char *before[6];
	size_t lens[6], len;

	init_ok(dir, sizeof(dir));
	for (int i = 0; i < 6; i++)
		assert_non_null(before[i] = slurp(path(p, dir, init_files[i]), &lens[i]));
	assert_int_equal(pki_init(dir, g_key, 3650, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "exists"));
	assert_null(strchr(err, '\n'));
	/* only the admin's directory left from an earlier PKI: refused too */
	assert_int_equal(rename(path(p, dir, "ca"), path(q, dir, "ca.old")), 0);
	assert_int_equal(pki_init(dir, g_key, 3650, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "nodes/admin"));
	assert_int_equal(rename(path(p, dir, "ca.old"), path(q, dir, "ca")), 0);
	for (int i = 0; i < 6; i++) {
		char *now = slurp(path(p, dir, init_files[i]), &len);

		assert_non_null(now);
		assert_int_equal(len, lens[i]);
		assert_memory_equal(now, before[i], len);
		free(now);
		free(before[i]);
	}
	rm_rf(dir);
}

static void test_refusals(void **state)
{
	static const char *const bad[] = {
	    "",	       ".",   "..",
	    ".hidden", "a/b", "a b",
	    "a\nb",    "ü",   "abcdefghijklmnopqrstuvwxyz012345", /* 32 */
	};
	char dir[128], err[256], p[512];
	struct pki_ident id;

	init_ok(dir, sizeof(dir));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    pki_issue(dir, bad[i], PKI_NODE, 30, false, NULL, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "1-31 characters"));
		assert_int_equal(pki_revoke(dir, bad[i], NULL, err, sizeof(err)), -EINVAL);
	}
	assert_int_equal(pki_issue(dir, "abcdefghijklmnopqrstuvwxyz01234", PKI_NODE, 30, false, &id,
				   err, sizeof(err)),
			 0);
	assert_int_equal(pki_issue(dir, "dev1", PKI_NODE, 0, false, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "days"));
	assert_int_equal(
	    pki_issue(dir, "dev1", PKI_NODE, PKI_DAYS_MAX + 1, false, NULL, err, sizeof(err)),
	    -EINVAL);
	assert_int_equal(pki_init(dir, g_key, 0, err, sizeof(err)), -EINVAL);

	/* issue twice, revoke unknown, revoke twice */
	assert_int_equal(pki_issue(dir, "dev1", PKI_NODE, 30, false, &id, err, sizeof(err)), 0);
	assert_string_equal(id.name, "dev1");
	assert_int_equal(id.kind, PKI_NODE);
	assert_true(id.not_after - time(NULL) <= 30 * 86400);
	assert_true(id.not_after - time(NULL) > 30 * 86400 - 60);
	assert_int_equal(pki_issue(dir, "dev1", PKI_NODE, 30, false, NULL, err, sizeof(err)),
			 -EEXIST);
	assert_non_null(strstr(err, "exists"));
	assert_int_equal(pki_revoke(dir, "nobody", NULL, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "nobody"));
	assert_int_equal(pki_revoke(dir, "dev1", &id, err, sizeof(err)), 0);
	assert_true(id.revoked);
	assert_int_equal(pki_revoke(dir, "dev1", NULL, err, sizeof(err)), -EALREADY);
	assert_non_null(strstr(err, id.serial));

	/* no PKI there */
	assert_int_equal(
	    pki_issue(path(p, dir, "nothing"), "dev1", PKI_NODE, 30, false, NULL, err, sizeof(err)),
	    -ENOENT);
	assert_non_null(strstr(err, "no CA"));
	rm_rf(dir);
}

static void test_symlinked_keys(void **state)
{
	char dir[128], err[256], p[512], q[512], target[512];
	struct stat st;
	FILE *f;

	init_ok(dir, sizeof(dir));
	/* a node directory whose tls.key is a symlink: force does not write through it */
	assert_int_equal(mkdir(path(p, dir, "nodes/sym"), 0755), 0);
	snprintf(target, sizeof(target), "%s/elsewhere", dir);
	f = fopen(target, "w");
	assert_non_null(f);
	fputs("keep\n", f);
	fclose(f);
	assert_int_equal(symlink(target, path(p, dir, "nodes/sym/tls.key")), 0);
	assert_int_equal(pki_issue(dir, "sym", PKI_NODE, 30, true, NULL, err, sizeof(err)), -ELOOP);
	assert_non_null(strstr(err, "symlink"));
	assert_int_equal(stat(target, &st), 0);
	assert_int_equal(st.st_size, 5);

	/* a CA key that is a symlink is not read */
	assert_int_equal(rename(path(p, dir, "ca/ca.key"), path(q, dir, "ca.key.real")), 0);
	assert_int_equal(symlink(q, path(p, dir, "ca/ca.key")), 0);
	assert_int_equal(pki_issue(dir, "dev2", PKI_NODE, 30, false, NULL, err, sizeof(err)),
			 -ELOOP);
	assert_non_null(strstr(err, "symlink"));
	rm_rf(dir);
}

static void test_force_revokes_old(void **state)
{
	char dir[128], err[256], p[512], old_serial[PKI_SERIAL_MAX];
	struct pki_verifier *v;
	struct pki_ident id, old;
	struct pki_ident *ids;
	uint8_t *der;
	size_t len, n;

	init_ok(dir, sizeof(dir));
	assert_int_equal(pki_issue(dir, "dev1", PKI_NODE, 30, false, &id, err, sizeof(err)), 0);
	assert_int_equal(pki_cert_ident(path(p, dir, "nodes/dev1/tls.crt"), &old, err, sizeof(err)),
			 0);
	assert_string_equal(old.serial, id.serial);
	strcpy(old_serial, id.serial);
	v = pki_verifier_new(path(p, dir, "ca/ca.crt"), NULL, err, sizeof(err));
	assert_non_null(v);
	assert_false(pki_verifier_revoked(v, old_serial));

	assert_int_equal(pki_issue(dir, "dev1", PKI_ADMIN, 30, true, &id, err, sizeof(err)), 0);
	assert_string_not_equal(id.serial, old_serial);
	assert_int_equal(id.kind, PKI_ADMIN);
	assert_int_equal(pki_verifier_refresh(v, err, sizeof(err)), 1);
	assert_true(pki_verifier_revoked(v, old_serial));
	assert_false(pki_verifier_revoked(v, id.serial));
	assert_false(pki_verifier_revoked(v, "zz"));
	assert_false(pki_verifier_revoked(v, ""));

	der = der_of(dir, "nodes/dev1/tls.crt", &len);
	assert_int_equal(verify_one(v, der, len, time(NULL), &id, err), 0);
	assert_int_equal(id.kind, PKI_ADMIN);
	free(der);

	assert_int_equal(pki_ls(dir, &ids, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_string_equal(ids[0].name, "admin");
	assert_string_equal(ids[1].name, "dev1");
	assert_false(ids[1].revoked);
	free(ids);
	pki_verifier_free(v);
	rm_rf(dir);
}

static void test_verify(void **state)
{
	char dir[128], dir2[128], err[256], why[256], p[512], q[512], t[PKI_TIME_LEN];
	struct pki_verifier *v, *v2;
	struct pki_ident id, issued;
	uint8_t *der, *der_admin, *der_other;
	size_t len, len_admin, len_other;
	int64_t now = time(NULL);

	init_ok(dir, sizeof(dir));
	init_ok(dir2, sizeof(dir2));
	assert_int_equal(pki_issue(dir, "dev1", PKI_NODE, 30, false, &issued, err, sizeof(err)), 0);
	assert_int_equal(pki_issue(dir, "dev2", PKI_NODE, 30, false, NULL, err, sizeof(err)), 0);
	assert_int_equal(pki_issue(dir2, "dev1", PKI_NODE, 30, false, NULL, err, sizeof(err)), 0);
	der = der_of(dir, "nodes/dev1/tls.crt", &len);
	der_admin = der_of(dir, "nodes/admin/tls.crt", &len_admin);
	der_other = der_of(dir2, "nodes/dev1/tls.crt", &len_other);

	v = pki_verifier_new(path(p, dir, "ca/ca.crt"), "", err, sizeof(err));
	if (!v)
		fail_msg("verifier: %s", err);
	assert_int_equal(pki_verifier_refresh(v, err, sizeof(err)), 0);

	/* good node, admin */
	assert_int_equal(verify_one(v, der, len, now, &id, why), 0);
	assert_string_equal(id.name, "dev1");
	assert_int_equal(id.kind, PKI_NODE);
	assert_string_equal(id.serial, issued.serial);
	assert_int_equal(id.not_after, issued.not_after);
	assert_int_equal(verify_one(v, der_admin, len_admin, now, &id, why), 0);
	assert_string_equal(id.name, "admin");
	assert_int_equal(id.kind, PKI_ADMIN);

	/* another CA's: same subject names, another key */
	assert_int_equal(verify_one(v, der_other, len_other, now, &id, why), -1);
	assert_non_null(strstr(why, "certificate \"dev1\" is not issued by this server's CA"));
	/* and the other way round */
	v2 = pki_verifier_new(path(p, dir2, "ca/ca.crt"), NULL, err, sizeof(err));
	assert_non_null(v2);
	assert_int_equal(verify_one(v2, der, len, now, &id, why), -1);
	assert_non_null(strstr(why, "not issued by this server's CA"));
	assert_int_equal(verify_one(v2, der_other, len_other, now, &id, why), 0);
	/* the CA certificate itself is no client certificate */
	{
		uint8_t *ca_der;
		size_t ca_len;

		ca_der = der_of(dir, "ca/ca.crt", &ca_len);
		assert_int_equal(verify_one(v, ca_der, ca_len, now, &id, why), -1);
		assert_non_null(strstr(why, "no valid name"));
		free(ca_der);
	}

	/* expired, not yet valid */
	assert_int_equal(verify_one(v, der, len, issued.not_after, &id, why), -1);
	pki_time_str(issued.not_after, t);
	assert_int_equal(strlen(t), 20);
	assert_int_equal(t[10], 'T');
	{
		char want[128];

		snprintf(want, sizeof(want), "certificate \"dev1\" expired at %s", t);
		assert_string_equal(why, want);
	}
	assert_int_equal(verify_one(v, der, len, issued.not_after - 1, &id, why), 0);
	assert_int_equal(verify_one(v, der, len, now + 3650LL * 86400, &id, why), -1);
	assert_non_null(strstr(why, "expired at"));
	assert_int_equal(verify_one(v, der, len, 0, &id, why), -1);
	assert_non_null(strstr(why, "certificate \"dev1\" is not yet valid"));

	/* garbage DER: nothing, random bytes, a cut certificate, trailing bytes */
	{
		uint8_t junk[64], *more;
		const uint8_t *ders[1];
		size_t lens[1];

		memset(junk, 0x30, sizeof(junk));
		assert_int_equal(verify_one(v, junk, sizeof(junk), now, &id, why), -1);
		assert_non_null(strstr(why, "not valid DER"));
		assert_int_equal(verify_one(v, der, len - 1, now, &id, why), -1);
		assert_non_null(strstr(why, "not valid DER"));
		more = malloc(len + 1);
		memcpy(more, der, len);
		more[len] = 0;
		assert_int_equal(verify_one(v, more, len + 1, now, &id, why), -1);
		assert_non_null(strstr(why, "not valid DER"));
		free(more);
		assert_int_equal(verify_one(v, der, 0, now, &id, why), -1);
		assert_int_equal(verify_one(v, der, PKI_DER_MAX + 1, now, &id, why), -1);
		assert_non_null(strstr(why, "too long"));
		ders[0] = der;
		lens[0] = len;
		assert_int_equal(pki_verify(v, ders, lens, 0, now, &id, why, sizeof(why)), -1);
	}

	/* a chain of too many; the longest allowed one with the CA repeated is fine */
	{
		const uint8_t *ders[PKI_CHAIN_MAX + 1];
		size_t lens[PKI_CHAIN_MAX + 1];
		uint8_t *ca_der;
		size_t ca_len;

		ca_der = der_of(dir, "ca/ca.crt", &ca_len);
		ders[0] = der;
		lens[0] = len;
		for (int i = 1; i <= PKI_CHAIN_MAX; i++) {
			ders[i] = ca_der;
			lens[i] = ca_len;
		}
		assert_int_equal(
		    pki_verify(v, ders, lens, PKI_CHAIN_MAX + 1, now, &id, why, sizeof(why)), -1);
		assert_non_null(strstr(why, "too long"));
		if (pki_verify(v, ders, lens, PKI_CHAIN_MAX, now, &id, why, sizeof(why)) != 0)
			fail_msg("chain of %d: %s", PKI_CHAIN_MAX, why);
		free(ca_der);
	}

	/* revoked: the CRL changes on disk, refresh picks it up */
	assert_int_equal(pki_revoke(dir, "dev1", &id, err, sizeof(err)), 0);
	assert_string_equal(id.serial, issued.serial);
	assert_int_equal(verify_one(v, der, len, now, &id, why), 0); /* not refreshed yet */
	assert_int_equal(pki_verifier_refresh(v, err, sizeof(err)), 1);
	assert_int_equal(pki_verifier_refresh(v, err, sizeof(err)), 0);
	assert_true(pki_verifier_revoked(v, issued.serial));
	assert_int_equal(verify_one(v, der, len, now, &id, why), -1);
	{
		char want[160];

		snprintf(want, sizeof(want), "certificate \"dev1\" (serial %s) is revoked",
			 issued.serial);
		assert_string_equal(why, want);
	}
	/* others still pass */
	assert_int_equal(verify_one(v, der_admin, len_admin, now, &id, why), 0);
	free(der);
	der = der_of(dir, "nodes/dev2/tls.crt", &len);
	assert_int_equal(verify_one(v, der, len, now, &id, why), 0);

	/*
	 * a CRL that goes away keeps the last one read (deleting it must not undo
	 * revocations); so does a broken one
	 */
	assert_int_equal(rename(path(p, dir, "ca/crl.pem"), path(q, dir, "crl.saved")), 0);
	assert_int_equal(pki_verifier_refresh(v, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "went away"));
	assert_true(pki_verifier_revoked(v, issued.serial));
	{
		FILE *f = fopen(path(p, dir, "ca/crl.pem"), "w");

		assert_non_null(f);
		fputs("not a CRL\n", f);
		fclose(f);
	}
	assert_int_equal(pki_verifier_refresh(v, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a PEM CRL"));
	assert_int_equal(pki_verifier_refresh(v, err, sizeof(err)), 0);
	/* another CA's CRL is refused */
	assert_int_equal(rename(path(p, dir2, "ca/crl.pem"), path(q, dir, "ca/crl.pem")), 0);
	assert_int_equal(pki_verifier_refresh(v, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not signed by the CA"));
	assert_int_equal(verify_one(v, der, len, now, &id, why), 0);

	/* files that do not load */
	assert_null(pki_verifier_new(path(p, dir, "nodes/dev2/tls.key"), NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "no PEM certificate"));
	assert_null(pki_verifier_new(path(p, dir, "missing.crt"), NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "missing.crt"));
	assert_null(pki_verifier_new(path(p, dir, "ca/ca.crt"), path(p, dir, "no-crl.pem"), err,
				     sizeof(err)));

	free(der);
	free(der_admin);
	free(der_other);
	pki_verifier_free(v);
	pki_verifier_free(v2);
	rm_rf(dir);
	rm_rf(dir2);
}

static void test_kind_and_time(void **state)
{
	char t[PKI_TIME_LEN];

	assert_string_equal(pki_kind_name(PKI_NODE), "node");
	assert_string_equal(pki_kind_name(PKI_ADMIN), "admin");
	assert_int_equal(pki_kind_parse("node"), PKI_NODE);
	assert_int_equal(pki_kind_parse("admin"), PKI_ADMIN);
	assert_int_equal(pki_kind_parse("Admin"), -1);
	assert_int_equal(pki_kind_parse(NULL), -1);
	pki_time_str(0, t);
	assert_string_equal(t, "1970-01-01T00:00:00Z");
	pki_time_str(1796040000, t);
	assert_string_equal(t, "2026-11-30T12:00:00Z");
	assert_true(pki_name_ok("dev-1.home_x"));
	assert_false(pki_name_ok(".x"));
}

static int use_ed25519(void **state)
{
	g_key = PKI_ED25519;
	return 0;
}

static int use_p256(void **state)
{
	g_key = PKI_P256;
	return 0;
}

#define BOTH(t) cmocka_unit_test_setup(t, use_ed25519), cmocka_unit_test_setup(t, use_p256)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kind_and_time),
	    BOTH(test_init_layout),
	    BOTH(test_init_twice),
	    BOTH(test_refusals),
	    BOTH(test_symlinked_keys),
	    BOTH(test_force_revokes_old),
	    BOTH(test_verify),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

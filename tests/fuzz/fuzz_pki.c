// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for tls/pki.c's verifier: the certificate chain a client
 * presents (DER, untrusted), checked against a PKI made once at start in a
 * temporary directory (a CA, a node "dev1", a revoked node "gone").
 *
 * Input: a first byte; with its high bit clear, the rest is a chain of
 * certificates, each a 2-byte big-endian length and its bytes (the first
 * byte's low bits: how many, 0-7); with it set, the chain is the real
 * certificate of dev1 (or of gone: bit 6) with the rest of the input as
 * (2-byte offset, byte) patches, then the CA certificate when bit 5 is set;
 * with the high bit clear and bit 3 set, the rest is certificates as relayd
 * keeps a handshake's, DER one after the other, for pki_verify_concat.
 * Checks: a verdict is 0 or -1; a refusal is one printable line; an accepted
 * chain names a valid name, a known kind, a lower-case hex serial without
 * leading zeros, a validity holding the time of the check, and is never the
 * revoked certificate; the unpatched dev1 is accepted and gone refused.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon -D_GNU_SOURCE \
 *     -I/usr/include/android tests/fuzz/fuzz_pki.c tls/pki.c common/valid.c \
 *     common/util.c common/log.c -ljansson /usr/lib/x86_64-linux-gnu/android/libcrypto.so
 */
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tls/pki.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct pki_verifier *g_v;
static uint8_t *g_dev1, *g_gone, *g_ca;
static size_t g_dev1_len, g_gone_len, g_ca_len;
static char g_dir[64];

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_pki: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	abort();
}

static uint8_t *der_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	uint8_t *der = NULL, *copy;
	X509 *x;
	int n = 0;

	if (!f)
		fail("cannot open", path);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!x || (n = i2d_X509(x, &der)) <= 0)
		fail("cannot read", path);
	X509_free(x);
	copy = malloc((size_t)n);
	if (!copy)
		fail("out of memory", NULL);
	memcpy(copy, der, (size_t)n);
	OPENSSL_free(der);
	*len = (size_t)n;
	return copy;
}

static void cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_pki: cleanup of %s failed\n", g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[96], path[160], err[256];

	snprintf(g_dir, sizeof(g_dir), "/tmp/nave-fuzz-pki-XXXXXX");
	if (!mkdtemp(g_dir))
		fail("mkdtemp", NULL);
	atexit(cleanup);
	snprintf(dir, sizeof(dir), "%s/pki", g_dir);
	if (pki_init(dir, PKI_ED25519, 30, err, sizeof(err)) < 0 ||
	    pki_issue(dir, "dev1", PKI_NODE, 10, false, NULL, err, sizeof(err)) < 0 ||
	    pki_issue(dir, "gone", PKI_NODE, 10, false, NULL, err, sizeof(err)) < 0 ||
	    pki_revoke(dir, "gone", NULL, err, sizeof(err)) < 0)
		fail("making the PKI", err);
	snprintf(path, sizeof(path), "%s/ca/ca.crt", dir);
	g_v = pki_verifier_new(path, NULL, err, sizeof(err));
	if (!g_v)
		fail("verifier", err);
	g_ca = der_file(path, &g_ca_len);
	snprintf(path, sizeof(path), "%s/nodes/dev1/tls.crt", dir);
	g_dev1 = der_file(path, &g_dev1_len);
	snprintf(path, sizeof(path), "%s/nodes/gone/tls.crt", dir);
	g_gone = der_file(path, &g_gone_len);
	return 0;
}

static void check_why(const char *why)
{
	size_t n = strlen(why);

	if (!n)
		fail("a refusal without a reason", NULL);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
			fail("a reason that is not one printable line", why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *ders[8];
	size_t lens[8], n = 0;
	uint8_t *patched = NULL;
	struct pki_ident id;
	char why[256];
	int64_t now = time(NULL);
	bool unpatched = false, revoked = false, concat = false;
	int ret;

	if (!size)
		return 0;
	if (data[0] & 0x80) {
		const uint8_t *src = data[0] & 0x40 ? g_gone : g_dev1;
		size_t len = data[0] & 0x40 ? g_gone_len : g_dev1_len;

		revoked = data[0] & 0x40;
		patched = malloc(len);
		if (!patched)
			return 0;
		memcpy(patched, src, len);
		for (size_t i = 1; i + 3 <= size; i += 3)
			patched[((size_t)data[i] << 8 | data[i + 1]) % len] = data[i + 2];
		unpatched = !memcmp(patched, src, len);
		ders[n] = patched;
		lens[n++] = len;
		if (data[0] & 0x20) {
			ders[n] = g_ca;
			lens[n++] = g_ca_len;
		}
	} else if (data[0] & 0x08) {
		concat = true;
	} else {
		size_t want = data[0] & 7, off = 1;

		while (n < want && off + 2 <= size) {
			size_t len = (size_t)data[off] << 8 | data[off + 1];

			off += 2;
			if (len > size - off)
				len = size - off;
			ders[n] = data + off;
			lens[n++] = len;
			off += len;
		}
	}

	why[0] = 0;
	ret = concat ? pki_verify_concat(g_v, data + 1, size - 1, now, &id, why, sizeof(why))
		     : pki_verify(g_v, ders, lens, n, now, &id, why, sizeof(why));
	if (ret != 0 && ret != -1)
		fail("a verdict that is neither 0 nor -1", NULL);
	if (ret < 0) {
		check_why(why);
		if (unpatched && !revoked)
			fail("dev1's own certificate refused", why);
	} else {
		size_t sl = strlen(id.serial);

		if (revoked)
			fail("the revoked certificate accepted", id.serial);
		if (!pki_name_ok(id.name) || (id.kind != PKI_NODE && id.kind != PKI_ADMIN))
			fail("accepted without a valid name or kind", id.name);
		if (!sl || strspn(id.serial, "0123456789abcdef") != sl ||
		    (sl > 1 && id.serial[0] == '0'))
			fail("a serial that is not lower-case hex", id.serial);
		if (now < id.not_before || now >= id.not_after)
			fail("accepted outside its validity", id.name);
		if (pki_verifier_revoked(g_v, id.serial))
			fail("accepted a serial on the CRL", id.serial);
	}
	free(patched);
	return 0;
}

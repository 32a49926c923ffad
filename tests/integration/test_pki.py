# SPDX-License-Identifier: Apache-2.0
"""navectl pki: the client certificate PKI made with the real navectl binary
(local files, no daemon), checked by Debian's openssl as an independent
implementation: the layout and modes init makes, chains of the admin and an
issued node (Ed25519 and P-256) that `openssl verify` accepts, the
extensions `openssl x509` shows, a revoked certificate that `openssl verify
-crl_check` refuses while another passes, a CRL `openssl crl -verify`
accepts; ls (table and --json), --force, the default directory under the
config's state_dir, and every refusal with its exit code and one line."""
import json
import re
import shutil
import stat
import time

import pytest

import navetest as nt

OPENSSL = shutil.which("openssl")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def navectl(*args, cwd=None):
    return nt.run([nt.NAVECTL, *args], cwd=cwd)


def ok(*args, cwd=None):
    p = navectl(*args, cwd=cwd)
    assert p.returncode == 0, f"navectl {' '.join(map(str, args))}: exit {p.returncode}\n{p.stderr}"
    assert p.stderr == "", p.stderr
    return p.stdout


def refused(rc, *args, want=None):
    """Exit rc, nothing on stdout, exactly one line "navectl: ..." on stderr."""
    p = navectl(*args)
    assert p.returncode == rc, f"exit {p.returncode} (want {rc})\n{p.stdout}\n{p.stderr}"
    assert p.stdout == "", p.stdout
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("navectl: "), p.stderr
    if want:
        assert want in lines[0], lines[0]
    return lines[0]


def openssl(*args):
    if not OPENSSL:
        pytest.fail("openssl (Debian's CLI) is not installed: the independent check needs it")
    return nt.run([OPENSSL, *args])


def mode(p):
    return stat.S_IMODE(p.lstat().st_mode)


def snapshot(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def serial_of(crt):
    r = openssl("x509", "-in", crt, "-noout", "-serial")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().split("=", 1)[1].lower().lstrip("0")


@pytest.mark.parametrize("key", ["ed25519", "p256"])
def test_init_issue_and_openssl_verify(tmp_path, key):
    d = tmp_path / "pki"
    out = ok("pki", "init", "--dir", d, "--key-type", key, "--days", "100")
    lines = out.splitlines()
    assert 2 <= len(lines) <= 4, out
    assert f"client_ca = {d}/ca/ca.crt" in out and "client_auth = optional" in out, out
    assert "nave configure --server" in out and "--cert" in out, out

    # layout and modes
    assert mode(d) == 0o755 and mode(d / "ca") == 0o755 and mode(d / "nodes") == 0o755
    assert mode(d / "ca" / "ca.crt") == 0o644 and mode(d / "ca" / "crl.pem") == 0o644
    assert mode(d / "ca" / "ca.key") == 0o600
    admin = d / "nodes" / "admin"
    assert mode(admin) == 0o755
    assert sorted(p.name for p in admin.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert mode(admin / "tls.key") == 0o600 and mode(admin / "tls.crt") == 0o644
    assert (admin / "ca.crt").read_bytes() == (d / "ca" / "ca.crt").read_bytes()
    assert sorted(p.name for p in (d / "ca").iterdir()) == ["ca.crt", "ca.key", "crl.pem"]

    out = ok("pki", "issue", "--dir", d, "--name", "dev-1.home", "--days", "30")
    node = d / "nodes" / "dev-1.home"
    assert f"{node}" in out and "dev-1.home" in out, out
    m = re.search(r"serial ([0-9a-f]+), valid until (\S+)", out)
    assert m and RFC3339.fullmatch(m.group(2)), out
    assert serial_of(node / "tls.crt") == m.group(1)
    assert mode(node / "tls.key") == 0o600 and mode(node) == 0o755

    # the chains, by openssl
    for crt in (admin / "tls.crt", node / "tls.crt"):
        r = openssl("verify", "-CAfile", d / "ca" / "ca.crt", crt)
        assert r.returncode == 0 and r.stdout.strip() == f"{crt}: OK", r.stdout + r.stderr
        r = openssl("verify", "-purpose", "sslclient", "-CAfile", crt.parent / "ca.crt", crt)
        assert r.returncode == 0, r.stdout + r.stderr
    # a node's certificate is no CA: nothing it signs verifies
    r = openssl("verify", "-CAfile", node / "tls.crt", admin / "tls.crt")
    assert r.returncode != 0

    # what the certificates say
    r = openssl("x509", "-in", node / "tls.crt", "-noout", "-subject", "-ext",
                "extendedKeyUsage,keyUsage,basicConstraints,subjectAltName")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "subject=O = nave, OU = node, CN = dev-1.home" in text, text
    assert "TLS Web Client Authentication" in text and "Server Authentication" not in text
    assert "Digital Signature" in text and "CA:FALSE" in text and "DNS:dev-1.home" in text
    r = openssl("x509", "-in", admin / "tls.crt", "-noout", "-subject")
    assert "OU = admin, CN = admin" in r.stdout, r.stdout
    r = openssl("x509", "-in", d / "ca" / "ca.crt", "-noout", "-subject", "-ext",
                "basicConstraints,keyUsage")
    assert "CN = nave root CA" in r.stdout and "CA:TRUE, pathlen:0" in r.stdout
    assert "Certificate Sign, CRL Sign" in r.stdout, r.stdout
    r = openssl("x509", "-in", node / "tls.crt", "-noout", "-text")
    if key == "ed25519":
        assert "Public Key Algorithm: ED25519" in r.stdout
        assert "Signature Algorithm: ED25519" in r.stdout
    else:
        assert "NIST CURVE: P-256" in r.stdout
        assert "Signature Algorithm: ecdsa-with-SHA256" in r.stdout
    # the CA's validity is --days, the node's 30 days
    r = openssl("x509", "-in", node / "tls.crt", "-noout", "-checkend", str(29 * 86400))
    assert r.returncode == 0
    r = openssl("x509", "-in", node / "tls.crt", "-noout", "-checkend", str(31 * 86400))
    assert r.returncode != 0
    r = openssl("x509", "-in", d / "ca" / "ca.crt", "-noout", "-checkend", str(101 * 86400))
    assert r.returncode != 0
    # the keys are the certificates' keys
    for n in (admin, node):
        a = openssl("pkey", "-in", n / "tls.key", "-pubout")
        b = openssl("x509", "-in", n / "tls.crt", "-noout", "-pubkey")
        assert a.returncode == 0 and a.stdout == b.stdout


def test_revoke_and_the_crl(tmp_path):
    d = tmp_path / "pki"
    ok("pki", "init", "--dir", d)
    ok("pki", "issue", "--dir", d, "--name", "dev1")
    ok("pki", "issue", "--dir", d, "--name", "dev2")
    ca, crl = d / "ca" / "ca.crt", d / "ca" / "crl.pem"
    dev1, dev2 = d / "nodes" / "dev1" / "tls.crt", d / "nodes" / "dev2" / "tls.crt"
    # the empty CRL init made already verifies, and nothing is revoked
    r = openssl("crl", "-in", crl, "-noout", "-verify", "-CAfile", ca)
    assert r.returncode == 0 and "verify OK" in r.stdout + r.stderr, r.stdout + r.stderr
    r = openssl("verify", "-crl_check", "-CRLfile", crl, "-CAfile", ca, dev1, dev2)
    assert r.returncode == 0, r.stdout + r.stderr

    s1 = serial_of(dev1)
    out = ok("pki", "revoke", "--dir", d, "--name", "dev1")
    assert f"serial {s1}" in out and "within a second" in out, out
    assert mode(crl) == 0o644
    r = openssl("crl", "-in", crl, "-noout", "-verify", "-CAfile", ca)
    assert r.returncode == 0 and "verify OK" in r.stdout + r.stderr, r.stdout + r.stderr
    r = openssl("crl", "-in", crl, "-noout", "-text")
    assert "Version 2" in r.stdout and s1.upper() in r.stdout.replace(":", ""), r.stdout
    r = openssl("verify", "-crl_check", "-CRLfile", crl, "-CAfile", ca, dev1)
    assert r.returncode != 0 and "certificate revoked" in r.stdout + r.stderr, r.stdout + r.stderr
    r = openssl("verify", "-crl_check", "-CRLfile", crl, "-CAfile", ca, dev2)
    assert r.returncode == 0 and r.stdout.strip() == f"{dev2}: OK", r.stdout + r.stderr

    ls = json.loads(ok("pki", "ls", "--dir", d, "--json"))
    assert [(c["name"], c["kind"], c["revoked"]) for c in ls] == [
        ("admin", "admin", False), ("dev1", "node", True), ("dev2", "node", False)]
    for c in ls:
        assert set(c) == {"name", "kind", "serial", "not_before", "not_after", "revoked",
                          "expired"}, c
        assert RFC3339.fullmatch(c["not_before"]) and RFC3339.fullmatch(c["not_after"]), c
        assert c["expired"] is False and re.fullmatch(r"[0-9a-f]{1,40}", c["serial"]), c
    assert ls[1]["serial"] == s1
    table = ok("pki", "ls", "--dir", d).splitlines()
    assert table[0].split() == ["NAME", "KIND", "SERIAL", "EXPIRES", "STATUS"], table
    rows = [l.split() for l in table[1:]]
    assert [(r[0], r[1], r[4]) for r in rows] == [
        ("admin", "admin", "valid"), ("dev1", "node", "revoked"), ("dev2", "node", "valid")]
    assert rows[1][2] == s1 and RFC3339.fullmatch(rows[1][3])

    # --force: a new certificate, the old one on the CRL
    old = dev2.read_bytes()
    s2 = serial_of(dev2)
    out = ok("pki", "issue", "--dir", d, "--name", "dev2", "--force", "--admin")
    assert f"replaced serial {s2}, now on the CRL" in out and "admin certificate" in out, out
    (tmp_path / "old.crt").write_bytes(old)
    r = openssl("verify", "-crl_check", "-CRLfile", crl, "-CAfile", ca, tmp_path / "old.crt")
    assert r.returncode != 0 and "certificate revoked" in r.stdout + r.stderr
    r = openssl("verify", "-crl_check", "-CRLfile", crl, "-CAfile", ca, dev2)
    assert r.returncode == 0, r.stdout + r.stderr
    ls = json.loads(ok("pki", "ls", "--dir", d, "--json"))
    assert [(c["name"], c["kind"], c["revoked"]) for c in ls][2] == ("dev2", "admin", False)


def test_refusals(tmp_path):
    d = tmp_path / "pki"
    ok("pki", "init", "--dir", d, "--key-type", "p256")
    ok("pki", "issue", "--dir", d, "--name", "dev1")
    before = snapshot(d)

    # init twice: nothing overwritten, byte for byte
    refused(1, "pki", "init", "--dir", d, want="exists")
    refused(1, "pki", "init", "--dir", d, "--key-type", "ed25519", want="exists")
    assert snapshot(d) == before
    # issue twice, revoke unknown, revoke twice
    refused(1, "pki", "issue", "--dir", d, "--name", "dev1", want="--force")
    refused(1, "pki", "issue", "--dir", d, "--name", "admin", "--admin", want="exists")
    assert snapshot(d) == before
    refused(1, "pki", "revoke", "--dir", d, "--name", "nobody", want='"nobody"')
    ok("pki", "revoke", "--dir", d, "--name", "dev1")
    line = refused(1, "pki", "revoke", "--dir", d, "--name", "dev1", want="revoked already")
    assert serial_of(d / "nodes" / "dev1" / "tls.crt") in line
    # no PKI in the directory
    refused(1, "pki", "issue", "--dir", tmp_path / "none", "--name", "x", want="no CA")
    refused(1, "pki", "ls", "--dir", tmp_path / "none", want="pki init")
    assert not (tmp_path / "none").exists()

    # bad usage: exit 2, nothing written
    before = snapshot(d)
    for name in ["", ".", "..", ".x", "a/b", "a b", "x" * 32, "d\u00e9v", "a\x1bb"]:
        line = refused(2, "pki", "issue", "--dir", d, "--name", name, want="bad --name")
        assert "\x1b" not in line
        refused(2, "pki", "revoke", "--dir", d, "--name", name, want="bad --name")
    refused(2, "pki", "issue", "--dir", d, want="missing --name")
    refused(2, "pki", "revoke", "--dir", d, want="missing --name")
    for days in ["0", "36501", "-1", "1x", ""]:
        refused(2, "pki", "issue", "--dir", d, "--name", "dev9", "--days", days, want="--days")
        refused(2, "pki", "init", "--dir", tmp_path / "new", "--days", days, want="--days")
    refused(2, "pki", "init", "--dir", tmp_path / "new", "--key-type", "rsa", want="--key-type")
    refused(2, "pki", "init", "--dir", "", want="--dir")
    refused(2, "pki", "ls", "--dir", d, "extra", want="unexpected argument")
    refused(2, "pki", "frobnicate", want="unknown command")
    assert snapshot(d) == before
    assert not (tmp_path / "new").exists()

    # names relayd would refuse or confuse: a token tunnel's id shape, another's case
    refused(1, "pki", "issue", "--dir", d, "--name", "t-0123456789ab",
            want="shape of a token tunnel's id")
    refused(1, "pki", "issue", "--dir", d, "--name", "DEV1", want="differ only in case")
    assert snapshot(d) == before

    # a symlinked key is never written through
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    (d / "nodes" / "sym").mkdir()
    (d / "nodes" / "sym" / "tls.key").symlink_to(target)
    refused(1, "pki", "issue", "--dir", d, "--name", "sym", "--force", want="symlink")
    assert target.read_text() == "keep\n"


def test_default_dir_is_under_state_dir(tmp_path):
    state = tmp_path / "state"
    ini = tmp_path / "nave.ini"
    ini.write_text(f"[server]\nstate_dir = {state}\n")
    out = ok("--config", ini, "pki", "init", "--days", "10")
    assert f"client_ca = {state}/pki/ca/ca.crt" in out, out
    assert (state / "pki" / "ca" / "ca.crt").is_file()
    ok("pki", "issue", "--name", "dev1", "--config", ini)
    assert [c["name"] for c in json.loads(ok("--config", ini, "--json", "pki", "ls"))] == [
        "admin", "dev1"]
    # the CA's 10 days cap a node's 365
    c = json.loads(ok("--config", ini, "--json", "pki", "ls"))[1]
    na = time.mktime(time.strptime(c["not_after"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert na < time.time() + 11 * 86400, c
    ok("--config", ini, "pki", "revoke", "--name", "dev1")

    # without --config: the embedded default's state_dir, ./var; under umask 077 the
    # directories the daemons read are 0755 all the same, the keys 0600
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    p = nt.run(["sh", "-c", f"umask 077 && exec {nt.NAVECTL} pki init"], cwd=cwd)
    assert p.returncode == 0, p.stderr
    d = cwd / "var" / "pki"
    assert (d / "nodes" / "admin" / "tls.crt").is_file()
    assert [mode(d), mode(d / "ca"), mode(d / "nodes"), mode(d / "nodes" / "admin")] == [0o755] * 4
    assert mode(d / "ca" / "ca.crt") == 0o644 and mode(d / "ca" / "crl.pem") == 0o644
    assert mode(d / "ca" / "ca.key") == 0o600 and mode(d / "nodes" / "admin" / "tls.key") == 0o600

    # a config that does not load is bad usage
    bad = tmp_path / "bad.ini"
    bad.write_text("[server]\nno_such_key = 1\n")
    refused(2, "--config", bad, "pki", "ls")


def test_help():
    p = navectl("pki", "--help")
    assert p.returncode == 0, p.stderr
    for c in ("pki init", "pki issue", "pki ls", "pki revoke"):
        assert f"  {c} " in p.stdout, p.stdout
    p = navectl("pki", "issue", "--help")
    assert p.returncode == 0 and "--force" in p.stdout and "--admin" in p.stdout

# SPDX-License-Identifier: Apache-2.0
"""navectl pki runs in nave-pki, so that BoringSSL never shares a process with
libcurl (whose libssh2 brings OpenSSL's libcrypto.so.3): navectl's ldd
closure holds no BoringSSL, nave-pki's no libcurl and no OpenSSL; navectl
finds nave-pki next to itself or in ../lib/nave (make install, the package),
and says in one line when it is missing; nave-pki's own --help, --version and
usage; tests/check-no-openssl.sh refuses a binary that would load both.
What the pki commands do is test_pki.py's."""
import json
import os
import shutil
import subprocess

import pytest

import navetest as nt

ROOT = nt.ROOT
PKI = nt.BUILD / "nave-pki"
CHECK = ROOT / "tests/check-no-openssl.sh"
BSSL = "/usr/lib/x86_64-linux-gnu/android"


def ldd(path):
    p = nt.run(["ldd", str(path)])
    assert p.returncode == 0, p.stderr
    return p.stdout


def one_line(p, rc, want):
    assert p.returncode == rc, f"exit {p.returncode} (want {rc})\n{p.stdout}\n{p.stderr}"
    assert p.stdout == "", p.stdout
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and want in lines[0], p.stderr
    return lines[0]


def test_navectl_without_boringssl_nave_pki_without_libcurl():
    ctl = ldd(nt.NAVECTL)
    assert "libcurl" in ctl, ctl
    assert "/android/" not in ctl and "libcrypto.so.0" not in ctl and "libssl.so.0" not in ctl, ctl
    pki = ldd(PKI)
    assert f"{BSSL}/libcrypto.so.0" in pki, pki
    for lib in ("libcurl", "libssl", "libcrypto.so.3", "libgnutls", "libssh2"):
        assert lib not in pki, f"nave-pki loads {lib}:\n{pki}"
    # and the check the build runs passes on every binary
    bins = [nt.BUILD / b for b in ("nave", "navectl", "nave-pki", "nave-relayd", "nave-controld")]
    p = nt.run([str(CHECK)] + [str(b) for b in bins])
    assert p.returncode == 0 and p.stderr == "", p.stderr


def test_found_in_lib_nave_beside_bin(tmp_path):
    """make install and the package: PREFIX/bin/navectl, PREFIX/lib/nave/nave-pki."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "lib/nave").mkdir(parents=True)
    shutil.copy2(nt.NAVECTL, tmp_path / "bin/navectl")
    shutil.copy2(PKI, tmp_path / "lib/nave/nave-pki")
    ctl = tmp_path / "bin/navectl"
    d = tmp_path / "pki"
    p = nt.run([str(ctl), "--json", "pki", "init", "--dir", str(d), "--key-type", "p256"])
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert json.loads(p.stdout)["key_type"] == "p256"
    assert (d / "ca/ca.crt").is_file() and (d / "nodes/admin/tls.crt").is_file()
    # arguments after the command, --json among them, reach it as they were
    p = nt.run([str(ctl), "pki", "issue", "--name=dev-1", "--dir", str(d), "--json"])
    assert p.returncode == 0 and json.loads(p.stdout)["name"] == "dev-1", p.stderr
    # its refusals are navectl's, exit codes included
    one_line(nt.run([str(ctl), "pki", "issue", "--name", "dev-1", "--dir", str(d)]), 1,
             "navectl: pki issue: ")
    one_line(nt.run([str(ctl), "pki", "ls", "--dir", str(d), "--bogus"]), 2,
             "(see 'navectl pki ls --help')")


def test_missing_helper_is_one_line(tmp_path):
    if os.access("/usr/lib/nave/nave-pki", os.X_OK):
        pytest.skip("a nave-pki is installed in /usr/lib/nave: navectl would find that one")
    (tmp_path / "bin").mkdir()
    shutil.copy2(nt.NAVECTL, tmp_path / "bin/navectl")
    ctl = str(tmp_path / "bin/navectl")
    line = one_line(nt.run([ctl, "pki", "ls", "--dir", str(tmp_path / "pki")]), 1,
                    "navectl: pki: nave-pki is not installed")
    assert str(tmp_path / "bin") in line and "/usr/lib/nave" in line, line
    assert not (tmp_path / "pki").exists()
    # what navectl answers itself still works: the pki help and bad usage
    p = nt.run([ctl, "pki", "--help"])
    assert p.returncode == 0 and "pki issue --name NAME" in p.stdout, p.stderr
    one_line(nt.run([ctl, "pki", "nope"]), 2, "unknown command 'pki nope'")


def test_nave_pki_itself():
    p = nt.run([str(PKI), "--help"])
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.startswith("usage: nave-pki ") and "navectl pki" in p.stdout
    for c in ("init", "issue", "ls", "revoke"):
        assert f"\n  {c} " in p.stdout, p.stdout
    p = nt.run([str(PKI), "--version"])
    assert p.returncode == 0 and p.stdout.startswith("nave-pki "), p
    one_line(nt.run([str(PKI)]), 2, "missing pki subcommand")
    one_line(nt.run([str(PKI), "status"]), 2, "unknown command 'pki status'")
    p = nt.run([str(PKI), "issue", "--help"])
    assert p.returncode == 0 and "pki issue --name NAME" in p.stdout, p


@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler")
def test_check_refuses_boringssl_beside_openssl(tmp_path):
    src = tmp_path / "main.c"
    src.write_text("int main(void) { return 0; }\n")
    curl = subprocess.run(["pkg-config", "--libs", "libcurl"], capture_output=True,
                          text=True, check=True).stdout.split()

    def link(name, *libs):
        out = tmp_path / name
        p = subprocess.run(["cc", "-o", str(out), str(src), "-Wl,--no-as-needed", *libs],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return str(out)

    # libcurl and BoringSSL's libcrypto: OpenSSL only through libssh2, not a direct dependency
    both = link("both", *curl, f"{BSSL}/libcrypto.so", f"-Wl,-rpath,{BSSL}")
    line = one_line(nt.run([str(CHECK), both]), 1, "loads BoringSSL and OpenSSL 3")
    assert "libcrypto.so.3" in line and "libssh2" in line, line
    # OpenSSL linked directly
    direct = link("direct", "-l:libcrypto.so.3")
    one_line(nt.run([str(CHECK), direct]), 1, "links OpenSSL 3")
    # either alone passes
    for ok in (link("curl", *curl), link("bssl", f"{BSSL}/libcrypto.so", f"-Wl,-rpath,{BSSL}")):
        p = nt.run([str(CHECK), ok])
        assert p.returncode == 0 and p.stderr == "", p.stderr

# SPDX-License-Identifier: Apache-2.0
"""ACME certificates against pebble (acme_pebble.py) on loopback: the real
controld asks, the real relayd answers HTTP-01 on its HTTP listener and serves
what was issued on its HTTPS edge to new clients, without a restart.

Covered: issue (two names, one account), renewal of a certificate near its
end (found by a reload) and on request, revocation (the CA says Revoked, a
new certificate follows), a failed challenge reported in one line while the
other name is issued, config errors, and the edge passing on challenge paths
it was not given."""
import datetime
import socket
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import navetest as nt

DECIDE = 60  # s: one issuance against pebble takes about a second


def acme_server(tmp_path, procs, pebble, domains, extra="", **kw):
    srv = nt.Server(tmp_path, procs)
    pb = pebble(srv.http, **kw)
    with open(srv.ini, "a") as f:
        f.write("[acme]\n"
                f"directory = {pb.directory}\n"
                f"ca = {pb.ca_file}\n"
                "email = ops@example.com\n"
                f"domains = {' '.join(domains)}\n"
                "accept_terms = on\n" + extra)
    return srv, pb


def status(srv):
    return {d["domain"]: d for d in srv.navectl("acme", "status", json=True)["domains"]}


def wait_state(srv, domain, state, timeout=DECIDE, serial_not=None):
    def done():
        d = status(srv).get(domain)
        fresh = serial_not is None or d.get("serial") != serial_not
        return d if d and d["state"] == state and fresh else None

    return nt.wait_for(done, timeout, f"{domain} {state} in navectl acme status")


def served_serial(srv, name, roots):
    """The serial of the certificate relayd's HTTPS edge shows a new client for name,
    verified against pebble's roots."""
    ctx = ssl.create_default_context(cadata=roots)
    with socket.create_connection((srv.address, srv.https), timeout=nt.IO_TIMEOUT) as s:
        with ctx.wrap_socket(s, server_hostname=name) as t:
            der = t.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def wait_served(srv, name, roots, serial_hex):
    want = int(serial_hex, 16)
    return nt.wait_for(lambda: served_serial(srv, name, roots) == want, 15,
                       f"relayd serving certificate {serial_hex} for {name}")


def test_issue_serve_renew_revoke(tmp_path, procs, pebble):
    srv, pb = acme_server(tmp_path, procs, pebble, ["a.test", "B.test"])
    srv.start()
    a = wait_state(srv, "a.test", "valid")
    b = wait_state(srv, "b.test", "valid")
    st = srv.navectl("acme", "status", json=True)
    assert st["enabled"] and st["account"].startswith("https://127.0.0.1:")
    roots = pb.issuer_roots()

    # stored as key + chain, private to the daemons, and what new clients get
    pem = srv.dir / "var" / "acme" / "certs" / "a.test.pem"
    assert pem.stat().st_mode & 0o777 == 0o600
    text = pem.read_text()
    assert "PRIVATE KEY" in text and text.count("BEGIN CERTIFICATE") >= 2
    wait_served(srv, "a.test", roots, a["serial"])
    wait_served(srv, "b.test", roots, b["serial"])
    assert pb.cert_status(a["serial"])["Status"] == "Valid"
    assert a["not_after"] > time.time() and a["renew_at"] < a["not_after"]
    rc, out, _ = srv.navectl("acme", "status")
    assert rc == 0 and "a.test" in out and "valid" in out, out

    # renewal on request: a new certificate, served to the next client
    rc, out, err = srv.navectl("acme", "renew", "a.test", "--wait")
    assert rc == 0, err
    a2 = status(srv)["a.test"]
    assert a2["serial"] != a["serial"] and a2["state"] == "valid"
    wait_served(srv, "a.test", roots, a2["serial"])
    assert status(srv)["b.test"]["serial"] == b["serial"]  # the other name untouched

    # a certificate near its end (here: one the test made, a day left of eleven) is
    # renewed by itself once controld looks at it again (a reload)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "b.test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=10))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("b.test")]), False)
            .sign(key, hashes.SHA256()))
    bpem = srv.dir / "var" / "acme" / "certs" / "b.test.pem"
    bpem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
                     + cert.public_bytes(serialization.Encoding.PEM))
    rc, _, err = srv.navectl("reload")
    assert rc == 0, err
    b2 = wait_state(srv, "b.test", "valid", serial_not=format(cert.serial_number, "x"))
    assert int(b2["serial"], 16) not in (cert.serial_number, int(b["serial"], 16))
    wait_served(srv, "b.test", roots, b2["serial"])

    # revocation: the CA has it revoked, and a new certificate replaces it
    rc, out, err = srv.navectl("acme", "revoke", "a.test", "--wait")
    assert rc == 0, err
    assert pb.cert_status(a2["serial"])["Status"] == "Revoked"
    a3 = status(srv)["a.test"]
    assert a3["serial"] not in (a["serial"], a2["serial"])
    assert pb.cert_status(a3["serial"])["Status"] == "Valid"
    wait_served(srv, "a.test", roots, a3["serial"])

    # one account for all of it; no challenge left published; nothing logged in error
    log = srv.controld.output()
    assert log.count("acme: account ") == 1, log
    assert " E " not in log and "error" not in log.lower().replace("error:", ""), log
    assert srv.relayd.alive() and srv.controld.alive()


def test_failed_challenge_reported(tmp_path, procs, pebble):
    srv, pb = acme_server(tmp_path, procs, pebble, ["fail.test", "ok.test"])
    pb.set_a("fail.test", "127.0.0.9")  # nothing listens there: pebble cannot connect
    srv.start()
    ok = wait_state(srv, "ok.test", "valid")
    bad = wait_state(srv, "fail.test", "failed")
    assert bad["error"].startswith("challenge http-01 invalid: connection:"), bad
    assert "127.0.0.9" in bad["error"]
    assert bad["next_try"] > time.time()
    assert not (srv.dir / "var" / "acme" / "certs" / "fail.test.pem").exists()
    lines = [l for l in srv.controld.output().splitlines() if "acme: fail.test:" in l]
    assert lines and "challenge http-01 invalid: connection:" in lines[-1], lines
    assert "next try in" in lines[-1]
    # navectl tells it in one line and exits non-zero when asked to wait
    rc, out, err = srv.navectl("acme", "renew", "fail.test", "--wait")
    assert rc != 0 and "challenge http-01 invalid" in out, (out, err)
    # the daemons and the other name are fine
    assert srv.relayd.alive() and srv.controld.alive()
    assert served_serial(srv, "ok.test", pb.issuer_roots()) == int(ok["serial"], 16)


def test_terms_must_be_accepted(tmp_path, procs, pebble):
    srv, pb = acme_server(tmp_path, procs, pebble, ["t.test"])
    srv.ini.write_text(srv.ini.read_text().replace("accept_terms = on", "accept_terms = off"))
    srv.start()
    nt.wait_for(lambda: status(srv)["t.test"]["state"] == "failed", DECIDE, "t.test failed")
    st = srv.navectl("acme", "status", json=True)
    assert "accept_terms = on" in st["error"], st


@pytest.mark.parametrize("acme,why", [
    ("directory = https://127.0.0.1:1/dir\ndomains = *.w.test\n", "wildcard needs a DNS-01"),
    ("directory = http://127.0.0.1:1/dir\n", "not an https:// URL"),
    ("domains = a.test\n", "set [acme] directory too"),
    ("directory = https://127.0.0.1:1/dir\nemail = not-an-address\n", "not an e-mail address"),
    ("directory = https://127.0.0.1:1/dir\nrenew_before = 1m\n", "renew_before"),
])
def test_config_errors(tmp_path, acme, why):
    ini = tmp_path / "s.ini"
    ini.write_text("[acme]\n" + acme)
    p = nt.run([nt.CONTROLD, "--config", ini, "--check"])
    assert p.returncode == 2 and why in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_unknown_challenge_goes_to_routing(server):
    """A challenge path nobody published is an ordinary request (here: no tunnel
    serves the host, so the edge's 404), and nothing is answered over HTTPS."""
    with socket.create_connection((server.address, server.http), timeout=nt.IO_TIMEOUT) as s:
        s.sendall(b"GET /.well-known/acme-challenge/AAAAAAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\n"
                  b"Host: nothing.test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 404 "), data[:80]
    rc, out, err = server.navectl("acme", "status")
    assert rc == 0 and "ACME: off" in out
    rc, out, err = server.navectl("acme", "renew")
    assert rc != 0 and "ACME is off" in err


def test_reload_during_issuance_and_short_validity(tmp_path, procs, pebble):
    """A reload that changes nothing does not cut an attempt in progress; a CA
    whose certificates are due at once (30 s: renewal after 20 s) gets no
    stream of orders: one a minute at most, the reason in the status."""
    srv, pb = acme_server(tmp_path, procs, pebble, ["s.test"], validity=30)
    srv.start()
    s1 = wait_state(srv, "s.test", "valid")
    assert "validity is too short" in (s1.get("error") or ""), s1
    for _ in range(3):
        rc, _, err = srv.navectl("acme", "renew", "s.test")
        assert rc == 0, err
        rc, _, err = srv.navectl("reload")  # while the renewal runs
        assert rc == 0, err
        nt.wait_for(lambda: status(srv)["s.test"]["state"] != "working", DECIDE, "the renewal")
    st = status(srv)["s.test"]
    assert st["state"] == "valid", st
    assert "stopped" not in (st.get("error") or ""), st
    log = srv.controld.output()
    assert "acme: s.test:  (" not in log and "stopped by a reload" not in log, log
    # after the asked renewals, nothing more for a while even though it is due
    n = st["attempts"]
    time.sleep(5)
    assert status(srv)["s.test"]["attempts"] == n

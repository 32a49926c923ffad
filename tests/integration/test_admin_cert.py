# SPDX-License-Identifier: Apache-2.0
"""Admin certificates on the remote admin API (issue 13, part 2).

A real nave-controld with [admin] listen and [tls] client_ca set to the CA of a
PKI that the real `navectl pki init` made (and `pki issue` added to: a node
certificate, a second admin one; a second `pki init` is another CA). The
clients are Python's ssl (OpenSSL: it sends the certificate it is given
whatever CA the server names) and `navectl --server URL --cert DIR` (libcurl
with GnuTLS). Checked: an admin certificate authenticates like an API key
(no CSRF token; its changes logged as by cert:NAME); a node certificate,
another CA's and an expired one are 401 with a one-line reason (and a log
line naming them); a revoked one is 401 within about a second of `navectl pki
revoke`, controld not restarted; without a certificate the API key works as
before and nothing is 401; a certificate's request from another site's page
(Origin) is 403; P-256 as well as Ed25519; client_auth = off asks for no
certificate, required keeps API keys, and a reload turns certificates on.
"""
import http.client
import json
import os
import signal
import ssl
import subprocess
import time

import pytest

import navetest as nt
from test_admin import Admin

NEED_AUTH = {"error": "authentication required"}


def navectl(*args, stdin=None):
    return subprocess.run([str(nt.NAVECTL), *map(str, args)], input=stdin, capture_output=True,
                          text=True, timeout=nt.CMD_TIMEOUT)


def pki(*args):
    p = navectl("pki", *args)
    assert p.returncode == 0, p.stderr
    return p.stdout


class CertAdmin(Admin):
    """Admin (test_admin.py) whose listener takes admin certificates of a PKI made here."""

    def __init__(self, tmp, procs, client_auth="", key_type="ed25519"):
        self.pki = tmp / "pki"
        self.other = tmp / "other-pki"
        pki("init", "--dir", self.pki, "--key-type", key_type)
        pki("issue", "--dir", self.pki, "--name", "n1")
        pki("issue", "--dir", self.pki, "--name", "admin2", "--admin")
        # another CA, with an admin certificate of its own
        pki("init", "--dir", self.other, "--key-type", key_type)
        extra = f"[tls]\nclient_ca = {self.pki}/ca/ca.crt\n"
        if client_auth:
            extra += f"client_auth = {client_auth}\n"
        super().__init__(tmp, procs, extra=extra)

    def node(self, name, pkidir=None):
        return (pkidir or self.pki) / "nodes" / name

    def creq(self, method, path, cert=None, body=None, headers=None, key=None):
        """(status, json or None) of one request presenting the certificate of nodes/NAME
        (a Path) or none."""
        ctx = ssl.create_default_context(cafile=str(self.cert))
        if cert:
            ctx.load_cert_chain(str(cert / "tls.crt"), str(cert / "tls.key"))
        h = {"Content-Type": "application/json", "Connection": "close"}
        h.update(headers or {})
        if key:
            h["Authorization"] = f"Bearer {key}"
        data = None if body is None else json.dumps(body).encode()
        if data is None and method not in ("GET", "HEAD"):
            data = b""
        conn = http.client.HTTPSConnection("localhost", self.port, context=ctx,
                                           timeout=nt.IO_TIMEOUT)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            text = r.read()
            return r.status, (json.loads(text) if text.strip() else None)
        finally:
            conn.close()

    def remote(self, *args, cert=None, key_file=None):
        cmd = ["--server", self.url, "--ca", self.cert]
        if cert:
            cmd += ["--cert", cert]
        if key_file:
            cmd += ["--api-key-file", key_file]
        env = {k: v for k, v in os.environ.items() if not k.startswith("NAVE_")}
        return subprocess.run([str(nt.NAVECTL), *map(str, cmd), *map(str, args)],
                              capture_output=True, text=True, timeout=nt.CMD_TIMEOUT, env=env)

    def log(self):
        return self.srv.controld.output()


@pytest.fixture
def cadmin(tmp_path, procs):
    a = CertAdmin(tmp_path, procs)
    yield a
    a.srv.stop()


def test_admin_certificate_python_ssl(cadmin):
    """An admin certificate authenticates a protected route, and a change without a CSRF
    token, logged as by cert:admin."""
    admin = cadmin.node("admin")
    st, j = cadmin.creq("GET", "/api/v1/status", cert=admin)
    assert st == 200, j
    assert isinstance(j, dict) and j, j
    st, j = cadmin.creq("POST", "/api/v1/apikeys", cert=admin, body={"description": "by-cert"})
    assert st == 201, j
    assert f"API key {j['id']} created (by cert:admin)" in cadmin.log()
    # a certificate's request has no session to show or end
    st, j = cadmin.creq("GET", "/api/v1/session", cert=admin)
    assert (st, j) == (400, {"error": "no session: this request is authenticated by a certificate"})
    # a second admin certificate is its own identity
    st, j = cadmin.creq("POST", "/api/v1/apikeys", cert=cadmin.node("admin2"), body={})
    assert st == 201, j
    assert f"API key {j['id']} created (by cert:admin2)" in cadmin.log()


def test_navectl_cert(cadmin, tmp_path):
    """navectl --server URL --cert DIR logs in with the admin certificate (no API key)."""
    p = cadmin.remote("--json", "status", cert=cadmin.node("admin"))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)
    p = cadmin.remote("--json", "apikeys", "create", "--description", "navectl-cert",
                      cert=cadmin.node("admin"))
    assert p.returncode == 0, p.stderr
    kid = json.loads(p.stdout)["id"]
    assert f"API key {kid} created (by cert:admin)" in cadmin.log()
    # the node certificate: the server's one-line reason, exit 1
    p = cadmin.remote("status", cert=cadmin.node("n1"))
    assert p.returncode == 1
    assert p.stderr == ('navectl: client certificate "n1" is a node certificate: the admin '
                        'API takes admin ones\n')
    # usage: a directory without the files, --cert with an API key file, --cert locally
    p = cadmin.remote("status", cert=tmp_path / "nowhere")
    assert p.returncode == 1
    assert p.stderr.startswith("navectl: --cert ") and "tls.crt" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    keyfile = tmp_path / "key"
    keyfile.write_text("nvk_00000000_" + "0" * 64 + "\n")
    p = cadmin.remote("status", cert=cadmin.node("admin"), key_file=keyfile)
    assert p.returncode == 2
    assert "--cert and --api-key-file" in p.stderr, p.stderr
    p = navectl("--config", cadmin.srv.ini, "--cert", cadmin.node("admin"), "status")
    assert p.returncode == 2
    assert "--cert is for --server" in p.stderr, p.stderr


def test_node_certificate_refused(cadmin):
    """A node certificate of the same CA is not an admin's: 401 with the reason, logged."""
    st, j = cadmin.creq("GET", "/api/v1/status", cert=cadmin.node("n1"))
    assert st == 401
    assert j == {"error": 'client certificate "n1" is a node certificate: the admin API takes '
                          'admin ones'}
    nt.wait_for(lambda: 'refused: client certificate "n1" is a node certificate' in cadmin.log(),
                5, "the refusal logged")
    # it decides even beside a good API key
    _, key = cadmin.key("beside")
    st, j = cadmin.creq("GET", "/api/v1/status", cert=cadmin.node("n1"), key=key)
    assert st == 401, j
    st, _ = cadmin.creq("GET", "/api/v1/status", key=key)
    assert st == 200


def test_other_ca_refused(cadmin):
    """Another CA's admin certificate: Python's ssl sends it anyway, the handshake completes
    (GnuTLS only asks), and the request is 401 naming the certificate."""
    st, j = cadmin.creq("GET", "/api/v1/status", cert=cadmin.node("admin", cadmin.other))
    assert st == 401
    assert j["error"].startswith('client certificate "admin" is not issued by this server\'s CA')
    assert "\n" not in j["error"], j
    nt.wait_for(lambda: 'refused: client certificate "admin" is not issued by this server' in
                cadmin.log(), 5, "the refusal logged")
    # navectl (GnuTLS) sends it too, though the CertificateRequest names another CA
    p = cadmin.remote("status", cert=cadmin.node("admin", cadmin.other))
    assert p.returncode == 1
    assert p.stderr.startswith(
        'navectl: client certificate "admin" is not issued by this server\'s CA'), p.stderr
    assert p.stderr.count("\n") == 1, p.stderr


def test_revoked_within_a_second(cadmin):
    """navectl pki revoke: the certificate is refused within about a second, controld not
    restarted; the other admin certificate keeps working."""
    admin2 = cadmin.node("admin2")
    pid = cadmin.srv.controld.pid
    st, j = cadmin.creq("GET", "/api/v1/status", cert=admin2)
    assert st == 200, j
    pki("revoke", "--dir", cadmin.pki, "--name", "admin2")
    t0 = time.monotonic()

    def refused():
        st, j = cadmin.creq("GET", "/api/v1/status", cert=admin2)
        return (st, j) if st == 401 else None

    st, j = nt.wait_for(refused, 5, "the revoked certificate refused")
    took = time.monotonic() - t0
    assert took < 2.0, f"took {took:.2f} s"
    assert "revoked" in j["error"] and "admin2" in j["error"], j
    assert cadmin.srv.controld.pid == pid and cadmin.srv.controld.alive()
    st, _ = cadmin.creq("GET", "/api/v1/status", cert=cadmin.node("admin"))
    assert st == 200
    p = cadmin.remote("status", cert=admin2)
    assert p.returncode == 1 and "revoked" in p.stderr, p.stderr


def test_without_certificate(cadmin):
    """The listener asks for a certificate but needs none: an API key works, nothing is 401."""
    _, key = cadmin.key("plain")
    st, j = cadmin.creq("GET", "/api/v1/status", key=key)
    assert st == 200, j
    st, j = cadmin.creq("GET", "/api/v1/status")
    assert (st, j) == (401, NEED_AUTH)
    st, j = cadmin.creq("POST", "/api/v1/apikeys", key="nvk_00000000_" + "0" * 64, body={})
    assert (st, j) == (401, NEED_AUTH)
    # navectl with the key, as before
    keyfile = cadmin.srv.dir / "key"
    keyfile.write_text(key + "\n")
    p = cadmin.remote("status", key_file=keyfile)
    assert p.returncode == 0, p.stderr


def test_cross_site_refused(cadmin):
    """A browser sends its certificate with another site's page's requests: a change from
    another Origin is 403, from this server's own page it is done; a GET is answered."""
    admin = cadmin.node("admin")
    host = f"localhost:{cadmin.port}"
    st, j = cadmin.creq("POST", "/api/v1/apikeys", cert=admin, body={},
                        headers={"Origin": "https://evil.example"})
    assert (st, j) == (403, {"error": "a request from another site's page (Origin) is refused"})
    st, j = cadmin.creq("POST", "/api/v1/apikeys", cert=admin, body={},
                        headers={"Sec-Fetch-Site": "cross-site"})
    assert st == 403, j
    st, j = cadmin.creq("POST", "/api/v1/apikeys", cert=admin, body={},
                        headers={"Origin": f"https://{host}", "Sec-Fetch-Site": "same-origin"})
    assert st == 201, j
    st, j = cadmin.creq("GET", "/api/v1/status", cert=admin,
                        headers={"Origin": "https://evil.example"})
    assert st == 200, j


def test_expired_refused(cadmin, tmp_path):
    """An admin certificate of the CA whose validity ended (made with Debian's openssl from
    the PKI's CA key: pki issue makes none) is 401 naming it and when it expired."""
    d = tmp_path / "old"
    d.mkdir()
    (d / "ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                           "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:old\n")
    (d / "index.txt").write_text("")
    (d / "ca.cnf").write_text(f"[ca]\ndefault_ca=c\n[c]\ndatabase={d}/index.txt\n"
                              f"new_certs_dir={d}\ndefault_md=default\npolicy=p\n"
                              "serial_rand=1\nrand_serial=yes\n[p]\n")
    run = lambda *a: subprocess.run(["openssl", *map(str, a)], check=True, capture_output=True)
    run("genpkey", "-algorithm", "ed25519", "-out", d / "tls.key")
    run("req", "-new", "-key", d / "tls.key", "-subj", "/O=nave/OU=admin/CN=old", "-out",
        d / "csr")
    run("ca", "-batch", "-config", d / "ca.cnf", "-in", d / "csr", "-out", d / "tls.crt",
        "-keyfile", cadmin.pki / "ca" / "ca.key", "-cert", cadmin.pki / "ca" / "ca.crt",
        "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-extfile", d / "ext",
        "-notext", "-preserveDN")
    st, j = cadmin.creq("GET", "/api/v1/status", cert=d)
    assert st == 401
    assert j == {"error": 'client certificate "old" expired at 2020-01-02T00:00:00Z'}, j


def test_reload_turns_certificates_on(tmp_path, procs):
    """client_auth = off, then optional by a reload: the listener asks for certificates from
    then on (its HTTPS server restarted within a second), controld not restarted."""
    a = CertAdmin(tmp_path, procs, client_auth="off")
    try:
        pid = a.srv.controld.pid
        st, _ = a.creq("GET", "/api/v1/status", cert=a.node("admin"))
        assert st == 401
        a.srv.ini.write_text(a.srv.ini.read_text().replace("client_auth = off",
                                                           "client_auth = optional"))
        a.srv.controld.signal(signal.SIGHUP)
        nt.wait_for(lambda: "loaded; admin certificates of" in a.log(), 10,
                    "the listener restarted with client_ca")

        def ok():
            return a.creq("GET", "/api/v1/status", cert=a.node("admin"))[0] == 200

        nt.wait_for(ok, 5, "the admin certificate taken")
        assert a.srv.controld.pid == pid
    finally:
        a.srv.stop()


def test_p256(tmp_path, procs):
    """A PKI of P-256 keys (pki init --key-type p256) works as the Ed25519 default does,
    with Python's ssl and with navectl (libcurl's GnuTLS)."""
    a = CertAdmin(tmp_path, procs, key_type="p256")
    try:
        st, j = a.creq("GET", "/api/v1/status", cert=a.node("admin"))
        assert st == 200, j
        p = a.remote("--json", "status", cert=a.node("admin"))
        assert p.returncode == 0, p.stderr
        st, j = a.creq("GET", "/api/v1/status", cert=a.node("n1"))
        assert st == 401, j
    finally:
        a.srv.stop()


def test_client_auth_off(tmp_path, procs):
    """client_auth = off: no certificate is asked for, so none is seen (the API key works)."""
    a = CertAdmin(tmp_path, procs, client_auth="off")
    try:
        st, j = a.creq("GET", "/api/v1/status", cert=a.node("admin"))
        assert (st, j) == (401, NEED_AUTH)
        _, key = a.key("off")
        st, _ = a.creq("GET", "/api/v1/status", cert=a.node("admin"), key=key)
        assert st == 200
    finally:
        a.srv.stop()


def test_client_auth_required_keeps_keys(tmp_path, procs):
    """client_auth = required is about tunnel logins: the admin API still takes API keys
    (and sessions) beside admin certificates."""
    a = CertAdmin(tmp_path, procs, client_auth="required")
    try:
        _, key = a.key("required")
        st, _ = a.creq("GET", "/api/v1/status", key=key)
        assert st == 200
        st, _ = a.creq("GET", "/api/v1/status", cert=a.node("admin"))
        assert st == 200
    finally:
        a.srv.stop()


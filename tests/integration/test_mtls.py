# SPDX-License-Identifier: Apache-2.0
"""Certificate logins (issue 13): a client configured with `nave configure
--cert nodes/NAME` logs in with the certificate `navectl pki issue` made,
without a token, and carries bytes; relayd checks the chain against
[tls] client_ca and its CRL (chain-only: the certificate's name is the tunnel
id). An expired, revoked, foreign-CA, admin or name-mismatched certificate is
refused with one line; `navectl pki revoke` disconnects a connected client
within a second, without a reload; client_auth = required refuses tokens,
off refuses certificates; controld records which identity connected. Every
certificate is made by the real navectl (and, for the expired one, signed by
Debian's openssl CLI with the same CA key)."""
import json
import os
import socket
import subprocess
import time

import pytest

import navetest as nt
from navetest import KiB


def pki(server, *args, check=True):
    p = nt.run([nt.NAVECTL, "--config", server.ini, "pki", *args])
    if check and p.returncode != 0:
        raise nt.Failure(f"navectl pki {' '.join(args)}: exit {p.returncode}: {p.stderr}")
    return p


@pytest.fixture
def ca_dir(tmp_path):
    return tmp_path / "pki"


@pytest.fixture
def server_ini(ca_dir):
    # the PKI must exist before relayd reads client_ca: made here by the real navectl
    p = nt.run([nt.NAVECTL, "pki", "init", "--dir", ca_dir])
    assert p.returncode == 0, p.stderr
    return f"[tls]\nclient_ca = {ca_dir}/ca/ca.crt\n"


def issue(server, ca_dir, name, *extra):
    pki(server, "issue", "--dir", ca_dir, "--name", name, *extra)
    return ca_dir / "nodes" / name


def cert_client(server, tmp_path, procs, name, cert_dir, id=None, start=True):
    c = nt.Client(server, tmp_path, procs, name)
    args = ["configure", "--server", f"127.0.0.1:{server.https}", "--cert", cert_dir,
            "--fingerprint", server.fingerprint()]
    if id:
        args += ["--id", id]
    p = c.nave(*args)
    if p.returncode != 0:
        raise nt.Failure(f"nave configure --cert: exit {p.returncode}: {p.stderr}")
    if start:
        c.start()
    return c


def configure_refused(server, tmp_path, procs, name, cert_dir, id=None):
    """nave configure --cert refused by the server: exit 1 and its one line."""
    c = nt.Client(server, tmp_path, procs, name)
    args = ["configure", "--server", f"127.0.0.1:{server.https}", "--cert", cert_dir,
            "--fingerprint", server.fingerprint()]
    if id:
        args += ["--id", id]
    p = c.nave(*args)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1, p.stderr
    return lines[0]


def relayd_logs(server, text):
    nt.wait_for(lambda: text in server.relayd.output(), 10, f"relayd logs {text!r}")


def test_cert_login_carries_bytes(server, ca_dir, tmp_path, procs, svc):
    node = issue(server, ca_dir, "dev1")
    c = cert_client(server, tmp_path, procs, "dev1", node)
    assert c.tunnel_id == "dev1"
    text = c.ini.read_text()
    assert f"cert = {node}" in text and "nvt_" not in text
    port = c.tcp_add(svc.port)
    nt.exchange(port, 300 * KiB)
    assert svc.results.get(timeout=nt.IO_TIMEOUT) == ("exchange", 300 * KiB, 0)
    # controld records which identity connected: the certificate and its serial
    listed = json.loads(pki(server, "ls", "--dir", ca_dir, "--json").stdout)
    serial = [r for r in listed if r["name"] == "dev1"][0]["serial"]
    t = server.tunnel("dev1")
    assert t["identity"] == f"certificate dev1 serial {serial}", t
    assert t["group_id"] == "dev1"
    relayd_logs(server, f"tunnel dev1: logged in with certificate serial {serial}")
    # a restart of the client logs in again (same tunnel, same port)
    c.stop()
    c.start()
    assert c.tunnel_id == "dev1"
    nt.exchange(port, 1000)


def test_token_clients_still_work(server, client, svc):
    """client_auth = optional (client_ca set): tokens log in as before."""
    port = client.tcp_add(svc.port)
    nt.exchange(port, 1000)
    t = server.tunnel(client.tunnel_id)
    assert t["identity"] == f"token {t['token_id']}", t


def test_refusals(server, ca_dir, tmp_path, procs):
    # name mismatch: the HELLO asks for another tunnel id than the certificate's name
    node = issue(server, ca_dir, "dev2")
    line = configure_refused(server, tmp_path, procs, "mism", node, id="other")
    assert line == 'nave: server refused: certificate is for tunnel "dev2", not "other"'
    # relayd logs it (rate limited per call site: the first of the burst below)
    relayd_logs(server, 'certificate login refused (from 127.0.0.1): certificate is for tunnel '
                '"dev2", not "other"')
    # an admin certificate is not a tunnel's
    line = configure_refused(server, tmp_path, procs, "adm", ca_dir / "nodes" / "admin")
    assert line == ('nave: server refused: certificate "admin" is an admin certificate, '
                    'not a tunnel\'s')
    # a certificate of another CA
    other = tmp_path / "other-pki"
    assert nt.run([nt.NAVECTL, "pki", "init", "--dir", other]).returncode == 0
    assert nt.run([nt.NAVECTL, "pki", "issue", "--dir", other, "--name", "dev3"]).returncode == 0
    line = configure_refused(server, tmp_path, procs, "foreign", other / "nodes" / "dev3")
    assert line == ('nave: server refused: certificate "dev3" is not issued by this '
                    "server's CA (unable to get local issuer certificate at depth 0)"), line
    # revoked before it ever connected
    node4 = issue(server, ca_dir, "dev4")
    pki(server, "revoke", "--dir", ca_dir, "--name", "dev4")
    line = configure_refused(server, tmp_path, procs, "rev", node4)
    assert line.startswith('nave: server refused: certificate "dev4" (serial '), line
    assert line.endswith(") is revoked"), line
    # expired: signed with the same CA key by openssl ca, valid only in 2020
    exp = make_expired(ca_dir, tmp_path / "expired", "old1")
    line = configure_refused(server, tmp_path, procs, "old", exp)
    assert line == 'nave: server refused: certificate "old1" expired at 2020-02-01T00:00:00Z'
    # a key others may read is not used (checked by the client before it connects)
    node5 = issue(server, ca_dir, "dev5")
    os.chmod(node5 / "tls.key", 0o644)
    c = nt.Client(server, tmp_path, procs, "loose")
    p = c.nave("configure", "--server", f"127.0.0.1:{server.https}", "--cert", node5,
               "--fingerprint", server.fingerprint())
    assert p.returncode == 1
    assert nt.user_lines(p.stderr) == [
        f"nave: --cert: {node5}/tls.key is readable by other users (mode 0644): chmod 600 it"]
    # none of them made a tunnel
    ids = {t["id"] for t in server.navectl("tunnels", "ls", json=True)["items"]}
    assert not ids & {"dev2", "other", "admin", "dev3", "dev4", "old1", "dev5"}, ids


def make_expired(ca_dir, work, name):
    """A node certificate of ca_dir's CA valid only in January 2020 (openssl ca)."""
    work.mkdir()
    (work / "db").mkdir()
    (work / "db" / "index").write_text("")
    (work / "db" / "serial").write_text("1001\n")
    (work / "ca.cnf").write_text(
        "[ca]\ndefault_ca = c\n[c]\ndir = .\ndatabase = db/index\nnew_certs_dir = db\n"
        "serial = db/serial\npolicy = p\ndefault_md = default\nx509_extensions = e\n"
        "[p]\ncommonName = supplied\norganizationName = optional\n"
        "organizationalUnitName = optional\n"
        "[e]\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature\n"
        "extendedKeyUsage = clientAuth\nsubjectAltName = DNS:" + name + "\n")
    out = work / "node"
    out.mkdir()
    for cmd in (
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", out / "tls.key"],
        ["openssl", "req", "-new", "-key", out / "tls.key", "-subj",
         f"/O=nave/OU=node/CN={name}", "-out", work / "req.csr"],
        ["openssl", "ca", "-batch", "-config", work / "ca.cnf", "-cert", ca_dir / "ca" / "ca.crt",
         "-keyfile", ca_dir / "ca" / "ca.key", "-in", work / "req.csr", "-out", out / "tls.crt",
         "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", "-notext"],
    ):
        p = subprocess.run([str(a) for a in cmd], cwd=work, capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0, (cmd, p.stderr)
    os.chmod(out / "tls.key", 0o600)
    return out


def test_revoke_disconnects_within_a_second(server, ca_dir, tmp_path, procs, svc):
    node = issue(server, ca_dir, "dev6")
    keep = issue(server, ca_dir, "dev7")
    c = cert_client(server, tmp_path, procs, "dev6", node)
    other = cert_client(server, tmp_path, procs, "dev7", keep)
    port = c.tcp_add(svc.port)
    nt.exchange(port, 1000)
    t0 = time.monotonic()
    pki(server, "revoke", "--dir", ca_dir, "--name", "dev6")
    rc = c.wait_exit(5)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"the revoked client ran {elapsed:.2f} s after the revoke"
    assert rc == 1, rc  # it cannot come back: a supervisor should not restart it
    assert "certificate revoked" in c.proc.output()
    relayd_logs(server, "tunnel dev6: certificate revoked (serial ")
    # it cannot come back; the other certificate's tunnel is untouched
    line = configure_refused(server, tmp_path, procs, "again", node)
    assert line.endswith(") is revoked"), line
    assert other.proc.alive()
    p2 = other.tcp_add(svc.port)
    nt.exchange(p2, 1000)


def test_required_refuses_tokens(tmp_path, procs, ca_dir):
    assert nt.run([nt.NAVECTL, "pki", "init", "--dir", ca_dir]).returncode == 0
    srv = nt.Server(tmp_path, procs, extra_ini=(
        f"[tls]\nclient_ca = {ca_dir}/ca/ca.crt\nclient_auth = required\n"))
    srv.start()
    try:
        tok = srv.navectl("tokens", "create", json=True)["token"]
        c = nt.Client(srv, tmp_path, procs, "tok")
        p = c.nave("configure", "--server", f"127.0.0.1:{srv.https}", "--key", tok,
                   "--fingerprint", srv.fingerprint())
        assert p.returncode == 1
        assert nt.user_lines(p.stderr) == [
            "nave: server refused: this server takes certificate logins only "
            "([tls] client_auth = required)"]
        node = issue(srv, ca_dir, "req1")
        c = cert_client(srv, tmp_path, procs, "req1", node)
        assert c.tunnel_id == "req1"
        c.stop()
    finally:
        srv.stop()


def test_off_refuses_certificates(tmp_path, procs, ca_dir):
    """No client_ca: the server asks for no certificate and says so in one line."""
    assert nt.run([nt.NAVECTL, "pki", "init", "--dir", ca_dir]).returncode == 0
    srv = nt.Server(tmp_path, procs)
    srv.start()
    try:
        assert nt.run([nt.NAVECTL, "pki", "issue", "--dir", ca_dir,
                       "--name", "off1"]).returncode == 0
        line = configure_refused(srv, tmp_path, procs, "off1", ca_dir / "nodes" / "off1")
        assert line == ("nave: server refused: this server does not take certificate logins "
                        "([tls] client_ca is not set)")
    finally:
        srv.stop()


def test_bad_client_ca_refuses_start(tmp_path, procs):
    srv = nt.Server(tmp_path, procs, extra_ini=f"[tls]\nclient_ca = {tmp_path}/missing.crt\n")
    p = nt.run([nt.RELAYD, "--config", srv.ini], timeout=30)
    assert p.returncode != 0
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1 and lines[0].startswith(
        f"nave-relayd: [tls] client_ca {tmp_path}/missing.crt: "), p.stderr


def reload(server, ini_extra):
    """Rewrite the [tls] part of the server's config and reload both daemons."""
    text = server.ini.read_text()
    head = text.split("[tls]\n")[0]
    server.ini.write_text(head + ini_extra)
    p = nt.run([nt.NAVECTL, "--config", server.ini, "reload"])
    assert p.returncode == 0, p.stderr


def test_reload_off_ends_certificate_sessions(server, ca_dir, tmp_path, procs, client):
    """client_auth = off by reload: certificate sessions end (nothing checks them any
    more); token sessions stay."""
    c = cert_client(server, tmp_path, procs, "dev8", issue(server, ca_dir, "dev8"))
    reload(server, f"[tls]\nclient_ca = {ca_dir}/ca/ca.crt\nclient_auth = off\n")
    assert c.wait_exit(5) == 1
    assert "certificate logins are off on this server" in c.proc.output()
    assert client.proc.alive() and client.status()["state"] == "online"


def test_new_ca_checks_sessions_again(server, ca_dir, tmp_path, procs):
    """A reload to another CA checks the sessions online against it: the old CA's
    certificate session ends with the reason."""
    c = cert_client(server, tmp_path, procs, "dev9", issue(server, ca_dir, "dev9"))
    other = tmp_path / "pki2"
    assert nt.run([nt.NAVECTL, "pki", "init", "--dir", other]).returncode == 0
    reload(server, f"[tls]\nclient_ca = {other}/ca/ca.crt\n")
    assert c.wait_exit(5) == 1
    assert ('certificate no longer valid: certificate "dev9" is not issued by this '
            "server's CA") in c.proc.output()


def test_crl_deleted_keeps_revocations(server, ca_dir, tmp_path, procs):
    node = issue(server, ca_dir, "dev10")
    pki(server, "revoke", "--dir", ca_dir, "--name", "dev10")
    # relayd has read the CRL that revokes it (the refusal says so), then it goes away
    line = configure_refused(server, tmp_path, procs, "del0", node)
    assert line.endswith(") is revoked"), line
    (ca_dir / "ca" / "crl.pem").rename(tmp_path / "crl.saved")
    time.sleep(0.6)  # relayd looks at the files 4 times a second
    line = configure_refused(server, tmp_path, procs, "del", node)
    assert line.endswith(") is revoked"), line
    relayd_logs(server, "crl.pem went away: the last CRL read stays in force")


def test_registration_cannot_take_a_certificate_name(server, ca_dir, tmp_path, procs):
    cert_client(server, tmp_path, procs, "kiosk", issue(server, ca_dir, "kiosk")).stop()
    c = nt.Client(server, tmp_path, procs, "imposter")
    p = c.nave("configure", "--server", f"127.0.0.1:{server.https}", "--registration",
               server.registration(), "--id", "kiosk", "--fingerprint", server.fingerprint())
    assert p.returncode == 1
    assert nt.user_lines(p.stderr) == [
        'nave: server refused: id "kiosk" is the name of a certificate tunnel: choose another']


def test_relative_cert_path_refused(server, ca_dir, tmp_path, procs):
    node = issue(server, ca_dir, "dev11")
    c = cert_client(server, tmp_path, procs, "dev11", node, start=False)
    c.ini.write_text(c.ini.read_text().replace(f"cert = {node}", "cert = pki/nodes/dev11"))
    p = nt.run([nt.NAVE, "start", "--config", c.ini], timeout=30)
    assert p.returncode != 0
    assert "[client] cert: pki/nodes/dev11 is not an absolute path" in p.stderr


def test_required_refuses_socks_tokens(tmp_path, procs, ca_dir):
    """[socks] listen logins are tokens: client_auth = required refuses them too."""
    assert nt.run([nt.NAVECTL, "pki", "init", "--dir", ca_dir]).returncode == 0
    sport = nt.free_port()
    srv = nt.Server(tmp_path, procs, extra_ini=(
        f"[socks]\nlisten = 127.0.0.1:{sport}\n"
        f"[tls]\nclient_ca = {ca_dir}/ca/ca.crt\nclient_auth = required\n"))
    srv.start()
    try:
        tok = srv.navectl("tokens", "create", "--id", "sock1", json=True)
        with socket.create_connection(("127.0.0.1", sport), timeout=nt.IO_TIMEOUT) as s:
            s.settimeout(nt.IO_TIMEOUT)
            s.sendall(b"\x05\x01\x02")
            assert nt.recv_exact(s, 2) == b"\x05\x02"
            user, pw = tok["tunnel_id"].encode(), tok["token"].encode()
            s.sendall(b"\x01" + bytes([len(user)]) + user + bytes([len(pw)]) + pw)
            assert nt.recv_exact(s, 2) == b"\x01\x01"  # refused
        nt.wait_for(lambda: "certificate logins only" in srv.relayd.output(), 10,
                    "relayd says why")
    finally:
        srv.stop()

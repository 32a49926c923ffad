# SPDX-License-Identifier: Apache-2.0
"""The nave client's commands beyond the tunnel itself: --ca verification,
rules added while stopped, the same port after a client restart, tunnel ls in
both output forms, deauth, and --help on every verb."""
import json

import navetest as nt

KiB = nt.KiB


def test_configure_with_ca_file(server, tmp_path, services):
    """The self-signed server certificate used as a CA file: accepted for
    127.0.0.1 (it is in the SAN), and the tunnel then carries data."""
    cert = server.dir / "var" / "tls" / "server.crt"
    c = nt.Client(server, tmp_path, [], "ca")
    p = c.nave("configure", "--server", f"127.0.0.1:{server.https}",
               "--registration", server.registration(), "--ca", str(cert))
    assert p.returncode == 0, p.stderr
    assert "ca = " in c.ini.read_text()
    c.start()
    try:
        svc = services(nt.h_exchange)
        nt.exchange(c.tcp_add(svc.port), 64 * KiB)
    finally:
        c.stop()


def test_configure_with_wrong_ca_is_refused(server, tmp_path):
    """A CA that did not sign the server certificate: exit 1, one line."""
    # a real CA certificate that did not sign ours (Debian's ca-certificates)
    import glob
    certs = sorted(glob.glob("/etc/ssl/certs/*.pem"))
    assert certs, "ca-certificates is not installed (make deps)"
    other = certs[0]
    c = nt.Client(server, tmp_path, [], "badca")
    p = c.nave("configure", "--server", f"127.0.0.1:{server.https}",
               "--registration", server.registration(), "--ca", other)
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1 and lines[0].startswith("nave: "), lines


def test_rule_added_while_stopped_applies_at_start(server, make_client, services):
    c = make_client("offline", start=False)
    svc = services(nt.h_exchange)
    p = c.tcp_add_raw(svc.port, name="later")
    assert p.returncode == 0, p.stderr
    assert "saved" in p.stdout
    ls = json.loads(c.nave("--json", "tunnel", "ls").stdout)
    assert [(r["name"], r["state"]) for r in ls] == [("later", "saved")]
    c.start()
    rule = nt.wait_for(lambda: next((r for r in c.status()["rules"]
                                     if r["name"] == "later" and r["state"] == "active"), None),
                       30, "the saved rule to be granted")
    nt.exchange(rule["port"], 64 * KiB)
    assert rule["port"] in server.ports(c.tunnel_id)


def test_client_restart_keeps_its_port(server, client, services):
    svc = services(nt.h_exchange)
    port = client.tcp_add(svc.port, name="web")
    client.stop()
    # the granted port is persisted in the client config ...
    assert f"port = {port}" in client.ini.read_text()
    # ... and the allocation stays with the tunnel while it is away
    assert port in server.ports(client.tunnel_id)
    client.start()
    nt.wait_for(lambda: any(r["port"] == port and r["state"] == "active"
                            for r in client.status()["rules"]), 30, "rule active again")
    nt.exchange(port, 1000)


def test_tunnel_ls_human_and_json(client, services):
    svc = services(nt.h_exchange)
    port = client.tcp_add(svc.port, name="api")
    human = client.nave("tunnel", "ls")
    assert human.returncode == 0
    lines = human.stdout.strip().splitlines()
    assert lines[0].split() == ["NAME", "PORT", "STATE", "TO"]
    assert lines[1].split() == ["api", str(port), "active", f"127.0.0.1:{svc.port}"]
    js = json.loads(client.nave("--json", "tunnel", "tcp", "ls").stdout)
    assert js == [{"name": "api", "to": f"127.0.0.1:{svc.port}", "port": port,
                   "state": "active"}]


def test_deauth_forgets_the_token(server, make_client):
    c = make_client("d", start=False)
    assert "token = " in c.ini.read_text()
    p = c.nave("deauth")
    assert p.returncode == 0, p.stderr
    assert "token" not in c.ini.read_text()
    p = c.nave("start")
    assert p.returncode == 1
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1 and "not configured" in lines[0], lines


def test_help_and_usage_errors(tmp_path):
    for args in (["--help"], ["configure", "--help"], ["start", "--help"],
                 ["tunnel", "--help"], ["tunnel", "tcp", "add", "--help"],
                 ["status", "--help"], ["deauth", "--help"]):
        p = nt.run([nt.NAVE] + args)
        assert p.returncode == 0 and "usage" in p.stdout.lower(), (args, p.stdout, p.stderr)
    for binary in (nt.RELAYD, nt.CONTROLD, nt.NAVECTL):
        p = nt.run([binary, "--help"])
        assert p.returncode == 0 and "usage" in p.stdout.lower(), (binary, p.stderr)
    cfg = ["--config", str(tmp_path / "c.ini")]
    for args in (["bogus"], ["configure"], ["tunnel", "tcp", "add"],
                 ["tunnel", "tcp", "add", "--to", "nowhere"], ["configure", "--server", "x"]):
        p = nt.run([nt.NAVE] + args + cfg)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert len(nt.user_lines(p.stderr)) == 1, (args, p.stderr)


def test_every_binary_says_its_version():
    for binary in (nt.RELAYD, nt.CONTROLD, nt.NAVECTL, nt.NAVE):
        p = nt.run([binary, "--version"])
        assert p.returncode == 0, (binary, p.stderr)
        assert p.stdout == f"{binary.name} 0.1.0\n", (binary, p.stdout)

# SPDX-License-Identifier: Apache-2.0
"""Token restrictions (issue 11, connet-style): an auth or registration token
limited to source address blocks, tunnel id patterns, rule kinds, domain
patterns and a port range, with the real daemons and the real client. For
each field, one case it allows (bytes flow through it) and one it refuses,
with the one-line reason the client prints and controld's log shows; a
registration's restrictions inherited by the token it mints; the source
member of relay.sock's auth checked by controld; bad API input refused with
400 naming the field."""
import json
import socket
import struct

import navetest as nt
from navetest import KiB


def configure_refused(server, tmp_path, procs, name, key=None, registration=None, id=None):
    """nave configure refused at HELLO: exit 1, its stderr's one line, no token saved."""
    c = nt.Client(server, tmp_path, procs, name)
    args = ["configure", "--server", f"127.0.0.1:{server.https}",
            "--fingerprint", server.fingerprint()]
    args += ["--key", key] if key else ["--registration", registration]
    if id:
        args += ["--id", id]
    p = c.nave(*args)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1, p.stderr
    assert not c.ini.exists() or "nvt_" not in c.ini.read_text()
    return lines[0]


def token(server, *args):
    return server.navectl("tokens", "create", *args, json=True)


def in_log(server, text):
    nt.wait_for(lambda: text in server.controld.output(), 10, f"controld logs {text!r}")


def h_page(c, svc):
    """A one-request HTTP service: answers 200 with the Host it was asked for."""
    head = b""
    while b"\r\n\r\n" not in head:
        d = c.recv(4096)
        if not d:
            return
        head += d
    host = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
            if ln.lower().startswith(b"host:")][0]
    body = b"hello " + host
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
              % (len(body), body))


def http_get(server, host):
    with socket.create_connection(("127.0.0.1", server.http), timeout=nt.IO_TIMEOUT) as s:
        s.settimeout(nt.IO_TIMEOUT)
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        resp = b""
        while True:
            d = s.recv(65536)
            if not d:
                return resp
            resp += d


def test_allow_from(server, make_client, services, tmp_path, procs):
    # a token for 10.9.9.0/24 only: the client, on 127.0.0.1, is refused at HELLO
    t = token(server, "--allow-from", "10.9.9.0/24")
    reason = ("source address 127.0.0.1 is not allowed by this token "
              "(allow_from 10.9.9.0/24)")
    assert configure_refused(server, tmp_path, procs, "far", key=t["token"]) == \
        f"nave: server refused: {reason}"
    in_log(server, reason)
    assert server.navectl("tokens", "show", t["id"], json=True)["last_used"] is None

    # with 127.0.0.0/8 allowed too, it connects and carries bytes
    t = token(server, "--allow-from", "10.9.9.0/24,127.0.0.0/8")
    c = make_client("near", key=t["token"])
    s = services(nt.h_exchange, "svc")
    nt.exchange(c.tcp_add(s.port), 64 * KiB)
    # the running client's next HELLOs pass the same check (a restart reconnects)
    c.stop()
    c.start()


def test_allow_id(server, make_client, tmp_path, procs, services):
    """An auth token's allow_ids is held to the name its tunnel got when the token was
    made (--id), never to the id or host name the client's HELLO claims."""
    t = token(server, "--id", "lab-1", "--allow-id", "office-*")
    # the HELLO claims a name the patterns allow: refused all the same
    assert configure_refused(server, tmp_path, procs, "x", key=t["token"], id="office-7") == \
        ('nave: server refused: tunnel id "lab-1" is not allowed by this token '
         '(allow_ids office-*)')
    in_log(server, 'tunnel id "lab-1" is not allowed by this token')
    t = token(server, "--id", "office-7", "--allow-id", "office-*,lab")
    # whatever the HELLO claims, the tunnel is office-7's
    c = make_client("office", key=t["token"], id="elsewhere")
    assert server.tunnel(c.tunnel_id)["group_id"] == "office-7"
    s = services(nt.h_exchange, "svc")
    nt.exchange(c.tcp_add(s.port), 16 * KiB)


def test_kinds_tcp_only(server, make_client, services):
    t = token(server, "--kinds", "tcp")
    c = make_client("tcp", key=t["token"])
    s = services(nt.h_exchange, "svc")
    nt.exchange(c.tcp_add(s.port), 16 * KiB)
    p = c.nave("tunnel", "http", "add", "--domain", "app.example.test", "--to",
               f"127.0.0.1:{s.port}")
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert nt.user_lines(p.stderr) == ["nave: this token does not allow http rules (kinds tcp)"]
    in_log(server, "domain request of tunnel " + c.tunnel_id +
           " refused: this token does not allow http rules (kinds tcp)")
    assert server.navectl("domains", "ls", json=True)["items"] == []


def test_kinds_http_and_domains(server, make_client, services):
    t = token(server, "--kinds", "http", "--domains", "*.good.test")
    c = make_client("web", key=t["token"])
    web = services(h_page, "web")
    # tcp is not a kind of this token
    p = c.tcp_add_raw(web.port)
    assert p.returncode == 1
    assert nt.user_lines(p.stderr) == ["nave: this token does not allow tcp rules (kinds http)"]
    assert server.ports(c.tunnel_id) == []
    # a domain under the patterns is claimed and serves; one outside them is refused
    p = c.nave("tunnel", "http", "add", "--domain", "a.good.test", "--to",
               f"127.0.0.1:{web.port}")
    assert p.returncode == 0, p.stderr
    resp = nt.wait_for(lambda: (r := http_get(server, "a.good.test")).startswith(b"HTTP/1.1 200")
                       and r, 15, "a.good.test served")
    assert resp.endswith(b"hello a.good.test"), resp
    p = c.nave("tunnel", "http", "add", "--domain", "a.bad.test", "--to",
               f"127.0.0.1:{web.port}")
    assert p.returncode == 1
    assert nt.user_lines(p.stderr) == [
        "nave: domain a.bad.test is not allowed by this token (domains *.good.test)"]
    held = [d["domain"] for d in server.navectl("domains", "ls", json=True)["items"]]
    assert held == ["a.good.test"]


def test_ports(server, make_client, services):
    lo, hi = server.port_min + 10, server.port_min + 14
    t = token(server, "--ports", f"{lo}-{hi}")
    c = make_client("p", key=t["token"])
    s = services(nt.h_exchange, "svc")
    out = server.port_min + 30
    p = c.tcp_add_raw(s.port, port=out)
    assert p.returncode == 1
    assert nt.user_lines(p.stderr) == [
        f"nave: port {out} is outside this token's port range {lo}-{hi}"]
    # port any lands inside the range, and so does a given port in it
    got = c.tcp_add(s.port, name="any")
    assert lo <= got <= hi, got
    nt.exchange(got, 16 * KiB)
    assert c.tcp_add(s.port, port=hi, name="fixed") == hi
    nt.exchange(hi, 16 * KiB)
    # the admin is not the token: navectl ports allocate may go outside its range
    r = server.navectl("ports", "allocate", "--tunnel", c.tunnel_id, "--port", str(out),
                       json=True)
    assert r["port"] == out


def test_registration_inherited(server, make_client, services, tmp_path, procs):
    lo = server.port_min + 20
    reg = server.navectl("registration", "create", "--allow-id", "kiosk-*", "--kinds", "tcp",
                         "--ports", f"{lo}-{lo + 3}", "--allow-from", "127.0.0.0/8",
                         json=True)
    assert reg["allow_ids"] == ["kiosk-*"] and reg["ports"] == f"{lo}-{lo + 3}"
    # refused by the registration's own restrictions: nothing minted, no use counted
    assert configure_refused(server, tmp_path, procs, "stranger",
                             registration=reg["token"], id="desk-1") == \
        ('nave: server refused: tunnel id "desk-1" is not allowed by this registration token '
         '(allow_ids kiosk-*)')
    regs = server.navectl("registration", "ls", json=True)["items"]
    assert [r["uses"] for r in regs if r["id"] == reg["id"]] == [0]
    # allowed: the minted token carries the same restrictions
    c = make_client("kiosk", registration=reg["token"], id="kiosk-1")
    tok = server.tunnel(c.tunnel_id)["token_id"]
    shown = server.navectl("tokens", "show", tok, json=True)
    assert {k: shown[k] for k in ("allow_from", "allow_ids", "kinds", "domains", "ports")} == {
        "allow_from": ["127.0.0.0/8"], "allow_ids": ["kiosk-*"], "kinds": ["tcp"],
        "domains": None, "ports": f"{lo}-{lo + 3}"}
    s = services(nt.h_exchange, "svc")
    port = c.tcp_add(s.port)
    assert lo <= port <= lo + 3
    nt.exchange(port, 16 * KiB)
    p = c.nave("tunnel", "http", "add", "--domain", "k.example.test", "--to",
               f"127.0.0.1:{s.port}")
    assert nt.user_lines(p.stderr) == ["nave: this token does not allow http rules (kinds tcp)"]
    # navectl shows them in its tables too
    rc, out, err = server.navectl("tokens", "ls")
    assert rc == 0 and f"from=127.0.0.0/8;ids=kiosk-*;kinds=tcp;ports={lo}-{lo + 3}" in out, out
    rc, out, err = server.navectl("registration", "ls")
    assert rc == 0 and f"from=127.0.0.0/8;ids=kiosk-*;kinds=tcp;ports={lo}-{lo + 3}" in out, out
    rc, out, err = server.navectl("tokens", "show", tok)
    assert rc == 0 and "allow ids:" in out and "kiosk-*" in out, out


def bad(server, path, body):
    st, j = server.api("POST", path, body)
    assert st == 400, (body, st, j)
    return j["error"]


def test_bad_api_input(server):
    lo, hi = server.port_min, server.port_max
    for path in ("/api/v1/tokens", "/api/v1/registrations"):
        assert bad(server, path, {"allow_from": ["10.1.2.3/8"]}) == \
            '"allow_from" item 1: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?'
        assert bad(server, path, {"allow_from": ["10.0.0.0/8", "nope"]}) == \
            '"allow_from" item 2: an address block is ADDRESS[/PREFIX], e.g. 192.0.2.0/24'
        assert bad(server, path, {"allow_from": "10.0.0.0/8"}) == \
            '"allow_from" must be an array of 1 or more strings (null: no restriction)'
        assert bad(server, path, {"allow_from": []}) == \
            '"allow_from" must be an array of 1 or more strings (null: no restriction)'
        assert bad(server, path, {"allow_ids": ["ok", "a b"]}) == \
            ('"allow_ids" item 2: "a b": a tunnel id pattern holds letters, digits, \'.\', '
             "'_', '-' and '*'")
        assert bad(server, path, {"allow_ids": ["x" * 64]}) == \
            '"allow_ids" item 1: a tunnel id pattern is 1-63 characters'
        assert bad(server, path, {"allow_ids": [7]}) == '"allow_ids" item 1 is not a string'
        assert bad(server, path, {"kinds": ["sctp"]}) == \
            '"kinds" item 1: "sctp" is not a rule kind (tcp, udp, http, mesh)'
        assert bad(server, path, {"domains": ["a..b"]}) == \
            ('"domains" item 1: "a..b" is not a domain or a wildcard *.NAME (1-253 characters '
             "of letters, digits, '-' and '.')")
        assert bad(server, path, {"domains": ["\u00e9\n.com"]}) == \
            ('"domains" item 1: "\\xc3\\xa9\\x0a.com" is not a domain or a wildcard *.NAME '
             "(1-253 characters of letters, digits, '-' and '.')")
        assert bad(server, path, {"ports": f"{hi}-{lo}"}) == \
            f'"ports": {hi}-{lo}: the range starts above its end'
        assert bad(server, path, {"ports": "x-y"}) == \
            '"ports": "x-y" is not a port range A-B (ports 1-65535)'
        assert bad(server, path, {"ports": f"{lo}-{hi + 1}"}) == \
            (f'"ports": {lo}-{hi + 1} is not inside the server\'s [ports] range {lo}-{hi}')
        assert bad(server, path, {"ports": 5}) == '"ports" must be a string A-B (null: any)'
    # nothing was made by any of them
    assert server.navectl("tokens", "ls", json=True)["total"] == 0
    assert server.navectl("registration", "ls", json=True)["total"] == 0
    # navectl: one line, exit 1, the field named
    rc, out, err = server.navectl("tokens", "create", "--ports", f"{lo - 1}-{lo}")
    assert (rc, out) == (1, "") and err == \
        f'navectl: "ports": {lo - 1}-{lo} is not inside the server\'s [ports] range {lo}-{hi}\n'
    rc, out, err = server.navectl("registration", "create", "--allow-from", "10.0.0.0/8,")
    assert (rc, out) == (1, "") and err.startswith('navectl: "allow_from" item 2: '), err
    rc, out, err = server.navectl("tokens", "create", "--kinds", "")
    assert rc == 2 and "empty --kinds" in err, err
    # null is no restriction; an empty ports string too
    st, j = server.api("POST", "/api/v1/tokens", {"allow_from": None, "ports": ""})
    assert st == 201 and j["allow_from"] is None and j["ports"] is None, j


class FakeRelay:
    """A relayd of our own on relay.sock (controld alone): says hello, sends auth."""

    def __init__(self, srv):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(nt.IO_TIMEOUT)
        self.s.connect(str(srv.relay_sock))
        self.req = 0
        nt.msg_send(self.s, {"type": "relay_hello", "version": 1, "pid": 1, "workers": 1,
                             "online": []})
        assert self.recv()["type"] == "sync"

    def recv(self):
        while True:
            (n,) = struct.unpack(">I", nt.recv_exact(self.s, 4))
            m = json.loads(nt.recv_exact(self.s, n))
            if m["type"] not in ("firewall", "mesh_policy", "kick", "port_del", "domain_del"):
                return m

    def auth(self, **kw):
        self.req += 1
        nt.msg_send(self.s, dict({"type": "auth", "req": self.req, "mode": "configure",
                                  "hostname": "h"}, **kw))
        return self.recv()


def test_auth_source_member(tmp_path, procs):
    """controld reads relayd's source with the CIDR parser: a malformed one refuses the
    auth (and keeps the link); without one, an allow_from token is refused."""
    srv = nt.Server(tmp_path, procs)
    srv.start_controld()
    try:
        t = srv.navectl("tokens", "create", "--allow-from", "10.9.9.0/24", json=True)
        free = srv.navectl("tokens", "create", json=True)
        r = FakeRelay(srv)
        for src, why in (("not-an-ip", 'auth: "source" "not-an-ip" is not an address'),
                         ("10.9.9.0/24", 'auth: "source" "10.9.9.0/24" is not an address'),
                         ("10.9.9.1\n", 'auth: "source" "10.9.9.1\\x0a" is not an address'),
                         (7, 'auth: "source" is not a string')):
            m = r.auth(token=free["token"], source=src)
            assert (m["type"], m["reason"]) == ("error", why), m
        m = r.auth(token=t["token"])
        assert m["type"] == "error" and m["reason"] == (
            "the source address is unknown and this token allows only 10.9.9.0/24"), m
        m = r.auth(token=t["token"], source="10.9.9.77")
        assert m["type"] == "auth_ok" and m["tunnel_id"] == t["tunnel_id"], m
        m = r.auth(token=t["token"], source="::ffff:10.9.9.77")
        assert m["type"] == "auth_ok", m
        m = r.auth(token=t["token"], source="10.9.10.1")
        assert m["reason"] == ("source address 10.9.10.1 is not allowed by this token "
                               "(allow_from 10.9.9.0/24)"), m
        # a deauth is held to allow_from too: a leaked token cannot knock the device off
        # from elsewhere
        m = r.auth(token=t["token"], mode="deauth")
        assert m["type"] == "error" and m["reason"] == (
            "the source address is unknown and this token allows only 10.9.9.0/24"), m
        m = r.auth(token=t["token"], mode="deauth", source="10.9.10.1")
        assert m["reason"] == ("source address 10.9.10.1 is not allowed by this token "
                               "(allow_from 10.9.9.0/24)"), m
        assert srv.navectl("tokens", "show", t["id"], json=True)["revoked"] is False
        # but not to allow_ids (it asks for no name)
        ids = srv.navectl("tokens", "create", "--id", "a", "--allow-id", "b", json=True)
        m = r.auth(token=ids["token"], mode="deauth", source="10.9.9.1")
        assert m["type"] == "auth_ok" and m["revoked"] is True, m
        m = r.auth(token=t["token"], mode="deauth", source="10.9.9.77")
        assert m["type"] == "auth_ok" and m["revoked"] is True, m
        r.s.close()
    finally:
        srv.stop()

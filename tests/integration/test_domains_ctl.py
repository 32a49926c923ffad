# SPDX-License-Identifier: Apache-2.0
"""Domain claims of HTTP rules, at controld (issue 8).

A stand-in relayd speaks ctl_proto.h on relay.sock to a real nave-controld:
domain_request and domain_release with their refusals (held by another
tunnel, [http] allowed_domains, malformed domains, the per-tunnel limit), the
domains in sync after a restart of controld, port_sync and deauth releasing
domains with domain_del pushes before the reply, and a malformed message
costing the connection but never controld. navectl domains and the API
(GET /api/v1/domains, DELETE /api/v1/domains/DOMAIN, the domains of GET
/api/v1/tunnels/ID) against the same daemon.
"""
import json
import re
import socket
import sqlite3
import struct

import pytest

import navetest as nt

HUMAN_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")
LINK_RULES_MAX = 64


def rows(out):
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.strip()]


def refused(srv, *args):
    """Exit 1 with exactly one 'navectl: reason' line; returns the reason."""
    rc, out, err = srv.navectl(*args)
    assert rc == 1, (args, rc, out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("navectl: "), err
    return lines[0][len("navectl: "):]


class FakeRelay:
    """A relayd of our own on relay.sock: says hello, sends requests, reads replies."""

    def __init__(self, srv):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(nt.IO_TIMEOUT)
        self.s.connect(str(srv.relay_sock))
        self.req = 0

    def send(self, obj):
        nt.msg_send(self.s, obj)

    def send_raw(self, body):
        self.s.sendall(struct.pack(">I", len(body)) + body)

    def recv(self):
        """The next message that is not a firewall or mesh policy push."""
        while True:
            (n,) = struct.unpack(">I", nt.recv_exact(self.s, 4))
            m = json.loads(nt.recv_exact(self.s, n))
            if m["type"] not in ("firewall", "mesh_policy"):
                return m

    def hello(self):
        """relay_hello; returns the sync (its pieces put together)."""
        self.send({"type": "relay_hello", "version": 1, "pid": 4242, "workers": 2,
                   "ktls": "userspace (ktls = off)", "steering": "listeners", "online": []})
        ports, domains = [], []
        while True:
            m = self.recv()
            assert m["type"] == "sync", m
            assert set(m) <= {"type", "ports", "domains", "more"}, m
            ports += m["ports"]
            domains += m["domains"]
            if not m.get("more"):
                return {"ports": ports, "domains": domains}

    def request(self, type_, **kw):
        """A request with a fresh req; returns (pushes before the reply, the reply)."""
        self.req += 1
        self.send(dict(type=type_, req=self.req, **kw))
        pushes = []
        while True:
            m = self.recv()
            if m.get("req") == self.req:
                return pushes, m
            assert "req" not in m, m
            pushes.append(m)

    def claim(self, tid, domain, rule="web"):
        pushes, m = self.request("domain_request", tunnel_id=tid, domain=domain, rule=rule)
        assert pushes == [], pushes
        return m

    def closed(self):
        """True when controld closes the connection (what it sent first, the
        firewall push after sync say, is read and dropped)."""
        try:
            for _ in range(100):
                if self.s.recv(65536) == b"":
                    return True
        except ConnectionResetError:
            return True
        return False

    def close(self):
        self.s.close()


def _server(tmp_path, procs, extra_ini=""):
    srv = nt.Server(tmp_path, procs, extra_ini=extra_ini)
    srv.start_controld()
    return srv


@pytest.fixture
def controld_only(tmp_path, procs):
    srv = _server(tmp_path, procs)
    yield srv
    srv.stop()


@pytest.fixture
def relay(controld_only):
    r = FakeRelay(controld_only)
    r.hello()
    yield r
    r.close()


def granted(m, tid, domain):
    assert m == {"type": "domain_grant", "req": m["req"], "tunnel_id": tid, "domain": domain}, m


def error(m):
    assert m["type"] == "error" and set(m) == {"type", "req", "reason"}, m
    return m["reason"]


def domains(srv, tunnel=None):
    path = "/api/v1/domains" + (f"?tunnel={tunnel}" if tunnel else "")
    st, body = srv.api("GET", path)
    assert st == 200, body
    return {d["domain"]: (d["tunnel_id"], d["rule"]) for d in body["items"]}


# ---------------------------------------------------------------- relay.sock


def test_claim_hold_reclaim_release(controld_only, relay):
    srv = controld_only
    a = srv.token()["tunnel_id"]
    b = srv.token()["tunnel_id"]

    granted(relay.claim(a, "App.Example.COM", "web"), a, "app.example.com")
    # held: another tunnel is refused with the holder's id
    assert error(relay.claim(b, "app.example.com")) == \
        f"domain app.example.com is held by tunnel {a}"
    assert error(relay.claim(b, "APP.example.com")) == \
        f"domain app.example.com is held by tunnel {a}"
    # the same tunnel again (a reconnect): granted, with the new rule name
    granted(relay.claim(a, "app.example.com", "site"), a, "app.example.com")
    # a wildcard and a name under it are distinct: another tunnel may hold each
    granted(relay.claim(b, "*.example.com", "wild"), b, "*.example.com")
    granted(relay.claim(b, "b.example.com", "web"), b, "b.example.com")
    assert domains(srv) == {"app.example.com": (a, "site"), "*.example.com": (b, "wild"),
                            "b.example.com": (b, "web")}
    assert domains(srv, b) == {"*.example.com": (b, "wild"), "b.example.com": (b, "web")}

    # unknown and revoked tunnels hold nothing
    assert error(relay.claim("t-000000000000", "x.example.com")) == \
        "unknown tunnel t-000000000000"
    assert error(relay.claim("bad id!", "x.example.com")) == "invalid tunnel_id"
    # the rule is a rule name
    for rule, in (("",), ("a b",), ("x" * 64,), ("ü",)):
        assert error(relay.claim(a, "x.example.com", rule)) == \
            "rule must be 1-63 characters: letters, digits, '_' and '-'", rule

    # release: only by its holder
    _, m = relay.request("domain_release", tunnel_id=b, domain="app.example.com")
    assert error(m) == f"domain app.example.com is not held by tunnel {b}"
    _, m = relay.request("domain_release", tunnel_id=a, domain="APP.example.com")
    assert m == {"type": "domain_released", "req": m["req"], "domain": "app.example.com"}
    _, m = relay.request("domain_release", tunnel_id=a, domain="app.example.com")
    assert error(m) == "domain app.example.com is not held"
    # free again: b may take it
    granted(relay.claim(b, "app.example.com"), b, "app.example.com")


BAD = [
    ("a..b", "domain \"a..b\" has an empty label (a leading, trailing or doubled '.')"),
    ("-a.com", "domain \"-a.com\" has a label that starts or ends with '-'"),
    ("*.", "domain \"*.\" names nothing after '*.'"),
    ("a.*.com", "domain \"a.*.com\": '*' only as the whole first label (*.example.com)"),
    ("a" * 300, "domain \"" + "a" * 60 + "...\" is longer than 253 characters"),
    ("café.com", "domain \"café.com\" holds characters other than letters, digits, '-' and "
                 "'.' (a name in another script goes in its xn-- form)"),
    ("a\x1b[31m.com", "domain \"a\\x1b[31m.com\" holds characters other than letters, "
                      "digits, '-' and '.' (a name in another script goes in its xn-- form)"),
    ("", "the domain is empty"),
]


def test_bad_domains_refused(controld_only, relay):
    tid = controld_only.token()["tunnel_id"]
    for d, want in BAD:
        assert error(relay.claim(tid, d)) == want, d
    # uppercase is no error: it is normalised
    granted(relay.claim(tid, "WWW.Example.ORG"), tid, "www.example.org")
    assert domains(controld_only) == {"www.example.org": (tid, "web")}


def test_allowed_domains(tmp_path, procs):
    srv = _server(tmp_path, procs,
                  "[http]\nallowed_domains = App.Example.com, *.apps.example.com\n")
    r = FakeRelay(srv)
    try:
        r.hello()
        tid = srv.token()["tunnel_id"]
        # an exact pattern (in any case), and names under a wildcard at any depth
        granted(r.claim(tid, "app.example.com"), tid, "app.example.com")
        granted(r.claim(tid, "x.apps.example.com"), tid, "x.apps.example.com")
        granted(r.claim(tid, "a.b.apps.example.com"), tid, "a.b.apps.example.com")
        # wildcard claims the wildcard pattern covers: itself and deeper ones
        granted(r.claim(tid, "*.apps.example.com"), tid, "*.apps.example.com")
        granted(r.claim(tid, "*.dev.apps.example.com"), tid, "*.dev.apps.example.com")
        # outside
        for d in ("example.com", "apps.example.com", "b.example.com", "*.example.com",
                  "*.app.example.com", "x.app.example.com", "evilapps.example.com",
                  "other.org"):
            assert error(r.claim(tid, d)) == \
                f"domain {d} is not in the server's allowed_domains", d
        assert set(domains(srv)) == {"app.example.com", "x.apps.example.com",
                                     "a.b.apps.example.com", "*.apps.example.com",
                                     "*.dev.apps.example.com"}
    finally:
        r.close()
        srv.stop()


def test_limit_per_tunnel(controld_only, relay):
    a = controld_only.token()["tunnel_id"]
    b = controld_only.token()["tunnel_id"]
    for i in range(LINK_RULES_MAX):
        granted(relay.claim(a, f"d{i}.example.com", f"r{i}"), a, f"d{i}.example.com")
    assert error(relay.claim(a, "one-more.example.com")) == \
        f"tunnel {a} already holds {LINK_RULES_MAX} domains, the most it can"
    # a held one is still granted, and other tunnels are not limited by it
    granted(relay.claim(a, "d0.example.com", "r0"), a, "d0.example.com")
    granted(relay.claim(b, "one-more.example.com"), b, "one-more.example.com")
    st, body = controld_only.api("GET", "/api/v1/domains?page=2")
    assert st == 200 and body["total"] == LINK_RULES_MAX + 1 and len(body["items"]) == 15


def test_sync_after_controld_restart(controld_only):
    srv = controld_only
    r = FakeRelay(srv)
    a = srv.token()["tunnel_id"]
    b = srv.token()["tunnel_id"]
    try:
        assert r.hello() == {"ports": [], "domains": []}
        granted(r.claim(a, "a.example.com"), a, "a.example.com")
        granted(r.claim(b, "*.example.com"), b, "*.example.com")
        pushes, m = r.request("port_request", tunnel_id=a, port=0, rule="ssh")
        assert m["type"] == "port_grant", m
        port = m["port"]
    finally:
        r.close()
    srv.stop_controld()
    srv.start_controld()
    r = FakeRelay(srv)
    try:
        sync = r.hello()
        assert sorted(sync["domains"], key=lambda d: d["domain"]) == [
            {"domain": "*.example.com", "tunnel_id": b},
            {"domain": "a.example.com", "tunnel_id": a}]
        assert sync["ports"] == [{"port": port, "tunnel_id": a}]
    finally:
        r.close()


def test_udp_port_requests(controld_only, relay):
    """UDP port tunnels at controld: port_request's transport, one port namespace, the
    grant and the sync naming "transport" only for udp, a token's kinds."""
    srv = controld_only
    a = srv.token()["tunnel_id"]
    b = srv.token()["tunnel_id"]
    _, m = relay.request("port_request", tunnel_id=a, port=0, rule="dns", transport="udp")
    assert m == {"type": "port_grant", "req": m["req"], "tunnel_id": a, "port": m["port"],
                 "transport": "udp"}, m
    udp = m["port"]
    # the same rule again: the same port; transport "tcp" is the absent one
    _, m = relay.request("port_request", tunnel_id=a, port=0, rule="dns", transport="udp")
    assert (m["type"], m["port"], m["transport"]) == ("port_grant", udp, "udp"), m
    _, m = relay.request("port_request", tunnel_id=a, port=0, rule="ssh", transport="tcp")
    assert m["type"] == "port_grant" and "transport" not in m and m["port"] != udp, m
    tcp = m["port"]
    # one namespace: the other transport's number is refused, to the tunnel and to others
    _, m = relay.request("port_request", tunnel_id=a, port=udp, rule="x")
    assert error(m) == f"port {udp} is a udp port of this tunnel"
    _, m = relay.request("port_request", tunnel_id=a, port=tcp, rule="y", transport="udp")
    assert error(m) == f"port {tcp} is a tcp port of this tunnel"
    _, m = relay.request("port_request", tunnel_id=b, port=udp, transport="udp")
    assert error(m) == f"port {udp} is allocated to another tunnel"
    for bad in ("sctp", "UDP", "", "udp ", 17, ["udp"], True):
        _, m = relay.request("port_request", tunnel_id=b, port=0, transport=bad)
        assert error(m) == "bad transport", (bad, m)
    # a token whose kinds lack udp; one with udp only
    t = srv.navectl("tokens", "create", "--kinds", "tcp,http", json=True)
    assert t["kinds"] == ["tcp", "http"], t
    _, m = relay.request("port_request", tunnel_id=t["tunnel_id"], port=0, transport="udp")
    assert error(m) == "this token does not allow udp rules (kinds tcp,http)"
    u = srv.navectl("tokens", "create", "--kinds", "udp", json=True)
    assert u["kinds"] == ["udp"], u
    _, m = relay.request("port_request", tunnel_id=u["tunnel_id"], port=0, transport="udp")
    assert m["type"] == "port_grant" and m["transport"] == "udp", m
    uport = m["port"]
    _, m = relay.request("port_request", tunnel_id=u["tunnel_id"], port=0)
    assert error(m) == "this token does not allow tcp rules (kinds udp)"
    # navectl ports allocate pushes port_add, with "transport" for a udp port only
    rc, out, err = srv.navectl("ports", "allocate", "--tunnel", b, "--transport", "udp")
    assert rc == 0, err
    m = relay.recv()
    assert m == {"type": "port_add", "port": m["port"], "tunnel_id": b, "transport": "udp"}, m
    alloc_udp = m["port"]
    rc, out, err = srv.navectl("ports", "allocate", "--tunnel", b)
    assert rc == 0, err
    m = relay.recv()
    assert m == {"type": "port_add", "port": m["port"], "tunnel_id": b}, m
    alloc_tcp = m["port"]
    # a new relayd's sync: "transport" on the udp ports only
    r2 = FakeRelay(srv)
    try:
        sync = r2.hello()
    finally:
        r2.close()
    assert sorted(sync["ports"], key=lambda p: p["port"]) == sorted([
        {"port": udp, "tunnel_id": a, "transport": "udp"},
        {"port": tcp, "tunnel_id": a},
        {"port": uport, "tunnel_id": u["tunnel_id"], "transport": "udp"},
        {"port": alloc_udp, "tunnel_id": b, "transport": "udp"},
        {"port": alloc_tcp, "tunnel_id": b}], key=lambda p: p["port"])


def test_migration_keeps_ports_tcp(controld_only):
    """A database from before UDP ports (schema v10): its ports are tcp ports after the
    migration, in the API, in navectl and in relayd's sync."""
    srv = controld_only
    a = srv.token()["tunnel_id"]
    rc, out, err = srv.navectl("ports", "allocate", "--tunnel", a)
    assert rc == 0, err
    port = srv.ports()[0]
    srv.stop_controld()
    db = sqlite3.connect(srv.dir / "var" / "nave.db")
    db.executescript("DROP TABLE support_sessions; DROP TABLE support_audit;"
                     "ALTER TABLE tunnels DROP COLUMN identity;"
                     "ALTER TABLE ports DROP COLUMN transport;"
                     "UPDATE schema_version SET version = 10;")
    db.close()
    srv.start_controld()
    items = srv.navectl("ports", "ls", json=True)["items"]
    assert [(p["port"], p["transport"]) for p in items] == [(port, "tcp")], items
    r = FakeRelay(srv)
    try:
        assert r.hello()["ports"] == [{"port": port, "tunnel_id": a}]
        _, m = r.request("port_request", tunnel_id=a, port=port, transport="udp")
        assert error(m) == f"port {port} is a tcp port of this tunnel"
    finally:
        r.close()


def test_large_sync_in_pieces(controld_only):
    """More domains than fit one 64 KiB message: sync in pieces marked "more"."""
    srv = controld_only
    r = FakeRelay(srv)
    try:
        r.hello()
        want = {}
        for t in range(8):
            tid = srv.token()["tunnel_id"]
            for i in range(LINK_RULES_MAX):
                d = f"{'x' * 60}.{'y' * 60}.{i}.t{t}.example.com"
                granted(r.claim(tid, d, "web"), tid, d)
                want[d] = tid
    finally:
        r.close()
    r = FakeRelay(srv)
    try:
        r.send({"type": "relay_hello", "version": 1, "pid": 4242, "online": []})
        pieces, got = [], {}
        while True:
            m = r.recv()
            assert m["type"] == "sync"
            pieces.append(m)
            got.update({d["domain"]: d["tunnel_id"] for d in m["domains"]})
            if not m.get("more"):
                break
            assert m["more"] is True
        assert len(pieces) > 1 and got == want
    finally:
        r.close()


def test_port_sync_releases_domains(controld_only, relay):
    srv = controld_only
    a = srv.token()["tunnel_id"]
    b = srv.token()["tunnel_id"]
    granted(relay.claim(a, "keep.example.com", "web"), a, "keep.example.com")
    granted(relay.claim(a, "old.example.com", "old"), a, "old.example.com")
    granted(relay.claim(a, "*.old.example.com", "old"), a, "*.old.example.com")
    granted(relay.claim(b, "b.example.com", "old"), b, "b.example.com")
    _, m = relay.request("port_request", tunnel_id=a, port=0, rule="gone")
    port = m["port"]
    _, m = relay.request("port_request", tunnel_id=a, port=0, rule="web")

    pushes, m = relay.request("port_sync", tunnel_id=a, rules=["web", "ssh"])
    # every release pushed before the reply
    assert {"type": "port_del", "port": port} in pushes
    assert sorted(p["domain"] for p in pushes if p["type"] == "domain_del") == \
        ["*.old.example.com", "old.example.com"]
    assert len(pushes) == 3, pushes
    assert m["type"] == "port_synced" and m["released"] == [port], m
    assert sorted(m["released_domains"]) == ["*.old.example.com", "old.example.com"]
    assert domains(srv) == {"keep.example.com": (a, "web"), "b.example.com": (b, "old")}

    # nothing more to release: no pushes, empty lists
    pushes, m = relay.request("port_sync", tunnel_id=a, rules=["web"])
    assert pushes == [] and m["released"] == [] and m["released_domains"] == [], (pushes, m)


def test_deauth_and_revoke_release_domains(controld_only, relay):
    srv = controld_only
    tok = srv.token()
    a = tok["tunnel_id"]
    b = srv.token()
    granted(relay.claim(a, "a.example.com"), a, "a.example.com")
    granted(relay.claim(a, "*.a.example.com", "wild"), a, "*.a.example.com")
    pushes, m = relay.request("deauth", tunnel_id=a)
    assert sorted(p["domain"] for p in pushes if p["type"] == "domain_del") == \
        ["*.a.example.com", "a.example.com"], pushes
    assert m["type"] == "deauthed" and m["released"] == [], m
    assert sorted(m["released_domains"]) == ["*.a.example.com", "a.example.com"]
    assert domains(srv) == {}
    assert error(relay.claim(a, "a.example.com")) == f"tunnel {a}: its token is revoked"

    # a client's deauth through auth (mode deauth): the same, before auth_ok
    c = srv.token()
    ct = c["tunnel_id"]
    granted(relay.claim(ct, "c.example.com"), ct, "c.example.com")
    pushes, m = relay.request("auth", token=c["token"], mode="deauth", hostname="box")
    assert pushes[0] == {"type": "domain_del", "domain": "c.example.com"}, pushes
    assert m["type"] == "auth_ok" and m["revoked"] is True, m
    assert domains(srv) == {}

    # an administrator's revoke: domain_del pushed, then the kick
    bt = b["tunnel_id"]
    granted(relay.claim(bt, "b.example.com"), bt, "b.example.com")
    assert srv.navectl("tokens", "revoke", b["id"])[0] == 0
    assert relay.recv() == {"type": "domain_del", "domain": "b.example.com"}
    assert relay.recv()["type"] == "kick"
    assert domains(srv) == {}


def test_bad_messages_do_not_kill_controld(controld_only):
    srv = controld_only
    tid = srv.token()["tunnel_id"]
    for bad in ({"type": "domain_request", "req": 1, "tunnel_id": tid, "domain": 7,
                 "rule": "web"},
                {"type": "domain_request", "req": 1, "tunnel_id": tid, "rule": "web"},
                {"type": "domain_request", "tunnel_id": tid, "domain": "a.com", "rule": "w"},
                {"type": "domain_request", "req": 1, "tunnel_id": tid, "domain": "a.com"},
                {"type": "domain_request", "req": "1", "tunnel_id": tid, "domain": "a.com",
                 "rule": "w"},
                {"type": "domain_release", "req": 1, "tunnel_id": 5, "domain": "a.com"},
                {"type": "domain_release", "req": 1, "tunnel_id": tid, "domain": ["a.com"]},
                {"type": "port_sync", "req": 1, "tunnel_id": tid, "rules": ["ok", 5]},
                # the codec refuses a NUL in a string (JSON_ALLOW_NUL is off)
                {"type": "domain_request", "req": 1, "tunnel_id": tid, "domain": "a\x00.com",
                 "rule": "web"}):
        r = FakeRelay(srv)
        try:
            r.hello()
            r.send(bad)
            assert r.closed(), bad
        finally:
            r.close()
    # bytes that are not JSON at all
    r = FakeRelay(srv)
    try:
        r.hello()
        r.send_raw(b'{"type": "domain_request", "domain": "\xff\xfe')
        assert r.closed()
    finally:
        r.close()
    # controld is alive, and a relayd after all that is served
    r = FakeRelay(srv)
    try:
        r.hello()
        granted(r.claim(tid, "fine.example.com"), tid, "fine.example.com")
    finally:
        r.close()
    assert srv.controld.alive()
    assert srv.navectl("status")[0] == 0


# ---------------------------------------------------------------- navectl and the API


def test_navectl_domains(controld_only, relay):
    srv = controld_only
    a = srv.token()["tunnel_id"]
    b = srv.token()["tunnel_id"]
    granted(relay.claim(a, "app.example.com", "web"), a, "app.example.com")
    granted(relay.claim(b, "*.example.com", "wild"), b, "*.example.com")
    _, m = relay.request("port_request", tunnel_id=a, port=0, rule="ssh")
    port = m["port"]

    rc, out, err = srv.navectl("domains", "ls")
    assert rc == 0 and err == "", err
    table = rows(out)
    assert table[0] == ["DOMAIN", "TUNNEL", "RULE", "CREATED"]
    assert [r[:3] for r in table[1:]] == [["*.example.com", b, "wild"],
                                          ["app.example.com", a, "web"]]
    assert all(HUMAN_TIME.fullmatch(r[3]) for r in table[1:]), table
    assert [r[0] for r in rows(srv.navectl("domains", "ls", "--tunnel", a)[1])[1:]] == \
        ["app.example.com"]
    body = srv.navectl("domains", "ls", json=True)
    st, api_body = srv.api("GET", "/api/v1/domains")
    assert st == 200 and body == api_body
    assert body["total"] == 2 and body["page"] == 1 and body["per_page"] == 50
    assert set(body["items"][0]) == {"domain", "tunnel_id", "rule", "created_at"}

    # tunnels show: the tunnel's rules, ports and domains
    t = srv.navectl("tunnels", "show", a, json=True)
    assert t["ports"] == [{"port": port, "rule": "ssh", "transport": "tcp"}]
    assert t["domains"] == [{"domain": "app.example.com", "rule": "web"}]
    rc, out, err = srv.navectl("tunnels", "show", a)
    assert rc == 0, err
    table = rows(out)
    i = table.index(["KIND", "RULE", "PORT/DOMAIN", "BYTES IN", "BYTES OUT", "CONNS"])
    # no connection records yet: no traffic
    assert table[i + 1:] == [["tcp", "ssh", str(port), "0", "0", "0"],
                             ["http", "web", "app.example.com", "0", "0", "0"]]
    rc, out, _ = srv.navectl("tunnels", "show", srv.token()["tunnel_id"])
    assert rc == 0 and re.search(r"^rules:\s+-$", out, re.M), out

    # release: the wildcard too, and relayd is told
    rc, out, err = srv.navectl("domains", "release", "*.EXAMPLE.com")
    assert rc == 0 and out == f"domain *.example.com released (it was held by tunnel {b})\n"
    assert relay.recv() == {"type": "domain_del", "domain": "*.example.com"}
    assert refused(srv, "domains", "release", "*.example.com") == \
        "domain *.example.com is not held"
    assert refused(srv, "domains", "release", "a..b") == \
        "domain \"a..b\" has an empty label (a leading, trailing or doubled '.')"
    got = srv.navectl("domains", "release", "app.example.com", json=True)
    assert got == {"domain": "app.example.com", "tunnel_id": a, "released": True}
    assert relay.recv() == {"type": "domain_del", "domain": "app.example.com"}
    assert srv.navectl("domains", "ls", json=True)["items"] == []


def test_api_domains(controld_only, relay):
    srv = controld_only
    a = srv.token()["tunnel_id"]
    granted(relay.claim(a, "*.example.com", "wild"), a, "*.example.com")
    for path, code, want in (
        ("/api/v1/domains/a..b", 400, "has an empty label"),
        ("/api/v1/domains/" + "a" * 300, 400, "is longer than 253 characters"),
        ("/api/v1/domains/caf%C3%A9.com", 400, "holds characters other than"),
        ("/api/v1/domains/caf%FF.com", 400, "caf\\xff.com"),
        ("/api/v1/domains/a%00.com", 400, "control characters"),
        ("/api/v1/domains/x.example.com", 404, "domain x.example.com is not held"),
        ("/api/v1/domains/a/b", 404, "no such endpoint"),
    ):
        st, body = srv.api("DELETE", path)
        assert st == code and want in body["error"], (path, st, body)
    for path in ("/api/v1/domains?tunnel=bad%20id", "/api/v1/domains?page=0"):
        st, body = srv.api("GET", path)
        assert st == 400, (path, body)
    st, body = srv.api("POST", "/api/v1/domains", {"domain": "x.example.com"})
    assert st == 405, body
    st, body = srv.api("DELETE", "/api/v1/domains/%2A.Example.com")
    assert st == 200 and body == {"domain": "*.example.com", "tunnel_id": a, "released": True}
    assert relay.recv() == {"type": "domain_del", "domain": "*.example.com"}


@pytest.mark.parametrize("args", [
    ["domains"],
    ["domains", "frob"],
    ["domains", "release"],
    ["domains", "release", ""],
    ["domains", "release", "a.com", "b.com"],
    ["domains", "ls", "extra"],
    ["domains", "ls", "--tunnel"],
    ["domains", "ls", "--page", "0"],
])
def test_domains_bad_usage(args):
    p = nt.run([nt.NAVECTL, "--socket", "/nonexistent/control.sock"] + args)
    assert p.returncode == 2, (args, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("navectl: ") and "--help" in lines[0], lines


def test_domains_help():
    p = nt.run([nt.NAVECTL, "domains", "--help"])
    assert p.returncode == 0 and p.stderr == ""
    assert "domains ls [--tunnel ID] [--page N]" in p.stdout
    assert "domains release DOMAIN" in p.stdout
    p = nt.run([nt.NAVECTL, "--help"])
    assert "  domains ls" in p.stdout and "  domains release DOMAIN" in p.stdout
    p = nt.run([nt.NAVECTL, "domains", "release", "--help"])
    assert p.returncode == 0 and "domains release DOMAIN" in p.stdout

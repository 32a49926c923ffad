# SPDX-License-Identifier: Apache-2.0
"""The firewall's control plane and the kernel-assist stats, at controld.

navectl firewall and the API behind it (ctl/API.md) against a real
nave-controld and nave-relayd: add, remove and list, the refusals (a bad
block with cidr_parse's reason, a duplicate, an absent block, a full list),
the lists surviving a restart of controld, and relayd being sent the lists.

Where relayd cannot produce the input yet, or not on demand (the firewall
message in pieces, kernel-assist stats, malformed values), a stand-in
relayd speaks ctl_proto.h on relay.sock itself: what controld sends it is
checked message by message, and what it reports must reach GET
/api/v1/status, GET /api/v1/ports and navectl, with malformed values null
and the connection kept.
"""
import json
import re
import socket
import sqlite3
import struct
import time

import pytest

import navetest as nt

MSG_MAX = 64 * 1024
HUMAN_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")


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


def lists(srv):
    st, body = srv.api("GET", "/api/v1/firewall")
    assert st == 200, body
    return [r["cidr"] for r in body["deny"]], [r["cidr"] for r in body["allow"]]


# ---------------------------------------------------------------- navectl and the API


def test_firewall_navectl(server):
    rc, out, err = server.navectl("firewall", "deny", "add", "10.0.0.0/08")
    assert rc == 0 and err == "", err
    assert out == "10.0.0.0/8 added to the deny list\n"
    assert server.navectl("firewall", "deny", "add", "2001:DB8::/32")[1] == \
        "2001:db8::/32 added to the deny list\n"
    got = server.navectl("firewall", "allow", "add", "::ffff:192.0.2.0/120", json=True)
    assert got["kind"] == "allow" and got["cidr"] == "192.0.2.0/24"
    assert isinstance(got["created"], int) and got["created"] > 0

    table = rows(server.navectl("firewall", "ls")[1])
    assert table[0] == ["KIND", "CIDR", "CREATED"]
    assert [r[:2] for r in table[1:]] == [["deny", "10.0.0.0/8"], ["deny", "2001:db8::/32"],
                                          ["allow", "192.0.2.0/24"]]
    assert all(HUMAN_TIME.fullmatch(r[2]) for r in table[1:]), table
    body = server.navectl("firewall", "ls", json=True)
    assert set(body) == {"deny", "allow"}
    assert [r["cidr"] for r in body["deny"]] == ["10.0.0.0/8", "2001:db8::/32"]
    assert all(set(r) == {"cidr", "created"} for r in body["deny"] + body["allow"])
    # --json prints exactly the API's body
    st, api_body = server.api("GET", "/api/v1/firewall")
    assert st == 200 and api_body == body
    # one list: deny ls / allow ls (--json: the same API body)
    assert [r[:2] for r in rows(server.navectl("firewall", "deny", "ls")[1])[1:]] == \
        [["deny", "10.0.0.0/8"], ["deny", "2001:db8::/32"]]
    assert [r[:2] for r in rows(server.navectl("firewall", "allow", "ls")[1])[1:]] == \
        [["allow", "192.0.2.0/24"]]
    assert server.navectl("firewall", "allow", "ls", json=True) == body

    # refusals: one line, exit 1, the reason from controld
    assert refused(server, "firewall", "deny", "add", "10.1.2.3/8") == \
        "10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?"
    assert refused(server, "firewall", "deny", "add", "10.0.0.0/33") == \
        "the prefix length is a number from 0 to 32"
    assert refused(server, "firewall", "allow", "add", "example.com") == \
        "an address block is ADDRESS[/PREFIX], e.g. 192.0.2.0/24"
    assert refused(server, "firewall", "deny", "add", "10.0.0.0/8") == \
        "10.0.0.0/8 is in the deny list already"
    assert refused(server, "firewall", "allow", "rm", "10.0.0.0/8") == \
        "10.0.0.0/8 is not in the allow list"
    assert refused(server, "firewall", "deny", "rm", "10.0.0.0/99") == \
        "the prefix length is a number from 0 to 32"

    # removed in any text of the block
    rc, out, err = server.navectl("firewall", "deny", "rm", "2001:db8:0::/32")
    assert rc == 0 and out == "2001:db8::/32 removed from the deny list\n", err
    got = server.navectl("firewall", "allow", "rm", "192.0.2.0/24", json=True)
    assert got == {"kind": "allow", "cidr": "192.0.2.0/24", "removed": True}
    assert lists(server) == (["10.0.0.0/8"], [])


@pytest.mark.parametrize("args", [
    ["firewall"],
    ["firewall", "deny"],
    ["firewall", "deny", "frob", "10.0.0.0/8"],
    ["firewall", "allow", "add"],
    ["firewall", "allow", "add", ""],
    ["firewall", "deny", "add", "10.0.0.0/8", "extra"],
    ["firewall", "ls", "extra"],
    ["firewall", "frob"],
])
def test_firewall_bad_usage(args):
    p = nt.run([nt.NAVECTL, "--socket", "/nonexistent/control.sock"] + args)
    assert p.returncode == 2, (args, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("navectl: ") and "--help" in lines[0], lines


def test_firewall_help():
    p = nt.run([nt.NAVECTL, "firewall", "deny", "--help"])
    assert p.returncode == 0 and p.stderr == ""
    assert "firewall deny add CIDR" in p.stdout and "firewall deny rm CIDR" in p.stdout
    assert "allow" not in p.stdout
    p = nt.run([nt.NAVECTL, "firewall", "allow", "add", "--help"])
    assert p.returncode == 0 and "firewall allow add CIDR" in p.stdout
    p = nt.run([nt.NAVECTL, "--help"])
    for c in ("firewall ls", "firewall deny add CIDR", "firewall deny rm CIDR",
              "firewall allow add CIDR", "firewall allow rm CIDR"):
        assert f"  {c}" in p.stdout, c


def test_firewall_api(server):
    st, body = server.api("POST", "/api/v1/firewall/deny", {"cidr": "192.0.2.7"})
    assert st == 201 and body["kind"] == "deny" and body["cidr"] == "192.0.2.7/32", body
    st, body = server.api("POST", "/api/v1/firewall/allow", {"cidr": "2001:db8::/48"})
    assert st == 201 and body["cidr"] == "2001:db8::/48", body

    for payload, want in (
        ({"cidr": "10.0.0.1/8"}, "10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"),
        ({"cidr": ""}, "an address block is 1 to 49 characters"),
        ({"cidr": "1" * 50}, "an address block is 1 to 49 characters"),
        ({"cidr": "10.0.0.0/8\n"}, "an address block is ADDRESS[/PREFIX], e.g. 192.0.2.0/24"),
        ({"cidr": 7}, '"cidr" must be a string'),
        ({}, '"cidr" is required'),
    ):
        st, body = server.api("POST", "/api/v1/firewall/deny", payload)
        assert st == 400 and body == {"error": want}, (payload, st, body)
    st, body = server.api("POST", "/api/v1/firewall/deny", {"cidr": "::ffff:192.0.2.7"})
    assert st == 409 and body == {"error": "192.0.2.7/32 is in the deny list already"}

    # the block in the path: '/' percent-encoded, or as it is
    st, body = server.api("DELETE", "/api/v1/firewall/allow/2001:db8::%2F48")
    assert st == 200 and body == {"kind": "allow", "cidr": "2001:db8::/48", "removed": True}
    st, body = server.api("DELETE", "/api/v1/firewall/allow/2001:db8::/48")
    assert st == 404 and body == {"error": "2001:db8::/48 is not in the allow list"}
    st, body = server.api("DELETE", "/api/v1/firewall/deny/192.0.2.7%2f32")
    assert st == 200 and body["cidr"] == "192.0.2.7/32", body
    for path, code in (
        ("/api/v1/firewall/deny/10.0.0.0/", 400),  # a trailing '/' is no bare address
        ("/api/v1/firewall/deny/10.0.0.0%2F8%00", 400),
        ("/api/v1/firewall/deny/10.0.0.0%2F8%2F8", 404),
        ("/api/v1/firewall/deny/a/b/c", 404),
        ("/api/v1/firewall/deny/" + "1" * 50, 400),
        ("/api/v1/firewall/other/10.0.0.0%2F8", 404),
    ):
        st, body = server.api("DELETE", path)
        assert st == code and "error" in body, (path, st, body)
    st, body = server.api("DELETE", "/api/v1/firewall/deny")
    assert st == 405, body
    st, body = server.api("PUT", "/api/v1/firewall")
    assert st == 405, body
    assert lists(server) == ([], [])


def test_firewall_persists_across_controld_restart(server):
    for args in (("deny", "add", "198.51.100.0/24"), ("deny", "add", "2001:db8:bad::/48"),
                 ("allow", "add", "203.0.113.0/24")):
        assert server.navectl("firewall", *args)[0] == 0
    before = server.navectl("firewall", "ls", json=True)
    server.restart_controld()
    assert server.navectl("firewall", "ls", json=True) == before
    # and a change after the restart still works on the same lists
    assert server.navectl("firewall", "deny", "rm", "198.51.100.0/24")[0] == 0
    assert lists(server) == (["2001:db8:bad::/48"], ["203.0.113.0/24"])


def _pushed(server, deny, allow):
    line = f"firewall: pushed {deny} deny and {allow} allow block(s) to relayd"
    return lambda: line in server.controld.output()


def test_firewall_pushed_to_relayd(server):
    """controld's side: the lists go to relayd on every change and when it
    (re)connects (the log says what was pushed)."""
    assert server.navectl("firewall", "deny", "add", "198.51.100.0/24")[0] == 0
    nt.wait_for(_pushed(server, 1, 0), 10, "the push after an add")
    assert server.navectl("firewall", "allow", "add", "203.0.113.0/24")[0] == 0
    nt.wait_for(_pushed(server, 1, 1), 10, "the push after the second add")
    assert server.navectl("firewall", "deny", "rm", "198.51.100.0/24")[0] == 0
    nt.wait_for(_pushed(server, 0, 1), 10, "the push after a removal")
    n = server.controld.output().count("firewall: pushed 0 deny and 1 allow")
    server.restart_relayd()
    nt.wait_for(lambda: server.controld.output().count("firewall: pushed 0 deny and 1 allow")
                > n, 10, "the push after relayd said hello again")
    # relayd took them without a word against them: still connected
    assert server.navectl("status", json=True)["relay"]["connected"] is True


def test_relayd_applies_firewall_push(server):
    """relayd's side: it logs the lists it applied."""
    assert server.navectl("firewall", "deny", "add", "198.51.100.0/24")[0] == 0
    assert server.navectl("firewall", "deny", "add", "2001:db8:bad::/48")[0] == 0
    assert server.navectl("firewall", "allow", "add", "203.0.113.0/24")[0] == 0
    nt.wait_for(lambda: "firewall: 2 deny, 1 allow rule(s)" in server.relayd.output(), 10,
                "relayd's log line for the applied firewall")


# ---------------------------------------------------------------- a stand-in relayd


class FakeRelay:
    """A relayd of our own on relay.sock: says hello, reads what controld sends."""

    def __init__(self, srv):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(nt.IO_TIMEOUT)
        self.s.connect(str(srv.relay_sock))

    def send(self, obj):
        nt.msg_send(self.s, obj)

    def recv(self):
        """(message, its length on the wire); mesh policy pushes (test_mesh_ctl.py) skipped."""
        while True:
            (n,) = struct.unpack(">I", nt.recv_exact(self.s, 4))
            m = json.loads(nt.recv_exact(self.s, n))
            if m["type"] != "mesh_policy":
                return m, n

    def hello(self, **extra):
        msg = {"type": "relay_hello", "version": 1, "pid": 4242, "workers": 2,
               "ktls": "userspace (ktls = off)", "steering": "bpf", "online": []}
        msg.update(extra)
        self.send(msg)
        m, _ = self.recv()
        assert m["type"] == "sync", m
        return m

    def firewall(self):
        """One firewall push, pieces put together: (deny, allow, sizes of the pieces)."""
        deny, allow, sizes = [], [], []
        while True:
            m, n = self.recv()
            assert m["type"] == "firewall", m
            assert set(m) <= {"type", "deny", "allow", "more"}, m
            sizes.append(n)
            deny += m["deny"]
            allow += m["allow"]
            if not m.get("more"):
                return deny, allow, sizes
            assert m["more"] is True, m

    def close(self):
        self.s.close()


@pytest.fixture
def controld_only(tmp_path, procs):
    srv = nt.Server(tmp_path, procs)
    srv.start_controld()
    yield srv
    srv.stop()


def test_fake_relay_gets_the_firewall(controld_only):
    srv = controld_only
    assert srv.navectl("firewall", "deny", "add", "198.51.100.0/24")[0] == 0
    r = FakeRelay(srv)
    try:
        r.hello()
        # after sync, the whole firewall in one message
        deny, allow, sizes = r.firewall()
        assert (deny, allow, len(sizes)) == (["198.51.100.0/24"], [], 1)
        # every change: the whole lists again
        st, _ = srv.api("POST", "/api/v1/firewall/allow", {"cidr": "203.0.113.0/24"})
        assert st == 201
        assert r.firewall()[:2] == (["198.51.100.0/24"], ["203.0.113.0/24"])
        # a refused change pushes nothing: the next message is the next change's
        st, _ = srv.api("POST", "/api/v1/firewall/allow", {"cidr": "203.0.113.0/24"})
        assert st == 409
        assert srv.navectl("firewall", "deny", "rm", "198.51.100.0/24")[0] == 0
        assert r.firewall()[:2] == ([], ["203.0.113.0/24"])
    finally:
        r.close()


def _seed(srv, kind, n, fmt):
    """n blocks straight into the store (as if added one by one, faster)."""
    db = sqlite3.connect(str(srv.dir / "var" / "nave.db"), timeout=30)
    with db:
        db.executemany("INSERT INTO firewall (kind, cidr, created_at) VALUES (?, ?, 1)",
                       [(kind, fmt(i), ) for i in range(n)])
    db.close()


def test_fake_relay_gets_a_full_firewall_in_pieces(controld_only):
    """4096 blocks per list do not fit one 64 KiB message: pieces, each under
    the limit, all but the last with "more": true, together the whole lists."""
    srv = controld_only
    _seed(srv, "deny", 4096, lambda i: f"2001:db8:{i:x}:ffff:ffff:ffff:ffff:ffff/128")
    _seed(srv, "allow", 4095, lambda i: f"10.{i // 256}.{i % 256}.0/24")

    st, body = srv.api("POST", "/api/v1/firewall/deny", {"cidr": "192.0.2.0/24"})
    assert st == 409 and body == {"error": "the deny list holds 4096 blocks, the most it can"}
    assert refused(srv, "firewall", "deny", "add", "192.0.2.0/24") ==         "the deny list holds 4096 blocks, the most it can"
    st, _ = srv.api("POST", "/api/v1/firewall/allow", {"cidr": "192.0.2.0/24"})
    assert st == 201  # the 4096th
    st, _ = srv.api("POST", "/api/v1/firewall/allow", {"cidr": "198.51.100.0/24"})
    assert st == 409

    want = lists(srv)
    assert len(want[0]) == len(want[1]) == 4096
    r = FakeRelay(srv)
    try:
        r.hello()
        deny, allow, sizes = r.firewall()
        assert (deny, allow) == want
        assert len(sizes) > 1 and max(sizes) <= MSG_MAX, sizes
        # a removal: the lists again, in pieces again
        st, _ = srv.api("DELETE", "/api/v1/firewall/deny/2001:db8::ffff:ffff:ffff:ffff:ffff%2F128")
        assert st == 200
        deny, allow, sizes = r.firewall()
        assert (deny, allow) == (want[0][1:], want[1]) and len(sizes) > 1
        # still connected: controld took nothing we did amiss
        assert srv.navectl("status", json=True)["relay"]["connected"] is True
    finally:
        r.close()


def test_firewall_changes_to_a_slow_relayd_coalesce(controld_only):
    """Changes made while relayd has not read the last push yet go out as one
    push of the latest lists: 30 changes of ~400 KiB lists to a relayd that
    reads nothing are not 12 MiB queued for it (controld would drop it)."""
    srv = controld_only
    _seed(srv, "deny", 4096, lambda i: f"2001:db8:{i:x}:ffff:ffff:ffff:ffff:ffff/128")
    _seed(srv, "allow", 4096, lambda i: f"2001:db9:{i:x}:ffff:ffff:ffff:ffff:ffff/128")
    want = lists(srv)
    r = FakeRelay(srv)
    try:
        r.hello()  # and then no reading while the lists change
        block = want[0][0].replace("/", "%2F")
        for _ in range(15):
            st, body = srv.api("DELETE", f"/api/v1/firewall/deny/{block}")
            assert st == 200, body
            st, body = srv.api("POST", "/api/v1/firewall/deny", {"cidr": want[0][0]})
            assert st == 201, body
        relay = srv.navectl("status", json=True)["relay"]
        assert relay["connected"] is True and relay["pid"] == 4242, relay
        final = lists(srv)
        pushes = 0
        while True:
            got = r.firewall()
            pushes += 1
            if got[:2] == final:
                break
        assert pushes < 30, pushes
        assert "not reading" not in srv.controld.output()
    finally:
        r.close()


KASSIST = {
    "listeners": 1000,
    "maps": {"ports": 3, "deny": 2, "allow": 0},
    "xdp": {"interface": "eth0", "mode": "native", "syn_rate": 100, "pass": 12345,
            "deny": 7, "not_allowed": 0, "unallocated": 41, "syn_rate_drops": 3,
            "malformed": 0},
    "firewall_refused": 5,
}


def _relay(srv):
    return srv.navectl("status", json=True)["relay"]


def _status_line(srv, name):
    rc, out, err = srv.navectl("status")
    assert rc == 0, err
    found = [line.split(":", 1)[1].strip() for line in out.splitlines()
             if line.startswith(f"  {name}:")]
    return found[0] if found else None


def test_fake_relay_kernel_assist_stats(controld_only):
    srv = controld_only
    tid = srv.token()["tunnel_id"]
    lo, hi = srv.port_min, srv.port_max
    for p in (lo, lo + 1):
        assert srv.navectl("ports", "allocate", "--tunnel", tid, "--port", p)[0] == 0
    r = FakeRelay(srv)
    try:
        r.hello(port_counters={str(lo): [10, 2048], "0" + str(lo + 1): [1, 1],
                               str(hi + 1): [1, 1], "abc": [1, 2], str(lo + 2): [1, -1]},
                **KASSIST)
        r.firewall()
        relay = _relay(srv)
        for k, v in KASSIST.items():
            assert relay[k] == v, (k, relay[k])
        assert relay["steering"] == "bpf"
        assert _status_line(srv, "steering") == "bpf (1000 listeners)"
        assert _status_line(srv, "xdp") == \
            "eth0 (native), 12345 passed, SYN rate limit 100/s per source"
        assert _status_line(srv, "maps") == "3 ports, 2 deny, 0 allow"
        assert _status_line(srv, "drops") == ("7 deny, 0 not allowed, 41 unallocated, "
                                              "3 SYN rate, 0 malformed (XDP); "
                                              "5 refused at accept (firewall)")

        # per-port counters: only for the port reported well
        items = {p["port"]: p for p in srv.navectl("ports", "ls", json=True)["items"]}
        assert (items[lo]["packets"], items[lo]["bytes"]) == (10, 2048)
        assert "packets" not in items[lo + 1] and "bytes" not in items[lo + 1]
        table = rows(srv.navectl("ports", "ls")[1])
        assert table[0] == ["PORT", "TRANSPORT", "TUNNEL", "RULE", "CREATED", "PACKETS",
                            "BYTES"]
        by_port = {int(row[0]): row for row in table[1:]}
        assert by_port[lo][5:] == ["10", "2.0 KiB"]
        assert by_port[lo + 1][5:] == ["-", "-"]

        # stats with every new member malformed: null, never fatal
        r.send({"type": "stats", "listeners": "many", "maps": [1],
                "xdp": {"interface": "eth0\u001b[31m", "mode": 5, "syn_rate": 1.5,
                        "pass": -1, "deny": "7", "not_allowed": None, "unallocated": [],
                        "syn_rate_drops": {}, "malformed": "x"},
                "firewall_refused": 1.5, "port_counters": [1], "online": [],
                "udp": {"flows": -1, "flows_expired": "2", "datagrams_in": 3,
                        "dropped": {"queue": [], "flows": 1}},
                "socks": {"conns": 1.5, "refused": "lots"}})

        def malformed_seen():
            relay = _relay(srv)
            return relay if relay["listeners"] is None else None

        relay = nt.wait_for(malformed_seen, 10, "the malformed stats in the status")
        assert relay["connected"] is True
        assert relay["maps"] is None and relay["firewall_refused"] is None
        assert relay["xdp"] == {k: None for k in ("interface", "mode", "syn_rate", "pass", "deny",
                                                  "not_allowed", "unallocated",
                                                  "syn_rate_drops", "malformed")}
        assert relay["udp"] == {"flows": None, "flows_expired": None, "datagrams_in": 3,
                                "datagrams_out": None,
                                "dropped": {"queue": None, "flows": 1, "oversize": None,
                                            "offline": None, "socks": None}}, relay["udp"]
        assert relay["socks"] == {"conns": None, "refused": None}, relay["socks"]
        assert _status_line(srv, "udp") == ("- flows (- expired); datagrams 3 in, - out; "
                                            "dropped: - queue, 1 flows, - oversize, - offline, "
                                            "- socks")
        assert _status_line(srv, "socks") == ("- connections; refused: - auth, - locked, "
                                              "- limit, - method, - handshake")
        assert _status_line(srv, "steering") == "bpf"
        assert _status_line(srv, "xdp") == "- (-), - passed, SYN rate limit -/s per source"
        assert _status_line(srv, "drops") == ("- deny, - not allowed, - unallocated, "
                                              "- SYN rate, - malformed (XDP); "
                                              "- refused at accept (firewall)")
        assert all("packets" not in p for p in srv.navectl("ports", "ls", json=True)["items"])
        assert rows(srv.navectl("ports", "ls")[1])[0] == ["PORT", "TRANSPORT", "TUNNEL", "RULE",
                                                          "CREATED"]

        # XDP and BPF off; a stats message with more port counters than the range holds
        many = {str(p): [1, 2] for p in range(lo, hi + 1)}
        many.update({str(p): [1, 2] for p in range(hi + 1, hi + 100)})
        r.send({"type": "stats", "listeners": 2, "maps": None, "xdp": None,
                "firewall_refused": 0, "port_counters": many})
        nt.wait_for(lambda: _relay(srv)["listeners"] == 2, 10, "the next stats")
        relay = _relay(srv)
        assert relay["xdp"] is None and relay["maps"] is None and relay["firewall_refused"] == 0
        assert _status_line(srv, "xdp") == "off"
        assert _status_line(srv, "maps") == "none (no BPF loaded)"
        assert _status_line(srv, "drops") == "0 refused at accept (firewall)"
        items = srv.navectl("ports", "ls", json=True)["items"]
        assert [(p["packets"], p["bytes"]) for p in items] == [(1, 2), (1, 2)]

        # the connection lived through all of it: a change still reaches us
        assert srv.navectl("firewall", "deny", "add", "198.51.100.0/24")[0] == 0
        assert r.firewall()[:2] == (["198.51.100.0/24"], [])
    finally:
        r.close()
    # without relayd: null, and no counters
    nt.wait_for(lambda: _relay(srv)["connected"] is False, 10, "relayd gone")
    relay = _relay(srv)
    assert all(relay[k] is None for k in KASSIST), relay
    assert all("packets" not in p for p in srv.navectl("ports", "ls", json=True)["items"])


def test_real_relay_status_has_the_fields(server):
    """A real relayd, whatever it reports yet: the members are there, of their types."""
    relay = server.navectl("status", json=True)["relay"]
    for k in KASSIST:
        assert k in relay, k
    assert relay["listeners"] is None or (type(relay["listeners"]) is int and
                                          relay["listeners"] >= 0)
    assert relay["maps"] is None or set(relay["maps"]) == {"ports", "deny", "allow"}
    assert relay["xdp"] is None or set(relay["xdp"]) == set(KASSIST["xdp"])
    rc, out, err = server.navectl("status")
    assert rc == 0, err
    assert re.search(r"(?m)^  steering:\s+\S", out), out
    assert re.search(r"(?m)^  xdp:\s+\S", out), out

# SPDX-License-Identifier: Apache-2.0
"""relayd's side of client-opened streams, spoken by hand on the link protocol
(link_proto.h "Mesh streams"): a raw control link for tunnel A, an outbound data
link (DATA_HELLO flag LINK_HELLO_OUTBOUND) and OPEN frames, against a real nave
client B and real services. Covers WELCOME's "mesh" feature, every refusal the
edge can tell without the network (default deny, no such tunnel, outside
[socks] allow, bad names, UDP), a malformed OPEN closing the link, streams to a
tunnel's TCP port and to an external loopback service (by address and by a
name through the resolver under the seccomp filter), one link carrying OPEN
after OPEN, and an OPEN written in the same packet as the DATA_HELLO."""
import hashlib
import re
import struct
import time

import pytest

import navetest as nt

OUTBOUND = 0x1
OPEN, OPENED = 0xFFFFFFFD, 0xFFFFFFFC
OK, DENIED, NOT_FOUND, OFFLINE, NOT_ALLOWED, DNS, REFUSED, UNREACHABLE, BUSY, BAD = range(10)


@pytest.fixture
def server_ini():
    return "[socks]\nallow = 127.0.0.1/32, localhost\n"


def open_frame(stream_id, name, port, transport=0, flags=0, reserved=0):
    n = name.encode()
    return struct.pack(">IIBBHHH", OPEN, stream_id, transport, len(n), port, flags,
                       reserved) + n.ljust(255, b"\0")


def outbound_link(https, ctl, first=b""):
    d = nt.tls_connect(https)
    hello = bytearray(nt.data_hello(ctl.tunnel_id, ctl.secret))
    struct.pack_into(">H", hello, 6, OUTBOUND)
    d.sendall(bytes(hello) + first)
    return d


def read_opened(d):
    word, sid, status, _res, rule = struct.unpack(">IIBBH", nt.recv_exact(d, 12))
    assert word == OPENED, hex(word)
    return sid, status, rule


def ask(d, stream_id, name, port, **kw):
    d.sendall(open_frame(stream_id, name, port, **kw))
    sid, status, rule = read_opened(d)
    assert sid == stream_id
    return status, rule


def stream_echo(d, payload):
    """Sends payload in chunks and EOF; reads the echo back up to the peer's EOF."""
    for i in range(0, len(payload), 16384):
        part = payload[i:i + 16384]
        d.sendall(struct.pack(">I", len(part)) + part)
    d.sendall(struct.pack(">I", 0))
    got = bytearray()
    while True:
        (w,) = struct.unpack(">I", nt.recv_exact(d, 4))
        if w == 0:
            return bytes(got)
        assert w <= 1 << 20, hex(w)
        got += nt.recv_exact(d, w)


def mesh_stats(server):
    return server.navectl("status", json=True)["relay"].get("mesh", {})


def test_refusals(server, make_client, services):
    b, port = nt.working_tunnel(make_client, services, name="b")
    ctl = nt.ControlLink(server.https, server.token(id="a")["token"]).keepalive()
    try:
        assert "mesh" in ctl.welcome.get("features", []), ctl.welcome
        mark = len(server.relayd.output())
        with outbound_link(server.https, ctl) as d:
            # no rule, a token without the mesh kind: default deny
            assert ask(d, 1, b.tunnel_id, port) == (DENIED, 0)
            assert ask(d, 2, "nosuch", port)[0] == NOT_FOUND
            assert ask(d, 3, "127.0.0.2", port)[0] == NOT_ALLOWED
            assert ask(d, 4, "::1", port)[0] == NOT_ALLOWED
            assert ask(d, 5, "a b", port)[0] == BAD
            assert ask(d, 6, "[::1]", port)[0] == BAD
            assert ask(d, 7, "a b", port, transport=1)[0] == BAD
            # a malformed header (reserved not 0) closes the link
            d.sendall(open_frame(8, "x", 1, reserved=1))
            nt.closed_by_peer(d, 30)
        log = server.relayd.output()[mark:]
        assert re.search(r"mesh: tunnel \S+ -> \S+:\d+ refused: .*default deny", log), log
        # each cause has its own rate limit: the first of each is written
        assert re.search(r"refused: no tunnel, port or domain", log), log
        assert re.search(r"-> 127.0.0.2:\d+ refused: outside \[socks\] allow", log), log
        assert re.search(r"data link .*OPEN: reserved", log), log
        # relayd sends its stats every few seconds
        nt.wait_for(lambda: mesh_stats(server).get("denied_default", 0) >= 1, 30,
                    "the default denial in relayd's stats", 0.5)
        st = mesh_stats(server)
        assert st["refused"]["denied"] >= 1 and st["refused"]["not_found"] >= 1, st
        assert st["refused"]["not_allowed"] >= 2 and st["refused"]["bad"] >= 3, st
        # B is unharmed
        nt.exchange(port, 64 * nt.KiB)
    finally:
        ctl.close()


def test_streams(server, make_client, services):
    b, port = nt.working_tunnel(make_client, services, name="b")
    echo = services(nt.h_echo, "echo")
    rc, out, err = server.navectl("mesh", "allow", "*", "*")
    assert rc == 0, err
    ctl = nt.ControlLink(server.https, server.token(id="a")["token"]).keepalive()
    try:
        # the OPEN rides in the same write as the DATA_HELLO
        with outbound_link(server.https, ctl, open_frame(1, "nosuch", 1)) as d:
            assert read_opened(d)[1] == NOT_FOUND
            # the rule reaches relayd's workers shortly after navectl returned
            deadline = time.monotonic() + 20
            sid = 10
            while True:
                sid += 1
                status, rule = ask(d, sid, b.tunnel_id.upper(), port)
                if status != DENIED or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert status == OK and rule > 0, (status, rule)
            # B's service is h_exchange: 8-byte length, the bytes, then its own
            data = bytes(range(256)) * 256
            d.sendall(struct.pack(">I", 8 + len(data)) + struct.pack(">Q", len(data)) + data)
            d.sendall(struct.pack(">I", 0))
            got = bytearray()
            while True:
                (w,) = struct.unpack(">I", nt.recv_exact(d, 4))
                if w == 0:
                    break
                assert w != 0xFFFFFFFF, "stream reset"
                got += nt.recv_exact(d, w)
            assert len(got) == 32 + len(data) + 32
            assert got[:32] == hashlib.sha256(data).digest()
            assert got[-32:] == hashlib.sha256(got[32:-32]).digest()
            # the same link again: an external loopback service, by address and by name
            assert ask(d, 100, "127.0.0.1", echo.port)[0] == OK
            assert stream_echo(d, b"x" * 100000) == b"x" * 100000
            assert ask(d, 101, "localhost", echo.port)[0] == OK
            assert stream_echo(d, b"hello") == b"hello"
            # a closed port of the allowed address
            assert ask(d, 102, "127.0.0.1", nt.free_port())[0] == REFUSED
        nt.wait_for(lambda: mesh_stats(server).get("opened", 0) >= 3, 30,
                    "the opened streams in relayd's stats", 0.5)
        st = mesh_stats(server)
        assert st["refused"]["refused"] >= 1, st
        assert st["dns"]["lookups"] >= 1, st  # localhost, once: then from the cache
        # records: B's end (kind mesh, from A) and the external streams (tunnel A, the name)

        def mesh_records():
            st_, body = server.api("GET", "/api/v1/connections?limit=100")
            assert st_ == 200, body
            return [r for r in body["items"] if r["kind"] == "mesh"]

        nt.wait_for(lambda: len(mesh_records()) >= 3, 30, "three mesh records", 0.5)
        recs = mesh_records()
        assert any(r["tunnel_id"] == b.tunnel_id and r["domain"] == f"from:{ctl.tunnel_id}"
                   and r["port"] == port for r in recs), recs
        assert any(r["tunnel_id"] == ctl.tunnel_id and r["domain"] == "localhost"
                   and r["port"] == echo.port and r["bytes_in"] == 5 for r in recs), recs
        # links land on either worker and move to A's home one: the OPEN behind the
        # DATA_HELLO moves with them (8 links: both paths, bar a 1 in 128 chance)
        for i in range(8):
            with outbound_link(server.https, ctl, open_frame(200 + i, "127.0.0.1", echo.port)) as d:
                assert read_opened(d)[:2] == (200 + i, OK)
                assert stream_echo(d, b"%d" % i) == b"%d" % i
        # B offline: OFFLINE at once
        b.stop()
        nt.wait_for(lambda: server.tunnel(b.tunnel_id)["state"] == "offline", 30, "B offline")
        with outbound_link(server.https, ctl) as d:
            assert ask(d, 1, b.tunnel_id, port)[0] == OFFLINE
    finally:
        ctl.close()


def test_domain(server, make_client, services):
    """A domain of the HTTP edge: the stream reaches the tunnel's HTTP rule raw
    (the edge reads no head of it), whatever the port; a deny rule names itself."""
    from test_http import h_web, http_add, request, wait_routed

    b = make_client("b")
    web = services(h_web, "web")
    http_add(b, "app.example.test", web.port)
    wait_routed(server, "app.example.test")
    http_add(b, "auth.example.test", web.port, "--basic-auth", "alice:s3cret pass")
    nt.wait_for(lambda: request(server, "auth.example.test")[0] == 401, 10,
                "auth.example.test routed")
    rule = server.navectl("mesh", "allow", "*", "domain:app.example.test", json=True)
    # a domain is asked with port 0: a port-filtered rule never matches it
    server.navectl("mesh", "allow", "*", "domain:*.example.test", "--port", "9",
                   "--position", "1", json=True)
    ctl = nt.ControlLink(server.https, server.token(id="a")["token"]).keepalive()
    try:
        with outbound_link(server.https, ctl) as d:
            deadline = time.monotonic() + 20
            sid = 0
            while True:
                sid += 1
                status, got_rule = ask(d, sid, "App.Example.Test", 9)
                if status != DENIED or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert (status, got_rule) == (OK, rule["id"])
            req = b"GET /echo HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n"
            d.sendall(struct.pack(">I", len(req)) + req + struct.pack(">I", 0))
            got = bytearray()
            while True:
                (w,) = struct.unpack(">I", nt.recv_exact(d, 4))
                if w == 0:
                    break
                assert w != 0xFFFFFFFF, "stream reset"
                got += nt.recv_exact(d, w)
            assert got.startswith(b"HTTP/1.1 200"), got[:200]
            # raw: the service sees the head as sent, no X-Forwarded-* from the edge
            assert b"host: app.example.test" in got.lower(), got
            assert b"x-forwarded-for" not in got.lower(), got
            deny = server.navectl("mesh", "deny", "*", "domain:app.example.test",
                                  "--position", "1", json=True)
            deadline = time.monotonic() + 20
            while True:
                sid += 1
                status, got_rule = ask(d, sid, "app.example.test", 80)
                if status == DENIED or time.monotonic() > deadline:
                    break
                if status == OK:
                    # the deny rule is not in force yet: this OPEN started a
                    # stream, which must end before the link takes another OPEN
                    # (an OPEN inside a stream is malformed: the link closes)
                    stream_echo(d, b"")
                time.sleep(0.2)
            assert (status, got_rule) == (DENIED, deny["id"])
        # basic auth at the edge: a raw stream would bypass it
        with outbound_link(server.https, ctl) as d:
            assert ask(d, 1, "auth.example.test", 9)[0] == NOT_ALLOWED
        log = server.relayd.output()
        assert f"refused: denied by mesh rule {deny['id']}" in log, log
        assert "refused: the domain's HTTP rule has basic auth" in log, log
    finally:
        ctl.close()


def own_addresses():
    """The host's IPv4 and IPv6 addresses other than loopback and link-local."""
    import subprocess
    try:
        out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    except OSError:
        return []
    got = []
    for m in re.finditer(r"\sinet6? ([0-9a-f.:]+)/\d+", out):
        a = m.group(1)
        if not (a.startswith("127.") or a == "::1" or a.startswith("fe80:")):
            got.append(a)
    return got


@pytest.mark.parametrize("server_ini", ["[socks]\nallow = localhost, *.localhost, 0.0.0.0/0, ::/0\n"])
def test_ssrf_guard(server, services):
    """A hostname pattern or a wide block never reaches loopback, unspecified,
    link-local or the edge's own addresses, by name or literal."""
    echo = services(nt.h_echo, "echo")
    ctl = nt.ControlLink(server.https, server.token(id="a")["token"]).keepalive()
    try:
        mark = len(server.relayd.output())
        with outbound_link(server.https, ctl) as d:
            sid = 0
            for name in ["127.0.0.1", "127.1.2.3", "localhost", "0.0.0.0", "::1", "::",
                         "169.254.1.1", "fe80::1", "::ffff:127.0.0.1"] + own_addresses():
                sid += 1
                assert ask(d, sid, name, echo.port)[0] == NOT_ALLOWED, name
        log = server.relayd.output()[mark:]
        # (one line per cause every 10 s: the first refusal's)
        assert ("refused: a loopback, link-local, unspecified, multicast, broadcast or the "
                "edge's own address") in log
    finally:
        ctl.close()


@pytest.mark.parametrize("server_ini", ["[socks]\nallow = 127.0.0.0/8, ::/64, localhost\n"])
def test_ssrf_narrow(server, services):
    """A block of at least /8 (IPv4) or /64 (IPv6) names loopback narrowly."""
    echo = services(nt.h_echo, "echo")
    ctl = nt.ControlLink(server.https, server.token(id="a")["token"]).keepalive()
    try:
        with outbound_link(server.https, ctl) as d:
            assert ask(d, 1, "127.0.0.1", echo.port)[0] == OK
            assert stream_echo(d, b"narrow") == b"narrow"
            assert ask(d, 2, "localhost", echo.port)[0] == OK
            assert stream_echo(d, b"by name") == b"by name"
    finally:
        ctl.close()


@pytest.mark.parametrize("server_ini", ["[socks]\nallow = localhost\n"])
def test_no_lookup_without_allow(server):
    """Without a CIDR in [socks] allow, a name no pattern matches is NOT_FOUND
    with no DNS lookup; a name a pattern matches is looked up."""
    ctl = nt.ControlLink(server.https, server.token(id="a")["token"]).keepalive()
    try:
        with outbound_link(server.https, ctl) as d:
            # localhost is looked up, and is loopback no narrow block names
            assert ask(d, 1, "localhost", 80)[0] == NOT_ALLOWED
            assert ask(d, 2, "nosuch-name.invalid", 80)[0] == NOT_FOUND
            assert ask(d, 3, "other-name.invalid", 80)[0] == NOT_FOUND
            # from the cache: stats that count this hit count every lookup before it
            assert ask(d, 4, "localhost", 80)[0] == NOT_ALLOWED
        dns = nt.wait_for(lambda: (lambda x: x if x.get("cache_hits", 0) >= 1 else None)(
            mesh_stats(server).get("dns", {})), 30, "the cache hit in relayd's stats", 0.5)
        assert dns["lookups"] == 1, dns
    finally:
        ctl.close()


def relayd_fds(server):
    import os
    return len(os.listdir(f"/proc/{server.relayd.pid}/fd"))


@pytest.mark.parametrize("server_ini", [
    "[socks]\nallow = 127.0.0.1/32\n[ports]\nmax_conns_per_source = 1\n"])
def test_no_fd_leak(server, make_client, services):
    """200 OPENs opened and refused (B at max_conns_per_source, a closed port,
    no such name): relayd's descriptors come back to where they were."""
    b, port = nt.working_tunnel(make_client, services, name="b")
    server.navectl("mesh", "allow", "*", "*", json=True)
    ctl = nt.ControlLink(server.https, server.token(id="a")["token"]).keepalive()
    closed = nt.free_port()
    try:
        with outbound_link(server.https, ctl) as hold:
            nt.wait_for(lambda: ask(hold, int(time.monotonic() * 1000) & 0xFFFFFF, b.tunnel_id,
                                    port)[0] == OK, 20, "the allow rule in relayd")
            # B's client's own links share the source's one unfinished handshake

            def link():
                try:
                    c = outbound_link(server.https, ctl)
                    c.sendall(open_frame(999, "nosuch", 1))
                    assert read_opened(c)[1] == NOT_FOUND
                    return c
                except (OSError, nt.Failure):
                    return None
            d = nt.wait_for(link, 20, "an outbound link", 0.2)
            # hold's stream is A's one connection to B's port from this source
            # B's client refills its pool of data links after hold took one: a link it
            # opens during the 200 stays, so the base is a count that held still for
            # a second, and two links of slack are left for a refill after it
            def steady():
                n = relayd_fds(server)
                time.sleep(1)
                return relayd_fds(server) == n
            nt.wait_for(steady, 20, "relayd's descriptors to hold still", 0.1)
            base = relayd_fds(server) + 2
            counts = {}
            for i in range(200):
                name, p = [(b.tunnel_id, port), ("127.0.0.1", closed), ("nosuch", 1)][i % 3]
                st = ask(d, 1000 + i, name, p)[0]
                counts[st] = counts.get(st, 0) + 1
            assert counts.get(BUSY, 0) >= 60 and counts.get(REFUSED, 0) >= 60, counts
            assert counts.get(NOT_FOUND, 0) >= 60, counts
            nt.wait_for(lambda: relayd_fds(server) <= base, 10,
                        f"relayd's descriptors back to {base} (2 of slack)", 0.2)
            d.close()
    finally:
        ctl.close()


@pytest.mark.parametrize("server_ini", [
    "[tunnel]\nmax_links = 4\nmax_pool_size = 2\n[socks]\nallow = 127.0.0.1/32\n"])
def test_outbound_cap(server):
    """A tunnel's outbound links stop at max_links less the idle pool (4 - 2)."""
    ctl = nt.ControlLink(server.https, server.token(id="a")["token"]).keepalive()
    links = []
    try:
        for i in range(2):
            links.append(outbound_link(server.https, ctl))
            assert ask(links[-1], 1, "nosuch", 1)[0] == NOT_FOUND
        d = outbound_link(server.https, ctl, open_frame(1, "nosuch", 1))
        nt.closed_by_peer(d, 30)
        d.close()
        assert "outbound links at max_links (4) less the idle pool (2)" in \
            server.relayd.output()
        # one goes, another takes its place
        links.pop().close()

        def another():
            try:
                c = outbound_link(server.https, ctl)
                assert ask(c, 2, "nosuch", 1)[0] == NOT_FOUND
                return c
            except (OSError, nt.Failure):
                return None
        links.append(nt.wait_for(another, 20, "a link in its place", 0.2))
    finally:
        for c in links:
            c.close()
        ctl.close()

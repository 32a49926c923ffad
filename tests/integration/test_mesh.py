# SPDX-License-Identifier: Apache-2.0
"""The TCP mesh: streams a client opens toward another tunnel's service or an
allowed external address, through a local port map (`nave ports map`) or the
client's SOCKS5 proxy (`nave proxies socks listen`), decided by the edge's mesh
policy (`navectl mesh allow|deny`, the token kind "mesh", `[socks] allow`).

Real daemons and real clients on one relayd: B holds a TCP rule to a local
service, A reaches it. Bytes are exact both ways (SHA-256 of 1 MiB each way)
and 100 connections run at once; a stopped B makes A's local port reset at
once with the reason in A's log; the default deny (no rule, a token without
the mesh kind) and a deny rule refuse with relayd's log naming which, and the
metrics count them; the SOCKS5 client here (plain sockets) reaches B by tunnel
id and port, an external loopback service inside `[socks] allow`, and gets
0x02 for one outside it; malformed handshakes are closed and the client stays
up; the proxy's username/password authentication (RFC 1929). UDP (port maps
and the proxy's UDP ASSOCIATE): test_mesh_udp.py."""
import concurrent.futures
import ipaddress
import json
import socket
import struct
import threading
import time

import pytest

import navetest as nt
from navetest import KiB, MiB
from test_metrics import scrape, settle, total
from test_token_restrict import h_page

# a local connection refused by the edge is reset within this (the sanitizer
# build is slower at everything)
RESET_WITHIN = 3.0 if nt.BUILD.name.endswith("-san") else 1.0

# the SOCKS5 answers (RFC 1928)
REP_OK, REP_FAILURE, REP_NOT_ALLOWED, REP_HOST_UNREACHABLE = 0x00, 0x01, 0x02, 0x04
REP_CMD_UNSUPPORTED, REP_ATYP_UNSUPPORTED = 0x07, 0x08


@pytest.fixture
def metrics_port():
    return nt.free_port()


@pytest.fixture
def server_ini(metrics_port):
    return f"[metrics]\nlisten = 127.0.0.1:{metrics_port}\n"


# external destinations for the SOCKS tests: loopback's own addresses only
# (127.0.0.2 is loopback too, and outside)
SOCKS_INI = "[socks]\nallow = 127.0.0.1/32, ::1/128\n"


# ---------------------------------------------------------------- helpers


def token(server, *args):
    return server.navectl("tokens", "create", *args, json=True)["token"]


def items(obj):
    """The list of an API list body ({"items": [...]}, another list member, or a bare list)."""
    if isinstance(obj, list):
        return obj
    if "items" in obj:
        return obj["items"]
    lists = [v for v in obj.values() if isinstance(v, list)]
    assert len(lists) == 1, obj
    return lists[0]


def navectl_ok(server, *args):
    rc, out, err = server.navectl(*args)
    assert rc == 0, (args, rc, out, err)
    return out


def mesh_rules(server):
    return items(server.navectl("mesh", "ls", json=True))


def mesh_add(server, action, frm, to, *opts):
    """navectl mesh allow|deny FROM TO ...: the new rule's id (from mesh ls)."""
    before = {r["id"] for r in mesh_rules(server)}
    navectl_ok(server, "mesh", action, frm, to, *opts)
    new = [r for r in mesh_rules(server) if r["id"] not in before]
    assert len(new) == 1, new
    return new[0]["id"]


def ok(p, what):
    assert p.returncode == 0, (what, p.returncode, p.stdout, p.stderr)
    return p


def listening(port):
    """True when something listens on 127.0.0.1:port. A bind test with SO_REUSEADDR (without
    it, the connections the listener accepted may hold the port in TIME_WAIT) and no
    connection (one would open a stream)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def port_map(c, local, dest, port, *extra):
    ok(c.nave("ports", "map", str(local), "--destination", dest, "--port", str(port), *extra),
       "nave ports map")
    # the client binds it (live, through its local socket): nobody else can now
    nt.wait_for(lambda: listening(local), 10, f"local port {local} bound")


def socks_listen(c, port, *extra):
    ok(c.nave("proxies", "socks", "listen", str(port), *extra), "nave proxies socks listen")
    nt.wait_for(lambda: listening(port), 10, f"SOCKS port {port} bound")


def log_line(proc, needle, timeout=10):
    """The first line of proc's log that holds needle (waited for)."""
    def find():
        for line in proc.output().splitlines():
            if needle in line:
                return line
        return None

    return nt.wait_for(find, timeout, f"{proc.name} logs {needle!r}")


def reset_at_once(port):
    """A local connection to port is accepted and then reset within RESET_WITHIN s,
    no byte of a service arriving; returns how long it took."""
    t0 = time.monotonic()
    s = None
    try:
        # a reset that comes quickly enough is seen by the (non-blocking) connect itself
        s = nt.connect(port, timeout=10)
        s.sendall(struct.pack(">Q", 10) + b"0123456789")
        d = s.recv(64)
    except (ConnectionResetError, BrokenPipeError):
        took = time.monotonic() - t0
        assert took < RESET_WITHIN, f"reset after {took:.2f} s"
        return took
    except socket.timeout:
        raise nt.Failure(f"local port {port}: no answer and no reset in 10 s")
    finally:
        if s is not None:
            s.close()
    raise nt.Failure(f"local port {port}: {'EOF' if not d else d[:20]!r}, not a reset")


def soon(fn, what, timeout=15):
    """The mesh policy reaches relayd a moment after navectl returns: fn() until it returns
    true without raising."""
    def once():
        try:
            return fn()
        except (nt.Failure, OSError, AssertionError):
            return False

    nt.wait_for(once, timeout, what, interval=0.3)


def works_soon(port):
    soon(lambda: nt.exchange(port, 1000), f"a stream through local port {port}")


def refused_soon(port):
    soon(lambda: reset_at_once(port) is not None, f"local port {port} refused")


def client_with(server, make_client, name, *token_args):
    """A started client whose auth token is made with these restrictions."""
    return make_client(name, key=token(server, *token_args))


# ---------------------------------------------------------------- SOCKS5 client


def recv_n(s, n):
    return nt.recv_exact(s, n)


def socks_greet(s, methods):
    s.sendall(bytes([5, len(methods)]) + bytes(methods))
    return recv_n(s, 2)


def socks_request(s, host, port, cmd=1):
    """Sends a request for host:port (an IP literal as ATYP 1/4, anything else as a
    name); returns the reply code (the bound address read and dropped)."""
    try:
        a = ipaddress.ip_address(host)
        addr = (b"\x01" if a.version == 4 else b"\x04") + a.packed
    except ValueError:
        name = host.encode()
        addr = b"\x03" + bytes([len(name)]) + name
    s.sendall(bytes([5, cmd, 0]) + addr + struct.pack(">H", port))
    head = recv_n(s, 4)
    assert head[0] == 5 and head[2] == 0, head
    alen = {1: 4, 4: 16}.get(head[3])
    if alen is None:
        assert head[3] == 3, head
        alen = recv_n(s, 1)[0]
    recv_n(s, alen + 2)
    return head[1]


def socks_open(proxy, host, port, auth=None):
    """A SOCKS5 CONNECT through the proxy on 127.0.0.1:proxy: (socket, reply code)."""
    s = nt.connect(proxy)
    if auth:
        assert socks_greet(s, [2]) == b"\x05\x02"
        user, pw = (x.encode() for x in auth)
        s.sendall(b"\x01" + bytes([len(user)]) + user + bytes([len(pw)]) + pw)
        st = recv_n(s, 2)
        assert st == b"\x01\x00", st
    else:
        assert socks_greet(s, [0]) == b"\x05\x00"
    return s, socks_request(s, host, port)


def socks_exchange(proxy, host, port, n, auth=None):
    s, rep = socks_open(proxy, host, port, auth)
    if rep != REP_OK:
        s.close()
        raise nt.Failure(f"SOCKS5 CONNECT {host}:{port} answered 0x{rep:02x}")
    return nt.exchange(None, n, sock=s)


def socks_refused(proxy, host, port, cmd=1):
    """The reply code of a request the proxy refuses; the proxy closes after it."""
    with nt.connect(proxy) as s:
        assert socks_greet(s, [0]) == b"\x05\x00"
        rep = socks_request(s, host, port, cmd)
        assert rep != REP_OK, f"{host}:{port} was connected"
        assert closed(s), "the proxy kept the connection open after a refusal"
        return rep


def closed(s, timeout=5):
    """True when the peer closes (EOF or reset) within timeout, sending nothing more."""
    s.settimeout(timeout)
    try:
        return s.recv(64) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


class LoopbackService:
    """h_exchange on 127.0.0.1:P and, where the machine has IPv6, on [::1]:P, so a
    name that resolves to either address (localhost) reaches it."""

    def __init__(self, services):
        self.v4 = services(nt.h_exchange, "external")
        self.port = self.v4.port
        self.v6 = None
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(("::1", self.port))
            s.listen(64)
            s.settimeout(0.2)
        except OSError:
            return
        self.v6 = s
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.stop.is_set():
            try:
                c, _ = self.v6.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(nt.IO_TIMEOUT)
            threading.Thread(target=self.v4._one, args=(c,), daemon=True).start()

    def close(self):
        if self.v6:
            self.stop.set()
            self.v6.close()


# ---------------------------------------------------------------- port maps


def test_port_map_between_tunnels(server, make_client, services, free_port):
    b = make_client("b")
    svc = services(nt.h_exchange, "redis")
    bport = b.tcp_add(svc.port)
    a = make_client("a")
    rid = mesh_add(server, "allow", a.tunnel_id, f"tunnel:{b.tunnel_id}")
    assert rid > 0

    local = free_port()
    port_map(a, local, b.tunnel_id, bport)
    # persisted, and listed
    text = a.ini.read_text()
    assert f"[portmap.{local}]" in text, text
    maps = items(json.loads(ok(a.nave("ports", "ls", "--json"), "ports ls").stdout))
    assert any(str(local) in json.dumps(m) and b.tunnel_id in json.dumps(m) for m in maps), maps

    works_soon(local)
    # every byte, both ways
    nt.exchange(local, 1 * MiB)
    nt.exchange(local, 1 * MiB)
    # 100 connections at once: all connected before any sends
    n = 100
    barrier = threading.Barrier(n, timeout=nt.IO_TIMEOUT)

    def one(_):
        s = nt.connect(local)
        barrier.wait()
        return nt.exchange(None, 16 * KiB, sock=s)

    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        assert all(ex.map(one, range(n)))
    assert svc.errors == []
    st = a.status()
    assert st["mesh_opened"] >= 2 + n, st

    # the service's tunnel goes away: A's local port resets at once, A says why
    b.stop()
    nt.wait_for(lambda: server.tunnel(b.tunnel_id)["state"] != "online", 30, "tunnel b offline")
    reset_at_once(local)
    line = log_line(a.proc, f"port map {local} -> {b.tunnel_id}:{bport} refused")
    assert "offline" in line, line
    log_line(server.relayd, f"mesh: tunnel {a.tunnel_id} -> {b.tunnel_id}:{bport} refused")
    assert a.proc.alive()
    assert a.status()["mesh_refused"] >= 1

    # B back: the map works again, nothing to redo on A
    b.start()
    works_soon(local)

    # ports rm: the listener closes and the config forgets it
    ok(a.nave("ports", "rm", str(local)), "ports rm")
    nt.wait_for(lambda: not listening(local), 10, f"local port {local} released")
    assert f"[portmap.{local}]" not in a.ini.read_text()


def test_port_map_refusals_at_the_client(server, make_client, free_port):
    a = make_client("a")
    before = a.ini.read_text()
    # a local port something else holds: one line, nothing saved
    taken = socket.socket()
    taken.bind(("127.0.0.1", free_port()))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        p = a.nave("ports", "map", str(port), "--destination", "b", "--port", "22000")
        assert p.returncode == 1, (p.stdout, p.stderr)
        assert len(nt.user_lines(p.stderr)) == 1, p.stderr
        assert f"[portmap.{port}]" not in a.ini.read_text()
    finally:
        taken.close()
    # a transport this version does not know
    port = free_port()
    p = a.nave("ports", "map", str(port), "--transport", "sctp", "--destination", "b",
               "--port", "53")
    assert p.returncode != 0
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1 and "--transport" in lines[0], p.stderr
    assert not listening(port)
    assert a.ini.read_text() == before
    assert a.proc.alive()


# ---------------------------------------------------------------- policy


def test_default_deny_and_rules(server, make_client, services, free_port, metrics_port):
    b = make_client("b")
    svc = services(nt.h_exchange, "db")
    bport = b.tcp_add(svc.port)
    # m's token has the mesh kind: between tunnels it may open what no rule denies
    m = client_with(server, make_client, "m", "--kinds", "tcp,mesh")
    # p's has not: default deny
    p = client_with(server, make_client, "p", "--kinds", "tcp")
    lm, lp = free_port(), free_port()
    port_map(m, lm, b.tunnel_id, bport)
    port_map(p, lp, b.tunnel_id, bport)

    nt.exchange(lm, 64 * KiB)
    reset_at_once(lp)
    line = log_line(server.relayd, f"mesh: tunnel {p.tunnel_id} -> {b.tunnel_id}:{bport} refused")
    assert "default deny" in line, line
    log_line(p.proc, f"port map {lp} -> {b.tunnel_id}:{bport} refused")
    settle(metrics_port,
           lambda mt: total(mt, "nave_mesh_refused_total") >= 1
           and total(mt, "nave_mesh_streams_total") >= 1,
           "mesh streams and refusals in /metrics")

    # a deny rule for m, on that port: refused, relayd names the rule
    rid = mesh_add(server, "deny", m.tunnel_id, f"tunnel:{b.tunnel_id}", "--port", str(bport))
    refused_soon(lm)
    line = log_line(server.relayd, f"mesh: tunnel {m.tunnel_id} -> {b.tunnel_id}:{bport} refused")
    assert f"denied by mesh rule {rid}" in line, line

    def rule_denials(mt):
        return sum(v for lb, v in mt.get("nave_mesh_rule_decisions_total", [])
                   if lb.get("rule") == str(rid) and "deny" in lb.get("verdict", ""))

    settle(metrics_port, lambda mt: rule_denials(mt) >= 1, f"rule {rid}'s denials in /metrics")

    # an allow rule lets p in; m stays denied
    aid = mesh_add(server, "allow", p.tunnel_id, f"tunnel:{b.tunnel_id}")
    works_soon(lp)
    nt.exchange(lp, 256 * KiB)
    reset_at_once(lm)
    # the deny rule removed: m is back on its token's mesh kind
    navectl_ok(server, "mesh", "rm", str(rid))
    works_soon(lm)
    assert [r["id"] for r in mesh_rules(server)] == [aid]
    # the last scrape passes promtool with the mesh families in it
    scrape(metrics_port)
    for c in (m, p):
        assert c.proc.alive()


# ---------------------------------------------------------------- SOCKS5


@pytest.mark.parametrize("server_ini", [SOCKS_INI])
def test_socks(server, make_client, services, free_port):
    b = make_client("b", id="db-host")
    assert server.tunnel(b.tunnel_id)["group_id"] == "db-host"
    svc = services(nt.h_exchange, "db")
    bport = b.tcp_add(svc.port)
    web = services(h_page, "web")
    ok(b.nave("tunnel", "http", "add", "--domain", "app.mesh.test", "--to",
              f"127.0.0.1:{web.port}"), "http add")
    a = make_client("a")
    # B by its group id; its HTTP rule's domain
    mesh_add(server, "allow", a.tunnel_id, "group:db-*")
    mesh_add(server, "allow", a.tunnel_id, "domain:*.mesh.test")
    proxy = free_port()
    socks_listen(a, proxy)
    assert "[socks." + str(proxy) + "]" in a.ini.read_text()

    # B's service by tunnel id and port
    soon(lambda: socks_exchange(proxy, b.tunnel_id, bport, 1000), "SOCKS5 to tunnel b")
    socks_exchange(proxy, b.tunnel_id, bport, 1 * MiB)
    socks_exchange(proxy, "db-host", bport, 64 * KiB)
    # the domain reaches B's HTTP rule, whatever the port asked for
    for port in (80, 8443):
        s, rep = socks_open(proxy, "app.mesh.test", port)
        with s:
            assert rep == REP_OK, f"app.mesh.test:{port}: 0x{rep:02x}"
            s.sendall(b"GET / HTTP/1.1\r\nHost: app.mesh.test\r\nConnection: close\r\n\r\n")
            resp = b""
            while d := s.recv(65536):
                resp += d
        assert resp.startswith(b"HTTP/1.1 200") and resp.endswith(b"hello app.mesh.test"), resp
    # an external loopback service inside [socks] allow, by address and by name
    ext = LoopbackService(services)
    try:
        socks_exchange(proxy, "127.0.0.1", ext.port, 1 * MiB)
        if ext.v6:
            socks_exchange(proxy, "::1", ext.port, 64 * KiB)
        socks_exchange(proxy, "localhost", ext.port, 64 * KiB)
        # a deny rule refuses an external destination the allow list lets through
        rid = mesh_add(server, "deny", a.tunnel_id, "external:127.0.0.1/32", "--port",
                       str(ext.port))
        soon(lambda: socks_refused(proxy, "127.0.0.1", ext.port) == REP_NOT_ALLOWED,
             "the external deny rule applied")
        line = log_line(server.relayd, f"mesh: tunnel {a.tunnel_id} -> 127.0.0.1:{ext.port} "
                        "refused")
        assert f"denied by mesh rule {rid}" in line, line
        navectl_ok(server, "mesh", "rm", str(rid))
        soon(lambda: socks_exchange(proxy, "127.0.0.1", ext.port, 1000),
             "the external deny rule removed")
    finally:
        ext.close()
    # one outside it: not allowed by ruleset, and nothing reached it
    outside = socket.socket()
    outside.bind(("127.0.0.2", 0))
    outside.listen(4)
    outside.settimeout(0.5)
    try:
        assert socks_refused(proxy, "127.0.0.2", outside.getsockname()[1]) == REP_NOT_ALLOWED
        with pytest.raises(socket.timeout):
            outside.accept()[0].close()
    finally:
        outside.close()
    log_line(server.relayd, f"mesh: tunnel {a.tunnel_id} -> 127.0.0.2:")
    # a tunnel id nobody has, a port B does not hold
    assert socks_refused(proxy, "no_such_tunnel", 80) == REP_HOST_UNREACHABLE
    assert socks_refused(proxy, b.tunnel_id, bport + 1 if bport < server.port_max
                         else bport - 1) == REP_HOST_UNREACHABLE
    # what the proxy itself refuses: BIND, an unknown command, a name that is none (UDP
    # ASSOCIATE: test_mesh_udp.py)
    assert socks_refused(proxy, "127.0.0.1", 80, cmd=2) == REP_CMD_UNSUPPORTED
    assert socks_refused(proxy, "127.0.0.1", 80, cmd=9) == REP_CMD_UNSUPPORTED
    assert socks_refused(proxy, "a b", 80) == REP_ATYP_UNSUPPORTED

    # malformed handshakes: closed, the client stays up
    slow = nt.connect(proxy)
    slow.sendall(b"\x05")  # a greeting that never ends: closed after 10 s
    t0 = time.monotonic()
    for junk, answer in ((b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", b""),  # SOCKS4
                         (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""),
                         (b"\x05\x00", b"\x05\xff"),  # no method
                         (b"\x05\x01\x02", b"\x05\xff"),  # no auth here: 0x00 only
                         (b"\x05\x01\x00\x05\x01\x00\x09",  # an unknown ATYP: 0x08
                          b"\x05\x00\x05\x08\x00\x01\x00\x00\x00\x00\x00\x00"),
                         (b"\x05\x01\x00\x04\x01\x00\x01\x00", b"\x05\x00")):  # SOCKS4 request
        with nt.connect(proxy) as s:
            s.sendall(junk)
            got = b""
            s.settimeout(5)
            try:
                while len(got) < len(answer):
                    d = s.recv(len(answer) - len(got))
                    if not d:
                        break
                    got += d
            except ConnectionResetError:
                pass
            assert got == answer, (junk, got)
            assert closed(s), f"{junk!r}: still open"
    assert closed(slow, timeout=25), "a stalled handshake was not closed"
    took = time.monotonic() - t0
    assert 8 <= took <= 25, f"the stalled handshake ended after {took:.1f} s"
    slow.close()
    assert a.proc.alive()
    socks_exchange(proxy, b.tunnel_id, bport, 16 * KiB)

    # rm: the listener closes, the config forgets it
    ok(a.nave("proxies", "socks", "rm", str(proxy)), "proxies socks rm")
    nt.wait_for(lambda: not listening(proxy), 10, f"SOCKS port {proxy} released")
    assert "[socks." + str(proxy) + "]" not in a.ini.read_text()


@pytest.mark.parametrize("server_ini", [SOCKS_INI])
def test_socks_auth(server, make_client, services, free_port):
    a = make_client("a")
    ext = services(nt.h_exchange, "external")
    # another address than loopback needs --auth
    port = free_port()
    p = a.nave("proxies", "socks", "listen", str(port), "--bind", "0.0.0.0")
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert len(nt.user_lines(p.stderr)) == 1, p.stderr
    assert f"[socks.{port}]" not in a.ini.read_text()

    proxy = free_port()
    socks_listen(a, proxy, "--auth", "alice:s3cret pw")
    text = a.ini.read_text()
    assert "s3cret" not in text and "$scrypt$" in text, text
    # without credentials: no acceptable method
    with nt.connect(proxy) as s:
        assert socks_greet(s, [0]) == b"\x05\xff"
        assert closed(s)
    # a wrong password, a wrong user: status 1 and closed
    for user, pw in (("alice", "wrong"), ("bob", "s3cret pw")):
        with nt.connect(proxy) as s:
            assert socks_greet(s, [0, 2]) == b"\x05\x02"
            s.sendall(b"\x01" + bytes([len(user)]) + user.encode() + bytes([len(pw)]) +
                      pw.encode())
            assert recv_n(s, 2) == b"\x01\x01"
            assert closed(s)
    # the right ones
    socks_exchange(proxy, "127.0.0.1", ext.port, 256 * KiB, auth=("alice", "s3cret pw"))
    assert a.proc.alive()

    # more than 5 failed logins from one source in 60 s: refused for 60 s, even
    # with the right credentials (2 failed above, 4 more here)
    for _ in range(4):
        with nt.connect(proxy) as s:
            assert socks_greet(s, [0, 2]) == b"\x05\x02"
            s.sendall(b"\x01\x05alice\x05wrong")
            assert recv_n(s, 2) == b"\x01\x01"
            assert closed(s)
    try:
        with nt.connect(proxy) as s:
            try:
                s.sendall(b"\x05\x01\x02")
            except (ConnectionResetError, BrokenPipeError):
                pass  # closed at accept, before the greeting went out
            assert closed(s)
    except ConnectionResetError:
        pass  # reset before the connect returned
    assert log_line(a.proc, "more than 5 failed logins from one source in 60 s")


def test_socks_handshake_cap(server, make_client, free_port):
    """At most 64 handshakes under way per SOCKS listener: the 65th is closed."""
    a = make_client("a")
    proxy = free_port()
    socks_listen(a, proxy)
    held = []
    try:
        for _ in range(64):
            held.append(nt.connect(proxy))
        # the 64 are accepted (a greeting is answered on the last one)
        assert socks_greet(held[-1], [0]) == b"\x05\x00"
        try:
            with nt.connect(proxy) as s:
                assert closed(s)
        except ConnectionResetError:
            pass  # reset before the connect returned
        assert log_line(a.proc, "64 handshakes under way already")
        # one finishes its handshake badly and goes: room for another
        held.pop().close()
        soon(lambda: socks_greet(nt.connect(proxy), [0]) == b"\x05\x00", "room again")
    finally:
        for s in held:
            s.close()


def test_socks_local_refusal_replies(server, make_client, free_port):
    """A request the client refuses itself (no session with the server within
    10 s) is answered 0x01 general failure before the close, not just closed."""
    a = make_client("a")
    proxy = free_port()
    socks_listen(a, proxy)
    server.stop_relayd()
    log_line(a.proc, "control link lost")  # the session ends: no link carries a stream
    assert socks_refused(proxy, "127.0.0.1", 9) == 0x01
    assert log_line(a.proc, "not connected to the server (10 s)")

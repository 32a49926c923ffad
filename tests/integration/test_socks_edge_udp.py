# SPDX-License-Identifier: Apache-2.0
"""UDP ASSOCIATE (RFC 1928 section 7) on relayd's own SOCKS5 server ([socks] listen and
tls_listen): the reply names a UDP relay socket relayd binds for the association on the
address the connection arrived on; each (source, destination) of its datagrams is one mesh
UDP flow, decided exactly as a UDP OPEN from the logged-in tunnel.

Real daemons and clients: B holds a UDP rule to a DNS-style service (each request answered by
its SHA-256 and itself, so every byte is checked both ways). Through the plain port (and once
through the TLS one, whose relay is plain UDP): B's service by tunnel id and by group id and
an allowed external loopback service, several sizes, answers wrapped with the header they went
with; a destination outside [socks] allow and a mesh default deny get nothing and are logged
once; a fragment, malformed datagrams and datagrams from another source port or address are
dropped and counted (nave_udp_dropped_total{reason="socks"}); a new destination past 32 is
dropped; relayd stays up; the relay socket goes with the TCP connection, and with the token
when it is revoked."""
import hashlib
import os
import socket
import ssl
import struct

import pytest

import navetest as nt
from navetest import UdpService
from test_mesh import log_line, recv_n, socks_greet, token
from test_metrics import settle, total, val

SOCKS_PORT = nt.free_port(20000, 22999)
SOCKS_TLS_PORT = nt.free_port(20000, 22999)
while SOCKS_TLS_PORT == SOCKS_PORT:
    SOCKS_TLS_PORT = nt.free_port(20000, 22999)


@pytest.fixture
def metrics_port():
    return nt.free_port()


@pytest.fixture
def server_ini(metrics_port):
    return (f"[metrics]\nlisten = 127.0.0.1:{metrics_port}\n"
            "[udp]\nidle_timeout = 5s\n"
            "[socks]\nallow = 127.0.0.1/32\n"
            f"listen = 127.0.0.1:{SOCKS_PORT}\n"
            f"tls_listen = 127.0.0.1:{SOCKS_TLS_PORT}\n")


@pytest.fixture
def udpsvc():
    made = []

    def make():
        s = UdpService()
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def usock(ip="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((ip, 0))
    return s


def answer_of(d):
    return hashlib.sha256(d).digest() + d


def tls_wrap(s):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(s, server_hostname="localhost")


def associate(user, password, client_port=0, tls=False):
    """Login and UDP ASSOCIATE: the TCP connection and the relay's (address, port)."""
    c = nt.connect(SOCKS_TLS_PORT if tls else SOCKS_PORT)
    c.settimeout(nt.IO_TIMEOUT)
    if tls:
        c = tls_wrap(c)
    assert socks_greet(c, [2]) == b"\x05\x02"
    u, p = user.encode(), password.encode()
    c.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
    assert recv_n(c, 2) == b"\x01\x00", "login refused"
    c.sendall(b"\x05\x03\x00\x01" + socket.inet_aton("127.0.0.1" if client_port else "0.0.0.0")
              + struct.pack(">H", client_port))
    rep = recv_n(c, 10)
    assert rep[:4] == b"\x05\x00\x00\x01", rep
    relay = (socket.inet_ntoa(rep[4:8]), struct.unpack(">H", rep[8:10])[0])
    assert relay[0] == "127.0.0.1" and relay[1], relay
    return c, relay


def udp_header(host, port):
    try:
        return b"\x00\x00\x00\x01" + socket.inet_aton(host) + struct.pack(">H", port)
    except OSError:
        return (b"\x00\x00\x00\x03" + bytes([len(host)]) + host.encode()
                + struct.pack(">H", port))


def ask_via(s, relay, host, port, d, timeout=1.0):
    """One request through the relay; the answer's data (its header checked) or None."""
    h = udp_header(host, port)
    s.sendto(h + d, relay)
    s.settimeout(timeout)
    try:
        while True:
            r, a = s.recvfrom(70000)
            assert a == relay, a
            assert r[:len(h)] == h, (r[:len(h)], h)  # wrapped with the header it went with
            if r[len(h):] == answer_of(d):
                return r[len(h):]
            assert r[len(h) + 32:] != d, "an answer with a wrong hash"
    except socket.timeout:
        return None


def works_soon(s, relay, host, port, d=b"hello"):
    return nt.wait_for(lambda: ask_via(s, relay, host, port, d), 15,
                       f"an answer from {host}:{port} through UDP ASSOCIATE", 0.1)


def silent(s, wait=1.0):
    s.settimeout(wait)
    try:
        r = s.recvfrom(70000)
        raise AssertionError(f"an answer where none was due: {r!r}")
    except socket.timeout:
        return True


def udp_port_free(port):
    k = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        k.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        k.close()


def socks_drops(m):
    return val(m, "nave_udp_dropped_total", reason="socks") or 0


def test_socks_edge_udp_associate(server, make_client, udpsvc, metrics_port):
    svc, ext = udpsvc(), udpsvc()
    b = make_client("b", id="dns-host")
    bport = b.udp_add(svc.port)
    tok = token(server, "--id", "app-u", "--kinds", "tcp,mesh")

    s = usock()
    ctl, relay = associate("app-u", tok, s.getsockname()[1])
    try:
        # B's UDP service by tunnel id and by group id, an allowed external service
        works_soon(s, relay, b.tunnel_id, bport)
        works_soon(s, relay, "dns-host", bport)
        works_soon(s, relay, "127.0.0.1", ext.port)
        for size in (1, 1400, 20000):
            for host, port in ((b.tunnel_id, bport), ("dns-host", bport),
                               ("127.0.0.1", ext.port)):
                d = os.urandom(size)
                assert ask_via(s, relay, host, port, d, 5.0), (host, size)
        # several datagrams in flight both ways, each answered exactly
        ds = [os.urandom(100 + i) for i in range(20)]
        h = udp_header(b.tunnel_id, bport)
        for d in ds:
            s.sendto(h + d, relay)
        got = set()
        s.settimeout(5.0)
        while len(got) < len(ds):
            r, a = s.recvfrom(70000)
            assert a == relay and r[:len(h)] == h, (a, r[:len(h)])
            got.add(r[len(h) + 32:])
            assert r[len(h):] == answer_of(r[len(h) + 32:])
        assert got == set(ds)

        # outside [socks] allow: nothing, logged once for the flow
        h2 = udp_header("127.0.0.2", ext.port)
        for _ in range(5):
            s.sendto(h2 + b"not allowed", relay)
        assert silent(s)
        line = log_line(server.relayd, f"UDP -> 127.0.0.2:{ext.port} refused")
        assert "outside [socks] allow" in line and "app-u" in line, line
        assert server.relayd.output().count(f"UDP -> 127.0.0.2:{ext.port} refused") == 1

        # a fragment, malformed datagrams, another source port and address: dropped
        count = svc.count
        m0 = settle(metrics_port, lambda m: True, "metrics")
        s.sendto(b"\x00\x00\x01" + udp_header(b.tunnel_id, bport)[3:] + b"frag", relay)
        for junk in (b"", b"\x00", b"\x00\x00\x00\x09abc", b"\x01\x00\x00\x01", h,
                     b"\x00\x00\x00\x03\x00\x00\x35x", b"\x00\x00\x00\x03\x03a b\x00\x35x",
                     os.urandom(300), b"\x00\x00\x00\x01\x7f\x00\x00\x01\x00\x00x"):
            s.sendto(junk, relay)
        other = usock()
        third = usock("127.0.0.2")
        try:
            other.sendto(h + b"not the client", relay)
            third.sendto(h + b"not the client's address", relay)
            assert silent(other) and silent(third, 0.2)
        finally:
            other.close()
            third.close()
        assert silent(s, 0.2)
        assert svc.count == count
        log_line(server.relayd, "FRAG not 0")
        log_line(server.relayd, "not the association's client, dropped")
        settle(metrics_port, lambda m: socks_drops(m) >= socks_drops(m0) + 10,
               "SOCKS UDP drops counted")
        assert server.relayd.alive(), nt.tail(server.relayd.output())
        assert ask_via(s, relay, b.tunnel_id, bport, b"still works", 5.0)
        m = settle(metrics_port, lambda m: total(m, "nave_mesh_refused_total") >= 1,
                   "the refusal counted")
        assert total(m, "nave_mesh_streams_total") >= 3
    finally:
        ctl.close()
    # the TCP connection closed: the relay socket goes, a datagram gets nothing (ICMP)
    nt.wait_for(lambda: udp_port_free(relay[1]), 10, "the relay's port released")
    s.sendto(udp_header("127.0.0.1", ext.port) + b"late", relay)
    s.settimeout(1.0)
    with pytest.raises((socket.timeout, ConnectionRefusedError)):
        s.recvfrom(70000)
    s.close()

    # over TLS: the relay is plain UDP; any source port of the client's address
    s = usock()
    ctl, relay = associate("app-u", tok, 0, tls=True)
    try:
        works_soon(s, relay, "dns-host", bport)
        d = os.urandom(5000)
        assert ask_via(s, relay, "127.0.0.1", ext.port, d, 5.0)
        s2 = usock()
        try:
            works_soon(s2, relay, "dns-host", bport, b"from another port")
        finally:
            s2.close()
    finally:
        ctl.close()
        s.close()
    nt.wait_for(lambda: udp_port_free(relay[1]), 10, "the TLS association's relay released")
    assert server.relayd.alive()


def test_socks_edge_udp_policy(server, make_client, udpsvc):
    svc, ext = udpsvc(), udpsvc()
    b = make_client("b", id="dns-host")
    bport = b.udp_add(svc.port)
    # no mesh kind: tunnels are denied by default, externals allowed
    tok = token(server, "--id", "app-v", "--kinds", "tcp")
    s = usock()
    ctl, relay = associate("app-v", tok, s.getsockname()[1])
    try:
        works_soon(s, relay, "127.0.0.1", ext.port)
        count = svc.count
        h = udp_header("dns-host", bport)
        for _ in range(3):
            s.sendto(h + b"denied", relay)
        assert silent(s)
        line = log_line(server.relayd, "denied by the mesh policy (default deny)")
        assert "UDP -> dns-host" in line and "app-v" in line, line
        assert svc.count == count
        assert ask_via(s, relay, "127.0.0.1", ext.port, b"still", 5.0)
        # the association's limit of destinations holds; relayd stays up
        for p in range(1, 40):
            s.sendto(udp_header("127.0.0.1", 40000 + p) + b"x", relay)
        log_line(server.relayd, "a UDP ASSOCIATE with 32 destinations already")
        assert server.relayd.alive()
    finally:
        ctl.close()
        s.close()
    nt.wait_for(lambda: udp_port_free(relay[1]), 10, "the relay's port released")


def test_socks_edge_udp_revoke(server, udpsvc):
    """Revoking the token ends the association as it resets CONNECT streams."""
    ext = udpsvc()
    made = server.navectl("tokens", "create", "--id", "app-w", "--kinds", "tcp,mesh", json=True)
    s = usock()
    ctl, relay = associate("app-w", made["token"], s.getsockname()[1])
    try:
        works_soon(s, relay, "127.0.0.1", ext.port)
        server.navectl("tokens", "revoke", made["id"], json=True)
        ctl.settimeout(5)
        try:
            assert ctl.recv(64) == b"", "the association's connection outlived its token"
        except ConnectionResetError:
            pass
        nt.wait_for(lambda: udp_port_free(relay[1]), 10, "the revoked association's relay")
    finally:
        ctl.close()
        s.close()
    log_line(server.relayd,
             f"tunnel {made['tunnel_id']}'s token was revoked: 1 SOCKS connection(s) reset")
    assert server.relayd.alive()

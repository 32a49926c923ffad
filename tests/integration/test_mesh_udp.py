# SPDX-License-Identifier: Apache-2.0
"""UDP port maps through the mesh (`nave ports map LOCALPORT --transport udp`):
each local source address and port is a flow, opened on an outbound link with
LINK_OPEN_UDP; the edge joins it to a UDP port of another tunnel (a flow of
that port, exactly as a public one) or sends from its own socket to an
external destination inside [socks] allow.

Real daemons and clients: B holds a UDP rule to a DNS-style service (each
request answered by its SHA-256 and itself, so every byte is checked), A maps a
local UDP port to it. Request/response exact; several source ports at once get
their own answers; 2,000 datagrams with the loss counted (most must arrive);
idle flows expire (relayd's [udp] idle_timeout, counted in /metrics) and the
next datagram opens a new one; an allowed external loopback UDP service works,
one outside the allow list is refused; the policy's default deny and an
offline B: nothing arrives, the refusal is logged on both sides and counted,
and a refused flow is not OPENed again per datagram. SOCKS5 UDP ASSOCIATE on
the client's proxy: to B's service by tunnel id and to an allowed external
service, answers wrapped with the header they went with; a destination outside
the allow list, a fragment and another source port dropped; the association
ends with its control connection."""
import hashlib
import json
import os
import select
import socket
import struct
import time

import pytest

import navetest as nt
from navetest import UdpService
from test_mesh import log_line, mesh_add, ok
from test_metrics import settle, total

@pytest.fixture
def metrics_port():
    return nt.free_port()


@pytest.fixture
def server_ini(metrics_port):
    """A short [udp] idle_timeout (felt within the test), loopback's 127.0.0.1 as the one
    allowed external destination (and multicast, too wide to reach), and /metrics."""
    return (f"[udp]\nidle_timeout = 2s\nmax_flows = 64\nqueue = 64\n"
            f"[socks]\nallow = 127.0.0.1/32, 224.0.0.0/4\n"
            f"[metrics]\nlisten = 127.0.0.1:{metrics_port}\n")


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


def usock():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    return s


def answer_of(d):
    return hashlib.sha256(d).digest() + d


def ask(s, local, d, timeout=1.0):
    """One request from s to the map; its answer (checked against d) or None."""
    s.sendto(d, ("127.0.0.1", local))
    s.settimeout(timeout)
    try:
        while True:
            r, a = s.recvfrom(70000)
            assert a == ("127.0.0.1", local), a  # answers come from the map's port
            if r == answer_of(d):
                return r
            # an answer to an earlier request of this socket (a retry): skip it
            assert r[32:] != d, "an answer with a wrong hash"
    except socket.timeout:
        return None


def works_soon(s, local, d, timeout=15):
    """A request answered within timeout (the first ones may go while B's flow opens)."""
    return nt.wait_for(lambda: ask(s, local, d), timeout, f"an answer through udp map {local}",
                       interval=0.1)


def nothing_arrives(s, local, d, n=5, wait=1.0):
    for _ in range(n):
        s.sendto(d, ("127.0.0.1", local))
    s.settimeout(wait)
    try:
        r = s.recvfrom(70000)
        raise AssertionError(f"an answer through a refused map: {r!r}")
    except socket.timeout:
        pass


def udp_map(c, local, dest, port):
    p = ok(c.nave("ports", "map", str(local), "--transport", "udp", "--destination", dest,
                  "--port", str(port)), "nave ports map --transport udp")
    assert f"udp port map {local} -> " in p.stdout, p.stdout


def udp_port_free(port):
    k = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        k.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        k.close()


def refusals(c):
    return c.status().get("mesh_refused", 0)


def test_udp_map_to_a_tunnel(server, make_client, udpsvc, metrics_port):
    svc = udpsvc()
    b = make_client("b")
    bport = b.udp_add(svc.port)
    a = make_client("a")
    mesh_add(server, "allow", a.tunnel_id, f"tunnel:{b.tunnel_id}")
    local = nt.free_port()
    udp_map(a, local, b.tunnel_id, bport)
    # persisted with its transport, and listed with it
    text = a.ini.read_text()
    assert f"[portmap.{local}]" in text and "transport = udp" in text, text
    maps = json.loads(ok(a.nave("ports", "ls", "--json"), "ports ls").stdout)
    m = [m for m in maps if m["local"] == local]
    assert m and m[0]["transport"] == "udp" and m[0]["state"] == "listening", maps
    plain = ok(a.nave("ports", "ls"), "ports ls").stdout
    assert any(str(local) in ln and " udp " in ln for ln in plain.splitlines()), plain

    s = usock()
    try:
        works_soon(s, local, b"\x12\x34 first question")
        # request/response, every byte: small, empty-ish and large datagrams
        for size in (1, 100, 1400, 9000, 30000):
            d = os.urandom(size)
            assert ask(s, local, d, 5.0), f"no answer to {size} bytes"
    finally:
        s.close()

    # several source ports at once: each its own flow and its own answers
    socks = [usock() for _ in range(8)]
    try:
        for i, k in enumerate(socks):
            k.sendto(b"source %d" % i, ("127.0.0.1", local))
        for i, k in enumerate(socks):
            k.settimeout(10)
            r, _ = k.recvfrom(70000)
            assert r == answer_of(b"source %d" % i), (i, r)
    finally:
        for k in socks:
            k.close()

    # 2,000 datagrams, at most 64 unanswered at a time: loss counted, most arrive
    s = usock()
    try:
        works_soon(s, local, b"warm")
        sent = got = 0
        outstanding = set()
        s.setblocking(False)
        t0 = time.monotonic()
        while sent < 2000 or (outstanding and time.monotonic() - t0 < 60):
            while sent < 2000 and len(outstanding) < 64:
                d = b"%08d" % sent + bytes(200)
                s.sendto(d, ("127.0.0.1", local))
                outstanding.add(d)
                sent += 1
            r, _, _ = select.select([s], [], [], 0.5)
            if not r:
                outstanding.clear()  # lost: counted below, the window moves on
                continue
            while True:
                try:
                    r, _ = s.recvfrom(70000)
                except BlockingIOError:
                    break
                d = r[32:]
                assert r == answer_of(d), "a corrupt answer"
                if d in outstanding:
                    outstanding.discard(d)
                    got += 1
        lost = sent - got
        print(f"2000 datagrams: {got} answered, {lost} lost")
        assert got >= 1800, (got, lost)
    finally:
        s.close()

    # idle flows end: relayd's [udp] idle_timeout (2 s) ends them, /metrics counts it
    settle(metrics_port, lambda mt: total(mt, "nave_udp_flows_expired_total") >= 1,
           "an idle mesh UDP flow expired")
    nt.wait_for(lambda: a.status()["udp"]["map_flows"] == 0, 20, "A's map flows ended")
    s = usock()
    try:  # a new datagram opens a new flow
        works_soon(s, local, b"after the idle end")
    finally:
        s.close()

    # ports rm: the socket is released and the config forgets it
    ok(a.nave("ports", "rm", str(local)), "ports rm")
    text = a.ini.read_text()
    assert f"[portmap.{local}]" not in text, text
    k = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        k.bind(("127.0.0.1", local))  # free again
    finally:
        k.close()
    assert a.proc.alive() and b.proc.alive()


@pytest.mark.parametrize("server_ini", ["[socks]\nallow = 127.0.0.1/32\n"])
def test_udp_map_full_ends_its_oldest_idle_flow(server, make_client, udpsvc):
    """A stub resolver takes a new source port per query: past the map's 128 flows,
    a new source ends the flow idle longest (idle 1 s or more) instead of being
    dropped, so query 129 onwards are answered within the minute flows idle for."""
    svc = udpsvc()
    b = make_client("b")
    bport = b.udp_add(svc.port)
    a = make_client("a")
    mesh_add(server, "allow", a.tunnel_id, f"tunnel:{b.tunnel_id}")
    local = nt.free_port()
    udp_map(a, local, b.tunnel_id, bport)
    # every query from a socket of its own, all held open: a closed one's port could come
    # back to a later socket and find its flow still there
    held = [usock()]
    works_soon(held[0], local, b"warm")

    def one_shot(i):
        held.append(usock())
        return ask(held[-1], local, b"query %d" % i, 5.0) is not None
    try:
        got = [one_shot(i) for i in range(127)]  # with the warm one: the map is full
        assert all(got), got.count(False)
        nt.wait_for(lambda: a.status()["udp"]["map_flows"] == 128, 5, "128 flows in A's status")
        time.sleep(1.2)  # the oldest flows are idle for MAP_UDP_EVICT_MS
        got = [one_shot(i) for i in range(127, 159)]
        assert all(got), got.count(False)
    finally:
        for k in held:
            k.close()
    st = nt.wait_for(lambda: (lambda u: u if u["flows_expired"] >= 32 else None)(
        a.status()["udp"]), 5, "32 flows ended in A's status")
    assert st["map_flows"] == 128 and st["dropped"]["flows"] == 0, st


def test_udp_map_refusals_and_external(server, make_client, udpsvc, metrics_port):
    svc = udpsvc()
    ext = udpsvc()
    b = make_client("b")
    bport = b.udp_add(svc.port)
    a = make_client("a")  # a token without the mesh kind, no rule: default deny

    # an external destination inside [socks] allow (127.0.0.1/32): the edge's own socket
    lx = nt.free_port()
    udp_map(a, lx, "127.0.0.1", ext.port)
    s = usock()
    try:
        works_soon(s, lx, b"external question")
        assert ask(s, lx, bytes(range(256)) * 8, 5.0)
    finally:
        s.close()

    # one outside it (127.0.0.2): refused, nothing arrives, both sides say why
    lo = nt.free_port()
    udp_map(a, lo, "127.0.0.2", ext.port)
    s = usock()
    try:
        nothing_arrives(s, lo, b"not allowed")
    finally:
        s.close()
    line = log_line(a.proc, f"udp port map {lo} -> 127.0.0.2:{ext.port} refused")
    assert "not allowed" in line, line
    log_line(server.relayd, f"mesh: tunnel {a.tunnel_id} -> 127.0.0.2:{ext.port} refused")

    # multicast inside a wide allow block (224.0.0.0/4): never reached (SSDP, mDNS)
    lm = nt.free_port()
    udp_map(a, lm, "239.255.255.250", 1900)
    s = usock()
    try:
        nothing_arrives(s, lm, b"M-SEARCH")
    finally:
        s.close()
    line = log_line(server.relayd, f"mesh: tunnel {a.tunnel_id} -> 239.255.255.250:1900 refused")
    assert "multicast" in line, line

    # the mesh policy: no rule, no mesh kind: default deny; nothing arrives
    ld = nt.free_port()
    udp_map(a, ld, b.tunnel_id, bport)
    before = refusals(a)
    s = usock()
    try:
        nothing_arrives(s, ld, b"denied", n=20)
    finally:
        s.close()
    line = log_line(a.proc, f"udp port map {ld} -> {b.tunnel_id}:{bport} refused")
    assert "default deny" in line, line
    line = log_line(server.relayd, f"mesh: tunnel {a.tunnel_id} -> {b.tunnel_id}:{bport} refused")
    assert "default deny" in line, line
    # 20 datagrams of one flow within a second: one OPEN, one refusal (retried after 5 s)
    assert refusals(a) - before == 1, (before, a.status())
    assert svc.count == 0
    settle(metrics_port, lambda mt: total(mt, "nave_mesh_refused_total") >= 2,
           "mesh UDP refusals in /metrics")

    # a rule allows it: the same map works (a new source: a new flow)
    mesh_add(server, "allow", a.tunnel_id, f"tunnel:{b.tunnel_id}")
    s = usock()
    try:
        works_soon(s, ld, b"allowed now")
    finally:
        s.close()

    # a TCP port of B is not a UDP one: no such destination
    lt = nt.free_port()
    tport = b.tcp_add(svc.port)
    udp_map(a, lt, b.tunnel_id, tport)
    s = usock()
    try:
        nothing_arrives(s, lt, b"tcp port", n=1)
    finally:
        s.close()
    line = log_line(a.proc, f"udp port map {lt} -> {b.tunnel_id}:{tport} refused")
    assert "no such destination" in line, line

    # B offline: a new flow is refused (offline), nothing arrives, A stays up
    b.stop()
    nt.wait_for(lambda: server.tunnel(b.tunnel_id)["state"] != "online", 30, "tunnel b offline")
    s = usock()
    try:
        nothing_arrives(s, ld, b"b is away")
    finally:
        s.close()
    line = log_line(a.proc, "refused: destination tunnel offline")
    assert f"udp port map {ld} -> " in line, line
    assert a.proc.alive()
    # B back: the map works again, nothing to redo on A
    b.start()
    s = usock()
    try:
        works_soon(s, ld, b"b is back", timeout=20)
    finally:
        s.close()


# ---------------------------------------------------------------- SOCKS5 UDP ASSOCIATE


def associate(proxy, client_port=0):
    """A SOCKS5 UDP ASSOCIATE (no authentication): the control connection and the relay's
    (address, port) from the reply."""
    c = socket.create_connection(("127.0.0.1", proxy), timeout=10)
    c.sendall(b"\x05\x01\x00")
    assert nt.recv_exact(c, 2) == b"\x05\x00"
    c.sendall(b"\x05\x03\x00\x01" + socket.inet_aton("127.0.0.1" if client_port else "0.0.0.0")
              + struct.pack(">H", client_port))
    rep = nt.recv_exact(c, 10)
    assert rep[:4] == b"\x05\x00\x00\x01", rep
    return c, (socket.inet_ntoa(rep[4:8]), struct.unpack(">H", rep[8:10])[0])


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
    except socket.timeout:
        return None


def test_socks_udp_associate(server, make_client, udpsvc):
    svc, ext = udpsvc(), udpsvc()
    b = make_client("b")
    bport = b.udp_add(svc.port)
    a = make_client("a")
    mesh_add(server, "allow", a.tunnel_id, f"tunnel:{b.tunnel_id}")
    proxy = nt.free_port()
    ok(a.nave("proxies", "socks", "listen", str(proxy)), "nave proxies socks listen")
    nt.wait_for(lambda: a.status()["socks"] and a.status()["socks"][0]["state"] == "listening",
                10, "the SOCKS listener")

    s = usock()
    ctl, relay = associate(proxy, s.getsockname()[1])
    try:
        assert relay[0] == "127.0.0.1" and relay[1], relay
        # to B's UDP service by tunnel id (a name), and to an allowed external one
        nt.wait_for(lambda: ask_via(s, relay, b.tunnel_id, bport, b"via socks"), 15,
                    "an answer from B's service through UDP ASSOCIATE", 0.1)
        nt.wait_for(lambda: ask_via(s, relay, "127.0.0.1", ext.port, b"external"), 15,
                    "an answer from the external service", 0.1)
        for size in (1, 1400, 20000):
            d = os.urandom(size)
            assert ask_via(s, relay, b.tunnel_id, bport, d, 5.0), size
            assert ask_via(s, relay, "127.0.0.1", ext.port, d, 5.0), size
        # outside [socks] allow: nothing comes back, A's log says why
        h = udp_header("127.0.0.2", ext.port)
        for _ in range(3):
            s.sendto(h + b"not allowed", relay)
        s.settimeout(1.0)
        with pytest.raises(socket.timeout):
            s.recvfrom(70000)
        line = log_line(a.proc, f"SOCKS proxy {proxy}: UDP 127.0.0.2:{ext.port} refused")
        assert "not allowed" in line, line
        # a fragment (FRAG 1) and another source port than the associated one: dropped
        count = svc.count
        s.sendto(b"\x00\x00\x01" + udp_header(b.tunnel_id, bport)[3:] + b"frag", relay)
        other = usock()
        try:
            other.sendto(udp_header(b.tunnel_id, bport) + b"not the client", relay)
            other.settimeout(1.0)
            with pytest.raises(socket.timeout):
                other.recvfrom(70000)
        finally:
            other.close()
        assert svc.count == count
        log_line(a.proc, "FRAG not 0")
        log_line(a.proc, "another address than its client's")
        assert ask_via(s, relay, b.tunnel_id, bport, b"still works", 5.0)
    finally:
        ctl.close()
    # the control connection closed: the association and its flows end
    nt.wait_for(lambda: a.status()["udp"]["map_flows"] == 0, 10, "the association's flows end")
    nt.wait_for(lambda: udp_port_free(relay[1]), 10, "the relay's port released")
    s.close()
    assert a.proc.alive()

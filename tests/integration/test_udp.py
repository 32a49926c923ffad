# SPDX-License-Identifier: Apache-2.0
"""UDP port tunnels (nave tunnel udp add): a DNS-style request/response service
behind a tunnel, every byte checked; idle flows expire and a new datagram
starts a new flow; max_flows drops new flows of one tunnel (counted) while
another tunnel's UDP port keeps working, and a reload changes it live; oversize and empty datagrams do not
hurt; nave tunnel rm releases the port."""
import hashlib
import os
import select
import socket
import time

import pytest

import navetest as nt
from navetest import UdpService


METRICS = {}


@pytest.fixture
def server_ini():
    """Short idle timeout and a small flow cap, so both are felt within the suite; the
    counters are read from controld's /metrics (nave_udp_*, relayd's stats)."""
    METRICS["port"] = nt.free_port()
    return (f"[udp]\nidle_timeout = 2s\nmax_flows = 12\nqueue = 64\n"
            f"[metrics]\nlisten = 127.0.0.1:{METRICS['port']}\n")


@pytest.fixture
def udpsvc():
    s = UdpService()
    yield s
    s.close()


def scrape_udp():
    """nave_udp_* from /metrics as relayd's stats shape, or None before relayd sent any."""
    s = socket.create_connection(("127.0.0.1", METRICS["port"]), timeout=nt.IO_TIMEOUT)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            body += d
    finally:
        s.close()
    st = {"dropped": {}}
    for line in body.decode().partition("\r\n\r\n")[2].splitlines():
        if not line.startswith("nave_udp_"):
            continue
        name, value = line.rsplit(" ", 1)
        v = int(float(value))
        if name == "nave_udp_flows":
            st["flows"] = v
        elif name == "nave_udp_flows_expired_total":
            st["flows_expired"] = v
        elif name.startswith("nave_udp_datagrams_total"):
            st["datagrams_" + name.split('"')[1]] = v
        elif name.startswith("nave_udp_dropped_total"):
            st["dropped"][name.split('"')[1]] = v
    return st if "flows" in st else None


def relay_udp(server):
    """relayd's UDP counters as controld serves them (relayd reports every 2 s)."""
    st = {}

    def have():
        st["udp"] = scrape_udp()
        return st["udp"] is not None

    nt.wait_for(have, 15, "relayd's nave_udp_* counters in /metrics", 0.5)
    return st["udp"]


def ask(sock, port, payload, timeout=2.0):
    """One request, its answer checked; False when no answer came."""
    sock.sendto(payload, ("127.0.0.1", port))
    sock.settimeout(timeout)
    try:
        d, _ = sock.recvfrom(65535)
    except socket.timeout:
        return False
    assert d[:32] == hashlib.sha256(payload).digest() and d[32:] == payload, "answer corrupt"
    return True


def udp_sock():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("127.0.0.1", 0))
    return s


def wait_answer(port, what):
    """The first datagrams may meet a port still opening: ask until one is answered."""
    s = udp_sock()
    try:
        nt.wait_for(lambda: ask(s, port, b"ping", 0.5), 15, what)
    finally:
        s.close()


def test_udp_many_datagrams_every_byte_checked(server, make_client, udpsvc):
    c = make_client("c")
    port = c.udp_add(udpsvc.port, name="dns")
    wait_answer(port, "the UDP port to answer")
    # the probe counted both ways first: the stats are relayd's of a moment ago
    nt.wait_for(lambda: relay_udp(server)["datagrams_in"] == relay_udp(server)["datagrams_out"]
                >= 1, 15, "the probe in relayd's stats", 0.5)
    before = relay_udp(server)
    socks = [udp_sock() for _ in range(8)]
    window = 16
    sent = answered = 0
    rng = os.urandom(4096)
    t0 = time.monotonic()
    # 10,000 requests from 8 sources, at most `window` unanswered per source
    pending = {s: {} for s in socks}
    done = set()
    seq = 0
    deadline = time.monotonic() + 40
    while (sent < 10000 or any(pending.values())) and time.monotonic() < deadline:
        for s in socks:
            while sent < 10000 and len(pending[s]) < window:
                n = 1 + (seq * 7919) % 1400
                payload = seq.to_bytes(4, "big") + rng[(seq % 2048):(seq % 2048) + n]
                pending[s][seq] = payload
                s.sendto(payload, ("127.0.0.1", port))
                sent += 1
                seq += 1
        r, _, _ = select.select(socks, [], [], 3)
        if not r:
            break  # 3 s without an answer: what is unanswered is lost (never resent)
        for s in r:
            while True:
                try:
                    d = s.recv(65535, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                k = int.from_bytes(d[32:36], "big")
                p = pending[s].pop(k, None)
                assert p is not None, (f"an answer to nothing asked: seq {k}, {len(d)} bytes, "
                                       f"{'answered before' if k in done else 'never asked'}"
                                       f" here, asked by another source: "
                                       f"{any(k in q for q in pending.values())}")
                done.add(k)
                assert d[:32] == hashlib.sha256(p).digest() and d[32:] == p, "answer corrupt"
                answered += 1
    dt = time.monotonic() - t0
    for s in socks:
        s.close()
    lost = sent - answered
    print(f"udp: {sent} sent, {answered} answered in {dt:.2f} s ({answered / dt:.0f}/s), "
          f"{lost} lost")
    assert sent == 10000
    nt.wait_for(lambda: relay_udp(server)["datagrams_out"] - before["datagrams_out"]
                >= answered, 15, "relayd's stats to count the answers", 0.5)
    st = relay_udp(server)
    dropped = sum(st["dropped"].values()) - sum(before["dropped"].values())
    din = st["datagrams_in"] - before["datagrams_in"]
    dout = st["datagrams_out"] - before["datagrams_out"]
    print(f"udp: relayd counted {din} in, {dout} out, {dropped} dropped, "
          f"{st['flows']} flows open")
    # every datagram sent is answered or counted as dropped by the tunnel (loopback: the
    # kernel itself loses none with the buffers above)
    assert sent == answered + dropped, (st, before)
    assert din == sent - dropped and dout == answered, (st, before)
    # several sources: several flows reached the service (one per public source)
    assert len(udpsvc.sources) >= 8


def test_udp_idle_flow_expires_and_comes_back(server, make_client, udpsvc):
    c = make_client("c")
    port = c.udp_add(udpsvc.port, name="dns")
    wait_answer(port, "the UDP port to answer")
    s = udp_sock()
    try:
        assert ask(s, port, b"first")
        svc_sources = set(udpsvc.sources)
        before = relay_udp(server)
        # idle_timeout = 2s: the flow ends (EOF both ways), the client closes its socket
        time.sleep(4)
        nt.wait_for(lambda: relay_udp(server)["flows_expired"] > before["flows_expired"],
                    15, "the expired flow in relayd's stats", 0.5)
        # the same source again: a new flow, so a new socket at the client
        assert ask(s, port, b"second")
        assert udpsvc.sources - svc_sources, "no new flow after the idle timeout"
        # the expired flow's record: kind udp, the source, reason idle
        src_port = s.getsockname()[1]

        def idle_record():
            st, body = server.api("GET", f"/api/v1/connections?tunnel={c.tunnel_id}")
            assert st == 200, body
            return [r for r in body["items"] if r["kind"] == "udp" and
                    r["src_port"] == src_port and r["reason"] == "idle"]

        nt.wait_for(idle_record, 15, "the expired flow's record (kind udp, reason idle)", 0.5)
        r = idle_record()[0]
        assert r["port"] == port and r["bytes_in"] == len(b"first"), r
    finally:
        s.close()


def test_udp_max_flows_and_other_tunnels(server, make_client, udpsvc):
    a = make_client("a")
    b = make_client("b")
    pa = a.udp_add(udpsvc.port, name="dns")
    pb = b.udp_add(udpsvc.port, name="dns")
    wait_answer(pa, "a's UDP port to answer")
    wait_answer(pb, "b's UDP port to answer")
    time.sleep(3)  # the probes' flows expire (idle_timeout = 2s)
    before = relay_udp(server)
    socks = [udp_sock() for _ in range(16)]
    try:
        # all at once: a flow that idles out while others wait would free a slot
        for i, s in enumerate(socks):
            s.sendto(b"q%d" % i, ("127.0.0.1", pa))
            time.sleep(0.02)  # in order: the first 12 sources are the ones with flows
        ok = []
        for i, s in enumerate(socks):
            s.settimeout(1.0 if not ok or ok[-1] else 0.2)
            try:
                d, _ = s.recvfrom(65535)
                assert d[32:] == b"q%d" % i
                ok.append(True)
            except socket.timeout:
                ok.append(False)
        # max_flows = 12: the first 12 sources have flows, the rest are dropped
        assert sum(ok) == 12, ok
        assert all(ok[:12]) and not any(ok[12:]), ok
        # the other tunnel is not touched by a's cap
        s = udp_sock()
        for i in range(20):
            assert ask(s, pb, b"b%d" % i)
        s.close()
        nt.wait_for(lambda: relay_udp(server)["dropped"]["flows"]
                    >= before["dropped"]["flows"] + 4, 15, "flows drops counted", 0.5)
        # navectl status shows the same counters (--json and the text)
        nt.wait_for(lambda: server.navectl("status", json=True)["relay"]["udp"]["dropped"]
                    ["flows"] >= before["dropped"]["flows"] + 4, 15, "status's udp drops", 0.5)
        rel = server.navectl("status", json=True)["relay"]
        assert rel["udp"]["flows"] >= 1 and rel["udp"]["datagrams_in"] >= 12, rel["udp"]
        assert rel["socks"] == {"conns": 0, "refused": {"auth": 0, "locked": 0, "limit": 0,
                                                        "method": 0, "handshake": 0}}, rel
        rc, out, err = server.navectl("status")
        assert rc == 0, err
        line = next(ln for ln in out.splitlines() if ln.strip().startswith("udp:"))
        assert " flows (" in line and "datagrams" in line and " flows," in line, line
    finally:
        for s in socks:
            s.close()


def test_udp_reload_applies_max_flows_live(server, make_client, udpsvc):
    """[udp] is live on reload: max_flows lowered from 12 to 2 holds for the next
    new flows, without a restart and without the tunnel reconnecting."""
    a = make_client("a")
    pa = a.udp_add(udpsvc.port, name="dns")
    wait_answer(pa, "a's UDP port to answer")
    time.sleep(3)  # the probe's flow expires (idle_timeout = 2s)
    text = server.ini.read_text()
    assert "max_flows = 12\n" in text
    server.ini.write_text(text.replace("max_flows = 12\n", "max_flows = 2\n"))
    n = server.relayd.output().count(f"reload: {server.ini} read")
    rc, out, err = server.navectl("reload")
    assert rc == 0, err
    nt.wait_for(lambda: server.relayd.output().count(f"reload: {server.ini} read") > n, 30,
                "relayd's reload")
    assert "wait for a restart" not in server.relayd.output()
    assert "max_flows" in server.relayd.output().split(f"reload: {server.ini} read")[-1]
    socks = [udp_sock() for _ in range(4)]
    try:
        for i, s in enumerate(socks):
            s.sendto(b"r%d" % i, ("127.0.0.1", pa))
            time.sleep(0.02)
        ok = []
        for i, s in enumerate(socks):
            s.settimeout(1.0 if not ok or ok[-1] else 0.3)
            try:
                d, _ = s.recvfrom(65535)
                assert d[32:] == b"r%d" % i
                ok.append(True)
            except socket.timeout:
                ok.append(False)
        assert ok == [True, True, False, False], ok
        assert nt.wait_for(lambda: "max_flows (2) flows open" in server.relayd.output(), 10,
                           "the new cap in relayd's log")
    finally:
        for s in socks:
            s.close()


def test_udp_garbage_and_rm_releases_port(server, make_client, udpsvc):
    c = make_client("c")
    port = c.udp_add(udpsvc.port, name="dns")
    wait_answer(port, "the UDP port to answer")
    s = udp_sock()
    try:
        s.sendto(b"", ("127.0.0.1", port))  # empty: dropped (a chunk of 0 would be EOF)
        # the largest IPv4 datagram crosses whole (its answer would not fit one: none)
        s.sendto(os.urandom(65507), ("127.0.0.1", port))
        nt.wait_for(lambda: udpsvc.count >= 2, 10, "the largest datagram at the service")
        for i in range(50):
            assert ask(s, port, os.urandom(1 + i * 97))
    finally:
        s.close()
    ls = c.nave("tunnel", "ls", "--json")
    assert ls.returncode == 0 and '"udp"' in ls.stdout, ls.stdout
    assert port in server.ports(c.tunnel_id)
    assert c.nave("tunnel", "rm", "dns").returncode == 0
    nt.wait_for(lambda: port not in server.ports(c.tunnel_id), 15, "the port released")
    s = udp_sock()
    try:
        assert not ask(s, port, b"gone", 1.0)
    finally:
        s.close()
    assert c.proc.alive() and server.relayd.alive()


def test_udp_tunnel_offline_drops_counted(server, make_client, udpsvc):
    c = make_client("c")
    port = c.udp_add(udpsvc.port, name="dns")
    wait_answer(port, "the UDP port to answer")
    c.stop()
    # the port stays the tunnel's while it is away: its datagrams are dropped, counted
    nt.wait_for(lambda: port in server.ports(c.tunnel_id), 5, "the port kept")
    before = relay_udp(server)
    s = udp_sock()
    try:
        for i in range(5):
            s.sendto(b"away%d" % i, ("127.0.0.1", port))
        nt.wait_for(lambda: relay_udp(server)["dropped"]["offline"]
                    >= before["dropped"]["offline"] + 5, 15, "offline drops counted", 0.5)
        c.start()
        wait_answer(port, "the port to answer again once the tunnel is back")
    finally:
        s.close()


def test_udp_requests_by_hand_refused_with_a_reason(server):
    """udp_add/udp_rm spoken by hand: a bad port or rule name, a port the tunnel does not
    hold, a UDP port released as TCP: each a req_error naming why, on a link that stays up;
    then a good request is granted and released."""
    tok = server.token()
    link = nt.ControlLink(server.https, tok["token"])
    s = link.s
    assert "udp" in link.welcome.get("features", []), link.welcome

    def ask(req, **msg):
        nt.msg_send(s, dict(msg, req=req))
        while True:
            m = nt.msg_recv(s)
            if m.get("req") == req:
                return m

    m = ask(1, type="udp_add", name="dns", port=70000)
    assert m["type"] == "req_error" and m["reason"] == "bad port", m
    m = ask(2, type="udp_add", name="bad name!", port=0)
    assert m["type"] == "req_error" and "bad rule name" in m["reason"], m
    m = ask(3, type="udp_rm", name="dns", port=server.port_min)
    assert m["type"] == "req_error" and "not allocated to this tunnel" in m["reason"], m
    m = ask(4, type="udp_add", name="dns", port=0)
    assert m["type"] == "udp_grant" and m["name"] == "dns", m
    port = m["port"]
    m = ask(5, type="tcp_rm", name="dns", port=port)
    assert m["type"] == "req_error", m
    assert m["reason"] == f"port {port} is a udp port of this tunnel", m
    m = ask(6, type="udp_rm", name="dns", port=port)
    assert m["type"] == "udp_removed" and m["port"] == port, m
    link.close()
    nt.wait_for(lambda: server.ports(tok["tunnel_id"]) == [], 15, "the UDP port released")
    assert server.relayd.alive()

# SPDX-License-Identifier: Apache-2.0
"""Connection records end to end: relayd reports every relayed connection when it
closes (batched conn_records on relay.sock), controld stores them with the rule
they went through and each rule's totals, prunes them by [records] max_rows, and
answers GET /api/v1/connections, /connections/bandwidth, the tunnel's traffic and
navectl connections ls. Exact byte counts through a TCP rule and an HTTP rule, a
reset's reason, a controld that stops reading (relayd keeps forwarding) or is gone
(records dropped and counted), and a stand-in relayd's malformed batches."""
import json
import os
import signal
import socket
import struct
import time

import pytest

import navetest as nt
from test_firewall_ctl import FakeRelay
from test_http import TlsEcho, h_web, http_add, make_cert, tls_connect, wait_routed

RECORD_KEYS = {"id", "tunnel_id", "rule", "kind", "port", "domain", "src", "src_port", "start",
               "start_ms", "duration_ms", "end", "bytes_in", "bytes_out", "reason"}


def records(server, **q):
    qs = "&".join(f"{k}={v}" for k, v in q.items())
    st, body = server.api("GET", "/api/v1/connections" + (f"?{qs}" if qs else ""))
    assert st == 200, body
    return body["items"]


def wait_records(server, n, **q):
    """The newest records of q once there are at least n (relayd sends them within ~1 s)."""
    return nt.wait_for(lambda: (lambda r: r if len(r) >= n else False)(records(server, **q)),
                       15, f"{n} connection record(s) for {q}")


def tcp_exchange(port, n):
    """h_exchange through the tunnel: (source address, source port); the record's
    bytes: in = 8 + n (length word and data), out = n + 64 (two SHA-256 and data)."""
    s = nt.connect(port)
    src = s.getsockname()
    nt.exchange(port, n, sock=s)
    return src


def test_tcp_and_http_records(server, client, services):
    tid = client.wait_online()["tunnel_id"]
    ex = services(nt.h_exchange, "exchange")
    web = services(h_web, "web")
    port = client.tcp_add(ex.port, name="tcpr")
    http_add(client, "rec.example.test", web.port, name="webr")
    wait_routed(server, "rec.example.test")

    before = int(time.time())
    src = tcp_exchange(port, 100000)
    # HTTP: one request, the client's end closed after it; every byte of the answer read
    req = b"GET /bytes/5000 HTTP/1.1\r\nHost: rec.example.test\r\nX-Pad: abc\r\n\r\n"
    h = socket.create_connection(("127.0.0.1", server.http), timeout=nt.IO_TIMEOUT)
    h.settimeout(nt.IO_TIMEOUT)
    hsrc = h.getsockname()
    h.sendall(req)
    h.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        d = h.recv(65536)
        if not d:
            break
        got += d
    h.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and len(body) == 5000, (head, len(body))

    # the records of these two connections, told apart from wait_routed's by their source
    def mine():
        rs = {r["src_port"]: r for r in records(server, tunnel=tid, limit=100)}
        return rs if src[1] in rs and hsrc[1] in rs else False
    rs = nt.wait_for(mine, 15, "both records")
    t, w = rs[src[1]], rs[hsrc[1]]
    assert set(t) == RECORD_KEYS, t
    assert (t["tunnel_id"], t["rule"], t["kind"], t["port"], t["domain"]) == (
        tid, "tcpr", "tcp", port, None), t
    assert t["src"] == src[0], (t, src)
    assert (t["bytes_in"], t["bytes_out"], t["reason"]) == (8 + 100000, 100000 + 64, "done"), t
    assert before - 1 <= t["start"] <= t["end"] <= int(time.time()) + 1, t
    assert t["start"] == t["start_ms"] // 1000 and t["duration_ms"] >= 0, t
    assert (w["rule"], w["kind"], w["port"], w["domain"]) == (
        "webr", "http", server.http, "rec.example.test"), w
    assert w["src"] == hsrc[0], (w, hsrc)
    assert (w["bytes_in"], w["bytes_out"], w["reason"]) == (len(req), len(got), "done"), w
    # newest first (by end), and the filters
    ends = [r["end"] for r in records(server)]
    assert ends == sorted(ends, reverse=True)
    assert [r["rule"] for r in records(server, tunnel=tid, rule="tcpr")] == ["tcpr"]
    assert len(records(server, tunnel=tid, limit=1)) == 1
    assert records(server, tunnel=tid, since=int(time.time()) + 3600) == []
    assert len(records(server, tunnel=tid, since="1h")) == len(records(server, tunnel=tid))
    assert records(server, tunnel="t-000000000000") == []

    # the tunnel's per-rule totals add up every record of the rule
    def totals():
        tr = {x["rule"]: x for x in server.tunnel(tid)["traffic"]}
        allr = records(server, tunnel=tid, limit=1000)
        for rule in ("tcpr", "webr"):
            mine = [r for r in allr if r["rule"] == rule]
            if (tr.get(rule, {}).get("conns"), tr.get(rule, {}).get("bytes_in"),
                    tr.get(rule, {}).get("bytes_out")) != (
                    len(mine), sum(r["bytes_in"] for r in mine),
                    sum(r["bytes_out"] for r in mine)):
                return False
        return tr
    tr = nt.wait_for(totals, 10, "rule totals matching the records")
    assert set(tr["tcpr"]) == {"rule", "bytes_in", "bytes_out", "conns"}
    rc, out, err = server.navectl("tunnels", "show", tid)
    assert rc == 0, err
    line = next(x for x in out.splitlines() if x.split()[:2] == ["tcp", "tcpr"])
    assert str(port) in line and line.split()[-1] == str(tr["tcpr"]["conns"]), out

    # bandwidth buckets: every byte of the tunnel's records in the window, once
    st, bw = server.api("GET", f"/api/v1/connections/bandwidth?tunnel={tid}&since=1h&step=60")
    assert st == 200, bw
    assert set(bw) == {"since", "step", "buckets"} and bw["step"] == 60, bw
    assert bw["since"] % 60 == 0 and 60 <= len(bw["buckets"]) <= 62, bw["since"]
    assert [b["t"] for b in bw["buckets"]] == [bw["since"] + 60 * k
                                               for k in range(len(bw["buckets"]))]
    allr = records(server, tunnel=tid, limit=1000)
    assert sum(b["bytes_in"] for b in bw["buckets"]) == sum(r["bytes_in"] for r in allr)
    assert sum(b["conns"] for b in bw["buckets"]) == len(allr)
    st, bw = server.api("GET", f"/api/v1/connections/bandwidth?tunnel={tid}&rule=tcpr")
    assert st == 200 and sum(b["conns"] for b in bw["buckets"]) == 1, bw
    assert sum(b["bytes_out"] for b in bw["buckets"]) == 100064, bw
    # the per-minute sums (whole minutes) and the records (seconds) agree
    for q in ("since=1h&step=60", "since=1h&step=3600", "since=8d&step=7200"):
        st, bw = server.api("GET", f"/api/v1/connections/bandwidth?tunnel={tid}&rule=tcpr&{q}")
        assert st == 200 and sum(b["bytes_out"] for b in bw["buckets"]) == 100064, (q, bw)
    st, bw = server.api("GET", f"/api/v1/connections/bandwidth?tunnel={tid}&since=1d")
    assert st == 200 and bw["step"] % 60 == 0 and len(bw["buckets"]) <= 62, bw["step"]
    for q, why in (("since=1h", "tunnel is required"),
                   (f"tunnel={tid}&since=600&step=60", "buckets"),
                   (f"tunnel={tid}&step=0", "invalid step"),
                   (f"tunnel={tid}&step=90", "a multiple of 60 from 60 to 2592000"),
                   (f"tunnel={tid}&since=10m&step=30", "a multiple of 60 from 60 to 2592000"),
                   (f"tunnel={tid}&since=8d&step=900", "covers 7 days at most"),
                   (f"tunnel={tid}&since=yesterday", "invalid since")):
        st, body = server.api("GET", f"/api/v1/connections/bandwidth?{q}")
        assert st == 400 and why in body["error"], (q, st, body)

    # navectl: --json is the API's body, the table names the rules
    assert server.navectl("connections", "ls", "--tunnel", tid, "--limit", "5",
                          json=True) == json.loads(json.dumps(
                              server.api("GET", f"/api/v1/connections?tunnel={tid}&limit=5")[1]))
    rc, out, err = server.navectl("connections", "ls", "--tunnel", tid, "--rule", "webr")
    assert rc == 0 and "rec.example.test" in out and "webr" in out and "tcpr" not in out, (out, err)
    rc, _, err = server.navectl("connections", "ls", "--limit", "0")
    assert rc == 2 and "--limit" in err, err
    rc, _, err = server.navectl("connections", "ls", "--since", "soon")
    assert rc == 1 and err.strip().endswith("7d, 2w)") and "\n" not in err.strip(), err


def test_https_passthrough_record(server, client, tmp_path):
    tid = client.wait_online()["tunnel_id"]
    cert, key, _ = make_cert(tmp_path, "pass.records.test")
    svc = TlsEcho(cert, key)
    try:
        http_add(client, "pass.records.test", svc.port, "--tls-passthrough", name="tlsr")

        def up():
            try:
                tls_connect(server, "pass.records.test").close()
                return True
            except OSError:
                return False
        nt.wait_for(up, 10, "pass.records.test routed")
        s = tls_connect(server, "pass.records.test")
        src = s.getsockname()
        data = os.urandom(50000)
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            d = s.recv(65536)
            assert d
            got += d
        assert got == data
        s.close()
    finally:
        svc.close()

    def mine():
        r = [x for x in records(server, tunnel=tid, rule="tlsr", limit=100)
             if x["src_port"] == src[1]]
        return r[0] if r else False
    r = nt.wait_for(mine, 15, "the passthrough connection's record")
    assert (r["kind"], r["domain"], r["port"], r["src"]) == (
        "https", "pass.records.test", server.https, src[0]), r
    # TLS records around the 50,000 bytes each way (the edge never saw plaintext)
    assert 50000 < r["bytes_in"] < 60000 and 50000 < r["bytes_out"] < 60000, r


def test_bad_queries(server):
    for q, why in (("limit=0", "invalid limit"), ("limit=1001", "invalid limit"),
                   ("limit=x", "invalid limit"), ("since=-5", "invalid since"),
                   ("since=5y", "invalid since"), ("rule=a%20b", "invalid rule"),
                   ("tunnel=a/b", "invalid tunnel")):
        st, body = server.api("GET", f"/api/v1/connections?{q}")
        assert st == 400 and why in body["error"], (q, st, body)


def h_reset_after(n):
    """Sends n bytes, waits for one byte back, then resets (SO_LINGER 0)."""
    def handler(c, svc):
        c.sendall(b"r" * n)
        nt.recv_exact(c, 1)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    return handler


def test_reset_reason(server, client, services):
    tid = client.wait_online()["tunnel_id"]
    s = services(h_reset_after(777), "resetter")
    port = client.tcp_add(s.port, name="rst")
    c = nt.connect(port)
    assert nt.recv_exact(c, 777) == b"r" * 777
    c.sendall(b"!")
    with pytest.raises((ConnectionResetError, nt.Failure, EOFError)):
        while c.recv(1):
            pass
        raise EOFError
    c.close()
    r = wait_records(server, 1, tunnel=tid, rule="rst")[0]
    assert (r["reason"], r["bytes_in"], r["bytes_out"]) == ("reset", 1, 777), r


@pytest.mark.parametrize("server_ini", ["[records]\nmax_rows = 5\n"])
def test_retention_by_max_rows(server, client, services):
    tid = client.wait_online()["tunnel_id"]
    s = services(nt.h_echo, "echo")
    port = client.tcp_add(s.port, name="many")
    for i in range(12):
        with nt.connect(port) as c:
            c.sendall(b"x" * (i + 1))
            c.shutdown(socket.SHUT_WR)
            assert nt.recv_exact(c, i + 1) == b"x" * (i + 1)
    # every record counted in the totals, only the newest 5 kept
    nt.wait_for(lambda: server.navectl("status", json=True)["records"]["stored"] >= 12, 15,
                "12 records stored")

    def pruned():
        r = records(server, tunnel=tid, limit=1000)
        return r if len(r) <= 5 else False
    kept = nt.wait_for(pruned, 10, "pruning to max_rows")
    assert sorted(r["bytes_in"] for r in kept) == [8, 9, 10, 11, 12], kept
    tr = {x["rule"]: x for x in server.tunnel(tid)["traffic"]}
    assert (tr["many"]["conns"], tr["many"]["bytes_in"]) == (12, sum(range(1, 13))), tr


def test_relayd_never_waits_on_controld(server, client, services):
    tid = client.wait_online()["tunnel_id"]
    ex = services(nt.h_exchange, "exchange")
    port = client.tcp_add(ex.port, name="busy")
    nt.exchange(port, 1000)
    wait_records(server, 1, tunnel=tid)
    # controld stopped (not reading): connections keep flowing through relayd
    os.kill(server.controld.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        for _ in range(20):
            nt.exchange(port, 20000)
        assert time.monotonic() - t0 < 30
        time.sleep(1.5)  # a batch is due: relayd queues it (bounded) and goes on
        for _ in range(5):
            nt.exchange(port, 20000)
    finally:
        os.kill(server.controld.pid, signal.SIGCONT)
    # what relayd queued while controld slept arrives now
    nt.wait_for(lambda: len(records(server, tunnel=tid, rule="busy", limit=100)) >= 26, 15,
                "the records queued while controld was stopped")
    # controld gone: records are dropped, counted, and shown once it is back
    server.stop_controld()
    for _ in range(10):
        nt.exchange(port, 5000)
    time.sleep(1.5)
    server.start_controld()
    server.wait_relay_connected()

    def dropped():
        relay = server.navectl("status", json=True)["relay"]
        return relay if (relay.get("records_dropped") or 0) >= 10 else False
    relay = nt.wait_for(dropped, 15, "records_dropped counted")
    assert relay["records_sent"] >= 26, relay
    rc, out, _ = server.navectl("status")
    assert rc == 0 and "records dropped" in out, out


def relay_counts(server):
    relay = server.navectl("status", json=True)["relay"]
    return relay.get("records_sent") or 0, relay.get("records_dropped") or 0


def test_every_record_counted_once_when_controld_dies(server, client, services):
    """Records relayd queued for a controld that stops reading and then dies are counted
    as dropped, not as sent: sent + dropped is every connection relayed."""
    client.wait_online()
    ex = services(nt.h_echo, "echo")
    port = client.tcp_add(ex.port, name="many")
    os.kill(server.controld.pid, signal.SIGSTOP)
    n = 0
    try:
        # enough records to fill the socket to controld and queue more behind it
        t0 = time.monotonic()
        while n < 3000 and time.monotonic() - t0 < 20:
            with nt.connect(port) as s:  # one round trip: no more than one open at a time
                s.sendall(b"x")
                assert s.recv(1) == b"x"
            n += 1
        time.sleep(2)  # the last batch is due, and queued
    finally:
        os.kill(server.controld.pid, signal.SIGKILL)
        os.kill(server.controld.pid, signal.SIGCONT)
    server.controld.proc.wait()
    server.start_controld()
    server.wait_relay_connected()

    def all_counted():
        sent, dropped = relay_counts(server)
        return (sent, dropped) if sent + dropped >= n else False
    sent, dropped = nt.wait_for(all_counted, 20, f"{n} records counted")
    assert sent + dropped == n, (sent, dropped, n)
    assert dropped > 0, (sent, dropped)  # what was queued behind the full socket
    assert "connection record(s) queued for nave-controld dropped" in server.relayd.output()


def test_a_connection_open_at_shutdown_leaves_a_record(server, client, services):
    """A relayed connection still open when relayd's drain ends: recorded with reason
    shutdown, and stored before relayd exits."""
    tid = client.wait_online()["tunnel_id"]
    ex = services(nt.h_echo, "echo")
    port = client.tcp_add(ex.port, name="held")
    s = nt.connect(port)
    s.sendall(b"ping")
    assert s.recv(4) == b"ping"
    server.stop_relayd()  # drains for 5 s, the connection stays open all along
    s.close()
    r = wait_records(server, 1, tunnel=tid, rule="held")
    assert r[0]["reason"] == "shutdown" and r[0]["bytes_in"] == 4, r
    server.start_relayd()


# ---------------------------------------------------------------- a stand-in relayd


@pytest.fixture
def controld_only(tmp_path, procs):
    srv = nt.Server(tmp_path, procs)
    srv.start_controld()
    yield srv
    srv.stop()


def good(tid, **kw):
    r = {"tunnel_id": tid, "kind": "tcp", "port": 23456, "src": "192.0.2.7", "src_port": 40000,
         "start_ms": int(time.time() * 1000) - 1500, "duration_ms": 1500, "bytes_in": 10,
         "bytes_out": 20, "reason": "done"}
    r.update(kw)
    return r


def test_stand_in_relayd_udp_records(controld_only):
    """kind "udp": a UDP flow's record, its rule resolved by its UDP port, reason "idle"."""
    srv = controld_only
    tid = srv.token()["tunnel_id"]
    st, p = srv.api("POST", "/api/v1/ports", {"tunnel": tid, "transport": "udp", "rule": "dns"})
    assert st == 201 and p["transport"] == "udp", p
    r = FakeRelay(srv)
    try:
        r.hello()
        r.send({"type": "conn_records", "records": [
            good(tid, kind="udp", port=p["port"], src="198.51.100.9", src_port=5353,
                 bytes_in=300, bytes_out=900, reason="idle"),
            good(tid, kind="udp", port=p["port"] + 1, reason="done")]})
        got = wait_records(srv, 2, tunnel=tid)
    finally:
        r.close()
    by_port = {g["port"]: g for g in got}
    flow = by_port[p["port"]]
    assert (flow["kind"], flow["rule"], flow["src"], flow["src_port"], flow["bytes_in"],
            flow["bytes_out"], flow["reason"], flow["domain"]) == (
        "udp", "dns", "198.51.100.9", 5353, 300, 900, "idle", None), flow
    assert by_port[p["port"] + 1]["rule"] == "", by_port
    assert [g["kind"] for g in records(srv, tunnel=tid, rule="dns")] == ["udp"]


def test_stand_in_relayd_bad_records(controld_only):
    srv = controld_only
    tid = srv.token()["tunnel_id"]
    r = FakeRelay(srv)
    try:
        r.hello()
        bad = [
            good(tid, src="not-an-address"), good(tid, bytes_in=-1),
            good(tid, bytes_out=(1 << 62) + 1), good(tid, reason="exploded"),
            good(tid, kind="sctp"), good(tid, port=0), good(tid, port="80"),
            good(tid, reason="idle"), good(tid, kind="udp", domain="a.example.test"),
            good(tid, domain="a.example.test"), good(tid, kind="http", domain="bad domain"),
            good(tid, tunnel_id="t-" + "x" * 40), good(tid, tunnel_id="a;b"),
            good(tid, start_ms="now"), good(tid, duration_ms=10 ** 15), "a string", 7, None,
            {k: v for k, v in good(tid).items() if k != "src_port"},
            good("t-000000000000"),  # well formed, of a tunnel the store never knew
        ]
        r.send({"type": "conn_records",
                "records": [good(tid, bytes_in=4242)] + bad
                + [good(tid, kind="https", domain="Mixed.Example.TEST", port=8443,
                        src="2001:db8::1", reason="idle_timeout")]})

        def stored():
            got = records(srv, tunnel=tid)
            return got if len(got) == 2 else False
        got = nt.wait_for(stored, 10, "the two good records stored")
        assert {g["bytes_in"] for g in got} == {4242, 10}
        https = next(g for g in got if g["kind"] == "https")
        assert (https["domain"], https["src"], https["reason"]) == (
            "mixed.example.test", "2001:db8::1", "idle_timeout"), https
        st = srv.navectl("status", json=True)["records"]
        assert st == {"received": 2 + len(bad), "stored": 2, "refused": len(bad),
                      "failed": 0}, st
        assert "malformed connection record(s), dropped: records[1]: src must be an IPv4" \
            in srv.controld.output()
        # one bad record did not close the link: a good batch still lands
        r.send({"type": "conn_records", "records": [good(tid, bytes_in=99)]})
        nt.wait_for(lambda: len(records(srv, tunnel=tid)) == 3, 10, "a later batch")
        # a malformed message does: the link is closed with the reason logged
        r.send({"type": "conn_records", "records": {"0": good(tid)}})
        with pytest.raises((EOFError, ConnectionResetError, nt.Failure, struct.error)):
            r.recv()
            r.recv()
        nt.wait_for(lambda: 'conn_records: "records" is not an array' in srv.controld.output(),
                    10, "the reason logged")
    finally:
        r.close()
    # controld goes on: a new relayd may connect, the API answers
    r = FakeRelay(srv)
    try:
        r.hello()
        r.send({"type": "conn_records", "records": [0] * 1025})
        nt.wait_for(lambda: "more than 1024 in one message" in srv.controld.output(), 10,
                    "an oversized batch refused")
    finally:
        r.close()
    assert srv.controld.alive()
    assert len(records(srv, tunnel=tid)) == 3

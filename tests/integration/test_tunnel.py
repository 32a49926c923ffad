# SPDX-License-Identifier: Apache-2.0
"""The TCP tunnel end to end: real nave-controld, nave-relayd and nave
processes on loopback, a local service in Python threads, and every byte
checked with SHA-256 in both directions."""
import concurrent.futures
import signal
import time

import pytest

import navetest as nt
from navetest import KiB, MiB


@pytest.mark.parametrize(
    "size",
    [1, 1000, 64 * KiB + 1, 1 * MiB, 16 * MiB, 64 * MiB],
    ids=["1B", "1000B", "64KiB+1", "1MiB", "16MiB", "64MiB"],
)
def test_data_both_ways(server, client, svc, size):
    port = client.tcp_add(svc.port)
    assert server.port_min <= port <= server.port_max
    assert port in server.ports(client.tunnel_id)
    nt.exchange(port, size)
    kind, n, extra = svc.results.get(timeout=nt.IO_TIMEOUT)
    assert (kind, n, extra) == ("exchange", size, 0)
    assert svc.errors == []


def test_many_concurrent_connections(server, client, svc):
    port = client.tcp_add(svc.port)
    n = 100
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
        futs = [ex.submit(nt.exchange, port, 64 * KiB) for _ in range(n)]
        done = [f.result(timeout=300) for f in futs]
    assert done == [True] * n
    results = [svc.results.get(timeout=nt.IO_TIMEOUT) for _ in range(n)]
    assert all(r == ("exchange", 64 * KiB, 0) for r in results)
    assert svc.errors == []
    assert svc.accepted == n


HALF_CLOSE_SIZES = pytest.mark.parametrize("size", [0, 1, 300 * KiB], ids=["0B", "1B", "300KiB"])


@HALF_CLOSE_SIZES
def test_half_close_public_side_first(server, client, services, size):
    reply = 256 * KiB + 7
    svc = services(nt.h_eof_reply(reply), "eof_reply")
    port = client.tcp_add(svc.port)
    for _ in range(3):
        # the service only answers after it saw our EOF
        sent = nt.half_close_public_first(port, size, reply)
        assert svc.results.get(timeout=nt.IO_TIMEOUT) == ("eof_reply", size, sent)
    assert svc.errors == []


@HALF_CLOSE_SIZES
def test_half_close_service_side_first(server, client, services, size):
    greet = 200 * KiB + 3
    svc = services(nt.h_greet(greet), "greet")
    port = client.tcp_add(svc.port)
    for _ in range(3):
        # the service half-closes first: we see its EOF and can still send
        nt.half_close_service_first(port, svc, greet, size)
    assert svc.errors == []


def test_link_reuse(server, client, svc):
    port = client.tcp_add(svc.port)
    n = 200
    for i in range(n):
        nt.exchange(port, 100 + i)
    # each handler reports after the peer's EOF: the order may differ
    results = sorted(svc.results.get(timeout=nt.IO_TIMEOUT) for _ in range(n))
    assert results == [("exchange", 100 + i, 0) for i in range(n)]

    st = nt.wait_for(
        lambda: (lambda s: s if s["conns_total"] >= n and s["conns"] == 0 else False)(
            client.status()
        ),
        30,
        "the client to count the connections",
    )
    assert st["conns_total"] == n, st
    assert st["links"] <= 12, f"links were not reused: {st}"
    assert svc.accepted == n


def test_relayd_restart(server, client, svc):
    port = client.tcp_add(svc.port, name="web")
    nt.exchange(port, 64 * KiB)
    server.restart_relayd()
    # the client notices and reconnects on its own
    client.wait_online()
    nt.wait_for(
        lambda: server.tunnel(client.tunnel_id)["state"] == "online", 60, "tunnel online again"
    )

    def passes():
        try:
            return nt.exchange(port, 64 * KiB)
        except (OSError, nt.Failure):
            return False

    nt.wait_for(passes, 60, f"port {port} to work again after the relayd restart", 0.5)
    nt.exchange(port, 1 * MiB)
    assert server.ports(client.tunnel_id) == [port]
    assert [r["port"] for r in client.status()["rules"]] == [port]


def test_controld_restart_during_transfer(server, client, svc):
    port = client.tcp_add(svc.port)
    restarted = []

    def midway():
        server.restart_controld()
        restarted.append(True)

    nt.exchange(port, 64 * MiB, midway=midway)
    assert restarted == [True]
    assert svc.results.get(timeout=nt.IO_TIMEOUT) == ("exchange", 64 * MiB, 0)
    # everything still works with the new controld
    nt.wait_for(
        lambda: server.tunnel(client.tunnel_id)["state"] == "online", 60, "tunnel online"
    )
    nt.exchange(port, 1 * MiB)
    assert client.proc.alive()


def _two_tunnels(make_client, services):
    a = make_client("a")
    b = make_client("b")
    sa = services(nt.h_exchange, "a")
    sb = services(nt.h_exchange, "b")
    pa = a.tcp_add(sa.port)
    pb = b.tcp_add(sb.port)
    assert a.tunnel_id != b.tunnel_id
    nt.exchange(pa, 64 * KiB)
    nt.exchange(pb, 64 * KiB)
    return a, b, pa, pb


def test_tunnel_shutdown(server, make_client, services):
    a, b, pa, pb = _two_tunnels(make_client, services)
    server.navectl("tunnels", "shutdown", a.tunnel_id, json=True)
    rc = a.wait_exit(15)
    assert rc == 0, nt.tail(a.proc.output())
    nt.wait_port_closed(pa)
    nt.wait_for(
        lambda: server.tunnel(a.tunnel_id)["state"] != "online", 30, "tunnel a offline"
    )
    nt.exchange(pb, 1 * MiB)
    assert b.proc.alive()
    assert b.status()["state"] == "online"


def test_token_revoke(server, make_client, services):
    a, b, pa, pb = _two_tunnels(make_client, services)
    token_id = server.tunnel(a.tunnel_id)["token_id"]
    server.navectl("tokens", "revoke", token_id, json=True)
    rc = a.wait_exit(15)
    out = a.proc.output()
    assert rc == 1, nt.tail(out)
    lines = [l for l in nt.user_lines(out) if not l.startswith("==== ")]
    assert len(lines) == 1 and lines[0].startswith("nave: "), lines
    assert "revoked" in lines[0], lines
    nt.wait_port_closed(pa)
    nt.exchange(pb, 1 * MiB)
    assert b.proc.alive()
    assert b.status()["state"] == "online"


def test_tunnel_rm_releases_port(server, client, svc):
    keep = client.tcp_add(svc.port, name="keep")
    port = client.tcp_add(svc.port, name="gone")
    nt.exchange(port, 1000)
    assert sorted(server.ports(client.tunnel_id)) == sorted([keep, port])
    p = client.nave("tunnel", "rm", "gone")
    assert p.returncode == 0, p.stderr
    nt.wait_for(lambda: port not in server.ports(), 30, f"port {port} released")
    assert server.ports(client.tunnel_id) == [keep]
    nt.wait_port_closed(port)
    assert [r["name"] for r in client.status()["rules"]] == ["keep"]
    nt.exchange(keep, 64 * KiB)


def test_heartbeat_offline_and_back(server, client, svc):
    port = client.tcp_add(svc.port)
    nt.exchange(port, 1000)
    tid = client.tunnel_id
    assert server.tunnel(tid)["state"] == "online"

    client.proc.signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        nt.wait_for(
            lambda: server.tunnel(tid)["state"] == "offline", 20, "tunnel offline after SIGSTOP",
            0.2,
        )
        took = time.monotonic() - t0
        # heartbeat = 1s, three missed: offline after ~3 s (allow slack for ASan)
        assert took <= 10, f"offline only after {took:.1f} s"
        nt.wait_port_closed(port)
    finally:
        client.proc.signal(signal.SIGCONT)

    client.wait_online()
    nt.wait_for(lambda: server.tunnel(tid)["state"] == "online", 60, "tunnel online again")
    assert client.tunnel_id == tid

    def passes():
        try:
            return nt.exchange(port, 64 * KiB)
        except (OSError, nt.Failure):
            return False

    nt.wait_for(passes, 60, f"port {port} to work again after SIGCONT", 0.5)
    assert server.ports(tid) == [port]

# SPDX-License-Identifier: Apache-2.0
"""Rule and token state stays true on the server: rules removed while the
client was stopped are released when it connects again (ports reserved by an
administrator stay), and a revoked token's tunnel holds no ports."""
import pytest

import navetest as nt
from navetest import KiB


@pytest.fixture
def server_ini():
    """Tunnels may hold 3 ports here (so a leftover port is felt at once)."""
    return "[ports]\nmax_per_tunnel = 3\n"


def test_rules_removed_while_stopped_are_released(server, make_client, services):
    c = make_client("c")
    s = services(nt.h_exchange, "svc")
    p1 = c.tcp_add(s.port, name="r1")
    p2 = c.tcp_add(s.port, name="r2")
    reserved = server.navectl("ports", "allocate", "--tunnel", c.tunnel_id, json=True)["port"]
    assert sorted(server.ports(c.tunnel_id)) == sorted([p1, p2, reserved])
    c.stop()
    p = c.nave("tunnel", "rm", "r2")
    assert p.returncode == 0, p.stderr
    c.start()
    # r2's port goes back to the pool; r1 and the administrator's reservation stay
    nt.wait_for(lambda: sorted(server.ports(c.tunnel_id)) == sorted([p1, reserved]), 30,
                "the server to drop the removed rule's port")
    nt.wait_port_closed(p2)
    nt.exchange(p1, 16 * KiB)
    # the tunnel is below max_per_tunnel again: a new rule fits
    p3 = c.tcp_add(s.port, name="r3")
    nt.exchange(p3, 16 * KiB)
    log = c.proc.output()
    assert f"public port {p2} released" in log, nt.tail(log)


def test_rules_added_and_removed_while_stopped(server, make_client, services):
    c = make_client("c")
    s = services(nt.h_exchange, "svc")
    p1 = c.tcp_add(s.port, name="old")
    c.stop()
    assert c.nave("tunnel", "rm", "old").returncode == 0
    assert c.tcp_add_raw(s.port, name="new").returncode == 0
    c.start()
    def rules():
        items = server.navectl("ports", "ls", "--tunnel", c.tunnel_id, json=True)["items"]
        return [i["rule"] for i in items]

    nt.wait_for(lambda: rules() == ["new"], 30, "old released, new granted")
    rules = {r["name"]: r for r in c.status()["rules"]}
    assert list(rules) == ["new"] and rules["new"]["state"] == "active", rules
    nt.exchange(rules["new"]["port"], 16 * KiB)


def test_revoked_token_releases_its_ports(server, make_client, services):
    a = make_client("a")
    b = make_client("b")
    s = services(nt.h_exchange, "svc")
    pa = [a.tcp_add(s.port, name=n) for n in ("x", "y")]
    pb = b.tcp_add(s.port)
    server.navectl("tokens", "revoke", server.tunnel(a.tunnel_id)["token_id"], json=True)
    assert a.wait_exit(15) == 1
    nt.wait_for(lambda: server.ports(a.tunnel_id) == [], 30, "a's ports released")
    for port in pa:
        assert nt.wait_port_closed(port) in ("refused", "reset")
    # they are free for others now
    assert b.tcp_add(s.port, port=pa[0], name="took") == pa[0]
    nt.exchange(pa[0], 16 * KiB)
    nt.exchange(pb, 16 * KiB)
    assert server.tunnel(a.tunnel_id)["ports"] == []


def test_requests_racing_a_deauth_get_no_port(server):
    """tcp_add right after deauth on the same link: the revoked tunnel holds nothing."""
    tok = server.token()
    link = nt.ControlLink(server.https, tok["token"])
    s = link.s
    for i, msg in enumerate([{"type": "tcp_add", "name": "a", "port": 0},
                             {"type": "tcp_add", "name": "b", "port": 0},
                             {"type": "deauth"},
                             {"type": "tcp_add", "name": "c", "port": 0},
                             {"type": "tcp_add", "name": "d", "port": 0}]):
        nt.msg_send(s, dict(msg, req=i + 1))
    seen = []
    try:
        while True:
            seen.append(nt.msg_recv(s)["type"])
    except (nt.Failure, OSError, ValueError):
        pass
    link.close()
    assert "deauthed" in seen, seen
    nt.wait_for(lambda: server.ports(tok["tunnel_id"]) == [], 30, "no port for the revoked tunnel")
    status, resp = server.api("POST", "/api/v1/ports", {"tunnel": tok["tunnel_id"]})
    assert status == 409 and "revoked" in resp["error"], (status, resp)


def test_resync_closes_ports_released_while_apart(server, make_client, services):
    import sqlite3

    c = make_client("c")
    s = services(nt.h_exchange, "svc")
    keep = c.tcp_add(s.port, name="keep")
    gone = c.tcp_add(s.port, name="gone")
    server.stop_controld()
    db = sqlite3.connect(server.dir / "var" / "nave.db")
    db.execute("DELETE FROM ports WHERE port = ?", (gone,))
    db.commit()
    db.close()
    server.start_controld()
    server.wait_relay_connected()
    nt.wait_port_closed(gone)
    nt.exchange(keep, 16 * KiB)

# SPDX-License-Identifier: Apache-2.0
"""Refusals and hostile input: bad credentials, garbage on the tunnel port,
malformed frames on authenticated links, port limits, bad config files. In
every case the refusal is exact (exit status, one line with the reason) and
the daemons stay up with an existing tunnel still passing byte-exact data."""
import os
import re
import socket
import ssl
import struct
import time

import pytest

import navetest as nt
from navetest import KiB, MiB


def one_line(p, *words):
    """Exit 1 and exactly one 'nave: reason' line on stderr containing words."""
    assert p.returncode == 1, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and p.stderr.endswith("\n"), p.stderr
    assert lines[0].startswith("nave: ") and len(lines[0]) > len("nave: "), lines
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def still_fine(server, client, port):
    assert server.relayd.alive(), nt.tail(server.relayd.output())
    assert server.controld.alive(), nt.tail(server.controld.output())
    nt.exchange(port, 1 * MiB)
    assert client.status()["state"] == "online"


# ---------------------------------------------------------------- credentials


def test_configure_wrong_registration(server):
    c = nt.Client(server, server.dir.parent, [], "wrong")
    p = c.nave(
        "configure", "--server", f"127.0.0.1:{server.https}",
        "--registration", "nvr_0badc0de_" + "0" * 48, "--fingerprint", server.fingerprint(),
    )
    one_line(p, "registration")
    assert "invalid" in p.stderr


def test_configure_disabled_registration(server):
    tok = server.registration()
    reg_id = re.match(r"^nvr_([0-9a-f]{8})_", tok).group(1)
    server.navectl("registration", "disable", reg_id, json=True)
    c = nt.Client(server, server.dir.parent, [], "disabled")
    p = c.nave(
        "configure", "--server", f"127.0.0.1:{server.https}",
        "--registration", tok, "--fingerprint", server.fingerprint(),
    )
    one_line(p, "disabled")


def test_configure_expired_registration(server):
    rc, out, err = server.navectl("registration", "create", "--expires", "1s")
    assert rc == 0, err
    tok = out.splitlines()[0].strip()
    time.sleep(2.1)  # the token's own lifetime, not a wait for the daemon
    c = nt.Client(server, server.dir.parent, [], "expired")
    p = c.nave(
        "configure", "--server", f"127.0.0.1:{server.https}",
        "--registration", tok, "--fingerprint", server.fingerprint(),
    )
    one_line(p, "expired")


def test_configure_wrong_fingerprint(server):
    c = nt.Client(server, server.dir.parent, [], "fpr")
    p = c.nave(
        "configure", "--server", f"127.0.0.1:{server.https}",
        "--registration", server.registration(), "--fingerprint", "ab" * 32,
    )
    one_line(p)
    assert "certificate" in p.stderr or "fingerprint" in p.stderr, p.stderr


def test_configure_revoked_key(server):
    tok = server.token(id="revoked")
    server.navectl("tokens", "revoke", tok["id"], json=True)
    c = nt.Client(server, server.dir.parent, [], "revkey")
    p = c.nave(
        "configure", "--server", f"127.0.0.1:{server.https}",
        "--key", tok["token"], "--fingerprint", server.fingerprint(),
    )
    one_line(p, "revoked")


def test_configure_key_works(server, make_client, services):
    """The positive twin of the above: a fresh --key configures and runs."""
    tok = server.token(id="keyed")
    c = make_client("keyed", key=tok["token"])
    assert c.tunnel_id == tok["tunnel_id"]
    s = services(nt.h_exchange)
    nt.exchange(c.tcp_add(s.port), 1000)


def test_start_with_revoked_token(server, make_client):
    c = make_client("rev")
    token_id = server.tunnel(c.tunnel_id)["token_id"]
    c.stop()
    server.navectl("tokens", "revoke", token_id, json=True)
    p = nt.run([nt.NAVE, "start", "--config", c.ini], timeout=60)
    assert p.returncode == 1, f"exit {p.returncode}: {p.stderr}"
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1 and lines[0].startswith("nave: "), p.stderr
    assert "revoked" in lines[0], lines


# ---------------------------------------------------------------- garbage on the tunnel port


def client_hello_bytes():
    ctx = nt.tls_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    assert len(hello) > 100 and hello[0] == 0x16
    return hello


def closed_within(s, timeout):
    """How the server ended a plain TCP connection (eof/reset) and how long it took."""
    t0 = time.monotonic()
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return "eof", time.monotonic() - t0
    except (ConnectionResetError, BrokenPipeError):
        return "reset", time.monotonic() - t0
    except socket.timeout:
        raise nt.Failure(f"the server did not close the connection within {timeout:.0f} s")


def test_garbage_on_tunnel_port(server, make_client, services):
    client, port = nt.working_tunnel(make_client, services)

    # random bytes
    with socket.create_connection(("127.0.0.1", server.https), timeout=10) as s:
        s.sendall(os.urandom(4096))
        how, _ = closed_within(s, 30)
    still_fine(server, client, port)

    # an HTTP request
    with socket.create_connection(("127.0.0.1", server.https), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: pytest\r\n\r\n")
        data = b""
        try:
            s.settimeout(30)
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise nt.Failure("an HTTP request on the tunnel port was not closed in 30 s")
        assert b"200 OK" not in data
    still_fine(server, client, port)

    # connect, send nothing, close; and many of them
    for _ in range(50):
        socket.create_connection(("127.0.0.1", server.https), timeout=10).close()
    still_fine(server, client, port)

    # half a ClientHello, then nothing: the server gives up on the handshake
    # and a connection that sends nothing at all is not kept forever either: both wait
    # out the same handshake timeout side by side (each is timed from its own start)
    hello = client_hello_bytes()
    with socket.create_connection(("127.0.0.1", server.https), timeout=10) as half, \
            socket.create_connection(("127.0.0.1", server.https), timeout=10) as silent:
        t0 = time.monotonic()
        half.sendall(hello[: len(hello) // 2])
        how, took = closed_within(half, 40)
        assert took <= 20, f"half handshake closed only after {took:.1f} s"
        closed_within(silent, 40)
        total = time.monotonic() - t0
        assert total <= 20, f"silent connection closed only after {total:.1f} s"
    still_fine(server, client, port)
    log = server.relayd.output()
    assert "tunnel connection" in log or "handshake" in log.lower(), nt.tail(log)


# ---------------------------------------------------------------- malformed frames


def log_since(server, mark):
    return server.relayd.output()[mark:]


def test_control_link_oversized_length(server, make_client, services):
    client, port = nt.working_tunnel(make_client, services)
    link = nt.ControlLink(server.https, server.token(id="x")["token"])
    mark = len(server.relayd.output())
    link.s.sendall(struct.pack(">I", 0xFFFFFF))
    nt.closed_by_peer(link.s, 30)
    link.close()
    still_fine(server, client, port)
    log = log_since(server, mark)
    assert re.search(r"warn nave-relayd: control link .*(length|too large|oversized)", log), log


def test_control_link_invalid_json(server, make_client, services):
    client, port = nt.working_tunnel(make_client, services)
    link = nt.ControlLink(server.https, server.token(id="x")["token"])
    mark = len(server.relayd.output())
    body = b'{"type": "tcp_add", "req": 1, oops'
    link.s.sendall(struct.pack(">I", len(body)) + body)
    nt.closed_by_peer(link.s, 30)
    link.close()
    still_fine(server, client, port)
    log = log_since(server, mark)
    assert re.search(r"warn nave-relayd: control link .*(JSON|malformed)", log), log
    # the tunnel of that link went offline with it
    tid = link.tunnel_id
    nt.wait_for(lambda: server.tunnel(tid)["state"] == "offline", 30, "raw tunnel offline")


def test_data_link_wrong_secret(server, make_client, services):
    client, port = nt.working_tunnel(make_client, services)
    link = nt.ControlLink(server.https, server.token(id="x")["token"]).keepalive()
    try:
        mark = len(server.relayd.output())
        wrong = bytes(b ^ 0x5A for b in link.secret)
        with nt.tls_connect(server.https) as d:
            d.sendall(nt.data_hello(link.tunnel_id, wrong))
            nt.closed_by_peer(d, 30)
        # a tunnel id nobody has, with a random secret
        with nt.tls_connect(server.https) as d:
            d.sendall(nt.data_hello("t-000000000000", os.urandom(32)))
            nt.closed_by_peer(d, 30)
        log = log_since(server, mark)
        assert re.search(r"warn nave-relayd: data link .*(secret|DATA_HELLO)", log), log
        still_fine(server, client, port)
        assert server.tunnel(link.tunnel_id)["state"] == "online"
    finally:
        link.close()


def relay_links(server):
    return server.navectl("status", json=True)["relay"]["links"]


@pytest.mark.parametrize("when", ["with-hello", "after-hello"])
def test_data_link_oversized_chunk(server, make_client, services, when):
    """A correct DATA_HELLO, then a chunk header of 0x7FFFFFFF (> LINK_CHUNK_MAX):
    either in the same write as the hello, or once relayd counts the link."""
    client, port = nt.working_tunnel(make_client, services)
    link = nt.ControlLink(server.https, server.token(id="x")["token"]).keepalive()
    try:
        mark = len(server.relayd.output())
        with nt.tls_connect(server.https) as d:
            hello = nt.data_hello(link.tunnel_id, link.secret)
            if when == "with-hello":
                d.sendall(hello + struct.pack(">I", 0x7FFFFFFF))
            else:
                before = relay_links(server)
                d.sendall(hello)
                nt.wait_for(lambda: relay_links(server) > before, 30,
                            "relayd to count the data link", 0.2)
                d.sendall(struct.pack(">I", 0x7FFFFFFF))
            nt.closed_by_peer(d, 30)
        log = log_since(server, mark)
        assert re.search(r"warn nave-relayd: data link .*(frame|chunk|length)", log), log
        still_fine(server, client, port)
    finally:
        link.close()


# ---------------------------------------------------------------- port allocation limits


def test_port_limits(server, make_client, services):
    s = services(nt.h_exchange)
    a = make_client("a")
    ports = [a.tcp_add(s.port, name=f"r{i}") for i in range(5)]
    assert len(set(ports)) == 5
    assert sorted(server.ports(a.tunnel_id)) == sorted(ports)

    # the 6th with the default max_per_tunnel = 5
    one_line(a.tcp_add_raw(s.port, name="r5"))
    assert sorted(server.ports(a.tunnel_id)) == sorted(ports)
    assert sorted(r["name"] for r in a.status()["rules"]) == [f"r{i}" for i in range(5)]

    b = make_client("b")
    # a port outside the range
    outside = server.port_max + 1 if server.port_max < 29999 else server.port_min - 1
    one_line(b.tcp_add_raw(s.port, port=outside, name="out"))
    # a port another tunnel holds
    one_line(b.tcp_add_raw(s.port, port=ports[0], name="taken"))
    assert server.ports(b.tunnel_id) == []
    assert b.status()["rules"] == []
    # b can still get a port, and everything works
    pb = b.tcp_add(s.port, name="ok")
    assert pb not in ports
    for p in ports + [pb]:
        nt.exchange(p, 1000)


# ---------------------------------------------------------------- config files


def good_ini(tmp, range="24000-24049", extra=""):
    return (
        "[server]\n"
        f"state_dir = {tmp}/var\n"
        f"runtime_dir = {tmp}/run\n"
        "[listen]\n"
        "https = 40123\n"
        "[ports]\n"
        f"range = {range}\n" + extra
    )


@pytest.mark.parametrize(
    "range, extra, line",
    [
        ("24000-24049", "[tunnel]\nheartbeat = 1s\nno_such_key = 1\n", 10),
        ("24000-24049", "[server]\nlog_level = chatty\n", 9),
        ("3000-2000", "", 7),
        ("24000-", "", 7),
        ("0-100", "", 7),
        ("24000-70000", "", 7),
    ],
    ids=["unknown-key", "bad-value", "reversed-range", "half-range", "zero-range", "big-range"],
)
def test_bad_config(tmp_path, range, extra, line):
    for b in (nt.RELAYD, nt.CONTROLD):
        if not b.exists():
            pytest.fail(f"{b} is not built")
    ini = tmp_path / "bad.ini"
    ini.write_text(good_ini(tmp_path, range, extra))
    for cmd in ([nt.RELAYD, "--config", ini, "--check"], [nt.CONTROLD, "--config", ini]):
        p = nt.run(cmd, timeout=30, cwd=tmp_path)
        assert p.returncode == 2, f"{cmd}: exit {p.returncode}: {p.stderr}"
        assert f"{ini}:{line}:" in p.stderr, p.stderr
        assert len(p.stderr.splitlines()) == 1, p.stderr
    assert not (tmp_path / "run" / "control.sock").exists()


def test_check_good_config(tmp_path):
    if not nt.RELAYD.exists():
        pytest.fail(f"{nt.RELAYD} is not built")
    ini = tmp_path / "good.ini"
    ini.write_text(good_ini(tmp_path) + "[tunnel]\nheartbeat = 7s\n")
    p = nt.run([nt.RELAYD, "--config", ini, "--check"], timeout=30, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for want in (
        r"^\[server\]$",
        rf"^state_dir = {re.escape(str(tmp_path))}/var$",
        r"^https = 40123$",
        r"^range = 24000-24049$",
        r"^max_per_tunnel = 5$",
        r"^heartbeat = 7s$",
        r"^address = 127\.0\.0\.1$",
    ):
        assert re.search(want, out, re.M), f"{want} not in:\n{out}"
    # --check does not start anything
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "var" / "tls").exists()


def flooder(port):
    """A connection from 127.0.0.2, the flooding host (clients use 127.0.0.1)."""
    return socket.create_connection(("127.0.0.1", port), timeout=10,
                                    source_address=("127.0.0.2", 0))


def test_flood_on_tunnel_port(server, make_client, services):
    """500 silent connections and 200 garbage writers on the tunnel port at
    once from another host: relayd stays up, the existing tunnel keeps passing
    data meanwhile, and a new client can still register and connect. (The
    flooding host itself is held to max_conns_per_source unfinished
    handshakes per worker; the rest of its connections are closed.)"""
    client, port = nt.working_tunnel(make_client, services)
    silent = []
    try:
        for _ in range(500):
            silent.append(flooder(server.https))
        for i in range(200):
            with flooder(server.https) as g:
                try:
                    g.sendall(os.urandom(512 + i))
                except OSError:
                    pass
        still_fine(server, client, port)
        late = make_client("late")
        s = services(nt.h_exchange, "late")
        nt.exchange(late.tcp_add(s.port), 64 * KiB)
    finally:
        for c in silent:
            c.close()
    still_fine(server, client, port)

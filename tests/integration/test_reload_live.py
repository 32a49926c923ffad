# SPDX-License-Identifier: Apache-2.0
"""A reload (SIGHUP, navectl reload) applies what can apply live, with real
traffic as the proof: a lowered max_conns_per_source refuses the next
connection of a source while the ones it holds keep relaying exact bytes; a
grown [ports] range gives ports in its new part (steering follows), a shrink
that would strand an allocated port is refused naming it while the rest of
the reload applies; [http] max_head, header_timeout, trusted_proxies,
certificates and allowed_domains; idle_timeout for connections accepted
after the reload, not before. Restart-only keys are named in one line."""
import hashlib
import random
import re
import signal
import socket
import time

import pytest

import navetest as nt
from navetest import KiB
from test_http import h_web, http_add, https_request, make_cert, request, wait_routed
from test_limits import connect_from, was_reset


def set_keys(srv, section, **keys):
    """Sets [section] key = value in the server's config file (added when missing)."""
    text = srv.ini.read_text()
    for k, v in keys.items():
        pat = rf"(^\[{section}\]\n(?:(?!\[).*\n)*?){k}\s*=.*\n"
        text, n = re.subn(pat, rf"\g<1>{k} = {v}\n", text, flags=re.M)
        if n:
            continue
        if f"[{section}]\n" in text:
            text = text.replace(f"[{section}]\n", f"[{section}]\n{k} = {v}\n", 1)
        else:
            text += f"[{section}]\n{k} = {v}\n"
    srv.ini.write_text(text)


def reloads(proc, srv):
    return proc.output().count(f"reload: {srv.ini} read")


def sighup(srv):
    """SIGHUP to both daemons; returns once each logged its reload."""
    for p in (srv.controld, srv.relayd):
        n = reloads(p, srv)
        p.signal(signal.SIGHUP)
        nt.wait_for(lambda: reloads(p, srv) > n, 30, f"{p.name}'s reload")


def navectl_reload(srv):
    """navectl reload: controld reloads and asks relayd; returns navectl's output
    once relayd logged its reload too."""
    n = reloads(srv.relayd, srv)
    rc, out, err = srv.navectl("reload")
    assert rc == 0, err
    nt.wait_for(lambda: reloads(srv.relayd, srv) > n, 30, "relayd's reload")
    return out


def log_line(proc, needle):
    lines = [x for x in proc.output().splitlines() if needle in x]
    assert lines, nt.tail(proc.output())
    return lines[-1]


def echo_exact(s, n):
    """n random bytes through an echo connection and back, every byte compared."""
    data = random.randbytes(n)
    for i in range(0, n, 16 * KiB):
        part = data[i:i + 16 * KiB]
        s.sendall(part)
        assert nt.recv_exact(s, len(part)) == part
    return True


def refused(src, port, timeout=10):
    """True when a connection from src is reset (at once or within timeout)."""
    try:
        s = connect_from(src, port)
    except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
        return True
    with s:
        return was_reset(s, timeout)


def client_with(srv, tmp_path, procs, name="c"):
    return nt.Client(srv, tmp_path, procs, name).configure().start()


def test_max_conns_per_source_lowered_then_off(tmp_path, procs, services):
    srv = nt.Server(tmp_path, procs).start()
    c = client_with(srv, tmp_path, procs)
    echo = services(nt.h_echo, "echo")
    port = c.tcp_add(echo.port)
    held = [connect_from("127.0.0.2", port) for _ in range(3)]
    try:
        for s in held:
            echo_exact(s, 4)  # bound to a data link: counted by relayd
        set_keys(srv, "ports", max_conns_per_source=2)
        sighup(srv)
        line = log_line(srv.relayd, f"reload: {srv.ini} read")
        assert "[ports] max_conns_per_source" in line, line
        assert "wait for a restart" not in srv.relayd.output()
        # the source holds 3 (over the new limit): the next one is reset ...
        assert refused("127.0.0.2", port)
        # ... the three it holds stay and keep relaying exact bytes, another source is served
        for s in held:
            echo_exact(s, 256 * KiB)
        other = connect_from("127.0.0.3", port)
        echo_exact(other, 64 * KiB)
        other.close()
        # off again, through navectl reload this time
        set_keys(srv, "ports", max_conns_per_source=0)
        out = navectl_reload(srv)
        assert out.splitlines()[0] == \
            "controld: reloaded; applied: [ports] max_conns_per_source", out
        more = [connect_from("127.0.0.2", port) for _ in range(3)]
        for s in more:
            echo_exact(s, 16 * KiB)
            s.close()
    finally:
        for s in held:
            s.close()
    assert srv.relayd.alive() and srv.controld.alive()


def test_a_range_over_the_running_socks_port_is_refused(tmp_path, procs):
    """[socks] listen waits for a restart: a reload that moves it and grows the range
    over the port it still runs on is refused by both daemons (the range stays), and
    the SOCKS port keeps answering."""
    lo, hi = nt.port_window(size=12)
    socks = lo + 10
    srv = nt.Server(tmp_path, procs, port_range=(lo, lo + 4),
                    extra_ini=f"[socks]\nlisten = 127.0.0.1:{socks}\n").start()
    set_keys(srv, "ports", range=f"{lo}-{lo + 11}")
    set_keys(srv, "socks", listen=f"127.0.0.1:{nt.free_port()}")
    out = navectl_reload(srv)
    assert f"refused: [ports] range {lo}-{lo + 11}: the running [socks] listen port {socks}" \
        in out, out
    for p in (srv.controld, srv.relayd):
        line = log_line(p, "reload: refused:")
        assert f"port {socks} lies inside it; the range stays {lo}-{lo + 4}" in line, line
    with socket.create_connection(("127.0.0.1", socks), timeout=5) as s:
        s.sendall(b"\x05\x01\x02")
        assert s.recv(2) == b"\x05\x02"  # the running server, username/password only
    assert srv.relayd.alive() and srv.controld.alive()


@pytest.mark.parametrize("steering", ["bpf", "listeners"])
def test_port_range_grows_and_a_stranding_shrink_is_refused(tmp_path, procs, services, svc,
                                                            steering):
    lo, hi = nt.port_window(size=30)
    srv = nt.Server(tmp_path, procs, port_range=(lo, lo + 4),
                    extra_ini=f"[datapath]\nsteering = {steering}\n").start()
    assert f"steering {steering}" in srv.relayd.output(), nt.tail(srv.relayd.output())
    c = client_with(srv, tmp_path, procs)
    first = c.tcp_add(svc.port, name="first")
    assert first == lo
    p = c.tcp_add_raw(svc.port, port=lo + 20, name="far")
    assert p.returncode != 0 and "outside the range" in p.stderr, (p.returncode, p.stderr)

    # grown mid-transfer: the transfer stays exact, a port of the new part works
    set_keys(srv, "ports", range=f"{lo}-{lo + 29}")
    nt.exchange(first, 8 * nt.MiB, midway=lambda: sighup(srv))
    far = c.tcp_add(svc.port, port=lo + 20, name="far")
    assert far == lo + 20
    nt.exchange(far, 1 * nt.MiB)
    tid = srv.navectl("tunnels", "ls", json=True)["items"][0]["id"]
    rc, out, err = srv.navectl("ports", "allocate", "--tunnel", tid, "--port", str(lo + 25))
    assert rc == 0, err
    rc, out, err = srv.navectl("ports", "release", str(lo + 25))
    assert rc == 0, err

    # back to lo..lo+4 while lo+20 is allocated: refused naming it, the rest applies
    set_keys(srv, "ports", range=f"{lo}-{lo + 4}", max_per_tunnel=7)
    out = navectl_reload(srv)
    assert "controld: reloaded; applied: [ports] max_per_tunnel" in out, out
    assert f"controld: refused: [ports] range {lo}-{lo + 4}: port {lo + 20}" in out, out
    for p in (srv.controld, srv.relayd):
        line = log_line(p, "reload: refused:")
        assert f"port {lo + 20}" in line and f"the range stays {lo}-{lo + 29}" in line, line
    nt.exchange(far, 256 * KiB)
    nt.exchange(first, 256 * KiB)

    # once the port is released the same shrink applies, and the port is outside
    p = c.nave("tunnel", "rm", "far")
    assert p.returncode == 0, p.stderr
    sighup(srv)
    for p in (srv.controld, srv.relayd):
        assert f"[ports] range" in log_line(p, f"reload: {srv.ini} read")
    p = c.tcp_add_raw(svc.port, port=lo + 20, name="far")
    assert p.returncode != 0 and "outside the range" in p.stderr, (p.returncode, p.stderr)
    nt.exchange(first, 256 * KiB)


def test_idle_timeout_applies_to_later_connections(tmp_path, procs, services):
    srv = nt.Server(tmp_path, procs).start()
    c = client_with(srv, tmp_path, procs)
    echo = services(nt.h_echo, "echo")
    port = c.tcp_add(echo.port)
    before = connect_from("127.0.0.1", port)
    try:
        echo_exact(before, 1 * KiB)
        set_keys(srv, "tunnel", idle_timeout="1s")
        sighup(srv)
        after = connect_from("127.0.0.1", port)
        echo_exact(after, 1 * KiB)
        t0 = time.monotonic()
        assert was_reset(after, 10)
        assert time.monotonic() - t0 < 5
        after.close()
        # the one accepted before keeps its hour: silent for as long, it still relays
        time.sleep(1.5)
        echo_exact(before, 64 * KiB)
    finally:
        before.close()


def test_http_settings_apply_to_new_connections(tmp_path, procs, services):
    srv = nt.Server(tmp_path, procs).start()
    c = client_with(srv, tmp_path, procs)
    web = services(h_web, "web")
    http_add(c, "app.example.test", web.port)
    wait_routed(srv, "app.example.test")
    big = "X-Big: " + "a" * 3000 + "\r\n"
    assert request(srv, "app.example.test", headers=big)[0] == 200
    status, _, body = request(srv, "app.example.test", "/echo",
                              headers="X-Forwarded-For: 203.0.113.9\r\n")
    assert status == 200
    assert "x-forwarded-for: 127.0.0.1" in body.decode().splitlines(), body
    # an HTTP connection open across the reload keeps its settings
    kept = socket.create_connection(("127.0.0.1", srv.http), timeout=nt.IO_TIMEOUT)
    kept.sendall(b"GET /echo HTTP/1.1\r\nHost: app.example.test\r\n")  # head not whole

    set_keys(srv, "http", max_head=2048, header_timeout="1s",
             trusted_proxies="127.0.0.0/8")
    sighup(srv)
    line = log_line(srv.relayd, f"reload: {srv.ini} read")
    for k in ("[http] trusted_proxies", "[http] header_timeout", "[http] max_head"):
        assert k in line, line
    assert request(srv, "app.example.test", headers=big)[0] == 431
    status, _, body = request(srv, "app.example.test", "/echo",
                              headers="X-Forwarded-For: 203.0.113.9\r\n")
    assert status == 200
    assert "x-forwarded-for: 203.0.113.9, 127.0.0.1" in body.decode().splitlines(), body
    # a new connection's partial head: 408 after about a second
    s = socket.create_connection(("127.0.0.1", srv.http), timeout=nt.IO_TIMEOUT)
    t0 = time.monotonic()
    s.sendall(b"GET / HTTP/1.1\r\nHost: app.example.test\r\n")
    got = s.recv(4096)
    assert got.startswith(b"HTTP/1.1 408"), got
    assert time.monotonic() - t0 < 5
    s.close()
    # the one accepted before the reload had 10 s: 2 s on, its head completes fine
    time.sleep(2 - min(2, time.monotonic() - t0))
    kept.sendall(big.encode() + b"\r\n")
    head = kept.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    kept.close()


def test_certificates_directory_moves(tmp_path, procs, services):
    srv = nt.Server(tmp_path, procs).start()
    c = client_with(srv, tmp_path, procs)
    web = services(h_web, "web")
    http_add(c, "tls.example.test", web.port)
    wait_routed(srv, "tls.example.test")
    other = tmp_path / "other-certs"
    other.mkdir()
    _, _, der = make_cert(other, "tls.example.test")
    set_keys(srv, "http", certificates=str(other))
    sighup(srv)
    status, _, body, peer = https_request(srv, "tls.example.test", "tls.example.test", "/echo")
    assert status == 200 and peer == der
    assert "x-forwarded-proto: https" in body.decode(), body


def test_allowed_domains(tmp_path, procs, services):
    srv = nt.Server(tmp_path, procs).start()
    c = client_with(srv, tmp_path, procs)
    web = services(h_web, "web")
    http_add(c, "a.bad.test", web.port, name="before")
    set_keys(srv, "http", allowed_domains="*.good.test")
    out = navectl_reload(srv)
    assert "applied: [http] allowed_domains" in out, out
    p = c.nave("tunnel", "http", "add", "--domain", "b.bad.test", "--to",
               f"127.0.0.1:{web.port}", "--name", "bad")
    assert p.returncode != 0 and "allowed_domains" in p.stderr, (p.returncode, p.stderr)
    http_add(c, "x.good.test", web.port, name="good")
    wait_routed(srv, "x.good.test")
    # a claim granted before stays (a lowered limit keeps what is held)
    assert request(srv, "a.bad.test")[0] == 200


def test_restart_only_keys_are_named_in_one_line(tmp_path, procs, svc):
    srv = nt.Server(tmp_path, procs).start()
    c = client_with(srv, tmp_path, procs)
    port = c.tcp_add(svc.port)
    set_keys(srv, "listen", http=nt.free_port())
    set_keys(srv, "datapath", workers=1)
    set_keys(srv, "tunnel", pending_timeout="3s", max_pool_size=2, max_links=100,
             heartbeat="2s")
    out = navectl_reload(srv)
    assert out.splitlines()[0] == (
        "controld: reloaded; applied: [tunnel] max_pool_size, [tunnel] max_links, "
        "[tunnel] heartbeat, [tunnel] pending_timeout; waiting for a restart: "
        "[listen] http, [datapath] workers"), out
    j = srv.navectl("reload", json=True)
    assert j["controld"] == {"waiting": 2, "changes": "[listen] http, [datapath] workers",
                             "applied": 0, "applied_changes": "", "refused": ""}, j
    sighup(srv)
    for p in (srv.relayd, srv.controld):
        lines = [x for x in p.output().splitlines() if "wait for a restart" in x]
        assert len(lines) == 3, lines  # one per reload
        assert all("2 change(s) wait for a restart: [listen] http, [datapath] workers" in x
                   for x in lines), lines
    # the client reconnects into a session with the new tunnel limits, traffic still exact
    nt.exchange(port, 4 * nt.MiB)
    c.proc.stop()
    c = nt.Client(srv, tmp_path, procs, "c2").configure().start()
    nt.exchange(c.tcp_add(svc.port), 1 * nt.MiB)

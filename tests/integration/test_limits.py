# SPDX-License-Identifier: Apache-2.0
"""What a peer can hold is bounded: one source cannot take a tunnel's data
links (max_conns_per_source), silent relayed connections end (idle_timeout),
a connection that finds no free link is reset in time (pending_timeout), and
a flood of refusals writes a few log lines, not one per refusal. The counters
show in navectl status."""
import re
import signal
import socket
import time

import pytest

import navetest as nt
from navetest import KiB


def client_with(server, tmp_path, procs, name, **client_keys):
    c = nt.Client(server, tmp_path, procs, name)
    c.configure()
    text = c.ini.read_text()
    for k, v in client_keys.items():
        text, n = re.subn(rf"^{k}\s*=.*$", f"{k} = {v}", text, flags=re.M)
        if not n:
            text = text.replace("[client]\n", f"[client]\n{k} = {v}\n", 1)
    c.ini.write_text(text)
    return c.start()


def connect_from(src, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def was_reset(s, timeout):
    """True when the server resets (or closes) the connection within timeout."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def open_many(src, port, n):
    """n connections from src; returns (kept, reset): the ones the server
    still holds a moment later, and how many it reset or closed."""
    conns, reset = [], 0
    for _ in range(n):
        try:
            conns.append(connect_from(src, port))
        except (ConnectionResetError, BrokenPipeError, ConnectionRefusedError):
            reset += 1
    time.sleep(1)
    kept = []
    for c in conns:
        c.settimeout(0)
        try:
            gone = c.recv(1) == b""
        except BlockingIOError:
            gone = False
        except (ConnectionResetError, BrokenPipeError):
            gone = True
        if gone:
            reset += 1
            c.close()
        else:
            c.settimeout(10)
            kept.append(c)
    return kept, reset


def echoes(port):
    s = connect_from("127.0.0.1", port)
    try:
        s.sendall(b"ping")
        assert nt.recv_exact(s, 4) == b"ping"
    finally:
        s.close()


def take_idle_links(port):
    """Connections that take every idle link relayd holds for the tunnel (at most
    max_pool_size, 8), and one more that waits: the next one waits too."""
    return [connect_from("127.0.0.1", port) for _ in range(9)]


def relay_stats(server):
    return server.navectl("status", json=True)["relay"]


@pytest.mark.parametrize("server_ini", ["[ports]\nmax_conns_per_source = 20\n"
                                     "[tunnel]\nidle_timeout = 0\n"])
def test_one_source_cannot_take_the_links(server, tmp_path, procs, services):
    c = client_with(server, tmp_path, procs, "c", max_links=30)
    s = services(nt.h_exchange, "svc")
    port = c.tcp_add(s.port)
    nt.exchange(port, 4 * KiB)
    held, reset = open_many("127.0.0.2", port, 60)
    try:
        assert (len(held), reset) == (20, 40), (len(held), reset)
        # another source still gets a data link at once
        t0 = time.monotonic()
        nt.exchange(port, 64 * KiB)
        assert time.monotonic() - t0 < 5
        nt.wait_for(lambda: relay_stats(server)["refused_per_source"] == 40, 30,
                    "refused_per_source = 40 in navectl status")
        log = server.relayd.output()
        assert log.count("max_conns_per_source") <= 2, nt.tail(log)
    finally:
        for conn in held:
            conn.close()
    # the source's count went down with its connections
    nt.wait_for(lambda: c.status()["conns"] == 0, 30, "the held connections to close")
    more, reset = open_many("127.0.0.2", port, 20)
    try:
        assert (len(more), reset) == (20, 0)
    finally:
        for conn in more:
            conn.close()


@pytest.mark.parametrize("server_ini", ["[tunnel]\nidle_timeout = 2s\n"])
def test_idle_connections_end(server, tmp_path, procs, services):
    c = client_with(server, tmp_path, procs, "c")
    echo = services(nt.h_echo, "echo")
    port = c.tcp_add(echo.port)
    silent = connect_from("127.0.0.1", port)
    busy = connect_from("127.0.0.1", port)
    try:
        t0 = time.monotonic()
        # the busy one talks every 0.5 s and lives on; the silent one is reset after ~2 s
        gone_after = None
        for i in range(12):
            busy.sendall(b"%d" % i)
            assert nt.recv_exact(busy, len(b"%d" % i)) == b"%d" % i
            if gone_after is None and was_reset(silent, 0.5):
                gone_after = time.monotonic() - t0
        assert gone_after is not None and 1.5 <= gone_after <= 6, gone_after
        nt.wait_for(lambda: relay_stats(server)["idle_timeouts"] >= 1, 30, "idle_timeouts")
    finally:
        silent.close()
        busy.close()
    # the link came back to the pool: the tunnel still works
    nt.exchange(c.tcp_add(services(nt.h_exchange, "x").port), 16 * KiB)


@pytest.mark.parametrize("server_ini", ["[tunnel]\npending_timeout = 1s\nidle_timeout = 0\n"
                                     "heartbeat = 10s\n"])
def test_pending_connections_are_reset_in_time(server, tmp_path, procs, services):
    """A connection waits for a link the client is opening, not forever: with
    the client stopped (no link comes), it is reset after pending_timeout."""
    c = client_with(server, tmp_path, procs, "c", max_links=20, pool_idle=1)
    echo = services(nt.h_echo, "echo")
    port = c.tcp_add(echo.port)
    echoes(port)
    c.proc.proc.send_signal(signal.SIGSTOP)
    try:
        fillers = take_idle_links(port)
        t0 = time.monotonic()
        waiting = connect_from("127.0.0.3", port)  # waits for one that does not come
        assert was_reset(waiting, 10)
        took = time.monotonic() - t0
        assert 0.5 <= took <= 5, took
        waiting.close()
        for f in fillers:
            f.close()
    finally:
        c.proc.proc.send_signal(signal.SIGCONT)
    nt.wait_for(lambda: relay_stats(server)["pending_timeouts"] >= 1, 30, "pending_timeouts")
    echoes(port)


def test_past_max_links_refused_at_once(server, tmp_path, procs, services):
    """The client's max_links (2) is the tunnel's: with both links busy a new
    connection is reset at once, counted and logged once for the burst."""
    c = client_with(server, tmp_path, procs, "c", max_links=2, pool_idle=2)
    echo = services(nt.h_echo, "echo")
    port = c.tcp_add(echo.port)
    hold = [connect_from("127.0.0.1", port) for _ in range(2)]
    try:
        for h in hold:  # both links busy
            h.sendall(b"x")
            assert nt.recv_exact(h, 1) == b"x"
        t0 = time.monotonic()
        for i in range(30):
            try:
                s = connect_from("127.0.0.3", port)
            except ConnectionResetError:
                continue  # reset before connect() returned: at once indeed
            assert was_reset(s, 10)
            s.close()
        assert time.monotonic() - t0 < 5
        nt.wait_for(lambda: relay_stats(server)["refused_max_links"] == 30, 30,
                    "refused_max_links = 30")
        assert relay_stats(server)["pending_timeouts"] == 0
        assert server.relayd.output().count("(max_links), resetting") <= 2
    finally:
        for h in hold:
            h.close()
    # a link free again: served again
    nt.wait_for(lambda: relay_stats(server)["conns"] == 0, 10, "the held connections gone")
    echoes(port)


def test_refusal_floods_write_few_log_lines(server, make_client, services):
    client, port = nt.working_tunnel(make_client, services)
    tok = server.token()
    link = nt.ControlLink(server.https, tok["token"])
    try:
        for i in range(300):
            nt.msg_send(link.s, {"type": "tcp_add", "req": i + 1, "name": f"r{i}", "port": 1})
        answers = 0
        while answers < 300:
            m = nt.msg_recv(link.s)
            if m["type"] == "req_error":
                answers += 1
    finally:
        link.close()
    controld = server.controld.output().count("port request of tunnel")
    relayd = server.relayd.output().count("requests waiting")
    assert controld <= 2 and relayd <= 2, (controld, relayd)
    # and silent connections to the tunnel port: one line, then a count
    silent = [socket.create_connection(("127.0.0.1", server.https), timeout=10)
              for _ in range(100)]
    try:
        nt.wait_for(lambda: "more like this" in server.relayd.output()
                    and server.relayd.output().count("timed out") <= 3, 40,
                    "a summary of the handshake timeouts")
    finally:
        for s in silent:
            s.close()
    assert server.relayd.output().count("handshake or first message timed out") <= 3
    nt.exchange(port, 16 * KiB)


@pytest.mark.parametrize("server_ini", ["[ports]\nmax_conns_per_source = 20\n"])
def test_one_source_cannot_hold_the_tunnel_port(server, tmp_path, procs, services):
    """Unfinished handshakes count per source too: a silent flood from one
    address keeps 20 per worker (the worker that took the SYN counts them),
    the rest are closed at once, and clients still connect."""
    held, closed = open_many("127.0.0.2", server.https, 100)
    workers = relay_stats(server)["workers"]
    try:
        assert 20 <= len(held) <= 20 * workers and len(held) + closed == 100, (len(held), closed)
        c = client_with(server, tmp_path, procs, "c")
        s = services(nt.h_exchange, "svc")
        nt.exchange(c.tcp_add(s.port), 16 * KiB)
        nt.wait_for(lambda: relay_stats(server)["refused_per_source"] == closed, 30,
                    f"refused_per_source = {closed}")
        assert server.relayd.output().count("unfinished handshakes") <= 2
    finally:
        for h in held:
            h.close()
    # once they are gone, the source may connect again
    again, closed = open_many("127.0.0.2", server.https, 10)
    for h in again:
        h.close()
    assert (len(again), closed) == (10, 0)


@pytest.mark.parametrize("server_ini", ["[ports]\nmax_per_tunnel = 64\n"])
def test_many_rules_all_granted_at_connect(server, tmp_path, procs, services):
    """A client with 40 saved rules gets them all when it connects (tcp_sync and
    40 tcp_add arrive at once; the per-tunnel request limit is above that)."""
    c = nt.Client(server, tmp_path, procs, "c")
    c.configure()
    s = services(nt.h_exchange, "svc")
    for i in range(40):
        assert c.tcp_add_raw(s.port, name=f"r{i}").returncode == 0
    c.start()
    nt.wait_for(lambda: len(server.ports(c.tunnel_id)) == 40, 60, "40 ports granted")
    rules = c.status()["rules"]
    assert all(r["state"] == "active" for r in rules), rules
    nt.exchange(rules[-1]["port"], 4 * KiB)


@pytest.mark.parametrize("server_ini", ["[tunnel]\nidle_timeout = 2s\npending_timeout = 8s\n"
                                     "heartbeat = 10s\n"])
def test_a_long_wait_for_a_link_is_not_idleness(server, tmp_path, procs, services):
    """A connection that waited longer than idle_timeout for a data link starts
    its idle time when it gets one: it is not reset at once."""
    c = client_with(server, tmp_path, procs, "c", max_links=20, pool_idle=1)
    echo = services(nt.h_echo, "echo")
    port = c.tcp_add(echo.port)
    echoes(port)
    c.proc.proc.send_signal(signal.SIGSTOP)  # no link comes while it is stopped
    try:
        fillers = take_idle_links(port)
        waiting = connect_from("127.0.0.1", port)  # silent: it waits for a link
        time.sleep(3.5)
    finally:
        c.proc.proc.send_signal(signal.SIGCONT)
    for f in fillers:
        f.close()
    try:
        time.sleep(1.2)  # bound by now, silent for less than idle_timeout since
        waiting.sendall(b"x")
        assert nt.recv_exact(waiting, 1) == b"x"
    finally:
        waiting.close()

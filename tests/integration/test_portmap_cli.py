# SPDX-License-Identifier: Apache-2.0
"""Port maps and SOCKS proxies on the client's side, without the mesh traffic
itself (test_mesh.py carries bytes between two clients):

- `nave ports map|ls|rm` and `nave proxies socks listen|rm|ls` on a stopped
  client edit [portmap.LOCALPORT] and [socks.PORT] of the config; bad input is
  one line and exit 2; a local port another program holds is refused before
  anything is saved; a SOCKS proxy on an address other than loopback needs
  --auth, and only the password's hash is saved.
- The same on a running client go through its local socket: the port listens
  at once (and stops listening on rm), the change is saved and survives a
  restart, `nave status --json` shows maps, socks, mesh_opened and
  mesh_refused; a port in use is refused and nothing is saved.
- Bad [portmap.*] and [socks.*] sections are "FILE:LINE: reason".
"""
import json
import socket
import time

import pytest

import navetest as nt


def one_line(p, rc):
    assert p.returncode == rc, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1 and lines[0].startswith("nave: "), p.stderr
    return lines[0]


def nave(ini, *args):
    return nt.run([nt.NAVE, "--config", ini, *args])


def listening(port, host="127.0.0.1"):
    """True when something accepts on host:port (the connection is closed at once)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def held(port):
    """A listening socket on 127.0.0.1:port that another program holds."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen(4)
    return s


# ---------------------------------------------------------------- stopped


def test_stopped_client_edits_the_config(tmp_path):
    ini = tmp_path / "c.ini"
    p1, p2, s1 = nt.free_port(), nt.free_port(), nt.free_port()

    p = nave(ini, "ports", "map", str(p1), "--destination", "redis", "--port", "22001")
    assert p.returncode == 0, p.stderr
    assert f"port map {p1} -> redis:22001" in p.stdout
    p = nave(ini, "ports", "map", str(p2), "--transport", "tcp", "--destination", "10.0.0.7",
             "--port", "80", "--bind", "::1")
    assert p.returncode == 0, p.stderr
    text = ini.read_text()
    assert f"[portmap.{p1}]" in text and "destination = redis" in text and "port = 22001" in text
    assert f"[portmap.{p2}]" in text and "bind = ::1" in text

    p = nave(ini, "--json", "ports", "ls")
    assert p.returncode == 0, p.stderr
    maps = {m["local"]: m for m in json.loads(p.stdout)}
    assert maps[p1] == {"local": p1, "transport": "tcp", "destination": "redis", "port": 22001,
                        "bind": "127.0.0.1", "public": False, "state": "saved"}
    assert maps[p2]["destination"] == "10.0.0.7" and maps[p2]["bind"] == "::1"
    p = nave(ini, "ports", "ls")
    assert p.returncode == 0 and "redis" in p.stdout and str(p2) in p.stdout

    # the same local port twice, as a map or as a SOCKS proxy: refused
    assert "already" in one_line(
        nave(ini, "ports", "map", str(p1), "--destination", "x", "--port", "1"), 1)
    assert "already" in one_line(nave(ini, "proxies", "socks", "listen", str(p1)), 1)

    # a map others can reach needs --public (saved as public = yes); loopback does not
    p3 = nt.free_port()
    line = one_line(nave(ini, "ports", "map", str(p3), "--destination", "db", "--port", "5",
                         "--bind", "0.0.0.0"), 1)
    assert "--bind 0.0.0.0 is not a loopback address" in line and "--public" in line, line
    assert f"[portmap.{p3}]" not in ini.read_text()
    p = nave(ini, "ports", "map", str(p3), "--destination", "db", "--port", "5", "--bind",
             "0.0.0.0", "--public")
    assert p.returncode == 0, p.stderr
    sec = ini.read_text().split(f"[portmap.{p3}]")[1].split("\n[")[0]
    assert "bind = 0.0.0.0" in sec and "public = yes" in sec, sec
    assert "public" not in ini.read_text().split(f"[portmap.{p1}]")[1].split("\n[")[0]
    maps = {m["local"]: m for m in json.loads(nave(ini, "--json", "ports", "ls").stdout)}
    assert maps[p3]["public"] is True and maps[p1]["public"] is False, maps
    assert nave(ini, "ports", "rm", str(p3)).returncode == 0

    # a SOCKS proxy others can reach needs a user and password; only a hash is kept
    line = one_line(nave(ini, "proxies", "socks", "listen", str(s1), "--bind", "0.0.0.0"), 1)
    assert "--auth" in line
    p = nave(ini, "proxies", "socks", "listen", str(s1), "--bind", "0.0.0.0", "--auth",
             "bob:sw0rdfish")
    assert p.returncode == 0, p.stderr
    text = ini.read_text()
    assert f"[socks.{s1}]" in text and "username = bob" in text
    assert "password_hash = $scrypt$" in text and "sw0rdfish" not in text
    p = nave(ini, "--json", "proxies", "ls")
    assert json.loads(p.stdout) == [{"port": s1, "bind": "0.0.0.0", "auth": True,
                                     "username": "bob", "state": "saved"}]

    # rm
    p = nave(ini, "ports", "rm", str(p1))
    assert p.returncode == 0, p.stderr
    assert f"[portmap.{p1}]" not in ini.read_text() and f"[portmap.{p2}]" in ini.read_text()
    assert "no port map" in one_line(nave(ini, "ports", "rm", str(p1)), 1)
    assert "no SOCKS proxy" in one_line(nave(ini, "proxies", "socks", "rm", str(p2)), 1)
    p = nave(ini, "proxies", "socks", "rm", str(s1))
    assert p.returncode == 0, p.stderr
    assert "[socks." not in ini.read_text()


@pytest.mark.parametrize("args, words", [
    (["ports", "map", "0", "--destination", "a", "--port", "1"], "LOCALPORT"),
    (["ports", "map", "70000", "--destination", "a", "--port", "1"], "LOCALPORT"),
    (["ports", "map", "1234", "--port", "1"], "--destination"),
    (["ports", "map", "1234", "--destination", "a"], "--port"),
    (["ports", "map", "1234", "--destination", "a", "--port", "0"], "--port"),
    (["ports", "map", "1234", "--destination", "a b", "--port", "1"], "--destination"),
    (["ports", "map", "1234", "--destination", "x" * 300, "--port", "1"], "--destination"),
    (["ports", "map", "1234", "--destination", "a\x1b[31m", "--port", "1"], "--destination"),
    (["ports", "map", "1234", "--destination", "a", "--port", "1", "--transport", "sctp"],
     "--transport"),
    (["ports", "map", "1234", "--destination", "a", "--port", "1", "--bind", "localhost"],
     "--bind"),
    (["ports", "map", "1234", "--destination", "a", "--port", "1", "--nope"], "--nope"),
    (["ports", "map", "1234", "5678", "--destination", "a", "--port", "1"], "unexpected"),
    (["ports", "rm"], "LOCALPORT"),
    (["ports", "rm", "x"], "LOCALPORT"),
    (["ports", "frob"], "frob"),
    (["proxies", "socks", "listen", "1080", "--auth", "bob"], "USER:PASS"),
    (["proxies", "socks", "listen", "1080", "--auth", "b b:x"], "--auth"),
    (["proxies", "socks", "listen", "1080", "--auth", "bob:"], "password"),
    (["proxies", "socks", "listen", "99999"], "PORT"),
    (["proxies", "socks", "frob"], "frob"),
])
def test_bad_input_is_one_line(tmp_path, args, words):
    ini = tmp_path / "c.ini"
    line = one_line(nave(ini, *args), 2)
    assert words in line, line
    assert "\x1b" not in line
    assert not ini.exists(), "nothing is saved"


def test_a_port_in_use_is_refused_before_saving(tmp_path):
    ini = tmp_path / "c.ini"
    port = nt.free_port()
    s = held(port)
    try:
        line = one_line(nave(ini, "ports", "map", str(port), "--destination", "redis", "--port",
                             "6379"), 1)
        assert f"local port {port} is already in use" in line, line
        line = one_line(nave(ini, "proxies", "socks", "listen", str(port)), 1)
        assert "already in use" in line, line
    finally:
        s.close()
    assert not ini.exists()


@pytest.mark.parametrize("section, words", [
    ("[portmap.abc]\ndestination = a\nport = 1\n", "port number"),
    ("[portmap.0]\ndestination = a\nport = 1\n", "port number"),
    ("[portmap.1234]\nport = 1\n", "destination"),
    ("[portmap.1234]\ndestination = a\n", "port: missing"),
    ("[portmap.1234]\ndestination = a\nport = 1\ntransport = sctp\n", "not tcp or udp"),
    ("[portmap.1234]\ndestination = a b\nport = 1\n", "destination"),
    ("[portmap.1234]\ndestination = a\nport = 1\nbind = nowhere\n", "bind"),
    ("[portmap.1234]\ndestination = a\nport = 1\nfrob = 2\n", "frob"),
    ("[portmap.1234]\ndestination = a\nport = 1\nbind = 0.0.0.0\n", "needs public = yes"),
    ("[portmap.1234]\ndestination = a\nport = 1\nbind = 10.0.0.1\npublic = no\n",
     "needs public = yes"),
    ("[portmap.1234]\ndestination = a\nport = 1\npublic = maybe\n", "public"),
    ("[socks.1080]\nbind = 0.0.0.0\n", "needs a username"),
    ("[socks.1080]\nusername = bob\n", "password_hash"),
    ("[socks.1080]\nusername = bob\npassword_hash = hunter2\n", "password_hash"),
    ("[portmap.1080]\ndestination = a\nport = 1\n[socks.1080]\n", "1080"),
])
def test_bad_sections_name_their_line(tmp_path, section, words):
    ini = tmp_path / "c.ini"
    ini.write_text("[client]\nserver = 127.0.0.1:1\n" + section)
    line = one_line(nave(ini, "ports", "ls"), 2)
    assert str(ini) in line and words in line, line


# ---------------------------------------------------------------- running


def test_running_client_listens_at_once(make_client, tmp_path):
    c = make_client("pm")
    p1, s1 = nt.free_port(), nt.free_port()

    p = c.nave("ports", "map", str(p1), "--destination", "nowhere-tunnel", "--port", "22001")
    assert p.returncode == 0, p.stderr
    nt.wait_for(lambda: listening(p1), 5, f"local port {p1} listening")
    assert f"[portmap.{p1}]" in c.ini.read_text()
    p = c.nave("proxies", "socks", "listen", str(s1))
    assert p.returncode == 0, p.stderr
    nt.wait_for(lambda: listening(s1), 5, f"SOCKS port {s1} listening")

    p = c.nave("--json", "ports", "ls")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [{"local": p1, "transport": "tcp",
                                     "destination": "nowhere-tunnel", "port": 22001,
                                     "bind": "127.0.0.1", "public": False,
                                     "state": "listening"}]
    st = c.status()
    assert [m["local"] for m in st["maps"]] == [p1]
    assert [k["port"] for k in st["socks"]] == [s1] and st["socks"][0]["auth"] is False
    assert isinstance(st["mesh_opened"], int) and isinstance(st["mesh_refused"], int)

    # a port in use: one line, nothing saved, the client goes on
    other = nt.free_port()
    s = held(other)
    try:
        line = one_line(c.nave("ports", "map", str(other), "--destination", "x", "--port", "1"),
                        1)
        assert "already in use" in line, line
    finally:
        s.close()
    assert f"[portmap.{other}]" not in c.ini.read_text()
    assert "already" in one_line(
        c.nave("ports", "map", str(s1), "--destination", "x", "--port", "1"), 1)
    # the running client checks what it is sent as the command line does
    assert "--auth" in one_line(c.nave("proxies", "socks", "listen", str(other), "--bind",
                                       "10.1.2.3"), 1)
    assert f"[socks.{other}]" not in c.ini.read_text()

    # the running client takes --public, and refuses a non-loopback bind without it
    pub = nt.free_port()
    line = one_line(c.nave("ports", "map", str(pub), "--destination", "x", "--port", "1",
                           "--bind", "0.0.0.0"), 1)
    assert "--public" in line, line
    p = c.nave("ports", "map", str(pub), "--destination", "x", "--port", "1", "--bind",
               "0.0.0.0", "--public")
    assert p.returncode == 0, p.stderr
    nt.wait_for(lambda: listening(pub), 5, f"public map {pub} listening")
    assert "public = yes" in c.ini.read_text().split(f"[portmap.{pub}]")[1].split("\n[")[0]
    running = {m["local"]: m for m in json.loads(c.nave("--json", "ports", "ls").stdout)}
    assert running[pub]["public"] is True and running[pub]["state"] == "listening", running
    assert c.nave("ports", "rm", str(pub)).returncode == 0

    # saved: a restart listens again
    c.stop()
    assert not listening(p1) and not listening(s1)
    c.start()
    nt.wait_for(lambda: listening(p1) and listening(s1), 5, "listening after a restart")

    # rm: the port stops listening at once, and is free for another program
    p = c.nave("ports", "rm", str(p1))
    assert p.returncode == 0, p.stderr
    assert not listening(p1)
    held(p1).close()
    p = c.nave("proxies", "socks", "rm", str(s1))
    assert p.returncode == 0, p.stderr
    assert not listening(s1)
    text = c.ini.read_text()
    assert "[portmap." not in text and "[socks." not in text
    assert c.proc.alive()


def reset_at_once(port):
    """A connection to port is reset (or closed) within a second, without a byte."""
    t0 = time.monotonic()
    try:
        # the reset can beat connect()'s own return: that is a reset at once too
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except ConnectionResetError:
        s = None
    if s is not None:
        try:
            s.settimeout(3)
            got = s.recv(10)
            assert got == b"", got
        except ConnectionResetError:
            pass
        finally:
            s.close()
    assert time.monotonic() - t0 < 1.5


def test_refusals_reset_and_name_the_reason(make_client, free_port):
    """relayd refuses (no such tunnel, default deny): the local connection is reset at
    once, the client's log names the reason, status counts it by reason. (The log line
    is rate-limited per reason: these two differ.)"""
    a = make_client("a")
    b = make_client("b")
    bport = b.tcp_add(free_port())  # nothing listens behind it: the policy refuses first
    nowhere, denied = free_port(), free_port()
    assert a.nave("ports", "map", str(nowhere), "--destination", "no-such-tunnel", "--port",
                  "22001").returncode == 0
    # b exists, but a's token has no mesh kind and no rule allows it: default deny
    assert a.nave("ports", "map", str(denied), "--destination", b.tunnel_id, "--port",
                  str(bport)).returncode == 0
    reset_at_once(nowhere)
    reset_at_once(denied)

    def logged():
        out = a.proc.output()
        return (f"port map {nowhere} -> no-such-tunnel:22001 refused: no such destination"
                in out and f"port map {denied} -> {b.tunnel_id}:{bport} refused: denied by the "
                "mesh policy (default deny)" in out)

    nt.wait_for(logged, 5, "the refusals in the client's log")
    st = a.status()
    assert st["mesh"] is True and st["mesh_refused"] >= 2, st
    assert st["mesh_refused_by"].get("not_found", 0) >= 1, st
    assert st["mesh_refused_by"].get("denied", 0) >= 1, st
    assert a.proc.alive() and b.proc.alive()

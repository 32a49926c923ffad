# SPDX-License-Identifier: Apache-2.0
"""relayd's own SOCKS5 server: `[socks] listen` (plain) and `[socks] tls_listen` (TLS with
the server certificate), RFC 1929 username/password only: the user is a tunnel id or group
id, the password that tunnel's token (checked by controld, as a client's is).

Real daemons and clients: curl and a plain-socket SOCKS5 client CONNECT through both ports to
a service behind a tunnel and to an external loopback service inside `[socks] allow`, every
byte checked (SHA-256 of 1 MiB each way); a token whose tunnel was never online works too; a
wrong password, a user that is not the token's tunnel and a greeting without the user/password
method are refused with RFC 1929 status 1 / method 0xff; a mesh deny is reply 0x02 and named
in relayd's log; malformed handshakes are closed and relayd stays up; the handshake limits
(8 per source; 64 per listener, the oldest not logged in dropped for a new one) and the
failed-login limit (more than 5 in 60 s, on both listeners) hold, a full source table forgets
its oldest source, and controld away locks nobody out; bytes behind a CONNECT are the
stream's; a revoked token's streams are reset; the metrics count each refusal."""
import hashlib
import os
import socket
import ssl
import struct
import subprocess

import pytest

import navetest as nt
from navetest import KiB, MiB
from test_mesh import (REP_NOT_ALLOWED, REP_OK, closed, log_line, mesh_add, recv_n,
                       socks_greet, socks_request, token)
from test_metrics import connect_from, settle, total, val
from test_token_restrict import h_page

# between free_port's ports (the server's listeners) and port_window's (its range)
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
            "[socks]\nallow = 127.0.0.1/32\n"
            f"listen = 127.0.0.1:{SOCKS_PORT}\n"
            f"tls_listen = 127.0.0.1:{SOCKS_TLS_PORT}\n")


# ---------------------------------------------------------------- helpers


def tls_wrap(server, s):
    """s inside TLS; the certificate is the server's own (its DER compared with the file's)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(s, server_hostname="localhost")
    pem = (server.dir / "var" / "tls" / "server.crt").read_text()
    assert t.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(pem)
    return t


def connect(server, tls=False, src=None):
    port = SOCKS_TLS_PORT if tls else SOCKS_PORT
    s = connect_from(src, port) if src else nt.connect(port)
    s.settimeout(nt.IO_TIMEOUT)
    return tls_wrap(server, s) if tls else s


def login(s, user, password):
    """Greeting (user/password only) and RFC 1929 login: the status byte."""
    assert socks_greet(s, [2]) == b"\x05\x02"
    u, p = user.encode(), password.encode()
    s.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
    st = recv_n(s, 2)
    assert st[0] == 1, st
    return st[1]


def open_via(server, user, password, host, port, tls=False):
    """A CONNECT through relayd's SOCKS server: (socket, reply code)."""
    s = connect(server, tls)
    assert login(s, user, password) == 0, "login refused"
    return s, socks_request(s, host, port)


def exchange_via(server, user, password, host, port, n, tls=False):
    s, rep = open_via(server, user, password, host, port, tls)
    if rep != REP_OK:
        s.close()
        raise nt.Failure(f"CONNECT {host}:{port} answered 0x{rep:02x}")
    return nt.exchange(None, n, sock=s)


def refused_reply(server, user, password, host, port, tls=False):
    s, rep = open_via(server, user, password, host, port, tls)
    with s:
        assert rep != REP_OK, f"{host}:{port} was connected"
        assert closed(s), "relayd kept the connection open after a refusal"
    return rep


def curl_get(user, password, host, port):
    """curl through [socks] listen, the name resolved by relayd (--socks5-hostname)."""
    p = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--socks5-hostname", f"127.0.0.1:{SOCKS_PORT}",
         "--proxy-user", f"{user}:{password}", f"http://{host}:{port}/"],
        capture_output=True, timeout=30)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p.stdout


def ends(s, timeout=5):
    """True when the peer closes within timeout (what it answered first is read and dropped)."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:  # a reset, or TLS cut short
        return True


def reset_at_accept(src, port=None):
    """A connection from src is closed by relayd without a word (a reset quick enough is
    seen by the connect itself)."""
    try:
        s = connect_from(src, port or SOCKS_PORT)
    except ConnectionResetError:
        return True
    with s:
        return closed(s)


def relayd_alive(server):
    assert server.relayd.alive(), nt.tail(server.relayd.output())


# ---------------------------------------------------------------- CONNECT


def test_socks_edge_connects(server, make_client, services, metrics_port):
    b = make_client("b", id="db-host")
    svc = services(nt.h_exchange, "redis")
    bport = b.tcp_add(svc.port)
    page = services(h_page, "page")
    pport = b.tcp_add(page.port)
    ext = services(nt.h_exchange, "external")
    # a token with the mesh role, used by a client (online) ...
    tok_a = token(server, "--id", "app-1", "--kinds", "tcp,mesh")
    a = make_client("a", key=tok_a)
    # ... and one whose tunnel never came online: the token is the credential
    tok_c = token(server, "--id", "batch-1", "--kinds", "tcp,mesh")

    for tls in (False, True):
        # the tunnel's port by tunnel id and by group id, logged in by group id and tunnel id
        assert exchange_via(server, "app-1", tok_a, b.tunnel_id, bport, 1 * MiB, tls)
        assert exchange_via(server, a.tunnel_id, tok_a, "db-host", bport, 1 * MiB, tls)
        assert exchange_via(server, "batch-1", tok_c, "db-host", bport, 64 * KiB, tls)
        # an external loopback service inside [socks] allow
        assert exchange_via(server, "app-1", tok_a, "127.0.0.1", ext.port, 1 * MiB, tls)
    # curl, the name going to relayd
    assert curl_get("app-1", tok_a, "db-host", pport) == f"hello db-host:{pport}".encode()
    assert curl_get("batch-1", tok_c, b.tunnel_id, pport) == \
        f"hello {b.tunnel_id}:{pport}".encode()
    assert svc.errors == [] and ext.errors == [] and page.errors == []
    # B's records name the opener (kind mesh, from:A)
    m = settle(metrics_port, lambda m: total(m, "nave_socks_connections_total") >= 10,
               "SOCKS connections counted")
    assert total(m, "nave_socks_refused_total") == 0, m.get("nave_socks_refused_total")
    assert total(m, "nave_mesh_streams_total") >= 10
    relayd_alive(server)


def test_socks_edge_policy(server, make_client, services):
    b = make_client("b", id="db-host")
    svc = services(nt.h_exchange, "redis")
    bport = b.tcp_add(svc.port)
    ext = services(nt.h_exchange, "external")
    # no mesh kind: tunnels are denied by default, externals allowed
    tok = token(server, "--id", "app-2", "--kinds", "tcp")
    assert refused_reply(server, "app-2", tok, "db-host", bport) == REP_NOT_ALLOWED
    line = log_line(server.relayd, "denied by the mesh policy (default deny)")
    assert "socks" in line and "app-2" in line and "db-host" in line, line
    assert exchange_via(server, "app-2", tok, "127.0.0.1", ext.port, 64 * KiB)
    # a rule for its group, then one denying the external
    mesh_add(server, "allow", "group:app-2", "group:db-host", "--port", str(bport))
    nt.wait_for(lambda: exchange_via_ok(server, "app-2", tok, "db-host", bport), 15,
                "the allow rule reaches relayd", interval=0.3)
    rid = mesh_add(server, "deny", "group:app-2", "external:127.0.0.1/32", "--position", "1")
    nt.wait_for(lambda: refused_or_none(server, "app-2", tok, "127.0.0.1", ext.port)
                == REP_NOT_ALLOWED, 15, "the deny rule reaches relayd", interval=0.3)
    log_line(server.relayd, f"refused: denied by mesh rule {rid}")
    # outside [socks] allow: 0x02 too; no such tunnel: host unreachable
    assert refused_reply(server, "app-2", tok, "127.0.0.2", ext.port) == REP_NOT_ALLOWED
    assert refused_reply(server, "app-2", tok, "db-host", bport + 1) == 0x04
    relayd_alive(server)


def exchange_via_ok(server, user, password, host, port):
    try:
        return exchange_via(server, user, password, host, port, 1 * KiB)
    except (nt.Failure, OSError, AssertionError):
        return False


def refused_or_none(server, user, password, host, port):
    s, rep = open_via(server, user, password, host, port)
    s.close()
    return rep


# ---------------------------------------------------------------- logins


def test_socks_edge_auth(server, make_client, metrics_port):
    tok = token(server, "--id", "app-3", "--kinds", "tcp,mesh")
    other = token(server, "--id", "other-1", "--kinds", "tcp,mesh")
    for tls in (False, True):
        # no-auth only: method 0xff, then closed
        with connect(server, tls) as s:
            assert socks_greet(s, [0]) == b"\x05\xff"
            assert closed(s)
        # a wrong password (a token-shaped one, and garbage), another tunnel's token
        for user, pw in (("app-3", tok[:-4] + "AAAA"), ("app-3", "x"), ("app-3", other),
                         ("nobody", tok), ("bad user", tok)):
            with connect(server, tls, src="127.0.0.%d" % (30 + tls)) as s:
                if " " in user:
                    # RFC 1929 users here are printable without spaces: a bad handshake
                    assert socks_greet(s, [2]) == b"\x05\x02"
                    u = user.encode()
                    s.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(tok)]) + tok.encode())
                    assert recv_n(s, 2) == b"\x01\x01"
                else:
                    assert login(s, user, pw) == 1, (user, pw)
                assert closed(s)
    # a token's allow_from is checked against the SOCKS client's address
    fenced = token(server, "--id", "app-7", "--kinds", "tcp,mesh", "--allow-from", "10.9.9.0/24")
    with connect(server) as s:
        assert login(s, "app-7", fenced) == 1
        assert closed(s)
    # one line per cause and 10 s: this one may come in the window's summary
    log_line(server.relayd, "source address 127.0.0.1 is not allowed by this token", timeout=15)
    log_line(server.relayd, "the token is not that tunnel's")
    log_line(server.relayd, "refused: login as app-3: invalid token")
    m = settle(metrics_port, lambda m: val(m, "nave_socks_refused_total", reason="auth") == 9
               and val(m, "nave_socks_refused_total", reason="method") == 2
               and val(m, "nave_socks_refused_total", reason="handshake") == 2,
               "refused logins counted")
    assert total(m, "nave_socks_connections_total") == 13
    relayd_alive(server)


def test_socks_edge_login_rate_limit(server):
    tok = token(server, "--id", "app-4", "--kinds", "tcp,mesh")
    src = "127.0.0.40"
    for i in range(6):
        with connect(server, src=src) as s:
            assert login(s, "app-4", "wrong-%d" % i) == 1
    log_line(server.relayd, "more than 5 failed logins from 127.0.0.40 in 60 s")
    # the source is refused now, even with the right password
    assert reset_at_accept(src)
    # another source is not
    with connect(server, src="127.0.0.41") as s:
        assert login(s, "app-4", tok) == 0
    relayd_alive(server)


# ---------------------------------------------------------------- malformed, limits


def test_socks_edge_malformed(server):
    tok = token(server, "--id", "app-5", "--kinds", "tcp,mesh")
    bad = [
        b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00",  # SOCKS4
        b"\x05\x00",  # no methods
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x05\x01\x02" + b"\x01\x00",  # an empty user
        b"\x05\x01\x02\x07\x01a\x01b",  # an auth version 7
        b"\x05\x01\x02\x01\x05app-5" + b"\xff" * 2000,  # over 1 KiB
        bytes(4000),
    ]
    for tls in (False, True):
        for b in bad:
            with connect(server, tls) as s:
                try:
                    s.sendall(b)
                except OSError:
                    continue
                assert ends(s), b[:20]
    # a request that is not CONNECT: command not supported, closed
    with connect(server) as s:
        assert login(s, "app-5", tok) == 0
        assert socks_request(s, "127.0.0.1", 80, cmd=2) == 0x07
        assert closed(s)
    # UDP ASSOCIATE is served (test_socks_edge_udp.py): a relay address, the connection open
    with connect(server) as s:
        assert login(s, "app-5", tok) == 0
        assert socks_request(s, "0.0.0.0", 0, cmd=3) == REP_OK
        assert not closed(s, timeout=0.5)
    # a slow handshake is closed after 10 s
    with connect(server) as s:
        s.sendall(b"\x05")
        assert closed(s, timeout=15)
    log_line(server.relayd, "no whole handshake within 10 s", timeout=15)
    relayd_alive(server)
    with connect(server) as s:
        assert login(s, "app-5", tok) == 0


def test_socks_edge_handshake_limits(server):
    tok = token(server, "--id", "app-6", "--kinds", "tcp,mesh")
    held = []
    try:
        # 8 from one source; a 9th is reset at once
        held += [connect_from("127.0.0.50", SOCKS_PORT) for _ in range(8)]
        assert reset_at_accept("127.0.0.50")
        log_line(server.relayd, "8 handshakes under way from that source")
        # 64 on the listener: 7 more sources of 8
        for i in range(7):
            held += [connect_from("127.0.0.%d" % (51 + i), SOCKS_PORT) for _ in range(8)]
        # make sure relayd accepted them all (each answers a greeting)
        for s in held:
            s.sendall(b"\x05\x01\x02")
        for s in held:
            assert recv_n(s, 2) == b"\x05\x02"
        # 64 idle on the listener, none logged in: the oldest is dropped for a new one
        with connect(server, src="127.0.0.60") as s:
            assert login(s, "app-6", tok) == 0
        log_line(server.relayd, "dropped: the oldest handshake not logged in")
        # the TLS listener counts its own
        with connect(server, tls=True) as s:
            assert login(s, "app-6", tok) == 0
    finally:
        for s in held:
            s.close()
    # once they are gone, a new one is taken
    def fresh():
        try:
            with connect(server, src="127.0.0.50") as s:
                return login(s, "app-6", tok) == 0
        except (OSError, AssertionError):
            return False

    nt.wait_for(fresh, 10, "a handshake taken again", interval=0.2)
    relayd_alive(server)


# ---------------------------------------------------------------- review fixes


def read_reply(s):
    """A CONNECT's reply: its code (the bound address read and dropped)."""
    head = recv_n(s, 4)
    assert head[0] == 5 and head[2] == 0, head
    recv_n(s, {1: 4, 4: 16}[head[3]] + 2)
    return head[1]


def test_socks_edge_early_data(server, services):
    """A CONNECT with 64 KiB behind it in one write: the bytes are the stream's."""
    tok = token(server, "--id", "app-8", "--kinds", "tcp,mesh")
    ext = services(nt.h_exchange, "external")
    n = 64 * KiB
    for tls in (False, True):
        with connect(server, tls) as s:
            assert login(s, "app-8", tok) == 0
            data = os.urandom(n)
            req = b"\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack(">H", ext.port)
            s.sendall(req + struct.pack(">Q", n) + data)
            assert read_reply(s) == REP_OK
            assert recv_n(s, 32) == hashlib.sha256(data).digest()
            got = recv_n(s, n)
            assert recv_n(s, 32) == hashlib.sha256(got).digest()
            # the service half-closed: read its EOF (with TLS, relayd's close_notify)
            # before closing, or the unread bytes make the kernel reset the connection
            s.settimeout(nt.IO_TIMEOUT)
            while s.recv(4096):
                pass
    assert ext.errors == []
    relayd_alive(server)


def test_socks_edge_revoke(server, services):
    """Revoking a token resets its SOCKS streams (its tunnel never online)."""
    made = server.navectl("tokens", "create", "--id", "app-9", "--kinds", "tcp,mesh", json=True)
    ext = services(nt.h_exchange, "external")
    s, rep = open_via(server, "app-9", made["token"], "127.0.0.1", ext.port)
    with s:
        assert rep == REP_OK
        s.sendall(struct.pack(">Q", 1 * MiB) + bytes(4 * KiB))  # mid-transfer
        server.navectl("tokens", "revoke", made["id"], json=True)
        assert ends(s, timeout=5), "the stream outlived its token"
    log_line(server.relayd,
             f"tunnel {made['tunnel_id']}'s token was revoked: 1 SOCKS connection(s) reset")
    with connect(server) as s:
        assert login(s, "app-9", made["token"]) == 1
    relayd_alive(server)


def test_socks_edge_source_table(server):
    """300 sources with one failed login each (a user refused locally): the table of 256
    forgets the oldest, so a new source with the right token still logs in; a source locked
    on one listener is locked on the other."""
    tok = token(server, "--id", "app-10", "--kinds", "tcp,mesh")
    for i in range(300):
        with connect(server, src="127.1.%d.%d" % (i // 200, 1 + i % 200)) as s:
            assert socks_greet(s, [2]) == b"\x05\x02"
            s.sendall(b"\x01\x02x!\x01y")
            assert recv_n(s, 2) == b"\x01\x01"
    with connect(server, src="127.2.0.1") as s:
        assert login(s, "app-10", tok) == 0
    log_line(server.relayd, "forgetting the failed logins of the oldest")
    # the lockout holds on both listeners
    for i in range(6):
        with connect(server, src="127.2.0.2") as s:
            assert login(s, "app-10", "wrong-%d" % i) == 1
    assert reset_at_accept("127.2.0.2", SOCKS_TLS_PORT)
    relayd_alive(server)


def test_socks_edge_controld_down(server):
    """controld away is no failed login: six logins refused meanwhile lock nobody out."""
    tok = token(server, "--id", "app-11", "--kinds", "tcp,mesh")
    src = "127.0.0.70"
    server.stop_controld()
    held = [connect(server, src=src) for _ in range(6)]
    for s in held:
        assert socks_greet(s, [2]) == b"\x05\x02"
        u, p = b"app-11", tok.encode()
        s.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
    for s in held:
        s.settimeout(20)
        assert recv_n(s, 2) == b"\x01\x01"  # after relayd's 10 s for controld's answer
        s.close()
    log_line(server.relayd, "login as app-11: control daemon unavailable")
    server.start_controld()
    server.wait_relay_connected()
    with connect(server, src=src) as s:
        assert login(s, "app-11", tok) == 0
    relayd_alive(server)

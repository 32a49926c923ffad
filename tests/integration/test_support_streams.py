# SPDX-License-Identifier: Apache-2.0
"""Support streams end to end: the real daemons, a real device client that requested a
support session (`nave support request`), and a real `nave support connect` as the support
person. Before approval the first connection is refused (one line, exit 1); a wrong key is
refused by the edge; the right key reaches the service it names (1 MiB each way, SHA-256
checked, through both ends' inner handshake and records) and only that one; a service the
request did not offer is refused; the owner's `nave support end` drops an open connection
at once and the next one is refused; the audit trail has connected (source) and
disconnected (bytes) records; SIGTERM ends the command with status 0; a session that
expires drops its open connection and refuses the next (a minute's wait)."""
import base64
import hashlib
import hmac
import json
import os
import re
import time

import navetest as nt

MIB = 1 << 20


def request(client, allow):
    p = client.nave("support", "request", "--json", "--allow", allow)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    return r["id"], r["psk"]


def auth_key(psk_text):
    """common/support.h: HKDF-SHA256(PSK, salt "", info "nave support auth v1"), hex."""
    b = psk_text.replace("-", "").upper()
    psk = base64.b32decode(b + "=" * (-len(b) % 8))
    prk = hmac.new(b"\0" * 32, psk, hashlib.sha256).digest()
    return hmac.new(prk, b"nave support auth v1\x01", hashlib.sha256).hexdigest()


def require_service_index(server, client):
    """The supporter puts the service's index in its handshake (SUP1) and knows only the
    name: relayd's WELCOME must carry service_index (link_proto.h "Support streams").
    Asked by hand on a session of its own (the tests' audit trails stay untouched)."""
    sid, psk = request(client, "probe=127.0.0.1:9")
    assert server.navectl("support", "approve", sid)[0] == 0
    s = nt.tls_connect(server.https)
    try:
        nt.msg_send(s, {"type": "hello", "version": 1, "mode": "support", "session": sid,
                        "service": "probe", "auth": auth_key(psk)})
        m = nt.msg_recv(s)
    finally:
        s.close()
    assert client.nave("support", "end", sid).returncode == 0
    assert m["type"] == "welcome", m
    # relayd's WELCOME must name it (link_proto.h): a skip here would hide a regression
    assert m.get("service_index") == 0, m


class Supporter:
    """`nave support connect` in the foreground, listening on a port the system picks."""

    def __init__(self, server, procs, tmp_path, sid, psk, service, name="supporter",
                 config=None):
        where = (["--config", config] if config else
                 ["--server", f"127.0.0.1:{server.https}", "--fingerprint",
                  server.fingerprint()])
        self.proc = nt.Proc(name, [nt.NAVE, "support", "connect", sid, "--service", service,
                                   "--to", "127.0.0.1:0"] + where,
                            tmp_path / f"{name}.log", tmp_path)
        self.proc.env = dict(os.environ, NAVE_SUPPORT_PSK=psk)  # the key stays out of ps
        procs.append(self.proc)
        self.proc.start()
        pat = re.compile(rf"^support session {sid}: connect to 127\.0\.0\.1:(\d+) for "
                         rf"service {service}$", re.M)
        nt.wait_for(lambda: pat.search(self.proc.output()), 10, "the ready line")
        self.port = int(pat.search(self.proc.output()).group(1))

    def lines(self):
        return [ln for ln in self.proc.output().splitlines() if not ln.startswith("====")]

    def wait_exit(self, timeout=15):
        rc = self.proc.wait(timeout)
        assert rc is not None, "nave support connect did not exit"
        return rc


def audit(server, sid):
    return server.navectl("support", "show", sid, json=True)["audit"]


def test_before_approval_then_through(server, client, procs, tmp_path):
    require_service_index(server, client)
    ssh = nt.Service(nt.h_exchange, "ssh")
    web = nt.Service(nt.h_exchange, "web")
    try:
        sid, psk = request(client, f"ssh=127.0.0.1:{ssh.port},web=127.0.0.1:{web.port}")

        # not approved: the first connection's refusal is one line and exit 1
        sup = Supporter(server, procs, tmp_path, sid, psk, "ssh", "sup-early")
        with nt.connect(sup.port) as s:
            assert nt.closed_by_peer(s, timeout=10)
        assert sup.wait_exit() == 1
        errs = [ln for ln in sup.lines() if ln.startswith("nave: ")]
        assert errs == [f"nave: server refused: support session {sid} is not approved yet"], \
            sup.lines()

        assert server.navectl("support", "approve", sid)[0] == 0

        # a wrong key: the edge compares the key's hash and refuses
        wrong = ("A" * 51) + "Q"
        sup = Supporter(server, procs, tmp_path, sid, wrong, "ssh", "sup-wrong")
        with nt.connect(sup.port) as s:
            assert nt.closed_by_peer(s, timeout=10)
        assert sup.wait_exit() == 1
        assert f"nave: server refused: wrong key for support session {sid}" in sup.lines()

        # a service the request did not name: refused by relayd
        sup = Supporter(server, procs, tmp_path, sid, psk, "ftp", "sup-ftp")
        with nt.connect(sup.port) as s:
            assert nt.closed_by_peer(s, timeout=10)
        assert sup.wait_exit() == 1
        assert (f'nave: server refused: service "ftp" is not offered by support session '
                f"{sid}") in sup.lines()

        # the right key: 1 MiB each way to ssh, byte for byte, twice, and nothing to web
        sup = Supporter(server, procs, tmp_path, sid, psk, "ssh", "sup-ok")
        assert nt.exchange(sup.port, MIB)
        assert nt.exchange(sup.port, 1000)
        assert web.accepted == 0 and ssh.accepted == 2
        assert not ssh.errors, ssh.errors
        nt.wait_for(lambda: sum("closed after" in ln for ln in sup.lines()) == 2, 10,
                    "both connections' closing lines")
        assert any(re.search(rf"connection 1 closed after \d+ ms: ended by both sides "
                             rf"\({MIB + 8} bytes sent, {MIB + 64} received\)", ln)
                   for ln in sup.lines()), sup.lines()
        dev = client.proc.output()
        assert re.search(rf"support session {sid}: stream \d+ connected to 127\.0\.0\.1:"
                         rf"{ssh.port}", dev), nt.tail(dev)

        # the audit trail: where each came from, and the bytes of each
        def two_disconnected():
            return sum(a["event"] == "disconnected" for a in audit(server, sid)) >= 2
        nt.wait_for(two_disconnected, 10, "two disconnected records")
        trail = audit(server, sid)
        conn = [a["detail"] for a in trail if a["event"] == "connected"]
        assert len(conn) == 2 and all(d["service"] == "ssh" for d in conn), conn
        assert all(d["source"].startswith("127.0.0.1:") for d in conn), conn
        gone = [a["detail"] for a in trail if a["event"] == "disconnected"]
        big = max(gone, key=lambda d: d["bytes_up"])
        # the edge counts what it relayed: the records, a little more than the data
        assert MIB < big["bytes_up"] < MIB + MIB // 10, big
        assert MIB < big["bytes_down"] < MIB + MIB // 10, big
        refused = [a["detail"] for a in trail if a["event"] == "refused"]
        assert refused, trail

        # SIGTERM: a clean stop
        assert sup.proc.stop() == 0
        # the key never reached the supporter's own log or the edge's
        for text in (sup.proc.output(), server.relayd.output(), server.controld.output()):
            assert psk not in text and psk.replace("-", "") not in text
    finally:
        ssh.close()
        web.close()


def test_owner_end_drops_open_connection(server, client, procs, tmp_path):
    require_service_index(server, client)
    echo = nt.Service(nt.h_echo, "echo")
    try:
        sid, psk = request(client, f"echo=127.0.0.1:{echo.port}")
        assert server.navectl("support", "approve", sid)[0] == 0
        # the server and its fingerprint from a client config this time
        sup = Supporter(server, procs, tmp_path, sid, psk, "echo", config=client.ini)
        open_ = []
        for _ in range(2):
            s = nt.connect(sup.port)
            s.sendall(b"ping")
            assert nt.recv_exact(s, 4) == b"ping"
            open_.append(s)
        nt.wait_for(lambda: client.proc.output().count(f"support session {sid}: stream") >= 2,
                    10, "the device's two streams")

        t0 = time.monotonic()
        p = client.nave("support", "end", sid)
        assert p.returncode == 0, p.stderr
        for s in open_:
            how = nt.closed_by_peer(s, timeout=5)
            assert how in ("eof", "reset"), how
            s.close()
        assert time.monotonic() - t0 < 5
        # the device closed its side itself, not only the edge
        nt.wait_for(lambda: re.search(rf"support session {sid}: ended: \d connections? closed",
                                      client.proc.output()), 10, "the device's line")

        # a later connection is refused with one line; the command goes on (not the first)
        with nt.connect(sup.port) as s:
            assert nt.closed_by_peer(s, timeout=10)
        nt.wait_for(lambda: f"nave: server refused: support session {sid} was ended"
                    in sup.lines(), 10, "the refusal line")
        assert sup.proc.alive()
        assert sup.proc.stop() == 0

        def disconnected():
            return [a["detail"] for a in audit(server, sid) if a["event"] == "disconnected"]
        nt.wait_for(lambda: len(disconnected()) == 2, 10, "two disconnected records")
        assert all(d["bytes_up"] > 0 and d["bytes_down"] > 0 for d in disconnected())
    finally:
        echo.close()


def test_operator_end(server, client, procs, tmp_path):
    """The operator ends an approved session: the open connection drops, the device hears
    support_closed and forgets the key, a new connect is refused."""
    require_service_index(server, client)
    echo = nt.Service(nt.h_echo, "echo")
    try:
        sid, psk = request(client, f"echo=127.0.0.1:{echo.port}")
        assert server.navectl("support", "approve", sid)[0] == 0
        sup = Supporter(server, procs, tmp_path, sid, psk, "echo")
        s = nt.connect(sup.port)
        s.sendall(b"hello")
        assert nt.recv_exact(s, 5) == b"hello"
        assert server.navectl("support", "end", sid)[0] == 0
        assert nt.closed_by_peer(s, timeout=5) in ("eof", "reset")
        s.close()
        # the device forgets the key, and its end of the stream is gone (whichever came
        # first: relayd's cut or the device's own close on support_closed)
        nt.wait_for(lambda: f"support session {sid} closed by the server" in
                    client.proc.output(), 10, "the device's support_closed line")
        nt.wait_for(lambda: re.search(rf"support session {sid}: stream \d+ closed after",
                                      client.proc.output()), 10, "the device's stream closed")
        with nt.connect(sup.port) as s2:
            assert nt.closed_by_peer(s2, timeout=10)
        nt.wait_for(lambda: f"nave: server refused: support session {sid} was ended"
                    in sup.lines(), 10, "the refusal line")
        assert sup.proc.stop() == 0
    finally:
        echo.close()


def test_usage(client):
    p = nt.run([nt.NAVE, "support", "connect", "sup-abcdefgh12", "--to", "2222",
                "--server", "127.0.0.1:1", "--fingerprint", "AB" * 32])
    assert p.returncode == 2 and "needs --service NAME" in p.stderr
    p = nt.run([nt.NAVE, "support", "connect", "sup-abcdefgh12", "--service", "ssh", "--to",
                "2222", "--server", "127.0.0.1:1", "--fingerprint", "AB" * 32, "--psk", "x"])
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "bad --psk" in p.stderr
    p = nt.run([nt.NAVE, "support", "connect", "sup-BAD", "--service", "ssh", "--to", "2222"])
    assert p.returncode == 2 and "bad support session id" in p.stderr
    p = nt.run([nt.NAVE, "support", "connect", "--help"])
    assert p.returncode == 0 and "--psk-file" in p.stdout


def test_expiry_drops_and_refuses(server, client, procs, tmp_path):
    """A session that expires: its open connection drops at the expiry, a new one is
    refused ("... has expired"), and the audit says who ended it: the expiry. The
    shortest expiry the CLI takes is a minute, so this test waits one."""
    echo = nt.Service(nt.h_echo, "echo")
    try:
        p = client.nave("support", "request", "--json", "--expires", "1m", "--allow",
                        f"echo=127.0.0.1:{echo.port}")
        assert p.returncode == 0, p.stderr
        r = json.loads(p.stdout)
        sid, psk = r["id"], r["psk"]
        assert server.navectl("support", "approve", sid)[0] == 0
        sup = Supporter(server, procs, tmp_path, sid, psk, "echo")
        s = nt.connect(sup.port)
        s.sendall(b"still here")
        assert nt.recv_exact(s, 10) == b"still here"
        left = r["expires_at"] - time.time()
        assert 0 < left <= 61, r
        # open until the expiry, gone within a few seconds after it
        s.settimeout(left + 8)
        how = nt.closed_by_peer(s, timeout=left + 8)
        assert how in ("eof", "reset"), how
        assert time.time() >= r["expires_at"] - 1, "closed before the session expired"
        s.close()
        with nt.connect(sup.port) as s2:
            assert nt.closed_by_peer(s2, timeout=10)
        nt.wait_for(lambda: f"nave: server refused: support session {sid} has expired"
                    in sup.lines(), 10, "the refusal line")
        assert sup.proc.stop() == 0
        # controld looks for expired sessions once a second
        nt.wait_for(lambda: [a for a in audit(server, sid)
                             if a["event"] == "ended" and a["actor"] == "expiry"], 10,
                    "the audit's ended-by-expiry record")
    finally:
        echo.close()

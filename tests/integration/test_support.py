# SPDX-License-Identifier: Apache-2.0
"""Support sessions from the device's side, end to end: a running `nave` asks the edge for a
session (`nave support request`), relayd checks it and passes it to nave-controld under the
session's tunnel id, the operator sees it pending with its reason and service names only
(`navectl support ls`), approves it, and the owner (`nave support end`) or the operator
(`navectl support end`) ends it; the operator's end reaches the device as support_closed and
the device forgets the key. The key and the services' targets never reach the edge: neither
controld's database nor a daemon's log holds them. Bad input is one line (exit 2 for usage),
a stopped client is one line, and relayd answers a client whose HELLO does not name the
"support" feature with req_error."""
import base64
import json
import re
import socket
import struct
import time

import pytest

import navetest as nt

ID_RE = re.compile(r"^sup-[a-z0-9]{10}$")
PSK_RE = re.compile(r"^[A-Z2-7]{4}(-[A-Z2-7]{4}){12}$")
LIMIT_LINE = "this tunnel has 4 support sessions pending or approved already (at most 4)"
NO_FEATURE = 'support sessions need a client that names the "support" feature in its HELLO'


def request(client, *args):
    return client.nave("support", "request", *args)


def request_json(client, allow="ssh=127.0.0.1:22,web=127.0.0.1:8080", *args):
    p = request(client, "--json", "--allow", allow, *args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def device_ls(client):
    p = client.nave("--json", "support", "ls")
    assert p.returncode == 0, p.stderr
    return {s["id"]: s for s in json.loads(p.stdout)}


def edge_ls(server):
    return {s["id"]: s for s in server.navectl("support", "ls", json=True)["items"]}


def psk_forms(psk):
    """The ways a PSK could be written down: formatted, bare base32, the raw bytes."""
    bare = psk.replace("-", "")
    raw = base64.b32decode(bare + "====")[:32]
    return [psk.encode(), bare.encode(), bare.lower().encode(), raw, raw.hex().encode()]


def db_bytes(server):
    """Every byte of controld's database files (the WAL too)."""
    return b"".join(p.read_bytes() for p in (server.dir / "var").glob("nave.db*"))


def one_line(p):
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert p.stdout == "", p.stdout
    return lines[0]


def test_request_approve_show_end(server, client):
    before = int(time.time())
    r = request_json(client, "ssh=127.0.0.1:22,web=127.0.0.1:8080", "--reason",
                     "printer is on fire", "--expires", "3h")
    assert set(r) == {"id", "psk", "expires_at", "services"}, r
    sid, psk = r["id"], r["psk"]
    assert ID_RE.match(sid), sid
    assert PSK_RE.match(psk), psk
    assert r["services"] == ["ssh", "web"]
    assert before + 3 * 3600 - 5 <= r["expires_at"] <= int(time.time()) + 3 * 3600 + 5

    # the operator's view: pending, its reason and names, never a target
    rc, out, err = server.navectl("support", "ls", json=None)
    assert rc == 0, err
    s = edge_ls(server)[sid]
    assert s["state"] == "pending" and s["tunnel_id"] == client.tunnel_id
    assert s["reason"] == "printer is on fire" and s["services"] == ["ssh", "web"]
    for secret in ("127.0.0.1", ":22", ":8080"):
        assert secret not in out
    rc, text, _ = server.navectl("support", "ls")
    assert rc == 0 and sid in text and "printer is on fire" in text and "127.0.0.1" not in text

    # the device's view: the edge's state joined with what only it holds
    d = device_ls(client)[sid]
    assert d["state"] == "pending" and d["held"] is True
    assert d["allow"] == {"ssh": "127.0.0.1:22", "web": "127.0.0.1:8080"}
    assert d["reason"] == "printer is on fire" and d["approved_by"] is None

    # nothing of the key or the targets at the edge, nor in any log
    db = db_bytes(server)
    assert b"127.0.0.1:22" not in db and b"127.0.0.1:8080" not in db
    logs = [server.controld.output(), server.relayd.output(), client.proc.output()]
    for form in psk_forms(psk):
        assert form not in db
        for text in logs:
            assert form.decode(errors="replace") not in text
    assert sid in server.relayd.output()  # relayd did pass it on

    assert server.navectl("support", "approve", sid)[0] == 0
    d = device_ls(client)[sid]
    assert d["state"] == "approved" and d["approved_by"] == "local" and d["held"] is True
    p = client.nave("support", "ls")
    assert p.returncode == 0 and "approved by local" in p.stdout
    assert "ssh=127.0.0.1:22" in p.stdout and "held" in p.stdout

    p = client.nave("support", "end", sid)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"ended support session {sid}"
    show = server.navectl("support", "show", sid, json=True)
    assert show["state"] == "ended" and show["ended_by"] == f"tunnel:{client.tunnel_id}"
    # what relayd told controld: the request's detail with the control link's address
    assert show["audit"][0]["detail"] == {
        "reason": "printer is on fire", "services": ["ssh", "web"], "expires": 3 * 3600,
        "source": "127.0.0.1"}, show["audit"][0]
    events = [(a["event"], a["actor"]) for a in show["audit"]]
    assert events == [("requested", f"tunnel:{client.tunnel_id}"), ("approved", "local"),
                      ("ended", f"tunnel:{client.tunnel_id}")], events
    d = device_ls(client)[sid]
    assert d["state"] == "ended" and d["held"] is False and "allow" not in d
    # ending it again: the edge's line
    p = client.nave("support", "end", sid)
    assert p.returncode == 1 and "was ended" in one_line(p)


def test_text_output_and_operator_end(server, client):
    p = request(client, "--allow", "web=[::1]:8080", "--reason", "Grüße, der Drucker")
    assert p.returncode == 0, p.stderr
    sid = re.search(r"^support session: (sup-[a-z0-9]{10})$", p.stdout, re.M).group(1)
    assert PSK_RE.match(re.search(r"^pre-shared key:  (\S+)$", p.stdout, re.M).group(1))
    assert f"navectl support approve {sid}" in p.stdout
    assert "another channel" in p.stdout and "shown only now" in p.stdout
    assert device_ls(client)[sid]["allow"] == {"web": "[::1]:8080"}
    assert edge_ls(server)[sid]["reason"] == "Grüße, der Drucker"

    # the operator denies the pending one: the device hears it and forgets the key
    assert server.navectl("support", "end", sid)[0] == 0
    nt.wait_for(lambda: f"support session {sid} closed by the server: denied by the operator"
                in client.proc.output(), 20, "the device's support_closed line")
    d = device_ls(client)[sid]
    assert d["state"] == "ended" and d["held"] is False

    # an approved one ended by the operator: the same
    sid = request_json(client)["id"]
    assert server.navectl("support", "approve", sid)[0] == 0
    assert server.navectl("support", "end", sid)[0] == 0
    nt.wait_for(lambda: f"support session {sid} closed by the server: ended by the operator"
                in client.proc.output(), 20, "the device's support_closed line")
    assert device_ls(client)[sid]["held"] is False
    assert f"support session {sid} closed: ended by the operator" in server.relayd.output()


def test_limit_of_four(server, client):
    ids = [request_json(client, f"s{i}=127.0.0.1:{2000 + i}")["id"] for i in range(4)]
    p = request(client, "--allow", "ssh=127.0.0.1:22")
    assert p.returncode == 1
    assert one_line(p) == f"nave: {LIMIT_LINE}"
    assert len(set(ids)) == 4 and set(ids) <= set(device_ls(client))
    # the refused one is not held: ending one makes room again
    assert client.nave("support", "end", ids[0]).returncode == 0
    new = request_json(client)["id"]
    held = {k for k, v in device_ls(client).items() if v["held"]}
    assert held == set(ids[1:]) | {new}


def local_ask(client, obj):
    """One request on the running client's local socket, as nave's commands send them."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(nt.IO_TIMEOUT)
    s.connect(str(client.sock))
    try:
        nt.msg_send(s, obj)
        return nt.msg_recv(s)
    finally:
        s.close()


@pytest.mark.parametrize("args, line", [
    ([], "support request needs --allow NAME=HOST:PORT[,...]"),
    (["--allow", "ssh"], 'bad --allow: services: entry 1 "ssh": not NAME=HOST:PORT'),
    (["--allow", "ssh=127.0.0.1:0"], "bad --allow"),
    (["--allow", "a b=127.0.0.1:22"], "bad --allow"),
    (["--allow", "ssh=127.0.0.1:22,ssh=127.0.0.1:23"], "bad --allow"),
    (["--allow", ",".join(f"s{i}=127.0.0.1:{i + 1}" for i in range(9))], "bad --allow"),
    (["--allow", "x" * 32 + "=127.0.0.1:22"], "bad --allow"),
    (["--allow", "ssh=127.0.0.1:22", "--expires", "59s"], "bad --expires '59s'"),
    (["--allow", "ssh=127.0.0.1:22", "--expires", "8d"], "bad --expires '8d'"),
    (["--allow", "ssh=127.0.0.1:22", "--expires", "2x"], "bad --expires '2x'"),
    (["--allow", "ssh=127.0.0.1:22", "--reason", "a\nb"], "bad --reason"),
    (["--allow", "ssh=127.0.0.1:22", "--reason", "x" * 201], "bad --reason"),
    (["--allow", "ssh=127.0.0.1:22", "--bogus"], "support request: unknown option '--bogus'"),
    (["--allow", "ssh=127.0.0.1:22", "extra"], "support request: unexpected argument 'extra'"),
])
def test_bad_request_usage(client, args, line):
    p = request(client, *args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert line in one_line(p)


def test_bad_input(server, client):
    for args, line in [
        (["end"], "support end needs one session ID"),
        (["end", "sup-ABCDEFGHIJ"], "bad session ID 'sup-ABCDEFGHIJ'"),
        (["end", "sup-\x1b[31mred"], "bad session ID 'sup-\\x1b[31mred'"),
        (["ls", "x"], "support ls: unexpected argument 'x'"),
        (["frob"], "unknown support command 'frob'"),
        ([], "support needs a command: request, ls, end or connect"),
    ]:
        p = client.nave("support", *args)
        assert p.returncode == 2, (args, p.stderr)
        assert line in one_line(p), args
    # 200 characters are fine, in any script
    assert request_json(client, "ssh=127.0.0.1:22", "--reason", "ü" * 200)["id"]
    # an unknown session: the edge's line, exit 1
    p = client.nave("support", "end", "sup-0000000000")
    assert p.returncode == 1 and one_line(p) == "nave: no support session sup-0000000000"
    # the running client checks what reaches its socket too
    for req, err in [
        ({"expires": 30, "allow": "ssh=127.0.0.1:22"}, "bad expires: 1 minute to 7 days"),
        ({"expires": 600, "allow": "ssh"}, "not NAME=HOST:PORT"),
        ({"expires": 600, "allow": "ssh=127.0.0.1:22", "reason": "\x07"}, "bad reason"),
        ({"expires": 600, "allow": "ssh=127.0.0.1:22", "reason": 5}, "bad reason"),
    ]:
        a = local_ask(client, dict(type="support_request", **req))
        assert a["ok"] is False and err in a["error"], a
    a = local_ask(client, {"type": "support_end", "id": "../x"})
    assert a["ok"] is False and "bad support session id" in a["error"]
    assert client.proc.alive()


def test_stopped_client(server, make_client):
    c = make_client("stopped", start=False)
    for args in (["request", "--allow", "ssh=127.0.0.1:22"], ["ls"], ["end", "sup-0123456789"]):
        p = c.nave("support", *args)
        assert p.returncode == 1, p.stderr
        assert one_line(p) == ("nave: the client is not running: support sessions need a "
                               "running tunnel")


def test_restarts(server, client):
    """A client restart forgets its sessions (the edge keeps them); a relayd restart does
    not lose the way to the device: the client lists its sessions after the WELCOME."""
    old = request_json(client)["id"]
    client.stop()
    client.start()
    d = device_ls(client)[old]
    assert d["state"] == "pending" and d["held"] is False
    assert client.nave("support", "end", old).returncode == 0  # still its owner

    sid = request_json(client)["id"]
    server.restart_relayd()
    client.wait_online()
    nt.wait_for(lambda: device_ls(client)[sid]["held"], 20, "the session held after relayd's restart")
    assert server.navectl("support", "end", sid)[0] == 0
    nt.wait_for(lambda: f"support session {sid} closed by the server: denied by the operator"
                in client.proc.output(), 20, "support_closed after relayd's restart")


class Link:
    """A hand-made control link (HELLO with the features given), one request at a time."""

    def __init__(self, server, token, features):
        self.s = nt.tls_connect(server.https)
        h = nt.hello(token)
        if features is not None:
            h["features"] = features
        nt.msg_send(self.s, h)
        self.welcome = nt.msg_recv(self.s)
        assert self.welcome["type"] == "welcome", self.welcome
        self.req = 0

    def ask(self, type_, **kw):
        self.req += 1
        nt.msg_send(self.s, {"type": "heartbeat"})
        nt.msg_send(self.s, dict(type=type_, req=self.req, **kw))
        while True:
            m = nt.msg_recv(self.s)
            if m["type"] != "heartbeat_ack":
                assert m.get("req") == self.req, m
                return m

    def close(self):
        self.s.close()


GOOD = dict(expires=600, reason="hi", services=["ssh"], auth_hash="ab" * 32)


def test_old_client_and_relayd_checks(server):
    tok = server.token()["token"]
    old = Link(server, tok, None)
    assert "support" in old.welcome["features"]
    for type_, kw in [("support_request", GOOD), ("support_ls", {}),
                      ("support_end", {"id": "sup-0123456789"})]:
        m = old.ask(type_, **kw)
        assert m == {"type": "req_error", "req": old.req, "reason": NO_FEATURE}, m
    old.close()

    link = Link(server, tok, ["support"])
    bad = [
        (dict(GOOD, expires=59), "bad expires: 60 to 604800 seconds (1 minute to 7 days)"),
        (dict(GOOD, expires=604801), "bad expires"),
        (dict(GOOD, expires="600"), "bad expires"),
        (dict(GOOD, reason="a\u0007b"), "bad reason"),
        (dict(GOOD, reason="\u009b"), "bad reason"),
        (dict(GOOD, reason="x" * 201), "bad reason: at most 200 characters"),
        (dict(GOOD, services=[]), "bad services: an array of 1 to 8 service names"),
        (dict(GOOD, services="ssh"), "bad services: an array"),
        (dict(GOOD, services=[f"s{i}" for i in range(9)]), "bad services: an array"),
        (dict(GOOD, services=["a b"]), "bad service name: 1-31 characters"),
        (dict(GOOD, services=["x" * 32]), "bad service name"),
        (dict(GOOD, services=["ssh", "ssh"]), 'services: "ssh" is named twice'),
        (dict(GOOD, auth_hash="AB" * 32), "bad auth_hash: 64 lower-case hex digits"),
        (dict(GOOD, auth_hash="ab" * 31), "bad auth_hash"),
    ]
    for kw, reason in bad:
        m = link.ask("support_request", **kw)
        assert m["type"] == "req_error" and reason in m["reason"], (kw, m)
    m = link.ask("support_end", id="sup-../../x")
    assert m["type"] == "req_error" and "bad support session id" in m["reason"], m
    # a good one goes through, under this link's tunnel (never a tunnel id it names)
    m = link.ask("support_request", tunnel_id="t-00", **GOOD)
    assert m["type"] == "support_granted" and ID_RE.match(m["id"]), m
    assert edge_ls(server)[m["id"]]["tunnel_id"] == link.welcome["tunnel_id"]
    ls = link.ask("support_ls")
    assert [s["id"] for s in ls["sessions"]] == [m["id"]]
    assert set(ls["sessions"][0]) == {"id", "state", "reason", "services", "created_at",
                                      "expires_at", "approved_by", "connections"}
    # the operator's end reaches it unasked
    assert server.navectl("support", "end", m["id"])[0] == 0
    link.s.settimeout(20)
    while True:
        c = nt.msg_recv(link.s)
        if c["type"] != "heartbeat_ack":
            break
    assert c == {"type": "support_closed", "id": m["id"], "why": "denied by the operator"}
    link.close()


# SPDX-License-Identifier: Apache-2.0
"""Remote rule management (navectl tunnels rules, POST/DELETE/GET
/api/v1/tunnels/ID/rules): an operator's rule change goes controld -> relayd
-> the tunnel's client (rule_push), which applies it as `nave tunnel ... add`
would (saved in its config, asked of the server) and answers (rule_result).
Queued in the store while the client is offline and applied, in order, when
it connects. Real daemons, real clients, real services; every byte checked."""
import json
import os
import signal
import socket
import time

import pytest

import navetest as nt
from navetest import KiB


@pytest.fixture
def server_ini():
    return "[ports]\nmax_per_tunnel = 5\n"


def rules_add(server, tid, kind, *args, wait=True):
    """navectl tunnels rules add --json [--wait]: (rc, op or None, stderr)."""
    cmd = ["tunnels", "rules", "add", tid, kind, *args] + (["--wait"] if wait else [])
    rc, out, err = server.navectl(*cmd, json=None)
    return rc, (json.loads(out) if out.strip() else None), err


def rules_rm(server, tid, name, wait=True):
    cmd = ["tunnels", "rules", "rm", tid, name] + (["--wait"] if wait else [])
    rc, out, err = server.navectl(*cmd, json=None)
    return rc, (json.loads(out) if out.strip() else None), err


def rules_ls(server, tid):
    return server.navectl("tunnels", "rules", "ls", tid, json=True)


def op_state(server, tid, op_id):
    for op in rules_ls(server, tid)["ops"]:
        if op["id"] == op_id:
            return op
    raise nt.Failure(f"operation {op_id} not listed for {tid}")


def wait_op(server, tid, op_id, timeout=30):
    return nt.wait_for(
        lambda: (lambda o: o if o["state"] != "pending" else False)(op_state(server, tid, op_id)),
        timeout, f"operation {op_id} answered")


def config_sections(c):
    return [line.strip() for line in c.ini.read_text().splitlines() if line.startswith("[")]


def test_tcp_rule_added_and_removed_remotely(server, make_client, services):
    c = make_client("dev")
    s = services(nt.h_exchange, "svc")
    rc, op, err = rules_add(server, c.tunnel_id, "tcp", "--name", "web", "--to",
                            f"127.0.0.1:{s.port}")
    assert rc == 0, err
    assert op["state"] == "applied" and op["action"] == "add" and op["kind"] == "tcp", op
    port = op["port"]
    assert server.port_min <= port <= server.port_max
    nt.exchange(port, 256 * KiB)
    # saved in the client's config as a local `nave tunnel tcp add` would be
    text = c.ini.read_text()
    assert "[tcp.web]" in text and f"to = 127.0.0.1:{s.port}" in text, text
    assert f"port = {port}" in text, text
    rules = {r["name"]: r for r in c.status()["rules"]}
    assert rules["web"]["state"] == "active" and rules["web"]["port"] == port, rules
    ls = rules_ls(server, c.tunnel_id)
    assert {"name": "web", "kind": "tcp", "port": port} in ls["rules"], ls
    assert ls["online"] is True and ls["pending"] == 0, ls
    log = c.proc.output()
    assert "remote rule change from the server" in log and "add tcp rule web" in log, nt.tail(log)

    rc, op, err = rules_rm(server, c.tunnel_id, "web")
    assert rc == 0, err
    assert op["state"] == "applied" and op["action"] == "rm", op
    assert nt.wait_port_closed(port) in ("refused", "reset")
    assert "[tcp.web]" not in c.ini.read_text()
    assert "remove rule web" in c.proc.output()
    nt.wait_for(lambda: server.ports(c.tunnel_id) == [], 15, "the port released")


def test_offline_client_applies_queued_ops_in_order(server, make_client, services):
    c = make_client("dev")
    s = services(nt.h_exchange, "svc")
    tid = c.tunnel_id
    c.stop()
    nt.wait_for(lambda: not rules_ls(server, tid)["online"], 15, "the tunnel offline")
    # queued: add a, add b, remove a; nothing can happen before the client is back
    rc, a, err = rules_add(server, tid, "tcp", "--name", "a", "--to", f"127.0.0.1:{s.port}",
                           wait=False)
    assert rc == 0 and a["state"] == "pending" and a["sent"] is False, (rc, a, err)
    rc, b, err = rules_add(server, tid, "tcp", "--name", "b", "--to", f"127.0.0.1:{s.port}",
                           wait=False)
    assert rc == 0, err
    rc, rm, err = rules_rm(server, tid, "a", wait=False)
    assert rc == 0 and rm["state"] == "pending", err
    ls = rules_ls(server, tid)
    assert [o["id"] for o in ls["ops"]] == [a["id"], b["id"], rm["id"]], ls
    assert ls["pending"] == 3 and ls["online"] is False, ls
    rc, out, _ = server.navectl("tunnels", "rules", "ls", tid)
    assert rc == 0 and "pending" in out and "offline" in out, out
    # the queue is in the store: a controld restart keeps it
    server.restart_controld()
    assert [o["state"] for o in rules_ls(server, tid)["ops"]] == ["pending"] * 3

    c.start()
    for op in (a, b, rm):
        assert wait_op(server, tid, op["id"])["state"] == "applied"
    done = {o["id"]: o for o in rules_ls(server, tid)["ops"]}
    # applied in order: a's add before its removal, b still there
    assert done[a["id"]]["updated_at"] <= done[rm["id"]]["updated_at"]
    sections = config_sections(c)
    assert "[tcp.b]" in sections and "[tcp.a]" not in sections, sections
    pb = done[b["id"]]["port"]
    nt.exchange(pb, 64 * KiB)
    assert [r["name"] for r in c.status()["rules"]] == ["b"]
    if done[a["id"]]["port"] != pb:
        assert nt.wait_port_closed(done[a["id"]]["port"]) in ("refused", "reset")
    # the same operations survive a controld restart as the record of what was done
    server.restart_controld()
    assert [o["state"] for o in rules_ls(server, tid)["ops"]] == ["applied"] * 3


def h_page(body):
    def handler(conn, svc):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = conn.recv(4096)
            if not d:
                return
            buf += d
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % len(body) + body)
        conn.close()

    return handler


def http_get(server, host, path="/"):
    with socket.create_connection(("127.0.0.1", server.http), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


def test_link_lost_before_the_grant(server, make_client, services):
    """A remote TCP add under way when the link drops (controld stopped, so no grant comes;
    then relayd restarted): after the reconnect the operation ends applied and bytes flow."""
    c = make_client("dev")
    s = services(nt.h_exchange, "svc")
    tid = c.tunnel_id
    for attempt in range(3):
        name = f"web{attempt}"
        st, op = server.api("POST", f"/api/v1/tunnels/{tid}/rules",
                            {"kind": "tcp", "name": name, "to": f"127.0.0.1:{s.port}"})
        assert st == 202, op
        os.kill(server.controld.pid, signal.SIGSTOP)  # the client's tcp_add gets no grant
        try:
            nt.wait_for(lambda: f"(operation {op['id']})" in c.proc.output(), 10,
                        "the push at the client")
            time.sleep(0.3)
            rules = {r["name"]: r for r in c.status()["rules"]}
            if not rules[name].get("port"):
                server.relayd.kill()  # the link drops before the grant
                break
        finally:
            os.kill(server.controld.pid, signal.SIGCONT)
        wait_op(server, tid, op["id"])  # granted already: once more
    else:
        pytest.skip("the grant always came before controld stopped")
    nt.wait_for(lambda: "lost the connection to the server; the rule is saved" in
                c.proc.output(), 15, "the client's lost answer")
    server.start_relayd()
    done = wait_op(server, tid, op["id"])
    assert done["state"] == "applied", done
    assert f"[tcp.{name}]" in c.ini.read_text()
    port = nt.wait_for(lambda: {r["name"]: r for r in c.status()["rules"]}[name].get("port"),
                       15, "the rule granted again")
    nt.exchange(port, 64 * KiB)


def test_http_rule_added_remotely_reaches_the_service(server, make_client, services):
    c = make_client("dev")
    body = b"remote rule page " + bytes(range(32, 127))
    s = services(h_page(body), "web")
    rc, op, err = rules_add(server, c.tunnel_id, "http", "--name", "site", "--domain",
                            "App.Remote.Test", "--to", f"127.0.0.1:{s.port}")
    assert rc == 0 and op["state"] == "applied", (op, err)
    assert op["rule"]["domain"] == "app.remote.test", op  # normalised where it entered
    status, got = http_get(server, "app.remote.test")
    assert status.endswith("200 OK") and got == body, (status, got[:100])
    assert "[http.site]" in c.ini.read_text()
    assert {"name": "site", "kind": "http", "domain": "app.remote.test"} in \
        rules_ls(server, c.tunnel_id)["rules"]
    rc, op, err = rules_rm(server, c.tunnel_id, "site")
    assert rc == 0 and op["state"] == "applied", err
    nt.wait_for(lambda: http_get(server, "app.remote.test")[0].split(" ")[1] == "404", 15,
                "the domain to stop routing")
    assert "[http.site]" not in c.ini.read_text()


def test_http_rule_with_basic_auth_pushed_as_its_hash(server, make_client, services):
    """basic_auth travels as the hash nave stores, never a password, and no answer of
    the API shows the hash."""
    import base64
    helper = make_client("hasher", start=False)
    p = helper.nave("tunnel", "http", "add", "--name", "h", "--domain", "h.test", "--to",
                    "127.0.0.1:1", "--basic-auth", "alice:s3cret")
    assert p.returncode == 0, p.stderr
    line = [x for x in helper.ini.read_text().splitlines() if x.startswith("basic_auth = ")][0]
    stored = line.split(" = ", 1)[1]
    assert stored.startswith("alice:$scrypt$"), stored
    c = make_client("dev")
    body = b"behind basic auth"
    s = services(h_page(body), "web")
    st, op = server.api("POST", f"/api/v1/tunnels/{c.tunnel_id}/rules",
                        {"kind": "http", "name": "priv", "domain": "priv.test",
                         "to": f"127.0.0.1:{s.port}", "basic_auth": stored})
    assert st == 202, op
    done = wait_op(server, c.tunnel_id, op["id"])
    assert done["state"] == "applied", done
    for answer in (op, done, rules_ls(server, c.tunnel_id)):
        assert "$scrypt$" not in json.dumps(answer), answer
    assert done["rule"]["basic_auth_user"] == "alice", done
    assert f"basic_auth = {stored}" in c.ini.read_text()
    status, _ = http_get(server, "priv.test")
    assert " 401 " in status + " ", status
    with socket.create_connection(("127.0.0.1", server.http), timeout=10) as sk:
        cred = base64.b64encode(b"alice:s3cret").decode()
        sk.sendall(f"GET / HTTP/1.1\r\nHost: priv.test\r\nAuthorization: Basic {cred}\r\n"
                   "Connection: close\r\n\r\n".encode())
        data = b""
        while (d := sk.recv(65536)):
            data += d
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(body), data[:200]


def test_refused_ops_fail_with_the_clients_reason(server, make_client, services):
    c = make_client("dev")
    s = services(nt.h_exchange, "svc")
    tid = c.tunnel_id
    # a `to` the client cannot use
    rc, op, err = rules_add(server, tid, "tcp", "--name", "nowhere", "--to",
                            "no-such-host.invalid:80")
    assert rc == 1 and op["state"] == "failed", (op, err)
    assert "cannot resolve no-such-host.invalid" in op["reason"], op
    # a port the server refuses (outside the range)
    rc, op, err = rules_add(server, tid, "tcp", "--name", "low", "--to", f"127.0.0.1:{s.port}",
                            "--port", "1")
    assert rc == 1 and op["state"] == "failed", op
    assert op["reason"] == f"port 1 is outside the range {server.port_min}-{server.port_max}", op
    # a port another tunnel holds
    other = make_client("other")
    taken = other.tcp_add(s.port, name="mine")
    rc, op, err = rules_add(server, tid, "tcp", "--name", "steal", "--to",
                            f"127.0.0.1:{s.port}", "--port", str(taken))
    assert rc == 1 and op["state"] == "failed", op
    assert op["reason"] == f"port {taken} is allocated to another tunnel", op
    nt.exchange(taken, 16 * KiB)  # still the other tunnel's
    # a name held by a different rule
    assert c.tcp_add(s.port, name="local") > 0
    rc, op, err = rules_add(server, tid, "tcp", "--name", "local", "--to", "127.0.0.1:9")
    assert rc == 1 and op["reason"] == "a rule with that name exists", op
    # a webroot is refused by default ([client] remote_rules = tcp-http)
    rc, op, err = rules_add(server, tid, "http", "--name", "files", "--domain", "f.test",
                            "--webroot", "/")
    assert rc == 1 and "remote_rules" in op["reason"], op
    # a refused add leaves nothing behind in the client's config
    sections = config_sections(c)
    for name in ("nowhere", "low", "steal", "files"):
        assert f"[tcp.{name}]" not in sections and f"[http.{name}]" not in sections, sections
    # removing a rule the client does not have
    rc, op, err = rules_rm(server, tid, "ghost")
    assert rc == 1 and op["reason"] == "no such rule", op
    rc, out, err = server.navectl("tunnels", "rules", "rm", tid, "ghost", "--wait")
    assert rc == 1 and "failed: no such rule" in out, (out, err)
    log = c.proc.output()
    assert "remote rule operation" in log and "refused" in log, nt.tail(log)


def test_client_limits_and_policy(server, make_client, services):
    """[client] remote_rules = off refuses everything; the client's rule limit holds."""
    s = services(nt.h_exchange, "svc")
    c = make_client("off", start=False)
    c.ini.write_text(c.ini.read_text().replace("remote_rules = tcp-http", "remote_rules = off", 1))
    c.start()
    rc, op, err = rules_add(server, c.tunnel_id, "tcp", "--name", "x", "--to",
                            f"127.0.0.1:{s.port}")
    assert rc == 1 and "remote_rules = off" in op["reason"], op
    assert "[tcp.x]" not in c.ini.read_text()

    full = make_client("full", start=False)
    # 64 rules is the client's limit (CFG_MAX_RULES): the server refuses most of them, but
    # the client holds them all
    full.ini.write_text(full.ini.read_text() + "".join(
        f"[tcp.r{i}]\nto = 127.0.0.1:{s.port}\n" for i in range(64)))
    full.start()
    rc, op, err = rules_add(server, full.tunnel_id, "tcp", "--name", "one-more", "--to",
                            f"127.0.0.1:{s.port}")
    assert rc == 1 and op["reason"] == "too many rules", op


def test_webroot_when_the_client_opts_in(server, make_client, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_bytes(b"served from the device\n")
    c = make_client("all", start=False)
    c.ini.write_text(c.ini.read_text().replace("remote_rules = tcp-http", "remote_rules = all", 1))
    c.start()
    rc, op, err = rules_add(server, c.tunnel_id, "http", "--name", "files", "--domain",
                            "files.test", "--webroot", str(root))
    assert rc == 0 and op["state"] == "applied", (op, err)
    status, body = http_get(server, "files.test", "/index.html")
    assert status.endswith("200 OK") and body == b"served from the device\n", (status, body)
    # a path the client refuses locally too: no directory there
    rc, op, err = rules_add(server, c.tunnel_id, "http", "--name", "gone", "--domain",
                            "gone.test", "--webroot", str(root / "missing"))
    assert rc == 1 and op["state"] == "failed", op
    assert op["reason"] == f"webroot {root / 'missing'}: No such file or directory", op
    assert "[http.gone]" not in c.ini.read_text()


def test_client_too_old(server):
    """A client whose HELLO names no rule_push feature: the op fails, the link stays."""
    tok = server.token()
    link = nt.ControlLink(server.https, tok["token"]).keepalive()
    try:
        rc, op, err = rules_add(server, link.tunnel_id, "tcp", "--name", "x", "--to",
                                "127.0.0.1:80")
        assert rc == 1 and op["state"] == "failed" and op["reason"] == "client too old", op
        assert rules_ls(server, link.tunnel_id)["online"] is True
    finally:
        link.close()


def test_bad_hello_features_and_bogus_results(server):
    """HELLO features are checked where they enter; a client's rule_result for an
    operation it was not sent, or a malformed one, changes nothing and costs it nothing."""
    tok = server.token()
    for features in ("rule_push", [1], ["a b"], ["x"] * 9, ["x" * 33]):
        s = nt.tls_connect(server.https)
        nt.msg_send(s, dict(nt.hello(tok["token"]), features=features))
        m = nt.msg_recv(s)
        s.close()
        assert m["type"] == "error" and m["reason"].startswith("bad HELLO: features"), m
    link = nt.ControlLink.__new__(nt.ControlLink)
    link.s = nt.tls_connect(server.https)
    nt.msg_send(link.s, dict(nt.hello(tok["token"]), features=["rule_push", "later-thing"]))
    w = nt.msg_recv(link.s)
    assert w["type"] == "welcome", w
    tid = w["tunnel_id"]
    # an operation for this client: it arrives as the link's rule_push, checked and normalised
    st, op = server.api("POST", f"/api/v1/tunnels/{tid}/rules",
                        {"kind": "http", "name": "site", "domain": "A.Test", "to": "10.0.0.1:80"})
    assert st == 202, op
    push = nt.msg_recv(link.s)
    assert push == {"type": "rule_push", "op": op["id"], "action": "add", "kind": "http",
                    "name": "site", "domain": "a.test", "to": "10.0.0.1:80"}, push
    # answers for something else, or malformed: ignored
    for bogus in ({"type": "rule_result", "op": op["id"] + 1000, "ok": True},
                  {"type": "rule_result", "op": "x", "ok": True},
                  {"type": "rule_result", "op": op["id"], "ok": False},
                  {"type": "rule_result", "op": op["id"], "ok": False, "reason": "a\x1bb"},
                  {"type": "rule_result", "op": op["id"], "ok": True, "port": 0}):
        nt.msg_send(link.s, bogus)
    # a flood of answers to operations never pushed to it stops at relayd: controld
    # (one thread, a SELECT and a log line each) never sees them
    for i in range(300):
        nt.msg_send(link.s, {"type": "rule_result", "op": op["id"] + 1 + i, "ok": True})
    nt.msg_send(link.s, {"type": "heartbeat"})
    assert nt.msg_recv(link.s)["type"] == "heartbeat_ack"  # the link stays
    assert op_state(server, tid, op["id"])["state"] == "pending"
    nt.wait_for(lambda: "which is not in flight for it: dropped" in server.relayd.output(),
                10, "relayd dropping the stray results")
    assert "a rule_result for operation" not in server.controld.output()
    # the real answer; the port is the store's word, not the client's
    nt.msg_send(link.s, {"type": "rule_result", "op": op["id"], "ok": False,
                         "reason": "cannot resolve x", "port": 23999})
    done = wait_op(server, tid, op["id"])
    assert done["state"] == "failed" and done["reason"] == "cannot resolve x", done
    assert done["port"] is None, done
    rc, _, _ = server.navectl("status")
    assert rc == 0 and server.controld.alive() and server.relayd.alive()
    link.s.close()


def test_bad_api_input(server):
    tid = server.token()["tunnel_id"]
    base = f"/api/v1/tunnels/{tid}/rules"
    cases = [
        ({"name": "x", "to": "127.0.0.1:80"}, "kind"),
        ({"kind": "udp", "name": "x", "to": "127.0.0.1:80"}, "kind"),
        ({"kind": "tcp", "to": "127.0.0.1:80"}, "name"),
        ({"kind": "tcp", "name": "a b", "to": "127.0.0.1:80"}, "name"),
        ({"kind": "tcp", "name": "x" * 64, "to": "127.0.0.1:80"}, "name"),
        ({"kind": "tcp", "name": "x"}, "to"),
        ({"kind": "tcp", "name": "x", "to": "127.0.0.1"}, "to"),
        ({"kind": "tcp", "name": "x", "to": "127.0.0.1:0"}, "to"),
        ({"kind": "tcp", "name": "x", "to": "a b:80"}, "to"),
        ({"kind": "tcp", "name": "x", "to": "127.0.0.1:80", "port": 70000}, "port"),
        ({"kind": "tcp", "name": "x", "to": "127.0.0.1:80", "port": "1"}, "port"),
        ({"kind": "tcp", "name": "x", "to": "127.0.0.1:80", "proxy_protocol": "v3"},
         "proxy_protocol"),
        ({"kind": "tcp", "name": "x", "to": "127.0.0.1:80", "domain": "a.test"}, "domain"),
        ({"kind": "tcp", "name": "x", "to": "127.0.0.1:80", "colour": "red"}, "colour"),
        ({"kind": "http", "name": "x", "to": "127.0.0.1:80"}, "domain"),
        ({"kind": "http", "name": "x", "domain": "bad..name", "to": "127.0.0.1:80"}, "domain"),
        ({"kind": "http", "name": "x", "domain": "a.test"}, "to"),
        ({"kind": "http", "name": "x", "domain": "a.test", "webroot": "relative/dir"},
         "webroot"),
        ({"kind": "http", "name": "x", "domain": "a.test", "webroot": "/srv/../etc"}, "webroot"),
        ({"kind": "http", "name": "x", "domain": "a.test", "webroot": "/srv\u0007"}, "webroot"),
        ({"kind": "http", "name": "x", "domain": "a.test", "to": "127.0.0.1:80",
          "webroot": "/srv"}, "to"),
        ({"kind": "http", "name": "x", "domain": "a.test", "to": "127.0.0.1:80",
          "host_header": "a b"}, "host_header"),
        ({"kind": "http", "name": "x", "domain": "a.test", "to": "127.0.0.1:80",
          "basic_auth": "user:plaintext"}, "basic_auth"),
        ({"kind": "http", "name": "x", "domain": "a.test", "to": "127.0.0.1:80",
          "tls_passthrough": "yes"}, "tls_passthrough"),
        ({"kind": "http", "name": "x", "domain": "a.test", "to": "127.0.0.1:80",
          "tls_passthrough": True, "redirect_https": True}, "tls_passthrough"),
        ({"kind": "tcp", "name": "x", "to": "127.0.0.1:80", "action": "rm"}, "action"),
    ]
    for body, field in cases:
        st, resp = server.api("POST", base, body)
        assert st == 400 and resp["error"].startswith(field + ":"), (body, st, resp)
    st, resp = server.api("POST", base, None)
    assert st == 400 and resp["error"].startswith("kind:"), resp
    st, resp = server.api("POST", base, ["not", "an", "object"])
    assert st == 400, resp
    st, resp = server.api("DELETE", base + "/bad%20name")
    assert st == 400, resp
    # nothing was queued by any of them
    assert rules_ls(server, tid)["ops"] == []
    # unknown tunnel: 404 for every route
    for method, path, body in (("GET", "/api/v1/tunnels/t-nope/rules", None),
                               ("POST", "/api/v1/tunnels/t-nope/rules",
                                {"kind": "tcp", "name": "x", "to": "127.0.0.1:80"}),
                               ("DELETE", "/api/v1/tunnels/t-nope/rules/x", None)):
        st, resp = server.api(method, path, body)
        assert st == 404 and "unknown tunnel t-nope" in resp["error"], (method, st, resp)
    rc, _, err = server.navectl("tunnels", "rules", "add", "t-nope", "tcp", "--name", "x",
                                "--to", "127.0.0.1:80")
    assert rc == 1 and err.strip() == "navectl: unknown tunnel t-nope", err
    # navectl usage errors: exit 2, one line
    for args in (("add", tid, "tcp", "--to", "127.0.0.1:80"), ("add", tid, "tcp", "--name", "x"),
                 ("add", tid, "udp", "--name", "x", "--to", "127.0.0.1:80"),
                 ("add", tid, "http", "--name", "x", "--domain", "a.test"),
                 ("add", tid), ("rm", tid), ("ls",),
                 ("add", tid, "tcp", "--name", "x", "--to", "127.0.0.1:80", "--port", "x")):
        rc, _, err = server.navectl("tunnels", "rules", *args)
        assert rc == 2 and err.startswith("navectl: "), (args, rc, err)
    for sub in ("add", "rm", "ls"):
        rc, out, _ = server.navectl("tunnels", "rules", sub, "--help")
        assert rc == 0 and out.startswith("usage: navectl"), out
    # a full queue: 409, and nothing lost
    for i in range(64):
        st, resp = server.api("POST", base, {"kind": "tcp", "name": f"q{i}",
                                             "to": "127.0.0.1:80"})
        assert st == 202 and resp["state"] == "pending", resp
    st, resp = server.api("POST", base, {"kind": "tcp", "name": "q64", "to": "127.0.0.1:80"})
    assert st == 409 and "64" in resp["error"], resp
    st, resp = server.api("DELETE", base + "/q0")
    assert st == 409, resp
    ls = rules_ls(server, tid)
    assert ls["pending"] == 64 and len(ls["ops"]) == 64, ls["pending"]
    assert [o["name"] for o in ls["ops"]] == [f"q{i}" for i in range(64)]


# ------------------------------------------------- what a compromised edge can push

from test_webroot import FakeClient, FakeRelay  # noqa: E402  (the stand-in relay of those tests)


class GrantingRelay(FakeRelay):
    """The stand-in relay, granting TCP rules a fixed port: a compromised edge."""

    def _answer(self, s, m):
        if m["type"] == "tcp_add":
            self.send({"type": "tcp_grant", "req": m["req"], "name": m["name"],
                       "port": 23456}, s)
        elif m["type"] == "tcp_rm":
            self.send({"type": "tcp_removed", "req": m["req"], "name": m["name"],
                       "port": m["port"]}, s)
        else:
            super()._answer(s, m)


def test_a_compromised_edge_gets_only_what_a_local_command_would(tmp_path, procs):
    relay = GrantingRelay(tmp_path)
    c = FakeClient(relay, tmp_path, procs)
    try:
        c.start()
        before = c.ini.read_text()

        def push(op, **rule):
            relay.send({"type": "rule_push", "op": op, **rule})
            return nt.wait_for(lambda: [m for m in relay.of_type("rule_result")
                                        if m["op"] == op], 15, f"rule_result {op}")[0]

        bad = [
            ({"action": "add", "kind": "http", "name": "root", "domain": "x.test",
              "webroot": "/"}, "remote webroot rules are off"),
            ({"action": "add", "kind": "tcp", "name": "../x", "to": "127.0.0.1:22"}, "name:"),
            ({"action": "add", "kind": "tcp", "name": "x",
              "to": "127.0.0.1:22\n[client]\ntoken = evil"}, "to:"),
            ({"action": "add", "kind": "tcp", "name": "x", "to": "127.0.0.1:22",
              "exec": "sh"}, "exec: unknown member"),
            ({"action": "add", "kind": "http", "name": "x", "domain": "x.test",
              "webroot": "/srv/../etc"}, "webroot:"),
            ({"action": "add", "kind": "http", "name": "x", "domain": "x.test",
              "to": "127.0.0.1:80", "basic_auth": "admin:admin"}, "basic_auth:"),
            ({"action": "chmod", "name": "x"}, "action:"),
        ]
        for i, (rule, reason) in enumerate(bad, start=1):
            r = push(i, **rule)
            assert r["ok"] is False and reason in r["reason"], (rule, r)
        assert c.ini.read_text() == before  # nothing of it reached the config
        assert relay.of_type("tcp_add") == [] and relay.of_type("http_add") == []
        # a push without a usable op gets no answer at all, and changes nothing
        relay.send({"type": "rule_push", "op": "1", "action": "rm", "name": "x"})
        # a good one is applied as `nave tunnel tcp add` would: asked of the server, saved
        r = push(100, action="add", kind="tcp", name="ssh", to="127.0.0.1:22")
        assert r == {"type": "rule_result", "op": 100, "ok": True, "port": 23456}, r
        assert [m["name"] for m in relay.of_type("tcp_add")] == ["ssh"]
        assert "[tcp.ssh]" in c.ini.read_text() and "port = 23456" in c.ini.read_text()
        # pushed again (a lost answer): applied again, not asked twice
        r = push(101, action="add", kind="tcp", name="ssh", to="127.0.0.1:22")
        assert r["ok"] is True and r["port"] == 23456, r
        assert len(relay.of_type("tcp_add")) == 1
        # the same operation pushed again (its answer lost with a controld restart): the
        # same answer, nothing done twice
        relay.send({"type": "rule_push", "op": 100, "action": "add", "kind": "tcp",
                    "name": "ssh", "to": "127.0.0.1:22"})
        relay.send({"type": "rule_push", "op": 1, "action": "rm", "name": "anything"})
        nt.wait_for(lambda: len(relay.of_type("rule_result")) == len(bad) + 4, 15,
                    "the answers again")
        again = relay.of_type("rule_result")[-2:]
        assert again[0] == {"type": "rule_result", "op": 100, "ok": True, "port": 23456}, again
        assert again[1]["op"] == 1 and again[1]["ok"] is False and \
            "remote webroot rules are off" in again[1]["reason"], again
        assert len(relay.of_type("tcp_add")) == 1
        r = push(102, action="rm", name="ssh")
        assert r["ok"] is True and "[tcp.ssh]" not in c.ini.read_text(), r
        log = c.proc.output()
        assert "remote rule change from the server (operation 100): add tcp rule ssh" in log
        # the newline the edge sent is escaped in the log, never a line of its own
        assert "\ntoken = evil" not in log and "[client]\n" not in log, nt.tail(log)
        nt.check_exit("nave start (fake)", c.proc.stop(), c.proc.output())
    finally:
        relay.close()


class HoldingRelay(GrantingRelay):
    """A relay that asks controld for nothing: TCP adds wait unanswered while hold is set."""

    hold = True

    def _answer(self, s, m):
        if m["type"] == "tcp_add":
            if self.hold:
                return
            # a port of its own for each rule (a client config holds no port twice)
            ports = self.__dict__.setdefault("ports", {})
            port = ports.setdefault(m["name"], 23456 + len(ports))
            self.send({"type": "tcp_grant", "req": m["req"], "name": m["name"],
                       "port": port}, s)
            return
        super()._answer(s, m)


def fake_client(tmp_path, procs, relay, extra=""):
    c = FakeClient(relay, tmp_path, procs)
    if extra:
        c.ini.write_text(c.ini.read_text() + extra)
    c.start()
    return c


def pushed(relay, op, n=1, timeout=15):
    """The first n rule_results for op."""
    return nt.wait_for(lambda: (lambda r: r[:n] if len(r) >= n else False)(
        [m for m in relay.of_type("rule_result") if m["op"] == op]), timeout,
        f"{n} rule_result(s) for {op}")


def test_an_answer_lost_with_the_link_is_not_kept(tmp_path, procs):
    """A remote add under way when the link drops is answered "lost the connection" to
    nobody: pushed again after the reconnect it is applied (the rule is saved and asked
    for again), not failed from a cache."""
    relay = HoldingRelay(tmp_path)
    c = fake_client(tmp_path, procs, relay)
    try:
        relay.send({"type": "rule_push", "op": 7, "action": "add", "kind": "tcp",
                    "name": "ssh", "to": "127.0.0.1:22"})
        nt.wait_for(lambda: relay.of_type("tcp_add"), 15, "the client's tcp_add")
        relay.hold = False
        relay.drop_control()
        nt.wait_for(lambda: len(relay.of_type("tcp_add")) >= 2, 30,
                    "the rule asked for again after the reconnect")
        assert relay.of_type("rule_result") == []  # the lost answer went nowhere
        relay.send({"type": "rule_push", "op": 7, "action": "add", "kind": "tcp",
                    "name": "ssh", "to": "127.0.0.1:22"})
        r = pushed(relay, 7)[0]
        assert r["ok"] is True, r
        assert "[tcp.ssh]" in c.ini.read_text()
        # a remote add the server never answers: failed after 15 s, and forgotten again
        relay.hold = True
        relay.send({"type": "rule_push", "op": 8, "action": "add", "kind": "tcp",
                    "name": "late", "to": "127.0.0.1:23"})
        r = pushed(relay, 8, timeout=30)[0]
        assert r["ok"] is False and "timed out" in r["reason"], r
        assert "[tcp.late]" not in c.ini.read_text()
        assert "late" not in [x["name"] for x in c.status()["rules"]]
        # and not kept: pushed again, it runs again (and is applied when granted)
        relay.hold = False
        relay.send({"type": "rule_push", "op": 8, "action": "add", "kind": "tcp",
                    "name": "late", "to": "127.0.0.1:23"})
        r = pushed(relay, 8, n=2)[1]
        assert r["ok"] is True and r["port"] == relay.ports["late"], r
        nt.check_exit("nave start (fake)", c.proc.stop(), c.proc.output())
    finally:
        relay.close()


def test_cached_answers_belong_to_one_tunnel(tmp_path, procs):
    """Op ids are an edge database's: after a reconnect as another tunnel id, an op id seen
    before is a new operation."""
    relay = GrantingRelay(tmp_path)
    c = fake_client(tmp_path, procs, relay)
    try:
        relay.send({"type": "rule_push", "op": 1, "action": "add", "kind": "http",
                    "name": "root", "domain": "x.test", "webroot": "/"})
        assert pushed(relay, 1)[0]["ok"] is False
        relay.tunnel_id = "t-other"
        relay.drop_control()
        nt.wait_for(lambda: c.status().get("tunnel_id") == "t-other", 30, "the new tunnel id")
        relay.send({"type": "rule_push", "op": 1, "action": "add", "kind": "tcp",
                    "name": "ssh", "to": "127.0.0.1:22"})
        r = pushed(relay, 1, n=2)[1]
        assert r == {"type": "rule_result", "op": 1, "ok": True, "port": 23456}, r
        assert "forgetting 1 cached answer(s)" in c.proc.output()
        nt.check_exit("nave start (fake)", c.proc.stop(), c.proc.output())
    finally:
        relay.close()


def test_remote_to_webroot_rm_and_one_op_at_a_time(tmp_path, procs):
    """[client] remote_to narrows what a remote add may publish; tcp-http does not let the
    edge remove a webroot rule of the device; one remote operation at a time, so the local
    socket keeps its slots."""
    root = tmp_path / "www"
    root.mkdir()
    relay = HoldingRelay(tmp_path)
    relay.grant = {"site.test": 9}
    c = fake_client(tmp_path, procs, relay,
                    "remote_to = 127.0.0.1:*, *:8080\n"
                    f"[http.site]\ndomain = site.test\nwebroot = {root}\n")
    try:
        relay.hold = False
        for op, to, ok in ((1, "10.0.0.1:22", False), (2, "127.0.0.1:22", True),
                           (3, "10.0.0.1:8080", True), (4, "localhost:22", False)):
            relay.send({"type": "rule_push", "op": op, "action": "add", "kind": "tcp",
                        "name": f"r{op}", "to": to})
            r = pushed(relay, op)[0]
            assert r["ok"] is ok, (to, r)
            if not ok:
                assert r["reason"] == f"{to} is not allowed by [client] remote_to on this " \
                    "client", r
        relay.send({"type": "rule_push", "op": 5, "action": "add", "kind": "http",
                    "name": "h", "domain": "h.test", "to": "10.0.0.1:80"})
        assert "remote_to" in pushed(relay, 5)[0]["reason"]
        text = c.ini.read_text()
        assert "[tcp.r2]" in text and "[tcp.r3]" in text and "[tcp.r1]" not in text, text
        # the device's webroot rule stays
        relay.send({"type": "rule_push", "op": 6, "action": "rm", "name": "site"})
        r = pushed(relay, 6)[0]
        assert r["ok"] is False and "webroot rule of this device" in r["reason"], r
        assert "[http.site]" in c.ini.read_text()
        # one remote operation at a time: the second is refused while the first waits
        relay.hold = True
        relay.send({"type": "rule_push", "op": 10, "action": "add", "kind": "tcp",
                    "name": "w1", "to": "127.0.0.1:24"})
        nt.wait_for(lambda: [m for m in relay.of_type("tcp_add") if m["name"] == "w1"], 15,
                    "w1 asked for")
        for op in range(11, 60):
            relay.send({"type": "rule_push", "op": op, "action": "add", "kind": "tcp",
                        "name": f"x{op}", "to": "127.0.0.1:25"})
        for op in range(11, 60):
            r = pushed(relay, op)[0]
            assert r["ok"] is False and "busy with another remote operation" in r["reason"], r
        # the local socket answers meanwhile
        assert c.status()["state"] == "online"
        p = c.nave("tunnel", "ls")
        assert p.returncode == 0 and "w1" in p.stdout, p
        # the link drops before w1's grant: after the reconnect w1 is asked for again
        # and granted, its push again is applied; a refused one pushed again runs (not kept)
        relay.hold = False
        relay.drop_control()
        nt.wait_for(lambda: len([m for m in relay.of_type("tcp_add") if m["name"] == "w1"])
                    >= 2, 30, "w1 asked for again")
        relay.send({"type": "rule_push", "op": 10, "action": "add", "kind": "tcp",
                    "name": "w1", "to": "127.0.0.1:24"})
        assert pushed(relay, 10)[0]["ok"] is True
        relay.send({"type": "rule_push", "op": 11, "action": "add", "kind": "tcp",
                    "name": "x11", "to": "127.0.0.1:25"})
        assert pushed(relay, 11, n=2)[1]["ok"] is True
        nt.check_exit("nave start (fake)", c.proc.stop(), c.proc.output())
    finally:
        relay.close()

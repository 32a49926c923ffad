# SPDX-License-Identifier: Apache-2.0
"""The mesh access policy's control plane (common/mesh.h, ctl/API.md "Mesh").

navectl mesh allow|deny|ls|rm|test and GET/POST /api/v1/mesh, DELETE
/api/v1/mesh/ID against a real nave-controld and nave-relayd: rules added at
the end or at a position, listed in the order that decides (--json: the API's
body), removed; every refusal one line naming the field; the routes in
--list-routes (test_admin.py walks them without credentials); relayd taking
each change (and the whole list again after a restart), in pieces when it is
large, numbered first..last and sent before the answer to any auth (a stand-in
relayd), installed by a real relayd only when whole (a stand-in controld);
group: versus tunnel ids (a tunnel-shaped HELLO or token id refused); a token's "mesh" kind and the tunnel's group reaching relayd at auth;
[socks] allow checked in the config and applied by a reload.
"""
import json
import os
import re
import socket
import sqlite3
import struct
import subprocess

import pytest

import navetest as nt


def rows(out):
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.strip()]


def refused(srv, *args, rc=1):
    """Exit rc with exactly one 'navectl: reason' line; returns the reason."""
    p_rc, out, err = srv.navectl(*args)
    assert p_rc == rc, (args, p_rc, out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("navectl: "), err
    return lines[0][len("navectl: "):]


def policies(srv):
    return srv.relayd.output().count("mesh: policy of ")


def wait_policy(srv, n_before, rules):
    """relayd logged a policy after n_before of them; the last says rules rule(s)."""
    nt.wait_for(lambda: policies(srv) > n_before, 30, "relayd to take the mesh policy")
    last = [x for x in srv.relayd.output().splitlines() if "mesh: policy of " in x][-1]
    assert f"mesh: policy of {rules} rule(s) from nave-controld in force" in last, last


def test_mesh_navectl(server):
    n = policies(server)
    rc, out, err = server.navectl("mesh", "allow", "office-*", "tunnel:db", "--port", "5432",
                                  "--comment", "offices to the database")
    assert (rc, err) == (0, ""), err
    assert out == "mesh rule 1 added at position 1: allow id:office-* -> tunnel:db port 5432\n"
    wait_policy(server, n, 1)
    rc, out, err = server.navectl("mesh", "deny", "group:lab", "external:10.0.0.0/8")
    assert out == "mesh rule 2 added at position 2: deny group:lab -> external:10.0.0.0/8\n", err
    # at position 1: the others move down; texts come back canonical
    got = server.navectl("mesh", "deny", "*", "domain:*.Example.COM", "--port", "80-443",
                         "--position", "1", json=True)
    assert got["id"] == 3 and got["position"] == 1 and got["to"] == "domain:*.example.com"
    assert (got["port_lo"], got["port_hi"], got["action"]) == (80, 443, "deny")

    table = rows(server.navectl("mesh", "ls")[1])
    assert table[0] == ["ID", "POS", "ACTION", "FROM", "TO", "PORTS", "COMMENT"]
    assert table[1:] == [
        ["3", "1", "deny", "*", "domain:*.example.com", "80-443", "-"],
        ["1", "2", "allow", "id:office-*", "tunnel:db", "5432", "offices to the database"],
        ["2", "3", "deny", "group:lab", "external:10.0.0.0/8", "any", "-"],
    ], table
    body = server.navectl("mesh", "ls", json=True)
    st, api_body = server.api("GET", "/api/v1/mesh")
    assert st == 200 and api_body == body
    assert body["total"] == 3 and [r["id"] for r in body["rules"]] == [3, 1, 2]
    assert set(body["rules"][0]) == {"id", "position", "action", "from", "to", "port_lo",
                                     "port_hi", "comment", "created"}

    # mesh test: controld says which of its rules decides (GET /api/v1/mesh/test)
    rc, out, err = server.navectl("mesh", "test", "office-paris", "tunnel:db:5432")
    assert out == "office-paris -> tunnel:db port 5432: allowed by mesh rule 1\n", err
    rc, out, err = server.navectl("mesh", "test", "x", "tunnel:db", "--port", "5432")
    assert out == ("x -> tunnel:db port 5432: denied by the default (no rule matches; the "
                   "opener has no mesh role)\n"), err
    assert server.navectl("mesh", "test", "x", "tunnel:db:1", "--mesh-role", json=True) == \
        {"decision": "allow", "rule": 0,
         "reason": "the default (no rule matches; the opener has the mesh role)"}
    assert server.navectl("mesh", "test", "x", "domain:a.example.com:80",
                          json=True)["rule"] == 3
    # the opener's group comes from controld's store, never from the query: an
    # unknown tunnel "lab" has no group, so group:lab (rule 2) does not decide
    assert server.navectl("mesh", "test", "lab", "external:10.1.2.3:22",
                          json=True)["rule"] == 0
    tok = server.navectl("tokens", "create", "--id", "lab", json=True)
    got = server.navectl("mesh", "test", tok["tunnel_id"], "external:10.1.2.3:22", json=True)
    assert (got["decision"], got["rule"], got["reason"]) == ("deny", 2, "mesh rule 2"), got
    st, api = server.api("GET", f"/api/v1/mesh/test?from={tok['tunnel_id']}"
                                "&to=external:10.1.2.3&port=22")
    assert st == 200 and api == got
    for q, want in (("to=tunnel:a&port=1", "from is required: a tunnel id"),
                    ("from=a&port=1", "to is required"),
                    ("from=a&to=tunnel:b", "port is required: 1-65535"),
                    ("from=a&to=tunnel:b&port=70000", "port is required: 1-65535"),
                    ("from=a%20b&to=tunnel:b&port=1", "invalid from"),
                    ("from=a&to=nowhere:b&port=1", "to: tunnel:ID, group:NAME"),
                    ("from=a&to=tunnel:b&port=1&mesh_role=yes", "mesh_role is 0 or 1")):
        st, body = server.api("GET", "/api/v1/mesh/test?" + q)
        assert st == 400 and body["error"].startswith(want), (q, st, body)
    # refusals: one line, exit 1, the reason names the field
    assert refused(server, "mesh", "allow", "a b", "*").startswith("from: ")
    assert refused(server, "mesh", "allow", "*", "nowhere") == \
        "to: one of *, tunnel:GLOB, group:GLOB, domain:PATTERN, external:CIDR|PATTERN"
    assert refused(server, "mesh", "allow", "*", "external:10.0.0.1/8").startswith(
        "to: external: takes an address block")
    assert refused(server, "mesh", "allow", "*", "domain:-x.com").startswith("to: domain:")
    # partial IPv4 and octets out of range: refused, never kept as a host name
    for bad in ("10.0.5", "10.5/8", "10.0.0.256", "foo.10"):
        why = refused(server, "mesh", "allow", "*", "external:" + bad)
        assert why.startswith("to: external: takes an address block") and f'"{bad}"' in why, why
    assert refused(server, "mesh", "allow", "*", "*", "--comment", "tab\there") == \
        '"comment" must be 1-200 bytes: UTF-8 text without control characters'
    assert refused(server, "mesh", "rm", "99") == "no mesh rule 99"
    # usage errors: exit 2 before asking controld
    for args in (["mesh", "allow", "*"], ["mesh", "allow", "*", "*", "--port", "0"],
                 ["mesh", "allow", "*", "*", "--port", "9-8"], ["mesh", "rm", "x"],
                 ["mesh", "test", "a", "tunnel:b"], ["mesh", "test", "a", "b"],
                 ["mesh", "frob"]):
        msg = refused(server, *args, rc=2)
        assert "--help" in msg or "bad" in msg or "missing" in msg, (args, msg)

    # removal; ids are never reused; relayd takes it
    n = policies(server)
    rc, out, err = server.navectl("mesh", "rm", "3")
    assert (rc, out) == (0, "mesh rule 3 removed\n"), err
    wait_policy(server, n, 2)
    assert server.navectl("mesh", "allow", "*", "*", json=True)["id"] == 4
    # controld logs who changed what
    log = server.controld.output()
    assert "api: mesh rule 1 added by local: allow id:office-* -> tunnel:db ports 5432-5432" in log
    assert "api: mesh rule 3 removed by local (was: deny * -> domain:*.example.com" in log

    # a new relayd is sent the whole list when it says hello
    server.restart_relayd()
    wait_policy(server, 0, 3)
    # and the rules survive a restart of controld
    server.restart_controld()
    assert [r["id"] for r in server.navectl("mesh", "ls", json=True)["rules"]] == [1, 2, 4]


def test_mesh_api(server):
    for body, want in (
        ({}, '"action" is required'),
        ({"action": "maybe", "from": "*", "to": "*"}, '"action" must be allow or deny'),
        ({"action": "allow", "to": "*"}, '"from" is required'),
        ({"action": "allow", "from": 7, "to": "*"}, '"from" must be a string'),
        ({"action": "allow", "from": "x" * 70, "to": "*"}, '"from" must be 1-69 bytes'),
        ({"action": "allow", "from": "*"}, '"to" is required'),
        ({"action": "allow", "from": "*", "to": "tunnel:" + "x" * 300},
         '"to" must be 1-262 bytes'),
        ({"action": "allow", "from": "*", "to": "*", "port_lo": 70000},
         '"port_lo" must be between 0 and 65535'),
        ({"action": "allow", "from": "*", "to": "*", "port_lo": 9, "port_hi": 8},
         '"port_lo".."port_hi" must be a range in 1-65535 (or both 0: any)'),
        ({"action": "allow", "from": "*", "to": "*", "position": -1},
         '"position" must be between 0 and 1000000'),
        ({"action": "allow", "from": "id:", "to": "*"}, None),
        ({"action": "allow", "from": "*", "to": "*", "comment": "x" * 201},
         '"comment" must be 1-200 bytes: UTF-8 text without control characters'),
    ):
        st, got = server.api("POST", "/api/v1/mesh", body)
        assert st == 400, (body, st, got)
        if want:
            assert got == {"error": want}, (body, got)
        else:
            assert got["error"].startswith("from: "), got
    # a comment is UTF-8 text; a port alone is that port
    st, got = server.api("POST", "/api/v1/mesh", {"action": "deny", "from": "*", "to": "*",
                                                  "comment": "caf\u00e9 \u2603"})
    assert st == 201 and got["comment"] == "caf\u00e9 \u2603", got
    assert server.api("DELETE", f"/api/v1/mesh/{got['id']}")[0] == 200
    st, got = server.api("POST", "/api/v1/mesh", {"action": "allow", "from": "id:t-1",
                                                  "to": "tunnel:b", "port_lo": 22})
    assert st == 201 and (got["port_lo"], got["port_hi"]) == (22, 22), got
    for path, want in (("/api/v1/mesh/abc", 400), ("/api/v1/mesh/0", 400),
                       ("/api/v1/mesh/99", 404), ("/api/v1/mesh/2", 200),
                       ("/api/v1/mesh/2", 404), ("/api/v1/mesh/1", 404)):
        st, got = server.api("DELETE", path)
        assert st == want, (path, st, got)
    assert server.api("PUT", "/api/v1/mesh")[0] == 405


def test_mesh_limit_and_pieces(server):
    """1024 rules at most; relayd takes a list larger than one message in pieces."""
    db = server.dir / "var" / "nave.db"
    h = sqlite3.connect(db)
    h.executemany("INSERT INTO mesh_rules (position, action, from_pat, to_kind, to_pat, created)"
                  " VALUES (?, 'deny', ?, 'external', ?, 0)",
                  [(i, f"group:office-number-{i:04d}-*",
                    f"*.subdomain-{i:04d}.example-corporation.internal") for i in range(1, 1024)])
    h.commit()
    h.close()
    n = policies(server)
    got = server.navectl("mesh", "allow", "*", "*", json=True)
    assert got["position"] == 1024
    wait_policy(server, n, 1024)
    assert refused(server, "mesh", "allow", "*", "*") == \
        "the mesh policy holds 1024 rules, the most it can"


def many_rules(srv, n):
    """n long rules straight into the store (more than one message's worth)."""
    h = sqlite3.connect(srv.dir / "var" / "nave.db")
    h.executemany("INSERT INTO mesh_rules (position, action, from_pat, to_kind, to_pat, created)"
                  " VALUES (?, 'deny', ?, 'external', ?, 0)",
                  [(i, f"group:office-number-{i:04d}-*",
                    f"*.subdomain-{i:04d}.example-corporation.internal") for i in range(1, n + 1)])
    h.commit()
    h.close()


def read_msg(s):
    (n,) = struct.unpack(">I", nt.recv_exact(s, 4))
    return json.loads(nt.recv_exact(s, n))


@pytest.fixture
def controld_only(tmp_path, procs):
    srv = nt.Server(tmp_path, procs)
    srv.start_controld()
    yield srv
    srv.stop()


def test_policy_pushed_whole_before_any_auth(controld_only):
    """The policy follows sync at once, numbered pieces first..last, before controld answers
    an auth that came right behind the hello (a tunnel is never admitted under no policy)."""
    srv = controld_only
    tok = srv.navectl("tokens", "create", json=True)
    many_rules(srv, 1000)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(nt.IO_TIMEOUT)
    s.connect(str(srv.relay_sock))
    try:
        # hello and an auth in one write: controld reads both before it writes anything
        out = b""
        for m in ({"type": "relay_hello", "version": 1, "pid": 1, "workers": 1, "online": []},
                  {"type": "auth", "req": 7, "mode": "run", "hostname": "h",
                   "token": tok["token"], "source": "192.0.2.1"}):
            body = json.dumps(m).encode()
            out += struct.pack(">I", len(body)) + body
        s.sendall(out)
        got = []
        while not got or got[-1]["type"] not in ("auth_ok", "error"):
            got.append(read_msg(s))
        types = [m["type"] for m in got]
        assert types[0] == "sync", types
        pieces = [m for m in got if m["type"] == "mesh_policy"]
        assert len(pieces) > 1, types
        # every piece of the policy before the auth's answer, none after it
        last = max(i for i, m in enumerate(got) if m["type"] == "mesh_policy")
        assert last < len(got) - 1 and got[-1]["req"] == 7, types
        assert [m["seq"] for m in pieces] == list(range(len(pieces)))
        assert [m.get("first", False) for m in pieces] == [True] + [False] * (len(pieces) - 1)
        assert [m.get("last", False) for m in pieces] == [False] * (len(pieces) - 1) + [True]
        assert sum(len(m["rules"]) for m in pieces) == 1000
        assert all("more" not in m for m in pieces)
    finally:
        s.close()


def fake_controld(srv):
    """A listening relay.sock of our own for a real relayd; relayd not started yet."""
    os.makedirs(srv.relay_sock.parent, exist_ok=True)
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(str(srv.relay_sock))
    ls.listen(1)
    ls.settimeout(30)
    return ls


def send_msg(s, m):
    nt.msg_send(s, dict({"type": "mesh_policy"}, **m))


def rule(i, action="deny"):
    return {"id": i, "action": action, "from": "*", "to": f"external:10.{i}.0.0/16",
            "port_lo": 0, "port_hi": 0}


def test_relayd_installs_only_whole_pushes(tmp_path, procs):
    """relayd (against a stand-in controld) installs a policy only when all its pieces came
    first..last in order; any partial push is discarded with one line, the policy stays."""
    srv = nt.Server(tmp_path, procs)
    ls = fake_controld(srv)
    srv.relayd.start()
    try:
        c, _ = ls.accept()
        c.settimeout(nt.IO_TIMEOUT)
        assert read_msg(c)["type"] == "relay_hello"
        nt.msg_send(c, {"type": "sync", "ports": [], "domains": []})
        log = srv.relayd.output

        def installed():
            return [x for x in log().splitlines() if "mesh: policy of " in x]

        # a whole push in three pieces: installed once, when the last is in
        send_msg(c, {"seq": 0, "first": True, "rules": [rule(1)]})
        send_msg(c, {"seq": 1, "rules": [rule(2)]})
        send_msg(c, {"seq": 2, "last": True, "rules": [rule(3)]})
        nt.wait_for(lambda: len(installed()) == 1, 30, "relayd to install the policy")
        assert "mesh: policy of 3 rule(s) from nave-controld in force (3 piece(s))" in \
            installed()[0]
        # partial pushes, each discarded with its reason
        for pieces, why in (
            ([{"seq": 0, "first": True, "rules": [rule(4)]},
              {"seq": 2, "last": True, "rules": [rule(5)]}],
             "mesh: policy piece 2 from nave-controld out of order (expected 1)"),
            ([{"seq": 1, "last": True, "rules": [rule(6)]}],
             "mesh: policy piece 1 from nave-controld out of order (expected a first piece, "
             "not 1)"),
            ([{"seq": 0, "first": True, "rules": [rule(7)]},
              {"seq": 0, "first": True, "last": True, "rules": [rule(8, "allow")] * 2}],
             "mesh: a new policy push began before the last piece of the one under way"),
            ([{"rules": [rule(9)], "more": True}],
             'mesh: policy piece without a valid "seq" and "first"'),
            ([{"seq": 0, "first": True, "last": True, "rules": [rule(10), {"id": 11}]}],
             "mesh: malformed policy from nave-controld: mesh rule 11:"),
        ):
            for p in pieces:
                send_msg(c, p)
            nt.wait_for(lambda: why in log(), 30, f"relayd to log: {why}")
        # the duplicate-id push after the restarted one: relayd's table takes it (two rules)
        lines = installed()
        assert len(lines) == 2 and "policy of 2 rule(s)" in lines[1], lines
        # a push cut by a lost controld: the last whole policy stays
        send_msg(c, {"seq": 0, "first": True, "rules": [rule(12)]})
        c.close()
        nt.wait_for(lambda: "lost nave-controld in the middle of a policy push" in log(), 30,
                    "relayd to drop the cut push")
        assert len(installed()) == 2 and srv.relayd.alive()
    finally:
        ls.close()
        srv.relayd.stop()


def test_routes_listed():
    out = subprocess.run([str(nt.CONTROLD), "--list-routes"], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    for r in ("GET /api/v1/mesh", "GET /api/v1/mesh/test", "POST /api/v1/mesh",
              "DELETE /api/v1/mesh/*"):
        assert r in out, out


def test_group_is_not_a_tunnel_id(server, tmp_path, procs):
    """A client chooses its group id: tunnel:/id:/bare rules never take it for a tunnel id,
    group: does, and an id shaped like a tunnel id is refused at HELLO and token create."""
    got = server.navectl("mesh", "allow", "group:office-*", "group:db-*", json=True)
    assert (got["from"], got["to"]) == ("group:office-*", "group:db-*"), got
    got = server.navectl("mesh", "deny", "t-00AA11", "tunnel:t-00bb22", json=True)
    assert (got["from"], got["to"]) == ("id:t-00AA11", "tunnel:t-00bb22"), got
    # HELLO: configure with a registration and a tunnel-shaped --id; one line why
    c = nt.Client(server, tmp_path, procs, "spoof")
    p = c.nave("configure", "--server", f"127.0.0.1:{server.https}", "--registration",
               server.registration(), "--fingerprint", server.fingerprint(), "--id", "t-00aa11")
    assert p.returncode != 0
    assert '"id" must not look like a tunnel id (t- and hex digits)' in p.stderr, p.stderr
    nt.wait_for(lambda: 'HELLO refused: "id" must not look like a tunnel id'
                in server.relayd.output(), 30, "relayd to log the refused HELLO")
    # a token's id (the group id of its tunnel) likewise; a t- name that is not hex is fine
    st, got = server.api("POST", "/api/v1/tokens", {"id": "T-0123abcd"})
    assert st == 400 and got == {"error": '"id" must not look like a tunnel id (t- and hex '
                                          'digits)'}, got
    st, got = server.api("POST", "/api/v1/tokens", {"id": "t-lab"})
    assert st == 201, got


def test_mesh_role_and_group_at_auth(server, make_client):
    tok = server.navectl("tokens", "create", "--id", "office-a", "--kinds", "tcp,mesh",
                         json=True)
    assert tok["kinds"] == ["tcp", "mesh"], tok
    a = make_client("a", key=tok["token"])
    nt.wait_for(lambda: f"tunnel {tok['tunnel_id']}: group office-a, mesh role yes"
                in server.relayd.output(), 30, "relayd to log the mesh role")
    plain = server.navectl("tokens", "create", "--id", "plain", json=True)
    b = make_client("b", key=plain["token"])
    nt.wait_for(lambda: f"tunnel {plain['tunnel_id']}: group plain, mesh role no"
                in server.relayd.output(), 30, "relayd to log no mesh role")
    # a registration's kinds go to the tokens it mints
    rc, out, err = server.navectl("registration", "create", "--kinds", "mesh")
    assert rc == 0, err
    c = make_client("c", registration=out.splitlines()[0].strip(), id="lab-1")
    nt.wait_for(lambda: "group lab-1, mesh role yes" in server.relayd.output(), 30,
                "relayd to log the registration's mesh role")
    c.stop()
    # a token that only has the mesh role may not ask for rules
    st, got = server.api("POST", "/api/v1/tokens", {"kinds": ["mesh", "sctp"]})
    assert st == 400 and "not a rule kind (tcp, udp, http, mesh)" in got["error"], got
    a.stop()
    b.stop()


@pytest.mark.parametrize("server_ini", ["[socks]\nallow = 127.0.0.1, *.Example.com\n"])
def test_socks_allow_reload(server):
    p = nt.run([nt.RELAYD, "--config", server.ini, "--check"])
    assert p.returncode == 0 and "allow = 127.0.0.1/32,*.example.com" in p.stdout, p.stdout
    text = server.ini.read_text().replace("allow = 127.0.0.1, *.Example.com",
                                          "allow = 10.0.0.0/8")
    server.ini.write_text(text)
    rc, out, err = server.navectl("reload")
    assert rc == 0 and "[socks] allow" in out, (out, err)
    nt.wait_for(lambda: "[socks] allow: 10.0.0.0/8" in server.relayd.output(), 30,
                "relayd to take [socks] allow")
    # a partial address in the list: --check says why in one line
    for bad in ("10.0.5", "10.5/8", "300.1.1.1/8"):
        server.ini.write_text(text.replace("allow = 10.0.0.0/8", f"allow = 10.0.0.0/8, {bad}"))
        p = nt.run([nt.RELAYD, "--config", server.ini, "--check"])
        assert p.returncode != 0 and f'allow entry "{bad}" is not an address block' in \
            (p.stdout + p.stderr), (p.stdout, p.stderr)
    server.ini.write_text(text)
    # a bad list: the reload changes nothing, one line names the key
    server.ini.write_text(text.replace("allow = 10.0.0.0/8", "allow = 10.0.0.1/8"))
    rc, out, err = server.navectl("reload")
    assert rc != 0 and "[socks] allow" in (out + err), (rc, out, err)
    assert server.relayd.alive() and server.controld.alive()

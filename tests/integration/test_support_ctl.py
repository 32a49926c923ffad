# SPDX-License-Identifier: Apache-2.0
"""Support sessions in the control plane: a real nave-controld, spoken to as relayd speaks
to it on relay.sock (support_request, support_connect, support_end, support_ls,
support_event; support_kill pushed back) and through navectl and the admin API (support
ls, show, approve, end). A device's request is stored pending; nothing connects before the
operator approves it, with a wrong key, to a service the device did not offer, after the
session ended or expired; the limits (4 live sessions a tunnel, 10 connects a minute from
an address, 30 for a session, 8 connections) refuse with one line; every step is in the
audit trail in order, with who approved and ended it."""
import hashlib
import os
import re
import subprocess
import time

import pytest

import navetest as nt
from test_domains_ctl import FakeRelay, error

ID_RE = re.compile(r"^sup-[a-z0-9]{10}$")


class Relay(FakeRelay):
    """FakeRelay that keeps the support_kill pushes it reads on the way to a reply."""

    def __init__(self, srv):
        super().__init__(srv)
        self.kills = []

    def recv(self):
        while True:
            m = super().recv()
            if m["type"] == "support_kill":
                assert set(m) == {"type", "id", "why"}, m
                self.kills.append((m["id"], m["why"]))
                continue
            return m

    def ask(self, type_, **kw):
        pushes, m = self.request(type_, **kw)
        assert pushes == [], pushes
        return m

    def wait_kill(self, sid, timeout=10):
        """The why of the next support_kill of sid (read until it comes)."""
        deadline = time.monotonic() + timeout
        while True:
            for k in self.kills:
                if k[0] == sid:
                    self.kills.remove(k)
                    return k[1]
            left = deadline - time.monotonic()
            assert left > 0, f"no support_kill of {sid} within {timeout} s"
            self.s.settimeout(left)
            try:
                m = FakeRelay.recv(self)
            finally:
                self.s.settimeout(nt.IO_TIMEOUT)
            assert m["type"] == "support_kill" and set(m) == {"type", "id", "why"}, m
            self.kills.append((m["id"], m["why"]))


def new_key():
    """(auth key as hex, as the supporter sends it; its SHA-256 as hex, as the device does)."""
    key = os.urandom(32)
    return key.hex(), hashlib.sha256(key).hexdigest()


def request(r, tid, auth_hash, expires=3600, reason="printer is on fire",
            services=("ssh", "web"), source="192.0.2.7"):
    return r.ask("support_request", tunnel_id=tid, expires=expires, reason=reason,
                 services=list(services), auth_hash=auth_hash, source=source)


def granted(r, tid, auth_hash, **kw):
    t0 = int(time.time())
    m = request(r, tid, auth_hash, **kw)
    assert m["type"] == "support_granted" and set(m) == {"type", "req", "id", "expires_at"}, m
    assert ID_RE.match(m["id"]), m
    assert t0 + kw.get("expires", 3600) <= m["expires_at"] <= int(time.time()) + \
        kw.get("expires", 3600), m
    return m["id"]


def connect(r, sid, auth, service="web", source="203.0.113.5", port=40000):
    return r.ask("support_connect", session=sid, service=service, auth=auth, source=source,
                 source_port=port)


def event(r, sid, ev, **detail):
    r.send({"type": "support_event", "session": sid, "event": ev, "detail": detail})


def show(srv, sid):
    st, body = srv.api("GET", f"/api/v1/support/{sid}")
    assert st == 200, body
    return body


def events(srv, sid):
    return [(a["event"], a["actor"]) for a in show(srv, sid)["audit"]]


@pytest.fixture
def controld_only(tmp_path, procs):
    srv = nt.Server(tmp_path, procs)
    srv.start_controld()
    yield srv
    srv.stop()


@pytest.fixture
def relay(controld_only):
    r = Relay(controld_only)
    r.hello()
    yield r
    r.close()


def test_request_approve_connect_end(controld_only, relay):
    srv, r = controld_only, relay
    tid = srv.token()["tunnel_id"]
    auth, auth_hash = new_key()
    reason = "printer is on fire \u2713 \"quoted\""
    sid = granted(r, tid, auth_hash, reason=reason)

    # the operator sees it pending, with what the device said
    items = srv.navectl("support", "ls", json=True)["items"]
    assert [(s["id"], s["state"], s["tunnel_id"], s["services"], s["reason"])
            for s in items] == [(sid, "pending", tid, ["ssh", "web"], reason)], items
    s = items[0]
    assert set(s) == {"id", "tunnel_id", "state", "reason", "services", "created_at",
                      "expires_at", "approved_by", "approved_at", "ended_by", "ended_at",
                      "connections"}, s
    assert (s["approved_by"], s["approved_at"], s["ended_by"], s["connections"]) == (
        None, None, None, 0), s
    assert "auth_hash" not in s and auth_hash not in str(show(srv, sid))
    rc, out, err = srv.navectl("support", "ls")
    assert rc == 0, err
    head, line = out.splitlines()[:2]
    assert head.split()[:3] == ["ID", "TUNNEL", "STATE"], out
    assert line.split()[:4] == [sid, tid, "pending", "ssh,web"], out
    assert srv.navectl("support", "ls", "--state", "approved", json=True)["items"] == []
    assert len(srv.navectl("support", "ls", "--state", "pending", "--tunnel", tid,
                           json=True)["items"]) == 1
    assert srv.navectl("support", "ls", "--tunnel", "t-000000000000", json=True)["items"] == []

    # nothing connects before the approval
    assert error(connect(r, sid, auth)) == f"support session {sid} is not approved yet"

    rc, out, err = srv.navectl("support", "approve", sid)
    assert (rc, out) == (0, f"support session {sid} approved\n"), err
    rc, out, err = srv.navectl("support", "approve", sid)
    assert (rc, err) == (1, f"navectl: support session {sid} is already approved\n"), out
    s = show(srv, sid)
    assert (s["state"], s["approved_by"]) == ("approved", "local"), s
    assert abs(s["approved_at"] - time.time()) < 5, s

    time.sleep(1.1)  # refused records: one a second per session
    assert error(connect(r, sid, "00" * 32)) == f"wrong key for support session {sid}"
    time.sleep(1.1)
    assert error(connect(r, sid, auth, service="ftp")) == \
        f'service "ftp" is not offered by support session {sid}'
    # a good key for ssh (index 0) and web (index 1)
    for svc, idx in (("ssh", 0), ("web", 1)):
        m = connect(r, sid, auth, service=svc)
        assert m == {"type": "support_allowed", "req": m["req"], "session": sid,
                     "tunnel_id": tid, "service_index": idx,
                     "expires_at": s["expires_at"]}, m

    # relayd's events: the live count and the audit records
    event(r, sid, "connected", conn=7, source="203.0.113.5", source_port=40000, service="web")
    event(r, sid, "connected", conn=8, source="2001:db8::5", source_port=40001, service="ssh")
    nt.wait_for(lambda: show(srv, sid)["connections"] == 2, 10, "2 live connections")
    event(r, sid, "disconnected", conn=8, bytes_up=100, bytes_down=2000, duration_ms=1500,
          why="done")
    nt.wait_for(lambda: show(srv, sid)["connections"] == 1, 10, "1 live connection")
    # the device's list of its own sessions
    m = r.ask("support_ls", tunnel_id=tid)
    assert m["type"] == "support_list", m
    assert m["sessions"] == [{"id": sid, "state": "approved", "reason": reason,
                              "services": ["ssh", "web"], "created_at": s["created_at"],
                              "expires_at": s["expires_at"], "approved_by": "local",
                              "connections": 1}], m
    assert r.ask("support_ls", tunnel_id="t-000000000000")["sessions"] == []

    # the operator ends it: relayd is told at once
    rc, out, err = srv.navectl("support", "end", sid)
    assert (rc, out) == (0, f"support session {sid} ended\n"), err
    assert r.wait_kill(sid) == "ended by the operator"
    s = show(srv, sid)
    assert (s["state"], s["ended_by"]) == ("ended", "local"), s
    time.sleep(1.1)
    assert error(connect(r, sid, auth)) == f"support session {sid} was ended"
    event(r, sid, "disconnected", conn=7, bytes_up=5, bytes_down=6, duration_ms=20,
          why="killed")
    for args, msg in (((sid, "approve"), "was ended"), ((sid, "end"), "was ended")):
        st, body = srv.api("POST", f"/api/v1/support/{args[0]}/{args[1]}")
        assert (st, body) == (409, {"error": f"support session {sid} {msg}"}), body

    # the whole trail, in order
    def complete():
        a = show(srv, sid)["audit"]
        return a if len(a) == 11 else False
    audit = nt.wait_for(complete, 10, "11 audit records")
    assert [(x["event"], x["actor"]) for x in audit] == [
        ("requested", f"tunnel:{tid}"), ("refused", "supporter"), ("approved", "local"),
        ("refused", "supporter"), ("refused", "supporter"), ("connected", "supporter"),
        ("connected", "supporter"), ("disconnected", "supporter"), ("ended", "local"),
        ("refused", "supporter"), ("disconnected", "supporter")], audit
    ats = [x["at"] for x in audit]
    assert ats == sorted(ats) and all(abs(t / 1000 - time.time()) < 120 for t in ats), ats
    d = [x["detail"] for x in audit]
    assert d[0] == {"reason": reason, "services": ["ssh", "web"], "expires": 3600,
                    "source": "192.0.2.7"}, d[0]
    assert d[1] == {"reason": "not approved", "source": "203.0.113.5:40000",
                    "service": "web"}, d[1]
    assert d[3]["reason"] == "wrong key" and d[4] == {
        "reason": "unknown service", "source": "203.0.113.5:40000", "service": "ftp"}, d
    assert d[5] == {"source": "203.0.113.5:40000", "service": "web", "conn": 7}, d[5]
    assert d[6] == {"source": "[2001:db8::5]:40001", "service": "ssh", "conn": 8}, d[6]
    assert d[7] == {"conn": 8, "bytes_up": 100, "bytes_down": 2000, "duration_ms": 1500,
                    "why": "done"}, d[7]
    assert d[9]["reason"] == "ended" and d[10]["why"] == "killed", d

    # navectl support show: the record and the trail as a table
    rc, out, err = srv.navectl("support", "show", sid)
    assert rc == 0, err
    assert re.search(rf"^id: +{sid}$", out, re.M) and re.search(r"^state: +ended$", out, re.M)
    assert re.search(r"^reason: +printer is on fire \u2713 \"quoted\"$", out, re.M), out
    trail = out.split("\n\n", 1)[1].splitlines()
    assert trail[0].split() == ["AT", "EVENT", "ACTOR", "DETAIL"], out
    assert [ln.split()[2] for ln in trail[1:]] == [x["event"] for x in audit], out
    assert "bytes_up=100 bytes_down=2000" in out and "services=ssh,web" in out, out
    assert srv.navectl("support", "show", sid, json=True)["audit"] == audit


def test_owner_end_deny_and_the_limit(controld_only, relay):
    srv, r = controld_only, relay
    tid = srv.token()["tunnel_id"]
    other = srv.token()["tunnel_id"]
    _, h = new_key()
    ids = [granted(r, tid, h) for _ in range(4)]
    assert len(set(ids)) == 4
    m = request(r, tid, h)
    assert error(m) == ("this tunnel has 4 support sessions pending or approved already "
                        "(at most 4)"), m
    granted(r, other, h)  # another tunnel's are its own

    # the owner ends its own; another tunnel's is unknown to it
    assert error(r.ask("support_end", tunnel_id=other, id=ids[0])) == \
        f"no support session {ids[0]}"
    pushes, m = r.request("support_end", tunnel_id=tid, id=ids[0])
    assert m == {"type": "support_ended", "req": m["req"], "id": ids[0]}, m
    assert r.kills == [(ids[0], "ended by its device")], r.kills
    r.kills.clear()
    assert error(r.ask("support_end", tunnel_id=tid, id=ids[0])) == \
        f"support session {ids[0]} was ended"
    assert error(r.ask("support_end", tunnel_id=tid, id="sup-0000000000")) == \
        "no support session sup-0000000000"
    assert events(srv, ids[0]) == [("requested", f"tunnel:{tid}"), ("ended", f"tunnel:{tid}")]
    granted(r, tid, h)  # room again

    # the operator denies a pending one
    st, body = srv.api("POST", f"/api/v1/support/{ids[1]}/end")
    assert st == 200 and (body["state"], body["ended_by"]) == ("ended", "local"), body
    assert r.wait_kill(ids[1]) == "denied by the operator"
    extra = granted(r, tid, h)
    assert srv.navectl("support", "end", extra)[:2] == (0, f"support session {extra} denied\n")
    assert r.wait_kill(extra) == "denied by the operator"
    assert events(srv, ids[1]) == [("requested", f"tunnel:{tid}"), ("denied", "local")]
    # and ends an approved one; navectl says which
    assert srv.navectl("support", "approve", ids[2])[0] == 0
    assert srv.navectl("support", "end", ids[2])[:2] == (0, f"support session {ids[2]} ended\n")
    assert r.wait_kill(ids[2]) == "ended by the operator"
    assert events(srv, ids[2])[-2:] == [("approved", "local"), ("ended", "local")]

    # the API's refusals and filters
    for path, st_, msg in (
            ("/api/v1/support/sup-0000000000", 404, "no support session sup-0000000000"),
            ("/api/v1/support/nope", 404, "no support session nope"),
            ("/api/v1/support?state=bogus", 400,
             "invalid state (pending, approved, ended or expired)"),
            ("/api/v1/support?tunnel=a%20b", 400,
             "invalid tunnel: 1-14 characters: letters, digits, '.', '_' and '-'"),
            ("/api/v1/support?page=0", 400, 'invalid page "0"')):
        assert srv.api("GET", path) == (st_, {"error": msg}), path
    assert srv.api("POST", "/api/v1/support/sup-0000000000/approve") == (
        404, {"error": "no support session sup-0000000000"})
    st, body = srv.api("GET", f"/api/v1/support?state=ended&tunnel={tid}")
    assert st == 200 and sorted(s["id"] for s in body["items"]) == sorted(ids[:3] + [extra]), \
        body
    assert (body["page"], body["per_page"], body["total"]) == (1, 50, 4), body
    st, body = srv.api("GET", "/api/v1/support")
    created = [s["created_at"] for s in body["items"]]
    assert body["total"] == 7 and created == sorted(created, reverse=True), body
    rc, out, err = srv.navectl("support", "ls", "--state", "bogus")
    assert rc == 2 and "bad --state 'bogus'" in err, err
    rc, out, err = srv.navectl("support", "approve", "sup-0000000000")
    assert (rc, err) == (1, "navectl: no support session sup-0000000000\n")


def test_expiry(controld_only, relay):
    """expires 2 s (the ctl protocol takes seconds; the client's CLI keeps 1 min as its least):
    the approved session's links are killed within a second of it, nothing connects, it is
    expired in every answer and its trail ends with the expiry."""
    srv, r = controld_only, relay
    tid = srv.token()["tunnel_id"]
    auth, h = new_key()
    sid = granted(r, tid, h, expires=2)
    pend = granted(r, tid, h, expires=2)
    assert srv.navectl("support", "approve", sid)[0] == 0
    m = connect(r, sid, auth)
    assert m["type"] == "support_allowed", m
    t0 = time.time()
    assert r.wait_kill(sid, timeout=10) == "expired"
    assert time.time() - t0 < 4.5
    assert r.wait_kill(pend, timeout=10) == "expired"
    assert error(connect(r, sid, auth)) == f"support session {sid} has expired"
    s = show(srv, sid)
    assert (s["state"], s["ended_by"], s["ended_at"]) == ("expired", "expiry",
                                                          s["expires_at"]), s
    assert [x["state"] for x in srv.navectl("support", "ls", "--state", "expired",
                                            json=True)["items"]] == ["expired", "expired"]
    assert srv.api("POST", f"/api/v1/support/{pend}/approve") == (
        409, {"error": f"support session {pend} has expired"})
    assert error(r.ask("support_end", tunnel_id=tid, id=sid)) == \
        f"support session {sid} has expired"
    trail = nt.wait_for(lambda: (lambda e: e if len(e) == 4 else False)(events(srv, sid)), 10,
                        "4 audit records")
    assert trail == [("requested", f"tunnel:{tid}"), ("approved", "local"),
                     ("ended", "expiry"), ("refused", "supporter")], trail
    assert events(srv, pend) == [("requested", f"tunnel:{tid}"), ("ended", "expiry")]
    # expired sessions do not count against the tunnel's 4
    for _ in range(4):
        granted(r, tid, h)


def test_rate_limits_and_connections(controld_only, relay):
    srv, r = controld_only, relay
    tid = srv.token()["tunnel_id"]
    auth, h = new_key()
    sid = granted(r, tid, h)
    assert srv.navectl("support", "approve", sid)[0] == 0
    # 10 a minute from one address (unknown sessions count too), then "too many attempts"
    for i in range(10):
        assert error(connect(r, "sup-0000000000", auth, source="198.51.100.1")) == \
            "no support session sup-0000000000", i
    assert error(connect(r, sid, auth, source="198.51.100.1")) == "too many attempts"
    # 30 a minute for a session, from any address (the refusal above counted for the address)
    for i in range(30):
        m = connect(r, sid, auth, source=f"198.51.100.{10 + i}")
        assert m["type"] == "support_allowed", (i, m)
    assert error(connect(r, sid, auth, source="198.51.100.201")) == "too many attempts"

    # 8 live connections (another session: this one's minute is spent)
    sid2 = granted(r, tid, h)
    assert srv.navectl("support", "approve", sid2)[0] == 0
    for i in range(8):
        assert connect(r, sid2, auth, source="192.0.2.50")["type"] == "support_allowed"
        event(r, sid2, "connected", conn=100 + i, source="192.0.2.50", service="web")
    nt.wait_for(lambda: show(srv, sid2)["connections"] == 8, 10, "8 live connections")
    assert error(connect(r, sid2, auth, source="192.0.2.51")) == \
        f"support session {sid2} has 8 connections already"
    event(r, sid2, "disconnected", conn=100, bytes_up=1, bytes_down=2, duration_ms=3,
          why="done")
    nt.wait_for(lambda: show(srv, sid2)["connections"] == 7, 10, "7 live connections")
    assert connect(r, sid2, auth, source="192.0.2.52")["type"] == "support_allowed"
    # refused records are one a second at most per session
    refused = [a["detail"]["reason"] for a in show(srv, sid)["audit"] if a["event"] == "refused"]
    assert refused in (["too many attempts"], ["too many attempts"] * 2), refused

    # a new relayd: the live counts start again
    r.close()
    r2 = Relay(srv)
    r2.hello()
    nt.wait_for(lambda: show(srv, sid2)["connections"] == 0, 10, "no live connection")
    r2.close()


def test_bad_input(controld_only, relay):
    srv, r = controld_only, relay
    tid = srv.token()["tunnel_id"]
    auth, h = new_key()
    for kw, msg in (
            ({"services": []}, "a support session offers 1 to 8 services"),
            ({"services": [f"s{i}" for i in range(9)]},
             "a support session offers 1 to 8 services"),
            ({"services": ["a b"]},
             "bad service name: 1-31 characters: letters, digits, '_' and '-'"),
            ({"services": ["x" * 32]},
             "bad service name: 1-31 characters: letters, digits, '_' and '-'"),
            ({"services": ["ssh", "ssh"]}, 'service "ssh" is named twice'),
            ({"reason": "a\nb"}, "bad reason: at most 200 characters of UTF-8 text without "
             "control characters"),
            ({"reason": "\u00e9" * 201}, "bad reason: at most 200 characters of UTF-8 text "
             "without control characters"),
            ({"reason": "a\u202eb"}, "bad reason: at most 200 characters of UTF-8 text "
             "without control characters"),
            ({"expires": 0}, "bad expiry: 1 s to 7 days"),
            ({"expires": 7 * 86400 + 1}, "bad expiry: 1 s to 7 days"),
            ({"source": "example.com"}, '"source" is not an address'),
            ({"source": "10.0.0.0/8"}, '"source" is not an address')):
        m = request(r, tid, h, **kw)
        assert error(m) == msg, (kw, m)
    assert error(request(r, tid, "ab" * 31)) == "bad auth_hash: 64 hex digits"
    assert error(request(r, tid, "g" * 64)) == "bad auth_hash: 64 hex digits"
    assert error(request(r, "t-000000000000", h)) == "unknown tunnel t-000000000000"
    assert error(request(r, "a b", h)) == "invalid tunnel_id"
    sid = granted(r, tid, h, reason="\u00e9" * 200, services=["A_b-9", "x" * 31])
    assert show(srv, sid)["services"] == ["A_b-9", "x" * 31]
    # the longest request: its audit detail whole (800 bytes of reason, 8 long names)
    big = granted(r, tid, h, reason="\U0001F600" * 199 + '"',
                  services=[f"{i}" * 31 for i in range(8)])
    assert show(srv, big)["audit"][0]["detail"] == {
        "reason": "\U0001F600" * 199 + '"', "services": [f"{i}" * 31 for i in range(8)],
        "expires": 3600, "source": "192.0.2.7"}
    assert srv.navectl("support", "end", big)[0] == 0
    assert granted(r, tid, h.upper(), reason="")
    assert srv.navectl("support", "approve", sid)[0] == 0
    # connect: an id of another shape, escaped; a source that is no address
    assert error(connect(r, "sup-\x1b[2J", auth)) == "no support session sup-\\x1b[2J"
    assert error(connect(r, sid, auth, source="nowhere")) == '"source" is not an address'
    assert error(connect(r, sid, "zz" * 32)) == f"wrong key for support session {sid}"
    assert error(connect(r, sid, auth[:-2])) == f"wrong key for support session {sid}"
    # an event of an unknown session or with a bad detail is dropped, the link stays
    event(r, "sup-0000000000", "connected", conn=1, source="192.0.2.1", service="web")
    event(r, sid, "connected", conn=-1, source="192.0.2.1", service="web")
    event(r, sid, "connected", conn=1, source="192.0.2.1", service="a b")
    event(r, sid, "exploded", conn=1)
    assert r.ask("support_ls", tunnel_id=tid)["sessions"][1]["connections"] == 0
    # (the wrong keys above: one refused record, they came within a second)
    assert [e for e, _ in events(srv, sid)] == ["requested", "approved", "refused"]
    # a member of the wrong type is a malformed message: controld closes the link
    r.send({"type": "support_request", "req": 99, "tunnel_id": tid, "expires": 60,
            "services": "ssh", "auth_hash": h})
    assert r.closed()
    nt.wait_for(lambda: "support_request: \"services\" is not an array"
                in srv.controld.output(), 10, "the reason in the log")


def test_a_new_relayd_is_told_of_ended_sessions(controld_only, relay):
    srv, r = controld_only, relay
    tid = srv.token()["tunnel_id"]
    _, h = new_key()
    sid = granted(r, tid, h)
    live = granted(r, tid, h)
    assert srv.navectl("support", "approve", sid)[0] == 0
    r.close()
    # ended while no relayd is there (the kill cannot go out now)
    nt.wait_for(lambda: srv.api("GET", "/api/v1/status")[1]["relay"]["connected"] is False, 10,
                "relayd gone")
    assert srv.navectl("support", "end", sid)[0] == 0
    r2 = Relay(srv)
    r2.hello()
    assert r2.wait_kill(sid) == "ended"
    assert all(k[0] != live for k in r2.kills), r2.kills
    r2.close()


def test_remote_approver_identities(tmp_path, procs):
    """On the remote admin API the approver and the ender are who the caller is: an API
    key's id, a user's name (a session with its CSRF token)."""
    from test_admin import Admin
    a = Admin(tmp_path, procs, extra="require_two_factor = off\n")
    try:
        r = Relay(a.srv)
        r.hello()
        tid = a.srv.token()["tunnel_id"]
        _, h = new_key()
        one, two = granted(r, tid, h), granted(r, tid, h)
        kid, key = a.key("support")
        st, body, _ = a.req("POST", f"/api/v1/support/{one}/approve", key=key)
        assert (st, body["approved_by"]) == (200, f"apikey:{kid}"), body
        a.add_user("alice", "correct horse battery")
        st, j, cookie, _ = a.login("alice", "correct horse battery")
        assert st == 200, j
        st, body, _ = a.req("POST", f"/api/v1/support/{two}/end", cookie=cookie,
                            csrf=j["csrf"])
        assert (st, body["ended_by"]) == (200, "user:alice"), body
        assert r.wait_kill(two) == "denied by the operator"
        assert events(a.srv, one)[-1] == ("approved", f"apikey:{kid}")
        assert events(a.srv, two)[-1] == ("denied", "user:alice")
        # nothing without credentials
        assert a.req("GET", "/api/v1/support")[0] == 401
        assert a.req("POST", f"/api/v1/support/{one}/end")[0] == 401
        r.close()
    finally:
        a.srv.stop()


def test_routes_listed():
    out = subprocess.run([str(nt.CONTROLD), "--list-routes"], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    for rt in ("GET /api/v1/support", "GET /api/v1/support/*",
               "POST /api/v1/support/*/approve", "POST /api/v1/support/*/end"):
        assert rt in out, out


def test_help():
    p = subprocess.run([str(nt.NAVECTL), "support", "--help"], capture_output=True, text=True,
                       timeout=nt.CMD_TIMEOUT)
    assert p.returncode == 0, p.stderr
    for c in ("support ls", "support show", "support approve", "support end"):
        assert c in p.stdout, p.stdout

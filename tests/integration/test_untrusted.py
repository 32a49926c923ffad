# SPDX-License-Identifier: Apache-2.0
"""Untrusted strings are checked where they enter and escaped wherever they
are printed: a HELLO's fields (with and without a token), the admin API's
bodies, paths and queries. Refusals carry a one-line reason; no log line is
forged, no control byte reaches a log, nothing oversized is stored."""
import re

import pytest

import navetest as nt
from navetest import KiB

FORGED = "2026-11-30T00:00:00.000Z info nave-controld: tunnel t-000000000000 online"
LOG_LINE = re.compile(r"^(==== |\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) "
                      r"nave-(controld|relayd): )")


def assert_clean_logs(server):
    for proc in (server.controld, server.relayd):
        text = proc.output()
        assert "\x1b" not in text, f"ESC in the {proc.name} log"
        for line in text.splitlines():
            assert LOG_LINE.match(line), f"{proc.name} log line not its own: {line!r}"
        assert FORGED not in [l[l.find(" ") + 1:] for l in text.splitlines()]


def hello_refused(server, **fields):
    """A raw HELLO with fields replaced: the link answers error {reason} and closes."""
    s = nt.tls_connect(server.https)
    try:
        h = nt.hello(fields.pop("token", "nvt_00000000_" + "0" * 48))
        h.update(fields)
        nt.msg_send(s, h)
        m = nt.msg_recv(s)
        assert m["type"] == "error", m
        nt.closed_by_peer(s, 30)
        return m["reason"]
    finally:
        s.close()


def test_hello_fields_are_checked_without_a_token(server, make_client, services):
    client, port = nt.working_tunnel(make_client, services)
    reason = hello_refused(server, hostname="x\n" + FORGED, token=None,
                           registration="nvr_00000000_" + "0" * 48)
    assert reason == ("bad HELLO: hostname must be 1-64 characters: letters, digits, '.', '_' "
                      "and '-'"), reason
    reason = hello_refused(server, arch="\x1b[31mred", token=None, registration="nvr_x")
    assert reason.startswith("bad HELLO: arch must be 1-32 characters"), reason
    reason = hello_refused(server, token="nvt_\x1b[2J")
    assert reason.startswith("bad HELLO: token must be 1-64 characters"), reason
    # wrong credentials with a hostname that is fine: refused, logged on one line
    reason = hello_refused(server, hostname="fine-host")
    assert reason == "invalid token", reason
    nt.exchange(port, 16 * KiB)
    assert_clean_logs(server)


def test_hello_fields_are_checked_with_a_token(server, make_client, services):
    client, port = nt.working_tunnel(make_client, services)
    tok = server.token()
    reason = hello_refused(server, token=tok["token"], os="A" * 5000)
    assert reason.startswith("bad HELLO: os must be 1-32 characters"), reason
    reason = hello_refused(server, token=tok["token"], client_version="1.0\x1b]0;pwned\x07")
    assert reason.startswith("bad HELLO: client_version must be 1-32 characters"), reason
    reason = hello_refused(server, token=tok["token"], id="grp\nx")
    assert reason.startswith("bad HELLO: id must be 1-63 characters"), reason
    for bad in (0, -5, 1 << 40, "12", 1.5, [3]):
        reason = hello_refused(server, token=tok["token"], max_links=bad)
        assert reason == "bad HELLO: max_links is not a number from 1 to 1048576", (bad, reason)
    # nothing of it was stored
    t = server.tunnel(tok["tunnel_id"])
    assert t["os"] == "" and t["client_version"] == "" and t["state"] == "offline", t
    # the same token with sane fields is welcome
    link = nt.ControlLink(server.https, tok["token"])
    link.close()
    nt.wait_for(lambda: server.tunnel(tok["tunnel_id"])["os"] == "linux", 30, "os stored")
    nt.exchange(port, 16 * KiB)
    assert_clean_logs(server)


@pytest.mark.parametrize("body, why", [
    ({"id": "a\u001b[31mb\nc"}, '"id" must be 1-63 bytes'),
    ({"id": "x" * 64}, '"id" must be 1-63 bytes'),
    ({"description": "tab\there"}, '"description" must be 1-255 bytes'),
    ({"description": "d" * 256}, '"description" must be 1-255 bytes'),
    ({"description": "c1 \u009b31m"}, '"description" must be 1-255 bytes'),
])
def test_api_refuses_bad_strings(server, body, why):
    before = server.navectl("tokens", "ls", json=True)["total"]
    status, resp = server.api("POST", "/api/v1/tokens", body)
    assert status == 400, (status, resp)
    assert resp["error"].startswith(why), resp
    assert server.navectl("tokens", "ls", json=True)["total"] == before
    assert_clean_logs(server)


def test_api_keeps_utf8_text(server):
    status, resp = server.api("POST", "/api/v1/tokens",
                              {"id": "grp.1", "description": "café – München"})
    assert status == 201, resp
    assert resp["description"] == "café – München"


def test_api_refuses_control_bytes_in_paths(server, make_client, services):
    client, port = nt.working_tunnel(make_client, services)
    regs = server.navectl("registration", "ls", json=True)["total"]
    status, resp = server.api("POST", "/api/v1/registrations%00/xyz/disable")
    assert status == 400 and "control characters" in resp["error"], (status, resp)
    assert server.navectl("registration", "ls", json=True)["total"] == regs
    status, resp = server.api("DELETE", f"/api/v1/ports/{port}%00junk")
    assert status == 400, (status, resp)
    assert port in server.ports()
    nt.exchange(port, 4 * KiB)
    for path in ("/api/v1/tunnels/t-%1b%5b2J", "/api/v1/tokens/a%0ab/revoke",
                 "/api/v1/tunnels?search=a%00b", "/api/v1/ports?tunnel=t%7f",
                 "/api/v1/tunnels?search=%1b"):
        method = "POST" if path.endswith("revoke") else "GET"
        status, resp = server.api(method, path)
        assert status == 400, (path, status, resp)
    # ids of the wrong alphabet are refused too, not looked up
    status, resp = server.api("GET", "/api/v1/tunnels/" + "a%20b")
    assert status == 400, resp
    status, resp = server.api("GET", "/api/v1/tunnels?search=" + "s" * 201)
    assert status == 400, resp
    # the fine ones still work
    status, resp = server.api("GET", f"/api/v1/tunnels?search={client.tunnel_id[:6]}")
    assert status == 200 and resp["total"] == 1, resp
    assert_clean_logs(server)


def test_registration_log_line_says_what_it_is(server):
    server.navectl("registration", "create", json=True)
    server.navectl("registration", "create", "--max-uses", "1", "--expires", "24h", json=True)
    log = server.controld.output()
    assert re.search(r"registration \w{8} created \(unlimited uses, never expires\)", log), log
    assert re.search(r"registration \w{8} created \(1 use, expires in 1d\)", log), log

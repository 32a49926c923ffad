# SPDX-License-Identifier: Apache-2.0
"""nave deauth revokes the client's own token on the server, stops a running
client and leaves no token in its config: while running (over the control
link), while stopped (one short connection), and with the server away
(refused unless --force)."""
import re

import navetest as nt
from navetest import KiB


def token_in(ini):
    m = re.search(r"^token\s*=\s*(\S*)", ini.read_text(), re.M)
    return m.group(1) if m else ""


def revoked(server, tunnel_id):
    tid = server.tunnel(tunnel_id)["token_id"]
    return [t for t in server.navectl("tokens", "ls", json=True)["items"]
            if t["id"] == tid][0]["revoked"]


def test_deauth_while_running(server, make_client, services):
    c = make_client("c")
    s = services(nt.h_exchange, "svc")
    port = c.tcp_add(s.port)
    nt.exchange(port, 16 * KiB)
    p = c.nave("deauth")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"deauthorised: the server revoked the token of tunnel "
                               f"{c.tunnel_id}"), p.stdout
    assert c.wait_exit(15) == 0, nt.tail(c.proc.output())
    assert token_in(c.ini) == ""
    assert revoked(server, c.tunnel_id)
    nt.wait_for(lambda: server.ports(c.tunnel_id) == [], 30, "ports released")
    nt.wait_port_closed(port)
    # a rule command afterwards does not write the token back
    assert c.tcp_add_raw(s.port, name="later").returncode == 0
    assert token_in(c.ini) == ""
    p = c.nave("start")
    assert p.returncode == 1 and "not configured" in p.stderr, p.stderr


def test_deauth_while_stopped(server, make_client, services):
    c = make_client("c")
    s = services(nt.h_exchange, "svc")
    port = c.tcp_add(s.port)
    c.stop()
    p = c.nave("deauth")
    assert p.returncode == 0, p.stderr
    assert c.tunnel_id in p.stdout, p.stdout
    assert token_in(c.ini) == ""
    assert revoked(server, c.tunnel_id)
    assert server.ports(c.tunnel_id) == []
    nt.wait_port_closed(port)


def test_deauth_kicks_a_session_elsewhere(server, make_client, services):
    """The same token running in another process (another config copy) is shut down."""
    c = make_client("c")
    copy = c.dir / "copy.ini"
    copy.write_text(c.ini.read_text().replace(str(c.sock), str(c.dir / "copy.sock")))
    p = nt.run([nt.NAVE, "deauth", "--config", copy])
    assert p.returncode == 0, p.stderr
    assert c.wait_exit(15) == 1
    assert "revoked" in c.proc.output()
    assert revoked(server, c.tunnel_id)


def test_deauth_without_the_server(server, make_client):
    c = make_client("c", start=False)
    tok = token_in(c.ini)
    server.stop()
    p = c.nave("deauth")
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1 and "cannot revoke the token on the server" in lines[0], lines
    assert "--force" in lines[0]
    assert token_in(c.ini) == tok
    p = c.nave("deauth", "--force")
    assert p.returncode == 0, p.stderr
    assert token_in(c.ini) == ""


def test_deauth_of_a_revoked_token_just_forgets_it(server, make_client):
    c = make_client("c", start=False)
    tid = server.navectl("tokens", "ls", json=True)["items"][-1]["id"]
    server.navectl("tokens", "revoke", tid, json=True)
    p = c.nave("deauth")
    assert p.returncode == 0, p.stderr
    assert "token revoked" in p.stderr and token_in(c.ini) == ""


def test_deauth_when_only_controld_is_away(server, make_client):
    """relayd answers but cannot ask controld: the token is still live, so it stays."""
    c = make_client("c", start=False)
    tok = token_in(c.ini)
    server.stop_controld()
    p = c.nave("deauth")
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1 and "control daemon" in lines[0] and "--force" in lines[0], lines
    assert token_in(c.ini) == tok
    server.start_controld()
    server.wait_relay_connected()
    p = c.nave("deauth")
    assert p.returncode == 0, p.stderr
    assert token_in(c.ini) == ""

# SPDX-License-Identifier: Apache-2.0
"""navectl against a real nave-controld.

Each test gets its own controld process (fresh state_dir, runtime_dir and a
random 10-port slice of 22000-22999) and drives it only through navectl, as
an operator would; the expectations come from ctl/API.md and the exit-status
contract in README.md, "Commands" (0 done, 1 refused/failed with one line on stderr,
2 bad usage).
"""
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("NAVE_BUILD", ROOT / "build"))
NAVECTL = BUILD / "navectl"
CONTROLD = BUILD / "nave-controld"

REG_TOKEN = re.compile(r"^nvr_([0-9a-f]{8})_[0-9a-f]{48}$")
AUTH_TOKEN = re.compile(r"^nvt_([0-9a-f]{8})_[0-9a-f]{48}$")
TUNNEL_ID = re.compile(r"^t-[0-9a-f]{12}$")
HUMAN_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")


def need(path):
    if not path.exists():
        pytest.skip(f"{path} not built (make {path.relative_to(BUILD.parent)})")


def write_ini(tmp, text):
    ini = tmp / "server.ini"
    ini.write_text(text)
    return ini


class Controld:
    """A running nave-controld with its own directories and port range."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.port_min = 22000 + 10 * random.randrange(100)
        self.port_max = self.port_min + 9
        self.ini = write_ini(
            tmp,
            f"[server]\nstate_dir = {tmp}/var\nruntime_dir = {tmp}/run\n\n"
            f"[ports]\nrange = {self.port_min}-{self.port_max}\n",
        )
        self.sock = tmp / "run" / "control.sock"
        self.log = open(tmp / "controld.log", "wb")
        self.proc = subprocess.Popen(
            [str(CONTROLD), "--config", str(self.ini)],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while not self.sock.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"nave-controld exited {self.proc.returncode}: {self.output()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"no {self.sock} after 15 s: {self.output()}")
            time.sleep(0.05)

    def output(self):
        self.log.flush()
        return (self.tmp / "controld.log").read_text(errors="replace")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"nave-controld ignored SIGTERM for 15 s: {self.output()}")
        self.log.close()
        assert rc == 0, f"nave-controld exited {rc} on SIGTERM: {self.output()}"

    def get(self, path):
        """GET straight over the socket, for comparing with navectl --json."""
        conn = http.client.HTTPConnection("nave", timeout=30)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.sock.settimeout(30)
        conn.sock.connect(str(self.sock))
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()


@pytest.fixture
def ctl(tmp_path):
    need(CONTROLD)
    need(NAVECTL)
    d = Controld(tmp_path)
    yield d
    d.stop()


def run(*args, sock=None):
    cmd = [str(NAVECTL)]
    if sock is not None:
        cmd += ["--socket", str(sock)]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=60)


def ok(ctl, *args):
    p = run(*args, sock=ctl.sock)
    assert p.returncode == 0, f"navectl {args}: exit {p.returncode}: {p.stderr}"
    assert p.stderr == ""
    return p.stdout


def js(ctl, *args):
    out = ok(ctl, "--json", *args)
    return json.loads(out)


def refused(ctl, *args, sock=None):
    """Exit 1 with exactly one 'navectl: reason' line on stderr; returns it."""
    p = run(*args, sock=ctl.sock if sock is None else sock)
    assert p.returncode == 1, f"navectl {args}: exit {p.returncode}: {p.stdout} {p.stderr}"
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and p.stderr.endswith("\n"), p.stderr
    assert lines[0].startswith("navectl: ") and len(lines[0]) > len("navectl: "), lines
    return lines[0]


def rows(out):
    """Human table output -> list of rows (lists of cells split on 2+ spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.strip()]


def new_tunnel(ctl, name="box"):
    tok = js(ctl, "tokens", "create", "--id", name, "--description", f"{name} token")
    return tok["tunnel_id"], tok


# ---- no controld needed --------------------------------------------------


COMMANDS = [
    "status",
    "registration create",
    "registration ls",
    "registration disable",
    "registration enable",
    "tokens create",
    "tokens ls",
    "tokens revoke",
    "tunnels ls",
    "tunnels show",
    "tunnels shutdown",
    "ports ls",
    "ports allocate",
    "ports release",
    "firewall ls",
    "firewall deny add",
    "firewall deny rm",
    "firewall allow add",
    "firewall allow rm",
]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag):
    need(NAVECTL)
    p = run(flag)
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.startswith("usage: navectl")
    for c in COMMANDS:
        assert f"  {c}" in p.stdout, c
    for opt in ("--socket PATH", "--config FILE", "--json"):
        assert opt in p.stdout


@pytest.mark.parametrize(
    "words", [c.split() for c in COMMANDS] + [["ports"], ["firewall"], ["firewall", "deny"]]
)
def test_command_help(words):
    need(NAVECTL)
    p = run(*words, "--help", sock="/nonexistent/control.sock")
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.startswith("usage: navectl")
    assert " ".join(words) in p.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["tokens"],
        ["tokens", "frob"],
        ["tokens", "create", "--bogus"],
        ["tokens", "create", "--id"],
        ["tokens", "revoke"],
        ["tokens", "revoke", "a", "b"],
        ["status", "extra"],
        ["status", "--json=yes"],
        ["ports", "release", "abc"],
        ["ports", "release", "70000"],
        ["ports", "release", "0"],
        ["ports", "allocate"],
        ["ports", "allocate", "--tunnel", "t-000000000000", "--port", "12x"],
        ["tunnels", "show"],
        ["tunnels", "ls", "--page", "0"],
        ["registration", "create", "--max-uses", "-1"],
        ["registration", "create", "--max-uses", "99999999999999999999999"],
        ["registration", "create", "--expires", "soon"],
        ["--socket"],
        ["--nope", "status"],
        ["firewall", "deny"],
        ["firewall", "deny", "add"],
        ["firewall", "allow", "frob", "10.0.0.0/8"],
    ],
)
def test_bad_usage(args):
    need(NAVECTL)
    # A socket that does not exist: bad usage must be caught before connecting.
    p = run(*args, sock="/nonexistent/control.sock") if args != ["--socket"] else run(*args)
    assert p.returncode == 2, f"{args}: exit {p.returncode}: {p.stderr}"
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("navectl: ") and "--help" in lines[0], lines


def test_unreachable(tmp_path):
    need(NAVECTL)
    sock = tmp_path / "nothere.sock"
    line = refused(None, "status", sock=sock)
    assert line == f"navectl: cannot connect to controld at {sock}: No such file or directory"

    # A socket file nobody listens on.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(tmp_path / "dead.sock"))
    s.close()
    line = refused(None, "tokens", "ls", sock=tmp_path / "dead.sock")
    assert line.startswith(f"navectl: cannot connect to controld at {tmp_path}/dead.sock: ")


def test_unreachable_via_config(tmp_path):
    need(NAVECTL)
    ini = write_ini(
        tmp_path, f"[server]\nstate_dir = {tmp_path}/var\nruntime_dir = {tmp_path}/gone\n"
    )
    p = run("--config", ini, "status")
    assert p.returncode == 1, p.stderr
    assert p.stderr == (
        f"navectl: cannot connect to controld at {tmp_path}/gone/control.sock: "
        "No such file or directory\n"
    )


def test_bad_config(tmp_path):
    need(NAVECTL)
    ini = write_ini(tmp_path, "[server]\nruntime_dir = /tmp\nbogus = 1\n")
    p = run("--config", ini, "status")
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"navectl: {ini}:3:") and len(p.stderr.splitlines()) == 1


def test_default_socket(tmp_path):
    """Without --socket/--config/$NAVE_CONTROL_SOCKET: the search, ending at ./var/run."""
    need(NAVECTL)
    env = {k: v for k, v in os.environ.items() if k != "NAVE_CONTROL_SOCKET"}
    p = subprocess.run([str(NAVECTL), "status"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, env=env)
    assert p.returncode == 1
    assert p.stderr.startswith("navectl: cannot reach nave-controld: tried ")
    assert "./var/run/control.sock" in p.stderr and len(p.stderr.splitlines()) == 1


def test_controld_bad_config(tmp_path):
    need(CONTROLD)
    ini = write_ini(
        tmp_path,
        f"[server]\nstate_dir = {tmp_path}/var\nruntime_dir = {tmp_path}/run\n"
        "no_such_key = 1\n",
    )
    p = subprocess.run(
        [str(CONTROLD), "--config", str(ini)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2, f"exit {p.returncode}: {p.stderr}"
    assert f"{ini}:4:" in p.stderr, p.stderr
    assert not (tmp_path / "run" / "control.sock").exists()


# ---- against controld ------------------------------------------------------


def test_status(ctl):
    st = js(ctl, "status")
    assert isinstance(st["version"], str) and st["version"]
    assert isinstance(st["uptime"], int) and 0 <= st["uptime"] < 60
    relay = st["relay"]
    for k in (
        "connected",
        "pid",
        "workers",
        "ktls",
        "steering",
        "conns",
        "conns_total",
        "bytes_in",
        "bytes_out",
        "links",
        "links_ktls",
        "links_tls",
        "ktls_fallbacks",
    ):
        assert k in relay, k
    assert relay["connected"] is False  # no nave-relayd in this test
    for k in ("ktls", "links", "links_ktls", "links_tls", "ktls_fallbacks"):
        assert relay[k] is None, (k, relay[k])
    assert st["tunnels"] == {"total": 0, "online": 0}
    assert "tls_fingerprint" in st
    assert st["ports"] == {"range": f"{ctl.port_min}-{ctl.port_max}", "allocated": 0}

    out = ok(ctl, "status")
    assert re.search(r"^version:\s+" + re.escape(st["version"]) + "$", out, re.M)
    assert re.search(r"^relay:\s+not connected$", out, re.M)
    assert "ktls" not in out, out
    assert re.search(r"^tunnels:\s+0 online, 0 total$", out, re.M)
    assert re.search(rf"^ports:\s+{ctl.port_min}-{ctl.port_max}, 0 allocated$", out, re.M)


def test_socket_from_config_and_options_after_command(ctl):
    p = run("status", "--json", "--config", ctl.ini)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["ports"]["range"] == f"{ctl.port_min}-{ctl.port_max}"
    p = run("tokens", "ls", "--socket", ctl.sock, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["items"] == []


def test_json_is_the_body(ctl):
    js(ctl, "registration", "create", "--description", "x")
    for args, path in (
        (["status"], "/api/v1/status"),
        (["registration", "ls"], "/api/v1/registrations"),
    ):
        out = ok(ctl, "--json", *args)
        status, body = ctl.get(path)
        assert status == 200
        a, b = json.loads(out), json.loads(body)
        if "uptime" in a:
            a.pop("uptime"), b.pop("uptime")
        else:
            assert out.rstrip("\n") == body.rstrip("\n")
        assert a == b


def test_registration_create_human(ctl):
    out = ok(ctl, "registration", "create")
    lines = out.splitlines()
    assert len(lines) == 2, out
    m = REG_TOKEN.match(lines[0])
    assert m, lines[0]
    assert "nave configure --server HOST:PORT --registration " + lines[0] in lines[1]

    reg = js(ctl, "registration", "ls")["items"]
    assert [r["id"] for r in reg] == [m.group(1)]


def test_registration_lifecycle(ctl):
    t0 = int(time.time())
    a = js(
        ctl,
        "registration",
        "create",
        "--description",
        "lab laptops",
        "--max-uses",
        "3",
        "--expires",
        "1h",
    )
    assert re.fullmatch(r"[0-9a-f]{8}", a["id"])
    assert REG_TOKEN.match(a["token"]) and a["token"].startswith(f"nvr_{a['id']}_")
    assert a["description"] == "lab laptops"
    assert a["max_uses"] == 3 and a["uses"] == 0 and a["enabled"] is True
    assert abs(a["created_at"] - t0) <= 5
    assert abs(a["expires_at"] - (t0 + 3600)) <= 5

    b = js(ctl, "registration", "create")
    assert b["max_uses"] == 0 and b["expires_at"] is None and b["description"] == ""

    # "500ms" must not round down to 0 (= never).
    c = js(ctl, "registration", "create", "--expires", "500ms")
    assert c["expires_at"] is not None and c["expires_at"] - t0 <= 5

    ls = js(ctl, "registration", "ls")
    assert ls["page"] == 1 and ls["per_page"] == 50 and ls["total"] == 3
    by_id = {r["id"]: r for r in ls["items"]}
    assert set(by_id) == {a["id"], b["id"], c["id"]}
    for r in ls["items"]:
        assert "token" not in r
        assert set(r) >= {
            "id",
            "description",
            "max_uses",
            "uses",
            "expires_at",
            "enabled",
            "created_at",
        }
    assert by_id[a["id"]]["description"] == "lab laptops"

    table = rows(ok(ctl, "registration", "ls"))
    assert table[0] == ["ID", "ENABLED", "USES", "MAX", "EXPIRES", "CREATED", "RESTRICTIONS",
                        "DESCRIPTION"]
    row_a = next(r for r in table if r[0] == a["id"])
    assert row_a[1] == "yes" and row_a[2] == "0" and row_a[3] == "3"
    assert HUMAN_TIME.fullmatch(row_a[4]) and HUMAN_TIME.fullmatch(row_a[5])
    assert row_a[6] == "-" and row_a[7] == "lab laptops"
    row_b = next(r for r in table if r[0] == b["id"])
    assert row_b[3] == "unlimited" and row_b[4] == "never"

    assert ok(ctl, "registration", "disable", a["id"]) == f"registration {a['id']} disabled\n"
    r = js(ctl, "registration", "disable", a["id"])
    assert r["id"] == a["id"] and r["enabled"] is False and "token" not in r
    assert {x["id"]: x["enabled"] for x in js(ctl, "registration", "ls")["items"]}[a["id"]] is False
    assert next(r for r in rows(ok(ctl, "registration", "ls")) if r[0] == a["id"])[1] == "no"

    r = js(ctl, "registration", "enable", a["id"])
    assert r["id"] == a["id"] and r["enabled"] is True
    assert ok(ctl, "registration", "enable", a["id"]) == f"registration {a['id']} enabled\n"

    refused(ctl, "registration", "disable", "ffffffff")
    refused(ctl, "registration", "enable", "not-an-id")


def test_tokens(ctl):
    t0 = int(time.time())
    tok = js(ctl, "tokens", "create", "--id", "web-1", "--description", "frontend")
    assert re.fullmatch(r"[0-9a-f]{8}", tok["id"])
    assert AUTH_TOKEN.match(tok["token"]) and tok["token"].startswith(f"nvt_{tok['id']}_")
    assert TUNNEL_ID.match(tok["tunnel_id"])
    assert tok["description"] == "frontend" and tok["revoked"] is False
    assert abs(tok["created_at"] - t0) <= 5

    out = ok(ctl, "tokens", "create")
    lines = out.splitlines()
    assert len(lines) == 2, out
    m = AUTH_TOKEN.match(lines[0])
    assert m, out
    assert "--key " + lines[0] in lines[1]

    ls = js(ctl, "tokens", "ls")
    assert ls["total"] == 2 and ls["page"] == 1 and ls["per_page"] == 50
    by_id = {t["id"]: t for t in ls["items"]}
    assert set(by_id) == {tok["id"], m.group(1)}
    for t in ls["items"]:
        assert "token" not in t
        assert set(t) >= {"id", "tunnel_id", "description", "created_at", "revoked", "last_used"}
        assert t["last_used"] is None and t["revoked"] is False
    assert by_id[tok["id"]]["tunnel_id"] == tok["tunnel_id"]

    table = rows(ok(ctl, "tokens", "ls"))
    assert table[0] == ["ID", "TUNNEL", "REVOKED", "CREATED", "LAST USED", "RESTRICTIONS",
                        "DESCRIPTION"]
    row = next(r for r in table if r[0] == tok["id"])
    assert row[1:3] == [tok["tunnel_id"], "no"] and row[4] == "-" and row[5] == "-"
    assert row[6] == "frontend"

    r = js(ctl, "tokens", "revoke", tok["id"])
    assert r["id"] == tok["id"] and r["revoked"] is True and "token" not in r
    assert ok(ctl, "tokens", "revoke", m.group(1)) == f"token {m.group(1)} revoked\n"
    assert all(t["revoked"] for t in js(ctl, "tokens", "ls")["items"])
    assert next(r for r in rows(ok(ctl, "tokens", "ls")) if r[0] == tok["id"])[2] == "yes"

    refused(ctl, "tokens", "revoke", "ffffffff")


def test_tunnels(ctl):
    tid, tok = new_tunnel(ctl, "box-7")
    other, _ = new_tunnel(ctl, "cam-2")

    ls = js(ctl, "tunnels", "ls")
    assert ls["total"] == 2 and {t["id"] for t in ls["items"]} == {tid, other}
    assert js(ctl, "tunnels", "ls", "--online")["items"] == []
    found = js(ctl, "tunnels", "ls", "--search", "box-7")
    assert [t["id"] for t in found["items"]] == [tid] and found["total"] == 1
    assert js(ctl, "tunnels", "ls", "--search", "no such & thing")["items"] == []
    assert js(ctl, "tunnels", "ls", "--page", "2")["items"] == []

    t = js(ctl, "tunnels", "show", tid)
    assert t["id"] == tid and t["group_id"] == "box-7"
    assert t["state"] == "offline" and t["token_id"] == tok["id"]
    assert t["ports"] == [] and t["last_seen"] is None
    assert isinstance(t["created_at"], int)
    for k in ("hostname", "os", "arch", "client_version"):
        assert k in t

    table = rows(ok(ctl, "tunnels", "ls"))
    assert table[0][0] == "ID" and "STATE" in table[0]
    row = next(r for r in table if r[0] == tid)
    assert row[1:3] == ["box-7", "offline"]

    out = ok(ctl, "tunnels", "show", tid)
    assert re.search(rf"^id:\s+{tid}$", out, re.M)
    assert re.search(r"^group:\s+box-7$", out, re.M)
    assert re.search(r"^state:\s+offline$", out, re.M)
    assert re.search(r"^last seen:\s+-$", out, re.M)
    assert re.search(r"^created:\s+" + HUMAN_TIME.pattern + "$", out, re.M)

    refused(ctl, "tunnels", "show", "t-000000000000")
    refused(ctl, "tunnels", "shutdown", "t-000000000000")


def test_ports(ctl):
    tid, _ = new_tunnel(ctl, "svc")
    lo, hi = ctl.port_min, ctl.port_max

    p = js(ctl, "ports", "allocate", "--tunnel", tid, "--port", lo + 1)
    assert p["port"] == lo + 1 and p["tunnel_id"] == tid
    assert "rule" in p and isinstance(p["created_at"], int)

    q = js(ctl, "ports", "allocate", "--tunnel", tid)
    assert lo <= q["port"] <= hi and q["port"] != lo + 1

    out = ok(ctl, "ports", "allocate", "--tunnel", tid, "--port", lo + 2)
    assert out == f"port {lo + 2} allocated to tunnel {tid}\n"

    refused(ctl, "ports", "allocate", "--tunnel", tid, "--port", hi + 1)  # out of range
    # Taken: held by another tunnel. (The same tunnel asking again for a port it
    # holds is not a conflict in controld: it gets the port back, as with
    # ctl_proto.h port requests; ctl/API.md does not say either way.)
    other, _ = new_tunnel(ctl, "svc2")
    line = refused(ctl, "ports", "allocate", "--tunnel", other, "--port", lo + 2)
    assert str(lo + 2) in line
    refused(ctl, "ports", "allocate", "--tunnel", "t-000000000000")  # unknown tunnel

    ls = js(ctl, "ports", "ls", "--tunnel", tid)
    assert sorted(x["port"] for x in ls["items"]) == sorted([lo + 1, lo + 2, q["port"]])
    assert ls["total"] == 3 and all(x["tunnel_id"] == tid for x in ls["items"])
    assert js(ctl, "ports", "ls", "--tunnel", other)["items"] == []
    assert js(ctl, "ports", "ls")["total"] == 3
    assert js(ctl, "status")["ports"]["allocated"] == 3
    assert sorted(x["port"] for x in js(ctl, "tunnels", "show", tid)["ports"]) == sorted(
        [lo + 1, lo + 2, q["port"]]
    )

    table = rows(ok(ctl, "ports", "ls"))
    assert table[0] == ["PORT", "TRANSPORT", "TUNNEL", "RULE", "CREATED"]
    assert sorted(int(r[0]) for r in table[1:]) == sorted([lo + 1, lo + 2, q["port"]])
    assert all(r[1] == "tcp" and r[2] == tid and HUMAN_TIME.fullmatch(r[4]) for r in table[1:])
    assert all(x["transport"] == "tcp" for x in js(ctl, "ports", "ls")["items"])

    assert js(ctl, "ports", "release", lo + 1) == {"port": lo + 1, "released": True}
    assert ok(ctl, "ports", "release", lo + 2) == f"port {lo + 2} released\n"
    assert [x["port"] for x in js(ctl, "ports", "ls")["items"]] == [q["port"]]
    refused(ctl, "ports", "release", lo + 1)  # not allocated any more

    # A released port can be allocated again, by another tunnel.
    assert js(ctl, "ports", "allocate", "--tunnel", other, "--port", lo + 1)["port"] == lo + 1


def api_post(ctl, path, body):
    conn = http.client.HTTPConnection("nave", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.settimeout(30)
    conn.sock.connect(str(ctl.sock))
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read().decode())
    finally:
        conn.close()


def test_ports_udp(ctl):
    """UDP ports: --transport, one namespace with TCP ports, TRANSPORT in ls."""
    tid, _ = new_tunnel(ctl, "svc")
    lo = ctl.port_min

    out = ok(ctl, "ports", "allocate", "--tunnel", tid, "--port", lo + 1, "--transport", "udp")
    assert out == f"udp port {lo + 1} allocated to tunnel {tid}\n"
    p = js(ctl, "ports", "allocate", "--tunnel", tid, "--transport", "udp")
    assert p["port"] == lo and p["transport"] == "udp", p
    t = js(ctl, "ports", "allocate", "--tunnel", tid, "--transport", "tcp")
    assert t["port"] == lo + 2 and t["transport"] == "tcp", t  # lo, lo + 1 are taken

    # the other transport's number: refused with one line naming it
    line = refused(ctl, "ports", "allocate", "--tunnel", tid, "--port", lo + 1)
    assert line == f"navectl: port {lo + 1} is a udp port of this tunnel", line
    line = refused(ctl, "ports", "allocate", "--tunnel", tid, "--port", lo + 2,
                   "--transport", "udp")
    assert line == f"navectl: port {lo + 2} is a tcp port of this tunnel", line
    other, _ = new_tunnel(ctl, "svc2")
    line = refused(ctl, "ports", "allocate", "--tunnel", other, "--port", lo + 1,
                   "--transport", "udp")
    assert line == f"navectl: port {lo + 1} is allocated to another tunnel", line

    # a bad transport: bad usage, one line, before any request
    for bad in ("sctp", "UDP", ""):
        p = run("ports", "allocate", "--tunnel", tid, "--transport", bad, sock=ctl.sock)
        assert p.returncode == 2 and p.stdout == "", p
        lines = p.stderr.splitlines()
        assert len(lines) == 1 and "--transport must be tcp or udp" in lines[0], p.stderr
    # and at the API
    for bad in ("sctp", "", 17, ["udp"]):
        st, body = api_post(ctl, "/api/v1/ports", {"tunnel": tid, "transport": bad})
        assert (st, body) == (400, {"error": '"transport" must be "tcp" or "udp"'}), (bad, body)
    st, body = api_post(ctl, "/api/v1/ports", {"tunnel": other, "transport": "udp",
                                               "rule": "dns"})
    assert st == 201 and body["transport"] == "udp" and body["rule"] == "dns", body
    st, body = api_post(ctl, "/api/v1/ports", {"tunnel": other, "transport": None})
    assert st == 201 and body["transport"] == "tcp", body

    # ls: the table's TRANSPORT column, --json's "transport"
    ls = js(ctl, "ports", "ls")
    got = {x["port"]: (x["tunnel_id"], x["transport"]) for x in ls["items"]}
    assert got == {lo: (tid, "udp"), lo + 1: (tid, "udp"), lo + 2: (tid, "tcp"),
                   lo + 3: (other, "udp"), lo + 4: (other, "tcp")}, got
    table = rows(ok(ctl, "ports", "ls", "--tunnel", tid))
    assert table[0] == ["PORT", "TRANSPORT", "TUNNEL", "RULE", "CREATED"]
    assert [r[:3] for r in table[1:]] == [[str(lo), "udp", tid], [str(lo + 1), "udp", tid],
                                          [str(lo + 2), "tcp", tid]], table
    assert {x["port"]: x["transport"] for x in js(ctl, "tunnels", "show", tid)["ports"]} == \
        {lo: "udp", lo + 1: "udp", lo + 2: "tcp"}

    # release takes a UDP port by its number, and the number is free for either transport
    assert ok(ctl, "ports", "release", lo + 1) == f"port {lo + 1} released\n"
    t = js(ctl, "ports", "allocate", "--tunnel", other, "--port", lo + 1)
    assert t["transport"] == "tcp", t

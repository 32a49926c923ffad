# SPDX-License-Identifier: Apache-2.0
"""The command lines of nave and navectl: what they say when the server's
certificate fingerprint is wrong, that every --help lists every option,
--port 0, credentials from files and the environment, how navectl finds
controld's socket, the relay's limit, kTLS and kernel-assist counters in
navectl status, per-port counters in navectl ports ls,
kTLS in nave status, that [client] ktls survives a rewrite, and that
nothing from a server reaches the terminal as a control character.

Where a real server cannot produce the input (control characters, counters
an older controld does not send), a small fake in this file stands in for
controld's API socket or for a running client's local socket.
"""
import http.server
import json
import os
import re
import socket
import socketserver
import stat
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

import navetest as nt

ROOT = Path(__file__).resolve().parents[2]


def one_line(p, rc, prefix="nave: "):
    """Exit rc and exactly one line on stderr (after the daemon-style log
    lines are taken out); returns it."""
    assert p.returncode == rc, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(prefix) and len(lines[0]) > len(prefix), lines
    return lines[0]


def clean_env(**extra):
    """The environment without any of the variables these tools read."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NAVE_REGISTRATION", "NAVE_KEY", "NAVE_CONTROL_SOCKET", "NAVE_CONFIG")}
    env.update(extra)
    return env


def nave(*args, env=None, input=None, cwd=None, timeout=nt.CMD_TIMEOUT):
    return subprocess.run(
        [str(nt.NAVE)] + [str(a) for a in args], capture_output=True, text=True,
        timeout=timeout, env=env if env is not None else clean_env(), cwd=cwd,
        input=input if input is not None else "",
    )


def navectl(*args, env=None, cwd=None):
    return subprocess.run(
        [str(nt.NAVECTL)] + [str(a) for a in args], capture_output=True, text=True,
        timeout=nt.CMD_TIMEOUT, env=env if env is not None else clean_env(), cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


# ---------------------------------------------------------------- 1. fingerprint


def _wrong_fingerprint(fp):
    """The server's fingerprint with its first byte changed."""
    first = "00" if not fp.startswith("00") else "11"
    return first + fp[2:]


def test_configure_wrong_fingerprint_says_expected_and_got(server, tmp_path):
    # Needs cconn_open() in client/client.c to use tls_verify_error() (tls/tls.h).
    right = server.fingerprint()
    wrong = _wrong_fingerprint(right)
    ini = tmp_path / "fpr.ini"
    # given lower case without colons: the message shows the colon form
    given = wrong.replace(":", "").lower()
    p = nave("configure", "--server", f"127.0.0.1:{server.https}",
             "--registration", server.registration(), "--fingerprint", given, "--config", ini)
    line = one_line(p, 1)
    assert line == (f"nave: TLS: server certificate fingerprint mismatch: "
                    f"expected {wrong}, got {right}"), line
    assert not ini.exists()


def test_start_wrong_fingerprint_is_fatal(server, make_client):
    # Needs client.c: tls_verify_error() in cconn_open() and try_connect()
    # matching TLS_VERIFY_ERROR_PREFIX, so that a mismatch still ends nave start.
    c = make_client("pin", start=False)
    right = server.fingerprint()
    wrong = _wrong_fingerprint(right)
    text = c.ini.read_text()
    c.ini.write_text(re.sub(r"(?m)^fingerprint = .*$", f"fingerprint = {wrong}", text))
    p = nave("start", "--config", c.ini, timeout=30)
    line = one_line(p, 1)
    assert line == (f"nave: TLS: server certificate fingerprint mismatch: "
                    f"expected {wrong}, got {right}"), line


def test_configure_wrong_fingerprint_refused_in_one_line(server, tmp_path):
    """What holds before and after the client.c wiring: exit 1, one line."""
    p = nave("configure", "--server", f"127.0.0.1:{server.https}",
             "--registration", server.registration(),
             "--fingerprint", _wrong_fingerprint(server.fingerprint()),
             "--config", tmp_path / "x.ini")
    line = one_line(p, 1)
    assert line.startswith("nave: TLS: server certificate "), line


# ---------------------------------------------------------------- 2. --help

# Every option of every command, as its --help must list it.
HELP = {
    (): ["--config FILE", "--json", "--version", "--help", "configure", "start", "tunnel",
         "status", "deauth"],
    ("configure",): ["--server HOST[:PORT]", "--registration TOKEN", "--registration-file FILE",
                     "--key TOKEN", "--key-file FILE", "NAVE_REGISTRATION", "NAVE_KEY",
                     "--id NAME", "--ca FILE", "--fingerprint SHA256", "--config FILE",
                     "--json", "--help"],
    ("start",): ["--config FILE", "--help"],
    ("tunnel",): ["tcp add", "ls", "rm NAME", "--port N", "--to HOST:PORT", "--name NAME",
                  "--proxy-protocol v1|v2", "--config FILE", "--json", "--help"],
    ("tunnel", "tcp", "add"): ["--port N", "--to HOST:PORT", "--name NAME",
                               "--proxy-protocol v1|v2", "--config FILE", "--json", "--help"],
    ("status",): ["--json", "--config FILE", "--help"],
    ("deauth",): ["--force", "--config FILE", "--help"],
}


def _help(words):
    p = nave(*words, "--help")
    assert p.returncode == 0 and p.stderr == "", (words, p.returncode, p.stderr)
    assert p.stdout.startswith("usage: nave"), p.stdout
    return p.stdout


@pytest.mark.parametrize("words", list(HELP), ids=lambda w: " ".join(w) or "nave")
def test_help_lists_every_option(words):
    out = _help(words)
    for opt in HELP[words]:
        assert opt in out, f"nave {' '.join(words)} --help lacks {opt}:\n{out}"


def _readme_commands():
    """{command words: [--options]} from the client block of README.md."""
    text = (ROOT / "README.md").read_text()
    found = {}
    for line in text.splitlines():
        m = re.match(r"^nave (configure|start|status|tunnel tcp add|tunnel)\b(.*)$", line)
        if not m:
            continue
        opts = re.findall(r"--[a-z][a-z-]*", m.group(2))
        found.setdefault(tuple(m.group(1).split()), []).extend(opts)
    return found


def test_help_lists_what_the_readme_documents():
    documented = _readme_commands()
    assert ("configure",) in documented and ("tunnel", "tcp", "add") in documented, documented
    for words, opts in documented.items():
        out = _help(words)
        for opt in opts:
            assert opt in out, f"README documents {opt} for nave {' '.join(words)}: not in --help"


@pytest.mark.parametrize("words,opts", [
    (("configure",), ["--server", "--registration", "--registration-file", "--key",
                      "--key-file", "--id", "--ca", "--fingerprint"]),
    (("tunnel", "tcp", "add"), ["--port", "--to", "--name", "--proxy-protocol"]),
], ids=["configure", "tunnel tcp add"])
def test_listed_options_are_accepted(words, opts):
    """Each option in the help is one the command takes (parsed before --help)."""
    for opt in opts:
        assert opt in _help(words)
        p = nave(*words, opt, "1", "--help")
        assert p.returncode == 0, (opt, p.stderr)
        assert p.stdout.startswith("usage: nave"), (opt, p.stdout)


@pytest.mark.parametrize("args", [
    ["tunnel", "ls", "--help"], ["tunnel", "rm", "--help"], ["tunnel", "tcp", "--help"],
    ["tunnel", "tcp", "ls", "--help"], ["tunnel", "tcp", "rm", "--help"],
])
def test_tunnel_subcommand_help(args, tmp_path):
    p = nave(*args, "--config", tmp_path / "c.ini")
    assert p.returncode == 0 and p.stderr == "", (args, p.stderr)
    assert "--proxy-protocol" in p.stdout
    assert not (tmp_path / "c.ini").exists()


@pytest.mark.parametrize("args", [
    ["tunnel"], ["tunnel", "tcp"], ["tunnel", "ls", "extra"], ["tunnel", "rm"],
    ["tunnel", "tcp", "frob"], ["status", "extra"], ["deauth", "extra"],
    ["configure", "--bogus"], ["configure", "--server"], ["tunnel", "tcp", "add", "--nope"],
    ["tunnel", "tcp", "add", "--to", "127.0.0.1:1"] + ["--name", "x"] * 40,
], ids=lambda a: " ".join(a)[:40])
def test_bad_usage_is_one_line(args, tmp_path):
    p = nave(*args, "--config", tmp_path / "c.ini")
    one_line(p, 2)
    assert p.stdout == ""


# ---------------------------------------------------------------- 3. --port 0


def test_port_0_means_any_when_stopped(tmp_path):
    ini = tmp_path / "c.ini"
    p = nave("tunnel", "tcp", "add", "--port", "0", "--to", "127.0.0.1:8000", "--name", "w",
             "--config", ini)
    assert p.returncode == 0, p.stderr
    assert "saved w" in p.stdout
    assert re.search(r"(?m)^port = 0$", ini.read_text()), ini.read_text()
    ls = json.loads(nave("--json", "tunnel", "ls", "--config", ini).stdout)
    assert ls == [{"name": "w", "to": "127.0.0.1:8000", "port": 0, "state": "saved"}]


def test_port_0_means_any_when_running(server, make_client, services):
    c = make_client("any")
    svc = services(nt.h_exchange)
    port = c.tcp_add(svc.port, port=0)
    assert server.port_min <= port <= server.port_max
    nt.exchange(port, 1000)


@pytest.mark.parametrize("bad", ["", "-1", "65536", "1x", " 1", "+1", "99999999999"])
def test_bad_port(bad, tmp_path):
    p = nave("tunnel", "tcp", "add", "--port", bad, "--to", "127.0.0.1:8000",
             "--config", tmp_path / "c.ini")
    line = one_line(p, 2)
    assert "--port" in line


# ---------------------------------------------------------------- 4. credentials

TOKEN_LINE = re.compile(r"(?m)^token = (nvt_[0-9a-f]{8}_[0-9a-f]{48})$")


def _configure(server, ini, args, env=None, input=None):
    return nave("configure", "--server", f"127.0.0.1:{server.https}",
                "--fingerprint", server.fingerprint(), "--config", ini, *args,
                env=clean_env(**(env or {})), input=input)


WAYS = ["registration", "registration-file", "registration-file-stdin", "NAVE_REGISTRATION",
        "key", "key-file", "key-file-stdin", "NAVE_KEY"]


@pytest.mark.parametrize("way", WAYS)
def test_credentials_each_way(way, server, tmp_path, procs, services):
    key = way.startswith("key") or way == "NAVE_KEY"
    if key:
        made = server.token(id=f"w{WAYS.index(way)}")
        tok, want_tid = made["token"], made["tunnel_id"]
    else:
        tok, want_tid = server.registration(), None
    opt = "--key" if key else "--registration"
    env, inp = None, None
    # files and stdin: white space around the token and more lines after it
    content = f"  \t{tok} \r\nsecond line\n"
    if way in ("registration", "key"):
        args = [opt, tok]
    elif way.endswith("-stdin"):
        args, inp = [f"{opt}-file", "-"], content
    elif way.endswith("-file"):
        f = tmp_path / "token.txt"
        f.write_text(content)
        f.chmod(0o600)
        args = [f"{opt}-file", f]
    else:
        args, env = [], {way: tok}
    c = nt.Client(server, tmp_path, procs, "c")
    p = _configure(server, c.ini, args, env, inp)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    m = re.match(r"configured tunnel (t-[0-9a-f]{12}) on ", p.stdout)
    assert m, p.stdout
    if want_tid:
        assert m.group(1) == want_tid
    text = c.ini.read_text()
    saved = TOKEN_LINE.search(text)
    assert saved, text
    if key:
        assert saved.group(1) == tok
    # and the token really works: the client comes online with it
    c.start()
    assert c.tunnel_id == m.group(1)
    svc = services(nt.h_exchange)
    nt.exchange(c.tcp_add(svc.port), 1000)


# Two sources at once: bad usage, one line naming both.
CONFLICTS = [
    (["--registration", "nvr_a", "--key", "nvt_b"], {}, ("--registration", "--key")),
    (["--registration", "nvr_a", "--registration-file", "F"], {},
     ("--registration", "--registration-file")),
    (["--registration", "nvr_a"], {"NAVE_KEY": "nvt_b"}, ("--registration", "NAVE_KEY")),
    (["--key-file", "F"], {"NAVE_REGISTRATION": "nvr_a"}, ("--key-file", "NAVE_REGISTRATION")),
    ([], {"NAVE_REGISTRATION": "nvr_a", "NAVE_KEY": "nvt_b"}, ("NAVE_REGISTRATION", "NAVE_KEY")),
    (["--key", "nvt_a", "--key", "nvt_b"], {}, ("--key",)),
    (["--registration-file", "F", "--key-file", "F"], {}, ("--registration-file", "--key-file")),
]


@pytest.mark.parametrize("args,env,names", CONFLICTS)
def test_credentials_conflict(args, env, names, tmp_path):
    f = tmp_path / "F"
    f.write_text("nvr_a\n")
    args = [str(f) if a == "F" else a for a in args]
    p = nave("configure", "--server", "127.0.0.1:1", *args, "--config", tmp_path / "c.ini",
             env=clean_env(**env))
    line = one_line(p, 2)
    for n in names:
        assert n in line, line
    assert not (tmp_path / "c.ini").exists()


def test_credentials_missing(tmp_path):
    line = one_line(nave("configure", "--server", "127.0.0.1:1", "--config", tmp_path / "c.ini"),
                    2)
    for n in ("--registration", "--key-file", "NAVE_KEY"):
        assert n in line, line
    # an empty variable counts as not set
    p = nave("configure", "--server", "127.0.0.1:1", "--config", tmp_path / "c.ini",
             env=clean_env(NAVE_KEY=""))
    assert "needs credentials" in one_line(p, 2)


BAD_FILES = {
    "missing": (None, "No such file or directory"),
    "directory": ("DIR", "Is a directory"),
    "empty": ("", "no token"),
    "blank first line": ("\n" + "nvr_a\n", "no token"),
    "only spaces": ("   \t \n", "no token"),
    "bad character": ("nvr-abc\n", "letters, digits and _"),
    "inner space": ("nvr_a nvr_b\n", "letters, digits and _"),
    "nul byte": ("nvr_\0abc\n", "letters, digits and _"),
    "escape": ("nvr_\x1b[31m\n", "letters, digits and _"),
    "256 bytes": ("a" * 256 + "\n", "longer than 255"),
    "endless line": ("a" * 10000, "longer than 255"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
@pytest.mark.parametrize("opt", ["--registration-file", "--key-file"])
def test_credentials_bad_file(case, opt, tmp_path):
    content, why = BAD_FILES[case]
    f = tmp_path / "tok"
    if content == "DIR":
        f.mkdir()
    elif content is not None:
        f.write_bytes(content.encode())
    p = nave("configure", "--server", "127.0.0.1:1", opt, f, "--config", tmp_path / "c.ini")
    line = one_line(p, 2)
    assert opt in line and why in line, line
    assert "\x1b" not in p.stderr


@pytest.mark.parametrize("content,why", [("", "no token"), ("a" * 300, "longer than 255"),
                                          ("bad token\n", "letters, digits and _")],
                         ids=["empty", "300 bytes", "space"])
def test_credentials_bad_stdin(content, why, tmp_path):
    p = nave("configure", "--server", "127.0.0.1:1", "--key-file", "-",
             "--config", tmp_path / "c.ini", input=content)
    line = one_line(p, 2)
    assert "stdin" in line and why in line, line


@pytest.mark.parametrize("src", ["--registration", "--key", "NAVE_REGISTRATION", "NAVE_KEY"])
def test_credentials_bad_token_text(src, tmp_path):
    for bad, why in (("nvr a", "letters, digits and _"), ("x" * 256, "longer than 255")):
        args, env = ([src, bad], {}) if src.startswith("--") else ([], {src: bad})
        p = nave("configure", "--server", "127.0.0.1:1", *args, "--config", tmp_path / "c.ini",
                 env=clean_env(**env))
        line = one_line(p, 2)
        assert src in line and why in line, line


def test_credentials_255_bytes_is_not_bad_usage(tmp_path):
    """The longest token passes the checks and goes to the server (none here: exit 1)."""
    f = tmp_path / "tok"
    f.write_text("a" * 255 + "\n")
    port = nt.free_port()
    p = nave("configure", "--server", f"127.0.0.1:{port}", "--key-file", f,
             "--config", tmp_path / "c.ini")
    line = one_line(p, 1)
    assert "connect" in line, line


def test_configure_help_documents_credentials():
    out = _help(("configure",))
    for s in ("--registration-file FILE", "--key-file FILE", "NAVE_REGISTRATION", "NAVE_KEY",
              "stdin"):
        assert s in out, s


# ---------------------------------------------------------------- 5. navectl finds controld


class LocalControld:
    """nave-controld with relative state_dir ./var and runtime_dir ./var/run,
    run with its working directory at tmp: the layout of `make run`."""

    def __init__(self, tmp):
        self.tmp = tmp
        lo = 22000 + 10 * (os.getpid() % 100)
        self.ini = tmp / "server.ini"
        self.ini.write_text("[server]\nstate_dir = ./var\nruntime_dir = ./var/run\n\n"
                            f"[ports]\nrange = {lo}-{lo + 9}\n")
        self.sock = tmp / "var" / "run" / "control.sock"
        self.proc = nt.Proc("nave-controld", [nt.CONTROLD, "--config", self.ini],
                            tmp / "controld.log", tmp).start()
        nt.wait_for(self._ready, 30, "controld's control.sock")

    def _ready(self):
        if not self.proc.alive():
            raise nt.Failure(f"nave-controld exited {self.proc.poll()}: {self.proc.output()}")
        return self.sock.exists()

    def stop(self):
        nt.check_exit("nave-controld", self.proc.stop(), self.proc.output())


@pytest.fixture
def local_ctl(tmp_path):
    for b in (nt.CONTROLD, nt.NAVECTL):
        if not b.exists():
            pytest.fail(f"{b} is not built")
    d = LocalControld(tmp_path)
    yield d
    d.stop()


def _status_ok(p):
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert p.stdout.startswith("version:"), p.stdout


def test_navectl_finds_socket_via_env(local_ctl, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _status_ok(navectl("status", cwd=elsewhere,
                       env=clean_env(NAVE_CONTROL_SOCKET=str(local_ctl.sock))))
    # --socket and --config come first
    bogus = clean_env(NAVE_CONTROL_SOCKET=str(tmp_path / "nothere.sock"))
    _status_ok(navectl("--socket", local_ctl.sock, "status", cwd=elsewhere, env=bogus))
    _status_ok(navectl("--config", local_ctl.ini, "status", cwd=tmp_path, env=bogus))
    # a variable naming nothing is not searched past: its own error
    p = navectl("status", cwd=tmp_path, env=bogus)
    line = one_line(p, 1, "navectl: ")
    assert line == (f"navectl: cannot connect to controld at {tmp_path}/nothere.sock: "
                    "No such file or directory"), line


def test_navectl_finds_socket_in_var_run(local_ctl, tmp_path):
    _status_ok(navectl("status", cwd=tmp_path))
    js = json.loads(navectl("--json", "status", cwd=tmp_path).stdout)
    assert "version" in js


def _system_paths_absent():
    if os.path.exists("/etc/nave/nave.ini") or os.path.exists("/run/nave/control.sock"):
        pytest.skip("this machine has /etc/nave/nave.ini or /run/nave/control.sock")


def test_navectl_names_every_path_tried(tmp_path):
    _system_paths_absent()
    p = navectl("status", cwd=tmp_path)
    line = one_line(p, 1, "navectl: ")
    assert line == ("navectl: cannot reach nave-controld: tried /run/nave/control.sock, "
                    "./var/run/control.sock (no such socket); use --socket PATH or --config "
                    "FILE"), line
    assert p.stdout == ""


def test_navectl_dead_socket_in_var_run(tmp_path):
    """A socket file nobody listens on (controld gone): said so, per path."""
    _system_paths_absent()
    run_dir = tmp_path / "var" / "run"
    run_dir.mkdir(parents=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(run_dir / "control.sock"))
    s.close()
    line = one_line(navectl("tokens", "ls", cwd=tmp_path), 1, "navectl: ")
    assert line == ("navectl: cannot reach nave-controld: tried /run/nave/control.sock "
                    "(no such socket), ./var/run/control.sock (connection refused); "
                    "use --socket PATH or --config FILE"), line


def test_navectl_help_explains_the_search():
    p = navectl("--help")
    assert p.returncode == 0
    for s in ("NAVE_CONTROL_SOCKET", "/etc/nave/nave.ini", "/run/nave/control.sock",
              "./var/run/control.sock"):
        assert s in p.stdout, s


# ---------------------------------------------------------------- fakes


class FakeControld:
    """Answers controld's API on a Unix socket with canned replies:
    routes[(method, path)] = (status, body object or raw str)."""

    def __init__(self, path, routes):
        self.path = str(path)
        self.routes = routes
        self.requests = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                fake.requests.append((self.command, self.path, body))
                status, obj = fake.routes.get((self.command, self.path.split("?")[0]),
                                              (404, {"error": "no such thing"}))
                data = (obj if isinstance(obj, str) else json.dumps(obj)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _reply

            def log_message(self, *a):
                pass

            def address_string(self):
                return "unix"

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.srv = Server(self.path, Handler)
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def fake_ctl(tmp_path):
    made = []

    def make(routes):
        f = FakeControld(tmp_path / f"fake{len(made)}.sock", routes)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def status_body(relay_extra=None, connected=True):
    relay = {"connected": connected}
    if connected:
        relay.update({"pid": 4242, "workers": 2, "ktls": "off", "steering": "listeners",
                      "links": 3, "conns": 1, "conns_total": 9, "bytes_in": 100,
                      "bytes_out": 2048})
    relay.update(relay_extra or {})
    return {"version": "0.test", "uptime": 61, "relay": relay,
            "tunnels": {"total": 2, "online": 1}, "tls_fingerprint": "AB:CD",
            "ports": {"range": "22000-22999", "allocated": 1}}


# ---------------------------------------------------------------- 6. status limits


def _status_lines(fake_ctl, body):
    f = fake_ctl({("GET", "/api/v1/status"): (200, body)})
    p = navectl("--socket", f.path, "status")
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


def test_status_shows_limits(fake_ctl):
    lines = _status_lines(fake_ctl, status_body(
        {"refused_per_source": 7, "idle_timeouts": 0, "pending_timeouts": 12}))
    limits = [line for line in lines if line.strip().startswith("limits:")]
    assert len(limits) == 1, lines
    assert re.fullmatch(r"  limits:\s+7 refused \(per-source limit\), 0 idle timeouts, "
                        r"12 pending timeouts", limits[0]), limits


def test_status_limits_null_and_partial(fake_ctl):
    lines = _status_lines(fake_ctl, status_body(
        {"refused_per_source": None, "idle_timeouts": 3}))
    limits = [line.split(":", 1)[1].strip() for line in lines
              if line.strip().startswith("limits:")]
    assert limits == ["- refused (per-source limit), 3 idle timeouts, - pending timeouts"]


def test_status_shows_refusals_for_want_of_links(fake_ctl):
    lines = _status_lines(fake_ctl, status_body(
        {"refused_per_source": 0, "idle_timeouts": 0, "pending_timeouts": 0,
         "refused_max_links": 128, "refused_fd_limit": None}))
    assert "  no link:            128 refused (max_links), - refused (open-file limit)" in lines, \
        lines


def test_status_without_limits_older_controld(fake_ctl):
    lines = _status_lines(fake_ctl, status_body())
    assert not any("limits" in line for line in lines), lines
    assert any(line.startswith("relay:") and "connected" in line for line in lines)


def test_status_relay_not_connected(fake_ctl):
    lines = _status_lines(fake_ctl, status_body(
        {"refused_per_source": None, "idle_timeouts": None, "pending_timeouts": None},
        connected=False))
    assert any(re.fullmatch(r"relay:\s+not connected", line) for line in lines), lines
    assert not any("limits" in line for line in lines), lines


def test_status_real_controld(server):
    """Against the real one, whichever version of the API it speaks."""
    rc, out, err = server.navectl("status")
    assert rc == 0, err
    relay = server.navectl("status", json=True)["relay"]
    have = [k for k in ("refused_per_source", "idle_timeouts", "pending_timeouts")
            if k in relay]
    if have:
        assert re.search(r"(?m)^  limits:\s+\S+ refused \(per-source limit\), \S+ idle "
                         r"timeouts, \S+ pending timeouts$", out), out
    else:
        assert "limits:" not in out


# ---------------------------------------------------------------- 6b. kTLS in status

KTLS_LINE = re.compile(r"^  ktls:\s+(\S.*?) \(links: (\S+) kTLS, (\S+) userspace, "
                       r"(\S+) fallbacks\)$", re.M)


def test_status_shows_ktls_links(fake_ctl):
    lines = _status_lines(fake_ctl, status_body(
        {"ktls": "kernel", "links_ktls": 3, "links_tls": 1, "ktls_fallbacks": 0}))
    ktls = [line for line in lines if line.strip().startswith("ktls:")]
    assert len(ktls) == 1, lines
    assert re.fullmatch(r"  ktls:\s+kernel \(links: 3 kTLS, 1 userspace, 0 fallbacks\)",
                        ktls[0]), ktls


def test_status_ktls_null_partial_and_older_controld(fake_ctl):
    lines = _status_lines(fake_ctl, status_body({"links_ktls": None, "links_tls": 3}))
    ktls = [line.split(":", 1)[1].strip() for line in lines
            if line.strip().startswith("ktls:")]
    assert ktls == ["off (links: - kTLS, 3 userspace, - fallbacks)"], lines
    # a controld that sends no link counters: the mode alone
    lines = _status_lines(fake_ctl, status_body())
    ktls = [line for line in lines if line.strip().startswith("ktls:")]
    assert len(ktls) == 1 and re.fullmatch(r"  ktls:\s+off", ktls[0]), lines


def test_status_ktls_real(server, make_client):
    """relayd connected, a client online with its data links: the counters are
    integers, and on a kernel without kTLS every link is a userspace TLS one."""
    make_client("k")

    def pooled():
        relay = server.navectl("status", json=True)["relay"]
        return relay if isinstance(relay.get("links"), int) and relay["links"] > 0 else None

    relay = nt.wait_for(pooled, nt.START_TIMEOUT, "data links in navectl status")
    for k in ("links_ktls", "links_tls", "ktls_fallbacks"):
        assert type(relay[k]) is int and relay[k] >= 0, (k, relay)
    assert isinstance(relay["ktls"], str) and relay["ktls"], relay
    assert relay["links_ktls"] + relay["links_tls"] == relay["links"], relay
    if not nt.kernel_has_ktls():
        assert relay["links_ktls"] == 0 and relay["links_tls"] == relay["links"], relay

    rc, out, err = server.navectl("status")
    assert rc == 0, err
    m = KTLS_LINE.search(out)
    assert m, out
    links = re.search(r"(?m)^  links:\s+(\d+)$", out)
    assert links, out
    assert int(m.group(2)) + int(m.group(3)) == int(links.group(1)), out
    assert int(m.group(4)) >= 0, out
    if not nt.kernel_has_ktls():
        assert m.group(2) == "0" and m.group(3) == links.group(1), out


def _set_key(ini, key, value):
    text, n = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", ini.read_text())
    if not n:
        text = text.replace("[client]\n", f"[client]\n{key} = {value}\n", 1)
    ini.write_text(text)


def test_nave_status_ktls_real(make_client):
    c = make_client("k")

    def pooled():
        st = c.status()
        return st if st["links"] > 0 else None

    st = nt.wait_for(pooled, nt.START_TIMEOUT, "data links in nave status")
    assert isinstance(st["ktls"], str) and st["ktls"], st
    for k in ("links_ktls", "links_tls", "ktls_fallbacks"):
        assert type(st[k]) is int and st[k] >= 0, (k, st)
    assert st["links_ktls"] + st["links_tls"] == st["links"], st
    if not nt.kernel_has_ktls():
        assert st["links_ktls"] == 0 and st["links_tls"] == st["links"], st

    p = c.nave("status")
    assert p.returncode == 0, p.stderr
    m = re.search(r"(?m)^ktls:    (\S.*?) \(links: (\d+) kTLS, (\d+) userspace, "
                  r"(\d+) fallbacks\)$", p.stdout)
    assert m, p.stdout
    links = re.search(r"(?m)^links:   (\d+) \(\d+ idle\)$", p.stdout)
    assert links, p.stdout
    assert m.group(1) == st["ktls"], p.stdout
    assert int(m.group(2)) + int(m.group(3)) == int(links.group(1)), p.stdout
    if not nt.kernel_has_ktls():
        assert m.group(2) == "0" and m.group(3) == links.group(1), p.stdout


def test_nave_status_ktls_line(fake_client):
    ini = fake_client({"ok": True, "type": "status", "state": "online", "server": "s:1",
                       "tunnel_id": "t-1", "links": 4, "idle_links": 3, "ktls": "kernel",
                       "links_ktls": 3, "links_tls": 1, "ktls_fallbacks": 2, "conns": 1,
                       "conns_total": 5, "bytes_in": 10, "bytes_out": 20, "rules": []})
    p = nave("status", "--config", ini)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "state:   online", "server:  s:1", "tunnel:  t-1", "links:   4 (3 idle)",
        "ktls:    kernel (links: 3 kTLS, 1 userspace, 2 fallbacks)",
        "conns:   1 open, 5 total", "bytes:   10 in, 20 out"], p.stdout
    js = json.loads(nave("status", "--json", "--config", ini).stdout)
    assert (js["ktls"], js["links_ktls"], js["links_tls"], js["ktls_fallbacks"]) == \
        ("kernel", 3, 1, 2)


def test_client_ktls_key_survives_rewrites(server, make_client, services, tmp_path):
    """[client] ktls is kept when nave rewrites the config: a rule added while
    stopped, nave configure again, and a rule a running client saves."""
    ini = tmp_path / "k.ini"
    ini.write_text("[client]\nktls = on\n")
    p = nave("tunnel", "tcp", "add", "--to", "127.0.0.1:8000", "--name", "w", "--config", ini)
    assert p.returncode == 0, p.stderr
    assert re.search(r"(?m)^ktls = on$", ini.read_text()), ini.read_text()
    p = nave("configure", "--server", f"127.0.0.1:{server.https}", "--registration",
             server.registration(), "--fingerprint", server.fingerprint(), "--config", ini)
    assert p.returncode == 0, p.stderr
    text = ini.read_text()
    assert re.search(r"(?m)^ktls = on$", text) and "[tcp.w]" in text, text

    c = make_client("run", start=False)
    _set_key(c.ini, "ktls", "off")
    c.start()
    svc = services(nt.h_exchange)
    c.tcp_add(svc.port)
    text = c.ini.read_text()
    assert re.search(r"(?m)^ktls = off$", text) and "[tcp." in text, text


# ---------------------------------------------------------------- 6c. kernel assists

KASSIST = {
    "listeners": 1000,
    "maps": {"ports": 3, "deny": 2, "allow": 0},
    "xdp": {"interface": "eth0", "mode": "generic", "syn_rate": 0, "pass": 9, "deny": 7,
            "not_allowed": 1, "unallocated": 41, "syn_rate_drops": 0, "malformed": 2},
    "firewall_refused": 5,
}


def _relay_lines(lines):
    return {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
            for line in lines if line.startswith("  ")}


def test_status_shows_kernel_assists(fake_ctl):
    lines = _status_lines(fake_ctl, status_body(dict(KASSIST, steering="bpf")))
    got = _relay_lines(lines)
    assert got["steering"] == "bpf (1000 listeners)"
    assert got["xdp"] == "eth0 (generic), 9 passed, no SYN rate limit"
    assert got["maps"] == "3 ports, 2 deny, 0 allow"
    assert got["drops"] == ("7 deny, 1 not allowed, 41 unallocated, 0 SYN rate, 2 malformed "
                            "(XDP); 5 refused at accept (firewall)")
    # in that order, right after steering
    keys = [line.split(":", 1)[0].strip() for line in lines if line.startswith("  ")]
    i = keys.index("steering")
    assert keys[i:i + 4] == ["steering", "xdp", "maps", "drops"], keys


def test_status_kernel_assists_off_and_older_controld(fake_ctl):
    lines = _status_lines(fake_ctl, status_body(
        {"listeners": 1, "maps": None, "xdp": None, "firewall_refused": None}))
    got = _relay_lines(lines)
    assert got["steering"] == "listeners (1 listener)"
    assert got["xdp"] == "off" and got["maps"] == "none (no BPF loaded)"
    assert got["drops"] == "- refused at accept (firewall)"
    # a controld that sends none of them: the mode alone, no new lines
    got = _relay_lines(_status_lines(fake_ctl, status_body()))
    assert got["steering"] == "listeners"
    assert not {"xdp", "maps", "drops"} & set(got), got


def test_status_kernel_assists_malformed(fake_ctl):
    """Odd values from a controld (or what it passed on): '-' or left out, never
    a crash, and nothing reaches the terminal as a control character."""
    lines = _status_lines(fake_ctl, status_body({
        "listeners": "many", "maps": 5, "firewall_refused": {"a": 1},
        "xdp": {"interface": "\u001b[31meth0", "mode": 7, "syn_rate": "x", "pass": -3,
                "deny": None, "not_allowed": 1.5, "unallocated": [], "syn_rate_drops": True},
    }))
    got = _relay_lines(lines)
    assert got["steering"] == "listeners"
    assert got["maps"] == "none (no BPF loaded)"
    assert got["xdp"] == "\\x1b[31meth0 (7), -3 passed, SYN rate limit -/s per source"
    assert got["drops"] == ("- deny, - not allowed, - unallocated, - SYN rate, - malformed "
                            "(XDP); - refused at accept (firewall)")
    assert not any("\x1b" in line for line in lines), lines
    lines = _status_lines(fake_ctl, status_body({"xdp": "on", "maps": [1, 2]}))
    got = _relay_lines(lines)
    assert got["xdp"] == "off" and got["maps"] == "none (no BPF loaded)"
    assert "drops" not in got


def _ports(items):
    return (200, {"items": items, "page": 1, "per_page": 50, "total": len(items)})


def test_ports_ls_counters(fake_ctl):
    base = {"tunnel_id": "t-000000000001", "rule": "web", "created_at": 1700000000}
    f = fake_ctl({("GET", "/api/v1/ports"): _ports([
        dict(base, port=22000, packets=10, bytes=3 * 1024 * 1024),
        dict(base, port=22001),
    ])})
    p = navectl("--socket", f.path, "ports", "ls")
    assert p.returncode == 0, p.stderr
    table = [re.split(r"\s{2,}", line.strip()) for line in p.stdout.splitlines()]
    assert table[0] == ["PORT", "TRANSPORT", "TUNNEL", "RULE", "CREATED", "PACKETS", "BYTES"]
    # a controld from before UDP ports sends no transport: its ports are tcp ports
    assert table[1][:2] == ["22000", "tcp"] and table[1][5:] == ["10", "3.0 MiB"], table
    assert table[2][0] == "22001" and table[2][5:] == ["-", "-"], table
    # no counters anywhere: the four columns of old
    f = fake_ctl({("GET", "/api/v1/ports"): _ports([dict(base, port=22000)])})
    p = navectl("--socket", f.path, "ports", "ls")
    assert p.returncode == 0, p.stderr
    assert re.split(r"\s{2,}", p.stdout.splitlines()[0].strip()) == \
        ["PORT", "TRANSPORT", "TUNNEL", "RULE", "CREATED"]
    # --json: the body as it came
    p = navectl("--socket", f.path, "--json", "ports", "ls")
    assert json.loads(p.stdout)["items"][0]["port"] == 22000


# ---------------------------------------------------------------- 7. control characters

EVIL = "evil\x1b[31mred\x07\x7f\r\ttab\u009bcsi"
EVIL_SHOWN = "evil\\x1b[31mred\\x07\\x7f\\x0d\\x09tab\\xc2\\x9bcsi"


def _no_controls(text):
    bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f]
    assert not bad, f"control characters reach the terminal: {bad!r} in {text!r}"


def _list(items):
    return {"items": items, "page": 1, "per_page": 50, "total": len(items)}


def test_navectl_escapes_tables_and_records(fake_ctl):
    tunnel = {"id": "t-" + EVIL, "group_id": EVIL, "hostname": EVIL, "os": EVIL, "arch": EVIL,
              "client_version": EVIL, "state": "online", "last_seen": EVIL,
              "created_at": 1, "token_id": EVIL, "ports": [{"port": 22001, "rule": EVIL}]}
    f = fake_ctl({
        ("GET", "/api/v1/tunnels"): (200, _list([tunnel])),
        ("GET", "/api/v1/tunnels/t-1"): (200, tunnel),
        ("GET", "/api/v1/registrations"): (200, _list([{
            "id": EVIL, "enabled": True, "uses": 0, "max_uses": 0, "expires_at": None,
            "created_at": 1, "description": EVIL}])),
        ("GET", "/api/v1/tokens"): (200, _list([{
            "id": EVIL, "tunnel_id": EVIL, "revoked": False, "created_at": 1, "last_used": None,
            "description": EVIL}])),
        ("GET", "/api/v1/ports"): (200, _list([{"port": 22001, "tunnel_id": EVIL, "rule": EVIL,
                                                "created_at": 1}])),
        ("GET", "/api/v1/status"): (200, dict(status_body(), version=EVIL,
                                               tls_fingerprint=EVIL)),
        ("POST", "/api/v1/tokens/x/revoke"): (200, {"id": EVIL}),
        ("POST", "/api/v1/tunnels/x/shutdown"): (200, {"id": EVIL}),
        ("POST", "/api/v1/registrations/x/disable"): (200, {"id": EVIL}),
        ("POST", "/api/v1/tokens"): (201, {"id": "a", "token": "nvt_" + EVIL,
                                            "tunnel_id": EVIL}),
        ("POST", "/api/v1/registrations"): (201, {"id": "a", "token": "nvr_" + EVIL}),
        ("POST", "/api/v1/ports"): (201, {"port": 22001, "tunnel_id": EVIL}),
    })
    for args in (["tunnels", "ls"], ["tunnels", "show", "t-1"], ["registration", "ls"],
                 ["tokens", "ls"], ["ports", "ls"], ["status"], ["tokens", "revoke", "x"],
                 ["tunnels", "shutdown", "x"], ["registration", "disable", "x"],
                 ["tokens", "create"], ["registration", "create"],
                 ["ports", "allocate", "--tunnel", "x"]):
        p = navectl("--socket", f.path, *args)
        assert p.returncode == 0, (args, p.stderr)
        _no_controls(p.stdout)
        assert EVIL_SHOWN in p.stdout, (args, p.stdout)


def test_navectl_escapes_error_lines(fake_ctl):
    f = fake_ctl({("GET", "/api/v1/tokens"): (400, {"error": "no: " + EVIL})})
    p = navectl("--socket", f.path, "tokens", "ls")
    line = one_line(p, 1, "navectl: ")
    assert line == "navectl: no: " + EVIL_SHOWN
    _no_controls(p.stderr)


def test_navectl_description_with_controls_is_refused(server):
    """The real API refuses a description with control characters (one line, escaped)."""
    rc, out, err = server.navectl("registration", "create", "--description", EVIL)
    assert rc == 1 and out == "", (rc, out, err)
    assert err.startswith('navectl: "description" must be 1-255 bytes'), err
    assert len(err.splitlines()) == 1
    _no_controls(err)
    rc, out, err = server.navectl("registration", "ls")
    assert rc == 0 and EVIL_SHOWN not in out, (out, err)


class FakeClient:
    """A running nave client's local socket: answers every request with reply."""

    def __init__(self, path, reply):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.reply = reply
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with c:
                c.settimeout(10)
                try:
                    nt.msg_recv(c)
                    if isinstance(self.reply, bytes):
                        c.sendall(self.reply)
                        continue
                    body = json.dumps(dict(self.reply, type="reply")).encode()
                    c.sendall(struct.pack(">I", len(body)) + body)
                except (OSError, nt.Failure):
                    pass

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def fake_client(tmp_path):
    made = []

    def make(reply):
        ini = tmp_path / f"fc{len(made)}.ini"
        f = FakeClient(Path(str(ini) + ".sock"), reply)
        made.append(f)
        return ini

    yield make
    for f in made:
        f.close()


def test_nave_status_and_ls_escape(fake_client):
    ini = fake_client({"ok": True, "type": "status", "state": EVIL, "server": EVIL,
                       "tunnel_id": EVIL, "links": 1, "idle_links": 1, "ktls": EVIL,
                       "links_ktls": 0, "links_tls": 1, "ktls_fallbacks": 0, "conns": 0,
                       "conns_total": 0, "bytes_in": 0, "bytes_out": 0,
                       "rules": [{"name": EVIL, "to": EVIL, "port": 22001, "state": EVIL}]})
    for args in (["status"], ["tunnel", "ls"], ["tunnel", "tcp", "ls"]):
        p = nave(*args, "--config", ini)
        assert p.returncode == 0, (args, p.stderr)
        _no_controls(p.stdout)
        assert EVIL_SHOWN in p.stdout, (args, p.stdout)


def test_nave_error_from_client_escaped(fake_client):
    ini = fake_client({"ok": False, "error": "refused: " + EVIL})
    for args in (["tunnel", "rm", "x"], ["tunnel", "tcp", "add", "--to", "127.0.0.1:1"]):
        p = nave(*args, "--config", ini)
        line = one_line(p, 1)
        assert line == "nave: refused: " + EVIL_SHOWN, line
        _no_controls(p.stderr)


@pytest.mark.parametrize("reply", [b"\0\0\0\x02{}", b"\0\0\0\x05hello", b""],
                         ids=["no type", "not JSON", "closed"])
def test_nave_running_client_gives_no_valid_answer(fake_client, reply):
    """A running client that answers nonsense is not taken for a stopped one:
    the command fails instead of falling back to (and rewriting) the config."""
    ini = fake_client(reply)
    ini.write_text("[client]\n\n[tcp.web]\nto = 127.0.0.1:8000\nport = 0\n")
    before = ini.read_text()
    for args in (["status"], ["tunnel", "ls"], ["tunnel", "rm", "web"],
                 ["tunnel", "tcp", "add", "--to", "127.0.0.1:1"]):
        p = nave(*args, "--config", ini)
        line = one_line(p, 1)
        assert line.startswith("nave: cannot reach the running client at "), (args, line)
        assert p.stdout == ""
    assert ini.read_text() == before

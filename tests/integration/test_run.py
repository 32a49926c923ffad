# SPDX-License-Identifier: Apache-2.0
"""`make run` (tests/run.sh) as a user meets it: started with a server config
of free ports (it takes `--config FILE` for that), its banner has to work
when pasted (the client connects with it and carries data), the token it
makes is one-time and expires in 24 hours, and its walkthrough is the
README's. When a daemon dies the script stops the other and says why in one
line; SIGTERM or Ctrl-C stop both and exit 0; daemons that do not come up
are reported with exit status 1.

run.sh runs in its own session, so the processes it starts are found (and,
whatever happens, cleaned up) by its process group.
"""
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import navetest as nt

RUN_SH = nt.ROOT / "tests" / "run.sh"
README = nt.ROOT / "README.md"
BANNER_END = "Ctrl-C here stops the server"
DAEMONS = ("nave-controld", "nave-relayd")
EXIT_TIMEOUT = 15.0  # run.sh noticing a dead daemon and stopping the other
# Execs run.sh with SIGINT at its default, as at a terminal: when the tests run
# as a background job of a non-interactive shell, SIGINT arrives ignored, and a
# shell cannot trap a signal that was ignored when it started.
DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execv(sys.argv[1], sys.argv[1:])")


# ---------------------------------------------------------------- processes


def _stat(pid):
    """(comm, state, ppid, pgid) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    rest = text[text.rindex(")") + 2:].split()
    return comm, rest[0], int(rest[1]), int(rest[2])


def _all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def group_members(pgid):
    """Live (not zombie) processes of process group pgid: {pid: comm}."""
    out = {}
    for pid in _all_pids():
        st = _stat(pid)
        if st and st[3] == pgid and st[1] != "Z":
            out[pid] = st[0]
    return out


def gone(pid):
    st = _stat(pid)
    return st is None or st[1] == "Z"


class RunSh:
    """tests/run.sh BUILD --config INI in a temp dir (the cwd too), with
    stdout (the banner) and stderr (daemon logs, run: lines) in files."""

    def __init__(self, tmp):
        self.dir = Path(tmp) / "run"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.https = nt.free_port()
        self.http = nt.free_port()
        self.port_min, self.port_max = nt.port_window()
        self.ini = self.dir / "server.ini"
        self.ini.write_text(
            "[server]\n"
            f"state_dir = {self.dir}/var\n"
            f"runtime_dir = {self.dir}/var/run\n"
            "[listen]\n"
            f"http = {self.http}\n"
            f"https = {self.https}\n"
            "address = 127.0.0.1\n"
            "[ports]\n"
            f"range = {self.port_min}-{self.port_max}\n"
            "reserve = off\n"  # the machine's sysctl stays as it was
        )
        self.out_path = self.dir / "stdout"
        self.err_path = self.dir / "stderr"
        self.proc = None
        self.pids = {}
        self.rc = None

    def start(self, wait_banner=True, args=None, env=None):
        if args is None:
            args = [nt.BUILD, "--config", self.ini]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", DEFAULT_SIGINT, str(RUN_SH)] + [str(a) for a in args],
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, env=env,
            )
        if wait_banner:
            self.wait_banner()
        return self

    def stdout(self):
        return self.out_path.read_text(errors="replace")

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def run_lines(self):
        """run.sh's own messages (not the daemons' log lines)."""
        return [ln for ln in self.stderr().splitlines() if ln.startswith("run: ")]

    def wait_banner(self):
        def up():
            if self.proc.poll() is not None:
                raise nt.Failure(f"run.sh exited {self.proc.returncode} before its banner:\n"
                                 f"{nt.tail(self.stderr())}")
            return BANNER_END in self.stdout()

        nt.wait_for(up, nt.START_TIMEOUT, "the make run banner")
        members = group_members(self.proc.pid)
        self.pids = {comm: pid for pid, comm in members.items() if comm in DAEMONS}
        assert sorted(self.pids) == sorted(DAEMONS), members
        for pid in self.pids.values():
            assert _stat(pid)[2] == self.proc.pid, "the daemons are run.sh's children"

    def wait_exit(self, timeout):
        try:
            self.rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise nt.Failure(f"run.sh still running after {timeout:.0f} s:\n"
                             f"{nt.tail(self.stderr())}")
        return self.rc

    def banner(self):
        text = self.stdout()
        return text[:text.index(BANNER_END) + len(BANNER_END)]

    def blocks(self):
        """The banner's command blocks: runs of lines indented by two spaces."""
        blocks, cur = [], []
        for line in self.banner().splitlines():
            if line.startswith("  ") and line.strip():
                cur.append(line.strip())
            elif cur:
                blocks.append(cur)
                cur = []
        if cur:
            blocks.append(cur)
        return blocks

    def navectl(self, *args):
        return nt.run([nt.NAVECTL, "--config", self.ini] + list(args))

    def cleanup(self):
        """Whatever the test did: run.sh and its daemons end (SIGTERM first)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=nt.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        left = group_members(self.proc.pid)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            raise nt.Failure(f"run.sh left processes behind: {left}")


@pytest.fixture
def make_runsh(tmp_path):
    made = []

    def make(start=True):
        r = RunSh(tmp_path)
        made.append(r)
        if start:
            r.start()
        return r

    yield make
    errors = []
    for r in made:
        try:
            r.cleanup()
        except nt.Failure as e:
            errors.append(str(e))
    if errors:
        pytest.fail("teardown: " + "\n".join(errors), pytrace=False)


@pytest.fixture
def runsh(make_runsh):
    return make_runsh()


@pytest.fixture
def clients():
    """nave start processes, stopped before run.sh's teardown."""
    made = []
    yield made
    for p in made:
        p.kill()


# ---------------------------------------------------------------- README


def readme_walkthrough_blocks():
    """The fenced code blocks of README.md's walkthrough section, as lists of lines."""
    text = README.read_text()
    m = re.search(r"^## Walkthrough.*?(?=^## )", text, re.S | re.M)
    assert m, "README.md has no '## Walkthrough' section"
    blocks = []
    for body in re.findall(r"^[ \t]*```[a-z]*\n(.*?)^[ \t]*```", m.group(0), re.S | re.M):
        blocks.append([ln.strip() for ln in body.splitlines() if ln.strip()])
    return blocks


def service_block(blocks, where):
    found = [b for b in blocks if any(ln.startswith("nave tunnel tcp add") for ln in b)]
    assert len(found) == 1, f"{where}: expected one block with 'nave tunnel tcp add': {blocks}"
    return found[0]


def strip_comment(line):
    return re.sub(r"\s+#.*$", "", line)


def check_http_server(line, where):
    """A python3 -m http.server command must serve a --directory outside the repository."""
    argv = shlex.split(strip_comment(line).rstrip("&").strip())
    assert "--directory" in argv, f"{where}: http.server without --directory serves the cwd: {line}"
    d = argv[argv.index("--directory") + 1]
    assert os.path.isabs(d), f"{where}: --directory {d} is relative to the cwd: {line}"
    p = Path(os.path.normpath(d))
    assert p != nt.ROOT and nt.ROOT not in p.parents, \
        f"{where}: --directory {d} is inside the repository"


def test_readme_http_server_does_not_serve_the_repository():
    """Every http.server command in a tracked .md file serves a folder outside
    the repository (from the repository, the cwd holds var/tls/server.key)."""
    files = subprocess.run(["git", "ls-files", "*.md"], cwd=nt.ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    seen = 0
    for f in files:
        for line in (nt.ROOT / f).read_text().splitlines():
            if "http.server" in line and "python" in line:
                check_http_server(line.strip(), f)
                seen += 1
    walk = service_block(readme_walkthrough_blocks(), "README.md")
    assert any("http.server" in ln for ln in walk), walk
    assert seen >= 1


def test_banner_walkthrough_is_the_readmes(runsh):
    """The banner's service example is the README's, line for line; only the
    public port of the curl line follows the config (22000 is the default
    range's first port)."""
    ours = service_block(runsh.blocks(), "banner")
    readme = service_block(readme_walkthrough_blocks(), "README.md")
    assert readme[-1] == "curl http://127.0.0.1:22000/", readme
    expect = [ln.replace("127.0.0.1:22000/", f"127.0.0.1:{runsh.port_min}/") for ln in readme]
    assert ours == expect
    for line in ours:
        if "http.server" in line:
            check_http_server(line, "banner")
    # the connect commands have the README's shape: same commands, same options
    def shape(block):
        return [[a for a in shlex.split(ln) if a.startswith("--") or a in ("nave", "configure",
                                                                          "start", "export")]
                for ln in block]

    readme_connect = next(b for b in readme_walkthrough_blocks()
                          if any(ln.startswith("nave configure") for ln in b))
    assert shape(runsh.blocks()[0]) == shape(readme_connect), (runsh.blocks()[0], readme_connect)


# ---------------------------------------------------------------- the banner works


def test_banner_connects_a_client_once(runsh, tmp_path, services, clients):
    """The banner's commands, pasted: the client connects, a rule carries
    bytes both ways. The token is one-time and expires in 24 hours: a second
    configure with it is refused."""
    banner = runsh.banner()
    assert (f"tunnels on 127.0.0.1:{runsh.https}, public TCP ports "
            f"{runsh.port_min}-{runsh.port_max}.") in banner, banner
    assert "one-time registration token, valid for 24 hours" in " ".join(banner.split())
    connect = runsh.blocks()[0]
    assert len(connect) == 3, connect
    m = re.fullmatch(r"export PATH=(.+):\$PATH", connect[0])
    assert m and Path(m.group(1)) == nt.BUILD.resolve(), connect[0]
    env = dict(os.environ, PATH=f"{m.group(1)}:{os.environ.get('PATH', '')}")
    configure = shlex.split(connect[1])
    assert configure[:2] == ["nave", "configure"], configure
    assert configure[configure.index("--server") + 1] == f"127.0.0.1:{runsh.https}"
    token = configure[configure.index("--registration") + 1]
    assert shlex.split(connect[2]) == ["nave", "start"], connect[2]

    # nave configure as printed (with a client config of the test's own)
    c = nt.Client(None, tmp_path, clients, "banner")
    p = nt.run(configure + ["--config", c.ini], env=env)
    assert p.returncode == 0, p.stderr
    c.start()
    svc = services(nt.h_exchange)
    port = c.tcp_add(svc.port)
    assert port == runsh.port_min, "the banner's curl line names the first rule's port"
    nt.exchange(port, 256 * nt.KiB)

    # one-time, 24 hours
    p = runsh.navectl("--json", "registration", "ls")
    assert p.returncode == 0, p.stderr
    reg_id = token.split("_")[1]
    items = [r for r in nt._json.loads(p.stdout)["items"] if r["id"] == reg_id]
    assert len(items) == 1, p.stdout
    reg = items[0]
    assert reg["max_uses"] == 1 and reg["uses"] == 1, reg
    assert reg["description"] == "make run", reg
    assert abs(reg["expires_at"] - reg["created_at"] - 86400) <= 2, reg
    assert 86400 - 600 <= reg["expires_at"] - time.time() <= 86400 + 5, reg

    again = nt.Client(None, tmp_path, clients, "again")
    p = nt.run(configure + ["--config", again.ini], env=env)
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1 and lines[0].startswith("nave: "), lines
    assert not again.ini.exists()

    c.stop()


# ---------------------------------------------------------------- stopping


@pytest.mark.parametrize("victim, sig, how", [
    ("nave-relayd", signal.SIGKILL, "(killed by signal 9, SIGKILL)"),
    ("nave-controld", signal.SIGKILL, "(killed by signal 9, SIGKILL)"),
    ("nave-controld", signal.SIGTERM, "with status 0"),
])
def test_a_dead_daemon_stops_the_other(runsh, victim, sig, how):
    """One daemon ends: run.sh says which and how in one line, stops the
    other and exits 1 within seconds; no bare 'Killed' from the shell."""
    other = next(d for d in DAEMONS if d != victim)
    os.kill(runsh.pids[victim], sig)
    assert runsh.wait_exit(EXIT_TIMEOUT) == 1, runsh.stderr()
    assert runsh.run_lines() == [f"run: {victim} exited {how}; stopping {other}"], \
        runsh.stderr()
    assert "Killed" not in runsh.stderr()
    for name, pid in runsh.pids.items():
        assert gone(pid), f"{name} (pid {pid}) still runs"
    assert group_members(runsh.proc.pid) == {}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_both_and_exits_0(runsh, sig):
    """SIGTERM or Ctrl-C (SIGINT) to run.sh: both daemons stop, exit 0, no complaint."""
    runsh.proc.send_signal(sig)
    assert runsh.wait_exit(nt.STOP_TIMEOUT) == 0, runsh.stderr()
    assert runsh.run_lines() == [], runsh.stderr()
    for name, pid in runsh.pids.items():
        assert gone(pid), f"{name} (pid {pid}) still runs"
    assert group_members(runsh.proc.pid) == {}


# ---------------------------------------------------------------- not coming up


def test_daemon_that_cannot_start_is_reported(make_runsh):
    """The tunnel port is taken by someone else: relayd exits 1, run.sh says
    so, stops controld, prints no banner and exits 1."""
    r = make_runsh(start=False)
    env = dict(os.environ)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(("127.0.0.1", r.https))
        blocker.listen(1)
        r.start(wait_banner=False, env=env)
        assert r.wait_exit(nt.START_TIMEOUT) == 1, r.stderr()
    finally:
        blocker.close()
    assert r.run_lines() == [
        "run: nave-relayd exited with status 1 before the server came up; "
        "stopping nave-controld"], r.stderr()
    assert BANNER_END not in r.stdout()
    assert group_members(r.proc.pid) == {}


def test_bad_config_starts_nothing(make_runsh):
    r = make_runsh(start=False)
    r.ini.write_text(r.ini.read_text() + "[tunnel]\nbogus = 1\n")
    r.start(wait_banner=False)
    assert r.wait_exit(nt.CMD_TIMEOUT) == 1, r.stderr()
    assert r.run_lines() == ["run: the server config is not valid (see above); nothing started"]
    assert "bogus" in r.stderr()
    assert not (r.dir / "var").exists()


def test_bad_usage_exits_2(make_runsh):
    r = make_runsh(start=False)
    r.start(wait_banner=False, args=[nt.BUILD, "--config", r.ini, "--bogus"])
    assert r.wait_exit(nt.CMD_TIMEOUT) == 2, r.stderr()
    assert r.stderr().startswith("usage: tests/run.sh"), r.stderr()

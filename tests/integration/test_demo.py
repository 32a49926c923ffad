# SPDX-License-Identifier: Apache-2.0
"""`make demo` (tests/demo.sh) as a user meets it: it brings up a whole nave
(controld, relayd, a registered client, a web service behind an HTTP rule for
demo.localhost), prints the URL and a curl line that work, shows one request
going through, and stops everything on a signal, leaving no process and no
temp dir behind. --once exits by itself after that first request. A failure
is one line naming the logs, with exit status 1.

demo.sh runs in its own session with TMPDIR in the test's temp dir, so the
processes it starts are found by its process group and its temp dir by name.
"""
import os
import re
import shlex
import signal
import subprocess
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

import navetest as nt
from test_run import DEFAULT_SIGINT, group_members

DEMO_SH = nt.ROOT / "tests" / "demo.sh"
BANNER_END = "Ctrl-C here stops everything."
URL_RE = re.compile(r"^  (http://demo\.localhost:(\d+)/)$", re.M)
CURL_RE = re.compile(r"^  (curl --resolve demo\.localhost:(\d+):127\.0\.0\.1 "
                     r"http://demo\.localhost:(\d+)/)$", re.M)


class Demo:
    def __init__(self, tmp, build=None):
        self.dir = Path(tmp)
        self.dir.mkdir(parents=True)
        # TMPDIR for demo.sh: short (controld's sockets go under it, and a Unix
        # socket path has at most 107 bytes), removed by cleanup()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="nave-test-demo."))
        self.build = build or nt.BUILD
        self.out_path = self.dir / "demo.stdout"
        self.err_path = self.dir / "demo.stderr"
        self.proc = None

    def start(self, *args):
        env = dict(os.environ, TMPDIR=str(self.tmpdir))
        env.pop("NAVE_DEMO_ONCE", None)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", DEFAULT_SIGINT, str(DEMO_SH), str(self.build),
                 *args], cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, env=env)
        return self

    def stdout(self):
        return self.out_path.read_text(errors="replace")

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise nt.Failure(f"demo.sh still running after {timeout:.0f} s:\n{self.stdout()}"
                             f"\n{self.stderr()}")

    def temp_dirs(self):
        return sorted(p.name for p in self.tmpdir.glob("nave-demo.*"))

    def cleanup(self):
        """Whatever the test did: demo.sh ends; anything of its group left is killed
        and reported."""
        if self.proc is None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
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
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        if left:
            raise nt.Failure(f"demo.sh left processes behind: {left}")


@pytest.fixture
def make_demo(tmp_path):
    made = []

    def make(build=None):
        d = Demo(tmp_path / f"demo{len(made)}", build)
        made.append(d)
        return d

    yield make
    errors = []
    for d in made:
        try:
            d.cleanup()
        except nt.Failure as e:
            errors.append(str(e))
    if errors:
        pytest.fail("teardown: " + "\n".join(errors), pytrace=False)


def check_banner(out):
    """The URL and the curl line are printed, name the same port, and the one
    request the demo made itself went through. Returns (url, port, curl argv)."""
    m = URL_RE.search(out)
    assert m, out
    url, port = m.group(1), int(m.group(2))
    c = CURL_RE.search(out)
    assert c, out
    assert int(c.group(2)) == port and int(c.group(3)) == port, out
    assert re.search(r"^  HTTP/1\.[01] 200 ", out, re.M), out
    assert "This page came through nave." in out, out
    return url, port, shlex.split(c.group(1))


def test_demo_once_exits_clean(make_demo):
    d = make_demo().start("--once")
    assert d.wait(nt.START_TIMEOUT) == 0, d.stdout() + d.stderr()
    check_banner(d.stdout())
    assert "--once: the request went through" in d.stdout()
    assert group_members(d.proc.pid) == {}, "demo.sh --once left processes behind"
    assert d.temp_dirs() == [], "demo.sh --once left its temp dir"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_curl_line_works_until_signal(make_demo, sig):
    d = make_demo().start()
    nt.wait_for(lambda: d.proc.poll() is not None or BANNER_END in d.stdout(),
                nt.START_TIMEOUT, "the demo's banner")
    assert d.proc.poll() is None, d.stdout() + d.stderr()
    url, port, argv = check_banner(d.stdout())
    members = group_members(d.proc.pid)
    for name in ("nave-controld", "nave-relayd", "nave", "python3"):
        assert name in members.values(), members
    assert len(d.temp_dirs()) == 1

    # the printed curl line, run as printed, returns the demo page
    for _ in range(3):
        p = nt.run(argv + ["-sS", "-i", "--max-time", "10"])
        assert p.returncode == 0, p.stderr
        assert p.stdout.split("\r\n", 1)[0].split()[1] == "200", p.stdout[:200]
        assert "This page came through nave." in p.stdout, p.stdout
        assert "<title>nave demo</title>" in p.stdout, p.stdout
    # and the edge routed it by Host: another name is not the demo
    p = nt.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                "--resolve", f"other.localhost:{port}:127.0.0.1",
                f"http://other.localhost:{port}/"])
    assert p.stdout == "404", p.stdout

    d.proc.send_signal(sig)
    assert d.wait(nt.STOP_TIMEOUT) == 0, d.stderr()
    assert d.stderr().strip().splitlines()[-1].startswith("demo: stopped; removed "), d.stderr()
    assert group_members(d.proc.pid) == {}, "processes left after the signal"
    assert d.temp_dirs() == [], "the temp dir was not removed"


def test_demo_failure_is_one_line(make_demo, tmp_path):
    """relayd cannot start: one line naming the logs, exit 1, nothing left running,
    the temp dir kept for its logs."""
    fake = tmp_path / "fakebuild"
    fake.mkdir()
    for b in ("nave-controld", "navectl", "nave"):
        (fake / b).symlink_to(nt.BUILD.resolve() / b)
    relayd = fake / "nave-relayd"
    relayd.write_text(
        "#!/bin/sh\n"
        f'for a; do [ "$a" = --check ] && exec {shlex.quote(str(nt.RELAYD.resolve()))} "$@"; '
        "done\n"
        "echo 'nave-relayd (a stand-in): refusing to start' >&2\n"
        "exit 1\n")
    relayd.chmod(0o755)
    d = make_demo(build=fake).start()
    assert d.wait(nt.START_TIMEOUT) == 1, d.stdout() + d.stderr()
    lines = d.stderr().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("demo: nave-relayd exited before the server came up (logs: "), lines
    kept = d.temp_dirs()
    assert len(kept) == 1, kept
    relayd_log = d.tmpdir / kept[0] / "relayd.log"
    assert str(relayd_log) in lines[0]
    assert "refusing to start" in relayd_log.read_text()
    assert group_members(d.proc.pid) == {}
    assert "curl" not in d.stdout()

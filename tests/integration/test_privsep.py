# SPDX-License-Identifier: Apache-2.0
"""Privilege separation without systemd: both daemons started as root with
[server] user run as that user. controld has no capability at all; relayd
binds its listeners (one below 1024) and loads its BPF programs first, then
keeps only the capabilities it still needs, under its seccomp filter
(NoNewPrivs, Seccomp: 2 in /proc/PID/status). Tunnels, the HTTP edge and
reloads work as before. The filter itself: tests/unit/test_sandbox.c."""
import os
import pwd
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import pytest

import navetest as nt

CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_BPF = 10, 12, 39
USER = "nobody"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (starts the daemons as root)")


def status(pid):
    return dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())


def caps(s, key):
    m = int(s[key].strip(), 16)
    return {i for i in range(64) if m >> i & 1}


def low_port():
    """A free port below 1024, for the HTTP edge (CAP_NET_BIND_SERVICE at start)."""
    for p in range(900, 1000):
        if nt.port_is_free(p):
            return p
    pytest.skip("no free port in 900-999")


@pytest.fixture
def world_dir():
    """The daemons' directories where the user can reach them (pytest's tmp_path
    lies under a 0700 directory of root's)."""
    d = Path(tempfile.mkdtemp(prefix="nave-privsep-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_daemons_started_as_root_run_as_user(world_dir, procs, services):
    pw = pwd.getpwnam(USER)
    http = low_port()
    srv = nt.Server(world_dir, procs, extra_ini=f"[server]\nuser = {USER}\n")
    srv.ini.write_text(srv.ini.read_text().replace(f"http = {srv.http}", f"http = {http}"))
    srv.http = http
    # root's file, readable by the user's group: what a reload after the drop needs
    os.chown(srv.ini, 0, pw.pw_gid)
    srv.ini.chmod(0o640)
    srv.start()
    for p in (srv.controld, srv.relayd):
        s = status(p.pid)
        assert s["Uid"].split()[0] == str(pw.pw_uid), f"{p.name}: {s['Uid']}"
        assert s["Gid"].split()[0] == str(pw.pw_gid), f"{p.name}: {s['Gid']}"
        assert s["Groups"].split() == [str(pw.pw_gid)], f"{p.name}: groups {s['Groups']}"
        assert s["NoNewPrivs"].strip() == "1", p.name
    cd, rd = status(srv.controld.pid), status(srv.relayd.pid)
    assert caps(cd, "CapEff") == caps(cd, "CapPrm") == caps(cd, "CapBnd") == set()
    steering = "steering bpf" in srv.relayd.output()
    want = {CAP_BPF, CAP_NET_ADMIN} if steering else set()
    assert caps(rd, "CapEff") == want and caps(rd, "CapPrm") == want, rd["CapEff"]
    assert caps(rd, "CapBnd") == want, rd["CapBnd"]
    assert rd["Seccomp"].strip() == "2", "relayd runs without its seccomp filter"
    for tid in Path(f"/proc/{srv.relayd.pid}/task").iterdir():
        assert status(f"{srv.relayd.pid}/task/{tid.name}")["Seccomp"].strip() == "2", tid
    assert "running as nobody" in srv.relayd.output() and "seccomp filter on" in srv.relayd.output()
    assert "running as nobody" in srv.controld.output()
    # the directories the daemons made are the user's
    for d in (srv.dir / "var", srv.dir / "run"):
        assert d.owner() == USER, d

    # and everything still works: a tunnel, the HTTP edge on the low port, a reload
    svc = services(nt.h_exchange, "svc")
    c = nt.Client(srv, world_dir, procs).configure().start()
    port = c.tcp_add(svc.port)
    nt.exchange(port, 8 * nt.MiB)
    with socket.create_connection(("127.0.0.1", http), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: nowhere.example\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 "), "no HTTP answer on the low port"
    srv.relayd.signal(signal.SIGHUP)
    nt.wait_for(lambda: "reload: " in srv.relayd.output() and " read" in srv.relayd.output(),
                30, "relayd's reload")
    nt.exchange(port, 1 * nt.MiB)
    c.proc.stop()
    for name, proc in (("nave-relayd", srv.relayd), ("nave-controld", srv.controld)):
        nt.check_exit(name, proc.stop(), proc.output())


def test_unknown_user_refused(world_dir, procs):
    srv = nt.Server(world_dir, procs, extra_ini="[server]\nuser = no-such-user-here\n")
    srv.relayd.start()
    rc = srv.relayd.wait(30)
    assert rc == 1, srv.relayd.output()
    assert "[server] user: no-such-user-here" in srv.relayd.output()
    p = nt.run([nt.RELAYD, "--check", "--config", srv.ini])
    assert p.returncode == 0  # a valid name: only its absence fails, at start
    srv.ini.write_text(srv.ini.read_text().replace("no-such-user-here", "BadUser"))
    p = nt.run([nt.RELAYD, "--check", "--config", srv.ini])
    assert p.returncode == 2 and "is not a user name" in p.stderr, p.stderr


def test_relayd_filtered_however_started(tmp_path, procs):
    """Not dropped (no [server] user): relayd's threads run under its seccomp
    filter all the same."""
    srv = nt.Server(tmp_path, procs).start()
    for tid in Path(f"/proc/{srv.relayd.pid}/task").iterdir():
        s = status(f"{srv.relayd.pid}/task/{tid.name}")
        assert s["Seccomp"].strip() == "2" and s["NoNewPrivs"].strip() == "1", tid
    assert status(srv.controld.pid)["Seccomp"].strip() == "0"

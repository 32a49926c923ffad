# SPDX-License-Identifier: Apache-2.0
"""The daemons and the client under a service manager (sd_notify, as systemd's
Type=notify units use it): READY=1 once they serve, STATUS= lines, WATCHDOG=1
pings while every worker turns, STOPPING=1 on SIGTERM.

No systemd is needed: the test plays the service manager's side, a datagram
socket named by NOTIFY_SOCKET (with SO_PASSCRED, so every message carries the
sender's pid) and WATCHDOG_USEC, the environment systemd gives a unit.
"""
import ctypes
import os
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

import navetest as nt

WATCHDOG_US = 600_000  # pings every 300 ms


class Notify:
    """The service manager's notification socket: messages per sender pid."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.msgs = []  # (time, pid, {key: value})
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        creds = struct.calcsize("3i")
        while not self.stop:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(creds))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", value[:creds])[0]
            kv = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self.lock:
                self.msgs.append((time.monotonic(), pid, kv))

    def of(self, pid, key=None):
        with self.lock:
            return [(t, kv) for t, p, kv in self.msgs if p == pid and (key is None or key in kv)]

    def env(self, watchdog_us=WATCHDOG_US):
        env = dict(os.environ, NOTIFY_SOCKET=self.path)
        if watchdog_us:
            env["WATCHDOG_USEC"] = str(watchdog_us)
        return env

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    n = Notify(tmp_path / "notify.sock")
    yield n
    n.close()


def wait_msg(notify, pid, key, what, timeout=nt.START_TIMEOUT):
    nt.wait_for(lambda: notify.of(pid, key), timeout, what)
    return notify.of(pid, key)


def test_ready_status_watchdog_and_stopping(tmp_path, procs, notify, svc):
    srv = nt.Server(tmp_path, procs)
    for p in (srv.controld, srv.relayd):
        p.env = notify.env()
    srv.start_controld()
    cd = srv.controld.pid
    ready = wait_msg(notify, cd, "READY", "READY=1 from nave-controld")
    assert ready[0][1]["READY"] == "1"
    assert "admin API on" in ready[0][1]["STATUS"], ready

    # relayd says READY only once its listeners take connections: the first
    # connection after the message must be accepted
    srv.relayd.start()
    rd = srv.relayd.pid
    wait_msg(notify, rd, "READY", "READY=1 from nave-relayd")
    socket.create_connection(("127.0.0.1", srv.https), timeout=5).close()
    assert "worker(s)" in notify.of(rd, "READY")[0][1]["STATUS"]
    srv.wait_relay_connected()

    c = nt.Client(srv, tmp_path, procs).configure()
    c.proc.env = notify.env()
    c.start()
    cp = c.proc.pid
    wait_msg(notify, cp, "READY", "READY=1 from nave")

    def connected():
        return [kv for _, kv in notify.of(cp, "STATUS") if kv["STATUS"].startswith("connected to")]

    nt.wait_for(connected, nt.START_TIMEOUT, "STATUS=connected ... from nave")
    assert c.status()["tunnel_id"] in connected()[0]["STATUS"]

    # the watchdog: every process pings twice per WATCHDOG_USEC while it turns
    t0 = time.monotonic()
    time.sleep(2.0)
    for name, pid in (("nave-controld", cd), ("nave-relayd", rd), ("nave", cp)):
        pings = [t for t, kv in notify.of(pid, "WATCHDOG") if t >= t0]
        assert len(pings) >= 3, f"{name}: {len(pings)} WATCHDOG=1 in 2 s (period 0.6 s)"

    # and it still relays
    port = c.tcp_add(svc.port)
    nt.exchange(port, 256 * 1024)

    # STOPPING=1 before each exits on SIGTERM
    for name, proc, pid in (("nave", c.proc, cp), ("nave-relayd", srv.relayd, rd),
                            ("nave-controld", srv.controld, cd)):
        nt.check_exit(name, proc.stop(), proc.output())
        assert notify.of(pid, "STOPPING"), f"{name}: no STOPPING=1 before exit"


def thread_ids(pid, name):
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == name:
                out.append(int(task.name))
        except OSError:
            pass
    return out


PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH = 0x4206, 0x4207, 17


def test_watchdog_stops_pinging_while_a_worker_hangs(tmp_path, procs, notify):
    """One worker stopped (ptrace stops that thread alone): relayd's main thread
    still runs, yet it must stop pinging, so systemd would restart it; pings
    come back once the worker runs again."""
    srv = nt.Server(tmp_path, procs, extra_ini="[datapath]\nworkers = 2\n")
    srv.relayd.env = notify.env()
    srv.start()
    rd = srv.relayd.pid
    wait_msg(notify, rd, "READY", "READY=1 from nave-relayd")
    wait_msg(notify, rd, "WATCHDOG", "a first WATCHDOG=1")
    tids = thread_ids(rd, "worker1")
    assert len(tids) == 1, f"no thread named worker1 in relayd: {tids}"
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(PTRACE_SEIZE, tids[0], None, None) != 0:
        pytest.skip(f"ptrace: {os.strerror(ctypes.get_errno())}")
    try:
        assert libc.ptrace(PTRACE_INTERRUPT, tids[0], None, None) == 0
        # a worker counts as hung after three ticks without one (1.5 s), and a
        # ping may have been sent just before that
        time.sleep(2.0)
        t0 = time.monotonic()
        time.sleep(2.0)
        late = [t for t, _ in notify.of(rd, "WATCHDOG") if t >= t0]
        assert not late, f"{len(late)} WATCHDOG=1 while worker1 was stopped"
        assert srv.relayd.alive()
    finally:
        os.waitpid(tids[0], os.__dict__.get("WALL", 0x40000000))  # __WALL: collect the stop
        libc.ptrace(PTRACE_DETACH, tids[0], None, None)
    t1 = time.monotonic()
    nt.wait_for(lambda: [t for t, _ in notify.of(rd, "WATCHDOG") if t >= t1], 10,
                "WATCHDOG=1 again once worker1 runs")
    assert "has not ticked" in srv.relayd.output()
    srv.stop_relayd()


def test_no_notify_socket_no_messages(tmp_path, procs, notify):
    """Without NOTIFY_SOCKET (a shell, a test) nothing is sent anywhere and
    WATCHDOG_USEC alone changes nothing."""
    srv = nt.Server(tmp_path, procs)
    env = dict(os.environ, WATCHDOG_USEC=str(WATCHDOG_US))
    env.pop("NOTIFY_SOCKET", None)
    srv.controld.env = srv.relayd.env = env
    srv.start()
    time.sleep(1.0)
    assert not notify.msgs
    srv.stop_relayd()
    srv.stop_controld()


def test_sighup_reloads_without_dropping_a_transfer(tmp_path, procs, notify, svc):
    """SIGHUP (systemctl reload) mid-transfer: the transfer stays exact; the new
    log level applies at once; a change that cannot apply live is named in one
    line; RELOADING=1 then READY=1 go to the service manager; a config that no
    longer loads changes nothing and the daemon goes on."""
    srv = nt.Server(tmp_path, procs)
    for p in (srv.controld, srv.relayd):
        p.env = notify.env(watchdog_us=0)
    srv.start()
    c = nt.Client(srv, tmp_path, procs).configure().start()
    port = c.tcp_add(svc.port)
    original = srv.ini.read_text()

    # warn: the "reload: ... read" info line must not show, the warning must;
    # another http port is a change for the next restart
    srv.ini.write_text(original.replace("log_level = debug", "log_level = warn")
                       .replace(f"http = {srv.http}", f"http = {nt.free_port()}"))
    def reload_both():
        """halfway through the transfer: both daemons reload, and say they are done"""
        for p in (srv.relayd, srv.controld):
            n0 = len(notify.of(p.pid, "READY"))
            p.signal(signal.SIGHUP)
            nt.wait_for(lambda: len(notify.of(p.pid, "READY")) > n0, 30,
                        f"READY=1 after {p.name}'s reload")
            assert notify.of(p.pid, "RELOADING"), f"{p.name}: no RELOADING=1"

    nt.exchange(port, 32 * nt.MiB, midway=reload_both)
    for p in (srv.relayd, srv.controld):
        assert p.alive(), f"{p.name} exited on SIGHUP:\n{nt.tail(p.output())}"
        out = p.output()
        assert "reload: 1 change(s) wait for a restart: [listen] http" in out, nt.tail(out)
        assert "reload: " + str(srv.ini) + " read" not in out, "info line shown at log_level = warn"
    nt.works(port)

    # a config that does not load: said in one line, nothing changes
    srv.ini.write_text(original + "[tunnel]\nno_such_key = 1\n")
    for p in (srv.relayd, srv.controld):
        p.signal(signal.SIGHUP)
        nt.wait_for(lambda: "the running configuration stays" in p.output(), 30,
                    f"{p.name}'s refusal of the broken config")
        line = [x for x in p.output().splitlines() if "the running configuration stays" in x][0]
        assert "no_such_key" in line, line
    nt.works(port)

    # back to debug: the info line shows again and nothing waits for a restart
    srv.ini.write_text(original)
    for p in (srv.relayd, srv.controld):
        p.signal(signal.SIGHUP)
        nt.wait_for(lambda: f"reload: {srv.ini} read" in p.output(), 30, f"{p.name}'s reload")
    assert srv.relayd.output().count("wait for a restart") == 1
    nt.works(port)
    for name, proc in (("nave", c.proc), ("nave-relayd", srv.relayd),
                       ("nave-controld", srv.controld)):
        nt.check_exit(name, proc.stop(), proc.output())


def test_sighup_does_not_stop_the_client(tmp_path, procs, svc):
    srv = nt.Server(tmp_path, procs).start()
    c = nt.Client(srv, tmp_path, procs).configure().start()
    port = c.tcp_add(svc.port)
    c.proc.signal(signal.SIGHUP)
    nt.wait_for(lambda: "SIGHUP: nothing to reload" in c.proc.output(), 30, "the client's answer")
    assert c.proc.alive()
    nt.works(port)


def test_navectl_reload(tmp_path, procs, svc):
    """navectl reload: controld reloads and says what waits for a restart,
    relayd is asked and reloads as on SIGHUP; a broken file is refused in one
    line and relayd is not asked."""
    srv = nt.Server(tmp_path, procs).start()
    c = nt.Client(srv, tmp_path, procs).configure().start()
    port = c.tcp_add(svc.port)
    original = srv.ini.read_text()
    srv.ini.write_text(original.replace(f"http = {srv.http}", f"http = {nt.free_port()}"))
    rc, out, err = srv.navectl("reload")
    assert rc == 0, err
    assert out.splitlines() == [
        "controld: reloaded; waiting for a restart: [listen] http",
        "relayd: asked to reload (its log says what applied)"], out
    nt.wait_for(lambda: "wait for a restart: [listen] http" in srv.relayd.output(), 30,
                "relayd's reload")
    assert "reload asked by nave-controld" in srv.relayd.output()
    j = srv.navectl("reload", json=True)
    assert j == {"controld": {"waiting": 1, "changes": "[listen] http", "applied": 0,
                              "applied_changes": "", "refused": ""}, "relayd": "asked"}, j
    nt.exchange(port, 4 * nt.MiB)

    srv.ini.write_text(original + "[tunnel]\nno_such_key = 1\n")
    asked = srv.relayd.output().count("reload asked by nave-controld")
    # (navectl --config would refuse the file itself: reach controld by its socket)
    p = nt.run([nt.NAVECTL, "--socket", srv.control_sock, "reload"])
    rc, out, err = p.returncode, p.stdout, p.stderr
    assert rc == 1 and len(err.strip().splitlines()) == 1, (rc, out, err)
    assert "no_such_key" in err and "the running configuration stays" in err, err
    time.sleep(0.5)
    assert srv.relayd.output().count("reload asked by nave-controld") == asked
    nt.exchange(port, 1 * nt.MiB)
    for name, proc in (("nave", c.proc), ("nave-relayd", srv.relayd),
                       ("nave-controld", srv.controld)):
        nt.check_exit(name, proc.stop(), proc.output())

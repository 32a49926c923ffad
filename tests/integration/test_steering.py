# SPDX-License-Identifier: Apache-2.0
"""[datapath] steering: bpf steers every allocated port of the range to one
listener group (one socket per worker) and lets the kernel refuse the rest;
listeners opens a group per allocated port. auto falls back to listeners when
the process may not load BPF; bpf then refuses to start. Every other suite runs
in both modes (NAVE_STEERING, tests/test.sh); this one checks what differs."""
import errno
import os
import shutil
import socket
import subprocess
import time

import pytest

import navetest as nt

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="BPF steering needs root")


@pytest.fixture
def procs(procs):
    """conftest's registry, and every process in it killed at the end (these
    tests make their servers themselves, not through the server fixture)."""
    yield procs
    for p in procs:
        p.kill()


def listening_sockets(pid):
    """Listening TCP sockets the process holds: its socket inodes that
    /proc/net/tcp{,6} shows in state LISTEN (0A)."""
    mine = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(link[8:-1])
    listen = set()
    for name in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{name}") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] == "0A":
                    listen.add(cols[9])
    return len(mine & listen)


def ss_listening(pid):
    """The same count from ss -ltnp, as an operator would look."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    return sum(l.count(f"pid={pid},") for l in out.splitlines())


def make_server(tmp_path, procs, steering, size=50, workers=2):
    # a big window comes from above the ranges the other suites use
    window = nt.port_window(size) if size <= 100 else nt.port_window(size, 30000, 32700)
    srv = nt.Server(tmp_path, procs, port_range=window,
                    extra_ini=f"[datapath]\nsteering = {steering}\nworkers = {workers}\n")
    srv.ini.write_text(srv.ini.read_text().replace("reserve = off\n",
                                                   "reserve = off\nmax_per_tunnel = 1000\n"))
    return srv


def new_tunnel(srv, name):
    """A token for a new tunnel: its tunnel id."""
    tok = srv.token(id=name)
    tid = tok.get("tunnel_id") or next(
        t["tunnel_id"] for t in srv.navectl("tokens", "ls", json=True)["items"] if t["id"] == name)
    assert tid, tok
    return tid


def allocate(srv, tunnel, ports):
    for p in ports:
        st, body = srv.api("POST", "/api/v1/ports", {"tunnel": tunnel, "port": p})
        assert st == 201, (p, st, body)


def refused_at_once(port):
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    return time.monotonic() - t0


def test_bpf_one_listener_per_worker_whatever_the_ports(tmp_path, procs):
    srv = make_server(tmp_path, procs, "bpf", size=600).start()
    st = srv.navectl("status", json=True)
    assert st["relay"]["steering"] == "bpf", st["relay"]
    pid = srv.relayd.pid
    before = listening_sockets(pid)
    # the tunnel group, the HTTP edge's group and the range group, 2 workers each
    assert before == 3 * 2, before
    many = new_tunnel(srv, "many")
    ports = list(range(srv.port_min, srv.port_min + 500))
    allocate(srv, many, ports)
    assert srv.navectl("status", json=True)["ports"]["allocated"] == 500
    assert listening_sockets(pid) == before
    assert ss_listening(pid) == before
    # every allocated port is steered to relayd: accepted, then reset (tunnel offline)
    # (the API answers before relayd has the last ones: controld pushes them)
    for p in (ports[0], ports[249], ports[-1]):
        nt.wait_for(lambda: nt.port_refuses(p) == "reset", 5, f"port {p} to be steered")
    # a port of the range nobody holds: the kernel refuses the SYN
    assert refused_at_once(srv.port_max) < 1.0
    assert "steering bpf" in srv.relayd.output()


def test_bpf_release_takes_effect_within_100ms(tmp_path, procs):
    srv = make_server(tmp_path, procs, "bpf").start()
    rel = new_tunnel(srv, "rel")
    port = srv.port_min + 7
    allocate(srv, rel, [port])
    nt.wait_for(lambda: nt.port_refuses(port) == "reset", 5, "the port to be steered")
    st, _ = srv.api("DELETE", f"/api/v1/ports/{port}")
    assert st in (200, 204), st
    t0 = time.monotonic()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            break
        except ConnectionResetError:
            pass  # relayd took it and reset it (the release on its way): still steered
        assert time.monotonic() - t0 < 1.0, "the released port is still steered after 1 s"
        time.sleep(0.002)
    took = time.monotonic() - t0
    assert took < 0.1, f"release took {took * 1000:.0f} ms to reach the kernel"


def test_bpf_carries_traffic(tmp_path, procs, services):
    srv = make_server(tmp_path, procs, "bpf").start()
    c = nt.Client(srv, tmp_path, procs)
    c.configure()
    c.start()
    svc = services(nt.h_exchange, "svc")
    port = c.tcp_add(svc.port)
    for _ in range(8):
        nt.exchange(port, 32 * 1024)
    out = srv.relayd.output()
    assert f"port {port}: steered (bpf)" in out


def test_bpf_holds_its_ports_against_other_binds(tmp_path, procs):
    """An allocated port is relayd's: no other process can bind it (its
    listener would get nothing, sk_lookup runs first), with SO_REUSEADDR or
    without; released, it is free again."""
    srv = make_server(tmp_path, procs, "bpf").start()
    t = new_tunnel(srv, "held")
    port = srv.port_min + 2
    allocate(srv, t, [port])
    nt.wait_for(lambda: nt.port_refuses(port) == "reset", 5, "the port to be steered")
    for reuse in (False, True):
        s = socket.socket()
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError) as e:
            s.bind(("127.0.0.1", port))
        s.close()
        assert e.value.errno == errno.EADDRINUSE
    s = socket.socket()
    with pytest.raises(OSError):
        s.bind(("0.0.0.0", port))
    s.close()
    assert listening_sockets(srv.relayd.pid) == 3 * 2  # a held port listens on nothing
    st, _ = srv.api("DELETE", f"/api/v1/ports/{port}")
    assert st in (200, 204)
    nt.wait_for(lambda: nt.port_is_free(port), 5, "the released port to be free")


def test_two_relayds_on_one_range_never_share_a_port(tmp_path, procs):
    """A second relayd (steering = bpf too) on the same range and address
    starts, and each keeps the ports it holds: the one allocated by the
    first is refused to the second ("in use"), as a failed bind is with
    listeners."""
    one = make_server(tmp_path, procs, "bpf").start()
    two = nt.Server(tmp_path, procs, name="two", port_range=(one.port_min, one.port_max),
                    extra_ini="[datapath]\nsteering = bpf\n")
    two.start()
    t1, t2 = new_tunnel(one, "first"), new_tunnel(two, "second")
    p = one.port_min + 5
    allocate(one, t1, [p])
    nt.wait_for(lambda: nt.port_refuses(p) == "reset", 5, "the first's port")
    st, body = two.api("POST", "/api/v1/ports", {"tunnel": t2, "port": p})
    assert st == 201, body  # controld allocates; relayd cannot take it
    nt.wait_for(lambda: f"port {p}: cannot listen: 127.0.0.1:{p} is in use"
                in two.relayd.output(), 5, "the second relayd to refuse the port")
    nt.port_refuses(p)
    refusing = f"port {p}: tunnel offline"
    assert refusing in one.relayd.output() and refusing not in two.relayd.output()
    allocate(two, t2, [p + 1])
    nt.wait_for(lambda: nt.port_refuses(p + 1) == "reset", 5, "the second's own port")
    assert f"port {p + 1}: tunnel offline" in two.relayd.output()


def test_bpf_does_not_take_a_port_someone_listens_on(tmp_path, procs):
    """A relayd in listeners mode (or any service) holds a port of the range:
    the bpf one refuses to allocate it, as a failed bind would."""
    one = make_server(tmp_path, procs, "listeners").start()
    t1 = new_tunnel(one, "first")
    taken = one.port_min + 3
    allocate(one, t1, [taken])
    two = nt.Server(tmp_path, procs, name="two", port_range=(one.port_min, one.port_max),
                    extra_ini="[datapath]\nsteering = bpf\n")
    two.start()
    t2 = new_tunnel(two, "second")
    st, body = two.api("POST", "/api/v1/ports", {"tunnel": t2, "port": taken})
    assert st == 201, body  # controld allocates; relayd cannot take it
    nt.wait_for(lambda: f"port {taken}: cannot listen: 127.0.0.1:{taken} is in use"
                in two.relayd.output(), 5, "the second relayd to refuse the port")
    assert f"port {taken}: steered" not in two.relayd.output()
    # the first relayd still gets its connections (tunnel offline: accepted, reset)
    assert nt.port_refuses(taken) == "reset"
    refusing = f"port {taken}: tunnel offline"
    assert refusing in one.relayd.output() and refusing not in two.relayd.output()
    allocate(two, t2, [taken + 1])
    nt.wait_for(lambda: nt.port_refuses(taken + 1) == "reset", 5, "the second's own port")


def test_listeners_mode_opens_a_group_per_port(tmp_path, procs):
    srv = make_server(tmp_path, procs, "listeners").start()
    assert srv.navectl("status", json=True)["relay"]["steering"] == "listeners"
    pid = srv.relayd.pid
    assert listening_sockets(pid) == 2 * 2  # the tunnel and HTTP groups
    few = new_tunnel(srv, "few")
    allocate(srv, few, range(srv.port_min, srv.port_min + 10))
    nt.wait_for(lambda: listening_sockets(pid) == 2 * 2 + 10 * 2, 5, "the per-port listeners")
    assert refused_at_once(srv.port_max) < 1.0


def unprivileged(cmd):
    """cmd run as root without any capability (empty bounding set): no BPF."""
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv (util-linux) is not installed")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-all", "--"] + cmd


def test_bpf_refuses_to_start_when_bpf_is_not_allowed(tmp_path, procs):
    srv = make_server(tmp_path, procs, "bpf")
    srv.start_controld()
    srv.relayd.cmd = unprivileged(srv.relayd.cmd)
    srv.relayd.start()
    rc = srv.relayd.wait(nt.START_TIMEOUT)
    out = srv.relayd.output()
    assert rc != 0, out
    lines = [l for l in nt.user_lines(out) if not l.startswith("==== ")]
    assert len(lines) == 1, out
    assert lines[0].startswith("nave-relayd: [datapath] steering = bpf: "), lines[0]
    assert "CAP_BPF" in lines[0], lines[0]


def test_auto_falls_back_to_listeners_with_one_line(tmp_path, procs, services):
    srv = make_server(tmp_path, procs, "auto")
    srv.start_controld()
    srv.relayd.cmd = unprivileged(srv.relayd.cmd)
    srv.start_relayd()
    assert srv.navectl("status", json=True)["relay"]["steering"] == "listeners"
    out = srv.relayd.output()
    warn = [l for l in out.splitlines() if "BPF is not available" in l]
    assert len(warn) == 1, out
    assert "steering = auto" in warn[0]
    c = nt.Client(srv, tmp_path, procs)
    c.configure()
    c.start()
    svc = services(nt.h_exchange, "svc")
    port = c.tcp_add(svc.port)
    nt.exchange(port, 64 * 1024)

# SPDX-License-Identifier: Apache-2.0
"""The firewall end to end: `navectl firewall deny|allow add|rm` is stored by
controld and pushed to relayd, which enforces it in the XDP filter on
`[xdp] interface` and, without XDP, at accept. relayd runs in a network
namespace of the test's own, joined by a veth pair to a second one the
public connections come from (two source addresses); the nave client and its
service run in relayd's namespace. XDP's counters show in `navectl status`
and `navectl ports ls`. Runs in the steering mode of the suite (NAVE_STEERING):
with bpf the filter shares sk_lookup's ports map, with listeners it has its own.

Needs root (namespaces, XDP); skipped otherwise."""
import os
import socket
import struct
import time

import pytest

import navetest as nt

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and XDP need root")

NS_S, NS_C = f"nfs{os.getpid()}", f"nfc{os.getpid()}"
IF_S, IF_C = "nfv0", "nfv1"
SRV, CLI, CLI2 = "10.78.0.1", "10.78.0.2", "10.78.0.3"
DROP_WAIT = 1.0  # a connect with no SYN-ACK in this long was dropped


@pytest.fixture
def net():
    with nt.netns(NS_S, NS_C):
        nt.ip("link", "add", IF_S, "netns", NS_S, "type", "veth", "peer", "name", IF_C, "netns",
              NS_C)
        nt.ip("-n", NS_S, "addr", "add", f"{SRV}/24", "dev", IF_S)
        for a in (CLI, CLI2):
            nt.ip("-n", NS_C, "addr", "add", f"{a}/24", "dev", IF_C)
        nt.ip("-n", NS_S, "link", "set", IF_S, "up")
        nt.ip("-n", NS_C, "link", "set", IF_C, "up")
        yield


@pytest.fixture
def procs(procs):
    """Every process killed at the end (servers here are made by hand)."""
    yield procs
    for p in procs:
        p.kill()


class NsClient(nt.Client):
    """A nave client that runs in relayd's namespace."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.proc.cmd = ["ip", "netns", "exec", NS_S] + self.proc.cmd

    def nave(self, *args, timeout=nt.CMD_TIMEOUT):
        return nt.run(["ip", "netns", "exec", NS_S, nt.NAVE] + list(args) +
                      ["--config", self.ini], timeout=timeout)


def start_server(tmp_path, procs, xdp=True, syn_rate=0):
    extra = f"[xdp]\ninterface = {IF_S}\nsyn_rate = {syn_rate}\n" if xdp else ""
    srv = nt.Server(tmp_path, procs, extra_ini=extra, port_range=nt.port_window(20))
    # every address of the namespace: loopback for the client, the veth for the public
    srv.ini.write_text(srv.ini.read_text().replace("address = 127.0.0.1\n", "address = 0.0.0.0\n"))
    srv.start_controld()
    srv.relayd.cmd = ["ip", "netns", "exec", NS_S] + srv.relayd.cmd
    srv.relayd.start()
    srv.wait_relay_connected()
    return srv


def tunnel(srv, tmp_path, procs, services):
    c = NsClient(srv, tmp_path, procs)
    c.configure()
    c.start()
    svc = nt.in_ns(NS_S, lambda: nt.Service(nt.h_exchange, "svc"))
    return c, svc, c.tcp_add(svc.port)


def dial(src, port, timeout=5.0):
    def mk():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((src, 0))
        return s

    s = nt.in_ns(NS_C, mk)
    s.settimeout(timeout)
    s.connect((SRV, port))
    return s


def dropped(src, port):
    """True when a SYN from src to port gets nothing back (dropped by XDP)."""
    try:
        dial(src, port, timeout=DROP_WAIT).close()
        return False
    except socket.timeout:
        return True
    except ConnectionRefusedError:
        return False


def relay(srv):
    return srv.navectl("status", json=True)["relay"]


def firewall(srv, *args):
    rc, out, err = srv.navectl("firewall", *args)
    assert rc == 0, (args, err)


def wait_pushed(srv, deny, allow):
    line = f"firewall: {deny} deny, {allow} allow rule(s)"
    nt.wait_for(lambda: line in srv.relayd.output(), 5, f"relayd to log {line!r}")


def test_xdp_deny_allow_and_counters(tmp_path, procs, net, services):
    srv = start_server(tmp_path, procs)
    r = relay(srv)
    assert r["xdp"]["interface"] == IF_S and r["xdp"]["mode"] in ("native", "generic"), r
    c, svc, port = tunnel(srv, tmp_path, procs, services)
    try:
        n = 100000
        nt.exchange(port, n, sock=dial(CLI, port))
        # XDP counts what arrives for the port: the 8-byte length and the n bytes
        # (exactly, unless a segment was sent twice: each arrival counts; the
        # exact count on a quiet veth is test_xdp.py's)
        def counted():
            got = next((p for p in srv.navectl("ports", "ls", json=True)["items"]
                        if p["port"] == port), {})
            return got if got.get("bytes", 0) >= n + 8 else None

        got = nt.wait_for(counted, 15, f"the byte counter of port {port} to reach {n + 8}")
        assert got["bytes"] <= (n + 8) * 1.1 and got["packets"] > 0, got
        rc, out, _ = srv.navectl("ports", "ls")
        assert rc == 0 and "PACKETS" in out and "BYTES" in out, out

        firewall(srv, "deny", "add", f"{CLI}/32")
        wait_pushed(srv, 1, 0)
        assert dropped(CLI, port)
        nt.exchange(port, 1000, sock=dial(CLI2, port))
        nt.wait_for(lambda: relay(srv)["xdp"]["deny"] > 0, 10, "the deny counter")
        assert relay(srv)["maps"]["deny"] == 1

        firewall(srv, "deny", "rm", f"{CLI}/32")
        firewall(srv, "allow", "add", f"{CLI2}/32")
        wait_pushed(srv, 0, 1)
        assert dropped(CLI, port)
        nt.exchange(port, 1000, sock=dial(CLI2, port))
        nt.wait_for(lambda: relay(srv)["xdp"]["not_allowed"] > 0, 10, "the not-allowed counter")

        # a port of the range nobody holds: dropped before the stack sees it
        free = next(p for p in range(srv.port_min, srv.port_max + 1) if p != port)
        assert dropped(CLI2, free)
        nt.wait_for(lambda: relay(srv)["xdp"]["unallocated"] > 0, 10, "the unallocated counter")
        rc, out, _ = srv.navectl("status")
        assert IF_S in out, out
    finally:
        svc.close()


def test_xdp_syn_rate_holds_a_flood(tmp_path, procs, net, services):
    srv = start_server(tmp_path, procs, syn_rate=20)
    c, svc, port = tunnel(srv, tmp_path, procs, services)
    try:
        def flood():
            socks = []
            for _ in range(200):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((CLI, 0))
                s.setblocking(False)
                s.connect_ex((SRV, port))
                socks.append(s)
            return socks

        socks = nt.in_ns(NS_C, flood)
        try:
            # another source is not held back by the first one's limit
            nt.exchange(port, 10000, sock=dial(CLI2, port))
            nt.wait_for(lambda: relay(srv)["xdp"]["syn_rate_drops"] >= 100, 10,
                        "the SYN rate counter to hold most of the flood")
        finally:
            for s in socks:
                s.close()
    finally:
        svc.close()


def test_without_xdp_relayd_refuses_at_accept(tmp_path, procs, net, services):
    srv = start_server(tmp_path, procs, xdp=False)
    assert relay(srv)["xdp"] is None
    c, svc, port = tunnel(srv, tmp_path, procs, services)
    try:
        # a connection open before the rule comes: reset when it comes
        held = dial(CLI, port)
        held.sendall(struct.pack(">Q", 1 << 20) + b"x" * 1000)
        firewall(srv, "deny", "add", f"{CLI}/32")
        wait_pushed(srv, 1, 0)
        held.settimeout(5)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            while True:
                if not held.recv(65536):
                    raise AssertionError("closed cleanly, not reset")
        held.close()
        # the kernel completes the handshake; relayd resets the connection at once
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            s = dial(CLI, port)
            try:
                s.sendall(b"x" * 8)
                time.sleep(0.2)
                if s.recv(1) == b"":
                    raise AssertionError("closed without a reset")
            finally:
                s.close()
        nt.exchange(port, 1000, sock=dial(CLI2, port))
        nt.wait_for(lambda: relay(srv)["firewall_refused"] >= 2, 10, "firewall_refused")
        assert "firewall: 10.78.0.2 refused on a port of the range (denied)" in \
            srv.relayd.output()
    finally:
        svc.close()


def test_unknown_xdp_interface_is_one_line(tmp_path, procs):
    """[xdp] interface naming no interface: relayd stops with one line, exit 1."""
    srv = nt.Server(tmp_path, procs, extra_ini="[xdp]\ninterface = nosuch0\n")
    srv.start_controld()
    srv.relayd.start()
    rc = srv.relayd.wait(nt.START_TIMEOUT)
    out = srv.relayd.output()
    lines = [l for l in nt.user_lines(out) if not l.startswith("==== ")]
    assert rc == 1, out
    assert lines == ["nave-relayd: [xdp] interface = nosuch0: xdp: no interface nosuch0"], out

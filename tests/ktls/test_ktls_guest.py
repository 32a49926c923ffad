# SPDX-License-Identifier: Apache-2.0
"""kTLS on every link, end to end: run inside the QEMU guest that
tests/ktls/guest.sh boots (`make ktls-test`), whose kernel has the TLS module.

One real nave-controld + nave-relayd and one nave client, built before the
boot (NAVE_BUILD). The client and the local services it forwards to run in
their own network namespace, joined to the relay's by a veth pair, so that
each namespace's /proc/net/tls_stat counts one end of the links only: the
relay's in the initial namespace, the client's in its own. Every transfer is
checked byte for byte with SHA-256.

NAVE_KTLS (default `on`) is the mode of both ends: `[datapath] ktls` of the
relay and `[client] ktls` of the client. `off` writes neither key (the suite
then runs against binaries without kTLS) and skips the kTLS counters; `auto`
prints them without asserting; `on` requires them.
"""
import concurrent.futures
import contextlib
import ctypes
import hashlib
import os
import re
import socket
import struct
import subprocess

import pytest

import navetest as nt
from navetest import KiB, MiB

MODE = os.environ.get("NAVE_KTLS", "on")
assert MODE in ("on", "auto", "off"), f"NAVE_KTLS={MODE!r}: not on, auto or off"

# Unique per run, so that a run on a shared host does not collide with another.
_n = os.getpid() % 250
NS = f"nktls{os.getpid()}"
VETH_RELAY, VETH_CLIENT = f"nk{os.getpid()}r", f"nk{os.getpid()}c"
RELAY_IP, CLIENT_IP = f"10.77.{_n}.1", f"10.77.{_n}.2"

PROCS = []  # every process of the module, for teardown and the failure report

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise nt.Failure(f"{' '.join(map(str, cmd))}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


# ---------------------------------------------------------------- namespaces


def make_netns():
    """The client's namespace and the veth pair; (name, None) or (None, why)."""
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    try:
        sh("ip", "netns", "add", NS)
        sh("ip", "link", "add", VETH_RELAY, "type", "veth", "peer", "name", VETH_CLIENT,
           "netns", NS)
        sh("ip", "addr", "add", f"{RELAY_IP}/24", "dev", VETH_RELAY)
        sh("ip", "link", "set", VETH_RELAY, "up")
        sh("ip", "-n", NS, "addr", "add", f"{CLIENT_IP}/24", "dev", VETH_CLIENT)
        sh("ip", "-n", NS, "link", "set", VETH_CLIENT, "up")
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        return NS, None
    except (nt.Failure, OSError, subprocess.TimeoutExpired) as e:
        drop_netns()
        return None, str(e)


def drop_netns():
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "link", "del", VETH_RELAY], capture_output=True)


@contextlib.contextmanager
def in_netns(ns):
    """Runs the block with the calling thread in namespace ns (None: as is).
    Sockets made inside stay in ns for their lifetime."""
    if ns is None:
        yield
        return
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        try:
            yield
        finally:
            if _libc.setns(back, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(back)
        os.close(target)


def tls_stat(ns=None):
    """/proc/net/tls_stat of a namespace as {name: int}; {} without the tls module."""
    cmd = ["cat", "/proc/net/tls_stat"]
    if ns is not None:
        cmd = ["ip", "netns", "exec", ns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        return {}
    return {k: int(v) for k, v in (line.split() for line in p.stdout.splitlines() if line.strip())}


# ---------------------------------------------------------------- the tunnel


class Tunnel:
    def __init__(self, tmp):
        self.tmp = tmp
        self.ns, self.ns_why = make_netns()
        # before anything ran: the counters are per namespace and only grow
        self.stat0 = {"relay": tls_stat(None), "client": tls_stat(self.ns)}
        # what test_guest_counts_ktls_per_namespace installed by hand, per
        # namespace: not the daemons' doing
        self.by_hand = {}
        extra = f"[datapath]\nktls = {MODE}\n"
        self.server = nt.Server(tmp, PROCS, extra_ini=extra)
        ini = self.server.ini.read_text()
        # a rule per test: more than the default 5 ports per tunnel
        ini = ini.replace("[ports]\n", "[ports]\nmax_per_tunnel = 50\n", 1)
        if self.ns:
            # public ports on loopback, the tunnel listener also on the veth
            ini = ini.replace("address = 127.0.0.1\n", "address = 0.0.0.0\n", 1)
        self.server.ini.write_text(ini)
        self.server.start()
        self.client = nt.Client(self.server, tmp, PROCS, "c")
        self.client.configure()
        text = self.client.ini.read_text()
        if self.ns:
            text = text.replace(f"server = 127.0.0.1:{self.server.https}\n",
                                f"server = {RELAY_IP}:{self.server.https}\n", 1)
            self.client.proc.cmd = ["ip", "netns", "exec", self.ns] + self.client.proc.cmd
        # nave configure writes the default (ktls = auto): set the mode under test
        text, n = re.subn(r"(?m)^ktls\s*=.*$", f"ktls = {MODE}", text)
        if not n:
            text = text.replace("[client]\n", f"[client]\nktls = {MODE}\n", 1)
        self.client.ini.write_text(text)
        self.client.start()
        server = self.client.status()["server"]
        want = f"{RELAY_IP if self.ns else '127.0.0.1'}:{self.server.https}"
        assert server == want, f"the client talks to {server}, not {want}"
        self.services = []

    def service(self, handler, name="svc"):
        """A local service beside the client (in its namespace)."""
        with in_netns(self.ns):
            s = nt.Service(handler, name)
        self.services.append(s)
        return s

    def rule(self, handler, name="svc"):
        """A fresh service and a TCP rule to it: (public port, service)."""
        svc = self.service(handler, name)
        return self.client.tcp_add(svc.port), svc

    def close(self):
        errors = []
        try:
            if self.client.proc.proc is not None and self.client.proc.alive():
                self.client.stop()
        except nt.Failure as e:
            errors.append(str(e))
        try:
            self.server.stop()
        except nt.Failure as e:
            errors.append(str(e))
        for p in PROCS:
            p.kill()
        for s in self.services:
            s.close()
        if self.ns:
            drop_netns()
        return errors


@pytest.fixture(scope="module")
def tun(tmp_path_factory):
    for b in (nt.CONTROLD, nt.RELAYD, nt.NAVECTL, nt.NAVE):
        if not b.exists():
            pytest.fail(f"{b} is not built (make)")
    t = None
    try:
        t = Tunnel(tmp_path_factory.mktemp("ktls"))
    except BaseException:
        for p in PROCS:
            p.kill()
        if t is None:
            drop_netns()
        raise
    print(f"\nktls mode {MODE}; client namespace: "
          + (f"{t.ns} ({CLIENT_IP} -> relay {RELAY_IP})" if t.ns
             else f"none, both ends in one namespace ({t.ns_why})"))
    yield t
    errors = t.close()
    if errors:
        pytest.fail("teardown: " + "\n".join(errors), pytrace=False)


# ---------------------------------------------------------------- kTLS evidence


def check_ktls_status(server, client):
    """What `navectl status --json` (relay) and `nave status --json` (client)
    report about kTLS. The field names of the kTLS issue live here only."""
    if MODE == "off":
        relay = server.navectl("status", json=True)["relay"]
        assert relay["ktls"] == "userspace (ktls = off)", relay
        return
    # A link just opened (the client refills its idle pool all the time)
    # counts as userspace TLS until both directions move into the kernel,
    # a moment after its handshake: in mode "on", wait for a snapshot with
    # none in between; one that stays in userspace still fails below.
    def settled(r, key):
        if not r.get("links") or key not in r:
            return False
        return r if MODE != "on" or r["links_tls"] == 0 else False

    try:
        relay = nt.wait_for(
            lambda: settled(server.navectl("status", json=True)["relay"], "links_ktls"),
            30, "relay stats with links, all of them kTLS in mode on")
    except nt.Failure:
        relay = server.navectl("status", json=True)["relay"]
    try:
        st = nt.wait_for(lambda: settled(client.status(), "links_ktls"), 30,
                         "client stats with links, all of them kTLS in mode on")
    except nt.Failure:
        st = client.status()
    print(f"relay: ktls={relay['ktls']!r} links={relay['links']} "
          f"links_ktls={relay.get('links_ktls')} links_tls={relay.get('links_tls')} "
          f"ktls_fallbacks={relay.get('ktls_fallbacks')}")
    print(f"client: ktls={st.get('ktls')!r} links={st['links']} "
          f"links_ktls={st.get('links_ktls')} links_tls={st.get('links_tls')} "
          f"ktls_fallbacks={st.get('ktls_fallbacks')}")
    if MODE != "on":
        return
    assert relay["ktls"] == "kernel", relay
    assert relay["links_ktls"] > 0 and relay["links_tls"] == 0, relay
    assert relay["ktls_fallbacks"] == 0, relay
    assert st["ktls"] == "kernel", st
    assert st["links_ktls"] > 0 and st["links_tls"] == 0, st
    assert st["ktls_fallbacks"] == 0, st
    assert st["control_ktls"] is True, st
    assert "ktls = on" in client.ini.read_text(), "the client's config lost its ktls key"


def tls_sum(stat, *names):
    return sum(stat.get(n, 0) for n in names)


def tls_installs(ns):
    """TLS TX contexts installed so far in a namespace (software + device)."""
    return tls_sum(tls_stat(ns), "TlsTxSw", "TlsTxDevice")


# ---------------------------------------------------------------- services


# ---------------------------------------------------------------- the cases


def test_guest_counts_ktls_per_namespace(tun):
    """The harness itself: a kTLS socket pair made by hand (fixed AES-128-GCM
    keys, TCP_ULP "tls", TLS_TX on one end and TLS_RX on the other) in the
    client's namespace carries bytes and shows in that namespace's tls_stat
    only. So the counters the last case reads do tell the two ends apart, in
    every mode. Skipped where the kernel has no TLS module (outside the guest)."""
    if not tls_stat(None):
        pytest.skip("no /proc/net/tls_stat: this kernel has no tls module (run in the guest)")
    SOL_TLS, TLS_TX, TLS_RX, TCP_ULP = 282, 1, 2, 31
    # struct tls12_crypto_info_aes_gcm_128: version TLS 1.3, cipher 51, iv, key, salt, rec_seq
    info = struct.pack("=HH", 0x0304, 51) + b"\1" * 8 + b"\2" * 16 + b"\3" * 4 + b"\0" * 8
    names = ("TlsCurrTxSw", "TlsCurrRxSw")
    relay0, client0 = tls_stat(None), tls_stat(tun.ns)
    with in_netns(tun.ns):
        lst = socket.create_server(("127.0.0.1", 0))
        a = socket.create_connection(lst.getsockname(), timeout=nt.IO_TIMEOUT)
        b, _ = lst.accept()
    try:
        b.settimeout(nt.IO_TIMEOUT)
        for s in (a, b):
            s.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
        a.setsockopt(SOL_TLS, TLS_TX, info)
        b.setsockopt(SOL_TLS, TLS_RX, info)
        data = os.urandom(100 * KiB)
        a.sendall(data)
        assert nt.recv_exact(b, len(data)) == data
        relay1, client1 = tls_stat(None), tls_stat(tun.ns)
    finally:
        for s in (a, b, lst):
            s.close()
        after = tls_stat(tun.ns)
        tun.by_hand[tun.ns] = {k: after[k] - client0.get(k, 0) for k in after}
    grew = [client1[n] - client0[n] for n in names]
    assert grew == [1, 1], f"client namespace: {client0} -> {client1}"
    if tun.ns:
        assert [relay1[n] - relay0[n] for n in names] == [0, 0], "counted in the relay's namespace"


SIZES = [1, 100, 16383, 16384, 16385, 1 * MiB, 16 * MiB]
SIZE_IDS = ["1B", "100B", "16383B", "16384B", "16385B", "1MiB", "16MiB"]


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_bytes_exact_both_ways(tun, size):
    """`size` bytes public -> service, then `size` other bytes service ->
    public, on one connection; SHA-256 of each direction checked at the far
    end. 16384 is one full TLS record; 16383/16385 straddle it."""
    port, svc = tun.rule(nt.h_exchange, f"x{size}")
    nt.exchange(port, size)
    assert svc.results.get(timeout=nt.IO_TIMEOUT) == ("exchange", size, 0)
    assert svc.errors == []


@pytest.mark.parametrize("size", [0, 1, 300 * KiB], ids=["0B", "1B", "300KiB"])
def test_half_close_public_first(tun, size):
    """The public side sends and shuts its write side; only then does the
    service reply, and the reply arrives complete."""
    reply = 256 * KiB + 7
    port, svc = tun.rule(nt.h_eof_reply(reply), "eof_reply")
    sent = nt.half_close_public_first(port, size, reply)
    assert svc.results.get(timeout=nt.IO_TIMEOUT) == ("eof_reply", size, sent)
    assert svc.errors == []


@pytest.mark.parametrize("size", [0, 1, 300 * KiB], ids=["0B", "1B", "300KiB"])
def test_half_close_service_first(tun, size):
    """The service sends and shuts its write side first; the public side sees
    all of it and EOF, then still sends everything the other way."""
    greet = 200 * KiB + 3
    port, svc = tun.rule(nt.h_greet(greet), "greet")
    nt.half_close_service_first(port, svc, greet, size)
    assert svc.errors == []


def test_service_reset_midstream(tun):
    """The service resets after 256 KiB of an announced 4 MiB: what it sent
    before arrives exact, then the public connection ends (reset, or EOF)
    short of the rest, and the tunnel serves the next connections."""
    announce, before = 4 * MiB, 256 * KiB
    port, svc = tun.rule(nt.h_reset_midway(announce, before), "reset")
    how, got = nt.download_until_reset(port, announce, before)
    assert how == "reset", f"the public side saw {how}, not the service's reset"
    assert got == 0, f"{got} bytes after the service's reset"
    assert svc.results.get(timeout=nt.IO_TIMEOUT) == ("reset_sent", before)
    assert svc.errors == []
    ok, _ = tun.rule(nt.h_exchange, "after_reset")
    for _ in range(3):
        nt.exchange(ok, 64 * KiB)
    print(f"service reset: the public side saw {how}")


def test_public_reset_midstream(tun):
    """The public side resets in the middle of an upload: the service sees the
    stream end (reset, or EOF), and the tunnel serves the next ones."""
    port, svc = tun.rule(nt.h_sink_outcome, "sink")
    s = nt.connect(port)
    nt.send_random(s, 512 * KiB, hashlib.sha256())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    how, _ = svc.results.get(timeout=nt.IO_TIMEOUT)
    assert how == "reset", f"the service saw {how}, not the public side's reset"
    assert svc.errors == []
    ok, _ = tun.rule(nt.h_exchange, "after_public_reset")
    for _ in range(3):
        nt.exchange(ok, 64 * KiB)
    print(f"public reset: the service saw {how}")


def test_concurrent_streams(tun):
    """20 streams at once, each with its own data and size, all exact."""
    port, svc = tun.rule(nt.h_exchange, "concurrent")
    n = 20
    sizes = [256 * KiB + 997 * i for i in range(n)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
        futs = [ex.submit(nt.exchange, port, size) for size in sizes]
        assert [f.result(timeout=300) for f in futs] == [True] * n
    got = sorted(svc.results.get(timeout=nt.IO_TIMEOUT) for _ in range(n))
    assert got == sorted(("exchange", size, 0) for size in sizes)
    assert svc.errors == []
    assert svc.accepted == n


def test_links_reused(tun):
    """Sequential connections reuse the data links: the client's link count
    does not grow and, with kTLS, hardly any new TLS contexts are installed
    (a handshake per connection would install one each)."""
    port, svc = tun.rule(nt.h_exchange, "reuse")
    nt.exchange(port, 1000)
    # links left from an earlier burst stay idle a few seconds (relayd closes
    # those above max_pool_size after 5 s unused): sequential ones add none
    links0 = tun.client.status()["links"]
    total0 = tun.client.status()["conns_total"]
    installs0 = tls_installs(tun.ns)
    n = 30
    for i in range(n):
        nt.exchange(port, 4 * KiB + i)
    st = nt.wait_for(
        lambda: (lambda s: s if s["conns_total"] >= total0 + n and s["conns"] == 0 else False)(
            tun.client.status()),
        30, "the client to count the connections")
    installs = tls_installs(tun.ns) - installs0
    print(f"{n} connections: client links {st['links']}, new kTLS TX contexts {installs}")
    assert st["conns_total"] == total0 + n, st
    assert st["links"] <= max(12, links0), f"links were not reused: {links0} before, {st}"
    if MODE == "on":
        bound = 12 if tun.ns else 24  # one namespace: both ends count
        assert installs <= bound, f"{installs} kTLS contexts for {n} sequential connections"
    assert svc.errors == []


def test_ktls_counters(tun):
    """Both ends hold kTLS sockets while the links are up, and both installed
    TX and RX contexts during the run: /proc/net/tls_stat of the relay's
    namespace and of the client's (one namespace for both when netns is not
    available)."""
    port, _ = tun.rule(nt.h_exchange, "counters")
    nt.exchange(port, 1 * MiB)
    check_ktls_status(tun.server, tun.client)
    ends = [("relay", None), ("client", tun.ns)] if tun.ns else [("both ends", None)]
    for name, ns in ends:
        now = tls_stat(ns)
        before = dict(tun.stat0["relay" if ns is None else "client"])
        for k, v in tun.by_hand.get(ns, {}).items():
            before[k] = before.get(k, 0) + v
        shown = " ".join(f"{k}={v}" for k, v in now.items() if v)
        hand = " ".join(f"{k}={v}" for k, v in tun.by_hand.get(ns, {}).items() if v)
        print(f"{name} tls_stat: {shown or ('all 0' if now else 'absent (no tls module)')}"
              + (f" (of which by hand: {hand})" if hand else ""))
        if MODE != "on":
            continue
        assert now, f"{name}: no /proc/net/tls_stat (tls module not loaded?)"
        cur_tx = tls_sum(now, "TlsCurrTxSw", "TlsCurrTxDevice")
        cur_rx = tls_sum(now, "TlsCurrRxSw", "TlsCurrRxDevice")
        assert cur_tx > 0 and cur_rx > 0, f"{name}: no kTLS sockets open: {now}"
        for kind in ("Tx", "Rx"):
            names = (f"Tls{kind}Sw", f"Tls{kind}Device")
            assert tls_sum(now, *names) > tls_sum(before, *names), f"{name}: no {kind} installs"
        assert now.get("TlsDecryptError", 0) == before.get("TlsDecryptError", 0), now
    if MODE == "off":
        pytest.skip("NAVE_KTLS=off: kTLS counters printed, not asserted")
    if MODE == "auto":
        pytest.skip("NAVE_KTLS=auto: kTLS counters printed, not asserted (on asserts them)")

# SPDX-License-Identifier: Apache-2.0
"""The XDP filter (bpf/xdp.bpf.c, bpf/xdp.c) on a veth pair between two network
namespaces of its own, driven by tests/xdp/xdp_probe (the loader without
relayd): the probe attaches to the server end, Python listeners sit in the
server namespace and connects come from the client namespace, from a first
and a second address. A SYN the filter drops shows as a connect timeout and a
counter; what it lets through connects. Frames no socket sends (VLAN tags, IP
options, IPv6 extension headers, fragments, v4-mapped sources, lengths that
lie) go through the loaded program with BPF_PROG_TEST_RUN ("run HEX"), on a
probe attached to an interface no packet reaches, so that its counters count
those frames only.

Needs root (namespaces, XDP); skipped otherwise.
"""
import json
import os
import queue
import socket
import struct
import subprocess
import threading
import time

import pytest

import navetest as nt

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and XDP need root")

PROBE = nt.BUILD / "tests" / "xdp_probe"
NS_S = f"nxs{os.getpid()}"
NS_C = f"nxc{os.getpid()}"
IF_S, IF_C = "nxv0", "nxv1"
IF_D = "nxd0"  # a veth pair of its own in the server namespace, no address: no TCP reaches it
SRV, CLI, CLI2 = "10.77.0.1", "10.77.0.2", "10.77.0.3"
SRV2 = "10.77.0.4"  # another address of the server: not relayd's when the probe has --addr SRV
SRV6, CLI6 = "fd77::1", "fd77::2"
PMIN, PMAX = 30000, 30009
SVC = 30100        # one of relayd's own ports: guarded, never "unallocated"
UNGUARDED = 31000  # neither: untouched
DROP_WAIT = 0.5    # a connect that gets no SYN-ACK in this long was dropped


def make_veth():
    nt.ip("link", "add", IF_S, "netns", NS_S, "type", "veth", "peer", "name", IF_C, "netns", NS_C)
    nt.ip("-n", NS_S, "addr", "add", f"{SRV}/24", "dev", IF_S)
    nt.ip("-n", NS_S, "addr", "add", f"{SRV2}/24", "dev", IF_S)
    nt.ip("-n", NS_S, "addr", "add", f"{SRV6}/64", "dev", IF_S, "nodad")
    for a in (CLI, CLI2):
        nt.ip("-n", NS_C, "addr", "add", f"{a}/24", "dev", IF_C)
    nt.ip("-n", NS_C, "addr", "add", f"{CLI6}/64", "dev", IF_C, "nodad")
    nt.ip("-n", NS_S, "link", "set", IF_S, "up")
    nt.ip("-n", NS_C, "link", "set", IF_C, "up")


@pytest.fixture(scope="module")
def net():
    if not PROBE.exists():
        pytest.fail(f"{PROBE} is not built (make {PROBE.relative_to(nt.ROOT)})")
    with nt.netns(NS_S, NS_C):
        make_veth()
        nt.ip("-n", NS_S, "link", "add", IF_D, "type", "veth", "peer", "name", IF_D + "p")
        for i in (IF_D, IF_D + "p"):
            nt.ip("-n", NS_S, "link", "set", i, "up")
        yield


class Probe:
    """xdp_probe in the server namespace; cmd() sends one command, returns its JSON reply."""

    def __init__(self, tmp_path, *args, ifname=IF_S):
        self.log_path = tmp_path / "xdp_probe.log"
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen(["ip", "netns", "exec", NS_S, str(PROBE), "--if", ifname,
                                   "--range", f"{PMIN}-{PMAX}", "--svc", str(SVC), *args],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.log, text=True, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()
        self.hello = self.read()
        if "mode" not in self.hello:
            raise nt.Failure(f"xdp_probe did not start: {self.hello}; {self.logtext()}")

    def _reader(self):
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read(self, timeout=10.0):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise nt.Failure("xdp_probe did not answer") from None
        if line is None:
            raise nt.Failure(f"xdp_probe exited: {self.logtext()}")
        return json.loads(line)

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        r = self.read()
        assert "error" not in r, f"{line}: {r}"
        return r

    def stats(self):
        return self.cmd("stats")

    def logtext(self):
        self.log.flush()
        return self.log_path.read_text()

    def close(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
                self.p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode


@pytest.fixture
def probe(net, tmp_path):
    made = []

    def start(*args, ifname=IF_S):
        pr = Probe(tmp_path, *args, ifname=ifname)
        made.append(pr)
        return pr

    yield start
    for pr in made:
        rc = pr.close()
        assert rc == 0, f"xdp_probe exited with {rc}: {pr.logtext()}"


class Listener:
    """A TCP listener in the server namespace; each connection is read to EOF
    and the number of bytes received is appended to got."""

    def __init__(self, port, addr=SRV):
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self.s = nt.in_ns(NS_S, lambda: socket.socket(fam, socket.SOCK_STREAM))
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.bind((addr, port))
        self.s.listen(512)
        self.s.settimeout(0.1)
        self.got = []
        self.stop = False
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while not self.stop:
            try:
                c, _ = self.s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._drain, args=(c,), daemon=True).start()

    def _drain(self, c):
        n = 0
        c.settimeout(10)
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                n += len(b)
        except OSError:
            pass
        finally:
            c.close()
        self.got.append(n)

    def close(self):
        self.stop = True
        self.t.join()
        self.s.close()


@pytest.fixture
def listen():
    made = []

    def make(port, addr=SRV):
        lst = Listener(port, addr)
        made.append(lst)
        return lst

    yield make
    for lst in made:
        lst.close()


def client_socket(src):
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    s = nt.in_ns(NS_C, lambda: socket.socket(fam, socket.SOCK_STREAM))
    s.bind((src, 0))
    return s


def connect(src, port, dst=None, timeout=DROP_WAIT):
    """'ok', 'timeout' (the SYN went unanswered) or 'refused'."""
    if dst is None:
        dst = SRV6 if ":" in src else SRV
    s = client_socket(src)
    s.settimeout(timeout)
    try:
        s.connect((dst, port))
        return "ok"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    finally:
        s.close()


# ---------------------------------------------------------------- through the veth

def test_attaches_and_reports_the_mode(probe, listen):
    pr = probe("--alloc", str(PMIN))
    assert pr.hello["mode"] in ("native", "generic")
    assert pr.hello["ifname"] == IF_S
    listen(PMIN)
    assert connect(CLI, PMIN) == "ok"
    st = pr.stats()
    assert st["pass"] >= 2 and st["deny"] == st["unallocated"] == st["syn_rate"] == 0


def test_generic_mode(probe, listen):
    pr = probe("--mode", "generic", "--alloc", str(PMIN), "--deny", f"{CLI}/32")
    assert pr.hello["mode"] == "generic"
    listen(PMIN)
    assert connect(CLI, PMIN) == "timeout"
    assert connect(CLI2, PMIN) == "ok"
    assert pr.stats()["deny"] >= 1


def test_deny_drops_the_source_and_only_it(probe, listen):
    pr = probe("--alloc", str(PMIN), "--deny", f"{CLI}/32")
    listen(PMIN)
    assert pr.stats()["ndeny"] == 1
    assert connect(CLI, PMIN) == "timeout"
    st = pr.stats()
    assert st["deny"] >= 1 and st["pass"] == 0
    assert connect(CLI2, PMIN) == "ok"
    assert pr.stats()["pass"] >= 2
    # the lists are replaced at run time: an empty deny list lets CLI in
    assert pr.cmd("clear")["ndeny"] == 0
    assert connect(CLI, PMIN) == "ok"


def test_lists_are_replaced_exactly(probe):
    pr = probe()
    assert pr.cmd(f"deny {CLI}/32")["ndeny"] == 1
    assert pr.cmd(f"deny {CLI}/32")["ndeny"] == 1  # the same block twice is one entry
    assert pr.cmd("deny 192.0.2.0/24")["ndeny"] == 2
    assert pr.cmd("deny 2001:db8::/32")["ndeny"] == 3
    # a full trie replaced by another full one: stale entries go first
    assert pr.cmd("fill 4096 1.0")["ndeny"] == 4096
    assert pr.cmd("fill 4096 2.0")["ndeny"] == 4096
    assert pr.cmd("fill 10 2.0")["ndeny"] == 10
    assert pr.cmd("clear")["ndeny"] == 0
    # ndeny and nallow are what the tries hold: a block in its two forms is one entry
    pr.cmd("deny 10.9.0.0/24")
    assert pr.cmd("deny ::ffff:10.9.0.0/120")["ndeny"] == 1
    pr.cmd("allow 2001:db8::/32")
    pr.cmd("allow 2001:db8::/32")
    st = pr.cmd("allow 10.9.1.0/24")
    assert st["ndeny"] == 1 and st["nallow"] == 2, st
    st = pr.cmd("clear")
    assert st["ndeny"] == st["nallow"] == 0, st


def test_allow_list(probe, listen):
    pr = probe("--alloc", str(PMIN), "--allow", f"{CLI2}/32")
    listen(PMIN)
    assert connect(CLI2, PMIN) == "ok"
    assert connect(CLI, PMIN) == "timeout"
    st = pr.stats()
    assert st["not_allowed"] >= 1 and st["nallow"] == 1
    # deny comes first: a source in both lists is denied
    pr.cmd(f"deny {CLI2}/32")
    assert connect(CLI2, PMIN) == "timeout"
    assert pr.stats()["deny"] >= 1
    st = pr.cmd("clear")
    assert st["ndeny"] == st["nallow"] == 0
    assert connect(CLI, PMIN) == "ok"


def test_syn_to_an_unallocated_port_is_dropped(probe, listen):
    port = PMIN + 3
    pr = probe()
    listen(port)
    assert connect(CLI, port) == "timeout"
    assert pr.stats()["unallocated"] >= 1
    pr.cmd(f"alloc {port}")
    assert connect(CLI, port) == "ok"
    n = pr.stats()["unallocated"]
    pr.cmd(f"hold {port}")  # in the map but not open: still refused
    assert connect(CLI, port) == "timeout"
    pr.cmd(f"release {port}")
    assert connect(CLI, port) == "timeout"
    assert pr.stats()["unallocated"] >= n + 2


def test_shared_ports_map(probe, listen):
    # the ports map made elsewhere (as sk_lookup's is) and written through its own fd
    port = PMIN + 4
    pr = probe("--share", "hash")
    listen(port)
    assert connect(CLI, port) == "timeout"
    pr.cmd(f"alloc {port}")
    assert connect(CLI, port) == "ok"
    # one of another value size is refused with a one-line why
    p = subprocess.run(["ip", "netns", "exec", NS_S, str(PROBE), "--if", IF_S, "--range",
                        f"{PMIN}-{PMAX}", "--share", "bad"], input="quit\n",
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "not a HASH of __u16 to struct nave_port" in p.stderr, p.stderr


def test_syn_rate_holds_a_flood_from_one_source(probe, listen):
    pr = probe("--syn-rate", "20", "--alloc", str(PMIN))
    listen(PMIN)
    assert connect(CLI2, PMIN) == "ok"  # the neighbour entry is there before the flood
    socks = nt.in_ns(NS_C, lambda: [socket.socket() for _ in range(200)])
    t0 = time.monotonic()
    try:
        for s in socks:
            s.bind((CLI, 0))
            s.setblocking(False)
            s.connect_ex((SRV, PMIN))
        took = time.monotonic() - t0
        st = pr.stats()
    finally:
        for s in socks:
            s.close()
    assert took < 1.0, f"the flood took {took:.2f}s"
    # a burst of 20 and at most 20 more in the second: at least 160 of 200 dropped
    assert st["syn_rate"] >= 150, st
    assert connect(CLI2, PMIN, timeout=2.0) == "ok"


def test_per_port_bytes_are_the_payload(probe, listen):
    port = PMIN + 5
    size = 100000
    pr = probe("--alloc", str(port))
    lst = listen(port)
    s = client_socket(CLI)
    s.settimeout(5)
    s.connect((SRV, port))
    s.sendall(os.urandom(size))
    s.shutdown(socket.SHUT_WR)
    nt.wait_for(lambda: lst.got, 5, "the listener to read to EOF")
    s.close()
    assert lst.got == [size]
    c = pr.cmd(f"port {port}")
    assert c["counted"] and c["bytes"] == size, c
    assert c["packets"] >= 3  # SYN, data, FIN at least
    # other ports of the range counted nothing; release resets the port's counters
    assert not pr.cmd(f"port {PMIN}")["counted"]
    pr.cmd(f"release {port}")
    assert not pr.cmd(f"port {port}")["counted"]


def test_unguarded_ports_are_untouched_and_service_ports_guarded(probe, listen):
    pr = probe("--deny", f"{CLI}/32")
    listen(UNGUARDED)
    listen(SVC)
    assert connect(CLI, UNGUARDED) == "ok"
    st = pr.stats()
    assert st["pass"] == st["deny"] == st["unallocated"] == 0
    # a service port is guarded (deny applies) but never "unallocated"
    assert connect(CLI, SVC) == "timeout"
    assert pr.stats()["deny"] >= 1
    assert connect(CLI2, SVC) == "ok"
    assert pr.stats()["unallocated"] == 0


def test_ipv6_and_v4_mapped_blocks(probe, listen):
    pr = probe("--alloc", str(PMIN), "--deny", f"{CLI6}/128")
    listen(PMIN, SRV6)
    listen(PMIN)
    assert connect(CLI6, PMIN) == "timeout"
    assert connect(CLI, PMIN) == "ok"
    assert pr.stats()["deny"] >= 1
    # a block written in the ::ffff:a.b.c.d form is the IPv4 block it names (cidr_parse)
    pr.cmd("clear")
    pr.cmd(f"deny ::ffff:{CLI}/128")
    assert connect(CLI, PMIN) == "timeout"
    assert connect(CLI2, PMIN) == "ok"
    assert connect(CLI6, PMIN) == "ok"


# ---------------------------------------------------------------- frames of our own

CLI6B = "fd77::3"   # another source of the client's /64 (frames only)
OTHER64 = "fd78::1"  # a source of another /64


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def tcp(dport, flags="S", payload=b""):
    f = {"S": 0x02, "SA": 0x12, "A": 0x10}[flags]
    return struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, f, 65535, 0, 0) + payload


def ipv4(src, l4, proto=6, options=b"", frag=0, dst=SRV, tot_len=None):
    """frag: the flags and offset field (0x2000: more fragments; offset in 8 bytes);
    tot_len: what the header claims (default: the real length)."""
    ihl = 5 + len(options) // 4
    n = ihl * 4 + len(l4) if tot_len is None else tot_len
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, n, 1, frag, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst)) + options
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + l4


def ipv6(src, l4, nexthdr=6, dst=SRV6, plen=None):
    return struct.pack("!IHBB16s16s", 6 << 28, len(l4) if plen is None else plen, nexthdr, 64,
                       socket.inet_pton(socket.AF_INET6, src),
                       socket.inet_pton(socket.AF_INET6, dst)) + l4


class Frag6:
    """An IPv6 fragment header in ipv6x's list."""

    def __init__(self, offset=0, more=False):
        self.offset, self.more = offset, more


def ipv6x(src, exts, l4, last=6, dst=SRV6, plen=None):
    """IPv6 with extension headers before l4 (protocol last): each of exts is a
    type (0 hop-by-hop, 43 routing, 60 destination options: 8 bytes), a (type,
    size) pair, or a Frag6."""
    body, nh = l4, last
    for e in reversed(exts):
        if isinstance(e, Frag6):
            body = struct.pack("!BBHI", nh, 0, (e.offset << 3) | int(e.more), 7) + body
            nh = 44
            continue
        t, size = e if isinstance(e, tuple) else (e, 8)
        # a PadN option fills it
        body = struct.pack("!BBBB", nh, size // 8 - 1, 1, size - 4) + b"\0" * (size - 4) + body
        nh = t
    return ipv6(src, body, nexthdr=nh, dst=dst, plen=plen)


def eth(l3, proto, vlans=()):
    """vlans: the TPID of each tag, outermost first (0x88a8, 0x8100)."""
    h = b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02"
    for i, tpid in enumerate(vlans):
        h += struct.pack("!HH", tpid, 7 + i)
    return h + struct.pack("!H", proto) + l3


def v4(l3, vlans=()):
    return eth(l3, 0x0800, vlans)


def v6(l3, vlans=()):
    return eth(l3, 0x86DD, vlans)


def run(pr, frame):
    return pr.cmd(f"run {frame.hex()}")["verdict"]


@pytest.fixture
def fprobe(probe):
    """A probe on IF_D: its counters count the frames run and nothing else (on
    IF_S a late retransmission of an earlier test would count too)."""
    return lambda *args: probe(*args, ifname=IF_D)


def test_frames(fprobe):
    port = PMIN + 1
    pr = fprobe("--alloc", str(port), "--deny", f"{CLI}/32")
    syn = tcp(port)
    assert run(pr, v4(ipv4(CLI, syn))) == "drop"
    assert run(pr, v4(ipv4(CLI2, syn))) == "pass"
    # up to two VLAN tags are looked through (802.1Q; QinQ: 802.1ad or 802.1Q, then 802.1Q)
    assert run(pr, v4(ipv4(CLI, syn), [0x8100])) == "drop"
    assert run(pr, v4(ipv4(CLI, syn), [0x88a8, 0x8100])) == "drop"
    assert run(pr, v4(ipv4(CLI, syn), [0x8100, 0x8100])) == "drop"
    assert run(pr, v6(ipv6(f"::ffff:{CLI}", syn), [0x88a8, 0x8100])) == "drop"
    assert run(pr, v4(ipv4(CLI, syn), [0x88a8, 0x8100, 0x8100])) == "pass"  # a third: not
    # IP options move the TCP header
    assert run(pr, v4(ipv4(CLI, syn, options=b"\x01" * 8))) == "drop"
    # not TCP: untouched
    assert run(pr, v4(ipv4(CLI, syn, proto=17))) == "pass"
    assert run(pr, v6(ipv6x(CLI6, [0, 60], syn, last=17))) == "pass"
    # an IPv6 packet from ::ffff:a.b.c.d matches IPv4 blocks
    assert run(pr, v6(ipv6(f"::ffff:{CLI}", syn))) == "drop"
    assert run(pr, v6(ipv6(CLI6, syn))) == "pass"
    # SYN to an unallocated port of the range; a non-SYN there passes (and is not counted)
    assert run(pr, v4(ipv4(CLI2, tcp(PMIN + 2)))) == "drop"
    assert run(pr, v4(ipv4(CLI2, tcp(PMIN + 2, "A")))) == "pass"
    assert run(pr, v4(ipv4(CLI2, tcp(PMIN + 2, "SA")))) == "pass"
    assert not pr.cmd(f"port {PMIN + 2}")["counted"]
    # payload bytes: total length minus the IP and TCP headers
    assert run(pr, v4(ipv4(CLI2, tcp(port, "A", b"x" * 77), options=b"\x01" * 4))) == "pass"
    assert run(pr, v6(ipv6(CLI6, tcp(port, "A", b"y" * 33)))) == "pass"
    c = pr.cmd(f"port {port}")
    assert c["bytes"] == 77 + 33 and c["packets"] == 4, c  # and the SYNs that passed
    st = pr.stats()
    assert st["deny"] == 7 and st["unallocated"] == 1 and st["malformed"] == 0, st


def test_ipv6_extension_headers(fprobe):
    port = PMIN + 1
    pr = fprobe("--alloc", str(port), "--deny", f"{CLI6}/128")
    syn, other = tcp(port), tcp(PMIN + 2)  # PMIN + 2 is not allocated
    # hop-by-hop, routing, destination options, a fragment header of a whole
    # packet (offset 0): walked to the TCP header, which is judged
    for exts in ([0], [43], [60], [(60, 24)], [Frag6()], [0, 43, 60], [0, Frag6(), 60, 43]):
        assert run(pr, v6(ipv6x(CLI6, exts, syn))) == "drop", exts
        assert run(pr, v6(ipv6x(CLI6B, exts, other))) == "drop", exts
        assert run(pr, v6(ipv6x(CLI6B, exts, syn))) == "pass", exts
    st = pr.stats()
    assert st["deny"] == 7 and st["unallocated"] == 7 and st["pass"] == 7, st
    # more than four: the TCP header is not looked for; the deny list still holds
    five = [0, 43, 60, 60, 60]
    assert run(pr, v6(ipv6x(CLI6, five, syn))) == "drop"
    assert run(pr, v6(ipv6x(CLI6B, five, other))) == "pass"
    # a first fragment (offset 0, more to come) with the whole TCP header is judged
    first = [Frag6(0, True)]
    assert run(pr, v6(ipv6x(CLI6, first, syn))) == "drop"
    assert run(pr, v6(ipv6x(CLI6B, first, other))) == "drop"
    assert run(pr, v6(ipv6x(CLI6B, first, syn))) == "pass"
    # ... and one whose TCP header is cut is dropped whoever sends it, even when
    # the frame goes on past the IPv6 length (padding)
    assert run(pr, v6(ipv6x(CLI6B, first, syn[:8]))) == "drop"
    assert run(pr, v6(ipv6x(CLI6B, [60] + first, syn[:2]))) == "drop"
    assert run(pr, v6(ipv6x(CLI6B, first, syn[:8], plen=16) + syn[8:])) == "drop"
    assert run(pr, v6(ipv6x(CLI6B, [0, 43] + first, b""))) == "drop"  # the chain ends there
    st = pr.stats()
    assert st["malformed"] == 4 and st["deny"] == 9, st
    # unless its port can be read and is not guarded
    assert run(pr, v6(ipv6x(CLI6B, first, tcp(UNGUARDED)[:8]))) == "pass"
    # a later fragment has no port: the deny list only
    later = [Frag6(100, True)]
    assert run(pr, v6(ipv6x(CLI6, later, b"z" * 64))) == "drop"
    assert run(pr, v6(ipv6x(CLI6, [0] + later, b"z" * 64))) == "drop"
    assert run(pr, v6(ipv6x(CLI6B, later, b"z" * 64))) == "pass"
    assert run(pr, v6(ipv6x(CLI6, [Frag6(100)], b"z" * 64))) == "drop"  # the last one
    assert run(pr, v6(ipv6x(CLI6, later, b"z" * 64, last=17))) == "pass"  # UDP's: untouched
    # payload bytes after extension headers
    assert run(pr, v6(ipv6x(CLI6B, [0, (60, 16)], tcp(port, "A", b"p" * 50)))) == "pass"
    assert pr.cmd(f"port {port}")["bytes"] == 50
    st = pr.stats()
    assert st["deny"] == 12 and st["malformed"] == 4, st


def test_ipv4_fragments(fprobe):
    port = PMIN + 1
    pr = fprobe("--alloc", str(port), "--deny", f"{CLI}/32")
    syn = tcp(port)
    # a first fragment with the whole TCP header is judged
    assert run(pr, v4(ipv4(CLI, syn, frag=0x2000))) == "drop"
    assert run(pr, v4(ipv4(CLI2, tcp(PMIN + 2), frag=0x2000))) == "drop"
    assert run(pr, v4(ipv4(CLI2, syn, frag=0x2000))) == "pass"
    st = pr.stats()
    assert st["deny"] == 1 and st["unallocated"] == 1 and st["pass"] == 1, st
    # a first fragment with its TCP header cut is dropped whoever sends it, also
    # when Ethernet padding follows it in the frame
    assert run(pr, v4(ipv4(CLI2, syn[:8], frag=0x2000))) == "drop"
    assert run(pr, v4(ipv4(CLI2, syn[:2], frag=0x2000))) == "drop"
    assert run(pr, v4(ipv4(CLI2, syn[:8], frag=0x2000) + syn[8:])) == "drop"
    assert run(pr, v4(ipv4(CLI, syn[:8], frag=0x2000))) == "drop"  # counted as denied
    st = pr.stats()
    assert st["malformed"] == 3 and st["deny"] == 2, st
    # unless its port can be read and is not guarded
    assert run(pr, v4(ipv4(CLI2, tcp(UNGUARDED)[:8], frag=0x2000))) == "pass"
    # a later fragment has no port: the deny list only (not counted when it passes)
    assert run(pr, v4(ipv4(CLI, b"z" * 64, frag=0x2000 | 100))) == "drop"
    assert run(pr, v4(ipv4(CLI, b"z" * 64, frag=100))) == "drop"
    assert run(pr, v4(ipv4(CLI2, b"z" * 64, frag=100))) == "pass"
    assert run(pr, v4(ipv4(CLI, b"z" * 64, frag=100, proto=17))) == "pass"
    # a packet cut short (not a fragment): the deny list only
    assert run(pr, v4(ipv4(CLI, syn)[:30])) == "drop"
    assert run(pr, v4(ipv4(CLI2, tcp(PMIN + 2))[:30])) == "pass"
    st = pr.stats()
    assert st["deny"] == 5 and st["malformed"] == 3 and st["pass"] == 1, st


def test_destination_address(fprobe):
    port = PMIN + 1
    syn = tcp(port)
    cases = [
        # --addr, then (a frame, judged?) for each
        (SRV, [(ipv4(CLI, syn), True), (ipv4(CLI, syn, dst=SRV2), False),
               (ipv6(f"::ffff:{CLI}", syn), False), (ipv6(CLI6, syn), False)]),
        ("0.0.0.0", [(ipv4(CLI, syn), True), (ipv4(CLI, syn, dst=SRV2), True),
                     (ipv6(CLI6, syn), False)]),
        (SRV6, [(ipv6(CLI6, syn), True), (ipv6(CLI6, syn, dst="fd77::9"), False),
                (ipv6x(CLI6, [0], syn, dst="fd77::9"), False), (ipv4(CLI, syn), False)]),
        ("::", [(ipv6(CLI6, syn), True), (ipv6(CLI6, syn, dst="fd77::9"), True),
                (ipv4(CLI, syn), True), (ipv4(CLI, syn, dst=SRV2), True)]),
        (f"::ffff:{SRV}", [(ipv4(CLI, syn), True), (ipv4(CLI, syn, dst=SRV2), False),
                           (ipv6(CLI6, syn), False)]),
    ]
    for addr, frames in cases:
        pr = fprobe("--addr", addr, "--alloc", str(port), "--deny", f"{CLI}/32",
                   "--deny", f"{CLI6}/128")
        for l3, judged in frames:
            frame = v4(l3) if l3[0] >> 4 == 4 else v6(l3)
            assert run(pr, frame) == ("drop" if judged else "pass"), (addr, l3.hex())
        # fragments and cut first fragments to another address are not ours either
        if addr == SRV:
            assert run(pr, v4(ipv4(CLI, b"z" * 64, frag=100, dst=SRV2))) == "pass"
            assert run(pr, v4(ipv4(CLI2, syn[:8], frag=0x2000, dst=SRV2))) == "pass"
            assert run(pr, v4(ipv4(CLI2, syn[:8], frag=0x2000))) == "drop"
        pr.close()


def test_another_address_of_the_host_is_not_filtered(probe, listen):
    # relayd on SRV: a service on SRV2, same port, is not relayd's to filter
    pr = probe("--addr", SRV, "--deny", f"{CLI}/32")
    listen(SVC, SRV2)
    listen(SVC)
    assert connect(CLI, SVC, dst=SRV2) == "ok"
    assert pr.stats()["deny"] == 0
    assert connect(CLI, SVC) == "timeout"
    assert pr.stats()["deny"] >= 1


def test_syn_rate_is_for_the_range_only(fprobe):
    # devices open data links in bursts on relayd's own ports: no SYN rate there
    pr = fprobe("--syn-rate", "5", "--alloc", str(PMIN))
    for _ in range(30):
        assert run(pr, v4(ipv4(CLI, tcp(SVC)))) == "pass"
    assert pr.stats()["syn_rate"] == 0
    verdicts = [run(pr, v4(ipv4(CLI, tcp(PMIN)))) for _ in range(30)]
    assert verdicts[:5] == ["pass"] * 5 and verdicts.count("drop") >= 20, verdicts
    assert pr.stats()["syn_rate"] == verdicts.count("drop")
    # the deny list still holds on relayd's own ports
    pr.cmd(f"deny {CLI}/32")
    assert run(pr, v4(ipv4(CLI, tcp(SVC)))) == "drop"


def test_syn_rate_keys_ipv6_by_the_64(fprobe):
    pr = fprobe("--syn-rate", "5", "--alloc", str(PMIN))
    syn = tcp(PMIN)
    # thirty addresses of one /64: one bucket
    verdicts = [run(pr, v6(ipv6(f"fd77::{i + 10:x}", syn))) for i in range(30)]
    assert verdicts[:5] == ["pass"] * 5 and verdicts.count("drop") >= 20, verdicts
    # another /64 has its own
    assert run(pr, v6(ipv6(OTHER64, syn))) == "pass"
    # IPv4 sources are one bucket each (a v4-mapped one is its IPv4 address)
    assert all(run(pr, v4(ipv4(f"10.78.0.{i + 1}", syn))) == "pass" for i in range(10))
    assert run(pr, v6(ipv6("::ffff:10.78.1.1", syn))) == "pass"
    assert all(run(pr, v6(ipv6(f"::ffff:10.78.2.{i + 1}", syn))) == "pass" for i in range(10))


def test_bytes_are_what_the_frame_holds(fprobe):
    port = PMIN + 1
    pr = fprobe("--alloc", str(port))
    # lengths claiming more than the frame holds count what is there
    assert run(pr, v4(ipv4(CLI2, tcp(port, "A", b"x" * 77), tot_len=1500))) == "pass"
    assert pr.cmd(f"port {port}")["bytes"] == 77
    assert run(pr, v6(ipv6(CLI6, tcp(port, "A", b"y" * 33), plen=9000))) == "pass"
    assert pr.cmd(f"port {port}")["bytes"] == 77 + 33
    assert run(pr, v6(ipv6x(CLI6, [0], tcp(port, "A", b"y" * 10), plen=60000))) == "pass"
    assert pr.cmd(f"port {port}")["bytes"] == 77 + 33 + 10
    # a length of 0 (BIG TCP) is the frame's; one shorter than the frame wins (padding)
    assert run(pr, v4(ipv4(CLI2, tcp(port, "A", b"z" * 5), tot_len=0))) == "pass"
    assert run(pr, v4(ipv4(CLI2, tcp(port, "A", b"z" * 40), tot_len=20 + 20 + 6))) == "pass"
    c = pr.cmd(f"port {port}")
    assert c["bytes"] == 77 + 33 + 10 + 5 + 6 and c["packets"] == 5, c


# ---------------------------------------------------------------- the interface

def test_interface_going_away_and_back(probe, listen):
    pr = probe("--alloc", str(PMIN), "--deny", f"{CLI}/32")
    mode = pr.hello["mode"]
    nt.ip("-n", NS_C, "link", "del", IF_C)  # takes the server end with it
    try:
        nt.wait_for(lambda: pr.cmd("mode")["mode"] == "detached", 3, "the filter to detach")
    finally:
        make_veth()
    nt.wait_for(lambda: pr.cmd("mode")["mode"] == mode, 3, "the filter to come back")
    listen(PMIN)
    assert connect(CLI, PMIN) == "timeout"
    assert connect(CLI2, PMIN, timeout=2.0) == "ok"
    log = pr.logtext()
    assert log.count("the filter is detached until it returns") == 1, log
    assert log.count("is back") == 1 and f"attached, {mode} mode" in log, log

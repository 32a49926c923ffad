# SPDX-License-Identifier: Apache-2.0
"""nave benchmark harness (make bench). Python 3 standard library only.

One run on 127.0.0.1 measures:
  1. iperf3 throughput (1 stream, 8 streams, 1 stream reverse), 3 samples each,
     median reported, for: direct, nave (a real controld + relayd + client
     tunnel), HAProxy in TCP mode, and OpenSSH `ssh -R` with aes128-gcm.
     Samples are taken round-robin across the paths so that drift of a shared
     machine hits every path alike.
  2. Memory: VmRSS of nave-relayd and of the nave client before and after
     1,000 idle relayed connections, in KiB per connection for both ends.
Results go to bench/results/<UTC timestamp>.json and bench/results/latest.json,
and a table to stdout. See bench/README.md.

Usage: bench.py [BUILD_DIR]   (default: build; relative to the repository root)
Environment: BENCH_SECONDS (iperf3 -t, default 5), BENCH_CONNS (default 1000),
BENCH_KEEP=1 keeps the temporary directory with every log.
"""
import datetime
import hashlib
import json
import os
import platform
import random
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNS = int(os.environ.get("BENCH_CONNS", "1000"))
# the ktls mode of both ends (auto: what the kernel offers; on/off to compare)
KTLS = os.environ.get("BENCH_KTLS", "auto")
if KTLS not in ("auto", "on", "off"):
    sys.exit(f"bench: BENCH_KTLS={KTLS!r} is not one of auto|on|off")
REPEAT = 3
KIB_TARGET = 32
HOLD_CHECK_S = 12  # the idle connections must still be up this long after opening
HOST = "127.0.0.1"

# (mode key, iperf3 extra arguments, label)
MODES = [
    ("p1", [], "1 stream"),
    ("p8", ["-P", "8"], "8 streams"),
    ("p1r", ["-R"], "1 stream -R"),
]
PATHS = ["direct", "nave", "haproxy", "ssh"]
LABELS = {
    "direct": "direct",
    "nave": "nave tunnel",
    "haproxy": "HAProxy tcp",
    "ssh": "ssh -R gcm",
}


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


class Procs:
    """Every long-running child, stopped in reverse order: SIGTERM, then SIGKILL."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.items = []  # (name, Popen, log path)

    def start(self, name, argv, **kw):
        logpath = self.tmp / f"{name}.log"
        logf = open(logpath, "ab")
        try:
            p = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kw,
            )
        finally:
            logf.close()
        self.items.append((name, p, logpath))
        return p

    def logtail(self, name, lines=30):
        for n, _, path in self.items:
            if n == name:
                try:
                    text = path.read_text(errors="replace").splitlines()
                except OSError:
                    return ""
                return "\n".join(text[-lines:])
        return ""

    def check_alive(self, name):
        for n, p, _ in self.items:
            if n == name and p.poll() is not None:
                raise BenchError(f"{name} exited with {p.returncode}:\n{self.logtail(name)}")

    @staticmethod
    def stop(p, timeout=10):
        if p.poll() is not None:
            return
        try:
            # Own process group (start_new_session): reaches children like sshd's.
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log(f"pid {p.pid} survived SIGKILL")

    def stop_named(self, name):
        for item in [it for it in self.items if it[0] == name]:
            self.items.remove(item)
            self.stop(item[1])

    def stop_all(self):
        while self.items:
            name, p, _ = self.items.pop()
            try:
                self.stop(p)
            except Exception as e:  # keep stopping the rest
                log(f"stopping {name}: {e}")


def run(argv, timeout=30, check=True, **kw):
    p = subprocess.run(
        [str(a) for a in argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )
    if check and p.returncode != 0:
        raise BenchError(
            f"{' '.join(map(str, argv))}: exit {p.returncode}\n{p.stdout}{p.stderr}".rstrip()
        )
    return p


def wait_until(what, cond, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if r:
            return r
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- ports


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# The bench's relays take their [ports] range from here: away from the integration
# tests' 23000-29999, so that a concurrent test run and a bench never share ports (a
# relayd that steers with BPF binds none of its range, so a bind probe cannot see it),
# and below the ephemeral range (32768-60999 by default): the bench runs with
# [ports] reserve = off, and a port the kernel lends to an outgoing connection (a data
# link, an iperf3 stream) cannot be listened on until that connection is gone.
WINDOW_LO, WINDOW_HI = 10000, 19999
_windows = []  # (low, high) handed out in this run


def port_free(port):
    """Nothing listens on or is bound to port (a TIME_WAIT socket does not count:
    SO_REUSEADDR, as relayd's listeners have it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def free_window(size=50, lo=WINDOW_LO, hi=WINDOW_HI):
    """A window of size ports in lo..hi that all look free, overlapping no window
    handed out earlier in this run; random, so that two benches at once rarely meet."""
    rnd = random.SystemRandom()
    for _ in range(200):
        low = rnd.randrange(lo, hi - size + 2)
        high = low + size - 1
        if any(a <= high and low <= b for a, b in _windows):
            continue
        if all(port_free(p) for p in range(low, high + 1)):
            _windows.append((low, high))
            return low, high
    raise BenchError(f"no free window of {size} ports in {lo}-{hi}")


def listening(port):
    """True if something listens on port at 127.0.0.1 or a wildcard (/proc/net/tcp*)."""
    addrs = {
        "0100007F", "00000000",  # 127.0.0.1, 0.0.0.0
        "0" * 32, "0000000000000000FFFF00000100007F",  # ::, ::ffff:127.0.0.1
    }
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    addr, p = parts[1].split(":")
                    if parts[3] == "0A" and int(p, 16) == port and addr in addrs:
                        return True
        except OSError:
            pass
    return False


def accepts(port, deadline):
    """Connects to port until a handshake completes (then closes); returns how many
    attempts were refused first."""
    refused = 0
    while True:
        with socket.socket() as s:
            s.settimeout(2)
            err = s.connect_ex((HOST, port))
        if err == 0:
            return refused
        refused += 1
        if time.monotonic() > deadline:
            raise BenchError(f"port {port}: no connection accepted ({os.strerror(err)})")
        time.sleep(0.0005)


# ---------------------------------------------------------------- iperf3


def iperf3_server(procs, name):
    port = free_port()
    p = procs.start(name, ["iperf3", "-s", "-B", HOST, "-p", port])
    wait_until(f"{name} listening on {port}", lambda: p.poll() is not None or listening(port), 10)
    procs.check_alive(name)
    return port


def iperf3(port, extra):
    argv = ["iperf3", "-c", HOST, "-p", port, "-t", SECONDS, "-J", "--connect-timeout", "5000"] + extra
    try:
        p = run(argv, timeout=SECONDS + 40, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"iperf3 {' '.join(map(str, extra))} to port {port} hung for {SECONDS + 40} s")
    try:
        j = json.loads(p.stdout)
    except ValueError:
        raise BenchError(f"iperf3 exit {p.returncode}, no JSON: {p.stdout[-500:]}{p.stderr[-500:]}")
    if "error" in j:
        raise BenchError(f"iperf3 to port {port}: {j['error']}")
    return j["end"]["sum_received"]["bits_per_second"] / 1e9


# ---------------------------------------------------------------- paths


def setup_direct(procs, tmp):
    port = iperf3_server(procs, "iperf3-direct")
    return {"port": port}


def setup_haproxy(procs, tmp):
    backend = iperf3_server(procs, "iperf3-haproxy")
    front = free_port()
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(
        "global\n"
        "    nbthread 2\n"
        "    maxconn 4096\n"
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 5s\n"
        "    timeout client 120s\n"
        "    timeout server 120s\n"
        "frontend fe\n"
        f"    bind {HOST}:{front}\n"
        "    default_backend be\n"
        "backend be\n"
        f"    server iperf3 {HOST}:{backend}\n"
    )
    run(["haproxy", "-c", "-f", cfg])
    p = procs.start("haproxy", ["haproxy", "-db", "-f", cfg])
    wait_until("haproxy listening", lambda: p.poll() is not None or listening(front), 10)
    procs.check_alive("haproxy")
    return {"port": front, "backend": backend}


def setup_ssh(procs, tmp):
    backend = iperf3_server(procs, "iperf3-ssh")
    d = tmp / "ssh"
    d.mkdir()
    hostkey, key = d / "host_ed25519", d / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostkey])
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    shutil.copy(d / "id_ed25519.pub", d / "authorized_keys")
    sshd_port = free_port()
    remote = free_port()
    cfg = d / "sshd_config"
    cfg.write_text(
        f"Port {sshd_port}\n"
        f"ListenAddress {HOST}\n"
        f"HostKey {hostkey}\n"
        f"PidFile {d}/sshd.pid\n"
        f"AuthorizedKeysFile {d}/authorized_keys\n"
        "PermitRootLogin yes\n"
        "StrictModes no\n"
        "UsePAM no\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "AllowTcpForwarding yes\n"
        "GatewayPorts no\n"
        "Ciphers aes128-gcm@openssh.com\n"
        "LogLevel ERROR\n"
    )
    # OpenSSH's privilege separation directory; absent on minimal images.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    run(["/usr/sbin/sshd", "-t", "-f", cfg])
    p = procs.start("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", cfg])
    wait_until("sshd listening", lambda: p.poll() is not None or listening(sshd_port), 10)
    procs.check_alive("sshd")
    c = procs.start(
        "ssh",
        [
            "ssh", "-N", "-F", "/dev/null",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "ExitOnForwardFailure=yes",
            "-o", "LogLevel=ERROR",
            "-c", "aes128-gcm@openssh.com",
            "-i", key,
            "-p", sshd_port,
            "-R", f"{remote}:{HOST}:{backend}",
            f"root@{HOST}",
        ],
    )
    wait_until("ssh -R port listening", lambda: c.poll() is not None or listening(remote), 20)
    procs.check_alive("ssh")
    procs.check_alive("sshd")
    return {"port": remote, "backend": backend, "sshd_port": sshd_port}


class Nave:
    """One nave stack: controld, relayd and a registered, online client, under tmp/TAG.
    The memory test's stack (tag "nave") keeps relayd's default steering; the
    connection-rate stacks name theirs and hold a range of RANGE_SIZE ports."""

    def __init__(self, procs, tmp, build, tag="nave", steering=None, range_size=50,
                 max_per_tunnel=None):
        self.procs, self.build, self.tmp, self.tag = procs, build, tmp, tag
        self.steering, self.range_size, self.max_per_tunnel = steering, range_size, max_per_tunnel
        self.relayd = self.client = None
        self.attempts = 0

    def bin(self, name):
        return self.build / name

    def pname(self, role):
        return f"{self.tag}-{role}"  # nave-controld, nave-relayd, nave-client, nave-bpf-relayd, ...

    def ctl(self, *args, timeout=30):
        return run([self.bin("navectl"), "--config", self.ini, *args], timeout=timeout)

    def nave(self, *args, timeout=30, check=True):
        return run([self.bin("nave"), "--config", self.cini, *args], timeout=timeout, check=check)

    def status(self):
        return json.loads(self.ctl("--json", "status").stdout)

    def client_status(self):
        p = self.nave("--json", "status", check=False)
        if p.returncode != 0:
            return {}
        try:
            return json.loads(p.stdout)
        except ValueError:
            return {}

    def setup(self, tries=3):
        """setup_once, again on a fresh window when relayd does not come up (another
        relayd may steer an overlapping range: a BPF-steered range binds no port)."""
        for b in ("nave-controld", "nave-relayd", "navectl", "nave"):
            if not os.access(self.bin(b), os.X_OK):
                raise BenchError(f"{self.bin(b)} missing (make)")
        while True:
            self.attempts += 1
            try:
                return self.setup_once()
            except BenchError as e:
                relayd_died = self.relayd is not None and self.relayd.poll() is not None
                if not relayd_died or self.attempts >= tries:
                    raise
                log(f"{self.tag}: relayd did not start on {self.range} ({str(e).splitlines()[0]});"
                    " another window")
                for role in ("client", "relayd", "controld"):
                    self.procs.stop_named(self.pname(role))
                self.relayd = self.client = None

    def setup_once(self):
        self.d = self.tmp / (self.tag if self.attempts == 1 else f"{self.tag}.{self.attempts}")
        self.d.mkdir()
        self.ini = self.d / "server.ini"
        self.cini = self.d / "client.ini"
        https, http = free_port(), free_port()
        low, high = free_window(self.range_size)
        self.https, self.range, self.low, self.high = https, f"{low}-{high}", low, high
        self.run_dir = run_dir = self.d / "run"
        self.sock = run_dir / "control.sock"
        # one section of each name: the server refuses a repeated one
        self.ini.write_text(
            "[server]\n"
            f"state_dir = {self.d}/var\n"
            f"runtime_dir = {run_dir}\n"
            "log_level = warn\n"
            "[listen]\n"
            f"http = {http}\n"
            f"https = {https}\n"
            f"address = {HOST}\n"
            "[ports]\n"
            f"range = {low}-{high}\n"
            + (f"max_per_tunnel = {self.max_per_tunnel}\n" if self.max_per_tunnel else "")
            # every connection of the memory test comes from 127.0.0.1
            + f"max_conns_per_source = {max(256, 2 * CONNS)}\n"
            # a benchmark leaves the machine's reserved ports alone
            "reserve = off\n"
            "[tunnel]\n"
            # The memory test holds BENCH_CONNS relayed connections, one data link each.
            f"max_links = {max(1024, 2 * CONNS)}\n"
            "[datapath]\n"
            f"ktls = {KTLS}\n"
            + (f"steering = {self.steering}\n" if self.steering else "")
        )
        run([self.bin("nave-controld"), "--check", "--config", self.ini])
        self.controld = controld = self.procs.start(
            self.pname("controld"), [self.bin("nave-controld"), "--config", self.ini], cwd=self.d
        )
        wait_until(
            "controld's control.sock",
            lambda: controld.poll() is not None or self.sock.exists(),
            15,
        )
        self.procs.check_alive(self.pname("controld"))
        self.relayd = self.procs.start(
            self.pname("relayd"), [self.bin("nave-relayd"), "--config", self.ini], cwd=self.d
        )

        def relay_up():
            self.procs.check_alive(self.pname("relayd"))
            self.procs.check_alive(self.pname("controld"))
            try:
                st = self.status()
            except BenchError:
                return None
            return st if st.get("relay", {}).get("connected") else None

        st = wait_until(f"{self.tag}: relayd connected to controld", relay_up, 20, 0.1)
        self.server_status = st
        wait_until("relayd listening on https", lambda: listening(https), 10)
        token = self.ctl("registration", "create").stdout.splitlines()[0].strip()
        fp = st["tls_fingerprint"]
        self.nave(
            "configure", "--server", f"{HOST}:{https}", "--registration", token,
            "--fingerprint", fp,
        )
        # The client's default max_links (256) is below the memory test's count.
        text = self.cini.read_text()
        lines = [ln for ln in text.splitlines()
                 if not ln.startswith(("max_links", "log_level", "ktls"))]
        lines += [f"max_links = {min(4096, max(256, 2 * CONNS))}", "log_level = warn",
                  f"ktls = {KTLS}"]
        self.cini.write_text("\n".join(lines) + "\n")
        self.client = self.procs.start(
            self.pname("client"), [self.bin("nave"), "start", "--config", self.cini], cwd=self.d
        )

        def online():
            self.procs.check_alive(self.pname("client"))
            return self.client_status().get("state") == "online"

        wait_until(f"{self.tag}: nave client online", online, 20, 0.1)
        self.client_status_online = self.client_status()

    def add_tcp(self, to_port):
        out = self.nave("tunnel", "tcp", "add", "--to", f"{HOST}:{to_port}").stdout.strip()
        try:
            port = int(out.split()[-1])
        except (ValueError, IndexError):
            raise BenchError(f"nave tunnel tcp add printed {out!r}, expected a port")
        if (self.server_status.get("relay") or {}).get("steering") == "bpf":
            # nothing listens on the port itself (sk_lookup steers its SYNs to the
            # range's listeners): wait until it accepts (the service sees one empty
            # connection; iperf3 -s shrugs it off)
            accepts(port, time.monotonic() + 10)
        else:
            wait_until(f"public port {port} listening", lambda: listening(port), 10)
        return port


def setup_nave(procs, tmp, nv):
    nv.setup()
    backend = iperf3_server(procs, "iperf3-nave")
    port = nv.add_tcp(backend)
    return {"port": port, "backend": backend}


# ---------------------------------------------------------------- memory


class EchoServer:
    """Accept-and-hold: echoes what it reads, keeps every connection open."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((HOST, 0))
        self.ls.listen(4096)
        self.ls.setblocking(False)
        self.port = self.ls.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.ls, selectors.EVENT_READ)
        self.wake_r, self.wake_w = socket.socketpair()
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        self.conns = set()
        self.stopping = False
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while not self.stopping:
            for key, _ in self.sel.select(timeout=1):
                s = key.fileobj
                if s is self.wake_r:
                    return
                if s is self.ls:
                    try:
                        c, _ = self.ls.accept()
                    except (BlockingIOError, OSError):
                        continue
                    c.setblocking(False)
                    self.conns.add(c)
                    self.sel.register(c, selectors.EVENT_READ)
                    continue
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    try:
                        s.sendall(data)
                    except OSError:
                        data = b""
                if not data:
                    self.sel.unregister(s)
                    self.conns.discard(s)
                    s.close()

    def close(self):
        self.stopping = True
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass
        self.t.join(timeout=5)
        for c in list(self.conns):
            c.close()
        self.ls.close()
        self.wake_r.close()
        self.wake_w.close()
        self.sel.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def open_echoed(port, n, deadline, batch=100):
    """n connections to port, each with one byte echoed back; returns the sockets."""
    socks = []
    try:
        while len(socks) < n:
            new = []
            for _ in range(min(batch, n - len(socks))):
                tag = bytes([(len(socks) + len(new)) % 251])  # catches crossed streams
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"deadline passed after {len(socks) + len(new)} connections")
                s = socket.create_connection((HOST, port), timeout=min(10, left))
                new.append(s)
                s.sendall(tag)
            socks += new
            for i, s in enumerate(new):
                tag = bytes([(len(socks) - len(new) + i) % 251])
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(
                        f"deadline passed waiting for echoes ({len(socks) - len(new) + i} of {n} echoed)"
                    )
                s.settimeout(min(15, left))
                try:
                    b = s.recv(1)
                except socket.timeout:
                    raise BenchError(
                        f"connection {len(socks) - len(new) + i + 1}: no echo within {min(15, left):.0f} s"
                    )
                if b != tag:
                    raise BenchError(
                        f"connection {len(socks) - len(new) + i + 1}: got {b!r} instead of the echo"
                        f" {tag!r} (closed by the tunnel, or crossed streams)"
                    )
        return socks
    except BaseException:
        for s in socks:
            s.close()
        raise


def closed_count(socks):
    """How many of socks have been closed or reset by the peer (readable when idle)."""
    sel = selectors.DefaultSelector()
    try:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        return len(sel.select(timeout=0))
    finally:
        sel.close()


def memory_test(nv):
    echo = EchoServer()
    socks = []
    res = {"connections": CONNS}
    try:
        port = nv.add_tcp(echo.port)
        # Warm-up: the first relayed connections allocate once-per-process things.
        for s in open_echoed(port, 16, time.monotonic() + 30):
            s.close()
        time.sleep(1)
        rp, cp = nv.relayd.pid, nv.client.pid
        before = {"relayd": rss_kib(rp), "client": rss_kib(cp)}
        t0 = time.monotonic()
        socks = open_echoed(port, CONNS, time.monotonic() + 120)
        opened = time.monotonic()
        res["open_seconds"] = round(opened - t0, 2)
        time.sleep(2)
        nv.procs.check_alive("nave-relayd")
        nv.procs.check_alive("nave-client")
        held = {"relayd": rss_kib(rp), "client": rss_kib(cp)}
        # Still held end to end: an idle stream must not be readable (EOF or reset).
        res["closed_by_tunnel"] = closed_count(socks)
        cst = nv.client_status()
        sst = nv.status()
        res["client_conns_reported"] = cst.get("conns")
        res["client_links_reported"] = cst.get("links")
        res["relay_conns_reported"] = sst.get("relay", {}).get("conns")
        res["relay_links_reported"] = sst.get("relay", {}).get("links")
        res["echo_server_conns"] = len(echo.conns)
        # Idle is idle: the streams must outlive every short timer of the relay
        # (the 10 s wait for a free data link, handshake timeouts).
        while time.monotonic() - opened < HOLD_CHECK_S:
            time.sleep(0.2)
        res[f"closed_by_tunnel_after_{HOLD_CHECK_S}s"] = closed_count(socks)
        problems = []
        if res["closed_by_tunnel"]:
            problems.append(
                f"{res['closed_by_tunnel']} of {CONNS} echoed connections were closed by the tunnel"
                " within 2 s"
            )
        elif res[f"closed_by_tunnel_after_{HOLD_CHECK_S}s"]:
            problems.append(
                f"{res[f'closed_by_tunnel_after_{HOLD_CHECK_S}s']} of {CONNS} idle, echoed connections"
                f" were closed by the tunnel within {HOLD_CHECK_S} s"
            )
        for k in ("client_conns_reported", "relay_conns_reported"):
            if res[k] != CONNS:
                problems.append(f"{k} = {res[k]}, expected {CONNS}")
        res["held_ok"] = not problems
        if problems:
            res["problem"] = "; ".join(problems)
        for s in socks:
            s.close()
        socks = []
        time.sleep(2)
        after_close = {"relayd": rss_kib(rp), "client": rss_kib(cp)}
        d_relayd = held["relayd"] - before["relayd"]
        d_client = held["client"] - before["client"]
        per = (d_relayd + d_client) / CONNS
        res.update(
            {
                "rss_kib_before": before,
                "rss_kib_held": held,
                "rss_kib_after_close": after_close,
                "delta_kib": {"relayd": d_relayd, "client": d_client},
                "kib_per_conn": {
                    "relayd": round(d_relayd / CONNS, 2),
                    "client": round(d_client / CONNS, 2),
                    "total": round(per, 2),
                },
                "target_kib_per_conn": KIB_TARGET,
                "meets_target": per < KIB_TARGET,
            }
        )
        return res
    finally:
        for s in socks:
            s.close()
        echo.close()


# ---------------------------------------------------------------- report


def machine_info():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def ver(argv):
        try:
            p = run(argv, timeout=10, check=False)
            return (p.stdout or p.stderr).splitlines()[0].strip()
        except Exception:
            return None

    def git(*args):
        try:
            return run(["git", "-C", ROOT, *args], timeout=10, check=False).stdout.strip()
        except Exception:
            return None

    return {
        "nproc": os.cpu_count(),
        "nproc_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "cpu_model": cpu,
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "python": platform.python_version(),
        "iperf3": ver(["iperf3", "--version"]),
        "haproxy": ver(["haproxy", "-v"]),
        "ssh": ver(["ssh", "-V"]),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def shown_path(path):
    """A path as recorded in results: relative to the repository when inside it, so
    the committed results name no directory of the machine they ran on."""
    try:
        return str(path.relative_to(ROOT.resolve()))
    except ValueError:
        return str(path)


def binaries(build):
    """Which nave binaries ran: build/ is shared, a rebuild mid-run shows here."""
    out = {}
    for name in ("nave-controld", "nave-relayd", "navectl", "nave"):
        path = build / name
        try:
            st = path.stat()
            h = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        except OSError:
            continue
        out[name] = {
            "sha256_16": h,
            "mtime": datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        }
    return out


def transport(relay, client):
    """How the measured links carried TLS: the mode each end runs and its kTLS /
    userspace link counts (after the throughput runs, while the links are up)."""
    return {
        "relay_mode": relay.get("ktls"),
        "relay_links_ktls": relay.get("links_ktls"),
        "relay_links_tls": relay.get("links_tls"),
        "client_mode": client.get("ktls"),
        "client_links_ktls": client.get("links_ktls"),
        "client_links_tls": client.get("links_tls"),
        "client_control_ktls": client.get("control_ktls"),
    }


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def summarize(samples):
    out = {}
    for path, modes in samples.items():
        out[path] = {}
        for mode, vals in modes.items():
            ok = [v for v in vals if v is not None]
            out[path][mode] = {
                "samples_gbps": [round(v, 3) if v is not None else None for v in vals],
                "median_gbps": round(statistics.median(ok), 3) if ok else None,
            }
    for path in out:
        for mode in out[path]:
            m = out[path][mode]["median_gbps"]
            out[path][mode]["vs_direct"] = ratio(m, out.get("direct", {}).get(mode, {}).get("median_gbps"))
            out[path][mode]["vs_ssh"] = ratio(m, out.get("ssh", {}).get(mode, {}).get("median_gbps"))
    return out


def print_table(result):
    tp = result["throughput"]
    tr = result.get("nave", {}).get("transport")
    print()
    if tr:
        print(f"nave links: relayd {tr['relay_mode']} ({tr['relay_links_ktls']} kTLS, "
              f"{tr['relay_links_tls']} userspace), client {tr['client_mode']} "
              f"({tr['client_links_ktls']} kTLS, {tr['client_links_tls']} userspace)")
    print(f"nave bench  {result['timestamp']}  iperf3 -t {SECONDS}, {REPEAT} samples, median"
          f"  ({result['machine']['nproc']} CPU, {result['machine']['cpu_model']}, "
          f"kernel {result['machine']['kernel']})")
    for key, _, label in MODES:
        print()
        print(f"{label:<14} {'Gbit/s':>8} {'vs direct':>10} {'vs ssh -R':>10}   samples")
        for path in PATHS:
            m = tp.get(path, {}).get(key)
            if m is None:
                err = result["errors"].get(path)
                print(f"  {LABELS[path]:<12} {'-':>8}   {'(' + err.splitlines()[0][:60] + ')' if err else ''}")
                continue
            med = "-" if m["median_gbps"] is None else f"{m['median_gbps']:.2f}"
            vd = "-" if m["vs_direct"] is None else f"{m['vs_direct']:.2f}"
            vs = "-" if m["vs_ssh"] is None else f"{m['vs_ssh']:.2f}"
            smp = " ".join("fail" if v is None else f"{v:.2f}" for v in m["samples_gbps"])
            print(f"  {LABELS[path]:<12} {med:>8} {vd:>10} {vs:>10}   {smp}")
    mem = result.get("memory")
    print()
    if mem and "kib_per_conn" in mem:
        b, h, a = mem["rss_kib_before"], mem["rss_kib_held"], mem["rss_kib_after_close"]
        k = mem["kib_per_conn"]
        print(f"memory, {mem['connections']} idle relayed connections (VmRSS KiB)")
        print(f"  {'':<10} {'before':>9} {'held':>9} {'closed':>9} {'KiB/conn':>9}")
        print(f"  {'relayd':<10} {b['relayd']:>9} {h['relayd']:>9} {a['relayd']:>9} {k['relayd']:>9.2f}")
        print(f"  {'client':<10} {b['client']:>9} {h['client']:>9} {a['client']:>9} {k['client']:>9.2f}")
        verdict = "meets" if mem["meets_target"] else "MISSES"
        print(f"  {'both':<10} {'':>9} {'':>9} {'':>9} {k['total']:>9.2f}"
              f"   ({verdict} the < {KIB_TARGET} KiB target)")
        print(f"  opened in {mem['open_seconds']} s; reported while held: relay conns "
              f"{mem['relay_conns_reported']}, links {mem['relay_links_reported']}; client conns "
              f"{mem['client_conns_reported']}, links {mem['client_links_reported']}")
        late = mem.get(f"closed_by_tunnel_after_{HOLD_CHECK_S}s")
        print(f"  closed by the tunnel while idle: {mem['closed_by_tunnel']} after 2 s, "
              f"{'-' if late is None else late} after {HOLD_CHECK_S} s")
    else:
        err = result["errors"].get("memory", "not run")
        print(f"memory: FAILED: {err}")
    if result["errors"]:
        print()
        print("errors:")
        for k, v in result["errors"].items():
            print(f"  {k}: {v.splitlines()[0]}")
    print()


# ---------------------------------------------------------------- main


def main():
    build = Path(sys.argv[1] if len(sys.argv) > 1 else "build")
    if not build.is_absolute() and not build.exists():
        build = ROOT / build  # relative to the repository, not the caller's cwd
    build = build.resolve()

    # Children inherit this: 1,000 relayed connections need ~2,000 fds per process.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    started = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    result = {
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "build": shown_path(build),
        "iperf3_seconds": SECONDS,
        "repeat": REPEAT,
        "machine": machine_info(),
        "binaries": binaries(build),
        "paths": {},
        "throughput": {},
        "memory": None,
        "errors": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="nave-bench-"))
    procs = Procs(tmp)
    failed = False
    try:
        log(f"temp dir {tmp}, build {build}")
        nv = Nave(procs, tmp, build)
        setups = {
            "direct": lambda: setup_direct(procs, tmp),
            "nave": lambda: setup_nave(procs, tmp, nv),
            "haproxy": lambda: setup_haproxy(procs, tmp),
            "ssh": lambda: setup_ssh(procs, tmp),
        }
        ready = {}
        for path in PATHS:
            log(f"setting up {path}")
            try:
                ready[path] = setups[path]()
                result["paths"][path] = ready[path]
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                result["errors"][path] = str(e)
                log(f"{path}: setup failed: {e}")
        if "nave" in ready:
            result["nave"] = {
                "server_ini": nv.ini.read_text(),
                "relay": nv.server_status.get("relay"),
            }
            log(f"memory: {CONNS} idle connections through the tunnel")
            try:
                result["memory"] = memory_test(nv)
                if not result["memory"]["held_ok"]:
                    result["errors"]["memory"] = result["memory"]["problem"]
                    log(f"memory test: {result['memory']['problem']}")
            except (BenchError, OSError) as e:
                result["errors"]["memory"] = str(e)
                log(f"memory test failed: {e}")
                for name in ("nave-relayd", "nave-client", "nave-controld"):
                    log(f"--- {name} log tail:\n{procs.logtail(name)}")

        samples = {p: {m[0]: [] for m in MODES} for p in ready}
        # Round-robin: every path sees the same drift of a shared machine.
        for rep in range(REPEAT):
            for key, extra, label in MODES:
                for path in PATHS:
                    if path not in ready:
                        continue
                    try:
                        v = iperf3(ready[path]["port"], extra)
                        log(f"round {rep + 1}/{REPEAT} {label:<12} {path:<8} {v:6.2f} Gbit/s")
                    except BenchError as e:
                        v = None
                        result["errors"].setdefault(f"{path} {label}", str(e))
                        log(f"round {rep + 1}/{REPEAT} {label:<12} {path:<8} FAILED: {e}")
                    samples[path][key].append(v)
                    time.sleep(0.3)
        result["throughput"] = summarize(samples)
        if "nave" in ready:
            cs = nv.client_status()
            result["nave"]["client_after"] = {k: cs.get(k) for k in ("links", "idle_links", "conns", "conns_total")}
            result["nave"]["transport"] = transport(nv.status().get("relay") or {}, cs)
            for name in ("nave-relayd", "nave-client", "nave-controld"):
                procs.check_alive(name)
    except BaseException as e:
        failed = True
        result["errors"]["harness"] = f"{type(e).__name__}: {e}"
        log(f"aborted: {type(e).__name__}: {e}")
        if not isinstance(e, (BenchError, KeyboardInterrupt)):
            raise
    finally:
        procs.stop_all()
        result["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        result["elapsed_seconds"] = round(time.monotonic() - started, 1)
        try:
            RESULTS.mkdir(parents=True, exist_ok=True)
            text = json.dumps(result, indent=2) + "\n"
            (RESULTS / f"{stamp}.json").write_text(text)
            tmpf = RESULTS / ".latest.json.tmp"
            tmpf.write_text(text)
            os.replace(tmpf, RESULTS / "latest.json")
        except OSError as e:
            log(f"writing results: {e}")
        if result["errors"] or os.environ.get("BENCH_KEEP"):
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(result)
    print(f"results: {RESULTS / (stamp + '.json')} ({result['elapsed_seconds']} s)")
    return 1 if failed or result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

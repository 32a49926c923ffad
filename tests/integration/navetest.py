# SPDX-License-Identifier: Apache-2.0
"""Helpers for the end-to-end tunnel tests: real nave-controld, nave-relayd and
nave processes on loopback, local services in Python threads, and byte-exact
transfers checked with SHA-256.

Every wait polls a condition with a deadline (the suite also runs against the
ASan build, so nothing may assume timing), and every socket has a timeout so
that a hang fails the test instead of blocking CI.
"""
import contextlib
import ctypes
import hashlib
import json
import os
import queue
import random
import select
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("NAVE_BUILD", ROOT / "build"))
CONTROLD = BUILD / "nave-controld"
RELAYD = BUILD / "nave-relayd"
NAVECTL = BUILD / "navectl"
NAVE = BUILD / "nave"

IO_TIMEOUT = 60.0  # every socket operation
START_TIMEOUT = 60.0  # a daemon or client becoming ready
STOP_TIMEOUT = 30.0  # SIGTERM to exit
CMD_TIMEOUT = 60.0  # one CLI invocation
CHUNK = 1 << 20

KiB = 1024
MiB = 1024 * 1024


class Failure(AssertionError):
    pass


def wait_for(cond, timeout, what, interval=0.05):
    """Polls cond() until it returns a true value (returned) or fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- kernel


_KTLS = None


def kernel_has_ktls():
    """True when the kernel takes the TLS ULP on a TCP socket (what kTLS needs):
    tried on a loopback connection, which also loads the tls module if it can."""
    global _KTLS
    if _KTLS is None:
        tcp_ulp = getattr(socket, "TCP_ULP", 31)
        with socket.socket() as lst:
            lst.bind(("127.0.0.1", 0))
            lst.listen(1)
            with socket.create_connection(lst.getsockname(), timeout=5) as c:
                peer, _ = lst.accept()
                peer.close()
                try:
                    c.setsockopt(socket.IPPROTO_TCP, tcp_ulp, b"tls")
                    _KTLS = True
                except OSError:
                    _KTLS = False
    return _KTLS


# ---------------------------------------------------------------- ports


_handed = []  # ports free_port gave out lately in this run


def free_port(lo=12000, hi=19999):
    """A port free on 127.0.0.1 for a listener, from lo..hi: outside the
    kernel's ephemeral range (32768-60999 by default), so no outgoing
    connection of the machine can take it between this probe and the daemon's
    bind (a port the kernel picked, bind 0, once went to a connection in that
    gap), and outside the windows port_window gives for ranges (23000-29999,
    30000-32700 for large ones); none of the last 200 this run gave out."""
    rnd = random.SystemRandom()
    for _ in range(500):
        port = rnd.randrange(lo, hi + 1)
        if port in _handed or not port_is_free(port):
            continue
        _handed.append(port)
        del _handed[:-200]
        return port
    raise Failure(f"no free port in {lo}-{hi}")


def port_is_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


_windows = []  # handed out by port_window in this run


def port_window(size=50, lo=23000, hi=29999):
    """A random window of `size` ports inside lo..hi that all look free and
    overlap no window handed out recently (steering = bpf binds none of them)."""
    rnd = random.SystemRandom()
    for _ in range(200):
        start = rnd.randrange(lo, hi - size + 2)
        end = start + size - 1
        if any(a <= end and start <= b for a, b in _windows[-20:]):
            continue
        if all(port_is_free(p) for p in range(start, start + size)):
            _windows.append((start, end))
            return start, end
    raise Failure(f"no free {size}-port window in {lo}-{hi}")


# ---------------------------------------------------------------- network namespaces

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def ip(*args, check=True):
    """Runs ip(8); raises Failure on a non-zero exit unless check is False."""
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and p.returncode:
        raise Failure(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p


@contextlib.contextmanager
def netns(*names):
    """Network namespaces of the test's own, loopback up, deleted afterwards
    with whatever was made in them; the test is skipped where they cannot be
    made (not root)."""
    import pytest

    made = []
    try:
        for ns in names:
            p = ip("netns", "add", ns, check=False)
            if p.returncode:
                pytest.skip(f"ip netns add: {p.stderr.strip()}")
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        for ns in made:
            ip("netns", "del", ns, check=False)


def in_ns(ns, fn):
    """fn() on a thread that entered network namespace ns: the sockets it
    makes belong to ns and can be used from any thread afterwards."""
    out = {}

    def body():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET):
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            out["v"] = fn()
        except BaseException as e:  # handed to the caller
            out["e"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["v"]


# ---------------------------------------------------------------- processes


def run(cmd, timeout=CMD_TIMEOUT, **kw):
    return subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def user_lines(stderr):
    """stderr without the daemon-style log lines (which start with a timestamp)."""
    out = []
    for line in stderr.splitlines():
        if len(line) > 20 and line[:4].isdigit() and line[4] == "-" and "T" in line[:20]:
            continue
        if line.startswith('{"time":'):
            continue
        out.append(line)
    return out


class Proc:
    """A long-running subprocess with stdout+stderr appended to a log file."""

    def __init__(self, name, cmd, log_path, cwd):
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.proc = None
        self.rc = None
        self.env = None  # None: the test's own environment

    def start(self):
        with open(self.log_path, "ab") as f:
            f.write(f"==== {time.strftime('%H:%M:%S')} start: {' '.join(self.cmd)}\n".encode())
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.cmd, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT, env=self.env,
        )
        self.rc = None
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def poll(self):
        return self.proc.poll()

    def output(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait(self, timeout):
        try:
            self.rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.log.close()
        return self.rc

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; returns the exit status (negative: died of a signal).
        A process that ignores SIGTERM is killed and reported."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            raise Failure(f"{self.name} (pid {self.proc.pid}) ignored SIGTERM for {timeout:.0f} s")
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and not self.log.closed:
            self.log.close()


def check_exit(name, rc, output=""):
    if rc is None:
        raise Failure(f"{name} did not exit")
    if rc < 0:
        raise Failure(f"{name} died of signal {-rc} ({signal.Signals(-rc).name})\n{tail(output)}")
    if rc != 0:
        raise Failure(f"{name} exited {rc} on SIGTERM\n{tail(output)}")


def tail(text, n=60):
    lines = text.splitlines()
    return "\n".join(lines[-n:])


# [datapath] steering of every test server: NAVE_STEERING=bpf|listeners|auto
# (make integration runs the suite once per mode; unset: the default, auto).
STEERING = os.environ.get("NAVE_STEERING", "")


def with_steering(extra_ini):
    """extra_ini with [datapath] steering = STEERING, unless it sets steering itself."""
    if not STEERING or "steering" in extra_ini:
        return extra_ini
    line = f"steering = {STEERING}\n"
    if "[datapath]\n" in extra_ini:
        return extra_ini.replace("[datapath]\n", "[datapath]\n" + line, 1)
    return extra_ini + "[datapath]\n" + line


class Server:
    """nave-controld + nave-relayd as real processes with their own dirs and ports."""

    def __init__(self, tmp, registry, extra_ini="", https=None, port_range=None, name="server"):
        self.dir = Path(tmp) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.https = https or free_port()
        self.http = free_port()
        while self.http == self.https:  # the kernel may hand the same free port out twice
            self.http = free_port()
        self.address = "127.0.0.1"  # where the listeners are (a test may move them)
        self.port_min, self.port_max = port_range or port_window()
        self.ini = self.dir / "server.ini"
        self.ini.write_text(
            "[server]\n"
            f"state_dir = {self.dir}/var\n"
            f"runtime_dir = {self.dir}/run\n"
            "log_level = debug\n"
            "[listen]\n"
            f"http = {self.http}\n"
            f"https = {self.https}\n"
            "address = 127.0.0.1\n"
            "[ports]\n"
            f"range = {self.port_min}-{self.port_max}\n"
            # tests run in the machine's own namespace: leave its sysctl alone
            # (test_reserve.py proves reserve = on in a namespace of its own)
            "reserve = off\n"
            "[tunnel]\n"
            # a test that stops its client a while sets a longer one itself
            + ("" if "heartbeat" in extra_ini else "heartbeat = 1s\n")
            + with_steering(extra_ini)
        )
        self.control_sock = self.dir / "run" / "control.sock"
        self.relay_sock = self.dir / "run" / "relay.sock"
        self.controld = Proc(
            "nave-controld", [CONTROLD, "--config", self.ini], self.dir / "controld.log", self.dir
        )
        self.relayd = Proc(
            "nave-relayd", [RELAYD, "--config", self.ini], self.dir / "relayd.log", self.dir
        )
        registry.append(self.controld)
        registry.append(self.relayd)
        self._fp = None

    # -- lifecycle

    def start(self):
        self.start_controld()
        self.start_relayd()
        return self

    def start_controld(self):
        self.controld.start()

        def ready():
            if not self.controld.alive():
                raise Failure(
                    f"nave-controld exited {self.controld.poll()}:\n{tail(self.controld.output())}"
                )
            if not (self.control_sock.exists() and self.relay_sock.exists()):
                return False
            rc, _, _ = self.navectl("status")
            return rc == 0

        wait_for(ready, START_TIMEOUT, "nave-controld's sockets")

    def start_relayd(self):
        self.relayd.start()
        self.wait_relay_connected()

        def listening():
            try:
                socket.create_connection((self.address, self.https), timeout=5).close()
                return True
            except OSError:
                return False

        wait_for(listening, START_TIMEOUT, f"the tunnel listener on {self.https}")

    def wait_relay_connected(self):
        def ready():
            if not self.relayd.alive():
                raise Failure(f"nave-relayd exited {self.relayd.poll()}:\n{tail(self.relayd.output())}")
            if not self.controld.alive():
                raise Failure(
                    f"nave-controld exited {self.controld.poll()}:\n{tail(self.controld.output())}"
                )
            rc, out, _ = self.navectl("status", json=None)
            if rc != 0:
                return False
            relay = json.loads(out)["relay"]
            return relay["connected"] and relay["pid"] == self.relayd.pid

        wait_for(ready, START_TIMEOUT, "nave-relayd connected to nave-controld")

    def stop_relayd(self):
        check_exit("nave-relayd", self.relayd.stop(), self.relayd.output())

    def stop_controld(self):
        check_exit("nave-controld", self.controld.stop(), self.controld.output())

    def restart_relayd(self):
        self.stop_relayd()
        self.start_relayd()

    def restart_controld(self):
        self.stop_controld()
        self.start_controld()
        self.wait_relay_connected()

    def stop(self):
        """Stops both daemons; raises on a bad exit after stopping both."""
        errors = []
        for name, p in (("nave-relayd", self.relayd), ("nave-controld", self.controld)):
            try:
                if p.proc is not None and p.rc is None:
                    check_exit(name, p.stop(), p.output())
            except Failure as e:
                errors.append(str(e))
        if errors:
            raise Failure("\n".join(errors))

    # -- navectl

    def api(self, method, path, body=None, raw_path=False):
        """One raw HTTP/1.1 request to controld's admin API on control.sock:
        (status, parsed JSON body). path is sent as it is (percent escapes
        included), so requests navectl would never send can be made."""
        data = b"" if body is None else _json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: nave\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(IO_TIMEOUT)
        try:
            s.connect(str(self.control_sock))
            s.sendall(head.encode("latin-1") + data)
            resp = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                resp += d
        finally:
            s.close()
        header, _, payload = resp.partition(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        if b"chunked" in header.lower():
            out, rest = b"", payload
            while rest:
                size, _, rest = rest.partition(b"\r\n")
                n = int(size, 16)
                if n == 0:
                    break
                out, rest = out + rest[:n], rest[n + 2:]
            payload = out
        return status, (_json.loads(payload) if payload.strip() else None)

    def navectl(self, *args, json=False):
        """json=True: asserts exit 0 and returns the parsed output.
        Otherwise (rc, stdout, stderr); json=None adds --json but does not parse."""
        cmd = [NAVECTL, "--config", self.ini]
        if json is not False:
            cmd.append("--json")
        p = run(cmd + list(args))
        if json is True:
            if p.returncode != 0:
                raise Failure(f"navectl {' '.join(map(str, args))}: exit {p.returncode}: {p.stderr}")
            return _json.loads(p.stdout)
        return p.returncode, p.stdout, p.stderr

    def fingerprint(self):
        if self._fp is None:
            self._fp = self.navectl("status", json=True)["tls_fingerprint"]
        return self._fp

    def registration(self):
        rc, out, err = self.navectl("registration", "create")
        if rc != 0:
            raise Failure(f"registration create: exit {rc}: {err}")
        return out.splitlines()[0].strip()

    def token(self, id=None):
        args = ["tokens", "create"] + (["--id", id] if id else [])
        return self.navectl(*args, json=True)

    def tunnel(self, tid):
        return self.navectl("tunnels", "show", tid, json=True)

    def ports(self, tunnel=None):
        args = ["ports", "ls"] + (["--tunnel", tunnel] if tunnel else [])
        return [p["port"] for p in self.navectl(*args, json=True)["items"]]


_json = json


class Client:
    """A nave client: configure, start (foreground process), rules, stop."""

    def __init__(self, server, tmp, registry, name="client"):
        self.server = server
        self.name = name
        self.dir = Path(tmp) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ini = self.dir / "client.ini"
        self.sock = Path(str(self.ini) + ".sock")
        self.proc = Proc("nave(" + name + ")", [NAVE, "start", "--config", self.ini],
                         self.dir / "nave.log", self.dir)
        registry.append(self.proc)
        self.tunnel_id = None

    def nave(self, *args, timeout=CMD_TIMEOUT):
        return run([NAVE] + list(args) + ["--config", self.ini], timeout=timeout)

    def configure(self, registration=None, key=None, id=None, fingerprint=None):
        if registration is None and key is None:
            registration = self.server.registration()
        args = ["configure", "--server", f"127.0.0.1:{self.server.https}"]
        args += ["--registration", registration] if registration else ["--key", key]
        args += ["--fingerprint", fingerprint or self.server.fingerprint()]
        if id:
            args += ["--id", id]
        p = self.nave(*args)
        if p.returncode != 0:
            raise Failure(f"nave configure: exit {p.returncode}: {p.stderr}")
        text = self.ini.read_text()
        if "log_level" in text:
            text = "\n".join(
                "log_level = debug" if line.replace(" ", "").startswith("log_level=") else line
                for line in text.splitlines()
            ) + "\n"
            self.ini.write_text(text)
        return self

    def start(self, wait_online=True):
        self.proc.start()
        if wait_online:
            self.wait_online()
        return self

    def status(self):
        p = self.nave("--json", "status")
        if p.returncode != 0:
            raise Failure(f"nave status: exit {p.returncode}: {p.stderr}")
        return json.loads(p.stdout)

    def wait_online(self, timeout=START_TIMEOUT):
        def online():
            if not self.proc.alive():
                raise Failure(f"nave start exited {self.proc.poll()}:\n{tail(self.proc.output())}")
            if not self.sock.exists():
                return False
            st = self.status()
            return st if st.get("state") == "online" else False

        st = wait_for(online, timeout, f"client {self.name} online")
        self.tunnel_id = st["tunnel_id"]
        return st

    def tcp_add_raw(self, to_port, port=None, name=None):
        args = ["tunnel", "tcp", "add", "--to", f"127.0.0.1:{to_port}"]
        if port is not None:
            args += ["--port", str(port)]
        if name is not None:
            args += ["--name", name]
        return self.nave(*args)

    def tcp_add(self, to_port, port=None, name=None):
        p = self.tcp_add_raw(to_port, port, name)
        if p.returncode != 0:
            raise Failure(f"nave tunnel tcp add: exit {p.returncode}: {p.stderr}")
        out = p.stdout.strip()
        if not out.isdigit():
            raise Failure(f"nave tunnel tcp add printed {p.stdout!r}, not a port")
        return int(out)

    def udp_add_raw(self, to_port, port=None, name=None):
        args = ["tunnel", "udp", "add", "--to", f"127.0.0.1:{to_port}"]
        if port is not None:
            args += ["--port", str(port)]
        if name is not None:
            args += ["--name", name]
        return self.nave(*args)

    def udp_add(self, to_port, port=None, name=None):
        """A UDP rule to 127.0.0.1:to_port; its public UDP port."""
        p = self.udp_add_raw(to_port, port, name)
        if p.returncode != 0:
            raise Failure(f"nave tunnel udp add: exit {p.returncode}: {p.stderr}")
        out = p.stdout.strip()
        if not out.isdigit():
            raise Failure(f"nave tunnel udp add printed {p.stdout!r}, not a port")
        return int(out)

    def stop(self):
        rc = self.proc.stop()
        check_exit(f"nave start ({self.name})", rc, self.proc.output())

    def wait_exit(self, timeout):
        rc = self.proc.wait(timeout)
        if rc is None:
            raise Failure(f"nave start ({self.name}) still running after {timeout:.0f} s")
        return rc


# ---------------------------------------------------------------- local services


def recv_exact(sock, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        r = sock.recv_into(view[got:], min(n - got, CHUNK))
        if r == 0:
            raise Failure(f"EOF after {got} of {n} bytes")
        got += r
    return bytes(buf)


def recv_hash(sock, n, h):
    """Receives exactly n bytes into hash h."""
    buf = bytearray(min(max(n, 1), CHUNK))
    view = memoryview(buf)
    got = 0
    while got < n:
        r = sock.recv_into(view, min(n - got, len(buf)))
        if r == 0:
            raise Failure(f"EOF after {got} of {n} bytes")
        h.update(view[:r])
        got += r
    return got


def recv_to_eof(sock, h):
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    got = 0
    while True:
        r = sock.recv_into(view)
        if r == 0:
            return got
        h.update(view[:r])
        got += r


def send_random(sock, n, h, midway=None):
    """Sends n pseudo-random bytes, hashing them; midway() runs once after
    about half of them went out."""
    sent = 0
    while sent < n:
        k = min(CHUNK, n - sent)
        data = random.randbytes(k)
        h.update(data)
        sock.sendall(data)
        sent += k
        if midway is not None and sent >= n // 2:
            midway()
            midway = None
    return sent


class Service:
    """A TCP server on 127.0.0.1 that runs handler(conn, service) per connection
    in its own thread. Results go to .results, handler exceptions to .errors."""

    def __init__(self, handler, name="svc"):
        self.handler = handler
        self.name = name
        self.results = queue.Queue()
        self.errors = []
        self.accepted = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name=f"{name}-accept", daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            c.settimeout(IO_TIMEOUT)
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            self.handler(c, self)
        except Exception as e:  # noqa: BLE001 - recorded for the test
            with self.lock:
                self.errors.append(repr(e))
        finally:
            c.close()

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def h_exchange(c, svc):
    """8-byte big-endian N, then N bytes from the peer; replies SHA-256 of what
    it got, then N random bytes of its own, then their SHA-256; half-closes and
    waits for the peer's EOF."""
    (n,) = struct.unpack(">Q", recv_exact(c, 8))
    h = hashlib.sha256()
    recv_hash(c, n, h)
    c.sendall(h.digest())
    own = hashlib.sha256()
    send_random(c, n, own)
    c.sendall(own.digest())
    c.shutdown(socket.SHUT_WR)
    rest = hashlib.sha256()
    extra = recv_to_eof(c, rest)
    svc.results.put(("exchange", n, extra))


def h_eof_reply(size):
    """Reads to EOF, then replies SHA-256(received) + `size` random bytes +
    their SHA-256, and closes."""

    def handler(c, svc):
        h = hashlib.sha256()
        n = recv_to_eof(c, h)
        c.sendall(h.digest())
        own = hashlib.sha256()
        send_random(c, size, own)
        c.sendall(own.digest())
        c.shutdown(socket.SHUT_WR)
        svc.results.put(("eof_reply", n, h.digest()))

    return handler


def h_greet(size):
    """Sends `size` random bytes + their SHA-256, half-closes, then reads to
    EOF and reports (received count, SHA-256) in results."""

    def handler(c, svc):
        own = hashlib.sha256()
        send_random(c, size, own)
        c.sendall(own.digest())
        c.shutdown(socket.SHUT_WR)
        h = hashlib.sha256()
        n = recv_to_eof(c, h)
        svc.results.put(("greet", n, h.digest()))

    return handler


def h_echo(c, svc):
    while True:
        d = c.recv(CHUNK)
        if not d:
            break
        c.sendall(d)
    c.shutdown(socket.SHUT_WR)


# ---------------------------------------------------------------- public side


def h_reset_midway(announce, before):
    """Announces `announce` bytes (8-byte length), sends `before` of them plus
    their SHA-256, waits for the peer's one-byte acknowledgement (so that they
    all arrived) and resets the connection (SO_LINGER 0)."""

    def handler(c, svc):
        c.sendall(struct.pack(">Q", announce))
        h = hashlib.sha256()
        send_random(c, before, h)
        c.sendall(h.digest())
        recv_exact(c, 1)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        svc.results.put(("reset_sent", before))

    return handler


def h_sink_outcome(c, svc):
    """Reads until EOF or a reset; reports which and how much."""
    h = hashlib.sha256()
    try:
        n = recv_to_eof(c, h)
        svc.results.put(("eof", n))
    except (ConnectionResetError, BrokenPipeError):
        svc.results.put(("reset", None))


def read_until_end(s):
    """Reads until EOF or a reset: (how, bytes read)."""
    got = 0
    try:
        while True:
            d = s.recv(CHUNK)
            if not d:
                return "eof", got
            got += len(d)
    except ConnectionResetError:
        return "reset", got


def half_close_public_first(port, size, reply):
    """Against h_eof_reply(reply): sends `size` bytes and shuts the write side;
    the service answers only after that EOF, with the SHA-256 of what it got,
    `reply` bytes of its own and their SHA-256, then EOF. Every byte checked.
    Returns the SHA-256 of what was sent (the service reports it too)."""
    with connect(port) as s:
        mine = hashlib.sha256()
        send_random(s, size, mine)
        s.shutdown(socket.SHUT_WR)
        if recv_exact(s, 32) != mine.digest():
            raise Failure(f"{size} B up: the service got other bytes")
        theirs = hashlib.sha256()
        recv_hash(s, reply, theirs)
        if recv_exact(s, 32) != theirs.digest():
            raise Failure(f"{reply} B down: other bytes arrived")
        if s.recv(1) != b"":
            raise Failure("bytes after the service's end")
    return mine.digest()


def half_close_service_first(port, svc, greet, size):
    """Against h_greet(greet): the service sends `greet` bytes and shuts its
    write side first; we see all of them and its EOF, then still send `size`
    bytes and shut ours; the service reports exactly those. Every byte checked."""
    with connect(port) as s:
        theirs = hashlib.sha256()
        recv_hash(s, greet, theirs)
        if recv_exact(s, 32) != theirs.digest():
            raise Failure(f"{greet} B down: other bytes arrived")
        if s.recv(1) != b"":
            raise Failure("bytes after the service's EOF")
        mine = hashlib.sha256()
        send_random(s, size, mine)
        s.shutdown(socket.SHUT_WR)
        got = svc.results.get(timeout=IO_TIMEOUT)
        if got != ("greet", size, mine.digest()):
            raise Failure(f"the service reported {got!r}")
        if s.recv(1) != b"":
            raise Failure("bytes after the end")


def download_until_reset(port, announce, before):
    """Against h_reset_midway(announce, before): reads the announced length and
    the `before` bytes (checked), acknowledges them, then reads until the end.
    Returns (how, bytes after them): ("reset", 0) when the reset came through."""
    with connect(port) as s:
        (n,) = struct.unpack(">Q", recv_exact(s, 8))
        if n != announce:
            raise Failure(f"announced {n}, not {announce}")
        h = hashlib.sha256()
        recv_hash(s, before, h)
        if recv_exact(s, 32) != h.digest():
            raise Failure(f"the {before} bytes before the reset differ")
        s.sendall(b"k")
        return read_until_end(s)


def working_tunnel(make_client, services, name="good"):
    """A started client with one exchange rule that already carried data."""
    c = make_client(name)
    s = services(h_exchange, name)
    port = c.tcp_add(s.port)
    exchange(port, 64 * KiB)
    return c, port


def connect(port, timeout=IO_TIMEOUT):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def exchange(port, n, midway=None, sock=None):
    """One connection through the tunnel against h_exchange: n bytes each way,
    both directions checked with SHA-256. sock: an already connected socket
    to use instead of connecting to 127.0.0.1:port."""
    with (sock or connect(port)) as s:
        s.sendall(struct.pack(">Q", n))
        mine = hashlib.sha256()
        send_random(s, n, mine, midway)
        got_sha = recv_exact(s, 32)
        if got_sha != mine.digest():
            raise Failure(f"service received different bytes than sent ({n} B)")
        theirs = hashlib.sha256()
        recv_hash(s, n, theirs)
        their_sha = recv_exact(s, 32)
        if their_sha != theirs.digest():
            raise Failure(f"received different bytes than the service sent ({n} B)")
        extra = s.recv(1)
        if extra != b"":
            raise Failure(f"extra data after the reply: {extra!r}")
    return True


def works(port, n=1000):
    """True when a small exchange passes byte-exact; raises otherwise."""
    return exchange(port, n)


def port_refuses(port, timeout=5.0):
    """True when the public port is closed: connect refused, or the connection
    is reset before any byte of the service arrives. False when it still
    accepts and relays; raises on a clean EOF/timeout (neither)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except OSError as e:
        raise Failure(f"connect to {port}: {e!r}")
    try:
        s.settimeout(timeout)
        try:
            s.sendall(struct.pack(">Q", 10) + b"0123456789")
            d = s.recv(64)
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        except socket.timeout:
            return False
        if d:
            return False
        return "eof"
    finally:
        s.close()


def wait_port_closed(port, timeout=30.0):
    """Polls until port_refuses(port) says refused/reset; returns which."""
    seen = []

    def closed():
        r = port_refuses(port)
        seen.append(r)
        return r if r in ("refused", "reset") else False

    try:
        return wait_for(closed, timeout, f"public port {port} to be closed", interval=0.2)
    except Failure as e:
        raise Failure(f"{e}; last outcomes: {seen[-5:]}")


# ---------------------------------------------------------------- raw link protocol

LINK_MAGIC = 0x4E56444C


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["nave/1"])
    return ctx


def tls_connect(port, timeout=IO_TIMEOUT):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = tls_context().wrap_socket(raw, server_hostname="localhost")
    s.settimeout(timeout)
    if s.selected_alpn_protocol() != "nave/1":
        raise Failure(f"ALPN: server selected {s.selected_alpn_protocol()!r}")
    return s


def msg_send(s, obj):
    body = json.dumps(obj).encode()
    s.sendall(struct.pack(">I", len(body)) + body)


def msg_recv(s):
    (n,) = struct.unpack(">I", recv_exact(s, 4))
    return json.loads(recv_exact(s, n))


def hello(token, mode="run"):
    return {
        "type": "hello",
        "version": 1,
        "mode": mode,
        "token": token,
        "hostname": "pytest",
        "os": "linux",
        "arch": "x86_64",
        "client_version": "pytest",
    }


def data_hello(tunnel_id, secret):
    tid = tunnel_id.encode()
    assert len(tid) < 32 and len(secret) == 32
    return struct.pack(">IHH", LINK_MAGIC, 1, 0) + tid.ljust(32, b"\0") + secret


def closed_by_peer(s, timeout=IO_TIMEOUT):
    """Reads until the peer closes; returns how (eof/reset/tls error), or
    raises when the link is still open after timeout."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            d = s.recv(65536)
            if not d:
                return "eof"
    except socket.timeout:
        raise Failure(f"the server did not close the link within {timeout:.0f} s")
    except ssl.SSLError as e:
        return f"tls: {e.reason or e}"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    raise Failure(f"the server kept sending for {timeout:.0f} s without closing")


class ControlLink:
    """A hand-made control link: HELLO with a token, WELCOME read; then a
    background thread keeps it alive with heartbeats (only that thread touches
    the socket until stop())."""

    def __init__(self, port, token):
        self.s = tls_connect(port)
        msg_send(self.s, hello(token))
        self.welcome = msg_recv(self.s)
        if self.welcome.get("type") != "welcome":
            raise Failure(f"HELLO answered with {self.welcome}")
        self.tunnel_id = self.welcome["tunnel_id"]
        self.secret = bytes.fromhex(self.welcome["link_secret"])
        self._stop = threading.Event()
        self._t = None

    def keepalive(self, interval=0.3):
        def beat():
            while not self._stop.wait(interval):
                try:
                    msg_send(self.s, {"type": "heartbeat"})
                except OSError:
                    return

        self._t = threading.Thread(target=beat, daemon=True)
        self._t.start()
        return self

    def stop(self):
        self._stop.set()
        if self._t:
            self._t.join(5)

    def close(self):
        self.stop()
        self.s.close()


class UdpService:
    """A DNS-style UDP service on 127.0.0.1 in a thread: each request datagram is answered
    by one datagram, its SHA-256 and the request itself (the sender checks every byte);
    count and sources are what it saw."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # the test's own sockets must not be where datagrams are lost
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sources = set()
        self.count = 0
        self.stop = False
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while not self.stop:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                d, a = self.sock.recvfrom(65535)
            except OSError:
                continue
            self.sources.add(a)
            self.count += 1
            try:
                self.sock.sendto(hashlib.sha256(d).digest() + d, a)
            except OSError:  # the answer to the largest datagram does not fit one
                pass

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()

# SPDX-License-Identifier: Apache-2.0
"""nave benchmark harness (make bench). Python 3 standard library only.

One run on 127.0.0.1 measures:
  1. iperf3 throughput (1 stream, 8 streams, 1 stream reverse), 3 samples each,
     median reported, for: direct, nave (a real controld + relayd + client
     tunnel), HAProxy in TCP mode, two HAProxy in series (a tunnel's shape without its
     crypto, relayed by HAProxy: a reference), OpenSSH `ssh -R` with
     aes128-gcm, and stunnel at both ends (TLS 1.3, AES-128-GCM); with the relay-side
     processes' CPU seconds per
     GiB. Samples are taken round-robin across the paths so that drift of a shared
     machine hits every path alike.
  2. Memory: VmRSS of nave-relayd and of the nave client before and after
     1,000 idle relayed connections, in KiB per connection for both ends.
  3. Connection rate, keep-alive off (bench/connrate.c: connect, 16-byte request,
     64-byte reply, close), 3 samples each, round-robin: direct, HAProxy, nave
     with relayd's [datapath] steering = bpf and = listeners (a stack each), ssh -R
     and stunnel.
  4. Port allocation: 1,000 ports through POST /api/v1/ports, each until it accepts
     a connection, and relayd's listening sockets after, in both steering modes.
  5. HTTP requests per second and latency (bench/httpload.c: keep-alive, keep-alive on
     one connection, and one connection per request), 3 samples each, round-robin:
     direct to the service, through the nave HTTP edge (routing by Host), nginx as a
     reverse proxy (server_name) and HAProxy in mode http (a Host ACL).
  6. HTTP keep-alive requests per second and latency (p50/p99/p999) through a plain
     TCP tunnel on every TCP path of part 1 (`nave tunnel tcp add`).
  7. The hold: 1,000, 5,000 and 10,000 idle connections on every TCP path (nave with
     its default limits), each echoing its own number, from 64 source addresses;
     served, refused, reset, closed, hung, open time and relay-side RSS.
 7b. The hold again in a QEMU guest (tests/ktls/guest.sh) whose root may raise
     RLIMIT_NOFILE, for the paths this machine's hard limit kept from 10,000.
  8. Connection records: a stand-in relayd (bench/recfeed.py) feeds a controld 10,000
     records/s for 10 s on relay.sock while the admin API is timed (p50/p99/max).
  9. The mesh: iperf3 through a TCP port map (a second client, relayd, the first client).
 10. UDP (bench/udpload.c): request/response datagrams per second and loss on one flow,
     64 outstanding, 64 and 1200 B: direct, a UDP rule's public port, a UDP port map.
 11. Logins: TLS 1.3 + HELLO (configure) + WELCOME to relayd's tunnel port from Python
     threads, with a token (client_auth off, and optional) and with an Ed25519 and a P-256
     certificate; bare TLS handshakes with client_auth off and optional; logins/s and
     relayd's + controld's CPU per 1000.
Results go to bench/results/<UTC timestamp>.json and bench/results/latest.json,
SVG plots (gnuplot) to bench/results/plots/, and a table to stdout. See bench/README.md.

Usage: bench.py [BUILD_DIR] [--quick]   (default: build; relative to the repository root)
       bench.py --replot [RESULT.json]   (the plots again from a run's JSON; default latest.json)
--quick (or BENCH_QUICK=1): 1 sample per path, 1 s samples, a hold of 1,000 only.
Environment: BENCH_SECONDS (iperf3 -t, default 5), BENCH_REPEAT (samples, 3), BENCH_CONNS
(default 1000), BENCH_CONNRATE_SECONDS (default 3), BENCH_CONNRATE_THREADS (2),
BENCH_CONNRATE_INFLIGHT (16 per thread), BENCH_CONNRATE_SOURCES (16), BENCH_ALLOC_PORTS (1000),
BENCH_HTTP_SECONDS (default 3), BENCH_HTTP_THREADS (2), BENCH_HTTP_CONNS (16 per thread),
BENCH_HTTP_SOURCES (16), BENCH_HOLD (levels, "1000,5000,10000"), BENCH_HOLD_SOURCES (64),
BENCH_HOLD_INFLIGHT (200), BENCH_HOLD_TIMEOUT (10 s), BENCH_HOLD_MAX_FAILURES (100),
BENCH_SKIP (comma-separated: throughput, memory, ssh, stunnel, connrate, alloc, http, tcphttp,
hold, guest, plots, records, mesh, udp, logins), BENCH_ONLY (comma-separated: the parts to run,
every other one skipped; e.g. BENCH_ONLY=records), BENCH_RECORDS_RATE (10000 records/s),
BENCH_RECORDS_SECONDS (10), BENCH_UDP_SECONDS (2), BENCH_UDP_WINDOW (64),
BENCH_UDP_SIZES ("64,1200"), BENCH_LOGINS (per sample, 300), BENCH_LOGIN_THREADS (4),
BENCH_LOGIN_ROUNDS (5), BENCH_KEEP=1 keeps the temporary directory with every log,
BENCH_GUEST_HOLD=always (part 7b even when the host held every level), BENCH_GUEST_MEM (MiB,
8192), BENCH_GUEST_TIMEOUT (s, 3000).
"""
import datetime
import errno
import hashlib
import json
import math
import os
import platform
import random
import resource
import selectors
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# --quick (or BENCH_QUICK=1): a ~2-minute look: 1 sample per path, 1 s per sample, a
# hold of 1,000 only. Explicit BENCH_* settings still win.
QUICK = "--quick" in sys.argv[1:] or os.environ.get("BENCH_QUICK", "") not in ("", "0")
SECONDS = int(os.environ.get("BENCH_SECONDS", "1" if QUICK else "5"))
CONNS = int(os.environ.get("BENCH_CONNS", "1000"))
# the ktls mode of both ends (auto: what the kernel offers; on/off to compare)
KTLS = os.environ.get("BENCH_KTLS", "auto")
if KTLS not in ("auto", "on", "off"):
    sys.exit(f"bench: BENCH_KTLS={KTLS!r} is not one of auto|on|off")
REPEAT = int(os.environ.get("BENCH_REPEAT", "1" if QUICK else "3"))
# Connection rate (bench/connrate.c): each sample CR_WARMUP s not counted, then CR_SECONDS
# counted; CR_THREADS loops x CR_INFLIGHT connections in flight, from CR_SOURCES
# addresses (127.0.0.2 and up; 0: all from 127.0.0.1).
CR_SECONDS = float(os.environ.get("BENCH_CONNRATE_SECONDS", "1" if QUICK else "3"))
CR_WARMUP = 0.5
CR_THREADS = int(os.environ.get("BENCH_CONNRATE_THREADS", "2"))
CR_INFLIGHT = int(os.environ.get("BENCH_CONNRATE_INFLIGHT", "16"))
CR_SOURCES = int(os.environ.get("BENCH_CONNRATE_SOURCES", "16"))
CR_PATHS = ["direct", "haproxy", "haproxy2", "nave-bpf", "nave-listeners", "ssh", "stunnel"]
CR_LABELS = {
    "direct": "direct",
    "haproxy": "HAProxy tcp",
    "haproxy2": "2x HAProxy",
    "nave-bpf": "nave bpf",
    "nave-listeners": "nave listeners",
    "ssh": "ssh -R gcm",
    "stunnel": "stunnel",
}
STEERINGS = ["bpf", "listeners"]
# Port allocation: this many ports, one tunnel, [ports] max_per_tunnel and range that size
ALLOC_PORTS = int(os.environ.get("BENCH_ALLOC_PORTS", "1000"))
# HTTP (bench/httpload.c): each sample HTTP_WARMUP s not counted, then HTTP_SECONDS
# counted; HTTP_THREADS loops x HTTP_CONNS connections (one request in flight each), in
# close mode from HTTP_SOURCES addresses (127.0.0.2 and up).
HTTP_SECONDS = float(os.environ.get("BENCH_HTTP_SECONDS", "1" if QUICK else "3"))
HTTP_WARMUP = 0.5
HTTP_THREADS = int(os.environ.get("BENCH_HTTP_THREADS", "2"))
HTTP_CONNS = int(os.environ.get("BENCH_HTTP_CONNS", "16"))
HTTP_SOURCES = int(os.environ.get("BENCH_HTTP_SOURCES", "16"))
HTTP_BODY = 128
HTTP_HOST = "bench.nave.test"
HTTP_PATHS = ["direct", "nave", "nginx", "haproxy"]
HTTP_LABELS = {"direct": "direct", "nave": "nave edge", "nginx": "nginx", "haproxy": "HAProxy http"}
# (mode key, httpload -m, threads, connections per thread, label)
HTTP_MODES = [
    ("keepalive", "keepalive", HTTP_THREADS, HTTP_CONNS, "keep-alive"),
    ("keepalive1", "keepalive", 1, 1, "keep-alive, 1 conn"),
    ("close", "close", HTTP_THREADS, HTTP_CONNS, "conn per request"),
]
# HTTP through a plain TCP tunnel (part 6): httpload keep-alive, HTTP_THREADS x HTTP_CONNS
# connections, through every TCP path to a service of its own
# The hold (part 7): HOLD_LEVELS connections opened and held on every TCP path, from
# HOLD_SOURCES addresses (127.0.0.2 and up), HOLD_INFLIGHT being opened at once; one
# that has no answer within HOLD_TIMEOUT s hung; a path stops opening after
# HOLD_MAX_FAILURES failed connections.
HOLD_LEVELS = sorted({int(x) for x in os.environ.get(
    "BENCH_HOLD", "1000" if QUICK else "1000,5000,10000").split(",") if x.strip()})
HOLD_SOURCES = int(os.environ.get("BENCH_HOLD_SOURCES", "64"))
HOLD_INFLIGHT = int(os.environ.get("BENCH_HOLD_INFLIGHT", "200"))
# in the guest (below) the CPU is emulated, several times slower: longer waits there
HOLD_SLOW = 4 if os.environ.get("BENCH_GUEST_CHILD", "") == "1" else 1
HOLD_TIMEOUT = float(os.environ.get("BENCH_HOLD_TIMEOUT", str(10 * HOLD_SLOW)))
HOLD_MAX_FAILURES = int(os.environ.get("BENCH_HOLD_MAX_FAILURES", "100"))
# after each level: wait, then read RSS and look for closed connections (in the guest past
# the 5 s after which links a burst left idle are closed)
HOLD_SETTLE_S = 2 if HOLD_SLOW == 1 else 8
# Parts to leave out (comma-separated)
PARTS = {"throughput", "memory", "ssh", "stunnel", "connrate", "alloc", "http", "tcphttp",
         "hold", "guest", "plots", "records", "mesh", "udp", "logins"}
SKIP = {x.strip() for x in os.environ.get("BENCH_SKIP", "").split(",") if x.strip()}
if SKIP - PARTS:
    sys.exit(f"bench: BENCH_SKIP={os.environ['BENCH_SKIP']!r}: parts are "
             + ", ".join(sorted(PARTS)))
# BENCH_ONLY: these parts alone (every other one skipped)
ONLY = {x.strip() for x in os.environ.get("BENCH_ONLY", "").split(",") if x.strip()}
if ONLY - PARTS:
    sys.exit(f"bench: BENCH_ONLY={os.environ['BENCH_ONLY']!r}: parts are "
             + ", ".join(sorted(PARTS)))
if ONLY:
    SKIP |= PARTS - ONLY
# Part 10 (bench/udpload.c): UDP request/response on one flow, UDP_WINDOW requests of each
# size in UDP_SIZES outstanding; each sample UDP_WARMUP s not counted, then UDP_SECONDS
# counted, at most UDP_MAX_REQUESTS sent; a request unanswered for UDP_LOSS_MS is lost.
UDP_SECONDS = float(os.environ.get("BENCH_UDP_SECONDS", "1" if QUICK else "2"))
UDP_WARMUP = 0.3
UDP_WINDOW = int(os.environ.get("BENCH_UDP_WINDOW", "64"))
UDP_SIZES = [int(x) for x in os.environ.get("BENCH_UDP_SIZES", "64,1200").split(",") if x.strip()]
if not UDP_SIZES or not all(16 <= x <= 65000 for x in UDP_SIZES) or not 1 <= UDP_WINDOW <= 4096:
    sys.exit("bench: BENCH_UDP_SIZES: 16-65000 each; BENCH_UDP_WINDOW: 1-4096")
UDP_LOSS_MS = 200
UDP_MAX_REQUESTS = 2_000_000
UDP_PATHS = ["direct", "nave", "nave-map"]
UDP_LABELS = {"direct": "direct", "nave": "public port", "nave-map": "port map"}
# Part 8: connection records fed to controld by a stand-in relayd (bench/recfeed.py)
RECORDS_RATE = int(os.environ.get("BENCH_RECORDS_RATE", "10000"))
RECORDS_SECONDS = float(os.environ.get("BENCH_RECORDS_SECONDS", "10"))
RECORDS_P99_MS = 50
# Part 11: logins (TLS + HELLO + WELCOME) and bare TLS handshakes to relayd's tunnel port,
# LOGIN_N per sample from LOGIN_THREADS threads; (key, stack, how, label) and (key,
# stack, label). Stacks: "off" has no client_ca, the others client_ca of a PKI of that
# key type (client_auth optional, its default then).
LOGIN_N = int(os.environ.get("BENCH_LOGINS", "100" if QUICK else "300"))
LOGIN_THREADS = int(os.environ.get("BENCH_LOGIN_THREADS", "4"))
# more rounds than the other parts' REPEAT: each is short, and the per-round ratios steady
# the figures of a shared machine
LOGIN_ROUNDS = int(os.environ.get("BENCH_LOGIN_ROUNDS", "1" if QUICK else "5"))
if not 1 <= LOGIN_N <= 100000 or not 1 <= LOGIN_THREADS <= 64 or not 1 <= LOGIN_ROUNDS <= 100:
    sys.exit("bench: BENCH_LOGINS: 1-100000; BENCH_LOGIN_THREADS: 1-64; BENCH_LOGIN_ROUNDS: 1-100")
LOGIN_TIMEOUT = 10
LOGIN_MODES = [
    ("token_off", "off", "token", "(a) token, client_auth off"),
    ("token_optional", "ed25519", "token", "(b) token, client_auth optional"),
    ("cert_ed25519", "ed25519", "cert", "(c) certificate, Ed25519"),
    ("cert_p256", "p256", "cert", "(d) certificate, P-256"),
]
HANDSHAKE_MODES = [("off", "off", "client_auth off"), ("optional", "ed25519", "client_auth optional")]
# The hold again in a QEMU guest (part 7b) when this machine's hard RLIMIT_NOFILE kept a
# path from its top level: the guest's root may raise the limit. BENCH_GUEST_CHILD=1 is
# the run inside the guest: the hold alone, its result printed on one marker line.
GUEST_CHILD = os.environ.get("BENCH_GUEST_CHILD", "") == "1"
GUEST_MARKER = "NAVE-BENCH-RESULT="
# BENCH_GUEST_HOLD=always: run it even when the host held every level
GUEST_HOLD = os.environ.get("BENCH_GUEST_HOLD", "auto")
GUEST_MEM_MIB = int(os.environ.get("BENCH_GUEST_MEM", "8192"))
GUEST_TIMEOUT = int(os.environ.get("BENCH_GUEST_TIMEOUT", "3000"))
if GUEST_CHILD:
    SKIP |= PARTS - {"hold", "ssh", "stunnel"}
KIB_TARGET = 32
HOLD_CHECK_S = 12  # the idle connections must still be up this long after opening
HOST = "127.0.0.1"

# (mode key, iperf3 extra arguments, label)
MODES = [
    ("p1", [], "1 stream"),
    ("p8", ["-P", "8"], "8 streams"),
    ("p1r", ["-R"], "1 stream -R"),
]
# haproxy2: two HAProxy processes in series, plaintext: a tunnel's shape (three TCP
# connections, two relay processes) without its cryptography, relayed by HAProxy: what
# that shape costs here, to read the tunnels against (parts 1, 3 and 6 only)
PATHS = ["direct", "nave", "haproxy", "haproxy2", "ssh", "stunnel"]
LABELS = {
    "direct": "direct",
    "nave": "nave tunnel",
    "haproxy": "HAProxy tcp",
    "haproxy2": "2x HAProxy",
    "ssh": "ssh -R gcm",
    "stunnel": "stunnel",
}
PLOTS = RESULTS / "plots"
HAPROXY_MAXCONN = 30000


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


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
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
    """One iperf3 run: (Gbit/s, bytes received)."""
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
    return j["end"]["sum_received"]["bits_per_second"] / 1e9, j["end"]["sum_received"]["bytes"]


# ---------------------------------------------------------------- paths


# the services every TCP path forwards to besides its iperf3 server: key -> (port key, label)
SVC_KEYS = ("connrate", "http", "echo")


def setup_direct(procs, tmp, svc):
    port = iperf3_server(procs, "iperf3-direct")
    out = {"port": port}
    for k in SVC_KEYS:
        if svc.get(k):
            out[f"{k}_port"] = svc[k]
    return out


def start_haproxy_tcp(procs, tmp, name, routes, maxconn):
    """One `haproxy -db` in tcp mode (nbthread 2, maxconn), a frontend per route
    {key: (listen port, destination port)}; returns once every port listens."""
    text = (
        "global\n"
        "    nbthread 2\n"
        f"    maxconn {maxconn}\n"
        "defaults\n"
        "    mode tcp\n"
        f"    maxconn {maxconn}\n"
        "    timeout connect 5s\n"
        "    timeout client 120s\n"
        "    timeout server 120s\n"
    )
    for k, (port, dest) in routes.items():
        text += (
            f"frontend fe_{k}\n"
            f"    bind {HOST}:{port}\n"
            f"    default_backend be_{k}\n"
            f"backend be_{k}\n"
            f"    server {k} {HOST}:{dest} maxconn {maxconn}\n"
        )
    cfg = tmp / f"{name}.cfg"
    cfg.write_text(text)
    run(["haproxy", "-c", "-f", cfg])
    p = procs.start(name, ["haproxy", "-db", "-f", cfg])
    for port, _ in routes.values():
        wait_until(f"{name} listening", lambda: p.poll() is not None or listening(port), 10)
    procs.check_alive(name)
    return p


def setup_haproxy(procs, tmp, svc):
    """HAProxy in tcp mode: one frontend to the iperf3 server and one to each service
    that runs (svc: connrate, http, echo -> port). maxconn raised to HAPROXY_MAXCONN (the
    hold keeps 10,000 connections, two sockets each)."""
    backend = iperf3_server(procs, "iperf3-haproxy")
    routes = {"iperf3": (free_port(), backend)}
    routes.update({k: (free_port(), svc[k]) for k in SVC_KEYS if svc.get(k)})
    p = start_haproxy_tcp(procs, tmp, "haproxy", routes, HAPROXY_MAXCONN)
    out = {"port": routes["iperf3"][0], "backend": backend, "pid": p.pid,
           "maxconn": HAPROXY_MAXCONN}
    for k, (port, _) in routes.items():
        if k != "iperf3":
            out[f"{k}_port"] = port
    return out


def setup_haproxy2(procs, tmp, svc):
    """Two HAProxy processes in tcp mode in series (front -> back -> iperf3 server, and the
    services of parts 3 and 6): no encryption, one hop more than HAProxy alone."""
    backend = iperf3_server(procs, "iperf3-haproxy2")
    targets = {"iperf3": backend}
    targets.update({k: svc[k] for k in ("http", "connrate") if svc.get(k)})
    mid = {k: free_port() for k in targets}
    front = {k: free_port() for k in targets}
    back = start_haproxy_tcp(procs, tmp, "haproxy2-back",
                             {k: (mid[k], targets[k]) for k in targets}, 4096)
    fr = start_haproxy_tcp(procs, tmp, "haproxy2-front",
                           {k: (front[k], mid[k]) for k in targets}, 4096)
    out = {"port": front["iperf3"], "backend": backend, "pids": [back.pid, fr.pid]}
    for k in targets:
        if k != "iperf3":
            out[f"{k}_port"] = front[k]
    return out


def setup_ssh(procs, tmp, svc):
    backend = iperf3_server(procs, "iperf3-ssh")
    d = tmp / "ssh"
    d.mkdir()
    hostkey, key = d / "host_ed25519", d / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostkey])
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    shutil.copy(d / "id_ed25519.pub", d / "authorized_keys")
    sshd_port = free_port()
    remote = free_port()
    remotes = {k: free_port() for k in SVC_KEYS if svc.get(k)}
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
    forwards = ["-R", f"{remote}:{HOST}:{backend}"]
    for k, port in remotes.items():
        forwards += ["-R", f"{port}:{HOST}:{svc[k]}"]
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
            *forwards,
            f"root@{HOST}",
        ],
    )
    for port in [remote, *remotes.values()]:
        wait_until("ssh -R port listening", lambda: c.poll() is not None or listening(port), 20)
    procs.check_alive("ssh")
    procs.check_alive("sshd")
    out = {"port": remote, "backend": backend, "sshd_port": sshd_port,
           "ssh_pid": c.pid, "sshd_pid": p.pid}
    for k, port in remotes.items():
        out[f"{k}_port"] = port
    return out


def self_signed(d):
    """A self-signed P-256 certificate and key for the stunnel server (openssl CLI)."""
    cert, key = d / "cert.pem", d / "key.pem"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=bench.nave.test"])
    return cert, key


def setup_stunnel(procs, tmp, svc):
    """stunnel at both ends, as nave's two crypto ends: a client-side stunnel accepts
    plain TCP on the public port and connects with TLS to a server-side stunnel, which
    accepts TLS and connects plain to the service. TLS 1.3 only, TLS_AES_128_GCM_SHA256,
    a self-signed P-256 certificate (not verified: verify = none, as nave's pin is not
    comparable); one service section per backend. Both in the foreground."""
    backend = iperf3_server(procs, "iperf3-stunnel")
    d = tmp / "stunnel"
    d.mkdir()
    cert, key = self_signed(d)
    backends = {"iperf3": backend, **{k: svc[k] for k in SVC_KEYS if svc.get(k)}}
    public = {k: free_port() for k in backends}
    tls = {k: free_port() for k in backends}
    common = ("sslVersionMin = TLSv1.3\n"
              "sslVersionMax = TLSv1.3\n"
              "ciphersuites = TLS_AES_128_GCM_SHA256\n")
    glob = "foreground = yes\npid =\ndebug = err\n"
    server, client = glob, glob
    for k in backends:
        server += (f"[{k}]\naccept = {HOST}:{tls[k]}\nconnect = {HOST}:{backends[k]}\n"
                   f"cert = {cert}\nkey = {key}\n" + common)
        client += (f"[{k}]\nclient = yes\naccept = {HOST}:{public[k]}\n"
                   f"connect = {HOST}:{tls[k]}\n" + common)
    (d / "server.conf").write_text(server)
    (d / "client.conf").write_text(client)
    ps = procs.start("stunnel-server", ["stunnel", d / "server.conf"])
    for port in tls.values():
        wait_until("stunnel (server) listening",
                   lambda: ps.poll() is not None or listening(port), 10)
    procs.check_alive("stunnel-server")
    pc = procs.start("stunnel-client", ["stunnel", d / "client.conf"])
    for port in public.values():
        wait_until("stunnel (client) listening",
                   lambda: pc.poll() is not None or listening(port), 10)
    procs.check_alive("stunnel-client")
    out = {"port": public["iperf3"], "backend": backend, "tls_port": tls["iperf3"],
           "client_pid": pc.pid, "server_pid": ps.pid}
    for k in SVC_KEYS:
        if k in public:
            out[f"{k}_port"] = public[k]
    return out


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def relay_pids(path, info):
    """The relay-side processes of a TCP path, {name: [pid, ...]}, looked up now (sshd
    forks a process per connection): what CPU per GiB and RSS per connection count."""
    if path == "nave":
        return {"relayd": [info["relayd_pid"]], "nave client": [info["client_pid"]]}
    if path == "haproxy":
        return {"haproxy": [info["pid"]]}
    if path == "haproxy2":
        return {"haproxy front": [info["pids"][1]], "haproxy back": [info["pids"][0]]}
    if path == "ssh":
        return {"ssh": [info["ssh_pid"]],
                "sshd": [info["sshd_pid"]] + descendants(info["sshd_pid"])}
    if path == "stunnel":
        return {"stunnel client": [info["client_pid"]], "stunnel server": [info["server_pid"]]}
    return {}


def cpu_of(pids):
    """CPU seconds of a list of pids (those gone count 0)."""
    t = 0.0
    for pid in pids:
        try:
            t += proc_cpu(pid)
        except (OSError, ValueError, IndexError):
            pass
    return t


class Nave:
    """One nave stack: controld, relayd and a registered, online client, under tmp/TAG.
    The memory test's stack (tag "nave") keeps relayd's default steering; the
    connection-rate stacks name theirs and hold a range of RANGE_SIZE ports."""

    def __init__(self, procs, tmp, build, tag="nave", steering=None, range_size=50,
                 max_per_tunnel=None, defaults=False, extra_ini="", client=True):
        # defaults: leave every tunnel and per-source limit at nave's default (the hold)
        self.defaults = defaults
        # extra_ini: more sections for server.ini (the logins' [tls]); client=False:
        # controld and relayd only, no client registered or started (part 11)
        self.extra_ini, self.with_client = extra_ini, client
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
        # controld's /metrics (relayd's UDP counters are there, not in navectl status)
        self.metrics = free_port() if self.tag == "nave" else None
        low, high = free_window(self.range_size)
        self.https, self.range, self.low, self.high = https, f"{low}-{high}", low, high
        self.http = http
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
            + (f"[metrics]\nlisten = {HOST}:{self.metrics}\n" if self.metrics else "")
            + "[ports]\n"
            f"range = {low}-{high}\n"
            + (f"max_per_tunnel = {self.max_per_tunnel}\n" if self.max_per_tunnel else "")
            # every connection of the memory test comes from 127.0.0.1
            + ("" if self.defaults else f"max_conns_per_source = {max(256, 2 * CONNS)}\n")
            # a benchmark leaves the machine's reserved ports alone
            + "reserve = off\n"
            # The memory test holds BENCH_CONNS relayed connections, one data link each.
            + ("" if self.defaults else f"[tunnel]\nmax_links = {max(1024, 2 * CONNS)}\n")
            + "[datapath]\n"
            f"ktls = {KTLS}\n"
            + (f"steering = {self.steering}\n" if self.steering else "")
            + self.extra_ini
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
        if not self.with_client:
            return
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
        if not self.defaults:
            lines.append(f"max_links = {min(4096, max(256, 2 * CONNS))}")
        lines += ["log_level = warn", f"ktls = {KTLS}"]
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


def setup_nave(procs, tmp, nv, svc):
    """The throughput and memory stack: a tunnel to its iperf3 server and one to the
    HTTP-over-TCP service (part 6). The connection rate has stacks of its own (part 3),
    and so has the hold (part 7: nave's default limits)."""
    nv.setup()
    backend = iperf3_server(procs, "iperf3-nave")
    port = nv.add_tcp(backend)
    out = {"port": port, "backend": backend, "relayd_pid": nv.relayd.pid,
           "client_pid": nv.client.pid}
    if svc.get("http"):
        out["http_port"] = nv.add_tcp(svc["http"])
    return out


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


# ---------------------------------------------------------------- connection rate


def build_connrate(tmp):
    """bench/connrate.c into the temp dir (no file of the tree is written: the guest's
    root is read-only). Returns the binary's path."""
    out = tmp / "connrate"
    cc = os.environ.get("CC", "cc")
    run([cc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-pthread",
         "-o", out, ROOT / "bench" / "connrate.c"], timeout=120)
    return out


def start_service(procs, binpath, mode="serve", name="connrate-service"):
    """The connection-rate service (connrate serve, one epoll thread per CPU), or the
    hold's echo service (connrate echo); its port and pid."""
    p = procs.start(name, [binpath, mode, "-a", HOST, "-t", os.cpu_count() or 2])

    def port():
        procs.check_alive(name)
        for line in procs.logtail(name, 5).splitlines():
            if line.startswith("port "):
                return int(line.split()[1])
        return None

    svc = wait_until(f"{name}'s port", port, 10)
    wait_until(f"{name} listening", lambda: listening(svc), 10)
    return {"port": svc, "pid": p.pid}


def proc_cpu(pid):
    """User + system CPU seconds of pid so far, all its threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu():
    """(all, idle) jiffies of the machine since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v), v[3] + v[4]


def connrate_sample(binpath, port, pids):
    """One connrate run against port; pids: the processes that serve it (their CPU is
    charged to the sample). Returns connrate's JSON with CPU figures added."""
    before = {n: cpu_of(v) for n, v in pids.items()}
    m0 = machine_cpu()
    argv = [binpath, "run", "-a", HOST, "-p", port, "-d", CR_SECONDS, "-w", CR_WARMUP,
            "-t", CR_THREADS, "-c", CR_INFLIGHT, "-s", CR_SOURCES, "-T", 5]
    try:
        p = run(argv, timeout=CR_WARMUP + CR_SECONDS + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"connrate to port {port} hung")
    m1 = machine_cpu()
    after = {n: cpu_of(v) for n, v in pids.items()}
    try:
        j = json.loads(p.stdout)
    except ValueError:
        raise BenchError(f"connrate printed no JSON: {p.stdout[-300:]}{p.stderr[-300:]}")
    done = j["ok"] + j["warmup_ok"] + j["late_ok"]  # every connection the CPU paid for
    cpu = {n: after[n] - before[n] for n in pids}
    cpu["connrate client"] = j["cpu_seconds"]["user"] + j["cpu_seconds"]["sys"]
    j["cpu_seconds_by_process"] = {n: round(v, 3) for n, v in cpu.items()}
    j["cpu_us_per_conn"] = {n: round(v * 1e6 / done, 1) if done else None for n, v in cpu.items()}
    span = m1[0] - m0[0]
    j["machine_busy"] = round(1 - (m1[1] - m0[1]) / span, 3) if span else None
    # Busy CPU that none of the path's processes (nor the client) used: kernel threads
    # (ksoftirqd), the harness, and whatever else runs on the machine. A few percent on
    # a quiet machine; much more says the sample was disturbed.
    busy_s = (span - (m1[1] - m0[1])) / os.sysconf("SC_CLK_TCK")
    j["cpu_not_on_path"] = round(max(0.0, 1 - sum(cpu.values()) / busy_s), 3) if busy_s > 0 else None
    # the client's share of all CPUs over the run (warm-up, measured window, drain)
    j["client_cpu_share"] = round(cpu["connrate client"] * os.sysconf("SC_CLK_TCK") / span, 3) \
        if span else None
    return j


def summarize_connrate(samples):
    out = {}
    for path, runs in samples.items():
        ok = [r for r in runs if r is not None]
        rates = [r["conns_per_s"] for r in ok]
        kinds = {}
        for r in ok:
            for k, v in r["failures_by_kind"].items():
                kinds[k] = kinds.get(k, 0) + v
        med = statistics.median(rates) if rates else None
        out[path] = {
            "samples_conns_per_s": [None if r is None else r["conns_per_s"] for r in runs],
            "median_conns_per_s": round(med, 1) if med is not None else None,
            "failures": sum(r["failures"] for r in ok),
            "failures_by_kind": kinds,
            "warmup_failures": sum(r["warmup_failures"] for r in ok),
            "latency_us_p50": statistics.median([r["latency_us"]["p50"] for r in ok]) if ok else None,
            "latency_us_p99": statistics.median([r["latency_us"]["p99"] for r in ok]) if ok else None,
            "latency_us_p999": statistics.median([r["latency_us"]["p999"] for r in ok]) if ok else None,
            "latency_hist_us": merge_hist(ok),
            "client_cpu_share": statistics.median([r["client_cpu_share"] for r in ok]) if ok else None,
            "machine_busy": statistics.median([r["machine_busy"] for r in ok]) if ok else None,
            "cpu_not_on_path": [r["cpu_not_on_path"] for r in ok],
            "cpu_us_per_conn": {
                n: round(statistics.median(v), 1)
                for n in (ok[0]["cpu_us_per_conn"] if ok else {})
                if (v := [r["cpu_us_per_conn"][n] for r in ok if r["cpu_us_per_conn"][n] is not None])
            },
            "runs": [None if r is None else {k: v for k, v in r.items() if k != "latency_hist_us"}
                     for r in runs],
        }
    med = {p: out[p]["median_conns_per_s"] for p in out}
    ratios = {}
    for a, b in (("nave-bpf", "haproxy"), ("nave-listeners", "haproxy"),
                 ("nave-bpf", "nave-listeners"), ("haproxy", "direct"), ("nave-bpf", "direct"),
                 ("nave-listeners", "direct"), ("nave-bpf", "ssh"), ("nave-bpf", "stunnel"),
                 ("ssh", "direct"), ("stunnel", "direct")):
        ratios[f"{a}/{b}"] = ratio(med.get(a), med.get(b))
    return {"paths": out, "ratios": ratios}


# ---------------------------------------------------------------- port allocation


def api_call(sock, method, path, body=None, timeout=10):
    """One request to controld's admin API on its Unix socket, as navectl makes it
    (Connection: close). Returns (HTTP status, parsed JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else b""
    req = (f"{method} {path} HTTP/1.1\r\nHost: nave\r\nAccept: application/json\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
           "Connection: close\r\n\r\n").encode() + data
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        s.sendall(req)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise BenchError(f"{method} {path}: no HTTP status line in {head[:80]!r}")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        body_b, rest = b"", rest
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            body_b, rest = body_b + rest[:n], rest[n + 2:]
        rest = body_b
    elif "content-length" in hdrs:
        rest = rest[:int(hdrs["content-length"])]
    try:
        return status, json.loads(rest) if rest.strip() else None
    except ValueError:
        raise BenchError(f"{method} {path}: HTTP {status}, body not JSON: {rest[:200]!r}")


def listen_ports(pid):
    """Local ports of pid's listening TCP sockets (/proc/PID/fd and /proc/net/tcp*),
    one entry per socket."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:
                    ports.append(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def relayd_listeners(nv):
    ports = listen_ports(nv.relayd.pid)
    return {"total": len(ports), "in_range": sum(nv.low <= p <= nv.high for p in ports)}


def alloc_test(nv, n):
    """n ports allocated one after the other with POST /api/v1/ports, each until it
    accepts a connection; relayd's listening sockets; then all released again."""
    tid = nv.client_status_online.get("tunnel_id")
    if not tid:
        raise BenchError(f"{nv.tag}: the client reports no tunnel_id")
    res = {"ports": n, "range": nv.range, "tunnel": tid,
           "listeners_before": relayd_listeners(nv)}
    per, api_s, ports = [], [], []
    refused = 0
    t0 = time.monotonic()
    for i in range(n):
        a = time.monotonic()
        status, body = api_call(nv.sock, "POST", "/api/v1/ports", {"tunnel": tid})
        if status != 201 or not isinstance(body, dict) or "port" not in body:
            raise BenchError(f"POST /api/v1/ports (#{i + 1}): HTTP {status}: {body}")
        b = time.monotonic()
        ports.append(body["port"])
        refused += accepts(body["port"], b + 10)
        per.append(time.monotonic() - a)
        api_s.append(b - a)
    total = time.monotonic() - t0
    res["listeners_after"] = relayd_listeners(nv)
    relay = nv.status().get("relay") or {}
    res["relay_steering"] = relay.get("steering")
    res["relay_workers"] = relay.get("workers")
    per_ms = sorted(x * 1000 for x in per)
    res.update({
        "total_seconds": round(total, 3),
        "ms_per_port": round(total * 1000 / n, 3),
        "ms_per_port_p50": round(per_ms[len(per_ms) // 2], 3),
        "ms_per_port_p99": round(per_ms[min(len(per_ms) - 1, int(len(per_ms) * 0.99))], 3),
        "ms_per_port_max": round(per_ms[-1], 3),
        "api_ms_mean": round(statistics.mean(api_s) * 1000, 3),
        "refused_probes": refused,
    })
    # and back: every port released, the range's listeners gone again
    t0 = time.monotonic()
    for port in ports:
        status, body = api_call(nv.sock, "DELETE", f"/api/v1/ports/{port}")
        if status != 200:
            raise BenchError(f"DELETE /api/v1/ports/{port}: HTTP {status}: {body}")
    res["release_seconds"] = round(time.monotonic() - t0, 3)
    base = res["listeners_before"]
    try:
        wait_until("the released ports' listeners closed",
                   lambda: relayd_listeners(nv) == base, 10, 0.1)
    except BenchError as e:
        res["problem"] = str(e)
    res["listeners_after_release"] = relayd_listeners(nv)
    return res


def setup_connrate_nave(procs, tmp, build, steering, service, part_alloc):
    """A nave stack steering with `steering` over an ALLOC_PORTS range: the allocation
    test first (on a fresh tunnel), then one tunnel to the connection-rate service."""
    nv = Nave(procs, tmp, build, tag=f"nave-{steering}", steering=steering,
              range_size=ALLOC_PORTS, max_per_tunnel=ALLOC_PORTS)
    nv.setup()
    got = (nv.server_status.get("relay") or {}).get("steering")
    if got != steering:
        raise BenchError(f"relayd with steering = {steering} reports steering {got}")
    alloc = alloc_test(nv, ALLOC_PORTS) if part_alloc else None
    port = nv.add_tcp(service) if service else None
    return nv, port, alloc


def connrate_part(result, procs, tmp, build, connrate_bin, service, ready):
    """Parts 3 and 4: a nave stack per steering mode (port allocation first), then the
    connection-rate rounds over direct, HAProxy and both stacks."""
    errors = result["errors"]
    stacks = {}
    if "alloc" not in SKIP:
        result["port_allocation"] = {}
    result["connrate_nave"] = {}
    for steering in STEERINGS:
        tag = f"nave-{steering}"
        log(f"{tag}: setting up (steering = {steering}, {ALLOC_PORTS}-port range)"
            + ("" if "alloc" in SKIP else f", allocating {ALLOC_PORTS} ports"))
        try:
            nvx, port, alloc = setup_connrate_nave(
                procs, tmp, build, steering, service and service["port"], "alloc" not in SKIP)
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            errors[tag] = str(e)
            log(f"{tag}: failed: {e}")
            for role in ("relayd", "client", "controld"):
                log(f"--- {tag}-{role} log tail:\n{procs.logtail(f'{tag}-{role}')}")
            continue
        stacks[tag] = (nvx, port)
        result["connrate_nave"][steering] = {
            "range": nvx.range, "port": port, "server_ini": nvx.ini.read_text(),
            "relay": nvx.server_status.get("relay"),
        }
        if alloc:
            result["port_allocation"][steering] = alloc
            if alloc.get("problem"):
                errors[f"alloc {steering}"] = alloc["problem"]
            log(f"{tag}: {ALLOC_PORTS} ports in {alloc['total_seconds']:.2f} s "
                f"({alloc['ms_per_port']:.2f} ms each), relayd listening sockets "
                f"{alloc['listeners_before']['total']} -> {alloc['listeners_after']['total']}, "
                f"released in {alloc['release_seconds']:.2f} s")
    if service is None:
        return
    targets = {"direct": (service["port"], {"service": [service["pid"]]})}
    for tag, (nvx, port) in stacks.items():
        targets[tag] = (port, {"relayd": [nvx.relayd.pid], "nave client": [nvx.client.pid],
                               "controld": [nvx.controld.pid], "service": [service["pid"]]})
    for path in ("haproxy", "haproxy2", "ssh", "stunnel"):
        if path in ready and ready[path].get("connrate_port"):
            targets[path] = (ready[path]["connrate_port"],
                             {**relay_pids(path, ready[path]), "service": [service["pid"]]})
    samples = {p: [] for p in CR_PATHS if p in targets}
    # Round-robin, as the throughput rounds
    for rep in range(REPEAT):
        for path in samples:
            port, pids = targets[path]
            try:
                j = connrate_sample(connrate_bin, port, pids)
                fails = j["failures"] + j["warmup_failures"]
                log(f"round {rep + 1}/{REPEAT} conn/s {path:<15} {j['conns_per_s']:9.0f}"
                    f"  p99 {j['latency_us']['p99'] / 1000:.1f} ms"
                    + (f"  {fails} FAILED ({j['first_failure']})" if fails else ""))
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                j = None
                errors.setdefault(f"connrate {path}", str(e))
                log(f"round {rep + 1}/{REPEAT} conn/s {path:<15} FAILED: {e}")
            samples[path].append(j)
            time.sleep(0.3)
    cr = summarize_connrate(samples)
    cr["settings"] = {
        "seconds": CR_SECONDS, "warmup_seconds": CR_WARMUP, "threads": CR_THREADS,
        "inflight_per_thread": CR_INFLIGHT, "source_addresses": CR_SOURCES,
        "request_bytes": 16, "reply_bytes": 64, "repeat": REPEAT,
        "service_threads": os.cpu_count(),
    }
    result["connrate"] = cr
    for path, m in cr["paths"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in m["failures_by_kind"].items() if v)
        msg = f"{m['failures']} failed connections ({kinds})" if m["failures"] else ""
        if m["warmup_failures"]:
            msg += ("; " if msg else "") + f"{m['warmup_failures']} failed during warm-up"
        if msg:
            errors.setdefault(f"connrate {path}", msg)
    for tag, (nvx, _) in stacks.items():
        def settled(nvx=nvx):
            r = nvx.status().get("relay") or {}
            return r if r.get("conns") == 0 else None

        # relayd pushes its counters to controld every 2 s: wait for the rounds' end to show
        try:
            st = wait_until(f"{tag}: relayd reporting no open connection", settled, 5, 0.25)
        except BenchError:
            st = nvx.status().get("relay") or {}
        cs = nvx.client_status()
        result["connrate_nave"][tag.split("-", 1)[1]]["after"] = {
            "client": {k: cs.get(k) for k in ("links", "idle_links", "conns", "conns_total")},
            "relay": {k: st[k] for k in ("links", "conns", "conns_total", "listeners",
                                         "refused_per_source", "pending_timeouts") if k in st},
        }
        for role in ("relayd", "client", "controld"):
            procs.check_alive(f"{tag}-{role}")


# ---------------------------------------------------------------- HTTP


def build_httpload(tmp):
    """bench/httpload.c into the temp dir, as connrate."""
    out = tmp / "httpload"
    cc = os.environ.get("CC", "cc")
    run([cc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-pthread",
         "-o", out, ROOT / "bench" / "httpload.c"], timeout=120)
    return out


def start_http_service(procs, binpath, name="http-service"):
    """httpload serve: one epoll thread per CPU, HTTP_BODY bytes per answer; its port."""
    p = procs.start(name, [binpath, "serve", "-a", HOST, "-t", os.cpu_count() or 2,
                           "-b", HTTP_BODY])

    def port():
        procs.check_alive(name)
        for line in procs.logtail(name, 5).splitlines():
            if line.startswith("port "):
                return int(line.split()[1])
        return None

    svc = wait_until("the HTTP service's port", port, 10)
    wait_until("the HTTP service listening", lambda: listening(svc), 10)
    return {"port": svc, "pid": p.pid}


def http_get(port, host=HTTP_HOST, timeout=5):
    """One GET / with Host: host on a new connection: the status code, or None."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                d = s.recv(4096)
                if not d:
                    break
                data += d
        return int(data.split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children(pid):
    """The pids whose parent is pid (/proc/*/stat)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


def setup_nginx(procs, tmp, service):
    """nginx as a reverse proxy routing by server_name, with a config, prefix, pid and
    logs of its own in the temp dir (never the system's service): the master in the
    foreground (daemon off) with 2 worker processes, as HAProxy has 2 threads and
    relayd 2 workers; upstream keep-alive to the service, as nginx is deployed."""
    d = tmp / "nginx"
    for sub in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / sub).mkdir(exist_ok=True)
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(
        "daemon off;\n"
        "master_process on;\n"
        "worker_processes 2;\n"
        f"pid {d}/nginx.pid;\n"
        f"error_log {d}/error.log warn;\n"
        "events {\n    worker_connections 8192;\n}\n"
        "http {\n"
        "    access_log off;\n"
        f"    client_body_temp_path {d}/body;\n"
        f"    proxy_temp_path {d}/proxy;\n"
        f"    fastcgi_temp_path {d}/fastcgi;\n"
        f"    uwsgi_temp_path {d}/uwsgi;\n"
        f"    scgi_temp_path {d}/scgi;\n"
        # the load's keep-alive connections are not cut every 1,000 requests (the
        # default), nor after the default 75 s
        "    keepalive_requests 1000000;\n"
        "    keepalive_timeout 120s;\n"
        "    upstream svc {\n"
        f"        server {HOST}:{service};\n"
        "        keepalive 64;\n"
        "    }\n"
        "    server {\n"
        f"        listen {HOST}:{port} default_server;\n"
        "        return 404;\n"
        "    }\n"
        "    server {\n"
        f"        listen {HOST}:{port};\n"
        f"        server_name {HTTP_HOST};\n"
        "        location / {\n"
        "            proxy_pass http://svc;\n"
        "            proxy_http_version 1.1;\n"
        "            proxy_set_header Connection \"\";\n"
        "            proxy_set_header Host $host;\n"
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "            proxy_set_header X-Forwarded-Proto $scheme;\n"
        "            proxy_set_header X-Forwarded-Host $host;\n"
        "            proxy_set_header X-Forwarded-Port $server_port;\n"
        "        }\n"
        "    }\n"
        "}\n"
    )
    argv = ["nginx", "-p", f"{d}/", "-e", d / "error.log", "-c", conf]
    run(argv + ["-t"])
    p = procs.start("nginx", argv)
    wait_until("nginx listening", lambda: p.poll() is not None or listening(port), 10)
    procs.check_alive("nginx")
    workers = wait_until("nginx's 2 workers", lambda: (w := children(p.pid)) and len(w) >= 2 and w,
                         10)
    return {"port": port, "pids": {"nginx": [p.pid] + workers}}


def setup_haproxy_http(procs, tmp, service):
    """HAProxy in mode http, routing by Host with an ACL (2 threads, as the tcp one)."""
    port = free_port()
    cfg = tmp / "haproxy-http.cfg"
    cfg.write_text(
        "global\n"
        "    nbthread 2\n"
        "    maxconn 8192\n"
        "defaults\n"
        "    mode http\n"
        "    option forwardfor\n"
        "    timeout connect 5s\n"
        "    timeout client 120s\n"
        "    timeout server 120s\n"
        "    timeout http-keep-alive 120s\n"
        "frontend fe_http\n"
        f"    bind {HOST}:{port}\n"
        f"    acl host_bench hdr(host) -i {HTTP_HOST} {HTTP_HOST}:{port}\n"
        "    http-request set-header X-Forwarded-Proto http\n"
        "    http-request set-header X-Forwarded-Host %[req.hdr(host)]\n"
        "    http-request set-header X-Forwarded-Port %[dst_port]\n"
        "    use_backend be_svc if host_bench\n"
        "backend be_svc\n"
        f"    server svc {HOST}:{service}\n"
    )
    run(["haproxy", "-c", "-f", cfg])
    p = procs.start("haproxy-http", ["haproxy", "-db", "-f", cfg])
    wait_until("haproxy (http) listening", lambda: p.poll() is not None or listening(port), 10)
    procs.check_alive("haproxy-http")
    return {"port": port, "pids": {"haproxy": [p.pid]}}


def setup_nave_http(procs, tmp, build, service):
    """A nave stack of its own (default steering) and `nave tunnel http add --domain
    HTTP_HOST --to` the service; the edge is relayd's [listen] http port."""
    nv = Nave(procs, tmp, build, tag="nave-http")
    nv.setup()
    nv.nave("tunnel", "http", "add", "--domain", HTTP_HOST, "--to", f"{HOST}:{service}")
    # the grant reaches relayd's workers a moment after the command returns
    wait_until(f"{HTTP_HOST} routed by the edge", lambda: http_get(nv.http) == 200, 10, 0.1)
    return nv, {"port": nv.http, "pids": {"relayd": [nv.relayd.pid], "nave client": [nv.client.pid]}}


def http_sample(binpath, port, mode, threads, conns, pids):
    """One httpload run against port; pids: {name: [pid, ...]} of the processes that
    serve it (their CPU is charged to the sample). httpload's JSON, CPU figures added."""
    before = {n: cpu_of(v) for n, v in pids.items()}
    m0 = machine_cpu()
    argv = [binpath, "run", "-a", HOST, "-p", port, "-H", HTTP_HOST, "-m", mode,
            "-b", HTTP_BODY, "-d", HTTP_SECONDS, "-w", HTTP_WARMUP, "-t", threads, "-c", conns,
            "-s", HTTP_SOURCES if mode == "close" else 0, "-T", 5]
    try:
        p = run(argv, timeout=HTTP_WARMUP + HTTP_SECONDS + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"httpload to port {port} hung")
    m1 = machine_cpu()
    after = {n: cpu_of(v) for n, v in pids.items()}
    try:
        j = json.loads(p.stdout)
    except ValueError:
        raise BenchError(f"httpload printed no JSON: {p.stdout[-300:]}{p.stderr[-300:]}")
    done = j["ok"] + j["warmup_ok"] + j["late_ok"]  # every request the CPU paid for
    cpu = {n: after[n] - before[n] for n in pids}
    cpu["load client"] = j["cpu_seconds"]["user"] + j["cpu_seconds"]["sys"]
    j["cpu_seconds_by_process"] = {n: round(v, 3) for n, v in cpu.items()}
    j["cpu_us_per_request"] = {n: round(v * 1e6 / done, 1) if done else None
                               for n, v in cpu.items()}
    span = m1[0] - m0[0]
    j["machine_busy"] = round(1 - (m1[1] - m0[1]) / span, 3) if span else None
    busy_s = (span - (m1[1] - m0[1])) / os.sysconf("SC_CLK_TCK")
    j["cpu_not_on_path"] = round(max(0.0, 1 - sum(cpu.values()) / busy_s), 3) if busy_s > 0 else None
    return j


def summarize_http(samples):
    out = {}
    for path, modes in samples.items():
        out[path] = {}
        for mode, runs in modes.items():
            ok = [r for r in runs if r is not None]
            rates = [r["requests_per_s"] for r in ok]
            kinds = {}
            for r in ok:
                for k, v in r["failures_by_kind"].items():
                    kinds[k] = kinds.get(k, 0) + v
            med = statistics.median(rates) if rates else None
            out[path][mode] = {
                "samples_requests_per_s": [None if r is None else r["requests_per_s"] for r in runs],
                "median_requests_per_s": round(med, 1) if med is not None else None,
                "failures": sum(r["failures"] for r in ok),
                "failures_by_kind": kinds,
                "warmup_failures": sum(r["warmup_failures"] for r in ok),
                "latency_us_p50": statistics.median([r["latency_us"]["p50"] for r in ok]) if ok else None,
                "latency_us_p99": statistics.median([r["latency_us"]["p99"] for r in ok]) if ok else None,
                "machine_busy": statistics.median([r["machine_busy"] for r in ok]) if ok else None,
                "cpu_not_on_path": [r["cpu_not_on_path"] for r in ok],
                "cpu_us_per_request": {
                    n: round(statistics.median(v), 1)
                    for n in (ok[0]["cpu_us_per_request"] if ok else {})
                    if (v := [r["cpu_us_per_request"][n] for r in ok
                              if r["cpu_us_per_request"][n] is not None])
                },
                "runs": [None if r is None else {k: v for k, v in r.items()
                                                 if k != "latency_hist_us"} for r in runs],
            }
    ratios = {}
    for mode, *_ in HTTP_MODES:
        med = {p: out.get(p, {}).get(mode, {}).get("median_requests_per_s") for p in HTTP_PATHS}
        p50 = {p: out.get(p, {}).get(mode, {}).get("latency_us_p50") for p in HTTP_PATHS}
        p99 = {p: out.get(p, {}).get(mode, {}).get("latency_us_p99") for p in HTTP_PATHS}
        r = {}
        for a, b in (("nave", "direct"), ("nave", "nginx"), ("nave", "haproxy"),
                     ("nginx", "direct"), ("haproxy", "direct")):
            r[f"{a}/{b}"] = ratio(med[a], med[b])
            r[f"{a}/{b} p50"] = ratio(p50[a], p50[b])
            r[f"{a}/{b} p99"] = ratio(p99[a], p99[b])
        ratios[mode] = r
    return {"paths": out, "ratios": ratios}


def http_part(result, procs, tmp, build, binpath=None):
    """Part 5: the HTTP service, the nave edge, nginx and HAProxy (mode http) in front
    of it, then the rounds: every mode on every path, round-robin."""
    errors = result["errors"]
    log("http: building bench/httpload.c, starting the HTTP service")
    try:
        binpath = binpath or build_httpload(tmp)
        service = start_http_service(procs, binpath)
    except (BenchError, OSError, subprocess.SubprocessError) as e:
        errors["http"] = str(e)
        log(f"http: {e}")
        return
    targets = {"direct": {"port": service["port"], "pids": {}}}
    info = {"service_port": service["port"]}
    for path, setup in (("nave", lambda: setup_nave_http(procs, tmp, build, service["port"])),
                        ("nginx", lambda: setup_nginx(procs, tmp, service["port"])),
                        ("haproxy", lambda: setup_haproxy_http(procs, tmp, service["port"]))):
        log(f"http: setting up {path}")
        try:
            t = setup()
            if path == "nave":
                nvh, t = t
                info["nave"] = {"server_ini": nvh.ini.read_text(),
                                "relay": nvh.server_status.get("relay")}
            targets[path] = t
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            errors[f"http {path}"] = str(e)
            log(f"http {path}: setup failed: {e}")
            if path == "nave":
                for role in ("relayd", "client", "controld"):
                    log(f"--- nave-http-{role} log tail:\n{procs.logtail(f'nave-http-{role}')}")
    for t in targets.values():
        t["pids"]["service"] = [service["pid"]]
    samples = {p: {m[0]: [] for m in HTTP_MODES} for p in HTTP_PATHS if p in targets}
    for rep in range(REPEAT):
        for key, mode, threads, conns, label in HTTP_MODES:
            for path in samples:
                t = targets[path]
                try:
                    j = http_sample(binpath, t["port"], mode, threads, conns, t["pids"])
                    fails = j["failures"] + j["warmup_failures"]
                    log(f"round {rep + 1}/{REPEAT} http {label:<18} {path:<8} "
                        f"{j['requests_per_s']:9.0f} req/s  p50 {j['latency_us']['p50'] / 1000:.2f}"
                        f" p99 {j['latency_us']['p99'] / 1000:.2f} ms"
                        + (f"  {fails} FAILED ({j['first_failure']})" if fails else ""))
                except (BenchError, OSError, subprocess.SubprocessError) as e:
                    j = None
                    errors.setdefault(f"http {path} {key}", str(e))
                    log(f"round {rep + 1}/{REPEAT} http {label:<18} {path:<8} FAILED: {e}")
                samples[path][key].append(j)
                time.sleep(0.3)
    h = summarize_http(samples)
    h["settings"] = {
        "seconds": HTTP_SECONDS, "warmup_seconds": HTTP_WARMUP, "threads": HTTP_THREADS,
        "conns_per_thread": HTTP_CONNS, "source_addresses_close": HTTP_SOURCES,
        "body_bytes": HTTP_BODY, "host": HTTP_HOST, "repeat": REPEAT,
        "service_threads": os.cpu_count(),
        "modes": {k: {"httpload_mode": m, "threads": t, "conns_per_thread": c, "label": lbl}
                  for k, m, t, c, lbl in HTTP_MODES},
    }
    h["setup"] = info
    result["http"] = h
    for path, modes in h["paths"].items():
        for mode, m in modes.items():
            kinds = ", ".join(f"{k} {v}" for k, v in m["failures_by_kind"].items() if v)
            msg = f"{m['failures']} failed requests ({kinds})" if m["failures"] else ""
            if m["warmup_failures"]:
                msg += ("; " if msg else "") + f"{m['warmup_failures']} failed during warm-up"
            if msg:
                errors.setdefault(f"http {path} {mode}", msg)
    if "nave" in targets:
        # how many data links carried the rounds (the client reuses them: no TLS
        # handshake per public connection while one is idle)
        cs = nvh.client_status()
        info["nave"]["client_after"] = {k: cs.get(k) for k in
                                        ("links", "idle_links", "conns", "conns_total")}
        for role in ("relayd", "client", "controld"):
            procs.check_alive(f"nave-http-{role}")


def print_http(result):
    h = result.get("http")
    if not h:
        if "http" not in SKIP:
            print()
            print(f"http: FAILED: {result['errors'].get('http', 'not run')}")
        return
    st = h["settings"]
    print()
    print(f"HTTP requests ({st['body_bytes']} B body, Host {st['host']}): {st['seconds']:g} s after "
          f"{st['warmup_seconds']:g} s warm-up, {st['repeat']} samples, median; keep-alive and "
          f"conn per request: {st['threads']} x {st['conns_per_thread']} connections")
    for key, _, threads, conns, label in HTTP_MODES:
        print(f"  {label:<19} {'req/s':>8} {'vs direct':>10} {'vs nginx':>9} {'vs haproxy':>11} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'failed':>7} {'busy':>5}   samples (other CPU)")
        med = {p: h["paths"].get(p, {}).get(key, {}).get("median_requests_per_s")
               for p in HTTP_PATHS}
        for path in HTTP_PATHS:
            m = h["paths"].get(path, {}).get(key)
            if m is None or m["median_requests_per_s"] is None:
                err = result["errors"].get(f"http {path}") or result["errors"].get(f"http {path} {key}")
                print(f"    {HTTP_LABELS[path]:<17} {'-':>8}   "
                      f"{'(' + err.splitlines()[0][:70] + ')' if err else ''}")
                continue
            v = m["median_requests_per_s"]

            def fmt(x):
                return "-" if x is None else f"{x:.2f}"

            other = iter(m["cpu_not_on_path"])
            smp = " ".join("fail" if x is None else f"{x:.0f} ({next(other) * 100:.0f}%)"
                           for x in m["samples_requests_per_s"])
            fails = m["failures"] + m["warmup_failures"]
            print(f"    {HTTP_LABELS[path]:<17} {v:>8.0f} {fmt(ratio(v, med['direct'])):>10} "
                  f"{fmt(ratio(v, med['nginx'])):>9} {fmt(ratio(v, med['haproxy'])):>11} "
                  f"{m['latency_us_p50'] / 1000:>7.2f} {m['latency_us_p99'] / 1000:>7.2f} "
                  f"{fails:>7} {m['machine_busy'] * 100:>4.0f}%   {smp}")
    print("  other CPU: share of the busy CPU that no process of the path used (a few % when"
          " quiet)")
    print("  CPU per request (us, median of samples; keep-alive, conn per request):")
    for path in HTTP_PATHS:
        ka = h["paths"].get(path, {}).get("keepalive", {}).get("cpu_us_per_request") or {}
        cl = h["paths"].get(path, {}).get("close", {}).get("cpu_us_per_request") or {}
        if ka or cl:
            parts = ", ".join(f"{n} {ka.get(n, 0):.0f} / {cl.get(n, 0):.0f}"
                              for n in dict.fromkeys(list(ka) + list(cl)))
            print(f"    {HTTP_LABELS[path]:<17} {parts}")


# ---------------------------------------------------------------- hold


IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
HOLD_KINDS = ("refused", "reset", "closed", "hung", "crossed", "other")
HOLD_AT_ONCE_S = 1  # a reset later than this after connect is a late reset, not a refusal


def source_addr(i, n):
    """The i-th connection's source address: 127.0.0.2 and up, n of them."""
    return socket.inet_ntoa(struct.pack("!I", 0x7F000002 + i % n))


def hold_open(port, first, n, held, st):
    """Opens connections first .. first + n - 1 to port, HOLD_INFLIGHT at a time, each
    from its source address (bound before connect): connect, send the connection's
    4-byte number, read it back. Served ones are appended to held; st counts the
    outcomes: served, refused (ECONNREFUSED, or a reset before the echo, within
    HOLD_AT_ONCE_S of the connect), reset (a reset later than that), closed (EOF
    before the echo), hung (no echo within HOLD_TIMEOUT s), crossed (another number
    came back), other. Stops starting new ones after HOLD_MAX_FAILURES failures."""
    sel = selectors.DefaultSelector()
    pending = {}  # socket -> [number, started, bytes read]
    nxt, end = first, first + n
    hard_deadline = time.monotonic() + (60 + n * 0.05) * HOLD_SLOW

    def fail(s, kind, detail):
        if kind == "refused" and time.monotonic() - pending[s][1] > HOLD_AT_ONCE_S:
            kind = "reset"
        st[kind] += 1
        st.setdefault("first_failure", f"connection {pending[s][0]}: {kind}: {detail}")
        sel.unregister(s)
        del pending[s]
        s.close()

    def failures():
        return sum(st[k] for k in HOLD_KINDS)

    try:
        while True:
            while len(pending) < HOLD_INFLIGHT and nxt < end and failures() < HOLD_MAX_FAILURES:
                i, nxt = nxt, nxt + 1
                s = socket.socket()
                s.setblocking(False)
                try:
                    if HOLD_SOURCES:
                        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                        s.bind((source_addr(i, HOLD_SOURCES), 0))
                    err = s.connect_ex((HOST, port))
                except OSError as e:
                    err = e.errno
                if err not in (0, errno.EINPROGRESS):
                    kind = "refused" if err in (errno.ECONNREFUSED, errno.ECONNRESET) else "other"
                    st[kind] += 1
                    st.setdefault("first_failure", f"connection {i}: {kind}: {os.strerror(err)}")
                    s.close()
                    continue
                pending[s] = [i, time.monotonic(), b""]
                sel.register(s, selectors.EVENT_WRITE)
            if not pending:
                break
            now = time.monotonic()
            if now > hard_deadline:
                for s in list(pending):
                    fail(s, "hung", f"the open of {n} passed its {hard_deadline - now:.0f} s bound")
                break
            for s, (i, t0, _) in list(pending.items()):
                if now - t0 > HOLD_TIMEOUT:
                    fail(s, "hung", f"no echo within {HOLD_TIMEOUT:g} s")
            for key, ev in sel.select(timeout=0.1):
                s = key.fileobj
                if s not in pending:
                    continue
                i = pending[s][0]
                if key.events == selectors.EVENT_WRITE:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        kind = "refused" if err in (errno.ECONNREFUSED, errno.ECONNRESET) else "other"
                        fail(s, kind, os.strerror(err))
                        continue
                    try:
                        s.send(struct.pack("!I", i))
                    except OSError as e:
                        fail(s, "refused" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "other",
                             str(e))
                        continue
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                try:
                    b = s.recv(4 - len(pending[s][2]))
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    fail(s, "refused" if e.errno == errno.ECONNRESET else "other", str(e))
                    continue
                if not b:
                    fail(s, "closed", f"EOF after {len(pending[s][2])} of 4 bytes")
                    continue
                pending[s][2] += b
                got = pending[s][2]
                if len(got) < 4:
                    continue
                if got != struct.pack("!I", i):
                    fail(s, "crossed", f"echo {struct.unpack('!I', got)[0]}")
                    continue
                sel.unregister(s)
                del pending[s]
                st["served"] += 1
                held.append(s)
    finally:
        for s in pending:
            s.close()
        sel.close()
    st["not_attempted"] += end - nxt


def rss_of(pids):
    out = {}
    for name, lst in pids.items():
        t = 0
        for pid in lst:
            try:
                t += rss_kib(pid)
            except (OSError, BenchError):
                pass
        out[name] = t
    return out


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


# fds per held connection in the path's busiest process, expected before the first
# level: a proxy that accepts and connects in one process (HAProxy, either stunnel)
# needs two; after a level, what the processes' fd counts grew by is used instead
FDS_PER_CONN = {"direct": 1, "nave": 1, "haproxy": 2, "ssh": 1, "stunnel": 2}
FD_MARGIN = 64


def fds_of(pids):
    """The fd count of every relay-side process, {pid: count}."""
    return {pid: fd_count(pid) for lst in pids.values() for pid in lst}


def hold_path(path, port, pids_fn, nave_stack=None, fd_limit=None):
    """The hold on one path: HOLD_LEVELS connections opened in steps and held; after each
    step HOLD_SETTLE_S s of idling, then the relay-side RSS and how many of the held
    connections the path closed meanwhile. pids_fn() gives the relay-side processes.
    A level that would take one of the path's processes (or the harness) past fd_limit
    (RLIMIT_NOFILE) is not run: recorded under limited, not a failure of the path.
    Whether it would is judged from the fds each process gained per connection held so
    far (FDS_PER_CONN before the first level)."""
    held = []
    res = {"port": port, "levels": [], "ok": True}
    st = {k: 0 for k in ("served", *HOLD_KINDS, "not_attempted")}
    try:
        warm = []
        hold_open(port, 10_000_000, 16, warm, dict(st))  # one-time allocations
        for s in warm:
            s.close()
        time.sleep(1)
        base = rss_of(pids_fn())
        res["rss_kib_before"] = base
        fd0 = fds_of(pids_fn())
        fd0[os.getpid()] = fd_count(os.getpid())
        res["fds_before"] = sum(fd0.values())
        for level in HOLD_LEVELS:
            if fd_limit is not None:
                # the busiest process at this level, at the growth per connection seen so far
                fnow = fds_of(pids_fn())
                fnow[os.getpid()] = fd_count(os.getpid())
                worst, per = 0, FDS_PER_CONN[path]
                for pid, n0 in fd0.items():
                    g = ((fnow.get(pid, n0) - n0) / len(held)) if held else (
                        1 if pid == os.getpid() else FDS_PER_CONN[path])
                    need = n0 + g * level + FD_MARGIN
                    if need > worst:
                        worst, per = need, g
                if worst > fd_limit:
                    res["limited"] = (
                        f"{level:,} not run: at {per:.2f} fds per connection one process would"
                        f" need ~{worst:,.0f} fds, more than RLIMIT_NOFILE ({fd_limit:,}, the"
                        " hard limit here) allows")
                    break
            t0 = time.monotonic()
            hold_open(port, len(held) + sum(st[k] for k in HOLD_KINDS), level - len(held), held, st)
            lv = {"connections": level, "held": len(held),
                  "open_seconds": round(time.monotonic() - t0, 2)}
            lv.update({k: v for k, v in st.items()})
            time.sleep(HOLD_SETTLE_S)
            rss = rss_of(pids_fn())
            lv["rss_kib"] = rss
            lv["rss_kib_total"] = sum(rss.values())
            lv["kib_per_conn"] = (round((sum(rss.values()) - sum(base.values())) / len(held), 2)
                                  if held and rss else None)
            lv["closed_while_idle"] = closed_count(held) if held else 0
            fnow = fds_of(pids_fn())
            lv["fds"] = sum(fnow.values())
            lv["fds_per_conn_max"] = round(max(
                ((n - fd0.get(pid, n)) / len(held) for pid, n in fnow.items()), default=0), 2) \
                if held else None
            if nave_stack is not None:
                cs, rs = nave_stack.client_status(), nave_stack.status().get("relay") or {}
                lv["client_reported"] = {k: cs.get(k) for k in ("conns", "links", "idle_links")}
                lv["relay_reported"] = {k: rs.get(k) for k in ("conns", "links",
                                                              "refused_per_source")}
            res["levels"].append(lv)
            problems = []
            bad = {k: st[k] for k in HOLD_KINDS if st[k]}
            if bad:
                problems.append(f"{len(held)} of {level} served; "
                                + ", ".join(f"{k} {v}" for k, v in bad.items())
                                + (f", {st['not_attempted']} not attempted" if st["not_attempted"]
                                   else "") + f" ({st.get('first_failure')})")
            if lv["closed_while_idle"]:
                problems.append(f"{lv['closed_while_idle']} of {len(held)} held connections closed"
                                f" by the path within {HOLD_SETTLE_S} s")
            log(f"hold {path:<8} {level:>6}: {len(held)} held, opened in {lv['open_seconds']} s, "
                f"RSS {lv['rss_kib_total']} KiB"
                + (f" ({lv['kib_per_conn']} KiB/conn)" if lv["kib_per_conn"] is not None else "")
                + (f"; FAILED: {'; '.join(problems)}" if problems else ""))
            if problems:
                res["ok"] = False
                res["problem"] = f"at {level}: " + "; ".join(problems)
                break
    finally:
        t0 = time.monotonic()
        for s in held:
            s.close()
        res["close_seconds"] = round(time.monotonic() - t0, 2)
    return res


def hold_part(result, procs, tmp, build, ready, echo):
    """Part 7: the hold on every TCP path; nave on a stack of its own with nave's
    default limits."""
    errors = result["errors"]
    targets = {}
    for path in PATHS:
        if path == "nave":
            continue
        if path in ready and ready[path].get("echo_port"):
            targets[path] = (ready[path]["echo_port"],
                             lambda path=path: relay_pids(path, ready[path]), None)
    log("hold: setting up nave-hold (nave's default tunnel and per-source limits)")
    nvh = None
    try:
        nvh = Nave(procs, tmp, build, tag="nave-hold", defaults=True)
        nvh.setup()
        port = nvh.add_tcp(echo["port"])
        info = {"relayd_pid": nvh.relayd.pid, "client_pid": nvh.client.pid}
        targets["nave"] = (port, lambda: relay_pids("nave", info), nvh)
    except (BenchError, OSError, subprocess.SubprocessError) as e:
        errors["hold nave"] = f"setup: {e}"
        log(f"hold nave: setup failed: {e}")
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    out = {"settings": {"levels": HOLD_LEVELS, "source_addresses": HOLD_SOURCES,
                        "inflight": HOLD_INFLIGHT, "answer_timeout_seconds": HOLD_TIMEOUT,
                        "max_failures": HOLD_MAX_FAILURES, "settle_seconds": HOLD_SETTLE_S,
                        "haproxy_maxconn": HAPROXY_MAXCONN, "rlimit_nofile": list(nofile),
                        "fds_per_conn": FDS_PER_CONN},
           "paths": {}}
    if nvh is not None and nvh.client is not None:
        out["nave"] = {"server_ini": nvh.ini.read_text(), "client_ini": redact(nvh.cini.read_text())}
    result["hold"] = out
    only = [p for p in os.environ.get("BENCH_HOLD_PATHS", "").split(",") if p]
    for path in PATHS:
        if path not in targets or (only and path not in only):
            continue
        port, pids_fn, stack = targets[path]
        fd0 = fd_count(echo["pid"])
        try:
            r = hold_path(path, port, pids_fn, stack, nofile[0])
        except (BenchError, OSError) as e:
            r = {"ok": False, "problem": f"{type(e).__name__}: {e}", "levels": []}
            log(f"hold {path}: {r['problem']}")
        out["paths"][path] = r
        if not r["ok"]:
            errors[f"hold {path}"] = r["problem"]
        if r.get("limited"):
            log(f"hold {path}: {r['limited']}")
        # the path's connections to the echo service close behind ours
        try:
            wait_until("the echo service's connections closed",
                       lambda: fd_count(echo["pid"]) <= fd0, 20, 0.2)
        except BenchError:
            r["echo_conns_left"] = fd_count(echo["pid"]) - fd0
        if stack is not None:
            for role in ("relayd", "client", "controld"):
                try:
                    procs.check_alive(f"nave-hold-{role}")
                except BenchError as e:
                    errors.setdefault("hold nave", str(e).splitlines()[0])
                    r["ok"] = False


def hold_guest_part(result, build, paths):
    """Part 7b: the hold again, in a QEMU guest (tests/ktls/guest.sh: Debian's kernel, the
    host's root read-only, this build) whose root may raise RLIMIT_NOFILE, when this
    machine's hard limit kept a path from the top level: those paths (the others reached it
    on the host; ssh -R, whose sshd is one thread, would take minutes per thousand under
    emulation). The guest's CPU is emulated (TCG): its open times are not comparable with
    the host's; memory and what was held are."""
    runner = ROOT / "tests" / "ktls" / "guest.sh"
    env = {k: v for k, v in os.environ.items()
           if k.startswith("BENCH_") and k not in ("BENCH_SKIP", "BENCH_GUEST_CHILD")}
    env["BENCH_HOLD"] = ",".join(map(str, HOLD_LEVELS))
    env["BENCH_GUEST_CHILD"] = "1"
    env["BENCH_SKIP"] = ",".join(sorted((SKIP & {"ssh", "stunnel"})
                                        | ({"ssh", "stunnel"} - set(paths))))
    env["BENCH_HOLD_PATHS"] = ",".join(paths)
    fd, name = tempfile.mkstemp(prefix="nave-bench-guest-skip-")
    os.close(fd)
    skipped = Path(name)
    argv = [str(runner), "--timeout", str(GUEST_TIMEOUT), "--mem", str(GUEST_MEM_MIB)]
    for k, v in sorted(env.items()):
        argv += ["--env", f"{k}={v}"]
    argv += ["/usr/bin/python3", str(ROOT / "bench" / "bench.py"), str(build)]
    log(f"hold: again in a QEMU guest ({GUEST_MEM_MIB} MiB, file limit raised there),"
        f" up to {GUEST_TIMEOUT} s")
    t0 = time.monotonic()
    child = p = None
    parse_error = None
    try:
        p = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace",
                             env=dict(os.environ, NAVE_GUEST_SKIPPED=str(skipped)))
        for line in p.stdout:
            line = line.rstrip("\n")
            i = line.find(GUEST_MARKER)
            if i >= 0:
                try:
                    child = json.loads(line[i + len(GUEST_MARKER):])
                except ValueError as e:
                    parse_error = f"the guest's result does not parse: {e}"
            elif line.startswith(("[bench", "guest:")):
                log(f"  | {line}")
        rc = p.wait()
        why = skipped.read_text().strip() if skipped.exists() else ""
    except OSError as e:
        result["errors"]["hold guest"] = f"cannot run {runner}: {e}"
        return
    finally:
        skipped.unlink(missing_ok=True)
        if p is not None and p.poll() is None:
            # interrupted: guest.sh, its `timeout` (a process group of its own) and QEMU
            for pid in [p.pid] + descendants(p.pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    took = round(time.monotonic() - t0, 1)
    if rc == 77:
        result["hold_guest"] = {"skipped": why or "the guest cannot run here"}
        log(f"hold guest: not run: {result['hold_guest']['skipped']}")
        return
    if child is None:
        result["errors"]["hold guest"] = parse_error or (
            f"the guest run exited {rc} after {took} s without a result")
        return
    m = child.get("machine") or {}
    result["hold_guest"] = {
        "where": f"QEMU TCG, {m.get('nproc', '?')} vCPU, {GUEST_MEM_MIB} MiB, kernel "
                 f"{m.get('kernel', '?')}, RLIMIT_NOFILE {child.get('rlimit_nofile')}",
        "exit": rc, "seconds": took, "machine": m, "rlimit_nofile": child.get("rlimit_nofile"),
        "hold": child.get("hold"), "errors": child.get("errors") or {}}
    for k, v in (child.get("errors") or {}).items():
        result["errors"][f"guest: {k}"] = v


# ---------------------------------------------------------------- HTTP over TCP paths


def merge_hist(runs):
    """The latency histograms of runs summed: [[upper edge us, count], ...]."""
    h = {}
    for r in runs:
        for edge, n in r.get("latency_hist_us") or []:
            h[edge] = h.get(edge, 0) + n
    return [[e, h[e]] for e in sorted(h)]


def tcphttp_part(result, binpath, service, ready):
    """Part 6: HTTP requests per second through each TCP path (keep-alive), round-robin."""
    errors = result["errors"]
    targets = {}
    for path in PATHS:
        if path in ready and ready[path].get("http_port"):
            targets[path] = ready[path]["http_port"]
    samples = {p: [] for p in targets}
    for rep in range(REPEAT):
        for path, port in targets.items():
            pids = relay_pids(path, ready[path])
            pids["service"] = [service["pid"]]
            try:
                j = http_sample(binpath, port, "keepalive", HTTP_THREADS, HTTP_CONNS, pids)
                fails = j["failures"] + j["warmup_failures"]
                log(f"round {rep + 1}/{REPEAT} http over tcp {path:<8} {j['requests_per_s']:9.0f}"
                    f" req/s  p50 {j['latency_us']['p50'] / 1000:.2f} p99 "
                    f"{j['latency_us']['p99'] / 1000:.2f} p999 {j['latency_us']['p999'] / 1000:.2f} ms"
                    + (f"  {fails} FAILED ({j['first_failure']})" if fails else ""))
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                j = None
                errors.setdefault(f"tcphttp {path}", str(e))
                log(f"round {rep + 1}/{REPEAT} http over tcp {path:<8} FAILED: {e}")
            samples[path].append(j)
            time.sleep(0.3)
    out = {}
    for path, runs in samples.items():
        ok = [r for r in runs if r is not None]
        kinds = {}
        for r in ok:
            for k, v in r["failures_by_kind"].items():
                kinds[k] = kinds.get(k, 0) + v
        rates = [r["requests_per_s"] for r in ok]
        out[path] = {
            "samples_requests_per_s": [None if r is None else r["requests_per_s"] for r in runs],
            "median_requests_per_s": round(statistics.median(rates), 1) if rates else None,
            "failures": sum(r["failures"] for r in ok),
            "warmup_failures": sum(r["warmup_failures"] for r in ok),
            "failures_by_kind": kinds,
            **{f"latency_us_{q}": statistics.median([r["latency_us"][q] for r in ok]) if ok else None
               for q in ("p50", "p99", "p999")},
            "latency_hist_us": merge_hist(ok),
            "machine_busy": statistics.median([r["machine_busy"] for r in ok]) if ok else None,
            "cpu_not_on_path": [r["cpu_not_on_path"] for r in ok],
            "cpu_us_per_request": {
                n: round(statistics.median(v), 1)
                for n in (ok[0]["cpu_us_per_request"] if ok else {})
                if (v := [r["cpu_us_per_request"][n] for r in ok
                          if r["cpu_us_per_request"][n] is not None])
            },
            "runs": [None if r is None else {k: v for k, v in r.items() if k != "latency_hist_us"}
                     for r in runs],
        }
        m = out[path]
        msg = ""
        if m["failures"]:
            msg = f"{m['failures']} failed requests (" + ", ".join(
                f"{k} {v}" for k, v in kinds.items() if v) + ")"
        if m["warmup_failures"]:
            msg += ("; " if msg else "") + f"{m['warmup_failures']} failed during warm-up"
        if msg:
            errors.setdefault(f"tcphttp {path}", msg)
    result["tcphttp"] = {
        "settings": {"mode": "keepalive", "seconds": HTTP_SECONDS, "warmup_seconds": HTTP_WARMUP,
                     "threads": HTTP_THREADS, "conns_per_thread": HTTP_CONNS,
                     "body_bytes": HTTP_BODY, "repeat": REPEAT, "service_port": service["port"]},
        "paths": out,
    }


# ---------------------------------------------------------------- comparison and plots


CMP_PEERS = ("ssh", "haproxy", "haproxy2", "stunnel", "direct")


def comparison(result):
    """One table of the issue's metrics per TCP path (direct, nave, HAProxy tcp, ssh -R,
    stunnel) and the ratios nave / each peer. nave's connection rate is the bpf stack's
    (relayd's default steering as root); memory per idle connection is the hold's first
    level (relay-side RSS growth / connections; direct has no relay process)."""
    metrics = {}  # name -> (unit, higher is better, {path: value})
    tp = result.get("throughput") or {}
    for key, _, label in MODES:
        metrics[f"throughput {label}"] = ("Gbit/s", True, {
            p: tp[p][key]["median_gbps"] for p in tp if key in tp[p]})
        metrics[f"CPU per GiB {label}"] = ("s/GiB", False, {
            p: tp[p][key].get("median_cpu_s_per_gib") for p in tp
            if key in tp[p] and p != "direct"})
    th = (result.get("tcphttp") or {}).get("paths") or {}
    if th:
        metrics["HTTP keep-alive over TCP"] = ("req/s", True, {
            p: m["median_requests_per_s"] for p, m in th.items()})
        for q in ("p50", "p99", "p999"):
            metrics[f"HTTP keep-alive latency {q}"] = ("ms", False, {
                p: m[f"latency_us_{q}"] / 1000 if m[f"latency_us_{q}"] is not None else None
                for p, m in th.items()})
    cr = (result.get("connrate") or {}).get("paths") or {}
    if cr:
        name = {"nave-bpf": "nave"}
        sel = {name.get(p, p): m for p, m in cr.items() if p != "nave-listeners"}
        metrics["new connections"] = ("conn/s", True, {
            p: m["median_conns_per_s"] for p, m in sel.items()})
        for q in ("p50", "p99", "p999"):
            metrics[f"new connection latency {q}"] = ("ms", False, {
                p: m.get(f"latency_us_{q}") / 1000 if m.get(f"latency_us_{q}") is not None else None
                for p, m in sel.items()})
    for where, h in (("", result.get("hold")),
                     (" (guest)", (result.get("hold_guest") or {}).get("hold"))):
        hold = (h or {}).get("paths") or {}
        if not hold:
            continue
        levels = h["settings"]["levels"]
        first, top = levels[0], levels[-1]

        def level(r, n):
            for lv in r.get("levels", []):
                if lv["connections"] == n:
                    return lv
            return None

        metrics[f"idle memory at {first:,} conns{where}"] = ("KiB/conn", False, {
            p: (level(r, first) or {}).get("kib_per_conn") for p, r in hold.items()
            if p != "direct"})
        metrics[f"hold {top:,}{where}: held"] = ("conns", True, {
            p: (level(r, top) or {}).get("held") for p, r in hold.items()})
        metrics[f"hold {top:,}{where}: memory"] = ("KiB/conn", False, {
            p: (level(r, top) or {}).get("kib_per_conn") for p, r in hold.items()
            if p != "direct"})
        metrics[f"hold {top:,}{where}: open time"] = ("s", False, {
            p: sum(lv["open_seconds"] for lv in r.get("levels", []))
            if level(r, top) and r["ok"] else None for p, r in hold.items()})
    out = {}
    for name, (unit, higher, vals) in metrics.items():
        vals = {p: (round(v, 3) if isinstance(v, float) else v) for p, v in vals.items()}
        out[name] = {"unit": unit, "higher_is_better": higher, "values": vals,
                     "ratios": {f"nave/{p}": ratio(vals.get("nave"), vals.get(p))
                                for p in CMP_PEERS}}
    return out


def print_comparison(result):
    cmp = result.get("comparison")
    if not cmp or all(all(v is None for v in m["values"].values()) for m in cmp.values()):
        return
    print()
    print("TCP paths side by side (medians; ratios nave / peer)")
    print(f"  {'metric':<36} {'unit':<9}" + "".join(f"{LABELS[p][:11]:>12}" for p in PATHS)
          + "".join(f"{'/' + p:>10}" for p in ("ssh", "haproxy", "haproxy2", "stunnel")))
    for name, m in cmp.items():
        if all(v is None for v in m["values"].values()):
            continue

        def f(v):
            if v is None:
                return "-"
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"
        print(f"  {name:<36} {m['unit']:<9}"
              + "".join(f"{f(m['values'].get(p)):>12}" for p in PATHS)
              + "".join(f"{f(m['ratios'].get('nave/' + p)):>10}" for p in ("ssh", "haproxy", "haproxy2", "stunnel")))


def print_hold(result):
    print_hold_of(result.get("hold"), "")
    g = result.get("hold_guest")
    if g and g.get("hold"):
        print_hold_of(g["hold"], f" in the guest ({g['where']})")
    elif g and g.get("skipped"):
        print()
        print(f"hold in the guest: not run: {g['skipped']}")


def print_hold_of(h, where):
    if not h:
        return
    st = h["settings"]
    print()
    print(f"hold{where}: {', '.join(f'{n:,}' for n in st['levels'])} connections per path, each echoing its"
          f" own number, from {st['source_addresses']} source addresses, {st['inflight']} opening"
          f" at once, a hang after {st['answer_timeout_seconds']:g} s")
    print(f"  {'path':<12} {'conns':>6} {'held':>6} {'refused':>8} {'reset':>6} {'closed':>7} {'hung':>5} "
          f"{'crossed':>8} {'open s':>7} {'RSS KiB':>9} {'KiB/conn':>9} {'idle-closed':>12}")
    for path in PATHS:
        r = h["paths"].get(path)
        if r is None:
            continue
        for lv in r.get("levels", []):
            kpc = "-" if lv["kib_per_conn"] is None else f"{lv['kib_per_conn']:.1f}"
            print(f"  {LABELS[path]:<12} {lv['connections']:>6} {lv['held']:>6} {lv['refused']:>8} {lv['reset']:>6} "
                  f"{lv['closed']:>7} {lv['hung']:>5} {lv['crossed']:>8} {lv['open_seconds']:>7.2f} "
                  f"{lv['rss_kib_total']:>9} {kpc:>9} {lv['closed_while_idle']:>12}")
        if not r.get("ok"):
            print(f"  {LABELS[path]:<12} FAILED: {r.get('problem', '')[:150]}")
        if r.get("limited"):
            print(f"  {LABELS[path]:<12} {r['limited']}")


def print_tcphttp(result):
    t = result.get("tcphttp")
    if not t:
        return
    st = t["settings"]
    print()
    print(f"HTTP over a TCP tunnel, keep-alive ({st['threads']} x {st['conns_per_thread']} "
          f"connections, {st['body_bytes']} B body, {st['seconds']:g} s, {st['repeat']} samples, median)")
    print(f"  {'path':<12} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'p999 ms':>8} {'failed':>7}  "
          "CPU us per request")
    for path in PATHS:
        m = t["paths"].get(path)
        if not m or m["median_requests_per_s"] is None:
            continue
        cpu = ", ".join(f"{n} {v:.0f}" for n, v in m["cpu_us_per_request"].items())
        print(f"  {LABELS[path]:<12} {m['median_requests_per_s']:>8.0f} "
              f"{m['latency_us_p50'] / 1000:>7.2f} {m['latency_us_p99'] / 1000:>7.2f} "
              f"{m['latency_us_p999'] / 1000:>8.2f} {m['failures'] + m['warmup_failures']:>7}  {cpu}")


PLOT_COLORS = {"direct": "#888888", "nave": "#1f77b4", "haproxy": "#2ca02c", "haproxy2": "#98df8a",
               "ssh": "#ff7f0e", "stunnel": "#9467bd", "nave-bpf": "#1f77b4",
               "nave-listeners": "#17becf"}


def q(s):
    return '"' + str(s).replace('"', "'") + '"'


def hold_note(r):
    """What the hold plot's key says of a path that failed or was limited."""
    if not r.get("ok"):
        return f" (failed at {r['levels'][-1]['connections']:,})" if r.get("levels") else " (failed)"
    if r.get("limited"):
        return f" ({r['limited'].split()[0]}: fd limit)"
    return ""


def redact(ini):
    """A client config for the results: the registration token left out."""
    return "\n".join("token = (left out)" if ln.startswith("token") else ln
                     for ln in ini.splitlines()) + "\n"


def make_plots(result, tmp):
    """Data files and one gnuplot script in tmp/plots, SVGs into bench/results/plots/
    (only for the parts that ran). Returns the SVG names."""
    d = tmp / "plots"
    d.mkdir(exist_ok=True)
    PLOTS.mkdir(parents=True, exist_ok=True)
    script = ['set terminal svg size 640,360 font "sans,11" background "#ffffff"',
              'set datafile missing "-"', "set grid ytics"]
    made = []

    def out(name):
        made.append(name)
        script.append(f'set output {q(PLOTS / name)}')

    def bars(name, title, ylabel, rows, paths):
        """Clustered bars: rows = [(label, {path: value})], one colour per path."""
        f = d / (name + ".dat")
        with open(f, "w") as fh:
            for label, vals in rows:
                fh.write(q(label) + " " + " ".join(
                    "-" if vals.get(p) is None else f"{vals[p]:.6g}" for p in paths) + "\n")
        out(name + ".svg")
        script.extend([f"set title {q(title)}", f"set ylabel {q(ylabel)}", "set yrange [0:*]",
                       "set xrange [*:*]", "unset logscale", "set style data histograms",
                       "set style histogram clustered gap 1", "set style fill solid 0.85 border -1",
                       "set key outside top center horizontal", "set format y '%g'",
                       "set format x '%g'",
                       "set xtics auto", "set ytics auto"])
        parts = []
        for i, p in enumerate(paths):
            xt = ":xtic(1)" if i == 0 else ""
            parts.append(f"{q(f) if i == 0 else chr(39) * 2} using {i + 2}{xt} title "
                         f"{q(LABELS.get(p, CR_LABELS.get(p, p)))} lc rgb {q(PLOT_COLORS[p])}")
        script.append("plot " + ", ".join(parts))

    tp = result.get("throughput") or {}
    if tp:
        paths = [p for p in PATHS if p in tp]
        bars("throughput", f"Throughput through each path (iperf3, median of {result['repeat']})",
             "Gbit/s",
             [(lbl, {p: tp[p][k]["median_gbps"] for p in paths}) for k, _, lbl in MODES], paths)
        paths = [p for p in paths if p != "direct"]
        bars("cpu_per_gib", "Relay-side CPU per GiB relayed (lower is better)", "CPU s / GiB",
             [(lbl, {p: tp[p][k].get("median_cpu_s_per_gib") for p in paths})
              for k, _, lbl in MODES], paths)
    th = (result.get("tcphttp") or {}).get("paths") or {}
    cr = (result.get("connrate") or {}).get("paths") or {}
    if th or cr:
        rows = []
        if th:
            rows.append(("HTTP keep-alive, req/s", {p: m["median_requests_per_s"] for p, m in th.items()}))
        if cr:
            rows.append(("new connections/s", {("nave" if p == "nave-bpf" else p): m["median_conns_per_s"]
                                               for p, m in cr.items()}))
        paths = [p for p in PATHS if any(p in v for _, v in rows)]
        bars("rates", "Request and connection rate through a TCP tunnel", "per second", rows, paths)

    def cdf(name, title, hists):
        out(name + ".svg")
        script.extend([f"set title {q(title)}", "set ylabel 'share of requests at or under'",
                       "set xlabel 'latency (ms)'", "set logscale x", "set yrange [0:4.2]",
                       "set xrange [*:*]", "set format x '%g'", "set xtics auto",
                       "set ytics ('0' 0, '50%%' 0.301, '90%%' 1, '99%%' 2, '99.9%%' 3, '99.99%%' 4)",
                       "set key outside right", "set style data lines"])
        parts = []
        for p, h in hists.items():
            total = sum(n for _, n in h)
            if not total:
                continue
            f = d / f"{name}-{p}.dat"
            seen = 0
            with open(f, "w") as fh:
                for edge, n in h:
                    seen += n
                    frac = min(seen / total, 1 - 1e-5)
                    fh.write(f"{edge / 1000:.3f} {-math.log10(1 - frac):.4f}\n")
            parts.append(f"{q(f)} using 1:2 with steps lw 2 lc rgb {q(PLOT_COLORS[p])} "
                         f"title {q(LABELS.get(p, CR_LABELS.get(p, p)))}")
        if parts:
            script.append("plot " + ", ".join(parts))
        else:
            made.pop()
        script.extend(["unset xlabel", "unset logscale", "set ytics auto"])

    if th:
        cdf("latency_http", "HTTP keep-alive request latency through a TCP tunnel (CDF)",
            {p: th[p]["latency_hist_us"] for p in PATHS if p in th})
    if cr:
        cdf("latency_conn", "New connection latency, connect to reply (CDF)",
            {p: cr[p].get("latency_hist_us") or [] for p in CR_PATHS if p in cr})
    for svg, h, where in (("hold_rss.svg", result.get("hold"), ""),
                          ("hold_rss_guest.svg", (result.get("hold_guest") or {}).get("hold"),
                           " (QEMU guest, file limit raised)")):
        hold = (h or {}).get("paths") or {}
        if not hold:
            continue
        out(svg)
        script.extend([f"set title 'Relay-side memory (RSS) holding idle connections{where}'",
                       "set ylabel 'RSS (MiB)'", "set xlabel 'connections held'",
                       "unset logscale", "set yrange [0:*]", "set xrange [0:*]",
                       "set ytics auto", "set xtics auto", "set key outside right",
                       "set style data linespoints"])
        parts = []
        for p in PATHS:
            r = hold.get(p)
            if not r or p == "direct" or not r.get("levels"):
                continue
            f = d / f"{svg[:-4]}-{p}.dat"
            with open(f, "w") as fh:
                fh.write(f"0 {sum(r['rss_kib_before'].values()) / 1024:.2f}\n")
                for lv in r["levels"]:
                    fh.write(f"{lv['held']} {lv['rss_kib_total'] / 1024:.2f}\n")
            parts.append(f"{q(f)} using 1:2 with linespoints lw 2 pt 7 lc rgb {q(PLOT_COLORS[p])} "
                         f"title {q(LABELS[p] + hold_note(r))}")
        if parts:
            script.append("plot " + ", ".join(parts))
        else:
            made.pop()
        script.append("unset xlabel")
    if not made:
        return []
    gp = d / "plots.gp"
    gp.write_text("\n".join(script) + "\n")
    run(["gnuplot", gp], timeout=60)
    return made


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
        "nginx": ver(["nginx", "-v"]),
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


def summarize(samples, cpu=None):
    """samples: path -> mode -> [Gbit/s or None]; cpu: path -> mode -> [CPU s per GiB of
    the relay-side processes, or None]."""
    out = {}
    for path, modes in samples.items():
        out[path] = {}
        for mode, vals in modes.items():
            ok = [v for v in vals if v is not None]
            c = (cpu or {}).get(path, {}).get(mode, [])
            cok = [v for v in c if v is not None]
            out[path][mode] = {
                "samples_gbps": [round(v, 3) if v is not None else None for v in vals],
                "median_gbps": round(statistics.median(ok), 3) if ok else None,
                "samples_cpu_s_per_gib": [round(v, 3) if v is not None else None for v in c],
                "median_cpu_s_per_gib": round(statistics.median(cok), 3) if cok else None,
            }
    for path in out:
        for mode in out[path]:
            m = out[path][mode]["median_gbps"]
            out[path][mode]["vs_direct"] = ratio(m, out.get("direct", {}).get(mode, {}).get("median_gbps"))
            out[path][mode]["vs_ssh"] = ratio(m, out.get("ssh", {}).get(mode, {}).get("median_gbps"))
            out[path][mode]["vs_stunnel"] = ratio(
                m, out.get("stunnel", {}).get(mode, {}).get("median_gbps"))
            out[path][mode]["vs_haproxy"] = ratio(
                m, out.get("haproxy", {}).get(mode, {}).get("median_gbps"))
    return out


def print_connrate(result):
    cr, pa = result.get("connrate"), result.get("port_allocation")
    if cr:
        st = cr["settings"]
        print()
        print(f"connection rate, keep-alive off (connect, {st['request_bytes']} B request, "
              f"{st['reply_bytes']} B reply, close): {st['threads']} x {st['inflight_per_thread']}"
              f" in flight from {st['source_addresses'] or 1} addresses, {st['seconds']:g} s "
              f"after {st['warmup_seconds']:g} s warm-up, {st['repeat']} samples, median")
        print(f"  {'':<15} {'conn/s':>8} {'vs direct':>10} {'vs haproxy':>11} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'failed':>7} {'client CPU':>11} {'busy':>5}   samples (other CPU)")
        base = cr["paths"].get("direct", {}).get("median_conns_per_s")
        hap = cr["paths"].get("haproxy", {}).get("median_conns_per_s")
        for path in CR_PATHS:
            m = cr["paths"].get(path)
            if m is None or m["median_conns_per_s"] is None:
                err = result["errors"].get(path) or result["errors"].get(f"connrate {path}")
                print(f"  {CR_LABELS[path]:<15} {'-':>8}   "
                      f"{'(' + err.splitlines()[0][:70] + ')' if err else ''}")
                continue
            med = m["median_conns_per_s"]
            vd, vh = ratio(med, base), ratio(med, hap)
            other = iter(m["cpu_not_on_path"])
            smp = " ".join("fail" if v is None else f"{v:.0f} ({next(other) * 100:.0f}%)"
                           for v in m["samples_conns_per_s"])
            fails = m["failures"] + m["warmup_failures"]
            print(f"  {CR_LABELS[path]:<15} {med:>8.0f} {'-' if vd is None else f'{vd:.2f}':>10} "
                  f"{'-' if vh is None else f'{vh:.2f}':>11} {m['latency_us_p50'] / 1000:>7.2f} "
                  f"{m['latency_us_p99'] / 1000:>7.2f} {fails:>7} "
                  f"{m['client_cpu_share'] * 100:>10.0f}% {m['machine_busy'] * 100:>4.0f}%   {smp}")
        r = cr["ratios"]

        def fmt(v):
            return "-" if v is None else f"{v:.2f}"

        print(f"  nave bpf / HAProxy {fmt(r['nave-bpf/haproxy'])}, nave listeners / HAProxy "
              f"{fmt(r['nave-listeners/haproxy'])}, nave bpf / nave listeners "
              f"{fmt(r['nave-bpf/nave-listeners'])}")
        print("  client CPU, busy: share of all CPUs; other CPU: share of the busy CPU that no process"
              " of the path used (a few % when quiet)")
        print("  CPU per connection (us, median of samples):")
        for path in CR_PATHS:
            m = cr["paths"].get(path)
            if m and m["cpu_us_per_conn"]:
                parts = ", ".join(f"{n} {v:.0f}" for n, v in m["cpu_us_per_conn"].items())
                print(f"    {CR_LABELS[path]:<15} {parts}")
    if pa:
        print()
        n = next(iter(pa.values()))["ports"]
        print(f"port allocation: {n} ports, POST /api/v1/ports one after the other, each until "
              "it accepts a connection")
        print(f"  {'steering':<10} {'total s':>8} {'ms/port':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'max ms':>7} {'API ms':>7}   relayd listening sockets (range): before, "
              "allocated, released")
        for mode in STEERINGS:
            a = pa.get(mode)
            if not a:
                err = result["errors"].get(f"nave-{mode}")
                print(f"  {mode:<10} {'-':>8}   {'(' + err.splitlines()[0][:70] + ')' if err else ''}")
                continue
            lb, la, lr = a["listeners_before"], a["listeners_after"], a["listeners_after_release"]
            print(f"  {mode:<10} {a['total_seconds']:>8.2f} {a['ms_per_port']:>8.2f} "
                  f"{a['ms_per_port_p50']:>7.2f} {a['ms_per_port_p99']:>7.2f} "
                  f"{a['ms_per_port_max']:>7.1f} {a['api_ms_mean']:>7.2f}   "
                  f"{lb['total']} ({lb['in_range']}), {la['total']} ({la['in_range']}), "
                  f"{lr['total']} ({lr['in_range']})")


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
    for key, _, label in [] if "throughput" in SKIP else MODES:
        print()
        print(f"{label:<14} {'Gbit/s':>8} {'vs direct':>10} {'vs ssh -R':>10} {'vs stunnel':>11} "
              f"{'CPU s/GiB':>10}   samples")
        for path in PATHS:
            m = tp.get(path, {}).get(key)
            if m is None:
                err = result["errors"].get(path)
                print(f"  {LABELS[path]:<12} {'-':>8}   {'(' + err.splitlines()[0][:60] + ')' if err else ''}")
                continue
            med = "-" if m["median_gbps"] is None else f"{m['median_gbps']:.2f}"
            vd = "-" if m["vs_direct"] is None else f"{m['vs_direct']:.2f}"
            vs = "-" if m["vs_ssh"] is None else f"{m['vs_ssh']:.2f}"
            vt = "-" if m.get("vs_stunnel") is None else f"{m['vs_stunnel']:.2f}"
            cg = "-" if m.get("median_cpu_s_per_gib") is None else f"{m['median_cpu_s_per_gib']:.2f}"
            smp = " ".join("fail" if v is None else f"{v:.2f}" for v in m["samples_gbps"])
            print(f"  {LABELS[path]:<12} {med:>8} {vd:>10} {vs:>10} {vt:>11} {cg:>10}   {smp}")
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
    elif "memory" not in SKIP:
        err = result["errors"].get("memory", "not run")
        print(f"memory: FAILED: {err}")
    print_connrate(result)
    print_http(result)
    print_tcphttp(result)
    print_hold(result)
    print_comparison(result)
    print_records(result)
    print_mesh(result)
    print_udp(result)
    print_logins(result)
    if result.get("plots"):
        print()
        print(f"plots: {', '.join(shown_path(PLOTS / n) for n in result['plots'])}")
    if result["errors"]:
        print()
        print("errors:")
        for k, v in result["errors"].items():
            print(f"  {k}: {v.splitlines()[0]}")
    print()


# ---------------------------------------------------------------- part 9: mesh


class MeshClient:
    """The mesh parts' second client, mesh-a, on the throughput stack nv: registered,
    configured and online; shared by parts 9 and 10 (nv.mesh_a), stopped by the last."""

    name = "mesh-a-client"

    def __init__(self, procs, tmp, nv):
        self.procs, self.nv = procs, nv
        d = tmp / "mesh-a"
        d.mkdir()
        self.cini = d / "client.ini"
        token = nv.ctl("registration", "create").stdout.splitlines()[0].strip()
        self.nave("configure", "--server", f"{HOST}:{nv.https}", "--registration", token,
                  "--fingerprint", nv.server_status["tls_fingerprint"], "--id", "mesh-a")
        lines = [ln for ln in self.cini.read_text().splitlines()
                 if not ln.startswith(("log_level", "ktls"))]
        self.cini.write_text("\n".join(lines + ["log_level = warn", f"ktls = {KTLS}"]) + "\n")
        self.proc = procs.start(self.name, [nv.bin("nave"), "start", "--config", self.cini], cwd=d)

        def online():
            procs.check_alive(self.name)
            return self.status().get("state") == "online"

        wait_until("mesh-a online", online, 20, 0.1)
        self.tunnel_id = self.status()["tunnel_id"]

    def nave(self, *args, check=True):
        return run([self.nv.bin("nave"), "--config", self.cini, *args], timeout=30, check=check)

    def status(self):
        p = self.nave("--json", "status", check=False)
        try:
            return json.loads(p.stdout) if p.returncode == 0 else {}
        except ValueError:
            return {}

    def map_to_nave(self, port, transport, what):
        """Allow mesh-a to the first client's PORT (`navectl mesh allow ... --port`) and map
        a free local port to it over TRANSPORT (`nave ports map`); the local port."""
        b_id = self.nv.client_status()["tunnel_id"]
        self.nv.ctl("mesh", "allow", self.tunnel_id, f"tunnel:{b_id}", "--port", str(port),
                    "--comment", f"bench: mesh-a to the {what}")
        local = free_port() if transport == "tcp" else free_udp_port()
        self.nave("ports", "map", str(local), "--transport", transport, "--destination", b_id,
                  "--port", str(port))
        return local, b_id


def mesh_client(procs, tmp, nv):
    """nv's mesh-a client, started on first use."""
    if getattr(nv, "mesh_a", None) is None:
        nv.mesh_a = MeshClient(procs, tmp, nv)
    procs.check_alive(MeshClient.name)
    return nv.mesh_a


def mesh_part(result, procs, tmp, nv, ready):
    """A port map (the mesh): a second client, mesh-a, on the throughput stack maps a local
    port to the nave path's iperf3 port through the edge (`nave ports map`, allowed by a
    `navectl mesh allow` rule for the two tunnel ids). iperf3 to that local port crosses
    mesh-a's client, relayd and the first client: two TLS links instead of one. Sampled
    round-robin with the direct path and the nave public port, every mode REPEAT times;
    reported: medians, the CPU per GiB of relayd and both clients, and the ratios."""
    a = mesh_client(procs, tmp, nv)
    bport = ready["nave"]["port"]
    local, b_id = a.map_to_nave(bport, "tcp", "iperf3 tunnel")
    wait_until(f"port map {local} listening", lambda: listening(local), 10)
    # the rule reaches relayd a moment after navectl returns: a short run until one passes
    deadline = time.monotonic() + 15
    while True:
        try:
            iperf3(local, ["-t", "1"])
            break
        except BenchError as e:
            if time.monotonic() > deadline:
                raise BenchError(f"port map {local} -> {b_id}:{bport} never carried: {e}")
            time.sleep(0.5)
    paths = {"direct": ready["direct"]["port"] if "direct" in ready else None,
             "nave": bport, "nave-map": local}
    paths = {k: v for k, v in paths.items() if v}
    pids = {"nave": [nv.relayd.pid, nv.client.pid],
            "nave-map": [nv.relayd.pid, nv.client.pid, a.proc.pid]}
    samples = {p: {m[0]: [] for m in MODES} for p in paths}
    cpu_gib = {p: {m[0]: [] for m in MODES} for p in paths}
    for rep in range(REPEAT):
        for key, extra, label in MODES:
            for path, port in paths.items():
                c0 = cpu_of(pids.get(path, []))
                try:
                    v, nbytes = iperf3(port, extra)
                    g = ((cpu_of(pids[path]) - c0) / (nbytes / 2**30)
                         if path in pids and nbytes else None)
                    log(f"mesh round {rep + 1}/{REPEAT} {label:<12} {path:<8} {v:6.2f} Gbit/s"
                        + (f"  {g:.2f} CPU s/GiB" if g is not None else ""))
                except BenchError as e:
                    v = g = None
                    result["errors"].setdefault(f"mesh {path} {label}", str(e))
                samples[path][key].append(v)
                cpu_gib[path][key].append(g)
                time.sleep(0.3)
    out = summarize(samples, cpu_gib)
    for mode in out.get("nave-map", {}):
        out["nave-map"][mode]["vs_nave"] = ratio(out["nave-map"][mode]["median_gbps"],
                                                 out["nave"][mode]["median_gbps"])
    st = nv.status()
    result["mesh"] = {"paths": out, "relay_mesh": (st.get("relay") or {}).get("mesh")}


def print_mesh(result):
    m = result.get("mesh")
    if not m:
        if "mesh" in result["errors"]:
            print(f"\nmesh: FAILED: {result['errors']['mesh'].splitlines()[0]}")
        return
    print()
    print("mesh: iperf3 through a port map (client -> relayd -> client) beside the public port")
    print(f"  {'mode':<12} {'direct':>9} {'nave':>9} {'port map':>9} {'map/nave':>9} "
          f"{'map/direct':>10} {'map CPU s/GiB':>14}")
    for key, _, label in MODES:
        row = {p: m["paths"].get(p, {}).get(key, {}) for p in ("direct", "nave", "nave-map")}

        def g(p):
            v = row[p].get("median_gbps")
            return f"{v:9.2f}" if v is not None else f"{'-':>9}"
        vn, vd = row["nave-map"].get("vs_nave"), row["nave-map"].get("vs_direct")
        c = row["nave-map"].get("median_cpu_s_per_gib")
        print(f"  {label:<12} {g('direct')} {g('nave')} {g('nave-map')} "
              f"{vn if vn is not None else '-':>9} {vd if vd is not None else '-':>10} "
              f"{c if c is not None else '-':>14}")


# ---------------------------------------------------------------- part 10: udp


def build_udpload(tmp):
    """bench/udpload.c into the temp dir, as build_connrate. Returns the binary's path."""
    out = tmp / "udpload"
    cc = os.environ.get("CC", "cc")
    run([cc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
         "-o", out, ROOT / "bench" / "udpload.c"], timeout=120)
    return out


def udp_echo_service(procs, binpath, name="udp-echo"):
    """udpload echo on 127.0.0.1: its port and pid."""
    p = procs.start(name, [binpath, "echo", "-a", HOST])

    def port():
        procs.check_alive(name)
        for line in procs.logtail(name, 5).splitlines():
            if line.startswith("port "):
                return int(line.split()[1])
        return None

    return {"port": wait_until(f"{name}'s port", port, 10), "pid": p.pid}


def udpload(binpath, port, size, seconds, warmup, n=UDP_MAX_REQUESTS):
    """One udpload run (bounded: SECONDS + WARMUP, at most N requests, then at most
    UDP_LOSS_MS for the last answers); its JSON."""
    argv = [binpath, "run", "-a", HOST, "-p", port, "-s", size, "-c", UDP_WINDOW,
            "-d", seconds, "-w", warmup, "-L", UDP_LOSS_MS, "-n", n]
    try:
        p = run(argv, timeout=warmup + seconds + UDP_LOSS_MS / 1000 + 20)
    except subprocess.TimeoutExpired:
        raise BenchError(f"udpload to port {port} hung")
    try:
        return json.loads(p.stdout)
    except ValueError:
        raise BenchError(f"udpload printed no JSON: {p.stdout[-300:]}{p.stderr[-300:]}")


def udp_carries(binpath, port, what, timeout=15):
    """Short runs (8 requests) until one is answered: a new rule or map reaches relayd a
    moment after the command returns, and a flow's first datagrams wait for its stream."""
    def answered():
        j = udpload(binpath, port, 64, 0.2, 0, n=8)
        return j["answered"] + j["warmup_ok"] + j["late_ok"] > 0

    wait_until(f"{what} (UDP port {port}) answering", answered, timeout, 0.2)


def udp_sample(binpath, port, size, pids):
    """One udpload run against port; pids: {name: [pid]} of the path's relays (their CPU
    is charged to the sample, per request answered)."""
    before = {n: cpu_of(v) for n, v in pids.items()}
    j = udpload(binpath, port, size, UDP_SECONDS, UDP_WARMUP)
    cpu = {n: cpu_of(v) - before[n] for n, v in pids.items()}
    cpu["udpload"] = j["cpu_seconds"]["user"] + j["cpu_seconds"]["sys"]
    done = j["ok"] + j["warmup_ok"] + j["late_ok"]  # every exchange the CPU paid for
    j["cpu_seconds_by_process"] = {n: round(v, 3) for n, v in cpu.items()}
    j["cpu_us_per_exchange"] = {n: round(v * 1e6 / done, 2) if done else None
                                for n, v in cpu.items()}
    relay = sum(v for n, v in cpu.items() if n not in ("udpload", "echo service"))
    j["relay_cpu_us_per_exchange"] = round(relay * 1e6 / done, 2) if done and len(pids) > 1 \
        else None
    return j


def relay_udp_metrics(nv):
    """relayd's UDP counters from controld's /metrics (nave_udp_*): {sample: value}."""
    if not nv.metrics:
        return None
    with socket.create_connection((HOST, nv.metrics), timeout=5) as c:
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while len(data) < 4 << 20:
            b = c.recv(65536)
            if not b:
                break
            data += b
    out = {}
    for ln in data.decode("utf-8", "replace").split("\r\n\r\n", 1)[-1].splitlines():
        if ln.startswith("nave_udp_"):
            k, _, v = ln.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def udp_part(result, procs, tmp, nv):
    """UDP through nave (part 10): request/response datagrams per second and loss on one
    flow with UDP_WINDOW requests outstanding, for each size in UDP_SIZES, on three paths
    to one `udpload echo`: direct; the throughput stack's client with a UDP rule (`nave
    tunnel udp add`), to its public UDP port; mesh-a with a UDP port map (`nave ports map
    --transport udp`) to that port through relayd and the first client. Round-robin,
    REPEAT samples of each size on each path; medians, ratios to direct, loss summed."""
    binpath = build_udpload(tmp)
    echo = udp_echo_service(procs, binpath)
    udp_carries(binpath, echo["port"], "the echo service")
    out = nv.nave("tunnel", "udp", "add", "--name", "bench-udp", "--to",
                  f"{HOST}:{echo['port']}").stdout.strip()
    if not out.isdigit():
        raise BenchError(f"nave tunnel udp add printed {out!r}, expected a port")
    bport = int(out)
    udp_carries(binpath, bport, "the public UDP port")
    a = mesh_client(procs, tmp, nv)
    local, b_id = a.map_to_nave(bport, "udp", "UDP echo rule")
    udp_carries(binpath, local, f"port map -> {b_id}:{bport}")
    paths = {"direct": echo["port"], "nave": bport, "nave-map": local}
    svc = {"echo service": [echo["pid"]]}
    pids = {"direct": dict(svc),
            "nave": {"relayd": [nv.relayd.pid], "nave client": [nv.client.pid], **svc},
            "nave-map": {"relayd": [nv.relayd.pid], "nave client": [nv.client.pid],
                         "mesh-a client": [a.proc.pid], **svc}}
    runs = {p: {str(sz): [] for sz in UDP_SIZES} for p in paths}
    for rep in range(REPEAT):
        for size in UDP_SIZES:
            for path, port in paths.items():
                try:
                    j = udp_sample(binpath, port, size, pids[path])
                    log(f"udp round {rep + 1}/{REPEAT} {size:>5} B {path:<8} "
                        f"{j['per_s']:9.0f}/s  lost {j['lost']}/{j['sent']}  "
                        f"p50 {j['latency_us']['p50']} us"
                        + (f"  relay {j['relay_cpu_us_per_exchange']} CPU us each"
                           if j["relay_cpu_us_per_exchange"] is not None else ""))
                except BenchError as e:
                    j = None
                    result["errors"].setdefault(f"udp {path} {size}", str(e))
                    log(f"udp round {rep + 1}/{REPEAT} {size:>5} B {path:<8} FAILED: {e}")
                runs[path][str(size)].append(j)
                time.sleep(0.2)
    summary = {}
    for path, sizes in runs.items():
        summary[path] = {}
        for size, js in sizes.items():
            ok = [j for j in js if j]

            def med(f, ok=ok):
                v = [f(j) for j in ok if f(j) is not None]
                return round(statistics.median(v), 2) if v else None
            sent, lost = sum(j["sent"] for j in ok), sum(j["lost"] for j in ok)
            summary[path][size] = {
                "samples_per_s": [j["per_s"] if j else None for j in js],
                "median_per_s": med(lambda j: j["per_s"]),
                "sent": sent, "lost": lost,
                "loss": round(lost / sent, 6) if sent else None,
                # answers that came after their request was counted lost (or twice)
                "stale": sum(j["stale"] for j in ok),
                "bad": sum(j["bad"] for j in ok),
                "median_p50_us": med(lambda j: j["latency_us"]["p50"]),
                "median_p99_us": med(lambda j: j["latency_us"]["p99"]),
                "median_relay_cpu_us_per_exchange": med(lambda j: j["relay_cpu_us_per_exchange"]),
                "median_cpu_us_per_exchange": {
                    n: med(lambda j, n=n: j["cpu_us_per_exchange"].get(n))
                    for n in (ok[0]["cpu_us_per_exchange"] if ok else {})},
                "runs": js,
            }
    for path in summary:
        for size in summary[path]:
            m = summary[path][size]
            m["vs_direct"] = ratio(m["median_per_s"], summary["direct"][size]["median_per_s"])
            # the median of the ratios taken inside each round: steadier when the shared
            # machine drifts between rounds
            rr = [a / b for a, b in zip(m["samples_per_s"], summary["direct"][size]["samples_per_s"])
                  if a is not None and b]
            m["round_vs_direct"] = round(statistics.median(rr), 3) if rr else None
            if path == "nave-map":
                m["vs_nave"] = ratio(m["median_per_s"], summary["nave"][size]["median_per_s"])
            if m["bad"]:
                result["errors"].setdefault(f"udp {path} {size}",
                                            f"{m['bad']} wrong answers (bytes or length)")
    # relayd's counters reach controld every 2 s: the last samples' after that
    time.sleep(2.5)
    try:
        relay_udp = relay_udp_metrics(nv)
    except OSError as e:
        relay_udp = {"error": str(e)}
    result["udp"] = {
        "settings": {"seconds": UDP_SECONDS, "warmup_seconds": UDP_WARMUP, "window": UDP_WINDOW,
                     "sizes": UDP_SIZES, "loss_ms": UDP_LOSS_MS, "repeat": REPEAT,
                     "max_requests": UDP_MAX_REQUESTS, "flows_per_sample": 1},
        "ports": {"echo": echo["port"], "public": bport, "map": local},
        "paths": summary,
        "relay_udp": relay_udp,
        "client_udp": nv.client_status().get("udp"),
        "mesh_a_udp": a.status().get("udp"),
    }
    procs.stop_named("udp-echo")


def print_udp(result):
    u = result.get("udp")
    if not u:
        if "udp" in result["errors"]:
            print(f"\nudp: FAILED: {result['errors']['udp'].splitlines()[0]}")
        return
    st = u["settings"]
    print()
    print(f"udp: request/response on one flow, {st['window']} outstanding, "
          f"{st['seconds']:g} s x {st['repeat']} per size and path "
          f"(lost: unanswered after {st['loss_ms']} ms)")
    print(f"  {'size':>6} {'path':<12} {'req/s':>9} {'vs direct':>9} {'per round':>9} "
          f"{'lost/sent':>16} "
          f"{'p50 us':>7} {'p99 us':>7} {'relay CPU us/req':>16}  per process")
    for size in map(str, st["sizes"]):
        for path in UDP_PATHS:
            m = u["paths"].get(path, {}).get(size)
            if not m:
                continue

            def f(v, w, fmt=""):
                return f"{v:{w}{fmt}}" if v is not None else f"{'-':>{w}}"
            procs = ", ".join(f"{n} {v}" for n, v in m["median_cpu_us_per_exchange"].items()
                              if v is not None and n != "echo service")
            print(f"  {size + ' B':>6} {UDP_LABELS[path]:<12} {f(m['median_per_s'], 9, '.0f')} "
                  f"{f(m['vs_direct'], 9)} {f(m['round_vs_direct'], 9)} "
                  f"{str(m['lost']) + '/' + str(m['sent']):>16} "
                  f"{f(m['median_p50_us'], 7, '.0f')} {f(m['median_p99_us'], 7, '.0f')} "
                  f"{f(m['median_relay_cpu_us_per_exchange'], 16)}  {procs}"
                  + (f"  ({m['stale']} answers came after 200 ms)" if m["stale"] else ""))


# ---------------------------------------------------------------- part 11: logins


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise ConnectionError(f"EOF after {len(buf)} of {n} bytes")
        buf += b
    return buf


def login_ctx(cert_dir=None):
    """The client side of a login, as tests/integration/navetest.py's tls_connect: TLS 1.3,
    ALPN nave/1, the server's certificate not checked (nave pins a fingerprint or a CA:
    no more work for the server either way), cert_dir's tls.crt and tls.key presented
    when given. Python's ssl is OpenSSL's: its default groups, X25519 first."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["nave/1"])
    if cert_dir:
        ctx.load_cert_chain(cert_dir / "tls.crt", cert_dir / "tls.key")
    return ctx


def login_hello(token=None):
    """A HELLO as `nave configure` sends it (client/client.c hello_msg), framed: a token,
    or "auth": "certificate" when the certificate is the login."""
    h = {"type": "hello", "version": 1, "mode": "configure", "hostname": "bench",
         "os": "linux", "arch": "x86_64", "client_version": "bench", "max_links": 256,
         "features": ["rule_push", "mesh", "udp"]}
    if token:
        h["token"] = token
    else:
        h["auth"] = "certificate"
    body = json.dumps(h).encode()
    return struct.pack(">I", len(body)) + body


def login_once(port, ctx, hello):
    """TCP connect, TLS handshake, HELLO, the WELCOME read, close. Returns the WELCOME and
    the TLS version and cipher."""
    with socket.create_connection((HOST, port), timeout=LOGIN_TIMEOUT) as raw:
        # as nave's client (client/client.c): the HELLO behind the Finished must not
        # wait for an ACK (Nagle against delayed ACK: 40 ms a login)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            if s.selected_alpn_protocol() != "nave/1":
                raise BenchError(f"ALPN: relayd selected {s.selected_alpn_protocol()!r}")
            s.sendall(hello)
            (n,) = struct.unpack(">I", recv_exact(s, 4))
            if n > 65536:
                raise BenchError(f"an answer of {n} bytes")
            m = json.loads(recv_exact(s, n))
            tls = (s.version(), s.cipher()[0])
    if not isinstance(m, dict) or m.get("type") != "welcome":
        raise BenchError(f"no WELCOME: {str(m)[:200]}")
    return m, tls


def handshake_once(port, ctx):
    """TCP connect, TLS handshake (ALPN nave/1), then the write side shut and the socket
    read until relayd closes it: relayd has then taken the client's whole flight (its
    Finished, and with client_auth on its empty Certificate) before the next starts."""
    with socket.create_connection((HOST, port), timeout=LOGIN_TIMEOUT) as raw:
        # as a data link (common/sock.c) and the logins above
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            if s.selected_alpn_protocol() != "nave/1":
                raise BenchError(f"ALPN: relayd selected {s.selected_alpn_protocol()!r}")
            s.shutdown(socket.SHUT_WR)  # drops the TLS layer: a plain FIN, no close_notify
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass


def login_load(fns, n):
    """n calls shared among len(fns) threads, thread k calling fns[k] (its own identity).
    Returns (seconds, latencies in s, errors); stops early after 10 errors."""
    lock = threading.Lock()
    state = {"next": 0}
    lat, errs = [], []

    def worker(fn):
        while True:
            with lock:
                if state["next"] >= n or len(errs) >= 10:
                    return
                state["next"] += 1
            t0 = time.perf_counter()
            try:
                fn()
            except (OSError, ValueError, BenchError) as e:  # ssl.SSLError is an OSError
                with lock:
                    errs.append(f"{type(e).__name__}: {e}")
                continue
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)

    ts = [threading.Thread(target=worker, args=(fn,), daemon=True) for fn in fns]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    deadline = time.monotonic() + 60 + n * LOGIN_TIMEOUT / len(fns)
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            raise BenchError(f"a login thread hung ({len(lat)} of {n} done)")
    return time.perf_counter() - t0, lat, errs


def proc_cpu_fine(pid):
    """CPU seconds of pid so far, to the nanosecond: the sum of its threads' time on a CPU
    (/proc/PID/task/*/schedstat, the scheduler's own count; a sample of a few hundred
    logins is a few clock ticks in /proc/PID/stat). proc_cpu when there is none."""
    try:
        ns = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns += int(f.read().split()[0])
            except FileNotFoundError:  # a thread that just ended
                pass
        return ns / 1e9
    except (OSError, ValueError, IndexError):
        return proc_cpu(pid)


def login_sample(fns, n, stack):
    """One sample: n logins (or handshakes) through fns; the rate and the CPU that relayd,
    controld and the harness (the clients) spent, per 1000."""
    pids = {"relayd": stack.relayd.pid, "controld": stack.controld.pid}
    c0 = {k: proc_cpu_fine(p) for k, p in pids.items()}
    h0 = time.process_time()
    m0 = machine_cpu()
    secs, lat, errs = login_load(fns, n)
    m1 = machine_cpu()
    cpu = {k: proc_cpu_fine(p) - c0[k] for k, p in pids.items()}
    cpu["harness"] = time.process_time() - h0
    ok = len(lat)
    span = m1[0] - m0[0]
    return {
        "n": n, "ok": ok, "failed": len(errs), "errors": errs[:3],
        "seconds": round(secs, 3),
        "per_s": round(ok / secs, 1) if secs and ok else None,
        "latency_ms": {"p50": round(pctl(lat, 50) * 1000, 2), "p99": round(pctl(lat, 99) * 1000, 2),
                       "max": round(max(lat) * 1000, 2)} if lat else None,
        "cpu_s": {k: round(v, 4) for k, v in cpu.items()},
        "cpu_s_per_1000": {k: round(v * 1000 / ok, 3) if ok else None for k, v in cpu.items()},
        "machine_busy": round(1 - (m1[1] - m0[1]) / span, 3) if span else None,
    }


def s_client_group(port, cert_dir=None):
    """The group (and more) a handshake of Debian's openssl CLI with its default groups,
    which Python's ssl shares, negotiated with relayd: its 'Server Temp Key' line."""
    argv = ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-alpn", "nave/1",
            "-tls1_3", "-servername", "localhost"]
    if cert_dir:
        argv += ["-cert", cert_dir / "tls.crt", "-key", cert_dir / "tls.key"]
    try:
        p = run(argv, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": str(e)}
    out = {}
    for ln in (p.stdout + p.stderr).splitlines():
        ln = ln.strip()
        for key in ("Server Temp Key", "Peer signature type", "Peer signing digest",
                    "Requested Signature Algorithms", "Client Certificate Types",
                    "New, TLSv1.3, Cipher is", "Verification"):
            if ln.startswith(key) and key not in out:
                out[key] = ln[len(key):].lstrip(": ").strip()
    out["exit"] = p.returncode
    return out


def logins_part(result, procs, tmp, build):
    """Part 11: what a login costs with a certificate and with a token, and what asking
    every TLS client for an (optional) certificate costs token logins and bare handshakes.
    Three controld + relayd pairs of the build (no client): [tls] client_auth off (no
    client_ca), client_ca of an Ed25519 PKI, client_ca of a P-256 PKI (navectl pki init;
    `optional`, the default with client_ca). From Python threads (LOGIN_THREADS in flight,
    each with its own token or certificate), LOGIN_N logins per sample, LOGIN_ROUNDS samples of
    every mode round-robin."""
    d = tmp / "logins"
    d.mkdir()
    navectl = build / "navectl"
    pkis = {}
    for kind in ("ed25519", "p256"):
        pdir = d / f"pki-{kind}"
        run([navectl, "pki", "init", "--dir", pdir, "--key-type", kind])
        pkis[kind] = pdir
    stacks = {}
    for kind in ("off", "ed25519", "p256"):
        extra = "" if kind == "off" else f"[tls]\nclient_ca = {pkis[kind]}/ca/ca.crt\n"
        st = Nave(procs, tmp, build, tag=f"login-{kind}", range_size=10, extra_ini=extra,
                  client=False)
        st.setup()
        stacks[kind] = st
    # identities: a token or a certificate per thread
    ids = {}
    for key, kind, how, _ in LOGIN_MODES:
        st = stacks[kind]
        fns, names = [], []
        for k in range(LOGIN_THREADS):
            if how == "token":
                tok = json.loads(st.ctl("--json", "tokens", "create").stdout)["token"]
                ctx, hello, name = login_ctx(), login_hello(tok), None
            else:
                name = f"bench-{kind[0]}{k}"
                run([navectl, "pki", "issue", "--dir", pkis[kind], "--name", name])
                ctx, hello = login_ctx(pkis[kind] / "nodes" / name), login_hello()
            names.append(name)
            fns.append(lambda p=st.https, c=ctx, h=hello: login_once(p, c, h))
        ids[key] = (fns, names)
    hs_fns = {key: [lambda p=stacks[kind].https, c=login_ctx(): handshake_once(p, c)]
              * LOGIN_THREADS for key, kind, _ in HANDSHAKE_MODES}
    # one login of each identity first (not counted): a certificate's first makes its
    # tunnel; and what TLS they ran
    tls = {}
    for key, kind, how, _ in LOGIN_MODES:
        fns, names = ids[key]
        for fn, name in zip(fns, names):
            w, t = fn()
            if name and w.get("tunnel_id") != name:
                raise BenchError(f"{key}: WELCOME for tunnel {w.get('tunnel_id')!r}, not {name!r}")
        tls[key] = {"version": t[0], "cipher": t[1]}
    openssl = {key: s_client_group(stacks[kind].https,
                                   pkis[kind] / "nodes" / ids[key][1][0] if how == "cert" else None)
               for key, kind, how, _ in LOGIN_MODES}
    # the CertificateRequest is there exactly when client_auth is on (s_client prints the
    # signature algorithms it asks for)
    for key, kind, _, _ in LOGIN_MODES:
        asked = "Requested Signature Algorithms" in openssl[key]
        if asked != (kind != "off"):
            raise BenchError(f"{key}: relayd {'sent' if asked else 'did not send'} a "
                             f"CertificateRequest (openssl s_client: {openssl[key]})")
    login_runs = {m[0]: [] for m in LOGIN_MODES}
    hs_runs = {m[0]: [] for m in HANDSHAKE_MODES}
    # every sample kind once a round; each round starts one kind later, so that no kind
    # always follows the same one
    kinds = ([("login", key, kind, label) for key, kind, _, label in LOGIN_MODES]
             + [("handshake", key, kind, "handshake, " + label)
                for key, kind, label in HANDSHAKE_MODES])
    for rep in range(LOGIN_ROUNDS):
        for what, key, kind, label in kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]:
            if what == "login":
                r = login_sample(ids[key][0], LOGIN_N, stacks[kind])
                login_runs[key].append(r)
            else:
                r = login_sample(hs_fns[key], LOGIN_N, stacks[kind])
                hs_runs[key].append(r)
            c = r["cpu_s_per_1000"]
            log(f"logins round {rep + 1}/{LOGIN_ROUNDS} {label:<32} {r['per_s'] or 0:6.0f}/s, "
                f"CPU s per 1000: relayd {c['relayd']}, controld {c['controld']}"
                + (f"  {r['failed']} FAILED: {r['errors'][0]}" if r["failed"] else ""))
            time.sleep(0.2)

    def summary(runs, base):
        out = {}
        for key, rs in runs.items():
            rates = [r["per_s"] for r in rs]
            ok = [v for v in rates if v is not None]
            out[key] = {
                "samples_per_s": rates,
                "median_per_s": round(statistics.median(ok), 1) if ok else None,
                "failed": sum(r["failed"] for r in rs),
                "median_p50_ms": statistics.median([r["latency_ms"]["p50"] for r in rs
                                                    if r["latency_ms"]]) if ok else None,
                "median_p99_ms": statistics.median([r["latency_ms"]["p99"] for r in rs
                                                    if r["latency_ms"]]) if ok else None,
                "median_cpu_s_per_1000": {
                    n: round(statistics.median(v), 3)
                    for n in ("relayd", "controld", "harness")
                    if (v := [r["cpu_s_per_1000"][n] for r in rs if r["cpu_s_per_1000"][n] is not None])
                },
                "machine_busy": [r["machine_busy"] for r in rs],
                "runs": rs,
            }
        for key, m in out.items():
            m[f"vs_{base}"] = ratio(m["median_per_s"], out[base]["median_per_s"])
            # the ratio inside each round, then their median: steadier when the machine
            # drifts between rounds
            rr = [a / b for a, b in zip(m["samples_per_s"], out[base]["samples_per_s"])
                  if a is not None and b]
            m[f"round_vs_{base}"] = round(statistics.median(rr), 3) if rr else None
            # relayd + controld: what the server spends per 1000
            srv = {k: sum(v.get(n, 0) for n in ("relayd", "controld"))
                   for k, v in ((key, m["median_cpu_s_per_1000"]),
                                (base, out[base]["median_cpu_s_per_1000"]))}
            m["server_cpu_s_per_1000"] = round(srv[key], 3)
            m[f"server_cpu_vs_{base}"] = ratio(srv[key], srv[base])
        return out

    r = {
        "settings": {"logins_per_sample": LOGIN_N, "threads": LOGIN_THREADS, "rounds": LOGIN_ROUNDS,
                     "timeout_s": LOGIN_TIMEOUT, "hello_mode": "configure",
                     "client": f"Python {platform.python_version()} ssl, {ssl.OPENSSL_VERSION}"},
        "stacks": {k: {"https": st.https, "tls_ini": st.extra_ini or "(no [tls]: client_auth off)",
                       "relay": {k: (st.server_status.get("relay") or {}).get(k)
                                 for k in ("workers", "ktls", "steering")}}
                   for k, st in stacks.items()},
        "tls": tls,
        "openssl_s_client": openssl,
        "logins": summary(login_runs, "token_off"),
        "handshakes": summary(hs_runs, "off"),
    }
    result["logins"] = r
    bad = [f"{k} {v['failed']} failed" for part in ("logins", "handshakes")
           for k, v in r[part].items() if v["failed"]]
    if bad:
        first = next(x["errors"][0] for part in ("logins", "handshakes")
                     for v in r[part].values() for x in v["runs"] if x["errors"])
        result["errors"]["logins"] = "; ".join(bad) + f": {first}"
    for kind in stacks:
        for role in ("relayd", "controld"):
            procs.check_alive(f"login-{kind}-{role}")
    for kind in stacks:
        for role in ("relayd", "controld"):
            procs.stop_named(f"login-{kind}-{role}")


def print_logins(result):
    r = result.get("logins")
    if not r:
        if "logins" in result["errors"] and "logins" not in SKIP:
            print(f"\nlogins: FAILED: {result['errors']['logins'].splitlines()[0]}")
        return
    st = r["settings"]
    g = (r["openssl_s_client"].get("token_off") or {}).get("Server Temp Key", "?")
    t = r["tls"].get("token_off") or {}
    print()
    print(f"logins: {st['threads']} in flight, {st['logins_per_sample']} x {st['rounds']} per "
          f"mode, round-robin; client {st['client']}, {t.get('version')} {t.get('cipher')}, "
          f"group {g}")

    def f(v, w, fmt=""):
        return f"{v:{w}{fmt}}" if v is not None else f"{'-':>{w}}"

    for part, title, labels, base in (
            ("logins", "login: TLS + HELLO (configure) + WELCOME",
             [(k, lb) for k, _, _, lb in LOGIN_MODES], "token_off"),
            ("handshakes", "TLS handshake only (connect, handshake, close)",
             [(k, lb) for k, _, lb in HANDSHAKE_MODES], "off")):
        print(f"  {title}; CPU s per 1000 of relayd, controld, both (and the ratio), the client")
        print(f"    {'':<32} {'per s':>6} {'ratio':>6} {'/round':>6} {'p50 ms':>7} {'p99 ms':>7}"
              f"  {'relayd':>7} {'controld':>8} {'both':>6} {'ratio':>6} {'client':>7}")
        for key, label in labels:
            m = r[part][key]
            c = m["median_cpu_s_per_1000"]
            print(f"    {label:<32} {f(m['median_per_s'], 6, '.0f')} {f(m['vs_' + base], 6, '.2f')} "
                  f"{f(m['round_vs_' + base], 6, '.2f')} {f(m['median_p50_ms'], 7, '.1f')} "
                  f"{f(m['median_p99_ms'], 7, '.1f')}  {f(c.get('relayd'), 7, '.3f')} "
                  f"{f(c.get('controld'), 8, '.3f')} {f(m['server_cpu_s_per_1000'], 6, '.3f')} "
                  f"{f(m['server_cpu_vs_' + base], 6, '.2f')} {f(c.get('harness'), 7, '.3f')}"
                  + (f"  ({m['failed']} failed)" if m["failed"] else ""))


# ---------------------------------------------------------------- main


def replot(path):
    """bench.py --replot [RESULT.json]: the plots again from a run's JSON (latest.json by
    default), into bench/results/plots/, nothing measured."""
    result = json.loads(Path(path).read_text())
    tmp = Path(tempfile.mkdtemp(prefix="nave-bench-plots-"))
    try:
        made = make_plots(result, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"plots from {path}: {', '.join(shown_path(PLOTS / n) for n in made)}")
    return 0


def main():
    if sys.argv[1:2] == ["--replot"]:
        return replot(sys.argv[2] if len(sys.argv) > 2 else RESULTS / "latest.json")
    args = [a for a in sys.argv[1:] if a != "--quick"]
    if any(a.startswith("-") for a in args) or len(args) > 1:
        sys.exit("usage: bench.py [BUILD_DIR] [--quick]")
    build = Path(args[0] if args else "build")
    if not build.is_absolute() and not build.exists():
        build = ROOT / build  # relative to the repository, not the caller's cwd
    build = build.resolve()

    # Children inherit this: the hold's 10,000 relayed connections need ~20,000 fds in a
    # relay process, and the harness holds both ends of the direct path's. As root the
    # hard limit is raised too (it was 20,000 on the build VM).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    if hard != resource.RLIM_INFINITY and hard < want and os.geteuid() == 0:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            soft, hard = want, want
        except (OSError, ValueError):
            pass
    want = want if hard == resource.RLIM_INFINITY else min(hard, want)
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
        "quick": QUICK,
        "rlimit_nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "machine": machine_info(),
        "binaries": binaries(build),
        "paths": {},
        "throughput": {},
        "memory": None,
        "connrate": None,
        "port_allocation": None,
        "http": None,
        "tcphttp": None,
        "hold": None,
        "hold_guest": None,
        "records": None,
        "mesh": None,
        "udp": None,
        "logins": None,
        "comparison": None,
        "plots": None,
        "skipped": sorted(SKIP),
        "errors": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="nave-bench-"))
    procs = Procs(tmp)
    failed = False
    echo = None
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    global HAPROXY_MAXCONN
    # HAProxy needs 2 fds per connection and refuses to start when its maxconn needs
    # more than the hard limit allows
    HAPROXY_MAXCONN = min(HAPROXY_MAXCONN, (nofile - 200) // 2)
    try:
        log(f"temp dir {tmp}, build {build}")
        connrate_bin = service = None
        if not {"connrate", "hold"} <= SKIP:
            log("building bench/connrate.c")
            try:
                connrate_bin = build_connrate(tmp)
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                result["errors"]["connrate"] = str(e)
                log(f"connrate: {e}")
        if connrate_bin and "connrate" not in SKIP:
            log("starting the connection-rate service")
            try:
                service = start_service(procs, connrate_bin)
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                result["errors"]["connrate"] = str(e)
                log(f"connrate: {e}")
        # the services that every TCP path forwards to besides its iperf3 server
        svc = {"connrate": service and service["port"]}
        httpload_bin = tcp_service = echo = None
        if not {"http", "tcphttp"} <= SKIP:
            try:
                httpload_bin = build_httpload(tmp)
                if "tcphttp" not in SKIP:
                    log("starting the HTTP-over-TCP service")
                    tcp_service = start_http_service(procs, httpload_bin, "tcphttp-service")
                    svc["http"] = tcp_service["port"]
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                result["errors"]["tcphttp"] = str(e)
                log(f"tcphttp: {e}")
        if connrate_bin and "hold" not in SKIP:
            log("starting the hold's echo service")
            try:
                echo = start_service(procs, connrate_bin, "echo", "echo-service")
                svc["echo"] = echo["port"]
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                result["errors"]["hold"] = str(e)
                log(f"hold: {e}")
        nv = Nave(procs, tmp, build)
        setups = {
            "direct": lambda: setup_direct(procs, tmp, svc),
            "nave": lambda: setup_nave(procs, tmp, nv, svc),
            "haproxy": lambda: setup_haproxy(procs, tmp, svc),
            "haproxy2": lambda: setup_haproxy2(procs, tmp, svc),
            "ssh": lambda: setup_ssh(procs, tmp, svc),
            "stunnel": lambda: setup_stunnel(procs, tmp, svc),
        }
        # what each part needs set up
        tcp_parts = not {"throughput", "connrate", "tcphttp", "hold"} <= SKIP
        needed = {
            "direct": not {"throughput", "tcphttp", "hold", "mesh"} <= SKIP,
            "nave": not {"throughput", "memory", "tcphttp", "mesh", "udp"} <= SKIP,
            "haproxy": tcp_parts,
            "haproxy2": not {"throughput", "connrate", "tcphttp"} <= SKIP,
            "ssh": "ssh" not in SKIP and tcp_parts,
            "stunnel": "stunnel" not in SKIP and tcp_parts,
        }
        ready = {}
        for path in [p for p in PATHS if needed[p]]:
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
        if "nave" in ready and "memory" not in SKIP:
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
        cpu_gib = {p: {m[0]: [] for m in MODES} for p in ready}
        # Round-robin: every path sees the same drift of a shared machine.
        for rep in range(0 if "throughput" in SKIP else REPEAT):
            for key, extra, label in MODES:
                for path in PATHS:
                    if path not in ready:
                        continue
                    # the relay-side processes' CPU over the run, per GiB received
                    pids = relay_pids(path, ready[path])
                    c0 = {n: cpu_of(v) for n, v in pids.items()}
                    try:
                        v, nbytes = iperf3(ready[path]["port"], extra)
                        cpu = sum(cpu_of(v) for v in pids.values()) - sum(c0.values())
                        g = cpu / (nbytes / 2**30) if pids and nbytes else None
                        log(f"round {rep + 1}/{REPEAT} {label:<12} {path:<8} {v:6.2f} Gbit/s"
                            + (f"  {g:.2f} CPU s/GiB" if g is not None else ""))
                    except BenchError as e:
                        v = g = None
                        result["errors"].setdefault(f"{path} {label}", str(e))
                        log(f"round {rep + 1}/{REPEAT} {label:<12} {path:<8} FAILED: {e}")
                    samples[path][key].append(v)
                    cpu_gib[path][key].append(g)
                    time.sleep(0.3)
        if "throughput" not in SKIP:
            result["throughput"] = summarize(samples, cpu_gib)
        if "nave" in ready and "mesh" not in SKIP:
            log("mesh: iperf3 through a port map beside the public port")
            try:
                mesh_part(result, procs, tmp, nv, ready)
            except (BenchError, OSError, subprocess.SubprocessError, KeyError) as e:
                result["errors"]["mesh"] = str(e)
                log(f"mesh: {e}")
                for name in ("nave-relayd", "mesh-a-client"):
                    log(f"--- {name} log tail:\n{procs.logtail(name)}")
        if "nave" in ready and "udp" not in SKIP:
            log(f"udp: request/response, {UDP_WINDOW} outstanding, "
                f"{'/'.join(map(str, UDP_SIZES))} B: direct, public port, port map")
            try:
                udp_part(result, procs, tmp, nv)
            except (BenchError, OSError, subprocess.SubprocessError, KeyError) as e:
                result["errors"]["udp"] = str(e)
                log(f"udp: {e}")
                for name in ("nave-relayd", "nave-client", "mesh-a-client"):
                    log(f"--- {name} log tail:\n{procs.logtail(name)}")
        if getattr(nv, "mesh_a", None) is not None:
            procs.stop_named(MeshClient.name)  # the later parts run without it
        if "nave" in ready:
            cs = nv.client_status()
            result["nave"]["client_after"] = {k: cs.get(k) for k in ("links", "idle_links", "conns", "conns_total")}
            result["nave"]["transport"] = transport(nv.status().get("relay") or {}, cs)
            for name in ("nave-relayd", "nave-client", "nave-controld"):
                procs.check_alive(name)
        if service is not None or "alloc" not in SKIP:
            connrate_part(result, procs, tmp, build, connrate_bin, service, ready)
        if "http" not in SKIP:
            http_part(result, procs, tmp, build, httpload_bin)
        if tcp_service is not None:
            log("HTTP over each TCP path (keep-alive)")
            tcphttp_part(result, httpload_bin, tcp_service, ready)
        if echo is not None:
            log(f"hold: {', '.join(map(str, HOLD_LEVELS))} connections on each TCP path")
            hold_part(result, procs, tmp, build, ready, echo)
            limited = [p for p, r in (result["hold"] or {}).get("paths", {}).items()
                       if r.get("limited")]
            if (limited or GUEST_HOLD == "always") and "guest" not in SKIP and not GUEST_CHILD:
                procs.stop_all()  # the guest gets the machine
                hold_guest_part(result, build, limited or [p for p in PATHS if p != "direct"])
        if "records" not in SKIP and not GUEST_CHILD:
            log(f"records: {RECORDS_RATE} connection records/s into controld for "
                f"{RECORDS_SECONDS:g} s, API timed meanwhile")
            try:
                records_part(result, procs, tmp, build)
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                result["errors"]["records"] = str(e)
                log(f"records: {e}")
        if "logins" not in SKIP and not GUEST_CHILD:
            log(f"logins: {LOGIN_N} logins per sample, {LOGIN_THREADS} in flight: token and "
                "certificate, client_auth off and optional")
            try:
                logins_part(result, procs, tmp, build)
            except (BenchError, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
                result["errors"]["logins"] = str(e)
                log(f"logins: {e}")
                for kind in ("off", "ed25519", "p256"):
                    log(f"--- login-{kind}-relayd log tail:\n{procs.logtail(f'login-{kind}-relayd')}")
    except BaseException as e:
        failed = True
        result["errors"]["harness"] = f"{type(e).__name__}: {e}"
        log(f"aborted: {type(e).__name__}: {e}")
        if not isinstance(e, (BenchError, KeyboardInterrupt)):
            raise
    finally:
        procs.stop_all()
        try:
            result["comparison"] = comparison(result)
        except Exception as e:  # the report must still be written
            result["errors"]["comparison"] = f"{type(e).__name__}: {e}"
        if "plots" not in SKIP:
            try:
                result["plots"] = make_plots(result, tmp)
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                result["errors"]["plots"] = str(e)
                log(f"plots: {e}")
        result["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        result["elapsed_seconds"] = round(time.monotonic() - started, 1)
        if GUEST_CHILD:  # the host's run keeps it; this root is read-only
            print(GUEST_MARKER + json.dumps(result, separators=(",", ":")), flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            write_results(result, stamp, tmp)
    if GUEST_CHILD:
        return 1 if failed or result["errors"] else 0
    print_table(result)
    print(f"results: {RESULTS / (stamp + '.json')} ({result['elapsed_seconds']} s)")
    return 1 if failed or result["errors"] else 0


# ---------------------------------------------------------------- part 8: records


def pctl(values, q):
    """The q-th percentile (0-100) of values, nearest rank; None when empty."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))]


def records_part(result, procs, tmp, build):
    """controld alone, a stand-in relayd (bench/recfeed.py, a process of its own) sending
    RECORDS_RATE connection records a second for RECORDS_SECONDS, and the harness timing
    admin API requests meanwhile (a new connection each, as navectl makes them): status,
    the newest 50 records, the newest 50 of one tunnel. Reported: p50 / p99 / max per
    request kind and in all, the records sent, received and stored, controld's CPU."""
    d = tmp / "records"
    d.mkdir()
    ini = d / "server.ini"
    run_dir = d / "run"
    low, high = free_window(10)
    ini.write_text(
        "[server]\n"
        f"state_dir = {d}/var\n"
        f"runtime_dir = {run_dir}\n"
        "log_level = warn\n"
        "[listen]\n"
        f"http = {free_port()}\n"
        f"https = {free_port()}\n"
        f"address = {HOST}\n"
        "[ports]\n"
        f"range = {low}-{high}\n"
        "reserve = off\n"
    )
    sock, relay_sock = run_dir / "control.sock", run_dir / "relay.sock"
    controld = procs.start("records-controld", [build / "nave-controld", "--config", ini], cwd=d)
    wait_until("the records controld's sockets",
               lambda: controld.poll() is not None or (sock.exists() and relay_sock.exists()),
               15)
    procs.check_alive("records-controld")
    tids = []
    for i in range(8):
        st, body = api_call(sock, "POST", "/api/v1/tokens", {"id": f"bench-{i}"})
        if st != 201:
            raise BenchError(f"POST /api/v1/tokens: {st} {body}")
        tids.append(body["tunnel_id"])
    cpu0 = cpu_of([controld.pid])
    feeder = subprocess.Popen(
        ["/usr/bin/python3", str(ROOT / "bench" / "recfeed.py"), str(relay_sock),
         str(RECORDS_RATE), str(RECORDS_SECONDS), ",".join(tids)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kinds = {"status": "/api/v1/status",
             "connections": "/api/v1/connections?limit=50",
             "connections_tunnel": f"/api/v1/connections?tunnel={tids[0]}&limit=50"}
    lat = {k: [] for k in kinds}
    bad = []
    t_end = time.monotonic() + RECORDS_SECONDS + 30
    try:
        while feeder.poll() is None and time.monotonic() < t_end:
            for k, path in kinds.items():
                t0 = time.perf_counter()
                st, body = api_call(sock, "GET", path)
                lat[k].append((time.perf_counter() - t0) * 1000)
                if st != 200:
                    bad.append(f"{path}: {st}")
                time.sleep(0.01)
        out, err = feeder.communicate(timeout=RECORDS_SECONDS + 30)
    finally:
        if feeder.poll() is None:
            feeder.kill()
            feeder.wait()
    if feeder.returncode != 0:
        raise BenchError(f"recfeed.py exited {feeder.returncode}: {err.strip()[-400:]}")
    fed = json.loads(out.strip().splitlines()[-1])

    def landed():
        st, body = api_call(sock, "GET", "/api/v1/status")
        r = body.get("records") or {}
        return r if r.get("received", 0) >= fed["sent"] else None
    try:
        recs = wait_until("every record received", landed, 30, 0.2)
    except BenchError:
        recs = api_call(sock, "GET", "/api/v1/status")[1].get("records") or {}
    cpu = cpu_of([controld.pid]) - cpu0
    procs.check_alive("records-controld")
    allv = [v for vs in lat.values() for v in vs]
    summary = {k: {"n": len(v), "p50_ms": round(pctl(v, 50), 2), "p99_ms": round(pctl(v, 99), 2),
                   "max_ms": round(max(v), 2)} for k, v in lat.items() if v}
    r = {
        "rate_target": RECORDS_RATE,
        "seconds_target": RECORDS_SECONDS,
        "fed": fed,
        "rate_achieved": round(fed["sent"] / fed["seconds"], 1) if fed["seconds"] else None,
        "controld_records": recs,
        "controld_cpu_s": round(cpu, 2),
        "api": summary,
        "api_all": {"n": len(allv), "p50_ms": round(pctl(allv, 50), 2),
                    "p99_ms": round(pctl(allv, 99), 2), "max_ms": round(max(allv), 2)}
        if allv else None,
        "api_errors": bad[:10],
        "p99_target_ms": RECORDS_P99_MS,
    }
    problems = []
    if bad:
        problems.append(f"{len(bad)} API request(s) failed: {bad[0]}")
    if not allv or r["api_all"]["p99_ms"] >= RECORDS_P99_MS:
        problems.append(f"API p99 {r['api_all'] and r['api_all']['p99_ms']} ms, "
                        f"not under {RECORDS_P99_MS} ms")
    if recs.get("stored") != fed["sent"]:
        problems.append(f"{fed['sent']} records sent, {recs.get('stored')} stored")
    if r["rate_achieved"] is not None and r["rate_achieved"] < 0.95 * RECORDS_RATE:
        problems.append(f"the feeder reached {r['rate_achieved']} records/s only")
    r["ok"] = not problems
    result["records"] = r
    if problems:
        result["errors"]["records"] = "; ".join(problems)
    a = r["api_all"] or {}
    log(f"records: {fed['sent']} sent in {fed['seconds']} s, {recs.get('stored')} stored; "
        f"API p50 {a.get('p50_ms')} ms, p99 {a.get('p99_ms')} ms, max {a.get('max_ms')} ms "
        f"({a.get('n')} requests); controld CPU {r['controld_cpu_s']} s")
    procs.stop_named("records-controld")


def print_records(result):
    r = result.get("records")
    if not r:
        return
    print()
    fed = r["fed"]
    print(f"connection records: {fed['sent']} in {fed['seconds']} s "
          f"({r['rate_achieved']}/s, target {r['rate_target']}/s) from a stand-in relayd; "
          f"controld stored {r['controld_records'].get('stored')}, CPU {r['controld_cpu_s']} s")
    print(f"  {'API request':<20} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for k, v in list(r["api"].items()) + [("all", r["api_all"] or {})]:
        print(f"  {k:<20} {v.get('n', 0):>6} {v.get('p50_ms', '-'):>8} {v.get('p99_ms', '-'):>8} "
              f"{v.get('max_ms', '-'):>8}")
    verdict = "meets" if r["ok"] else "MISSES"
    print(f"  ({verdict} the target: p99 under {r['p99_target_ms']} ms, every record stored)")


def write_results(result, stamp, tmp):
    """bench/results/STAMP.json and latest.json; the temp dir kept when something failed."""
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


if __name__ == "__main__":
    sys.exit(main())

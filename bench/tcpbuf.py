# SPDX-License-Identifier: Apache-2.0
"""make bench-tcpbuf: do the TCP buffer maxima (net.ipv4.tcp_rmem / tcp_wmem) matter
for nave's relayed throughput on a path with a real round-trip time?

Three network namespaces of its own, joined by veth pairs:

    pub  10.201.1.1 ==leg 1== 10.201.1.2  edge  10.201.2.1 ==leg 2== 10.201.2.2  dev

pub is the public client (iperf3 -c), edge runs nave-controld and nave-relayd
(and forwards IP for the direct path), dev runs the nave client and the iperf3
server (on 127.0.0.1 for the tunnel). Every veth end's egress: netem delay
RTT/4 (so each leg has RTT/2 and pub-dev has RTT) with a tbf child at RATE and
a queue of QUEUE_MS at RATE. The tunnel's two TCP connections (pub-relayd,
relayd-client) each see RTT/2; the direct path (pub to dev through edge) one
connection of RTT.

Settings, written into each namespace's own net.ipv4.tcp_rmem / tcp_wmem (per
namespace since 4.15; a new namespace copies the host's, so every one is written):
  debian       all three at Debian 12's defaults (rmem max 6 MiB, wmem max 4 MiB)
  edge-raised  edge raised (what the package's sysctl snippet could do), pub and dev at
               Debian's defaults (the internet's clients and the devices keep theirs)
  peers-raised pub and dev raised, the edge at Debian's defaults: peers with large
               buffers (newer kernels default tcp_rmem's max to 32 MiB), an edge without
               the setting
  raised       all three raised (rmem and wmem max 32 MiB)
The direct path is measured under debian and raised only: the edge only forwards
its packets, so under edge-raised it is the debian path and under peers-raised the
raised one.

Samples: one iperf3 stream, up (pub to dev: -c) and down (dev to pub: -R), for
each RTT x setting x path, round-robin (round 1: everything once, ...); the nave
client is restarted before every tunnel sample, so that its data links are new
sockets made under the setting being measured. Congestion control: cubic in every
namespace (Debian's default) unless --cc.

Usage: tcpbuf.py [BUILD_DIR] [--rtts 0.2,20,80] [--rate 1gbit] [--queue-ms 20]
                 [--seconds 8] [--omit 2] [--repeat 3] [--cc cubic] [--quick]
                 [--out FILE | --stdout]
Writes bench/results/tcpbuf-<UTC timestamp>.json (never latest.json) and prints a
table. Root only. See bench/README.md.
"""

import argparse
import datetime
import json
import os
import platform
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
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from bench import BenchError, run, wait_until  # noqa: E402  (bench/bench.py: the same helpers)
from navetest import in_ns  # noqa: E402  (the tests' namespace helper)
RESULTS = ROOT / "bench" / "results"

MIB = 1 << 20
# Debian 12 (linux 6.1) defaults: tcp_rmem 4096 131072 6291456, tcp_wmem 4096 16384 4194304
DEBIAN = {"net.ipv4.tcp_rmem": "4096 131072 6291456", "net.ipv4.tcp_wmem": "4096 16384 4194304"}
RAISED = {"net.ipv4.tcp_rmem": f"4096 131072 {32 * MIB}", "net.ipv4.tcp_wmem": f"4096 16384 {32 * MIB}"}
SETTINGS = {
    "debian": {"pub": DEBIAN, "edge": DEBIAN, "dev": DEBIAN},
    "edge-raised": {"pub": DEBIAN, "edge": RAISED, "dev": DEBIAN},
    "peers-raised": {"pub": RAISED, "edge": DEBIAN, "dev": RAISED},
    "raised": {"pub": RAISED, "edge": RAISED, "dev": RAISED},
}
DIRECT_SETTINGS = ("debian", "raised")
DIRECTIONS = ("up", "down")

PUB_IP, EDGE_PUB_IP, EDGE_DEV_IP, DEV_IP = "10.201.1.1", "10.201.1.2", "10.201.2.1", "10.201.2.2"
HTTPS_PORT, HTTP_PORT, RANGE = 8443, 8080, (22000, 22009)
IPERF_PORT = 5201



def log(msg):
    print(f"[tcpbuf {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)





class Net:
    """The three namespaces (names carry this process's pid), deleted on close."""

    def __init__(self):
        tag = os.getpid()
        self.ns = {r: f"nave-tcpbuf-{r}-{tag}" for r in ("pub", "edge", "dev")}
        self.made = []

    def ex(self, role, *argv, **kw):
        return run(["ip", "netns", "exec", self.ns[role], *argv], **kw)

    def setup(self):
        for m in ("veth", "sch_netem", "sch_tbf"):  # built in or modules: either way
            run(["modprobe", m], check=False)
        for role, ns in self.ns.items():
            run(["ip", "netns", "add", ns])
            self.made.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        p, e, d = self.ns["pub"], self.ns["edge"], self.ns["dev"]
        # each pair made straight into its namespaces: no name in the host's namespace
        run(["ip", "link", "add", "name", "leg1", "netns", p, "type", "veth", "peer", "name", "leg1",
             "netns", e])
        run(["ip", "link", "add", "name", "leg2", "netns", e, "type", "veth", "peer", "name", "leg2",
             "netns", d])
        for ns, dev, addr in ((p, "leg1", PUB_IP), (e, "leg1", EDGE_PUB_IP), (e, "leg2", EDGE_DEV_IP),
                              (d, "leg2", DEV_IP)):
            run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", p, "route", "add", "default", "via", EDGE_PUB_IP])
        run(["ip", "-n", d, "route", "add", "default", "via", EDGE_DEV_IP])
        self.ex("edge", "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def ends(self):
        return [("pub", "leg1"), ("edge", "leg1"), ("edge", "leg2"), ("dev", "leg2")]

    def shape(self, rtt_ms, rate, queue_ms):
        """netem delay RTT/4 on every veth end, a tbf child at rate with a queue of
        queue_ms at that rate."""
        bps = parse_rate(rate)
        qbytes = max(64 * 1024, int(bps / 8 * queue_ms / 1000))
        delay_us = max(1, int(rtt_ms * 1000 / 4))
        for role, dev in self.ends():
            ns = self.ns[role]
            run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=False)
            run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem",
                 "delay", f"{delay_us}us", "limit", "100000"])
            run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", "tbf",
                 "rate", rate, "burst", "256kb", "limit", str(qbytes)])
        return {"netem_delay_us_per_end": delay_us, "tbf_rate": rate, "tbf_limit_bytes": qbytes}

    def ping(self):
        if not shutil.which("ping"):
            return None
        p = self.ex("pub", "ping", "-n", "-q", "-c", "5", "-i", "0.2", "-W", "2", DEV_IP,
                    timeout=20, check=False)
        for line in p.stdout.splitlines():
            if "min/avg/max" in line:
                vals = line.split("=")[1].split()[0].split("/")
                return {"min_ms": float(vals[0]), "avg_ms": float(vals[1]), "max_ms": float(vals[2])}
        return None

    def apply(self, setting, cc):
        """Writes the setting into every namespace and reads it back."""
        got = {}
        for role, vals in SETTINGS[setting].items():
            for k, v in list(vals.items()) + [("net.ipv4.tcp_congestion_control", cc)]:
                self.ex(role, "sysctl", "-qw", f"{k}={v}")
            got[role] = {k: " ".join(self.ex(role, "sysctl", "-n", k).stdout.split())
                         for k in list(vals) + ["net.ipv4.tcp_congestion_control"]}
            for k, v in vals.items():
                if got[role][k] != v:
                    raise BenchError(f"{role}: {k} reads {got[role][k]!r} after writing {v!r}")
        return got

    def close(self):
        for ns in reversed(self.made):
            run(["ip", "netns", "del", ns], check=False)
        self.made = []


def parse_rate(rate):
    r = rate.lower().rstrip("bit").rstrip("bps")
    mult = {"k": 1e3, "m": 1e6, "g": 1e9}.get(r[-1:], 1)
    return float(r[:-1] if r[-1:] in "kmg" else r) * mult


def connects(ns, addr, port):
    def f():
        with socket.socket() as s:
            s.settimeout(2)
            return s.connect_ex((addr, port)) == 0
    return in_ns(ns, f)


def listens(pid, port):
    """pid's network namespace has a TCP listener on port (/proc/PID/net/tcp{,6})."""
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].split(":")[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


class Procs:
    def __init__(self, tmp):
        self.tmp, self.items = tmp, {}

    def start(self, name, ns, argv, cwd=None):
        self.stop(name)
        logf = open(self.tmp / f"{name}.log", "ab")
        try:
            p = subprocess.Popen(["ip", "netns", "exec", ns, *map(str, argv)], stdin=subprocess.DEVNULL,
                                 stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
        finally:
            logf.close()
        self.items[name] = p
        return p

    def alive(self, name):
        p = self.items.get(name)
        if p is None or p.poll() is not None:
            tail = (self.tmp / f"{name}.log").read_text(errors="replace").splitlines()[-20:]
            raise BenchError(f"{name} exited:\n" + "\n".join(tail))
        return True

    def stop(self, name):
        p = self.items.pop(name, None)
        if p is None or p.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                return
            try:
                p.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                pass

    def stop_all(self):
        for name in list(self.items)[::-1]:
            self.stop(name)


class Stack:
    """controld + relayd in edge, the nave client and iperf3 -s in dev, one TCP tunnel."""

    def __init__(self, net, procs, tmp, build, ktls):
        self.net, self.procs, self.tmp, self.build, self.ktls = net, procs, tmp, build, ktls
        self.ini, self.cini = tmp / "server.ini", tmp / "client.ini"

    def b(self, name):
        return self.build / name

    def nave(self, *args, timeout=30, check=True):
        return self.net.ex("dev", self.b("nave"), "--config", self.cini, *args, timeout=timeout, check=check)

    def ctl(self, *args):
        return self.net.ex("edge", self.b("navectl"), "--config", self.ini, *args)

    def setup(self):
        run_dir = self.tmp / "run"
        self.ini.write_text(
            "[server]\n"
            f"state_dir = {self.tmp}/var\n"
            f"runtime_dir = {run_dir}\n"
            "log_level = warn\n"
            "[listen]\n"
            f"http = {HTTP_PORT}\n"
            f"https = {HTTPS_PORT}\n"
            "address = 0.0.0.0\n"
            "[ports]\n"
            f"range = {RANGE[0]}-{RANGE[1]}\n"
            "reserve = off\n"
            "[datapath]\n"
            f"ktls = {self.ktls}\n")
        run([self.b("nave-controld"), "--check", "--config", self.ini])
        self.procs.start("controld", self.net.ns["edge"], [self.b("nave-controld"), "--config", self.ini],
                         cwd=self.tmp)
        wait_until("controld's control.sock",
                   lambda: self.procs.alive("controld") and (run_dir / "control.sock").exists(), 15)
        relayd = self.procs.start("relayd", self.net.ns["edge"], [self.b("nave-relayd"), "--config", self.ini],
                                  cwd=self.tmp)
        self.relayd_pid = relayd.pid

        def up():
            self.procs.alive("relayd")
            st = json.loads(self.ctl("--json", "status").stdout)
            return st if st.get("relay", {}).get("connected") else None

        st = wait_until("relayd connected to controld", lambda: _try(up), 20)
        self.server_status = st
        wait_until("relayd listening", lambda: listens(relayd.pid, HTTPS_PORT), 10)
        token = self.ctl("registration", "create").stdout.splitlines()[0].strip()
        self.nave("configure", "--server", f"{EDGE_DEV_IP}:{HTTPS_PORT}", "--registration", token,
                  "--fingerprint", st["tls_fingerprint"])
        lines = [ln for ln in self.cini.read_text().splitlines() if not ln.startswith(("log_level", "ktls"))]
        self.cini.write_text("\n".join(lines + ["log_level = warn", f"ktls = {self.ktls}"]) + "\n")
        srv = self.procs.start("iperf3-server", self.net.ns["dev"], ["iperf3", "-s", "-p", IPERF_PORT])
        wait_until("iperf3 -s", lambda: self.procs.alive("iperf3-server") and listens(srv.pid, IPERF_PORT), 10)
        self.start_client()
        out = self.nave("tunnel", "tcp", "add", "--to", f"127.0.0.1:{IPERF_PORT}").stdout.strip()
        self.port = int(out.split()[-1])
        wait_until(f"public port {self.port}", lambda: connects(self.net.ns["pub"], EDGE_PUB_IP, self.port), 15)

    def client_status(self):
        p = self.nave("--json", "status", check=False)
        try:
            return json.loads(p.stdout) if p.returncode == 0 else {}
        except ValueError:
            return {}

    def start_client(self):
        """(Re)starts the client: its data links are new sockets, made under the
        namespaces' current setting."""
        self.procs.stop("client")
        self.procs.start("client", self.net.ns["dev"], [self.b("nave"), "start", "--config", self.cini],
                         cwd=self.tmp)
        wait_until("nave client online",
                   lambda: self.procs.alive("client") and self.client_status().get("state") == "online", 20)

    def restart_iperf3_server(self):
        srv = self.procs.start("iperf3-server", self.net.ns["dev"], ["iperf3", "-s", "-p", IPERF_PORT])
        wait_until("iperf3 -s", lambda: self.procs.alive("iperf3-server") and listens(srv.pid, IPERF_PORT), 10)


def _try(fn):
    try:
        return fn()
    except (BenchError, ValueError, subprocess.TimeoutExpired):
        return None


def iperf3(net, addr, port, seconds, omit, reverse):
    argv = ["iperf3", "-c", addr, "-p", port, "-t", seconds, "-O", omit, "-J", "--connect-timeout", "5000"]
    if reverse:
        argv.append("-R")
    limit = seconds + omit + 30
    try:
        p = net.ex("pub", *argv, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"iperf3 to {addr}:{port} ran over {limit} s")
    try:
        j = json.loads(p.stdout)
    except ValueError:
        raise BenchError(f"iperf3 exit {p.returncode}, no JSON: {p.stdout[-300:]}{p.stderr[-300:]}")
    if "error" in j:
        raise BenchError(f"iperf3 to {addr}:{port}: {j['error']}")
    st = j["end"]["streams"][0]
    snd = st.get("sender", {})
    return {
        "mbps": round(j["end"]["sum_received"]["bits_per_second"] / 1e6, 1),
        "retransmits": j["end"]["sum_sent"].get("retransmits"),
        # the iperf3 sender's socket (pub up, dev down): its largest cwnd and RTT seen
        "sender_max_snd_cwnd": snd.get("max_snd_cwnd"),
        "sender_max_rtt_us": snd.get("max_rtt"),
        "sender_mean_rtt_us": snd.get("mean_rtt"),
    }


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 1) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--rtts", default="0.2,20,80", help="end-to-end RTTs in ms (pub to dev)")
    ap.add_argument("--rate", default="1gbit")
    ap.add_argument("--queue-ms", type=float, default=20.0)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--omit", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cc", default="cubic")
    ap.add_argument("--ktls", default="auto")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--directions", default=",".join(DIRECTIONS))
    ap.add_argument("--quick", action="store_true", help="1 round, 3 s samples, 1 s omitted")
    ap.add_argument("--out")
    ap.add_argument("--stdout", action="store_true", help="the JSON to stdout, no file")
    a = ap.parse_args()
    if a.quick:
        a.repeat, a.seconds, a.omit = 1, 3, 1
    if os.geteuid() != 0:
        print("tcpbuf: needs root (network namespaces, tc)", file=sys.stderr)
        return 2
    build = Path(a.build)
    if not build.is_absolute():
        build = ROOT / build
    for b in ("nave-controld", "nave-relayd", "navectl", "nave"):
        if not os.access(build / b, os.X_OK):
            print(f"tcpbuf: {build / b} missing (make)", file=sys.stderr)
            return 2
    rtts = [float(x) for x in a.rtts.split(",")]
    settings = [s for s in a.settings.split(",") if s]
    directions = [d for d in a.directions.split(",") if d]
    if not set(directions) <= set(DIRECTIONS):
        ap.error(f"--directions: {DIRECTIONS}")
    for s in settings:
        if s not in SETTINGS:
            ap.error(f"unknown setting {s}")
    host_before = {k: " ".join(run(["sysctl", "-n", k]).stdout.split())
                   for k in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.core.rmem_max",
                             "net.core.wmem_max", "net.ipv4.tcp_congestion_control",
                             "net.ipv4.tcp_allowed_congestion_control")}
    started = time.monotonic()
    # A namespace other than the host's may only pick a congestion control of the
    # (global) allowed list: cubic is added to it for the run and the list restored after.
    allowed_path = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control")
    allowed_before = allowed_path.read_text().split()
    result = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
        "what": "one iperf3 stream through a nave TCP tunnel and direct, over veth legs with netem "
                "delay and a tbf rate cap, TCP buffer maxima at Debian 12's defaults and raised",
        "topology": "pub ==leg1 (RTT/2)== edge (controld, relayd) ==leg2 (RTT/2)== dev (nave client, "
                    "iperf3 -s); direct: pub to dev routed by edge (RTT)",
        "rate": a.rate, "queue_ms": a.queue_ms, "iperf3_seconds": a.seconds, "iperf3_omit": a.omit,
        "repeat": a.repeat, "directions": directions, "congestion_control": a.cc, "ktls": a.ktls,
        "settings": {s: SETTINGS[s] for s in settings},
        "machine": {
            "kernel": platform.release(), "nproc": os.cpu_count(),
            "loadavg_start": open("/proc/loadavg").read().split()[:3],
            "iperf3": run(["iperf3", "--version"]).stdout.splitlines()[0],
            "host_sysctls": host_before,
            "git_commit": run(["git", "-C", ROOT, "rev-parse", "HEAD"], check=False).stdout.strip() or None,
        },
        "shaping": {}, "ping": {}, "samples": [], "errors": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="nave-tcpbuf-"))
    net, procs = Net(), Procs(tmp)
    try:
        if a.cc not in allowed_before:
            if a.cc not in Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split():
                run(["modprobe", f"tcp_{a.cc}"], check=False)
            allowed_path.write_text(" ".join(allowed_before + [a.cc]) + "\n")
        net.setup()
        net.apply(settings[0], a.cc)
        stack = Stack(net, procs, tmp, build, a.ktls)
        stack.setup()
        result["nave_relay"] = {k: stack.server_status.get("relay", {}).get(k) for k in ("steering", "ktls")}
        log(f"tunnel up: public port {stack.port}; {len(rtts)} RTTs x {len(settings)} settings, "
            f"{a.repeat} rounds of {a.seconds}+{a.omit} s samples")
        for rnd in range(a.repeat):
            for rtt in rtts:
                shaping = net.shape(rtt, a.rate, a.queue_ms)
                result["shaping"][str(rtt)] = shaping
                result["ping"].setdefault(str(rtt), []).append(net.ping())
                for setting in settings:
                    applied = net.apply(setting, a.cc)
                    result.setdefault("applied", {})[setting] = applied
                    paths = ["tunnel"] + (["direct"] if setting in DIRECT_SETTINGS else [])
                    for path in paths:
                        for direction in directions:
                            if path == "tunnel":
                                stack.start_client()
                                addr, port = EDGE_PUB_IP, stack.port
                            else:
                                addr, port = DEV_IP, IPERF_PORT
                            s = {"round": rnd + 1, "rtt_ms": rtt, "setting": setting, "path": path,
                                 "direction": direction}
                            try:
                                s.update(iperf3(net, addr, port, a.seconds, a.omit, direction == "down"))
                            except BenchError as e:
                                s["error"] = str(e)
                                result["errors"].append(s.copy())
                                log(f"error: {e}")
                                stack.restart_iperf3_server()
                            result["samples"].append(s)
                            log(f"round {rnd + 1} rtt {rtt} ms {setting:11} {path:6} {direction:4} "
                                f"{s.get('mbps')} Mbit/s (retr {s.get('retransmits')}, "
                                f"cwnd {s.get('sender_max_snd_cwnd')})")
        if "client" in procs.items:
            cs = stack.client_status()
            result["nave_client"] = {k: cs.get(k) for k in ("ktls", "links_ktls", "links_tls")}
    except BenchError as e:
        result["errors"].append({"fatal": str(e)})
        log(f"FAILED: {e}")
    finally:
        procs.stop_all()
        net.close()
        if os.environ.get("BENCH_KEEP") not in (None, "", "0"):
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        if allowed_path.read_text().split() != allowed_before:
            allowed_path.write_text(" ".join(allowed_before) + "\n")
    host_after = {k: " ".join(run(["sysctl", "-n", k]).stdout.split()) for k in host_before}
    result["machine"]["host_allowed_congestion_control"] = " ".join(allowed_before)
    result["machine"]["host_allowed_restored"] = allowed_path.read_text().split() == allowed_before
    result["machine"]["host_sysctls_unchanged"] = host_after == host_before
    result["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    result["summary"] = summarize(result, rtts, settings, directions)
    result["elapsed_seconds"] = round(time.monotonic() - started, 1)
    print_table(result)
    text = json.dumps(result, indent=1) + "\n"
    if a.stdout:
        # between markers: bench/tcpbuf.sh cuts it out of a guest's console
        print("TCPBUF-JSON-BEGIN\n" + text + "TCPBUF-JSON-END", flush=True)
    else:
        out = Path(a.out) if a.out else RESULTS / f"tcpbuf-{result['timestamp']}.json"
        out.write_text(text)
        log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    fatal = any("fatal" in e for e in result["errors"])
    return 1 if fatal else 0


def summarize(result, rtts, settings, directions):
    rows = []
    for rtt in rtts:
        for direction in directions:
            direct_debian = None
            for setting in settings:
                def pick(path, st=setting):
                    return [s.get("mbps") for s in result["samples"]
                            if s["rtt_ms"] == rtt and s["setting"] == st and s["path"] == path
                            and s["direction"] == direction]
                tun = pick("tunnel")
                # the edge only forwards the direct path's packets: edge-raised's direct is
                # the debian one, peers-raised's the raised one
                dset = {"edge-raised": "debian", "peers-raised": "raised"}.get(setting, setting)
                dirs = pick("direct", dset)
                row = {"rtt_ms": rtt, "direction": direction, "setting": setting,
                       "tunnel_mbps": med(tun), "tunnel_samples": tun,
                       "direct_mbps": med(dirs), "direct_samples": dirs,
                       "direct_setting": dset}
                row["ratio"] = (round(row["tunnel_mbps"] / row["direct_mbps"], 2)
                                if row["tunnel_mbps"] and row["direct_mbps"] else None)
                rows.append(row)
    return rows


def print_table(result):
    print(f"\nTCP buffers: one stream, {result['rate']}, queue {result['queue_ms']} ms, cc "
          f"{result['congestion_control']}, kernel {result['machine']['kernel']}")
    print(f"{'RTT ms':>7} {'dir':4} {'setting':11} {'tunnel Mbit/s':>13} {'direct Mbit/s':>13} {'ratio':>6}")
    for r in result["summary"]:
        print(f"{r['rtt_ms']:>7} {r['direction']:4} {r['setting']:11} {str(r['tunnel_mbps']):>13} "
              f"{str(r['direct_mbps']):>13}{'*' if r['direct_setting'] != r['setting'] else ' '} "
              f"{str(r['ratio']):>6}")
    print("* the direct path of the setting with the same pub and dev (the edge only forwards it)")
    for e in result["errors"]:
        print(f"error: {e}")


if __name__ == "__main__":
    sys.exit(main())

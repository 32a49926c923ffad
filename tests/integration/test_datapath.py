# SPDX-License-Identifier: Apache-2.0
"""Datapath behaviour beyond plain byte transport: backpressure from a slow
public reader (nothing buffers without limit) and the PROXY protocol header
the client puts in front of a stream towards the local service."""
import hashlib
import signal
import os
import socket
import struct
import threading
import time

import navetest as nt

KiB = nt.KiB
MiB = nt.MiB


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise nt.Failure(f"no VmRSS for {pid}")


def test_slow_reader_pushes_back(server, client, services):
    """The service writes 256 MiB as fast as it can; the public side reads
    nothing for 3 s. The writer must be held back through the link (it cannot
    have sent everything) and neither daemon may buffer the difference. Then
    every byte arrives intact."""
    total = 256 * MiB
    block = os.urandom(4 * MiB)
    want = hashlib.sha256()
    for _ in range(total // len(block)):
        want.update(block)
    sent = [0]

    def writer(c, svc):
        for _ in range(total // len(block)):
            c.sendall(block)
            sent[0] += len(block)
        c.shutdown(socket.SHUT_WR)
        svc.results.put("done")

    svc = services(writer, "writer")
    port = client.tcp_add(svc.port)
    # warm up both ends (receive rings, send-buffer pools) before the baseline
    warm = services(nt.h_exchange, "warm")
    nt.exchange(client.tcp_add(warm.port, name="warm"), 32 * MiB)
    relayd_pid, client_pid = server.relayd.pid, client.proc.pid
    base = rss_kib(relayd_pid) + rss_kib(client_pid)
    with nt.connect(port) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
        nt.wait_for(lambda: sent[0] > 0, 30, "the service to start writing")
        time.sleep(3)
        stalled_at = sent[0]
        grown = rss_kib(relayd_pid) + rss_kib(client_pid) - base
        assert stalled_at < total, "the writer was never held back"
        # Kernel socket buffers may hold tens of MiB; our daemons may not. ASan's
        # allocator (quarantine, shadow) makes RSS meaningless in build-san.
        if "san" not in nt.BUILD.name:
            assert grown < 8 * 1024, f"relayd+client grew by {grown} KiB while the reader stalled"
        got = hashlib.sha256()
        n = nt.recv_to_eof(s, got)
    assert n == total
    assert got.digest() == want.digest()
    assert svc.results.get(timeout=nt.IO_TIMEOUT) == "done"
    assert svc.errors == []


def _proxy_service(version):
    """Reads a PROXY header of the given version, reports the addresses, echoes the rest."""

    def handler(c, svc):
        if version == 1:
            line = b""
            while not line.endswith(b"\r\n"):
                line += nt.recv_exact(c, 1)
            parts = line.decode().split()
            svc.results.put(("v1", parts[1], parts[2], parts[3], int(parts[4]), int(parts[5])))
        else:
            hdr = nt.recv_exact(c, 16)
            assert hdr[:12] == b"\r\n\r\n\x00\r\nQUIT\n", hdr
            assert hdr[12] == 0x21
            fam, ln = hdr[13], struct.unpack(">H", hdr[14:16])[0]
            body = nt.recv_exact(c, ln)
            assert fam == 0x11 and ln == 12, (fam, ln)
            src, dst = socket.inet_ntoa(body[0:4]), socket.inet_ntoa(body[4:8])
            sport, dport = struct.unpack(">HH", body[8:12])
            svc.results.put(("v2", "TCP4", src, dst, sport, dport))
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)

    return handler


def _proxy_case(client, services, version):
    svc = services(_proxy_service(version), f"proxy-v{version}")
    p = client.nave("tunnel", "tcp", "add", "--to", f"127.0.0.1:{svc.port}",
                    "--proxy-protocol", f"v{version}")
    assert p.returncode == 0, p.stderr
    port = int(p.stdout.strip())
    with nt.connect(port) as s:
        payload = os.urandom(200 * KiB + 5)
        threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)),
                         daemon=True).start()
        echoed = hashlib.sha256()
        n = nt.recv_to_eof(s, echoed)
        me = s.getsockname()
    assert n == len(payload) and echoed.digest() == hashlib.sha256(payload).digest()
    kind, fam, src, dst, sport, dport = svc.results.get(timeout=nt.IO_TIMEOUT)
    assert (kind, fam) == (f"v{version}", "TCP4")
    assert (src, sport) == (me[0], me[1]), "PROXY source is the public client"
    assert (dst, dport) == ("127.0.0.1", port), "PROXY destination is the public port"
    assert svc.errors == []


def test_proxy_protocol_v1(client, services):
    _proxy_case(client, services, 1)


def test_proxy_protocol_v2(client, services):
    _proxy_case(client, services, 2)


def test_hello_then_close_before_welcome(server, make_client, services):
    """A control link that sends HELLO and closes before WELCOME reaches it: the
    tunnel must not be left half-online (refusing every later HELLO) and a
    public connection to its port must not crash relayd."""
    good, gport = nt.working_tunnel(make_client, services)
    rc, out, err = server.navectl("tokens", "create", "--id", "flaky")
    assert rc == 0, err
    token = out.splitlines()[0].strip()
    tid = server.navectl("tokens", "ls", json=True)["items"]
    tid = next(t["tunnel_id"] for t in tid if t["tunnel_id"] and t["id"] in out)
    port = server.navectl("ports", "allocate", "--tunnel", tid, json=True)["port"]
    for _ in range(20):
        s = nt.tls_connect(server.https)
        nt.msg_send(s, nt.hello(token))
        s.close()
    # whatever state those left, public connections are refused, not crashing
    for _ in range(5):
        try:
            with nt.connect(port, timeout=5) as c:
                c.sendall(b"x")
                c.recv(1)
        except OSError:
            pass
    assert server.relayd.alive(), nt.tail(server.relayd.output())
    # and the tunnel can come online for real afterwards
    link = nt.wait_for(lambda: _try_link(server.https, token), 30, "a HELLO to be welcomed")
    link.close()
    nt.exchange(gport, 64 * KiB)


def _try_link(https, token):
    try:
        return nt.ControlLink(https, token)
    except nt.Failure:
        return None


def test_connect_failures_do_not_wedge_links(server, client, services):
    """A rule whose local service is down, and public clients that send a lot
    at once: each stream is reset, and the links are not left stuck with
    unread input, so the tunnel keeps serving."""
    dead = nt.free_port()
    p = client.nave("tunnel", "tcp", "add", "--to", f"127.0.0.1:{dead}", "--name", "dead")
    assert p.returncode == 0, p.stderr
    dport = int(p.stdout.strip())
    payload = os.urandom(1 * MiB)

    def one():
        try:
            with nt.connect(dport, timeout=30) as s:
                s.sendall(payload)
                s.recv(1)
        except OSError:
            pass

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    svc = services(nt.h_exchange)
    port = client.tcp_add(svc.port, name="alive")
    for _ in range(20):
        nt.exchange(port, 64 * KiB)


def test_client_sigterm_finishes_running_download(server, client, services):
    """SIGTERM to the client while a download runs: the stream in flight is
    drained to the end, not cut (the final chunks and EOF are still queued
    when the link is told to close)."""
    size = 48 * MiB
    block = os.urandom(MiB)
    want = hashlib.sha256()
    for _ in range(size // MiB):
        want.update(block)

    def source(c, svc):
        for _ in range(size // MiB):
            c.sendall(block)
        c.shutdown(socket.SHUT_WR)

    svc = services(source, "source")
    port = client.tcp_add(svc.port)
    with nt.connect(port) as s:
        got = hashlib.sha256()
        first = nt.recv_exact(s, 64 * KiB)
        got.update(first)
        client.proc.signal(signal.SIGTERM)
        n = nt.recv_to_eof(s, got) + len(first)
    assert n == size and got.digest() == want.digest()
    assert client.wait_exit(30) == 0


def test_resets_reach_the_other_side(client, services):
    """A reset is a reset end to end, not a clean end: the service resets mid-
    download and the public side gets ECONNRESET (no FIN first); the public side
    resets mid-upload and the service gets ECONNRESET. Then the tunnel serves the
    next connections."""
    announce, before = 4 * MiB, 256 * KiB
    svc = services(nt.h_reset_midway(announce, before), "reset")
    port = client.tcp_add(svc.port)
    how, got = nt.download_until_reset(port, announce, before)
    assert (how, got) == ("reset", 0)
    assert svc.results.get(timeout=nt.IO_TIMEOUT) == ("reset_sent", before)
    sink = services(nt.h_sink_outcome, "sink")
    port = client.tcp_add(sink.port)
    s = nt.connect(port)
    nt.send_random(s, 512 * KiB, hashlib.sha256())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    assert sink.results.get(timeout=nt.IO_TIMEOUT)[0] == "reset"
    ok = services(nt.h_exchange, "after")
    port = client.tcp_add(ok.port)
    for _ in range(3):
        nt.exchange(port, 64 * KiB)

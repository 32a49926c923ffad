# SPDX-License-Identifier: Apache-2.0
"""A hostile peer on relayd's tunnel port once its link is in kernel TLS: it
completes a real TLS 1.3 handshake (Python's ssl, with the keylog file giving
its traffic keys) and then writes records of its own making (sealed with
those keys, or raw garbage). Every one must close that link only, with the
reason logged as a warning; relayd must not leak a descriptor or spin, and a
tunnel beside it keeps carrying exact bytes. Also: a KeyUpdate sent right
behind the Finished (so BoringSSL handles it before the link moves into the
kernel) must not leave the kernel on the retired keys. Runs in the guest with
the rest of tests/ktls (MODE on asserts the kTLS parts)."""
import os
import socket
import ssl
import struct
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

import navetest as nt
import test_ktls_guest as g
from test_ktls_guest import tun  # noqa: F401 (the module's own server, client and namespace)

PROCS = g.PROCS  # for the failure report (conftest.py)

pytestmark = pytest.mark.skipif(g.MODE != "on", reason="the hostile records target kTLS links (NAVE_KTLS=on)")


def hkdf_label(secret, label, n, md):
    info = struct.pack(">H", n) + bytes([6 + len(label)]) + b"tls13 " + label + b"\x00"
    return HKDFExpand(md, n, info).derive(secret)


class Peer:
    """A TLS 1.3 client of relayd's tunnel port that seals records by hand."""

    def __init__(self, port, tmp, cork_finished=False):
        self.keylog = tmp / f"keylog{time.monotonic_ns()}"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.set_alpn_protocols(["nave/1"])
        ctx.keylog_filename = str(self.keylog)
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        if cork_finished:  # the Finished waits for what we write next
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        self.s = ctx.wrap_socket(raw, do_handshake_on_connect=False)
        self.s.do_handshake()
        self.raw = socket.socket(fileno=os.dup(self.s.fileno()))
        name = self.s.cipher()[0]
        secret = next(bytes.fromhex(line.split()[2])
                      for line in self.keylog.read_text().splitlines()
                      if line.startswith("CLIENT_TRAFFIC_SECRET_0 "))
        md = hashes.SHA384() if "SHA384" in name else hashes.SHA256()
        klen = 16 if "AES_128" in name else 32
        key, self.iv = hkdf_label(secret, b"key", klen, md), hkdf_label(secret, b"iv", 12, md)
        self.aead = ChaCha20Poly1305(key) if "CHACHA" in name else AESGCM(key)
        self.seq = 0

    def record(self, ctype, payload):
        inner = payload + bytes([ctype])
        hdr = bytes([23, 3, 3]) + struct.pack(">H", len(inner) + 16)
        nonce = bytes(a ^ b for a, b in zip(self.iv, b"\0" * 4 + struct.pack(">Q", self.seq)))
        self.seq += 1
        return hdr + self.aead.encrypt(nonce, inner, hdr)

    def send(self, b):
        self.raw.sendall(b)

    def closed_within(self, t):
        self.raw.settimeout(t)
        try:
            while self.raw.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.raw.close()
        self.s.close()


CASES = {
    "close_notify": lambda p: p.record(21, b"\x01\x00"),
    "fatal_alert": lambda p: p.record(21, b"\x02\x28"),
    "key_update": lambda p: p.record(22, b"\x18\x00\x00\x01\x01"),
    "new_session_ticket": lambda p: p.record(22, b"\x04\x00\x00\x00"),
    "unknown_type": lambda p: p.record(99, b"xyz"),
    "heartbeat_type": lambda p: p.record(24, b"\x01\x00\x10" + b"A" * 16),
    "garbage": lambda p: os.urandom(200),
    "oversized_header": lambda p: b"\x17\x03\x03\xff\xff" + os.urandom(100),
    "unsealed_alert": lambda p: b"\x15\x03\x03\x00\x02\x02\x28",
}


def new_lines(proc, n0):
    return "\n".join(proc.output().splitlines()[n0:])


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def test_key_update_is_logged_and_closes(tun, tmp_path):
    """The first hostile record of this relayd: its reason is a warning (the
    same call site is rate-limited afterwards)."""
    relayd = tun.server.relayd
    n0 = len(relayd.output().splitlines())
    p = Peer(tun.server.https, tmp_path)
    time.sleep(0.3)  # the link is in the kernel now
    p.send(CASES["key_update"](p))
    assert p.closed_within(5)
    p.close()
    nt.wait_for(lambda: "peer sent KeyUpdate" in new_lines(relayd, n0), 5,
                "relayd's warning about the KeyUpdate")
    line = next(l for l in new_lines(relayd, n0).splitlines() if "peer sent KeyUpdate" in l)
    assert " warn " in line or '"level":"warn"' in line, line


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_record_closes_that_link_only(tun, tmp_path, case):
    p = Peer(tun.server.https, tmp_path)
    time.sleep(0.3)
    p.send(CASES[case](p))
    assert p.closed_within(5), f"{case}: relayd kept the link open"
    p.close()
    assert tun.server.relayd.alive()


def test_empty_data_record_is_not_an_end(tun, tmp_path):
    """A zero-length application-data record is legal TLS: no EOF, no close."""
    p = Peer(tun.server.https, tmp_path)
    time.sleep(0.3)
    p.send(p.record(23, b""))
    assert not p.closed_within(1)
    p.close()


def test_many_hostile_peers_no_leak_no_spin(tun, tmp_path):
    pid = tun.server.relayd.proc.pid
    port, _ = tun.rule(nt.h_exchange, "beside")
    nt.exchange(port, 1000)
    f0 = fds(pid)
    names = list(CASES)
    for i in range(60):
        p = Peer(tun.server.https, tmp_path)
        p.send(CASES[names[i % len(names)]](p))
        p.closed_within(2)
        p.close()
    time.sleep(2)
    f1 = fds(pid)
    c1 = cpu_ticks(pid)
    time.sleep(3)
    c2 = cpu_ticks(pid)
    nt.exchange(port, 100000)
    assert f1 <= f0 + 2, f"relayd holds {f1 - f0} more descriptors after 60 hostile peers"
    assert c2 - c1 < 100, f"relayd used {c2 - c1} ticks in 3 idle seconds"


def test_key_update_before_the_switch(tun, tmp_path):
    """The KeyUpdate rides behind the Finished, so BoringSSL takes it before
    the link moves into the kernel: the captured secret_0 is retired. relayd
    must not install it (that link is closed under ktls = on), so a record
    under the old key at a reused sequence number is never taken as data."""
    relayd = tun.server.relayd
    n0 = len(relayd.output().splitlines())
    p = Peer(tun.server.https, tmp_path, cork_finished=True)
    p.send(p.record(22, b"\x18\x00\x00\x01\x01"))  # KeyUpdate, update_requested
    p.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    time.sleep(0.5)
    p.seq = 0  # the retired key, at a nonce already used
    p.send(p.record(23, b"\x00\x00\x00\x05{bad}"))
    p.closed_within(5)
    p.close()
    time.sleep(0.3)
    log = new_lines(relayd, n0)
    assert "malformed JSON" not in log, f"relayd decrypted a record under a retired key:\n{log}"

# SPDX-License-Identifier: Apache-2.0
"""relayd's side of support streams (link_proto.h "Support streams"), spoken by
hand as a supporter's `nave support connect` would: a TLS link to the tunnel
port whose HELLO says mode "support". With the real daemons and a real device
client that requested the session (`nave support request`): refused before
approval, with a wrong key, for a service the request did not offer, with bad
fields (each one line); allowed: WELCOME, then OPENED and the stream reaches the
device (its BIND flagged LINK_BIND_SUPPORT); ending the session closes every
supporter link at once, and the audit has connected (from where, which service)
and disconnected (bytes, how long, why). A supporter of an approved session whose
handshake (SUP1, by hand) names another session of the same device, one the operator
never approved, is refused by the device: the edge joined the stream to the approved
session and the device checks that the handshake names that one."""
import base64
import hashlib
import hmac
import json
import os
import struct

import pytest

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

import navetest as nt


def auth_key(psk_text):
    """common/support.h: HKDF-SHA256(PSK, salt "", info "nave support auth v1"), hex."""
    b = psk_text.replace("-", "").upper()
    psk = base64.b32decode(b + "=" * (-len(b) % 8))
    prk = hmac.new(b"\0" * 32, psk, hashlib.sha256).digest()
    return hmac.new(prk, b"nave support auth v1\x01", hashlib.sha256).hexdigest()


@pytest.fixture
def session(server, client):
    p = client.nave("support", "request", "--json", "--allow",
                    "ssh=127.0.0.1:22,web=127.0.0.1:8080")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    return r["id"], auth_key(r["psk"])


def supporter(server, sid, service, auth, **extra):
    s = nt.tls_connect(server.https)
    hello = {"type": "hello", "version": 1, "mode": "support", "session": sid,
             "service": service, "auth": auth}
    hello.update(extra)
    nt.msg_send(s, hello)
    return s, nt.msg_recv(s)


def opened(s):
    """The OPENED frame that follows WELCOME: its status."""
    s.settimeout(nt.IO_TIMEOUT)
    f = nt.recv_exact(s, 12)
    word, _stream, status = struct.unpack(">IIB", f[:9])
    assert word == 0xFFFFFFFC, f.hex()
    return status


def test_refusals_then_a_stream(server, client, session):
    sid, auth = session
    _, m = supporter(server, sid, "ssh", auth)
    assert m == {"type": "error", "reason": f"support session {sid} is not approved yet"}
    server.navectl("support", "approve", sid)
    _, m = supporter(server, sid, "ssh", "0" * 64)
    assert m == {"type": "error", "reason": f"wrong key for support session {sid}"}
    _, m = supporter(server, sid, "ftp", auth)
    assert m["reason"] == f'service "ftp" is not offered by support session {sid}'
    for field, value, reason in [
        ("session", "sup-NOPE", "bad HELLO: session must be a support session id"),
        ("service", "a b", "bad HELLO: service must be 1-31 of [A-Za-z0-9_-]"),
        ("auth", auth.upper(), "bad HELLO: auth must be 64 lower-case hex digits"),
    ]:
        args = {"sid": sid, "service": "ssh", "auth": auth}
        args[{"session": "sid"}.get(field, field)] = value
        _, m = supporter(server, args["sid"], args["service"], args["auth"])
        assert m["type"] == "error" and m["reason"].startswith(reason), m
    s, m = supporter(server, sid, "web", auth)
    assert m["type"] == "welcome" and m["session"] == sid and m["service"] == "web"
    assert m["service_index"] == 1  # what the supporter's SUP1 carries
    assert opened(s) == 0  # LINK_OPEN_OK: the stream reached the device
    nt.wait_for(lambda: "a supporter reached service web" in server.relayd.output(), 10,
                "relayd logs the stream")
    audit = server.navectl("support", "show", sid, json=True)["audit"]
    conn = [a for a in audit if a["event"] == "connected"]
    assert conn and conn[-1]["detail"]["service"] == "web"
    assert conn[-1]["detail"]["source"].startswith("127.0.0.1:")


def test_end_closes_every_link(server, client, session):
    sid, auth = session
    server.navectl("support", "approve", sid)
    links = []
    for service in ("ssh", "web"):
        s, m = supporter(server, sid, service, auth)
        assert m["type"] == "welcome"
        assert opened(s) == 0
        links.append(s)
    # the device side resets (it has no gateway for the index here): EOF each; the
    # links stay until the session ends
    server.navectl("support", "end", sid)
    for s in links:
        assert nt.closed_by_peer(s, timeout=5), "a supporter link outlived its session"
    nt.wait_for(lambda: sum(a["event"] == "disconnected" for a in server.navectl(
        "support", "show", sid, json=True)["audit"]) == 2, 10, "two disconnected records")
    audit = server.navectl("support", "show", sid, json=True)["audit"]
    gone = [a["detail"] for a in audit if a["event"] == "disconnected"]
    assert all(d["why"] == "support session ended" for d in gone), gone
    assert all({"bytes_up", "bytes_down", "duration_ms"} <= set(d) for d in gone), gone
    # and nobody gets in after
    _, m = supporter(server, sid, "ssh", auth)
    assert m == {"type": "error", "reason": f"support session {sid} was ended"}


def test_device_offline(server, client, session):
    sid, auth = session
    server.navectl("support", "approve", sid)
    client.stop()
    _, m = supporter(server, sid, "ssh", auth)
    assert m == {"type": "error",
                 "reason": "the device of this support session is offline"}, m


def hkdf(salt, ikm, info):
    """HKDF-SHA256 with 32 bytes out (RFC 5869)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def psk_bytes(text):
    b = text.replace("-", "").upper()
    return base64.b32decode(b + "=" * (-len(b) % 8))


def read_stream(s, n):
    """n bytes of the stream from its chunk frames; b"" when it ends first."""
    out = b""
    s.settimeout(nt.IO_TIMEOUT)
    while len(out) < n:
        try:
            hdr = nt.recv_exact(s, 4)
        except (EOFError, OSError):
            return b""
        (word,) = struct.unpack(">I", hdr)
        if not 0 < word <= 65536:  # EOF or RESET
            return b""
        out += nt.recv_exact(s, word)
    return out


def inner_handshake(s, sid, index, psk_text):
    """common/support.h as the supporter: SUP1 naming sid and index, SUP2 checked, tag_s
    and one data record "hi". True when the device answered with a good SUP2."""
    key = X25519PrivateKey.generate()
    pub = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    sup1 = b"NVS1" + sid.encode() + bytes([index]) + os.urandom(32) + pub
    s.sendall(struct.pack(">I", len(sup1)) + sup1)
    sup2 = read_stream(s, 100)
    if not sup2:
        return False
    assert sup2[:4] == b"NVS2", sup2.hex()
    nonce_d, pub_d, tag_d = sup2[4:36], sup2[36:68], sup2[68:100]
    dh = key.exchange(X25519PublicKey.from_public_bytes(pub_d))
    th = hashlib.sha256(sup1 + nonce_d + pub_d).digest()
    ikm = psk_bytes(psk_text) + dh
    conf_d, conf_s = hkdf(th, ikm, b"d conf"), hkdf(th, ikm, b"s conf")
    assert hmac.compare_digest(hmac.new(conf_d, th, hashlib.sha256).digest(), tag_d)
    tag_s = hmac.new(conf_s, th + tag_d, hashlib.sha256).digest()
    ct = ChaCha20Poly1305(hkdf(th, ikm, b"s2d key")).encrypt(b"\0" * 12, b"hi\0", b"\x01")
    body = tag_s + len(ct).to_bytes(2, "big") + ct
    s.sendall(struct.pack(">I", len(body)) + body)
    return True


def test_handshake_names_another_session(server, client):
    def sink(c, svc):
        svc.results.put(c.recv(16))
    ssh = nt.Service(sink, "ssh")
    db = nt.Service(sink, "db")
    try:
        reqs = []
        for allow in (f"ssh=127.0.0.1:{ssh.port}", f"db=127.0.0.1:{db.port}"):
            p = client.nave("support", "request", "--json", "--allow", allow)
            assert p.returncode == 0, p.stderr
            r = json.loads(p.stdout)
            reqs.append((r["id"], r["psk"]))
        (a, pa), (b, pb) = reqs
        server.navectl("support", "approve", a)  # b stays pending
        # a's link, b's handshake (the supporter holds both keys): the device refuses
        s, m = supporter(server, a, "ssh", auth_key(pa))
        assert m["type"] == "welcome" and opened(s) == 0
        assert not inner_handshake(s, b, 0, pb), "a pending session was reached"
        nt.wait_for(lambda: f"support stream 1 for {b} refused: the handshake names another "
                    "session than the edge allowed" in client.proc.output(), 10,
                    "the device's refusal")
        s.close()
        # the same link and key for a itself: the device answers and the service is reached
        s, m = supporter(server, a, "ssh", auth_key(pa))
        assert m["type"] == "welcome" and opened(s) == 0
        assert inner_handshake(s, a, 0, pa)
        assert ssh.results.get(timeout=10) == b"hi"
        s.close()
        assert db.accepted == 0
    finally:
        ssh.close()
        db.close()

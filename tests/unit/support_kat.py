#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# The known answers of test_support.c (test_kat), computed independently of
# common/support.c: hashlib/hmac for SHA-256, HMAC and HKDF (RFC 5869 by hand),
# base64 for base32, python3-cryptography (Debian's, OpenSSL underneath) for
# X25519 and ChaCha20-Poly1305. Run: /usr/bin/python3 tests/unit/support_kat.py
import base64, hashlib, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives import serialization as ser

def hkdf_extract(salt, ikm): return hmac.new(salt, ikm, hashlib.sha256).digest()
def hkdf_expand(prk, info, n=32):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest(); out += t; i += 1
    return out[:n]
def raw(pub): return pub.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)

psk = bytes(range(32))
sid = b"sup-k3x9q2m7ab"
svc = 1
nonce_s = b"\x11" * 32
nonce_d = b"\x22" * 32
# RFC 7748 section 6.1: Alice (supporter) and Bob (device)
priv_s = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
priv_d = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
ks, kd = X25519PrivateKey.from_private_bytes(priv_s), X25519PrivateKey.from_private_bytes(priv_d)
pub_s, pub_d = raw(ks.public_key()), raw(kd.public_key())
dh = ks.exchange(X25519PublicKey.from_public_bytes(pub_d))
assert dh == kd.exchange(X25519PublicKey.from_public_bytes(pub_s))
assert dh.hex() == "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"  # RFC 7748

sup1 = b"NVS1" + sid + bytes([svc]) + nonce_s + pub_s
th = hashlib.sha256(sup1 + nonce_d + pub_d).digest()
prk = hkdf_extract(th, psk + dh)
k_s2d, k_d2s = hkdf_expand(prk, b"s2d key"), hkdf_expand(prk, b"d2s key")
conf_s, conf_d = hkdf_expand(prk, b"s conf"), hkdf_expand(prk, b"d conf")
tag_d = hmac.new(conf_d, th, hashlib.sha256).digest()
tag_s = hmac.new(conf_s, th + tag_d, hashlib.sha256).digest()
sup2 = b"NVS2" + nonce_d + pub_d + tag_d

def rec(key, seq, pt, dirb):
    ct = ChaCha20Poly1305(key).encrypt(b"\0" * 4 + seq.to_bytes(8, "big"), pt, bytes([dirb]))
    return len(ct).to_bytes(2, "big") + ct

r1 = rec(k_s2d, 0, b"hello\x00", 1)          # S->D data "hello"
r2 = rec(k_s2d, 1, b"\x01", 1)               # S->D end of direction
r3 = rec(k_d2s, 0, b"SSH-2.0-x\r\n\x00", 2)  # D->S data

auth_key = hkdf_expand(hkdf_extract(b"", psk), b"nave support auth v1")
auth_hash = hashlib.sha256(auth_key).digest()
b = base64.b32encode(psk).decode().rstrip("=")
pskfmt = "-".join(b[i:i + 4] for i in range(0, len(b), 4))

for name, v in [("sup1", sup1), ("sup2", sup2), ("tag_s", tag_s), ("th", th), ("k_s2d", k_s2d),
                ("k_d2s", k_d2s), ("rec_hello", r1), ("rec_end", r2), ("rec_d2s", r3),
                ("auth_key", auth_key), ("auth_hash", auth_hash)]:
    print(name, v.hex())
print("psk_text", pskfmt)

# SPDX-License-Identifier: Apache-2.0
"""The ACME test harness (acme_pebble.Pebble) proven without nave: a minimal
RFC 8555 client in this file against the real pebble, the reference for
nave-controld's own client.

One account key (ES256), JWS in flattened JSON with the raw r||s signature,
every POST retried on badNonce (pebble rejects 5 % of good nonces). The
http-01 answers come from a tiny http.server on the harness's http_port,
which records every request pebble's validator makes.
"""
import base64
import hashlib
import http.server
import json
import subprocess
import threading
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

import navetest as nt

TIMEOUT = 30.0  # one request, or one wait for a status
CHALLENGE = "/.well-known/acme-challenge/"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Acme:
    """A minimal ACME client: the directory, one EC P-256 account key, nonces."""

    def __init__(self, pb):
        self.ctx = pb.ssl_context()  # pebble's API certificate, verified
        self.dir = json.loads(self._http(urllib.request.Request(pb.directory))[2])
        self.key = ec.generate_private_key(ec.SECP256R1())
        n = self.key.public_key().public_numbers()
        self.jwk = {"crv": "P-256", "kty": "EC",  # RFC 7638: these members, this order
                    "x": b64u(n.x.to_bytes(32, "big")), "y": b64u(n.y.to_bytes(32, "big"))}
        canon = json.dumps(self.jwk, separators=(",", ":")).encode()
        self.thumbprint = b64u(hashlib.sha256(canon).digest())
        self.kid = None  # the account URL, after new_account
        self.nonce = None
        self.bad_nonces = 0

    def _http(self, req):
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT, context=self.ctx) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def post(self, url, payload):
        """A JWS POST (payload None: POST-as-GET): (status, headers, body)."""
        for _ in range(10):
            if self.nonce is None:
                req = urllib.request.Request(self.dir["newNonce"], method="HEAD")
                self.nonce = self._http(req)[1]["Replay-Nonce"]
            prot = {"alg": "ES256", "nonce": self.nonce, "url": url}
            prot.update({"kid": self.kid} if self.kid else {"jwk": self.jwk})
            p64 = b64u(json.dumps(prot).encode())
            b64 = "" if payload is None else b64u(json.dumps(payload).encode())
            der = self.key.sign(f"{p64}.{b64}".encode(), ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)  # JWS wants r||s, not DER
            sig = b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
            body = json.dumps({"protected": p64, "payload": b64, "signature": sig}).encode()
            st, h, data = self._http(urllib.request.Request(
                url, data=body, headers={"Content-Type": "application/jose+json"}))
            self.nonce = h.get("Replay-Nonce")  # every answer to a POST has one
            if (st == 400 and h.get_content_type() == "application/problem+json"
                    and json.loads(data)["type"] == "urn:ietf:params:acme:error:badNonce"):
                self.bad_nonces += 1
                continue
            return st, h, data
        raise nt.Failure(f"POST {url}: badNonce 10 times in a row")

    def post_json(self, url, payload, want=(200,)):
        st, h, data = self.post(url, payload)
        if st not in want:
            raise nt.Failure(f"POST {url}: HTTP {st}: {data.decode(errors='replace')}")
        return h, json.loads(data)

    def poll(self, url, until):
        """POST-as-GET url until its status is one of until; returns the object."""
        def done():
            obj = self.post_json(url, None)[1]
            return obj if obj["status"] in until else None

        return nt.wait_for(done, TIMEOUT, f"{url} to be one of {until}", interval=0.2)

    def new_account(self):
        h, acct = self.post_json(self.dir["newAccount"], {"termsOfServiceAgreed": True}, (201,))
        assert acct["status"] == "valid", acct
        self.kid = h["Location"]

    def order_http01(self, name, web):
        """newOrder for name, its authorization's http-01 answer put on web and
        the challenge responded to: (order URL, order, authz URL, token)."""
        h, order = self.post_json(self.dir["newOrder"],
                                  {"identifiers": [{"type": "dns", "value": name}]}, (201,))
        assert order["status"] == "pending", order  # authz_reuse=0: a fresh authorization
        authz_url = order["authorizations"][0]
        authz = self.post_json(authz_url, None)[1]
        assert authz["identifier"] == {"type": "dns", "value": name}, authz
        chal = next(c for c in authz["challenges"] if c["type"] == "http-01")
        web.answers[chal["token"]] = f"{chal['token']}.{self.thumbprint}"
        self.post_json(chal["url"], {})
        return h["Location"], order, authz_url, chal["token"]


class Http01:
    """Answers http-01 from .answers (token -> key authorization) on
    127.0.0.1:port; .seen holds (Host header, path) of every request."""

    def __init__(self, port):
        self.answers, self.seen = {}, []
        web = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                web.seen.append((self.headers["Host"], self.path))
                ka = web.answers.get(self.path[len(CHALLENGE):])
                if not self.path.startswith(CHALLENGE) or ka is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(ka)))
                self.end_headers()
                self.wfile.write(ka.encode())

            def log_message(self, *args):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def acme(pebble):
    """(Pebble, Http01 on its http_port, Acme client)."""
    web = Http01(nt.free_port())
    try:
        pb = pebble(web.srv.server_port)
        yield pb, web, Acme(pb)
    finally:
        web.close()


def split_pem(text):
    end = "-----END CERTIFICATE-----"
    return [p.strip() + "\n" + end + "\n" for p in text.split(end) if p.strip()]


def test_issue_verify_revoke(acme, tmp_path):
    pb, web, c = acme
    c.new_account()
    order_url, order, authz_url, token = c.order_http01("a.test", web)
    assert c.poll(authz_url, ("valid", "invalid"))["status"] == "valid"
    # the validator asked our listener, by name and port, for exactly that path
    assert (f"a.test:{web.srv.server_port}", CHALLENGE + token) in web.seen
    assert c.poll(order_url, ("ready", "invalid"))["status"] == "ready"

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.test")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.test")]), critical=False)
           .sign(key, hashes.SHA256()))
    c.post_json(order["finalize"], {"csr": b64u(csr.public_bytes(serialization.Encoding.DER))})
    order = c.poll(order_url, ("valid", "invalid"))
    assert order["status"] == "valid", order

    st, h, body = c.post(order["certificate"], None)
    assert st == 200 and h.get_content_type() == "application/pem-certificate-chain"
    pems = split_pem(body.decode())
    assert len(pems) == 2  # leaf + intermediate; the root is not in the chain
    leaf = x509.load_pem_x509_certificate(pems[0].encode())
    assert leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["a.test"]
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    files = {"roots.pem": pb.issuer_roots(), "inter.pem": "".join(pems[1:]), "leaf.pem": pems[0]}
    for n, t in files.items():
        (tmp_path / n).write_text(t)
    v = nt.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", tmp_path / "roots.pem",
                "-untrusted", tmp_path / "inter.pem", tmp_path / "leaf.pem"])
    assert v.returncode == 0, v.stdout + v.stderr
    assert pb.cert_status(leaf.serial_number)["Status"] == "Valid"

    der = leaf.public_bytes(serialization.Encoding.DER)
    st, h, body = c.post(c.dir["revokeCert"], {"certificate": b64u(der), "reason": 4})
    assert st == 200, body
    status = pb.cert_status(leaf.serial_number)
    assert (status["Status"], status.get("Reason")) == ("Revoked", 4), status
    st, h, body = c.post(c.dir["revokeCert"], {"certificate": b64u(der)})
    assert st == 400 and json.loads(body)["type"] == "urn:ietf:params:acme:error:alreadyRevoked"


def test_unreachable_challenge_is_invalid(acme):
    pb, web, c = acme
    pb.set_a("b.test", "127.0.0.9")  # nothing listens there
    assert pb.resolve("b.test") == ["127.0.0.9"]
    c.new_account()
    order_url, _, authz_url, _ = c.order_http01("b.test", web)
    authz = c.poll(authz_url, ("valid", "invalid"))
    assert authz["status"] == "invalid", authz
    chal = next(ch for ch in authz["challenges"] if ch["type"] == "http-01")
    assert chal["status"] == "invalid", chal
    assert chal["error"]["type"] == "urn:ietf:params:acme:error:connection", chal
    assert c.post_json(order_url, None)[1]["status"] == "invalid"
    assert web.seen == []
    pb.clear_a("b.test")
    assert pb.resolve("b.test") == ["127.0.0.1"]

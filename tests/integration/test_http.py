# SPDX-License-Identifier: Apache-2.0
"""The HTTP edge end to end: nave-relayd's [listen] http routes requests by
Host to the tunnel whose client holds the domain (`nave tunnel http add`), and
the client's rule sends them to a local web service. Real daemons, a real
client, real services; every byte checked.

Covered here: exact and wildcard hosts (most specific wins), two tunnels on
one edge, X-Forwarded-* added (and an untrusted incoming chain dropped), a
64 MiB upload and download, chunked and pipelined requests, Upgrade switching
to raw bytes, the edge's own answers (404, 400, 431, 408, 502), garbage, a
second claim of a held domain, and the edge staying up through all of it.
"""
import hashlib
import os
import socket
import threading
import time

import pytest

import navetest as nt
from navetest import KiB, MiB


@pytest.fixture
def server_ini():
    return "[http]\nheader_timeout = 2s\n"


# ---------------------------------------------------------------- a web service


def read_head(s):
    """Reads one request or response head from s: (first line, {name: value}, rest)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise nt.Failure(f"connection ended inside a head: {buf[:200]!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return lines[0], hdrs, rest


def read_body(s, hdrs, rest):
    """The body after a head: Content-Length or chunked. Returns (body, leftover)."""
    if "content-length" in hdrs:
        n = int(hdrs["content-length"][0])
        while len(rest) < n:
            chunk = s.recv(1 << 20)
            if not chunk:
                raise nt.Failure("connection ended inside a body")
            rest += chunk
        return rest[:n], rest[n:]
    if "chunked" in ",".join(hdrs.get("transfer-encoding", [])):
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += s.recv(1 << 20)
            line, rest = rest.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += s.recv(1 << 20)
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                return body, rest
    return b"", rest


def h_web(c, svc):
    """A keep-alive HTTP/1.1 service. GET /bytes/N answers N deterministic bytes,
    POST /sha answers the SHA-256 of the body, GET /ws answers 101 and echoes,
    anything else answers the request head it saw (so tests see the headers)."""
    rest = b""
    while True:
        try:
            line, hdrs, rest = read_head_from(c, rest)
        except EOFError:
            return
        method, target, _ = line.split(" ", 2)
        body, rest = read_body(c, hdrs, rest)
        svc.results.put((method, target, hdrs, len(body)))
        if target.startswith("/bytes/"):
            n = int(target.split("/")[2])
            c.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n".encode())
            send_pattern(c, n)
        elif target.startswith("/slow/"):
            time.sleep(int(target.split("/")[2]) / 1000)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
        elif target == "/sha":
            d = hashlib.sha256(body).hexdigest().encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(d), d))
        elif target == "/ws":
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\n\r\n")
            if rest:
                c.sendall(rest)
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)
        else:
            seen = (line + "\n" + "\n".join(f"{k}: {v}" for k, vs in hdrs.items()
                                           for v in vs)).encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Svc: %s\r\n\r\n%s"
                      % (len(seen), svc.name.encode(), seen))


def read_head_from(c, rest):
    buf = rest
    while b"\r\n\r\n" not in buf:
        chunk = c.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return lines[0], hdrs, rest


PATTERN = hashlib.sha256(b"nave").digest() * 2048  # 64 KiB


def send_pattern(c, n):
    while n:
        k = min(n, len(PATTERN))
        c.sendall(PATTERN[:k])
        n -= k


def pattern_hash(n):
    h = hashlib.sha256()
    while n:
        k = min(n, len(PATTERN))
        h.update(PATTERN[:k])
        n -= k
    return h.hexdigest()


# ---------------------------------------------------------------- helpers


def http_add(c, domain, to_port, *extra, name=None):
    args = ["tunnel", "http", "add", "--domain", domain, "--to", f"127.0.0.1:{to_port}"]
    if name:
        args += ["--name", name]
    p = c.nave(*args, *extra)
    if p.returncode != 0:
        raise nt.Failure(f"nave tunnel http add {domain}: exit {p.returncode}: {p.stderr}")
    return p


def connect(server):
    s = socket.create_connection(("127.0.0.1", server.http), timeout=nt.IO_TIMEOUT)
    s.settimeout(nt.IO_TIMEOUT)
    return s


def request(server, host, target="/", method="GET", body=b"", headers=""):
    """One request on a new connection: (status, headers, body)."""
    s = connect(server)
    try:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{headers}"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        line, hdrs, rest = read_head(s)
        data = b"" if method == "HEAD" else read_body(s, hdrs, rest)[0]
        return int(line.split()[1]), hdrs, data
    finally:
        s.close()


def wait_routed(server, host):
    """The grant reaches every worker a moment after `http add` returns."""
    return nt.wait_for(lambda: request(server, host)[0] == 200, 10, f"{host} routed")


# ---------------------------------------------------------------- the cases


def test_routes_by_host_exact_and_wildcard(server, make_client, services):
    a = make_client("a")
    b = make_client("b")
    sa = services(h_web, "svc-a")
    sb = services(h_web, "svc-b")
    sw = services(h_web, "svc-wild")
    http_add(a, "app.example.test", sa.port)
    http_add(b, "other.example.test", sb.port)
    http_add(b, "*.example.test", sw.port, name="wild")
    for host, svc in (("app.example.test", "svc-a"), ("other.example.test", "svc-b"),
                      ("x.example.test", "svc-wild"), ("a.b.example.test", "svc-wild"),
                      ("APP.Example.Test:80", "svc-a")):
        wait_routed(server, host)
        status, hdrs, body = request(server, host)
        assert status == 200 and hdrs["x-svc"] == [svc], (host, status, hdrs)
    # the apex is not under its wildcard
    assert request(server, "example.test")[0] == 404
    assert request(server, "nothing.invalid")[0] == 404


def test_forwarded_headers(server, client, services):
    s = services(h_web, "svc")
    http_add(client, "fwd.example.test", s.port)
    wait_routed(server, "fwd.example.test")
    status, _, body = request(server, "fwd.example.test", "/echo",
                              headers="X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n"
                                      "X-Forwarded-Proto: gopher\r\n")
    seen = body.decode()
    assert status == 200
    assert "x-forwarded-for: 127.0.0.1" in seen and "6.6.6.6" not in seen, seen
    assert "x-forwarded-proto: http" in seen and "gopher" not in seen, seen
    assert "x-forwarded-host: fwd.example.test" in seen, seen
    assert f"x-forwarded-port: {server.http}" in seen, seen
    assert "host: fwd.example.test" in seen, seen


def test_big_upload_and_download_exact(server, client, services):
    s = services(h_web, "svc")
    http_add(client, "big.example.test", s.port)
    wait_routed(server, "big.example.test")
    n = 64 * MiB
    conn = connect(server)
    try:
        # download
        conn.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: big.example.test\r\n\r\n".encode())
        line, hdrs, rest = read_head(conn)
        assert line.startswith("HTTP/1.1 200"), line
        h = hashlib.sha256()
        got = len(rest)
        h.update(rest)
        while got < n:
            d = conn.recv(1 << 20)
            assert d, f"download ended at {got}"
            h.update(d)
            got += len(d)
        assert got == n and h.hexdigest() == pattern_hash(n)
        # upload, chunked, on the same connection
        conn.sendall(b"POST /sha HTTP/1.1\r\nHost: big.example.test\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        h = hashlib.sha256()
        left = n
        while left:
            k = min(left, 1 * MiB - 7)
            part = os.urandom(k)
            h.update(part)
            conn.sendall(b"%x\r\n" % k + part + b"\r\n")
            left -= k
        conn.sendall(b"0\r\n\r\n")
        line, hdrs, rest = read_head(conn)
        body, _ = read_body(conn, hdrs, rest)
        assert body.decode() == h.hexdigest()
    finally:
        conn.close()


def test_pipelined_requests(server, client, services):
    s = services(h_web, "svc")
    http_add(client, "pipe.example.test", s.port)
    wait_routed(server, "pipe.example.test")
    conn = connect(server)
    try:
        reqs = b""
        for i in range(50):
            if i % 3 == 1:
                body = os.urandom(1000 + i)
                reqs += (b"POST /sha HTTP/1.1\r\nHost: pipe.example.test\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body)) + body
            else:
                reqs += b"GET /bytes/%d HTTP/1.1\r\nHost: pipe.example.test\r\n\r\n" % (i * 37)
        conn.sendall(reqs)
        rest = b""
        for i in range(50):
            line, hdrs, rest = read_head_from(conn, rest)
            body, rest = read_body(conn, hdrs, rest)
            assert line.startswith("HTTP/1.1 200"), (i, line)
            if i % 3 != 1:
                assert body == (PATTERN * 2)[:i * 37], i
            else:
                assert len(body) == 64, i
    finally:
        conn.close()
    # every request reached the service with our headers
    seen = [s.results.get(timeout=5) for _ in range(50)]
    assert all("x-forwarded-for" in h for _, _, h, _ in seen)


def test_upgrade_goes_raw(server, client, services):
    s = services(h_web, "svc")
    http_add(client, "ws.example.test", s.port)
    wait_routed(server, "ws.example.test")
    conn = connect(server)
    try:
        conn.sendall(b"GET /ws HTTP/1.1\r\nHost: ws.example.test\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\n\r\n")
        line, hdrs, rest = read_head(conn)
        assert line.startswith("HTTP/1.1 101"), line
        # after the 101, bytes that are no HTTP at all go both ways unchanged
        for size in (1, 100, 70000):
            data = os.urandom(size)
            conn.sendall(data)
            got = rest
            while len(got) < size:
                got += conn.recv(1 << 20)
            rest = got[size:]
            assert got[:size] == data
    finally:
        conn.close()


def test_refused_upgrade_keeps_parsing(server, client, services):
    """An Upgrade the service answers with 200 leaves the connection HTTP: the
    next request is still checked and rewritten (no smuggling behind it)."""
    s = services(h_web, "svc")
    http_add(client, "noup.example.test", s.port)
    wait_routed(server, "noup.example.test")
    conn = connect(server)
    try:
        conn.sendall(b"GET /echo HTTP/1.1\r\nHost: noup.example.test\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\n\r\n"
                     b"GET /echo HTTP/1.1\r\nHost: noup.example.test\r\n"
                     b"X-Forwarded-For: 6.6.6.6\r\n\r\n")
        rest = b""
        for i in range(2):
            line, hdrs, rest = read_head_from(conn, rest)
            body, rest = read_body(conn, hdrs, rest)
            assert line.startswith("HTTP/1.1 200"), (i, line)
        seen = body.decode()
        assert "x-forwarded-for: 127.0.0.1" in seen and "6.6.6.6" not in seen, seen
    finally:
        conn.close()


def raw_answer(server, data):
    """What the HTTP listener answers to data, until it closes."""
    return raw_answer_port(server.http, data)

def status_of(answer):
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer.split()[1])


def test_edge_answers_bad_requests(server, client, services):
    s = services(h_web, "svc")
    http_add(client, "ok.example.test", s.port)
    wait_routed(server, "ok.example.test")
    assert status_of(raw_answer(server, b"GET / HTTP/1.1\r\n\r\n")) == 400  # no Host
    # an address is no name anyone can claim (http_head_host)
    assert status_of(raw_answer(server, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) == 400
    assert status_of(raw_answer(server, b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")) == 400
    assert status_of(raw_answer(server, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")) == 400
    assert status_of(raw_answer(server, b"\x16\x03\x01garbage\r\n\r\n")) in (400, 501)
    big = b"GET / HTTP/1.1\r\nHost: ok.example.test\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert status_of(raw_answer(server, big)) == 431
    smuggle = (b"POST / HTTP/1.1\r\nHost: ok.example.test\r\nContent-Length: 4\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert status_of(raw_answer(server, smuggle)) == 400
    ans = raw_answer(server, b"GET / HTTP/1.1\r\nHost: unknown.example.test\r\n\r\n")
    assert status_of(ans) == 404
    # the page says what happened, names nothing the client sent
    assert b"unknown.example.test" not in ans
    # none of it reached the service; the route still works
    assert s.results.qsize() <= 1
    assert request(server, "ok.example.test")[0] == 200
    # each answer counted by cause, shown by navectl status
    def counted():
        h = server.navectl("status", json=True)["relay"].get("http") or {}
        return h if h.get("unknown_host", 0) >= 1 and h.get("too_large", 0) >= 1 else False

    h = nt.wait_for(counted, 10, "the edge's counters in navectl status")
    assert h["no_host"] >= 3 and h["bad_request"] >= 2 and h["requests"] >= 2, h
    text = server.navectl("status")[1]
    assert "the edge answered:" in text, text


def test_header_timeout_and_slowloris(server, client, services):
    s = services(h_web, "svc")
    http_add(client, "slow.example.test", s.port)
    wait_routed(server, "slow.example.test")
    slow = []
    for _ in range(200):
        c = connect(server)
        c.sendall(b"GET / HTTP/1.1\r\nHost: slow.exa")
        slow.append(c)
    try:
        # others are served meanwhile
        for _ in range(20):
            assert request(server, "slow.example.test")[0] == 200
        # the slow ones get 408 at header_timeout (2 s here) and are closed
        t0 = time.monotonic()
        for c in slow:
            c.settimeout(15)
            out = b""
            while True:
                d = c.recv(4096)
                if not d:
                    break
                out += d
            assert status_of(out) == 408
        assert time.monotonic() - t0 < 15
    finally:
        for c in slow:
            c.close()


def test_offline_tunnel_502_and_back(server, client, services):
    s = services(h_web, "svc")
    http_add(client, "off.example.test", s.port)
    wait_routed(server, "off.example.test")
    client.stop()
    nt.wait_for(lambda: request(server, "off.example.test")[0] == 502, 15, "502 while offline")
    client.start()
    wait_routed(server, "off.example.test")


def test_second_claim_refused(server, make_client, services):
    a = make_client("a")
    b = make_client("b")
    s = services(h_web, "svc")
    http_add(a, "held.example.test", s.port)
    p = b.nave("tunnel", "http", "add", "--domain", "held.example.test", "--to",
               f"127.0.0.1:{s.port}")
    assert p.returncode == 1, p
    assert a.tunnel_id in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    wait_routed(server, "held.example.test")
    status, hdrs, _ = request(server, "held.example.test")
    assert status == 200
    # the domain shows in navectl, held by a
    doms = server.navectl("domains", "ls", json=True)["items"]
    assert [(d["domain"], d["tunnel_id"]) for d in doms] == [("held.example.test",
                                                              a.tunnel_id)], doms


def test_many_keepalive_clients(server, client, services):
    """Concurrent keep-alive clients through one tunnel, every response right."""
    s = services(h_web, "svc")
    http_add(client, "many.example.test", s.port)
    wait_routed(server, "many.example.test")
    n, errors = 200, []

    def one(i):
        try:
            conn = connect(server)
            rest = b""
            for k in range(3):
                size = 100 + i * 7 + k
                conn.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: many.example.test\r\n\r\n"
                             % size)
                line, hdrs, rest = read_head_from(conn, rest)
                body, rest = read_body(conn, hdrs, rest)
                if body != (PATTERN * 2)[:size]:
                    errors.append((i, k, "bad body"))
            conn.close()
        except Exception as e:  # noqa: BLE001
            errors.append((i, repr(e)))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[:5]


def test_basic_auth_at_the_edge(server, client, services):
    import base64
    s = services(h_web, "svc")
    http_add(client, "auth.example.test", s.port, "--basic-auth", "alice:s3cret pass")
    # the client stores and sends only the hash
    assert "s3cret" not in client.ini.read_text()

    def cred(u, p):
        return "Authorization: Basic " + base64.b64encode(f"{u}:{p}".encode()).decode() + "\r\n"

    ok = cred("alice", "s3cret pass")
    nt.wait_for(lambda: request(server, "auth.example.test", "/echo", headers=ok)[0] == 200,
                10, "auth.example.test routed")
    status, hdrs, _ = request(server, "auth.example.test")
    assert status == 401 and hdrs["www-authenticate"][0].startswith("Basic realm="), hdrs
    assert request(server, "auth.example.test", headers=cred("alice", "wrong"))[0] == 401
    assert request(server, "auth.example.test", headers=cred("bob", "s3cret pass"))[0] == 401
    assert request(server, "auth.example.test", headers="Authorization: Basic !!!\r\n")[0] == 401
    status, _, body = request(server, "auth.example.test", "/echo", headers=ok)
    assert status == 200
    # the service never sees the edge's credentials
    assert "authorization" not in body.decode().lower(), body
    # every request of a keep-alive connection is checked: one without stops the connection
    conn = connect(server)
    try:
        conn.sendall(b"GET /bytes/10 HTTP/1.1\r\nHost: auth.example.test\r\n" + ok.encode()
                     + b"\r\nGET /bytes/11 HTTP/1.1\r\nHost: auth.example.test\r\n\r\n")
        line, hdrs, rest = read_head_from(conn, b"")
        body, rest = read_body(conn, hdrs, rest)
        assert line.startswith("HTTP/1.1 200") and len(body) == 10
        tail = rest
        while True:
            d = conn.recv(65536)
            if not d:
                break
            tail += d
        assert tail == b"", tail[:100]
    finally:
        conn.close()


def test_redirect_https(server, client, services):
    s = services(h_web, "svc")
    http_add(client, "redir.example.test", s.port, "--redirect-https")
    nt.wait_for(lambda: request(server, "redir.example.test")[0] == 308, 10, "308")
    status, hdrs, _ = request(server, "redir.example.test", "/a/b?c=d")
    assert status == 308
    assert hdrs["location"] == [f"https://redir.example.test:{server.https}/a/b?c=d"], hdrs
    assert s.results.qsize() == 0


# ---------------------------------------------------------------- HTTPS


def make_cert(dirpath, name):
    """A self-signed P-256 certificate for name: (cert path, key path, DER bytes)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cp, kp = dirpath / f"{name}.crt", dirpath / f"{name}.key"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return cp, kp, cert.public_bytes(serialization.Encoding.DER)


class TlsEcho:
    """A TLS service of its own (its own certificate): echoes what it reads."""

    def __init__(self, cert, key):
        import ssl
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            s = self.ctx.wrap_socket(c, server_side=True)
            while True:
                d = s.recv(65536)
                if not d:
                    break
                s.sendall(d)
            s.close()
        except OSError:
            c.close()

    def close(self):
        self.stopping = True
        self.sock.close()


def tls_connect(server, sni):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", server.https), timeout=nt.IO_TIMEOUT)
    return ctx.wrap_socket(raw, server_hostname=sni)


def test_https_passthrough_sees_the_services_certificate(server, client, tmp_path):
    cert, key, der = make_cert(tmp_path, "pass.example.test")
    svc = TlsEcho(cert, key)
    try:
        http_add(client, "pass.example.test", svc.port, "--tls-passthrough")

        def up():
            try:
                tls_connect(server, "pass.example.test").close()
                return True
            except OSError:
                return False

        nt.wait_for(up, 10, "pass.example.test routed")
        s = tls_connect(server, "pass.example.test")
        try:
            # the certificate is the service's own: the edge never saw plaintext
            assert s.getpeercert(binary_form=True) == der
            # (an SSL socket is not for two threads at once: chunk by chunk)
            data = os.urandom(3 * MiB)
            got = b""
            for off in range(0, len(data), 64 * KiB):
                s.sendall(data[off:off + 64 * KiB])
                while len(got) < min(off + 64 * KiB, len(data)):
                    d = s.recv(1 << 20)
                    assert d, f"the echo ended at {len(got)}"
                    got += d
            assert got == data
        finally:
            s.close()
    finally:
        svc.close()


def test_https_unknown_sni_and_bad_input_refused(server, client, services):
    import ssl
    s = services(h_web, "svc")
    http_add(client, "plainonly.example.test", s.port)
    wait_routed(server, "plainonly.example.test")
    # an SNI nobody serves: unrecognized_name
    for sni in ("nobody.example.test", None):
        with pytest.raises(ssl.SSLError) as e:
            tls_connect(server, sni).close()
        assert "UNRECOGNIZED_NAME" in str(e.value) or "unrecognized name" in str(e.value), e.value
    # plain HTTP to the HTTPS port: a 400 page
    ans = raw_answer_port(server.https, b"GET / HTTP/1.1\r\nHost: plainonly.example.test\r\n\r\n")
    assert status_of(ans) == 400
    # a TLS record that is no ClientHello: an alert and close
    ans = raw_answer_port(server.https, b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")
    assert ans[:1] == b"\x15", ans
    # tunnels still connect on the shared port, HTTP still routes
    assert request(server, "plainonly.example.test")[0] == 200
    c2 = nt.Client(server, client.dir.parent, [], "late")
    c2.configure()


def raw_answer_port(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=nt.IO_TIMEOUT)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            out += d
        return out
    finally:
        s.close()


def https_request(server, sni, host, target="/", ctx_hook=None):
    s = tls_connect(server, sni)
    try:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        line, hdrs, rest = read_head(s)
        body, _ = read_body(s, hdrs, rest)
        return int(line.split()[1]), hdrs, body, s.getpeercert(binary_form=True)
    finally:
        s.close()


def test_reload_swaps_an_edge_certificate(server, client, services, tmp_path):
    """SIGHUP reads the certificate directory again at once, even a change its
    5 s look would miss (same names, sizes and times): a new client gets the
    new certificate, a connection already open keeps the old one."""
    import signal as sig

    certs = server.dir / "var" / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    s = services(h_web, "svc")
    http_add(client, "swap.example.test", s.port)
    cp, kp, old_der = make_cert(certs, "swap.example.test")

    def peer():
        try:
            status, _, _, der = https_request(server, "swap.example.test", "swap.example.test")
            return der if status == 200 else None
        except OSError:
            return None

    nt.wait_for(lambda: peer() == old_der, 20, "the first certificate served")
    held = tls_connect(server, "swap.example.test")
    held.sendall(b"GET / HTTP/1.1\r\nHost: swap.example.test\r\n\r\n")
    line, hdrs, rest = read_head(held)
    read_body(held, hdrs, rest)
    assert line.split()[1] == "200", line
    # another certificate of the very same sizes, written over the pair with the
    # old times: nothing the directory's signature looks at changes
    st_c, st_k = cp.stat(), kp.stat()
    for _ in range(200):
        ncp, nkp, new_der = make_cert(tmp_path, "swap.example.test")
        if ncp.stat().st_size == st_c.st_size and nkp.stat().st_size == st_k.st_size:
            break
    else:
        pytest.skip("no certificate of the same size in 200 tries")
    cp.write_bytes(ncp.read_bytes())
    kp.write_bytes(nkp.read_bytes())
    os.utime(cp, ns=(st_c.st_atime_ns, st_c.st_mtime_ns))
    os.utime(kp, ns=(st_k.st_atime_ns, st_k.st_mtime_ns))
    time.sleep(6)  # longer than the 5 s look: it does not see the change
    assert peer() == old_der, "the change was seen without a reload"
    server.relayd.signal(sig.SIGHUP)
    nt.wait_for(lambda: peer() == new_der, 10, "the new certificate after SIGHUP")
    # the connection opened before the reload still works, on its old certificate
    try:
        assert held.getpeercert(binary_form=True) == old_der
        held.sendall(b"GET / HTTP/1.1\r\nHost: swap.example.test\r\n\r\n")
        line, _, _ = read_head(held)
        assert line.split()[1] == "200", line
    finally:
        held.close()


def test_https_terminated_at_the_edge(server, client, services):
    certs = server.dir / "var" / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    s = services(h_web, "svc")
    http_add(client, "term.example.test", s.port)
    http_add(client, "*.wild.example.test", s.port, name="wild")
    # certificates dropped into the directory are picked up without a restart
    _, _, der = make_cert(certs, "term.example.test")
    cp, kp, wder = make_cert(certs, "x.wild.example.test")
    cp.rename(certs / "_wildcard.wild.example.test.crt")
    kp.rename(certs / "_wildcard.wild.example.test.key")

    def served():
        try:
            return https_request(server, "term.example.test", "term.example.test")[0] == 200
        except OSError:
            return False

    nt.wait_for(served, 20, "the certificate loaded and term.example.test routed")
    status, hdrs, body, peer = https_request(server, "term.example.test", "term.example.test",
                                             "/echo")
    assert status == 200 and peer == der
    seen = body.decode()
    assert "x-forwarded-proto: https" in seen and f"x-forwarded-port: {server.https}" in seen
    # the wildcard certificate, a name under it
    status, _, _, peer = https_request(server, "a.wild.example.test", "a.wild.example.test")
    assert status == 200 and peer == wder
    # after termination a request may only name what the certificate covers: another
    # host is a 421 (no domain fronting), and one level below a wildcard is not under it
    assert https_request(server, "term.example.test", "nobody.example.test")[0] == 421
    assert https_request(server, "a.wild.example.test", "term.example.test")[0] == 421
    with pytest.raises(OSError):
        https_request(server, "a.b.wild.example.test", "a.b.wild.example.test")
    # 64 MiB each way over the terminated connection, every byte
    n = 64 * MiB
    conn = tls_connect(server, "term.example.test")
    try:
        conn.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: term.example.test\r\n\r\n".encode())
        line, hdrs, rest = read_head(conn)
        h = hashlib.sha256(rest)
        got = len(rest)
        while got < n:
            d = conn.recv(1 << 20)
            assert d, f"download ended at {got}"
            h.update(d)
            got += len(d)
        assert got == n and h.hexdigest() == pattern_hash(n)
        body = os.urandom(n)
        conn.sendall(b"POST /sha HTTP/1.1\r\nHost: term.example.test\r\nContent-Length: %d\r\n\r\n"
                     % n)
        conn.sendall(body)
        line, hdrs, rest = read_head(conn)
        got, _ = read_body(conn, hdrs, rest)
        assert got.decode() == hashlib.sha256(body).hexdigest()
    finally:
        conn.close()
    # where the kernel has TLS, terminated connections move into it like the links
    relay = server.navectl("status", json=True)["relay"]
    print(f"ktls {relay['ktls']!r}, terminated connections in kTLS: "
          f"{relay['http']['tls_kernel']}")
    if relay["ktls"] == "kernel":
        nt.wait_for(lambda: (server.navectl("status", json=True)["relay"]["http"]
                             or {}).get("tls_kernel", 0) >= 1, 15,
                    "a terminated connection in kTLS")

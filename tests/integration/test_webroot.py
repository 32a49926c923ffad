# SPDX-License-Identifier: Apache-2.0
"""HTTP rules of the client (nave tunnel http add) and its webroot server.

relayd's HTTP edge is not built yet, so a small fake relay in this file
stands in for it on the control link: it answers HELLO with WELCOME, records
what the client sends (tcp_sync, http_add, http_rm), grants some domains
with a route and refuses others with req_error, and holds the data links
the client opens. The webroot server is then spoken to directly on its
AF_UNIX socket (nave status --json names it). One test runs the real relayd
to show that an older relay ignores http_add and keeps the TCP rules whole.
"""
import hashlib
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
from email.utils import formatdate

import pytest

import navetest as nt

LINK_MAGIC = 0x4E56444C


# ---------------------------------------------------------------- the fake relay


class FakeRelay:
    """TLS 1.3 with ALPN nave/1 on a free port; one thread per connection."""

    def __init__(self, tmp):
        self.dir = tmp / "fake"
        self.dir.mkdir()
        crt, key = self.dir / "c.crt", self.dir / "c.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "2", "-subj", "/CN=localhost"], check=True,
                       capture_output=True)
        der = ssl.PEM_cert_to_DER_cert(crt.read_text())
        self.fingerprint = hashlib.sha256(der).hexdigest()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(crt, key)
        self.ctx.set_alpn_protocols(["nave/1"])
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.messages = []  # every control message from the client, in order
        self.grant = {}  # domain -> route; other domains are refused
        self.refuse_reason = "domain held by tunnel t-other"
        self.lock = threading.Lock()
        self.control = None
        self.data = []  # TLS sockets of data links (after DATA_HELLO)
        self.closed = False
        self.tunnel_id = "t-fake"  # what the welcome names
        self.send_lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(s,), daemon=True).start()

    def _recv(self, s, n):
        b = b""
        while len(b) < n:
            chunk = s.recv(n - len(b))
            if not chunk:
                raise EOFError
            b += chunk
        return b

    def send(self, obj, s=None):
        # the test's thread and the connection's (answers, heartbeats) both send: one
        # SSL socket must not take two writes at once, or a frame comes out mangled
        data = json.dumps(obj).encode()
        with self.send_lock:
            (s or self.control).sendall(struct.pack(">I", len(data)) + data)

    def _conn(self, raw):
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
            first = self._recv(s, 4)
            if struct.unpack(">I", first)[0] == LINK_MAGIC:
                self._recv(s, 68)
                with self.lock:
                    self.data.append(s)
                while s.recv(65536):
                    pass
                return
            n = struct.unpack(">I", first)[0]
            hello = json.loads(self._recv(s, n))
            assert hello["type"] == "hello"
            self.control = s
            self.send({"type": "welcome", "tunnel_id": self.tunnel_id, "link_secret": "ab" * 32,
                       "limits": {"max_pool_size": 2, "max_links": 16, "heartbeat": 10,
                                  "max_ports": 5}})
            while True:
                n = struct.unpack(">I", self._recv(s, 4))[0]
                m = json.loads(self._recv(s, n))
                with self.lock:
                    self.messages.append(m)
                self._answer(s, m)
        except (EOFError, OSError, ssl.SSLError, ValueError):
            pass

    def _answer(self, s, m):
        t = m["type"]
        if t == "heartbeat":
            self.send({"type": "heartbeat_ack"}, s)
        elif t == "tcp_sync":
            self.send({"type": "tcp_synced", "req": m["req"], "released": []}, s)
        elif t == "http_add":
            route = self.grant.get(m["domain"])
            if route:
                self.send({"type": "http_grant", "req": m["req"], "name": m["name"],
                           "domain": m["domain"], "route": route}, s)
            else:
                self.send({"type": "req_error", "req": m["req"],
                           "reason": self.refuse_reason}, s)
        elif t == "http_rm":
            self.send({"type": "http_removed", "req": m["req"], "name": m["name"],
                       "domain": m["domain"]}, s)

    def of_type(self, t):
        with self.lock:
            return [m for m in self.messages if m["type"] == t]

    def drop_control(self):
        s, self.control = self.control, None
        if s:
            s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self):
        self.closed = True
        self.lsock.close()
        self.drop_control()
        for s in self.data:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def fake(tmp_path):
    f = FakeRelay(tmp_path)
    yield f
    f.close()


class FakeClient:
    """A nave client configured by hand for the fake relay."""

    def __init__(self, fake, tmp, procs):
        self.dir = tmp / "client"
        self.dir.mkdir()
        self.ini = self.dir / "c.ini"
        self.ini.write_text(f"[client]\nserver = 127.0.0.1:{fake.port}\ntoken = nvt_fake\n"
                            f"fingerprint = {fake.fingerprint}\nlog_level = debug\n"
                            f"pool_idle = 1\n")
        self.proc = nt.Proc("nave(fake)", [nt.NAVE, "start", "--config", self.ini],
                            self.dir / "nave.log", self.dir)
        procs.append(self.proc)

    def nave(self, *args):
        return nt.run([nt.NAVE] + list(args) + ["--config", self.ini])

    def status(self):
        p = self.nave("--json", "status")
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    def start(self):
        self.proc.start()
        nt.wait_for(lambda: Path_exists(str(self.ini) + ".sock")
                    and self.status().get("state") == "online", 30, "client online")

    def http_rules(self):
        return {r["name"]: r for r in self.status().get("http_rules", [])}


def Path_exists(p):
    return os.path.exists(p)


@pytest.fixture
def fclient(fake, tmp_path, procs):
    c = FakeClient(fake, tmp_path, procs)
    yield c
    if c.proc.proc is not None and c.proc.alive():
        nt.check_exit("nave start (fake)", c.proc.stop(), c.proc.output())
    for p in procs:
        p.kill()


# ---------------------------------------------------------------- control link


def test_http_rules_on_the_control_link(fake, fclient, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    fake.grant = {"app.example.com": 7, "*.pages.example.com": 9}
    # saved while stopped: sent after WELCOME, after tcp_sync
    p = fclient.nave("tunnel", "http", "add", "--domain", "taken.example.com", "--to",
                     "127.0.0.1:8080", "--name", "taken")
    assert p.returncode == 0, p.stderr
    p = fclient.nave("tunnel", "tcp", "add", "--to", "127.0.0.1:22", "--name", "ssh")
    assert p.returncode == 0, p.stderr
    fclient.start()
    rules = nt.wait_for(lambda: (r := fclient.http_rules()).get("taken", {}).get("state")
                        == "refused" and r, 20, "the saved rule refused")
    assert rules["taken"]["reason"] == fake.refuse_reason
    sync = fake.of_type("tcp_sync")
    assert sync and sorted(sync[0]["names"]) == ["ssh", "taken"]
    kinds = [m["type"] for m in fake.messages]
    assert kinds.index("tcp_sync") < kinds.index("http_add")
    add = fake.of_type("http_add")[0]
    assert add == {"type": "http_add", "req": add["req"], "name": "taken",
                   "domain": "taken.example.com"}  # nothing unset, no false booleans
    log = fclient.proc.output()
    assert f"rule taken: the server refused it: {fake.refuse_reason}" in log

    # live: granted, with every option sent
    p = fclient.nave("tunnel", "http", "add", "--domain", "App.Example.com", "--to",
                     "127.0.0.1:8080", "--redirect-https", "--host-header", "localhost:8080",
                     "--basic-auth", "bob:correct horse")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "app-example-com: app.example.com granted"
    add = fake.of_type("http_add")[-1]
    assert add["redirect_https"] is True and "tls_passthrough" not in add
    assert add["host_header"] == "localhost:8080"
    user, _, h = add["basic_auth"].partition(":")
    assert user == "bob" and h.startswith("$scrypt$ln=14,r=8,p=1$")
    assert "correct horse" not in fclient.ini.read_text()
    assert add["basic_auth"] in fclient.ini.read_text()
    rule = fclient.http_rules()["app-example-com"]
    assert rule["state"] == "granted" and rule["route"] == 7
    assert rule["flags"] == ["redirect_https", "host_header", "basic_auth"]
    assert "rule app-example-com: http://app.example.com -> 127.0.0.1:8080" in \
        fclient.proc.output()

    # live and refused: one line, exit 1, not kept
    p = fclient.nave("tunnel", "http", "add", "--domain", "no.example.com", "--to",
                     "127.0.0.1:8080")
    assert p.returncode == 1
    assert nt.user_lines(p.stderr) == [f"nave: {fake.refuse_reason}"]
    assert "no-example-com" not in fclient.http_rules()

    # the webroot rule for a wildcard
    p = fclient.nave("--json", "tunnel", "http", "add", "--domain", "*.pages.example.com",
                     "--webroot", www)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["route"] == 9

    # tunnel ls: both kinds, in both forms
    human = fclient.nave("tunnel", "ls").stdout
    assert "ssh" in human and "wildcard-pages-example-com" in human
    assert f"refused: {fake.refuse_reason}" in human
    js = json.loads(fclient.nave("--json", "tunnel", "ls").stdout)
    assert {(r["name"], r.get("type", "tcp")) for r in js} == {
        ("ssh", "tcp"), ("taken", "http"), ("app-example-com", "http"),
        ("wildcard-pages-example-com", "http")}
    assert [r["name"] for r in json.loads(fclient.nave("--json", "tunnel", "tcp", "ls").stdout)] \
        == ["ssh"]

    # live removal: http_rm once granted
    p = fclient.nave("tunnel", "rm", "app-example-com")
    assert p.returncode == 0, p.stderr
    rm = fake.of_type("http_rm")
    assert rm and rm[-1]["name"] == "app-example-com" and rm[-1]["domain"] == "app.example.com"
    assert "app-example-com" not in fclient.ini.read_text()

    # routes last one session: a lost link clears them, a new one grants again
    n_adds = len(fake.of_type("http_add"))
    fake.drop_control()
    nt.wait_for(lambda: fclient.http_rules()["wildcard-pages-example-com"]["state"]
                != "granted", 20, "the route cleared with the session")
    nt.wait_for(lambda: fclient.http_rules()["wildcard-pages-example-com"]["state"]
                == "granted", 30, "granted again after the reconnect")
    assert len(fake.of_type("http_add")) >= n_adds + 2


# ---------------------------------------------------------------- the webroot server


def http(sock_path, raw, read_all=True):
    """Sends raw bytes to the webroot socket, returns everything up to EOF or one response."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock_path)
    s.sendall(raw)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
        if not read_all and response_complete(out):
            break
    s.close()
    return out


def response_complete(buf):
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.lower() == b"content-length":
            return len(body) >= int(v)
    return True


def parse(resp):
    """[(status, headers, body)] of every response in resp."""
    out = []
    while resp:
        head, _, rest = resp.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            hdrs[k.strip().lower().decode()] = v.strip().decode()
        n = int(hdrs.get("content-length", "0"))
        if hdrs.get("x-head"):  # never set: a marker for HEAD handled by the caller
            n = 0
        out.append((status, hdrs, rest[:n]))
        resp = rest[n:]
    return out


def get(sock_path, path, host="site.pages.example.com", extra="", method="GET"):
    raw = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    resp = http(sock_path, raw.encode())
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        hdrs[k.strip().lower().decode()] = v.strip().decode()
    return int(lines[0].split()[1]), hdrs, body


@pytest.fixture
def site(fake, fclient, tmp_path):
    """A running client with a granted webroot rule: (socket path, webroot dir)."""
    www = tmp_path / "www"
    (www / "sub").mkdir(parents=True)
    (www / "index.html").write_text("<h1>home</h1>\n")
    (www / "sub" / "index.html").write_text("sub home\n")
    (www / "data.bin").write_bytes(bytes(range(256)) * 3 + b"tail")
    (www / "a b.txt").write_text("spaced\n")
    (tmp_path / "secret.txt").write_text("outside\n")
    os.symlink(tmp_path / "secret.txt", www / "escape.txt")
    os.symlink("data.bin", www / "inside-link.bin")
    os.mkfifo(www / "fifo")
    fake.grant = {"*.pages.example.com": 3}
    fclient.start()
    p = fclient.nave("tunnel", "http", "add", "--domain", "*.pages.example.com", "--webroot",
                     www, "--name", "pages")
    assert p.returncode == 0, p.stderr
    st = fclient.status()
    sock = st["webroot_socket"]
    mode = os.stat(sock).st_mode & 0o777
    assert mode == 0o600, oct(mode)
    return sock, www


def test_webroot_get_head_and_types(site):
    sock, www = site
    st, h, body = get(sock, "/")
    assert st == 200 and body == b"<h1>home</h1>\n"
    assert h["content-type"] == "text/html; charset=utf-8"
    assert h["content-length"] == str(len(body))
    assert h["last-modified"] == formatdate(int(os.stat(www / "index.html").st_mtime),
                                            usegmt=True)
    st, h, body = get(sock, "/data.bin", method="HEAD")
    assert st == 200 and body == b"" and h["content-length"] == str(256 * 3 + 4)
    assert h["content-type"] == "application/octet-stream"
    st, h, body = get(sock, "/a%20b.txt?x=1#frag")
    assert st == 200 and body == b"spaced\n" and h["content-type"].startswith("text/plain")
    st, h, body = get(sock, "/sub/")
    assert st == 200 and body == b"sub home\n"
    st, h, _ = get(sock, "/sub")
    assert st == 301 and h["location"] == "/sub/"
    st, _, body = get(sock, "/inside-link.bin")
    assert st == 200 and len(body) == 256 * 3 + 4
    # the Host picks the webroot: a name the wildcard does not cover has none
    assert get(sock, "/", host="pages.example.com")[0] == 404
    assert get(sock, "/", host="x.pages.example.com:8443")[0] == 200
    assert get(sock, "/", host="bad host")[0] == 400


def test_webroot_keep_alive_and_pipelining(site):
    sock, _ = site
    raw = (b"GET /index.html HTTP/1.1\r\nHost: a.pages.example.com\r\n\r\n"
           b"HEAD /data.bin HTTP/1.1\r\nHost: a.pages.example.com\r\n\r\n"
           b"GET /nope HTTP/1.1\r\nHost: a.pages.example.com\r\nConnection: close\r\n\r\n")
    resp = http(sock, raw)
    first, _, rest = resp.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200") and rest.startswith(b"<h1>home</h1>\n")
    rest = rest[len(b"<h1>home</h1>\n"):]
    second, _, rest = rest.partition(b"\r\n\r\n")
    assert second.startswith(b"HTTP/1.1 200") and b"Content-Length: 772" in second
    assert rest.startswith(b"HTTP/1.1 404")


def test_webroot_ranges(site):
    sock, www = site
    data = (www / "data.bin").read_bytes()
    n = len(data)
    for a in range(n):
        st, h, body = get(sock, "/data.bin", extra=f"Range: bytes={a}-{a}\r\n")
        assert st == 206 and body == data[a:a + 1], a
        assert h["content-range"] == f"bytes {a}-{a}/{n}"
    st, h, body = get(sock, "/data.bin", extra="Range: bytes=700-\r\n")
    assert st == 206 and body == data[700:]
    st, h, body = get(sock, "/data.bin", extra="Range: bytes=-10\r\n")
    assert st == 206 and body == data[-10:] and h["content-range"] == f"bytes {n - 10}-{n - 1}/{n}"
    st, h, body = get(sock, "/data.bin", extra="Range: bytes=5-100000\r\n")
    assert st == 206 and body == data[5:]
    st, h, body = get(sock, "/data.bin", extra=f"Range: bytes={n}-\r\n")
    assert st == 416 and h["content-range"] == f"bytes */{n}"
    st, _, body = get(sock, "/data.bin", extra="Range: bytes=0-1,5-6\r\n")
    assert st == 200 and body == data
    st, _, body = get(sock, "/data.bin", extra="Range: pages=1-2\r\n")
    assert st == 200 and body == data


def test_webroot_conditional(site):
    sock, www = site
    mtime = int(os.stat(www / "index.html").st_mtime)
    st, h, body = get(sock, "/", extra=f"If-Modified-Since: {formatdate(mtime, usegmt=True)}\r\n")
    assert st == 304 and body == b"" and "content-length" not in h
    old = formatdate(mtime - 3600, usegmt=True)
    assert get(sock, "/", extra=f"If-Modified-Since: {old}\r\n")[0] == 200
    assert get(sock, "/", extra="If-Modified-Since: yesterday\r\n")[0] == 200


def test_webroot_refuses(site):
    sock, _ = site
    for path in ["/../etc/passwd", "/%2e%2e/etc/passwd", "/sub/%2E%2E/%2e%2e/secret.txt",
                 "/..%2fsecret.txt", "/a%5cb", "/a\\b", "/x%00y", "/%zz", "//etc/passwd",
                 "/./index.html", "http://a.pages.example.com/index.html"]:
        st, _, body = get(sock, path)
        assert st in (400, 404), (path, st)
        assert b"outside" not in body
    # a symlink out of the webroot
    st, _, body = get(sock, "/escape.txt")
    assert st == 404 and b"outside" not in body
    # no listing, no FIFO, nothing that is not there
    (sock_dir_status := get(sock, "/fifo")[0])
    assert sock_dir_status == 404
    assert get(sock, "/missing.html")[0] == 404
    st, h, _ = get(sock, "/", method="POST")
    assert st == 405 and h["allow"] == "GET, HEAD"
    assert get(sock, "/", method="DELETE")[0] == 405
    # two Host headers, none, a head too large
    assert http(sock, b"GET / HTTP/1.1\r\nHost: a.pages.example.com\r\nHost: b.pages.example.com"
                      b"\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert http(sock, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")
    big = b"GET / HTTP/1.1\r\nHost: a.pages.example.com\r\nX: " + b"a" * 17000 + b"\r\n\r\n"
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock)
    try:
        s.sendall(big)
    except OSError:
        pass
    assert s.recv(100).startswith(b"HTTP/1.1 431")
    s.close()


def test_webroot_socket_removed_on_exit(site, fclient):
    sock, _ = site
    assert os.path.exists(sock)
    nt.check_exit("nave start (fake)", fclient.proc.stop(), fclient.proc.output())
    assert not os.path.exists(sock)


# ---------------------------------------------------------------- against the real relayd


def test_http_and_tcp_rules_together(server, make_client, services):
    """An HTTP rule saved while stopped is granted at start beside a TCP rule."""
    c = make_client("both", start=False)
    p = c.nave("tunnel", "http", "add", "--domain", "app.example.com", "--to", "127.0.0.1:1")
    assert p.returncode == 0, p.stderr
    svc = services(nt.h_exchange)
    c.start()
    port = c.tcp_add(svc.port, name="web")
    nt.exchange(port, 4096)
    # tcp_sync named both rules: the TCP rule's port stays, the HTTP rule is granted
    assert port in server.ports(c.tunnel_id)
    nt.wait_for(lambda: [(r["name"], r["state"]) for r in c.status()["http_rules"]]
                == [("app-example-com", "granted")], 10, "the HTTP rule granted")
    assert c.proc.alive()

# SPDX-License-Identifier: Apache-2.0
"""Admin users, two-factor, sessions and API keys on the remote admin API (issue 11, items 5-6).

A real nave-controld with [admin] listen (TLS with the self-signed server
certificate it makes in state_dir/tls, verified here by Python's ssl with
that certificate as the CA): users added, listed, changed and removed with
navectl (passwords on stdin only); logins with password and TOTP codes from
oathtool; wrong passwords, wrong codes and replayed codes refused with one
answer; the lockout after 5 failures, the per-address limit and the logins a second; sessions
that end (idle, absolute, logout, a new password); CSRF; API keys created,
used (navectl --server) and revoked; a walk of every route of
`nave-controld --list-routes` that none answers without authentication;
bodies over the limit, bad JSON, unknown routes; no secret in any answer;
and control.sock as it was, without login.
"""
import hashlib
import http.client
import json
import re
import select
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import navetest as nt

USER_RE = re.compile(r"^[a-z0-9._-]+$")
RATE = {"error": "too many logins: try again in a second"}
FAILED = (401, {"error": "login failed"})
TOO_MANY = (429, {"error": "too many failed logins: try again later"})


def need_oathtool():
    if not shutil.which("oathtool"):
        pytest.fail("oathtool is not installed (tests/deps.sh)")


def oath(secret, at=None):
    cmd = ["oathtool", "--totp", "-b", secret]
    if at is not None:
        cmd += ["--now", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


class Admin:
    """A controld with [admin] listen and an HTTPS client of it."""

    def __init__(self, tmp, procs, extra=""):
        self.port = nt.free_port()
        self.srv = nt.Server(tmp, procs, extra_ini=f"[admin]\nlisten = 127.0.0.1:{self.port}\n" + extra)
        self.srv.start_controld()
        self.cert = self.srv.dir / "var" / "tls" / "server.crt"
        self.url = f"https://localhost:{self.port}"

    def ctx(self, verify=True):
        c = ssl.create_default_context(cafile=str(self.cert) if verify else None)
        return c

    def req(self, method, path, body=None, headers=None, raw=None, cookie=None, key=None,
            csrf=None, source=None):
        """(status, json or None, headers); source: the local address to connect from."""
        h = {"Content-Type": "application/json", "Connection": "close"}
        h.update(headers or {})
        if cookie:
            h["Cookie"] = f"nave_session={cookie}"
        if key:
            h["Authorization"] = f"Bearer {key}"
        if csrf:
            h["X-CSRF-Token"] = csrf
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is None and method not in ("GET", "HEAD"):
            data = b""
        conn = http.client.HTTPSConnection("localhost", self.port, context=self.ctx(),
                                           timeout=nt.IO_TIMEOUT,
                                           source_address=(source, 0) if source else None)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            text = r.read()
            return r.status, (json.loads(text) if text.strip() else None), r
        finally:
            conn.close()

    def login(self, user, password, totp=None, source=None):
        """A login; a 429 of the logins a second (not of failures) is waited out."""
        body = {"user": user, "password": password}
        if totp is not None:
            body["totp"] = totp
        for _ in range(20):
            st, j, r = self.req("POST", "/api/v1/login", body, source=source)
            if (st, j) != (429, RATE):
                break
            assert r.getheader("Retry-After") == "1"
            time.sleep(1)
        cookie = None
        sc = r.getheader("Set-Cookie")
        if sc:
            cookie = sc.split(";")[0].split("=", 1)[1]
        return st, j, cookie, sc

    def navectl(self, *args, stdin=None):
        return subprocess.run([str(nt.NAVECTL), "--config", str(self.srv.ini), *args],
                              input=stdin, capture_output=True, text=True, timeout=nt.CMD_TIMEOUT)

    def add_user(self, name, password, two_factor=False):
        p = self.navectl("users", "add", name, "--password-stdin", stdin=password + "\n")
        assert p.returncode == 0, p.stderr
        assert p.stdout == f"user {name} added\n"
        if not two_factor:
            return None
        p = self.navectl("--json", "users", "two-factor", "enable", name)
        assert p.returncode == 0, p.stderr
        j = json.loads(p.stdout)
        assert re.fullmatch(r"[A-Z2-7]{32}", j["secret"])
        assert j["uri"] == (f"otpauth://totp/nave:{name}?secret={j['secret']}&issuer=nave"
                            "&algorithm=SHA1&digits=6&period=30")
        return j["secret"]

    def key(self, desc="test"):
        p = self.navectl("--json", "apikeys", "create", "--description", desc)
        assert p.returncode == 0, p.stderr
        j = json.loads(p.stdout)
        assert re.fullmatch(r"nvk_[0-9a-f]{8}_[0-9a-f]{64}", j["key"])
        return j["id"], j["key"]


@pytest.fixture
def admin(tmp_path, procs):
    need_oathtool()
    a = Admin(tmp_path, procs)
    yield a
    a.srv.stop()


def test_tls_is_verified(admin):
    # the server certificate verifies against itself as the CA, for its name
    st, j, _ = admin.req("GET", "/api/v1/status")
    assert (st, j) == (401, {"error": "authentication required"})
    # without it as CA the handshake fails verification
    conn = http.client.HTTPSConnection("localhost", admin.port,
                                       context=ssl.create_default_context(), timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/api/v1/status")
    conn.close()
    # the admin listener's certificate is relayd's server certificate (same file, same fingerprint)
    der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", admin.port)))
    fp = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert admin.srv.navectl("status", json=True)["tls_fingerprint"] == fp


def test_users_lifecycle_and_login(admin):
    secret = admin.add_user("alice", "correct horse battery", two_factor=True)
    p = admin.navectl("users", "ls")
    assert p.returncode == 0
    assert re.search(r"^alice\s+yes\s", p.stdout, re.M), p.stdout
    # duplicate, bad names, short passwords: one line, exit 1 or 2
    p = admin.navectl("users", "add", "alice", "--password-stdin", stdin="another password\n")
    assert (p.returncode, p.stderr) == (1, "navectl: user alice exists\n")
    p = admin.navectl("users", "add", "Bad/Name", "--password-stdin", stdin="long enough pw\n")
    assert p.returncode == 1 and "a user name is 1-32 characters" in p.stderr
    p = admin.navectl("users", "add", "bob", "--password-stdin", stdin="short\n")
    assert (p.returncode, p.stderr) == (1, "navectl: a password is 8-1024 bytes\n")
    p = admin.navectl("users", "add", "bob", stdin="")  # no tty, no --password-stdin
    assert p.returncode == 2 and "--password-stdin" in p.stderr
    p = admin.navectl("users", "add", "bob", "hunter22hunter22")  # never in argv
    assert p.returncode == 2

    # password without the code, a wrong code, a wrong password: one answer for all
    assert admin.login("alice", "correct horse battery")[:2] == (401, {"error": "login failed"})
    far = oath(secret, time.time() + 600)
    assert admin.login("alice", "correct horse battery", far)[:2] == (401, {"error": "login failed"})
    code = oath(secret)
    assert admin.login("alice", "wrong password!!", code)[:2] == (401, {"error": "login failed"})
    assert admin.login("nobody", "correct horse battery", code)[:2] == (401, {"error": "login failed"})
    st, j, cookie, sc = admin.login("alice", "correct horse battery", code)
    assert st == 200, j
    assert set(j) == {"user", "csrf", "expires"} and j["user"] == "alice"
    assert re.fullmatch(r"[0-9a-f]{64}", cookie)
    assert sc == f"nave_session={cookie}; Path=/; HttpOnly; Secure; SameSite=Strict"
    # the same code again: a replay
    assert admin.login("alice", "correct horse battery", code)[:2] == (401, {"error": "login failed"})
    log = admin.srv.controld.output()
    for why in ("no TOTP code", "wrong TOTP code", "wrong password", "no such user",
                "TOTP code replayed"):
        assert why in log, why
    # the session answers
    st, s, _ = admin.req("GET", "/api/v1/session", cookie=cookie)
    assert (st, s["user"], s["csrf"]) == (200, "alice", j["csrf"])
    st, users, _ = admin.req("GET", "/api/v1/users", cookie=cookie)
    assert st == 200 and users["items"][0]["last_login"] is not None
    # the login cleared the count; the replay after it counts
    assert users["items"][0]["failed_logins"] == 1

    # CSRF: a cookie's POST needs the header
    st, e, _ = admin.req("POST", "/api/v1/apikeys", {}, cookie=cookie)
    assert (st, e) == (403, {"error": "missing or wrong CSRF token"})
    st, e, _ = admin.req("POST", "/api/v1/apikeys", {}, cookie=cookie, csrf="0" * 64)
    assert st == 403
    st, k, _ = admin.req("POST", "/api/v1/apikeys", {"description": "by alice"}, cookie=cookie,
                         csrf=j["csrf"])
    assert st == 201 and k["key"].startswith("nvk_")

    # a new password ends the user's sessions, the old one stops working
    p = admin.navectl("users", "passwd", "alice", "--password-stdin",
                      stdin="a brand new secret\n")
    assert p.returncode == 0, p.stderr
    assert admin.req("GET", "/api/v1/session", cookie=cookie)[0] == 401
    # two-factor reset: a new secret, the old one's codes refused
    p = admin.navectl("--json", "users", "two-factor", "reset", "alice")
    new = json.loads(p.stdout)["secret"]
    assert new != secret
    assert admin.login("alice", "a brand new secret", oath(secret))[0] == 401
    st, _, cookie2, _ = admin.login("alice", "a brand new secret", oath(new))
    assert st == 200
    # two-factor off: with [admin] require_two_factor on (the default) the password alone
    # is refused with the answer of any failure, and the log says why
    p = admin.navectl("users", "two-factor", "disable", "alice")
    assert (p.returncode, p.stdout) == (0, "user alice has two-factor off\n")
    assert admin.login("alice", "a brand new secret")[:2] == FAILED
    assert "two-factor is off for the user and [admin] require_two_factor is on" in \
        admin.srv.controld.output()
    p = admin.navectl("--json", "users", "two-factor", "enable", "alice")
    alice2 = json.loads(p.stdout)["secret"]
    st, _, cookie2, _ = admin.login("alice", "a brand new secret", oath(alice2))
    assert st == 200
    # logout: 204, the cookie ends
    st, sess, _ = admin.req("GET", "/api/v1/session", cookie=cookie2)
    st, body, r = admin.req("POST", "/api/v1/logout", cookie=cookie2, csrf=sess["csrf"])
    assert (st, body) == (204, None)
    assert admin.req("GET", "/api/v1/session", cookie=cookie2)[0] == 401
    # rm: gone, its login refused
    p = admin.navectl("users", "rm", "alice")
    assert (p.returncode, p.stdout) == (0, "user alice removed\n")
    assert admin.login("alice", "a brand new secret", oath(alice2))[0] == 401
    p = admin.navectl("users", "rm", "alice")
    assert (p.returncode, p.stderr) == (1, "navectl: unknown user alice\n")
    p = admin.navectl("--json", "users", "ls")
    assert json.loads(p.stdout)["items"] == []


def test_password_alone_when_two_factor_not_required(tmp_path, procs):
    need_oathtool()
    a = Admin(tmp_path, procs, "require_two_factor = off\n")
    a.add_user("gina", "ginas password")
    assert a.login("gina", "ginas password")[0] == 200
    assert "user gina logged in from 127.0.0.1 (password)" in a.srv.controld.output()
    a.srv.stop()


def test_lockout_is_per_source(tmp_path, procs):
    """5 failures lock the name from that address only; unlock and passwd end every lock."""
    need_oathtool()
    a = Admin(tmp_path, procs, "lockout = 60s\nrequire_two_factor = off\n")
    a.add_user("carol", "carols password")
    a.add_user("dave", "daves password")
    for _ in range(5):
        assert a.login("carol", "not the password", source="127.0.0.4")[:2] == FAILED
    # locked from .4: even the right password, with the answer of any failure (no 429:
    # a lock does not tell a user from an unknown name)
    assert a.login("carol", "carols password", source="127.0.0.4")[:2] == FAILED
    log = a.srv.controld.output()
    assert "\"carol\" locked from 127.0.0.4 for 60s after 5 failed logins" in log
    assert "login of \"carol\" from 127.0.0.4 failed: locked from this address for" in log
    # from elsewhere carol logs in: the outsider at .4 cannot lock her out
    assert a.login("carol", "carols password", source="127.0.0.5")[0] == 200
    # an unknown name is answered the same way, lock and all
    for _ in range(5):
        assert a.login("nobody", "not the password", source="127.0.0.6")[:2] == FAILED
    assert a.login("nobody", "not the password", source="127.0.0.6")[:2] == FAILED
    assert "login of \"nobody\" from 127.0.0.6 failed: locked from this address" in \
        a.srv.controld.output()
    # the list shows the lock and the failures; unlock ends it (human and --json)
    p = a.navectl("--json", "users", "ls")
    carol = next(u for u in json.loads(p.stdout)["items"] if u["name"] == "carol")
    assert carol["locked_until"] > time.time() and carol["failed_logins"] == 0
    p = a.navectl("users", "unlock", "carol")
    assert (p.returncode, p.stdout) == (0, "user carol unlocked\n"), p.stderr
    assert "api: user carol unlocked (was locked" in a.srv.controld.output()
    p = a.navectl("--json", "users", "unlock", "carol")
    j = json.loads(p.stdout)
    assert p.returncode == 0 and j["name"] == "carol" and j["locked_until"] is None
    p = a.navectl("users", "unlock", "zed")
    assert (p.returncode, p.stderr) == (1, "navectl: unknown user zed\n")
    p = a.navectl("users", "unlock")
    assert p.returncode == 2
    assert a.login("carol", "carols password", source="127.0.0.4")[0] == 200
    # a success clears the pair's count: 4 failures, a success, 4 more: not locked
    for n in (4, 4):
        for _ in range(n):
            assert a.login("dave", "wrong password", source="127.0.0.7")[:2] == FAILED
        p = a.navectl("--json", "users", "ls")
        dave = next(u for u in json.loads(p.stdout)["items"] if u["name"] == "dave")
        assert (dave["failed_logins"], dave["locked_until"]) == (4, None)
        assert a.login("dave", "daves password", source="127.0.0.7")[0] == 200
    # a new password ends the locks too
    for _ in range(5):
        assert a.login("dave", "wrong password", source="127.0.0.8")[:2] == FAILED
    assert a.login("dave", "daves password", source="127.0.0.8")[:2] == FAILED
    p = a.navectl("users", "passwd", "dave", "--password-stdin", stdin="daves new password\n")
    assert p.returncode == 0, p.stderr
    assert a.login("dave", "daves new password", source="127.0.0.8")[0] == 200
    # one address cannot guess on: 10 failures from it in 15 minutes (.8 has 6), then 429
    # for every login from it, whatever the name; other addresses are not affected
    for name in ("x1", "x2", "x3", "x4"):
        assert a.login(name, "whatever123", source="127.0.0.8")[:2] == FAILED
    st, j, r = a.req("POST", "/api/v1/login", {"user": "dave", "password": "daves new password"},
                     source="127.0.0.8")
    assert (st, j) == TOO_MANY and int(r.getheader("Retry-After")) > 60
    assert a.login("dave", "daves new password", source="127.0.0.9")[0] == 200
    a.srv.stop()


def test_flood_from_one_address_does_not_block_others(tmp_path, procs):
    """An address over its limits spends no scrypt and none of the logins a second of all."""
    import concurrent.futures
    import threading
    need_oathtool()
    a = Admin(tmp_path, procs, "require_two_factor = off\n")
    a.add_user("bob", "bobs password")
    stop = threading.Event()

    def flood(_):
        codes = []
        while not stop.is_set():
            codes.append(a.req("POST", "/api/v1/login", {"user": "nobody", "password": "guess1234"},
                               source="127.0.0.4")[0])
        return codes

    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        futs = [ex.submit(flood, i) for i in range(6)]
        try:
            nt.wait_for(lambda: "127.0.0.4 refused: 10 failed logins" in a.srv.controld.output(),
                        30, "the flood over its address's limit")
            bob = []
            for _ in range(3):
                bob.append(a.req("POST", "/api/v1/login",
                                 {"user": "bob", "password": "bobs password"},
                                 source="127.0.0.5")[:2])
                time.sleep(1.1)  # bob's own share is 2 a second
        finally:
            stop.set()
        codes = sum((f.result() for f in futs), [])
    assert [st for st, _ in bob] == [200, 200, 200], bob
    assert codes.count(401) == 10, sorted(set(codes))  # its 10 failures, then 429 only
    assert codes.count(429) > 10
    a.srv.stop()


def test_logins_per_second(tmp_path, procs):
    """Each login is an scrypt on controld's one thread: at most 10 a second in all, 2 per
    address. What is asserted does not depend on how fast scrypt runs here."""
    import concurrent.futures
    need_oathtool()
    a = Admin(tmp_path, procs)
    # how long one login takes here (ASan is slow): the 429s are asserted only when the
    # logins the limits let through fit well inside a second
    t = time.time()
    assert a.req("POST", "/api/v1/login", {"user": "x", "password": "wrong password"},
                 source="127.0.0.30")[0] == 401
    one = time.time() - t
    # one address, 6 at once
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        res = list(ex.map(lambda _: a.req("POST", "/api/v1/login",
                                          {"user": "nobody", "password": "wrong password"},
                                          source="127.0.0.40"), range(6)))
    secs = time.time() - t0
    codes = [st for st, _, _ in res]
    assert set(codes) <= {401, 429}
    assert codes.count(401) <= 2 * (int(secs) + 1), (codes, secs)
    assert all((j, r.getheader("Retry-After")) == (RATE, "1") for st, j, r in res if st == 429)
    if 3 * one < 0.7:
        assert 429 in codes, (codes, one)
    # 12 addresses, 2 each, at once: at most 10 scrypts a second from all of them
    time.sleep(1.1)
    srcs = [f"127.0.1.{i}" for i in range(1, 13)] * 2
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(24) as ex:
        res = list(ex.map(lambda s: a.req("POST", "/api/v1/login",
                                          {"user": "nobody", "password": "wrong password"},
                                          source=s), srcs))
    secs = time.time() - t0
    codes = [st for st, _, _ in res]
    assert set(codes) <= {401, 429}
    assert codes.count(401) <= 10 * (int(secs) + 1), (codes, secs)
    assert all((j, r.getheader("Retry-After")) == (RATE, "1") for st, j, r in res if st == 429)
    if 11 * one < 0.7:
        assert 429 in codes, (codes, one)
        assert "logins in a second" in a.srv.controld.output()
    a.srv.stop()


def test_session_expiry(tmp_path, procs):
    """Margins of a second or more around each end: a slow request does not flip a result."""
    need_oathtool()
    a = Admin(tmp_path, procs, "session_idle = 4s\nsession_lifetime = 8s\nrequire_two_factor = off\n")
    a.add_user("erin", "erins password")
    # idle
    st, _, cookie, _ = a.login("erin", "erins password")
    assert st == 200
    assert a.req("GET", "/api/v1/session", cookie=cookie)[0] == 200
    time.sleep(5)
    assert a.req("GET", "/api/v1/session", cookie=cookie)[0] == 401
    # absolute: used every half second, still ends
    st, j, cookie, _ = a.login("erin", "erins password")
    # "expires" is the sooner end: the idle one, 4 s after the login's second; the
    # absolute one is 8 s after it (times are whole seconds)
    assert j["expires"] <= int(time.time()) + 4
    end = j["expires"] + 4
    t0 = time.time()
    while time.time() < end - 1:
        assert a.req("GET", "/api/v1/tunnels", cookie=cookie)[0] == 200
        last = time.time()
        time.sleep(0.5)
    assert last - t0 >= 4  # used past the idle limit: only the absolute one can end it
    time.sleep(max(0, end + 0.5 - time.time()))
    assert time.time() - last < 3  # the idle end (last use + 4 s, in whole seconds) is ahead
    assert a.req("GET", "/api/v1/tunnels", cookie=cookie)[0] == 401
    assert "expired" in a.srv.controld.output()
    a.srv.stop()


def fill(pattern):
    return (pattern.replace("*", "x1").replace("#", "10.0.0.0%2F8")
            .replace("@", "example.com"))


def routes():
    out = subprocess.run([str(nt.CONTROLD), "--list-routes"], check=True, capture_output=True,
                         text=True).stdout
    rs = [tuple(line.split(" ")) for line in out.splitlines()]
    assert len(rs) > 30 and all(len(r) == 2 and r[1].startswith("/api/v1/") for r in rs)
    return rs


def test_route_walk_needs_authentication(admin):
    kid, key = admin.key("walk")
    rid, revoked = admin.key("revoked")
    p = admin.navectl("apikeys", "revoke", rid)
    assert (p.returncode, p.stdout) == (0, f"API key {rid} revoked\n")
    exempt = []
    for method, path in routes():
        url = fill(path)
        if (method, path) == ("POST", "/api/v1/login"):
            exempt.append(path)
            continue
        # a wrong secret: the key with its last hex digit changed (never the same digit)
        wrong = key[:-1] + ("1" if key[-1] == "0" else "0")
        for how in ({}, {"cookie": "f" * 64}, {"cookie": "nonsense"}, {"key": revoked},
                    {"key": wrong}, {"headers": {"Authorization": "Basic YTpi"}}):
            st, j, _ = admin.req(method, url, {} if method == "POST" else None, **how)
            assert (st, j) == (401, {"error": "authentication required"}), (method, url, how)
    assert exempt == ["/api/v1/login"]
    # an unknown route needs authentication too; a path outside /api/ is the
    # dashboard's, its files or 404 (test_dashboard.py), and "/api" is 404
    assert admin.req("GET", "/api/v1/nothing")[0] == 401
    assert admin.req("GET", "/api")[0] == 404
    # with a valid key none of them answers 401
    for method, path in routes():
        if path == "/api/v1/login":
            continue
        st, j, _ = admin.req(method, fill(path), {} if method == "POST" else None, key=key)
        assert st != 401, (method, path, st, j)
    # the revoked key's use is logged with the reason
    assert "API key: revoked key" in admin.srv.controld.output()
    p = admin.navectl("--json", "apikeys", "ls")
    items = {i["id"]: i for i in json.loads(p.stdout)["items"]}
    assert items[rid]["revoked"] is True and items[kid]["last_used"] is not None


def test_navectl_remote(admin):
    kid, key = admin.key("navectl")
    kf = admin.srv.dir / "key"
    kf.write_text(key + "\n")
    base = [str(nt.NAVECTL), "--server", admin.url, "--api-key-file", str(kf)]

    def run(*args, env=None):
        return subprocess.run([*args], capture_output=True, text=True, timeout=nt.CMD_TIMEOUT,
                              env=env)

    p = run(*base, "--ca", str(admin.cert), "--json", "status")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["version"]
    p = run(*base, "--ca", str(admin.cert), "status")
    assert p.returncode == 0 and "tls fingerprint:" in p.stdout
    # the certificate is verified: without --ca it is refused
    p = run(*base, "status")
    assert p.returncode == 1 and "certificate" in p.stderr and len(p.stderr.splitlines()) == 1
    # NAVE_SERVER and NAVE_API_KEY
    env = {"NAVE_SERVER": admin.url, "NAVE_API_KEY": key, "PATH": "/usr/bin:/bin"}
    p = run(str(nt.NAVECTL), "--ca", str(admin.cert), "--json", "users", "ls", env=env)
    assert p.returncode == 0, p.stderr
    # bad usage
    p = run(str(nt.NAVECTL), "--server", "http://localhost:1", "--api-key-file", str(kf), "status")
    assert p.returncode == 2 and "https://HOST:PORT" in p.stderr
    p = run(str(nt.NAVECTL), "--server", admin.url, "status", env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 2 and "API key" in p.stderr
    # revoked: refused with the API's reason
    assert admin.navectl("apikeys", "revoke", kid).returncode == 0
    p = run(*base, "--ca", str(admin.cert), "status")
    assert (p.returncode, p.stderr) == (1, "navectl: authentication required\n")


def test_bad_input(admin):
    _, key = admin.key("bad input")
    big = b'{"description":"' + b"a" * (1 << 20) + b'"}'
    # over the limit: 413 on both listeners, on the head (the body is not read)
    line, resp, _ = raw_tls(admin, b"POST /api/v1/apikeys HTTP/1.1\r\nHost: x\r\n"
                            b"Authorization: Bearer " + key.encode() + b"\r\n"
                            b"Content-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(big),
                            send_body=[big[i:i + 16384] for i in range(0, len(big), 16384)])
    assert line.startswith(b"HTTP/1.1 413") and b"larger than" in resp
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(admin.srv.control_sock))
    try:
        s.sendall(b"POST /api/v1/apikeys HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(big) + big)
    except OSError:
        pass  # answered on the head and closed before the whole body went out
    resp = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        resp += d
    s.close()
    assert resp.startswith(b"HTTP/1.1 413")
    # bad JSON: 400 saying what
    st, j, _ = admin.req("POST", "/api/v1/users", raw=b'{"name": ', key=key)
    assert st == 400 and j["error"].startswith("invalid JSON body")
    st, j, _ = admin.req("POST", "/api/v1/users", {"name": 5, "password": "x" * 10}, key=key)
    assert (st, j) == (400, {"error": "\"name\" must be a string"})
    st, j, _ = admin.req("POST", "/api/v1/users", {"name": "zed"}, key=key)
    assert (st, j) == (400, {"error": "\"password\" is required"})
    st, j, _ = admin.req("POST", "/api/v1/users", {"name": "zed", "password": "x" * 1025}, key=key)
    assert (st, j) == (400, {"error": "\"password\" must be 8-1024 bytes"})
    st, j, _ = admin.req("POST", "/api/v1/apikeys", {"expires": "soon"}, key=key)
    assert (st, j) == (400, {"error": "\"expires\" must be an integer"})
    st, j, _ = admin.req("POST", "/api/v1/login", raw=b"[1]")
    assert (st, j) == (400, {"error": "the body must be a JSON object"})
    st, j, _ = admin.req("POST", "/api/v1/login", {"user": "a", "password": 7})
    assert (st, j) == (400, {"error": "\"password\" must be a string"})
    # unknown routes
    st, j, _ = admin.req("GET", "/api/v1/nothing/here", key=key)
    assert (st, j) == (404, {"error": "no such endpoint: /api/v1/nothing/here"})
    assert admin.srv.api("GET", "/api/v1/nothing")[0] == 404


def raw_tls(admin, head, send_body=None, wait=5):
    """Sends a request head (and send_body's chunks, if given, until the server answers or
    closes) over TLS; (status line, the answer's bytes, seconds it took)."""
    ctx = admin.ctx()
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", admin.port), timeout=wait) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(head)
            if send_body:
                for chunk in send_body:
                    if select.select([s], [], [], 0)[0]:
                        break  # it answered or closed
                    try:
                        s.sendall(chunk)
                    except (OSError, ssl.SSLError):
                        break  # the server closed: it reads no more
            resp = b""
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    resp += d
            except (OSError, ssl.SSLError):
                pass
    return resp.split(b"\r\n", 1)[0], resp, time.time() - t0


def test_body_refused_on_the_head(admin):
    """401 and 413 come from the head: a huge or endless body is never read."""
    _, key = admin.key("heads")
    big = 100 << 20
    for path in ("/api/v1/apikeys", "/api/v1/nothing"):
        head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {big}\r\n\r\n").encode()
        line, resp, secs = raw_tls(admin, head)
        assert line == b"HTTP/1.1 401 Unauthorized" and secs < 3, (line, secs)
        assert b'{"error":"authentication required"}' in resp
        line, resp, secs = raw_tls(admin, head.replace(b"Host: x", f"Host: x\r\nAuthorization: "
                                                                  f"Bearer {key}".encode()))
        assert line.startswith(b"HTTP/1.1 413") and secs < 3, (line, secs)
        assert b'{"error":"request body larger than 65536 bytes"}' in resp
    # the login needs no credentials: its Content-Length over the limit is 413 at once
    line, _, secs = raw_tls(admin, (f"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                    f"application/json\r\nContent-Length: {big}\r\n\r\n").encode())
    assert line.startswith(b"HTTP/1.1 413") and secs < 3, (line, secs)
    # an endless chunked body: unauthenticated 401 on the head; authenticated, it is cut at
    # the limit (413, or the connection closed), long before the 256 MiB offered (what the
    # client got rid of is at most the limit and the socket buffers)
    chunked = (b"POST /api/v1/apikeys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
    line, _, secs = raw_tls(admin, chunked, send_body=[b"4000\r\n" + b"a" * 0x4000 + b"\r\n"] * 256)
    assert line == b"HTTP/1.1 401 Unauthorized" and secs < 3, (line, secs)
    sent = []

    def body():
        for _ in range(16384):
            sent.append(0x4000)
            yield b"4000\r\n" + b"a" * 0x4000 + b"\r\n"

    line, _, secs = raw_tls(admin, chunked.replace(b"Host: x", b"Host: x\r\nAuthorization: Bearer "
                                                   + key.encode()), send_body=body())
    assert line in (b"", b"HTTP/1.1 413 Content Too Large", b"HTTP/1.1 413 Payload Too Large",
                    b"HTTP/1.1 413 Request Entity Too Large"), line
    assert sum(sent) < (32 << 20), sum(sent)
    assert "api: POST /api/v1/apikeys from 127.0.0.1: the body is over 65536 bytes" in \
        admin.srv.controld.output()
    # control.sock: a Content-Length over the limit is 413 without the body
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(str(admin.srv.control_sock))
    s.sendall(b"POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % big)
    assert s.recv(65536).startswith(b"HTTP/1.1 413")
    s.close()


def test_body_must_be_json(admin):
    """A body needs Content-Type: application/json (a form cannot log in cross-site)."""
    _, key = admin.key("ctype")
    admin.add_user("hank", "hanks password")
    err = {"error": "a request body must be Content-Type: application/json"}
    body = json.dumps({"user": "hank", "password": "hanks password"}).encode()
    for ct in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data; b=x",
               "application/jsonx", None):
        h = {"Content-Type": ct} if ct else {}
        if ct is None:  # http.client sends none when told to skip it
            h = {"Content-Type": ""}
        st, j, _ = admin.req("POST", "/api/v1/login", raw=body, headers=h)
        assert (st, j) == (415, err), ct
        st, j, _ = admin.req("POST", "/api/v1/apikeys", raw=b"{}", headers=h, key=key)
        assert (st, j) == (415, err), ct
    # without credentials the 401 comes first
    st, j, _ = admin.req("POST", "/api/v1/apikeys", raw=b"{}", headers={"Content-Type": "text/plain"})
    assert st == 401
    # parameters are fine; so is no body at all
    st, j, _ = admin.req("POST", "/api/v1/login", raw=body,
                         headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert (st, j) == FAILED  # hank has no two-factor: the body was read and judged
    st, j, _ = admin.req("POST", "/api/v1/apikeys", raw=b"", headers={"Content-Type": ""},
                         key=key)
    assert st == 201
    # control.sock too
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(str(admin.srv.control_sock))
    s.sendall(b"POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}")
    resp = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        resp += d
    s.close()
    assert resp.startswith(b"HTTP/1.1 415") and json.dumps(err, separators=(",", ":")).encode() in resp


def test_no_secret_in_answers(admin):
    secret = admin.add_user("frank", "franks password", two_factor=True)
    kid, key = admin.key("secret check")
    st, login, cookie, _ = admin.login("frank", "franks password", oath(secret))
    assert st == 200
    keyhash = hashlib.sha256(key.split("_")[2].encode()).hexdigest()
    sidhash = hashlib.sha256(cookie.encode()).hexdigest()
    forbidden = [secret, key, key.split("_")[2], keyhash, cookie, sidhash, "franks password",
                 "$scrypt$"]
    seen = []
    for method, path in routes():
        if method != "GET" or "*" in path or "#" in path or "@" in path:
            continue
        for how in ({"key": key}, {"cookie": cookie}):
            st, j, _ = admin.req("GET", path, **how)
            seen.append(path)
            text = json.dumps(j)
            for f in forbidden:
                assert f not in text, (path, f)
    for path in ("/api/v1/users/frank", "/api/v1/users"):
        st, j, _ = admin.req("GET", path, key=key)
        assert st == 200
        text = json.dumps(j)
        assert all(f not in text for f in forbidden)
    assert "/api/v1/apikeys" in seen and "/api/v1/session" in seen
    # the store holds hashes only: not the key, not the session id
    db = (admin.srv.dir / "var" / "nave.db").read_bytes()
    wal = admin.srv.dir / "var" / "nave.db-wal"
    db += wal.read_bytes() if wal.exists() else b""
    assert key.encode() not in db and key.split("_")[2].encode() not in db
    assert cookie.encode() not in db and b"franks password" not in db


def test_unix_socket_unchanged(admin):
    # no login on control.sock: every command as before
    assert admin.srv.navectl("status", json=True)["version"]
    st, j = admin.srv.api("GET", "/api/v1/tokens")
    assert st == 200 and j["items"] == []
    st, j = admin.srv.api("POST", "/api/v1/tokens", {"description": "local"})
    assert st == 201
    # a cookie or a key means nothing there; a session is just not there
    assert admin.srv.api("GET", "/api/v1/session")[0] == 401


def test_certificate_replaced_is_picked_up(admin):
    def served(tolerant=False):
        try:
            return ssl.get_server_certificate(("127.0.0.1", admin.port))
        except (ssl.SSLError, OSError):
            if not tolerant:
                raise
            return None  # a connection the restart of the HTTPS server cut


    _, key = admin.key("cert")
    old = served()
    assert ssl.PEM_cert_to_DER_cert(old) == ssl.PEM_cert_to_DER_cert(admin.cert.read_text())
    tls = admin.cert.parent
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost", "-days", "1", "-keyout", str(tls / "new.key"),
                    "-out", str(tls / "new.crt")], check=True, capture_output=True)
    (tls / "new.key").rename(tls / "server.key")
    (tls / "new.crt").rename(tls / "server.crt")
    nt.wait_for(lambda: served(True) not in (old, None), 10, "the admin listener serving the new certificate")
    assert ssl.PEM_cert_to_DER_cert(served()) == ssl.PEM_cert_to_DER_cert(admin.cert.read_text())
    # verified against the new one, the API answers
    st, j, _ = admin.req("GET", "/api/v1/status", key=key)
    assert st == 200
    assert "certificate" in admin.srv.controld.output() and "loaded" in admin.srv.controld.output()


def test_bad_certificate_keeps_the_old_one(admin):
    """A certificate file that does not load leaves the old one served, logged once."""
    _, key = admin.key("badcert")
    old = ssl.get_server_certificate(("127.0.0.1", admin.port))
    admin.cert.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    why = "the previous certificate stays served until the files change again"
    nt.wait_for(lambda: why in admin.srv.controld.output(), 10, "the refused certificate logged")
    time.sleep(3)  # checked every second: still logged once, and still serving
    assert admin.srv.controld.output().count(why) == 1
    assert ssl.get_server_certificate(("127.0.0.1", admin.port)) == old
    conn = http.client.HTTPSConnection("localhost", admin.port,
                                       context=ssl.create_default_context(cadata=old), timeout=10)
    conn.request("GET", "/api/v1/status", headers={"Authorization": f"Bearer {key}"})
    assert conn.getresponse().status == 200
    conn.close()

# SPDX-License-Identifier: Apache-2.0
"""The web dashboard (ctl/ui/, served by ctl/ui.c on controld's [admin] listen)
in a real browser: Debian's headless Chromium driven by Debian's
python3-selenium, against real nave-controld, nave-relayd and a nave client.

The browser trusts exactly the server's key (--ignore-certificate-errors-spki-
list with the SHA-256 of its SubjectPublicKeyInfo), nothing else. One test
walks what an operator does: a wrong TOTP code refused in one line, then a
login with the password and a code computed here (RFC 6238, checked against
its vectors and oathtool); the status; the tunnel list over two pages and its
search; a rule the API refuses (its reason in one line), then a TCP rule to a
local service through the form, applied by the client, with bytes pushed
through its public port (every byte checked with SHA-256), and an HTTP rule
with a request through the HTTP edge by name; the connection records and the
bandwidth graph (its bars add up to the bytes sent each way); each rule's bytes
and connections; ports and domains; a token made (shown once; a description
full of markup shown as text) and another revoked (the API and navectl
confirm); users; the TCP rule removed (the port closes); a session that ends
under the page (back to the login form); another user's login and a logout
that ends the session on the server. The browser's console must hold no CSP
violation, no script error and no file that failed to load. A screenshot of
each step goes to $NAVE_TEST_ARTIFACTS/dashboard/ (default:
NAVE_BUILD/test-artifacts/dashboard/; never committed).
Another test checks the static files' answers (headers, methods, 404s) with a
plain HTTPS client.

Run once per make test, in the normal build's pass over the port range
(NAVE_TEST_RANGE_ONLY=1 keeps it: conftest.NORMAL_BUILD_ONLY).
The browser test is skipped against the sanitizer build (NAVE_BUILD ending in
build-san): ui.c runs under ASan in the static files' test and
tests/unit/test_ui.c, the API in the other suites, and the browser is slow
there. NAVE_TEST_DASHBOARD_SAN=1 runs it anyway.
"""
import base64
import hashlib
import hmac
import http.client
import os
import re
import shutil
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

import navetest as nt

webdriver = pytest.importorskip("selenium.webdriver", reason="python3-selenium (make deps)")
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service as ChromeService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# the browser against the sanitizer build: slow, and what it reaches is under ASan already
# (ui.c here and in tests/unit/test_ui.c, the API in the other suites)
browser_test = pytest.mark.skipif(
    nt.BUILD.name == "build-san" and os.environ.get("NAVE_TEST_DASHBOARD_SAN") != "1",
    reason="the dashboard's browser test runs against build/ only: ui.c is under ASan in "
    "test_static_files_on_the_admin_listener and tests/unit/test_ui.c, the API in the other "
    "suites (NAVE_TEST_DASHBOARD_SAN=1 runs it here)")
UI_TIMEOUT = 30.0
USER = "ops"
PASSWORD = "correct horse battery staple 11"


# ---------------------------------------------------------------- TOTP (RFC 6238)


def totp(secret_b32, t=None, step=30, digits=6):
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if t is None else t) // step)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 10**digits
    return f"{code:0{digits}d}"


def test_totp_matches_rfc6238_and_oathtool():
    # RFC 6238 appendix B (SHA-1, 8 digits): the secret "12345678901234567890"
    secret = base64.b32encode(b"12345678901234567890").decode()
    for t, want in ((59, "94287082"), (1111111109, "07081804"), (2000000000, "69279037")):
        assert totp(secret, t, digits=8) == want
    assert shutil.which("oathtool"), "oathtool is not installed (make deps)"
    for t in (1111111109, int(time.time())):
        p = nt.run(["oathtool", "--totp", "-b", "--now", f"@{t}", secret])
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == totp(secret, t)


# ---------------------------------------------------------------- the admin listener


def artifacts_dir():
    base = os.environ.get("NAVE_TEST_ARTIFACTS")
    d = Path(base) / "dashboard" if base else nt.BUILD / "test-artifacts" / "dashboard"
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("[0-9][0-9]-*.png"):  # the last run's
        old.unlink()
    return d


@pytest.fixture
def admin_port():
    return nt.free_port()


@pytest.fixture
def server_ini(admin_port):
    return f"[admin]\nlisten = 127.0.0.1:{admin_port}\n"


def server_cert(server):
    return server.dir / "var" / "tls" / "server.crt"


def spki_sha256_b64(cert_path):
    """base64(SHA-256(SubjectPublicKeyInfo)): what Chromium's
    --ignore-certificate-errors-spki-list names a key by."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def pinned_context(cert_path):
    """A TLS client context that trusts the server's own certificate (no name check:
    the test dials 127.0.0.1)."""
    ctx = ssl.create_default_context(cafile=str(cert_path))
    ctx.check_hostname = False
    return ctx


def https(server, admin_port, method, path, body=None, headers=None):
    """(status, headers as a dict of lower-case names, body bytes) from the admin listener."""
    c = http.client.HTTPSConnection("127.0.0.1", admin_port, timeout=nt.IO_TIMEOUT,
                                    context=pinned_context(server_cert(server)))
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        data = b"" if body is None else body
        if body is not None or method in ("POST", "PUT", "DELETE"):
            c.putheader("Content-Length", str(len(data)))
        c.endheaders(data)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def make_user(server, name=USER):
    """A user with a password and two-factor through navectl; returns the TOTP secret."""
    cmd = [str(nt.NAVECTL), "--config", str(server.ini)]
    p = subprocess.run(cmd + ["users", "add", name, "--password-stdin"], input=PASSWORD + "\n",
                       capture_output=True, text=True, timeout=nt.CMD_TIMEOUT)
    assert p.returncode == 0, f"navectl users add: {p.stderr}"
    p = nt.run(cmd + ["users", "two-factor", "enable", name])
    assert p.returncode == 0, f"navectl users two-factor enable: {p.stderr}"
    m = re.search(r"\b([A-Z2-7]{16,})\b", p.stdout)
    assert m, f"no base32 secret in {p.stdout!r}"
    return m.group(1)


# ---------------------------------------------------------------- the browser


class Browser:
    """Headless Chromium trusting the server's key only; screenshots numbered by step."""

    def __init__(self, server, admin_port, shots):
        o = webdriver.ChromeOptions()
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-default-apps", "--metrics-recording-only",
                  f"--user-data-dir={server.dir / 'chromium'}",
                  f"--ignore-certificate-errors-spki-list={spki_sha256_b64(server_cert(server))}"):
            o.add_argument(a)
        o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.d = webdriver.Chrome(service=ChromeService(CHROMEDRIVER,
                                                        log_output=str(server.dir / "chromedriver.log")),
                                  options=o)
        self.d.set_page_load_timeout(UI_TIMEOUT)
        self.base = f"https://127.0.0.1:{admin_port}"
        self.shots = shots
        self.n = 0
        self.seq = 0
        self.console = []

    def quit(self):
        self.d.quit()

    def open(self, path="/"):
        self.d.get(self.base + path)

    def go(self, fragment):
        self.d.execute_script("location.hash = arguments[0]", fragment)

    def shot(self, name):
        self.n += 1
        self.d.save_screenshot(str(self.shots / f"{self.n:02d}-{name}.png"))

    def find(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def finds(self, css):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def wait(self, cond, what, timeout=UI_TIMEOUT):
        def ok():
            try:
                return cond()
            except (NoSuchElementException, StaleElementReferenceException):
                return False

        try:
            return nt.wait_for(ok, timeout, what, interval=0.1)
        except nt.Failure:
            self.shot("failed")
            raise nt.Failure(f"timed out waiting for {what}; error line: {self.error()!r}; "
                             f"console: {self.console_errors()[-5:]}")

    def visible(self, css):
        return self.wait(lambda: (e := self.find(css)).is_displayed() and e, f"{css} shown")

    def view(self, name):
        """Waits for a render of the view newer than the last one seen (app.js counts
        its renders in data-seq)."""
        def ok():
            v = self.find("#view")
            n = int(v.get_attribute("data-seq") or 0)
            return n > self.seq and v.get_attribute("data-view") == name and n

        self.seq = self.wait(ok, f"the {name} view")

    def error(self):
        try:
            e = self.find("#error")
            return e.text if e.is_displayed() else ""
        except NoSuchElementException:
            return ""

    def type(self, css, text):
        e = self.find(css)
        e.clear()
        e.send_keys(text)

    def rows(self, table):
        return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in self.finds(f"#{table} tbody tr")]

    def accept_confirm(self):
        self.wait(lambda: self.d.switch_to.alert, "the confirm dialog").accept()

    API_4XX = re.compile(r"^https://[^/]+/api/v1/\S* - Failed to load resource: "
                         r"the server responded with a status of 4\d\d ")

    def console_errors(self):
        """The console's errors, except the API's 4xx answers the test provokes (the page
        shows them in its error line); a file of the page that fails to load is one."""
        self.console += self.d.get_log("browser")
        return [e["message"] for e in self.console
                if e["level"] == "SEVERE" and not self.API_4XX.match(e["message"])]


@pytest.fixture
def browser(server, admin_port):
    b = Browser(server, admin_port, artifacts_dir())
    yield b
    b.quit()


# ---------------------------------------------------------------- tests


def test_static_files_on_the_admin_listener(server, admin_port):
    root = nt.ROOT / "ctl" / "ui"
    st, h, body = https(server, admin_port, "GET", "/")
    assert st == 200
    assert body == (root / "index.html").read_bytes()
    assert h["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in h["content-security-policy"]
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"
    assert h["cache-control"] == "no-cache"
    for name, ctype in (("app.js", "text/javascript; charset=utf-8"),
                        ("style.css", "text/css; charset=utf-8")):
        st, h, body = https(server, admin_port, "GET", "/" + name)
        assert (st, h["content-type"]) == (200, ctype)
        assert body == (root / name).read_bytes()
        st, h2, _ = https(server, admin_port, "GET", "/" + name, headers={"If-None-Match": h["etag"]})
        assert st == 304
    st, h, body = https(server, admin_port, "HEAD", "/app.js")
    assert (st, body, int(h["content-length"])) == (200, b"", (root / "app.js").stat().st_size)
    st, h, _ = https(server, admin_port, "POST", "/", body=b"x")
    assert (st, h["allow"]) == (405, "GET, HEAD")
    for path in ("/nope", "/index.html/", "/../Makefile", "/%2e%2e/ctl/ui.c", "/app.js%00",
                 "/ui.c", "/favicon.ico"):
        st, h, body = https(server, admin_port, "GET", path)
        assert (path, st, body) == (path, 404, b"not found\n")
        assert h["x-content-type-options"] == "nosniff"
    # the API is not the dashboard's: without a session it refuses
    for path in ("/api/v1/status", "/api/v1/tunnels", "/api/v1/users"):
        st, _, body = https(server, admin_port, "GET", path)
        assert st == 401, (path, st, body)


def fresh_code(secret):
    """The current TOTP code, not one about to expire."""
    if time.time() % 30 > 27:
        time.sleep(30 - time.time() % 30 + 0.2)
    return totp(secret)


def log_in(b, user, secret):
    b.type("#login-user", user)
    b.type("#login-password", PASSWORD)
    b.type("#login-totp", fresh_code(secret))
    b.find("#login-submit").click()
    b.view("status")
    assert b.find("#whoami").text == user


def all_items(server, path):
    """Every item of a paged list of the API (control.sock)."""
    items, page = [], 1
    while True:
        st, body = server.api("GET", f"{path}?page={page}")
        assert st == 200, body
        items += body["items"]
        if page * body["per_page"] >= body["total"]:
            return items
        page += 1


def h_web(c, svc):
    """A small HTTP service: answers each request with a body naming its path."""
    c.settimeout(nt.IO_TIMEOUT)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            return
        buf += d
    target = buf.split(b" ", 2)[1]
    body = b"dashboard web rule: " + target + b"\n" + WEB_BODY
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
              % (len(body), body))


WEB_BODY = hashlib.sha256(b"dashboard").digest() * 4096  # 128 KiB
WEB_DOMAIN = "dash.example.test"


def http_get(server, host, target):
    """GET through relayd's HTTP edge: (status, body)."""
    c = http.client.HTTPConnection("127.0.0.1", server.http, timeout=nt.IO_TIMEOUT)
    try:
        c.request("GET", target, headers={"Host": host})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


@browser_test
def test_dashboard_end_to_end(server, admin_port, make_client, services, browser):
    b = browser
    secret = make_user(server)
    secret2 = make_user(server, "viewer")
    c = make_client("c0")
    svc = services(nt.h_exchange, "exchange")
    web = services(h_web, "web")
    st, spare = server.api("POST", "/api/v1/tokens", {"id": "spare-group", "kinds": ["tcp"]})
    assert st == 201, spare
    # 49 more tunnels (a token makes its tunnel): 51 in all, two pages of the list
    for i in range(49):
        st, body = server.api("POST", "/api/v1/tokens", {"id": f"fleet-{i:02d}"})
        assert st == 201, body

    # -- log in: a wrong code first (one line, no session), then the right one
    b.open("/")
    b.visible("#login-form")
    b.shot("login")
    b.type("#login-user", USER)
    b.type("#login-password", PASSWORD)
    b.type("#login-totp", "000000" if totp(secret) != "000000" else "111111")
    b.find("#login-submit").click()
    b.wait(lambda: "login failed" in b.error(), "the login error")
    assert "\n" not in b.error()
    assert not b.find("#nav").is_displayed()
    b.shot("login-refused")
    log_in(b, USER, secret)
    status = dict((r.find_element(By.TAG_NAME, "th").text, r.find_element(By.TAG_NAME, "td").text)
                  for r in b.finds("#status-table tr"))
    assert status["relayd"].startswith(f"connected (pid {server.relayd.pid}")
    assert status["tunnels"] == "1 online of 51"
    b.shot("status")

    # -- the tunnel list: two pages, search, then open the tunnel
    b.find("#nav-tunnels").click()
    b.view("tunnels")
    assert b.find("#page-info").text == "page 1 of 2 (51 in all)"
    assert len(b.rows("tunnels-table")) == 50
    b.find("#page-next").click()
    b.view("tunnels")
    assert b.find("#page-info").text == "page 2 of 2 (51 in all)"
    assert [r[2] for r in b.rows("tunnels-table")] == ["fleet-48"]
    b.shot("tunnels-page-2")
    b.find("#page-prev").click()
    b.view("tunnels")
    b.type("#search", "fleet-4")
    b.find("#tunnel-search button").click()
    b.view("tunnels")
    assert sorted(r[2] for r in b.rows("tunnels-table")) == [f"fleet-4{i}" for i in range(9)]
    b.type("#search", "no-such-tunnel")
    b.find("#tunnel-search button").click()
    b.view("tunnels")
    assert b.find("#tunnels-table").text == "No tunnel matches."
    b.type("#search", c.tunnel_id[-8:])
    b.find("#tunnel-search button").click()
    b.view("tunnels")
    assert [r[0] for r in b.rows("tunnels-table")] == [c.tunnel_id]
    assert b.find("#page-info").text == "page 1 of 1 (1 in all)"
    b.shot("tunnels-search")
    b.find(".tunnel-link").click()
    b.view("tunnel")
    assert b.find("#tunnel-id").text == c.tunnel_id
    assert b.find("#tunnel-state").text == "online"

    # -- a TCP rule through the form, applied by the client; bytes through it
    Select(b.find("#rule-kind")).select_by_value("tcp")
    assert not b.find("#rule-domain").is_displayed()
    # a name the API refuses: its reason in one line, nothing queued
    b.type("#rule-name", "no spaces")
    b.type("#rule-to", f"127.0.0.1:{svc.port}")
    b.find("#rule-submit").click()
    b.wait(lambda: "name" in b.error(), "the API's reason for the refused rule")
    assert "\n" not in b.error()
    b.shot("rule-refused")
    st, ops = server.api("GET", f"/api/v1/tunnels/{c.tunnel_id}/rules")
    assert (st, ops["ops"]) == (200, []), ops
    b.type("#rule-name", "web")
    b.type("#rule-to", f"127.0.0.1:{svc.port}")
    b.shot("rule-form")
    b.find("#rule-submit").click()

    def rule_rows():
        b.go(f"#/tunnel/{c.tunnel_id}?t={time.monotonic()}")
        b.view("tunnel")
        return b.rows("rules-table")

    def tcp_applied():
        for r in rule_rows():
            if r[0] == "web" and r[2].isdigit():
                return int(r[2])
        return None

    port = b.wait(tcp_applied, "rule web applied with a public port")
    assert server.tunnel(c.tunnel_id)["ports"] == [{"port": port, "rule": "web", "transport": "tcp"}]
    assert any(r[:4] == ["web", "tcp", str(port), f"127.0.0.1:{svc.port}"] for r in b.rows("rules-table"))
    b.shot("rule-applied")
    nt.exchange(port, 256 * nt.KiB)
    nt.exchange(port, 64 * nt.KiB)

    # -- an HTTP rule through the form: requests by name through the HTTP edge
    Select(b.find("#rule-kind")).select_by_value("http")
    assert not b.find("#rule-port").is_displayed()
    b.type("#rule-name", "site")
    b.type("#rule-to", f"127.0.0.1:{web.port}")
    b.type("#rule-domain", WEB_DOMAIN)
    b.find("#rule-submit").click()
    b.wait(lambda: any(r[0] == "site" and r[2] == WEB_DOMAIN for r in rule_rows()),
           "rule site applied with its domain")
    st, body = nt.wait_for(lambda: (r := http_get(server, WEB_DOMAIN, "/from-the-dashboard"))[0] == 200
                           and r, 10, f"{WEB_DOMAIN} routed")
    assert body == b"dashboard web rule: /from-the-dashboard\n" + WEB_BODY

    # -- the records and the bandwidth graph (records reach controld in batches: the
    # page is loaded again until both exchanges are in)
    up = 2 * 8 + 256 * nt.KiB + 64 * nt.KiB  # what the public side sent: lengths and data
    down = 2 * 64 + 256 * nt.KiB + 64 * nt.KiB  # and got: data and two hashes each time

    def bars(kind):
        return [int(r.get_attribute("data-bytes")) for r in b.finds(f"#bandwidth rect.{kind}")]

    def recorded():
        b.go(f"#/connections?tunnel={c.tunnel_id}&rule=web&t={time.monotonic()}")
        b.view("connections")
        rows = b.rows("connections-table")
        return rows if len(rows) == 2 and (sum(bars("in")), sum(bars("out"))) == (up, down) \
            else None

    rows = b.wait(recorded, "two connection records of rule web and their bytes in the graph")
    assert all(r[1] == c.tunnel_id and r[2] == "web" and r[3] == str(port) for r in rows)
    assert sorted(r[6] for r in rows) == ["256.0 KiB", "64.0 KiB"]
    assert int(b.find("#bandwidth").get_attribute("data-buckets")) == len(bars("in")) > 1
    b.shot("connections")
    b.type("#filter-rule", "site")
    b.find("#connections-filter button").click()
    b.view("connections")

    def site_recorded():
        b.go(f"#/connections?tunnel={c.tunnel_id}&rule=site&t={time.monotonic()}")
        b.view("connections")
        return [r[2:4] for r in b.rows("connections-table")] == [["site", WEB_DOMAIN]]

    b.wait(site_recorded, "the record of the HTTP request")
    b.shot("connections-http")

    # -- per-rule bytes on the tunnel's page
    rows = {r[0]: r for r in rule_rows()}
    assert rows["web"][6] == "2", rows["web"]
    assert rows["site"][6] == "1", rows["site"]
    assert rows["web"][4] == "320.0 KiB", rows["web"]
    b.shot("tunnel-bytes")

    # -- ports and domains
    b.find("#nav-ports").click()
    b.view("ports")
    assert b.rows("ports-table")[0][:3] == [str(port), c.tunnel_id, "web"]
    b.find("#nav-domains").click()
    b.view("domains")
    assert b.rows("domains-table")[0][:3] == [WEB_DOMAIN, c.tunnel_id, "site"]
    b.shot("domains")

    # -- tokens: one made (shown once; its description shown as text), the spare one revoked
    b.find("#nav-tokens").click()
    b.view("tokens")
    desc = '<img src=x id=injected> made in the "dashboard" & more'
    b.type("#token-description", desc)
    b.find("#token-submit").click()
    made = b.wait(lambda: b.find("#new-token").text, "the new token")
    assert re.fullmatch(r"nvt_[0-9a-f]{8}_[0-9a-f]{48}", made), made
    b.shot("token-made")
    b.find(f".token-revoke[data-token='{spare['id']}']").click()
    b.accept_confirm()
    b.wait(lambda: any(r[0] == spare["id"] and r[6] == "revoked" for r in b.rows("tokens-table")),
           "the spare token shown revoked")
    assert [r[5] for r in b.rows("tokens-table") if r[0] == spare["id"]] == ["kinds tcp"]
    assert not b.finds("#new-token"), "the new token is still on the page"
    toks = {t["id"]: t for t in all_items(server, "/api/v1/tokens")}
    assert toks[spare["id"]]["revoked"] is True
    assert sum(t["revoked"] for t in toks.values()) == 1
    assert toks[made[4:12]]["description"] == desc
    # the description is on page 2 of the list, as text
    b.find("#page-next").click()
    b.view("tokens")
    assert [r[2] for r in b.rows("tokens-table") if r[0] == made[4:12]] == [desc]
    assert not b.finds("#injected")
    listed = server.navectl("tokens", "ls", json=True)["items"]
    assert [t["revoked"] for t in listed if t["id"] == spare["id"]] == [True]
    b.shot("token-revoked")

    # -- users
    b.find("#nav-users").click()
    b.view("users")
    assert [r[:2] for r in b.rows("users-table")] == [[USER, "yes"], ["viewer", "yes"]]
    b.shot("users")

    # -- the TCP rule removed from its page: the port closes (the probes may reach the
    # service before it does: its errors are checked here)
    assert not svc.errors, svc.errors
    b.go(f"#/tunnel/{c.tunnel_id}")
    b.view("tunnel")
    b.find(".rule-remove[data-rule='web']").click()
    b.accept_confirm()
    nt.wait_port_closed(port)
    b.wait(lambda: "web" not in [r[0] for r in rule_rows()], "rule web gone from the page")
    assert server.tunnel(c.tunnel_id)["ports"] == []
    b.shot("rule-removed")

    # -- a session that ends under the page: back to the login form, in one line
    b.d.delete_all_cookies()
    b.find("#nav-status").click()
    b.visible("#login-form")
    assert b.error() == "your session ended: log in again"
    assert not b.find("#view").text
    b.shot("session-ended")

    # -- another user logs in; logging out ends the session on the server too
    log_in(b, "viewer", secret2)
    cookie = b.d.get_cookie("nave_session")
    assert cookie and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    st, _, _ = https(server, admin_port, "GET", "/api/v1/session",
                     headers={"Cookie": f"nave_session={cookie['value']}"})
    assert st == 200
    b.find("#logout").click()
    b.visible("#login-form")
    st, _, _ = https(server, admin_port, "GET", "/api/v1/session",
                     headers={"Cookie": f"nave_session={cookie['value']}"})
    assert st == 401
    b.shot("logged-out")
    assert b.console_errors() == []
    assert not web.errors, web.errors

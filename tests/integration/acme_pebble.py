# SPDX-License-Identifier: Apache-2.0
"""pebble, Let's Encrypt's ACME (RFC 8555) test CA, on loopback for the ACME
tests: Debian's `pebble` package (2.4), both of its binaries as real processes.

    pb = Pebble(tmp_path, procs, http_port).start()
    pb.directory        https://127.0.0.1:PORT/dir
    pb.ca_file          the CA of pebble's own HTTPS certificate (trust it for the API)
    pb.issuer_roots()   PEM of the root(s) that issued certificates chain to
    pb.cert_status(serial_hex), pb.set_a(host, ip), pb.clear_a(host), pb.resolve(host)
    pb.stop()

pebble-challtestsrv is the only DNS server pebble asks (-dnsserver): every
name has the A record 127.0.0.1 and no AAAA record (pebble's validator dials
the first address it gets and asks AAAA first: with challtestsrv's default ::1
it would miss a listener on 127.0.0.1), unless a test sets one with set_a.
Its own http-01, https-01 and tls-alpn-01 servers are off. pebble validates
http-01 at http://NAME:http_port/.well-known/acme-challenge/TOKEN (the edge's
HTTP listener in nave's tests) and tls-alpn-01 on tls_port.

Environment of pebble: PEBBLE_VA_NOSLEEP=1 (no random sleep of up to 5 s
before a validation), PEBBLE_AUTHZREUSE=authz_reuse (pebble's default is 50 %;
0 here, so orders need a fresh challenge, but see below), and
PEBBLE_WFE_NONCEREJECT only when nonce_reject is given: by default pebble
rejects 5 % of good nonces with badNonce, which a client must retry.

Debian's package ships none of upstream's test certificates (test/ is not in
it), so start() makes a throwaway CA and a certificate for localhost and
127.0.0.1 in the temp dir. pebble's issuing root and intermediate are new
random keys on every start: fetch issuer_roots() from the instance at hand.
"""
import datetime
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import ssl
import struct
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import navetest as nt

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"

HTTP_TIMEOUT = 10.0  # one request to pebble or challtestsrv


def free_dns_port():
    """A port free for both UDP and TCP on 127.0.0.1 (challtestsrv's DNS binds both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            if nt.port_is_free(port):
                return port
    raise nt.Failure("no port free for both UDP and TCP")


def free_ports(n):
    """n distinct free TCP ports (the kernel may hand one out twice)."""
    ports = set()
    while len(ports) < n:
        ports.add(nt.free_port())
    return list(ports)


def make_tls(d):
    """A throwaway CA (ca.pem) and a certificate for localhost and 127.0.0.1
    signed by it (cert.pem, key.pem) in directory d."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer, pub, sign, ca, san=None):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(pub).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(san, critical=False)
        return b.sign(sign, hashes.SHA256())

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert(name("nave test pebble CA"), name("nave test pebble CA"), ca_key.public_key(),
              ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    leaf = cert(name("localhost"), ca.subject, key.public_key(), ca_key, False, san)
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "cert.pem").write_bytes(leaf.public_bytes(pem))
    (d / "key.pem").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def dns_query(port, name, qtype=1, timeout=2.0):
    """One UDP query to 127.0.0.1:port; the answers' rdata of type qtype
    (A: dotted quads)."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))  # a closed port fails at once (ICMP), not at timeout
        s.send(q)
        r = s.recv(4096)
    (rid, _, _, ancount, _, _) = struct.unpack(">HHHHHH", r[:12])
    if rid != qid:
        raise nt.Failure(f"DNS answer with id {rid}, asked {qid}")

    def skip_name(i):
        while r[i] and r[i] < 0xC0:
            i += 1 + r[i]
        return i + (2 if r[i] >= 0xC0 else 1)

    i = skip_name(12) + 4
    out = []
    for _ in range(ancount):
        i = skip_name(i)
        t, _, _, n = struct.unpack(">HHIH", r[i:i + 10])
        data = r[i + 10:i + 10 + n]
        i += 10 + n
        if t == qtype:
            out.append(socket.inet_ntoa(data) if t == 1 else data)
    return out


class Pebble:
    """pebble + pebble-challtestsrv with their own dir (tmp/name) and free ports.
    Both processes go into registry (the `procs` fixture), which kills what a
    test leaves running."""

    def __init__(self, tmp, registry, http_port, nonce_reject=None, authz_reuse=0,
                 validity=None, name="pebble"):
        self.dir = Path(tmp) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.http_port = http_port
        self.dns_port = free_dns_port()
        self.port, self.mgmt_port, self.tls_port, self.chall_port = free_ports(4)
        while http_port in (self.port, self.mgmt_port, self.tls_port, self.chall_port):
            self.port, self.mgmt_port, self.tls_port, self.chall_port = free_ports(4)
        self.config = self.dir / "pebble.json"
        cfg = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(self.dir / "cert.pem"),
            "privateKey": str(self.dir / "key.pem"),
            "httpPort": http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if validity is not None:
            cfg["certificateValidityPeriod"] = int(validity)  # seconds; default 5 years
        self.config.write_text(json.dumps({"pebble": cfg}, indent=2) + "\n")
        self.challtestsrv = nt.Proc(
            "pebble-challtestsrv",
            [CHALLTESTSRV, "-dns01", f"127.0.0.1:{self.dns_port}",
             "-management", f"127.0.0.1:{self.chall_port}", "-defaultIPv4", "127.0.0.1",
             "-defaultIPv6=", "-http01=", "-https01=", "-tlsalpn01="],
            self.dir / "challtestsrv.log", self.dir)
        self.pebble = nt.Proc(
            "pebble", [PEBBLE, "-config", self.config, "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            self.dir / "pebble.log", self.dir)
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_AUTHZREUSE=str(authz_reuse))
        env.pop("PEBBLE_WFE_NONCEREJECT", None)
        if nonce_reject is not None:
            env["PEBBLE_WFE_NONCEREJECT"] = str(nonce_reject)
        self.pebble.env = env
        registry.append(self.challtestsrv)
        registry.append(self.pebble)

    # -- what a client needs

    @property
    def directory(self):
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def ca_file(self):
        """The CA that signed pebble's HTTPS certificate (API and management)."""
        return self.dir / "ca.pem"

    def ssl_context(self):
        return ssl.create_default_context(cafile=str(self.ca_file))

    # -- lifecycle

    def start(self):
        for b in (PEBBLE, CHALLTESTSRV):
            if not Path(b).exists():
                raise nt.Failure(f"{b} is missing: apt-get install pebble (tests/deps.sh)")
        make_tls(self.dir)
        self.challtestsrv.start()
        self._wait(self.challtestsrv, lambda: self.resolve("ready.test") == ["127.0.0.1"],
                   "challtestsrv's DNS")
        self.pebble.start()
        self._wait(self.pebble, lambda: self._get(self.directory)[0] == 200, "pebble's directory")
        self._wait(self.pebble, lambda: self._get(self._mgmt("/roots/0"))[0] == 200,
                   "pebble's management API")
        return self

    def _wait(self, proc, cond, what):
        def ready():
            if not proc.alive():
                raise nt.Failure(f"{proc.name} exited {proc.poll()}:\n{nt.tail(proc.output())}")
            try:
                return cond()
            except OSError:  # not listening yet
                return False

        nt.wait_for(ready, nt.START_TIMEOUT, what, interval=0.1)

    def stop(self):
        """SIGTERM both. challtestsrv exits 0; pebble has no handler and dies of
        SIGTERM, which is its normal end. Anything else fails."""
        errors = []
        for p in (self.pebble, self.challtestsrv):
            rc = p.stop()
            if rc not in (0, -signal.SIGTERM):
                errors.append(f"{p.name} ended with {rc}\n{nt.tail(p.output())}")
        if errors:
            raise nt.Failure("\n".join(errors))

    # -- pebble's management API (HTTPS, same certificate as the API)

    def _mgmt(self, path):
        return f"https://127.0.0.1:{self.mgmt_port}{path}"

    def _get(self, url):
        """(status, body) of a GET; 4xx/5xx are returned, not raised."""
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT,
                                        context=self.ssl_context()) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def issuer_roots(self):
        """PEM text of every root pebble issues under (/roots/0, /roots/1, ...
        until 404; one unless PEBBLE_ALTERNATE_ROOTS is set)."""
        out = []
        while True:
            status, body = self._get(self._mgmt(f"/roots/{len(out)}"))
            if status == 404:
                break
            if status != 200:
                raise nt.Failure(f"pebble /roots/{len(out)}: HTTP {status}")
            out.append(body.decode())
        return "".join(out)

    def cert_status(self, serial):
        """pebble's view of a certificate (serial: hex text or int), or None
        when it issued none with that serial:
        {"Status": "Valid"|"Revoked", "Serial": hex, "Certificate": PEM,
         "Reason": int (revoked with a reason), "RevokedAt": text (revoked)}."""
        if isinstance(serial, int):
            serial = format(serial, "x")
        status, body = self._get(self._mgmt(f"/cert-status-by-serial/{serial}"))
        if status == 404:
            return None
        if status != 200:
            raise nt.Failure(f"pebble cert-status-by-serial/{serial}: HTTP {status}")
        return json.loads(body)

    # -- challtestsrv's management API (plain HTTP, JSON POSTs)

    def _chall(self, path, obj):
        req = urllib.request.Request(f"http://127.0.0.1:{self.chall_port}{path}",
                                     data=json.dumps(obj).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as r:
            if r.status != 200:
                raise nt.Failure(f"challtestsrv {path}: HTTP {r.status}")

    def set_a(self, host, ip):
        """host's A record is ip (alone) from now on; clear_a(host) restores 127.0.0.1."""
        self._chall("/clear-a", {"host": host})  # /add-a appends to what is there
        self._chall("/add-a", {"host": host, "addresses": [ip]})

    def clear_a(self, host):
        self._chall("/clear-a", {"host": host})

    def resolve(self, host):
        """The A records challtestsrv gives pebble for host."""
        return dns_query(self.dns_port, host)

# SPDX-License-Identifier: Apache-2.0
"""The tunnel port's own certificate ([tls] certificate, private_key) without
a restart: a reload that names new files swaps it for links made from then on
while a transfer through the tunnel goes on exact; files replaced in place (an
ACME renewal) are picked up within seconds without a reload; a certificate
that does not load is refused in one line and the running one stays. Clients
that verify by CA (not a pinned fingerprint) check the server's name: a
certificate the same CA issued for another name is refused."""
import datetime
import hashlib
import ipaddress
import socket
import ssl

import navetest as nt
from navetest import KiB, MiB
from test_reload_live import navectl_reload, set_keys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def ca(dirpath):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nave test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = dirpath / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def leaf(dirpath, stem, ca_key, ca_cert, names):
    """A certificate ca issued for names (DNS names and IP literals): (cert, key, sha256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cp, kp = dirpath / f"{stem}.crt", dirpath / f"{stem}.key"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return cp, kp, hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def served(srv):
    """SHA-256 of the certificate a new link to the tunnel port gets (ALPN nave/1)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["nave/1"])
    with socket.create_connection((srv.address, srv.https), timeout=nt.IO_TIMEOUT) as s:
        with ctx.wrap_socket(s) as t:
            return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()


def test_tunnel_certificate_without_restart(tmp_path, procs, services):
    d = tmp_path / "pki"
    d.mkdir()
    ca_key, ca_cert, ca_path = ca(d)
    a_crt, a_key, a_fp = leaf(d, "a", ca_key, ca_cert, ["127.0.0.1", "localhost"])
    srv = nt.Server(tmp_path, procs, extra_ini=f"[tls]\ncertificate = {a_crt}\n"
                                               f"private_key = {a_key}\n").start()
    assert served(srv) == a_fp
    c = nt.Client(srv, tmp_path, procs, "byca")
    p = c.nave("configure", "--server", f"127.0.0.1:{srv.https}",
               "--registration", srv.registration(), "--ca", str(ca_path))
    assert p.returncode == 0, p.stderr
    c.start()
    svc = services(nt.h_exchange)
    port = c.tcp_add(svc.port)
    relayd_pid = srv.relayd.pid

    # new files named by a reload, mid-transfer: the bytes stay exact
    b_crt, b_key, b_fp = leaf(d, "b", ca_key, ca_cert, ["127.0.0.1", "localhost"])

    def swap():
        set_keys(srv, "tls", certificate=b_crt, private_key=b_key)
        out = navectl_reload(srv)
        assert "[tls] certificate" in out, out
    nt.exchange(port, 16 * MiB, midway=swap)
    nt.wait_for(lambda: served(srv) == b_fp, 15, "the new certificate on the tunnel port")
    assert "tls: the tunnel port's certificate is now" in srv.relayd.output()
    nt.exchange(port, 256 * KiB)  # links made now verify the new one by the CA

    # the files replaced in place (as an ACME renewal does): no reload needed
    c_crt, c_key, c_fp = leaf(d, "c", ca_key, ca_cert, ["127.0.0.1", "localhost"])
    b_key.write_bytes(c_key.read_bytes())
    b_crt.write_bytes(c_crt.read_bytes())
    nt.wait_for(lambda: served(srv) == c_fp, 20, "the renewed files on the tunnel port")
    nt.exchange(port, 256 * KiB)

    # one that does not load: refused in one line, the running one stays
    set_keys(srv, "tls", certificate=d / "missing.crt")
    out = navectl_reload(srv)
    assert "refused" in out and "the tunnel port keeps its certificate" in out, out
    assert served(srv) == c_fp
    nt.exchange(port, 256 * KiB)

    # the same CA's certificate for another name: clients that verify by CA refuse it
    w_crt, w_key, w_fp = leaf(d, "w", ca_key, ca_cert, ["wrong.test"])
    set_keys(srv, "tls", certificate=w_crt, private_key=w_key)
    navectl_reload(srv)
    nt.wait_for(lambda: served(srv) == w_fp, 15, "the wrong-name certificate served")
    n = nt.Client(srv, tmp_path, procs, "byca2")
    p = n.nave("configure", "--server", f"127.0.0.1:{srv.https}",
               "--registration", srv.registration(), "--ca", str(ca_path))
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = nt.user_lines(p.stderr)
    assert len(lines) == 1 and "mismatch" in lines[0], lines
    assert srv.relayd.pid == relayd_pid and srv.relayd.alive()
    c.stop()

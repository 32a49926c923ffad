# SPDX-License-Identifier: Apache-2.0
"""The Debian package on a machine that runs systemd: `make appliance-test`
boots a QEMU guest with the host's systemd as PID 1 (tests/ktls/guest.sh
--systemd: the host root read-only under a tmpfs overlay, so installing
changes nothing on the host) and runs this file there, as root.

One test, in the order an operator goes: dpkg -i, the nave user and the
files, start both units (Type=notify), the privileges they run with, a
device's nave-client@ unit, bytes through a tunnel, systemctl reload
mid-transfer with the bytes exact, systemctl restart nave-controld with the
tunnel kept by relayd, a trusted certificate from an ACME CA (pebble) by a
reload, then dpkg -r and dpkg -P leaving nothing behind."""
import grp
import json
import os
import pwd
import re
import subprocess
import time
from pathlib import Path

import pytest

import navetest as nt

ROOT = nt.ROOT
VERSION = re.search(r'#define NAVE_VERSION\s+"([^"]+)"', (ROOT / "common/util.h").read_text())[1]
DEB = Path(os.environ.get("NAVE_DEB", ROOT / "build" / f"nave_{VERSION}_amd64.deb"))
INI = Path("/etc/nave/nave.ini")
CLIENT_INI = Path("/var/lib/nave-client/t1.ini")

# capability numbers (linux/capability.h)
CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_BPF = 10, 12, 39

pytestmark = pytest.mark.skipif(
    not (Path("/run/systemd/system").is_dir() and os.getpid() != 1 and os.geteuid() == 0
         and os.environ.get("NAVE_APPLIANCE_GUEST") == "1"),
    reason="runs only in the systemd guest (make appliance-test)")


def sh(*cmd, check=True, timeout=120, user=None):
    if user:
        cmd = ("runuser", "-u", user, "--") + cmd
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise nt.Failure(f"{' '.join(map(str, cmd))}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def journal(unit):
    return sh("journalctl", "--no-pager", "-o", "cat", "-u", unit, check=False).stdout


def main_pid(unit):
    return int(sh("systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip())


def status(pid):
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, v = line.split(":", 1)
        out[k] = v.strip()
    return out


def caps(mask_hex):
    m = int(mask_hex, 16)
    return {i for i in range(64) if m >> i & 1}


def navectl(*args):
    p = sh("navectl", "--config", INI, "--json", *args)
    return json.loads(p.stdout) if p.stdout.strip().startswith(("{", "[")) else p.stdout


def client(*args, check=True):
    return sh("nave", "--config", CLIENT_INI, *args, user="nave-client", check=check)


ACME_CA = Path("/etc/nave/acme-test-ca.pem")  # the units' private /tmp hides the test's


def acme_from_pebble(tmp_path, relayd_pid):
    """[acme] filled in and a reload: the sandboxed controld reaches the CA, the
    sandboxed relayd answers on port 80 and serves the certificate on 443."""
    import socket
    import ssl

    from acme_pebble import Pebble
    from cryptography import x509

    procs = []
    pb = Pebble(tmp_path, procs, 80).start()
    try:
        ACME_CA.write_bytes(Path(pb.ca_file).read_bytes())
        ACME_CA.chmod(0o644)
        text = INI.read_text()
        for key, value in (("directory", pb.directory), ("domains", "edge.nave.test"),
                           ("ca", ACME_CA), ("accept_terms", "on")):
            text, n = re.subn(rf"(?m)^{key} =.*$", f"{key} = {value}", text)
            assert n == 1, f"{key} in {INI}"
        INI.write_text(text)
        sh("systemctl", "reload", "nave-controld", timeout=120)

        def valid():
            d = navectl("acme", "status")["domains"]
            return d and d[0]["state"] == "valid" and d[0]
        got = nt.wait_for(valid, 120, f"a certificate from pebble\n{journal('nave-controld')}")
        ctx = ssl.create_default_context(cadata=pb.issuer_roots())

        def served():
            with socket.create_connection(("127.0.0.1", 443), timeout=10) as s:
                with ctx.wrap_socket(s, server_hostname="edge.nave.test") as t:
                    return x509.load_der_x509_certificate(
                        t.getpeercert(binary_form=True)).serial_number
        nt.wait_for(lambda: served() == int(got["serial"], 16), 30, "relayd serving it")
        pem = Path("/var/lib/nave/acme/certs/edge.nave.test.pem")
        assert pem.owner() == "nave" and pem.stat().st_mode & 0o777 == 0o600
        assert main_pid("nave-relayd") == relayd_pid  # no restart for any of it
    finally:
        pb.stop()


def test_appliance_lifecycle(tmp_path):
    assert DEB.is_file(), f"{DEB}: make deb first (make appliance-test does)"
    # ---- install
    sh("dpkg", "-i", DEB, timeout=300)
    pw = pwd.getpwnam("nave")
    assert pw.pw_shell.endswith("nologin") and pw.pw_uid < 1000, pw
    st = INI.stat()
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name, oct(st.st_mode & 0o777)) == (0, "nave", "0o640")
    for d, owner in (("/var/lib/nave", "nave"), ("/var/lib/nave-client", "nave-client"),
                     ("/run/nave", "nave")):
        assert Path(d).is_dir() and Path(d).owner() == owner, d
    reserved = Path("/proc/sys/net/ipv4/ip_local_reserved_ports").read_text()
    assert "22000-22999" in reserved, f"sysctl snippet not applied: {reserved!r}"
    for u in ("nave-controld.service", "nave-relayd.service"):
        assert sh("systemctl", "is-enabled", u).stdout.strip() == "enabled", u
        # a first install does not start them (the domain goes into the certificate)
        assert sh("systemctl", "is-active", u, check=False).stdout.strip() == "inactive", u

    # ---- configure and start (Type=notify: start returns once READY=1 came)
    text = INI.read_text().replace("domain = localhost", "domain = edge.nave.test")
    INI.write_text(text)
    p = sh("systemctl", "start", "nave-controld", "nave-relayd", timeout=180, check=False)
    assert p.returncode == 0, f"{p.stderr}\n{journal('nave-controld')}\n{journal('nave-relayd')}"
    for u in ("nave-controld", "nave-relayd"):
        assert sh("systemctl", "is-active", u).stdout.strip() == "active", journal(u)
        assert sh("systemctl", "show", "-p", "StatusText", "--value", u).stdout.strip(), u
    assert "already in net.ipv4.ip_local_reserved_ports" in journal("nave-relayd")

    # ---- least privilege, as the kernel sees it
    rd, cd = status(main_pid("nave-relayd")), status(main_pid("nave-controld"))
    for s in (rd, cd):
        assert s["Uid"].split()[0] == str(pw.pw_uid) and s["Gid"].split()[0] == str(pw.pw_gid), s
        assert s["NoNewPrivs"] == "1" and s["Seccomp"] == "2", s
    # the unit gives three; once its ports 80 and 443 are bound relayd keeps the
    # two BPF steering needs (the range is above 1024)
    assert caps(rd["CapBnd"]) == {CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_BPF}, rd
    assert caps(rd["CapEff"]) == caps(rd["CapPrm"]) == {CAP_NET_ADMIN, CAP_BPF}, rd
    assert caps(rd["CapAmb"]) == set(), rd
    assert caps(cd["CapEff"]) == set() and caps(cd["CapBnd"]) == set(), cd
    # BPF steering works with those capabilities (steering = auto picks it)
    assert "steering bpf" in journal("nave-relayd"), journal("nave-relayd")

    # ---- a device: nave-client@t1, configured as user nave-client
    reg = sh("navectl", "--config", INI, "registration", "create").stdout.splitlines()[0].strip()
    fpr = navectl("status")["tls_fingerprint"]
    client("configure", "--server", "127.0.0.1:443", "--registration", reg, "--fingerprint", fpr)
    sh("systemctl", "start", "nave-client@t1", timeout=120)
    nt.wait_for(lambda: json.loads(client("--json", "status", check=False).stdout or "{}")
                .get("state") == "online", 60, "nave-client@t1 online")
    cs = status(main_pid("nave-client@t1"))
    cpw = pwd.getpwnam("nave-client")
    assert caps(cs["CapEff"]) == set() and cs["Uid"].split()[0] == str(cpw.pw_uid), cs
    # the client cannot reach the edge's store or its sockets: in its mount
    # namespace they are covered by an empty node
    root = Path(f"/proc/{main_pid('nave-client@t1')}/root")
    assert not list((root / "run/nave").iterdir()), "the client sees /run/nave"
    assert not list((root / "var/lib/nave").iterdir()), "the client sees /var/lib/nave"

    svc = nt.Service(nt.h_exchange)
    try:
        port = int(client("tunnel", "tcp", "add", "--to", f"127.0.0.1:{svc.port}").stdout.strip())
        assert 22000 <= port <= 22999, port
        nt.exchange(port, 4 * nt.MiB)

        # ---- systemctl reload mid-transfer: the bytes stay exact
        def reload():
            sh("systemctl", "reload", "nave-relayd", "nave-controld", timeout=120)

        relayd_pid = main_pid("nave-relayd")
        nt.exchange(port, 32 * nt.MiB, midway=reload)
        assert "reload: /etc/nave/nave.ini read" in journal("nave-relayd")
        assert "reload: /etc/nave/nave.ini read" in journal("nave-controld")
        assert main_pid("nave-relayd") == relayd_pid

        # ---- restart controld: relayd and its tunnel stay
        sh("systemctl", "restart", "nave-controld", timeout=120)
        assert main_pid("nave-relayd") == relayd_pid
        nt.exchange(port, 4 * nt.MiB)
        nt.wait_for(lambda: navectl("status")["relay"]["connected"], 60,
                    "relayd connected to the new controld")
        listed = navectl("tunnels", "ls")
        assert any(t.get("state") == "online" for t in listed["items"]), listed

        # ---- navectl reload and backup against the sandboxed daemons
        out = sh("navectl", "--config", INI, "reload").stdout
        assert "relayd: asked to reload" in out, out
        out = sh("navectl", "--config", INI, "backup", tmp_path / "b.db").stdout
        assert "backup written to" in out and (tmp_path / "b.db").stat().st_size > 0, out
        assert list(Path("/var/lib/nave/backups").glob("nave-*.db"))
        nt.exchange(port, 1 * nt.MiB)

        # ---- a trusted certificate: ACME from pebble, HTTP-01 on port 80, served on 443
        acme_from_pebble(tmp_path, relayd_pid)
        nt.exchange(port, 1 * nt.MiB)
    finally:
        svc.close()
        ACME_CA.unlink(missing_ok=True)

    # ---- remove: the services stop, the files go, the conffile stays
    sh("systemctl", "stop", "nave-client@t1", timeout=60)
    sh("dpkg", "-r", "nave", timeout=300)
    for u in ("nave-controld", "nave-relayd"):
        assert sh("systemctl", "is-active", u, check=False).stdout.strip() != "active", u
    for f in ("/usr/sbin/nave-relayd", "/usr/bin/nave", "/usr/lib/nave/nave-pki",
              "/usr/lib/systemd/system/nave-relayd.service"):
        assert not Path(f).exists(), f"{f} left after dpkg -r"
    assert INI.exists(), "dpkg -r removed the conffile"
    # ---- purge: the config and the state go too
    sh("dpkg", "-P", "nave", timeout=300)
    for f in ("/etc/nave", "/var/lib/nave", "/var/lib/nave-client"):
        assert not Path(f).exists(), f"{f} left after dpkg -P"
    assert "nave" not in sh("dpkg", "-l", check=False).stdout.split()

# SPDX-License-Identifier: Apache-2.0
"""kTLS modes on a kernel WITHOUT the TLS ULP (this host, CI's host): `auto`
falls back to userspace TLS with one log line at start and says so in both
statuses; `on` refuses to start with one line (relayd and the client); `off`
says it is off. The kernel-TLS datapath itself is proven in a guest that has
the module: tests/ktls/ (make ktls-test)."""
import re

import pytest

import navetest as nt

pytestmark = pytest.mark.skipif(
    nt.kernel_has_ktls(), reason="this kernel has kTLS: tests/ktls covers it")


def _set_client_ktls(c, mode):
    text = c.ini.read_text()
    text, n = re.subn(r"(?m)^ktls\s*=.*$", f"ktls = {mode}", text)
    if not n:
        text = text.replace("[client]\n", f"[client]\nktls = {mode}\n", 1)
    c.ini.write_text(text)


def test_relayd_on_refuses_with_one_line(tmp_path, procs):
    srv = nt.Server(tmp_path, procs, extra_ini="[datapath]\nktls = on\n")
    srv.start_controld()
    srv.relayd.start()
    rc = srv.relayd.wait(nt.START_TIMEOUT)
    out = srv.relayd.output()
    srv.stop_controld()
    assert rc == 1, out
    lines = [l for l in nt.user_lines(out) if not l.startswith("==== ")]  # Proc's marker
    assert len(lines) == 1, out
    assert lines[0].startswith("nave-relayd: [datapath] ktls = on: the kernel has no TLS ULP"), out


@pytest.mark.parametrize("server_ini", ["[datapath]\nktls = auto\n"])
def test_auto_falls_back_with_one_line(server, make_client, services):
    c, port = nt.working_tunnel(make_client, services)
    for _ in range(5):
        nt.exchange(port, 300 * nt.KiB)
    relay_lines = [l for l in server.relayd.output().splitlines() if "kTLS:" in l]
    assert len(relay_lines) == 1, relay_lines
    assert "links use userspace TLS (ktls = auto)" in relay_lines[0]
    client_lines = [l for l in c.proc.output().splitlines() if "kTLS:" in l]
    assert len(client_lines) == 1, client_lines

    def counted():
        r = server.navectl("status", json=True)["relay"]
        return r if r["links"] else None

    relay = nt.wait_for(counted, 10, "relayd's stats with links")
    assert relay["ktls"] == "userspace (no TLS ULP in the kernel)"
    assert relay["links_ktls"] == 0 and relay["links_tls"] == relay["links"]
    assert relay["ktls_fallbacks"] == 0
    st = c.status()
    assert st["ktls"] == "userspace (no TLS ULP in the kernel)"
    assert st["links_ktls"] == 0 and st["links_tls"] >= 1
    rc, out, _ = server.navectl("status")
    assert rc == 0 and "userspace (no TLS ULP in the kernel) (links: 0 kTLS" in out, out


@pytest.mark.parametrize("server_ini", ["[datapath]\nktls = off\n"])
def test_off_says_off(server, make_client, services):
    c = make_client("c", start=False)
    _set_client_ktls(c, "off")
    c.start()
    s = services(nt.h_exchange, "x")
    nt.exchange(c.tcp_add(s.port), 64 * nt.KiB)
    assert server.navectl("status", json=True)["relay"]["ktls"] == "userspace (ktls = off)"
    assert c.status()["ktls"] == "userspace (ktls = off)"
    assert "kTLS:" not in server.relayd.output()
    assert "kTLS:" not in c.proc.output()


def test_client_on_refuses_with_one_line(server, make_client):
    c = make_client("c", start=False)
    _set_client_ktls(c, "on")
    c.proc.start()
    rc = c.proc.wait(nt.START_TIMEOUT)
    out = c.proc.output()
    assert rc == 1, out
    lines = [l for l in nt.user_lines(out) if not l.startswith("==== ")]  # Proc's marker
    assert len(lines) == 1, out
    assert lines[0].startswith("nave: [client] ktls = on: the kernel has no TLS ULP"), out

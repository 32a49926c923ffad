# SPDX-License-Identifier: Apache-2.0
"""One instance per address and per directory: a second relayd/controld pair
started beside a running one (same user) must not share its listeners. It
exits 1 with one line naming the address and the holder, or the lock and the
holder's pid, and the first keeps serving every connection."""
import hashlib
import socket
import ssl

import navetest as nt
from navetest import KiB


def only_lines(proc):
    return [l for l in nt.user_lines(proc.output()) if not l.startswith("==== ")]


def cert_fingerprint(port):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with nt.tls_context().wrap_socket(raw, server_hostname="localhost") as s:
        der = s.getpeercert(binary_form=True)
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, 64, 2))


def test_second_relayd_on_the_same_address_is_refused(server, make_client, services, tmp_path,
                                                      procs):
    client, port = nt.working_tunnel(make_client, services)
    first = server.fingerprint()
    other = nt.Server(tmp_path, procs, https=server.https,
                      port_range=(server.port_min, server.port_max), name="second")
    other.start_controld()
    other.relayd.start()
    rc = other.relayd.wait(nt.START_TIMEOUT)
    assert rc == 1, nt.tail(other.relayd.output())
    lines = only_lines(other.relayd)
    assert lines == [f"nave-relayd: cannot listen for tunnels: 127.0.0.1:{server.https} is in "
                     f"use by nave-relayd (pid {server.relayd.pid})"], lines
    # every TLS client still meets the first server, every connection reaches its tunnel
    for _ in range(20):
        assert cert_fingerprint(server.https) == first
    for _ in range(10):
        nt.exchange(port, 16 * KiB)
    other.stop_controld()
    assert server.relayd.alive() and server.controld.alive()


def test_public_port_is_not_shared(server, make_client, services, tmp_path, procs):
    """A second relayd (own tunnel port, same TCP range) cannot open a port the
    first one listens on: the client's request is refused."""
    client, port = nt.working_tunnel(make_client, services)
    other = nt.Server(tmp_path, procs, port_range=(server.port_min, server.port_max),
                      name="second")
    if server.navectl("status", json=True)["relay"]["steering"] == "bpf":
        # no port of the range is bound: the second relayd finds the first one's
        # sk_lookup program instead, and is refused at start
        other.start_controld()
        other.relayd.start()
        assert other.relayd.wait(nt.START_TIMEOUT) == 1, other.relayd.output()
        assert "another nave-relayd already steers ports" in other.relayd.output()
        for _ in range(20):
            nt.exchange(port, 4 * KiB)
        return
    other.start()
    c2 = nt.Client(other, tmp_path, procs, "c2")
    c2.configure()
    c2.start()
    s2 = services(nt.h_exchange, "svc2")
    p = c2.tcp_add_raw(s2.port, port=port)
    assert p.returncode == 1, (p.stdout, p.stderr)
    # the client learns that the port is taken, not who holds it
    assert p.stderr == (f"nave: port {port} cannot be opened on this server: 127.0.0.1:{port} "
                        f"is in use\n"), p.stderr
    # the refused allocation is not kept, and a port of its own still works
    nt.wait_for(lambda: port not in other.ports(), 30, f"port {port} released on the second")
    own = c2.tcp_add(s2.port, port=port + 1)
    nt.exchange(own, 16 * KiB)
    for _ in range(20):
        nt.exchange(port, 4 * KiB)
    c2.stop()
    other.stop()


def test_second_instance_with_the_same_directories(server, tmp_path, procs):
    relayd2 = nt.Proc("nave-relayd#2", [nt.RELAYD, "--config", server.ini],
                      tmp_path / "relayd2.log", server.dir)
    controld2 = nt.Proc("nave-controld#2", [nt.CONTROLD, "--config", server.ini],
                        tmp_path / "controld2.log", server.dir)
    procs.extend([relayd2, controld2])
    for proc, holder in ((relayd2, server.relayd), (controld2, server.controld)):
        proc.start()
        assert proc.wait(nt.START_TIMEOUT) == 1, nt.tail(proc.output())
        lines = only_lines(proc)
        text = "\n".join(proc.output().splitlines()[1:])
        assert len(text.splitlines()) == 1, text
        name = holder.name
        assert f"another {name} (pid {holder.pid}) is running with" in text, text
        assert f"{name}.lock" in text, text
        del lines
    # the first pair is undisturbed: relayd is still the one controld talks to
    server.wait_relay_connected()

# SPDX-License-Identifier: Apache-2.0
"""[ports] reserve: relayd puts its range into net.ipv4.ip_local_reserved_ports
at start, merged with what is reserved already, and says so in one line; with
reserve = off, a range that overlaps the ephemeral range is warned about. The
sysctl is per network namespace: relayd runs in one this test makes (root),
so the machine's own value is never touched."""
import os
import subprocess
import uuid

import pytest

import navetest as nt

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

RESERVED = "/proc/sys/net/ipv4/ip_local_reserved_ports"
EPHEMERAL = "/proc/sys/net/ipv4/ip_local_port_range"


@pytest.fixture
def netns():
    name = f"nave-rsv-{uuid.uuid4().hex[:8]}"
    p = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"ip netns add: {p.stderr.strip()}")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def ns_read(ns, path):
    return subprocess.run(["ip", "netns", "exec", ns, "cat", path], capture_output=True,
                          text=True, check=True).stdout.strip()


def ns_write(ns, path, value):
    subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", f"echo '{value}' > {path}"],
                   check=True)


def start_in(ns, srv):
    """controld as usual (its sockets are files), relayd inside ns."""
    srv.start_controld()
    srv.relayd.cmd = ["ip", "netns", "exec", ns] + srv.relayd.cmd
    srv.relayd.start()
    srv.wait_relay_connected()


def test_range_is_reserved_and_merged(tmp_path, procs, netns):
    host_before = open(RESERVED).read()
    ns_write(netns, RESERVED, "1000-1010,40000")
    srv = nt.Server(tmp_path, procs)
    srv.ini.write_text(srv.ini.read_text().replace("reserve = off\n", "reserve = on\n"))
    try:
        start_in(netns, srv)
        want = f"1000-1010,{srv.port_min}-{srv.port_max},40000"
        assert ns_read(netns, RESERVED) == want
        lines = [l for l in srv.relayd.output().splitlines() if "ip_local_reserved_ports" in l]
        assert len(lines) == 1, lines
        assert f"{srv.port_min}-{srv.port_max} added to" in lines[0]
        # a restart finds it there and changes nothing
        srv.stop_relayd()
        srv.relayd.start()
        srv.wait_relay_connected()
        assert ns_read(netns, RESERVED) == want
        assert "already in net.ipv4.ip_local_reserved_ports" in srv.relayd.output()
    finally:
        srv.stop()
    assert open(RESERVED).read() == host_before, "the machine's own sysctl changed"


def test_off_leaves_it_and_warns_about_an_overlap(tmp_path, procs, netns):
    srv = nt.Server(tmp_path, procs)  # reserve = off, as every test server
    ns_write(netns, RESERVED, "")
    ns_write(netns, EPHEMERAL, f"{srv.port_min - 100}\t{srv.port_max + 100}")
    try:
        start_in(netns, srv)
        assert ns_read(netns, RESERVED) == ""
        warn = [l for l in srv.relayd.output().splitlines() if "overlaps" in l]
        assert len(warn) == 1, srv.relayd.output()
        assert (f"{srv.port_min}-{srv.port_max} overlaps net.ipv4.ip_local_port_range "
                f"{srv.port_min - 100}-{srv.port_max + 100} and is not reserved") in warn[0]
    finally:
        srv.stop()


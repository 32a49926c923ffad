# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the end-to-end tests: a running server (nave-controld +
nave-relayd), clients, and local services. See navetest.py for the objects.

Every test gets fresh temporary directories, a free tunnel port and its own
50-port public range; teardown stops everything with SIGTERM and requires exit
status 0 (no process may die of a signal). When a test fails, the tails of all
its processes' logs are attached to the report.
"""
import os

import pytest

import navetest as nt
from acme_pebble import Pebble

# Suites that never reach the public TCP port range (ACME, the HTTP edge, the
# CLI, the docs and the package): with NAVE_TEST_RANGE_ONLY=1 (make test's run
# of the normal build under [datapath] steering = listeners) they are left out,
# since the sanitizer run (steering = bpf) runs them unchanged.
RANGE_FREE = {
    "test_acme", "test_acme_pebble", "test_man", "test_docs", "test_package", "test_backup",
    "test_cli", "test_http_edge", "test_webroot", "test_domains_ctl", "test_privsep",
    "test_http", "test_demo", "test_api_golden", "test_admin", "test_pki", "test_admin_cert",
    "test_support_ctl",
}


# Suites that reach the range only to carry bytes for what they test in the control
# plane (remote rules, token restrictions, the metrics text): their ports open through the
# same allocation path test_rules and test_tunnel prove under each steering mode, so the
# run under listeners leaves them out too.
# test_udp too: a UDP port is per-worker SO_REUSEPORT sockets under either steering mode
# (sk_lookup steers TCP only), so the second run would repeat the first.
STEERING_SAME = {"test_remote_rules", "test_token_restrict", "test_metrics", "test_mesh_ctl",
                 "test_udp"}

# The mesh suite too: its streams go from one tunnel to another (or to an allowed
# external address) through relayd without a public listener.
STEERING_SAME |= {"test_mesh"}


# Suites whose subject only the normal build shows (the browser against the dashboard,
# the package made from build/): the sanitizer run skips them, so the range-only run
# of the normal build keeps them.
NORMAL_BUILD_ONLY = {"test_dashboard", "test_package"}


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NAVE_TEST_RANGE_ONLY") != "1":
        return
    left_out = (RANGE_FREE | STEERING_SAME) - NORMAL_BUILD_ONLY
    out = [i for i in items if i.module.__name__ in left_out]
    if out:
        config.hook.pytest_deselected(items=out)
        items[:] = [i for i in items if i.module.__name__ not in left_out]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        seen = set()
        for p in getattr(item, "_nave_procs", []):
            if p.log_path in seen:
                continue
            seen.add(p.log_path)
            rep.sections.append((f"log {p.name}: {p.log_path}", nt.tail(p.output(), 200)))


@pytest.fixture
def procs(request):
    """Every process a test starts, for teardown and the failure report."""
    reg = []
    request.node._nave_procs = reg
    yield reg
    # whatever a test left running (a test with its own Server stops what it
    # checks; the rest must not outlive it)
    for p in reg:
        p.kill()


def _need_binaries():
    for b in (nt.CONTROLD, nt.RELAYD, nt.NAVECTL, nt.NAVE):
        if not b.exists():
            pytest.fail(f"{b} is not built (make, or make SAN=1 for build-san)")


@pytest.fixture
def free_port():
    return nt.free_port


@pytest.fixture
def services():
    made = []

    def make(handler, name="svc"):
        s = nt.Service(handler, name)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def svc(services):
    """The default local service: h_exchange (N bytes each way, SHA-256 checked)."""
    return services(nt.h_exchange, "exchange")


@pytest.fixture
def pebble(tmp_path, procs):
    """pebble(http_port, **kw) -> a started acme_pebble.Pebble (the ACME test
    CA and its DNS; kw: nonce_reject, authz_reuse, validity), stopped at
    teardown, where a process that ended otherwise than on SIGTERM fails."""
    made = []

    def make(http_port, **kw):
        pb = Pebble(tmp_path, procs, http_port, name=f"pebble{len(made) or ''}", **kw)
        made.append(pb)
        return pb.start()

    yield make
    for pb in made:
        pb.stop()


@pytest.fixture
def server_ini():
    """Extra server config for the `server` fixture: a module overrides this
    fixture, or a test parametrizes it (@pytest.mark.parametrize("server_ini", ...))."""
    return ""


@pytest.fixture
def server(tmp_path, procs, server_ini):
    _need_binaries()
    srv = nt.Server(tmp_path, procs, extra_ini=server_ini)
    try:
        srv.start()
    except BaseException:
        for p in procs:
            p.kill()
        raise
    yield srv
    errors = []
    # clients first (they would only reconnect), then the daemons
    for p in procs:
        if p.name.startswith("nave(") and p.proc is not None:
            try:
                if p.rc is None and p.alive():
                    nt.check_exit(p.name, p.stop(), p.output())
                else:
                    rc = p.wait(nt.STOP_TIMEOUT) if p.rc is None else p.rc
                    if rc is not None and rc < 0:
                        raise nt.Failure(f"{p.name} died of signal {-rc}")
            except nt.Failure as e:
                errors.append(str(e))
    try:
        srv.stop()
    except nt.Failure as e:
        errors.append(str(e))
    for p in procs:
        p.kill()
    if errors:
        pytest.fail("teardown: " + "\n".join(errors), pytrace=False)


@pytest.fixture
def make_client(server, tmp_path, procs):
    """make_client(name, start=True, **configure_kw) -> a configured (and started) Client."""
    n = [0]

    def make(name=None, start=True, **kw):
        n[0] += 1
        c = nt.Client(server, tmp_path, procs, name or f"c{n[0]}")
        c.configure(**kw)
        if start:
            c.start()
        return c

    return make


@pytest.fixture
def client(make_client):
    return make_client("c0")


# relayd's side of mesh streams, spoken by hand: tunnel to tunnel through relayd
# without a public listener, so the listeners pass leaves it out too.
STEERING_SAME |= {"test_mesh_link"}
# UDP port maps and relayd's SOCKS listeners: mesh streams again (UDP ports are per-worker
# SO_REUSEPORT sockets under either mode; the SOCKS listeners are relayd's own).
STEERING_SAME |= {"test_mesh_udp", "test_socks_edge"}
# Certificate logins: the control link's login, whatever steers the public port its
# bytes cross.
STEERING_SAME |= {"test_mtls"}
# SOCKS UDP ASSOCIATE on relayd: UDP, which sk_lookup does not steer.
STEERING_SAME |= {"test_socks_edge_udp"}
# Support sessions from the device's side: control messages only, no port of the range.
STEERING_SAME |= {"test_support"}
# relayd's side of support streams: a supporter's link joined to its device, no port range.
STEERING_SAME |= {"test_support_link"}
# Support streams: a supporter's link to the tunnel port is a control link, its stream one
# on the device's data links; no port of the range.
STEERING_SAME |= {"test_support_streams"}

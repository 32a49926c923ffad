# SPDX-License-Identifier: Apache-2.0
"""The kTLS guest suite reuses the integration helpers (tests/integration/
navetest.py) and, like the integration suite, attaches the tails of the
processes' logs to the report of a failing test."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import navetest as nt  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        seen = set()
        for p in getattr(item.module, "PROCS", []):
            if p.log_path in seen:
                continue
            seen.add(p.log_path)
            rep.sections.append((f"log {p.name}: {p.log_path}", nt.tail(p.output(), 200)))

# SPDX-License-Identifier: Apache-2.0
"""The appliance suite runs inside the systemd guest (tests/ktls/guest.sh
--systemd) and reuses the integration helpers (tests/integration/navetest.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

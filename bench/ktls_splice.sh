#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make bench-splice: runs bench/ktls_splice (splice vs provided-buffer ring)
# twice and writes bench/results/ktls-splice-<UTC timestamp>.json:
#   host_plain  on this machine with --no-ktls (plain TCP link: the mechanism's
#               own cost, no emulation)
#   guest_ktls  in the kTLS guest (tests/ktls/guest.sh, QEMU TCG, Debian's
#               6.1 kernel with tls.ko): kTLS link sockets; ratios only, the
#               CPU is emulated
# Usage: bench/ktls_splice.sh BIN   (env: SPLICE_HOST_MIB, default 2048;
# SPLICE_GUEST_MIB, default 128; SPLICE_RUNS, default 5: rounds, since a shared host drifts; NAVE_GUEST_RUNNER,
# default tests/ktls/guest.sh; NAVE_GUEST_CACHE is honoured by the runner)
# Exit status: 0, or 1 when a run failed. A machine that cannot run the guest
# (the runner exits 77) gets guest_ktls = null and the reason.
set -eu

[ $# -eq 1 ] || {
	echo "usage: $0 BIN" >&2
	exit 2
}
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
runs=${SPLICE_RUNS:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ts=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/results/ktls-splice-$ts.json
rc=0

echo "== host, plain TCP link (--no-ktls)" >&2
if ! "$bin" --no-ktls --mib "${SPLICE_HOST_MIB:-2048}" --runs "$runs" --json >"$tmp/host.json"; then
	echo "bench-splice: the host run failed" >&2
	rc=1
fi

guest_status=skipped
runner=${NAVE_GUEST_RUNNER:-tests/ktls/guest.sh}
if [ ! -x "$runner" ]; then
	echo "no kTLS guest runner ($runner)" >"$tmp/skip"
else
	echo "== kTLS guest ($runner, QEMU TCG)" >&2
	set +e
	NAVE_GUEST_SKIPPED=$tmp/skip "$runner" --timeout 1500 "$bin" --mib "${SPLICE_GUEST_MIB:-128}" \
		--runs "$runs" --json | tee "$tmp/guest.log"
	st=$?
	set -e
	case $st in
	0) guest_status=ok ;;
	77) ;;
	*)
		echo "guest run exited $st" >"$tmp/skip"
		rc=1
		;;
	esac
fi
grep '^{"tool":"ktls_splice"' "$tmp/guest.log" 2>/dev/null >"$tmp/guest.json" || true

/usr/bin/python3 - "$tmp" "$out" "$guest_status" <<'EOF'
import json, os, subprocess, sys

tmp, out, status = sys.argv[1:4]

def load(name):
    try:
        with open(os.path.join(tmp, name)) as f:
            text = f.read().strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None

skip = None
if os.path.exists(os.path.join(tmp, "skip")):
    with open(os.path.join(tmp, "skip")) as f:
        skip = f.read().strip()
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
res = {
    "bench": "ktls_splice",
    "git_commit": commit,
    "note": "MB/s medians over rounds; ratio = splice median / bufring median in the same direction; round_ratios = median of the per-round ratios (steadier when the machine drifts). "
            "guest_ktls runs under QEMU TCG (emulated CPU, crypto dominates): only its ratios mean "
            "anything. host_plain has no TLS: the cost of the mechanism alone.",
    "host_plain": load("host.json"),
    "guest_ktls": load("guest.json") if status == "ok" else None,
    "guest_skipped": skip if status != "ok" else None,
}
with open(out, "w") as f:
    json.dump(res, f, indent=1)
    f.write("\n")
print("wrote " + out, file=sys.stderr)
for name in ("host_plain", "guest_ktls"):
    r = res[name]
    if r:
        print("%-10s %s" % (name, " ".join("%s=%.3f" % kv for kv in r["ratios"].items())))
EOF
exit $rc

#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make bench-tcpbuf: bench/tcpbuf.py (TCP buffer maxima vs relayed throughput over
# delayed links) inside a guest booting Debian 12's own kernel (tests/ktls/guest.sh):
# the kernel the package runs on, with its defaults and its sch_netem.
#
#   tcpbuf.sh BUILD_DIR                 the two recorded runs (bench/README.md)
#   tcpbuf.sh BUILD_DIR -- ARGS...      one run of tcpbuf.py with ARGS
#
# Each run's JSON is cut out of the guest's console into
# bench/results/tcpbuf-<UTC timestamp>-<name>.json (never latest.json).
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift

one()
{
	name=$1
	shift
	log=$(mktemp)
	rc=0
	tests/ktls/guest.sh --timeout "${TCPBUF_TIMEOUT:-1800}" \
		python3 bench/tcpbuf.py "$build" --stdout "$@" | tee "$log" || rc=$?
	out=bench/results/tcpbuf-$(date -u +%Y%m%dT%H%M%SZ)-$name.json
	sed -n '/^TCPBUF-JSON-BEGIN$/,/^TCPBUF-JSON-END$/p' "$log" | sed '1d;$d' >"$out"
	rm -f "$log"
	if [ ! -s "$out" ]; then
		rm -f "$out"
		echo "tcpbuf: $name: no result (guest exit $rc)" >&2
		return 1
	fi
	echo "tcpbuf: wrote $out"
	return "$rc"
}

if [ $# -gt 0 ]; then
	one custom "$@"
	exit
fi
# 1. 1 Gbit/s at 0.2, 20 and 80 ms: the direct path meets the kernel's window caps
#    (the guest's CPU, emulated, caps the TLS tunnel far below 1 Gbit/s)
one 1gbit --rate 1gbit --rtts 0.2,20,80 --settings debian,raised --directions up \
	--seconds 6 --omit 2 --repeat 3
# 2. the same bandwidth-delay product as 1 Gbit/s x 80 ms (10 MB) at a rate the guest's
#    tunnel can carry: 100 Mbit/s x 800 ms
one 100mbit-800ms --rate 100mbit --rtts 800 --queue-ms 200 --settings debian,edge-raised,raised \
	--directions up --seconds 16 --omit 8 --repeat 3

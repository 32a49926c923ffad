#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make bench-tcpbuf: bench/tcpbuf.py (TCP buffer maxima vs relayed throughput over
# delayed links) inside a guest booting Debian 12's own kernel (tests/ktls/guest.sh):
# the kernel the package runs on, with its defaults and its sch_netem.
#
#   tcpbuf.sh BUILD_DIR                 the two recorded runs (presets below, bench/README.md)
#   tcpbuf.sh BUILD_DIR PRESET          one of them
#   tcpbuf.sh BUILD_DIR -- ARGS...      one run of tcpbuf.py with ARGS
#
# Each run's JSON is cut out of the guest's console into
# bench/results/tcpbuf-<UTC timestamp>-<name>.json (never latest.json).
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
[ $# -gt 0 ] && shift

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

# 1gbit: 1 Gbit/s at 0.2, 20 and 80 ms: the direct path meets the kernel's window caps
#   (the guest's CPU, emulated, caps the TLS tunnel far below 1 Gbit/s)
# 50mbit-1600ms: the bandwidth-delay product of 1 Gbit/s x 80 ms (10 MB) at a rate the
#   guest's tunnel always carries (its TLS under TCG: 55-125 Mbit/s): 50 Mbit/s x 1.6 s
preset()
{
	case $1 in
	1gbit)
		one 1gbit --rate 1gbit --rtts 0.2,20,80 --settings debian,raised --directions up \
			--seconds 6 --omit 2 --repeat 3
		;;
	50mbit-1600ms)
		one 50mbit-1600ms --rate 50mbit --rtts 1600 --queue-ms 400 \
			--settings debian,edge-raised,peers-raised,raised --directions up \
			--seconds 20 --omit 10 --repeat 3
		;;
	*)
		echo "tcpbuf: no preset $1 (1gbit, 50mbit-1600ms)" >&2
		return 2
		;;
	esac
}

case ${1:-} in
'') preset 1gbit && preset 50mbit-1600ms ;;
--)
	shift
	one custom "$@"
	;;
*) preset "$1" ;;
esac

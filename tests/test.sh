#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The whole test suite, as `make test` runs it after `make deps` (and CI runs
# `make test` through .ci/run): the normal build with its unit and pytest
# integration tests, the same again in the ASan+UBSan build (build-san/), then
# every libFuzzer target for FUZZ_SECONDS each (default 12 here; tests/fuzz/run.sh).
# The integration suite runs once whole, in the sanitizer build with [datapath]
# steering = bpf, and once in the normal build with steering = listeners for the
# suites that reach the TCP port range (NAVE_TEST_RANGE_ONLY=1): each steering
# mode and each build is covered without running the slowest stage twice.
# Each stage
# prints a banner; the first failing stage stops the run with a non-zero exit
# and the summary line says which. NAVE_TEST_QUICK=1 skips the sanitizer
# integration stage, the slowest one, for local iteration; CI never sets it.
# After the integration stage, the kTLS suite runs in a QEMU guest with Debian's
# kernel (make ktls-test, tests/ktls/), then the Debian package is installed
# and run under systemd in another (make appliance-test, tests/appliance/): a
# machine that cannot boot the guest skips them loudly with the reason; any
# other failure fails the run.
set -eu

cd "$(dirname "$0")/.."

# Sanitizer settings for the SAN=1 stages: any ASan report, leak or UBSan
# finding fails the binary that hit it.
SAN_ASAN="detect_leaks=1:abort_on_error=1"
SAN_UBSAN="print_stacktrace=1:halt_on_error=1"
# The sanitizer integration stage checks leaks too: every daemon and the
# client free what they hold when SIGTERM stops them. NAVE_TEST_INTEG_LEAKS=0
# turns leak checking off there (ASan/UBSan errors stay fatal), for bisecting.
if [ "${NAVE_TEST_INTEG_LEAKS:-1}" = 1 ]; then
	SAN_ASAN_INTEG="$SAN_ASAN"
else
	SAN_ASAN_INTEG="detect_leaks=0:abort_on_error=1"
fi

# The ktls mode of both ends in the kTLS guest stage (on|auto|off): on, so the
# stage proves kernel TLS at both ends (NAVE_TEST_KTLS overrides it for a run;
# off runs the same suite over userspace TLS and skips the kTLS counters).
KTLS_MODE=${NAVE_TEST_KTLS:-on}

TOTAL=11
passed=0
failed=0
skipped=0
skip_notes=""
start=$(date +%s)

summary()
{
	echo
	echo "#### stages took $(($(date +%s) - start))s"
	[ -z "$skip_notes" ] || printf '%s\n' "$skip_notes"
	echo "test.sh: $passed passed, $failed failed, $skipped skipped"
}

# stage NAME COMMAND...: runs one stage; the first failure ends the run.
stage()
{
	name=$1
	shift
	echo
	echo "#### [$((passed + failed + skipped + 1))/$TOTAL] $name: $*"
	t0=$(date +%s)
	if "$@"; then
		passed=$((passed + 1))
		echo "#### ok: $name ($(($(date +%s) - t0))s)"
	else
		rc=$?
		failed=$((failed + 1))
		echo "#### FAILED: $name (exit $rc)"
		summary
		exit 1
	fi
}

skip()
{
	skipped=$((skipped + 1))
	echo
	echo "#### [$((passed + failed + skipped))/$TOTAL] $1: skipped ($2)"
}

# guest_stage NAME TARGET [ARGS...]: make TARGET in a QEMU guest (the kTLS
# suite, the appliance suite). guest.sh exit 77 (no QEMU, no Debian kernel, the
# guest did not boot) is a skip with the reason, printed loudly.
guest_stage()
{
	name=$1
	shift
	why=$(mktemp /tmp/nave-guest-skip.XXXXXX)
	echo
	echo "#### [$((passed + failed + skipped + 1))/$TOTAL] $name: make $*"
	t0=$(date +%s)
	if NAVE_GUEST_SKIPPED="$why" make "$@"; then
		if [ -s "$why" ]; then
			skipped=$((skipped + 1))
			note="#### SKIPPED: $name: $(cat "$why")"
			skip_notes="$skip_notes$note
"
			echo "####"
			echo "$note"
			echo "####"
		else
			passed=$((passed + 1))
			echo "#### ok: $name ($(($(date +%s) - t0))s)"
		fi
		rm -f "$why"
	else
		rc=$?
		rm -f "$why"
		failed=$((failed + 1))
		echo "#### FAILED: $name (exit $rc)"
		summary
		exit 1
	fi
}

# ktls_stage [SAN=1]: make ktls-test in the guest (the sanitizer build with SAN=1)
ktls_stage()
{
	guest_stage "ktls (guest, KTLS=$KTLS_MODE${1:+, $1})" ktls-test KTLS="$KTLS_MODE" "$@"
}

stage "lint" make lint
stage "build" make -j2
stage "unit" make unit
# Steering = listeners here, on the suites that reach the port range; the whole
# suite with steering = bpf is the sanitizer stage's (bpf/README.md).
stage "integration (steering = listeners, the suites that reach the port range)" \
	env NAVE_TEST_RANGE_ONLY=1 make integration STEERING=listeners
ktls_stage
# The Debian package installed and run under systemd in a guest (tests/appliance/)
guest_stage "appliance (guest, systemd)" appliance-test
stage "build (SAN)" make -j2 SAN=1
stage "unit (SAN)" env ASAN_OPTIONS="$SAN_ASAN" UBSAN_OPTIONS="$SAN_UBSAN" make SAN=1 unit
if [ "${NAVE_TEST_QUICK:-0}" = 1 ]; then
	skip "integration (SAN)" "NAVE_TEST_QUICK=1"
else
	stage "integration (SAN, steering = bpf)" env ASAN_OPTIONS="$SAN_ASAN_INTEG" \
		UBSAN_OPTIONS="$SAN_UBSAN" make SAN=1 integration STEERING=bpf
fi
# the sanitizer build in the guest: the kTLS code and the edge's kTLS; the BPF
# suites' kernel check was the normal run's (GUEST_BPF=0, Makefile)
ktls_stage SAN=1 GUEST_BPF=0
# 12 s per target here (16 targets): a longer campaign is FUZZ_SECONDS=N make fuzz
stage "fuzz" env FUZZ_SECONDS="${FUZZ_SECONDS:-12}" make fuzz
summary

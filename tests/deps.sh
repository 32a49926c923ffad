#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages that building, testing and benchmarking nave
# need (the kTLS test: QEMU, Debian's kernel with tls.ko, static busybox and the
# tools that build the guest's initramfs; tests/ktls/README.md). make bench runs
# haproxy, nginx and stunnel with configs of their own in a temp dir, never their
# system services, and draws its plots with gnuplot. The ACME tests run pebble
# (Let's Encrypt's test CA, with pebble-challtestsrv as their DNS), never its
# system service either. navectl's HTTP client is libcurl's GnuTLS flavour,
# never libcurl4-openssl-dev: nave links BoringSSL, not OpenSSL 3. The admin API
# tests check TOTP codes against oathtool's. prometheus is there for its promtool
# (test_metrics.py checks /metrics with it); its own service is never used (on a
# host run by systemd, apt starts it on :9090).
# Idempotent: when everything is present it only runs dpkg-query.
set -eu
PKGS="build-essential clang llvm libclang-rt-14-dev clang-format pkg-config
liburing-dev libbpf-dev libelf-dev zlib1g-dev bpftool android-libboringssl-dev libjemalloc-dev
libiniparser-dev libsqlite3-dev sqlite3 libjansson-dev libmicrohttpd-dev libcurl4-gnutls-dev
libnl-3-dev libnl-route-3-dev libhttp-parser-dev libcmocka-dev libsystemd-dev libseccomp-dev python3 python3-pytest curl
python3-cryptography pebble prometheus iperf3 haproxy nginx openssh-server openssh-client stunnel4 gnuplot-nox
openssl iproute2 procps ca-certificates oathtool
qemu-system-x86 linux-image-amd64 busybox-static kmod cpio xz-utils"
# the dashboard's test (tests/integration/test_dashboard.py): Debian's headless Chromium
PKGS="$PKGS chromium chromium-driver python3-selenium"
missing=""
for p in $PKGS; do
	s=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$s" = "installed" ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null

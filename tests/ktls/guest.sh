#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Runs one command inside a QEMU guest that boots Debian's own kernel (from
# linux-image-amd64: it ships tls.ko, which the kernel of the build machine may
# lack), with the host's root shared read-only over virtio-9p, so that the
# project's ordinary binaries and Python run unchanged in the guest.
#
#   tests/ktls/guest.sh [--timeout S] [--mem MIB] [--systemd] [--env NAME=VALUE]... CMD [ARGS...]
#
# --mem: the guest's memory in MiB (default 2048; make bench's hold asks for more).
#
# --systemd: the guest boots the host's systemd as PID 1 instead (the appliance
# test, tests/appliance/): / is an overlay, the host root read-only under a
# tmpfs that takes every write, and CMD runs as the one unit of the boot
# target (nave-guest.target; no fstab, none of the host's enabled services),
# with the machine's own systemctl, journald and udev around it.
#
# The guest: static busybox in a tiny initramfs loads virtio_pci and 9p, mounts
# the host root read-only, puts tmpfs on /tmp, /run, /var/tmp and /dev/shm,
# switch_roots into it, brings lo up, runs `modprobe tls` (modules come from the
# host's /lib/modules/<version> over 9p), then runs CMD with the caller's
# current directory as its cwd (the same path in the guest) and powers off.
# Passed through: every NAVE_* and PYTEST_* variable of the caller, then each
# --env; TMPDIR and HOME are /tmp (the guest's / is read-only: build before
# booting, write only to /tmp). The console is streamed to stdout.
#
# Exit status: CMD's status; 124 when the timeout (default 900 s) killed the
# guest; 77 when this machine cannot run the guest (no QEMU, no Debian kernel
# in /boot, the guest did not boot or has no kTLS), with the reason on stderr
# (and in the file $NAVE_GUEST_SKIPPED names, if set).
# A missing /dev/kvm is not a reason: the guest runs under TCG.
#
# The uncompressed kernel is cached in build/ktls-guest/<version>/ (or
# $NAVE_GUEST_CACHE); everything else lives in a temporary directory.
set -eu

SKIP=77
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
timeout=900
mem=2048
envs=""
systemd=""

usage()
{
	echo "usage: $0 [--timeout S] [--mem MIB] [--systemd] [--env NAME=VALUE]... CMD [ARGS...]" >&2
	exit 2
}

skip()
{
	echo "guest: SKIP: $*" >&2
	if [ -n "${NAVE_GUEST_SKIPPED:-}" ]; then
		echo "$*" >"$NAVE_GUEST_SKIPPED"
	fi
	exit $SKIP
}

# q WORD: WORD quoted for sh
q()
{
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

while [ $# -gt 0 ]; do
	case $1 in
	--timeout)
		[ $# -ge 2 ] || usage
		timeout=$2
		shift 2
		;;
	--mem)
		[ $# -ge 2 ] || usage
		mem=$2
		shift 2
		;;
	--systemd)
		systemd=1
		shift
		;;
	--env)
		[ $# -ge 2 ] || usage
		case $2 in *=*) ;; *) usage ;; esac
		envs="$envs
$2"
		shift 2
		;;
	--)
		shift
		break
		;;
	-*) usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage
case $timeout in '' | *[!0-9]*) usage ;; esac
case $mem in '' | *[!0-9]*) usage ;; esac

qemu=$(command -v qemu-system-x86_64 || true)
[ -n "$qemu" ] || skip "no qemu-system-x86_64 (Debian package qemu-system-x86)"
# busybox-static's /bin/busybox (a dynamic one has a program interpreter)
busybox=/bin/busybox
[ -x $busybox ] || skip "no /bin/busybox (Debian package busybox-static)"
if command -v readelf >/dev/null && readelf -l $busybox | grep -q INTERP; then
	skip "/bin/busybox is not static (Debian package busybox-static)"
fi
command -v modinfo >/dev/null || skip "no modinfo (Debian package kmod)"
command -v cpio >/dev/null || skip "no cpio (Debian package cpio)"
command -v xz >/dev/null || skip "no xz (Debian package xz-utils)"

# The Debian kernel: the highest /boot/vmlinuz-*-amd64 whose modules are in
# /lib/modules and include tls.
ver=""
for f in $(ls /boot/vmlinuz-*-amd64 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -rV); do
	if [ -f "/lib/modules/$f/modules.dep" ] && modinfo -k "$f" -F filename tls >/dev/null 2>&1; then
		ver=$f
		break
	fi
done
[ -n "$ver" ] || skip "no Debian kernel with tls.ko in /boot and /lib/modules (Debian package linux-image-amd64)"

cache=${NAVE_GUEST_CACHE:-$repo/build/ktls-guest}/$ver
mkdir -p "$cache"
vmlinux=$cache/vmlinux
if [ ! -s "$vmlinux" ] || [ "/boot/vmlinuz-$ver" -nt "$vmlinux" ]; then
	# the xz payload of the bzImage is the ELF vmlinux, which QEMU boots
	# through its PVH note
	found=""
	for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "/boot/vmlinuz-$ver" | cut -d: -f1); do
		tail -c +$((off + 1)) "/boot/vmlinuz-$ver" | xz -dc >"$vmlinux.$$" 2>/dev/null || true
		if [ "$(head -c 4 "$vmlinux.$$" | od -An -c | tr -d ' ')" = '177ELF' ]; then
			mv "$vmlinux.$$" "$vmlinux"
			found=1
			break
		fi
	done
	rm -f "$vmlinux.$$"
	[ -n "$found" ] || skip "no xz-compressed vmlinux found in /boot/vmlinuz-$ver"
fi

tmp=$(mktemp -d /tmp/nave-guest.XXXXXX)
# QEMU runs under `timeout`, which makes a process group of its own: a Ctrl-C or a
# signal to ours does not reach it, so leaving stops it (timeout passes the TERM on)
cleanup()
{
	if [ -s "$tmp/timeout.pid" ]; then
		kill "$(cat "$tmp/timeout.pid")" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The initramfs: busybox, the init script, the modules the 9p root needs (in
# dependency order) and the command to run.
ir=$tmp/initramfs
mkdir -p "$ir/bin" "$ir/nave-guest/mod"
cp "$busybox" "$ir/bin/busybox"
cp "$here/guest-init.sh" "$ir/init"
chmod 755 "$ir/init"
order=""
add_mod()
{
	case " $order " in *" $1 "*) return 0 ;; esac
	for d in $(modinfo -k "$ver" -F depends "$1" | tr ',' ' '); do
		add_mod "$d"
	done
	fn=$(modinfo -k "$ver" -F filename "$1")
	case $fn in
	*.ko) cp "$fn" "$ir/nave-guest/mod/$1.ko" ;;
	*.ko.xz) xz -dc "$fn" >"$ir/nave-guest/mod/$1.ko" ;;
	*.ko.zst) zstd -qdc "$fn" >"$ir/nave-guest/mod/$1.ko" ;;
	*) skip "module $1 of $ver: unsupported file $fn" ;;
	esac
	order="$order $1"
}
mods="virtio_pci 9pnet_virtio 9p"
[ -z "$systemd" ] || mods="$mods overlay"
for m in $mods; do
	add_mod "$m" || skip "module $m of $ver not found"
done
echo "$order" >"$ir/nave-guest/modules"

{
	echo "cd $(q "$PWD") || exit 1"
	echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	echo "export TMPDIR=/tmp HOME=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1"
	env | { grep -E '^(NAVE|PYTEST)_[A-Za-z0-9_]*=' || true; } | while IFS= read -r kv; do
		echo "export $(q "$kv")"
	done
	printf '%s\n' "$envs" | while IFS= read -r kv; do
		if [ -n "$kv" ]; then echo "export $(q "$kv")"; fi
	done
	printf 'exec'
	for a in "$@"; do
		printf ' %s' "$(q "$a")"
	done
	echo
} >"$ir/nave-guest/cmd"

(cd "$ir" && find . | cpio -o -H newc --quiet) >"$tmp/initrd"

sdargs=""
if [ -n "$systemd" ]; then
	[ -x /lib/systemd/systemd ] || skip "no /lib/systemd/systemd (Debian package systemd)"
	# fstab=no: the host's disks are not the guest's; the target starts CMD alone
	sdargs=" nave.systemd=1 fstab=no"
fi
echo "guest: kernel $ver, timeout ${timeout}s, cwd $PWD${systemd:+, systemd}: $*"
t0=$(date +%s)
# `timeout` stops QEMU (and with it the guest) when the command hangs; the
# console goes to stdout as it comes, without the serial line's CRs and the
# firmware's terminal escapes.
{
	rc=0
	timeout -k 5 "$timeout" "$qemu" -accel tcg,thread=multi -cpu max -smp 2 -m "$mem" \
		-nic none -nographic -no-reboot \
		-kernel "$vmlinux" -initrd "$tmp/initrd" \
		-append "console=ttyS0 panic=-1 quiet loglevel=3 nave.guest=1$sdargs" \
		-virtfs local,path=/,mount_tag=hostroot,readonly=on,security_model=none,multidevs=remap \
		</dev/null 2>&1 &
	echo $! >"$tmp/timeout.pid"
	wait $! || rc=$?
	rm -f "$tmp/timeout.pid"
	echo "$rc" >"$tmp/qemu.rc"
} | sed -u 's/\r$//; s/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' | tee "$tmp/console.log"
qrc=$(cat "$tmp/qemu.rc")
took=$(($(date +%s) - t0))

marker()
{
	sed -n "s/.*NAVE-GUEST-$1=\\(.*\\)$/\\1/p" "$tmp/console.log" | tail -n 1
}
status=$(marker EXIT)
if [ -n "$status" ]; then
	echo "guest: command exited $status (${took}s boot to power-off)"
	exit "$status"
fi
why=$(marker SKIP)
[ -z "$why" ] || skip "$why"
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	echo "guest: FAILED: timed out after ${timeout}s, QEMU killed" >&2
	exit 124
fi
if ! grep -q 'NAVE-GUEST-BOOTED' "$tmp/console.log"; then
	last=$(grep -v '^[[:space:]]*$' "$tmp/console.log" | tail -n 1 | cut -c 1-200)
	skip "the guest did not boot (QEMU exit $qrc: ${last:-no output})"
fi
echo "guest: FAILED: the guest stopped without an exit status (QEMU exit $qrc, ${took}s)" >&2
exit 1

#!/bin/busybox sh
# SPDX-License-Identifier: Apache-2.0
# /init of the guest that tests/ktls/guest.sh boots (busybox sh, PID 1).
# Stage 1 (in the initramfs): load the modules of the 9p root, mount the host
# root read-only, tmpfs where things are written, switch_root. Stage 2 (in the
# host root): lo up, modprobe tls, run the command, print its exit status as
# NAVE-GUEST-EXIT=<status> on the console and power off. The host side reads
# the markers: NAVE-GUEST-BOOTED (stage 2 reached, kTLS available),
# NAVE-GUEST-SKIP=<reason> (this guest cannot run the test), NAVE-GUEST-EXIT.
G=/run/nave-guest

off()
{
	sync
	$BB poweroff -f
	sleep 30
}

skip()
{
	echo
	echo "NAVE-GUEST-SKIP=$*"
	off
}

if [ "${1:-}" != stage2 ] && [ "${1:-}" != stage2-systemd ]; then
	BB=/bin/busybox
	$BB mkdir -p /proc /sys /dev /newroot
	$BB mount -t proc proc /proc
	$BB mount -t sysfs sysfs /sys
	$BB mount -t devtmpfs devtmpfs /dev
	for m in $($BB cat /nave-guest/modules); do
		$BB insmod /nave-guest/mod/$m.ko || skip "insmod $m failed"
	done
	if $BB grep -qw nave.systemd=1 /proc/cmdline; then
		# systemd as PID 1 on an overlay: the host root read-only below, a
		# tmpfs above takes the writes (dpkg, /etc, /var); see guest.sh
		$BB mkdir -p /lower /rw
		$BB mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose \
			hostroot /lower || skip "mounting the host root over 9p failed"
		$BB mount -t tmpfs -o mode=755 tmpfs /rw || skip "tmpfs for the overlay failed"
		$BB mkdir -p /rw/upper /rw/work
		$BB mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work \
			overlay /newroot || skip "the overlay root failed"
		$BB mkdir -p /newroot/nave-guest /newroot/etc/systemd/system
		$BB cp /init /nave-guest/cmd /newroot/nave-guest/
		$BB cp $BB /newroot/nave-guest/busybox
		$BB cat >/newroot/etc/systemd/system/nave-guest.target <<-EOF
			[Unit]
			Description=nave guest: the test command alone
			Requires=sysinit.target nave-guest.service
			After=sysinit.target
			AllowIsolate=yes
		EOF
		$BB cat >/newroot/etc/systemd/system/nave-guest.service <<-EOF
			[Unit]
			Description=nave guest: the test command
			DefaultDependencies=no
			Requires=sysinit.target
			After=sysinit.target
			[Service]
			Type=oneshot
			ExecStart=/nave-guest/busybox sh /nave-guest/init stage2-systemd
			StandardInput=null
			StandardOutput=tty
			StandardError=tty
			TTYPath=/dev/ttyS0
		EOF
		# the target is the default too: none of the host's services start
		$BB ln -sf nave-guest.target /newroot/etc/systemd/system/default.target
		for d in proc sys dev; do
			$BB umount /$d 2>/dev/null || $BB umount -l /$d
		done
		exec $BB switch_root /newroot /lib/systemd/systemd --unit=nave-guest.target \
			--show-status=no --log-level=warning
		skip "switch_root to systemd failed"
	fi
	$BB mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose \
		hostroot /newroot || skip "mounting the host root over 9p failed"
	for d in tmp var/tmp; do
		$BB mount -t tmpfs -o mode=1777 tmpfs /newroot/$d || skip "tmpfs on /$d failed"
	done
	$BB mount -t tmpfs -o mode=755 tmpfs /newroot/run || skip "tmpfs on /run failed"
	$BB mkdir -p /newroot$G
	$BB cp /init /nave-guest/cmd /newroot$G/
	$BB cp $BB /newroot$G/busybox
	for d in proc sys dev; do
		$BB mount --move /$d /newroot/$d || skip "moving /$d failed"
	done
	exec $BB switch_root /newroot $G/busybox sh $G/init stage2
	skip "switch_root failed"
fi

# stage 2 under systemd: a unit of the guest's systemd runs the command
if [ "${1:-}" = stage2-systemd ]; then
	BB=/nave-guest/busybox
	echo
	echo "NAVE-GUEST-BOOTED $(uname -r), $(nproc) CPUs, systemd $(systemctl --version | $BB head -n 1)"
	$BB sh /nave-guest/cmd
	rc=$?
	echo
	echo "NAVE-GUEST-EXIT=$rc"
	off
fi

# stage 2: / is the host's root (read-only)
BB=$G/busybox
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
$BB mkdir -p /dev/shm /dev/pts
$BB mount -t tmpfs -o mode=1777 tmpfs /dev/shm
$BB mount -t devpts devpts /dev/pts
$BB ip link set lo up || skip "lo up failed"
modprobe tls || skip "modprobe tls failed in the guest ($(uname -r))"
# what udev loads at boot on a real machine from the CPU's modalias: without
# it the kernel's AES-GCM (kTLS) falls back to the generic C AES
grep -qw aes /proc/cpuinfo && modprobe aesni_intel 2>/dev/null
grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp || skip "no tls in tcp_available_ulp after modprobe tls"
echo
echo "NAVE-GUEST-BOOTED $(uname -r), $(nproc) CPUs, $(cat /proc/sys/net/ipv4/tcp_available_ulp)$(grep -qw '^aesni_intel' /proc/modules && echo ', aesni_intel')"
$BB sh $G/cmd
rc=$?
echo
echo "NAVE-GUEST-EXIT=$rc"
off

#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Fails the build when a binary links OpenSSL 3 instead of (or beside) BoringSSL:
# - OpenSSL's libssl.so.3 or libcrypto.so.3 as a direct dependency;
# - a binary that loads BoringSSL (libssl.so.0 or libcrypto.so.0 from Debian's
#   android-libboringssl) with OpenSSL's libcrypto.so.3 or libssl.so.3 anywhere in
#   its ldd closure (libcurl's libssh2 brings it, for one): both export the same
#   symbols, so one library's calls end up in the other's code.
# Usage: tests/check-no-openssl.sh BINARY...
set -eu
for b in "$@"; do
	if readelf -d "$b" | grep -E 'NEEDED.*lib(ssl|crypto)\.so\.3' >/dev/null; then
		echo "error: $b links OpenSSL 3; nave must use BoringSSL only" >&2
		exit 1
	fi
	libs=$(ldd "$b") || { echo "error: $b: ldd cannot list its libraries" >&2; exit 1; }
	printf '%s\n' "$libs" | grep -E '/android/lib(ssl|crypto)\.so\.0 ' >/dev/null || continue
	openssl=$(printf '%s\n' "$libs" | sed -n 's/^\s*lib\(ssl\|crypto\)\.so\.3 => \(\S*\) .*/\2/p')
	[ -n "$openssl" ] || continue
	# name the libraries that bring it
	via=
	for l in $(printf '%s\n' "$libs" | sed -n 's/^.* => \(\/\S*\) .*/\1/p'); do
		if readelf -d "$l" 2>/dev/null | grep -E 'NEEDED.*lib(ssl|crypto)\.so\.3' >/dev/null; then
			via="$via ${l##*/}"
		fi
	done
	echo "error: $b loads BoringSSL and OpenSSL 3 ($(echo $openssl)) in one process, through${via:- ?};" \
		"keep BoringSSL out of a binary that links these (navectl: nave-pki)" >&2
	exit 1
done

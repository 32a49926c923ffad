#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Fails the build when a binary links OpenSSL 3 instead of (or beside) BoringSSL.
set -eu
for b in "$@"; do
	if readelf -d "$b" | grep -E 'NEEDED.*lib(ssl|crypto)\.so\.3' >/dev/null; then
		echo "error: $b links OpenSSL 3; nave must use BoringSSL only" >&2
		exit 1
	fi
done

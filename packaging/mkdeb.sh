#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds BUILD_DIR/nave_VERSION_ARCH.deb with dpkg-deb from a tree staged by
# make install (DESTDIR, PREFIX=/usr): binaries (/usr/bin, /usr/sbin and
# nave-pki in /usr/lib/nave) stripped, man pages gzipped,
# Depends computed by dpkg-shlibdeps from the binaries, maintainer scripts
# from packaging/debian/. Usage: packaging/mkdeb.sh BUILD_DIR
set -eu
B=${1:?usage: mkdeb.sh BUILD_DIR}
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VERSION=$(sed -n 's/^#define NAVE_VERSION *"\(.*\)"/\1/p' common/util.h)
ARCH=$(dpkg --print-architecture)
[ -n "$VERSION" ] || { echo "mkdeb: no NAVE_VERSION in common/util.h" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nave-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/stage

make --no-print-directory -s install B="$B" DESTDIR="$STAGE" PREFIX=/usr >/dev/null
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	"$STAGE"/usr/bin/* "$STAGE"/usr/sbin/* "$STAGE"/usr/lib/nave/*
find "$STAGE/usr/share/man" -type f -exec gzip -9n {} +
install -d "$STAGE/usr/share/doc/nave"
{
	echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
	echo "Upstream-Name: nave"
	echo
	echo "Files: *"
	echo "License: Apache-2.0"
	echo " On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0."
} > "$STAGE/usr/share/doc/nave/copyright"
install -m 0644 packaging/README.md "$STAGE/usr/share/doc/nave/README.packaging.md"

# Depends: the shared libraries the binaries link (BoringSSL's via its rpath)
mkdir -p "$WORK/src/debian"
printf 'Source: nave\n\nPackage: nave\nArchitecture: any\n' > "$WORK/src/debian/control"
DEPS=$(cd "$WORK/src" && dpkg-shlibdeps -O -l/usr/lib/"$(dpkg-architecture -qDEB_HOST_MULTIARCH)"/android \
	"$STAGE"/usr/bin/* "$STAGE"/usr/sbin/* "$STAGE"/usr/lib/nave/* 2>"$WORK/shlibdeps.err" | sed -n 's/^shlibs:Depends=//p') || {
	cat "$WORK/shlibdeps.err" >&2
	exit 1
}
[ -n "$DEPS" ] || { echo "mkdeb: dpkg-shlibdeps found no dependencies" >&2; cat "$WORK/shlibdeps.err" >&2; exit 1; }

install -d -m 0755 "$STAGE/DEBIAN"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@DEPENDS@|$DEPS|" \
	-e "s|@SIZE@|$SIZE|" packaging/debian/control.in > "$STAGE/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$STAGE/DEBIAN/conffiles"
for s in postinst prerm postrm; do
	install -m 0755 "packaging/debian/$s" "$STAGE/DEBIAN/$s"
done
OUT="$ROOT/$B/nave_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$OUT" >/dev/null
echo "$OUT"

#!/bin/sh
# Place mpm_hybrid into an unpacked httpd 2.4 source tree as
# server/mpm/hybrid/, so that httpd's own build can pick it:
#   ./buildconf ... && ./configure --with-mpm=hybrid && make
# or --enable-mpms-shared='hybrid event'.  Behind make httpd-tree.
#
# Usage: scripts/httpd-tree.sh HTTPD_SRC
#
# What lands in server/mpm/hybrid/:
#   config.m4, Makefile.in   from build/httpd-mpm/ (platform check,
#                            --with-hybrid-accept and the other choices)
#   config3.m4               from build/httpd-mpm/config3.m4.in, with the
#                            object list made from `make -s print-mpm-units`
#   mpm_src/*.c, *.h         copies of the MPM's sources (the repository
#                            keeps the only original; run this again after
#                            changing them)
#   PLACED_BY_MPM_HYBRID     marker: which repository and commit
#
# Nothing is written before the tree has been checked.  The directory is
# assembled next to its place and renamed into it, so it is either all
# there or not at all; a server/mpm/hybrid from an earlier run (it has the
# marker) is replaced, anything else there is refused.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
TEMPLATES=$REPO/build/httpd-mpm
MARKER=PLACED_BY_MPM_HYBRID
MAKE=${MAKE:-make}

die() {
    echo "httpd-tree: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: $0 HTTPD_SRC (an unpacked httpd 2.4 source tree)"
src=$1
[ -n "$src" ] || die "HTTPD_SRC is not set: make httpd-tree HTTPD_SRC=DIR, DIR an unpacked httpd 2.4 source tree (make httpd-source unpacks Debian's into build/httpd-src)"
[ -e "$src" ] || die "HTTPD_SRC=$src does not exist"
[ -d "$src" ] || die "HTTPD_SRC=$src is not a directory"
src=$(cd "$src" && pwd)

# --- is it an httpd 2.4 source tree? (read only) -------------------------
release=$src/include/ap_release.h
[ -f "$release" ] || die "$src is not an httpd source tree: no include/ap_release.h"
version_part() {
    sed -n "s/^#define AP_SERVER_$1VERSION_NUMBER[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$release"
}
major=$(version_part MAJOR)
minor=$(version_part MINOR)
patch=$(sed -n 's/^#define AP_SERVER_PATCHLEVEL_NUMBER[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$release")
if [ -z "$major" ] || [ -z "$minor" ]; then
    die "$src is not an httpd source tree: include/ap_release.h has no AP_SERVER_MAJORVERSION_NUMBER / MINORVERSION_NUMBER"
fi
[ "$major.$minor" = 2.4 ] || \
    die "$src is httpd $major.$minor.${patch:-?}; mpm_hybrid needs an httpd 2.4 source tree"
for f in server/mpm/config2.m4 server/mpm/Makefile.in acinclude.m4 \
         build/config-stubs build/special.mk buildconf; do
    [ -e "$src/$f" ] || die "$src is not an httpd 2.4 source tree: $f is missing"
done
grep -q 'APACHE_MPM_MODULE' "$src/acinclude.m4" || \
    die "$src/acinclude.m4 has no APACHE_MPM_MODULE: not an httpd 2.4 source tree"
[ -w "$src/server/mpm" ] || die "$src/server/mpm is not writable"

dest=$src/server/mpm/hybrid
if [ -e "$dest" ] || [ -L "$dest" ]; then
    [ -f "$dest/$MARKER" ] || \
        die "$dest exists and was not placed by mpm_hybrid (no $MARKER): refusing to replace it; move it away first"
fi

# --- what to copy (read only) ---------------------------------------------
for f in config.m4 config3.m4.in Makefile.in; do
    [ -f "$TEMPLATES/$f" ] || die "template $TEMPLATES/$f is missing"
done
units=$("$MAKE" -s --no-print-directory -C "$REPO" print-mpm-units) || \
    die "make print-mpm-units failed"
[ -n "$units" ] || die "make print-mpm-units listed no translation unit"
objects=
for u in $units; do
    case "$u" in
        mpm_src/*.c) ;;
        *) die "make print-mpm-units: '$u' is not a mpm_src/*.c file" ;;
    esac
    [ -f "$REPO/$u" ] || die "make print-mpm-units: $u does not exist"
    objects="$objects $(basename "$u" .c).lo"
done
objects=${objects# }

# --- assemble next to the target, then rename into place -------------------
tmp=
old=
cleanup() {
    [ -z "$tmp" ] || rm -rf "$tmp"
    [ -z "$old" ] || rm -rf "$old"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# buildconf's search for config*.m4 would find the files in it too, so it
# lives only while this script runs (removed on every way out).
tmp=$(mktemp -d "$src/server/mpm/.hybrid.new.XXXXXX")
cp "$REPO"/mpm_src/*.c "$REPO"/mpm_src/*.h "$tmp/"
cp "$TEMPLATES/config.m4" "$TEMPLATES/Makefile.in" "$tmp/"
sed "s|@MPM_OBJECTS@|$objects|" "$TEMPLATES/config3.m4.in" > "$tmp/config3.m4"
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=
if [ "$commit" != unknown ] && \
   [ -n "$(git -C "$REPO" status --porcelain -- mpm_src build/httpd-mpm 2>/dev/null)" ]; then
    dirty=" (with uncommitted changes in mpm_src/ or build/httpd-mpm/)"
fi
cat > "$tmp/$MARKER" <<EOF
This directory was placed by mpm_hybrid's scripts/httpd-tree.sh
(make httpd-tree) from $REPO at commit $commit$dirty.
Its sources are copies: edit them in the mpm_hybrid repository and run
make httpd-tree again, which replaces this directory.
Objects: $objects
EOF
chmod 755 "$tmp"

if [ -e "$dest" ]; then
    old=$(mktemp -d "$src/server/mpm/.hybrid.old.XXXXXX")
    mv "$dest" "$old/hybrid"
    mv "$tmp" "$dest"
    tmp=
    echo "httpd-tree: replaced the server/mpm/hybrid of an earlier run"
else
    mv "$tmp" "$dest"
    tmp=
fi

echo "httpd-tree: placed mpm_hybrid (commit $commit$dirty) into $dest"
echo "httpd-tree: objects: $objects"
echo "httpd-tree: httpd $major.$minor.$patch; now, in $src:"
echo "  ./buildconf --with-apr=/usr/bin/apr-1-config --with-apr-util=/usr/bin/apu-1-config"
echo "  ./configure --with-mpm=hybrid [--with-hybrid-accept=exclusive] --with-apr=/usr/bin/apr-1-config --with-apr-util=/usr/bin/apu-1-config --with-pcre=/usr/bin/pcre2-config ..."
echo "  make"

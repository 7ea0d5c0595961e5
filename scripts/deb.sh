#!/bin/sh
# make deb: build the binary package libapache2-mpm-hybrid with Debian's
# own tools (dpkg-buildpackage, debhelper, dh_apache2) from a copy of this
# tree in a scratch directory, so the work tree stays as it is; then check
# it with lintian.  The packaging is packaging/debian/, copied to debian/
# in the copy.  Output: build/deb/ (the .deb files, .changes, .buildinfo,
# build.log, lintian.txt).
#
# Environment:
#   DEB_OUT   output directory (default: build/deb)
#   LINTIAN   "no" to skip the lintian check
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${DEB_OUT:-$REPO/build/deb}
LINTIAN=${LINTIAN:-yes}

missing=''
for tool in dpkg-buildpackage dh dh_apache2 apxs; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ "$LINTIAN" != no ] && ! command -v lintian >/dev/null 2>&1; then
    missing="$missing lintian"
fi
if [ -n "$missing" ]; then
    echo "deb: missing:$missing (sudo make deps installs them)" >&2
    exit 1
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/mpm-hybrid-deb.XXXXXX")
cleanup() { rm -rf "$scratch"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
src="$scratch/mpm-hybrid"
mkdir "$src"

# The tree's files: tracked and new ones, not the ignored build outputs.
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -co --exclude-standard |
        while IFS= read -r f; do
            if [ -e "$f" ] || [ -L "$f" ]; then
                printf '%s\n' "$f"
            fi
        done) > "$scratch/files"
else
    (cd "$REPO" && find . -path ./build -prune -o -path ./.git -prune -o \
        \( -type f -o -type l \) -print) > "$scratch/files"
    (cd "$REPO" && find build/debian build/demo -type f -print) \
        >> "$scratch/files"
fi
tar -C "$REPO" -T "$scratch/files" -cf - | tar -C "$src" -xf -
rm -rf "$src/debian"
cp -R "$REPO/packaging/debian" "$src/debian"
# build outputs the copy may have brought along
rm -rf "$src/build/obj" "$src/build/unit" "$src/build/run" "$src/build/deb"
rm -f "$src"/build/*.so

echo "deb: building in $src"
if ! (cd "$src" && dpkg-buildpackage -b -us -uc) > "$scratch/build.log" 2>&1
then
    tail -40 "$scratch/build.log" >&2
    echo "deb: dpkg-buildpackage failed (log above)" >&2
    exit 1
fi

mkdir -p "$OUT"
rm -f "$OUT"/*.deb "$OUT"/*.changes "$OUT"/*.buildinfo
for f in "$scratch"/*.deb "$scratch"/*.changes "$scratch"/*.buildinfo; do
    [ -e "$f" ] && mv -f "$f" "$OUT/"
done
mv -f "$scratch/build.log" "$OUT/build.log"

deb=$(ls "$OUT"/libapache2-mpm-hybrid_*.deb)
echo "deb: $deb"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\):/  \1:/p'

if [ "$LINTIAN" != no ]; then
    changes=$(ls "$OUT"/*.changes)
    # Tags that remain are explained in packaging/debian/*.lintian-overrides
    # and README.md; errors and warnings fail the build.
    rc=0
    # lintian advises against running as root: drop to nobody if we can
    as=''
    if [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null 2>&1 &&
       runuser -u nobody -- test -r "$changes"; then
        as='runuser -u nobody --'
    fi
    # shellcheck disable=SC2086  # $as is a word list on purpose
    HOME=${TMPDIR:-/tmp} $as lintian --info --display-level '>=pedantic' \
        --fail-on error,warning "$changes" > "$OUT/lintian.txt" 2>&1 || rc=$?
    if [ -s "$OUT/lintian.txt" ]; then
        sed 's/^/  lintian: /' "$OUT/lintian.txt"
    fi
    if [ "$rc" -ne 0 ]; then
        echo "deb: lintian found errors or warnings ($OUT/lintian.txt)" >&2
        exit 1
    fi
    echo "deb: lintian: no errors, no warnings"
fi

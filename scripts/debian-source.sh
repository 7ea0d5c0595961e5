#!/bin/sh
# Fetch Debian's apache2 source package and unpack it (Debian's patches
# applied), for building httpd with mpm_hybrid inside (make httpd-tree).
# Behind make httpd-source.
#
# Usage: scripts/debian-source.sh [--cache DIR] [--refresh] DEST
#   DEST       where to unpack the tree; must not exist yet
#   --cache    download cache (default build/debian-src); a second run
#              unpacks from it without the network
#   --refresh  look for a newer version even if the cache has one
# Prints the unpacked tree's path as its last line on stdout; everything
# else goes to stderr.
#
# The machine's apt configuration is only read, never written.  A fresh
# Debian has no deb-src entries, so this derives them from its deb entries
# (/etc/apt/sources.list, sources.list.d/*.list, and *.sources in deb822
# form) into a private apt configuration under the cache, with its own
# lists and archives, and runs apt-get update / apt-cache showsrc /
# apt-get source against that.  The versions it lists are tried newest
# first until one downloads (an archive may list a version it does not
# serve, answering 404).  Needs apt and dpkg-dev (dpkg-source).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
PACKAGE=apache2
cache=$REPO/build/debian-src
refresh=no
dest=

say() { echo "debian-source: $*" >&2; }
die() { say "$*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --cache) [ $# -ge 2 ] || die "--cache needs a directory"; cache=$2; shift 2 ;;
        --refresh) refresh=yes; shift ;;
        -*) die "unknown option $1 (usage: $0 [--cache DIR] [--refresh] DEST)" ;;
        *) [ -z "$dest" ] || die "one DEST only"; dest=$1; shift ;;
    esac
done
[ -n "$dest" ] || die "usage: $0 [--cache DIR] [--refresh] DEST"
[ ! -e "$dest" ] || die "$dest exists already; name a new directory"
command -v dpkg-source >/dev/null 2>&1 || \
    die "dpkg-source is missing (Debian package dpkg-dev; make deps installs it)"
command -v apt-get >/dev/null 2>&1 || die "apt-get is missing: not a Debian machine?"

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
APTDIR=$cache/apt
DL=$cache/dl
mkdir -p "$APTDIR/sources.list.d" "$APTDIR/lists/partial" \
         "$APTDIR/archives/partial" "$DL"

# --- deb-src entries derived from the machine's deb entries ---------------
derive_one_line() {
    # "deb [opts] URI suite comp..." -> "deb-src [opts] URI suite comp..."
    sed -n 's/^[[:space:]]*deb\([[:space:]]\)/deb-src\1/p' "$1"
}
derive_deb822() {
    # Stanzas are separated by blank lines; a stanza whose Types include
    # "deb" and that is not "Enabled: no" becomes a deb-src stanza.
    awk '
        function flush() {
            if (n && types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no") {
                if (out++) print ""
                for (i = 1; i <= n; i++) print lines[i]
            }
            n = 0; types = ""; enabled = ""
        }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        {
            line = $0
            if (tolower($1) == "types:") {
                types = substr(line, index(line, ":") + 1)
                line = "Types: deb-src"
            } else if (tolower($1) == "enabled:") {
                enabled = tolower($2)
            }
            lines[++n] = line
        }
        END { flush() }
    ' "$1"
}

derived=$APTDIR/sources.list.d/derived.sources.new
: > "$APTDIR/sources.list"
: > "$APTDIR/sources.list.d/derived.list.new"
: > "$derived"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    derive_one_line "$f" >> "$APTDIR/sources.list.d/derived.list.new"
done
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    stanzas=$(derive_deb822 "$f")
    if [ -n "$stanzas" ]; then
        [ ! -s "$derived" ] || echo >> "$derived"
        printf '%s\n' "$stanzas" >> "$derived"
    fi
done
mv "$APTDIR/sources.list.d/derived.list.new" "$APTDIR/sources.list.d/derived.list"
mv "$derived" "$APTDIR/sources.list.d/derived.sources"
[ -s "$APTDIR/sources.list.d/derived.list" ] || \
    rm -f "$APTDIR/sources.list.d/derived.list"
[ -s "$APTDIR/sources.list.d/derived.sources" ] || \
    rm -f "$APTDIR/sources.list.d/derived.sources"

APT_OPTS="-o Dir::Etc::SourceList=$APTDIR/sources.list
 -o Dir::Etc::SourceParts=$APTDIR/sources.list.d
 -o Dir::State::Lists=$APTDIR/lists
 -o Dir::Cache=$APTDIR
 -o Dir::Cache::Archives=$APTDIR/archives
 -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
 -o APT::Sandbox::User=root"

# --- choose a version: the cache's, or the newest that downloads -----------
cached_dsc() {
    # newest complete download in the cache (a .dsc whose files are there)
    best=
    for dsc in "$DL/${PACKAGE}"_*.dsc; do
        [ -f "$dsc" ] || continue
        [ -f "$dsc.complete" ] || continue
        v=$(sed -n 's/^Version: //p' "$dsc")
        if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best_v"; then
            best=$dsc
            best_v=$v
        fi
    done
    printf '%s' "$best"
}

dsc=
if [ "$refresh" = no ]; then
    dsc=$(cached_dsc)
    [ -z "$dsc" ] || say "using the cached download $(basename "$dsc") (--refresh looks for a newer one)"
fi

if [ -z "$dsc" ]; then
    [ -e "$APTDIR/sources.list.d/derived.list" ] || \
        [ -e "$APTDIR/sources.list.d/derived.sources" ] || \
        die "no deb entries in /etc/apt/sources.list or /etc/apt/sources.list.d/ to derive deb-src entries from"
    say "derived these deb-src entries from the machine's deb entries (private apt config in $APTDIR; /etc/apt is not changed):"
    for f in "$APTDIR"/sources.list.d/derived.*; do
        [ -e "$f" ] && sed 's/^/    /' "$f" >&2
    done
    say "apt-get update (source indexes only, into $APTDIR/lists)"
    # An entry whose deb-src index does not exist (a third-party archive)
    # fails here; that is reported and the others are used.
    # shellcheck disable=SC2086  # APT_OPTS is a word list
    if ! apt-get $APT_OPTS -q update > "$cache/update.log" 2>&1; then
        say "apt-get update reported errors (see $cache/update.log):"
        grep -E '^(E|W|Err):' "$cache/update.log" | sed 's/^/    /' >&2 || true
    fi
    # shellcheck disable=SC2086
    versions=$(apt-cache $APT_OPTS showsrc --only-source "$PACKAGE" 2>/dev/null |
               sed -n 's/^Version: //p' | sort -u)
    [ -n "$versions" ] || die "no source index lists $PACKAGE (see $cache/update.log)"
    # newest first, by Debian's version order
    sorted=
    for v in $versions; do
        rest=$sorted
        sorted=
        placed=no
        for w in $rest; do
            if [ $placed = no ] && dpkg --compare-versions "$v" gt "$w"; then
                sorted="$sorted $v"
                placed=yes
            fi
            sorted="$sorted $w"
        done
        [ $placed = yes ] || sorted="$sorted $v"
    done
    say "versions listed:$sorted"
    for v in $sorted; do
        try=$DL/try.$$
        rm -rf "$try"
        mkdir -p "$try"
        say "apt-get source --download-only $PACKAGE=$v"
        # shellcheck disable=SC2086
        if (cd "$try" && apt-get $APT_OPTS -q source --download-only \
                "$PACKAGE=$v") > "$try.log" 2>&1; then
            mv "$try"/* "$DL/"
            rm -rf "$try" "$try.log"
            # the epoch-free version names the files
            dsc=$DL/${PACKAGE}_${v#*:}.dsc
            [ -f "$dsc" ] || die "downloaded $PACKAGE $v but found no $dsc"
            touch "$dsc.complete"
            say "fetched $PACKAGE $v"
            break
        fi
        if grep -q '404' "$try.log"; then
            say "$PACKAGE $v is listed but not served (404):"
        else
            say "$PACKAGE $v did not download:"
        fi
        grep -E '^(E|Err):|404' "$try.log" | sed 's/^/    /' >&2 || true
        rm -rf "$try" "$try.log"
    done
    [ -n "$dsc" ] || die "no listed version of $PACKAGE could be downloaded"
fi

# --- unpack (Debian's patches applied) -------------------------------------
version=$(sed -n 's/^Version: //p' "$dsc")
mkdir -p "$(dirname "$dest")"
dest=$(cd "$(dirname "$dest")" && pwd)/$(basename "$dest")
say "unpacking $PACKAGE $version into $dest"
# --no-copy: no copy of the .orig tarball beside DEST
if ! dpkg-source --no-copy -x "$dsc" "$dest" > "$cache/unpack.log" 2>&1; then
    rm -rf "$dest"
    cat "$cache/unpack.log" >&2
    die "dpkg-source -x $(basename "$dsc") failed"
fi
printf '%s\n' "$version" > "$dest/.debian-source-version"
say "done: Debian $PACKAGE $version in $dest"
printf '%s\n' "$dest"

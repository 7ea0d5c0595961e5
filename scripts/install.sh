#!/bin/sh
# Install (or remove) the built modules and, on a Debian-style layout, the
# a2enmod files from build/debian/.  Called by make install / uninstall.
#
# Usage: scripts/install.sh install|uninstall
# Environment:
#   DESTDIR  staging root prepended to every path (default: none)
#   APXS     apxs to ask for LIBEXECDIR (default: apxs)
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
APXS=${APXS:-apxs}
DESTDIR=${DESTDIR:-}
BUILD="$REPO/build"
DEBIAN="$BUILD/debian"

LIBEXECDIR=$("$APXS" -q LIBEXECDIR)
[ -n "$LIBEXECDIR" ] || { echo "install: $APXS -q LIBEXECDIR gave nothing" >&2; exit 1; }
MODDIR="$DESTDIR$LIBEXECDIR"

# Mirror Debian: the a2enmod files go to mods-available when the staging
# root or this host has that directory.
CONFDIR=''
if [ -d "$DESTDIR/etc/apache2/mods-available" ] ||
   [ -d /etc/apache2/mods-available ]; then
    CONFDIR="$DESTDIR/etc/apache2/mods-available"
fi

# Modules to handle: name of the .so stem and of the a2enmod files.
# mod_child_status is optional (only when mod_src/ has sources).
modules() {
    echo "mpm_hybrid"
    if [ "$1" = uninstall ] || [ -f "$BUILD/mod_child_status.so" ]; then
        echo "child_status"
    fi
}

# Copy build/debian/$1 to $CONFDIR, with the module path pointed at
# LIBEXECDIR (the runtime path, without DESTDIR).
install_conf_file() {
    tmp="$CONFDIR/.$1.tmp.$$"
    sed "s|/usr/lib/apache2/modules/|$LIBEXECDIR/|g" "$DEBIAN/$1" > "$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$CONFDIR/$1"
    echo "installed $CONFDIR/$1"
}

do_install() {
    [ -f "$BUILD/mod_mpm_hybrid.so" ] || {
        echo "install: build/mod_mpm_hybrid.so is missing; run make first" >&2
        exit 1
    }
    install -d -m 755 "$MODDIR"
    for m in $(modules install); do
        install -m 644 "$BUILD/mod_$m.so" "$MODDIR/mod_$m.so"
        echo "installed $MODDIR/mod_$m.so"
    done
    if [ -z "$CONFDIR" ]; then
        echo "install: no /etc/apache2/mods-available here; LoadModule the" \
             "modules from $LIBEXECDIR yourself"
        return 0
    fi
    install -d -m 755 "$CONFDIR"
    for m in $(modules install); do
        install_conf_file "$m.load"
        install_conf_file "$m.conf"
    done
}

do_uninstall() {
    enabled="$DESTDIR/etc/apache2/mods-enabled"
    for m in $(modules uninstall); do
        if [ -e "$enabled/$m.load" ] || [ -L "$enabled/$m.load" ]; then
            echo "uninstall: $m is enabled; run a2dismod $m first" >&2
            exit 1
        fi
    done
    for m in $(modules uninstall); do
        for f in "$MODDIR/mod_$m.so" ${CONFDIR:+"$CONFDIR/$m.load"} \
                 ${CONFDIR:+"$CONFDIR/$m.conf"}; do
            if [ -e "$f" ]; then
                rm -f "$f"
                echo "removed $f"
            fi
        done
    done
}

case "${1:-}" in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) echo "usage: $0 install|uninstall" >&2; exit 2 ;;
esac

#!/bin/sh
# Demo server for operators: the stock Debian apache2 running mpm_hybrid
# (or a stock MPM to compare) on 127.0.0.1, daemonized, with everything it
# writes under one run directory.  Called by make run / make stop.
#
# Usage: scripts/run.sh start|stop|status
# Environment:
#   MPM     hybrid (default), event, worker or prefork
#   PORT    TCP port on 127.0.0.1 (default 8080)
#   RUNDIR  config, docroot, logs and pid file (default build/run)
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
MPM=${MPM:-hybrid}
PORT=${PORT:-8080}
RUNDIR=${RUNDIR:-build/run}
APACHE2=${APACHE2:-/usr/sbin/apache2}
APXS=${APXS:-apxs}
START_TIMEOUT=${START_TIMEOUT:-20}
STOP_TIMEOUT=${STOP_TIMEOUT:-20}

case "$RUNDIR" in
    /*) ;;
    *) RUNDIR="$REPO/$RUNDIR" ;;
esac
CONF="$RUNDIR/httpd.conf"
PIDFILE="$RUNDIR/httpd.pid"
ERRLOG="$RUNDIR/error.log"
DOCROOT="$RUNDIR/htdocs"
TEMPLATES="$REPO/build/demo"

die() {
    echo "run: $*" >&2
    exit 1
}

# True if $1 is a live apache2 process (not a zombie).
is_apache() {
    [ -r "/proc/$1/stat" ] || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)
    [ "$state" != Z ] || return 1
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = apache2 ]
}

# Pid of the running demo parent, from the pid file; fails if none.
demo_pid() {
    [ -s "$PIDFILE" ] || return 1
    pid=$(tr -dc '0-9' < "$PIDFILE")
    [ -n "$pid" ] && is_apache "$pid" || return 1
    echo "$pid"
}

# Pids of apache2 processes started with our config file.  Only used to
# notice a server that died, or that runs but has not written its pid file.
conf_pids() {
    for dir in /proc/[0-9]*; do
        # cat, not a redirection: a process that vanished must stay quiet.
        # shellcheck disable=SC2002
        cmd=$(cat "$dir/cmdline" 2>/dev/null | tr '\0' ' ')
        case "$cmd" in
            *"-f $CONF "*) is_apache "${dir#/proc/}" && echo "${dir#/proc/}" ;;
        esac
    done
    return 0
}

show_log() {
    if [ -s "$ERRLOG" ]; then
        echo "--- last lines of $ERRLOG:" >&2
        tail -n 20 "$ERRLOG" >&2
    fi
}

# Stop the parent with SIGTERM (apache stops its children); if it or a
# child outlives STOP_TIMEOUT, SIGKILL exactly those pids.
stop_pid() {
    parent=$1
    kids=$(pgrep -P "$parent" 2>/dev/null || true)
    kill -TERM "$parent" 2>/dev/null || true
    waited=0
    while is_apache "$parent" && [ "$waited" -lt $((STOP_TIMEOUT * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    for p in $parent $kids; do
        if is_apache "$p"; then
            echo "run: pid $p did not exit, killing it" >&2
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
}

do_stop() {
    if pid=$(demo_pid); then
        stop_pid "$pid"
        echo "demo server (pid $pid) stopped"
    else
        strays=$(conf_pids)
        if [ -n "$strays" ]; then
            for p in $strays; do
                stop_pid "$p"
            done
            echo "demo server stopped (no pid file; pids" \
                 "$(printf '%s' "$strays" | tr '\n' ' '))"
        else
            echo "demo server is not running"
        fi
    fi
    rm -f "$PIDFILE"
}

do_status() {
    if pid=$(demo_pid); then
        echo "demo server running, pid $pid, config $CONF"
    else
        echo "demo server is not running"
        return 1
    fi
}

mpm_load_line() {
    case "$MPM" in
        hybrid)
            so="$REPO/build/mod_mpm_hybrid.so"
            [ -f "$so" ] || die "$so not built; run make first"
            echo "LoadModule mpm_hybrid_module $so" ;;
        event|worker|prefork)
            so="$MODDIR/mod_mpm_$MPM.so"
            [ -f "$so" ] || die "$so not found"
            echo "LoadModule mpm_${MPM}_module $so" ;;
        *)
            die "unknown MPM '$MPM' (hybrid, event, worker or prefork)" ;;
    esac
}

# Replace the @NAME@ placeholders of template $1, writing $2.
fill() {
    sed -e "s|@RUNDIR@|$RUNDIR|g" \
        -e "s|@PORT@|$PORT|g" \
        -e "s|@MPM@|$MPM|g" \
        -e "s|@MODDIR@|$MODDIR|g" \
        -e "s|@MPM_LOAD@|$MPM_LOAD|g" \
        -e "s|@CHILD_STATUS_LOAD@|$CS_LOAD|g" \
        -e "s|@CHILD_STATUS_ITEM@|$CS_ITEM|g" \
        "$1" > "$2"
}

write_docroot() {
    mkdir -p "$DOCROOT"
    fill "$TEMPLATES/index.html.in" "$DOCROOT/index.html"
    printf '0123456789abc\n' > "$DOCROOT/small.txt"
    [ -f "$DOCROOT/10k.bin" ] || head -c 10240 /dev/urandom > "$DOCROOT/10k.bin"
    [ -f "$DOCROOT/100k.bin" ] || head -c 102400 /dev/urandom > "$DOCROOT/100k.bin"
    # The children run as www-data and must read the docroot.
    chmod 755 "$RUNDIR" "$DOCROOT"
    chmod 644 "$DOCROOT"/*
    if [ "$(id -u)" -eq 0 ] &&
       ! setpriv --reuid=www-data --regid=www-data --clear-groups \
           test -r "$DOCROOT/index.html"; then
        die "www-data cannot read $DOCROOT (a parent directory is not" \
            "world-searchable); use RUNDIR= to put the demo elsewhere"
    fi
}

write_conf() {
    MODDIR=$("$APXS" -q LIBEXECDIR)
    MPM_LOAD=$(mpm_load_line)
    if [ -f "$REPO/build/mod_child_status.so" ]; then
        CS_LOAD="LoadModule child_status_module $REPO/build/mod_child_status.so"
        CS_ITEM='<a href="/child-status">/child-status</a> (mod_child_status)'
    else
        CS_LOAD="# (build/mod_child_status.so not built)"
        CS_ITEM='/child-status: mod_child_status is not built'
    fi
    mkdir -p "$RUNDIR"
    fill "$TEMPLATES/httpd.conf.in" "$CONF"
    write_docroot
}

# Wait until the server answers on its port and has written its pid file.
# $1 is the pid of the `apache2 -k start` launcher: it normally exits once
# the server has detached, and a non-zero exit means start-up failed.
wait_ready() {
    launcher=$1
    url="http://127.0.0.1:$PORT/"
    waited=0
    code=''
    while [ "$waited" -lt $((START_TIMEOUT * 10)) ]; do
        if [ -n "$launcher" ] && ! kill -0 "$launcher" 2>/dev/null; then
            rc=0
            wait "$launcher" || rc=$?
            launcher=''
            if [ "$rc" -ne 0 ]; then
                cat "$RUNDIR/start.log" >&2
                show_log
                die "apache2 -k start failed (exit $rc)"
            fi
        fi
        if demo_pid > /dev/null; then
            code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)
            if [ "$code" = 200 ]; then
                return 0
            fi
        elif [ -z "$launcher" ] && [ -z "$(conf_pids)" ]; then
            cat "$RUNDIR/start.log" >&2
            show_log
            die "apache2 exited during start-up (see $ERRLOG)"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    cat "$RUNDIR/start.log" >&2
    show_log
    do_stop >&2
    die "no HTTP 200 from $url after ${START_TIMEOUT}s (last answer: ${code:-none})"
}

do_start() {
    if pid=$(demo_pid); then
        echo "demo server already running (pid $pid); restarting it"
        do_stop
    elif [ -n "$(conf_pids)" ]; then
        do_stop
    fi
    write_conf
    "$APACHE2" -t -f "$CONF" >/dev/null 2>"$RUNDIR/configtest.log" || {
        cat "$RUNDIR/configtest.log" >&2
        die "configuration test failed for $CONF"
    }
    : > "$ERRLOG"
    # In the background, so an MPM that fails to detach cannot hang us; its
    # output goes to a file, not to the terminal or pipe make run has.
    "$APACHE2" -f "$CONF" -k start < /dev/null > "$RUNDIR/start.log" 2>&1 &
    wait_ready $!
    pid=$(demo_pid)
    cat <<EOF
demo server running: apache2 with the $MPM MPM, pid $pid
  http://127.0.0.1:$PORT/
  http://127.0.0.1:$PORT/server-status
EOF
    if [ -f "$REPO/build/mod_child_status.so" ]; then
        echo "  http://127.0.0.1:$PORT/child-status"
    fi
    cat <<EOF
  config $CONF
  logs   $RUNDIR/error.log, $RUNDIR/access.log
stop it with: make stop
EOF
}

case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

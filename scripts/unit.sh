#!/bin/sh
# Build and run the C unit tests: every test/unit/*.c is one standalone
# program (it may #include the .c under test).  Binaries and logs go to
# build/unit/.  Called by make unit and make test.
#
# Environment (set by apxs.mk): APXS, ACCEPT, MAX_SERVER_LIMIT,
# MAX_THREAD_LIMIT, EXTRA_CFLAGS (apxs style, -Wc,/-Wl, prefixes are
# unwrapped here), EXTRA_LDFLAGS; CC (default cc); UNIT_TIMEOUT seconds
# per test program (default 120).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
APXS=${APXS:-apxs}
CC=${CC:-cc}
ACCEPT=${ACCEPT:-exclusive}
MAX_SERVER_LIMIT=${MAX_SERVER_LIMIT:-20000}
MAX_THREAD_LIMIT=${MAX_THREAD_LIMIT:-20000}
EXTRA_CFLAGS=${EXTRA_CFLAGS:-}
EXTRA_LDFLAGS=${EXTRA_LDFLAGS:-}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-120}
SRCDIR=${UNIT_SRCDIR:-$REPO/test/unit}
OUT=${UNIT_OUT:-$REPO/build/unit}

if [ ! -d "$SRCDIR" ] || [ -z "$(find "$SRCDIR" -maxdepth 1 -name '*.c')" ]
then
    echo "unit: no test/unit/*.c, nothing to run"
    exit 0
fi

# apxs wants -Wc,flag and -Wl,flag; a plain compiler driver wants the flag.
unwrap() {
    for word in $1; do
        case "$word" in
            -Wc,*|-Wl,*) printf '%s ' "$(echo "${word#-W?,}" | tr ',' ' ')" ;;
            *) printf '%s ' "$word" ;;
        esac
    done
}

# The escaped quotes stay literal on purpose: they make the C string
# literal of HYBRID_DEFAULT_ACCEPT once CFLAGS is split into words.
# shellcheck disable=SC2089,SC2090
CFLAGS="-std=gnu99 -g -O1 -Wall -Wextra -Wno-unused-parameter \
 -Wno-missing-field-initializers \
 $("$APXS" -q EXTRA_CPPFLAGS) \
 -I$SRCDIR -I$REPO/mpm_src -I$REPO/mod_src -I$("$APXS" -q INCLUDEDIR) \
 $(apr-1-config --includes) $(apu-1-config --includes) \
 -DHYBRID_DEFAULT_ACCEPT=\"$ACCEPT\" \
 -DHYBRID_MAX_SERVER_LIMIT=$MAX_SERVER_LIMIT \
 -DHYBRID_MAX_THREAD_LIMIT=$MAX_THREAD_LIMIT \
 $(unwrap "$EXTRA_CFLAGS")"
LIBS="$(unwrap "$EXTRA_LDFLAGS") -laprutil-1 -lapr-1 -lpthread"

mkdir -p "$OUT"
pass=0
fail=0
failed=''
for src in "$SRCDIR"/*.c; do
    name=$(basename "$src" .c)
    log="$OUT/$name.log"
    # shellcheck disable=SC2086,SC2090  # flag lists split on purpose
    if ! $CC $CFLAGS -o "$OUT/$name" "$src" $LIBS > "$log" 2>&1; then
        echo "FAIL $name (does not build)"
        sed 's/^/    /' "$log"
        fail=$((fail + 1))
        failed="$failed $name"
        continue
    fi
    if (cd "$OUT" && timeout -k 5 "$UNIT_TIMEOUT" "./$name") >> "$log" 2>&1
    then
        echo "ok   $name"
        pass=$((pass + 1))
    else
        rc=$?
        [ "$rc" -ne 124 ] || echo "    (timed out after ${UNIT_TIMEOUT}s)" >> "$log"
        echo "FAIL $name (exit $rc)"
        tail -n 40 "$log" | sed 's/^/    /'
        fail=$((fail + 1))
        failed="$failed $name"
    fi
done
[ -z "$failed" ] || echo "unit: failed:$failed"
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

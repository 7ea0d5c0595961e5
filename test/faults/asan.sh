#!/bin/sh
# make asan: build both modules with AddressSanitizer and
# UndefinedBehaviorSanitizer into build/asan/ (the normal build/ is left
# alone: other people's servers map build/*.so), run the integration suite
# against that build with libasan preloaded into apache2, and fail if any
# sanitizer wrote a report.  Then run one-process mode (-X) of the normal
# build under valgrind (test/faults/valgrind.py).
#
# Environment:
#   TESTS        pytest selection as for make test (default: the whole
#                integration suite minus the build/install/bench tests,
#                which test packaging, not the modules' memory safety)
#   ASAN_SKIP_VALGRIND=1   only the sanitizer part
set -eu

REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT="$REPO/build/asan"
SRC="$OUT/src"
LOGS="$OUT/logs"
cd "$REPO"

LIBASAN=$(gcc -print-file-name=libasan.so)
if [ ! -e "$LIBASAN" ]; then
    echo "asan: gcc has no libasan ($LIBASAN); install libasan8 / gcc" >&2
    exit 1
fi

# A private copy of the sources, built by the same apxs.mk rules.
rm -rf "$SRC" "$LOGS"
mkdir -p "$SRC" "$LOGS"
chmod 777 "$LOGS"   # children write their reports as www-data
cp -r mpm_src mod_src apxs.mk Makefile "$SRC/"
SAN='-Wc,-fsanitize=address -Wc,-fsanitize=undefined -Wc,-fno-omit-frame-pointer -Wc,-fno-sanitize-recover=undefined -Wc,-g -Wl,-fsanitize=address -Wl,-fsanitize=undefined'
make -C "$SRC" --no-print-directory all EXTRA_CFLAGS="$SAN" \
    ${APXS:+APXS="$APXS"}
for so in "$SRC"/build/mod_mpm_hybrid.so "$SRC"/build/mod_child_status.so; do
    if ! nm -D "$so" | grep -q __asan_report; then
        echo "asan: $so is not instrumented" >&2
        exit 1
    fi
done
echo "asan: instrumented modules in $SRC/build"

# ASan must come first in the process: preload it into apache2 only (the
# fixture passes HYB_APACHE_ENV to every apache2 it runs).  Leak detection
# is off: httpd frees its pools at exit only partly.  Reports go to files,
# one per process, under build/asan/logs.
OPTS="detect_leaks=0:log_path=$LOGS/asan:abort_on_error=0:halt_on_error=1"
UOPTS="print_stacktrace=1:log_path=$LOGS/ubsan:halt_on_error=1"
export ASAN_OPTIONS="$OPTS" UBSAN_OPTIONS="$UOPTS"
export HYB_BUILD_DIR="$SRC/build"
export HYB_APACHE_ENV="LD_PRELOAD=$LIBASAN ASAN_OPTIONS=$OPTS UBSAN_OPTIONS=$UOPTS"

if [ -z "${TESTS:-}" ]; then
    sel="not test_install and not test_make_run and not bench_smoke and not test_deps"
    TESTS="$sel"
fi
test_rc=0
TESTS="$TESTS" "$REPO/scripts/test.sh" || test_rc=$?

reports=$(find "$LOGS" -type f -size +0 | sort)
if [ -n "$reports" ]; then
    echo "asan: sanitizer reports:"
    for f in $reports; do
        echo "=== $f"
        head -60 "$f"
    done
fi
n=$(printf '%s' "$reports" | grep -c . || true)
echo "asan: $n sanitizer report file(s) in $LOGS; integration tests rc=$test_rc"

vg_rc=0
if [ "${ASAN_SKIP_VALGRIND:-0}" != 1 ]; then
    unset HYB_BUILD_DIR HYB_APACHE_ENV ASAN_OPTIONS UBSAN_OPTIONS
    make --no-print-directory all
    /usr/bin/python3 "$REPO/test/faults/valgrind.py" || vg_rc=$?
fi
[ "$n" -eq 0 ] && [ "$test_rc" -eq 0 ] && [ "$vg_rc" -eq 0 ]

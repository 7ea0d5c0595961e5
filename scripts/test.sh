#!/bin/sh
# The test suite as make test runs it (after deps and the build): the C
# unit tests, then the pytest integration tests.  Both run even if the
# first fails; the exit status is non-zero if either failed.
#
# Environment:
#   TESTS         subset of the integration tests: a file or node id
#                 (test_install.py, test/integration/test_x.py::test_y),
#                 several separated by spaces, or else a pytest -k
#                 expression.  When set, the unit tests are skipped.
#   PYTEST_ARGS   extra pytest arguments (e.g. -x)
#   TEST_TIMEOUT  per-test limit in seconds (default 300; 0 = none)
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=/usr/bin/python3
TESTS=${TESTS:-}
PYTEST_ARGS=${PYTEST_ARGS:-}
TEST_TIMEOUT=${TEST_TIMEOUT:-300}
ITEST="test/integration"
cd "$REPO"

unit_rc=0
if [ -z "$TESTS" ]; then
    "$REPO/scripts/unit.sh" || unit_rc=$?
else
    echo "unit: skipped (TESTS is set; make unit runs them)"
fi

# Is every word of TESTS a test file or node id rather than a -k expression?
is_path_list() {
    for word in $1; do
        case "$word" in
            *.py|*.py::*|*/*) ;;
            *) return 1 ;;
        esac
    done
}

# A bare file name means the file in test/integration/.
resolve() {
    for word in $1; do
        file=${word%%::*}
        if [ ! -e "$file" ] && [ -e "$ITEST/$file" ]; then
            word="$ITEST/$word"
        fi
        printf '%s\n' "$word"
    done
}

set --
if [ -n "$TESTS" ] && is_path_list "$TESTS"; then
    for t in $(resolve "$TESTS"); do
        set -- "$@" "$t"
    done
else
    # test_build_httpd.py builds httpd from source: make test-build runs
    # it (and .ci/run runs that too), make test leaves it out.
    set -- "$ITEST" --ignore="$ITEST/test_build_httpd.py"
    [ -z "$TESTS" ] || set -- "$@" -k "$TESTS"
fi

# The per-test guard uses SIGALRM, so a hung test still runs its fixture
# teardown and the servers it started are stopped.
if [ "$TEST_TIMEOUT" != 0 ] && "$PYTHON" -c 'import pytest_timeout' 2>/dev/null
then
    set -- --timeout="$TEST_TIMEOUT" --timeout-method=signal "$@"
elif [ "$TEST_TIMEOUT" != 0 ]; then
    echo "test: python3-pytest-timeout missing, no per-test timeout (make deps PURPOSE=test)"
fi

pytest_rc=0
# shellcheck disable=SC2086  # PYTEST_ARGS is a word list
"$PYTHON" -m pytest -v -ra --durations=10 $PYTEST_ARGS "$@" || pytest_rc=$?

if [ "$unit_rc" -ne 0 ]; then
    echo "test: the C unit tests failed (see above)"
fi
[ "$unit_rc" -eq 0 ] && [ "$pytest_rc" -eq 0 ] || exit 1

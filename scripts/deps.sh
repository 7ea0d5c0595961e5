#!/bin/sh
# Install the Debian packages the build, the demo, the tests and the
# benchmark need, but only those that are missing.  A machine that already
# has everything is left alone and needs no network.
#
# Usage: scripts/deps.sh [--check]
#   --check  only report what is missing (exit 1 if anything is)
set -eu

# Package, then why it is needed (shown when it is missing).
PACKAGES='
apache2                 the stock httpd the MPM loads into
apache2-dev             apxs and the httpd/APR headers
gcc                     the compiler apxs runs
libc6-dev               C library headers (gcc only recommends them)
make                    the build itself (needed to run make deps at all)
procps                  pgrep, used by make stop
apache2-utils           ab, used by the integration tests
python3-pytest          the integration test runner
python3-pytest-timeout  per-test timeout guard for make test
curl                    used by make run to check the demo is up
wrk                     load generator for the benchmark
nghttp2-client          h2load, HTTP/2 load generator for the benchmark
prometheus              promtool, checks the Prometheus output of child-status
chromium                headless screenshots of the status pages
gnuplot-nox             benchmark plots
nginx-light             reference server for the benchmark
prometheus-apache-exporter  checks that ?auto still parses for the exporter
valgrind                -X under valgrind (faults) and instruction counts
# --- make deb / Debian tests (issue 12) ---
debhelper               make deb: dh and the debhelper sequence
dpkg-dev                make deb: dpkg-buildpackage, dpkg-shlibdeps
fakeroot                make deb: builds the package as non-root too
lintian                 make deb checks the package against Debian policy
# (test_debian_php.py installs libapache2-mod-php8.2 itself and purges it
# again: the test proves the machine is back as it was, so it is not here)
'

check_only=no
case "${1:-}" in
    --check) check_only=yes ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

installed() {
    # dpkg-query prints the status even for removed-but-configured
    # packages, so look for the exact "installed" state.
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [ "$status" = "install ok installed" ]
}

reasons=$(printf '%s\n' "$PACKAGES" | while read -r pkg why; do
    case "$pkg" in ''|'#'*) continue ;; esac
    if ! installed "$pkg"; then
        printf '%s\t%s\n' "$pkg" "$why"
    fi
done)
missing=$(printf '%s\n' "$reasons" | cut -f1 | tr '\n' ' ' | sed 's/ *$//')

if [ -z "$missing" ]; then
    echo "deps: all required Debian packages are installed"
    exit 0
fi

echo "deps: missing Debian packages:"
printf '%s\n' "$reasons" | sed 's/^/  /'

if [ "$check_only" = yes ]; then
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: not root; install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install --no-install-recommends $missing" >&2
    exit 1
fi

# Packages such as apache2, nginx-light and prometheus start their daemon
# from postinst.  Nothing here wants them running, so deny service starts
# for the duration of the install unless a policy is already in place.
policy=/usr/sbin/policy-rc.d
own_policy=no
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from mpm_hybrid scripts/deps.sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    own_policy=yes
fi
cleanup() {
    if [ "$own_policy" = yes ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

export DEBIAN_FRONTEND=noninteractive
# Wait for another apt or dpkg run (a shared machine) instead of failing.
wait_lock='-o DPkg::Lock::Timeout=600'
# shellcheck disable=SC2086  # word lists on purpose
apt-get $wait_lock update
# shellcheck disable=SC2086
apt-get $wait_lock install -y --no-install-recommends $missing
echo "deps: installed $missing"

#!/bin/sh
# Install the Debian packages a purpose needs, but only those that are
# missing.  A machine that already has them is left alone and needs no
# network.
#
# Usage: scripts/deps.sh [--check | --list] [PURPOSE...]
#   PURPOSE  run, test, bench, deb, httpd, or all (the default: every list)
#   --check  only report what is missing (exit 1 if anything is)
#   --list   print the package names of the purposes, one a line
#
# Who asks for what (apxs.mk):
#   make deps [PURPOSE=x]             all, or one purpose
#   make run                          run
#   make test                         test
#   make bench                        bench
#   make test-faults, make asan       test bench
#   make deb                          deb
#   the build-time httpd build        httpd
set -eu

# One list per purpose: a line is "package  why" (the why is shown when the
# package is missing); a line "+purpose" takes in that purpose's list.  A
# new purpose is a pkgs_NAME function and its name in PURPOSES.

# Building the modules, make run, make install.
pkgs_run() { cat <<'EOF'
apache2                 the stock httpd the MPM loads into (pulls in apache2-utils)
apache2-dev             apxs and the httpd/APR headers
gcc                     the compiler apxs runs
libc6-dev               C library headers (gcc only recommends them)
make                    the build itself (needed to run make deps at all)
curl                    make run checks the demo is up
procps                  pgrep, used by make stop
EOF
}

# What make test adds: every tool a test in test/integration runs.  A test
# finds its tool with httpd_fixture.require_tool(), which names the package.
pkgs_test() { cat <<'EOF'
+run
+deb
python3                 /usr/bin/python3 runs pytest and the benchmark harness
python3-pytest          the integration test runner
python3-pytest-timeout  per-test timeout guard for make test
apache2-utils           ab, the load generator of the integration tests
nghttp2-client          h2load, HTTP/2 over mpm_hybrid (test_core_http2)
prometheus              promtool checks ?prometheus of child-status (test_child_status)
prometheus-apache-exporter  checks that ?auto still parses for the exporter (test_child_status)
chromium                renders /child-status in a real browser (test_child_status)
wrk                     the benchmark harness on a tiny workload (test_bench_smoke)
gnuplot-nox             the benchmark chart (test_bench_smoke)
git                     git describe names the build in the benchmark report (test_bench_smoke)
openssl                 a throwaway certificate for TLS keep-alive (test_async)
util-linux              prlimit, a low fd limit for one server (test_async)
linux-perf              perf counts syscalls per connection in the counting harness (test_bench_smoke)
EOF
}

# What make bench, make test-faults and make asan add.
pkgs_bench() { cat <<'EOF'
+run
python3                 runs the benchmark and the fault-suite tools
git                     git describe names the build in the benchmark report
wrk                     load generator for the benchmark
nginx-light             reference server for the benchmark
gnuplot-nox             benchmark plots
valgrind                apache2 -X under valgrind (make asan)
apache2-utils           ab: the fixed request counts of the counting harness (count.py)
linux-perf              perf: syscalls counted per connection, CPU profiles (count.py)
util-linux              prlimit: every server of the idle-capacity benchmark at its hard fd limit (idle.py)
EOF
}

# What make deb adds.
pkgs_deb() { cat <<'EOF'
+run
debhelper               dh, the packaging helper
dpkg-dev                dpkg-buildpackage
fakeroot                builds the package without root
lintian                 checks the built package
EOF
}

# What the build-time httpd build (from Debian's apache2 source) adds.
pkgs_httpd() { cat <<'EOF'
+run
dpkg-dev                dpkg-source unpacks Debian's apache2 source
autoconf                regenerates httpd's configure
automake                ./buildconf takes config.guess and config.sub from it
libtool                 httpd's build links with libtool
libtool-bin             the libtool program itself
libapr1-dev             APR headers and library
libaprutil1-dev         APR-util headers and library
libpcre2-dev            PCRE2, httpd's regular expressions
zlib1g-dev              zlib, for mod_deflate
libexpat1-dev           expat, for APR-util's XML
EOF
}

PURPOSES='run test bench deb httpd'

purpose_list() {
    case "$1" in
        all) for p in $PURPOSES; do printf '+%s\n' "$p"; done ;;
        *) case " $PURPOSES " in
               *" $1 "*) "pkgs_$1" ;;
               *) return 1 ;;
           esac ;;
    esac
}

usage() {
    echo "usage: $0 [--check | --list] [PURPOSE...]" >&2
    echo "  PURPOSE: $PURPOSES, or all (the default)" >&2
    exit 2
}

# "package<TAB>why" for each package of a purpose and what it takes in.
expand() {
    purpose_list "$1" | while read -r pkg why; do
        case "$pkg" in
            "") ;;
            +*) expand "${pkg#+}" ;;
            *) printf '%s\t%s\n' "$pkg" "$why" ;;
        esac
    done
}

# Every "+purpose" line must name a purpose: a typo would drop a list.
for p in $PURPOSES; do
    for inc in $(purpose_list "$p" | sed -n 's/^+//p'); do
        if ! purpose_list "$inc" >/dev/null; then
            echo "deps: purpose $p takes in unknown purpose $inc" >&2
            exit 2
        fi
    done
done

mode=install
case "${1:-}" in
    --check) mode=check; shift ;;
    --list) mode=list; shift ;;
    -*) usage ;;
esac
[ $# -gt 0 ] || set -- all
for p in "$@"; do
    purpose_list "$p" >/dev/null || usage
done
label="deps ($*)"

# The packages of all the purposes asked for, each once, first why wins.
wanted=$(for p in "$@"; do expand "$p"; done | {
    seen=' '
    while IFS="$(printf '\t')" read -r pkg why; do
        case "$seen" in *" $pkg "*) continue ;; esac
        seen="$seen$pkg "
        printf '%s\t%s\n' "$pkg" "$why"
    done
})

if [ "$mode" = list ]; then
    printf '%s\n' "$wanted" | cut -f1
    exit 0
fi

installed() {
    # dpkg-query prints the status even for removed-but-configured
    # packages, so look for the exact "installed" state.
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [ "$status" = "install ok installed" ]
}

reasons=$(printf '%s\n' "$wanted" | while IFS="$(printf '\t')" read -r pkg why; do
    if [ -n "$pkg" ] && ! installed "$pkg"; then
        printf '%s\t%s\n' "$pkg" "$why"
    fi
done)
missing=$(printf '%s\n' "$reasons" | cut -f1 | tr '\n' ' ' | sed 's/ *$//')

if [ -z "$missing" ]; then
    echo "$label: all required Debian packages are installed"
    exit 0
fi

echo "$label: missing Debian packages:"
printf '%s\n' "$reasons" | sed 's/^/  /'

if [ "$mode" = check ]; then
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "$label: not root; install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install --no-install-recommends $missing" >&2
    exit 1
fi

# Packages such as apache2, nginx-light and prometheus start their daemon
# from postinst.  Nothing here wants them running, so deny service starts
# for the duration of the install unless a policy is already in place.
# (DEPS_POLICY_RC_D moves the file, for test_deps.py only.)
policy=${DEPS_POLICY_RC_D:-/usr/sbin/policy-rc.d}
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
echo "$label: installed $missing"

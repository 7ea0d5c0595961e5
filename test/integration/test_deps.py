"""scripts/deps.sh: one package list per purpose (issue 15).  make run must
install what building and running need and nothing more (no browser, load
tool, reference server, monitoring, plotting or valgrind, not even through
a dependency); make test must install every tool a test runs.  The lists
are checked against dpkg and apt; --check and the install path run against
fake dpkg-query, apt-get and id in PATH, so nothing is installed or
removed."""
import os
import re
import subprocess

import pytest

import httpd_fixture
from httpd_fixture import REPO, TOOLS, require_tool

DEPS = os.path.join(REPO, "scripts", "deps.sh")
PURPOSES = ["run", "test", "bench", "deb", "httpd"]
# what make run needs, and only that (issue 15)
RUN = {"apache2", "apache2-dev", "gcc", "libc6-dev", "make", "curl",
       "procps"}

# What a demo server must not get, by kind: whole package names.
FORBIDDEN = {
    "browser": r"chromium.*|firefox.*|epiphany.*|falkon|konqueror|midori"
               r"|lynx|w3m|elinks|links2?|surf|qutebrowser",
    "load tool": r"wrk|nghttp2-client|apache2-utils|siege|httperf|hey|oha"
                 r"|vegeta|jmeter|tsung",
    "reference server": r"nginx.*|lighttpd.*|caddy|h2o|hiawatha|thttpd"
                        r"|mini-httpd",
    "monitoring": r"prometheus.*",
    "plotting": r"gnuplot.*",
    "valgrind": r"valgrind.*",
    "GUI library": r"libgtk.*|libx11-6|libqt\d.*|libwayland-client\d*",
}
# apache2 itself Depends on apache2-utils (ab, htpasswd, ...): it comes
# with any stock httpd, but deps.sh must not ask for it for make run.
RUN_CLOSURE_ALLOWED = {"apache2-utils"}


def deps(*args, path=None, env=None):
    e = dict(os.environ)
    if path is not None:
        e["PATH"] = path
    e.update(env or {})
    return subprocess.run(["/bin/sh", DEPS, *args], capture_output=True,
                          text=True, timeout=60, env=e,
                          stdin=subprocess.DEVNULL)


def listed(*purposes):
    r = deps("--list", *purposes)
    assert r.returncode == 0, r.stdout + r.stderr
    names = r.stdout.split()
    assert names, "empty list for %r" % (purposes,)
    assert len(names) == len(set(names)), "a package listed twice: %r" % names
    return names


def forbidden(names, allowed=()):
    """{package: kind} of the names a demo server must not get."""
    out = {}
    for n in names:
        for kind, pat in FORBIDDEN.items():
            if n not in allowed and re.fullmatch(pat, n):
                out[n] = kind
    return out


def closure(names):
    """The packages installing `names` can bring in: apt's dependency
    closure without recommends (deps.sh installs with
    --no-install-recommends), every alternative taken, virtual names
    unwrapped; an over-estimate, which is the safe side here."""
    r = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends",
         "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
         "--no-enhances", *names], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = {l.strip().strip("<>") for l in r.stdout.splitlines()
           if l and not l[0].isspace()}
    assert set(names) <= out, set(names) - out
    return out


def dpkg_fields(names, field):
    """{package: value of field} from dpkg-query, for the names dpkg knows."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${%s}\n" % field,
                        *names], capture_output=True, text=True, timeout=60)
    out = {}
    for line in r.stdout.splitlines():
        pkg, _, value = line.partition("\t")
        out[pkg] = value
    return out


def provided(names):
    """{package: set of virtual packages it Provides} (installed ones)."""
    return {p: {re.sub(r"\s*\(.*\)", "", v).strip() for v in val.split(",")
                if v.strip()}
            for p, val in dpkg_fields(names, "Provides").items()}


def known_to_debian(name):
    if subprocess.run(["dpkg-query", "-W", name], capture_output=True,
                      timeout=30).returncode == 0:
        return True
    r = subprocess.run(["apt-cache", "show", "--no-all-versions", name],
                       capture_output=True, text=True, timeout=30)
    return r.returncode == 0 and ("Package: %s\n" % name) in r.stdout


# -- the lists ---------------------------------------------------------------

def test_every_listed_package_is_a_debian_package():
    assert not known_to_debian("mpm-hybrid-no-such-package")   # can fail
    unknown = [n for n in listed() if not known_to_debian(n)]
    assert not unknown, ("neither dpkg nor apt knows %r (a typo? if apt has "
                         "no lists yet: apt-get update)" % unknown)


def test_run_is_exactly_what_building_and_running_need():
    assert set(listed("run")) == RUN


def test_purposes_take_in_run_and_all_is_their_union():
    run = set(listed("run"))
    union = set()
    for p in PURPOSES:
        mine = set(listed(p))
        assert run <= mine, (p, run - mine)
        union |= mine
    everything = listed()
    assert set(everything) == union
    assert listed("all") == everything
    assert set(listed("test", "bench")) == set(listed("test")) | set(
        listed("bench"))


def test_run_gets_no_browser_load_tool_reference_server_or_valgrind():
    run = listed("run")
    assert forbidden(run) == {}
    # The same predicates do catch what the other purposes bring.
    caught = forbidden(listed())
    for name, kind in [("chromium", "browser"), ("wrk", "load tool"),
                       ("nghttp2-client", "load tool"),
                       ("apache2-utils", "load tool"),
                       ("nginx-light", "reference server"),
                       ("prometheus", "monitoring"),
                       ("prometheus-apache-exporter", "monitoring"),
                       ("gnuplot-nox", "plotting"),
                       ("valgrind", "valgrind")]:
        assert caught.get(name) == kind, (name, caught)


def test_run_brings_none_of_them_in_through_dependencies():
    """Not by name, and not by what the packages depend on: no browser
    (nothing that Provides www-browser) and no other httpd."""
    run = closure(listed("run"))
    assert forbidden(run, allowed=RUN_CLOSURE_ALLOWED) == {}
    prov = provided(sorted(run))
    assert prov, "dpkg-query knows none of make run's packages"
    browsers = {p for p, v in prov.items()
                if v & {"www-browser", "gnome-www-browser", "x-www-browser"}}
    assert browsers == set()
    servers = {p for p, v in prov.items() if "httpd" in v}
    assert servers <= {"apache2"}, servers
    # Control: make test's closure has the browser and its GUI libraries,
    # and dpkg-query says chromium is a www-browser, apache2 an httpd.
    test = closure(listed("test"))
    caught = forbidden(test)
    assert caught.get("chromium") == "browser"
    assert "GUI library" in caught.values(), caught
    assert "www-browser" in provided(["chromium"]).get("chromium", set())
    assert "httpd" in provided(["apache2"])["apache2"]


def test_every_tool_a_test_runs_is_installed_by_make_test():
    """TOOLS (the programs the tests find with require_tool) maps each to
    the package that really ships it, and `test` lists that package."""
    test = set(listed("test"))
    for tool, package in sorted(TOOLS.items()):
        assert package in test, (tool, package)
        path = os.path.realpath(require_tool(tool))
        owners = set()
        for p in {path, re.sub(r"^/usr(?=/s?bin/)", "", path)}:
            r = subprocess.run(["dpkg", "-S", p], capture_output=True,
                               text=True, timeout=30)
            for line in r.stdout.splitlines():
                if not line.startswith("diversion by"):
                    owners |= {o.strip() for o in
                               line.rsplit(": ", 1)[0].split(",")}
        assert package in owners, (tool, path, owners)


def test_require_tool_fails_with_the_package_never_skips(monkeypatch,
                                                         tmp_path):
    assert os.path.isabs(require_tool("curl"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception) as e:
        require_tool("promtool")
    assert str(e.value) == ("promtool not found: install Debian package "
                            "prometheus (make deps PURPOSE=test)")
    with pytest.raises(KeyError):      # a tool without a package is an error
        httpd_fixture.require_tool("no-such-tool")


# -- --check, the install path, the make targets -----------------------------

FAKE_DPKG_QUERY = """#!/bin/sh
# the last argument is the package; FAKE_MISSING: not installed,
# FAKE_REMOVED: removed, its config files kept
for a; do pkg=$a; done
case " $FAKE_MISSING " in *" $pkg "*)
    echo "dpkg-query: no packages found matching $pkg" >&2; exit 1 ;;
esac
case " $FAKE_REMOVED " in *" $pkg "*)
    printf 'deinstall ok config-files'; exit 0 ;;
esac
printf 'install ok installed'
"""

FAKE_APT_GET = """#!/bin/sh
# record the call, whether service starts are denied, the frontend
if [ -x "$DEPS_POLICY_RC_D" ]; then p=policy; else p=nopolicy; fi
echo "$p $DEBIAN_FRONTEND $*" >> "$FAKE_LOG"
"""

FAKE_ID = """#!/bin/sh
echo "${FAKE_UID:-0}"
"""


@pytest.fixture
def fakes(tmp_path):
    """A PATH whose dpkg-query, apt-get and id are fakes; returns
    run(*args, missing=..., removed=..., uid=...) -> (CompletedProcess,
    list of recorded apt-get calls)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("dpkg-query", FAKE_DPKG_QUERY),
                       ("apt-get", FAKE_APT_GET), ("id", FAKE_ID)):
        f = bindir / name
        f.write_text(text)
        f.chmod(0o755)
    log = tmp_path / "apt-get.log"
    policy = tmp_path / "policy-rc.d"

    def run(*args, missing="", removed="", uid=0):
        if log.exists():
            log.unlink()
        r = deps(*args, path="%s:/usr/bin:/bin" % bindir,
                 env={"FAKE_MISSING": missing, "FAKE_REMOVED": removed,
                      "FAKE_UID": str(uid), "FAKE_LOG": str(log),
                      "DEPS_POLICY_RC_D": str(policy)})
        calls = log.read_text().splitlines() if log.exists() else []
        return r, calls
    run.policy = policy
    return run


def test_check_reports_what_one_purpose_misses(fakes):
    r, _ = fakes("--check", "run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deps (run): all required Debian packages are installed" in r.stdout

    r, _ = fakes("--check", "run", missing="curl")
    assert r.returncode == 1
    assert "deps (run): missing Debian packages:" in r.stdout
    assert re.search(r"^  curl\tmake run checks the demo is up$", r.stdout,
                     re.M), r.stdout
    # run's packages are test's too
    assert fakes("--check", "test", missing="curl")[0].returncode == 1

    # what only make test needs is none of make run's business
    assert fakes("--check", "run", missing="chromium")[0].returncode == 0
    r, _ = fakes("--check", "test", missing="chromium")
    assert r.returncode == 1 and "chromium" in r.stdout
    assert fakes("--check", "bench", missing="chromium")[0].returncode == 0

    r, _ = fakes("--check", "bench", missing="valgrind nginx-light")
    assert r.returncode == 1
    assert "valgrind" in r.stdout and "nginx-light" in r.stdout
    assert fakes("--check", "test", missing="valgrind nginx-light")[
        0].returncode == 0
    # no purpose: all of them
    r, _ = fakes("--check", missing="lintian")
    assert r.returncode == 1 and "deps (all)" in r.stdout

    # removed with its config files kept is missing
    r, _ = fakes("--check", "run", removed="procps")
    assert r.returncode == 1 and "procps" in r.stdout

    r, calls = fakes("--check", "test", missing="chromium")
    assert calls == [], "--check ran apt-get"


def test_unknown_purpose_or_option_is_refused(fakes):
    for args in (["nosuch"], ["--check", "nosuch"], ["--list", "run", "x"],
                 ["--bogus"]):
        r, calls = fakes(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "usage:" in r.stderr and "run test bench deb httpd" in r.stderr
        assert calls == []


def test_install_asks_apt_for_the_missing_of_its_purpose_only(fakes):
    # nothing of run's is missing: no apt-get at all (no network)
    r, calls = fakes("run", missing="chromium wrk")
    assert r.returncode == 0, r.stdout + r.stderr
    assert calls == []

    r, calls = fakes("test", missing="chromium wrk valgrind")
    assert r.returncode == 0, r.stdout + r.stderr
    lock = "-o DPkg::Lock::Timeout=600"
    assert calls == [
        "policy noninteractive %s update" % lock,
        "policy noninteractive %s install -y --no-install-recommends "
        "chromium wrk" % lock], calls
    assert "deps (test): installed chromium wrk" in r.stdout
    assert not fakes.policy.exists(), "policy-rc.d left behind"

    # a policy already in place is used and left alone
    fakes.policy.write_text("#!/bin/sh\nexit 0\n")
    fakes.policy.chmod(0o755)
    try:
        r, calls = fakes("run", missing="curl")
        assert r.returncode == 0 and len(calls) == 2, calls
        assert fakes.policy.read_text() == "#!/bin/sh\nexit 0\n"
    finally:
        fakes.policy.unlink()


def test_not_root_says_what_to_run_and_installs_nothing(fakes):
    r, calls = fakes("run", missing="curl gcc", uid=1000)
    assert r.returncode == 1
    assert calls == []
    assert "deps (run): not root; install them with:" in r.stderr
    assert ("sudo apt-get update && sudo apt-get install "
            "--no-install-recommends gcc curl") in r.stderr, r.stderr
    assert not fakes.policy.exists()


def deps_calls(*make_args):
    """The deps.sh command lines `make -n` would run for a target."""
    r = subprocess.run(["make", "-n", "-C", REPO, "--no-print-directory",
                        *make_args], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    return [l.strip() for l in r.stdout.splitlines() if "deps.sh" in l]


MAKE_CASES = [
    (["run"], ["scripts/deps.sh run"]),
    (["test"], ["scripts/deps.sh test"]),
    (["bench"], ["scripts/deps.sh bench"]),
    (["test-faults"], ["scripts/deps.sh test bench"]),
    (["asan"], ["scripts/deps.sh test bench"]),
    (["deps"], ["scripts/deps.sh"]),
    (["deps", "PURPOSE=deb"], ["scripts/deps.sh deb"]),
    (["deps", "PURPOSE=httpd"], ["scripts/deps.sh httpd"]),
    (["install"], []),
    (["unit"], []),
]


@pytest.mark.parametrize("target,want", MAKE_CASES,
                         ids=[" ".join(t) for t, _ in MAKE_CASES])
def test_each_make_target_asks_for_its_own_purpose(target, want):
    assert deps_calls(*target) == want


def test_readme_quick_start_says_what_make_run_installs():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    run = [l for l in start.splitlines() if "sudo make run " in l]
    test = [l for l in start.splitlines() if "sudo make test " in l]
    assert len(run) == 1 and len(test) == 1, start
    for pkg in listed("run"):
        assert re.search(r"\b%s\b(?!-)" % re.escape(pkg), run[0]), (pkg, run)
    assert "chromium" not in run[0]
    assert "chromium" in test[0]

"""mpm_hybrid chosen at build time, inside httpd's own source tree (make
httpd-tree; README "Choosing the MPM at build time").  make test-build
runs this file (make test leaves it out: it downloads and builds httpd).

Debian's apache2 source is fetched once (scripts/debian-source.sh, cached
in build/debian-src), mpm_hybrid is placed into it with make httpd-tree,
./buildconf runs once, and two out-of-tree (VPATH) builds share that
tree, each with a small module set:
  static  --with-mpm=hybrid --with-hybrid-accept=reuseport
  shared  --with-mpm=hybrid --enable-mpms-shared='hybrid event'
Each is installed into its own prefix, mod_child_status is built with that
prefix's apxs, and the binaries are started on 127.0.0.1 with generated
configs (httpd_fixture.Httpd with binary=...).  The make httpd-tree
error cases run on small fake trees and need no download.
"""
import concurrent.futures
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from httpd_fixture import REPO, bad_log_lines, run_load, settle

DEBIAN_CACHE = os.path.join(REPO, "build", "debian-src")
# Enough for the test servers: Require, MIME types, DirectoryIndex,
# Alias, mod_status; mod_so for LoadModule, mod_unixd for User/Group.
MODS_SHARED = "authz_core authz_host mime dir alias status"
MODS_STATIC = "log_config unixd"
BUILDS = {
    "static": ["--with-mpm=hybrid", "--with-hybrid-accept=reuseport"],
    "shared": ["--with-mpm=hybrid", "--enable-mpms-shared=hybrid event"],
}
CHILD_STATUS = "<Location /child-status>\n  SetHandler child-status\n</Location>"
SERVER_CONF = "\n".join([
    "StartServers 2", "ServerLimit 16", "ThreadLimit 16", "ThreadsPerChild 4",
    "MaxRequestWorkers 32", "MinSpareThreads 2", "MaxSpareThreads 32",
    CHILD_STATUS])
# a warning from one of our files in httpd's build output (the apxs build
# has -Werror; httpd's own build gets -Wall -Wextra without it)
OUR_WARNING = re.compile(r"^(\S*/)?(mod_mpm_hybrid|hybrid_\w+|accept_\w+|"
                         r"reuseport_\w+)\.[ch]:\d+:\d+: warning:.*$", re.M)


def run(args, cwd=None, log=None, timeout=600):
    """Run a command; on failure raise with the tail of its output.
    Returns (stdout, seconds)."""
    t0 = time.monotonic()
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    out = r.stdout + r.stderr
    if log:
        with open(log, "w") as f:
            f.write(out)
    if r.returncode != 0:
        raise AssertionError("%s (in %s) failed with %d:\n%s" % (
            " ".join(args), cwd, r.returncode, out[-6000:]))
    return r.stdout, time.monotonic() - t0


def check_configure_has_hybrid(src, buildconf_out):
    """buildconf pipes autoconf's output through grep, so a failed
    autoconf leaves the tarball's configure, which knows no hybrid MPM,
    and exits 0; configure then says only "MPM hybrid is not supported on
    this platform" (seen once in a CI run, not reproduced).  Say what
    buildconf saw instead."""
    with open(os.path.join(src, "configure"), errors="replace") as f:
        if "hybrid MPM supports this platform" in f.read():
            return
    stubs = subprocess.run(["build/config-stubs", "."], cwd=src,
                           capture_output=True, text=True)
    raise AssertionError(
        "./buildconf left a configure without server/mpm/hybrid/config.m4"
        "\nserver/mpm: %s\nbuild/config-stubs:\n%s%s\nbuildconf output:"
        "\n%s" % (sorted(os.listdir(os.path.join(src, "server", "mpm"))),
                   stubs.stdout, stubs.stderr, buildconf_out[-4000:]))


def mpm_units():
    out, _ = run(["make", "-s", "--no-print-directory", "-C", REPO,
                  "print-mpm-units"])
    return out.split()


class HttpdBuild:
    """One configured, built and installed httpd."""

    def __init__(self, kind, prefix, configure_args, make_log):
        self.kind = kind
        self.prefix = prefix
        self.configure_args = configure_args
        self.make_log = make_log
        self.binary = os.path.join(prefix, "bin", "httpd")
        self.modules = os.path.join(prefix, "modules")
        self.apxs = os.path.join(prefix, "bin", "apxs")

    def cmd(self, *args):
        r = subprocess.run([self.binary, *args], capture_output=True,
                           text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr


_build_failed = []


@pytest.fixture(scope="module")
def builds(request):
    """{'static': HttpdBuild, 'shared': HttpdBuild, 'src': tree,
    'version': Debian version}; everything under one temporary directory,
    removed at the end.  pytest would retry a failed module fixture for
    every test; a failed build is reported once and then only named."""
    if _build_failed:
        pytest.fail("the httpd builds failed (see the first error)",
                    pytrace=False)
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    top = tempfile.mkdtemp(prefix="hybbuild-")
    times = []

    def say(line):
        """A line on the terminal now (the timings are part of the test's
        purpose: CI's time budget)."""
        if reporter and capture:
            with capture.global_and_fixture_disabled():
                reporter.write_line("test_build_httpd: " + line)

    def note(what, seconds):
        times.append((what, seconds))
        say("%-44s %6.1f s" % (what, seconds))
    try:
        src = os.path.join(top, "httpd-src")
        # the deb-src entries go into a private apt config: /etc/apt is
        # only read, and this proves it
        etc_apt = listing("/etc/apt")
        out, t = run([os.path.join(REPO, "scripts", "debian-source.sh"),
                      "--cache", DEBIAN_CACHE, src], timeout=300)
        assert out.strip().splitlines()[-1] == src, out
        assert listing("/etc/apt") == etc_apt, "debian-source.sh changed " \
            "/etc/apt"
        with open(os.path.join(src, ".debian-source-version")) as f:
            version = f.read().strip()
        note("fetch+unpack Debian apache2 %s" % version, t)

        out, t = run(["make", "-C", REPO, "--no-print-directory",
                      "httpd-tree", "HTTPD_SRC=" + src])
        note("make httpd-tree", t)
        apr = shutil.which("apr-1-config")
        apu = shutil.which("apu-1-config")
        pcre = shutil.which("pcre2-config")
        assert apr and apu and pcre, "apr-1-config, apu-1-config, " \
            "pcre2-config needed (make deps)"
        out, t = run(["./buildconf", "--with-apr=" + apr,
                      "--with-apr-util=" + apu],
                     cwd=src, log=os.path.join(top, "buildconf.log"))
        note("./buildconf", t)
        check_configure_has_hybrid(src, out)

        result = {"src": src, "version": version, "top": top}
        for kind, args in BUILDS.items():
            bdir = os.path.join(top, "build-" + kind)
            prefix = os.path.join(top, "prefix-" + kind)
            os.makedirs(bdir)
            cargs = [os.path.join(src, "configure"), "--prefix=" + prefix,
                     *args, "--with-apr=" + apr, "--with-apr-util=" + apu,
                     "--with-pcre=" + pcre, "--enable-modules=none",
                     "--enable-mods-shared=" + MODS_SHARED,
                     "--enable-mods-static=" + MODS_STATIC, "--enable-so"]
            _, t = run(cargs, cwd=bdir, log=os.path.join(bdir, "configure.log"))
            note("%s: configure" % kind, t)
            make_log = os.path.join(bdir, "make.log")
            _, t = run(["make", "-j2"], cwd=bdir, log=make_log, timeout=900)
            note("%s: make -j2" % kind, t)
            _, t = run(["make", "install"], cwd=bdir,
                       log=os.path.join(bdir, "install.log"))
            note("%s: make install" % kind, t)
            b = HttpdBuild(kind, prefix, cargs, make_log)
            # mod_child_status, built by this httpd's apxs from a copy of
            # the sources (apxs writes next to what it compiles)
            cs = os.path.join(top, "child_status-" + kind)
            os.makedirs(cs)
            for d in ("mpm_src", "mod_src"):
                shutil.copytree(os.path.join(REPO, d), os.path.join(cs, d))
            for f in ("apxs.mk", "Makefile"):
                shutil.copy(os.path.join(REPO, f), cs)
            _, t = run(["make", "-C", cs, "--no-print-directory",
                        "APXS=" + b.apxs, "build/mod_child_status.so"])
            shutil.copy(os.path.join(cs, "build", "mod_child_status.so"),
                        b.modules)
            note("%s: mod_child_status with its apxs" % kind, t)
            result[kind] = b
        note("total", sum(s for _, s in times))
    except BaseException:
        _build_failed.append(True)
        if not os.environ.get("HYB_KEEP_BUILD"):
            shutil.rmtree(top, ignore_errors=True)
        raise
    try:
        yield result
    finally:
        if os.environ.get("HYB_KEEP_BUILD"):
            say("kept %s" % top)
        else:
            shutil.rmtree(top, ignore_errors=True)


def start(httpd, b, mpm, conf=SERVER_CONF):
    """A server of build b; mpm None = the compiled-in one."""
    return httpd(mpm=mpm, binary=b.binary, stock_dir=b.modules,
                 our_dir=b.modules, modules=["child_status"],
                 conf=conf).start()


def child_status_auto(h):
    out = {}
    for line in h.get_text("/child-status?auto").splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = v.strip()
    return out


def serves(h):
    """Static files come back whole, both status pages answer."""
    assert h.get_text("/small.txt") == "0123456789abc\n"
    with h.get("/100k.bin") as r, \
            open(os.path.join(h.docroot, "100k.bin"), "rb") as f:
        assert r.read() == f.read()
    assert "hello from mpm test" in h.get_text("/")
    assert h.status_auto().get("ServerMPM") == "hybrid"


def graceful_under_load(h, restarts=3):
    """`restarts` graceful restarts while ab runs: every one brings new
    children, no request fails."""
    first = set(settle(h))
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        load = ex.submit(run_load, h.url("/small.txt"), requests=200000,
                         concurrency=16, timelimit=6, timeout=120)
        time.sleep(0.7)
        for i in range(restarts):
            before = set(h.children())
            h.graceful()
            h.wait_for(lambda: set(h.children()) - before, timeout=10,
                       what="new children after graceful %d" % (i + 1))
            time.sleep(0.6)
        assert not load.done(), "ab ended before the last graceful: invalid"
        done, failed, non2xx, out = load.result(150)
    assert failed == 0 and non2xx == 0, out
    assert done >= 1000, out
    h.wait_for(lambda: not (set(h.children()) & first), timeout=20,
               what="the first generation to exit")
    assert h.proc.poll() is None
    assert h.get_text("/small.txt") == "0123456789abc\n"


def no_warnings_from_our_files(b):
    with open(b.make_log) as f:
        found = [m.group(0) for m in OUR_WARNING.finditer(f.read())]
    assert not found, "\n".join(found)


# -- the compiled-in MPM ---------------------------------------------------

def test_compiled_in_hybrid_serves_and_restarts(builds, httpd):
    b = builds["static"]
    rc, v = b.cmd("-V")
    assert rc == 0, v
    assert re.search(r"^Server MPM:\s+hybrid$", v, re.M), v
    assert "threaded:     yes" in v, v
    # the Debian version the tree came from, e.g. 2.4.68-1~deb12u1
    upstream = builds["version"].split("-")[0].split(":")[-1]
    assert re.search(r"^Server version: Apache/%s " % re.escape(upstream),
                     v, re.M), v
    rc, l = b.cmd("-l")
    assert rc == 0, l
    compiled = l.split()
    assert "mod_mpm_hybrid.c" in compiled, l
    assert not os.path.exists(os.path.join(b.modules, "mod_mpm_hybrid.so"))
    no_warnings_from_our_files(b)

    h = start(httpd, b, mpm=None)
    serves(h)
    cs = child_status_auto(h)
    assert cs.get("ChildStatusMPM") == "hybrid", cs
    # --with-hybrid-accept=reuseport is the compiled-in default
    assert cs.get("ChildStatusAcceptStrategy") == "reuseport", cs
    graceful_under_load(h)
    # Compiled in, the MPM is not unloaded and reloaded at a restart as a
    # shared one is, so its static data lives on: a hard restart too.
    before = set(h.children())
    h.restart()
    h.wait_for(lambda: h.children() and not set(h.children()) & before,
               timeout=15, what="all children replaced after SIGHUP")
    serves(h)
    assert child_status_auto(h).get("ChildStatusAcceptStrategy") == \
        "reuseport"
    assert bad_log_lines(h) == []


def test_compiled_in_hybrid_refuses_a_second_mpm(builds, httpd):
    """Compiled in, it is the MPM: loading the shared event MPM of the other
    build too is "more than one MPM"."""
    b, other = builds["static"], builds["shared"]
    h = httpd(mpm=None, binary=b.binary, stock_dir=b.modules,
              our_dir=b.modules, modules=["child_status"],
              conf="LoadModule mpm_event_module %s/mod_mpm_event.so" %
              other.modules)
    r = h.configtest()
    assert r.returncode != 0, r.stdout + r.stderr
    assert "More than one MPM loaded" in r.stdout + r.stderr, (
        r.stdout + r.stderr)


# -- the shared MPMs -------------------------------------------------------

def test_shared_build_runs_hybrid(builds, httpd):
    b = builds["shared"]
    rc, l = b.cmd("-l")
    assert rc == 0, l
    assert not any(m.startswith("mod_mpm_") for m in l.split()), l
    for mpm in ("hybrid", "event"):
        assert os.path.exists(os.path.join(b.modules, "mod_mpm_%s.so" % mpm))
    no_warnings_from_our_files(b)

    h = start(httpd, b, mpm="hybrid")
    r = h.cmd("-V")
    assert re.search(r"^Server MPM:\s+hybrid$", r.stdout, re.M), r.stdout
    serves(h)
    cs = child_status_auto(h)
    # no --with-hybrid-accept: the default, exclusive
    assert cs.get("ChildStatusAcceptStrategy") == "exclusive", cs
    graceful_under_load(h, restarts=2)
    assert bad_log_lines(h) == []


def test_shared_build_runs_event(builds, httpd):
    b = builds["shared"]
    h = httpd(mpm="event", binary=b.binary, stock_dir=b.modules,
              our_dir=b.modules, modules=["child_status"], conf=CHILD_STATUS)
    r = h.cmd("-V")
    assert re.search(r"^Server MPM:\s+event$", r.stdout, re.M), r.stdout
    h.start()
    assert h.get_text("/small.txt") == "0123456789abc\n"
    assert h.status_auto().get("ServerMPM") == "event"
    done, failed, non2xx, out = run_load(h.url("/small.txt"), requests=2000,
                                         concurrency=10)
    assert (done, failed, non2xx) == (2000, 0, 0), out
    assert bad_log_lines(h) == []


# -- configure's checks ------------------------------------------------------

@pytest.mark.parametrize("option,message", [
    ("--with-hybrid-accept=fastest",
     "--with-hybrid-accept=fastest is not an accept strategy of the hybrid "
     "MPM: use one of mutex, preemptive, reuseport, exclusive"),
    ("--with-hybrid-max-server-limit=lots",
     "--with-hybrid-max-server-limit=lots is not a positive whole number"),
])
def test_configure_rejects_bad_hybrid_options(builds, tmp_path, option,
                                              message):
    b = builds["static"]
    args = [a for a in b.configure_args if not a.startswith("--prefix")]
    args = [a for a in args if not a.startswith("--with-hybrid-accept")]
    r = subprocess.run(args + ["--prefix=%s" % (tmp_path / "p"), option],
                       cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "error: " + message in out, out[-3000:]


# -- make httpd-tree: what it refuses ---------------------------------------

def listing(root):
    """Every path under root with its type and content hash (or where a
    symlink points, or "unreadable")."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs:
            out[os.path.relpath(os.path.join(d, n), root)] = "dir"
        for n in files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "-> " + os.readlink(p)
                continue
            try:
                with open(p, "rb") as f:
                    out[rel] = hashlib.sha1(f.read()).hexdigest()
            except OSError:
                out[rel] = "unreadable"
    return out


def httpd_tree(src):
    return subprocess.run(["make", "-C", REPO, "--no-print-directory",
                           "httpd-tree"] +
                          ([] if src is None else ["HTTPD_SRC=%s" % src]),
                          capture_output=True, text=True, timeout=60)


def fake_tree(root, major=2, minor=4):
    """The files make httpd-tree checks for, and nothing else."""
    files = {
        "include/ap_release.h":
            "#define AP_SERVER_MAJORVERSION_NUMBER %d\n"
            "#define AP_SERVER_MINORVERSION_NUMBER %d\n"
            "#define AP_SERVER_PATCHLEVEL_NUMBER 99\n" % (major, minor),
        "server/mpm/config2.m4": "dnl\n",
        "server/mpm/Makefile.in": "\n",
        "acinclude.m4": "AC_DEFUN([APACHE_MPM_MODULE],[])\n",
        "build/config-stubs": "#!/bin/sh\n",
        "build/special.mk": "\n",
        "buildconf": "#!/bin/sh\n",
    }
    for rel, text in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    return root


@pytest.mark.parametrize("src", [None, ""])
def test_httpd_tree_needs_httpd_src(src):
    r = httpd_tree(src)
    assert r.returncode != 0
    assert "HTTPD_SRC is not set" in r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("case,message", [
    ("missing", "does not exist"),
    ("empty", "is not an httpd source tree: no include/ap_release.h"),
    ("httpd-2.2", "is httpd 2.2.99; mpm_hybrid needs an httpd 2.4 source tree"),
    ("no-mpm-dir", "is not an httpd 2.4 source tree: server/mpm/config2.m4 "
                   "is missing"),
    ("other-project", "is not an httpd source tree: no include/ap_release.h"),
])
def test_httpd_tree_refuses_what_is_not_an_httpd_24_tree(tmp_path, case,
                                                          message):
    root = str(tmp_path / "tree")
    if case != "missing":
        os.makedirs(root)
    if case == "httpd-2.2":
        fake_tree(root, 2, 2)
    elif case == "no-mpm-dir":
        fake_tree(root)
        shutil.rmtree(os.path.join(root, "server", "mpm"))
    elif case == "other-project":
        for rel in ("README", "server/mpm/notes.txt", "src/main.c"):
            os.makedirs(os.path.dirname(os.path.join(root, rel)),
                        exist_ok=True)
            with open(os.path.join(root, rel), "w") as f:
                f.write("not httpd\n")
    before = listing(root) if os.path.exists(root) else None
    r = httpd_tree(root)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "httpd-tree: " in r.stderr and message in r.stderr, out
    after = listing(root) if os.path.exists(root) else None
    assert before == after, "make httpd-tree wrote into %s" % root


def test_httpd_tree_places_replaces_and_refuses_a_foreign_hybrid(tmp_path):
    root = fake_tree(str(tmp_path / "tree"))
    mpmdir = os.path.join(root, "server", "mpm")
    dest = os.path.join(mpmdir, "hybrid")
    units = mpm_units()
    objects = " ".join(os.path.basename(u)[:-2] + ".lo" for u in units)

    r = httpd_tree(root)
    assert r.returncode == 0, r.stdout + r.stderr
    placed = set(os.listdir(dest))
    sources = {n for n in os.listdir(os.path.join(REPO, "mpm_src"))
               if n.endswith((".c", ".h"))}
    assert placed == sources | {"config.m4", "config3.m4", "Makefile.in",
                                "PLACED_BY_MPM_HYBRID"}, placed
    for n in sources:  # copies, equal to the repository's files
        with open(os.path.join(dest, n), "rb") as a, \
                open(os.path.join(REPO, "mpm_src", n), "rb") as b:
            assert a.read() == b.read(), n
    with open(os.path.join(dest, "config3.m4")) as f:
        config3 = f.read()
    assert "APACHE_MPM_MODULE(hybrid, $enable_mpm_hybrid, %s, [" % objects \
        in config3, config3
    assert "@" not in config3.replace("$mpmpath", ""), config3

    # again: replaced whole, nothing left beside it
    with open(os.path.join(dest, "stale.c"), "w") as f:
        f.write("from an older run\n")
    r = httpd_tree(root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replaced" in r.stdout + r.stderr
    assert set(os.listdir(dest)) == placed
    assert sorted(os.listdir(mpmdir)) == ["Makefile.in", "config2.m4",
                                          "hybrid"]

    # a server/mpm/hybrid that is not ours is left alone
    shutil.rmtree(dest)
    os.makedirs(dest)
    with open(os.path.join(dest, "hybrid.c"), "w") as f:
        f.write("someone else's MPM\n")
    before = listing(root)
    r = httpd_tree(root)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "was not placed by mpm_hybrid" in r.stderr, r.stderr
    assert listing(root) == before

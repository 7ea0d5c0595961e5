"""make install / uninstall into a scratch root (DESTDIR), and the Debian
a2enmod files it installs: they load the right modules, apache2 -t accepts
a config that includes them, and the a2dismod/a2enmod switch works on a
copy of /etc/apache2.  Nothing outside the scratch root is touched."""
import filecmp
import os
import shutil
import subprocess

import pytest

from debian_state import machine_lock
from httpd_fixture import APACHE2, BUILD, REPO, build, free_port

MODS_AVAILABLE = "/etc/apache2/mods-available"
DEBIAN_LAYOUT = os.path.isdir(MODS_AVAILABLE)
needs_debian = pytest.mark.skipif(not DEBIAN_LAYOUT,
                                  reason="no /etc/apache2/mods-available")


def libexecdir():
    return subprocess.run(["apxs", "-q", "LIBEXECDIR"], capture_output=True,
                          text=True, check=True).stdout.strip()


def have_child_status():
    return os.path.exists(os.path.join(BUILD, "mod_child_status.so"))


def module_names():
    return ["mpm_hybrid"] + (["child_status"] if have_child_status() else [])


def make(*args, destdir, check=True):
    r = subprocess.run(["make", "-C", REPO, "--no-print-directory", *args,
                        "DESTDIR=%s" % destdir],
                       capture_output=True, text=True, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError("make %s failed:\n%s%s" % (
            " ".join(args), r.stdout, r.stderr))
    return r


def files_under(root):
    out = set()
    for d, _, files in os.walk(root):
        for f in files:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


def host_snapshot():
    """What the host has at the places install could wrongly write to."""
    paths = [os.path.join(libexecdir(), "mod_%s.so" % m)
             for m in ("mpm_hybrid", "child_status")]
    paths += [os.path.join(MODS_AVAILABLE, "%s.%s" % (m, ext))
              for m in ("mpm_hybrid", "child_status") for ext in ("load", "conf")]
    return {p: (os.stat(p).st_mtime_ns if os.path.exists(p) else None)
            for p in paths}


def load_line(path):
    with open(path) as f:
        lines = [ln.split() for ln in f if ln.startswith("LoadModule")]
    assert len(lines) == 1, "one LoadModule line expected in %s" % path
    return lines[0]


def point_at(root, load_file):
    """Rewrite the module path of an installed .load file into `root`."""
    lib = libexecdir()
    with open(load_file) as f:
        text = f.read()
    with open(load_file, "w") as f:
        f.write(text.replace(lib + "/", root + lib + "/"))


@pytest.fixture
def installed(tmp_path):
    """A scratch root with make install DESTDIR=<root> done in it."""
    build()
    root = str(tmp_path / "root")
    os.makedirs(root)
    before = host_snapshot()
    make("install", destdir=root)
    yield root
    assert host_snapshot() == before, "make install DESTDIR touched the host"


def test_install_puts_modules_in_libexecdir(installed):
    moddir = installed + libexecdir()
    for m in module_names():
        so = os.path.join(moddir, "mod_%s.so" % m)
        assert os.path.isfile(so), so
        assert filecmp.cmp(so, os.path.join(BUILD, "mod_%s.so" % m),
                           shallow=False)
        assert os.stat(so).st_mode & 0o777 == 0o644


@needs_debian
def test_install_writes_debian_files(installed):
    avail = installed + MODS_AVAILABLE
    expected = {os.path.relpath(os.path.join(libexecdir(), "mod_%s.so" % m), "/")
                for m in module_names()}
    for m in module_names():
        for ext in ("load", "conf"):
            path = os.path.join(avail, "%s.%s" % (m, ext))
            assert os.path.isfile(path), path
            assert os.stat(path).st_mode & 0o777 == 0o644
            expected.add(os.path.relpath(path, installed))
    # nothing else, in particular no leftover temporary files
    assert files_under(installed) == expected

    with open(os.path.join(avail, "mpm_hybrid.load")) as f:
        first = f.readline()
    assert first.startswith("# Conflicts:")
    assert set(first.split(":", 1)[1].split()) == {
        "mpm_event", "mpm_worker", "mpm_prefork"}
    # the .load files name the runtime path, without DESTDIR
    for m in module_names():
        words = load_line(os.path.join(avail, "%s.load" % m))
        assert words[1:] == ["%s_module" % m,
                             os.path.join(libexecdir(), "mod_%s.so" % m)]


def test_install_twice_then_uninstall(installed):
    make("install", destdir=installed)
    make("uninstall", destdir=installed)
    assert files_under(installed) == set()


@needs_debian
def test_uninstall_refuses_while_enabled(installed):
    enabled = installed + "/etc/apache2/mods-enabled"
    os.makedirs(enabled)
    os.symlink("../mods-available/mpm_hybrid.load",
               os.path.join(enabled, "mpm_hybrid.load"))
    r = make("uninstall", destdir=installed, check=False)
    assert r.returncode != 0
    assert "a2dismod mpm_hybrid" in r.stdout + r.stderr
    assert os.path.exists(installed + MODS_AVAILABLE + "/mpm_hybrid.load")


@needs_debian
def test_installed_files_pass_configtest(installed):
    avail = installed + MODS_AVAILABLE
    for m in module_names():
        point_at(installed, os.path.join(avail, "%s.load" % m))
    stock = libexecdir()
    includes = []
    for m in module_names():
        includes += ["Include %s/%s.load" % (avail, m),
                     "Include %s/%s.conf" % (avail, m)]
    run = os.path.join(installed, "run")
    os.makedirs(run)
    conf = os.path.join(installed, "httpd.conf")
    with open(conf, "w") as f:
        f.write("\n".join([
            "ServerRoot %s" % installed,
            "ServerName 127.0.0.1",
            "LoadModule authz_core_module %s/mod_authz_core.so" % stock,
            "LoadModule authz_host_module %s/mod_authz_host.so" % stock,
            *includes,
            "Listen 127.0.0.1:%d" % free_port(),
            "User www-data",
            "Group www-data",
            "PidFile %s/httpd.pid" % run,
            "DefaultRuntimeDir %s" % run,
            "ErrorLog %s/error.log" % run,
            "",
        ]))
    r = subprocess.run([APACHE2, "-t", "-f", conf], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Syntax OK" in r.stderr
    r = subprocess.run([APACHE2, "-M", "-f", conf], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    for m in module_names():
        assert "%s_module (shared)" % m in r.stdout


@needs_debian
def test_a2enmod_switch_on_copy_of_etc_apache2(tmp_path):
    """The operator's switch (a2dismod mpm_event; a2enmod mpm_hybrid;
    apache2ctl configtest) and the way back, on a copy of /etc/apache2."""
    build()
    root = str(tmp_path / "root")
    confdir = root + "/etc/apache2"
    # test_deb.py / test_debian_php.py change the real /etc/apache2 under
    # this lock: copy a consistent state
    with machine_lock():
        shutil.copytree("/etc/apache2", confdir, symlinks=True)
    before = host_snapshot()
    make("install", destdir=root)
    for m in module_names():
        point_at(root, "%s/mods-available/%s.load" % (confdir, m))
    run = os.path.join(root, "run")
    os.makedirs(run)
    # keep apache2ctl's run, lock and log directories in the scratch root
    with open(confdir + "/envvars", "a") as f:
        f.write("\nexport APACHE_PID_FILE=%s/apache2.pid\n" % run)
        for var in ("RUN", "LOCK", "LOG"):
            f.write("export APACHE_%s_DIR=%s\n" % (var, run))
    env = dict(os.environ, APACHE_CONFDIR=confdir,
               APACHE_STATE_DIRECTORY=os.path.join(root, "state"))

    def sh(*cmd):
        return subprocess.run(list(cmd), capture_output=True, text=True,
                              env=env, timeout=60)

    def enabled(m):
        return os.path.lexists("%s/mods-enabled/%s.load" % (confdir, m))

    def current_mpms():
        return sorted(m for m in ("mpm_event", "mpm_worker", "mpm_prefork",
                                  "mpm_hybrid") if enabled(m))

    old = current_mpms()
    assert len(old) == 1, old
    # the Conflicts line stops a second MPM from being enabled
    r = sh("a2enmod", "mpm_hybrid")
    assert r.returncode != 0 and not enabled("mpm_hybrid"), r.stdout + r.stderr

    for cmd in (["a2dismod", old[0]], ["a2enmod", "mpm_hybrid"]):
        r = sh(*cmd)
        assert r.returncode == 0, r.stdout + r.stderr
    assert current_mpms() == ["mpm_hybrid"]
    assert enabled("mpm_hybrid") and os.path.lexists(
        confdir + "/mods-enabled/mpm_hybrid.conf")
    r = sh("apache2ctl", "configtest")
    assert r.returncode == 0 and "Syntax OK" in r.stderr, r.stdout + r.stderr
    r = sh("apache2ctl", "-M")
    assert "mpm_hybrid_module (shared)" in r.stdout, r.stdout + r.stderr

    for cmd in (["a2dismod", "mpm_hybrid"], ["a2enmod", old[0]],
                ["apache2ctl", "configtest"]):
        r = sh(*cmd)
        assert r.returncode == 0, r.stdout + r.stderr
    assert current_mpms() == old
    assert host_snapshot() == before

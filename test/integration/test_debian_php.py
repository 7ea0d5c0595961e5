"""Issue 12, defect 7: Debian's PHP module on mpm_hybrid at ThreadsPerChild
1, end to end with the real packages, on this machine's real /etc/apache2.

The supported way (README "PHP on mpm_hybrid", mpm-hybrid-php(8)):
  dpkg -i libapache2-mpm-hybrid; a2dismod mpm_event; a2enmod mpm_hybrid
  mpm-hybrid-php protect                  # before PHP is installed
  apt-get install libapache2-mod-php8.2   # its postinst leaves the MPM alone
  ThreadsPerChild 1 in mods-available/mpm_hybrid.conf
  mpm-hybrid-php enable
and it must survive an upgrade of the PHP packages (the oldest version
Debian's archive offers, then the newest) and a reinstall.  After each
step: mpm_hybrid is the only MPM, the PHP module is enabled, and an
apache2 run from a copy of /etc/apache2 (on a free 127.0.0.1 port, its
run, lock and log directories in the copy) serves a PHP page through
apache2handler from single-threaded children.

Everything is then purged and the snapshot of /etc/apache2,
/var/lib/apache2, /etc/php and the package list must equal the one taken
before (debian_state.py).  The machine's apache2 service is never started
(policy-rc.d).  Needs root, the package archive, and no PHP or
libapache2-mpm-hybrid on the machine already."""
import concurrent.futures
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request

import pytest

import debian_state as ds
from httpd_fixture import APACHE2, REPO, alive, descendants, free_port

PHP_MOD = "libapache2-mod-php8.2"
PHP = "php8.2"
OURS = "libapache2-mpm-hybrid"
AVAIL = "/etc/apache2/mods-available"
ENABLED = "/etc/apache2/mods-enabled"
HYBRID_CONF = AVAIL + "/mpm_hybrid.conf"

pytestmark = [
    pytest.mark.skipif(not ds.is_root(), reason="needs root (apt-get)"),
    pytest.mark.skipif(not ds.have_debian_apache(),
                       reason="needs Debian's apache2 and dpkg"),
]


def versions(pkg):
    """Versions of pkg apt can install, oldest first."""
    r = ds.run("apt-cache", "madison", pkg, check=False)
    vs = sorted({l.split("|")[1].strip() for l in r.stdout.splitlines()
                 if "|" in l and "Packages" in l})
    out = []
    for v in vs:  # dpkg's order, not the string order
        i = 0
        while i < len(out) and subprocess.run(
                ["dpkg", "--compare-versions", out[i], "lt", v]).returncode == 0:
            i += 1
        out.insert(i, v)
    return out


def php_packages_at(version):
    """What `apt-get install libapache2-mod-php8.2` would install, each
    pinned to `version` when the archive has it there (the php8.2-*
    binaries of one source must match)."""
    r = ds.run("apt-get", "-s", "install", "--no-install-recommends",
               PHP_MOD, check=False)
    names = re.findall(r"^Inst (\S+)", r.stdout, re.M)
    if not names:  # all installed already: an upgrade of what is there
        names = [n for n in ds.packages() if n.split(":")[0].startswith(
            ("php8.2-", PHP_MOD))]
    assert PHP_MOD in [n.split(":")[0] for n in names] or ds.status(
        PHP_MOD) != "absent", r.stdout + r.stderr
    out = []
    for n in names:
        n = n.split(":")[0]
        out.append("%s=%s" % (n, version) if version in versions(n) else n)
    if not any(o.startswith(PHP_MOD) for o in out):
        out.append("%s=%s" % (PHP_MOD, version))
    return out


class CopyServer:
    """apache2 from a copy of /etc/apache2, as Debian's layout runs it
    (apache2.conf, envvars, mods-enabled, sites-enabled), moved to a
    private port, docroot and run/lock/log directories."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hybphp-")
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "apache2")
        shutil.copytree("/etc/apache2", self.conf, symlinks=True)
        self.run = os.path.join(self.dir, "run")
        self.docroot = os.path.join(self.dir, "www")
        for d in (self.run, self.docroot):
            os.makedirs(d)
            os.chmod(d, 0o777)
        self.port = free_port()
        with open(os.path.join(self.docroot, "index.php"), "w") as f:
            f.write('<?php echo "sapi=", php_sapi_name(), " version=", '
                    'PHP_VERSION, " pid=", getmypid(), "\\n"; ?>\n')
        with open(self.conf + "/envvars", "a") as f:
            f.write("\nexport APACHE_PID_FILE=%s/apache2.pid\n" % self.run)
            for var in ("RUN", "LOCK", "LOG"):
                f.write("export APACHE_%s_DIR=%s\n" % (var, self.run))
        with open(self.conf + "/ports.conf", "w") as f:
            f.write("Listen 127.0.0.1:%d\n" % self.port)
        site = self.conf + "/sites-available/000-default.conf"
        with open(site) as f:
            text = f.read()
        text = text.replace("<VirtualHost *:80>",
                            "<VirtualHost *:%d>" % self.port)
        text = re.sub(r"DocumentRoot \S+", "DocumentRoot %s\n\t<Directory %s>"
                      "\n\t\tRequire all granted\n\t</Directory>"
                      % (self.docroot, self.docroot), text)
        os.unlink(site)
        with open(site, "w") as f:
            f.write(text)
        self.proc = None

    def env(self):
        out = subprocess.run(["sh", "-c", ". %s/envvars && env" % self.conf],
                             capture_output=True, text=True, check=True)
        return dict(l.split("=", 1) for l in out.stdout.splitlines()
                    if "=" in l)

    def cmd(self, *args):
        return subprocess.run([APACHE2, "-d", self.conf, *args],
                              capture_output=True, text=True, timeout=60,
                              env=self.env())

    def log(self):
        try:
            with open(os.path.join(self.run, "error.log")) as f:
                return f.read()
        except OSError:
            return "(no error log)"

    def start(self):
        self.proc = subprocess.Popen([APACHE2, "-d", self.conf,
                                      "-DFOREGROUND"], env=self.env(),
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT,
                                     start_new_session=True)
        import socket
        import time
        deadline = time.time() + 20
        while time.time() < deadline:
            assert self.proc.poll() is None, "apache2 exited %s\n%s\n%s" % (
                self.proc.returncode, self.proc.stdout.read().decode(),
                self.log())
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("not listening\n" + self.log())

    def get(self, path="/index.php"):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (
                self.port, path), timeout=20) as r:
            return r.status, r.read().decode()

    def children(self):
        return descendants(self.proc.pid)

    def stop(self):
        if self.proc is None:
            return
        pids = set(descendants(self.proc.pid))
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait(5)
        for p in pids:
            if alive(p):
                os.kill(p, 9)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def check_php_on_hybrid(expect_version):
    """mpm_hybrid is the one MPM, PHP is enabled, and a server from a copy
    of the configuration serves PHP from single-threaded children."""
    assert ds.enabled_mpms() == ["hybrid"], ds.enabled_mpms()
    assert os.path.lexists("%s/%s.load" % (ENABLED, PHP))
    assert ds.run("a2query", "-M").stdout.strip() == "hybrid"
    ds.run("a2query", "-m", PHP)
    r = ds.run("apache2ctl", "configtest")
    assert "Syntax OK" in r.stderr
    s = CopyServer()
    try:
        v = s.cmd("-V").stdout
        assert re.search(r"Server MPM:\s+hybrid", v) and re.search(
            r"threaded:\s+no", v), v
        s.start()
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda _: s.get(), range(20)))
        for code, body in results:
            assert code == 200, (code, body)
            assert "sapi=apache2handler version=%s" % expect_version in body, \
                body
        for pid in s.children():
            n = len(os.listdir("/proc/%d/task" % pid))
            assert n == 1, "child %d has %d threads" % (pid, n)
        log = s.log()
        assert "Segmentation" not in log and "threaded MPM" not in log, log
    finally:
        s.cleanup()


def php_upstream(version):
    """8.2.36 from 8.2.36-1~deb12u1"""
    return version.split("-")[0]


def test_php_on_mpm_hybrid_survives_upgrade_and_reinstall(tmp_path):
    with ds.machine_lock():
        for p in (PHP_MOD, OURS):
            if ds.status(p) != "absent":
                pytest.skip("%s is on this machine already" % p)
        vs = versions(PHP_MOD)
        if not vs:
            pytest.skip("apt knows no %s (run apt-get update)" % PHP_MOD)
        deb = ds.build_deb(str(tmp_path), REPO)
        before = ds.snapshot()
        mpms = ds.enabled_mpms()
        assert len(mpms) == 1 and mpms != ["hybrid"], mpms
        try:
            with ds.no_service_starts():
                php_path(deb, vs, mpms[0])
        finally:
            ds.purge_new_packages(before)
            if ds.status(OURS) != "absent":
                ds.run("dpkg", "--purge", OURS, check=False)
            for line in ds.restore_links_and_markers(before):
                print("restore: " + line)
            ds.remove_new_archives(before)
            changes = ds.diff(before, ds.snapshot())
            # shown even when the test failed before this point
            print("machine state after the test, against before: %s" % (
                "\n".join(changes) or "identical"))
        assert not changes, "the machine was not put back:\n" + "\n".join(
            changes)


def php_path(deb, vs, old_mpm):
    tool = "/usr/sbin/mpm-hybrid-php"
    ds.run("dpkg", "-i", deb)
    ds.run("a2dismod", "mpm_%s" % old_mpm)
    ds.run("a2enmod", "mpm_hybrid")
    assert ds.enabled_mpms() == ["hybrid"]

    # before PHP is installed: keep its postinst from switching to prefork
    r = ds.run(tool, "protect")
    assert "disabled by the site administrator" in r.stdout, r.stdout
    assert ds.run("a2query", "-m", "mpm_prefork", check=False).returncode == 32
    assert ds.enabled_mpms() == ["hybrid"]

    oldest, newest = vs[0], vs[-1]
    r = ds.run(*ds.APT, "install", *php_packages_at(oldest))
    out = r.stdout + r.stderr
    assert ds.enabled_mpms() == ["hybrid"], "apt-get install switched the " \
        "MPM: %s\n%s" % (ds.enabled_mpms(), out)
    assert not os.path.lexists("%s/%s.load" % (ENABLED, PHP))
    assert "Could not switch to prefork" in out, out

    # ThreadsPerChild 25: enable refuses and changes nothing
    state = ds.files(["/etc/apache2", "/var/lib/apache2"])
    r = ds.run(tool, "enable", check=False)
    assert r.returncode != 0 and "ThreadsPerChild 1" in r.stderr, (
        r.stdout + r.stderr)
    assert ds.files(["/etc/apache2", "/var/lib/apache2"]) == state

    with open(HYBRID_CONF) as f:
        text = f.read()
    new = re.sub(r"^ThreadsPerChild\s+25\s*$", "ThreadsPerChild         1",
                 text, flags=re.M)
    assert new != text
    with open(HYBRID_CONF, "w") as f:
        f.write(new)
    r = ds.run(tool, "enable")
    assert "%s enabled on mpm_hybrid" % PHP in r.stdout, r.stdout
    check_php_on_hybrid(php_upstream(oldest))

    # an upgrade of the PHP packages (when the archive has two versions)
    if newest != oldest:
        r = ds.run(*ds.APT, "install", *php_packages_at(newest))
        assert ds.status(PHP_MOD) == "ii"
        check_php_on_hybrid(php_upstream(newest))
    # a reinstall, as apt-get install --reinstall or a same-version upgrade
    r = ds.run(*ds.APT, "install", "--reinstall", PHP_MOD)
    check_php_on_hybrid(php_upstream(newest))
    # the edited conffile survived it all
    with open(HYBRID_CONF) as f:
        assert f.read() == new

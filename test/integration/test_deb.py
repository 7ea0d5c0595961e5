"""make deb, then the package's whole life on this machine's real
/etc/apache2: install, upgrade over itself, switch the MPM to it and back
by removing it, purge.  The machine's apache2 service is never started or
restarted (a policy-rc.d denies it); the server that checks the installed
modules runs from a private config on a free 127.0.0.1 port.  At the end
/etc/apache2, /var/lib/apache2, the module directory and the dpkg package
list are exactly as before, which the test proves by comparing snapshots
(debian_state.py).

Needs root and Debian's apache2; skipped when libapache2-mpm-hybrid or
files of `make install` are already on the machine (the test could not
put them back)."""
import glob
import json
import os

import pytest

import debian_state as ds
from httpd_fixture import REPO, Httpd

PKG = "libapache2-mpm-hybrid"
AVAIL = "/etc/apache2/mods-available"
MODDIR = "/usr/lib/apache2/modules"
CONFFILES = ["%s/%s" % (AVAIL, f) for f in (
    "child_status.conf", "child_status.load", "mpm_hybrid.conf",
    "mpm_hybrid.load")]
MODULES = ["%s/mod_mpm_hybrid.so" % MODDIR, "%s/mod_child_status.so" % MODDIR]

pytestmark = [
    pytest.mark.skipif(not ds.is_root(), reason="needs root (dpkg -i)"),
    pytest.mark.skipif(not ds.have_debian_apache(),
                       reason="needs Debian's apache2 and dpkg"),
]


def status(pkg=PKG):
    return ds.status(pkg)


def conffiles():
    r = ds.run("dpkg-query", "-W", "-f", "${Conffiles}", PKG)
    return sorted(l.split()[0] for l in r.stdout.splitlines() if l.strip())


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    """make deb into a scratch directory: the build and lintian pass."""
    return ds.build_deb(str(tmp_path_factory.mktemp("deb")), REPO)


def test_deb_metadata(deb):
    info = ds.run("dpkg-deb", "-f", deb, "Package", "Depends").stdout
    assert "Package: %s" % PKG in info
    api = ds.run("apxs", "-q", "HTTPD_MMN", check=False).stdout.strip() or \
        open("/usr/share/apache2/build/config_vars.mk").read().split(
            "HTTPD_MMN = ")[1].split()[0]
    assert "apache2-api-%s" % api in info, info
    listing = ds.run("dpkg-deb", "-c", deb).stdout
    for p in MODULES + CONFFILES + ["/usr/sbin/mpm-hybrid-php"]:
        assert "." + p in listing, (p, listing)
    ctl = ds.run("dpkg-deb", "-I", deb, "conffiles").stdout.split()
    assert sorted(ctl) == CONFFILES


def scratch_server(h):
    """Rewrite h's config to load the installed modules the way Debian's
    apache2.conf does: Include of the installed .load/.conf files."""
    lines = ["ServerRoot %s" % h.dir, "ServerName 127.0.0.1"]
    lines += ["Include %s/%s.%s" % (AVAIL, m, ext)
              for m in ("mpm_hybrid", "child_status") for ext in ("load",
                                                                  "conf")]
    lines += ["LoadModule authz_core_module %s/mod_authz_core.so" % MODDIR,
              "LoadModule authz_host_module %s/mod_authz_host.so" % MODDIR,
              "LoadModule status_module %s/mod_status.so" % MODDIR,
              "User www-data", "Group www-data",
              "Listen 127.0.0.1:%d" % h.port,
              "PidFile %s" % h.pidfile, "DefaultRuntimeDir %s" % h.logs,
              "Mutex default:%s default" % h.logs,
              "ErrorLog %s" % h.error_log, "LogLevel info",
              "DocumentRoot %s" % h.docroot,
              "<Directory %s>\n  Require all granted\n</Directory>" % h.docroot,
              ""]
    with open(h.conf_path, "w") as f:
        f.write("\n".join(lines))


def check_installed_modules_serve():
    h = Httpd(mpm="event")  # the config is replaced below; no build needed
    try:
        scratch_server(h)
        r = h.configtest()
        assert r.returncode == 0 and "Syntax OK" in r.stderr, r.stderr
        h.start()
        assert h.get_text("/small.txt") == "0123456789abc\n"
        doc = json.loads(h.get_text("/child-status?json"))
        assert doc, doc
        v = h.cmd("-V").stdout
        assert "Server MPM:     hybrid" in v, v
    finally:
        log = h.log()
        h.cleanup()
    assert "Segmentation" not in log, log


def test_deb_install_upgrade_switch_remove_purge(deb):
    with ds.machine_lock():
        if status() != "absent":
            pytest.skip("%s is on this machine already (%s)" % (PKG, status()))
        present = [p for p in CONFFILES + MODULES if os.path.lexists(p)]
        if present:
            pytest.skip("files of make install are on this machine: %s"
                        % present)
        before = ds.snapshot()
        mpms = ds.enabled_mpms()
        assert len(mpms) == 1 and mpms != ["hybrid"], mpms
        try:
            with ds.no_service_starts():
                lifecycle(deb, before, mpms[0])
        finally:
            if status() != "absent":
                ds.run("dpkg", "--purge", PKG, check=False)
            for line in ds.restore_links_and_markers(before):
                print("restore: " + line)
            changes = ds.diff(before, ds.snapshot())
            # shown even when the test failed before this point
            print("machine state after the test, against before: %s" % (
                "\n".join(changes) or "identical"))
        assert not changes, "the machine was not put back:\n" + "\n".join(
            changes)


def lifecycle(deb, before, old_mpm):
    # install: files in place, conffiles registered, nothing enabled
    r = ds.run("dpkg", "-i", deb)
    assert status() == "ii", status()
    for p in MODULES + CONFFILES:
        assert os.path.isfile(p), p
    assert conffiles() == CONFFILES
    assert ds.enabled_mpms() == [old_mpm]
    enabled = sorted(os.listdir("/etc/apache2/mods-enabled"))
    assert not [e for e in enabled if "hybrid" in e or "child_status" in e]
    assert "installed, not enabled" in r.stdout + r.stderr, r.stdout + r.stderr
    check_installed_modules_serve()

    # a local edit of a conffile survives an upgrade over the same package
    conf = "%s/mpm_hybrid.conf" % AVAIL
    with open(conf, "a") as f:
        f.write("# local edit (test_deb)\n")
    edited = open(conf).read()
    ds.run("dpkg", "-i", deb)
    assert status() == "ii"
    assert open(conf).read() == edited
    assert not glob.glob(AVAIL + "/*.dpkg-*"), glob.glob(AVAIL + "/*")

    # switch this real /etc/apache2 to mpm_hybrid the way README says
    ds.run("a2dismod", "mpm_%s" % old_mpm)
    ds.run("a2enmod", "mpm_hybrid")
    assert ds.enabled_mpms() == ["hybrid"]
    r = ds.run("apache2ctl", "configtest")
    assert "Syntax OK" in r.stderr
    assert ds.run("a2query", "-M").stdout.strip() == "hybrid"
    # an upgrade while mpm_hybrid is enabled restarts the server (a stop
    # and a start); here the test's policy-rc.d denies it, which shows
    r = ds.run("dpkg", "-i", deb)
    assert "denied execution of restart" in r.stdout + r.stderr, (
        r.stdout + r.stderr)
    assert ds.enabled_mpms() == ["hybrid"]

    # remove: modules gone, conffiles kept, a stock MPM enabled in place
    r = ds.run("dpkg", "--remove", PKG)
    assert status() == "rc", status()
    for p in MODULES:
        assert not os.path.exists(p), p
    for p in CONFFILES:
        assert os.path.isfile(p), p
    assert open(conf).read() == edited
    assert ds.enabled_mpms() == ["event"], (ds.enabled_mpms(),
                                           r.stdout + r.stderr)
    assert "enabled mpm_event instead" in r.stdout + r.stderr
    r = ds.run("apache2ctl", "configtest")
    assert "Syntax OK" in r.stderr

    # purge: conffiles gone, dpkg forgets the package
    ds.run("dpkg", "--purge", PKG)
    assert status() == "absent", status()
    for p in CONFFILES:
        assert not os.path.lexists(p), p
    if old_mpm != "event":
        ds.run("a2dismod", "mpm_event")
        ds.run("a2enmod", "mpm_%s" % old_mpm)

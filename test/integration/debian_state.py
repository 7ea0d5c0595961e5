"""For the tests that change the machine itself (test_deb.py,
test_debian_php.py): install packages with dpkg/apt and edit the real
/etc/apache2.  They take a snapshot first, put everything back afterwards
and prove it: the snapshot taken after must equal the one taken before.

A snapshot is every file, directory and symlink under the watched roots
(type, mode, owner, SHA-256 of the content, symlink target; not times) and
the dpkg package list (name, version, status).  diff() lists what differs,
one line per path or package.
"""
import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess

# /etc/apache2: the configuration; /var/lib/apache2: a2enmod's record of
# who enabled or disabled what (a2query reads it); /etc/php: what the PHP
# packages add; the module directory; the apt archive cache (downloaded
# packages are deleted again).
ROOTS = ["/etc/apache2", "/var/lib/apache2", "/etc/php",
         "/usr/lib/apache2/modules", "/var/cache/apt/archives"]
# (the archive cache is compared by name and size only)
POLICY_RC_D = "/usr/sbin/policy-rc.d"
LOCK = "/run/lock/mpm-hybrid-machine-tests.lock"


def is_root():
    return os.geteuid() == 0


def have_debian_apache():
    return os.path.isdir("/etc/apache2/mods-available") and bool(
        shutil.which("dpkg"))


def packages():
    r = subprocess.run(["dpkg-query", "-W", "-f",
                        "${binary:Package}\t${Version}\t${db:Status-Abbrev}\n"],
                       capture_output=True, text=True, check=True)
    out = {}
    for line in r.stdout.splitlines():
        name, version, status = line.split("\t")
        # "un" = known to dpkg but not installed, with no files: as absent
        if status.strip() != "un":
            out[name] = (version, status.strip())
    return out


ARCHIVES = "/var/cache/apt/archives"


def _entry(path):
    st = os.lstat(path)
    kind = stat.S_IFMT(st.st_mode)
    e = {"mode": oct(stat.S_IMODE(st.st_mode)), "owner": (st.st_uid,
                                                          st.st_gid)}
    if kind == stat.S_IFLNK:
        e["type"], e["target"] = "symlink", os.readlink(path)
    elif kind == stat.S_IFDIR:
        e["type"] = "dir"
    elif kind == stat.S_IFREG and path.startswith(ARCHIVES + "/"):
        # downloaded packages: name and size are enough (1 GB or more)
        e["type"], e["size"] = "file", st.st_size
    elif kind == stat.S_IFREG:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        e["type"], e["sha256"] = "file", h.hexdigest()
    else:
        e["type"] = "other %o" % kind
    return e


def files(roots=ROOTS):
    out = {}
    for root in roots:
        if not os.path.lexists(root):
            continue
        out[root] = _entry(root)
        for d, dirs, names in os.walk(root):
            for n in dirs + names:
                p = os.path.join(d, n)
                out[p] = _entry(p)
    return out


def snapshot():
    return {"files": files(), "packages": packages()}


def diff(before, after):
    lines = []
    bf, af = before["files"], after["files"]
    for p in sorted(set(bf) | set(af)):
        if p not in af:
            lines.append("- %s %s" % (p, bf[p]))
        elif p not in bf:
            lines.append("+ %s %s" % (p, af[p]))
        elif bf[p] != af[p]:
            lines.append("~ %s %s -> %s" % (p, bf[p], af[p]))
    bp, ap = before["packages"], after["packages"]
    for n in sorted(set(bp) | set(ap)):
        if bp.get(n) != ap.get(n):
            lines.append("package %s: %s -> %s" % (n, bp.get(n), ap.get(n)))
    return lines


def listing(snap):
    """The snapshot as text, one line per path and package (for a report)."""
    out = ["%s %s" % (p, e) for p, e in sorted(snap["files"].items())]
    out += ["package %s %s %s" % (n, v, s)
            for n, (v, s) in sorted(snap["packages"].items())]
    return "\n".join(out) + "\n"


def restore_links_and_markers(before, roots=("/etc/apache2/mods-enabled",
                                             "/etc/apache2/conf-enabled",
                                             "/var/lib/apache2")):
    """Put symlinks, empty marker files and empty directories under roots
    back as they were (what a2enmod/a2dismod change), after a test that
    failed half-way.  Regular files with content are left to dpkg."""
    now = files(roots)
    old = {p: e for p, e in before["files"].items()
           if any(p == r or p.startswith(r + "/") for r in roots)}
    empty = hashlib.sha256(b"").hexdigest()
    done = []
    for p in sorted(set(now) - set(old), reverse=True):
        e = now[p]
        if e["type"] == "symlink" or (e["type"] == "file"
                                      and e["sha256"] == empty):
            os.unlink(p)
            done.append("removed " + p)
        elif e["type"] == "dir" and not os.listdir(p):
            os.rmdir(p)
            done.append("removed empty directory " + p)
    for p in sorted(set(old)):
        e = old[p]
        cur = now.get(p) if os.path.lexists(p) else None
        if cur == e:
            continue
        done.append("put back %s (%s)" % (p, e["type"]))
        if e["type"] == "dir" and not os.path.lexists(p):
            os.makedirs(p)
        elif e["type"] == "symlink":
            if os.path.lexists(p):
                os.unlink(p)
            os.symlink(e["target"], p)
        elif e["type"] == "file" and e["sha256"] == empty:
            if os.path.lexists(p):
                os.unlink(p)
            open(p, "w").close()
            os.chmod(p, int(e["mode"], 8))
    return done


def remove_new_archives(before):
    """Delete the packages apt downloaded into its cache during the test."""
    for p in list(files([ARCHIVES])):
        if p not in before["files"] and p.endswith(".deb"):
            os.unlink(p)


@contextlib.contextmanager
def machine_lock():
    """One machine-changing test at a time (they share /etc/apache2)."""
    with open(LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def no_service_starts():
    """Package scripts must not start or restart the machine's apache2: a
    policy-rc.d that denies every action for the duration.  One that is
    there already is moved aside and put back afterwards."""
    backup = POLICY_RC_D + ".mpm-hybrid-test"
    had = os.path.lexists(POLICY_RC_D)
    if had:
        os.rename(POLICY_RC_D, backup)
    try:
        with open(POLICY_RC_D, "w") as f:
            f.write("#!/bin/sh\n# temporary, from mpm_hybrid's tests\n"
                    "exit 101\n")
        os.chmod(POLICY_RC_D, 0o755)
        yield
    finally:
        os.unlink(POLICY_RC_D)
        if had:
            os.rename(backup, POLICY_RC_D)


def run(*cmd, check=True, timeout=600, env=None):
    """Run a command, return CompletedProcess; with check, fail with its
    output."""
    e = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if env:
        e.update(env)
    r = subprocess.run(list(cmd), capture_output=True, text=True,
                       timeout=timeout, env=e)
    if check and r.returncode != 0:
        raise AssertionError("%s: rc %d\n%s%s" % (" ".join(cmd), r.returncode,
                                                 r.stdout, r.stderr))
    return r


def enabled_mpms():
    d = "/etc/apache2/mods-enabled"
    return sorted(n[4:-5] for n in os.listdir(d)
                  if n.startswith("mpm_") and n.endswith(".load"))


def build_deb(out, repo):
    """make deb DEB_OUT=out; returns the path of libapache2-mpm-hybrid's
    .deb.  The build and lintian must pass."""
    import glob
    r = subprocess.run(["make", "-C", repo, "--no-print-directory", "deb",
                        "DEB_OUT=%s" % out], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lintian: no errors, no warnings" in r.stdout, r.stdout
    debs = glob.glob(os.path.join(out, "libapache2-mpm-hybrid_*.deb"))
    assert len(debs) == 1, os.listdir(out)
    return debs[0]


def status(pkg):
    """dpkg's two-letter status of pkg ("ii", "rc", ...) or "absent"."""
    r = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", pkg],
                       capture_output=True, text=True)
    s = r.stdout.strip() if r.returncode == 0 else ""
    return s if s and s != "un" else "absent"


APT = ["apt-get", "-y", "-o", "DPkg::Lock::Timeout=600",
       "--no-install-recommends"]


def purge_new_packages(before):
    """apt-get purge every package that was not on the machine before."""
    new = sorted(set(packages()) - set(before["packages"]))
    if new:
        run(*APT, "purge", *[n.split(":")[0] for n in new], check=False)
    return new

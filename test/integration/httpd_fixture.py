"""Drive a real, stock Debian apache2 from a test.

Every server gets its own directory (config, docroot, logs, pid, mutex
files), its own free 127.0.0.1 port and is started in the foreground, so
its parent pid is ours to signal.  stop() ends it and then kills, by pid,
anything it left behind.  The error log travels with a failing test.
"""
import json
import os
import re
import shutil
import signal as _signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# HYB_BUILD_DIR: take the modules from another build (make asan); that
# build is made by its own target, so build() does not run make for it.
BUILD = os.environ.get("HYB_BUILD_DIR") or os.path.join(REPO, "build")
# the test-only sleep module is built by `make test-modules` into the
# repository's build/ even when HYB_BUILD_DIR points elsewhere (make asan)
SLEEP_SO = os.path.join(REPO, "build", "mod_bench_sleep.so")
STOCK_MODULES = "/usr/lib/apache2/modules"
APACHE2 = "/usr/sbin/apache2"

# Modules every test server loads (all stock, all tiny).
BASE_MODULES = ["authz_core", "authz_host", "mime", "dir", "alias",
                "log_config_dummy"]

# child_status=True: our mod_child_status, its JSON at /child-status?json
CHILD_STATUS_LOCATION = ("<Location /child-status>\n  SetHandler child-status"
                         "\n  Require ip 127.0.0.1 ::1\n</Location>")

_built = False


def apache_env():
    """Environment for apache2: ours plus HYB_APACHE_ENV, whitespace-
    separated NAME=value pairs (make asan: LD_PRELOAD of libasan), or None
    (inherit) when that is unset."""
    extra = os.environ.get("HYB_APACHE_ENV", "").split()
    if not extra:
        return None
    env = dict(os.environ)
    env.update(kv.split("=", 1) for kv in extra if "=" in kv)
    return env


# The programs the tests run besides apache2 and make, and the Debian
# package of each.  scripts/deps.sh lists every one of these packages under
# `test`, so make test installs them; test_deps.py checks both facts.
TOOLS = {
    "ab": "apache2-utils",
    "curl": "curl",
    "h2load": "nghttp2-client",
    "promtool": "prometheus",
    "prometheus-apache-exporter": "prometheus-apache-exporter",
    "chromium": "chromium",
    "wrk": "wrk",
    "gnuplot": "gnuplot-nox",
    "git": "git",
    "openssl": "openssl",
    "prlimit": "util-linux",
    "perf": "linux-perf",
}


def require_tool(name):
    """Path of the program `name` (a key of TOOLS).  A missing one fails
    the test with the package to install: it never skips, so a machine
    without the tool cannot pass a test it did not run."""
    package = TOOLS[name]   # a tool not in TOOLS is an error, present or not
    path = shutil.which(name)
    if path is None:
        import pytest  # here: the benchmark imports this module without it
        pytest.fail("%s not found: install Debian package %s (make deps "
                    "PURPOSE=test)" % (name, package), pytrace=False)
    return path


def build():
    """Run `make` once per test session; fail loudly with its output."""
    global _built
    if os.environ.get("HYB_BUILD_DIR"):
        _built = True
    if not _built:
        r = subprocess.run(["make", "-C", REPO], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("make failed:\n" + r.stdout + r.stderr)
        _built = True


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def mpm_load_line(mpm, build_dir=BUILD, stock_dir=STOCK_MODULES):
    """mpm None: the MPM is compiled into the binary, nothing to load."""
    if mpm is None:
        return ""
    if mpm == "hybrid":
        return "LoadModule mpm_hybrid_module %s/mod_mpm_hybrid.so" % build_dir
    return "LoadModule mpm_%s_module %s/mod_mpm_%s.so" % (mpm, stock_dir, mpm)


def module_load_line(name, build_dir=BUILD, stock_dir=STOCK_MODULES):
    if name == "child_status":
        return "LoadModule child_status_module %s/mod_child_status.so" % (
            build_dir)
    if name == "log_config_dummy":  # mod_log_config is compiled in
        return ""
    return "LoadModule %s_module %s/mod_%s.so" % (name, stock_dir, name)


def snapshot_modules(dest, src=BUILD):
    """Copy src/*.so (build/*.so) into dest (write to a temporary name,
    then rename).

    A running apache2 maps its modules; `make` rewrites build/*.so in place,
    which kills such a process with SIGBUS/SIGSEGV (seen as "seg fault ...
    in the parent process").  A per-server copy is immune to rebuilds by
    anyone sharing the work tree."""
    os.makedirs(dest, exist_ok=True)
    for name in os.listdir(src):
        if name.endswith(".so"):
            tmp = os.path.join(dest, "." + name + ".tmp")
            shutil.copyfile(os.path.join(src, name), tmp)
            os.rename(tmp, os.path.join(dest, name))
    return dest


def descendants(pid):
    """All live processes whose parent chain leads to pid."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def wchan(pid, tid=None):
    """Where in the kernel the process (or its thread tid) sleeps
    (/proc/PID/wchan: ep_poll, inet_csk_accept, futex_do_wait, ...), ""
    once it is gone."""
    path = "/proc/%d/wchan" % pid if tid is None \
        else "/proc/%d/task/%s/wchan" % (pid, tid)
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        st = f.read().rsplit(")", 1)[1].split()
    return int(st[11]) + int(st[12])


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Httpd:
    """One apache2 instance.  Typical use:

        h = Httpd(mpm="hybrid", conf="ThreadsPerChild 4")
        h.start()
        assert h.get("/").status == 200
        h.stop()

    `conf` is appended to the generated config; `modules` adds stock
    LoadModule lines (or "child_status" for ours); `listen` replaces the
    default single Listen line (use "{port}" as placeholder).

    Another httpd than Debian's (test_build_httpd.py): `binary` is the
    executable, `stock_dir` the directory of its stock modules and MPMs,
    `our_dir` the directory to take mod_mpm_hybrid.so / mod_child_status.so
    from instead of the repository's build (no `make` then), and mpm=None
    means the MPM compiled into the binary (no LoadModule line for it).

    child_status=True loads mod_child_status with a /child-status location
    (kept by set_conf), for child_status_json() and child_groups().
    """

    def __init__(self, mpm="hybrid", conf="", modules=(), listen=None,
                 status=True, user="www-data", port=None, binary=APACHE2,
                 stock_dir=STOCK_MODULES, our_dir=None, child_status=False):
        self.child_status = child_status
        if child_status:
            modules = list(modules) + ["child_status"]
        # Only our own modules need `make`; a server on a stock MPM (used to
        # check a test's logic against worker/prefork) runs without a build.
        ours = mpm == "hybrid" or "child_status" in modules
        if ours and our_dir is None:
            build()
        self.mpm = mpm
        self.binary = binary
        self.stock_dir = stock_dir
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="hybtest-")
        os.chmod(self.dir, 0o755)
        self.docroot = os.path.join(self.dir, "htdocs")
        self.logs = os.path.join(self.dir, "logs")
        os.makedirs(self.docroot)
        os.makedirs(self.logs)
        os.chmod(self.logs, 0o777)
        self.error_log = os.path.join(self.logs, "error.log")
        self.access_log = os.path.join(self.logs, "access.log")
        self.pidfile = os.path.join(self.logs, "httpd.pid")
        self.conf_path = os.path.join(self.dir, "httpd.conf")
        self.proc = None
        self.pid = None
        self.seen_pids = set()
        # our modules are loaded from a private copy (see snapshot_modules)
        self.moddir = os.path.join(self.dir, "modules")
        if ours:
            snapshot_modules(self.moddir, our_dir or BUILD)
        self._write_docroot()
        mods = list(BASE_MODULES) + (["status"] if status else []) + list(modules)
        self.write_conf(conf, mods, listen, status, user)

    # -- setup ---------------------------------------------------------
    def _write_docroot(self):
        with open(os.path.join(self.docroot, "index.html"), "w") as f:
            f.write("<html><body>hello from mpm test</body></html>\n")
        with open(os.path.join(self.docroot, "small.txt"), "w") as f:
            f.write("0123456789abc\n")
        with open(os.path.join(self.docroot, "10k.bin"), "wb") as f:
            f.write(bytes(range(256)) * 40)
        with open(os.path.join(self.docroot, "100k.bin"), "wb") as f:
            f.write(os.urandom(100 * 1024))

    def write_conf(self, conf, mods, listen, status, user):
        seen, loads = set(), []
        for m in mods:
            if m not in seen:
                seen.add(m)
                line = module_load_line(m, self.moddir, self.stock_dir)
                if line:
                    loads.append(line)
        listen = listen or "Listen 127.0.0.1:{port}"
        text = "\n".join([
            "ServerRoot %s" % self.dir,
            "ServerName 127.0.0.1",
            mpm_load_line(self.mpm, self.moddir, self.stock_dir),
            *loads,
            "User %s" % user,
            "Group %s" % user,
            listen.replace("{port}", str(self.port)),
            "PidFile %s" % self.pidfile,
            "DefaultRuntimeDir %s" % self.logs,
            "Mutex default:%s default" % self.logs,
            "ErrorLog %s" % self.error_log,
            "LogLevel info",
            'LogFormat "%h %l %u %t \\"%r\\" %>s %b %P" pidfmt',
            "CustomLog %s pidfmt" % self.access_log,
            "TypesConfig /etc/mime.types",
            "DocumentRoot %s" % self.docroot,
            "DirectoryIndex index.html",
            "KeepAliveTimeout 5",
            "<Directory %s>\n  Require all granted\n</Directory>" % self.docroot,
            ("<Location /server-status>\n  SetHandler server-status\n"
             "  Require ip 127.0.0.1 ::1\n</Location>") if status else "",
            CHILD_STATUS_LOCATION if self.child_status else "",
            conf,
            "",
        ])
        with open(self.conf_path, "w") as f:
            f.write(text)

    def set_conf(self, conf, mods=(), listen=None, status=True, user="www-data"):
        """Rewrite the config (for a restart with new settings)."""
        all_mods = list(BASE_MODULES) + (["status"] if status else []) + \
            list(mods) + (["child_status"] if self.child_status else [])
        self.write_conf(conf, all_mods, listen, status, user)

    # -- lifecycle -----------------------------------------------------
    def cmd(self, *args, timeout=30):
        """Run apache2 with this config and extra args; returns CompletedProcess."""
        return subprocess.run([self.binary, "-f", self.conf_path, *args],
                               capture_output=True, text=True, timeout=timeout,
                               env=apache_env())

    def configtest(self):
        return self.cmd("-t")

    def start(self, extra=(), wait=True, timeout=15, prefix=()):
        """prefix: a program that execs apache2 (prlimit ...): the pid
        stays the server's."""
        self.proc = subprocess.Popen(
            [*prefix, self.binary, "-f", self.conf_path, "-DFOREGROUND",
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, env=apache_env())
        self.pid = self.proc.pid
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s\n%s\n%s" % (
                    self.binary, self.proc.returncode,
                    self.proc.stdout.read().decode(), self.log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5):
                    pass
                if os.path.exists(self.pidfile):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("apache2 not ready after %ss\n%s" % (timeout, self.log()))

    def signal(self, sig):
        os.kill(self.pid, sig)

    def graceful(self):
        self.signal(_signal.SIGUSR1)

    def restart(self):
        self.signal(_signal.SIGHUP)

    def children(self):
        """Pids of the parent's direct children (the MPM's processes)."""
        kids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        st = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(st[1]) == self.pid and st[0] != "Z":
                    kids.append(int(d))
        self.seen_pids.update(kids)
        return sorted(kids)

    def stop(self, sig=_signal.SIGTERM, timeout=20):
        """Stop the server and make sure every process it started is gone."""
        if self.proc is None:
            return None
        self.seen_pids.update(descendants(self.pid))
        rc = self.proc.poll()
        if rc is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                rc = None
        leftovers = [p for p in self.seen_pids | set(descendants(self.pid))
                     if alive(p)]
        for p in leftovers + ([self.pid] if rc is None else []):
            try:
                os.kill(p, _signal.SIGKILL)
            except ProcessLookupError:
                pass
        if rc is None:
            rc = self.proc.wait(5)
        self.proc = None
        self.leftovers = leftovers
        return rc

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- observation ---------------------------------------------------
    def log(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except OSError:
            return "(no error log)"

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def get(self, path="/", timeout=10, headers=None):
        req = urllib.request.Request(self.url(path), headers=headers or {})
        return urllib.request.urlopen(req, timeout=timeout)

    def get_text(self, path="/", timeout=10):
        with self.get(path, timeout) as r:
            return r.read().decode("utf-8", "replace")

    def status_auto(self):
        out = {}
        for line in self.get_text("/server-status?auto").splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                out[k.strip()] = v.strip()
        return out

    def child_status_json(self):
        """mod_child_status's document (a server made with
        child_status=True): "children" lists each slot's child with its
        "pid", "slot", "generation", "state" ("starting", "ready",
        "graceful", "dead"), "accept_strategy", "accept_group", ..."""
        return json.loads(self.get_text("/child-status?json"))

    def child_groups(self):
        """pid -> listener group (accept_group) of each child running now,
        as mod_child_status reports it (the scoreboard, not the log)."""
        return {c["pid"]: c["accept_group"]
                for c in self.child_status_json()["children"]
                if c["state"] != "dead"}

    def wait_for(self, predicate, timeout=10, interval=0.1, what="condition"):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError("timed out waiting for %s (last=%r)\n%s" % (
            what, last, self.log()[-4000:]))

    def log_matches(self, pattern):
        return re.findall(pattern, self.log())


def run_load(url, requests=2000, concurrency=20, keepalive=False, timeout=60,
             timelimit=None):
    """Run ab; return (completed, failed, non2xx, output).

    With timelimit (seconds) ab stops after that long, or after `requests`
    requests if that comes first."""
    args = [require_tool("ab"), "-q", "-n", str(requests), "-c",
            str(concurrency), "-s", "20", "-r"]
    if timelimit:
        args += ["-t", str(timelimit)]
        # ab's -t resets -n to 50000, so -n must come after it
        args += ["-n", str(requests)]
    if keepalive:
        args.append("-k")
    r = subprocess.run(args + [url], capture_output=True, text=True,
                       timeout=timeout)
    out = r.stdout + r.stderr

    def grab(key):
        m = re.search(r"^%s:\s+(\d+)" % key, out, re.M)
        return int(m.group(1)) if m else None
    completed = grab("Complete requests")
    failed = grab("Failed requests")
    non2xx = grab("Non-2xx responses") or 0
    if completed is None:
        raise AssertionError("ab produced no result:\n" + out)
    return completed, failed, non2xx, out


class Load(threading.Thread):
    """run_load (ab) in a background thread: start() it, do things to the
    server, then finish() for run_load's (completed, failed, non2xx,
    output), re-raising what run_load raised.  t_start and t_end are when
    ab was started and when it ended (time.monotonic()).

    Give `requests` or `timelimit` (seconds; ab then stops after that
    long, or after `requests` if that comes first).  `timeout` is how long
    ab may run at all before it is killed (run_load's timeout); finish()
    waits for it at most that long plus 10 s."""

    def __init__(self, url, requests=10 ** 7, concurrency=8, timelimit=None,
                 keepalive=False, timeout=120):
        super().__init__(daemon=True)
        self.url = url
        self.timeout = timeout
        self.kw = dict(requests=requests, concurrency=concurrency,
                       timelimit=timelimit, keepalive=keepalive,
                       timeout=timeout)
        self.result = self.error = None
        self.t_start = self.t_end = None

    def run(self):
        self.t_start = time.monotonic()
        try:
            self.result = run_load(self.url, **self.kw)
        except Exception as e:  # noqa: BLE001 - re-raised by finish()
            self.error = e
        self.t_end = time.monotonic()

    def finish(self):
        self.join(self.timeout + 10)
        assert not self.is_alive(), "ab did not finish"
        if self.error:
            raise self.error
        return self.result


# What must never appear in a server's error log after a test: the
# serious log levels, crashes, and sanitizer reports (make asan).
BAD_LOG = re.compile(r"\[[\w.-]*:(?:crit|alert|emerg)\]|Segmentation fault"
                     r"|Bus error|Aborted|double free|stack smashing"
                     r"|(?i:seg fault)|AddressSanitizer|runtime error:")


def served_by(h, marker):
    """pid -> number of access log lines whose request contains marker
    (the log format's last field is the serving child's pid, %P)."""
    counts = {}
    with open(h.access_log) as f:
        for line in f:
            if marker in line:
                pid = int(line.split()[-1])
                counts[pid] = counts.get(pid, 0) + 1
    return counts


def bad_log_lines(h):
    return [l for l in h.log().splitlines() if BAD_LOG.search(l)]


def settle(h, count=None, timeout=15):
    """Wait until the set of children (pids) has not changed for a second,
    and there are exactly `count` of them if that is given; return their
    sorted pids.  Fails at once if the parent exits."""
    history = []

    def ok():
        assert h.proc.poll() is None, "apache2 parent exited (rc %s)\n%s" % (
            h.proc.returncode, h.log()[-3000:])
        a = h.children()
        time.sleep(1.0)
        b = h.children()
        history.append(b)
        if a and a == b and (count is None or len(b) == count):
            return b
        return None
    what = "children to settle" if count is None else \
        "%d stable children" % count
    try:
        return h.wait_for(ok, timeout=timeout, what=what)
    except AssertionError as e:
        raise AssertionError("children kept changing: %r\n%s" % (
            history, e)) from None


# The fault suite's two sizes (test_faults.py, test/faults/README.md):
# make test-faults sets HYB_FAULTS_FULL=1 for the full numbers, make test
# runs the reduced ones.
FULL = os.environ.get("HYB_FAULTS_FULL") == "1"


def pick(full, reduced):
    """`full` in the full fault suite (HYB_FAULTS_FULL=1), else `reduced`:
    a repetition count, a duration, a list of parameters."""
    return full if FULL else reduced


def sleep_conf(so=SLEEP_SO):
    """Config lines that serve /sleep?ms=N from the sleep module
    (build it with the `sleep_module` fixture)."""
    return ("LoadModule bench_sleep_module %s\n"
            "<Location /sleep>\n  SetHandler bench-sleep\n</Location>" % so)


# The core tests can run against a stock MPM too, to check the tests
# themselves (HYBTEST_CORE_MPM=worker): cfg() then drops what that MPM
# does not know.
CORE_MPM = os.environ.get("HYBTEST_CORE_MPM", "hybrid")
HYBRID_ONLY = {"AcceptStrategy", "ReusePortGroups"}
THREAD_ONLY = {"ThreadsPerChild", "ThreadLimit"}


def cfg(*lines, mpm=CORE_MPM):
    """Join config lines, leaving out those `mpm` would refuse."""
    out = []
    for line in "\n".join(lines).splitlines():
        word = line.strip().split(" ")[0] if line.strip() else ""
        if mpm != "hybrid" and word in HYBRID_ONLY:
            continue
        if mpm == "prefork" and word in THREAD_ONLY:
            continue
        out.append(line)
    return "\n".join(out)


def fd_links(pid):
    """What each open descriptor of a process points at ("socket:[123]",
    "pipe:[45]", a path); descriptors that close meanwhile are skipped."""
    d = "/proc/%d/fd" % pid
    out = []
    for fd in os.listdir(d):
        try:
            out.append(os.readlink(os.path.join(d, fd)))
        except OSError:
            continue
    return out


def read_to_eof(sock, buf=None):
    """Everything the peer sends until it closes, as bytes.  Pass a
    bytearray as buf to keep what had arrived if recv() raises."""
    buf = bytearray() if buf is None else buf
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(buf)
        buf += chunk

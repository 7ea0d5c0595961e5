"""Contenders for the benchmark: how each server is configured and run.

Every Apache contender is the same stock /usr/sbin/apache2 with the same
modules, docroot and settings; only the MPM and its sizing directives
differ.  Servers run through test/integration/httpd_fixture.Httpd (own
directory, own port, foreground parent, stop by pid), with the config
replaced by the benchmark's own.  nginx runs from its own temporary
config and prefix, never as the system service.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "test", "integration"))

import httpd_fixture as fx  # noqa: E402

NGINX = "/usr/sbin/nginx"
SLEEP_SO = os.path.join(fx.BUILD, "mod_bench_sleep.so")
CHILD_STATUS_SO = os.path.join(fx.BUILD, "mod_child_status.so")
HYBRID_SO = os.path.join(fx.BUILD, "mod_mpm_hybrid.so")

# Where the Apache contenders load our modules from: a private copy made
# once per run (snapshot_modules), so every contender runs the same build
# and a rebuild of build/*.so during the run cannot crash a server.
MODDIR = fx.BUILD

SMALL = "/small.txt"         # 14 bytes
FILE_10K = "/10k.bin"        # 10240 bytes
SLEEP = "/sleep?ms=%d"
# The docroot again, with EnableMMAP Off: the core then reads the file
# instead of mapping and unmapping it per request, which in a threaded
# process takes the shared mmap lock and shoots down the other CPUs'
# TLBs; keep-alive there shows what the MPMs themselves cost.
NOMMAP = "/nommap"

STOCK = ("prefork", "worker", "event")
STRATEGIES = ("mutex", "preemptive", "reuseport", "exclusive")


def snapshot_modules(dest):
    """Copy build/*.so to dest and load them from there from now on."""
    global MODDIR
    os.makedirs(dest, exist_ok=True)
    os.chmod(dest, 0o755)
    for name in os.listdir(fx.BUILD):
        if name.endswith(".so"):
            shutil.copyfile(os.path.join(fx.BUILD, name),
                            os.path.join(dest, name))
    MODDIR = dest
    return dest


def make_docroot(path):
    """The one docroot every contender (and nginx) serves."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    with open(os.path.join(path, "small.txt"), "w") as f:
        f.write("0123456789abc\n")
    with open(os.path.join(path, "10k.bin"), "wb") as f:
        f.write(bytes(range(256)) * 40)
    with open(os.path.join(path, "index.html"), "w") as f:
        f.write("<html><body>benchmark</body></html>\n")
    return path


class Contender:
    """One server setup: an MPM (or nginx) with a thread layout.

    threads is ThreadsPerChild (1 for prefork); the worker budget
    (MaxRequestWorkers) is the same for every Apache contender."""

    def __init__(self, name, kind, mpm=None, threads=1, strategy=None):
        self.name = name
        self.kind = kind            # "apache" or "nginx"
        self.mpm = mpm              # prefork/worker/event/hybrid
        self.threads = threads
        self.strategy = strategy
        self.note = ""

    @property
    def stock(self):
        return self.kind == "apache" and self.mpm in STOCK

    def layout(self, budget):
        if self.kind == "nginx":
            return "2 workers (event loop)"
        return "%d x %d" % (budget // self.threads, self.threads)

    def __repr__(self):
        return "Contender(%s)" % self.name


def all_contenders(tpc):
    out = [Contender(m, "apache", m, 1 if m == "prefork" else tpc)
           for m in STOCK]
    for st in STRATEGIES:
        for t in (1, tpc):
            out.append(Contender("hybrid-%s-t%d" % (st, t), "apache",
                                 "hybrid", t, st))
    out.append(Contender("nginx", "nginx"))
    return out


def mpm_directives(c, budget, start=None, spare_min=None, children=None):
    """Sizing directives for contender c.

    children: the number of children (default budget / threads); start:
    StartServers (default all of them); spare_min: MinSpareThreads (or
    MinSpareServers for prefork; default one child's worth)."""
    t = c.threads
    n = children if children is not None else max(1, budget // t)
    workers = n * t
    start = n if start is None else start
    smin = t if spare_min is None else spare_min
    if c.mpm == "prefork":
        return "\n".join([
            "StartServers %d" % start,
            "ServerLimit %d" % n,
            "MaxRequestWorkers %d" % workers,
            "MinSpareServers %d" % max(1, smin),
            "MaxSpareServers %d" % max(workers, smin + 1),
            "MaxConnectionsPerChild 0",
        ])
    lines = [
        "StartServers %d" % start,
        "ServerLimit %d" % n,
        "ThreadLimit %d" % t,
        "ThreadsPerChild %d" % t,
        "MaxRequestWorkers %d" % workers,
        "MinSpareThreads %d" % smin,
        # never retire idle children during a run
        "MaxSpareThreads %d" % max(workers, smin + t),
        "MaxConnectionsPerChild 0",
    ]
    if c.mpm == "hybrid":
        lines.append("AcceptStrategy %s" % c.strategy)
    return "\n".join(lines)


class BenchHttpd(fx.Httpd):
    """fixture.Httpd with the benchmark's config: the shared docroot, no
    access log, sendfile on, the sleep handler and the status pages."""

    def __init__(self, mpm, mpm_conf, docroot, child_status):
        self._bench_docroot = docroot
        self._bench_mpm_conf = mpm_conf
        self._bench_child_status = child_status
        super().__init__(mpm=mpm, conf="", status=True)

    def _write_docroot(self):
        self.docroot = self._bench_docroot

    def write_conf(self, conf, mods, listen, status, user):
        loads = []
        for m in ["authz_core", "authz_host", "mime", "dir", "alias",
                  "status"]:
            loads.append(fx.module_load_line(m))
        if self._bench_child_status:
            loads.append("LoadModule child_status_module %s/"
                         "mod_child_status.so" % MODDIR)
        loads.append("LoadModule bench_sleep_module %s/mod_bench_sleep.so"
                     % MODDIR)
        cs = ""
        if self._bench_child_status:
            cs = ("<Location /child-status>\n  SetHandler child-status\n"
                  "  Require ip 127.0.0.1\n</Location>")
        text = "\n".join([
            "ServerRoot %s" % self.dir,
            "ServerName 127.0.0.1",
            ("LoadModule mpm_hybrid_module %s/mod_mpm_hybrid.so" % MODDIR
             if self.mpm == "hybrid" else fx.mpm_load_line(self.mpm)),
            *loads,
            "User %s" % user,
            "Group %s" % user,
            "Listen 127.0.0.1:%d" % self.port,
            "PidFile %s" % self.pidfile,
            "DefaultRuntimeDir %s" % self.logs,
            "Mutex default:%s default" % self.logs,
            "ErrorLog %s" % self.error_log,
            "LogLevel warn",
            "TypesConfig /etc/mime.types",
            "DocumentRoot %s" % self.docroot,
            "DirectoryIndex index.html",
            "KeepAlive On",
            "KeepAliveTimeout 5",
            "MaxKeepAliveRequests 100",
            "EnableSendfile On",
            "ExtendedStatus On",
            "<Directory %s>\n  Require all granted\n  AllowOverride None\n"
            "</Directory>" % self.docroot,
            "<Location /server-status>\n  SetHandler server-status\n"
            "  Require ip 127.0.0.1\n</Location>",
            cs,
            "<Location /sleep>\n  SetHandler bench-sleep\n</Location>",
            "Alias %s %s" % (NOMMAP, self.docroot),
            "<Location %s>\n  EnableMMAP Off\n</Location>" % NOMMAP,
            self._bench_mpm_conf,
            "",
        ])
        with open(self.conf_path, "w") as f:
            f.write(text)

    def workers_ready(self, threads):
        """(children, ready worker capacity): a child counts once it has
        at least `threads` threads (its workers are up)."""
        kids = self.children()
        ready = 0
        for pid in kids:
            try:
                with open("/proc/%d/status" % pid) as f:
                    for line in f:
                        if line.startswith("Threads:"):
                            if int(line.split()[1]) >= threads:
                                ready += threads
                            break
            except OSError:
                pass
        return len(kids), ready


class Nginx:
    """nginx from a private prefix: 2 worker processes, same files."""

    def __init__(self, docroot, workers=2):
        self.dir = tempfile.mkdtemp(prefix="hybbench-nginx-")
        os.chmod(self.dir, 0o755)
        self.port = fx.free_port()
        self.docroot = docroot
        self.error_log = os.path.join(self.dir, "error.log")
        self.conf_path = os.path.join(self.dir, "nginx.conf")
        self.pidfile = os.path.join(self.dir, "nginx.pid")
        self.proc = None
        self.pid = None
        self.leftovers = []
        tmp = os.path.join(self.dir, "tmp")
        os.makedirs(tmp)
        temps = "\n".join("  %s_temp_path %s/%s;" % (k, tmp, k) for k in
                          ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(self.conf_path, "w") as f:
            f.write("""user www-data;
worker_processes %d;
pid %s;
error_log %s warn;
events { worker_connections 4096; }
http {
  access_log off;
  types { text/plain txt; text/html html; }
  default_type application/octet-stream;
  sendfile on;
  keepalive_timeout 5;
  keepalive_requests 100;
%s
  server {
    listen 127.0.0.1:%d;
    root %s;
  }
}
""" % (workers, self.pidfile, self.error_log, temps, self.port, docroot))

    def configtest(self):
        return subprocess.run([NGINX, "-t", "-p", self.dir, "-c",
                               self.conf_path, "-e", self.error_log],
                              capture_output=True, text=True, timeout=30)

    def start(self, timeout=15):
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.dir, "-c", self.conf_path, "-e",
             self.error_log, "-g", "daemon off; master_process on;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.pid = self.proc.pid
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited with %s\n%s" % (
                    self.proc.returncode, self.log()))
            try:
                import socket
                with socket.create_connection(("127.0.0.1", self.port), 0.5):
                    pass
                if os.path.exists(self.pidfile):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("nginx not ready\n" + self.log())

    def stop(self, timeout=20):
        if self.proc is None:
            return
        seen = set(fx.descendants(self.pid))
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGQUIT)  # graceful: workers finish
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.leftovers = [p for p in seen | set(fx.descendants(self.pid))
                          if fx.alive(p)]
        for p in self.leftovers + ([self.pid] if self.proc.poll() is None
                                   else []):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(5)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def children(self):
        return fx.descendants(self.pid) if self.pid else []

    def log(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except OSError:
            return "(no error log)"

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)


def make_server(c, budget, docroot, child_status, **sizing):
    if c.kind == "nginx":
        return Nginx(docroot)
    return BenchHttpd(c.mpm, mpm_directives(c, budget, **sizing), docroot,
                      child_status)


def first_error_line(text):
    """The gist of a failed config test: apache2 puts "Syntax error on
    line N" first and the reason on the next line, so both are kept."""
    lines = [x.strip() for x in text.splitlines()
             if x.strip() and not x.strip().startswith("Syntax OK")]
    if not lines:
        return "(no output)"
    gist = lines[0]
    if "Syntax error" in gist and len(lines) > 1:
        gist = lines[1]
    return gist[:200]

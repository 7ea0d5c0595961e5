#!/usr/bin/python3
"""Counted cost per connection and per request: syscalls, futex calls,
context switches, CPU time, memory, for each contender on a fixed pool.

Timing on the shared 2-core machines is noise; counts are not.  For every
contender (the same servers as the benchmark, servers.py) this starts the
server with a fixed pool: every child started up front, ServerLimit =
StartServers, spares wide, so no child is spawned or retired while
counting.  It warms the server up, then serves a FIXED number of requests
with ab, twice per mode (keep-alive, connection per request):

1. untraced: /proc of every process of the server (the parent included)
   and every thread, before and after: context switches (voluntary,
   involuntary; summed over /proc/PID/task/TID/status, since
   /proc/PID/status counts the main thread only), CPU time (summed over
   /proc/PID/task/TID/schedstat, nanoseconds; and utime+stime from
   /proc/PID/stat, in ticks, as the issue measured), PSS afterwards.
2. traced: perf record of the raw_syscalls:sys_enter/sys_exit tracepoints
   on every thread of the server, enabled (perf --control) only while ab
   runs, then counted by process role, syscall name and result.  Never
   take req/s from this pass.

Which syscalls are the MPM's own (the rule is also in RESULTS.md):

- everything the parent process does;
- in a threaded child, everything its main thread does (it only
  supervises);
- in a worker thread (or a single-threaded child): the accept, wait,
  lock, thread-sync and process family by name (MPM_NAMES below), and
  read/write/close/fcntl/... on a descriptor that the process held open
  before the run began (pipes, listeners, epoll sets, lock files: the
  MPM's machinery; connection sockets and served files come and go), and
  poll() on more than one descriptor (listeners plus a wake pipe);
- the rest is httpd's core and the handler: reading the request, writing
  the response, the file's stat/open, lingering close (shutdown, the
  poll() on the one socket, close), memory.

The rule cannot see who does socket I/O: an MPM that does part of the
core's work itself (event's lingering close, mpm_hybrid's parked
connections) has those reads, polls and closes counted as the core's.
--callers shows the truth from call chains; the total per connection,
with the core the same code for every MPM, is the figure that cannot be
fooled.

Run: /usr/bin/python3 test/bench/count.py (as root; COUNT_* knobs below),
or `--render results.json` to rebuild the report.  make bench runs it
too, as its "count" workload (bench.py).
"""
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import servers as S  # noqa: E402

AB = "/usr/bin/ab"
PERF = "/usr/bin/perf"
UNISTD = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"

DEFAULT_CONTENDERS = ("prefork", "worker", "event", "hybrid-exclusive-t1",
                      "hybrid-exclusive-t25")
MODES = ("close", "keepalive")

# Syscalls that only the MPM makes on a child's request path: taking a
# connection, waiting for one, locks, thread hand-offs, signals, the
# parent check.  (clock_gettime/gettimeofday go through the vDSO and are
# not system calls at all.)
MPM_NAMES = {
    "accept", "accept4", "epoll_wait", "epoll_pwait", "epoll_pwait2",
    "epoll_ctl", "epoll_create", "epoll_create1", "select", "pselect6",
    "futex", "futex_waitv", "getppid", "getpid", "gettid", "sched_yield",
    "semop", "semtimedop", "semget", "semctl", "flock", "nanosleep",
    "clock_nanosleep", "rt_sigprocmask", "rt_sigtimedwait",
    "rt_sigsuspend", "rt_sigaction", "rt_sigreturn", "kill", "tgkill",
    "tkill", "wait4", "waitid", "pipe", "pipe2", "eventfd2", "timerfd_settime",
    "bpf", "prctl", "clone", "clone3", "exit", "exit_group", "set_robust_list",
}
# Syscalls whose first argument is a descriptor: the MPM's when the
# descriptor was open before the run (a pipe, listener, epoll set, lock).
FD_ARG0 = {
    "read", "write", "readv", "writev", "close", "fcntl", "ioctl", "fstat",
    "lseek", "pread64", "pwrite64", "recvfrom", "recvmsg", "sendto",
    "sendmsg", "shutdown", "setsockopt", "getsockopt", "getsockname",
    "getpeername", "sendfile", "fsync", "newfstatat", "statx",
}
FUTEX_OPS = {0: "wait", 1: "wake", 2: "fd", 3: "requeue", 4: "cmp_requeue",
             5: "wake_op", 6: "lock_pi", 7: "unlock_pi", 8: "trylock_pi",
             9: "wait_bitset", 10: "wake_bitset", 11: "wait_requeue_pi",
             12: "cmp_requeue_pi", 13: "lock_pi2"}


def env(name, default, conv=str):
    v = os.environ.get(name, "")
    return conv(v) if v != "" else default


def csv(v):
    return [x.strip() for x in v.split(",") if x.strip()]


class Config:
    """COUNT_* knobs; bench.py passes its own values in."""

    def __init__(self, quick=None):
        if quick is None:
            quick = env("BENCH_QUICK", "") not in ("", "0", "no")
        self.quick = quick
        self.requests = env("COUNT_REQUESTS", 1000 if quick else 5000, int)
        self.conc = env("COUNT_CONC", 10, int)
        self.t1_children = env("COUNT_T1_CHILDREN", 16, int)
        self.children = env("COUNT_CHILDREN", 2, int)
        self.tpc = env("COUNT_TPC", 25, int)
        self.modes = env("COUNT_MODES", list(MODES), csv)
        self.only = env("COUNT_CONTENDERS", list(DEFAULT_CONTENDERS), csv)
        self.tracer = env("COUNT_TRACER", "perf")
        self.idle = env("COUNT_IDLE", 0.0 if quick else 1.0, float)
        self.warm = env("COUNT_WARM", 200 if quick else 500, int)
        self.child_status = env("COUNT_CHILD_STATUS", "auto")
        self.out = env("COUNT_OUT", os.path.join(S.REPO, "build", "count"))

    def describe(self):
        return dict(vars(self))


def say(text):
    print(text, flush=True)


# -- syscall names ------------------------------------------------------------

_NAMES = None


def syscall_names():
    global _NAMES
    if _NAMES is None:
        _NAMES = {}
        try:
            with open(UNISTD) as f:
                for line in f:
                    m = re.match(r"#define __NR_(\w+)\s+(\d+)", line)
                    if m:
                        _NAMES[int(m.group(2))] = m.group(1)
        except OSError:
            pass
    return _NAMES


def sys_name(nr):
    return syscall_names().get(nr, "nr%d" % nr)


# -- contenders and servers ---------------------------------------------------

def contenders(names, tpc):
    """Contender objects for the given names (prefork, worker, event,
    hybrid-STRATEGY-t1, hybrid-STRATEGY-tN with N = tpc)."""
    known = {c.name: c for c in S.all_contenders(tpc)}
    out = []
    for n in names:
        if n in known and known[n].kind == "apache":
            out.append(known[n])
            continue
        m = re.match(r"hybrid-(\w+)-t(\d+)(?:-async-(on|off))?$", n)
        if not m or m.group(1) not in S.STRATEGIES:
            raise SystemExit("count: unknown contender %r" % n)
        c = S.Contender(n, "apache", "hybrid", int(m.group(2)), m.group(1))
        if m.group(3):
            # the MPM's connection parking (AsyncConnections), where the
            # build has it; the default is the MPM's
            c.extra_conf = "AsyncConnections %s" % m.group(3).capitalize()
        out.append(c)
    return out


def pool_of(c, cfg):
    """(children, threads per child) of the fixed pool for contender c."""
    if c.threads == 1:
        return cfg.t1_children, 1
    return cfg.children, c.threads


def start_fixed(c, cfg, docroot, child_status, timeout=20):
    """Start c with every child of its pool up and all threads running."""
    n, t = pool_of(c, cfg)
    conf = S.mpm_directives(c, n * t, children=n, start=n, spare_min=1)
    extra = getattr(c, "extra_conf", "")
    srv = S.BenchHttpd(c.mpm, conf + ("\n" + extra if extra else ""),
                       docroot, child_status)
    try:
        srv.start()
        deadline = time.time() + timeout
        while time.time() < deadline:
            kids, ready = srv.workers_ready(t)
            if kids == n and ready == n * t:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("pool not complete: %d children, %d ready "
                               "workers, wanted %d x %d" % (kids, ready, n, t))
    except Exception:
        srv.cleanup()
        raise
    return srv


# -- /proc --------------------------------------------------------------------

def _read(path):
    with open(path) as f:
        return f.read()


def server_pids(srv):
    return [srv.pid] + srv.children()


def tids_of(pid):
    try:
        return sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
    except OSError:
        return []


def snapshot(srv):
    """{pid: {"ticks", "tids": {tid: (run_ns, vol, invol)}}} for the parent
    and every child."""
    snap = {}
    for pid in server_pids(srv):
        try:
            st = _read("/proc/%d/stat" % pid).rsplit(")", 1)[1].split()
            ticks = int(st[11]) + int(st[12])
        except (OSError, IndexError, ValueError):
            continue
        tids = {}
        for tid in tids_of(pid):
            base = "/proc/%d/task/%d/" % (pid, tid)
            try:
                run_ns = int(_read(base + "schedstat").split()[0])
                vol = invol = 0
                for line in _read(base + "status").splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol = int(line.split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tids[tid] = (run_ns, vol, invol)
        snap[pid] = {"ticks": ticks, "tids": tids}
    return snap


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in _read("/proc/%d/smaps_rollup" % pid).splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


def diff(before, after, parent):
    """Sums of after - before by role (parent, children), and whether the
    set of processes and threads stayed the same."""
    out = {r: {"run_ns": 0, "vol": 0, "invol": 0, "ticks": 0}
           for r in ("parent", "children")}
    same = set(before) == set(after)
    for pid, a in after.items():
        b = before.get(pid)
        if b is None:
            continue
        role = "parent" if pid == parent else "children"
        out[role]["ticks"] += a["ticks"] - b["ticks"]
        if set(a["tids"]) != set(b["tids"]):
            same = False
        for tid, (run, vol, invol) in a["tids"].items():
            if tid in b["tids"]:
                r0, v0, i0 = b["tids"][tid]
                out[role]["run_ns"] += run - r0
                out[role]["vol"] += vol - v0
                out[role]["invol"] += invol - i0
    out["pool_unchanged"] = same
    return out


def static_fds(pids):
    """{pid: {fd: what}} of descriptors open now (the server idle): the
    MPM's pipes, listeners, epoll sets, lock files, logs."""
    out = {}
    for pid in pids:
        d = "/proc/%d/fd" % pid
        fds = {}
        try:
            for fd in os.listdir(d):
                try:
                    fds[int(fd)] = os.readlink(os.path.join(d, fd))
                except OSError:
                    pass
        except OSError:
            pass
        out[pid] = fds
    return out


# -- load ---------------------------------------------------------------------

def run_ab(url, n, conc, keepalive, timeout=120):
    args = [AB, "-q", "-n", str(n), "-c", str(conc), "-s", "20", "-r"]
    if keepalive:
        args.append("-k")
    r = subprocess.run(args + [url], capture_output=True, text=True,
                       timeout=timeout)
    out = r.stdout + r.stderr

    def grab(key):
        m = re.search(r"^%s:\s+(\d+)" % key, out, re.M)
        return int(m.group(1)) if m else None
    done = grab("Complete requests")
    if done is None:
        raise RuntimeError("ab produced no result:\n" + out[-2000:])
    return {"complete": done, "failed": grab("Failed requests") or 0,
            "non2xx": grab("Non-2xx responses") or 0,
            "keepalive": grab("Keep-Alive requests") or 0}


# -- tracing ------------------------------------------------------------------

class PerfTrace:
    """perf record of raw_syscalls on given processes (all their threads),
    started disabled and switched on and off through a control fifo."""

    def __init__(self, pids, workdir, nthreads,
                 events=("raw_syscalls:sys_enter", "raw_syscalls:sys_exit"),
                 extra=()):
        self.dir = workdir
        self.data = os.path.join(workdir, "perf.data")
        ctl = os.path.join(workdir, "ctl")
        ack = os.path.join(workdir, "ack")
        for p in (ctl, ack):
            if os.path.exists(p):
                os.unlink(p)
            os.mkfifo(p)
        # perf -p maps one ring buffer per CPU (not per thread): 64 MiB
        # each keeps up with a server at full speed on this machine
        pages = 16384
        evs = []
        for e in events:
            evs += ["-e", e]
        self.proc = subprocess.Popen(
            [PERF, "record", "-q", "-N", "-B", "-m", str(pages)] + evs
            + list(extra)
            + ["-p", ",".join(str(p) for p in pids), "-o", self.data,
               "-D", "-1", "--control", "fifo:%s,%s" % (ctl, ack)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # perf opens both fifos once it has attached to every thread; our
        # ends are opened without blocking, so a perf that fails is seen
        fd = os.open(ack, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
        self.ack = os.fdopen(fd)
        deadline = time.time() + 30
        while True:
            try:
                fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    out = self.proc.communicate()[0] if \
                        self.proc.poll() is not None else "(timeout)"
                    self.proc.kill()
                    raise RuntimeError("perf record did not start: %s"
                                       % (out or "")[-500:])
                time.sleep(0.02)
        os.set_blocking(fd, True)
        self.ctl = os.fdopen(fd, "w")

    def _cmd(self, word):
        self.ctl.write(word + "\n")
        self.ctl.flush()
        line = self.ack.readline()
        if line.strip("\x00 \n") != "ack":
            raise RuntimeError("perf did not acknowledge %s: %r" % (word,
                                                                    line))

    def enable(self):
        self._cmd("enable")

    def disable(self):
        self._cmd("disable")

    def finish(self):
        """Stop perf; returns notes: what perf complained of, and "lost N"
        if the ring buffers overflowed (perf says nothing of it unless
        asked: perf report --stats)."""
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        self.ctl.close()
        self.ack.close()
        notes = [l.strip() for l in (out or "").splitlines()
                 if "error" in l.lower()]
        r = subprocess.run([PERF, "report", "-i", self.data, "--stats"],
                           capture_output=True, text=True, timeout=60)
        lost = sum(int(m) for m in re.findall(
            r"LOST(?:_SAMPLES)? events:\s+(\d+)", r.stdout))
        if lost:
            notes.append("lost %d" % lost)
        return notes

    def events(self):
        p = subprocess.Popen([PERF, "script", "-i", self.data, "-F",
                              "pid,tid,event,trace"],
                             stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        rx = re.compile(r"^\s*(\d+)/(\d+)\s+raw_syscalls:sys_(enter|exit):"
                        r"\s+NR (-?\d+) (?:\((.*)\)|= (-?\d+))")
        for line in p.stdout:
            m = rx.match(line)
            if not m:
                continue
            pid, tid, kind, nr = (int(m.group(1)), int(m.group(2)),
                                  m.group(3), int(m.group(4)))
            if kind == "enter":
                args = [int(x, 16) for x in m.group(5).split(", ")]
                yield pid, tid, kind, nr, args
            else:
                yield pid, tid, kind, nr, int(m.group(6))
        p.wait()


def classify(name, args, role, main_thread, fds):
    """'mpm' or 'core' for one syscall (the rule in the module docstring)."""
    if role == "parent" or main_thread:
        return "mpm"
    if name in MPM_NAMES:
        return "mpm"
    if name in FD_ARG0 and args:
        what = fds.get(args[0] & 0xffffffff)
        if what is not None and "/logs/" not in what:
            return "mpm"
        return "core"
    if name in ("poll", "ppoll") and len(args) > 1 and args[1] > 1:
        return "mpm"
    return "core"


def count_events(events, parent, threaded, fds):
    """Counts from a trace: {role: {name: {"calls", "errors", "eagain",
    "class"}}}, futex by op, successful accepts, and per-thread totals."""
    roles = {"parent": {}, "children": {}}
    futex = {}
    accepts = 0
    pending = {}
    for pid, tid, kind, nr, val in events:
        role = "parent" if pid == parent else "children"
        name = sys_name(nr)
        if kind == "enter":
            cls = classify(name, val, role, threaded and tid == pid
                           and role == "children", fds.get(pid, {}))
            e = roles[role].setdefault(name, {"calls": 0, "errors": 0,
                                              "eagain": 0, "mpm": 0,
                                              "mpm_errors": 0})
            e["calls"] += 1
            if cls == "mpm":
                e["mpm"] += 1
            if name == "futex" and len(val) > 1:
                op = FUTEX_OPS.get(val[1] & 0x7f, str(val[1] & 0x7f))
                futex[op] = futex.get(op, 0) + 1
            pending[tid] = (role, name, cls)
        else:
            got = pending.pop(tid, None)
            if got is None:
                continue
            role, name, cls = got
            e = roles[role][name]
            if -4096 < val < 0:
                e["errors"] += 1
                if cls == "mpm":
                    e["mpm_errors"] += 1
                if val == -11:
                    e["eagain"] += 1
            elif name in ("accept", "accept4") and role == "children":
                accepts += 1
    return {"syscalls": roles, "futex_ops": futex, "accepts": accepts}


# -- one measurement ----------------------------------------------------------

def measure(c, modes, cfg, docroot, child_status, workdir):
    """Start contender c once, count each mode in turn, stop.  Returns a
    result dict per mode."""
    n, t = pool_of(c, cfg)
    out = []
    srv = start_fixed(c, cfg, docroot, child_status)
    try:
        url = srv.url(S.SMALL)
        for i, mode in enumerate(modes):
            res = {"contender": c.name, "mode": mode, "children": n,
                   "threads": t, "requests": cfg.requests, "conc": cfg.conc}
            out.append(res)
            measure_mode(srv, url, res, cfg, workdir, idle=i == 0)
    finally:
        srv.cleanup()
    return out


def measure_mode(srv, url, res, cfg, workdir, idle):
    ka = res["mode"] == "keepalive"
    threaded = res["threads"] > 1
    settle = 0.1 if cfg.quick else 0.2
    run_ab(url, cfg.warm, cfg.conc, ka)
    time.sleep(settle)
    pids = server_pids(srv)
    threads = sum(len(tids_of(p)) for p in pids)
    res["processes"] = len(pids)
    res["threads_total"] = threads

    # 1. untraced: /proc counters
    before = snapshot(srv)
    t0 = time.time()
    res["ab"] = run_ab(url, cfg.requests, cfg.conc, ka)
    res["elapsed_s"] = round(time.time() - t0, 3)
    time.sleep(settle)      # the last lingering closes
    after = snapshot(srv)
    res["proc"] = diff(before, after, srv.pid)
    res["pss_kib"] = pss_kib(server_pids(srv))
    if cfg.tracer != "perf":
        return

    # 2. traced: syscalls, after a look at the descriptors held at rest
    fds = static_fds(pids)
    if idle and cfg.idle > 0:
        tr = PerfTrace(pids, workdir, threads)
        try:
            tr.enable()
            time.sleep(cfg.idle)
            tr.disable()
        finally:
            notes = tr.finish()
        res["idle"] = count_events(tr.events(), srv.pid, threaded, fds)
        res["idle"]["seconds"] = cfg.idle
        res["idle"]["notes"] = notes
    tr = PerfTrace(pids, workdir, threads)
    try:
        tr.enable()
        res["traced_ab"] = run_ab(url, cfg.requests, cfg.conc, ka)
        time.sleep(settle)
        tr.disable()
    finally:
        notes = tr.finish()
    res["trace"] = count_events(tr.events(), srv.pid, threaded, fds)
    res["trace"]["notes"] = notes
    res["trace"]["static_fds"] = {str(p): len(v) for p, v in fds.items()}


# -- who makes each syscall: call chains -------------------------------------

# Libraries a syscall passes through on its way from its caller: the first
# frame outside them names the caller.
PASS_THROUGH = ("libc.so", "libpthread", "libapr-1", "libaprutil-1",
                "ld-linux", "[kernel", "[vdso", "[unknown]")
# The MPMs' helpers that live in the httpd binary (server/mpm_common.c,
# server/mpm_fdqueue.c, server/mpm_unix.c): their syscalls are the MPM's.
MPM_HELPERS = re.compile(r"^(ap_mpm_|ap_queue_|ap_pop_pool|ap_push_pool|"
                         r"ap_wait_or_timeout|ap_reclaim_child|"
                         r"ap_relieve_child|ap_process_child_status|"
                         r"ap_fatal_signal|ap_unixd_|ap_run_mpm)")


def chain_caller(frames):
    """(class, 'dso:function[inlined callee]') of the first frame outside
    the pass-through libraries; frames are (ip, symbol, dso) from the
    innermost out, perf's way: a function inlined at an address is a line
    of its own, with "inlined" for dso, before the real function."""
    groups, cur = [], []
    for ip, sym, dso in frames:
        cur.append((ip, sym, dso))
        if dso != "inlined":
            groups.append(cur)
            cur = []
    for g in groups:
        ip, sym, dso = g[-1]
        base = os.path.basename(dso)
        if any(base.startswith(p) or dso.startswith(p)
               for p in PASS_THROUGH):
            continue
        inner = [x[1] for x in g[:-1]
                 if not x[1].startswith("__") and x[1] != sym]
        who = "%s:%s%s" % (base, sym, "[%s]" % inner[0] if inner else "")
        if base.startswith("mod_mpm_"):
            return "mpm", who
        if base == "apache2" and MPM_HELPERS.match(sym):
            return "mpm", who
        return "core", who
    return "core", "?"


def attribute(c, mode, cfg, docroot, child_status, workdir, requests=300):
    """Every syscall of `requests` requests with its call chain (perf,
    DWARF unwinding): {name: {(rule class, chain class, caller): calls}}.
    Checks the name-and-descriptor rule against who really calls."""
    n, t = pool_of(c, cfg)
    srv = start_fixed(c, cfg, docroot, child_status)
    try:
        url = srv.url(S.SMALL)
        ka = mode == "keepalive"
        run_ab(url, cfg.warm, cfg.conc, ka)
        time.sleep(0.3)
        pids = server_pids(srv)
        fds = static_fds(pids)
        threads = sum(len(tids_of(p)) for p in pids)
        tr = PerfTrace(pids, workdir, threads,
                       events=("raw_syscalls:sys_enter",),
                       extra=("--call-graph", "dwarf,4096"))
        try:
            tr.enable()
            run_ab(url, requests, cfg.conc, ka)
            time.sleep(0.2)
            tr.disable()
        finally:
            notes = tr.finish()
        parent = srv.pid
    finally:
        srv.cleanup()
    out = {}
    p = subprocess.Popen([PERF, "script", "-i", tr.data, "-F",
                          "pid,tid,trace,ip,sym,dso"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    head = re.compile(r"^\s*(\d+)/(\d+)\s+NR (\d+) \((.*)\)")
    frame = re.compile(r"^\s+([0-9a-f]+) (.*) \((.*)\)$")
    cur = None

    def flush():
        if cur is None:
            return
        pid, tid, nr, args, frames = cur
        name = sys_name(nr)
        role = "parent" if pid == parent else "children"
        rule = classify(name, args, role, t > 1 and tid == pid
                        and role == "children", fds.get(pid, {}))
        if role == "parent":
            chain, who = "mpm", "parent"
        else:
            chain, who = chain_caller(frames)
        key = (rule, chain, who)
        d = out.setdefault(name, {})
        d[key] = d.get(key, 0) + 1
    for line in p.stdout:
        m = head.match(line)
        if m:
            flush()
            cur = (int(m.group(1)), int(m.group(2)), int(m.group(3)),
                   [int(x, 16) for x in m.group(4).split(", ")], [])
            continue
        m = frame.match(line)
        if m and cur is not None:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(2))
            cur[4].append((m.group(1), sym, m.group(3)))
    flush()
    p.wait()
    return {"contender": c.name, "mode": mode, "requests": requests,
            "notes": notes,
            "callers": {name: [[r, ch, who, k] for (r, ch, who), k in
                               sorted(d.items(), key=lambda kv: -kv[1])]
                        for name, d in out.items()}}


def attribution_markdown(a):
    req = float(a["requests"])
    L = ["### %s, %s: who makes each syscall (per request, %d requests, "
         "DWARF call chains)" % (a["contender"], MODE_TITLES[a["mode"]],
                                 a["requests"]), ""]
    rows, disagree = [], 0
    for name, lst in sorted(a["callers"].items(),
                            key=lambda kv: -sum(x[3] for x in kv[1])):
        for rule, chain, who, k in lst:
            if k / req < 0.002:
                continue
            flag = "" if rule == chain else "rule says %s" % rule
            disagree += k if rule != chain else 0
            rows.append([name, chain, who, fmt(k / req, 3), flag])
    L.append(table(["syscall", "class (call chain)", "first caller outside "
                    "libc/apr", "calls/req", "disagreement"], rows))
    L.append("")
    tot = sum(x[3] for lst in a["callers"].values() for x in lst)
    L.append("The name-and-descriptor rule and the call chains disagree on "
             "%d of %d calls.%s" % (disagree, tot, "".join(
                 " perf: " + n for n in a.get("notes", []))))
    return "\n".join(L) + "\n"



# -- where the CPU time goes: sampled profiles -------------------------------

def profile(c, mode, cfg, docroot, child_status, workdir, requests=20000,
            freq=4000):
    """cpu-clock samples (perf, DWARF call chains) of every thread of the
    server while ab serves `requests`, each sample put in the MPM's or the
    core's column by the same rule as the syscalls' call chains (the first
    frame outside libc/apr, kernel frames included in the sample's cost).
    Returns totals, the MPM's share and the top entries."""
    n, t = pool_of(c, cfg)
    srv = start_fixed(c, cfg, docroot, child_status)
    try:
        url = srv.url(S.SMALL)
        ka = mode == "keepalive"
        run_ab(url, cfg.warm, cfg.conc, ka)
        time.sleep(0.3)
        pids = server_pids(srv)
        threads = sum(len(tids_of(p)) for p in pids)
        tr = PerfTrace(pids, workdir, threads, events=("cpu-clock",),
                       extra=("-F", str(freq), "--call-graph", "dwarf,4096"))
        try:
            tr.enable()
            ab = run_ab(url, requests, cfg.conc, ka)
            tr.disable()
        finally:
            notes = tr.finish()
        parent = srv.pid
    finally:
        srv.cleanup()
    p = subprocess.Popen([PERF, "script", "-i", tr.data, "-F",
                          "pid,tid,ip,sym,dso"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    head = re.compile(r"^\s*(\d+)/(\d+)\s*$")
    frame = re.compile(r"^\s+([0-9a-f]+) (.*) \((.*)\)$")
    samples = []
    cur = None
    for line in p.stdout:
        m = head.match(line)
        if m:
            if cur:
                samples.append(cur)
            cur = (int(m.group(1)), int(m.group(2)), [])
            continue
        m = frame.match(line)
        if m and cur is not None:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(2))
            cur[2].append((m.group(1), sym, m.group(3)))
    if cur:
        samples.append(cur)
    p.wait()
    cls_n = {"mpm": 0, "core": 0}
    kernel = 0
    callers, leaves = {}, {}
    for pid, tid, frames in samples:
        if not frames:
            continue
        leaf = frames[0]
        in_kernel = leaf[2].startswith("[kernel")
        # (in a VM without a PMU, cpu-clock fires when interrupts are on
        # again: time with them off, as in a context switch, shows in
        # finish_task_switch and *_unlock_irqrestore of the task that was
        # switched in, so it is charged to the call that had blocked)
        kernel += in_kernel
        if pid == parent:
            cls, who = "mpm", "parent"
        elif t > 1 and tid == pid:
            cls, who = "mpm", "child main thread"
        else:
            cls, who = chain_caller(frames)
        cls_n[cls] += 1
        key = (cls, who, "kernel" if in_kernel else "user")
        callers[key] = callers.get(key, 0) + 1
        real = next((f[2] for f in frames if f[2] != "inlined"), "?")
        lk = "%s:%s" % (os.path.basename(real), leaf[1])
        leaves[lk] = leaves.get(lk, 0) + 1
    total = sum(cls_n.values())
    return {"contender": c.name, "mode": mode, "requests": requests,
            "freq": freq, "samples": total, "kernel": kernel,
            "mpm": cls_n["mpm"], "ab": ab, "notes": notes,
            "callers": sorted([[k[0], k[1], k[2], v]
                               for k, v in callers.items()],
                              key=lambda x: -x[3])[:40],
            "leaves": sorted(leaves.items(), key=lambda kv: -kv[1])[:25]}


def profile_markdown(pr, top=12):
    n = float(pr["samples"] or 1)
    us = 1e6 / pr["freq"] / pr["requests"]
    L = ["### %s, %s: CPU samples (%d requests, %d samples at %d Hz)"
         % (pr["contender"], MODE_TITLES[pr["mode"]], pr["requests"],
            pr["samples"], pr["freq"]), ""]
    L.append("- sampled CPU: %.1f µs/req, of which in the kernel %.0f %%; "
             "the MPM's (its code and the syscalls and library calls it "
             "makes): %.1f µs/req, %.1f %%" % (
                 pr["samples"] * us, 100 * pr["kernel"] / n,
                 pr["mpm"] * us, 100 * pr["mpm"] / n))
    L.append("")
    rows = [[cls, who, where, "%.1f %%" % (100 * k / n), fmt(k * us, 2)]
            for cls, who, where, k in pr["callers"] if cls == "mpm"][:top]
    if rows:
        L.append(table(["class", "first caller outside libc/apr",
                        "sample in", "share", "µs/req"], rows))
        L.append("")
    rows = [[cls, who, where, "%.1f %%" % (100 * k / n), fmt(k * us, 2)]
            for cls, who, where, k in pr["callers"] if cls == "core"][:6]
    if rows:
        L.append(table(["class", "first caller outside libc/apr (core, top "
                        "6)", "sample in", "share", "µs/req"], rows))
        L.append("")
    rows = [[who, "%.1f %%" % (100 * k / n), fmt(k * us, 2)]
            for who, k in pr["leaves"][:top]]
    L.append(table(["hottest functions (self)", "share", "µs/req"], rows))
    return "\n".join(L) + "\n"


# -- figures ------------------------------------------------------------------

def figures(res):
    """The headline numbers of one result: per request and per connection.
    Connections: successful accepts in the traced run, else requests (close)
    or requests / 100 (keep-alive, MaxKeepAliveRequests 100)."""
    req = res["requests"]
    f = {"requests": req}
    p = res.get("proc", {})
    ch, pa = p.get("children", {}), p.get("parent", {})
    f["ctx_req"] = (ch.get("vol", 0) + ch.get("invol", 0) + pa.get("vol", 0)
                    + pa.get("invol", 0)) / float(req)
    f["vol_req"] = (ch.get("vol", 0) + pa.get("vol", 0)) / float(req)
    f["cpu_us_req"] = (ch.get("run_ns", 0) + pa.get("run_ns", 0)) / 1e3 / req
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    f["ticks_us_req"] = (ch.get("ticks", 0) + pa.get("ticks", 0)) \
        * tick_us / req
    f["parent_cpu_us_req"] = pa.get("run_ns", 0) / 1e3 / req
    f["pool_unchanged"] = p.get("pool_unchanged")
    f["pss_mib"] = res.get("pss_kib", 0) / 1024.0
    tr = res.get("trace")
    if tr:
        conns = tr["accepts"] or (req if res["mode"] == "close"
                                  else max(1, req // 100))
        f["conns"] = conns
        tot = mpm = par = 0
        for role, names in tr["syscalls"].items():
            for name, e in names.items():
                tot += e["calls"]
                mpm += e["mpm"]
                if role == "parent":
                    par += e["calls"]
        fut = sum(e["calls"] for r in tr["syscalls"].values()
                  for n, e in r.items() if n == "futex")
        f["sys_req"] = tot / float(req)
        f["sys_conn"] = tot / float(conns)
        f["mpm_req"] = mpm / float(req)
        f["mpm_conn"] = mpm / float(conns)
        f["core_req"] = (tot - mpm) / float(req)
        f["parent_req"] = par / float(req)
        f["futex_req"] = fut / float(req)
        f["lost"] = any("lost" in n.lower() for n in tr.get("notes", []))
    return f


def index(results):
    """{(contender, mode): figures} of the results that have them."""
    out = {}
    for res in results or ():
        if "failed" not in res:
            out[(res["contender"], res["mode"])] = figures(res)
    return out


def targets(results):
    """The issue's counted targets, as lines of text: MPM syscalls per
    connection (connection per request) of hybrid-*-t1 against prefork's
    and of the threaded hybrids against worker's, and futex calls per
    request <= 0.1 for every hybrid contender, both modes."""
    ix = index(results)
    out = []
    for base, pick in (("prefork", lambda n: n.endswith("-t1")),
                       ("worker", lambda n: not n.endswith("-t1"))):
        ref = ix.get((base, "close"))
        if not ref or "mpm_conn" not in ref:
            continue
        for (n, mode), f in sorted(ix.items()):
            if mode != "close" or not n.startswith("hybrid-") or not pick(n) \
                    or "mpm_conn" not in f:
                continue
            out.append("%s MPM syscalls/conn ≤ %s's: %s (%.2f vs %.2f)" % (
                n, base, "met" if f["mpm_conn"] <= ref["mpm_conn"] + 0.005
                else "not met", f["mpm_conn"], ref["mpm_conn"]))
            # The rule counts socket I/O as the core's even when the MPM
            # does it (parked keep-alive, its own lingering close, pool
            # recycling); the core is the same code for every MPM, so the
            # total shows what the name rule cannot.
            out.append("%s all syscalls/conn ≤ %s's: %s (%.2f vs %.2f)" % (
                n, base, "met" if f["sys_conn"] <= ref["sys_conn"] + 0.005
                else "not met", f["sys_conn"], ref["sys_conn"]))
    for (n, mode), f in sorted(ix.items()):
        if n.startswith("hybrid-") and "futex_req" in f:
            out.append("%s futex/req ≤ 0.1 (%s): %s (%.3f)" % (
                n, mode, "met" if f["futex_req"] <= 0.1 else "not met",
                f["futex_req"]))
    return out


def by_name(res, per="conn"):
    """[(name, role, class, calls per unit, errors per unit)] sorted."""
    tr = res.get("trace")
    if not tr:
        return []
    f = figures(res)
    div = float(f["conns"] if per == "conn" else f["requests"])
    rows = []
    for role, names in tr["syscalls"].items():
        for name, e in names.items():
            me = e.get("mpm_errors", 0)
            for cls, n, err in (("mpm", e["mpm"], me),
                                ("core", e["calls"] - e["mpm"],
                                 e["errors"] - me)):
                if n:
                    rows.append((name, role, cls, n / div, err / div))
    rows.sort(key=lambda r: (r[2] != "mpm", r[1] != "children", -r[3]))
    return rows


def fmt(x, digits=2):
    if x is None:
        return "-"
    return ("%%.%df" % digits) % x


def table(head, rows):
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---" if i == 0 else "---:"
                          for i in range(len(head))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(out)


MODE_TITLES = {"close": "connection per request",
               "keepalive": "keep-alive (MaxKeepAliveRequests 100)"}


def summary_rows(results, mode):
    rows = []
    for res in results:
        if res.get("mode") != mode or "failed" in res:
            continue
        f = figures(res)
        layout = "%d x %d" % (res["children"], res["threads"])
        if mode == "close":
            sc = [fmt(f.get("sys_conn"), 1), fmt(f.get("mpm_conn"), 2)]
        else:
            sc = [fmt(f.get("sys_req"), 2), fmt(f.get("mpm_req"), 3)]
        rows.append([res["contender"], layout] + sc + [
            fmt(f.get("parent_req"), 3), fmt(f.get("futex_req"), 3),
            fmt(f["ctx_req"], 2), fmt(f["cpu_us_req"], 1),
            fmt(f["pss_mib"], 1),
            ("" if f["pool_unchanged"] else "pool changed")
            + (" LOST EVENTS" if f.get("lost") else "")
            + (" ab failed %d" % res["ab"]["failed"]
               if res.get("ab", {}).get("failed") else "")])
    return rows


def summary_head(mode):
    unit = "conn" if mode == "close" else "req"
    return ["contender", "pool", "syscalls/%s" % unit, "MPM syscalls/%s" % unit,
            "parent syscalls/req", "futex/req", "ctx switches/req",
            "CPU µs/req", "PSS MiB", "notes"]


def markdown(run, detail=True):
    cfg = run["config"]
    L = ["# Counted cost per connection and per request", ""]
    L.append("- date: %s; %s; repo %s" % (run["started"], run["machine"],
                                          run.get("git", "?")))
    L.append("- load: ab -n %d -c %d (keep-alive: -k), a %d-request warm-up "
             "first; fixed pools (single-threaded: %d children; threaded: "
             "%d x %d); tracer: %s" % (
                 cfg["requests"], cfg["conc"], cfg["warm"],
                 cfg["t1_children"], cfg["children"], cfg["tpc"],
                 cfg["tracer"]))
    L.append("- counted, not timed: syscalls from perf raw_syscalls "
             "tracepoints in a second, traced run; context switches and CPU "
             "time (schedstat: nanoseconds on the CPU) from /proc of every "
             "process and thread of the server, parent included, in the "
             "untraced run; PSS summed over the server's processes after it")
    L.append("")
    for mode in MODES:
        rows = summary_rows(run["results"], mode)
        if not rows:
            continue
        L.append("## %s" % MODE_TITLES[mode])
        L.append("")
        L.append(table(summary_head(mode), rows))
        L.append("")
    for res in run["results"]:
        if "failed" in res:
            L.append("- %s %s: FAILED: %s" % (res["contender"], res["mode"],
                                              res["failed"].splitlines()[0]))
    if detail:
        L.append("## Syscalls by name")
        L.append("")
        L.append("Per connection (connection per request) or per request "
                 "(keep-alive); role: the parent or the children; class: the "
                 "MPM's own or httpd's core and the handler (the rule: "
                 "test/bench/count.py); errors: calls that failed (mostly "
                 "EAGAIN).")
        L.append("")
        for mode in MODES:
            for res in run["results"]:
                if res.get("mode") != mode or "trace" not in res:
                    continue
                per = "conn" if mode == "close" else "req"
                rows = [[n, role, cls, fmt(x, 3), fmt(e, 3) if e else ""]
                        for n, role, cls, x, e in by_name(res, per)
                        if x >= 0.0005]
                L.append("### %s, %s (per %s)" % (res["contender"],
                                                   MODE_TITLES[mode], per))
                L.append("")
                L.append(table(["syscall", "role", "class", "calls", "errors"],
                               rows))
                fo = res["trace"].get("futex_ops")
                if fo:
                    L.append("")
                    L.append("futex by operation (total): " + ", ".join(
                        "%s %d" % kv for kv in sorted(fo.items())))
                idle = res.get("idle")
                if idle:
                    tot = sum(e["calls"] for r in idle["syscalls"].values()
                              for e in r.values())
                    L.append("")
                    L.append("idle, no load: %.0f syscalls/s (%s)" % (
                        tot / idle["seconds"], ", ".join(
                            "%s %s %.0f/s" % (role, n, e["calls"]
                                               / idle["seconds"])
                            for role, r in idle["syscalls"].items()
                            for n, e in sorted(r.items(),
                                               key=lambda kv: -kv[1]["calls"])
                            [:6])))
                L.append("")
    return "\n".join(L) + "\n"


# -- driver -------------------------------------------------------------------

def tracer_works():
    if not os.path.exists(PERF):
        return False, "perf is not installed (Debian: linux-perf)"
    r = subprocess.run([PERF, "stat", "-e", "raw_syscalls:sys_enter",
                        "true"], capture_output=True, text=True)
    if r.returncode != 0 or "not supported" in r.stderr:
        return False, "perf cannot count raw_syscalls here: " + \
            (r.stderr.strip().splitlines() or ["?"])[-1]
    return True, ""


def run_all(cfg, docroot, child_status, workdir, chosen=None, progress=say):
    """Measure every chosen contender in every mode; returns results."""
    if cfg.tracer == "perf":
        ok, why = tracer_works()
        if not ok:
            progress("count: no syscall counts: " + why)
            cfg.tracer = "none"
    chosen = chosen or contenders(cfg.only, cfg.tpc)
    results = []
    for c in chosen:
        n, t = pool_of(c, cfg)
        if n * t < cfg.conc and "keepalive" in cfg.modes:
            progress("count %-22s note: %d workers for %d keep-alive "
                     "clients: the rest wait for KeepAliveTimeout" % (
                         c.name, n * t, cfg.conc))
        try:
            got = measure(c, cfg.modes, cfg, docroot, child_status, workdir)
        except Exception as e:
            for mode in cfg.modes:
                results.append({"contender": c.name, "mode": mode,
                                "failed": str(e)[:500]})
                progress("count %-22s %-9s FAILED: %s" % (
                    c.name, mode, str(e).splitlines()[0]))
            continue
        for res in got:
            progress("count %-22s %-9s %s" % (c.name, res["mode"],
                                              brief(figures(res),
                                                    res["mode"])))
        results.extend(got)
    return results


def brief(f, mode):
    s = ""
    if "sys_conn" in f:
        s = ("%.1f syscalls/conn (MPM %.2f)" % (f["sys_conn"], f["mpm_conn"])
             if mode == "close" else
             "%.2f syscalls/req (MPM %.3f)" % (f["sys_req"], f["mpm_req"]))
        s += "  futex/req %.3f  " % f["futex_req"]
    return s + "ctx/req %.2f  CPU %.1f µs/req" % (f["ctx_req"],
                                                  f["cpu_us_req"])


def machine():
    cpu = "?"
    try:
        for line in _read("/proc/cpuinfo").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return "%s, %d cores, Linux %s" % (cpu, os.cpu_count() or 0,
                                       os.uname().release)


def main():
    cfg = Config()
    for tool in (AB, S.fx.APACHE2):
        if not os.path.exists(tool):
            sys.exit("count: %s is missing (make deps PURPOSE=bench)" % tool)
    if not os.path.exists(S.SLEEP_SO):
        r = subprocess.run(["make", "-C", S.REPO, "--no-print-directory",
                            "test-modules"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("count: cannot build the sleep module:\n" + r.stdout
                     + r.stderr)
    S.fx._built = True
    tmp = tempfile.mkdtemp(prefix="hybcount-")
    os.chmod(tmp, 0o755)
    try:
        S.snapshot_modules(os.path.join(tmp, "modules"))
        docroot = S.make_docroot(os.path.join(tmp, "docroot"))
        cs = cfg.child_status != "no" and os.path.exists(S.CHILD_STATUS_SO)
        work = os.path.join(tmp, "perf")
        os.makedirs(work)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        say("count: %s, %d requests per measurement, modes %s" % (
            ", ".join(cfg.only), cfg.requests, ",".join(cfg.modes)))
        results = run_all(cfg, docroot, cs, work)
        git = subprocess.run(["git", "-C", S.REPO, "describe", "--always",
                              "--dirty"], capture_output=True,
                             text=True).stdout.strip()
        if os.environ.get("HYB_BUILD_DIR"):
            git += " (modules from %s)" % S.fx.BUILD
        run = {"started": started, "machine": machine(), "git": git,
               "config": cfg.describe(), "child_status": cs,
               "results": results}
        os.makedirs(cfg.out, exist_ok=True)
        with open(os.path.join(cfg.out, "results.json"), "w") as f:
            json.dump(run, f, indent=1)
        md = markdown(run)
        with open(os.path.join(cfg.out, "report.md"), "w") as f:
            f.write(md)
        say("")
        say(md)
        say("written: %s" % os.path.join(cfg.out, "report.md"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main_callers(names, mode, requests, what="callers"):
    cfg = Config()
    S.fx._built = True
    tmp = tempfile.mkdtemp(prefix="hybcount-")
    os.chmod(tmp, 0o755)
    try:
        S.snapshot_modules(os.path.join(tmp, "modules"))
        docroot = S.make_docroot(os.path.join(tmp, "docroot"))
        cs = cfg.child_status != "no" and os.path.exists(S.CHILD_STATUS_SO)
        work = os.path.join(tmp, "perf")
        os.makedirs(work)
        for c in contenders(names, cfg.tpc):
            if what == "profile":
                pr = profile(c, mode, cfg, docroot, cs, work, requests)
                os.makedirs(cfg.out, exist_ok=True)
                with open(os.path.join(cfg.out, "profile-%s-%s.json"
                                       % (c.name, mode)), "w") as f:
                    json.dump(pr, f, indent=1)
                say(profile_markdown(pr))
            else:
                say(attribution_markdown(attribute(c, mode, cfg, docroot, cs,
                                                   work, requests)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] in ("--callers", "--profile"):
        main_callers(csv(sys.argv[2]), sys.argv[3],
                     int(sys.argv[4]) if len(sys.argv) > 4 else
                     (300 if sys.argv[1] == "--callers" else 20000),
                     sys.argv[1][2:])
    elif len(sys.argv) > 2 and sys.argv[1] == "--render":
        with open(sys.argv[2]) as f:
            doc = json.load(f)
        if "counts" in doc:        # make bench's results.json
            m = doc.get("machine", {})
            doc = {"started": doc.get("started"),
                   "machine": "%s, %s cores, Linux %s" % (
                       m.get("cpu"), m.get("cores"), m.get("kernel")),
                   "git": m.get("git"), "config": doc["config"]["count"],
                   "results": doc["counts"]}
        say(markdown(doc))
    elif len(sys.argv) > 1:
        sys.exit("usage: count.py [--render results.json | --callers "
                 "CONTENDERS MODE [REQUESTS] | --profile CONTENDERS MODE "
                 "[REQUESTS]]\n"
                 "(settings come from COUNT_* variables, see README.md)")
    else:
        main()

"""Reliability / fault suite: what operators and the kernel throw at a
running mpm_hybrid server.

Two sizes, chosen by the environment:

  make test         (HYB_FAULTS_FULL unset) the reduced suite: every
                    scenario runs, but with fewer repetitions, shorter loads
                    and fewer strategy/mechanism combinations, so that the
                    whole of `make test` stays within CI time.
  make test-faults  (HYB_FAULTS_FULL=1) the issue's numbers: 100 gracefuls
                    per strategy and mechanism, a minute of
                    MaxConnectionsPerChild 20 per strategy, 500 slowloris
                    clients, kill -9 storms on every strategy.

Every scenario appends one JSON line with its numbers (requests, failed,
recovery times) to $HYB_FAULTS_REPORT when that is set;
test/faults/summary.py turns the file into a table.

Scenarios: config-error table, kill -9 of the accept-mutex holder per
mechanism, SysV semaphore removed (ipcrm), parent SIGKILL, kill -9 of random
children, MaxConnectionsPerChild 20, gracefuls under load with fd/IPC leak
checks, slowloris with mod_reqtimeout, fork failure (cgroup pids.max) and
hostile queries/Host headers for mod_child_status.
"""
import json
import os
import random
import re
import selectors
import signal
import socket
import subprocess
import threading
import time

import pytest

from httpd_fixture import (  # noqa: E402
    APACHE2, FULL, Load, alive, apache_env, bad_log_lines, cpu_ticks,
    descendants, fd_links, pick, read_to_eof, run_load, settle, wchan)

STRATEGIES = ["mutex", "preemptive", "reuseport", "exclusive"]
MECHS = ["sysvsem", "posixsem", "fcntl", "flock", "pthread"]
# how long this suite waits for the children to settle (fixture's settle)
SETTLE_S = 20


def report(scenario, **numbers):
    """One line of numbers per scenario, for the closing summary."""
    numbers["scenario"] = scenario
    numbers["full"] = FULL
    line = json.dumps(numbers, sort_keys=True)
    print("FAULTS " + line)
    path = os.environ.get("HYB_FAULTS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def mutex_conf(mech, h=None):
    """A Mutex line for mpm-accept; file mechanisms get the server's dir
    (written after the fixture made it, so "{logs}" is filled in later)."""
    return "Mutex %s:{logs} mpm-accept" % mech if mech else ""


def make(httpd, *lines, modules=(), listen=None):
    """A server whose config may use {logs} for its own log directory."""
    h = httpd(conf="", modules=modules, listen=listen)
    h.set_conf("\n".join(l for l in lines if l).replace("{logs}", h.logs),
               mods=modules, listen=listen)
    return h


def strategy_lines(strategy, mech=None):
    out = ["AcceptStrategy %s" % strategy]
    if strategy == "mutex" and mech:
        out.append(mutex_conf(mech))
    if strategy == "reuseport":
        out.append("ReusePortGroups 2")
    return out


def all_combos():
    """Every strategy, and the mutex strategy with every mechanism."""
    return [("mutex", m) for m in MECHS] + \
        [(s, None) for s in STRATEGIES if s != "mutex"]


def combo_id(c):
    return c[0] + ("-" + c[1] if c[1] else "")


def http_get(port, path="/small.txt", timeout=5.0, host="127.0.0.1"):
    """One HTTP/1.0 GET on a fresh connection: (status, body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.settimeout(timeout)
        s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n"
                   % (path, host)).encode("latin-1"))
        data = read_to_eof(s)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


def fd_summary(pid):
    """Sorted kinds of the process's open descriptors (socket, pipe, path)."""
    return sorted(re.sub(r"\[\d+\]", "", t) for t in fd_links(pid))


# -- SysV IPC attribution ------------------------------------------------
# The machine is shared: other test runs create semaphores too.  A
# semaphore is ours if its last semop() came from one of our pids.

def sysv_sems():
    """{semid: (owner uid, otime)} from /proc/sysvipc/sem."""
    out = {}
    with open("/proc/sysvipc/sem") as f:
        next(f)
        for line in f:
            w = line.split()
            out[int(w[1])] = (int(w[4]), int(w[8]))
    return out


def sem_last_pids(semid):
    r = subprocess.run(["ipcs", "-s", "-i", str(semid)], capture_output=True,
                       text=True, timeout=10)
    pids = set()
    table = False
    for line in r.stdout.splitlines():
        w = line.split()
        if w[:1] == ["semnum"]:
            table = True
            continue
        if table and len(w) >= 5 and w[0].isdigit():
            pids.add(int(w[4]))
    return pids


def our_sems(pids):
    return sorted(i for i in sysv_sems() if sem_last_pids(i) & pids)


def shm_by_creator(pids):
    """SysV shared memory segments created by one of pids."""
    out = []
    with open("/proc/sysvipc/shm") as f:
        next(f)
        for line in f:
            w = line.split()
            if int(w[4]) in pids:      # cpid
                out.append(int(w[1]))
    return out


def access_log_pids(h):
    try:
        with open(h.access_log) as f:
            return {int(l.rsplit(" ", 1)[1]) for l in f if l.strip()}
    except (OSError, ValueError, IndexError):
        return set()


class PidWatch(threading.Thread):
    """Remembers every child pid seen, so IPC objects can be attributed."""

    def __init__(self, h):
        super().__init__(daemon=True)
        self.h, self.stop_ev = h, threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.h.children()
            except Exception:  # noqa: BLE001 - /proc races
                pass
            self.stop_ev.wait(0.05)

    def finish(self):
        self.stop_ev.set()
        self.join(5)
        return self.h.seen_pids | access_log_pids(self.h) | {self.h.pid}


def procs_with(text):
    """Live processes whose command line mentions text."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read().decode(errors="replace")
            except OSError:
                continue
            if text in cmd and alive(int(d)):
                out.append(int(d))
    return out


# ===========================================================================
# 1. Configuration errors
# ===========================================================================

BUSY = "busy-port"          # placeholder: Listen on a port someone holds
# (config lines, words the message must contain, detectable by -t)
BAD_CONFIGS = [
    (["ThreadsPerChild 0"], ["ThreadsPerChild", "0"], True),
    (["ThreadsPerChild -4"], ["ThreadsPerChild", "-4"], True),
    (["ThreadsPerChild abc"], ["ThreadsPerChild", "abc"], True),
    (["ThreadsPerChild 4 4"], ["ThreadsPerChild"], True),
    (["ThreadsPerChild 999999"], ["ThreadsPerChild", "999999"], True),
    (["ThreadLimit 0"], ["ThreadLimit", "0"], True),
    (["ServerLimit 0"], ["ServerLimit", "0"], True),
    (["ServerLimit 1x"], ["ServerLimit", "1x"], True),
    (["StartServers 0"], ["StartServers", "0"], True),
    (["StartServers"], ["StartServers"], True),
    (["MaxRequestWorkers 0"], ["MaxRequestWorkers", "0"], True),
    (["MaxRequestWorkers 99999999999999999999"], ["MaxRequestWorkers"], True),
    (["MinSpareThreads -1"], ["MinSpareThreads", "-1"], True),
    (["MaxSpareThreads 0"], ["MaxSpareThreads", "0"], True),
    (["ThreadsPerChild 1", "MinSpareServers -3"], ["MinSpareServers"], True),
    (["ThreadsPerChild 1", "MaxSpareServers two"], ["MaxSpareServers"], True),
    (["ThreadLimit 30000"], ["ThreadLimit", "30000"], True),
    (["AcceptStrategy bogus"], ["AcceptStrategy", "bogus"], True),
    (["AcceptStrategy mutex preemptive"], ["AcceptStrategy"], True),
    (["AcceptStrategy reuseport", "ReusePortGroups 0"],
     ["ReusePortGroups", "0"], True),
    (["AcceptStrategy reuseport", "ReusePortGroups many"],
     ["ReusePortGroups", "many"], True),
    (["<VirtualHost 127.0.0.1:*>", "StartServers 2", "</VirtualHost>"],
     ["StartServers"], True),
    (["<VirtualHost 127.0.0.1:*>", "ThreadsPerChild 2", "</VirtualHost>"],
     ["ThreadsPerChild"], True),
    (["Mutex bogus:{logs} mpm-accept"], ["bogus"], True),
    (["LoadModule mpm_worker_module /usr/lib/apache2/modules/mod_mpm_worker.so"],
     ["MPM"], True),
    (["Mutex fcntl:{logs}/no/such/dir mpm-accept", "AcceptStrategy mutex"],
     ["Mutex", "no/such/dir"], True),
    (["Mutex flock:{logs}/no/such/dir mpm-accept", "AcceptStrategy mutex"],
     ["Mutex", "no/such/dir"], True),
    ([BUSY], ["Address already in use"], False),
    (["Listen 192.0.2.1:{port}"], ["192.0.2.1"], False),
]


@pytest.mark.parametrize("lines,words,by_t", BAD_CONFIGS,
                         ids=["%02d" % i for i in range(len(BAD_CONFIGS))])
def test_faults_config_error(httpd, lines, words, by_t):
    """Exits non-zero, names the directive or the cause, never crashes,
    leaves no process and no IPC object behind."""
    blocker = None
    h = httpd(conf="")
    lines = list(lines)
    listen = None
    if BUSY in lines:
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        lines.remove(BUSY)
        listen = "Listen 127.0.0.1:%d" % blocker.getsockname()[1]
    text = "\n".join(lines).replace("{logs}", h.logs).replace(
        "{port}", str(h.port))
    h.set_conf(text, listen=listen)
    sems_before = set(sysv_sems())
    try:
        if by_t:
            r = h.cmd("-t")
            out = r.stdout + r.stderr
            assert r.returncode > 0, out
            for w in words:
                assert w in out, (w, out)
        p = subprocess.Popen([APACHE2, "-f", h.conf_path, "-DFOREGROUND"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True, env=apache_env())
        try:
            out, _ = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            pytest.fail("apache2 started instead of failing:\n%s%s"
                        % (out.decode(errors="replace"), h.log()))
        out = out.decode(errors="replace") + h.log()
        assert p.returncode > 0, "rc %s\n%s" % (p.returncode, out)
        for w in words:
            assert w in out, (w, out)
        assert not [l for l in out.splitlines()
                    if re.search("Segmentation|AddressSanitizer|runtime "
                                 "error:|Aborted", l)], out
        time.sleep(0.2)
        assert procs_with(h.conf_path) == []
        assert shm_by_creator({p.pid}) == []
        new = set(sysv_sems()) - sems_before
        if new:   # maybe another developer's server: ours never get a semop
            time.sleep(3)
            left = {i for i, (_, otime) in sysv_sems().items()
                    if i in new and otime == 0}
            assert not left, "semaphores left behind: %r" % left
    finally:
        if blocker:
            blocker.close()


# ===========================================================================
# 2. kill -9 of the child holding the accept mutex, for every mechanism
# ===========================================================================

def holder(h):
    """The child in poll() (the mutex holder) when exactly one is."""
    kids = h.children()
    polling = [c for c in kids if "poll" in wchan(c)]
    return polling[0] if len(polling) == 1 and len(kids) >= 2 else None


@pytest.mark.parametrize("mech", MECHS)
def test_faults_kill_mutex_holder(httpd, mech):
    h = make(httpd, "StartServers 3", "ServerLimit 8", "ThreadsPerChild 1",
             "MaxRequestWorkers 8", "MinSpareServers 2", "MaxSpareServers 6",
             "AcceptStrategy mutex", mutex_conf(mech))
    h.start()
    settle(h, count=3, timeout=SETTLE_S)
    rounds = pick(5, 3)
    recov = []
    for i in range(rounds):
        victim = h.wait_for(lambda: holder(h), timeout=10,
                            what="one child in poll (the holder)")
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        status, body = http_get(h.port, timeout=10)
        dt = time.monotonic() - t0
        assert status == 200, (status, body)
        recov.append(round(dt, 3))
        # a survivor (not only a freshly forked child) takes the lock again
        h.wait_for(lambda: not alive(victim), timeout=5, what="victim gone")
        time.sleep(0.5)
    done, failed, non2xx, out = run_load(h.url("/small.txt"), 300, 4)
    report("kill-mutex-holder", mech=mech, kills=rounds,
           recovery_s=recov, max_recovery_s=max(recov), requests=done,
           failed=failed)
    assert max(recov) < 1.0, recov
    assert (done, failed, non2xx) == (300, 0, 0), out
    if mech == "posixsem":
        assert len(h.log_matches("HYB00033")) >= 1, h.log()[-3000:]
    assert h.log_matches("HYB00032") == [], "mutex reported broken"
    assert bad_log_lines(h) == []


# ===========================================================================
# 3. the SysV semaphore removed under the running server
# ===========================================================================

@pytest.mark.parametrize("tpc", [1, 4])
def test_faults_ipcrm_sysvsem(httpd, tpc):
    h = make(httpd, "StartServers 3", "ServerLimit 8",
             "ThreadsPerChild %d" % tpc, "ThreadLimit %d" % tpc,
             "MaxRequestWorkers %d" % (8 * tpc), "AcceptStrategy mutex",
             mutex_conf("sysvsem"))
    h.start()
    kids = set(settle(h, timeout=SETTLE_S))
    run_load(h.url("/small.txt"), 200, 4)
    sems = h.wait_for(lambda: our_sems(kids | set(h.children()) | {h.pid}
                                       | access_log_pids(h)),
                      timeout=5, what="our semaphore")
    assert len(sems) == 1, sems
    load = Load(h.url("/small.txt"), concurrency=4, timelimit=6,
                timeout=6 + 120)
    load.start()
    time.sleep(1.5)
    t0 = time.monotonic()
    subprocess.run(["ipcrm", "-s", str(sems[0])], check=True, timeout=10)
    status, _ = http_get(h.port, timeout=10)
    first_ok = time.monotonic() - t0
    done, failed, non2xx, out = load.finish()
    assert h.proc.poll() is None, "the server exited:\n" + h.log()[-3000:]
    assert status == 200
    after = run_load(h.url("/small.txt"), 500, 4)
    logged = h.log_matches(r"HYB00032[^\n]*")
    # a graceful restart makes a new, working semaphore
    before = set(h.children())
    h.cmd("-k", "graceful")
    h.wait_for(lambda: set(h.children()) - before, timeout=10,
               what="new generation")
    time.sleep(1)
    run_load(h.url("/small.txt"), 200, 4)
    new_kids = set(h.children())
    new_sems = our_sems(new_kids)
    report("ipcrm-sysvsem", threads_per_child=tpc, requests=done + after[0],
           failed=failed + after[1], first_response_after_ipcrm_s=round(
               first_ok, 3), broken_logged=len(logged))
    assert len(logged) == 1, h.log()[-3000:]
    assert "Apache is exiting" not in h.log()
    assert failed == 0 and non2xx == 0, out
    assert after[1:3] == (0, 0), after[3]
    assert len(new_sems) == 1 and new_sems != sems, (sems, new_sems)
    assert bad_log_lines(h) == []


# ===========================================================================
# 4. the parent killed with SIGKILL
# ===========================================================================

PARENT_KILL = pick(all_combos(), [("mutex", "sysvsem"),
                                  ("mutex", "fcntl"),
                                  ("preemptive", None),
                                  ("reuseport", None),
                                  ("exclusive", None)])


def start_and_kill_parent(httpd, strategy, mech, tpc, keepalive):
    h = make(httpd, "StartServers 3", "ServerLimit 8",
             "ThreadsPerChild %d" % tpc, "ThreadLimit %d" % tpc,
             "MaxRequestWorkers %d" % (8 * tpc),
             *strategy_lines(strategy, mech))
    h.start()
    kids = settle(h, timeout=SETTLE_S)
    run_load(h.url("/small.txt"), 200, 4)
    ka = None
    if keepalive:   # an idle keep-alive connection when the parent dies
        ka = socket.create_connection(("127.0.0.1", h.port), 5)
        ka.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        ka.recv(4096)
    every = set(kids) | set(descendants(h.pid))
    t0 = time.monotonic()
    h.signal(signal.SIGKILL)
    h.proc.wait(5)
    return h, every, t0, ka


def remove_orphaned_sems(before, pids):
    """A parent killed with SIGKILL cannot remove its accept mutex's SysV
    semaphore: remove the ones made since `before` that our processes
    used (or nobody did), so that the test leaves nothing behind."""
    for i in set(sysv_sems()) - before:
        last = sem_last_pids(i)
        if last & pids or last <= {0}:
            subprocess.run(["ipcrm", "-s", str(i)], timeout=10,
                           capture_output=True)


def wait_all_gone(pids, t0, limit=12):
    while time.monotonic() < t0 + limit and any(alive(p) for p in pids):
        time.sleep(0.02)
    return time.monotonic() - t0, [p for p in pids if alive(p)]


@pytest.mark.parametrize("tpc", [1, 4])
@pytest.mark.parametrize("combo", PARENT_KILL, ids=combo_id)
def test_faults_parent_sigkill(httpd, combo, tpc):
    """Idle children notice the parent's death and exit at once; nothing
    answers on the port afterwards."""
    before = set(sysv_sems())
    h, every, t0, _ = start_and_kill_parent(httpd, *combo, tpc, False)
    gone, left = wait_all_gone(every, t0)
    remove_orphaned_sems(before, every | {h.pid})
    refused = False
    try:
        http_get(h.port, timeout=2)
    except OSError:
        refused = True
    report("parent-sigkill", strategy=combo_id(combo), threads_per_child=tpc,
           children=len(every), all_exited_s=round(gone, 2), left=len(left))
    assert not left, "children still alive %.1fs after the parent" % gone
    assert gone < 3, gone
    assert refused, "something still serves on the port"


@pytest.mark.parametrize("tpc", [1, 4])
def test_faults_parent_sigkill_idle_keepalive(httpd, tpc):
    """With an idle keep-alive connection open when the parent dies: the
    orphan must not serve another request on it and must exit within a
    few seconds, not after KeepAliveTimeout."""
    before = set(sysv_sems())
    h, every, t0, ka = start_and_kill_parent(httpd, "mutex", None, tpc, True)
    try:
        time.sleep(1)
        ka.settimeout(8)
        answer = b""
        try:
            ka.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = ka.recv(4096)
        except OSError:
            pass
        gone, left = wait_all_gone(every, t0)
    finally:
        ka.close()
        remove_orphaned_sems(before, every | {h.pid})
    report("parent-sigkill-idle-keepalive", threads_per_child=tpc,
           orphan_answered=answer.startswith(b"HTTP/1.1 200"),
           all_exited_s=round(gone, 2), left=len(left))
    assert not answer.startswith(b"HTTP/"), answer[:200]
    assert not left and gone < 3, gone


# ===========================================================================
# 5. kill -9 of random children every 100 ms under load
# ===========================================================================

RANDOM_KILL = pick(all_combos(), [("mutex", "sysvsem"), ("exclusive", None),
                                  ("reuseport", None)])


@pytest.mark.parametrize("combo", RANDOM_KILL, ids=combo_id)
def test_faults_kill_random_children(httpd, combo):
    strategy, mech = combo
    tpc, start = 4, 3
    h = make(httpd, "StartServers %d" % start, "ServerLimit 16",
             "ThreadsPerChild %d" % tpc, "ThreadLimit %d" % tpc,
             "MaxRequestWorkers 64", "MinSpareThreads 12",
             "MaxSpareThreads 16", *strategy_lines(strategy, mech))
    h.start()
    settle(h, count=start, timeout=SETTLE_S)
    seconds = pick(15, 5)
    load = Load(h.url("/small.txt"), concurrency=8, timelimit=seconds + 2,
                timeout=seconds + 2 + 120)
    load.start()
    time.sleep(1)
    kills = 0
    rnd = random.Random(4242)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        kids = h.children()
        if kids:
            try:
                os.kill(rnd.choice(kids), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    t0 = time.monotonic()
    done, failed, non2xx, out = load.finish()
    # back to its configured size: 12 to 16 idle threads, i.e. 3 or 4
    # children, stable, all of them serving
    # (the parent retires one surplus child per second, so a 1 s stable
    # window alone can fall between two retirements: wait for the size)
    h.wait_for(lambda: len(h.children()) in (3, 4), timeout=30,
               what="3 or 4 children again")
    kids = settle(h, timeout=30)
    recovered = time.monotonic() - t0
    assert len(kids) in (3, 4), kids
    status, _ = http_get(h.port)
    report("kill-random-children", strategy=combo_id(combo), kills=kills,
           requests=done, failed=failed, non2xx=non2xx,
           back_to_size_s=round(recovered, 2))
    assert status == 200
    assert h.proc.poll() is None
    assert non2xx == 0, out
    # only requests in flight on a killed child may fail
    assert failed <= kills * tpc, out
    assert done > 200, out


# ===========================================================================
# 6. MaxConnectionsPerChild 20 under load
# ===========================================================================

MCPC = pick(all_combos(), [("mutex", "sysvsem"), ("reuseport", None)])


@pytest.mark.parametrize("combo", MCPC, ids=combo_id)
def test_faults_max_connections_per_child_20(httpd, combo):
    strategy, mech = combo
    h = make(httpd, "StartServers 3", "ServerLimit 16", "ThreadsPerChild 4",
             "ThreadLimit 4", "MaxRequestWorkers 32", "MinSpareThreads 4",
             "MaxSpareThreads 16", "MaxConnectionsPerChild 20",
             "LogLevel mpm_hybrid:debug", *strategy_lines(strategy, mech))
    h.start()
    settle(h, timeout=SETTLE_S)
    seconds = pick(60, 10)
    done, failed, non2xx, out = run_load(
        h.url("/small.txt"), 10 ** 7, 8, timelimit=seconds,
        timeout=seconds + 120)
    per_child = {}
    with open(h.access_log) as f:
        for line in f:
            pid = line.rsplit(" ", 1)[1].strip()
            per_child[pid] = per_child.get(pid, 0) + 1
    # A minute of recycling uses more pids (each thread takes one) than
    # pid_max allows, so a pid can belong to several children: divide by
    # how often the parent says it started a child with that pid.
    starts = {}
    for m in re.finditer(r"started: pid (\d+),", h.log()):
        starts[m.group(1)] = starts.get(m.group(1), 0) + 1
    most = max(-(-n // max(1, starts.get(pid, 1)))
               for pid, n in per_child.items())
    report("max-connections-per-child-20", strategy=combo_id(combo),
           seconds=seconds, requests=done, failed=failed, non2xx=non2xx,
           children_used=len(per_child), most_conns_one_child=most)
    assert failed == 0 and non2xx == 0, out
    assert h.proc.poll() is None
    assert bad_log_lines(h) == []
    # ab without -k: one request per connection.  A threaded child may take
    # a few connections already being accepted when its budget runs out.
    # With reuseport a group's queue must always have a taker, so a child
    # that is the only one of its group keeps accepting until the parent
    # has started its replacement (README, "reuseport in detail"), for at
    # most a quarter of the limit more.
    slack = 20 + 4 if strategy != "reuseport" else 20 + 20 // 4 + 4
    assert most <= slack, "a child served %d connections with " \
        "MaxConnectionsPerChild 20 (%s)" % (most, combo_id(combo))


# ===========================================================================
# 7. consecutive `apache2 -k graceful` under load, then leak checks
# ===========================================================================

GRACEFUL = pick(all_combos(), [("mutex", "sysvsem"), ("mutex", "fcntl"),
                               ("reuseport", None)])


@pytest.mark.parametrize("combo", GRACEFUL, ids=combo_id)
def test_faults_gracefuls_under_load(httpd, combo):
    strategy, mech = combo
    count = pick(100, 20)
    # Semaphores are attributed by the pid of their last semop(); pids wrap
    # (pid_max 32768 here), so one left on the machine by an earlier server
    # (a parent killed with SIGKILL cannot remove its own) may carry one of
    # our pids by chance.  Only those made while this test ran are ours.
    sems_before = set(sysv_sems())
    h = make(httpd, "StartServers 2", "ServerLimit 32", "ThreadsPerChild 4",
             "ThreadLimit 4", "MaxRequestWorkers 32", "MinSpareThreads 4",
             "MaxSpareThreads 16", *strategy_lines(strategy, mech))
    h.start()
    settle(h, timeout=SETTLE_S)
    run_load(h.url("/small.txt"), 200, 4)
    settle(h, timeout=SETTLE_S)
    fds_before = fd_summary(h.pid)
    lockdir_before = sorted(os.listdir(h.logs))
    shm_before = shm_by_creator({h.pid})
    watch = PidWatch(h)
    watch.start()
    load = Load(h.url("/small.txt"), concurrency=6, timelimit=count * 2 + 60,
                timeout=count * 2 + 60 + 120)
    load.start()
    time.sleep(1)
    t0 = time.monotonic()
    slow = []
    for i in range(count):
        before = set(h.children())
        ts = time.monotonic()
        r = h.cmd("-k", "graceful")
        assert r.returncode == 0, r.stdout + r.stderr
        h.wait_for(lambda: set(h.children()) - before, timeout=10,
                   what="new generation after graceful %d" % (i + 1))
        slow.append(time.monotonic() - ts)
        time.sleep(0.2)
    took = time.monotonic() - t0
    # stop ab: it has a time limit far beyond; interrupt it by SIGINT
    for p in procs_with(h.url("/small.txt")):
        os.kill(p, signal.SIGINT)
    done, failed, non2xx, out = load.finish()
    settle(h, timeout=30)
    time.sleep(1)
    pids = watch.finish()
    fds_after = fd_summary(h.pid)
    sems_running = [i for i in our_sems(pids) if i not in sems_before] \
        if mech in ("sysvsem", None) else []
    lockdir_after = sorted(os.listdir(h.logs))
    shm_after = shm_by_creator({h.pid})
    assert h.stop() == 0
    time.sleep(0.5)
    sems_left = [i for i in our_sems(pids) if i not in sems_before]
    report("gracefuls-under-load", strategy=combo_id(combo), gracefuls=count,
           seconds=round(took, 1), requests=done, failed=failed,
           non2xx=non2xx, parent_fds=[len(fds_before), len(fds_after)],
           max_generation_s=round(max(slow), 2),
           sems_running=len(sems_running), sems_after_stop=len(sems_left))
    assert failed == 0 and non2xx == 0, out
    assert done > count * 10, out
    assert fds_after == fds_before, (fds_before, fds_after)
    assert lockdir_after == lockdir_before, (lockdir_before, lockdir_after)
    assert shm_after == shm_before
    assert len(sems_running) <= 1, sems_running
    assert sems_left == [], sems_left
    assert bad_log_lines(h) == []


# ===========================================================================
# 8. slowloris with mod_reqtimeout
# ===========================================================================

class Slowloris(threading.Thread):
    """n connections, each sending its request headers a byte at a time
    (one byte per connection per `gap` seconds), reconnecting when the
    server closes them, like a real attacker."""

    REQ = (b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"User-Agent: slowloris-test\r\n" + b"X-a: b\r\n" * 1000)

    def __init__(self, port, n, gap=1.0):
        super().__init__(daemon=True)
        self.port, self.n, self.gap = port, n, gap
        self.stop_ev = threading.Event()
        self.closed_by_server = 0
        self.connected = 0
        self.max_open = 0

    def _open(self, sel):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect_ex(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return
        sel.register(s, selectors.EVENT_READ, [0, time.monotonic()])
        self.connected += 1

    def run(self):
        sel = selectors.DefaultSelector()
        for _ in range(self.n):
            self._open(sel)
        next_round = time.monotonic()
        while not self.stop_ev.is_set():
            now = time.monotonic()
            if now >= next_round:
                next_round = now + self.gap
                for key in list(sel.get_map().values()):
                    st = key.data
                    try:
                        key.fileobj.send(self.REQ[st[0]:st[0] + 1])
                        st[0] = (st[0] + 1) % len(self.REQ)
                    except OSError:
                        pass
            for key, _ in sel.select(timeout=0.1):
                try:
                    data = key.fileobj.recv(4096)
                except OSError:
                    data = b""
                if not data:   # closed by the server (reqtimeout)
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    self.closed_by_server += 1
                    self._open(sel)
            self.max_open = max(self.max_open, len(sel.get_map()))
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()


def test_faults_slowloris(httpd):
    n = pick(500, 200)
    seconds = pick(30, 15)
    # A threaded server of 100 workers (4 x 25) against 200 attackers: more
    # attackers than workers, and reqtimeout's defaults tightened a little,
    # cut each attacker after ~5 s, so legitimate clients are served within
    # a few seconds.  Against 500 attackers 100 workers are not enough: a
    # legitimate connection queues behind ~400 attackers, each holding a
    # worker ~5 s, i.e. ~20 s (measured: not served within 20 s), the limit
    # README states.  The full run therefore checks the remedy it names:
    # MaxRequestWorkers above the number of slow clients (24 x 25 = 600).
    children = pick(24, 4)
    h = make(httpd, "StartServers %d" % children, "ServerLimit %d" % children,
             "ThreadsPerChild 25", "ThreadLimit 25",
             "MaxRequestWorkers %d" % (children * 25),
             "MinSpareThreads 25", "MaxSpareThreads %d" % (children * 25),
             "RequestReadTimeout header=5-10,MinRate=500 body=10,MinRate=500",
             modules=["reqtimeout"])
    h.start()
    settle(h, timeout=SETTLE_S)
    attack = Slowloris(h.port, n)
    attack.start()
    time.sleep(3)
    lat, failures = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            status, _ = http_get(h.port, timeout=20)
            ok = status == 200
        except OSError:
            ok = False
        lat.append(time.monotonic() - t0)
        failures += not ok
        time.sleep(0.25)
    attack.stop_ev.set()
    attack.join(10)
    lat.sort()
    report("slowloris", attackers=n, seconds=seconds, requests=len(lat),
           failed=failures, p50_s=round(lat[len(lat) // 2], 2),
           max_s=round(lat[-1], 2),
           attacker_connections=attack.connected,
           closed_by_reqtimeout=attack.closed_by_server)
    assert failures == 0, (failures, lat)
    assert attack.closed_by_server > 0   # reqtimeout did cut them
    assert h.proc.poll() is None
    assert bad_log_lines(h) == []


# ===========================================================================
# 9. fork fails: a cgroup (v1) pids.max on the parent
# ===========================================================================

PIDS_CG = "/sys/fs/cgroup/pids"


def pids_cgroup_usable():
    if os.geteuid() != 0 or not os.path.isdir(PIDS_CG):
        return False
    probe = os.path.join(PIDS_CG, "hybfault-probe-%d" % os.getpid())
    try:
        os.mkdir(probe)
        ok = os.path.exists(os.path.join(probe, "pids.max"))
        os.rmdir(probe)
        return ok
    except OSError:
        return False


@pytest.mark.skipif(not pids_cgroup_usable(),
                    reason="no writable cgroup v1 pids controller here")
def test_faults_fork_failure(httpd):
    h = make(httpd, "StartServers 3", "ServerLimit 8", "ThreadsPerChild 1",
             "MaxRequestWorkers 8", "MinSpareServers 3", "MaxSpareServers 6",
             "LogLevel debug")
    h.start()
    kids = settle(h, count=3, timeout=SETTLE_S)
    cg = os.path.join(PIDS_CG, "hybfault-%d-%d" % (os.getpid(), h.port))
    os.mkdir(cg)
    try:
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(h.pid))
        with open(os.path.join(cg, "pids.current")) as f:
            cur = int(f.read())
        with open(os.path.join(cg, "pids.max"), "w") as f:
            f.write(str(cur))            # no fork can succeed now
        os.kill(kids[0], signal.SIGKILL)
        h.wait_for(lambda: h.log_matches("HYB00040"), timeout=5,
                   what="fork failure logged")
        cpu0, t0 = cpu_ticks(h.pid), time.monotonic()
        done, failed, non2xx, out = run_load(h.url("/small.txt"), 10 ** 6, 4,
                                             timelimit=8, timeout=60)
        time.sleep(max(0, 10 - (time.monotonic() - t0)))
        cpu = (cpu_ticks(h.pid) - cpu0) / os.sysconf("SC_CLK_TCK")
        window = time.monotonic() - t0
        with open(os.path.join(cg, "pids.events")) as f:
            refused = int(f.read().split()[1])
        logged = len(h.log_matches("HYB00040"))
        serving = len(h.children())
        with open(os.path.join(cg, "pids.max"), "w") as f:
            f.write("max")
        t1 = time.monotonic()
        # the back-off is at most 10 s: by then the server is whole again
        kids = h.wait_for(lambda: len(h.children()) >= 3 and h.children(),
                          timeout=25, what="the third child again")
        back = time.monotonic() - t1
        peak, end = len(kids), time.monotonic() + 4
        while time.monotonic() < end:
            peak = max(peak, len(h.children()))
            time.sleep(0.1)
        if os.environ.get("HYB_FAULTS_DEBUG"):
            print(h.log())
        report("fork-failure", requests=done, failed=failed,
               fork_attempts_refused=refused, window_s=round(window, 1),
               parent_cpu_s=round(cpu, 2), logged=logged,
               children_while_failing=serving, back_to_size_s=round(back, 1),
               children_after_recovery_peak=peak)
        assert logged == 1, h.log()[-3000:]
        assert failed == 0 and non2xx == 0, out
        assert cpu < 0.5, "parent busy while fork fails: %.2fs" % cpu
        assert refused < 40, refused
        assert serving == 2
        assert len(kids) >= 3, kids
        assert h.log_matches("HYB00041"), "recovery not logged"
        assert bad_log_lines(h) == []
        assert peak <= 6, "the first successful pass after fork failures " \
            "started %d children where 1 was missing" % peak
    finally:
        h.stop()
        with open(os.path.join(PIDS_CG, "cgroup.procs"), "w") as f:
            for p in open(os.path.join(cg, "cgroup.procs")).read().split():
                try:
                    f.write(p)
                    f.flush()
                except OSError:
                    pass
        for _ in range(50):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.1)


# ===========================================================================
# 10. mod_child_status: hostile query strings and Host headers
# ===========================================================================

def raw_request(port, path, host, timeout=10):
    req = b"GET " + path + b" HTTP/1.1\r\nHost: " + host + \
        b"\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.settimeout(timeout)
        s.sendall(req)
        data = read_to_eof(s)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status, head, body


HOSTILE = [b"json", b"json&json&json", b"json=1", b"=json", b"&&&;;;",
           b"refresh=-1&json", b"refresh=99999999999999999999999&json",
           b"refresh=%00&json", b"json%00", b"%zz&json", b"a" * 6000,
           b"json&" + b"x=" + b"%" * 3000, b"refresh=1e9", b"refresh",
           b"prometheus&refresh=0", b"auto&refresh=3", b"json;auto",
           b"%3Cscript%3Ealert(1)%3C/script%3E",
           b"<script>alert(1)</script>", b"\"'><img src=x>",
           b"json&%ff%fe%fd", b";" * 4000]
HOSTS = [b"127.0.0.1", b"<script>x</script>", b"a\"b", b"x'y.example",
         b"%3Cb%3E", b"[::1]", b"h" * 200, b"\xff\xfe", b"a b", b""]


def test_faults_child_status_hostile_queries(httpd):
    h = httpd(conf="<Location /child-status>\n  SetHandler child-status\n"
                   "</Location>\nUseCanonicalName Off",
              modules=["child_status"])
    h.start()
    rnd = random.Random(7)
    queries = list(HOSTILE)
    alphabet = b"json&;=refreshprometheusauto%<>\"'\\x00\xff0123456789"
    for _ in range(pick(400, 120)):
        n = rnd.randint(0, 200)
        queries.append(bytes(rnd.choice(alphabet) for _ in range(n)))
    made = bad = 0
    statuses = {}
    for i, q in enumerate(queries):
        q = q.replace(b" ", b"%20").replace(b"#", b"%23")
        host = HOSTS[i % len(HOSTS)]
        for fmt in (b"json&", b"", b"prometheus&"):
            path = b"/child-status?" + fmt + q
            status, head, body = raw_request(h.port, path, host)
            made += 1
            statuses[status] = statuses.get(status, 0) + 1
            assert status in (200, 400, 414), (path, host, status, head)
            if status != 200:
                continue
            ctype = re.search(rb"content-type: ([^\r\n;]+)", head,
                              re.I).group(1).lower()
            if fmt == b"json&" or ctype == b"application/json":
                try:
                    json.loads(body)
                except ValueError as e:
                    bad += 1
                    pytest.fail("invalid JSON for %r host %r: %s\n%r" % (
                        path, host, e, body[:500]))
            if ctype == b"text/html":
                for needle in (b"<script", b"<img", b"<b>", b"\"'>"):
                    assert needle not in body.lower(), (path, host)
                assert host.lower() not in body.lower() or \
                    not re.search(rb"[<>\"']", host), (path, host)
    assert h.proc.poll() is None
    assert len(h.children()) >= 1
    report("child-status-fuzz", requests=made, failed=bad,
           statuses={str(k): v for k, v in statuses.items()})
    assert bad_log_lines(h) == []

"""Accept strategies: mutex, preemptive, reuseport and exclusive.

Covers, in this order (one section each):
  * fairness over 4 fixed children: below capacity (5 threads per child)
    reuseport's counts must pass a chi-square test of an even
    multinomial spread (false failure 1e-4) at concurrency 1, 4 and 16;
    at capacity (4 threads, concurrency 16) no child may be starved or
    flooded; mutex, preemptive and exclusive are measured and printed
    (Jain's index), not judged;
  * reuseport groups and steering: one kernel listener per group and
    address, each child holding only its own group's; with every thread
    of a group busy, a new connection goes to the group with a free
    thread, not where the kernel's hash would put it, also right after a
    child was killed; kill -9 of a child: fresh connections (each hashed
    by the kernel to some group) keep succeeding quickly, and the dead
    child's group gets a new child within 1 s;
  * 20 graceful restarts under load with reuseport and with exclusive:
    no failed request, no non-2xx answer, the load spans every restart,
    no listener leaked or lost;
  * MaxConnectionsPerChild: 100 under load with reuseport: no failure,
    children recycled, no listener group left without a taker; a
    retiring child that holds a connection and its slot: mutex (control)
    and reuseport must keep serving fresh connections at once;
  * ThreadsPerChild 1: with one Listen and AsyncConnections Off each
    child blocks in accept() on a blocking listener, as prefork's do;
    AsyncConnections On or two Listens: non-blocking, children in epoll;
  * graceful stop (SIGWINCH) with requests in flight, reuseport and
    exclusive: every connect refused at once, no child started, exit
    soon after the last response;
  * dual stack: 127.0.0.1 and [::1] together with reuseport (3 groups)
    and exclusive;
  * bad config and warnings: unknown AcceptStrategy, bad ReusePortGroups
    values, ReusePortGroups with another strategy or above the number of
    children, a changed ReusePortGroups on a graceful restart.

The per-child counts come from the access log, whose last field is the
serving child's pid (%P); each load uses its own query string so that the
fixture's readiness and status requests are never counted.  The listener
group of each running child comes from mod_child_status
(/child-status?json, Httpd.child_groups()); the debug log's "Child N
started" lines only where a test needs every child ever started.

The helpers come first; each section starts with its servers' settings.
"""
import math
import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from httpd_fixture import (Load, bad_log_lines, fd_links, read_to_eof,
                           run_load, served_by, settle, sleep_conf,
                           wchan)

STARTED = re.compile(r"Child (\d+) started: pid (\d+), gen (\d+), "
                     r"strategy (\w+), group (\d+)")
STOPPED = re.compile(r"Child (\d+) stopped: pid (\d+)")
DEBUG = "LogLevel info mpm_hybrid:debug"
BOTH = "Listen 127.0.0.1:{port}\nListen [::1]:{port}"


def cfg(*lines):
    """Join config lines, all of them (httpd_fixture.cfg would drop the
    hybrid-only ones under HYBTEST_CORE_MPM; these tests are hybrid's)."""
    return "\n".join(lines)


# -- helpers: the logs --------------------------------------------------------

# Which group a running child is in comes from mod_child_status
# (Httpd.child_groups(), servers made with child_status=True).  The debug
# log's "Child N started" lines stay for what only history answers: every
# child started so far, when, and in which generation.

def started(h):
    """[(slot, pid, gen, strategy, group)] of every child started so far,
    from the debug log, in order."""
    return [(int(s), int(p), int(g), st, int(k))
            for s, p, g, st, k in STARTED.findall(h.log())]


def group_of(h):
    """pid -> listener group of every child started so far, from the debug
    log: for a server that has exited (the children running now:
    Httpd.child_groups())."""
    return {pid: grp for _, pid, _, _, grp in started(h)}


def wait_logged(h, marker, n, timeout=5):
    """served_by() once n lines with marker are in the access log (a line
    is written just after its response is sent)."""
    counts = {}
    deadline = time.time() + timeout
    while time.time() < deadline:
        counts = served_by(h, marker)
        if sum(counts.values()) >= n:
            break
        time.sleep(0.05)
    return counts


def clients_of(h, marker):
    """client address -> set of serving pids, for lines with marker."""
    out = {}
    with open(h.access_log) as f:
        for line in f:
            if marker in line:
                out.setdefault(line.split()[0], set()).add(
                    int(line.split()[-1]))
    return out


def ab_longest_ms(out):
    m = re.search(r"^\s*100%\s+(\d+)", out, re.M)
    return int(m.group(1)) if m else None


# -- helpers: listeners and processes -----------------------------------------

def listen_inodes(port):
    """Inodes of the TCP sockets listening on port (any address)."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            next(f)
            for line in f:
                fld = line.split()
                if fld[3] == "0A" and int(fld[1].rsplit(":", 1)[1], 16) == port:
                    out.add(int(fld[9]))
    return out


def socket_inodes(pid):
    return {int(link[8:-1]) for link in fd_links(pid)
            if link.startswith("socket:[")}


def holders(port):
    """pid -> listening sockets on port it holds (our processes only)."""
    listening = listen_inodes(port)
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                mine = socket_inodes(int(d)) & listening
            except OSError:
                continue
            if mine:
                out[int(d)] = mine
    return out


O_NONBLOCK = 0o4000


def listener_modes(pids, port):
    """{pid: set of 'blocking'/'nonblocking'} of the listening sockets on
    port each pid holds, from /proc/PID/fdinfo."""
    listening = listen_inodes(port)
    out = {}
    for pid in pids:
        modes = set()
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                if not link.startswith("socket:[") \
                        or int(link[8:-1]) not in listening:
                    continue
                with open("/proc/%d/fdinfo/%s" % (pid, fd)) as fi:
                    flags = int(re.search(r"^flags:\s+(\d+)", fi.read(),
                                          re.M).group(1), 8)
            except OSError:
                continue
            modes.add("nonblocking" if flags & O_NONBLOCK else "blocking")
        out[pid] = modes
    return out


def children_waiting_in(h, kids, where):
    """where: "accept" (blocked in accept(): inet_csk_accept or
    inet_csk_wait_for_connect) or "epoll" (ep_poll, do_epoll_wait)."""
    return h.wait_for(lambda: all(where in wchan(p) or (
                          where == "accept" and "wait_for_connect" in wchan(p))
                                  for p in kids),
                      timeout=5, interval=0.05,
                      what="children %r waiting in %s: %r" % (
                          kids, where, {p: wchan(p) for p in kids}))


def no_crash(r):
    """A finished apache2: not killed by a signal."""
    assert r.returncode >= 0, "apache2 died of signal %d" % -r.returncode


# -- helpers: requests --------------------------------------------------------

def fetch(addr, port, path, timeout=5.0):
    """One request on a fresh connection; returns (status, seconds)."""
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    t0 = time.monotonic()
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((addr, port))
        s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                   % path).encode())
        data = read_to_eof(s)
    took = time.monotonic() - t0
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    status = int(m.group(1)) if m else None
    if status == 200 and not data.endswith(b"0123456789abc\n"):
        status = -1   # truncated body
    return status, took


def try_fetch(addr, port, path, timeout=5.0):
    t0 = time.monotonic()
    try:
        return fetch(addr, port, path, timeout)
    except OSError as e:
        return repr(e), time.monotonic() - t0


def keepalive_open(h, tag):
    """A keep-alive connection with one request answered, left idle: the
    child that served it holds it until KeepAliveTimeout (5 s)."""
    s = socket.create_connection(("127.0.0.1", h.port), 5)
    s.settimeout(5)
    s.sendall(("GET /small.txt?%s HTTP/1.1\r\nHost: t\r\n\r\n"
               % tag).encode())
    data = b""
    while not data.endswith(b"0123456789abc\n"):
        chunk = s.recv(4096)
        assert chunk, "keep-alive connection closed"
        data += chunk
    return s


def slow_request(port, ms, out):
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.settimeout(ms / 1000 + 10)
        s.sendall(b"GET /sleep?ms=%d HTTP/1.1\r\nHost: t\r\n"
                  b"Connection: close\r\n\r\n" % ms)
        data = read_to_eof(s)
    out.append((time.monotonic() - t, data[:12]))


def slowest_of_eight(port):
    """8 requests of 2 s, started 150 ms apart: with 2 groups of 4
    threads and each connection sent where a thread is free, none waits
    and the slowest takes 2 s; a fifth on one group waits at least 1 s."""
    out, threads = [], []
    for _ in range(8):
        t = threading.Thread(target=slow_request, args=(port, 2000, out))
        t.start()
        threads.append(t)
        time.sleep(0.15)
    for t in threads:
        t.join(30)
    assert len(out) == 8 and all(d.startswith(b"HTTP/1.1 200")
                                 for _, d in out), out
    return round(max(t for t, _ in out), 2)


# -- helpers: statistics ------------------------------------------------------

def jain(xs):
    xs = list(xs)
    sq = sum(x * x for x in xs)
    return sum(xs) ** 2 / (len(xs) * sq) if sq else 0.0


# An unbiased random pick among 4 groups gives multinomial counts: the
# chi-square statistic over the 4 children has 3 degrees of freedom, and
# exceeds 21.11 with probability 1e-4.  So an even spread fails this test
# once in ten thousand runs; a bias of a few percent of n fails it always
# at these n (the old jitter's 28/16/20/35 % gave about 240).
CHI2_3DF_LIMIT = 21.11


def chi2_3df_pvalue(x):
    """P(chi-square with 3 degrees of freedom > x), in closed form."""
    return math.erfc(math.sqrt(x / 2)) + \
        math.sqrt(2 * x / math.pi) * math.exp(-x / 2)


def assert_even_spread(shares, groups, kids):
    n = sum(shares)
    e = n / len(shares)
    chi2 = sum((c - e) ** 2 / e for c in shares)
    sigma = math.sqrt(n * 0.25 * 0.75)
    print("reuseport spread: %r of %d, chi-square %.1f (p %.2g), largest "
          "deviation %.1f sigma" % (shares, n, chi2, chi2_3df_pvalue(chi2),
                                    max(abs(c - e) for c in shares) / sigma))
    assert chi2 <= CHI2_3DF_LIMIT, \
        "uneven: served %r by groups %r (expected %.0f each): chi-square " \
        "%.1f, p = %.2g" % (shares, [groups[p] for p in kids], e, chi2,
                            chi2_3df_pvalue(chi2))


# -- fairness -----------------------------------------------------------------

FOUR_FIXED = ("StartServers 4", "ServerLimit 4", "ThreadLimit 4",
              "ThreadsPerChild 4", "MaxRequestWorkers 16",
              "MinSpareThreads 1", "MaxSpareThreads 64")
FAIRNESS = {}


@pytest.mark.parametrize("strategy",
                         ["reuseport", "mutex", "preemptive", "exclusive"])
def test_accept_fairness_four_children(httpd, strategy):
    """4000 fresh connections (ab -c 16, no keep-alive) over 4 fixed
    children of 4 threads: 16 connections for 16 threads, so every thread
    is nearly always busy.  At that point reuseport's steering sends each
    connection to the group that frees a thread first, so the counts
    follow how fast each child is served on a shared machine, not chance
    (measured: up to 25 % off the mean, with the old steering program as
    with the new); below capacity test_accept_reuseport_even_at_any_
    concurrency holds them to chance.  Here reuseport (4 groups, one child
    each) must only starve or flood no child (each within half of the
    mean); the others are only measured."""
    extra = ["ReusePortGroups 4"] if strategy == "reuseport" else []
    h = httpd(child_status=True,
              conf=cfg(*FOUR_FIXED, "AcceptStrategy %s" % strategy, DEBUG,
                       *extra))
    h.start()
    kids = settle(h, count=4)
    listening = listen_inodes(h.port)
    assert len(listening) == (4 if strategy == "reuseport" else 1), listening
    if strategy == "reuseport":
        groups = h.child_groups()
        assert sorted(groups.get(p) for p in kids) == [0, 1, 2, 3], groups
    n = 4000
    done, failed, non2xx, out = run_load(h.url("/small.txt?fair"), n, 16)
    assert (done, failed, non2xx) == (n, 0, 0), out
    after = h.children()
    assert after == kids, "children changed: %r -> %r" % (kids, after)
    # history: no child started or stopped at any time (the log)
    assert len(started(h)) == 4 and not STOPPED.findall(h.log()), \
        "a child was added or retired:\n" + h.log()[-3000:]
    counts = wait_logged(h, "/small.txt?fair", n)
    assert sum(counts.values()) == n, counts
    assert set(counts) <= set(kids), (counts, kids)
    shares = [counts.get(p, 0) for p in kids]
    mean = n / 4
    j = jain(shares)
    FAIRNESS[strategy] = (shares, j)
    print("\nfairness %-10s shares %s (mean %.0f, min %+.1f %%, max %+.1f %%)"
          " Jain %.4f" % (strategy, shares, mean,
                          100 * (min(shares) - mean) / mean,
                          100 * (max(shares) - mean) / mean, j))
    if strategy == "reuseport":
        for pid, c in zip(kids, shares):
            assert 0.5 * mean <= c <= 1.5 * mean, \
                "child %d (group %d) served %d of %d, mean %.0f: %r" % (
                    pid, groups[pid], c, n, mean, shares)
    assert bad_log_lines(h) == []


@pytest.mark.parametrize("concurrency,threads", [(1, 5), (4, 5), (16, 20)])
def test_accept_reuseport_even_at_any_concurrency(httpd, concurrency,
                                                  threads):
    """4 groups of one child each, 3000 fresh connections from one client
    at concurrency 1, 4 and 16.  While every group has a free thread the
    steering program picks one at random, so the counts must look
    multinomial (chi-square bound above) at every concurrency.  At 16 the
    children get 20 threads, not 5: with 16 connections on 20 or 40
    threads some group is without a free thread often enough (on a quiet
    2-core machine too: 2-5 runs in 10 failed with 10 threads) that
    steering follows service speed instead (by design; see
    test_accept_fairness_four_children), which is not what is tested."""
    h = httpd(child_status=True,
              conf=cfg("StartServers 4", "ServerLimit 4",
                       "ThreadLimit %d" % threads,
                       "ThreadsPerChild %d" % threads,
                       "MaxRequestWorkers %d" % (4 * threads),
                       "MinSpareThreads 1", "MaxSpareThreads 64",
                       "AcceptStrategy reuseport", "ReusePortGroups 4",
                       DEBUG))
    h.start()
    kids = settle(h, count=4)
    groups = h.child_groups()
    assert sorted(groups.get(p) for p in kids) == [0, 1, 2, 3], groups
    n = 3000
    marker = "/small.txt?even%d" % concurrency
    done, failed, non2xx, out = run_load(h.url(marker), n, concurrency)
    assert (done, failed, non2xx) == (n, 0, 0), out
    assert h.children() == kids, "children changed during the load"
    counts = wait_logged(h, marker, n)
    assert sum(counts.values()) == n, counts
    print("\n%s" % h.log_matches(r"steering new connections by [^\n]*")[-1:])
    assert_even_spread([counts.get(p, 0) for p in kids], groups, kids)
    assert bad_log_lines(h) == []


# -- reuseport groups and steering --------------------------------------------

def steer_conf(so):
    return cfg(sleep_conf(so), "StartServers 2", "ServerLimit 4",
               "ThreadLimit 4", "ThreadsPerChild 4", "MaxRequestWorkers 8",
               "MinSpareThreads 1", "MaxSpareThreads 8",
               "AcceptStrategy reuseport", "ReusePortGroups 2", DEBUG)


def test_accept_reuseport_child_holds_only_its_group_sockets(httpd):
    """ReusePortGroups 3 on 127.0.0.1 and [::1]: the kernel has 3
    listening sockets per address; the parent holds all 6, and each child
    holds exactly the 2 of its own group (accept_reuseport.c: "Only this
    group's queue is ours: drop the other groups' sockets").  A child
    holding another group's socket keeps that queue open after the parent
    closes it, e.g. on a graceful stop, with nobody accepting from it."""
    h = httpd(listen=BOTH, child_status=True, conf=cfg(
        "StartServers 3", "ServerLimit 4", "ThreadLimit 4",
        "ThreadsPerChild 4", "MaxRequestWorkers 16", "MinSpareThreads 1",
        "MaxSpareThreads 64", "AcceptStrategy reuseport",
        "ReusePortGroups 3", DEBUG))
    h.start()
    kids = settle(h, count=3)
    groups = h.child_groups()
    listening = listen_inodes(h.port)
    assert len(listening) == 6, listening
    assert socket_inodes(h.pid) & listening == listening
    held = {groups[p]: socket_inodes(p) & listening for p in kids}
    print("\nlistening sockets held per group's child: %r" % held)
    extra = {g: len(x) - 2 for g, x in held.items() if len(x) != 2}
    assert extra == {}, "children hold other groups' listeners: %r " \
        "(group -> sockets beyond its own 2)" % extra
    # and the groups' sockets are disjoint and cover every listener
    assert set().union(*held.values()) == listening


def test_accept_reuseport_steers_to_free_threads(httpd, sleep_module):
    """ReusePortGroups 2, one child of 4 threads each: 8 requests of 2 s
    started 150 ms apart fill both children exactly, and none waits for a
    thread, in each of 4 rounds.  The kernel's hash alone puts 5 on one
    child 73 % of the time (its fifth request then waits at least 1 s);
    the steering program sends each connection to the group with a free
    thread."""
    h = httpd(conf=steer_conf(sleep_module))
    h.start()
    settle(h, count=2)
    slowest = []
    for _ in range(4):
        slowest.append(slowest_of_eight(h.port))
        time.sleep(0.3)
    print("\n%s; slowest request per round: %r s"
          % (h.log_matches(r"steering new connections by [^\n]*")[-1:],
             slowest))
    assert max(slowest) < 2.5, slowest
    assert bad_log_lines(h) == []


def test_accept_reuseport_steering_after_kill(httpd, sleep_module):
    """The same 8 requests 0.3 s after the child of group 1 was killed
    with SIGKILL: the dead child's idle threads no longer count as free
    (the parent corrects the shared count within a few passes of a
    crash), so nothing queues for its replacement while group 0 has a
    free thread.  Without the correction the slowest took 3.25 s."""
    h = httpd(conf=steer_conf(sleep_module), child_status=True)
    h.start()
    kids = settle(h, count=2)
    groups = h.child_groups()
    victim = [p for p in kids if groups.get(p) == 1]
    assert victim, groups
    os.kill(victim[0], signal.SIGKILL)
    time.sleep(0.3)
    slowest = slowest_of_eight(h.port)
    print("\nslowest request after the kill: %.2f s" % slowest)
    assert slowest < 2.5, slowest
    assert bad_log_lines(h) == []


@pytest.mark.parametrize("victim_group", [0, 1])
def test_accept_reuseport_killed_child_group_served(httpd, victim_group):
    """ReusePortGroups 2 with 2 children; the child of one group is
    killed with SIGKILL.  200 fresh connections started at once (the
    kernel hashes each to a group, about half to the dead child's) all
    succeed, none takes 1 s, and a new child for that group is logged
    within 1 s of the kill."""
    h = httpd(child_status=True,
              conf=cfg("StartServers 2", "ServerLimit 4", "ThreadLimit 4",
                       "ThreadsPerChild 4", "MaxRequestWorkers 16",
                       "MinSpareThreads 1", "MaxSpareThreads 64",
                       "AcceptStrategy reuseport", "ReusePortGroups 2",
                       DEBUG))
    h.start()
    kids = settle(h, count=2)
    groups = h.child_groups()
    assert sorted(groups[p] for p in kids) == [0, 1], groups
    victim = [p for p in kids if groups[p] == victim_group][0]
    survivor = [p for p in kids if p != victim][0]
    # The replacement is watched for in the log, not in /child-status: the
    # test times when the parent started it, and status requests would be
    # more connections for the kernel to hash while the group is down.
    known = {pid for _, pid, _, _, _ in started(h)}

    pool = ThreadPoolExecutor(max_workers=8)
    os.kill(victim, signal.SIGKILL)
    t_kill = time.monotonic()
    futures = [pool.submit(try_fetch, "127.0.0.1", h.port,
                           "/small.txt?kill%d" % i) for i in range(200)]
    replaced_in = None
    while time.monotonic() - t_kill < 5:
        new = [(pid, grp) for _, pid, _, _, grp in started(h)
               if pid not in known]
        if new:
            replaced_in = time.monotonic() - t_kill
            break
        time.sleep(0.01)
    results = [f.result() for f in futures]
    pool.shutdown()
    slow = [r for r in results if r[0] != 200 or r[1] >= 1.0]
    times = sorted(t for _, t in results)
    print("\nkilled group %d: replacement logged after %s s; 200 "
          "connections: median %.3f s, max %.3f s, not ok or >= 1 s: %d" % (
              victim_group, None if replaced_in is None
              else "%.3f" % replaced_in, times[100], times[-1], len(slow)))
    assert replaced_in is not None, "no new child logged\n" + h.log()[-3000:]
    assert new == [(new[0][0], victim_group)], new
    assert replaced_in < 1.0, replaced_in
    assert slow == [], slow
    # the new child really serves the dead child's group
    kids2 = settle(h, count=2)
    assert survivor in kids2 and victim not in kids2, (kids, kids2)
    counts = wait_logged(h, "?kill", 200)
    assert sum(counts.values()) == 200
    assert counts.get(new[0][0], 0) > 0, counts
    assert len(re.findall(r"killed by signal 9", h.log())) == 1


# -- graceful restarts --------------------------------------------------------

RESTART_BASE = ("StartServers 2", "ServerLimit 16", "ThreadLimit 8",
                "ThreadsPerChild 4", "MaxRequestWorkers 32",
                "MinSpareThreads 2", "MaxSpareThreads 32")


@pytest.mark.parametrize("strategy", ["reuseport", "exclusive"])
def test_accept_graceful_restarts_under_load(httpd, strategy):
    """20 graceful restarts (SIGUSR1 every ~0.4 s) while ab -c 10 runs:
    not one failed request or non-2xx answer, and ab runs from before
    the first restart to after the last one."""
    extra = ["ReusePortGroups 2"] if strategy == "reuseport" else []
    h = httpd(conf=cfg(*RESTART_BASE, "AcceptStrategy %s" % strategy, DEBUG,
                       *extra))
    h.start()
    settle(h, count=2)
    listening = listen_inodes(h.port)
    assert len(listening) == (2 if strategy == "reuseport" else 1), listening
    restarts = 20
    load = Load(h.url("/small.txt?gr"), requests=2000000, concurrency=10,
                timelimit=restarts * 0.4 + 4)
    load.start()
    time.sleep(1.0)
    assert load.is_alive(), "ab ended before the first restart"
    t_first = time.monotonic()
    new_gens = 0
    for i in range(restarts):
        t0 = time.monotonic()
        before = set(h.children())
        h.graceful()
        # the next generation appears before the next signal
        h.wait_for(lambda: set(h.children()) - before, timeout=5,
                   interval=0.02, what="generation after graceful %d" % (i + 1))
        new_gens += 1
        time.sleep(max(0.0, 0.4 - (time.monotonic() - t0)))
    t_last = time.monotonic()
    time.sleep(1.0)   # the last generation serves too
    assert load.is_alive(), "ab ended before the last restart: test invalid"
    done, failed, non2xx, out = load.finish()
    assert load.t_start < t_first and load.t_end > t_last + 0.5
    print("\n%s: %d requests over %d graceful restarts in %.1f s, "
          "failed %s, non-2xx %s, longest %s ms" % (
              strategy, done, restarts, t_last - t_first, failed, non2xx,
              ab_longest_ms(out)))
    assert failed == 0 and non2xx == 0, out
    assert done >= 2000, out
    assert new_gens == restarts
    assert len(re.findall(r"Graceful restart requested", h.log())) == restarts
    # the newest generation serves and spans all groups (the log: every
    # child that generation started, also any that has gone since)
    gens = started(h)
    last_gen = max(g for _, _, g, _, _ in gens)
    assert last_gen >= restarts, gens[-4:]
    if strategy == "reuseport":
        assert {k for _, _, g, _, k in gens if g == last_gen} == {0, 1}, \
            gens[-6:]
        assert "closing group" not in h.log()
    # the same listeners as before: none leaked, none lost
    assert listen_inodes(h.port) == listening, (listening,
                                                listen_inodes(h.port))
    assert fetch("127.0.0.1", h.port, "/small.txt")[0] == 200
    assert h.proc.poll() is None
    assert bad_log_lines(h) == []


# -- MaxConnectionsPerChild ---------------------------------------------------

def test_accept_reuseport_max_connections_per_child(httpd):
    """MaxConnectionsPerChild 100 with 4 reuseport groups under ab -c 8:
    nothing fails, children are recycled, and a recycled group never
    leaves its queued connections waiting longer than a slice (longest
    request < 1.5 s)."""
    h = httpd(conf=cfg("StartServers 4", "ServerLimit 16", "ThreadLimit 4",
                       "ThreadsPerChild 4", "MaxRequestWorkers 32",
                       "MinSpareThreads 2", "MaxSpareThreads 32",
                       "AcceptStrategy reuseport", "ReusePortGroups 4",
                       "MaxConnectionsPerChild 100", DEBUG))
    h.start()
    first = set(settle(h, count=4))
    n = 3000
    done, failed, non2xx, out = run_load(h.url("/small.txt?mcpc"), n, 8)
    longest = ab_longest_ms(out)
    counts = wait_logged(h, "/small.txt?mcpc", n)
    gens = started(h)
    print("\nMaxConnectionsPerChild 100: %d requests, failed %s, non-2xx %s,"
          " longest %s ms, %d children served, %d children started" % (
              done, failed, non2xx, longest, len(counts), len(gens)))
    assert (done, failed, non2xx) == (n, 0, 0), out
    assert sum(counts.values()) == n
    # 3000 connections at <= 100 per child: at least 30 children
    assert len(counts) >= n // 100, counts
    assert len(set(counts) - first) >= n // 100 - 4, counts
    # a child may finish what its threads already hold; a group's only
    # child keeps accepting until its replacement runs, by at most a
    # quarter (README), which takes a slow machine (make asan) to see
    assert max(counts.values()) <= 100 + 100 // 4, counts
    assert sum(c > 100 + 4 for c in counts.values()) <= 2, counts
    # replacements went to the group being recycled: every group
    # always had children, and all four groups were served again (the
    # log: the group of every child started during the load)
    by_group = {}
    for _, pid, _, _, grp in gens:
        by_group[grp] = by_group.get(grp, 0) + 1
    assert sorted(by_group) == [0, 1, 2, 3], by_group
    assert min(by_group.values()) >= 3, by_group
    # A retiring child may take a listener's wake-up with it as it lets go
    # of the listener; its siblings re-arm theirs once a slice (1 s), so a
    # connection waits one slice at most (it waited until the next arrival
    # before): 1001 ms was seen once in a full suite run.
    assert longest is not None and longest < 1500, \
        "a request waited %s ms\n%s" % (longest, out)
    time.sleep(1.5)
    assert len(h.children()) >= 4
    for _ in range(20):
        assert fetch("127.0.0.1", h.port, "/small.txt")[0] == 200
    assert bad_log_lines(h) == []
    assert "exit signal" not in h.log()


@pytest.mark.parametrize("strategy", ["mutex", "reuseport"])
def test_accept_recycling_child_holding_a_connection(httpd, strategy):
    """ServerLimit 2 = 2 children (2 reuseport groups, one child each);
    MaxConnectionsPerChild 10.  Child A holds an idle keep-alive
    connection when it reaches its limit, so it keeps its slot for up to
    KeepAliveTimeout (5 s) and no replacement can start meanwhile.  Fresh
    connections must still be served at once by the other child: with a
    shared listener (mutex) they are; with reuseport, those the kernel
    hashes to A's group must not wait for A to go.  (mutex is the
    control: same scenario, same assertions.)"""
    extra = ["ReusePortGroups 2"] if strategy == "reuseport" else []
    h = httpd(conf=cfg("StartServers 2", "ServerLimit 2", "ThreadLimit 4",
                       "ThreadsPerChild 4", "MaxRequestWorkers 8",
                       "MinSpareThreads 1", "MaxSpareThreads 64",
                       "MaxConnectionsPerChild 10",
                       "AcceptStrategy %s" % strategy, DEBUG, *extra))
    h.start()
    kids = settle(h, count=2)
    ka = keepalive_open(h, "ka")
    try:
        # the access log line follows the response by a moment
        holder = h.wait_for(lambda: list(served_by(h, "?ka")), timeout=3,
                            interval=0.02, what="keep-alive request logged")
        assert len(holder) == 1 and holder[0] in kids, holder
        # 60 fresh connections, one at a time and each timed: the holder
        # reaches its limit (10) early and keeps its slot, holding the
        # keep-alive connection for 5 s; the other child serves, retires
        # and is replaced in its own slot
        results = []
        for i in range(60):
            results.append(try_fetch("127.0.0.1", h.port,
                                     "/small.txt?rec%d" % i, timeout=10))
        holder_done = wait_logged(h, "?rec", 60).get(holder[0], 0)
        times = sorted(t for _, t in results)
        bad = [r for r in results if r[0] != 200]
        slow = [round(t, 3) for _, t in results if t >= 1.0]
        print("\n%s: 60 fresh connections while a retiring child holds a "
              "keep-alive connection: max %.3f s, %d >= 1 s %s, %d failed;"
              " holder served %d" % (strategy, times[-1], len(slow), slow,
                                     len(bad), holder_done))
    finally:
        ka.close()
    assert bad == [], bad
    # the holder took part and reached its limit (its count also
    # includes the fixture's readiness probes): it exits by itself once
    # its keep-alive connection is gone
    assert holder_done >= 1, holder_done
    h.wait_for(lambda: holder[0] not in h.children(), timeout=3,
               what="the holder (pid %d) to retire" % holder[0])
    assert re.search(r"stopped: pid %d, gen 0, exit 0" % holder[0], h.log())
    # the other child reached its limit and was replaced (the log counts
    # every child started)
    assert len(started(h)) > 2, started(h)
    assert slow == [], "connections waited for a retiring child: %r s\n%s" \
        % (slow, "\n".join(l for l in h.log().splitlines()
                           if "error" in l or "stopped" in l
                           or "started" in l)[-3000:])


# -- ThreadsPerChild 1: blocking accept ---------------------------------------

TPC1_BASE = ("StartServers 3", "ServerLimit 4", "ThreadLimit 1",
             "ThreadsPerChild 1", "MaxRequestWorkers 4", "MinSpareServers 1",
             "MaxSpareServers 4")


@pytest.mark.parametrize("strategy", ["exclusive", "reuseport"])
def test_accept_tpc1_children_block_in_accept(httpd, strategy):
    """ThreadsPerChild 1, AsyncConnections Off (the default there), one
    Listen: each child blocks in accept() itself on a blocking listener,
    as prefork's children do (one system call per connection), and the
    kernel's first-come order keeps the spread even.  A graceful restart
    to AsyncConnections On makes the listener non-blocking (its children
    wait in epoll) and the old children leave; a graceful restart back
    keeps it non-blocking (an old child of a non-blocking generation may
    still be accepting); a hard restart makes it blocking again."""
    conf = cfg(*TPC1_BASE, "AcceptStrategy %s" % strategy, DEBUG)
    h = httpd(conf=conf)
    h.start()
    kids = settle(h, count=3)
    children_waiting_in(h, kids, "accept")
    modes = listener_modes(kids, h.port)
    assert all(m == {"blocking"} for m in modes.values()), modes
    for i in range(60):
        assert fetch("127.0.0.1", h.port, "/small.txt?blk%d" % i)[0] == 200
    spread = wait_logged(h, "?blk", 60)
    print("\n%s, ThreadsPerChild 1, blocking accept: 60 requests one at a "
          "time served per child %r" % (strategy, sorted(spread.values())))
    # the spare logic may add a child meanwhile (children in their
    # lingering close count as busy); the first three must share evenly
    assert set(kids) <= set(spread) \
        and min(spread[k] for k in kids) >= 10, spread

    def generation(extra, where, mode):
        old = set(h.children())
        h.set_conf(conf + "\n" + extra)
        h.graceful()
        h.wait_for(lambda: not old & set(h.children())
                   and len(h.children()) == 3, timeout=10,
                   what="the old children to leave (%s)" % extra)
        new = settle(h, count=3)
        children_waiting_in(h, new, where)
        modes = listener_modes(new, h.port)
        assert all(m == {mode} for m in modes.values()), (extra, modes)
        assert fetch("127.0.0.1", h.port, "/small.txt")[0] == 200
        return new

    generation("AsyncConnections On", "epoll", "nonblocking")
    generation("AsyncConnections Off", "epoll", "nonblocking")
    old = set(h.children())
    h.restart()
    h.wait_for(lambda: not old & set(h.children()), timeout=10,
               what="new children after the hard restart")
    kids = settle(h, count=3)
    children_waiting_in(h, kids, "accept")
    assert fetch("127.0.0.1", h.port, "/small.txt")[0] == 200
    assert h.proc.poll() is None
    assert bad_log_lines(h) == []


def test_accept_tpc1_two_listeners_wait_in_epoll(httpd):
    """Two Listens: a child cannot block on one of them, so it waits in
    its epoll set and the listeners stay non-blocking."""
    h = httpd(conf=cfg(*TPC1_BASE, "AcceptStrategy exclusive", DEBUG),
              listen=BOTH)
    h.start()
    kids = settle(h, count=3)
    children_waiting_in(h, kids, "epoll")
    modes = listener_modes(kids, h.port)
    assert all(m == {"nonblocking"} for m in modes.values()), modes
    assert fetch("127.0.0.1", h.port, "/small.txt")[0] == 200
    assert fetch("::1", h.port, "/small.txt")[0] == 200


# -- graceful stop ------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["reuseport", "exclusive"])
def test_accept_graceful_stop_with_requests_in_flight(httpd, strategy):
    """SIGWINCH with 3 children (3 reuseport groups) and requests in
    flight: at once no connection is accepted or queued any more (every
    connect is refused), no child is started after the signal, the
    in-flight requests complete and the server exits within 5 s of the
    last one."""
    extra = ["ReusePortGroups 3"] if strategy == "reuseport" else []
    h = httpd(conf=cfg("StartServers 3", "ServerLimit 4", "ThreadLimit 4",
                       "ThreadsPerChild 4", "MaxRequestWorkers 16",
                       "MinSpareThreads 1", "MaxSpareThreads 64",
                       "AcceptStrategy %s" % strategy,
                       "GracefulShutdownTimeout 20", DEBUG, *extra))
    h.start()
    kids = settle(h, count=3)
    # 6 requests in flight: with 3 groups, all on one child 1 time in 243
    inflight = []
    try:
        for i in range(6):
            c = socket.create_connection(("127.0.0.1", h.port), 10)
            inflight.append(c)
            c.sendall(("GET /small.txt?stop%d HTTP/1.1\r\nHost: t\r\n"
                       % i).encode())
        time.sleep(0.5)
        n_started = len(started(h))
        h.signal(signal.SIGWINCH)
        try:
            h.wait_for(lambda: not listen_inodes(h.port), timeout=3,
                       interval=0.02, what="every listener closed")
            still = None
        except AssertionError:
            still = holders(h.port)
        refused = 0
        for _ in range(30):
            try:
                with socket.create_connection(("127.0.0.1", h.port), 1):
                    pass
            except ConnectionRefusedError:
                refused += 1
            except OSError:
                pass   # a timeout: queued, or worse
        assert h.proc.poll() is None, "exited with requests in flight"
        answers = []
        for c in inflight:
            c.sendall(b"Connection: close\r\n\r\n")
            c.settimeout(10)
            answers.append(read_to_eof(c))
        t_done = time.monotonic()
    finally:
        for c in inflight:
            c.close()
    try:
        rc = h.proc.wait(8)
    except subprocess.TimeoutExpired:
        rc = None
    took = time.monotonic() - t_done
    # the log: children started after the signal, and the groups of
    # children of a server that has exited
    late = started(h)[n_started:]
    groups = group_of(h)
    print("\n%s graceful stop: %d/30 connects refused; listeners still "
          "open after 3 s: %s; children started after SIGWINCH: %r; exit "
          "%s %.1f s after the last response" % (
              strategy, refused,
              None if still is None else {
                  "pid %d (%s)" % (p, "parent" if p == h.pid else
                                   "group %s child" % groups.get(p)): len(x)
                  for p, x in still.items()},
              [(pid, grp) for _, pid, _, _, grp in late],
              rc, took))
    served = wait_logged(h, "?stop", 6)
    print("in-flight requests served by group: %r" % sorted(
        groups.get(p) for p in served for _ in range(served[p])))
    for data in answers:
        assert data.startswith(b"HTTP/1.1 200") and \
            data.endswith(b"0123456789abc\n"), data[:200]
    problems = []
    if late:
        problems.append("children started during the graceful stop: %r"
                        % late)
    if still is not None:
        problems.append("listeners still open 3 s after SIGWINCH, held by "
                        "%r" % still)
    if refused != 30:
        problems.append("%d of 30 connects not refused" % (30 - refused))
    if rc != 0 or took >= 5:
        problems.append("exit status %s %.1f s after the last response"
                        % (rc, took))
    assert problems == []
    assert set(kids) & set(h.children()) == set()
    assert bad_log_lines(h) == []


# -- dual stack: 127.0.0.1 and [::1] ------------------------------------------

@pytest.mark.parametrize("strategy", ["reuseport", "exclusive"])
def test_accept_ipv4_and_ipv6_together(httpd, strategy):
    """Listen on 127.0.0.1 and [::1] (same port): 40 fresh connections
    per address all succeed; with 3 reuseport groups both addresses are
    served by the children of every group."""
    extra = ["ReusePortGroups 3"] if strategy == "reuseport" else []
    h = httpd(listen=BOTH, child_status=True, conf=cfg(
        "StartServers 3", "ServerLimit 4", "ThreadLimit 4",
        "ThreadsPerChild 4", "MaxRequestWorkers 16", "MinSpareThreads 1",
        "MaxSpareThreads 64", "AcceptStrategy %s" % strategy, DEBUG,
        *extra))
    h.start()
    kids = settle(h, count=3)
    results = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for addr in ("127.0.0.1", "::1"):
            results[addr] = list(pool.map(
                lambda i, a=addr: try_fetch(a, h.port, "/small.txt?v6%d" % i),
                range(40)))
    for addr, res in results.items():
        bad = [r for r in res if r[0] != 200]
        assert bad == [], (addr, bad)
    done, failed, non2xx, out = run_load(
        "http://[::1]:%d/small.txt?v6ab" % h.port, 500, 8)
    assert (done, failed, non2xx) == (500, 0, 0), out
    wait_logged(h, "?v6", 80 + 500)
    by_client = clients_of(h, "?v6")
    print("\n%s: pids serving each address: %r" % (
        strategy, {a: sorted(p) for a, p in by_client.items()}))
    assert set(by_client) == {"127.0.0.1", "::1"}, by_client
    if strategy == "reuseport":
        groups = h.child_groups()
        assert sorted(groups[p] for p in kids) == [0, 1, 2], groups
        for addr, pids in by_client.items():
            assert pids == set(kids), (addr, pids, kids)
    assert h.children() == kids
    assert bad_log_lines(h) == []


# -- bad config and warnings --------------------------------------------------

@pytest.mark.parametrize("lines,words", [
    (["AcceptStrategy bogus"], ["AcceptStrategy", "bogus"]),
    (["AcceptStrategy"], ["AcceptStrategy"]),
    (["AcceptStrategy reuseport", "ReusePortGroups 0"],
     ["ReusePortGroups", "0"]),
    (["AcceptStrategy reuseport", "ReusePortGroups abc"],
     ["ReusePortGroups", "abc"]),
    (["AcceptStrategy reuseport", "ReusePortGroups -2"],
     ["ReusePortGroups", "-2"]),
    (["AcceptStrategy reuseport", "ReusePortGroups 2x"],
     ["ReusePortGroups", "2x"]),
    (["<VirtualHost 127.0.0.1:*>", "AcceptStrategy exclusive",
      "</VirtualHost>"], ["AcceptStrategy"]),
])
def test_accept_bad_config_rejected(httpd, lines, words):
    h = httpd(conf=cfg(*lines))
    r = h.configtest()
    out = r.stdout + r.stderr
    no_crash(r)
    assert r.returncode != 0, out
    for w in words:
        assert w in out, (w, out)
    # and a real start fails the same way, promptly
    p = h.cmd("-DFOREGROUND", timeout=20)
    no_crash(p)
    assert p.returncode != 0
    assert words[0] in p.stdout + p.stderr


@pytest.mark.parametrize("strategy", ["mutex", "preemptive", "exclusive"])
def test_accept_reuseport_groups_ignored_with_warning(httpd, strategy):
    """ReusePortGroups with another strategy: -t passes with a warning
    naming ReusePortGroups; the server starts, warns once, serves, and
    warns again in the error log after a graceful restart."""
    conf = cfg("StartServers 2", "ThreadsPerChild 4", "MaxRequestWorkers 16",
               "AcceptStrategy %s" % strategy, "ReusePortGroups 3", DEBUG)
    h = httpd(conf=conf)
    r = h.configtest()
    out = r.stdout + r.stderr
    no_crash(r)
    assert r.returncode == 0, out
    assert "ReusePortGroups" in out and strategy in out, out
    h.start()
    proc = h.proc
    done, failed, non2xx, ab = run_load(h.url("/small.txt"), 300, 4)
    assert (done, failed, non2xx) == (300, 0, 0), ab
    # every child runs the configured strategy, one group only (the log:
    # every child started so far, including any the spare logic retired)
    assert {(st, k) for _, _, _, st, k in started(h)} == {(strategy, 0)}
    before = set(h.children())
    h.graceful()
    h.wait_for(lambda: set(h.children()) - before, timeout=5,
               what="new generation")
    h.wait_for(lambda: "ReusePortGroups" in h.log(), timeout=5,
               what="warning in the error log after a restart")
    assert fetch("127.0.0.1", h.port, "/small.txt")[0] == 200
    assert h.stop() == 0
    console = proc.stdout.read().decode(errors="replace")
    assert console.count("ReusePortGroups") == 1, console
    assert bad_log_lines(h) == []


def test_accept_reuseport_groups_above_max_children_warns(httpd):
    """ReusePortGroups 8 where at most 4 children may run
    (MaxRequestWorkers 16 / ThreadsPerChild 4): a child per group is
    impossible, so the MPM uses 4 groups; like every other clamp of a
    configured value, that must be said (a warning naming
    ReusePortGroups), not done silently."""
    h = httpd(child_status=True,
              conf=cfg("StartServers 2", "ServerLimit 4", "ThreadLimit 4",
                       "ThreadsPerChild 4", "MaxRequestWorkers 16",
                       "AcceptStrategy reuseport", "ReusePortGroups 8",
                       DEBUG))
    r = h.configtest()
    no_crash(r)
    assert r.returncode == 0, r.stdout + r.stderr
    h.start()
    proc = h.proc
    kids = settle(h, count=4)
    assert sorted(h.child_groups()[p] for p in kids) == [0, 1, 2, 3]
    assert len(listen_inodes(h.port)) == 4
    assert fetch("127.0.0.1", h.port, "/small.txt")[0] == 200
    assert h.stop() == 0
    said = (r.stdout + r.stderr + proc.stdout.read().decode(errors="replace")
            + h.log())
    lines = [l for l in said.splitlines() if "ReusePortGroups" in l]
    print("\nReusePortGroups 8 with 4 children at most: %r" % lines)
    assert lines, "ReusePortGroups 8 silently reduced to 4 groups"


def test_accept_reuseport_groups_change_needs_full_restart(httpd):
    """ReusePortGroups 2 -> 3 on a graceful restart: the running 2 groups
    are kept (with a warning), requests keep succeeding."""
    base = ("StartServers 2", "ServerLimit 8", "ThreadLimit 4",
            "ThreadsPerChild 4", "MaxRequestWorkers 32",
            "MinSpareThreads 1", "MaxSpareThreads 64",
            "AcceptStrategy reuseport", DEBUG)
    h = httpd(conf=cfg(*base, "ReusePortGroups 2"))
    h.start()
    settle(h, count=2)
    load = Load(h.url("/small.txt?chg"), 200000, 6, timelimit=4)
    load.start()
    time.sleep(0.8)
    h.set_conf(cfg(*base, "ReusePortGroups 3"))
    before = set(h.children())
    h.graceful()
    h.wait_for(lambda: set(h.children()) - before, timeout=5,
               what="new generation")
    assert load.is_alive()
    done, failed, non2xx, out = load.finish()
    assert failed == 0 and non2xx == 0, out
    assert re.search(r"keeping 2 listener groups", h.log()), h.log()[-3000:]
    # the log: every child of generation 1, also any that has gone since
    gen1 = [k for _, _, g, _, k in started(h) if g == 1]
    assert gen1 and set(gen1) <= {0, 1}, started(h)
    assert bad_log_lines(h) == []

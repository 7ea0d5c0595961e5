"""MPM core, lifecycle: restarts, stops, crashes and recycling.

Covers graceful restart (SIGUSR1 and -k graceful) under load and with a
request in flight, restart (SIGHUP and -k restart), graceful-stop (SIGWINCH
and -k graceful-stop) with GracefulShutdownTimeout, stop (SIGTERM and
-k stop), -X, a child killed with SIGKILL (under load, and that it is
logged), MaxConnectionsPerChild recycling, and the absence of "internal
dummy connection" requests in the access log.

HYBTEST_CORE_MPM=worker runs the same tests on the stock worker MPM (to
check the tests themselves).
"""
import os
import re
import signal
import socket
import threading
import time

import pytest

from httpd_fixture import (CORE_MPM, Load, alive, bad_log_lines, cfg,
                           descendants, run_load, settle)

MPM = CORE_MPM

BASE = ("StartServers 2", "ServerLimit 16", "ThreadLimit 16",
        "ThreadsPerChild 4", "MaxRequestWorkers 64", "MinSpareThreads 2",
        "MaxSpareThreads 32")

K_CMD = {signal.SIGUSR1: "graceful", signal.SIGHUP: "restart",
         signal.SIGWINCH: "graceful-stop", signal.SIGTERM: "stop"}


def send(h, how, sig):
    """Deliver sig to the parent, directly or through `apache2 -k`."""
    if how == "signal":
        h.signal(sig)
    else:
        r = h.cmd("-k", K_CMD[sig])
        assert r.returncode == 0, (K_CMD[sig], r.stdout + r.stderr)


def read_response(f):
    """One HTTP response with a Content-Length from a socket file."""
    line = f.readline()
    if not line:
        return None
    m = re.match(rb"HTTP/1\.[01] (\d{3})", line)
    assert m, "bad status line %r" % line
    length = None
    while True:
        line = f.readline()
        assert line, "connection closed inside headers"
        if line in (b"\r\n", b"\n"):
            break
        k, v = line.split(b":", 1)
        if k.strip().lower() == b"content-length":
            length = int(v)
    body = f.read(length) if length is not None else f.read()
    return int(m.group(1)), body


def open_partial(h, path="/small.txt"):
    """A connection with half a request sent: a thread stays busy reading
    it until finish_partial() (or Timeout, 60 s by default)."""
    s = socket.create_connection(("127.0.0.1", h.port), 10)
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % path).encode())
    return s


def finish_partial(s):
    s.sendall(b"Connection: close\r\n\r\n")
    s.settimeout(15)
    return read_response(s.makefile("rb"))


def small_txt(h):
    with open(os.path.join(h.docroot, "small.txt"), "rb") as f:
        return f.read()


def get_ok(h, path="/small.txt"):
    with h.get(path, timeout=10) as r:
        return r.status == 200 and r.read() == small_txt(h)


def connect_refused(h):
    try:
        with socket.create_connection(("127.0.0.1", h.port), 1):
            return False
    except OSError:
        return True


# -- graceful restart ----------------------------------------------------

def test_core_graceful_restart_under_load(httpd):
    """5 graceful restarts while ab runs: no request fails, every
    restart brings a new generation of children."""
    h = httpd(mpm=MPM, conf=cfg(*BASE)).start()
    first = set(settle(h))
    load = Load(h.url("/small.txt"), requests=200000, concurrency=20,
                timelimit=7)
    load.start()
    time.sleep(0.7)
    generations = []
    for i in range(5):
        before = set(h.children())
        h.graceful()
        # a child that did not exist before the signal appears
        new = h.wait_for(lambda: set(h.children()) - before, timeout=5,
                         what="new generation after graceful %d" % (i + 1))
        generations.append(new)
        time.sleep(0.6)
    assert load.is_alive(), "ab ended before the 5th graceful: test invalid"
    done, failed, non2xx, out = load.finish()
    assert failed == 0 and non2xx == 0, out
    assert done >= 2000, out
    # the old generations are all gone, only new children remain
    h.wait_for(lambda: not (set(h.children()) & first), timeout=15,
               what="first generation to exit")
    assert h.proc.poll() is None
    assert get_ok(h)
    assert bad_log_lines(h) == []


@pytest.mark.parametrize("how", ["signal", "k"])
def test_core_graceful_restart_inflight_request_completes(httpd, how):
    h = httpd(mpm=MPM, conf=cfg(*BASE)).start()
    old = set(settle(h))
    s = open_partial(h)
    try:
        time.sleep(0.5)
        send(h, how, signal.SIGUSR1)
        h.wait_for(lambda: set(h.children()) - old, timeout=5,
                   what="new generation")
        assert get_ok(h)  # the new generation serves
        # the old child holding our request is still there, finishing it
        assert set(h.children()) & old
        status, body = finish_partial(s)
    finally:
        s.close()
    assert status == 200 and body == small_txt(h)
    h.wait_for(lambda: not (set(h.children()) & old), timeout=10,
               what="old generation to exit")
    assert bad_log_lines(h) == []


def test_core_graceful_restart_rereads_config(httpd):
    h = httpd(mpm=MPM, conf=cfg(*BASE)).start()
    with pytest.raises(Exception) as e:
        h.get("/again/small.txt")
    assert getattr(e.value, "code", None) == 404
    parent = h.pid
    h.set_conf(cfg(*BASE, "Alias /again %s" % h.docroot))
    h.graceful()
    h.wait_for(lambda: _status_of(h, "/again/small.txt") == 200, timeout=10,
               what="new config in effect")
    assert h.pid == parent and h.proc.poll() is None


def _status_of(h, path):
    try:
        with h.get(path) as r:
            return r.status
    except Exception as e:
        return getattr(e, "code", None)


# -- hard restart ------------------------------------------------------------

@pytest.mark.parametrize("how", ["signal", "k"])
def test_core_restart_replaces_children_and_rereads_config(httpd, how):
    h = httpd(mpm=MPM, conf=cfg(*BASE, "ThreadsPerChild 2"))
    h.start()
    old = set(settle(h))
    st = h.status_auto()
    assert int(st["BusyWorkers"]) + int(st["IdleWorkers"]) == 2 * len(old)
    h.set_conf(cfg(*BASE, "ThreadsPerChild 3"))
    send(h, how, signal.SIGHUP)
    h.wait_for(lambda: not (set(h.children()) & old) and h.children(),
               timeout=10, what="all children replaced")
    assert h.proc.poll() is None
    kids = settle(h)

    def sb_ok():
        st = h.status_auto()
        return int(st["BusyWorkers"]) + int(st["IdleWorkers"]) == \
            3 * len(h.children())
    h.wait_for(sb_ok, timeout=5, what="scoreboard with ThreadsPerChild 3")
    assert get_ok(h)
    done, failed, non2xx, out = run_load(h.url("/small.txt"), 1000, 10)
    assert (done, failed, non2xx) == (1000, 0, 0), out
    assert bad_log_lines(h) == []
    assert kids


# -- graceful stop -----------------------------------------------------------

@pytest.mark.parametrize("how", ["signal", "k"])
def test_core_graceful_stop_finishes_inflight_request(httpd, how):
    h = httpd(mpm=MPM, conf=cfg(*BASE, "GracefulShutdownTimeout 20"))
    h.start()
    settle(h)
    s = open_partial(h)
    try:
        time.sleep(0.5)
        send(h, how, signal.SIGWINCH)
        # stops listening at once, but keeps the in-flight request
        h.wait_for(lambda: connect_refused(h), timeout=5,
                   what="listeners closed")
        time.sleep(1.0)
        assert h.proc.poll() is None, "exited with a request in flight"
        status, body = finish_partial(s)
        t0 = time.time()
    finally:
        s.close()
    assert status == 200 and body == small_txt(h)
    rc = h.proc.wait(10)
    assert time.time() - t0 < 5, "slow exit after the last request"
    assert rc == 0
    assert not os.path.exists(h.pidfile)
    assert [p for p in h.seen_pids if alive(p)] == []
    assert bad_log_lines(h) == []


@pytest.mark.parametrize("how", ["signal", "k"])
def test_core_graceful_stop_idle_server(httpd, how):
    """Nothing in flight: graceful-stop is quick (not GracefulShutdownTimeout
    long), clean, and starts no new children on the way out."""
    h = httpd(mpm=MPM, conf=cfg(*BASE, "GracefulShutdownTimeout 30"))
    h.start()
    kids = set(settle(h))
    t0 = time.time()
    send(h, how, signal.SIGWINCH)
    seen = set()
    while h.proc.poll() is None and time.time() - t0 < 10:
        seen.update(h.children())
        time.sleep(0.05)
    took = time.time() - t0
    state = "rc=%s after %.1f s, children started meanwhile: %s" % (
        h.proc.poll(), took, sorted(seen - kids))
    assert h.proc.poll() is not None, "still running; " + state
    assert seen - kids == set(), state
    assert h.proc.returncode == 0, state
    assert took < 5, state
    assert not os.path.exists(h.pidfile)
    assert [p for p in kids if alive(p)] == []
    assert bad_log_lines(h) == []


def test_core_graceful_stop_honours_timeout(httpd):
    """A request that never completes holds the server only until
    GracefulShutdownTimeout (3 s), not until the 60 s Timeout; once the
    timeout expires the rest takes no longer than a plain stop (< 5 s, as
    in test_core_stop).  Stock worker needs ~13 s here (it waits ~10 s in
    ap_reclaim_child_processes), so it fails this test."""
    h = httpd(mpm=MPM, conf=cfg(*BASE, "GracefulShutdownTimeout 3"))
    h.start()
    settle(h)
    s = open_partial(h)
    try:
        time.sleep(0.5)
        t0 = time.time()
        h.signal(signal.SIGWINCH)
        time.sleep(1.5)
        assert h.proc.poll() is None, "did not wait for the in-flight request"
        rc = h.proc.wait(12)
        took = time.time() - t0
    finally:
        s.close()
    assert 2.5 <= took <= 8, took
    assert rc == 0
    time.sleep(0.5)
    assert [p for p in h.seen_pids if alive(p)] == []


# -- stop --------------------------------------------------------------------

@pytest.mark.parametrize("how", ["signal", "k"])
def test_core_stop(httpd, how):
    """SIGTERM stops at once, even with a request in flight and an idle
    keep-alive connection; pid file removed, no process left."""
    h = httpd(mpm=MPM, conf=cfg(*BASE)).start()
    kids = settle(h)
    s = open_partial(h)
    ka = socket.create_connection(("127.0.0.1", h.port), 10)
    ka.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(ka.makefile("rb"))[0] == 200
    try:
        time.sleep(0.3)
        t0 = time.time()
        send(h, how, signal.SIGTERM)
        rc = h.proc.wait(15)
        took = time.time() - t0
    finally:
        s.close()
        ka.close()
    assert took < 5, took
    assert rc == 0
    assert not os.path.exists(h.pidfile)
    time.sleep(0.3)
    assert [p for p in kids if alive(p)] == []
    assert bad_log_lines(h) == []


def test_core_single_process_X(httpd):
    h = httpd(mpm=MPM, conf=cfg(*BASE))
    h.start(extra=("-X",))
    time.sleep(1.5)
    assert h.children() == []
    assert descendants(h.pid) == []
    assert get_ok(h)
    done, failed, non2xx, out = run_load(h.url("/10k.bin"), 500, 4)
    assert (done, failed, non2xx) == (500, 0, 0), out
    with open(h.access_log) as f:
        pids = {int(l.split()[-1]) for l in f}
    assert pids == {h.pid}, pids
    h.signal(signal.SIGTERM)
    rc = h.proc.wait(10)
    assert rc == 0


# -- crashes -----------------------------------------------------------------

def test_core_killed_child_replaced_under_load(httpd):
    tpc = 4
    h = httpd(mpm=MPM, conf=cfg(
        "StartServers 2", "ServerLimit 2", "ThreadLimit 4",
        "ThreadsPerChild %d" % tpc, "MaxRequestWorkers 8",
        "MinSpareThreads 1", "MaxSpareThreads 8"))
    h.start()
    before = set(settle(h))
    assert len(before) == 2
    load = Load(h.url("/10k.bin"), requests=200000, concurrency=8,
                timelimit=6)
    load.start()
    time.sleep(1.5)
    victim = sorted(before)[0]
    os.kill(victim, signal.SIGKILL)
    t0 = time.time()
    kids = h.wait_for(lambda: (lambda k: k if len(k) == 2 and victim not in k
                               else None)(h.children()),
                      timeout=5, what="replacement child")
    replaced_in = time.time() - t0
    assert set(kids) - before, "no new child"
    assert not os.path.exists("/proc/%d" % victim), "victim not reaped"
    assert load.is_alive(), "ab ended before the kill: test invalid"
    done, failed, non2xx, out = load.finish()
    # only what was in flight on the killed child (<= its threads) may fail
    assert failed <= tpc, out
    assert non2xx == 0, out
    assert done >= 1000, out
    assert replaced_in < 3, replaced_in
    assert get_ok(h)
    assert len(settle(h)) == 2


def test_core_killed_child_is_logged(httpd):
    h = httpd(mpm=MPM, conf=cfg(*BASE)).start()
    before = set(settle(h))
    victim = sorted(before)[-1]
    os.kill(victim, signal.SIGKILL)
    h.wait_for(lambda: victim not in h.children()
               and len(h.children()) == len(before), timeout=5,
               what="replacement")
    h.wait_for(lambda: [l for l in h.log().splitlines()
                        if str(victim) in l and "pid %d:" % victim not in l],
               timeout=3, what="a log line about pid %d" % victim)
    assert get_ok(h)


def test_core_all_children_killed_at_once(httpd):
    """Every child SIGKILLed together (as an OOM killer might): all are
    reaped, each is logged, the server is back to 3 children and serves."""
    h = httpd(mpm=MPM, conf=cfg(*BASE, "StartServers 3",
                                "MinSpareThreads 12", "MaxSpareThreads 16"))
    h.start()  # the spare settings want 3 children too
    victims = settle(h)
    assert len(victims) == 3
    for v in victims:
        os.kill(v, signal.SIGKILL)
    h.wait_for(lambda: len(h.children()) == 3 and
               not set(h.children()) & set(victims), timeout=5,
               what="3 new children")
    assert h.proc.poll() is None
    assert get_ok(h)
    done, failed, non2xx, out = run_load(h.url("/small.txt"), 1000, 8)
    assert (done, failed, non2xx) == (1000, 0, 0), out
    for v in victims:
        assert not os.path.exists("/proc/%d" % v), "pid %d not reaped" % v
        assert [l for l in h.log().splitlines()
                if str(v) in l and "pid %d:" % v not in l], \
            "pid %d not logged" % v


# -- recycling ---------------------------------------------------------------

def test_core_max_connections_per_child(httpd):
    """MaxConnectionsPerChild 50 under ab -c 8 (2000 connections): nothing
    fails, children are recycled (<= 50 + threads each, many pids), and
    recycling is staggered so the server never stalls."""
    h = httpd(mpm=MPM, conf=cfg(*BASE, "MaxConnectionsPerChild 50"))
    h.start()
    first = set(settle(h))
    seen, stop = set(first), threading.Event()

    def watch():
        while not stop.is_set():
            seen.update(h.children())
            time.sleep(0.02)
    w = threading.Thread(target=watch, daemon=True)
    w.start()
    try:
        done, failed, non2xx, out = run_load(h.url("/small.txt"), 2000, 8)
    finally:
        stop.set()
        w.join()
    assert (done, failed, non2xx) == (2000, 0, 0), out
    # staggered: never all children retiring at once, so no request waits
    # for the parent's next maintenance tick (stock worker: ~1000 ms)
    longest = int(re.search(r"^\s*100%\s+(\d+)", out, re.M).group(1))
    assert longest < 500, "a request waited %d ms\n%s" % (longest, out)
    # 2000 connections at <= 50 per child need many children
    with open(h.access_log) as f:
        per_pid = {}
        for l in f:
            pid = int(l.split()[-1])
            per_pid[pid] = per_pid.get(pid, 0) + 1
    assert len(per_pid) >= 2000 // 50 * 3 // 4, per_pid
    # a child may finish the connections its threads already hold
    assert max(per_pid.values()) <= 50 + 4, per_pid
    assert len(seen - first) >= 5, seen
    assert get_ok(h)
    assert bad_log_lines(h) == []
    assert not h.log_matches(r"exit signal")


# -- dummy connections -------------------------------------------------------

def test_core_no_internal_dummy_connection_in_access_log(httpd):
    h = httpd(mpm=MPM, conf=cfg(
        "StartServers 4", "ServerLimit 8", "ThreadLimit 4",
        "ThreadsPerChild 2", "MaxRequestWorkers 16", "MinSpareThreads 1",
        "MaxSpareThreads 4",
        'CustomLog logs/ua.log "%r|%{User-Agent}i"'))
    h.start()
    # idle children above MaxSpareThreads get retired
    h.wait_for(lambda: len(h.children()) <= 2, timeout=10,
               what="spare children retired")
    for _ in range(3):
        before = set(h.children())
        h.graceful()
        h.wait_for(lambda: h.children() and
                   not (set(h.children()) & before), timeout=10,
                   what="generation replaced")
        assert get_ok(h)
    # graceful-stop wakes its children too; whether it finishes in time is
    # test_core_graceful_stop_*'s business, here only the logs count
    h.signal(signal.SIGWINCH)
    t0 = time.time()
    while h.proc.poll() is None and time.time() - t0 < 8:
        time.sleep(0.1)
    h.stop()
    with open(os.path.join(h.logs, "ua.log")) as f:
        ua = f.read()
    with open(h.access_log) as f:
        access = f.read()
    assert "internal dummy connection" not in ua, ua
    assert "OPTIONS *" not in access, access
    assert access.count('"GET /small.txt') == 3

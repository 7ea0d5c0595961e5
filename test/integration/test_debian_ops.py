"""Issue 12, what a Debian administrator ran into (defects 1, 2, 3, 5, 6's
start-up warning and 9).  Each test drives the stock apache2 with a
private config and checks what the operator sees: the exit status and the
terminal output of apache2 -t / -V / start, or the error log.

These tests describe the fixed behaviour; the fixes are in mpm_src/.  On
the code they were written against they fail as follows:
  1  two MPMs, mpm_hybrid second, then ThreadsPerChild: apache2 -t, -V and
     start die with SIGSEGV (rc 139 in a shell) instead of AH00534
  2  ThreadsPerChild 1 + mod_http2 + Protocols h2c: requests run on
     mod_http2's worker threads, not on the child's only thread
  3  MaxConnectionsPerChild -1: apache2 -t says Syntax OK
  5  ThreadsPerChild 25 -> 1 by restart: apache2 -t and apache2 -k restart
     say nothing about ServerLimit staying at 16
  6  ThreadsPerChild 1 with MinSpareThreads 25 / MaxSpareThreads 75 (the
     old shipped mpm_hybrid.conf): no warning about the idle processes
  9  a child killed by a signal: two error-log lines for one crash
"""
import os
import re
import signal
import subprocess
import time

import pytest

from httpd_fixture import (STOCK_MODULES, build, settle, sleep_conf,
                            snapshot_modules)

STOCK_MPMS = ("event", "worker", "prefork")


def load(mpm, h):
    if mpm == "hybrid":
        return "LoadModule mpm_hybrid_module %s/mod_mpm_hybrid.so" % h.moddir
    return "LoadModule mpm_%s_module %s/mod_mpm_%s.so" % (mpm, STOCK_MODULES,
                                                          mpm)


def describe(r):
    return "rc %s\nstdout:\n%s\nstderr:\n%s" % (r.returncode, r.stdout,
                                               r.stderr)


# --- defect 1: mpm_hybrid beside other MPMs ------------------------------

ORDERS = [
    ("event", "hybrid"),            # the reproducer: it crashed
    ("hybrid", "event"),
    ("worker", "hybrid"),
    ("prefork", "hybrid"),
    ("hybrid", "prefork"),
    ("event", "worker", "hybrid"),
    ("event", "hybrid", "worker"),
    ("hybrid", "worker", "prefork"),
]


@pytest.mark.parametrize("tpc", ["ThreadsPerChild 25", "ThreadsPerChild 1",
                                 ""], ids=["tpc25", "tpc1", "no-tpc"])
@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_second_mpm_is_refused_not_a_crash(httpd, order, tpc):
    """Any number of other MPMs loaded beside mpm_hybrid, in any order:
    apache2 -t, -V and a start all end with httpd's own AH00534, exit
    status 1, never a signal."""
    # The fixture writes the first MPM's LoadModule itself; the others
    # follow as extra config, then the ThreadsPerChild line.
    h = httpd(mpm=order[0])
    if order[0] != "hybrid":
        build()  # the fixture copies our module only for mpm="hybrid"
        snapshot_modules(h.moddir)
    h.set_conf("\n".join([load(m, h) for m in order[1:]] + [tpc]))
    for args in (["-t"], ["-V"]):
        r = h.cmd(*args)
        out = r.stdout + r.stderr
        assert r.returncode == 1 and "AH00534" in out, (
            "apache2 %s with MPMs %s:\n%s" % (" ".join(args), order,
                                               describe(r)))
    h.start(wait=False)
    try:
        rc = h.proc.wait(15)
    except subprocess.TimeoutExpired:
        rc = None
    out = h.proc.stdout.read().decode(errors="replace") if rc is not None \
        else ""
    assert rc == 1 and "AH00534" in out + h.log(), (
        "start with MPMs %s: rc %s (negative = killed by that signal)\n%s"
        % (order, rc, out))


# --- defect 2: HTTP/2 at ThreadsPerChild 1 --------------------------------

def test_h2_at_tpc1_runs_no_request_on_a_second_thread(httpd, sleep_module):
    """ThreadsPerChild 1 promises that requests run on each child's only
    (main) thread, which is what non-thread-safe modules (Debian's mod_php)
    need.  With mod_http2 and `Protocols h2c http/1.1`, h2load multiplexes
    8 streams per connection: the sleep handler reports the thread each
    request ran on (X-Bench-Thread, logged), and none may say "other".  If
    h2 is kept off at ThreadsPerChild 1, the log says so, once, naming h2
    and ThreadsPerChild; if it is served, all requests succeed."""
    h = httpd(conf="\n".join([
        "ThreadsPerChild 1", "StartServers 2", "MinSpareServers 2",
        "MaxSpareServers 4", "MaxRequestWorkers 8",
        "Protocols h2c http/1.1", sleep_conf(sleep_module),
        'LogFormat "%{X-Bench-Thread}o %H %U" threadfmt',
        "CustomLog logs/thread.log threadfmt"]),
        modules=["http2"])
    h.start()
    settle(h)
    r = subprocess.run(["h2load", "-n", "48", "-c", "2", "-m", "8",
                        h.url("/sleep?ms=50")], capture_output=True,
                       text=True, timeout=60)
    # HTTP/1.1 still works, and runs on the main thread
    assert h.get_text("/sleep?ms=0") == "slept 0 ms\n"
    thread_log = os.path.join(h.logs, "thread.log")
    h.wait_for(lambda: os.path.exists(thread_log)
               and "HTTP/1.1 /sleep" in open(thread_log).read(),
               timeout=10, what="the access log")
    with open(thread_log) as f:
        lines = [l.split() for l in f if "/sleep" in l]
    others = [l for l in lines if l[0] != "main"]
    assert not others, (
        "%d of %d requests ran on a thread other than the child's main "
        "thread at ThreadsPerChild 1: %r\nh2load:\n%s"
        % (len(others), len(lines), others[:5], r.stdout[-1500:]))
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) "
                  r"succeeded", r.stdout)
    served = int(m.group(1)) if m else 0
    if served != 48:
        why = [l for l in h.log().splitlines()
               if re.search(r"(?i)\bh2c?\b|HTTP/2", l)
               and "ThreadsPerChild" in l]
        assert len(why) == 1, (
            "h2 not served (%d of 48) but no single line says why: %r"
            % (served, why))


# --- defect 3: negative MaxConnectionsPerChild ----------------------------

@pytest.mark.parametrize("value", ["-1", "-100"])
def test_negative_max_connections_per_child_is_refused(httpd, value):
    h = httpd(conf="MaxConnectionsPerChild %s" % value)
    r = h.configtest()
    assert r.returncode != 0 and "MaxConnectionsPerChild" in r.stderr, \
        describe(r)
    # 0 (never) stays valid
    h.set_conf("MaxConnectionsPerChild 0")
    r = h.configtest()
    assert r.returncode == 0, describe(r)


# --- defect 5: ThreadsPerChild 25 -> 1 by a restart -----------------------

def test_tpc_25_to_1_by_restart_warns_about_server_limit_on_terminal(httpd):
    """A server started with ThreadsPerChild 25 sized its scoreboard for
    ServerLimit 16.  Switching to ThreadsPerChild 1 (default ServerLimit
    256) with a restart keeps 16 processes at most; the operator must see
    that on the terminal: in apache2 -t and in the restart command's
    output, not only in the error log."""
    h = httpd(conf="ThreadsPerChild 25\nStartServers 1")
    h.start()
    settle(h)
    h.set_conf("ThreadsPerChild 1\nStartServers 1")
    r = h.configtest()
    assert r.returncode == 0, describe(r)
    assert "ServerLimit" in r.stdout + r.stderr, (
        "apache2 -t says nothing about ServerLimit\n" + describe(r))
    r = h.cmd("-k", "restart")
    assert r.returncode == 0, describe(r)
    assert "ServerLimit" in r.stdout + r.stderr, (
        "apache2 -k restart says nothing about ServerLimit\n" + describe(r))
    # the restart itself went through: the server still serves
    h.wait_for(lambda: h.log_matches(r"resuming normal operations")
               and len(h.log_matches(r"resuming normal operations")) >= 2,
               timeout=15, what="the restart")
    assert h.get_text("/small.txt") == "0123456789abc\n"


# --- defect 6: spare settings that keep dozens of idle processes ----------

IDLE_WARNING = re.compile(r"(?i)^.*(MaxSpareThreads|MinSpareThreads).*idle"
                          r".*process.*$", re.M)


def test_tpc1_with_threaded_spares_warns_about_idle_processes(httpd):
    """MinSpareThreads 25 / MaxSpareThreads 75 at ThreadsPerChild 1 (the
    old shipped conf) keep 25 to 75 idle processes: apache2 -t warns,
    naming the directive."""
    h = httpd(conf="\n".join(["ThreadsPerChild 1", "MinSpareThreads 25",
                              "MaxSpareThreads 75", "MaxRequestWorkers 150"]))
    r = h.configtest()
    assert r.returncode == 0, describe(r)
    assert IDLE_WARNING.search(r.stdout + r.stderr), (
        "no warning about idle processes\n" + describe(r))


def test_prefork_shaped_spares_do_not_warn(httpd):
    """The control: prefork's 5 / 10 at ThreadsPerChild 1 and worker's
    25 / 75 at ThreadsPerChild 25 give no such warning."""
    for conf in ("ThreadsPerChild 1\nMinSpareServers 5\nMaxSpareServers 10",
                 "ThreadsPerChild 25\nMinSpareThreads 25\nMaxSpareThreads 75"):
        h = httpd(conf=conf)
        r = h.configtest()
        assert r.returncode == 0, describe(r)
        assert not IDLE_WARNING.search(r.stdout + r.stderr), (
            conf + "\n" + describe(r))


# --- defect 9: a crash is logged once -------------------------------------

@pytest.mark.parametrize("tpc", [1, 4])
def test_child_crash_is_logged_once(httpd, tpc):
    h = httpd(conf="ThreadsPerChild %d\nStartServers 2" % tpc)
    h.start()
    kids = settle(h)
    victim = kids[0]
    os.kill(victim, signal.SIGSEGV)
    h.wait_for(lambda: victim not in h.children() and len(h.children()) >= 2,
               timeout=10, what="the child to be replaced")
    time.sleep(1.5)  # anything else the parent logs about it
    lines = [l for l in h.log().splitlines()
             if re.search(r"\bpid %d\b" % victim, l)]
    assert len(lines) == 1, "one crash, %d lines:\n%s" % (
        len(lines), "\n".join(lines))
    assert re.search(r"signal|Segmentation", lines[0]), lines[0]

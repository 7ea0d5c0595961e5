"""MPM core, configuration: what `apache2 -t` and a started server make of
the MPM's directives.

Covers every directive with a valid value (accepted silently, and in
effect where cheap to see: MaxClients as MaxRequestWorkers, a named
scoreboard that mod_status reads),
a stock prefork configuration with ThreadsPerChild 1, and a table of bad
values: each is either refused by `apache2 -t` (non-zero exit) or, where
httpd's own MPMs clamp, accepted with a warning; both ways the output names
the directive and the value, and nothing crashes or hangs.  A clamped
configuration must then start and serve.

HYBTEST_CORE_MPM=worker runs the same tests on the stock worker MPM (to
check the tests themselves: the hybrid-only and stricter cases fail there).
"""
import re
import subprocess
import time

import pytest

from httpd_fixture import CORE_MPM, cfg, run_load

MPM = CORE_MPM


def run_t(h):
    """apache2 -t: (exit code, combined output); a hang or crash fails."""
    try:
        r = h.cmd("-t", timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("apache2 -t hung (> 20 s)")
    out = r.stdout + r.stderr
    assert r.returncode >= 0, "apache2 -t killed by signal %d\n%s" % (
        -r.returncode, out)
    assert r.returncode < 128, "apache2 -t crashed (%d)\n%s" % (
        r.returncode, out)
    return r.returncode, out


def names_both(out, names, value):
    """A line of out naming one of names and, as a word, value."""
    for line in out.splitlines():
        for n in names:
            if n in line and re.search(r"(?<![\w-])%s(?![\w])" % re.escape(
                    value), line.replace(n, "", 1)):
                return line
    return None


# -- good configuration -------------------------------------------------------

def test_core_config_all_directives_accepted(httpd):
    h = httpd(mpm=MPM, conf="")
    h.set_conf(cfg(*[
        "StartServers 2",
        "ServerLimit 4",
        "ThreadLimit 8",
        "ThreadsPerChild 4",
        "MaxRequestWorkers 16",
        "MinSpareThreads 2",
        "MaxSpareThreads 12",
        "MaxConnectionsPerChild 10000",
        "AcceptStrategy preemptive",
        "ScoreBoardFile %s/scoreboard" % h.logs,
        "MaxMemFree 2048",
        "ThreadStackSize 1048576",
        "CoreDumpDirectory %s" % h.logs,
        "GracefulShutdownTimeout 5",
        "Mutex fcntl mpm-accept",
        "ListenBacklog 128",
    ]))
    rc, out = run_t(h)
    assert rc == 0, out
    assert out.strip() == "Syntax OK", out  # and not a single warning
    h.start()
    # with a named scoreboard (APR puts it in POSIX shm), status still works
    h.wait_for(lambda: len(h.children()) == 2, timeout=5, what="2 children")

    def all_threads_up():  # threads still starting are not counted
        st = h.status_auto()
        return st if int(st["BusyWorkers"]) + int(st["IdleWorkers"]) == \
            4 * len(h.children()) else None
    st = h.wait_for(all_threads_up, timeout=5, what="4 threads per child")
    assert st["ServerMPM"] == MPM
    done, failed, non2xx, o = run_load(h.url("/small.txt"), 1000, 8)
    assert (done, failed, non2xx) == (1000, 0, 0), o


def test_core_config_maxclients_is_maxrequestworkers(httpd):
    """MaxClients 8 with 4 threads per child caps the server at 2
    children even though StartServers and MinSpareThreads ask for more."""
    h = httpd(mpm=MPM, conf="\n".join([
        "StartServers 2", "ServerLimit 8", "ThreadLimit 4",
        "ThreadsPerChild 4", "MaxClients 8", "MinSpareThreads 20",
        "MaxSpareThreads 40"]))
    h.start()
    time.sleep(3.5)  # three maintenance ticks wanting more children
    assert len(h.children()) == 2, h.children()
    st = h.status_auto()
    assert int(st["BusyWorkers"]) + int(st["IdleWorkers"]) == 8, st


def test_core_config_prefork_config_with_one_thread(httpd):
    """Debian's mpm_prefork.conf plus ThreadsPerChild 1: -t is clean,
    -V says not threaded, and the server runs prefork-style."""
    h = httpd(mpm=MPM, conf=cfg(*[
        "ThreadsPerChild 1",
        "StartServers 5",
        "MinSpareServers 5",
        "MaxSpareServers 10",
        "MaxRequestWorkers 150",
        "MaxConnectionsPerChild 0"]))
    rc, out = run_t(h)
    assert rc == 0, out
    assert "Syntax OK" in out
    assert not re.search(r"(?i)warn|MaxRequestWorkers|ServerLimit", out), out
    v = h.cmd("-V").stdout
    assert re.search(r"^\s*threaded:\s+no\b", v, re.M), v
    h.start()
    h.wait_for(lambda: len(h.children()) >= 5, timeout=5, what="5 children")
    done, failed, non2xx, o = run_load(h.url("/10k.bin"), 1500, 10)
    assert (done, failed, non2xx) == (1500, 0, 0), o
    time.sleep(2)
    n = len(h.children())
    assert 5 <= n <= 15, n
    assert h.status_auto()["ServerMPM"] == MPM

    def one_thread_each():
        st = h.status_auto()
        return int(st["BusyWorkers"]) + int(st["IdleWorkers"]) == \
            len(h.children())
    h.wait_for(one_thread_each, timeout=5, what="a worker per child")


# -- bad configuration ----------------------------------------------------------

FATAL, EITHER = "fatal", "fatal-or-clamp"
TPC1 = "ThreadsPerChild 1\nThreadLimit 1"

# (directive line, names that may appear, bad value, context, outcome)
BAD = [
    ("ThreadsPerChild 0", ("ThreadsPerChild",), "0", "", EITHER),
    ("ThreadsPerChild -4", ("ThreadsPerChild",), "-4", "", EITHER),
    ("ThreadsPerChild 128", ("ThreadsPerChild",), "128", "ThreadLimit 64",
     EITHER),
    ("MaxRequestWorkers 3", ("MaxRequestWorkers",), "3",
     "ThreadsPerChild 8\nThreadLimit 8", EITHER),
    ("ThreadLimit 100000", ("ThreadLimit",), "100000", "ServerLimit 1\n"
     "ThreadsPerChild 4\nMaxRequestWorkers 4\nStartServers 1", EITHER),
    ("ServerLimit 100000", ("ServerLimit",), "100000", "ThreadLimit 1\n"
     "ThreadsPerChild 1\nMaxRequestWorkers 4\nStartServers 1", EITHER),
    ("AcceptStrategy bogus", ("AcceptStrategy",), "bogus", "", FATAL),
    ("AcceptStrategy", ("AcceptStrategy",), "", "", FATAL),
    ("ThreadsPerChild abc", ("ThreadsPerChild",), "abc", "", FATAL),
    ("ThreadsPerChild 4x", ("ThreadsPerChild",), "4x", "", FATAL),
    ("StartServers abc", ("StartServers",), "abc", "", FATAL),
    ("ServerLimit abc", ("ServerLimit",), "abc", "", FATAL),
    ("ThreadLimit abc", ("ThreadLimit",), "abc", "", FATAL),
    ("MaxRequestWorkers abc", ("MaxRequestWorkers",), "abc", "", FATAL),
    ("MaxClients abc", ("MaxClients", "MaxRequestWorkers"), "abc", "",
     FATAL),
    ("MinSpareThreads abc", ("MinSpareThreads",), "abc", "", FATAL),
    ("MaxSpareThreads abc", ("MaxSpareThreads",), "abc", "", FATAL),
    ("MinSpareServers abc", ("MinSpareServers",), "abc", TPC1, FATAL),
    ("MaxSpareServers abc", ("MaxSpareServers",), "abc", TPC1, FATAL),
]


@pytest.mark.parametrize("line,names,value,context,outcome", BAD,
                         ids=[b[0].replace(" ", "=") for b in BAD])
def test_core_config_bad_value(httpd, line, names, value, context, outcome):
    h = httpd(mpm=MPM, conf="\n".join(
        ["ServerLimit 16", "MaxRequestWorkers 64", context, line]))
    if "100000" in line:  # sanity: the clamp target stays small
        assert "Limit 1\n" in context
    rc, out = run_t(h)
    # the directive is the MPM's: never "Invalid command"
    assert "Invalid command" not in out, out
    if value:
        assert names_both(out, names, value), \
            "no line names %s and %r:\n%s" % (names[0], value, out)
    else:
        assert any(n in out for n in names), out
    if outcome == FATAL:
        assert rc != 0, "accepted:\n" + out
        assert "Syntax OK" not in out, out
        return
    if rc != 0:
        return  # refused: fine
    # clamped: a warning, then a server that starts and serves
    assert re.search(r"(?i)warn", names_both(out, names, value)), out
    h.start()
    with h.get("/small.txt") as r:
        assert r.status == 200
    assert h.children()

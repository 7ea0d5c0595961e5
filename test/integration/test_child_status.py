"""mod_child_status on every MPM: its formats, its counts and its fairness.

Each test starts a real apache2 (the `httpd` fixture) with the module and a
/child-status location, drives it with ab and checks what the module says
against what the test did (and against the access log, whose %P names the
child that served each request).
"""
import html.parser
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from httpd_fixture import (Load, free_port, read_to_eof, require_tool,
                           run_load, served_by, sleep_conf)

MPMS = ["prefork", "worker", "event", "hybrid"]

LOCATION = """
<Location /child-status>
  SetHandler child-status
  Require ip 127.0.0.1 ::1
</Location>
<Location /child-status-denied>
  SetHandler child-status
  Require all denied
</Location>
"""

# Enough children to compare, few enough threads that the spare-thread
# logic does not start or stop children in the middle of a test.
MPM_CONF = {
    "prefork": "StartServers 4\nMinSpareServers 4\nMaxSpareServers 8\n"
               "ServerLimit 8\nMaxRequestWorkers 8\n",
    "worker": "StartServers 3\nServerLimit 4\nThreadLimit 4\n"
              "ThreadsPerChild 4\nMaxRequestWorkers 16\n"
              "MinSpareThreads 4\nMaxSpareThreads 16\n",
    "event": "StartServers 3\nServerLimit 4\nThreadLimit 4\n"
             "ThreadsPerChild 4\nMaxRequestWorkers 16\n"
             "MinSpareThreads 4\nMaxSpareThreads 16\n",
    "hybrid": "StartServers 4\nThreadsPerChild 4\nMinSpareThreads 4\n"
              "MaxSpareThreads 64\nAcceptStrategy mutex\n",
}
START_SERVERS = {"prefork": 4, "worker": 3, "event": 3, "hybrid": 4}

CHILD_FIELDS = {
    "slot", "pid", "generation", "state", "threads_busy", "threads_idle",
    "connections", "requests", "bytes", "requests_per_second",
    "mean_request_ms", "recent_requests", "share", "accept_strategy",
    "accept_group", "accepts", "accept_waits", "accept_wait_us", "restarts",
    "last_exit",
}
TOP_FIELDS = {
    "server_version", "mpm", "time", "restart_time", "generation",
    "server_limit", "thread_limit", "accept_strategy", "accept_mutex",
    "mpm_stats", "totals", "fairness", "children",
}
FAIRNESS_FIELDS = {
    "window_seconds", "children", "requests", "jain", "max_share",
    "min_share", "spread_threshold", "verdict",
}
HYBRID_CHILD_FIELDS = ["accept_strategy", "accept_group", "accepts",
                       "accept_waits", "accept_wait_us"]


class Status:
    """A server with the module, and every status fetch it was sent (each
    one is itself a request the module counts once it is logged)."""

    def __init__(self, httpd, mpm, extra="", base=None, **kw):
        self.mpm = mpm
        self.fetches = 0
        base = MPM_CONF[mpm] if base is None else base
        self.h = httpd(mpm=mpm, modules=["child_status"],
                       conf=base + LOCATION + extra, **kw)

    def start(self):
        self.h.start()
        return self

    def text(self, query=""):
        self.fetches += 1
        return self.h.get_text("/child-status" + query)

    def json(self):
        return json.loads(self.text("?json"))

    def wait_children(self, n=None):
        """Until n children (StartServers by default) report ready, and a
        second more: fairness compares children only over the whole
        seconds they were accepting (cstatus_fair.h), so requests made in
        a child's first second are not judged."""
        n = n or START_SERVERS[self.mpm]

        def ready():
            doc = self.json()
            live = [c for c in doc["children"] if c["state"] == "ready"]
            return doc if len(live) >= n else None
        doc = self.h.wait_for(ready, timeout=20, interval=0.2,
                              what="%d ready children" % n)
        time.sleep(1.0)
        return doc

    def wait_requests(self, expected):
        """Until the module's total equals `expected` plus every earlier
        status fetch (the one being read is logged only after it)."""
        def settled():
            before = self.fetches
            doc = self.json()
            return doc if doc["totals"]["requests"] == expected + before \
                else None
        return self.h.wait_for(settled, timeout=10, interval=0.2,
                               what="%d requests counted" % expected)

    def load(self, n, concurrency, keepalive=False, path="/small.txt"):
        done, failed, non2xx, out = run_load(self.h.url(path), requests=n,
                                             concurrency=concurrency,
                                             keepalive=keepalive)
        assert (done, failed, non2xx) == (n, 0, 0), out
        return n


@pytest.fixture
def status(httpd):
    def make(mpm, extra="", base=None, **kw):
        return Status(httpd, mpm, extra, base, **kw).start()
    return make


def check_child(c, hybrid):
    assert CHILD_FIELDS <= set(c), sorted(CHILD_FIELDS - set(c))
    assert c["state"] in ("starting", "ready", "graceful", "dead")
    for k in ("slot", "pid", "generation", "threads_busy", "threads_idle"):
        assert isinstance(c[k], int) and c[k] >= 0, (k, c)
    for k in ("connections", "requests", "bytes"):
        assert isinstance(c[k], int), (k, c)
    assert set(c["requests_per_second"]) == {"1s", "10s", "60s"}
    for k in HYBRID_CHILD_FIELDS:
        if hybrid:
            assert c[k] is not None, (k, c)
        else:
            assert c[k] is None, (k, c)     # never invented
    if hybrid:
        assert c["accept_strategy"] == "mutex"
        assert isinstance(c["restarts"], int)


# -- formats -----------------------------------------------------------------

@pytest.mark.parametrize("mpm", MPMS)
def test_json_has_the_fields(status, mpm):
    s = status(mpm)
    first = s.json()
    # Nothing was served before the first fetch: no rate, no verdict.
    assert first["fairness"]["verdict"] == "idle"
    assert first["fairness"]["jain"] is None
    s.wait_children()
    s.load(100, 4)
    doc = s.wait_requests(100)

    assert TOP_FIELDS <= set(doc), sorted(TOP_FIELDS - set(doc))
    assert doc["mpm"] == mpm
    assert FAIRNESS_FIELDS <= set(doc["fairness"])
    assert doc["fairness"]["verdict"] in ("spread", "concentrated")
    assert 0 < doc["fairness"]["jain"] <= 1.0
    hybrid = mpm == "hybrid"
    assert doc["mpm_stats"] is hybrid
    if hybrid:
        assert doc["accept_strategy"] == "mutex"
        assert doc["accept_mutex"]
    else:
        assert doc["accept_strategy"] is None
        assert doc["accept_mutex"] is None
    live = [c for c in doc["children"] if c["state"] != "dead"]
    assert len(live) >= START_SERVERS[mpm]
    assert doc["totals"]["children"] == len(live)
    for c in doc["children"]:
        check_child(c, hybrid)
    pids = {c["pid"] for c in live}
    assert pids <= set(s.h.children()), (pids, s.h.children())
    if hybrid:
        assert sum(c["accepts"] for c in live) >= 100


@pytest.mark.parametrize("mpm", MPMS)
def test_prometheus_passes_promtool(status, mpm):
    promtool = require_tool("promtool")
    s = status(mpm)
    s.wait_children()
    s.load(50, 4)
    s.wait_requests(50)
    text = s.text("?prometheus")
    r = subprocess.run([promtool, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), \
        r.stdout + r.stderr + "\n" + text
    for family in ("child_status_requests_total", "child_status_slot_info",
                   "child_status_slot_busy_threads",
                   "child_status_slot_idle_threads",
                   "child_status_slot_requests_total",
                   "child_status_fairness_jain"):
        assert "# TYPE %s " % family in text, family
    total = re.findall(r"^child_status_requests_total (\d+)$", text, re.M)
    assert len(total) == 1 and int(total[0]) >= 50, total
    per_slot = re.findall(r'^child_status_slot_requests_total\{slot="\d+"\} '
                          r'(\d+)$', text, re.M)
    assert sum(int(v) for v in per_slot) >= 50
    # pid and generation are labels of the info series only
    for line in text.splitlines():
        if not line.startswith("#") and "pid=" in line:
            assert line.startswith("child_status_slot_info{"), line
    # what a stock MPM cannot count is left out, not shown as 0
    hybrid_only = ("child_status_connections_total",
                   "child_status_accept_lost_wakeups_total",
                   "child_status_accept_errors_total",
                   "child_status_child_restarts_total",
                   "child_status_slot_connections_total")
    for family in hybrid_only:
        assert ("# TYPE %s " % family in text) == (mpm == "hybrid"), family


class PageParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.rects = 0
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.rects += tag == "rect"

    def handle_data(self, data):
        self.text.append(data)


def parse_page(text):
    p = PageParser()
    p.feed(text)
    return p


@pytest.mark.parametrize("mpm", MPMS)
def test_html_has_table_and_svg(status, mpm):
    s = status(mpm)
    s.wait_children()
    s.load(50, 4)
    doc = s.wait_requests(50)
    with s.h.get("/child-status?refresh=7&bogus=1") as r:
        assert r.headers["Content-Type"].startswith("text/html")
        assert r.headers["Refresh"] == "7"
        page = parse_page(r.read().decode())
    s.fetches += 1
    names = [t for t, _ in page.tags]
    assert "table" in names and "svg" in names
    assert "script" not in names
    fair = doc["fairness"]["children"]
    assert page.rects == fair            # one bar per live child
    rows = [a for t, a in page.tags if t == "tr"]
    assert len(rows) >= len(doc["children"]) + 2    # header, children, total
    text = " ".join(page.text)
    assert "Per-child load" in text
    assert re.search(r"Work is\s+(spread|concentrated)", text), text

    # The same section on mod_status's own page, after its scoreboard.
    ss = s.h.get_text("/server-status")
    assert ss.index("Per-child load") > ss.index("Scoreboard Key")
    assert "<svg" in ss and 'class="cs-children"' in ss
    notable = s.h.get_text("/server-status?notable")
    assert "Per-child load" in notable and 'class="cs-children"' not in notable


def auto_keys(text):
    """Keys of a ?auto text, in order (the first line is the bare name)."""
    keys = []
    for i, line in enumerate(text.splitlines()):
        assert i == 0 or re.match(r"^[^:]+: ", line), repr(line)
        keys.append(line.split(":", 1)[0])
    return keys


# mod_status prints these only when a figure is non-zero (CPU time used,
# requests or bytes served within the uptime), so two servers may differ.
CONDITIONAL_AUTO_KEYS = {"CPULoad", "ReqPerSec", "BytesPerSec", "BytesPerReq",
                         "DurationPerReq"}


def stock_only(keys):
    return [k for k in keys if k not in CONDITIONAL_AUTO_KEYS]


def auto_after_a_second(h):
    # Which stock keys appear depends on traffic (BytesPerReq needs a
    # request) and uptime (ReqPerSec needs 1 s): make both the same.
    h.get_text("/small.txt")
    time.sleep(1.2)
    return h.get_text("/server-status?auto")


@pytest.mark.parametrize("mpm", MPMS)
def test_server_status_auto_is_a_superset(httpd, status, mpm):
    plain = httpd(mpm=mpm, conf=MPM_CONF[mpm])
    plain.start()
    before = auto_keys(auto_after_a_second(plain))
    plain.stop()

    s = status(mpm)
    text = auto_after_a_second(s.h)
    after = auto_keys(text)
    # Every stock key, in its place; ours only appended, all prefixed.
    first_ours = next(i for i, k in enumerate(after)
                      if k.startswith("ChildStatus"))
    stock, added = after[:first_ours], after[first_ours:]
    assert stock[-1] == "Scoreboard"
    assert stock_only(stock) == stock_only(before)
    assert all(k.startswith("ChildStatus") for k in added), added
    assert any(k.startswith("ChildStatusSlot") for k in added), added
    assert re.search(r"^ChildStatusVerdict: (idle|spread|concentrated)$",
                     text, re.M)
    # The handler's own ?auto is the same block.
    own = auto_keys(s.text("?auto"))
    assert own and all(k.startswith("ChildStatus") for k in own)


@pytest.mark.parametrize("mpm", MPMS)
def test_apache_exporter_still_parses_auto(status, mpm):
    """Debian's prometheus-apache-exporter reads /server-status?auto with
    our lines appended and still reports every stock figure."""
    exe = require_tool("prometheus-apache-exporter")
    s = status(mpm)
    s.wait_children()
    s.load(50, 4)
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--telemetry.address=127.0.0.1:%d" % port,
         "--scrape_uri=" + s.h.url("/server-status?auto")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def scrape():
            try:
                with urllib.request.urlopen(
                        "http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return None
        metrics = s.h.wait_for(scrape, timeout=15, what="exporter metrics")
    finally:
        proc.kill()
        log = proc.communicate(timeout=10)[0].decode("utf-8", "replace")
    assert re.search(r"^apache_up 1$", metrics, re.M), metrics
    for name in ("apache_accesses_total", "apache_uptime_seconds_total",
                 'apache_workers{state="idle"}', 'apache_scoreboard{state='):
        assert name in metrics, name
    assert "level=error" not in log, log


# -- counting ----------------------------------------------------------------

def access_log_pids(h):
    with open(h.access_log) as f:
        return [int(line.split()[-1]) for line in f if line.strip()]


@pytest.mark.parametrize("mpm", MPMS)
def test_per_child_counts_add_up(status, mpm):
    s = status(mpm)
    s.wait_children()
    made = s.load(400, 8)                     # a connection per request
    made += s.load(300, 3, keepalive=True)
    doc = s.wait_requests(made)
    counted = sum(c["requests"] for c in doc["children"])
    assert counted == doc["totals"]["requests"] == made + s.fetches - 1
    assert doc["totals"]["connections"] >= 400
    # All of it happened within the last minute: the 60 s rate holds it all.
    assert doc["totals"]["requests_per_second"]["60s"] * 60 == \
        pytest.approx(counted, abs=0.01)

    # Child by child, against the access log (%P): it also lists the fetch
    # just read, which the module counted only after answering.
    time.sleep(0.5)
    logged = access_log_pids(s.h)
    assert len(logged) == counted + 1
    per_pid = {}
    for pid in logged[:-1]:
        per_pid[pid] = per_pid.get(pid, 0) + 1
    ours = {c["pid"]: c["requests"] for c in doc["children"]
            if c["requests"]}
    assert ours == per_pid


@pytest.mark.parametrize("mpm", MPMS)
def test_one_keepalive_client_is_concentrated(status, mpm):
    s = status(mpm, extra="MaxKeepAliveRequests 0\n")
    s.wait_children()
    s.load(1500, 1, keepalive=True)
    doc = s.wait_requests(1500)
    f = doc["fairness"]
    assert f["children"] >= 2
    assert f["verdict"] == "concentrated", f
    assert f["jain"] < 0.6, f
    assert f["max_share"] > 0.9, f
    page = s.text()
    assert re.search(r"Work is <strong>concentrated</strong>", page)


def test_many_short_connections_on_hybrid_spread(status):
    """mpm_hybrid with one reuseport group per child: the kernel spreads
    new connections, so every child gets its part."""
    # ServerLimit 4: no child is added mid-run by the spare logic (a late
    # child would join with a small share and blur what is measured).
    s = status("hybrid", extra="AcceptStrategy reuseport\nServerLimit 4\n"
                               "MaxRequestWorkers 16\nReusePortGroups 4\n")
    s.wait_children()
    s.load(4000, 8)
    doc = s.wait_requests(4000)
    f = doc["fairness"]
    assert f["children"] == 4
    assert f["verdict"] == "spread", f
    assert f["jain"] >= 0.9, f
    assert doc["accept_strategy"] == "reuseport"


@pytest.mark.parametrize("mpm", ["prefork", "worker", "event"])
def test_listen_buckets_spread_stock_mpms(status, mpm):
    """The figure reacts on stock MPMs too: two SO_REUSEPORT listen buckets
    (ListenCoresBucketsRatio), one child each, share new connections."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("ListenCoresBucketsRatio 1 needs two CPUs for 2 buckets")
    conf = {"prefork": "StartServers 2\nMinSpareServers 1\n"
                       "MaxSpareServers 2\nServerLimit 2\n"
                       "MaxRequestWorkers 2\n",
            "worker": "StartServers 2\nServerLimit 2\nThreadLimit 8\n"
                      "ThreadsPerChild 8\nMaxRequestWorkers 16\n"
                      "MinSpareThreads 2\nMaxSpareThreads 16\n"}
    conf["event"] = conf["worker"]
    s = status(mpm, base="ListenCoresBucketsRatio 1\n" + conf[mpm])
    s.wait_children(2)
    s.load(2000, 8)
    f = s.wait_requests(2000)["fairness"]
    assert f["children"] == 2
    assert f["verdict"] == "spread" and f["jain"] >= 0.9, f


# -- behaviour -----------------------------------------------------------------

@pytest.mark.parametrize("mpm", MPMS)
def test_access_control_args_and_methods(status, mpm):
    s = status(mpm)
    with pytest.raises(Exception) as e:
        s.h.get("/child-status-denied?json")
    assert getattr(e.value, "code", None) == 403
    # Unknown arguments are ignored; the first format named wins.
    doc = json.loads(s.text("?nonsense=%3Cx%3E&json&prometheus&refresh=x"))
    assert doc["mpm"] == mpm
    assert s.text("?auto&json").startswith("ChildStatusMPM: ")
    r = subprocess.run([require_tool("curl"), "-s", "-o", "/dev/null", "-w",
                        "%{http_code}", "-X", "POST",
                        s.h.url("/child-status?json")],
                       capture_output=True, text=True, timeout=20)
    assert r.stdout == "405", r.stdout


@pytest.mark.parametrize("mpm", MPMS)
def test_graceful_restart_keeps_working(status, mpm):
    """The segment survives the restart; the new generation's children get
    fresh series and are the fairness population."""
    s = status(mpm)
    s.wait_children()
    s.load(100, 4)
    s.wait_requests(100)
    s.h.graceful()

    # How many children the MPM runs after a graceful restart is its own
    # business (worker/event replace them as the spare logic asks).
    def new_generation():
        doc = s.json()
        ready = [c for c in doc["children"]
                 if c["generation"] == doc["generation"]
                 and c["state"] == "ready"]
        return doc if doc["generation"] >= 1 and ready else None
    s.h.wait_for(new_generation, timeout=30, interval=0.3,
                 what="children of the new generation")
    s.load(200, 4)

    def counted():
        doc = s.json()
        cur = [c for c in doc["children"]
               if c["generation"] == doc["generation"]
               and c["state"] != "dead"]
        return doc if sum(c["requests"] for c in cur) >= 200 else None
    doc = s.h.wait_for(counted, timeout=10, interval=0.2,
                       what="requests of the new generation")
    # Every accepting child of the new generation is judged or, in its
    # first second, shown as too young; the old generation is judged
    # apart, never with the new one.
    f = doc["fairness"]
    accepting = [c for c in doc["children"]
                 if c["generation"] == doc["generation"]
                 and c["state"] in ("ready", "starting")]
    assert f["children"] + f["too_young"] == len(accepting), (f, accepting)
    assert all(c["judged"] or c["not_judged_because"] == "too young"
               for c in accepting), accepting
    assert f["verdict"] in ("spread", "concentrated", "idle")
    for c in doc["children"]:
        if c["generation"] < doc["generation"]:
            assert c["state"] in ("graceful", "dead"), c
            assert c["share"] is None or doc["fairness_previous"], c


@pytest.mark.parametrize("mpm", MPMS)
def test_killed_child_keeps_figures_or_starts_new_series(status, mpm):
    """A child that dies stays as `dead` with its final figures until its
    slot is reused; a new pid in the slot starts from zero.  mpm_hybrid
    also tells how the slot's previous child ended."""
    s = status(mpm)
    s.wait_children()
    s.load(300, 4)
    doc = s.wait_requests(300)
    victim = max(doc["children"], key=lambda c: c["requests"])
    os.kill(victim["pid"], signal.SIGKILL)

    def slot_changed():
        try:
            d = s.json()
        except OSError:
            # accepted by the victim just before it died: reset, ask again
            return None
        row = [c for c in d["children"] if c["slot"] == victim["slot"]]
        if row and (row[0]["pid"] != victim["pid"] or
                    row[0]["state"] == "dead"):
            return row[0]
        return None
    row = s.h.wait_for(slot_changed, timeout=15, interval=0.2,
                       what="slot %d to change" % victim["slot"])
    if row["pid"] == victim["pid"]:
        assert row["state"] == "dead" and row["share"] is None
        assert row["requests"] >= victim["requests"]
    else:
        assert row["requests"] < victim["requests"], (row, victim)
    if mpm == "hybrid":
        # The MPM reaps the child, then reports it; wait for that too.
        def exit_known():
            d = s.json()
            r = [c for c in d["children"] if c["slot"] == victim["slot"]]
            return r[0] if r and r[0]["last_exit"] else None
        row = s.h.wait_for(exit_known, timeout=10, interval=0.2,
                           what="last exit of slot %d" % victim["slot"])
        assert row["last_exit"] == {"why": "signal", "status": 9}, row


def test_loads_without_mod_status(status):
    doc = status("event", status=False).json()
    assert doc["mpm"] == "event"


# -- fairness over time -------------------------------------------------------

def sleeper(port, ms, out):
    """One /sleep?ms=ms request on its own connection; its status line
    goes to out."""
    with socket.create_connection(("127.0.0.1", port), 10) as c:
        c.settimeout(ms / 1000 + 20)
        c.sendall(b"GET /sleep?ms=%d HTTP/1.1\r\nHost: t\r\n"
                  b"Connection: close\r\n\r\n" % ms)
        out.append(read_to_eof(c)[:12])


def watch(s, seconds, interval=0.25, until=None):
    """Every status document for `seconds` (or until `until(doc)`)."""
    docs, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        doc = s.json()
        docs.append(doc)
        if until and until(doc):
            break
        time.sleep(interval)
    return docs


def verdicts(docs):
    return [(d["fairness"]["verdict"], round(d["fairness"]["jain"] or 0, 2),
             d["fairness"]["children"], d["fairness"]["too_young"])
            for d in docs]


def explain(doc):
    """The fairness of a document and what each child counted for it."""
    return "%r\n%s" % (doc["fairness"], "\n".join(
        "  slot %d pid %d gen %d %s: %.0f requests in %s s, %s" % (
            c["slot"], c["pid"], c["generation"], c["state"],
            c["recent_requests"] or 0, c["accepting_seconds"],
            "judged, share %s" % c["share"] if c["judged"]
            else c["not_judged_because"])
        for c in doc["children"]))


def assert_never_concentrated(docs, chance_for=0.0):
    """Every document "spread", or "idle" while nothing had been served.
    chance_for: a "concentrated" verdict that lasts less than that many
    seconds is let be.  The verdict is a chi-square test at a chance of
    0.001, and a child spawned a second ago has served a handful of
    requests, so over some 30 documents one can cross the limit by chance
    (it did with prefork: 32.4 against 31.4, for 0.75 s)."""
    since = None
    for d in docs:
        f = d["fairness"]
        if f["verdict"] == "concentrated" and chance_for > 0:
            since = d["time"] if since is None else since
            assert d["time"] - since < chance_for, \
                "concentrated for %.1f s\n%s\nall: %r" % (
                    d["time"] - since, explain(d), verdicts(docs))
            continue
        since = None
        assert f["verdict"] == "spread" or (
            f["verdict"] == "idle" and f["requests"] == 0), \
            "%s\nall: %r" % (explain(d), verdicts(docs))


def current(doc):
    return [c for c in doc["children"] if c["generation"] == doc["generation"]]


EVEN = ("AcceptStrategy mutex\nThreadsPerChild 4\nThreadLimit 4\n"
        "ServerLimit 16\nMaxRequestWorkers 64\nMaxSpareThreads 64\n")


def even_server(status, sleep_module, extra, children=3):
    """mpm_hybrid with the accept mutex (which hands connections over in
    turn, so the load is even) and /sleep, for a load that keeps several
    threads busy without using up the machine."""
    s = status("hybrid", base=EVEN + extra + sleep_conf(sleep_module) + "\n")
    s.wait_children(children)
    return s


def test_fairness_spawn_keeps_spread(status, sleep_module):
    """Under an even load a child spawned by the spare-thread logic takes
    a small part of the requests of the window only because it exists for
    part of it: it is shown as too young, not counted, and the verdict
    stays "spread" (before: "concentrated", Jain's index about 0.8)."""
    s = even_server(status, sleep_module,
                    "StartServers 3\nMinSpareThreads 6\n")
    first = {c["pid"] for c in current(s.json())}
    load = Load(s.h.url("/sleep?ms=20"), concurrency=8, timelimit=12,
                timeout=12 + 60)
    load.start()
    # from the start, so the new child is seen in its first second
    docs = watch(s, 11)
    load.finish()
    spawned = {c["pid"] for d in docs for c in current(d)} - first
    assert spawned, "no child was spawned: the test did not test"
    young_seen = [d for d in docs if any(
        c["pid"] in spawned and c["not_judged_because"] == "too young"
        for c in d["children"])]
    assert young_seen, verdicts(docs)
    assert any(c["pid"] in spawned and c["judged"]
               for c in current(docs[-1])), docs[-1]
    assert_never_concentrated(docs)


def test_fairness_retirement_keeps_spread(status, sleep_module):
    """MaxConnectionsPerChild under an even load: a retiring child is
    judged on the time it was accepting, its replacement is too young at
    first, and the verdict stays "spread" throughout."""
    s = even_server(status, sleep_module,
                    "StartServers 3\nMinSpareThreads 4\n"
                    "MaxConnectionsPerChild 600\n")
    # Put the children out of step, so they do not all retire together:
    # one is replaced after a first load.
    s.load(300, 6, path="/sleep?ms=1")
    victim = current(s.json())[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    load = Load(s.h.url("/sleep?ms=10"), concurrency=6, timelimit=14,
                timeout=14 + 60)
    load.start()
    time.sleep(1.5)
    docs = watch(s, 11)
    load.finish()
    retired = [c for d in docs for c in current(d)
               if c["state"] in ("graceful", "dead") and c["judged"]]
    assert retired, "no retiring child was judged: %r" % verdicts(docs)
    assert any(c["not_judged_because"] == "too young"
               for d in docs for c in current(d)), verdicts(docs)
    assert_never_concentrated(docs)


# (config, children, load concurrency, long requests across the restart)
GRACEFUL_SERVERS = {
    # prefork starts its new generation a few children at a time, so they
    # are of different ages; its old children do not linger (the graceful
    # signal cuts the sleep module's sleep short), and a long request would
    # take a whole single-threaded child out of the load
    "prefork": ("StartServers 4\nMinSpareServers 4\nMaxSpareServers 8\n"
                "ServerLimit 16\nMaxRequestWorkers 16\n", 4, 3, 0),
    # a long request holds one of a child's 4 threads and keeps the old
    # child alive, so the old generation can be judged apart
    "hybrid": (EVEN + "StartServers 3\nMinSpareThreads 4\n", 3, 6, 3),
}


@pytest.mark.parametrize("mpm", ["prefork", "hybrid"])
def test_fairness_graceful_restart_keeps_spread(status, sleep_module, mpm):
    """A graceful restart under an even load: the new generation is judged
    among itself (a child spawned after the others is too young at first),
    the old one apart, and neither reads "concentrated" (before, with
    prefork: "concentrated" for several seconds).  With mpm_hybrid a few
    long requests keep old children alive, to see them judged apart."""
    conf, children, concurrency, long_requests = GRACEFUL_SERVERS[mpm]
    s = status(mpm, base=conf + sleep_conf(sleep_module) + "\n")
    s.wait_children(children)
    load = Load(s.h.url("/sleep?ms=20"), concurrency=concurrency,
                timelimit=12, timeout=12 + 60)
    load.start()
    out, slow = [], []
    for _ in range(long_requests):
        t = threading.Thread(target=sleeper, args=(s.h.port, 5000, out))
        t.start()
        slow.append(t)
    time.sleep(2.5)
    s.h.graceful()
    docs = watch(s, 8)
    load.finish()
    for t in slow:
        t.join(30)
    after = [d for d in docs if d["generation"] >= 1]
    assert after, "no restart seen"
    judged_apart = [d["fairness_previous"] for d in after
                    if d["fairness_previous"]
                    and d["fairness_previous"]["children"] >= 2]
    assert judged_apart or not long_requests, \
        "the old generation was never judged apart"
    assert all(p["verdict"] != "concentrated" for p in judged_apart), \
        judged_apart
    # "idle" only in the instant before the new generation's first
    # request; prefork's new children come a few at a time, and one just
    # spawned may be judged on a second's handful of requests
    assert_never_concentrated(docs, 1.0 if mpm == "prefork" else 0.0)
    assert verdicts(docs)[-1][0] == "spread", verdicts(docs)


# -- busy threads and async connections -------------------------------------

BUSY_CONF = {
    "hybrid": "StartServers 2\nServerLimit 8\nThreadLimit 25\n"
              "ThreadsPerChild 25\nMaxRequestWorkers 200\n"
              "MinSpareThreads 25\nMaxSpareThreads 200\n"
              "AcceptStrategy mutex\n",
    "worker": "StartServers 2\nServerLimit 8\nThreadLimit 25\n"
              "ThreadsPerChild 25\nMaxRequestWorkers 200\n"
              "MinSpareThreads 25\nMaxSpareThreads 200\n",
}
BUSY_CONF["event"] = BUSY_CONF["worker"]


@pytest.mark.parametrize("mpm", ["hybrid", "worker", "event"])
def test_busy_after_graceful_restart_is_what_runs(status, sleep_module, mpm):
    """Issue 12, defect 8: 10 downloads in flight across a graceful
    restart.  An old child's threads are marked SERVER_GRACEFUL when they
    have exited (worker, mpm_hybrid) or, with event, all of them once the
    child closed its listeners; only those in the middle of a request are
    busy, and a child that stopped accepting has no idle threads.  So the
    old generation shows exactly the 10 downloads (before: 51 busy with
    mpm_hybrid, 0 with event).  prefork is left out: its old children have
    one thread each and the idle ones exit at once."""
    s = status(mpm, base=BUSY_CONF[mpm] + sleep_conf(sleep_module) + "\n")
    s.wait_children(2)
    out, threads = [], []
    for _ in range(10):
        t = threading.Thread(target=sleeper, args=(s.h.port, 9000, out))
        t.start()
        threads.append(t)
    try:
        # the status request is busy itself: 10 downloads show as 11 (and
        # one earlier status request may still be logging, so twice in a
        # row); with >= 10, a graceful restart could come before the 10th
        # download was accepted, and the new generation would serve it
        seen = []

        def downloads_running():
            seen.append(s.json()["totals"]["threads_busy"] >= 11)
            return seen[-2:] == [True, True]
        s.h.wait_for(downloads_running, timeout=5, interval=0.1,
                     what="10 downloads running")
        s.h.graceful()

        def settled():
            doc = s.json()
            old = [c for c in doc["children"]
                   if c["generation"] < doc["generation"]]
            busy = sum(c["threads_busy"] for c in old)
            idle = sum(c["threads_idle"] for c in old)
            new_ready = any(c["state"] == "ready" for c in current(doc))
            return doc if old and new_ready and busy == 10 and idle == 0 \
                else None
        try:
            doc = s.h.wait_for(settled, timeout=6, interval=0.2,
                               what="the old generation to show 10 busy")
        except AssertionError:
            doc = s.json()
            raise AssertionError("busy/idle per child: %r" % [
                (c["generation"], c["state"], c["threads_busy"],
                 c["threads_idle"]) for c in doc["children"]]) from None
        # the status request itself is the only other work
        assert 10 <= doc["totals"]["threads_busy"] <= 12, doc["totals"]
    finally:
        for t in threads:
            t.join(30)
    assert len(out) == 10 and all(o.startswith(b"HTTP/1.1 200") for o in out)


def keepalive_idle(port, tag, n):
    """n keep-alive connections, one request answered on each, left idle."""
    socks = []
    for i in range(n):
        c = socket.create_connection(("127.0.0.1", port), 5)
        c.settimeout(5)
        c.sendall(b"GET /small.txt?%s%d HTTP/1.1\r\nHost: t\r\n\r\n"
                  % (tag.encode(), i))
        data = b""
        while not data.endswith(b"0123456789abc\n"):
            data += c.recv(4096)
        socks.append(c)
    return socks


def test_async_keep_alive_connections_on_event(status):
    """An MPM that parks connections without a thread (event) counts them
    per child in the scoreboard.  Stock event publishes those counts only
    when its listener processes its timeout queues, i.e. when a queued
    connection expires: so batch A of idle keep-alive connections is
    opened, then batch B; when A expires (KeepAliveTimeout 4) each child
    that held some of A publishes, and shows exactly its part of B as
    keep-alive, in every format, with no thread busy for them."""
    s = status("event", extra="KeepAliveTimeout 4\n")
    s.wait_children()
    socks = keepalive_idle(s.h.port, "kaA", 6)
    time.sleep(2.0)
    socks += keepalive_idle(s.h.port, "kaB", 6)
    try:
        def parked():
            doc = s.json()
            return doc if any((c["async"] or {}).get("keep_alive")
                              for c in doc["children"]) else None
        doc = s.h.wait_for(parked, timeout=4, interval=0.1,
                           what="kept-alive connections counted")
        auto = s.text("?auto")
        prom = s.text("?prometheus")
    finally:
        for c in socks:
            c.close()
    held_a = served_by(s.h, "?kaA")
    held_b = served_by(s.h, "?kaB")
    shown = {c["pid"]: c["async"]["keep_alive"] for c in doc["children"]
             if c["async"] and c["async"]["keep_alive"]}
    print("\nA per child %r, B per child %r, keep_alive shown %r"
          % (held_a, held_b, shown))
    for pid, n in shown.items():
        assert pid in held_a and n == held_b.get(pid), (shown, held_b)
    assert doc["totals"]["async"]["keep_alive"] == sum(shown.values())
    assert doc["totals"]["threads_busy"] <= 2, doc["totals"]
    assert re.search(r"^ChildStatusAsync: async_conns=\d+ keep_alive=\d+ ",
                     auto, re.M), auto
    assert re.search(r'^child_status_slot_async_connections\{slot="\d+",'
                     r'state="keep_alive"\} [1-9]', prom, re.M), prom
    assert "<th>Keep-alive</th>" in s.text()


def test_async_keep_alive_connections_on_hybrid(status):
    """mpm_hybrid with AsyncConnections (the default for threaded
    children) parks idle keep-alive connections without a thread and
    publishes each child's counts every 100 ms: every idle connection is
    shown on the child that served it, and no thread is busy for them."""
    s = status("hybrid", extra="KeepAliveTimeout 30\n")
    s.wait_children()
    socks = keepalive_idle(s.h.port, "kaH", 6)
    try:
        def parked():
            doc = s.json()
            total = (doc["totals"]["async"] or {}).get("keep_alive")
            return doc if total == 6 else None
        doc = s.h.wait_for(parked, timeout=4, interval=0.1,
                           what="6 idle keep-alive connections counted")
        prom = s.text("?prometheus")
    finally:
        for c in socks:
            c.close()
    held = served_by(s.h, "?kaH")
    shown = {c["pid"]: c["async"]["keep_alive"] for c in doc["children"]
             if c["async"] and c["async"]["keep_alive"]}
    print("\nserved per child %r, keep_alive shown %r" % (held, shown))
    assert shown == held, (shown, held)
    assert doc["totals"]["threads_busy"] <= 2, doc["totals"]
    assert re.search(r'^child_status_slot_async_connections\{slot="\d+",'
                     r'state="keep_alive"\} [1-9]', prom, re.M), prom


@pytest.mark.parametrize("mpm,extra", [("prefork", ""), ("worker", ""),
                                       ("hybrid", "AsyncConnections Off\n")])
def test_async_counts_absent_on_sync_mpms(status, mpm, extra):
    """Where the MPM is not async there is nothing parked: null, not 0."""
    s = status(mpm, extra=extra)
    doc = s.json()
    assert all(c["async"] is None for c in doc["children"])
    assert doc["totals"]["async"] is None
    assert "child_status_slot_async_connections" not in s.text("?prometheus")


# -- lost wake-ups and accept errors ---------------------------------------

HERD = ("StartServers 6\nServerLimit 8\nThreadLimit 1\nThreadsPerChild 1\n"
        "MaxRequestWorkers 8\nMinSpareThreads 1\nMaxSpareThreads 8\n")


def herd(status, strategy):
    """Six single-threaded children, 600 connections one at a time: the
    light load at which idle children wait together."""
    s = status("hybrid", base=HERD + "AcceptStrategy %s\n" % strategy)
    s.wait_children(6)
    s.load(600, 1)
    doc = s.wait_requests(600)
    live = [c for c in doc["children"] if c["state"] != "dead"]
    return s, doc, sum(c["accept_lost_wakeups"] for c in live)


def test_lost_wakeups_shown_in_every_format(status):
    """Preemptive: every idle child polls the listener, and a child that
    is woken but loses the accept() race counts a lost wake-up.  The
    figure is shown per child and in total, in every format, and the
    server-wide one outlives the children.  (How many there are varies a
    lot from run to run: most of the herd's wake-ups end inside the
    kernel, which puts a waiter back to sleep when it finds the connection
    gone; README says more.)"""
    s, doc, per_child = herd(status, "preemptive")
    server = doc["server_totals"]
    print("\npreemptive: %d lost wake-ups, %d accept errors for 600 "
          "connections" % (server["accept_lost_wakeups"],
                           server["accept_errors"]))
    assert doc["totals"]["accept_lost_wakeups"] == per_child
    assert server["accept_lost_wakeups"] >= per_child
    assert isinstance(server["accept_errors"], int)
    assert doc["totals"]["accept_errors"] == sum(
        c["accept_errors"] for c in doc["children"] if c["state"] != "dead")
    auto = s.text("?auto")
    got = int(re.search(r"^ChildStatusServerLostWakeups: (\d+)$", auto,
                        re.M).group(1))
    assert got >= server["accept_lost_wakeups"]
    assert re.search(r"^ChildStatusSlot\d+: .* lost_wakeups=\d+ "
                     r"accept_errors=\d+", auto, re.M), auto
    prom = s.text("?prometheus")
    got = int(re.search(r"^child_status_accept_lost_wakeups_total (\d+)$",
                        prom, re.M).group(1))
    assert got >= server["accept_lost_wakeups"]
    assert re.search(r'^child_status_slot_accept_errors_total\{slot="\d+"\} '
                     r'\d+$', prom, re.M)
    page = s.text()
    assert "<th>Lost wake-ups</th>" in page and "<dt>Accept errors</dt>" in page


def test_lost_wakeups_none_behind_the_mutex(status):
    """With the accept mutex only its holder waits, so no wake-up is ever
    lost: the figure is 0, not missing."""
    s, doc, per_child = herd(status, "mutex")
    assert per_child == 0
    assert doc["server_totals"]["accept_lost_wakeups"] == 0


@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_mpm_counters_absent_on_stock_mpms(status, mpm):
    """A stock MPM does not count accepts, wake-ups or errors: null in
    JSON, no line in ?auto, no series in Prometheus."""
    s = status(mpm)
    s.wait_children()
    doc = s.json()
    for k in ("connections", "accept_lost_wakeups", "accept_errors",
              "child_restarts"):
        assert doc["server_totals"][k] is None, k
    assert isinstance(doc["server_totals"]["requests"], int)
    assert "ChildStatusServerLostWakeups" not in s.text("?auto")
    assert "child_status_accept_lost_wakeups_total" not in \
        s.text("?prometheus")


# -- Prometheus across recycling ---------------------------------------------

def series(text):
    """{name{labels}: value} of a Prometheus text."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, val = line.rsplit(" ", 1)
            out[key] = float(val)
    return out


def test_prometheus_bounded_while_children_recycle(status):
    """MaxConnectionsPerChild 10 recycles children several times a second
    (each recycle a new pid).  Series are keyed by slot, so their number
    stays bounded by ServerLimit; pid and generation are only in the one
    info series per slot; and the server-wide request and connection
    counters equal what was made, however short-lived the children were
    (summing per-child series lost those that died between scrapes)."""
    s = status("hybrid", base="StartServers 3\nServerLimit 6\n"
                              "ThreadsPerChild 2\nMaxRequestWorkers 12\n"
                              "MinSpareThreads 2\nMaxSpareThreads 12\n"
                              "AcceptStrategy mutex\n"
                              "MaxConnectionsPerChild 10\n")
    s.wait_children(3)
    seen, per_scrape, pids, made = set(), [], set(), 0
    for _ in range(8):
        made += s.load(200, 3)
        text = s.text("?prometheus")
        got = series(text)
        seen |= {k for k in got if not k.startswith("child_status_slot_info")}
        per_scrape.append(len(got))
        pids |= set(re.findall(r'pid="(\d+)"', text))
    print("\n%d pids seen, series per scrape %r, distinct non-info series "
          "%d" % (len(pids), per_scrape, len(seen)))
    assert len(pids) >= 20, "children were not recycled: %d pids" % len(pids)
    # at most ServerLimit slots, each with a bounded set of families
    assert len(seen) <= 6 * 30 + 40, sorted(seen)
    assert max(per_scrape) <= 6 * 31 + 40
    # every count is the truth: fetched documents count too (the one being
    # answered is counted after it is sent)
    def settled():
        before = s.fetches
        got = series(s.text("?prometheus"))
        return got if got["child_status_requests_total"] == made + before \
            else None
    got = s.h.wait_for(settled, timeout=10, interval=0.3,
                       what="child_status_requests_total == requests made")
    assert got["child_status_connections_total"] >= made
    assert got["child_status_child_restarts_total"] >= len(pids) - 6


# -- a real browser ----------------------------------------------------------

def chromium_dom(url):
    exe = require_tool("chromium")
    profile = tempfile.mkdtemp(prefix="cstatus-chromium-")
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu",
         "--no-first-run", "--user-data-dir=" + profile,
         "--virtual-time-budget=2000", "--dump-dom", url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        # Chromium leaves helpers behind; they share its process group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return out.decode("utf-8", "replace")


@pytest.mark.parametrize("mpm", MPMS)
def test_page_renders_in_chromium(status, mpm):
    s = status(mpm, extra="MaxKeepAliveRequests 0\n")
    s.wait_children()
    s.load(600, 1, keepalive=True)
    doc = s.wait_requests(600)
    dom = chromium_dom(s.h.url("/child-status"))
    page = parse_page(dom)
    text = re.sub(r"\s+", " ", " ".join(page.text))
    assert "Per-child load" in text
    assert "Work is concentrated in few of the" in text, text
    assert "slot 0, pid" in text                   # the SVG's labels
    busiest = max(doc["children"], key=lambda c: c["requests"])
    assert str(busiest["pid"]) in text
    assert "Total (" in text and "Req/s 10s" in text
    assert page.rects == doc["fairness"]["children"]

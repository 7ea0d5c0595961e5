"""The benchmark harness (test/bench) on a tiny workload, so it cannot rot,
and the test-only sleep module it relies on.  The real benchmark is
`make bench`; nothing here is timed against a goal."""
import os
import re
import subprocess
import time
import urllib.error

from httpd_fixture import REPO, require_tool, sleep_conf

BENCH = os.path.join(REPO, "test", "bench", "bench.py")
def status_of(h, path):
    try:
        with h.get(path) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def test_sleep_module_waits_and_checks_its_argument(httpd, sleep_module):
    h = httpd(mpm="event", conf=sleep_conf(sleep_module)).start()
    t = time.monotonic()
    code, body = status_of(h, "/sleep?ms=120")
    assert code == 200 and body == "slept 120 ms\n"
    assert time.monotonic() - t >= 0.12
    assert status_of(h, "/sleep") == (200, "slept 0 ms\n")
    assert status_of(h, "/sleep?a=b&ms=1") == (200, "slept 1 ms\n")
    for bad in ("ms=10001", "ms=-1", "ms=x", "ms=5x", "ms="):
        assert status_of(h, "/sleep?" + bad)[0] == 400, bad


def test_bench_harness_produces_report(tmp_path, sleep_module):
    # what the harness runs: a missing one fails here, with its package
    for tool in ("wrk", "gnuplot", "git"):
        require_tool(tool)
    out = tmp_path / "bench"
    env = dict(os.environ,
               BENCH_QUICK="1", BENCH_OUT=str(out),
               BENCH_CONTENDERS="event,hybrid-mutex-t10",
               BENCH_WORKLOADS="keepalive,close,blocking,burst,sizing",
               BENCH_ROUNDS="1", BENCH_DURATION="1", BENCH_WARMUP="0.1",
               BENCH_BUDGET="20", BENCH_TPC="10", BENCH_BURST_CONNS="40",
               BENCH_BURST_WINDOW="1", BENCH_SIZING="2",
               BENCH_SIZING_DURATION="1")
    r = subprocess.run(["/usr/bin/python3", BENCH], env=env,
                       capture_output=True, text=True, timeout=120)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    assert re.search(r"^\[\d+:\d\d +\d+/\d+ ", r.stdout, re.M), \
        "no progress lines:\n" + log

    md = (out / "report.md").read_text()
    assert md in r.stdout, "the table is not printed at the end"
    # The event row of the summary carries numbers: req/s and a ratio.
    row = re.search(r"^\| event \| 2 x 10 \| ([\d,]+) \((\d+\.\d\d)×\)", md,
                    re.M)
    assert row, md
    assert int(row.group(1).replace(",", "")) > 0
    assert float(row.group(2)) == 1.0  # the only stock MPM is the best
    for section in ("## 1. keep-alive", "## 2. connection per request",
                    "## 4. blocking handler", "## 5. Burst",
                    "## 6. Fairness", "## 7. Sizing", "## Goals"):
        assert section in md, section
    hybrid_ran = "| hybrid-mutex-t10 |" in md
    if not hybrid_ran:
        assert "skip hybrid-mutex-t10" in r.stdout, log
    assert (out / "results.json").exists()
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

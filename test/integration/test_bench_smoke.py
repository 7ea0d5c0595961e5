"""The benchmark harness (test/bench) on a tiny workload, so it cannot rot,
and the test-only sleep module it relies on.  The real benchmark is
`make bench`; nothing here is timed against a goal."""
import json
import os
import re
import subprocess
import sys
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
               BENCH_WORKLOADS="keepalive,keepalive-nommap,close,blocking,"
                               "burst,sizing,count",
               BENCH_COUNT_CONTENDERS="event,hybrid-mutex-t10",
               COUNT_REQUESTS="200", COUNT_WARM="50", COUNT_CONC="4",
               COUNT_T1_CHILDREN="5", COUNT_CHILDREN="1",
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
    # 1b serves the same file through the EnableMMAP Off alias: answered,
    # not a 404 counted as throughput (read errors are event closing
    # keep-alive connections when its 20 workers are short)
    run = json.loads((out / "results.json").read_text())
    nommap = run["results"]["event"]["keepalive-nommap"][0]
    assert nommap["requests"] > 0, nommap
    assert "non2xx" not in nommap["err_detail"], nommap
    for section in ("## 1. keep-alive", "## 1b. keep-alive",
                    "## 2. connection per request",
                    "## 4. blocking handler", "## 5. Burst",
                    "## 6. Fairness", "## 7. Sizing", "## Goals"):
        assert section in md, section
    # the counted figures stand next to req/s, and in a section of their own
    for head in ("| syscalls/req | MPM syscalls/req | futex/req | ctx sw/req "
                 "| CPU µs/req |",
                 "| syscalls/conn | MPM syscalls/conn | futex/req | "
                 "ctx sw/req | CPU µs/req |", "## 8. Counted cost"):
        assert head in md, head
    row = re.search(r"^\| event \| 1 x 10 \| ([\d.]+) \| ([\d.]+) \|", md,
                    re.M)
    assert row and float(row.group(1)) > float(row.group(2)) > 0, md
    hybrid_ran = "| hybrid-mutex-t10 |" in md
    if not hybrid_ran:
        assert "skip hybrid-mutex-t10" in r.stdout, log
    assert (out / "results.json").exists()
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


COUNT = os.path.join(REPO, "test", "bench", "count.py")


def test_count_harness_counts_syscalls_ctx_and_cpu(tmp_path, sleep_module):
    """count.py on one stock MPM and one hybrid contender, a few hundred
    requests: every figure is there and sane, so the tool cannot silently
    break.  Nothing here is compared with a target."""
    for tool in ("ab", "perf", "git"):
        require_tool(tool)
    out = tmp_path / "count"
    env = dict(os.environ, COUNT_OUT=str(out),
               COUNT_CONTENDERS="worker,hybrid-exclusive-t1",
               COUNT_REQUESTS="300", COUNT_WARM="50", COUNT_CONC="4",
               COUNT_T1_CHILDREN="5", COUNT_CHILDREN="1", COUNT_TPC="6",
               COUNT_IDLE="0.2")
    r = subprocess.run(["/usr/bin/python3", COUNT], env=env,
                       capture_output=True, text=True, timeout=120)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    assert "FAILED" not in log, log
    run = json.loads((out / "results.json").read_text())
    assert run["config"]["tracer"] == "perf", log
    seen = set()
    sys.path.insert(0, os.path.join(REPO, "test", "bench"))
    import count  # noqa: E402
    for res in run["results"]:
        name, mode = res["contender"], res["mode"]
        seen.add((name, mode))
        assert "failed" not in res, res
        assert res["ab"]["complete"] == 300 and res["ab"]["failed"] == 0
        f = count.figures(res)
        assert f["pool_unchanged"], (name, mode, "a child came or went")
        assert not f["lost"], (name, mode, res["trace"]["notes"])
        # every request reads and writes: more than a few syscalls each
        assert f["sys_req"] > 5, (name, mode, f)
        assert 0 < f["mpm_req"] < f["sys_req"], (name, mode, f)
        assert f["ctx_req"] > 0 and f["cpu_us_req"] > 0, (name, mode, f)
        assert f["pss_mib"] > 0
        kids = res["trace"]["syscalls"]["children"]
        took = sum(kids.get(n, {}).get("calls", 0)
                   for n in ("accept", "accept4"))
        assert took > 0, (name, mode, sorted(kids))
        # the MPM takes the connections, the core reads the requests
        for n in ("accept", "accept4"):
            if n in kids:
                assert kids[n]["mpm"] == kids[n]["calls"], (name, n)
        assert kids["read"]["calls"] > kids["read"]["mpm"], (name, mode)
        if mode == "close":
            # a connection per request: about one accept per request
            assert 0.9 <= f["conns"] / 300.0 <= 1.1, (name, f)
            assert f["sys_conn"] > 5 and f["mpm_conn"] >= 1, (name, f)
        else:
            assert f["conns"] < 300 / 10, (name, f)
        assert "futex_req" in f
    assert seen == {(n, m) for n in ("worker", "hybrid-exclusive-t1")
                    for m in ("close", "keepalive")}
    # the worker hands connections from its listener to a worker thread
    wk = [res for res in run["results"] if res["contender"] == "worker"
          and res["mode"] == "close"][0]
    assert wk["trace"]["syscalls"]["children"]["futex"]["calls"] > 0
    assert "idle" in wk, "the idle rate is measured on the first mode"
    md = (out / "report.md").read_text()
    assert md in r.stdout
    for needle in ("## connection per request", "## keep-alive",
                   "| worker | 1 x 6 |", "| hybrid-exclusive-t1 | 5 x 1 |",
                   "### worker, connection per request (per conn)",
                   "| accept4 | children | mpm |"):
        assert needle in md, (needle, md)
    # --render rebuilds the same report from results.json
    r2 = subprocess.run(["/usr/bin/python3", COUNT, "--render",
                         str(out / "results.json")], capture_output=True,
                        text=True, timeout=60)
    assert r2.returncode == 0 and r2.stdout.strip() == md.strip(), r2.stderr

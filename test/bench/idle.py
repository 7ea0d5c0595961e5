"""Idle capacity: how many idle keep-alive connections a server holds
while fresh clients are still served, and what each one costs.

    /usr/bin/python3 test/bench/idle.py          # or: make bench-idle

For each contender, on the same pool (2 children x 25 threads,
MaxRequestWorkers 50, KeepAliveTimeout 60, MaxKeepAliveRequests 0), on a
freshly started server:

1. fresh clients alone: ab, IDLE_AB_N requests over IDLE_AB_C connections,
   one connection per request (throughput, p99);
2. IDLE_CONNS clients connect, make one request each and stay idle;
3. the same ab again, with the idle set open: requests completed in
   time, throughput as a fraction of step 1, p99;
4. children's RSS (and PSS) grown per idle connection, between before
   step 2 and after it (the idle set is all that changed);
5. every idle connection asked once more: how many the server had
   closed before its KeepAliveTimeout.

Rounds are interleaved (A B C, then C B A) and medians reported, with the
ratio of each contender to event in the same round.  Every server runs
with its soft descriptor limit at the hard one (prlimit), so stock event
is not held back by the default of 1024, and event with
AsyncRequestWorkerFactor 400 (its default, 2, lets a child hold only
ThreadsPerChild + 2 x its idle threads, 75 here); the client raises its
own limit.

Knobs (environment): IDLE_CONTENDERS (event,hybrid-mutex-t25,
hybrid-exclusive-t25; hybrid-mutex-t25-async-off or worker hold only 50
and show what parking changes), IDLE_CONNS (10000), IDLE_ROUNDS (2),
IDLE_AB_N (3000), IDLE_AB_C (20).  Writes build/idle/report.md and
results.json.
"""
import json
import os
import re
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import servers as S  # noqa: E402
import count as C    # noqa: E402

AB = "/usr/bin/ab"
OUT = os.path.join(S.REPO, "build", "idle")
POOL = ("StartServers 2\nServerLimit 2\nThreadLimit 25\nThreadsPerChild 25\n"
        "MaxRequestWorkers 50\nMinSpareThreads 25\nMaxSpareThreads 50\n"
        "MaxConnectionsPerChild 0\nKeepAliveTimeout 60\n"
        "MaxKeepAliveRequests 0\n")
EVENT_FACTOR = 400
REQUEST = b"GET /small.txt HTTP/1.1\r\nHost: idle\r\n\r\n"
BODY_END = b"0123456789abc\n"


def env(name, default, conv=str):
    v = os.environ.get(name)
    return conv(v) if v not in (None, "") else default


def contender_conf(name):
    """(mpm, extra config) for a contender name."""
    if name == "event":
        # event's default (AsyncRequestWorkerFactor 2) stops a child
        # accepting at ThreadsPerChild + 2 x its idle threads, 75 here:
        # raised so that event can hold the idle set at all
        return name, "AsyncRequestWorkerFactor %d\n" % EVENT_FACTOR
    if name in S.STOCK:
        return name, ""
    m = re.match(r"hybrid-(\w+)-t25(?:-async-(on|off))?$", name)
    if not m or m.group(1) not in S.STRATEGIES:
        raise SystemExit("idle: unknown contender %r (event, worker, "
                         "hybrid-STRATEGY-t25[-async-on|-async-off])" % name)
    extra = "AcceptStrategy %s\n" % m.group(1)
    if m.group(2):
        extra += "AsyncConnections %s\n" % m.group(2).capitalize()
    return "hybrid", extra


def start(name, docroot):
    mpm, extra = contender_conf(name)
    srv = S.BenchHttpd(mpm, POOL + extra, docroot, child_status=False)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    srv.start(prefix=["/usr/bin/prlimit", "--nofile=%d:%d" % (hard, hard),
                      "--"])
    deadline = time.time() + 20
    while time.time() < deadline:
        if srv.workers_ready(25) == (2, 50):
            return srv
        time.sleep(0.05)
    srv.cleanup()
    raise RuntimeError("%s: pool not up" % name)


def ab(url, n, conc):
    """Fresh clients: one connection per request.  -s 5: a request not
    answered in 5 s counts as failed."""
    r = subprocess.run([AB, "-q", "-r", "-s", "5", "-n", str(n), "-c",
                        str(conc), url], capture_output=True, text=True,
                       timeout=300)
    out = r.stdout + r.stderr

    def num(pat):
        m = re.search(pat, out, re.M)
        return float(m.group(1)) if m else None
    return {"complete": int(num(r"^Complete requests:\s+(\d+)") or 0),
            "failed": int(num(r"^Failed requests:\s+(\d+)") or 0),
            "rps": num(r"^Requests per second:\s+([\d.]+)") or 0.0,
            "p99_ms": num(r"^\s*99%\s+(\d+)"),
            "n": n}


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def _drive(socks, wanted):
    """Send REQUEST on every socket and read one response from each, all
    at once; returns the sockets that answered 200 within the time."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        try:
            s.sendall(REQUEST)
        except OSError:
            continue
        bufs[s] = b""
        sel.register(s, selectors.EVENT_READ)
    ok = []
    deadline = time.time() + 30 + len(socks) / 500.0
    while bufs and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                del bufs[s]
                continue
            bufs[s] += data
            if bufs[s].endswith(BODY_END):
                if bufs[s].startswith(wanted):
                    ok.append(s)
                sel.unregister(s)
                del bufs[s]
    sel.close()
    return ok


def open_idle(port, n, batch=500):
    """Up to n connections, one request answered on each, then left idle,
    opened in batches; a server that answers fewer than half of a batch
    holds no more, and opening stops there.  Returns (sockets, the ones
    answered)."""
    socks, answered = [], []
    while len(socks) < n:
        new = []
        for _ in range(min(batch, n - len(socks))):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
            new.append(s)
        socks += new
        ok = _drive(new, b"HTTP/1.1 200")
        answered += ok
        if len(ok) < len(new) / 2:
            break
    return socks, answered


def measure(name, docroot, cfg):
    srv = start(name, docroot)
    socks = []
    try:
        url = srv.url("/small.txt")
        ab(url, 500, cfg["ab_c"])                      # warm up
        base = ab(url, cfg["ab_n"], cfg["ab_c"])
        kids = srv.children()
        before = rss_kib(kids), C.pss_kib(kids)
        t0 = time.time()
        socks, held = open_idle(srv.port, cfg["conns"])
        opened = time.time() - t0
        time.sleep(1)
        kids = srv.children()
        after = rss_kib(kids), C.pss_kib(kids)
        loaded = ab(url, cfg["ab_n"], cfg["ab_c"])
        alive = len(_drive(held, b"HTTP/1.1 200"))
        held = len(held)
        log = srv.log()
    finally:
        for s in socks:
            s.close()
        srv.cleanup()
    n = held or 1
    return {"contender": name, "base": base, "loaded": loaded,
            "open_s": round(opened, 2), "held": held,
            "rss_per_conn_kib": round((after[0] - before[0]) / n, 2),
            "pss_per_conn_kib": round((after[1] - before[1]) / n, 2),
            "children_rss_kib": after[0], "alive": alive,
            "closed_early": held - alive,
            "errors": [line for line in log.splitlines()
                       if "[error]" in line or ":error]" in line][:5]}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=1):
    return "-" if x is None else ("%.*f" % (digits, x))


def report(runs, cfg):
    by = {}
    for rnd in runs:
        for r in rnd:
            by.setdefault(r["contender"], []).append(r)
    ev = {i: {r["contender"]: r for r in rnd} .get("event")
          for i, rnd in enumerate(runs)}
    lines = ["# Idle capacity (test/bench/idle.py)", "",
             "%d idle keep-alive connections on 2 children x 25 threads; "
             "fresh clients: ab -n %d -c %d, one connection per request; "
             "%d round(s), medians.  Ratios are to event in the same round."
             % (cfg["conns"], cfg["ab_n"], cfg["ab_c"], len(runs)), "",
             "| contender | idle held | fresh served with idle set | p99 ms alone / "
             "with idle set | throughput with idle set / alone | RSS KiB "
             "per idle conn | PSS KiB per idle conn | RSS per conn / event's "
             "| idle conns closed early |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, rs in by.items():
        ratio = []
        for i, rnd in enumerate(runs):
            mine = [r for r in rnd if r["contender"] == name]
            if mine and ev.get(i) and ev[i]["rss_per_conn_kib"] > 0:
                ratio.append(mine[0]["rss_per_conn_kib"]
                             / ev[i]["rss_per_conn_kib"])
        lines.append("| %s | %d | %s | %s / %s | %s | %s | %s | %s | %s |" % (
            name, med([r["held"] for r in rs]),
            "%d/%d" % (med([r["loaded"]["complete"] - r["loaded"]["failed"]
                            for r in rs]), cfg["ab_n"]),
            fmt(med([r["base"]["p99_ms"] for r in rs]), 0),
            fmt(med([r["loaded"]["p99_ms"] for r in rs]), 0),
            fmt(med([r["loaded"]["rps"] / r["base"]["rps"]
                     for r in rs if r["base"]["rps"]]), 2),
            fmt(med([r["rss_per_conn_kib"] for r in rs])),
            fmt(med([r["pss_per_conn_kib"] for r in rs])),
            fmt(med(ratio), 2),
            "%d" % med([r["closed_early"] for r in rs])))
    lines += ["", "Errors logged (first lines per run):", ""]
    for rnd in runs:
        for r in rnd:
            for e in r["errors"]:
                lines.append("    %s: %s" % (r["contender"], e[:200]))
    return "\n".join(lines) + "\n"


def main():
    cfg = {"conns": env("IDLE_CONNS", 10000, int),
           "rounds": env("IDLE_ROUNDS", 2, int),
           "ab_n": env("IDLE_AB_N", 3000, int),
           "ab_c": env("IDLE_AB_C", 20, int)}
    names = env("IDLE_CONTENDERS",
                "event,hybrid-mutex-t25,hybrid-exclusive-t25").split(",")
    for n in names:
        contender_conf(n)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard < cfg["conns"] + 200:
        raise SystemExit("idle: the descriptor limit (%d) is below "
                         "IDLE_CONNS + 200" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.makedirs(OUT, exist_ok=True)
    docroot = S.make_docroot(os.path.join(OUT, "docroot"))
    S.snapshot_modules(os.path.join(OUT, "modules"))
    runs = []
    for rnd in range(cfg["rounds"]):
        order = names if rnd % 2 == 0 else names[::-1]
        results = []
        for name in order:
            r = measure(name, docroot, cfg)
            print("round %d %-32s fresh %d/%d p99 %s ms (alone %s), "
                  "rss/conn %.1f KiB, closed early %d" % (
                      rnd + 1, name, r["loaded"]["complete"]
                      - r["loaded"]["failed"], cfg["ab_n"],
                      r["loaded"]["p99_ms"], r["base"]["p99_ms"],
                      r["rss_per_conn_kib"], r["closed_early"]),
                  flush=True)
            results.append(r)
        runs.append(results)
    text = report(runs, cfg)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"config": cfg, "runs": runs}, f, indent=1)
    with open(os.path.join(OUT, "report.md"), "w") as f:
        f.write(text)
    print("\n" + text)


if __name__ == "__main__":
    main()

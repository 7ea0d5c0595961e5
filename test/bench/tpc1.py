"""ThreadsPerChild 1: AsyncConnections On or Off?  (make bench-tpc1)

With one thread per child, a parked keep-alive connection whose next
request arrives while its child is busy with another connection waits
for that request to finish; without parking, the connection keeps its
process to itself between requests, so no request ever waits behind
another one, but every idle keep-alive connection holds a whole process.
This measures both sides, with a blocking handler (/sleep?ms=10, like a
PHP page waiting on its database), on 8 children x 1 thread, against
stock prefork with the same 8 processes:

  below    4 keep-alive clients (fewer than processes): p99 and req/s;
  above    16 keep-alive clients (twice the processes);
  idle     24 idle keep-alive connections left open (more than the
           processes), then 4 fresh keep-alive clients: what a prefork
           site with KeepAlive On sees when idle browsers pile up.

Rounds interleaved (A B C, C B A); medians.  Knobs: TPC1_ROUNDS (2),
TPC1_SECONDS (5), TPC1_STRATEGY (the AcceptStrategy, mutex).  Writes
build/tpc1/report.md.
"""
import os
import socket
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import load as L     # noqa: E402
import servers as S  # noqa: E402

OUT = os.path.join(S.REPO, "build", "tpc1")
PROCS = 8
URL = "/sleep?ms=10"
SCENARIOS = ("below", "above", "idle")


def env(name, default, conv=str):
    v = os.environ.get(name)
    return conv(v) if v not in (None, "") else default


def contenders():
    strategy = env("TPC1_STRATEGY", "mutex")
    out = [S.Contender("prefork", "apache", "prefork", 1)]
    for mode in ("off", "on"):
        c = S.Contender("hybrid-%s-t1-async-%s" % (strategy, mode),
                        "apache", "hybrid", 1, strategy)
        c.extra = "AsyncConnections %s" % mode.capitalize()
        out.append(c)
    return out


def start(c, docroot):
    conf = S.mpm_directives(c, PROCS, children=PROCS, start=PROCS,
                            spare_min=1)
    conf += "\nKeepAliveTimeout 5\nMaxKeepAliveRequests 0\n"
    conf += getattr(c, "extra", "")
    srv = S.BenchHttpd(c.mpm, conf, docroot, child_status=False)
    srv.start()
    S.fx.settle(srv)
    return srv


def idle_set(port, n):
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), 5)
        s.settimeout(0.2)
        s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            s.recv(4096)   # served, or not (every process taken)
        except OSError:
            pass
        socks.append(s)
    return socks


def run(c, scenario, docroot, seconds):
    srv = start(c, docroot)
    socks = []
    try:
        url = srv.url(URL)
        L.warm("127.0.0.1", srv.port, URL, 1)
        if scenario == "idle":
            socks = idle_set(srv.port, 3 * PROCS)
        conns = 2 * PROCS if scenario == "above" else PROCS // 2
        return L.run_wrk(url, conns, seconds, timeout=2)
    finally:
        for s in socks:
            s.close()
        srv.cleanup()


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ms(x):
    return "-" if not x else "%.1f" % x


def main():
    rounds = env("TPC1_ROUNDS", 2, int)
    seconds = env("TPC1_SECONDS", 5, int)
    os.makedirs(OUT, exist_ok=True)
    docroot = S.make_docroot(os.path.join(OUT, "docroot"))
    S.snapshot_modules(os.path.join(OUT, "modules"))
    cs = contenders()
    res = {}
    for rnd in range(rounds):
        order = cs if rnd % 2 == 0 else cs[::-1]
        for sc in SCENARIOS:
            for c in order:
                r = run(c, sc, docroot, seconds)
                res.setdefault((c.name, sc), []).append(r)
                print("round %d %-6s %-26s %7.0f req/s p99 %s ms errors %d"
                      % (rnd + 1, sc, c.name, r["rps"], r["p99"],
                         r["errors"]), flush=True)
    lines = ["# ThreadsPerChild 1: AsyncConnections On or Off "
             "(test/bench/tpc1.py)", "",
             "%d children x 1 thread, /sleep?ms=10 over keep-alive, wrk, "
             "%d s per run, %d round(s), medians.  below: %d clients; above:"
             " %d clients; idle: %d idle keep-alive connections open, then "
             "%d clients." % (PROCS, seconds, rounds, PROCS // 2, 2 * PROCS,
                              3 * PROCS, PROCS // 2), "",
             "| scenario | contender | req/s | p50 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|"]
    for sc in SCENARIOS:
        for c in cs:
            rs = res[(c.name, sc)]
            lines.append("| %s | %s | %.0f | %s | %s | %d |" % (
                sc, c.name, med([r["rps"] for r in rs]),
                ms(med([r["p50"] for r in rs])),
                ms(med([r["p99"] for r in rs])),
                med([r["errors"] for r in rs])))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "report.md"), "w") as f:
        f.write(text)
    print("\n" + text)


if __name__ == "__main__":
    main()

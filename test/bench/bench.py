#!/usr/bin/python3
"""make bench: mpm_hybrid against the stock MPMs (and nginx for reference).

Runs the same stock apache2 once per contender, loads it with wrk from a
second process on 127.0.0.1, interleaves rounds (A B C A B C ...), and
writes build/bench/report.md, report.png and results.json.  See
test/bench/README.md for the workloads and the knobs (BENCH_* variables).
"""
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import count as K    # noqa: E402
import load as L     # noqa: E402
import report as R   # noqa: E402
import servers as S  # noqa: E402

# Main workloads, in the order they run against a started server.
MAIN = ("keepalive", "keepalive-nommap", "close", "10k", "blocking")
# Served by Apache only: nginx has no /sleep, nor the EnableMMAP Off path.
APACHE_ONLY = ("keepalive-nommap", "blocking")
ALL_WORKLOADS = MAIN + ("burst", "sizing", "count")


def env(name, default, conv=str):
    v = os.environ.get(name, "")
    return conv(v) if v != "" else default


def csv(v):
    return [x.strip() for x in v.split(",") if x.strip()]


class Config:
    def __init__(self):
        self.quick = env("BENCH_QUICK", "") not in ("", "0", "no")
        q = self.quick
        self.cores = os.cpu_count() or 1
        self.rounds = env("BENCH_ROUNDS", 1 if q else 3, int)
        self.duration = env("BENCH_DURATION", 1 if q else 2, int)
        self.warmup = env("BENCH_WARMUP", 0.1 if q else 0.3, float)
        self.budget = env("BENCH_BUDGET", 200, int)
        self.tpc = env("BENCH_TPC", 25, int)
        self.sleep_ms = env("BENCH_SLEEP_MS", 5, int)
        self.conns = {"keepalive": 50, "keepalive-nommap": 50, "close": 50,
                      "10k": 50, "blocking": 200}
        self.burst_conns = env("BENCH_BURST_CONNS", 400, int)
        self.burst_window = env("BENCH_BURST_WINDOW", 2 if q else 5, int)
        self.burst_idle = 0.3 if q else 1.0
        self.burst_rounds = env("BENCH_BURST_ROUNDS", 1, int)
        self.sizing_rounds = env("BENCH_SIZING_ROUNDS", 1, int)
        c = self.cores
        mult = [1, 6, 24] if q else [1, 2, 3, 6, 12, 24, 48]
        ns = sorted({1} | {m * c for m in mult})
        self.sizing_ns = env("BENCH_SIZING",
                             [n for n in ns if n <= self.budget],
                             lambda v: [int(x) for x in csv(v)])
        self.sizing_duration = env("BENCH_SIZING_DURATION",
                                   1 if q else 2, int)
        self.workloads = env("BENCH_WORKLOADS", list(ALL_WORKLOADS), csv)
        self.only = env("BENCH_CONTENDERS", [], csv)
        self.out = env("BENCH_OUT", os.path.join(S.REPO, "build", "bench"))
        self.child_status = env("BENCH_CHILD_STATUS", "auto")
        # counted cost (count.py): its own fixed pools and fixed request
        # counts; quick runs count the stock MPMs and the default hybrid
        self.count = K.Config(quick=q)
        self.count.tpc = self.tpc
        self.count_only = env("BENCH_COUNT_CONTENDERS", [], csv)

    def describe(self):
        return {k: (v.describe() if hasattr(v, "describe") else v)
                for k, v in vars(self).items()}


class Progress:
    """One line per step: elapsed, step k of n, estimate of what is left."""

    def __init__(self, total_steps, planned_s):
        self.t0 = time.time()
        self.total = max(1, total_steps)
        self.done = 0
        self.planned = planned_s

    def elapsed(self):
        return time.time() - self.t0

    def step(self, text):
        self.done += 1
        el = self.elapsed()
        left = el / self.done * (self.total - self.done)
        print("[%s %3d/%d ~%s left] %s" % (fmt_t(el), self.done, self.total,
                                           fmt_t(left), text), flush=True)

    def note(self, text):
        print("[%s] %s" % (fmt_t(self.elapsed()), text), flush=True)


def fmt_t(s):
    s = int(round(s))
    return "%d:%02d" % (s // 60, s % 60)


def say(text):
    print(text, flush=True)


# -- preflight --------------------------------------------------------------

def try_make(target):
    r = subprocess.run(["make", "-C", S.REPO, "--no-print-directory", target],
                       capture_output=True, text=True)
    return r.returncode == 0, (r.stdout + r.stderr)[-2000:]


def preflight(cfg, docroot, moddir, notes):
    for tool in (L.WRK, S.fx.APACHE2):
        if not os.path.exists(tool):
            sys.exit("bench: %s is missing (make deps PURPOSE=bench)" % tool)
    if not os.path.exists(S.SLEEP_SO):
        ok, out = try_make("test-modules")
        if not ok:
            sys.exit("bench: cannot build the sleep module:\n" + out)
    # Our modules were built (or not) by make bench; never make here again.
    S.fx._built = True
    S.snapshot_modules(moddir)

    use_cs = False
    if cfg.child_status != "no" and os.path.exists(S.CHILD_STATUS_SO):
        probe = S.make_server(S.Contender("event", "apache", "event", cfg.tpc),
                              cfg.budget, docroot, True)
        r = probe.configtest()
        probe.cleanup()
        use_cs = r.returncode == 0
        if not use_cs:
            notes.append("mod_child_status does not load (%s); per-child "
                         "shares come from the stock scoreboard"
                         % S.first_error_line(r.stderr))
    elif cfg.child_status != "no":
        notes.append("build/mod_child_status.so is absent; per-child shares "
                     "come from the stock scoreboard")
    source = "child-status" if use_cs else "scoreboard"

    chosen, skipped = [], []
    for c in S.all_contenders(cfg.tpc):
        if cfg.only and not any(c.name == o or c.name.startswith(o + "-")
                                for o in cfg.only):
            continue
        if c.mpm == "hybrid" and not os.path.exists(S.HYBRID_SO):
            skipped.append((c, "build/mod_mpm_hybrid.so is absent"))
            continue
        if c.kind == "nginx":
            if not os.path.exists(S.NGINX):
                skipped.append((c, "nginx is not installed (make deps "
                                   "PURPOSE=bench: nginx-light)"))
                continue
            srv = S.Nginx(docroot)
        else:
            srv = S.make_server(c, cfg.budget, docroot, use_cs)
        r = srv.configtest()
        srv.cleanup()
        if r.returncode != 0:
            skipped.append((c, "config test failed: " +
                            S.first_error_line(r.stderr + r.stdout)))
            continue
        chosen.append(c)
    for c, why in skipped:
        say("skip %-22s %s" % (c.name, why))
        notes.append("skipped %s: %s" % (c.name, why))
    return chosen, source


def foreign_load():
    """Processes that are not ours but compete for the CPU (other
    developers' servers and load generators)."""
    mine = set(S.fx.descendants(os.getpid())) | {os.getpid()}
    names = ("apache2", "ab", "wrk", "nginx", "pytest", "h2load", "curl")
    n = 0
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in mine:
            continue
        try:
            with open("/proc/%s/comm" % d) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in names or comm.startswith("python"):
            n += 1
    return n


# -- phases -----------------------------------------------------------------

def start(c, cfg, docroot, source, **sizing):
    srv = S.make_server(c, cfg.budget, docroot, source == "child-status",
                        **sizing)
    try:
        srv.start()
        if c.kind == "apache":
            want = sizing.get("start")
            if want is None:
                want = sizing.get("children") or cfg.budget // c.threads
            deadline = time.time() + 10
            while len(srv.children()) < want and time.time() < deadline:
                time.sleep(0.05)
    except Exception:
        srv.cleanup()
        raise
    return srv


def url_for(srv, w, cfg):
    if w == "10k":
        return srv.url(S.FILE_10K)
    if w == "keepalive-nommap":
        return srv.url(S.NOMMAP + S.SMALL)
    if w == "blocking" or w == "burst":
        return srv.url(S.SLEEP % cfg.sleep_ms)
    return srv.url(S.SMALL)


def in_order(items, rnd):
    """Round 0, 2, 4 ... in the given order, the others reversed."""
    return list(items) if rnd % 2 == 0 else list(reversed(items))


def main_workloads(c, cfg):
    return [w for w in MAIN if w in cfg.workloads
            and not (c.kind == "nginx" and w in APACHE_ONLY)]


def run_main(c, works, rnd, cfg, docroot, source, prog, results):
    """Start contender c, run `works` (main workloads) against it, stop."""
    if not works:
        return
    try:
        srv = start(c, cfg, docroot, source)
    except Exception as e:
        for w in works:
            prog.step("round %d %-22s %-9s server failed: %s" % (
                rnd + 1, c.name, w, str(e).splitlines()[0]))
            results.setdefault(c.name, {}).setdefault(w, []).append(
                {"round": rnd, "failed": str(e)[:500]})
        return
    try:
        if (c.mpm == "hybrid" and source == "child-status"
                and not c.note):
            try:
                st, mx = L.accept_info(srv.url(""))
                c.note = st + (" (%s)" % mx if mx and mx != "none"
                               else "")
            except Exception:
                pass
        if cfg.warmup > 0:
            L.warm("127.0.0.1", srv.port, S.SMALL, cfg.warmup)
        for w in works:
            fair = w == "close" and c.kind == "apache"
            before = {}
            if fair:
                before = L.child_counts(srv.url(""), source)
            try:
                res = L.run_wrk(url_for(srv, w, cfg), cfg.conns[w],
                                cfg.duration, close=(w == "close"))
            except Exception as e:
                res = {"failed": str(e)[:500]}
            res["round"] = rnd
            if fair and "failed" not in res:
                after = L.child_counts(srv.url(""), source)
                d = L.deltas(before, after, srv.children())
                shares = sorted(d.values())
                res["shares"] = shares
                res["jain"] = L.jain(shares)
                res["maxmin"] = L.max_min(shares)
            results.setdefault(c.name, {}).setdefault(w, []).append(res)
            prog.step("round %d %-22s %-9s %s" % (rnd + 1, c.name, w,
                                                   R.brief(res)))
    finally:
        srv.cleanup()
        if getattr(srv, "leftovers", None):
            prog.note("%s left processes behind (killed): %s" % (
                c.name, srv.leftovers))


def run_burst(c, rnd, cfg, docroot, source, prog, results):
    target = min(cfg.burst_conns, (cfg.budget // c.threads) * c.threads)
    res = {"round": rnd, "target": target}
    try:
        srv = start(c, cfg, docroot, source, start=1, spare_min=c.threads)
    except Exception as e:
        res["failed"] = str(e)[:500]
        results.setdefault(c.name, {}).setdefault("burst", []).append(res)
        prog.step("burst %-22s server failed" % c.name)
        return
    try:
        time.sleep(cfg.burst_idle)
        kids0, ready0 = srv.workers_ready(c.threads)
        res["children_at_start"] = kids0
        timeline = [(0.0, kids0, ready0)]
        t0 = time.time()
        proc = L.start_wrk(url_for(srv, "burst", cfg), cfg.burst_conns,
                           cfg.burst_window)
        grown = None
        while proc.poll() is None:
            t = time.time() - t0
            kids, ready = srv.workers_ready(c.threads)
            timeline.append((round(t, 3), kids, ready))
            if grown is None and ready >= target:
                grown = t
            time.sleep(0.05)
        try:
            res.update(L.finish_wrk(proc, 30))
        except Exception as e:
            res["failed"] = str(e)[:500]
        res["grown_s"] = grown
        res["timeline"] = timeline
        res["window"] = cfg.burst_window
    finally:
        srv.cleanup()
    results.setdefault(c.name, {}).setdefault("burst", []).append(res)
    prog.step("burst %-22s %s" % (c.name, R.brief_burst(res)))


def run_sizing_point(c, n, rnd, cfg, docroot, source, prog, sizing):
    row = {"round": rnd, "children": n}
    try:
        srv = start(c, cfg, docroot, source, children=n, start=n,
                    spare_min=1)
    except Exception as e:
        row["failed"] = str(e)[:500]
        sizing.append(row)
        prog.step("sizing %s N=%d server failed" % (c.name, n))
        return
    try:
        if cfg.warmup > 0:
            L.warm("127.0.0.1", srv.port, S.SMALL, cfg.warmup)
        for w, key in (("keepalive", "cheap"), ("blocking", "blocking")):
            try:
                row[key] = L.run_wrk(url_for(srv, w, cfg), cfg.conns[w],
                                     cfg.sizing_duration)
            except Exception as e:
                row[key] = {"failed": str(e)[:500]}
    finally:
        srv.cleanup()
    sizing.append(row)
    prog.step("sizing %s N=%-3d cheap %s | blocking %s" % (
        c.name, n, R.brief(row["cheap"]), R.brief(row["blocking"])))


def sizing_contender(chosen, cfg):
    for c in chosen:
        if c.mpm == "hybrid" and c.threads == 1 and c.strategy == "mutex":
            return c
    return S.Contender("prefork", "apache", "prefork", 1)


# -- machine ----------------------------------------------------------------

def machine_info():
    def first(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception:
            return "?"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.1f GiB" % (int(f.readline().split()[1]) / 1048576)
    except OSError:
        pass
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "apache": first([S.fx.APACHE2, "-v"]),
        "nginx": first([S.NGINX, "-v"]) if os.path.exists(S.NGINX) else "-",
        "wrk": first([L.WRK, "-v"]),
    }


def build_info():
    """Which build the run uses: taken when the modules are copied."""
    def first(cmd):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return r.stdout.strip()
    return {
        "hybrid_so": (time.strftime("%Y-%m-%d %H:%M",
                                    time.localtime(os.path.getmtime(
                                        S.HYBRID_SO)))
                      if os.path.exists(S.HYBRID_SO) else None),
        "git": first(["git", "-C", S.REPO, "describe", "--always",
                      "--dirty"]) or "?",
    }


def count_contenders(cfg, chosen):
    """Who gets counted: BENCH_COUNT_CONTENDERS, else every Apache
    contender (quick: prefork and worker, the references of the counted
    targets, and hybrid-exclusive)."""
    apache = [c for c in chosen if c.kind == "apache"]
    if cfg.count_only:
        return [c for c in apache if any(c.name == o or c.name.startswith(
            o + "-") for o in cfg.count_only)]
    if cfg.quick:
        return [c for c in apache if c.name in ("prefork", "worker")
                or c.name.startswith("hybrid-exclusive-")]
    return apache


def plan(cfg, chosen):
    apache = [c for c in chosen if c.kind == "apache"]
    steps, secs = 0, 0.0
    for c in chosen:
        ws = main_workloads(c, cfg)
        steps += cfg.rounds * len(ws)
        secs += cfg.rounds * len(ws) * (0.3 + cfg.warmup + cfg.duration)
    if "burst" in cfg.workloads:
        steps += cfg.burst_rounds * len(apache)
        secs += cfg.burst_rounds * len(apache) * (
            0.4 + cfg.burst_idle + cfg.burst_window)
    if "sizing" in cfg.workloads:
        steps += cfg.sizing_rounds * len(cfg.sizing_ns)
        secs += cfg.sizing_rounds * len(cfg.sizing_ns) * (
            0.4 + cfg.warmup + 2 * (cfg.sizing_duration + 0.15))
    if "count" in cfg.workloads:
        n = len(count_contenders(cfg, chosen)) * len(cfg.count.modes)
        steps += n
        secs += n * (2.0 + cfg.count.requests / 2500.0)
    return steps, secs


def main():
    cfg = Config()
    notes = []
    os.makedirs(cfg.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="hybbench-")
    os.chmod(tmp, 0o755)
    docroot = S.make_docroot(os.path.join(tmp, "docroot"))
    started = datetime.datetime.now()
    try:
        say("mpm_hybrid benchmark%s: %d cores, worker budget %d "
            "(threaded: %d children x %d threads; prefork-like: %d x 1)" % (
                " (BENCH_QUICK)" if cfg.quick else "", cfg.cores, cfg.budget,
                cfg.budget // cfg.tpc, cfg.tpc, cfg.budget))
        build = build_info()
        chosen, source = preflight(cfg, docroot, os.path.join(tmp, "modules"),
                                   notes)
        if not chosen:
            sys.exit("bench: no contender passed its config test")
        steps, secs = plan(cfg, chosen)
        say("contenders: %s" % ", ".join(c.name for c in chosen))
        say("per-child shares from: %s" % source)
        say("plan: %d steps, about %s (rounds %d, %gs per measurement)" % (
            steps, fmt_t(secs), cfg.rounds, cfg.duration))
        prog = Progress(steps, secs)
        results, sizing = {}, []
        foreign = [foreign_load()]
        load0 = os.getloadavg()

        # A fresh server per contender and workload, contenders
        # interleaved within each workload: on a shared machine the load
        # drifts over minutes, and this keeps the runs that are compared
        # with each other (one workload, one round) about 30 s apart.
        # Every other round runs the contenders in reverse (A B C, C B A)
        # so a drift within a round does not always hit the same ones.
        if any(w in cfg.workloads for w in MAIN):
            for rnd in range(cfg.rounds):
                for w in MAIN:
                    for c in in_order(chosen, rnd):
                        if w in main_workloads(c, cfg):
                            run_main(c, [w], rnd, cfg, docroot, source,
                                     prog, results)
                    foreign.append(foreign_load())
        if "burst" in cfg.workloads:
            for rnd in range(cfg.burst_rounds):
                for c in in_order(chosen, rnd):
                    if c.kind == "apache":
                        run_burst(c, rnd, cfg, docroot, source, prog,
                                  results)
            foreign.append(foreign_load())
        sz = None
        if "sizing" in cfg.workloads:
            sz = sizing_contender(chosen, cfg)
            for rnd in range(cfg.sizing_rounds):
                for n in in_order(cfg.sizing_ns, rnd):
                    run_sizing_point(sz, n, rnd, cfg, docroot, source, prog,
                                     sizing)
            foreign.append(foreign_load())

        counts = []
        if "count" in cfg.workloads:
            cc = count_contenders(cfg, chosen)
            if cc:
                work = os.path.join(tmp, "count")
                os.makedirs(work, exist_ok=True)
                counts = K.run_all(cfg.count, docroot,
                                   source == "child-status", work, chosen=cc,
                                   progress=prog.step)
            foreign.append(foreign_load())

        finished = datetime.datetime.now()
        run = {
            "started": started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "elapsed_s": round(prog.elapsed(), 1),
            "machine": dict(machine_info(), **build),
            "config": cfg.describe(),
            "contenders": [{"name": c.name, "kind": c.kind, "mpm": c.mpm,
                            "threads": c.threads, "strategy": c.strategy,
                            "stock": c.stock,
                            "layout": c.layout(cfg.budget),
                            "accept": c.note} for c in chosen],
            "share_source": source,
            "notes": notes,
            "loadavg_start": load0,
            "loadavg_end": os.getloadavg(),
            "foreign_processes_max": max(foreign),
            "results": results,
            "sizing_mpm": sz.name if sz else None,
            "sizing": sizing,
            "counts": counts,
        }
        with open(os.path.join(cfg.out, "results.json"), "w") as f:
            json.dump(run, f, indent=1)
        md = R.markdown(run)
        with open(os.path.join(cfg.out, "report.md"), "w") as f:
            f.write(md)
        png = R.chart(run, cfg.out)
        say("")
        say(md)
        say("written: %s%s" % (os.path.join(cfg.out, "report.md"),
                               ", " + png if png else " (no chart: %s)" %
                               R.last_chart_error))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def render(path, out=None):
    """Rebuild report.md and report.png from a saved results.json."""
    with open(path) as f:
        run = json.load(f)
    out = out or os.path.dirname(os.path.abspath(path))
    os.makedirs(out, exist_ok=True)
    md = R.markdown(run)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(md)
    png = R.chart(run, out)
    say(md)
    say("written: %s%s" % (os.path.join(out, "report.md"),
                           ", " + png if png else " (no chart: %s)" %
                           R.last_chart_error))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--render":
        render(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    elif len(sys.argv) > 1:
        sys.exit("usage: bench.py [--render results.json [outdir]]\n"
                 "(settings come from BENCH_* variables, see README.md)")
    else:
        main()

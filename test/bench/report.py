"""Turn a benchmark run (results.json) into Markdown and a gnuplot PNG.

Medians are over rounds.  Ratios are taken per round against the best
stock MPM (prefork, worker, event) of the same round and workload, then
the median of those ratios is reported, so a slow round hits every
contender alike.
"""
import math
import os
import statistics
import subprocess

import count as K

GNUPLOT = "/usr/bin/gnuplot"
WORKLOAD_TITLES = {
    "keepalive": "1. keep-alive, small static file",
    "keepalive-nommap": "1b. keep-alive, small static file, EnableMMAP Off "
                        "(Apache only)",
    "close": "2. connection per request (Connection: close), small static",
    "10k": "3. 10 KB static file (sendfile)",
    "blocking": "4. blocking handler",
}
# Distinct line colours for up to 12 contenders (gnuplot's default cycle
# has 8, so two contenders would share a colour).
COLOURS = ["#9400d3", "#009e73", "#56b4e9", "#e69f00", "#000000",
           "#0072b2", "#d55e00", "#cc79a7", "#999999", "#8b4513",
           "#228b22", "#ff1493"]
GOALS = {"keepalive": 1.10, "close": 1.25, "blocking_p99": 0.70,
         "jain": 0.98, "burst_s": 1.0}

last_chart_error = ""


# -- small helpers ------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def med_inf(xs):
    """Median where None means +infinity (a censored or infinite value)."""
    if not xs:
        return None
    ys = sorted(math.inf if x is None else x for x in xs)
    return statistics.median(ys) if len(ys) % 2 else \
        _mid(ys[len(ys) // 2 - 1], ys[len(ys) // 2])


def _mid(a, b):
    return math.inf if math.inf in (a, b) else (a + b) / 2


def random_jain(shares):
    """Jain's index expected if each of T requests went to one of n
    children at random (multinomial): 1 / (1 + (n - 1) / T).  A contender
    cannot be judged fairer than this with so few requests per child."""
    n, t = len(shares), sum(shares)
    return 1.0 / (1.0 + (n - 1) / float(t)) if n and t else None


def f_rps(x):
    return "-" if x is None else "{:,.0f}".format(x)


def f_ms(x):
    if x is None:
        return "-"
    return "%.2f" % x if x < 10 else "%.1f" % x if x < 100 else "%.0f" % x


def f_ratio(x):
    if x is None:
        return "-"
    return "inf" if x == math.inf else "%.2f×" % x


def f_num(x, fmt="%.3f"):
    if x is None:
        return "-"
    return "inf" if x == math.inf else fmt % x


def ok(res):
    return res is not None and "failed" not in res and "rps" in res


def brief(res):
    if not ok(res):
        return "FAILED: %s" % str((res or {}).get("failed", "?")).splitlines()[0]
    s = "%s req/s  p50 %s ms  p99 %s ms  errors %d" % (
        f_rps(res["rps"]), f_ms(res.get("p50")), f_ms(res.get("p99")),
        res.get("errors", 0))
    if res.get("jain") is not None:
        s += "  Jain %.3f over %d children" % (res["jain"],
                                                len(res.get("shares", [])))
    return s


def brief_burst(res):
    if "failed" in res:
        return "FAILED"
    g = res.get("grown_s")
    return "%d workers ready %s  (%s req/s, p99 %s ms, errors %d)" % (
        res["target"],
        "after %.2f s" % g if g is not None else
        "not within %.1f s" % res.get("window", 0),
        f_rps(res.get("rps")), f_ms(res.get("p99")), res.get("errors", 0))


# -- aggregation --------------------------------------------------------------

def aggregate(run):
    """Per contender and workload: medians, ratios, errors."""
    cons = run["contenders"]
    stock = [c["name"] for c in cons if c["stock"]]
    res = run["results"]
    agg = {}
    for w in WORKLOAD_TITLES:
        rounds = sorted({r["round"] for c in res.values()
                         for r in c.get(w, [])})
        best_rps, best_p99 = {}, {}
        for rnd in rounds:
            rs = [r for n in stock for r in res.get(n, {}).get(w, [])
                  if r["round"] == rnd and ok(r)]
            if rs:
                best_rps[rnd] = max(r["rps"] for r in rs)
                ps = [r["p99"] for r in rs if r.get("p99")]
                best_p99[rnd] = min(ps) if ps else None
        for c in cons:
            rows = res.get(c["name"], {}).get(w, [])
            if not rows:
                continue
            good = [r for r in rows if ok(r)]
            a = {
                "rounds": len(rows),
                "failed": len(rows) - len(good),
                "rps": med([r["rps"] for r in good]),
                "range": ("%s–%s" % (f_rps(min(r["rps"] for r in good)),
                                     f_rps(max(r["rps"] for r in good)))
                          if len(good) > 1 else ""),
                "p50": med([r.get("p50") for r in good]),
                "p99": med([r.get("p99") for r in good]),
                "errors": sum(r.get("errors", 0) for r in good),
                "requests": sum(r.get("requests", 0) for r in good),
                "ratio": med([r["rps"] / best_rps[r["round"]] for r in good
                              if best_rps.get(r["round"])]),
                "p99_ratio": med([r["p99"] / best_p99[r["round"]]
                                  for r in good if r.get("p99")
                                  and best_p99.get(r["round"])]),
            }
            if w == "close" and any("shares" in r for r in good):
                fr = [r for r in good if "shares" in r]
                a["jain"] = med([r.get("jain") for r in fr])
                a["jain_min"] = min((r["jain"] for r in fr
                                     if r.get("jain") is not None),
                                    default=None)
                a["maxmin"] = med_inf([r.get("maxmin") for r in fr])
                a["jain_random"] = med([random_jain(r["shares"])
                                        for r in fr])
                a["children"] = med([len(r["shares"]) for r in fr])
                a["idle_children"] = med([sum(1 for x in r["shares"]
                                              if x == 0) for r in fr])
            agg.setdefault(c["name"], {})[w] = a
    for c in cons:
        rows = res.get(c["name"], {}).get("burst", [])
        if rows:
            good = [r for r in rows if "failed" not in r]
            agg.setdefault(c["name"], {})["burst"] = {
                "rounds": len(rows),
                "failed": len(rows) - len(good),
                "target": rows[0]["target"],
                "grown_s": med_inf([r.get("grown_s") for r in good]),
                "window": rows[0].get("window"),
                "start_children": med([r.get("children_at_start")
                                       for r in good]),
                "rps": med([r.get("rps") for r in good]),
                "p99": med([r.get("p99") for r in good]),
                "errors": sum(r.get("errors", 0) for r in good),
            }
    return agg


def sizing_table(run):
    by_n = {}
    for row in run.get("sizing", []):
        by_n.setdefault(row["children"], []).append(row)
    out = []
    for n in sorted(by_n):
        rows = by_n[n]
        out.append({
            "n": n,
            "cheap": med([r["cheap"]["rps"] for r in rows
                          if ok(r.get("cheap"))]),
            "cheap_p99": med([r["cheap"].get("p99") for r in rows
                              if ok(r.get("cheap"))]),
            "blocking": med([r["blocking"]["rps"] for r in rows
                             if ok(r.get("blocking"))]),
            "blocking_p99": med([r["blocking"].get("p99") for r in rows
                                 if ok(r.get("blocking"))]),
            "errors": sum(r[k].get("errors", 0) for r in rows
                          for k in ("cheap", "blocking") if ok(r.get(k))),
        })
    return out


def peak_and_knee(table, key):
    pts = [(r["n"], r[key]) for r in table if r[key] is not None]
    if not pts:
        return None, None
    n_peak, peak = max(pts, key=lambda p: p[1])
    knee = min(n for n, v in pts if v >= 0.9 * peak)
    return n_peak, knee


def seed_verdict(table, cores):
    """Does 'cheap work peaks near one process per core, database-like work
    at 3-6x cores' hold?  Returns lines of plain text."""
    lines = []
    for key, lo, hi, what in (("cheap", 0.5, 2, "cheap work near 1× cores"),
                              ("blocking", 3, 6,
                               "blocking work at 3-6× cores")):
        n_peak, knee = peak_and_knee(table, key)
        if n_peak is None:
            continue
        tried = [r["n"] for r in table]
        top = n_peak == max(tried)
        holds = lo * cores <= knee <= hi * cores
        lines.append(
            "%s: highest req/s at N=%d (%.1f× cores)%s; 90%% of that from "
            "N=%d (%.1f× cores) — the seed's claim (%s) %s." % (
                key, n_peak, n_peak / cores,
                ", the largest N tried" if top else "", knee, knee / cores,
                what, "holds" if holds else "does not hold here"))
    return lines


def goals(run, agg):
    hyb = [c["name"] for c in run["contenders"] if c["mpm"] == "hybrid"]
    out = []
    if not hyb:
        return ["No mpm_hybrid contender ran, so no goal can be judged."]
    out += K.targets(run.get("counts"))

    def best(key, w, pick=max):
        vals = [(agg[n][w][key], n) for n in hyb
                if w in agg.get(n, {}) and agg[n][w].get(key) is not None]
        return pick(vals) if vals else (None, None)

    for w, label in (("keepalive", "keep-alive req/s"),
                     ("close", "connection-per-request req/s")):
        v, n = best("ratio", w)
        g = GOALS[w]
        out.append("%s ≥ %.2f× best stock: %s (best hybrid: %s %s)" % (
            label, g, "-" if v is None else "met" if v >= g else "not met",
            n or "-", f_ratio(v)))
    v, n = best("p99_ratio", "blocking", min)
    g = GOALS["blocking_p99"]
    out.append("blocking p99 ≤ %.2f× best stock: %s (best hybrid: %s %s)" % (
        g, "-" if v is None else "met" if v <= g else "not met", n or "-",
        f_ratio(v)))
    rp = [(n, agg[n]["close"].get("jain")) for n in hyb
          if "reuseport" in n and "close" in agg.get(n, {})]
    if rp:
        good = all(j is not None and j >= GOALS["jain"] for _, j in rp)
        out.append("Jain ≥ %.2f with reuseport: %s (%s)" % (
            GOALS["jain"], "met" if good else "not met",
            ", ".join("%s %s" % (n, f_num(j)) for n, j in rp)))
    else:
        out.append("Jain ≥ %.2f with reuseport: not measured (no reuseport "
                   "contender ran)" % GOALS["jain"])
    bs = [(agg[n]["burst"]["grown_s"], n) for n in hyb
          if "burst" in agg.get(n, {})]
    if bs:
        v, n = min(bs)
        out.append("burst served within %.0f s: %s (best hybrid: %s %s)" % (
            GOALS["burst_s"], "met" if v <= GOALS["burst_s"] else "not met",
            n, "%.2f s" % v if v != math.inf else "not within the window"))
    return out


# -- markdown -----------------------------------------------------------------

def table(head, rows):
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---" if i == 0 else "---:"
                          for i in range(len(head))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(out)


def _cc(run, key):
    return run["config"].get("count", {}).get(key, "?")


def _pools(run):
    c = run["config"].get("count", {})
    return "%s × 1 single-threaded, %s × N threaded" % (
        c.get("t1_children", "?"), c.get("children", "?"))


def markdown(run):
    agg = aggregate(run)
    cfg = run["config"]
    m = run["machine"]
    cons = run["contenders"]
    names = [c["name"] for c in cons]
    layout = {c["name"]: c["layout"] + (", " + c["accept"]
                                        if c.get("accept") else "")
              for c in cons}
    L = []
    L.append("# mpm_hybrid benchmark")
    L.append("")
    L.append("- date: %s to %s (%s s)%s" % (
        run["started"], run["finished"], run["elapsed_s"],
        ", BENCH_QUICK" if cfg["quick"] else ""))
    L.append("- machine: %s, %s cores, %s, Linux %s" % (
        m["cpu"], m["cores"], m["memory"], m["kernel"]))
    L.append("- software: %s; %s; %s; repo %s%s" % (
        m["apache"], m["nginx"], m["wrk"], m["git"],
        "; mod_mpm_hybrid.so built %s" % m["hybrid_so"]
        if m.get("hybrid_so") else ""))
    L.append("- worker budget: MaxRequestWorkers %d for every Apache "
             "contender — %d children × %d threads (worker, event, hybrid "
             "t%d) or %d processes × 1 thread (prefork, hybrid t1); nginx: "
             "worker_processes 2 (reference only).  The stock MPMs take "
             "connections without an accept mutex (one Listen)" % (
                 cfg["budget"], cfg["budget"] // cfg["tpc"], cfg["tpc"],
                 cfg["tpc"], cfg["budget"]))
    L.append("- same for all: stock apache2 with authz_core, authz_host, "
             "mime, dir, alias, status%s, bench_sleep; no access log; "
             "KeepAliveTimeout 5, MaxKeepAliveRequests 100 (nginx "
             "keepalive_requests 100), sendfile on" % (
                 ", child_status" if run["share_source"] == "child-status"
                 else ""))
    L.append("- load: wrk on 127.0.0.1, %d round(s) interleaved across "
             "contenders, %g s per measurement, medians over rounds (range: lowest–highest over rounds); ratio "
             "= contender ÷ best stock MPM of the same round (req/s: higher "
             "is better; p99: lower is better)" % (
                 cfg["rounds"], cfg["duration"]))
    busy = run.get("foreign_processes_max", 0)
    L.append("- machine load: loadavg %.2f at start, %.2f at end; %s" % (
        run["loadavg_start"][0], run["loadavg_end"][0],
        "up to %d other server/load/test processes were running "
        "(shared machine: numbers are noisy)" % busy if busy else
        "no other server or load processes seen"))
    for n in run["notes"]:
        L.append("- note: %s" % n)
    L.append("")

    # summary
    L.append("## Summary")
    L.append("")
    head = ["contender", "layout", "keep-alive", "conn/request", "10 KB",
            "blocking p99", "Jain (max/min)", "burst ready", "errors"]
    rows = []
    for n in names:
        a = agg.get(n, {})

        def cell(w):
            x = a.get(w)
            if not x or x["rps"] is None:
                return "-"
            return "%s (%s)" % (f_rps(x["rps"]), f_ratio(x["ratio"]))
        b = a.get("blocking")
        bl = "-" if not b or b["p99"] is None else "%s ms (%s)" % (
            f_ms(b["p99"]), f_ratio(b["p99_ratio"]))
        cl = a.get("close", {})
        fair = "-" if cl.get("jain") is None else "%s (%s)" % (
            f_num(cl["jain"]), f_ratio(cl.get("maxmin")))
        bu = a.get("burst")
        burst = "-" if not bu else (
            "%.2f s" % bu["grown_s"] if bu["grown_s"] != math.inf else
            "> %g s" % bu["window"])
        errs = sum(a[w]["errors"] for w in a if "errors" in a[w])
        rows.append([n, layout[n], cell("keepalive"), cell("close"),
                     cell("10k"), bl, fair, burst, errs])
    L.append(table(head, rows))
    L.append("")
    L.append("Cells: median req/s (ratio to best stock); blocking: median "
             "p99 (ratio); Jain's index of per-child requests in workload 2 "
             "(max/min share, inf = some child served none); burst: time "
             "until all workers were up; errors: wrk socket errors, "
             "timeouts and non-2xx over all runs.")
    L.append("")

    # goals
    L.append("## Goals")
    L.append("")
    for g in goals(run, agg):
        L.append("- " + g)
    L.append("")

    # per workload; keep-alive and connection per request carry the counted
    # figures of count.py (fixed pools, fixed request counts) next to req/s
    cix = K.index(run.get("counts"))
    count_mode = {"keepalive": "keepalive", "close": "close"}
    for w, title in WORKLOAD_TITLES.items():
        if not any(w in agg.get(n, {}) for n in names):
            continue
        cm = count_mode.get(w) if cix else None
        conns = cfg["conns"][w]
        extra = (", GET /sleep?ms=%d" % cfg["sleep_ms"]) if w == "blocking" \
            else ""
        L.append("## %s (%d connections%s)" % (title, conns, extra))
        L.append("")
        rows = []
        for n in names:
            a = agg.get(n, {}).get(w)
            if not a:
                continue
            row = [n, f_rps(a["rps"]), a["range"], f_ratio(a["ratio"]),
                   f_ms(a["p50"]), f_ms(a["p99"]),
                   f_ratio(a["p99_ratio"]), a["errors"],
                   "%d/%d" % (a["failed"], a["rounds"])
                   if a["failed"] else ""]
            if cm:
                f = cix.get((n, cm), {})
                per = "conn" if cm == "close" else "req"
                row += [K.fmt(f.get("sys_" + per), 2),
                        K.fmt(f.get("mpm_" + per), 3),
                        K.fmt(f.get("futex_req"), 3),
                        K.fmt(f.get("ctx_req"), 2),
                        K.fmt(f.get("cpu_us_req"), 1)]
            rows.append(row)
        head = ["contender", "req/s", "range", "× best stock", "p50 ms",
                "p99 ms", "p99 × best", "errors", "failed runs"]
        if cm:
            per = "conn" if cm == "close" else "req"
            head += ["syscalls/%s" % per, "MPM syscalls/%s" % per,
                     "futex/req", "ctx sw/req", "CPU µs/req"]
        L.append(table(head, rows))
        L.append("")
        if cm:
            L.append("Counted columns: count.py, a fixed pool (%s), ab -n "
                     "%s -c %s; syscalls traced (perf), context switches "
                     "and CPU from /proc (untraced run); see section 8." % (
                         _pools(run), _cc(run, "requests"),
                         _cc(run, "conc")))
            L.append("")

    # burst
    bu = [(n, agg[n]["burst"]) for n in names if "burst" in agg.get(n, {})]
    if bu:
        L.append("## 5. Burst (StartServers 1, idle, then %d connections "
                 "on /sleep?ms=%d for %g s)" % (
                     cfg["burst_conns"], cfg["sleep_ms"],
                     cfg["burst_window"]))
        L.append("")
        L.append(table(["contender", "children before", "workers needed",
                        "all ready after", "req/s", "p99 ms", "errors"],
                       [[n, f_num(a["start_children"], "%.0f"), a["target"],
                         "%.2f s" % a["grown_s"] if a["grown_s"] != math.inf
                         else "not within %g s" % a["window"],
                         f_rps(a["rps"]), f_ms(a["p99"]), a["errors"]]
                        for n, a in bu]))
        L.append("")

    # fairness
    fr = [(n, agg[n]["close"]) for n in names
          if agg.get(n, {}).get("close", {}).get("jain") is not None]
    if fr:
        L.append("## 6. Fairness (per-child requests during workload 2, "
                 "from %s)" % run["share_source"])
        L.append("")
        L.append(table(["contender", "children", "idle children", "Jain",
                        "worst round", "max/min share", "Jain if random"],
                       [[n, f_num(a["children"], "%.0f"),
                         f_num(a["idle_children"], "%.0f"), f_num(a["jain"]),
                         f_num(a["jain_min"]), f_ratio(a["maxmin"]),
                         f_num(a["jain_random"])]
                        for n, a in fr]))
        L.append("")
        L.append("Idle children: children that served no request in the "
                 "run.  Jain if random: the index expected if every request "
                 "picked a child at random (as a reuseport hash does); a "
                 "server that hands out work in turn can score higher, a "
                 "random one cannot be expected to.")
        L.append("")

    # counted cost
    if run.get("counts"):
        L.append("## 8. Counted cost (count.py: fixed pools, ab -n %s -c %s)"
                 % (_cc(run, "requests"), _cc(run, "conc")))
        L.append("")
        for mode in K.MODES:
            rows = K.summary_rows(run["counts"], mode)
            if rows:
                L.append("%s:" % K.MODE_TITLES[mode].capitalize())
                L.append("")
                L.append(table(K.summary_head(mode), rows))
                L.append("")
        for res in run["counts"]:
            if "failed" in res:
                L.append("- %s %s: FAILED: %s" % (
                    res["contender"], res["mode"],
                    res["failed"].splitlines()[0]))
        for g in K.targets(run["counts"]):
            L.append("- " + g)
        L.append("")
        L.append("Syscalls by name: `test/bench/count.py --render "
                 "results.json` on this run's results.json prints them "
                 "(`counts`).")
        L.append("")

    # sizing
    st = sizing_table(run)
    if st:
        cores = run["machine"]["cores"] or 1
        L.append("## 7. Sizing (%s, N children × 1 thread)" %
                 run["sizing_mpm"])
        L.append("")
        L.append(table(["N", "N / cores", "cheap req/s", "cheap p99 ms",
                        "blocking req/s", "blocking p99 ms", "errors"],
                       [[r["n"], "%.1f" % (r["n"] / cores),
                         f_rps(r["cheap"]), f_ms(r["cheap_p99"]),
                         f_rps(r["blocking"]), f_ms(r["blocking_p99"]),
                         r["errors"]] for r in st]))
        L.append("")
        for line in seed_verdict(st, cores):
            L.append("- " + line)
        L.append("")
    return "\n".join(L) + "\n"


# -- chart --------------------------------------------------------------------

def single_threaded(run, name):
    return any(c["name"] == name and c["threads"] == 1
               for c in run["contenders"])


def chart(run, out):
    """report.png next to report.md; returns its path or None."""
    global last_chart_error
    if not os.path.exists(GNUPLOT):
        last_chart_error = "gnuplot is not installed (make deps PURPOSE=bench: gnuplot-nox)"
        return None
    agg = aggregate(run)
    names = [c["name"] for c in run["contenders"]]
    ws = ("keepalive", "close", "10k")

    def val(n, w, k):
        x = agg.get(n, {}).get(w, {}).get(k)
        return "NaN" if x is None or x == math.inf else "%.4f" % x

    with open(os.path.join(out, "ratios.dat"), "w") as f:
        f.write("# contender keepalive close 10k (ratio to best stock)\n")
        for n in names:
            f.write('"%s" %s\n' % (n, " ".join(val(n, w, "ratio")
                                               for w in ws)))
    with open(os.path.join(out, "blocking.dat"), "w") as f:
        f.write("# contender p50 p99 (ms)\n")
        for n in names:
            if "blocking" in agg.get(n, {}):
                f.write('"%s" %s %s\n' % (n, val(n, "blocking", "p50"),
                                          val(n, "blocking", "p99")))
    st = sizing_table(run)
    with open(os.path.join(out, "sizing.dat"), "w") as f:
        f.write("# N cheap_rps blocking_rps\n")
        for r in st:
            f.write("%d %s %s\n" % (r["n"],
                                    r["cheap"] if r["cheap"] else "NaN",
                                    r["blocking"] if r["blocking"] else
                                    "NaN"))
    burst_names = []
    with open(os.path.join(out, "burst.dat"), "w") as f:
        for n in names:
            rows = [r for r in run["results"].get(n, {}).get("burst", [])
                    if "timeline" in r]
            if not rows:
                continue
            burst_names.append(n)
            f.write("# %s: t ready_workers/target\n" % n)
            r = rows[-1]
            for t, _kids, ready in r["timeline"]:
                f.write("%.3f %.4f\n" % (t, ready / float(r["target"])))
            f.write("\n\n")
    png = os.path.join(out, "report.png")
    gp = os.path.join(out, "report.gp")
    has_blk = any("blocking" in agg.get(n, {}) for n in names)
    p = []
    p.append("set terminal pngcairo size 1600,1100 font 'Sans,10'")
    p.append("set output '%s'" % png)
    p.append("set multiplot layout 2,2 title 'mpm\\_hybrid benchmark, %s, "
             "%s cores, worker budget %d'" % (
                 run["started"][:16], run["machine"]["cores"],
                 run["config"]["budget"]))
    p.append("set style data histograms")
    p.append("set style histogram clustered gap 1")
    p.append("set style fill solid 0.8 border -1")
    p.append("set xtics rotate by -35 noenhanced")
    p.append("set key top left noenhanced")
    p.append("set grid ytics")
    p.append("set title 'req/s relative to the best stock MPM (same round)'")
    p.append("set yrange [0:*]")
    p.append("plot '%s' using 2:xtic(1) title 'keep-alive', '' using 3 "
             "title 'conn/request', '' using 4 title '10 KB', 1 with lines "
             "lt -1 dt 2 notitle" % os.path.join(out, "ratios.dat"))
    if has_blk:
        p.append("set title 'blocking handler: latency (ms), lower is "
                 "better'")
        p.append("plot '%s' using 2:xtic(1) title 'p50', '' using 3 title "
                 "'p99'" % os.path.join(out, "blocking.dat"))
    else:
        p.append("set multiplot next")
    p.append("set style data linespoints")
    p.append("unset xtics; set xtics nomirror; set logscale x 2")
    p.append("set xlabel 'children (1 thread each)'")
    if st:
        p.append("set title 'sizing: req/s against the number of children "
                 "(%s)'" % run["sizing_mpm"])
        p.append("set ylabel 'cheap req/s'; set y2label 'blocking req/s'")
        p.append("set ytics nomirror; set y2tics; set y2range [0:*]")
        p.append("plot '%s' using 1:2 axes x1y1 title 'cheap (keep-alive "
                 "static)' lw 2, '' using 1:3 axes x1y2 title 'blocking "
                 "(5 ms sleep)' lw 2" % os.path.join(out, "sizing.dat"))
    else:
        p.append("set multiplot next")
    p.append("unset logscale x; unset y2tics; unset y2label; set ytics "
             "mirror")
    if burst_names:
        p.append("set title 'burst: ready workers / workers needed, from "
                 "StartServers 1'")
        p.append("set xlabel 'seconds since the burst began'")
        p.append("set ylabel 'fraction ready'; set yrange [0:1.1]")
        p.append("set key bottom right title 'dashed: 1 thread per child'")
        p.append("plot " + ", ".join(
            "'%s' index %d using 1:2 with lines lw 2 lc rgb '%s' dt %d "
            "title '%s'" % (os.path.join(out, "burst.dat"), i,
                            COLOURS[names.index(n) % len(COLOURS)],
                            2 if single_threaded(run, n) else 1, n)
            for i, n in enumerate(burst_names)))
    p.append("unset multiplot")
    with open(gp, "w") as f:
        f.write("\n".join(p) + "\n")
    r = subprocess.run([GNUPLOT, gp], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(png):
        last_chart_error = (r.stderr or "gnuplot failed")[-500:]
        return None
    return png

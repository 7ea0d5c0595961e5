"""Load generation with wrk, and what the benchmark reads from servers.

run_wrk() runs Debian's wrk as a separate process against 127.0.0.1 and
parses its report; child_counts() reads per-child request counts from
mod_child_status's JSON or, without it, from the stock scoreboard
(mod_status with ExtendedStatus).
"""
import http.client
import json
import os
import re
import subprocess
import time
import urllib.request

WRK = "/usr/bin/wrk"

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text.strip())
    if not m:
        return None
    return float(m.group(1)) * _UNIT[m.group(2)]


def parse_wrk(out):
    """wrk --latency report -> dict(rps, p50, p99 (ms), requests, errors,
    err_detail) or raises ValueError."""
    res = {}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if not m:
        raise ValueError("no Requests/sec in wrk output:\n" + out[-2000:])
    res["rps"] = float(m.group(1))
    for pct in ("50", "99"):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+(\S+)" % pct, out, re.M)
        res["p" + pct] = _ms(m.group(1)) if m else None
    m = re.search(r"^\s+(\d+) requests in", out, re.M)
    res["requests"] = int(m.group(1)) if m else 0
    detail = {}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", out)
    if m:
        for k, v in zip(("connect", "read", "write", "timeout"), m.groups()):
            if int(v):
                detail[k] = int(v)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m and int(m.group(1)):
        detail["non2xx"] = int(m.group(1))
    res["errors"] = sum(detail.values())
    res["err_detail"] = detail
    return res


def whole_seconds(t):
    """wrk takes whole seconds only."""
    return max(1, int(round(t)))


def warm(host, port, path, seconds):
    """A light warm-up before measuring: one keep-alive client fetching
    path for `seconds` (wrk cannot run for less than a second)."""
    deadline = time.time() + seconds
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        while time.time() < deadline:
            conn.request("GET", path)
            conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        pass
    finally:
        conn.close()


def wrk_args(url, conns, duration, close=False, threads=None, timeout=2):
    threads = threads or max(1, min(os.cpu_count() or 1, conns))
    args = [WRK, "-t", str(threads), "-c", str(conns),
            "-d", "%ds" % whole_seconds(duration), "--latency",
            "--timeout", "%ds" % whole_seconds(timeout)]
    if close:
        args += ["-H", "Connection: close"]
    return args + [url]


def run_wrk(url, conns, duration, close=False, timeout=2):
    args = wrk_args(url, conns, duration, close=close, timeout=timeout)
    r = subprocess.run(args, capture_output=True, text=True,
                       timeout=duration + timeout + 30)
    return parse_wrk(r.stdout + r.stderr)


def start_wrk(url, conns, duration, close=False, timeout=2):
    """wrk in the background (for the burst); finish with finish_wrk()."""
    return subprocess.Popen(wrk_args(url, conns, duration, close=close,
                                     timeout=timeout),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish_wrk(proc, timeout):
    out, _ = proc.communicate(timeout=timeout)
    return parse_wrk(out)


# -- per-child request counts ---------------------------------------------

def _get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8", "replace")


def child_counts_json(base):
    """{pid: requests} of live children from /child-status?json."""
    doc = json.loads(_get(base + "/child-status?json"))
    out = {}
    for ch in doc.get("children", []):
        pid, req = ch.get("pid"), ch.get("requests")
        if pid and req is not None and ch.get("state") not in ("dead",
                                                               "empty"):
            out[int(pid)] = out.get(int(pid), 0) + int(req)
    return out


def accept_info(base):
    """(strategy, mutex mechanism) as mod_child_status reports them."""
    doc = json.loads(_get(base + "/child-status?json"))
    return doc.get("accept_strategy"), doc.get("accept_mutex")


_ROW = re.compile(r"<tr><td><b>(\d+)-\d+</b></td><td>(\d+|-)</td>"
                  r"<td>(\d+)/(\d+)/(\d+)</td>")


def child_counts_scoreboard(base):
    """{pid: requests} from mod_status's per-worker table: each worker
    row's "this child" count (reset when the thread is new), summed by
    pid."""
    html = _get(base + "/server-status")
    out = {}
    for m in _ROW.finditer(html):
        pid = m.group(2)
        if pid == "-":
            continue
        out[int(pid)] = out.get(int(pid), 0) + int(m.group(4))
    return out


def child_counts(base, source):
    if source == "child-status":
        return child_counts_json(base)
    return child_counts_scoreboard(base)


def deltas(before, after, live_pids):
    """Requests each live child served between two snapshots.  Children
    that are alive but served nothing count as 0."""
    out = {}
    for pid in set(live_pids) | set(after):
        if live_pids and pid not in live_pids:
            continue
        out[pid] = max(0, after.get(pid, 0) - before.get(pid, 0))
    return out


def jain(xs):
    xs = [float(x) for x in xs]
    if not xs or sum(xs) == 0:
        return None
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))


def max_min(xs):
    """max/min share; None when some child served nothing (infinite)."""
    xs = list(xs)
    if not xs or min(xs) == 0:
        return None
    return max(xs) / min(xs)


def wait_idle(seconds):
    time.sleep(seconds)

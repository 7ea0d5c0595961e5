#!/usr/bin/python3
"""Overhead of mod_child_status: the same server with and without it.

Two measures, both on a keep-alive load of a small static file:

  wrk           two servers up at once (identical config, the second one
                loads the module), `wrk -t2 -c50` runs alternated PAIRS
                times so background load on a shared machine hits both
                alike; prints each pair and the ratio of the sums.
  instructions  apache2 -X under cachegrind (needs valgrind), keep-alive
                ab with two request counts; the difference cancels start-up
                and exit, so it prints instructions per request, which no
                other load on the machine can disturb.

Usage: test/bench/overhead.py wrk|instructions [MPM] [PAIRS] [SECONDS]
Run from the repository root after `make`; it starts and stops its own
servers (test/integration/httpd_fixture.py) and leaves nothing running.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))
import httpd_fixture as hf  # noqa: E402

# Both servers get the same <Location> (SetHandler is core), so only the
# LoadModule line differs.
LOCATION = ("<Location /child-status>\n  SetHandler child-status\n"
            "  Require local\n</Location>\n")
CONF = {
    "event": "StartServers 2\nServerLimit 4\nThreadsPerChild 25\n"
             "MaxRequestWorkers 100\nMinSpareThreads 25\nMaxSpareThreads 100\n",
    "worker": "StartServers 2\nServerLimit 4\nThreadsPerChild 25\n"
              "MaxRequestWorkers 100\nMinSpareThreads 25\nMaxSpareThreads 100\n",
    "prefork": "StartServers 60\nMinSpareServers 60\nMaxSpareServers 64\n"
               "ServerLimit 64\nMaxRequestWorkers 64\n",
    "hybrid": "StartServers 2\nThreadsPerChild 25\nMinSpareThreads 25\n"
              "MaxSpareThreads 100\nAcceptStrategy mutex\n",
}


def server(mpm, with_module):
    return hf.Httpd(mpm=mpm,
                    modules=["child_status"] if with_module else [],
                    conf=CONF[mpm] + "MaxKeepAliveRequests 0\n" + LOCATION)


def wrk(h, seconds):
    out = subprocess.run(["wrk", "-t2", "-c50", "-d%ds" % seconds,
                          h.url("/small.txt")],
                         capture_output=True, text=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def by_wrk(mpm, pairs, seconds):
    servers = [server(mpm, False), server(mpm, True)]
    try:
        for h in servers:
            h.start()
        for h in servers:
            wrk(h, 2)                                   # warm up
        sums = [0.0, 0.0]
        for i in range(pairs):
            r = {}
            for k in ([0, 1] if i % 2 == 0 else [1, 0]):
                r[k] = wrk(servers[k], seconds)
                sums[k] += r[k]
            print("pair %2d  without %8.0f  with %8.0f  ratio %.4f"
                  % (i, r[0], r[1], r[1] / r[0]), flush=True)
        print("%s: with/without throughput ratio %.4f over %d pairs"
              % (mpm, sums[1] / sums[0], pairs))
    finally:
        for h in servers:
            h.cleanup()


def instructions(mpm, with_module, requests):
    h = server(mpm, with_module)
    p = subprocess.Popen(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                          "--cachegrind-out-file=/dev/null", hf.APACHE2,
                          "-f", h.conf_path, "-X"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", h.port), 0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        out = subprocess.run(["ab", "-q", "-k", "-c", "1", "-n",
                              str(requests), h.url("/small.txt")],
                             capture_output=True, text=True,
                             timeout=600).stdout
        assert "Complete requests:      %d" % requests in out, out
        os.kill(p.pid, signal.SIGTERM)
        err = p.communicate(timeout=300)[1].decode()
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        h.cleanup()
    return int(re.search(r"I\s+refs:\s+([\d,]+)", err).group(1)
               .replace(",", ""))


def by_instructions(mpm, n1=2000, n2=6000):
    per = []
    for with_module in (False, True):
        a = instructions(mpm, with_module, n1)
        b = instructions(mpm, with_module, n2)
        per.append((b - a) / (n2 - n1))
        print("%s %s the module: %.0f instructions per request"
              % (mpm, "with" if with_module else "without", per[-1]),
              flush=True)
    print("%s: with/without instructions ratio %.4f (%+.0f per request)"
          % (mpm, per[1] / per[0], per[1] - per[0]))


def main(argv):
    mode = argv[1] if len(argv) > 1 else "wrk"
    mpm = argv[2] if len(argv) > 2 else "event"
    if mode == "instructions":
        by_instructions(mpm)
    else:
        pairs = int(argv[3]) if len(argv) > 3 else 10
        seconds = int(argv[4]) if len(argv) > 4 else 10
        by_wrk(mpm, pairs, seconds)


if __name__ == "__main__":
    main(sys.argv)

"""AsyncConnections (issue 11): a connection waiting for its next request,
or in its lingering close, holds no thread; it is parked in its child's
poller and served again by whichever thread is free.  Each test drives a
real apache2 over raw sockets (or ab, openssl, h2load) and checks what a
client sees, and the scoreboard's async fields where they tell."""
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from httpd_fixture import (cpu_ticks, read_to_eof, require_tool, run_load,
                           settle, sleep_conf, wchan)

# 2 children x 4 threads: far fewer threads than idle connections
SMALL = ["StartServers 2", "ServerLimit 8", "ThreadsPerChild 4",
         "MaxRequestWorkers 8", "MinSpareThreads 1", "MaxSpareThreads 16"]
GET = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"
BODY = b"0123456789abc\n"


def conf(*lines, async_on=True):
    return "\n".join(list(SMALL) + list(lines)
                     + ["AsyncConnections %s" % ("On" if async_on else "Off")])


@pytest.fixture(autouse=True)
def more_fds():
    """Hundreds of client sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(h, timeout=10):
    s = socket.create_connection(("127.0.0.1", h.port), timeout=timeout)
    s.settimeout(timeout)
    return s


def read_response(s, buf=b""):
    """One HTTP/1.1 response with Content-Length; returns (head, body,
    rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response: %r" % buf)
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        rest += chunk
    return head, rest[:n], rest[n:]


def idle_connections(h, n):
    """n connections that each made one request and now idle in keep-alive."""
    socks = []
    for _ in range(n):
        s = connect(h)
        s.sendall(GET)
        socks.append(s)
    for s in socks:
        head, body, _ = read_response(s)
        assert head.startswith(b"HTTP/1.1 200") and body == BODY
    return socks


def close_all(socks):
    for s in socks:
        s.close()


def status(h):
    return h.status_auto()


def test_more_idle_connections_than_threads(httpd):
    """400 idle keep-alive connections on 8 threads: fresh clients are
    served at once, the scoreboard counts the parked connections, and the
    idle ones are still served afterwards."""
    h = httpd(conf=conf("KeepAliveTimeout 60", "MaxKeepAliveRequests 0"))
    h.start()
    settle(h)
    socks = idle_connections(h, 400)
    try:
        t0 = time.time()
        done, failed, non2xx, out = run_load(h.url("/small.txt"), 500, 10)
        took = time.time() - t0
        assert (done, failed, non2xx) == (500, 0, 0), out
        assert took < 10, "fresh clients took %.1f s\n%s" % (took, out)
        # each child publishes its counts every 100 ms or so: wait for both
        a = h.wait_for(lambda: (lambda a: a if int(a.get("ConnsAsyncKeepAlive",
                                                           0)) >= 390
                                and int(a.get("ConnsTotal", 0)) >= 400
                                else None)(status(h)),
                       timeout=5, what="ConnsAsyncKeepAlive and ConnsTotal")
        assert int(a["BusyWorkers"]) <= 2, a
        for s in socks:
            s.sendall(GET)
        for s in socks:
            head, body, _ = read_response(s)
            assert head.startswith(b"HTTP/1.1 200") and body == BODY
    finally:
        close_all(socks)


def test_off_switch_restores_thread_per_connection(httpd):
    """AsyncConnections Off: as before, each open connection holds a
    thread, so 8 idle connections leave none for a fresh client, and
    mod_status has no async table (the MPM does not answer IS_ASYNC)."""
    h = httpd(conf=conf("KeepAliveTimeout 30", async_on=False))
    h.start()
    settle(h)
    assert "ConnsAsyncKeepAlive" not in status(h)
    socks = idle_connections(h, 8)
    try:
        s = connect(h, timeout=1.5)
        s.sendall(GET)
        with pytest.raises(socket.timeout):
            s.recv(100)
        s.close()
    finally:
        close_all(socks)


@pytest.mark.parametrize("tpc", [1, 4])
def test_keepalive_timeout_enforced_within_a_second(httpd, tpc):
    """KeepAliveTimeout 2: a parked connection is closed no sooner than
    2 s after its response and no later than about a second after that."""
    h = httpd(conf=conf("KeepAliveTimeout 2", "ThreadsPerChild %d" % tpc,
                        "ThreadLimit 4"))
    h.start()
    settle(h)
    s = connect(h)
    s.sendall(GET)
    read_response(s)
    t0 = time.time()
    s.settimeout(10)
    assert s.recv(100) == b""
    waited = time.time() - t0
    assert 1.9 <= waited <= 3.4, "closed after %.2f s" % waited


def test_pipelined_requests_answered_in_order(httpd):
    h = httpd(conf=conf())
    h.start()
    s = connect(h)
    reqs = b"".join(b"GET /small.txt?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i
                    for i in range(5))
    reqs += b"GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    s.sendall(reqs)
    data = read_to_eof(s)
    heads = re.findall(rb"HTTP/1.1 (\d+)", data)
    assert heads == [b"200"] * 6, data[:500]
    assert data.count(BODY) == 5 and data.endswith(b"</html>\n")


def test_request_bodies_chunked_and_expect_continue(httpd):
    """POST with Content-Length, chunked, and Expect: 100-continue on one
    keep-alive connection (a POST to a static file is answered 405 after
    its body was read: the connection must stay usable)."""
    h = httpd(conf=conf())
    h.start()
    s = connect(h)
    s.sendall(b"POST /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
              b"\r\nhello")
    head, _, rest = read_response(s)
    assert re.match(rb"HTTP/1.1 (405|200)", head), head
    s.sendall(b"POST /small.txt HTTP/1.1\r\nHost: t\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    head, _, rest = read_response(s, rest)
    assert re.match(rb"HTTP/1.1 (405|200)", head), head
    s.sendall(b"POST /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
              b"Expect: 100-continue\r\n\r\n")
    first = s.recv(100)
    assert first.startswith(b"HTTP/1.1 100") or first.startswith(b"HTTP/1.1 4"), \
        first
    if first.startswith(b"HTTP/1.1 100"):
        s.sendall(b"data")
        head, _, rest = read_response(s, first.split(b"\r\n\r\n", 1)[1])
    s.sendall(GET)
    head, body, _ = read_response(s, rest if not first.startswith(b"HTTP/1.1 4")
                                  else b"")
    assert body == BODY


def make_cert(d):
    key, crt = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
    subprocess.run([require_tool("openssl"), "req", "-x509", "-newkey",
                    "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    return key, crt


def test_tls_keepalive_through_mod_ssl(httpd, tmp_path):
    """Keep-alive over TLS: requests on one TLS connection, parked between
    them, while more idle TLS connections than threads stay open."""
    key, crt = make_cert(str(tmp_path))
    h = httpd(conf=conf("SSLEngine on", "SSLCertificateFile %s" % crt,
                        "SSLCertificateKeyFile %s" % key,
                        "KeepAliveTimeout 30"),
              modules=["socache_shmcb", "ssl"])
    h.start()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conns = []
    try:
        for _ in range(20):
            s = ctx.wrap_socket(connect(h), server_hostname="127.0.0.1")
            s.sendall(GET)
            head, body, _ = read_response(s)
            assert body == BODY
            conns.append(s)
        for _ in range(3):
            for s in conns:
                s.sendall(GET)
            for s in conns:
                head, body, _ = read_response(s)
                assert head.startswith(b"HTTP/1.1 200") and body == BODY
    finally:
        close_all(conns)


def test_h2c_with_parking(httpd):
    h = httpd(conf=conf("Protocols h2c http/1.1", "ThreadsPerChild 4"),
              modules=["http2"])
    h.start()
    r = subprocess.run([require_tool("h2load"), "-n", "400", "-c", "4", "-m",
                        "4", h.url("/small.txt")], capture_output=True,
                       text=True, timeout=60)
    assert re.search(r"400 succeeded", r.stdout), r.stdout + r.stderr


def test_tpc1_with_parking(httpd, sleep_module):
    """ThreadsPerChild 1 with AsyncConnections On: one thread per child
    serves its parked connections in turn; more idle connections than
    children, and fresh clients are still served."""
    h = httpd(conf="\n".join([
        "ThreadsPerChild 1", "StartServers 3", "MinSpareServers 1",
        "MaxSpareServers 8", "MaxRequestWorkers 4", "AsyncConnections On",
        "KeepAliveTimeout 30", sleep_conf(sleep_module)]))
    h.start()
    settle(h)
    socks = idle_connections(h, 50)
    try:
        done, failed, non2xx, out = run_load(h.url("/small.txt"), 200, 4)
        assert (done, failed, non2xx) == (200, 0, 0), out
        for s in socks:
            s.sendall(GET)
        for s in socks:
            assert read_response(s)[1] == BODY
        for pid in h.children():
            assert len(os.listdir("/proc/%d/task" % pid)) == 1
    finally:
        close_all(socks)


def test_graceful_stop_closes_idle_serves_in_flight(httpd, sleep_module):
    """Graceful stop: idle parked connections are closed at once, a
    request in flight is answered, then the server exits."""
    h = httpd(conf=conf("KeepAliveTimeout 60", sleep_conf(sleep_module)))
    h.start()
    settle(h)
    socks = idle_connections(h, 50)
    busy = connect(h)
    busy.sendall(b"GET /sleep?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.3)
    t0 = time.time()
    h.signal(signal.SIGWINCH)
    closed = 0
    for s in socks:
        s.settimeout(3)
        try:
            if s.recv(100) == b"":
                closed += 1
        except OSError:
            pass
    assert closed == 50, "%d of 50 idle connections closed" % closed
    assert time.time() - t0 < 3
    head, body, _ = read_response(busy)
    assert head.startswith(b"HTTP/1.1 200") and body == b"slept 1500 ms\n"
    assert h.proc.wait(10) == 0
    close_all(socks)
    busy.close()


def test_gracefuls_under_keepalive_load_lose_nothing(httpd):
    """20 graceful restarts while ab -k runs: nothing fails; the old
    generation's parked connections are closed while idle or answered."""
    h = httpd(conf=conf("KeepAliveTimeout 30", "ServerLimit 16",
                        "MaxRequestWorkers 16"))
    h.start()
    settle(h)
    result = {}

    def load():
        result["ab"] = run_load(h.url("/small.txt"), 10000000, 10,
                                keepalive=True, timelimit=9, timeout=60)
    t = threading.Thread(target=load)
    t.start()
    time.sleep(0.5)
    for _ in range(20):
        h.graceful()
        time.sleep(0.4)
    t.join()
    done, failed, non2xx, out = result["ab"]
    assert failed == 0 and non2xx == 0 and done > 1000, out
    took = float(re.search(r"Time taken for tests:\s+([\d.]+)", out).group(1))
    assert took > 8, "ab ended before the restarts did:\n" + out
    assert h.proc.poll() is None


def test_gracefuls_with_many_idle_connections_never_starve_slots(httpd):
    """2000 idle connections, 10 graceful restarts in a row: each old
    generation lets go of its slots as soon as its requests end (its idle
    connections are closed), so new children always start and fresh
    clients are served (event's AH00485 'scoreboard is full' does not
    happen)."""
    h = httpd(conf="\n".join([
        "StartServers 2", "ServerLimit 6", "ThreadsPerChild 25",
        "MaxRequestWorkers 50", "MinSpareThreads 25", "MaxSpareThreads 75",
        "KeepAliveTimeout 60", "AsyncConnections On"]))
    h.start()
    settle(h)
    socks = idle_connections(h, 2000)
    try:
        for _ in range(10):
            h.graceful()
            time.sleep(0.5)
        done, failed, non2xx, out = run_load(h.url("/small.txt"), 500, 10)
        assert (done, failed, non2xx) == (500, 0, 0), out
        assert not h.log_matches(r"AH00485|HYB00054|scoreboard is full"), \
            h.log()[-3000:]
    finally:
        close_all(socks)


def test_killed_child_with_parked_connections(httpd):
    """kill -9 of a child holding parked connections: its clients see the
    close, the other child goes on serving, a replacement starts."""
    h = httpd(conf=conf("KeepAliveTimeout 60"))
    h.start()
    kids = settle(h)
    socks = idle_connections(h, 100)
    try:
        os.kill(kids[0], signal.SIGKILL)
        done, failed, non2xx, out = run_load(h.url("/small.txt"), 500, 8)
        assert (done, failed, non2xx) == (500, 0, 0), out
        h.wait_for(lambda: len(h.children()) >= 2 and kids[0] not in
                   h.children(), timeout=10, what="a replacement")
    finally:
        close_all(socks)


def test_fd_limit_reached_logs_once_and_does_not_spin(httpd):
    """With a hard fd limit of 256, 600 clients: a child that runs out of
    descriptors says so once, stops accepting for a while instead of
    spinning, and the server keeps serving what it can hold."""
    h = httpd(conf=conf("KeepAliveTimeout 30", "StartServers 1",
                        "MaxSpareThreads 64"))
    h.start(prefix=[require_tool("prlimit"), "--nofile=256:256"])
    settle(h)
    socks = []
    try:
        for _ in range(600):
            s = connect(h, timeout=2)
            s.sendall(GET)
            socks.append(s)
        served = 0
        for s in socks:
            try:
                if read_response(s)[1] == BODY:
                    served += 1
            except OSError:
                pass
        assert served >= 150, served
        lines = h.log_matches(r"HYB00020[^\n]*")
        assert 1 <= len(lines) <= len(h.seen_pids) + 2, lines
        # no spinning: the children's CPU over a quiet second stays low
        pids = h.children()
        before = sum(cpu_ticks(p) for p in pids)
        time.sleep(1)
        after = sum(cpu_ticks(p) for p in pids)
        assert after - before < 30, "children used %d ticks in 1 s" % (
            after - before)
    finally:
        close_all(socks)


def test_connection_limit_sends_clients_to_other_children(httpd):
    """AsyncConnectionLimit 50 per child, 2 children, 90 idle connections:
    no child holds more than its limit, and all are served."""
    h = httpd(conf=conf("KeepAliveTimeout 30", "AsyncConnectionLimit 50",
                        "MaxSpareThreads 8"))
    h.start()
    settle(h)
    socks = idle_connections(h, 90)
    try:
        time.sleep(1)
        per_child = connections_per_child(h)
        assert per_child and max(per_child.values()) <= 50, per_child
        assert sum(per_child.values()) >= 90, per_child
    finally:
        close_all(socks)


def connections_per_child(h):
    """pid -> established connections to our port, from /proc."""
    inodes = {}
    port_hex = ":%04X" % h.port
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(port_hex) and parts[3] == "01":
                        inodes[parts[9]] = 1
        except OSError:
            pass
    out = {}
    for pid in h.children():
        n = 0
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            m = re.match(r"socket:\[(\d+)\]", link)
            if m and m.group(1) in inodes:
                n += 1
        out[pid] = n
    return out



WRK_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_latency(h, path, connections, seconds, headers=(), threads=1):
    """What wrk says of `connections` keep-alive clients that never
    pause: (requests, longest latency in ms, median latency in ms, socket
    errors, wrk's output).  headers: ("Connection: close",) for a
    connection per request."""
    out = subprocess.run(
        [require_tool("wrk"), "-t%d" % threads, "-c%d" % connections,
         "-d%ds" % seconds, "--latency"]
        + [a for hd in headers for a in ("-H", hd)] + [h.url(path)],
        capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"(\d+) requests in", out)
    worst = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", out)
    median = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    assert m and worst and median, out
    errors = re.search(r"Socket errors: (.*)", out)
    return (int(m.group(1)),
            float(worst.group(1)) * WRK_UNIT_MS[worst.group(2)],
            float(median.group(1)) * WRK_UNIT_MS[median.group(2)],
            errors.group(1) if errors else "", out)


@pytest.mark.parametrize("mech", ["fcntl", "pthread"])
def test_mutex_busy_clients_do_not_starve_parked_ones(httpd, mech):
    """AcceptStrategy mutex, 4 children x 5 threads, 40 clients that never
    pause: more busy connections than threads in each child.  A thread
    that finished a request waits a moment for its client's next one only
    while another thread watches the parked connections; the holder of a
    child's accept turn, waiting for the mutex, does not, and while it
    counted, busy clients kept the threads and parked ones waited up to a
    second (the lock's slice)."""
    h = httpd(conf="\n".join([
        "StartServers 4", "ServerLimit 4", "ThreadsPerChild 5",
        "MaxRequestWorkers 20", "MinSpareThreads 1", "MaxSpareThreads 20",
        "AcceptStrategy mutex", "Mutex %s mpm-accept" % mech,
        "AsyncConnections On", "KeepAliveTimeout 30",
        "MaxKeepAliveRequests 0"]))
    h.start()
    settle(h, count=4)
    requests, worst_ms, _, errors, _ = wrk_latency(h, "/small.txt", 40, 4)
    assert requests > 1000 and not errors, (requests, errors)
    assert worst_ms < 500, "a client waited %.0f ms for a response " \
        "(%d requests)\n%s" % (worst_ms, requests, h.log())


def test_mutex_burst_spreads_over_new_children(httpd, sleep_module):
    """AcceptStrategy mutex, one child of 5 threads at the start, then 20
    keep-alive clients that never pause (20 ms handler).  The child that
    holds the lock must not take the whole burst and keep it parked on its
    5 threads: once it has as many connections as threads and some wait,
    it leaves new ones to others, and the children spare management
    starts take them.  (Before, the first child kept 19-20 of the 20 and
    no third child was started.)"""
    h = httpd(conf="\n".join([
        "StartServers 1", "ServerLimit 4", "ThreadsPerChild 5",
        "MaxRequestWorkers 20", "MinSpareThreads 5", "MaxSpareThreads 20",
        "AcceptStrategy mutex", "AsyncConnections On",
        "KeepAliveTimeout 30", "MaxKeepAliveRequests 0",
        sleep_conf(sleep_module)]))
    h.start()
    settle(h, count=1)
    wrk = subprocess.Popen(
        [require_tool("wrk"), "-t1", "-c20", "-d6s", h.url("/sleep?ms=20")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(4)
        per_child = connections_per_child(h)
    finally:
        out = wrk.communicate(timeout=30)[0]
    assert sum(per_child.values()) >= 20, (per_child, out)
    assert len([n for n in per_child.values() if n]) >= 3, (per_child, out)
    assert max(per_child.values()) <= 10, (per_child, out)


def test_mutex_tpc1_parked_clients_never_wait_for_the_lock(httpd,
                                                          sleep_module):
    """AcceptStrategy mutex, 4 children x 1 thread with parking, 2
    keep-alive clients on a 20 ms handler.  A child whose client is parked
    must not sit in the accept mutex while that client's next request
    waits: it only tries the lock, and waits on its own epoll set.  (It
    used to wait for the lock in 10 ms slices: p50 30 ms instead of 20.)"""
    h = httpd(conf="\n".join([
        "ThreadsPerChild 1", "StartServers 4", "ServerLimit 4",
        "MinSpareServers 1", "MaxSpareServers 4", "MaxRequestWorkers 4",
        "AcceptStrategy mutex", "AsyncConnections On",
        "KeepAliveTimeout 30", "MaxKeepAliveRequests 0",
        sleep_conf(sleep_module)]))
    h.start()
    settle(h, count=4)
    _, _, p50_ms, _, out = wrk_latency(h, "/sleep?ms=20", 2, 3)
    assert p50_ms < 26, "median %.1f ms for a 20 ms handler\n%s" % (
        p50_ms, out)


def context_switches(pids):
    """Voluntary and involuntary context switches of every thread of
    pids, summed (/proc/PID/status counts the main thread only)."""
    n = 0
    for pid in pids:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                n += sum(int(line.split()[1]) for line in f
                         if "ctxt_switches" in line)
    return n


def switches_per_request(h, clients, headers=(), children=2, threads=1):
    """Context switches of all h's threads per request, while `clients`
    clients that never pause run for 3 s (wrk_latency's headers and
    threads)."""
    h.start()
    pids = [h.pid] + list(settle(h, count=children))
    before = context_switches(pids)
    requests, _, _, errors, out = wrk_latency(h, "/small.txt", clients, 3,
                                              headers, threads)
    per_request = (context_switches(pids) - before) / max(requests, 1)
    h.stop()
    assert requests > 3000 and not errors, out
    return per_request


# the benchmark's shape (test/bench: 200 workers)
EIGHT_BY_25 = ["StartServers 8", "ServerLimit 8", "ThreadsPerChild 25",
               "MaxRequestWorkers 200", "MinSpareThreads 1",
               "MaxSpareThreads 200", "KeepAliveTimeout 30",
               "MaxKeepAliveRequests 0"]
TWO_BY_25 = ["StartServers 2", "ServerLimit 2", "ThreadsPerChild 25",
             "MaxRequestWorkers 50", "MinSpareThreads 1",
             "MaxSpareThreads 50", "KeepAliveTimeout 30",
             "MaxKeepAliveRequests 0"]


@pytest.mark.parametrize("strategy", ["exclusive", "reuseport"])
def test_reserve_keeps_context_switches_under_one_per_request(httpd,
                                                             strategy):
    """2 children x 25 threads, 8 clients that never pause, a connection
    per request.  Only two idle threads per child wait on its epoll set,
    and a connection waiting for its client's FIN is parked at once: the
    thread that served it takes the next connection, often without
    sleeping.  Before the reserve every idle thread waited in epoll_wait,
    where the kernel woke one for each event, or on its own client's
    FIN: 2.3 context switches per request, worker 3.0 (0.77x); now 0.8
    (0.26x).  The count moves with the machine's load, so it is compared
    with stock worker's, same shape, measured just before.  Counted from
    /proc, not timed."""
    close = ("Connection: close",)
    worker = switches_per_request(
        httpd(mpm="worker", conf="\n".join(TWO_BY_25)), 8, close)
    hybrid = switches_per_request(httpd(conf="\n".join(TWO_BY_25 + [
        "AcceptStrategy %s" % strategy, "AsyncConnections On"])), 8, close)
    assert hybrid < 0.5 * worker, "%.2f context switches per request, " \
        "worker %.2f" % (hybrid, worker)


def test_reserve_lets_threads_out_for_slow_requests(httpd, sleep_module):
    """One child of 10 threads whose requests have been quick, then 6
    slow ones at once (3 s): the two watchers take the first two, and
    the reserve must let the others out (the main thread looks while
    threads serve), so the slow ones and then quick requests on new
    connections are served at once, not after the slow ones end."""
    h = httpd(conf="\n".join([
        "StartServers 1", "ServerLimit 1", "ThreadsPerChild 10",
        "MaxRequestWorkers 10", "MinSpareThreads 1", "MaxSpareThreads 10",
        "AsyncConnections On", sleep_conf(sleep_module)]))
    h.start()
    settle(h, count=1)
    done, failed, non2xx, out = run_load(h.url("/small.txt"), 500, 4)
    assert (done, failed, non2xx) == (500, 0, 0), out
    slow, results = [], []

    def one_slow():
        with connect(h, timeout=10) as s:
            s.sendall(b"GET /sleep?ms=3000 HTTP/1.1\r\nHost: t\r\n"
                      b"Connection: close\r\n\r\n")
            results.append(read_to_eof(s)[:12])
    for _ in range(6):
        t = threading.Thread(target=one_slow)
        t.start()
        slow.append(t)
    try:
        # the 6 and this status request
        h.wait_for(lambda: status(h)["Scoreboard"].count("W") >= 7,
                   timeout=2, interval=0.05,
                   what="6 slow requests being served")
        for _ in range(3):
            start = time.monotonic()
            with connect(h) as s:
                s.sendall(GET)
                assert read_response(s)[1] == BODY
            took = time.monotonic() - start
            assert took < 1.0, "a quick request took %.2f s beside the " \
                "slow ones\n%s" % (took, h.log())
    finally:
        for t in slow:
            t.join(20)
    assert results == [b"HTTP/1.1 200"] * 6, results


def threads_in_futex(pid):
    """How many of pid's threads sleep in futex (the reserve's door) and
    how many in epoll_wait, by the kernel's wait channel."""
    where = [wchan(pid, tid) for tid in os.listdir("/proc/%d/task" % pid)]
    return (sum("futex" in w for w in where),
            sum("epoll" in w for w in where))


def test_reserve_opens_when_requests_turn_slow(httpd, sleep_module):
    """One child of 10 threads: quick requests first, so that its idle
    threads beyond the two watchers wait in the reserve; then 3 clients
    of 20 ms requests.  Once the child's requests have turned slow every
    idle thread must wait on the epoll set again, as without the reserve
    (before, they came out one at a time, when no watcher was left, and
    a burst of slow requests found most of them still inside: wrk -c200
    on 8 x 25 threads, p99 21 ms against 15.7 ms with no reserve).
    Counted from /proc: where each thread sleeps."""
    h = httpd(conf="\n".join([
        "StartServers 1", "ServerLimit 1", "ThreadsPerChild 10",
        "MaxRequestWorkers 10", "MinSpareThreads 1", "MaxSpareThreads 10",
        "KeepAliveTimeout 30", "MaxKeepAliveRequests 0",
        "AsyncConnections On", sleep_conf(sleep_module)]))
    h.start()
    (child,) = settle(h, count=1)
    done, failed, non2xx, out = run_load(h.url("/small.txt"), 2000, 4)
    assert (done, failed, non2xx) == (2000, 0, 0), out
    quick = threads_in_futex(child)
    assert quick[0] >= 5, "after quick requests only %d threads wait in " \
        "the reserve (%d in epoll_wait): the test shows nothing" % quick
    wrk = subprocess.Popen(
        [require_tool("wrk"), "-t1", "-c3", "-d4s", h.url("/sleep?ms=20")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(2.5)   # some 350 slow responses
        samples = []
        for _ in range(5):
            samples.append(threads_in_futex(child))
            time.sleep(0.05)
    finally:
        out = wrk.communicate(timeout=30)[0]
    assert min(f for f, _ in samples) == 0 \
        and max(e for _, e in samples) >= 5, \
        "(in futex, in epoll_wait) while requests are slow: %s\n%s\n%s" % (
            samples, out, h.log())


class Stream:
    """A client that never lets its connection rest: one thread keeps
    writing pipelined requests, another reads the responses, so the
    server's thread always finds the next request there and never goes
    back to its child's epoll set."""

    def __init__(self, h):
        self.sock = connect(h)
        self.stop = threading.Event()
        self.answered = 0
        self.threads = [threading.Thread(target=self._write),
                        threading.Thread(target=self._read)]
        for t in self.threads:
            t.start()

    def _write(self):
        try:
            while not self.stop.is_set():
                self.sock.sendall(GET * 20)
        except OSError:
            pass

    def _read(self):
        try:
            while not self.stop.is_set():
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                self.answered += chunk.count(b"HTTP/1.1 200")
        except OSError:
            pass

    def close(self):
        self.stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for t in self.threads:
            t.join(10)
        self.sock.close()


def quick_child(httpd):
    """One child of 6 threads (two watchers, four in the reserve) whose
    requests have proven quick."""
    h = httpd(conf="\n".join([
        "StartServers 1", "ServerLimit 1", "ThreadsPerChild 6",
        "MaxRequestWorkers 6", "MinSpareThreads 1", "MaxSpareThreads 6",
        "KeepAliveTimeout 30", "MaxKeepAliveRequests 0",
        "AsyncConnections On"]))
    h.start()
    settle(h, count=1)
    done, failed, non2xx, out = run_load(h.url("/small.txt"), 1000, 2,
                                         keepalive=True)
    assert (done, failed, non2xx) == (1000, 0, 0), out
    return h


def wait_until_streaming(h, streams):
    """Both streams answered a while: their threads are out of the watch."""
    h.wait_for(lambda: all(s.answered > 100 for s in streams),
               timeout=5, interval=0.05, what="both streams answered")
    time.sleep(0.2)


def timed_request(s):
    start = time.monotonic()
    s.sendall(GET)
    head, body, _ = read_response(s)
    assert head.startswith(b"HTTP/1.1 200") and body == BODY
    return time.monotonic() - start


@pytest.mark.parametrize("client", ["parked", "new"])
def test_streaming_clients_do_not_leave_the_watch_empty(httpd, client):
    """Two clients that never pause take the child's two watchers, whose
    threads then stay with them.  The reserve must let a thread out to
    watch: a parked keep-alive client's next request and a new connection
    are answered at once.  Before, the threads out serving counted as
    "back soon" because each had just finished a response, so neither
    the last watcher to leave nor the main thread let one out, and the
    request waited as long as the streams went on (wrk -c50 on 8 x 25:
    p99 26-33 ms against worker's 3.5-5)."""
    h = quick_child(httpd)
    parked = idle_connections(h, 1) if client == "parked" else []
    time.sleep(0.1)       # past the keep-alive grace: parked
    streams = [Stream(h), Stream(h)]
    try:
        wait_until_streaming(h, streams)
        if client == "parked":
            took = timed_request(parked[0])
        else:
            with connect(h) as s:
                took = timed_request(s)
        assert took < 1.0, "a %s client waited %.2f s beside two " \
            "streaming ones\n%s" % (client, took, h.log())
    finally:
        for s in streams:
            s.close()
        close_all(parked)


# -- lingering close ---------------------------------------------------------

CLOSE_GET = (b"GET /small.txt HTTP/1.1\r\nHost: t\r\n"
             b"Connection: close\r\n\r\n")


def answered_then_fin(s):
    """Sends a Connection: close request on s; returns once the response
    and the server's FIN are in."""
    s.sendall(CLOSE_GET)
    data = read_to_eof(s)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(BODY), data
    return data


def lingering(h):
    return int(status(h)["ConnsAsyncClosing"])


@pytest.mark.parametrize("tpc", [4, 1])
def test_lingering_close_drains_what_the_client_still_sends(httpd, tpc):
    """After its FIN the server reads and drops what the client sends
    (as ap_lingering_close), for 2 s after each read: 4 MB sent over a
    second after the response must all go (unread, the socket's buffers
    fill and the client stalls), with no reset, and once the client
    closes, the server's socket goes (no lingering close is left in the
    scoreboard's count).  Checks the lingering list's look and the move of
    a client that keeps sending to the epoll set."""
    h = httpd(conf=conf("ThreadsPerChild %d" % tpc,
                        "MaxRequestWorkers %d" % (8 * tpc)))
    h.start()
    settle(h, count=2)
    with connect(h, timeout=5) as s:
        answered_then_fin(s)
        chunk = b"x" * 65536
        deadline = time.monotonic() + 1.0
        sent = 0
        while time.monotonic() < deadline or sent < 4 << 20:
            s.sendall(chunk)     # a reset or a stall (timeout) raises
            sent += len(chunk)
            time.sleep(0.01)
        assert lingering(h) >= 1, h.log()
    h.wait_for(lambda: lingering(h) == 0, timeout=3, interval=0.1,
               what="the lingering close to end after the client closed")


def test_lingering_close_gives_up_on_a_client_that_never_closes(httpd):
    """A client that has its response and the server's FIN but neither
    closes nor sends: the server keeps its socket 2 s (as
    ap_lingering_close: SECONDS_TO_LINGER) and then closes it, so that the
    client's next send is answered with a reset; meanwhile the connection
    counts as a lingering close (moved from the lingering list to the
    epoll set after 20 ms)."""
    h = httpd(conf=conf())
    h.start()
    settle(h, count=2)
    with connect(h, timeout=5) as s:
        answered_then_fin(s)
        h.wait_for(lambda: lingering(h) >= 1, timeout=1.5, interval=0.1,
                   what="the lingering close in the scoreboard's count")
        h.wait_for(lambda: lingering(h) == 0, timeout=4, interval=0.1,
                   what="the server to give up on the lingering close")
        with pytest.raises(OSError):
            for _ in range(50):  # the first send may still be taken
                s.sendall(b"x")
                time.sleep(0.02)


def test_lingering_close_in_an_idle_child_ends_soon(httpd):
    """One connection per request, one at a time, to a child with nothing
    else to do: no thread comes by the lingering list, so the child's
    clock must look; each close is done well within a second."""
    h = httpd(conf=conf())
    h.start()
    settle(h, count=2)
    for _ in range(5):
        with connect(h, timeout=5) as s:
            answered_then_fin(s)
        start = time.monotonic()
        h.wait_for(lambda: lingering(h) == 0, timeout=2, interval=0.02,
                   what="the lingering close to end")
        assert time.monotonic() - start < 1.0


def test_lingering_closes_wake_no_thread_for_nothing(httpd):
    """The benchmark's shape (8 children x 25 threads, wrk -t2 -c50), a
    connection per request.  A connection waiting in the epoll set for its
    client's FIN woke a thread twice: once for the client's ACK of the
    server's FIN (a change of the socket's state, with nothing to read),
    once for the FIN: 3.40-3.45 context switches per request.  The
    lingering list, looked at by threads on their way to wait: 1.81-1.94.
    (With one wrk thread the two were alike, 1.0, so this runs wrk -t2.)
    The bound is absolute: stock worker, same shape, measured just before
    for the message, made 2.57-3.92 in different runs, too loose a yard
    stick; counted from /proc, not timed."""
    close = ("Connection: close",)
    worker = switches_per_request(
        httpd(mpm="worker", conf="\n".join(EIGHT_BY_25)), 50, close,
        children=8, threads=2)
    hybrid = switches_per_request(httpd(conf="\n".join(EIGHT_BY_25 + [
        "AcceptStrategy exclusive", "AsyncConnections On"])), 50, close,
        children=8, threads=2)
    assert hybrid < 2.6, "%.2f context switches per request (worker " \
        "%.2f)" % (hybrid, worker)

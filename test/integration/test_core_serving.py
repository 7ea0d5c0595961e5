"""MPM core, serving: what a client sees from a running hybrid server.

Covers `apache2 -V`, static files, keep-alive, pipelining, request bodies,
a concurrent ab load, every accept mutex mechanism (one and two Listen
lines), both AcceptStrategy values, IPv4 + IPv6 listeners together, the
scoreboard as stock mod_status reports it, and a clean error log.

HYBTEST_CORE_MPM=worker runs the same tests on the stock worker MPM (to
check the tests themselves); hybrid-only directives are then dropped and the
expected MPM name follows.
"""
import hashlib
import http.client
import os
import re
import signal
import socket
import time

import pytest

from httpd_fixture import CORE_MPM, bad_log_lines, cfg, run_load, settle

MPM = CORE_MPM


def file_bytes(h, name):
    with open(os.path.join(h.docroot, name), "rb") as f:
        return f.read()


def read_response(buf_sock):
    """Read one HTTP/1.1 response (Content-Length or chunked) from a file
    object made with sock.makefile('rb'); returns (status, headers, body)."""
    line = buf_sock.readline()
    if not line:
        return None
    m = re.match(rb"HTTP/1\.[01] (\d{3})", line)
    assert m, "bad status line %r" % line
    status = int(m.group(1))
    headers = {}
    while True:
        line = buf_sock.readline()
        assert line, "connection closed inside headers"
        if line in (b"\r\n", b"\n"):
            break
        k, v = line.decode("latin-1").split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = buf_sock.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(buf_sock.readline().split(b";")[0], 16)
            if size == 0:
                while buf_sock.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += buf_sock.read(size)
            buf_sock.readline()
    else:
        body = buf_sock.read()
    return status, headers, body


BASE = ("StartServers 2", "ServerLimit 8", "ThreadLimit 16",
        "ThreadsPerChild 4", "MaxRequestWorkers 32", "MinSpareThreads 2",
        "MaxSpareThreads 32")


# -- apache2 -V ----------------------------------------------------------

@pytest.mark.parametrize("tpc", [1, 4])
def test_core_V_names_mpm_and_threading(httpd, tpc):
    h = httpd(mpm=MPM, conf=cfg("ThreadsPerChild %d" % tpc))
    r = h.cmd("-V")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert re.search(r"^Server MPM:\s+%s\s*$" % MPM, out, re.M), out
    m = re.search(r"^\s*threaded:\s+(\w+)", out, re.M)
    assert m, out
    assert m.group(1) == ("yes" if tpc > 1 else "no"), out


# -- HTTP basics -----------------------------------------------------------

def test_core_static_files_content(httpd):
    h = httpd(mpm=MPM, conf=cfg(*BASE)).start()
    for name in ("index.html", "small.txt", "10k.bin", "100k.bin"):
        with h.get("/" + name) as r:
            assert r.status == 200
            body = r.read()
        assert body == file_bytes(h, name), name
    with h.get("/") as r:  # DirectoryIndex
        assert r.read() == file_bytes(h, "index.html")
    with pytest.raises(Exception) as e:
        h.get("/no-such-file")
    assert getattr(e.value, "code", None) == 404
    assert bad_log_lines(h) == []


def test_core_keepalive_many_requests_one_connection(httpd):
    h = httpd(mpm=MPM, conf=cfg(*BASE)).start()
    conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=10)
    ports = set()
    try:
        for i in range(20):
            name = ("small.txt", "10k.bin", "100k.bin", "index.html")[i % 4]
            conn.request("GET", "/" + name)
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200
            assert body == file_bytes(h, name)
            assert not r.will_close, "server closed keep-alive after %d" % i
            ports.add(conn.sock.getsockname()[1])
    finally:
        conn.close()
    assert len(ports) == 1, "client reconnected: %r" % ports
    # all 20 requests were served by one process
    with open(h.access_log) as f:
        pids = {l.split()[-1] for l in f if '"GET /' in l}
    assert len(pids) == 1, pids


def test_core_pipelining(httpd):
    h = httpd(mpm=MPM, conf=cfg(*BASE)).start()
    names = ["small.txt", "10k.bin", "index.html", "100k.bin", "small.txt",
             "no-such-file", "10k.bin"]
    req = b""
    for i, n in enumerate(names):
        last = i == len(names) - 1
        req += ("GET /%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (
            n, "Connection: close\r\n" if last else "")).encode()
    with socket.create_connection(("127.0.0.1", h.port), 10) as s:
        s.sendall(req)  # one write, every request
        f = s.makefile("rb")
        got = []
        while True:
            resp = read_response(f)
            if resp is None:
                break
            got.append(resp)
    assert [g[0] for g in got] == [404 if n == "no-such-file" else 200
                                   for n in names]
    for n, (status, _, body) in zip(names, got):
        if status == 200:
            assert body == file_bytes(h, n), n


@pytest.mark.parametrize("size", [0, 1000, 300 * 1024])
def test_core_post_body_echoed(httpd, size):
    h = httpd(mpm=MPM, modules=["reflector"], conf=cfg(
        *BASE, "<Location /echo>\n  SetHandler reflector\n</Location>"))
    h.start()
    body = os.urandom(size)
    conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=20)
    try:
        conn.request("POST", "/echo", body=body,
                     headers={"Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        assert r.status == 200
        got = r.read()
        assert hashlib.sha256(got).hexdigest() == \
            hashlib.sha256(body).hexdigest(), (len(got), size)
        # a chunked request body on the same connection
        chunks = [os.urandom(5000) for _ in range(7)]
        conn.request("POST", "/echo", body=iter(chunks),
                     headers={"Transfer-Encoding": "chunked"},
                     encode_chunked=True)
        r = conn.getresponse()
        assert r.status == 200
        assert r.read() == b"".join(chunks)
    finally:
        conn.close()


def test_core_concurrent_load(httpd):
    h = httpd(mpm=MPM, conf=cfg(*BASE)).start()
    for path, ka in (("/small.txt", False), ("/10k.bin", True)):
        done, failed, non2xx, out = run_load(h.url(path), requests=4000,
                                             concurrency=32, keepalive=ka)
        assert (done, failed, non2xx) == (4000, 0, 0), out
    assert h.proc.poll() is None
    assert bad_log_lines(h) == []


# -- accept path -------------------------------------------------------------

MUTEXES = ["flock", "fcntl", "sysvsem", "posixsem", "pthread"]


def sysv_sems(since=None, until=None):
    """SysV semaphore ids, optionally only those created in [since, until]
    (other servers on the machine may create some at the same time)."""
    out = set()
    with open("/proc/sysvipc/sem") as f:
        for l in f.readlines()[1:]:
            fields = l.split()
            ctime = int(fields[9])
            if since is None or since - 1 <= ctime <= until + 1:
                out.add(fields[1])
    return out


def mutex_traces(pid):
    """Which accept mutex mechanism a child visibly holds (APR 1.7): flock
    keeps its lock file open, fcntl an unlinked one, posixsem maps a
    /dev/shm/sem.* file; pthread (and sysvsem) leave no such trace."""
    found = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if "mpm-accept" in target:
            found.add("fcntl" if target.endswith("(deleted)") else "flock")
    with open("/proc/%d/maps" % pid) as f:
        if "/dev/shm/sem." in f.read():
            found.add("posixsem")
    return found


@pytest.mark.parametrize("listeners", [1, 2])
@pytest.mark.parametrize("mech", MUTEXES)
def test_core_accept_mutex_mechanisms(httpd, mech, listeners):
    port2 = None
    listen = "Listen 127.0.0.1:{port}"
    if listeners == 2:
        from httpd_fixture import free_port
        port2 = free_port()
        listen += "\nListen 127.0.0.1:%d" % port2
    h = httpd(mpm=MPM, listen=listen, conf=cfg(
        *BASE, "AcceptStrategy mutex", "Mutex %s mpm-accept" % mech))
    r = h.cmd("-t")
    assert r.returncode == 0, r.stdout + r.stderr
    sems_before, t_start = sysv_sems(), time.time()
    h.start()
    ours = sysv_sems(t_start, time.time()) - sems_before
    if listeners == 2:
        # the configured mechanism is the one in use, in every child
        for kid in h.children():
            traces = mutex_traces(kid)
            expect = {mech} & {"flock", "fcntl", "posixsem"}
            assert traces == expect, (kid, traces)
        if mech == "sysvsem":
            assert ours, "no SysV semaphore created"
    urls = [h.url("/small.txt")]
    if port2:
        urls.append("http://127.0.0.1:%d/small.txt" % port2)
    for url in urls:
        done, failed, non2xx, out = run_load(url, requests=1500,
                                             concurrency=12)
        assert (done, failed, non2xx) == (1500, 0, 0), out
    assert len(settle(h)) >= 2
    assert bad_log_lines(h) == []
    assert not h.log_matches(r"(?i)mutex.*(fail|error)|AH0(0146|0147|0296)")
    rc = h.stop()
    assert rc == 0
    # no semaphore of this server left behind
    if mech == "sysvsem":
        assert ours & sysv_sems() == set()


@pytest.mark.parametrize("strategy", ["mutex", "preemptive"])
def test_core_accept_strategy(httpd, strategy):
    from httpd_fixture import free_port
    port2 = free_port()
    h = httpd(mpm=MPM, listen="Listen 127.0.0.1:{port}\nListen 127.0.0.1:%d"
              % port2, conf=cfg(*BASE, "AcceptStrategy %s" % strategy))
    h.start()
    for url in (h.url("/small.txt"), "http://127.0.0.1:%d/10k.bin" % port2):
        done, failed, non2xx, out = run_load(url, requests=2000,
                                             concurrency=16)
        assert (done, failed, non2xx) == (2000, 0, 0), out
    # every child takes part in accepting (pids in the access log)
    kids = set(settle(h))
    for _ in range(4):
        run_load(h.url("/small.txt"), requests=400, concurrency=8)
    with open(h.access_log) as f:
        served_by = {int(l.split()[-1]) for l in f}
    assert kids <= served_by, (kids, served_by)
    assert bad_log_lines(h) == []


def test_core_ipv4_and_ipv6_listeners(httpd):
    h = httpd(mpm=MPM, listen="Listen 127.0.0.1:{port}\nListen [::1]:{port}",
              conf=cfg(*BASE))
    h.start()
    for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        for _ in range(3):
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect((addr, h.port))
                s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
                status, _, body = read_response(s.makefile("rb"))
                assert status == 200 and body == file_bytes(h, "small.txt")
    done, failed, non2xx, out = run_load(
        "http://[::1]:%d/small.txt" % h.port, requests=1500, concurrency=12)
    assert (done, failed, non2xx) == (1500, 0, 0), out
    with open(h.access_log) as f:
        clients = {l.split()[0] for l in f}
    assert clients == {"127.0.0.1", "::1"}, clients


# -- scoreboard ------------------------------------------------------------

def scoreboard_total(h):
    st = h.status_auto()
    return st, int(st["BusyWorkers"]) + int(st["IdleWorkers"])


def test_core_status_scoreboard_matches_processes(httpd):
    tpc = 4
    h = httpd(mpm=MPM, conf=cfg(
        "StartServers 3", "ServerLimit 8", "ThreadLimit 8",
        "ThreadsPerChild %d" % tpc, "MaxRequestWorkers 32",
        "MinSpareThreads 1", "MaxSpareThreads 32"))
    h.start()
    settle(h, count=3)
    st, total = scoreboard_total(h)
    assert st["ServerMPM"] == MPM
    assert total == 3 * tpc, st
    assert int(st["BusyWorkers"]) >= 1, st  # this request
    # the scoreboard line shows exactly the live threads (not '.')
    live = len(st["Scoreboard"]) - st["Scoreboard"].count(".")
    assert live == 3 * tpc, st["Scoreboard"]

    # after a graceful restart the old generation leaves the scoreboard
    old = set(h.children())
    h.graceful()
    h.wait_for(lambda: not (set(h.children()) & old), timeout=15,
               what="old generation gone")
    settle(h, count=3)

    def settled():
        st, total = scoreboard_total(h)
        return total == 3 * tpc and int(st.get("GracefulWorkers", 0)) == 0
    h.wait_for(settled, timeout=5, what="scoreboard after graceful")

    # after a child is killed, its replacement is counted, the dead one not
    victim = h.children()[0]
    os.kill(victim, signal.SIGKILL)
    h.wait_for(lambda: victim not in h.children()
               and len(h.children()) == 3, timeout=15, what="replacement")
    settle(h, count=3)
    h.wait_for(lambda: scoreboard_total(h)[1] == 3 * tpc, timeout=5,
               what="scoreboard after kill")


def test_core_clean_error_log(httpd):
    """A normal run (start, load, graceful, load, stop) logs nothing at
    crit/alert/emerg level and no crash."""
    h = httpd(mpm=MPM, modules=["reflector"], conf=cfg(
        *BASE, "<Location /echo>\n  SetHandler reflector\n</Location>"))
    h.start()
    run_load(h.url("/10k.bin"), requests=2000, concurrency=16, keepalive=True)
    h.graceful()
    time.sleep(1.5)
    done, failed, non2xx, out = run_load(h.url("/small.txt"), requests=2000,
                                         concurrency=16)
    assert (done, failed, non2xx) == (2000, 0, 0), out
    rc = h.stop()
    assert rc == 0
    assert h.leftovers == []
    log = h.log()
    assert bad_log_lines(h) == [], log
    assert "[error]" not in log and ":error]" not in log, log

"""Closing a listener drains its queue: no connection the kernel has
accepted on our behalf is reset.

A listening socket that closes resets every connection still waiting in
its accept queue; the client had its connect() succeed and may already
have sent its request.  mpm_hybrid marks a listener that is about to
close (graceful-stop, a Listen removed at a graceful restart) so that
it takes no new connection, and the children accept what is queued
before they let go of it.

Covers, under connection-per-request load that keeps every worker busy
and the accept queue full (4 workers, 100 ms per request, 24 clients):
  * graceful-stop (SIGWINCH), for reuseport, exclusive and mutex, with
    threaded and single-threaded children: every connection whose
    connect() succeeded is answered 200; connects after the stop are
    refused; the queued connections were really there (answers arriving
    well after the signal prove it);
  * a graceful restart that removes the loaded Listen (reuseport and
    exclusive): the same, on the removed port, while the kept port goes
    on serving.

Without the drain these tests fail: each run resets about the 20
connections that were queued (checked by hand against the previous
build, see the commit that added this file).
"""
import signal
import socket
import threading
import time

import pytest

from httpd_fixture import (bad_log_lines, free_port, read_to_eof, settle,
                           sleep_conf)

CLIENTS = 24
REQUEST_MS = 100


def server_conf(so, strategy, tpc, extra=()):
    children = 4 // tpc
    lines = [sleep_conf(so),
             "StartServers %d" % children, "ServerLimit %d" % children,
             "ThreadLimit %d" % tpc, "ThreadsPerChild %d" % tpc,
             "MaxRequestWorkers 4", "MinSpareThreads 1",
             "MaxSpareThreads 4", "ListenBacklog 511",
             "AcceptStrategy %s" % strategy,
             "GracefulShutdownTimeout 30",
             "LogLevel info mpm_hybrid:debug"]
    if strategy == "reuseport":
        lines.append("ReusePortGroups %d" % children)
    return "\n".join(lines + list(extra))


class Clients:
    """CLIENTS threads, each doing connection-per-request GETs in a loop,
    and recording what became of every attempt (not the fixture's ab
    Load: ab counts failures, this needs the fate and the times of each
    connection):
      ok       full 200 answer
      refused  connect() refused (the listener is gone: fine)
      timeout  connect() timed out (fine: not accepted)
      dropped  connect() succeeded but the answer never came (reset,
               EOF, garbage): what must not happen"""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results = []          # (kind, t_connected, t_done, detail)
        self.threads = [threading.Thread(target=self.run, daemon=True)
                        for _ in range(CLIENTS)]

    def one(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), 3)
        except ConnectionRefusedError:
            return ("refused", None, time.monotonic(), "")
        except OSError as e:
            return ("timeout", None, time.monotonic(), repr(e))
        t_conn = time.monotonic()
        data = bytearray()
        try:
            s.settimeout(30)
            s.sendall(b"GET /sleep?ms=%d HTTP/1.1\r\nHost: t\r\n"
                      b"Connection: close\r\n\r\n" % REQUEST_MS)
            data = read_to_eof(s, data)
        except OSError as e:
            return ("dropped", t_conn, time.monotonic(),
                    "%r after %r" % (e, data[:40]))
        finally:
            s.close()
        if data.startswith(b"HTTP/1.1 200") and \
                data.endswith(b"slept %d ms\n" % REQUEST_MS):
            return ("ok", t_conn, time.monotonic(), "")
        return ("dropped", t_conn, time.monotonic(), repr(data[:80]))

    def run(self):
        while not self.stop.is_set():
            r = self.one()
            with self.lock:
                self.results.append(r)
            if r[0] in ("refused", "timeout"):
                time.sleep(0.05)

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(40)
        assert not any(t.is_alive() for t in self.threads), "client hung"
        return list(self.results)


def kinds(results):
    out = {}
    for k, *_ in results:
        out[k] = out.get(k, 0) + 1
    return out


def check(results, t_signal, what):
    """No dropped connection, and proof that the queue was drained:
    answers to connections made before the signal arrived long after it
    (4 workers at 100 ms each get through 4 queued connections per
    100 ms, so a full queue takes more than 250 ms to empty)."""
    dropped = [r for r in results if r[0] == "dropped"]
    late = [r for r in results if r[0] == "ok" and r[1] < t_signal
            and r[2] > t_signal + 0.25]
    print("\n%s: %r; %d answered more than 250 ms after the signal"
          % (what, kinds(results), len(late)))
    assert dropped == [], "%d connections dropped, e.g. %r" % (
        len(dropped), dropped[:5])
    assert len(late) >= 8, "the accept queue was not full at the signal " \
        "(only %d late answers): this run proves nothing" % len(late)


@pytest.mark.parametrize("strategy,tpc", [
    ("reuseport", 2), ("reuseport", 1), ("exclusive", 2), ("exclusive", 1),
    ("mutex", 1)])
def test_drain_on_graceful_stop(httpd, sleep_module, strategy, tpc):
    h = httpd(conf=server_conf(sleep_module, strategy, tpc))
    h.start()
    settle(h)
    load = Clients(h.port)
    load.start()
    time.sleep(2.0)
    t_signal = time.monotonic()
    h.signal(signal.SIGWINCH)
    h.wait_for(lambda: h.proc.poll() is not None, timeout=20,
               what="the server to exit")
    t_exit = time.monotonic()
    time.sleep(1.0)
    results = load.finish()
    check(results, t_signal, "%s t%d graceful-stop" % (strategy, tpc))
    refused = [r[2] for r in results if r[0] == "refused"]
    print("first connect refused %.2f s after the signal; exit after "
          "%.2f s" % (min(refused) - t_signal, t_exit - t_signal))
    after = [r for r in results if r[2] > t_exit + 0.2]
    assert after and all(r[0] == "refused" for r in after), kinds(after)
    assert h.proc.returncode == 0
    assert bad_log_lines(h) == []


@pytest.mark.parametrize("strategy", ["reuseport", "exclusive"])
def test_drain_on_listen_removed_at_graceful_restart(httpd, sleep_module,
                                                     strategy):
    kept = free_port()
    conf = server_conf(sleep_module, strategy, 2)
    both = "Listen 127.0.0.1:{port}\nListen 127.0.0.1:%d" % kept
    h = httpd(conf=conf, listen=both)
    h.start()
    settle(h)
    load = Clients(h.port)           # on the Listen that goes away
    load.start()
    time.sleep(2.0)
    h.set_conf(conf, listen="Listen 127.0.0.1:%d" % kept)
    t_signal = time.monotonic()
    h.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with load.lock:
            tail = load.results[-CLIENTS:]
        if len(tail) == CLIENTS and all(r[0] == "refused" and r[2] > t_signal
                                        for r in tail):
            break
        time.sleep(0.2)
    results = load.finish()
    check(results, t_signal, "%s Listen removed" % strategy)
    with socket.create_connection(("127.0.0.1", kept), 5) as s:
        s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n"
                  b"Connection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")
    assert h.proc.poll() is None
    assert bad_log_lines(h) == []

"""make run / make stop: the operator's demo server, in a scratch RUNDIR on a
free port so a developer's own demo (build/run, port 8080) is left alone."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest

from httpd_fixture import BUILD, REPO, alive, build, descendants, free_port


class Demo:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hybdemo-")
        os.chmod(self.dir, 0o755)
        self.rundir = os.path.join(self.dir, "run")
        self.port = free_port()
        self.pids = set()

    def make(self, target, **vars):
        args = ["make", "-C", REPO, "--no-print-directory", target,
                "RUNDIR=%s" % self.rundir, "PORT=%d" % self.port]
        args += ["%s=%s" % kv for kv in vars.items()]
        r = subprocess.run(args, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        self.note_pids()
        return r

    def pid(self):
        try:
            with open(os.path.join(self.rundir, "httpd.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def note_pids(self):
        pid = self.pid()
        if pid and alive(pid):
            self.pids.add(pid)
            self.pids.update(descendants(pid))

    def get(self, path):
        url = "http://127.0.0.1:%d%s" % (self.port, path)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, ""

    def cleanup(self):
        self.note_pids()
        self.make("stop")
        for p in self.pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def demo():
    d = Demo()
    yield d
    d.cleanup()


def check_up(demo, mpm):
    status, body = demo.get("/")
    assert status == 200 and "mpm_hybrid demo" in body
    status, body = demo.get("/server-status?auto")
    assert status == 200
    assert "ServerMPM: %s" % mpm in body


def test_make_run_hybrid_then_restart_then_stop(demo):
    build()
    r = demo.make("run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "http://127.0.0.1:%d/server-status" % demo.port in r.stdout
    first = demo.pid()
    assert first and alive(first)
    check_up(demo, "hybrid")
    if os.path.exists(os.path.join(BUILD, "mod_child_status.so")):
        assert "/child-status" in r.stdout
        status, _ = demo.get("/child-status")
        assert status == 200
    # logs and config stay in RUNDIR
    for name in ("httpd.conf", "error.log", "access.log", "htdocs/index.html"):
        assert os.path.exists(os.path.join(demo.rundir, name)), name

    # a second make run restarts the server instead of failing
    r = demo.make("run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "restarting" in r.stdout
    second = demo.pid()
    assert second and second != first and not alive(first)
    check_up(demo, "hybrid")

    r = demo.make("stop")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [p for p in demo.pids if alive(p)], "processes left running"
    assert demo.make("stop").returncode == 0      # stopping twice is fine


def test_make_run_stock_mpm(demo):
    r = demo.make("run", MPM="event")
    assert r.returncode == 0, r.stdout + r.stderr
    check_up(demo, "event")
    assert demo.make("stop").returncode == 0
    assert not [p for p in demo.pids if alive(p)], "processes left running"


def test_make_run_reports_a_port_in_use(demo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", demo.port))
        s.listen(1)
        r = demo.make("run", MPM="event")
    assert r.returncode != 0
    assert "could not bind" in r.stdout + r.stderr
    assert demo.pid() is None

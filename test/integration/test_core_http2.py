"""mod_http2 on mpm_hybrid: with ThreadsPerChild > 1 the MPM is threaded,
so h2c works (h2load over prior knowledge and curl's HTTP/2); with
ThreadsPerChild 1 mod_http2 still loads and HTTP/1.1 is served."""
import re
import subprocess

from httpd_fixture import require_tool

H2_CONF = "StartServers 2\nThreadsPerChild 8\nProtocols h2c http/1.1"


def h2load(url, n=200, c=4, m=4):
    r = subprocess.run([require_tool("h2load"), "-n", str(n), "-c", str(c), "-m", str(m),
                        url], capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


def test_h2c_with_threads(httpd):
    h = httpd(mpm="hybrid", modules=["http2"], conf=H2_CONF)
    h.start()
    out = h2load(h.url("/small.txt"))
    assert "Application protocol: h2c" in out, out
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, "
                  r"(\d+) succeeded, (\d+) failed", out)
    assert m, out
    assert (m.group(1), m.group(3), m.group(4)) == ("200", "200", "0"), out
    assert re.search(r"status codes: 200 2xx", out), out
    r = subprocess.run([require_tool("curl"), "-s", "--http2-prior-knowledge", "-o",
                        "/dev/null", "-w", "%{http_version}",
                        h.url("/small.txt")], capture_output=True, text=True,
                       timeout=20)
    assert r.stdout == "2", r
    assert not re.search(r"\[[\w.-]*:(crit|alert|emerg)\]", h.log())


def test_http2_module_loads_with_one_thread_per_child(httpd):
    h = httpd(mpm="hybrid", modules=["http2"],
              conf="StartServers 2\nThreadsPerChild 1\nProtocols h2c "
                   "http/1.1")
    v = h.cmd("-V")
    assert re.search(r"threaded:\s+no", v.stdout), v.stdout
    h.start()
    assert h.get_text("/small.txt") == "0123456789abc\n"

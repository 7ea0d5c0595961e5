"""pytest glue: an `httpd` factory fixture that cleans up after itself and
attaches each server's error log to a failing test's report."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from httpd_fixture import REPO, SLEEP_SO, Httpd  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    # The error log has to go into the failing call's own report: sections
    # added later, in fixture teardown, end up only in the teardown report,
    # which pytest does not show when the teardown itself passes.
    if rep.when == "call" and rep.failed:
        for h in getattr(item, "_httpd_servers", ()):
            rep.sections.append(("apache2 error log (%s)" % h.dir,
                                 h.log()[-20000:]))
            h.log_attached = True


@pytest.fixture
def httpd(request):
    """Factory: httpd(mpm=..., conf=..., ...) -> Httpd (not yet started)."""
    servers = []
    request.node._httpd_servers = servers

    def make(**kw):
        h = Httpd(**kw)
        servers.append(h)
        return h

    yield make
    failed = getattr(request.node, "rep_call", None)
    failed = failed is not None and failed.failed
    for h in servers:
        h.stop()
        if failed and not getattr(h, "log_attached", False):
            request.node.add_report_section(
                "call", "apache2 error log (%s)" % h.dir, h.log()[-20000:])
        if getattr(h, "leftovers", None):
            request.node.add_report_section(
                "call", "leftover processes killed", repr(h.leftovers))
        h.cleanup()


@pytest.fixture(scope="session")
def sleep_module():
    """build/mod_bench_sleep.so (`SetHandler bench-sleep`, ?ms=N), built
    once per run; returns its path."""
    r = subprocess.run(["make", "-C", REPO, "--no-print-directory",
                        "test-modules"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return SLEEP_SO


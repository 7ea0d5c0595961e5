#!/usr/bin/python3
"""One-process mode (apache2 -X) under valgrind: serve a few requests of
each kind (static, server-status, child-status in every format, a graceful
restart's worth of config re-read is not possible in -X), stop with
SIGTERM, and count valgrind errors with a frame in our modules.

Stock httpd/APR errors (there are a few, e.g. uninitialised bytes written
by apr_shm) are reported as a count but do not fail the run.  Exit status:
0 when our code has no error, 1 otherwise, 2 when valgrind is missing.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..",
                                "integration"))
from httpd_fixture import APACHE2, Httpd, run_load  # noqa: E402

OURS = ("mod_mpm_hybrid.so", "mod_child_status.so")


def main():
    if not shutil.which("valgrind"):
        print("valgrind: not installed (Debian package valgrind: make deps PURPOSE=bench)")
        return 2
    # The threaded case runs several times: a race at stop showed up in
    # about one run of five.
    rounds = int(os.environ.get("VG_ROUNDS", "3"))
    results = [(1, run_one(1))] + [(4, run_one(4)) for _ in range(rounds)]
    bad = sum(r["ours"] for _, r in results)
    for tpc, r in results:
        print("valgrind: -X ThreadsPerChild %d: %d requests, %d valgrind "
              "errors in total, %d with a frame in our modules" %
              (tpc, r["requests"], r["total"], r["ours"]))
        for e in r["ours_text"]:
            print(e)
    return 1 if bad else 0


def run_one(tpc):
    h = Httpd(conf="ThreadsPerChild %d\nThreadLimit %d\n"
                   "<Location /child-status>\n  SetHandler child-status\n"
                   "</Location>" % (tpc, tpc),
              modules=["child_status"])
    xml = os.path.join(h.dir, "vg.xml")
    proc = subprocess.Popen(
        ["valgrind", "--xml=yes", "--xml-file=" + xml,
         "--num-callers=30", "--trace-children=no",
         APACHE2, "-X", "-f", h.conf_path],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    requests = 0
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(h.url("/small.txt"), timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("apache2 -X under valgrind exited:\n"
                                       + h.log())
                time.sleep(0.5)
        for path in ("/", "/small.txt", "/100k.bin", "/server-status",
                     "/server-status?auto", "/child-status",
                     "/child-status?json", "/child-status?prometheus",
                     "/child-status?auto&refresh=5", "/nonexistent"):
            try:
                urllib.request.urlopen(h.url(path), timeout=30).read()
            except OSError:
                pass
            requests += 1
        done, _, _, _ = run_load(h.url("/small.txt"), 200, 2, timeout=120)
        requests += done
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    total, ours, text = 0, 0, []
    root = ET.parse(xml).getroot()
    for err in root.iter("error"):
        if (err.findtext("kind") or "").startswith("Leak_"):
            continue   # httpd frees its pools at exit only partly
        total += 1
        objs = [f.findtext("obj") or "" for f in err.iter("frame")]
        if any(o.endswith(OURS) for o in objs):
            ours += 1
            lines = [err.findtext("kind") + ": " + (
                err.findtext("what") or err.findtext("xwhat/text") or "")]
            for part in err:
                if part.tag == "auxwhat":
                    lines.append(" " + part.text)
                elif part.tag == "stack":
                    lines += ["  %s %s:%s (%s)" % (
                        f.findtext("fn"), f.findtext("file"),
                        f.findtext("line"), os.path.basename(
                            f.findtext("obj") or ""))
                        for f in part.iter("frame")][:10]
            text.append("\n".join(lines))
    h.cleanup()
    return {"requests": requests, "total": total, "ours": ours,
            "ours_text": text}


if __name__ == "__main__":
    sys.exit(main())

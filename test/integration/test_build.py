"""The shape of the build: each mpm_src/*.c is a translation unit of its
own, what crosses files is named hyb_*, and the DSOs export nothing but
their module structs (and the MPM's optional statistics function)."""
import glob
import os
import re
import subprocess

from httpd_fixture import BUILD, REPO, build

MPM_SRC = os.path.join(REPO, "mpm_src")
MPM_EXPORTS = {"mpm_hybrid_module", "hybrid_get_stats"}


def defined_dynamic_symbols(so):
    out = subprocess.run(["nm", "-D", "--defined-only", so],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def test_dsos_export_only_their_module_structs():
    build()
    mpm = defined_dynamic_symbols(os.path.join(BUILD, "mod_mpm_hybrid.so"))
    status = defined_dynamic_symbols(os.path.join(BUILD, "mod_child_status.so"))
    assert "mpm_hybrid_module" in mpm
    assert mpm <= MPM_EXPORTS, mpm - MPM_EXPORTS
    assert status == {"child_status_module"}, status


def test_no_source_file_includes_another():
    offenders = []
    for path in sorted(glob.glob(os.path.join(MPM_SRC, "*.[ch]"))):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if re.match(r'\s*#\s*include\s+"[^"]+\.c"', line):
                    offenders.append("%s:%d: %s" % (
                        os.path.basename(path), n, line.strip()))
    assert not offenders, offenders


def compile_flags():
    q = lambda var: subprocess.run(["apxs", "-q", var], capture_output=True,
                                   text=True, check=True).stdout.split()
    return (q("CFLAGS") + q("EXTRA_CPPFLAGS") + ["-I" + d for d in
            q("INCLUDEDIR") + q("APR_INCLUDEDIR")] +
            ["-std=gnu99", "-Wall", "-Wextra", "-Werror",
             "-Wno-unused-parameter", "-Wno-missing-field-initializers",
             "-fvisibility=hidden", "-I" + MPM_SRC,
             '-DHYBRID_DEFAULT_ACCEPT="exclusive"'])


def test_each_mpm_file_compiles_alone():
    flags = compile_flags()
    failed = {}
    for path in sorted(glob.glob(os.path.join(MPM_SRC, "*.c"))):
        r = subprocess.run(["cc", "-fsyntax-only", *flags, path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            failed[os.path.basename(path)] = r.stderr[-2000:]
    assert not failed, failed


def test_cross_file_symbols_carry_the_hyb_prefix():
    """Every global an object file defines is hyb_* (internal, hidden) or
    hybrid_* (public header) or the module struct; everything else is
    static."""
    build()
    objs = glob.glob(os.path.join(BUILD, "obj", "mpm_hybrid", ".libs", "*.o"))
    assert objs, "no objects under build/obj/mpm_hybrid/.libs"
    stray = set()
    for o in objs:
        out = subprocess.run(["nm", "--defined-only", o], capture_output=True,
                             text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "TDBR":
                name = parts[2]
                if not (name.startswith(("hyb_", "hybrid_"))
                        or name == "mpm_hybrid_module"):
                    stray.add("%s in %s" % (name, os.path.basename(o)))
    assert not stray, sorted(stray)

#!/usr/bin/python3
"""Print the numbers test_faults.py wrote to $HYB_FAULTS_REPORT (one JSON
object per scenario run) as a plain table, one line per run."""
import json
import sys

SHOW = ("strategy", "mech", "threads_per_child", "attackers", "gracefuls",
        "kills", "requests", "failed", "non2xx", "max_recovery_s",
        "first_response_after_ipcrm_s", "all_exited_s", "back_to_size_s",
        "max_generation_s", "p50_s", "max_s", "parent_fds",
        "sems_after_stop", "fork_attempts_refused", "parent_cpu_s",
        "children_after_recovery_peak", "orphan_answered")


def main(path):
    try:
        rows = [json.loads(l) for l in open(path) if l.strip()]
    except OSError as e:
        print("faults: no report (%s)" % e)
        return 1
    print("faults: %d scenario runs (%s)" % (
        len(rows), "full" if rows and rows[0].get("full") else "reduced"))
    for r in sorted(rows, key=lambda r: r["scenario"]):
        cells = ["%s=%s" % (k, r[k]) for k in SHOW if k in r]
        print("  %-32s %s" % (r["scenario"], " ".join(cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else
                  "build/faults-report.jsonl"))

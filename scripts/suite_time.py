#!/usr/bin/env python3
"""A guard on the suite's time, not a timer in a test: read pytest's `--durations` lines (CI prints
the 25 slowest; `--durations=0` prints all) and report every test file whose seconds grew by more
than half against the suite table in bench/RESULTS.md (its "after" column).

    python3 -m pytest ... | tee ci.log;  python3 scripts/suite_time.py ci.log
    python3 scripts/suite_time.py ci.log --table bench/RESULTS.md --limit 1.5

With only the slowest 25 lines, a file's total here is a lower bound (its other tests are not
listed), so a file reported has grown for sure. Exit code 1 when a file is reported, else 0.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DURATION = re.compile(r"^\s*([\d.]+)s\s+(?:call|setup|teardown)\s+(tests/[\w/]+\.py)::")
TABLE_HEAD = "## Suite time by test file"
ROW = re.compile(r"^\|\s*`?(tests/[\w/]+\.py)`?\s*\|[^|]*\|[^|]*\|\s*([\d,.]+)\s*\|")


def file_seconds(log: str) -> dict[str, float]:
    """Seconds per test file from pytest's --durations lines (setup, call and teardown added up)."""
    totals: dict[str, float] = defaultdict(float)
    for line in log.splitlines():
        match = DURATION.match(line)
        if match:
            totals[match.group(2)] += float(match.group(1))
    return dict(totals)


def reference(results_md: str) -> dict[str, float]:
    """The "after" seconds per file of the suite table in bench/RESULTS.md (its 4th column)."""
    if TABLE_HEAD not in results_md:
        raise ValueError(f"no '{TABLE_HEAD}' section in the results file")
    section = results_md.split(TABLE_HEAD, 1)[1].split("\n## ", 1)[0]
    return {m.group(1): float(m.group(2).replace(",", "")) for m in map(ROW.match, section.splitlines()) if m}


def grown(now: dict[str, float], before: dict[str, float], limit: float = 1.5, floor_s: float = 30.0) -> list[str]:
    """Files now slower than `limit` x their reference (files under `floor_s` seconds are noise)."""
    out = []
    for name, seconds in sorted(now.items(), key=lambda kv: -kv[1]):
        ref = before.get(name)
        if seconds < floor_s:
            continue
        if ref is None:
            out.append(f"{name}: {seconds:.0f} s, not in the table (a new file: add it)")
        elif seconds > limit * ref:
            out.append(f"{name}: {seconds:.0f} s against {ref:.0f} s in the table ({seconds / ref:.1f}x)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", help="pytest's output (- for standard input)")
    ap.add_argument("--table", default=str(ROOT / "bench" / "RESULTS.md"))
    ap.add_argument("--limit", type=float, default=1.5, help="report a file over this times its reference")
    args = ap.parse_args(argv)
    log = sys.stdin.read() if args.log == "-" else Path(args.log).read_text(errors="replace")
    now = file_seconds(log)
    if not now:
        print("no --durations lines in the log", file=sys.stderr)
        return 2
    report = grown(now, reference(Path(args.table).read_text()), args.limit)
    for line in report:
        print(line)
    if not report:
        print(f"{len(now)} test files in the durations: none grew past {args.limit}x its reference")
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())

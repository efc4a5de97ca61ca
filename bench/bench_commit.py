#!/usr/bin/env python3
"""The commit stage at nightly scale, on the CPU: time and driver memory (issue "A 10-million-page
nightly run", item 3).

Builds a synthetic docvqa run of `--pages` pages x `--questions` questions directly in the run
layout (bench/synthetic_run.py, in a child process so that its memory is not the driver's), starts
a local Ray with `--cpus` CPUs and calls commit.commit_run(CommitContext(...), extra, started) as
run.py does. Measured:
  wall_s, s_per_million_rows     commit_run, from call to return (page-table rows committed)
  driver.peak_rss_mb             this process, psutil rss sampled every 0.2 s (and its split into
                                 anon / file / shmem from /proc/self/status), and ru_maxrss
  driver.steps                   the same per commit step (wall time and peak rss in it)
  ray_workers                    peak of the rss summed over the raylet's children (Ray workers),
                                 and the largest single worker; rss counts the object store pages a
                                 worker maps, so the anon sum is the closer measure of their heaps
Then checks the committed result (synthetic_run.check_committed) and prints one JSON line.

    python bench/bench_commit.py --pages 510000 --questions 4            # 2.0M page-table rows
    python bench/bench_commit.py --points 50000,510000 --questions 4     # 0.2M and 2.0M rows, each in its
                                                  # own process, into bench/results/<date>-commit-cpu-2core.json
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402

from pipeline.core.config import RaySpec  # noqa: E402

MB = 2**20


def _status_kb(pid: int | str) -> dict[str, int]:
    """RssAnon / RssFile / RssShmem of a process, in kB (cheap: one small /proc read)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("RssAnon", "RssFile", "RssShmem", "VmRSS")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


class Sampler:
    """Samples a process's rss (and optionally a group of other processes) every `period` s."""

    def __init__(self, period: float = 0.2, pid: int | None = None, others=None):
        self.period = period
        self.pid = pid or os.getpid()
        self.others = others  # callable -> list[psutil.Process], sampled too
        self.samples: list[tuple[float, int, dict]] = []  # (t, rss bytes, /proc status kB)
        self.group: list[tuple[float, int, int, int, int]] = []  # (t, sum rss, sum anon, max rss, processes)
        self.marks: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.t0 = time.monotonic()

    def mark(self, label: str) -> None:
        self.marks.append((time.monotonic() - self.t0, label))

    def _run(self) -> None:
        proc = psutil.Process(self.pid)
        while not self._stop.is_set():
            t = time.monotonic() - self.t0
            try:
                self.samples.append((t, proc.memory_info().rss, _status_kb(self.pid)))
            except psutil.Error:
                break
            self._stop.wait(self.period)

    def _run_group(self) -> None:
        """The other processes, in a thread of their own (listing them is slower than one rss read)."""
        while not self._stop.is_set():
            t = time.monotonic() - self.t0
            rss = anon = top = n = 0
            try:
                procs = self.others()
            except Exception:  # noqa: BLE001 - a process that ended while being listed
                procs = []
            for p in procs:
                try:
                    r = p.memory_info().rss
                except Exception:  # noqa: BLE001
                    continue
                rss += r
                top = max(top, r)
                anon += _status_kb(p.pid).get("RssAnon", 0) * 1024
                n += 1
            if n:
                self.group.append((t, rss, anon, top, n))
            self._stop.wait(self.period)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        if self.others is not None:
            self._group_thread = threading.Thread(target=self._run_group, name="rss-sampler-group", daemon=True)
            self._group_thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.others is not None:
            self._group_thread.join()

    def peak(self, start: float = 0.0, end: float = float("inf")) -> dict[str, Any]:
        """Peak in [start, end]; a window too short for a sample gets the last sample before its end."""
        inside = [s for s in self.samples if start <= s[0] <= end] or [s for s in self.samples if s[0] <= end][-1:]
        best = max(inside, key=lambda s: s[1])
        return {"peak_rss_mb": round(best[1] / MB, 1), "at_s": round(best[0], 1),
                "peak_anon_mb": round(max(s[2].get("RssAnon", 0) for s in inside) / 1024, 1),
                "peak_file_mb": round(max(s[2].get("RssFile", 0) for s in inside) / 1024, 1),
                "peak_shmem_mb": round(max(s[2].get("RssShmem", 0) for s in inside) / 1024, 1),
                "samples": len(inside)}

    def group_peak(self) -> dict[str, Any]:
        if not self.group:
            return {}
        best = max(self.group, key=lambda g: g[1])
        return {"peak_sum_rss_mb": round(best[1] / MB, 1), "at_s": round(best[0], 1),
                "processes_then": best[4], "peak_sum_anon_mb": round(max(g[2] for g in self.group) / MB, 1),
                "peak_single_worker_rss_mb": round(max(g[3] for g in self.group) / MB, 1),
                "max_processes": max(g[4] for g in self.group)}


def _instrument(sampler: Sampler) -> None:
    """A mark where each commit step begins (wrappers around the functions commit_run calls, which
    they pass through unchanged); a step lasts until the next mark."""
    from pipeline.commit import commit, perdoc
    from pipeline.store import fileio

    def wrap(owner, name: str, labels: list[str], after: list[str] | None = None) -> None:
        inner = getattr(owner, name)
        calls = [0]

        def wrapper(*args, **kwargs):
            n = calls[0]
            calls[0] += 1
            if n < len(labels) and labels[n]:
                sampler.mark(labels[n])
            try:
                return inner(*args, **kwargs)
            finally:
                if after and n < len(after) and after[n]:
                    sampler.mark(after[n])
        setattr(owner, name, wrapper)

    wrap(commit, "written_files", ["1 written_files + drop_derived"])
    wrap(perdoc, "by_document", ["2 by_document + materialize: group by document, settle each (Ray)"])
    wrap(commit, "_write_ray", ["3a write the document table (Ray)", "3c write the manifest (Ray)"],
         after=["3b not_processed rows (Ray), receipts to the driver", None])
    wrap(commit, "_count", ["3d _count: manifest rows streamed to the driver"])
    wrap(fileio, "move_files", ["4 move_files"])
    wrap(fileio, "write_json", ["5 write _SUCCESS"])


def _steps(sampler: Sampler, end: float) -> list[dict[str, Any]]:
    """Each step (from its mark to the next), with the driver's peak rss in it."""
    marks = sampler.marks + [(end, "end")]
    return [{"step": label, "t_s": round(t0, 2), "s": round(t1 - t0, 2), **{
             k: v for k, v in sampler.peak(t0, t1).items() if k in ("peak_rss_mb", "peak_anon_mb", "samples")}}
            for (t0, label), (t1, _) in zip(marks, marks[1:])]


def _ray_workers() -> list[psutil.Process]:
    """Processes under this driver's raylet (Ray workers and agents)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name() == "raylet":
                out += p.children(recursive=True)
        except Exception:  # noqa: BLE001 - psutil.Error, or /proc gone under it
            pass
    return out


def machine() -> dict[str, Any]:
    import pyarrow
    import ray

    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "nproc_cmd": nproc,
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
            "ray": ray.__version__, "pyarrow": pyarrow.__version__, "platform": platform.platform(),
            "cpu": platform.processor() or _cpu_model(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def run_point(args) -> dict[str, Any]:
    out = args.out.rstrip("/") + f"/p{args.pages}-q{args.questions}"
    run_id = f"synthetic-{args.pages}x{args.questions}"
    shutil.rmtree(out, ignore_errors=True)
    expect_file = f"{out}.expect.json"
    build = subprocess.run([sys.executable, str(ROOT / "bench" / "synthetic_run.py"), "build", out, run_id,
                            "--pages", str(args.pages), "--questions", str(args.questions),
                            "--pages-per-file", str(args.pages_per_file), "--workers", str(args.cpus),
                            "--expect", expect_file], check=True)
    del build
    expect = json.loads(Path(expect_file).read_text())
    import ray

    import synthetic_run

    load_before = os.getloadavg()
    rss_before_ray = psutil.Process().memory_info().rss
    sampler = Sampler(args.period, others=_ray_workers)
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(25)
    with sampler:
        sampler.mark("ray.init")
        # The job's Ray Data settings (pipeline/core/config.py RaySpec, applied by run.py), or others to compare.
        os.environ["RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"] = str(args.footer_actors)
        synthetic_run.init_ray(args.cpus, args.object_store_mb * MB if args.object_store_mb else None)
        import ray.data

        ray.data.DataContext.get_current().shuffle_strategy = args.shuffle
        sampler.mark("context (reads job.json, inputs)")
        rss_after_ray = psutil.Process().memory_info().rss
        _instrument(sampler)
        ctx, extra = synthetic_run.commit_context(out, run_id)
        t_start = time.monotonic() - sampler.t0
        started = time.monotonic()
        from pipeline.commit.commit import commit_run

        marker = commit_run(ctx, extra, started)
        wall = time.monotonic() - started
        t_end = time.monotonic() - sampler.t0
        time.sleep(args.period * 2)
    top = None
    if args.tracemalloc:
        import tracemalloc

        snap = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        top = {"traced_current_mb": round(current / MB, 1), "traced_peak_mb": round(peak / MB, 1),
               "top": [str(s) for s in snap.statistics("lineno")[:15]]}
        tracemalloc.stop()
    ru_maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ray.shutdown()
    checked_at = time.monotonic()
    facts = synthetic_run.check_committed(out, run_id, expect, exact_keys=args.exact)
    rows = expect["staged_rows"] + expect["not_processed"]
    result = {
        "bench": "commit", "date": _dt.date.today().isoformat(),
        "spec": {"pages": args.pages, "questions": args.questions, "page_units_staged": expect["staged_page_units"],
                 "staged_rows": expect["staged_rows"], "not_processed_rows": expect["not_processed"],
                 "page_table_rows": rows, "documents_listed": expect["documents_listed"],
                 "doc_kinds": expect["doc_kinds"], "staged_files": expect["staged_files"],
                 "pages_per_file": expect["pages_per_file"], "staged_mb": round(expect["staged_bytes"] / MB, 1),
                 "document_rows": expect["document_rows"], "max_pages": expect["max_pages"],
                 "ray_cpus": args.cpus, "shuffle_strategy": args.shuffle, "parquet_footer_actors": args.footer_actors,
                 "object_store_mb": args.object_store_mb, "build_s": expect["build_s"]},
        "wall_s": round(wall, 2), "s_per_million_rows": round(wall / (rows / 1e6), 2),
        "driver": {**sampler.peak(t_start, t_end), "ru_maxrss_mb": round(ru_maxrss_mb, 1),
                   "rss_before_ray_mb": round(rss_before_ray / MB, 1),
                   "rss_after_ray_init_mb": round(rss_after_ray / MB, 1),
                   "peak_rss_whole_process_mb": sampler.peak()["peak_rss_mb"],
                   "steps": _steps(sampler, t_end)},
        "ray_workers": sampler.group_peak(),
        "load_avg": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "check": {"ok": True, "exact_keys": args.exact, "s": round(time.monotonic() - checked_at, 1), **facts},
        "success_marker_seconds": marker["seconds"],
        "target": {"driver_peak_rss_mb_max": 1024, "rows_min": 2_000_000,
                   "met": sampler.peak(t_start, t_end)["peak_rss_mb"] <= 1024 and rows >= 2_000_000},
    }
    if top:
        result["tracemalloc"] = top
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        Path(expect_file).unlink(missing_ok=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=510_000, help="about 3.9 page-table rows per page at 4 questions")
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--points", help="comma-separated page counts: each in its own process; writes --results")
    ap.add_argument("--pages-per-file", type=int, default=512, help="output.pages_per_file of the run")
    ap.add_argument("--cpus", type=int, default=2, help="ray.init(num_cpus=...)")
    ap.add_argument("--object-store-mb", type=int, default=None, help="default: Ray's (30%% of RAM)")
    ap.add_argument("--period", type=float, default=0.2, help="rss sampling period (s)")
    ap.add_argument("--shuffle", default=RaySpec().shuffle_strategy, help="ray.shuffle_strategy of the job")
    ap.add_argument("--footer-actors", type=int, default=RaySpec().parquet_footer_actors,
                    help="ray.parquet_footer_actors of the job")
    ap.add_argument("--out", default="/tmp/docintel-bench-commit")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic run")
    ap.add_argument("--exact", action="store_true", help="check every row key (slow above ~1M rows)")
    ap.add_argument("--tracemalloc", action="store_true", help="trace the driver's Python allocations")
    ap.add_argument("--results", default=None, help="default: bench/results/<date>-commit-cpu-<cpus>core.json")
    ap.add_argument("--json-out", default=None, help="(one point) also write its JSON here")
    ap.add_argument("--reuse", action="store_true",
                    help="--points: a point whose JSON is already in --out (point-PAGES.json) is not run again")
    args = ap.parse_args()
    if args.points:
        runs = []
        for pages in [int(p) for p in args.points.split(",")]:
            tmp = Path(args.out.rstrip("/") + f"/point-{pages}.json")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            if args.reuse and tmp.exists():
                runs.append(json.loads(tmp.read_text()))
                continue
            cmd = [sys.executable, __file__, "--pages", str(pages), "--questions", str(args.questions),
                   "--pages-per-file", str(args.pages_per_file), "--cpus", str(args.cpus), "--period", str(args.period),
                   "--out", args.out, "--json-out", str(tmp), "--shuffle", args.shuffle,
                   "--footer-actors", str(args.footer_actors)]
            cmd += ["--object-store-mb", str(args.object_store_mb)] if args.object_store_mb else []
            cmd += ["--keep"] if args.keep else []
            cmd += ["--exact"] if args.exact else []
            cmd += ["--tracemalloc"] if args.tracemalloc else []
            subprocess.run(cmd, check=True)
            runs.append(json.loads(tmp.read_text()))
        path = Path(args.results or ROOT / "bench" / "results" /
                    f"{_dt.date.today().isoformat()}-commit-cpu-{args.cpus}core.json")
        path.write_text(json.dumps({"bench": "commit", "machine": machine(),
                                    "command": " ".join([Path(sys.executable).name, *sys.argv]), "runs": runs},
                                   indent=1) + "\n")
        print(f"wrote {path}", file=sys.stderr)
        return 0
    result = run_point(args)
    result["machine"] = machine()
    line = json.dumps(result)
    print(line, flush=True)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

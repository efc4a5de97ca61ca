"""Where a run's files live: the output folder's layout, and the run record's few operations.

    OUTPUT/pages/RUN_ID/part-*.parquet        the page table      (committed runs only)
    OUTPUT/documents/RUN_ID/part-*.parquet    the document table  (committed runs only)
    OUTPUT/_docintel/runs/RUN_ID/             the run's record, never read as data:
        job.json          what the run was started with (spec, fingerprint), written at start
        inputs.parquet    every listed input (uri, questions, size, mtime): what --resume checks
        staging/pages/    page-table files, written as the job runs (atomically: temp + rename, or
                          one PUT), named by the pages they hold
        staging/lost/     not_processed rows for work that never came back (written by the commit)
        staging/documents/ the document table (written by the commit)
        quarantine/       staged files that do not read (damaged or foreign copies): moved aside, kept
        manifest/         one row per document (--incremental reads it)
        _SUCCESS          JSON with the run's counts and committed_at, written last, whole

Why this shape (the README says it too): a reader of OUTPUT/pages or OUTPUT/documents — pyarrow,
pandas, DuckDB, Polars, Spark — sees committed runs only, with no filter: staging, markers and
manifests are outside the table folders, so an unfinished or killed run, a truncated file or a
marker is never read as data. The commit moves a run's staged files into place (on a local or
network file system one directory rename; on S3 a copy per object, so a reader may briefly see a
run being committed), then writes _SUCCESS. `run_id` is a string column inside every file, not a
`run_id=...` folder, so no reader turns a run id like 2026-11-29 into a date.

The reads and writes themselves are fileio.py's (whole files, retried); nothing deletes data on an
error.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from pipeline.store import fileio
from pipeline.store.storage import move, retry_transient

RECORD = "_docintel/runs"


@dataclass(frozen=True)
class RunPaths:
    output: str
    run_id: str

    def _join(self, *parts: str) -> str:
        return "/".join([self.output.rstrip("/"), *parts])

    @property
    def pages(self) -> str:
        return self._join("pages", self.run_id)

    @property
    def documents(self) -> str:
        return self._join("documents", self.run_id)

    @property
    def record(self) -> str:
        return self._join(RECORD, self.run_id)

    def staging(self, table: str) -> str:  # table: pages, lost, documents
        return f"{self.record}/staging/{table}"

    @property
    def quarantine(self) -> str:
        return f"{self.record}/quarantine"

    @property
    def manifest(self) -> str:
        return f"{self.record}/manifest"

    @property
    def success(self) -> str:
        return f"{self.record}/_SUCCESS"

    @property
    def job(self) -> str:
        return f"{self.record}/job.json"

    @property
    def inputs(self) -> str:
        return f"{self.record}/inputs.parquet"


def quarantine(path: str, paths: RunPaths) -> str:
    """Move an unreadable staged file aside (kept for inspection, out of the run's data)."""
    fs, inner = fileio.open_fs(path)
    _, target = fileio.open_fs(f"{paths.quarantine}/{path.rsplit('/', 1)[1]}")
    retry_transient(lambda: fs.create_dir(target.rsplit("/", 1)[0], recursive=True), f"create {paths.quarantine}")
    move(fs, inner, target)
    return target


# ---- runs -------------------------------------------------------------------------------------

def committed_runs(output: str) -> list[tuple[str, dict[str, Any]]]:
    """(run id, _SUCCESS content) of every committed run under OUTPUT, oldest commit first
    (by the commit time in _SUCCESS, not by name: nightly-9 is not newer than nightly-10)."""
    runs = []
    for run_id in fileio.list_dirs(f"{output.rstrip('/')}/{RECORD}"):
        marker = fileio.read_json(RunPaths(output, run_id).success)
        if marker is not None:
            runs.append((run_id, marker))
    return sorted(runs, key=lambda rm: (str(rm[1].get("committed_at", "")), rm[0]))


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)

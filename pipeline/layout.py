"""Where a run's files live, and every read and write of them: run-folder I/O is here and nowhere else.

    OUTPUT/pages/RUN_ID/part-*.parquet        the page table      (committed runs only)
    OUTPUT/documents/RUN_ID/part-*.parquet    the document table  (committed runs only)
    OUTPUT/_docintel/runs/RUN_ID/             the run's record, never read as data:
        job.json          what the run was started with (spec, fingerprint), written at start
        inputs.parquet    every listed input (uri, questions, size, mtime): what --resume checks
        staging/pages/    page-table files, written as the job runs (atomically: temp + rename, or
                          one PUT), named by the pages they hold
        staging/lost/     not_processed rows for work that never came back (written by the commit)
        staging/documents/ the document table (written by the commit)
        quarantine/       staged files that cannot be read (a killed writer's): moved aside, kept
        manifest/         one row per document (--incremental reads it)
        _SUCCESS          JSON with the run's counts and committed_at, written last, whole

Why this shape (the README says it too): a reader of OUTPUT/pages or OUTPUT/documents — pyarrow,
pandas, DuckDB, Polars, Spark — sees committed runs only, with no filter: staging, markers and
manifests are outside the table folders, so an unfinished or killed run, a truncated file or a
marker is never read as data. The commit moves a run's staged files into place (on a local or
network file system one directory rename; on S3 a copy per object, so a reader may briefly see a
run being committed), then writes _SUCCESS. `run_id` is a string column inside every file, not a
`run_id=...` folder, so no reader turns a run id like 2026-11-29 into a date.

Every storage call goes through storage.retry_transient: transient errors are retried with backoff;
nothing here deletes data on an error.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.storage import filesystem_for, is_uri, move, retry_transient, retrying

RECORD = "_docintel/runs"


def open_fs(path: str):
    """(pyarrow FileSystem, path inside it) for a local path or a URI. Its calls are not retried:
    every use here wraps them in retry_transient."""
    if is_uri(path):
        return filesystem_for(path)
    return pafs.LocalFileSystem(), os.path.abspath(path.removeprefix("file://"))


def ray_fs(path: str):
    """(filesystem, path inside it) to hand Ray Data: every call it makes is retried (storage.retrying)."""
    fs, inner = open_fs(path)
    return retrying(fs), inner


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


# ---- whole files ------------------------------------------------------------------------------

def write_atomic(path: str, data: bytes) -> None:
    """The file appears whole or not at all: local, a temp file renamed into place; object stores,
    one PUT (a multipart upload shows nothing until it completes)."""
    fs, inner = open_fs(path)

    def write() -> None:
        parent = inner.rsplit("/", 1)[0]
        fs.create_dir(parent, recursive=True)
        if isinstance(fs, pafs.LocalFileSystem):
            tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
            with fs.open_output_stream(tmp) as f:
                f.write(data)
            fs.move(tmp, inner)
        else:
            with fs.open_output_stream(inner) as f:
                f.write(data)
    retry_transient(write, f"write {path}")


def write_json(path: str, payload: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(payload, indent=1, default=str, ensure_ascii=False).encode())


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, None if it does not exist."""
    fs, inner = open_fs(path)

    def read() -> bytes | None:
        if fs.get_file_info(inner).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(inner) as f:
            return f.read()
    return retry_transient(read, f"read {path}")


def read_json(path: str) -> dict[str, Any] | None:
    data = read_bytes(path)
    return None if data is None else json.loads(data)


def read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    fs, inner = open_fs(path)

    def read() -> pa.Table:
        with fs.open_input_file(inner) as f:
            return pq.read_table(f, columns=columns)
    return retry_transient(read, f"read {path}")


def write_table(path: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_atomic(path, sink.getvalue().to_pybytes())


# ---- folders ----------------------------------------------------------------------------------

def list_files(directory: str, suffix: str = ".parquet") -> list[str]:
    """Full paths (as given: local or URI) of the files directly in `directory`, sorted; temp and
    hidden files left out."""
    fs, inner = open_fs(directory)

    def listing():
        return fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    prefix = directory.rstrip("/")
    return sorted(f"{prefix}/{i.base_name}" for i in retry_transient(listing, f"list {directory}")
                  if i.type == pafs.FileType.File and i.base_name.endswith(suffix)
                  and not i.base_name.startswith((".", "_")))


def list_dirs(directory: str) -> list[str]:
    fs, inner = open_fs(directory)

    def listing():
        return fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    return sorted(i.base_name for i in retry_transient(listing, f"list {directory}")
                  if i.type == pafs.FileType.Directory)


def move_files(src_dir: str, dst_dir: str) -> int:
    """Move every file of src_dir into dst_dir (moves already done by an interrupted call are not
    redone). Local: one rename of the folder when dst_dir does not exist yet. Returns files moved."""
    fs, src = open_fs(src_dir)
    _, dst = open_fs(dst_dir)
    files = list_files(src_dir)
    if not files:
        return 0
    if isinstance(fs, pafs.LocalFileSystem) and fs.get_file_info(dst).type == pafs.FileType.NotFound:
        fs.create_dir(dst.rsplit("/", 1)[0], recursive=True)
        move(fs, src, dst)
        return len(files)
    retry_transient(lambda: fs.create_dir(dst, recursive=True), f"create {dst_dir}")
    for path in files:
        name = path.rsplit("/", 1)[1]
        move(fs, f"{src}/{name}", f"{dst}/{name}")
    return len(files)


def delete_files(directory: str) -> None:
    """Delete the files of a folder of derived data (the commit rebuilds it); never staged pages."""
    for path in list_files(directory):
        delete_file(path)


def delete_file(path: str) -> None:
    fs, inner = open_fs(path)
    retry_transient(lambda: fs.delete_file(inner), f"delete {path}")


def quarantine(path: str, paths: RunPaths) -> str:
    """Move an unreadable staged file aside (kept for inspection, out of the run's data)."""
    fs, inner = open_fs(path)
    _, target = open_fs(f"{paths.quarantine}/{path.rsplit('/', 1)[1]}")
    retry_transient(lambda: fs.create_dir(target.rsplit("/", 1)[0], recursive=True), f"create {paths.quarantine}")
    move(fs, inner, target)
    return target


def parquet_readable(path: str) -> str | None:
    """None if the Parquet file's footer reads; else why not (a truncated or foreign file). A
    transient storage error is retried and, if it lasts, raised: it says nothing about the file."""
    fs, inner = open_fs(path)

    def footer() -> str | None:
        try:
            with fs.open_input_file(inner) as f:
                pq.read_metadata(f)
            return None
        except pa.ArrowInvalid as exc:
            return str(exc)
    return retry_transient(footer, f"read the footer of {path}")


# ---- runs -------------------------------------------------------------------------------------

def committed_runs(output: str) -> list[tuple[str, dict[str, Any]]]:
    """(run id, _SUCCESS content) of every committed run under OUTPUT, oldest commit first
    (by the commit time in _SUCCESS, not by name: nightly-9 is not newer than nightly-10)."""
    runs = []
    for run_id in list_dirs(f"{output.rstrip('/')}/{RECORD}"):
        marker = read_json(RunPaths(output, run_id).success)
        if marker is not None:
            runs.append((run_id, marker))
    return sorted(runs, key=lambda rm: (str(rm[1].get("committed_at", "")), rm[0]))


def read_marker(output: str, run_id: str) -> dict[str, Any] | None:
    return read_json(RunPaths(output, run_id).success)


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)

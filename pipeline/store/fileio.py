"""Whole-file reads and writes on a local folder or an object store, every call retried
(storage.retry_transient): what the job, the commit and the readers do with files.

A file appears whole or not at all (write_atomic: a temp file renamed into place locally, one PUT
on an object store), so no reader ever sees half a file; nothing here deletes data on an error.
"""
from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.store.retrying import retrying
from pipeline.store.storage import filesystem_for, is_uri, move, retry_transient


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



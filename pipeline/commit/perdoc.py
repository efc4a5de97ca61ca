"""Bring each listed document together with the rows written for it, inside Ray, and apply a
function per document. The commit (roll-up, lost work, manifest) and the resume plan both run on
this, so the driver never holds a run's rows: its memory does not grow with the job.

The listed inputs (the run's inputs.parquet) and a few columns of the staged Parquet files become
one Ray dataset, hash-grouped by a bucket of the document's source_uri; a bucket holds about
BUCKET_DOCS documents, so each group call covers many documents at the cost of one, and every row
of a document lands in the same call. `fn(source_uri, listed, rows, **fn_kwargs)` then runs once
per document: `listed` is its LISTED row (None for rows of a document that is not listed) and `rows`
its written rows (dicts of the requested columns); it returns rows of `out_shape`.
"""
from __future__ import annotations

import json
import zlib
from collections import defaultdict
from typing import Any, Callable

import pyarrow as pa

from pipeline.store import fileio
from pipeline.core.rows import LISTED, Shape

BUCKET_DOCS = 500
LISTED_ROWS_PER_BLOCK = 10_000  # the listing is one file, read as one block: cut so that many tasks share it


def _bucket(uri: str, buckets: int) -> int:
    return zlib.crc32(uri.encode("utf-8", "surrogateescape")) % buckets


def _union_schema(row_schema: pa.Schema) -> pa.Schema:
    fields = [pa.field("_bucket", pa.int32()), pa.field("_listed", pa.string())]
    return pa.schema(fields + [row_schema.field(n) for n in row_schema.names])


def _listed_side(batch: pa.Table, schema: pa.Schema, buckets: int) -> pa.Table:
    rows = batch.to_pylist()
    cols: dict[str, Any] = {n: [None] * len(rows) for n in schema.names}
    cols["source_uri"] = [r["source_uri"] for r in rows]
    cols["_bucket"] = [_bucket(r["source_uri"], buckets) for r in rows]
    cols["_listed"] = [json.dumps(r, default=str) for r in rows]
    return pa.table(cols, schema=schema)


def _rows_side(batch: pa.Table, schema: pa.Schema, buckets: int) -> pa.Table:
    uris = batch.column("source_uri").to_pylist()
    cols = {n: (batch.column(n) if n in batch.column_names else pa.nulls(batch.num_rows, schema.field(n).type))
            for n in schema.names if n not in ("_bucket", "_listed")}
    cols["_bucket"] = pa.array([_bucket(u, buckets) for u in uris], pa.int32())
    cols["_listed"] = pa.nulls(batch.num_rows, pa.string())
    return pa.table({n: cols[n] for n in schema.names}, schema=schema)


def _apply(batch: pa.Table, fn: Callable, out_shape: Shape, row_names: list[str], fn_kwargs: dict) -> pa.Table:
    listed: dict[str, dict] = {}
    written: dict[str, list[dict]] = defaultdict(list)
    for row in batch.to_pylist():
        if row["_listed"] is not None:
            listed[row["source_uri"]] = json.loads(row["_listed"])
        else:
            written[row["source_uri"]].append({n: row[n] for n in row_names})
    out: list[dict] = []
    for uri in sorted(set(listed) | set(written)):
        out.extend(fn(uri, listed.get(uri), written.get(uri, []), **fn_kwargs))
    return out_shape.table(out)


def by_document(inputs_path: str, row_files: list[str], row_schema: pa.Schema, fn: Callable,
                out_shape: Shape, documents: int, fn_kwargs: dict | None = None):
    """A lazy Ray dataset of `out_shape` rows: fn applied to every document (see the module doc).
    A `path` column in row_schema is filled with the file each row was read from."""
    import ray

    buckets = max(1, min(4096, documents // BUCKET_DOCS + 1))
    schema = _union_schema(row_schema)
    fs, inner = fileio.ray_fs(inputs_path)
    ds = ray.data.read_parquet(inner, filesystem=fs, schema=LISTED.schema).repartition(
        target_num_rows_per_block=LISTED_ROWS_PER_BLOCK).map_batches(
        _listed_side, batch_format="pyarrow", fn_kwargs={"schema": schema, "buckets": buckets})
    if row_files:
        fs, _ = fileio.ray_fs(row_files[0])
        paths = "path" in row_schema.names
        read = pa.schema([f for f in row_schema if f.name != "path"])
        # The schema given: Ray does not read it from a file in the driver. Every call Ray makes goes
        # through the retrying filesystem (storage.retrying), in the driver and in the workers.
        staged = ray.data.read_parquet([fileio.open_fs(p)[1] for p in row_files], filesystem=fs, schema=read,
                                       columns=read.names, include_paths=paths)
        ds = ds.union(staged.map_batches(_rows_side, batch_format="pyarrow",
                                         fn_kwargs={"schema": schema, "buckets": buckets}))
    # As many shuffle partitions as buckets (Ray's default is 200: hundreds of tasks for a small run).
    return ds.groupby("_bucket", num_partitions=buckets).map_groups(
        _apply, batch_format="pyarrow",
        fn_kwargs={"fn": fn, "out_shape": out_shape, "row_names": row_schema.names, "fn_kwargs": fn_kwargs or {}})

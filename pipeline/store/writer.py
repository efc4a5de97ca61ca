"""Stage 6 (CPU): write answered pages to the run's staging folder as the job runs, one file per batch.

A file holds whole pages only (the batch is of engine output rows, one per page, expanded here), so a
page is either written or not: what `--resume` redoes is exactly the pages without a file. The file
name is a hash of the pages it holds: a Ray task that is retried after it wrote its file writes the
same name again instead of a duplicate. Files appear atomically (fileio.write_atomic), so a killed
writer leaves no half file behind on an object store, and at most a temp file locally.

Each call returns a receipt row: what it wrote and the counts the driver adds up for progress and
metrics, so the driver never holds the rows. A write that keeps failing after storage retries is a
receipt with `write_error` set: the run is then not committed (exit code 5) and `--resume` redoes
those pages later; it is never a silent loss.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import pyarrow as pa

from pipeline.store import fileio
from pipeline.core.rows import PAGE_TABLE, Column, Shape

RECEIPT = Shape("receipt", [
    Column("file", pa.string(), True, "The staged file written (null when the write failed)."),
    Column("rows", pa.int64(), False, "Page-table rows in it."),
    Column("pages", pa.int64(), False, "Pages (rows about a whole document count once)."),
    Column("valid_rows", pa.int64(), False, "Valid rows."),
    Column("error_kinds", pa.string(), False, "JSON object: error kind -> rows."),
    Column("prompt_tokens", pa.int64(), False, "Prompt tokens, counted once per request."),
    Column("output_tokens", pa.int64(), False, "Output tokens, counted once per request."),
    Column("write_error", pa.string(), True, "Why the file could not be written, after retries."),
    Column("last_rendered_at", pa.float64(), True, "When the newest page of the batch was rendered (epoch s)."),
])


def file_name(rows: list[dict[str, Any]], prefix: str = "part-") -> str:
    keys = sorted({(r["source_uri"], -1 if r["page_index"] is None else r["page_index"]) for r in rows})
    digest = hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:24]
    return f"{prefix}{digest}.parquet"


def receipt(rows: list[dict[str, Any]], file: str | None, write_error: str | None = None) -> dict[str, Any]:
    share = [1 / (r["request_questions"] or 1) for r in rows]  # a request's tokens, once
    return RECEIPT.row(
        file=file, rows=len(rows), write_error=write_error,
        pages=len({(r["source_uri"], r["page_index"]) for r in rows}),
        valid_rows=sum(1 for r in rows if r["valid"]),
        error_kinds=json.dumps(dict(Counter(r["error_kind"] for r in rows if r["error_kind"]))),
        prompt_tokens=round(sum((r["prompt_tokens"] or 0) * w for r, w in zip(rows, share))),
        output_tokens=round(sum((r["output_tokens"] or 0) * w for r, w in zip(rows, share))))


def write_rows(rows: list[dict[str, Any]], directory: str, prefix: str = "part-") -> dict[str, Any]:
    """Write page-table rows as one staged file; its receipt."""
    if not rows:
        return receipt(rows, None)
    path = f"{directory.rstrip('/')}/{file_name(rows, prefix)}"
    try:
        fileio.write_table(path, PAGE_TABLE.table(rows))
    except OSError as exc:  # storage retries exhausted, or a permanent storage error
        return receipt(rows, None, f"{type(exc).__name__}: {exc}"[:2000])
    return receipt(rows, path)


def add_receipts(totals: dict[str, Any], batch: pa.Table) -> None:
    """Fold a batch of receipts into running totals (the driver's only per-run state)."""
    for rec in batch.to_pylist():
        for key in ("rows", "pages", "valid_rows", "prompt_tokens", "output_tokens"):
            totals[key] = totals.get(key, 0) + rec[key]
        kinds = totals.setdefault("error_kinds", Counter())
        kinds.update(json.loads(rec["error_kinds"]))
        if rec["write_error"]:
            totals.setdefault("write_errors", []).append(rec["write_error"])
        totals["files"] = totals.get("files", 0) + (rec["file"] is not None)
        if rec["last_rendered_at"] is not None:
            totals["last_rendered_at"] = max(totals.get("last_rendered_at", 0.0), rec["last_rendered_at"])

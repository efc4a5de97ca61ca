"""The run's manifest: one row per listed document (id, job key, pages, status), and what
`--incremental` reads back from committed runs.

Status: `ok` (every row answered, or of a page with nothing to read: blank_page), `failed` (only lasting
errors), `retry` (a transient error among its rows, such as not_processed or engine_error: --incremental
redoes the document), `skipped_unchanged` (a committed run already answered it). The manifest lives in
the run's record (layout.py), not in the table folders, so no reader of the data sees it.
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.store import fileio, layout
from pipeline.core.rows import MANIFEST, TRANSIENT, ErrorKind as E


def document_status(kinds: set[str | None]) -> str:
    if kinds == {E.SKIPPED_UNCHANGED.value}:
        return E.SKIPPED_UNCHANGED.value
    if kinds <= {None, E.BLANK_PAGE.value}:  # a page with nothing to read was done: nothing to redo
        return "ok"
    return "retry" if kinds & {k.value for k in TRANSIENT} else "failed"


def manifest_row(source_uri: str, rows: list[dict[str, Any]], job_key: str | None, max_pages: int) -> dict[str, Any]:
    kinds = {r["error_kind"] for r in rows}
    counts = [r["page_count"] for r in rows if r["page_count"] is not None]
    cut = any(r["error_kind"] == E.PAGE_LIMIT for r in rows)
    return MANIFEST.row(
        source_uri=source_uri, doc_id=rows[0]["doc_id"] if rows else None, job_key=job_key,
        pages=len({r["page_index"] for r in rows if r["page_index"] is not None}),
        page_count=max(counts) if counts else None, cut_at=max_pages if cut else None,
        rows=len(rows), valid_rows=sum(1 for r in rows if r["valid"]),
        status=document_status(kinds), error_kinds=sorted(k for k in kinds if k))


def done_documents(output: str) -> pa.Table:
    """(doc_id, job_key, cut_at, run_id) of documents that committed runs under OUTPUT finished
    (status ok or failed), newest run first: the set --incremental skips from."""
    tables = []
    for run_id, _ in reversed(layout.committed_runs(output)):
        for path in fileio.list_files(layout.RunPaths(output, run_id).manifest):
            table = fileio.read_parquet(path, ["doc_id", "job_key", "cut_at", "status"])
            keep = pc.is_in(table.column("status"), pa.array(["ok", "failed"]))
            table = table.filter(keep).drop(["status"])
            tables.append(table.append_column("run_id", pa.array([run_id] * table.num_rows, pa.string())))
    schema = pa.schema([("doc_id", pa.string()), ("job_key", pa.string()), ("cut_at", pa.int32()),
                        ("run_id", pa.string())])
    return pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()


class DoneIndex:
    """Lookup over done_documents(), built once per worker process from the shared table."""

    def __init__(self, table: pa.Table):
        self._index: dict[tuple[str, str], tuple[int | None, str]] = {}
        for doc_id, key, cut_at, run_id in zip(*(table.column(c).to_pylist() for c in
                                                   ("doc_id", "job_key", "cut_at", "run_id"))):
            self._index.setdefault((doc_id, key), (cut_at, run_id))  # newest run first

    def done_in(self, doc_id: str, job_key: str, max_pages: int) -> str | None:
        """The run that already answered this content the same way, or None. A document that was
        cut by render.max_pages is done only if that limit was at least as high as now."""
        hit = self._index.get((doc_id, job_key))
        if hit is None:
            return None
        cut_at, run_id = hit
        return run_id if cut_at is None or cut_at >= max_pages else None

"""Every listed document and every page ends with a row: find the ones a run lost.

Stages never raise on bad input, but infrastructure can still lose work: a block Ray Data gave up
on, a write that failed after retries in an earlier attempt. At commit time each listed document is
compared with what was written for it (pipeline/commit/perdoc.py brings the two together in Ray), and a
`not_processed` row is made for a document with no row at all and for each page of a document that
has none. These rows are written beside the run's data at commit; `--incremental` and `--resume`
redo exactly that work.
"""
from __future__ import annotations

from typing import Any

from pipeline.core.rows import PAGE_TABLE, ErrorKind as E
from pipeline.ingest.listing import is_valid_name
from pipeline.ingest.sources import uri_id

LOST = E.NOT_PROCESSED


def expected_pages(rows: list[dict[str, Any]], max_pages: int) -> set[int] | None:
    """The pages a document's rows say it should have rows for; None when its rows account for the
    whole document (a document-level error) or do not know its page count."""
    counts = [r["page_count"] for r in rows if r["page_count"] is not None]
    if not counts or any(r["page_index"] is None and r["error_kind"] != E.PAGE_LIMIT for r in rows):
        return None
    return set(range(min(max(counts), max_pages)))


def missing_rows(source_uri: str, rows: list[dict[str, Any]], max_pages: int,
                 base: dict[str, Any]) -> list[dict[str, Any]]:
    """not_processed rows for one listed document: the whole document if it has no row, else each
    expected page without one. `base` fills the run-wide columns (run_id, task, model_id, ...)."""
    if not rows:
        doc_id = uri_id(source_uri) if is_valid_name(source_uri) else "uri:unknown"
        return [PAGE_TABLE.row(base, doc_id=doc_id, source_uri=source_uri, error_kind=str(LOST), valid=False,
                               attempts=0, error="no output for this document: its work was lost (worker or "
                               "engine failure, or a write that failed; see the logs) after all retries")]
    expected = expected_pages(rows, max_pages)
    if expected is None:
        return []
    seen = {r["page_index"] for r in rows if r["page_index"] is not None}
    count = max(r["page_count"] for r in rows if r["page_count"] is not None)
    return [PAGE_TABLE.row(base, doc_id=rows[0]["doc_id"], source_uri=source_uri, page_index=page,
                           page_count=count, error_kind=str(LOST), valid=False, attempts=0,
                           error="no output for this page: its work was lost (worker or engine failure, "
                                 "or a write that failed) after all retries")
            for page in sorted(expected - seen)]

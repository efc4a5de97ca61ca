"""Resuming a run: all of it is here (olmOCR keeps its work queue's resume logic in one place too).

A run records what it was started with (layout.py: job.json with the job's fingerprint, and
inputs.parquet with every listed input's size and modification time). `--resume RUN_ID`:

1. refuses a committed run, a run that was never started, and a run whose settings or inputs
   differ from the record, saying what differs (a resume is the same job, or it is not a resume);
2. makes sure every staged file of the run reads: a file that does not (a damaged or foreign copy;
   the writer never leaves half a file) is moved to the run's quarantine, never deleted, and its
   pages count as not written; a transient storage error is retried and, if it lasts, stops the
   resume;
3. drops what the last commit attempt derived (not_processed rows, the document table): the commit
   rebuilds them;
4. works out, inside Ray (perdoc.py), which pages of which documents are written, and hands the job
   only the rest: a document whose pages are all written is skipped, a partly written one is read
   again and only its missing pages are rendered and answered (`done_pages`).

A page is written whole or not at all (writer.py), so after any interruption the pages to redo are
exactly those without a file: nothing is done twice and nothing is lost.
"""
from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from pipeline.store import fileio, layout
from pipeline.commit.identity import differences
from pipeline.core.rows import DOC_ROW_DONE, DONE_PAGES, LISTED, PAGE_TABLE, ErrorKind as E, Shape

log = logging.getLogger(__name__)

PLAN = Shape("plan", [*LISTED.columns, DONE_PAGES, DOC_ROW_DONE])
KEY_COLUMNS = pa.schema([PAGE_TABLE.schema.field(n) for n in ("source_uri", "page_index", "page_count",
                                                              "error_kind", "doc_id")])


class ResumeRefused(RuntimeError):
    """--resume cannot go on; the message says why and what to do."""


def check(paths: layout.RunPaths, fingerprint: dict[str, Any], listed: pa.Table) -> None:
    """Step 1: the same job, the same inputs, not committed yet."""
    if fileio.read_json(paths.success) is not None:
        raise ResumeRefused(f"run {paths.run_id} is already committed: nothing to resume")
    job = fileio.read_json(paths.job)
    if job is None:
        raise ResumeRefused(f"run {paths.run_id} was never started under {paths.output} (no {paths.job}); "
                            "start it without --resume")
    changed = differences(job["fingerprint"], fingerprint)
    if changed:
        raise ResumeRefused(f"run {paths.run_id} was started with other settings; a resume must be the same "
                            "job (start a new run instead):\n  " + "\n  ".join(changed))
    old = fileio.read_parquet(paths.inputs, ["source_uri", "size_bytes", "mtime_ns"])
    before = {u: (s, m) for u, s, m in zip(*(old.column(c).to_pylist() for c in old.column_names))}
    now = {u: (s, m) for u, s, m in zip(*(listed.column(c).to_pylist() for c in
                                          ("source_uri", "size_bytes", "mtime_ns")))}
    added, removed = sorted(set(now) - set(before)), sorted(set(before) - set(now))
    touched = sorted(u for u in set(now) & set(before) if now[u] != before[u])
    if added or removed or touched:
        def some(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
        lines = [f"{label} {len(items)}: {some(items)}" for label, items in
                 (("added", added), ("removed", removed), ("changed (size or time)", touched)) if items]
        raise ResumeRefused(f"run {paths.run_id} was started with other inputs; a resume must be the same job "
                            "(start a new run, or --incremental):\n  " + "\n  ".join(lines))


def written_files(paths: layout.RunPaths) -> list[str]:
    """Step 2: the run's readable page files (staged, or already moved into the table by an
    interrupted commit); unreadable ones are quarantined."""
    files = []
    for path in fileio.list_files(paths.staging("pages")) + fileio.list_files(paths.pages):
        problem = fileio.parquet_readable(path)
        if problem is None:
            files.append(path)
        else:
            where = layout.quarantine(path, paths)
            log.warning("%s cannot be read (%s): a damaged or foreign file, moved to %s; its pages are "
                        "done again", path, problem, where)
    return files


def drop_derived(paths: layout.RunPaths) -> None:
    """Step 3."""
    for folder in (paths.staging("lost"), paths.staging("documents"), paths.documents, paths.manifest):
        fileio.delete_files(folder)
    for path in fileio.list_files(paths.pages):  # lost rows an interrupted commit had moved in
        if path.rsplit("/", 1)[1].startswith("lost-"):
            fileio.delete_file(path)


def plan_document(source_uri: str, listed: dict | None, rows: list[dict], max_pages: int) -> list[dict]:
    """Step 4 for one document: [] if its rows are complete, else one PLAN row with what is done."""
    if listed is None:
        return []
    done = sorted({r["page_index"] for r in rows if r["page_index"] is not None})
    doc_rows = [r for r in rows if r["page_index"] is None]
    if any(r["error_kind"] != E.PAGE_LIMIT for r in doc_rows):
        return []  # a row about the whole document accounts for all of it
    counts = [r["page_count"] for r in rows if r["page_count"] is not None]
    if counts:
        count = max(counts)
        if set(range(min(count, max_pages))) <= set(done) and (count <= max_pages or doc_rows):
            return []
    return [PLAN.row(listed, done_pages=done, doc_row_done=bool(doc_rows))]


def todo(paths: layout.RunPaths, files: list[str], documents: int, max_pages: int):
    """The Ray dataset of PLAN rows: the listed documents that still need work."""
    from pipeline.commit.perdoc import by_document

    return by_document(paths.inputs, files, KEY_COLUMNS, plan_document, PLAN, documents,
                       fn_kwargs={"max_pages": max_pages})

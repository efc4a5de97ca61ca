"""Stage 7: finish a run after the streaming write, then commit it.

    1. drop superseded rows: on --resume, rows an interrupted attempt wrote for documents it did
       not finish (those documents were processed again);
    2. fill the document-level roll-up column (doc_answer_json) across all files of the run: it
       needs every page of a document, which the streaming write never sees together;
    3. account for lost work: not_processed rows for documents/pages without a row;
    4. write _manifest/manifest.parquet (one row per document: id, source, pages, status; in a
       sub-folder so that globs like OUTPUT/*/*.parquet match data files only);
    5. write _SUCCESS with the run's counts: from here on readers see the run.
Steps 1-4 are idempotent: an interrupted commit is redone by --resume.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
from collections import defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import accounting, answers, output
from pipeline.sources import DocumentRef
from pipeline.tasks import Task

log = logging.getLogger(__name__)

# Failures worth another try on the same content (--incremental does not skip these documents).
TRANSIENT = {"engine_error", "not_processed", "read_error", "render_crash"}
SKIPPED = "skipped_unchanged"

MANIFEST_SCHEMA = pa.schema([
    ("source_uri", pa.string()), ("doc_id", pa.string()), ("pages", pa.int32()), ("rows", pa.int32()),
    ("valid_rows", pa.int32()), ("status", pa.string()), ("error_kinds", pa.string()),
])


def data_files(target: str) -> list[str]:
    """Parquet files of a run folder (paths inside its filesystem), '_' and '.' files excluded."""
    import pyarrow.fs as pafs

    fs, inner = output.open_fs(target)
    infos = fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.extension == "parquet"
                  and not i.base_name.startswith(("_", ".")))


def read_rows(target: str, files: list[str] | None = None, columns: list[str] | None = None) -> pa.Table:
    """Rows of a run's files. A file an interrupted write left unreadable is deleted."""
    fs, _ = output.open_fs(target)
    tables = []
    for path in data_files(target) if files is None else files:
        try:
            with fs.open_input_file(path) as f:
                tables.append(pq.read_table(f, columns=columns, schema=output.SCHEMA))
        except (pa.ArrowInvalid, OSError) as exc:
            log.warning("removing %s, left unreadable by an interrupted write: %s", path, exc)
            fs.delete_file(path)
    schema = output.SCHEMA if columns is None else pa.schema([output.SCHEMA.field(c) for c in columns])
    return pa.concat_tables(tables) if tables else schema.empty_table()


def complete_sources(refs: list[DocumentRef], rows: list[dict[str, Any]], max_pages: int) -> set[str]:
    """Sources whose every page has a row (what --resume need not process again)."""
    by_source: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_source[row["source_uri"]].append(row)
    return {ref.source_uri for ref in refs if by_source.get(ref.source_uri)
            and not accounting.missing_rows([ref], by_source[ref.source_uri], "", "", max_pages)}


def document_status(rows: list[dict[str, Any]]) -> str:
    kinds = {r["error_kind"] for r in rows}
    if kinds == {SKIPPED}:
        return SKIPPED
    if kinds == {None}:
        return "ok"
    return "retry" if kinds & TRANSIENT else "failed"


def manifest(rows: list[dict[str, Any]]) -> pa.Table:
    by_source: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_source[row["source_uri"]].append(row)
    out = []
    for source, doc_rows in sorted(by_source.items()):
        out.append({
            "source_uri": source, "doc_id": doc_rows[0]["doc_id"],
            "pages": len({r["page_index"] for r in doc_rows if r["page_index"] is not None}),
            "rows": len(doc_rows), "valid_rows": sum(1 for r in doc_rows if r["valid"]),
            "status": document_status(doc_rows),
            "error_kinds": ",".join(sorted({r["error_kind"] for r in doc_rows if r["error_kind"]})) or None,
        })
    return pa.Table.from_pylist(out, schema=MANIFEST_SCHEMA)


def processed_ids(output_path: str) -> dict[str, str]:
    """doc_id -> run_id of documents done in committed runs (for --incremental)."""
    done: dict[str, str] = {}
    fs, inner = output.open_fs(output_path)
    for run_id in output.committed_runs(output_path):
        path = f"{inner}/run_id={run_id}/_manifest/manifest.parquet"
        try:
            with fs.open_input_file(path) as f:
                table = pq.read_table(f, columns=["doc_id", "status"])
        except (FileNotFoundError, OSError):
            continue
        for row in table.to_pylist():
            if row["status"] in ("ok", "failed"):
                done[row["doc_id"]] = run_id
    return done


def _rewrite(fs, path: str, table: pa.Table) -> None:
    tmp = path.rsplit("/", 1)
    tmp_path = f"{tmp[0]}/.{tmp[1]}.tmp"
    with fs.open_output_stream(tmp_path) as f:
        pq.write_table(table, f)
    fs.move(tmp_path, path)


def _with_rollup(table: pa.Table, rolled: dict[tuple, str | None]) -> pa.Table:
    keys = zip(table.column("source_uri").to_pylist(), table.column("question").to_pylist())
    column = pa.array([rolled.get(k) for k in keys], pa.string())
    return table.set_column(table.schema.get_field_index("doc_answer_json"), "doc_answer_json", column)


def finish_run(target: str, refs: list[DocumentRef], task: Task, model_id: str, max_pages: int,
               old_files: list[str], redo: set[str]) -> list[dict[str, Any]]:
    """Steps 1-4 above; returns every row of the run (for the summary)."""
    fs, inner = output.open_fs(target)
    for path in old_files:  # 1. rows of documents processed again by this attempt
        table = read_rows(target, [path])
        kept = table.filter(pc.invert(pc.is_in(table.column("source_uri"), pa.array(sorted(redo), pa.string()))))
        if kept.num_rows != table.num_rows:
            _rewrite(fs, path, kept)

    cols = ["source_uri", "doc_id", "page_index", "page_count", "question", "valid", "answer_json", "error_kind"]
    rows = read_rows(target, columns=cols).to_pylist()
    lost = accounting.missing_rows(refs, rows, task.name, task.prompt_version, max_pages)  # 3.
    if lost:
        now = _dt.datetime.now(_dt.timezone.utc)
        table = output.to_table([output.finalize_row(r, model_id, now) for r in lost])
        fs.create_dir(inner, recursive=True)  # every batch may have been lost: nothing created it yet
        with fs.open_output_stream(f"{inner}/not-processed-{len(data_files(target))}.parquet") as f:
            pq.write_table(table, f)
        log.warning("%d documents/pages lost to worker failures: written as not_processed rows", len(lost))

    by_source: dict[str, list[dict]] = defaultdict(list)  # 2. roll-up over all pages of each document
    for row in rows:
        by_source[row["source_uri"]].append(row)
    rolled = {(r["source_uri"], r["question"]): r["doc_answer_json"]
              for doc_rows in by_source.values() for r in answers.rollup_document(doc_rows, task)}
    for path in data_files(target):
        table = read_rows(target, [path])
        updated = _with_rollup(table, rolled)
        if not updated.column("doc_answer_json").equals(table.column("doc_answer_json")):
            _rewrite(fs, path, updated)

    all_rows = read_rows(target, columns=cols + ["prompt_tokens", "output_tokens", "request_questions"]).to_pylist()
    fs.create_dir(f"{inner}/_manifest", recursive=True)
    with fs.open_output_stream(f"{inner}/_manifest/manifest.parquet") as f:  # 4.
        pq.write_table(manifest(all_rows), f)
    return all_rows


def commit(target: str, summary: dict[str, Any]) -> None:
    output.write_marker(target, "_SUCCESS", json.loads(json.dumps(summary, default=str)))

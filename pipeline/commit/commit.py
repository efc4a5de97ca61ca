"""Stage 7: commit a run, with driver memory that does not grow with the run.

    1. check that every staged page file reads (resume.written_files: an unreadable one is moved to
       quarantine, never deleted) and drop what an earlier commit attempt derived;
    2. one pass in Ray over the listed inputs and a few columns of the staged files, grouped by
       document (perdoc.py): per document, the rows for work that was lost (accounting.py), its
       document-table rows (rollup.py) and its manifest row (manifest.py);
    3. write those: the document table and the not_processed rows to staging, the manifest to the
       run's record; the counts for _SUCCESS are summed from the manifest rows as they stream by;
    4. move the staged files into the tables (OUTPUT/pages/RUN_ID, OUTPUT/documents/RUN_ID);
    5. write _SUCCESS, whole, with the counts and committed_at: from here on the run is committed.
Data files are never rewritten. Every step can be redone: an interrupted commit is finished by
`--resume RUN_ID`, which redoes exactly steps 1-5.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.commit import accounting, manifest, rollup
from pipeline.store import fileio, layout, retrying, writer
from pipeline.commit.identity import document_key
from pipeline.commit.resume import drop_derived, written_files
from pipeline.core.rows import DOCUMENT_TABLE, MANIFEST, PAGE_TABLE, Column, ErrorKind as E, Shape
from pipeline.tasks import Task

log = logging.getLogger(__name__)

ROW_COLUMNS = pa.schema([PAGE_TABLE.schema.field(n) for n in
                         (*rollup.COLUMNS, "prompt_tokens", "output_tokens", "request_questions")]
                        + [pa.field("path", pa.string())])  # the staged file a row came from
_M = "m_"  # manifest columns in the commit's result rows


@dataclass
class CommitContext:
    paths: layout.RunPaths
    task: Task
    fingerprint: dict[str, Any]
    model_id: str
    max_pages: int
    documents: int  # listed

    @property
    def document_shape(self) -> Shape:
        """The document table; an extraction adds its typed columns after the fixed ones."""
        typed = [Column(f.name, f.type, True, f"Field of the user's schema ({f.name}).")
                 for f in self.task.document_fields]
        return DOCUMENT_TABLE.extend("documents", typed)


def _result_shape(ctx: CommitContext) -> Shape:
    extra = [Column("kind", pa.string(), False, "doc, lost or manifest")]
    extra += [Column(_M + c.name, c.type, True, c.description) for c in MANIFEST.columns if c.name != "source_uri"]
    extra += [Column(_M + n, pa.int64(), True, "") for n in ("prompt_tokens", "output_tokens", "blank_pages")]
    extra.append(Column(_M + "kind_counts", pa.string(), True, "JSON: error kind -> rows"))
    extra.append(Column(_M + "path", pa.string(), True, "superseded: the staged file that holds a page twice"))
    return ctx.document_shape.extend("commit_result", extra).nullable()


def _once(rows: list[dict]) -> tuple[list[dict], list[tuple[str, int | None]]]:
    """A page is in one file, by construction (writer.py). Should it be in two (a writer of a killed
    attempt that lived on for a moment on a cluster), the rows of the first file win and the other
    file's copies are returned as superseded (file, page): the commit takes them out of the run."""
    files: dict[int | None, set[str]] = {}
    for row in rows:
        files.setdefault(row["page_index"], set()).add(row["path"])
    keep = {page: min(paths) for page, paths in files.items()}
    superseded = [(path, page) for page, paths in files.items() for path in sorted(paths) if path != keep[page]]
    return [r for r in rows if r["path"] == keep[r["page_index"]]], superseded


def settle_document(source_uri: str, listed: dict | None, rows: list[dict], ctx: CommitContext) -> list[dict]:
    """Step 2 for one document (runs in Ray)."""
    rows, superseded = _once(rows)
    now = layout.now_utc()
    base = {"run_id": ctx.paths.run_id, "task": ctx.task.name, "model_id": ctx.model_id,
            "prompt_version": ctx.task.prompt_version, "created_at": now}
    lost = accounting.missing_rows(source_uri, rows, ctx.max_pages, base) if listed is not None else []
    everything = rows + [{c: r.get(c) for c in ROW_COLUMNS.names} for r in lost]
    out = [dict(r, kind="lost") for r in lost]
    out += [{"kind": "superseded", "source_uri": source_uri, "doc_id": "", "page_index": page, _M + "path": path}
            for path, page in superseded]
    out += [dict(r, kind="doc") for r in rollup.document_rows(ctx.task, everything, base, ctx.task.convert)]
    questions = listed.get("questions") if listed else None
    share = [1 / (r.get("request_questions") or 1) for r in everything]
    m = manifest.manifest_row(source_uri, everything, document_key(ctx.fingerprint, questions), ctx.max_pages)
    out.append({"kind": "manifest", "source_uri": source_uri, "doc_id": m["doc_id"] or "",
                "task": ctx.task.name, "status": m["status"], "run_id": ctx.paths.run_id,
                "model_id": ctx.model_id, "prompt_version": ctx.task.prompt_version, "created_at": now,
                **{_M + k: v for k, v in m.items() if k != "source_uri"},
                _M + "prompt_tokens": round(sum((r.get("prompt_tokens") or 0) * w for r, w in zip(everything, share))),
                _M + "output_tokens": round(sum((r.get("output_tokens") or 0) * w for r, w in zip(everything, share))),
                _M + "kind_counts": json.dumps(Counter(r["error_kind"] for r in everything if r["error_kind"])),
                _M + "blank_pages": len({r["page_index"] for r in everything if r["error_kind"] == E.BLANK_PAGE})})
    return out


def _select(batch: pa.Table, kind: str, shape: Shape, prefix: str = "") -> pa.Table:
    rows = batch.filter(pc.equal(batch.column("kind"), kind))
    cols = {c: rows.column(prefix + c if prefix + c in rows.column_names else c) for c in shape.names}
    return pa.table(cols).cast(shape.schema)


def _write_lost(batch: pa.Table, directory: str) -> pa.Table:
    rows = _select(batch, "lost", _LOST_SHAPE).to_pylist()
    full = [PAGE_TABLE.row(r, valid=False, attempts=0, error_kind=str(accounting.LOST)) for r in rows]
    if not full:
        return writer.RECEIPT.empty()
    return writer.RECEIPT.table([writer.write_rows(full, directory, prefix="lost-")])


_LOST_SHAPE = Shape("lost", [c for c in PAGE_TABLE.columns if c.name in DOCUMENT_TABLE.names]).nullable()


def _write_ray(ds, directory: str) -> None:
    fs, inner = fileio.ray_fs(directory)
    ds.write_parquet(inner, filesystem=fs, min_rows_per_file=50_000)


def commit_run(ctx: CommitContext, summary_extra: dict[str, Any], started: float) -> dict[str, Any]:
    """Steps 1-5; returns the _SUCCESS content (`started`: time.monotonic() when the job began)."""
    import ray

    # The job may tolerate lost blocks (they become not_processed rows); the commit may not: a block
    # lost here would silently take documents out of the manifest and the counts.
    data_ctx = ray.data.DataContext.get_current()
    data_ctx.max_errored_blocks = 0
    retrying.one_policy(data_ctx)
    paths = ctx.paths
    files = written_files(paths)  # 1.
    drop_derived(paths)
    from pipeline.commit.perdoc import by_document

    shape = _result_shape(ctx)
    result = by_document(paths.inputs, files, ROW_COLUMNS, settle_document, shape, ctx.documents,
                         fn_kwargs={"ctx": ctx}).materialize()  # 2. (in the object store, not here)

    docs = result.map_batches(_select, batch_format="pyarrow",
                              fn_kwargs={"kind": "doc", "shape": ctx.document_shape})  # 3.
    _write_ray(docs, paths.staging("documents"))
    lost_receipts = result.map_batches(_write_lost, batch_format="pyarrow",
                                       fn_kwargs={"directory": paths.staging("lost")})
    totals: dict[str, Any] = {}
    for batch in lost_receipts.iter_batches(batch_format="pyarrow", batch_size=None):
        writer.add_receipts(totals, batch)
    if totals.get("write_errors"):
        raise OSError(f"could not write the not_processed rows: {totals['write_errors'][0]}")
    _write_ray(result.map_batches(_select, batch_format="pyarrow",
                                  fn_kwargs={"kind": "manifest", "shape": MANIFEST, "prefix": _M}), paths.manifest)
    counts = _count(result)
    _take_out_superseded(result, paths)

    fileio.move_files(paths.staging("pages"), paths.pages)  # 4.
    fileio.move_files(paths.staging("lost"), paths.pages)
    fileio.move_files(paths.staging("documents"), paths.documents)
    marker = dict(summary_extra, **counts, seconds=round(time.monotonic() - started, 3),
                  committed_at=layout.now_utc().isoformat())  # 5.
    fileio.write_json(paths.success, marker)
    return marker


def _count(result) -> dict[str, Any]:
    """Run totals from the manifest rows, streamed: a few numbers held, whatever the run's size."""
    cols = [_M + c for c in ("rows", "valid_rows", "pages", "status", "prompt_tokens", "output_tokens", "kind_counts",
                             "blank_pages")]
    totals: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    manifests = result.map_batches(_select_manifest, batch_format="pyarrow", fn_kwargs={"cols": cols})
    for batch in manifests.iter_batches(batch_format="pyarrow", batch_size=4096):
        for row in batch.to_pylist():
            skipped = row[_M + "status"] == "skipped_unchanged"
            totals["documents_skipped" if skipped else "documents"] += 1
            if not skipped:
                for key in ("rows", "valid_rows", "pages", "prompt_tokens", "output_tokens", "blank_pages"):
                    totals[key] += row[_M + key] or 0
                failures.update(json.loads(row[_M + "kind_counts"] or "{}"))
    return {"documents": totals["documents"], "skipped_unchanged": totals["documents_skipped"],
            "pages": totals["pages"], "rows": totals["rows"], "valid_rows": totals["valid_rows"],
            "prompt_tokens": totals["prompt_tokens"], "output_tokens": totals["output_tokens"],
            # pages with nothing to read are counted apart: they are no failure
            "blank_pages": totals["blank_pages"], "blank_rows": failures.pop(E.BLANK_PAGE.value, 0),
            "failures": dict(failures)}


def _take_out_superseded(result, paths: layout.RunPaths) -> None:
    """Rows of a page that another file holds too leave the run: a file that holds nothing else is
    moved to quarantine; one that holds other pages is replaced by a copy without them. Only
    happens after a writer outlived its attempt; logged."""
    gone: dict[str, set] = {}
    for batch in result.map_batches(_select_manifest, batch_format="pyarrow",
                                    fn_kwargs={"cols": ["page_index", _M + "path"], "kind": "superseded"}
                                    ).iter_batches(batch_format="pyarrow", batch_size=None):
        for page, path in zip(batch.column("page_index").to_pylist(), batch.column(_M + "path").to_pylist()):
            gone.setdefault(path, set()).add(page)
    for inner, pages in gone.items():
        path = next(p for p in fileio.list_files(paths.staging("pages")) + fileio.list_files(paths.pages)
                    if fileio.open_fs(p)[1] == inner)
        table = fileio.read_parquet(path)
        keep = [r for r in table.to_pylist() if r["page_index"] not in pages]
        log.warning("%s holds %d page(s) that another file holds too (a writer outlived its attempt): "
                    "taken out of the run", path, len(pages))
        if keep:
            writer.write_rows(keep, paths.staging("pages"), prefix="part-dedup-")
        layout.quarantine(path, paths)


def _select_manifest(batch: pa.Table, cols: list[str], kind: str = "manifest") -> pa.Table:
    return batch.filter(pc.equal(batch.column("kind"), kind)).select(cols)

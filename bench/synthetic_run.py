#!/usr/bin/env python3
"""A synthetic docvqa run written straight into the run layout, ready for the commit stage.

Used by bench/bench_commit.py (millions of rows) and tests/test_commit_scale.py (a few thousand).
No engine, no rendering: the staged page files are what stage 6 (writer.py) would have written
for the documents planned here, built column by column with pyarrow. It writes

    OUTPUT/_docintel/runs/RUN/inputs.parquet   every listed document (rows.LISTED), also the ones
                                                with no row at all
    OUTPUT/_docintel/runs/RUN/job.json         what run._start_record writes (spec, fingerprint)
    OUTPUT/_docintel/runs/RUN/staging/pages/   rows.PAGE_TABLE files, `pages_per_file` pages each,
                                                named as writer.file_name names them

and returns what a correct commit must produce (counts for _SUCCESS, the not_processed rows, the
document table's rows and statuses, the manifest's).

The documents (1..9 pages, deterministic from the seed):
  normal       every page answered (valid docvqa JSON), except pages with render_error (one row,
               no question) and pages whose answer array failed validation (invalid_output, every
               question of the page)
  missing page a normal document with one page that has no row: one not_processed row expected
  no rows      listed, nothing written: one document-level not_processed row expected
  doc error    one document-level row (corrupt_pdf)
  cut          more pages than max_pages: rows for the first max_pages pages and one page_limit row
  own questions a normal document with its own two questions (listed with them)

    python bench/synthetic_run.py build OUT RUN --pages 3000 --questions 2     (prints the expectations)
    python bench/synthetic_run.py commit OUT RUN                               (commits it, like run.py)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.core.rows import LISTED, PAGE_TABLE, BOX, ErrorKind as E  # noqa: E402
from pipeline.store import fileio, layout, writer  # noqa: E402

JOB_QUESTIONS = ("What is the invoice number?", "What is the total amount?", "Who is the supplier?",
                 "What is the invoice date?", "What is the due date?", "What is the VAT number?")
OWN_QUESTIONS = ("What is the order reference?", "Who signed the document?")
# (answer, evidence): valid docvqa answers; "unanswerable" ones do not vote in the roll-up
ANSWERS = [("INV-2291", "Invoice no. INV-2291"), ("EUR 1,204.50", "Total EUR 1,204.50"),
           ("ACME GmbH", "ACME GmbH, Berlin"), ("unanswerable", ""), ("2026-11-29", "Date: 2026-11-29"),
           ("DE123456789", "VAT DE123456789"), ("Jane Doe", "Signed: Jane Doe"), ("PO-77812", "Order PO-77812"),
           ("2026-12-29", "Due 2026-12-29"), ("EUR 1.204,50", "Gesamt EUR 1.204,50"), ("Acme GmbH", "acme gmbh")]
CREATED = int(_dt.datetime(2026, 12, 1, 2, 0, tzinfo=_dt.timezone.utc).timestamp() * 1_000_000)

# unit types: one "page unit" is what writer.py counts as one page (all rows of a page, or a row
# about the whole document)
ANSWERED, RENDER_ERROR, INVALID, DOC_ERROR, LIMIT = range(5)
# document kinds
NORMAL, NO_ROWS, DOC_ERR, CUT = range(4)


@dataclass
class Plan:
    run_id: str
    questions: int
    max_pages: int
    kind: np.ndarray  # per document
    n_pages: np.ndarray  # page_count per document
    own: np.ndarray  # bool: the document has its own two questions
    missing: np.ndarray  # the page without a row, -1 for none
    unit_doc: np.ndarray  # per page unit: its document
    unit_page: np.ndarray  # its page_index, -1 for a document-level row
    unit_type: np.ndarray

    def uri(self, d: int) -> str:
        return f"s3://nightly-inbox/2026-12-01/batch{d // 1000:04d}/doc{d:07d}.pdf"

    def doc_id(self, d: int) -> str:
        return hashlib.sha256(self.uri(d).encode()).hexdigest()[:32]

    def doc_questions(self, d: int) -> tuple[str, ...]:
        return OWN_QUESTIONS if self.own[d] else JOB_QUESTIONS[:self.questions]


def plan(run_id: str, pages: int, questions: int = 4, max_pages: int = 500, seed: int = 0,
         no_rows: float = 0.005, doc_errors: float = 0.002, missing: float = 0.02, own: float = 0.01,
         cut_docs: int = 2, render_errors: float = 0.003, invalid: float = 0.01) -> Plan:
    """About `pages` page units in documents of 1-9 pages (fractions are of documents, or of pages
    for render_errors and invalid)."""
    if not 1 <= questions <= len(JOB_QUESTIONS):
        raise ValueError(f"questions: 1..{len(JOB_QUESTIONS)}")
    rng = np.random.default_rng(seed)
    docs = max(10, int(pages / 5))
    n_pages = rng.integers(1, 10, docs).astype(np.int64)
    roll = rng.random(docs)
    kind = np.full(docs, NORMAL, np.int8)
    kind[roll < no_rows] = NO_ROWS
    kind[(roll >= no_rows) & (roll < no_rows + doc_errors)] = DOC_ERR
    cut_at = rng.choice(np.flatnonzero(kind == NORMAL), size=min(cut_docs, docs // 10), replace=False)
    kind[cut_at] = CUT
    n_pages[cut_at] = max_pages + 7
    is_normal = kind == NORMAL
    own_q = is_normal & (rng.random(docs) < own)
    miss = np.full(docs, -1, np.int64)
    gap = is_normal & (n_pages >= 2) & (rng.random(docs) < missing)
    miss[gap] = (rng.random(gap.sum()) * n_pages[gap]).astype(np.int64)

    rows_per_doc = np.where(kind == NORMAL, n_pages - (miss >= 0), 0)
    rows_per_doc[kind == DOC_ERR] = 1
    rows_per_doc[kind == CUT] = max_pages + 1
    unit_doc = np.repeat(np.arange(docs), rows_per_doc)
    starts = np.cumsum(rows_per_doc) - rows_per_doc
    offset = np.arange(unit_doc.size) - starts[unit_doc]
    unit_page = offset.copy()
    m = miss[unit_doc]
    unit_page[(m >= 0) & (offset >= m)] += 1  # skip the missing page
    types = np.full(unit_doc.size, ANSWERED, np.int8)
    r = rng.random(unit_doc.size)
    types[r < render_errors] = RENDER_ERROR
    types[(r >= render_errors) & (r < render_errors + invalid)] = INVALID
    dk = kind[unit_doc]
    types[dk == DOC_ERR] = DOC_ERROR
    unit_page[dk == DOC_ERR] = -1
    limit = (dk == CUT) & (offset == max_pages)
    types[limit] = LIMIT
    unit_page[limit] = -1
    return Plan(run_id, questions, max_pages, kind, n_pages, own_q, miss, unit_doc, unit_page, types)


def expectations(p: Plan, pages_per_file: int) -> dict[str, Any]:
    """What a correct commit of this plan writes (computed from the plan, not from the files)."""
    q_doc = np.where(p.own, len(OWN_QUESTIONS), p.questions)
    qu = q_doc[p.unit_doc]
    t = p.unit_type
    engine = (t == ANSWERED) | (t == INVALID)
    staged_rows = int(np.where(engine, qu, 1).sum())
    valid_rows = int(qu[t == ANSWERED].sum())
    pt, ot = _tokens(p.unit_page, qu)
    no_rows = np.flatnonzero(p.kind == NO_ROWS)
    gaps = np.flatnonzero(p.missing >= 0)
    lost = [[p.uri(int(d)), None] for d in no_rows] + [[p.uri(int(d)), int(p.missing[d])] for d in gaps]
    failures = Counter({str(E.NOT_PROCESSED): len(lost), str(E.RENDER_ERROR): int((t == RENDER_ERROR).sum()),
                        str(E.INVALID_OUTPUT): int(qu[t == INVALID].sum()),
                        str(E.CORRUPT_PDF): int((t == DOC_ERROR).sum()), str(E.PAGE_LIMIT): int((t == LIMIT).sum())})
    # pages in the manifest: distinct page indexes with a row (not_processed page rows included)
    pages = int((p.unit_page >= 0).sum()) + len(gaps)
    # document table: per (document, question) the question's rows plus the page-level failures
    docs = p.kind.size
    bad_pages = np.bincount(p.unit_doc[(t == RENDER_ERROR) | (t == LIMIT)], minlength=docs) + (p.missing >= 0)
    inv = np.bincount(p.unit_doc[t == INVALID], minlength=docs)
    ans = np.bincount(p.unit_doc[t == ANSWERED], minlength=docs)
    with_q = (p.kind == NORMAL) | (p.kind == CUT)
    has_q_rows = with_q & (ans + inv > 0)
    status = np.where(~has_q_rows, 2, np.where((bad_pages == 0) & (inv == 0), 0, np.where(ans == 0, 2, 1)))
    names = ("ok", "partial", "failed")
    doc_status = Counter({k: 0 for k in names})
    for s in range(3):
        sel = has_q_rows & (status == s)
        doc_status[names[s]] += int(q_doc[sel].sum())
    doc_status["failed"] += int((~has_q_rows).sum())
    # manifest status: ok (no error kind), retry (a transient kind: not_processed), failed
    lost_doc = (p.kind == NO_ROWS) | (p.missing >= 0)
    any_err = lost_doc | (p.kind != NORMAL) | (bad_pages > 0) | (inv > 0)
    manifest_status = Counter({"ok": int((~any_err).sum()), "retry": int(lost_doc.sum()),
                               "failed": int((any_err & ~lost_doc).sum())})
    return {
        "run_id": p.run_id, "documents_listed": int(docs), "questions": p.questions, "max_pages": p.max_pages,
        "staged_page_units": int(t.size), "staged_rows": staged_rows, "staged_files": -(-int(t.size) // pages_per_file),
        "pages_per_file": pages_per_file,
        "doc_kinds": {"normal": int((p.kind == NORMAL).sum()), "no_rows": int(no_rows.size),
                      "doc_error": int((p.kind == DOC_ERR).sum()), "cut": int((p.kind == CUT).sum()),
                      "missing_page": int(gaps.size), "own_questions": int(p.own.sum())},
        "not_processed": len(lost), "lost": lost,
        "success": {"documents": int(docs), "skipped_unchanged": 0, "pages": pages,
                    "rows": staged_rows + len(lost), "valid_rows": valid_rows,
                    "prompt_tokens": int(pt[engine].sum()), "output_tokens": int(ot[engine].sum()),
                    "failures": {k: v for k, v in failures.items() if v}},
        "document_rows": int(q_doc[has_q_rows].sum() + (~has_q_rows).sum()),
        "document_status": {k: v for k, v in doc_status.items() if v},
        "manifest_rows": int(docs), "manifest_status": {k: v for k, v in manifest_status.items() if v},
    }


def _tokens(page: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A page request's tokens (prompt, output): the same for every row of the page."""
    page = np.maximum(page, 0)
    return 1375 + (page % 5) * 10, 24 * q + page % 3


# ---- files ------------------------------------------------------------------------------------

def _variants() -> tuple[list[str], pa.Array, pa.Array]:
    details_type = PAGE_TABLE.schema.field("value_details").type
    jsons, boxes, details = [], [], []
    for i, (answer, evidence) in enumerate(ANSWERS):
        jsons.append(json.dumps({"answer": answer, "evidence": evidence}, ensure_ascii=False, sort_keys=True))
        box = [{"x0": 0.1 + 0.01 * i, "y0": 0.2, "x1": 0.4, "y1": 0.23}]
        real = answer != "unanswerable"
        boxes.append(box if real else None)
        details.append([{"path": "answer", "confidence": 0.9 - 0.02 * i, "boxes": box if real else None,
                         "grounded": real},
                        {"path": "evidence", "confidence": 0.8, "boxes": box if evidence else None,
                         "grounded": bool(evidence)}])
    return jsons, pa.array(boxes, pa.list_(BOX)), pa.array(details, details_type)


def page_table(p: Plan, units: range, model_id: str, prompt_version: str) -> tuple[pa.Table, list[dict]]:
    """The PAGE_TABLE rows of the page units `units`, as one table (and their file-name keys)."""
    jsons, boxes, details = _variants()
    k = len(ANSWERS)
    cols: dict[str, list] = {n: [] for n in ("doc_id", "source_uri", "page_index", "page_count", "width",
                                             "height", "question", "answer_json", "answer_text", "confidence",
                                             "grounded", "raw_output", "request_questions", "valid", "error_kind",
                                             "error", "finish_reason", "attempts", "prompt_tokens",
                                             "output_tokens", "latency_s", "render_s")}
    variant: list[int | None] = []
    keys = []
    cache: dict[int, tuple] = {}
    for u in units:
        d, page, typ = int(p.unit_doc[u]), int(p.unit_page[u]), int(p.unit_type[u])
        if d not in cache:
            cache = {d: (p.uri(d), p.doc_id(d), p.doc_questions(d), int(p.n_pages[d]))}
        uri, doc_id, questions, count = cache[d]
        pidx = None if page < 0 else page
        keys.append({"source_uri": uri, "page_index": pidx})
        if typ in (ANSWERED, INVALID):
            q = len(questions)
            pt, ot = _tokens(np.array([page]), np.array([q]))
            vs = [(d * 7 + page * 3 + i * 5) % k for i in range(q)]
            if typ == ANSWERED:
                raw = '{"answers": [' + ", ".join(jsons[v] for v in vs) + "]}"
            else:
                raw = '{"answers": [{"answer": "INV-22'
            for i, question in enumerate(questions):
                ok = typ == ANSWERED
                v = vs[i]
                _append(cols, doc_id=doc_id, source_uri=uri, page_index=pidx, page_count=count, width=1190,
                        height=1540, question=question, answer_json=jsons[v] if ok else None,
                        answer_text=ANSWERS[v][0] if ok else None, confidence=0.9 - 0.02 * v if ok else None,
                        grounded=(ANSWERS[v][0] != "unanswerable") if ok else None, raw_output=raw,
                        request_questions=q, valid=ok, error_kind=None if ok else str(E.INVALID_OUTPUT),
                        error=None if ok else "not JSON: Unterminated string starting at char 14",
                        finish_reason="stop", attempts=1, prompt_tokens=int(pt[0]), output_tokens=int(ot[0]),
                        latency_s=1.5 + (page % 7) * 0.1, render_s=0.05)
                variant.append(v if ok else None)
        else:
            kind, message = {RENDER_ERROR: (E.RENDER_ERROR, "RuntimeError: MuPDF error: syntax error in content"),
                             DOC_ERROR: (E.CORRUPT_PDF, "cannot open PDF: no objects found"),
                             LIMIT: (E.PAGE_LIMIT, f"pages {p.max_pages + 1}..{count} not processed "
                                                   f"(render.max_pages={p.max_pages})")}[typ]
            _append(cols, doc_id=doc_id, source_uri=uri, page_index=pidx,
                    page_count=None if typ == DOC_ERROR else count, width=None, height=None, question=None,
                    answer_json=None, answer_text=None, confidence=None, grounded=None, raw_output=None,
                    request_questions=None, valid=False, error_kind=str(kind), error=message, finish_reason=None,
                    attempts=0, prompt_tokens=None, output_tokens=None, latency_s=None,
                    render_s=0.01 if typ == RENDER_ERROR else None)
            variant.append(None)
    n = len(variant)
    idx = pa.array(variant, pa.int32())
    arrays = {name: pa.array(values, PAGE_TABLE.schema.field(name).type) for name, values in cols.items()}
    arrays.update(
        run_id=pa.array([p.run_id] * n, pa.string()), doc_format=pa.array(["pdf"] * n, pa.string()),
        task=pa.array(["docvqa"] * n, pa.string()), answer_number=pa.nulls(n, pa.float64()),
        answer_unit=pa.nulls(n, pa.string()), answer_boxes=boxes.take(idx), value_details=details.take(idx),
        model_id=pa.array([model_id] * n, pa.string()), prompt_version=pa.array([prompt_version] * n, pa.string()),
        created_at=pa.array([CREATED] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        token_confidence=arrays["confidence"])  # no text layer to weigh it against: the same
    # the columns a run without a review threshold leaves null (needs_review, ...)
    return pa.table([arrays.get(f.name, pa.nulls(n, f.type)) for f in PAGE_TABLE.schema],
                    schema=PAGE_TABLE.schema), keys


def _append(cols: dict[str, list], **values: Any) -> None:
    for name, value in values.items():
        cols[name].append(value)


def _job_spec(out: str, run_id: str, p: Plan):
    from pipeline.core.config import JobSpec

    return JobSpec.model_validate({"output": {"path": out, "run_id": run_id},
                                   "task": {"name": "docvqa", "questions": list(JOB_QUESTIONS[:p.questions])},
                                   "render": {"max_pages": p.max_pages}})


def _write_files(args: tuple) -> list[tuple[str, int]]:
    p, directory, file_indexes, per_file, model_id, prompt_version = args
    written = []
    total = p.unit_doc.size
    for i in file_indexes:
        table, keys = page_table(p, range(i * per_file, min(total, (i + 1) * per_file)), model_id, prompt_version)
        path = f"{directory}/{writer.file_name(keys)}"
        pq.write_table(table, path)  # the run's own writer goes through fileio.write_table: same bytes
        written.append((path.rsplit("/", 1)[1], table.num_rows))
    return written


def build(out: str, run_id: str, pages: int, questions: int = 4, pages_per_file: int = 512, max_pages: int = 500,
          seed: int = 0, workers: int = 1, **fractions: Any) -> dict[str, Any]:
    """Write the synthetic run under OUT and return its expectations (see the module doc)."""
    from pipeline.engine.model import model_label
    from pipeline.commit.identity import fingerprint
    from pipeline.tasks import get_task

    began = time.monotonic()
    build_args = dict(pages=pages, questions=questions, max_pages=max_pages, seed=seed, **fractions)
    p = plan(run_id, **build_args)
    paths = layout.RunPaths(out, run_id)
    spec = _job_spec(out, run_id, p)
    task = get_task("docvqa", spec.task)
    if fileio.read_json(paths.job) is not None:
        raise FileExistsError(f"run {run_id} already exists under {out}")
    docs = p.kind.size
    listed = pa.table({
        "source_uri": pa.array([p.uri(d) for d in range(docs)], pa.string()),
        "questions": pa.array([list(OWN_QUESTIONS) if p.own[d] else [] for d in range(docs)], pa.list_(pa.string())),
        "size_bytes": pa.array((40_000 + 30_000 * p.n_pages).tolist(), pa.int64()),
        "mtime_ns": pa.array([1_764_000_000_000_000_000 + d for d in range(docs)], pa.int64()),
        "error_kind": pa.nulls(docs, pa.string()), "error": pa.nulls(docs, pa.string()),
    }, schema=LISTED.schema)
    fileio.write_table(paths.inputs, listed)  # as run._start_record writes them
    fileio.write_json(paths.job, {"run_id": run_id, "spec": spec.redacted(), "fingerprint": fingerprint(spec, task),
                                  "started_at": layout.now_utc().isoformat()})
    directory = paths.staging("pages")
    os.makedirs(directory, exist_ok=True)
    n_files = -(-p.unit_doc.size // pages_per_file)
    model_id = model_label(spec.engine)
    jobs = [(p, directory, range(w, n_files, workers), pages_per_file, model_id, task.prompt_version)
            for w in range(workers)]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_write_files, jobs)
    else:
        parts = [_write_files(jobs[0])]
    files = sorted(f for part in parts for f in part)
    expect = expectations(p, pages_per_file)
    if sum(n for _, n in files) != expect["staged_rows"] or len(files) != expect["staged_files"]:
        raise AssertionError("the files written do not match the plan")
    expect.update(output=out, build_args=build_args, staged_file_names=[f for f, _ in files],
                  build_s=round(time.monotonic() - began, 1),
                  staged_bytes=sum(os.path.getsize(f"{directory}/{f}") for f, _ in files))
    return expect


# ---- committing it, as run.py does ----------------------------------------------------------

def commit_context(out: str, run_id: str):
    """CommitContext and summary extras from the run's record, as run.run_job builds them."""
    from pipeline.commit.commit import CommitContext
    from pipeline.core.config import JobSpec
    from pipeline.engine.model import model_label
    from pipeline.commit.identity import fingerprint
    from pipeline.tasks import get_task

    paths = layout.RunPaths(out, run_id)
    job = fileio.read_json(paths.job)
    spec = JobSpec.model_validate(job["spec"])
    task = get_task(spec.task.name, spec.task)
    print_ = fingerprint(spec, task)
    documents = fileio.read_parquet(paths.inputs, ["source_uri"]).num_rows
    extra = {"run_id": run_id, "output": out, "task": task.name, "model": model_label(spec.engine),
             "device": "cpu", "documents_listed": documents}
    ctx = CommitContext(paths, task, print_, model_label(spec.engine), spec.render.max_pages, documents)
    return ctx, extra


def init_ray(num_cpus: int = 2, object_store_memory: int | None = None, shuffle_partitions: int | None = None) -> None:
    """A local Ray of its own (address='local': never a cluster another user started here).
    shuffle_partitions: Ray Data's default_hash_shuffle_parallelism (200), which the commit's
    group-by uses; lower, a small run starts fewer reduce tasks."""
    import logging

    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, object_store_memory=object_store_memory)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.max_errored_blocks = -1  # RaySpec's default, as run.py sets it
    if shuffle_partitions:
        ctx.default_hash_shuffle_parallelism = shuffle_partitions


def commit(out: str, run_id: str) -> dict[str, Any]:
    from pipeline.commit.commit import commit_run

    ctx, extra = commit_context(out, run_id)
    return commit_run(ctx, extra, time.monotonic())


# ---- checking a committed run ----------------------------------------------------------------

def check_committed(out: str, run_id: str, expect: dict[str, Any], exact_keys: bool = False) -> dict[str, Any]:
    """Compare what the commit wrote with the expectations; returns the facts checked, raises
    AssertionError on the first difference. exact_keys: also compare every row key (small runs)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pds

    paths = layout.RunPaths(out, run_id)
    problems: list[str] = []

    def same(what: str, got: Any, want: Any) -> None:
        if got != want:
            problems.append(f"{what}: got {got!r}, expected {want!r}")

    marker = fileio.read_json(paths.success)
    if marker is None:
        raise AssertionError("no _SUCCESS")
    for key, want in expect["success"].items():
        same(f"_SUCCESS[{key}]", marker.get(key), want)
    page_files = [f.rsplit("/", 1)[1] for f in fileio.list_files(paths.pages)]
    same("staged files in the page table", sorted(f for f in page_files if f.startswith("part-")),
         sorted(expect["staged_file_names"]))
    same("files other than part-/lost- in the page table",
         [f for f in page_files if not f.startswith(("part-", "lost-"))], [])
    pages = pds.dataset(paths.pages, format="parquet").to_table(
        columns=["source_uri", "page_index", "question", "error_kind", "run_id"])
    lost_expected = expect["not_processed"]
    same("page table rows", pages.num_rows, expect["staged_rows"] + lost_expected)
    keys = pages.group_by(["source_uri", "page_index", "question"]).aggregate([([], "count_all")])
    same("distinct (source_uri, page_index, question) in the page table", keys.num_rows, pages.num_rows)
    same("run_id values", pc.unique(pages.column("run_id")).to_pylist(), [run_id])
    lost = pages.filter(pc.equal(pages.column("error_kind"), str(E.NOT_PROCESSED)))
    same("not_processed rows", sorted(map(list, zip(lost.column("source_uri").to_pylist(),
                                                    lost.column("page_index").to_pylist())),
                                      key=lambda k: (k[0], -1 if k[1] is None else k[1])),
         sorted(expect["lost"], key=lambda k: (k[0], -1 if k[1] is None else k[1])))
    same("not_processed rows in lost- files",
         sum(pq.ParquetFile(f"{paths.pages}/{f}").metadata.num_rows for f in page_files if f.startswith("lost-")),
         lost_expected)
    if exact_keys:
        staged = pages.filter(pc.invert(pc.fill_null(pc.equal(pages.column("error_kind"), str(E.NOT_PROCESSED)),
                                                     False)))
        p = plan_from(expect)
        want = sorted(_unit_keys(p))
        got = sorted(zip(staged.column("source_uri").to_pylist(),
                         [-1 if i is None else i for i in staged.column("page_index").to_pylist()],
                         [q or "" for q in staged.column("question").to_pylist()]))
        same("every staged row, exactly once", got == want, True)
    docs = pds.dataset(paths.documents, format="parquet").to_table(columns=["source_uri", "question", "status"])
    same("document table rows", docs.num_rows, expect["document_rows"])
    same("distinct (source_uri, question) in the document table",
         docs.group_by(["source_uri", "question"]).aggregate([([], "count_all")]).num_rows, docs.num_rows)
    same("documents in the document table", pc.count_distinct(docs.column("source_uri")).as_py(),
         expect["documents_listed"])
    same("document table statuses", dict(Counter(docs.column("status").to_pylist())), expect["document_status"])
    man = pds.dataset(paths.manifest, format="parquet").to_table(columns=["source_uri", "status"])
    same("manifest rows", man.num_rows, expect["manifest_rows"])
    same("distinct documents in the manifest", pc.count_distinct(man.column("source_uri")).as_py(),
         expect["manifest_rows"])
    same("manifest statuses", dict(Counter(man.column("status").to_pylist())), expect["manifest_status"])
    same("staging left over", [fileio.list_files(paths.staging(t)) for t in ("pages", "lost", "documents")],
         [[], [], []])
    if problems:
        raise AssertionError("the committed run is wrong:\n  " + "\n  ".join(problems))
    return {"page_rows": pages.num_rows, "not_processed": lost.num_rows, "document_rows": docs.num_rows,
            "manifest_rows": man.num_rows, "success": {k: marker[k] for k in expect["success"]}}


def plan_from(expect: dict[str, Any]) -> Plan:
    """The plan again, from the arguments build() recorded in the expectations."""
    return plan(expect["run_id"], **expect["build_args"])


def _unit_keys(p: Plan) -> list[tuple[str, int, str]]:
    out = []
    for d, page, typ in zip(p.unit_doc.tolist(), p.unit_page.tolist(), p.unit_type.tolist()):
        if typ in (ANSWERED, INVALID):
            out += [(p.uri(d), page, q) for q in p.doc_questions(d)]
        else:
            out.append((p.uri(d), page, ""))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("out")
    b.add_argument("run_id")
    b.add_argument("--pages", type=int, default=3000)
    b.add_argument("--questions", type=int, default=2)
    b.add_argument("--pages-per-file", type=int, default=512)
    b.add_argument("--max-pages", type=int, default=500)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=1)
    b.add_argument("--expect", help="write the expectations here (JSON) instead of printing them")
    c = sub.add_parser("commit")
    c.add_argument("out")
    c.add_argument("run_id")
    c.add_argument("--object-store-mb", type=int, default=None)
    c.add_argument("--shuffle-partitions", type=int, default=None, help="default: Ray Data's (200)")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        expect = build(args.out, args.run_id, args.pages, args.questions, args.pages_per_file, args.max_pages,
                       args.seed, args.workers)
        text = json.dumps(expect)
        if args.expect:
            Path(args.expect).write_text(text)
        else:
            print(text)
        return 0
    init_ray(2, args.object_store_mb * 2**20 if args.object_store_mb else None, args.shuffle_partitions)
    began = time.monotonic()
    marker = commit(args.out, args.run_id)
    print(f"commit_run: {time.monotonic() - began:.1f} s", flush=True)
    print(json.dumps({"committed": marker}, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`docintel runs OUTPUT` and `docintel show OUTPUT RUN_ID`: what runs an output holds, and one run's
summary with its failed documents. Read-only; local folders and URIs alike.

A run is a folder under OUTPUT/_docintel/runs/ (pipeline/store/layout.py); it is committed when its
_SUCCESS exists. A committed run's numbers come from _SUCCESS (counted by the commit from the run's
own rows); an unfinished run has none, so what it has is read from its record: job.json (task,
model, start time), inputs.parquet's footer (documents listed) and the staged page files. Every
read goes through pipeline/store/layout.py and pipeline/store/output.py, which take local paths and URIs.
"""
from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.store import fileio, layout, output
from pipeline.store.storage import retry_transient
from pipeline.job.summary import RunSummary

FAILED_LIMIT = 50  # failed documents `show` lists before "... and N more"
ERROR_CHARS = 300  # of each error message: the first line of a traceback-sized text is enough here


@dataclass
class RunInfo:
    """One line of `docintel runs`: None where the run's record does not say."""

    run_id: str
    committed: bool
    committed_at: str | None = None
    started_at: str | None = None
    task: str | None = None
    model: str | None = None
    documents: int | None = None   # committed: answered documents; unfinished: listed
    pages: int | None = None
    rows: int | None = None
    valid_rows: int | None = None
    failures: dict[str, int] = field(default_factory=dict)
    pages_per_s: float | None = None
    staged_files: int | None = None  # unfinished runs only
    has_job: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _job_facts(job: dict[str, Any] | None) -> dict[str, Any]:
    """Task, model and start time from job.json (the fingerprint has the model's label, as rows do)."""
    if not job:
        return {}
    spec, fp = job.get("spec") or {}, job.get("fingerprint") or {}
    return {"started_at": job.get("started_at"),
            "task": fp.get("task") or (spec.get("task") or {}).get("name"),
            "model": fp.get("model") or (spec.get("engine") or {}).get("model")}


def _listed(paths: layout.RunPaths) -> int | None:
    """Documents listed at start: the row count in inputs.parquet's footer (no rows read)."""
    fs, inner = fileio.open_fs(paths.inputs)

    def footer() -> int:
        with fs.open_input_file(inner) as f:
            return pq.read_metadata(f).num_rows
    try:
        return retry_transient(footer, f"read the footer of {paths.inputs}")
    except (FileNotFoundError, pa.ArrowInvalid):  # not written (a run that never got going), or not Parquet
        return None


def run_info(out: str, run_id: str) -> RunInfo:
    paths = layout.RunPaths(out, run_id)
    marker = output.marker(out, run_id)
    job = fileio.read_json(paths.job)
    facts = _job_facts(job)
    if marker is not None:
        s = RunSummary.from_marker({"run_id": run_id, "output": out, "task": "", "model": "", "device": "",
                                    "documents_listed": 0, "documents": 0, "pages": 0, "skipped_unchanged": 0,
                                    "rows": 0, "valid_rows": 0, **marker})
        return RunInfo(run_id, True, committed_at=marker.get("committed_at"), started_at=facts.get("started_at"),
                       task=s.task or facts.get("task"), model=s.model or facts.get("model"), documents=s.documents,
                       pages=s.pages, rows=s.rows, valid_rows=s.valid_rows, failures=dict(s.failures),
                       pages_per_s=round(s.pages_per_s, 3) if s.seconds else None, has_job=job is not None)
    return RunInfo(run_id, False, documents=_listed(paths), staged_files=len(fileio.list_files(paths.staging("pages"))),
                   has_job=job is not None, **facts)


def list_runs(out: str) -> list[RunInfo]:
    """Every run under OUTPUT, committed or not, oldest start first (commit time where no start is known)."""
    infos = [run_info(out, run_id) for run_id in fileio.list_dirs(f"{out.rstrip('/')}/{layout.RECORD}")]
    return sorted(infos, key=lambda r: (r.started_at or r.committed_at or "", r.run_id))


# ---- text ------------------------------------------------------------------------------------

def _when(stamp: str | None) -> str:
    """ISO time as 'YYYY-MM-DD HH:MM:SSZ' in UTC (the record stores UTC); as stored if it does not parse."""
    if not stamp:
        return "-"
    try:
        t = _dt.datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%SZ")


def _kinds(counts: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def _n(value: Any) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.2f}"


def render_runs(infos: list[RunInfo], out: str) -> str:
    """The runs as an aligned plain-text table (numbers right-aligned; the model last, it is long)."""
    if not infos:
        return f"no runs under {out}"
    head = ["RUN", "STATE", "COMMITTED/STARTED", "TASK", "DOCS", "PAGES", "ROWS", "FAILURES", "PAGES/S", "MODEL"]
    body = []
    for r in infos:
        if r.committed:
            state, when = "committed", _when(r.committed_at)
        else:
            state = "unfinished" if r.has_job else "no job.json"
            state += f" ({r.staged_files} staged)" if r.staged_files else ""
            when = _when(r.started_at)
        body.append([r.run_id, state, when, r.task or "-", _n(r.documents), _n(r.pages), _n(r.rows),
                     _kinds(r.failures) if r.committed else "-", _n(r.pages_per_s), r.model or "-"])
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    numeric = {4, 5, 6, 8}
    lines = []
    for row in [head, *body]:
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    committed = sum(r.committed for r in infos)
    lines.append(f"{len(infos)} runs under {out}: {committed} committed, {len(infos) - committed} unfinished "
                 "(unfinished runs: `docintel run ... --resume RUN_ID` finishes one)")
    return "\n".join(lines)


# ---- show ------------------------------------------------------------------------------------

def _short(text: Any, limit: int = ERROR_CHARS) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def failed_documents(documents: pa.Table) -> tuple[list[dict[str, Any]], Counter]:
    """Per document with a failed or partial row: its worst status, error kinds, first error and how
    many of its (document, question) rows are not ok; and the count of every status, per document.
    The table has a row per question, so a document that failed once per question is listed once."""
    cols = [c for c in ("source_uri", "status", "error_kinds", "error", "question") if c in documents.column_names]
    per_doc: dict[str, dict[str, Any]] = {}
    statuses: dict[str, set] = {}
    for row in documents.select(cols).to_pylist():
        uri, status = row["source_uri"], row["status"]
        statuses.setdefault(uri, set()).add(status)
        doc = per_doc.setdefault(uri, {"source_uri": uri, "status": "ok", "error_kinds": set(), "error": None,
                                       "bad_rows": 0, "rows": 0})
        doc["rows"] += 1
        if status in ("ok", "skipped_unchanged"):  # skipped: an earlier committed run has its answer
            continue
        doc["bad_rows"] += 1
        doc["status"] = "failed" if "failed" in (status, doc["status"]) else status
        doc["error_kinds"].update(row.get("error_kinds") or [])
        doc["error"] = doc["error"] or row.get("error")
    # a document counts under its worst status: failed > partial > skipped_unchanged > ok
    rank = ["failed", "partial", "skipped_unchanged", "ok"]
    counts = Counter(min(s, key=lambda x: rank.index(x) if x in rank else -1) for s in statuses.values())
    bad = sorted((d for d in per_doc.values() if d["bad_rows"]),
                 key=lambda d: (d["status"] != "failed", d["source_uri"]))
    for d in bad:
        d["error_kinds"] = sorted(d["error_kinds"])
    return bad, counts


def _render_failed(bad: list[dict[str, Any]], counts: Counter, limit: int) -> list[str]:
    lines = ["", "documents   " + ("  ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none")]
    if not bad:
        return lines + ["no failed documents"]
    lines.append(f"failed documents ({len(bad):,}; failed first):")
    width = max(len(d["status"]) for d in bad[:limit])
    for d in bad[:limit]:
        part = f"  ({d['bad_rows']} of {d['rows']} questions)" if d["rows"] > 1 else ""
        lines.append(f"  {d['status'].ljust(width)}  {d['source_uri']}{part}")
        lines.append(f"  {' ' * width}  {', '.join(d['error_kinds']) or '-'}: {_short(d['error']) or '(no message)'}")
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit:,} more")
    return lines


def staged_summary(paths: layout.RunPaths) -> dict[str, Any]:
    """What an unfinished run has written so far: files, rows, pages, documents and error kinds of
    its staged page files (a few columns read), and the files that do not read (damaged or foreign copies)."""
    files = fileio.list_files(paths.staging("pages"))
    kinds: Counter = Counter()
    pages, documents, unreadable, rows = set(), set(), [], 0
    for path in files:
        try:
            t = fileio.read_parquet(path, ["source_uri", "page_index", "error_kind"])
        except (pa.ArrowInvalid, OSError) as exc:
            unreadable.append(f"{path.rsplit('/', 1)[1]}: {_short(exc, 120)}")
            continue
        rows += t.num_rows
        uris, idx = t.column("source_uri").to_pylist(), t.column("page_index").to_pylist()
        documents.update(uris)
        pages.update(zip(uris, idx))
        kinds.update(k for k in t.column("error_kind").to_pylist() if k)
    return {"files": len(files), "rows": rows, "pages": len(pages), "documents": len(documents),
            "error_kinds": dict(kinds), "unreadable": unreadable,
            "commit_started": bool(fileio.list_files(paths.staging("documents"))
                                   or fileio.list_files(paths.manifest)),
            "quarantined": len(fileio.list_files(paths.quarantine))}


def show(out: str, run_id: str, limit: int = FAILED_LIMIT) -> str:
    """One run: its summary, then its failed documents (committed), or what it has staged (unfinished)."""
    paths = layout.RunPaths(out, run_id)
    marker = output.marker(out, run_id)
    if marker is None:
        job = fileio.read_json(paths.job)
        if job is None and run_id not in fileio.list_dirs(f"{out.rstrip('/')}/{layout.RECORD}"):
            raise FileNotFoundError(f"no run {run_id} under {out} (`docintel runs {out}` lists them)")
        return _show_unfinished(out, run_id, job, staged_summary(paths), _listed(paths))
    summary = RunSummary.from_marker(marker)
    lines = [summary.render(), f"  committed  {_when(marker.get('committed_at'))}"]
    bad, counts = failed_documents(output.read_documents(out, run_id))
    return "\n".join(lines + _render_failed(bad, counts, limit))


def _show_unfinished(out: str, run_id: str, job: dict | None, staged: dict[str, Any], listed: int | None) -> str:
    facts = _job_facts(job)
    lines = [f"run {run_id}  NOT COMMITTED: its rows are not in {out.rstrip('/')}/pages yet"]
    if job is None:
        lines.append("  job.json   missing: the run's record is incomplete (it may never have started)")
    else:
        lines += [f"  task       {facts.get('task') or '-'}", f"  model      {facts.get('model') or '-'}",
                  f"  started    {_when(facts.get('started_at'))}"]
    lines += [f"  listed     {_n(listed)} documents",
              f"  staged     {staged['files']:,} files: {staged['rows']:,} rows, {staged['pages']:,} pages of "
              f"{staged['documents']:,} documents",
              f"  errors     {_kinds(staged['error_kinds'])}"]
    if staged["commit_started"]:
        lines.append("  commit     started, not finished (document table or manifest written, no _SUCCESS)")
    if staged["quarantined"]:
        lines.append(f"  quarantine {staged['quarantined']} unreadable staged file(s) moved aside")
    for bad in staged["unreadable"][:10]:
        lines.append(f"  unreadable {bad}")
    lines.append(f"finish it with the same spec and inputs: docintel run SPEC ... --output {out} --resume {run_id}")
    return "\n".join(lines)


def runs_json(infos: list[RunInfo]) -> str:
    return json.dumps([r.as_dict() for r in infos], indent=1, default=str)


__all__ = ["RunInfo", "run_info", "list_runs", "render_runs", "runs_json", "show", "staged_summary",
           "failed_documents"]

"""`docintel runs` and `docintel show` (pipeline/browse/runs.py) on run folders written here in the exact
layout of pipeline/store/layout.py, with rows of the declared shapes (rows.PAGE_TABLE, DOCUMENT_TABLE,
MANIFEST, LISTED): committed runs, an unfinished one with staged files (one of them truncated), on
a local folder and on S3 (moto on 127.0.0.1), through the functions and through the CLI. No engine.

The builders below (`page_row`, `doc_row`, `write_committed`, `write_unfinished`) are shared with
tests/test_review.py.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import harness

from pipeline.browse import runs
from pipeline.store import fileio, layout, output, writer
from pipeline.core.config import JobSpec
from pipeline.commit.identity import fingerprint
from pipeline.core.rows import DOCUMENT_TABLE, LISTED, MANIFEST, PAGE_TABLE
from pipeline.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
MODEL = "mistralai/Mistral-Small-3.2-24B-Instruct-2506"
UTC = dt.timezone.utc


def _t(day: int, hour: int = 9) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, 0, tzinfo=UTC)


def doc_id(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:32]


def page_row(run_id: str, uri: str, page_index: int | None, question: str | None = "What is the total?",
             **kw) -> dict:
    """A page-table row; valid unless it has an error_kind."""
    row = dict(run_id=run_id, doc_id=doc_id(uri), source_uri=uri, page_index=page_index, page_count=1, task="docvqa",
               question=question, valid=not kw.get("error_kind"), attempts=0 if kw.get("error_kind") else 1,
               model_id=MODEL, prompt_version="p1/docvqa-1", created_at=_t(14), prompt_tokens=900, output_tokens=12,
               request_questions=1)
    row.update(kw)
    return PAGE_TABLE.row(row)


def doc_row(run_id: str, uri: str, status: str = "ok", question: str | None = "What is the total?", **kw) -> dict:
    row = dict(run_id=run_id, doc_id=doc_id(uri), source_uri=uri, task="docvqa", question=question, status=status,
               model_id=MODEL, prompt_version="p1/docvqa-1", created_at=_t(14))
    row.update(kw)
    return DOCUMENT_TABLE.row(row)


def write_job(out: str, run_id: str, uris: list[str], started: dt.datetime) -> layout.RunPaths:
    """job.json and inputs.parquet as run._start_record writes them."""
    paths = layout.RunPaths(out, run_id)
    spec = JobSpec()
    fileio.write_table(paths.inputs, LISTED.table([LISTED.row(source_uri=u, questions=[]) for u in uris]))
    fileio.write_json(paths.job, {"run_id": run_id, "spec": spec.redacted(),
                                  "fingerprint": fingerprint(spec, get_task("docvqa", spec.task)),
                                  "started_at": started.isoformat()})
    return paths


def _write_pages(directory: str, rows: list[dict]) -> None:
    fileio.write_table(f"{directory}/{writer.file_name(rows)}", PAGE_TABLE.table(rows))


def write_committed(out: str, run_id: str, pages: list[dict], docs: list[dict], started: dt.datetime,
                    committed: dt.datetime, seconds: float = 10.0) -> dict:
    """A committed run: tables in place, manifest, and _SUCCESS with the counts commit._count sums."""
    uris = list(dict.fromkeys([r["source_uri"] for r in pages] + [d["source_uri"] for d in docs]))
    paths = write_job(out, run_id, uris, started)
    if pages:
        _write_pages(paths.pages, pages)
    fileio.write_table(f"{paths.documents}/part-0.parquet", DOCUMENT_TABLE.table(docs))
    skipped = {d["source_uri"] for d in docs if d["status"] == "skipped_unchanged"}
    manifest = []
    for uri in uris:
        rows = [r for r in pages if r["source_uri"] == uri]
        kinds = sorted({r["error_kind"] for r in rows if r["error_kind"]})
        manifest.append(MANIFEST.row(source_uri=uri, doc_id=doc_id(uri), rows=len(rows),
                                     valid_rows=sum(r["valid"] for r in rows), error_kinds=kinds,
                                     pages=len({r["page_index"] for r in rows}),
                                     status="skipped_unchanged" if uri in skipped else "failed" if kinds else "ok"))
    fileio.write_table(f"{paths.manifest}/part-0.parquet", MANIFEST.table(manifest))
    done = [r for r in pages if r["source_uri"] not in skipped]
    marker = {"run_id": run_id, "output": out, "task": "docvqa", "model": MODEL, "device": "cuda",
              "documents_listed": len(uris), "documents": len(uris) - len(skipped), "skipped_unchanged": len(skipped),
              "pages": len({(r["source_uri"], r["page_index"]) for r in done}), "rows": len(done),
              "valid_rows": sum(r["valid"] for r in done), "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in done),
              "output_tokens": sum(r["output_tokens"] or 0 for r in done),
              "failures": dict(Counter(r["error_kind"] for r in done if r["error_kind"])),
              "seconds": seconds, "committed_at": committed.isoformat()}
    fileio.write_json(paths.success, marker)
    return marker


def write_unfinished(out: str, run_id: str, batches: list[list[dict]], listed: list[str], started: dt.datetime,
                     truncated: bool = False) -> layout.RunPaths:
    """A run killed while it ran: job.json, inputs, staged page files (and a half-written one)."""
    paths = write_job(out, run_id, listed, started)
    for rows in batches:
        _write_pages(paths.staging("pages"), rows)
    if truncated:
        sink = fileio.read_bytes(fileio.list_files(paths.staging("pages"))[0])
        fileio.write_atomic(f"{paths.staging('pages')}/part-truncated.parquet", sink[: len(sink) // 2])
    return paths


# ---- the scenario ------------------------------------------------------------------------------

Q2 = "What is the date?"
LONG_ERROR = "cannot open PDF: " + "syntax error in xref " * 40


def build_output(out: str) -> None:
    """nightly-9 (clean), nightly-10 (failures of every shape), 2026-03-15-a (unfinished). By name
    the order would be 2026-..., nightly-10, nightly-9: the listing must go by time."""
    d = f"{out.rstrip('/')}/docs"
    p9 = [page_row("nightly-9", f"{d}/a.pdf", i, q) for i in (0, 1) for q in ("What is the total?", Q2)]
    p9 += [page_row("nightly-9", f"{d}/b.png", 0, q) for q in ("What is the total?", Q2)]
    docs9 = [doc_row("nightly-9", f"{d}/{n}", question=q)
             for n in ("a.pdf", "b.png") for q in ("What is the total?", Q2)]
    write_committed(out, "nightly-9", p9, docs9, _t(13), _t(13, 10), seconds=12.0)

    r = "nightly-10"
    p10 = [page_row(r, f"{d}/a.pdf", 0), page_row(r, f"{d}/a.pdf", 0, Q2),
           page_row(r, f"{d}/broken.pdf", None, None, error_kind="corrupt_pdf", error=LONG_ERROR),
           page_row(r, f"{d}/partial.pdf", 0), page_row(r, f"{d}/partial.pdf", 0, Q2),
           page_row(r, f"{d}/partial.pdf", 1), page_row(r, f"{d}/partial.pdf", 1, Q2, error_kind="engine_error",
                                                        error="engine died\nTraceback: ..."),
           page_row(r, f"{d}/missing.pdf", None, None, error_kind="not_found", error="cannot read: No such file")]
    docs10 = [doc_row(r, f"{d}/a.pdf"), doc_row(r, f"{d}/a.pdf", question=Q2),
              doc_row(r, f"{d}/broken.pdf", "failed", error_kinds=["corrupt_pdf"], error=LONG_ERROR),
              doc_row(r, f"{d}/broken.pdf", "failed", Q2, error_kinds=["corrupt_pdf"], error=LONG_ERROR),
              doc_row(r, f"{d}/partial.pdf"),
              doc_row(r, f"{d}/partial.pdf", "partial", Q2, error_kinds=["engine_error"],
                      error="engine died\nTraceback: ..."),
              doc_row(r, f"{d}/missing.pdf", "failed", error_kinds=["not_found"], error="cannot read: No such file"),
              doc_row(r, f"{d}/same.pdf", "skipped_unchanged",
                      error="same content, same job as in committed run nightly-9")]
    write_committed(out, r, p10, docs10, _t(14), _t(14, 11), seconds=4.0)

    u = "2026-03-15-a"
    write_unfinished(out, u, [[page_row(u, f"{d}/a.pdf", 0), page_row(u, f"{d}/a.pdf", 1)],
                              [page_row(u, f"{d}/c.pdf", 0, error_kind="render_timeout", error="page took 61 s")]],
                     [f"{d}/a.pdf", f"{d}/b.png", f"{d}/c.pdf"], _t(15), truncated=True)


@pytest.fixture(scope="module")
def local_out(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("out"))
    build_output(out)
    return out


def _columns_aligned(table: str) -> None:
    """Every cell starts (left-aligned) or ends (right-aligned numbers) where its header does."""
    lines = table.splitlines()
    head = lines[0]
    for name in ("RUN", "STATE", "COMMITTED/STARTED", "TASK", "FAILURES", "MODEL"):
        at = head.index(name)
        for line in lines[1:-1]:
            assert (at == 0 or line[at - 2:at] == "  ") and line[at] != " ", (name, line)
    for name in ("DOCS", "PAGES", "ROWS", "PAGES/S"):
        end = head.index(name + " ") + len(name) if name != "PAGES" else head.index(" PAGES ") + 6
        for line in lines[1:-1]:
            assert line[end - 1] != " " and line[end] == " ", (name, line)


def check_listing(out: str) -> None:
    infos = runs.list_runs(out)
    assert [i.run_id for i in infos] == ["nightly-9", "nightly-10", "2026-03-15-a"]
    nine, ten, unfinished = infos
    assert (nine.committed, nine.documents, nine.pages, nine.rows, nine.failures, nine.pages_per_s) == \
        (True, 2, 3, 6, {}, 0.25)
    assert (ten.documents, ten.pages, ten.rows, ten.valid_rows) == (4, 5, 8, 5)
    assert ten.failures == {"corrupt_pdf": 1, "engine_error": 1, "not_found": 1} and ten.pages_per_s == 1.25
    assert (unfinished.committed, unfinished.documents, unfinished.staged_files, unfinished.task, unfinished.model) \
        == (False, 3, 3, "docvqa", MODEL)
    assert unfinished.started_at.startswith("2026-03-15T09:00") and unfinished.committed_at is None
    table = runs.render_runs(infos, out)
    _columns_aligned(table)
    lines = table.splitlines()
    assert lines[2].split()[:4] == ["nightly-10", "committed", "2026-03-14", "11:00:00Z"]
    assert "corrupt_pdf=1 engine_error=1 not_found=1" in lines[2] and lines[2].endswith(MODEL)
    assert "unfinished (3 staged)" in lines[3] and "2026-03-15 09:00:00Z" in lines[3]
    assert lines[-1].startswith(f"3 runs under {out}: 2 committed, 1 unfinished")


def check_show(out: str) -> None:
    text = runs.show(out, "nightly-10")
    assert text.startswith("run nightly-10  task=docvqa  engine on cuda")
    assert "  rows       8  valid 5  failed 3" in text and "  committed  2026-03-14 11:00:00Z" in text
    assert "documents   failed 2  ok 1  partial 1  skipped_unchanged 1" in text
    lines = text.splitlines()
    at = lines.index("failed documents (3; failed first):")
    listed = lines[at + 1:]
    # failed before partial, one entry per document (broken.pdf failed for both questions), skipped not listed
    docs = f"{out.rstrip('/')}/docs"
    assert listed[0] == f"  failed   {docs}/broken.pdf  (2 of 2 questions)"
    assert listed[1].strip().startswith("corrupt_pdf: cannot open PDF: syntax error") and listed[1].endswith("…")
    assert len(listed[1]) < 340  # the message is cut
    assert listed[2] == f"  failed   {docs}/missing.pdf"
    assert listed[3] == "           not_found: cannot read: No such file"
    assert listed[4] == f"  partial  {docs}/partial.pdf  (1 of 2 questions)"
    assert listed[5].strip() == "engine_error: engine died Traceback: ..."  # one line, whitespace collapsed
    assert "same.pdf" not in text
    short = runs.show(out, "nightly-10", limit=1).splitlines()
    assert short[-1] == "  ... and 2 more" and len(short) == at + 4
    assert "no failed documents" in runs.show(out, "nightly-9")

    text = runs.show(out, "2026-03-15-a")
    assert text.startswith(f"run 2026-03-15-a  NOT COMMITTED: its rows are not in {out.rstrip('/')}/pages yet")
    assert "  listed     3 documents" in text
    assert "  staged     3 files: 3 rows, 3 pages of 2 documents" in text  # the truncated file counts as a file
    assert "  errors     render_timeout=1" in text
    assert "  unreadable part-truncated.parquet: " in text
    assert text.splitlines()[-1] == (f"finish it with the same spec and inputs: docintel run SPEC ... --output {out} "
                                     "--resume 2026-03-15-a")
    with pytest.raises(FileNotFoundError, match="no run nope"):
        runs.show(out, "nope")
    # what `show` read is what output.py reads: the committed tables only
    assert output.committed_runs(out) == ["nightly-9", "nightly-10"]


def test_runs_local(local_out):
    check_listing(local_out)


def test_show_local(local_out):
    check_show(local_out)


def test_empty_output(tmp_path):
    assert runs.list_runs(str(tmp_path / "nothing")) == []
    assert runs.render_runs([], "X") == "no runs under X"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=dict(os.environ, **(env or {})))


def test_cli_local(local_out):
    done = cli("runs", local_out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == runs.render_runs(runs.list_runs(local_out), local_out)
    done = cli("show", local_out, "nightly-10", "--limit", "2")
    assert done.returncode == 0 and "  ... and 1 more" in done.stdout, done.stderr
    done = cli("show", local_out, "nope")
    assert done.returncode == 2 and "no run nope" in done.stderr
    import json
    listed = json.loads(cli("runs", local_out, "--json").stdout)
    assert [r["run_id"] for r in listed] == ["nightly-9", "nightly-10", "2026-03-15-a"]


# ---- S3 ----------------------------------------------------------------------------------------

S3_ENV = {"AWS_ACCESS_KEY_ID": "AKIATESTKEYID000", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
          "DOCINTEL_S3_CONNECT_TIMEOUT_S": "2", "DOCINTEL_S3_REQUEST_TIMEOUT_S": "5"}


@pytest.fixture(scope="module")
def s3_out():
    """moto in server mode (as tests/test_s3_faults.py starts it), a bucket, the scenario under a prefix."""
    import boto3

    saved = {k: os.environ.get(k) for k in [*S3_ENV, "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"]}
    with harness.moto_server() as url:
        os.environ.update(S3_ENV, AWS_ENDPOINT_URL=url)
        os.environ.pop("AWS_ENDPOINT_URL_S3", None)
        os.environ.pop("AWS_PROFILE", None)
        try:
            boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="results")
            out = "s3://results/team a/out"  # a space in the key: kept verbatim
            build_output(out)
            yield out, url
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def test_runs_and_show_on_s3(s3_out):
    out, _ = s3_out
    check_listing(out)
    check_show(out)


def test_cli_on_s3(s3_out):
    out, url = s3_out
    env = {k: v for k, v in S3_ENV.items()}
    env["AWS_ENDPOINT_URL"] = ""  # the endpoint comes from the flag, as a user passes it
    done = cli("runs", out, "--endpoint-url", url, env=env)
    assert done.returncode == 0, done.stderr
    assert "nightly-10" in done.stdout and "unfinished (3 staged)" in done.stdout
    done = cli("show", out, "nightly-10", "--endpoint-url", url, env=env)
    assert done.returncode == 0, done.stderr
    assert f"failed   {out}/docs/broken.pdf  (2 of 2 questions)" in done.stdout


def test_review_reads_s3_outputs(s3_out, tmp_path):
    """`docintel review` selects from an S3 page table too (the sources there do not exist: each
    card says so instead of a picture)."""
    from pipeline.browse import review

    out, _ = s3_out
    sel = review.write_review(out, str(tmp_path / "review.html"), where="error_kind IS NOT NULL")
    assert sel.run_id == "nightly-10" and (sel.matching, sel.total) == (3, 8)
    assert [r["error_kind"] for r in sel.rows] == ["corrupt_pdf", "not_found", "engine_error"]  # by source
    text = (tmp_path / "review.html").read_text(encoding="utf-8")
    assert text.count('<article class="card"') == 3 and "source not readable now: not_found" in text

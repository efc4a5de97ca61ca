"""The first ten minutes: `docintel demo` on the CPU, as the README's first command runs it (the real
engine end to end for docvqa, chartqa and fields, with the shipped tiny reader on the generated pages
it reads: the answers are right, so their scores, boxes, confidences and the document table's typed
fields are checked against the pages' gold); the README's demo-model command on the shipped samples,
verbatim; and a quiet terminal: no vLLM INFO lines in a default run's output, while the log folder the
summary names holds them."""
import json
import re
import shlex
import subprocess
from pathlib import Path

import duckdb
import pytest

import harness
from pipeline.store import output

pytestmark = pytest.mark.engine
README = (harness.REPO / "README.md").read_text()
PAGES = harness.REPO / "models" / "tiny-reader" / "pages"  # the reader's pages and their gold (tools/reader/goldset.py)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(harness.command("demo", "--output", str(tmp_path / "demo")), capture_output=True, text=True,
                          timeout=1500, env=harness.env(XDG_CACHE_HOME=str(tmp_path / "cache")), cwd=tmp_path)
    return tmp_path, proc


def test_docintel_demo_shows_the_whole_product(demo):
    tmp_path, proc = demo
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    assert "TEST INSTRUMENT, NOT A DOCUMENT MODEL" in text and "Where to look" in text
    for task in ("docvqa", "chartqa", "fields"):
        out = str(tmp_path / "demo" / task)
        assert output.committed_runs(out) == [f"demo-{task}"]
        assert output.read_pages(out).num_rows and output.read_documents(out).num_rows
    assert (tmp_path / "demo" / "docvqa" / "_eval" / "demo-docvqa" / "report.html").is_file()
    review = (tmp_path / "demo" / "review.html").read_text()
    assert "<html" in review and "invoice-900102.pdf" in review
    # quiet: docintel's lines, not vLLM's or Ray's (README, "Watching a run": the one line of Ray's left)
    assert not re.search(r"\bINFO\b.*\[(core|llm|model|gpu_model_runner|cpu_model_runner)", text)
    assert "Token authentication" not in text and "Progress bars disabled" not in text
    assert "docintel: engine ready in" in text


def _gold(task: str) -> list[dict]:
    return [json.loads(line) for line in (PAGES / f"{task}.jsonl").read_text().splitlines()]


def test_fields_become_typed_columns_of_the_document_table(demo):
    """The reader's invoices: the document table's typed columns hold what is printed on them."""
    from pipeline.evaluation.metrics import field_scores

    tmp_path, proc = demo
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = tmp_path / "demo" / "fields"
    got = duckdb.sql(f"select source_uri, total, invoice_date, line_items, field_errors, field_details "
                     f"from read_parquet('{out}/documents/*/*.parquet') where total > -1e300 or total is null")
    types = dict(zip(got.columns, got.types))
    assert str(types["total"]) == "DOUBLE" and str(types["invoice_date"]) in ("DATE", "VARCHAR")
    assert str(types["line_items"]).startswith("STRUCT") and str(types["line_items"]).endswith("[]")
    assert len(got.fetchall()) == 3  # one row per document: the reader's three invoices
    gold = {Path(g["document"]).name: g["fields"] for g in _gold("fields")}
    docs = output.read_documents(str(out), "demo-fields").to_pylist()
    scores = [field_scores(json.loads(d["answer_json"]), gold[Path(d["source_uri"]).name]) for d in docs]
    # recorded on 29 held-out invoices: field F1 0.997, every field right on 0.966 of them
    assert sum(s["f1"] for s in scores) / len(scores) >= 0.9 and sum(s["exact_match"] for s in scores) >= 2, scores
    for doc, s in zip(docs, scores):
        want = gold[Path(doc["source_uri"]).name]
        if s["exact_match"]:  # a right answer, typed: a float, a date, a string, a list of structs
            assert doc["total"] == want["total"] and doc["invoice_number"] == want["invoice_number"]
            assert str(doc["invoice_date"]) == want["invoice_date"] and not doc["field_errors"]
            assert [item["amount"] for item in doc["line_items"]] == [item["amount"] for item in want["line_items"]]
        for path in doc["field_errors"] or []:  # a value that did not convert is null, and says why
            assert doc[path[0].split(".")[0]] is None or "." in path[0]


def test_the_readers_answers_are_right_found_where_they_are_printed_and_rolled_up(demo):
    """docvqa on the reader's pages: the eval report's score, each right answer's box over the words
    printed on the page, its confidence, and the document table's row for it."""
    import pymupdf
    import pyarrow.parquet as pq

    tmp_path, proc = demo
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = tmp_path / "demo" / "docvqa"
    scores = pq.read_table(out / "_eval" / "demo-docvqa" / "scores.parquet").to_pylist()
    assert len(scores) == len(_gold("docvqa")) == 16
    assert sum(s["score"] for s in scores) / len(scores) >= 0.9  # recorded: ANLS 0.9996 on 142 held-out questions
    right = {(Path(s["source_uri"]).name, s["question"]) for s in scores if s["correct"]}
    rows = {(Path(r["source_uri"]).name, r["question"]): r for r in output.read_pages(str(out), "demo-docvqa").to_pylist()}
    for key in right:
        row = rows[key]
        with pymupdf.open(row["source_uri"]) as doc:
            w, h = doc[0].rect.width, doc[0].rect.height
            printed = [(r.x0 / w, r.y0 / h, r.x1 / w, r.y1 / h) for r in doc[0].search_for(row["answer_text"])]
        assert row["grounded"] is True and printed, row
        box = row["answer_boxes"][0]
        covered = max((min(box["x1"], x1) - max(box["x0"], x0)) * (min(box["y1"], y1) - max(box["y0"], y0))
                      / ((x1 - x0) * (y1 - y0)) for x0, y0, x1, y1 in printed)
        assert covered >= 0.5, (row["answer_text"], box, printed)
    confidences = [rows[key]["confidence"] for key in right]
    assert sum(confidences) / len(confidences) >= 0.9  # right answers, confident ones (recorded: 0.997 mean over 142)
    # the document table: one row per document and question, each page's answer rolled up (one page each)
    docs = output.read_documents(str(out), "demo-docvqa").to_pylist()
    assert len(docs) == len(rows)
    for doc in docs:
        page = rows[Path(doc["source_uri"]).name, doc["question"]]
        assert (doc["answer_text"], doc["status"], doc["pages_answered"]) == (page["answer_text"], "ok", 1)
        assert doc["answer_boxes"] == page["answer_boxes"] and doc["grounded"] == page["grounded"]


def test_the_readme_demo_model_command_runs_on_the_samples_and_keeps_vllm_logs_in_the_log_folder(tmp_path):
    line = next(m.group(1) for m in re.finditer(r"`(docintel demo-model [^`]+)`", README) if "--input samples" in m.group(1))
    for part in line.split("&&"):
        argv = shlex.split(part.strip())
        assert argv[0] == "docintel"
        # run from another folder, as a user would: the repository's own paths made absolute
        argv = [str(harness.REPO / a) if a == "samples" or a.startswith("jobs/") else a for a in argv[1:]]
        if argv[0] == "run":
            argv += ["--set", "render.max_side=512", "--set", "engine.max_model_len=8192"]  # CPU: minutes, not hours
        proc = subprocess.run(harness.command(*argv), capture_output=True, text=True, timeout=1200, env=harness.env(),
                              cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-4000:]
    text = proc.stdout + proc.stderr
    assert "INFO" not in text and "Triton" not in text, text[-3000:]
    logs = Path(re.search(r"logs\s+(\S+)", proc.stdout).group(1))
    held = "".join(p.read_text(errors="replace") for p in logs.glob("worker-*") if p.is_file())
    assert "INFO" in held and "EngineCore" in held  # vLLM's own log lines, in the log folder
    assert output.read_pages(str(tmp_path / "out")).num_rows >= 5

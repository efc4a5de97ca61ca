"""The shipped tiny reader (models/tiny-reader) through `docintel eval` on the real CPU engine, in one
run: held-out generated pages it reads; the same pages blank and turned 90 degrees, which it cannot
read; and a two-page document asked questions without a page, whose answers are on its first page
only, so the document table's roll-up must take them from there. A pipeline that sends the model a
blank or rotated image, mixes up pages, or rolls up the wrong page fails it.

The bars come from the recorded scores (models/tiny-reader/README.md, bench/results/
2026-12-06-reader-score-cpu.json, 60 held-out pages each): docvqa ANLS 0.9996 on the pages, 0.004
blank, 0.000 rotated. A slice of 8 pages here: at least 0.9 on the pages, at most 0.2 on each twin.
"""
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pymupdf
import pytest

import harness

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/

pytestmark = pytest.mark.engine
READER = harness.REPO / "models" / "tiny-reader"
SEED = 900_300  # held out: training draws its page seeds from random.Random streams; score.py uses 900,000-900,059
INVOICE, REPORT = 900_300, 900_312  # the two-page document: an invoice, then a report (no total, no number)


def _gold(tmp_path: Path) -> list[dict]:
    from tools.reader import goldset, pagegen

    gold = []
    for variant in ("pages", "blank", "rotate"):
        paths = goldset.write(tmp_path / variant, pages=8, seed=SEED, broken=None if variant == "pages" else variant)
        for line in paths["docvqa"].read_text().splitlines():
            item = json.loads(line)
            gold.append(dict(item, document=f"{variant}/{item['document']}"))
    invoice, report = pagegen.make_page(INVOICE), pagegen.make_page(REPORT)
    with pymupdf.open() as two:
        for page in (invoice, report):
            with pymupdf.open(stream=page.pdf, filetype="pdf") as src:
                two.insert_pdf(src)
        two.save(tmp_path / "two-pages.pdf")
    on_the_invoice = dict(invoice.docvqa)
    for question in ("What is the total amount?", "What is the invoice number?"):
        assert dict(report.docvqa)[question] == pagegen.UNANSWERABLE
        gold.append({"document": "two-pages.pdf", "question": question, "answers": [on_the_invoice[question]["answer"]]})
    return gold


def test_the_reader_reads_held_out_pages_not_their_blank_or_turned_twins_and_rolls_up_the_right_page(
        tmp_path, ray_cluster):
    from tools.reader import pagegen

    from pipeline.store import output

    gold = _gold(tmp_path)
    (tmp_path / "gold.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gold))
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "eval", str(tmp_path / "gold.jsonl"),
                           "--task", "docvqa", "--model", str(READER), "--output", str(tmp_path / "out"),
                           "--run-id", "reader", "--address", ray_cluster, "--set", "ray.progress_bars=false",
                           "--set", "engine.separate_core=false"],  # the page size: the folder's (560 px)
                          capture_output=True, text=True, timeout=900, env=harness.env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "anls" in proc.stdout and "report.html" in proc.stdout
    html = (tmp_path / "out" / "_eval" / "reader" / "report.html").read_text()
    assert "<svg" in html and "docvqa" in html
    rows = pq.read_table(tmp_path / "out" / "_eval" / "reader" / "scores.parquet").to_pylist()
    assert len(rows) == len(gold)
    assert {max(r["width"], r["height"]) for r in rows if r["width"]} == {560}  # docintel_model.json's render, unasked
    mean = {v: [r["score"] for r in rows if f"/{v}/docs/" in r["source_uri"]] for v in ("pages", "blank", "rotate")}
    mean = {v: sum(s) / len(s) for v, s in mean.items()}
    assert mean["pages"] >= 0.9, mean
    assert mean["blank"] <= 0.2 and mean["rotate"] <= 0.2, mean
    # reliability by bin (the report's "confidence against correctness"): the answers at 0.9 or more are
    # right far more often than those under 0.5 (recorded on a run of this slice: 60 % against 0 %; not
    # 100 %, because the reader answers blank pages from the layout it expects, and confidently)
    top = [r["correct"] for r in rows if r["confidence"] is not None and r["confidence"] >= 0.9]
    low = [r["correct"] for r in rows if r["confidence"] is not None and r["confidence"] < 0.5]
    assert top and low and sum(top) / len(top) >= sum(low) / len(low) + 0.3, (top, low)
    assert all(r["confidence"] >= 0.5 for r in rows if r["correct"] and "/pages/docs/" in r["source_uri"])

    # The two-page document: scored on the document table (no page in the gold); every question asked
    # of both pages; the report page says the answer is not there, the roll-up takes the invoice's.
    two = [r for r in rows if r["source_uri"].endswith("two-pages.pdf")]
    assert [r["page_index"] for r in two] == [None, None] and all(r["correct"] for r in two), two
    pages = [r for r in output.read_pages(str(tmp_path / "out"), "reader").to_pylist()
             if r["source_uri"].endswith("two-pages.pdf")]
    assert sorted((r["page_index"], r["question"]) for r in pages) == sorted(
        (i, g["question"]) for i in (0, 1) for g in gold if g["document"] == "two-pages.pdf")
    assert all(r["answer_text"] == pagegen.UNANSWERABLE["answer"] for r in pages if r["page_index"] == 1), pages
    documents = [d for d in output.read_documents(str(tmp_path / "out"), "reader").to_pylist()
                 if d["source_uri"].endswith("two-pages.pdf")]
    assert [(d["page_index"], d["status"], d["page_count"]) for d in documents] == [(0, "ok", 2)] * 2

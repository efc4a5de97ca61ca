"""Pages with nothing to read never reach the engine (pipeline/ingest/blank.py): found as they are
rendered, given blank_page rows (one per question, no answer, no engine request) that do not vote and
are no failure. The gate both ways, on the detector and on the split stage; the rows through the
request, answer and roll-up stages; and one run with the engine double. The full measurement, on
every corpus and both render settings: bench/bench_blank.py (bench/RESULTS.md, "Blank pages")."""
import datetime as dt
import json
import os

import numpy as np
import pymupdf
import pytest

import blankgen
import harness
from docgen import make_pdf, make_tiff
from pipeline.answers.answers import answer_rows
from pipeline.commit.manifest import document_status
from pipeline.commit.rollup import document_rows
from pipeline.core.config import BlankPageSpec, RenderSpec, TaskSpec
from pipeline.core.rows import ENGINE_OUTPUT, PAGE
from pipeline.ingest import blank
from pipeline.ingest.pages import split_document
from pipeline.ingest.render_guard import split_guarded
from pipeline.ingest.request import request_row
from pipeline.ingest.sources import content_id
from pipeline.job.summary import RunSummary
from pipeline.store import output
from pipeline.tasks import get_task
from tools.reader import curriculum, pagegen

READER = RenderSpec(max_side=560, dpi=72)  # models/tiny-reader/docintel_model.json
GATE = BlankPageSpec()


def _doc(data: bytes) -> dict:
    return {"doc_id": content_id(data), "source_uri": "mem://x", "questions": [], "data": data, "error_kind": None,
            "error": None}


def _kinds(data: bytes, spec: RenderSpec = RenderSpec()) -> list[str | None]:
    return [r["error_kind"] for r in split_document(_doc(data), spec)]


def _paper(h=800, w=600, level=235.0, noise=6.0, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(level, noise, (h, w))


def _gray(a: np.ndarray) -> np.ndarray:
    return np.clip(a, 0, 255).astype(np.uint8)


def test_only_a_page_number_is_no_text_to_read():
    for folio in (["7"], ["-", "12", "-"], ["Page", "3", "of", "12"], ["p.", "4"], ["xiv"], ["12/40"], [" "], []):
        assert not blank.text_to_read(folio), folio
    for text in (["Total:", "12.99"], ["Notes"], ["No"], ["Page", "3", "Total"], ["2026-03-14"], ["2026"], ["Page"],
                 ["Mix"]):
        assert blank.text_to_read(text), text


def test_paper_grain_a_lone_speck_and_a_staple_are_not_marks_a_word_is():
    gate = BlankPageSpec()
    paper = _paper()
    assert blank.ink_share(_gray(paper), gate) == 0.0  # grain: six noise deviations, not 24 levels
    specked = paper.copy()
    specked[np.random.default_rng(1).integers(0, 800, 40), np.random.default_rng(2).integers(0, 600, 40)] = 0
    assert blank.ink_share(_gray(specked), gate) == 0.0  # single dark pixels touch no other ink
    stapled = paper.copy()
    for i in range(60):  # a staple: 60 x 3 px at 30 degrees
        stapled[100 + i // 2:103 + i // 2, 100 + i] = 40
    assert blank.ink_share(_gray(stapled), gate) == 0.0
    lined = paper.copy()  # the same stroke, short: a mark (a dash of text is not a straight stroke)
    lined[100:103, 100:112] = 40
    assert blank.ink_share(_gray(lined), gate) > 0
    dark = 255 - paper  # light text on a dark page: the paper is the block's median, whichever way round
    dark[400:410, 100:300:4] = 240
    assert blank.ink_share(_gray(dark), gate) > gate.max_ink
    shaded = paper + np.linspace(-40, 40, 600)[None, :]  # light falling off across the page is paper
    assert blank.ink_share(_gray(shaded), gate) == 0.0


def test_the_ink_inside_a_page_numbers_boxes_does_not_count():
    gray = _gray(_paper(noise=0))
    gray[700:730, 280:320] = 0  # a number, large
    words = {"text": ["7"], "x0": [280 / 600], "y0": [700 / 800], "x1": [320 / 600], "y1": [730 / 800], "line": [0]}
    assert blank.blank_reason(gray, words, GATE) is not None
    assert blank.blank_reason(gray, None, GATE) is None  # the same ink, no text layer: a mark
    assert blank.blank_reason(gray, dict(words, text=["Total"]), GATE) is None  # text to read


@pytest.mark.parametrize("kind", blankgen.NEAR_BLANK)
def test_pages_with_nothing_to_read_get_a_blank_page_row_without_an_image(kind):
    for size in (blankgen.LETTER, blankgen.READER_PORTRAIT):
        (row,) = split_document(_doc(blankgen.make(kind, 0, size, dpi=150)), RenderSpec())
        assert row["error_kind"] == "blank_page" and row["image"] is None, (kind, size, row["error"])
        assert row["width"] and row["height"] and "nothing to read" in row["error"]


def test_blank_twins_of_the_readers_pages_are_gated_at_its_render_and_the_gate_can_be_turned_off():
    page = pagegen.make_page(900_000)
    with pymupdf.open(stream=page.pdf, filetype="pdf") as src, pymupdf.open() as twin:
        twin.new_page(width=src[0].rect.width, height=src[0].rect.height)
        data = twin.tobytes()
    assert _kinds(data, READER) == ["blank_page"]
    (row,) = split_document(_doc(data), READER.model_copy(update={"blank_page": BlankPageSpec(enabled=False)}))
    assert row["error_kind"] is None and row["image"]


def test_sparse_pages_charts_scans_with_a_little_text_and_turned_pages_are_not_gated(tmp_path):
    pages = [blankgen.make(kind, 0, blankgen.LETTER, dpi=150) for kind in blankgen.SPARSE]
    pages += [curriculum.make_lines_page(seed, "strip" if seed == 3 else None).pdf for seed in range(4)]
    turned = pagegen.make_page(900_001)
    with pymupdf.open(stream=turned.pdf, filetype="pdf") as doc:
        doc[0].set_rotation(90)
        pages.append(doc.tobytes())
    pages.append(make_pdf(tmp_path / "chart.pdf", pages=2).read_bytes())  # page 2: a bar chart
    pages.append(make_tiff(tmp_path / "scan.tiff", frames=2).read_bytes())  # a line of small text on each
    for data in pages:
        for spec in (RenderSpec(), READER):
            rows = split_document(_doc(data), spec)
            assert {r["error_kind"] for r in rows} == {None}, (spec.max_side, [r["error"] for r in rows])


def test_the_jobs_guarded_split_gates_as_the_plain_one(tmp_path):
    invoice = make_pdf(tmp_path / "a.pdf", pages=1, chart=False).read_bytes()
    with pymupdf.open() as doc, pymupdf.open(stream=invoice, filetype="pdf") as src:
        doc.insert_pdf(src)
        doc.new_page()  # page 1: blank
        doc.insert_pdf(src)
        data = doc.tobytes()
    plain, guarded = split_document(_doc(data), RenderSpec()), split_guarded(_doc(data), RenderSpec())
    assert [r["error_kind"] for r in guarded] == [r["error_kind"] for r in plain] == [None, "blank_page", None]


NOW = dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc)


def _through_the_stages(task_name: str, questions: list[str]) -> list[dict]:
    """A blank page through the request stage, the engine actor's pass-through, and the answer stage."""
    task, spec = get_task(task_name, TaskSpec(name=task_name)), TaskSpec(name=task_name, questions=questions)
    page = PAGE.row(doc_id="d", source_uri="u", page_index=1, page_count=2, width=560, height=420, doc_format="pdf",
                    error_kind="blank_page", error="nothing to read")
    request = request_row(page, task, spec, None, 16384)
    assert request["prompts"] == [] and request["image_url"] is None  # nothing for the engine to do
    return answer_rows(ENGINE_OUTPUT.row(request, outputs=[]), task, "r", "m", NOW)


def test_a_blank_page_gets_a_row_per_question_with_no_answer_and_no_engine_cost():
    rows = _through_the_stages("docvqa", ["What is the total?", "What is the date?"])
    assert [r["question"] for r in rows] == ["What is the total?", "What is the date?"]
    for row in rows:
        assert (row["error_kind"], row["valid"], row["attempts"], row["answer_json"]) == ("blank_page", False, 0, None)
        assert row["prompt_tokens"] is None and row["output_tokens"] is None and row["width"] == 560
    (row,) = _through_the_stages("classify", [])  # a task without questions: one row, as its answers have
    assert row["question"] is None and row["error_kind"] == "blank_page"


def _answered(page: int, question: str, answer: str) -> dict:
    return {"doc_id": "d", "source_uri": "u", "page_index": page, "page_count": 2, "question": question,
            "answer_json": json.dumps({"answer": answer}), "answer_text": answer, "answer_number": None,
            "answer_unit": None, "confidence": 0.9, "answer_boxes": None, "grounded": None, "value_details": [],
            "valid": True, "error_kind": None, "error": None, "task": "docvqa", "model_id": "m", "prompt_version": "p"}


def test_blank_pages_do_not_vote_and_do_not_make_a_document_partial():
    task, base = get_task("docvqa"), {"run_id": "r", "model_id": "m", "prompt_version": "p", "created_at": NOW}
    blank_rows = _through_the_stages("docvqa", ["q"])
    (doc,) = document_rows(task, [_answered(0, "q", "42")] + blank_rows, base)
    assert (doc["status"], doc["answer_text"], doc["page_index"], doc["pages_answered"]) == ("ok", "42", 0, 1)
    assert doc["error_kinds"] == ["blank_page"]
    (doc,) = document_rows(task, blank_rows, base)  # nothing but blank pages: no answer, and why
    assert (doc["status"], doc["answer_json"], doc["error_kinds"]) == ("failed", None, ["blank_page"])
    assert document_status({None, "blank_page"}) == "ok" and document_status({"blank_page"}) == "ok"


def test_the_summary_counts_blank_pages_apart_from_failures():
    summary = RunSummary(run_id="r", output="o", task="docvqa", model="m", device="cpu", documents_listed=2,
                         documents=2, pages=3, skipped_unchanged=0, rows=6, valid_rows=3, failures={"engine_error": 1},
                         blank_pages=1, blank_rows=2)
    text = summary.render()
    assert "pages      3  (1 with nothing to read: not asked)" in text
    assert "rows       6  valid 3  blank 2  failed 1" in text and "failures   engine_error=1" in text


def test_a_blank_page_in_a_run_gets_its_rows_and_no_engine_request(tmp_path, demo_model, ray_cluster):
    """The engine double answers (tests/engine_double.py): the subject is which pages reach it."""
    folder, out = tmp_path / "docs", tmp_path / "out"
    folder.mkdir()
    invoice = make_pdf(tmp_path / "a.pdf", pages=1, chart=False).read_bytes()
    with pymupdf.open() as doc, pymupdf.open(stream=invoice, filetype="pdf") as src:
        doc.insert_pdf(src)
        doc.new_page()  # the back of the sheet
        doc.save(folder / "invoice.pdf")
    (folder / "back.jpg").write_bytes(blankgen.make("scan_jpeg", 1, dpi=150))
    questions = ["What is the total?", "What is the date?"]
    proc = harness.run("run", "--input", str(folder), "--output", str(out), "--model", demo_model, "--run-id", "r1",
                       *[a for q in questions for a in ("--question", q)], *harness.FAST, "--address", ray_cluster,
                       **harness.double())
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = harness.assert_exactly_once(out, "r1", {"invoice.pdf": 2, "back.jpg": 1}, questions)
    asked = [r for r in rows if r["error_kind"] is None]
    unasked = [r for r in rows if r["error_kind"] == "blank_page"]
    assert sorted((os.path.basename(r["source_uri"]), r["page_index"]) for r in unasked) == \
        [("back.jpg", 0)] * 2 + [("invoice.pdf", 1)] * 2
    assert {(r["source_uri"].endswith("invoice.pdf"), r["page_index"]) for r in asked} == {(True, 0)}
    assert all(r["attempts"] == 0 and r["prompt_tokens"] is None and r["raw_output"] is None for r in unasked)
    assert all(r["attempts"] >= 1 and r["prompt_tokens"] > 0 for r in asked)
    marker = output.marker(str(out), "r1")  # the run's tokens are the asked page's request's, no more
    assert marker["prompt_tokens"] == round(sum(r["prompt_tokens"] for r in asked) / len(questions))
    assert (marker["blank_pages"], marker["blank_rows"], marker["failures"]) == (2, 4, {})
    assert "(2 with nothing to read: not asked)" in proc.stdout

"""pipeline/evaluation/report.py: the numbers in each section, escaping, no external resources, well-formed HTML,
graceful empty/null input, and a real render in headless Chromium (skipped only without it)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from html_check import Balanced
from pipeline.evaluation.evaluate import METRIC, SCORES_SCHEMA
from pipeline.evaluation.report import render_report, write_report

# The schema the eval job writes: the report is tested on exactly what it will be given.
SCHEMA = SCORES_SCHEMA
SCRIPT = "<script>alert(1)</script>"
UNICODE = "Zoë 日本語 ☃ \u202e reversed"
HEADINGS = ["1. Headline", "2. Score by task", "3. Score by question type", "4. Score by page resolution",
            "5. Document types: confusion matrix", "6. Latency and tokens per request",
            "7. Worst-scoring questions", "8. Confidence against correctness"]
META = {"model": "mistralai/Mistral-Small-3.2-24B-Instruct-2506", "run_id": "eval-1", "date": "2025-06-30",
        "pages": 17, "seconds": 12.5, "pages_per_s": 1.36, "failures": {"timeout": 1}}


def _row(task, score, correct, n, **kw):
    row = {c: None for c in SCHEMA.names}
    row.update(run_id="eval-1", task=task, metric=METRIC[task], doc_id=f"d{n}", source_uri=f"/gold/{task}/{n}.png",
               page_index=0, question=f"{task} question {n}?", references='["ref"]', prediction="pred",
               score=score, correct=correct, valid=True)
    row.update(kw)
    return row


def make_scores() -> pa.Table:
    rows = [
        # docvqa: mean 0.75, all correct (ANLS > 0); rows 1-2 share a page and one request
        _row("docvqa", 1.0, True, 1, question_type="table", width=768, height=500, source_uri="/gold/p.png",
             latency_s=0.5, prompt_tokens=1000, output_tokens=10),
        _row("docvqa", 1.0, True, 2, question_type="form", width=768, height=500, source_uri="/gold/p.png",
             latency_s=0.5, prompt_tokens=1000, output_tokens=10),
        _row("docvqa", 0.5, True, 3, question_type="table", width=769, height=600,
             latency_s=1.0, prompt_tokens=1200, output_tokens=20),
        _row("docvqa", 0.5, True, 4, latency_s=1.5, prompt_tokens=1400, output_tokens=30),
        # chartqa: 1 correct, 1 wrong (a script), 1 invalid output, 1 error
        _row("chartqa", 1.0, True, 1, question_type="human", width=1280, height=720, prediction="12",
             latency_s=2.0, prompt_tokens=900, output_tokens=5),
        _row("chartqa", 0.0, False, 2, question_type="human", width=720, height=1281, prediction=SCRIPT,
             references='["<b>7</b>", "seven & more"]', latency_s=3.0, prompt_tokens=1100, output_tokens=15),
        _row("chartqa", 0.0, False, 3, question_type="augmented", width=1540, height=1000, prediction=None,
             valid=False),
        _row("chartqa", 0.0, False, 4, question_type="augmented", width=2000, height=1000, prediction=None,
             valid=False, error_kind="timeout"),
    ]
    gold = ["invoice", "invoice", "invoice", "letter", "letter", "form"]
    pred = ["invoice", "invoice", "letter", "letter", "letter", "invoice"]
    for n, (g, p) in enumerate(zip(gold, pred), 1):
        rows.append(_row("classify", float(g == p), g == p, n, width=1024, height=768, gold_doc_type=g,
                         predicted_doc_type=p, prediction=p, references=f'["{g}"]'))
    for n, s in enumerate([1.0, 0.9, 0.8, 0.6, 0.4, 0.2, 0.0, 0.1], 1):
        rows.append(_row("fields", s, s == 1.0, n, height=1100, references='[{"total": "12.00"}]',
                         prediction=f'{{"name": "{UNICODE}\x07"}}' if n == 7 else '{"total": "12.00"}',
                         question="Fields with \"quotes\" & 'apostrophes'" if n == 7 else None))
    return pa.Table.from_pylist(rows, schema=SCHEMA)


class Sections(Balanced):
    """Collects per h2 section the rows of its tables (cell texts); no script element."""

    def __init__(self):
        super().__init__()
        self.sections, self.current = {}, "head"
        self.h2, self.row, self.cell = None, None, None

    def start(self, tag, attrs):
        if tag == "script":
            self.errors.append("script element")
        if tag == "h2":
            self.h2 = ""
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = ""

    def end(self, tag):
        if tag == "h2":
            self.current, self.h2 = self.h2, None
        elif tag in ("td", "th") and self.row is not None:
            self.row.append(self.cell)
            self.cell = None
        elif tag == "tr":
            self.sections.setdefault(self.current, []).append(self.row)
            self.row = None

    def handle_data(self, data):
        if self.h2 is not None:
            self.h2 += data
        if self.cell is not None:
            self.cell += data


def parse(html_text: str) -> Sections:
    return Sections.check(html_text)


@pytest.fixture(scope="module")
def report() -> str:
    return render_report(make_scores(), "docintel eval: <mixed> run", META)


def test_sections_present_in_order(report):
    positions = [report.index(f"<h2>{h}</h2>") for h in HEADINGS]
    assert positions == sorted(positions)
    assert report.count("<svg") >= 7 and "<title>docintel eval: &lt;mixed&gt; run</title>" in report


def test_headline_and_task_numbers(report):
    s = parse(report).sections
    assert ["docvqa", "anls", "4", "75.0%", "100.0%", "0", "0"] in s[HEADINGS[0]]
    assert ["chartqa", "relaxed_accuracy", "4", "25.0%", "25.0%", "2", "1"] in s[HEADINGS[0]]
    assert ["fields", "field_f1", "8", "50.0%", "12.5%", "0", "0"] in s[HEADINGS[0]]
    assert ["classify", "accuracy", "6", "66.7%", "66.7%", "0", "0"] in s[HEADINGS[0]]
    assert ["all tasks", "accuracy, anls, field_f1, relaxed_accuracy", "22", "54.5%", "45.5%", "2", "1"] \
        in s[HEADINGS[0]]
    assert s[HEADINGS[1]][1:] == [["docvqa", "4", "75.0%", "100.0%"], ["chartqa", "4", "25.0%", "25.0%"],
                                  ["fields", "8", "50.0%", "12.5%"], ["classify", "6", "66.7%", "66.7%"]]
    assert ["run fact", "value"] in s["head"] and ["failures", "timeout=1"] in s["head"]
    assert ["pages_per_s", "1.36"] in s["head"]


def test_question_types_and_resolution(report):
    s = parse(report).sections
    qt = s[HEADINGS[2]]
    assert ["docvqa", "table", "2", "75.0%", "100.0%"] in qt
    assert ["docvqa", "form", "1", "100.0%", "100.0%"] in qt
    assert ["docvqa", "unspecified", "1", "50.0%", "100.0%"] in qt
    assert ["chartqa", "human", "2", "50.0%", "50.0%"] in qt and ["chartqa", "augmented", "2", "0.0%", "0.0%"] in qt
    assert ["fields", "unspecified", "8", "50.0%", "12.5%"] in qt
    assert s[HEADINGS[3]][1:] == [
        ["<=768 px", "2", "100.0%", "100.0%"],
        ["769-1024 px", "7", "64.3%", "71.4%"],   # docvqa 0.5 + classify 4/6
        ["1025-1280 px", "9", "55.6%", "22.2%"],  # chartqa 1.0 + fields (height only) 4.0
        ["1281-1540 px", "2", "0.0%", "0.0%"],
        [">1540 px", "1", "0.0%", "0.0%"],
        ["unknown size", "1", "50.0%", "100.0%"],
    ]
    assert "&lt;=768 px" in report  # in the SVG labels too


def test_confusion_matrix(report):
    s = parse(report).sections
    assert s[HEADINGS[4]][1:] == [["form", "1", "0", "0", "0.0%", "–"],
                                  ["invoice", "3", "3", "2", "66.7%", "66.7%"],
                                  ["letter", "2", "3", "2", "100.0%", "66.7%"]]
    assert "<title>gold invoice, predicted letter: 1</title>" in report
    assert "<title>gold invoice, predicted invoice: 2</title>" in report


def test_latency_counts_each_request_once(report):
    s = parse(report).sections
    assert s[HEADINGS[5]][1:] == [["latency (s)", "5", "0.5", "1.5", "2.6", "3"],
                                  ["prompt tokens", "5", "900", "1,100", "1,320", "1,400"],
                                  ["output tokens", "5", "5", "15", "26", "30"]]


def test_worst_questions_escaped(report):
    worst = parse(report).sections[HEADINGS[6]]
    assert worst[0] == ["#", "task", "question", "references", "prediction", "score", "error"]
    assert len(worst) == 21
    assert worst[1] == ["1", "chartqa", "chartqa question 2?", "<b>7</b> | seven & more", SCRIPT, "0", ""]
    assert worst[3][1:] == ["chartqa", "chartqa question 4?", "ref", "", "0", "timeout"]
    assert [r[5] for r in worst[1:]] == sorted((r[5] for r in worst[1:]), key=float)
    # the text survives as text: escaped in the HTML, never markup
    assert "<script" not in report.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in report
    assert "<b>" not in report and "&lt;b&gt;7&lt;/b&gt; | seven &amp; more" in report
    # invisible controls and bidi overrides become visible marks; other unicode stays as it is
    assert "Zoë 日本語 ☃ ⟨U+202E⟩ reversed⟨U+0007⟩" in report
    assert "\x07" not in report and "\u202e" not in report
    assert "Fields with &quot;quotes&quot; &amp; &#x27;apostrophes&#x27;" in report


def test_self_contained(report):
    urls = re.findall(r"[a-z]+://[^\s\"'<>)]*", report, re.I)
    assert set(urls) <= {"http://www.w3.org/2000/svg"}, urls
    low = report.lower()
    for bad in ("<link", "<img", "<iframe", "src=", "url(", "@import", "<script"):
        assert bad not in low, bad


def test_empty_and_null_input(tmp_path):
    empty = render_report(SCHEMA.empty_table(), "empty", {})
    parse(empty)
    assert all(f"<h2>{h}</h2>" in empty for h in HEADINGS)
    assert empty.count('class="nodata"') >= 8  # 7 sections + "no run facts"
    nulls = pa.Table.from_pylist([{"task": "docvqa", "score": 0.25, "correct": False}] * 3
                                 + [{"task": "chartqa", "score": 1.0, "correct": True}], schema=SCHEMA)
    html_text = render_report(nulls, "nulls", {"model": None})
    s = parse(html_text).sections
    assert ["docvqa", "unspecified", "3", "25.0%", "0.0%"] in s[HEADINGS[2]]
    assert s[HEADINGS[3]][1:] == [["unknown size", "4", "43.8%", "25.0%"]]
    assert "no classify rows" in html_text and "latency (s): no data" in html_text
    assert ["latency (s)", "0", "–", "–", "–", "–"] in s[HEADINGS[5]]
    # a table with only a few of the columns
    few = pa.table({"task": ["classify"], "score": [1.0], "correct": [True], "gold_doc_type": ["a"],
                    "predicted_doc_type": ["a"]})
    assert ["a", "1", "1", "1", "100.0%", "100.0%"] in parse(render_report(few, "few", None)).sections[HEADINGS[4]]
    out = write_report(few, tmp_path / "sub" / "report.html", "few", {})
    assert Path(out).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


CHROMIUM = Path("/usr/bin/chromium")


def screenshot(report_path: Path, shot: Path, profile: Path, height: int = 2400) -> None:
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size=1280,{height}",
                    f"--screenshot={shot}", report_path.resolve().as_uri()],
                   check=True, timeout=60, capture_output=True)


def test_renders_in_headless_chromium(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (scripts/install_chromium.sh installs it)")
    from PIL import Image

    path = Path(write_report(make_scores(), tmp_path / "report.html", "docintel eval: screenshot", META))
    shot = tmp_path / "shot.png"
    screenshot(path, shot, tmp_path / "profile")
    assert shot.exists() and shot.stat().st_size > 10_000
    with Image.open(shot) as img:
        assert img.size == (1280, 2400)
        colors = img.convert("RGB").getcolors(maxcolors=1 << 24)
    assert len(colors) > 20


def test_confidence_against_correctness():
    """Accuracy per confidence bin and the share above each threshold: whether the confidence is
    calibrated, and where a reviewer could stop checking."""
    rows = [_row("docvqa", 1.0, True, i, confidence=0.95) for i in range(6)]
    rows += [_row("docvqa", 0.0, False, 10 + i, confidence=0.3) for i in range(3)]
    rows += [_row("docvqa", 1.0, True, 20, confidence=0.3), _row("docvqa", 0.0, False, 21, confidence=None)]
    html = render_report(pa.Table.from_pylist(rows, schema=SCHEMA), "c", {})
    section = html.split("8. Confidence against correctness", 1)[1]
    assert "confidence 0.8-1.0</td><td class=\"n\">6</td><td class=\"n\">100.0%" in section
    assert "confidence 0.2-0.4</td><td class=\"n\">4</td><td class=\"n\">25.0%" in section
    assert "at or above 0.9</td><td class=\"n\">6 (60.0%)</td><td class=\"n\">100.0%" in section
    assert "no confidence</td><td class=\"n\">1</td>" in section

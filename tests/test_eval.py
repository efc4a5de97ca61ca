"""The eval job: gold formats, the join of gold to output rows, scores, and the CLI on ChartQA's published
layout (engine double). The CLI on the real engine, with a model that reads: tests/test_tiny_reader_eval.py."""
import json
import subprocess

import pyarrow.parquet as pq
import pytest

import harness
from pipeline.evaluation.evaluate import load_gold, manifest_entries, score_items


def _row(uri, page, question, answer, **kw):
    return dict(doc_id="d", source_uri=uri, page_index=page, question=question,
                answer_json=json.dumps(answer) if answer is not None else None,
                width=1024, height=1325, latency_s=0.5, prompt_tokens=1400, output_tokens=12,
                valid=answer is not None, error_kind=None if answer is not None else "invalid_output", **kw)


def test_published_docvqa_and_chartqa_formats(tmp_path):
    (tmp_path / "val_v1.0.json").write_text(json.dumps({"dataset_name": "docvqa", "data": [
        {"questionId": 1, "question": "What is the total?", "image": "documents/a.png",
         "answers": ["1,234.50", "1234.50"], "question_types": ["table/list"]}]}))
    (item,) = load_gold(tmp_path / "val_v1.0.json")
    assert item.document == str(tmp_path / "documents" / "a.png") and item.page_index == 0
    assert item.answers == ["1,234.50", "1234.50"] and item.question_type == "table/list"
    (tmp_path / "test_human.json").write_text(json.dumps([{"imgname": "c.png", "query": "Max?", "label": "77"}]))
    (item,) = load_gold(tmp_path / "test_human.json")
    assert item.document == str(tmp_path / "png" / "c.png") and item.answers == ["77"]


def test_scores_join_on_page_and_use_the_document_table_without_one():
    from pipeline.evaluation.evaluate import GoldItem

    items = [GoldItem("/a.pdf", "Total?", ["1,234.50"], page_index=0),
             GoldItem("/a.pdf", "Date?", ["2026-03-14"], page_index=0),
             GoldItem("/b.pdf", "Total?", ["98,000.00"], page_index=None),
             GoldItem("/c.pdf", "Total?", ["5"], page_index=0)]  # never answered: scored 0, not dropped
    rows = [_row("/a.pdf", 0, "Total?", {"answer": "1,234.50"}),
            _row("/a.pdf", 0, "Date?", {"answer": "2026-03-41"}),
            _row("/b.pdf", 1, "Total?", {"answer": "no"}, confidence=0.2)]
    documents = [{"source_uri": "/b.pdf", "question": "Total?", "answer_json": json.dumps({"answer": "98,000.00"}),
                  "confidence": 0.9, "doc_id": "d"}]
    got = score_items(items, rows, "docvqa", "r", documents).to_pylist()
    # "2026-03-14" vs "2026-03-41": 2 substitutions over 10 chars -> NL 0.2 -> ANLS 0.8
    assert [r["score"] for r in got] == [1.0, pytest.approx(0.8), 1.0, 0.0]
    assert got[3]["error_kind"] == "missing_row" and got[2]["prediction"] == "98,000.00"
    assert got[2]["confidence"] == 0.9 and got[2]["valid"]  # the document row's, not page 1's


def test_chartqa_scores_the_value_kept_apart_from_its_unit():
    from pipeline.evaluation.evaluate import GoldItem

    items = [GoldItem("/c.png", "Max?", ["77"], page_index=0), GoldItem("/c.png", "Min?", ["31"], page_index=0),
             GoldItem("/c.png", "Top?", ["South"], page_index=0)]
    rows = [_row("/c.png", 0, "Max?", {"answer": "77%", "value": 77, "unit": "%"}),
            _row("/c.png", 0, "Min?", {"answer": "33", "value": 33, "unit": None}),  # 6.5 % off
            _row("/c.png", 0, "Top?", {"answer": "south", "value": None, "unit": None})]
    got = score_items(items, rows, "chartqa", "r").to_pylist()
    assert [(r["prediction"], r["score"]) for r in got] == [("77", 1.0), ("33", 0.0), ("south", 1.0)]


def test_manifest_groups_questions_per_document():
    from pipeline.evaluation.evaluate import GoldItem

    items = [GoldItem("/a.pdf", "q1"), GoldItem("/a.pdf", "q2"), GoldItem("/a.pdf", "q1"), GoldItem("/b.png", "q")]
    assert manifest_entries(items) == [{"path": "/a.pdf", "questions": ["q1", "q2"]},
                                       {"path": "/b.png", "questions": ["q"]}]


def test_eval_chartqa_in_the_published_format(tmp_path, demo_model, ray_cluster):
    """ChartQA's own layout (test_human.json + png/): a bar chart whose tallest bar is labelled 77.
    The engine is the double."""
    import pymupdf

    from docgen import make_pdf

    gold_dir = tmp_path / "ChartQA" / "test"
    (gold_dir / "png").mkdir(parents=True)
    chart = make_pdf(tmp_path / "chart.pdf", pages=2)  # page 2 is the bar chart: North 42, South 77, ...
    with pymupdf.open(chart) as doc:
        doc[1].get_pixmap(dpi=100).save(gold_dir / "png" / "bars.png")
    (gold_dir / "test_human.json").write_text(json.dumps([
        {"imgname": "bars.png", "query": "What is the value of the tallest bar?", "label": "77"},
        {"imgname": "bars.png", "query": "Which region has the lowest revenue?", "label": "West"}]))
    env = harness.env(**harness.double())
    proc = subprocess.run(harness.command("eval", str(gold_dir / "test_human.json"), "--task", "chartqa",
                                          "--output", str(tmp_path / "out"), "--model", demo_model,
                                          "--address", ray_cluster, "--run-id", "cq", "--set", "ray.progress_bars=false",
                                          "--set", "engine.separate_core=false", faults=True),
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    scores = pq.read_table(tmp_path / "out" / "_eval" / "cq" / "scores.parquet").to_pylist()
    assert [s["references"] for s in scores] == ['["77"]', '["West"]']
    assert all(s["metric"] == "relaxed_accuracy" and s["score"] in (0.0, 1.0) for s in scores)
    assert "relaxed_accuracy" in proc.stdout

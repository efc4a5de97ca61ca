"""`docintel eval`: run the pipeline on a gold set and score it.

Gold formats (detected from the content):
  * DocVQA as published (`val_v1.0.json`): {"data": [{"image": "documents/x.png", "question": ...,
    "answers": [...], "question_types": [...]}, ...]}; images relative to the JSON file.
  * ChartQA as published (`test_human.json`, `test_augmented.json`): [{"imgname": "x.png",
    "query": ..., "label": ...}, ...]; images in `png/` beside the JSON file.
  * Our own JSONL or Parquet, one row per question: document (or image), page (0-based, optional),
    question, answers (list) or answer, question_type, doc_type (classify), fields (object, fields).

Scores, one row per gold item (metrics in pipeline/evaluation/metrics.py):
  docvqa   ANLS (threshold 0.5) as the challenge's evaluation script computes it; correct = ANLS > 0
  chartqa  relaxed accuracy (pix2struct's relaxed_correctness, 5 %); the prediction scored is the
           answer's `value` when it has one (the schema keeps the unit apart), else `answer`
  fields   field-level F1 against the gold object; correct = exact match of every field
  classify accuracy of doc_type
A gold item without a page is scored on the document table's answer (the roll-up over its pages).
Output: OUTPUT/_eval/RUN_ID/scores.parquet and report.html (the '_' keeps them out of readers of
OUTPUT's rows).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.evaluation import metrics

METRIC = {"docvqa": "anls", "chartqa": "relaxed_accuracy", "fields": "field_f1", "classify": "accuracy"}

SCORES_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("task", pa.string()), ("metric", pa.string()), ("doc_id", pa.string()),
    ("source_uri", pa.string()), ("page_index", pa.int32()), ("question", pa.string()),
    ("question_type", pa.string()), ("references", pa.string()), ("prediction", pa.string()),
    ("score", pa.float64()), ("correct", pa.bool_()), ("width", pa.int32()), ("height", pa.int32()),
    ("gold_doc_type", pa.string()), ("predicted_doc_type", pa.string()), ("latency_s", pa.float64()),
    ("prompt_tokens", pa.int32()), ("output_tokens", pa.int32()), ("valid", pa.bool_()),
    ("error_kind", pa.string()), ("confidence", pa.float64()), ("token_confidence", pa.float64()),
    ("needs_review", pa.bool_()),
])


@dataclass
class GoldItem:
    document: str  # absolute path
    question: str | None
    answers: list[str] = field(default_factory=list)
    page_index: int | None = None
    question_type: str | None = None
    doc_type: str | None = None
    fields: dict[str, Any] | None = None


def _records(path: Path) -> list[dict[str, Any]] | dict[str, Any]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def load_gold(path: str | Path) -> list[GoldItem]:
    path = Path(path).resolve()
    base = path.parent
    data = _records(path)
    items = []
    if isinstance(data, dict) and "data" in data:  # DocVQA
        for rec in data["data"]:
            types = rec.get("question_types") or []
            items.append(GoldItem(str(base / rec["image"]), rec["question"], list(rec.get("answers") or []),
                                  page_index=0, question_type=types[0] if types else None))
        return items
    for rec in data:
        if "imgname" in rec:  # ChartQA
            items.append(GoldItem(str(base / "png" / rec["imgname"]), rec["query"], [str(rec["label"])],
                                  page_index=0, question_type=rec.get("type")))
            continue
        answers = rec.get("answers")
        if answers is None and rec.get("answer") is not None:
            answers = [rec["answer"]]
        doc = rec.get("document") or rec.get("image")
        items.append(GoldItem(str((base / doc).resolve()), rec.get("question"), [str(a) for a in answers or []],
                              page_index=rec.get("page"), question_type=rec.get("question_type"),
                              doc_type=rec.get("doc_type"), fields=rec.get("fields")))
    return items


def manifest_entries(items: list[GoldItem]) -> list[dict[str, Any]]:
    """The pipeline manifest for a gold set: each document once, with all its questions."""
    by_doc: dict[str, list[str]] = {}
    for item in items:
        questions = by_doc.setdefault(item.document, [])
        if item.question and item.question not in questions:
            questions.append(item.question)
    return [{"path": doc, "questions": qs} for doc, qs in by_doc.items()]


def _prediction(task: str, answer: Any) -> str | None:
    if answer is None:
        return None
    if task == "chartqa":
        value = answer.get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{value:g}"
        return answer.get("answer")
    if task == "docvqa":
        return answer.get("answer")
    if task == "classify":
        return answer.get("doc_type")
    return json.dumps(answer, ensure_ascii=False, sort_keys=True)


def _score(task: str, item: GoldItem, answer: Any, prediction: str | None) -> tuple[float, bool]:
    if task == "docvqa":
        # rrc_compat: exactly the challenge's evaluation script, as leaderboard numbers are computed
        s = metrics.anls(prediction or "", item.answers, rrc_compat=True) if item.answers else 0.0
        return s, s > 0
    if task == "chartqa":
        ok = prediction is not None and metrics.relaxed_accuracy(prediction, item.answers)
        return float(ok), bool(ok)
    if task == "classify":
        ok = prediction is not None and prediction == item.doc_type
        return float(ok), bool(ok)
    scores = metrics.field_scores(answer if isinstance(answer, dict) else {}, item.fields or {})
    return float(scores["f1"]), bool(scores["exact_match"])


def score_items(items: list[GoldItem], rows: list[dict[str, Any]], task: str, run_id: str,
                documents: list[dict[str, Any]] = ()) -> pa.Table:
    """Join gold items to the pipeline's page rows (or, for an item without a page, its document
    row) and score each item. Pure: no I/O."""
    by_page: dict[tuple, dict] = {}
    by_doc: dict[tuple, dict] = {}
    for row in rows:
        by_page[(row["source_uri"], row["page_index"], row["question"])] = row
    for row in documents:
        by_doc[(row["source_uri"], row["question"])] = row
    out = []
    for item in items:
        if item.page_index is not None:
            row = by_page.get((item.document, item.page_index, item.question))
        else:
            row = by_doc.get((item.document, item.question))
        answer = json.loads(row["answer_json"]) if row and row["answer_json"] else None
        prediction = _prediction(task, answer)
        score, correct = _score(task, item, answer, prediction)
        row = row or {}
        out.append({
            "run_id": run_id, "task": task, "metric": METRIC[task], "doc_id": row.get("doc_id"),
            "source_uri": item.document, "page_index": item.page_index, "question": item.question,
            "question_type": item.question_type,
            "references": json.dumps(item.fields if task == "fields" else
                                     ([item.doc_type] if task == "classify" else item.answers), ensure_ascii=False),
            "prediction": prediction, "score": score, "correct": correct, "width": row.get("width"),
            "height": row.get("height"), "gold_doc_type": item.doc_type,
            "predicted_doc_type": prediction if task == "classify" else None,
            "latency_s": row.get("latency_s"), "prompt_tokens": row.get("prompt_tokens"),
            "output_tokens": row.get("output_tokens"), "valid": bool(row.get("valid", row.get("answer_json"))),
            "error_kind": row.get("error_kind") if row else "missing_row", "confidence": row.get("confidence"),
            "token_confidence": row.get("token_confidence"), "needs_review": row.get("needs_review"),
        })
    return pa.Table.from_pylist(out, schema=SCORES_SCHEMA)


def run_eval(spec, gold_path: str) -> tuple[pa.Table, Path, Any]:
    """Run the job spec over the gold set; write scores and the HTML report next to the output."""
    from pipeline.job.run import run_job

    items = load_gold(gold_path)
    if not items:
        raise ValueError(f"{gold_path}: no gold items")
    workdir = Path(tempfile.mkdtemp(prefix="docintel-eval-"))
    manifest = workdir / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in manifest_entries(items)))
    spec.input.paths = []
    spec.input.manifest = str(manifest)
    if not spec.input.allowed_roots:
        spec.input.allowed_roots = [str(Path(gold_path).resolve().parent)]
    summary = run_job(spec)
    scores, target = score_run(spec.output.path, spec.output.run_id, spec.task.name, gold_path, summary.as_dict(),
                               calibrated=spec.answers.calibration is not None)
    return scores, target, summary


def score_run(output_path: str, run_id: str, task: str, gold_path: str,
              meta: dict[str, Any] | None = None, calibrated: bool = False) -> tuple[pa.Table, Path]:
    """Score a committed run against a gold set (documents named relative to the gold file); write
    OUTPUT/_eval/RUN_ID/scores.parquet, report.html and, unless the run's confidence was calibrated
    already (then the report measures that scale), calibration.json (pipeline/evaluation/calibrate.py)."""
    from pipeline.evaluation import calibrate, report
    from pipeline.store import fileio, output

    items = load_gold(gold_path)
    rows = output.read_pages(output_path, run_id).to_pylist()
    documents = output.read_documents(output_path, run_id).to_pylist()
    scores = score_items(items, rows, task, run_id, documents)
    target = f"{output_path.rstrip('/')}/_eval/{run_id}"
    fileio.write_table(f"{target}/scores.parquet", scores)
    fitted = calibrate.calibrate(scores.to_pylist(), task) if not calibrated else {
        "fitted": False, "why": "the run's confidence is on a calibrated scale already (answers.calibration): "
                                "section 8 shows how it holds on this gold set"}
    if fitted and fitted["fitted"]:
        figures = {k: v for k, v in fitted.items() if k not in ("map", "reliability_before", "reliability_after")}
        fileio.write_json(f"{target}/calibration.json", {**fitted["map"], "measured": figures})
    report.write_report(scores, f"{target}/report.html", f"docintel eval: {task} ({len(items)} questions)",
                        {"gold": str(gold_path), **(meta or {})}, fitted)
    return scores, Path(target)


def calibration_line(target: str) -> str:
    """What eval found of the confidence, for the terminal: the map it wrote, or why there is none."""
    from pipeline.store import fileio

    data = fileio.read_json(f"{target}/calibration.json")
    if data is None:
        return "  calibration  none written (the run's confidence was calibrated already, or too few answers)"
    m = data["measured"]
    threshold = "none reaches" if m["threshold"] is None else f"below {m['threshold']:.3f}"
    return (f"  calibration  {target}/calibration.json: ECE {m['ece_before']:.3f} -> {m['ece_after']:.3f} on the "
            f"other half; needs_review {threshold} for {m['target_precision']:.0%} right "
            f"({m['share_needing_review']:.0%} of rows flagged)")


def headline(scores: pa.Table) -> str:
    rows = scores.to_pylist()
    if not rows:
        return "no scored items"
    mean = sum(r["score"] for r in rows) / len(rows)
    correct = sum(r["correct"] for r in rows)
    return f"{rows[0]['metric']} {mean:.4f} over {len(rows)} items ({correct} correct)"

"""The HTML report of `docintel eval`: one self-contained file an analyst opens in a browser.

From a scores table (one row per gold question, pipeline.evaluate.SCORES_SCHEMA) it shows a header
table of run facts (`meta`) and nine sections, each with an inline SVG chart and a table of the
same numbers:
  1. Headline: per task the questions, mean score, share correct, invalid outputs and errors,
     with a stacked bar of outcomes (correct / wrong / invalid output / error).
  2. Mean score by task.
  3. Mean score by question type, per task (a null type shows as "unspecified").
  4. Mean score by page resolution: the longest side of the page image the model saw, bucketed.
  5. Confusion matrix of document types (classify rows: gold_doc_type vs predicted_doc_type) with
     per-type recall and precision.
  6. Latency and tokens per request (rows answered by one request share these values and count
     once): min / median / p90 / max and histograms.
  7. Score distribution and the 20 worst-scoring questions.
  8. Confidence against correctness: accuracy per confidence bin, and per threshold the share of
     answers at or above it with their accuracy (where to set a review threshold).
  9. Calibration (pipeline/evaluation/calibrate.py): the reliability diagram before and after the map
     eval fitted, on the half of the gold set it was not fitted on, with the expected calibration
     error, the proposed review threshold, its precision and the share of rows it flags.
No JavaScript, no external resources: inline CSS, SVG drawn by charts.py. Every piece of
text from the data goes through html.escape. Empty tables and all-null columns give "no data".
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pipeline.evaluation import charts

COLUMNS = ("run_id", "task", "metric", "doc_id", "source_uri", "page_index", "question", "question_type",
           "references", "prediction", "score", "correct", "width", "height", "gold_doc_type",
           "predicted_doc_type", "latency_s", "prompt_tokens", "output_tokens", "valid", "error_kind", "confidence")
CONFIDENCE_BINS = (0.2, 0.4, 0.6, 0.8, 1.0)
THRESHOLDS = (0.5, 0.8, 0.9, 0.95)
TASK_ORDER = ("docvqa", "chartqa", "fields", "classify")
BUCKETS = ((768, "<=768 px"), (1024, "769-1024 px"), (1280, "1025-1280 px"), (1540, "1281-1540 px"))
# ---- sections -----------------------------------------------------------------------------------
def _rows(scores: Any) -> list[dict[str, Any]]:
    """The table's rows as dicts with every column (missing columns read as null)."""
    return [] if scores is None else [{c: r.get(c) for c in COLUMNS} for r in scores.to_pylist()]


def _by_task(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["task"] or "unknown"].append(r)
    rank = {t: i for i, t in enumerate(TASK_ORDER)}
    return dict(sorted(groups.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _outcome(r: dict) -> str:
    if r["error_kind"]:
        return "error"
    if r["valid"] is False:
        return "invalid output"
    return "correct" if r["correct"] else "wrong"


def _stats(rs: list[dict]) -> tuple[int, float | None, float | None]:
    return len(rs), charts.mean([r["score"] for r in rs]), charts.mean([r["correct"] for r in rs])


def _headline(rows: list[dict]) -> tuple[str, str]:
    groups = _by_task(rows)
    if len(groups) > 1:
        groups["all tasks"] = rows
    table = []
    for task, rs in groups.items():
        n, mean, share = _stats(rs)
        metrics = sorted({r["metric"] for r in rs if r["metric"]})
        table.append([task, ", ".join(metrics) or "–", n, charts.pct(mean), charts.pct(share),
                      sum(r["valid"] is False for r in rs), sum(bool(r["error_kind"]) for r in rs)])
    return (charts.stacked([(t, Counter(_outcome(r) for r in rs)) for t, rs in groups.items()]),
            charts.table(["task", "metric", "questions", "mean score", "correct", "invalid outputs", "errors"],
                   table, {2, 3, 4, 5, 6}))


def _score_groups(groups: dict[str, list[dict]], heading: str) -> tuple[str, str]:
    bars, table = [], []
    for label, rs in groups.items():
        n, mean, share = _stats(rs)
        bars.append((label, mean, f"n={n}"))
        table.append([label, n, charts.pct(mean), charts.pct(share)])
    return charts.hbars(bars), charts.table([heading, "questions", "mean score", "correct"], table, {1, 2, 3})


def _by_qtype(rows: list[dict]) -> tuple[str, str]:
    bars, table = [], []
    for task, rs in _by_task(rows).items():
        types: dict[str, list[dict]] = defaultdict(list)
        for r in rs:
            types[r["question_type"] or "unspecified"].append(r)
        bars.append((task, None, None))
        for qt, qrs in sorted(types.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            n, mean, share = _stats(qrs)
            bars.append((qt, mean, f"n={n}"))
            table.append([task, qt, n, charts.pct(mean), charts.pct(share)])
    return charts.hbars(bars), charts.table(["task", "question type", "questions", "mean score", "correct"], table, {2, 3, 4})


def _bucket(r: dict) -> str:
    longest = max((s for s in (r["width"], r["height"]) if s is not None), default=None)
    if longest is None:
        return "unknown size"
    return next((label for limit, label in BUCKETS if longest <= limit), f">{BUCKETS[-1][0]} px")


def _by_resolution(rows: list[dict]) -> tuple[str, str]:
    order = [b for _, b in BUCKETS] + [f">{BUCKETS[-1][0]} px", "unknown size"]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[_bucket(r)].append(r)
    return _score_groups({b: groups[b] for b in order if groups.get(b)}, "longest side")


def _confusion(rows: list[dict]) -> tuple[str, str]:
    rs = [r for r in rows if r["task"] == "classify"]
    if not rs:
        return charts.nodata("no classify rows"), ""
    cells = Counter((r["gold_doc_type"] or "(no gold)", r["predicted_doc_type"] or "(no answer)") for r in rs)
    gold = sorted({g for g, _ in cells})
    pred = gold + sorted({p for _, p in cells} - set(gold))
    table = []
    for t in pred:
        g_n, p_n, hit = (sum(c for (g, _), c in cells.items() if g == t),
                         sum(c for (_, p), c in cells.items() if p == t), cells.get((t, t), 0))
        table.append([t, g_n, p_n, hit, charts.pct(hit / g_n if g_n else None), charts.pct(hit / p_n if p_n else None)])
    return (charts.heatmap(gold, pred, cells),
            charts.table(["doc type", "gold", "predicted", "both", "recall", "precision"], table, {1, 2, 3, 4, 5}))


def _latency(rows: list[dict]) -> tuple[str, str]:
    cols = (("latency_s", "latency (s)"), ("prompt_tokens", "prompt tokens"), ("output_tokens", "output tokens"))
    seen = {(r["source_uri"], r["page_index"], r["latency_s"], r["prompt_tokens"], r["output_tokens"]): r
            for r in rows if any(r[c] is not None for c, _ in cols)}
    drawn, table = [], []
    for col, title in cols:
        vals = sorted(float(r[col]) for r in seen.values() if r[col] is not None)
        drawn.append(charts.hist(vals, title))
        q = (vals[0], charts.quantile(vals, 0.5), charts.quantile(vals, 0.9), vals[-1]) if vals else (None,) * 4
        table.append([title, len(vals), *map(charts.fmt, q)])
    return "".join(drawn), charts.table(["per request", "n", "min", "median", "p90", "max"], table, {1, 2, 3, 4, 5})


def _refs(text: Any) -> str:
    try:
        refs = json.loads(text) if text is not None else None
    except (TypeError, ValueError):
        return str(text)
    if isinstance(refs, list):
        return " | ".join(json.dumps(x, ensure_ascii=False) if isinstance(x, (dict, list)) else str(x) for x in refs)
    return "" if refs is None else json.dumps(refs, ensure_ascii=False)


def _worst(rows: list[dict], k: int = 20) -> tuple[str, str]:
    worst = sorted(range(len(rows)), key=lambda i: (-1.0 if rows[i]["score"] is None else rows[i]["score"], i))[:k]
    table = [[n, r["task"] or "–", charts.short(r["question"], 240), charts.short(_refs(r["references"]), 240),
              charts.short(r["prediction"], 240), charts.fmt(r["score"]), r["error_kind"] or ""]
             for n, r in enumerate((rows[i] for i in worst), 1)]
    hist = charts.hist([r["score"] for r in rows if r["score"] is not None], "score, all questions", 10, (0.0, 1.0))
    heads = ["#", "task", "question", "references", "prediction", "score", "error"]
    return hist, charts.table(heads, table, {0, 5}, "worst")


def _confidence(rows: list[dict]) -> tuple[str, str]:
    """Is the confidence calibrated, and where to set a review threshold: accuracy per confidence
    bin, then, per threshold, the share of answers at or above it and how many of those are right."""
    known = [r for r in rows if r["confidence"] is not None]
    if not known:
        return charts.nodata("no confidence (the engine gave no log-probabilities)"), ""
    items, table, low = [], [], 0.0
    for high in CONFIDENCE_BINS:
        inside = [r for r in known if low <= r["confidence"] < high or (high == 1.0 and r["confidence"] == 1.0)]
        accuracy = charts.mean([float(bool(r["correct"])) for r in inside])
        label = f"{low:.1f}-{high:.1f}"
        items.append((label, accuracy, f"n={len(inside)}"))
        table.append([f"confidence {label}", len(inside), charts.pct(accuracy)])
        low = high
    for t in THRESHOLDS:
        above = [r for r in known if r["confidence"] >= t]
        table.append([f"at or above {t:g}", f"{len(above)} ({charts.pct(len(above) / len(known))})",
                      charts.pct(charts.mean([float(bool(r["correct"])) for r in above]))])
    missing = len(rows) - len(known)
    if missing:
        table.append(["no confidence", missing, charts.pct(charts.mean([float(bool(r["correct"])) for r in rows
                                                             if r["confidence"] is None]))])
    return charts.hbars(items), charts.table(["answers", "count", "correct"], table, {1, 2})


def _calibration(result: dict | None) -> tuple[str, str]:
    if not result or not result.get("fitted"):
        return charts.nodata((result or {}).get("why", "not fitted")), ""
    chart = charts.reliability([("before", "#f2a900", result["reliability_before"]),
                                ("after", charts.BAR, result["reliability_after"])])
    r = result
    table = [["answers fitted on / measured on", f"{r['fit_answers']} / {r['measured_answers']}"],
             ["answers without a confidence", r["without_confidence"]],
             ["expected calibration error, before", charts.fmt(r["ece_before"])],
             ["expected calibration error, after", charts.fmt(r["ece_after"])],
             [f"review threshold for {charts.pct(r['target_precision'])} right", charts.fmt(r["threshold"])],
             ["right at or above it (measured half)", charts.pct(r["precision_at_threshold"])],
             ["rows it flags for review (measured half)", charts.pct(r["share_needing_review"])],
             ["answers at 0.9 or more after / right", f"{r['answers_at_0_9']} / {charts.pct(r['right_at_0_9'])}"]]
    return chart, charts.table(["calibration", "value"], table, {1})


def _meta_value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={charts.fmt(x)}" for k, x in v.items()) or "–"
    return ", ".join(map(charts.fmt, v)) or "–" if isinstance(v, (list, tuple)) else charts.fmt(v)


def render_report(scores: Any, title: str, meta: dict, calibration: dict | None = None) -> str:
    """The report as HTML text: `scores` a pyarrow Table (SCORES_SCHEMA), `meta` run facts for the header,
    `calibration` what calibrate.calibrate found (section 9)."""
    rows = _rows(scores)
    sections = [("Headline", _headline), ("Score by task", lambda rs: _score_groups(_by_task(rs), "task")),
                ("Score by question type", _by_qtype), ("Score by page resolution", _by_resolution),
                ("Document types: confusion matrix", _confusion), ("Latency and tokens per request", _latency),
                ("Worst-scoring questions", _worst), ("Confidence against correctness", _confidence),
                ("Calibration", lambda rs: _calibration(calibration))]
    notes = {4: "Longest side, max(width, height), of the page image the model saw.",
             6: "Rows answered by one request share its latency and token counts; each request counts once.",
             7: "The 20 lowest scores (ties in table order), with the distribution of all scores.",
             8: "Share correct per confidence bin: a calibrated confidence rises with it. Below, per threshold, "
                "how many answers a reviewer would not need to check and how many of those are right.",
             9: "Fitted on half of the gold set's documents, measured on the other half: a calibrated confidence "
                "lies on the diagonal. A job that names calibration.json as answers.calibration gets this scale "
                "and, unless it sets answers.review_threshold, this threshold for needs_review."}
    body = []
    for i, (name, fn) in enumerate(sections, 1):
        chart, table = fn(rows) if rows else (charts.nodata(), "")
        note = f'<p class="note">{charts.esc(notes[i])}</p>' if i in notes and rows else ""
        body.append(f'<section id="s{i}"><h2>{i}. {charts.esc(name)}</h2>{note}<div class="row"><div>{chart}</div>'
                    f"<div>{table}</div></div></section>")
    nav = "".join(f'<a href="#s{i}">{charts.esc(name)}</a>' for i, (name, _) in enumerate(sections, 1))
    facts = charts.table(["run fact", "value"], [[k, _meta_value(v)] for k, v in (meta or {}).items()], cls="meta")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{charts.esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{charts.CSS}</style></head>'
            f'<body><main><h1>{charts.esc(title)}</h1><div class="head"><p>{len(rows)} scored questions.</p>'
            f'{facts if meta else charts.nodata("no run facts")}<nav>{nav}</nav></div>{"".join(body)}'
            f"</main></body></html>\n")


def write_report(scores: Any, path: str | Path, title: str, meta: dict, calibration: dict | None = None) -> str:
    """Render the report and write it (UTF-8, whole) to `path`, a local path or a URI; returns it."""
    from pipeline.store import fileio

    fileio.write_atomic(str(path), render_report(scores, title, meta, calibration).encode("utf-8"))
    return str(path)

"""The HTML report of `docintel eval`: one self-contained file an analyst opens in a browser.

From a scores table (one row per gold question, pipeline.evaluate.SCORES_SCHEMA) it shows a header
table of run facts (`meta`) and eight sections, each with an inline SVG chart and a table of the
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
No JavaScript, no external resources: inline CSS, SVG drawn by the helpers below. Every piece of
text from the data goes through html.escape. Empty tables and all-null columns give "no data".
"""
from __future__ import annotations

import html
import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

COLUMNS = ("run_id", "task", "metric", "doc_id", "source_uri", "page_index", "question", "question_type",
           "references", "prediction", "score", "correct", "width", "height", "gold_doc_type",
           "predicted_doc_type", "latency_s", "prompt_tokens", "output_tokens", "valid", "error_kind", "confidence")
CONFIDENCE_BINS = (0.2, 0.4, 0.6, 0.8, 1.0)
THRESHOLDS = (0.5, 0.8, 0.9, 0.95)
TASK_ORDER = ("docvqa", "chartqa", "fields", "classify")
BUCKETS = ((768, "<=768 px"), (1024, "769-1024 px"), (1280, "1025-1280 px"), (1540, "1281-1540 px"))
OUTCOMES = (("correct", "#2e7d32"), ("wrong", "#f2a900"), ("invalid output", "#7b3fa0"), ("error", "#c62828"))
BAR = "#3b6ea8"
SVG = 'xmlns="http://www.w3.org/2000/svg"'
# Control characters and bidi overrides/isolates are shown as visible marks, not obeyed.
_VISIBLE = {c: f"⟨U+{c:04X}⟩" for c in [*range(32), 127, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
            if c not in (9, 10, 13)}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2328;margin:0;
 background:#f4f5f7}main{max-width:1200px;margin:0 auto;padding:20px 24px}h1{font-size:22px;margin:4px 0 12px}
h2{font-size:17px;margin:0 0 12px}.row{display:flex;flex-wrap:wrap;gap:16px 32px;align-items:flex-start}
section,.head{background:#fff;border:1px solid #d8dde3;border-radius:8px;padding:14px 20px;margin:14px 0}
table{border-collapse:collapse;font-size:13px}th{background:#eef1f4;font-weight:600}
th,td{border-bottom:1px solid #e3e6ea;padding:3px 8px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}table.meta th{background:none;color:#57606a}
table.worst td{max-width:330px;overflow-wrap:anywhere;white-space:pre-wrap}svg{overflow:visible}
svg text{font-size:12px;fill:#1f2328}svg .tick{fill:#6a737d;font-size:11px}svg .grid{stroke:#e3e6ea}
svg .axis{stroke:#8c959f}.nodata,.note{color:#6a737d}.nodata{font-style:italic}
nav{margin-top:10px}nav a{margin-right:14px;color:#3b6ea8;text-decoration:none}
"""


# ---- formatting ---------------------------------------------------------------------------------
def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x).translate(_VISIBLE), quote=True)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int) or x.is_integer():
        return f"{int(x):,}"
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.3g}"


def _short(s: Any, n: int) -> str:
    s = "" if s is None else str(s)
    return s if len(s) <= n else s[: n - 1] + "…"


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _quantile(sorted_vals: list, q: float) -> float:
    pos = (len(sorted_vals) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def _nodata(what: str = "no data") -> str:
    return f'<p class="nodata">{_e(what)}</p>'


def _table(headers: list[str], rows: list[list[Any]], num: set[int] = frozenset(), cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{_e(c)}</td>' if i in num else f"<td>{_e(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# ---- SVG charts ---------------------------------------------------------------------------------
def _hbars(items: list[tuple[str, float | None, str | None]]) -> str:
    """Horizontal bars on a 0-100 % axis; an item (label, None, None) is a group heading."""
    if not items:
        return _nodata()
    lw, bw, rh, top = 190, 340, 24, 22
    w, h = lw + bw + 120, top + rh * len(items) + 4
    out = [f'<svg {SVG} width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">']
    for i in range(5):
        x = lw + bw * i / 4
        out.append(f'<line class="grid" x1="{x:.0f}" y1="{top - 4}" x2="{x:.0f}" y2="{h}"/>'
                   f'<text class="tick" x="{x:.0f}" y="{top - 8}" text-anchor="middle">{25 * i}%</text>')
    for k, (label, value, note) in enumerate(items):
        y = top + k * rh
        if value is None and note is None:
            out.append(f'<text x="4" y="{y + 16}" font-weight="bold">{_e(_short(label, 40))}</text>')
            continue
        bar = bw * min(max(value or 0.0, 0.0), 1.0)
        out.append(f'<text x="{lw - 8}" y="{y + 16}" text-anchor="end"><title>{_e(label)}</title>'
                   f'{_e(_short(label, 26))}</text><rect x="{lw}" y="{y + 4}" width="{bar:.1f}" '
                   f'height="{rh - 8}" fill="{BAR}" rx="2"/><text x="{lw + bar + 6:.1f}" y="{y + 16}">'
                   f'{_e(_pct(value))}<tspan class="tick"> {_e(note or "")}</tspan></text>')
    out.append(f'<line class="axis" x1="{lw}" y1="{top - 4}" x2="{lw}" y2="{h}"/></svg>')
    return "".join(out)


def _stacked(items: list[tuple[str, Counter]]) -> str:
    """One 100 % bar per label, split into the OUTCOMES, with the counts in the segments."""
    if not items:
        return _nodata()
    lw, bw, rh, top = 120, 440, 28, 30
    w, h = lw + bw + 20, top + rh * len(items) + 4
    out = [f'<svg {SVG} width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">']
    x = lw
    for name, color in OUTCOMES:
        out.append(f'<rect x="{x}" y="4" width="12" height="12" fill="{color}"/>'
                   f'<text x="{x + 16}" y="14">{name}</text>')
        x += 24 + 7 * len(name)
    for k, (label, counts) in enumerate(items):
        y, total, x = top + k * rh, sum(counts.values()) or 1, float(lw)
        out.append(f'<text x="{lw - 8}" y="{y + 18}" text-anchor="end">{_e(_short(label, 16))}</text>')
        for name, color in OUTCOMES:
            seg = bw * counts.get(name, 0) / total
            if seg <= 0:
                continue
            out.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{seg:.1f}" height="{rh - 8}" fill="{color}">'
                       f'<title>{_e(label)}: {name} {counts[name]}</title></rect>')
            if seg >= 26:
                out.append(f'<text x="{x + seg / 2:.1f}" y="{y + 18}" text-anchor="middle" '
                           f'style="fill:#fff">{counts[name]}</text>')
            x += seg
    return "".join(out) + "</svg>"


def _hist(values: list[float], title: str, bins: int = 12, span: tuple | None = None) -> str:
    """A histogram of the values: count per equal-width bin between min and max (or `span`)."""
    if not values:
        return _nodata(f"{title}: no data")
    lo, hi = span or (min(values), max(values))
    bins = 1 if hi == lo else bins
    counts = [0] * bins
    for v in values:
        counts[min(max(int((v - lo) / (hi - lo) * bins), 0), bins - 1) if hi > lo else 0] += 1
    pl, pw, ph, top = 40, 260, 120, 22
    w, h, cmax = pl + pw + 20, top + ph + 34, max(counts)
    out = [f'<svg {SVG} width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
           f'<text x="{pl}" y="14" font-weight="bold">{_e(title)}</text>',
           f'<text class="tick" x="{pl - 6}" y="{top + 10}" text-anchor="end">{cmax}</text>',
           f'<text class="tick" x="{pl - 6}" y="{top + ph}" text-anchor="end">0</text>']
    bwid = pw / bins
    for i, c in enumerate(counts):
        bh = ph * c / cmax
        out.append(f'<rect x="{pl + i * bwid + 1:.1f}" y="{top + ph - bh:.1f}" width="{bwid - 2:.1f}" '
                   f'height="{bh:.1f}" fill="{BAR}"><title>{c}</title></rect>')
    out.append(f'<line class="axis" x1="{pl}" y1="{top + ph}" x2="{pl + pw}" y2="{top + ph}"/>')
    for frac, anchor in ((0, "start"), (0.5, "middle"), (1, "end")):
        out.append(f'<text class="tick" x="{pl + pw * frac:.0f}" y="{top + ph + 16}" text-anchor="{anchor}">'
                   f'{_e(_fmt(lo + (hi - lo) * frac))}</text>')
    out.append(f'<text class="tick" x="{pl + pw / 2:.0f}" y="{top + ph + 30}" text-anchor="middle">count per bin, '
               f'{len(values)} values</text></svg>')
    return "".join(out)


def _heatmap(gold: list[str], pred: list[str], cells: Counter) -> str:
    """Confusion grid: rows gold, columns predicted; green diagonal, red elsewhere, shade by count."""
    cs, lw, th = 46, 140, 110
    w, h, cmax = lw + cs * len(pred) + 10, th + cs * len(gold) + 4, max(cells.values())
    out = [f'<svg {SVG} width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
           f'<text class="tick" x="{lw - 8}" y="{th - 6}" text-anchor="end">gold ↓ / predicted →</text>']
    for j, p in enumerate(pred):
        x = lw + j * cs + cs / 2
        out.append(f'<text transform="translate({x + 4:.0f},{th - 8}) rotate(-45)"><title>{_e(p)}</title>'
                   f'{_e(_short(p, 16))}</text>')
    for i, g in enumerate(gold):
        y = th + i * cs
        out.append(f'<text x="{lw - 8}" y="{y + cs / 2 + 4:.0f}" text-anchor="end"><title>{_e(g)}</title>'
                   f'{_e(_short(g, 18))}</text>')
        for j, p in enumerate(pred):
            c, a = cells.get((g, p), 0), 0.1 + 0.9 * cells.get((g, p), 0) / cmax
            fill = "#f6f7f9" if not c else f"rgba({'46,125,50' if g == p else '198,40,40'},{a:.2f})"
            ink = ' style="fill:#fff"' if c and a > 0.55 else ""
            out.append(f'<rect x="{lw + j * cs}" y="{y}" width="{cs - 2}" height="{cs - 2}" fill="{fill}">'
                       f'<title>gold {_e(g)}, predicted {_e(p)}: {c}</title></rect>'
                       f'<text x="{lw + j * cs + cs / 2 - 1:.0f}" y="{y + cs / 2 + 4:.0f}" text-anchor="middle"{ink}>'
                       f'{c}</text>')
    return "".join(out) + "</svg>"


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
    return len(rs), _mean([r["score"] for r in rs]), _mean([r["correct"] for r in rs])


def _headline(rows: list[dict]) -> tuple[str, str]:
    groups = _by_task(rows)
    if len(groups) > 1:
        groups["all tasks"] = rows
    table = []
    for task, rs in groups.items():
        n, mean, share = _stats(rs)
        metrics = sorted({r["metric"] for r in rs if r["metric"]})
        table.append([task, ", ".join(metrics) or "–", n, _pct(mean), _pct(share),
                      sum(r["valid"] is False for r in rs), sum(bool(r["error_kind"]) for r in rs)])
    return (_stacked([(t, Counter(_outcome(r) for r in rs)) for t, rs in groups.items()]),
            _table(["task", "metric", "questions", "mean score", "correct", "invalid outputs", "errors"],
                   table, {2, 3, 4, 5, 6}))


def _score_groups(groups: dict[str, list[dict]], heading: str) -> tuple[str, str]:
    bars, table = [], []
    for label, rs in groups.items():
        n, mean, share = _stats(rs)
        bars.append((label, mean, f"n={n}"))
        table.append([label, n, _pct(mean), _pct(share)])
    return _hbars(bars), _table([heading, "questions", "mean score", "correct"], table, {1, 2, 3})


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
            table.append([task, qt, n, _pct(mean), _pct(share)])
    return _hbars(bars), _table(["task", "question type", "questions", "mean score", "correct"], table, {2, 3, 4})


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
        return _nodata("no classify rows"), ""
    cells = Counter((r["gold_doc_type"] or "(no gold)", r["predicted_doc_type"] or "(no answer)") for r in rs)
    gold = sorted({g for g, _ in cells})
    pred = gold + sorted({p for _, p in cells} - set(gold))
    table = []
    for t in pred:
        g_n, p_n, hit = (sum(c for (g, _), c in cells.items() if g == t),
                         sum(c for (_, p), c in cells.items() if p == t), cells.get((t, t), 0))
        table.append([t, g_n, p_n, hit, _pct(hit / g_n if g_n else None), _pct(hit / p_n if p_n else None)])
    return (_heatmap(gold, pred, cells),
            _table(["doc type", "gold", "predicted", "both", "recall", "precision"], table, {1, 2, 3, 4, 5}))


def _latency(rows: list[dict]) -> tuple[str, str]:
    cols = (("latency_s", "latency (s)"), ("prompt_tokens", "prompt tokens"), ("output_tokens", "output tokens"))
    seen = {(r["source_uri"], r["page_index"], r["latency_s"], r["prompt_tokens"], r["output_tokens"]): r
            for r in rows if any(r[c] is not None for c, _ in cols)}
    charts, table = [], []
    for col, title in cols:
        vals = sorted(float(r[col]) for r in seen.values() if r[col] is not None)
        charts.append(_hist(vals, title))
        q = (vals[0], _quantile(vals, 0.5), _quantile(vals, 0.9), vals[-1]) if vals else (None,) * 4
        table.append([title, len(vals), *map(_fmt, q)])
    return "".join(charts), _table(["per request", "n", "min", "median", "p90", "max"], table, {1, 2, 3, 4, 5})


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
    table = [[n, r["task"] or "–", _short(r["question"], 240), _short(_refs(r["references"]), 240),
              _short(r["prediction"], 240), _fmt(r["score"]), r["error_kind"] or ""]
             for n, r in enumerate((rows[i] for i in worst), 1)]
    hist = _hist([r["score"] for r in rows if r["score"] is not None], "score, all questions", 10, (0.0, 1.0))
    heads = ["#", "task", "question", "references", "prediction", "score", "error"]
    return hist, _table(heads, table, {0, 5}, "worst")


def _confidence(rows: list[dict]) -> tuple[str, str]:
    """Is the confidence calibrated, and where to set a review threshold: accuracy per confidence
    bin, then, per threshold, the share of answers at or above it and how many of those are right."""
    known = [r for r in rows if r["confidence"] is not None]
    if not known:
        return _nodata("no confidence (the engine gave no log-probabilities)"), ""
    items, table, low = [], [], 0.0
    for high in CONFIDENCE_BINS:
        inside = [r for r in known if low <= r["confidence"] < high or (high == 1.0 and r["confidence"] == 1.0)]
        accuracy = _mean([float(bool(r["correct"])) for r in inside])
        label = f"{low:.1f}-{high:.1f}"
        items.append((label, accuracy, f"n={len(inside)}"))
        table.append([f"confidence {label}", len(inside), _pct(accuracy)])
        low = high
    for t in THRESHOLDS:
        above = [r for r in known if r["confidence"] >= t]
        table.append([f"at or above {t:g}", f"{len(above)} ({_pct(len(above) / len(known))})",
                      _pct(_mean([float(bool(r["correct"])) for r in above]))])
    missing = len(rows) - len(known)
    if missing:
        table.append(["no confidence", missing, _pct(_mean([float(bool(r["correct"])) for r in rows
                                                             if r["confidence"] is None]))])
    return _hbars(items), _table(["answers", "count", "correct"], table, {1, 2})


def _meta_value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items()) or "–"
    return ", ".join(map(_fmt, v)) or "–" if isinstance(v, (list, tuple)) else _fmt(v)


def render_report(scores: Any, title: str, meta: dict) -> str:
    """The report as HTML text: `scores` a pyarrow Table (SCORES_SCHEMA), `meta` run facts for the header."""
    rows = _rows(scores)
    sections = [("Headline", _headline), ("Score by task", lambda rs: _score_groups(_by_task(rs), "task")),
                ("Score by question type", _by_qtype), ("Score by page resolution", _by_resolution),
                ("Document types: confusion matrix", _confusion), ("Latency and tokens per request", _latency),
                ("Worst-scoring questions", _worst), ("Confidence against correctness", _confidence)]
    notes = {4: "Longest side, max(width, height), of the page image the model saw.",
             6: "Rows answered by one request share its latency and token counts; each request counts once.",
             7: "The 20 lowest scores (ties in table order), with the distribution of all scores.",
             8: "Share correct per confidence bin: a calibrated confidence rises with it. Below, per threshold, "
                "how many answers a reviewer would not need to check and how many of those are right."}
    body = []
    for i, (name, fn) in enumerate(sections, 1):
        chart, table = fn(rows) if rows else (_nodata(), "")
        note = f'<p class="note">{_e(notes[i])}</p>' if i in notes and rows else ""
        body.append(f'<section id="s{i}"><h2>{i}. {_e(name)}</h2>{note}<div class="row"><div>{chart}</div>'
                    f"<div>{table}</div></div></section>")
    nav = "".join(f'<a href="#s{i}">{_e(name)}</a>' for i, (name, _) in enumerate(sections, 1))
    facts = _table(["run fact", "value"], [[k, _meta_value(v)] for k, v in (meta or {}).items()], cls="meta")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body><main><h1>{_e(title)}</h1><div class="head"><p>{len(rows)} scored questions.</p>'
            f'{facts if meta else _nodata("no run facts")}<nav>{nav}</nav></div>{"".join(body)}'
            f"</main></body></html>\n")


def write_report(scores: Any, path: str | Path, title: str, meta: dict) -> str:
    """Render the report and write it (UTF-8, whole) to `path`, a local path or a URI; returns it."""
    from pipeline.store import fileio

    fileio.write_atomic(str(path), render_report(scores, title, meta).encode("utf-8"))
    return str(path)

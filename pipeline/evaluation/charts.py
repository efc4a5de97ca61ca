"""The HTML and inline SVG pieces of `docintel eval`'s report (pipeline/evaluation/report.py draws its
sections with them): escaping, number formats, tables, bars, stacked bars, histograms, a heatmap, the
page's CSS. No JavaScript, no external resources; every piece of text from the data goes through esc().
"""
from __future__ import annotations

import html
import math
from collections import Counter
from typing import Any

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
def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x).translate(_VISIBLE), quote=True)


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int) or x.is_integer():
        return f"{int(x):,}"
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.3g}"


def short(s: Any, n: int) -> str:
    s = "" if s is None else str(s)
    return s if len(s) <= n else s[: n - 1] + "…"


def mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def quantile(sorted_vals: list, q: float) -> float:
    pos = (len(sorted_vals) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def nodata(what: str = "no data") -> str:
    return f'<p class="nodata">{esc(what)}</p>'


def table(headers: list[str], rows: list[list[Any]], num: set[int] = frozenset(), cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{esc(c)}</td>' if i in num else f"<td>{esc(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# ---- SVG charts ---------------------------------------------------------------------------------
def hbars(items: list[tuple[str, float | None, str | None]]) -> str:
    """Horizontal bars on a 0-100 % axis; an item (label, None, None) is a group heading."""
    if not items:
        return nodata()
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
            out.append(f'<text x="4" y="{y + 16}" font-weight="bold">{esc(short(label, 40))}</text>')
            continue
        bar = bw * min(max(value or 0.0, 0.0), 1.0)
        out.append(f'<text x="{lw - 8}" y="{y + 16}" text-anchor="end"><title>{esc(label)}</title>'
                   f'{esc(short(label, 26))}</text><rect x="{lw}" y="{y + 4}" width="{bar:.1f}" '
                   f'height="{rh - 8}" fill="{BAR}" rx="2"/><text x="{lw + bar + 6:.1f}" y="{y + 16}">'
                   f'{esc(pct(value))}<tspan class="tick"> {esc(note or "")}</tspan></text>')
    out.append(f'<line class="axis" x1="{lw}" y1="{top - 4}" x2="{lw}" y2="{h}"/></svg>')
    return "".join(out)


def stacked(items: list[tuple[str, Counter]]) -> str:
    """One 100 % bar per label, split into the OUTCOMES, with the counts in the segments."""
    if not items:
        return nodata()
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
        out.append(f'<text x="{lw - 8}" y="{y + 18}" text-anchor="end">{esc(short(label, 16))}</text>')
        for name, color in OUTCOMES:
            seg = bw * counts.get(name, 0) / total
            if seg <= 0:
                continue
            out.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{seg:.1f}" height="{rh - 8}" fill="{color}">'
                       f'<title>{esc(label)}: {name} {counts[name]}</title></rect>')
            if seg >= 26:
                out.append(f'<text x="{x + seg / 2:.1f}" y="{y + 18}" text-anchor="middle" '
                           f'style="fill:#fff">{counts[name]}</text>')
            x += seg
    return "".join(out) + "</svg>"


def hist(values: list[float], title: str, bins: int = 12, span: tuple | None = None) -> str:
    """A histogram of the values: count per equal-width bin between min and max (or `span`)."""
    if not values:
        return nodata(f"{title}: no data")
    lo, hi = span or (min(values), max(values))
    bins = 1 if hi == lo else bins
    counts = [0] * bins
    for v in values:
        counts[min(max(int((v - lo) / (hi - lo) * bins), 0), bins - 1) if hi > lo else 0] += 1
    pl, pw, ph, top = 40, 260, 120, 22
    w, h, cmax = pl + pw + 20, top + ph + 34, max(counts)
    out = [f'<svg {SVG} width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
           f'<text x="{pl}" y="14" font-weight="bold">{esc(title)}</text>',
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
                   f'{esc(fmt(lo + (hi - lo) * frac))}</text>')
    out.append(f'<text class="tick" x="{pl + pw / 2:.0f}" y="{top + ph + 30}" text-anchor="middle">count per bin, '
               f'{len(values)} values</text></svg>')
    return "".join(out)


def heatmap(gold: list[str], pred: list[str], cells: Counter) -> str:
    """Confusion grid: rows gold, columns predicted; green diagonal, red elsewhere, shade by count."""
    cs, lw, th = 46, 140, 110
    w, h, cmax = lw + cs * len(pred) + 10, th + cs * len(gold) + 4, max(cells.values())
    out = [f'<svg {SVG} width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
           f'<text class="tick" x="{lw - 8}" y="{th - 6}" text-anchor="end">gold ↓ / predicted →</text>']
    for j, p in enumerate(pred):
        x = lw + j * cs + cs / 2
        out.append(f'<text transform="translate({x + 4:.0f},{th - 8}) rotate(-45)"><title>{esc(p)}</title>'
                   f'{esc(short(p, 16))}</text>')
    for i, g in enumerate(gold):
        y = th + i * cs
        out.append(f'<text x="{lw - 8}" y="{y + cs / 2 + 4:.0f}" text-anchor="end"><title>{esc(g)}</title>'
                   f'{esc(short(g, 18))}</text>')
        for j, p in enumerate(pred):
            c, a = cells.get((g, p), 0), 0.1 + 0.9 * cells.get((g, p), 0) / cmax
            fill = "#f6f7f9" if not c else f"rgba({'46,125,50' if g == p else '198,40,40'},{a:.2f})"
            ink = ' style="fill:#fff"' if c and a > 0.55 else ""
            out.append(f'<rect x="{lw + j * cs}" y="{y}" width="{cs - 2}" height="{cs - 2}" fill="{fill}">'
                       f'<title>gold {esc(g)}, predicted {esc(p)}: {c}</title></rect>'
                       f'<text x="{lw + j * cs + cs / 2 - 1:.0f}" y="{y + cs / 2 + 4:.0f}" text-anchor="middle"{ink}>'
                       f'{c}</text>')
    return "".join(out) + "</svg>"




def reliability(series: list[tuple[str, str, list[dict]]]) -> str:
    """A reliability diagram: per confidence bin, its answers' mean confidence (x) against the share
    right (y), one colour per series (name, colour, bins as calibrate.reliability gives them); a point's
    area follows its answers, and a calibrated confidence lies on the diagonal."""
    side, pad = 260, 36
    w, h = pad + side + 140, pad + side + 30
    out = [f'<svg {SVG} width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
           f'<line class="grid" x1="{pad}" y1="{pad + side}" x2="{pad + side}" y2="{pad}"/>',
           f'<line class="axis" x1="{pad}" y1="{pad}" x2="{pad}" y2="{pad + side}"/>',
           f'<line class="axis" x1="{pad}" y1="{pad + side}" x2="{pad + side}" y2="{pad + side}"/>',
           f'<text class="tick" x="{pad}" y="{pad + side + 16}">0</text>',
           f'<text class="tick" x="{pad + side}" y="{pad + side + 16}" text-anchor="end">confidence 1</text>',
           f'<text class="tick" x="{pad - 6}" y="{pad + 4}" text-anchor="end">1</text>',
           f'<text class="tick" x="{pad - 6}" y="{pad - 12}">share right</text>']
    most = max((b["n"] for _, _, bins in series for b in bins), default=1) or 1
    for k, (name, color, bins) in enumerate(series):
        out.append(f'<rect x="{pad + side + 16}" y="{pad + 18 * k}" width="12" height="12" fill="{color}"/>'
                   f'<text x="{pad + side + 32}" y="{pad + 18 * k + 10}">{esc(name)}</text>')
        for b in bins:
            if not b["n"]:
                continue
            cx, cy = pad + side * b["confidence"], pad + side * (1 - b["right"])
            r = 3 + 9 * math.sqrt(b["n"] / most)
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{color}" fill-opacity="0.6">'
                       f'<title>{esc(name)}: {b["n"]} answers at {b["low"]:.1f}-{b["high"]:.1f}, mean confidence '
                       f'{b["confidence"]:.3f}, {pct(b["right"])} right</title></circle>')
    return "".join(out) + "</svg>"

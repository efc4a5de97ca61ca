"""Seeded pages with ground truth for the tiny reader: invoices, short-title pages (reports, letters)
and labelled bar charts, drawn with PyMuPDF's Base14 fonts (helv, tiro, cour and their bold forms).

`make_page(seed)` returns the one-page PDF and every question it can answer, with the answer as the
task's JSON (docvqa {"answer","evidence"}, chartqa {"answer","value","unit"}) and, for invoices, the
`fields` answer of schemas/fields/invoice.json. Same seed, same page, same bytes.

Pages are small in points and the text is large: rendered at RENDER (max_side 560, so 1 pt = 1 px)
text is at least MIN_PX = 20 px per em (Times and Courier 22; capitals and digits >= ~14 px, one
patch), titles up to ~34; a layout that does not fit at 20 px is drawn again with narrower margins
and less on the page (fewer line items or bars, shorter labels), the same random choices otherwise.
Both page shapes are multiples of 28 px (Pixtral's merged patch), so mistral_common's resize leaves
the pixels alone. The words and values come from vocab.py.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pymupdf

from tools.reader import reading, vocab

SHAPES = {"portrait": (420, 560), "landscape": (560, 420)}  # points: the generated documents
STRIP = (560, 112)  # the curriculum's first pages: one line, 20 x 4 cells


def size_of(shape: str) -> tuple[int, int]:
    return STRIP if shape == "strip" else SHAPES[shape]

RENDER = {"max_side": 560, "dpi": 72}  # the render settings the reader is trained for
FONTS = [("helv", "hebo"), ("tiro", "tibo"), ("cour", "cobo")]
SCALE = {"helv": 1.0, "tiro": 1.1, "cour": 1.1}  # Times and Courier have smaller capitals per em
MIN_PX = 20  # the smallest body text, px per em (Helvetica; Times and Courier x1.1): a digit about one 14 px patch

UNANSWERABLE = {"answer": "unanswerable"}


@dataclass
class Page:
    kind: str  # invoice | report | chart
    shape: str
    pdf: bytes
    docvqa: list[tuple[str, dict]] = field(default_factory=list)
    chartqa: list[tuple[str, dict]] = field(default_factory=list)
    fields: dict | None = None  # invoice schema answer (invoices only)
    chars: list[tuple[str, float, float]] = field(default_factory=list)  # every character's centre, in px at RENDER
    lines: list[str] = field(default_factory=list)  # the text lines, top to bottom (text_lines)


class Canvas:
    """Draw operations measured before drawing, so a layout can shrink until it fits the page."""

    def __init__(self, width: float, height: float):
        self.width, self.height = width, height
        self.ops: list[tuple] = []

    def text(self, x: float, y: float, s: str, font: str, size: float, align: str = "left") -> float:
        w = pymupdf.get_text_length(s, fontname=font, fontsize=size)
        x = x - w if align == "right" else (x - w / 2 if align == "center" else x)
        self.ops.append(("text", x, y, s, font, size, w))
        return w

    def fits(self, margin: float = 6) -> bool:
        """Every text inside the page and no two texts overlapping (boxes: baseline - size .. + 0.25 size)."""
        boxes = [(op[1], op[2] - op[5], op[1] + op[6], op[2] + op[5] * 0.25) for op in self.ops if op[0] == "text"]
        if not all(margin <= x0 and x1 <= self.width - margin and margin <= y0 and y1 <= self.height - margin
                   for x0, y0, x1, y1 in boxes):
            return False
        return not any(a[0] < b[2] + 8 and b[0] < a[2] + 8 and a[1] < b[3] and b[1] < a[3]
                       for i, a in enumerate(boxes) for b in boxes[i + 1:])

    def draw(self, page: pymupdf.Page) -> None:
        shape = page.new_shape()  # one shape, one commit: a commit per text costs more than the text
        for op in self.ops:
            if op[0] == "line":
                shape.draw_line(op[1], op[2])
                shape.finish(color=(0, 0, 0), width=0.8)
            elif op[0] == "rect":
                shape.draw_rect(pymupdf.Rect(*op[1]))
                shape.finish(color=None, fill=op[2])
        for op in self.ops:
            if op[0] == "text":
                shape.insert_text((op[1], op[2]), op[3], fontname=op[4], fontsize=op[5])
        shape.commit()


def _sizes(top: int, font: str) -> range:
    """Font sizes to try, largest first: `top` down to MIN_PX, both scaled for the font."""
    return range(round(top * SCALE[font]), round(MIN_PX * SCALE[font]) - 1, -1)


def fit(rng: random.Random, width: float, height: float, layout, sizes: range, variants=(None,)) -> Canvas:
    """The largest size at which one of the layout variants fits (tried in order); else the smallest."""
    state = rng.getstate()
    canvas = None
    for size in sizes:
        for variant in variants:
            rng.setstate(state)  # same random layout choices at every size
            canvas = Canvas(width, height)
            layout(canvas, size) if variant is None else layout(canvas, size, variant)
            if canvas.fits():
                return canvas
    return canvas


def _first_fitting(make, rng: random.Random, val: random.Random, shape: str, tries: int = 5) -> tuple:
    """make(rng, val, shape, fewer): the page laid out at the largest size that fits, down to MIN_PX;
    where none fits, the same page (the same random choices) with narrower margins and less on it.
    `rng` draws the layout and `val` what is written (make_page says why they may differ)."""
    state, val_state = rng.getstate(), val.getstate()
    for fewer in range(tries):
        rng.setstate(state)
        val.setstate(val_state)
        made = make(rng, val, shape, fewer)
        if made[0].fits():
            break
    return made


def _invoice(rng: random.Random, val: random.Random, shape: str) -> tuple[Canvas, list[tuple[str, dict]], dict]:
    """Less on the page at each retry: narrower margins, fewer line items, no buyer, no heading word."""
    return _first_fitting(_invoice_once, rng, val, shape)


def _invoice_once(rng: random.Random, val: random.Random, shape: str,
                  fewer: int) -> tuple[Canvas, list[tuple[str, dict]], dict]:
    width, height = SHAPES[shape]
    vendor = " ".join(p for p in (val.choice(vocab.VENDOR_A), val.choice(vocab.VENDOR_B), val.choice(vocab.VENDOR_C)) if p)
    inv_no, date = vocab.invoice_number(val), vocab.date(val)
    due = vocab.date(val) if rng.random() < 0.5 else None
    buyer = vocab.name(val) if rng.random() < 0.7 else None
    buyer = buyer if fewer < 2 else None
    items = []
    for desc in val.sample(vocab.ITEMS, rng.randint(2, 4 if shape == "portrait" else 3)):
        qty = val.choice([1, 1, 2, 3, 4, 5, 6, 8, 10, 12, 20])
        price = val.choice([val.randint(1, 99), val.randint(10, 999) + val.choice([0, 0.5, 0.25, 0.99])])
        items.append((desc, qty, round(qty * price, 2)))
    items = items[: max(1, len(items) - fewer)]  # after the draws: a retry keeps the rest of the invoice
    subtotal = round(sum(a for _, _, a in items), 2)
    rate = val.choice([0, 0, 0.05, 0.07, 0.1, 0.19, 0.2]) if rng.random() < 0.6 else None
    tax = round(subtotal * rate, 2) if rate is not None else None
    total = round(subtotal + (tax or 0), 2)
    symbol, where, code = val.choice(vocab.CURRENCY)
    if symbol in ("$", "£"):
        total_text = f"{symbol}{vocab.money(total)}"
    else:
        total_text = f"{vocab.money(total)} {symbol}" if where == "suffix" else f"{symbol} {vocab.money(total)}"
    reg, bold = rng.choice(FONTS)
    no_label = rng.choice(["Invoice No:", "Invoice #:", "Invoice number:", "Invoice no."])
    date_label = rng.choice(["Date:", "Invoice date:", "Date of issue:"])
    due_label = rng.choice(["Due date:", "Payment due:", "Due:"])
    total_label = rng.choice(["Total:", "Total due:", "Amount due:", "TOTAL"])
    if fewer >= 3:  # a long date in Courier does not fit a portrait page's width at 20 px with a long label
        no_label, date_label, due_label = "Invoice #:", "Date:", "Due:"
    head = rng.choice(["Description", "Item"]), rng.choice(["Qty", "Quantity"]), rng.choice(["Amount", "Total"])
    variants = ("two_col", "stacked") if shape == "landscape" or rng.random() < 0.3 else ("stacked", "two_col")
    lines = {"no": f"{no_label} {inv_no}", "date": f"{date_label} {date}",
             "due": f"{due_label} {due}" if due else None, "buyer": f"Bill to: {buyer}" if buyer else None,
             "subtotal": f"Subtotal: {vocab.money(subtotal)}" if tax is not None else None,
             "tax": (f"Tax ({round(rate * 100)}%): {vocab.money(tax)}" if rng.random() < 0.5 else f"Tax: {vocab.money(tax)}")
             if tax is not None else None, "total": f"{total_label} {total_text}"}
    ruled, heading_word = rng.random() < 0.5, rng.random() < 0.5 and fewer < 3
    align = rng.choice(["left", "left", "center", "right"])
    totals_right = rng.random() < 0.5
    mx, my = max(8, rng.randint(18, 40) - 12 * fewer), max(8, rng.randint(14, 40) - 10 * fewer)

    def layout(c: Canvas, fs: int, mode: str) -> None:
        two_col = mode == "two_col"
        step, ts = fs * 1.45, fs + rng.randint(4, 8)
        room = width - 2 * mx - 4  # a long vendor name in a wide font: its title no larger than fits
        ts = max(fs, min(ts, int(ts * room / pymupdf.get_text_length(vendor, fontname=bold, fontsize=ts))))
        x_title = {"left": mx, "center": width / 2, "right": width - mx}["left" if two_col else align]
        y = my + ts
        c.text(x_title, y, vendor, bold, ts, align)
        if heading_word:
            y += ts * 1.3
            c.text(x_title, y, "INVOICE", bold, fs + 2, align)
        info = [lines[k] for k in ("no", "date", "due") if lines[k]]
        if two_col:  # vendor left, number and dates right, bill-to below both
            yr = my + fs
            for s in info:
                c.text(width - mx, yr, s, reg, fs, "right")
                yr += step
            y = max(y, yr - step)
            if lines["buyer"]:
                y += step * 1.2
                c.text(mx, y, lines["buyer"], reg, fs)
        else:
            y += step * 0.4
            for s in info + ([lines["buyer"]] if lines["buyer"] else []):
                y += step
                c.text(mx, y, s, reg, fs)
        y += step * 1.5
        x_qty, x_amt = width * rng.uniform(0.56, 0.64), width - mx
        c.text(mx, y, head[0], bold, fs)
        c.text(x_qty, y, head[1], bold, fs, "center")
        c.text(x_amt, y, head[2], bold, fs, "right")
        if ruled:
            c.ops.append(("line", (mx, y + fs * 0.4), (width - mx, y + fs * 0.4)))
        for desc, qty, amount in items:
            y += step
            c.text(mx, y, desc, reg, fs)
            c.text(x_qty, y, str(qty), reg, fs, "center")
            c.text(x_amt, y, vocab.money(amount), reg, fs, "right")
        y += step * 0.6
        for key in ("subtotal", "tax", "total"):
            if lines[key]:
                y += step
                size, font = (fs + 1, bold) if key == "total" else (fs, reg)
                c.text(x_amt if totals_right else mx, y, lines[key], font, size, "right" if totals_right else "left")

    canvas = fit(rng, width, height, layout, _sizes(rng.randint(22, 28), reg), variants)
    qa = [("What is the total amount?", {"answer": total_text, "evidence": lines["total"]}),
          ("What is the date?", {"answer": date, "evidence": lines["date"]}),
          ("What is the invoice number?", {"answer": inv_no, "evidence": lines["no"]}),
          ("What is the due date?", {"answer": due, "evidence": lines["due"]} if due else UNANSWERABLE)]
    fields = {"invoice_number": inv_no, "invoice_date": date, "due_date": due, "seller_name": vendor,
              "buyer_name": buyer, "currency": code, "subtotal": vocab.number(subtotal) if tax is not None else None,
              "tax": vocab.number(tax) if tax is not None else None, "total": vocab.number(total),
              "line_items": [{"description": d, "quantity": q, "amount": vocab.number(a)} for d, q, a in items]}
    return canvas, qa, fields


def _report(rng: random.Random, val: random.Random, shape: str) -> tuple[Canvas, list[tuple[str, dict]]]:
    """Narrower margins at each retry."""
    return _first_fitting(_report_once, rng, val, shape)


def _report_once(rng: random.Random, val: random.Random, shape: str,
                 fewer: int) -> tuple[Canvas, list[tuple[str, dict]]]:
    width, height = SHAPES[shape]
    letter = rng.random() < 0.3
    if letter:
        title = val.choice(vocab.LETTERS)
    else:
        parts = [val.choice(vocab.PERIOD), val.choice(vocab.TOPIC), val.choice(vocab.KIND)]
        title = " ".join(parts[rng.random() < 0.3:] + ([str(val.randint(2018, 2026))] if rng.random() < 0.5 else []))
    if fewer >= 2 and title[-4:].isdigit():  # a long title in Courier Bold: without its year it fits
        title = title[:-5]
    date = vocab.date(val)
    date_line = rng.choice(["Date: {}", "{}", "Issued: {}", "Dated {}"]).format(date)
    greeting = f"Dear {val.choice(['Ms.', 'Mr.', 'Dr.'])} {val.choice(vocab.LAST)},"
    extra = [greeting if letter else f"Prepared by: {vocab.name(val)}", f"Department: {val.choice(vocab.TOPIC)}"]
    words = [val.choice(vocab.WORDS) for _ in range(rng.randint(12, 40))]
    words[0] = words[0].capitalize()
    reg, bold = rng.choice(FONTS)
    align = rng.choice(["left", "left", "center"])
    date_first = rng.random() < 0.4
    mx, my = max(8, rng.randint(18, 44) - 12 * fewer), max(8, rng.randint(20, 60) - 12 * fewer)
    n_extra, body_less = rng.randint(0, 2), rng.randint(0, 4)

    def layout(c: Canvas, ts: int) -> None:
        fs = max(round(MIN_PX * SCALE[reg]), ts - 4 - body_less)
        x = width / 2 if align == "center" else mx
        y = my + ts
        if date_first:
            c.text(width - mx, my + fs, date_line, reg, fs, "right")
            y += fs * 1.5
        c.text(x, y, title, bold, ts, align)
        y += ts * 0.8
        if not date_first:
            y += fs * 1.6
            c.text(x, y, date_line, reg, fs, align)
        for s in extra[:n_extra]:
            y += fs * 1.5
            c.text(mx, y, s, reg, fs)
        y += fs * 0.8
        line: list[str] = []
        for word in words + [None]:  # the body wrapped to the page's width, as many lines as fit
            wider = word is not None and pymupdf.get_text_length(" ".join(line + [word]), fontname=reg,
                                                                  fontsize=fs) > width - 2 * mx - 2
            if line and (word is None or wider):
                if y + fs * 1.45 > height - fs:
                    break
                y += fs * 1.45
                c.text(mx, y, " ".join(line), reg, fs)
                line = []
            if word is not None:
                line.append(word)

    canvas = fit(rng, width, height, layout, _sizes(rng.randint(26, 32), reg))
    qa = [("What is the title?", {"answer": title, "evidence": title}),
          ("What is the date?", {"answer": date, "evidence": date_line}),
          ("What is the total amount?", UNANSWERABLE), ("What is the invoice number?", UNANSWERABLE)]
    return canvas, qa


def _chart(rng: random.Random, val: random.Random,
           shape: str) -> tuple[Canvas, list[tuple[str, dict]], list[tuple[str, dict]]]:
    """Fewer bars (3 at least) and narrower margins at each retry."""
    return _first_fitting(_chart_once, rng, val, shape)


def _chart_once(rng: random.Random, val: random.Random, shape: str,
                fewer: int) -> tuple[Canvas, list[tuple[str, dict]], list[tuple[str, dict]]]:
    width, height = SHAPES[shape]
    dim = rng.choice(list(vocab.DIMS))
    labels = rng.sample(vocab.DIMS[dim], min(len(vocab.DIMS[dim]), rng.randint(3, 6)))
    labels = labels[: max(3, len(labels) - fewer)]
    if dim in ("year", "quarter", "month"):
        labels.sort(key=vocab.DIMS[dim].index)
    unit = rng.choice(vocab.UNITS)
    style = "percent" if unit == "%" else rng.choice(["int", "int", "decimal"])
    while True:
        if style == "decimal":
            values = [val.randint(10, 99) / 10 for _ in labels]
        else:
            values = [val.randint(3, 99 if style == "percent" else 999) for _ in labels]
        if values.count(max(values)) == 1:
            break
    printed = [(f"{v:g}%" if style == "percent" else f"{v:g}") for v in values]
    title = f"{val.choice(vocab.METRIC)} by {dim}" + (f" ({unit})" if unit and unit != "%" else (" (%)" if unit else ""))
    reg, bold = rng.choice(FONTS)
    color = rng.choice([(0.2, 0.4, 0.8), (0.85, 0.4, 0.1), (0.2, 0.6, 0.3), (0.5, 0.5, 0.5), (0.6, 0.2, 0.6)])
    mx, title_align = max(8, rng.randint(20, 50) - 12 * fewer), rng.choice(["left", "center"])

    def layout(c: Canvas, ts: int) -> None:
        fs = max(round(MIN_PX * SCALE[reg]), ts - 2)
        c.text(width / 2 if title_align == "center" else mx, 16 + ts, title, bold, ts, title_align)
        top, base = 16 + ts * 2 + fs * 1.6, height - fs * 2.2
        slot = (width - 2 * mx) / len(labels)
        bar = slot * rng.uniform(0.5, 0.7)
        c.ops.append(("line", (mx, base), (width - mx, base)))
        for i, (label, value, text) in enumerate(zip(labels, values, printed)):
            cx = mx + slot * (i + 0.5)
            h = (base - top) * (0.08 + 0.92 * value / max(values))
            c.ops.append(("rect", (cx - bar / 2, base - h, cx + bar / 2, base), color))
            c.text(cx, base - h - fs * 0.35, text, reg, fs, "center")
            c.text(cx, base + fs * 1.3, label, reg, fs, "center")

    canvas = fit(rng, width, height, layout, _sizes(rng.randint(22, 28), reg))
    chartqa = [(f"What is the value for {label}?", {"answer": text, "value": vocab.number(value), "unit": unit})
               for label, value, text in zip(labels, values, printed)]
    top = values.index(max(values))
    chartqa += [("What is the highest value shown in the chart?",
                 {"answer": printed[top], "value": vocab.number(values[top]), "unit": unit}),
                ("Which label has the highest value?", {"answer": labels[top], "value": None, "unit": None})]
    return canvas, [("What is the title?", {"answer": title, "evidence": title})], chartqa


def make_page(seed: int, kind: str | None = None, shape: str | None = None, values: int | None = None) -> Page:
    """One generated page. `kind` and `shape` default to a seeded choice; charts are landscape and
    reports portrait, invoices either.

    `values` makes counterfactual pages (goldset.py): what is written (names, numbers, dates, words)
    comes from its own stream, and the layout (fonts, labels, positions, which lines there are, chart
    labels) from the seed's. Two values of one seed are the same page with other values: the same
    questions, other answers. With `values` None one stream draws both, as training always has."""
    rng = random.Random(f"docintel-reader-page-{seed}")
    val = rng if values is None else random.Random(f"docintel-reader-values-{seed}-{values}")
    if shape is None:
        shape = rng.choice(list(SHAPES))
    if kind is None:
        kind = rng.choice(["invoice", "invoice", "report"] if shape == "portrait" else ["invoice", "chart", "chart"])
    chartqa: list[tuple[str, dict]] = []
    fields = None
    if kind == "invoice":
        canvas, docvqa, fields = _invoice(rng, val, shape)
    elif kind == "report":
        canvas, docvqa = _report(rng, val, shape)
    elif kind == "chart":
        canvas, docvqa, chartqa = _chart(rng, val, shape)
    else:
        raise ValueError(f"unknown page kind {kind!r}")
    return finish(kind, shape, canvas, docvqa, chartqa, fields)


def finish(kind: str, shape: str, canvas: Canvas, docvqa: list, chartqa: list | None = None,
           fields: dict | None = None) -> Page:
    """The Page of a laid-out canvas: its PDF, its characters' centres and its lines."""
    doc = pymupdf.open()
    page = doc.new_page(width=size_of(shape)[0], height=size_of(shape)[1])
    canvas.draw(page)
    pdf = doc.tobytes(garbage=3, deflate=True, no_new_id=True)
    doc.close()
    chars = [c for op in canvas.ops if op[0] == "text" for c in reading.text_chars(op[1], op[2], op[3], op[4], op[5])]
    return Page(kind=kind, shape=shape, pdf=pdf, docvqa=docvqa, chartqa=chartqa or [], fields=fields, chars=chars,
                lines=text_lines(canvas))


def text_lines(canvas: Canvas) -> list[str]:
    """The page's lines as a reader sees them: texts on one baseline (within a fifth of their size)
    joined left to right with a space, top to bottom."""
    texts = sorted((op[2], op[1], op[3], op[5]) for op in canvas.ops if op[0] == "text")
    lines: list[list[tuple]] = []
    for t in texts:
        if lines and abs(t[0] - lines[-1][0][0]) <= 0.2 * t[3]:
            lines[-1].append(t)
        else:
            lines.append([t])
    return [" ".join(s for _, _, s, _ in sorted(line, key=lambda t: t[1])) for line in lines]


def page_row(page: Page, doc_id: str = "gen") -> dict[str, Any]:
    """The document row the pipeline's reader would make of this page (pipeline.ingest.pages input)."""
    return {"doc_id": doc_id, "source_uri": f"{doc_id}.pdf", "questions": "[]", "data": page.pdf,
            "error_kind": None, "error": None}

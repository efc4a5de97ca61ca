"""Pages for the blank-page gate (pipeline/ingest/blank.py), drawn on the spot from a seed: scans of
blank paper with what a scanner adds (grain, uneven light, JPEG, dust, a staple, the lid's edge, a lone
page number) that have nothing to read, and sparse pages that do (one short line, one word, a faint
line, a chart without labels, a signature, light text on a dark page). tests/test_blank.py and
bench/bench_blank.py use the same pages.

A scan is a page of `size_pt` points seen at `dpi`: paper at a grey level of 215-245 lit unevenly
(up to 12 levels across), Gaussian grain (sigma 3-10 levels), what is printed on it rendered by
PyMuPDF at that resolution, and the result saved as PNG or JPEG (`quality`) or put in a PDF page of
its size (a scanner's PDF, no text layer).
"""
from __future__ import annotations

import io
import math
import random

import numpy as np
import pymupdf
from PIL import Image, ImageDraw

LETTER, A4, A5 = (612, 792), (595, 842), (420, 595)
READER_PORTRAIT, READER_LANDSCAPE = (420, 560), (560, 420)  # tools/reader/pagegen.py SHAPES

# what has nothing to read (the gate's goal: every one gated) ...
NEAR_BLANK = ("scan", "scan_jpeg", "scan_pdf", "specks", "staple", "lid_edge", "page_number_text", "everything")
# ... what has nothing to read but looks like a short word to the gate, which promises nothing here
# (a lone page number scanned: no text layer to say it is only a number) ...
SCANNED_FOLIO = ("page_number_scan",)
# ... and the sparse pages that do have something to read (the goal: none gated)
SPARSE = ("line_scan", "word_scan", "faint_line_scan", "chart_scan", "signature_scan", "dark_page", "line_pdf")
WORDS = ["Approved", "Received", "Confidential", "Notes", "Paid", "Original", "Duplicate", "Cancelled"]
LINES = ["Total: 12.99", "See attached.", "Invoice 4471", "Paid 2026-03-14", "Ref. A-7731",
         "Signed copy", "Balance due: 0.00", "Page left for notes"]


def _printed(size_pt: tuple[int, int], dpi: int, draw) -> np.ndarray:
    """Darkness (0 paper .. 1 ink) of what `draw(page)` prints on a page, at dpi."""
    with pymupdf.open() as doc:
        page = doc.new_page(width=size_pt[0], height=size_pt[1])
        draw(page)
        pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
        return 1.0 - np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width) / 255.0


def _paper(shape: tuple[int, int], rng: random.Random) -> np.ndarray:
    h, w = shape
    nrng = np.random.default_rng(rng.randrange(2 ** 32))
    yy, xx = np.mgrid[0:h, 0:w]
    light = rng.uniform(215, 245) + rng.uniform(-12, 12) * xx / w + rng.uniform(-12, 12) * yy / h
    return light + nrng.normal(0, rng.uniform(3, 10), (h, w))


def _ink(paper: np.ndarray, darkness: np.ndarray, level: float) -> np.ndarray:
    return paper * (1 - darkness) + level * darkness


def _specks(a: np.ndarray, rng: random.Random, dpi: int, n: int) -> None:
    """Dust: n dots of 0.2-0.6 mm across."""
    h, w = a.shape
    yy, xx = np.ogrid[0:h, 0:w]
    for _ in range(n):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.3) / 25.4 * dpi
        a[(xx - x) ** 2 + (yy - y) ** 2 <= max(r, 0.75) ** 2] = rng.uniform(20, 90)


def _staple(a: np.ndarray, rng: random.Random, dpi: int) -> np.ndarray:
    """A staple near a top corner: 10-13 mm of 0.5-0.8 mm wire, at an angle."""
    h, w = a.shape
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    length, angle = rng.uniform(10, 13) / 25.4 * dpi, math.radians(rng.uniform(-60, 60))
    x0 = rng.uniform(0.06, 0.15) * w
    x0 = x0 if rng.random() < 0.5 else w - x0 - length * abs(math.cos(angle))
    y0 = rng.uniform(0.06, 0.12) * h
    ImageDraw.Draw(img).line((x0, y0, x0 + length * math.cos(angle), y0 + length * math.sin(angle)),
                             fill=int(rng.uniform(30, 90)), width=max(1, round(rng.uniform(0.5, 0.8) / 25.4 * dpi)))
    return np.asarray(img).astype(np.float64)


def _lid_edge(a: np.ndarray, rng: random.Random) -> None:
    """The scanner lid's edge: a grey band of 0.5-2 % of the side along one to four edges."""
    h, w = a.shape
    for side in rng.sample(range(4), rng.randint(1, 4)):
        band, level = max(1, int(rng.uniform(0.005, 0.02) * min(h, w))), rng.uniform(110, 200)
        if side == 0:
            a[:, :band] = level
        elif side == 1:
            a[:, -band:] = level
        elif side == 2:
            a[:band, :] = level
        else:
            a[-band:, :] = level


def _text_at(text: str, size: float, where: str, size_pt: tuple[int, int], rng: random.Random, font="helv"):
    """A draw function: `text` at `size` pt, at the page's bottom centre, a bottom or top corner, or anywhere."""
    width = pymupdf.get_text_length(text, fontname=font, fontsize=size)
    w, h = size_pt
    margin = rng.uniform(0.06, 0.1)
    x = {"centre": (w - width) / 2, "left": w * margin, "right": w * (1 - margin) - width}
    y = {"bottom": h * (1 - margin), "top": h * margin + size}
    if where == "anywhere":
        point = (rng.uniform(0.1 * w, max(0.1 * w, 0.9 * w - width)), rng.uniform(0.15 * h, 0.85 * h))
    else:
        vertical, horizontal = where.split("-")
        point = (x[horizontal], y[vertical])
    return lambda page: page.insert_text(point, text, fontsize=size, fontname=font)


def _folio(rng: random.Random, size_pt, words: bool):
    """A page number of 1-3 digits at 9-11 pt where folios go; with `words`, also "Page 7" and "7 of 9"
    (a text layer tells those from a short line; a scan's ink cannot)."""
    n = rng.randint(1, 240)
    text = rng.choice([str(n), f"- {n} -"] + ([f"Page {n}", f"{n} of {n + rng.randint(0, 40)}"] if words else []))
    where = rng.choice(["bottom-centre", "bottom-centre", "bottom-right", "bottom-left", "top-right"])
    return _text_at(text, rng.uniform(9, 11), where, size_pt, rng)


def _chart(rng: random.Random, size_pt):
    """Bars on an axis, no labels."""
    w, h = size_pt

    def draw(page):
        base, left = h * 0.7, w * 0.15
        page.draw_line((left, base), (w * 0.85, base), color=(0, 0, 0), width=0.8)
        page.draw_line((left, base), (left, h * 0.25), color=(0, 0, 0), width=0.8)
        n = rng.randint(3, 6)
        step = (w * 0.7) / n
        for i in range(n):
            top = base - rng.uniform(0.1, 0.4) * h
            page.draw_rect(pymupdf.Rect(left + i * step + step * 0.2, top, left + (i + 1) * step - step * 0.2, base),
                           color=None, fill=(rng.uniform(0.1, 0.6),) * 3)
    return draw


def _signature(rng: random.Random, size_pt):
    """A scrawl of 40-70 mm in the lower third."""
    w, h = size_pt

    def draw(page):
        x0, y0, length = rng.uniform(0.15, 0.4) * w, rng.uniform(0.65, 0.8) * h, rng.uniform(40, 70) / 25.4 * 72
        wobble = rng.uniform(0.5, 0.9)
        points = [pymupdf.Point(x0 + length * t / 60, y0 + 10 * math.sin(t * wobble) - 6 * math.cos(t / 3))
                  for t in range(61)]
        page.draw_polyline(points, color=(0.05, 0.05, 0.3), width=rng.uniform(0.6, 1.2))
    return draw


def _encode(a: np.ndarray, fmt: str, quality: int = 75) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, "JPEG" if fmt == "jpeg" else "PNG",
                                                              **({"quality": quality} if fmt == "jpeg" else {}))
    return buf.getvalue()


def _in_pdf(image: bytes, size_pt) -> bytes:
    with pymupdf.open() as doc:
        page = doc.new_page(width=size_pt[0], height=size_pt[1])
        page.insert_image(page.rect, stream=image)
        return doc.tobytes()


def _vector(size_pt, draw) -> bytes:
    with pymupdf.open() as doc:
        draw(doc.new_page(width=size_pt[0], height=size_pt[1]))
        return doc.tobytes()


def make(kind: str, seed: int, size_pt: tuple[int, int] = LETTER, dpi: int | None = None) -> bytes:
    """One page of `kind` (NEAR_BLANK or SPARSE) as file bytes (PNG, JPEG or PDF), the same for one seed."""
    rng = random.Random(f"docintel-blankgen-{kind}-{seed}")
    dpi = dpi or rng.choice([150, 200, 300])
    if kind == "page_number_text":
        return _vector(size_pt, _folio(rng, size_pt, words=True))
    if kind == "line_pdf":
        return _vector(size_pt, _text_at(rng.choice(LINES), rng.uniform(9, 12), "anywhere", size_pt, rng))
    printed = {"page_number_scan": lambda: _folio(rng, size_pt, words=False),
               "line_scan": lambda: _text_at(rng.choice(LINES), rng.uniform(9, 12), "anywhere", size_pt, rng),
               "faint_line_scan": lambda: _text_at(rng.choice(LINES), rng.uniform(10, 12), "anywhere", size_pt, rng),
               "word_scan": lambda: _text_at(rng.choice(WORDS), rng.uniform(10, 14), "anywhere", size_pt, rng),
               "dark_page": lambda: _text_at(rng.choice(LINES), rng.uniform(10, 14), "anywhere", size_pt, rng),
               "chart_scan": lambda: _chart(rng, size_pt), "signature_scan": lambda: _signature(rng, size_pt)}
    draw = printed.get(kind, lambda: (lambda page: None))()
    darkness = _printed(size_pt, dpi, draw)
    a = _paper(darkness.shape, rng)
    if kind == "dark_page":  # light text on a dark page (a slide, a negative)
        a = 255 - a
        a = _ink(a, darkness, rng.uniform(200, 240))
    else:
        # faint: light grey print, 60-100 levels under the paper (show-through from a page's back is 10-30)
        level = a.mean() - rng.uniform(60, 100) if kind == "faint_line_scan" else rng.uniform(15, 60)
        a = _ink(a, darkness, level)
    if kind in ("specks", "everything"):
        _specks(a, rng, dpi, rng.randint(3, 12))
    if kind in ("staple", "everything"):
        a = _staple(a, rng, dpi)
    if kind in ("lid_edge", "everything"):
        _lid_edge(a, rng)
    if kind == "scan":
        return _encode(a, "png")
    image = _encode(a, "jpeg", rng.randint(20, 85))
    return _in_pdf(image, size_pt) if kind in ("scan_pdf", "everything") or rng.random() < 0.3 else image

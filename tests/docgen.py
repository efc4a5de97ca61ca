"""Test inputs drawn on the spot: PDFs with text, a table and a bar chart (PyMuPDF), and PNG, JPEG
and multi-frame TIFF pages (Pillow). Nothing is downloaded; every generator returns what it wrote."""
from __future__ import annotations

import io
from pathlib import Path

import pymupdf
from PIL import Image, ImageDraw

LETTER = (612, 792)  # points


def _invoice_page(page: pymupdf.Page, title: str, total: str) -> None:
    page.insert_text((72, 72), title, fontsize=20)
    page.insert_text((72, 100), "Date: 2026-03-14", fontsize=11)
    # a table: header + three rows, ruled
    x0, y0, widths, h = 72, 140, [220, 80, 100], 22
    rows = [("Item", "Qty", "Amount"), ("Paper, A4", "10", "45.00"), ("Toner", "2", "1,150.00"),
            ("Delivery", "1", "39.50")]
    for r, cells in enumerate(rows):
        x = x0
        for w, cell in zip(widths, cells):
            page.draw_rect(pymupdf.Rect(x, y0 + r * h, x + w, y0 + (r + 1) * h), color=(0, 0, 0), width=0.6)
            page.insert_text((x + 4, y0 + r * h + 15), cell, fontsize=10)
            x += w
    page.insert_text((72, y0 + 5 * h + 10), f"Total: {total}", fontsize=14)


def _chart_page(page: pymupdf.Page, values: dict[str, float]) -> None:
    page.insert_text((72, 72), "Revenue by region (million EUR)", fontsize=16)
    base, left, scale = 500, 100, 3.0
    page.draw_line((left, base), (left + 60 * len(values) + 20, base), color=(0, 0, 0))
    for i, (label, value) in enumerate(values.items()):
        x = left + 20 + i * 60
        page.draw_rect(pymupdf.Rect(x, base - value * scale, x + 40, base), color=(0, 0, 0), fill=(0.2, 0.4, 0.8))
        page.insert_text((x + 2, base - value * scale - 6), f"{value:g}", fontsize=10)
        page.insert_text((x + 2, base + 14), label, fontsize=10)


def make_pdf(path: Path, pages: int = 2, title: str = "Invoice 1042", total: str = "1,234.50",
             chart: bool = True, extra_text: str | None = None) -> Path:
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=LETTER[0], height=LETTER[1])
        if i == 1 and chart:
            _chart_page(page, {"North": 42, "South": 77, "East": 58, "West": 31})
        else:
            _invoice_page(page, title if i == 0 else f"{title} (page {i + 1})", total)
        if extra_text:
            page.insert_text((72, 700), extra_text, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path)
    return path



def make_hanging_page_pdf(path: Path, depth: int = 8, fanout: int = 10) -> Path:
    """A poison PDF: page 0 hangs the renderer, page 1 ("quick page") renders at once. Page 0 draws a
    form that draws the form below it `fanout` times, `depth` forms deep, over one filled shape: the
    file is 2 kB and the page fanout**depth fills (measured on a CPU: 10**4 fills render in about 20 s,
    10**5 in minutes; the default 10**8 renders for days). Nothing but a kill stops it."""
    doc = pymupdf.open()
    page = doc.new_page(width=LETTER[0], height=LETTER[1])
    form = doc.get_new_xref()
    doc.update_object(form, "<</Type/XObject/Subtype/Form/BBox[0 0 612 792]>>")
    doc.update_stream(form, b"0.5 0.5 0.9 rg 20 20 m 600 700 l 300 40 l 40 770 l f")
    for _ in range(depth):
        outer = doc.get_new_xref()
        doc.update_object(outer, "<</Type/XObject/Subtype/Form/BBox[0 0 612 792]"
                                 f"/Resources<</XObject<</F {form} 0 R>>>>>>")
        doc.update_stream(outer, b"/F Do\n" * fanout)
        form = outer
    contents = doc.get_new_xref()
    doc.update_object(contents, "<<>>")
    doc.update_stream(contents, b"/F Do")
    doc.xref_set_key(page.xref, "Resources", f"<</XObject<</F {form} 0 R>>>>")
    doc.xref_set_key(page.xref, "Contents", f"{contents} 0 R")
    doc.new_page(width=LETTER[0], height=LETTER[1]).insert_text((72, 72), "quick page")
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path)
    return path

def _text_image(text: str, size=(600, 800)) -> Image.Image:
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.text((40, 40), text, fill="black")
    draw.rectangle((40, 100, 300, 160), outline="black")
    return img


def make_png(path: Path, text: str = "Receipt  Total 12.99") -> Path:
    _text_image(text).save(path, "PNG")
    return path


def make_jpeg(path: Path, text: str = "Memo  2026-01-05") -> Path:
    _text_image(text, (800, 600)).save(path, "JPEG", quality=85)
    return path


def make_tiff(path: Path, frames: int = 3) -> Path:
    images = [_text_image(f"Scanned page {i + 1}") for i in range(frames)]
    images[0].save(path, "TIFF", save_all=True, append_images=images[1:])
    return path


def make_corpus(folder: Path) -> dict[str, int]:
    """A mixed folder; returns {file name: expected page count}."""
    folder.mkdir(parents=True, exist_ok=True)
    make_pdf(folder / "invoice.pdf", pages=2)
    make_pdf(folder / "report.pdf", pages=3, title="Annual report 2025", total="98,000.00")
    make_png(folder / "receipt.png")
    make_jpeg(folder / "memo.jpg")
    make_tiff(folder / "scan.tiff", frames=3)
    return {"invoice.pdf": 2, "report.pdf": 3, "receipt.png": 1, "memo.jpg": 1, "scan.tiff": 3}


# ---- crafted inputs (tests/test_pages.py): documents built to trip a renderer up ----------------

SCRIPTS = {"greek": "Τιμολόγιο αριθμός 42", "cyrillic": "Счёт-фактура № 42", "cjk": "发票号码 42", "arabic": "فاتورة رقم ٤٢"}
EMBEDDED_SECRET = b"EMBEDDED-SECRET-PAYLOAD"


def with_junk_before_header(pdf: bytes) -> bytes:
    """A PDF as a mail gateway leaves it: a header before `%PDF-`, past its first KiB."""
    return b"From: scanner@example.com\r\nSubject: scan\r\n\r\n" + b"x" * 2000 + b"\n" + pdf


def javascript_pdf() -> bytes:
    """One page of visible text, an embedded file and JavaScript to run on opening."""
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Visible text")
    doc.embfile_add("secret.txt", EMBEDDED_SECRET)
    doc.xref_set_key(doc.pdf_catalog(), "OpenAction", '<</S/JavaScript/JS(app.alert\\("pwned"\\))>>')
    return doc.tobytes()


def scripts_pdf() -> bytes:
    """A page of text in Greek, Cyrillic, Chinese and Arabic."""
    doc = pymupdf.open()
    page = doc.new_page()
    for i, (name, text) in enumerate(SCRIPTS.items()):
        page.insert_text((72, 72 + 24 * i), text, fontname="china-s" if name == "cjk" else "helv", fontsize=12)
    return doc.tobytes()


def huge_page_pdf() -> bytes:
    """One word on a page of 200 x 200 inches."""
    doc = pymupdf.open()
    doc.new_page(width=200 * 72, height=200 * 72).insert_text((72, 72), "huge")
    return doc.tobytes()


def slow_page_pdf(path: Path, curves: int = 2000) -> Path:
    """Page 0 takes seconds to render (thousands of filled, overlapping Bezier curves); page 1 is quick."""
    import random

    doc = pymupdf.open()
    shape = doc.new_page().new_shape()
    rnd = random.Random(1)
    for _ in range(curves):
        x, y = rnd.uniform(0, 612), rnd.uniform(0, 792)
        shape.draw_bezier((x, y), (x + 300, y - 200), (x - 200, y + 300), (612 - x, 792 - y))
    shape.finish(width=3, color=(0, 0, 0), fill=(0.5, 0.5, 0.9), closePath=True)
    shape.commit()
    doc.new_page().insert_text((72, 72), "quick page")
    doc.save(path)
    return path


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()

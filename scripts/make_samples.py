"""Draw the sample documents in samples/ (invoice, chart, scan, report, receipt) and their questions.

    python scripts/make_samples.py [FOLDER]      # default: samples/ next to this script's parent

Everything is drawn here, with PyMuPDF's built-in Base-14 fonts (Helvetica, Times, Courier: PDFs
name them and embed nothing) and Pillow; the noise comes from a seeded random.Random, so the
output is the same bytes on every run with the same PyMuPDF and Pillow (tests/test_samples.py
checks it). The companies, people and numbers are invented. The files are what a first-time
user runs on (README, "The first ten minutes"), so they are kept small (all together ~0.4 MB)
and each one exercises a different path: a text layer with a table (invoice.pdf), a raster chart
(chart.png), an image-only PDF with no text layer (scan.pdf), several pages (report.pdf) and a
photographed image (receipt.png).
"""
from __future__ import annotations

import io
import json
import random
import sys
from pathlib import Path

import pymupdf
from PIL import Image, ImageChops, ImageDraw, ImageFilter

# Fixed metadata: PyMuPDF would otherwise leave dates empty, and a producer naming the version
# would make the bytes change with every upgrade for no reason.
CREATED = "D:20260301090000Z"
GREY, DARK, BLUE, ORANGE = (0.45, 0.45, 0.45), (0.12, 0.12, 0.12), (0.16, 0.36, 0.62), (0.91, 0.53, 0.15)

INVOICE_ITEMS = [  # description, quantity, unit price (GBP)
    ("A4 copier paper, 80 gsm (box of 5 reams)", 4, 24.50),
    ("Black toner cartridge TN-2420", 2, 61.90),
    ("Ring binders, A4, blue (pack of 10)", 3, 12.75),
    ("Desk organiser, bamboo", 1, 18.40),
    ("Delivery", 1, 7.50),
]
CHART = {"Q1": (356, 412), "Q2": (401, 468), "Q3": (377, 391), "Q4": (442, 527)}  # 2024, 2025
RECEIPT_ITEMS = [("BANANAS 1.02KG", 1.22), ("SOURDOUGH LOAF", 3.40), ("FREE RANGE EGGS X6", 2.85),
                 ("CHEDDAR 400G", 4.15), ("OAT MILK 1L", 1.79), ("TOMATOES VINE", 2.30)]

QUESTIONS = [
    ("invoice.pdf", ["What is the invoice number?", "What is the total amount due?",
                     "What is the unit price of the black toner cartridge?", "When is payment due?"]),
    ("chart.png", ["What was the revenue in Q4 2025?", "Which quarter had the lowest revenue in 2025?",
                   "By how much did Q2 revenue grow from 2024 to 2025?"]),
    ("scan.pdf", ["What is the reference number of this letter?", "What is the new monthly service charge?",
                  "From which date does the new charge apply?"]),
    ("report.pdf", ["How many visitors did the library have in 2025?", "What was the total income in 2025?",
                    "In which quarter were the most books loaned?", "What is planned for 2026?"]),
    ("receipt.png", ["What is the total paid?", "How much did the sourdough loaf cost?",
                     "On what date was this purchase made?"]),
]


# ---- drawing helpers ---------------------------------------------------------------------------

def _text(page, x, y, text, size=10, font="helv", color=DARK, align="left"):
    """One line of text at baseline y; align right/center to x."""
    width = pymupdf.get_text_length(text, fontname=font, fontsize=size)
    x = x - width if align == "right" else x - width / 2 if align == "center" else x
    page.insert_text((x, y), text, fontsize=size, fontname=font, color=color)


def _paragraph(page, rect, text, size=10.5, font="tiro"):
    """Wrapped text in a box; returns the y below it (insert_textbox reports the space left)."""
    left = page.insert_textbox(pymupdf.Rect(*rect), text, fontsize=size, fontname=font, color=DARK,
                               lineheight=1.35)
    if left < 0:
        raise ValueError(f"text does not fit in {rect}: {text[:40]}...")
    return rect[3] - left


def _table(page, x, y, widths, rows, size=9.5, header_fill=(0.9, 0.92, 0.95), numeric=()):
    """A ruled table, header row shaded, numeric columns right-aligned; returns the y below it."""
    h = size * 2.1
    for r, cells in enumerate(rows):
        cx = x
        if r == 0:
            page.draw_rect(pymupdf.Rect(x, y, x + sum(widths), y + h), color=None, fill=header_fill)
        for c, (w, cell) in enumerate(zip(widths, cells)):
            page.draw_rect(pymupdf.Rect(cx, y, cx + w, y + h), color=GREY, width=0.5)
            font = "hebo" if r == 0 else "helv"
            if c in numeric:
                _text(page, cx + w - 5, y + h * 0.68, cell, size, font, align="right")
            else:
                _text(page, cx + 5, y + h * 0.68, cell, size, font)
            cx += w
        y += h
    return y


def _new_pdf(title: str):
    doc = pymupdf.open()
    doc.set_metadata({"title": title, "author": "docintel samples", "creator": "scripts/make_samples.py",
                      "producer": "PyMuPDF", "creationDate": CREATED, "modDate": CREATED})
    return doc


def _pdf_bytes(doc) -> bytes:
    # garbage/deflate: small files; no_new_id: no random /ID, so the bytes repeat
    return doc.tobytes(garbage=4, deflate=True, no_new_id=True)


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _render(page, scale: float, gray: bool = False) -> Image.Image:
    pix = page.get_pixmap(matrix=pymupdf.Matrix(scale, scale), alpha=False,
                          colorspace=pymupdf.csGRAY if gray else pymupdf.csRGB)
    return Image.frombytes("L" if gray else "RGB", (pix.width, pix.height), pix.samples)


def _grain(img: Image.Image, rng: random.Random, amount: int) -> Image.Image:
    """Darken each pixel by 0..amount at random: sensor/paper grain."""
    noise = Image.frombytes("L", img.size, rng.randbytes(img.size[0] * img.size[1]))
    noise = noise.point(lambda v: v * amount // 255)
    if img.mode == "RGB":
        noise = Image.merge("RGB", (noise,) * 3)
    return ImageChops.subtract(img, noise)


def _lighting(size, low: int, centre=(0.35, 0.3)) -> Image.Image:
    """Brightness falling from `centre` (fractions) towards the corners: 255 there, `low` far away."""
    w, h = size
    glow = Image.radial_gradient("L").point(lambda v: 255 - v * (255 - low) // 255)  # 256x256, bright middle
    big = glow.resize((int(w * 2.2), int(h * 2.2)), Image.Resampling.BILINEAR)
    cx, cy = int(big.width / 2 - centre[0] * w), int(big.height / 2 - centre[1] * h)
    return big.crop((cx, cy, cx + w, cy + h))


# ---- the samples -------------------------------------------------------------------------------

def invoice() -> bytes:
    doc = _new_pdf("Invoice INV-2026-0417")
    page = doc.new_page(width=595, height=842)  # A4
    page.draw_rect(pymupdf.Rect(0, 0, 595, 8), color=None, fill=BLUE)
    _text(page, 50, 70, "Harbour Lane Stationery Ltd.", 16, "hebo", BLUE)
    for i, line in enumerate(["14 Harbour Lane, Bristol BS1 4QD", "VAT reg. GB 000 1234 56",
                              "accounts@harbourlane.example"]):
        _text(page, 50, 88 + 13 * i, line, 9, color=GREY)
    _text(page, 545, 72, "INVOICE", 24, "hebo", DARK, "right")
    facts = [("Invoice no.", "INV-2026-0417"), ("Date", "14 March 2026"), ("Due date", "13 April 2026"),
             ("Customer no.", "C-0982")]
    for i, (k, v) in enumerate(facts):
        _text(page, 420, 100 + 14 * i, k, 9, color=GREY)
        _text(page, 545, 100 + 14 * i, v, 9, "hebo", align="right")
    _text(page, 50, 180, "Bill to", 9, "hebo", GREY)
    for i, line in enumerate(["Fernwood Dental Clinic", "22 Orchard Road", "Leeds LS6 2QT"]):
        _text(page, 50, 195 + 13 * i, line, 10)
    rows = [("Description", "Qty", "Unit price", "Amount")]
    subtotal = 0.0
    for desc, qty, unit in INVOICE_ITEMS:
        amount = round(qty * unit, 2)
        subtotal += amount
        rows.append((desc, str(qty), f"{unit:.2f}", f"{amount:.2f}"))
    y = _table(page, 50, 260, [265, 50, 90, 90], rows, numeric=(1, 2, 3))
    vat = round(subtotal * 0.20, 2)
    for i, (k, v, font) in enumerate([("Subtotal", f"{subtotal:.2f}", "helv"), ("VAT 20%", f"{vat:.2f}", "helv"),
                                      ("Total due (GBP)", f"£{subtotal + vat:,.2f}", "hebo")]):
        _text(page, 450, y + 20 + 16 * i, k, 10, font, align="right")
        _text(page, 545, y + 20 + 16 * i, v, 10, font, align="right")
    _paragraph(page, (50, y + 90, 545, y + 160),
               "Payment within 30 days by bank transfer to Harbour Lane Stationery Ltd., sort code 00-00-00, "
               "account 12345678, quoting the invoice number. Thank you for your order.", 9, "helv")
    _text(page, 297, 810, "Harbour Lane Stationery Ltd. is a fictional company (docintel sample).", 7, color=GREY,
          align="center")
    return _pdf_bytes(doc)


def chart() -> bytes:
    """A grouped bar chart drawn as vectors, then rasterised: a chart the model sees as pixels only."""
    doc = pymupdf.open()
    page = doc.new_page(width=480, height=320)
    _text(page, 240, 28, "Quarterly revenue (thousand EUR)", 14, "hebo", align="center")
    left, base, top, scale = 60, 270, 50, 0.38
    for tick in range(0, 601, 100):
        y = base - tick * scale
        page.draw_line((left, y), (455, y), color=(0.85, 0.85, 0.85), width=0.5)
        _text(page, left - 6, y + 3, str(tick), 8, color=GREY, align="right")
    page.draw_line((left, base), (455, base), color=DARK, width=0.8)
    for i, (quarter, values) in enumerate(CHART.items()):
        x = left + 20 + i * 96
        for j, (value, color) in enumerate(zip(values, (GREY, BLUE))):
            bx = x + j * 30
            page.draw_rect(pymupdf.Rect(bx, base - value * scale, bx + 28, base), color=None, fill=color)
            _text(page, bx + 14, base - value * scale - 4, str(value), 8, align="center")
        _text(page, x + 29, base + 14, quarter, 10, align="center")
    for j, (label, color) in enumerate((("2024", GREY), ("2025", BLUE))):
        page.draw_rect(pymupdf.Rect(370 + j * 48, 40, 380 + j * 48, 50), color=None, fill=color)
        _text(page, 384 + j * 48, 49, label, 9)
    img = _render(page, 1.6)
    # few colours: quantise so the PNG stays small (anti-aliased edges keep ~64 shades)
    return _png_bytes(img.quantize(64, dither=Image.Dither.NONE))


def scan() -> bytes:
    """A typed letter, printed and scanned: greyscale, a little rotated, grain and specks, as one
    JPEG image on a PDF page. The PDF has no text layer: grounding answers null ("no text layer")."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)  # Letter
    _text(page, 72, 80, "MAPLE COURT PROPERTY MANAGEMENT", 13, "tibo")
    _text(page, 72, 96, "7 Elm Street, Springfield", 10, "tiro")
    _text(page, 540, 130, "Ref: MC/2026/118", 10, "tiro", align="right")
    _text(page, 540, 144, "2 February 2026", 10, "tiro", align="right")
    _text(page, 72, 170, "Ms. Jordan Avery, Flat 12, Maple Court", 10, "tiro")
    _text(page, 72, 215, "Notice of service charge for 2026", 12, "tibo")
    body = ("Dear Ms. Avery,\n\nFollowing the residents' meeting of 15 January 2026, the annual budget for "
            "the maintenance of Maple Court has been approved. The cost of lift servicing, cleaning of the "
            "common areas and building insurance has risen this year.\n\nYour monthly service charge will "
            "therefore change from $184.00 to $197.50, starting 1 April 2026. Payments are collected on the "
            "first working day of each month by standing order; you do not need to take any action if you "
            "already pay by standing order.\n\nIf you have questions about the budget, please contact the "
            "office at the address above, quoting the reference number.\n\nYours sincerely,\n\n\n"
            "R. Castillo\nBuilding Manager")
    _paragraph(page, (72, 235, 540, 640), body, 11)
    img = _render(page, 100 / 72, gray=True)  # 100 dpi: a cheap office scanner
    rng = random.Random(118)
    img = img.filter(ImageFilter.GaussianBlur(0.6))  # toner spread
    img = img.rotate(-1.3, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=235)
    img = ImageChops.multiply(img, _lighting(img.size, 222, (0.7, 0.2)))  # uneven scanner lamp
    img = _grain(img, rng, 28)
    draw = ImageDraw.Draw(img)
    for _ in range(160):  # dust specks
        x, y, r = rng.randrange(img.width), rng.randrange(img.height), rng.choice((0.5, 1, 1, 1.5))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=rng.randrange(40, 120))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=58)
    out = _new_pdf("Scanned letter")
    out.new_page(width=612, height=792).insert_image(pymupdf.Rect(0, 0, 612, 792), stream=buf.getvalue())
    return _pdf_bytes(out)


REPORT_PAGES = [
    ("1. Summary",
     "Riverside Community Library served its neighbourhood for the 41st year in 2025. The library "
     "welcomed 48,310 visitors, 6% more than in 2024, and loaned 61,942 books, e-books and audiobooks. "
     "The reading room was refurbished in the summer and reopened on 1 September with twelve new study "
     "places and better lighting.\n\nThis report summarises the year's use of the library, its finances "
     "and the plans of the board for 2026. All figures are for the calendar year.", None),
    ("2. Visitors and loans",
     "Visitor numbers rose in every quarter except the third, when the reading room was closed for "
     "refurbishment. Loans were highest in the fourth quarter, helped by the winter reading challenge "
     "for children.",
     [("Quarter", "Visitors", "Loans", "Events"), ("Q1", "11,870", "15,204", "14"), ("Q2", "12,455", "14,980", "17"),
      ("Q3", "10,120", "13,611", "9"), ("Q4", "13,865", "18,147", "21"), ("Total", "48,310", "61,942", "61")]),
    ("3. Finances",
     "The library is funded by the city council, a grant from the Riverside Trust, and donations. "
     "Expenditure included the one-off cost of the reading room refurbishment, which was covered by "
     "the trust's grant.",
     [("Item", "2024 (EUR)", "2025 (EUR)"), ("Council funding", "182,000", "186,500"),
      ("Riverside Trust grant", "20,000", "45,000"), ("Donations and fees", "9,340", "11,260"),
      ("Total income", "211,340", "242,760"), ("Staff", "148,900", "153,200"),
      ("Books and media", "38,450", "40,100"), ("Building and refurbishment", "19,870", "47,310"),
      ("Total expenditure", "207,220", "240,610")]),
    ("4. Plans for 2026",
     "In 2026 the board plans to extend opening hours on Saturdays until 18:00, to start a weekly "
     "digital skills clinic for older residents, and to replace the self-service loan machines. "
     "The budget for 2026 foresees a total income of EUR 238,000.\n\nThe board thanks the 37 volunteers "
     "who gave 2,150 hours of their time in 2025.", None),
]


def report() -> bytes:
    doc = _new_pdf("Riverside Community Library - Annual Report 2025")
    for n, (heading, text, table) in enumerate(REPORT_PAGES, 1):
        page = doc.new_page(width=595, height=842)
        y = 70
        if n == 1:
            _text(page, 60, 110, "Riverside Community Library", 24, "tibo", BLUE)
            _text(page, 60, 140, "Annual Report 2025", 18, "tiro")
            page.draw_line((60, 160), (535, 160), color=BLUE, width=1.5)
            y = 200
        else:
            _text(page, 60, 50, "Riverside Community Library - Annual Report 2025", 8, color=GREY)
        _text(page, 60, y, heading, 15, "hebo")
        y = _paragraph(page, (60, y + 14, 535, y + 220), text)
        if table:
            widths = [200, 110, 110, 60][:len(table[0])]
            _table(page, 60, y + 16, widths, table, numeric=tuple(range(1, len(widths))))
        _text(page, 297, 810, f"Page {n} of {len(REPORT_PAGES)}", 8, color=GREY, align="center")
    return _pdf_bytes(doc)


def receipt() -> bytes:
    """A till receipt photographed on a table: slightly rotated, lit from one side, grainy."""
    doc = pymupdf.open()
    lines = ["GREEN STREET MARKET", "21 Green Street, Portland", "Tel 555-0142", "",
             "12/03/2026  17:42    TILL 3", "-" * 28]
    lines += [f"{name:<20}{price:>8.2f}" for name, price in RECEIPT_ITEMS]
    total = sum(p for _, p in RECEIPT_ITEMS)
    lines += ["-" * 28, f"{'TOTAL':<20}{total:>8.2f}", f"{'CARD':<20}{total:>8.2f}", f"{'CHANGE':<20}{0:>8.2f}", "",
              "ITEMS 6", "THANK YOU FOR SHOPPING LOCAL"]
    page = doc.new_page(width=210, height=40 + 13 * len(lines))
    for i, line in enumerate(lines):
        bold = i == 0 or line.startswith("TOTAL")
        if i < 3 or line.startswith("THANK"):
            _text(page, 105, 30 + 13 * i, line, 9, "cobo" if bold else "cour", align="center")
        else:
            _text(page, 14, 30 + 13 * i, line, 9, "cobo" if bold else "cour")
    paper = _render(page, 1.9).filter(ImageFilter.GaussianBlur(0.7))
    table = Image.new("RGB", (paper.width + 160, paper.height + 120), (122, 98, 74))  # a wooden desk
    table.paste(paper, (80, 50))
    img = table.rotate(3.2, resample=Image.Resampling.BICUBIC, fillcolor=(122, 98, 74))
    img = ImageChops.multiply(img, Image.merge("RGB", (_lighting(img.size, 150, (0.3, 0.25)),) * 3))
    img = _grain(img, random.Random(4217), 16)
    # quantised to a palette: grain makes full-colour PNGs large; a photo-like look survives it
    return _png_bytes(img.quantize(64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))


SAMPLES = {"invoice.pdf": invoice, "chart.png": chart, "scan.pdf": scan, "report.pdf": report,
           "receipt.png": receipt}


def questions_jsonl() -> bytes:
    return "".join(json.dumps({"path": p, "questions": q}, ensure_ascii=False) + "\n" for p, q in QUESTIONS).encode()


def build(folder: Path) -> dict[str, int]:
    """Write every sample and questions.jsonl into `folder`; {file name: bytes written}."""
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {name: make() for name, make in SAMPLES.items()}
    outputs["questions.jsonl"] = questions_jsonl()
    for name, data in outputs.items():
        (folder / name).write_bytes(data)
    return {name: len(data) for name, data in outputs.items()}


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "samples"
    sizes = build(folder)
    for name, size in sizes.items():
        print(f"{folder / name}  {size:,} bytes")
    print(f"total {sum(sizes.values()):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

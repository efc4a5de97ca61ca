"""pipeline/answers/grounding.py on pages drawn with PyMuPDF at known positions: boxes agree with where the
text was put (and with the ink of the rendered page, rotated pages included)."""
from __future__ import annotations

import io
from decimal import Decimal

import pyarrow as pa
import pymupdf
import pytest
from PIL import Image, ImageDraw

from pipeline.answers.grounding import Box, Word, ground, locate, locate_all, number_values, page_words, words_to_columns

W, H = 600.0, 800.0
FONT = pymupdf.Font("helv")
TOL = 0.002  # of the page: about 1.2 pt across, 1.6 pt down


def new_page(lines: list[tuple[float, float, str]], fontsize: float = 12, width=W, height=H):
    doc = pymupdf.open()
    page = doc.new_page(width=width, height=height)
    for x, y, text in lines:
        page.insert_text((x, y), text, fontsize=fontsize)
    return doc, page


def text_box(x: float, y: float, text: str, fontsize: float = 12, width=W, height=H) -> Box:
    """Where PyMuPDF puts `text` written at baseline point (x, y), as fractions of the page."""
    return Box(x / width, (y - FONT.ascender * fontsize) / height,
               (x + FONT.text_length(text, fontsize=fontsize)) / width, (y - FONT.descender * fontsize) / height)


def close(got, expected, tol=TOL) -> bool:
    return len(got) == len(expected) and all(abs(a - b) <= tol
                                             for g, e in zip(got, expected) for a, b in zip(g, e))


def test_page_words_are_normalised_and_numbered_by_line():
    doc, page = new_page([(72, 100, "Invoice 1042"), (72, 130, "Date: 2026-03-14")])
    words = page_words(page)
    assert [w.text for w in words] == ["Invoice", "1042", "Date:", "2026-03-14"]
    assert [w.line for w in words] == [0, 0, 1, 1]
    assert close([words[0][1:5]], [text_box(72, 100, "Invoice")])
    assert all(0 <= v <= 1 for w in words for v in w[1:5])


def test_exact_answer_on_one_line_is_the_union_of_its_words():
    doc, page = new_page([(72, 100, "Invoice 1042 from Acme")])
    boxes = locate("Invoice 1042", page_words(page))
    assert close(boxes, [text_box(72, 100, "Invoice 1042")])


def test_answer_split_across_lines_gives_one_box_per_line():
    doc, page = new_page([(72, 100, "Sold by Acme Corporation"), (72, 116, "Berlin, Germany")])
    start = 72 + FONT.text_length("Sold by ", fontsize=12)
    expected = [Box(start / W, text_box(72, 100, "x").y0, text_box(72, 100, "Sold by Acme Corporation").x1,
                    text_box(72, 100, "x").y1), text_box(72, 116, "Berlin,")]
    assert close(locate("Acme Corporation Berlin", page_words(page)), expected)
    # the model wrote it on one line, with a newline, or without the space: all the same region
    for answer in ("Acme Corporation\nBerlin", "acme corporation  berlin", "AcmeCorporation Berlin"):
        assert close(locate(answer, page_words(page)), expected), answer


def test_case_and_unicode_normalisation():
    doc, page = new_page([(72, 100, "TOTAL DUE"), (72, 200, "Total due")])
    words = page_words(page)
    assert close(locate("Total due", words), [text_box(72, 200, "Total due")])  # exact beats normalised
    assert close(locate("total DUE", words), [text_box(72, 100, "TOTAL DUE")])  # normalised: the first
    synthetic = [Word("ﬁnance", .1, .1, .2, .12, 0), Word("１２３", .3, .1, .4, .12, 0),
                 Word("Straße", .1, .2, .2, .22, 1)]
    assert locate("Finance 123", synthetic) == [Box(.1, .1, .4, .12)]  # NFKC: ligature, full-width digits
    assert locate("STRASSE", synthetic) == [Box(.1, .2, .2, .22)]  # casefold


def test_amounts_with_separators_and_currency():
    doc, page = new_page([(72, 100, "Subtotal: 1,150.00"), (72, 120, "Total: $1,234.50"),
                          (72, 140, "Summe 1.234,56 EUR"), (72, 160, "Montant 1 234,57 €")])
    words = page_words(page)
    total = text_box(72 + FONT.text_length("Total: ", fontsize=12), 120, "$1,234.50")
    for answer in ("$1,234.50", "1234.50", "1234.5", "1,234.50", "1 234.50", "$ 1234.50"):
        assert close(locate(answer, words), [total]), answer
    summe = text_box(72 + FONT.text_length("Summe ", fontsize=12), 140, "1.234,56")
    assert close(locate("1234.56", words), [summe])
    line_end = text_box(72, 140, "Summe 1.234,56 EUR").x1
    assert close(locate("1.234,56 EUR", words), [Box(summe.x0, summe.y0, line_end, summe.y1)])
    # grouped by a space: two words on the page, one number
    montant = text_box(72 + FONT.text_length("Montant ", fontsize=12), 160, "1 234,57")
    assert close(locate("1234.57", words), [montant])
    assert close(locate("€1,234.57", words), [montant])  # the symbol is dropped: the number's box
    # part of a number is not the number
    for answer in ("234.50", "50", "1234", "34.5", "1,234"):
        assert locate(answer, words) == [], answer


def test_numbers_inside_words_first_then_grouped_by_spaces():
    words = [Word("Qty", 0, 0, .1, .1, 0), Word("2", .2, 0, .25, .1, 0), Word("100.00", .3, 0, .4, .1, 0)]
    assert locate("$100", words) == [Box(.3, 0, .4, .1)]  # not "2 100.00" read as 2100
    assert locate("2100", words) == [Box(.2, 0, .4, .1)]  # only when nothing else matches
    words += [Word("Total", 0, .2, .1, .3, 1), Word("2100", .2, .2, .3, .3, 1)]
    assert locate("$2100", words) == [Box(.2, .2, .3, .3)]


def test_number_readings():
    assert number_values("1,234.50") == {1234.5}
    assert number_values("1.234,50") == {1234.5}
    assert number_values("1,234") == {Decimal("1234"), Decimal("1.234")}
    assert number_values("1 234,50") == {1234.5}
    assert number_values("1'234.50") == {1234.5}
    assert number_values("14.03.2026") == set()  # a date: no reading
    assert number_values("12,34.5") == set()  # groups after the first have 3 digits
    assert number_values("1,234'567") == set()  # one kind of grouping mark
    assert number_values("") == number_values("12a") == number_values("1,,2") == set()


def test_word_boundaries():
    words = [Word("Invoices", 0, 0, .1, .1, 0), Word("10420", .2, 0, .3, .1, 0), Word("12kg", .4, 0, .5, .1, 0),
             Word("东京都千代田区", .6, 0, .9, .1, 0)]
    assert locate("Invoice", words) == []
    assert locate("042", words) == [] and locate("1042", words) == []
    assert locate("12", words) == [Box(.4, 0, .5, .1)]  # digits next to letters: a boundary
    assert locate("千代田区", words) == [Box(.6, 0, .9, .1)]  # CJK is written without spaces


def test_all_occurrences_first_in_reading_order():
    doc, page = new_page([(72, 300, "Paid 2026"), (72, 100, "Year 2026")])  # drawn out of order
    words = page_words(page)
    everything = locate_all("2026", words)
    assert len(everything) == 2
    first = locate("2026", words)
    assert first == everything[0]  # PyMuPDF's extraction order: here the order it was written
    assert close(first, [text_box(72 + FONT.text_length("Paid ", fontsize=12), 300, "2026")])


def test_not_on_the_page_and_ground():
    doc, page = new_page([(72, 100, "Invoice 1042")])
    words = page_words(page)
    assert locate("Zurich", words) == []
    assert ground("Zurich", words, has_text_layer=True) == ([], False)
    boxes, grounded = ground("1042", words, has_text_layer=True)
    expected = text_box(72 + FONT.text_length("Invoice ", fontsize=12), 100, "1042")
    assert grounded is True and close(boxes, [expected])
    assert ground(None, words, True) == (None, None) and ground("  ", words, True) == (None, None)
    assert ground("1042", [], has_text_layer=False) == (None, None)


def _ink_box(page) -> Box:
    """Bounding box of the dark pixels of the rendered (displayed) page, as fractions."""
    pix = page.get_pixmap(matrix=pymupdf.Matrix(3, 3), colorspace=pymupdf.csGRAY, alpha=False)
    img = Image.frombytes("L", (pix.width, pix.height), pix.samples)
    x0, y0, x1, y1 = img.point(lambda v: 255 if v < 128 else 0).getbbox()
    return Box(x0 / pix.width, y0 / pix.height, x1 / pix.width, y1 / pix.height)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotated_page_boxes_are_in_the_displayed_frame(rotation):
    doc, page = new_page([(100, 200, "Rotated 4711")])
    page.set_rotation(rotation)
    boxes = locate("Rotated 4711", page_words(page))
    assert len(boxes) == 1
    box = boxes[0]
    unrotated = text_box(100, 200, "Rotated 4711")  # on the W x H page before rotation
    expected = {0: unrotated,
                90: Box(1 - unrotated.y1, unrotated.x0, 1 - unrotated.y0, unrotated.x1),
                180: Box(1 - unrotated.x1, 1 - unrotated.y1, 1 - unrotated.x0, 1 - unrotated.y0),
                270: Box(unrotated.y0, 1 - unrotated.x1, unrotated.y1, 1 - unrotated.x0)}[rotation]
    assert close([box], [expected])
    # and the ink of the page as rendered (what the model sees) lies inside the box
    ink = _ink_box(page)
    assert box.x0 - TOL <= ink.x0 and ink.x1 <= box.x1 + TOL and box.y0 - TOL <= ink.y0 and ink.y1 <= box.y1 + TOL
    # and fills it along the line of text (the box is not just large)
    assert max(ink.x1 - ink.x0, ink.y1 - ink.y0) > 0.9 * max(box.x1 - box.x0, box.y1 - box.y0)


def test_cropped_page_uses_the_cropbox_frame():
    doc, page = new_page([(100, 200, "Cropped 99"), (10, 20, "cut away")])
    page.set_cropbox(pymupdf.Rect(50, 50, 550, 750))
    words = page_words(page)
    assert [w.text for w in words] == ["Cropped", "99"]
    assert close(locate("Cropped 99", words), [text_box(50, 150, "Cropped 99", width=500, height=700)])
    ink = _ink_box(page)
    box = locate("Cropped 99", words)[0]
    assert box.x0 - TOL <= ink.x0 and ink.x1 <= box.x1 + TOL


def test_image_only_pdf_has_no_text_layer():
    img = Image.new("RGB", (600, 800), "white")
    ImageDraw.Draw(img).text((72, 100), "Invoice 1042 Total 1,234.50", fill="black")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    doc = pymupdf.open()
    page = doc.new_page(width=W, height=H)
    page.insert_image(page.rect, stream=buf.getvalue())
    words = page_words(page)
    assert words == []
    assert ground("1042", words, has_text_layer=bool(words)) == (None, None)


def test_compact_form_travels_through_arrow():
    doc, page = new_page([(72, 100, "Invoice 1042"), (72, 120, "Total: $1,234.50")])
    words = page_words(page)
    columns = words_to_columns(words)
    assert set(columns) == {"text", "x0", "y0", "x1", "y1", "line"} and len(columns["text"]) == 4
    back = pa.table(columns).to_pydict()  # parallel lists, as a Ray block carries them
    assert locate("1234.50", back) == locate("1234.50", words) != []
    as_structs = pa.array([w._asdict() for w in words]).to_pylist()  # list<struct> form
    assert locate("Invoice 1042", as_structs) == locate("Invoice 1042", words) != []
    pandas_columns = pa.table(columns).to_pandas()  # numpy arrays per column
    assert locate("1042", {k: pandas_columns[k].to_numpy() for k in columns}) == locate("1042", words)

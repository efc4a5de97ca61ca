"""Stage 2 without Ray: real PDFs and images drawn here, split into pages; broken input gives rows."""
import io
import json

import pymupdf
import pytest
from PIL import Image

from docgen import (EMBEDDED_SECRET, huge_page_pdf, javascript_pdf, make_jpeg, make_pdf, make_png, make_tiff,
                    png_bytes, scripts_pdf, slow_page_pdf, with_junk_before_header)
from pipeline.core.config import RenderSpec
from pipeline.ingest.pages import fit_zoom, sniff_format, split_document
from pipeline.ingest.sources import content_id


def _doc(data: bytes, uri: str = "mem://x") -> dict:
    return {"doc_id": content_id(data), "source_uri": uri, "questions": [], "data": data,
            "error_kind": None, "error": None}


def _ok(rows):
    return [r for r in rows if r["error_kind"] is None]


def test_pdf_pages_rendered_to_the_side_limit_with_text(tmp_path):
    data = make_pdf(tmp_path / "a.pdf", pages=3, total="1,234.50").read_bytes()
    rows = split_document(_doc(data), RenderSpec(dpi=200, max_side=1024))
    assert [r["page_index"] for r in rows] == [0, 1, 2]
    assert all(r["page_count"] == 3 and r["doc_format"] == "pdf" for r in rows)
    for r in rows:
        img = Image.open(io.BytesIO(r["image"]))
        assert max(img.size) == 1024 and (img.width, img.height) == (r["width"], r["height"])
    assert "Total: 1,234.50" in rows[0]["text"]
    assert "Revenue by region" in rows[1]["text"]  # the chart page


def test_dpi_is_kept_when_the_page_fits():
    assert fit_zoom(612, 792, 72, 1540) == 1.0  # letter at 72 dpi: 612x792 px
    assert round(792 * fit_zoom(612, 792, 300, 1540)) == 1540  # 300 dpi would be 3300 px: capped


def test_images_png_jpeg_and_multiframe_tiff(tmp_path):
    png = split_document(_doc(make_png(tmp_path / "a.png").read_bytes()), RenderSpec())
    jpg = split_document(_doc(make_jpeg(tmp_path / "a.jpg").read_bytes()), RenderSpec())
    tif = split_document(_doc(make_tiff(tmp_path / "a.tiff", frames=4).read_bytes()), RenderSpec())
    assert [(r["doc_format"], r["page_index"], r["page_count"]) for r in png] == [("png", 0, 1)]
    assert [(r["doc_format"], r["width"], r["height"]) for r in jpg] == [("jpeg", 800, 600)]
    assert [r["page_index"] for r in _ok(tif)] == [0, 1, 2, 3] and tif[0]["page_count"] == 4


def test_large_image_is_scaled_to_max_side():
    big = png_bytes(Image.new("RGB", (4000, 1000), "white"))
    (row,) = split_document(_doc(big), RenderSpec(max_side=1540))
    assert (row["width"], row["height"]) == (1540, 385)


def test_a_pdf_with_junk_before_its_header_is_read_as_the_readers_read_it(tmp_path):
    data = with_junk_before_header(make_pdf(tmp_path / "a.pdf", pages=1).read_bytes())
    assert sniff_format(data) == "pdf"
    (row,) = split_document(_doc(data), RenderSpec())
    assert row["error_kind"] is None and row["doc_format"] == "pdf" and "Total: 1,234.50" in row["text"]
    assert sniff_format(with_junk_before_header(b"%PDF-1.7 but nothing of a PDF follows")) is None  # no page


def test_rows_have_the_page_shape_and_words_with_boxes(tmp_path):
    from pipeline.core.rows import PAGE

    (row,) = split_document(_doc(make_pdf(tmp_path / "a.pdf", pages=1).read_bytes()), RenderSpec())
    assert set(row) == set(PAGE.names)
    PAGE.table([row])  # the declared Arrow types hold
    words = row["words"]
    i = words["text"].index("1,234.50")
    assert 0 < words["x0"][i] < words["x1"][i] <= 1 and 0 < words["y0"][i] < words["y1"][i] <= 1
    (png,) = split_document(_doc(make_png(tmp_path / "a.png").read_bytes()), RenderSpec())
    assert png["words"] is None  # no text layer


def test_pages_already_written_are_not_rendered_again(tmp_path):
    from pipeline.ingest.render_guard import split_guarded

    doc = dict(_doc(make_pdf(tmp_path / "many.pdf", pages=6, chart=False).read_bytes()), done_pages=[0, 2, 3],
               doc_row_done=True)
    for split in (split_document, split_guarded):
        rows = split(doc, RenderSpec(max_pages=5))
        assert [r["page_index"] for r in rows] == [1, 4], split  # and no second page_limit row
    rows = split_document(dict(doc, doc_row_done=False), RenderSpec(max_pages=5))
    assert [(r["page_index"], r["error_kind"]) for r in rows] == [(1, None), (4, None), (None, "page_limit")]


def test_format_comes_from_bytes_not_name(tmp_path):
    data = make_png(tmp_path / "a.png").read_bytes()
    (row,) = split_document(_doc(data, uri="/x/looks_like.pdf"), RenderSpec())
    assert row["doc_format"] == "png" and row["error_kind"] is None
    assert sniff_format(b"hello world") is None


@pytest.mark.parametrize("data, kind", [
    (b"", "empty_file"),
    (b"just some text, not a document", "unsupported_format"),
    (b"%PDF-1.7\n1 0 obj garbage", "no_pages"),  # MuPDF repairs it to an empty document
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt_image"),
])
def test_bad_documents_give_one_error_row(data, kind):
    (row,) = split_document(_doc(data), RenderSpec())
    assert row["error_kind"] == kind and row["error"] and row["image"] is None


def test_truncated_pdf_gives_rows_not_exceptions(tmp_path):
    data = make_pdf(tmp_path / "a.pdf", pages=2).read_bytes()
    rows = split_document(_doc(data[: len(data) // 2]), RenderSpec())
    assert rows and all(r["doc_id"] for r in rows)  # MuPDF may repair it: pages or error rows, never a crash


def test_encrypted_pdf_needs_the_password(tmp_path):
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret")
    path = tmp_path / "enc.pdf"
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="open-sesame", owner_pw="owner")
    data = path.read_bytes()
    (row,) = split_document(_doc(data), RenderSpec())
    assert row["error_kind"] == "encrypted_pdf" and "password" in row["error"]
    (row,) = split_document(_doc(data), RenderSpec(), password="wrong")
    assert row["error_kind"] == "encrypted_pdf"
    (row,) = split_document(_doc(data), RenderSpec(), password="open-sesame")
    assert row["error_kind"] is None and "secret" in row["text"]
    assert "open-sesame" not in json.dumps({k: v for k, v in row.items() if k not in ("image", "data")})


def test_zero_page_pdf_and_page_limit(tmp_path):
    data = make_pdf(tmp_path / "many.pdf", pages=7, chart=False).read_bytes()
    rows = split_document(_doc(data), RenderSpec(max_pages=5))
    assert [r["page_index"] for r in rows[:5]] == [0, 1, 2, 3, 4]
    assert rows[5]["error_kind"] == "page_limit" and "6..7" in rows[5]["error"]
    assert len(rows) == 6


def test_decompression_bomb_is_refused_before_decoding():
    # 20000 x 20000 of one colour compresses to a few hundred KB but decodes to 1.2 GB.
    bomb = png_bytes(Image.new("1", (20000, 20000), 0))
    (row,) = split_document(_doc(bomb), RenderSpec(max_pixels=40_000_000))
    assert row["error_kind"] == "too_many_pixels"


def test_absurd_pdf_page_size_is_rendered_small(tmp_path):
    (row,) = split_document(_doc(huge_page_pdf()), RenderSpec(dpi=300, max_side=1540))
    assert row["error_kind"] is None and (row["width"], row["height"]) == (1540, 1540)


def test_a_page_that_hangs_the_renderer_is_abandoned_and_the_rest_rendered(tmp_path):
    import time

    from pipeline.ingest.render_guard import split_guarded

    data = slow_page_pdf(tmp_path / "slow.pdf").read_bytes()
    began = time.monotonic()
    rows = split_guarded(_doc(data), RenderSpec(dpi=150, page_timeout_s=0.5))
    assert time.monotonic() - began < 4  # the slow page alone renders for seconds
    assert [(r["page_index"], r["error_kind"]) for r in rows] == [(0, "render_timeout"), (1, None)]
    assert rows[0]["page_count"] == 2 and "page_timeout_s" in rows[0]["error"]
    assert "quick page" in rows[1]["text"]


def test_guarded_split_matches_the_plain_one(tmp_path):
    from pipeline.ingest.render_guard import split_guarded

    for path in (make_pdf(tmp_path / "a.pdf", pages=3), make_tiff(tmp_path / "t.tiff", frames=2)):
        doc = _doc(path.read_bytes())
        plain, guarded = split_document(doc, RenderSpec()), split_guarded(doc, RenderSpec())
        strip = lambda rows: [{k: v for k, v in r.items() if k != "render_s"} for r in rows]  # noqa: E731
        assert strip(plain) == strip(guarded)
    (row,) = split_guarded(_doc(b""), RenderSpec())
    assert row["error_kind"] == "empty_file"


def test_javascript_and_embedded_files_are_neither_run_nor_extracted():
    data = javascript_pdf()
    (row,) = split_document(_doc(data), RenderSpec())
    assert row["error_kind"] is None and "Visible text" in row["text"]
    assert EMBEDDED_SECRET.decode() not in row["text"] and EMBEDDED_SECRET not in row["image"]
    with pymupdf.open(stream=data) as opened:  # as pages.py opens it: MuPDF's JavaScript engine stays off
        assert not pymupdf.mupdf.pdf_js_supported(pymupdf._as_pdf_document(opened))


def test_text_in_unexpected_scripts_renders_and_survives_the_text_layer(tmp_path):
    (row,) = split_document(_doc(scripts_pdf()), RenderSpec())
    assert row["error_kind"] is None and row["image"]
    assert "发票号码" in row["text"]

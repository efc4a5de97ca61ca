"""Stage 2: split a document into page images.

PDFs go through PyMuPDF: each page is rendered at the configured DPI, scaled down so its
longest side fits `max_side` (Pixtral never sees more than 1540 px), and its text layer is
kept. Images go through Pillow; a multi-frame TIFF is many pages. The format is detected from
the bytes, not the file name.

`split_document` is a pure function: one document row in, a list of page rows out. A document
that cannot be split yields exactly one row with `error_kind`/`error`; nothing raises.

Limits (all in `RenderSpec`): `max_pages` per document (later pages get one error row),
`max_pixels` of a source image before it is decoded (decompression bombs), `max_side` of
the rendered image, and `page_timeout_s` per page.

A rendered page with nothing to read (blank.py: no ink but dust, a staple or a page number, and no
text) gets a `blank_page` row without an image, which the later stages pass by the engine.
"""
from __future__ import annotations

import functools
import io
import time
from typing import Any, Iterator

from pipeline.answers import grounding
from pipeline.core.config import RenderSpec
from pipeline.ingest import blank
from pipeline.core.rows import PAGE, ErrorKind as E

# Magic numbers of the formats we accept; anything else is "unsupported_format".
_SIGNATURES = [
    (b"%PDF-", "pdf"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
]


def sniff_format(data: bytes) -> str | None:
    """The document's format from its first bytes ('pdf', 'png', ...) or None.

    Where the magic numbers say nothing, do what readers do: PDFs may carry junk (a comment, a
    mail header) before `%PDF-`, and MuPDF opens them, so a file that MuPDF opens with pages is a PDF.
    """
    head = data[:1024]
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if b"%PDF-" in head or _opens_as_pdf(data):
        return "pdf"
    return None


def _opens_as_pdf(data: bytes) -> bool:
    if b"%PDF-" not in data[:1024 * 1024]:  # MuPDF repairs almost anything; it needs the header somewhere
        return False
    import pymupdf

    try:
        with pymupdf.open(stream=data, filetype="pdf") as pdf:
            return pdf.page_count > 0
    except Exception:  # noqa: BLE001 - not a PDF after all
        return False


class PageError(Exception):
    def __init__(self, kind: E, message: str):
        super().__init__(message)
        self.kind = kind


def error_row(doc: dict[str, Any], kind: E, message: str, page_index: int | None = None,
              page_count: int | None = None, doc_format: str | None = None) -> dict[str, Any]:
    """A row that says why a page (page_index) or the whole document (None) has no image."""
    return PAGE.row(doc, page_index=page_index, page_count=page_count, doc_format=doc_format,
                    error_kind=str(kind), error=message)


def limit_row(doc: dict[str, Any], count: int, max_pages: int, doc_format: str | None) -> dict[str, Any]:
    """The one row that accounts for the pages past render.max_pages."""
    return error_row(doc, E.PAGE_LIMIT, f"pages {max_pages + 1}..{count} not processed "
                     f"(render.max_pages={max_pages})", page_count=count, doc_format=doc_format)


def _page_row(doc, fmt, index, count, picture, encode, text, words, spec: RenderSpec, began: float) -> dict[str, Any]:
    """The row of a rendered page (`picture`: a Pixmap or a Pillow image, `encode()` its bytes), or,
    when it has nothing to read, its blank_page row without an image (blank.py)."""
    gate = spec.blank_page
    reason = blank.blank_reason(blank.gray_of(picture), words, gate) if gate.enabled else None
    return PAGE.row(doc, page_index=index, page_count=count, width=picture.width, height=picture.height,
                    image=None if reason else encode(), text=text, words=words, doc_format=fmt,
                    render_s=round(time.monotonic() - began, 4), error_kind=str(E.BLANK_PAGE) if reason else None,
                    error=reason)


def _todo(doc: dict[str, Any], index: int) -> bool:
    """False for a page an interrupted attempt of this run already wrote (--resume)."""
    return index not in (doc.get("done_pages") or ())


def fit_zoom(width_pt: float, height_pt: float, dpi: int, max_side: int) -> float:
    """PyMuPDF zoom factor: the DPI asked for, lowered so the longest side fits max_side."""
    zoom = dpi / 72.0
    longest = max(width_pt, height_pt) * zoom
    if longest > max_side:
        zoom = max_side / max(width_pt, height_pt)
    return zoom


def _encode_pixmap(pix, fmt: str) -> bytes:
    return pix.tobytes("png") if fmt == "png" else pix.tobytes("jpeg", jpg_quality=90)


def _encode(img, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=90)
    else:
        img.save(buf, "PNG", compress_level=1)  # speed over size: the bytes only travel to the engine
    return buf.getvalue()


def _pdf_pages(doc: dict[str, Any], spec: RenderSpec, password: str | None, start: int = 0) -> Iterator[dict[str, Any]]:
    import pymupdf

    try:
        pdf = pymupdf.open(stream=doc["data"], filetype="pdf")
    except Exception as exc:  # PyMuPDF raises several types for broken files
        raise PageError(E.CORRUPT_PDF, f"cannot open PDF: {exc}") from None
    with pdf:
        if pdf.needs_pass:
            if not password:
                raise PageError(E.ENCRYPTED_PDF, "PDF is encrypted and no input.pdf_password was given")
            if not pdf.authenticate(password):
                raise PageError(E.ENCRYPTED_PDF, "PDF is encrypted and input.pdf_password does not open it")
        count = pdf.page_count
        if count == 0:
            raise PageError(E.NO_PAGES, "PDF has no pages (or is too damaged for any to be found)")
        for index in range(start, min(count, spec.max_pages)):
            if not _todo(doc, index):
                continue
            began = time.monotonic()
            try:
                page = pdf.load_page(index)
                rect = page.rect
                if rect.width <= 0 or rect.height <= 0:
                    raise PageError(E.BAD_PAGE_SIZE, f"page size {rect.width}x{rect.height} pt")
                zoom = fit_zoom(rect.width, rect.height, spec.dpi, spec.max_side)
                pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False)
                text = page.get_text("text") if spec.keep_text else None
                words = grounding.page_words(page)
                encode = functools.partial(_encode_pixmap, pix, spec.image_format)
                yield _page_row(doc, "pdf", index, count, pix, encode, text,
                                grounding.words_to_columns(words) if words else None, spec, began)
            except PageError as exc:
                yield error_row(doc, exc.kind, str(exc), index, count, "pdf")
            except Exception as exc:
                yield error_row(doc, E.RENDER_ERROR, f"{type(exc).__name__}: {exc}", index, count, "pdf")
        if count > spec.max_pages and not doc.get("doc_row_done"):
            yield limit_row(doc, count, spec.max_pages, "pdf")


def _image_pages(doc: dict[str, Any], fmt: str, spec: RenderSpec, start: int = 0) -> Iterator[dict[str, Any]]:
    from PIL import Image, ImageSequence

    Image.MAX_IMAGE_PIXELS = spec.max_pixels  # Pillow's own bomb guard, in addition to the check below
    try:
        img = Image.open(io.BytesIO(doc["data"]))
    except Image.DecompressionBombError as exc:
        raise PageError(E.TOO_MANY_PIXELS, str(exc)) from None
    except Exception as exc:
        raise PageError(E.CORRUPT_IMAGE, f"cannot open image: {exc}") from None
    width, height = img.size
    if width * height > spec.max_pixels:
        raise PageError(E.TOO_MANY_PIXELS, f"{width}x{height} px > render.max_pixels={spec.max_pixels}")
    count = getattr(img, "n_frames", 1) if fmt == "tiff" else 1
    frames = ImageSequence.Iterator(img) if count > 1 else [img]
    for index, frame in enumerate(frames):
        if index >= spec.max_pages:
            if not doc.get("doc_row_done"):
                yield limit_row(doc, count, spec.max_pages, fmt)
            break
        if index < start or not _todo(doc, index):
            continue
        began = time.monotonic()
        try:
            w, h = frame.size
            if w * h > spec.max_pixels:
                raise PageError(E.TOO_MANY_PIXELS, f"frame {w}x{h} px > render.max_pixels={spec.max_pixels}")
            page = frame.convert("RGB")
            page.thumbnail((spec.max_side, spec.max_side), Image.Resampling.LANCZOS)
            yield _page_row(doc, fmt, index, count, page, functools.partial(_encode, page, spec.image_format),
                            None, None, spec, began)
        except PageError as exc:
            yield error_row(doc, exc.kind, str(exc), index, count, fmt)
        except Exception as exc:
            yield error_row(doc, E.CORRUPT_IMAGE, f"{type(exc).__name__}: {exc}", index, count, fmt)


def count_pages(doc: dict[str, Any], password: str | None = None) -> int | None:
    """Pages (or frames) of a document, without rendering; None if it cannot be opened."""
    data = doc.get("data") or b""
    try:
        fmt = sniff_format(data)
        if fmt == "pdf":
            import pymupdf

            with pymupdf.open(stream=data, filetype="pdf") as pdf:
                if pdf.needs_pass and not (password and pdf.authenticate(password)):
                    return None
                return pdf.page_count
        if fmt is not None:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                return getattr(img, "n_frames", 1) if fmt == "tiff" else 1
    except Exception:
        return None
    return None


def iter_pages(doc: dict[str, Any], spec: RenderSpec, password: str | None = None,
               start: int = 0) -> Iterator[dict[str, Any]]:
    """Page rows of one document from page `start` on, as they are rendered. Never raises."""
    if doc.get("error_kind"):
        yield error_row(doc, doc["error_kind"], doc["error"])
        return
    data = doc.get("data") or b""
    if not data:
        yield error_row(doc, E.EMPTY_FILE, "file is empty")
        return
    fmt = sniff_format(data)
    if fmt is None:
        yield error_row(doc, E.UNSUPPORTED_FORMAT, f"not a PDF or a supported image (first bytes {data[:8]!r})")
        return
    try:
        if fmt == "pdf":
            yield from _pdf_pages(doc, spec, password, start)
        else:
            yield from _image_pages(doc, fmt, spec, start)
    except PageError as exc:  # raised before the first page: about the whole document
        yield error_row(doc, exc.kind, str(exc), doc_format=fmt)
    except Exception as exc:  # last line of defence: a row, not a dead job
        yield error_row(doc, E.SPLIT_ERROR, f"{type(exc).__name__}: {exc}", doc_format=fmt)


def split_document(doc: dict[str, Any], spec: RenderSpec, password: str | None = None) -> list[dict[str, Any]]:
    """One document row (with `data` bytes) -> its page rows, in this process. Never raises.

    No time limit here: the pipeline calls render_guard.split_guarded, which runs this in a child
    process and abandons a page that renders longer than render.page_timeout_s.
    """
    return list(iter_pages(doc, spec, password))

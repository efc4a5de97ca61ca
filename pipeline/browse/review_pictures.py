"""The page pictures of `docintel review`: each page under review re-rendered from its source document.

Review reads the very documents the run read, hostile ones included, and it shows errors first: the
first pages it would re-render are the ones that hung or killed the renderer in the run. So pages are
rendered only through the render guard (pipeline/ingest/render_guard.py: a child process, the run's
render.page_timeout_s per page), and a page whose row says the renderer hung or died on it in the run
is not rendered again at all. A page that fails or times out now gets its reason instead of a picture,
and the review goes on.
"""
from __future__ import annotations

import base64
import io
from collections import defaultdict
from typing import Any

from pipeline.core.config import RenderSpec
from pipeline.core.rows import ErrorKind as E

MAX_SIDE = 700     # px of the re-rendered page: enough to read a word under a box, small enough for 200 cards
JPEG_QUALITY = 72  # a page is ~40-60 kB as a data URL
DEFAULT_PAGE_TIMEOUT_S = RenderSpec().page_timeout_s
# What the run's renderer did on a page that review does not render again.
RENDERER_GAVE_UP = {str(E.RENDER_TIMEOUT): "hung on this page in the run (render_timeout)",
                    str(E.RENDER_CRASH): "died on this page in the run (render_crash)"}


def _wanted(rows: list[dict[str, Any]]) -> tuple[dict[str, set[int]], dict[str, str], dict[tuple[str, int], str]]:
    """(source_uri -> pages to render, source_uri -> the run's doc_id, (source_uri, page) -> why not
    rendered again): a page the renderer gave up on in the run is left out even when other rows ask for it."""
    gave_up = {(r["source_uri"], r["page_index"]): RENDERER_GAVE_UP[r["error_kind"]]
               for r in rows if r["page_index"] is not None and r["error_kind"] in RENDERER_GAVE_UP}
    wanted: dict[str, set[int]] = defaultdict(set)
    doc_ids: dict[str, str] = {}
    for r in rows:
        if r["page_index"] is not None and (r["source_uri"], r["page_index"]) not in gave_up:
            wanted[r["source_uri"]].add(r["page_index"])
            doc_ids[r["source_uri"]] = r["doc_id"]
    return wanted, doc_ids, gave_up


def _picture(page: dict[str, Any], changed: bool) -> dict[str, Any]:
    from PIL import Image

    if page.get("image") is None:
        return {"problem": f"page not rendered: {page['error_kind']}: {page['error']}", "changed": changed}
    buf = io.BytesIO()
    Image.open(io.BytesIO(page["image"])).convert("RGB").save(buf, "JPEG", quality=JPEG_QUALITY)
    return {"url": "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(),
            "width": page["width"], "height": page["height"], "changed": changed}


def page_images(rows: list[dict[str, Any]], max_bytes: int, max_side: int = MAX_SIDE, password: str | None = None,
                page_timeout_s: float = DEFAULT_PAGE_TIMEOUT_S) -> dict[tuple[str, int], dict[str, Any]]:
    """(source_uri, page_index) -> {"url": data URL} or {"problem": why there is no picture}, and
    "changed" when the file's content is not what the run read (its boxes may not fit any more).
    Each document is read once and only the pages asked for are rendered, each within page_timeout_s."""
    from pipeline.ingest.render_guard import iter_guarded
    from pipeline.ingest.sources import read_document

    wanted, doc_ids, gave_up = _wanted(rows)
    out: dict[tuple[str, int], dict[str, Any]] = {
        key: {"problem": f"not rendered again: the renderer {why}"} for key, why in gave_up.items()}
    for uri, indexes in wanted.items():
        doc = read_document({"source_uri": uri, "questions": [], "error_kind": None, "error": None}, max_bytes)
        if doc.get("error_kind"):
            out.update({(uri, i): {"problem": f"source not readable now: {doc['error_kind']}: {doc['error']}"}
                        for i in indexes})
            continue
        changed = doc["doc_id"] != doc_ids[uri]
        last = max(indexes)
        # The guard renders no page in done_pages (for --resume, the pages already written): here every
        # page not asked for. doc_row_done: no "pages past render.max_pages" row for the pages after the last.
        doc.update(done_pages=frozenset(range(last + 1)) - indexes, doc_row_done=True)
        spec = RenderSpec(max_side=max_side, max_pages=last + 1, keep_text=False, page_timeout_s=page_timeout_s)
        for page in iter_guarded(doc, spec, password):
            if page["page_index"] in indexes:
                out[(uri, page["page_index"])] = _picture(page, changed)
            elif page["page_index"] is None and page["error_kind"]:  # about the whole document: its pages left
                for i in indexes:
                    out.setdefault((uri, i), _picture(page, changed))
        for i in indexes:
            out.setdefault((uri, i), {"problem": "page not rendered: the document has no such page now",
                                      "changed": changed})
        del doc
    return out


__all__ = ["DEFAULT_PAGE_TIMEOUT_S", "MAX_SIDE", "page_images"]

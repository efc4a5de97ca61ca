"""Rendering under a per-page time limit, in a child process that can be abandoned.

MuPDF and Pillow are C code: a page built to be slow (or a decoder bug) can render for hours or
crash the process, and a Python-level timeout cannot interrupt it. So pages are rendered in a
child process that streams them back one by one; when a page takes longer than
`render.page_timeout_s`, or the child dies, the child is killed, that page gets an error row
(`render_timeout` / `render_crash`), and a new child goes on from the next page.
Children come from a forkserver that has the rendering modules imported: a fork costs
milliseconds, and forking from the forkserver (not from the threaded Ray worker) is safe.
"""
from __future__ import annotations

import multiprocessing as mp
from typing import Any, Iterator

from pipeline.core.config import RenderSpec
from pipeline.ingest.pages import count_pages, error_row, iter_pages, limit_row
from pipeline.core.rows import ErrorKind as E

_CTX = None


def _context():
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(["pipeline.ingest.pages", "pymupdf", "PIL.Image"])
    return _CTX


def _child(conn, doc: dict[str, Any], spec: dict[str, Any], password: str | None, start: int) -> None:
    try:
        conn.send(count_pages(doc, password))  # first, so a page that hangs still knows its page count
        for row in iter_pages(doc, RenderSpec.model_validate(spec), password, start):
            conn.send(row)
        conn.send(None)
    finally:
        conn.close()


def split_guarded(doc: dict[str, Any], spec: RenderSpec, password: str | None = None) -> list[dict[str, Any]]:
    """split_document with a time limit per page and survival of renderer crashes. Never raises."""
    return list(iter_guarded(doc, spec, password))


def iter_guarded(doc: dict[str, Any], spec: RenderSpec, password: str | None = None) -> Iterator[dict[str, Any]]:
    """The rows of split_guarded, each as soon as the child has rendered it: the caller holds no
    more pages than it keeps (a 3,000-page PDF is not one list of images)."""
    if doc.get("error_kind") or not doc.get("data"):
        yield from iter_pages(doc, spec, password)  # nothing to render
        return
    ctx = _context()
    done = set(doc.get("done_pages") or ())
    start, page_count, fmt = 0, None, None
    while True:
        while start in done:  # --resume: the child skips pages already written; so does the bookkeeping
            start += 1
        receiver, sender = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_child, args=(sender, doc, spec.model_dump(), password, start), daemon=True)
        child.start()
        sender.close()
        failure = None
        try:
            if receiver.poll(spec.page_timeout_s):
                try:
                    page_count = receiver.recv()
                except EOFError:
                    pass  # the loop below records the crash
            while True:
                if not receiver.poll(spec.page_timeout_s):
                    failure = (E.RENDER_TIMEOUT, f"page {start} did not render within "
                               f"render.page_timeout_s={spec.page_timeout_s}s; abandoned")
                    break
                try:
                    row = receiver.recv()
                except EOFError:
                    failure = (E.RENDER_CRASH, f"the renderer died on page {start} (exit code "
                               f"{child.join(5) or child.exitcode})")
                    break
                if row is None:
                    return
                yield row
                page_count = row["page_count"] if row["page_count"] is not None else page_count
                fmt = row["doc_format"] or fmt
                if row["page_index"] is not None:
                    start = row["page_index"] + 1
        finally:
            if child.is_alive():
                child.kill()
            child.join()
            receiver.close()
        kind, message = failure
        yield error_row(doc, kind, message, start if page_count is not None else None, page_count, fmt)
        start += 1
        while start in done:
            start += 1
        if page_count is None or start >= min(page_count, spec.max_pages):
            if page_count is not None and page_count > spec.max_pages and not doc.get("doc_row_done"):
                yield limit_row(doc, page_count, spec.max_pages, fmt)
            return

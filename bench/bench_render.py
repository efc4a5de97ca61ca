#!/usr/bin/env python3
"""CPU page rendering speed, one core: PDF pages -> page images, as the pipeline's render stage
does it. Prints one JSON line per case and writes them all to --out.

Cases, each on the same generated documents (vector invoices and charts, and scanned pages:
a 300-dpi photo of a page embedded in a PDF), at each longest side given:
  pixmap      PyMuPDF rasterisation only (the floor)
  png / jpeg  rasterisation + the encoding that travels to the engine (render.image_format)
  pages       pipeline.pages.split_document: + text layer, row building (what a worker runs)
  guarded     pipeline.render_guard.split_guarded: + the child process that enforces the per-page
              time limit (what the job runs)

    python bench/bench_render.py --docs 20 --pages 5 --sides 1024,1540 --out render.json
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # docgen: generated documents
sys.path.insert(0, str(ROOT))

import pymupdf  # noqa: E402
from docgen import make_pdf  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from pipeline.core.config import RenderSpec  # noqa: E402
from pipeline.ingest.pages import fit_zoom, split_document  # noqa: E402
from pipeline.ingest.render_guard import split_guarded  # noqa: E402
from pipeline.ingest.sources import content_id  # noqa: E402


def make_scanned_pdf(path: Path, pages: int) -> Path:
    """A scanner's PDF: every page one 300-dpi greyscale JPEG (2550 x 3300 px)."""
    doc = pymupdf.open()
    for i in range(pages):
        img = Image.new("L", (2550, 3300), 235)
        draw = ImageDraw.Draw(img)
        for line in range(60):
            draw.text((150, 150 + line * 50), f"Scanned line {line} of page {i}: total {line * 17.5:.2f} EUR",
                      fill=20)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=80)
        page = doc.new_page(width=612, height=792)
        page.insert_image(page.rect, stream=buf.getvalue())
    doc.save(path)
    return path


def documents(folder: Path, n_docs: int, pages: int) -> dict[str, list[bytes]]:
    folder.mkdir(parents=True, exist_ok=True)
    vector = [make_pdf(folder / f"v{i}.pdf", pages=pages, title=f"Invoice {i}", total=f"{i},10.00").read_bytes()
              for i in range(n_docs)]
    scanned = [make_scanned_pdf(folder / f"s{i}.pdf", pages).read_bytes() for i in range(max(1, n_docs // 4))]
    return {"vector": vector, "scanned": scanned}


def _rasterise(data: bytes, max_side: int, encode: str | None) -> int:
    n = 0
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        for page in doc:
            zoom = fit_zoom(page.rect.width, page.rect.height, 150, max_side)
            pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False)
            if encode == "png":
                pix.tobytes("png")
            elif encode == "jpeg":
                pix.tobytes("jpeg", jpg_quality=90)
            n += 1
    return n


def _row(data: bytes) -> dict:
    return {"doc_id": content_id(data), "source_uri": "bench.pdf", "questions": "[]", "data": data,
            "error_kind": None, "error": None}


def run_case(case: str, docs: list[bytes], max_side: int) -> tuple[int, int]:
    """(pages, image bytes) for one pass over docs."""
    spec = RenderSpec(dpi=150, max_side=max_side, image_format="jpeg" if case == "jpeg" else "png")
    if case in ("pixmap", "png", "jpeg"):
        return sum(_rasterise(d, max_side, None if case == "pixmap" else case) for d in docs), 0
    split = split_document if case == "pages" else split_guarded
    rows = [r for d in docs for r in split(_row(d), spec)]
    assert not any(r["error_kind"] for r in rows), [r["error"] for r in rows if r["error_kind"]][:3]
    return len(rows), sum(len(r["image"]) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20, help="vector documents (scanned: a quarter of this)")
    ap.add_argument("--pages", type=int, default=5, help="pages per document")
    ap.add_argument("--sides", default="1024,1540")
    ap.add_argument("--cases", default="pixmap,png,jpeg,pages,guarded")
    ap.add_argument("--out", default="bench_render.json")
    args = ap.parse_args()

    corpus = documents(Path("/tmp/bench_render"), args.docs, args.pages)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "pymupdf": pymupdf.VersionBind}
    print(json.dumps(machine), flush=True)
    results = []
    for side in [int(s) for s in args.sides.split(",")]:
        for kind, docs in corpus.items():
            for case in args.cases.split(","):
                run_case(case, docs[:1], side)  # warm-up: imports, forkserver start
                cpu0, t0 = time.process_time(), time.perf_counter()
                pages, image_bytes = run_case(case, docs, side)
                seconds = time.perf_counter() - t0
                result = dict(side=side, docs=kind, case=case, pages=pages, seconds=round(seconds, 3),
                              pages_per_s_per_core=round(pages / seconds, 1),
                              driver_cpu_s=round(time.process_time() - cpu0, 3),
                              kib_per_page=round(image_bytes / pages / 1024, 1) if image_bytes else None)
                results.append(result)
                print(json.dumps(result), flush=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "results": results}, indent=1))


if __name__ == "__main__":
    main()

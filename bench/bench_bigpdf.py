#!/usr/bin/env python3
"""One very long PDF through the render stage, on the CPU: is its memory bounded? (issue "A
10-million-page nightly run", item 8)

Builds a `--pages`-page PDF (PyMuPDF: a heading, paragraphs and a 6 x 8 ruled table of numbers per
page; a few MB) and runs each case in a fresh child process, so that each peak is its own:

  guarded   before (until 2026-12-01): pipeline.render_guard.split_guarded(doc, RenderSpec(max_pages=
            PAGES)), the whole document as one list (render.max_pages raised so nothing is cut),
            then PAGE.table(rows): one Arrow table of every page, as the split stage returned it
  default   the same with RenderSpec() (render.max_pages=500)
  split     after: the split stage itself (pipeline.run._split, a generator) on a one-document
            batch with render.max_pages=PAGES; each table it yields is dropped, as Ray Data
            stores it and lets it go
  stream    the floor: pipeline.pages.iter_pages (no child process), packed PAGE.table every
            --batch pages and dropped

Measured per case: wall seconds, pages/s, peak rss of the process calling split_guarded (sampled
every 0.2 s, and ru_maxrss), peak rss of the forkserver and of the render children (the processes
under the caller), the bytes held in the returned rows (images, text, words) and the Arrow table.

    python bench/bench_bigpdf.py --pages 3000                      # writes bench/results/<date>-bigpdf-cpu-2core.json
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402

MB = 2**20


def make_pdf(path: Path, pages: int) -> Path:
    """Text and a ruled table on every page (US letter): a long report or statement. One content
    stream per page (one Shape), the base-14 Helvetica (not embedded): about 1-2 KB a page."""
    import pymupdf

    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=612, height=792)
        shape = page.new_shape()
        shape.insert_text((72, 72), f"Quarterly statement - account 4471-{i:05d} - page {i + 1} of {pages}",
                          fontsize=13)
        y = 100
        for line in range(14):
            shape.insert_text((72, y), f"Line {line + 1}: transfers booked on 2026-{1 + line % 12:02d}-"
                              f"{1 + i % 28:02d} for reference R{i * 14 + line:07d}, balance carried forward.",
                              fontsize=9)
            y += 13
        top, left, cw, rh = 310, 72, 78, 22
        for r in range(9):
            shape.draw_line((left, top + r * rh), (left + 6 * cw, top + r * rh))
        for c in range(7):
            shape.draw_line((left + c * cw, top), (left + c * cw, top + 8 * rh))
        shape.finish(width=0.6, color=(0, 0, 0))
        heads = ["Date", "Reference", "Debit", "Credit", "Fee", "Balance"]
        for c, head in enumerate(heads):
            shape.insert_text((left + c * cw + 4, top + 15), head, fontsize=9)
        for r in range(1, 8):
            for c in range(6):
                value = (f"2026-11-{r + 1:02d}" if c == 0 else f"R{i:05d}{r}" if c == 1
                         else f"{(i * 37 + r * 11 + c * 7) % 9000 / 7:,.2f}")
                shape.insert_text((left + c * cw + 4, top + r * rh + 15), value, fontsize=8)
        shape.insert_text((72, 520), f"Total this page: EUR {(i * 131) % 100000 / 3:,.2f}", fontsize=10)
        shape.commit()
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path, garbage=4, deflate=True)
    return path


class Peaks:
    """Peak rss of this process and of the processes under it, sampled every `period` s."""

    def __init__(self, period: float = 0.2):
        self.period = period
        self.me = psutil.Process()
        self.self_peak = 0
        self.forkserver_peak = 0
        self.child_peak = 0  # largest render child
        self.children_seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.self_peak = max(self.self_peak, self.me.memory_info().rss)
                # the forkserver is a child of this process; the render children are forked from
                # it (same command line), so they are told apart by parent
                for server in self.me.children():
                    try:
                        if "forkserver" not in " ".join(server.cmdline()):
                            continue
                        self.forkserver_peak = max(self.forkserver_peak, server.memory_info().rss)
                        kids = server.children()
                    except Exception:  # noqa: BLE001 - ended while looked at
                        continue
                    for p in kids:
                        try:
                            rss = p.memory_info().rss
                        except Exception:  # noqa: BLE001
                            continue
                        self.children_seen.add(p.pid)
                        self.child_peak = max(self.child_peak, rss)
            except Exception:  # noqa: BLE001
                pass
            self._stop.wait(self.period)

    def __enter__(self) -> "Peaks":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _doc(data: bytes) -> dict[str, Any]:
    from pipeline.core.rows import DOCUMENT
    from pipeline.ingest.sources import content_id

    return DOCUMENT.row(source_uri="bench/bigpdf.pdf", doc_id=content_id(data), data=data, questions=[])


def _held(rows: list[dict[str, Any]]) -> dict[str, Any]:
    images = sum(len(r["image"] or b"") for r in rows)
    text = sum(len(r["text"] or "") for r in rows)
    words = sum(len((r["words"] or {}).get("text") or []) for r in rows)
    n = max(1, len(rows))
    return {"rows": len(rows), "image_mb": round(images / MB, 1), "image_kib_per_page": round(images / n / 1024, 1),
            "text_mb": round(text / MB, 2), "words": words, "words_per_page": round(words / n, 1)}


def run_case(case: str, pdf: Path, batch: int) -> dict[str, Any]:
    from pipeline.core.config import RenderSpec
    from pipeline.ingest.pages import count_pages, iter_pages
    from pipeline.ingest.render_guard import split_guarded
    from pipeline.core.rows import PAGE

    import pymupdf  # noqa: F401 - loaded before the baseline, as in a warm Ray worker

    data = pdf.read_bytes()
    doc = _doc(data)
    pages = count_pages(doc)
    spec = RenderSpec() if case == "default" else RenderSpec(max_pages=pages)
    base = psutil.Process().memory_info().rss
    out: dict[str, Any] = {"case": case, "pdf_pages": pages, "pdf_mb": round(len(data) / MB, 2),
                           "render": spec.model_dump(), "rss_before_mb": round(base / MB, 1)}
    with Peaks() as peaks:
        t0 = time.perf_counter()
        if case in ("guarded", "default"):
            rows = split_guarded(doc, spec)
            t_render = time.perf_counter() - t0
            rss_rows = psutil.Process().memory_info().rss
            table = PAGE.table(rows)  # what run._split returns to Ray: every page of the document, one table
            out.update(_held(rows), arrow_table_mb=round(table.nbytes / MB, 1),
                       rss_with_rows_mb=round(rss_rows / MB, 1),
                       rss_with_rows_and_table_mb=round(psutil.Process().memory_info().rss / MB, 1),
                       errors=sorted({r["error_kind"] for r in rows if r["error_kind"]}))
            del table
        elif case == "split":
            from pipeline.core.rows import DOCUMENT
            from pipeline.job.run import SPLIT_PAGES_PER_TABLE, _split

            n, table_max, tables = 0, 0, 0
            for table in _split(DOCUMENT.table([doc]), spec, None):
                n, tables, table_max = n + table.num_rows, tables + 1, max(table_max, table.nbytes)
            t_render = time.perf_counter() - t0
            out.update(rows=n, batch_pages=SPLIT_PAGES_PER_TABLE, tables=tables,
                       largest_batch_table_mb=round(table_max / MB, 1))
        else:
            n, table_max = 0, 0
            chunk: list[dict[str, Any]] = []
            for row in iter_pages(doc, spec):
                chunk.append(row)
                if len(chunk) == batch:
                    table_max = max(table_max, PAGE.table(chunk).nbytes)
                    n += len(chunk)
                    chunk = []
            if chunk:
                table_max = max(table_max, PAGE.table(chunk).nbytes)
                n += len(chunk)
            t_render = time.perf_counter() - t0
            out.update(rows=n, batch_pages=batch, largest_batch_table_mb=round(table_max / MB, 1))
        wall = time.perf_counter() - t0
        time.sleep(0.4)
    out.update(wall_s=round(wall, 2), render_s=round(t_render, 2), pages_per_s=round(out["rows"] / wall, 1),
               caller_peak_rss_mb=round(peaks.self_peak / MB, 1),
               caller_peak_over_start_mb=round((peaks.self_peak - base) / MB, 1),
               caller_ru_maxrss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               forkserver_peak_rss_mb=round(peaks.forkserver_peak / MB, 1) if peaks.forkserver_peak else None,
               render_child_peak_rss_mb=round(peaks.child_peak / MB, 1) if peaks.child_peak else None,
               render_children_seen=len(peaks.children_seen))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=3000)
    ap.add_argument("--cases", default="guarded,default,stream")
    ap.add_argument("--batch", type=int, default=64, help="pages per batch in the stream case")
    ap.add_argument("--pdf", default="/tmp/docintel-bench-bigpdf/bigpdf-{pages}.pdf")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # one case, in this process (the child)
    ap.add_argument("--results", default=None, help="default: bench/results/<date>-bigpdf-cpu-<nproc>core.json")
    args = ap.parse_args()
    pdf = Path(args.pdf.format(pages=args.pages))
    if args.case:
        print(json.dumps(run_case(args.case, pdf, args.batch)), flush=True)
        return 0
    t0 = time.perf_counter()
    if not pdf.exists():
        make_pdf(pdf, args.pages)
    made = round(time.perf_counter() - t0, 1)
    import pymupdf
    import pyarrow

    cases = []
    for case in args.cases.split(","):
        proc = subprocess.run([sys.executable, __file__, "--pages", str(args.pages), "--pdf", str(pdf),
                               "--batch", str(args.batch), "--case", case], capture_output=True, text=True, check=True)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        cases.append(result)
    result = {"bench": "bigpdf", "date": _dt.date.today().isoformat(),
              "spec": {"pages": args.pages, "pdf_mb": round(pdf.stat().st_size / MB, 2), "pdf_build_s": made,
                       "content": "per page: heading, 14 text lines, 6x8 ruled table of numbers, a total line"},
              "machine": {"nproc": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
                          "python": platform.python_version(), "pymupdf": pymupdf.VersionBind,
                          "pyarrow": pyarrow.__version__, "load_avg": [round(x, 2) for x in os.getloadavg()]},
              "command": " ".join(["python", *sys.argv]), "cases": cases}
    path = Path(args.results or ROOT / "bench" / "results" /
                f"{_dt.date.today().isoformat()}-bigpdf-cpu-{os.cpu_count()}core.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

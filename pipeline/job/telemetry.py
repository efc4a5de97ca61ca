"""A run can be watched: its counters as Ray metrics, and one progress line on the terminal.

Metrics go through `ray.util.metrics`, so they show on the Ray dashboard and on every node's
Prometheus endpoint (ray start --metrics-export-port=...), tagged with the run id:

    docintel_pages_done_total        pages written (answered or failed), by the write stage
    docintel_rows_total{error_kind}  page-table rows written, by error kind ("" for answered rows)
    docintel_tokens_total{kind}      prompt / output tokens of the requests behind them
    docintel_engine_queue_depth      requests in or waiting for an engine (per engine actor)
    docintel_pages_per_second        the driver's view, over the whole run so far

Metric objects are made once per process (Ray asks for that), lazily, so that importing this module
costs nothing where Ray is not running.
"""
from __future__ import annotations

import json
import sys
import time
from functools import lru_cache
from typing import Any

from pipeline.core.rows import ErrorKind as E


@lru_cache(maxsize=1)
def _metrics():
    from ray.util.metrics import Counter, Gauge

    return {
        "pages": Counter("docintel_pages_done", "Pages written (answered or failed).", tag_keys=("run_id",)),
        "rows": Counter("docintel_rows", "Page-table rows written, by error kind.", tag_keys=("run_id", "error_kind")),
        "tokens": Counter("docintel_tokens", "Tokens of the engine requests.", tag_keys=("run_id", "kind")),
        "queue": Gauge("docintel_engine_queue_depth", "Requests in or waiting for this engine.", tag_keys=("run_id",)),
        "rate": Gauge("docintel_pages_per_second", "Pages written per second, whole run so far.", tag_keys=("run_id",)),
    }


def record_receipt(receipt: dict[str, Any], run_id: str) -> None:
    """Called by the write stage for every file it writes. Metrics are a view: a failure to record
    them never costs the write."""
    try:
        _record(receipt, run_id)
    except Exception:  # noqa: BLE001
        pass


def _record(receipt: dict[str, Any], run_id: str) -> None:
    m = _metrics()
    tags = {"run_id": run_id}
    if receipt["pages"]:
        m["pages"].inc(receipt["pages"], tags)
    kinds = json.loads(receipt["error_kinds"])
    answered = receipt["rows"] - sum(kinds.values())
    for kind, n in [("", answered), *kinds.items()]:
        if n:
            m["rows"].inc(n, {"run_id": run_id, "error_kind": kind})
    for kind in ("prompt", "output"):
        if receipt[f"{kind}_tokens"]:
            m["tokens"].inc(receipt[f"{kind}_tokens"], {"run_id": run_id, "kind": kind})


def queue_depth(n: int, run_id: str) -> None:
    _metrics()["queue"].set(n, {"run_id": run_id})


class Progress:
    """The driver's one progress line, from the receipts it adds up: rewritten in place on a terminal,
    one line every `every_s` seconds otherwise (a log file, CI)."""

    def __init__(self, run_id: str, documents: int, every_s: float = 10.0, stream=None):
        self.run_id, self.documents, self.every_s = run_id, documents, every_s
        self.stream = stream or sys.stderr
        self.began = time.monotonic()
        self.last = 0.0
        self.tty = self.stream.isatty()
        self._printed = ""

    def update(self, totals: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.5 if self.tty else self.every_s):
            return
        self.last = now
        pages, seconds = totals.get("pages", 0), now - self.began
        kinds = totals.get("error_kinds", {})
        blank = kinds.get(E.BLANK_PAGE.value, 0)  # rows of pages with nothing to read: no failure
        failed = sum(kinds.values()) - blank
        line = (f"run {self.run_id}: {pages} pages written ({totals.get('rows', 0)} rows, "
                + (f"{blank} blank, " if blank else "") + f"{failed} failed) of "
                f"{self.documents} documents, {pages / seconds if seconds else 0:.2f} pages/s, {seconds:.0f} s")
        try:
            _metrics()["rate"].set(pages / seconds if seconds else 0.0, {"run_id": self.run_id})
        except Exception:  # noqa: BLE001 - metrics are a view; the run goes on without them
            pass
        key = f"{pages}/{totals.get('rows', 0)}/{failed}"
        if force and key == self._printed:
            return  # the last line already said it
        self._printed = key
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """An event worth a line of its own (an engine ready, failed, restarted)."""
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

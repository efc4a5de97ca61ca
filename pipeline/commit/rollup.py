"""The document table: each document's answer to each question, rolled up over its pages.

Pure functions, run per document inside Ray by the commit (pipeline/commit/commit.py via perdoc.py).

The rule (the README states it): the page answers vote. A valid answer votes with its task's vote
value (the `answer` text for docvqa and chartqa, `doc_type` for classify), compared case-folded with
whitespace collapsed; empty and "unanswerable" answers do not vote. The value with most votes wins,
a tie goes to the earliest page, and the document's answer is that earliest agreeing page's answer,
with its confidence, its place on the page and its typed columns. A page with nothing to read
(blank_page) has no answer, so it never votes, and it does not make a document partial; a document
of blank pages only is failed, with blank_page its one error kind. For an extraction (`fields`),
every top-level field votes on its own the same way (null values do not vote) and the merged object
is the answer; its typed columns come from the user's schema (pipeline/tasks/typed_fields.py), and
its confidence is the least confident page it took a field from. Every document row counts the page
rows behind it that need a person's check (`needs_review_rows`), and needs one itself when its
answer's page does, or when it has no answer and a page row does.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable

from pipeline.core.rows import DOCUMENT_TABLE, ErrorKind as E
from pipeline.tasks import Task

# Columns of the page table the roll-up reads.
COLUMNS = ("doc_id", "source_uri", "page_index", "page_count", "question", "answer_json", "answer_text",
           "answer_number", "answer_unit", "confidence", "token_confidence", "needs_review", "answer_boxes", "grounded",
           "value_details", "valid", "error_kind", "error", "task", "model_id", "prompt_version")
TYPED = ("answer_text", "answer_number", "answer_unit", "confidence", "token_confidence", "needs_review",
         "answer_boxes", "grounded")


def _norm(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return " ".join(text.casefold().split())


def vote(candidates: list[tuple[int, Any, Any]]) -> tuple[Any, int, int] | None:
    """(payload, page, agreeing pages) of the winning vote among (page, vote value, payload); votes
    of None abstain; most votes wins, ties go to the earliest page. None when nobody votes."""
    votes: Counter[str] = Counter()
    first: dict[str, tuple[int, Any]] = {}
    for page, value, payload in sorted(candidates, key=lambda c: c[0]):
        if value is None or (isinstance(value, (str, list, dict)) and not value):
            continue
        key = _norm(value)
        votes[key] += 1
        first.setdefault(key, (page, payload))
    if not votes:
        return None
    best = max(votes, key=lambda k: (votes[k], -first[k][0]))
    page, payload = first[best]
    return payload, page, votes[best]


def _status(rows: list[dict[str, Any]]) -> str:
    kinds = {r["error_kind"] for r in rows}
    if kinds == {E.SKIPPED_UNCHANGED.value}:
        return E.SKIPPED_UNCHANGED.value
    asked = [r for r in rows if r["error_kind"] != E.BLANK_PAGE.value]  # a blank page is no failure
    valid = sum(1 for r in asked if r["valid"])
    return "ok" if asked and valid == len(asked) else ("failed" if valid == 0 else "partial")


def _errors(rows: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [r for r in rows if r["error_kind"]]
    flags = [r.get("needs_review") for r in rows if r.get("needs_review") is not None]
    return {"error_kinds": sorted({r["error_kind"] for r in failed}),
            "error": failed[0]["error"] if failed else None,
            "needs_review": any(flags) if flags else None, "needs_review_rows": sum(flags) if flags else None}


def _question_row(task: Task, rows: list[dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    answered = [r for r in rows if r["valid"] and r["page_index"] is not None]
    parsed = [(r["page_index"], json.loads(r["answer_json"]), r) for r in answered]
    win = vote([(page, task.vote_value(answer), row) for page, answer, row in parsed])
    row = DOCUMENT_TABLE.row(base, status=_status(rows), **_errors(rows),
                             pages_answered=sum(1 for _, a, _ in parsed if task.vote_value(a) is not None))
    if win is not None:
        chosen, page, agreeing = win
        row.update({k: chosen.get(k) for k in TYPED}, answer_json=chosen["answer_json"], page_index=page,
                   pages_agreeing=agreeing)
    return row


def _detail(row: dict[str, Any], path: str) -> dict[str, Any]:
    for item in row.get("value_details") or []:
        if item["path"] == path:
            return item
    return {}


def _fields_row(rows: list[dict[str, Any]], base: dict[str, Any],
                convert: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, str]]]) -> dict[str, Any]:
    answered = [(r["page_index"], json.loads(r["answer_json"]), r) for r in rows
                if r["valid"] and r["page_index"] is not None]
    merged: dict[str, Any] = {}
    details = []
    for field in sorted({k for _, a, _ in answered if isinstance(a, dict) for k in a}):
        win = vote([(page, a.get(field), (a.get(field), r)) for page, a, r in answered])
        if win is None:
            merged[field] = None
            continue
        (value, source), page, agreeing = win
        merged[field] = value
        info = _detail(source, field)
        details.append({"field": field, "confidence": info.get("confidence"), "page_index": page,
                        "boxes": info.get("boxes"), "grounded": info.get("grounded"), "pages_agreeing": agreeing})
    row = DOCUMENT_TABLE.row(base, status=_status(rows), **_errors(rows), pages_answered=len(answered),
                             field_details=details)
    if answered:
        typed, field_errors = convert(merged)
        sources = [r for _, _, r in answered if any(d["page_index"] == r["page_index"] for d in details)]
        known = [r["confidence"] for r in sources if r.get("confidence") is not None]
        flags = [r["needs_review"] for r in sources if r.get("needs_review") is not None]
        row.update(typed, answer_json=json.dumps(merged, ensure_ascii=False, sort_keys=True),
                   field_errors=field_errors or None, confidence=min(known) if known else None,
                   token_confidence=min((d["confidence"] for d in details if d["confidence"] is not None), default=None),
                   needs_review=any(flags) or bool(field_errors) if flags else None)
    return row


def document_rows(task: Task, rows: list[dict[str, Any]], base: dict[str, Any],
                  convert: Callable | None = None) -> list[dict[str, Any]]:
    """One document's page-table rows -> its document-table rows: one per question (one in all for an
    extraction). `base` holds the run-wide columns; `convert` makes an extraction's typed columns."""
    if not rows:
        return []
    counts = [r["page_count"] for r in rows if r["page_count"] is not None]
    base = dict(base, doc_id=rows[0]["doc_id"], source_uri=rows[0]["source_uri"], task=rows[0]["task"],
                page_count=max(counts) if counts else None)
    page_errors = [r for r in rows if r["question"] is None and task.needs_question]  # the page failed
    questions = sorted({r["question"] for r in rows if r["question"] is not None}) if task.needs_question else [None]
    if not questions:  # nothing but failures: one row says why
        return [DOCUMENT_TABLE.row(base, status=_status(rows), **_errors(rows))]
    out = []
    for question in questions:
        mine = [r for r in rows if r["question"] == question] + page_errors
        qbase = dict(base, question=question)
        out.append(_fields_row(mine, qbase, convert) if task.per_field and convert
                   else _question_row(task, mine, qbase))
    return out

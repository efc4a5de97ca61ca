"""Stage 5 (CPU): engine outputs -> the page table's rows, one per (page, question), each answer
with its typed columns, its token confidence (pipeline/answers/confidence.py, from the sampled tokens'
log-probabilities), its place on the page (pipeline/answers/grounding.py, from the PDF's words), the
confidence that weighs both (evidence.py) on the job's calibrated scale, and whether a person should
check it (calibration.py).

Pure functions. Each raw answer is parsed and validated against the JSON Schema it was asked with;
the raw text is always kept beside the parsed value, so a row that fails validation still shows what
the model said. A number that does not fit a finite double (the model may write `-34E772`, which
Python reads as -inf) makes the answer invalid: Parquet readers and JSON parsers elsewhere would
refuse it. A row answered together with other questions validates the whole array and takes its
own item.
"""
from __future__ import annotations

import datetime as _dt
import json
from functools import lru_cache
from typing import Any

import jsonschema

from pipeline.answers import confidence, evidence, grounding
from pipeline.answers.calibration import Review
from pipeline.core.rows import PAGE_TABLE, ErrorKind as E
from pipeline.tasks import Task
from pipeline.tasks.typed_fields import dotted_path


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _parse(raw: str | None, schema: dict[str, Any]) -> tuple[Any, dict, str | None]:
    """(value, spans of its values in raw, None) if `raw` is JSON valid for `schema`, else
    (value or None, {}, error message)."""
    if raw is None:
        return None, {}, "no output"
    try:
        # raw control characters inside strings are accepted: xgrammar's JSON grammar lets the model
        # emit one (it carries no structure, and answer_json is written back with escapes)
        value, spans = confidence.parse_with_spans(raw)
    except confidence.NonFiniteNumber as exc:
        return None, {}, f"not a valid answer: {exc}"
    except json.JSONDecodeError as exc:
        return None, {}, f"not JSON: {exc.msg} at char {exc.pos}"
    errors = sorted(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "(root)"
        return value, {}, f"schema: {where}: {first.message}"
    return value, spans, None


def validate_answer(raw: str | None, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """(parsed value, None) if `raw` is JSON valid for `schema`, else (parsed or None, error message)."""
    value, _, error = _parse(raw, schema)
    return value, error


def _leaves(value: Any, prefix: tuple = ()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, prefix + (i,))
    else:
        yield prefix, value


def value_details(raw: str, answer: Any, prefix: tuple, spans: dict, out: dict[str, Any],
                  words: Any) -> list[dict[str, Any]]:
    """Per value of one answer: its path (dotted, inside the answer), token confidence, boxes, grounded,
    and the value itself (for the evidence; not stored). Strings are looked for as written, numbers as
    the literal the model wrote; true/false/null and an abstention ("unanswerable") are not looked for."""
    texts, logprobs = out.get("token_texts"), out.get("token_logprobs")
    confidences = confidence.answer_confidences(raw, texts, logprobs) if texts and logprobs else None
    details = []
    for path, value in _leaves(answer):
        full = prefix + path
        if isinstance(value, str) and not evidence.is_abstention(value):
            needle = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and full in spans:
            needle = raw[spans[full][0]:spans[full][1]]
        else:
            needle = None
        boxes, grounded = grounding.ground(needle, words, has_text_layer=words is not None)
        details.append({"path": dotted_path(path), "confidence": (confidences or {}).get(full),
                        "boxes": None if boxes is None else [b._asdict() for b in boxes], "grounded": grounded,
                        "value": value})
    return details


def _main(task: Task, details: list[dict[str, Any]], answer: Any) -> dict[str, Any]:
    """The row's token confidence, answer_boxes and grounded: its main value's; for an extraction, the
    least confident field and whether every field that could be looked for was found. And its
    evidence-aware confidence (evidence.py), before calibration."""
    if task.main_path:
        main = next((d for d in details if d["path"] == dotted_path(task.main_path)), {})
        quoted = next((d for d in details if task.evidence_path and d["path"] == dotted_path(task.evidence_path)), None)
        return {"token_confidence": main.get("confidence"), "answer_boxes": main.get("boxes"),
                "grounded": main.get("grounded"), "confidence": evidence.answer_confidence(main, quoted)}
    known = [d["confidence"] for d in details if d["confidence"] is not None]
    looked = [d["grounded"] for d in details if d["grounded"] is not None]
    malformed = set(task.convert(answer)[1]) if task.convert else set()
    return {"token_confidence": min(known) if known else None, "answer_boxes": None,
            "grounded": all(looked) if looked else None,
            "confidence": evidence.extraction_confidence(details, malformed)}


def _question_rows(engine_row: dict[str, Any], prompt: dict[str, Any], out: dict[str, Any], task: Task,
                   base: dict[str, Any], review: Review) -> list[dict[str, Any]]:
    questions = prompt["questions"]
    together = len(questions) > 1
    value, spans, error = _parse(out.get("raw_output"), json.loads(prompt["schema_json"])) \
        if out.get("error_kind") is None else (None, {}, None)
    rows = []
    for i, question in enumerate(questions):
        row = PAGE_TABLE.row(base, question=question, request_questions=len(questions), valid=False,
                             raw_output=out.get("raw_output"), finish_reason=out.get("finish_reason"),
                             attempts=out.get("attempts") or 0, prompt_tokens=out.get("prompt_tokens"),
                             output_tokens=out.get("output_tokens"), latency_s=out.get("latency_s"),
                             error_kind=out.get("error_kind"), error=out.get("error"))
        if out.get("error_kind") is None and error is None:
            answer = value["answers"][i] if together else value
            details = value_details(out["raw_output"], answer, ("answers", i) if together else (), spans, out,
                                    engine_row.get("words"))
            main = _main(task, details, answer)
            row.update(answer_json=json.dumps(answer, ensure_ascii=False, sort_keys=True), valid=True,
                       value_details=[{k: v for k, v in d.items() if k != "value"} for d in details],
                       **dict(main, confidence=review.confidence(main["confidence"])))
            for key, val in task.typed(answer).items():
                row[key] = val
        elif out.get("error_kind") is None:
            cut = out.get("finish_reason") == "length"
            row.update(error_kind=str(E.OUTPUT_TRUNCATED if cut else E.INVALID_OUTPUT),
                       error=error + (" (output hit the token limit)" if cut else ""))
        row["needs_review"] = review.needs_review(row["confidence"], row["valid"])
        rows.append(row)
    return rows


def answer_rows(engine_row: dict[str, Any], task: Task, run_id: str, model_id: str,
                now: _dt.datetime, review: Review = Review()) -> list[dict[str, Any]]:
    """One engine output row (a page and its prompts' outputs) -> its page-table rows. A page that
    failed before the engine, or that had no prompt, gives one row that carries its error. The row's
    model_id is what the engine actor says it built, else `model_id` (the job's)."""
    base = PAGE_TABLE.row(engine_row, run_id=run_id, model_id=engine_row.get("model_id") or model_id, created_at=now,
                          valid=False, attempts=0)
    if base["error"] is not None:
        base["error"] = str(base["error"])[:4000]
    prompts = engine_row.get("prompts") or []
    if not prompts:
        unasked = engine_row.get("questions_unasked")  # nothing to read (blank_page): a row per question
        rows = [dict(base, question=q) for q in unasked] if unasked else [base]
        return [dict(r, needs_review=review.needs_review(None, False)) for r in rows]
    rows = []
    for prompt, out in zip(prompts, engine_row["outputs"], strict=True):
        rows.extend(_question_rows(engine_row, prompt, out, task, base, review))
    return rows

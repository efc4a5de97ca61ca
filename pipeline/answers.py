"""Stage 5: parse every raw answer and validate it against its task's JSON Schema.

Pure functions; the raw text is always kept next to the parsed value, so a row that fails
validation still shows what the model said.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema

from pipeline.tasks import Task


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_answer(raw: str | None, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """(parsed value, None) if `raw` is JSON valid for `schema`, else (parsed or None, error message)."""
    if raw is None:
        return None, "no output"
    try:
        # strict=False: a raw tab or newline inside a string. xgrammar's JSON grammar lets the model
        # emit one (seen with vLLM 0.32's CPU engine); it carries no structure, and answer_json is
        # re-serialized with proper escapes.
        value = json.loads(raw, strict=False)
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} at char {exc.pos}"
    errors = sorted(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "(root)"
        return value, f"schema: {where}: {first.message}"
    return value, None


TYPED_COLUMNS = ("answer_text", "answer_number", "answer_unit")


def check(row: dict[str, Any], task: Task) -> tuple[Any, str | None]:
    """(this row's answer, error) from its raw output. A row answered together with other
    questions validates the whole array and takes its own item."""
    index = row.get("answer_index")
    if index is None:
        return validate_answer(row.get("raw_output"), task.schema)
    value, error = validate_answer(row.get("raw_output"), task.batched_schema(row["request_questions"]))
    if error is not None:
        return None, error
    return value["answers"][index], None


def parse_answer(row: dict[str, Any], task: Task) -> dict[str, Any]:
    """Fill answer_json, typed columns, valid and (if invalid) error for one engine output row."""
    out = dict(row)
    out.update({c: None for c in TYPED_COLUMNS}, answer_json=None, valid=False)
    if row.get("error_kind"):  # failed before or inside the engine: nothing to parse
        return out
    value, error = check(row, task)
    if error is None:
        out["answer_json"] = json.dumps(value, ensure_ascii=False, sort_keys=True)
        out["valid"] = True
        for key, val in task.typed(value).items():
            if key not in TYPED_COLUMNS:
                raise KeyError(f"task {task.name}: typed() returned unknown column {key!r}")
            out[key] = val
    else:
        cut = row.get("finish_reason") == "length"
        out["error_kind"] = "output_truncated" if cut else "invalid_output"
        out["error"] = error + (" (output hit the token limit)" if cut else "")
    return out


def rollup_document(rows: list[dict[str, Any]], task: Task) -> list[dict[str, Any]]:
    """Set doc_answer_json on every row of one document: per question, the task's roll-up of the
    valid page answers (see Task.rollup; by default the answer most pages give)."""
    by_question: dict[Any, list[tuple[int, Any]]] = {}
    for row in rows:
        by_question.setdefault(row.get("question"), [])
        if row.get("valid") and row.get("page_index") is not None:
            by_question[row.get("question")].append((row["page_index"], json.loads(row["answer_json"])))
    rolled = {q: task.rollup(values) for q, values in by_question.items()}
    out = []
    for row in rows:
        value = rolled.get(row.get("question"))
        out.append(dict(row, doc_answer_json=None if value is None else
                        json.dumps(value, ensure_ascii=False, sort_keys=True)))
    return out

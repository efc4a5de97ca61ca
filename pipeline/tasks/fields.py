"""Key-value extraction with a JSON Schema the user supplies (invoices, receipts, forms, statements).

The schema comes from `task.fields_schema`: a path (absolute, relative to the working folder, or
the name of a shipped one in schemas/fields/: invoice, receipt) or an inline mapping. It is
checked when the job starts, so a schema the engine cannot enforce fails before any GPU time.
Document roll-up: per top-level field, the value most pages agree on (null values do not vote),
as pipeline/commit/rollup.py does it.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pipeline.tasks import prompts, typed_fields
from pipeline.tasks import SCHEMA_DIR, Task
from pipeline.tasks._jsonschema import check_user_schema


def resolve_schema(setting: str | dict | None) -> tuple[dict[str, Any], str]:
    """(schema, where it came from) for the task.fields_schema setting."""
    if setting is None:
        raise ValueError("task fields needs task.fields_schema: a schema file, a shipped name "
                         f"({', '.join(sorted(p.stem for p in (SCHEMA_DIR / 'fields').glob('*.json')))}) "
                         "or an inline schema")
    if isinstance(setting, dict):
        return setting, "task.fields_schema (inline)"
    shipped = SCHEMA_DIR / "fields" / f"{setting}.json"
    path = shipped if shipped.is_file() else Path(setting)
    try:
        return json.loads(path.read_text()), str(path)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"task.fields_schema {setting!r}: {exc}") from None


def make(spec) -> Task:
    schema, source = resolve_schema(spec.fields_schema if spec is not None else None)
    check_user_schema(schema, source)
    title = schema.get("title", "the document")

    def instruction(question: str | None) -> str:
        extra = f"\nAlso note: {question}" if question else ""
        return (f"Extract the fields of {title} from this page. Copy text exactly as printed; write "
                "amounts as plain numbers (no currency symbols or thousands separators); use null "
                f"for a field the page does not show.{extra}\n{prompts.GROUNDING}\n{prompts.schema_hint(schema)}")

    # The document table gets one typed column per property; a name that cannot be one is refused now.
    from pipeline.core.rows import DOCUMENT_TABLE

    try:
        columns = tuple(typed_fields.arrow_fields(schema, reserved=DOCUMENT_TABLE.names))
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return Task(name="fields", version="1", schema=schema, instruction=instruction, needs_question=False,
                per_field=True, main_path=(), document_fields=columns,
                convert=functools.partial(typed_fields.convert, schema=schema))

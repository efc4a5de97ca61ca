"""Cheap first pass: the kind of page and its language, so a job can route pages to the right task."""
from __future__ import annotations

from pipeline.tasks import prompts
from pipeline.tasks import Task, load_schema

SCHEMA = load_schema("classify")


def instruction(question: str | None) -> str:
    kinds = ", ".join(SCHEMA["properties"]["doc_type"]["enum"])
    return (
        f"Classify this document page. `doc_type` is one of: {kinds}. `language` is the ISO 639-1 "
        "code of the main language of its text (en, de, fr, ...).\n"
        f"{prompts.GROUNDING}\n{prompts.schema_hint(SCHEMA)}"
    )


def typed(answer: dict) -> dict:
    return {"answer_text": answer.get("doc_type")}


TASK = Task(name="classify", version="1", schema=SCHEMA, instruction=instruction, typed=typed,
            needs_question=False, vote_value=lambda a: a.get("doc_type"), main_path=("doc_type",))

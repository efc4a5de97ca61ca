"""DocVQA-style question answering: a free-form question about one page, a short extractive answer."""
from __future__ import annotations

from pipeline.tasks import prompts
from pipeline.tasks import ABSTAIN, Task, load_schema

SCHEMA = load_schema("docvqa")


def instruction(question: str | None) -> str:
    return (
        "Answer the question about this document page. Give the shortest answer that is complete, "
        "copied exactly as printed on the page (keep its numbers, units and spelling); in `evidence` "
        f"quote the line it comes from. If the page does not answer it, answer \"{ABSTAIN}\".\n"
        f"{prompts.GROUNDING}\n{prompts.schema_hint(SCHEMA)}\n"
        f"Question: {question}"
    )


def typed(answer: dict) -> dict:
    return {"answer_text": answer.get("answer")}


TASK = Task(
    name="docvqa",
    version="1",
    schema=SCHEMA,
    instruction=instruction,
    typed=typed,
    default_questions=("What is the title of this document?",),
    evidence_path=("evidence",),
)

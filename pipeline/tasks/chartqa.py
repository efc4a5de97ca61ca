"""ChartQA-style questions about charts and plots: a short answer, its number and unit apart."""
from __future__ import annotations

from pipeline.tasks import prompts
from pipeline.tasks import Task, load_schema

SCHEMA = load_schema("chartqa")


def instruction(question: str | None) -> str:
    return (
        "Answer the question about the chart or plot on this page. Read values from labels where they "
        "are printed, estimate from the axes where not. `answer` is the answer as you would say it "
        "(a number, a label, yes/no); `value` is its number without unit or thousands separators "
        "(null if it is not a number); `unit` is what the number counts, like \"%\" (null if none).\n"
        f"{prompts.GROUNDING}\n{prompts.schema_hint(SCHEMA)}\n"
        f"Question: {question}"
    )


def typed(answer: dict) -> dict:
    value = answer.get("value")
    return {"answer_text": answer.get("answer"),
            "answer_number": float(value) if isinstance(value, (int, float)) else None,
            "answer_unit": answer.get("unit")}


TASK = Task(name="chartqa", version="1", schema=SCHEMA, instruction=instruction, typed=typed,
            default_questions=("What is the highest value shown in the chart?",))

"""Stage 3 (CPU): each page row becomes one request row (rows.REQUEST): the image as the engine
takes it (a data URL) and the page's prompts (instruction, JSON Schema, token limits, the questions
it answers), so the GPU actor only assembles chat messages, feeds vLLM and collects outputs.

A page whose prompt cannot fit engine.max_model_len, or that has no question, fails here, before
any engine time is spent on it.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipeline.tasks.prompts import estimate_prompt_tokens, image_data_url
from pipeline.core.rows import REQUEST, ErrorKind as E

if TYPE_CHECKING:
    from pipeline.core.config import TaskSpec
    from pipeline.tasks import Task


def _too_long(width: int, height: int, texts: list[str], max_tokens: int, max_model_len: int) -> str | None:
    need = estimate_prompt_tokens(width, height, texts)
    if need + max_tokens > max_model_len:
        return f"~{need} prompt tokens + {max_tokens} output tokens > engine.max_model_len={max_model_len}"
    return None


def request_row(page: dict[str, Any], task: "Task", task_spec: "TaskSpec", system_prompt: str | None,
                max_model_len: int) -> dict[str, Any]:
    """A page row -> its request row: one prompt per question, or one for all asked together (or one
    for each group of task.questions_per_request).

    A failed page passes through with its error and no prompt, and so does a page with nothing to read
    (blank_page), with the questions it is not asked; a page without questions, or whose prompt cannot
    fit the context, gets that error here, before any engine time is spent.
    """
    row = REQUEST.row(page, task=task.name, prompt_version=task.prompt_version, prompts=[])
    questions = task.questions_for(page.get("questions") or [], task_spec.questions)
    if page.get("error_kind") == E.BLANK_PAGE:
        row["questions_unasked"] = questions
    if page.get("error_kind"):
        return row
    if not questions:
        row.update(error_kind=str(E.NO_QUESTION), error="no question for this page: give questions in the "
                   "manifest or task.questions")
        return row
    size = (task_spec.questions_per_request or len(questions)) if task.question_mode == "together" else 1
    groups = [(g, task.batched_instruction(g), task.batched_schema(len(g))) if len(g) > 1 else
              (g, task.instruction(g[0]), task.schema)
              for g in (questions[i:i + size] for i in range(0, len(questions), size))]
    for group, instruction, schema in groups:
        max_tokens = task_spec.max_tokens * len(group)
        too_long = _too_long(page["width"], page["height"], [system_prompt or "", instruction], max_tokens,
                             max_model_len)
        if too_long:
            row.update(error_kind=str(E.CONTEXT_EXCEEDED), error=too_long, prompts=[])
            return row
        row["prompts"].append({"instruction": instruction, "schema_json": json.dumps(schema),
                               "questions": list(group), "max_tokens": max_tokens,
                               "retry_max_tokens": task_spec.retry_max_tokens * len(group)})
    row["image_url"] = image_data_url(page["image"])
    return row

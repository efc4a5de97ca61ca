"""Tasks: what to ask of a page and what shape the answer has.

A task is a module `pipeline/tasks/<name>.py` exposing `TASK` (or `make(spec) -> Task` when the
task depends on the job spec, like `fields` and its user schema), plus its JSON Schema in
`schemas/tasks/<name>.json`. Adding a task is adding those files; the pipeline looks tasks up
by name and never special-cases one.

Several questions about one page can be asked one request each (`question_mode: each`: the
image is a shared prefix, so vLLM's prefix cache encodes it once) or in one request whose
answer is an array (`question_mode: together`); `batched_schema` builds that array schema.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pipeline.tasks import prompts

if TYPE_CHECKING:
    from pipeline.core.config import TaskSpec

def _schema_dir() -> Path:
    """schemas/ is the documented source; a wheel carries it as pipeline/_schemas (pyproject.toml)."""
    packaged = Path(__file__).resolve().parents[1] / "_schemas"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "schemas"


SCHEMA_DIR = _schema_dir()


def load_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / "tasks" / f"{name}.json").read_text())


ABSTAIN = "unanswerable"  # what a question's answer says when the page does not answer it (docvqa's prompt)


def _no_typed(answer: Any) -> dict[str, Any]:
    return {}


def _answer_votes(answer: Any) -> Any:
    """The value of an answer that votes in the document roll-up: its `answer` text, unless it is
    empty or 'unanswerable' (those do not vote)."""
    text = answer.get("answer") if isinstance(answer, dict) else None
    if not isinstance(text, str) or text.strip().casefold() in ("", ABSTAIN):
        return None
    return text


@dataclass(frozen=True)
class Task:
    name: str
    version: str
    schema: dict[str, Any]
    # question (None for tasks without one) -> the instruction text after the image
    instruction: Callable[[str | None], str]
    needs_question: bool = True
    # parsed, valid answer -> values for the typed output columns (answer_text, answer_number, answer_unit)
    typed: Callable[[Any], dict[str, Any]] = _no_typed
    default_questions: tuple[str, ...] = field(default=())
    # valid answer -> the value that votes for the document-level answer (None: abstains); see
    # pipeline/commit/rollup.py. `per_field`: each top-level field votes on its own (extraction tasks).
    vote_value: Callable[[Any], Any] = _answer_votes
    per_field: bool = False
    # the JSON path of the value whose confidence and place on the page the row reports
    main_path: tuple = ("answer",)
    # the JSON path of the line the answer quotes as its evidence, if the task asks for one
    evidence_path: tuple | None = None
    # an extraction's typed document-table columns (pyarrow fields) and answer -> (values, errors)
    document_fields: tuple = ()
    convert: Callable[[Any], tuple[dict[str, Any], dict[str, str]]] | None = None
    question_mode: str = "together"  # TaskSpec.question_mode overrides; see there

    @property
    def prompt_version(self) -> str:
        return f"{prompts.PROMPT_VERSION}/{self.name}-{self.version}"

    def questions_for(self, page_questions: list[str] | None, spec_questions: list[str]) -> list[str | None]:
        """The page's own questions, else the job's, else the task's defaults; [None] if it takes none."""
        if not self.needs_question:
            return [None]
        return list(page_questions or spec_questions or self.default_questions)

    def batched_schema(self, n: int) -> dict[str, Any]:
        """Schema of one answer to n questions asked together: {"answers": [answer_1, ..., answer_n]}."""
        item = {k: v for k, v in self.schema.items() if k not in ("$schema", "title", "description")}
        return {"type": "object", "additionalProperties": False, "required": ["answers"],
                "properties": {"answers": {"type": "array", "items": item, "minItems": n, "maxItems": n}}}

    def batched_instruction(self, questions: list[str]) -> str:
        """One instruction for several questions: the single-question text, questions numbered."""
        head = self.instruction("(see the numbered list below)")
        listed = "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))
        return (f"{head}\nAnswer each of these {len(questions)} questions, in order, as the items of "
                f"`answers`:\n{listed}")


def available() -> list[str]:
    """The task modules: those of this folder that define a task (TASK, or make() for a task with
    settings); prompts.py and typed_fields.py live here too and are not tasks."""
    names = (m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return sorted(n for n in names if _is_task(importlib.import_module(f"pipeline.tasks.{n}")))


def _is_task(module) -> bool:
    return hasattr(module, "TASK") or hasattr(module, "make")


def get_task(name: str, spec: "TaskSpec | None" = None) -> Task:
    """The task named `name`, configured by the job's task spec where the task takes settings."""
    if name not in available():
        raise ValueError(f"unknown task {name!r}; available: {', '.join(available())}")
    module = importlib.import_module(f"pipeline.tasks.{name}")
    task = module.make(spec) if hasattr(module, "make") else module.TASK
    if spec is not None and spec.question_mode != task.question_mode:
        task = Task(**{**task.__dict__, "question_mode": spec.question_mode})
    return task

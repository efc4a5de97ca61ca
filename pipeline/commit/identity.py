"""What makes two runs the same job: the settings that change an answer, in one place.

`fingerprint(spec)` lists them: the task and how it asks (questions, mode, token limits, the
fields schema itself), the prompt version, the model as rows name it and how it samples, and the
rendering that decides what the model sees and which pages it is asked about (render.blank_page).
`--resume` refuses to go on under a different fingerprint (and says which settings differ);
`--incremental` skips a document only when a committed run answered the same content under the same
`document_key`, which is the fingerprint with the document's own questions, minus `render.max_pages`
(a document cut by that limit is redone when it rises: see manifest.py).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from pipeline.core.config import BlankPageSpec, JobSpec
from pipeline.engine.model import model_label
from pipeline.tasks import Task


def fingerprint(spec: JobSpec, task: Task) -> dict[str, Any]:
    t, e, r = spec.task, spec.engine, spec.render
    return {
        "task": t.name, "questions": list(t.questions), "question_mode": t.question_mode,
        **({"questions_per_request": t.questions_per_request} if t.questions_per_request else {}),
        "max_tokens": t.max_tokens, "retry_max_tokens": t.retry_max_tokens,
        "schema": task.schema, "prompt_version": task.prompt_version,
        "model": model_label(e), "system_prompt": e.system_prompt, "temperature": e.temperature,
        "seed": e.seed, "dtype": e.dtype, "quantization": e.quantization,
        "render": {"dpi": r.dpi, "max_side": r.max_side, "max_pixels": r.max_pixels,
                   "image_format": r.image_format, "max_pages": r.max_pages,
                   # which pages are asked; named when not the default, so the runs from before the
                   # gate keep their fingerprint
                   **({"blank_page": r.blank_page.model_dump()} if r.blank_page != BlankPageSpec() else {})},
        # the confidence scale and the review threshold change the rows; absent when unset, so runs
        # from before they existed keep their identity
        **({"answers": _answers(spec.answers)} if spec.answers.calibration or spec.answers.review_threshold is not None
           else {}),
    }


def _answers(a) -> dict[str, Any]:
    """The answers section as it decides the rows: the calibration map by its content, not its path."""
    from pipeline.store import fileio

    data = fileio.read_bytes(a.calibration) if a.calibration else None
    return {"calibration": hashlib.sha256(data).hexdigest()[:16] if data else a.calibration,
            "review_threshold": a.review_threshold}


def differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """'key: old -> new' for every setting that differs (nested keys dotted)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "schema":
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            shown = lambda v: json.dumps(v, default=str)[:80]  # noqa: E731
            out.append(f"{prefix}{key}: {shown(a)} -> {shown(b)}")
    return out


def document_key(print_: dict[str, Any], questions: list[str] | None) -> str:
    """The key --incremental matches on, for one document with its own questions (if any)."""
    basis = dict(print_, render={k: v for k, v in print_["render"].items() if k != "max_pages"},
                 questions=list(questions) if questions else print_["questions"])
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()[:32]

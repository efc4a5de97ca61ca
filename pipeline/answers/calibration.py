"""A confidence that means what it says, and the rows a person should check.

`docintel eval` fits, per task, a monotone map from the evidence-aware confidence (evidence.py) to the
share of right answers on a gold set (pipeline/evaluation/calibrate.py says how and why isotonic) and
writes it beside the eval as calibration.json. A job that names it (`answers.calibration: PATH`) gets
`confidence` on that scale: of the answers at 0.9, about nine in ten were right on the gold set. The
map also carries the review threshold eval proposed for a target precision; `answers.review_threshold`
overrides it. `needs_review` is then true for every row below the threshold, and for every row with
no valid answer or no confidence; null when the job has no threshold at all.

Applying a map is linear interpolation between its knots (numpy), so the answer stage needs nothing
the fitting needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CalibrationMap:
    task: str
    x: tuple[float, ...]  # knots, increasing: evidence-aware confidence
    y: tuple[float, ...]  # the share of right answers there, non-decreasing
    threshold: float | None = None  # review threshold proposed by eval for `target_precision`
    target_precision: float | None = None

    def __call__(self, confidence: float | None) -> float | None:
        if confidence is None:
            return None
        return float(np.interp(confidence, self.x, self.y))

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "method": "isotonic", "x": list(self.x), "y": list(self.y),
                "threshold": self.threshold, "target_precision": self.target_precision}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CalibrationMap":
        x, y = tuple(float(v) for v in data["x"]), tuple(float(v) for v in data["y"])
        if len(x) != len(y) or not x or any(b < a for a, b in zip(x, x[1:])) or any(b < a for a, b in zip(y, y[1:])):
            raise ValueError("a calibration map needs as many x as y knots, both non-decreasing")
        return cls(data["task"], x, y, data.get("threshold"), data.get("target_precision"))


@lru_cache(maxsize=8)
def load(path: str) -> CalibrationMap:
    """The map at `path` (a local path or a URI the job's storage reads); read once per process."""
    from pipeline.store import fileio

    data = fileio.read_json(path)
    if data is None:
        raise ValueError(f"answers.calibration: {path} does not exist")
    return CalibrationMap.from_dict(data)


@dataclass(frozen=True)
class Review:
    """What the answer stage applies to every row's confidence: the map (or none) and the threshold."""

    calibration: CalibrationMap | None = None
    threshold: float | None = None

    @classmethod
    def of(cls, answers_spec, task: str) -> "Review":
        """From the job's answers section (AnswersSpec); the map must have been fitted for `task`."""
        mapping = load(answers_spec.calibration) if answers_spec.calibration else None
        if mapping is not None and mapping.task != task:
            raise ValueError(f"answers.calibration {answers_spec.calibration} was fitted for task {mapping.task!r}, "
                             f"not {task!r}")
        threshold = answers_spec.review_threshold
        if threshold is None and mapping is not None:
            threshold = mapping.threshold
        return cls(mapping, threshold)

    def confidence(self, score: float | None) -> float | None:
        return self.calibration(score) if self.calibration is not None else score

    def needs_review(self, confidence: float | None, valid: bool) -> bool | None:
        if self.threshold is None:
            return None
        return not valid or confidence is None or confidence < self.threshold

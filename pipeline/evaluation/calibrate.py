"""Calibrate the confidence on a gold set: fit on one half, measure on the other, propose a review threshold.

`docintel eval` calls `calibrate(scores, task, target_precision)` after scoring and writes the result
beside the scores as calibration.json, the file a job names as `answers.calibration`
(pipeline/answers/calibration.py applies it).

Why isotonic regression, not temperature scaling. Temperature scaling fits one parameter and so
assumes the scores sit a logistic curve away from the truth, moving all of them together. Ours do not:
the evidence factors put whole groups of answers at fixed fractions (x 0.25, x 0.5), and a model sure
of a wrong answer puts it at 0.99 beside its right ones; no temperature separates those. Isotonic
regression assumes only that a higher score is not less often right, takes any shape, and a few hundred
gold answers give it enough steps. `scipy.optimize.isotonic_regression` (the pool-adjacent-violators
algorithm) fits it; applying it is linear interpolation between its knots.

Halves. The gold items are split by document (a hash of its name; the pages of one document stay on
one side): the map and the threshold are fitted on one half, every figure reported is measured on the
other. Answers without a confidence (no valid answer, no log-probabilities) are left out of both and
counted apart: they need a review whatever the threshold.

Figures. Expected calibration error (ECE) over ten equal-width bins: the mean, weighted by the bin's
answers, of |mean confidence - share right|. The proposed threshold: the lowest confidence t such that
the answers at t or above are right at least `target_precision` of the time on the fit half; on the
other half, the share of those answers that are right and the share of all rows it flags.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from pipeline.answers.calibration import CalibrationMap

BINS = 10
TARGET_PRECISION = 0.95


def half(source_uri: str) -> int:
    """0 (fit) or 1 (measure): stable across runs and machines, one side per document."""
    return hashlib.sha256(source_uri.encode()).digest()[0] & 1


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float | None:
    if not len(confidence):
        return None
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() / len(confidence) * abs(confidence[inside].mean() - correct[inside].mean())
    return float(total)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[dict[str, Any]]:
    """Per bin of confidence: answers, mean confidence, share right (a reliability diagram's points)."""
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        inside = which == b
        out.append({"low": b / bins, "high": (b + 1) / bins, "n": int(inside.sum()),
                    "confidence": float(confidence[inside].mean()) if inside.any() else None,
                    "right": float(correct[inside].mean()) if inside.any() else None})
    return out


def fit(confidence: np.ndarray, correct: np.ndarray, task: str) -> CalibrationMap:
    """The isotonic map from confidence to the share right (knots where it steps)."""
    from scipy.optimize import isotonic_regression

    order = np.argsort(confidence, kind="stable")
    x, y = confidence[order], isotonic_regression(correct[order].astype(float), increasing=True).x
    xs, first = np.unique(x, return_index=True)  # one knot per distinct confidence: its answers' mean
    ys = np.maximum.accumulate(np.add.reduceat(y, first) / np.diff(np.append(first, len(y))))
    xs, ys = list(xs), list(ys)
    if xs[0] > 0.0:  # flat to the ends, as interpolation clamps anyway
        xs, ys = [0.0, *xs], [ys[0], *ys]
    if xs[-1] < 1.0:
        xs, ys = [*xs, 1.0], [*ys, ys[-1]]
    # a flat step needs only its two ends: interpolation between them gives the same values
    keep = [i for i in range(len(xs)) if i in (0, len(xs) - 1) or not ys[i - 1] == ys[i] == ys[i + 1]]
    return CalibrationMap(task, tuple(float(xs[i]) for i in keep), tuple(float(ys[i]) for i in keep))


def threshold_for(confidence: np.ndarray, correct: np.ndarray, target: float) -> float | None:
    """The lowest t whose answers at t or above are right at least `target` of the time (None if none)."""
    for t in np.unique(confidence):
        above = confidence >= t
        if correct[above].mean() >= target:
            return float(t)
    return None


def calibrate(rows: list[dict[str, Any]], task: str, target: float = TARGET_PRECISION) -> dict[str, Any]:
    """The map, its threshold and the figures, from scored items (evaluate.SCORES_SCHEMA rows)."""
    known = [r for r in rows if r["confidence"] is not None]
    sides = [[r for r in known if half(r["source_uri"]) == s] for s in (0, 1)]
    if not sides[0] or not sides[1]:
        return {"task": task, "fitted": False, "why": "too few answers with a confidence to fit on one half of "
                                                      "the gold set and measure on the other"}
    (fx, fy), (mx, my) = [(np.array([r["confidence"] for r in s], float), np.array([bool(r["correct"]) for r in s]))
                          for s in sides]
    mapping = fit(fx, fy, task)
    t = threshold_for(np.array([mapping(c) for c in fx]), fy, target)
    mapping = CalibrationMap(task, mapping.x, mapping.y, t, target)
    after = np.array([mapping(c) for c in mx])
    measured = [r for r in rows if half(r["source_uri"]) == 1]
    flagged = sum(1 for r in measured if r["confidence"] is None or t is None or mapping(r["confidence"]) < t)
    above = after >= t if t is not None else np.zeros(len(after), bool)
    return {"task": task, "fitted": True, "method": "isotonic", "map": mapping.as_dict(),
            "fit_answers": len(fx), "measured_answers": len(mx), "without_confidence": len(rows) - len(known),
            "ece_before": ece(mx, my), "ece_after": ece(after, my),
            "reliability_before": reliability(mx, my), "reliability_after": reliability(after, my),
            "threshold": t, "target_precision": target,
            "precision_at_threshold": float(my[above].mean()) if above.any() else None,
            "share_needing_review": flagged / len(measured) if measured else None,
            "right_at_0_9": float(my[after >= 0.9].mean()) if (after >= 0.9).any() else None,
            "answers_at_0_9": int((after >= 0.9).sum())}

"""The confidence that routes work: the model's belief in a value, checked against what the pipeline
knows of the page (then put on a measured scale by pipeline/answers/calibration.py).

The token confidence (confidence.py: the joint probability the model gave the value's tokens) is what
the model believes, and a model can be sure of a wrong thing: the tiny reader wrote ":" with 0.94 when
a grammar pushed it off its format, and answers blank pages from the layout it expects with 0.9 and
more (bench/results/2026-12-06-reader-score-cpu.json). The pipeline knows things the model's belief
does not; each piece of evidence against a value multiplies its confidence by a factor:

  nothing to say: empty, or punctuation only (":", "-")            x 0.01  no page answers with it
  not well formed for its type (a date, an amount that does not
    convert to its column: typed_fields' errors)                    x 0.1
  not on the page's text layer, where the page has one              x 0.25  (grounded false)
  the line it quotes as evidence not on the text layer               x 0.5

A value found on the text layer keeps the model's belief: that is then the best measure there is. A
page without a text layer (a scan, an image) gives no evidence either way. An abstention
("unanswerable") is not looked for on the page. The factors order answers; they do not claim
probabilities: `docintel eval` fits the monotone map from this score to the share of right answers on
a gold set (pipeline/evaluation/calibrate.py).
"""
from __future__ import annotations

from typing import Any

from pipeline.tasks import ABSTAIN

NOTHING_TO_SAY = 0.01
MALFORMED = 0.1
NOT_ON_THE_PAGE = 0.25
EVIDENCE_NOT_ON_THE_PAGE = 0.5


def says_nothing(value: Any) -> bool:
    """An empty string, or one of punctuation and spaces only."""
    return isinstance(value, str) and not any(ch.isalnum() for ch in value)


def is_abstention(value: Any) -> bool:
    return isinstance(value, str) and value.strip().casefold() == ABSTAIN


def value_confidence(token_confidence: float | None, value: Any, grounded: bool | None,
                     well_formed: bool = True) -> float | None:
    """One value's confidence: its token confidence times the factor of each piece of evidence against it."""
    if token_confidence is None:
        return None
    factor = 1.0
    if says_nothing(value):
        factor *= NOTHING_TO_SAY
    if not well_formed:
        factor *= MALFORMED
    if grounded is False:
        factor *= NOT_ON_THE_PAGE
    return token_confidence * factor


def answer_confidence(main: dict[str, Any] | None, evidence: dict[str, Any] | None) -> float | None:
    """A question's answer: its main value's confidence, halved again when its quoted evidence is not
    on the page. `main`/`evidence`: value_details entries with the value itself under "value"."""
    if not main:
        return None
    score = value_confidence(main.get("confidence"), main.get("value"), main.get("grounded"))
    if score is not None and evidence and evidence.get("grounded") is False:
        score *= EVIDENCE_NOT_ON_THE_PAGE
    return score


def extraction_confidence(fields: list[dict[str, Any]], malformed: set[str]) -> float | None:
    """An extraction's: its least confident field's (`fields`: value_details entries with "value";
    `malformed`: the dotted paths of the values that did not convert to their columns)."""
    scores = [value_confidence(d.get("confidence"), d.get("value"), d.get("grounded"),
                               well_formed=d["path"] not in malformed) for d in fields]
    known = [s for s in scores if s is not None]
    return min(known) if known else None

"""The confidence that routes work (pipeline/answers/evidence.py, calibration.py; pipeline/evaluation/
calibrate.py): evidence against a value lowers it, eval's isotonic map puts it on a measured scale
fitted on one half of the gold set's documents and measured on the other, the proposed threshold meets
its precision, and needs_review follows the job's threshold. The whole loop through the CLI (eval
writes the map, a job names it) is in tests/test_eval.py; the figures on the tiny reader's pages are
in bench/RESULTS.md."""
import json

import numpy as np
import pytest

from pipeline.answers import evidence
from pipeline.answers.calibration import CalibrationMap, Review
from pipeline.core.config import AnswersSpec
from pipeline.evaluation import calibrate


def test_evidence_against_a_value_lowers_its_confidence():
    assert evidence.value_confidence(0.98, "16,091.25 EUR", grounded=True) == 0.98
    assert evidence.value_confidence(0.98, "16,091.25 EUR", grounded=None) == 0.98  # a scan: no evidence either way
    assert evidence.value_confidence(0.98, "16,091.25 EUR", grounded=False) == pytest.approx(0.98 * 0.25)
    assert evidence.value_confidence(0.94, ":", grounded=None) == pytest.approx(0.0094)  # the GPU's ":" answers
    assert evidence.value_confidence(0.9, "2024-13-45", grounded=True, well_formed=False) == pytest.approx(0.09)
    assert evidence.value_confidence(None, "x", grounded=True) is None
    main = {"confidence": 0.9, "value": "Total", "grounded": True}
    assert evidence.answer_confidence(main, {"grounded": False}) == pytest.approx(0.45)
    assert evidence.answer_confidence(main, {"grounded": True}) == 0.9 and evidence.answer_confidence({}, None) is None
    fields = [{"path": "total", "confidence": 0.9, "value": 12.5, "grounded": True},
              {"path": "invoice_date", "confidence": 0.99, "value": "yesterday", "grounded": True}]
    assert evidence.extraction_confidence(fields, malformed={"invoice_date"}) == pytest.approx(0.099)
    assert evidence.is_abstention(" Unanswerable ") and evidence.says_nothing(" - ") and not evidence.says_nothing("7")


def test_an_abstention_is_not_looked_for_on_the_page():
    from pipeline.answers.answers import value_details

    words = {"text": ["Total:", "12.50"], "x0": [0.1, 0.3], "y0": [0.1, 0.1], "x1": [0.2, 0.4], "y1": [0.12, 0.12],
             "block": [0, 0], "line": [0, 0]}
    raw = '{"answer":"unanswerable"}'
    details = value_details(raw, {"answer": "unanswerable"}, (), {}, {}, words)
    assert details[0]["grounded"] is None
    details = value_details('{"answer":"13.00"}', {"answer": "13.00"}, (), {}, {}, words)
    assert details[0]["grounded"] is False


def _synthetic(n: int, seed: int = 0):
    """Answers whose share right is confidence cubed: an over-confident model."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0, 1, n)
    return [{"source_uri": f"doc-{i}.pdf", "confidence": float(c), "correct": bool(rng.uniform() < c ** 3)}
            for i, c in enumerate(confidence)]


def test_isotonic_calibration_fitted_on_one_half_is_calibrated_on_the_other():
    rows = _synthetic(2000) + [{"source_uri": "x.pdf", "confidence": None, "correct": False}]
    result = calibrate.calibrate(rows, "docvqa", target=0.9)
    assert result["fitted"] and result["without_confidence"] == 1
    assert result["fit_answers"] + result["measured_answers"] == 2000
    assert result["ece_before"] > 0.2 and result["ece_after"] < 0.05, result
    assert result["precision_at_threshold"] >= 0.85  # 0.9 on the fit half; the other half is close
    mapping = CalibrationMap.from_dict(result["map"])
    assert all(b >= a for a, b in zip(mapping.y, mapping.y[1:])) and mapping.x[0] == 0.0 and mapping.x[-1] == 1.0
    assert mapping(0.5) < 0.5 and mapping.threshold == result["threshold"]
    # halves by document, stable: a document's rows are all on one side
    assert {calibrate.half("doc-7.pdf")} == {calibrate.half("doc-7.pdf")} and {calibrate.half(r["source_uri"])
                                                                              for r in rows} == {0, 1}
    assert json.loads(json.dumps(result["map"]))["method"] == "isotonic"


def test_too_few_answers_fit_nothing_and_say_why():
    result = calibrate.calibrate(_synthetic(1), "docvqa")
    assert not result["fitted"] and "too few" in result["why"]


def test_the_threshold_is_the_lowest_that_meets_the_precision():
    confidence = np.array([0.1, 0.2, 0.5, 0.6, 0.9, 0.95])
    correct = np.array([False, False, False, True, True, True])
    assert calibrate.threshold_for(confidence, correct, 0.95) == 0.6
    assert calibrate.threshold_for(confidence, np.zeros(6, bool), 0.95) is None
    assert calibrate.ece(np.array([0.9, 0.9]), np.array([True, False])) == pytest.approx(0.4)


def test_a_map_needs_increasing_knots_and_its_own_task(tmp_path):
    with pytest.raises(ValueError):
        CalibrationMap.from_dict({"task": "docvqa", "x": [0, 0.5, 0.4], "y": [0, 0.5, 1]})
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"task": "docvqa", "x": [0, 1], "y": [0.1, 0.8], "threshold": 0.7}))
    review = Review.of(AnswersSpec(calibration=str(path)), "docvqa")
    assert review.confidence(1.0) == pytest.approx(0.8) and review.threshold == 0.7
    assert review.needs_review(0.75, True) is False and review.needs_review(0.6, True) is True
    assert review.needs_review(0.99, False) is True and review.needs_review(None, True) is True
    assert Review.of(AnswersSpec(calibration=str(path), review_threshold=0.5), "docvqa").threshold == 0.5
    assert Review.of(AnswersSpec(), "docvqa").needs_review(0.1, True) is None  # no threshold: no verdict
    with pytest.raises(ValueError, match="fitted for task 'docvqa'"):
        Review.of(AnswersSpec(calibration=str(path)), "chartqa")

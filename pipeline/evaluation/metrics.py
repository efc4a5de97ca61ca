"""Scores for a document-VQA evaluation: pure functions, standard library only.

levenshtein(a, b)
    Unit-cost edit distance (insertions, deletions, substitutions) over Unicode code points,
    computed with the usual two-row dynamic programme.

anls(prediction, references, threshold=0.5)
    Average Normalized Levenshtein Similarity of one question, as defined for ST-VQA by
    Biten et al. 2019, "Scene Text Visual Question Answering" (ICCV 2019, arXiv:1905.13648, Eq. 1)
    and used unchanged by DocVQA (Mathew et al. 2021) and InfographicVQA:

        NL(a, o) = levenshtein(a, o) / max(|a|, |o|)
        s(a, o)  = 1 - NL(a, o)   if NL(a, o) <  threshold
                   0              if NL(a, o) >= threshold
        anls     = max over the reference answers a of s(a, o)

    Both strings are first normalised the way the Robust Reading Competition's DocVQA /
    InfographicVQA evaluation script (`evaluate_method`, rrc.cvc.uab.es/?ch=17) does it:
    ``" ".join(s.strip().lower().split())`` -- lowercase, surrounding whitespace removed, internal
    runs of whitespace collapsed to one space. So the metric is case-insensitive, and sensitive to
    spaces only in whether there is one ("CocaCola" vs "Coca Cola" costs an edit).
    Two empty strings score 1.0 (the script's ``0.0 if length == 0``); an empty prediction against
    a non-empty reference scores 0.0.

    Two places where published code departs from Eq. 1, reproduced by ``rrc_compat=True``:
      * the RRC script (and lmms-eval, which copies it) zeroes the score when ``1 - NL < threshold``,
        so NL exactly equal to the threshold keeps its score (0.5) where Eq. 1 gives 0; pix2struct's
        ``anls_metric`` (``<= theta``) agrees with the script here;
      * the RRC script divides the distance between the *normalised* strings by the length of the
        *raw* strings, so extra whitespace in either string lowers NL.
    The default (``rrc_compat=False``) is Eq. 1 on the normalised strings.

mean_anls(pairs)
    Mean of ``anls`` over (prediction, references) pairs: the dataset-level ANLS (0.0 for none).

relaxed_correctness(target, prediction, max_relative_change=0.05)
    ChartQA's relaxed accuracy (Masry et al. 2022, arXiv:2203.10244, end of Sec. 5.1, after
    Methani et al. 2020): a numeric answer is correct within 5 % of the gold number, any other
    answer needs an exact match. Reproduces google-research/pix2struct, pix2struct/metrics.py
    ``relaxed_correctness`` with its ``_to_float`` helper exactly:
      * ``_to_float``: ``float(text)``; a text ending in "%" is ``float(text.rstrip("%")) / 100``;
        None when ``float`` raises ValueError ("12 kg", "1,234", "" are not numbers);
      * numeric path only when the prediction parses AND the target parses to a non-zero number
        (``if prediction_float is not None and target_float``): correct iff
        ``|prediction - target| / |target| <= max_relative_change`` (inclusive);
      * otherwise (either is not a number, or the target is 0): ``prediction.lower() == target.lower()``.
        So a target of "0" is only matched by the string "0" ("0.0" and "0%" are wrong), and
        "45%" vs "0.45" is correct (both 0.45). No stripping is done beyond what ``float`` does.

relaxed_accuracy(prediction, references)
    True when ``relaxed_correctness(reference, prediction)`` holds for any reference: the max over
    targets that pix2struct's ``aggregate_metrics`` takes.

field_scores(predicted, gold)
    Field-level precision / recall / F1 / exact match for key-value extraction (our definition, in
    the spirit of the field-level F1 used for form and receipt extraction, e.g. CORD / SROIE /
    Donut's field F1). Both objects are flattened to dotted paths (nested dicts by key, lists by
    index: ``{"items": [{"sku": "A1"}]}`` -> ``items.0.sku``). A leaf is absent when it is None,
    an empty / whitespace-only string, or an empty dict or list. Leaf values are normalised:
      * a number (int, float, Decimal; not bool) is a number;
      * a string is stripped, casefolded and whitespace-collapsed; if what remains is a plain
        number once currency symbols ($ € £ ¥ ₹ ...) and correctly placed thousands
        separators ("1,234,567.89") are removed, it is that number;
      * numbers compare by value (exact decimal equality: "$1,234.50" == 1234.5 == "1234.5"),
        everything else compares as the normalised string; a bool becomes "true"/"false".
    A predicted field is a true positive when the same path is present in gold with an equal value.
    precision = TP / predicted fields, recall = TP / gold fields, F1 their harmonic mean; when a
    denominator is 0 the value is 0.0, except that an empty prediction for an empty gold object
    scores 1.0 throughout. exact_match: every gold field matched and no other predicted field.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

__all__ = ["levenshtein", "anls", "mean_anls", "relaxed_correctness", "relaxed_accuracy",
           "field_scores", "flatten", "normalize_value"]


# --------------------------------------------------------------------------- edit distance

def levenshtein(a: str, b: str) -> int:
    """Unit-cost Levenshtein distance between two strings (iterative DP, O(len(a)*len(b)))."""
    if len(a) < len(b):
        a, b = b, a  # keep the row as short as possible
    if not b:
        return len(a)
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1,                 # delete ca
                               current[j - 1] + 1,              # insert cb
                               previous[j - 1] + (ca != cb)))   # substitute (or keep)
        previous = current
    return previous[-1]


# --------------------------------------------------------------------------- ANLS

def _anls_normalize(text: str) -> str:
    """The RRC DocVQA script's preprocessing: lowercase, strip, collapse internal whitespace."""
    return " ".join(text.strip().lower().split())


def anls(prediction: str, references: Sequence[str], threshold: float = 0.5, *,
         rrc_compat: bool = False) -> float:
    """ANLS of one prediction against its reference answers (see the module docstring).

    ``rrc_compat=True`` reproduces the RRC evaluation script bit for bit instead of Eq. 1:
    threshold inclusive (NL == threshold keeps 1 - NL) and the length taken from the raw strings.
    Raises ValueError when there are no references (the question cannot be scored).
    """
    if isinstance(references, str):
        references = [references]
    if not references:
        raise ValueError("anls: no reference answers")
    pred = _anls_normalize(prediction)
    best_nl = None
    for reference in references:
        ref = _anls_normalize(reference)
        if rrc_compat:
            length = max(len(reference.upper()), len(prediction.upper()))
        else:
            length = max(len(ref), len(pred))
        nl = 0.0 if length == 0 else levenshtein(ref, pred) / length
        best_nl = nl if best_nl is None else min(best_nl, nl)
    score = 1.0 - best_nl
    if rrc_compat:
        return 0.0 if score < threshold else score
    return score if best_nl < threshold else 0.0


def mean_anls(pairs: Iterable[tuple[str, Sequence[str]]], threshold: float = 0.5, *,
              rrc_compat: bool = False) -> float:
    """Dataset ANLS: the mean of ``anls(prediction, references)`` over the pairs; 0.0 for none."""
    scores = [anls(p, refs, threshold, rrc_compat=rrc_compat) for p, refs in pairs]
    return sum(scores) / len(scores) if scores else 0.0


# --------------------------------------------------------------------------- relaxed accuracy

def _to_float(text: str) -> Optional[float]:
    """pix2struct's helper: float(text), a trailing '%' divided by 100; None if not a number."""
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(target: str, prediction: str, max_relative_change: float = 0.05) -> bool:
    """pix2struct's relaxed_correctness (google-research/pix2struct, pix2struct/metrics.py).

    Numeric within ``max_relative_change`` of a non-zero numeric target, else case-insensitive
    exact string match. Note the argument order: target first, as in pix2struct.
    """
    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        relative_change = abs(prediction_float - target_float) / abs(target_float)
        return relative_change <= max_relative_change
    return prediction.lower() == target.lower()


def relaxed_accuracy(prediction: str, references: Sequence[str],
                     max_relative_change: float = 0.05) -> bool:
    """True when the prediction is relaxed-correct for any reference (False for no references)."""
    if isinstance(references, str):
        references = [references]
    return any(relaxed_correctness(ref, prediction, max_relative_change) for ref in references)


# --------------------------------------------------------------------------- field extraction

_CURRENCY = "$€£¥₹₩₽₺₪₫₱฿¢"
_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
_ABSENT = object()


def _parse_number(text: str) -> Optional[Decimal]:
    """A plain number in ``text`` (already stripped), with currency symbols and thousands
    separators allowed: "$1,234.50", "1234.5 €", "-$5", "$-5". None for anything else."""
    core = text.strip(_CURRENCY + " ")
    if len(core) > 1 and core[0] in "+-":
        core = core[0] + core[1:].lstrip(_CURRENCY + " ")
    if not _NUMBER.fullmatch(core):
        return None
    try:
        return Decimal(core.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
        return None


def normalize_value(value: Any) -> Any:
    """The comparable form of a leaf value: ("num", Decimal) or ("str", text); _ABSENT if empty."""
    if value is None:
        return _ABSENT
    if isinstance(value, bool):
        return ("str", "true" if value else "false")
    if isinstance(value, (int, Decimal)):
        return ("num", Decimal(value))
    if isinstance(value, float):
        return ("num", Decimal(repr(value))) if value == value else ("str", "nan")
    text = " ".join(str(value).strip().casefold().split())
    if not text:
        return _ABSENT
    number = _parse_number(text)
    return ("num", number) if number is not None else ("str", text)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested dicts/lists keyed by dotted path (list items by index); raw values."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix] = obj
    return out


def _fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise TypeError(f"field_scores: expected a dict, got {type(obj).__name__}")
    normalized = {path: normalize_value(v) for path, v in flatten(obj).items()}
    return {path: v for path, v in normalized.items() if v is not _ABSENT}


def field_scores(predicted: Mapping[str, Any], gold: Mapping[str, Any]) -> dict[str, Any]:
    """Precision, recall, F1 and exact match of predicted fields against gold fields.

    Returns {"precision", "recall", "f1", "exact_match", "true_positives", "predicted", "gold"};
    the last three are counts, for micro-averaging over documents.
    """
    pred = _fields(predicted)
    ref = _fields(gold)
    tp = sum(1 for path, value in pred.items() if path in ref and ref[path] == value)
    if not pred and not ref:
        precision = recall = f1 = 1.0
    else:
        precision = tp / len(pred) if pred else 0.0
        recall = tp / len(ref) if ref else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1,
            "exact_match": tp == len(ref) and len(pred) == len(ref),
            "true_positives": tp, "predicted": len(pred), "gold": len(ref)}

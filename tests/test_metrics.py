"""pipeline/evaluation/metrics.py: exact numbers from hand-worked examples (distances worked in the comments)."""
import pytest

from pipeline.evaluation.metrics import (anls, field_scores, flatten, levenshtein, mean_anls, relaxed_accuracy,
                              relaxed_correctness)


# --------------------------------------------------------------------------- levenshtein

@pytest.mark.parametrize("a, b, d", [
    ("", "", 0),
    ("", "abc", 3),            # 3 insertions
    ("abc", "", 3),            # 3 deletions
    ("abc", "abc", 0),
    ("kitten", "sitting", 3),  # k->s, e->i, +g
    ("flaw", "lawn", 2),       # -f, +n
    ("hello", "hallo", 1),     # e->a
    ("cocacola", "coca cola", 1),  # + " "
])
def test_levenshtein(a, b, d):
    assert levenshtein(a, b) == d
    assert levenshtein(b, a) == d


# --------------------------------------------------------------------------- ANLS

def test_anls_identical_is_one():
    assert anls("the cat", ["the cat"]) == 1.0


def test_anls_one_edit_in_five_chars():
    # "hello" vs "hallo": 1 substitution (e->a); max length 5 -> NL = 1/5 = 0.2 -> 1 - 0.2 = 0.8
    assert anls("hello", ["hallo"]) == pytest.approx(0.8)


def test_anls_far_answer_scores_zero():
    # "abc" vs "xyz": 3 substitutions / 3 -> NL 1.0 >= 0.5 -> 0
    assert anls("abc", ["xyz"]) == 0.0
    # "cola" vs "coca cola": 5 insertions ("coca ") / 9 -> NL 0.556 >= 0.5 -> 0 (RRC's example: 0.44 -> 0)
    assert anls("Cola", ["Coca Cola"]) == 0.0


def test_anls_exactly_at_threshold():
    # "12" vs "13": 1 substitution / 2 -> NL = 0.5 exactly.
    # Eq. 1 of Biten et al.: s = 1 - NL only if NL < tau, so NL == tau scores 0.
    assert anls("12", ["13"]) == 0.0
    # The RRC script zeroes only when 1 - NL < tau, so it keeps 0.5 here.
    assert anls("12", ["13"], rrc_compat=True) == 0.5
    # Just under the threshold: "abcde" vs "abxyz": 3 substitutions / 5 -> NL 0.6 -> 0 either way;
    # "abcd" vs "abcx": 1 / 4 -> NL 0.25 -> 0.75 either way.
    assert anls("abcde", ["abxyz"]) == 0.0 and anls("abcde", ["abxyz"], rrc_compat=True) == 0.0
    assert anls("abcd", ["abcx"]) == 0.75 and anls("abcd", ["abcx"], rrc_compat=True) == 0.75


def test_anls_threshold_parameter():
    # NL 0.2 (hello/hallo) is over a 0.1 threshold
    assert anls("hello", ["hallo"], threshold=0.1) == 0.0


def test_anls_takes_the_max_over_references():
    # The RRC's Coca-Cola example. "cocacola" vs "coca cola": 1 insertion / 9 -> NL 1/9 -> 8/9;
    # vs "coca cola company": 1 + 8 (" company") = 9 insertions / 17 -> NL 0.53 -> 0. Max: 8/9.
    refs = ["Coca Cola", "Coca Cola Company"]
    assert anls("CocaCola", refs) == pytest.approx(8 / 9)
    assert anls("Coca cola", refs) == 1.0
    assert anls("CocaCola", list(reversed(refs))) == pytest.approx(8 / 9)
    # hello vs ["xyz", "hallo", "hello!"]: NL 1.0, 0.2, 1/6 -> max similarity 5/6
    assert anls("hello", ["xyz", "hallo", "hello!"]) == pytest.approx(5 / 6)


def test_anls_normalizes_case_and_whitespace():
    assert anls("  The   CAT \n", ["the cat"]) == 1.0
    assert anls("the cat", ["THE\tCat  "]) == 1.0
    # spaces inside are kept (collapsed, not removed): "thecat" vs "the cat" is one insertion / 7
    assert anls("thecat", ["the cat"]) == pytest.approx(6 / 7)


def test_anls_rrc_compat_divides_by_the_raw_length():
    # normalized: "the cat" vs "the hat" -> 1 substitution. Eq. 1 divides by 7 -> 6/7;
    # the RRC script divides by the raw lengths max(len("the   cat"), len("the hat")) = 9 -> 8/9.
    assert anls("the   cat", ["the hat"]) == pytest.approx(6 / 7)
    assert anls("the   cat", ["the hat"], rrc_compat=True) == pytest.approx(8 / 9)


def test_anls_empty_strings():
    assert anls("", ["the cat"]) == 0.0   # 7 insertions / 7 -> NL 1
    assert anls("the cat", [""]) == 0.0
    assert anls("", [""]) == 1.0          # both empty: NL defined as 0
    assert anls("   ", [""]) == 1.0       # whitespace normalizes to empty
    assert anls("   ", [""], rrc_compat=True) == 1.0
    assert anls("", ["", "x"]) == 1.0
    with pytest.raises(ValueError):
        anls("x", [])


def test_anls_accepts_a_single_string_reference():
    assert anls("the cat", "The Cat") == 1.0


def test_mean_anls():
    pairs = [("the cat", ["the cat"]), ("hallo", ["hello"]), ("abc", ["xyz"])]
    assert mean_anls(pairs) == pytest.approx((1.0 + 0.8 + 0.0) / 3)  # 0.6
    assert mean_anls([]) == 0.0
    assert mean_anls([("12", ["13"])]) == 0.0
    assert mean_anls([("12", ["13"])], rrc_compat=True) == 0.5


# --------------------------------------------------------------------------- relaxed correctness

def test_relaxed_correctness_within_five_percent():
    # target 12.5, prediction 12: |12 - 12.5| / 12.5 = 0.04 <= 0.05
    assert relaxed_correctness("12.5", "12") is True
    # target 12, prediction 12.5: 0.5 / 12 = 0.0417 <= 0.05
    assert relaxed_correctness("12", "12.5") is True
    # target 10, prediction 10.6: 0.6 / 10 = 0.06 > 0.05; target 10.6, prediction 10: 0.6/10.6 = 0.0566
    assert relaxed_correctness("10", "10.6") is False
    assert relaxed_correctness("10.6", "10") is False
    # target -5, prediction -5.2: 0.2 / 5 = 0.04
    assert relaxed_correctness("-5", "-5.2") is True


def test_relaxed_correctness_boundary_is_inclusive():
    assert relaxed_correctness("100", "105") is True    # 5 / 100 = 0.05 <= 0.05
    assert relaxed_correctness("100", "95") is True
    assert relaxed_correctness("20", "21") is True      # 1 / 20 = 0.05
    assert relaxed_correctness("100", "105.1") is False  # 0.051
    assert relaxed_correctness("10", "10.6", max_relative_change=0.1) is True


def test_relaxed_correctness_percentages():
    # _to_float("45%") = 45 / 100 = 0.45
    assert relaxed_correctness("0.45", "45%") is True
    assert relaxed_correctness("45%", "0.45") is True
    assert relaxed_correctness("45%", "45") is False     # 0.45 vs 45
    assert relaxed_correctness("45%", "46%") is True     # 0.01 / 0.45 = 0.022


def test_relaxed_correctness_zero_target_needs_the_same_string():
    # target_float == 0.0 is falsy in pix2struct, so the string comparison decides
    assert relaxed_correctness("0", "0") is True
    assert relaxed_correctness("0", "0.0") is False
    assert relaxed_correctness("0", "0.01") is False
    assert relaxed_correctness("0", "0%") is False
    assert relaxed_correctness("0.0", "0") is False
    # a zero prediction against a non-zero target is numeric: |0 - 1| / 1 = 1
    assert relaxed_correctness("1", "0") is False


def test_relaxed_correctness_strings_match_case_insensitively():
    assert relaxed_correctness("South", "south") is True
    assert relaxed_correctness("South Asia", "south") is False
    assert relaxed_correctness("Yes", "YES") is True
    # no stripping on the string path; float() does strip, so numbers may carry spaces
    assert relaxed_correctness("South", " south") is False
    assert relaxed_correctness("12", " 12 ") is True


def test_relaxed_correctness_numbers_with_units_or_separators_are_strings():
    # float("12 kg") raises -> string comparison
    assert relaxed_correctness("12 kg", "12 kg") is True
    assert relaxed_correctness("12 kg", "12 KG") is True
    assert relaxed_correctness("12 kg", "12") is False
    assert relaxed_correctness("12", "12 kg") is False
    assert relaxed_correctness("12 kg", "12.1 kg") is False
    # float("1,234") raises too
    assert relaxed_correctness("1234", "1,234") is False


def test_relaxed_accuracy_any_reference():
    # 12 vs 12.4: 0.4 / 12.4 = 0.032
    assert relaxed_accuracy("12", ["15", "12.4"]) is True
    assert relaxed_accuracy("12", ["15", "20"]) is False
    assert relaxed_accuracy("south", ["North", "South"]) is True
    assert relaxed_accuracy("12", []) is False


# --------------------------------------------------------------------------- field scores

def test_flatten_uses_dotted_paths_and_list_indexes():
    assert flatten({"a": {"b": [1, {"c": 2}]}, "d": None}) == {"a.b.0": 1, "a.b.1.c": 2, "d": None}
    assert flatten({"e": [], "f": {}}) == {}


def test_field_scores_worked_example():
    gold = {"invoice": {"number": "INV-001", "total": 1234.5}, "vendor": "Acme  Corp",
            "items": [{"sku": "A1"}]}
    # gold fields (4): invoice.number, invoice.total, vendor, items.0.sku
    pred = {"invoice": {"number": "inv-001", "total": "$1,234.50", "date": None},
            "vendor": "Acme Inc", "items": []}
    # predicted fields (3; date is None, items empty): invoice.number (casefold match),
    # invoice.total ("$1,234.50" -> 1234.50 == 1234.5), vendor (wrong) -> TP 2
    s = field_scores(pred, gold)
    assert s["true_positives"] == 2 and s["predicted"] == 3 and s["gold"] == 4
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == 0.5
    # F1 = 2 * (2/3) * (1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7
    assert s["f1"] == pytest.approx(4 / 7)
    assert s["exact_match"] is False


def test_field_scores_exact_match_ignores_empty_predictions():
    gold = {"total": 1234.5, "vendor": "Acme Corp", "date": None}
    pred = {"total": "$1,234.50", "vendor": " ACME   corp ", "note": "", "tags": []}
    s = field_scores(pred, gold)
    assert (s["precision"], s["recall"], s["f1"], s["exact_match"]) == (1.0, 1.0, 1.0, True)


def test_field_scores_extra_field_breaks_exact_match():
    gold = {"a": "x", "b": "y"}
    pred = {"a": "x", "b": "y", "c": "z"}
    s = field_scores(pred, gold)
    # precision 2/3, recall 2/2, F1 = 2 * (2/3) / (2/3 + 1) = 0.8
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == 1.0
    assert s["f1"] == pytest.approx(0.8)
    assert s["exact_match"] is False


def test_field_scores_empty_sides():
    assert field_scores({}, {}) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "exact_match": True,
                                    "true_positives": 0, "predicted": 0, "gold": 0}
    assert field_scores({"a": None}, {"a": ""})["exact_match"] is True
    s = field_scores({}, {"a": "x"})
    assert (s["precision"], s["recall"], s["f1"], s["exact_match"]) == (0.0, 0.0, 0.0, False)
    s = field_scores({"a": "x"}, {})
    assert (s["precision"], s["recall"], s["f1"], s["exact_match"]) == (0.0, 0.0, 0.0, False)


@pytest.mark.parametrize("pred, gold, match", [
    ("1,234.50", 1234.5, True),
    ("1234.50", "1,234.5", True),     # both strings, both numbers
    ("€ 98,000", 98000, True),
    ("-$5", -5, True),
    ("$-5.00", "-5", True),
    (7, "7.00", True),
    (0.1, "0.10", True),
    ("1,23", 123, False),             # not a thousands grouping: a string
    ("12 kg", 12, False),
    ("45%", 0.45, False),             # percentages are not converted here
    (True, "true", True),
    (1, True, False),                 # a bool is not the number 1
    ("Acme\u00a0Corp", "acme corp", True),  # casefold + any whitespace collapsed
    ("Straße", "STRASSE", True),      # casefold, not lower
])
def test_field_value_normalization(pred, gold, match):
    assert field_scores({"k": pred}, {"k": gold})["exact_match"] is match


def test_field_scores_lists_compare_by_index():
    s = field_scores({"items": ["b", "a"]}, {"items": ["a", "b"]})
    assert s["true_positives"] == 0 and s["f1"] == 0.0
    s = field_scores({"items": ["a"]}, {"items": ["a", "b"]})
    assert (s["precision"], s["recall"]) == (1.0, 0.5)


def test_field_scores_wants_dicts():
    with pytest.raises(TypeError):
        field_scores(["a"], {"a": 1})

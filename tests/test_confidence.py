"""pipeline/answers/confidence.py: the span scanner agrees with json.loads(strict=False), and value
confidences come from exactly the tokens that overlap each value (fixed token/logprob sequences)."""
from __future__ import annotations

import json
import math
import random

import pytest

from pipeline.answers.confidence import (NonFiniteNumber, answer_confidences, parse_with_spans, token_spans,
                                 value_confidence)


def same(a, b) -> bool:
    """Equal with types, float signs and NaN-free floats compared exactly (True != 1, 0.0 != -0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return a == b


# --- random JSON texts, written in many styles -----------------------------------------------

_CHARS = ['a', 'Z', ' ', '"', '\\', '/', '\n', '\t', '\x00', '\x1f', '\x7f', 'é', 'ß', '€', '中',
          '\U0001F600', '\ud800', '\udfff', '{', '}', '[', ']', ',', ':', '0', '-']


def _random_string(rng: random.Random) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randrange(0, 8)))


def _random_number(rng: random.Random):
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randrange(-10**20, 10**20)
    if kind == 1:
        return rng.choice([0, -0.0, 0.0, 1e-320, 1.7976931348623157e308, -2.5e-308, 5e-324])
    if kind == 2:
        return rng.uniform(-1e6, 1e6)
    # a literal the serializer writes as is: leading minus, fraction, exponent with sign
    sign = rng.choice(["", "-"])
    integer = rng.choice(["0", str(rng.randrange(1, 10**6))])
    fraction = rng.choice(["", "." + str(rng.randrange(0, 10**4)).zfill(rng.randrange(1, 5))])
    exponent = rng.choice(["", f"{rng.choice('eE')}{rng.choice(['', '+', '-'])}{rng.randrange(0, 300)}"])
    return ("literal", sign + integer + fraction + exponent)


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([True, False, None])
    if kind in (1, 2):
        return _random_number(rng)
    if kind in (3, 4, 5):
        return _random_string(rng)
    if kind in (6, 7):
        return {_random_string(rng): _random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]


def _write_string(s: str, rng: random.Random) -> str:
    out = ['"']
    for ch in s:
        choice = rng.randrange(5)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch if choice else "\\u%04x" % ord(ch))
        elif choice == 0 and ord(ch) > 0xFFFF:  # as an escaped surrogate pair
            code = ord(ch) - 0x10000
            out.append("\\u%04X\\u%04x" % (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)))
        elif choice == 1 and ord(ch) <= 0xFFFF:
            out.append(("\\u%04x" if rng.random() < 0.5 else "\\u%04X") % ord(ch))
        elif choice == 2 and ch in "\b\f\n\r\t/":
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "/": "\\/"}[ch])
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\\u%04x" % ord(ch))  # a lone surrogate only exists as an escape
        else:
            out.append(ch)  # raw, control characters included (strict=False)
    return "".join(out) + '"'


def _ws(rng: random.Random) -> str:
    return "".join(rng.choice(" \t\n\r") for _ in range(rng.choice([0, 0, 0, 1, 3])))


def write(value, rng: random.Random) -> str:
    if isinstance(value, tuple):
        return value[1]
    if isinstance(value, str):
        return _write_string(value, rng)
    if isinstance(value, dict):
        items = [f"{_ws(rng)}{_write_string(k, rng)}{_ws(rng)}:{_ws(rng)}{write(v, rng)}{_ws(rng)}"
                 for k, v in value.items()]
        return "{" + (",".join(items) or _ws(rng)) + "}"
    if isinstance(value, list):
        return "[" + (",".join(f"{_ws(rng)}{write(v, rng)}{_ws(rng)}" for v in value) or _ws(rng)) + "]"
    return json.dumps(value)


def random_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [_ws(rng) + write(_random_value(rng), rng) + _ws(rng) for _ in range(count)]


def _loads_outcome(text: str):
    try:
        value = json.loads(text, strict=False)
    except (ValueError, RecursionError) as exc:
        return "error", type(exc)
    return "ok", value


def _has_non_finite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def check_spans(text: str, value, spans) -> None:
    """Each span holds exactly its value: string content re-quoted, other values as literals."""
    def walk(v, path):
        assert path in spans, path
        start, end = spans[path]
        piece = text[start:end]
        expect = json.loads(f'"{piece}"' if isinstance(v, str) else piece, strict=False)
        assert same(expect, v), (path, piece)
        if isinstance(v, str):
            assert text[start - 1] == '"' and text[end] == '"'
        if isinstance(v, dict):
            for k, item in v.items():
                walk(item, (*path, k))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                walk(item, (*path, i))
    walk(value, ())
    # and nothing else: no span for values that are gone (e.g. a duplicate key's earlier value)
    def count(v):
        return 1 + (sum(map(count, v.values())) if isinstance(v, dict) else
                    sum(map(count, v)) if isinstance(v, list) else 0)
    assert len(spans) == count(value)


def test_agrees_with_json_loads_on_generated_texts():
    texts = random_texts(seed=12, count=3000)
    assert sum("\\u" in t for t in texts) > 500 and sum("\n" in t for t in texts) > 500
    for text in texts:
        kind, expected = _loads_outcome(text)
        assert kind == "ok", text
        value, spans = parse_with_spans(text)
        assert same(value, expected), text
        check_spans(text, value, spans)


def test_agrees_with_json_loads_on_broken_texts():
    """Mutated texts: accepted or refused exactly as json.loads does (non-finite: refused by us)."""
    rng = random.Random(7)
    alphabet = (list('{}[],:"\\ \n-+.eE0123456789aeflnrstuINfinityNa')
                + ["\\u", "\\ud83d", "\x00", "\f", "\x0b", "\xa0", "\u2028"])  # \f, \v, nbsp, LS: not JSON whitespace
    checked = refused = 0
    for text in random_texts(seed=99, count=1500):
        for _ in range(4):
            i = rng.randrange(len(text) + 1)
            op = rng.randrange(3)
            broken = (text[:i] + rng.choice(alphabet) + text[i + (op == 1):] if op < 2 else
                      text[:i] + text[i + 1:])
            kind, expected = _loads_outcome(broken)
            try:
                value, _ = parse_with_spans(broken)
            except NonFiniteNumber:
                assert kind == "error" or _has_non_finite(expected), broken
                continue
            except ValueError:
                assert kind == "error", broken
                refused += 1
                continue
            assert kind == "ok" and same(value, expected), broken
            checked += 1
    assert checked > 500 and refused > 1000


def test_duplicate_key_keeps_the_last_value_and_only_its_spans():
    text = '{"a": {"x": 1, "y": [2]}, "b": 3, "a": "last"}'
    value, spans = parse_with_spans(text)
    assert value == json.loads(text) == {"a": "last", "b": 3}
    assert set(spans) == {(), ("a",), ("b",)}
    assert text[slice(*spans[("a",)])] == "last"


def test_spans_of_strings_numbers_literals_and_containers():
    text = '{"answers": [{"answer": "12.5 kg", "n": -3e2, "ok": true, "unit": null, "e": ""}]}'
    value, spans = parse_with_spans(text)
    assert text[slice(*spans[("answers", 0, "answer")])] == "12.5 kg"
    assert text[slice(*spans[("answers", 0, "n")])] == "-3e2" and value["answers"][0]["n"] == -300.0
    assert text[slice(*spans[("answers", 0, "ok")])] == "true"
    assert text[slice(*spans[("answers", 0, "unit")])] == "null"
    start, end = spans[("answers", 0, "e")]
    assert start == end and text[start] == '"' and text[start - 1] == '"'
    assert text[slice(*spans[("answers", 0)])].startswith('{"answer"')
    assert spans[()] == (0, len(text))
    assert text[slice(*spans[("answers",)])][0] + text[slice(*spans[("answers",)])][-1] == "[]"


@pytest.mark.parametrize("text, number", [
    ('{"value": -34E772}', "-34E772"),
    ('[1e309]', "1e309"),
    ('{"v": NaN}', "NaN"),
    ('{"v": Infinity}', "Infinity"),
    ('[0, -Infinity]', "-Infinity"),
    ('{"v": ' + "9" * 400 + "}", "9" * 30),  # an integer past the largest double
])
def test_non_finite_numbers_are_refused_and_named(text, number):
    json.loads(text, strict=False)  # json.loads itself accepts every one of them
    with pytest.raises(NonFiniteNumber, match=number) as info:
        parse_with_spans(text)
    assert isinstance(info.value, ValueError)


def test_largest_finite_numbers_still_parse():
    value, _ = parse_with_spans('[1.7976931348623157e308, -1e-400, ' + "9" * 300 + "]")
    assert value == [1.7976931348623157e308, -0.0, int("9" * 300)]


@pytest.mark.parametrize("text", ['', ' ', '{', '{"a" 1}', '[1,]', '{"a":1,}', '"\\x"', '"\\u12g4"', "01",
                                  '1.', '-', '"abc', '{"a":1}}', '\ufeff{}', 'tru', "'a'", '١'])
def test_syntax_errors_raise_json_decode_error(text):
    with pytest.raises(json.JSONDecodeError):
        json.loads(text, strict=False)
    with pytest.raises(json.JSONDecodeError):
        parse_with_spans(text)


def test_escapes_and_surrogates_decode_like_json_loads():
    text = r'{"s": "\"q\" \\ \/ \u00e9\u00E9 \ud83d\ude00 \ud800x \udc00 tab	end"}'
    value, spans = parse_with_spans(text)
    assert same(value, json.loads(text, strict=False))
    assert value["s"] == '"q" \\ / éé 😀 \ud800x \udc00 tab\tend'


# --- confidences from fixed token sequences ---------------------------------------------------

def lp(p: float) -> float:
    return math.log(p)


def test_token_spans():
    assert token_spans(['{"', "answer", '":"', "", "12"]) == [(0, 2), (2, 8), (8, 11), (11, 11), (11, 13)]


DOCVQA_TOKENS = [('{"', .99), ("answer", .98), ('":', .97), (' "', .96), ("123", .8), ("4", .7), (".", .9),
                 ("50", .6), ('",', .95), (' "', .9), ("evidence", .99), ('":', .99), (' "', .99),
                 ("Total", .5), (":", .9), (" ", .9), ("1", .9), (",", .9), ("234", .9), (".", .9),
                 ("50", .9), ('"}', .4)]


def _split(pairs):
    return [t for t, _ in pairs], [lp(p) for _, p in pairs]


def test_docvqa_value_counts_only_its_own_tokens():
    texts, logprobs = _split(DOCVQA_TOKENS)
    text = "".join(texts)
    assert text == '{"answer": "1234.50", "evidence": "Total: 1,234.50"}'
    assert value_confidence(text, texts, logprobs, ("answer",)) == pytest.approx(.8 * .7 * .9 * .6)
    assert value_confidence(text, texts, logprobs, ("evidence",)) == pytest.approx(.5 * .9 ** 7)
    confidences = answer_confidences(text, texts, logprobs)
    assert list(confidences) == [("answer",), ("evidence",)]
    assert confidences[("answer",)] == pytest.approx(.8 * .7 * .9 * .6)


def test_token_holding_punctuation_and_value_counts_whole():
    pairs = [('{"', .9), ("answer", .9), ('":"', .9), ("Ac", .5), ("me", .8), (" Inc", .7), ('."}', .6)]
    texts, logprobs = _split(pairs)
    assert "".join(texts) == '{"answer":"Acme Inc."}'
    assert value_confidence("".join(texts), texts, logprobs, ("answer",)) == pytest.approx(.5 * .8 * .7 * .6)
    # a token reaching into the value from the left (key punctuation + first digits) counts too
    pairs = [('{"', .9), ("value", .9), ('":12', .5), ("34", .8), ("}", .1)]
    texts, logprobs = _split(pairs)
    assert value_confidence("".join(texts), texts, logprobs, ("value",)) == pytest.approx(.5 * .8)


def test_questions_asked_together_get_one_confidence_each():
    pairs = [('{"', .99), ("answers", .99), ('":[', .99), ('{"', .99), ("answer", .99), ('":"', .99),
             ("12", .3), ('"},', .9), ('{"', .99), ("answer", .99), ('":"', .99), ("Ber", .6), ("lin", .9),
             ('"},', .9), ('{"', .99), ("answer", .99), ('":"', .97), ('"}', .25), ("]}", .99)]
    texts, logprobs = _split(pairs)
    text = "".join(texts)
    assert json.loads(text) == {"answers": [{"answer": "12"}, {"answer": "Berlin"}, {"answer": ""}]}
    confidences = answer_confidences(text, texts, logprobs)
    assert confidences == {("answers", 0, "answer"): pytest.approx(.3),
                           ("answers", 1, "answer"): pytest.approx(.6 * .9),
                           ("answers", 2, "answer"): pytest.approx(.25)}  # "" : the closing-quote token


def test_empty_string_written_by_one_token_with_both_quotes():
    pairs = [('{"', .9), ("answer", .9), ('":', .9), (' ""', .35), ("}", .9)]
    texts, logprobs = _split(pairs)
    assert value_confidence("".join(texts), texts, logprobs, ("answer",)) == pytest.approx(.35)


def test_numbers_null_and_booleans():
    pairs = [('{"', .9), ("answer", .9), ('":"', .9), ("7", .8), ("7", .7), ("%", .6), ('","', .9),
             ("value", .9), ('":', .9), ("7", .5), ("7", .4), (',"', .9), ("unit", .9), ('":', .9),
             ("null", .2), (',"', .9), ("ok", .9), ('":', .9), ("true", .65), ("}", .9)]
    texts, logprobs = _split(pairs)
    text = "".join(texts)
    assert json.loads(text) == {"answer": "77%", "value": 77, "unit": None, "ok": True}
    confidences = answer_confidences(text, texts, logprobs)
    assert confidences[("value",)] == pytest.approx(.5 * .4)
    assert confidences[("unit",)] == pytest.approx(.2)
    assert confidences[("ok",)] == pytest.approx(.65)
    assert confidences[("answer",)] == pytest.approx(.8 * .7 * .6)


def test_nested_field_objects_and_arrays():
    pairs = [("{", .9), ('"', .9), ("total", .9), ('":', .9), (" ", .9), ("1", .9), ("2", .8), ("3", .7),
             ("4", .6), (".", .5), ("5", .4), (",", .9), (' "', .9), ("line", .9), ("_items", .9),
             ('":', .9), (' [{"', .9), ("description", .9), ('":', .9), (' "', .9), ("T", .3), ("oner", .9),
             ('",', .9), (' "', .9), ("amount", .9), ('":', .9), (" ", .9), ("1", .2), ("1", .9), ("5", .9),
             ("0", .9), ("}", .9), ("]}", .9)]
    texts, logprobs = _split(pairs)
    text = "".join(texts)
    assert json.loads(text) == {"total": 1234.5, "line_items": [{"description": "Toner", "amount": 1150}]}
    confidences = answer_confidences(text, texts, logprobs)
    assert set(confidences) == {("total",), ("line_items", 0, "description"), ("line_items", 0, "amount")}
    assert confidences[("total",)] == pytest.approx(.9 * .8 * .7 * .6 * .5 * .4)
    assert confidences[("line_items", 0, "description")] == pytest.approx(.3 * .9)
    assert confidences[("line_items", 0, "amount")] == pytest.approx(.2 * .9 ** 3)
    # a container's confidence is its whole literal: every token from "[{" to "]}"
    whole = value_confidence(text, texts, logprobs, ("line_items",))
    assert whole == pytest.approx(math.prod(p for _, p in pairs[16:]))


def test_escapes_inside_strings_count_their_tokens():
    pairs = [('{"', .9), ("answer", .9), ('":"', .9), ("He", .8), (" said", .7), (' \\"', .6), ("hi", .5),
             ('\\"', .4), (" caf", .9), ("\\u00e9", .3), ('"}', .9)]
    texts, logprobs = _split(pairs)
    text = "".join(texts)
    assert json.loads(text) == {"answer": 'He said "hi" café'}
    assert value_confidence(text, texts, logprobs, ("answer",)) == pytest.approx(.8 * .7 * .6 * .5 * .4 * .9 * .3)


def test_byte_fallback_pieces_decoded_as_empty_count_for_their_character():
    # vLLM >= 0.32: the first byte piece of "é" decodes to "", the completing piece to "é"
    pairs = [('{"', .9), ("answer", .9), ('":"', .9), ("Caf", .8), ("", .5), ("é", .9), ('"}', .9), ("</s>", .1)]
    texts, logprobs = _split(pairs)
    text = '{"answer":"Café"}'  # the engine's text stops before the end-of-sequence token
    assert value_confidence(text, texts, logprobs, ("answer",)) == pytest.approx(.8 * .5 * .9)


def test_tokens_that_do_not_rebuild_the_text_give_none():
    text = '{"answer":"Café"}'
    texts = ['{"', "answer", '":"', "Caf", "\ufffd", "\ufffd", '"}']  # partial UTF-8 bytes decoded alone
    logprobs = [lp(.9)] * len(texts)
    assert value_confidence(text, texts, logprobs, ("answer",)) is None
    assert answer_confidences(text, texts, logprobs) is None
    # a token that straddles the end of the text: not made of whole tokens either
    texts = ['{"', "answer", '":"', "Café", '"}</s>']
    assert answer_confidences(text, texts, [0.0] * 5) is None


def test_bad_calls_raise():
    texts, logprobs = _split(DOCVQA_TOKENS)
    text = "".join(texts)
    with pytest.raises(KeyError):
        value_confidence(text, texts, logprobs, ("missing",))
    with pytest.raises(ValueError, match="logprobs"):
        value_confidence(text, texts, logprobs[:-1], ("answer",))
    with pytest.raises(NonFiniteNumber):
        answer_confidences('{"v": NaN}', ['{"v": ', "NaN", "}"], [0.0] * 3)


def test_whitespace_between_values_does_not_count():
    pairs = [("{\n", .9), ("  ", .1), ('"a"', .9), (": ", .1), ("1", .5), ("\n", .1), ("}", .1)]
    texts, logprobs = _split(pairs)
    assert answer_confidences("".join(texts), texts, logprobs) == {("a",): pytest.approx(.5)}


try:  # a second, independent generator when hypothesis is installed (it is not a test extra)
    from hypothesis import given, settings, strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    _leaves = (st.none() | st.booleans() | st.integers() | st.text()
               | st.floats(allow_nan=False, allow_infinity=False))
    _json = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)

    @settings(max_examples=400, deadline=None)
    @given(_json, st.booleans(), st.sampled_from([None, 0, 2]))
    def test_agrees_with_json_loads_hypothesis(value, ascii_only, indent):
        text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
        parsed, spans = parse_with_spans(text)
        assert same(parsed, json.loads(text, strict=False))
        check_spans(text, parsed, spans)

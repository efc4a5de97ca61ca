"""Confidence of each answer VALUE from the token logprobs of the generation that wrote it.

Public interface (pure; stdlib only):

    parse_with_spans(text) -> (value, spans)
        Parse JSON exactly as the pipeline accepts answers (`json.loads(text, strict=False)`: raw
        control characters inside strings are allowed) but raise `NonFiniteNumber` (a ValueError)
        for NaN / Infinity / -Infinity and for numbers that do not fit a finite IEEE double
        (`-34E772`, a 400-digit integer). Other syntax errors raise `json.JSONDecodeError`.
        `spans` maps the JSON path of every value (a tuple of object keys and array indices;
        () is the whole text) to its character range [start, end) in `text`:
          * string  -> its content between the quotes (escapes included as written), so `""`
                       has the empty range (i, i) where i is the closing quote;
          * number, true, false, null -> the literal;
          * object, array -> from the opening to the closing bracket, inclusive.
        A key given twice keeps its last value, as json.loads does.
    token_spans(token_texts) -> [(start, end)]: offsets of each token in "".join(token_texts).
    value_confidence(text, token_texts, token_logprobs, path) -> float | None
    answer_confidences(text, token_texts, token_logprobs) -> {path: float} | None  (every leaf)

DEFINITION. The confidence of a value is the joint probability the model gave to the tokens that
make up that value:

    confidence = exp( sum of the sampled-token logprob of every generated token whose character
                      range overlaps the value's span )

where ranges are half-open and [a, b) overlaps [s, e) when a < e and s < b. Tokens that are only
JSON punctuation, whitespace or keys do not overlap a value and do not count; a token that holds
both punctuation and part of the value (`":"12`, `."`) counts whole. For an empty string (span
(i, i)) the counted token is the one that emits its closing quote, i.e. the token covering
character i: choosing to end the string at once is the model's whole decision about that value.
For a container the definition gives the joint probability of its whole literal (keys and
punctuation included); answer_confidences reports leaves only.

Alignment of tokens to text. The tokens must reproduce `text`: "".join(token_texts) is `text`,
optionally followed by whole trailing tokens (an end-of-sequence token decoded as "</s>" lies
past the text and overlaps nothing). A token that decodes to "" (vLLM >= 0.32 decodes a
byte-fallback piece of a multi-byte character as "" and gives the whole character to the token
that completes it) takes the range of the next token with text, so both pieces count for the
character they build. Anything else, in particular token texts holding U+FFFD for partial UTF-8
bytes (older vLLM), cannot be aligned without the tokenizer: value_confidence and
answer_confidences return None rather than guess.

The logprobs are whatever the engine reports for the sampled tokens (vLLM's default
`logprobs_mode` is the model's raw distribution, before temperature and the grammar mask).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Sequence

Path = tuple  # of str (object keys) and int (array indices)
Span = tuple[int, int]

_WHITESPACE = " \t\n\r"  # the only whitespace JSON (and json.loads) allows between tokens
# JSON's number grammar with ASCII digits only: the C scanner json.loads uses rejects other \d.
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")
_LITERALS = (("true", True), ("false", False), ("null", None))
_NON_FINITE = ("NaN", "Infinity", "-Infinity")


class NonFiniteNumber(ValueError):
    """A number json.loads would turn into inf/nan (or could not store as a double)."""


class _Scanner:
    """Recursive descent over one JSON text; records the span of every value by path."""

    def __init__(self, text: str):
        self.text = text
        self.spans: dict[Path, Span] = {}

    def fail(self, message: str, pos: int) -> None:
        raise json.JSONDecodeError(message, self.text, pos)

    def skip_ws(self, pos: int) -> int:
        text, n = self.text, len(self.text)
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        return pos

    def value(self, pos: int, path: Path) -> tuple[Any, int]:
        text = self.text
        char = text[pos] if pos < len(text) else ""
        if char == '"':
            value, end = self.string(pos)
            self.spans[path] = (pos + 1, end - 1)
            return value, end
        if char == "{":
            return self.container(pos, path, "}")
        if char == "[":
            return self.container(pos, path, "]")
        for literal, value in _LITERALS:
            if text.startswith(literal, pos):
                self.spans[path] = (pos, pos + len(literal))
                return value, pos + len(literal)
        for literal in _NON_FINITE:
            if text.startswith(literal, pos):
                raise NonFiniteNumber(f"non-finite number {literal} at char {pos} is not accepted")
        match = _NUMBER.match(text, pos)
        if match is None:
            self.fail("Expecting value", pos)
        literal = match.group()
        if match.group(1) is None and match.group(2) is None:
            value = int(literal)  # may raise ValueError past int's digit limit, as json.loads does
            try:
                float(value)
            except OverflowError:
                raise NonFiniteNumber(f"number {literal[:40]}... at char {pos} does not fit a finite "
                                      "double") from None
        else:
            value = float(literal)
            if math.isinf(value):
                raise NonFiniteNumber(f"number {literal} at char {pos} does not fit a finite double")
        self.spans[path] = (pos, match.end())
        return value, match.end()

    def string(self, pos: int) -> tuple[str, int]:
        """The string whose opening quote is at pos, and the index after its closing quote."""
        text, n = self.text, len(self.text)
        parts: list[str] = []
        i = pos + 1
        while True:
            # Fast path to the next quote or backslash; raw control characters are kept (strict=False).
            j = i
            while j < n and text[j] != '"' and text[j] != "\\":
                j += 1
            parts.append(text[i:j])
            if j >= n:
                self.fail("Unterminated string starting at", pos)
            if text[j] == '"':
                return "".join(parts), j + 1
            escape = text[j + 1] if j + 1 < n else ""
            if escape == "u":
                code = self.hex4(j)
                i = j + 6
                # A high surrogate followed by an escaped low one is one code point; any other
                # surrogate stays as it is (json.loads keeps lone surrogates too).
                if 0xD800 <= code <= 0xDBFF and text.startswith("\\u", i):
                    low = self.hex4(i)
                    if 0xDC00 <= low <= 0xDFFF:
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                parts.append(chr(code))
            elif escape in _ESCAPES:
                parts.append(_ESCAPES[escape])
                i = j + 2
            else:
                self.fail("Invalid \\escape", j)

    def hex4(self, backslash: int) -> int:
        digits = self.text[backslash + 2:backslash + 6]
        if len(digits) != 4 or not all(d in _HEX for d in digits):
            self.fail("Invalid \\uXXXX escape", backslash + 1)
        return int(digits, 16)

    def container(self, pos: int, path: Path, close: str) -> tuple[Any, int]:
        is_object = close == "}"
        result: Any = {} if is_object else []
        i = self.skip_ws(pos + 1)
        if i < len(self.text) and self.text[i] == close:
            self.spans[path] = (pos, i + 1)
            return result, i + 1
        while True:
            if is_object:
                if i >= len(self.text) or self.text[i] != '"':
                    self.fail("Expecting property name enclosed in double quotes", i)
                key, i = self.string(i)
                i = self.skip_ws(i)
                if i >= len(self.text) or self.text[i] != ":":
                    self.fail("Expecting ':' delimiter", i)
                i = self.skip_ws(i + 1)
                if key in result:  # the later value wins: forget the spans of the earlier one
                    self.forget((*path, key))
                result[key], i = self.value(i, (*path, key))
            else:
                item, i = self.value(i, (*path, len(result)))
                result.append(item)
            i = self.skip_ws(i)
            if i < len(self.text) and self.text[i] == close:
                self.spans[path] = (pos, i + 1)
                return result, i + 1
            if i >= len(self.text) or self.text[i] != ",":
                self.fail("Expecting ',' delimiter", i)
            i = self.skip_ws(i + 1)

    def forget(self, prefix: Path) -> None:
        for known in [p for p in self.spans if p[:len(prefix)] == prefix]:
            del self.spans[known]


def parse_with_spans(text: str) -> tuple[Any, dict[Path, Span]]:
    """(value, {path: span}) of one JSON text; see the module docstring for the rules."""
    scanner = _Scanner(text)
    value, end = scanner.value(scanner.skip_ws(0), ())
    if scanner.skip_ws(end) != len(text):
        scanner.fail("Extra data", scanner.skip_ws(end))
    return value, scanner.spans


def token_spans(token_texts: Sequence[str]) -> list[Span]:
    """[start, end) of each token in the concatenation of all token texts."""
    spans, offset = [], 0
    for token in token_texts:
        spans.append((offset, offset + len(token)))
        offset += len(token)
    return spans


def _aligned_token_spans(text: str, token_texts: Sequence[str]) -> list[Span] | None:
    """Token ranges in `text` under the alignment rules of the module docstring, or None."""
    if not "".join(token_texts).startswith(text):
        return None
    spans = token_spans(token_texts)
    if any(start < len(text) < end for start, end in spans):
        return None  # a token reaches past the end of the text: the text is not made of whole tokens
    following: Span | None = None
    for index in range(len(spans) - 1, -1, -1):  # "" tokens take the range of the next token with text
        start, end = spans[index]
        if start < end:
            following = spans[index]
        elif following is not None:
            spans[index] = following
    return spans


def _joint_probability(span: Span, token_ranges: list[Span], logprobs: Sequence[float]) -> float | None:
    start, end = span
    if start == end:  # empty string: the token that writes the closing quote at `start`
        start, end = start, start + 1
    chosen = [lp for (a, b), lp in zip(token_ranges, logprobs) if a < end and start < b]
    return math.exp(math.fsum(chosen)) if chosen else None


def _check_lengths(token_texts: Sequence[str], token_logprobs: Sequence[float]) -> None:
    if len(token_texts) != len(token_logprobs):
        raise ValueError(f"{len(token_texts)} token texts but {len(token_logprobs)} logprobs")


def value_confidence(text: str, token_texts: Sequence[str], token_logprobs: Sequence[float],
                     path: Path) -> float | None:
    """Confidence (see DEFINITION) of the value at `path` of the JSON `text`; None when the tokens
    cannot be aligned to the text. KeyError if `path` is not a value of the text; the parse
    errors of parse_with_spans if `text` is not acceptable JSON."""
    _check_lengths(token_texts, token_logprobs)
    _, spans = parse_with_spans(text)
    span = spans[tuple(path)]
    ranges = _aligned_token_spans(text, token_texts)
    return None if ranges is None else _joint_probability(span, ranges, token_logprobs)


def _is_leaf(value: Any, path: Path) -> bool:
    for key in path:
        value = value[key]
    return not isinstance(value, (dict, list))


def answer_confidences(text: str, token_texts: Sequence[str],
                       token_logprobs: Sequence[float]) -> dict[Path, float] | None:
    """{path: confidence} for every leaf value (string, number, true/false/null) of the JSON
    `text`, in text order; None when the tokens cannot be aligned to the text."""
    _check_lengths(token_texts, token_logprobs)
    value, spans = parse_with_spans(text)
    ranges = _aligned_token_spans(text, token_texts)
    if ranges is None:
        return None
    leaves = sorted((span, path) for path, span in spans.items() if _is_leaf(value, path))
    result = {}
    for span, path in leaves:
        confidence = _joint_probability(span, ranges, token_logprobs)
        if confidence is not None:
            result[path] = confidence
    return result

"""Where an answer is on its page: the answer's text found among the words of the PDF text layer.

Public interface (pure; stdlib only, a PyMuPDF page is only read):

    Word(text, x0, y0, x1, y1, line)      one word; line = page-wide line number, reading order
    Box(x0, y0, x1, y1)                   a region
    page_words(page) -> list[Word]        from a PyMuPDF page
    words_to_columns(words) -> {"text": [...], "x0": [...], "y0": [...], "x1": [...], "y1": [...],
                                "line": [...]}   the compact form for the page row (parallel lists)
    locate(answer, words) -> list[Box]    the first occurrence: one box per line it spans; [] if none
    locate_all(answer, words) -> list[list[Box]]   every occurrence at the best matching level
    ground(value_text, words, has_text_layer) -> (boxes | None, grounded | None)

Coordinates are fractions in [0, 1] of the DISPLAYED page (rotation applied, cropbox origin),
x to the right and y down, rounded to 4 decimals: the same frame as the rendered page image, so
a box times the row's width/height is its pixel region. `words` may be a list of Word, of
tuples or dicts with those fields, or the columns mapping (e.g. back from Arrow).

Reading order is PyMuPDF's extraction order: blocks, their lines, their words.

Matching rules, tried in this order; the first level that finds the answer wins:
 1. exact: the answer's whitespace-separated tokens equal the texts of consecutive words.
 2. normalised: NFKC, casefold, all whitespace removed on both sides (so line breaks, extra or
    missing spaces between words, "ﬁ" vs "fi", full-width digits and case do not matter); the
    answer must be a substring of the page's words run together.
 3. amounts: as 2, and currency symbols (Unicode category Sc: $ € £ ¥ ...) are dropped, and a
    number is compared by value: "1,234.50", "1.234,50", "1 234,50", "1'234.50" and "1234.5"
    are all 1234.5 (numbers within one word first; numbers grouped by spaces across words,
    "1" "234,50", only if that finds nothing). A number's separators are read two ways, "." decimal and "," decimal
    ("1,234" may be 1234 or 1.234); a reading is valid when the decimal mark occurs at most once,
    last, and the groups before it have 1-3 digits then exactly 3 (one kind of grouping mark:
    "," "." "'" "’" or a space between words). Numbers match when their readings share a value.
    Currency codes (EUR, USD) are text, not symbols.
 In levels 2 and 3 a match may not start or end inside a run of letters or of digits of one word
 ("42" is not found in "1042", "Invoice" not in "Invoices", "50" not in "1,234.50"); a digit
 next to a letter is a boundary ("12" is in "12kg"). Letters of scripts written without spaces
 (CJK, kana, Thai) are not runs, so a phrase is found inside a longer CJK "word".
Boxes are word-granular: a match that starts or ends inside a word boxes the whole word.
locate returns the first occurrence in reading order; locate_all all of them at that level.
"""
from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from typing import Any, Iterable, Mapping, NamedTuple, Sequence


class Word(NamedTuple):
    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    line: int


class Box(NamedTuple):
    x0: float
    y0: float
    x1: float
    y1: float


COLUMNS = Word._fields
_DIGITS = 4  # 1e-4 of a page is under 0.1 pt on Letter or A4: far below a word; keeps rows small


def page_words(page) -> list[Word]:
    """The words of a PyMuPDF page's text layer, in the displayed page's frame (see module doc)."""
    rect, m = page.rect, page.rotation_matrix  # rect: displayed size; m: unrotated -> displayed
    width, height = rect.width, rect.height
    if width <= 0 or height <= 0:
        return []
    words, lines = [], {}
    for x0, y0, x1, y1, text, block, line, _ in page.get_text("words"):
        corners = [(m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f) for x in (x0, x1) for y in (y0, y1)]
        xs, ys = [c[0] / width for c in corners], [c[1] / height for c in corners]
        if max(xs) <= 0 or min(xs) >= 1 or max(ys) <= 0 or min(ys) >= 1:
            continue  # off the displayed page: the model never saw it
        line_id = lines.setdefault((block, line), len(lines))
        words.append(Word(text, _clamp(min(xs)), _clamp(min(ys)), _clamp(max(xs)), _clamp(max(ys)), line_id))
    return words


def _clamp(fraction: float) -> float:
    return round(min(max(fraction, 0.0), 1.0), _DIGITS)


def words_to_columns(words: Iterable[Word]) -> dict[str, list]:
    words = list(words)
    return {name: [w[i] for w in words] for i, name in enumerate(COLUMNS)}


def _as_words(words: Any) -> list[Word]:
    if isinstance(words, Mapping):
        return [Word(*values) for values in zip(*(list(words[name]) for name in COLUMNS))]
    return [Word(**w) if isinstance(w, Mapping) else Word(*w) for w in words]


# --- normalisation -------------------------------------------------------------------------------

def _fold(text: str) -> str:
    """NFKC, casefold, whitespace removed."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def _without_currency(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) != "Sc")


def _unspaced(ch: str) -> bool:
    code = ord(ch)
    return (0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF
            or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3FFFF or 0x0E00 <= code <= 0x0EFF)


_GROUP_MARKS = ".,'’"
_NUMBER_LITERAL = re.compile(r"[0-9]+(?:[.,'’ ][0-9]+)*")


def _cuts_run(text: str, pos: int) -> bool:
    """Whether a cut before text[pos] splits a run of letters, of digits, or a number's separator."""
    if pos <= 0 or pos >= len(text):
        return False
    before, after = text[pos - 1], text[pos]
    if before.isdigit() and after.isdigit():
        return True
    if before.isalpha() and after.isalpha() and not (_unspaced(before) or _unspaced(after)):
        return True
    if before in _GROUP_MARKS and after.isdigit() and pos >= 2 and text[pos - 2].isdigit():
        return True  # "1,234.|50"
    return after in _GROUP_MARKS and before.isdigit() and pos + 1 < len(text) and text[pos + 1].isdigit()


def number_values(literal: str) -> frozenset[Decimal]:
    """The values a number as printed can stand for (rules in the module doc); empty if none."""
    if not _NUMBER_LITERAL.fullmatch(literal):
        return frozenset()
    marks = re.findall(r"[^0-9]", literal)
    groups = re.split(r"[^0-9]", literal)
    values = set()
    for decimal in ".,":
        at = [i for i, mark in enumerate(marks) if mark == decimal]
        if len(at) > 1 or (at and at[0] != len(marks) - 1):
            continue
        whole = groups[:len(groups) - len(at)]
        if len({mark for mark in marks if mark != decimal}) > 1:
            continue  # "1,234'567": two kinds of grouping mark
        if len(whole) > 1 and not (1 <= len(whole[0]) <= 3 and all(len(g) == 3 for g in whole[1:])):
            continue
        values.add(Decimal("".join(whole) + ("." + groups[-1] if at else "")))
    return frozenset(values)


# --- atoms: what is compared, and where on the page it came from --------------------------------

class _Atom(NamedTuple):
    key: Any  # a character, or a frozenset of Decimal for a number (level 3)
    first: int  # index of the word holding its first character
    start: int  # its first character's position in that word's level text
    last: int  # index of the word holding its last character
    end: int  # position after its last character in that word's level text


# Level 3 tokens of the word texts joined by " ": a number within one word, a word boundary, any
# other character; and, tried only when numbers within words found nothing (so "2 100.00" in a
# table row stays 2 and 100.00), a number grouped by spaces across words ("1 234,50").
_NUMBER_TOKENS = r"(?P<number>[0-9]+(?:[.,'’][0-9]+)*)|(?P<space> )|(?P<char>.)"
_SPACED_NUMBER = r"(?P<spaced>(?<![0-9.,'’])[0-9]{1,3}(?: [0-9]{3})+(?:[.,][0-9]+)?(?![0-9]))"
_AMOUNT_TOKENS = {False: re.compile(_NUMBER_TOKENS, re.DOTALL),
                  True: re.compile(_SPACED_NUMBER + "|" + _NUMBER_TOKENS, re.DOTALL)}


def _atoms(texts: Sequence[str], amounts: bool = False, spaced: bool = False) -> list[_Atom]:
    """Atoms of word texts (already folded). Level 2: one per character; level 3: numbers whole."""
    if not amounts:
        return [_Atom(ch, w, i, w, i + 1) for w, text in enumerate(texts) for i, ch in enumerate(text)]
    where = [(w, i) for w, text in enumerate(texts) for i in range(len(text) + 1)]  # +1: the " "
    joined = " ".join(texts)
    atoms = []
    for match in _AMOUNT_TOKENS[spaced].finditer(joined):
        if match.lastgroup == "space":
            continue
        (first, start), (last, end_before) = where[match.start()], where[match.end() - 1]
        values = number_values(match.group()) if match.lastgroup != "char" else frozenset()
        if values:
            atoms.append(_Atom(values, first, start, last, end_before + 1))
        else:  # not a number by either reading (a date "14.03.2026"): compared as characters
            atoms += [_Atom(joined[k], *where[k], where[k][0], where[k][1] + 1)
                      for k in range(match.start(), match.end()) if joined[k] != " "]
    return atoms


def _same(page_key: Any, answer_key: Any) -> bool:
    page_number, answer_number = isinstance(page_key, frozenset), isinstance(answer_key, frozenset)
    if page_number or answer_number:  # numbers: a shared reading; a number never equals a character
        return page_number and answer_number and bool(page_key & answer_key)
    return page_key == answer_key


def _find(page: list[_Atom], answer: list[_Atom], texts: Sequence[str]) -> list[tuple[int, int]]:
    """(first word, last word) of every non-overlapping occurrence, in reading order."""
    found, i, m = [], 0, len(answer)
    while m and i + m <= len(page):
        run = page[i:i + m]
        if (all(_same(p.key, a.key) for p, a in zip(run, answer))
                and not _cuts_run(texts[run[0].first], run[0].start)
                and not _cuts_run(texts[run[-1].last], run[-1].end)):
            found.append((run[0].first, run[-1].last))
            i += m
        else:
            i += 1
    return found


def _exact(answer: str, words: list[Word]) -> list[tuple[int, int]]:
    tokens, texts = answer.split(), [w.text for w in words]
    n, found, i = len(tokens), [], 0
    while n and i + n <= len(texts):
        if texts[i:i + n] == tokens:
            found.append((i, i + n - 1))
            i += n
        else:
            i += 1
    return found


def _occurrences(answer: str, words: list[Word]) -> list[tuple[int, int]]:
    found = _exact(answer, words)
    if found:
        return found
    folded = [_fold(w.text) for w in words]
    found = _find(_atoms(folded), _atoms([_fold(answer)]), folded)
    bare = [_without_currency(text) for text in folded]
    answer_parts = [p for p in (_without_currency(_fold(part)) for part in answer.split()) if p]
    for spaced in (False, True):
        if found:
            break
        found = _find(_atoms(bare, True, spaced), _atoms(answer_parts, True, spaced), bare)
    return found


def _line_boxes(words: list[Word]) -> list[Box]:
    """One box per line: the union of that line's words (consecutive words of one line)."""
    boxes: list[Box] = []
    line = None
    for w in words:
        if boxes and w.line == line:
            b = boxes[-1]
            boxes[-1] = Box(min(b.x0, w.x0), min(b.y0, w.y0), max(b.x1, w.x1), max(b.y1, w.y1))
        else:
            boxes.append(Box(w.x0, w.y0, w.x1, w.y1))
        line = w.line
    return boxes


def locate_all(answer: str, words: Any) -> list[list[Box]]:
    """Every occurrence of `answer` at the first matching level (module doc), in reading order."""
    words = _as_words(words)
    return [_line_boxes(words[first:last + 1]) for first, last in _occurrences(answer, words)]


def locate(answer: str, words: Any) -> list[Box]:
    """The first occurrence of `answer` in reading order: one box per line it spans; [] if none."""
    found = locate_all(answer, words)
    return found[0] if found else []


def ground(value_text: str | None, words: Any, has_text_layer: bool) -> tuple[list[Box] | None, bool | None]:
    """(regions, grounded) of one answer value on its page:
    no text layer, or no value to look for (None, "", whitespace) -> (None, None): does not apply;
    found -> (boxes of the first occurrence, True); not found -> ([], False)."""
    if not has_text_layer or value_text is None or not value_text.strip():
        return None, None
    boxes = locate(value_text, words)
    return boxes, bool(boxes)

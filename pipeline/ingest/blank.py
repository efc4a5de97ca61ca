"""Pages with nothing to read, found on the CPU as they are rendered, so they never reach the engine.

A model asked about a blank page answers anyway, and confidently (the tiny reader on the blank twins
of its held-out pages: 71 of 141 wrong answers at confidence >= 0.9). So the split stage (pages.py)
measures every page it renders and sets aside one with nothing to read: its rows say `blank_page`,
carry no answer and cost no engine time.

A page has nothing to read when both hold:
  * its text layer, if it has one, holds nothing but a page number ("7", "- 7 -", "Page 7 of 9",
    "vii"); the ink inside that number's boxes is not counted;
  * its marks cover at most `max_ink` of the page (1.5e-4). Ink is a pixel at least `min_contrast`
    grey levels (24) off the paper around it, or six times the page's noise where that is more, that
    touches at least two other ink pixels; a mark is a connected patch of ink. The paper is the
    median of each block of a 16 x 16 grid (and of the blocks around it), so a scan's grey, unevenly
    lit or dark paper is paper; the noise is the median distance from it, so scanner grain and JPEG
    ringing are not ink, and a lone pixel over the threshold is noise where a stroke of text is not.
    Straight strokes (a staple, a fold, a rule: see STROKE_*) are not marks, and the outer `margin`
    of each side (4 %) is not looked at: the scanner lid's edge and shadow lie there.
What stays under max_ink: dust, a lone page number of 1-3 digits at body size on a letter or A4
scan (not always: a scan has no text layer to say it is a number, and its ink is a short word's).
What does not: a word of four letters at 10 pt, a line of text, faint text, a chart, a signature.
bench/bench_blank.py measures both sides (bench/RESULTS.md, "Blank pages").
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:
    from pipeline.core.config import BlankPageSpec

BLOCKS = 16  # the paper's level is the median of each block of a BLOCKS x BLOCKS grid...
PAPER_SAMPLE = 3  # ...over every third of its pixels; the noise, over every third row and column
NOISE_SIGMAS = 6.0  # a pixel this many noise deviations off the paper is ink, whatever min_contrast says
MAD_TO_SIGMA = 1.4826  # Gaussian noise's median absolute deviation, in standard deviations
# A straight stroke: a mark at least STROKE_LENGTH of the page's longest side long, at most
# STROKE_THICKNESS of it thick, and STROKE_ELONGATION times as long as thick. Measured (bench_blank.py):
# a 10-13 mm staple of 0.5-0.8 mm wire, letter to A5, is 0.034 long or more, 0.0056 thick or less
# (antialiased at 560 px), 6.9 times as long or more; a word whose letters run together at 560 px is
# 0.0078 thick or more. Body text's letters are shorter than 0.015, so they are never strokes; a
# title's "l" may be one (its other letters are ink enough).
STROKE_LENGTH = 0.025
STROKE_THICKNESS = 0.0065
STROKE_ELONGATION = 5.0
LOOK_CLOSER = 50  # pages with more than LOOK_CLOSER x max_ink of ink are not looked at closer
BOX_PAD = 0.3  # a page number's box grows by this share of its height on each side (ink's antialiased edge)

# A text layer that is only a page number: "7", "- 7 -", "Page 7", "p. 7", "7 / 9", "Page 7 of 9", "vii"
# (1-3 digits: "2026" alone is more likely a year; roman numerals up to xxxix, front matter's).
PAGE_NUMBER = re.compile(r"[\W_]*(?:page|p\.|pg\.?|seite)?\s*(?:\d{1,3}|(?=[ivx])x{0,3}(?:ix|iv|v?i{0,3}))"
                         r"(?:\s*(?:/|of|von)\s*\d{1,3})?[\W_]*", re.IGNORECASE)


def text_to_read(texts: list[str]) -> bool:
    """Whether a text layer (its words) holds anything but whitespace and a lone page number."""
    joined = " ".join(" ".join(texts).split())
    return bool(joined) and PAGE_NUMBER.fullmatch(joined) is None


def _paper(gray: np.ndarray) -> np.ndarray:
    """The paper's grey level under every pixel: the median of its block of a BLOCKS x BLOCKS grid."""
    h, w = gray.shape
    bh, bw = -(-h // BLOCKS), -(-w // BLOCKS)
    padded = np.pad(gray, ((0, bh * BLOCKS - h), (0, bw * BLOCKS - w)), mode="edge")
    blocks = padded.reshape(BLOCKS, bh, BLOCKS, bw).transpose(0, 2, 1, 3).reshape(BLOCKS, BLOCKS, -1)
    level = np.median(blocks[..., ::PAPER_SAMPLE], axis=-1)
    # and a block that is mostly ink (a logo, a bar of a chart) takes its neighbours' paper: the median
    # of the 3 x 3 blocks around each
    around = np.pad(level, 1, mode="edge")
    level = np.median([around[y:y + BLOCKS, x:x + BLOCKS] for y in range(3) for x in range(3)], axis=0)
    return np.repeat(np.repeat(level.astype(np.int16), bh, axis=0), bw, axis=1)[:h, :w]


def _off_paper(gray: np.ndarray, min_contrast: int) -> np.ndarray:
    """The pixels of a page (HxW uint8) off the paper by min_contrast, or by NOISE_SIGMAS of its noise."""
    off = np.abs(gray.astype(np.int16) - _paper(gray))
    noise = MAD_TO_SIGMA * float(np.median(off[::PAPER_SAMPLE, ::PAPER_SAMPLE]))
    return off >= max(min_contrast, NOISE_SIGMAS * noise)


def _touching(ink: np.ndarray) -> np.ndarray:
    """The ink pixels that touch at least two others: a stroke's, not a lone pixel of noise."""
    padded = np.pad(ink, 1).astype(np.uint8)
    h, w = ink.shape
    touching = sum(padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
    return ink & (touching >= 2)


def _runs(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every horizontal run of ink as (row, first column, column after the last), row by row."""
    edges = np.diff(np.pad(ink, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    return rows, starts, ends


def _labels(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The mark (8-connected) each run belongs to: runs of adjacent rows that overlap or touch at a
    corner are one mark (union-find over the runs, two pointers along each pair of rows)."""
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    bounds = np.searchsorted(rows, np.arange(rows[-1] + 2)) if len(rows) else np.zeros(1, int)
    for row in range(1, len(bounds) - 1):
        a, a_end, b, b_end = bounds[row - 1], bounds[row], bounds[row], bounds[row + 1]
        while a < a_end and b < b_end:
            if starts[a] <= ends[b] and starts[b] <= ends[a]:  # ends are exclusive: equality is a corner
                parent[root(a)] = root(b)
            if ends[a] < ends[b]:
                a += 1
            else:
                b += 1
    return np.array([root(i) for i in range(len(rows))], dtype=np.int64)


def _not_strokes(ink: np.ndarray, longest_side: int) -> int:
    """Ink pixels in marks that are not straight strokes. A mark's length and thickness are those of
    the solid rectangle with its spread (the eigenvalues of its pixels' covariance)."""
    rows, starts, ends = _runs(ink)
    if not len(rows):
        return 0
    labels = _labels(rows, starts, ends)
    n = (ends - starts).astype(np.float64)
    last = ends - 1.0
    first = starts - 1.0
    sx = (starts + last) * n / 2
    sxx = (last * (last + 1) * (2 * last + 1) - first * (first + 1) * (2 * first + 1)) / 6
    y = rows.astype(np.float64)
    marks = np.unique(labels, return_inverse=True)[1]
    size = np.bincount(marks, n)
    mean_x, mean_y = np.bincount(marks, sx) / size, np.bincount(marks, y * n) / size
    var_x = np.bincount(marks, sxx) / size - mean_x ** 2 + 1 / 12  # + a pixel's own spread
    var_y = np.bincount(marks, y * y * n) / size - mean_y ** 2 + 1 / 12
    cov = np.bincount(marks, y * sx) / size - mean_x * mean_y
    half_trace, det = (var_x + var_y) / 2, var_x * var_y - cov ** 2
    spread = np.sqrt(np.maximum(half_trace ** 2 - det, 0))
    length = np.sqrt(12 * (half_trace + spread))
    thickness = np.sqrt(12 * np.maximum(half_trace - spread, 0))
    stroke = ((length >= STROKE_ELONGATION * thickness) & (thickness <= STROKE_THICKNESS * longest_side)
              & (length >= STROKE_LENGTH * longest_side))
    return int(size[~stroke].sum())


def ink_share(gray: np.ndarray, spec: "BlankPageSpec", skip_boxes: list[tuple[float, ...]] = ()) -> float:
    """The share of a page (HxW uint8, inside spec.margin) covered by marks; `skip_boxes`: boxes
    (x0, y0, x1, y1, normalised to the page) whose ink does not count."""
    h, w = gray.shape
    dy, dx = int(h * spec.margin), int(w * spec.margin)
    ink = _off_paper(gray[dy:h - dy, dx:w - dx], spec.min_contrast)
    for x0, y0, x1, y1 in skip_boxes:
        pad = (y1 - y0) * BOX_PAD
        ink[max(0, int((y0 - pad) * h) - dy):max(0, int(np.ceil((y1 + pad) * h)) - dy),
            max(0, int((x0 - pad * h / w) * w) - dx):max(0, int(np.ceil((x1 + pad * h / w) * w)) - dx)] = False
    share = np.count_nonzero(ink) / ink.size
    if share > LOOK_CLOSER * spec.max_ink:
        return share  # far over the limit (most pages): not looked at closer
    ink = _touching(ink)
    share = np.count_nonzero(ink) / ink.size
    if share <= spec.max_ink:
        return share
    return _not_strokes(ink, max(h, w)) / ink.size


def blank_reason(gray: np.ndarray, words: Mapping[str, list] | None, spec: "BlankPageSpec") -> str | None:
    """Why a rendered page has nothing to read (its rows' error message), or None when it may have.
    `gray`: the page as rendered, HxW uint8; `words`: its text layer (grounding.words_to_columns;
    None: no text layer)."""
    texts = list(words["text"]) if words else []
    if text_to_read(texts):
        return None
    boxes = list(zip(words["x0"], words["y0"], words["x1"], words["y1"])) if texts else []
    share = ink_share(gray, spec, boxes)
    if share > spec.max_ink:
        return None
    text = f"a text layer of only a page number ({' '.join(texts)[:20]!r})" if texts else "no text"
    return (f"nothing to read: marks on {share:.1e} of the page (render.blank_page.max_ink={spec.max_ink:g}) "
            f"and {text}; not sent to the engine")


def gray_of(image: Any) -> np.ndarray:
    """A rendered page as the detector takes it: a PyMuPDF Pixmap (pages.py renders RGB, no alpha) or
    a Pillow image -> HxW uint8, by Pillow's one conversion to grey for both."""
    from PIL import Image

    if hasattr(image, "samples"):
        image = Image.frombytes("L" if image.n == 1 else "RGB", (image.width, image.height), image.samples)
    return np.asarray(image.convert("L"))

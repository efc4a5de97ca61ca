"""The reading curriculum: learn to read large lines first, then whole pages, then the task.

The first training run (README) learned the answers' language and never looked at the page: a task
request asks for 2-4 values of a page, so most of what the loss rewards needs no image. Donut,
Pix2Struct and GOT-OCR start with a short stage of pure reading on rendered text; so does this:

1. `strips`: one large line (26-40 px; a digit spans 1-2 patches) on a 560 x 112 strip of 80
   cells, asked what is written on it. Every answer token is read off the strip, and the decoder
   has 80 image tokens to search, not 300.
2. `lines`: full-size pages holding 1-3 large lines, asked what is written on line k, or on the
   whole page.
3. `pages`: the generator's real pages (invoices, reports, charts), asked for their lines (line k,
   the last line, short pages whole) and one task request each.
4. `task`: the task requests as the pipeline asks them, with a line question now and then so reading
   stays trained.

Every request is a docvqa request, asked with the pipeline's own instruction and schema
({"answer", "evidence"}; a line's evidence is the line itself): the exported model sees no prompt
at training that the pipeline does not send. A stage is chosen per block of pages (data.batch_of),
so a position of the stream holds the same batch whatever process makes it, and a resumed run goes
on in the stage it was in.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import pymupdf

from tools.reader import pagegen, vocab

STAGES = ("strips", "lines", "pages", "task")
TRANSCRIBE = "What is all the text on this page?"
TRANSCRIBE_MAX = 160  # characters: a longer page is asked line by line only
_ORDINAL = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]


@dataclass(frozen=True)
class Curriculum:
    """Page blocks in each stage, in STAGES' order; the blocks after them train the task.
    Curriculum() is the task alone."""
    strips: int = 0
    lines: int = 0
    pages: int = 0

    def stage(self, block: int) -> str:
        for stage in STAGES[:-1]:
            if block < getattr(self, stage):
                return stage
            block -= getattr(self, stage)
        return "task"

    @classmethod
    def from_steps(cls, steps: "list[int] | tuple[int, ...]", reuse: int) -> "Curriculum":
        """Training steps per stage (strips, lines, pages) -> page blocks (a block serves `reuse` steps)."""
        return cls(*(-(-n // reuse) for n in steps))


def _line_text(rng: random.Random, value_only: bool = False) -> str:
    """One line of what documents hold: dates, amounts, numbers, names, words, label: value."""
    kind = rng.randrange(4 if value_only else 7)
    if kind == 0:
        return vocab.date(rng)
    if kind == 1:
        symbol = rng.choice(["$", "£", "EUR ", ""])
        return f"{symbol}{vocab.money(rng.randint(1, 99999) + rng.choice([0, 0.5, 0.25, 0.99]))}"
    if kind == 2:
        return vocab.invoice_number(rng)
    if kind == 3:
        return vocab.name(rng)
    if kind == 4:
        return " ".join(p for p in (rng.choice(vocab.VENDOR_A), rng.choice(vocab.VENDOR_B)) if p)
    if kind == 5:
        return " ".join(rng.choice(vocab.WORDS) for _ in range(rng.randint(1, 3))).capitalize()
    label = rng.choice(["Total:", "Date:", "No:", "Ref:", "Qty:", "Tax:", "Due:", "Invoice #:"])
    return f"{label} {_line_text(rng, value_only=True)}"


def make_lines_page(seed: int, shape: str | None = None) -> pagegen.Page:
    """A page of 1-3 lines of 26-40 px text, anywhere on the page, in one of the generator's fonts
    (shape "strip": one line on a 560 x 112 strip); its questions ask for each line and for the
    whole page."""
    rng = random.Random(f"docintel-reader-lines-{seed}")
    shape = shape or rng.choice(list(pagegen.SHAPES))
    width, height = pagegen.size_of(shape)
    texts = [_line_text(rng) for _ in range(1 if shape == "strip" else rng.randint(1, 3))]
    regular, bold = rng.choice(pagegen.FONTS)
    font = rng.choice((regular, bold))
    top = round(rng.randint(26, 40) * pagegen.SCALE[regular])

    def layout(canvas: pagegen.Canvas, size: int) -> None:
        gaps = [rng.uniform(size * 1.5, size * 2.5) for _ in texts[1:]]
        y = rng.uniform(size + 8, max(size + 8, height - 8 - size * 0.25 - sum(gaps)))
        for s, gap in zip(texts, gaps + [0]):
            w = pymupdf.get_text_length(s, fontname=font, fontsize=size)
            canvas.text(rng.uniform(10, max(10, width - w - 10)), y, s, font, size)
            y += gap

    # smaller, 2 px at a time, until the lines fit the page's width
    canvas = pagegen.fit(rng, width, height, layout, range(top, round(pagegen.MIN_PX * pagegen.SCALE[regular]) - 1, -2))
    lines = pagegen.text_lines(canvas)
    return pagegen.finish("lines", shape, canvas, line_questions(lines, len(lines) + 1, rng))


def line_questions(lines: list[str], k: int, rng: random.Random) -> list[tuple[str, dict]]:
    """Up to k (question, docvqa answer) pairs about a page's lines: line n (n <= 8), the last line,
    and the whole page when it is short."""
    pairs = [(f"What is written on the {_ORDINAL[i]} line?", {"answer": s, "evidence": s})
             for i, s in enumerate(lines[: len(_ORDINAL)])]
    if len(lines) > 1:
        pairs.append(("What is written on the last line?", {"answer": lines[-1], "evidence": lines[-1]}))
    whole = " ".join(lines)
    if len(whole) <= TRANSCRIBE_MAX:
        pairs.append((TRANSCRIBE, {"answer": whole, "evidence": whole}))
    return rng.sample(pairs, min(k, len(pairs)))

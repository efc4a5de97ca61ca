"""Gold sets of held-out generated pages for `docintel eval`, and their broken twins.

A trained reader is scored through the whole pipeline on pages it never saw (seeds from a stream
training does not use): each page a one-page PDF, and one JSONL per task in eval's own format
(pipeline/evaluation/evaluate.py: document, page, question, answers | fields). The broken twins keep
the gold and break the pages, so the scores a reader gets on them say whether it reads the page:
  blank   every page blank (same size)
  rotate  every page turned 90 degrees
  swap    each document holds the next document's page
A reader that reads scores high on the pages and far lower on every twin; a blind one scores the
same on all of them. `--values K` writes counterfactual pages (pagegen.make_page): two sets with
different K hold the same layouts and questions with other answers, so a reader that reads gets both
sides of a pair right, and one that guesses from the layout cannot.

  python3 -m tools.reader.goldset OUT [--pages 60] [--seed 900000] [--broken blank|rotate|swap] [--values K]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pymupdf

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.reader import pagegen  # noqa: E402

HELD_OUT_SEED = 900_000  # training draws its page seeds from random.Random streams; these are plain ints
BROKEN = ("blank", "rotate", "swap")


def _broken_pdf(how: str, pdf: bytes, other: bytes) -> bytes:
    if how == "swap":
        return other
    with pymupdf.open(stream=pdf, filetype="pdf") as src:
        if how == "rotate":
            src[0].set_rotation(90)
            return src.tobytes(garbage=3, deflate=True, no_new_id=True)
        with pymupdf.open() as blank:  # a blank page of the same size
            blank.new_page(width=src[0].rect.width, height=src[0].rect.height)
            return blank.tobytes(garbage=3, deflate=True, no_new_id=True)


def write(out: str | Path, pages: int = 60, seed: int = HELD_OUT_SEED, broken: str | None = None,
          values: int | None = None) -> dict[str, Path]:
    """Write `pages` held-out pages (kinds as training draws them) and the gold JSONL of each task;
    return {task: gold path}."""
    out = Path(out)
    (out / "docs").mkdir(parents=True, exist_ok=True)
    made = [pagegen.make_page(seed + i, values=values) for i in range(pages)]
    gold: dict[str, list[dict]] = {"docvqa": [], "chartqa": [], "fields": []}
    for i, page in enumerate(made):
        name = f"docs/{page.kind}-{seed + i}.pdf"
        pdf = page.pdf if broken is None else _broken_pdf(broken, page.pdf, made[(i + 1) % pages].pdf)
        (out / name).write_bytes(pdf)
        for question, answer in page.docvqa:
            if answer != pagegen.UNANSWERABLE:
                gold["docvqa"].append({"document": name, "page": 0, "question": question,
                                       "answers": [answer["answer"]], "question_type": page.kind})
        for question, answer in page.chartqa:  # labelled as ChartQA labels: the number without its unit
            label = answer["answer"] if answer["value"] is None else f"{answer['value']:g}"
            gold["chartqa"].append({"document": name, "page": 0, "question": question,
                                    "answers": [label], "question_type": page.kind})
        if page.fields is not None:
            gold["fields"].append({"document": name, "page": 0, "fields": page.fields, "question_type": page.kind})
    paths = {}
    for task, items in gold.items():
        paths[task] = out / f"{task}.jsonl"
        paths[task].write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    (out / "README.txt").write_text(
        f"Held-out tiny-reader pages: seeds {seed}..{seed + pages - 1}"
        + (f", broken: {broken}" if broken else "") + (f", values: {values}" if values is not None else "")
        + ". Written by tools/reader/goldset.py.\n")
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--pages", type=int, default=60)
    p.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    p.add_argument("--broken", choices=BROKEN)
    p.add_argument("--values", type=int, help="counterfactual pages: the same layouts, values of stream K")
    a = p.parse_args(argv)
    for task, path in write(a.out, a.pages, a.seed, a.broken, a.values).items():
        print(f"{task}: {sum(1 for _ in path.open())} items in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

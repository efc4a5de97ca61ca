#!/usr/bin/env python3
"""Does this machine's stack answer right? The tiny reader (models/tiny-reader) through the whole
pipeline, `docintel eval` on the real engine, on held-out generated pages it reads and on their
blank and rotated twins, which it cannot read.

    python3 bench/reader_check.py --out DIR [--tasks docvqa,fields] [--pages 60] [--seed 900000]
        [--model models/tiny-reader] [--address RAY] [--set KEY=VALUE ...]

Why: random weights give the real model's speed but meaningless answers, so a speed run alone cannot
see a stack that reads wrong (the GPU stack's answer format did exactly that: bench/RESULTS.md,
2026-12-06). `bench/gpu_run.sh` runs this before every speed run and stops when it fails, and the same
check runs in CI on the CPU stack (tests/test_tiny_reader_eval.py), so the two stacks pass one bar.

Per task, one eval over: the pages (tools/reader/goldset.py, seeds SEED..SEED+PAGES-1; score.py's
recorded CPU figures are on the same seeds), the same pages blank and turned 90 degrees, and for
docvqa a two-page document (an invoice, then a report that does not hold the answers) asked without a
page, so its score is the document table's roll-up. Bars: pages and the two-page document at least
0.9, each twin at most 0.2. Exit 1 when a bar fails.

DIR/reader_check.json holds the stack (versions, device, the Pixtral patch's line from the engine's
log), each task's and variant's mean, the bars, the share of answers written in the answer format
(pipeline/engine/answer_format.py), per variant the answers at confidence 0.9 or more and how many of
those are wrong, the calibration eval fitted (calibration.json's figures: ECE before and after on the
half it was not fitted on, the review threshold), and every item (question, prediction, score,
confidences, the engine's raw output), so every figure can be re-derived; each eval's log and report
are in DIR.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.reader import goldset, pagegen  # noqa: E402

READER = ROOT / "models" / "tiny-reader"
TWINS = ("blank", "rotate")
BARS = {"pages": 0.9, "two-page": 0.9, "blank": 0.2, "rotate": 0.2}  # pages: at least; twins: at most
TASK_SETTINGS = {"docvqa": [], "fields": ["--set", "task.fields_schema=invoice"], "chartqa": []}
TWO_PAGE = "two-page.pdf"


def passes(variant: str, mean: float) -> bool:
    return mean >= BARS[variant] if variant in ("pages", "two-page") else mean <= BARS[variant]


def _first_of_kind(kind: str, seed: int) -> pagegen.Page:
    while (page := pagegen.make_page(seed)).kind != kind:
        seed += 1
    return page


def two_page_document(out: Path, seed: int) -> list[dict]:
    """An invoice, then a report, as one PDF; gold items without a page for the invoice's questions
    that the report answers "unanswerable" (the roll-up must take the invoice page's answer)."""
    import pymupdf

    invoice, report = _first_of_kind("invoice", seed), _first_of_kind("report", seed)
    with pymupdf.open() as two:
        for page in (invoice, report):
            with pymupdf.open(stream=page.pdf, filetype="pdf") as src:
                two.insert_pdf(src)
        two.save(out / TWO_PAGE)
    on_report = dict(report.docvqa)
    return [{"document": TWO_PAGE, "question": q, "answers": [a["answer"]]} for q, a in invoice.docvqa
            if a != pagegen.UNANSWERABLE and on_report.get(q) == pagegen.UNANSWERABLE]


def write_gold(out: Path, tasks: list[str], pages: int, seed: int) -> dict[str, Path]:
    """One gold JSONL per task: the pages, their twins (documents under pages/, blank/, rotate/)."""
    items: dict[str, list[dict]] = {t: [] for t in tasks}
    for variant in ("pages", *TWINS):
        paths = goldset.write(out / variant, pages=pages, seed=seed, broken=None if variant == "pages" else variant)
        for task in tasks:
            for line in paths[task].read_text().splitlines():
                item = json.loads(line)
                items[task].append(dict(item, document=f"{variant}/{item['document']}"))
    if "docvqa" in items:
        items["docvqa"] += two_page_document(out, seed)
    gold = {}
    for task, rows in items.items():
        gold[task] = out / f"{task}.jsonl"
        gold[task].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return gold


def variant_of(source_uri: str) -> str:
    if source_uri.endswith(TWO_PAGE):
        return "two-page"
    return next(v for v in ("pages", *TWINS) if f"/{v}/docs/" in source_uri)


def stack() -> dict:
    from pipeline.engine.pixtral_patch import vllm_version

    info = {"python": platform.python_version(), "vllm": vllm_version(), "host": platform.node()}
    for name in ("torch", "xgrammar", "ray", "transformers"):
        try:
            from importlib import metadata

            info[name] = metadata.version(name)
        except Exception:
            info[name] = None
    try:
        import torch

        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:
        info["device"] = "unknown"
    info["DOCINTEL_PIXTRAL_PATCH"] = os.environ.get("DOCINTEL_PIXTRAL_PATCH")
    return info


def _compact(raw: str | None) -> bool | None:
    from pipeline.engine.answer_format import compact

    try:
        return raw == compact(json.loads(raw)) if raw else None
    except ValueError:
        return False


def patch_lines(log: str) -> list[str]:
    """What the engine said of the Pixtral patch (pipeline/engine/actor.py prints it on GPUs), from the
    run's own output and its Ray session's logs, which the run's summary names."""
    texts = [log]
    for folder in re.findall(r"^\s*logs\s+(\S+)$", log, flags=re.M):
        for path in Path(folder).glob("worker-*"):
            try:
                texts.append(path.read_text(errors="replace"))
            except OSError:
                continue
    return sorted({m.strip() for t in texts for m in re.findall(r"docintel (.*[Pp]ixtral[^\n]*)", t)})


def run_task(task: str, gold: Path, out: Path, model: str, extra: list[str]) -> dict:
    import pyarrow.parquet as pq

    from pipeline.store import output

    cmd = [sys.executable, "-m", "pipeline.cli", "eval", str(gold), "--task", task, "--model", model,
           "--output", str(out / "runs"), "--run-id", task, "--set", "ray.progress_bars=false",
           *TASK_SETTINGS[task], *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    log = done.stdout + done.stderr
    (out / f"{task}.log").write_text(log)
    result: dict = {"exit": done.returncode, "patch": patch_lines(log)}
    if done.returncode != 0:
        return result
    scores = pq.read_table(out / "runs" / "_eval" / task / "scores.parquet").to_pylist()
    raw = {(r["source_uri"], r["page_index"], r["question"]): r["raw_output"]
           for r in output.read_pages(str(out / "runs"), task).to_pylist()}
    items = []
    for r in scores:
        variant = variant_of(r["source_uri"])
        page_raw = raw.get((r["source_uri"], r["page_index"], r["question"]))
        items.append({"task": task, "variant": variant, "document": os.path.relpath(r["source_uri"].removeprefix("file://"), out),
                      "page": r["page_index"], "question": r["question"], "references": r["references"],
                      "prediction": r["prediction"], "score": r["score"], "correct": r["correct"],
                      "confidence": r["confidence"], "token_confidence": r["token_confidence"],
                      "needs_review": r["needs_review"], "error_kind": r["error_kind"],
                      "width": r["width"], "height": r["height"],
                      "raw_output": page_raw})
    result["items"] = items
    result["variants"] = {}
    for variant in ("pages", *TWINS, "two-page"):
        got = [i["score"] for i in items if i["variant"] == variant]
        if got:
            mean = round(sum(got) / len(got), 4)
            result["variants"][variant] = {"mean": mean, "items": len(got), "bar": BARS[variant],
                                           "passes": passes(variant, mean)}
    formats = [c for c in (_compact(i["raw_output"]) for i in items) if c is not None]
    result["compact_answers"] = round(sum(formats) / len(formats), 4) if formats else None
    for variant, figures in result["variants"].items():  # the answers a reviewer would not be sent to
        sure = [i for i in items if i["variant"] == variant and (i["confidence"] or 0) >= 0.9]
        figures.update(confidence_0_9=len(sure), confident_and_wrong=sum(not i["correct"] for i in sure))
    calibration = out / "runs" / "_eval" / task / "calibration.json"
    result["calibration"] = json.loads(calibration.read_text())["measured"] if calibration.exists() else None
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--tasks", default="docvqa,fields")
    p.add_argument("--pages", type=int, default=60)
    p.add_argument("--seed", type=int, default=goldset.HELD_OUT_SEED)
    p.add_argument("--model", default=str(READER))
    p.add_argument("--address", help="Ray address (default: a local Ray for each eval)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tasks = a.tasks.split(",")
    extra = [x for kv in a.set for x in ("--set", kv)] + (["--address", a.address] if a.address else [])
    gold = write_gold(out / "gold", tasks, a.pages, a.seed)
    result = {"model": a.model, "pages": a.pages, "seed": a.seed, "settings": a.set, "stack": stack(), "tasks": {}}
    for task in tasks:
        result["tasks"][task] = run_task(task, gold[task], out, a.model, extra)
    ok = all(t["exit"] == 0 and all(v["passes"] for v in t["variants"].values()) for t in result["tasks"].values())
    result["passes"] = ok
    (out / "reader_check.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    for task, t in result["tasks"].items():
        print(json.dumps({"task": task, "exit": t["exit"], "compact_answers": t.get("compact_answers"),
                          "patch": t["patch"], **{v: s["mean"] for v, s in t.get("variants", {}).items()}}))
    print("reader check", "passed" if ok else "FAILED: this stack does not answer right", f"({out}/reader_check.json)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

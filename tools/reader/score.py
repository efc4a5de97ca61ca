"""Score a tiny-reader folder through the whole product: `docintel eval` on held-out generated pages
(goldset.py), on their blank, rotated and swapped twins, on counterfactual twins, and with the
questions asked one at a time; one run per task and variant.

The issue's bar for a reader that reads: docvqa ANLS, chartqa relaxed accuracy and fields F1 at least
0.9 on the pages; the broken twins far lower (blank <= 0.1, rotated <= 0.3, swapped <= 0.1); both
sides of a counterfactual pair right (values-1 and values-2: the same layouts and questions, other
values) in at least 0.9 of the pairs whose answers differ; questions asked together answered as when
asked one at a time. Random weights score near 0 everywhere; a blind model that learned the answers'
look scores the same on pages and twins, and cannot get both sides of a pair. Each run is the real
CLI on the real engine (CPU vLLM here, or a GPU), so the score covers rendering, prompts, structured
output and scoring, not the model alone.

  python3 -m tools.reader.score MODEL_DIR --out /tmp/reader-score [--pages 60]
      [--variants none,blank,rotate,swap,values-1,values-2,each,groups-4] [--tasks docvqa,chartqa,fields]
      [--set engine.separate_core=false ...]
Writes OUT/scores.json: {"scores": {variant: {task: {"mean", "correct", "items"}}}, "pairs", "together",
"verdict"}, OUT/items.jsonl (every scored item of every run: variant, task, document, question, gold,
prediction, score, confidence), from which each figure can be re-derived, and each run's report.html.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.reader import goldset  # noqa: E402

TASKS = {"docvqa": [], "chartqa": [], "fields": ["--set", "task.fields_schema=invoice"]}
# variant -> (goldset.write arguments, tasks it runs, extra settings)
VARIANTS = {
    "none": ({}, tuple(TASKS), []),
    **{b: ({"broken": b}, tuple(TASKS), []) for b in goldset.BROKEN},
    "values-1": ({"values": 1}, tuple(TASKS), []),
    "values-2": ({"values": 2}, tuple(TASKS), []),
    "each": ({}, ("docvqa", "chartqa"), ["--set", "task.question_mode=each"]),  # eval's default: together
    # together, at most 4 questions a request: the 2-4 that training grouped (data.py); eval asks 5-8 at once
    "groups-4": ({}, ("docvqa", "chartqa"), ["--set", "task.questions_per_request=4"]),
}
BAR = {"none": 0.9, "blank": 0.1, "rotate": 0.3, "swap": 0.1, "pairs": 0.9}  # pages, pairs: at least; twins: at most


def _rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _key(row: dict) -> tuple[str, str]:
    return Path(row["source_uri"]).name, row["question"] or ""


def pairs(a: list[dict], b: list[dict]) -> dict:
    """Counterfactual pairs: rows of the same page and question in two value sets whose gold answers
    differ; both_right is the share where both sides are correct."""
    other = {_key(r): r for r in b}
    both = [(r, other[_key(r)]) for r in a if _key(r) in other and r["references"] != other[_key(r)]["references"]]
    return {"pairs": len(both),
            "both_right": round(sum(x["correct"] and y["correct"] for x, y in both) / len(both), 4) if both else None}


def together(together_rows: list[dict], each_rows: list[dict]) -> dict:
    """The same questions asked together (one request, an array answer) and one at a time."""
    each = {_key(r): r for r in each_rows}
    joined = [(r, each[_key(r)]) for r in together_rows if _key(r) in each]
    same = sum(x["prediction"] == y["prediction"] for x, y in joined)
    agree = sum(x["correct"] == y["correct"] for x, y in joined)
    return {"questions": len(joined), "same_answer": round(same / len(joined), 4) if joined else None,
            "same_verdict": round(agree / len(joined), 4) if joined else None}


def verdict(result: dict) -> dict:
    """Each bar of the issue against the scores: {name: {"value", "bar", "passes"}}."""
    out: dict = {}
    for variant, bar in BAR.items():
        for task, s in result["scores"].get(variant, {}).items():
            if "mean" in s:
                out[f"{variant}/{task}"] = {"value": s["mean"], "bar": bar, "passes":
                                            s["mean"] >= bar if variant == "none" else s["mean"] <= bar}
    for task, p in result.get("pairs", {}).items():
        if p["both_right"] is not None:
            out[f"pairs/{task}"] = {"value": p["both_right"], "bar": BAR["pairs"], "passes": p["both_right"] >= BAR["pairs"]}
    return out


ITEM_FIELDS = ("source_uri", "page_index", "question", "references", "prediction", "score", "correct", "confidence",
               "valid", "error_kind")


def score(model: str, out: Path, pages: int, variants: list[str], extra: list[str],
          only: tuple[str, ...] = tuple(TASKS)) -> dict:
    result: dict = {"model": str(model), "pages": pages, "bar": BAR, "scores": {}}
    rows: dict[tuple[str, str], list[dict]] = {}
    for variant in variants:
        kwargs, tasks, settings = VARIANTS[variant]
        gold = goldset.write(out / "gold" / variant, pages, **kwargs)
        for task in (t for t in tasks if t in only):
            output = out / "runs" / variant
            cmd = ["docintel", "eval", str(gold[task]), "--task", task, "--model", str(model),
                   "--output", str(output), "--run-id", task,
                   *TASKS[task], *settings, *extra]  # the page size: the folder's (docintel_model.json)
            done = subprocess.run(cmd, capture_output=True, text=True)
            (out / "logs").mkdir(parents=True, exist_ok=True)
            (out / "logs" / f"{variant}-{task}.log").write_text(done.stdout + done.stderr)
            if done.returncode != 0:
                result["scores"].setdefault(variant, {})[task] = {"error": f"exit {done.returncode}"}
                print(variant, task, f"exit {done.returncode}: see {out}/logs/{variant}-{task}.log", flush=True)
                continue
            got = rows[variant, task] = _rows(output / "_eval" / task / "scores.parquet")
            result["scores"].setdefault(variant, {})[task] = {
                "mean": round(sum(r["score"] for r in got) / len(got), 4),
                "correct": round(sum(r["correct"] for r in got) / len(got), 4), "items": len(got)}
            print(variant, task, result["scores"][variant][task], flush=True)
    result["pairs"] = {task: pairs(rows["values-1", task], rows["values-2", task])
                       for task in TASKS if ("values-1", task) in rows and ("values-2", task) in rows}
    result["together"] = {task: together(rows["none", task], rows["each", task])
                          for task in TASKS if ("none", task) in rows and ("each", task) in rows}
    result["verdict"] = verdict(result)
    (out / "scores.json").write_text(json.dumps(result, indent=1))
    with open(out / "items.jsonl", "w") as items:
        for (variant, task), got in rows.items():
            for r in got:
                items.write(json.dumps({"variant": variant, "task": task, **{k: r[k] for k in ITEM_FIELDS}},
                                       ensure_ascii=False) + "\n")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--out", required=True)
    p.add_argument("--pages", type=int, default=60)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    extra = [x for kv in a.set for x in ("--set", kv)]
    result = score(a.model, Path(a.out), a.pages, a.variants.split(","), extra, tuple(a.tasks.split(",")))
    print(json.dumps({"pairs": result["pairs"], "together": result["together"], "verdict": result["verdict"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

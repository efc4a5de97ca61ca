"""Score a tiny-reader folder through the whole product: `docintel eval` on held-out generated pages
(goldset.py) and on their blank, rotated and swapped twins, one run per task and variant.

The issue's bar for a reader that reads: docvqa ANLS, chartqa relaxed accuracy and fields F1 at least
0.9 on the pages; the twins far lower (blank <= 0.1, rotated <= 0.3, swapped <= 0.1). Random weights
score near 0 everywhere; a blind model that learned the answers' look scores the same on pages and
twins. Each run is the real CLI on the real engine (CPU vLLM here, or a GPU), so the score covers
rendering, prompts, structured output and scoring, not the model alone.

  python3 -m tools.reader.score MODEL_DIR --out /tmp/reader-score [--pages 60] [--variants none,blank,rotate,swap]
      [--set engine.separate_core=false ...]     # extra `docintel eval` settings
Writes OUT/scores.json: {variant: {task: {"mean", "correct", "items"}}} and each run's report.html.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.reader import goldset, pagegen  # noqa: E402

TASKS = {"docvqa": [], "chartqa": [], "fields": ["--set", "task.fields_schema=invoice"]}
BAR = {"none": 0.9, "blank": 0.1, "rotate": 0.3, "swap": 0.1}  # pages: at least; twins: at most


def score(model: str, out: Path, pages: int, variants: list[str], extra: list[str]) -> dict:
    import pyarrow.parquet as pq

    result: dict = {"model": str(model), "pages": pages, "bar": BAR, "scores": {}}
    for variant in variants:
        gold = goldset.write(out / "gold" / variant, pages, broken=None if variant == "none" else variant)
        for task, settings in TASKS.items():
            output = out / "runs" / variant
            cmd = ["docintel", "eval", str(gold[task]), "--task", task, "--model", str(model),
                   "--output", str(output), "--run-id", task,
                   "--set", f"render.max_side={pagegen.RENDER['max_side']}", *settings, *extra]
            done = subprocess.run(cmd, capture_output=True, text=True)
            (out / "logs").mkdir(parents=True, exist_ok=True)
            (out / "logs" / f"{variant}-{task}.log").write_text(done.stdout + done.stderr)
            if done.returncode != 0:
                result["scores"].setdefault(variant, {})[task] = {"error": f"exit {done.returncode}"}
                continue
            rows = pq.read_table(output / "_eval" / task / "scores.parquet").to_pylist()
            result["scores"].setdefault(variant, {})[task] = {
                "mean": round(sum(r["score"] for r in rows) / len(rows), 4),
                "correct": round(sum(r["correct"] for r in rows) / len(rows), 4), "items": len(rows)}
            print(variant, task, result["scores"][variant][task], flush=True)
    (out / "scores.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--out", required=True)
    p.add_argument("--pages", type=int, default=60)
    p.add_argument("--variants", default="none,blank,rotate,swap")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    extra = [x for kv in a.set for x in ("--set", kv)]
    score(a.model, Path(a.out), a.pages, a.variants.split(","), extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())

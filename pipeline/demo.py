"""`docintel demo`: the whole product in a few minutes on any machine, on the shipped samples.

It runs docvqa (the samples' manifest), chartqa (the chart) and fields (the invoice and the scanned
letter, with the shipped invoice schema), prints each run's summary, scores the docvqa run against
the samples' gold answers (the eval report), writes the review page, and ends by saying where to
look. With a GPU and the real weights it uses Mistral Small 3.2; otherwise the tiny random-weight
demo model (written once to a cache folder), and it says loudly that those answers are meaningless.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pipeline.core.config import DEFAULT_MODEL, load_spec

BANNER = ("=" * 78 + "\n  NO GPU WITH THE WEIGHTS HERE: the demo runs the tiny random-weight model of the same "
          "architecture.\n  Every answer below is MEANINGLESS. It shows the pipeline, the tables, the reports "
          "and\n  the failure handling; run it on a GPU with the weights for real answers.\n" + "=" * 78)


def samples_dir() -> Path:
    """samples/ of the checkout; a wheel carries it as pipeline/_samples (pyproject.toml)."""
    packaged = Path(__file__).resolve().parent / "_samples"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "samples"


def demo_model_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "docintel" / "demo-model"
    if not (cache / "params.json").is_file():
        from pipeline.engine.model import build

        build(cache, tiny=True)
    return cache


def _weights_here(model: str) -> bool:
    """The real model is usable without a download: a local folder, or a hub id already cached."""
    if Path(model).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(model, "params.json"), str)
    except Exception:  # noqa: BLE001 - no hub library, no cache: not here
        return False


def choose_model(model: str | None) -> tuple[str, bool]:
    """(model, real): the real model where a GPU and its weights are here, else the demo model."""
    from pipeline.job.preflight import local_gpu_count

    model = model or DEFAULT_MODEL
    if local_gpu_count() >= 1 and _weights_here(model):
        return model, True
    return str(demo_model_dir()), False


def _jobs(samples: Path) -> list[tuple[str, list[tuple[str, Any]]]]:
    return [
        ("docvqa", [("input.manifest", str(samples / "questions.jsonl"))]),
        ("chartqa", [("input.paths", [str(samples / "chart.png")]),
                     ("task.questions", ["What was the revenue in Q4 2025?",
                                         "Which quarter had the lowest revenue in 2025?"])]),
        ("fields", [("input.paths", [str(samples / "invoice.pdf"), str(samples / "scan.pdf")]),
                    ("task.fields_schema", "invoice"), ("task.max_tokens", 512)]),
    ]


def run_demo(output: str, model: str | None = None, overrides: list[tuple[str, Any]] = ()) -> dict[str, Any]:
    """Run the three demo jobs into OUTPUT/<task>/, score and review; returns what was written."""
    from pipeline.browse import review
    from pipeline.evaluation import evaluate
    from pipeline.job.run import init_ray, run_job

    samples = samples_dir()
    model, real = choose_model(model)
    if not real:
        print(BANNER, flush=True)
    where: dict[str, Any] = {"model": model, "real_model": real, "runs": {}}
    import ray

    owns_ray = not ray.is_initialized()  # as run_job: a Ray the caller started stays up
    try:
        for task, settings in _jobs(samples):
            out = f"{output.rstrip('/')}/{task}"
            spec = load_spec(None, [("task.name", task), ("engine.model", model), ("output.path", out),
                                    ("output.run_id", f"demo-{task}"), *settings, *overrides])
            if not real:  # the CPU demo in minutes: small pages, and the engine in the actor's process
                spec.render.max_side = min(spec.render.max_side, 768)
                spec.engine.max_model_len = min(spec.engine.max_model_len, 8192)
                spec.engine.separate_core = False
            init_ray(spec)  # once: the three jobs share one Ray
            print(f"\ndocintel demo: {task} ...", flush=True)
            summary = run_job(spec)
            print(summary.render(), flush=True)
            where["runs"][task] = {"output": out, "run_id": spec.output.run_id, "summary": summary.as_dict()}
    finally:
        if owns_ray and ray.is_initialized():
            ray.shutdown()
    docvqa = where["runs"]["docvqa"]
    scores, target = evaluate.score_run(docvqa["output"], docvqa["run_id"], "docvqa", str(samples / "gold.jsonl"),
                                        docvqa["summary"])
    where["eval"] = f"{target}/report.html"
    where["eval_headline"] = evaluate.headline(scores)
    where["review"] = f"{output.rstrip('/')}/review.html"
    review.write_review(docvqa["output"], where["review"], run_id=docvqa["run_id"])
    return where


def where_to_look(where: dict[str, Any]) -> str:
    lines = ["", "docintel demo: done. Where to look:"]
    for task, run in where["runs"].items():
        lines.append(f"  {task:<8} {run['output']}/pages, {run['output']}/documents   "
                     f"(docintel show {run['output']} {run['run_id']})")
    lines += [f"  eval     {where['eval']}   ({where['eval_headline']}"
              + (", random weights: expect 0)" if not where["real_model"] else ")"),
              f"  review   {where['review']}   (open in a browser)",
              "  query    duckdb -c \"select source_uri, question, answer_text, confidence, grounded "
              f"from read_parquet('{where['runs']['docvqa']['output']}/pages/*/*.parquet')\""]
    if not where["real_model"]:
        lines.append("  (random weights: the answers are meaningless; the tables, reports and counts are real)")
    return "\n".join(lines)


def main(output: str, model: str | None, overrides: list[tuple[str, Any]]) -> int:
    where = run_demo(output, model, overrides)
    print(where_to_look(where))
    sys.stdout.flush()
    return 0

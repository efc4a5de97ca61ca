"""`docintel demo`: the whole product in a few minutes on any machine.

It runs docvqa, chartqa and fields, prints each run's summary, scores the docvqa run against its gold
answers (the eval report), writes the review page, and ends by saying where to look. With a GPU and
the real weights it uses Mistral Small 3.2 on the shipped samples (samples/). Otherwise it uses the
tiny reader (models/tiny-reader: the same architecture at 12 M parameters, trained on generated
pages) on the generated pages it ships with, which it reads: its docvqa and fields answers there are
right, so the first run shows answers that are right, and the banner says what the reader is not.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pipeline.core.config import DEFAULT_MODEL, load_spec

BANNER = ("=" * 78 + "\n  NO GPU WITH THE WEIGHTS HERE: the demo runs the tiny reader (models/tiny-reader),\n"
          "  Mistral Small 3.2's architecture at 12 M parameters, trained on generated pages like the\n"
          "  ones it reads here. Its docvqa and fields answers on them are right; most chart values it\n"
          "  reads are not. It is a TEST INSTRUMENT, NOT A DOCUMENT MODEL: run on a GPU with the\n"
          "  weights for your own documents.\n" + "=" * 78)


def samples_dir() -> Path:
    """samples/ of the checkout; a wheel carries it as pipeline/_samples (pyproject.toml)."""
    packaged = Path(__file__).resolve().parent / "_samples"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "samples"


def reader_dir() -> Path:
    """The shipped tiny reader, models/tiny-reader of the checkout; a wheel carries it as pipeline/_reader."""
    packaged = Path(__file__).resolve().parent / "_reader"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "models" / "tiny-reader"


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
    """(model, real): the real model where a GPU and its weights are here, else the tiny reader."""
    from pipeline.job.preflight import local_gpu_count

    model = model or DEFAULT_MODEL
    if local_gpu_count() >= 1 and _weights_here(model):
        return model, True
    return str(reader_dir()), False


def _jobs(samples: Path) -> list[tuple[str, list[tuple[str, Any]]]]:
    """The real model's demo: the shipped samples."""
    return [
        ("docvqa", [("input.manifest", str(samples / "questions.jsonl"))]),
        ("chartqa", [("input.paths", [str(samples / "chart.png")]),
                     ("task.questions", ["What was the revenue in Q4 2025?",
                                         "Which quarter had the lowest revenue in 2025?"])]),
        ("fields", [("input.paths", [str(samples / "invoice.pdf"), str(samples / "scan.pdf")]),
                    ("task.fields_schema", "invoice"), ("task.max_tokens", 512)]),
    ]


def _reader_jobs(pages: Path, inputs: Path) -> list[tuple[str, list[tuple[str, Any]]]]:
    """The tiny reader's demo: its generated pages (tools/reader/goldset.py), each question as its gold
    asks it; the page size is the folder's own (docintel_model.json, applied in run_demo)."""
    from pipeline.evaluation.evaluate import load_gold, manifest_entries

    inputs.mkdir(parents=True, exist_ok=True)
    manifests = {}
    for task in ("docvqa", "chartqa"):
        manifests[task] = inputs / f"{task}-questions.jsonl"
        manifests[task].write_text("".join(json.dumps(e) + "\n" for e in manifest_entries(load_gold(pages / f"{task}.jsonl"))))
    invoices = sorted(str(p) for p in (pages / "docs").glob("invoice-*.pdf"))
    listed = [("input.allowed_roots", [str(pages)])]  # the manifests are written elsewhere: name the pages' folder
    return [
        ("docvqa", [("input.manifest", str(manifests["docvqa"])), *listed]),
        ("chartqa", [("input.manifest", str(manifests["chartqa"])), *listed]),
        ("fields", [("input.paths", invoices), ("task.fields_schema", "invoice")]),
    ]


def run_demo(output: str, model: str | None = None, overrides: list[tuple[str, Any]] = ()) -> dict[str, Any]:
    """Run the three demo jobs into OUTPUT/<task>/, score and review; returns what was written."""
    from pipeline.browse import review
    from pipeline.evaluation import evaluate
    from pipeline.engine.model import apply_folder_render
    from pipeline.job.run import init_ray, run_job

    model, real = choose_model(model)
    if real:
        jobs, gold = _jobs(samples_dir()), samples_dir() / "gold.jsonl"
    else:
        print(BANNER, flush=True)
        pages = Path(model) / "pages"
        jobs, gold = _reader_jobs(pages, Path(output) / "inputs"), pages / "docvqa.jsonl"
    where: dict[str, Any] = {"model": model, "real_model": real, "runs": {}}
    import ray

    owns_ray = not ray.is_initialized()  # as run_job: a Ray the caller started stays up
    try:
        for task, settings in jobs:
            out = f"{output.rstrip('/')}/{task}"
            spec = load_spec(None, [("task.name", task), ("engine.model", model), ("output.path", out),
                                    ("output.run_id", f"demo-{task}"), *settings, *overrides])
            if not real:  # the CPU demo in minutes: the engine in the actor's process
                spec.engine.separate_core = False
                apply_folder_render(spec)  # the reader's page size and dpi, as it was trained
            init_ray(spec)  # once: the three jobs share one Ray
            print(f"\ndocintel demo: {task} ...", flush=True)
            summary = run_job(spec)
            print(summary.render(), flush=True)
            where["runs"][task] = {"output": out, "run_id": spec.output.run_id, "summary": summary.as_dict()}
    finally:
        if owns_ray and ray.is_initialized():
            ray.shutdown()
    docvqa = where["runs"]["docvqa"]
    scores, target = evaluate.score_run(docvqa["output"], docvqa["run_id"], "docvqa", str(gold),
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
              + (", the tiny reader on the pages it was trained for)" if not where["real_model"] else ")"),
              f"  review   {where['review']}   (open in a browser)",
              "  query    duckdb -c \"select source_uri, question, answer_text, confidence, grounded "
              f"from read_parquet('{where['runs']['docvqa']['output']}/pages/*/*.parquet')\""]
    if not where["real_model"]:
        lines.append("  (the tiny reader: a test instrument trained on generated pages, not a document model)")
    return "\n".join(lines)


def main(output: str, model: str | None, overrides: list[tuple[str, Any]]) -> int:
    where = run_demo(output, model, overrides)
    print(where_to_look(where))
    sys.stdout.flush()
    return 0

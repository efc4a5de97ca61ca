#!/usr/bin/env python3
"""Engine throughput on generated pages: questions asked one request each vs together, at two
page resolutions. Prints one JSON line per configuration and writes them all to --out.

Runs the pipeline's own EngineActor (the class Ray Data runs) without Ray, on one engine, after a
warm-up batch, so the numbers are steady-state engine speed (start-up excluded). With a model
folder from `docintel demo-model --full` (real Mistral Small 3.2 shapes, random weights) speeds
are the real model's, but output lengths are random: compare prompt-side numbers first and read
output tokens next to them.

    python bench/bench_engine.py --model /tmp/full --pages 48 --questions 4 --out bench.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # docgen: generated documents

from docgen import make_pdf  # noqa: E402

from pipeline.core.config import EngineSpec, RenderSpec, TaskSpec  # noqa: E402
from pipeline.ingest.pages import split_document  # noqa: E402
from pipeline.ingest.sources import content_id  # noqa: E402

QUESTIONS = ["What is the total?", "What is the date?", "What is the title of this document?",
             "How many line items are there?", "What is the amount for toner?", "Who is the seller?"]


def make_pages(folder: Path, n: int, questions: list[str], max_side: int) -> list[dict]:
    rows = []
    for i in range((n + 1) // 2):
        path = make_pdf(folder / f"doc{i}.pdf", pages=2, title=f"Invoice {1000 + i}", total=f"{i},234.50")
        data = path.read_bytes()
        doc = {"doc_id": content_id(data), "source_uri": str(path), "questions": list(questions),
               "data": data, "error_kind": None, "error": None}
        rows += split_document(doc, RenderSpec(dpi=200, max_side=max_side))
    return rows[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--pages", type=int, default=48)
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--sides", default="1024,1540")
    ap.add_argument("--modes", default="each,together")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--max-num-batched-tokens", type=int, default=4096)
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--out", default="bench_engine.json")
    ap.add_argument("--work", default="/tmp/bench_pages", help="where the generated pages go")
    args = ap.parse_args()

    from pipeline.engine.actor import EngineActor
    from pipeline.ingest.request import request_row
    from pipeline.core.rows import REQUEST
    from pipeline.tasks import get_task

    questions = QUESTIONS[: args.questions]
    # On a CPU (this script's smoke run; its speeds mean nothing there) the engine core runs in this
    # process: it starts in half the time.
    engine = EngineSpec(model=args.model, max_model_len=16384, batch_size=args.pages,
                        max_num_batched_tokens=args.max_num_batched_tokens, enforce_eager=args.enforce_eager,
                        gpu_memory_utilization=0.9, separate_core=args.device != "cpu")
    started = time.monotonic()
    actor = EngineActor(engine, args.device, None)
    print(json.dumps({"engine_start_s": round(time.monotonic() - started, 1)}), flush=True)

    results = []
    tmp = Path(args.work)
    for side in [int(s) for s in args.sides.split(",")]:
        pages = make_pages(tmp / str(side), args.pages, questions, side)
        for mode in args.modes.split(","):
            spec = TaskSpec(questions=questions, question_mode=mode, max_tokens=args.max_tokens,
                            retry_max_tokens=args.max_tokens)  # no retries: measure one pass
            task = get_task("docvqa", spec)
            table = REQUEST.table([request_row(p, task, spec, None, engine.max_model_len) for p in pages])
            actor(table.slice(0, 2))  # warm-up (grammar compile, first shapes)
            t0 = time.monotonic()
            rows = actor(table).to_pylist()
            seconds = time.monotonic() - t0
            outputs = [o for r in rows for o in r["outputs"]]  # one per engine request
            prompt = sum(o["prompt_tokens"] or 0 for o in outputs)
            output = sum(o["output_tokens"] or 0 for o in outputs)
            answers = sum(len(p["questions"]) for r in rows for p in r["prompts"])
            result = dict(side=side, mode=mode, pages=len(pages), questions=len(questions), rows=answers,
                          requests=len(outputs), seconds=round(seconds, 2),
                          pages_per_s=round(len(pages) / seconds, 3), answers_per_s=round(answers / seconds, 2),
                          prompt_tokens=prompt, output_tokens=output,
                          prompt_tokens_per_page=round(prompt / len(pages)),
                          errors=sum(1 for o in outputs if o["error_kind"]))
            results.append(result)
            print(json.dumps(result), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    actor.shutdown()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Pages per second on a GPU: raw vLLM against the whole pipeline, same pages, same engine settings.

    python bench/bench_gpu.py compare --model /tmp/full --pages 160 --out $OUT/cmp.json \
        [--set engine.max_num_batched_tokens=4096 ...]          # raw, then pipeline, then the ratio
    python bench/bench_gpu.py raw --model /tmp/full --sides 1024,1325,1540 --out $OUT/raw.json \
        [--set engine.quantization=fp8 ...]                      # raw only, several resolutions

raw:      `vllm.LLM.chat` over every page in one call, with the exact requests the pipeline makes
          (pipeline.request.request_row + sampling_params + engine_args), pages pre-rendered.
pipeline: `docintel run` over the same PDFs (Ray Data: read -> render -> engine actor -> parse ->
          Parquet), as a separate process.
Both exclude engine start-up: raw times its chat call after a warm-up; the pipeline is timed from
the moment its engine reports ready to the newest row's created_at (the rows are then written and
committed; that tail is reported as well, and `wall_s` is the whole run, start-up and commit
included). GPU memory is sampled with nvidia-smi every 0.5 s, and `nvidia-smi dmon` runs beside
each side: `sm_under_90_share` is the share of its seconds (engine ready to last answer) with the
GPU's SM busy under 90 %.

From the run's own record (_SUCCESS `feeding`, pipeline/job/feeding.py): seconds from engine ready to
the first request in the engine (taken in the engine loop), CPU-stage tasks and how many ran at
once, documents per task. `compare` exits 3 when the pipeline is under --min-ratio (0.9) of raw,
so a regression cannot be recorded as a result. The pipeline's log, its dmon samples and Ray
Data's logs are kept beside --out.

With a model folder from `docintel demo-model --full` (real Mistral Small 3.2 shapes, random
weights, load_format=dummy) speeds are the real model's and answers are noise. Retries of invalid
answers are off (task.retry_max_tokens = task.max_tokens) so both sides do one pass.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # docgen: generated documents
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from pipeline.core.config import JobSpec, load_spec, parse_override  # noqa: E402

QUESTIONS = ["What is the total?", "What is the date?", "What is the title of this document?",
             "How many line items are there?", "What is the amount for toner?", "Who is the seller?"]


class Dmon:
    """`nvidia-smi dmon -s u -o T` beside a block: (epoch seconds, SM %) samples, kept in `log`."""

    def __init__(self, log: Path):
        self.log, self.samples, self.proc = log, [], None

    def __enter__(self):
        try:
            self.proc = subprocess.Popen(["nvidia-smi", "dmon", "-s", "u", "-d", "1", "-o", "DT"],
                                         stdout=open(self.log, "w"), stderr=subprocess.DEVNULL)
        except OSError:
            self.proc = None  # no GPU here (the CPU smoke run of this script)
        return self

    def __exit__(self, *exc):
        if self.proc is None:
            return
        self.proc.terminate()
        self.proc.wait(10)
        import datetime as dt

        for line in self.log.read_text().splitlines():
            parts = line.split()
            if len(parts) > 3 and not line.startswith("#") and parts[3].isdigit():
                at = dt.datetime.strptime(f"{parts[0]} {parts[1]}", "%Y%m%d %H:%M:%S").timestamp()
                self.samples.append((at, int(parts[3])))

    def under_share(self, start: float, end: float, threshold: int = 90) -> float | None:
        window = [sm for at, sm in self.samples if start <= at <= end]
        return round(sum(sm < threshold for sm in window) / len(window), 3) if window else None


class GpuMemory:
    """Peak GPU memory in use (MiB, summed over GPUs) while the block runs, from nvidia-smi."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.wait(0.5):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                self.peak = max(self.peak, sum(int(x) for x in out.split()))
            except (OSError, ValueError, subprocess.SubprocessError):
                return

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=15)


def bench_spec(args) -> JobSpec:
    overrides = [("engine.model", args.model), ("task.questions", QUESTIONS[: args.questions]),
                 ("task.max_tokens", args.max_tokens), ("task.retry_max_tokens", args.max_tokens),
                 ("task.question_mode", args.mode), ("render.max_side", int(args.sides.split(",")[0])),
                 ("render.dpi", 200), ("ray.progress_bars", False)]
    overrides += [parse_override(s) for s in args.set]
    return load_spec(None, overrides)


def make_docs(folder: Path, pages: int) -> Path:
    from docgen import make_pdf

    folder.mkdir(parents=True, exist_ok=True)
    for i in range((pages + 1) // 2):
        make_pdf(folder / f"doc{i:04d}.pdf", pages=2 if 2 * i + 2 <= pages else 1,
                 title=f"Invoice {1000 + i}", total=f"{i},234.50")
    return folder


def _pages(spec: JobSpec, docs: Path) -> list[dict]:
    """The page rows the pipeline's read and split stages make of the same PDFs."""
    from pipeline.ingest.pages import split_document
    from pipeline.ingest.sources import DocumentRef, read_document

    rows = []
    for path in sorted(docs.glob("*.pdf")):
        doc = read_document(DocumentRef(str(path)).to_row(), spec.input.max_file_bytes)
        rows += split_document(doc, spec.render)
    return rows


def run_raw(spec: JobSpec, docs: Path, sides: list[int], dmon_log: Path) -> list[dict]:
    """One engine; for each longest side: render every page, then one timed LLM.chat over all."""
    from vllm import LLM

    from pipeline.ingest import request
    from pipeline.tasks import prompts
    from pipeline.engine.actor import engine_args, engine_env, sampling_params
    from pipeline.tasks import get_task

    task = get_task(spec.task.name, spec.task)
    system_prompt = prompts.load_system_prompt(spec.engine.system_prompt, spec.engine.model)
    results = []
    if spec.engine.device == "cpu":  # smoke runs of this script on a machine without a GPU
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.engine.cpu_kvcache_gib))
    os.environ.update(engine_env(spec.engine))  # the engine process(es) as the pipeline's actor has them
    with GpuMemory() as memory, Dmon(dmon_log) as dmon:
        t0 = time.monotonic()
        llm = LLM(**engine_args(spec.engine, "cpu" if spec.engine.device == "cpu" else "cuda"))
        start_s = time.monotonic() - t0
        for side in sides:
            spec.render.max_side = side
            t0 = time.monotonic()
            pages = _pages(spec, docs)
            render_s = time.monotonic() - t0
            rows = [request.request_row(p, task, spec.task, system_prompt, spec.engine.max_model_len) for p in pages]
            assert all(r["prompts"] for r in rows), [r["error"] for r in rows if not r["prompts"]][:3]
            requests = [(r, p) for r in rows for p in r["prompts"]]
            messages = [prompts.build_messages(r["image_url"], p["instruction"], system_prompt) for r, p in requests]
            params = [sampling_params(spec.engine, json.loads(p["schema_json"]), p["max_tokens"]) for _, p in requests]
            llm.chat(messages[:4], params[:4], use_tqdm=False)  # warm-up: grammars, first shapes
            t0, began = time.monotonic(), time.time()
            outputs = llm.chat(messages, params, use_tqdm=False)
            seconds, ended = time.monotonic() - t0, time.time()
            prompt = sum(len(o.prompt_token_ids) for o in outputs)
            output = sum(len(o.outputs[0].token_ids) for o in outputs)
            results.append(dict(stage="raw", side=side, width=pages[0]["width"], height=pages[0]["height"],
                                pages=len(pages), requests=len(requests), seconds=round(seconds, 2),
                                pages_per_s=round(len(pages) / seconds, 3),
                                prompt_tokens_per_page=round(prompt / len(pages)),
                                output_tokens_per_page=round(output / len(pages), 1),
                                finished_by_length=sum(o.outputs[0].finish_reason == "length" for o in outputs),
                                engine_start_s=round(start_s, 1), render_s_one_core=round(render_s, 2),
                                window=(began, ended)))
            print(json.dumps(results[-1]), flush=True)
    for r in results:
        r["gpu_mem_peak_mib"] = memory.peak
        r["sm_under_90_share"] = dmon.under_share(*r.pop("window"))
    return results


READY = re.compile(r"engine ready in ([\d.]+)s \(actor pid \d+, engine core \[[\d, ]*\], at ([\d.]+)\)")


def run_pipeline(spec: JobSpec, docs: Path, out: Path, keep: Path) -> dict:
    """`docintel run` in its own process; timed from its (first) engine ready to its newest row.
    Its log, dmon samples and Ray Data's logs go to files named after `keep` (the result's path)."""
    import shutil

    import pyarrow.compute as pc

    from pipeline.store import output

    spec_file = out.parent / f"{out.name}.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.time()
    ready: list[tuple[float, float]] = []
    log = keep.with_suffix(".pipeline.log")
    with GpuMemory() as memory, Dmon(keep.with_suffix(".pipeline.dmon.txt")) as dmon, open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(spec_file), "--input", str(docs),
                                 "--output", str(out), "--run-id", "bench"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sink.write(line)
            match = READY.search(line)
            if match:
                ready.append((float(match.group(1)), float(match.group(2))))
        code = proc.wait()
    ended = time.time()
    if code != 0 or not ready:
        raise SystemExit(f"pipeline run failed (exit {code}); see {log}")
    marker = output.marker(str(out), "bench")
    if marker.get("log_file"):  # Ray Data's own logs: each operator's tasks as the run went
        shutil.copytree(Path(marker["log_file"]) / "ray-data", keep.with_suffix(".ray-data"), dirs_exist_ok=True)
    feeding = marker.get("feeding", {})
    rows = output.read_pages(str(out), "bench")
    last_row = pc.max(rows["created_at"]).as_py().timestamp()
    # With several replicas, timed from the first one ready (conservative: the others were still starting).
    engine_ready = min(at for _, at in ready)
    pages = {(r["doc_id"], r["page_index"]) for r in rows.select(["doc_id", "page_index"]).to_pylist()}
    per_request = {(r["doc_id"], r["page_index"], r["request_questions"] == 1 and r["question"]): r
                   for r in rows.select(["doc_id", "page_index", "question", "request_questions",
                                         "prompt_tokens", "output_tokens"]).to_pylist()}
    seconds = last_row - engine_ready
    stage = feeding.get("cpu_stage", {})
    return dict(stage="pipeline", side=spec.render.max_side, pages=len(pages), rows=rows.num_rows,
                valid=int(pc.sum(rows["valid"]).as_py()), seconds=round(seconds, 2),
                pages_per_s=round(len(pages) / seconds, 3),
                prompt_tokens_per_page=round(sum(r["prompt_tokens"] or 0 for r in per_request.values()) / len(pages)),
                output_tokens_per_page=round(sum(r["output_tokens"] or 0 for r in per_request.values()) / len(pages), 1),
                engines=len(ready), engine_start_s=[s for s, _ in ready],
                first_request_after_ready_s=feeding.get("first_request_after_ready_s"),
                documents_per_task=feeding.get("documents_per_task"), cpu_stage_tasks=stage.get("tasks"),
                cpu_stage_most_at_once=stage.get("most_at_once"),
                write_and_commit_s=round(ended - last_row, 1), wall_s=round(ended - started, 1),
                render_s_per_page=round(pc.mean(rows["render_s"]).as_py(), 4), gpu_mem_peak_mib=memory.peak,
                sm_under_90_share=dmon.under_share(engine_ready, last_row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["compare", "raw", "pipeline", "_raw"])
    ap.add_argument("--model", default="/tmp/full")
    ap.add_argument("--pages", type=int, default=160)
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32, help="per question")
    ap.add_argument("--mode", default="together", choices=["together", "each"])
    ap.add_argument("--sides", default="1024", help="longest side(s) in px; raw runs each on one engine")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="job spec override")
    ap.add_argument("--work", default="/tmp/bench_gpu")
    ap.add_argument("--out", default="bench_gpu.json")
    ap.add_argument("--min-ratio", type=float, default=0.9,
                    help="compare: exit 3 when the pipeline makes fewer pages/s than this times raw")
    args = ap.parse_args()

    spec = bench_spec(args)
    work = Path(args.work)
    docs = work / f"docs{args.pages}"
    if not docs.is_dir():  # the same documents for every run of this size
        make_docs(docs, args.pages)
    sides = [int(s) for s in args.sides.split(",")]
    label = " ".join(args.set) or "defaults"
    if args.what == "_raw":  # the raw stage in its own process, so its GPU memory is freed after
        Path(args.out).write_text(json.dumps(run_raw(spec, docs, sides, Path(args.out).with_suffix(".dmon.txt"))))
        return
    results = []
    if args.what in ("compare", "raw"):
        raw_json = Path(args.out).with_suffix(".raw.json")
        cmd = [sys.executable, __file__, "_raw", "--model", args.model, "--pages", str(args.pages),
               "--questions", str(args.questions), "--max-tokens", str(args.max_tokens), "--mode", args.mode,
               "--sides", args.sides, "--work", args.work, "--out", str(raw_json)]
        cmd += [a for s in args.set for a in ("--set", s)]
        subprocess.run(cmd, check=True)
        results += json.loads(raw_json.read_text())
    if args.what in ("compare", "pipeline"):
        results.append(run_pipeline(spec, docs, work / f"out-{int(time.time())}", Path(args.out)))
        print(json.dumps(results[-1]), flush=True)
    summary = {"settings": label, "spec": {k: spec.model_dump(mode="json")[k] for k in ("engine", "task", "render")},
               "results": results}
    raw = [r for r in results if r["stage"] == "raw" and r["side"] == spec.render.max_side]
    pipe = [r for r in results if r["stage"] == "pipeline"]
    if raw and pipe:
        summary["pipeline_over_raw"] = round(pipe[0]["pages_per_s"] / raw[0]["pages_per_s"], 3)
        print(json.dumps({"settings": label, "pipeline_over_raw": summary["pipeline_over_raw"],
                          "first_request_after_ready_s": pipe[0]["first_request_after_ready_s"],
                          "cpu_stage_most_at_once": pipe[0]["cpu_stage_most_at_once"]}), flush=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))
    if raw and pipe and summary["pipeline_over_raw"] < args.min_ratio:
        print(f"the pipeline made {summary['pipeline_over_raw']}x raw's pages/s, under --min-ratio {args.min_ratio}",
              file=sys.stderr)
        raise SystemExit(3)


if __name__ == "__main__":
    main()

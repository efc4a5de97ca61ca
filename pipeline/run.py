"""The batch job: the stages chained into one Ray Data graph, data moving one way.

    discover (driver) -> read_document -> split_guarded (pages) -> EngineActor -> parse_answer
                      -> finalize (fixed Arrow schema) -> write_parquet
    commit (driver): roll-up, lost-work rows, manifest -> _SUCCESS

Each adapter below only unpacks a Ray row and calls the pure function of its stage module.
The same graph runs on a laptop's local Ray and, unchanged, on a cluster (`ray job submit`,
KubeRay): Ray places the engine actors on GPU nodes and the rest wherever CPUs are free.
"""
from __future__ import annotations

import datetime as _dt
import functools
import importlib.util
import logging
import os
import shutil
import subprocess
import time
from typing import Any

from pipeline import answers, commit, output, render_guard, sources
from pipeline.config import JobSpec, RenderSpec, TaskSpec
from pipeline.demo_model import demo_info
from pipeline.engine import EngineActor, model_label
from pipeline.summary import RunSummary, summarize
from pipeline.tasks import get_task

log = logging.getLogger(__name__)


class UsageError(RuntimeError):
    """A problem with the job or the machine, found before any work starts."""


# ---- thin Ray adapters -------------------------------------------------------------------

def _read(row: dict[str, Any], max_bytes: int, done: dict[str, str]) -> dict[str, Any]:
    row = sources.read_document(row, max_bytes)
    if row["doc_id"] in done and not row["error_kind"]:  # --incremental: same content, already answered
        row.update(data=None, error_kind=commit.SKIPPED,
                   error=f"same content as in committed run {done[row['doc_id']]}: its rows are there")
    return row


def _split(row: dict[str, Any], render: dict[str, Any], password: str | None) -> list[dict[str, Any]]:
    return render_guard.split_guarded(row, RenderSpec.model_validate(render), password)


@functools.lru_cache(maxsize=8)
def _task(task_json: str):
    """The Task of a job, built once per worker process (fields loads and checks a schema)."""
    spec = TaskSpec.model_validate_json(task_json)
    return get_task(spec.name, spec)


def _parse(row: dict[str, Any], task_json: str) -> dict[str, Any]:
    return answers.parse_answer(row, _task(task_json))


def _finalize(batch, model_id: str):
    now = _dt.datetime.now(_dt.timezone.utc)
    rows = [output.finalize_row(r, model_id, now) for r in batch.to_pylist()]
    return output.to_table(rows)


# ---- device checks -----------------------------------------------------------------------

def _local_gpu_count() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listed.splitlines() if line.startswith("GPU "))


def demo_hint(spec: JobSpec) -> str:
    return (
        "To try the pipeline without a GPU, use the tiny random-weight demo model (same architecture, "
        "MEANINGLESS answers):\n"
        "    docintel demo-model ./demo-model\n"
        f"    docintel run JOB.yaml --input {' '.join(spec.input.paths) or 'DOCS'} "
        f"--output {spec.output.path} --model ./demo-model"
    )


def resolve_device(spec: JobSpec, cluster_gpus: float | None = None) -> str:
    """'cuda' or 'cpu' for the engine actors, or UsageError saying what is missing.

    cluster_gpus: GPUs Ray reports when connecting to an existing cluster; None = this machine.
    """
    engine = spec.engine
    if engine.device == "cpu":
        return "cpu"
    demo = demo_info(engine.model) is not None
    gpus = cluster_gpus if cluster_gpus is not None else _local_gpu_count()
    need = engine.tensor_parallel_size
    if gpus >= need:
        return "cuda"
    if engine.device == "auto" and demo:
        return "cpu"
    where = "the Ray cluster" if cluster_gpus is not None else "this machine"
    raise UsageError(
        f"No GPU: {where} has {gpus:g} GPU(s) and engine.tensor_parallel_size={need} needs {need}. "
        f"{engine.model} needs about 55 GB of GPU memory in bf16 (one 80 GB H100/A100, or two GPUs "
        f"with --set engine.tensor_parallel_size=2).\n" + demo_hint(spec)
    )


def _check_engine_installed() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise UsageError("vLLM is not installed: pip install -e '.[gpu]' on a GPU machine, or "
                         "bash scripts/install_cpu.sh for the CPU build (tests, demo model)")


# ---- the job -----------------------------------------------------------------------------

def _init_ray(spec: JobSpec) -> None:
    import ray

    if ray.is_initialized():
        return
    # Settings only: secrets (AWS keys, HF_TOKEN) never travel in a runtime_env, which the Ray
    # dashboard shows; workers take credentials from their own environment.
    forwarded = ("VLLM_", "TEKKEN_SRC", "OMP_", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "HF_HOME")
    env_vars = {k: v for k, v in os.environ.items() if k.startswith(forwarded)}
    ray.init(address=spec.ray.address, include_dashboard=False, log_to_driver=True,
             runtime_env={"env_vars": env_vars} if env_vars else None)


def _engine_retry_args(retries: int):
    # The actor itself always comes back (a pool without actors would stall the job); what is
    # bounded is how often one batch is retried. A batch that still fails is dropped by Ray Data
    # (ray.max_errored_blocks) and accounted for with not_processed rows by the commit stage.
    def args() -> dict[str, Any]:
        return {"max_restarts": -1, "max_task_retries": retries}
    return args


def build_dataset(spec: JobSpec, refs: list[sources.DocumentRef], device: str, done: dict[str, str]):
    import ray

    engine = spec.engine
    ds = ray.data.from_items([r.to_row() for r in refs], override_num_blocks=max(1, min(len(refs), 512)))
    ds = ds.map(_read, fn_kwargs={"max_bytes": spec.input.max_file_bytes, "done": done})
    ds = ds.flat_map(_split, fn_kwargs={"render": spec.render.model_dump(), "password": spec.input.pdf_password})
    ds = ds.map_batches(
        EngineActor,
        fn_constructor_kwargs={"engine_spec": engine.model_dump(), "task_spec": spec.task.model_dump(),
                               "device": device},
        batch_size=engine.batch_size,
        batch_format="pyarrow",
        # Several batches in one actor at once, in threads: its EngineLoop interleaves them.
        compute=ray.data.ActorPoolStrategy(size=engine.concurrency,
                                           max_concurrent_calls_per_actor=engine.max_concurrent_batches,
                                           enable_true_multi_threading=True),
        num_gpus=engine.tensor_parallel_size if device == "cuda" else 0,
        num_cpus=1,
        # An actor that dies (OOM, killed) is restarted and its batch retried, a bounded number of
        # times; a batch that still fails is accounted for by pipeline/accounting.py.
        ray_remote_args_fn=_engine_retry_args(spec.ray.engine_retries),
    )
    ds = ds.map(_parse, fn_kwargs={"task_json": spec.task.model_dump_json()})
    ds = ds.map_batches(_finalize, batch_format="pyarrow",
                        fn_kwargs={"model_id": model_label(engine)})
    return ds


def _plan_resume(spec: JobSpec, refs: list[sources.DocumentRef], target: str):
    """(files already written, sources to process again) for --resume; ([], set()) otherwise."""
    if not spec.output.resume:
        return [], set()
    if output.read_marker(target) is not None:
        raise UsageError(f"run {spec.output.run_id} is already committed: nothing to resume")
    old_files = commit.data_files(target)
    cols = ["source_uri", "doc_id", "page_index", "page_count", "error_kind"]
    rows = commit.read_rows(target, old_files, columns=cols).to_pylist()
    old_files = commit.data_files(target)  # unreadable leftovers were just removed
    done = commit.complete_sources(refs, rows, spec.render.max_pages)
    log.info("resume %s: %d of %d documents already written", spec.output.run_id, len(done), len(refs))
    return old_files, {r.source_uri for r in refs} - done


def run_job(spec: JobSpec) -> RunSummary:
    import ray

    started = time.monotonic()
    task = get_task(spec.task.name, spec.task)  # unknown task, bad user schema: fail before anything starts
    spec.storage.apply_env()
    refs = sources.discover(spec.input)
    if not refs:
        raise UsageError(f"no input documents found in {spec.input.paths or spec.input.manifest}")
    on_cluster = bool(spec.ray.address or os.environ.get("RAY_ADDRESS"))
    device = "none"
    if not on_cluster:
        device = resolve_device(spec)  # fail fast, before Ray starts
        _check_engine_installed()
    target = output.run_dir(spec.output.path, spec.output.run_id)
    old_files, redo = _plan_resume(spec, refs, target)
    todo = [r for r in refs if r.source_uri in redo] if spec.output.resume else refs
    done = commit.processed_ids(spec.output.path) if spec.output.incremental else {}
    owns_ray = not ray.is_initialized()
    if todo:
        _init_ray(spec)
    try:
        if todo and on_cluster:
            device = resolve_device(spec, cluster_gpus=ray.cluster_resources().get("GPU", 0))
        if todo:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = spec.ray.progress_bars
            ctx.max_errored_blocks = spec.ray.max_errored_blocks
            log.info("run %s: %d documents -> %s (engine on %s)", spec.output.run_id, len(todo), target, device)
            build_dataset(spec, todo, device, done).write_parquet(
                target, min_rows_per_file=1, max_rows_per_file=spec.output.rows_per_file)
    finally:
        if owns_ray and ray.is_initialized():  # stops the engine actors now, so their logs come before the summary
            ray.shutdown()
    rows = commit.finish_run(target, refs, task, model_label(spec.engine), spec.render.max_pages,
                             old_files, redo)
    summary = summarize(spec, target, len(refs), time.monotonic() - started, device, rows)
    commit.commit(target, summary.as_dict())
    return summary

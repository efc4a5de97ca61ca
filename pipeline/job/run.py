"""The batch job: the stages chained into one Ray Data graph, data moving one way.

    discover (driver) ─► read ─► split (pages) ─► requests ─► EngineActor ─► answers + write
    ingest/sources    sources  pages, render_guard  request   engine/actor  answers/, store/writer
    commit (driver, work in Ray): lost work, document table, manifest ─► move into place ─► _SUCCESS

How the listing is cut into tasks, so that every CPU renders and pages reach the engine as they
are rendered: feeding.py.

Each adapter below only unpacks a Ray batch, calls the pure function of its stage module and packs
the result with its declared shape (pipeline/core/rows.py). Config crosses into Ray one way: as the
validated spec sections themselves (pydantic objects Ray pickles), never as dicts re-validated
per row. The same graph runs on a laptop's local Ray and, unchanged, on a cluster.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time
from typing import Any, Iterator

import pyarrow as pa

from pipeline.answers import answers
from pipeline.answers.calibration import Review
from pipeline.commit import commit, resume
from pipeline.core import compat, envs
from pipeline.ingest import render_guard, request, sources
from pipeline.job import feeding, preflight, telemetry
from pipeline.store import fileio, layout, retrying, storage, writer
from pipeline.tasks import prompts
from pipeline.core.config import AnswersSpec, EngineSpec, JobSpec, RenderSpec, TaskSpec
from pipeline.engine.model import model_label
from pipeline.engine.actor import EngineActor
from pipeline.engine.health import JobHealth, actor_name
from pipeline.commit.identity import document_key, fingerprint
from pipeline.commit.manifest import DoneIndex, done_documents
from pipeline.job.preflight import UsageError
from pipeline.core.rows import DOCUMENT, LISTED, PAGE, REQUEST, ErrorKind as E
from pipeline.job.summary import RunSummary
from pipeline.tasks import Task, get_task

log = logging.getLogger(__name__)

__all__ = ["run_job", "UsageError", "EngineFailed", "StorageFailed"]


class EngineFailed(RuntimeError):
    """The engine could not start, or kept failing without progress: not committed (exit code 4)."""


class StorageFailed(RuntimeError):
    """Answered pages could not be written after retries: not committed (exit code 5)."""


# ---- thin Ray adapters -------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _done_index(ref) -> DoneIndex:
    import ray

    return DoneIndex(ray.get(ref))  # once per worker process, from the object store


_TASKS: dict[str, Task] = {}


def _task(spec: TaskSpec) -> Task:
    """The job's Task, built once per worker process (fields loads and checks a schema)."""
    key = spec.model_dump_json()
    if key not in _TASKS:
        _TASKS[key] = get_task(spec.name, spec)
    return _TASKS[key]


def _read(batch: pa.Table, max_bytes: int, done_ref, print_: dict, max_pages: int) -> pa.Table:
    out = []
    for row in batch.to_pylist():
        doc = sources.read_document(row, max_bytes)
        if done_ref is not None and not doc.get("error_kind"):  # --incremental
            run = _done_index(done_ref).done_in(doc["doc_id"], document_key(print_, doc.get("questions")), max_pages)
            if run is not None:
                doc.update(data=None, error_kind=str(E.SKIPPED_UNCHANGED),
                           error=f"same content, same job as in committed run {run}: its rows are there")
        out.append(doc)
    return DOCUMENT.table(out)


SPLIT_PAGES_PER_TABLE = 32  # pages a split task holds before handing them to Ray (bench/bench_bigpdf.py)


def _split(batch: pa.Table, render: RenderSpec, password: str | None) -> Iterator[pa.Table]:
    # A generator: Ray Data stores each table as it comes, so a long PDF streams through in
    # bounded pieces instead of one table of all its page images.
    pages: list[dict] = []
    for doc in batch.to_pylist():
        for page in render_guard.iter_guarded(doc, render, password):
            page["rendered_at"] = time.time()
            pages.append(page)
            if len(pages) == SPLIT_PAGES_PER_TABLE:
                yield PAGE.table(pages)
                pages = []
    if pages:
        yield PAGE.table(pages)


def _requests(batch: pa.Table, task_spec: TaskSpec, system_prompt: str | None, max_model_len: int) -> pa.Table:
    task = _task(task_spec)
    return REQUEST.table([request.request_row(p, task, task_spec, system_prompt, max_model_len)
                          for p in batch.to_pylist()])


def _answer_and_write(batch: pa.Table, task_spec: TaskSpec, answers_spec: AnswersSpec, run_id: str, model_id: str,
                      directory: str) -> pa.Table:
    task, now = _task(task_spec), layout.now_utc()
    review = Review.of(answers_spec, task.name)
    rows = [r for page in batch.to_pylist() for r in answers.answer_rows(page, task, run_id, model_id, now, review)]
    receipt = writer.write_rows(rows, directory)
    rendered = [t for t in batch.column("rendered_at").to_pylist() if t is not None]
    receipt["last_rendered_at"] = max(rendered, default=None)
    telemetry.record_receipt(receipt, run_id)
    return writer.RECEIPT.table([receipt])


# ---- the job -----------------------------------------------------------------------------

QUIET_LOGGERS = ("ray._private.authentication.authentication_token_setup", "ray.data._internal.progress")


FOOTER_ACTORS = "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"
_USERS_FOOTER_ACTORS = envs.get(FOOTER_ACTORS)  # as the user set it, before a job of this process sets it


def footer_actors(spec: JobSpec) -> str:
    """Ray Data's Parquet footer readers per read_parquet: the user's own variable wins over
    ray.parquet_footer_actors."""
    return _USERS_FOOTER_ACTORS or str(spec.ray.parquet_footer_actors)


def init_ray(spec: JobSpec) -> None:
    """Join or start Ray for this job (a caller that started it already, like the demo, keeps it)."""
    import ray

    if ray.is_initialized():
        return
    # Settings only: nothing secret-looking (VLLM_API_KEY, AWS keys, HF_TOKEN) travels in a runtime_env,
    # which the Ray dashboard shows; workers take credentials from their own environment (core/envs.py).
    env_vars = envs.forwarded(os.environ)
    env_vars[FOOTER_ACTORS] = footer_actors(spec)  # and in this process: see _run_job
    # Quiet by default: the workers' output (vLLM's INFO lines among it) stays in the Ray session's
    # log files, which the summary names; --verbose forwards it to this terminal. Two notices of Ray's
    # are left out too, as nothing in them is for the user to act on: that the local Ray it starts
    # guards itself with a token (Ray's default, kept), and that Ray Data's progress bars are off (on
    # purpose: docintel prints its own progress line; ray.progress_bars turns them on).
    if not spec.ray.verbose:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    for attempt in (1, 2):
        try:
            ray.init(address=spec.ray.address, include_dashboard=False, log_to_driver=spec.ray.verbose,
                     logging_level=logging.INFO if spec.ray.verbose else logging.WARNING,
                     runtime_env={**spec.ray.runtime_env,
                                  "env_vars": {**env_vars, **spec.ray.runtime_env.get("env_vars", {})}})
            break
        except Exception as exc:  # noqa: BLE001 - only Ray's own start-up timeout is tried again
            # A new local Ray gives its raylet 30 s (fixed in Ray) to register; a busy machine can miss it.
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
            log.warning("Ray did not start in time (%s); trying once more", exc)
            ray.shutdown()
    if not spec.ray.verbose:
        import ray.data  # noqa: F401 - configures its logger: a file in the session's logs and the console

        logging.getLogger("ray").setLevel(logging.WARNING)
        for handler in logging.getLogger("ray.data").handlers:  # the file keeps everything
            if "File" not in type(handler).__name__:
                handler.setLevel(logging.WARNING)


def _stat(ref: sources.DocumentRef) -> dict[str, Any]:
    """Size and modification time as listed: what --resume compares to see the inputs are the same."""
    if "size" in ref.extra or ref.error_kind or sources.is_uri(ref.source_uri):
        return {"size_bytes": ref.extra.get("size"), "mtime_ns": ref.extra.get("mtime_ns")}
    try:
        st = os.stat(ref.source_uri)
    except OSError:
        return {}
    return {"size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def listed_table(refs: list[sources.DocumentRef]) -> pa.Table:
    return LISTED.table([r.to_row(**_stat(r)) for r in refs])


def build_dataset(spec: JobSpec, todo, device: str, paths: layout.RunPaths, system_prompt: str | None,
                  health: str, done_ref, print_: dict, per_task: int):
    """The job's Ray dataset over `todo` (LISTED or resume PLAN rows), `per_task` documents to a CPU
    task (feeding.py says why the blocks are cut as they are)."""
    import ray

    engine: EngineSpec = spec.engine
    asked = max(1, len(spec.task.questions))
    per_request = (spec.task.questions_per_request or asked) if spec.task.question_mode == "together" else 1
    batch_size, in_flight = engine.actor_queue(-(-asked // per_request), device)
    ds = todo.repartition(target_num_rows_per_block=per_task)
    ds = ds.map_batches(_read, batch_size=1, batch_format="pyarrow",
                        fn_kwargs={"max_bytes": spec.input.max_file_bytes, "done_ref": done_ref,
                                   "print_": print_, "max_pages": spec.render.max_pages})
    ds = ds.map_batches(_split, batch_size=1, batch_format="pyarrow",
                        fn_kwargs={"render": spec.render, "password": spec.input.pdf_password})
    ds = ds.map_batches(_requests, batch_format="pyarrow", batch_size=None,
                        fn_kwargs={"task_spec": spec.task, "system_prompt": system_prompt,
                                   "max_model_len": engine.max_model_len})
    ds = ds.repartition(target_num_rows_per_block=batch_size)  # fused into the task: one engine batch a block
    ds = ds.map_batches(
        EngineActor,
        fn_constructor_kwargs={"engine_spec": engine, "device": device, "system_prompt": system_prompt,
                               "health_actor": health,
                               "depth_gauge": functools.partial(telemetry.queue_depth, run_id=paths.run_id)},
        batch_size=batch_size,
        batch_format="pyarrow",
        # Several batches in one actor at once, in threads: its EngineLoop interleaves them.
        compute=ray.data.ActorPoolStrategy(size=engine.concurrency, max_concurrent_calls_per_actor=in_flight,
                                           enable_true_multi_threading=True),
        num_gpus=engine.tensor_parallel_size if device == "cuda" else 0,
        # On a CPU the engine's work is done in its engine-core process; the actor only feeds it. The
        # differing CPU share also keeps Ray Data from fusing the read/render/request tasks into the
        # actor (it fuses a task stage into an actor stage of equal resources): the actor runs the
        # engine and nothing else, on a GPU node as on a laptop.
        num_cpus=1 if device == "cuda" else 0.5,
        # An actor that dies is restarted and its batches are retried without limit: that is Ray
        # Data's default for actor pools (max_restarts=-1, max_task_retries=-1; tests/test_house.py
        # checks it), so nothing is set here. What is bounded (start-up, restarts without progress,
        # a page that kills the engine) is engine_health.py's.
    )
    return ds.map_batches(_answer_and_write, batch_format="pyarrow", batch_size=spec.output.pages_per_file,
                          num_cpus=0.25,
                          fn_kwargs={"task_spec": spec.task, "answers_spec": spec.answers, "run_id": paths.run_id,
                                     "model_id": model_label(engine), "directory": paths.staging("pages")})


def _consume(ds, health, poll_s: float, progress: telemetry.Progress) -> tuple[dict[str, Any], str | None]:
    """Drive the job, adding up its receipts; (totals, why it had to stop or None). The health
    ledger is read every poll_s seconds, also while no batch comes back (an engine in a crash loop),
    and what it saw (engines ready, failed, a page set aside) is printed as it happens."""
    import ray

    totals: dict[str, Any] = {}
    failure: list[BaseException] = []
    finished = threading.Event()

    def consume() -> None:
        try:
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                writer.add_receipts(totals, batch)
                progress.update(totals)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the driver's thread
            failure.append(exc)
        finally:
            finished.set()

    threading.Thread(target=consume, name="docintel-consume", daemon=True).start()
    seen = 0
    while not finished.wait(poll_s):
        verdict, events = ray.get([health.call.remote("verdict"), health.call.remote("events_since", seen)])
        for event in events:
            progress.note(f"docintel: {event}")
        seen += len(events)
        if verdict:
            return totals, verdict
    for event in ray.get(health.call.remote("events_since", seen)):
        progress.note(f"docintel: {event}")
    progress.update(totals, force=True)
    progress.close()
    if failure:
        raise failure[0]
    return totals, None  # finished: every page came back, whatever the ledger says now


def _check_record(spec: JobSpec, paths: layout.RunPaths, print_: dict, listed: pa.Table) -> None:
    """A resume of the same job, or a new run id: refused before Ray starts (an answer in a second)."""
    if spec.output.resume:
        try:
            resume.check(paths, print_, listed)
        except resume.ResumeRefused as exc:
            raise UsageError(str(exc)) from None
    elif fileio.read_json(paths.job) is not None:
        raise UsageError(f"run {paths.run_id} already exists under {paths.output}: finish it with --resume "
                         f"{paths.run_id}, or choose another --run-id")


def _start_record(spec: JobSpec, paths: layout.RunPaths, print_: dict, listed: pa.Table) -> None:
    if spec.output.resume:
        return
    fileio.write_table(paths.inputs, listed)
    fileio.write_json(paths.job, {"run_id": paths.run_id, "spec": spec.redacted(), "fingerprint": print_,
                                  "started_at": layout.now_utc().isoformat()})


def run_job(spec: JobSpec) -> RunSummary:
    """Run the job; UsageError (nothing was done), EngineFailed or StorageFailed (not committed: a
    `--resume` finishes it) say why it stopped."""
    recorded: list[bool] = []  # the run's record is written: a resume can finish it
    try:
        return _run_job(spec, recorded)
    except (UsageError, EngineFailed, StorageFailed):
        raise
    except Exception as exc:
        failure = storage.storage_failure(exc)
        if failure is None:
            raise
        then = (f"`--resume {spec.output.run_id}` finishes it" if recorded else
                "nothing was started: run it again")
        raise StorageFailed(f"storage failed: {failure}. The run is not committed; nothing was deleted; "
                            f"{then}") from exc


def _run_job(spec: JobSpec, recorded: list[bool]) -> RunSummary:
    import ray

    started = time.monotonic()
    try:
        task = get_task(spec.task.name, spec.task)  # unknown task, bad user schema: fail before anything starts
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    spec.storage.apply_env()
    refs = sources.discover(spec.input)
    if not refs:
        raise UsageError(f"no input documents found in {spec.input.paths or spec.input.manifest}")
    address = spec.ray.address or envs.get("RAY_ADDRESS")
    on_cluster = bool(address) and address != "local"  # "local": Ray's own word for a new local instance
    device = preflight.before_ray(spec, on_cluster)  # fail fast, before Ray starts
    paths = layout.RunPaths(spec.output.path, spec.output.run_id)
    print_ = fingerprint(spec, task)
    system_prompt = prompts.load_system_prompt(spec.engine.system_prompt, spec.engine.model)
    listed = listed_table(refs)
    del refs  # the driver keeps nothing per document from here on
    _check_record(spec, paths, print_, listed)
    owns_ray = not ray.is_initialized()
    init_ray(spec)
    try:
        device = preflight.after_ray(spec, device)  # the cluster's checks: before anything is written
        _start_record(spec, paths, print_, listed)
        recorded.append(True)
        del listed
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = spec.ray.progress_bars
        ctx.max_errored_blocks = spec.ray.max_errored_blocks
        ctx.shuffle_strategy = spec.ray.shuffle_strategy
        # Ray 2.60 builds a read's footer indexer here, in the driver (ray.data.read_parquet), from this
        # process's environment: set in the workers' runtime env alone, every read of the job and its
        # commit still started 32 actors (three reads, 96 worker processes, for a run of 6 pages).
        os.environ[FOOTER_ACTORS] = footer_actors(spec)
        retrying.one_policy(ctx)
        # An engine actor that dies while starting is replaced, without a limit of Ray Data's own: the
        # health ledger bounds start-up (ray.engine_start_attempts) and ends the job with a clear error.
        ctx.max_consecutive_actor_init_deaths = -1
        documents = fileio.read_parquet(paths.inputs, ["source_uri"]).num_rows
        if spec.output.resume:
            files = resume.written_files(paths)
            resume.drop_derived(paths)
            todo = resume.todo(paths, files, documents, spec.render.max_pages)
        else:
            fs, inner = fileio.ray_fs(paths.inputs)
            todo = ray.data.read_parquet(inner, filesystem=fs, schema=LISTED.schema)
        done_ref = ray.put(done_documents(spec.output.path)) if spec.output.incremental else None
        health = ray.remote(JobHealth).options(name=actor_name(paths.run_id), num_cpus=0).remote(
            spec.ray.engine_start_attempts, spec.ray.max_restarts_without_progress, spec.engine.concurrency)
        log.info("run %s: %d documents -> %s (engine on %s)", paths.run_id, documents, paths.output, device)
        per_task = feeding.documents_per_task(documents, ray.cluster_resources().get("CPU", 1))
        ds = build_dataset(spec, todo, device, paths, system_prompt, actor_name(paths.run_id), done_ref, print_,
                           per_task)
        totals, verdict = _consume(ds, health, spec.ray.health_poll_s, telemetry.Progress(paths.run_id, documents))
        if verdict:
            raise EngineFailed(f"{verdict}. The run is not committed; what was answered is kept: "
                               f"`--resume {paths.run_id}` finishes it")
        if totals.get("write_errors"):
            raise StorageFailed(f"{len(totals['write_errors'])} file(s) of answered pages could not be written "
                                f"(first: {totals['write_errors'][0]}). The run is not committed: "
                                f"`--resume {paths.run_id}` redoes those pages")
        extra = {"run_id": paths.run_id, "output": paths.output, "task": task.name, "model": model_label(spec.engine),
                 "device": device, "documents_listed": documents, "log_file": compat.ray_log_folder(),
                 "feeding": feeding.report(per_task, compat.dataset_stats(ds), ray.get(health.call.remote("timeline")),
                                           totals.get("last_rendered_at"))}
        cctx = commit.CommitContext(paths, task, print_, model_label(spec.engine), spec.render.max_pages, documents)
        marker = commit.commit_run(cctx, extra, started)
    finally:
        if owns_ray and ray.is_initialized():
            ray.shutdown()
    return RunSummary.from_marker(marker)

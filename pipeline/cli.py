"""`docintel`: run, evaluate and submit jobs, try the product, and look at what runs wrote.

    docintel run jobs/docvqa.yaml --input ./docs --output ./out [--model PATH_OR_HUB_ID] [--set KEY=VALUE ...]
    docintel eval GOLD.json --task docvqa --output ./eval [--model ...]   # score a gold set, HTML report
    docintel submit jobs/docvqa.yaml --address http://HEAD:8265 --input s3://... --output s3://...
    docintel status|logs|stop JOB_ID --address http://HEAD:8265
    docintel demo [--output DIR]          # the whole product on the shipped samples, any machine
    docintel demo-model ./demo-model      # tiny random-weight model for CPU demos and tests
    docintel runs OUTPUT                  # every run under an output, committed or not
    docintel show OUTPUT RUN_ID           # one run's summary and failed documents
    docintel review OUTPUT [--run RUN_ID] [--needs-review] [--where SQL] [--limit N] --out review.html

Exit codes: see `Exit` below (and the README's reliability section).
"""
from __future__ import annotations

import argparse
import enum
import logging
import sys
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class Flag:
    """A `run` flag: what it sets in the spec, and how it is parsed. Declared once, used three times:
    to build the parser, to turn arguments into spec overrides, and to pass them on to `submit`."""

    name: str
    dotted: str | None  # spec field it sets (None: handled below)
    kwargs: dict[str, Any]


FLAGS = (
    Flag("input", "input.paths", dict(action="append", metavar="PATH", help="file, folder, glob or URI (repeatable)")),
    Flag("manifest", "input.manifest", dict(help="JSONL/YAML/CSV listing documents and their questions")),
    Flag("output", "output.path", dict(help="output folder or URI")),
    Flag("model", "engine.model", dict(help="hub id or local model folder")),
    Flag("task", "task.name", dict(help="task name (docvqa, chartqa, fields, classify)")),
    Flag("question", "task.questions", dict(action="append", metavar="TEXT", help="default question (repeatable)")),
    Flag("run-id", "output.run_id", dict(help="run id (default: time + random suffix)")),
    Flag("device", "engine.device", dict(choices=["auto", "cuda", "cpu"])),
    Flag("concurrency", "engine.concurrency", dict(type=int, help="engine replicas")),
    Flag("address", "ray.address", dict(help="Ray address (default: running cluster or a new local one)")),
    Flag("resume", None, dict(metavar="RUN_ID", help="finish an interrupted run: only its unwritten pages are done")),
    Flag("incremental", "output.incremental", dict(action="store_true", default=None,
                                                   help="skip documents a committed run in --output already "
                                                        "answered the same way (same content, task, questions, "
                                                        "model, prompts, rendering)")),
    Flag("verbose", "ray.verbose", dict(action="store_true", default=None,
                                        help="show vLLM's and Ray's logs in the terminal (default: in the log "
                                             "folder the summary names)")),
    Flag("set", None, dict(action="append", default=[], metavar="KEY=VALUE",
                           help="override any spec field by dotted path, e.g. engine.max_model_len=8192")),
)


def _add_spec_args(p: argparse.ArgumentParser, spec_positional: bool = True) -> None:
    if spec_positional:
        p.add_argument("spec", nargs="?", help="job spec YAML (default: built-in defaults)")
    else:
        p.add_argument("--spec", help="job spec YAML (default: built-in defaults)")
    for flag in FLAGS:
        p.add_argument(f"--{flag.name}", **flag.kwargs)


def _value(args: argparse.Namespace, flag: Flag) -> Any:
    return getattr(args, flag.name.replace("-", "_"), None)


def spec_overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    from pipeline.core.config import parse_override

    pairs: list[tuple[str, Any]] = [(f.dotted, _value(args, f)) for f in FLAGS
                                    if f.dotted and _value(args, f) is not None]
    if getattr(args, "resume", None):
        pairs += [("output.run_id", args.resume), ("output.resume", True)]
    pairs += [parse_override(s) for s in args.set]
    return pairs


def load_from_args(args: argparse.Namespace):
    from pipeline.core.config import load_spec
    from pipeline.engine.model import apply_folder_render

    spec = load_spec(args.spec, spec_overrides(args))
    apply_folder_render(spec)
    return spec


class Exit(enum.IntEnum):
    """The exit codes of every command (run, eval, demo, submit; runs, show and review use 0, 1, 2
    and 5), declared once; the README lists them."""

    OK = 0              # committed; every page and question has its row
    CRASHED = 1         # an unexpected error (its traceback is printed)
    USAGE = 2           # a problem found before any work: bad spec, no inputs, no GPU, resume refused
    LOST_WORK = 3       # committed, but some work was lost (rows with error_kind=not_processed)
    ENGINE_FAILED = 4   # not committed: the engine could not start or made no progress; --resume later
    STORAGE_FAILED = 5  # not committed: answered pages could not be written; --resume later


def _run(args: argparse.Namespace, job) -> tuple[int, Any]:
    """Load the spec, run `job(spec)`; (exit code, its result). Only problems found before the work
    are usage errors: a failure during the run is reported as what it is."""
    try:
        spec = load_from_args(args)
    except (ValidationError, ValueError, FileNotFoundError) as exc:
        print(f"docintel: {exc}", file=sys.stderr)
        return Exit.USAGE, None
    code, result = _guarded(lambda: job(spec))
    return (Exit.OK, result) if code is None else (code, None)


def _guarded(work) -> tuple[int | None, Any]:
    """Run `work()`; (None, its result), or (the exit code, None) for a failure the README names."""
    from pipeline.job.run import EngineFailed, StorageFailed, UsageError

    codes = {UsageError: Exit.USAGE, EngineFailed: Exit.ENGINE_FAILED, StorageFailed: Exit.STORAGE_FAILED}
    try:
        return None, work()
    except tuple(codes) as exc:
        print(f"docintel: {exc}", file=sys.stderr)
        return codes[type(exc)], None


def _reading(work) -> int:
    """runs, show, review: a missing run or output is a usage error (2), storage that fails after its
    retries is 5; anything else is a bug (1, traceback)."""
    from pipeline.store.storage import storage_failure

    try:
        work()
        return Exit.OK
    except FileNotFoundError as exc:
        print(f"docintel: {exc}", file=sys.stderr)
        return Exit.USAGE
    except Exception as exc:
        failure = storage_failure(exc)
        if failure is None:
            raise
        print(f"docintel: storage failed: {failure}", file=sys.stderr)
        return Exit.STORAGE_FAILED


def _lost_work(summary) -> int:
    if summary.lost:
        print(f"docintel: {summary.lost} documents/pages were not processed (their work was lost); they have "
              "rows with error_kind=not_processed. Run again with --incremental to redo just those.",
              file=sys.stderr)
        return Exit.LOST_WORK
    return Exit.OK


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.job.run import run_job

    code, summary = _run(args, run_job)
    if summary is None:
        return code
    print(summary.render())
    return _lost_work(summary)


def cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.evaluation.evaluate import calibration_line, headline, run_eval

    code, result = _run(args, lambda spec: run_eval(spec, args.gold))
    if result is None:
        return code
    scores, where, summary = result
    print(summary.render())
    print(f"eval     {headline(scores)}\n  scores   {where}/scores.parquet\n  report   {where}/report.html")
    print(calibration_line(str(where)))
    return _lost_work(summary)


def _run_args(args: argparse.Namespace, run_id: str) -> list[str]:
    """The `run` arguments of a submitted job: the user's own flags, with the run id fixed."""
    argv = [args.spec] if args.spec else []
    for flag in FLAGS:
        value = _value(args, flag)
        if flag.name in ("run-id", "resume", "address") or value in (None, [], False):
            continue
        if flag.kwargs.get("action") == "store_true":
            argv.append(f"--{flag.name}")
        else:
            argv += [x for v in (value if isinstance(value, list) else [value]) for x in (f"--{flag.name}", str(v))]
    return argv + (["--resume", run_id] if args.resume else ["--run-id", run_id])


def cmd_submit(args: argparse.Namespace) -> int:
    from pipeline import submit
    from pipeline.tasks import get_task

    if not args.address:
        print("docintel: submit needs --address http://HEAD:8265 (the Ray dashboard)", file=sys.stderr)
        return Exit.USAGE
    root = None if args.no_working_dir else submit.project_root()  # None: an installed package
    try:
        spec = load_from_args(args)  # validate here: a bad spec never takes a cluster slot
        get_task(spec.task.name, spec.task)
        files = submit.job_files(spec, args.spec, root) if root else []
    except (ValidationError, ValueError, FileNotFoundError) as exc:
        print(f"docintel: {exc}", file=sys.stderr)
        return Exit.USAGE
    job_id = submit.submit(args.address, _run_args(args, spec.output.run_id), spec.output.run_id, root, files,
                           args.pip or [])
    print(f"submitted {job_id} (run {spec.output.run_id}) to {args.address}", flush=True)
    if args.no_wait:
        return 0
    status = submit.follow(args.address, job_id)
    code = submit.exit_code(args.address, job_id)
    print(f"{job_id}: {status}" + (f" (exit code {code})" if code else ""))
    # The job's own exit code where the cluster knows it (2, 3, 4, 5 mean what they mean for run).
    return code if code is not None else (Exit.OK if status == "SUCCEEDED" else Exit.CRASHED)


def cmd_job(args: argparse.Namespace) -> int:
    import json

    from pipeline import submit

    if args.command == "status":
        print(json.dumps(submit.status(args.address, args.job_id), indent=1, default=str))
    elif args.command == "logs":
        print(submit.follow(args.address, args.job_id) if args.follow else submit.logs(args.address, args.job_id))
    else:
        print("stopped" if submit.stop(args.address, args.job_id) else "not running")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline import demo
    from pipeline.core.config import parse_override

    code, _ = _guarded(lambda: demo.main(args.output, args.model, [parse_override(s) for s in args.set]))
    return code if code is not None else Exit.OK


def cmd_demo_model(args: argparse.Namespace) -> int:
    from pipeline.engine.model import build

    path = build(args.out, tiny=not args.full)
    print(f"{path}\n(random weights: every answer from this model is meaningless)")
    return 0


def _apply_storage(args: argparse.Namespace) -> None:
    """--endpoint-url/--region of the read-only commands, exported as a run's storage spec does."""
    from pipeline.core.config import StorageSpec

    StorageSpec(endpoint_url=args.endpoint_url, region=args.region).apply_env()


def cmd_runs(args: argparse.Namespace) -> int:
    from pipeline.browse import runs

    _apply_storage(args)

    def listing() -> None:
        infos = runs.list_runs(args.output)
        print(runs.runs_json(infos) if args.json else runs.render_runs(infos, args.output))
    return _reading(listing)


def cmd_show(args: argparse.Namespace) -> int:
    from pipeline.browse import runs

    _apply_storage(args)
    return _reading(lambda: print(runs.show(args.output, args.run_id, limit=args.limit)))


def cmd_review(args: argparse.Namespace) -> int:
    from pipeline.browse import review

    _apply_storage(args)

    where = args.where
    if args.needs_review:  # the rows the job's review threshold flagged (needs_review), and --where's
        where = "needs_review" + (f" AND ({where})" if where and where.strip() else "")

    def writing() -> None:
        try:
            sel = review.write_review(args.output, args.out, args.run, where, args.limit, args.max_side)
        except review.ReviewError as exc:
            raise FileNotFoundError(str(exc)) from None  # nothing to review there: a usage error
        print(f"{args.out}: {len(sel.rows):,} of {sel.matching:,} matching rows of run {sel.run_id}")
    return _reading(writing)


def _add_browse_commands(sub) -> None:
    """Read-only commands over an output: `runs`, `show` (pipeline/browse/runs.py), `review` (pipeline/browse/review.py)."""
    def storage(p: argparse.ArgumentParser) -> None:
        p.add_argument("--endpoint-url", help="S3-compatible endpoint (as storage.endpoint_url of the run)")
        p.add_argument("--region", help="object store region (as storage.region)")

    rs = sub.add_parser("runs", help="list the runs under an output (committed or not)")
    rs.add_argument("output", help="output folder or URI (the job's --output)")
    rs.add_argument("--json", action="store_true", help="a JSON list, one object per run, instead of the table")
    storage(rs)
    rs.set_defaults(func=cmd_runs)
    sh = sub.add_parser("show", help="one run's summary and its failed documents")
    sh.add_argument("output", help="output folder or URI")
    sh.add_argument("run_id")
    sh.add_argument("--limit", type=int, default=50, help="failed documents listed (default 50)")
    storage(sh)
    sh.set_defaults(func=cmd_show)
    rv = sub.add_parser("review", help="one HTML file to check answers on their pages (boxes drawn)")
    rv.add_argument("output", help="output folder or URI")
    rv.add_argument("--run", metavar="RUN_ID", help="a committed run (default: the latest)")
    rv.add_argument("--where", metavar="SQL", help='DuckDB predicate over the page table, e.g. "confidence < 0.6"')
    rv.add_argument("--needs-review", action="store_true",
                    help="only the rows flagged by the job's review threshold (needs_review)")
    rv.add_argument("--limit", type=int, default=200, help="rows shown, errors first, least confident first")
    rv.add_argument("--max-side", type=int, default=700, help="longest side of the page pictures, px")
    rv.add_argument("--out", required=True, help="the HTML file to write")
    storage(rv)
    rv.set_defaults(func=cmd_review)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docintel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a job: documents in, Parquet out")
    _add_spec_args(run)
    run.set_defaults(func=cmd_run)
    ev = sub.add_parser("eval", help="run a gold set (DocVQA, ChartQA or JSONL/Parquet) and score it")
    ev.add_argument("gold", help="gold file: DocVQA val_v1.0.json, ChartQA test_*.json, or .jsonl/.parquet")
    _add_spec_args(ev, spec_positional=False)
    ev.set_defaults(func=cmd_eval)
    sb = sub.add_parser("submit", help="run a job on a Ray cluster (Job Submission API), stream its logs")
    _add_spec_args(sb)
    sb.add_argument("--no-working-dir", action="store_true",
                    help="the cluster image has docintel installed: upload nothing, run `docintel run` "
                         "(always so from an installed package)")
    sb.add_argument("--pip", action="append", metavar="REQ", help="extra pip requirement for the job (repeatable)")
    sb.add_argument("--no-wait", action="store_true", help="print the job id and return")
    sb.set_defaults(func=cmd_submit)
    for name, text in (("status", "a submitted job's status"), ("logs", "a submitted job's logs"),
                       ("stop", "stop a submitted job")):
        jp = sub.add_parser(name, help=text)
        jp.add_argument("job_id")
        jp.add_argument("--address", required=True, help="Ray dashboard address, e.g. http://HEAD:8265")
        if name == "logs":
            jp.add_argument("--follow", action="store_true")
        jp.set_defaults(func=cmd_job)
    dm = sub.add_parser("demo", help="the whole product in a few minutes on the shipped samples (any machine)")
    dm.add_argument("--output", default="./docintel-demo", help="folder for the demo's runs and reports")
    dm.add_argument("--model", help="model to use where a GPU is (default: Mistral Small 3.2 if its weights are here)")
    dm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec field")
    dm.set_defaults(func=cmd_demo)
    demo = sub.add_parser("demo-model", help="write the tiny random-weight demo model folder")
    demo.add_argument("out")
    demo.add_argument("--full", action="store_true", help="full 24B shapes (GPU benchmarks)")
    demo.set_defaults(func=cmd_demo_model)
    _add_browse_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    # Quiet by default: docintel's own warnings, its progress line and the summary; --verbose for all.
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

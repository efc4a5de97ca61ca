"""`docintel submit/status/logs/stop`: run a job spec on a Ray cluster through Ray's Job
Submission API (what `ray job submit` uses), so the same spec runs on a laptop and a cluster.

The job's entry point is `python -m pipeline.cli run SPEC ARGS...` in an uploaded working directory
when docintel runs from its checkout, `docintel run SPEC ARGS...` when it is installed (a wheel:
the cluster's image must have the package, as the container in deploy/ does; `--no-working-dir`
asks for that from a checkout too). The spec is validated here first, so a bad spec never takes a
cluster slot. Secrets are not passed: the cluster's workers take credentials from their own
environment (Kubernetes Secrets, IRSA, instance roles).

The working directory is uploaded by allow-list, as deploy/Dockerfile.dockerignore builds the image:
a temporary folder holding only SHIPPED and the files of the checkout that this job reads
(`job_files`), so nothing else a checkout holds (.env, keys, credential files, tests/, tools/,
outputs, a user's notes) can reach the cluster.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from pipeline.core.config import JobSpec

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
# What every submitted job's working directory holds: the package, the shipped job specs and
# schemas (the task and fields schemas are read from schemas/ in a checkout), pyproject.toml.
SHIPPED = ("pipeline", "jobs", "schemas", "pyproject.toml")
# Left behind inside what is copied: hidden names (.env, .git, .cache) and Python's caches.
SKIPPED = shutil.ignore_patterns(".*", "__pycache__", "*.pyc", "*.egg-info")


def client(address: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def entrypoint(run_args: list[str], installed: bool) -> str:
    """The command the cluster runs: the CLI's own `run` with the user's arguments."""
    program = ["docintel"] if installed else ["python", "-m", "pipeline.cli"]
    return shlex.join([*program, "run", *run_args])


AGENT_WAIT_S = 120  # how long a submission waits for the head's job agent


def project_root(package_dir: Path = Path(__file__).parent) -> Path | None:
    """The checkout the package runs from: the folder above it, when its pyproject.toml names docintel.
    None for an installed package (its parent is site-packages): then nothing is uploaded."""
    root = package_dir.resolve().parent
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None
    project = pyproject.read_text().partition("[project]")[2].split("\n[", 1)[0]
    return root if re.search(r'^name\s*=\s*"docintel"\s*$', project, re.MULTILINE) else None


def _in_checkout(path: str, root: Path) -> Path | None:
    """Where a local path lies in the checkout (relative to it), None for a URI or a path outside it.
    A name in the checkout that links out of it stays behind too."""
    from pipeline.store.storage import is_uri

    if is_uri(path):
        return None
    named = Path(os.path.abspath(path))
    inside = named.is_relative_to(root) and Path(os.path.realpath(named)).is_relative_to(root.resolve())
    if named == root or not inside:  # the checkout itself is no job's file: `--model .` would upload all of it
        return None
    return named.relative_to(root)


def job_files(spec: JobSpec, spec_path: str | None, root: Path) -> list[Path]:
    """The files of the checkout this job reads, relative to it (relative names taken from the current
    folder, as the CLI reads them): its spec, the documents it lists and its manifest, its fields
    schema and system prompt files, its model folder (when it lies in the checkout: the shipped tiny
    reader goes only with a job that runs it). Each travels to its place in the checkout, so the
    names a job is given from the checkout's root resolve in its working directory on the cluster.
    Raises ValueError for a malformed manifest."""
    from pipeline.ingest import sources

    task, engine, listing = spec.task, spec.engine, spec.input
    named = [spec_path, listing.manifest, engine.model,
             task.fields_schema if isinstance(task.fields_schema, str) else None,
             engine.system_prompt[1:] if (engine.system_prompt or "").startswith("@") else None]
    # Only what lies in the checkout is listed: a folder or bucket elsewhere is never walked from here.
    local = listing.model_copy(update={
        "paths": [p for p in listing.paths if _in_checkout(p, root)],
        "manifest": listing.manifest if listing.manifest and _in_checkout(listing.manifest, root) else None})
    if local.paths or local.manifest:
        named += [ref.source_uri for ref in sources.discover(local) if not ref.error_kind]
    places = {_in_checkout(p, root) for p in named if p}
    model = _in_checkout(engine.model, root)  # the one folder a job names
    return sorted(p for p in places if p is not None and ((root / p).is_file() or p == model and (root / p).is_dir()))


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, ignore=SKIPPED, dirs_exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


@contextlib.contextmanager
def working_dir(root: Path | None, files: list[Path]) -> Iterator[str | None]:
    """A temporary folder holding only SHIPPED and `files` (relative to `root`), for as long as the
    submission uploads it; None when there is no checkout to upload from."""
    if root is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="docintel-upload-") as folder:
        for place in [Path(name) for name in SHIPPED if (root / name).exists()] + files:
            _copy(root / place, Path(folder, place))
        yield folder


def runtime_env(working_dir: str | None, pip: list[str]) -> dict[str, Any]:
    env: dict[str, Any] = {"working_dir": working_dir} if working_dir else {}
    if pip:
        env["pip"] = pip
    return env


def submit(address: str, run_args: list[str], run_id: str, root: Path | None, files: list[Path], pip: list[str],
           entrypoint_num_cpus: float = 0) -> str:
    """Submit, uploading `files` of the checkout `root` with SHIPPED (nothing without a checkout); the
    driver reserves no CPU by default (as `ray job submit`): it mostly waits, and a reserved CPU can
    starve the read and render tasks on a small cluster."""
    job_id = f"docintel-{run_id}"
    jobs = client(address)
    deadline = time.monotonic() + AGENT_WAIT_S
    with working_dir(root, files) as folder:
        while True:
            try:
                jobs.submit_job(
                    entrypoint=entrypoint(run_args, installed=folder is None),
                    submission_id=job_id,
                    runtime_env=runtime_env(folder, pip),
                    metadata={"docintel_run_id": run_id},
                    entrypoint_num_cpus=entrypoint_num_cpus,
                )
                return job_id
            except RuntimeError as exc:
                # A head that has just started (or is busy) answers 500 until its job agent is up.
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(2)


def follow(address: str, job_id: str, out=sys.stdout) -> str:
    """Stream the job's logs until it ends; returns its final status."""
    jobs = client(address)

    async def tail() -> None:
        async for chunk in jobs.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())
    while (status := str(jobs.get_job_status(job_id).value)) not in TERMINAL:
        time.sleep(1)
    return status


def exit_code(address: str, job_id: str) -> int | None:
    """The exit code of the job's driver (`docintel run` on the cluster), None if not known."""
    return getattr(client(address).get_job_info(job_id), "driver_exit_code", None)


def status(address: str, job_id: str) -> dict[str, Any]:
    info = client(address).get_job_info(job_id)
    return {"job_id": job_id, "status": str(info.status.value), "message": info.message,
            "entrypoint": info.entrypoint, "start_time": info.start_time, "end_time": info.end_time}


def logs(address: str, job_id: str) -> str:
    return client(address).get_job_logs(job_id)


def stop(address: str, job_id: str) -> bool:
    return client(address).stop_job(job_id)

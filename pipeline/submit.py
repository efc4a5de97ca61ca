"""`docintel submit/status/logs/stop`: run a job spec on a Ray cluster through Ray's Job
Submission API (what `ray job submit` uses), so the same spec runs on a laptop and a cluster.

The job's entry point is `python -m pipeline.cli run SPEC ARGS...` in the uploaded working
directory (this project; `--no-working-dir` for images that have the package installed, as the
container in deploy/ does). The spec is validated here first, so a bad spec never takes a
cluster slot. Secrets are not passed: the cluster's workers take credentials from their own
environment (Kubernetes Secrets, IRSA, instance roles).
"""
from __future__ import annotations

import asyncio
import shlex
import sys
import time
from pathlib import Path
from typing import Any

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
# Never uploaded with the working directory: outputs, GPU bundles, caches.
EXCLUDES = [".git", ".gpu", ".whl", "out", "bench-out", "**/__pycache__", "*.egg-info", ".pytest_cache"]
# The shipped tiny reader's weights (24 MB) travel only with a job that runs them: an upload four
# times larger keeps a busy head's job agent away longer (a 500, "No available agent").
MODELS = "models"


def client(address: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def entrypoint(run_args: list[str], installed: bool) -> str:
    """The command the cluster runs: the CLI's own `run` with the user's arguments."""
    program = ["docintel"] if installed else ["python", "-m", "pipeline.cli"]
    return shlex.join([*program, "run", *run_args])


AGENT_WAIT_S = 120  # how long a submission waits for the head's job agent


def runtime_env(working_dir: str | None, pip: list[str], model: str = "") -> dict[str, Any]:
    """`model`: the job's engine.model; a folder under the working directory's models/ goes with it."""
    env: dict[str, Any] = {}
    if working_dir:
        shipped = Path(working_dir, MODELS).resolve()
        runs_one = Path(working_dir, model).resolve().is_relative_to(shipped) if model else False
        env.update(working_dir=working_dir, excludes=EXCLUDES + ([] if runs_one else [MODELS]))
    if pip:
        env["pip"] = pip
    return env


def submit(address: str, run_args: list[str], run_id: str, working_dir: str | None, pip: list[str],
           entrypoint_num_cpus: float = 0, model: str = "") -> str:
    """Submit; the driver reserves no CPU by default (as `ray job submit`): it mostly waits, and a
    reserved CPU can starve the read and render tasks on a small cluster."""
    job_id = f"docintel-{run_id}"
    jobs = client(address)
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            jobs.submit_job(
                entrypoint=entrypoint(run_args, installed=working_dir is None),
                submission_id=job_id,
                runtime_env=runtime_env(working_dir, pip, model),
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


def project_root() -> str:
    return str(Path(__file__).resolve().parents[1])

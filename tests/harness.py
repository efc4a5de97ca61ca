"""Running `docintel` as a user does, for the end-to-end and fault tests: as a child process, and
finding the real processes of its run (engine core, engine actor, Ray workers) to stop or kill."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Callable

import psutil

from pipeline.store import fileio, layout, output

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
# Ray 2.60's `ray start` asks clients for a token; the clusters the tests start and their clients share this one.
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "docintel-test-token-0123456789abcdef"}
# The S3 tests' credentials (for the moto server they start): the session's Ray has them in its
# workers' environment, where the job's workers take credentials from (never from the job).
S3_KEY_ID, S3_SECRET = "AKIATESTKEYID000", "s3cr3t-never-in-output-0123456789"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_DEFAULT_REGION": "us-east-1"}
# The engine core in the actor's process starts in half the time on a CPU (one import of torch and
# vLLM, not three). The tests that stop or kill the engine core run it apart, as the product does.
FAST = ["--set", "ray.progress_bars=false", "--set", "render.max_side=512", "--set", "engine.max_model_len=4096",
        "--set", "engine.separate_core=false"]


def env(**extra: str) -> dict[str, str]:
    # "local": a new Ray of its own unless --address names one, never a cluster another test started
    # with `ray start` (which ray.init() would otherwise find and join).
    # No usage-stats actor polling in every test's Ray (nothing may reach the network anyway).
    # tests/ on the path: the engine double (tests/engine_double.py) is imported in Ray's workers.
    path = os.pathsep.join(p for p in (extra.pop("PYTHONPATH", None), str(TESTS), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONUNBUFFERED="1", RAY_ADDRESS="local", RAY_USAGE_STATS_ENABLED="0",
                PYTHONPATH=path, **extra)


# Every fault the tests know, set in the environment of the session's Ray workers (conftest.ray_cluster)
# as a stray variable would be in production: the product reads none of it, so the runs that join that
# Ray without asking for faults are untouched (tests/test_tiny_reader_eval.py checks: the reader's rows,
# no marker file, no killed engine).
STRAY_MARKER = f"/tmp/docintel-stray-step-error-{os.getpid()}"
STRAY = {"DOCINTEL_FAULTS": json.dumps({"engine": "engine_double:EngineDouble", "step_error_once": STRAY_MARKER,
                                        "kill_core_when": "/", "render_delay_s": 2.0, "pause_at": "commit_move"})}


def double(step_s: float = 0.0, **faults) -> dict[str, str]:
    """The environment that has run() and start() swap vLLM for the engine double (tests/engine_double.py),
    for runs whose subject is not the engine; `faults`: other faults to inject as well (tests/faults_plugin.py)."""
    return {"DOCINTEL_FAULTS": json.dumps({"engine": "engine_double:EngineDouble", "step_s": step_s, **faults})}


def command(*args: str, faults: bool = False) -> list[str]:
    """The CLI; with `faults`, through the tests' plugin (tests/faults_plugin.py), which reads
    DOCINTEL_FAULTS and turns it into the job settings that switch the faults and the double on."""
    return [sys.executable, "-m", *(("faults_plugin", "docintel") if faults else ("pipeline.cli",)), *args]


def run(*args: str, timeout: float = 900, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args, faults="DOCINTEL_FAULTS" in extra_env), capture_output=True, text=True,
                          timeout=timeout, env=env(**extra_env), cwd=REPO)


def start(*args: str, log: Path, **extra_env: str) -> subprocess.Popen:
    """The CLI in its own process group (so that it and all it started can be killed at once)."""
    return subprocess.Popen(command(*args, faults="DOCINTEL_FAULTS" in extra_env), stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env(**extra_env), cwd=REPO, start_new_session=True)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the CLI and every process under it (its local Ray, workers, engine), as a node that dies."""
    try:
        victims = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        victims = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in victims:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(60)
    psutil.wait_procs(victims, timeout=30)


def processes(root: int, name: str) -> list[psutil.Process]:
    """Processes under `root` whose title contains `name` (vLLM and Ray set process titles:
    VLLM::EngineCore, ray::MapWorker(MapBatches(EngineActor)), ray::MapBatches(_read)->...)."""
    found = []
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for p in children:
        try:
            if name in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


def wait_for(check: Callable[[], object], timeout: float, what: str, proc: subprocess.Popen | None = None,
             log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the job ended (exit {proc.returncode}) before {what}:\n{_tail(log)}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{_tail(log)}")


def _tail(log: Path | None) -> str:
    return log.read_text()[-4000:] if log and log.exists() else ""


def staged_files(out: Path, run_id: str) -> list[str]:
    return fileio.list_files(layout.RunPaths(str(out), run_id).staging("pages"))


def page_keys(out: Path, run_id: str) -> list[tuple]:
    return sorted((os.path.basename(r["source_uri"]), r["page_index"], r["question"])
                  for r in output.read_pages(str(out), run_id).to_pylist())


def assert_exactly_once(out: Path, run_id: str, expected: dict[str, int], questions: list[str]) -> list[dict]:
    """One row per (document, page, question) of the input, no more, no less; _SUCCESS agrees."""
    rows = output.read_pages(str(out), run_id).to_pylist()
    keys = Counter((os.path.basename(r["source_uri"]), r["page_index"], r["question"]) for r in rows)
    twice = [k for k, n in keys.items() if n > 1]
    assert not twice, f"rows written twice: {twice[:5]}"
    wanted = {(name, p, q) for name, pages in expected.items() for p in range(pages) for q in questions}
    assert set(keys) == wanted, f"missing {sorted(wanted - set(keys))[:5]}, extra {sorted(set(keys) - wanted)[:5]}"
    marker = output.marker(str(out), run_id)
    assert marker["rows"] == len(rows) and marker["pages"] == len({(k[0], k[1]) for k in keys})
    assert marker["documents"] == len(expected)
    return rows


def free_port() -> int:
    """A loopback port free now (for a server a test starts: moto, a Ray head)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_server():
    """A real S3-compatible HTTP server (moto in server mode) on a free loopback port; its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def stop_ray_cluster(gcs_port: int, timeout: float = 60) -> None:
    """Stop the Ray cluster a test started with `ray start` on this GCS port, and only it (`ray
    stop` would stop every Ray on the machine: the local Ray of a test running alongside too)."""
    import psutil

    mine = (f":{gcs_port}", f"--gcs_server_port={gcs_port}")
    procs = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(m in arg for arg in p.info["cmdline"] or () for m in mine):
                # with the raylets' agents, whose titles (ray::DashboardAgent) name no port
                procs += [p, *p.children(recursive=True)]
        except psutil.Error:
            continue
    procs = list({p.pid: p for p in procs}.values())
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=timeout)


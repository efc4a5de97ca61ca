"""Shared fixtures: generated documents and the tiny random-weight model (nothing is downloaded)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/docgen.py

# The CPU backend of vLLM sizes its KV cache from this (GiB); the default asks for more than CI has.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded in tests


def pytest_collection_modifyitems(items):
    """Marks that follow the shared fixtures: a test that needs the output with two runs may start
    its real engine (`engine`); one that needs the killed run kills a process tree (`faults`).

    With pytest-xdist (`-n 2 --dist loadgroup`, for a machine with cores to spare; CI runs the
    tests one at a time), tests that share an expensive session fixture run in one worker, so it is
    built once: the output with two runs, and the two-node Ray cluster.

    The two-node cluster's tests run one after another, where the first of them is (test_cluster.py,
    then test_submit.py): the cluster lives minutes, not the whole suite."""
    two_nodes = [item for item in items if "two_nodes" in item.fixturenames]
    if two_nodes:
        first = items.index(two_nodes[0])
        others = [item for item in items if "two_nodes" not in item.fixturenames]
        items[:] = others[:first] + two_nodes + others[first:]
    for item in items:
        if "output_with_two_runs" in item.fixturenames:
            item.add_marker(pytest.mark.engine)
        if "output_with_a_killed_run" in item.fixturenames:
            item.add_marker(pytest.mark.faults)
        if "output_with_two_runs" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("output-with-two-runs"))
        elif "two_nodes" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("two-nodes"))


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory) -> str:
    from pipeline.engine.model import build

    return str(build(tmp_path_factory.mktemp("model") / "tiny-mistral-small-3.2", tiny=True))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    from docgen import make_corpus

    folder = tmp_path_factory.mktemp("corpus")
    return folder, make_corpus(folder)


RUNS = ("2026-11-29", "nightly-10")  # a run id that looks like a date must stay a string
QUESTIONS = ["What is the total?", "What is the date?"]


@pytest.fixture(scope="session")
def output_with_two_runs(tmp_path_factory, corpus, demo_model, ray_cluster):
    """An output folder as a nightly job leaves it: two committed runs of the corpus (2 questions).
    The first run is the real engine's (the end-to-end docvqa run of tests/test_e2e.py); the second
    uses the engine double on the session's Ray: it is there for what a folder of runs looks like."""
    import json

    import harness

    folder, _ = corpus
    out = tmp_path_factory.mktemp("two-runs") / "out"
    for run_id, extra, env in ((RUNS[0], [], {}), (RUNS[1], ["--address", ray_cluster], harness.double())):
        proc = harness.run("run", "jobs/docvqa.yaml", "--input", str(folder), "--output", str(out), "--model", demo_model,
                        "--run-id", run_id, *harness.FAST, "--set", f"task.questions={json.dumps(QUESTIONS)}", *extra,
                        **env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out.with_name(f"{run_id}.stdout").write_text(proc.stdout)
    return out


@pytest.fixture(scope="session")
def output_with_a_killed_run(output_with_two_runs, corpus, demo_model):
    """The same folder with a third run whose driver was killed mid-run (the engine double, slowed),
    and a truncated copy of one of its staged files: what a crash and a damaged copy leave behind."""
    import shutil

    import harness

    folder, _ = corpus
    out = output_with_two_runs
    log = out.parent / "killed.log"
    proc = harness.start("run", "--input", str(folder), "--output", str(out), "--model", demo_model, "--run-id", "killed",
                      "--question", QUESTIONS[0], *harness.FAST, "--set", "engine.batch_size=1",
                      "--set", "output.pages_per_file=1", log=log, **harness.double(step_s=0.5))
    harness.wait_for(lambda: len(harness.staged_files(out, "killed")) >= 2, 600, "staged files", proc, log)
    harness.kill_tree(proc)
    staged = harness.staged_files(out, "killed")
    shutil.copy(staged[0], staged[0] + ".parquet")
    with open(staged[0] + ".parquet", "r+b") as f:  # a corrupt file in staging (a damaged or foreign copy)
        f.truncate(os.path.getsize(staged[0]) // 2)
    return out


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the session (`ray start --head`, 4 logical CPUs), for the runs that neither
    kill their process tree nor look for workers under their driver: they join it with `--address`
    instead of starting a Ray of their own. Its workers carry every fault the tests know as a stray
    variable (harness.STRAY), which must change nothing."""
    import subprocess
    import tempfile

    import harness

    gcs = harness.free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: socket paths
    subprocess.run(["ray", "start", "--head", f"--port={gcs}", "--num-cpus=4", "--num-gpus=0",
                    "--include-dashboard=false", f"--dashboard-agent-listen-port={harness.free_port()}",
                    "--disable-usage-stats", f"--temp-dir={temp}"],
                   check=True, capture_output=True,
                   env=harness.env(RAY_AUTH_MODE="disabled", **harness.S3_CREDENTIALS, **harness.STRAY), timeout=180)
    yield f"127.0.0.1:{gcs}"
    harness.stop_ray_cluster(gcs)


@pytest.fixture(scope="session")
def two_nodes():
    """A real two-node Ray cluster (`ray start --head` with the dashboard and the Job Submission API,
    plus a second `ray start --address`), shared by tests/test_cluster.py and tests/test_submit.py:
    (GCS address, dashboard URL, the two nodes' metrics URLs). Ray 2.60 asks for a token: harness.AUTH.
    Its workers have tests/ on their path, so jobs that ask for the engine double
    (`engine.backend=engine_double:EngineDouble`) can build it: what is tested there is the cluster,
    not the engine."""
    import subprocess
    import tempfile

    import harness

    env = harness.env(**harness.AUTH)
    env.pop("RAY_ADDRESS")
    gcs, dash, metrics, metrics2 = harness.free_port(), harness.free_port(), harness.free_port(), harness.free_port()
    # Each node's dashboard agent on a port of its own: Ray's default (52365) is one per machine, and the
    # session's Ray (ray_cluster) or a test's local Ray may hold it. A head whose agent cannot listen
    # answers every job submission "No available agent to submit job" (the CI run of 2026-12-06).
    agent, agent2 = harness.free_port(), harness.free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: socket paths
    subprocess.run(["ray", "start", "--head", f"--port={gcs}", f"--dashboard-port={dash}", "--num-cpus=2",
                    "--num-gpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                    f"--dashboard-agent-listen-port={agent}", f"--metrics-export-port={metrics}",
                    "--disable-usage-stats", f"--temp-dir={temp}"],
                   check=True, capture_output=True, env=env, timeout=180)
    subprocess.run(["ray", "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=2", "--num-gpus=0",
                    f"--dashboard-agent-listen-port={agent2}", f"--metrics-export-port={metrics2}",
                    "--disable-usage-stats"],
                   check=True, capture_output=True, env=env, timeout=180)
    yield (f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}",
           [f"http://127.0.0.1:{port}/metrics" for port in (metrics, metrics2)])
    harness.stop_ray_cluster(gcs)

"""Cluster submission for real: a local Ray head (`ray start --head`), `docintel submit` through the
Job Submission API, logs streamed, output checked; then status/logs of the finished job."""
import json
import os
import subprocess
import sys
import tempfile

import pytest

import jobs

from pipeline import output

pytestmark = pytest.mark.engine


# Ray 2.60's dashboard asks for a token; the head and every client here share this one.
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "docintel-test-token-0123456789abcdef"}


@pytest.fixture()
def ray_head():
    env = dict(os.environ, **AUTH)
    env.pop("RAY_ADDRESS", None)
    gcs, dash = jobs.free_port(), jobs.free_port()
    subprocess.run(["ray", "start", "--head", f"--port={gcs}", f"--dashboard-port={dash}", "--num-cpus=2",
                    "--num-gpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                    "--disable-usage-stats", f"--temp-dir={tempfile.mkdtemp(prefix='ray', dir='/tmp')}"],  # short: socket paths
                   check=True, capture_output=True, env=env, timeout=120)
    yield f"http://127.0.0.1:{dash}"
    jobs.stop_ray_cluster(gcs)


def test_submit_runs_the_job_on_the_cluster(tmp_path, ray_head, corpus, demo_model):
    folder, expected = corpus
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONUNBUFFERED="1", **AUTH)
    env.pop("RAY_ADDRESS", None)
    cli = [sys.executable, "-m", "pipeline.cli"]
    proc = subprocess.run(
        [*cli, "submit", "jobs/docvqa.yaml", "--address", ray_head, "--input", str(folder), "--output", str(out),
         "--model", demo_model, "--run-id", "submitted", "--question", "What is the total?",
         "--set", "ray.progress_bars=false", "--set", "render.max_side=512", "--set", "engine.separate_core=false"],
        capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "submitted docintel-submitted" in proc.stdout and "docintel-submitted: SUCCEEDED" in proc.stdout
    assert "pages      10" in proc.stdout  # the job's own summary, streamed back
    rows = output.read_results(str(out), "submitted").to_pylist()
    assert len(rows) == sum(expected.values()) and all(r["valid"] for r in rows)

    status = subprocess.run([*cli, "status", "docintel-submitted", "--address", ray_head],
                            capture_output=True, text=True, timeout=60, env=env)
    assert json.loads(status.stdout)["status"] == "SUCCEEDED"
    logs = subprocess.run([*cli, "logs", "docintel-submitted", "--address", ray_head],
                          capture_output=True, text=True, timeout=60, env=env)
    assert "engine on cpu" in logs.stdout


def test_submit_refuses_a_bad_spec_before_contacting_the_cluster(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task:\n  name: nope\n")
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "submit", str(bad), "--address", "http://127.0.0.1:9"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown task" in proc.stderr

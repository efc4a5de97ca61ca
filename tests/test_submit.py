"""Cluster submission for real: `docintel submit` to the two-node test cluster's head
(conftest.two_nodes) through the Job Submission API, logs streamed, output checked; then status/logs
of the finished job. The cluster's workers answer with the engine double: the subject is submission."""
import json
import os
import subprocess
import sys
from pathlib import Path

import harness
from pipeline.store import output


def test_submit_runs_the_job_on_the_cluster(tmp_path, two_nodes, corpus, demo_model):
    _, ray_head, _ = two_nodes
    folder, expected = corpus
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONUNBUFFERED="1", **harness.AUTH)
    env.pop("RAY_ADDRESS", None)
    cli = [sys.executable, "-m", "pipeline.cli"]
    proc = subprocess.run(
        [*cli, "submit", "jobs/docvqa.yaml", "--address", ray_head, "--input", str(folder), "--output", str(out),
         "--model", demo_model, "--run-id", "submitted", "--question", "What is the total?",
         "--set", "ray.progress_bars=false", "--set", "render.max_side=512", "--set", "engine.separate_core=false",
         "--set", "storage.shared_filesystem=true",  # two nodes, one disk
         "--set", "engine.backend=engine_double:EngineDouble"],  # the cluster's workers have tests/ on their path
        capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "submitted docintel-submitted" in proc.stdout and "docintel-submitted: SUCCEEDED" in proc.stdout
    assert "pages      10" in proc.stdout  # the job's own summary, streamed back
    rows = output.read_pages(str(out), "submitted").to_pylist()
    assert len(rows) == sum(expected.values()) and all(r["valid"] for r in rows)
    assert all("engine double" in r["model_id"] for r in rows)  # the rows say who answered

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


def test_the_shipped_reader_travels_only_with_a_job_that_runs_it(monkeypatch):
    """Of models/, only the folder of a job's own model is uploaded (tests/test_security.py: the rest of
    the allow-list)."""
    from pipeline import submit
    from pipeline.core.config import load_spec

    root = submit.project_root()
    monkeypatch.chdir(root)

    def uploaded(model: str) -> list[Path]:
        return submit.job_files(load_spec("jobs/docvqa.yaml", [("engine.model", model)]), "jobs/docvqa.yaml", root)

    assert uploaded("mistralai/Mistral-Small-3.2-24B-Instruct-2506") == [Path("jobs/docvqa.yaml")]
    for model in ("models/tiny-reader", f"{root}/models/tiny-reader"):
        assert uploaded(model) == [Path("jobs/docvqa.yaml"), Path("models/tiny-reader")]

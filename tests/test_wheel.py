"""An install that works outside the checkout: build a wheel, install it into a fresh folder, and run
a job from another directory, so nothing can be found by accident in the repository (schemas,
samples, the shipped models)."""
import os
import subprocess
import sys

import pytest

import harness

pytestmark = pytest.mark.engine


def test_a_wheel_installed_elsewhere_runs_the_capacity_job_from_another_directory(tmp_path, corpus, demo_model):
    """Also jobs/capacity.yaml as it is meant: load_format=dummy on a model folder that is NOT a demo
    folder (as a real model's would be): it runs, and every row says its answers are meaningless."""
    import shutil

    from pipeline.store import output
    from pipeline.engine.model import DEMO_MARKER

    wheels, site, cwd = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    cwd.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(harness.REPO)], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("docintel-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    assert (site / "pipeline" / "_schemas" / "tasks" / "docvqa.json").is_file()
    assert (site / "pipeline" / "_samples" / "invoice.pdf").is_file()
    reader = site / "pipeline" / "_reader"  # the tiny reader the CPU demo runs, with its pages and gold
    assert (reader / "params.json").is_file() and len(list(reader.glob("consolidated-*.safetensors"))) == 2
    assert (reader / "pages" / "docvqa.jsonl").is_file() and list((reader / "pages" / "docs").glob("invoice-*.pdf"))
    folder, expected = corpus
    model = tmp_path / "model"
    shutil.copytree(demo_model, model)
    (model / DEMO_MARKER).unlink()
    env = harness.env(PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(harness.REPO / "jobs" / "capacity.yaml"),
                           "--input", str(folder), "--output", "out", "--model", str(model), "--run-id", "cap",
                           "--set", "engine.device=cpu", *harness.FAST], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    probe = subprocess.run([sys.executable, "-c", "import pipeline, sys; print(pipeline.__file__)"], cwd=cwd, env=env,
                           capture_output=True, text=True, check=True)
    assert probe.stdout.startswith(str(site)) and not probe.stdout.startswith(str(harness.REPO))
    assert f"pages      {sum(expected.values())}" in proc.stdout and (cwd / "out" / "documents").is_dir()
    rows = output.read_pages(str(cwd / "out"), "cap").to_pylist()
    assert len(rows) == sum(expected.values()) * 3 and os.listdir(cwd / "out" / "pages")
    assert all("load_format=dummy" in r["model_id"] and "meaningless" in r["model_id"] for r in rows)

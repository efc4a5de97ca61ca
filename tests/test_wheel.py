"""An install that works outside the checkout: build a wheel, install it into a fresh folder, and run
a job from another directory, so nothing can be found by accident in the repository (schemas,
samples, the shipped models)."""
import os
import subprocess
import sys

import pytest

import jobs

pytestmark = pytest.mark.engine


def test_a_wheel_installed_elsewhere_runs_a_job_from_another_directory(tmp_path, corpus, demo_model):
    wheels, site, cwd = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    cwd.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(jobs.REPO)], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("docintel-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    assert (site / "pipeline" / "_schemas" / "tasks" / "docvqa.json").is_file()
    assert (site / "pipeline" / "_samples" / "invoice.pdf").is_file()
    folder, expected = corpus
    env = jobs.env(PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--input", str(folder), "--output", "out",
                           "--model", demo_model, "--task", "fields", "--set", "task.fields_schema=invoice",
                           "--set", "task.max_tokens=512", *jobs.FAST], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    probe = subprocess.run([sys.executable, "-c", "import pipeline, sys; print(pipeline.__file__)"], cwd=cwd, env=env,
                           capture_output=True, text=True, check=True)
    assert probe.stdout.startswith(str(site)) and not probe.stdout.startswith(str(jobs.REPO))
    assert f"pages      {sum(expected.values())}" in proc.stdout and (cwd / "out" / "documents").is_dir()
    assert os.listdir(cwd / "out" / "pages")

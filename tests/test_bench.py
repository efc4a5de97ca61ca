"""The benchmark scripts stay runnable: tiny runs on the CPU (their numbers mean nothing here; the
checks are that both sides of a comparison did the same work)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import harness

REPO = Path(__file__).resolve().parents[1]


def _bench(*args, timeout=600):
    env = harness.env()
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_render_bench_renders_every_page_of_every_case(tmp_path):
    out = tmp_path / "render.json"
    _bench("bench/bench_render.py", "--docs", "2", "--pages", "2", "--sides", "512", "--out", str(out))
    results = json.loads(out.read_text())["results"]
    assert {r["case"] for r in results} == {"pixmap", "png", "jpeg", "pages", "guarded"}
    for r in results:
        assert r["pages"] == (4 if r["docs"] == "vector" else 2), r
        assert r["pages_per_s_per_core"] > 0


@pytest.mark.engine
def test_gpu_bench_compares_raw_and_pipeline_on_identical_requests(tmp_path, demo_model):
    out = tmp_path / "cmp.json"
    _bench("bench/bench_gpu.py", "compare", "--model", demo_model, "--pages", "3", "--sides", "384",
           "--max-tokens", "8", "--set", "engine.device=cpu", "--set", "engine.max_model_len=4096",
           "--set", "engine.separate_core=false", "--work", str(tmp_path / "work"), "--out", str(out), "--min-ratio", "0")
    summary = json.loads(out.read_text())
    raw, pipe = summary["results"]
    assert (raw["stage"], pipe["stage"]) == ("raw", "pipeline")
    assert raw["pages"] == pipe["pages"] == 3 and pipe["rows"] == 3 * 4
    # The same requests on both sides: same prompt per page, same output budget (random weights fill it).
    assert raw["prompt_tokens_per_page"] == pipe["prompt_tokens_per_page"]
    assert raw["output_tokens_per_page"] == pipe["output_tokens_per_page"] == 4 * 8
    assert summary["pipeline_over_raw"] == round(pipe["pages_per_s"] / raw["pages_per_s"], 3)
    assert pipe["engines"] == 1 and pipe["first_request_after_ready_s"] >= 0  # from the run's record
    assert pipe["cpu_stage_tasks"] >= 1 and pipe["cpu_stage_most_at_once"] >= 1 and pipe["documents_per_task"] >= 1
    assert out.with_suffix(".pipeline.log").is_file() and any(out.with_suffix(".ray-data").iterdir())

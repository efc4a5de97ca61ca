"""The benchmark scripts stay runnable: tiny runs on the CPU (their numbers mean nothing here; the
checks are that both sides of a comparison did the same work, and that each script measured every
step it names). Every script in bench/ has its run here or names the test that runs it
(`test_every_bench_script_has_a_smoke_run`)."""
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


def test_blank_bench_measures_both_ways_on_every_corpus_at_both_renders(tmp_path):
    out = tmp_path / "blank.json"
    _bench("bench/bench_blank.py", "--pages", "1", "--out", str(out))
    result = json.loads(out.read_text())
    groups = {(r["render"], r["group"], r["kind"]) for r in result["results"]}
    assert {g[0] for g in groups} == {"default", "reader"} and len(groups) == 2 * len({g[1:] for g in groups})
    assert {g[1] for g in groups} == {"samples", "tests", "tests-hostile", "reader", "sparse", "near-blank"}
    assert all(r["pages"] >= 1 for r in result["results"]), result["results"]
    assert result["summary"]["guarded_split_agrees"] and all("gated" in p for p in result["pages"])  # all rendered


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


# bench/ scripts whose smoke run lives in another test file (it would cost a second engine start here)
RUN_ELSEWHERE = {
    "reader_check.py": "tests/test_tiny_reader_eval.py",  # through gpu_run.sh reader, on the real engine
    "gpu_run.sh": "tests/test_tiny_reader_eval.py",
    "synthetic_run.py": "tests/test_commit_scale.py",  # its build and commit commands; bench_commit below too
}


def test_every_bench_script_has_a_smoke_run():
    here = Path(__file__).read_text()
    for script in sorted(p.name for p in (REPO / "bench").iterdir() if p.suffix in (".py", ".sh")):
        if script in RUN_ELSEWHERE:
            assert script in (REPO / RUN_ELSEWHERE[script]).read_text(), script
        else:
            assert f'"bench/{script}"' in here, f"bench/{script} has no smoke run in tests/test_bench.py"


def test_commit_bench_measures_every_commit_step_of_a_small_synthetic_run(tmp_path):
    out = tmp_path / "commit.json"
    _bench("bench/bench_commit.py", "--pages", "200", "--questions", "2", "--cpus", "2",
           "--out", str(tmp_path / "work"), "--json-out", str(out))
    result = json.loads(out.read_text())
    assert result["check"]["ok"] and result["check"]["page_rows"] == result["spec"]["page_table_rows"] > 0
    # each step the bench wraps still exists under its name (a rename made it fail before it measured)
    steps = [s["step"].split()[0] for s in result["driver"]["steps"]]
    assert steps == ["ray.init", "context", "1", "2", "3a", "3b", "3c", "3d", "4", "5"], steps
    assert result["target"]["met"] is False  # a few thousand rows are not the 2 M rows the target is about


def test_bigpdf_bench_renders_every_page_in_every_case(tmp_path):
    out = tmp_path / "bigpdf.json"
    _bench("bench/bench_bigpdf.py", "--pages", "6", "--cases", "guarded,default,split,stream", "--results", str(out))
    cases = json.loads(out.read_text())["cases"]
    assert [c["case"] for c in cases] == ["guarded", "default", "split", "stream"]
    assert all(c["rows"] == 6 and not c.get("errors") and c["wall_s"] > 0 for c in cases), cases


def test_pixtral_patch_check_says_why_it_does_not_apply_without_a_gpu(tmp_path):
    out = tmp_path / "patch.json"
    _bench("bench/check_pixtral_patch.py", "--out", str(out))
    result = json.loads(out.read_text())
    assert result["gpu"] is None and result["needs_patch"] is False and result["skipped"]


@pytest.mark.engine
def test_engine_bench_asks_each_and_together_on_the_same_pages(tmp_path, demo_model):
    out = tmp_path / "engine.json"
    _bench("bench/bench_engine.py", "--model", demo_model, "--device", "cpu", "--pages", "2", "--questions", "2",
           "--sides", "384", "--max-tokens", "8", "--work", str(tmp_path / "pages"), "--out", str(out))
    each, together = json.loads(out.read_text())
    assert (each["mode"], together["mode"]) == ("each", "together")
    assert each["rows"] == together["rows"] == 4 and (each["requests"], together["requests"]) == (4, 2)
    assert each["errors"] == together["errors"] == 0

"""End to end through the CLI: a folder of generated documents, local Ray, the real vLLM engine
on the CPU (tiny random-weight model), Parquet out, read back with pyarrow, pandas and DuckDB."""
import json
import os
import subprocess
import sys

import duckdb
import jsonschema
import pyarrow.parquet as pq
import pytest

from pipeline import output
from pipeline.tasks import get_task

QUESTIONS = ["What is the total?", "What is the date?"]


def _docintel(*args, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_ADDRESS="", PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS")
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_no_gpu_stops_at_once_and_names_the_demo_model(tmp_path, corpus):
    folder, _ = corpus
    proc = _docintel("run", "jobs/docvqa.yaml", "--input", str(folder), "--output", str(tmp_path / "out"),
                     timeout=60)
    assert proc.returncode == 2
    assert "No GPU" in proc.stderr and "docintel demo-model" in proc.stderr and "MEANINGLESS" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.engine
def test_cli_run_writes_one_valid_row_per_page_and_question(tmp_path, corpus, demo_model):
    folder, expected_pages = corpus
    out = tmp_path / "out"
    runs = []
    for run_id in ("first", "second"):
        proc = _docintel("run", "jobs/docvqa.yaml", "--input", str(folder), "--output", str(out),
                         "--model", demo_model, "--run-id", run_id, "--set", "ray.progress_bars=false",
                         "--set", "render.max_side=768", "--set", f"task.questions={json.dumps(QUESTIONS)}")
        assert proc.returncode == 0, proc.stderr[-4000:]
        runs.append(proc.stdout)
    summary = runs[0]
    pages = sum(expected_pages.values())
    assert f"pages      {pages}" in summary and "random weights" in summary and "pages/s" in summary

    # Each run its own committed partition.
    assert output.committed_runs(str(out)) == ["first", "second"]
    marker = output.read_marker(output.run_dir(str(out), "first"))
    assert marker["rows"] == pages * len(QUESTIONS) and marker["documents"] == len(expected_pages)

    table = output.read_results(str(out), "first")
    assert table.num_rows == pages * len(QUESTIONS)
    assert table.schema.remove(0).equals(output.SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    schema = get_task("docvqa").schema
    for row in rows:
        assert row["valid"] and row["error_kind"] is None, row
        jsonschema.validate(json.loads(row["answer_json"]), schema)
        assert row["prompt_tokens"] > 0 and row["output_tokens"] > 0 and row["width"] <= 768
        assert "random weights" in row["model_id"]
    per_doc = {}
    for row in rows:
        per_doc.setdefault(os.path.basename(row["source_uri"]), set()).add((row["page_index"], row["question"]))
    assert {k: len(v) for k, v in per_doc.items()} == {k: n * len(QUESTIONS) for k, n in expected_pages.items()}

    # Document ids are content hashes: identical across the two runs.
    second = output.read_results(str(out), "second").to_pylist()
    ids = lambda rs: sorted({(r["source_uri"], r["doc_id"]) for r in rs})  # noqa: E731
    assert ids(rows) == ids(second)

    # Whole output as analysts read it: the run is a Hive partition column.
    whole = pq.read_table(out)
    assert whole.num_rows == 2 * pages * len(QUESTIONS)
    counts = duckdb.sql(f"select run_id, count(*) from read_parquet('{out}/*/*.parquet', hive_partitioning=true) "
                        "group by run_id order by run_id").fetchall()
    assert counts == [("first", pages * len(QUESTIONS)), ("second", pages * len(QUESTIONS))]


@pytest.mark.engine
def test_capacity_job_runs_dummy_weights_and_labels_every_row(tmp_path, corpus, demo_model):
    """jobs/capacity.yaml: load_format=dummy on a model folder that is NOT a demo folder (as a real
    model's config would be): it runs, and every row says its answers are meaningless."""
    import shutil

    from pipeline.demo_model import DEMO_MARKER

    folder, expected_pages = corpus
    model = tmp_path / "model"
    shutil.copytree(demo_model, model)
    (model / DEMO_MARKER).unlink()
    out = tmp_path / "out"
    proc = _docintel("run", "jobs/capacity.yaml", "--input", str(folder), "--output", str(out),
                     "--model", str(model), "--run-id", "cap", "--set", "engine.device=cpu",
                     "--set", "ray.progress_bars=false", "--set", "render.max_side=512",
                     "--set", "engine.max_model_len=4096")
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = output.read_results(str(out), "cap").to_pylist()
    assert len(rows) == sum(expected_pages.values()) * 3
    assert all("load_format=dummy" in r["model_id"] and "meaningless" in r["model_id"] for r in rows)

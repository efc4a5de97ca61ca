"""End to end through the CLI: a folder of generated documents, local Ray, the real vLLM engine on the
CPU (tiny random-weight model), both tables written with their schemas (tests/test_readers.py reads
the same output with pyarrow, pandas, DuckDB, Polars and Spark); and two refusals before any work."""
import json
import os

import jsonschema
import pyarrow.parquet as pq

import harness
from pipeline.store import output
from pipeline.core.rows import DOCUMENT_TABLE, PAGE_TABLE
from pipeline.tasks import get_task

from conftest import QUESTIONS, RUNS


def test_no_gpu_stops_at_once_and_names_the_demo_model(tmp_path, corpus):
    folder, _ = corpus
    proc = harness.run("run", "jobs/docvqa.yaml", "--input", str(folder), "--output", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 2
    assert "No GPU" in proc.stderr and "docintel demo-model" in proc.stderr and "MEANINGLESS" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_run_writes_both_tables_one_row_per_page_and_question(output_with_two_runs, corpus):
    _, expected_pages = corpus
    out = output_with_two_runs
    first, second = RUNS
    summary = out.with_name(f"{first}.stdout").read_text()
    pages = sum(expected_pages.values())
    assert f"pages      {pages}" in summary and "random weights" in summary and "pages/s" in summary
    assert output.committed_runs(str(out)) == [first, second]
    rows = harness.assert_exactly_once(out, first, expected_pages, QUESTIONS)
    schema = get_task("docvqa").schema
    for row in rows:
        assert row["valid"] or "does not fit a finite double" in row["error"], row  # random weights: see test_engine_cpu
        if row["valid"]:
            jsonschema.validate(json.loads(row["answer_json"]), schema)
        assert row["prompt_tokens"] > 0 and row["output_tokens"] > 0 and row["width"] <= 512
        assert "random weights" in row["model_id"] and row["run_id"] == first
    pdf_rows = [r for r in rows if r["source_uri"].endswith(".pdf") and r["valid"]]
    assert pdf_rows and all(r["grounded"] is not None for r in pdf_rows)  # a text layer: the answer was looked for
    assert all(r["grounded"] is None for r in rows if not r["source_uri"].endswith(".pdf"))

    # Document ids are content hashes: identical across the two runs.
    again = output.read_pages(str(out), second).to_pylist()
    ids = lambda rs: sorted({(r["source_uri"], r["doc_id"]) for r in rs})  # noqa: E731
    assert ids(rows) == ids(again)

    # The document table: one row per (document, question).
    docs = output.read_documents(str(out), first).to_pylist()
    assert sorted((os.path.basename(d["source_uri"]), d["question"]) for d in docs) == sorted(
        (name, q) for name in expected_pages for q in QUESTIONS)
    assert all(d["status"] in ("ok", "partial") and d["pages_answered"] >= 0 for d in docs)

    # Whole folders as analysts read them: tests/test_readers.py, on this same output.
    assert set(pq.read_schema(next((out / "pages" / first).glob("*.parquet"))).names) == set(PAGE_TABLE.names)
    assert set(pq.read_schema(next((out / "documents" / first).glob("*.parquet"))).names) == set(DOCUMENT_TABLE.names)


def test_a_fields_schema_whose_names_cannot_be_columns_is_refused_before_any_engine(tmp_path, corpus):
    folder, _ = corpus
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"status": {"type": "string"}}}))
    proc = harness.run("run", "--input", str(folder), "--output", str(tmp_path / "out"), "--task", "fields",
                    "--set", f"task.fields_schema={schema}", "--device", "cpu", timeout=60)
    assert proc.returncode == 2 and "property 'status'" in proc.stderr and not (tmp_path / "out").exists()

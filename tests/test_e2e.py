"""End to end through the CLI: a folder of generated documents, local Ray, the real vLLM engine on the
CPU (tiny random-weight model), both tables written, read back as the README says with pyarrow,
pandas and DuckDB."""
import json
import os

import duckdb
import jsonschema
import pandas as pd
import pyarrow.parquet as pq
import pytest

import jobs
from pipeline import output
from pipeline.rows import DOCUMENT_TABLE, PAGE_TABLE
from pipeline.tasks import get_task

from conftest import QUESTIONS, RUNS


def test_no_gpu_stops_at_once_and_names_the_demo_model(tmp_path, corpus):
    folder, _ = corpus
    proc = jobs.run("run", "jobs/docvqa.yaml", "--input", str(folder), "--output", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 2
    assert "No GPU" in proc.stderr and "docintel demo-model" in proc.stderr and "MEANINGLESS" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.engine
def test_cli_run_writes_both_tables_one_row_per_page_and_question(output_with_two_runs, corpus):
    _, expected_pages = corpus
    out = output_with_two_runs
    first, second = RUNS
    summary = out.with_name(f"{first}.stdout").read_text()
    pages = sum(expected_pages.values())
    assert f"pages      {pages}" in summary and "random weights" in summary and "pages/s" in summary
    assert output.committed_runs(str(out)) == [first, second]
    rows = jobs.assert_exactly_once(out, first, expected_pages, QUESTIONS)
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

    # Whole folders as analysts read them (README): committed runs only, run_id a string column.
    whole = pq.read_table(out / "pages")
    assert whole.num_rows == 2 * pages * len(QUESTIONS) and whole.schema.field("run_id").type == "string"
    assert pq.read_table(out / "documents").num_rows == 2 * len(docs)
    assert len(pd.read_parquet(out / "pages", dtype_backend="pyarrow")) == whole.num_rows
    counts = duckdb.sql(f"select run_id, count(*) from read_parquet('{out}/pages/**/*.parquet') "
                        "group by run_id order by run_id").fetchall()
    assert counts == [(first, pages * len(QUESTIONS)), (second, pages * len(QUESTIONS))]
    assert set(whole.schema.names) == set(PAGE_TABLE.names)
    assert set(pq.read_schema(next((out / "documents" / first).glob("*.parquet"))).names) == set(DOCUMENT_TABLE.names)


@pytest.mark.engine
def test_fields_become_typed_columns_of_the_document_table(tmp_path, corpus, demo_model):
    folder, expected_pages = corpus
    out = tmp_path / "out"
    proc = jobs.run("run", "--input", str(folder / "invoice.pdf"), "--input", str(folder / "receipt.png"),
                    "--output", str(out), "--model", demo_model, "--task", "fields", "--run-id", "f",
                    "--set", "task.fields_schema=invoice", "--set", "task.max_tokens=512", *jobs.FAST)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = duckdb.sql(f"select source_uri, total, invoice_date, line_items, field_errors, field_details "
                     f"from read_parquet('{out}/documents/*/*.parquet') where total > -1e300 or total is null")
    types = dict(zip(got.columns, got.types))
    assert str(types["total"]) == "DOUBLE" and str(types["invoice_date"]) in ("DATE", "VARCHAR")
    assert str(types["line_items"]).startswith("STRUCT") and str(types["line_items"]).endswith("[]")
    rows = got.fetchall()
    assert len(rows) == 2  # one row per document
    docs = output.read_documents(str(out), "f").to_pylist()
    for doc in docs:  # a value that did not convert is null, and says why
        for path in doc["field_errors"] or []:
            assert doc[path[0].split(".")[0]] is None or "." in path[0]


def test_a_fields_schema_whose_names_cannot_be_columns_is_refused_before_any_engine(tmp_path, corpus):
    folder, _ = corpus
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"status": {"type": "string"}}}))
    proc = jobs.run("run", "--input", str(folder), "--output", str(tmp_path / "out"), "--task", "fields",
                    "--set", f"task.fields_schema={schema}", "--device", "cpu", timeout=60)
    assert proc.returncode == 2 and "property 'status'" in proc.stderr and not (tmp_path / "out").exists()

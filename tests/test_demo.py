"""The first ten minutes: `docintel demo` on the CPU, as the README's first command runs it (the real
engine end to end for docvqa, chartqa and fields; the fields run's document table is checked for its
typed columns); the README's demo-model command on the shipped samples, verbatim; and a quiet
terminal: no vLLM INFO lines in a default run's output, while the log folder the summary names
holds them."""
import re
import shlex
import subprocess
from pathlib import Path

import duckdb
import pytest

import harness
from pipeline.store import output

pytestmark = pytest.mark.engine
README = (harness.REPO / "README.md").read_text()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(harness.command("demo", "--output", str(tmp_path / "demo")), capture_output=True, text=True,
                          timeout=1500, env=harness.env(XDG_CACHE_HOME=str(tmp_path / "cache")), cwd=tmp_path)
    return tmp_path, proc


def test_docintel_demo_shows_the_whole_product(demo):
    tmp_path, proc = demo
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    assert "MEANINGLESS" in text and "Where to look" in text
    for task in ("docvqa", "chartqa", "fields"):
        out = str(tmp_path / "demo" / task)
        assert output.committed_runs(out) == [f"demo-{task}"]
        assert output.read_pages(out).num_rows and output.read_documents(out).num_rows
    assert (tmp_path / "demo" / "docvqa" / "_eval" / "demo-docvqa" / "report.html").is_file()
    review = (tmp_path / "demo" / "review.html").read_text()
    assert "<html" in review and "invoice.pdf" in review
    assert (tmp_path / "cache" / "docintel" / "demo-model" / "params.json").is_file()  # written once, cached
    # quiet: docintel's lines, not vLLM's or Ray's (README, "Watching a run": the one line of Ray's left)
    assert not re.search(r"\bINFO\b.*\[(core|llm|model|gpu_model_runner|cpu_model_runner)", text)
    assert "Token authentication" not in text and "Progress bars disabled" not in text
    assert "docintel: engine ready in" in text


def test_fields_become_typed_columns_of_the_document_table(demo):
    tmp_path, proc = demo
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = tmp_path / "demo" / "fields"
    got = duckdb.sql(f"select source_uri, total, invoice_date, line_items, field_errors, field_details "
                     f"from read_parquet('{out}/documents/*/*.parquet') where total > -1e300 or total is null")
    types = dict(zip(got.columns, got.types))
    assert str(types["total"]) == "DOUBLE" and str(types["invoice_date"]) in ("DATE", "VARCHAR")
    assert str(types["line_items"]).startswith("STRUCT") and str(types["line_items"]).endswith("[]")
    assert len(got.fetchall()) == 2  # one row per document: the invoice and the scanned letter
    for doc in output.read_documents(str(out), "demo-fields").to_pylist():  # a value that did not convert is
        for path in doc["field_errors"] or []:                               # null, and says why
            assert doc[path[0].split(".")[0]] is None or "." in path[0]


def test_the_readme_demo_model_command_runs_on_the_samples_and_keeps_vllm_logs_in_the_log_folder(tmp_path):
    line = next(m.group(1) for m in re.finditer(r"`(docintel demo-model [^`]+)`", README) if "--input samples" in m.group(1))
    for part in line.split("&&"):
        argv = shlex.split(part.strip())
        assert argv[0] == "docintel"
        # run from another folder, as a user would: the repository's own paths made absolute
        argv = [str(harness.REPO / a) if a == "samples" or a.startswith("jobs/") else a for a in argv[1:]]
        if argv[0] == "run":
            argv += ["--set", "render.max_side=512", "--set", "engine.max_model_len=8192"]  # CPU: minutes, not hours
        proc = subprocess.run(harness.command(*argv), capture_output=True, text=True, timeout=1200, env=harness.env(),
                              cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-4000:]
    text = proc.stdout + proc.stderr
    assert "INFO" not in text and "Triton" not in text, text[-3000:]
    logs = Path(re.search(r"logs\s+(\S+)", proc.stdout).group(1))
    held = "".join(p.read_text(errors="replace") for p in logs.glob("worker-*") if p.is_file())
    assert "INFO" in held and "EngineCore" in held  # vLLM's own log lines, in the log folder
    assert output.read_pages(str(tmp_path / "out")).num_rows >= 5

"""No environment variable switches a run to a stand-in engine, kills a process, writes a file or
sleeps: the package reads no test variable (the tests' faults live in tests/faults_plugin.py and reach
a job only as its own settings), and every row names what the engine actor actually built.

The same on a real cluster whose workers carry every test fault: tests/test_tiny_reader_eval.py."""
import json

import pyarrow as pa

import harness
from pipeline.core.config import EngineSpec, RenderSpec, TaskSpec
from pipeline.core.rows import DOCUMENT, REQUEST
from pipeline.engine.model import model_label

STRAY = json.loads(harness.STRAY["DOCINTEL_FAULTS"])


def test_a_stray_variable_does_not_relabel_the_model(monkeypatch):
    monkeypatch.setenv("DOCINTEL_FAULTS", harness.STRAY["DOCINTEL_FAULTS"])
    assert model_label(EngineSpec(model="org/model")) == "org/model"
    # a stand-in is a job setting, and then every label says so
    double = model_label(EngineSpec(model="org/model", backend="engine_double:EngineDouble"))
    assert double.startswith("org/model [engine double engine_double:EngineDouble")


def test_rendering_ignores_a_stray_or_malformed_variable(monkeypatch, tmp_path):
    """A malformed value once raised inside the split stage, outside the render guard: every document
    of the run got a not_processed row. A valid one slowed every page."""
    from docgen import make_pdf

    from pipeline.job.run import _split

    path = make_pdf(tmp_path / "a.pdf", pages=2)
    batch = DOCUMENT.table([{"doc_id": "a", "source_uri": str(path), "data": path.read_bytes()}])
    for value in ("{not json", harness.STRAY["DOCINTEL_FAULTS"]):
        monkeypatch.setenv("DOCINTEL_FAULTS", value)
        pages = pa.concat_tables(list(_split(batch, RenderSpec(max_side=256), None))).to_pylist()
        assert [p["page_index"] for p in pages] == [0, 1] and not any(p["error_kind"] for p in pages)


def test_rows_carry_what_the_actor_built(monkeypatch, tmp_path):
    """The engine actor labels its rows from what it built, whatever the environment says."""
    from docgen import make_pdf

    from pipeline.answers.answers import answer_rows
    from pipeline.engine.actor import EngineActor
    from pipeline.ingest.pages import split_document
    from pipeline.ingest.request import request_row
    from pipeline.tasks import get_task

    monkeypatch.setenv("DOCINTEL_FAULTS", harness.STRAY["DOCINTEL_FAULTS"])
    spec = EngineSpec(model="org/model", backend="engine_double:EngineDouble")
    actor = EngineActor(spec, "cpu", None)
    path = make_pdf(tmp_path / "a.pdf", pages=1)
    page, = split_document({"doc_id": "a", "source_uri": str(path), "data": path.read_bytes()}, RenderSpec(max_side=256))
    task_spec = TaskSpec(questions=["What is the total?"])
    task = get_task("docvqa", task_spec)
    out = actor(REQUEST.table([request_row(page, task, task_spec, None, 4096)])).to_pylist()
    assert out[0]["model_id"] == model_label(spec)
    # the job's own label loses: the row says what answered
    row, = answer_rows(out[0], task, "r", "org/model", __import__("datetime").datetime.now())
    assert row["model_id"] == model_label(spec) and "engine double" in row["model_id"]
    assert STRAY["step_error_once"] and not __import__("os").path.exists(STRAY["step_error_once"])
    actor.shutdown()


def test_the_package_reads_no_test_variable():
    sources = [p.read_text() for p in (harness.REPO / "pipeline").rglob("*.py")]
    assert not any("DOCINTEL_FAULTS" in text for text in sources)

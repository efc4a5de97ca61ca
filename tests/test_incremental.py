"""--incremental skips only what the same job already answered: the same content, task, questions,
prompt version, model and rendering; a document cut by render.max_pages is redone when the limit
rises. The done set travels to the read tasks once, through Ray's object store."""
import os
import shutil

import harness
from docgen import make_pdf
from pipeline.store import output
from pipeline.core.config import JobSpec, TaskSpec
from pipeline.commit.identity import document_key, fingerprint
from pipeline.tasks import get_task


def _key(spec: JobSpec, questions=None) -> str:
    return document_key(fingerprint(spec, get_task(spec.task.name, spec.task)), questions)


def test_the_key_changes_with_everything_that_changes_an_answer_and_not_with_the_page_limit():
    base = JobSpec(task=TaskSpec(questions=["q"]))
    same = [JobSpec(task=TaskSpec(questions=["q"])), JobSpec(task=TaskSpec(questions=["q"]), render={"max_pages": 9}),
            JobSpec(task=TaskSpec(questions=["q"]), render={"blank_page": {"enabled": True}})]  # the default
    other = [JobSpec(task=TaskSpec(questions=["q2"])), JobSpec(task=TaskSpec(name="classify")),
             JobSpec(task=TaskSpec(questions=["q"]), engine={"model": "/models/other"}),
             JobSpec(task=TaskSpec(questions=["q"]), render={"max_side": 1024}),
             JobSpec(task=TaskSpec(questions=["q"]), render={"blank_page": {"enabled": False}}),  # other pages asked
             JobSpec(task=TaskSpec(questions=["q"], question_mode="each")),
             JobSpec(task=TaskSpec(questions=["q"]), engine={"temperature": 0.0})]
    assert all(_key(s) == _key(base) for s in same)
    assert len({_key(s) for s in other} | {_key(base)}) == len(other) + 1
    assert _key(base, ["manifest question"]) != _key(base)  # a document's own questions count


def test_incremental_runs_redo_what_changed_and_only_that(tmp_path, demo_model, ray_cluster):
    """The engine is the double (tests/engine_double.py): the subject is what is skipped and why."""
    folder, out = tmp_path / "docs", tmp_path / "out"
    for i in range(3):
        make_pdf(folder / f"doc{i}.pdf", pages=1, title=f"Invoice {i}", chart=False)
    make_pdf(folder / "long.pdf", pages=4, chart=False)

    def run(run_id, max_pages):
        proc = harness.run("run", "--input", str(folder), "--output", str(out), "--model", demo_model, "--run-id", run_id,
                        "--incremental", "--question", "What is the total?", *harness.FAST,
                        "--set", f"render.max_pages={max_pages}", "--address", ray_cluster, **harness.double())
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows = output.read_pages(str(out), run_id).to_pylist()
        answered = sorted({os.path.basename(r["source_uri"]) for r in rows if r["error_kind"] != "skipped_unchanged"})
        skipped = {os.path.basename(r["source_uri"]): r for r in rows if r["error_kind"] == "skipped_unchanged"}
        return proc, answered, skipped

    _, answered, skipped = run("night1", max_pages=2)
    assert answered == ["doc0.pdf", "doc1.pdf", "doc2.pdf", "long.pdf"] and not skipped
    make_pdf(folder / "doc1.pdf", pages=1, title="Invoice 1, corrected", chart=False)  # changed
    make_pdf(folder / "doc3.pdf", pages=1, title="Invoice 3", chart=False)  # new
    shutil.copy(folder / "doc0.pdf", folder / "doc0-copy.pdf")  # same content under a new name
    # and a higher page limit: the document that was cut is redone, now whole
    proc, answered, skipped = run("night2", max_pages=4)
    assert answered == ["doc1.pdf", "doc3.pdf", "long.pdf"]
    assert sorted(skipped) == ["doc0-copy.pdf", "doc0.pdf", "doc2.pdf"]
    assert "night1" in skipped["doc2.pdf"]["error"] and "skipped as unchanged 3" in proc.stdout
    long_rows = [r for r in output.read_pages(str(out), "night2").to_pylist() if r["source_uri"].endswith("long.pdf")]
    assert sorted(r["page_index"] for r in long_rows) == [0, 1, 2, 3]
    # (other questions, task, model, prompts or rendering: other keys; the unit test above)

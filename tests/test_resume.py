"""Exactly once under interruption: the driver (and everything it started) is killed while pages
are answered and written, again during the resume, and once more during the commit; a corrupt file
and a page written twice are left in staging; `--resume` then commits the run with one row per
(document, page, question), and a resume of a committed run is refused. A resume is the same job:
other inputs or settings are refused, saying what differs, before Ray starts.

The engine is the double (tests/engine_double.py, slowed to 0.4 s a step so that the kills land
mid-run): the subject is the run's bookkeeping. The engine under faults is tests/test_faults_engine.py."""
import json
import shutil
import time

import pytest

import harness
from docgen import make_pdf
from pipeline.commit import resume
from pipeline.store import fileio, layout, output
from pipeline.core.rows import LISTED

from conftest import RUNS

Q = ["What is the total?"]


def _docs(folder, n=6, pages=2):
    for i in range(n):
        make_pdf(folder / f"doc{i}.pdf", pages=pages, title=f"Invoice {i}", chart=False)
    return {f"doc{i}.pdf": pages for i in range(n)}


def _args(folder, out, model, *extra):
    # one page per engine batch and per file: files appear while the job runs, one after another
    return ["run", "--input", str(folder), "--output", str(out), "--model", model, "--question", Q[0], *harness.FAST,
            "--set", "engine.batch_size=1", "--set", "output.pages_per_file=1", *extra]


def _kill_after_files(args, log, out, run_id, files):
    proc = harness.start(*args, log=log, **harness.double(step_s=0.4))
    harness.wait_for(lambda: len(harness.staged_files(out, run_id)) >= files, 600, f"{files} staged file(s)", proc, log)
    harness.kill_tree(proc)
    assert output.marker(str(out), run_id) is None
    return len(harness.staged_files(out, run_id))


@pytest.mark.faults
def test_killed_mid_run_mid_resume_and_mid_commit_then_resumed_exactly_once(tmp_path, demo_model, ray_cluster):
    folder, out = tmp_path / "docs", tmp_path / "out"
    expected = _docs(folder)
    paths = layout.RunPaths(str(out), "nightly")
    written = _kill_after_files(_args(folder, out, demo_model, "--run-id", "nightly"), tmp_path / "1.log", out,
                                "nightly", 2)
    assert written < sum(expected.values())  # some pages done, some not
    # attempt 2 dies too, after writing more: its leftovers must not be committed twice by attempt 3
    written = _kill_after_files(_args(folder, out, demo_model, "--resume", "nightly"), tmp_path / "2.log", out,
                                "nightly", written + 2)
    # attempt 3 answers the rest and dies in the commit, with the derived files staged
    log = tmp_path / "3.log"
    proc = harness.start(*_args(folder, out, demo_model, "--resume", "nightly"), log=log,
                      **harness.double(pause_at="commit_move", pause_s=300))
    harness.wait_for(lambda: "paused at commit_move" in log.read_text(), 600, "the commit", proc, log)
    assert fileio.list_files(paths.manifest) and fileio.list_files(paths.staging("documents"))
    harness.kill_tree(proc)
    assert output.committed_runs(str(out)) == []
    # a corrupt file in staging is set aside, its pages redone ...
    staged = harness.staged_files(out, "nightly")
    assert len(staged) == sum(expected.values())
    with open(staged[0], "r+b") as f:
        f.truncate(100)
    # ... and a writer of a killed attempt that lived on for a moment (on a cluster) wrote a page twice
    shutil.copy(staged[1], staged[1].replace("part-", "part-zz-"))
    # the last resume, which nothing kills, joins the session's Ray
    done = harness.run(*_args(folder, out, demo_model, "--resume", "nightly", "--address", ray_cluster),
                       **harness.double())
    assert done.returncode == 0, done.stderr[-3000:]
    rows = harness.assert_exactly_once(out, "nightly", expected, Q)
    assert all(r["valid"] for r in rows)
    manifest = [r for f in fileio.list_files(paths.manifest) for r in fileio.read_parquet(f).to_pylist()]
    assert len(manifest) == 6 and {m["status"] for m in manifest} == {"ok"} and {m["pages"] for m in manifest} == {2}
    quarantined = sorted(p.rsplit("/", 1)[1] for p in fileio.list_files(paths.quarantine))
    assert quarantined == sorted([staged[0].rsplit("/", 1)[1], staged[1].replace("part-", "part-zz-").rsplit("/", 1)[1]])

    again = harness.run(*_args(folder, out, demo_model, "--resume", "nightly"), **harness.double())
    assert again.returncode == 2 and "already committed" in again.stderr


def test_a_resume_that_is_not_the_same_job_is_refused_before_ray_starts(output_with_a_killed_run, corpus, demo_model):
    """Against the shared output's killed and committed runs (conftest.output_with_a_killed_run)."""
    folder, _ = corpus
    out = output_with_a_killed_run
    killed = ["run", "--input", str(folder), "--output", str(out), "--model", demo_model, "--question", "Who signed?",
              *harness.FAST, "--set", "engine.batch_size=1", "--set", "output.pages_per_file=1"]
    began = time.monotonic()
    other = harness.run(*killed, "--resume", "killed", timeout=120, **harness.double())
    assert other.returncode == 2 and "other settings" in other.stderr and "questions" in other.stderr, other.stderr
    never = harness.run(*killed, "--resume", "never-started", timeout=120)
    assert never.returncode == 2 and "never started" in never.stderr
    committed = harness.run(*killed, "--resume", RUNS[0], timeout=120)
    assert committed.returncode == 2 and "already committed" in committed.stderr
    assert "Ray" not in other.stderr + never.stderr + committed.stderr  # no Ray was started to say so
    assert time.monotonic() - began < 120
    assert output.marker(str(out), "killed") is None


def _record(tmp_path, listed: list[dict], fingerprint: dict) -> layout.RunPaths:
    paths = layout.RunPaths(str(tmp_path / "out"), "r")
    fileio.write_table(paths.inputs, LISTED.table(listed))
    fileio.write_json(paths.job, {"run_id": "r", "fingerprint": fingerprint})
    return paths


def test_resume_check_names_the_inputs_added_removed_and_changed(tmp_path):
    def doc(name, size=10, mtime=1):
        return {"source_uri": f"/docs/{name}", "questions": [], "size_bytes": size, "mtime_ns": mtime}

    printed = {"task": "docvqa", "questions": ["q"]}
    paths = _record(tmp_path, [doc("a.pdf"), doc("b.pdf"), doc("c.pdf")], printed)
    resume.check(paths, printed, LISTED.table([doc("a.pdf"), doc("b.pdf"), doc("c.pdf")]))  # the same job
    now = LISTED.table([doc("a.pdf"), doc("b.pdf", size=11), doc("c.pdf", mtime=2), doc("new.pdf")])
    with pytest.raises(resume.ResumeRefused) as refused:
        resume.check(paths, printed, now)
    text = str(refused.value)
    assert "other inputs" in text and "added 1: /docs/new.pdf" in text
    assert "changed (size or time) 2: /docs/b.pdf, /docs/c.pdf" in text and "removed" not in text
    with pytest.raises(resume.ResumeRefused, match="removed 2: /docs/b.pdf, /docs/c.pdf"):
        resume.check(paths, printed, LISTED.table([doc("a.pdf")]))
    with pytest.raises(resume.ResumeRefused, match="other settings"):
        resume.check(paths, dict(printed, questions=["other"]), LISTED.table([doc("a.pdf")]))
    fileio.write_json(paths.success, {"rows": 0})
    with pytest.raises(resume.ResumeRefused, match="already committed"):
        resume.check(paths, printed, LISTED.table([doc("a.pdf")]))
    with pytest.raises(resume.ResumeRefused, match="never started"):
        resume.check(layout.RunPaths(paths.output, "other"), printed, LISTED.table([doc("a.pdf")]))
    assert json.loads(fileio.read_bytes(paths.job))["run_id"] == "r"

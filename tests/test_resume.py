"""Exactly once under interruption: kill the driver (and everything it started) while pages are
answered and written, during a resume, and during the commit; `--resume` until committed; the
committed rows are one per (document, page, question), as an uninterrupted run's. A resume is the
same job: other inputs or settings are refused, saying what differs."""
import json
import shutil

import pytest

import jobs
from docgen import make_pdf
from pipeline import layout, output

pytestmark = [pytest.mark.engine, pytest.mark.faults]
Q = ["What is the total?"]


def _docs(folder, n=8, pages=2):
    for i in range(n):
        make_pdf(folder / f"doc{i}.pdf", pages=pages, title=f"Invoice {i}", chart=False)
    return {f"doc{i}.pdf": pages for i in range(n)}


def _args(folder, out, model, *extra):
    # one page per engine batch and per file: files appear while the job runs, one after another
    return ["run", "--input", str(folder), "--output", str(out), "--model", model, "--question", Q[0], *jobs.FAST,
            "--set", "engine.batch_size=1", "--set", "output.pages_per_file=1", *extra]


def _kill_after_files(args, log, out, run_id, files, **env):
    proc = jobs.start(*args, log=log, **env)
    jobs.wait_for(lambda: len(jobs.staged_files(out, run_id)) >= files, 600, f"{files} staged file(s)", proc, log)
    jobs.kill_tree(proc)
    assert output.marker(str(out), run_id) is None
    return len(jobs.staged_files(out, run_id))


def test_driver_killed_mid_run_and_mid_resume_then_resumed_exactly_once(tmp_path, demo_model):
    folder, out = tmp_path / "docs", tmp_path / "out"
    expected = _docs(folder)
    written = _kill_after_files(_args(folder, out, demo_model, "--run-id", "nightly"), tmp_path / "1.log", out,
                                "nightly", 2)
    assert written < sum(expected.values())  # some pages done, some not
    # attempt 2 dies too, after writing more (the item of the reliability issue: its leftovers must not
    # be committed twice by attempt 3)
    _kill_after_files(_args(folder, out, demo_model, "--resume", "nightly"), tmp_path / "2.log", out, "nightly",
                      written + 2)
    done = jobs.run(*_args(folder, out, demo_model, "--resume", "nightly"))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = jobs.assert_exactly_once(out, "nightly", expected, Q)
    assert all(r["valid"] for r in rows)
    manifest = [r for f in layout.list_files(layout.RunPaths(str(out), "nightly").manifest)
                for r in layout.read_parquet(f).to_pylist()]
    assert len(manifest) == 8 and {m["status"] for m in manifest} == {"ok"} and {m["pages"] for m in manifest} == {2}

    again = jobs.run(*_args(folder, out, demo_model, "--resume", "nightly"))
    assert again.returncode == 2 and "already committed" in again.stderr


def test_driver_killed_during_the_commit_then_resumed(tmp_path, demo_model):
    folder, out = tmp_path / "docs", tmp_path / "out"
    expected = _docs(folder, n=3)
    log = tmp_path / "1.log"
    proc = jobs.start(*_args(folder, out, demo_model, "--run-id", "c"), log=log,
                      DOCINTEL_FAULTS=json.dumps({"pause_at": "commit_move", "pause_s": 300}))
    jobs.wait_for(lambda: "paused at commit_move" in log.read_text(), 600, "the commit", proc, log)
    jobs.kill_tree(proc)
    assert output.committed_runs(str(out)) == []
    # a staged file left half-written (a writer killed on a local disk) is set aside, its pages redone
    staged = jobs.staged_files(out, "c")
    with open(staged[0], "r+b") as f:
        f.truncate(100)
    # and a writer of a killed attempt that lived on for a moment (on a cluster) wrote a page twice
    shutil.copy(staged[1], staged[1].replace("part-", "part-zz-"))
    done = jobs.run(*_args(folder, out, demo_model, "--resume", "c"))
    assert done.returncode == 0, done.stderr[-3000:]
    jobs.assert_exactly_once(out, "c", expected, Q)
    quarantined = sorted(p.rsplit("/", 1)[1] for p in layout.list_files(layout.RunPaths(str(out), "c").quarantine))
    assert quarantined == sorted([staged[0].rsplit("/", 1)[1], staged[1].replace("part-", "part-zz-").rsplit("/", 1)[1]])


def test_a_resume_with_other_inputs_or_settings_is_refused_and_says_what_differs(tmp_path, demo_model):
    folder, out = tmp_path / "docs", tmp_path / "out"
    _docs(folder, n=3, pages=1)
    paths = layout.RunPaths(str(out), "r")
    _kill_after_files(_args(folder, out, demo_model, "--run-id", "r"), tmp_path / "1.log", out, "r", 1)
    (folder / "doc2.pdf").unlink()
    make_pdf(folder / "doc1.pdf", pages=3, title="changed", chart=False)
    shutil.copy(folder / "doc0.pdf", folder / "new.pdf")
    refused = jobs.run(*_args(folder, out, demo_model, "--resume", "r"), timeout=120)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "other inputs" in refused.stderr and "added 1" in refused.stderr and "removed 1" in refused.stderr
    assert "changed (size or time) 1" in refused.stderr and "doc1.pdf" in refused.stderr
    other = jobs.run(*_args(folder, out, demo_model, "--resume", "r", "--question", "Who signed?"), timeout=120)
    assert other.returncode == 2 and "other settings" in other.stderr and "questions" in other.stderr
    never = jobs.run(*_args(folder, out, demo_model, "--resume", "never-started"), timeout=120)
    assert never.returncode == 2 and "never started" in never.stderr
    assert layout.read_json(paths.success) is None

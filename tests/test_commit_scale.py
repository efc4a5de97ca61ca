"""The commit killed mid-way and done again, on the nightly run's shape at a small size (issue "A
10-million-page nightly run", item 13: "test --resume on the same shape at a smaller size").

bench/synthetic_run.py writes a docvqa run straight into the run layout: ~600 listed documents of
1-9 pages x 2 questions, some listed with no row at all, some with a page missing, document-level
errors, render errors, invalid answers, documents with their own questions, documents cut by
render.max_pages. A child process commits it as run.py does and is SIGKILLed (with its local Ray)
while paused just before step 4 (DOCINTEL_FAULTS pause_at=commit_move), when the document table, the
not_processed rows and the manifest are all staged; a second child commits again, as `--resume`
does (commit_run redoes steps 1-5). The committed run must be exact: every staged row once, the
not_processed rows exactly for the pages and documents that have none, the document table one row
per (document, question), the manifest one row per listed document, and _SUCCESS's counts.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import harness

pytestmark = pytest.mark.faults  # the committing process is SIGKILLed
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import synthetic_run  # noqa: E402

from pipeline.store import fileio, layout, output  # noqa: E402


def _commit_command(out: Path, run_id: str, faults: bool = False) -> list[str]:
    """synthetic_run's commit; with `faults`, through the tests' plugin (DOCINTEL_FAULTS: the pause)."""
    return [sys.executable, *(("-m", "faults_plugin") if faults else ()), str(REPO / "bench" / "synthetic_run.py"),
            "commit", str(out), run_id, "--object-store-mb", "300"]


def test_commit_killed_before_the_move_then_done_again_is_exact(tmp_path):
    out, run_id = tmp_path / "out", "nightly-small"
    expect = synthetic_run.build(str(out), run_id, pages=3000, questions=2, max_pages=20, pages_per_file=128)
    paths = layout.RunPaths(str(out), run_id)
    staged = sorted(fileio.list_files(paths.staging("pages")))
    assert len(staged) == expect["staged_files"] > 20
    assert expect["not_processed"] > 10 and expect["doc_kinds"]["no_rows"] and expect["doc_kinds"]["cut"]

    log = tmp_path / "first.log"
    first = subprocess.Popen(_commit_command(out, run_id, faults=True), stdout=log.open("w"), stderr=subprocess.STDOUT,
                             env=harness.env(DOCINTEL_FAULTS=json.dumps({"pause_at": "commit_move", "pause_s": 600})),
                             cwd=REPO, start_new_session=True)
    try:
        harness.wait_for(lambda: "paused at commit_move" in log.read_text(), 240, "the commit to reach step 4",
                      first, log)
        derived = {t: fileio.list_files(paths.staging(t)) for t in ("documents", "lost")}
        derived["manifest"] = fileio.list_files(paths.manifest)
        assert all(derived.values()), derived  # killed with every derived file staged
    finally:
        harness.kill_tree(first)
    assert output.marker(str(out), run_id) is None
    assert sorted(fileio.list_files(paths.staging("pages"))) == staged

    second = subprocess.run(_commit_command(out, run_id), capture_output=True, text=True, timeout=300,
                            env=harness.env(), cwd=REPO)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    facts = synthetic_run.check_committed(str(out), run_id, expect, exact_keys=True)
    assert facts["page_rows"] == expect["staged_rows"] + expect["not_processed"]
    assert fileio.list_files(paths.quarantine) == []

"""Worker failure for real: SIGKILL the engine actor of a running job; Ray restarts it, the batch is
retried, and the output still has exactly one row per page and question."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from pipeline import output

pytestmark = pytest.mark.engine


def _run_killing_the_first_engine(folder, out, model, run_id, *extra) -> tuple[int, int | None, list[int], str]:
    """Run the CLI, SIGKILL the first engine actor as soon as it is ready; (exit code, killed pid,
    pids of every engine that became ready, log tail)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--input", str(folder), "--output", str(out),
         "--model", model, "--run-id", run_id, "--question", "What is the total?",
         "--set", "ray.progress_bars=false", "--set", "render.max_side=512", "--set", "engine.batch_size=1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    ready, killed, log = [], None, []
    deadline = time.monotonic() + 600
    for line in proc.stdout:
        log.append(line)
        match = re.search(r"docintel engine ready in [\d.]+s \(pid (\d+)", line)
        if match:
            ready.append(int(match.group(1)))
            if killed is None:  # the first engine: kill it as soon as it takes work
                killed = ready[-1]
                os.kill(killed, signal.SIGKILL)
        assert time.monotonic() < deadline, "job did not finish"
    return proc.wait(), killed, ready, "".join(log[-80:])


def test_killed_engine_actor_is_restarted_and_nothing_is_lost_or_doubled(tmp_path, corpus, demo_model):
    folder, expected_pages = corpus
    code, killed, ready, log = _run_killing_the_first_engine(folder, tmp_path / "out", demo_model, "killed")
    assert code == 0, log
    assert killed is not None and len(ready) >= 2 and ready[1] != killed, "no restart seen"

    rows = output.read_results(str(tmp_path / "out"), "killed").to_pylist()
    keys = [(r["source_uri"], r["page_index"], r["question"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate rows after the retry"
    assert len(rows) == sum(expected_pages.values())
    assert all(r["valid"] for r in rows), [r["error"] for r in rows if not r["valid"]]


def test_a_batch_that_keeps_failing_is_recorded_as_not_processed(tmp_path, corpus, demo_model):
    """engine_retries=0: the batch of the killed actor is not retried. The job goes on (the actor is
    restarted for the other batches), and the lost pages get not_processed rows; exit code 3."""
    folder, expected_pages = corpus
    code, killed, _, log = _run_killing_the_first_engine(folder, tmp_path / "out", demo_model, "lost",
                                                         "--set", "ray.engine_retries=0")
    assert code == 3 and killed is not None, log
    rows = output.read_results(str(tmp_path / "out"), "lost").to_pylist()
    keys = [(r["source_uri"], r["page_index"]) for r in rows]
    assert len(keys) == len(set(keys))  # nothing twice
    lost = [r for r in rows if r["error_kind"] == "not_processed"]
    assert lost and all(r["valid"] for r in rows if r["error_kind"] is None)
    for name, pages in expected_pages.items():  # every document accounted for: all its pages, or a lost row
        doc_rows = [r for r in rows if os.path.basename(r["source_uri"]) == name]
        answered = {r["page_index"] for r in doc_rows if r["error_kind"] is None}
        assert answered == set(range(pages)) or any(r["error_kind"] == "not_processed" for r in doc_rows), name

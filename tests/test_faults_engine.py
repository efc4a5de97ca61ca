"""The engine under faults, for real: vLLM's EngineCore process is stopped (SIGSTOP) or killed
(SIGKILL) by its pid, as a wedged GPU or the OOM killer would; a page kills the engine every time it
is sent; an engine dies in every start. A transient error raised inside the engine loop is tested
with the engine double (it is the loop's and the actor's handling that is tested). Every fault
stays bounded and costs only the request that caused it; a job whose engine cannot start ends with
its own exit code."""
import json
import os
import signal
import time

import pytest

import harness
from docgen import make_pdf, make_png
from pipeline.store import output

pytestmark = pytest.mark.faults
Q = ["What is the total?"]


def _docs(folder, n):
    for i in range(n):
        make_pdf(folder / f"doc{i}.pdf", pages=1, title=f"Invoice {i}", chart=False)
    return {f"doc{i}.pdf": 1 for i in range(n)}


def _args(folder, out, model, run_id, *extra):
    return ["run", "--input", str(folder), "--output", str(out), "--model", model, "--question", Q[0],
            "--run-id", run_id, *harness.FAST, "--set", "engine.batch_size=2",
            "--set", "engine.separate_core=true", *extra]  # the product's default: the core is what is stopped/killed


def _cores(proc):
    return harness.processes(proc.pid, "EngineCore")


@pytest.mark.engine
def test_a_stopped_and_a_killed_engine_core_cost_no_page(tmp_path, demo_model):
    folder, out, log = tmp_path / "docs", tmp_path / "out", tmp_path / "run.log"
    expected = _docs(folder, 12)
    proc = harness.start(*_args(folder, out, demo_model, "f", "--set", "engine.step_timeout_s=5",
                                "--set", "ray.max_restarts_without_progress=10"), log=log)
    # 1. the engine's core is stopped: the watchdog sees its step hang
    first = harness.wait_for(lambda: "engine ready in" in log.read_text() and _cores(proc), 600, "the engine",
                             proc, log)
    first[0].send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    harness.wait_for(lambda: "engine step did not return within engine.step_timeout_s=5s and the engine core did no "
                     "work" in log.read_text(), 120, "the watchdog", proc, log)
    assert time.monotonic() - stopped_at < 5 + 15  # step_timeout_s plus the watchdog's second and a busy CPU
    # 2. the next engine's core is killed mid-run: vLLM's client would wait for it forever
    second = harness.wait_for(lambda: [p for p in _cores(proc) if p.pid != first[0].pid], 600, "a new engine core",
                              proc, log)
    harness.wait_for(lambda: log.read_text().count("engine ready in") >= 2, 600, "the second engine", proc, log)
    os.kill(second[0].pid, signal.SIGKILL)
    harness.wait_for(lambda: f"the engine core process {second[0].pid} died" in log.read_text(), 60,
                     "the dead core to be seen", proc, log)
    assert proc.wait(1500) == 0, log.read_text()[-4000:]
    rows = harness.assert_exactly_once(out, "f", expected, Q)
    assert all(r["valid"] for r in rows), [r["error"] for r in rows if not r["valid"]]  # no engine_error row


def test_an_error_inside_step_is_an_engine_failure_retried_never_an_answer(tmp_path, demo_model):
    """A transient error raised inside engine.step() (the fault hook wraps the engine's step): the
    actor reports it and exits, Ray restarts it, the pages in flight are answered by the next engine.
    What fails here is the loop and the actor around the engine, so the engine is the double."""
    folder, out = tmp_path / "docs", tmp_path / "out"
    expected = _docs(folder, 6)
    marker = tmp_path / "step-error-fired"
    proc = harness.run(*_args(folder, out, demo_model, "e", "--set", "engine.separate_core=false"),
                       **harness.double(step_s=0.05, step_error_once=str(marker)))
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = proc.stdout + proc.stderr
    assert marker.exists() and "engine failed (RuntimeError: docintel fault injection" in text, text[-3000:]
    rows = harness.assert_exactly_once(out, "e", expected, Q)
    assert all(r["valid"] for r in rows)  # no engine_error row: the failure was retried, not answered


@pytest.mark.engine
def test_a_page_that_kills_the_engine_is_found_and_costs_only_itself(tmp_path, demo_model):
    folder, out = tmp_path / "docs", tmp_path / "out"
    expected = _docs(folder, 5)
    make_png(folder / "poison.png", "this page kills the engine")
    proc = harness.run(*_args(folder, out, demo_model, "p", "--set", "engine.max_concurrent_batches=2"),
                    DOCINTEL_FAULTS=json.dumps({"kill_core_when": "poison.png"}))
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = harness.assert_exactly_once(out, "p", dict(expected, **{"poison.png": 1}), Q)
    (poison,) = [r for r in rows if r["source_uri"].endswith("poison.png")]
    assert poison["error_kind"] == "engine_crash" and "alone" in poison["error"]
    # healthy pages never pay for it
    assert all(r["valid"] for r in rows if r is not poison), [(r["source_uri"], r["error_kind"], r["error"])
                                                              for r in rows if r is not poison and not r["valid"]]


@pytest.mark.engine
def test_an_engine_that_dies_in_every_start_ends_the_job_not_committed(tmp_path, demo_model):
    folder, out, log = tmp_path / "docs", tmp_path / "out", tmp_path / "run.log"
    _docs(folder, 2)
    proc = harness.start(*_args(folder, out, demo_model, "s", "--set", "ray.engine_start_attempts=2"), log=log)
    began, killed = time.monotonic(), set()
    while proc.poll() is None and time.monotonic() - began < 1200:  # two engine starts on a loaded 2-core machine
        for core in _cores(proc):  # before it can finish its warm-up
            if core.pid not in killed:
                core.kill()
                killed.add(core.pid)
        time.sleep(0.05)
    text = log.read_text()
    assert proc.returncode == 4, text[-4000:]
    assert "the engine could not start: 2 attempts in a row failed" in text and "--resume s" in text
    assert len(killed) >= 2 and output.committed_runs(str(out)) == []

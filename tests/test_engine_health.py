"""The health ledger that outlives engine actors: start-up and crash loops are bounded, a page that
kills the engine is found by running suspects alone, and healthy pages are never charged."""
from pipeline.engine.health import GUILTY, SUSPECT, HealthLedger


def test_an_engine_that_never_starts_stops_the_job_after_its_attempts():
    ledger = HealthLedger(start_attempts=3)
    for i in range(3):
        ledger.engine_starting("a")
        assert ledger.verdict() is None
        ledger.engine_start_failed("a", f"EngineDeadError: died in warm-up {i}")
    assert "could not start" in ledger.verdict() and "warm-up 2" in ledger.verdict()


def test_a_crash_loop_without_progress_stops_the_job_and_progress_resets_the_count():
    ledger = HealthLedger(start_attempts=3, max_restarts_without_progress=2, replicas=1)
    ledger.engine_starting("a")
    ledger.engine_ready("a", [11])
    for pid in (11, 12):
        assert ledger.engine_starting("a") == [pid]  # the predecessor's core pids, to make sure they are gone
        ledger.engine_ready("a", [pid + 1])
    ledger.answered(["p#0"])
    ledger.engine_starting("a")
    ledger.engine_starting("b")  # a replacement actor (Ray Data's, after a death in start-up) counts too
    assert ledger.verdict() is None
    ledger.engine_starting("a")
    assert "restarted 3 times without answering" in ledger.verdict()


def test_suspects_of_a_crash_run_alone_and_the_one_that_kills_the_engine_alone_is_set_aside():
    ledger = HealthLedger()
    ledger.engine_failed("a", "EngineDeadError", ["p#0", "p#1", "p#1", "q#0"], [])
    assert ledger.statuses(["p#0", "p#1", "q#0", "r#0"]) == {"p#0": SUSPECT, "p#1": SUSPECT, "q#0": SUSPECT}
    ledger.answered(["p#0"])  # ran alone, fine: cleared
    ledger.engine_failed("a", "EngineDeadError", ["p#1", "p#1"], ["p#1", "p#1"])  # alone, and the engine died
    # once may be a kill from outside (OOM, preemption, a test's SIGKILL): it runs alone again
    assert ledger.statuses(["p#0", "p#1", "q#0"]) == {"p#1": SUSPECT, "q#0": SUSPECT}
    ledger.engine_failed("a", "EngineDeadError", ["p#1"], ["p#1"])  # alone again, and the engine died again
    assert ledger.statuses(["p#0", "p#1", "q#0"]) == {"p#1": GUILTY, "q#0": SUSPECT}
    ledger.engine_failed("a", "EngineDeadError", ["q#0", "p#1"], [])
    assert ledger.statuses(["p#1"]) == {"p#1": GUILTY}  # once found, it stays found


def test_two_different_outside_faults_do_not_condemn_a_page_three_failures_do():
    ledger = HealthLedger()
    ledger.engine_failed("a", "the engine core process 101 died", ["p#0", "q#0"], [])
    stopped = "engine step did not return within engine.step_timeout_s=5s and the engine core did no work"
    ledger.engine_failed("a", stopped, ["p#0"], ["p#0"])  # a stopped core (SIGSTOP)
    ledger.engine_failed("a", "the engine core process 202 died", ["p#0"], ["p#0"])  # then a killed one
    assert ledger.statuses(["p#0"]) == {"p#0": SUSPECT}  # not the page's doing: it runs alone once more
    ledger.engine_failed("a", "RuntimeError: CUDA error", ["p#0"], ["p#0"])
    assert ledger.statuses(["p#0"]) == {"p#0": GUILTY}  # a third failure alone, of any kind
    ledger.engine_failed("a", "the engine core process 303 died", ["q#0"], ["q#0"])
    ledger.engine_failed("a", "the engine core process 304 died", ["q#0"], ["q#0"])
    assert ledger.statuses(["q#0"]) == {"q#0": GUILTY}  # the same failure twice (numbers aside)

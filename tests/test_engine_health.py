"""The health ledger that outlives engine actors: start-up and crash loops are bounded, a page that
kills the engine is found by running suspects alone, and healthy pages are never charged. An engine
actor speaks to it through EngineHealth, in process (LocalHealth) or through Ray (RemoteHealth)."""
import inspect
import os
from types import SimpleNamespace

import pytest
from engine_double import EngineDouble

from pipeline.core.config import EngineSpec
from pipeline.engine import actor as engine_actor
from pipeline.engine.cores import CoreRecord
from pipeline.engine.health import CALL_TIMEOUT_S, GUILTY, SUSPECT, EngineHealth, HealthLedger, LocalHealth, \
    RemoteHealth


def _core(pid: int) -> CoreRecord:
    return CoreRecord(node="node-a", pid=pid, create_time=1_000.0 + pid, parent_pid=7, parent_create_time=900.0)


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
    ledger.engine_ready("a", [_core(11)])
    for pid in (11, 12):
        assert ledger.engine_starting("a") == [_core(pid)]  # the predecessor's cores, to make sure they are gone
        ledger.engine_ready("a", [_core(pid + 1)])
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


# ---- EngineHealth: what the engine actor calls --------------------------------------------------

OPERATIONS = [name for name in vars(EngineHealth) if not name.startswith("_")]


@pytest.mark.parametrize("client", [LocalHealth, RemoteHealth])
def test_both_ledger_clients_are_engine_health_with_its_signatures(client):
    assert isinstance(client(HealthLedger()), EngineHealth)
    for name in OPERATIONS:
        assert inspect.signature(getattr(client, name)) == inspect.signature(getattr(EngineHealth, name)), name


def test_each_operation_is_the_ledger_method_of_its_name_with_its_arguments():
    assert {"engine_starting", "engine_ready", "engine_start_failed", "engine_failed", "statuses", "answered",
            "first_request"} <= set(OPERATIONS)
    for name in OPERATIONS:
        sent = [p.name for p in inspect.signature(getattr(EngineHealth, name)).parameters.values()
                if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert sent == list(inspect.signature(getattr(HealthLedger, name)).parameters), name


def _engine_life(health: EngineHealth) -> dict[str, str]:
    """An engine actor's calls, typed as the actor makes them: start, ready, a batch, a failure with the
    failing actor's short timeout, a restart that fails to start; returns the pages' statuses."""
    assert health.engine_starting("a") == []
    health.engine_ready("a", [_core(11)], 1234, 1.5, 1_700_000_000.0)
    assert health.statuses(["p#0", "q#0"]) == {}
    health.first_request(1_700_000_001.0)
    health.answered(["p#0"])
    health.engine_failed("a", "the engine core process 11 died", ["q#0", "r#0"], [], timeout=10)
    assert health.engine_starting("a") == [_core(11)]
    health.engine_start_failed("a", "EngineDeadError: died in warm-up", timeout=10)
    return health.statuses(["p#0", "q#0", "r#0"])


def test_the_local_ledger_serves_an_engine_s_whole_life_through_engine_health():
    health = LocalHealth(HealthLedger(start_attempts=1))
    assert _engine_life(health) == {"q#0": SUSPECT, "r#0": SUSPECT}
    ledger = health.ledger
    assert ledger.pages_done == 1 and ledger.first_request_at == 1_700_000_001.0 and ledger.ready_at == 1_700_000_000.0
    assert "engine could not start again: 1 attempts in a row failed" in ledger.verdict()


class _JobHealthHandle:
    """A Ray actor handle of JobHealth as RemoteHealth uses it: `call.remote(operation, *args)` runs the
    operation on a ledger here; `ray.get` (patched) hands back its result and notes the timeout."""

    def __init__(self, ledger: HealthLedger):
        self.ledger = ledger
        self.call = SimpleNamespace(remote=lambda operation, *args: getattr(self.ledger, operation)(*args))


def test_the_ray_ledger_client_honours_each_call_s_timeout(monkeypatch):
    import ray

    timeouts = []
    monkeypatch.setattr(ray, "get", lambda result, timeout: timeouts.append(timeout) or result)
    health = RemoteHealth(_JobHealthHandle(HealthLedger(start_attempts=1)))
    assert _engine_life(health) == {"q#0": SUSPECT, "r#0": SUSPECT}
    # start, ready, statuses and the restart wait the default; the two failures wait as the actor asks
    assert timeouts == [CALL_TIMEOUT_S] * 3 + [10, CALL_TIMEOUT_S, 10, CALL_TIMEOUT_S]


def test_a_failing_engine_actor_without_ray_reports_the_pages_in_flight_then_exits(monkeypatch):
    """The actor's failure path (EngineActor._engine_failed passes timeout=10) with the in-process
    ledger, the engine being the double (tests/engine_double.py). LocalHealth once took no timeout:
    the TypeError was swallowed by the exit in `finally`, and the ledger never heard of the failure."""
    monkeypatch.setattr(engine_actor, "open_engine", lambda spec, device: (EngineDouble(spec),
                                                                          EngineDouble.sampling_params))
    for name in ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE"):  # the actor sets them
        monkeypatch.setenv(name, os.environ.get(name, ""))

    def exit_(code):
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", exit_)  # the actor exits for Ray to restart it
    engine = engine_actor.EngineActor(EngineSpec(model="engine-double"), "cpu", None)
    try:
        ledger = engine.health.ledger
        assert ledger.ever_ready and engine.cores == []  # the double runs in this process: no core to kill
        with pytest.raises(SystemExit):
            engine._engine_failed("RuntimeError: docintel fault injection", ["p#0", "q#0", "q#0"], [])
    finally:
        engine.shutdown()
    assert ledger.statuses(["p#0", "q#0", "r#0"]) == {"p#0": SUSPECT, "q#0": SUSPECT}
    assert "engine failed (RuntimeError: docintel fault injection) with 2 page(s) in flight" in ledger.events[-1]

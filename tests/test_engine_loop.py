"""EngineLoop's failure handling, with an engine that dies on cue (the real engine's paths are in
test_engine_cpu.py and test_failures.py)."""
import threading

import pytest

from pipeline.engine_loop import EngineLoop, EngineStopped


class EngineDeadError(RuntimeError):  # same name as vLLM's: the actor exits on it
    pass


class DyingEngine:
    """enqueue_chat/step/has_unfinished_requests like vllm.LLM + LLMEngine; step dies when told."""

    def __init__(self):
        self.llm_engine = self
        self.unfinished: list[str] = []
        self.counter = 0
        self.die = threading.Event()

    def enqueue_chat(self, messages, params, use_tqdm=False):
        self.counter += 1
        self.unfinished.append(str(self.counter))
        return [f"{self.counter}-abcdefgh"]

    def has_unfinished_requests(self):
        return bool(self.unfinished)

    def step(self):
        if self.die.wait(timeout=0.01):
            raise EngineDeadError("engine core died")
        return []

    def abort_request(self, ids, internal=False):
        pass


def test_a_dead_engine_answers_every_waiting_request_with_its_error_and_refuses_new_ones():
    engine = DyingEngine()
    loop = EngineLoop(engine)
    results = {}
    caller = threading.Thread(target=lambda: results.setdefault("a", loop.submit([[{}], [{}]], [None, None])))
    caller.start()
    while engine.counter < 2:
        threading.Event().wait(0.01)
    engine.die.set()
    caller.join(timeout=10)
    assert [type(r).__name__ for r in results["a"]] == ["EngineDeadError", "EngineDeadError"]
    with pytest.raises(EngineStopped, match="engine core died"):
        loop.submit([[{}]], [None])


def test_an_empty_submission_returns_at_once():
    loop = EngineLoop(DyingEngine())
    assert loop.submit([], []) == []
    loop.stop()

"""Fault injection for the reliability tests: inert unless DOCINTEL_FAULTS is set.

Most faults the tests inject come from outside, the way a node fails: they SIGKILL or SIGSTOP the
real engine-core process by its pid, kill Ray workers, or break storage requests on the wire. Two
cannot be made from outside, so the engine actor calls these hooks, which do nothing by default:

  DOCINTEL_FAULTS='{"kill_core_when": "poison.pdf"}'
      whenever a request for a page whose source_uri contains the text enters the engine (the
      engine loop has added it), the engine-core process is SIGKILLed there and then: a request
      that kills the engine, every time. It fires where the request enters, not where a batch is
      submitted: a batch waiting for its turn alone in the engine must not kill the engine while
      another page runs alone in it;
  DOCINTEL_FAULTS='{"step_error_once": "/tmp/marker"}'
      the first engine step of the job (the marker file makes it once per job, across actor
      restarts) raises RuntimeError: a transient error inside the loop.

A test whose subject is not the engine (commit, resume, storage, feeding) may replace it:

  DOCINTEL_FAULTS='{"engine": "engine_double:EngineDouble", "step_s": 0.05}'
      the engine actor builds this class (module:attribute, importable in the actor's process) with
      the engine spec and the other keys of the config instead of vllm.LLM; the job labels every
      row's model id as an engine double's (tests/engine_double.py is the one the tests use).

A renderer that is slow (a test of how the engine is fed needs rendering to take a while):

  DOCINTEL_FAULTS='{"render_delay_s": 0.5}'
      the split stage waits this long after each page it renders.

And one pause, so that a test can kill the driver at a chosen point of the commit:

  DOCINTEL_FAULTS='{"pause_at": "commit_move", "pause_s": 120}'
      the driver prints "docintel fault injection: paused at commit_move" and sleeps there.
"""
from __future__ import annotations

import json
import os
import signal
import time
from functools import lru_cache
from typing import Any, Callable


def _config() -> dict[str, Any]:
    return _parsed(os.environ.get("DOCINTEL_FAULTS") or "")


@lru_cache(maxsize=8)
def _parsed(raw: str) -> dict[str, Any]:
    """Parsed once per value: the split stage asks for every page it renders."""
    return json.loads(raw) if raw else {}


def on_entering_engine(core_pids: list[int]) -> Callable[[str], None] | None:
    """The engine loop's hook for each request it adds (told the request's page key, which holds
    its source_uri), or None when no fault is set: the loop then calls nothing."""
    needle = _config().get("kill_core_when")
    if not needle:
        return None

    def entered(key: str) -> None:
        if needle in key:
            print(f"docintel fault injection: killing the engine core {core_pids} (a request for {needle!r} "
                  "entered it)", flush=True)
            for pid in core_pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
    return entered


DOUBLE_LABEL = " [engine double: not a model's answers]"


def engine_double() -> tuple[type, dict[str, Any]] | None:
    """(the class that replaces vllm.LLM, its keyword arguments), or None: the real engine."""
    config = _config()
    target = config.get("engine")
    if not target:
        return None
    import importlib

    module, _, name = target.partition(":")
    options = {k: v for k, v in config.items() if k in ("step_s", "steps")}
    return getattr(importlib.import_module(module), name), options


def label(model_id: str) -> str:
    """The model id rows carry: marked when an engine double answers instead of the model."""
    return model_id + DOUBLE_LABEL if _config().get("engine") else model_id


def engine_started(llm: Any) -> None:
    marker = _config().get("step_error_once")
    if not marker:
        return
    engine = llm.llm_engine
    step = engine.step

    def failing_step(*args, **kwargs):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return step(*args, **kwargs)
        os.close(fd)
        engine.step = step
        raise RuntimeError("docintel fault injection: a transient error inside engine.step()")

    engine.step = failing_step


def page_rendered() -> None:
    delay = _config().get("render_delay_s")
    if delay:
        time.sleep(float(delay))


def pause(point: str) -> None:
    config = _config()
    if config.get("pause_at") == point:
        print(f"docintel fault injection: paused at {point}", flush=True)
        time.sleep(float(config.get("pause_s", 120)))

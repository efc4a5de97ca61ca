"""A vLLM engine that stays fed while Ray hands it batch after batch.

Why not `LLM.chat(batch)` per Ray batch: that call returns only when the batch's last request
is done, so every batch ends with a tail where a handful of sequences decode alone on the GPU,
and the next batch cannot start before it. Measured on an H100 (bench/RESULTS.md) the tails
cost more than the 5 % a pipeline may lose against raw vLLM.

Here one thread owns the engine: it adds the requests of every batch submitted from any caller
thread as soon as they arrive (`LLM.enqueue_chat`, which renders the chat messages exactly as
`LLM.chat` does), steps the engine (`LLMEngine.step`, the loop `LLM.chat` itself runs) and hands
each finished output back to the batch that asked for it. The Ray actor runs several batches at
once (ray.data.ActorPoolStrategy(max_concurrent_calls_per_actor=...)), so while one batch decodes
its tail the next one is already prefilling. Only public vLLM calls are used: the same ones
vLLM's `LLM.chat` is built from.

A request that runs past `request_timeout_s` is aborted in the engine and answered with
TimeoutError, so one runaway generation cannot hold a batch (and the job) forever.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any


class EngineStopped(RuntimeError):
    """The engine loop ended (engine dead or shut down): nothing more can be answered."""


@dataclass
class _Job:
    """One caller's requests; results[i] becomes a RequestOutput or an Exception."""

    messages: list[list[dict]]
    params: list[Any]
    results: list[Any] = field(default_factory=list)
    left: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.results = [None] * len(self.messages)
        self.left = len(self.messages)
        if not self.left:
            self.done.set()

    def answer(self, index: int, result: Any) -> None:
        if self.results[index] is None:
            self.results[index] = result
            self.left -= 1
            if self.left == 0:
                self.done.set()


_STOP = object()


def _external_id(request_id: str) -> str:
    # vLLM returns its internal id "<external>-<8 random chars>"; outputs carry the external id,
    # which LLM's request counter makes a plain number.
    return request_id.split("-", 1)[0]


class EngineLoop:
    """Submit chat requests from any thread; one background thread drives the engine."""

    def __init__(self, llm: Any, request_timeout_s: float | None = None):
        self.llm = llm
        self.request_timeout_s = request_timeout_s
        self.failure: BaseException | None = None  # why the loop stopped, if it did
        self._intake: queue.Queue = queue.Queue()
        # external request id -> (job, index in job, internal id, deadline)
        self._pending: dict[str, tuple[_Job, int, str, float]] = {}
        self._thread = threading.Thread(target=self._run, name="docintel-engine-loop", daemon=True)
        self._thread.start()

    # ---- callers --------------------------------------------------------------------------

    def submit(self, messages: list[list[dict]], params: list[Any]) -> list[Any]:
        """Outputs in order; a request that failed gets its exception in its place."""
        if self.failure is not None:
            raise EngineStopped(f"engine loop stopped: {self.failure!r}") from self.failure
        job = _Job(messages, params)
        self._intake.put(job)
        while not job.done.wait(timeout=1.0):
            if not self._thread.is_alive():  # died between put and here: nobody will answer
                raise EngineStopped(f"engine loop stopped: {self.failure!r}") from self.failure
        return job.results

    def stop(self) -> None:
        self._intake.put(_STOP)
        self._thread.join(timeout=30)

    # ---- the engine thread ----------------------------------------------------------------

    def _add(self, job: _Job) -> None:
        deadline = time.monotonic() + self.request_timeout_s if self.request_timeout_s else float("inf")
        for i, (messages, params) in enumerate(zip(job.messages, job.params)):
            try:
                # One request per call: a request that cannot be rendered (bad image, too long)
                # fails alone instead of aborting its whole batch.
                [request_id] = self.llm.enqueue_chat([messages], [params], use_tqdm=False)
            except Exception as exc:  # noqa: BLE001 - answered to the caller, row by row
                job.answer(i, exc)
                continue
            self._pending[_external_id(request_id)] = (job, i, request_id, deadline)

    def _expire(self) -> None:
        now = time.monotonic()
        late = [(key, entry) for key, entry in self._pending.items() if entry[3] < now]
        if not late:
            return
        self.llm.llm_engine.abort_request([entry[2] for _, entry in late], internal=True)
        for key, (job, i, _, _) in late:
            del self._pending[key]
            job.answer(i, TimeoutError(f"no answer within engine.request_timeout_s={self.request_timeout_s:g}s; "
                                       "the request was aborted"))

    def _answer_pending(self, exc: BaseException) -> None:
        for job, i, _, _ in self._pending.values():
            job.answer(i, exc)
        self._pending.clear()

    def _fail_all(self, exc: BaseException) -> None:
        self.failure = exc
        self._answer_pending(exc)
        while True:  # and whatever was submitted but not yet added
            try:
                item = self._intake.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Job):
                for i in range(len(item.messages)):
                    item.answer(i, exc)

    def _run(self) -> None:
        engine = self.llm.llm_engine
        try:
            while True:
                busy = bool(self._pending) or engine.has_unfinished_requests()
                # Take every batch that is waiting; block only when the engine has nothing to do.
                while True:
                    try:
                        item = self._intake.get(block=not busy)
                    except queue.Empty:
                        break
                    if item is _STOP:
                        self._fail_all(EngineStopped("engine loop stopped"))
                        return
                    self._add(item)
                    busy = bool(self._pending) or engine.has_unfinished_requests()
                if engine.has_unfinished_requests():
                    for output in engine.step():
                        if output.finished:
                            entry = self._pending.pop(str(output.request_id), None)
                            if entry is not None:  # None: aborted after its deadline
                                entry[0].answer(entry[1], output)
                elif self._pending:  # never expected: answer rather than wait forever
                    self._answer_pending(RuntimeError("the engine finished without answering this request"))
                self._expire()
        except BaseException as exc:  # noqa: BLE001 - engine dead (EngineDeadError) or broken
            self._fail_all(exc)

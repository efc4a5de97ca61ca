"""A vLLM engine that stays fed while Ray hands it batch after batch, and that fails loudly.

Why not `LLM.chat(batch)` per Ray batch: that call returns only when the batch's last request
is done, so every batch ends with a tail where a handful of sequences decode alone on the GPU,
and the next batch cannot start before it. Measured on an H100 (bench/RESULTS.md) the tails
cost more than the 5 % a pipeline may lose against raw vLLM.

Here one thread owns the engine: it adds the requests of every batch submitted from any caller
thread as soon as they are ready, steps the engine (`LLMEngine.step`, the loop `LLM.chat` itself
runs) and hands each finished output back to the batch that asked for it. The Ray actor runs several
batches at once, so while one batch decodes its tail the next one is already prefilling.

Preprocessing runs in the callers' threads, not in the engine's. Rendering a request (the chat
template, and decoding, resizing and normalising its page image: about 40-55 ms a 1024 px page on one
core) is what `LLM.chat` does before it adds a request. Done on the engine thread it capped the job
at about 20 requests a second, and the H200 sat at 30-50 % for seconds whenever 64 new requests
came in at once (bench/RESULTS.md). So a caller renders its own requests one by one, with vLLM's
own renderer (`LLM._preprocess_chat_one`, the first half of `LLM.enqueue_chat`), while the engine
thread only adds rendered requests (`LLM._add_request`, its second half: about 1 ms each). The
image decoding and resizing release the GIL, so the actor's batch threads render in parallel.
Out-of-order adds are why vLLM's multi-modal processor cache is off (engine_args): that cache
mirrors the engine core's by the order items are sent. An engine without those two methods (a
test's engine double, or a vLLM that dropped them) is driven through `enqueue_chat` on the engine
thread, as before, with a warning that says what that costs (pipeline/core/compat.py).

Faults. A request that runs past `request_timeout_s` is aborted and answered with TimeoutError: one
runaway generation cannot hold a batch. Anything else that goes wrong with the engine is the engine's
failure, never a request's answer: an exception from `step()` (EngineDeadError, or a transient
error), a step that does not return within `step_timeout_s` while the engine core uses no CPU (a
stopped or wedged core: the loop thread sits inside `step()`), a step still running after
STEP_HARD_LIMIT x `step_timeout_s` although the core is busy (spinning on a hung device), or an
engine-core process that died (vLLM's client then blocks in `get_output()` forever). A watchdog
thread checks these every second. A step that is merely slow (a loaded CPU, a long prefill) while
the core keeps computing is not a failure before the hard limit: condemning it would set healthy
pages aside as engine crashes. On a failure the
loop calls `on_failure(reason, in_flight_keys, exclusive_keys)` once; the actor reports it and exits
so that Ray restarts it and retries its batches (pipeline/engine/actor.py, pipeline/engine/health.py).

Admission order. The engine holds at most `admit_limit` requests (running and waiting); the rest
wait here and enter oldest batch first. Without a limit every rendered request entered at once: the
actor's 8 batches rendered side by side, so their requests entered the engine interleaved, each batch
held some of the last sequences to run, and all 8 finished together. The engine then decoded that last
wave with nothing to prefill while Ray Data handed over the next batches (the H100 run of 2026-12-05:
10 s at 24-69 % SM; its Ray Data log and dmon samples are in
bench/results/2026-12-05-h100-compare-fp8-960p-logs.tgz). Entering in batch order, batches finish one after another and
the next batch is rendered while the engine still has work.

A job submitted with `exclusive=True` runs alone in the engine: the loop lets what is in flight
finish, adds that job only, and adds nothing else until it is done. That is how a request suspected
of killing the engine is tried without taking healthy requests down with it.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.core import compat

WATCHDOG_INTERVAL_S = 1.0
STEP_HARD_LIMIT = 5  # x step_timeout_s: a step this long fails even while the core is busy
ADD_BUDGET_S = 0.25  # longest the loop spends adding requests between two steps
STALLED_CPU_S = 0.05  # the core used less CPU than this over step_timeout_s: it is not computing


class EngineStopped(RuntimeError):
    """The engine loop ended (engine failed or shut down): nothing more can be answered."""


@dataclass
class _Job:
    """One caller's requests; results[i] becomes a RequestOutput or an Exception. The caller renders
    its requests (`prepared`), the engine thread adds those in `ready`."""

    messages: list[list[dict]]
    params: list[Any]
    keys: list[str]  # the page each request belongs to (reported when the engine fails)
    exclusive: bool = False
    results: list[Any] = field(default_factory=list)
    prepared: list[Any] = field(default_factory=list)
    ready: collections.deque = field(default_factory=collections.deque)  # rendered, not yet added
    unrendered: int = 0
    started: list[float] = field(default_factory=list)  # when each request entered the engine
    latency_s: list[float | None] = field(default_factory=list)
    left: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)  # answers come from two threads

    def __post_init__(self) -> None:
        n = len(self.messages)
        self.results, self.prepared = [None] * n, [None] * n
        self.started = [0.0] * n
        self.latency_s = [None] * n
        self.left = self.unrendered = n
        if not self.left:
            self.done.set()

    def answer(self, index: int, result: Any) -> None:
        with self.lock:
            if self.results[index] is not None:
                return
            self.results[index] = result
            if self.started[index]:
                self.latency_s[index] = round(time.monotonic() - self.started[index], 4)
            self.left -= 1
            if self.left == 0:
                self.done.set()


def _external_id(request_id: str) -> str:
    # vLLM returns its internal id "<external>-<8 random chars>"; outputs carry the external id,
    # which LLM's request counter makes a plain number.
    return request_id.split("-", 1)[0]


class EngineLoop:
    """Submit chat requests from any thread; one background thread drives the engine."""

    def __init__(self, llm: Any, request_timeout_s: float | None = None, step_timeout_s: float | None = None,
                 core_alive: Callable[[], str | None] | None = None,
                 core_cpu_s: Callable[[], float | None] | None = None,
                 on_failure: Callable[[str, list[str], list[str]], None] | None = None,
                 report_depth: Callable[[int], None] | None = None,
                 on_enter: Callable[[str], None] | None = None, admit_limit: int | None = None):
        self.llm = llm
        self.request_timeout_s = request_timeout_s
        self.step_timeout_s = step_timeout_s
        self._core_alive = core_alive  # None if fine, else why the engine core is gone
        self._core_cpu_s = core_cpu_s  # CPU seconds the engine core has used (None: unknown)
        self._on_failure = on_failure
        self._report_depth = report_depth  # told queue_depth() every watchdog interval (a metric)
        # told each request's page key as it enters the engine; the product passes none (the fault tests'
        # plugin, tests/faults_plugin.py, kills the engine core from here when a chosen page enters)
        self._on_enter = on_enter
        self.admit_limit = admit_limit  # most requests in the engine at once (None: no limit)
        self.failure: str | None = None  # why the loop stopped, if it did
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: collections.deque[_Job] = collections.deque()
        self._active: list[_Job] = []
        # external request id -> (job, index in job, internal id, deadline)
        self._pending: dict[str, tuple[_Job, int, str, float]] = {}
        self._step_began: float | None = None
        self._prepare, self._add = _two_phases(llm)
        self._stopping = False
        self.first_entered_at: float | None = None  # when a request first entered the engine (epoch s)
        self._thread = threading.Thread(target=self._run, name="docintel-engine-loop", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="docintel-engine-watchdog", daemon=True)
        self._thread.start()
        self._watchdog.start()

    # ---- callers --------------------------------------------------------------------------

    def submit(self, messages: list[list[dict]], params: list[Any], keys: list[str] | None = None,
               exclusive: bool = False) -> tuple[list[Any], list[float | None]]:
        """(outputs in order: RequestOutput, or the request's own exception: rejected, timed out;
        seconds each spent in the engine). Raises EngineStopped when the engine failed: then
        nothing of this job is an answer. The requests are rendered here, in the caller's thread,
        and each enters the engine as soon as it is rendered."""
        job = _Job(messages, params, keys or [""] * len(messages), exclusive)
        with self._wake:
            if self.failure is not None:
                raise EngineStopped(self.failure)
            self._waiting.append(job)
        for i, conversation in enumerate(messages):
            if self.failure is not None:
                break
            try:
                prepared, error = self._prepare(conversation), None
            except Exception as exc:  # noqa: BLE001 - a page that cannot be rendered fails alone
                prepared, error = None, exc
            with self._wake:
                job.unrendered -= 1
                if error is None:
                    job.prepared[i] = prepared
                    job.ready.append(i)
                self._wake.notify_all()
            if error is not None:
                self._answer(job, i, error)
        while not job.done.wait(timeout=1.0):
            if self.failure is not None:
                raise EngineStopped(self.failure)
        if self.failure is not None and any(isinstance(r, EngineStopped) for r in job.results):
            raise EngineStopped(self.failure)
        return job.results, job.latency_s

    def queue_depth(self) -> int:
        with self._lock:
            jobs = self._active + list(self._waiting)
            return len(self._pending) + sum(len(j.ready) + j.unrendered for j in jobs)

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout=30)

    # ---- failure ----------------------------------------------------------------------------

    def _fail(self, reason: str, report: bool = True) -> None:
        """The engine is gone (or being shut down: report=False): record why once, tell the owner,
        release every waiting caller."""
        with self._wake:
            if self.failure is not None:
                return
            self.failure = reason
            in_flight = [k for job in self._active for k in job.keys]
            exclusive = [k for job in self._active if job.exclusive for k in job.keys]
            jobs = self._active + list(self._waiting)
            self._active, self._pending = [], {}
            self._waiting.clear()
            self._wake.notify_all()
        if report and self._on_failure is not None:
            self._on_failure(reason, in_flight, exclusive)  # the actor's handler does not return
        stopped = EngineStopped(reason)
        for job in jobs:
            for i in range(len(job.messages)):
                job.answer(i, stopped)

    def _stuck(self, began: float, samples: collections.deque) -> str | None:
        """Why the step running since `began` counts as a failed engine, or None (not yet)."""
        now = time.monotonic()
        running = now - began
        if not self.step_timeout_s or running <= self.step_timeout_s:
            return None
        cpu = self._core_cpu_s() if self._core_cpu_s is not None else None
        samples.append((now, cpu))
        window = [c for t, c in samples if t <= now - self.step_timeout_s]
        if cpu is None or not window or window[-1] is None or cpu - window[-1] < STALLED_CPU_S:
            return (f"engine step did not return within engine.step_timeout_s={self.step_timeout_s:g}s and the "
                    "engine core did no work meanwhile (stopped or wedged)")
        if running > STEP_HARD_LIMIT * self.step_timeout_s:
            return (f"engine step did not return within engine.step_timeout_s={self.step_timeout_s:g}s x "
                    f"{STEP_HARD_LIMIT} although the engine core is busy (hung device?)")
        return None

    def _watch(self) -> None:
        samples: collections.deque = collections.deque(maxlen=4096)  # (time, core CPU s) during one step
        step = None
        while self.failure is None and not self._stopping:
            time.sleep(WATCHDOG_INTERVAL_S)
            if self._stopping:
                return
            if self._report_depth is not None:
                try:
                    self._report_depth(self.queue_depth())
                except Exception:  # noqa: BLE001 - a metric is a view: it never stops the watchdog
                    pass
            began = self._step_began
            if began != step:  # a new step (or none): its own samples, from its start
                step = began
                samples.clear()
                if began is not None and self._core_cpu_s is not None:
                    samples.append((began, self._core_cpu_s()))
            stuck = self._stuck(began, samples) if began is not None else None
            if stuck:
                self._fail(stuck)
                return
            gone = self._core_alive() if self._core_alive is not None else None
            if gone:
                self._fail(gone)
                return

    # ---- the engine thread ----------------------------------------------------------------

    def _take_jobs(self) -> None:
        """Move waiting jobs into the engine's care (FIFO): normal jobs at once; an exclusive job only
        into an idle engine, and nothing while it runs. Call with the lock held."""
        if any(j.exclusive for j in self._active):
            return
        while self._waiting:
            head = self._waiting[0]
            if head.exclusive and (self._active or self._pending):
                return
            self._active.append(self._waiting.popleft())
            if head.exclusive:
                return

    def _has_work(self) -> bool:
        """Anything for the engine thread to do now. Call with the lock held."""
        if self._stopping or self.failure is not None or self._pending:
            return True
        self._take_jobs()
        return any(job.ready for job in self._active)

    def _add_ready(self) -> None:
        """Add rendered requests to the engine, oldest job first, for up to ADD_BUDGET_S (at least
        one) and while it holds fewer than admit_limit, then return, so that a burst of new requests
        does not keep the engine from stepping on the ones it has."""
        began = time.monotonic()
        while time.monotonic() - began < ADD_BUDGET_S or not self._pending:
            with self._lock:
                if self.admit_limit is not None and len(self._pending) >= self.admit_limit:
                    return
                self._take_jobs()
                job = next((j for j in self._active if j.ready), None)
                if job is None:
                    return
                i = job.ready.popleft()
                prepared, job.prepared[i] = job.prepared[i], None
            deadline = time.monotonic() + self.request_timeout_s if self.request_timeout_s else float("inf")
            try:
                # One request per call: a request the engine rejects (too long) fails alone.
                request_id = self._add(prepared, job.params[i])
            except Exception as exc:  # noqa: BLE001 - answered to the caller, row by row
                self._answer(job, i, exc)
                continue
            job.started[i] = time.monotonic()
            if self._on_enter is not None:
                self._on_enter(job.keys[i])
            if self.first_entered_at is None:
                self.first_entered_at = time.time()
            with self._lock:
                self._pending[_external_id(request_id)] = (job, i, request_id, deadline)

    def _answer(self, job: _Job, index: int, result: Any) -> None:
        job.answer(index, result)
        if job.left == 0:
            with self._wake:
                if job in self._active:
                    self._active.remove(job)
                elif job in self._waiting:
                    self._waiting.remove(job)
                self._wake.notify_all()

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [(key, entry) for key, entry in self._pending.items() if entry[3] < now]
            for key, _ in late:
                del self._pending[key]
        if not late:
            return
        self.llm.llm_engine.abort_request([entry[2] for _, entry in late], internal=True)
        for _, (job, i, _, _) in late:
            self._answer(job, i, TimeoutError(f"no answer within engine.request_timeout_s="
                                              f"{self.request_timeout_s:g}s; the request was aborted"))

    def _run(self) -> None:
        engine = self.llm.llm_engine
        try:
            while not self._stopping and self.failure is None:
                self._add_ready()
                if self._stopping or self.failure is not None:
                    break
                if engine.has_unfinished_requests():
                    self._step_began = time.monotonic()
                    outputs = engine.step()
                    self._step_began = None
                    for output in outputs:
                        if output.finished:
                            with self._lock:
                                entry = self._pending.pop(str(output.request_id), None)
                            if entry is not None:  # None: aborted after its deadline
                                self._answer(entry[0], entry[1], output)
                elif self._pending:  # the engine lost requests it was given: that is an engine fault
                    raise RuntimeError(f"the engine finished without answering {len(self._pending)} request(s)")
                else:
                    with self._wake:  # idle: sleep until a caller has a rendered request (or stop)
                        if not self._has_work():
                            self._wake.wait(timeout=0.5)
                self._expire()
        except BaseException as exc:  # noqa: BLE001 - EngineDeadError, or anything else: the engine's fault
            self._step_began = None
            self._fail(f"{type(exc).__name__}: {exc}"[:2000])
        if self._stopping:
            self._fail("engine loop stopped", report=False)


def _two_phases(llm: Any) -> tuple[Callable[[list[dict]], Any], Callable[[Any, Any], str]]:
    """(render one conversation, add one rendered request and return its id) for this engine.

    vLLM's LLM has no public API that splits the two; `enqueue_chat` runs `_preprocess_chat_one`
    and then `_add_request` for each conversation (pipeline/core/compat.py says where they were
    read). An engine without them is driven through `enqueue_chat`, rendering on the engine thread,
    and compat logs what that costs."""
    render, add = compat.chat_renderer(llm), compat.request_adder(llm)
    if render is not None and add is not None:
        return render, lambda prepared, params: add(prepared, params)
    return (lambda conversation: conversation,
            lambda conversation, params: llm.enqueue_chat([conversation], [params], use_tqdm=False)[0])

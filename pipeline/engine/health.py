"""What the job knows about its engines across actor restarts: bounded start-up, no endless restarts,
and the request that kills the engine found and set aside.

Ray restarts a dead engine actor and retries its batches as often as needed (Ray Data's default for
actor pools), so healthy pages never run out of retries because an actor was preempted, OOM-killed
or took down its engine. What is bounded is decided here, in one ledger that outlives the actors:

* start-up: an engine that fails `ray.engine_start_attempts` times in a row before it ever becomes
  ready (no weights, no memory, a core that dies during warm-up) ends the job: verdict() says why;
* progress: more than `ray.max_restarts_without_progress` engine restarts with no page answered in
  between ends the job the same way (a crash loop);
* poison: when an engine fails, the pages in flight are suspects. A suspect is retried alone in the
  engine (one at a time, nothing else in flight); if the engine fails the same way twice while a
  suspect runs alone (CONVICT_AFTER), or three times in any way (CONVICT_ANY), that page is the
  one: it is answered with an `engine_crash` row and never sent again. Once may be a kill from
  outside (an OOM kill, a preemption); two different outside faults (a stopped core, then a killed
  one) are not the page's doing, while a page that breaks the engine does it the same way. A suspect
  that runs fine alone is cleared. An actor that dies without reporting (SIGKILL, preemption) makes
  no suspects: its batches are retried as they were.

The driver polls verdict() and, when it is set, stops the job without committing (exit code 4);
`--resume` finishes the run later. `HealthLedger` is the pure logic; `JobHealth` is the Ray actor
around it (one per run, named after the run). An engine actor speaks to it through `EngineHealth`,
one typed method per operation: `RemoteHealth` sends them to JobHealth, `LocalHealth` serves an
actor used without Ray.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

from pipeline.engine.cores import CoreRecord

CONVICT_AFTER = 2  # engine failures of one kind with the page alone in it before it is set aside
CONVICT_ANY = 3  # ... or of any kinds
SUSPECT = "suspect"
GUILTY = "guilty"


def failure_kind(reason: str) -> str:
    """Two failures are of one kind when their reasons differ only in numbers (pids, seconds)."""
    return re.sub(r"\d+(\.\d+)?", "#", reason)[:300]


def actor_name(run_id: str) -> str:
    return f"docintel-health-{run_id}"


@dataclass
class HealthLedger:
    start_attempts: int = 3
    max_restarts_without_progress: int = 5
    replicas: int = 1  # engine actors the job runs: their first starts are not restarts
    suspects: set[str] = field(default_factory=set)
    guilty: dict[str, str] = field(default_factory=dict)  # page key -> why
    alone_failures: dict[str, Counter] = field(default_factory=dict)  # suspect -> failure kind -> count
    starts_failed_in_a_row: int = 0
    ever_ready: bool = False
    restarts_since_progress: int = 0
    incarnations: dict[str, int] = field(default_factory=dict)  # actor id -> starts
    starts: int = 0
    cores: dict[str, list[CoreRecord]] = field(default_factory=dict)  # actor id -> its engine's cores
    pages_done: int = 0
    ready_at: float | None = None  # when the first engine was ready (epoch seconds)
    first_request_at: float | None = None  # when the job's first request entered an engine (epoch seconds)
    last_failure: str | None = None
    stop_reason: str | None = None
    events: list[str] = field(default_factory=list)  # for the driver's terminal, in order

    # ---- engine lifecycle -------------------------------------------------------------------

    def engine_starting(self, actor_id: str) -> list[CoreRecord]:
        """An engine actor (re)starts. Returns the engine cores its previous incarnation left, for the
        new one to make sure they are gone (pipeline/engine/cores.py says which it may kill)."""
        # Counted per start, not per actor id: Ray restarts an actor under its id, but Ray Data
        # replaces one that died while starting with a new actor.
        self.incarnations[actor_id] = self.incarnations.get(actor_id, 0) + 1
        self.starts += 1
        if self.starts > self.replicas:
            self.restarts_since_progress += 1
            if self.restarts_since_progress > self.max_restarts_without_progress:
                self._stop(f"the engine restarted {self.restarts_since_progress} times without answering a "
                           f"page (ray.max_restarts_without_progress={self.max_restarts_without_progress})")
        return self.cores.pop(actor_id, [])

    def engine_ready(self, actor_id: str, cores: list[CoreRecord], pid: int | None = None,
                     seconds: float | None = None, at: float | None = None) -> None:
        self.ever_ready = True
        if at is not None and (self.ready_at is None or at < self.ready_at):
            self.ready_at = at
        self.starts_failed_in_a_row = 0
        self.cores[actor_id] = list(cores)
        self.events.append(f"engine ready in {seconds or 0:.1f}s (actor pid {pid}, engine core "
                           f"{[core.pid for core in cores]}, at {at or 0:.3f})")

    def engine_start_failed(self, actor_id: str, error: str) -> None:
        self.starts_failed_in_a_row += 1
        self.last_failure = error
        self.events.append(f"engine could not start (attempt {self.starts_failed_in_a_row} of "
                           f"{self.start_attempts}): {error[:300]}")
        if self.starts_failed_in_a_row >= self.start_attempts:
            what = "could not start" if not self.ever_ready else "could not start again"
            self._stop(f"the engine {what}: {self.starts_failed_in_a_row} attempts in a row failed "
                       f"(ray.engine_start_attempts={self.start_attempts}); last error: {error}")

    def engine_failed(self, actor_id: str, reason: str, in_flight: list[str], exclusive: list[str]) -> None:
        """The engine of a running actor failed with these page keys in flight."""
        self.last_failure = reason
        pages = sorted({k for k in in_flight if k})
        if len(set(exclusive)) == 1:
            (key,) = set(exclusive)
            seen = self.alone_failures.setdefault(key, Counter())
            seen[failure_kind(reason)] += 1
            if max(seen.values()) < CONVICT_AFTER and sum(seen.values()) < CONVICT_ANY:
                self.suspects.add(key)
                self.events.append(f"engine failed ({reason}) with page {key} alone in it: restarting; it runs "
                                   "alone once more")
                return
            self.guilty[key] = reason
            self.suspects.discard(key)
            self.events.append(f"engine failed ({reason}) with page {key} alone in it, {sum(seen.values())} "
                               "times: that page is set aside (engine_crash); restarting")
        else:
            self.suspects.update(k for k in pages if k not in self.guilty)
            self.events.append(f"engine failed ({reason}) with {len(pages)} page(s) in flight: restarting; they "
                               "are retried one at a time")

    # ---- pages ------------------------------------------------------------------------------

    def statuses(self, keys: list[str]) -> dict[str, str]:
        """SUSPECT or GUILTY for the keys that are either; the rest are healthy."""
        out = {}
        for key in keys:
            if key in self.guilty:
                out[key] = GUILTY
            elif key in self.suspects:
                out[key] = SUSPECT
        return out

    def answered(self, keys: list[str]) -> None:
        """These pages got through the engine: progress, and cleared suspicion."""
        if keys:
            self.pages_done += len(keys)
            self.restarts_since_progress = 0
            self.suspects.difference_update(keys)

    def first_request(self, at: float) -> None:
        """An engine took its first request of the job at `at` (epoch seconds; the earliest counts)."""
        if self.first_request_at is None or at < self.first_request_at:
            self.first_request_at = at

    # ---- the job ----------------------------------------------------------------------------

    def timeline(self) -> dict[str, float | None]:
        return {"engine_ready_at": self.ready_at, "first_request_at": self.first_request_at}

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            if self.last_failure and self.last_failure not in reason:
                reason += f"; last engine failure: {self.last_failure}"
            self.stop_reason = reason

    def events_since(self, seen: int) -> list[str]:
        return self.events[seen:]

    def verdict(self) -> str | None:
        """None while the job may go on; else why it must stop."""
        return self.stop_reason


class JobHealth:
    """The ledger as a Ray actor (created by the driver, one per run; see run.py)."""

    def __init__(self, start_attempts: int, max_restarts_without_progress: int, replicas: int):
        self.ledger = HealthLedger(start_attempts, max_restarts_without_progress, replicas)

    def call(self, method: str, *args):
        return getattr(self.ledger, method)(*args)


CALL_TIMEOUT_S = 30.0  # an engine actor waits this long for the ledger, unless a call says otherwise


@runtime_checkable
class EngineHealth(Protocol):
    """What an engine actor tells and asks the run's ledger: one method per HealthLedger operation,
    of the same name. A call that returns something waits for the ledger; those of a failing actor,
    which exits right after, take a shorter `timeout` (seconds). answered and first_request do not
    wait: a batch's rows must not queue behind the ledger."""

    def engine_starting(self, actor_id: str) -> list[CoreRecord]: ...

    def engine_ready(self, actor_id: str, cores: list[CoreRecord], pid: int, seconds: float, at: float) -> None: ...

    def engine_start_failed(self, actor_id: str, error: str, *, timeout: float = CALL_TIMEOUT_S) -> None: ...

    def engine_failed(self, actor_id: str, reason: str, in_flight: list[str], exclusive: list[str], *,
                      timeout: float = CALL_TIMEOUT_S) -> None: ...

    def statuses(self, keys: list[str]) -> dict[str, str]: ...

    def answered(self, keys: list[str]) -> None: ...

    def first_request(self, at: float) -> None: ...


class _LedgerClient(ABC):
    """EngineHealth's methods, each passed on as the HealthLedger method of its name; a subclass says
    how a call reaches the ledger (`_wait`) and how one is sent without waiting (`_send`)."""

    @abstractmethod
    def _wait(self, operation: Callable, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any: ...

    @abstractmethod
    def _send(self, operation: Callable, *args: Any) -> None: ...

    def engine_starting(self, actor_id: str) -> list[CoreRecord]:
        return self._wait(HealthLedger.engine_starting, actor_id)

    def engine_ready(self, actor_id: str, cores: list[CoreRecord], pid: int, seconds: float, at: float) -> None:
        self._wait(HealthLedger.engine_ready, actor_id, cores, pid, seconds, at)

    def engine_start_failed(self, actor_id: str, error: str, *, timeout: float = CALL_TIMEOUT_S) -> None:
        self._wait(HealthLedger.engine_start_failed, actor_id, error, timeout=timeout)

    def engine_failed(self, actor_id: str, reason: str, in_flight: list[str], exclusive: list[str], *,
                      timeout: float = CALL_TIMEOUT_S) -> None:
        self._wait(HealthLedger.engine_failed, actor_id, reason, in_flight, exclusive, timeout=timeout)

    def statuses(self, keys: list[str]) -> dict[str, str]:
        return self._wait(HealthLedger.statuses, keys)

    def answered(self, keys: list[str]) -> None:
        self._send(HealthLedger.answered, keys)

    def first_request(self, at: float) -> None:
        self._send(HealthLedger.first_request, at)


class LocalHealth(_LedgerClient):
    """The ledger in process: for an engine actor constructed without Ray (tests, tools)."""

    def __init__(self, ledger: HealthLedger | None = None):
        self.ledger = ledger or HealthLedger()

    def _wait(self, operation: Callable, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        # A call in process returns when the ledger is done: there is nothing to time out.
        return operation(self.ledger, *args)

    def _send(self, operation: Callable, *args: Any) -> None:
        operation(self.ledger, *args)


class RemoteHealth(_LedgerClient):
    """Client side of JobHealth inside an engine actor."""

    def __init__(self, handle):
        self.handle = handle

    def _wait(self, operation: Callable, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        import ray

        return ray.get(self.handle.call.remote(operation.__name__, *args), timeout=timeout)

    def _send(self, operation: Callable, *args: Any) -> None:
        self.handle.call.remote(operation.__name__, *args)

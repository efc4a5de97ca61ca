"""How the CPU stages feed the engines, and what a run can show of it afterwards.

A run's listing is one Parquet file (its record's inputs.parquet), which Ray Data reads as one
block, and Ray Data fuses read -> split -> requests into one operator that runs one task per input
block. Left at that, one CPU renders the whole job while the GPU waits (measured on an H200: 1.82
pages/s against 9.77 for raw vLLM, bench/RESULTS.md). So, in run.build_dataset:

* the listing is cut, streaming, into blocks of `documents_per_task` documents (Ray Data's
  `repartition(target_num_rows_per_block=...)`, which is not fused with the stage after it): each
  block is one task of the fused stages, and the cluster runs as many at once as it has CPUs for;
  a few tasks per CPU keep every CPU busy to the end of a small job, and a cap keeps a large job's
  tasks short (a task's documents render one after another);
* the request stage takes each table the split stage yields as it comes (no batch size: a batch
  size there would make Ray bundle that many *documents* into one task), and its rows leave the
  task in blocks of one engine batch (a streaming repartition, fused into the task), so the engine
  gets pages as they are rendered, not when a task or the listing is done.

After the run, `report(...)` says how it went: how many CPU-stage tasks ran and how many at once
(from Ray Data's per-block execution stats), when the first engine was ready, when the first
request entered an engine and when the last page was rendered (wall-clock times taken where they
happen: the engine loop and the split stage). It goes into the run's _SUCCESS as `feeding`.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from pipeline.core import compat

TASKS_PER_CPU = 4
MAX_DOCUMENTS_PER_TASK = 32
CPU_STAGE_FUNCTION = "_split"  # run._split: the fused read -> split -> requests operator is named after it


def documents_per_task(documents: int, cpus: float) -> int:
    """Documents in one read -> split -> requests task: at least TASKS_PER_CPU tasks per CPU of the
    cluster, at most MAX_DOCUMENTS_PER_TASK documents a task (5 on a laptop: 1 each; 10 million on
    a cluster of 1,000 CPUs: 32 each)."""
    return max(1, min(MAX_DOCUMENTS_PER_TASK, int(documents // max(1.0, TASKS_PER_CPU * cpus))))


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans open at one moment."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def cpu_stage(stats) -> dict[str, Any]:
    """Tasks of the fused read -> split -> requests operator, from Ray Data's DatasetStats (the
    dataset's stats once it ran, pipeline/core/compat.py): how many, how many at once (per node,
    added up: each node's clock is its own), on how many nodes. {} when the stats say nothing."""
    tasks: dict[tuple[str, int], list[float]] = {}
    for node, task, start, end in compat.map_batches_blocks(stats, CPU_STAGE_FUNCTION) or []:
        span = tasks.setdefault((node, task), [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    if not tasks:
        return {}
    per_node: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (node, _), (start, end) in tasks.items():
        per_node[node].append((start, end))
    return {"tasks": len(tasks), "most_at_once": sum(most_at_once(s) for s in per_node.values()),
            "nodes": len(per_node)}


def report(per_task: int, stats, timeline: dict[str, Any], last_rendered_at: float | None) -> dict[str, Any]:
    """The run's `feeding` entry: its settings, its CPU stage, and its engine timeline (epoch seconds)."""
    stage = cpu_stage(stats) if stats is not None else {}  # compat reads Ray's stats: a change warns, never fails
    ready, first = timeline.get("engine_ready_at"), timeline.get("first_request_at")
    out = {"documents_per_task": per_task, "cpu_stage": stage, "engine_ready_at": ready, "first_request_at": first,
           "last_page_rendered_at": last_rendered_at}
    if ready is not None and first is not None:
        out["first_request_after_ready_s"] = round(first - ready, 3)
    if first is not None and last_rendered_at is not None:
        out["first_request_before_last_render_s"] = round(last_rendered_at - first, 3)
    return out

"""The private internals of vLLM and Ray that docintel relies on (pipeline/core/compat.py): each is
there in the installed versions, used the way the callers use it, or this fails and names what a run
would lose; and where one is missing at run time, the warning names the cost, once per process."""
import inspect
import logging
import os
from types import SimpleNamespace

import pytest

from pipeline.core import compat
from pipeline.job import feeding


@pytest.fixture
def warnings_of_compat(caplog, monkeypatch):
    """The warnings compat logs from here on, as if this process had warned of nothing yet."""
    monkeypatch.setattr(compat, "_warned", set())
    caplog.set_level(logging.WARNING, logger=compat.__name__)
    return lambda: [r.getMessage() for r in caplog.records if r.name == compat.__name__]


def _gone(internal: compat.Internal, said: str | None = None) -> str:
    """A failure's message: what a run logs without the internal (or `said`), and where it was read."""
    said = said or f"{internal.name} is missing: {internal.cost}"
    return f"{said}. Read in {internal.read_in}: find what replaced it and update pipeline/core/compat.py"


def _as_warned(warnings: list[str]) -> str:
    """A failure's message from the warnings compat logged: each internal it names, where it was read."""
    named = [_gone(i, w) for w in warnings for i in compat.INTERNALS if w.startswith(i.name + " ")]
    return "\n".join(named) or f"compat logged no warning: {warnings}"


# ---- present in the installed vLLM and Ray ------------------------------------------------------

def test_vllm_llm_still_has_the_two_halves_of_enqueue_chat_the_engine_loop_calls(warnings_of_compat):
    from vllm import LLM

    render, add = compat.chat_renderer(LLM), compat.request_adder(LLM)
    assert render is not None and add is not None, _as_warned(warnings_of_compat())
    # pipeline/engine/loop.py calls render(conversation) and add(rendered, params), on an LLM instance
    for internal, method, args in ((compat.PREPROCESS_CHAT_ONE, render, [[{"role": "user", "content": "?"}]]),
                                   (compat.ADD_REQUEST, add, ["rendered", "params"])):
        try:
            inspect.signature(method).bind("llm", *args)
        except TypeError as exc:
            pytest.fail(_gone(internal, f"{internal.name}{inspect.signature(method)} no longer takes the loop's "
                                        f"arguments ({exc}): {internal.cost}"))


@pytest.fixture(scope="module")
def local_ray():
    """A Ray of this process's own (never one another test started with `ray start`), one CPU. ray.init
    writes into this process's environment (RAY_AUTH_MODE=token among it), which every later test's
    child processes would inherit: the session's Ray, started without a token, then refuses their
    jobs' actors. So the environment is put back as it was."""
    import os

    import ray

    saved = dict(os.environ)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()
            os.environ.clear()
            os.environ.update(saved)


def test_ray_data_still_reports_each_task_of_a_named_map_batches_operator(local_ray, warnings_of_compat):
    from pipeline.job import run

    def _split(batch):  # named as run.py's split stage (defined here: Ray's workers pickle it by value)
        return batch

    assert run._split.__name__ == _split.__name__ == feeding.CPU_STAGE_FUNCTION
    ds = local_ray.data.range(6, override_num_blocks=3).map_batches(_split, batch_size=1)
    assert sum(len(b["id"]) for b in ds.iter_batches(batch_size=None)) == 6  # driven as run.py drives it
    stats = compat.dataset_stats(ds)
    assert stats is not None, _as_warned(warnings_of_compat())
    blocks = compat.map_batches_blocks(stats, _split.__name__)
    assert blocks is not None, _as_warned(warnings_of_compat())
    assert blocks, _gone(compat.RAW_STATS, f"no block of MapBatches({_split.__name__}) has exec_stats with its "
                                           f"times: {compat.RAW_STATS.cost}")
    stage = feeding.cpu_stage(stats)
    assert stage["tasks"] == 3 and stage["nodes"] == 1, stage


def test_ray_still_names_the_sessions_log_folder(local_ray, warnings_of_compat):
    folder = compat.ray_log_folder()
    assert not warnings_of_compat(), _as_warned(warnings_of_compat())
    assert folder is not None and os.path.isdir(folder), _gone(
        compat.GLOBAL_NODE, f"in a driver that started its own Ray it names {folder!r}, not a folder")


def test_every_declared_internal_is_checked_here():
    checked = {compat.PREPROCESS_CHAT_ONE, compat.ADD_REQUEST, compat.RAW_STATS, compat.OPERATOR_NAME,
               compat.GLOBAL_NODE}
    assert set(compat.INTERNALS) == checked, "a new internal in compat.INTERNALS needs its check above"


# ---- missing at run time: a warning that names the cost, once ------------------------------------

def test_an_engine_without_the_two_halves_is_warned_of_once_naming_the_cost(warnings_of_compat):
    engine = SimpleNamespace(enqueue_chat=lambda *a, **k: ["1"])  # a vLLM that dropped both
    assert compat.chat_renderer(engine) is None and compat.request_adder(engine) is None
    assert compat.chat_renderer(engine) is None  # a second engine in the process: no second warning
    assert warnings_of_compat() == [
        "vLLM LLM._preprocess_chat_one is missing: requests are rendered on the engine thread, which capped a "
        "GPU at ~20 requests/s (pipeline/engine/loop.py)",
        "vLLM LLM._add_request is missing: requests are rendered on the engine thread, which capped a GPU at "
        "~20 requests/s (pipeline/engine/loop.py)"]


def test_a_dataset_whose_raw_stats_fail_or_are_gone_is_warned_of_once(warnings_of_compat):
    assert compat.dataset_stats(SimpleNamespace(_raw_stats=lambda: 1 / 0)) is None
    assert compat.dataset_stats(SimpleNamespace()) is None  # already warned in this process
    assert warnings_of_compat() == ["Ray Data Dataset._raw_stats() is missing (it raised ZeroDivisionError: "
                                    f"division by zero): {compat.RAW_STATS.cost}"]


def _stats(operators: dict, parents=()):
    """A DatasetStats as Ray 2.60 shapes it: operator name -> per-block stats; upstream stats."""
    return SimpleNamespace(metadata=operators, parents=list(parents))


def _block(task, start, end, node="n1"):
    return SimpleNamespace(exec_stats=SimpleNamespace(node_id=node, task_idx=task, start_time_s=start,
                                                      end_time_s=end))


def test_the_split_stage_is_found_inside_a_fused_operator_upstream(warnings_of_compat):
    fused = "ReadParquet->MapBatches(_read)->MapBatches(_split)->MapBatches(_requests)"
    stats = _stats({"MapBatches(_answer_and_write)": [_block(0, 5, 6)]},
                   [_stats({fused: [_block(0, 0, 2), _block(0, 1, 3), _block(1, 1, 2), _block(0, 0, 1, "n2")]})])
    assert feeding.cpu_stage(stats) == {"tasks": 3, "most_at_once": 3, "nodes": 2}
    unmeasured = _stats({"ReadParquet->MapBatches(_split)": [SimpleNamespace(exec_stats=None)]})
    assert feeding.cpu_stage(unmeasured) == {}
    assert warnings_of_compat() == []  # the name is there: nothing is missing


def test_stats_whose_operators_are_named_otherwise_are_warned_of_naming_the_cost(warnings_of_compat):
    stats = _stats({"MapBatches(_answer_and_write)": [_block(0, 5, 6)]}, [_stats({"Map[_split]": [_block(0, 0, 2)]})])
    assert feeding.cpu_stage(stats) == {}
    (warning,) = warnings_of_compat()
    assert warning.startswith(f"{compat.OPERATOR_NAME.name} is missing (none of the operators that ran is named "
                              "MapBatches(_split): ") and warning.endswith(compat.OPERATOR_NAME.cost), warning


def test_stats_of_another_shape_are_warned_of_and_never_fail_the_run(warnings_of_compat):
    stats = SimpleNamespace(metadata={"MapBatches(_split)": [_block(0, 0, 1)]})  # no .parents
    assert feeding.report(2, stats, {"engine_ready_at": 1.0}, None)["cpu_stage"] == {}
    (warning,) = warnings_of_compat()
    assert "Dataset._raw_stats() is missing (its stats are not as read: AttributeError" in warning, warning


def test_a_ray_without_its_global_node_is_warned_of_and_names_no_log_folder(warnings_of_compat, monkeypatch):
    from ray._private import worker

    monkeypatch.setattr(worker, "_global_node", None)
    assert compat.ray_log_folder() is None and warnings_of_compat() == []  # no local node: nothing is missing
    monkeypatch.delattr(worker, "_global_node")
    assert compat.ray_log_folder() is None
    assert warnings_of_compat() == [f"{compat.GLOBAL_NODE.name} is missing: {compat.GLOBAL_NODE.cost}"]

"""Things declared once stay declared once: the README's lists match the code."""
import re
from pathlib import Path

from pipeline.cli import FLAGS, Exit
from pipeline.core.rows import ErrorKind

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_readme_lists_exactly_the_error_kinds():
    listed = README.split("Error kinds:", 1)[1].split("(one enumeration", 1)[0]
    assert set(re.findall(r"`([a-z_]+)`", listed)) == {k.value for k in ErrorKind}


def test_the_readme_names_every_run_flag_and_exit_code():
    spec_section = README.split("### Job spec", 1)[1].split("###", 1)[0]
    for flag in FLAGS:
        if flag.name != "set":
            assert f"`--{flag.name}`" in spec_section, flag.name
    codes = README.split("Exit codes:", 1)[1].split("\n\n", 1)[0]
    for code in Exit:
        assert re.search(rf"\b{int(code)} ", codes), code


def test_ray_data_restarts_engine_actors_and_retries_their_batches_without_limit():
    """run.py relies on Ray Data's defaults for actor pools instead of setting them (the old
    ray_remote_args_fn goes away in Ray 2.64): an upgrade that changes them must fail here."""
    import ray.data
    from ray.data._internal.execution.operators.actor_pool_map_operator import ActorPoolMapOperator

    args = ActorPoolMapOperator._apply_default_remote_args({}, ray.data.DataContext.get_current())
    assert args["max_restarts"] == -1 and args["max_task_retries"] == -1

"""Chaos, short: workers of every stage (engine actor, read/render tasks, answer/write tasks)
SIGKILLed every few seconds through a real run, while pages are answered and written; the run still
commits with every page exactly once. scripts/chaos.py is the long version (README, reliability)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from chaos import chaos  # noqa: E402

pytestmark = [pytest.mark.engine, pytest.mark.faults]


def test_workers_of_every_stage_killed_through_a_run_nothing_lost_nothing_twice(tmp_path, demo_model):
    result = chaos(demo_model, tmp_path, docs=10, kills=4, every=6, stages=["engine", "read", "write"], seed=1,
                   batch_size=2, timeout=1200)
    assert result["exit_code"] == 0, result.get("log_tail")
    assert sum(result["kills"].values()) >= 3, result  # the kills landed while there was work
    assert result["rows"] == result["pages"] * 2 and result["valid_rows"] == result["rows"], result

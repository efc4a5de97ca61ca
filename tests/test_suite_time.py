"""scripts/suite_time.py: the guard on the suite's time reads pytest's --durations lines and the
suite table of bench/RESULTS.md, and names the files that grew by more than half."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import suite_time  # noqa: E402

LOG = """
============================= slowest 25 durations =============================
400.12s call     tests/test_faults_engine.py::test_a_page_that_kills_the_engine_is_found_and_costs_only_itself
100.00s setup    tests/test_readers.py::test_spark_reads_the_folder
 20.50s call     tests/test_readers.py::test_spark_reads_the_folder
 90.00s call     tests/test_new.py::test_x
  0.50s call     tests/test_tiny.py::test_y
"""
TABLE = """# Results

## Suite time by test file

| file | tests | before, s | after, s |
| --- | --- | --- | --- |
| `tests/test_faults_engine.py` | 3 | 1,000 | 300 |
| `tests/test_readers.py` | 4 | 200 | 100 |

## Something else
| `tests/test_new.py` | 1 | 1 | 1 |
"""


def test_files_are_summed_and_the_grown_ones_named():
    now = suite_time.file_seconds(LOG)
    assert now == {"tests/test_faults_engine.py": 400.12, "tests/test_readers.py": 120.5, "tests/test_new.py": 90.0,
                   "tests/test_tiny.py": 0.5}
    ref = suite_time.reference(TABLE)
    assert ref == {"tests/test_faults_engine.py": 300.0, "tests/test_readers.py": 100.0}  # only its own section
    assert suite_time.grown(now, ref) == ["tests/test_new.py: 90 s, not in the table (a new file: add it)"]
    stricter = suite_time.grown(now, ref, limit=1.3)
    assert stricter[0] == "tests/test_faults_engine.py: 400 s against 300 s in the table (1.3x)" and len(stricter) == 2


def test_the_table_in_the_results_names_every_test_file(tmp_path):
    ref = suite_time.reference((REPO / "bench" / "RESULTS.md").read_text())
    files = {f"tests/{p.name}" for p in (REPO / "tests").glob("test_*.py")}
    assert files <= set(ref), f"not in the suite table of bench/RESULTS.md: {sorted(files - set(ref))}"
    log = tmp_path / "ci.log"
    log.write_text(LOG)
    assert suite_time.main([str(log)]) == 1  # test_new.py is not in the table

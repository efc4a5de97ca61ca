"""The output tables: schemas in schemas/ equal the code; readers see committed runs only; the latest
run is the newest commit, not the greatest name."""
import datetime as dt
import json
from pathlib import Path

import pytest

from pipeline.store import fileio, layout, output, schema_files
from pipeline.core.rows import DOCUMENT_TABLE, PAGE_TABLE

REPO = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("name, shape, doc", [("pages.arrow.json", PAGE_TABLE, schema_files.PAGE_TABLE_DOC),
                                              ("documents.arrow.json", DOCUMENT_TABLE, schema_files.DOCUMENT_TABLE_DOC)])
def test_schema_files_in_repo_match_the_code(name, shape, doc):
    stored = json.loads((REPO / "schemas" / name).read_text())
    assert stored == schema_files.schema_document(shape, *doc), f"regenerate schemas/{name}: python -m pipeline.store.schema_files"


def _write_run(root: Path, run_id: str, rows: int, commit_at: str | None) -> None:
    paths = layout.RunPaths(str(root), run_id)
    table = PAGE_TABLE.table([PAGE_TABLE.row(run_id=run_id, doc_id=f"d{i}", source_uri="u", task="docvqa",
                                             prompt_version="p", model_id="m", valid=True, attempts=1,
                                             created_at=NOW) for i in range(rows)])
    fileio.write_table(f"{paths.staging('pages')}/part-0.parquet", table)
    if commit_at:
        fileio.move_files(paths.staging("pages"), paths.pages)
        fileio.write_json(paths.success, {"rows": rows, "committed_at": commit_at})


def test_only_committed_runs_are_read_and_the_latest_is_by_commit_time(tmp_path):
    _write_run(tmp_path, "nightly-10", 2, "2026-11-30T01:00:00+00:00")
    _write_run(tmp_path, "nightly-9", 4, "2026-11-29T01:00:00+00:00")  # sorts after -10 by name, committed first
    _write_run(tmp_path, "nightly-11", 3, None)  # a run that died before its commit
    assert output.committed_runs(str(tmp_path)) == ["nightly-9", "nightly-10"]
    assert output.read_pages(str(tmp_path)).column("run_id").to_pylist() == ["nightly-10"] * 2
    with pytest.raises(FileNotFoundError, match="unfinished"):
        output.read_pages(str(tmp_path), "nightly-11")
    assert not (tmp_path / "pages" / "nightly-11").exists()  # staged, outside the table


def test_rows_that_do_not_fit_the_schema_are_refused():
    with pytest.raises(Exception):
        PAGE_TABLE.table([{"doc_id": "d", "page_index": "not a number"}])
    with pytest.raises(KeyError, match="no column"):
        PAGE_TABLE.row(doc_answer_json="gone")

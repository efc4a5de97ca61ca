"""Reading what runs wrote: the page table and the document table, committed runs only.

    OUTPUT/pages/RUN_ID/*.parquet       one row per (page, question), and a row per failure
    OUTPUT/documents/RUN_ID/*.parquet   one row per (document, question); per document for fields

Whole-folder reads (pyarrow, pandas, DuckDB, Polars, Spark) of OUTPUT/pages or OUTPUT/documents see
committed runs only (pipeline/store/layout.py says why). These helpers add the choice of one run:
`read_pages(OUT)` is the latest committed run by commit time. The schemas are in core/rows.py and
written to schemas/*.arrow.json by schema_files.py (a test keeps the files equal to the code).
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads

from pipeline.store import fileio, layout
from pipeline.core.rows import PAGE_TABLE


def committed_runs(output: str) -> list[str]:
    """Run ids under OUTPUT that committed, oldest commit first."""
    return [run_id for run_id, _ in layout.committed_runs(output)]


def run_dataset(output: str, run_id: str | None, table: str,
                schema: pa.Schema | None) -> tuple[str, pads.Dataset | None]:
    """(the run id, a pyarrow dataset over its `table` files: "pages" or "documents"; None when it has
    none). The newest committed run when run_id is None; FileNotFoundError for a run not committed."""
    runs = committed_runs(output)
    if run_id is None:
        if not runs:
            raise FileNotFoundError(f"no committed run under {output}")
        run_id = runs[-1]
    elif run_id not in runs:
        raise FileNotFoundError(f"run {run_id} under {output} is missing or unfinished (not committed)")
    paths = layout.RunPaths(output, run_id)
    files = fileio.list_files(paths.pages if table == "pages" else paths.documents)
    if not files:
        return run_id, None
    fs, _ = fileio.open_fs(files[0])
    return run_id, pads.dataset([fileio.open_fs(f)[1] for f in files], filesystem=fs, format="parquet",
                                schema=schema)


def _read(output: str, run_id: str | None, table: str, schema: pa.Schema | None) -> pa.Table:
    _, dataset = run_dataset(output, run_id, table, schema)
    if dataset is None:
        return schema.empty_table() if schema is not None else pa.table({})
    return dataset.to_table()


def read_pages(output: str, run_id: str | None = None) -> pa.Table:
    """The page table of one committed run (default: the latest)."""
    return _read(output, run_id, "pages", PAGE_TABLE.schema)


def read_documents(output: str, run_id: str | None = None) -> pa.Table:
    """The document table of one committed run (default: the latest); a fields run has its typed
    columns too, so its schema is the files' own."""
    return _read(output, run_id, "documents", None)


def marker(output: str, run_id: str) -> dict[str, Any] | None:
    """The run's _SUCCESS content (counts, committed_at), None if not committed."""
    return fileio.read_json(layout.RunPaths(output, run_id).success)

"""Reading what runs wrote: the page table and the document table, committed runs only.

    OUTPUT/pages/RUN_ID/*.parquet       one row per (page, question), and a row per failure
    OUTPUT/documents/RUN_ID/*.parquet   one row per (document, question); per document for fields

Whole-folder reads (pyarrow, pandas, DuckDB, Polars, Spark) of OUTPUT/pages or OUTPUT/documents see
committed runs only (pipeline/layout.py says why). These helpers add the choice of one run:
`read_pages(OUT)` is the latest committed run by commit time. The schemas are in rows.py and
written to schemas/*.arrow.json (a test keeps the files equal to the code).
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads

from pipeline import layout
from pipeline.rows import DOCUMENT_TABLE, PAGE_TABLE, Shape

SCHEMA_VERSION = "2"


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
    files = layout.list_files(paths.pages if table == "pages" else paths.documents)
    if not files:
        return run_id, None
    fs, _ = layout.open_fs(files[0])
    return run_id, pads.dataset([layout.open_fs(f)[1] for f in files], filesystem=fs, format="parquet",
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


read_results = read_pages  # the name earlier releases documented


def marker(output: str, run_id: str) -> dict[str, Any] | None:
    """The run's _SUCCESS content (counts, committed_at), None if not committed."""
    return layout.read_marker(output, run_id)


def schema_document(shape: Shape, title: str, description: str) -> dict[str, Any]:
    """A table's schema as the JSON document stored in schemas/."""
    return {"title": title, "description": description, "schema_version": SCHEMA_VERSION,
            "fields": shape.document()}


PAGE_TABLE_DOC = ("docintel page table",
                  "One row per (page, question) of every task; failed documents and pages have rows too, with "
                  "error_kind and error set. OUTPUT/pages/RUN_ID/*.parquet; only committed runs are there.")
DOCUMENT_TABLE_DOC = ("docintel document table",
                      "One row per (document, question) for docvqa, chartqa and classify, one per document for "
                      "fields (then followed by one typed column per property of the user's schema). "
                      "OUTPUT/documents/RUN_ID/*.parquet; only committed runs are there.")


def write_schema_files(folder: str = "schemas") -> None:
    """Regenerate schemas/pages.arrow.json and schemas/documents.arrow.json from rows.py."""
    import json
    from pathlib import Path

    for name, shape, doc in (("pages", PAGE_TABLE, PAGE_TABLE_DOC), ("documents", DOCUMENT_TABLE, DOCUMENT_TABLE_DOC)):
        Path(folder, f"{name}.arrow.json").write_text(
            json.dumps(schema_document(shape, *doc), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_schema_files()

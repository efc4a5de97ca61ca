"""The output tables' schemas as files: schemas/pages.arrow.json and schemas/documents.arrow.json,
generated from core/rows.py (`python -m pipeline.store.schema_files`; tests/test_output.py keeps the
files equal to the code). They document the tables for readers who do not read Python.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.rows import DOCUMENT_TABLE, PAGE_TABLE, Shape

SCHEMA_VERSION = "3"  # 3: token_confidence, needs_review, needs_review_rows (2026-12-06)


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
    """Regenerate schemas/pages.arrow.json and schemas/documents.arrow.json from core/rows.py."""
    for name, shape, doc in (("pages", PAGE_TABLE, PAGE_TABLE_DOC), ("documents", DOCUMENT_TABLE, DOCUMENT_TABLE_DOC)):
        Path(folder, f"{name}.arrow.json").write_text(
            json.dumps(schema_document(shape, *doc), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_schema_files()

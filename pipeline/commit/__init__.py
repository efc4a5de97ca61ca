"""Committing a run: per document inside Ray (perdoc), lost work (accounting), the document table
(rollup), the manifest (manifest), resume (resume), what makes two runs the same job (identity), and
the steps in order (commit)."""

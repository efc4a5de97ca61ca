from pipeline.commit.accounting import LOST, missing_rows

BASE = {"run_id": "r", "task": "docvqa", "model_id": "m", "prompt_version": "p1/docvqa-1"}


def _rows(uri, doc_id, *pages):
    return [{"source_uri": uri, "doc_id": doc_id, "page_index": p, "page_count": c, "error_kind": k}
            for p, c, k in pages]


def test_lost_documents_and_pages_get_rows():
    assert [(r["source_uri"], r["page_index"]) for r in missing_rows("/a.pdf", _rows(
        "/a.pdf", "A", (0, 3, None), (2, 3, None)), 2, BASE)] == [("/a.pdf", 1)]
    (doc,) = missing_rows("/b.pdf", [], 2, BASE)  # nothing written at all
    assert doc["page_index"] is None and doc["doc_id"].startswith("uri:") and doc["run_id"] == "r"
    assert missing_rows("/c.pdf", _rows("/c.pdf", "C", (None, None, "corrupt_pdf")), 2, BASE) == []
    cut = _rows("/d.pdf", "D", (0, 9, None), (1, 9, None), (None, 9, "page_limit"))
    assert missing_rows("/d.pdf", cut, 2, BASE) == []  # pages past max_pages are the page_limit row's
    for row in missing_rows("/a.pdf", _rows("/a.pdf", "A", (0, 3, None)), 5, BASE):
        assert row["error_kind"] == LOST and not row["valid"] and row["doc_id"] == "A"

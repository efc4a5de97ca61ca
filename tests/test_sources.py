"""Discovery and reading of local inputs: names as given, links, hidden and special files,
manifests (questions, errors at start) and allowed roots for every scheme."""
import json
import os
import re
import socket
import threading

import pyarrow as pa
import pytest
import yaml

from docgen import make_pdf, make_png
from pipeline.core.config import InputSpec
from pipeline.ingest.sources import content_id, discover, read_document
from pipeline.ingest.listing import uri_within


def test_discover_folders_globs_and_files_once_in_stable_order(tmp_path):
    make_pdf(tmp_path / "b" / "x.pdf", pages=1)
    make_png(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not picked from a folder")
    (tmp_path / ".hidden.png").write_bytes(b"")
    refs = discover(InputSpec(paths=[str(tmp_path), str(tmp_path / "b" / "*.pdf")]))
    assert [os.path.relpath(r.source_uri, tmp_path) for r in refs] == ["a.png", "b/x.pdf"]


def test_manifest_questions_and_roots(tmp_path):
    (tmp_path / "docs").mkdir()
    make_png(tmp_path / "docs" / "r.png")
    outside = tmp_path / "secret.png"
    make_png(outside)
    (tmp_path / "docs" / "link.png").symlink_to(outside)
    manifest = tmp_path / "docs" / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(e) for e in [
        {"path": "r.png", "questions": ["What is the total?"]},
        {"path": "../secret.png"},
        {"path": "link.png"},
    ]))
    refs = discover(InputSpec(manifest=str(manifest)))
    assert refs[0].questions == ("What is the total?",) and refs[0].error_kind is None
    assert [r.error_kind for r in refs[1:]] == ["path_not_allowed", "path_not_allowed"]
    rows = [read_document(r.to_row(), 10**6) for r in refs]
    assert rows[1]["data"] is None and rows[1]["doc_id"].startswith("uri:")


def test_read_errors_are_rows(tmp_path):
    missing = read_document({"source_uri": str(tmp_path / "nope.pdf"), "questions": "[]",
                             "error_kind": None, "error": None}, 10**6)
    assert missing["error_kind"] == "not_found"
    big = make_png(tmp_path / "big.png")
    row = read_document({"source_uri": str(big), "questions": "[]", "error_kind": None, "error": None}, 10)
    assert row["error_kind"] == "file_too_large" and row["data"] is None


def test_document_id_is_the_content_hash(tmp_path):
    a = make_pdf(tmp_path / "a.pdf", pages=1)
    b = tmp_path / "copy.pdf"
    b.write_bytes(a.read_bytes())
    rows = [read_document({"source_uri": str(p), "questions": "[]", "error_kind": None, "error": None}, 10**7)
            for p in (a, b)]
    assert rows[0]["doc_id"] == rows[1]["doc_id"] == content_id(a.read_bytes())


# ---- inputs are read exactly as named ----------------------------------------------------

def _names(refs, root):
    return [os.path.relpath(r.source_uri, root) for r in refs]


def _row(path):
    return {"source_uri": str(path), "questions": "[]", "error_kind": None, "error": None}


def test_symlink_loop_gives_each_real_file_once(tmp_path):
    d = tmp_path / "D"
    make_pdf(d / "a.pdf", pages=1)
    (d / "loop").symlink_to(d)  # D/loop -> D: glob.glob walks it 40 deep
    for paths in ([str(d)], [str(d / "**" / "*.pdf")], [str(d), str(d / "loop" / "a.pdf")]):
        assert _names(discover(InputSpec(paths=paths)), d) == ["a.pdf"], paths


def test_symlinked_subfolder_is_read_once(tmp_path):
    d, elsewhere = tmp_path / "D", tmp_path / "elsewhere"
    make_pdf(d / "a.pdf", pages=1)
    make_pdf(d / "sub" / "s.pdf", pages=1)
    make_pdf(elsewhere / "e.pdf", pages=1)
    (d / "link").symlink_to(elsewhere)  # a folder reached only through a link: read
    (d / "alias").symlink_to(d / "sub")  # a folder reached directly too: once
    expected = ["a.pdf", "alias/s.pdf", "link/e.pdf"]
    assert _names(discover(InputSpec(paths=[str(d)])), d) == expected
    assert _names(discover(InputSpec(paths=[str(d / "**" / "*.pdf")])), d) == expected


def test_hidden_files_and_folders_are_skipped_alike_unless_named(tmp_path):
    d = tmp_path / "D"
    make_pdf(d / "ok.pdf", pages=1)
    make_pdf(d / ".old.pdf", pages=1)
    make_pdf(d / ".trash" / "old.pdf", pages=1)
    make_pdf(d / "sub" / ".cache" / "c.pdf", pages=1)
    assert _names(discover(InputSpec(paths=[str(d)])), d) == ["ok.pdf"]
    assert _names(discover(InputSpec(paths=[str(d / "**" / "*.pdf")])), d) == ["ok.pdf"]
    named = [str(d / ".trash"), str(d / ".old.pdf"), str(d / ".trash" / "*.pdf"), str(d / "sub" / ".*" / "*.pdf")]
    assert _names(discover(InputSpec(paths=named)), d) == [".trash/old.pdf", ".old.pdf", "sub/.cache/c.pdf"]


def test_a_named_file_with_glob_characters_is_taken_as_named(tmp_path):
    make_pdf(tmp_path / "report[1].pdf", pages=1)
    make_pdf(tmp_path / "report1.pdf", pages=1)
    assert _names(discover(InputSpec(paths=[str(tmp_path / "report[1].pdf")])), tmp_path) == ["report[1].pdf"]


def _read_in_thread(row, seconds=5.0):
    """read_document in a thread: a read that blocks shows up as None instead of hanging the test."""
    box = []
    t = threading.Thread(target=lambda: box.append(read_document(row, 10**6)), daemon=True)
    t.start()
    t.join(seconds)
    return box[0] if box else None


def test_fifo_socket_and_device_get_not_a_file_rows_and_are_never_opened(tmp_path):
    d = tmp_path / "D"
    make_pdf(d / "ok.pdf", pages=1)
    fifo = d / "x.pdf"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "s.pdf"))
    try:
        refs = discover(InputSpec(paths=[str(d), "/dev/null"]))
        assert [(os.path.basename(r.source_uri), r.error_kind) for r in refs] == [
            ("ok.pdf", None), ("s.pdf", "not_a_file"), ("x.pdf", "not_a_file"), ("null", "not_a_file")]
        assert "FIFO" in refs[2].error and "character device" in refs[3].error
        # read_document checks too: a FIFO named in a row (no discover) must not block the read
        row = _read_in_thread(_row(fifo))
        assert row is not None, "reading a FIFO blocked"
        assert row["error_kind"] == "not_a_file" and row["data"] is None and row["doc_id"].startswith("uri:")
        assert read_document(_row("/dev/null"), 10)["error_kind"] == "not_a_file"
    finally:
        sock.close()
        try:  # release a reader blocked on the FIFO (the old code), so the thread ends
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_an_unreadable_subfolder_gets_a_row_instead_of_vanishing(tmp_path, monkeypatch):
    import pipeline.ingest.sources as sources

    d = tmp_path / "D"
    make_pdf(d / "ok.pdf", pages=1)
    make_pdf(d / "locked" / "x.pdf", pages=1)
    real_entries = sources.entries

    def entries(folder):  # what a folder without read permission does (root ignores chmod)
        if os.path.basename(folder) == "locked":
            raise PermissionError(13, "Permission denied")
        return real_entries(folder)
    monkeypatch.setattr(sources, "entries", entries)
    refs = discover(InputSpec(paths=[str(d)]))
    assert [(os.path.relpath(r.source_uri, d), r.error_kind) for r in refs] == [("ok.pdf", None),
                                                                                 ("locked", "read_error")]
    assert "cannot list folder: Permission denied" in refs[1].error


def _unescape(text: str) -> bytes:
    """Inverse of listing.escape_name, as a user would rebuild the real name."""
    out, i = bytearray(), 0
    while i < len(text):
        if text.startswith("\\\\", i):
            out += b"\\"
            i += 2
        elif text.startswith("\\x", i):
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            out += text[i].encode()
            i += 1
    return bytes(out)


def test_file_name_that_is_not_utf8_gets_a_bad_file_name_row(tmp_path):
    d = tmp_path / "D"
    make_pdf(d / "ok.pdf", pages=1)
    raw = os.fsencode(d) + b"/caf\xe9 \\x41.pdf"  # latin-1 e-acute, and a literal backslash
    with open(raw, "wb") as f:
        f.write((d / "ok.pdf").read_bytes())
    refs = discover(InputSpec(paths=[str(d)]))
    bad = [r for r in refs if r.error_kind]
    assert [r.error_kind for r in refs] == ["bad_file_name", None] and len(bad) == 1
    assert "rename" in bad[0].error
    assert _unescape(bad[0].source_uri) == raw  # lossless
    rows = [read_document(r.to_row(), 10**6) for r in refs]
    pa.Table.from_pylist([{k: v for k, v in r.items() if k != "data"} for r in rows])  # later stages can write it
    json.dumps(rows[0]["source_uri"]).encode("utf-8")


# ---- manifests mean what they say --------------------------------------------------------

def _jsonl(path, entries):
    path.write_text("\n".join(json.dumps(e) for e in entries))
    return path


def test_manifest_questions_merge_when_a_document_is_listed_twice(tmp_path):
    make_png(tmp_path / "a.png")
    make_png(tmp_path / "b.png")
    m = _jsonl(tmp_path / "m.jsonl", [{"path": "a.png", "questions": ["q1", "q2"]}, {"path": "b.png"},
                                       {"path": "./a.png", "questions": ["q2", "q3", "q3"]}])
    refs = discover(InputSpec(manifest=str(m)))
    assert [(os.path.basename(r.source_uri), r.questions) for r in refs] == [("a.png", ("q1", "q2", "q3")),
                                                                             ("b.png", ())]


def test_folder_and_manifest_together_keep_the_manifest_questions(tmp_path):
    make_png(tmp_path / "a.png")
    make_png(tmp_path / "b.png")
    csv_m = tmp_path / "m.csv"
    csv_m.write_text("path,question\na.png,What is the total?\nb.png,\na.png,Who signed?\n")
    for manifest in (csv_m, _jsonl(tmp_path / "m.jsonl", [{"path": "a.png", "questions": ["What is the total?",
                                                                                            "Who signed?"]}])):
        refs = discover(InputSpec(paths=[str(tmp_path)], manifest=str(manifest)))
        assert [(os.path.basename(r.source_uri), r.questions) for r in refs] == [
            ("a.png", ("What is the total?", "Who signed?")), ("b.png", ())], manifest


@pytest.mark.parametrize("bad, says", [
    ({"path": "a.png", "questions": "What is the total?"}, "list of strings"),
    ({"path": "a.png", "questions": 42}, "list of non-empty strings"),
    ({"path": "a.png", "questions": ["ok", 3]}, "list of non-empty strings"),
    ({"questions": ["ok"]}, "'path' is missing"),
    ({"path": 2024}, "'path' is missing or not text"),
    (["a.png"], "mapping"),
], ids=["string", "number", "non-string-item", "no-path", "path-not-text", "not-a-mapping"])
@pytest.mark.parametrize("fmt", ["jsonl", "yaml", "json"])
def test_malformed_manifest_entry_fails_at_start_naming_file_and_entry(tmp_path, bad, says, fmt):
    make_png(tmp_path / "a.png")
    entries = [{"path": "a.png", "questions": ["fine"]}, bad]
    m = tmp_path / f"m.{fmt}"
    if fmt == "jsonl":
        _jsonl(m, entries)
        where = "line 2"
    else:
        m.write_text(json.dumps({"documents": entries}) if fmt == "json" else yaml.safe_dump(entries))
        where = "entry 2"
    with pytest.raises(ValueError, match=rf"manifest {re.escape(str(m))}, {where}: .*{re.escape(says)}"):
        discover(InputSpec(manifest=str(m)))


def test_malformed_csv_manifest_fails_at_start(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("path,question\na.png,q\n,orphan question\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(m))}, line 3: 'path' is missing"):
        discover(InputSpec(manifest=str(m)))
    m.write_text("file,question\na.png,q\n")
    with pytest.raises(ValueError, match="needs a 'path' column"):
        discover(InputSpec(manifest=str(m)))


# ---- allowed_roots holds for every scheme ------------------------------------------------

def test_uri_manifest_entries_are_refused_unless_under_a_uri_root(tmp_path):
    make_png(tmp_path / "r.png")
    entries = ["s3://private/secret.pdf", "s3://b/in/x.pdf", "s3://b/inbox/x.pdf", "s3://b/in/../secret.pdf",
               "s3://other/in/x.pdf", "gs://b/in/x.pdf", "s3://b/in/sub/y.pdf", "r.png"]
    m = _jsonl(tmp_path / "m.jsonl", [{"path": p} for p in entries])
    default = discover(InputSpec(manifest=str(m)))  # default root: the manifest's folder only
    assert [r.error_kind for r in default] == ["path_not_allowed"] * 7 + [None]
    rows = [read_document(r.to_row(), 10**6) for r in default[:1]]  # refused: never read
    assert rows[0]["error_kind"] == "path_not_allowed" and rows[0]["data"] is None
    rooted = discover(InputSpec(manifest=str(m), allowed_roots=["s3://b/in", str(tmp_path)]))
    allowed = [os.path.basename(r.source_uri) if not r.source_uri.startswith("s3") else r.source_uri
               for r in rooted if r.error_kind is None]
    assert allowed == ["s3://b/in/x.pdf", "s3://b/in/sub/y.pdf", "r.png"]
    only_uri = discover(InputSpec(manifest=str(m), allowed_roots=["s3://b/in/"]))
    assert only_uri[-1].error_kind == "path_not_allowed"  # a local entry needs a local root


def test_uri_within_is_a_segment_boundary_check():
    assert uri_within("s3://b/in/x.pdf", "s3://b/in") and uri_within("s3://b/in/x.pdf", "s3://b/in/")
    assert uri_within("s3://b/in/x.pdf", "s3://b") and uri_within("s3://b/in/x.pdf", "s3://b/")
    assert not uri_within("s3://b/inbox/x.pdf", "s3://b/in")
    assert not uri_within("s3://bb/in/x.pdf", "s3://b/in") and not uri_within("gs://b/in/x.pdf", "s3://b/in")
    assert not uri_within("s3://b/in/./x.pdf", "s3://b/in") and not uri_within("s3://b/in//x.pdf", "s3://b/in")
    assert not uri_within("/local/in/x.pdf", "s3://b/in")

"""Stage 1: find the input documents and read them as bytes.

`discover` runs on the driver and only lists (cheap); `read_document` runs in Ray tasks and
does the I/O, so a cluster reads in parallel. Paths may be local files, folders, globs or
URIs that pyarrow understands (`s3://bucket/prefix`, ...): `storage.filesystem_for` is the one
seam where a new store plugs in, and object keys are used exactly as written (no URI decoding).

Every listed document becomes exactly one row here, also when it cannot be read: the row then
carries `error_kind`/`error` and later stages pass it through to the output.

Listing rules, the same for folders, globs and URI prefixes:
* names starting with '.' (hidden files and hidden folders) below what was named are skipped;
  a hidden file or folder named explicitly (or by a literal glob segment) is taken;
* symlinks are followed, each real file is listed once (the first name it was met by), and a
  symlink loop is entered once;
* a name that is not a regular file (FIFO, socket, device) gets a `not_a_file` row and is never
  opened; a local name that is not valid UTF-8 gets a `bad_file_name` row (see listing.escape_name);
* a document listed twice (folder + manifest, two manifest lines) is one row with the questions
  of both, in order.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.config import InputSpec
from pipeline.core.rows import LISTED
# is_uri and filesystem_for are imported from here by other modules too.
from pipeline.store.storage import RetriesExhausted, filesystem_for, is_uri, retry_transient
from pipeline.ingest.listing import MAGIC, entries, escape_name, glob_paths, hidden, is_valid_name, not_regular, subdirs, uri_within



@dataclass(frozen=True)
class DocumentRef:
    """One input document, as listed (nothing read yet)."""

    source_uri: str
    questions: tuple[str, ...] = ()
    error_kind: str | None = None  # set when listing already knows it is bad (e.g. path outside roots)
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_row(self, **stat: Any) -> dict[str, Any]:
        """The listed row (rows.LISTED); `stat` adds size_bytes/mtime_ns where the lister knows them."""
        return LISTED.row(source_uri=self.source_uri, questions=list(self.questions), error_kind=self.error_kind,
                          error=self.error, **stat)


class PathNotAllowed(ValueError):
    pass


def resolve_within(path: str, base: Path, roots: list[Path]) -> str:
    """Resolve a manifest path (relative to base) and refuse it unless it lies inside a root.

    Symlinks are resolved before the check, so a link pointing out of the roots is refused too.
    """
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = base / candidate
    resolved = candidate.resolve()
    for root in roots:
        root = root.resolve()
        if resolved == root or root in resolved.parents:
            return str(resolved)
    raise PathNotAllowed(f"{path!r} resolves outside the allowed roots")


# ---- local listing -----------------------------------------------------------------------

def _local_ref(path: str) -> DocumentRef:
    """The row of one local name, classified without opening it."""
    path = os.path.abspath(path)
    if not is_valid_name(path):
        return DocumentRef(escape_name(path), error_kind="bad_file_name",
                           error="the file name is not valid UTF-8 (shown here with \\xNN escapes for its bytes): "
                                 "rename the file (e.g. convmv -f latin1 -t utf8) and run again")
    try:
        kind = not_regular(os.stat(path).st_mode)
    except OSError:
        return DocumentRef(path)  # missing, dangling link, no permission: read_document reports it
    if kind:
        return DocumentRef(path, error_kind="not_a_file", error=f"{kind}, not a regular file: not opened")
    return DocumentRef(path)


def _walk(folder: str, exts: set[str]) -> list[DocumentRef]:
    """Files with a listed suffix under `folder`: a folder's own files first, then its subfolders."""
    found = []
    for d in subdirs(folder):
        try:
            items = entries(d)
        except OSError as exc:  # the documents in it would vanish without a word
            found.append(DocumentRef(os.path.abspath(d), error_kind="read_error",
                                     error=f"cannot list folder: {exc.strerror or exc}"))
            continue
        for entry in items:
            if not hidden(entry.name) and not entry.is_dir() and os.path.splitext(entry.name)[1].lower() in exts:
                found.append(_local_ref(entry.path))
    return found


def _list_local(path: str, extensions: list[str]) -> list[DocumentRef]:
    if os.path.isdir(path):
        return _walk(path, {e.lower() for e in extensions})
    if os.path.lexists(path) or not MAGIC.search(path):
        # A named file is always taken (also 'report[1].pdf'); a missing one: not_found at read time.
        return [_local_ref(path)]
    return [_local_ref(p) for p in glob_paths(path)]


# ---- URI listing -------------------------------------------------------------------------

def _list_uri(uri: str, extensions: list[str]) -> list[DocumentRef]:
    """An object named exactly, or every object under a prefix (keys verbatim, hidden skipped).
    A listing that keeps failing raises (RetriesExhausted): the job cannot know its inputs."""
    import pyarrow.fs as pafs

    def listing():
        fs, root = filesystem_for(uri)
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.File:
            return info
        return fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True)), root

    listed = retry_transient(listing, f"list {uri}")
    if not isinstance(listed, tuple):
        return [DocumentRef(uri, extra=_stat_extra(listed))]
    infos, root = listed
    scheme = uri.split("://", 1)[0]
    exts = {e.lower() for e in extensions}
    refs = []
    for i in sorted(infos, key=lambda i: i.path):
        below = i.path[len(root):].lstrip("/")
        if (i.type == pafs.FileType.File and os.path.splitext(i.path)[1].lower() in exts
                and not any(hidden(seg) for seg in below.split("/"))):
            refs.append(DocumentRef(f"{scheme}://{i.path}", extra=_stat_extra(i)))
    return refs


def _stat_extra(info) -> dict[str, Any]:
    """Size and modification time as listed (what --resume compares), for free from the listing."""
    return {"size": info.size, "mtime_ns": info.mtime_ns}


# ---- manifests ---------------------------------------------------------------------------

def _entry(manifest: str, where: str, entry: Any) -> dict[str, Any]:
    """One manifest entry, checked: {'path': str, 'questions': [str, ...]}; else ValueError."""
    def bad(what: str) -> ValueError:
        return ValueError(f"manifest {manifest}, {where}: {what}")

    if not isinstance(entry, dict):
        raise bad(f"an entry is a mapping with 'path' and optional 'questions', got {type(entry).__name__}")
    path = entry.get("path")
    if not isinstance(path, str) or not path.strip():
        raise bad("'path' is missing or not text" + (f" (got {path!r}: quote it)" if path is not None else ""))
    questions = entry.get("questions")
    if questions is None:
        questions = []
    if isinstance(questions, str):
        raise bad(f"'questions' must be a list of strings, got the string {questions[:80]!r}: "
                  f"write [{json.dumps(questions[:80])}]")
    if not isinstance(questions, list) or not all(isinstance(q, str) and q.strip() for q in questions):
        raise bad(f"'questions' must be a list of non-empty strings, got {json.dumps(questions, default=str)[:120]}")
    return {"path": path, "questions": questions}


def _read_manifest(path: str) -> list[dict[str, Any]]:
    """Entries of a JSONL, YAML, JSON or CSV manifest, in file order, each checked by `_entry`."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".jsonl", ".yaml", ".yml", ".json", ".csv"):
        raise ValueError(f"manifest {path}: use .jsonl, .yaml, .json or .csv")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"manifest {path}: not UTF-8 text ({exc})") from exc
    if suffix == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    loaded = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"manifest {path}, line {n}: not JSON: {exc}") from exc
                out.append(_entry(path, f"line {n}", loaded))
        return out
    if suffix == ".csv":
        # One row per (path, question); rows of one path merge in discover.
        reader = csv.DictReader(io.StringIO(text))
        if "path" not in (reader.fieldnames or []):
            raise ValueError(f"manifest {path}: a CSV manifest needs a 'path' column (and optional 'question')")
        out = []
        for rec in reader:
            question = rec.get("question")
            out.append(_entry(path, f"line {reader.line_num}",
                              {"path": rec["path"], "questions": [question] if question else []}))
        return out
    try:
        loaded = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"manifest {path}: cannot parse: {exc}") from exc
    if isinstance(loaded, dict):
        loaded = loaded.get("documents")
    if not isinstance(loaded, list):
        raise ValueError(f"manifest {path}: expected a list of entries or a mapping with a 'documents' list")
    return [_entry(path, f"entry {n}", e) for n, e in enumerate(loaded, 1)]


def _manifest_refs(spec: InputSpec) -> list[DocumentRef]:
    base = Path(spec.manifest).resolve().parent
    roots = spec.allowed_roots or [str(base)]
    uri_roots = [r for r in roots if is_uri(r)]
    local_roots = [Path(r) for r in roots if not is_uri(r)]
    refs = []
    for entry in _read_manifest(spec.manifest):
        raw, questions = entry["path"], tuple(entry["questions"])
        if is_uri(raw):
            if any(uri_within(raw, root) for root in uri_roots):
                refs.append(DocumentRef(raw, questions))
            else:
                refs.append(DocumentRef(raw, questions, error_kind="path_not_allowed",
                                        error=f"{raw!r} is not under a URI prefix in input.allowed_roots "
                                              f"({', '.join(uri_roots) or 'none given'})"))
            continue
        try:
            refs.append(dataclasses.replace(_local_ref(resolve_within(raw, base, local_roots)), questions=questions))
        except PathNotAllowed as exc:
            refs.append(DocumentRef(raw, questions, error_kind="path_not_allowed", error=str(exc)))
    return refs


# ---- discover ----------------------------------------------------------------------------

def _key(ref: DocumentRef) -> tuple[str, str]:
    """What makes two listed names one document: the URI itself, or the real local path. (A URI
    in input.paths is the operator's choice: a refused manifest entry for it adds its questions.)"""
    if is_uri(ref.source_uri):
        return ("uri", ref.source_uri)
    if ref.error_kind in ("path_not_allowed", "bad_file_name"):
        return (ref.error_kind, ref.source_uri)  # as written / escaped: not a path to resolve
    return ("file", os.path.realpath(ref.source_uri))


def discover(spec: InputSpec) -> list[DocumentRef]:
    """List every input document once, in a stable order (paths, then manifest; first seen wins),
    questions merged. Raises ValueError for a malformed manifest, before anything is listed."""
    from_manifest = _manifest_refs(spec) if spec.manifest else []
    listed: list[DocumentRef] = []
    for path in spec.paths:
        listed += _list_uri(path, spec.extensions) if is_uri(path) else _list_local(path, spec.extensions)

    refs: list[DocumentRef] = []
    index: dict[tuple[str, str], int] = {}
    for ref in listed + from_manifest:
        key = _key(ref)
        if key not in index:
            index[key] = len(refs)
            refs.append(dataclasses.replace(ref, questions=tuple(dict.fromkeys(ref.questions))))
            continue
        first = refs[index[key]]
        merged = first.questions + tuple(q for q in dict.fromkeys(ref.questions) if q not in first.questions)
        refs[index[key]] = dataclasses.replace(first, questions=merged)
    return refs


# ---- read --------------------------------------------------------------------------------

def uri_id(uri: str) -> str:
    """Document id of a document that could not be read: from its URI, marked as such."""
    return "uri:" + hashlib.sha256(uri.encode("utf-8", "surrogateescape")).hexdigest()[:28]


def content_id(data: bytes) -> str:
    """Stable document id: the same bytes give the same id on every run and machine."""
    return hashlib.sha256(data).hexdigest()[:32]


class _TooLarge(Exception):
    def __init__(self, size: int):
        self.size = size


class _NotAFile(Exception):
    pass


def _read_local(path: str, max_bytes: int) -> bytes:
    kind = not_regular(os.stat(path).st_mode)  # before any open: opening a FIFO blocks, a device acts
    if kind:
        raise _NotAFile(f"{kind}, not a regular file: not opened")
    # O_NONBLOCK: should a FIFO be swapped in after the stat, the open returns instead of waiting
    # for a writer; fstat then sees what was really opened.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not_regular(st.st_mode):
            raise _NotAFile(f"{not_regular(st.st_mode)}, not a regular file: not read")
        if st.st_size > max_bytes:
            raise _TooLarge(st.st_size)
        data = f.read(max_bytes + 1)  # bounded, should it grow meanwhile
    if len(data) > max_bytes:
        raise _TooLarge(len(data))
    return data


def _read_uri(uri: str, max_bytes: int) -> bytes:
    def once() -> bytes:  # a fresh file per attempt: a half-read one is never resumed
        fs, inner = filesystem_for(uri)
        with fs.open_input_file(inner) as f:  # one HEAD (size; FileNotFoundError if no such key), one GET
            size = f.size()
            if size > max_bytes:
                raise _TooLarge(size)
            return f.read()

    return retry_transient(once, f"read {uri}")


def read_document(row: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Fill `data` and `doc_id` for one listed document; errors become fields, never exceptions.
    Object-store reads are retried on transient errors (storage.retry_transient)."""
    out = dict(row, data=None, doc_id=None, size_bytes=None)
    if row.get("error_kind"):
        out["doc_id"] = uri_id(row["source_uri"])
        return out
    uri = row["source_uri"]
    try:
        data = _read_uri(uri, max_bytes) if is_uri(uri) else _read_local(uri, max_bytes)
        out.update(data=data, doc_id=content_id(data), size_bytes=len(data))
    except _TooLarge as exc:
        out.update(error_kind="file_too_large", error=f"{exc.size} bytes > limit {max_bytes}", size_bytes=exc.size)
    except _NotAFile as exc:
        out.update(error_kind="not_a_file", error=str(exc))
    except FileNotFoundError as exc:
        out.update(error_kind="not_found", error=f"cannot read: {exc.strerror or exc}")
    except RetriesExhausted as exc:
        out.update(error_kind="read_error", error=str(exc)[:2000])
    except (OSError, ValueError) as exc:
        gone = re.search(r"NO_SUCH_KEY|NoSuchKey", str(exc))  # deleted between listing and reading
        out.update(error_kind="not_found" if gone else "read_error", error=f"{type(exc).__name__}: {exc}"[:2000])
    if out["doc_id"] is None:
        out["doc_id"] = uri_id(uri)
    return out

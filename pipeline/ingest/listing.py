"""Listing local folders and naming what is found, for discovery (sources.py): hidden names, folders
entered once (symlinks followed, loops entered once), `**` globs, URI roots, and file names that are
not UTF-8 kept losslessly.
"""
from __future__ import annotations

import fnmatch
import os
import re
import stat

from pipeline.store.storage import is_uri, split_uri

MAGIC = re.compile(r"[*?[]")  # what makes a local path a glob pattern


def hidden(name: str) -> bool:
    """Hidden files and hidden folders alike: the name starts with '.'."""
    return name.startswith(".")


def entries(folder: str) -> list[os.DirEntry]:
    """A folder's entries sorted by name (a stable order on every file system)."""
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def subdirs(top: str, visited: set[str] | None = None):
    """`top` and every non-hidden folder below it, symlinks followed, each real folder once."""
    visited = set() if visited is None else visited
    real = os.path.realpath(top)
    if real in visited:
        return
    visited.add(real)
    yield top
    try:
        items = entries(top)
    except OSError:
        return  # unreadable: sources._walk reports it when it lists the folder's files
    for entry in items:
        if not hidden(entry.name) and entry.is_dir():  # is_dir follows symlinks
            yield from subdirs(entry.path, visited)


def glob_paths(pattern: str) -> list[str]:
    """Glob with `**`, like glob.glob(recursive=True), but each real folder is entered once per
    `**` (a symlink loop is not walked 40 deep) and hidden names match only a segment that
    starts with '.' itself; `**` never descends into hidden folders. Folders are not returned."""
    anchor = "/" if pattern.startswith("/") else ""
    parts = [p for p in pattern[len(anchor):].split("/") if p]
    results: list[str] = []

    def join(base: str, name: str) -> str:
        return os.path.join(base, name) if base else name

    def expand(base: str, i: int) -> None:
        if i == len(parts):
            results.append(base)
            return
        seg, last = parts[i], i == len(parts) - 1
        if seg == "**":
            for d in subdirs(base or "."):
                expand(d, i + 1)
                if last:  # a trailing ** matches files too
                    try:
                        results.extend(e.path for e in entries(d) if not hidden(e.name) and not e.is_dir())
                    except OSError:
                        pass
        elif not MAGIC.search(seg):
            path = join(base, seg)
            if os.path.lexists(path) if last else os.path.isdir(path):
                expand(path, i + 1)
        else:
            try:
                items = entries(base or ".")
            except OSError:
                return
            for e in items:
                if (hidden(e.name) and not seg.startswith(".")) or not fnmatch.fnmatchcase(e.name, seg):
                    continue
                if last or e.is_dir():
                    expand(join(base, e.name), i + 1)

    expand(anchor, 0)
    return [r for r in results if not os.path.isdir(r)]


# ---- roots and names -----------------------------------------------------------------------

def uri_within(uri: str, root: str) -> bool:
    """True if `uri` lies under URI prefix `root`: same scheme and bucket, and the key starts with
    the root's key at a '/' boundary (s3://b/in holds s3://b/in/x.pdf, not s3://b/inbox/x.pdf).
    Keys with '.'/'..' or empty segments are never inside: clients normalize those away."""
    if not (is_uri(uri) and is_uri(root)):
        return False
    scheme, bucket, key = split_uri(uri)
    r_scheme, r_bucket, r_key = split_uri(root)
    if (scheme, bucket) != (r_scheme, r_bucket) or not key:
        return False
    if any(seg in ("", ".", "..") for seg in key.split("/")):
        return False
    prefix = r_key.rstrip("/")
    return not prefix or key == prefix or key.startswith(prefix + "/")


def is_valid_name(path: str) -> bool:
    """False for a str holding undecodable bytes (os.walk's surrogate escapes): it cannot be
    written to Parquet/JSON and would crash a later stage."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def escape_name(path: str) -> str:
    """A valid UTF-8, lossless form of a file name: a byte that is not UTF-8 becomes `\\xNN` and a
    backslash becomes `\\\\`, so os.fsencode of the name can be rebuilt from the text."""
    out = []
    for ch in path:
        if 0xDC80 <= ord(ch) <= 0xDCFF:  # surrogateescape: the undecodable byte 0x80..0xFF
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)
    return "".join(out)


def not_regular(mode: int) -> str | None:
    """What a non-regular file is ('a FIFO', ...), None for a regular file."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"

"""A filesystem whose every call is retried: what Ray Data gets for the job's reads and writes of
object storage (the listing, the commit's reads of staged files and its writes), so that Ray's own
calls, in the driver (file info, listing) and in its workers, go through storage.retry_transient like
every other storage call of the job. The job switches Ray's own retries off
(DataContext.retried_io_errors = []): one policy, one place (storage.py).

Reads fetch the whole object (one retried request: a stream broken half-way is never seen by the
reader); writes are buffered and stored with one PUT when the stream closes (retried).
"""
from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.store.storage import move, retry_transient


def one_policy(data_context) -> None:
    """Ray Data's own retries off (DataContext.retried_io_errors): its filesystem calls go through
    `retrying` filesystems, so retry_transient is the one policy (no retries of retries)."""
    data_context.retried_io_errors = []


def retrying(fs):
    """`fs` with every call retried by retry_transient (a local filesystem is returned as it is:
    its errors are not transient). Reads fetch the whole object (retried as one request), writes
    are one PUT at close (retried): a stream broken half-way is never seen by the caller."""
    if isinstance(fs, pafs.LocalFileSystem):
        return fs
    return pafs.PyFileSystem(_RetryingHandler(fs))


class _RetryingHandler(pafs.FileSystemHandler):
    def __init__(self, fs):
        self.fs = fs

    def __eq__(self, other) -> bool:
        return isinstance(other, _RetryingHandler) and self.fs.equals(other.fs)

    def __ne__(self, other) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return f"retrying+{self.fs.type_name}"

    def normalize_path(self, path):
        return self.fs.normalize_path(path)

    def get_file_info(self, paths):
        return retry_transient(lambda: self.fs.get_file_info(paths), f"file info of {', '.join(paths)[:300]}")

    def get_file_info_selector(self, selector):
        return retry_transient(lambda: self.fs.get_file_info(selector), f"list {selector.base_dir}")

    def create_dir(self, path, recursive):
        retry_transient(lambda: self.fs.create_dir(path, recursive=recursive), f"create {path}")

    def delete_dir(self, path):
        retry_transient(lambda: self.fs.delete_dir(path), f"delete {path}")

    def delete_dir_contents(self, path, missing_dir_ok=False):
        retry_transient(lambda: self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok), f"empty {path}")

    def delete_root_dir_contents(self):
        raise OSError("refusing to empty the root of a filesystem")

    def delete_file(self, path):
        retry_transient(lambda: self.fs.delete_file(path), f"delete {path}")

    def move(self, src, dest):
        move(self.fs, src, dest)

    def copy_file(self, src, dest):
        retry_transient(lambda: self.fs.copy_file(src, dest), f"copy {src} -> {dest}")

    def _read(self, path):
        def read():
            with self.fs.open_input_stream(path) as f:
                return f.read()
        return pa.BufferReader(retry_transient(read, f"read {path}"))

    def open_input_stream(self, path):
        return self._read(path)

    def open_input_file(self, path):
        return self._read(path)

    def open_output_stream(self, path, metadata):
        return pa.PythonFile(_PutOnClose(self.fs, path, metadata), mode="w")

    def open_append_stream(self, path, metadata):
        raise NotImplementedError("append to an object: not supported")


class _PutOnClose(io.BytesIO):
    def __init__(self, fs, path: str, metadata):
        super().__init__()
        self.fs, self.path, self.metadata = fs, path, metadata

    def close(self) -> None:
        if not self.closed:
            data = self.getvalue()

            def put() -> None:
                with self.fs.open_output_stream(self.path, metadata=self.metadata) as out:
                    out.write(data)
            retry_transient(put, f"write {self.path}")
        super().close()

"""Storage plumbing shared by input and output: URIs to pyarrow filesystems, and retries.

* `filesystem_for(uri)` builds the filesystem from `scheme://bucket` only and keeps the rest of
  the string as the object key, byte for byte: no URI decoding, so `#`, `?`, `%`, `+`, spaces
  and non-ASCII are ordinary key characters (S3 keys may hold any of them).
* `retry_transient(fn, what)` runs one storage operation with bounded, jittered exponential
  backoff, retrying only errors that a second try can cure (timeouts, resets, 5xx, throttling);
  throttling (503 SlowDown, 429) backs off from 1 s, a reset or a timeout from 0.2 s.
  It is the only retry layer: S3 filesystems made here switch the AWS SDK's own retries off
  (`SDK_ATTEMPTS = 1`), so "N attempts" means N requests per operation (curl may still redo a
  request once when a reused keep-alive connection turns out dead before any reply: that is a
  new connection, not a retry of an answered request) and every wait is ours, logged.
* `move(fs, src, dest)` is a retried move that knows an object store's move is a copy and a delete.
  retrying.py wraps a whole filesystem in this policy for Ray Data, which makes calls of its own.
"""
from __future__ import annotations

import logging
import random
import re
import time
from functools import lru_cache
from typing import Callable, TypeVar

import pyarrow.fs as pafs

from pipeline.core import envs

log = logging.getLogger(__name__)
T = TypeVar("T")

# Retries of one storage operation (reads of a document, a listing, a marker write, ...).
ATTEMPTS = 4            # tries in all, the first included
BACKOFF_FIRST_S = 0.2   # wait before the 2nd try; doubles each time ...
BACKOFF_CAP_S = 5.0     # ... up to this; each wait is drawn from [delay/2, delay] (jitter)
THROTTLED_FIRST_S = 1.0  # the same for throttling (503 SlowDown, 429): the store asks us to slow down
THROTTLED_CAP_S = 20.0
SDK_ATTEMPTS = 1        # the AWS SDK's own tries per request: 1 = no hidden retries under ours
# S3 client timeouts. With libcurl (Linux) the request timeout means "less than 1 byte/s for this
# long", so a large object that keeps flowing is never cut; a stalled connection is, after this.
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
ENV_CONNECT_TIMEOUT = "DOCINTEL_S3_CONNECT_TIMEOUT_S"  # overrides, read when a filesystem is made
ENV_REQUEST_TIMEOUT = "DOCINTEL_S3_REQUEST_TIMEOUT_S"  # (env, so Ray workers see them too)

# What pyarrow's S3 errors say when a retry may help. Checked against the exception's text,
# because pyarrow raises plain OSError for all of them.
_TRANSIENT = re.compile(
    r"curlCode: (?:6|7|18|28|35|52|55|56)\b"         # DNS, connect, partial, timeout, TLS, empty reply, send/recv
    r"|AWS Error (?:NETWORK_CONNECTION|SLOW_DOWN|THROTTLING|SERVICE_UNAVAILABLE|INTERNAL_FAILURE"
    r"|REQUEST_TIMEOUT)\b"
    r"|HTTP status (?:5\d\d|429|408)\b|\b(?:SlowDown|Throttl\w*|RequestTimeout|InternalError|ServiceUnavailable)\b"
    r"|[Cc]onnection (?:was )?reset|Broken pipe|[Tt]imed? ?out|Operation too slow",
)
# Of those, the store saying "slow down": a longer backoff. A 503 on a HEAD has no body to name it.
_THROTTLED = re.compile(r"AWS Error (?:SLOW_DOWN|THROTTLING|SERVICE_UNAVAILABLE)\b|HTTP status (?:503|429)\b"
                        r"|\b(?:SlowDown|Throttl\w*|ServiceUnavailable)\b")
# Never retried, whatever else the text says: the answer will not change.
_PERMANENT = re.compile(r"ACCESS_DENIED|AccessDenied|NO_SUCH_KEY|NoSuchKey|NO_SUCH_BUCKET|NoSuchBucket"
                        r"|InvalidAccessKeyId|SignatureDoesNotMatch"
                        r"|HTTP status (?:400|401|403|404|405|409|411|412|416)\b")


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def split_uri(uri: str) -> tuple[str, str, str]:
    """'s3://bucket/a/b c#1.pdf' -> ('s3', 'bucket', 'a/b c#1.pdf'): the key exactly as written."""
    scheme, rest = uri.split("://", 1)
    bucket, _, key = rest.partition("/")
    return scheme, bucket, key


# ---- filesystems -------------------------------------------------------------------------

def filesystem_for(uri: str):
    """(pyarrow FileSystem, path inside it) for a URI.

    s3 and gs/gcs: the path is "bucket/key" with the key verbatim (a trailing '/' dropped, as
    pyarrow names folders without it). Other schemes go through pyarrow's own URI parsing.
    S3 credentials come from the standard AWS chain of the process; an S3-compatible endpoint
    from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (set by storage.endpoint_url).
    """
    import pyarrow.fs as pafs

    scheme, bucket, key = split_uri(uri)
    inner = f"{bucket}/{key}".rstrip("/") if key else bucket
    if scheme == "s3":
        endpoint = envs.get("AWS_ENDPOINT_URL_S3") or envs.get("AWS_ENDPOINT_URL")
        fs = pafs.S3FileSystem(
            region=_s3_region(bucket, endpoint or ""),
            endpoint_override=endpoint or None,
            connect_timeout=_env_seconds(ENV_CONNECT_TIMEOUT, CONNECT_TIMEOUT_S),
            request_timeout=_env_seconds(ENV_REQUEST_TIMEOUT, REQUEST_TIMEOUT_S),
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=SDK_ATTEMPTS),
        )
        return fs, inner
    if scheme in ("gs", "gcs"):
        fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{bucket}")
        return fs, inner
    return pafs.FileSystem.from_uri(uri)


def _s3_region(bucket: str, endpoint: str) -> str:
    region = envs.get("AWS_REGION") or envs.get("AWS_DEFAULT_REGION")
    if endpoint:  # an S3-compatible store: no region discovery, it answers any region
        return region or "us-east-1"
    return _bucket_region(bucket)


@lru_cache(maxsize=256)
def _bucket_region(bucket: str) -> str:
    """AWS: the bucket's own region (one HEAD request per bucket and process), as
    pyarrow's from_uri finds it, so buckets of other regions work whatever AWS_REGION says."""
    import pyarrow.fs as pafs

    return pafs.resolve_s3_region(bucket)


def _env_seconds(name: str, default: float) -> float:
    raw = envs.get(name)
    if not raw:
        return default
    value = float(raw)
    if value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


# ---- retries -----------------------------------------------------------------------------

class RetriesExhausted(OSError):
    """A transient error outlasted the retries. `attempts`: tries made; `last`: the last error."""

    def __init__(self, what: str, attempts: int, last: BaseException):
        super().__init__(f"{what}: gave up after {attempts} attempts (retried {attempts - 1} times); "
                         f"last error: {type(last).__name__}: {last}")
        self.attempts = attempts
        self.last = last


def is_transient(exc: BaseException) -> bool:
    """True for errors a later try may not meet: timeouts, dropped connections, 5xx, throttling.
    Missing objects, refused access, bad requests and local file problems are not."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if not isinstance(exc, OSError):
        return False  # ValueError (pyarrow's ArrowInvalid: a bad path), our own exceptions, bugs
    text = str(exc)
    return not _PERMANENT.search(text) and bool(_TRANSIENT.search(text))


def is_throttled(exc: BaseException) -> bool:
    """A transient error in which the store asks for fewer requests (503 SlowDown, 429)."""
    return isinstance(exc, OSError) and bool(_THROTTLED.search(str(exc)))


def backoff_delay(retry: int, throttled: bool = False) -> float:
    """Seconds to wait before retry number `retry` (1 = the 2nd attempt), jittered; longer when the
    store throttles."""
    first, cap = (THROTTLED_FIRST_S, THROTTLED_CAP_S) if throttled else (BACKOFF_FIRST_S, BACKOFF_CAP_S)
    delay = min(cap, first * 2 ** (retry - 1))
    return random.uniform(delay / 2, delay)


def retry_transient(fn: Callable[[], T], what: str, *, attempts: int | None = None,
                    transient: Callable[[BaseException], bool] = is_transient) -> T:
    """Call `fn()` and return its result, trying up to `attempts` times (default ATTEMPTS) while it
    raises an error that `transient` accepts, with `backoff_delay` between tries.

    Other errors propagate at once, unchanged. When the tries run out, `RetriesExhausted` (an
    OSError, chained to the last error) says `what` failed and how often it was retried. `fn`
    must be safe to repeat: re-open streams inside it, do not resume half-read ones.
    """
    attempts = ATTEMPTS if attempts is None else attempts
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if not transient(exc):
                raise
            if attempt == attempts:
                raise RetriesExhausted(what, attempts, exc) from exc
            wait = backoff_delay(attempt, is_throttled(exc))
            log.warning("%s: %s: %s; retry %d of %d in %.2fs", what, type(exc).__name__, exc,
                        attempt, attempts - 1, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def storage_failure(exc: BaseException) -> OSError | None:
    """The storage error behind `exc` (through Ray's wrappers and chained causes): retries that ran
    out, or an object-store error no retry cures (access denied, ...); None if it is something else."""
    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, RetriesExhausted) or (isinstance(e, OSError) and _PERMANENT.search(str(e))
                                                and "AWS Error" in str(e)):
            return e
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return None


def move(fs, src: str, dest: str) -> None:
    """fs.move, retried; on an object store a move is a copy and a delete, so a retry after a lost
    reply may find the source gone and the copy there: that move is done, not failed."""
    def attempt() -> None:
        try:
            fs.move(src, dest)
        except FileNotFoundError:
            src_info, dest_info = fs.get_file_info([src, dest])
            if src_info.type == pafs.FileType.NotFound and dest_info.type == pafs.FileType.File:
                return
            raise
    retry_transient(attempt, f"move {src} -> {dest}")

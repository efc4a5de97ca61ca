"""S3 inputs against a real S3 server (moto, on 127.0.0.1) behind tests/faultproxy.py: object keys
used byte for byte, and storage.retry_transient under resets, stalls and 5xx on the wire.

The S3 client's timeouts are 1 s here (DOCINTEL_S3_*_TIMEOUT_S) and the backoff starts at 10 ms,
so every test takes seconds. No engine, no Ray.
"""
import logging
import os
import re
import time
from urllib.parse import quote

import boto3
import pytest

import harness
from faultproxy import FaultProxy
from pipeline.store import storage
from pipeline.core.config import InputSpec
from pipeline.ingest.sources import content_id, discover, read_document
from pipeline.store.storage import RetriesExhausted, backoff_delay, is_transient, retry_transient

# Keys a URI parser would change: space, non-ASCII, '%', an escape that is not one, '?', '#', '+'.
KEYS = ["a b.pdf", "ü.pdf", "ç.pdf", "100%.pdf", "a%20b.pdf", "q?x=1.pdf", "report#1.pdf", "a+b.pdf",
        "%C3%BC.pdf", "c++ & [x] =y;.pdf"]
# What the old reads hit instead: 'report' for 'report#1.pdf'; never listed (no suffix, hidden).
DECOYS = ["report", ".trash/old.pdf"]
PLAIN = ["r/1.pdf", "r/2.pdf", "r/3.pdf"]  # the retry tests' objects: names no client gets wrong
ATTEMPTS = storage.ATTEMPTS
pytestmark = pytest.mark.faults  # storage broken on the wire


def body(key: str) -> bytes:
    return f"%PDF-1.7 object {key}".encode() * 20  # larger than an S3 error body


@pytest.fixture(scope="module")
def s3_server():
    with harness.moto_server() as url:
        yield from _filled(url)


def _filled(url):
    s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id="AKIATESTKEYID000", aws_secret_access_key="x",
                      region_name="us-east-1")
    s3.create_bucket(Bucket="docs")
    for key in KEYS + DECOYS:
        s3.put_object(Bucket="docs", Key=f"names/{key}", Body=body(key))
    for key in PLAIN:
        s3.put_object(Bucket="docs", Key=key, Body=body(key))
    yield url


@pytest.fixture()
def proxy(s3_server, monkeypatch):
    """The S3 endpoint seen by pyarrow is the fault proxy; short timeouts, fast backoff."""
    with FaultProxy(s3_server) as p:
        for k, v in {"AWS_ACCESS_KEY_ID": "AKIATESTKEYID000", "AWS_SECRET_ACCESS_KEY": "x",
                     "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": p.url,
                     storage.ENV_CONNECT_TIMEOUT: "1", storage.ENV_REQUEST_TIMEOUT: "1"}.items():
            monkeypatch.setenv(k, v)
        for k in ("AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_PROFILE"):
            monkeypatch.delenv(k, raising=False)
        monkeypatch.setattr(storage, "BACKOFF_FIRST_S", 0.01)
        yield p


def _row(uri: str) -> dict:
    return {"source_uri": uri, "questions": "[]", "error_kind": None, "error": None}


def _path(key: str) -> str:
    """The request path the SDK sends for docs/KEY, as a regex (the proxy sees it encoded)."""
    return "^/docs/" + re.escape(quote(key, safe="/~")) + "$"


# ---- keys byte for byte ------------------------------------------------------------------

def test_listed_keys_read_back_byte_for_byte(proxy):
    refs = discover(InputSpec(paths=["s3://docs/names/"]))
    assert [r.source_uri for r in refs] == sorted(f"s3://docs/names/{k}" for k in KEYS)  # hidden, no-suffix skipped
    for ref, key in zip(refs, sorted(KEYS)):
        row = read_document(ref.to_row(), 10**6)
        assert row["error_kind"] is None, (key, row["error"])
        assert row["data"] == body(key) and row["doc_id"] == content_id(body(key)), key
    assert refs[0].extra["size"] == len(body(sorted(KEYS)[0]))  # listed size, for --resume


def test_named_keys_are_read_as_named(proxy):
    # '#1.pdf' is part of the key, not a URI fragment: the object 'names/report' is not read
    row = read_document(_row("s3://docs/names/report#1.pdf"), 10**6)
    assert row["data"] == body("report#1.pdf")
    assert [r.source_uri for r in discover(InputSpec(paths=["s3://docs/names/q?x=1.pdf"]))] == [
        "s3://docs/names/q?x=1.pdf"]
    # two objects whose names differ only by an escape a decoder would undo
    assert read_document(_row("s3://docs/names/a%20b.pdf"), 10**6)["data"] == body("a%20b.pdf")
    assert read_document(_row("s3://docs/names/%C3%BC.pdf"), 10**6)["data"] == body("%C3%BC.pdf")


# ---- retries on the wire -----------------------------------------------------------------

@pytest.mark.parametrize("fault", ["reset", "close", "stall", "status", "truncate"])
def test_read_succeeds_after_transient_faults(proxy, fault, caplog):
    caplog.set_level(logging.WARNING, logger="pipeline.store.storage")
    key = "r/1.pdf"
    # ATTEMPTS-1 faults on the first requests (for truncate: on the GETs, mid-body)
    proxy.add_rule(fault, method="GET" if fault == "truncate" else ".*", path=_path(key),
                   first=1, last=ATTEMPTS - 1, status=503, seconds=3)
    started = time.monotonic()
    row = read_document(_row(f"s3://docs/{key}"), 10**6)
    assert row["error_kind"] is None, row["error"]
    assert row["data"] == body(key) and row["doc_id"] == content_id(body(key))
    # One request per attempt, each retry ours (no hidden SDK retries) and logged with the document
    failed = {"status": [503], "truncate": [200, "truncate"]}.get(fault, [fault])
    assert [r.outcome for r in proxy.requests(path=_path(key))] == failed * (ATTEMPTS - 1) + [200, 206]
    retries = [r.getMessage() for r in caplog.records if r.name == "pipeline.store.storage"]
    assert len(retries) == ATTEMPTS - 1 and all(f"read s3://docs/{key}" in m for m in retries), retries
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("fault", ["status", "reset", "stall"])
def test_faults_outlasting_the_retries_give_read_error(proxy, fault):
    key = "r/2.pdf"
    proxy.add_rule(fault, path=_path(key), first=1, last=None, status=503, seconds=3)
    started = time.monotonic()
    row = read_document(_row(f"s3://docs/{key}"), 10**6)  # no exception, no hang
    assert row["error_kind"] == "read_error" and row["data"] is None and row["doc_id"].startswith("uri:")
    assert f"retried {ATTEMPTS - 1} times" in row["error"], row["error"]
    assert time.monotonic() - started < 20
    assert len(proxy.requests(path=_path(key))) == ATTEMPTS  # bounded: one request per attempt


def test_missing_or_forbidden_object_is_not_retried(proxy):
    row = read_document(_row("s3://docs/r/nope.pdf"), 10**6)
    assert row["error_kind"] == "not_found"
    assert [r.outcome for r in proxy.requests(path=_path("r/nope.pdf"))] == [404]
    proxy.add_rule("status", path=_path("r/3.pdf"), first=1, last=None, status=403)
    row = read_document(_row("s3://docs/r/3.pdf"), 10**6)
    assert row["error_kind"] == "read_error" and "ACCESS_DENIED" in row["error"]
    assert [r.outcome for r in proxy.requests(path=_path("r/3.pdf"))] == [403]


def test_listing_a_prefix_is_retried(proxy):
    lists = r"^/docs\?.*list-type=2"
    proxy.add_rule("reset", method="GET", path=lists, first=1, last=ATTEMPTS - 1)
    refs = discover(InputSpec(paths=["s3://docs/names/"]))
    assert len(refs) == len(KEYS)
    outcomes = [r.outcome for r in proxy.requests(method="GET", path=lists)]
    assert outcomes.count("reset") == ATTEMPTS - 1 and outcomes[-1] == 200, outcomes
    proxy.clear()
    proxy.add_rule("status", method="GET", path=lists, first=1, last=None, status=503)
    with pytest.raises(RetriesExhausted, match=rf"list s3://docs/names/: gave up after {ATTEMPTS} attempts"):
        discover(InputSpec(paths=["s3://docs/names/"]))  # at start: the job cannot know its inputs


def test_proxy_passes_streaming_multipart_uploads_through(proxy, s3_server):
    payload = os.urandom(12 * 2**20)  # multipart, chunked part bodies, Expect: 100-continue
    fs, inner = storage.filesystem_for("s3://docs/up/big.bin")
    with fs.open_output_stream(inner) as f:
        f.write(payload)
    direct = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    assert direct.get_object(Bucket="docs", Key="up/big.bin")["Body"].read() == payload
    parts = proxy.requests(method="PUT", path=r"partNumber=")
    assert len(parts) >= 2 and all(r.outcome == 200 for r in parts)


# ---- the retry helper itself -------------------------------------------------------------

def _flaky(errors, result="ok"):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result
    return fn, calls


def test_retry_transient_retries_transient_errors_then_returns(monkeypatch):
    waits = []
    monkeypatch.setattr(storage.time, "sleep", waits.append)
    fn, calls = _flaky([OSError("AWS Error NETWORK_CONNECTION during GetObject operation: curlCode: 28"),
                        ConnectionResetError("reset")])
    assert retry_transient(fn, "read x") == "ok" and len(calls) == 3
    assert len(waits) == 2 and all(0 < w <= storage.BACKOFF_CAP_S for w in waits)


def test_retry_transient_gives_up_after_the_attempts_and_says_so(monkeypatch):
    monkeypatch.setattr(storage.time, "sleep", lambda s: None)
    errors = [OSError(f"AWS Error SLOW_DOWN #{i}") for i in range(10)]
    fn, calls = _flaky(errors)
    with pytest.raises(RetriesExhausted) as info:
        retry_transient(fn, "write s3://b/k")
    assert len(calls) == ATTEMPTS and info.value.attempts == ATTEMPTS
    assert info.value.last is errors[ATTEMPTS - 1] and info.value.__cause__ is errors[ATTEMPTS - 1]
    assert isinstance(info.value, OSError)  # callers catching OSError still do
    assert str(info.value).startswith(
        f"write s3://b/k: gave up after {ATTEMPTS} attempts (retried {ATTEMPTS - 1} times)")
    fn, calls = _flaky(errors)
    with pytest.raises(RetriesExhausted):
        retry_transient(fn, "x", attempts=2)
    assert len(calls) == 2


@pytest.mark.parametrize("error", [
    FileNotFoundError("Path does not exist 'docs/x'"), PermissionError("denied"),
    OSError("When reading information for key 'x' in bucket 'docs': AWS Error ACCESS_DENIED during HeadObject"),
    OSError("AWS Error NO_SUCH_KEY during GetObject operation: The specified key does not exist."),
    ValueError("Empty path component in path docs/in//a.pdf"), KeyError("bug"),
])
def test_retry_transient_raises_other_errors_at_once(error):
    fn, calls = _flaky([error])
    with pytest.raises(type(error)):
        retry_transient(fn, "read x")
    assert len(calls) == 1


def test_is_transient_knows_pyarrows_s3_errors():
    # texts as pyarrow 26 raises them, met through the fault proxy
    transient = [
        "When reading information for key 'in/a b.pdf' in bucket 'docs': AWS Error UNKNOWN (HTTP status 503) "
        "during HeadObject operation: No response body.",
        "AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 56, Failure when receiving data "
        "from the peer; Details: Recv failure: Connection reset by peer",
        "AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 52, Server returned nothing",
        "AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 28, Timeout was reached",
        "When listing objects under key 'in/' in bucket 'docs': AWS Error SLOW_DOWN during ListObjectsV2",
        "AWS Error SERVICE_UNAVAILABLE during GetObject operation: Please reduce your request rate.",
        "AWS Error INTERNAL_FAILURE during GetObject operation: Failed to flush response stream",
        "AWS Error UNKNOWN (HTTP status 429) during PutObject operation",
    ]
    permanent = [
        "When reading information for key 'x' in bucket 'docs': AWS Error ACCESS_DENIED during HeadObject "
        "operation: No response body.",
        "AWS Error UNKNOWN (HTTP status 400) during HeadObject operation: No response body.",
        "AWS Error NO_SUCH_BUCKET during ListObjectsV2 operation",
    ]
    assert all(is_transient(OSError(t)) for t in transient)
    assert not any(is_transient(OSError(t)) for t in permanent)
    assert is_transient(TimeoutError()) and not is_transient(FileNotFoundError())


def test_backoff_is_jittered_exponential_and_capped():
    for retry in range(1, 12):
        delay = min(storage.BACKOFF_CAP_S, storage.BACKOFF_FIRST_S * 2 ** (retry - 1))
        waits = [backoff_delay(retry) for _ in range(50)]
        assert all(delay / 2 <= w <= delay for w in waits) and len(set(waits)) > 1
    assert backoff_delay(1) <= storage.BACKOFF_FIRST_S and backoff_delay(30) <= storage.BACKOFF_CAP_S

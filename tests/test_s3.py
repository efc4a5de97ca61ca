"""S3 in and out against a real S3-compatible server (moto in server mode) on 127.0.0.1, with the
fault proxy (tests/faultproxy.py) between the job and the server: storage errors on the wire, not
patched functions. Every request type the job makes (HEAD, GET, LIST, PUT, COPY, DELETE) fails once
in every phase it is made in (listing, record, run, commit, resume), and the run still commits every
page exactly once; a fault that never clears (writes of pages, or the commit's moves) ends the run
with exit code 5, nothing deleted, and `--resume` commits it later, exactly once. The engine is the
double (tests/engine_double.py): the subject is storage."""
import json

import boto3
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import harness
from docgen import make_corpus
from faultproxy import FaultProxy

pytestmark = pytest.mark.faults  # storage broken on the wire
KEY_ID, SECRET = harness.S3_KEY_ID, harness.S3_SECRET


@pytest.fixture(scope="module")
def s3_server():
    with harness.moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def bucket(s3_server, tmp_path_factory):
    s3 = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                      region_name="us-east-1")
    s3.create_bucket(Bucket="docs")
    folder = tmp_path_factory.mktemp("corpus")
    expected = make_corpus(folder)
    for name in expected:
        s3.upload_file(str(folder / name), "docs", f"incoming/2026-11-22/{name}")
    s3.put_object(Bucket="docs", Key="incoming/2026-11-22/broken.pdf", Body=b"%PDF-1.7 truncated")
    return s3, expected


def _run(endpoint, model, out, *args, address, timeout=900, inputs="s3://docs/incoming/"):
    """A run on the session's Ray (its workers have the test credentials, as a cluster's nodes would)."""
    return harness.run("run", "--input", inputs, "--output", out, "--model", model, "--address", address,
                       "--question", "What is the total?", "--set", f"storage.endpoint_url={endpoint}", *harness.FAST,
                       *args, timeout=timeout, **harness.S3_CREDENTIALS, DOCINTEL_S3_REQUEST_TIMEOUT_S="3",
                       **harness.double())


def _check(s3, expected, s3_server, prefix, run_id):
    fs = pafs.S3FileSystem(endpoint_override=s3_server, region="us-east-1", access_key=KEY_ID, secret_key=SECRET)
    rows = pq.read_table(f"docs/{prefix}/pages", filesystem=fs).to_pylist()  # the whole table: committed rows only
    pages = sum(expected.values())
    assert len(rows) == pages + 1 and {r["run_id"] for r in rows} == {run_id}
    keys = [(r["source_uri"], r["page_index"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert {r["source_uri"] for r in rows} == {f"s3://docs/incoming/2026-11-22/{n}" for n in [*expected, "broken.pdf"]}
    assert sum(r["valid"] for r in rows) == pages
    (broken,) = [r for r in rows if r["source_uri"].endswith("broken.pdf")]
    assert broken["error_kind"] == "corrupt_pdf"
    marker = json.loads(s3.get_object(Bucket="docs", Key=f"{prefix}/_docintel/runs/{run_id}/_SUCCESS")["Body"].read())
    assert marker["rows"] == len(rows) and marker["documents"] == len(expected) + 1
    for key in [o["Key"] for o in s3.list_objects_v2(Bucket="docs", Prefix=f"{prefix}/")["Contents"]]:
        body = s3.get_object(Bucket="docs", Key=key)["Body"].read()  # no credential in anything written
        assert SECRET.encode() not in body and KEY_ID.encode() not in body


# (rule, what it breaks): one transient fault for every request type in every phase of one run. A
# 503 is S3's "slow down" (backed off longer); a reset is a dropped connection.
ONCE = [
    (dict(fault="status", kind="LIST", path=r"prefix=incoming"), "listing: the input prefix"),
    (dict(fault="status", kind="HEAD", path=r"/incoming/2026-11-22/report\.pdf$"), "listing: a document's size"),
    (dict(fault="status", kind="HEAD", path=r"/runs/s3run/job\.json$"), "record: is the run id free"),
    (dict(fault="reset", kind="PUT", path=r"/runs/s3run/job\.json"), "record: job.json"),
    (dict(fault="status", kind="PUT", path=r"/runs/s3run/inputs\.parquet"), "record: the listing"),
    (dict(fault="status", kind="HEAD", path=r"/runs/s3run/inputs\.parquet$"), "run: Ray's file info of the listing"),
    (dict(fault="reset", kind="GET", path=r"/runs/s3run/inputs\.parquet$"), "run: Ray's read of the listing"),
    (dict(fault="status", kind="GET", path=r"/incoming/2026-11-22/invoice\.pdf$"), "run: a document"),
    (dict(fault="reset", kind="PUT", path=r"/runs/s3run/staging/pages/part-"), "run: a page file"),
    (dict(fault="status", kind="LIST", path=r"prefix=out%2F_docintel%2Fruns%2Fs3run%2Fstaging%2Fpages"),
     "commit: the staged files"),
    # the three reads of staged files of the issue: a 503, a reset, a 503 (HEADs in the driver)
    (dict(fault="status", kind="HEAD", path=r"/runs/s3run/staging/pages/part-", first=1, last=1), "commit: HEAD 1"),
    (dict(fault="reset", kind="HEAD", path=r"/runs/s3run/staging/pages/part-", first=3, last=3), "commit: HEAD 3"),
    (dict(fault="status", kind="HEAD", path=r"/runs/s3run/staging/pages/part-", first=5, last=5), "commit: HEAD 5"),
    (dict(fault="reset", kind="GET", path=r"/runs/s3run/staging/pages/part-", first=2, last=2), "commit: a read"),
    (dict(fault="status", kind="PUT", path=r"/runs/s3run/staging/documents/."), "commit: Ray's document table"),
    (dict(fault="reset", kind="PUT", path=r"/runs/s3run/manifest/."), "commit: Ray's manifest"),
    (dict(fault="status", kind="COPY", path=r"/docs/out/pages/s3run/"), "commit: a move's copy"),
    (dict(fault="status", kind="DELETE", path=r"/runs/s3run/staging/"), "commit: a move's delete"),
    (dict(fault="reset", kind="PUT", path=r"/runs/s3run/_SUCCESS"), "commit: _SUCCESS"),
]


def test_every_request_type_fails_once_in_every_phase_and_the_run_commits_once(s3_server, bucket, demo_model,
                                                                            ray_cluster):
    s3, expected = bucket
    with FaultProxy(s3_server) as proxy:
        rules = [(proxy.add_rule(**rule), what) for rule, what in ONCE]
        proc = _run(proxy.url, demo_model, "s3://docs/out", "--run-id", "s3run", address=ray_cluster)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert SECRET not in proc.stdout + proc.stderr
        log = proxy.requests()
    missed = [what for rule, what in rules if rule.matched < rule.first]
    assert not missed, f"faults that never fired (the job made no such request): {missed}"
    assert {r.kind for r in log if r.outcome in (503, "reset")} == {"HEAD", "GET", "LIST", "PUT", "COPY", "DELETE"}
    _check(s3, expected, s3_server, "out", "s3run")


def test_a_fault_that_never_clears_ends_with_exit_5_and_resume_commits_once(s3_server, bucket, demo_model,
                                                                          ray_cluster):
    """The commit's moves keep failing (every COPY into the table answers 503): exit code 5, the
    message names the object, every staged file kept; the resume (with a transient fault in each
    of its own requests) commits the run exactly once."""
    s3, expected = bucket
    with FaultProxy(s3_server) as proxy:
        proxy.add_rule("status", kind="COPY", path=r"/docs/out3/pages/never/", first=1, last=None)
        failed = _run(proxy.url, demo_model, "s3://docs/out3", "--run-id", "never", address=ray_cluster)
    assert failed.returncode == 5, failed.stderr[-4000:]
    assert "storage failed" in failed.stderr and "out3/pages/never/part-" in failed.stderr
    assert "--resume never" in failed.stderr and "Traceback" not in failed.stderr
    fs = pafs.S3FileSystem(endpoint_override=s3_server, region="us-east-1", access_key=KEY_ID, secret_key=SECRET)
    staged = pq.read_table("docs/out3/_docintel/runs/never/staging/pages", filesystem=fs)
    assert staged.num_rows == sum(expected.values()) + 1  # every page's row kept (and the broken document's)
    with FaultProxy(s3_server) as proxy:
        for kind, path in (("GET", r"/runs/never/job\.json$"), ("GET", r"/runs/never/inputs\.parquet$"),
                           ("LIST", r"prefix=out3%2F_docintel%2Fruns%2Fnever%2Fstaging"),
                           ("HEAD", r"/runs/never/staging/pages/part-"), ("DELETE", r"/runs/never/manifest/"),
                           ("COPY", r"/docs/out3/pages/never/")):
            proxy.add_rule("status", kind=kind, path=path)
        resumed = _run(proxy.url, demo_model, "s3://docs/out3", "--resume", "never", address=ray_cluster)
        injected = [r for r in proxy.requests() if r.outcome == 503]
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert len(injected) >= 5, injected
    _check(s3, expected, s3_server, "out3", "never")


def test_writes_that_keep_failing_leave_the_run_uncommitted_and_resume_commits_it(s3_server, bucket, demo_model,
                                                                                 tmp_path, ray_cluster):
    """Then the resume: it stores a data file per answered page as it goes (pages_per_file=1; the
    proxy's request log shows them), so a driver that dies mid-run leaves answered work to resume
    from. (Whether the first one lands before the last document is read depends on how long the
    engine takes to start against how far Ray reads ahead: not a property to assert on a few pages.)"""
    from docgen import make_pdf

    s3, _ = bucket
    n_docs = 10
    for i in range(n_docs):
        path = make_pdf(tmp_path / f"d{i}.pdf", pages=1, title=f"Invoice {i}", chart=False)
        s3.upload_file(str(path), "docs", f"stream/d{i:02d}.pdf")
    args = ["--set", "engine.batch_size=1", "--set", "output.pages_per_file=1"]
    with FaultProxy(s3_server) as proxy:
        # 500 InternalError: transient, not throttling (a 503 would back off from 1 s, 4 times per file)
        proxy.add_rule("status", status=500, method="PUT", path=r"/docs/out2/_docintel/runs/w/staging/pages/", first=1,
                       last=None)
        failed = _run(proxy.url, demo_model, "s3://docs/out2", "--run-id", "w", *args, inputs="s3://docs/stream/",
                      address=ray_cluster)
    assert failed.returncode == 5, failed.stderr[-4000:]
    assert "not committed" in failed.stderr and "--resume w" in failed.stderr
    assert "Contents" not in s3.list_objects_v2(Bucket="docs", Prefix="out2/pages/")
    with FaultProxy(s3_server) as proxy:
        resumed = _run(proxy.url, demo_model, "s3://docs/out2", "--resume", "w", *args, inputs="s3://docs/stream/",
                       address=ray_cluster)
        log = proxy.requests()
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    rows = pq.read_table("docs/out2/pages", filesystem=pafs.S3FileSystem(
        endpoint_override=s3_server, region="us-east-1", access_key=KEY_ID, secret_key=SECRET)).to_pylist()
    assert sorted(r["source_uri"] for r in rows) == [f"s3://docs/stream/d{i:02d}.pdf" for i in range(n_docs)]
    assert all(r["valid"] for r in rows)
    reads = [i for i, r in enumerate(log) if r.method == "GET" and "/docs/stream/d" in r.path]
    writes = [i for i, r in enumerate(log) if r.method in ("PUT", "POST") and "/staging/pages/part-" in r.path]
    assert len({log[i].path for i in reads}) >= n_docs
    assert len({log[i].path.split("?")[0] for i in writes}) >= n_docs  # one stored file per answered page

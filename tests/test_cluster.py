"""On a real two-node local Ray cluster (`ray start --head` plus a second `ray start --address`):
local paths are refused unless declared shared, and the run's counters reach the metrics endpoint
while it runs. Both nodes see the same disk here, so the first test checks the decision."""
import os
import re
import subprocess
import tempfile
import time
import urllib.request

import pytest

import jobs

pytestmark = pytest.mark.engine
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "docintel-test-token-0123456789abcdef"}


@pytest.fixture(scope="module")
def two_nodes():
    env = jobs.env(**AUTH)
    gcs, metrics, metrics2 = jobs.free_port(), jobs.free_port(), jobs.free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: socket paths
    subprocess.run(["ray", "start", "--head", f"--port={gcs}", "--num-cpus=2", "--num-gpus=0",
                    f"--metrics-export-port={metrics}", "--include-dashboard=false", "--disable-usage-stats",
                    f"--temp-dir={temp}"], check=True, capture_output=True, env=env, timeout=180)
    subprocess.run(["ray", "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=1", "--num-gpus=0",
                    f"--metrics-export-port={metrics2}", "--disable-usage-stats"],
                   check=True, capture_output=True, env=env, timeout=180)
    yield f"127.0.0.1:{gcs}", [f"http://127.0.0.1:{port}/metrics" for port in (metrics, metrics2)]
    jobs.stop_ray_cluster(gcs)


def test_local_paths_are_refused_on_a_cluster_of_several_nodes(two_nodes, tmp_path, corpus, demo_model):
    address, _ = two_nodes
    folder, _ = corpus
    proc = jobs.run("run", "--address", address, "--input", str(folder), "--output", str(tmp_path / "out"),
                    "--model", demo_model, "--question", "What is the total?", *jobs.FAST, timeout=300, **AUTH)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "2 nodes" in proc.stderr and "S3" in proc.stderr and "storage.shared_filesystem" in proc.stderr
    assert not (tmp_path / "out" / "pages").exists()


def test_a_run_on_the_cluster_with_a_shared_filesystem_exports_its_counters(two_nodes, tmp_path, corpus, demo_model):
    address, metrics = two_nodes
    folder, expected = corpus
    out, log = tmp_path / "out", tmp_path / "run.log"
    proc = jobs.start("run", "--address", address, "--input", str(folder), "--output", str(out), "--model", demo_model,
                      "--question", "What is the total?", "--run-id", "c2", *jobs.FAST,
                      "--set", "storage.shared_filesystem=true", "--set", "engine.batch_size=1",
                      "--set", "output.pages_per_file=1", log=log, **AUTH)
    seen = ""
    deadline = time.monotonic() + 900
    while proc.poll() is None and time.monotonic() < deadline:
        seen = ""
        for url in metrics:  # each node exports the counters of the workers it runs
            try:
                seen += urllib.request.urlopen(url, timeout=5).read().decode()
            except OSError:
                pass
        if re.search(r'docintel_pages_done_total\{[^}]*run_id="c2"[^}]*\} [1-9]', seen):
            break
        time.sleep(2)
    assert re.search(r'docintel_pages_done_total\{[^}]*run_id="c2"[^}]*\} [1-9]', seen), seen[-2000:]
    assert "docintel_rows_total" in seen and "docintel_tokens_total" in seen
    assert proc.wait(900) == 0, log.read_text()[-3000:]
    jobs.assert_exactly_once(out, "c2", expected, ["What is the total?"])
    assert os.path.isdir(out / "pages" / "c2")

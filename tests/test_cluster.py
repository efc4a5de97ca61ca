"""On a real two-node local Ray cluster (conftest.two_nodes): local paths are refused unless declared
shared, the run's counters reach the metrics endpoint while it runs, and both nodes render pages.
Both nodes see the same disk here, so the first test checks the decision. The engine is the double
(slowed, and the renderer too, so that the run lasts while its counters are read and its rendering
needs both nodes): the subject is the cluster."""
import os
import re
import time
import urllib.request

import harness
from pipeline.store import output


def test_local_paths_are_refused_on_a_cluster_of_several_nodes(two_nodes, tmp_path, corpus, demo_model):
    address, _, _ = two_nodes
    folder, _ = corpus
    proc = harness.run("run", "--address", address, "--input", str(folder), "--output", str(tmp_path / "out"),
                    "--model", demo_model, "--question", "What is the total?", *harness.FAST, timeout=300, **harness.AUTH)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "2 nodes" in proc.stderr and "S3" in proc.stderr and "storage.shared_filesystem" in proc.stderr
    assert not (tmp_path / "out" / "pages").exists()


def test_a_run_on_the_cluster_renders_on_both_nodes_and_exports_its_counters(two_nodes, tmp_path, corpus, demo_model):
    address, _, metrics = two_nodes
    folder, expected = corpus
    out, log = tmp_path / "out", tmp_path / "run.log"
    proc = harness.start("run", "--address", address, "--input", str(folder), "--output", str(out), "--model", demo_model,
                      "--question", "What is the total?", "--run-id", "c2", *harness.FAST,
                      "--set", "storage.shared_filesystem=true", "--set", "engine.batch_size=1",
                      "--set", "output.pages_per_file=1", log=log, **harness.AUTH,
                      **harness.double(step_s=1.0, render_delay_s=1.0))  # renders long enough to need both nodes
    seen = ""
    deadline = time.monotonic() + 900
    while proc.poll() is None and time.monotonic() < deadline:
        seen = ""
        for url in metrics:  # each node exports the counters of the workers it runs
            try:
                seen += urllib.request.urlopen(url, timeout=5).read().decode()
            except OSError:
                pass
        if re.search(r'docintel_pages_done_total\{[^}]*run_id="c2"[^}]*\} [1-9]', seen) and \
                re.search(r'docintel_engine_queue_depth\{[^}]*run_id="c2"', seen):
            break
        time.sleep(2)
    assert re.search(r'docintel_pages_done_total\{[^}]*run_id="c2"[^}]*\} [1-9]', seen), seen[-2000:]
    assert "docintel_rows_total" in seen and "docintel_tokens_total" in seen
    assert re.search(r'docintel_engine_queue_depth\{[^}]*run_id="c2"', seen), seen[-2000:]
    assert proc.wait(900) == 0, log.read_text()[-3000:]
    harness.assert_exactly_once(out, "c2", expected, ["What is the total?"])
    assert os.path.isdir(out / "pages" / "c2")
    stage = output.marker(str(out), "c2")["feeding"]["cpu_stage"]
    assert stage["nodes"] == 2, stage  # the read -> split -> requests tasks ran on both nodes

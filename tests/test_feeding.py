"""The CPU stages feed the engine from the first document (pipeline/job/feeding.py): a run's listing is
one Parquet block, and the read -> split -> requests stages once ran as one task for the whole job,
one CPU rendering while the engine waited. On a Ray of 4 CPUs, with a renderer slowed to 0.4 s a
page, the stage must run as several tasks at once, and the first request must reach the engine
before the last page is rendered. What the run reports in its _SUCCESS (`feeding`) comes from where
it happens: Ray Data's per-task stats, the engine loop's clock, the split stage's clock. The engine
is the double (tests/engine_double.py): the subject here is the feeding, not the engine."""
import re
from pathlib import Path

import harness
from docgen import make_pdf
from pipeline.job import feeding
from pipeline.store import output


def test_documents_per_task_serves_a_laptop_and_a_cluster():
    assert feeding.documents_per_task(5, 2) == 1
    assert feeding.documents_per_task(240, 16) == 3
    assert feeding.documents_per_task(10_000_000, 1000) == feeding.MAX_DOCUMENTS_PER_TASK
    assert feeding.documents_per_task(0, 0) == 1


def test_most_at_once():
    assert feeding.most_at_once([]) == 0
    assert feeding.most_at_once([(0, 1), (1, 2), (2, 3)]) == 1  # one ends as the next begins
    assert feeding.most_at_once([(0, 10), (1, 2), (1.5, 3), (5, 6)]) == 3


def test_the_cpu_stage_runs_wide_and_pages_reach_the_engine_as_they_are_rendered(ray_cluster, tmp_path, demo_model):
    folder, out = tmp_path / "docs", tmp_path / "out"
    for i in range(40):
        make_pdf(folder / f"doc{i:02d}.pdf", pages=1, title=f"Invoice {i}", chart=False)
    proc = harness.run("run", "--address", ray_cluster, "--input", str(folder), "--output", str(out),
                    "--model", demo_model, "--run-id", "feed", "--question", "What is the total?", *harness.FAST,
                    **harness.double(render_delay_s=0.4))
    assert proc.returncode == 0, proc.stderr[-3000:]
    marker = output.marker(str(out), "feed")
    report = marker["feeding"]
    assert report["documents_per_task"] == 2  # 40 documents, 4 CPUs: 16 tasks' worth
    stage = report["cpu_stage"]
    assert stage["tasks"] >= 8 and stage["most_at_once"] >= 2, report
    # 16 s of rendering: the engine (a double, no start-up) is ready long before the last page ...
    assert report["engine_ready_at"] < report["last_page_rendered_at"] - 5, report
    # ... and gets pages while the rest still render (one task for the whole listing: only after)
    assert report["first_request_at"] < report["last_page_rendered_at"] - 2, report
    # Ray Data read the listing and, in the commit, the staged rows with ray.parquet_footer_actors footer
    # readers (4), not Ray's 32 a read: 84 worker processes fewer for a small run on 2 cores
    ray_data_log = (Path(marker["log_file"]) / "ray-data" / "ray-data.log").read_text()
    provisioned = re.findall(r"Provisioned (\d+) FooterReader actors", ray_data_log)
    assert len(provisioned) >= 3 and set(provisioned) == {"4"}, provisioned

"""The shipped tiny reader (models/tiny-reader) through `docintel eval` on the real CPU engine: held-out
generated pages it reads, and in the same run the same pages blank and turned 90 degrees, which it
cannot read. A pipeline that sends the model a blank or rotated image, or mixes up pages, fails it.

The bars come from the recorded scores (tools/reader/README.md, bench/results/
2026-12-06-reader-score-cpu.json, 60 held-out pages each): docvqa ANLS 0.9996 on the pages, 0.04 blank,
0.08 rotated. A slice of 8 pages here: at least 0.9 on the pages, at most 0.2 on each twin.
"""
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import harness

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/

pytestmark = pytest.mark.engine
READER = harness.REPO / "models" / "tiny-reader"
SEED = 900_300  # held out: training draws its page seeds from random.Random streams; score.py uses 900,000-900,059


def test_the_reader_reads_held_out_pages_and_not_their_blank_or_turned_twins(tmp_path, ray_cluster):
    from tools.reader import goldset

    gold = []
    for variant in ("pages", "blank", "rotate"):
        paths = goldset.write(tmp_path / variant, pages=8, seed=SEED, broken=None if variant == "pages" else variant)
        for line in paths["docvqa"].read_text().splitlines():
            item = json.loads(line)
            gold.append(dict(item, document=f"{variant}/{item['document']}"))
    (tmp_path / "gold.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gold))
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "eval", str(tmp_path / "gold.jsonl"),
                           "--task", "docvqa", "--model", str(READER), "--output", str(tmp_path / "out"),
                           "--run-id", "reader", "--address", ray_cluster, "--set", "ray.progress_bars=false",
                           "--set", "render.max_side=560", "--set", "engine.separate_core=false"],
                          capture_output=True, text=True, timeout=900, env=harness.env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = pq.read_table(tmp_path / "out" / "_eval" / "reader" / "scores.parquet").to_pylist()
    assert len(rows) == len(gold)
    mean = {v: [r["score"] for r in rows if f"/{v}/docs/" in r["source_uri"]] for v in ("pages", "blank", "rotate")}
    mean = {v: sum(s) / len(s) for v, s in mean.items()}
    assert mean["pages"] >= 0.9, mean
    assert mean["blank"] <= 0.2 and mean["rotate"] <= 0.2, mean
    # every page row says what answered it, and the right answers are found on the page (a text layer)
    pages = [r for r in rows if "/pages/docs/" in r["source_uri"] and r["correct"]]
    assert pages and all(r["valid"] and r["confidence"] is not None for r in pages)

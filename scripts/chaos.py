"""Chaos run: a real `docintel run` whose Ray workers are SIGKILLed every few seconds, as preempted or
OOM-killed nodes would be, then a check that every page was committed exactly once.

    python scripts/chaos.py --model DIR --docs 40 --kills 6 --every 20 [--stages engine,read,write]

Kills start once the first engine is ready and land while pages are being answered and written:
the victim is picked among the live processes of the named stages (the engine actor, the
read/render/request tasks, the answer/write tasks). Prints one JSON line with what was killed and
what was committed. tests/test_chaos.py runs a short version of this in CI; the README's
reliability section has a long run's result.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]

import harness  # noqa: E402
from docgen import make_pdf, make_png  # noqa: E402

# Stage -> the Ray process title of its workers (Ray Data names tasks after their fused operators).
STAGES = {"engine": "MapWorker(MapBatches(EngineActor))", "read": "MapBatches(_read)",
          "write": "MapBatches(_answer_and_write)"}
QUESTIONS = ["What is the total?", "What is the date?"]


def make_docs(folder: Path, n: int) -> dict[str, int]:
    expected = {}
    for i in range(n):
        if i % 5 == 4:
            make_png(folder / f"scan{i}.png", f"Receipt {i}  Total {i}.99")
            expected[f"scan{i}.png"] = 1
        else:
            pages = 1 + i % 3
            make_pdf(folder / f"doc{i}.pdf", pages=pages, title=f"Invoice {i}", chart=False)
            expected[f"doc{i}.pdf"] = pages
    return expected


def chaos(model: str, work: Path, docs: int, kills: int, every: float, stages: list[str], seed: int = 0,
          batch_size: int = 4, timeout: float = 3000) -> dict:
    rnd = random.Random(seed)
    folder, out, log = work / "docs", work / "out", work / "run.log"
    expected = make_docs(folder, docs)
    args = ["run", "--input", str(folder), "--output", str(out), "--model", model, "--run-id", "chaos",
            *sum((["--question", q] for q in QUESTIONS), []), *harness.FAST,
            "--set", f"engine.batch_size={batch_size}", "--set", "output.pages_per_file=4",
            "--set", "ray.max_restarts_without_progress=20"]
    began = time.monotonic()
    proc = harness.start(*args, log=log)
    harness.wait_for(lambda: "engine ready in" in log.read_text(), 900, "the first engine", proc, log)
    killed: Counter[str] = Counter()
    next_kill = time.monotonic() + every * rnd.uniform(0.5, 1.0)
    while proc.poll() is None and sum(killed.values()) < kills and time.monotonic() - began < timeout:
        if time.monotonic() < next_kill:
            time.sleep(0.1)
            continue
        live = [(stage, p) for stage in stages for p in harness.processes(proc.pid, STAGES[stage])]
        if not live:
            time.sleep(0.2)  # nothing of those stages running right now: try again shortly
            continue
        stage, victim = rnd.choice(live)
        victim.kill()
        killed[stage] += 1
        next_kill = time.monotonic() + every * rnd.uniform(0.5, 1.5)
    code = proc.wait(max(1.0, timeout - (time.monotonic() - began)))
    result = {"exit_code": code, "kills": dict(killed), "documents": docs, "pages": sum(expected.values()),
              "seconds": round(time.monotonic() - began, 1)}
    if code == 0:
        rows = harness.assert_exactly_once(out, "chaos", expected, QUESTIONS)
        result.update(rows=len(rows), valid_rows=sum(r["valid"] for r in rows),
                      error_kinds=dict(Counter(r["error_kind"] for r in rows if r["error_kind"])))
    else:
        result["log_tail"] = log.read_text()[-3000:]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder (e.g. docintel demo-model DIR)")
    parser.add_argument("--docs", type=int, default=40)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--every", type=float, default=20.0, help="seconds between kills (jittered)")
    parser.add_argument("--stages", default="engine,read,write")
    parser.add_argument("--work", default=None, help="folder for inputs and output (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="docintel-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    result = chaos(args.model, work, args.docs, args.kills, args.every, args.stages.split(","), args.seed)
    print(json.dumps(result))
    return 0 if result["exit_code"] == 0 and result.get("rows") else 1


if __name__ == "__main__":
    sys.exit(main())

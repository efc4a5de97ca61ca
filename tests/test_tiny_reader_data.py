"""The tiny reader's training pages and curriculum (tools/reader/pagegen.py, curriculum.py): text at
least MIN_PX on every generated page, nothing drawn off the page or over other text, line questions
whose answers are what is drawn, and a training stream that goes from lines to pages to the task."""
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/


def _canvases(monkeypatch, make, seeds, **kw):
    """The laid-out canvas behind each page `make` returns (pagegen.finish receives it)."""
    from tools.reader import pagegen

    seen, finish = [], pagegen.finish
    monkeypatch.setattr(pagegen, "finish", lambda kind, shape, canvas, *a, **k: seen.append(canvas) or
                        finish(kind, shape, canvas, *a, **k))
    pages = [make(seed, **kw) for seed in seeds]
    return list(zip(pages, seen))


def test_generated_pages_fit_and_their_text_is_at_least_min_px(monkeypatch):
    from tools.reader import curriculum, pagegen

    for kind in ("invoice", "report", "chart"):
        for page, canvas in _canvases(monkeypatch, pagegen.make_page, range(120), kind=kind):
            sizes = [op[5] for op in canvas.ops if op[0] == "text"]
            font = next(op[4] for op in canvas.ops if op[0] == "text" and op[5] == min(sizes))
            scale = 1.0 if font.startswith("h") else 1.1  # Times and Courier: smaller capitals per em
            assert canvas.fits(), (kind, page.lines)
            assert min(sizes) >= round(pagegen.MIN_PX * scale), (kind, min(sizes), font)
    for shape, most in ((None, 3), ("strip", 1)):
        for page, canvas in _canvases(monkeypatch, curriculum.make_lines_page, range(200), shape=shape):
            assert canvas.fits() and 1 <= len(page.lines) <= most
            assert min(op[5] for op in canvas.ops if op[0] == "text") >= pagegen.MIN_PX


def test_counterfactual_pages_ask_the_same_questions_with_other_answers(monkeypatch, tmp_path):
    """make_page(seed, values=k): the seed's layout, other values (VQA counterfactual pairs); the
    training pages (values None) are the ones that one stream always drew."""
    from tools.reader import pagegen

    answers = differ = 0
    for seed in range(900_000, 900_040):
        a, b = pagegen.make_page(seed, values=1), pagegen.make_page(seed, values=2)
        assert (a.kind, a.shape) == (b.kind, b.shape)
        assert [q for q, _ in a.docvqa + a.chartqa] == [q for q, _ in b.docvqa + b.chartqa]
        assert (a.fields is None) == (b.fields is None) and a.pdf != b.pdf
        for (_, x), (_, y) in zip(a.docvqa + a.chartqa, b.docvqa + b.chartqa):
            if x != pagegen.UNANSWERABLE:
                answers, differ = answers + 1, differ + (x["answer"] != y["answer"])
        assert pagegen.make_page(seed).pdf == pagegen.make_page(seed).pdf != a.pdf
    assert differ >= 0.9 * answers
    for page, canvas in _canvases(monkeypatch, pagegen.make_page, range(900_000, 900_040), values=3):
        assert canvas.fits(), page.lines
    from tools.reader import goldset

    one, two = (goldset.write(tmp_path / str(k), pages=12, values=k)["docvqa"].read_text().splitlines()
                for k in (1, 2))
    pairs = [(json.loads(x), json.loads(y)) for x, y in zip(one, two)]
    assert len(one) == len(two) and all(x["question"] == y["question"] for x, y in pairs)
    # a chart's title draws from a short list of metrics, so a few pairs keep their answer: scoring
    # counts only the pairs whose answers differ
    assert sum(x["answers"] != y["answers"] for x, y in pairs) >= 0.8 * len(pairs)


def test_line_questions_ask_for_what_is_drawn_in_the_cells_of_the_page():
    """Each line's characters are read, in the [IMG] tokens' order, off the cells the reading loss
    names; the line questions' answers are those lines."""
    from tools.reader import curriculum, pagegen, reading

    for page in ([curriculum.make_lines_page(s) for s in range(30)] + [pagegen.make_page(s) for s in range(10)]
                 + [curriculum.make_lines_page(s, "strip") for s in range(20)]):
        w, h = pagegen.size_of(page.shape)
        targets = reading.cell_targets(page.chars, w, h)
        read = "".join(reading.CHARS[t - 1] if t < reading.OTHER else "?" for row in targets for t in row if t)
        drawn = "".join(c for c, _, _ in page.chars if not c.isspace())
        assert sorted(read.replace("?", "")) == sorted(c for c in drawn if c in reading.CHARS)
        if page.kind == "lines":  # well apart vertically: each line lies in its own cell rows
            for line in page.lines:
                assert "".join(c if c in reading.CHARS else "?" for c in line if c != " ") in read, (line, read)
        pairs = curriculum.line_questions(page.lines, 20, random.Random(0))
        for question, answer in pairs:
            if question == curriculum.TRANSCRIBE:
                assert answer["answer"] == " ".join(page.lines)
            else:
                assert answer["answer"] in page.lines and answer["evidence"] == answer["answer"]


def test_the_stream_reads_lines_then_pages_then_the_task(tmp_path):
    from tools.reader import curriculum, data

    tekken = str(data.write_tekken(tmp_path / "tekken.json"))
    plan = curriculum.Curriculum.from_steps([2, 2, 2], reuse=2)  # one block of each, two batches a block
    assert (plan.strips, plan.lines, plan.pages) == (1, 1, 1)
    batches = [data.make_batch(3, position, 2, tekken, 1, 2, plan=plan) for position in range(8)]
    kinds = [{data.KINDS[k] for k in b["kind"].tolist()} for b in batches]
    reading_kinds = {"read", "read-together"}
    assert [tuple(b["images"].shape[2:]) for b in batches[:2]] == [(112, 560)] * 2  # block 0: one-line strips
    assert kinds[0] == kinds[1] == {"read"}
    assert kinds[2] <= reading_kinds and kinds[3] <= reading_kinds  # block 1: pages of lines, lines only
    assert batches[2]["images"].shape[2:] != (112, 560)
    assert kinds[4] & reading_kinds and kinds[4] - reading_kinds  # block 2: real pages, lines and the task
    assert kinds[5] & reading_kinds and kinds[5] - reading_kinds
    assert kinds[6] - reading_kinds and kinds[7] - reading_kinds  # then the task
    again = data.make_batch(3, 2, 2, tekken, 1, 2, plan=plan)  # a position holds the same batch
    assert again["tokens"].equal(data.make_batch(3, 2, 2, tekken, 1, 2, plan=plan)["tokens"])


def test_a_reader_that_answers_as_trained_scores_full_marks_on_the_gold_set_and_not_on_its_twins(tmp_path):
    """The held-out gold set (tools/reader/goldset.py) in eval's own format, scored by eval's own
    scoring: the answers training teaches (pagegen's JSON) score 1.0 on every item, so an eval
    threshold of 0.9 asks for reading, not for a format; the same answers joined to the swapped twin
    (each document holds another page) score far lower."""
    import json

    from pipeline.evaluation.evaluate import load_gold, score_items
    from tools.reader import goldset, pagegen

    seeds = range(goldset.HELD_OUT_SEED, goldset.HELD_OUT_SEED + 24)
    answers = {}  # (document name, question) -> the JSON training teaches for it
    for seed in seeds:
        page = pagegen.make_page(seed)
        for q, a in page.docvqa + page.chartqa + ([(None, page.fields)] if page.fields else []):
            answers[(f"{page.kind}-{seed}.pdf", q)] = a
    for broken, expect in ((None, 1.0), ("swap", 0.3)):
        paths = goldset.write(tmp_path / str(broken), pages=len(seeds), broken=broken)
        assert {p.name for p in (tmp_path / str(broken) / "docs").iterdir()} == {k[0] for k in answers}
        for task, path in paths.items():
            items = load_gold(path)
            assert items and all(Path(i.document).is_file() for i in items)
            names = sorted({Path(i.document).name for i in items})
            # a reader answering what is on the page it is given: on the swapped twin, the next page's
            rows = []
            for item in items:
                name = Path(item.document).name
                shown = name if broken is None else names[(names.index(name) + 1) % len(names)]
                same = [a for (doc, q), a in answers.items() if doc == shown and q == item.question]
                rows.append({"source_uri": item.document, "page_index": 0, "question": item.question,
                             "answer_json": json.dumps(same[0]) if same else None})
            scores = score_items(items, rows, task, "t").to_pylist()
            mean = sum(s["score"] for s in scores) / len(scores)
            if broken is None:
                assert mean == 1.0, (task, [(s["question"], s["references"], s["prediction"]) for s in scores if s["score"] < 1][:4])
            else:
                assert mean < expect, (task, mean)
    import pymupdf

    for broken in ("blank", "rotate"):  # the other twins: the same documents, the page broken
        goldset.write(tmp_path / broken, pages=4, broken=broken)
        for pdf in sorted((tmp_path / broken / "docs").iterdir()):
            with pymupdf.open(pdf) as doc:
                original = pagegen.make_page(int(pdf.stem.rsplit("-", 1)[1]))
                assert doc[0].mediabox == pymupdf.open(stream=original.pdf)[0].mediabox  # its own size
                assert doc[0].rotation == (90 if broken == "rotate" else 0)
                assert (doc[0].get_text().split() == []) == (broken == "blank")


def test_a_tiny_reader_folder_runs_on_the_cpu_when_there_is_no_gpu(tmp_path):
    """`docintel eval GOLD --model READER` (tools/reader/score.py) on a machine without a GPU: the
    exported reader, like the demo model, runs on the CPU at engine.device=auto; a real model does not."""
    import json

    import pytest

    from pipeline.core.config import EngineSpec, JobSpec
    from pipeline.engine.model import READER_MARKER
    from pipeline.job.preflight import UsageError, resolve_device

    reader = tmp_path / "reader"
    reader.mkdir()
    (reader / READER_MARKER).write_text(json.dumps({"kind": "tiny-reader"}))
    assert resolve_device(JobSpec(engine=EngineSpec(model=str(reader))), 0) == "cpu"
    assert resolve_device(JobSpec(engine=EngineSpec(model=str(reader))), 1) == "cuda"
    with pytest.raises(UsageError, match="No GPU"):
        resolve_device(JobSpec(engine=EngineSpec(model=str(tmp_path))), 0)


def test_the_engine_asks_no_more_positions_than_the_model_has(tmp_path):
    """The tiny reader has 8,192 positions; vLLM refuses the default max_model_len of 16,384 for it."""
    import json

    from pipeline.core.config import EngineSpec
    from pipeline.engine.actor import engine_args

    (tmp_path / "params.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    assert engine_args(EngineSpec(model=str(tmp_path)), "cpu")["max_model_len"] == 8192
    assert engine_args(EngineSpec(model=str(tmp_path), max_model_len=4096), "cpu")["max_model_len"] == 4096
    assert engine_args(EngineSpec(model="mistralai/Mistral-Small-3.2-24B-Instruct-2506"), "cuda")["max_model_len"] == 16384


def test_the_shipped_reader_pages_are_what_goldset_writes(tmp_path):
    """models/tiny-reader/pages (the CPU demo's pages and gold) come from goldset.py, byte for byte."""
    from tools.reader import goldset

    shipped = Path(__file__).resolve().parents[1] / "models" / "tiny-reader" / "pages"
    goldset.write(tmp_path, pages=8, seed=900_100)
    files = lambda root: sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())  # noqa: E731
    assert files(shipped) == files(tmp_path)
    for name in files(shipped):
        assert (shipped / name).read_bytes() == (tmp_path / name).read_bytes(), name

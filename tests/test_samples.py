"""samples/ and scripts/make_samples.py: the script is deterministic, the committed files are what it
writes, they are small, each one is the kind of document it says it is when the pipeline's own
splitter reads it, and questions.jsonl is a manifest discover() accepts. No engine."""
from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import pymupdf
import pytest
from PIL import Image, ImageChops, ImageStat

from pipeline.answers import grounding
from pipeline.core.config import InputSpec, RenderSpec
from pipeline.ingest.pages import sniff_format, split_document
from pipeline.ingest.sources import discover

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
FILES = {"invoice.pdf": ("pdf", 1), "chart.png": ("png", 1), "scan.pdf": ("pdf", 1), "report.pdf": ("pdf", 4),
         "receipt.png": ("png", 1)}


def _script():
    spec = importlib.util.spec_from_file_location("make_samples", REPO / "scripts" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    _script().build(folder)
    return folder


def _pixels(name: str, data: bytes) -> list[Image.Image]:
    """What a reader sees: the pages rendered (PDF) or the decoded image."""
    if name.endswith(".pdf"):
        with pymupdf.open(stream=data, filetype="pdf") as pdf:
            return [Image.frombytes("RGB", (p.width, p.height), p.samples)
                    for p in (page.get_pixmap(dpi=72, alpha=False) for page in pdf)]
    return [Image.open(io.BytesIO(data)).convert("RGB")]


def test_script_is_deterministic(fresh, tmp_path):
    _script().build(tmp_path)
    for name in [*FILES, "questions.jsonl"]:
        assert (tmp_path / name).read_bytes() == (fresh / name).read_bytes(), name


def test_committed_samples_are_what_the_script_writes(fresh):
    """Byte for byte; where a newer PyMuPDF/Pillow writes other bytes, the same pixels (near enough)."""
    for name in [*FILES, "questions.jsonl"]:
        committed, made = (SAMPLES / name).read_bytes(), (fresh / name).read_bytes()
        if committed == made:
            continue
        assert not name.endswith(".jsonl"), f"{name} differs from scripts/make_samples.py's: regenerate it"
        old, new = _pixels(name, committed), _pixels(name, made)
        assert len(old) == len(new), name
        for a, b in zip(old, new):
            assert a.size == b.size, name
            diff = ImageStat.Stat(ImageChops.difference(a, b)).mean
            assert max(diff) < 2.0, f"{name} looks different from what the script draws now: {diff}"


def test_small_and_described():
    sizes = {name: (SAMPLES / name).stat().st_size for name in FILES}
    assert sum(sizes.values()) < 600_000, sizes
    assert all(size < 300_000 for size in sizes.values()), sizes
    readme = (SAMPLES / "README.md").read_text(encoding="utf-8")
    for name in [*FILES, "questions.jsonl", "python scripts/make_samples.py"]:
        assert f"`{name}`" in readme or name in readme, name


@pytest.fixture(scope="module")
def pages() -> dict[str, list[dict]]:
    spec = RenderSpec(max_side=500)
    return {name: split_document({"source_uri": str(SAMPLES / name), "doc_id": name,
                                  "data": (SAMPLES / name).read_bytes()}, spec) for name in FILES}


def test_each_sample_splits_as_what_it_is(pages):
    for name, (fmt, count) in FILES.items():
        rows = pages[name]
        assert sniff_format((SAMPLES / name).read_bytes()) == fmt, name
        assert [r["error_kind"] for r in rows] == [None] * count, (name, [r["error"] for r in rows])
        assert [r["page_index"] for r in rows] == list(range(count)), name
        assert all(max(r["width"], r["height"]) == 500 for r in rows), name
    # only the born-digital PDFs have a text layer; the scan is pixels only, like the images
    assert all(r["words"] is not None for n in ("invoice.pdf", "report.pdf") for r in pages[n])
    assert all(r["words"] is None for n in ("scan.pdf", "chart.png", "receipt.png") for r in pages[n])
    with pymupdf.open(SAMPLES / "scan.pdf") as pdf:
        assert pdf[0].get_text().strip() == "" and len(pdf[0].get_images()) == 1


def test_answers_are_on_the_pages(pages):
    """The numbers the questions ask for are in the text layer where the README says, and grounding
    boxes them inside the table and totals (the invoice's lower half, the report's table)."""
    invoice = pages["invoice.pdf"][0]
    for answer in ("INV-2026-0417", "£343.14", "61.90", "13 April 2026"):
        assert grounding.locate(answer, invoice["words"]), answer
    total = grounding.locate("343.14", invoice["words"])[0]
    assert 0.5 < total.x0 < total.x1 < 1 and 0.3 < total.y0 < total.y1 < 0.7, total
    report = pages["report.pdf"]
    assert "Annual Report 2025" in report[0]["text"] and "48,310" in report[0]["text"]
    assert grounding.locate("18,147", report[1]["words"]) and grounding.locate("242,760", report[2]["words"])
    assert "2026" in report[3]["text"]


def test_questions_manifest_lists_every_sample():
    lines = [json.loads(line) for line in (SAMPLES / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(e["path"] for e in lines) == sorted(FILES)
    refs = discover(InputSpec(manifest=str(SAMPLES / "questions.jsonl")))
    assert sorted(Path(r.source_uri).name for r in refs) == sorted(FILES)
    for ref in refs:
        assert ref.error_kind is None and Path(ref.source_uri).is_file(), ref
        assert len(ref.questions) >= 3 and all(q.endswith("?") for q in ref.questions), ref

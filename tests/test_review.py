"""`docintel review` (pipeline/browse/review.py): rows chosen by DuckDB (--where, --limit, errors first, least
confident first, latest committed run), pages re-rendered from the real source documents with the
answer's boxes where grounding put them, everything escaped and self-contained; then the file in
headless Chromium: drawn (not blank), boxes over the answer's ink at the right place and size, and
the sort/filter controls working from the URL's #fragment. The run is written directly in the
output layout (tests/test_runs.py's builders), so no engine runs.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from docgen import make_hanging_page_pdf, make_pdf, make_png
from html_check import Balanced
from pipeline.answers import grounding
from pipeline.browse.review import ReviewError, page_images, select_rows
from pipeline.ingest.sources import content_id
from test_runs import _t, doc_row, page_row, write_committed

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
RUN = "r2"
SCRIPT = "<script>alert(1)</script>"
PINK, BLUE = (230, 0, 126), (10, 102, 255)  # review.CSS: answer boxes, value boxes


def _boxes(text: str, words) -> list[dict]:
    boxes = [b._asdict() for b in grounding.locate(text, words)]
    assert boxes, text
    return boxes


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("review"))


def build_run(tmp: Path):
    """An output with an older run r1 and the run r2 under review; returns (out, docs, boxes)."""
    docs, out = tmp / "docs", str(tmp / "out")
    pdf, png, broken = make_pdf(docs / "invoice.pdf", pages=2), make_png(docs / "receipt.png"), docs / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7 truncated")
    with pymupdf.open(pdf) as d:
        words = [grounding.page_words(d[0]), grounding.page_words(d[1])]
    boxes = {"total": _boxes("1,234.50", words[0]), "south": _boxes("77", words[1]),
             "date": _boxes("2026-03-14", words[0]), "title": _boxes("Invoice 1042", words[0])}
    ids = {p: content_id(p.read_bytes()) for p in (pdf, png)}

    def row(path, page, question, **kw):
        return page_row(RUN, str(path), page, question, doc_id=ids.get(path, "uri:broken"),
                        page_count={pdf: 2, png: 1}.get(path), **kw)

    def answer(text, c, g, b, path="answer"):
        return dict(answer_text=text, answer_json=f'{{"answer": "{text}"}}', confidence=c, grounded=g, answer_boxes=b,
                    value_details=[{"path": path, "confidence": c, "boxes": b, "grounded": g}],
                    raw_output=f'{{"answer": "{text}"}}')
    rows = [
        row(pdf, 0, "What is the total?", **answer("1,234.50", 0.42, True, boxes["total"])),
        row(pdf, 1, "What is the value for South?", **answer("77", 0.93, True, boxes["south"])),
        row(pdf, 0, None, task="fields", answer_json='{"date": "2026-03-14", "title": "Invoice 1042"}',
            confidence=0.55, grounded=True, value_details=[
                {"path": "date", "confidence": 0.55, "boxes": boxes["date"], "grounded": True},
                {"path": "title", "confidence": 0.97, "boxes": boxes["title"], "grounded": True}]),
        row(png, 0, "What is the total?", **answer("12.99", 0.71, None, None)),
        row(broken, None, None, error_kind="corrupt_pdf", error=f"cannot open PDF: {SCRIPT}"),
        row(pdf, 0, 'What is the "date"? <i>x</i>', error_kind="invalid_output", error="not JSON: Expecting value",
            raw_output='{"answer": '),
        row(pdf, 0, "Who is the customer?", **answer("ACME Corp", 0.3, False, [])),
    ]
    docs_rows = [doc_row(RUN, str(p), "ok") for p in (pdf, png)] + [
        doc_row(RUN, str(broken), "failed", None, error_kinds=["corrupt_pdf"], error="cannot open PDF")]
    write_committed(out, "r1", [page_row("r1", str(pdf), 0, "old?", confidence=0.01)],
                    [doc_row("r1", str(pdf))], _t(13), _t(13, 10))
    write_committed(out, RUN, rows, docs_rows, _t(14), _t(14, 10))
    return out, docs, boxes


def review(out: str, html_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "review", out, "--out", str(html_path), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


class Cards(Balanced):
    """Collects each card's data- attributes, box styles, image sources and text, the element ids and
    every image source."""

    def __init__(self):
        super().__init__()
        self.cards, self.ids, self.srcs = [], set(), []

    def start(self, tag, a):
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "img":
            self.srcs.append(a.get("src", ""))
            if self.cards and "article" in self.stack:
                self.cards[-1]["imgs"].append(a.get("src", ""))
        if tag == "article":
            self.cards.append({**a, "boxes": [], "imgs": [], "text": ""})
        elif tag == "div" and "box" in (a.get("class") or "").split() and self.cards:
            self.cards[-1]["boxes"].append((a["class"], a["style"], a.get("title")))

    def handle_data(self, data):
        if self.cards and "article" in self.stack:
            self.cards[-1]["text"] += data


def parse(text: str) -> Cards:
    return Cards.check(text)


def _style(box: dict) -> str:
    pct = lambda x: f"{100 * x:.2f}%"  # noqa: E731 - the percentages review.py writes
    return (f"left:{pct(box['x0'])};top:{pct(box['y0'])};width:{pct(box['x1'] - box['x0'])};"
            f"height:{pct(box['y1'] - box['y0'])}")


# ---- the file ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full(run, tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("html") / "review.html"
    done = review(run[0], path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{path}: 7 of 7 matching rows of run {RUN}"
    return path, path.read_text(encoding="utf-8")


def test_cards_in_review_order_with_boxes(run, full):
    _, _, boxes = run
    cards = parse(full[1]).cards
    # errors first (broken.pdf, then the invalid row), then confidence ascending; run r2, not r1
    assert [c["data-conf"] for c in cards] == ["", "", "0.300000", "0.420000", "0.550000", "0.710000", "0.930000"]
    assert [c["data-kind"] for c in cards[:3]] == ["corrupt_pdf", "invalid_output", ""]
    assert [c["data-grounded"] for c in cards] == ["na", "na", "notfound", "found", "found", "notext", "found"]
    assert "old?" not in full[1]
    # the boxes are the rows' boxes, as percentages of the page picture; the main value once
    assert cards[3]["boxes"] == [("box ans", _style(b), "answer") for b in boxes["total"]]
    assert cards[4]["boxes"] == [("box val", _style(boxes["date"][0]), "date"),
                                 *[("box val", _style(b), "title") for b in boxes["title"]]]
    assert cards[6]["boxes"] == [("box ans", _style(b), "answer") for b in boxes["south"]]
    assert all(not c["boxes"] for c in (cards[0], cards[1], cards[2], cards[5]))
    # what each card says
    assert "found on page" in cards[3]["text"] and "NOT found on page" in cards[2]["text"]
    assert "no text layer" in cards[5]["text"] and "confidence 0.71" in cards[5]["text"]
    assert "no page: this row is about the whole document" in cards[0]["text"]
    assert f"corrupt_pdf: cannot open PDF: {SCRIPT}" in cards[0]["text"]
    assert '"date": "2026-03-14"' in cards[4]["text"] and "values (2)" in cards[4]["text"]
    assert "page2 of 2" in cards[6]["text"] and "page1 of 1" in cards[5]["text"]
    assert cards[5]["data-src"].endswith("receipt.png") and cards[6]["data-page"] == "1"


def test_escaped_and_self_contained(full):
    text = full[1]
    assert SCRIPT not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<i>x</i>" not in text and "What is the &quot;date&quot;? &lt;i&gt;x&lt;/i&gt;" in text
    assert text.count("<script>") == 1  # the review's own code, static
    assert set(re.findall(r"[a-z]+://[^\s\"'<>)]*", text, re.I)) == set()
    srcs = parse(text).srcs
    assert len(srcs) == 6 and all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    for bad in ("<link", "<iframe", "url(", "@import", "fetch(", "xmlhttprequest"):
        assert bad not in text.lower(), bad
    ids = parse(text).ids
    assert {"conf", "confv", "nullconf", "kind", "grounded", "count", "cards"} <= ids
    for sort in ("default", "conf-asc", "conf-desc", "source"):
        assert f'data-sort="{sort}"' in text
    assert '<option value="corrupt_pdf">corrupt_pdf (1)</option>' in text
    assert '<option value="">no error (5)</option>' in text and '<option value="notfound">NOT found on page (1)' in text


def test_where_limit_run_and_errors(run, tmp_path):
    out = run[0]
    sel = select_rows(out, where="confidence < 0.6 AND error_kind IS NULL")
    assert [r["confidence"] for r in sel.rows] == [0.3, 0.42, 0.55] and (sel.matching, sel.total) == (3, 7)
    assert [r["source_uri"].rsplit("/", 1)[1] for r in select_rows(out, limit=2).rows] == ["broken.pdf", "invoice.pdf"]
    assert select_rows(out, "r1").rows[0]["question"] == "old?"
    assert select_rows(out, where="list_contains([b.x0 for b in answer_boxes], 0.0)").matching == 0
    with pytest.raises(ReviewError, match="nope"):
        select_rows(out, where="nope > 1")
    with pytest.raises(ReviewError, match="several statements"):  # out of the parentheses it is put in
        select_rows(out, where="true); SELECT (1")
    with pytest.raises(ReviewError, match="syntax error"):
        select_rows(out, where="true; SELECT 1")
    with pytest.raises(ReviewError, match="Permission|disabled"):  # the predicate cannot read files
        select_rows(out, where=f"(SELECT count(*) FROM read_csv('{REPO / 'README.md'}')) > 0")
    with pytest.raises(ReviewError, match="not committed"):
        select_rows(out, "r3")
    done = review(out, tmp_path / "x.html", "--where", "confidence <")
    assert done.returncode == 2 and "--where" in done.stderr and not (tmp_path / "x.html").exists()
    done = review(out, tmp_path / "none.html", "--where", "confidence > 5")
    assert done.returncode == 0 and "no rows match" in (tmp_path / "none.html").read_text()


def test_pictures_cached_and_problems_shown(run, tmp_path):
    out, docs, _ = run
    rows = select_rows(out).rows
    images = page_images(rows, 10**8, max_side=300)
    pdf, png = str(docs / "invoice.pdf"), str(docs / "receipt.png")
    assert set(images) == {(pdf, 0), (pdf, 1), (png, 0)}
    assert all(max(i["width"], i["height"]) == 300 and not i["changed"] for i in images.values())
    # a source that changed since the run is flagged; one that is gone says so
    moved = [dict(r, doc_id="0" * 32) if r["source_uri"].endswith("receipt.png") else r for r in rows]
    moved.append(dict(rows[2], source_uri=str(docs / "gone.pdf")))
    images = page_images(moved, 10**8, max_side=300)
    assert images[(str(docs / "receipt.png"), 0)]["changed"]
    gone = images[(str(docs / "gone.pdf"), rows[2]["page_index"])]
    assert gone["problem"].startswith("source not readable now: not_found")



# ---- a run with a page that hangs the renderer --------------------------------------------------

PAGE_TIMEOUT_S = 5.0  # the run's render.page_timeout_s: ample for a quick page; the poison page renders for days


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory, demo_model) -> tuple[str, str, str]:
    """A real run (the engine double answers: tests/harness.py) over an invoice and a PDF whose first
    page hangs the renderer; its page table says render_timeout for that page. It names a calibration
    map (CALIBRATION: half the score, review under 0.3), as a job does after `docintel eval`.
    (output, poison, invoice)"""
    import harness

    tmp = tmp_path_factory.mktemp("poisoned")
    docs, out = tmp / "docs", tmp / "out"
    invoice, poison = make_pdf(docs / "invoice.pdf", pages=2), make_hanging_page_pdf(docs / "poison.pdf")
    (tmp / "calibration.json").write_text(json.dumps(CALIBRATION))
    done = harness.run("run", "--input", str(docs), "--output", str(out), "--model", demo_model, "--run-id", "poisoned",
                       "--question", "What is the total?", "--question", "What is the date?", *harness.FAST,
                       "--set", f"render.page_timeout_s={PAGE_TIMEOUT_S}",
                       "--set", f"answers.calibration={tmp / 'calibration.json'}", timeout=600, **harness.double())
    assert done.returncode == 0, done.stderr[-3000:]
    return str(out), str(poison), str(invoice)


CALIBRATION = {"task": "docvqa", "method": "isotonic", "x": [0.0, 1.0], "y": [0.0, 0.5], "threshold": 0.3,
               "target_precision": 0.95}


def test_a_named_calibration_scales_confidence_and_flags_rows_for_review(poisoned, tmp_path):
    """needs_review in the page table, counted in the document table, and the review page's filter."""
    from pipeline.store import output

    out, poison, invoice = poisoned
    rows = output.read_pages(out, "poisoned").to_pylist()
    answered = [r for r in rows if r["valid"]]
    assert answered and all(r["needs_review"] is not None for r in rows)
    for r in answered:  # on the map's scale: at most half of the evidence-weighed score
        assert 0 < r["confidence"] <= 0.5 * r["token_confidence"] + 1e-9
        assert r["needs_review"] == (r["confidence"] < 0.3)
    assert all(r["needs_review"] for r in rows if not r["valid"])  # the hung page: no answer, a look
    flagged = {(r["source_uri"], r["question"]): 0 for r in rows}
    for r in rows:
        flagged[r["source_uri"], r["question"]] += bool(r["needs_review"])
    for d in output.read_documents(out, "poisoned").to_pylist():
        mine = [r for r in rows if r["source_uri"] == d["source_uri"] and r["question"] in (d["question"], None)]
        assert d["needs_review_rows"] == sum(bool(r["needs_review"]) for r in mine), d
    page = tmp_path / "flagged.html"
    done = review(out, page, "--needs-review")
    assert done.returncode == 0, done.stderr
    cards = parse(page.read_text()).cards
    assert len(cards) == sum(bool(r["needs_review"]) for r in rows) > 0
    assert all(c["data-review"] == "1" for c in cards) and 'id="review"' in page.read_text()
    assert page.read_text().count(">needs review</span>") == len(cards)


def test_a_page_that_hung_the_renderer_is_shown_not_rendered_again(poisoned, tmp_path, monkeypatch):
    """Errors come first, so the first page review would render is the one that hung the run's
    renderer: review shows that row with its reason and no picture, renders every other page, and
    renders only through the render guard, so a page that hangs in review too gets its reason."""
    from pipeline.ingest import pages, render_guard

    out, poison, invoice = poisoned
    rows = select_rows(out).rows
    assert (rows[0]["source_uri"], rows[0]["page_index"], rows[0]["error_kind"]) == (poison, 0, "render_timeout")
    path = tmp_path / "review.html"
    done = review(out, path, timeout=120)  # rendered, the poison page alone would outlast this by days
    assert done.returncode == 0, done.stderr
    cards = {(c["data-src"], c["data-page"]): c for c in parse(path.read_text(encoding="utf-8")).cards}
    assert set(cards) == {(poison, "0"), (poison, "1"), (invoice, "0"), (invoice, "1")}
    hung = cards.pop((poison, "0"))
    assert hung["data-kind"] == "render_timeout" and hung["imgs"] == []
    assert "not rendered again: the renderer hung on this page in the run (render_timeout)" in hung["text"]
    assert f"render_timeout: page 0 did not render within render.page_timeout_s={PAGE_TIMEOUT_S}s" in hung["text"]
    assert all(len(c["imgs"]) == 1 and c["imgs"][0].startswith("data:image/jpeg;base64,") for c in cards.values())

    # every page row the renderer gives back, rendered in this process or through the guard's child
    rendered = []

    def spying(render):
        def spy(doc, *args, **kwargs):
            for row in render(doc, *args, **kwargs):
                rendered.append((doc["source_uri"], row["page_index"], row["error_kind"]))
                yield row
        return spy
    monkeypatch.setattr(pages, "iter_pages", spying(pages.iter_pages))
    monkeypatch.setattr(render_guard, "iter_guarded", spying(render_guard.iter_guarded))
    key, others = (poison, 0), [(invoice, 0), (invoice, 1), (poison, 1)]
    for kind, what in (("render_timeout", "hung"), ("render_crash", "died")):
        rendered.clear()
        said = [dict(r, error_kind=kind) if (r["source_uri"], r["page_index"]) == key else r for r in rows]
        images = page_images(said, 10**8, max_side=300)
        assert images[key] == {"problem": f"not rendered again: the renderer {what} on this page in the run ({kind})"}
        assert sorted(rendered, key=repr) == [(*k, None) for k in others]
        assert all("url" in images[k] for k in others)
    # the same page with a row that says nothing of the renderer (a run with a longer limit, say): it
    # hangs in review now, is abandoned with its reason, and the page after it is rendered all the same
    rendered.clear()
    said = [dict(r, error_kind=None, error=None) if (r["source_uri"], r["page_index"]) == key else r for r in rows]
    images = page_images(said, 10**8, max_side=300, page_timeout_s=PAGE_TIMEOUT_S)
    assert images[key]["problem"].startswith("page not rendered: render_timeout: page 0 did not render within "
                                             f"render.page_timeout_s={PAGE_TIMEOUT_S}s")
    assert "url" not in images[key] and all("url" in images[k] for k in others)
    assert sorted(rendered, key=repr) == [(*k, None) for k in others[:2]] + [(poison, 0, "render_timeout"),
                                                                              (poison, 1, None)]

# ---- in a browser ------------------------------------------------------------------------------

def chromium(url: str, tmp: Path, *extra: str, height: int = 2000) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
                           f"--window-size=1400,{height}", *extra, url],
                          check=True, timeout=90, capture_output=True, text=True)


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing "
                                    "(scripts/install_chromium.sh installs it)")


def _near(px, colour, tol=40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(px, colour))


def _region(img: Image.Image, colour, box=None) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1 inclusive) of the pixels of about this colour, inside `box`."""
    x0, y0, x1, y1 = box or (0, 0, *img.size)
    px = img.load()
    hits = [(x, y) for y in range(y0, y1) for x in range(x0, x1) if _near(px[x, y], colour, 30)]
    if not hits:
        return None
    return min(x for x, _ in hits), min(y for _, y in hits), max(x for x, _ in hits), max(y for _, y in hits)


@needs_chromium
def test_screenshot_is_drawn(full, tmp_path):
    shot = tmp_path / "all.png"
    chromium(full[0].resolve().as_uri(), tmp_path, f"--screenshot={shot}")
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
    assert rgb.size == (1400, 2000)
    assert len(rgb.getcolors(maxcolors=1 << 24)) > 500  # page pictures, not a blank or error page
    assert _region(rgb, PINK) and _region(rgb, BLUE)    # answer and value boxes are drawn
    # filtered out is out of sight, not just marked: only the corrupt_pdf card (no picture) is left
    shot = tmp_path / "filtered.png"
    chromium(full[0].resolve().as_uri() + "#kind=corrupt_pdf", tmp_path, f"--screenshot={shot}", height=4000)
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
    legend = _region(rgb, PINK, (0, 0, 1400, 400))  # tall enough for every card, were they shown
    assert _region(rgb, PINK, (0, legend[3] + 20, 1400, 4000)) is None
    assert _region(rgb, BLUE, (0, 400, 1400, 4000)) is None


FRAME_W, PAGE_COLUMN, BORDER = 460, 560, (216, 221, 227)  # review.CSS: .frame width and border; its column


def _border(px, x: int, y: int, dx: int, dy: int) -> int:
    """Walk from (x, y) by (dx, dy) to the frame's border (its grey-blue; page ink is neutral)."""
    for _ in range(1000):
        x, y = x + dx, y + dy
        if _near(px[x, y], BORDER, 3):
            return x if dx else y
    raise AssertionError("no frame border found")


@needs_chromium
def test_boxes_sit_on_the_answer(run, tmp_path):
    """The total's answer box, measured in the screenshot: its outline is where grounding put the
    words (relative to the page frame, 460 px wide), as large as they are, with their ink inside;
    and the script's enlarged view of it is drawn too."""
    out, _, boxes = run
    path = tmp_path / "one.html"
    assert review(out, path, "--where", "answer_text = '1,234.50'").returncode == 0
    shot = tmp_path / "one.png"
    chromium(path.resolve().as_uri(), tmp_path, f"--screenshot={shot}", height=1100)
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
    px, b = rgb.load(), boxes["total"][0]
    page_h = FRAME_W * 792 / 612  # a Letter page's picture, 460 px wide
    # the legend's swatches are in the header (small): the box is the pink region of the page column below it
    legend = _region(rgb, PINK, (0, 0, PAGE_COLUMN, 400))
    found = _region(rgb, PINK, (0, legend[3] + 20, PAGE_COLUMN, 1100))
    assert found, "no answer box on the page"
    # outline: 2 px wide, 1 px outside the box, so the outer edge is 3 px beyond it on every side
    assert abs((found[2] - found[0] + 1) - ((b["x1"] - b["x0"]) * FRAME_W + 6)) <= 3, found
    assert abs((found[3] - found[1] + 1) - ((b["y1"] - b["y0"]) * page_h + 6)) <= 3, found
    mid_x, mid_y = (found[0] + found[2]) // 2, (found[1] + found[3]) // 2
    left, top = _border(px, found[0], mid_y, -1, 0) + 1, _border(px, mid_x, found[1], 0, -1) + 1
    assert abs(found[0] + 3 - (left + b["x0"] * FRAME_W)) <= 3, (found, left)
    assert abs(found[1] + 3 - (top + b["y0"] * page_h)) <= 3, (found, top)
    # the digits' ink inside the outline
    dark = sum(sum(px[x, y]) < 300 for x in range(found[0] + 3, found[2] - 2)
               for y in range(found[1] + 3, found[3] - 2))
    assert dark > 15, dark
    # the enlarged copy beside the page: a larger pink box (up to 2x the picture's pixels)
    zoomed = _region(rgb, PINK, (PAGE_COLUMN, legend[3] + 20, 1400, 1100))
    assert zoomed and zoomed[2] - zoomed[0] > 1.5 * (found[2] - found[0]), zoomed


@needs_chromium
def test_controls_filter_and_sort_in_the_browser(full, tmp_path):
    """The #fragment sets the controls; --dump-dom shows what the script did with the cards."""
    def cards(fragment: str) -> tuple[list[tuple[str, bool]], str]:
        dom = chromium(full[0].resolve().as_uri() + fragment, tmp_path, "--dump-dom").stdout
        return [(c["data-conf"], "hidden" in c) for c in parse(dom).cards], dom

    def shown(cs):
        return [conf for conf, hidden in cs if not hidden]
    cs, dom = cards("")
    assert shown(cs) == ["", "", "0.300000", "0.420000", "0.550000", "0.710000", "0.930000"]
    assert 'id="count">showing 7 of 7<' in dom
    cs, dom = cards("#conf=0.5&nullconf=0")
    assert shown(cs) == ["0.300000", "0.420000"] and 'id="count">showing 2 of 7<' in dom
    assert shown(cards("#kind=corrupt_pdf")[0]) == [""]
    assert shown(cards("#kind=")[0]) == ["0.300000", "0.420000", "0.550000", "0.710000", "0.930000"]
    cs, dom = cards("#grounded=found&sort=conf-desc")
    assert shown(cs) == ["0.930000", "0.550000", "0.420000"]
    assert [c for c, _ in cs][:3] == ["0.930000", "0.710000", "0.550000"]  # sorted, the hidden ones too
    assert 'data-sort="conf-desc" class="on"' in dom
    # the page pictures' enlarged views were filled in from the pictures themselves
    assert dom.count('class="zin"') == 3

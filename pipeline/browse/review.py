"""`docintel review`: one self-contained HTML file in which a reviewer checks a run's answers on their pages.

    docintel review OUTPUT [--run RUN_ID] [--where "confidence < 0.6"] [--limit 200] --out review.html

Rows come from one committed run's page table (default: the latest), filtered by a DuckDB predicate
over its columns and ordered errors first, then least confident first. Each row is a card: the page
re-rendered from the source document (pipeline/browse/review_pictures.py: through the render guard, never
a page the run's renderer hung or died on; a JPEG data URL; the boxes are fractions of the displayed page,
pipeline/answers/grounding.py, so any rendering size fits them) with the answer's boxes drawn over it, and
the question, answer, confidence, grounding, error and source beside it. A little inline JavaScript
sorts and filters the cards (confidence threshold, error kind, grounding) and keeps that state in the
URL's #fragment, so a filtered view can be shared. No server, no external resources; every piece of
text from the data goes through report's escape (html.escape, control characters made visible).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pipeline.browse.review_pictures import DEFAULT_PAGE_TIMEOUT_S, MAX_SIDE, page_images
from pipeline.store import fileio, layout, output
from pipeline.evaluation.charts import esc as _e
from pipeline.core.rows import PAGE_TABLE

DEFAULT_LIMIT = 200
ORDER = ("(error_kind IS NULL), confidence ASC NULLS FIRST, source_uri, page_index NULLS FIRST, "
         "question NULLS FIRST")  # errors first; answers without a confidence are unknowns: before sure ones
GROUNDED = {True: ("found", "found on page"), False: ("notfound", "NOT found on page"),
            None: ("notext", "no text layer")}


class ReviewError(ValueError):
    """A problem with what was asked (no committed run, a bad --where): a usage error."""


@dataclass
class Selection:
    run_id: str
    rows: list[dict[str, Any]]
    matching: int
    total: int
    where: str | None


# ---- rows ------------------------------------------------------------------------------------

def select_rows(out: str, run_id: str | None = None, where: str | None = None,
                limit: int = DEFAULT_LIMIT) -> Selection:
    """The run's page-table rows matching `where` (DuckDB SQL over the page table's columns), in
    review order, at most `limit`. DuckDB scans the run's Parquet files through a pyarrow dataset, so
    local folders and object stores read alike, and it is cut off from files: the predicate can only
    see the page table."""
    try:
        import duckdb
    except ImportError:  # a test/extra dependency in pyproject.toml, not a core one
        raise ReviewError("docintel review needs DuckDB for --where and the ordering: pip install duckdb") from None
    try:
        run_id, dataset = output.run_dataset(out, run_id, "pages", PAGE_TABLE.schema)
    except FileNotFoundError as exc:
        raise ReviewError(f"{exc} (`docintel runs {out}` lists every run)") from None
    if dataset is None:
        return Selection(run_id, [], 0, 0, where)
    con = duckdb.connect()
    con.register("pages", dataset)
    con.execute("SET enable_external_access = false").fetchall()  # after register: the predicate reads no file
    predicate = f"WHERE ({where})" if where and where.strip() else ""
    query = f"SELECT * FROM pages {predicate}"
    try:
        if len(con.extract_statements(query)) != 1:
            raise ReviewError(f"--where {where!r}: one predicate, not several statements")
        matching = con.execute(f"SELECT count(*) FROM ({query})").fetchall()[0][0]
        rel = con.sql(f"{query} ORDER BY {ORDER} LIMIT {int(limit)}")
        table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
        total = con.execute("SELECT count(*) FROM pages").fetchall()[0][0]
    except duckdb.Error as exc:
        columns = f" (columns: {', '.join(PAGE_TABLE.names)})" if isinstance(exc, duckdb.BinderException) else ""
        raise ReviewError(f"--where {where!r}: {str(exc).splitlines()[0]}{columns}") from None
    finally:
        con.close()
    return Selection(run_id, table.to_pylist(), matching, total, where)


# ---- HTML ------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2328;margin:0;
 background:#f4f5f7}main{max-width:1320px;margin:0 auto;padding:12px 24px 40px}h1{font-size:20px;margin:6px 0}
.head,.card{background:#fff;border:1px solid #d8dde3;border-radius:8px;padding:12px 18px;margin:12px 0}
.facts{color:#57606a;font-size:13px}.facts b{color:#1f2328;font-weight:600}
.controls{position:sticky;top:0;z-index:5;background:#fff;border:1px solid #d8dde3;border-radius:8px;
 padding:8px 14px;display:flex;flex-wrap:wrap;gap:8px 18px;align-items:center;box-shadow:0 2px 6px rgba(0,0,0,.06)}
.controls button{font:inherit;border:1px solid #c9ced6;background:#f6f8fa;border-radius:6px;padding:2px 9px;
 cursor:pointer}
.controls button.on{background:#3b6ea8;border-color:#3b6ea8;color:#fff}.controls select{font:inherit}
#count{margin-left:auto;color:#57606a}.card{display:flex;gap:20px;align-items:flex-start}
.page{flex:0 0 460px}.frame{position:relative;width:460px;line-height:0;border:1px solid #d8dde3;background:#fff}
.frame img{width:100%;display:block}
.box{position:absolute;outline:2px solid #e6007e;outline-offset:1px;background:rgba(230,0,126,.10)}
.box.val{outline-color:#0a66ff;background:rgba(10,102,255,.10)}
.box .tag{position:absolute;bottom:100%;left:-3px;margin-bottom:3px;font:11px/1.3 system-ui,sans-serif;
 background:#0a66ff;color:#fff;padding:0 4px;border-radius:3px;white-space:nowrap}
.nopage{width:430px;padding:40px 15px;border:1px dashed #c9ced6;color:#6a737d;line-height:1.4;background:#fafbfc}
.info{flex:1;min-width:0}.q{font-weight:600;font-size:15px;margin-bottom:6px}.q.none{color:#6a737d;font-weight:400}
.a{font-size:17px;background:#f6f8fa;border-radius:6px;padding:6px 10px;margin:4px 0 10px;white-space:pre-wrap;
 overflow-wrap:anywhere}.a.none{color:#6a737d;font-size:14px;font-style:italic}
.badges{display:flex;flex-wrap:wrap;gap:6px;margin-bottom:8px}
.badge{border-radius:10px;padding:1px 9px;font-size:12.5px;
 border:1px solid transparent}.lo{background:#fde7e9;color:#a40e26}.mid{background:#fff4d6;color:#7a5200}
.hi{background:#e3f4e6;color:#1a6b2b}.found{background:#e3f4e6;color:#1a6b2b}.notfound{background:#c62828;color:#fff}
.notext,.na{background:#eef1f4;color:#57606a}.bad{background:#c62828;color:#fff}.warn{background:#fff4d6;color:#7a5200}
.err{border-left:4px solid #c62828;background:#fdf1f2;padding:6px 10px;margin:8px 0;overflow-wrap:anywhere;
 white-space:pre-wrap}
dl{display:grid;grid-template-columns:max-content 1fr;gap:1px 12px;font-size:12.5px;color:#57606a;margin:8px 0}
dd{margin:0;color:#1f2328;overflow-wrap:anywhere}details{font-size:12.5px;margin-top:6px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;padding:6px 8px;border-radius:6px;margin:4px 0}
table{border-collapse:collapse}th,td{border-bottom:1px solid #e3e6ea;padding:2px 8px;text-align:left}
.legend span{display:inline-block;width:12px;height:10px;margin:0 4px 0 10px;vertical-align:-1px}
.empty{color:#6a737d;font-style:italic}
[hidden]{display:none!important}/* else .card{display:flex} beats the hidden attribute */
.zoom{position:relative;overflow:hidden;border:1px solid #d8dde3;border-radius:6px;margin:2px 0 10px;background:#fff}
.zoom .zin{position:absolute;line-height:0}.zoom .zin img{width:100%;display:block}
.zlabel{font-size:12px;color:#57606a}
"""

# Static code: the data it works on is in data- attributes (escaped), never in the script.
JS = """
(function(){
const list=document.getElementById('cards'),cards=Array.from(list.children);
const $=id=>document.getElementById(id);
const conf=$('conf'),confv=$('confv'),nullc=$('nullconf'),kind=$('kind'),gr=$('grounded'),count=$('count'),
 flag=$('review');
let sort='default';
const num=c=>c.dataset.conf===''?null:parseFloat(c.dataset.conf);
const by={default:(a,b)=>a.dataset.i-b.dataset.i,
 'conf-asc':(a,b)=>(num(a)??2)-(num(b)??2)||a.dataset.i-b.dataset.i,
 'conf-desc':(a,b)=>(num(b)??-1)-(num(a)??-1)||a.dataset.i-b.dataset.i,
 source:(a,b)=>a.dataset.src.localeCompare(b.dataset.src)||a.dataset.page-b.dataset.page||a.dataset.i-b.dataset.i};
function apply(save){
 const t=parseFloat(conf.value);confv.textContent=t.toFixed(2);let shown=0;
 cards.sort(by[sort]||by.default).forEach(c=>{
  const v=num(c),ok=(v===null?nullc.checked:v<=t+1e-9)&&(kind.value==='*'||c.dataset.kind===kind.value)
   &&(gr.value==='*'||c.dataset.grounded===gr.value)&&(!flag.checked||c.dataset.review==='1');
  c.hidden=!ok;shown+=ok;list.appendChild(c);});
 document.querySelectorAll('[data-sort]').forEach(b=>b.classList.toggle('on',b.dataset.sort===sort));
 count.textContent='showing '+shown+' of '+cards.length;
 if(save){const h=new URLSearchParams({sort:sort,conf:conf.value,nullconf:nullc.checked?1:0,kind:kind.value,
  grounded:gr.value,review:flag.checked?1:0});
  history.replaceState(null,'','#'+h.toString());}}
const h=new URLSearchParams(location.hash.slice(1));
if(h.has('sort')&&by[h.get('sort')])sort=h.get('sort');if(h.has('conf'))conf.value=h.get('conf');
if(h.has('nullconf'))nullc.checked=h.get('nullconf')!=='0';
if(h.has('kind'))kind.value=h.get('kind');if(h.has('grounded'))gr.value=h.get('grounded');
if(h.has('review'))flag.checked=h.get('review')==='1';
document.querySelectorAll('[data-sort]').forEach(b=>b.addEventListener('click',()=>{sort=b.dataset.sort;apply(true);}));
[conf,nullc,kind,gr,flag].forEach(x=>x.addEventListener('input',()=>apply(true)));
apply(false);
// zoom: the region around a card's boxes, from its own page picture (nothing is stored twice)
function zoom(z){const card=z.closest('.card'),img=card.querySelector('.frame img');if(!img||!img.naturalWidth)return;
 const bs=Array.from(card.querySelectorAll('.frame .box'));if(!bs.length)return;
 const f=k=>bs.map(b=>parseFloat(b.style[k])/100);const l=f('left'),t=f('top'),w=f('width'),h=f('height');
 let x0=Math.min(...l),y0=Math.min(...t),x1=Math.max(...l.map((v,i)=>v+w[i])),y1=Math.max(...t.map((v,i)=>v+h[i]));
 // some context: the label beside a value
 x0=Math.max(0,x0-0.12);x1=Math.min(1,x1+0.12);y0=Math.max(0,y0-0.04);y1=Math.min(1,y1+0.04);
 const W=z.parentElement.clientWidth,nw=img.naturalWidth,nh=img.naturalHeight;
 const s=Math.min(W/((x1-x0)*nw),2,260/((y1-y0)*nh));const iw=nw*s,ih=nh*s;
 const zin=document.createElement('div');zin.className='zin';
 zin.style.cssText='width:'+iw+'px;left:'+(-x0*iw)+'px;top:'+(-y0*ih)+'px';
 const copy=document.createElement('img');copy.src=img.src;copy.alt='';zin.appendChild(copy);
 bs.forEach(b=>zin.appendChild(b.cloneNode(true)));z.replaceChildren(zin);
 z.style.width=Math.min(W,(x1-x0)*iw)+'px';z.style.height=((y1-y0)*ih)+'px';
 z.hidden=false;z.previousElementSibling.hidden=false;}
document.querySelectorAll('.zoom').forEach(z=>{const img=z.closest('.card').querySelector('.frame img');
 if(img.complete)zoom(z);else img.addEventListener('load',()=>zoom(z));});
})();
"""


def _pct(x: float) -> str:
    return f"{100 * min(max(x, 0.0), 1.0):.2f}%"


def _boxes(boxes: list[dict] | None, cls: str, label: str | None) -> str:
    """Boxes as positioned divs: fractions of the displayed page are percentages of the frame."""
    out = []
    for n, b in enumerate(boxes or []):
        tag = f'<span class="tag">{_e(label)}</span>' if label and n == 0 else ""
        style = (f"left:{_pct(b['x0'])};top:{_pct(b['y0'])};width:{_pct(b['x1'] - b['x0'])};"
                 f"height:{_pct(b['y1'] - b['y0'])}")
        out.append(f'<div class="box {cls}" style="{style}" title="{_e(label or "answer")}">{tag}</div>')
    return "".join(out)


def _page(r: dict[str, Any], image: dict[str, Any] | None) -> str:
    if r["page_index"] is None:
        return '<div class="nopage">no page: this row is about the whole document</div>'
    if not image or "url" not in image:
        return f'<div class="nopage">{_e((image or {}).get("problem") or "no picture")}</div>'
    boxes = _boxes(r["answer_boxes"], "ans", None)
    main = [dict(b) for b in r["answer_boxes"] or []]
    for d in r["value_details"] or []:
        if d.get("boxes") and [dict(b) for b in d["boxes"]] != main:  # the main value is drawn already
            boxes += _boxes(d["boxes"], "val", d.get("path"))
    alt = f"page {r['page_index'] + 1} of {r['source_uri']}"
    return f'<div class="frame"><img src="{image["url"]}" alt="{_e(alt)}">{boxes}</div>'


def _answer(r: dict[str, Any]) -> str:
    if r["answer_text"] is not None:
        text = r["answer_text"]
        if r["answer_number"] is not None and r["answer_unit"]:
            text += f"  ({r['answer_number']:g} {r['answer_unit']})"
        return f'<div class="a">{_e(text)}</div>'
    if r["answer_json"] is not None:
        try:
            text = json.dumps(json.loads(r["answer_json"]), indent=1, ensure_ascii=False)
        except ValueError:
            text = r["answer_json"]
        return f'<div class="a">{_e(text)}</div>'
    return '<div class="a none">no answer</div>'


def _num(x: float | None, unit: str = "") -> str:
    return "–" if x is None else f"{x:.2f}{unit}"


def _conf_badge(c: float | None) -> str:
    if c is None:
        return '<span class="badge na">confidence unknown</span>'
    cls = "lo" if c < 0.6 else "mid" if c < 0.85 else "hi"
    return f'<span class="badge {cls}">confidence {c:.2f}</span>'


def _card(i: int, r: dict[str, Any], image: dict[str, Any] | None) -> str:
    answered = r["error_kind"] is None and r["valid"]
    g_key, g_text = GROUNDED[r["grounded"]] if answered else ("na", "")
    badges = [_conf_badge(r["confidence"])]
    if r.get("needs_review"):
        badges.append('<span class="badge warn">needs review</span>')
    if answered:
        badges.append(f'<span class="badge {g_key}">{g_text}</span>')
    else:
        badges.append(f'<span class="badge bad">{_e(r["error_kind"] or "invalid")}</span>')
    if image and image.get("changed"):
        badges.append('<span class="badge warn">file changed since the run: boxes may not fit</span>')
    err = f'<div class="err">{_e(r["error_kind"])}: {_e(r["error"])}</div>' if r["error_kind"] or r["error"] else ""
    page = "whole document" if r["page_index"] is None else \
        f"{r['page_index'] + 1}" + (f" of {r['page_count']}" if r["page_count"] else "")
    facts = [("source", r["source_uri"]), ("page", page), ("task", r["task"]), ("model", r["model_id"]),
             ("engine", f"attempts {r['attempts']}, finish {r['finish_reason'] or '–'}, "
                        f"latency {_num(r['latency_s'], ' s')}")]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    values = ""
    if r["value_details"]:
        rows = "".join(f"<tr><td>{_e(d['path'])}</td><td>{_num(d['confidence'])}</td>"
                       f"<td>{_e(GROUNDED[d['grounded']][1])}</td><td>{len(d['boxes'] or [])}</td></tr>"
                       for d in r["value_details"])
        values = (f"<details><summary>values ({len(r['value_details'])})</summary><table><thead><tr><th>path</th>"
                  f"<th>confidence</th><th>grounding</th><th>boxes</th></tr></thead><tbody>{rows}</tbody></table>"
                  "</details>")
    # an invalid or cut answer: what the model wrote is what the reviewer needs, open
    opened = " open" if r["error_kind"] in ("invalid_output", "output_truncated") else ""
    raw = f"<details{opened}><summary>raw output</summary><pre>{_e(r['raw_output'])}</pre></details>" \
        if r["raw_output"] is not None else ""
    drawn = image and "url" in image and (r["answer_boxes"] or any(d.get("boxes") for d in r["value_details"] or []))
    # filled by the script from the page picture: the boxes' surroundings, enlarged up to 2x
    zoom = '<div class="zlabel" hidden>on the page, enlarged:</div><div class="zoom" hidden></div>' if drawn else ""
    if r["question"]:
        question = f'<div class="q">{_e(r["question"])}</div>'
    else:  # fields and classify ask none; a failed document's row has none either
        what = "the whole document" if r["page_index"] is None else f"task {r['task']}"
        question = f'<div class="q none">no question ({_e(what)})</div>'
    conf = "" if r["confidence"] is None else f"{r['confidence']:.6f}"
    attrs = (f'data-i="{i}" data-conf="{conf}" data-kind="{_e(r["error_kind"] or "")}" data-grounded="{g_key}" '
             f'data-review="{"1" if r.get("needs_review") else "0"}" '
             f'data-src="{_e(r["source_uri"])}" data-page="{-1 if r["page_index"] is None else r["page_index"]}"')
    return (f'<article class="card" id="r{i}" {attrs}><div class="page">{_page(r, image)}</div><div class="info">'
            f'{question}{_answer(r)}<div class="badges">{"".join(badges)}</div>{zoom}{err}<dl>{dl}</dl>{values}{raw}'
            "</div></article>")


def _options(counts: Counter, labels: dict[str, str]) -> str:
    return "".join(f'<option value="{_e(k)}">{_e(labels.get(k, k))} ({n})</option>'
                   for k, n in sorted(counts.items(), key=lambda kv: (kv[0] != "", -kv[1], kv[0])))


def render_review(sel: Selection, images: dict, meta: dict[str, Any]) -> str:
    """The review as HTML text (pure): the selection's rows as cards, `meta` facts in the header."""
    cards = "".join(_card(i, r, images.get((r["source_uri"], r["page_index"]))) for i, r in enumerate(sel.rows))
    kinds = Counter(r["error_kind"] or "" for r in sel.rows)
    grounded = Counter(GROUNDED[r["grounded"]][0] for r in sel.rows if r["error_kind"] is None and r["valid"])
    facts = " · ".join(f"{_e(k)} <b>{_e(v)}</b>" for k, v in meta.items() if v is not None)
    shown = (f"{len(sel.rows):,} of {sel.matching:,} matching rows" + (f" (where {_e(sel.where)})" if sel.where else "")
             + f", of {sel.total:,} in the run; errors first, then least confident first")
    controls = (
        '<div class="controls"><span>sort</span>'
        '<button data-sort="default" class="on">errors, then least confident</button>'
        '<button data-sort="conf-asc">confidence ↑</button><button data-sort="conf-desc">confidence ↓</button>'
        '<button data-sort="source">source, page</button>'
        '<label>confidence ≤ <input type="range" id="conf" min="0" max="1" step="0.01" value="1"> '
        '<output id="confv">1.00</output></label>'
        '<label><input type="checkbox" id="nullconf" checked> rows without confidence</label>'
        '<label><input type="checkbox" id="review"> only rows that need review</label>'
        f'<label>error kind <select id="kind"><option value="*">all</option>{_options(kinds, {"": "no error"})}'
        '</select></label>'
        f'<label>grounding <select id="grounded"><option value="*">all</option>'
        f'{_options(grounded, {k: t for k, t in GROUNDED.values()})}</select></label>'
        f'<span id="count">showing {len(sel.rows)} of {len(sel.rows)}</span></div>')
    legend = ('<p class="facts legend">boxes: <span style="outline:2px solid #e6007e"></span>the answer '
              '<span style="outline:2px solid #0a66ff"></span>each value of an extraction (labelled with its path). '
              '"NOT found on page": the page has a text layer and the answer is not in it.</p>')
    title = f"docintel review: run {sel.run_id}"
    body = cards or '<p class="empty">no rows match</p>'
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body><main><div class="head"><h1>{_e(title)}</h1><p class="facts">{facts}</p>'
            f'<p class="facts">{shown}</p>{legend}</div>{controls}<div id="cards">{body}</div></main>'
            f"<script>{JS}</script></body></html>\n")


def write_review(out: str, path: str, run_id: str | None = None, where: str | None = None,
                 limit: int = DEFAULT_LIMIT, max_side: int = MAX_SIDE) -> Selection:
    """Select, render the pages, write the HTML file (UTF-8) to local `path`; the selection."""
    from pathlib import Path

    sel = select_rows(out, run_id, where, limit)
    job = fileio.read_json(layout.RunPaths(out, sel.run_id).job) or {}
    spec = job.get("spec") or {}
    # pages are re-rendered under the run's own time limit: the one its renderer was given
    images = page_images(sel.rows, (spec.get("input") or {}).get("max_file_bytes") or 512 * 1024 * 1024, max_side,
                         page_timeout_s=(spec.get("render") or {}).get("page_timeout_s") or DEFAULT_PAGE_TIMEOUT_S)
    marker = output.marker(out, sel.run_id) or {}
    from pipeline.browse.runs import _when

    meta = {"output": out, "run": sel.run_id, "task": marker.get("task"), "model": marker.get("model"),
            "committed": _when(marker.get("committed_at")), "generated": _when(layout.now_utc().isoformat())}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_review(sel, images, meta), encoding="utf-8")
    return sel


__all__ = ["ReviewError", "Selection", "select_rows", "page_images", "render_review", "write_review"]

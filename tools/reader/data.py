"""Training examples made exactly as the pipeline asks, and batches of them.

A generated page (pagegen) is rendered by the pipeline's own renderer (pipeline.pages.split_document
at pagegen.RENDER); its requests are built by the pipeline's own task modules and chat layout
(pipeline.tasks get_task / instruction / batched_instruction / batched_schema,
pipeline.prompts.build_messages, no system prompt) and tokenized by mistral_common's
MistralTokenizer.encode_chat_completion, which also resizes and normalises the image: the same
code vLLM runs with tokenizer_mode=mistral. The answer is the task's compact JSON (keys in schema
order, no whitespace, as xgrammar with disable_any_whitespace writes it) + </s>; only answer tokens
carry a loss. Every answer is validated against the schema the engine would enforce.

One batch = pages of one shape (so images stack), each asked 3-6 requests; a block of pages is
rendered once and comes back `reuse` times with other questions (batch_of).
"""
from __future__ import annotations

import json
import random
import re
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tools.reader import curriculum, pagegen, reading

VOCAB_SIZE = 4096  # tokenizer total: 1000 special tokens + the first 3096 tekken ranks (256 bytes first)
NUM_SPECIAL = 1000
IMAGE_CONFIG = {"image_patch_size": 14, "max_image_size": 1540, "spatial_merge_size": 2}
IMG = 10  # [IMG]: its embedding is replaced by the image's features
KINDS = ("docvqa", "docvqa-together", "chartqa", "chartqa-together", "fields", "read", "read-together")  # batch["kind"]


def write_tekken(path: str | Path, vocab_size: int = VOCAB_SIZE) -> Path:
    """mistral_common's tekken.json cut to `vocab_size` (Tekkenizer keeps the first ranks), image section on."""
    from pipeline.engine.model import _tekken_source

    data = json.loads(_tekken_source().read_text())
    assert data["config"]["default_num_special_tokens"] == NUM_SPECIAL
    inner = vocab_size - NUM_SPECIAL
    data["config"] = dict(data["config"], default_vocab_size=vocab_size, num_vocab_tokens=inner)
    data["vocab"] = data["vocab"][:inner]
    data["image"] = dict(IMAGE_CONFIG)
    path = Path(path)
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


class _ImageCache:
    """mistral_common's image encoder, run once per distinct image (the last `size` images are kept):
    the requests of a page, and the batches that reuse the page, share its encoding."""

    def __init__(self, inner, size: int = 64):
        self.inner, self.size, self.cache = inner, size, OrderedDict()

    def __call__(self, chunk):
        url = chunk.get_url() if hasattr(chunk, "get_url") else None
        if url is None:
            return self.inner(chunk)
        if url not in self.cache:
            self.cache[url] = self.inner(chunk)
            while len(self.cache) > self.size:
                self.cache.popitem(last=False)
        return self.cache[url]

    def __getattr__(self, name):
        return getattr(self.inner, name)


@lru_cache(maxsize=4)
def tokenizer(tekken_path: str):
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    tok = MistralTokenizer.from_file(tekken_path)
    instruct = tok.instruct_tokenizer
    instruct.image_encoder = _ImageCache(instruct.image_encoder)
    return tok


@lru_cache(maxsize=1)
def tasks() -> dict[str, Any]:
    from pipeline.core.config import TaskSpec
    from pipeline.tasks import get_task

    return {"docvqa": get_task("docvqa", TaskSpec(name="docvqa")),
            "chartqa": get_task("chartqa", TaskSpec(name="chartqa")),
            "fields": get_task("fields", TaskSpec(name="fields", fields_schema="invoice"))}


def answer_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=64)
def _validator(task_name: str, together: int):
    import jsonschema

    task = tasks()[task_name]
    schema = task.batched_schema(together) if together else task.schema
    return jsonschema.Draft202012Validator(schema), schema


def _check_order(value: Any, schema: dict) -> None:
    if schema.get("type") == "object" and isinstance(value, dict):  # keys in schema order, as xgrammar emits
        order = list(schema["properties"])
        assert list(value) == [k for k in order if k in value], (list(value), order)
        for k, v in value.items():
            sub = schema["properties"][k]
            for item in (v if isinstance(v, list) else [v]):
                _check_order(item, sub.get("items", sub) if isinstance(v, list) else sub)


def requests_for(page: pagegen.Page, rng: random.Random, singles: int = 3) -> list[tuple[str, str, str]]:
    """(task, instruction, answer JSON) of the requests asked of this page: `singles` questions alone,
    several together ({"answers": [...]}, 2-4), and for invoices the invoice fields."""
    return [(task, instruction, answer) for task, _, instruction, answer in _task_requests(page, rng, singles)]


def _task_requests(page: pagegen.Page, rng: random.Random, singles: int = 3) -> list[tuple[str, str, str, str]]:
    t = tasks()
    out = []
    name, pairs = ("chartqa", page.chartqa) if page.kind == "chart" else ("docvqa", page.docvqa)
    answerable = [(q, a) for q, a in pairs if a != pagegen.UNANSWERABLE]
    unanswerable = [(q, a) for q, a in pairs if a == pagegen.UNANSWERABLE]
    picked = rng.sample(answerable, min(singles, len(answerable)))
    if unanswerable and rng.random() < 0.2:
        picked.append(rng.choice(unanswerable))
    out += [(name, name, t[name].instruction(q), a) for q, a in picked]
    if rng.random() < (0.9 if page.kind != "report" else 0.6):
        group = rng.sample(pairs, min(len(pairs), rng.randint(2, 4)))
        out.append((name, f"{name}-together", t[name].batched_instruction([q for q, _ in group]),
                    {"answers": [a for _, a in group]}))
    if page.kind == "chart" and rng.random() < 0.3:
        q, a = page.docvqa[0]
        out.append(("docvqa", "docvqa", t["docvqa"].instruction(q), a))
    if page.fields is not None and rng.random() < 0.7:
        out.append(("fields", "fields", t["fields"].instruction(None), page.fields))
    return _checked(out)


def _line_requests(page: pagegen.Page, rng: random.Random, k: int, together: float) -> list[tuple[str, str, str, str]]:
    """k docvqa questions about the page's lines (curriculum.line_questions), and with probability
    `together` 2-3 of them asked together."""
    t = tasks()["docvqa"]
    pairs = curriculum.line_questions(page.lines, k + 3, rng)
    out = [("docvqa", "read", t.instruction(q), a) for q, a in pairs[:k]]
    if len(pairs) > 1 and rng.random() < together:
        group = rng.sample(pairs, min(len(pairs), rng.randint(2, 3)))
        out.append(("docvqa", "read-together", t.batched_instruction([q for q, _ in group]),
                    {"answers": [a for _, a in group]}))
    return _checked(out)


def stage_requests(stage: str, page: pagegen.Page, rng: random.Random) -> list[tuple[str, str, str, str]]:
    """(task, kind, instruction, answer JSON) of the requests asked of a page in a curriculum stage
    (curriculum.py): lines pages only their lines; real pages their lines and one task request
    first, then the task with a line question now and then."""
    if stage in ("strips", "lines"):
        return _line_requests(page, rng, 3, together=0.5 if stage == "lines" else 0)
    if stage == "pages":
        return _line_requests(page, rng, 3, together=0.3) + _task_requests(page, rng, singles=1)[:2]
    return _task_requests(page, rng) + (_line_requests(page, rng, 1, together=0) if rng.random() < 0.25 else [])


def _checked(out: list[tuple[str, str, str, Any]]) -> list[tuple[str, str, str, str]]:
    """Each answer validated against the schema the engine enforces, keys in its order, as JSON."""
    checked = []
    for task_name, kind, instruction, answer in out:
        validator, schema = _validator(task_name, len(answer["answers"]) if "answers" in answer else 0)
        validator.validate(answer)
        _check_order(answer, schema)
        checked.append((task_name, kind, instruction, answer_json(answer)))
    return checked


def render(page: pagegen.Page) -> bytes:
    """The page image exactly as the pipeline renders it (pipeline.pages.split_document at RENDER)."""
    from pipeline.core.config import RenderSpec
    from pipeline.ingest.pages import split_document

    (row,) = split_document(pagegen.page_row(page), RenderSpec(**pagegen.RENDER))
    assert row["error_kind"] is None, row["error"]
    return row["image"]


def encode(tok, image_png: bytes, instruction: str, answer: str | None) -> tuple[list[int], int, np.ndarray]:
    """(prompt + answer + </s> tokens, prompt length, processed image (C, H, W) float32)."""
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    from pipeline.tasks.prompts import build_messages

    messages = build_messages(image_png, instruction, None)
    encoded = tok.encode_chat_completion(ChatCompletionRequest.from_openai(messages))
    prompt = list(encoded.tokens)
    inner = tok.instruct_tokenizer.tokenizer
    tail = [] if answer is None else inner.encode(answer, bos=False, eos=False) + [inner.eos_id]
    (image,) = encoded.images
    return prompt + tail, len(prompt), image


VALUE_WEIGHT = 4.0  # an answer token that is part of a value read off the page, against 1 for keys and syntax
_JSON_ATOM = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*')


def value_weights(inner, answer_tokens: list[int], answer: str) -> list[float]:
    """One loss weight per answer token (</s> included): VALUE_WEIGHT where the token's text lies
    inside a JSON value (a string or number after a key, or a string in a list), else 1. Only about
    a quarter of answer tokens are values; the rest (keys, quotes, braces) need no page to predict,
    and a plain mean lets the model get far on them while blind."""
    spans = []
    for m in _JSON_ATOM.finditer(answer):
        if m.group().startswith('"'):
            if answer[m.end():m.end() + 1] == ":":  # a key
                continue
            spans.append((m.start() + 1, m.end() - 1))
        else:
            spans.append(m.span())
    out, at = [], 0
    data_bytes = answer.encode()
    for token in answer_tokens:
        try:
            n = len(inner.id_to_byte_piece(token))
        except Exception:  # noqa: BLE001 - a special token (</s>) has no bytes
            n = 0
        start = len(data_bytes[:at].decode(errors="ignore"))
        end = len(data_bytes[:at + n].decode(errors="ignore"))
        at += n
        inside = n and any(a < end and start < b for a, b in spans)
        out.append(VALUE_WEIGHT if inside else 1.0)
    return out


def batch_of(position: int, width: int, reuse: int) -> tuple[int, int]:
    """Stream position -> (page block, repeat). Each block of pages comes back `reuse` times, with other
    questions, `width` positions apart: a DataLoader of `width` workers renders each page once."""
    rounds, k = divmod(position, width)
    return (rounds // reuse) * width + k, rounds % reuse


STRIPS_PER_PAGE = 4  # a one-line strip has 80 cells, a page 300: a batch holds 4 strips per page it would hold
_PAGES: dict[tuple, list] = {}  # this process's last page block: (seed, block) -> [(page, png)]


def make_batch(seed: int, position: int, pages: int, tekken_path: str, width: int = 1, reuse: int = 1,
               pad_id: int = 11, plan: curriculum.Curriculum = curriculum.Curriculum(),
               stage: str | None = None) -> dict[str, torch.Tensor]:
    """Batch `position` of the stream `seed`: the same inputs whatever process makes it. The
    curriculum `plan` picks the stage of each page block; `stage` forces one (held-out batches)."""
    tok = tokenizer(tekken_path)
    block, repeat = batch_of(position, width, reuse)
    stage = stage or plan.stage(block)
    pages *= STRIPS_PER_PAGE if stage == "strips" else 1
    key = (seed, block, pages, stage)
    if key not in _PAGES:
        rng = random.Random(f"docintel-reader-pages-{seed}-{block}")
        shape = "strip" if stage == "strips" else rng.choice(list(pagegen.SHAPES))
        make = curriculum.make_lines_page if stage in ("strips", "lines") else pagegen.make_page
        made = [make(rng.getrandbits(48), shape=shape) for _ in range(pages)]
        _PAGES.clear()
        _PAGES[key] = [(page, render(page)) for page in made]
    rng = random.Random(f"docintel-reader-questions-{seed}-{block}-{repeat}")
    images, seqs, seq_image, kinds, cells = None, [], [], [], []
    inner = tok.instruct_tokenizer.tokenizer
    for j, (page, png) in enumerate(_PAGES[key]):
        for _, kind, instruction, answer in stage_requests(stage, page, rng):
            tokens, n_prompt, image = encode(tok, png, instruction, answer)
            seqs.append((tokens, n_prompt, value_weights(inner, tokens[n_prompt:], answer)))
            seq_image.append(j)
            kinds.append(KINDS.index(kind))
        if images is None:  # bf16: what the engine feeds a bf16 model
            images = torch.empty((pages, *image.shape), dtype=torch.bfloat16)
        images[j].copy_(torch.from_numpy(image))
        # the characters' pixels are the page's points: pagegen's sizes are multiples of 28 px, so
        # mistral_common does not resize them
        assert (image.shape[2], image.shape[1]) == pagegen.size_of(page.shape), "the page image was resized"
        cells.append(reading.cell_targets(page.chars, image.shape[2], image.shape[1]))
    length = -(-max(len(t) for t, _, _ in seqs) // 64) * 64
    tokens = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), length), -100, dtype=torch.long)
    weights = torch.zeros((len(seqs), length), dtype=torch.float32)
    n_image = (images.shape[2] // 28) * (images.shape[3] // 28)
    for i, (t, n_prompt, w) in enumerate(seqs):
        tokens[i, : len(t)] = torch.tensor(t)
        labels[i, n_prompt - 1: len(t) - 1] = torch.tensor(t[n_prompt:])
        weights[i, n_prompt - 1: len(t) - 1] = torch.tensor(w)
        assert t.count(IMG) == n_image, "each sequence needs exactly its image's [IMG] tokens"
    label_index = (labels.view(-1) != -100).nonzero().squeeze(1)
    return {"images": images, "tokens": tokens, "labels": labels, "label_index": label_index,
            "targets": labels.view(-1)[label_index], "weights": weights.view(-1)[label_index],
            "cells": torch.tensor(np.stack(cells)), "seq_image": torch.tensor(seq_image),
            "kind": torch.tensor(kinds), "real_tokens": torch.tensor(sum(len(t) for t, _, _ in seqs))}


class BatchStream(torch.utils.data.IterableDataset):
    """Positions start, start+1, ... of one seed's stream; DataLoader worker k of n makes those with
    (position - start) % n == k, and the DataLoader hands them back in order. What a position holds
    depends on (seed, width, reuse, plan) only; with n == width each worker renders its pages once."""

    def __init__(self, seed: int, start: int, pages: int, tekken_path: str, width: int, reuse: int,
                 plan: curriculum.Curriculum = curriculum.Curriculum()):
        self.seed, self.start, self.pages, self.tekken_path = seed, start, pages, tekken_path
        self.width, self.reuse, self.plan = width, reuse, plan

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        k, n = (info.id, info.num_workers) if info else (0, 1)
        torch.set_num_threads(1)
        position = self.start + k
        while True:
            yield make_batch(self.seed, position, self.pages, self.tekken_path, self.width, self.reuse, plan=self.plan)
            position += n

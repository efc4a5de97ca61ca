"""The tiny reader's CPU gates: does a training setup teach the model to read, before GPU time is spent?

A toy task at the real architecture's TINY size (tools/train_tiny_reader.py): a small page drawn with
PyMuPDF's fonts, the sequence laid out as vLLM lays out a Pixtral request ([IMG] rows with
[IMG_BREAK], [IMG_END], then the question, [/INST], the answer, </s>; characters as tekken's byte
tokens), loss on the answer and, optionally, the per-cell reading loss (reading.py).

The measure is the shuffled-image gap: the held-out answer loss with each sequence given another
sequence's image, minus the loss with its own. A model that reads has a large gap; a blind model,
which only learned what answers look like, has none. `exact` is the share of held-out answers whose
every token is the model's first choice.

  python3 -m tools.reader.gates p0 --out /tmp/p0.png     # the reading targets drawn over a real page
  python3 -m tools.reader.gates p1                       # one digit: gap > 1 nat, exact >= 0.4 in 600 steps
  python3 -m tools.reader.gates p2                       # three digits beside a distracting label: gap > 0.5
                                                         # (1,200 steps)
  python3 -m tools.reader.gates p1 --init 0.02 --no-reading   # the old setup, for comparison

Each prints one JSON line per evaluation and a verdict; exit code 0 when the gate passes.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.reader import reading  # noqa: E402
from tools.reader.data import VALUE_WEIGHT  # noqa: E402
from tools.reader.model import TINY, TinyReader  # noqa: E402

BOS, EOS, INST, END_INST, IMG, IMG_BREAK, IMG_END = 1, 2, 3, 4, 10, 12, 13
BYTE0 = 1000  # tekken: the 256 byte tokens come first after the 1,000 special tokens
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)[:, None, None]  # mistral_common's
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)[:, None, None]
SIDE = 112  # px: 4 x 4 merged cells
FONTS = ["helv", "hebo", "tiro", "cour"]
GATES = {"p1": {"gap": 1.0, "exact": 0.4}, "p2": {"gap": 0.5, "exact": None}}


def _text_tokens(s: str) -> list[int]:
    return [BYTE0 + b for b in s.encode()]


def image_tokens(width: int, height: int, cell: int = reading.CELL) -> list[int]:
    rows, cols = height // cell, width // cell
    out = []
    for r in range(rows):
        out += [IMG] * cols + [IMG_END if r == rows - 1 else IMG_BREAK]
    return out


def _render(texts: list[tuple[float, float, str, str, float]]) -> tuple[np.ndarray, list]:
    """(H, W, 3) uint8 of a SIDE x SIDE page with these texts (x, baseline, string, font, size), and
    every character's centre."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=SIDE, height=SIDE)
    chars = []
    for x, y, s, font, size in texts:
        page.insert_text((x, y), s, fontname=font, fontsize=size)
        chars += reading.text_chars(x, y, s, font, size)
    pix = page.get_pixmap(dpi=72)
    image = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width, pix.n)[:, :, :3].copy()
    return image, chars


def example(rng: random.Random, gate: str) -> tuple[np.ndarray, list, str, str]:
    """(image, characters, question, answer) of one toy page."""
    import pymupdf

    font = rng.choice(FONTS)
    if gate == "p1":  # one digit, anywhere, about a patch to a cell high
        size = rng.uniform(20, 28)
        digit = str(rng.randrange(10))
        w = pymupdf.get_text_length(digit, fontname=font, fontsize=size)
        x, y = rng.uniform(2, SIDE - w - 2), rng.uniform(size * 0.8, SIDE - 4)
        image, chars = _render([(x, y, digit, font, size)])
        return image, chars, "Digit?", digit
    # p2: "No 123" and a distracting "Ref 456" on two lines, in either order; the question asks for No
    size = rng.uniform(18, 22)
    values = [f"{rng.randrange(1000):03d}", f"{rng.randrange(1000):03d}"]
    labels = ["No", "Ref"]
    if rng.random() < 0.5:
        labels, values = labels[::-1], values[::-1]
    texts, y = [], rng.uniform(size, SIDE / 2 - 4)
    for label, value in zip(labels, values):
        s = f"{label} {value}"
        w = pymupdf.get_text_length(s, fontname=font, fontsize=size)
        texts.append((rng.uniform(2, SIDE - w - 2), y, s, font, size))
        y += rng.uniform(size * 1.4, SIDE / 2)
        y = min(y, SIDE - 4)
    image, chars = _render(texts)
    return image, chars, "No?", values[labels.index("No")]


def batch(seed: int, index: int, size: int, gate: str) -> dict[str, torch.Tensor]:
    rng = random.Random(seed * 1_000_003 + index)
    images, cells, seqs, labels, answers = [], [], [], [], []
    for _ in range(size):
        image, chars, question, answer = example(rng, gate)
        images.append((image.transpose(2, 0, 1).astype(np.float32) / 255.0 - MEAN) / STD)
        cells.append(reading.cell_targets(chars, SIDE, SIDE))
        prompt = [BOS, INST] + image_tokens(SIDE, SIDE) + _text_tokens(question) + [END_INST]
        target = _text_tokens(answer) + [EOS]
        seqs.append(prompt + target)
        labels.append((len(prompt) - 1, target))
        answers.append(answer)
    width = max(len(s) for s in seqs)
    tokens = torch.zeros(size, width, dtype=torch.long)
    index_list, target_list, weights, owner = [], [], [], []
    for i, (s, (start, target)) in enumerate(zip(seqs, labels)):
        tokens[i, : len(s)] = torch.tensor(s)
        for j, t in enumerate(target):
            index_list.append(i * width + start + j)
            target_list.append(t)
            weights.append(1.0 if t == EOS else VALUE_WEIGHT)  # as data.value_weights: values weigh more
            owner.append(i)
    return {"tokens": tokens, "images": torch.tensor(np.stack(images)), "cells": torch.tensor(np.stack(cells)),
            "label_index": torch.tensor(index_list), "targets": torch.tensor(target_list),
            "weights": torch.tensor(weights),
            "owner": torch.tensor(owner)}


@torch.no_grad()
def evaluate(model: TinyReader, held_out: list[dict]) -> dict[str, float]:
    """Held-out answer loss with the right images and with images shuffled across sequences; exact."""
    model.eval()
    right = shuffled = 0.0
    exact = n = 0
    for b in held_out:
        s = b["tokens"].shape[0]
        own = torch.arange(s)
        for name, seq_image in (("right", own), ("shuffled", (own + 1) % s)):
            h = model.hidden_states(b["tokens"], b["images"], seq_image)
            h = h.reshape(-1, h.shape[-1]).index_select(0, b["label_index"])
            logits = model.output(model.norm(h)).float()
            loss = torch.nn.functional.cross_entropy(logits, b["targets"]).item()
            if name == "right":
                right += loss
                ok = (logits.argmax(-1) == b["targets"]).float()
                per_seq = torch.zeros(s).index_add_(0, b["owner"], 1 - ok)
                exact += int((per_seq == 0).sum())
                n += s
            else:
                shuffled += loss
    model.train()
    k = len(held_out)
    return {"loss": round(right / k, 4), "loss_shuffled": round(shuffled / k, 4),
            "gap": round((shuffled - right) / k, 4), "exact": round(exact / n, 4)}


def train(gate: str, steps: int, seed: int, init: float | None, reading_weight: float, batch_size: int = 64,
          lr: float = 3e-3, warmup: int = 30, eval_every: int = 100) -> dict:
    torch.manual_seed(seed)
    model = TinyReader(TINY)
    if init is not None:
        model.reset_parameters(std=init)
    head = reading.ReadingHead(TINY.dim)
    params = list(model.named_parameters()) + [(f"head.{n}", p) for n, p in head.named_parameters()]
    # one learning rate for every part (the vision tower is random: it learns slowest, not fastest);
    # weight decay on matrices only
    opt = torch.optim.AdamW([{"params": [p for n, p in params if p.dim() >= 2 and "tok_embeddings" not in n],
                              "weight_decay": 0.05},
                             {"params": [p for n, p in params if not (p.dim() >= 2 and "tok_embeddings" not in n)],
                              "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    held_out = [batch(seed + 7_777, i, 64, gate) for i in range(4)]
    history, began = [], time.monotonic()
    for step in range(1, steps + 1):
        rate = lr * min(1.0, step / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for group in opt.param_groups:
            group["lr"] = rate
        b = batch(seed, step, batch_size, gate)
        features = model.image_features(b["images"])
        loss, _ = model.loss(b["tokens"], b["images"], torch.arange(batch_size), b["label_index"], b["targets"],
                             b["weights"], features)
        total = loss
        if reading_weight:
            read, _ = reading.reading_loss(head, features, b["cells"])
            total = loss + reading_weight * read
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
        if step % eval_every == 0 or step == steps:
            with torch.no_grad():
                read_acc = reading.reading_loss(head, model.image_features(held_out[0]["images"]),
                                                held_out[0]["cells"])[1].item()
            row = {"step": step, "train_loss": round(loss.item(), 4), **evaluate(model, held_out),
                   "cell_char_accuracy": round(read_acc, 4), "seconds": round(time.monotonic() - began, 1)}
            history.append(row)
            print(json.dumps(row), flush=True)
    return {"gate": gate, "steps": steps, "seed": seed, "init": "fan-in" if init is None else init,
            "reading_weight": reading_weight, "batch": batch_size, "lr": lr, "history": history}


def draw_p0(out: Path, seed: int) -> Path:
    """The reading targets of a real generated page, drawn over it."""
    import io

    from PIL import Image

    from tools.reader import data, pagegen

    page = pagegen.make_page(seed, "invoice")
    image = np.asarray(Image.open(io.BytesIO(data.render(page))).convert("RGB"))
    chars = page.chars  # 1 pt = 1 px at pagegen.RENDER, and mistral_common leaves these sizes alone
    targets = reading.cell_targets(chars, image.shape[1], image.shape[0])
    reading.draw_targets(image, targets, image.shape[1]).save(out)
    filled = int((targets[:, 0] != reading.NONE).sum())
    print(json.dumps({"page": f"invoice seed {seed}", "size": list(image.shape[:2]), "cells": len(targets),
                      "cells_with_text": filled, "characters": sum(1 for c in chars if not c[0].isspace()),
                      "out": str(out)}))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("gate", choices=["p0", "p1", "p2"])
    p.add_argument("--steps", type=int, default=None, help="default: 600 (p1), 1200 (p2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=float, default=None, help="one std for every matrix (default: fan-in)")
    p.add_argument("--no-reading", action="store_true", help="answer loss only")
    p.add_argument("--reading-weight", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", help="p0: the PNG; p1/p2: the result JSON")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if a.gate == "p0":
        draw_p0(Path(a.out or "/tmp/reading-targets.png"), a.seed)
        return 0
    result = train(a.gate, a.steps or {"p1": 600, "p2": 1200}[a.gate], a.seed, a.init, 0.0 if a.no_reading else a.reading_weight,
                   batch_size=a.batch, lr=a.lr)
    last, need = result["history"][-1], GATES[a.gate]
    passed = last["gap"] > need["gap"] and (need["exact"] is None or last["exact"] >= need["exact"])
    result.update(passed=passed, needs=need)
    print(json.dumps({"gate": a.gate, "passed": passed, "needs": need, "last": last}))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

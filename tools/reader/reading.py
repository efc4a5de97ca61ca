"""The per-cell reading loss: a training-only head that makes each merged image cell (28 x 28 px, the
token the decoder sees) name the characters drawn in it, left to right.

Why: an answer loss alone gives the vision tower a weak, late signal. Only about a quarter of the
answer tokens are values read off the page (the rest are JSON keys and copies), and a random
encoder hands the decoder nothing it can use yet, so the decoder learns the language prior and the
vision path is never asked to carry text. A loss on every cell asks every cell to carry what is
written in it from the first step (the part CTC plays in joint CTC-attention training,
arXiv 1609.06773). The head sits on the adapter's output, the very vectors that replace the [IMG]
tokens, and is not part of the exported model: vLLM loads the same architecture as before.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.,:;-/$%#()&'+@*!?"
NONE, OTHER = 0, len(CHARS) + 1  # no (more) character in this slot; a character not in CHARS
VOCAB = len(CHARS) + 2
SLOTS = 4  # characters a cell names at most (a 28 px cell holds 1-3 characters of 14-28 px text)
CELL = 28  # px: Pixtral's 14 px patch, merged 2 x 2
_INDEX = {c: i + 1 for i, c in enumerate(CHARS)}


def cell_targets(chars: list[tuple[str, float, float]], width: int, height: int, cell: int = CELL,
                 slots: int = SLOTS) -> np.ndarray:
    """(rows * cols, slots) int64, row-major like the [IMG] tokens: the characters whose centres fall
    in each cell, in reading order, then NONE. `chars`: (character, x centre, y centre) in the
    pixels of the image the model sees; spaces are not characters here."""
    rows, cols = -(-height // cell), -(-width // cell)
    out = np.full((rows * cols, slots), NONE, dtype=np.int64)
    cells: dict[int, list[tuple[float, float, str]]] = {}
    for ch, x, y in chars:
        if ch.isspace() or not (0 <= x < width and 0 <= y < height):
            continue
        cells.setdefault(int(y // cell) * cols + int(x // cell), []).append((y // 4, x, ch))
    for index, found in cells.items():
        for slot, (_, _, ch) in enumerate(sorted(found)[:slots]):
            out[index, slot] = _INDEX.get(ch, OTHER)
    return out


def text_chars(x: float, baseline: float, s: str, font: str, size: float, scale: float = 1.0) -> list[tuple[str, float, float]]:
    """(character, x centre, y centre) of text drawn with PyMuPDF's insert_text at (x, baseline),
    in pixels at `scale` pixels per point (the centre line sits at about a third of the em above
    the baseline, where digits and capitals are)."""
    import pymupdf

    out, at = [], x
    for ch in s:
        w = pymupdf.get_text_length(ch, fontname=font, fontsize=size)
        out.append((ch, (at + w / 2) * scale, (baseline - 0.35 * size) * scale))
        at += w
    return out


class ReadingHead(nn.Module):
    """features (B, cells, dim) -> logits (B, cells, SLOTS, VOCAB)."""

    def __init__(self, dim: int, slots: int = SLOTS):
        super().__init__()
        self.slots = slots
        self.proj = nn.Linear(dim, slots * VOCAB)
        nn.init.normal_(self.proj.weight, 0.0, dim ** -0.5)
        nn.init.zeros_(self.proj.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, n, _ = features.shape
        return self.proj(features.float()).view(b, n, self.slots, VOCAB)


def reading_loss(head: ReadingHead, features: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, accuracy over the slots that hold a character). targets (B, cells, SLOTS).
    The slots that hold a character and the empty ones weigh half each: most of a page is blank,
    and a plain mean would teach the head little more than "nothing here"."""
    logits = head(features).reshape(-1, VOCAB)
    flat = targets.reshape(-1)
    each = F.cross_entropy(logits, flat, reduction="none")
    filled = flat != NONE
    n_filled, n_empty = filled.sum().clamp(min=1), (~filled).sum().clamp(min=1)
    loss = 0.5 * (each * filled).sum() / n_filled + 0.5 * (each * ~filled).sum() / n_empty
    accuracy = ((logits.argmax(-1) == flat) & filled).sum() / n_filled
    return loss, accuracy


def draw_targets(image: np.ndarray, targets: np.ndarray, width: int, cell: int = CELL):
    """An RGB PIL image of `image` (H, W, 3 uint8) with the cell grid and each cell's target
    characters printed in it: to look at (gate P0)."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(image).convert("RGB").resize((image.shape[1] * 2, image.shape[0] * 2), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    cols = -(-width // cell)
    for index, slots in enumerate(targets):
        r, c = divmod(index, cols)
        x0, y0 = c * cell * 2, r * cell * 2
        draw.rectangle([x0, y0, x0 + cell * 2, y0 + cell * 2], outline=(200, 200, 255))
        text = "".join(CHARS[t - 1] if 0 < t < OTHER else ("?" if t == OTHER else "") for t in slots)
        if text:
            draw.text((x0 + 2, y0 + cell * 2 - 12), text, fill=(220, 0, 0))
    return img

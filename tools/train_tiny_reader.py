"""Train the tiny reader (tools/reader): Mistral Small 3.2's architecture at ~12M parameters, on pages
generated on the fly, from a fixed seed; export the model folder vLLM loads.

Data: DataLoader workers make whole batches (tools/reader/data.py: pages of one shape, rendered by
the pipeline's renderer, asked 3-6 requests each, tokenized by mistral_common exactly as vLLM
tokenizes the pipeline's requests; each block of pages serves `--reuse` batches with other
questions). Position k of a seed's stream is the same whatever process makes it, so a resumed run
continues the same stream. Loss on answer tokens, value tokens (read off the page) weighted up
(data.value_weights), plus the per-cell reading loss on the image (tools/reader/reading.py, a head
that is not exported). Every `--gap-every` steps the held-out shuffled-image gap is logged (the
answer loss with another page's image minus with its own, over all answer tokens and over the value
tokens); a run whose value gap has never reached `--abort-gap` nats after `--abort-after-s` seconds
stops: it is blind, and GPU time is not spent on it. The data follow a curriculum
(tools/reader/curriculum.py, `--curriculum`): one-line strips, pages of large lines, whole pages'
lines, then the task.

Schedule: linear warm-up, then cosine to 10 % of the peak over `--steps N` steps, or by default over
`--schedule-s` seconds of training summed over all calls (a time budget cannot be missed, whatever
speed the machine gives; the data stream stays fixed by the seed, the step count is logged). Each
call stops at `--time-budget-s` (checkpoint first), `--resume` goes on from the checkpoint.

  python3 tools/train_tiny_reader.py --device cpu --tiny-debug --time-budget-s 60 --export /tmp/tr
  python3 tools/train_tiny_reader.py --device cuda --schedule-s 920 --time-budget-s 480 --ckpt /tmp/reader-ckpt
  python3 tools/train_tiny_reader.py --device cuda --schedule-s 920 --time-budget-s 440 --ckpt /tmp/reader-ckpt \
      --resume --export $OUT/tiny-reader
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.reader import curriculum, data, export, reading  # noqa: E402
from tools.reader.model import TINY, ModelArgs, TinyReader  # noqa: E402
HELD_OUT_SEED_OFFSET = 1_000_003  # held-out batches: another stream of the same generator


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--tiny-debug", action="store_true", help="tiny sizes for a CPU smoke run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pages", type=int, default=None, help="pages per batch (default 24 on cuda, 2 on cpu)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers (default: cores - 2 on cuda, cores - 1 on cpu)")
    p.add_argument("--reuse", type=int, default=2, help="batches each rendered page block serves (other questions)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1.5e-3; tiny: 3e-3)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 300; tiny: 5)")
    p.add_argument("--steps", type=int, default=0, help="schedule length in steps; 0: in seconds (--schedule-s)")
    p.add_argument("--schedule-s", type=float, default=750.0, help="training seconds over all calls (--steps 0)")
    p.add_argument("--time-budget-s", type=float, default=540.0, help="this call's training time")
    p.add_argument("--ckpt", default="/tmp/reader-ckpt", help="checkpoint folder")
    p.add_argument("--ckpt-every-s", type=float, default=180.0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--export", help="write the model folder here at the end")
    p.add_argument("--log", help="also append the log lines to this file")
    p.add_argument("--metrics", help="write the final metrics JSON here")
    p.add_argument("--held-out", type=int, default=None, help="held-out batches (default 6 cuda, 1 cpu)")
    p.add_argument("--log-every", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (off: not needed at this size)")
    p.add_argument("--reading-weight", type=float, default=1.0,
                   help="weight of the per-cell reading loss (tools/reader/reading.py; 0: answer loss only)")
    p.add_argument("--gap-every", type=int, default=None, help="steps between shuffled-image gap checks (200; tiny: 10)")
    # 0.3 after 300 s: on the CPU (TINY sizes, one-line strips) a model that reads had a value gap of
    # 0.05 at step 400 and 0.62 at step 1,500; a blind one stays at 0.000 (tools/reader/README.md)
    p.add_argument("--abort-gap", type=float, default=0.3,
                   help="stop the run when the held-out shuffled-image gap on value tokens is below this many nats ...")
    p.add_argument("--abort-after-s", type=float, default=300.0, help="... after this many seconds of training")
    p.add_argument("--curriculum", default="4000,2000,3000",
                   help="training steps reading one-line strips, then pages of large lines, then whole pages, "
                        "before the task alone (tools/reader/curriculum.py); 0,0,0: the task from the first step")
    a = p.parse_args(argv)
    a.lr = a.lr or (3e-3 if a.tiny_debug else 1.5e-3)
    a.warmup = a.warmup if a.warmup is not None else (5 if a.tiny_debug else 300)
    a.gap_every = a.gap_every or (10 if a.tiny_debug else 200)
    return a


class Log:
    def __init__(self, path):
        self.path = path

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        if self.path:
            with open(self.path, "a") as f:
                f.write(line + "\n")


def lr_at(step: int, progress: float, peak: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, cosine to 10 % as `progress` goes 0 -> 1."""
    cosine = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    return peak * min(1.0, (step + 1) / warmup) * cosine


def to_device(batch: dict, device: str) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: TinyReader, batches: list[dict], device: str, tok) -> dict:
    """Teacher-forced on held-out pages: token accuracy, and per kind the share of answers whose every
    token is the argmax (= greedy decoding reproduces the gold answer exactly, grammar aside)."""
    model.eval()
    tokens_ok = tokens_all = 0
    per_kind: dict[str, list[int]] = {k: [0, 0] for k in data.KINDS}
    sample = None
    for batch in batches:
        b = to_device(batch, device)
        keep = b["labels"] != -100
        with torch.autocast("cuda", torch.bfloat16, enabled=device == "cuda"):
            h = model.hidden_states(b["tokens"], b["images"], b["seq_image"])[keep]
            pred = model.output(model.norm(h)).float().argmax(-1)
        gold = b["labels"][keep]
        hit = (pred == gold).long()
        seq = keep.nonzero()[:, 0]
        wrong = torch.zeros(len(keep), dtype=torch.long, device=hit.device).index_add_(0, seq, 1 - hit)
        tokens_ok += int(hit.sum())
        tokens_all += len(hit)
        for kind, bad in zip(b["kind"].cpu().tolist(), wrong.cpu().tolist()):
            per_kind[data.KINDS[kind]][0] += int(bad == 0)
            per_kind[data.KINDS[kind]][1] += 1
        if sample is None:
            inner = tok.instruct_tokenizer.tokenizer
            first = seq == 0
            sample = {"gold": inner.decode(gold[first].tolist()), "argmax": inner.decode(pred[first].tolist())}
    model.train()
    return {"token_acc": tokens_ok / max(1, tokens_all),
            "exact": {k: round(ok / n, 4) for k, (ok, n) in per_kind.items() if n},
            "exact_n": {k: n for k, (_, n) in per_kind.items() if n}, "sample": sample}


@torch.no_grad()
def shuffled_gap(model: TinyReader, batches: list[dict], device: str) -> dict:
    """Held-out answer loss with each sequence's own image and with the next page's image: a model
    that reads loses much more without its page (the gap, in nats); a blind one loses nothing.
    `gap` is over every answer token; `value_gap` over the tokens of values read off the page
    (data.value_weights), where a reading model's gap shows undiluted by JSON keys and syntax,
    which need no page (a one-line answer is about a quarter values)."""
    model.eval()
    sums = {"right": [0.0, 0.0], "shuffled": [0.0, 0.0]}  # [all tokens, value tokens]
    for batch in batches:
        b = to_device(batch, device)
        n_images = b["images"].shape[0]
        values = (b["weights"] > 1).float()
        for name, seq_image in (("right", b["seq_image"]), ("shuffled", (b["seq_image"] + 1) % n_images)):
            with torch.autocast("cuda", torch.bfloat16, enabled=device == "cuda"):
                each, _ = model.token_losses(b["tokens"], b["images"], seq_image, b["label_index"], b["targets"])
            sums[name][0] += each.mean().item()
            sums[name][1] += ((each * values).sum() / values.sum()).item()
    model.train()
    k = max(1, len(batches))
    (right, right_v), (shuffled, shuffled_v) = sums["right"], sums["shuffled"]
    return {"loss": round(right / k, 4), "loss_shuffled": round(shuffled / k, 4), "gap": round((shuffled - right) / k, 4),
            "value_loss": round(right_v / k, 4), "value_gap": round((shuffled_v - right_v) / k, 4)}


def save_ckpt(folder: Path, model, head, opt, state: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "ckpt.pt.tmp"
    torch.save({"model": model.state_dict(), "reading_head": head.state_dict(), "opt": opt.state_dict(),
                "state": state, "args": model.args.params_json()}, tmp)
    os.replace(tmp, folder / "ckpt.pt")


def main(argv=None) -> dict:
    a = parse_args(argv)
    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no GPU is visible")
    log = Log(a.log)
    pages = a.pages or (24 if cuda else 2)
    workers = a.workers if a.workers is not None else max(1, (os.cpu_count() or 2) - (2 if cuda else 1))
    torch.manual_seed(a.seed)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ckpt_dir = Path(a.ckpt)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tekken = str(data.write_tekken(ckpt_dir / "tekken.json", (TINY if a.tiny_debug else ModelArgs()).vocab_size))
    tok = data.tokenizer(tekken)

    plan = curriculum.Curriculum.from_steps([int(x) for x in a.curriculum.split(",")], a.reuse)
    state = {"step": 0, "batch": 0, "sequences": 0, "page_visits": 0, "train_s": 0.0, "steps": a.steps or None,
             "seed": a.seed, "calls": 0, "width": workers, "reuse": a.reuse,
             "curriculum": [plan.strips, plan.lines, plan.pages]}  # width, reuse, curriculum: what the stream holds
    if a.resume and not (ckpt_dir / "ckpt.pt").is_file():
        raise SystemExit(f"--resume: no checkpoint {ckpt_dir / 'ckpt.pt'} (a fresh machine has an empty /tmp)")
    resume = torch.load(ckpt_dir / "ckpt.pt", map_location="cpu", weights_only=False) if a.resume else None
    args = ModelArgs.from_params(resume["args"]) if resume else (TINY if a.tiny_debug else ModelArgs())
    model = TinyReader(args)
    head = reading.ReadingHead(args.dim)  # training only: not exported
    if resume:
        model.load_state_dict(resume["model"])
        head.load_state_dict(resume["reading_head"])
        state.update(resume["state"])
        plan = curriculum.Curriculum(*state.get("curriculum", ()))
    model.to(a.device).train()
    head.to(a.device).train()
    named = list(model.named_parameters()) + [(f"reading_head.{n}", p) for n, p in head.named_parameters()]
    # One learning rate for every part (the vision tower is random, not pretrained: it learns slowest);
    # weight decay on matrices only.
    decay = [p for n, p in named if p.dim() >= 2 and "tok_embeddings" not in n]
    rest = [p for n, p in named if not (p.dim() >= 2 and "tok_embeddings" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=cuda)
    if resume:
        opt.load_state_dict(resume["opt"])
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model {n_params / 1e6:.2f}M parameters ({n_params * 2 / 2**20:.1f} MiB in bf16); device {a.device}; "
        f"{pages} pages/batch, {workers} workers, pages reused {state['reuse']}x; resume={bool(resume)} at step "
        f"{state['step']}, stream position {state['batch']}")
    forward = torch.compile(model.loss, dynamic=True) if a.compile else model.loss

    n_held = a.held_out if a.held_out is not None else (6 if cuda else 1)
    held_out = [data.make_batch(a.seed + HELD_OUT_SEED_OFFSET, i, pages, tekken, stage="task") for i in range(n_held)]
    # the gap of the stage being trained (2 batches each): a model reading lines shows it on lines first
    stage_held = {stage: [data.make_batch(a.seed + HELD_OUT_SEED_OFFSET, i, pages, tekken, stage=stage)
                          for i in range(min(2, n_held))] for stage in curriculum.STAGES[:-1] if getattr(plan, stage)}
    stage_held["task"] = held_out[:2]
    loader = torch.utils.data.DataLoader(
        data.BatchStream(a.seed, state["batch"], pages, tekken, state["width"], state["reuse"], plan),
        batch_size=None, num_workers=workers,
        pin_memory=cuda, prefetch_factor=2 if workers else None, persistent_workers=False)
    state["calls"] += 1
    log_every = a.log_every or (25 if cuda else 1)
    began = time.monotonic()
    last_ckpt = began
    window = {"t": time.monotonic(), "seqs": 0, "pages": 0, "tokens": 0, "wait": 0.0, "n": 0}
    history, gaps = [], []
    lr = lr_at(state["step"], 0.0, a.lr, a.warmup)
    it = iter(loader)
    while True:
        elapsed = time.monotonic() - began
        progress = state["step"] / state["steps"] if state["steps"] else (state["train_s"] + elapsed) / a.schedule_s
        if elapsed >= a.time_budget_s or progress >= 1.0:
            break
        t_wait = time.monotonic()
        batch = next(it)
        window["wait"] += time.monotonic() - t_wait
        b = to_device(batch, a.device)
        lr = lr_at(state["step"], progress, a.lr, a.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            features = model.image_features(b["images"])
            loss, correct = forward(b["tokens"], b["images"], b["seq_image"], b["label_index"], b["targets"],
                                    b["weights"], features)
            read = reading.reading_loss(head, features, b["cells"])[0] if a.reading_weight else None
        total = loss if read is None else loss + a.reading_weight * read
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
        opt.step()
        n_labels = len(batch["targets"])
        state["step"] += 1
        state["batch"] += 1
        state["sequences"] += len(batch["tokens"])
        state["page_visits"] += len(batch["images"])
        window["seqs"] += len(batch["tokens"])
        window["pages"] += len(batch["images"])
        window["tokens"] += int(batch["real_tokens"])
        window["n"] += 1
        if state["step"] % log_every == 0 or state["step"] == 1:
            window["loss"], window["acc"] = loss.item(), [int(correct), n_labels]  # the only GPU sync
            dt = time.monotonic() - window["t"]
            line = (f"step {state['step']} loss {window['loss']:.4f} "
                    f"reading {read.item() if read is not None else 0:.4f} tok_acc {window['acc'][0] / max(1, n_labels):.3f} "
                    f"lr {lr:.2e} | {window['seqs'] / dt:.1f} seq/s {window['pages'] / dt:.1f} pages/s "
                    f"{window['tokens'] / dt / 1e3:.1f}k tok/s, data wait {100 * window['wait'] / dt:.0f}% | "
                    f"total {state['sequences']} seqs, {state['train_s'] + elapsed:.0f}s")
            log(line)
            history.append({"step": state["step"], "loss": window["loss"], "seq_per_s": window["seqs"] / dt,
                            "pages_per_s": window["pages"] / dt, "data_wait": window["wait"] / dt})
            window = {"t": time.monotonic(), "seqs": 0, "pages": 0, "tokens": 0, "wait": 0.0, "n": 0}
        if state["step"] % a.gap_every == 0:
            stage = plan.stage(data.batch_of(state["batch"] - 1, state["width"], state["reuse"])[0])
            seen = {"step": state["step"], "stage": stage,
                    "train_s": round(state["train_s"] + time.monotonic() - began, 1),
                    **shuffled_gap(model, stage_held[stage], a.device)}
            gaps.append(seen)
            log(f"held-out shuffled-image gap: {json.dumps(seen)}")
            # the best in any stage and any call: the gap dips where a new stage starts
            best = state["best_value_gap"] = max(state.get("best_value_gap", float("-inf")), seen["value_gap"])
            if seen["train_s"] >= a.abort_after_s and best < a.abort_gap:
                state["aborted"] = (f"blind: the shuffled-image gap on value tokens was at most {best} nats "
                                    f"after {seen['train_s']}s "
                                    f"(--abort-gap {a.abort_gap} after --abort-after-s {a.abort_after_s})")
                log(f"stopping: {state['aborted']}")
                break
        if time.monotonic() - last_ckpt > a.ckpt_every_s:
            save_ckpt(ckpt_dir, model, head, opt, {**state, "train_s": state["train_s"] + time.monotonic() - began})
            last_ckpt = time.monotonic()
    state["train_s"] += time.monotonic() - began
    del it, loader
    save_ckpt(ckpt_dir, model, head, opt, state)
    metrics = {"state": state, "parameters": n_params, "held_out": evaluate(model, held_out, a.device, tok),
               "shuffled_gap": shuffled_gap(model, held_out, a.device),
               "stage_gaps": {stage: shuffled_gap(model, b, a.device) for stage, b in stage_held.items()},
               "stage_exact": {stage: evaluate(model, b, a.device, tok)["exact"] for stage, b in stage_held.items()},
               "gaps": gaps, "history": history, "last_lr": lr}
    log(f"held-out (teacher-forced): {json.dumps(metrics['held_out'])}")
    if a.export:
        extra = {"trained": {"steps": state["step"], "sequences": state["sequences"],
                             "page_visits": state["page_visits"], "reuse": state["reuse"],
                             "seconds": round(state["train_s"]), "seed": a.seed,
                             "held_out_exact": metrics["held_out"]["exact"]}}
        folder = export.export(model, a.export, extra)
        log(f"exported {folder}: {sorted(p.name for p in folder.iterdir())}")
    if a.metrics:
        Path(a.metrics).write_text(json.dumps(metrics, indent=1))
    return metrics


if __name__ == "__main__":
    main()

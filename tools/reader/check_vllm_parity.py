"""vLLM and the torch training model must compute the same thing from the same model folder.

For generated pages (portrait invoice, landscape chart; one question alone and several together)
the chat messages are built as the pipeline builds them, then:
- vLLM, opened as the engine actor opens it (pipeline/engine/actor.py open_engine: the pipeline's
  engine_args, and on a GPU the Pixtral patch), answers them with greedy decoding and top-20
  log-probs per step, in the dtype asked for;
- the torch model (tools.reader.model, weights read back from the folder) tokenizes them with
  mistral_common as training does and, in float32, scores vLLM's greedy tokens (teacher-forced).
Checked: identical prompt token ids; vLLM's greedy token is the reference's argmax at every step
(where the reference's top two are closer than `tol`, either may win); log-probs within `tol`; and the
image matters (a blank page moves the reference's log-probs by far more than `tol`).

The tolerance. float32 (CPU): 2e-3 over vLLM's top-20 tokens of every step; both sides compute in
float32 with other kernels (measured 2e-6 on the CPU). bfloat16 (where the product runs on GPUs): bf16
keeps 8 significant bits, so every layer's output is rounded by up to 2^-9 of its size and log-probs
move far more; how far depends on the model and the inputs, so it is measured on the same cases, not
guessed: the torch model run in bf16 is `spread` away from its float32 self, and vLLM in bf16 may be at
most BF16_FACTOR x spread away from the float32 reference (other kernels and summation orders:
FlashAttention, fused norms, cuBLAS). In bf16 only the tokens that matter are compared: those the
reference gives more than e^MATTERS. A token at -15 nats is a difference of large logits, each rounded
in proportion to its size, so its error is many times a likely token's, and nothing the product does
reads it (sampling at temperature 0.15 never picks it; an answer's confidence reads the chosen tokens).
A wrong image path (a broken patch, a misplaced image) moves log-probs by the blank-page amount, which
the check requires to exceed 20 x tol, so the tolerance can never grow loose enough to hide one.

  python3 tools/reader/check_vllm_parity.py [--model DIR] [--dtype float32|bfloat16] [--device cpu|cuda]
      [--out report.json]          (default model: a random-init tiny one; device: cuda if there is one)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.reader import data, export, pagegen  # noqa: E402
from tools.reader.model import TINY, TinyReader  # noqa: E402

STEPS = 24  # the JSON's first values, not only its keys: a trained reader's keys need no image


def random_model(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random-init reader, exported; weights scaled up so the logits have clear winners.
    Sharded at 1 MiB so vLLM's multi-file load is exercised too."""
    torch.manual_seed(seed)
    model = TinyReader(TINY)
    model.reset_parameters(std=0.15)
    with torch.no_grad():
        model.output.weight.mul_(2.0)
    return export.export(model, folder, shard_bytes=2**20)


def cases() -> list[tuple[bytes, str]]:
    """(page image, instruction): docvqa alone and together on an invoice, chartqa on a chart."""
    t = data.tasks()
    invoice = pagegen.make_page(1001, kind="invoice", shape="portrait")
    chart = pagegen.make_page(1002, kind="chart", shape="landscape")
    questions = [q for q, _ in invoice.docvqa[:3]]
    return [(data.render(invoice), t["docvqa"].instruction(questions[0])),
            (data.render(invoice), t["docvqa"].batched_instruction(questions)),
            (data.render(chart), t["chartqa"].instruction(chart.chartqa[0][0]))]


FLOAT32_TOL = 2e-3
BF16_FACTOR = 4.0
MATTERS = -5.0  # bf16: log-probs compared only where the reference gives the token more than e^-5


def vllm_outputs(folder: str, messages: list[list[dict]], steps: int = STEPS, dtype: str = "float32",
                 device: str = "cpu"):
    """[(prompt ids, greedy ids, [{token: logprob}] per step)] from vLLM, opened as the engine actor
    opens it, with its engine core in this process (one process imports vLLM, not two)."""
    import os

    from vllm import SamplingParams

    from pipeline.core.config import EngineSpec
    from pipeline.engine.actor import engine_env, open_engine

    spec = EngineSpec(model=str(folder), dtype=dtype, max_model_len=4096, max_num_seqs=8, seed=0,
                      separate_core=False, cpu_kvcache_gib=1)
    saved = {k: os.environ.get(k) for k in (*engine_env(spec), "VLLM_CPU_KVCACHE_SPACE")}
    os.environ.update(engine_env(spec))
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    try:
        llm, _ = open_engine(spec, device)
        try:
            outs = llm.chat(messages, SamplingParams(temperature=0.0, max_tokens=steps, logprobs=20), use_tqdm=False)
            return [(list(o.prompt_token_ids), list(o.outputs[0].token_ids),
                     [{t: lp.logprob for t, lp in step.items()} for step in o.outputs[0].logprobs]) for o in outs]
        finally:
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def forced_logprobs(model: TinyReader, prompt: list[int], image: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """(len(tokens), vocab) log-probs of each step when the model is fed `tokens` (teacher forcing)."""
    dtype = next(model.parameters()).dtype
    seq = torch.tensor([prompt + tokens[:-1]])
    with torch.no_grad():
        logits = model.logits(seq, image[None].to(dtype), torch.zeros(1, dtype=torch.long))
    return torch.log_softmax(logits[0, len(prompt) - 1:].float(), -1)


def _max_diff(a: torch.Tensor, steps: list[dict[int, float]], ref: torch.Tensor, floor: float | None) -> float:
    """Largest gap between `a` (per step, every token) and vLLM's top log-probs of each step, over the
    tokens the reference `ref` gives more than e^floor (all of vLLM's top tokens when floor is None)."""
    return max((abs(float(a[i, t]) - lp) for i, step in enumerate(steps) for t, lp in step.items()
                if floor is None or float(ref[i, t]) > floor), default=0.0)


def compare(folder: str | Path, tol: float | None = None, steps: int = STEPS, dtype: str = "float32",
            device: str = "cpu") -> dict:
    """Run both sides; the report's "passes" says whether every check held, "failures" what did not
    (different prompt tokens raise at once: nothing after them would be comparable)."""
    from pipeline.tasks.prompts import build_messages

    folder = str(folder)
    tok = data.tokenizer(str(Path(folder) / "tekken.json"))
    reference = export.load(folder, torch.float32)
    same_dtype = export.load(folder, torch.bfloat16) if dtype == "bfloat16" else None
    items = cases()
    vllm = vllm_outputs(folder, [build_messages(png, ins, None) for png, ins in items], steps, dtype, device)
    report: dict = {"model": folder, "dtype": dtype, "device": device, "cases": []}
    floor = None if same_dtype is None else MATTERS
    refs = []
    for (png, instruction), (v_prompt, v_tokens, v_logprobs) in zip(items, vllm):
        prompt, _, image = data.encode(tok, png, instruction, None)
        assert prompt == v_prompt, f"prompt tokens differ: {len(prompt)} (mistral_common) vs {len(v_prompt)} (vLLM)"
        image = torch.from_numpy(image)
        ref = forced_logprobs(reference, prompt, image, v_tokens)
        refs.append(ref)
        case = {"prompt_tokens": len(prompt), "image_tokens": prompt.count(10), "greedy": v_tokens,
                "max_logprob_diff": _max_diff(ref, v_logprobs, ref, floor)}
        if same_dtype is not None:
            case["bf16_torch_spread"] = _max_diff(ref, [{t: float(lp[t]) for t in step} for lp, step in zip(
                forced_logprobs(same_dtype, prompt, image, v_tokens), v_logprobs)], ref, floor)
        blank = forced_logprobs(reference, prompt, torch.zeros_like(image), v_tokens)  # normalised zeros: mid-grey
        case["blank_image_moves_logprobs_by"] = float((blank - ref).abs().max())
        report["cases"].append(case)
    if tol is None:
        tol = FLOAT32_TOL if same_dtype is None else max(
            FLOAT32_TOL, BF16_FACTOR * max(c["bf16_torch_spread"] for c in report["cases"]))
    report.update(tol=tol, compared="top-20" if floor is None else f"top-20 above e^{MATTERS:g} in the reference")
    for case, ref in zip(report["cases"], refs):
        top = ref.max(-1).values
        case["argmax_flips"] = [i for i, t in enumerate(case["greedy"]) if int(ref[i].argmax()) != t]
        case["flips_at_near_ties"] = all(float(top[i] - ref[i, case["greedy"][i]]) < tol for i in case["argmax_flips"])
    problems = []
    for case in report["cases"]:
        if not case["flips_at_near_ties"]:
            problems.append(f"greedy tokens differ where the reference is sure: steps {case['argmax_flips']}")
        if case["max_logprob_diff"] >= tol:
            problems.append(f"log-probs differ by {case['max_logprob_diff']:.2e} (tolerance {tol:.2e})")
        if case["blank_image_moves_logprobs_by"] <= 20 * tol:
            problems.append(f"the image barely matters ({case['blank_image_moves_logprobs_by']:.2e}): the check "
                            "would not see image bugs")
    report.update(passes=not problems, failures=problems)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: export a random-init tiny one)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tol", type=float, help="default: 2e-3 in float32, measured in bfloat16 (see above)")
    parser.add_argument("--out", help="also write the report here (JSON)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model or str(random_model(Path(tmp) / "tiny-reader"))
        report = compare(folder, args.tol, dtype=args.dtype, device=args.device)
    from pipeline.engine import pixtral_patch

    report.update(pixtral_patch=pixtral_patch.reason(), vllm=pixtral_patch.vllm_version(), torch=torch.__version__)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    print("parity OK" if report["passes"] else "parity FAILED: " + "; ".join(report["failures"]))
    return 0 if report["passes"] else 1


if __name__ == "__main__":
    sys.exit(main())

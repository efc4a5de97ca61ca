"""vLLM and the torch training model must compute the same thing from the same model folder.

For generated pages (portrait invoice, landscape chart; one question alone and several together)
the chat messages are built as the pipeline builds them, then:
- vLLM (the pipeline's own engine_args, CPU, float32) answers them with greedy decoding and top-20
  log-probs per step;
- the torch model (tools.reader.model, weights read back from the folder) tokenizes them with
  mistral_common as training does and decodes greedily.
Checked: identical prompt token ids, identical greedy tokens, log-probs within `tol` at every step,
and the image matters (a blank page moves the first log-probs by far more than `tol`).

  python3 tools/reader/check_vllm_parity.py [--model DIR]   (default: a random-init tiny model)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.reader import data, export, pagegen  # noqa: E402
from tools.reader.model import TINY, TinyReader  # noqa: E402

STEPS = 12


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


def vllm_outputs(folder: str, messages: list[list[dict]], steps: int = STEPS):
    """[(prompt ids, greedy ids, [{token: logprob}] per step)] from vLLM, set up as the pipeline does."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    # The engine core in this process, whatever ran before in it (one process imports vLLM, not two).
    saved = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        return _vllm_outputs(folder, messages, steps)
    finally:
        if saved is None:
            os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = saved


def _vllm_outputs(folder: str, messages: list[list[dict]], steps: int):
    from vllm import LLM, SamplingParams

    # the pipeline's settings (pipeline/engine/actor.py engine_args) for a CPU run, float32 for a tight comparison
    llm = LLM(model=folder, tokenizer_mode="mistral", config_format="mistral", load_format="mistral",
              dtype="float32", max_model_len=4096, max_num_seqs=8, enforce_eager=True, gpu_memory_utilization=0.3,
              limit_mm_per_prompt={"image": 1}, enable_prefix_caching=True, seed=0,
              structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True})
    try:
        outs = llm.chat(messages, SamplingParams(temperature=0.0, max_tokens=steps, logprobs=20), use_tqdm=False)
        return [(list(o.prompt_token_ids), list(o.outputs[0].token_ids),
                 [{t: lp.logprob for t, lp in step.items()} for step in o.outputs[0].logprobs]) for o in outs]
    finally:
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()


def compare(folder: str | Path, tol: float = 2e-3, steps: int = STEPS) -> dict:
    """Run both sides; raise AssertionError on any mismatch; return the numbers."""
    from pipeline.tasks.prompts import build_messages

    folder = str(folder)
    tok = data.tokenizer(str(Path(folder) / "tekken.json"))
    eos = tok.instruct_tokenizer.tokenizer.eos_id
    model = export.load(folder, torch.float32)
    items = cases()
    vllm = vllm_outputs(folder, [build_messages(png, ins, None) for png, ins in items], steps)
    report = {"cases": []}
    for (png, instruction), (v_prompt, v_tokens, v_logprobs) in zip(items, vllm):
        prompt, _, image = data.encode(tok, png, instruction, None)
        assert prompt == v_prompt, f"prompt tokens differ: {len(prompt)} (mistral_common) vs {len(v_prompt)} (vLLM)"
        image = torch.from_numpy(image)
        t_tokens, t_logprobs = model.greedy(prompt, image, len(v_tokens), eos)
        assert t_tokens == v_tokens, f"greedy tokens differ: torch {t_tokens} vs vLLM {v_tokens}"
        diff = max(abs(float(t_lp[t]) - lp) for t_lp, v_lp in zip(t_logprobs, v_logprobs) for t, lp in v_lp.items())
        assert diff < tol, f"log-probs differ by {diff:.2e} (tolerance {tol})"
        blank = torch.zeros_like(image)  # normalised zeros: a mid-grey page
        _, b_logprobs = model.greedy(prompt, blank, 1, eos)
        moved = float((b_logprobs[0] - t_logprobs[0]).abs().max())
        assert moved > 20 * tol, f"the image barely matters ({moved:.2e}): the check would not see image bugs"
        report["cases"].append({"prompt_tokens": len(prompt), "image_tokens": prompt.count(10), "greedy": v_tokens,
                                "max_logprob_diff": diff, "blank_image_moves_logprobs_by": moved})
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: export a random-init tiny one)")
    parser.add_argument("--tol", type=float, default=2e-3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model or str(random_model(Path(tmp) / "tiny-reader"))
        report = compare(folder, args.tol)
    print(json.dumps(report, indent=1))
    print("parity OK")


if __name__ == "__main__":
    main()
